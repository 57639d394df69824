//! Parsers for what the LMS statistics API sends: Python-repr literals (`pyrepr`), the
//! `passback_params` dict (`passback`) and whole chunks of attempt records (`record`).
//! Pure Rust, no PostgreSQL: the `lms_etl` extension and the loader both build on it.

/// Re-exported so dependents use the same chrono as `Attempt::created_at`.
pub use chrono;

pub mod json;
pub mod passback;
pub mod pyrepr;
pub mod record;

pub use passback::{parse_passback_params, PassbackError, PassbackParams};
pub use record::{parse_chunk, split_records, Attempt, AttemptType, ChunkError, Rejection};
