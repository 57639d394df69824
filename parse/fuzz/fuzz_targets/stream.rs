//! `BatchSplitter` on any body fed in pieces of any size: no panic, the same answer however
//! the pieces fall, errors inside the body, batches within the cap, and agreement with
//! serde_json on which bodies are one array and what its records are.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lms_etl_parse::{Batch, BatchSplitter, SplitError, SplitErrorKind};
use serde::de::{Deserialize, IgnoredAny};
use serde_json::value::RawValue;

/// Feeds `body` in pieces of `piece` bytes: the batches (and records seen) or the error.
fn split(body: &[u8], max: usize, piece: usize) -> (Result<Vec<Batch>, SplitError>, usize) {
    let mut splitter = BatchSplitter::new(max);
    let mut batches = Vec::new();
    for piece in body.chunks(piece.max(1)) {
        match splitter.push(piece) {
            Ok(done) => batches.extend(done),
            Err(e) => return (Err(e), splitter.records_seen()),
        }
    }
    let seen = splitter.records_seen();
    let last = splitter.finish().map(|last| {
        batches.extend(last);
        batches
    });
    (last, seen)
}

/// serde_json's reading of the body as an array, without its 128-level limit (the
/// splitter's is 256).
fn serde_records(body: &[u8]) -> Option<Vec<&RawValue>> {
    let mut de = serde_json::Deserializer::from_slice(body);
    de.disable_recursion_limit();
    let records = Vec::<&RawValue>::deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(records)
}

fn is_json(text: &str) -> bool {
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    IgnoredAny::deserialize(&mut de).and_then(|_| de.end()).is_ok()
}

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the cap and the piece size; the rest is the body.
    let Some((&[cap, piece], body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let max = usize::from(cap) * 4;
    let (result, seen) = split(body, max, usize::from(piece));
    assert_eq!(
        split(body, max, body.len()),
        (result.clone(), seen),
        "pieces changed the answer"
    );
    let batches = match result {
        Err(e) => {
            assert!(e.offset <= body.len(), "error past the end: {e}");
            if e.kind != SplitErrorKind::TooDeep {
                assert!(serde_records(body).is_none(), "valid body refused: {e}");
            }
            return;
        }
        Ok(batches) => batches,
    };
    let mut first_index = 0;
    for batch in &batches {
        assert_eq!(batch.first_index, first_index);
        assert!(batch.records > 0);
        assert!(batch.json.len() <= max || batch.records == 1);
        first_index += batch.records;
    }
    assert_eq!(first_index, seen);
    // With a cap of 0 every batch is `[` + one record + `]`.
    let (singles, _) = split(body, 0, body.len());
    let records: Vec<&str> = match &singles {
        Ok(singles) => singles.iter().map(|b| &b.json[1..b.json.len() - 1]).collect(),
        Err(e) => panic!("accepted with one cap, refused with another: {e}"),
    };
    assert_eq!(records.len(), seen);
    match serde_records(body) {
        Some(raws) => {
            let raws: Vec<&str> = raws.iter().map(|r| r.get()).collect();
            assert_eq!(records, raws, "records differ from serde_json's");
        }
        // The splitter passes malformed records on, but only inside a sound array.
        None => assert!(
            !records.iter().all(|r| is_json(r)),
            "serde_json refuses the body, yet every record is valid JSON"
        ),
    }
});
