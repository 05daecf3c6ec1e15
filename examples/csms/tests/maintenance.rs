//! Predictive maintenance end to end (`csms::maintenance` on
//! `evproto_csms_core::health`), against the simulator:
//!
//! - a fleet of stations in good order (one connector each) charges,
//!   reporting `Voltage` samples (phase L1-N) with their meter values
//!   (2.1 `TransactionEvent` Updated, 1.6 `MeterValues`; a 1.6 station
//!   also reports its connector's `Temperature`, which 2.x has no
//!   measurand for);
//! - two worn stations run among them: as their connectors wear out
//!   their supply sags, their connector heats up (1.6) and their watchdog
//!   reboots them (their boots say `Watchdog`; 1.6 `PowerUp` after a crash
//!   counts the same), then they fail for good (Faulted, never cleared);
//! - the same in OCPP 2.1 and in 1.6;
//! - the `maintenance` alert of each worn station must come before its
//!   failure, and none is raised for the stations in good order;
//! - `GET /api/maintenance` ranks the worn connectors first, at risk, with
//!   their reasons in words.
//!
//! The times compared are those the live event stream (`/api/events`)
//! delivered the alert and the failure's status report at: both from the
//! same CSMS, read by one follower.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use csms::events::LiveEvent;
use evproto_ocpp_proto::ProtocolVersion;
use evproto_sim::model::{Aging, Behaviour};
use evproto_sim::SimConfig;

const KEY: &str = "maintenance-test-api-key-0123456789";
/// The drivers' token.
const TOKEN: &str = "MAINT-TOKEN";

/// Drivers all the time: short pauses, long sessions, a meter value (with
/// its temperature and voltage) every tick of the simulator (1 s); no
/// random faults or network drops. `share`: the connectors that wear out,
/// failing after `life_ms`.
fn behaviour(share: f64, life_ms: (u64, u64)) -> Behaviour {
    Behaviour {
        idle_ms: (500, 1_500),
        session_ms: (40_000, 80_000),
        meter_interval_ms: 500,
        fault_per_s: 0.0,
        fault_ms: (2_000, 3_000),
        disconnect_per_s: 0.0,
        tokens: vec![TOKEN.into()],
        aging: Some(Aging {
            share,
            life_ms,
            // a watchdog reboot every 7 s at the end of life (× w²)
            crash_per_s: 0.15,
            // 40 V lost at the end of life (× w²)
            sag_v: 40.0,
            start_failure: 0.3,
            ..Aging::default()
        }),
        ..Behaviour::default()
    }
}

fn sim(
    (port, version): (u16, ProtocolVersion),
    prefix: &str,
    stations: usize,
    seed: u64,
    b: Behaviour,
) -> SimConfig {
    SimConfig {
        url: format!("ws://127.0.0.1:{port}/ocpp/"),
        stations,
        versions: vec![version],
        connectors: (1, 1),
        duration: Duration::from_secs(600),
        prefix: prefix.into(),
        password: None,
        seed,
        behaviour: b,
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worn_21_connectors_are_alerted_before_they_fail() {
    worn_connectors_end_to_end(ProtocolVersion::V21).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worn_16_connectors_are_alerted_before_they_fail() {
    worn_connectors_end_to_end(ProtocolVersion::V16).await;
}

async fn worn_connectors_end_to_end(version: ProtocolVersion) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = common::temp_dir(&format!("maintenance-{version:?}"));
    let csms = common::InProcess::start(common::lab_config(&dir, KEY)).await;
    let (port, ocpp) = (csms.started.admin_port, csms.started.ocpp_port);
    let mut events = common::live_events(KEY, port).await;
    // every station's driver uses the one card (1.6 refuses a card already
    // in a transaction unless it may be used concurrently)
    let token =
        serde_json::json!({"id_token": TOKEN, "status": "Accepted", "allow_concurrent": true});
    let (s, b) = common::api(KEY, port, "POST", "/api/tokens", Some(token)).await;
    assert!(s == 200 || s == 201, "token: {s} {b}");

    let healthy = tokio::spawn(evproto_sim::run(
        sim((ocpp, version), "OK", 12, 7, behaviour(0.0, (0, 0))),
        None,
    ));
    // every connector of these wears out, failing 80 to 95 s after its start
    let worn = tokio::spawn(evproto_sim::run(
        sim(
            (ocpp, version),
            "WORN",
            2,
            11,
            behaviour(1.0, (80_000, 95_000)),
        ),
        None,
    ));

    // follow the live events until both worn stations have been Faulted
    // for 10 s (the failure is for good: nothing clears it)
    let start = Instant::now();
    let mut alerted: BTreeMap<String, Instant> = BTreeMap::new();
    let mut faulted: BTreeMap<String, Instant> = BTreeMap::new();
    let mut last_status: BTreeMap<String, String> = BTreeMap::new();
    let mut boots: BTreeMap<String, usize> = BTreeMap::new();
    let failed_for_good = |last: &BTreeMap<String, String>, faulted: &BTreeMap<String, Instant>| {
        ["WORN0", "WORN1"].iter().all(|s| {
            last.get(*s).is_some_and(|st| st == "Faulted")
                && faulted
                    .get(*s)
                    .is_some_and(|t| t.elapsed() > Duration::from_secs(10))
        })
    };
    while !failed_for_good(&last_status, &faulted) {
        assert!(
            start.elapsed() < Duration::from_secs(150),
            "the worn stations did not fail in time: {last_status:?}"
        );
        let Ok(Some((at, e))) = tokio::time::timeout(Duration::from_secs(1), events.recv()).await
        else {
            continue;
        };
        match e {
            LiveEvent::Alert { station, kind, .. } if kind == "maintenance" => {
                alerted.entry(station).or_insert(at);
            }
            LiveEvent::Status {
                station, status, ..
            } => {
                if status == "Faulted" && last_status.get(&station) != Some(&status) {
                    faulted.insert(station.clone(), at);
                }
                last_status.insert(station, status);
            }
            LiveEvent::Boot { station, .. } => *boots.entry(station).or_default() += 1,
            _ => {}
        }
    }
    println!("alerts {alerted:?}; last faults {faulted:?}; boots {boots:?}");
    let ranking = common::items(KEY, port, "/api/maintenance?limit=4").await;
    println!("ranking: {}", serde_json::Value::Array(ranking));

    // each worn station was alerted ahead of its failure ...
    for s in ["WORN0", "WORN1"] {
        let alert = alerted
            .get(s)
            .unwrap_or_else(|| panic!("{s} failed without a maintenance alert"));
        let failure = faulted[s];
        assert!(
            *alert < failure,
            "{s}: alerted {:?} after its failure",
            alert.duration_since(failure)
        );
        println!(
            "{s}: alerted {:.1} s before it failed",
            (failure - *alert).as_secs_f64()
        );
    }
    // ... and no station in good order was
    let false_alarms: Vec<&String> = alerted.keys().filter(|s| s.starts_with("OK")).collect();
    assert!(false_alarms.is_empty(), "false alarms: {false_alarms:?}");

    // the ranking: the worn connectors first, at risk, with their reasons
    let items = common::items(KEY, port, "/api/maintenance?limit=5").await;
    let top: Vec<&str> = items[..2]
        .iter()
        .map(|c| c["station"].as_str().unwrap())
        .collect();
    assert!(
        top.contains(&"WORN0") && top.contains(&"WORN1"),
        "{items:?}"
    );
    for c in &items[..2] {
        assert_eq!(c["state"], "at_risk", "{c}");
        let reasons = c["reasons"].as_array().unwrap();
        assert!(!reasons.is_empty(), "{c}");
    }
    // their voltage, their reboots (and in 1.6 their temperature) told
    for c in &items[..2] {
        let words = c["reasons"].to_string();
        assert!(
            words.contains("voltage") || words.contains("reboots") || words.contains("temperature"),
            "{c}"
        );
    }

    healthy.abort();
    worn.abort();
    csms.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
