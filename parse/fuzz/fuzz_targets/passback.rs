//! `parse_passback_params` on any input: no panic, errors point inside the input, and it
//! agrees with `pyrepr::parse` on which inputs are acceptable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lms_etl_parse::parse_passback_params;
use lms_etl_parse::pyrepr::{parse, Value};

const KEYS: [&str; 3] = [
    "oauth_consumer_key",
    "lis_result_sourcedid",
    "lis_outcome_service_url",
];

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let result = parse_passback_params(&input);
    if let Err(e) = &result {
        if let Some(pos) = e.position() {
            assert!(
                pos <= input.len() && input.is_char_boundary(pos),
                "bad position {pos}: {e}"
            );
        }
    }
    // The same decision from the generic parse: a dict whose three keys hold str or None.
    let acceptable = match parse(&input) {
        Ok(Value::Dict(entries)) => entries.iter().all(|(k, v)| {
            !matches!(k, Value::Str(k) if KEYS.contains(&k.as_ref()))
                || matches!(v, Value::Str(_) | Value::None)
        }),
        _ => false,
    };
    assert_eq!(result.is_ok(), acceptable, "{result:?}");
    if let Ok(p) = result {
        // The last value of a key wins, as in Python.
        let Ok(Value::Dict(entries)) = parse(&input) else {
            unreachable!()
        };
        let last = |key: &str| {
            entries.iter().rev().find_map(|(k, v)| match (k, v) {
                (Value::Str(k), Value::Str(v)) if k == key => Some(Some(v.to_string())),
                (Value::Str(k), _) if k == key => Some(None),
                _ => None,
            })
        };
        assert_eq!(
            p.oauth_consumer_key.map(|s| s.into_owned()),
            last(KEYS[0]).flatten()
        );
        assert_eq!(
            p.lis_result_sourcedid.map(|s| s.into_owned()),
            last(KEYS[1]).flatten()
        );
        assert_eq!(
            p.lis_outcome_service_url.map(|s| s.into_owned()),
            last(KEYS[2]).flatten()
        );
    }
});
