//! A real SMTP server on 127.0.0.1 (RFC 5321 subset, enough for lettre; implicit TLS and
//! STARTTLS with a test certificate) that keeps what it receives, plus a small MIME reader
//! so tests can assert on subjects and decoded parts.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Longest command line accepted (RFC 5321 allows 512; AUTH lines may be longer).
const MAX_LINE: usize = 16 * 1024;

/// What the server offers after EHLO when it has no [`ServerTls::StartTls`] certificate:
/// STARTTLS can then only be absent or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartTls {
    /// Not in the EHLO reply; the command gets 502.
    #[default]
    NotAdvertised,
    /// Advertised, but the command gets `454 4.7.0 TLS not available`.
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMechanism {
    Plain,
    Login,
}

/// Credentials the server demands before MAIL FROM, and the mechanisms it advertises.
#[derive(Debug, Clone)]
pub struct SmtpAuth {
    pub user: String,
    pub password: String,
    pub mechanisms: Vec<AuthMechanism>,
}

impl SmtpAuth {
    pub fn new(user: &str, password: &str) -> Self {
        SmtpAuth {
            user: user.into(),
            password: password.into(),
            mechanisms: vec![AuthMechanism::Plain, AuthMechanism::Login],
        }
    }
}

/// TLS the server speaks, with a certificate from a test CA.
#[derive(Debug, Clone)]
pub enum ServerTls {
    /// TLS from the first byte, as on port 465.
    Implicit(Arc<rustls::ServerConfig>),
    /// STARTTLS advertised after EHLO and carried out.
    StartTls(Arc<rustls::ServerConfig>),
}

#[derive(Debug, Clone, Default)]
pub struct SmtpOptions {
    pub starttls: StartTls,
    /// `None`: plaintext only.
    pub tls: Option<ServerTls>,
    /// `None`: AUTH is not advertised and not required.
    pub auth: Option<SmtpAuth>,
}

/// One message accepted with `250` after DATA.
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    /// The MAIL FROM address, without angle brackets.
    pub envelope_from: String,
    /// The RCPT TO addresses, in order.
    pub recipients: Vec<String>,
    /// The user that authenticated on this connection, if any.
    pub authenticated_as: Option<String>,
    /// Whether the message came over TLS (implicit or after STARTTLS).
    pub encrypted: bool,
    /// The message as transmitted, dot-unstuffed, without the final `.` line.
    pub data: Vec<u8>,
}

impl ReceivedMessage {
    pub fn mail(&self) -> Mail {
        Mail::parse(&self.data)
    }
}

#[derive(Default)]
struct Shared {
    messages: Vec<ReceivedMessage>,
    commands: Vec<String>,
}

/// A running server; stops (with all its connections) when dropped.
pub struct SmtpServer {
    addr: std::net::SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

impl SmtpServer {
    pub async fn start(options: SmtpOptions) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let options = Arc::new(options);
        let state = shared.clone();
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        connections.spawn(Session::run(stream, options.clone(), state.clone()));
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        SmtpServer { addr, shared, task }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn messages(&self) -> Vec<ReceivedMessage> {
        self.shared.lock().unwrap().messages.clone()
    }

    /// Every command line received, in order; AUTH payloads are not kept (`AUTH PLAIN`).
    pub fn commands(&self) -> Vec<String> {
        self.shared.lock().unwrap().commands.clone()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---- one connection --------------------------------------------------------------

/// A connection's byte stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Session {
    /// Reads buffered; writes pass through (`BufReader` forwards them).
    io: BufReader<Box<dyn Io>>,
    encrypted: bool,
    options: Arc<SmtpOptions>,
    shared: Arc<Mutex<Shared>>,
    greeted: bool,
    authenticated_as: Option<String>,
    from: Option<String>,
    recipients: Vec<String>,
}

enum Line {
    Text(Vec<u8>),
    Eof,
}

impl Session {
    async fn run(stream: TcpStream, options: Arc<SmtpOptions>, shared: Arc<Mutex<Shared>>) {
        let (io, encrypted): (Box<dyn Io>, bool) = match &options.tls {
            Some(ServerTls::Implicit(config)) => {
                // A client that does not trust the certificate ends here.
                match tokio_rustls::TlsAcceptor::from(config.clone())
                    .accept(stream)
                    .await
                {
                    Ok(tls) => (Box::new(tls), true),
                    Err(_) => return,
                }
            }
            _ => (Box::new(stream), false),
        };
        let mut session = Session {
            io: BufReader::new(io),
            encrypted,
            options,
            shared,
            greeted: false,
            authenticated_as: None,
            from: None,
            recipients: Vec::new(),
        };
        let _ = session.serve().await;
    }

    /// Whether EHLO lists STARTTLS: a refusing server, or one that can and has not yet.
    fn offers_starttls(&self) -> bool {
        self.options.starttls == StartTls::Refused
            || (matches!(self.options.tls, Some(ServerTls::StartTls(_))) && !self.encrypted)
    }

    /// `220`, then the TLS handshake on the same connection; the session starts over
    /// (RFC 3207: the client must EHLO again).
    async fn start_tls(&mut self, config: Arc<rustls::ServerConfig>) -> std::io::Result<()> {
        self.reply("220 2.0.0 Ready to start TLS").await?;
        let plain = std::mem::replace(&mut self.io, BufReader::new(Box::new(tokio::io::empty())));
        let tls = tokio_rustls::TlsAcceptor::from(config)
            .accept(plain.into_inner())
            .await?;
        self.io = BufReader::new(Box::new(tls));
        self.encrypted = true;
        self.greeted = false;
        self.authenticated_as = None;
        self.reset();
        Ok(())
    }

    async fn serve(&mut self) -> std::io::Result<()> {
        self.reply("220 smtp-stand-in ESMTP ready").await?;
        loop {
            let Line::Text(raw) = self.read_line().await? else {
                return Ok(());
            };
            let line = String::from_utf8_lossy(&raw)
                .trim_end_matches(['\r', '\n'])
                .to_owned();
            let (verb, arg) = match line.split_once(' ') {
                Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_owned()),
                None => (line.to_ascii_uppercase(), String::new()),
            };
            let recorded = if verb == "AUTH" {
                format!(
                    "AUTH {}",
                    arg.split(' ').next().unwrap_or("").to_ascii_uppercase()
                )
            } else {
                line.clone()
            };
            self.shared.lock().unwrap().commands.push(recorded);

            match verb.as_str() {
                "EHLO" => {
                    self.greeted = true;
                    self.reset();
                    let mut lines = vec![
                        format!("smtp-stand-in greets {arg}"),
                        "8BITMIME".into(),
                        "SMTPUTF8".into(),
                    ];
                    if self.offers_starttls() {
                        lines.push("STARTTLS".into());
                    }
                    if let Some(auth) = &self.options.auth {
                        let names: Vec<&str> = auth
                            .mechanisms
                            .iter()
                            .map(|m| match m {
                                AuthMechanism::Plain => "PLAIN",
                                AuthMechanism::Login => "LOGIN",
                            })
                            .collect();
                        lines.push(format!("AUTH {}", names.join(" ")));
                    }
                    lines.push("SIZE 10485760".into());
                    let last = lines.len() - 1;
                    let text: Vec<String> = lines
                        .iter()
                        .enumerate()
                        .map(|(i, l)| format!("250{}{l}", if i == last { ' ' } else { '-' }))
                        .collect();
                    self.reply(&text.join("\r\n")).await?;
                }
                "HELO" => {
                    self.greeted = true;
                    self.reset();
                    self.reply("250 smtp-stand-in").await?;
                }
                "STARTTLS" => match (self.options.starttls, self.options.tls.clone()) {
                    (_, Some(ServerTls::StartTls(config))) if !self.encrypted => {
                        self.start_tls(config).await?
                    }
                    (StartTls::Refused, _) => {
                        self.reply("454 4.7.0 TLS not available due to temporary reason")
                            .await?
                    }
                    (StartTls::NotAdvertised, _) => {
                        self.reply("502 5.5.1 STARTTLS not supported").await?
                    }
                },
                "AUTH" => self.auth(&arg).await?,
                "MAIL" => {
                    if !self.greeted {
                        self.reply("503 5.5.1 Send EHLO or HELO first").await?;
                    } else if self.options.auth.is_some() && self.authenticated_as.is_none() {
                        self.reply("530 5.7.0 Authentication required").await?;
                    } else if self.from.is_some() {
                        self.reply("503 5.5.1 Nested MAIL command").await?;
                    } else if let Some(addr) = path_arg(&arg, "FROM:") {
                        self.from = Some(addr);
                        self.reply("250 2.1.0 OK").await?;
                    } else {
                        self.reply("501 5.5.4 Syntax: MAIL FROM:<address>").await?;
                    }
                }
                "RCPT" => {
                    if self.from.is_none() {
                        self.reply("503 5.5.1 Need MAIL before RCPT").await?;
                    } else if let Some(addr) = path_arg(&arg, "TO:").filter(|a| !a.is_empty()) {
                        self.recipients.push(addr);
                        self.reply("250 2.1.5 OK").await?;
                    } else {
                        self.reply("501 5.5.4 Syntax: RCPT TO:<address>").await?;
                    }
                }
                "DATA" => {
                    if self.from.is_none() || self.recipients.is_empty() {
                        self.reply("503 5.5.1 Need MAIL and RCPT before DATA")
                            .await?;
                        continue;
                    }
                    self.reply("354 End data with <CR><LF>.<CR><LF>").await?;
                    let Some(data) = self.read_data().await? else {
                        return Ok(());
                    };
                    let message = ReceivedMessage {
                        envelope_from: self.from.take().unwrap_or_default(),
                        recipients: std::mem::take(&mut self.recipients),
                        authenticated_as: self.authenticated_as.clone(),
                        encrypted: self.encrypted,
                        data,
                    };
                    self.shared.lock().unwrap().messages.push(message);
                    self.reply("250 2.0.0 OK queued").await?;
                }
                "RSET" => {
                    self.reset();
                    self.reply("250 2.0.0 OK").await?;
                }
                "NOOP" => self.reply("250 2.0.0 OK").await?,
                "QUIT" => {
                    self.reply("221 2.0.0 Bye").await?;
                    return Ok(());
                }
                _ => self.reply("500 5.5.2 Command not recognized").await?,
            }
        }
    }

    fn reset(&mut self) {
        self.from = None;
        self.recipients.clear();
    }

    async fn auth(&mut self, arg: &str) -> std::io::Result<()> {
        let Some(auth) = self.options.auth.clone() else {
            return self.reply("503 5.5.1 AUTH not available").await;
        };
        if self.authenticated_as.is_some() {
            return self.reply("503 5.5.1 Already authenticated").await;
        }
        let mut words = arg.split_whitespace();
        let mechanism = words.next().unwrap_or("").to_ascii_uppercase();
        let initial = words.next().map(str::to_owned);
        let offered = |m| auth.mechanisms.contains(&m);
        let credentials = match mechanism.as_str() {
            "PLAIN" if offered(AuthMechanism::Plain) => {
                let response = match initial {
                    Some(r) => r,
                    None => match self.challenge("").await? {
                        Some(r) => r,
                        None => return Ok(()),
                    },
                };
                // authzid NUL authcid NUL password
                decode(&response).and_then(|text| {
                    let mut parts = text.split('\0');
                    let _authzid = parts.next()?;
                    Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
                })
            }
            "LOGIN" if offered(AuthMechanism::Login) => {
                let user = match initial {
                    Some(r) => Some(r),
                    None => self.challenge("VXNlcm5hbWU6").await?, // "Username:"
                };
                let Some(user) = user else { return Ok(()) };
                let Some(password) = self.challenge("UGFzc3dvcmQ6").await? else {
                    return Ok(());
                }; // "Password:"
                decode(&user).zip(decode(&password))
            }
            _ => {
                return self
                    .reply("504 5.5.4 Unrecognized authentication type")
                    .await
            }
        };
        match credentials {
            Some((user, password)) if user == auth.user && password == auth.password => {
                self.authenticated_as = Some(user);
                self.reply("235 2.7.0 Authentication successful").await
            }
            Some(_) => {
                self.reply("535 5.7.8 Authentication credentials invalid")
                    .await
            }
            None => self.reply("501 5.5.2 Cannot decode AUTH response").await,
        }
    }

    /// Sends `334 <challenge>` and returns the client's answer; `None` after `*` or EOF.
    async fn challenge(&mut self, challenge: &str) -> std::io::Result<Option<String>> {
        self.reply(&format!("334 {challenge}")).await?;
        let Line::Text(raw) = self.read_line().await? else {
            return Ok(None);
        };
        let answer = String::from_utf8_lossy(&raw).trim().to_owned();
        if answer == "*" {
            self.reply("501 5.7.0 Authentication cancelled").await?;
            return Ok(None);
        }
        Ok(Some(answer))
    }

    /// Reads DATA lines up to the lone `.`; `None` on EOF before it.
    async fn read_data(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut data = Vec::new();
        loop {
            let Line::Text(line) = self.read_line().await? else {
                return Ok(None);
            };
            if line == b".\r\n" || line == b".\n" {
                return Ok(Some(data));
            }
            // Dot-unstuffing (RFC 5321 4.5.2).
            let line = if line.starts_with(b"..") {
                &line[1..]
            } else {
                &line[..]
            };
            data.extend_from_slice(line);
        }
    }

    async fn read_line(&mut self) -> std::io::Result<Line> {
        let mut buf = Vec::new();
        let n = (&mut self.io)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            return Ok(Line::Eof);
        }
        if !buf.ends_with(b"\n") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "line too long or unterminated",
            ));
        }
        Ok(Line::Text(buf))
    }

    async fn reply(&mut self, text: &str) -> std::io::Result<()> {
        self.io.write_all(format!("{text}\r\n").as_bytes()).await?;
        self.io.flush().await
    }
}

/// `FROM:<a@b> SIZE=1` → `a@b`.
fn path_arg(arg: &str, keyword: &str) -> Option<String> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let end = inner.find('>')?;
    Some(inner[..end].to_owned())
}

fn decode(b64: &str) -> Option<String> {
    B64.decode(b64.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

// ---- reading the message -----------------------------------------------------------

/// A parsed RFC 5322 message: top-level headers and the decoded leaf parts of its MIME tree.
#[derive(Debug, Clone)]
pub struct Mail {
    headers: Vec<(String, String)>,
    parts: Vec<MailPart>,
}

/// One leaf part, its body decoded from its Content-Transfer-Encoding.
#[derive(Debug, Clone)]
pub struct MailPart {
    pub content_type: String,
    pub body: String,
}

impl Mail {
    pub fn parse(raw: &[u8]) -> Mail {
        let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
        let (headers, body) = split_head(&text);
        let mut parts = Vec::new();
        collect_parts(&headers, body, &mut parts);
        Mail { headers, parts }
    }

    /// The first header called `name` (case-insensitive), unfolded, encoded-words decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| decode_words(v))
    }

    pub fn parts(&self) -> &[MailPart] {
        &self.parts
    }

    /// The decoded body of the first leaf part whose type starts with `mime` (e.g. `text/html`).
    pub fn part(&self, mime: &str) -> Option<&str> {
        self.parts
            .iter()
            .find(|p| p.content_type.to_ascii_lowercase().starts_with(mime))
            .map(|p| p.body.as_str())
    }

    pub fn text(&self) -> Option<&str> {
        self.part("text/plain")
    }

    pub fn html(&self) -> Option<&str> {
        self.part("text/html")
    }
}

fn split_head(text: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = match text.find("\n\n") {
        Some(i) => (&text[..i], &text[i + 2..]),
        None => (text, ""),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    (headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn collect_parts(headers: &[(String, String)], body: &str, out: &mut Vec<MailPart>) {
    let content_type = header(headers, "Content-Type")
        .unwrap_or("text/plain")
        .to_owned();
    if content_type.to_ascii_lowercase().starts_with("multipart/") {
        let Some(boundary) = param(&content_type, "boundary") else {
            return;
        };
        let delimiter = format!("--{boundary}");
        for chunk in body.split(&delimiter).skip(1) {
            if chunk.starts_with("--") {
                break; // closing delimiter
            }
            let chunk = chunk.strip_prefix('\n').unwrap_or(chunk);
            let chunk = chunk.strip_suffix('\n').unwrap_or(chunk);
            let (part_headers, part_body) = split_head(chunk);
            collect_parts(&part_headers, part_body, out);
        }
    } else {
        let encoding = header(headers, "Content-Transfer-Encoding")
            .unwrap_or("7bit")
            .to_ascii_lowercase();
        let body = match encoding.as_str() {
            "base64" => {
                let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
                String::from_utf8_lossy(&B64.decode(compact).unwrap_or_default()).into_owned()
            }
            "quoted-printable" => quoted_printable(body),
            _ => body.to_owned(),
        };
        out.push(MailPart { content_type, body });
    }
}

fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn quoted_printable(body: &str) -> String {
    let mut bytes = Vec::with_capacity(body.len());
    let mut lines = body.split('\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.trim_end_matches([' ', '\t']);
        let (line, soft_break) = match line.strip_suffix('=') {
            Some(l) => (l, true),
            None => (line, false),
        };
        let raw = line.as_bytes();
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'=' && i + 2 < raw.len() {
                let hex = std::str::from_utf8(&raw[i + 1..i + 3]).ok();
                if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    bytes.push(b);
                    i += 3;
                    continue;
                }
            }
            bytes.push(raw[i]);
            i += 1;
        }
        if !soft_break && lines.peek().is_some() {
            bytes.push(b'\n');
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Decodes RFC 2047 encoded-words (`=?utf-8?b?...?=`, `=?utf-8?q?...?=`) in a header value.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let before = &rest[..start];
        let after = &rest[start + 2..];
        let word = after.split_once('?').and_then(|(_charset, r)| {
            let (enc, r) = r.split_once('?')?;
            let (text, r) = r.split_once("?=")?;
            Some((enc.to_ascii_lowercase(), text, r))
        });
        let Some((enc, text, remainder)) = word else {
            break;
        };
        // Whitespace between two encoded-words is not part of the text.
        if !(last_was_word && before.trim().is_empty()) {
            out.push_str(before);
        }
        let decoded = match enc.as_str() {
            "b" => String::from_utf8_lossy(&B64.decode(text).unwrap_or_default()).into_owned(),
            _ => quoted_printable(&text.replace('_', " ")),
        };
        out.push_str(&decoded);
        rest = remainder;
        last_was_word = true;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multipart_with_quoted_printable_and_base64() {
        let raw = "Subject: =?utf-8?b?SGVsbG8g?= =?utf-8?q?W=C3=B6rld?=\r\n\
                   Content-Type: multipart/alternative; boundary=\"XX\"\r\n\r\n\
                   --XX\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
                   a=3Db soft =\r\nbreak\r\n--XX\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n\
                   PHA+aGk8L3A+\r\n--XX--\r\n";
        let mail = Mail::parse(raw.as_bytes());
        assert_eq!(mail.header("subject").unwrap(), "Hello Wörld");
        assert_eq!(mail.text().unwrap(), "a=b soft break");
        assert_eq!(mail.html().unwrap(), "<p>hi</p>");
    }

    #[test]
    fn path_arg_strips_brackets_and_parameters() {
        assert_eq!(
            path_arg("FROM:<a@b.org> BODY=8BITMIME", "FROM:").unwrap(),
            "a@b.org"
        );
        assert_eq!(path_arg("to: <c@d>", "TO:").unwrap(), "c@d");
        assert!(path_arg("FROM a@b", "FROM:").is_none());
    }
}
