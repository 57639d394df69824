//! Renders a parsed Python literal as JSON text, the way `json.dumps` would,
//! with exact integer digits (JSON numbers are unbounded; jsonb keeps them as numeric).

use std::fmt::Write;

use crate::pyrepr::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error(
        "a dict key of type {0} has no JSON form (keys must be str, int, float, bool or None)"
    )]
    UnsupportedKey(&'static str),
}

/// JSON text for `value`. `inf`/`nan` become the strings `"Infinity"`, `"-Infinity"`, `"NaN"`
/// (JSON has no such numbers; these are the spellings PostgreSQL's float8 input accepts).
pub fn to_json(value: &Value<'_>) -> Result<String, JsonError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out)
}

fn write_value(out: &mut String, value: &Value<'_>) -> Result<(), JsonError> {
    match value {
        Value::None => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(digits) => out.push_str(digits),
        Value::Float(f) if f.is_finite() => write_float(out, *f),
        Value::Float(f) => write_str(out, non_finite(*f)),
        Value::Str(s) => write_str(out, s),
        Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Dict(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_key(out, key)?;
                out.push(':');
                write_value(out, item)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn non_finite(f: f64) -> &'static str {
    if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

fn write_float(out: &mut String, f: f64) {
    // `{:?}` is the shortest round-trip form and uses an exponent for extreme values.
    let _ = write!(out, "{f:?}");
}

/// `json.dumps` turns scalar keys into strings; containers cannot be keys.
fn write_key(out: &mut String, key: &Value<'_>) -> Result<(), JsonError> {
    match key {
        Value::Str(s) => write_str(out, s),
        Value::Int(digits) => write_str(out, digits),
        Value::Float(f) if f.is_finite() => {
            let mut text = String::new();
            write_float(&mut text, *f);
            write_str(out, &text);
        }
        Value::Float(f) => write_str(out, non_finite(*f)),
        Value::Bool(b) => write_str(out, if *b { "true" } else { "false" }),
        Value::None => write_str(out, "null"),
        other => return Err(JsonError::UnsupportedKey(other.type_name())),
    }
    Ok(())
}

fn write_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut run_start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[run_start..i]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escaped);
        }
        run_start = i + 1;
    }
    out.push_str(&s[run_start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pyrepr::parse;

    fn json(input: &str) -> String {
        to_json(&parse(input).unwrap()).unwrap()
    }

    #[test]
    fn renders_like_json_dumps() {
        assert_eq!(
            json("{'a': [1, 2.5, None, True, False], 'b': ('x',)}"),
            r#"{"a":[1,2.5,null,true,false],"b":["x"]}"#
        );
        assert_eq!(
            json("{1: 'one', None: 0, 1.5: 2}"),
            r#"{"1":"one","null":0,"1.5":2}"#
        );
        assert_eq!(json("1e-05"), "1e-5");
        assert_eq!(
            json("[inf, -inf, nan]"),
            r#"["Infinity","-Infinity","NaN"]"#
        );
        assert_eq!(json(r#"'a\nb\x01\"'"#), r#""a\nb\u0001\"""#);
        assert_eq!(json("99999999999999999999999"), "99999999999999999999999");
    }

    #[test]
    fn rejects_container_keys() {
        assert_eq!(
            to_json(&parse("{(1, 2): 3}").unwrap()),
            Err(JsonError::UnsupportedKey("tuple"))
        );
    }

    #[test]
    fn output_is_valid_json() {
        let text = json(r"{'k': 'it\'s \u00e9 \U0001F600 \\ \t', 'n': [1e300, -0.0]}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["k"], "it's é 😀 \\ \t");
    }
}
