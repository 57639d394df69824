//! `parse_chunk` on any input: no panic; a parsed chunk has one result per record, in
//! order, and each rejection keeps its record as a slice of the chunk.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lms_etl_parse::{parse_chunk, split_records};

fuzz_target!(|data: &[u8]| {
    let chunk = String::from_utf8_lossy(data);
    let Ok(results) = parse_chunk(&chunk) else {
        assert!(
            split_records(&chunk).is_err(),
            "parse_chunk failed where split_records did not"
        );
        return;
    };
    assert_eq!(
        results.len(),
        split_records(&chunk)
            .expect("split as parse_chunk did")
            .len()
    );
    let range = chunk.as_bytes().as_ptr_range();
    for (i, result) in results.iter().enumerate() {
        match result {
            Ok(a) => {
                assert!(!a.user_id.trim().is_empty());
                assert_eq!(a.is_correct.is_some(), a.attempt_type.as_str() == "submit");
            }
            Err(rejection) => {
                assert_eq!(rejection.index, i);
                let raw = rejection.raw.as_bytes().as_ptr_range();
                assert!(
                    range.start <= raw.start && raw.end <= range.end,
                    "raw is not a slice of the chunk"
                );
                assert!(!rejection.reason.is_empty());
            }
        }
    }
});
