//! Parsers for what the LMS statistics API sends: Python-repr literals (`pyrepr`), the
//! `passback_params` dict (`passback`), whole chunks of attempt records (`record`), the
//! streamed body cut into batches of bounded size (`stream`) and the source's naive times as
//! instants (`source_time`), and `lis_result_sourcedid` split into course, problem and
//! learner (`sourcedid`), and sourcedids numbered by problem (`problems`).
//! Pure Rust, no PostgreSQL: the `lms_etl` extension and the loader both build on it.

/// Re-exported so dependents use the same chrono as `Attempt::created_at`.
pub use chrono;

pub mod json;
pub mod passback;
pub mod problems;
pub mod pyrepr;
pub mod record;
pub mod source_time;
pub mod sourcedid;
pub mod stream;

pub use passback::{parse_passback_params, PassbackError, PassbackParams};
pub use problems::{Problem, ProblemIndex};
pub use record::{parse_chunk, split_records, Attempt, AttemptType, ChunkError, Rejection};
pub use sourcedid::{split_sourcedid, Sourcedid, SourcedidError};
pub use stream::{Batch, BatchSplitter, SplitError, SplitErrorKind};
