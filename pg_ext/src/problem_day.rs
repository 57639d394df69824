//! `lms_etl.problem_day(learner_day bytea) → lms_etl.problem_day`: stage 2 of the
//! per-problem statistics. Reads one `learner_day` value per learner (its tallies per
//! problem) and adds the learner once to each of its problems' counts; so no
//! `count(DISTINCT)` is needed. A few hundred problems come out as one row of parallel arrays, unnested in SQL.

use std::collections::HashMap;

use foldhash::fast::FixedState;
use lms_etl_parse::ProblemIndex;
use pgrx::prelude::*;
use pgrx::Internal;

use crate::composite;
use crate::learner_day::{checked_state, decode, state_or_new, Tally};

/// One problem's numbers for the day (the columns of lms_etl.daily_problem_stats).
#[derive(Debug, Default, Clone, Copy)]
struct ProblemCounts {
    attempts: i64,
    runs: i64,
    submits: i64,
    successful: i64,
    users: i64,
    submitters: i64,
    solved: i64,
    first_submit_correct: i64,
}

impl ProblemCounts {
    fn add_learner(&mut self, t: &Tally) {
        self.attempts += i64::from(t.attempts);
        self.runs += i64::from(t.runs);
        self.submits += i64::from(t.submits);
        self.successful += i64::from(t.successful);
        self.users += 1;
        self.submitters += i64::from(t.submits > 0);
        self.solved += i64::from(t.successful > 0);
        self.first_submit_correct += i64::from(t.first_submit_correct());
    }
}

#[repr(C)]
struct ProblemDay {
    magic: u64,
    index: ProblemIndex,
    /// By problem number; `None` holds attempts without a well-formed sourcedid.
    counts: HashMap<Option<u32>, ProblemCounts, FixedState>,
    /// One learner's tallies by problem, reused for every learner.
    learner: HashMap<Option<u32>, Tally, FixedState>,
}

const MAGIC: u64 = 0x6c6d_735f_7064_6179; // "lms_pday"

/// Transition function: adds one learner's day.
#[pg_extern(parallel_safe)]
fn problem_day_accum(
    state: Internal,
    learner_day: Option<&[u8]>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    const WHAT: &str = "lms_etl.problem_day_accum";
    let new = || ProblemDay {
        magic: MAGIC,
        index: ProblemIndex::default(),
        counts: HashMap::default(),
        learner: HashMap::default(),
    };
    let mut state = state_or_new(state, fcinfo, new, WHAT);
    let Some(bytes) = learner_day else {
        return state;
    };
    // SAFETY: an initialized state is an aggregate state; ours carry MAGIC.
    let day = unsafe { checked_state::<ProblemDay>(&mut state, MAGIC, WHAT) }
        .expect("an initialized state");
    day.learner.clear();
    let (index, learner) = (&mut day.index, &mut day.learner);
    let decoded = decode(bytes, |problem, tally| {
        let problem = problem.map(|(course_id, block_id)| index.number_of(course_id, block_id));
        learner.entry(problem).or_default().merge(&tally);
    });
    if let Err(e) = decoded {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_BINARY_REPRESENTATION,
            format!(
                "lms_etl.problem_day: not a value of lms_etl.learner_day: at byte {}: expected {}",
                e.position, e.expected
            )
        );
    }
    for (problem, tally) in &day.learner {
        day.counts.entry(*problem).or_default().add_learner(tally);
    }
    state
}

thread_local! {
    static PROBLEM_DAY_TYPE: composite::TypeCache = const { std::cell::Cell::new(None) };
}

/// Final function: one row of parallel arrays (the type lms_etl.problem_day), problems in
/// (course_id, block_id) order, the NULL problem first.
#[pg_extern(parallel_safe)]
fn problem_day_final(state: Internal) -> Option<pgrx::composite_type!('static, "problem_day")> {
    let mut state = state;
    // SAFETY: an initialized state is an aggregate state; ours carry MAGIC.
    let day =
        unsafe { checked_state::<ProblemDay>(&mut state, MAGIC, "lms_etl.problem_day_final") }?;
    let mut rows: Vec<_> = day
        .counts
        .iter()
        .map(|(n, c)| (n.map(|n| day.index.problem(n)), *c))
        .collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let column =
        |f: fn(&ProblemCounts) -> i64| rows.iter().map(|(_, c)| f(c)).collect::<Vec<i64>>();
    let datums = [
        rows.iter()
            .map(|(p, _)| p.map(|p| p.course_id.as_str()))
            .collect::<Vec<_>>()
            .into_datum(),
        rows.iter()
            .map(|(p, _)| p.map(|p| p.block_id.as_str()))
            .collect::<Vec<_>>()
            .into_datum(),
        column(|c| c.attempts).into_datum(),
        column(|c| c.runs).into_datum(),
        column(|c| c.submits).into_datum(),
        column(|c| c.successful).into_datum(),
        column(|c| c.users).into_datum(),
        column(|c| c.submitters).into_datum(),
        column(|c| c.solved).into_datum(),
        column(|c| c.first_submit_correct).into_datum(),
    ];
    let oid = composite::type_oid(&PROBLEM_DAY_TYPE, "lms_etl.problem_day");
    let desc = pgrx::PgTupleDesc::for_composite_type_by_oid(oid).expect("a composite type");
    if desc.len() != datums.len() {
        error!("type lms_etl.problem_day does not have the attributes this library expects: is the extension up to date?");
    }
    // SAFETY: one datum per attribute, of the attribute's type (count checked above; the
    // types are those of sql/schema.sql).
    Some(unsafe { PgHeapTuple::from_datums(desc, datums) }.expect("attributes"))
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    const A: &str = "course-v1:Org+C1+R1:lms.example.org-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:11111111111111111111111111111111";
    const A_OTHER_LEARNER_PART: &str = "course-v1:Org+C1+R1:lms.example.org-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:22222222222222222222222222222222";
    const B: &str = "course-v1:Org+C1+R1:lms.example.org-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb:11111111111111111111111111111111";

    #[pg_test]
    fn folds_learners_per_problem_counting_each_learner_once() {
        let rows = format!(
            "('u1', '{A}', 'run', NULL::boolean, '2026-11-20 10:00+00'),
             ('u1', '{A}', 'submit', false, '2026-11-20 10:01+00'),
             ('u1', '{A_OTHER_LEARNER_PART}', 'submit', true, '2026-11-20 10:02+00'),
             ('u1', '{B}', 'submit', true, '2026-11-20 11:00+00'),
             ('u1', '{B}', 'submit', false, '2026-11-20 11:05+00'),
             ('u1', NULL, 'submit', true, '2026-11-20 12:00+00'),
             ('u1', 'not a sourcedid', 'run', NULL, '2026-11-20 12:00+00'),
             ('u2', '{A}', 'submit', true, '2026-11-20 09:00+00')"
        );
        let folded = Spi::get_one::<String>(&format!(
            "SELECT lms_etl.problem_day(l)::text FROM (
                 SELECT lms_etl.learner_day(s, t, c, at::timestamptz) AS l
                   FROM (VALUES {rows}) v(u, s, t, c, at) GROUP BY u) learners"
        ))
        .unwrap()
        .unwrap();
        // Columns: course, block, attempts, runs, submits, successful, users, submitters,
        // solved, first submit correct. NULL problem first (a NULL and a malformed sourcedid
        // share it), then A (u1's two learner parts merged: first submit wrong; u2 right),
        // then B.
        assert_eq!(
            folded,
            "(\"{NULL,course-v1:Org+C1+R1,course-v1:Org+C1+R1}\",\
             \"{NULL,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa,bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb}\",\
             \"{2,4,2}\",\"{1,1,0}\",\"{1,3,2}\",\"{1,2,1}\",\"{1,2,1}\",\"{1,2,1}\",\
             \"{1,2,1}\",\"{1,1,1}\")"
        );
    }

    /// ~6 000 attempts of 60 learners on 12 problems of 2 courses over one day, with NULL,
    /// malformed and other-learner-part sourcedids mixed in.
    fn random_day() {
        Spi::run(
            "DELETE FROM lms_etl.attempts;
             SELECT setseed(0.42);
             INSERT INTO lms_etl.attempts (user_id, lis_result_sourcedid, is_correct, attempt_type, created_at)
             SELECT 'u' || u,
                    CASE WHEN r < 0.03 THEN NULL
                         WHEN r < 0.06 THEN 'course-v1:Org+C' || (b % 2) || '+R:h-' || md5(b::text)
                         ELSE 'course-v1:Org+C' || (b % 2) || '+R:lms.example.org-' || md5(b::text)
                              || ':' || md5(CASE WHEN r < 0.1 THEN 'other' ELSE 'u' END || u) END,
                    CASE WHEN t = 'submit' THEN random() < 0.4 END, t,
                    timestamptz '2026-11-20 00:00+00' + (i || ' seconds')::interval * 14
               FROM generate_series(1, 6000) i,
                    LATERAL (SELECT (random() * 59)::int + i * 0 AS u, (random() * 11)::int + i * 0 AS b,
                                    random() + i * 0 AS r,
                                    CASE WHEN random() < 0.5 + i * 0 THEN 'run' ELSE 'submit' END AS t) x",
        )
        .unwrap();
    }

    /// What daily_problem_stats must hold for 2026-11-20, by plain SQL (count(DISTINCT)).
    const NAIVE: &str = "
        WITH g AS (
            SELECT s.course_id, s.block_id, a.user_id, count(*) AS att,
                   count(*) FILTER (WHERE a.attempt_type = 'run') AS runs,
                   count(*) FILTER (WHERE a.attempt_type = 'submit') AS subs,
                   count(*) FILTER (WHERE a.is_correct) AS ok,
                   min(a.created_at) FILTER (WHERE a.attempt_type = 'submit') AS fs,
                   min(a.created_at) FILTER (WHERE a.is_correct) AS fok
              FROM lms_etl.attempts a
              LEFT JOIN LATERAL lms_etl.try_split_sourcedid(a.lis_result_sourcedid) s ON true
             WHERE a.created_at >= '2026-11-20 00:00+00' AND a.created_at < '2026-11-21 00:00+00'
             GROUP BY 1, 2, 3)
        SELECT course_id, block_id, sum(att), sum(runs), sum(subs), sum(ok), count(*),
               count(*) FILTER (WHERE subs > 0), count(*) FILTER (WHERE ok > 0),
               count(*) FILTER (WHERE fs = fok)
          FROM g GROUP BY 1, 2";

    const OURS: &str = "
        SELECT course_id, block_id, attempts, runs, submits, successful_submits, users,
               submitters, users_solved, users_first_submit_correct
          FROM lms_etl.daily_problem_stats WHERE day = '2026-11-20'";

    #[pg_test]
    fn aggregate_daily_matches_plain_sql_over_a_random_day() {
        random_day();
        Spi::run("SELECT lms_etl.aggregate_daily('2026-11-20')").unwrap();
        let rows = Spi::get_one::<i64>(&format!("SELECT count(*) FROM ({OURS}) o")).unwrap();
        assert!(
            rows.unwrap() >= 13,
            "12 problems and the NULL one: {rows:?}"
        );
        for (a, b) in [(NAIVE, OURS), (OURS, NAIVE)] {
            let differing =
                Spi::get_one::<i64>(&format!("SELECT count(*) FROM (({a}) EXCEPT ({b})) d"))
                    .unwrap();
            assert_eq!(differing, Some(0));
        }
    }

    #[pg_test]
    fn parallel_workers_give_the_serial_result() {
        random_day();
        let query = "SELECT lms_etl.problem_day(l)::text FROM (
                         SELECT lms_etl.learner_day(a.lis_result_sourcedid, a.attempt_type,
                                                    a.is_correct, a.created_at) AS l
                           FROM lms_etl.attempts a GROUP BY a.user_id) s";
        Spi::run("SET LOCAL max_parallel_workers_per_gather = 0").unwrap();
        let serial = Spi::get_one::<String>(query).unwrap();
        Spi::run(
            "SET LOCAL max_parallel_workers_per_gather = 2; SET LOCAL parallel_setup_cost = 0;
             SET LOCAL parallel_tuple_cost = 0; SET LOCAL min_parallel_table_scan_size = 0;
             SET LOCAL enable_sort = off",
        )
        .unwrap();
        let plan = Spi::get_one::<String>(&format!(
            "SELECT string_agg(line, ' ') FROM (SELECT * FROM tests.explain_lines($q${query}$q$)) p(line)"
        ))
        .unwrap()
        .unwrap();
        assert!(plan.contains("Partial HashAggregate"), "{plan}");
        let parallel = Spi::get_one::<String>(query).unwrap();
        assert!(serial.is_some());
        assert_eq!(parallel, serial);
    }

    pgrx::extension_sql!(
        r#"
        CREATE FUNCTION tests.explain_lines(query text) RETURNS SETOF text
        LANGUAGE plpgsql AS $$
        DECLARE line text;
        BEGIN
            FOR line IN EXECUTE 'EXPLAIN ' || query LOOP RETURN NEXT line; END LOOP;
        END $$;
        "#,
        name = "explain_lines",
        requires = ["capture_error"]
    );

    #[pg_test]
    fn a_forged_value_is_an_error_not_a_crash() {
        for forged in ["'\\x'", "'\\x02'", "'\\x01ffff'", "'\\x0105000000616263'"] {
            let (state, message) = Spi::get_two_with_args::<String, String>(
                "SELECT state, message FROM tests.capture_error($1, 'x')",
                &[format!("SELECT lms_etl.problem_day({forged}::bytea)").into()],
            )
            .unwrap();
            assert_eq!(state.as_deref(), Some("22P03"), "{forged}: {message:?}");
            assert!(message.unwrap().contains("at byte"), "{forged}");
        }
    }

    #[pg_test]
    fn no_learners_give_null() {
        let value =
            Spi::get_one::<String>("SELECT lms_etl.problem_day(NULL::bytea)::text WHERE false")
                .unwrap();
        assert_eq!(value, None);
    }
}
