//! What several of the CSMS's test binaries share.

pub(crate) mod cluster;
pub(crate) mod conformance;

use serde_json::Value;

/// An operator API request with `key`: (HTTP status, JSON body or null).
#[allow(dead_code)]
pub(crate) async fn api(
    key: &str,
    port: u16,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    // reqwest takes its TLS provider from the process (rustls-no-provider):
    // a test that only talks to a spawned `csms` has no in-process CSMS to
    // install one
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::Client::new();
    let mut rb = c
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("http://127.0.0.1:{port}{path}"),
        )
        .header("Authorization", format!("Bearer {key}"));
    if let Some(b) = body {
        rb = rb
            .header("Content-Type", "application/json")
            .body(b.to_string());
    }
    let r = rb.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// The `items` of an operator API list at `path` (empty when there are none).
#[allow(dead_code)]
pub(crate) async fn items(key: &str, port: u16, path: &str) -> Vec<Value> {
    let (_, b) = api(key, port, "GET", path, None).await;
    b["items"].as_array().cloned().unwrap_or_default()
}

/// The CSMS's live events, read from `/api/events` with `key` in the
/// background, each with when it arrived; subscribed when this returns.
#[allow(dead_code)]
pub(crate) async fn live_events(
    key: &str,
    admin: u16,
) -> tokio::sync::mpsc::UnboundedReceiver<(std::time::Instant, csms::events::LiveEvent)> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{admin}/api/events"))
        .header("Authorization", format!("Bearer {key}"))
        .send()
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut buf = String::new();
        while let Ok(Some(chunk)) = r.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find('\n') {
                let line: String = buf.drain(..=end).collect();
                if let Some(data) = line.trim_end().strip_prefix("data:") {
                    if let Ok(e) = serde_json::from_str(data.trim()) {
                        if tx.send((std::time::Instant::now(), e)).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    rx
}

/// Polls `f` every 300 ms until it gives a value; panics with `what` and
/// its last reason after `within` (a hang guard, not a timing assertion).
#[allow(dead_code)]
pub(crate) async fn until<T, F, Fut>(within: std::time::Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let t = std::time::Instant::now();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) => assert!(t.elapsed() < within, "{what}: {last}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// A fresh data directory for a test under the system's temporary folder
/// (`csms-{name}-{pid}`, emptied first).
#[allow(dead_code)] // not every test binary uses every helper
pub(crate) fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("csms-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A CSMS set up for a test: loopback only, ports chosen by the system,
/// the API key `key`, stations let in without passwords (profile 0,
/// unknown identities accepted) and the store under `dir`.
#[allow(dead_code)]
pub(crate) fn lab_config(dir: &std::path::Path, key: &str) -> csms::config::Config {
    csms::config::Config {
        bind: std::net::IpAddr::from([127, 0, 0, 1]),
        ocpp_port: 0,
        http_port: 0,
        admin_port: 0,
        data_dir: dir.to_path_buf(),
        api_key: Some(key.into()),
        security_profile: 0,
        unknown_stations: csms::config::UnknownStations::Accept,
        ..Default::default()
    }
}

/// A CSMS serving in the test's own process until [`InProcess::stop`].
#[allow(dead_code)]
pub(crate) struct InProcess {
    /// Its ports and key.
    pub(crate) started: csms::Started,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

#[allow(dead_code)]
impl InProcess {
    /// Starts `config` and waits until it listens.
    pub(crate) async fn start(config: csms::config::Config) -> InProcess {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(csms::serve_until(
            config,
            async {
                let _ = stop_rx.await;
            },
            Some(ready_tx),
            false,
        ));
        let started = match ready_rx.await {
            Ok(s) => s,
            Err(_) => panic!("csms did not start: {:?}", task.await),
        };
        InProcess {
            started,
            stop,
            task,
        }
    }

    /// Stops it and waits until it has (a hang guard of a minute).
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(std::time::Duration::from_secs(60), self.task)
            .await
            .expect("csms stopped in time")
            .expect("csms task")
            .expect("csms ran without error");
    }
}

/// A simulated 2.1 station (`{prefix}0`, one connector, no drivers) that
/// opens a stream of its power once booted and sends a value every second
/// (`NotifyPeriodicEventStream`).
#[allow(dead_code)]
pub(crate) fn streaming_station(
    ocpp_port: u16,
    prefix: &str,
    password: Option<&str>,
) -> evproto_sim::SimConfig {
    evproto_sim::SimConfig {
        url: format!("ws://127.0.0.1:{ocpp_port}/ocpp/"),
        stations: 1,
        versions: vec![evproto_ocpp_proto::ProtocolVersion::V21],
        connectors: (1, 1),
        duration: std::time::Duration::from_secs(600),
        prefix: prefix.into(),
        password: password.map(str::to_owned),
        behaviour: evproto_sim::model::Behaviour {
            idle_ms: (3_600_000, 3_600_000),
            fault_per_s: 0.0,
            disconnect_per_s: 0.0,
            event_stream_s: Some(1),
            ..evproto_sim::model::Behaviour::default()
        },
        ..evproto_sim::SimConfig::default()
    }
}
