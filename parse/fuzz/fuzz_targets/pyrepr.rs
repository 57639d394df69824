//! `pyrepr::parse` then `json::to_json` on any input: no panic, errors point at a char
//! boundary inside the input, and whatever converts is valid JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lms_etl_parse::json::to_json;
use lms_etl_parse::pyrepr::parse;
use serde::de::{Deserialize, IgnoredAny};

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    match parse(&input) {
        Ok(value) => {
            let Ok(json) = to_json(&value) else { return }; // a container as a dict key
            let mut de = serde_json::Deserializer::from_str(&json);
            de.disable_recursion_limit(); // nesting is bounded by MAX_DEPTH
            IgnoredAny::deserialize(&mut de)
                .and_then(|_| de.end())
                .unwrap_or_else(|e| panic!("invalid JSON ({e}): {json}"));
        }
        Err(e) => {
            assert!(e.pos <= input.len(), "error past the end: {e}");
            assert!(
                input.is_char_boundary(e.pos),
                "error inside a character: {e}"
            );
        }
    }
});
