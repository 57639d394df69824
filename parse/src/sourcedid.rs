//! `lis_result_sourcedid` split into what it names: the course, the problem (an LTI block)
//! and the learner. The platform writes it as
//! `course-v1:<Org>+<Course>+<Run>:<host>-<block: 32 hex>:<user: 32 hex>`.

use std::fmt;

/// Parts of one sourcedid, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sourcedid<'a> {
    /// `course-v1:<Org>+<Course>+<Run>`, the platform's course key.
    pub course_id: &'a str,
    pub org: &'a str,
    pub course: &'a str,
    pub course_run: &'a str,
    /// The LMS host the block lives on (`lms.skillfactory.ru`).
    pub host: &'a str,
    /// The problem: the LTI block's 32 hex digits.
    pub block_id: &'a str,
    /// The learner: 32 hex digits (equals `lti_user_id`).
    pub user_id: &'a str,
}

/// Where a sourcedid stops matching the format, and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {position}: {expected}")]
pub struct SourcedidError {
    /// Byte offset into the input (always at a char boundary, at most its length).
    pub position: usize,
    pub expected: &'static str,
}

const PREFIX: &str = "course-v1:";
pub(crate) const HEX_ID_LEN: usize = 32;

/// Splits a sourcedid; an error names the byte where it stops matching the format.
pub fn split_sourcedid(input: &str) -> Result<Sourcedid<'_>, SourcedidError> {
    let fail = |position, expected| Err(SourcedidError { position, expected });
    if !input.starts_with(PREFIX) {
        let matched = common_prefix_len(input, PREFIX);
        return fail(matched, "expected the prefix 'course-v1:'");
    }
    let mut at = PREFIX.len();
    let org = part(input, &mut at, b'+', "an organisation followed by '+'")?;
    let course = part(input, &mut at, b'+', "a course followed by '+'")?;
    let course_run = part(input, &mut at, b':', "a course run followed by ':'")?;
    let course_id = &input[..at - 1];

    let location_start = at;
    let location = part(input, &mut at, b':', "<host>-<block id> followed by ':'")?;
    let Some(dash) = location.rfind('-') else {
        return fail(
            location_start,
            "<host>-<block id>: no '-' before the block id",
        );
    };
    let (host, block_id) = (&location[..dash], &location[dash + 1..]);
    if host.is_empty() {
        return fail(location_start, "a host name before '-'");
    }
    check_hex_id(
        block_id,
        location_start + dash + 1,
        "a block id of 32 hex digits",
    )?;

    let user_id = &input[at..];
    check_hex_id(user_id, at, "a user id of 32 hex digits at the end")?;
    Ok(Sourcedid {
        course_id,
        org,
        course,
        course_run,
        host,
        block_id,
        user_id,
    })
}

/// The non-empty text from `*at` to the next `delimiter` (moving `*at` past it), without
/// `+` or `:` inside.
fn part<'a>(
    input: &'a str,
    at: &mut usize,
    delimiter: u8,
    expected: &'static str,
) -> Result<&'a str, SourcedidError> {
    let start = *at;
    let rest = &input.as_bytes()[start..];
    match rest.iter().position(|b| matches!(b, b'+' | b':')) {
        Some(0) | None => Err(SourcedidError {
            position: start,
            expected,
        }),
        Some(n) if rest[n] == delimiter => {
            *at = start + n + 1;
            Ok(&input[start..start + n])
        }
        // '+' and ':' are ASCII, so start + n is a char boundary.
        Some(n) => Err(SourcedidError {
            position: start + n,
            expected,
        }),
    }
}

fn check_hex_id(id: &str, position: usize, expected: &'static str) -> Result<(), SourcedidError> {
    // The first byte that is not a hex digit, or the end if the id is too short or long.
    let bad = id
        .bytes()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(id.len().min(HEX_ID_LEN));
    if bad == HEX_ID_LEN && id.len() == HEX_ID_LEN {
        return Ok(());
    }
    // Report a char boundary: a multi-byte char starts where its first byte is.
    Err(SourcedidError {
        position: position + bad,
        expected,
    })
}

fn common_prefix_len(input: &str, prefix: &str) -> usize {
    input
        .char_indices()
        .zip(prefix.chars())
        .take_while(|((_, a), b)| a == b)
        .last()
        .map_or(0, |((i, c), _)| i + c.len_utf8())
}

impl fmt::Display for Sourcedid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}-{}:{}",
            self.course_id, self.host, self.block_id, self.user_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = "course-v1:SkillFactory+DST-3.0+28FEB2021:lms.skillfactory.ru-ca3ecf8e5f284c329eb7bd529e1a9f7e:3f4a2c4ba6bb5ad9ad8ea2a8ad29ea52";

    #[test]
    fn splits_a_real_sourcedid() {
        let s = split_sourcedid(REAL).unwrap();
        assert_eq!(s.course_id, "course-v1:SkillFactory+DST-3.0+28FEB2021");
        assert_eq!(
            (s.org, s.course, s.course_run),
            ("SkillFactory", "DST-3.0", "28FEB2021")
        );
        assert_eq!(s.host, "lms.skillfactory.ru");
        assert_eq!(s.block_id, "ca3ecf8e5f284c329eb7bd529e1a9f7e");
        assert_eq!(s.user_id, "3f4a2c4ba6bb5ad9ad8ea2a8ad29ea52");
        assert_eq!(s.to_string(), REAL);
    }

    #[test]
    fn names_the_byte_where_the_format_breaks() {
        let cases = [
            ("", 0, "prefix"),
            ("course-v2:A+B+C:h-x:y", 8, "prefix"),
            ("course-v1:", 10, "organisation"),
            ("course-v1:+B+C:h-0:0", 10, "organisation"),
            ("course-v1:A:B+C", 11, "organisation"),
            ("course-v1:A+B", 12, "course followed by '+'"),
            ("course-v1:A+B+C", 14, "course run"),
            ("course-v1:A+B+C:hostonly:0", 16, "no '-'"),
            ("course-v1:A+B+C:-ca3ecf8e5f284c329eb7bd529e1a9f7e:0", 16, "host name"),
            ("course-v1:A+B+C:h-ca3e:0", 22, "block id"),
            ("course-v1:A+B+C:h-ca3ecf8e5f284c329eb7bd529e1a9f7g:0", 49, "block id"),
            (
                "course-v1:A+B+C:h-ca3ecf8e5f284c329eb7bd529e1a9f7e:3f4a2c4ba6bb5ad9ad8ea2a8ad29ea5",
                82,
                "user id",
            ),
            (
                "course-v1:A+B+C:h-ca3ecf8e5f284c329eb7bd529e1a9f7e:3f4a2c4ba6bb5ad9ad8ea2a8ad29ea52:x",
                83,
                "user id",
            ),
        ];
        for (input, position, expected) in cases {
            let err = split_sourcedid(input).unwrap_err();
            assert_eq!(err.position, position, "{input}: {err}");
            assert!(err.expected.contains(expected), "{input}: {err}");
        }
    }

    #[test]
    fn a_position_is_a_char_boundary_in_non_ascii_input() {
        let input =
            "course-v1:É+B+C:h-ca3ecf8e5f284c329eb7bd529e1a9f7e:3f4a2c4ba6bb5ad9ad8ea2a8ad29eé";
        let err = split_sourcedid(input).unwrap_err();
        assert!(input.is_char_boundary(err.position), "{err}");
        assert!(split_sourcedid("coursé").unwrap_err().position <= "coursé".len());
    }
}
