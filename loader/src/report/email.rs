//! Run notifications: one e-mail per run (text and HTML from the templates in `templates/`, a
//! chart inline), sent over SMTP with lettre, or written as an `.eml` file into the outbox.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use askama::Template;
use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Message, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::ExposeSecret;

use super::{chart, shorten_example, DailyStats, RunReport, RunStatus};
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
    let body = render(report);
    let html = SinglePart::html(body.html);
    let alternative = MultiPart::alternative().singlepart(SinglePart::plain(body.text));
    // The chart travels inside the message (no remote image a client would block): HTML and
    // PNG in multipart/related, the HTML naming the PNG by its Content-ID.
    let alternative = match body.chart {
        Some(png) => alternative.multipart(MultiPart::related().singlepart(html).singlepart(
            Attachment::new_inline(CHART_CID.to_owned()).body(
                png,
                ContentType::parse("image/png").expect("a valid MIME type"),
            ),
        )),
        None => alternative.singlepart(html),
    };
    Ok(builder.multipart(alternative)?)
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
    let transport = smtp_transport(smtp)?;
    match transport.send(message).await {
        Ok(_) => {
            tracing::info!(server = %server_name(smtp), recipients, "run notification sent");
            Ok(Delivery::Sent { recipients })
        }
        Err(e) => Err(smtp_error(smtp, &e)),
    }
}

/// Connects, negotiates TLS and authenticates as a delivery would, then says QUIT: nothing
/// is sent (`lms-etl doctor`).
pub async fn check_smtp(smtp: &SmtpConfig) -> Result<(), EmailError> {
    let transport = smtp_transport(smtp)?;
    match transport.test_connection().await {
        Ok(true) => Ok(()),
        Ok(false) => Err(EmailError::Smtp {
            server: server_name(smtp),
            tls: tls_name(smtp.tls),
            stage: "invalid server response",
            message: "the server did not answer NOOP".into(),
        }),
        Err(e) => Err(smtp_error(smtp, &e)),
    }
}

fn server_name(smtp: &SmtpConfig) -> String {
    format!("{}:{}", smtp.host, smtp.port)
}

fn smtp_transport(smtp: &SmtpConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, EmailError> {
    let tls_error = |message: String| EmailError::Tls {
        server: server_name(smtp),
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
    if let Some(user) = &smtp.user {
        builder = builder.credentials(Credentials::new(user.clone(), password(smtp)));
    }
    Ok(builder.build())
}

fn password(smtp: &SmtpConfig) -> String {
    smtp.password
        .as_ref()
        .map(|p| p.expose_secret().to_owned())
        .unwrap_or_default()
}

fn smtp_error(smtp: &SmtpConfig, e: &lettre::transport::smtp::Error) -> EmailError {
    let mut message = e.to_string();
    let password = password(smtp);
    if !password.is_empty() {
        // lettre never puts credentials in errors, but a server may echo what it got.
        message = message.replace(&password, "[redacted]");
    }
    EmailError::Smtp {
        server: server_name(smtp),
        tls: tls_name(smtp.tls),
        stage: smtp_stage(e, smtp.tls),
        message,
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
///
/// Checks of `lms_etl.health()` that warn or fail follow, worst first:
/// `[lms-etl] OK 2026-11-24: 8 612 attempts loaded ⚠ volume −63% vs usual Tuesday`.
pub fn subject(report: &RunReport) -> String {
    format!(
        "{}{}",
        run_subject(report),
        crate::health::subject_note(&report.checks)
    )
}

fn run_subject(report: &RunReport) -> String {
    let date = report.last_day();
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

/// A rendered notification: both bodies and the chart the HTML body shows, if any.
#[derive(Debug, Clone)]
pub struct MailBody {
    pub text: String,
    pub html: String,
    /// PNG; the HTML body refers to it as `cid:` [`CHART_CID`].
    pub chart: Option<Vec<u8>>,
}

/// Content-ID of the chart inside the message (without the angle brackets).
pub const CHART_CID: &str = "daily-chart@lms-etl";

/// Both bodies of the notification from one view of `report`, so they state the same facts;
/// the chart is drawn when the report has days in its range. A chart that fails to draw is
/// left out (and logged): the mail matters more than its picture.
pub fn render(report: &RunReport) -> MailBody {
    let view = MailView::of(report);
    let chart = view.last_days.as_ref().and_then(|_| {
        chart::render_png(&report.chart_days())
            .map_err(|e| tracing::warn!(error = %e, "the mail goes without its chart"))
            .ok()
    });
    let text = TextBody { v: &view }.render();
    let html = HtmlBody {
        v: &view,
        chart_cid: chart.as_ref().map(|_| CHART_CID),
        chart_width: chart::WIDTH,
        chart_height: chart::HEIGHT,
    }
    .render();
    MailBody {
        // Askama writes into a String: only a failing Display impl could fail, and ours don't.
        text: text.unwrap_or_else(|e| format!("cannot render the mail body: {e}")),
        html: html.unwrap_or_else(|e| format!("cannot render the mail body: {e}")),
        chart,
    }
}

#[derive(Template)]
#[template(path = "mail.txt")]
struct TextBody<'a> {
    v: &'a MailView,
}

/// Every `{{ }}` value is HTML-escaped by askama (the template's extension says HTML).
#[derive(Template)]
#[template(path = "mail.html")]
struct HtmlBody<'a> {
    v: &'a MailView,
    chart_cid: Option<&'a str>,
    chart_width: u32,
    chart_height: u32,
}

/// What both bodies show, as display strings.
struct MailView {
    subject: String,
    run_id: String,
    status: &'static str,
    summary: Vec<Row>,
    warnings: Vec<String>,
    counts: Vec<Row>,
    rejections: Vec<RejectionRow>,
    stages: Vec<Row>,
    day_heading: String,
    days: Vec<DayRow>,
    /// Every health check, worst first.
    checks: Vec<CheckRow>,
    /// `Hardest problems yesterday (2026-11-24)`, when the list was read.
    hardest_heading: Option<String>,
    hardest: Vec<HardRow>,
    /// One sentence on the chart's days (the chart's alt text and its text-part stand-in).
    last_days: Option<String>,
    sheets_url: Option<String>,
    sheets_error: Option<String>,
    error: Option<String>,
    error_lines: Vec<String>,
    log_file: String,
}

struct Row {
    label: String,
    value: String,
}

impl Row {
    fn new(label: impl Into<String>, value: String) -> Row {
        Row {
            label: label.into(),
            value,
        }
    }

    fn label_colon(&self) -> String {
        format!("{}:", self.label)
    }
}

struct RejectionRow {
    count: String,
    kind: String,
    example: String,
}

struct CheckRow {
    status: &'static str,
    name: String,
    value: String,
    expected: String,
    message: String,
}

struct HardRow {
    course: String,
    block: String,
    submitters: String,
    first_correct: String,
    /// First-submit success, `25.0 %`.
    rate: String,
    submits: String,
}

struct DayRow {
    date: String,
    attempts: String,
    successful: String,
    users: String,
    rate: String,
    submits: String,
    /// Correct submits over submits, `62.50 %`; `-` without submits.
    submit_rate: String,
    /// Attempts against the same weekday a week before: `+12%`, `−63%`, `n/a`.
    trend: String,
}

impl MailView {
    fn of(report: &RunReport) -> MailView {
        MailView {
            subject: subject(report),
            run_id: run_id(report),
            status: report.status.as_str(),
            summary: summary(report)
                .into_iter()
                .map(|(k, v)| Row::new(k, v))
                .collect(),
            warnings: report.warnings.clone(),
            counts: counts(report)
                .into_iter()
                .map(|(k, n)| Row::new(k, thousands(n)))
                .collect(),
            rejections: report
                .rejections
                .iter()
                .map(|g| RejectionRow {
                    count: thousands(g.count),
                    kind: g.kind.clone(),
                    example: shorten_example(&g.example),
                })
                .collect(),
            stages: report
                .stage_ms
                .iter()
                .map(|(stage, ms)| Row::new(stage.as_str(), thousands_u(*ms)))
                .collect(),
            day_heading: day_heading(report),
            days: report
                .days
                .iter()
                .map(|d| {
                    let [date, attempts, successful, users, rate] = day_cells(d);
                    DayRow {
                        date,
                        attempts,
                        successful,
                        users,
                        rate,
                        submits: thousands(d.submits),
                        submit_rate: d
                            .submit_success_rate
                            .map_or_else(|| "-".to_owned(), |r| format!("{:.2} %", r * 100.0)),
                        trend: trend(report.week_change(d)),
                    }
                })
                .collect(),
            checks: report
                .checks
                .iter()
                .map(|c| CheckRow {
                    status: c.status.as_str(),
                    name: c.name.clone(),
                    value: c.value.clone(),
                    expected: c.expected.clone(),
                    message: c.message.clone(),
                })
                .collect(),
            hardest_heading: report
                .hardest_day
                .map(|day| format!("Hardest problems yesterday ({day})")),
            hardest: report
                .hardest
                .iter()
                .map(|p| HardRow {
                    course: super::problems::short_course(&p.course_id).to_owned(),
                    block: super::problems::short_block(&p.block_id),
                    submitters: thousands(p.submitters),
                    first_correct: thousands(p.first_correct),
                    rate: format!("{:.1} %", p.first_submit_success() * 100.0),
                    submits: thousands(p.submits),
                })
                .collect(),
            last_days: last_days(report),
            sheets_url: report.sheets_url.clone(),
            sheets_error: report.sheets_error.clone(),
            error: report.error.clone(),
            error_lines: report
                .error
                .iter()
                .flat_map(|e| e.lines().map(str::to_owned))
                .collect(),
            log_file: report.log_file.display().to_string(),
        }
    }
}

/// `+12%`, `−63%` (a minus sign, not a hyphen), `0%`; `n/a` without a week-before figure.
fn trend(change: Option<f64>) -> String {
    let Some(change) = change else {
        return "n/a".into();
    };
    let percent = (change * 100.0).round() as i64;
    match percent.signum() {
        1 => format!("+{percent}%"),
        -1 => format!("\u{2212}{}%", -percent),
        _ => "0%".into(),
    }
}

/// `Last 30 days (2026-10-26 – 2026-11-24): 123 456 attempts, 80.12 % successful; most
/// 5 000 on 2026-11-20, fewest 1 200 on 2026-11-02; 3 days without data.` — `None` when
/// none of the days has a row (then there is no chart either).
fn last_days(report: &RunReport) -> Option<String> {
    let days = report.chart_days();
    let rows: Vec<&DailyStats> = days.iter().filter_map(|(_, d)| *d).collect();
    let most = rows
        .iter()
        .max_by_key(|d| (d.attempts, std::cmp::Reverse(d.day)))?;
    let fewest = rows.iter().min_by_key(|d| (d.attempts, d.day))?;
    let attempts: i64 = rows.iter().map(|d| d.attempts).sum();
    let successful: i64 = rows.iter().map(|d| d.successful_attempts).sum();
    let rate = if attempts == 0 {
        0.0
    } else {
        successful as f64 / attempts as f64 * 100.0
    };
    let (first, last) = (days.first()?.0, days.last()?.0);
    let mut text = format!(
        "Last {} days ({first} – {last}): {} attempts, {rate:.2} % successful; \
         most {} on {}, fewest {} on {}",
        days.len(),
        thousands(attempts),
        thousands(most.attempts),
        most.day,
        thousands(fewest.attempts),
        fewest.day,
    );
    match days.len() - rows.len() {
        0 => {}
        1 => text.push_str("; 1 day without data"),
        n => text.push_str(&format!("; {n} days without data")),
    }
    text.push('.');
    Some(text)
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

/// `12345` → `12 345`, as every number in the mail.
pub fn thousands(n: i64) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{Check, CheckStatus};
    use crate::report::problems::HardProblem;
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
            history: vec![],
            rejections: vec![],
            warnings: vec![],
            error: error.map(str::to_owned),
            sheets_error: None,
            sheets_url: None,
            checks: Vec::new(),
            hardest_day: None,
            hardest: Vec::new(),
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

    fn check(name: &str, status: CheckStatus, message: &str) -> Check {
        Check {
            name: name.into(),
            status,
            value: "3200".into(),
            expected: "8612 ± 2153".into(),
            message: message.into(),
        }
    }

    #[test]
    fn subject_names_warnings_and_failures_worst_first_after_the_run() {
        let mut r = report(RunStatus::Succeeded, None);
        r.checks = vec![
            check("freshness: last successful run", CheckStatus::Ok, "fine"),
            check(
                "volume 2026-11-24",
                CheckStatus::Warn,
                "2026-11-24: 3200 attempts, -63% vs usual Tuesday (median 8612)",
            ),
            check("rejected share", CheckStatus::Unknown, "no record"),
        ];
        assert_eq!(
            subject(&r),
            "[lms-etl] OK 2026-11-24: 12 345 attempts loaded ⚠ volume \u{2212}63% vs usual Tuesday"
        );
        r.checks
            .push(check("freshness: newest attempt", CheckStatus::Fail, "old"));
        assert_eq!(
            subject(&r),
            "[lms-etl] OK 2026-11-24: 12 345 attempts loaded ✗ freshness: newest attempt ⚠ volume \u{2212}63% vs usual Tuesday"
        );
        r.checks
            .retain(|c| c.status != CheckStatus::Warn && c.status != CheckStatus::Fail);
        assert_eq!(
            subject(&r),
            "[lms-etl] OK 2026-11-24: 12 345 attempts loaded"
        );
    }

    #[test]
    fn checks_section_lists_every_check_with_value_expected_and_message() {
        let mut r = report(RunStatus::Succeeded, None);
        assert!(
            !render(&r).text.contains("Checks"),
            "no checks read: no section"
        );
        r.checks = vec![
            check(
                "volume 2026-11-24",
                CheckStatus::Warn,
                "2026-11-24: 3200 attempts, -63% vs usual Tuesday (median 8612)",
            ),
            check("rejected share", CheckStatus::Ok, "0 of 10 <records>"),
        ];
        let body = render(&r);
        assert!(body.text.contains(
            "Checks\n  warn    volume 2026-11-24: 3200 (expected 8612 ± 2153) - 2026-11-24: 3200 attempts, -63% vs usual Tuesday (median 8612)\n  ok      rejected share: 3200 (expected 8612 ± 2153) - 0 of 10 <records>\n"
        ), "{}", body.text);
        assert!(body.html.contains(
            "<tr><td>ok</td><td>rejected share</td><td>3200</td><td>8612 ± 2153</td><td>0 of 10 &#60;records&#62;</td></tr>"
        ), "{}", body.html);
    }

    #[test]
    fn hardest_problems_show_short_ids_and_first_submit_success() {
        let mut r = report(RunStatus::Succeeded, None);
        r.hardest_day = Some("2026-11-24".parse().unwrap());
        assert!(render(&r).text.contains(
            "Hardest problems yesterday (2026-11-24)\n  No problem had enough learners who submitted.\n"
        ));
        r.hardest = vec![HardProblem {
            course_id: "course-v1:SF+DST+1".into(),
            block_id: "9c1e0d2f3a4b5c6d7e8f90a1b2c3d4e5".into(),
            submitters: 12,
            first_correct: 3,
            submits: 1_040,
            successful_submits: 9,
        }];
        let body = render(&r);
        assert!(body.text.contains(
            "  SF+DST+1                9c1e0d2f…             12               3                25.0 %     1 040\n"
        ), "{}", body.text);
        assert!(body.html.contains(
            "<tr><td>SF+DST+1</td><td><code>9c1e0d2f…</code></td><td align=\"right\">12</td><td align=\"right\">3</td><td align=\"right\">25.0 %</td><td align=\"right\">1 040</td></tr>"
        ), "{}", body.html);
        assert!(!body.text.contains("3a4b5c6d"), "the block id is shortened");
    }

    #[test]
    fn days_show_submits_and_submit_success_rate() {
        let mut r = report(RunStatus::Succeeded, None);
        let mut day = stats("2026-11-24", 100);
        day.submits = 40;
        day.submit_success_rate = Some(0.625);
        r.days = vec![day, stats("2026-11-23", 10)];
        let text = render(&r).text;
        assert!(
            text.contains("   submits  submit success  vs week before\n"),
            "{text}"
        );
        assert!(
            text.contains("        40         62.50 %             n/a\n"),
            "{text}"
        );
        assert!(
            text.contains("         0               -             n/a\n"),
            "no submits: no rate: {text}"
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
        let html = render(&r).html;
        assert!(!html.contains("<script>"));
        assert!(html.contains("bad &#60;script&#62;alert(&#39;x&#39;)&#60;/script&#62; &#38; more"));
    }

    #[test]
    fn rejection_examples_are_shortened_then_escaped() {
        let mut r = report(RunStatus::Succeeded, None);
        r.rejections = vec![RejectionGroup {
            kind: "<kind>".into(),
            count: 3,
            example: format!("<b>{}</b>", "a".repeat(40)),
        }];
        let body = render(&r);
        assert!(
            body.html.contains(
                "<td>&#60;kind&#62;</td><td><code>&#60;b&#62;aaaaaa…&#60;/b&#62;</code></td>"
            ),
            "{}",
            body.html
        );
        assert!(body.text.contains("e.g. <b>aaaaaa…</b>"));
    }

    #[test]
    fn sections_for_rejections_and_warnings_are_absent_when_empty() {
        let r = report(RunStatus::Succeeded, None);
        let body = render(&r);
        for body in [body.text, body.html] {
            assert!(!body.contains("Rejected records") && !body.contains("Warnings"));
        }
    }

    fn stats(day: &str, attempts: i64) -> DailyStats {
        DailyStats {
            day: day.parse().unwrap(),
            attempts,
            successful_attempts: attempts / 2,
            unique_users: 3,
            computed_at: Utc.with_ymd_and_hms(2026, 11, 25, 0, 5, 0).unwrap(),
            submits: 0,
            submit_success_rate: None,
        }
    }

    #[test]
    fn trend_is_a_signed_whole_percentage_with_a_minus_sign() {
        assert_eq!(trend(Some(0.124)), "+12%");
        assert_eq!(trend(Some(-0.625)), "\u{2212}63%");
        assert_eq!(trend(Some(0.004)), "0%");
        assert_eq!(trend(Some(1.0)), "+100%");
        assert_eq!(trend(None), "n/a");
    }

    #[test]
    fn each_day_is_compared_with_the_same_weekday_a_week_before() {
        let mut r = report(RunStatus::Succeeded, None);
        r.days = vec![stats("2026-11-23", 1_120), stats("2026-11-24", 370)];
        // 11-16 is the week before 11-23; 11-17 has no row; 11-18 is not a week before.
        r.history = vec![stats("2026-11-16", 1_000), stats("2026-11-18", 1_000)];
        r.history.extend(r.days.iter().cloned());
        assert_eq!(r.week_change(&r.days[0]), Some(0.12));
        assert_eq!(r.week_change(&r.days[1]), None);
        r.history.insert(1, stats("2026-11-17", 1_000));
        assert_eq!(trend(r.week_change(&r.days[1])), "\u{2212}63%");
        r.history[0].attempts = 0;
        assert_eq!(r.week_change(&r.days[0]), None, "no base to compare with");
    }

    #[test]
    fn last_days_sums_the_chart_window_and_names_the_extremes_and_gaps() {
        let mut r = report(RunStatus::Succeeded, None);
        assert_eq!(last_days(&r), None, "no rows: no chart, no sentence");
        // 10-25 is one day before the 30-day window (10-26 .. 11-24) and does not count.
        r.history = vec![
            stats("2026-10-25", 9_999),
            stats("2026-10-26", 100),
            stats("2026-11-20", 500),
            stats("2026-11-24", 300),
        ];
        assert_eq!(
            last_days(&r).unwrap(),
            "Last 30 days (2026-10-26 – 2026-11-24): 900 attempts, 50.00 % successful; \
             most 500 on 2026-11-20, fewest 100 on 2026-10-26; 27 days without data."
        );
    }
}
