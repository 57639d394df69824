//! One chunk of the statistics API's answer: a JSON array of attempt records, each
//! validated into an [`Attempt`] or turned into a [`Rejection`] that names the field.

use std::borrow::Cow;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::passback::{parse_passback_params, PassbackParams};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptType {
    Run,
    Submit,
}

impl AttemptType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptType::Run => "run",
            AttemptType::Submit => "submit",
        }
    }
}

/// A valid record, ready for `lms_etl.attempts`.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt<'a> {
    pub user_id: Cow<'a, str>,
    pub passback: PassbackParams<'a>,
    pub is_correct: Option<bool>,
    pub attempt_type: AttemptType,
    pub created_at: NaiveDateTime,
}

/// A record that cannot be loaded: its raw JSON, its position in the chunk and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection<'a> {
    pub index: usize,
    pub raw: &'a str,
    /// A stable class of the problem (`created_at: not a timestamp`), for grouping in reports.
    pub kind: &'static str,
    /// The problem in full, naming the field and the value found.
    pub reason: String,
}

/// Why one record is invalid: its class and the full message.
#[derive(Debug)]
struct Problem {
    kind: &'static str,
    text: String,
}

fn problem(kind: &'static str, text: impl Into<String>) -> Problem {
    Problem {
        kind,
        text: text.into(),
    }
}

/// The whole chunk is unusable (not a JSON array): nothing in it can be attributed to a record.
#[derive(Debug, thiserror::Error)]
#[error("chunk is not a JSON array of records: {0}")]
pub struct ChunkError(#[from] serde_json::Error);

/// Splits a JSON array into its elements without parsing them, so a bad record
/// can be kept verbatim. Also the cheap check that a downloaded body is complete.
pub fn split_records(json: &str) -> Result<Vec<&RawValue>, ChunkError> {
    Ok(serde_json::from_str(json)?)
}

/// Validates every record of a chunk; the result has one entry per record, in order.
pub fn parse_chunk(json: &str) -> Result<Vec<Result<Attempt<'_>, Rejection<'_>>>, ChunkError> {
    let records = split_records(json)?;
    Ok(records
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            parse_record(raw).map_err(|p| Rejection {
                index,
                raw: raw.get(),
                kind: p.kind,
                reason: p.text,
            })
        })
        .collect())
}

#[derive(Deserialize)]
struct WireRecord<'a> {
    #[serde(default, borrow)]
    lti_user_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    passback_params: Option<&'a RawValue>,
    #[serde(default, borrow)]
    is_correct: Option<&'a RawValue>,
    #[serde(default, borrow)]
    attempt_type: Option<&'a RawValue>,
    #[serde(default, borrow)]
    created_at: Option<&'a RawValue>,
}

/// Most bytes `lti_user_id` and `lis_result_sourcedid` may hold together: the natural key's
/// btree row (at most 2704 bytes, stored uncompressed when the text does not compress) also
/// holds created_at, attempt_type and the row headers. Real records use ~170.
pub const MAX_KEY_TEXT_BYTES: usize = 2600;

/// Accepted `created_at` forms; the API writes the first.
const TIMESTAMP_FORMATS: [&str; 2] = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"];

fn parse_record(raw: &RawValue) -> Result<Attempt<'_>, Problem> {
    let wire: WireRecord<'_> = serde_json::from_str(raw.get()).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => problem(
            "record: not an attempt object",
            format!("expected a JSON object with the attempt fields: {e}"),
        ),
        _ => problem("record: malformed JSON", format!("malformed JSON: {e}")),
    })?;

    let user_id = required_str("lti_user_id", wire.lti_user_id)?;
    if user_id.trim().is_empty() {
        return Err(problem("lti_user_id: empty", "field `lti_user_id`: empty"));
    }

    let attempt_type = match required_str("attempt_type", wire.attempt_type)?.as_ref() {
        "run" => AttemptType::Run,
        "submit" => AttemptType::Submit,
        other => {
            return Err(problem(
                "attempt_type: not run or submit",
                format!(
                    "field `attempt_type`: expected 'run' or 'submit', found {}",
                    shown(other)
                ),
            ))
        }
    };

    let is_correct = match wire.is_correct.map(RawValue::get) {
        None => None,
        Some("1" | "true") => Some(true),
        Some("0" | "false") => Some(false),
        Some(other) => {
            return Err(problem(
                "is_correct: not 0/1/true/false/null",
                format!(
                    "field `is_correct`: expected 0, 1, true, false or null, found {}",
                    shown(other)
                ),
            ))
        }
    };
    match (attempt_type, is_correct) {
        (AttemptType::Run, Some(_)) => {
            return Err(problem(
                "is_correct: set for a run",
                "field `is_correct`: must be null for a run",
            ))
        }
        (AttemptType::Submit, None) => {
            return Err(problem(
                "is_correct: missing for a submit",
                "field `is_correct`: missing or null for a submit",
            ))
        }
        _ => {}
    }

    let created_text = required_str("created_at", wire.created_at)?;
    let created_at = parse_api_timestamp(&created_text)
        .or_else(|| {
            TIMESTAMP_FORMATS
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(&created_text, f).ok())
        })
        .filter(|t| (1..=9999).contains(&t.year()))
        .ok_or_else(|| {
            problem(
                "created_at: not a timestamp",
                format!(
                    "field `created_at`: expected a timestamp YYYY-MM-DD HH:MM:SS[.ffffff], found {}",
                    shown(&created_text)
                ),
            )
        })?;
    // PostgreSQL keeps microseconds: a finer value would be rounded, and two distinct
    // values could collide on the key. Refuse it rather than change it.
    if fraction_digits(&created_text) > 6 {
        return Err(problem(
            "created_at: finer than microseconds",
            format!(
                "field `created_at`: more than 6 fractional digits cannot be stored exactly, found {}",
                shown(&created_text)
            ),
        ));
    }

    // A null or absent passback_params loads as NULL columns: the three columns are optional.
    let passback = match wire.passback_params {
        None => PassbackParams::default(),
        Some(raw) => {
            let text = json_str(raw).ok_or_else(|| {
                problem(
                    "passback_params: not a string",
                    format!(
                        "field `passback_params`: expected a string, found {}",
                        shown(raw.get())
                    ),
                )
            })?;
            match text {
                Cow::Borrowed(text) => parse_passback_params(text),
                // Escaped JSON strings are rare; owning the fields keeps the borrow simple.
                Cow::Owned(text) => parse_passback_params(&text).map(into_owned),
            }
            .map_err(|e| {
                problem(
                    "passback_params: not a Python dict",
                    format!("field `passback_params`: {e}"),
                )
            })?
        }
    };

    // PostgreSQL text cannot hold NUL; loading it would cut or corrupt the value.
    let nul = |field: &str| {
        problem(
            "text: NUL character",
            format!(
                "field `{field}`: contains a NUL character, which PostgreSQL text cannot store"
            ),
        )
    };
    if user_id.contains('\0') {
        return Err(nul("lti_user_id"));
    }
    if let Some(key) = passback.key_with_nul() {
        return Err(nul(&format!("passback_params.{key}")));
    }
    // The natural key (created_at, user_id, attempt_type, lis_result_sourcedid) is a btree
    // index, whose rows PostgreSQL caps at 2704 bytes: one longer key fails the INSERT of
    // its whole chunk, every run again, so the watermark never passes it. Quarantine it.
    let sourcedid_len = passback
        .lis_result_sourcedid
        .as_ref()
        .map_or(0, |s| s.len());
    if user_id.len() + sourcedid_len > MAX_KEY_TEXT_BYTES {
        return Err(problem(
            "key: too long",
            format!(
                "fields `lti_user_id` and `passback_params.lis_result_sourcedid`: {} bytes together, more than the {MAX_KEY_TEXT_BYTES} the natural key can index",
                user_id.len() + sourcedid_len
            ),
        ));
    }

    Ok(Attempt {
        user_id,
        passback,
        is_correct,
        attempt_type,
        created_at,
    })
}

/// Fast path for the API's own `YYYY-MM-DD HH:MM:SS.ffffff` (chrono's format-string parser
/// costs more than the rest of a record's validation); anything else goes the general way.
fn parse_api_timestamp(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    if b.len() != 26
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'.'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let time =
        NaiveTime::from_hms_micro_opt(num(11..13)?, num(14..16)?, num(17..19)?, num(20..26)?)?;
    Some(date.and_time(time))
}

fn into_owned(p: PassbackParams<'_>) -> PassbackParams<'static> {
    let own = |f: Option<Cow<'_, str>>| f.map(|s| Cow::Owned(s.into_owned()));
    PassbackParams {
        oauth_consumer_key: own(p.oauth_consumer_key),
        lis_result_sourcedid: own(p.lis_result_sourcedid),
        lis_outcome_service_url: own(p.lis_outcome_service_url),
    }
}

fn required_str<'a>(
    field: &'static str,
    raw: Option<&'a RawValue>,
) -> Result<Cow<'a, str>, Problem> {
    let (missing, not_string) = match field {
        "lti_user_id" => ("lti_user_id: missing", "lti_user_id: not a string"),
        "attempt_type" => ("attempt_type: missing", "attempt_type: not a string"),
        _ => ("created_at: missing", "created_at: not a string"),
    };
    let raw = raw.ok_or_else(|| problem(missing, format!("field `{field}`: missing or null")))?;
    json_str(raw).ok_or_else(|| {
        problem(
            not_string,
            format!(
                "field `{field}`: expected a string, found {}",
                shown(raw.get())
            ),
        )
    })
}

/// Digits after the decimal point of a timestamp's seconds (0 without a fraction).
fn fraction_digits(text: &str) -> usize {
    text.rsplit_once('.').map_or(0, |(_, frac)| {
        frac.bytes().take_while(u8::is_ascii_digit).count()
    })
}

/// The string a JSON string literal holds, borrowed when it has no escapes.
fn json_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(text).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// A value quoted for a message, cut short so one huge field cannot flood a log.
fn shown(value: &str) -> String {
    const MAX: usize = 80;
    match value.char_indices().nth(MAX) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}...", &value[..cut]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"lti_user_id": "3f4a2c4ba6bb5ad9ad8ea2a8ad29ea52", "passback_params": "{'oauth_consumer_key': '', 'lis_result_sourcedid': 'course-v1:SF+DST+1:lms-b:3f4a', 'lis_outcome_service_url': ''}", "is_correct": 1, "attempt_type": "submit", "created_at": "2026-11-24 10:11:12.123456"}"#;

    fn reason(record: &str) -> String {
        let chunk = format!("[{record}]");
        let mut out = parse_chunk(&chunk).unwrap();
        out.remove(0).unwrap_err().reason
    }

    #[test]
    fn parses_a_good_record() {
        let chunk = format!("[{GOOD}]");
        let out = parse_chunk(&chunk).unwrap();
        let a = out[0].as_ref().unwrap();
        assert_eq!(a.user_id, "3f4a2c4ba6bb5ad9ad8ea2a8ad29ea52");
        assert_eq!(a.is_correct, Some(true));
        assert_eq!(a.attempt_type, AttemptType::Submit);
        assert_eq!(a.created_at.to_string(), "2026-11-24 10:11:12.123456");
        assert_eq!(
            a.passback.lis_result_sourcedid.as_deref(),
            Some("course-v1:SF+DST+1:lms-b:3f4a")
        );
    }

    #[test]
    fn accepts_booleans_and_runs_with_null() {
        let r = GOOD.replace("\"is_correct\": 1", "\"is_correct\": false");
        assert!(parse_chunk(&format!("[{r}]")).unwrap()[0].is_ok());
        let r = GOOD
            .replace("\"is_correct\": 1", "\"is_correct\": null")
            .replace("submit", "run");
        assert_eq!(
            parse_chunk(&format!("[{r}]")).unwrap()[0]
                .as_ref()
                .unwrap()
                .is_correct,
            None
        );
    }

    #[test]
    fn names_the_bad_field() {
        assert_eq!(
            reason(&GOOD.replace("\"3f4a2c4ba6bb5ad9ad8ea2a8ad29ea52\"", "null")),
            "field `lti_user_id`: missing or null"
        );
        assert_eq!(
            reason(&GOOD.replace("submit", "peek")),
            "field `attempt_type`: expected 'run' or 'submit', found \"peek\""
        );
        assert_eq!(
            reason(&GOOD.replace("\"is_correct\": 1", "\"is_correct\": 2")),
            "field `is_correct`: expected 0, 1, true, false or null, found \"2\""
        );
        assert!(reason(&GOOD.replace("2026-11-24 10", "2026-13-24 10"))
            .starts_with("field `created_at`: expected a timestamp"));
        assert!(
            reason(&GOOD.replace("'oauth_consumer_key': ''", "'oauth_consumer_key' 5"))
                .starts_with("field `passback_params`: at byte 22: expected ':'")
        );
        assert_eq!(reason("42"), "expected a JSON object with the attempt fields: invalid type: integer `42`, expected struct WireRecord at line 1 column 2");
        assert_eq!(
            reason(&GOOD.replace("\"is_correct\": 1, ", "")),
            "field `is_correct`: missing or null for a submit"
        );
    }

    #[test]
    fn keeps_the_raw_record_and_its_index() {
        let chunk = format!("[{GOOD}, {{\"lti_user_id\": 5}}]");
        let out = parse_chunk(&chunk).unwrap();
        let rej = out[1].as_ref().unwrap_err();
        assert_eq!((rej.index, rej.raw), (1, "{\"lti_user_id\": 5}"));
    }

    #[test]
    fn unescapes_json_strings() {
        let r = GOOD.replace("course-v1:SF", "course-v1:S\\u0046");
        let chunk = format!("[{r}]");
        let out = parse_chunk(&chunk).unwrap();
        assert_eq!(
            out[0]
                .as_ref()
                .unwrap()
                .passback
                .lis_result_sourcedid
                .as_deref(),
            Some("course-v1:SF+DST+1:lms-b:3f4a")
        );
    }

    #[test]
    fn the_fast_timestamp_path_agrees_with_chrono() {
        for t in [
            "2026-11-24 10:11:12.123456",
            "2024-02-29 23:59:59.999999",
            "0001-01-01 00:00:00.000000",
        ] {
            assert_eq!(
                parse_api_timestamp(t),
                NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").ok(),
                "{t}"
            );
        }
        for t in [
            "2026-02-29 10:11:12.123456",
            "2026-11-24 24:00:00.000000",
            "2026-11-24 10:11:12,123456",
            "2026-1x-24 10:11:12.123456",
        ] {
            assert_eq!(parse_api_timestamp(t), None, "{t}");
        }
        assert!(
            reason(&GOOD.replace("2026-11-24 10:11:12.123456", "0000-11-24 10:11:12.123456"))
                .contains("created_at")
        );
    }

    #[test]
    fn timestamps_finer_than_microseconds_are_rejected_not_rounded() {
        let r = GOOD.replace("10:11:12.123456", "10:11:12.1234567");
        let chunk = format!("[{r}]");
        let rej = parse_chunk(&chunk).unwrap().remove(0).unwrap_err();
        assert_eq!(rej.kind, "created_at: finer than microseconds");
        assert_eq!(
            rej.reason,
            "field `created_at`: more than 6 fractional digits cannot be stored exactly, found \"2026-11-24 10:11:12.1234567\""
        );
        // Six digits or fewer are exact.
        for t in ["10:11:12", "10:11:12.5", "10:11:12.123456"] {
            let r = GOOD.replace("10:11:12.123456", t);
            assert!(parse_chunk(&format!("[{r}]")).unwrap()[0].is_ok(), "{t}");
        }
    }

    #[test]
    fn every_rejection_has_a_stable_kind() {
        let kind = |record: &str| {
            let chunk = format!("[{record}]");
            parse_chunk(&chunk).unwrap().remove(0).unwrap_err().kind
        };
        assert_eq!(kind("42"), "record: not an attempt object");
        assert_eq!(
            kind(&GOOD.replace("\"3f4a2c4ba6bb5ad9ad8ea2a8ad29ea52\"", "null")),
            "lti_user_id: missing"
        );
        assert_eq!(
            kind(&GOOD.replace("2026-11-24 10:11:12.123456", "2026-11-24T10:11:12Z")),
            "created_at: not a timestamp"
        );
        assert_eq!(
            kind(&GOOD.replace("\"is_correct\": 1", "\"is_correct\": null")),
            "is_correct: missing for a submit"
        );
        assert_eq!(
            kind(&GOOD.replace("submit", "peek")),
            "attempt_type: not run or submit"
        );
    }

    #[test]
    fn nul_characters_are_rejected_not_truncated() {
        assert_eq!(
            reason(&GOOD.replace("3f4a2c4ba6bb5ad9ad8ea2a8ad29ea52", "3f4a\\u0000")),
            "field `lti_user_id`: contains a NUL character, which PostgreSQL text cannot store"
        );
        assert_eq!(
            reason(&GOOD.replace("'lis_outcome_service_url': ''", "'lis_outcome_service_url': 'a\\\\x00b'")),
            "field `passback_params.lis_outcome_service_url`: contains a NUL character, which PostgreSQL text cannot store"
        );
    }

    #[test]
    fn a_key_too_long_for_the_index_is_rejected() {
        let long = "f".repeat(MAX_KEY_TEXT_BYTES);
        let record = GOOD.replace("course-v1:SF+DST+1:lms-b:3f4a", &long);
        let chunk = format!("[{record}]");
        let rejection = parse_chunk(&chunk).unwrap().remove(0).unwrap_err();
        assert_eq!(rejection.kind, "key: too long");
        assert!(
            rejection.reason.contains("2632 bytes together"),
            "{}",
            rejection.reason
        );
        // Just under the cap loads.
        let fits = "f".repeat(MAX_KEY_TEXT_BYTES - 32);
        let chunk = format!("[{}]", GOOD.replace("course-v1:SF+DST+1:lms-b:3f4a", &fits));
        assert!(parse_chunk(&chunk).unwrap().remove(0).is_ok());
    }

    #[test]
    fn a_truncated_chunk_is_an_error() {
        assert!(parse_chunk(&format!("[{GOOD}, {GOOD}")[..200]).is_err());
        assert!(parse_chunk("{}").is_err());
        assert!(parse_chunk("[]").unwrap().is_empty());
    }
}
