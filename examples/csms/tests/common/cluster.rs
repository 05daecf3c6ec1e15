//! What the cluster test binaries share: a fresh PostgreSQL database, a
//! NATS server of the test's own, `csms` node processes, a TCP load
//! balancer in front of their OCPP ports.

// not every test binary uses every helper
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// The API key of every node.
pub(crate) const KEY: &str = "cluster-test-api-key-0123";

/// The shared NATS server (`CSMS_TEST_NATS`, default nats://127.0.0.1:4222).
pub(crate) fn nats_url() -> String {
    std::env::var("CSMS_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Fails the test with the reason when NATS cannot be reached.
pub(crate) fn require_nats(url: &str) {
    let addr = url.trim_start_matches("nats://");
    if let Err(e) = std::net::TcpStream::connect(addr) {
        panic!("NATS at {url} (set CSMS_TEST_NATS; CI runs nats-server -js): {e}");
    }
}

/// A cluster name of this run's own.
pub(crate) fn cluster_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("t{}_{nanos}", std::process::id())
}

/// A fresh PostgreSQL database; (its URL, the admin URL).
pub(crate) async fn postgres_db(tag: &str) -> (String, String) {
    let admin = std::env::var("CSMS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("csms_cluster_{tag}_{}", std::process::id());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} (set CSMS_TEST_POSTGRES): {e}"));
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(&sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').expect("a database in the URL");
    (format!("{base}/{name}"), admin)
}

/// Drops a database of [`postgres_db`].
pub(crate) async fn drop_db(url: &str, admin: &str) {
    let name = url.rsplit('/').next().unwrap_or_default();
    if let Ok(pool) = sqlx::AnyPool::connect(admin).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&pool)
            .await;
        pool.close().await;
    }
}

/// One `csms` node process; killed (SIGKILL) when dropped.
pub(crate) struct Node {
    pub(crate) child: Child,
    pub(crate) ocpp: u16,
    pub(crate) admin: u16,
    pub(crate) dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts node `node` of cluster `cluster` on `db` and NATS `nats` (`None`:
/// a single node on `db`, not in cluster mode), with `extra` arguments, and
/// waits until it listens. Its log is `{tmp}/csms-cluster-{cluster}-{node}.log`.
pub(crate) fn start_node(
    cluster: &str,
    node: &str,
    db: &str,
    nats: Option<&str>,
    extra: &[&str],
) -> Node {
    let dir = std::env::temp_dir().join(format!("csms-cluster-{cluster}-{node}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = std::fs::File::create(dir.with_extension("log")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_csms"));
    cmd.args(["--bind", "127.0.0.1", "--ocpp-port", "0"])
        .args(["--http-port", "0", "--admin-port", "0"])
        .args(["--security-profile", "0", "--unknown-stations", "accept"])
        .args(["--call-timeout", "5"]);
    if let Some(nats) = nats {
        cmd.args(["--cluster", nats, "--cluster-name", cluster])
            .args(["--node-id", node]);
    }
    let mut child = cmd
        .args(extra)
        .arg("--data-dir")
        .arg(&dir)
        .env("CSMS_API_KEY", KEY)
        .env("DATABASE_URL", db)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(dir.with_extension("log")).unwrap_or_default();
                panic!("node {node} did not start ({e}): {log}")
            });
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if v["event"] == "listening" {
            return Node {
                child,
                ocpp: v["ocpp_port"].as_u64().unwrap() as u16,
                admin: v["admin_port"].as_u64().unwrap() as u16,
                dir,
            };
        }
    }
}

/// An operator API request to a node: (status, JSON body or null).
pub(crate) async fn api(
    node: &Node,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    super::api(KEY, node.admin, method, path, body).await
}

/// A node's `/metrics` text.
pub(crate) async fn metrics(node: &Node) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/metrics", node.admin))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of a metric line `name` (with its labels) in `text`.
pub(crate) fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// A `nats-server -js` of the test's own on a free loopback port, its
/// storage in a temporary folder: stopped and started again by the test;
/// killed when dropped (a failing test leaves nothing running).
pub(crate) struct PrivateNats {
    child: Option<Child>,
    pub(crate) port: u16,
    dir: PathBuf,
}

impl PrivateNats {
    /// Starts one (`nats-server` on PATH or in /usr/sbin).
    pub(crate) fn start() -> PrivateNats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("csms-nats-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut n = PrivateNats {
            child: None,
            port,
            dir,
        };
        n.up();
        n
    }

    /// Its URL.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port and storage; waits until it listens.
    pub(crate) fn up(&mut self) {
        let bin = [
            "nats-server",
            "/usr/sbin/nats-server",
            "/usr/local/bin/nats-server",
        ]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect("nats-server on PATH (apt-get install nats-server)");
        let child = Command::new(bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("nats-server did not listen on {}", self.port);
    }

    /// Stops it (SIGKILL: an outage, not a shutdown).
    pub(crate) fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP load balancer on a loopback port: each connection goes to the
/// next backend that accepts it (round robin), as one in front of a
/// cluster's OCPP ports; a backend that died is passed over.
pub(crate) struct Balancer {
    pub(crate) port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    /// Starts one over `backends` (ports on 127.0.0.1).
    pub(crate) async fn start(backends: Vec<u16>) -> Balancer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let next = Arc::new(Mutex::new(0usize));
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let (backends, next) = (backends.clone(), next.clone());
                tokio::spawn(async move {
                    let first = {
                        let mut n = next.lock().unwrap();
                        *n += 1;
                        *n
                    };
                    for k in 0..backends.len() {
                        let port = backends[(first + k) % backends.len()];
                        let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
                        if let Ok(Ok(mut outbound)) =
                            tokio::time::timeout(Duration::from_secs(2), connect).await
                        {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
                    }
                });
            }
        });
        Balancer { port, task }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
