//! Smart charging that runs by itself, end to end with the simulator in
//! OCPP 2.0.1 and 1.6: the operator changes the site's limits while the
//! CSMS runs (`PUT /api/site/limits`, checked, kept across a restart); the
//! change reaches every station as a `TxProfile` per transaction (fleet
//! sessions served first, the per-phase current counted), the stations
//! then draw no more than their shares (read from their meter values), and
//! each station's `GetCompositeSchedule` answers what the CSMS installed;
//! planned and delivered power are recorded for the console. A car's
//! phases and maximum come from what it reports: a single-phase car (its
//! current on L1 alone, `AC_single_phase` in its needs) is counted on one
//! phase and capped at what it asked for.

mod common;

use std::time::Duration;

use csms::events::LiveEvent;
use evproto_ocpp_proto::ProtocolVersion;
use evproto_sim::{model::Behaviour, SimConfig};
use serde_json::{json, Value};

const KEY: &str = "smart-test-key-0123456789";
const FLEET: &str = "FLEETCARD1";
const PUBLIC: &str = "PUBCARD1";

/// The site limits route: 404 before any limit, typed 4xx for bad input,
/// the new value in force, and still there after a restart (over the
/// configuration's initial value).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_limits_are_checked_set_and_kept_across_a_restart() {
    let dir = common::temp_dir("smart-limits");
    let csms = common::InProcess::start(common::lab_config(&dir, KEY)).await;
    let admin = csms.started.admin_port;
    let (status, body) = common::api(KEY, admin, "GET", "/api/site/limits", None).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string(), "{body}");
    for (bad, field) in [
        (json!({"limit_w": 0}), Some("limit_w")),
        (
            json!({"limit_w": 10_000, "phase_limit_a": 0}),
            Some("phase_limit_a"),
        ),
        (
            json!({"limit_w": 10_000, "evse_max_w": 0}),
            Some("evse_max_w"),
        ),
        (json!({"limit_w": -5}), None),
        (json!({"limit_w": "lots"}), None),
        (json!({"phase_limit_a": 32}), None),
        (json!({"limit_w": 10_000, "surprise": 1}), None),
    ] {
        let (status, body) =
            common::api(KEY, admin, "PUT", "/api/site/limits", Some(bad.clone())).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(body["error"].is_string(), "{bad}: {body}");
        if let Some(f) = field {
            assert_eq!(body["field"], f, "{body}");
        }
    }
    // not JSON at all
    let raw = reqwest::Client::new()
        .put(format!("http://127.0.0.1:{admin}/api/site/limits"))
        .header("Authorization", format!("Bearer {KEY}"))
        .header("Content-Type", "application/json")
        .body("{limit_w")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    let set = json!({"limit_w": 40_000, "phase_limit_a": 63});
    let (status, body) =
        common::api(KEY, admin, "PUT", "/api/site/limits", Some(set.clone())).await;
    assert_eq!((status, &body), (200, &set));
    assert_eq!(
        common::api(KEY, admin, "GET", "/api/site/limits", None)
            .await
            .1,
        set
    );
    csms.stop().await;
    // the configuration's value is the initial one only
    let mut config = common::lab_config(&dir, KEY);
    config.site_limit_w = Some(11_000);
    let csms = common::InProcess::start(config).await;
    let admin = csms.started.admin_port;
    assert_eq!(
        common::api(KEY, admin, "GET", "/api/site/limits", None)
            .await
            .1,
        set
    );
    csms.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_change_reaches_every_201_station_fleet_first_within_the_phase_limit() {
    limit_change_end_to_end(ProtocolVersion::V201, "s201").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_change_reaches_every_16_station_fleet_first_within_the_phase_limit() {
    limit_change_end_to_end(ProtocolVersion::V16, "s16").await;
}

fn sim(
    port: u16,
    version: ProtocolVersion,
    prefix: &str,
    stations: usize,
    token: &str,
) -> SimConfig {
    SimConfig {
        url: format!("ws://127.0.0.1:{port}/ocpp/"),
        stations,
        versions: vec![version],
        connectors: (1, 1),
        duration: Duration::from_secs(300),
        prefix: prefix.into(),
        password: None,
        behaviour: Behaviour {
            idle_ms: (0, 200),
            session_ms: (600_000, 600_000),
            meter_interval_ms: 500,
            max_power_w: 11_000.0,
            fault_per_s: 0.0,
            disconnect_per_s: 0.0,
            tokens: vec![token.into()],
            ..Behaviour::default()
        },
        ..SimConfig::default()
    }
}

/// The active sessions: (id, station).
async fn active(admin: u16) -> Vec<(String, String)> {
    common::items(KEY, admin, "/api/sessions?status=Active&limit=100")
        .await
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap_or_default().to_owned(),
                s["station_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The active sessions once there are `n`, and the id of the one on the
/// station named `prefix…`.
async fn sessions_of(admin: u16, n: usize, prefix: &str) -> (Vec<(String, String)>, String) {
    let sessions = common::until(Duration::from_secs(60), "the sessions", || async {
        let a = active(admin).await;
        if a.len() == n {
            Ok(a)
        } else {
            Err(format!("{a:?}"))
        }
    })
    .await;
    let one = sessions
        .iter()
        .find(|(_, st)| st.starts_with(prefix))
        .map(|(id, _)| id.clone())
        .unwrap_or_else(|| panic!("no session on {prefix}: {sessions:?}"));
    (sessions, one)
}

/// A session's latest `Power.Active.Import` reading taken after `after`, W.
async fn power_after(
    admin: u16,
    session: &str,
    after: chrono::DateTime<chrono::Utc>,
) -> Option<f64> {
    reading_after(admin, session, "Power.Active.Import", after).await
}

/// A session's latest reading of `measurand` (`.L1` etc. for a line)
/// taken after `after`.
async fn reading_after(
    admin: u16,
    session: &str,
    measurand: &str,
    after: chrono::DateTime<chrono::Utc>,
) -> Option<f64> {
    let (_, one) = common::api(KEY, admin, "GET", &format!("/api/sessions/{session}"), None).await;
    one["meter_values"]
        .as_array()?
        .iter()
        .filter(|m| m["measurand"] == measurand)
        .filter(|m| {
            m["timestamp"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t > after)
        })
        .filter_map(|m| m["value"].as_str()?.parse::<f64>().ok())
        .next_back()
}

async fn limit_change_end_to_end(version: ProtocolVersion, name: &str) {
    let dir = common::temp_dir(&format!("smart-{name}"));
    let mut config = common::lab_config(&dir, KEY);
    // loose at first: every session gets what it can take
    config.site_limit_w = Some(100_000);
    let csms = common::InProcess::start(config).await;
    let (admin, ocpp) = (csms.started.admin_port, csms.started.ocpp_port);
    for token in [FLEET, PUBLIC] {
        let t = json!({"id_token": token, "type": "ISO14443", "status": "Accepted", "allow_concurrent": true});
        let (status, body) = common::api(KEY, admin, "POST", "/api/tokens", Some(t)).await;
        assert!(status < 300, "{body}");
    }
    let (status, fleet) = common::api(
        KEY,
        admin,
        "POST",
        "/api/fleets",
        Some(json!({"name": "Depot", "email": "depot@example.com"})),
    )
    .await;
    assert_eq!(status, 201, "{fleet}");
    let fleet_id = fleet["id"].as_str().unwrap();
    let (status, body) = common::api(
        KEY,
        admin,
        "PUT",
        &format!("/api/fleets/{fleet_id}/cards/{FLEET}"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let mut live = common::live_events(KEY, admin).await;

    // one fleet station and two public ones, 11 kW each, charging at once
    let fleet_prefix = format!("{}F", name.to_uppercase());
    let public_prefix = format!("{}P", name.to_uppercase());
    let sims = [
        tokio::spawn(evproto_sim::run(
            sim(ocpp, version, &fleet_prefix, 1, FLEET),
            None,
        )),
        tokio::spawn(evproto_sim::run(
            sim(ocpp, version, &public_prefix, 2, PUBLIC),
            None,
        )),
    ];
    let (sessions, fleet_session) = sessions_of(admin, 3, &fleet_prefix).await;

    // the operator lowers the site: 20 kW, 25 A per phase, 11 kW per EVSE
    let limits = json!({"limit_w": 20_000, "phase_limit_a": 25, "evse_max_w": 11_000});
    let changed = chrono::Utc::now();
    let (status, body) = common::api(KEY, admin, "PUT", "/api/site/limits", Some(limits)).await;
    assert_eq!(status, 200, "{body}");
    // the fleet car first: its 11 kW (15.9 A of the 25 A on each phase);
    // the two others share what the phases have left, (25 A × 690 V −
    // 11 000 W) / 2 = 3125 W each (the 20 kW would allow 4500)
    let mut shares = std::collections::HashMap::new();
    let t = std::time::Instant::now();
    while shares.len() < 3 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "shares sent: {shares:?}"
        );
        if let Ok(Some((
            _,
            LiveEvent::SmartCharging {
                sent, site_limit_w, ..
            },
        ))) = tokio::time::timeout(Duration::from_secs(1), live.recv()).await
        {
            if site_limit_w != 20_000 {
                continue;
            }
            for s in sent {
                assert_eq!(s.status, "Accepted", "{s:?}");
                shares.insert(s.session.clone(), (s.station.clone(), s.limit_w));
            }
        }
    }
    for (id, (_, w)) in &shares {
        let want = if *id == fleet_session { 11_000 } else { 3_125 };
        assert_eq!(*w, want, "{id}: {shares:?}");
    }

    // each station's composite schedule is what the CSMS installed
    for (station, w) in shares.values() {
        let (evse_key, path) = match version {
            ProtocolVersion::V16 => (
                "connectorId",
                "/chargingSchedule/chargingSchedulePeriod/0/limit",
            ),
            _ => ("evseId", "/schedule/chargingSchedulePeriod/0/limit"),
        };
        let (status, answer) = common::api(
            KEY,
            admin,
            "POST",
            &format!("/api/stations/{station}/ocpp/GetCompositeSchedule"),
            Some(json!({evse_key: 1, "duration": 300, "chargingRateUnit": "W"})),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["status"], "Accepted", "{answer}");
        assert_eq!(
            answer.pointer(path).and_then(Value::as_f64),
            Some(f64::from(*w)),
            "{answer}"
        );
    }
    let alerts = common::items(KEY, admin, "/api/alerts?status=open").await;
    assert!(
        alerts.iter().all(|a| a["kind"] != "composite_schedule"),
        "{alerts:?}"
    );

    // the stations follow: each session within its share, the site within
    // its limits, per phase from the meter readings (three-phase cars)
    let readings = common::until(
        Duration::from_secs(30),
        "readings after the change",
        || async {
            let mut out = Vec::new();
            for (id, _) in &sessions {
                match power_after(admin, id, changed + chrono::Duration::seconds(1)).await {
                    Some(w) => out.push((id.clone(), w)),
                    None => return Err(format!("no reading of {id} yet: {out:?}")),
                }
            }
            Ok(out)
        },
    )
    .await;
    let total: f64 = readings.iter().map(|r| r.1).sum();
    for (id, w) in &readings {
        let share = f64::from(shares[id].1);
        assert!(*w <= share + 0.1, "{id} draws {w} W over its {share} W");
        assert!(
            *w >= share - 1.0,
            "{id} draws {w} W, its share is {share} W"
        );
    }
    assert!(total <= 20_000.0, "{readings:?}");
    assert!(
        total / (230.0 * 3.0) <= 25.0 + 1e-6,
        "{readings:?}: above 25 A per phase"
    );

    // planned vs delivered, as the console plots them
    let power = common::until(Duration::from_secs(30), "site power recorded", || async {
        let (_, p) = common::api(KEY, admin, "GET", "/api/site/power?minutes=10", None).await;
        let last_planned = p["items"]
            .as_array()
            .and_then(|i| i.last())
            .and_then(|s| s["planned_w"].as_str()?.parse::<f64>().ok());
        match last_planned {
            Some(w) if (w - 17_250.0).abs() < 0.01 && p["delivered_w"].is_string() => Ok(p),
            _ => Err(p.to_string()),
        }
    })
    .await;
    assert_eq!(power["limits"]["limit_w"], 20_000, "{power}");

    for s in sims {
        s.abort();
    }
    csms.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A single-phase car and a three-phase one under a per-phase limit of
/// 25 A, in 2.0.1: the single-phase car is counted on one phase at the
/// EV's maximum (15 A × 230 V = 3450 W, from its `NotifyEVChargingNeeds`),
/// the three-phase car gets what its phases have left ((25 A − 15 A) ×
/// 690 V = 6900 W, under its own 15 A × 690 V = 10 350 W). Counted as
/// three-phase, both would get 8625 W and L1 would carry 37.5 A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_phase_201_car_is_counted_on_its_phase_and_capped_at_its_request() {
    phases_end_to_end(ProtocolVersion::V201, (3_450.0, 6_900.0), 25.0).await;
}

/// The same in 1.6, which has no EV request: the single-phase car's phase
/// is known from its meter (current on L1 alone), its share is the level
/// both cars get within 25 A on L1 (L / 230 + L / 690 = 25 A: 4312.5 W),
/// of which it draws its 3666.7 W; L1 carries 15.9 + 6.2 A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_phase_16_car_is_counted_on_the_phase_its_meter_shows() {
    phases_end_to_end(ProtocolVersion::V16, (3_666.7, 4_312.5), 22.1).await;
}

/// Two stations of one car each, one single-phase (`PH1`), one
/// three-phase (`PH3`): after the limit change each draws `want` (W) and
/// the cars' per-line currents add up to `l1` A on L1, none above 25 A.
async fn phases_end_to_end(version: ProtocolVersion, want: (f64, f64), l1: f64) {
    let cars = two_cars(
        version,
        ("PH1", |b| b.single_phase_share = 1.0),
        ("PH3", |_| {}),
        json!({"limit_w": 20_000, "phase_limit_a": 25, "evse_max_w": 11_000}),
    )
    .await;
    let (admin, sessions, single, changed) = (
        cars.admin,
        &cars.sessions,
        cars.first.as_str(),
        cars.changed,
    );
    // the readings after the change: each car at its share, per line
    let readings = common::until(
        Duration::from_secs(45),
        "readings at the shares",
        || async {
            let mut out = Vec::new();
            for (id, _) in sessions {
                let after = changed + chrono::Duration::seconds(1);
                let want = if *id == single { want.0 } else { want.1 };
                match reading_after(admin, id, "Power.Active.Import", after).await {
                    Some(w) if (w - want).abs() <= 1.0 => {
                        let mut lines = [None; 3];
                        for (a, l) in lines.iter_mut().zip(["L1", "L2", "L3"]) {
                            let m = format!("Current.Import.{l}");
                            *a = reading_after(admin, id, &m, after).await;
                        }
                        out.push((id.clone(), w, lines));
                    }
                    other => return Err(format!("{id}: {other:?}, want {want}")),
                }
            }
            Ok(out)
        },
    )
    .await;
    let mut on_line = [0.0; 3];
    for (id, _, lines) in &readings {
        if *id == single {
            assert!(lines[1].is_none() && lines[2].is_none(), "{readings:?}");
        }
        for (sum, a) in on_line.iter_mut().zip(lines) {
            *sum += a.unwrap_or(0.0);
        }
    }
    assert!((on_line[0] - l1).abs() <= 0.2, "{on_line:?}: L1 at {l1} A");
    assert!(on_line.iter().all(|a| *a <= 25.0 + 1e-6), "{on_line:?}");
    cars.stop().await;
}

/// Needs by departure first (2.0.1): two cars could each take 10.35 kW
/// (15 A × 690 V) for a 10-minute session under a 10 kW site; one asks for
/// all it could take, the other for a tenth of it (about 1.1 kW over its
/// stay). The second gets what it needs, the first the rest (about
/// 8.9 kW), where max-min fairness alone would give both 5 kW.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_car_needing_little_gets_its_need_and_the_other_the_rest() {
    let cars = two_cars(
        ProtocolVersion::V201,
        ("TENTH", |b| b.energy_share = 0.1),
        ("ALL", |_| {}),
        json!({"limit_w": 10_000}),
    )
    .await;
    let (admin, sessions, little, changed) = (
        cars.admin,
        &cars.sessions,
        cars.first.as_str(),
        cars.changed,
    );
    let readings = common::until(
        Duration::from_secs(45),
        "readings at the shares",
        || async {
            let mut out = Vec::new();
            for (id, _) in sessions {
                let after = changed + chrono::Duration::seconds(1);
                let w = reading_after(admin, id, "Power.Active.Import", after).await;
                let ok = w.is_some_and(|w| {
                    if *id == little {
                        (1_000.0..=1_200.0).contains(&w)
                    } else {
                        (8_800.0..=9_000.0).contains(&w)
                    }
                });
                if !ok {
                    return Err(format!("{id}: {w:?} {out:?}"));
                }
                out.push((id.clone(), w));
            }
            Ok(out)
        },
    )
    .await;
    let total: f64 = readings.iter().filter_map(|r| r.1).sum();
    assert!(total <= 10_000.0 + 0.1, "{readings:?}");
    cars.stop().await;
}

/// Two stations of one car each, charging, then the site's limits set.
struct TwoCars {
    csms: common::InProcess,
    dir: std::path::PathBuf,
    admin: u16,
    /// The active sessions: (id, station).
    sessions: Vec<(String, String)>,
    /// The session of the first station.
    first: String,
    /// When the limits were set.
    changed: chrono::DateTime<chrono::Utc>,
    sims: [tokio::task::JoinHandle<Result<evproto_sim::Report, String>>; 2],
}

/// A CSMS with the drivers' card and two 11 kW stations of `version`, one
/// car each whose needs are reported: `a` and `b` name them and change
/// their behaviour; once both charge the site's `limits` are set.
async fn two_cars(
    version: ProtocolVersion,
    a: (&str, fn(&mut Behaviour)),
    b: (&str, fn(&mut Behaviour)),
    limits: Value,
) -> TwoCars {
    let dir = common::temp_dir(&format!("smart-{}-{version:?}", a.0));
    let mut config = common::lab_config(&dir, KEY);
    config.site_limit_w = Some(100_000);
    let csms = common::InProcess::start(config).await;
    let (admin, ocpp) = (csms.started.admin_port, csms.started.ocpp_port);
    let t = json!({"id_token": PUBLIC, "type": "ISO14443", "status": "Accepted", "allow_concurrent": true});
    let (status, body) = common::api(KEY, admin, "POST", "/api/tokens", Some(t)).await;
    assert!(status < 300, "{body}");
    let with = |(prefix, change): (&str, fn(&mut Behaviour))| {
        let mut c = sim(ocpp, version, prefix, 1, PUBLIC);
        c.behaviour.ev_needs = true;
        change(&mut c.behaviour);
        tokio::spawn(evproto_sim::run(c, None))
    };
    let sims = [with(a), with(b)];
    let (sessions, first) = sessions_of(admin, 2, a.0).await;
    let changed = chrono::Utc::now();
    let (status, body) = common::api(KEY, admin, "PUT", "/api/site/limits", Some(limits)).await;
    assert_eq!(status, 200, "{body}");
    TwoCars {
        csms,
        dir,
        admin,
        sessions,
        first,
        changed,
        sims,
    }
}

impl TwoCars {
    async fn stop(self) {
        for s in self.sims {
            s.abort();
        }
        self.csms.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// ISO 15118 at plug-in (the simulator's `--iso15118`): the station holds
/// the site's `TxDefaultProfile` (its EVSE's default share), its SECC
/// offers that as the SA schedule, and the car charges under it (the PMax
/// it chose is the share, not the EVSE's 11 kW), in 2.0.1 and 1.6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iso15118_car_is_offered_the_sites_share_as_its_sa_schedule() {
    let dir = common::temp_dir("smart-iso15118");
    let mut config = common::lab_config(&dir, KEY);
    config.site_limit_w = Some(5_000);
    let csms = common::InProcess::start(config).await;
    let (admin, ocpp) = (csms.started.admin_port, csms.started.ocpp_port);
    let t = json!({"id_token": PUBLIC, "type": "ISO14443", "status": "Accepted", "allow_concurrent": true});
    let (status, body) = common::api(KEY, admin, "POST", "/api/tokens", Some(t)).await;
    assert!(status < 300, "{body}");
    for (version, prefix) in [
        (ProtocolVersion::V201, "ISO201"),
        (ProtocolVersion::V16, "ISO16"),
    ] {
        let mut config = sim(ocpp, version, prefix, 1, PUBLIC);
        config.duration = Duration::from_secs(8);
        // plugged in once the site's default profile is there
        config.behaviour.idle_ms = (1_500, 2_000);
        config.behaviour.session_ms = (1_000, 2_000);
        config.iso15118 = Some(evproto_sim::iso15118::Iso15118Sim {
            pnc_share: 0.0,
            roots: Vec::new(),
            renew_within: None,
        });
        let report = evproto_sim::run(config, None).await.unwrap();
        let r = report.to_json();
        assert_eq!(report.error_count(), 0, "{version:?}: {r}");
        assert!(report.iso15118_sessions >= 1, "{version:?}: {r}");
        assert_eq!(report.iso15118_refused, 0, "{version:?}: {r}");
        assert_eq!(
            report.iso15118_scheduled, report.iso15118_sessions,
            "{version:?}: {r}"
        );
        assert!(
            report.iso15118_max_pmax_w > 0 && report.iso15118_max_pmax_w <= 5_000,
            "{version:?}: {r}"
        );
        // the cars drew no more than the schedule in their loops
        assert!(
            report.iso15118_max_drawn_w > 0 && report.iso15118_max_drawn_w <= 5_000,
            "{version:?}: {r}"
        );
        assert_eq!(
            report.iso15118_protocols.values().sum::<u64>(),
            report.iso15118_sessions,
            "{version:?}: {r}"
        );
        assert!(!report.iso15118_protocols.contains_key("none"), "{r}");
    }
    csms.stop().await;
}
