//! Splits a streamed body, one JSON array of records, into sub-batches of bounded size, each
//! a JSON array of whole records kept byte for byte, so a body of any size loads in bounded memory.

use std::fmt;

use crate::pyrepr::MAX_DEPTH;

/// One sub-batch: a JSON array text of whole records, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// `[` + the records' original bytes joined by `,` + `]`.
    pub json: String,
    /// How many records `json` holds (at least one).
    pub records: usize,
    /// The index of the batch's first record in the whole body (0-based).
    pub first_index: usize,
}

/// Where and why the body stopped being one JSON array of records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("body is not a JSON array of records: at byte {offset}: {kind}")]
pub struct SplitError {
    /// Zero-based byte offset into the body.
    pub offset: usize,
    pub kind: SplitErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitErrorKind {
    /// `expected` what the array's structure allowed here; `found` the byte there, `None`
    /// at the end of the body (a truncated body).
    Unexpected {
        expected: &'static str,
        found: Option<u8>,
    },
    /// A closing bracket of the wrong kind: `expected` closes the innermost open container.
    Mismatched {
        expected: u8,
        found: u8,
    },
    TooDeep,
    /// The record at this index (in the body) is not valid UTF-8; the offset is the bad byte.
    InvalidUtf8 {
        record: usize,
    },
}

impl fmt::Display for SplitErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitErrorKind::Unexpected { expected, found } => {
                write!(f, "expected {expected}, found ")?;
                match found {
                    Some(b) => write_byte(f, *b),
                    None => f.write_str("the end of the body"),
                }
            }
            SplitErrorKind::Mismatched { expected, found } => {
                write!(f, "expected ")?;
                write_byte(f, *expected)?;
                f.write_str(" to close the innermost open container, found ")?;
                write_byte(f, *found)
            }
            SplitErrorKind::TooDeep => write!(f, "nesting deeper than {MAX_DEPTH} levels"),
            SplitErrorKind::InvalidUtf8 { record } => {
                write!(f, "record {record} is not valid UTF-8")
            }
        }
    }
}

fn write_byte(f: &mut fmt::Formatter<'_>, b: u8) -> fmt::Result {
    if b.is_ascii_graphic() || b == b' ' {
        write!(f, "'{}'", char::from(b))
    } else if b.is_ascii() {
        write!(f, "'{}'", b.escape_ascii())
    } else {
        write!(f, "byte 0x{b:02X}")
    }
}

/// Levels a record may nest: the body's array is the first of the `MAX_DEPTH` that the
/// crate's parser accepts. Also the size of the open-container bit set.
const MAX_RECORD_DEPTH: usize = MAX_DEPTH - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the array's `[`.
    BeforeArray,
    /// After `[`: a record or `]`.
    FirstRecord,
    /// After `,`: a record.
    NextRecord,
    /// Inside a record that is a number or a literal: it ends at whitespace, `,` or `]`.
    Scalar,
    /// Inside a record that is a string or a container: it ends at its closing byte.
    Nested,
    /// After a record: `,` or `]`.
    AfterRecord,
    /// After the array's `]`: only whitespace.
    Done,
}

/// Cuts a JSON array, fed in pieces of any size, into [`Batch`]es of at most
/// `max_batch_bytes` bytes (a single larger record makes a batch of its own: records are
/// never split).
///
/// It checks the array's structure (brackets, commas, strings, nesting up to
/// [`MAX_DEPTH`] levels) and that every record is UTF-8, but does not parse records:
/// `parse_chunk` does, so a record that is JSON but not an attempt reaches the quarantine
/// verbatim (one that is not JSON at all, say `{"a" 1}`, makes `parse_chunk` refuse its
/// batch, as `split_records` refused the whole body). Memory held: the batch being filled
/// plus the part of a record that spans pieces.
pub struct BatchSplitter {
    max_batch_bytes: usize,
    state: State,
    /// Containers open in the current record; 0 for a top-level string.
    depth: usize,
    /// Bit `d` set: the container at depth `d + 1` is an object (else an array).
    objects: [u64; MAX_RECORD_DEPTH.div_ceil(64)],
    in_string: bool,
    /// The previous byte was a backslash inside a string.
    escaped: bool,
    /// `[` and the bytes of the current record fed by earlier pieces; empty when the record
    /// started in the current piece.
    record: Vec<u8>,
    /// Body offset of the current record's first byte.
    record_start: usize,
    batch: BatchBuilder,
    records_seen: usize,
    bytes_seen: usize,
    /// The first error: the body is invalid, every later call repeats it.
    error: Option<SplitError>,
}

impl fmt::Debug for BatchSplitter {
    // The buffers can be megabytes: show where the splitter is, not what it holds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchSplitter")
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("state", &self.state)
            .field("records_seen", &self.records_seen)
            .field("bytes_seen", &self.bytes_seen)
            .field("batch_records", &self.batch.records)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl BatchSplitter {
    pub fn new(max_batch_bytes: usize) -> Self {
        BatchSplitter {
            max_batch_bytes,
            state: State::BeforeArray,
            depth: 0,
            objects: [0; MAX_RECORD_DEPTH.div_ceil(64)],
            in_string: false,
            escaped: false,
            record: Vec::new(),
            record_start: 0,
            batch: BatchBuilder::new(max_batch_bytes),
            records_seen: 0,
            bytes_seen: 0,
            error: None,
        }
    }

    /// Records completed so far (those in returned batches and in the batch being filled).
    pub fn records_seen(&self) -> usize {
        self.records_seen
    }

    /// Bytes of the body fed so far.
    pub fn bytes_seen(&self) -> usize {
        self.bytes_seen
    }

    /// Feed the next bytes of the body (any split, even inside a UTF-8 sequence or a string
    /// escape); returns the batches completed by them. After an error, every call returns it.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Batch>, SplitError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let mut batches = Vec::new();
        let scanned = self.scan(bytes, &mut batches);
        self.bytes_seen += bytes.len();
        match scanned {
            Ok(()) => Ok(batches),
            Err(e) => {
                self.error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// End of body: the last batch (if it holds records), or an error if the array is not
    /// complete (a truncated body) or there is anything but whitespace after it.
    pub fn finish(mut self) -> Result<Option<Batch>, SplitError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let expected = match self.state {
            State::Done => return Ok(self.batch.take()),
            State::BeforeArray => "'[' (the body must be a JSON array)",
            State::FirstRecord => "a record or ']'",
            State::NextRecord => "a record after ','",
            State::Scalar | State::AfterRecord => "',' or ']' after a record",
            State::Nested if self.in_string => "'\"' to close a string",
            State::Nested if self.innermost_is_object() => "'}' to close an object",
            State::Nested => "']' to close an array",
        };
        Err(SplitError {
            offset: self.bytes_seen,
            kind: SplitErrorKind::Unexpected {
                expected,
                found: None,
            },
        })
    }

    fn scan(&mut self, bytes: &[u8], batches: &mut Vec<Batch>) -> Result<(), SplitError> {
        let base = self.bytes_seen;
        let unexpected = |i: usize, expected: &'static str| SplitError {
            offset: base + i,
            kind: SplitErrorKind::Unexpected {
                expected,
                found: Some(bytes[i]),
            },
        };
        // Where the current record's bytes in this piece begin.
        let mut record_from = 0;
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Nested if self.in_string => {
                    if self.escaped {
                        self.escaped = false;
                        i += 1;
                        continue;
                    }
                    // Strings are most of a record's bytes: memchr scans them many bytes at a time.
                    let Some(k) = memchr::memchr2(b'"', b'\\', &bytes[i..]) else {
                        break;
                    };
                    i += k;
                    if bytes[i] == b'\\' {
                        self.escaped = true;
                    } else {
                        self.in_string = false;
                        if self.depth == 0 {
                            self.end_record(&bytes[record_from..=i], batches)?;
                        }
                    }
                    i += 1;
                }
                State::Nested => {
                    let Some(k) = bytes[i..]
                        .iter()
                        .position(|&b| matches!(b, b'"' | b'[' | b']' | b'{' | b'}'))
                    else {
                        break;
                    };
                    i += k;
                    match bytes[i] {
                        b'"' => self.in_string = true,
                        open @ (b'[' | b'{') => {
                            if self.depth == MAX_RECORD_DEPTH {
                                return Err(SplitError {
                                    offset: base + i,
                                    kind: SplitErrorKind::TooDeep,
                                });
                            }
                            self.open(open);
                        }
                        close => {
                            let expected = if self.innermost_is_object() {
                                b'}'
                            } else {
                                b']'
                            };
                            if close != expected {
                                return Err(SplitError {
                                    offset: base + i,
                                    kind: SplitErrorKind::Mismatched {
                                        expected,
                                        found: close,
                                    },
                                });
                            }
                            self.depth -= 1;
                            if self.depth == 0 {
                                self.end_record(&bytes[record_from..=i], batches)?;
                            }
                        }
                    }
                    i += 1;
                }
                State::Scalar => {
                    let end = bytes[i..]
                        .iter()
                        .position(|&b| !is_scalar_byte(b))
                        .map_or(bytes.len(), |k| i + k);
                    if end == bytes.len() {
                        break;
                    }
                    let b = bytes[end];
                    if !(is_whitespace(b) || b == b',' || b == b']') {
                        return Err(unexpected(end, "',' or ']' after a record"));
                    }
                    self.end_record(&bytes[record_from..end], batches)?;
                    // The delimiter is read again in the new state.
                    i = end;
                }
                _ if is_whitespace(bytes[i]) => i += 1,
                State::BeforeArray => {
                    if bytes[i] != b'[' {
                        return Err(unexpected(i, "'[' (the body must be a JSON array)"));
                    }
                    self.state = State::FirstRecord;
                    i += 1;
                }
                State::FirstRecord | State::NextRecord => {
                    let first = self.state == State::FirstRecord;
                    if first && bytes[i] == b']' {
                        self.state = State::Done;
                    } else if self.start_record(bytes[i]) {
                        self.record_start = base + i;
                        record_from = i;
                    } else if first {
                        return Err(unexpected(i, "a record or ']'"));
                    } else {
                        return Err(unexpected(i, "a record after ','"));
                    }
                    i += 1;
                }
                State::AfterRecord => {
                    self.state = match bytes[i] {
                        b',' => State::NextRecord,
                        b']' => State::Done,
                        _ => return Err(unexpected(i, "',' or ']' after a record")),
                    };
                    i += 1;
                }
                State::Done => {
                    return Err(unexpected(i, "nothing after the array's closing ']'"));
                }
            }
        }
        if matches!(self.state, State::Scalar | State::Nested) {
            if self.record.is_empty() {
                // Room for the `[` that makes it a batch if it turns out larger than one.
                self.record.push(b'[');
            }
            self.record.extend_from_slice(&bytes[record_from..]);
        }
        Ok(())
    }

    /// Enters the record that `first` starts; false if no JSON value starts with it.
    fn start_record(&mut self, first: u8) -> bool {
        let state = match first {
            b'[' | b'{' | b'"' => State::Nested,
            _ if is_scalar_byte(first) => State::Scalar,
            _ => return false,
        };
        self.state = state;
        self.depth = 0;
        self.escaped = false;
        self.in_string = first == b'"';
        if first != b'"' && state == State::Nested {
            self.open(first);
        }
        true
    }

    fn open(&mut self, opener: u8) {
        let (word, bit) = (self.depth / 64, self.depth % 64);
        if opener == b'{' {
            self.objects[word] |= 1 << bit;
        } else {
            self.objects[word] &= !(1 << bit);
        }
        self.depth += 1;
    }

    fn innermost_is_object(&self) -> bool {
        match self.depth.checked_sub(1) {
            Some(d) => self.objects[d / 64] & (1 << (d % 64)) != 0,
            None => false,
        }
    }

    /// The current record ends with `tail` (its bytes in this piece): check it is UTF-8 and
    /// add it to the batch.
    fn end_record(&mut self, tail: &[u8], batches: &mut Vec<Batch>) -> Result<(), SplitError> {
        self.state = State::AfterRecord;
        let index = self.records_seen;
        let invalid_utf8 = |record_offset: usize| SplitError {
            offset: self.record_start + record_offset,
            kind: SplitErrorKind::InvalidUtf8 { record: index },
        };
        if self.record.is_empty() {
            // The whole record is in this piece: no copy but into the batch.
            let text = std::str::from_utf8(tail).map_err(|e| invalid_utf8(e.valid_up_to()))?;
            self.batch.add(text, index, batches);
        } else if self.record.len() + tail.len() + 1 > self.max_batch_bytes {
            // A record larger than a batch, gathered from pieces: it is a batch of its own,
            // in the buffer that gathered it, rather than copied (it may be the whole body).
            let mut json = std::mem::take(&mut self.record);
            json.extend_from_slice(tail);
            json.push(b']');
            let json = String::from_utf8(json)
                .map_err(|e| invalid_utf8(e.utf8_error().valid_up_to() - 1))?;
            batches.extend(self.batch.take());
            batches.push(Batch {
                json,
                records: 1,
                first_index: index,
            });
        } else {
            self.record.extend_from_slice(tail);
            let text = std::str::from_utf8(&self.record[1..])
                .map_err(|e| invalid_utf8(e.valid_up_to()))?;
            self.batch.add(text, index, batches);
            self.record.clear();
        }
        self.records_seen += 1;
        Ok(())
    }
}

/// The batch being filled.
struct BatchBuilder {
    max_bytes: usize,
    /// `[` and the records so far, joined by `,`, without the closing `]`; empty when it
    /// holds no record.
    json: String,
    records: usize,
    first_index: usize,
}

impl BatchBuilder {
    fn new(max_bytes: usize) -> Self {
        BatchBuilder {
            max_bytes,
            json: String::new(),
            records: 0,
            first_index: 0,
        }
    }

    /// Adds the record at `index` of the body, first handing over the batch if the record
    /// would take it past the cap.
    fn add(&mut self, record: &str, index: usize, batches: &mut Vec<Batch>) {
        // `,` + record + `]`
        if self.records > 0 && self.json.len() + record.len() + 2 > self.max_bytes {
            batches.extend(self.take());
        }
        if self.records == 0 {
            self.first_index = index;
            self.reserve(record.len() + 2);
            self.json.push('[');
        } else {
            self.reserve(record.len() + 2);
            self.json.push(',');
        }
        self.json.push_str(record);
        self.records += 1;
        // No record can follow (the shortest, `,0]`, takes three bytes): hand it over now
        // rather than hold it until the next record arrives.
        if self.json.len() + 3 > self.max_bytes {
            batches.extend(self.take());
        }
    }

    /// Grows `json` by doubling, but not past the cap (or the one record that is larger):
    /// a batch's memory stays within its byte budget.
    fn reserve(&mut self, additional: usize) {
        let needed = self.json.len() + additional;
        if needed > self.json.capacity() {
            let target = (2 * self.json.capacity()).clamp(needed, self.max_bytes.max(needed));
            self.json.reserve_exact(target - self.json.len());
        }
    }

    fn take(&mut self) -> Option<Batch> {
        if self.records == 0 {
            return None;
        }
        self.json.push(']');
        let batch = Batch {
            json: std::mem::take(&mut self.json),
            records: self.records,
            first_index: self.first_index,
        };
        self.records = 0;
        Some(batch)
    }
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The bytes of numbers and of `true`, `false`, `null` (and of misspellings of them, which
/// `parse_chunk` rejects as the record's own error).
fn is_scalar_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_in_pieces(body: &[u8], max: usize, piece: usize) -> Result<Vec<Batch>, SplitError> {
        let mut splitter = BatchSplitter::new(max);
        let mut batches = Vec::new();
        for piece in body.chunks(piece.max(1)) {
            batches.extend(splitter.push(piece)?);
        }
        batches.extend(splitter.finish()?);
        Ok(batches)
    }

    /// Splits `body` fed whole and in pieces of every size: all must give the same answer.
    fn split(body: impl AsRef<[u8]>, max: usize) -> Result<Vec<Batch>, SplitError> {
        let body = body.as_ref();
        let whole = split_in_pieces(body, max, body.len());
        for piece in 1..body.len() {
            assert_eq!(
                split_in_pieces(body, max, piece),
                whole,
                "fed in pieces of {piece} bytes"
            );
        }
        whole
    }

    fn texts(body: &str, max: usize) -> Vec<String> {
        split(body, max)
            .unwrap()
            .into_iter()
            .map(|b| b.json)
            .collect()
    }

    fn error(body: impl AsRef<[u8]>) -> (usize, String) {
        let e = split(body, 1000).unwrap_err();
        (e.offset, e.kind.to_string())
    }

    #[test]
    fn an_empty_array_yields_no_batch() {
        assert_eq!(split("[]", 1000).unwrap(), vec![]);
        assert_eq!(split(" \n\t[ \r\n ]\n", 1000).unwrap(), vec![]);
    }

    #[test]
    fn whitespace_around_records_is_dropped_and_inside_them_kept() {
        assert_eq!(
            texts(" \n[ {\"a\" : [1, 2]} ,\n\t2 ,\"x y\"\r\n] \n", 1000),
            ["[{\"a\" : [1, 2]},2,\"x y\"]"]
        );
    }

    #[test]
    fn brackets_commas_and_escaped_quotes_inside_strings_are_not_structure() {
        let body = r#"[{"a":"],[}{\",\\","b\"":["\"]"]},"\\","{",[["]"]],"\\\""]"#;
        let batches = split(body, 1000).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].json, body);
        assert_eq!(batches[0].records, 5);
        let values: Vec<serde_json::Value> = serde_json::from_str(&batches[0].json).unwrap();
        assert_eq!(values[0]["a"], "],[}{\",\\");
        assert_eq!(values[4], "\\\"");
    }

    #[test]
    fn records_keep_their_bytes_verbatim() {
        let body = "[{\"k\":\"caf\u{e9} \\u00e9 \u{1F600}\",\"n\":1.50e+3,\"z\":-0}, {\"lti_user_id\":5},tru,\"\"]";
        assert_eq!(
            texts(body, 1000),
            ["[{\"k\":\"caf\u{e9} \\u00e9 \u{1F600}\",\"n\":1.50e+3,\"z\":-0},{\"lti_user_id\":5},tru,\"\"]"]
        );
    }

    #[test]
    fn a_batch_goes_before_the_record_that_would_take_it_past_the_cap() {
        let batches = split("[1,22,333,4444]", 8).unwrap();
        let shape: Vec<_> = batches
            .iter()
            .map(|b| (b.json.as_str(), b.records, b.first_index))
            .collect();
        assert_eq!(shape, [("[1,22]", 2, 0), ("[333]", 1, 2), ("[4444]", 1, 3)]);
    }

    #[test]
    fn a_full_batch_is_handed_over_without_waiting_for_the_next_record() {
        let mut splitter = BatchSplitter::new(7);
        // `3` may go on (`34`): it is a record only once a delimiter follows.
        assert!(splitter.push(b"[1,2,3").unwrap().is_empty());
        assert_eq!(splitter.records_seen(), 2);
        let batches = splitter.push(b"]").unwrap();
        assert_eq!(batches[0].json, "[1,2,3]");
        assert_eq!(batches[0].json.len(), 7);
        assert_eq!(splitter.records_seen(), 3);
        assert_eq!(splitter.bytes_seen(), 7);
        assert_eq!(splitter.finish(), Ok(None));
    }

    #[test]
    fn a_record_larger_than_the_cap_is_a_batch_of_its_own() {
        let long = format!("{{\"s\":\"{}\"}}", "x".repeat(50));
        let body = format!("[1,{long},2,3]");
        let batches = split(&body, 10).unwrap();
        let shape: Vec<_> = batches
            .iter()
            .map(|b| (b.json.clone(), b.first_index))
            .collect();
        assert_eq!(
            shape,
            [
                ("[1]".to_owned(), 0),
                (format!("[{long}]"), 1),
                ("[2,3]".to_owned(), 2)
            ]
        );
        // A cap of 0: every record alone.
        assert_eq!(texts("[1,2]", 0), ["[1]", "[2]"]);
    }

    #[test]
    fn counts_records_and_bytes_as_they_arrive() {
        let mut splitter = BatchSplitter::new(1000);
        splitter.push(b"[{\"a\":").unwrap();
        assert_eq!((splitter.records_seen(), splitter.bytes_seen()), (0, 6));
        splitter.push(b"1},2").unwrap();
        // `2` may go on (`23`): it is a record only once a delimiter follows.
        assert_eq!((splitter.records_seen(), splitter.bytes_seen()), (1, 10));
        splitter.push(b"]").unwrap();
        assert_eq!(splitter.records_seen(), 2);
        let last = splitter.finish().unwrap().unwrap();
        assert_eq!((last.json.as_str(), last.records), ("[{\"a\":1},2]", 2));
    }

    #[test]
    fn nesting_is_bounded_like_the_parser() {
        let levels = MAX_DEPTH - 1; // the body's array is one level
        let ok = format!("[{}{}]", "[".repeat(levels), "]".repeat(levels));
        assert_eq!(split(&ok, 1000).unwrap().len(), 1);
        let ok = format!("[{}{}]", "{\"a\":".repeat(levels), "}".repeat(levels));
        assert_eq!(split(&ok, 1000).unwrap().len(), 1);
        let deep = format!("[{}", "[".repeat(100_000));
        let e = split_in_pieces(deep.as_bytes(), 1000, 4096).unwrap_err();
        assert_eq!((e.offset, e.kind), (MAX_DEPTH, SplitErrorKind::TooDeep));
        assert_eq!(
            error(format!("[{{\"a\":{}", "[".repeat(levels))),
            (6 + levels - 1, "nesting deeper than 256 levels".to_owned())
        );
    }

    #[test]
    fn a_body_that_is_not_an_array_is_an_error_at_its_first_byte() {
        assert_eq!(
            error(""),
            (
                0,
                "expected '[' (the body must be a JSON array), found the end of the body"
                    .to_owned()
            )
        );
        assert_eq!(
            error("{}"),
            (
                0,
                "expected '[' (the body must be a JSON array), found '{'".to_owned()
            )
        );
        assert_eq!(error("  \n x").0, 4);
        assert_eq!(
            error("\u{feff}[]"),
            (
                0,
                "expected '[' (the body must be a JSON array), found byte 0xEF".to_owned()
            )
        );
    }

    #[test]
    fn missing_doubled_and_trailing_commas_are_errors() {
        let after_comma = |found: &str| format!("expected a record after ',', found {found}");
        assert_eq!(error("[1,,2]"), (3, after_comma("','")));
        assert_eq!(error("[1, ,2]"), (4, after_comma("','")));
        assert_eq!(error("[1,]"), (3, after_comma("']'")));
        assert_eq!(error("[{},\n]"), (5, after_comma("']'")));
        assert_eq!(
            error("[,1]"),
            (1, "expected a record or ']', found ','".to_owned())
        );
        let missing = |found: &str| format!("expected ',' or ']' after a record, found {found}");
        assert_eq!(error("[1 2]"), (3, missing("'2'")));
        assert_eq!(error("[1\"a\"]"), (2, missing("'\"'")));
        assert_eq!(error("[{}{}]"), (3, missing("'{'")));
        assert_eq!(error("[\"a\" \"b\"]"), (5, missing("'\"'")));
        assert_eq!(error("[[]1]"), (3, missing("'1'")));
        assert_eq!(error("[1@]"), (2, missing("'@'")));
    }

    #[test]
    fn unbalanced_brackets_are_errors() {
        assert_eq!(
            error("[{\"a\":1]"),
            (
                7,
                "expected '}' to close the innermost open container, found ']'".to_owned()
            )
        );
        assert_eq!(error("[[1}]").0, 3);
        assert_eq!(error("[{\"a\":[}]").0, 7);
        assert_eq!(
            error("[}]"),
            (1, "expected a record or ']', found '}'".to_owned())
        );
        assert_eq!(
            error("[1]]"),
            (
                3,
                "expected nothing after the array's closing ']', found ']'".to_owned()
            )
        );
        assert_eq!(error("[1] x").0, 4);
        assert_eq!(error("[1][2]").0, 3);
        assert_eq!(error("[1],").0, 3);
        assert_eq!(
            error("[@]"),
            (1, "expected a record or ']', found '@'".to_owned())
        );
    }

    #[test]
    fn a_truncated_body_is_an_error_at_its_end() {
        let at_end = |body: &str, expected: &str| {
            assert_eq!(
                error(body),
                (
                    body.len(),
                    format!("expected {expected}, found the end of the body")
                ),
                "{body:?}"
            );
        };
        at_end("[", "a record or ']'");
        at_end("[1,", "a record after ','");
        at_end("[1", "',' or ']' after a record");
        at_end("[[1] ", "',' or ']' after a record");
        at_end("[{\"a\":\"b", "'\"' to close a string");
        at_end("[\"\\", "'\"' to close a string");
        at_end("[\"\\\"", "'\"' to close a string");
        at_end("[{\"a\":[1", "']' to close an array");
        at_end("[{\"a\":[1]", "'}' to close an object");
    }

    #[test]
    fn invalid_utf8_names_the_record_and_the_byte() {
        let e = split(b"[\"a\", \"b\xff\"]", 1000).unwrap_err();
        assert_eq!(
            (e.offset, e.kind),
            (8, SplitErrorKind::InvalidUtf8 { record: 1 })
        );
        // A sequence cut short by the record's end.
        let e = split(b"[\"\xe2\x82\"]", 1000).unwrap_err();
        assert_eq!(e.offset, 2);
        assert_eq!(
            e.to_string(),
            "body is not a JSON array of records: at byte 2: record 0 is not valid UTF-8"
        );
        // Split anywhere inside a character (checked by `split`), valid UTF-8 is fine.
        assert_eq!(
            texts("[\"\u{e9}\u{1F600}\"]", 1000),
            ["[\"\u{e9}\u{1F600}\"]"]
        );
    }

    #[test]
    fn after_an_error_every_call_repeats_it() {
        let mut splitter = BatchSplitter::new(1000);
        let e = splitter.push(b"[1,,").unwrap_err();
        assert_eq!(e.offset, 3);
        assert_eq!(splitter.push(b"2]"), Err(e.clone()));
        assert_eq!(splitter.finish(), Err(e));
    }

    #[test]
    fn batches_completed_before_the_error_are_returned_by_earlier_pushes() {
        let mut splitter = BatchSplitter::new(4);
        assert_eq!(splitter.push(b"[1,2,").unwrap().len(), 2);
        assert!(splitter.push(b"3 4]").is_err());
    }
}
