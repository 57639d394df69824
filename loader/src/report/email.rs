//! Run notifications: one e-mail per run (plain text + HTML), sent over SMTP with lettre,
//! or written as an `.eml` file into the outbox when no SMTP server is configured.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;
use lettre::message::{Message, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::ExposeSecret;

use super::{shorten_example, DailyStats, RunReport, RunStatus};
use crate::config::{EmailConfig, SmtpConfig, SmtpTls};

/// Longest error excerpt in a subject line, in characters.
const SUBJECT_ERROR_CHARS: usize = 120;

/// What [`send_report`] did with the notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Accepted by the SMTP server for this many recipients.
    Sent { recipients: usize },
    /// No SMTP server configured: the message is this `.eml` file.
    WrittenToOutbox(PathBuf),
    /// `email.send_on` does not want a message for this outcome.
    Skipped,
}

/// A notification that could not be built or delivered. Names the server as `host:port`;
/// never holds the SMTP password.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("cannot build the notification e-mail: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("cannot set up TLS for SMTP server {server}: {message}")]
    Tls { server: String, message: String },
    #[error("e-mail via SMTP server {server} (tls={tls}) failed: {stage}: {message}")]
    Smtp {
        server: String,
        tls: &'static str,
        stage: &'static str,
        message: String,
    },
    #[error("cannot write the e-mail into the outbox {dir}: {message}")]
    Outbox { dir: PathBuf, message: String },
}

/// Sends (or files, or skips) the notification for `report`, as `cfg` says.
/// A failure is returned, not logged: the caller decides; the loaded data is never touched.
pub async fn send_report(cfg: &EmailConfig, report: &RunReport) -> Result<Delivery, EmailError> {
    // An interrupted run is not a success: whoever wants failures wants to know.
    let success = matches!(report.status, RunStatus::Succeeded | RunStatus::Partial);
    if !cfg.send_on.wants(success) {
        tracing::debug!(status = report.status.as_str(), send_on = ?cfg.send_on, "no e-mail for this outcome");
        return Ok(Delivery::Skipped);
    }
    let message = build_message(cfg, report)?;
    match &cfg.smtp {
        None => write_to_outbox(&cfg.outbox_dir, message).await,
        Some(smtp) => send_smtp(smtp, message, cfg.to.len()).await,
    }
}

fn build_message(cfg: &EmailConfig, report: &RunReport) -> Result<Message, EmailError> {
    let mut builder = Message::builder()
        .from(cfg.from.clone())
        .subject(subject(report))
        .message_id(None);
    for to in &cfg.to {
        builder = builder.to(to.clone());
    }
    Ok(builder.multipart(MultiPart::alternative_plain_html(
        render_text(report),
        render_html(report),
    ))?)
}

async fn write_to_outbox(dir: &Path, message: Message) -> Result<Delivery, EmailError> {
    let outbox_error = |e: &dyn std::fmt::Display| EmailError::Outbox {
        dir: dir.to_owned(),
        message: e.to_string(),
    };
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| outbox_error(&e))?;
    let id = AsyncFileTransport::<Tokio1Executor>::new(dir)
        .send(message)
        .await
        .map_err(|e| outbox_error(&e))?;
    // lettre's file transport names the file `<id>.eml`.
    let path = dir.join(format!("{id}.eml"));
    tracing::info!(path = %path.display(), "no SMTP server configured; e-mail written to the outbox");
    Ok(Delivery::WrittenToOutbox(path))
}

async fn send_smtp(
    smtp: &SmtpConfig,
    message: Message,
    recipients: usize,
) -> Result<Delivery, EmailError> {
    let server = format!("{}:{}", smtp.host, smtp.port);
    let tls_error = |message: String| EmailError::Tls {
        server: server.clone(),
        message,
    };
    // The system's roots, plus the private CA of `email.ca_file` if one is configured.
    let tls_params = || {
        let mut builder = TlsParameters::builder(smtp.host.clone());
        if let Some(path) = &smtp.ca_file {
            let certs = crate::tls::read_ca_file(path).map_err(|e| tls_error(e.to_string()))?;
            for cert in certs {
                let cert = Certificate::from_der(cert.to_vec())
                    .map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
                builder = builder.add_root_certificate(cert);
            }
        }
        builder.build().map_err(|e| tls_error(e.to_string()))
    };
    let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.as_str());
    let mut builder = match smtp.tls {
        SmtpTls::None => builder,
        // Required, not Opportunistic: no credentials or data go out unless the upgrade works.
        SmtpTls::StartTls => builder.tls(Tls::Required(tls_params()?)),
        SmtpTls::Implicit => builder.tls(Tls::Wrapper(tls_params()?)),
    }
    .port(smtp.port)
    .timeout(Some(smtp.timeout));
    let password = smtp
        .password
        .as_ref()
        .map(|p| p.expose_secret().to_owned())
        .unwrap_or_default();
    if let Some(user) = &smtp.user {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    let transport = builder.build();

    match transport.send(message).await {
        Ok(_) => {
            tracing::info!(server = %server, recipients, "run notification sent");
            Ok(Delivery::Sent { recipients })
        }
        Err(e) => {
            let mut message = e.to_string();
            if !password.is_empty() {
                // lettre never puts credentials in errors, but a server may echo what it got.
                message = message.replace(&password, "[redacted]");
            }
            Err(EmailError::Smtp {
                server,
                tls: tls_name(smtp.tls),
                stage: smtp_stage(&e, smtp.tls),
                message,
            })
        }
    }
}

fn tls_name(tls: SmtpTls) -> &'static str {
    match tls {
        SmtpTls::None => "none",
        SmtpTls::StartTls => "starttls",
        SmtpTls::Implicit => "tls",
    }
}

/// lettre reports one error for the whole exchange; this names the likely step from its kind,
/// reply code (RFC 3207 / RFC 4954 codes) and the configured TLS mode.
fn smtp_stage(e: &lettre::transport::smtp::Error, tls: SmtpTls) -> &'static str {
    let code = e.status().map(|c| c.to_string());
    let mentions_tls = e.to_string().contains("TLS");
    match code.as_deref() {
        _ if e.is_timeout() => "timed out",
        _ if e.is_tls() || tls_handshake_failed(e) => "TLS negotiation failed",
        Some("530" | "534" | "535" | "538") => "authentication rejected",
        Some("454") if tls == SmtpTls::StartTls && mentions_tls => "STARTTLS refused by the server",
        Some(_) if e.is_transient() => "server refused temporarily",
        Some(_) => "server rejected the request",
        None if e.is_client() && tls == SmtpTls::StartTls && mentions_tls => {
            "STARTTLS required but not offered"
        }
        None if e.is_client() => "stopped before sending",
        None if e.is_response() => "invalid server response",
        None => "connection failed",
    }
}

/// lettre reports a failed handshake (e.g. an untrusted certificate) as a connection error;
/// rustls' error inside it, wrapped in an `io::Error`, tells it apart.
fn tls_handshake_failed(e: &lettre::transport::smtp::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let inner = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map_or(s, |inner| inner as &dyn std::error::Error);
        if inner.is::<rustls::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

// ---- rendering -------------------------------------------------------------------

/// `[lms-etl] OK 2026-11-24: 12 345 attempts loaded` and its PARTIAL / FAILED / INTERRUPTED
/// variants; a run that loaded data also names its conflicts and rejections, if any.
pub fn subject(report: &RunReport) -> String {
    let date = report_date(report);
    let loaded = format!(
        "{} loaded{}",
        attempts(report.counts.inserted),
        quarantined(report)
    );
    match report.status {
        RunStatus::Succeeded => format!("[lms-etl] OK {date}: {loaded}"),
        RunStatus::Partial => format!("[lms-etl] PARTIAL {date}: {loaded}, Sheets failed"),
        RunStatus::Interrupted => format!("[lms-etl] INTERRUPTED {date}: stopped after {loaded}"),
        RunStatus::Failed => {
            let reason = report
                .error
                .as_deref()
                .and_then(|e| e.lines().map(str::trim).find(|l| !l.is_empty()));
            format!(
                "[lms-etl] FAILED {date}: {}",
                cut(reason.unwrap_or("unknown error"), SUBJECT_ERROR_CHARS)
            )
        }
    }
}

/// `, 3 conflicts, 5 rejected`, or nothing when every fetched record was taken.
fn quarantined(report: &RunReport) -> String {
    let c = &report.counts;
    let mut text = String::new();
    if c.conflicts > 0 {
        let noun = if c.conflicts == 1 {
            "conflict"
        } else {
            "conflicts"
        };
        let _ = write!(text, ", {} {noun}", thousands(c.conflicts));
    }
    if c.rejected > 0 {
        let _ = write!(text, ", {} rejected", thousands(c.rejected));
    }
    text
}

/// The plain-text body.
pub fn render_text(report: &RunReport) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "lms-etl run {}: {}",
        run_id(report),
        report.status.as_str()
    );
    let _ = writeln!(t);
    for (k, v) in summary(report) {
        let _ = writeln!(t, "{:<11}{v}", format!("{k}:"));
    }
    if !report.warnings.is_empty() {
        let _ = writeln!(t);
        let _ = writeln!(t, "Warnings");
        for w in &report.warnings {
            let _ = writeln!(t, "  - {w}");
        }
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "Counts");
    for (name, n) in counts(report) {
        let _ = writeln!(t, "  {name:<12}{:>12}", thousands(n));
    }
    if !report.rejections.is_empty() {
        let _ = writeln!(t);
        let _ = writeln!(t, "Rejected records");
        for g in &report.rejections {
            let _ = writeln!(t, "  {:>10}  {}", thousands(g.count), g.kind);
            let _ = writeln!(t, "  {:>10}  e.g. {}", "", shorten_example(&g.example));
        }
    }
    if !report.stage_ms.is_empty() {
        let _ = writeln!(t);
        let _ = writeln!(t, "Stages");
        for (stage, ms) in &report.stage_ms {
            let _ = writeln!(t, "  {stage:<12}{:>12} ms", thousands_u(*ms));
        }
    }
    let _ = writeln!(t);
    if report.days.is_empty() {
        let _ = writeln!(t, "Days: none touched");
    } else {
        let _ = writeln!(t, "Days");
        let _ = writeln!(
            t,
            "  {:<22}{:>10}{:>12}{:>14}{:>14}",
            day_heading(report),
            "attempts",
            "successful",
            "unique users",
            "success rate"
        );
        for d in &report.days {
            let [date, a, s, u, r] = day_cells(d);
            let _ = writeln!(t, "  {date:<22}{a:>10}{s:>12}{u:>14}{r:>14}");
        }
    }
    let _ = writeln!(t);
    if let Some(url) = &report.sheets_url {
        let _ = writeln!(t, "Google Sheets: {url}");
    }
    if let Some(err) = &report.sheets_error {
        let _ = writeln!(t, "Sheets error: {err}");
    }
    if let Some(err) = &report.error {
        let _ = writeln!(t, "Error:");
        for line in err.lines() {
            let _ = writeln!(t, "  {line}");
        }
    }
    let _ = writeln!(t, "Log file: {}", report.log_file.display());
    t
}

/// The HTML body; every interpolated value is escaped.
pub fn render_html(report: &RunReport) -> String {
    let e = escape;
    let mut h = String::new();
    let _ = writeln!(h, "<!DOCTYPE html>");
    let _ = writeln!(
        h,
        "<html><head><meta charset=\"utf-8\"><title>{}</title></head>",
        e(&subject(report))
    );
    let _ = writeln!(
        h,
        "<body style=\"font-family: sans-serif; font-size: 14px\">"
    );
    let _ = writeln!(
        h,
        "<h2>lms-etl run {}: {}</h2>",
        e(&run_id(report)),
        e(report.status.as_str())
    );
    let _ = writeln!(h, "<table cellpadding=\"3\">");
    for (k, v) in summary(report) {
        let _ = writeln!(
            h,
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            e(k),
            e(&v)
        );
    }
    let _ = writeln!(h, "</table>");

    if !report.warnings.is_empty() {
        let _ = writeln!(h, "<h3>Warnings</h3>");
        let _ = writeln!(h, "<ul>");
        for w in &report.warnings {
            let _ = writeln!(h, "<li>{}</li>", e(w));
        }
        let _ = writeln!(h, "</ul>");
    }

    let _ = writeln!(h, "<h3>Counts</h3>");
    let _ = writeln!(h, "<table cellpadding=\"3\">");
    for (name, n) in counts(report) {
        let _ = writeln!(
            h,
            "<tr><th align=\"left\">{}</th><td align=\"right\">{}</td></tr>",
            e(name),
            e(&thousands(n))
        );
    }
    let _ = writeln!(h, "</table>");

    if !report.rejections.is_empty() {
        let _ = writeln!(h, "<h3>Rejected records</h3>");
        let _ = writeln!(
            h,
            "<table border=\"1\" cellpadding=\"3\" style=\"border-collapse: collapse\">"
        );
        let _ = writeln!(h, "<tr><th>count</th><th>kind</th><th>example</th></tr>");
        for g in &report.rejections {
            let _ = writeln!(
                h,
                "<tr><td align=\"right\">{}</td><td>{}</td><td><code>{}</code></td></tr>",
                e(&thousands(g.count)),
                e(&g.kind),
                e(&shorten_example(&g.example))
            );
        }
        let _ = writeln!(h, "</table>");
    }

    if !report.stage_ms.is_empty() {
        let _ = writeln!(h, "<h3>Stages</h3>");
        let _ = writeln!(h, "<table cellpadding=\"3\">");
        for (stage, ms) in &report.stage_ms {
            let _ = writeln!(
                h,
                "<tr><th align=\"left\">{}</th><td align=\"right\">{} ms</td></tr>",
                e(stage),
                e(&thousands_u(*ms))
            );
        }
        let _ = writeln!(h, "</table>");
    }

    let _ = writeln!(h, "<h3>Days</h3>");
    if report.days.is_empty() {
        let _ = writeln!(h, "<p>None touched.</p>");
    } else {
        let _ = writeln!(
            h,
            "<table border=\"1\" cellpadding=\"3\" style=\"border-collapse: collapse\">"
        );
        let _ = writeln!(
            h,
            "<tr><th>{}</th><th>attempts</th><th>successful</th><th>unique users</th><th>success rate</th></tr>",
            e(&day_heading(report))
        );
        for d in &report.days {
            let [date, a, s, u, r] = day_cells(d).map(|c| e(&c));
            let _ = writeln!(
                h,
                "<tr><td>{date}</td><td align=\"right\">{a}</td><td align=\"right\">{s}</td>\
                 <td align=\"right\">{u}</td><td align=\"right\">{r}</td></tr>"
            );
        }
        let _ = writeln!(h, "</table>");
    }

    if let Some(url) = &report.sheets_url {
        let _ = writeln!(h, "<p>Google Sheets: <a href=\"{0}\">{0}</a></p>", e(url));
    }
    if let Some(err) = &report.sheets_error {
        let _ = writeln!(h, "<p>Sheets error:</p>\n<pre>{}</pre>", e(err));
    }
    if let Some(err) = &report.error {
        let _ = writeln!(h, "<h3>Error</h3>\n<pre>{}</pre>", e(err));
    }
    let _ = writeln!(
        h,
        "<p>Log file: <code>{}</code></p>",
        e(&report.log_file.display().to_string())
    );
    let _ = writeln!(h, "</body></html>");
    h
}

/// The key/value lines at the top of both bodies.
fn summary(report: &RunReport) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("Run id", run_id(report)),
        ("Status", report.status.as_str().to_owned()),
        ("Window", window(report)),
    ];
    if let Some(requested) = report.requested_end {
        rows.push((
            "End",
            format!(
                "requested {}, effective {} ({}; clamped to now minus the settle lag)",
                local(requested, report.source_timezone),
                local(report.window_end, report.source_timezone),
                report.source_timezone.name(),
            ),
        ));
    }
    rows.push((
        "Finished",
        report
            .finished_at
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
    ));
    rows
}

/// The last calendar day the window covers, in the report zone (the zone of the days
/// table, so the subject's date is its last row): `window_end` is exclusive.
fn report_date(report: &RunReport) -> NaiveDate {
    (report.window_end - Duration::microseconds(1))
        .with_timezone(&report.report_timezone)
        .date_naive()
}

fn run_id(report: &RunReport) -> String {
    report
        .run_id
        .map_or_else(|| "-".to_owned(), |id| id.to_string())
}

/// `2026-11-24 00:00 – 2026-11-25 00:00 (Europe/Moscow)`: the window as the operator gave
/// it, in the API's zone.
fn window(report: &RunReport) -> String {
    let tz = report.source_timezone;
    format!(
        "{} – {} ({})",
        local(report.window_start, tz),
        local(report.window_end, tz),
        tz.name()
    )
}

/// Minutes when the seconds are zero (the usual, aligned case); seconds otherwise, so an
/// end at "now" is not shown earlier than it was.
fn local(at: DateTime<Utc>, tz: Tz) -> String {
    let at = at.with_timezone(&tz);
    if at.second() == 0 && at.nanosecond() == 0 {
        at.format("%Y-%m-%d %H:%M").to_string()
    } else {
        at.format("%Y-%m-%d %H:%M:%S").to_string()
    }
}

/// `day (UTC)`: daily_stats' days are calendar days of the report zone.
fn day_heading(report: &RunReport) -> String {
    format!("day ({})", report.report_timezone.name())
}

fn counts(report: &RunReport) -> [(&'static str, i64); 5] {
    let c = &report.counts;
    [
        ("fetched", c.fetched),
        ("inserted", c.inserted),
        ("duplicates", c.duplicates),
        ("conflicts", c.conflicts),
        ("rejected", c.rejected),
    ]
}

/// date, attempts, successful, unique users, success rate, as displayed.
fn day_cells(d: &DailyStats) -> [String; 5] {
    [
        d.day.format("%Y-%m-%d").to_string(),
        thousands(d.attempts),
        thousands(d.successful_attempts),
        thousands(d.unique_users),
        format!("{:.2} %", d.success_rate() * 100.0),
    ]
}

fn attempts(n: i64) -> String {
    format!(
        "{} {}",
        thousands(n),
        if n == 1 { "attempt" } else { "attempts" }
    )
}

/// `12345` → `12 345`.
fn thousands(n: i64) -> String {
    let digits = thousands_u(n.unsigned_abs());
    if n < 0 {
        format!("-{digits}")
    } else {
        digits
    }
}

fn thousands_u(n: u64) -> String {
    let digits = n.to_string();
    // Groups of three from the right; the digits are ASCII, so every chunk is valid UTF-8.
    let mut groups: Vec<&str> = digits
        .as_bytes()
        .rchunks(3)
        .map(|g| std::str::from_utf8(g).unwrap_or_default())
        .collect();
    groups.reverse();
    groups.join(" ")
}

fn cut(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_owned()
    } else {
        let kept: String = text.chars().take(max_chars.saturating_sub(3)).collect();
        format!("{}...", kept.trim_end())
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Counts, RejectionGroup};
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
    }

    fn report(status: RunStatus, error: Option<&str>) -> RunReport {
        RunReport {
            run_id: Some(7),
            status,
            window_start: utc("2026-11-24 00:00:00"),
            window_end: utc("2026-11-25 00:00:00"),
            requested_end: None,
            source_timezone: chrono_tz::UTC,
            report_timezone: chrono_tz::UTC,
            counts: Counts {
                fetched: 12_400,
                inserted: 12_345,
                duplicates: 55,
                conflicts: 0,
                rejected: 0,
            },
            stage_ms: vec![("fetch".into(), 1_234)],
            days: vec![],
            rejections: vec![],
            warnings: vec![],
            error: error.map(str::to_owned),
            sheets_error: None,
            sheets_url: None,
            log_file: "logs/x.log".into(),
            finished_at: Utc.with_ymd_and_hms(2026, 11, 25, 0, 5, 0).unwrap(),
        }
    }

    #[test]
    fn subject_names_the_last_day_of_the_window_and_the_count() {
        assert_eq!(
            subject(&report(RunStatus::Succeeded, None)),
            "[lms-etl] OK 2026-11-24: 12 345 attempts loaded"
        );
        assert_eq!(
            subject(&report(RunStatus::Partial, None)),
            "[lms-etl] PARTIAL 2026-11-24: 12 345 attempts loaded, Sheets failed"
        );
        assert_eq!(
            subject(&report(RunStatus::Interrupted, None)),
            "[lms-etl] INTERRUPTED 2026-11-24: stopped after 12 345 attempts loaded"
        );
    }

    #[test]
    fn subject_mentions_conflicts_and_rejections_briefly() {
        let mut r = report(RunStatus::Succeeded, None);
        r.counts.rejected = 5;
        assert_eq!(
            subject(&r),
            "[lms-etl] OK 2026-11-24: 12 345 attempts loaded, 5 rejected"
        );
        r.counts.conflicts = 1;
        assert_eq!(
            subject(&r),
            "[lms-etl] OK 2026-11-24: 12 345 attempts loaded, 1 conflict, 5 rejected"
        );
        r.counts.conflicts = 1_002;
        r.status = RunStatus::Partial;
        assert_eq!(
            subject(&r),
            "[lms-etl] PARTIAL 2026-11-24: 12 345 attempts loaded, 1 002 conflicts, 5 rejected, Sheets failed"
        );
    }

    #[test]
    fn subject_date_is_the_last_day_in_the_report_zone() {
        // [2026-11-24 00:00, 2026-11-25 00:00) in Moscow is [11-23 21:00, 11-24 21:00) UTC.
        let mut r = report(RunStatus::Succeeded, None);
        r.source_timezone = chrono_tz::Europe::Moscow;
        r.window_start = utc("2026-11-23 21:00:00");
        r.window_end = utc("2026-11-24 21:00:00");
        assert!(subject(&r).starts_with("[lms-etl] OK 2026-11-24: "));
        r.report_timezone = chrono_tz::Asia::Tokyo; // 11-25 06:00 there
        assert!(
            subject(&r).starts_with("[lms-etl] OK 2026-11-25: "),
            "{}",
            subject(&r)
        );
    }

    #[test]
    fn window_is_shown_in_the_source_zone_and_days_under_the_report_zone() {
        let mut r = report(RunStatus::Succeeded, None);
        r.source_timezone = chrono_tz::Europe::Moscow;
        r.window_start = utc("2026-11-23 21:00:00");
        r.window_end = utc("2026-11-24 21:00:30");
        assert_eq!(
            window(&r),
            "2026-11-24 00:00 – 2026-11-25 00:00:30 (Europe/Moscow)"
        );
        assert_eq!(day_heading(&r), "day (UTC)");
    }

    #[test]
    fn failed_subject_takes_the_first_error_line_cut_short() {
        let long = format!("\nfetch failed: {}\ncaused by: x", "y".repeat(300));
        let s = subject(&report(RunStatus::Failed, Some(&long)));
        assert!(
            s.starts_with("[lms-etl] FAILED 2026-11-24: fetch failed: yyy"),
            "{s}"
        );
        assert!(s.ends_with("...") && !s.contains("caused by"), "{s}");
        assert_eq!(
            s.len(),
            "[lms-etl] FAILED 2026-11-24: ".len() + SUBJECT_ERROR_CHARS
        );
    }

    #[test]
    fn thousands_are_separated_by_spaces() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1 000");
        assert_eq!(thousands(12_345), "12 345");
        assert_eq!(thousands(-1_234_567), "-1 234 567");
    }

    #[test]
    fn html_escapes_interpolated_text() {
        let r = report(
            RunStatus::Failed,
            Some("bad <script>alert('x')</script> & more"),
        );
        let html = render_html(&r);
        assert!(!html.contains("<script>"));
        assert!(html.contains("bad &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"));
    }

    #[test]
    fn rejection_examples_are_shortened_then_escaped() {
        let mut r = report(RunStatus::Succeeded, None);
        r.rejections = vec![RejectionGroup {
            kind: "<kind>".into(),
            count: 3,
            example: format!("<b>{}</b>", "a".repeat(40)),
        }];
        let html = render_html(&r);
        assert!(
            html.contains("<td>&lt;kind&gt;</td><td><code>&lt;b&gt;aaaaaa…&lt;/b&gt;</code></td>"),
            "{html}"
        );
        assert!(render_text(&r).contains("e.g. <b>aaaaaa…</b>"));
    }

    #[test]
    fn sections_for_rejections_and_warnings_are_absent_when_empty() {
        let r = report(RunStatus::Succeeded, None);
        for body in [render_text(&r), render_html(&r)] {
            assert!(!body.contains("Rejected records") && !body.contains("Warnings"));
        }
    }
}
