//! `lms_etl.learner_day(sourcedid, attempt_type, is_correct, created_at) → bytea`: one
//! learner's attempts of a day, tallied per problem, in one pass (stage 1 of the
//! per-problem statistics; `problem_day` is stage 2).
//!
//! Why aggregates in Rust: per-problem statistics need one group per (problem, learner),
//! ~190 000 in a day of 500 000 attempts, and PostgreSQL's hash aggregate over that many
//! groups cost 9× the plain daily count (BENCHMARKS.md, benchmark 5). Grouped by learner
//! instead (a few thousand groups, as in the plain count), each learner's few dozen
//! problems fit a small map here, and a sourcedid's problem part is split once per query
//! (lms_etl_parse::ProblemIndex). Grouping by `user_id` also lets Citus run this stage on
//! the workers (it is the distribution column) and ship one small value per learner.
//!
//! The value is an internal encoding (see [`encode`]), read back only by `problem_day`,
//! which checks it as untrusted input.

use std::collections::HashMap;

use foldhash::fast::FixedState;
use lms_etl_parse::{Problem, ProblemIndex};
use pgrx::prelude::*;
use pgrx::{Internal, PgMemoryContexts};

use crate::sourcedid::MAX_SOURCEDID_BYTES;

/// One learner's attempts on one sourcedid (or, merged, on one problem).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub attempts: u32,
    pub runs: u32,
    pub submits: u32,
    pub successful: u32,
    /// Earliest submit and earliest correct attempt, as PostgreSQL timestamps (µs).
    pub first_submit: Option<i64>,
    pub first_success: Option<i64>,
}

impl Tally {
    /// Adds one logged attempt (its flags as the transition function set them).
    fn add(&mut self, e: &Event) {
        let at = (e.flags & HAS_TIME != 0).then_some(e.at);
        self.attempts = bump(self.attempts, 1);
        if e.flags & RUN != 0 {
            self.runs = bump(self.runs, 1);
        } else if e.flags & SUBMIT != 0 {
            self.submits = bump(self.submits, 1);
            self.first_submit = earliest(self.first_submit, at);
        }
        if e.flags & CORRECT != 0 {
            self.successful = bump(self.successful, 1);
            self.first_success = earliest(self.first_success, at);
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        self.attempts = bump(self.attempts, other.attempts);
        self.runs = bump(self.runs, other.runs);
        self.submits = bump(self.submits, other.submits);
        self.successful = bump(self.successful, other.successful);
        self.first_submit = earliest(self.first_submit, other.first_submit);
        self.first_success = earliest(self.first_success, other.first_success);
    }

    /// The learner's first submit was correct: the earliest correct attempt is the earliest
    /// submit.
    pub fn first_submit_correct(&self) -> bool {
        self.first_submit.is_some() && self.first_submit == self.first_success
    }
}

fn bump(n: u32, by: u32) -> u32 {
    n.checked_add(by).unwrap_or_else(|| {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
            "lms_etl.learner_day: more than 4 294 967 295 attempts of one learner on one problem in one day"
        );
    })
}

/// The earlier of two optional instants (NULL ignored, as `min()` does).
fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

/// One attempt as the transition function records it: 16 bytes.
#[derive(Clone, Copy)]
struct Event {
    /// Problem number in the query's [`ProblemIndex`]; `NO_PROBLEM` for a NULL or malformed
    /// sourcedid.
    problem: u32,
    /// `RUN`, `SUBMIT`, `CORRECT`, `HAS_TIME` bits.
    flags: u8,
    at: i64,
}

const NO_PROBLEM: u32 = u32::MAX;
const RUN: u8 = 1;
const SUBMIT: u8 = 2;
const CORRECT: u8 = 4;
const HAS_TIME: u8 = 8;

/// The aggregate's state: the learner's attempts as an append-only log of small events,
/// tallied per problem only at the end (numbers from the query's [`ProblemIndex`]).
///
/// Why a log: attempts arrive in time order, so consecutive rows belong to random learners.
/// A per-learner map of tallies (the previous version) took two or three cache misses per
/// row on a day's ~8 MB of maps; appending touches only the log's last line and this
/// header, a few hundred KB over all learners, which stays in cache (BENCHMARKS.md, 5).
///
/// `magic` comes first so a state made by some other `internal` aggregate, handed to our
/// functions by a hand-made CREATE AGGREGATE, is refused instead of misread (EXECUTE on the
/// support functions is also revoked from PUBLIC, and CREATE AGGREGATE requires it).
#[repr(C)]
struct LearnerDay {
    magic: u64,
    events: Vec<Event>,
    /// Tallies merged in from parallel workers' states (deserialized or combined).
    merged: HashMap<Option<u32>, Tally, FixedState>,
    /// The query's problem numbering: it lives in a support function's per-query memory
    /// (fn_extra), which outlives every state of the query.
    problems: *mut ProblemIndex,
}

const MAGIC: u64 = 0x6c6d_735f_6c64_6179; // "lms_lday"

impl LearnerDay {
    fn new(problems: *mut ProblemIndex) -> Self {
        LearnerDay {
            magic: MAGIC,
            events: Vec::new(),
            merged: HashMap::default(),
            problems,
        }
    }

    /// Tallies per problem: the merged ones plus the log's.
    fn tallies(&self) -> HashMap<Option<u32>, Tally, FixedState> {
        let mut tallies = self.merged.clone();
        for e in &self.events {
            let problem = (e.problem != NO_PROBLEM).then_some(e.problem);
            tallies.entry(problem).or_default().add(e);
        }
        tallies
    }

    /// The tallies, encoded with the problems spelt out (the aggregate's result, and its
    /// state crossing from a parallel worker).
    fn encode(&self) -> Vec<u8> {
        // SAFETY: the index outlives the query's states (see `problems`).
        let index = unsafe { &*self.problems };
        encode(
            self.tallies()
                .iter()
                .map(|(n, t)| (n.map(|n| index.problem(n)), t)),
        )
    }

    /// Adds `other`'s attempts, renumbering its problems if it was numbered elsewhere.
    fn merge(&mut self, other: &LearnerDay) {
        for (n, tally) in &other.tallies() {
            let n = match n {
                Some(n) if !std::ptr::eq(other.problems, self.problems) => {
                    // SAFETY: both indexes outlive the query's states (see `problems`).
                    let problem = unsafe { &*other.problems }.problem(*n);
                    let ours = unsafe { &mut *self.problems };
                    Some(ours.number_of(&problem.course_id, &problem.block_id))
                }
                n => *n,
            };
            self.merged.entry(n).or_default().merge(tally);
        }
    }
}

/// The `T` behind an aggregate state whose first field is a u64 equal to `magic`.
///
/// # Safety
/// A non-null `state` must point to at least 8 readable bytes (every aggregate state does),
/// and a state with that magic must be a `T`.
pub unsafe fn checked_state<'a, T>(
    state: &'a mut Internal,
    magic: u64,
    what: &str,
) -> Option<&'a mut T> {
    // SAFETY: per the contract, the first 8 bytes are read alone before the whole is trusted.
    unsafe {
        let ptr = state.get_mut::<T>()?;
        if std::ptr::read_unaligned(std::ptr::from_mut(ptr).cast::<u64>()) != magic {
            error!("{what}: the aggregate state was not made by this aggregate");
        }
        Some(ptr)
    }
}

/// `state`, or a new `T` in the calling aggregate's memory context (dropped with it, also
/// when the query fails).
pub fn state_or_new<T>(
    state: Internal,
    fcinfo: pg_sys::FunctionCallInfo,
    new: impl FnOnce() -> T,
    what: &str,
) -> Internal {
    if state.initialized() {
        return state;
    }
    let mut context = std::ptr::null_mut();
    // SAFETY: fcinfo is the call's own FunctionCallInfo, passed by pgrx.
    if unsafe { pg_sys::AggCheckCallContext(fcinfo, &mut context) } == 0 || context.is_null() {
        error!("{what} can only be called by its aggregate");
    }
    let ptr = PgMemoryContexts::For(context).leak_and_drop_on_delete(new());
    Internal::from(Some(pg_sys::Datum::from(ptr)))
}

/// The problem numbering shared by every group of one aggregate call site, kept in the
/// transition function's fn_extra (per-query memory).
fn query_problems(fcinfo: pg_sys::FunctionCallInfo) -> *mut ProblemIndex {
    // SAFETY: PostgreSQL passes a valid flinfo; fn_extra is ours to use, and fn_mcxt lives
    // as long as the query (the executor's per-query context).
    unsafe {
        let flinfo = (*fcinfo).flinfo;
        if (*flinfo).fn_extra.is_null() {
            let index = PgMemoryContexts::For((*flinfo).fn_mcxt)
                .leak_and_drop_on_delete(ProblemIndex::default());
            (*flinfo).fn_extra = index.cast();
        }
        (*flinfo).fn_extra.cast()
    }
}

/// The bytes of a text or bytea argument, detoasted only when stored compressed or out of
/// line (a sourcedid never is: it is short). Called per attempt, so it avoids the FFI call.
///
/// # Safety
/// `datum` must be a non-null varlena datum.
unsafe fn varlena_bytes<'a>(datum: pg_sys::Datum) -> &'a [u8] {
    let mut ptr = datum.cast_mut_ptr::<pg_sys::varlena>();
    // SAFETY: per the contract; a detoasted copy lives in the per-call memory.
    unsafe {
        if pgrx::varlena::varatt_is_4b_c(ptr) || pgrx::varlena::varatt_is_1b_e(ptr) {
            ptr = pg_sys::pg_detoast_datum_packed(ptr);
        }
        pgrx::varlena::varlena_to_byte_slice(ptr)
    }
}

/// Transition function of `lms_etl.learner_day(text, text, boolean, timestamptz)`: adds one
/// attempt to the learner's state. It runs once per attempt, and pgrx's conversion of five
/// typed arguments cost more than the work (~300 ns an attempt; BENCHMARKS.md, benchmark 5),
/// so it reads its arguments from `fcinfo` itself and declares its SQL signature by hand.
#[pg_extern(sql = r#"
CREATE FUNCTION lms_etl.learner_day_accum(
    "state" internal, "sourcedid" text, "attempt_type" text, "is_correct" boolean,
    "created_at" timestamp with time zone)
RETURNS internal
PARALLEL SAFE
LANGUAGE c
AS '@MODULE_PATHNAME@', '@FUNCTION_NAME@';
"#)]
fn learner_day_accum(fcinfo: pg_sys::FunctionCallInfo) -> Internal {
    const WHAT: &str = "lms_etl.learner_day_accum";
    // SAFETY: PostgreSQL calls this with the five arguments of the SQL signature above.
    let (state, sourcedid, attempt_type, is_correct, created_at) = unsafe {
        if (*fcinfo).nargs != 5 {
            error!("{WHAT}: called with {} arguments, not 5", (*fcinfo).nargs);
        }
        let arg = |n| pgrx::fcinfo::pg_getarg_datum(fcinfo, n);
        (
            Internal::from(arg(0)),
            arg(1).map(|d| varlena_bytes(d)),
            arg(2).map(|d| varlena_bytes(d)),
            arg(3).map(|d| d.value() != 0),
            arg(4).map(|d| d.value() as i64),
        )
    };
    let problems = query_problems(fcinfo);
    let mut state = state_or_new(state, fcinfo, || LearnerDay::new(problems), WHAT);
    // SAFETY: an initialized state is an aggregate state; ours carry MAGIC.
    let day = unsafe { checked_state::<LearnerDay>(&mut state, MAGIC, WHAT) }
        .expect("an initialized state");
    // SAFETY: the index lives in per-query memory, and this call is its only user now.
    let index = unsafe { &mut *problems };
    let problem = sourcedid
        .filter(|s| s.len() <= MAX_SOURCEDID_BYTES)
        .and_then(|s| index.problem_of_bytes(s));
    let flags = match attempt_type {
        Some(b"run") => RUN,
        Some(b"submit") => SUBMIT,
        _ => 0,
    } | if is_correct == Some(true) { CORRECT } else { 0 }
        | if created_at.is_some() { HAS_TIME } else { 0 };
    day.events.push(Event {
        problem: problem.unwrap_or(NO_PROBLEM),
        flags,
        at: created_at.unwrap_or(0),
    });
    state
}

/// Final function: the learner's tallies by problem, encoded.
#[pg_extern(parallel_safe)]
fn learner_day_final(state: Internal) -> Option<Vec<u8>> {
    let mut state = state;
    // SAFETY: an initialized state is an aggregate state; ours carry MAGIC.
    let day =
        unsafe { checked_state::<LearnerDay>(&mut state, MAGIC, "lms_etl.learner_day_final") }?;
    Some(day.encode())
}

// Parallel aggregation: workers tally their share of a learner's attempts, send the state
// encoded, and the leader merges the parts. A day is then scanned by all cores, as the plain
// count is.

/// Serial function: a worker's state, encoded.
#[pg_extern(parallel_safe, strict)]
fn learner_day_serialize(state: Internal) -> Vec<u8> {
    let mut state = state;
    // SAFETY: an initialized state is an aggregate state; ours carry MAGIC.
    unsafe { checked_state::<LearnerDay>(&mut state, MAGIC, "lms_etl.learner_day_serialize") }
        .expect("a strict function's state")
        .encode()
}

/// Deserial function: a state from its encoding, in the current (per-row) memory, where
/// PostgreSQL expects it; the combine function copies what it keeps.
#[pg_extern(parallel_safe, strict)]
fn learner_day_deserialize(
    encoded: &[u8],
    _unused: Internal,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    let mut day = LearnerDay::new(query_problems(fcinfo));
    // SAFETY: the index lives in per-query memory, and this call is its only user now.
    let index = unsafe { &mut *day.problems };
    let decoded = decode(encoded, |problem, tally| {
        let n = problem.map(|(course_id, block_id)| index.number_of(course_id, block_id));
        day.merged.entry(n).or_default().merge(&tally);
    });
    if let Err(e) = decoded {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_BINARY_REPRESENTATION,
            format!(
                "lms_etl.learner_day_deserialize: at byte {}: expected {}",
                e.position, e.expected
            )
        );
    }
    let ptr = PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(day);
    Internal::from(Some(pg_sys::Datum::from(ptr)))
}

/// Combine function: merges `other` into `state` (a new state in the aggregate's memory when
/// `state` is NULL: `other` may live in per-row memory).
#[pg_extern(parallel_safe)]
fn learner_day_combine(
    state: Internal,
    other: Internal,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    const WHAT: &str = "lms_etl.learner_day_combine";
    let mut other = other;
    // SAFETY: an initialized state is an aggregate state; ours carry MAGIC.
    let Some(other) = (unsafe { checked_state::<LearnerDay>(&mut other, MAGIC, WHAT) }) else {
        return state;
    };
    let problems = other.problems;
    let mut state = state_or_new(state, fcinfo, || LearnerDay::new(problems), WHAT);
    // SAFETY: as above.
    let day = unsafe { checked_state::<LearnerDay>(&mut state, MAGIC, WHAT) }
        .expect("an initialized state");
    day.merge(other);
    state
}

/// Version byte of the encoding: a value from another version is refused, not misread.
const VERSION: u8 = 1;
const NULL_KEY: u32 = u32::MAX;
const HAS_FIRST_SUBMIT: u8 = 1;
const HAS_FIRST_SUCCESS: u8 = 2;

/// `VERSION`, then per problem: course_id and block_id, each as its length in u32 LE and
/// its bytes (one `NULL_KEY` length for the NULL problem); attempts, runs, submits,
/// successful as u32 LE; a flags byte; the two instants as i64 LE (0 when absent).
pub fn encode<'a>(entries: impl Iterator<Item = (Option<&'a Problem>, &'a Tally)>) -> Vec<u8> {
    let mut out = vec![VERSION];
    let put = |text: &str, out: &mut Vec<u8>| {
        // Sourcedids are capped at MAX_SOURCEDID_BYTES, so their parts are too.
        let len = u32::try_from(text.len()).expect("a part of a capped sourcedid");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    };
    for (problem, t) in entries {
        match problem {
            Some(p) => {
                put(&p.course_id, &mut out);
                put(&p.block_id, &mut out);
            }
            None => out.extend_from_slice(&NULL_KEY.to_le_bytes()),
        }
        for n in [t.attempts, t.runs, t.submits, t.successful] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        let flags = u8::from(t.first_submit.is_some()) * HAS_FIRST_SUBMIT
            + u8::from(t.first_success.is_some()) * HAS_FIRST_SUCCESS;
        out.push(flags);
        out.extend_from_slice(&t.first_submit.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&t.first_success.unwrap_or(0).to_le_bytes());
    }
    out
}

/// Where an encoded value stops making sense.
#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub position: usize,
    pub expected: &'static str,
}

/// Calls `each` with every ((course_id, block_id), tally) of an encoded value, checking it
/// as it goes.
pub fn decode<'a>(
    bytes: &'a [u8],
    mut each: impl FnMut(Option<(&'a str, &'a str)>, Tally),
) -> Result<(), DecodeError> {
    let mut at = 0;
    let take = |at: &mut usize, n: usize, expected| {
        let end = at.checked_add(n).filter(|&e| e <= bytes.len());
        let end = end.ok_or(DecodeError {
            position: *at,
            expected,
        })?;
        let slice = &bytes[*at..end];
        *at = end;
        Ok::<_, DecodeError>(slice)
    };
    let u32_at = |at: &mut usize, expected| {
        take(at, 4, expected).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    if take(&mut at, 1, "the version byte")? != [VERSION] {
        return Err(DecodeError {
            position: 0,
            expected: "version 1",
        });
    }
    let text = |at: &mut usize, len: u32| {
        let start = *at;
        let raw = take(at, len as usize, "a key's bytes")?;
        std::str::from_utf8(raw).map_err(|_| DecodeError {
            position: start,
            expected: "a UTF-8 key",
        })
    };
    while at < bytes.len() {
        let key = match u32_at(&mut at, "a key length")? {
            NULL_KEY => None,
            len => {
                let course_id = text(&mut at, len)?;
                let len = u32_at(&mut at, "a key length")?;
                Some((course_id, text(&mut at, len)?))
            }
        };
        let mut counts = [0u32; 4];
        for n in &mut counts {
            *n = u32_at(&mut at, "a count")?;
        }
        let flags_at = at;
        let flags = take(&mut at, 1, "a flags byte")?[0];
        if flags & !(HAS_FIRST_SUBMIT | HAS_FIRST_SUCCESS) != 0 {
            return Err(DecodeError {
                position: flags_at,
                expected: "flags 0-3",
            });
        }
        let mut instant = |flag| {
            let v =
                i64::from_le_bytes(take(&mut at, 8, "an instant")?.try_into().expect("8 bytes"));
            Ok::<_, DecodeError>((flags & flag != 0).then_some(v))
        };
        let first_submit = instant(HAS_FIRST_SUBMIT)?;
        let first_success = instant(HAS_FIRST_SUCCESS)?;
        let [attempts, runs, submits, successful] = counts;
        each(
            key,
            Tally {
                attempts,
                runs,
                submits,
                successful,
                first_submit,
                first_success,
            },
        );
    }
    Ok(())
}

#[cfg(test)]
mod codec_tests {
    use super::*;

    fn sample() -> Vec<(Option<Problem>, Tally)> {
        vec![
            (
                Some(Problem {
                    course_id: "course-v1:A+B+C".into(),
                    block_id: "é".into(),
                }),
                Tally {
                    attempts: 3,
                    runs: 1,
                    submits: 2,
                    successful: 1,
                    first_submit: Some(-5),
                    first_success: Some(7),
                },
            ),
            (
                None,
                Tally {
                    attempts: 1,
                    runs: 1,
                    ..Tally::default()
                },
            ),
        ]
    }

    #[test]
    fn decodes_what_it_encodes() {
        let entries = sample();
        let bytes = encode(entries.iter().map(|(k, t)| (k.as_ref(), t)));
        let mut back = Vec::new();
        decode(&bytes, |k, t| {
            let problem = k.map(|(c, b)| Problem {
                course_id: c.into(),
                block_id: b.into(),
            });
            back.push((problem, t));
        })
        .unwrap();
        assert_eq!(back, entries);
    }

    #[test]
    fn every_cut_or_corruption_is_an_error_not_a_panic() {
        let entries = sample();
        let bytes = encode(entries.iter().map(|(k, t)| (k.as_ref(), t)));
        for cut in 0..bytes.len() {
            let result = decode(&bytes[..cut], |_, _| {});
            // Cutting between two entries leaves a valid, shorter value.
            assert!(cut == 0 || result.is_ok() || result.unwrap_err().position <= cut);
        }
        for i in 0..bytes.len() {
            for v in [0u8, 0x7f, 0xff] {
                let mut bad = bytes.clone();
                bad[i] = v;
                let _ = decode(&bad, |_, _| {});
            }
        }
        assert!(decode(&[], |_, _| {}).is_err());
        assert!(decode(&[2], |_, _| {}).is_err());
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn no_rows_give_null() {
        let value = Spi::get_one::<Vec<u8>>(
            "SELECT lms_etl.learner_day(NULL::text, 'run', NULL::boolean, now()) WHERE false",
        )
        .unwrap();
        assert_eq!(value, None);
    }

    #[pg_test]
    fn the_support_functions_are_not_for_public_use() {
        // CREATE AGGREGATE needs EXECUTE on them: nobody but the owner can pair them with
        // another aggregate's state.
        let public = Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_proc p
              WHERE p.pronamespace = 'lms_etl'::regnamespace
                AND p.proname LIKE ANY (ARRAY['learner_day_%', 'problem_day_%'])
                AND p.prokind = 'f'
                AND has_function_privilege('public', p.oid, 'EXECUTE')",
        );
        assert_eq!(public, Ok(Some(0)));
        let revoked = Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_proc p
              WHERE p.pronamespace = 'lms_etl'::regnamespace
                AND p.proname LIKE ANY (ARRAY['learner_day_%', 'problem_day_%'])
                AND p.prokind = 'f'",
        );
        assert_eq!(
            revoked,
            Ok(Some(7)),
            "every support function is counted above"
        );
    }
}
