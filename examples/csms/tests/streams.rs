//! Periodic event streams end to end (OCPP 2.1, `csms::streams`), against
//! the simulator's 2.1 station that opens a stream of its power once
//! booted and sends a value every second:
//!
//! - the stream is accepted and kept, its values (NotifyPeriodicEventStream
//!   SENDs) stored as a time series and read back by the operator route;
//! - `GetPeriodicEventStream` shows the station's own list;
//! - `AdjustPeriodicEventStream` changes its interval, at the station and
//!   in the CSMS;
//! - the operator ends it by clearing its monitor (`ClearVariableMonitoring`:
//!   2.1 has no CSMS-initiated close); the station closes the stream
//!   (`ClosePeriodicEventStream`), kept closed; the station has none left;
//! - bad and unknown ids get 400 and 404 with a JSON reason;
//! - in cluster mode (two `csms` nodes on PostgreSQL and NATS) a station
//!   streaming to one node has its values stored as on a single node, read
//!   back through either node's API.

mod common;

use std::time::Duration;

use evproto_ocpp_proto::ProtocolVersion;
use evproto_sim::{model::Behaviour, SimConfig};
use serde_json::{json, Value};

const KEY: &str = "streams-test-api-key-0123456789abc";
const TOKEN: &str = "STREAM-TOKEN";

async fn api(port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    common::api(KEY, port, method, path, body).await
}

/// Station STR0's stream 1 as kept.
async fn stream(port: u16) -> Result<Value, String> {
    common::items(KEY, port, "/api/stations/STR0/event-streams")
        .await
        .into_iter()
        .find(|s| s["stream_id"] == 1)
        .ok_or_else(|| "no stream 1".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_streams_its_power_and_the_operator_adjusts_and_closes_the_stream() {
    streams_on("streams", None).await;
}

/// The same on PostgreSQL (`CSMS_TEST_POSTGRES`, else the local server):
/// migration 24 and the series' queries there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_on_postgres() {
    use sqlx::Connection;
    let admin = std::env::var("CSMS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("csms_streams_{}", std::process::id());
    let mut c = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} (set CSMS_TEST_POSTGRES): {e}"));
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::raw_sql(&sql).execute(&mut c).await.unwrap();
    }
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    streams_on("streams-pg", Some(url)).await;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut c)
        .await
        .unwrap();
}

async fn streams_on(name: &str, database_url: Option<String>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = common::temp_dir(name);
    let config = csms::config::Config {
        database_url,
        ..common::lab_config(&dir, KEY)
    };
    let csms = common::InProcess::start(config).await;
    let port = csms.started.admin_port;
    let (s, b) = api(
        port,
        "POST",
        "/api/tokens",
        Some(json!({"id_token": TOKEN, "status": "Accepted"})),
    )
    .await;
    assert!(s == 200 || s == 201, "token: {s} {b}");
    let sim = tokio::spawn(evproto_sim::run(
        SimConfig {
            url: format!("ws://127.0.0.1:{}/ocpp/", csms.started.ocpp_port),
            stations: 1,
            versions: vec![ProtocolVersion::V21],
            connectors: (1, 1),
            duration: Duration::from_secs(600),
            prefix: "STR".into(),
            password: None,
            behaviour: Behaviour {
                idle_ms: (0, 200),
                session_ms: (3_600_000, 3_600_000),
                max_power_w: 11_000.0,
                fault_per_s: 0.0,
                disconnect_per_s: 0.0,
                tokens: vec![TOKEN.into()],
                event_stream_s: Some(1),
                ..Behaviour::default()
            },
            ..SimConfig::default()
        },
        None,
    ));
    let wait = Duration::from_secs(60);

    // 1. Opened, accepted, kept with its parameters; values stored in order.
    let kept = common::until(wait, "the stream kept", || stream(port)).await;
    assert_eq!(
        (&kept["monitor_id"], &kept["interval_s"], &kept["closed_at"]),
        (&json!(1), &json!(1), &Value::Null),
        "{kept}"
    );
    let series = common::until(wait, "three values and one while charging", || async {
        let (s, b) = api(
            port,
            "GET",
            "/api/stations/STR0/event-streams/1/values",
            None,
        )
        .await;
        let values = b["values"].as_array().cloned().unwrap_or_default();
        let charging = values
            .iter()
            .any(|v| v["value"].as_str().and_then(|w| w.parse::<f64>().ok()) > Some(0.0));
        if s == 200 && values.len() >= 3 && charging {
            Ok(values)
        } else {
            Err(format!("{s} {b}"))
        }
    })
    .await;
    let times: Vec<&str> = series.iter().map(|v| v["at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    for v in &series {
        let w: f64 = v["value"].as_str().unwrap().parse().unwrap();
        assert!((0.0..=11_000.0).contains(&w), "{v}");
    }
    // from a time on, and at most a limit
    let since = times[1];
    let (s, b) = api(
        port,
        "GET",
        &format!("/api/stations/STR0/event-streams/1/values?since={since}&limit=1"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["values"].as_array().map(Vec::len), Some(1), "{b}");
    assert_eq!(b["values"][0]["at"].as_str(), Some(since));

    // 2. The station's own list.
    let (s, b) = api(port, "POST", "/api/stations/STR0/event-streams/query", None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["constantStreamData"][0]["id"], 1, "{b}");
    assert_eq!(b["constantStreamData"][0]["params"]["interval"], 1, "{b}");

    // 3. Adjusted: every 2 s, at the station and as kept.
    let (s, b) = api(
        port,
        "POST",
        "/api/stations/STR0/event-streams/1/adjust",
        Some(json!({"interval": 2, "values": 1})),
    )
    .await;
    assert_eq!((s, &b["status"]), (200, &json!("Accepted")), "{b}");
    assert_eq!(stream(port).await.unwrap()["interval_s"], 2);
    let (_, b) = api(port, "POST", "/api/stations/STR0/event-streams/query", None).await;
    assert_eq!(b["constantStreamData"][0]["params"]["interval"], 2, "{b}");

    // 4. Ended: its monitor cleared, the station closes it; kept closed
    // with its values, the station has none left.
    let (s, b) = api(port, "DELETE", "/api/stations/STR0/event-streams/1", None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["clearMonitoringResult"][0]["status"], "Accepted", "{b}");
    let closed = common::until(wait, "the stream closed by the station", || async {
        let s = stream(port).await?;
        if s["closed_at"].is_string() {
            Ok(s)
        } else {
            Err(format!("{s}"))
        }
    })
    .await;
    assert!(closed["samples"].as_i64().unwrap() >= 3, "{closed}");
    let (_, b) = api(port, "POST", "/api/stations/STR0/event-streams/query", None).await;
    assert!(b.get("constantStreamData").is_none(), "{b}");

    // 5. Bad input: clear reasons, no panics.
    for (method, path, body, status) in [
        ("DELETE", "/api/stations/STR0/event-streams/1", None, 404),
        ("DELETE", "/api/stations/STR0/event-streams/x", None, 400),
        (
            "POST",
            "/api/stations/STR0/event-streams/7/adjust",
            Some(json!({"interval": 5})),
            404,
        ),
        (
            "POST",
            "/api/stations/STR0/event-streams/1/adjust",
            Some(json!({"interval": -1})),
            400,
        ),
        (
            "GET",
            "/api/stations/STR0/event-streams/7/values",
            None,
            404,
        ),
        (
            "GET",
            "/api/stations/STR0/event-streams/1/values?limit=0",
            None,
            400,
        ),
        ("GET", "/api/stations/NOPE/event-streams", None, 404),
        ("POST", "/api/stations/NOPE/event-streams/query", None, 404),
    ] {
        let (s, b) = api(port, method, path, body).await;
        assert_eq!(s, status, "{method} {path}: {b}");
        assert!(b["error"].is_string(), "{method} {path}: {b}");
    }

    sim.abort();
    csms.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Cluster mode: two nodes on one PostgreSQL database and NATS
/// (`CSMS_TEST_NATS`), the 2.1 station on node A. Its stream and its
/// values (the SENDs node A receives) are stored in the shared store, as a
/// single node stores them, and node B's API reads the same series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_mode_a_stream_is_stored_and_read_from_any_node() {
    use common::cluster::{cluster_name, drop_db, nats_url, postgres_db, require_nats, start_node};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let nats = nats_url();
    require_nats(&nats);
    let (db, admin) = postgres_db("streams").await;
    let cluster = cluster_name();
    let a = start_node(&cluster, "a", &db, Some(&nats), &[]);
    let b = start_node(&cluster, "b", &db, Some(&nats), &[]);
    let station = common::streaming_station(a.ocpp, "CSTR", None);
    let sim = tokio::spawn(evproto_sim::run(station, None));
    let wait = Duration::from_secs(60);
    let values = |node: u16| async move {
        let key = common::cluster::KEY;
        let path = "/api/stations/CSTR0/event-streams/1/values";
        let (s, body) = common::api(key, node, "GET", path, None).await;
        match body["values"].as_array() {
            Some(v) if s == 200 && v.len() >= 3 => Ok(v.clone()),
            _ => Err(format!("{s} {body}")),
        }
    };
    // stored by node A, which holds the station ...
    let on_a = common::until(wait, "three values through node A", || values(a.admin)).await;
    // ... read through node B, which does not
    let on_b = common::until(wait, "the values through node B", || values(b.admin)).await;
    assert_eq!(on_a[..3], on_b[..3], "one series in the shared store");
    let at = |v: &Value| v["at"].as_str().unwrap().to_owned();
    assert!(
        on_b.windows(2).all(|w| at(&w[0]) < at(&w[1])),
        "in time order: {on_b:?}"
    );
    let streams = common::items(
        common::cluster::KEY,
        b.admin,
        "/api/stations/CSTR0/event-streams",
    )
    .await;
    assert_eq!(streams.len(), 1, "{streams:?}");
    assert_eq!(streams[0]["closed_at"], Value::Null);
    assert!(streams[0]["samples"].as_i64().unwrap() >= 3, "{streams:?}");
    sim.abort();
    drop((a, b));
    drop_db(&db, &admin).await;
}
