//! `passback_params`: a Python-repr dict holding the LTI outcome fields we keep.

use std::borrow::Cow;

use crate::pyrepr::{self, ParseError, Value};

/// The three LTI fields; a missing key or a `None` value is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassbackParams<'a> {
    pub oauth_consumer_key: Option<Cow<'a, str>>,
    pub lis_result_sourcedid: Option<Cow<'a, str>>,
    pub lis_outcome_service_url: Option<Cow<'a, str>>,
}

impl PassbackParams<'_> {
    /// The key of the first value holding a NUL character, which PostgreSQL text cannot store.
    pub fn key_with_nul(&self) -> Option<&'static str> {
        let values = [
            &self.oauth_consumer_key,
            &self.lis_result_sourcedid,
            &self.lis_outcome_service_url,
        ];
        KEYS.into_iter()
            .zip(values)
            .find(|(_, v)| v.as_deref().is_some_and(|v| v.contains('\0')))
            .map(|(key, _)| key)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PassbackError {
    #[error("{0}")]
    Syntax(#[from] ParseError),
    #[error("at byte 0: expected a dict, found {0}")]
    NotADict(&'static str),
    #[error("key '{key}': expected str or None, found {found}")]
    NotAString {
        key: &'static str,
        found: &'static str,
    },
}

impl PassbackError {
    /// Byte offset of the problem, where one exists.
    pub fn position(&self) -> Option<usize> {
        match self {
            PassbackError::Syntax(e) => Some(e.pos),
            PassbackError::NotADict(_) => Some(0),
            PassbackError::NotAString { .. } => None,
        }
    }
}

const KEYS: [&str; 3] = [
    "oauth_consumer_key",
    "lis_result_sourcedid",
    "lis_outcome_service_url",
];

/// Parses a `passback_params` string. Extra keys are ignored; for a repeated key the
/// last one wins, as in Python.
pub fn parse_passback_params(input: &str) -> Result<PassbackParams<'_>, PassbackError> {
    let entries = match pyrepr::parse(input)? {
        Value::Dict(entries) => entries,
        other => return Err(PassbackError::NotADict(other.type_name())),
    };
    let mut fields: [Option<Cow<'_, str>>; 3] = Default::default();
    for (key, value) in entries {
        let Value::Str(key) = key else { continue };
        let Some(slot) = KEYS.iter().position(|k| *k == key) else {
            continue;
        };
        fields[slot] = match value {
            Value::Str(s) => Some(s),
            Value::None => None,
            other => {
                return Err(PassbackError::NotAString {
                    key: KEYS[slot],
                    found: other.type_name(),
                })
            }
        };
    }
    let [oauth_consumer_key, lis_result_sourcedid, lis_outcome_service_url] = fields;
    Ok(PassbackParams {
        oauth_consumer_key,
        lis_result_sourcedid,
        lis_outcome_service_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_the_three_fields_and_ignores_others() {
        let p = parse_passback_params("{'oauth_consumer_key': '', 'extra': [1, {'x': None}], 'lis_result_sourcedid': \"it's\"}").unwrap();
        assert_eq!(p.oauth_consumer_key.as_deref(), Some(""));
        assert_eq!(p.lis_result_sourcedid.as_deref(), Some("it's"));
        assert_eq!(p.lis_outcome_service_url, None);
    }

    #[test]
    fn none_values_and_repeated_keys() {
        let p = parse_passback_params("{'oauth_consumer_key': 'a', 'oauth_consumer_key': None}")
            .unwrap();
        assert_eq!(p, PassbackParams::default());
    }

    #[test]
    fn names_the_problem() {
        assert_eq!(
            parse_passback_params("['a']").unwrap_err().to_string(),
            "at byte 0: expected a dict, found list"
        );
        assert_eq!(
            parse_passback_params("{'lis_outcome_service_url': 5}")
                .unwrap_err()
                .to_string(),
            "key 'lis_outcome_service_url': expected str or None, found int"
        );
        let e = parse_passback_params("{'oauth_consumer_key': ''").unwrap_err();
        assert_eq!(e.position(), Some(25));
    }
}
