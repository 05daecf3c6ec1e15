//! Cluster mode (issue 20): three `csms` processes on one PostgreSQL
//! database and NATS (`CSMS_TEST_NATS`, default nats://127.0.0.1:4222),
//! each on its own loopback ports, a cluster name of their own per run.
//! Stations are plain WebSockets (no reconnection of their own), spread
//! over the nodes: an API call on node 1 reaches a station on node 3 and
//! returns its answer; a station that connects to node 1 while node 2
//! still holds it replaces that connection (node 2 closes its socket); the
//! live events of node 1 show a boot on node 3 (node 1, followed, takes
//! every node's events, the others only their boots); a call for a station whose
//! node does not answer is a 503. Cluster mode refuses SQLite.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{
    api, cluster_name, drop_db, metric, metrics, nats_url, postgres_db, require_nats, start_node,
    Node,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(15);

/// A station on a plain WebSocket: answers every CSMS call with
/// `{"status": "Accepted"}` and reports it; does not reconnect.
struct Station {
    out: mpsc::UnboundedSender<Message>,
    /// The actions the CSMS called.
    calls: mpsc::UnboundedReceiver<String>,
    /// Fires when the CSMS closed the connection.
    closed: oneshot::Receiver<()>,
}

impl Station {
    /// Connects `id` to `node` in OCPP 2.0.1 and waits until its boot is
    /// accepted.
    async fn boot(node: &Node, id: &str) -> Station {
        let mut req = format!("ws://127.0.0.1:{}/ocpp/{id}", node.ocpp)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "ocpp2.0.1".parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (calls_tx, calls) = mpsc::unbounded_channel();
        let (answers_tx, mut answers) = mpsc::unbounded_channel::<Value>();
        let (closed_tx, closed) = oneshot::channel();
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let replies = out.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                let Message::Text(t) = m else {
                    if matches!(m, Message::Close(_)) {
                        break;
                    }
                    continue;
                };
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                match v[0].as_u64() {
                    Some(2) => {
                        let answer = json!([3, v[1], {"status": "Accepted"}]);
                        let _ = replies.send(Message::text(answer.to_string()));
                        let _ = calls_tx.send(v[2].as_str().unwrap_or_default().to_owned());
                    }
                    _ => {
                        let _ = answers_tx.send(v);
                    }
                }
            }
            let _ = closed_tx.send(());
        });
        let boot = json!([2, "boot-1", "BootNotification",
            {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}]);
        out.send(Message::text(boot.to_string())).unwrap();
        let answer = tokio::time::timeout(WAIT, answers.recv())
            .await
            .expect("a boot answer in time")
            .expect("connected");
        assert_eq!(answer[0], 3, "{answer}");
        assert_eq!(answer[2]["status"], "Accepted", "{answer}");
        Station { out, calls, closed }
    }

    /// Waits until the CSMS called `action` (other calls are passed over).
    async fn called(&mut self, action: &str) {
        loop {
            let got = tokio::time::timeout(WAIT, self.calls.recv())
                .await
                .unwrap_or_else(|_| panic!("no {action} in time"))
                .expect("connected");
            if got == action {
                return;
            }
        }
    }
}

/// Calls `action` on `station` through `node`'s API until the station's
/// node has registered it (404 meanwhile): the final status and body.
async fn call_through(node: &Node, station: &str, action: &str) -> (u16, Value) {
    let path = format!("/api/stations/{station}/ocpp/{action}");
    let until = Instant::now() + WAIT;
    loop {
        let (s, v) = api(node, "POST", &path, Some(json!({}))).await;
        if s != 404 || Instant::now() > until {
            return (s, v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_stations_calls_and_events() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let nats = nats_url();
    require_nats(&nats);
    let (db, admin) = postgres_db("three").await;
    let cluster = cluster_name();
    // one at a time: the first creates the schema
    let n1 = start_node(&cluster, "n1", &db, Some(&nats), &[]);
    let n2 = start_node(&cluster, "n2", &db, Some(&nats), &[]);
    let n3 = start_node(&cluster, "n3", &db, Some(&nats), &[]);

    // node 1's live events, followed from now on
    let sse = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/api/events", n1.admin))
        .bearer_auth(common::cluster::KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status().as_u16(), 200);
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut sse = sse;
        while let Ok(Some(chunk)) = sse.chunk().await {
            let _ = seen_tx.send(String::from_utf8_lossy(&chunk).into_owned());
        }
    });

    // node 1 takes every node's events from when its gauge says so (within
    // a fraction of a second of its first follower)
    let label = |node: &str, name: &str| format!("{name}{{node=\"{node}\"}}");
    let following = "csms_cluster_events_following";
    let until = Instant::now() + WAIT;
    while metric(&metrics(&n1).await, &label("n1", following)) != Some(1.0) {
        assert!(
            Instant::now() < until,
            "node 1 does not follow every node's events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // stations spread over the nodes
    let mut a = Station::boot(&n3, "CL-A").await;
    let b_old = Station::boot(&n2, "CL-B").await;
    let _c = Station::boot(&n1, "CL-C").await;

    // SSE on node 1 shows the boot on node 3
    let until = Instant::now() + WAIT;
    let mut text = String::new();
    while !(text.contains(r#""type":"boot""#) && text.contains(r#""station":"CL-A""#)) {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, seen.recv()).await {
            Ok(Some(chunk)) => text.push_str(&chunk),
            _ => panic!("node 1's events did not show CL-A's boot on node 3: {text}"),
        }
    }

    // node 1 (followed) takes every node's events, the others their
    // boots only: node 2 took at most the boots of CL-A and CL-C, node 1
    // the connections, messages and boots of CL-A and CL-B too
    let received = "csms_cluster_events_received_total";
    let m1 = metrics(&n1).await;
    let m2 = metrics(&n2).await;
    assert_eq!(metric(&m1, &label("n1", following)), Some(1.0), "{m1}");
    assert_eq!(metric(&m2, &label("n2", following)), Some(0.0), "{m2}");
    let (r1, r2) = (
        metric(&m1, &label("n1", received)).unwrap(),
        metric(&m2, &label("n2", received)).unwrap(),
    );
    assert!(r2 <= 2.0, "node 2 took more than boots: {r2}\n{m2}");
    assert!(r1 >= 3.0 && r1 > r2, "node 1 took {r1}, node 2 {r2}");
    assert!(
        metric(&m2, &label("n2", "csms_cluster_events_published_total")).unwrap() >= 3.0,
        "{m2}"
    );

    // an API call on node 1 to the station on node 3: the station's answer
    let (s, v) = call_through(&n1, "CL-A", "ClearCache").await;
    assert_eq!((s, &v), (200, &json!({"status": "Accepted"})), "{v}");
    a.called("ClearCache").await;

    // CL-B moves from node 2 to node 1: node 2 closes its old socket
    let mut b_new = Station::boot(&n1, "CL-B").await;
    tokio::time::timeout(WAIT, b_old.closed)
        .await
        .expect("node 2 closed CL-B's old connection in time")
        .expect("closed");
    // and calls through any node reach the new connection
    let (s, v) = call_through(&n3, "CL-B", "ClearCache").await;
    assert_eq!(s, 200, "{v}");
    b_new.called("ClearCache").await;
    drop(b_old.out);

    // connected nowhere: 404
    let (s, v) = api(
        &n2,
        "POST",
        "/api/stations/CL-NOWHERE/ocpp/ClearCache",
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 404, "{v}");

    // a station whose node is live (its incarnation in the node bucket)
    // but does not answer: 503
    let client = async_nats::connect(nats.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let bucket = format!("evproto_csms_{cluster}_presence");
    let kv = js.get_key_value(&bucket).await.unwrap();
    let nodes = js
        .get_key_value(format!("evproto_csms_{cluster}_nodes"))
        .await
        .unwrap();
    nodes.put("gone", "inc-1".into()).await.unwrap();
    kv.put(
        "CL-GHOST",
        r#"{"node":"gone","incarnation":"inc-1","epoch":1,"version":"ocpp2.0.1"}"#.into(),
    )
    .await
    .unwrap();
    // entries of a node that is not live (no key: it died a lease ago), or
    // of an earlier incarnation of a live node: connected nowhere, 404
    kv.put(
        "CL-DEAD",
        r#"{"node":"dead","incarnation":"inc-1","epoch":1,"version":"ocpp2.0.1"}"#.into(),
    )
    .await
    .unwrap();
    kv.put(
        "CL-OLD",
        r#"{"node":"gone","incarnation":"inc-0","epoch":1,"version":"ocpp2.0.1"}"#.into(),
    )
    .await
    .unwrap();
    for id in ["CL-DEAD", "CL-OLD"] {
        let path = format!("/api/stations/{id}/ocpp/ClearCache");
        let (s, v) = api(&n1, "POST", &path, Some(json!({}))).await;
        assert_eq!(s, 404, "{id}: {v}");
    }
    let (s, v) = api(
        &n1,
        "POST",
        "/api/stations/CL-GHOST/ocpp/ClearCache",
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 503, "{v}");
    assert!(v.to_string().contains("cannot be reached"), "{v}");

    drop((n1, n2, n3));
    let _ = js.delete_key_value(&bucket).await;
    let _ = js
        .delete_key_value(format!("evproto_csms_{cluster}_nodes"))
        .await;
    drop_db(&db, &admin).await;
}

/// Presence is renewed per node, not per station: a killed node's stations
/// that reconnect nowhere stop counting once its liveness lapses (calls
/// 503 until then, 404 after), and the node holding the offline job
/// deletes their entries from the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_stations_stop_counting_and_are_swept() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let nats = nats_url();
    require_nats(&nats);
    let (db, admin) = postgres_db("dead").await;
    let cluster = cluster_name();
    let lease = ["--cluster-lease", "3"];
    let n1 = start_node(&cluster, "n1", &db, Some(&nats), &lease);
    let n2 = start_node(&cluster, "n2", &db, Some(&nats), &lease);
    let mut a = Station::boot(&n2, "CL-D1").await;
    let _b = Station::boot(&n2, "CL-D2").await;
    let (s, v) = call_through(&n1, "CL-D1", "ClearCache").await;
    assert_eq!(s, 200, "{v}");
    a.called("ClearCache").await;

    let client = async_nats::connect(nats.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let bucket = format!("evproto_csms_{cluster}_presence");
    let kv = js.get_key_value(&bucket).await.unwrap();
    let entry: Value = serde_json::from_slice(&kv.get("CL-D1").await.unwrap().unwrap()).unwrap();
    assert_eq!(entry["node"], "n2", "{entry}");
    assert!(
        entry["incarnation"].as_str().is_some_and(|i| !i.is_empty()),
        "{entry}"
    );
    // written once: no renewal of the station's entry while connected
    let revision = kv.entry("CL-D1").await.unwrap().unwrap().revision;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        kv.entry("CL-D1").await.unwrap().unwrap().revision,
        revision,
        "the entry was written again"
    );

    // kill -9 of node 2; its stations reconnect nowhere
    drop(n2);
    let killed = Instant::now();
    let path = "/api/stations/CL-D1/ocpp/ClearCache";
    let mut statuses = Vec::new();
    loop {
        let (s, v) = api(&n1, "POST", path, Some(json!({}))).await;
        if statuses.last() != Some(&s) {
            eprintln!("{s} after {:?}: {v}", killed.elapsed());
            statuses.push(s);
        }
        if s == 404 {
            break;
        }
        assert_eq!(s, 503, "{v}");
        assert!(killed.elapsed() < Duration::from_secs(15), "{statuses:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // its entries swept by the node holding the offline job (node 1 now)
    loop {
        let left = [
            kv.get("CL-D1").await.unwrap(),
            kv.get("CL-D2").await.unwrap(),
        ];
        if left.iter().all(Option::is_none) {
            eprintln!("swept after {:?}", killed.elapsed());
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "still in the registry: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    drop(n1);
    let _ = js.delete_key_value(&bucket).await;
    let _ = js
        .delete_key_value(format!("evproto_csms_{cluster}_nodes"))
        .await;
    let _ = js
        .delete_key_value(format!("evproto_csms_{cluster}_jobs"))
        .await;
    drop_db(&db, &admin).await;
}

#[test]
fn cluster_mode_refuses_sqlite() {
    let dir = std::env::temp_dir().join(format!("csms-cluster-sqlite-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_csms"))
        .args(["--cluster", "nats://127.0.0.1:4222", "--data-dir"])
        .arg(&dir)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cluster mode needs"), "{err}");
    assert!(err.contains("DATABASE_URL=postgres://"), "{err}");
}
