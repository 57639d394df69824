//! A throwaway Citus cluster for the scale-out tests: a coordinator and two workers of the
//! installed PostgreSQL on 127.0.0.1, started by `scripts/citus.sh` in a temp dir, one database
//! with `citus` and `lms_etl` on every node, the workers registered. Stopped and removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use postgres::{Client, NoTls};

use crate::harness::{attempts_fingerprint, describe, LOADER_LOGIN};

/// The database made on every node.
pub const DATABASE: &str = "lms_etl_citus";

/// A worker node, by its name in `scripts/citus.sh`.
#[derive(Clone, Copy, Debug)]
pub enum Worker {
    One,
    Two,
}

impl Worker {
    fn node(self) -> &'static str {
        match self {
            Worker::One => "worker1",
            Worker::Two => "worker2",
        }
    }
}

/// A running coordinator + 2 workers.
pub struct CitusCluster {
    pub coordinator_port: u16,
    pub worker_ports: [u16; 2],
    root: PathBuf,
}

impl CitusCluster {
    /// Starts a new cluster (a few seconds). Panics, never skips, when Citus is not installed.
    pub fn start() -> CitusCluster {
        require_citus();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "lms-etl-citus-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create the cluster directory");
        // First, so even a failed start leaves nothing running.
        stop_when_this_process_ends(&root);
        let ports = [free_port(), free_port(), free_port()];
        let out = script()
            .arg("start")
            .arg(&root)
            .arg(DATABASE)
            .env("CITUS_PORTS", ports.map(|p| p.to_string()).join(" "))
            .output()
            .expect("run scripts/citus.sh start");
        assert!(
            out.status.success(),
            "scripts/citus.sh start failed: {}",
            describe(&out)
        );
        let cluster = CitusCluster {
            coordinator_port: ports[0],
            worker_ports: [ports[1], ports[2]],
            root,
        };
        // The loader's login, as on the single node: a member of lms_etl_loader only. The
        // coordinator propagates CREATE ROLE to the workers, where the loader's distributed
        // statements log in under the same name.
        cluster
            .client()
            .batch_execute(&format!(
                "CREATE ROLE {LOADER_LOGIN} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE IN ROLE lms_etl_loader"
            ))
            .expect("create the loader's login on the coordinator");
        cluster
    }

    /// The superuser's URL of the coordinator, over TCP (the tests' client speaks no TLS).
    pub fn url(&self) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{}/{DATABASE}?sslmode=disable",
            self.coordinator_port
        )
    }

    /// The URL the loader uses: the login [`LOADER_LOGIN`] (lms_etl_loader only), without
    /// TLS, as the tests' own client. `CREATE EXTENSION citus` turns `ssl` on with a
    /// self-signed X.509 v1 certificate: [`CitusCluster::default_loader_url`] goes through it.
    pub fn loader_url(&self) -> String {
        format!("{}?sslmode=disable", self.default_loader_url())
    }

    /// The loader's URL as a user would write it, with libpq's default `sslmode=prefer`.
    pub fn default_loader_url(&self) -> String {
        format!(
            "postgresql://{LOADER_LOGIN}@127.0.0.1:{}/{DATABASE}",
            self.coordinator_port
        )
    }

    /// The superuser on the coordinator.
    pub fn client(&self) -> Client {
        Client::connect(&self.url(), NoTls).expect("connect to the Citus coordinator")
    }

    /// The superuser on a worker, straight (what lives there: shards, local copies).
    pub fn worker_client(&self, worker: Worker) -> Client {
        let port = self.worker_ports[worker as usize];
        Client::connect(
            &format!("postgresql://postgres@127.0.0.1:{port}/{DATABASE}?sslmode=disable"),
            NoTls,
        )
        .expect("connect to a Citus worker")
    }

    /// `lms_etl.citus_distribute()` when the installed extension has it; else the layout it
    /// makes, by hand: attempts distributed on user_id, settings a reference table, the
    /// bookkeeping (runs, run_chunks, watermark, ...) left on the coordinator.
    pub fn distribute(&self) {
        let mut client = self.client();
        let has_function: bool = client
            .query_one(
                "SELECT to_regprocedure('lms_etl.citus_distribute()') IS NOT NULL",
                &[],
            )
            .unwrap()
            .get(0);
        let sql = if has_function {
            "SELECT lms_etl.citus_distribute()"
        } else {
            "SELECT create_reference_table('lms_etl.settings');
             SELECT create_distributed_table('lms_etl.attempts', 'user_id')"
        };
        client
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("distribute lms_etl ({sql}): {e:?}"));
    }

    /// Stops a worker at once (`pg_ctl -m immediate`: a crash, as far as the others know).
    pub fn stop_worker(&self, worker: Worker) {
        self.stop_node(worker, "immediate");
    }

    pub fn start_worker(&self, worker: Worker) {
        self.start_worker_with_env(worker, &[]);
    }

    /// Starts a stopped worker with extra environment for its server (e.g. `LANGUAGE`, which
    /// selects the language of its messages as a localized `lc_messages` does).
    pub fn start_worker_with_env(&self, worker: Worker, env: &[(&str, &str)]) {
        let out = script()
            .arg("node-start")
            .arg(&self.root)
            .arg(worker.node())
            .envs(env.iter().copied())
            .output()
            .expect("run scripts/citus.sh node-start");
        assert!(out.status.success(), "node-start: {}", describe(&out));
    }

    /// Stops a worker cleanly (`pg_ctl -m fast`), to restart it with other settings.
    pub fn stop_worker_cleanly(&self, worker: Worker) {
        self.stop_node(worker, "fast");
    }

    /// `scripts/citus.sh node-stop` with `pg_ctl -m <mode>`.
    fn stop_node(&self, worker: Worker, mode: &str) {
        let out = script()
            .env("STOP_MODE", mode)
            .arg("node-stop")
            .arg(&self.root)
            .arg(worker.node())
            .output()
            .expect("run scripts/citus.sh node-stop");
        assert!(out.status.success(), "node-stop: {}", describe(&out));
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.client().query_one(sql, &[]).unwrap().get(0)
    }

    pub fn attempts_fingerprint(&self) -> String {
        attempts_fingerprint(&mut self.client())
    }

    /// The server log of a node (`coordinator`, `worker1`, `worker2`), for assertion messages.
    pub fn log(&self, node: &str) -> String {
        std::fs::read_to_string(self.root.join(format!("{node}.log"))).unwrap_or_default()
    }
}

impl Drop for CitusCluster {
    fn drop(&mut self) {
        let _ = script()
            .env("STOP_MODE", "immediate")
            .arg("stop")
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
}

fn script() -> Command {
    let mut command = Command::new("bash");
    command.arg(repo_root().join("scripts/citus.sh"));
    command
}

fn pkglibdir() -> PathBuf {
    let out = Command::new(crate::harness::pg_tool("pg_config"))
        .arg("--pkglibdir")
        .output()
        .expect("run pg_config");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Citus must be there: a scale-out test that skips would pass without testing anything.
fn require_citus() {
    let so = pkglibdir().join("citus.so");
    assert!(
        so.exists(),
        "Citus is not installed ({} is missing): run `make citus` first",
        so.display()
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A detached shell (its own session) waits for this process to end, then stops the nodes
/// and removes the directory: a killed or aborted test run leaves no cluster behind.
fn stop_when_this_process_ends(root: &Path) {
    let script_path = repo_root().join("scripts/citus.sh");
    let watchdog = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
         STOP_MODE=immediate bash '{script}' stop '{root}' >/dev/null 2>&1; rm -rf '{root}'",
        pid = std::process::id(),
        script = script_path.display(),
        root = root.display()
    );
    let status = Command::new("setsid")
        .args(["-f", "sh", "-c", &watchdog])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start the cluster's watchdog");
    assert!(status.success(), "setsid -f failed: {status}");
}
