//! Python `repr()` of `str` values and of the str-to-str dict that `passback_params` holds,
//! rendered the way CPython prints them, so the demo API sends what the real one sends.

use std::fmt::Write as _;

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Appends `repr(s)` to `out`.
pub fn write_str_repr(s: &str, out: &mut String) {
    // The demo's own strings are plain ASCII: a byte loop the compiler vectorises.
    if s.bytes()
        .all(|b| matches!(b, b' '..=b'~') && b != b'\'' && b != b'\\')
    {
        out.reserve(s.len() + 2);
        out.push('\'');
        out.push_str(s);
        out.push('\'');
        return;
    }
    // CPython switches to double quotes only when that avoids escaping.
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    // Runs of characters that need no escape are copied in one go.
    let mut plain_from = 0;
    for (i, c) in s.char_indices() {
        if !needs_escape(c, quote) {
            continue;
        }
        out.push_str(&s[plain_from..i]);
        plain_from = i + c.len_utf8();
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => {
                let code = u32::from(c);
                // Writing to a String cannot fail.
                let _ = match code {
                    0..=0xff => write!(out, "\\x{code:02x}"),
                    0x100..=0xffff => write!(out, "\\u{code:04x}"),
                    _ => write!(out, "\\U{code:08x}"),
                };
            }
        }
    }
    out.push_str(&s[plain_from..]);
    out.push(quote);
}

/// `repr(s)` as a new string.
pub fn str_repr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_str_repr(s, &mut out);
    out
}

/// Appends `repr(dict)` of a dict whose keys and values are all `str`, in insertion order.
pub fn write_dict_repr(entries: &[(&str, &str)], out: &mut String) {
    out.push('{');
    for (n, (key, value)) in entries.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        write_str_repr(key, out);
        out.push_str(": ");
        write_str_repr(value, out);
    }
    out.push('}');
}

fn needs_escape(c: char, quote: char) -> bool {
    match c {
        ' '..='~' => c == quote || c == '\\',
        '\0'..='\x1f' | '\x7f' => true,
        c => !is_printable(c),
    }
}

/// Python's `str.isprintable()` for one non-ASCII character: everything except the "Other"
/// and "Separator" categories. Unassigned code points follow this crate's Unicode version,
/// which may be newer than the Python that produced the real data.
fn is_printable(c: char) -> bool {
    !matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::SpaceSeparator
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values are what CPython 3.11 prints for `repr(...)` of the same string.
    #[test]
    fn matches_python_repr_of_strings() {
        let cases: &[(&str, &str)] = &[
            ("", "''"),
            ("abc", "'abc'"),
            ("it's", "\"it's\""),
            ("a\"b'c", "'a\"b\\'c'"),
            ("say \"hi\"", "'say \"hi\"'"),
            ("tab\t", "'tab\\t'"),
            ("line\nbreak\r", "'line\\nbreak\\r'"),
            ("back\\slash", "'back\\\\slash'"),
            ("é", "'é'"),
            ("Привет, мир", "'Привет, мир'"),
            ("\x01", "'\\x01'"),
            ("\x7f", "'\\x7f'"),
            ("\0", "'\\x00'"),
            ("\u{85}", "'\\x85'"),
            ("\u{a0}", "'\\xa0'"),
            ("\u{ad}", "'\\xad'"),
            ("\u{200b}", "'\\u200b'"),
            ("\u{2028}", "'\\u2028'"),
            ("\u{3000}", "'\\u3000'"),
            ("\u{feff}", "'\\ufeff'"),
            ("\u{e000}", "'\\ue000'"),
            ("\u{10ffff}", "'\\U0010ffff'"),
            ("\u{e0001}", "'\\U000e0001'"),
            ("😀", "'😀'"),
            ("日本", "'日本'"),
        ];
        for (input, python) in cases {
            assert_eq!(str_repr(input), *python, "repr of {input:?}");
        }
    }

    #[test]
    fn matches_python_repr_of_a_passback_dict() {
        let mut out = String::new();
        write_dict_repr(
            &[
                ("oauth_consumer_key", ""),
                ("lis_result_sourcedid", "course-v1:SF+X+1:b:u"),
                ("url", "it's"),
            ],
            &mut out,
        );
        assert_eq!(out, "{'oauth_consumer_key': '', 'lis_result_sourcedid': 'course-v1:SF+X+1:b:u', 'url': \"it's\"}");
        let mut empty = String::new();
        write_dict_repr(&[], &mut empty);
        assert_eq!(empty, "{}");
    }

    #[test]
    fn reprs_parse_back_with_the_project_parser() {
        for s in ["it's", "a\"b'c", "tab\t\n\r\\", "é\u{200b}\x01😀\u{10ffff}"] {
            let mut text = String::new();
            write_dict_repr(&[("lis_result_sourcedid", s)], &mut text);
            let parsed = lms_etl_parse::parse_passback_params(&text).unwrap();
            assert_eq!(
                parsed.lis_result_sourcedid.as_deref(),
                Some(s),
                "round trip of {s:?}"
            );
        }
    }
}
