//! Faults of a cluster under load (issue 20): three `csms` processes on one
//! PostgreSQL database and a NATS server of the test's own, stations of the
//! simulator (`evproto_sim`, what `evproto simulate` runs) behind a TCP load
//! balancer in front of the nodes' OCPP ports, as in production.
//!
//! * `kill -9` of the node running the once-per-cluster jobs: its stations
//!   reconnect to the other nodes within 30 s, its jobs are taken over
//!   (`/metrics`: `csms_cluster_job_held`, `csms_cluster_jobs_taken_total`),
//!   and every session the stations ended is completed, priced and
//!   captured exactly once.
//! * NATS stopped and started again: the stations keep charging on every
//!   node, a call through one node to a station on another answers 503
//!   meanwhile (and the not-connected check too, not a 404), and everything
//!   resumes without restarting a node.
//!
//! Leases are 6 s here (`--cluster-lease 6`) so that takeovers are quick.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{
    api, cluster_name, drop_db, metric, metrics, postgres_db, start_node, Balancer, Node,
    PrivateNats,
};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_sim::{model::Behaviour, Report, SimConfig};
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// 0.30 per kWh with 20 % VAT, plus 1.00 per session.
const TARIFF: &str = r#"{"currency": "EUR", "elements": [{"price_components": [
    {"type": "ENERGY", "price": 0.30, "vat": 20.0, "step_size": 1},
    {"type": "FLAT", "price": 1.00, "step_size": 1}]}]}"#;
const WALLET: &str = "10000.00";
const TOKENS: [&str; 3] = ["CFTOK1", "CFTOK2", "CFTOK3"];
const LEASE: [&str; 2] = ["--cluster-lease", "6"];

/// Three nodes of a fresh cluster on `db` and `nats`, the tariff and the
/// drivers' wallets set up through node 1: (the cluster's name, the nodes).
async fn three_nodes(db: &str, nats: &str) -> (String, Vec<Option<Node>>) {
    let cluster = cluster_name();
    let nodes: Vec<Option<Node>> = ["n1", "n2", "n3"]
        .into_iter()
        .map(|n| Some(start_node(&cluster, n, db, Some(nats), &LEASE)))
        .collect();
    prepare(nodes[0].as_ref().unwrap()).await;
    (cluster, nodes)
}

/// The tariff and the drivers' tokens and wallets, through `n1`.
async fn prepare(n1: &Node) {
    let tariff: Value = serde_json::from_str(TARIFF).unwrap();
    let (s, b) = api(n1, "PUT", "/api/tariffs/default", Some(tariff)).await;
    assert!(s == 200 || s == 201, "tariff: {s} {b}");
    for t in TOKENS {
        // three drivers' cards shared by every station: each may be in
        // several transactions at once (else the second gets ConcurrentTx)
        let token = json!({"id_token": t, "allow_concurrent": true});
        let (s, b) = api(n1, "POST", "/api/tokens", Some(token)).await;
        assert!(s == 200 || s == 201, "token: {s} {b}");
        let balance = json!({"balance": WALLET.parse::<Decimal>().unwrap()});
        let (s, b) = api(n1, "PUT", &format!("/api/wallets/{t}"), Some(balance)).await;
        assert!(s == 200 || s == 201, "wallet: {s} {b}");
    }
}

/// The simulator's stations `{prefix}{i}` through the balancer on `port`:
/// drivers every few seconds, sessions of a few seconds, no faults or
/// drops of their own, for `seconds` after the last one started.
fn simulate(port: u16, prefix: &str, stations: usize, seconds: u64) -> SimConfig {
    SimConfig {
        url: format!("ws://127.0.0.1:{port}/ocpp/"),
        stations,
        versions: vec![ProtocolVersion::V201, ProtocolVersion::V16],
        connectors: (1, 2),
        duration: Duration::from_secs(seconds),
        ramp_per_s: 20.0,
        prefix: prefix.into(),
        behaviour: Behaviour {
            idle_ms: (1_000, 3_000),
            session_ms: (3_000, 8_000),
            meter_interval_ms: 1_000,
            fault_per_s: 0.0,
            disconnect_per_s: 0.0,
            tokens: TOKENS.iter().map(|t| (*t).to_owned()).collect(),
            ..Behaviour::default()
        },
        ..SimConfig::default()
    }
}

/// Stations connected to the live nodes, per node (each node's own count).
async fn connected(nodes: &[Option<Node>]) -> Vec<u64> {
    let mut out = Vec::new();
    for n in nodes.iter().flatten() {
        let m = metrics(n).await;
        out.push(metric(&m, "csms_stations_connected").unwrap_or(0.0) as u64);
    }
    out
}

/// The simulator's stations `{prefix}{i}` ([`simulate`]) through a
/// balancer in front of the nodes, once all `n` are connected.
async fn load(
    nodes: &[Option<Node>],
    prefix: &str,
    n: usize,
    seconds: u64,
) -> (Balancer, tokio::task::JoinHandle<Result<Report, String>>) {
    let ports: Vec<u16> = nodes.iter().flatten().map(|n| n.ocpp).collect();
    let balancer = Balancer::start(ports).await;
    let config = simulate(balancer.port, prefix, n, seconds);
    let sim = tokio::spawn(evproto_sim::run(config, None));
    let t = Instant::now();
    while connected(nodes).await.iter().sum::<u64>() < n as u64 {
        let now = connected(nodes).await;
        assert!(t.elapsed() < Duration::from_secs(60), "{now:?} of {n}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (balancer, sim)
}

/// Waits until `node`'s cluster view counts `nodes` nodes (30 s at most).
async fn cluster_of(node: &Node, nodes: u32) {
    let t = Instant::now();
    loop {
        let m = metrics(node).await;
        if metric(&m, "csms_cluster_nodes") == Some(f64::from(nodes)) {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{m}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The simulator's report, every one of its `n` stations booted.
async fn finished(sim: tokio::task::JoinHandle<Result<Report, String>>, n: usize) -> Report {
    let report = sim.await.unwrap().unwrap();
    eprintln!("simulator: {}", report.to_json());
    assert_eq!(report.booted, n as u64, "{}", report.to_json());
    report
}

/// Which live node runs `job` (by its index), once exactly one of them
/// says so; panics after `within`.
async fn runner_of(nodes: &[Option<Node>], job: &str, within: Duration) -> usize {
    let t = Instant::now();
    loop {
        let mut held = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            let Some(n) = n else { continue };
            let m = metrics(n).await;
            let line = format!("csms_cluster_job_held{{node=\"n{}\",job=\"{job}\"}}", i + 1);
            if metric(&m, &line) == Some(1.0) {
                held.push(i);
            }
        }
        if let [one] = held[..] {
            return one;
        }
        assert!(
            t.elapsed() < within,
            "job {job}: run by nodes {held:?}, not exactly one"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every session of the cluster, through `node`.
async fn sessions(node: &Node) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/sessions?limit=500&cursor={c}"),
            None => "/api/sessions?limit=500".to_owned(),
        };
        let (s, page) = api(node, "GET", &path, None).await;
        assert_eq!(s, 200, "{page}");
        all.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return all,
        }
    }
}

fn decimal(v: &Value) -> Decimal {
    v.as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string())
        .parse()
        .unwrap_or_else(|e| panic!("{v}: {e}"))
}

/// Every session the simulator ended is in the cluster once: completed,
/// with a CDR, captured once, each wallet down by exactly the captured
/// amounts; the energy adds up to the simulator's.
async fn assert_settled_once(node: &Node, report: &Report) {
    assert_eq!(report.queued_at_end, 0, "{:?}", report.to_json());
    let t = Instant::now();
    let list = loop {
        let list = sessions(node).await;
        let completed = list.iter().filter(|s| s["status"] == "Completed").count();
        let mut captured = 0;
        for x in &list {
            let id = x["id"].as_str().unwrap_or_default();
            let (st, p) = api(node, "GET", &format!("/api/sessions/{id}/payment"), None).await;
            if st == 200 && p["status"] == "Captured" {
                captured += 1;
            }
        }
        if completed as u64 >= report.sessions_completed && captured == list.len() {
            break list;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "{} sessions, {completed} completed, {captured} captured; the simulator ended {}",
            list.len(),
            report.sessions_completed
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(
        list.len() as u64,
        report.sessions_completed,
        "one session per ended transaction"
    );
    let mut paid: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut energy = Decimal::ZERO;
    for x in &list {
        assert_eq!(x["status"], "Completed", "{x}");
        let id = x["id"].as_str().unwrap();
        energy += decimal(&x["energy_wh"]);
        let (st, cdr) = api(node, "GET", &format!("/api/sessions/{id}/cdr"), None).await;
        assert_eq!(st, 200, "{id}: CDR {cdr}");
        let total = &cdr["total_cost"];
        let total = decimal(if total["incl_vat"].is_null() {
            &total["excl_vat"]
        } else {
            &total["incl_vat"]
        });
        let (_, p) = api(node, "GET", &format!("/api/sessions/{id}/payment"), None).await;
        let charged = decimal(&p["receipt"]["charged"]);
        assert_eq!(charged, total.round_dp(2), "{id}: {p} {cdr}");
        let token = x["id_token"].as_str().unwrap_or_default().to_owned();
        *paid.entry(token).or_default() += charged;
    }
    for (token, charged) in paid {
        let (_, w) = api(node, "GET", &format!("/api/wallets/{token}"), None).await;
        let balance = decimal(&w["balance"]);
        assert_eq!(
            balance,
            WALLET.parse::<Decimal>().unwrap() - charged,
            "{token} paid each session once: {w}"
        );
    }
    let simulated = Decimal::try_from(report.energy_kwh * 1000.0).unwrap();
    let slack = Decimal::from(list.len() + 1);
    assert!(
        (energy - simulated).abs() <= slack,
        "energy: {energy} Wh in the cluster, {simulated} Wh simulated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_under_load_moves_its_stations_and_jobs_and_loses_nothing() {
    let nats = PrivateNats::start();
    let (db, admin) = postgres_db("kill").await;
    let (_, mut nodes) = three_nodes(&db, &nats.url()).await;
    // each job on exactly one node; the outbox's runner is killed
    let victim = runner_of(&nodes, "outbox", Duration::from_secs(30)).await;
    let offline_runner = runner_of(&nodes, "offline", Duration::from_secs(30)).await;
    let n = 24;
    let (balancer, sim) = load(&nodes, "CFK", n, 45).await;
    // spread over the three nodes
    let before = connected(&nodes).await;
    assert!(before.iter().all(|c| *c > 0), "spread: {before:?}");
    tokio::time::sleep(Duration::from_secs(8)).await;

    // kill -9 of the node running the outbox (and maybe more)
    let on_victim = before[victim];
    drop(nodes[victim].take());
    let killed = Instant::now();
    eprintln!("killed n{} with {on_victim} stations", victim + 1);
    // its stations are on the others within 30 s
    loop {
        let now = connected(&nodes).await;
        if now.iter().sum::<u64>() == n as u64 {
            eprintln!(
                "all {n} stations back after {:?}: {now:?}",
                killed.elapsed()
            );
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "stations connected after 30 s: {now:?} of {n}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // its jobs are taken over by one of the others
    let outbox = runner_of(&nodes, "outbox", Duration::from_secs(30)).await;
    let offline = runner_of(&nodes, "offline", Duration::from_secs(30)).await;
    assert_ne!(outbox, victim);
    if offline_runner == victim {
        assert_ne!(offline, victim);
    }
    let m = metrics(nodes[outbox].as_ref().unwrap()).await;
    let taken = format!("csms_cluster_jobs_taken_total{{node=\"n{}\"}}", outbox + 1);
    assert!(metric(&m, &taken).unwrap_or(0.0) >= 1.0, "{m}");
    // the cluster view forgets the dead node once a lease passed unheard
    cluster_of(nodes[outbox].as_ref().unwrap(), 2).await;
    let report = finished(sim, n).await;
    let live = nodes.iter().flatten().next().unwrap();
    assert_settled_once(live, &report).await;
    drop(nodes);
    drop(balancer);
    drop_db(&db, &admin).await;
}

/// A station `{prefix}{i}` connected to node `owner` of `cluster` (by the
/// presence registry).
async fn station_on(nats: &PrivateNats, cluster: &str, owner: &str, prefix: &str) -> String {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let kv = js
        .get_key_value(format!("evproto_csms_{cluster}_presence"))
        .await
        .unwrap();
    for i in 0..100 {
        let id = format!("{prefix}{i}");
        if let Ok(Some(v)) = kv.get(&id).await {
            let e: Value = serde_json::from_slice(&v).unwrap();
            if e["node"] == owner {
                return id;
            }
        }
    }
    panic!("no station on {owner}");
}

/// `POST /api/stations/{id}/ocpp/TriggerMessage` (a Heartbeat) through
/// `node`: the status and body.
async fn trigger(node: &Node, station: &str) -> (u16, Value) {
    let path = format!("/api/stations/{station}/ocpp/TriggerMessage");
    api(
        node,
        "POST",
        &path,
        Some(json!({"requestedMessage": "Heartbeat"})),
    )
    .await
}

/// Calls until the status is `want` (panics after `within`).
async fn trigger_until(node: &Node, station: &str, want: u16, within: Duration) -> Value {
    let t = Instant::now();
    loop {
        let (s, v) = trigger(node, station).await;
        if s == want {
            return v;
        }
        assert!(t.elapsed() < within, "{station}: {s} {v}, not {want}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn completed(list: &[Value]) -> usize {
    list.iter().filter(|s| s["status"] == "Completed").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stopped_and_started_under_load_stations_keep_charging_and_calls_answer_503() {
    let mut nats = PrivateNats::start();
    let (db, admin) = postgres_db("nats").await;
    let (cluster, nodes) = three_nodes(&db, &nats.url()).await;
    let n = 18;
    let (balancer, sim) = load(&nodes, "CFN", n, 60).await;
    let (n1, n3) = (nodes[0].as_ref().unwrap(), nodes[2].as_ref().unwrap());
    // a station on node 3, called through node 1
    let station = station_on(&nats, &cluster, "n3", "CFN").await;
    let v = trigger_until(n1, &station, 200, Duration::from_secs(15)).await;
    assert_eq!(v["status"], "Accepted", "{v}");
    tokio::time::sleep(Duration::from_secs(5)).await;

    nats.down();
    let down = Instant::now();
    let at_outage = completed(&sessions(n1).await);
    // cross-node calls: 503 (the registry or the owner unreachable), never 404
    let v = trigger_until(n1, &station, 503, Duration::from_secs(30)).await;
    eprintln!("503 after {:?}: {v}", down.elapsed());
    let (s, v) = trigger(n1, &station).await;
    assert_eq!(s, 503, "{v}");
    // stations keep charging: sessions end and are completed meanwhile
    let t = Instant::now();
    loop {
        let now = completed(&sessions(n1).await);
        if now >= at_outage + 3 {
            eprintln!("{} sessions completed during the outage", now - at_outage);
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{now} completed, {at_outage} at the outage"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // an outage of 10 s at least: the jobs' holders give them up meanwhile
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down.elapsed())).await;
    // node 3's own stations are still called on node 3
    let (s, v) = trigger(n3, &station).await;
    assert_eq!((s, &v["status"]), (200, &json!("Accepted")), "{v}");

    nats.up();
    eprintln!("NATS down for {:?}", down.elapsed());
    // everything resumes without restarting a node: calls across nodes,
    // the jobs, the cluster view
    let v = trigger_until(n1, &station, 200, Duration::from_secs(60)).await;
    assert_eq!(v["status"], "Accepted", "{v}");
    runner_of(&nodes, "outbox", Duration::from_secs(30)).await;
    runner_of(&nodes, "offline", Duration::from_secs(30)).await;
    cluster_of(n1, 3).await;
    let report = finished(sim, n).await;
    assert_settled_once(n1, &report).await;
    drop(nodes);
    drop(balancer);
    drop(nats);
    drop_db(&db, &admin).await;
}

/// Two runners of the outbox at once (as when a lease moves while its old
/// holder still drains): sessions ended and left unbilled (their CDRs and
/// captures undone, their bill entries pending, as after a node died right
/// after committing their ends) are billed and captured once each. Two
/// single nodes on one database started together both run the outbox from
/// their start and every 5 s: the same entries, at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_run_by_two_nodes_at_once_bills_and_captures_each_session_once() {
    let (db, admin) = postgres_db("outbox").await;
    let cluster = cluster_name();
    let a = start_node(&cluster, "a", &db, None, &[]);
    prepare(&a).await;
    let report = evproto_sim::run(simulate(a.ocpp, "CFO", 8, 15), None)
        .await
        .unwrap();
    assert_eq!(report.booted, 8, "{}", report.to_json());
    assert_settled_once(&a, &report).await;
    drop(a);
    // every session's billing undone, its bill entry pending again
    let pool = sqlx::AnyPool::connect(&db).await.unwrap();
    for sql in [
        "DELETE FROM cdrs",
        "UPDATE payments SET status = 'Held', receipt = NULL",
        "UPDATE outbox SET done_at = NULL, next_attempt_at = NULL WHERE kind = 'bill'",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    for t in TOKENS {
        // the wallet as it was with every hold taken and nothing captured
        let rows = sqlx::query("SELECT held FROM payments WHERE id_token = $1")
            .bind(t)
            .fetch_all(&pool)
            .await
            .unwrap();
        let held: Decimal = rows
            .iter()
            .map(|r| {
                sqlx::Row::get::<String, _>(r, 0)
                    .parse::<Decimal>()
                    .unwrap()
            })
            .sum();
        let balance = WALLET.parse::<Decimal>().unwrap() - held;
        sqlx::query("UPDATE wallets SET balance = $1 WHERE id_token = $2")
            .bind(balance.round_dp(2).to_string())
            .bind(t)
            .execute(&pool)
            .await
            .unwrap();
    }
    let pending = sqlx::query("SELECT id FROM outbox WHERE done_at IS NULL")
        .fetch_all(&pool)
        .await
        .unwrap()
        .len();
    assert_eq!(pending as u64, report.sessions_completed);
    // two nodes started together: both drain the same entries
    let (b, c) = std::thread::scope(|s| {
        let b = s.spawn(|| start_node(&cluster, "b", &db, None, &[]));
        let c = s.spawn(|| start_node(&cluster, "c", &db, None, &[]));
        (b.join().unwrap(), c.join().unwrap())
    });
    assert_settled_once(&b, &report).await;
    assert_settled_once(&c, &report).await;
    let left = sqlx::query("SELECT id FROM outbox WHERE done_at IS NULL")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(left.is_empty(), "{} entries pending", left.len());
    pool.close().await;
    drop((b, c));
    drop_db(&db, &admin).await;
}
