//! lms-etl: moves the LMS statistics API's attempt records into PostgreSQL, aggregates
//! them per day inside the database (the `lms_etl` extension) and reports the result.
//! `main.rs` is the thin edge; everything here is a library so tests can reach it.

pub mod cli;
pub mod config;
pub mod console;
pub mod doctor;
pub mod fetch;
pub mod health;
pub mod load;
pub mod logs;
pub mod pg_tls;
pub mod report;
pub mod run;
pub mod signals;
pub mod status;
pub mod tls;
pub mod window;

// Crates of their own, under the names the binary has always used: the clock that `--now`
// starts, and the demo API behind the `demo-api` and `export-demo-copy` subcommands.
pub use lms_etl_clock as clock;
pub use lms_etl_demo_api as demo_api;

/// An error and its sources on one line (`a: b: c`), skipping a source whose text the
/// outer message already ends with.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}
