//! Robustness against hostile or broken input: nothing panics, every error points at a
//! char boundary inside the input, nesting is refused before it can exhaust the stack,
//! big inputs parse, and the memory a parse holds is bounded by a constant times the
//! input size, and the memory of streaming a body by its batch size (measured with a
//! counting global allocator in this test binary).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use lms_etl_parse::json::to_json;
use lms_etl_parse::pyrepr::{parse, ErrorKind, ParseError, Value, MAX_DEPTH};
use lms_etl_parse::{parse_chunk, parse_passback_params, split_records, BatchSplitter};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

// ---------------------------------------------------------------------------------------
// A global allocator that counts, per thread, the bytes live and their peak while a
// measurement is on. Per thread, so the other tests of this binary (run in parallel) do
// not disturb a measurement. A `realloc` is counted as old + new size at its peak: the
// allocator may have to copy, and then both blocks are live at once.

struct CountingAlloc;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = TRACKING.try_with(|tracking| {
        if tracking.get() {
            let live = LIVE.with(|l| {
                l.set(l.get() + delta);
                l.get()
            });
            PEAK.with(|p| p.set(p.get().max(live)));
        }
    });
}

// SAFETY: every call is forwarded to `System` unchanged; the counting touches only
// const-initialised thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize);
            count(-(layout.size() as isize));
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Runs `f` and returns the peak of bytes it had allocated and not yet freed (its result
/// included: it is dropped only after the measurement).
fn peak_bytes<R>(f: impl FnOnce() -> R) -> usize {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    TRACKING.with(|t| t.set(true));
    let result = std::hint::black_box(f());
    TRACKING.with(|t| t.set(false));
    drop(result);
    PEAK.with(|p| p.get()).max(0) as usize
}

/// The allocation bound of `pyrepr::parse` (and `parse_passback_params`, which wraps it):
/// at most `PARSE_BYTES_PER_INPUT_BYTE * n + PARSE_BYTES_FIXED` bytes live at peak for an
/// input of n bytes, valid or not (the input itself not counted).
///
/// Measured on x86_64 (`parse_memory_is_linear_in_input_size` prints it): 48.0 bytes per
/// input byte at worst, for dense containers of one-byte items (`[0,0,...]`, `(0,0,...)`,
/// `{0,0,...}`, `{0:0,...}`) just after their `Vec` doubled: a `Value` is 32 bytes per
/// two input bytes (a dict pair 64 per four), and the doubling holds the old and the new
/// block at once (counted as both live), 3x. A tuple or set copies its items into a second
/// `Vec` at the end, which costs no more than that. Strings borrow from the input (a 10 MB
/// plain string allocates nothing), escaped ones cost under 3 bytes per input byte. The
/// bound leaves a margin over 48 for changes in `Vec`'s growth.
const PARSE_BYTES_PER_INPUT_BYTE: usize = 56;
const PARSE_BYTES_FIXED: usize = 4096;

/// `parse_chunk`'s bound. Measured: 168 bytes per input byte at worst, for a chunk of
/// one-byte records `[0,0,...]`: each costs a `Result<Attempt, Rejection>`, its share of
/// the `Vec<&RawValue>` and a ~110-byte rejection message, for two input bytes. Real
/// records (~400 bytes each) stay under 1 byte per input byte.
const CHUNK_BYTES_PER_INPUT_BYTE: usize = 224;
const CHUNK_BYTES_FIXED: usize = 16384;

fn assert_parse_within_bound(what: &str, input: &str) -> f64 {
    let peak = peak_bytes(|| parse(input));
    let n = input.len();
    assert!(
        peak <= PARSE_BYTES_PER_INPUT_BYTE * n + PARSE_BYTES_FIXED,
        "{what}: {peak} bytes live at peak for {n} input bytes, over the bound {PARSE_BYTES_PER_INPUT_BYTE}·n + {PARSE_BYTES_FIXED}"
    );
    let peak_pb = peak_bytes(|| parse_passback_params(input));
    assert!(
        peak_pb <= PARSE_BYTES_PER_INPUT_BYTE * n + PARSE_BYTES_FIXED,
        "{what} via parse_passback_params: {peak_pb} bytes for {n}"
    );
    peak.max(peak_pb) as f64 / n.max(1) as f64
}

// ---------------------------------------------------------------------------------------
// Shared checks.

fn check_error_position(input: &str, e: &ParseError) -> Result<(), TestCaseError> {
    prop_assert!(
        e.pos <= input.len(),
        "error position {} past the end ({} bytes): {e}",
        e.pos,
        input.len()
    );
    prop_assert!(
        input.is_char_boundary(e.pos),
        "error position {} inside a character: {e}",
        e.pos
    );
    Ok(())
}

fn depth(v: &Value<'_>) -> usize {
    match v {
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
            1 + items.iter().map(depth).max().unwrap_or(0)
        }
        Value::Dict(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| depth(k).max(depth(v)))
                .max()
                .unwrap_or(0)
        }
        _ => 0,
    }
}

/// Every entry point on one input: no panic, errors inside the input, JSON valid.
fn exercise(input: &str) -> Result<(), TestCaseError> {
    match parse(input) {
        Ok(value) => {
            prop_assert!(depth(&value) <= MAX_DEPTH);
            if let Ok(json) = to_json(&value) {
                // serde_json stops at 128 levels by itself; deeper JSON is checked elsewhere.
                if depth(&value) < 128 {
                    let parsed = serde_json::from_str::<serde_json::Value>(&json);
                    prop_assert!(
                        parsed.is_ok(),
                        "invalid JSON {json:?} from {input:?}: {parsed:?}"
                    );
                }
            }
        }
        Err(e) => check_error_position(input, &e)?,
    }
    match parse_passback_params(input) {
        Ok(_) => {}
        Err(e) => {
            if let Some(pos) = e.position() {
                prop_assert!(
                    pos <= input.len() && input.is_char_boundary(pos),
                    "passback error position {pos}: {e}"
                );
            }
        }
    }
    Ok(())
}

/// `parse_chunk` on a chunk: no panic, one result per record, rejections keep their index
/// and point into the chunk.
fn exercise_chunk(chunk: &str) -> Result<(), TestCaseError> {
    if let Ok(results) = parse_chunk(chunk) {
        let range = chunk.as_bytes().as_ptr_range();
        for (i, result) in results.iter().enumerate() {
            if let Err(rejection) = result {
                prop_assert_eq!(rejection.index, i);
                let raw = rejection.raw.as_bytes().as_ptr_range();
                prop_assert!(
                    range.start <= raw.start && raw.end <= range.end,
                    "rejection.raw is not a slice of the chunk"
                );
                prop_assert!(!rejection.reason.is_empty());
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Generators.

/// Fragments of the grammar, glued at random: reaches far more parser states than bytes.
#[rustfmt::skip]
const TOKENS: &[&str] = &[
    "[", "]", "{", "}", "(", ")", ",", ":", " ", "\n", "\t", "'", "\"", "'''", "\"\"\"", "\\",
    "\\\\", "\\'", "\\x", "\\x4", "\\x41", "\\u", "\\u00e9", "\\ud83d", "\\ude00", "\\U0001F600",
    "\\U00110000", "\\N{DASH}", "\\0", "\\777", "\\\n", "\\\r\n", "\\q", "None", "True", "False",
    "inf", "nan", "-", "+", "0", "1", "007", "1_000", "1__0", "_1", "1e", "1e5", "e-5", ".", ".5",
    "1.", "0x1f", "1j", "a", "os", "__import__", "b", "é", "😀", "\u{0}", "\u{85}", "\u{2028}",
    "'a'", "'é'", "{'a': 1}", "()", "(1,)",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..48).prop_map(|t| t.concat())
}

const PASSBACK_SEEDS: &[&str] = &[
    "{'oauth_consumer_key': '', 'lis_result_sourcedid': 'course-v1:SkillFactory+DST-3.0+28FEB2021:lms.skillfactory.ru-ca3ecf8e5f284c329eb7bd529e1a9f7e:3f4a2c4ba6bb5ad9ad8ea2a8ad29ea52', 'lis_outcome_service_url': 'https://lms.skillfactory.ru/courses/course-v1:SkillFactory+DST-3.0+28FEB2021/xblock/block-v1:SkillFactory+DST-3.0+28FEB2021+type@lti+block@ca3ecf8e5f284c329eb7bd529e1a9f7e/handler_noauth/grade_handler'}",
    "{'oauth_consumer_key': '', 'extra': [1, {'x': None}], 'lis_result_sourcedid': \"it's\"}",
    "{'oauth_consumer_key': None, 'lis_result_sourcedid': 'a\\'b\\\\c\\x00\\u00e9\\U0001f600', 'lis_outcome_service_url': 'é😀', 'n': (1, 2.5, -0.0, inf, 1e-05)}",
    "{}",
];

#[derive(Debug, Clone)]
enum Mutation {
    FlipByte(usize, u8),
    Truncate(usize),
    Insert(usize, &'static str),
    Delete(usize, usize),
    Repeat(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        3 => (at, any::<u8>()).prop_map(|(i, b)| Mutation::FlipByte(i, b)),
        1 => at.prop_map(Mutation::Truncate),
        4 => (at, prop::sample::select(TOKENS)).prop_map(|(i, t)| Mutation::Insert(i, t)),
        1 => (at, 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => (at, 1usize..16, 2usize..40).prop_map(|(i, n, times)| Mutation::Repeat(i, n, times)),
    ]
}

fn mutate(seed: &str, mutations: &[Mutation]) -> String {
    let mut bytes = seed.as_bytes().to_vec();
    for m in mutations {
        let len = bytes.len();
        let pos = |i: usize| if len == 0 { 0 } else { i % (len + 1) };
        match *m {
            Mutation::FlipByte(i, b) if len > 0 => bytes[i % len] ^= b,
            Mutation::FlipByte(..) => {}
            Mutation::Truncate(i) => bytes.truncate(pos(i)),
            Mutation::Insert(i, token) => {
                let at = pos(i);
                bytes.splice(at..at, token.bytes());
            }
            Mutation::Delete(i, n) => {
                let at = pos(i);
                bytes.drain(at..(at + n).min(len));
            }
            Mutation::Repeat(i, n, times) => {
                let at = pos(i);
                let piece = bytes[at..(at + n).min(len)].to_vec();
                for _ in 1..times {
                    bytes.splice(at..at, piece.iter().copied());
                }
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn mutated_passback() -> impl Strategy<Value = String> {
    (
        prop::sample::select(PASSBACK_SEEDS),
        prop::collection::vec(mutation(), 1..6),
    )
        .prop_map(|(seed, m)| mutate(seed, &m))
}

/// A JSON chunk of records whose `passback_params` is the given text.
fn chunk_with_passback(passback: &str) -> String {
    let good = r#"{"lti_user_id": "3f4a2c4ba6bb5ad9ad8ea2a8ad29ea52", "passback_params": "{'oauth_consumer_key': '', 'lis_result_sourcedid': 'course-v1:SF+DST+1:lms-b:3f4a', 'lis_outcome_service_url': ''}", "is_correct": 1, "attempt_type": "submit", "created_at": "2026-11-24 10:11:12.123456"}"#;
    let passback = serde_json::to_string(passback).expect("a str serialises");
    format!(
        r#"[{good}, {{"lti_user_id": "u", "passback_params": {passback}, "is_correct": null, "attempt_type": "run", "created_at": "2026-11-24T10:11:12"}}]"#
    )
}

fn mutated_chunk() -> impl Strategy<Value = String> {
    let seed = chunk_with_passback(PASSBACK_SEEDS[2]);
    prop::collection::vec(mutation(), 1..6).prop_map(move |m| mutate(&seed, &m))
}

// ---------------------------------------------------------------------------------------
// Properties.

fn config(cases: u32) -> ProptestConfig {
    // Integration tests have no lib.rs for proptest to find: keep failures beside this file.
    let persistence = FileFailurePersistence::WithSource("proptest-regressions");
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(persistence)),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn arbitrary_bytes_never_panic_and_errors_point_inside_the_input(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let input = String::from_utf8_lossy(&bytes);
        exercise(&input)?;
        exercise_chunk(&input)?;
    }

    #[test]
    fn grammar_fragments_in_any_order_never_panic_and_errors_point_inside_the_input(input in token_soup()) {
        exercise(&input)?;
        exercise(&format!("{{'oauth_consumer_key': {input}}}"))?;
        exercise_chunk(&chunk_with_passback(&input))?;
    }

    #[test]
    fn mutated_passback_dicts_never_panic_and_errors_point_inside_the_input(input in mutated_passback()) {
        exercise(&input)?;
        exercise_chunk(&chunk_with_passback(&input))?;
    }

    #[test]
    fn mutated_record_chunks_never_panic_and_rejections_point_into_the_chunk(chunk in mutated_chunk()) {
        exercise_chunk(&chunk)?;
    }

    #[test]
    fn random_input_stays_within_the_allocation_bound(input in prop_oneof![token_soup(), mutated_passback()]) {
        let n = input.len();
        let peak = peak_bytes(|| parse(&input));
        prop_assert!(peak <= PARSE_BYTES_PER_INPUT_BYTE * n + PARSE_BYTES_FIXED, "{peak} bytes for {n}: {input:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Nesting.

/// Runs `f` on a thread with a small stack, so a parser that recursed into hostile
/// nesting would overflow here. Measured stack use at the deepest accepted nesting
/// (MAX_DEPTH = 256 levels): release about 0.5-0.7 KiB per level (at most ~171 KiB);
/// debug about 1.9-4.3 KiB per level (at most ~1.07 MiB, for nested sets `{1, {1, ...`).
/// So 512 KiB in release and 2 MiB (PostgreSQL's default `max_stack_depth`) in debug;
/// following 100 000 openers would take tens of MiB either way.
const SMALL_STACK: usize = if cfg!(debug_assertions) {
    2 << 20
} else {
    512 << 10
};

fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no panic or overflow")
}

fn assert_too_deep(input: &str, opener_len: usize) {
    let e = parse(input).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooDeep, "{e}");
    // The refused opener is the first one past MAX_DEPTH levels.
    assert_eq!(e.pos, MAX_DEPTH * opener_len, "{e}");
    assert!(matches!(parse_passback_params(input), Err(pe) if pe.position() == Some(e.pos)));
}

#[test]
fn hundred_thousand_openers_of_each_kind_are_too_deep_not_a_stack_overflow() {
    on_small_stack(|| {
        for opener in ["[", "{", "(", "[{(", "{'a':", "{'a': [(", "{1, ", "[0, "] {
            let input = opener.repeat(100_000);
            // Openers of mixed widths: the limit falls after MAX_DEPTH containers.
            let containers_per_opener = opener.matches(['[', '{', '(']).count();
            let e = parse(&input).unwrap_err();
            assert_eq!(e.kind, ErrorKind::TooDeep, "{opener}: {e}");
            let levels_before = MAX_DEPTH;
            let openers_before = levels_before / containers_per_opener;
            let rest = levels_before % containers_per_opener;
            let in_last = opener
                .match_indices(['[', '{', '('])
                .nth(rest)
                .expect("opener")
                .0;
            assert_eq!(e.pos, openers_before * opener.len() + in_last, "{opener}");
        }
        assert_too_deep(&"[".repeat(100_000), 1);
        assert_too_deep(&"{'a':".repeat(100_000), 5);
        // Closed as well as open: still refused, not parsed.
        let closed = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse(&closed).unwrap_err().kind, ErrorKind::TooDeep);
    });
}

#[test]
fn the_deepest_accepted_nesting_parses_converts_and_drops_on_a_small_stack() {
    on_small_stack(|| {
        let levels = MAX_DEPTH;
        let input = format!(
            "{}1{}",
            "[{'k': (".repeat(levels / 3),
            ",)}]".repeat(levels / 3)
        );
        let value = parse(&input).unwrap();
        assert_eq!(depth(&value), levels / 3 * 3);
        let json = to_json(&value).unwrap();
        assert_eq!(
            json,
            format!(
                "{}1{}",
                "[{\"k\":[".repeat(levels / 3),
                "]}]".repeat(levels / 3)
            )
        );
        let list = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        assert_eq!(depth(&parse(&list).unwrap()), levels);
        let one_more = format!("[{list}]");
        assert_eq!(parse(&one_more).unwrap_err().kind, ErrorKind::TooDeep);
    });
}

#[test]
fn deep_passback_inside_a_record_is_a_rejection_naming_the_depth() {
    let chunk = chunk_with_passback(&format!("{{'oauth_consumer_key': {}", "[".repeat(100_000)));
    let results = parse_chunk(&chunk).unwrap();
    assert!(results[0].is_ok());
    let rejection = results[1].as_ref().unwrap_err();
    assert!(
        rejection.reason.contains("nesting deeper than"),
        "{}",
        rejection.reason
    );
}

// ---------------------------------------------------------------------------------------
// Size.

#[test]
fn a_ten_megabyte_string_literal_parses_without_a_copy() {
    let body = "x".repeat(10 << 20);
    let input = format!("'{body}'");
    let peak = peak_bytes(|| {
        let Value::Str(s) = parse(&input).unwrap() else {
            panic!("not a str")
        };
        assert_eq!(s.len(), 10 << 20);
        assert!(matches!(s, std::borrow::Cow::Borrowed(_)));
    });
    assert!(peak < 4096, "{peak} bytes allocated for a plain string");
    let passback = format!("{{'lis_result_sourcedid': {input}}}");
    assert_eq!(
        parse_passback_params(&passback)
            .unwrap()
            .lis_result_sourcedid
            .unwrap()
            .len(),
        10 << 20
    );
}

#[test]
fn a_ten_megabyte_escaped_string_parses() {
    let input = format!("'{}'", "\\x41\\n".repeat(2 << 20));
    let Value::Str(s) = parse(&input).unwrap() else {
        panic!("not a str")
    };
    assert_eq!(s.len(), 4 << 20);
    assert!(s.starts_with("A\nA\n"));
}

#[test]
fn a_million_element_list_parses() {
    let input = format!("[{}]", "1, ".repeat(1_000_000));
    let Value::List(items) = parse(&input).unwrap() else {
        panic!("not a list")
    };
    assert_eq!(items.len(), 1_000_000);
    assert!(items.iter().all(|v| *v == Value::Int("1".into())));
    let dict = format!(
        "{{{}}}",
        (0..1_000_000)
            .map(|i| format!("{i}: 'v', "))
            .collect::<String>()
    );
    let Value::Dict(entries) = parse(&dict).unwrap() else {
        panic!("not a dict")
    };
    assert_eq!(entries.len(), 1_000_000);
    assert!(to_json(&parse(&input).unwrap()).unwrap().len() > 2_000_000);
}

// ---------------------------------------------------------------------------------------
// Memory.

/// Inputs that repeat a unit `count` times, worst cases for the tree's size, valid and not.
fn sized_inputs(count: usize) -> Vec<(&'static str, String)> {
    let rep = |unit: &str| unit.repeat(count);
    let trimmed = |s: String| s.trim_end_matches(',').to_owned();
    vec![
        ("dense list", format!("[{}]", trimmed(rep("0,")))),
        ("spaced list", format!("[{}]", trimmed(rep("0, ")))),
        ("dense tuple", format!("({})", trimmed(rep("0,")))),
        ("dense set", format!("{{{}}}", trimmed(rep("0,")))),
        ("dense dict", format!("{{{}}}", trimmed(rep("0:0,")))),
        ("list of empty lists", format!("[{}]", trimmed(rep("[],")))),
        ("list of empty tuples", format!("[{}]", trimmed(rep("(),")))),
        ("list of pairs", format!("[{}]", trimmed(rep("[0,0],")))),
        ("nested dicts", format!("[{}]", trimmed(rep("{0:{0:0}},")))),
        ("escaped string", format!("'{}'", rep("\\x00"))),
        ("adjacent strings", rep("'a' ")),
        ("plain string", format!("'{}'", rep("a"))),
        ("huge int", rep("7")),
        ("negative ints", format!("[{}]", trimmed(rep("-1,")))),
        (
            "passback with many keys",
            format!("{{{}}}", trimmed(rep("'a': None,"))),
        ),
        ("unclosed list", format!("[{}", rep("0,"))),
        ("unclosed tuple", format!("({}", rep("0,"))),
        ("unclosed set", format!("{{{}", rep("0,"))),
        ("dict broken at the end", format!("{{{}0:x}}", rep("0:0,"))),
        ("unterminated escaped string", format!("'{}", rep("\\x00"))),
        ("unterminated adjacent strings", format!("{}'", rep("'a' "))),
        ("bad number", format!("{}x", rep("1"))),
        ("long name", rep("a")),
        ("bad escape at the end", format!("'{}\\x4'", rep("\\x00"))),
    ]
}

#[test]
fn parse_memory_is_linear_in_input_size() {
    let mut worst = (0.0f64, "", 0usize);
    // Just past a power of two is the worst case: a `Vec` has just doubled.
    for count in [
        1,
        2,
        3,
        33,
        1000,
        1025,
        4097,
        1 << 16,
        (1 << 16) + 1,
        (1 << 18) + 1,
        3 << 17,
    ] {
        for (what, input) in sized_inputs(count) {
            let ratio = assert_parse_within_bound(what, &input);
            if input.len() >= 1024 && ratio > worst.0 {
                worst = (ratio, what, input.len());
            }
        }
    }
    eprintln!("worst peak/input ratio for inputs of 1 KiB or more: {:.1} bytes per input byte ({} of {} bytes)", worst.0, worst.1, worst.2);
}

#[test]
fn chunk_memory_is_linear_in_input_size() {
    let mut worst = (0.0f64, "", 0usize);
    for records in [1usize, 100, 1025, 10_000, 16_385] {
        let repeat = |record: &str| format!("[{}]", vec![record; records].join(","));
        let one = chunk_with_passback(PASSBACK_SEEDS[0]);
        let chunks = [
            ("empty records", repeat("{}")),
            ("one-digit records", repeat("0")),
            ("empty-list records", repeat("[]")),
            ("good records", repeat(&one[1..one.len() - 1])),
            (
                "broken passback",
                chunk_with_passback(&format!("{{{}", "0,".repeat(records * 50))),
            ),
        ];
        for (what, chunk) in chunks {
            let n = chunk.len();
            let peak = peak_bytes(|| parse_chunk(&chunk).unwrap());
            assert!(
                peak <= CHUNK_BYTES_PER_INPUT_BYTE * n + CHUNK_BYTES_FIXED,
                "{what}: {peak} bytes for {n}"
            );
            let ratio = peak as f64 / n as f64;
            if n >= 1024 && ratio > worst.0 {
                worst = (ratio, what, n);
            }
        }
    }
    eprintln!("worst parse_chunk peak/input ratio for chunks of 1 KiB or more: {:.1} bytes per input byte ({} of {} bytes)", worst.0, worst.1, worst.2);
}

/// Streams `body` through a `BatchSplitter` in pieces, dropping each batch as a loader
/// would once loaded; returns the peak bytes live (the body not counted) and the records.
fn stream_peak(body: &str, max_batch_bytes: usize, piece: usize) -> (usize, usize) {
    let mut records = 0;
    let peak = peak_bytes(|| {
        let mut splitter = BatchSplitter::new(max_batch_bytes);
        for piece in body.as_bytes().chunks(piece) {
            for batch in splitter.push(piece).unwrap() {
                records += batch.records;
            }
        }
        records += splitter.finish().unwrap().map_or(0, |b| b.records);
    });
    (peak, records)
}

#[test]
fn streaming_holds_about_one_batch_however_long_the_body() {
    const MAX: usize = 256 * 1024;
    const PIECE: usize = 16 * 1024;
    let one = chunk_with_passback(PASSBACK_SEEDS[0]);
    let records = [&one[1..one.len() - 1], "0", "{}"];
    // Bodies of 8 and 32 batches: the peak must not follow the body. Measured: 1.8 batches
    // at worst (470592 bytes, real records), the same for both sizes.
    for body_bytes in [8 * MAX, 32 * MAX] {
        for record in records {
            let body = format!(
                "[{}]",
                vec![record; body_bytes / (record.len() + 1)].join(",")
            );
            let (peak, seen) = stream_peak(&body, MAX, PIECE);
            assert_eq!(seen, split_records(&body).unwrap().len());
            // The batch being filled (grown by doubling up to the cap, old and new block
            // live at once while it grows) plus the batch handed over and not yet dropped.
            assert!(
                peak <= 3 * MAX + PIECE,
                "{seen} records of {} bytes: {peak} bytes live at peak, over 3 batches",
                record.len()
            );
            eprintln!(
                "streamed {} bytes in batches of {MAX}: peak {peak} bytes",
                body.len()
            );
        }
    }
}

#[test]
fn streaming_a_record_larger_than_a_batch_holds_about_that_record() {
    const MAX: usize = 64 * 1024;
    let huge = format!("{{\"s\":\"{}\"}}", "x".repeat(8 << 20));
    let body = format!("[1,{huge},2]");
    let (peak, seen) = stream_peak(&body, MAX, 16 * 1024);
    assert_eq!(seen, 3);
    // Gathered across pieces in one buffer that doubles (old and new block live at once),
    // then handed over as its own batch without a copy. Measured: 3.0 times the record,
    // just past a power of two (8 MiB + 8 bytes), all of it the last doubling.
    assert!(
        peak <= 3 * huge.len() + 3 * MAX,
        "{peak} bytes live at peak for a record of {} bytes",
        huge.len()
    );
    eprintln!("a record of {} bytes: peak {peak} bytes", huge.len());
}
