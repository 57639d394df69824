//! Per-problem insight from `lms_etl.daily_problem_stats`: the day's hardest problems for the
//! mail, and the last days' per-problem rows for the Sheets tab `sheets.problems_sheet`.

use chrono::NaiveDate;

use crate::load::{Database, LoadError};

/// A problem (LTI block of a course) whose first submits went worst on one day.
#[derive(Debug, Clone, PartialEq)]
pub struct HardProblem {
    pub course_id: String,
    pub block_id: String,
    /// Learners with at least one submit on the block that day.
    pub submitters: i64,
    /// Of them, learners whose first submit that day was correct.
    pub first_correct: i64,
    pub submits: i64,
    pub successful_submits: i64,
}

impl HardProblem {
    /// First-submit success: `first_correct / submitters`.
    pub fn first_submit_success(&self) -> f64 {
        if self.submitters == 0 {
            0.0
        } else {
            self.first_correct as f64 / self.submitters as f64
        }
    }
}

/// The `count` problems of `day` with the lowest first-submit success (learners whose first
/// submit on the block that day was correct, over learners who submitted on it at least
/// once), among problems with at least `min_submitters` such learners; ties go to the
/// problem with more submitters. Attempts without a well-formed sourcedid are no problem.
///
pub async fn hardest(
    db: &Database,
    day: NaiveDate,
    min_submitters: i64,
    count: i64,
) -> Result<Vec<HardProblem>, LoadError> {
    let rows = db
        .client()
        .query(
            "SELECT p.course_id, p.block_id, p.submitters, p.users_first_submit_correct,
                    p.submits, p.successful_submits
               FROM lms_etl.daily_problem_stats p
              WHERE p.day = $1 AND p.submitters >= $2
                AND p.course_id IS NOT NULL AND p.block_id IS NOT NULL
              ORDER BY p.users_first_submit_correct::double precision / p.submitters,
                       p.submitters DESC, p.course_id, p.block_id
              LIMIT $3",
            &[&day, &min_submitters, &count],
        )
        .await
        .map_err(|source| LoadError::Query {
            what: format!("reading the hardest problems of {day}"),
            source,
        })?;
    Ok(rows
        .iter()
        .map(|r| HardProblem {
            course_id: r.get(0),
            block_id: r.get(1),
            submitters: r.get(2),
            first_correct: r.get(3),
            submits: r.get(4),
            successful_submits: r.get(5),
        })
        .collect())
}

/// One row of `lms_etl.daily_problem_stats`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProblemDay {
    pub day: NaiveDate,
    /// `None` for the row of attempts whose sourcedid is missing or malformed.
    pub course_id: Option<String>,
    pub block_id: Option<String>,
    pub attempts: i64,
    pub runs: i64,
    pub submits: i64,
    pub successful_submits: i64,
    pub users: i64,
    pub users_solved: i64,
    pub users_first_submit_correct: i64,
}

/// Every `daily_problem_stats` row of [from, to], by day, course and block (the row without
/// a course last in its day).
pub async fn problem_days(
    db: &Database,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<ProblemDay>, LoadError> {
    let rows = db
        .client()
        .query(
            "SELECT day, course_id, block_id, attempts, runs, submits, successful_submits,
                    users, users_solved, users_first_submit_correct
               FROM lms_etl.daily_problem_stats
              WHERE day BETWEEN $1 AND $2
              ORDER BY day, course_id NULLS LAST, block_id NULLS LAST",
            &[&from, &to],
        )
        .await
        .map_err(|source| LoadError::Query {
            what: format!("reading daily_problem_stats {from}..{to}"),
            source,
        })?;
    Ok(rows
        .iter()
        .map(|r| ProblemDay {
            day: r.get(0),
            course_id: r.get(1),
            block_id: r.get(2),
            attempts: r.get(3),
            runs: r.get(4),
            submits: r.get(5),
            successful_submits: r.get(6),
            users: r.get(7),
            users_solved: r.get(8),
            users_first_submit_correct: r.get(9),
        })
        .collect())
}

/// Hex digits of a block id kept in the mail: enough to find it, short enough to read.
const BLOCK_KEPT: usize = 8;

/// `course-v1:SF+DST+1` → `SF+DST+1`: the platform's prefix says nothing to a reader.
pub fn short_course(course_id: &str) -> &str {
    course_id.strip_prefix("course-v1:").unwrap_or(course_id)
}

/// A block id's first [`BLOCK_KEPT`] characters and `…` (block ids are 32 hex digits).
pub fn short_block(block_id: &str) -> String {
    if block_id.chars().count() <= BLOCK_KEPT + 1 {
        block_id.to_owned()
    } else {
        let kept: String = block_id.chars().take(BLOCK_KEPT).collect();
        format!("{kept}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn course_and_block_are_shortened_for_reading() {
        assert_eq!(short_course("course-v1:SF+DST+1"), "SF+DST+1");
        assert_eq!(short_course("other:X"), "other:X");
        assert_eq!(short_block("9c1e0d2f3a4b5c6d7e8f90a1b2c3d4e5"), "9c1e0d2f…");
        assert_eq!(short_block("abc"), "abc");
        assert_eq!(short_block("123456789"), "123456789");
    }

    #[test]
    fn first_submit_success_is_first_correct_over_submitters() {
        let p = HardProblem {
            course_id: "c".into(),
            block_id: "b".into(),
            submitters: 12,
            first_correct: 3,
            submits: 30,
            successful_submits: 9,
        };
        assert_eq!(p.first_submit_success(), 0.25);
        let none = HardProblem {
            submitters: 0,
            first_correct: 0,
            ..p
        };
        assert_eq!(none.first_submit_success(), 0.0);
    }
}
