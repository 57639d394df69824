//! Real parts for end-to-end tests: a throwaway database with the extension on the local
//! PostgreSQL, the demo API as a child process, and the `lms-etl` binary run as cron would.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

use postgres::{Client, NoTls};

/// Where the tests find PostgreSQL (the admin connection creates and drops databases).
pub fn admin_url() -> String {
    std::env::var("LMS_ETL_TEST_ADMIN_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".into())
}

/// The login every end-to-end run of the loader uses: cluster-wide, made once, member of
/// `lms_etl_loader` only (no superuser, owns nothing).
pub const LOADER_LOGIN: &str = "lms_etl_test_loader";

fn ensure_loader_login() {
    static MADE: Once = Once::new();
    MADE.call_once(|| {
        let mut admin = Client::connect(&admin_url(), NoTls).expect("connect as admin");
        // Test binaries run in parallel: another may create the role between check and create.
        let made = admin.batch_execute(&format!(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{LOADER_LOGIN}') THEN
                     CREATE ROLE {LOADER_LOGIN} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE IN ROLE lms_etl_loader;
                 END IF;
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
             END $$"
        ));
        made.expect("create the loader's test login");
    });
}

/// A database created for one test, with `CREATE EXTENSION lms_etl`, dropped afterwards.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl Default for TestDb {
    fn default() -> Self {
        Self::new()
    }
}

impl TestDb {
    pub fn new() -> TestDb {
        let db = TestDb::create("template1");
        db.client()
            .batch_execute("CREATE EXTENSION lms_etl")
            .expect("CREATE EXTENSION lms_etl (is the extension installed? `make install-ext`)");
        db
    }

    /// A database created for one test with nothing in it, not even the extension: made from
    /// `template0`, as the PostgreSQL manual asks of a database to restore a dump into.
    pub fn empty() -> TestDb {
        TestDb::create("template0")
    }

    fn create(template: &str) -> TestDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "lms_etl_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mut admin = Client::connect(&admin_url(), NoTls)
            .expect("connect to PostgreSQL as admin (is it running?)");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .unwrap();
        let base = admin_url();
        let url = format!(
            "{}/{name}",
            base.rsplit_once('/').expect("URL has a database part").0
        );
        TestDb { name, url }
    }

    /// A new database made from `pg_dump --format=custom` of `source` by `pg_restore`, as an
    /// operator moves or recovers one; dropped afterwards like any other. Panics with the
    /// tools' stderr if either reports an error (every error of the restore, not just the first).
    pub fn restored_from(source: &TestDb) -> TestDb {
        let dump = tempfile::NamedTempFile::new().unwrap();
        let out = Command::new(pg_tool("pg_dump"))
            .args(["--format=custom", "--file"])
            .arg(dump.path())
            .arg("--dbname")
            .arg(&source.url)
            .output()
            .expect("run pg_dump");
        assert!(
            out.status.success(),
            "pg_dump of {} failed: {}",
            source.name,
            describe(&out)
        );
        let target = TestDb::empty();
        let out = Command::new(pg_tool("pg_restore"))
            .arg("--dbname")
            .arg(&target.url)
            .arg(dump.path())
            .output()
            .expect("run pg_restore");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "pg_restore of a dump of {} into {} failed: {}",
            source.name,
            target.name,
            describe(&out)
        );
        target
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.url, NoTls).expect("connect to the test database")
    }

    /// The URL the loader uses in the tests: the login [`LOADER_LOGIN`], a non-superuser
    /// holding only `lms_etl_loader`, as the README's set-up has it.
    pub fn loader_url(&self) -> String {
        ensure_loader_login();
        self.url
            .replacen("postgres@", &format!("{LOADER_LOGIN}@"), 1)
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.client().query_one(sql, &[]).unwrap().get(0)
    }

    /// Polls `sql` (a count) until it is not 0; panics naming `what` after a minute.
    pub fn wait_until(&self, sql: &str, what: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.count(sql) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting until {what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// A fingerprint of the whole attempts table, independent of load order and run ids.
    pub fn attempts_fingerprint(&self) -> String {
        attempts_fingerprint(&mut self.client())
    }
}

/// A fingerprint of the whole attempts table of the database `client` is connected to,
/// independent of load order and run ids (and of where the rows live: one node or shards).
pub fn attempts_fingerprint(client: &mut Client) -> String {
    client
        .query_one(
            "SELECT count(*) || ':' || coalesce(md5(string_agg(
                 concat_ws('|', user_id, oauth_consumer_key, lis_result_sourcedid, lis_outcome_service_url,
                           is_correct, attempt_type, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')),
                 ',' ORDER BY created_at, user_id, attempt_type, lis_result_sourcedid)), '-')
               FROM lms_etl.attempts",
            &[],
        )
        .unwrap()
        .get(0)
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = Client::connect(&admin_url(), NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// A login role for one test, member of `group` only (none: `""`); dropped afterwards.
pub struct Login {
    pub name: String,
}

impl Login {
    pub fn new(group: &str) -> Login {
        let (label, membership) = match group {
            "" => ("nobody", String::new()),
            g => (g, format!(" IN ROLE {g}")),
        };
        let name = format!("lms_etl_test_{label}_{}", std::process::id());
        let mut admin = Client::connect(&admin_url(), NoTls).unwrap();
        admin
            .batch_execute(&format!(
                "DROP ROLE IF EXISTS {name}; CREATE ROLE {name} LOGIN{membership}"
            ))
            .unwrap();
        Login { name }
    }

    pub fn url(&self, db: &TestDb) -> String {
        db.url.replacen("postgres@", &format!("{}@", self.name), 1)
    }
}

impl Drop for Login {
    fn drop(&mut self) {
        if let Ok(mut admin) = Client::connect(&admin_url(), NoTls) {
            let _ = admin.batch_execute(&format!("DROP ROLE IF EXISTS {}", self.name));
        }
    }
}

/// A PostgreSQL client program (`pg_dump`, `pg_restore`) of the server's major version:
/// from `pg_config --bindir` when there is one (Debian's /usr/bin wrappers may pick
/// another installed major), else from PATH.
pub fn pg_tool(name: &str) -> PathBuf {
    Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join(name))
        .filter(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The `lms-etl` binary, built once per test process.
pub fn lms_etl_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_owned();
    BUILD.call_once(|| {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            // The same package selection as `make test`'s `cargo test`, so features unify the
            // same way and nothing is rebuilt (`-p lms-etl-loader` alone rebuilt the TLS stack).
            .args([
                "build",
                "--quiet",
                "--workspace",
                "--exclude",
                "lms_etl",
                "--bin",
                "lms-etl",
            ])
            .current_dir(&workspace)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building lms-etl failed");
    });
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace.join("target"));
    target.join("debug").join("lms-etl")
}

/// The demo API as a child process on a free loopback port; killed on drop.
pub struct DemoApi {
    child: Child,
    pub url: String,
}

impl DemoApi {
    pub fn start(extra_args: &[&str]) -> DemoApi {
        let mut child = Command::new(lms_etl_bin())
            .arg("demo-api")
            .args(["--listen", "127.0.0.1:0"])
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start lms-etl demo-api");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let url = line
            .trim()
            .strip_prefix("demo API listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from demo-api: {line:?}"))
            .to_owned();
        DemoApi { child, url }
    }
}

impl Drop for DemoApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One configured `lms-etl` invocation: its database, API, log and outbox directories.
pub struct Etl {
    pub db_url: String,
    pub api_url: String,
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Etl {
    pub fn new(db: &TestDb, api_url: &str) -> Etl {
        Etl::with_database_url(&db.loader_url(), api_url)
    }

    /// For a database elsewhere than the local PostgreSQL (e.g. a TLS test cluster).
    pub fn with_database_url(db_url: &str, api_url: &str) -> Etl {
        Etl {
            db_url: db_url.to_owned(),
            api_url: api_url.to_owned(),
            dir: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        }
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    pub fn outbox(&self) -> PathBuf {
        self.dir.path().join("outbox")
    }

    pub fn with_env(mut self, key: &str, value: &str) -> Etl {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The environment a run gets: nothing from the test process but PATH.
    fn env_pairs(&self) -> Vec<(String, String)> {
        let dir = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut pairs: Vec<(String, String)> = [
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("DATABASE_URL", self.db_url.clone()),
            ("LMS_ETL_API_URL", self.api_url.clone()),
            ("LMS_ETL_CLIENT", "demo".into()),
            ("LMS_ETL_CLIENT_KEY", "demo".into()),
            ("LMS_ETL_LOG_DIR", dir(self.log_dir())),
            ("LMS_ETL_EMAIL_OUTBOX_DIR", dir(self.outbox())),
            ("LMS_ETL_API_BACKOFF_INITIAL_MS", "20".into()),
            ("LMS_ETL_API_BACKOFF_MAX_MS", "200".into()),
            ("LMS_ETL_API_REQUEST_TIMEOUT_SECS", "20".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        pairs.extend(self.env.iter().cloned());
        pairs
    }

    /// The command, with a clean environment: only what the test sets reaches it.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(lms_etl_bin());
        cmd.env_clear().envs(self.env_pairs()).args(args);
        cmd
    }

    /// The same command under a pseudo-terminal (util-linux `script`), as from a shell.
    pub fn command_in_terminal(&self, args: &[&str]) -> Command {
        let quote = |a: &str| format!("'{}'", a.replace('\'', "'\\''"));
        // Give the pty a size: one made without a parent terminal may be 0x0.
        let line = std::iter::once("stty cols 120 rows 40;".to_owned())
            .chain(std::iter::once(quote(&lms_etl_bin().to_string_lossy())))
            .chain(args.iter().map(|a| quote(a)))
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = Command::new("script");
        // Without TERM a terminal counts as dumb and draws no progress bar.
        cmd.env_clear()
            .envs(self.env_pairs())
            .env("TERM", "xterm-256color")
            .args(["-qec", &line, "/dev/null"]);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run lms-etl")
    }

    /// Everything in the log directory's dated files, concatenated.
    pub fn log_text(&self) -> String {
        let mut files: Vec<_> = std::fs::read_dir(self.log_dir())
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }
}

/// Exit code and stderr, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    )
}
