//! Downloads one chunk of the statistics API with timeouts, retries (exponential backoff
//! with jitter, `Retry-After` honoured, a run-wide retry budget) and the key redacted.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use secrecy::ExposeSecret;

use crate::config::ApiConfig;
use crate::error_chain;
use crate::window::Window;

/// A complete, well-formed chunk: a JSON array and how many records it holds.
#[derive(Debug)]
pub struct ChunkBody {
    pub json: String,
    pub records: usize,
    pub bytes: usize,
    pub attempts: u32,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "the API refused the credentials (HTTP 401) for {url}: check api.client and api.client_key"
    )]
    Unauthorized { url: String },
    #[error("the API rejected the request (HTTP {status}) for {url}: {message}")]
    Rejected {
        status: u16,
        url: String,
        message: String,
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

/// Why one attempt failed, and whether another attempt may help.
enum Attempt {
    Retry {
        reason: String,
        wait_at_least: Option<Duration>,
    },
    Fatal(FetchError),
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
    pub fn display_url(&self, window: &Window) -> String {
        self.url(window, "***").to_string()
    }

    fn url(&self, window: &Window, key: &str) -> reqwest::Url {
        let mut url = self
            .cfg
            .url
            .join("api/statistics")
            .expect("a base URL joins a relative path");
        url.query_pairs_mut()
            .append_pair("client", &self.cfg.client)
            .append_pair("client_key", key)
            .append_pair("start", &window.api_start())
            .append_pair("end", &window.api_end());
        url
    }

    /// Fetches `window`, retrying transient failures; returns only a complete JSON array.
    pub async fn fetch(&self, window: &Window) -> Result<ChunkBody, FetchError> {
        let shown = self.display_url(window);
        let started = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let (last, wait_at_least) = match self.attempt(window, &shown).await {
                Ok(mut body) => {
                    body.attempts = attempt;
                    body.elapsed = started.elapsed();
                    return Ok(body);
                }
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry {
                    reason,
                    wait_at_least,
                }) => (reason, wait_at_least),
            };
            if attempt > self.cfg.max_retries {
                return Err(FetchError::Exhausted {
                    url: shown,
                    attempts: attempt,
                    last,
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
                    last,
                });
            }
            let wait = self.backoff(attempt).max(wait_at_least.unwrap_or_default());
            tracing::warn!(url = %shown, attempt, error = %last, wait_ms = wait.as_millis() as u64, "download failed, retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// Full-jitter exponential backoff: uniform in [base/2, base], base doubling per attempt.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .cfg
            .backoff_initial
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(self.cfg.backoff_max);
        let half = base / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }

    async fn attempt(&self, window: &Window, shown: &str) -> Result<ChunkBody, Attempt> {
        let url = self.url(window, self.cfg.client_key.expose_secret());
        // `without_url` everywhere: reqwest errors would otherwise print the key.
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| Attempt::Retry {
                reason: error_chain(&e.without_url()),
                wait_at_least: None,
            })?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait = retry_after(response.headers()).map(|w| w.min(self.cfg.backoff_max * 10));
            return Err(Attempt::Retry {
                reason: "HTTP 429 Too Many Requests".into(),
                wait_at_least: wait,
            });
        }
        if status.is_server_error() {
            return Err(Attempt::Retry {
                reason: format!("HTTP {status}"),
                wait_at_least: None,
            });
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Attempt::Fatal(FetchError::Unauthorized {
                url: shown.to_owned(),
            }));
        }
        if !status.is_success() {
            let message = response.text().await.unwrap_or_default();
            let message = redact(message.trim(), self.cfg.client_key.expose_secret());
            return Err(Attempt::Fatal(FetchError::Rejected {
                status: status.as_u16(),
                url: shown.to_owned(),
                message: message.chars().take(300).collect(),
            }));
        }
        let bytes = response.bytes().await.map_err(|e| Attempt::Retry {
            reason: format!("body cut off: {}", error_chain(&e.without_url())),
            wait_at_least: None,
        })?;
        // `Vec::from(Bytes)` takes the buffer over without a copy: chunks can be tens of MB.
        let json = String::from_utf8(Vec::from(bytes)).map_err(|e| Attempt::Retry {
            reason: format!("body is not UTF-8: {e}"),
            wait_at_least: None,
        })?;
        // A body that is not one complete JSON array (e.g. truncated by a proxy) is a failed request.
        let records = lms_etl_parse::split_records(&json)
            .map_err(|e| Attempt::Retry {
                reason: format!("incomplete or invalid body: {e}"),
                wait_at_least: None,
            })?
            .len();
        Ok(ChunkBody {
            bytes: json.len(),
            json,
            records,
            attempts: 0,
            elapsed: Duration::ZERO,
        })
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
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

/// Masks every occurrence of `secret` (no-op for an empty secret).
pub fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, "***")
    }
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

    #[test]
    fn redact_masks_the_key() {
        assert_eq!(
            redact("GET /x?client_key=abc&y=abc", "abc"),
            "GET /x?client_key=***&y=***"
        );
        assert_eq!(redact("nothing", ""), "nothing");
    }
}
