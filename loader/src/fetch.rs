//! Talks to the statistics API: one request per chunk, with timeouts, no redirects, and the
//! retry policy (exponential backoff with jitter, `Retry-After` honoured, a run-wide retry
//! budget). The body is not read here: the loader streams it into the database.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rand::Rng;
use reqwest::StatusCode;
use secrecy::ExposeSecret;

use crate::config::ApiConfig;
use crate::error_chain;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "the API refused the credentials (HTTP {status}) for {url}: check api.client and api.client_key"
    )]
    Unauthorized { status: u16, url: String },
    #[error("the API rejected the request (HTTP {status}) for {url}: {message}")]
    Rejected {
        status: u16,
        url: String,
        message: String,
    },
    #[error("the API answered {url} with a redirect (HTTP {status}) to {location}; lms-etl follows no redirect (the key travels in the query string): set api.url to the final address")]
    Redirected {
        status: u16,
        url: String,
        location: String,
    },
    #[error("giving up on {url} after {attempts} attempts: {last}")]
    Exhausted {
        url: String,
        attempts: u32,
        last: String,
    },
    #[error(
        "retry budget of {budget} retries for this run is used up; last failure on {url}: {last}"
    )]
    BudgetSpent {
        url: String,
        budget: u32,
        last: String,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Why one attempt at a chunk failed, and whether another attempt may help.
#[derive(Debug)]
pub enum Failure {
    Retry {
        reason: String,
        wait_at_least: Option<Duration>,
    },
    Fatal(FetchError),
}

impl Failure {
    pub fn retry(reason: impl Into<String>) -> Failure {
        Failure::Retry {
            reason: reason.into(),
            wait_at_least: None,
        }
    }
}

pub struct Fetcher {
    http: reqwest::Client,
    cfg: ApiConfig,
    retries_left: AtomicU32,
}

impl Fetcher {
    pub fn new(cfg: &ApiConfig) -> Result<Fetcher, FetchError> {
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            // A redirect would carry the key in its query string to another address.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("lms-etl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Client(e.without_url().to_string()))?;
        Ok(Fetcher {
            http,
            cfg: cfg.clone(),
            retries_left: AtomicU32::new(cfg.retry_budget),
        })
    }

    /// The request URL with `client_key` masked: the only form that may be logged.
    pub fn display_url(&self, (start, end): &(String, String)) -> String {
        self.url(start, end, "***").to_string()
    }

    fn url(&self, start: &str, end: &str, key: &str) -> reqwest::Url {
        let mut url = self
            .cfg
            .url
            .join("api/statistics")
            .expect("a base URL joins a relative path");
        url.query_pairs_mut()
            .append_pair("client", &self.cfg.client)
            .append_pair("client_key", key)
            .append_pair("start", start)
            .append_pair("end", end);
        url
    }

    /// Masks the key in any text, in its plain and URL-encoded forms.
    pub fn scrub(&self, text: &str) -> String {
        scrub(text, self.cfg.client_key.expose_secret())
    }

    /// One request for the naive window `bounds`; a 200 response whose body is yet to read.
    pub async fn open(&self, bounds: &(String, String)) -> Result<reqwest::Response, Failure> {
        let shown = self.display_url(bounds);
        let url = self.url(&bounds.0, &bounds.1, self.cfg.client_key.expose_secret());
        // `without_url` everywhere: reqwest errors would otherwise print the key.
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| Failure::retry(self.scrub(&error_chain(&e.without_url()))))?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait = retry_after(response.headers()).map(|w| w.min(self.cfg.backoff_max * 10));
            return Err(Failure::Retry {
                reason: "HTTP 429 Too Many Requests".into(),
                wait_at_least: wait,
            });
        }
        if status.is_server_error() {
            return Err(Failure::retry(format!("HTTP {status}")));
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Failure::Fatal(FetchError::Unauthorized {
                status: status.as_u16(),
                url: shown,
            }));
        }
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map_or_else(|| "(no Location)".to_owned(), |l| self.scrub(l));
            return Err(Failure::Fatal(FetchError::Redirected {
                status: status.as_u16(),
                url: shown,
                location,
            }));
        }
        // Only a 200 is a whole answer: a 202 or 206 with `[]` would pass for an empty chunk.
        if status != StatusCode::OK {
            let message = response.text().await.unwrap_or_default();
            let message = self.scrub(message.trim());
            return Err(Failure::Fatal(FetchError::Rejected {
                status: status.as_u16(),
                url: shown,
                message: message.chars().take(300).collect(),
            }));
        }
        Ok(response)
    }

    /// After failed attempt number `attempt`: waits the backoff and returns, or gives up.
    pub async fn before_retry(
        &self,
        bounds: &(String, String),
        attempt: u32,
        reason: String,
        wait_at_least: Option<Duration>,
    ) -> Result<(), FetchError> {
        let shown = self.display_url(bounds);
        if attempt > self.cfg.max_retries {
            return Err(FetchError::Exhausted {
                url: shown,
                attempts: attempt,
                last: reason,
            });
        }
        if self
            .retries_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(FetchError::BudgetSpent {
                url: shown,
                budget: self.cfg.retry_budget,
                last: reason,
            });
        }
        let wait = self.backoff(attempt).max(wait_at_least.unwrap_or_default());
        tracing::warn!(target: crate::console::CHUNK, url = %shown, attempt, error = %reason, wait_ms = wait.as_millis() as u64, "download failed, retrying");
        tokio::time::sleep(wait).await;
        Ok(())
    }

    fn backoff(&self, attempt: u32) -> Duration {
        backoff(self.cfg.backoff_initial, self.cfg.backoff_max, attempt)
    }
}

/// Exponential backoff with jitter before retry number `attempt` (1-based): uniform in
/// [base/2, base], base = `initial` doubling per attempt, capped at `max`. Jitter keeps
/// clients that failed together from retrying together.
pub fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let base = initial
        .saturating_mul(1u32 << (attempt.max(1) - 1).min(16))
        .min(max);
    let half = base / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

/// Masks every occurrence of `secret` (no-op for an empty secret), however a server or
/// proxy wrote it into a URL: each byte plain, as `%XX` in upper or lower case, encoded twice
/// (`%25XX`), or a space as `+`, in any mix. A `Location` header echoes the key in whatever
/// encoding the server chose, so matching the two encodings this program writes is not enough.
pub fn scrub(text: &str, secret: &str) -> String {
    let secret = secret.as_bytes();
    if secret.is_empty() {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match encoded_match(&bytes[at..], secret) {
            Some(len) => {
                out.extend_from_slice(b"***");
                at += len;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    // Only whole matches of a UTF-8 secret are cut out, and each starts and ends on a
    // character boundary of `text` (an escape is ASCII, a plain byte matches itself).
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The length of `secret`, in any encoding [`scrub`] knows, at the start of `text`.
fn encoded_match(text: &[u8], secret: &[u8]) -> Option<usize> {
    let Some((&want, rest)) = secret.split_first() else {
        return Some(0);
    };
    // A `%` in the key can be read more than one way (`%` itself, `%25`, `%2525`): try each.
    encodings(text, want)
        .into_iter()
        .flatten()
        .find_map(|len| Some(len + encoded_match(&text[len..], rest)?))
}

/// The lengths of the encodings of `want` that `text` starts with.
fn encodings(text: &[u8], want: u8) -> [Option<usize>; 3] {
    let hex = |pair: &[u8]| -> Option<u8> {
        let digit = |c: u8| (c as char).to_digit(16);
        match pair {
            [hi, lo, ..] => Some((digit(*hi)? * 16 + digit(*lo)?) as u8),
            _ => None,
        }
    };
    let plain = match text.first() {
        Some(&first) if first == want || (first == b'+' && want == b' ') => Some(1),
        _ => None,
    };
    let once = (text.first() == Some(&b'%') && hex(&text[1..]) == Some(want)).then_some(3);
    let twice = (text.starts_with(b"%25") && hex(&text[3..]) == Some(want)).then_some(5);
    [plain, once, twice]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None); // in the past
    }

    /// Every byte outside the unreserved set as %XX, as a path or a strict client writes it.
    fn percent_encoded(text: &str) -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    #[test]
    fn scrub_masks_the_key_plain_and_url_encoded() {
        assert_eq!(
            scrub("GET /x?client_key=abc&y=abc", "abc"),
            "GET /x?client_key=***&y=***"
        );
        assert_eq!(scrub("nothing", ""), "nothing");
        let key = "k3y with/+&=é";
        let form: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
        let text = format!("a={form} b={} c={key}", percent_encoded(key));
        assert_eq!(scrub(&text, key), "a=*** b=*** c=***");
    }

    /// A server's `Location` may encode the key otherwise than this program does: lower-case
    /// hex, `%20` or `+` for a space, reserved bytes left plain, or encoded twice by a proxy.
    #[test]
    fn scrub_masks_the_key_in_any_encoding_a_server_may_echo() {
        let key = "k3y with/+&=é";
        for echoed in [
            "k3y%20with%2f%2b%26%3d%c3%a9", // lower-case hex, %20 for a space
            "k3y+with/%2B%26%3D%C3%A9",     // `+` for a space, `/` left plain
            "k3y%2520with%252F%252B%2526%253D%25C3%25A9", // encoded twice
            "%6b%33%79%20with%2F+&=é",      // even plain letters encoded
        ] {
            let text = format!("redirect to https://x.example/s?client_key={echoed}&start=1");
            assert_eq!(
                scrub(&text, key),
                "redirect to https://x.example/s?client_key=***&start=1",
                "{echoed}"
            );
        }
        // Text around a match, multi-byte characters included, is kept as it was.
        assert_eq!(scrub("é-abc-é", "abc"), "é-***-é");
        assert_eq!(scrub("ab%63d", "abc"), "***d");
        assert_eq!(scrub("a%2", "a%2x"), "a%2");
        // A `%` in the key, plain or encoded, once or twice.
        assert_eq!(scrub("k=%25A1 k=%2525A1 k=%A1", "%A1"), "k=*** k=*** k=***");
    }
}
