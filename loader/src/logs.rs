//! Logging: tracing to `<dir>/YYYY-MM-DD.log` (UTC date, appended; everything) and to stderr
//! (what the [`Console`] shows), plus retention by the date in the file name —
//! tracing-appender's own pruning counts files instead of reading dates, so it is not used.

use std::path::{Path, PathBuf};

use chrono::{NaiveDate, Utc};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::console::Console;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot create log directory {dir}: {source}")]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open a log file in {dir}: {message}")]
    Open { dir: PathBuf, message: String },
    #[error("invalid log level {level:?}: {message}")]
    Level { level: String, message: String },
}

/// Keeps the file writer flushing; drop it last (at the end of `main`).
pub struct Logging {
    _guard: WorkerGuard,
    pub dir: PathBuf,
}

impl Logging {
    /// Today's log file (the writer rolls over at UTC midnight).
    pub fn current_file(&self) -> PathBuf {
        self.dir.join(file_name(Utc::now().date_naive()))
    }
}

pub fn file_name(day: NaiveDate) -> String {
    format!("{}.log", day.format("%Y-%m-%d"))
}

/// Installs the global subscriber: every line (without colours) in the dated file, and on
/// stderr what `console` shows. `level` is an `EnvFilter` directive; `RUST_LOG` wins if set.
pub fn init(dir: &Path, level: &str, console: &Console) -> Result<Logging, LogError> {
    std::fs::create_dir_all(dir).map_err(|source| LogError::CreateDir {
        dir: dir.to_owned(),
        source,
    })?;
    let appender = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_suffix("log")
        .build(dir)
        .map_err(|e| LogError::Open {
            dir: dir.to_owned(),
            message: e.to_string(),
        })?;
    let (file_writer, guard) = tracing_appender::non_blocking(appender);
    let filter = match std::env::var("RUST_LOG") {
        Ok(directive) if !directive.is_empty() => EnvFilter::try_new(directive),
        _ => EnvFilter::try_new(level),
    }
    .map_err(|e| LogError::Level {
        level: level.to_owned(),
        message: e.to_string(),
    })?;
    let shown = console.clone();
    tracing_subscriber::registry()
        .with(filter)
        .with(
            fmt::layer()
                .with_writer(console.clone())
                .with_ansi(console.terminal())
                .with_target(false)
                .with_filter(tracing_subscriber::filter::filter_fn(move |meta| {
                    shown.shows(meta)
                })),
        )
        .with(
            fmt::layer()
                .with_writer(file_writer)
                .with_ansi(false)
                .with_target(false),
        )
        .init();
    install_panic_hook();
    Ok(Logging {
        _guard: guard,
        dir: dir.to_owned(),
    })
}

/// A panic is an error like any other: it goes to the log file before the process dies.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "the program panicked");
        default(info);
    }));
}

/// Deletes `YYYY-MM-DD.log` files older than the last `keep_days` days (today included);
/// other files are left alone. Returns what was deleted.
pub fn prune(dir: &Path, today: NaiveDate, keep_days: u32) -> std::io::Result<Vec<PathBuf>> {
    let oldest_kept = today - chrono::Duration::days(i64::from(keep_days.max(1)) - 1);
    let mut deleted = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(day) = log_day(name) else { continue };
        if day < oldest_kept && path.is_file() {
            std::fs::remove_file(&path)?;
            deleted.push(path);
        }
    }
    deleted.sort();
    Ok(deleted)
}

/// The date of a file named exactly `YYYY-MM-DD.log`.
fn log_day(name: &str) -> Option<NaiveDate> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(stem, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_three_days_by_name_and_ignores_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "2026-11-20.log",
            "2026-11-22.log",
            "2026-11-23.log",
            "2026-11-24.log",
            "2026-11-25.log",
            "notes.txt",
            "2026-11-01.log.gz",
            "app.2026-11-01.log",
            "2026-11-1.log",
        ];
        for n in names {
            std::fs::write(dir.path().join(n), "x").unwrap();
        }
        let today = NaiveDate::from_ymd_opt(2026, 11, 25).unwrap();
        let deleted = prune(dir.path(), today, 3).unwrap();
        let deleted: Vec<_> = deleted
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(deleted, ["2026-11-20.log", "2026-11-22.log"]);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "2026-11-01.log.gz",
                "2026-11-1.log",
                "2026-11-23.log",
                "2026-11-24.log",
                "2026-11-25.log",
                "app.2026-11-01.log",
                "notes.txt"
            ]
        );
    }

    #[test]
    fn file_is_named_by_date() {
        assert_eq!(
            file_name(NaiveDate::from_ymd_opt(2026, 1, 2).unwrap()),
            "2026-01-02.log"
        );
    }
}
