//! Throwaway PostgreSQL clusters of the installed binaries for TLS tests: with `ssl = on`
//! and plaintext refused over TCP, presenting a certificate from a test CA or a self-signed
//! X.509 v1 one (as Citus makes); and one without TLS at all. Each is started once per test
//! process and stopped by a watchdog when the process ends.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use postgres::{Client, NoTls};

use crate::harness::{describe, pg_tool};
use crate::test_ca::TestCa;

/// A running cluster on 127.0.0.1 and a Unix socket in its own directory.
pub struct PgCluster {
    pub port: u16,
    /// The socket directory, the data directory's parent; removed when the cluster stops.
    root: PathBuf,
    /// The CA that signed the server's certificate (`DNS:localhost` only), or the
    /// self-signed certificate itself, for TLS clusters.
    ca_file: Option<PathBuf>,
}

/// What a cluster presents to a client asking for TLS.
#[derive(Clone, Copy)]
enum ServerTls {
    Off,
    /// A certificate for `DNS:localhost` signed by a test CA.
    CaSigned,
    /// A self-signed X.509 v1 certificate, as `CREATE EXTENSION citus` makes, made with the
    /// `openssl` CLI; TLS up to `max_version` (`ssl_max_protocol_version`).
    SelfSignedV1 {
        max_version: &'static str,
    },
}

impl PgCluster {
    /// The cluster with `ssl = on`: `hostssl ... trust`, `hostnossl ... reject` on 127.0.0.1.
    pub fn tls() -> &'static PgCluster {
        static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
        CLUSTER.get_or_init(|| PgCluster::start(ServerTls::CaSigned))
    }

    /// Like [`PgCluster::tls`], presenting a self-signed X.509 v1 certificate (RSA,
    /// `CN=localhost`, no extensions), as `CREATE EXTENSION citus` turns on; `tls12` caps
    /// the protocol at TLS 1.2 (the server's default goes up to 1.3).
    pub fn self_signed_v1(tls12: bool) -> &'static PgCluster {
        static UP_TO_1_3: OnceLock<PgCluster> = OnceLock::new();
        static UP_TO_1_2: OnceLock<PgCluster> = OnceLock::new();
        let (cell, max_version) = if tls12 {
            (&UP_TO_1_2, "TLSv1.2")
        } else {
            (&UP_TO_1_3, "TLSv1.3")
        };
        cell.get_or_init(|| PgCluster::start(ServerTls::SelfSignedV1 { max_version }))
    }

    /// A cluster with `ssl = off`: a client that wants TLS gets "server does not support TLS".
    pub fn plaintext() -> &'static PgCluster {
        static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
        CLUSTER.get_or_init(|| PgCluster::start(ServerTls::Off))
    }

    /// The PEM file of the CA that signed the server's certificate (a self-signed one's own).
    pub fn ca_file(&self) -> &Path {
        self.ca_file.as_deref().expect("a TLS cluster")
    }

    /// A new database with `CREATE EXTENSION lms_etl` (the installed one), made over the
    /// Unix socket; dropped with the cluster.
    pub fn create_database(&self) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!("lms_etl_tls_{}", COUNTER.fetch_add(1, Ordering::SeqCst));
        self.client("postgres")
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create a database in the test cluster");
        self.client(&name)
            .batch_execute("CREATE EXTENSION lms_etl")
            .expect("CREATE EXTENSION lms_etl in the test cluster (is the extension installed?)");
        name
    }

    /// The superuser over the Unix socket, which `pg_hba.conf` trusts without TLS.
    pub fn client(&self, database: &str) -> Client {
        Client::connect(
            &format!(
                "host={} port={} user=postgres dbname={database}",
                self.root.display(),
                self.port
            ),
            NoTls,
        )
        .expect("connect to the test cluster over its socket")
    }

    fn start(tls: ServerTls) -> PgCluster {
        let port = free_port();
        let root = std::env::temp_dir().join(format!(
            "lms-etl-pg-{}-{}",
            match tls {
                ServerTls::Off => "plain",
                ServerTls::CaSigned => "tls",
                ServerTls::SelfSignedV1 { max_version } => max_version,
            },
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create the cluster directory");
        let data = root.join("data");
        // First, so even a failed start leaves nothing behind.
        stop_when_this_process_ends(&root, &data);
        as_cluster_owner(&root);
        run_as_owner(
            Command::new(pg_tool("initdb")).arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "--no-instructions",
            ]),
            "initdb",
        );

        let mut conf = format!(
            "\n# lms-etl TLS tests\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nfsync = off\nssl = {}\n",
            root.display(),
            if matches!(tls, ServerTls::Off) {
                "off"
            } else {
                "on"
            }
        );
        let mut hba = String::from("local all all trust\n");
        let server = match tls {
            ServerTls::Off => None,
            ServerTls::CaSigned => {
                let ca = TestCa::new("lms-etl test CA (PostgreSQL)");
                ca.write_pem(&root.join("ca.pem"));
                // Only the name: a client connecting to 127.0.0.1 cannot pass verify-full.
                let server = ca.issue(&["localhost"]);
                Some((server.cert_pem, server.key_pem))
            }
            ServerTls::SelfSignedV1 { max_version } => {
                conf.push_str(&format!("ssl_max_protocol_version = '{max_version}'\n"));
                let (cert_pem, key_pem) = self_signed_v1_certificate();
                std::fs::write(root.join("ca.pem"), &cert_pem).unwrap();
                Some((cert_pem, key_pem))
            }
        };
        let ca_file = if let Some((cert_pem, key_pem)) = server {
            write_owned(&data.join("server.crt"), &cert_pem, 0o644);
            // PostgreSQL refuses a key that others can read.
            write_owned(&data.join("server.key"), &key_pem, 0o600);
            conf.push_str("ssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
            hba.push_str(
                "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
            );
            Some(root.join("ca.pem"))
        } else {
            hba.push_str("host all all 127.0.0.1/32 trust\n");
            None
        };
        append(&data.join("postgresql.conf"), &conf);
        write_owned(&data.join("pg_hba.conf"), &hba, 0o600);

        run_as_owner(
            Command::new(pg_tool("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(root.join("log"))
                .args(["-w", "-t", "60", "start"]),
            "pg_ctl start",
        );
        PgCluster {
            port,
            root,
            ca_file,
        }
    }
}

/// A self-signed X.509 v1 certificate for `CN=localhost` and its key (PEM), made by the
/// `openssl` CLI as OpenSSL makes Citus' (no extensions). OpenSSL 3.0 writes v1 when there
/// are none (`-config /dev/null` has none); newer releases add key identifiers unless told
/// `-x509v1`, passed when `openssl req -help` lists it. Checked: a v3 certificate would make
/// the tests prove nothing.
fn self_signed_v1_certificate() -> (String, String) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (cert, key) = (dir.path().join("v1.crt"), dir.path().join("v1.key"));
    let help = Command::new("openssl")
        .args(["req", "-help"])
        .output()
        .expect("run openssl (the CLI makes the v1 certificate)");
    let mut req = Command::new("openssl");
    req.args(["req", "-x509", "-config", "/dev/null"]);
    if String::from_utf8_lossy(&help.stderr).contains("-x509v1") {
        req.arg("-x509v1");
    }
    req.args([
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=localhost",
    ])
    .arg("-keyout")
    .arg(&key)
    .arg("-out")
    .arg(&cert);
    let out = req.output().expect("run openssl req");
    assert!(out.status.success(), "openssl req: {}", describe(&out));
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
        .expect("run openssl x509");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Version: 1 (0x0)"),
        "not a v1 certificate:\n{text}"
    );
    (
        std::fs::read_to_string(&cert).unwrap(),
        std::fs::read_to_string(&key).unwrap(),
    )
}

/// initdb refuses root: as root, the cluster belongs to `postgres`.
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn as_cluster_owner(path: &Path) {
    if running_as_root() {
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(path)
            .status()
            .expect("run chown");
        assert!(status.success(), "chown postgres {}", path.display());
    }
}

fn run_as_owner(command: &mut Command, what: &str) {
    let mut command = if running_as_root() {
        let mut wrapped = Command::new("runuser");
        wrapped
            .args(["-u", "postgres", "--"])
            .arg(command.get_program())
            .args(command.get_args());
        wrapped
    } else {
        std::mem::replace(command, Command::new("true"))
    };
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}", describe(&out));
}

fn write_owned(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    as_cluster_owner(path);
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.write_all(text.as_bytes()).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Statics are never dropped, so a detached shell (its own session: a Ctrl-C of the test
/// run does not reach it) waits for this process to end, then stops the cluster and
/// removes its directory. A panic, an abort or a kill of the test process all end it.
fn stop_when_this_process_ends(root: &Path, data: &Path) {
    let pg_ctl = pg_tool("pg_ctl");
    let stop = format!(
        "{}'{}' -D '{}' -m immediate -w stop",
        if running_as_root() {
            "runuser -u postgres -- "
        } else {
            ""
        },
        pg_ctl.display(),
        data.display()
    );
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; {stop} 2>/dev/null; rm -rf '{root}'",
        pid = std::process::id(),
        root = root.display()
    );
    // `setsid -f` forks the watchdog off and returns at once.
    let status = Command::new("setsid")
        .args(["-f", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start the cluster's watchdog");
    assert!(status.success(), "setsid -f failed: {status}");
}
