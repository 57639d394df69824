//! Writes generated records out: as the API's JSON array (with the malformed records broken
//! on purpose, `created_at` naive in the API's zone), chunk by chunk, and as PostgreSQL COPY
//! text rows for the benchmark baseline (`created_at` an unambiguous UTC instant).

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use chrono::DateTime;

use super::faults::Malformation;
use super::generator::{DataSet, Record, BUCKET_MICROS};
use super::pyrepr::write_dict_repr;
use super::selection::Selection;

const HOST: &str = "lms.skillfactory.ru";

/// Reusable buffers for the strings of one record, so rendering allocates nothing.
#[derive(Default)]
pub struct Renderer {
    sourcedid: String,
    url: String,
    passback: String,
    /// `YYYY-MM-DD HH:MM:` of `minute`: one chrono call per bucket, not per record.
    minute_prefix: Vec<u8>,
    minute: Option<i64>,
}

impl Renderer {
    fn build_fields(&mut self, data: &DataSet, r: &Record) {
        let course = &data.courses[usize::from(r.course)];
        let block = hex(&course.blocks[usize::from(r.block)]);
        let user = hex(&data.users[r.user as usize].id);
        self.sourcedid.clear();
        for part in [
            "course-v1:",
            course.key.as_str(),
            ":",
            HOST,
            "-",
            block,
            ":",
            user,
        ] {
            self.sourcedid.push_str(part);
        }
        self.url.clear();
        if r.has_outcome_url {
            for part in [
                "https://",
                HOST,
                "/courses/course-v1:",
                course.key.as_str(),
                "/xblock/block-v1:",
                course.key.as_str(),
                "+type@lti+block@",
                block,
                "/handler_noauth/grade_handler",
            ] {
                self.url.push_str(part);
            }
        }
    }

    /// `YYYY-MM-DD HH:MM:SS.ffffff` of microseconds since 1970-01-01 00:00:00 (naive).
    fn write_timestamp(&mut self, micros: i64, out: &mut Vec<u8>) {
        let minute = micros.div_euclid(BUCKET_MICROS);
        if self.minute != Some(minute) {
            self.minute_prefix.clear();
            match DateTime::from_timestamp(minute * 60, 0) {
                Some(t) => self.minute_prefix.extend_from_slice(
                    t.naive_utc()
                        .format("%Y-%m-%d %H:%M:")
                        .to_string()
                        .as_bytes(),
                ),
                // Beyond chrono's range: no window parsed from a request gets here.
                None => self.minute_prefix.extend_from_slice(b"9999-12-31 23:59:"),
            }
            self.minute = Some(minute);
        }
        out.extend_from_slice(&self.minute_prefix);
        let within = micros - minute * BUCKET_MICROS;
        let (seconds, fraction) = (within / 1_000_000, within % 1_000_000);
        push_digits(out, seconds as u32, 2);
        out.push(b'.');
        push_digits(out, fraction as u32, 6);
    }

    /// One element of the API's JSON array, exactly as the real API lays it out;
    /// `local_created_at` is the naive local time to write (microseconds, see `Selection`).
    pub fn write_json(
        &mut self,
        data: &DataSet,
        r: &Record,
        local_created_at: i64,
        out: &mut Vec<u8>,
    ) {
        self.build_fields(data, r);
        self.passback.clear();
        write_dict_repr(
            &[
                ("oauth_consumer_key", ""),
                ("lis_result_sourcedid", &self.sourcedid),
                ("lis_outcome_service_url", &self.url),
            ],
            &mut self.passback,
        );
        match r.malformation {
            Some(Malformation::UnterminatedPassback) => {
                // Drops the closing quote and brace.
                self.passback.truncate(self.passback.len() - 2);
            }
            Some(Malformation::PassbackMissingColon) => {
                self.passback = self.passback.replacen("': ", "' ", 1);
            }
            _ => {}
        }

        out.extend_from_slice(b"{\"lti_user_id\": ");
        if r.malformation == Some(Malformation::NullUserId) {
            out.extend_from_slice(b"null");
        } else {
            out.push(b'"');
            out.extend_from_slice(&data.users[r.user as usize].id);
            out.push(b'"');
        }
        out.extend_from_slice(b", \"passback_params\": ");
        write_json_str(&self.passback, out);
        out.extend_from_slice(match r.kind.is_correct() {
            None => b", \"is_correct\": null, \"attempt_type\": \"",
            Some(false) => b", \"is_correct\": 0, \"attempt_type\": \"",
            Some(true) => b", \"is_correct\": 1, \"attempt_type\": \"",
        });
        let attempt_type = match r.malformation {
            Some(Malformation::UnknownAttemptType) => "peek",
            _ => r.kind.as_str(),
        };
        out.extend_from_slice(attempt_type.as_bytes());
        out.push(b'"');
        match r.malformation {
            Some(Malformation::MissingCreatedAt) => {}
            Some(Malformation::ImpossibleCreatedAt) => {
                out.extend_from_slice(b", \"created_at\": \"2026-13-45 99:61:00\"")
            }
            Some(Malformation::WordCreatedAt) => {
                out.extend_from_slice(b", \"created_at\": \"yesterday\"")
            }
            _ => {
                out.extend_from_slice(b", \"created_at\": \"");
                self.write_timestamp(local_created_at, out);
                out.push(b'"');
            }
        }
        out.push(b'}');
    }

    /// One row for `COPY ... FROM STDIN` (text format): user_id, oauth_consumer_key,
    /// lis_result_sourcedid, lis_outcome_service_url, is_correct, attempt_type, created_at.
    /// `created_at` is the instant in UTC with `+00`, so a `timestamptz` column gets it right
    /// whatever the session's TimeZone (a `timestamp` column ignores the suffix).
    pub fn write_copy_row(&mut self, data: &DataSet, r: &Record, out: &mut Vec<u8>) {
        self.build_fields(data, r);
        write_copy_field(hex(&data.users[r.user as usize].id), out);
        // oauth_consumer_key is always '' — an empty string, not NULL.
        out.extend_from_slice(b"\t\t");
        write_copy_field(&self.sourcedid, out);
        out.push(b'\t');
        write_copy_field(&self.url, out);
        out.extend_from_slice(match r.kind.is_correct() {
            None => b"\t\\N\t",
            Some(false) => b"\tf\t",
            Some(true) => b"\tt\t",
        });
        out.extend_from_slice(r.kind.as_str().as_bytes());
        out.push(b'\t');
        self.write_timestamp(r.created_at, out);
        out.extend_from_slice(b"+00\n");
    }
}

fn hex(id: &[u8; 32]) -> &str {
    // Built from ASCII hex digits only.
    std::str::from_utf8(id).unwrap_or_default()
}

fn push_digits(out: &mut Vec<u8>, mut value: u32, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// A JSON string literal, escaped as RFC 8259 requires.
pub fn write_json_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\') {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut plain_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain_from..i]);
        plain_from = i + 1;
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
    }
    out.extend_from_slice(&bytes[plain_from..]);
    out.push(b'"');
}

/// A field of COPY's text format: backslash, tab, newline and carriage return escaped.
pub fn write_copy_field(s: &str, out: &mut Vec<u8>) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// Chunks of roughly this size keep memory flat however large the window is.
const CHUNK_BYTES: usize = 64 * 1024;
/// A long empty stretch (a night at a low rate, a window of years) still yields now and
/// then, so one request cannot hold a runtime thread for long.
const MAX_BUCKETS_PER_CHUNK: u32 = 4_096;

/// The JSON array answering a selection, produced lazily in chunks. A chunk may be empty.
pub struct JsonChunks {
    data: Arc<DataSet>,
    selection: Selection,
    next_bucket: i64,
    end_bucket: i64,
    records: Vec<Record>,
    renderer: Renderer,
    written: u64,
    opened: bool,
    finished: bool,
}

impl JsonChunks {
    pub fn new(data: Arc<DataSet>, selection: Selection) -> Self {
        let buckets = selection.buckets();
        JsonChunks {
            data,
            selection,
            next_bucket: buckets.start,
            end_bucket: buckets.end,
            records: Vec::new(),
            renderer: Renderer::default(),
            written: 0,
            opened: false,
            finished: false,
        }
    }

    /// Records rendered so far, valid or not.
    pub fn records(&self) -> u64 {
        self.written
    }
}

impl Iterator for JsonChunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        let mut buf = Vec::with_capacity(CHUNK_BYTES + 4096);
        if !self.opened {
            buf.push(b'[');
            self.opened = true;
        }
        let mut buckets = 0;
        while buf.len() < CHUNK_BYTES && buckets < MAX_BUCKETS_PER_CHUNK {
            if self.next_bucket >= self.end_bucket {
                buf.push(b']');
                self.finished = true;
                break;
            }
            self.data.fill_bucket(self.next_bucket, &mut self.records);
            let offset = self.selection.bucket_offset(self.next_bucket);
            self.next_bucket += 1;
            buckets += 1;
            for r in &self.records {
                let Some(local) = self.selection.local_created_at(r, offset) else {
                    continue;
                };
                if self.written > 0 {
                    buf.extend_from_slice(b", ");
                }
                self.renderer.write_json(&self.data, r, local, &mut buf);
                self.written += 1;
            }
        }
        Some(Bytes::from(buf))
    }
}

/// The valid records of a selection (the ones the API would serve that are not malformed)
/// as COPY rows; returns how many were written.
pub fn write_copy_window(
    data: &DataSet,
    selection: &Selection,
    out: &mut impl io::Write,
) -> io::Result<u64> {
    let mut records = Vec::new();
    let mut renderer = Renderer::default();
    let mut buf = Vec::with_capacity(CHUNK_BYTES + 4096);
    let mut rows = 0;
    for bucket in selection.buckets() {
        data.fill_bucket(bucket, &mut records);
        let offset = selection.bucket_offset(bucket);
        for r in records
            .iter()
            .filter(|r| r.malformation.is_none() && selection.local_created_at(r, offset).is_some())
        {
            renderer.write_copy_row(data, r, &mut buf);
            rows += 1;
        }
        if buf.len() >= CHUNK_BYTES {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_quotes_backslashes_and_controls() {
        let mut out = Vec::new();
        write_json_str("a\"b\\c\n\t\r\x01é", &mut out);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "\"a\\\"b\\\\c\\n\\t\\r\\u0001é\""
        );
        assert_eq!(
            serde_json::from_slice::<String>(&out).unwrap(),
            "a\"b\\c\n\t\r\x01é"
        );
    }

    #[test]
    fn copy_fields_escape_backslash_tab_and_newlines() {
        let mut out = Vec::new();
        write_copy_field("a\\b\tc\nd\re", &mut out);
        assert_eq!(out, b"a\\\\b\\tc\\nd\\re");
    }

    #[test]
    fn timestamps_have_microseconds_and_leading_zeros() {
        let mut r = Renderer::default();
        let mut out = Vec::new();
        // 2026-11-24 10:11:02.000042
        let t = chrono::NaiveDate::from_ymd_opt(2026, 11, 24)
            .unwrap()
            .and_hms_micro_opt(10, 11, 2, 42)
            .unwrap();
        r.write_timestamp(t.and_utc().timestamp_micros(), &mut out);
        assert_eq!(out, b"2026-11-24 10:11:02.000042");
        out.clear();
        let before_1970 = chrono::NaiveDate::from_ymd_opt(1969, 12, 31)
            .unwrap()
            .and_hms_micro_opt(23, 59, 59, 999_999)
            .unwrap();
        r.write_timestamp(before_1970.and_utc().timestamp_micros(), &mut out);
        assert_eq!(out, b"1969-12-31 23:59:59.999999");
    }
}
