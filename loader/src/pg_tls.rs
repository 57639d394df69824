//! The PostgreSQL connection string with libpq's TLS options (`sslmode`, `sslrootcert`),
//! which tokio-postgres does not parse, turned into its `Config` and a rustls connector.
//!
//! libpq's meanings, kept here: `disable` = plaintext; `prefer` (the default) = TLS when
//! the server offers it, no certificate check; `require` = TLS, no certificate check unless
//! a root certificate file is there (then the chain is checked, as libpq does for backwards
//! compatibility); `verify-ca` = TLS, chain checked, any host name; `verify-full` = chain
//! and host name. `sslrootcert` is a PEM CA bundle, `system` the platform's roots; without
//! it, `~/.postgresql/root.crt` is used if it exists.
//!
//! Unlike libpq, the checked modes refuse X.509 v1 certificates (webpki's rule); the
//! unchecked ones take them, as libpq does (Citus' own certificate is v1).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, PeerMisbehaved, RootCertStore,
    SignatureScheme,
};
use tokio_postgres::config::Host;
use tokio_postgres_rustls::MakeRustlsConnect;
use x509_cert::der::{Decode, Encode};
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;

use crate::tls::{provider, read_ca_file};

/// A connection string this module refuses. Never holds the string itself: it may hold a
/// password.
#[derive(Debug, thiserror::Error)]
pub enum PgTlsError {
    /// Holds the value only when it looks like a misspelt mode: a typo (`;` for `&`) can run
    /// the next option, a password say, into it.
    #[error("sslmode{} is not one of disable, prefer, require, verify-ca, verify-full", .0.as_ref().map_or_else(String::new, |v| format!("={v:?}")))]
    UnknownMode(Option<String>),
    /// tokio-postgres splits a URL's user info at the first `@`: the rest of a password
    /// holding an unencoded `@` would become the host, and be shown in every error.
    #[error("the connection string's host name holds an `@`: write an `@` in the user name or password as %40")]
    AtInHost,
    #[error("sslmode=allow (plaintext first) is not supported: use prefer or disable")]
    Allow,
    #[error("sslrootcert=system needs sslmode=verify-full (or no sslmode), not {0}")]
    SystemNeedsVerifyFull(SslMode),
    #[error("sslmode={mode} needs the CA that signed the server's certificate: set sslrootcert=<PEM file> (or sslrootcert=system) in the connection string, or put the file at {}", default_path.as_deref().map_or("~/.postgresql/root.crt".into(), |p| p.display().to_string()))]
    NoRootCert {
        mode: SslMode,
        default_path: Option<PathBuf>,
    },
    #[error("sslrootcert: {0}")]
    RootCert(#[from] crate::tls::CaFileError),
    #[error("sslrootcert=system: no CA certificates found in the platform's store")]
    NoSystemRoots,
    #[error("sslrootcert: {0}")]
    Verifier(String),
    /// The key=value form broke off; names the byte, never the text.
    #[error("the connection string is not key=value pairs: {what} at byte {at}")]
    Syntax { what: &'static str, at: usize },
    #[error("the connection string: {0}")]
    Invalid(#[source] tokio_postgres::Error),
}

/// libpq's `sslmode` values this program honours (`allow` is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, PgTlsError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => return Err(PgTlsError::Allow),
            other => {
                let word = other.len() <= 16
                    && other
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                return Err(PgTlsError::UnknownMode(word.then(|| other.to_owned())));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the TLS handshake checks of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Encryption only (`prefer`, `require` without a root certificate).
    Nothing,
    /// Signed by a trusted CA, any host name (`verify-ca`, `require` with a root certificate).
    Chain,
    /// Signed by a trusted CA and issued for the host connected to (`verify-full`).
    ChainAndHost,
}

/// Where trusted CAs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    File(PathBuf),
    System,
}

/// Where and how to connect: tokio-postgres' settings plus the TLS connector built for the
/// `sslmode`. Its `Debug` shows no password.
#[derive(Clone)]
pub struct Target {
    pg: tokio_postgres::Config,
    sslmode: SslMode,
    check: Check,
    roots: Option<Roots>,
    tls: MakeRustlsConnect,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("server", &self.server())
            .field("sslmode", &self.sslmode)
            .field("check", &self.check)
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

/// The options this module takes out of the string before tokio-postgres reads the rest.
#[derive(Debug, Default, PartialEq, Eq)]
struct TlsOptions {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

impl Target {
    /// Reads a libpq URL (`postgres://u@h:p/db?sslmode=..&sslrootcert=..`) or key=value
    /// string (`host=.. sslmode=..`). `home` is the user's home directory, where libpq looks
    /// for `.postgresql/root.crt`. Reads the root certificates now, so a missing file is a
    /// start-up error, not a failed run.
    pub fn parse(conn: &str, home: Option<&Path>) -> Result<Target, PgTlsError> {
        let (rest, options) = take_tls_options(conn)?;
        let mut pg: tokio_postgres::Config = rest.parse().map_err(PgTlsError::Invalid)?;
        if pg
            .get_hosts()
            .iter()
            .any(|h| matches!(h, Host::Tcp(name) if name.contains('@')))
        {
            return Err(PgTlsError::AtInHost);
        }
        let roots_given = options.sslrootcert.as_deref().map(|r| match r {
            "system" => Roots::System,
            path => Roots::File(PathBuf::from(path)),
        });
        let sslmode = match (options.sslmode.as_deref(), &roots_given) {
            (Some(mode), _) => SslMode::parse(mode)?,
            // libpq: with the system's roots, a host name check is the only sensible default.
            (None, Some(Roots::System)) => SslMode::VerifyFull,
            (None, _) => SslMode::Prefer,
        };
        if roots_given == Some(Roots::System) && sslmode != SslMode::VerifyFull {
            return Err(PgTlsError::SystemNeedsVerifyFull(sslmode));
        }
        let default_path = home.map(|h| h.join(".postgresql").join("root.crt"));
        let roots = roots_given.or_else(|| {
            default_path
                .as_ref()
                .filter(|p| p.is_file())
                .map(|p| Roots::File(p.clone()))
        });
        // libpq ignores sslmode on Unix-domain sockets: the server speaks no TLS there.
        let all_local =
            !pg.get_hosts().is_empty() && pg.get_hosts().iter().all(|h| matches!(h, Host::Unix(_)));
        let check = match sslmode {
            _ if all_local => Check::Nothing,
            SslMode::Disable | SslMode::Prefer => Check::Nothing,
            SslMode::Require if roots.is_some() => Check::Chain,
            SslMode::Require => Check::Nothing,
            SslMode::VerifyCa => Check::Chain,
            SslMode::VerifyFull => Check::ChainAndHost,
        };
        let trusted = match (check, &roots) {
            (Check::Nothing, _) => None,
            (_, Some(roots)) => Some(Arc::new(load_roots(roots)?)),
            (_, None) => {
                return Err(PgTlsError::NoRootCert {
                    mode: sslmode,
                    default_path,
                })
            }
        };
        pg.ssl_mode(match sslmode {
            _ if all_local => tokio_postgres::config::SslMode::Disable,
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        let tls = MakeRustlsConnect::new(client_config(check, trusted)?);
        Ok(Target {
            pg,
            sslmode,
            check,
            roots,
            tls,
        })
    }

    pub fn config(&self) -> &tokio_postgres::Config {
        &self.pg
    }

    pub fn tls(&self) -> MakeRustlsConnect {
        self.tls.clone()
    }

    pub fn sslmode(&self) -> SslMode {
        self.sslmode
    }

    pub fn check(&self) -> Check {
        self.check
    }

    pub fn roots(&self) -> Option<&Roots> {
        self.roots.as_ref()
    }

    /// The password in the string, if any, so error texts can be scrubbed of it.
    pub fn password(&self) -> Option<&[u8]> {
        self.pg.get_password()
    }

    /// `host:port` for each host (`h1:5432,h2:5433`), for error messages.
    pub fn server(&self) -> String {
        let ports = self.pg.get_ports();
        let port = |i: usize| match ports {
            [] => 5432,
            [one] => *one,
            many => many.get(i).copied().unwrap_or(5432),
        };
        let hosts = self.pg.get_hosts();
        if hosts.is_empty() {
            return self
                .pg
                .get_hostaddrs()
                .iter()
                .enumerate()
                .map(|(i, a)| format!("{a}:{}", port(i)))
                .collect::<Vec<_>>()
                .join(",");
        }
        hosts
            .iter()
            .enumerate()
            .map(|(i, h)| match h {
                Host::Tcp(name) => format!("{name}:{}", port(i)),
                Host::Unix(dir) => format!("{}:{}", dir.display(), port(i)),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn load_roots(roots: &Roots) -> Result<RootCertStore, PgTlsError> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            for cert in read_ca_file(path)? {
                store
                    .add(cert)
                    .map_err(|e| PgTlsError::Verifier(format!("{}: {e}", path.display())))?;
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(PgTlsError::NoSystemRoots);
            }
        }
    }
    Ok(store)
}

fn client_config(
    check: Check,
    trusted: Option<Arc<RootCertStore>>,
) -> Result<ClientConfig, PgTlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PgTlsError::Verifier(e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = match (check, trusted) {
        (Check::ChainAndHost, Some(roots)) => {
            WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| PgTlsError::Verifier(e.to_string()))?
        }
        (Check::Chain, Some(roots)) => Arc::new(LibpqVerifier {
            roots: Some(roots),
            provider,
        }),
        _ => Arc::new(LibpqVerifier {
            roots: None,
            provider,
        }),
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The certificate checks rustls has no switch for: `verify-ca` (the chain, not the name)
/// and `prefer`/`require` (nothing). The handshake's signatures are always checked, so the
/// server still proves it holds the key of the certificate it sent.
#[derive(Debug)]
struct LibpqVerifier {
    /// `None`: any certificate is accepted.
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for LibpqVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        if self.roots.is_some() {
            return rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms);
        }
        let spki = subject_public_key_info(cert)?;
        // TLS 1.2 schemes leave the key's parameters open (ECDSA's curve): the candidate
        // for the certificate's key is the one whose key algorithm is the key's, as webpki
        // picks it.
        let candidates = algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, candidates)| *candidates)
            .ok_or(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme)?;
        let key_algorithm = algorithm_identifier_contents(&spki.algorithm)?;
        let algorithm = candidates
            .iter()
            .find(|a| a.public_key_alg_id().as_ref() == key_algorithm.as_slice())
            .ok_or_else(move || {
                CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext {
                    signature_algorithm_id: candidates
                        .first()
                        .map_or_else(Vec::new, |a| a.signature_alg_id().as_ref().to_vec()),
                    public_key_algorithm_id: key_algorithm,
                }
            })?;
        let key = spki
            .subject_public_key
            .as_bytes()
            .ok_or(CertificateError::BadEncoding)?;
        algorithm
            .verify_signature(key, message, dss.signature())
            .map_err(|_| CertificateError::BadSignature)?;
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        if self.roots.is_some() {
            return rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms);
        }
        // TLS 1.3 schemes name the key's algorithm whole: rustls checks the scheme is one
        // TLS 1.3 allows and that the key is of its algorithm.
        let spki = subject_public_key_info(cert)?
            .to_der()
            .map_err(|_| CertificateError::BadEncoding)?;
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(spki),
            dss,
            algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The certificate's key, read by x509-cert (in the tree already, through
/// tokio-postgres-rustls), which takes every X.509 version. webpki, which rustls verifies
/// signatures with, refuses X.509 v1 (`UnsupportedCertVersion`), and a v1 certificate is
/// what `CREATE EXTENSION citus` makes the server present; OpenSSL, in libpq, takes it.
fn subject_public_key_info(
    cert: &CertificateDer<'_>,
) -> Result<SubjectPublicKeyInfoOwned, CertificateError> {
    Certificate::from_der(cert)
        .map(|c| c.tbs_certificate.subject_public_key_info)
        .map_err(|_| CertificateError::BadEncoding)
}

/// An AlgorithmIdentifier without its SEQUENCE header (the OID, then any parameters), the
/// form `SignatureVerificationAlgorithm::public_key_alg_id` has.
fn algorithm_identifier_contents(
    algorithm: &AlgorithmIdentifierOwned,
) -> Result<Vec<u8>, CertificateError> {
    let mut contents = algorithm
        .oid
        .to_der()
        .map_err(|_| CertificateError::BadEncoding)?;
    if let Some(parameters) = &algorithm.parameters {
        parameters
            .encode_to_vec(&mut contents)
            .map_err(|_| CertificateError::BadEncoding)?;
    }
    Ok(contents)
}

// ---- taking the TLS options out of the string -------------------------------------

/// Splits `sslmode` and `sslrootcert` off a URL or key=value string; returns the rest in
/// the same form. The last occurrence of an option wins, as in libpq.
fn take_tls_options(conn: &str) -> Result<(String, TlsOptions), PgTlsError> {
    for prefix in ["postgres://", "postgresql://"] {
        if let Some(body) = conn.strip_prefix(prefix) {
            let (rest, options) = take_from_url(body);
            return Ok((format!("{prefix}{rest}"), options));
        }
    }
    take_from_pairs(conn)
}

/// The URL form: options live in the query string, percent-encoded.
fn take_from_url(body: &str) -> (String, TlsOptions) {
    let mut options = TlsOptions::default();
    // As tokio-postgres reads a URL: the user info runs to the first `@`, so a `?` before
    // it belongs to the password; the query starts at the first `?` after it.
    let after_user = body.find('@').map_or(0, |at| at + 1);
    let Some(q) = body[after_user..].find('?').map(|q| after_user + q) else {
        return (body.to_owned(), options);
    };
    let mut kept = Vec::new();
    for pair in body[q + 1..].split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match decode(key).as_str() {
            "sslmode" if pair.contains('=') => options.sslmode = Some(decode(value)),
            "sslrootcert" if pair.contains('=') => options.sslrootcert = Some(decode(value)),
            _ => kept.push(pair),
        }
    }
    let mut rest = body[..q].to_owned();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    (rest, options)
}

/// `%XX` decoding only, as libpq does (a `+` stays a `+`).
fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The key=value form, read as tokio-postgres reads it (whitespace around `=`, values
/// bare or in single quotes, `\` escaping the next character); the rest is written back
/// with every value quoted.
fn take_from_pairs(conn: &str) -> Result<(String, TlsOptions), PgTlsError> {
    let mut options = TlsOptions::default();
    let mut kept = Vec::new();
    let mut chars = conn.char_indices().peekable();
    let skip_ws = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    };
    loop {
        skip_ws(&mut chars);
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut end = start;
        while let Some((i, c)) = chars.next_if(|(_, c)| !c.is_whitespace() && *c != '=') {
            end = i + c.len_utf8();
        }
        let key = &conn[start..end];
        skip_ws(&mut chars);
        match chars.next() {
            Some((_, '=')) => {}
            Some((at, _)) => {
                return Err(PgTlsError::Syntax {
                    what: "expected `=`",
                    at,
                })
            }
            None => {
                return Err(PgTlsError::Syntax {
                    what: "expected `=`",
                    at: conn.len(),
                })
            }
        }
        skip_ws(&mut chars);
        let quoted = chars.next_if(|(_, c)| *c == '\'').is_some();
        let mut value = String::new();
        let mut closed = false;
        while let Some(&(_, c)) = chars.peek() {
            if quoted && c == '\'' {
                chars.next();
                closed = true;
                break;
            }
            if !quoted && c.is_whitespace() {
                break;
            }
            chars.next();
            if c == '\\' {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            } else {
                value.push(c);
            }
        }
        if quoted && !closed {
            return Err(PgTlsError::Syntax {
                what: "unterminated quoted value",
                at: conn.len(),
            });
        }
        match key {
            "sslmode" => options.sslmode = Some(value),
            "sslrootcert" => options.sslrootcert = Some(value),
            _ => kept.push(format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            )),
        }
    }
    Ok((kept.join(" "), options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(conn: &str) -> (String, TlsOptions) {
        take_tls_options(conn).unwrap()
    }

    fn options(sslmode: Option<&str>, sslrootcert: Option<&str>) -> TlsOptions {
        TlsOptions {
            sslmode: sslmode.map(str::to_owned),
            sslrootcert: sslrootcert.map(str::to_owned),
        }
    }

    #[test]
    fn url_options_are_taken_out_and_the_rest_kept_as_written() {
        assert_eq!(
            taken("postgres://u:p%40ss@db.example.org:6432/lms?sslmode=verify-full&application_name=etl&sslrootcert=%2Fetc%2Fca.pem"),
            (
                "postgres://u:p%40ss@db.example.org:6432/lms?application_name=etl".into(),
                options(Some("verify-full"), Some("/etc/ca.pem"))
            )
        );
        assert_eq!(
            taken("postgresql://u@h/db?sslmode=require"),
            ("postgresql://u@h/db".into(), options(Some("require"), None))
        );
        assert_eq!(
            taken("postgresql://u@h/db"),
            ("postgresql://u@h/db".into(), options(None, None))
        );
    }

    #[test]
    fn a_question_mark_in_the_password_is_not_the_query() {
        assert_eq!(
            taken("postgres://u:pa?ss@h/db?sslmode=disable"),
            (
                "postgres://u:pa?ss@h/db".into(),
                options(Some("disable"), None)
            )
        );
    }

    #[test]
    fn key_value_options_are_taken_out_and_the_rest_requoted() {
        let (rest, opts) = taken(
            "host=localhost  port = 5433 sslmode = verify-ca sslrootcert='/a b/ca.pem' dbname=lms",
        );
        assert_eq!(opts, options(Some("verify-ca"), Some("/a b/ca.pem")));
        assert_eq!(rest, "host='localhost' port='5433' dbname='lms'");
        // What tokio-postgres reads from the rewritten string equals the original's meaning.
        let (rest, _) = taken(r"host=h user=u password='a b\'c\\d' sslmode=require");
        let pg: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(pg.get_password(), Some(&br"a b'c\d"[..]));
        assert_eq!(pg.get_user(), Some("u"));
    }

    #[test]
    fn broken_key_value_strings_name_the_byte_not_the_text() {
        let err = take_tls_options("host=h password").unwrap_err().to_string();
        assert_eq!(
            err,
            "the connection string is not key=value pairs: expected `=` at byte 15"
        );
        let err = take_tls_options("host=h password='s3cret")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn the_default_is_prefer_without_any_check() {
        let t = Target::parse("postgres://u@127.0.0.1/db", None).unwrap();
        assert_eq!((t.sslmode(), t.check()), (SslMode::Prefer, Check::Nothing));
        assert_eq!(
            t.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Prefer
        );
        assert_eq!(t.server(), "127.0.0.1:5432");
    }

    #[test]
    fn verify_modes_map_to_require_and_name_their_checks() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ca.pem");
        // A missing file is an error naming it, read at parse time.
        let err = Target::parse(
            &format!("host=h sslmode=verify-ca sslrootcert={}", missing.display()),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("sslrootcert: cannot use "), "{err}");
        assert!(err.contains(&missing.display().to_string()), "{err}");

        let t = Target::parse("host=h sslmode=require", None).unwrap();
        assert_eq!((t.check(), t.roots()), (Check::Nothing, None));
        assert_eq!(
            t.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
    }

    #[test]
    fn verify_without_a_root_certificate_names_the_option_and_the_default_file() {
        let home = tempfile::tempdir().unwrap();
        let err = Target::parse(
            "postgres://u:hunter2@h/db?sslmode=verify-full",
            Some(home.path()),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("set sslrootcert=<PEM file>"), "{err}");
        assert!(
            err.contains(
                &home
                    .path()
                    .join(".postgresql/root.crt")
                    .display()
                    .to_string()
            ),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        let err = Target::parse("host=h sslmode=verify-ca", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("~/.postgresql/root.crt"), "{err}");
    }

    #[test]
    fn system_roots_default_to_and_need_verify_full() {
        let err = Target::parse("host=h sslmode=verify-ca sslrootcert=system", None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "sslrootcert=system needs sslmode=verify-full (or no sslmode), not verify-ca"
        );
        // The platform store may be empty on a minimal machine; the mode is decided first.
        match Target::parse("host=h sslrootcert=system", None) {
            Ok(t) => assert_eq!(
                (t.sslmode(), t.check(), t.roots()),
                (
                    SslMode::VerifyFull,
                    Check::ChainAndHost,
                    Some(&Roots::System)
                )
            ),
            Err(e) => assert!(matches!(e, PgTlsError::NoSystemRoots), "{e}"),
        }
    }

    #[test]
    fn unknown_and_allow_modes_are_refused() {
        assert_eq!(
            Target::parse("host=h sslmode=verify_full", None)
                .unwrap_err()
                .to_string(),
            "sslmode=\"verify_full\" is not one of disable, prefer, require, verify-ca, verify-full"
        );
        assert!(matches!(
            Target::parse("postgres://h/db?sslmode=allow", None),
            Err(PgTlsError::Allow)
        ));
    }

    /// A `;` or `,` typed for `&` runs the next option into sslmode's value: the error must
    /// not show it, whatever it holds.
    #[test]
    fn an_unknown_mode_is_shown_only_when_it_looks_like_a_misspelt_mode() {
        for conn in [
            "postgres://u@h/db?sslmode=require;password=hunter2",
            "postgres://u@h/db?sslmode=require,password=hunter2",
            "host=h sslmode=require,password=hunter2",
        ] {
            let err = Target::parse(conn, None).unwrap_err().to_string();
            assert_eq!(
                err, "sslmode is not one of disable, prefer, require, verify-ca, verify-full",
                "{conn}"
            );
        }
    }

    /// `postgres://etl:p@ss@db/lms`: tokio-postgres takes `p` as the password and `ss@db`
    /// as the host, which every connection error would then print.
    #[test]
    fn an_unencoded_at_in_the_password_is_refused_without_showing_it() {
        for conn in [
            "postgres://etl:hun@ter2@db.example.org/lms",
            "postgresql://etl:hun@ter2@db.example.org:6432/lms?sslmode=require",
        ] {
            let err = Target::parse(conn, None).unwrap_err().to_string();
            assert!(err.contains("%40") && !err.contains("ter2"), "{err}");
        }
        // Written %40, the same password is fine.
        let t = Target::parse("postgres://etl:hun%40ter2@db.example.org/lms", None).unwrap();
        assert_eq!(t.password(), Some(&b"hun@ter2"[..]));
        assert_eq!(t.server(), "db.example.org:5432");
    }

    #[test]
    fn unix_sockets_ignore_sslmode_as_libpq_does() {
        let t = Target::parse("host=/var/run/postgresql sslmode=verify-full", None).unwrap();
        assert_eq!(t.check(), Check::Nothing);
        assert_eq!(
            t.config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
    }

    // ---- handshakes with X.509 v1 certificates (loader/testdata) ----------------------

    const V1_RSA_CERT: &str = include_str!("../testdata/v1-rsa.crt");
    const V1_RSA_KEY: &str = include_str!("../testdata/v1-rsa.key");
    const V1_EC_CERT: &str = include_str!("../testdata/v1-ec.crt");
    const V1_EC_KEY: &str = include_str!("../testdata/v1-ec.key");
    const OTHER_EC_KEY: &str = include_str!("../testdata/other-ec.key");

    /// A server that presents `cert` and signs with `key`, whether or not `key` is the
    /// certificate's (rustls' `with_single_cert` would check; a resolver does not).
    #[derive(Debug)]
    struct Presents(Arc<rustls::sign::CertifiedKey>);

    impl rustls::server::ResolvesServerCert for Presents {
        fn resolve(
            &self,
            _hello: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    /// A TLS handshake in memory between the client of `check` (trusting `roots`) and a
    /// server of `version` presenting `cert` and signing with `key`; the client's verdict.
    fn handshake(
        check: Check,
        roots: Option<&str>,
        version: &'static rustls::SupportedProtocolVersion,
        cert: &str,
        key: &str,
    ) -> Result<(), rustls::Error> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::PrivateKeyDer;

        let cert = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let key = provider()
            .key_provider
            .load_private_key(PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap())
            .unwrap();
        let trusted = roots.map(|pem| {
            let mut store = RootCertStore::empty();
            store
                .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
                .unwrap();
            Arc::new(store)
        });
        let client_config = client_config(check, trusted).unwrap();
        let server_config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Presents(Arc::new(
                rustls::sign::CertifiedKey::new(vec![cert], key),
            ))));
        let mut client = rustls::ClientConnection::new(
            Arc::new(client_config),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut server = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
        let mut wire = Vec::new();
        while client.is_handshaking() || server.is_handshaking() {
            wire.clear();
            while client.wants_write() {
                client.write_tls(&mut wire).unwrap();
            }
            server.read_tls(&mut wire.as_slice()).unwrap();
            server.process_new_packets().expect("the server's side");
            wire.clear();
            while server.wants_write() {
                server.write_tls(&mut wire).unwrap();
            }
            client.read_tls(&mut wire.as_slice()).unwrap();
            client.process_new_packets()?;
        }
        Ok(())
    }

    const TLS12: &rustls::SupportedProtocolVersion = &rustls::version::TLS12;
    const TLS13: &rustls::SupportedProtocolVersion = &rustls::version::TLS13;

    #[test]
    fn prefer_and_require_accept_a_v1_certificate_under_tls_1_2_and_1_3() {
        for version in [TLS12, TLS13] {
            for (cert, key) in [(V1_RSA_CERT, V1_RSA_KEY), (V1_EC_CERT, V1_EC_KEY)] {
                assert_eq!(
                    handshake(Check::Nothing, None, version, cert, key),
                    Ok(()),
                    "{version:?}"
                );
            }
        }
    }

    #[test]
    fn a_server_signing_with_a_key_not_its_certificates_fails_the_handshake() {
        for version in [TLS12, TLS13] {
            assert_eq!(
                handshake(Check::Nothing, None, version, V1_EC_CERT, OTHER_EC_KEY),
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::BadSignature
                )),
                "{version:?}"
            );
            // A key of another type: an RSA signature against the certificate's EC key.
            let err = handshake(Check::Nothing, None, version, V1_EC_CERT, V1_RSA_KEY).unwrap_err();
            assert!(
                matches!(
                    err,
                    rustls::Error::InvalidCertificate(
                        CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. }
                    )
                ),
                "{version:?}: {err:?}"
            );
        }
    }

    /// verify-ca and verify-full (and require with a root certificate) keep webpki's full
    /// verification, which refuses X.509 v1 even as its own trust anchor (README, TLS).
    #[test]
    fn chain_checks_refuse_a_v1_certificate() {
        for check in [Check::Chain, Check::ChainAndHost] {
            let err = handshake(check, Some(V1_EC_CERT), TLS13, V1_EC_CERT, V1_EC_KEY)
                .unwrap_err()
                .to_string();
            assert!(err.contains("UnsupportedCertVersion"), "{check:?}: {err}");
        }
    }

    #[test]
    fn servers_are_named_with_their_ports_and_debug_hides_the_password() {
        let t = Target::parse("postgres://u:hunter2@a:6432,b/db", None).unwrap();
        assert_eq!(t.server(), "a:6432,b:5432");
        let debug = format!("{t:?}");
        assert!(
            !debug.contains("hunter2") && debug.contains("a:6432"),
            "{debug}"
        );
    }
}
