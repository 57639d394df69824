//! The health checks of `lms_etl.health()` as the loader shows them: a table for `status`,
//! a Nagios plugin's answer for `health`, and the worst checks for the run's e-mail subject.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};

use crate::load::{Database, LoadError};

/// A check's verdict, ordered from best to worst as Nagios ranks them for "worst wins":
/// CRITICAL (fail) > WARNING (warn) > UNKNOWN > OK. An unknown check (too little history
/// to judge) never hides a warning, and a warning never hides a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CheckStatus {
    Ok,
    Unknown,
    Warn,
    Fail,
}

impl CheckStatus {
    /// From `health()`'s status column; anything unexpected counts as unknown.
    pub fn parse(text: &str) -> CheckStatus {
        match text {
            "ok" => CheckStatus::Ok,
            "warn" => CheckStatus::Warn,
            "fail" => CheckStatus::Fail,
            _ => CheckStatus::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Unknown => "unknown",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "fail",
        }
    }

    /// The Nagios plugin exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub fn nagios_code(self) -> u8 {
        match self {
            CheckStatus::Ok => 0,
            CheckStatus::Warn => 1,
            CheckStatus::Fail => 2,
            CheckStatus::Unknown => 3,
        }
    }

    pub fn nagios_name(self) -> &'static str {
        match self {
            CheckStatus::Ok => "OK",
            CheckStatus::Warn => "WARNING",
            CheckStatus::Fail => "CRITICAL",
            CheckStatus::Unknown => "UNKNOWN",
        }
    }

    /// The mark a subject line gives a check that is not ok: ✗ fail, ⚠ warn.
    fn mark(self) -> Option<char> {
        match self {
            CheckStatus::Fail => Some('✗'),
            CheckStatus::Warn => Some('⚠'),
            CheckStatus::Ok | CheckStatus::Unknown => None,
        }
    }
}

/// One row of `lms_etl.health()`.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub status: CheckStatus,
    pub value: String,
    pub expected: String,
    pub message: String,
}

/// Every check, worst first (the order `health()` gives among equals).
pub async fn checks(db: &Database) -> Result<Vec<Check>, LoadError> {
    let rows = db
        .client()
        .query(
            "SELECT \"check\", status, coalesce(value, ''), coalesce(expected, ''), coalesce(message, '')
               FROM lms_etl.health()",
            &[],
        )
        .await
        .map_err(|source| LoadError::Query {
            what: "reading lms_etl.health()".into(),
            source,
        })?;
    let mut checks: Vec<Check> = rows
        .iter()
        .map(|r| Check {
            name: r.get(0),
            status: CheckStatus::parse(r.get(1)),
            value: r.get(2),
            expected: r.get(3),
            message: r.get(4),
        })
        .collect();
    worst_first(&mut checks);
    Ok(checks)
}

/// Sorts worst first, keeping `health()`'s order among checks of one status.
pub fn worst_first(checks: &mut [Check]) {
    checks.sort_by_key(|c| std::cmp::Reverse(c.status));
}

/// The worst status of all; ok when there is no check.
pub fn worst(checks: &[Check]) -> CheckStatus {
    checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(CheckStatus::Ok)
}

/// The checks as a terminal table: check, status, value, expected, message.
pub fn table(checks: &[Check]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(vec!["check", "status", "value", "expected", "message"]);
    for c in checks {
        t.add_row(vec![
            c.name.as_str(),
            c.status.as_str(),
            c.value.as_str(),
            c.expected.as_str(),
            c.message.as_str(),
        ]);
    }
    t
}

/// A Nagios plugin's output: the first line `LMS_ETL <STATE> - <summary>` (the checks that
/// are not ok, worst first, or `<n> checks ok`), then the table. Goes with
/// [`worst`]`(checks).nagios_code()` as the exit code.
pub fn nagios_output(checks: &[Check]) -> String {
    let state = worst(checks);
    let failing: Vec<String> = checks
        .iter()
        .filter(|c| c.status != CheckStatus::Ok)
        .map(|c| format!("{}: {}", c.name, c.message))
        .collect();
    let summary = if failing.is_empty() {
        format!("{} checks ok", checks.len())
    } else {
        // `|` starts Nagios perfdata: keep it out of the text.
        failing.join("; ").replace('|', "/")
    };
    format!(
        "LMS_ETL {} - {summary}\n{}\n",
        state.nagios_name(),
        table(checks)
    )
}

/// The subject-line note for the checks that warn or fail, worst first:
/// ` ⚠ volume −63% vs usual Tuesday ✗ freshness: newest attempt`; empty when none does.
pub fn subject_note(checks: &[Check]) -> String {
    let mut sorted = checks.to_vec();
    worst_first(&mut sorted);
    sorted
        .iter()
        .filter_map(|c| Some(format!(" {} {}", c.status.mark()?, short(c))))
        .collect()
}

/// A check in a few words. A volume check becomes `volume −63% vs usual Tuesday` (from the
/// message `health()` writes: `<day>: <n> attempts, -63% vs usual Tuesday (median <m>)`);
/// any other check is its name.
fn short(check: &Check) -> String {
    if check.name.starts_with("volume ") {
        let change = check
            .message
            .split_once(" attempts, ")
            .map(|(_, rest)| rest.split(" (median").next().unwrap_or(rest).trim());
        if let Some(change) = change.filter(|c| !c.is_empty()) {
            // A minus sign, as the mail's trends write it.
            let change = change
                .strip_prefix('-')
                .map_or_else(|| change.to_owned(), |rest| format!("\u{2212}{rest}"));
            return format!("volume {change}");
        }
    }
    check.name.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, status: CheckStatus, message: &str) -> Check {
        Check {
            name: name.into(),
            status,
            value: "v".into(),
            expected: "e".into(),
            message: message.into(),
        }
    }

    #[test]
    fn worst_follows_nagios_critical_warning_unknown_ok() {
        use CheckStatus::*;
        let of =
            |s: &[CheckStatus]| worst(&s.iter().map(|&s| check("c", s, "m")).collect::<Vec<_>>());
        assert_eq!(of(&[]), Ok);
        assert_eq!(of(&[Ok, Ok]), Ok);
        assert_eq!(of(&[Ok, Unknown]), Unknown);
        assert_eq!(of(&[Unknown, Warn, Ok]), Warn);
        assert_eq!(of(&[Warn, Fail, Unknown]), Fail);
        assert_eq!(
            [Ok, Warn, Fail, Unknown].map(CheckStatus::nagios_code),
            [0, 1, 2, 3]
        );
    }

    #[test]
    fn status_text_unknown_to_us_counts_as_unknown() {
        assert_eq!(CheckStatus::parse("warn"), CheckStatus::Warn);
        assert_eq!(CheckStatus::parse("fail"), CheckStatus::Fail);
        assert_eq!(CheckStatus::parse("ok"), CheckStatus::Ok);
        assert_eq!(CheckStatus::parse("bogus"), CheckStatus::Unknown);
    }

    #[test]
    fn nagios_first_line_names_the_state_and_the_checks_that_are_not_ok() {
        let checks = vec![
            check("freshness: newest attempt", CheckStatus::Ok, "fine"),
            check(
                "volume 2026-11-24",
                CheckStatus::Warn,
                "2026-11-24: 3200 attempts, -63% vs usual Tuesday (median 8612)",
            ),
            check("rejected share", CheckStatus::Unknown, "no record | none"),
        ];
        let out = nagios_output(&checks);
        let first = out.lines().next().unwrap();
        assert_eq!(
            first,
            "LMS_ETL WARNING - volume 2026-11-24: 2026-11-24: 3200 attempts, -63% vs usual \
             Tuesday (median 8612); rejected share: no record / none"
        );
        assert!(
            out.contains("freshness: newest attempt"),
            "table follows: {out}"
        );
        let ok = nagios_output(&checks[..1]);
        assert!(ok.starts_with("LMS_ETL OK - 1 checks ok\n"), "{ok}");
    }

    #[test]
    fn subject_note_puts_failures_first_and_shortens_volume() {
        let checks = vec![
            check(
                "volume 2026-11-24",
                CheckStatus::Warn,
                "2026-11-24: 3200 attempts, -63% vs usual Tuesday (median 8612)",
            ),
            check("freshness: newest attempt", CheckStatus::Fail, "old"),
            check("rejected share", CheckStatus::Unknown, "n/a"),
            check("sheets pending", CheckStatus::Ok, "fine"),
        ];
        assert_eq!(
            subject_note(&checks),
            " ✗ freshness: newest attempt ⚠ volume \u{2212}63% vs usual Tuesday"
        );
        assert_eq!(subject_note(&checks[2..]), "");
        let up = check(
            "volume 2026-11-24",
            CheckStatus::Warn,
            "2026-11-24: 9 attempts, +80% vs usual Tuesday (median 5)",
        );
        assert_eq!(subject_note(&[up]), " ⚠ volume +80% vs usual Tuesday");
        let odd = check("volume 2026-11-24", CheckStatus::Warn, "unexpected text");
        assert_eq!(subject_note(&[odd]), " ⚠ volume 2026-11-24");
    }
}
