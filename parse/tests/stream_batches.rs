//! `BatchSplitter` against serde_json: any array of JSON values, compact or pretty, fed in
//! pieces cut anywhere, comes out as batches within the cap holding the same records byte
//! for byte; any truncation is an error; and mutated bodies are accepted only when they are
//! structurally one array.

use lms_etl_parse::{split_records, Batch, BatchSplitter, SplitError, SplitErrorKind};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

// ---------------------------------------------------------------------------------------
// Generators.

/// Characters that matter to the splitter (quotes, backslashes, brackets, commas,
/// whitespace, control and multi-byte characters) and some that do not.
fn json_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => prop::sample::select(vec![
            '"', '\\', '[', ']', '{', '}', ',', ':', ' ', '\n', '\t', '\u{0}', '\u{1f}', 'a', '0',
            'é', '\u{2028}', '😀',
        ]),
        1 => any::<char>(),
    ]
}

fn json_string() -> impl Strategy<Value = String> {
    prop::collection::vec(json_char(), 0..12).prop_map(String::from_iter)
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Eighths print and parse back exactly (serde_json's float parsing is not
        // round-trip exact without its float_roundtrip feature).
        (-1_000_000i32..1_000_000).prop_map(|n| Value::from(f64::from(n) / 8.0)),
        json_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((json_string(), inner), 0..6)
                .prop_map(|entries| Value::Object(Map::from_iter(entries))),
        ]
    })
}

/// A body: the records serialized compact or pretty, maybe with whitespace around.
fn body() -> impl Strategy<Value = (Vec<Value>, String)> {
    (
        prop::collection::vec(json_value(), 0..16),
        any::<bool>(),
        prop::sample::select(vec!["", " ", "\n", "\r\n\t "]),
    )
        .prop_map(|(records, pretty, ws)| {
            let array = Value::Array(records.clone());
            let text = if pretty {
                serde_json::to_string_pretty(&array)
            } else {
                serde_json::to_string(&array)
            }
            .expect("a Value serialises");
            (records, format!("{ws}{text}{ws}"))
        })
}

/// Piece sizes, used in turn until the body is fed.
fn piece_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1usize..4, 1usize..64, 1usize..4096], 1..8)
}

/// What `split` got: the batches or the error, and the counters at the end.
#[derive(Debug, PartialEq)]
struct Split {
    result: Result<Vec<Batch>, SplitError>,
    records_seen: usize,
    bytes_seen: usize,
}

fn split(body: &[u8], max: usize, sizes: &[usize]) -> Split {
    let mut splitter = BatchSplitter::new(max);
    let mut batches = Vec::new();
    let mut rest = body;
    let mut sizes = sizes.iter().cycle();
    let failed = loop {
        if rest.is_empty() {
            break None;
        }
        let (piece, after) = rest.split_at((*sizes.next().unwrap_or(&1)).clamp(1, rest.len()));
        rest = after;
        match splitter.push(piece) {
            Ok(done) => batches.extend(done),
            Err(e) => break Some(e),
        }
    };
    let (records_seen, bytes_seen) = (splitter.records_seen(), splitter.bytes_seen());
    let result = match failed {
        Some(e) => Err(e),
        None => splitter.finish().map(|last| {
            batches.extend(last);
            batches
        }),
    };
    Split {
        result,
        records_seen,
        bytes_seen,
    }
}

/// The raw records of batches, checking each batch's own invariants on the way.
fn records_of(batches: &[Batch], max: usize) -> Result<Vec<String>, TestCaseError> {
    let mut records = Vec::new();
    for (n, batch) in batches.iter().enumerate() {
        let raws: Vec<&RawValue> = serde_json::from_str(&batch.json)
            .map_err(|e| TestCaseError::fail(format!("batch {n} is not JSON: {e}")))?;
        prop_assert!(batch.records > 0, "batch {n} is empty");
        prop_assert_eq!(raws.len(), batch.records, "batch {}", n);
        prop_assert_eq!(batch.first_index, records.len(), "batch {}", n);
        prop_assert!(
            batch.json.len() <= max || batch.records == 1,
            "batch {n} has {} records in {} bytes, over the cap {max}",
            batch.records,
            batch.json.len()
        );
        // No batch was handed over early: the next record would not have fitted.
        if let Some(next) = batches.get(n + 1) {
            let first: Vec<&RawValue> = serde_json::from_str(&next.json).unwrap_or_default();
            if let Some(first) = first.first() {
                prop_assert!(
                    batch.json.len() + 1 + first.get().len() > max,
                    "batch {n} ({} bytes) went before a record of {} bytes that fitted in {max}",
                    batch.json.len(),
                    first.get().len()
                );
            }
        }
        records.extend(raws.iter().map(|r| r.get().to_owned()));
    }
    Ok(records)
}

// ---------------------------------------------------------------------------------------
// Mutations: what a proxy, a bug or an attacker may do to a body.

#[rustfmt::skip]
const TOKENS: &[&str] = &[
    "[", "]", "{", "}", ",", ":", "\"", "\\", "\\\"", "\\\\", " ", "\n", "1", "-", "e", "null",
    "tru", "\"a\"", "{}", "[]", ",,", "\u{e9}", "\u{feff}",
];

#[derive(Debug, Clone)]
enum Mutation {
    FlipByte(usize, u8),
    Insert(usize, &'static str),
    Delete(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        2 => (at, any::<u8>()).prop_map(|(i, b)| Mutation::FlipByte(i, b)),
        3 => (at, prop::sample::select(TOKENS)).prop_map(|(i, t)| Mutation::Insert(i, t)),
        2 => (at, 1usize..8).prop_map(|(i, n)| Mutation::Delete(i, n)),
    ]
}

fn mutate(body: &str, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = body.as_bytes().to_vec();
    for m in mutations {
        let len = bytes.len();
        let pos = |i: usize| i % (len + 1);
        match *m {
            Mutation::FlipByte(i, b) if len > 0 => bytes[i % len] ^= b,
            Mutation::FlipByte(..) => {}
            Mutation::Insert(i, token) => {
                let at = pos(i);
                bytes.splice(at..at, token.bytes());
            }
            Mutation::Delete(i, n) => {
                let at = pos(i);
                bytes.drain(at..(at + n).min(len));
            }
        }
    }
    bytes
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
    #![proptest_config(config(2048))]

    #[test]
    fn every_body_splits_into_batches_holding_its_records_verbatim_in_order(
        (records, body) in body(),
        max in prop_oneof![0usize..16, 16usize..400, 400usize..4096],
        sizes in piece_sizes(),
    ) {
        let got = split(body.as_bytes(), max, &sizes);
        prop_assert_eq!(got.bytes_seen, body.len());
        prop_assert_eq!(got.records_seen, records.len());
        let batches = got.result.map_err(|e| TestCaseError::fail(format!("{e}\n{body}")))?;
        // Byte for byte the elements serde_json finds in the body...
        let expected: Vec<&str> = split_records(&body).expect("valid JSON").iter().map(|r| r.get()).collect();
        let raws = records_of(&batches, max)?;
        prop_assert_eq!(&raws, &expected);
        // ...and so the same values.
        for (raw, record) in raws.iter().zip(&records) {
            prop_assert_eq!(&serde_json::from_str::<Value>(raw).expect("valid JSON"), record);
        }
        // Where the pieces are cut changes nothing.
        prop_assert_eq!(split(body.as_bytes(), max, &[body.len()]), Split { result: Ok(batches), ..got });
    }

    #[test]
    fn every_truncation_of_a_body_is_an_error_at_its_end(
        (_, body) in body(),
        cut in any::<prop::sample::Index>(),
        sizes in piece_sizes(),
    ) {
        // Cut before the array's closing `]` (after it, only whitespace is lost).
        let close = body.trim_end().len();
        let cut = cut.index(close);
        let got = split(&body.as_bytes()[..cut], 64, &sizes);
        match got.result {
            Err(SplitError { offset, kind: SplitErrorKind::Unexpected { found: None, .. } }) => {
                prop_assert_eq!(offset, cut);
            }
            other => prop_assert!(false, "{cut} of {} bytes: {other:?}", body.len()),
        }
    }

    #[test]
    fn mutated_bodies_are_accepted_exactly_when_they_are_structurally_one_array(
        (_, body) in body(),
        mutations in prop::collection::vec(mutation(), 1..4),
        max in 0usize..256,
        sizes in piece_sizes(),
    ) {
        let bytes = mutate(&body, &mutations);
        let got = split(&bytes, max, &sizes);
        // Pieces change nothing but how many bytes were fed before an error.
        let whole = split(&bytes, max, &[bytes.len()]);
        prop_assert_eq!((&whole.result, whole.records_seen), (&got.result, got.records_seen));
        let serde: Result<Vec<&RawValue>, _> = serde_json::from_slice(&bytes);
        match (&got.result, serde) {
            // What serde_json reads as an array, the splitter splits into the same records.
            (Ok(batches), Ok(raws)) => {
                let expected: Vec<&str> = raws.iter().map(|r| r.get()).collect();
                prop_assert_eq!(records_of(batches, max)?, expected);
            }
            (Err(e), Ok(_)) => prop_assert!(false, "valid body refused: {e}\n{:?}", String::from_utf8_lossy(&bytes)),
            // The splitter does not parse records: it may pass a malformed one (the database
            // quarantines or refuses it), but only inside an array that is otherwise sound.
            (Ok(_), Err(_)) => {
                // With a cap of 0 every batch is `[` + one record + `]`.
                let singles = split(&bytes, 0, &sizes).result.expect("accepted as before");
                let records: Vec<&str> = singles.iter().map(|b| &b.json[1..b.json.len() - 1]).collect();
                prop_assert!(
                    records.iter().any(|r| serde_json::from_str::<IgnoredAny>(r).is_err()),
                    "serde_json refuses the body, yet every record is valid JSON: {:?}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            (Err(e), Err(_)) => {
                prop_assert!(e.offset <= bytes.len(), "error past the end: {e}");
            }
        }
    }
}
