//! A parser for Python literals as `repr()` writes them (the subset `ast.literal_eval`
//! accepts, minus arithmetic): nothing is ever evaluated, names other than
//! `None`/`True`/`False`/`inf`/`nan` are errors, and every error carries a byte offset.

use std::borrow::Cow;
use std::fmt;

/// Deeper nesting than this is rejected: it bounds recursion, so a hostile
/// `[[[[...` cannot overflow the stack of the process (a PostgreSQL backend).
pub const MAX_DEPTH: usize = 256;

/// A parsed Python literal. Strings borrow from the input when they hold no escapes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    None,
    Bool(bool),
    /// Decimal digits with an optional leading `-`, exactly as written (Python ints are unbounded).
    Int(Cow<'a, str>),
    Float(f64),
    Str(Cow<'a, str>),
    List(Vec<Value<'a>>),
    Tuple(Vec<Value<'a>>),
    Set(Vec<Value<'a>>),
    Dict(Vec<(Value<'a>, Value<'a>)>),
}

impl Value<'_> {
    /// The Python type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Set(_) => "set",
            Value::Dict(_) => "dict",
        }
    }
}

/// Where and why parsing stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {pos}: {kind}")]
pub struct ParseError {
    /// Zero-based byte offset into the input.
    pub pos: usize,
    pub kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// `expected` what the grammar allowed here, `found` a short description of the input.
    Unexpected {
        expected: &'static str,
        found: String,
    },
    UnterminatedString,
    BadEscape(String),
    BadNumber(String),
    /// A name that is not a literal (`__import__`, `os`, `x`): never evaluated.
    NotALiteral(String),
    TooDeep,
    Unsupported(&'static str),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Unexpected { expected, found } => {
                write!(f, "expected {expected}, found {found}")
            }
            ErrorKind::UnterminatedString => f.write_str("unterminated string literal"),
            ErrorKind::BadEscape(e) => write!(f, "invalid escape sequence {e}"),
            ErrorKind::BadNumber(n) => write!(f, "invalid number {n}"),
            ErrorKind::NotALiteral(name) => {
                write!(f, "`{name}` is not a literal (only None, True, False, inf, nan are allowed names)")
            }
            ErrorKind::TooDeep => write!(f, "nesting deeper than {MAX_DEPTH} levels"),
            ErrorKind::Unsupported(what) => write!(f, "{what} are not supported"),
        }
    }
}

/// Parses one complete literal; anything but whitespace after it is an error.
pub fn parse(input: &str) -> Result<Value<'_>, ParseError> {
    parse_with_progress(input, &|| {})
}

/// How many input bytes the parser reads between two calls of its progress callback.
pub const PROGRESS_EVERY: usize = 64 * 1024;

/// Like [`parse`], calling `progress` every [`PROGRESS_EVERY`] bytes read, so a caller can
/// stop a long parse (the extension checks PostgreSQL's interrupts there: a
/// `statement_timeout` or a cancel ends a parse of megabytes promptly).
pub fn parse_with_progress<'a>(
    input: &'a str,
    progress: &'a dyn Fn(),
) -> Result<Value<'a>, ParseError> {
    let mut p = Parser::new(input, progress);
    let value = p.value(0)?;
    p.expect_end()?;
    Ok(value)
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    progress: &'a dyn Fn(),
    next_progress: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str, progress: &'a dyn Fn()) -> Self {
        Parser {
            src,
            bytes: src.as_bytes(),
            pos: 0,
            progress,
            next_progress: PROGRESS_EVERY,
        }
    }

    /// Calls the progress callback once the cursor has passed the next mark.
    fn tick(&mut self) {
        if self.pos >= self.next_progress {
            self.next_progress = self.pos + PROGRESS_EVERY;
            (self.progress)();
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') = self.peek() {
            self.pos += 1;
        }
    }

    /// Describes the input at the cursor for an error message.
    fn found(&self) -> String {
        match self
            .src
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
        {
            None => "end of input".to_owned(),
            Some(c) => format!("{c:?}"),
        }
    }

    fn unexpected(&self, expected: &'static str) -> ParseError {
        ParseError {
            pos: self.pos,
            kind: ErrorKind::Unexpected {
                expected,
                found: self.found(),
            },
        }
    }

    fn err(&self, pos: usize, kind: ErrorKind) -> ParseError {
        ParseError { pos, kind }
    }

    fn expect_end(&mut self) -> Result<(), ParseError> {
        self.skip_ws();
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.unexpected("end of input")),
        }
    }

    /// Consumes `byte` (after whitespace) if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, ParseError> {
        self.tick();
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            None => Err(self.unexpected("a value")),
            Some(b'{') => {
                self.enter(depth)?;
                self.pos += 1;
                self.dict_or_set(depth + 1)
            }
            Some(b'[') => {
                self.enter(depth)?;
                self.pos += 1;
                self.sequence(b']', depth + 1).map(Value::List)
            }
            Some(b'(') => {
                self.enter(depth)?;
                self.pos += 1;
                self.tuple_or_group(depth + 1)
            }
            Some(b'\'' | b'"') => self.strings().map(Value::Str),
            Some(b'-' | b'+' | b'.' | b'0'..=b'9') => self.number(),
            Some(b) if b == b'_' || b.is_ascii_alphabetic() => {
                let name = self.name();
                match name {
                    "None" => Ok(Value::None),
                    "True" => Ok(Value::Bool(true)),
                    "False" => Ok(Value::Bool(false)),
                    "inf" => Ok(Value::Float(f64::INFINITY)),
                    "nan" => Ok(Value::Float(f64::NAN)),
                    _ if matches!(self.peek(), Some(b'\'' | b'"')) => Err(self.err(
                        start,
                        ErrorKind::Unsupported("string prefixes (b'', r'', f'', u'')"),
                    )),
                    _ => Err(self.err(start, ErrorKind::NotALiteral(name.to_owned()))),
                }
            }
            Some(_) => Err(self.unexpected("a value")),
        }
    }

    fn enter(&self, depth: usize) -> Result<(), ParseError> {
        if depth >= MAX_DEPTH {
            Err(self.err(self.pos, ErrorKind::TooDeep))
        } else {
            Ok(())
        }
    }

    fn name(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b == b'_' || b.is_ascii_alphanumeric() {
                self.pos += 1;
            } else {
                break;
            }
        }
        &self.src[start..self.pos]
    }

    /// Items up to `close`, comma separated, trailing comma allowed. The opener is consumed.
    fn sequence(&mut self, close: u8, depth: usize) -> Result<Vec<Value<'a>>, ParseError> {
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Ok(items);
            }
            items.push(self.value(depth)?);
            if self.eat(b',') {
                continue;
            }
            if self.eat(close) {
                return Ok(items);
            }
            return Err(self.unexpected(match close {
                b']' => "',' or ']'",
                b')' => "',' or ')'",
                _ => "',' or '}'",
            }));
        }
    }

    /// `()` and `(x,)` are tuples; `(x)` is just `x` in parentheses.
    fn tuple_or_group(&mut self, depth: usize) -> Result<Value<'a>, ParseError> {
        if self.eat(b')') {
            return Ok(Value::Tuple(Vec::new()));
        }
        let first = self.value(depth)?;
        if self.eat(b')') {
            return Ok(first);
        }
        if !self.eat(b',') {
            return Err(self.unexpected("',' or ')'"));
        }
        let mut items = vec![first];
        items.extend(self.sequence(b')', depth)?);
        Ok(Value::Tuple(items))
    }

    fn dict_or_set(&mut self, depth: usize) -> Result<Value<'a>, ParseError> {
        if self.eat(b'}') {
            return Ok(Value::Dict(Vec::new()));
        }
        let first = self.value(depth)?;
        if !self.eat(b':') {
            // `{a, b}` is a set literal.
            if self.eat(b'}') {
                return Ok(Value::Set(vec![first]));
            }
            if !self.eat(b',') {
                return Err(self.unexpected("':', ',' or '}'"));
            }
            let mut items = vec![first];
            items.extend(self.sequence(b'}', depth)?);
            return Ok(Value::Set(items));
        }
        let mut entries = vec![(first, self.value(depth)?)];
        loop {
            if self.eat(b'}') {
                return Ok(Value::Dict(entries));
            }
            if !self.eat(b',') {
                return Err(self.unexpected("',' or '}'"));
            }
            if self.eat(b'}') {
                return Ok(Value::Dict(entries));
            }
            let key = self.value(depth)?;
            if !self.eat(b':') {
                return Err(self.unexpected("':'"));
            }
            entries.push((key, self.value(depth)?));
        }
    }

    /// One string literal, or several adjacent ones (`'a' "b"` is `'ab'` in Python).
    fn strings(&mut self) -> Result<Cow<'a, str>, ParseError> {
        let mut s = self.string()?;
        loop {
            let save = self.pos;
            self.skip_ws();
            if matches!(self.peek(), Some(b'\'' | b'"')) {
                let next = self.string()?;
                s.to_mut().push_str(&next);
            } else {
                self.pos = save;
                return Ok(s);
            }
        }
    }

    /// A single- or double-quoted string (triple quotes included) at the cursor.
    fn string(&mut self) -> Result<Cow<'a, str>, ParseError> {
        let start = self.pos;
        let quote = self.bytes[self.pos];
        let triple = self.bytes.get(self.pos..self.pos + 3) == Some(&[quote, quote, quote][..]);
        self.pos += if triple { 3 } else { 1 };
        let body_start = self.pos;
        let mut owned: Option<String> = None;
        let mut run_start = self.pos;
        loop {
            let Some(b) = self.peek() else {
                return Err(self.err(start, ErrorKind::UnterminatedString));
            };
            if b == quote
                && (!triple
                    || self.bytes.get(self.pos..self.pos + 3) == Some(&[quote, quote, quote][..]))
            {
                let run = &self.src[run_start..self.pos];
                self.pos += if triple { 3 } else { 1 };
                return Ok(match owned {
                    None => Cow::Borrowed(&self.src[body_start..body_start + run.len()]),
                    Some(mut s) => {
                        s.push_str(run);
                        Cow::Owned(s)
                    }
                });
            }
            match b {
                b'\\' => {
                    let out = owned.get_or_insert_with(String::new);
                    out.push_str(&self.src[run_start..self.pos]);
                    self.escape(out)?;
                    run_start = self.pos;
                }
                b'\n' | b'\r' if !triple => {
                    return Err(self.err(start, ErrorKind::UnterminatedString))
                }
                _ => {
                    self.pos += 1;
                    self.tick();
                }
            }
        }
    }

    /// Decodes the escape at the cursor (a backslash) into `out`.
    fn escape(&mut self, out: &mut String) -> Result<(), ParseError> {
        let at = self.pos;
        self.pos += 1;
        let Some(c) = self.peek() else {
            return Err(self.err(at, ErrorKind::UnterminatedString));
        };
        self.pos += 1;
        match c {
            b'\\' => out.push('\\'),
            b'\'' => out.push('\''),
            b'"' => out.push('"'),
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'a' => out.push('\x07'),
            b'b' => out.push('\x08'),
            b'f' => out.push('\x0c'),
            b'v' => out.push('\x0b'),
            b'\n' => {} // a backslash-newline continues the line
            b'\r' => {
                if self.peek() == Some(b'\n') {
                    self.pos += 1;
                }
            }
            b'x' => {
                let cp = self.hex_digits(at, 2)?;
                out.push(char::from_u32(cp).expect("two hex digits are always a valid char"));
            }
            b'u' | b'U' => {
                let cp = self.hex_digits(at, if c == b'u' { 4 } else { 8 })?;
                let ch = if (0xD800..0xDC00).contains(&cp) {
                    self.low_surrogate(at, cp)?
                } else {
                    char::from_u32(cp).ok_or_else(|| {
                        self.err(at, ErrorKind::BadEscape(self.src[at..self.pos].to_owned()))
                    })?
                };
                out.push(ch);
            }
            b'0'..=b'7' => {
                let mut cp = u32::from(c - b'0');
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ b'0'..=b'7') => {
                            cp = cp * 8 + u32::from(d - b'0');
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                out.push(char::from_u32(cp).expect("three octal digits are always a valid char"));
            }
            b'N' => return Err(self.err(at, ErrorKind::Unsupported("\\N{name} escapes"))),
            _ => {
                // Python keeps unknown escapes verbatim (`'\d'` is backslash + d).
                self.pos -= 1;
                out.push('\\');
            }
        }
        Ok(())
    }

    fn hex_digits(&mut self, esc_start: usize, n: usize) -> Result<u32, ParseError> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + n)
            .filter(|d| d.iter().all(u8::is_ascii_hexdigit));
        let Some(digits) = digits else {
            let end = (self.pos + n).min(self.bytes.len());
            let shown = String::from_utf8_lossy(&self.bytes[esc_start..end]).into_owned();
            return Err(self.err(esc_start, ErrorKind::BadEscape(shown)));
        };
        let text = std::str::from_utf8(digits).expect("hex digits are ASCII");
        self.pos += n;
        Ok(u32::from_str_radix(text, 16).expect("checked hex digits"))
    }

    /// Python keeps lone surrogates; JSON and Rust strings cannot, so only a proper pair is accepted.
    fn low_surrogate(&mut self, esc_start: usize, high: u32) -> Result<char, ParseError> {
        let bad = |p: &Self| {
            p.err(
                esc_start,
                ErrorKind::BadEscape(format!("\\u{high:04x} (a lone surrogate)")),
            )
        };
        if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
            return Err(bad(self));
        }
        let save = self.pos;
        self.pos += 2;
        let low = self.hex_digits(save, 4)?;
        if !(0xDC00..0xE000).contains(&low) {
            return Err(bad(self));
        }
        let cp = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
        Ok(char::from_u32(cp).expect("a surrogate pair is a valid char"))
    }

    /// Decimal ints and floats with an optional sign, plus `inf`/`nan` after a sign.
    fn number(&mut self) -> Result<Value<'a>, ParseError> {
        let start = self.pos;
        let negative = match self.peek() {
            Some(b'-') => {
                self.pos += 1;
                true
            }
            Some(b'+') => {
                self.pos += 1;
                false
            }
            _ => false,
        };
        self.skip_ws(); // Python allows `- 1`
        if matches!(self.peek(), Some(b'i' | b'n')) {
            let name = self.name();
            return match name {
                "inf" => Ok(Value::Float(if negative {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                })),
                "nan" => Ok(Value::Float(f64::NAN)),
                _ => Err(self.err(start, ErrorKind::NotALiteral(name.to_owned()))),
            };
        }
        let digits_start = self.pos;
        let mut is_float = false;
        let mut saw_digit = false;
        while let Some(b) = self.peek() {
            match b {
                b'0'..=b'9' | b'_' => saw_digit |= b != b'_',
                b'.' if !is_float => is_float = true,
                b'e' | b'E' => {
                    is_float = true;
                    self.pos += 1;
                    if matches!(self.peek(), Some(b'+' | b'-')) {
                        self.pos += 1;
                    }
                    while matches!(self.peek(), Some(b'0'..=b'9' | b'_')) {
                        self.pos += 1;
                    }
                    break;
                }
                _ => break,
            }
            self.pos += 1;
        }
        let literal = &self.src[digits_start..self.pos];
        let bad = |p: &Self| p.err(start, ErrorKind::BadNumber(p.src[start..p.pos].to_owned()));
        if !saw_digit
            || literal.starts_with('_')
            || literal.ends_with('_')
            || literal.contains("__")
        {
            return Err(bad(self));
        }
        if matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'_') {
            // `0x1f`, `1j`, `12abc`: not something repr() writes for a plain number.
            self.name();
            return Err(bad(self));
        }
        let clean: Cow<'_, str> = if literal.contains('_') {
            Cow::Owned(literal.replace('_', ""))
        } else {
            Cow::Borrowed(literal)
        };
        if is_float {
            let parsed: f64 = clean.parse().map_err(|_| bad(self))?;
            return Ok(Value::Float(if negative { -parsed } else { parsed }));
        }
        let trimmed = clean.trim_start_matches('0');
        if trimmed.is_empty() {
            return Ok(Value::Int(Cow::Borrowed("0")));
        }
        if trimmed.len() != clean.len() {
            return Err(bad(self)); // leading zeros are a syntax error in Python 3
        }
        Ok(Value::Int(match (negative, clean) {
            (false, Cow::Borrowed(s)) => Cow::Borrowed(s),
            (false, Cow::Owned(s)) => Cow::Owned(s),
            (true, s) => Cow::Owned(format!("-{s}")),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value<'_> {
        Value::Str(Cow::Borrowed(v))
    }

    #[test]
    fn parses_the_seed_passback_dict() {
        let input = "{'oauth_consumer_key': '', 'lis_result_sourcedid': 'course-v1:SkillFactory+DST-3.0+28FEB2021:lms.skillfactory.ru-ca3ecf8e5f284c329eb7bd529e1a9f7e:3f4a2c4ba6bb5ad9ad8ea2a8ad29ea52', 'lis_outcome_service_url': 'https://lms.skillfactory.ru/courses/course-v1:SkillFactory+DST-3.0+28FEB2021/xblock/block-v1:SkillFactory+DST-3.0+28FEB2021+type@lti+block@ca3ecf8e5f284c329eb7bd529e1a9f7e/handler_noauth/grade_handler'}";
        let Value::Dict(entries) = parse(input).unwrap() else {
            panic!("not a dict")
        };
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0], (s("oauth_consumer_key"), s("")));
    }

    #[test]
    fn decodes_every_escape_repr_emits() {
        let v = parse(r#"'a\\b\'c\"d\ne\rf\tg\x41\u00e9\U0001F600'"#).unwrap();
        assert_eq!(v, Value::Str(Cow::Owned("a\\b'c\"d\ne\rf\tgAé😀".into())));
    }

    #[test]
    fn accepts_both_quote_kinds_and_apostrophes() {
        assert_eq!(parse(r#""it's""#).unwrap(), s("it's"));
        assert_eq!(
            parse(r"'say \'hi\''").unwrap(),
            Value::Str(Cow::Owned("say 'hi'".into()))
        );
        assert_eq!(
            parse("'a' \"b\"").unwrap(),
            Value::Str(Cow::Owned("ab".into()))
        );
        assert_eq!(parse("'''x'y'''").unwrap(), s("x'y"));
    }

    #[test]
    fn parses_numbers_like_python() {
        assert_eq!(parse("-12").unwrap(), Value::Int(Cow::Owned("-12".into())));
        assert_eq!(parse("0").unwrap(), Value::Int(Cow::Borrowed("0")));
        assert_eq!(
            parse("123456789012345678901234567890").unwrap(),
            Value::Int(Cow::Borrowed("123456789012345678901234567890"))
        );
        assert_eq!(parse("1e-05").unwrap(), Value::Float(1e-05));
        assert_eq!(parse("1.5").unwrap(), Value::Float(1.5));
        assert_eq!(parse("-inf").unwrap(), Value::Float(f64::NEG_INFINITY));
        assert!(matches!(parse("nan").unwrap(), Value::Float(f) if f.is_nan()));
        assert_eq!(
            parse("1_000").unwrap(),
            Value::Int(Cow::Owned("1000".into()))
        );
        assert_eq!(
            parse("007").unwrap_err().kind,
            ErrorKind::BadNumber("007".into())
        );
        assert_eq!(parse("0x1f").unwrap_err().pos, 0);
        assert!(parse("1j").is_err());
        assert!(parse("-").is_err());
        assert!(parse(".").is_err());
    }

    #[test]
    fn parses_containers_with_trailing_commas() {
        assert_eq!(
            parse("[1, 2,]").unwrap(),
            Value::List(vec![Value::Int("1".into()), Value::Int("2".into())])
        );
        assert_eq!(
            parse("(1,)").unwrap(),
            Value::Tuple(vec![Value::Int("1".into())])
        );
        assert_eq!(parse("()").unwrap(), Value::Tuple(vec![]));
        assert_eq!(parse("(1)").unwrap(), Value::Int("1".into()));
        assert_eq!(
            parse("{1, 2}").unwrap(),
            Value::Set(vec![Value::Int("1".into()), Value::Int("2".into())])
        );
        assert_eq!(
            parse("{'a': None,}").unwrap(),
            Value::Dict(vec![(s("a"), Value::None)])
        );
        assert_eq!(
            parse(" {'a': [True, (False,)]} ").unwrap().type_name(),
            "dict"
        );
    }

    #[test]
    fn rejects_code_without_evaluating_it() {
        let e = parse("__import__('os').system('id')").unwrap_err();
        assert_eq!(
            e,
            ParseError {
                pos: 0,
                kind: ErrorKind::NotALiteral("__import__".into())
            }
        );
        let e = parse("{'a': os}").unwrap_err();
        assert_eq!(e.pos, 6);
        let e = parse("1 + 2").unwrap_err();
        assert_eq!(e.pos, 2);
        assert!(matches!(
            parse("b'x'").unwrap_err().kind,
            ErrorKind::Unsupported(_)
        ));
    }

    #[test]
    fn reports_positions_of_malformed_input() {
        assert_eq!(
            parse("").unwrap_err().to_string(),
            "at byte 0: expected a value, found end of input"
        );
        assert_eq!(
            parse("{'a' 1}").unwrap_err().to_string(),
            "at byte 5: expected ':', ',' or '}', found '1'"
        );
        assert_eq!(
            parse("{'a': 'b'").unwrap_err().to_string(),
            "at byte 9: expected ',' or '}', found end of input"
        );
        assert_eq!(
            parse("{'a': 'b").unwrap_err().to_string(),
            "at byte 6: unterminated string literal"
        );
        assert_eq!(parse(r"'\x4'").unwrap_err().pos, 1);
        assert_eq!(parse(r"'\ud800'").unwrap_err().pos, 1);
        assert_eq!(parse("[1] x").unwrap_err().pos, 4);
        assert_eq!(
            parse("'é' é").unwrap_err().to_string(),
            "at byte 5: expected end of input, found 'é'"
        );
    }

    #[test]
    fn reports_progress_through_long_strings_and_lists() {
        let calls = std::cell::Cell::new(0);
        let count = || calls.set(calls.get() + 1);
        let long_string = format!("'{}'", "x".repeat(10 * PROGRESS_EVERY));
        parse_with_progress(&long_string, &count).unwrap();
        assert_eq!(calls.get(), 10);
        calls.set(0);
        let long_list = format!("[{}]", "1, ".repeat(3 * PROGRESS_EVERY));
        parse_with_progress(&long_list, &count).unwrap();
        assert!((8..=10).contains(&calls.get()), "{}", calls.get());
    }

    #[test]
    fn refuses_deep_nesting_without_recursing_into_it() {
        let deep = "[".repeat(100_000);
        assert_eq!(parse(&deep).unwrap_err().kind, ErrorKind::TooDeep);
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn keeps_unknown_escapes_verbatim_and_joins_surrogate_pairs() {
        assert_eq!(
            parse(r"'\d'").unwrap(),
            Value::Str(Cow::Owned("\\d".into()))
        );
        assert_eq!(
            parse(r"'\ud83d\ude00'").unwrap(),
            Value::Str(Cow::Owned("😀".into()))
        );
        assert_eq!(
            parse(r"'\101'").unwrap(),
            Value::Str(Cow::Owned("A".into()))
        );
    }
}
