//! Predictive maintenance against the simulator: seeded fleets whose worn
//! connectors fail for good, watched by `evproto_csms_core::health` exactly
//! as the CSMS feeds it (status reports, session starts and ends,
//! temperature samples). The score must raise its alarm ahead of each
//! failure, and seldom on connectors that are not wearing out.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use evproto_csms_core::connector::ConnectorId;
use evproto_csms_core::health::{Change, HealthKey, HealthModel, Observation};
use evproto_sim::model::{Aging, Behaviour, Msg, StationModel, Status};

const MINUTE: u64 = 60_000;
const DAY: u64 = 24 * 60 * MINUTE;

struct Outcome {
    /// Worn connectors that failed within the run: (alarm time, failure time).
    worn: Vec<(Option<u64>, u64)>,
    /// Connectors not wearing out, and how many of them were alarmed.
    healthy: usize,
    false_alarms: usize,
    /// What tripped the alarms (first alarm per connector).
    causes: BTreeMap<String, usize>,
}

fn behaviour() -> Behaviour {
    behaviour_with(Aging::default().heat_c)
}

fn behaviour_with(heat_c: f64) -> Behaviour {
    Behaviour {
        idle_ms: (10 * MINUTE, 180 * MINUTE),
        session_ms: (20 * MINUTE, 120 * MINUTE),
        meter_interval_ms: 15 * MINUTE,
        // about one fault per 60 sessions of a connector in good order
        fault_per_s: 1.0 / (60.0 * 6300.0),
        fault_ms: (30 * MINUTE, 240 * MINUTE),
        disconnect_per_s: 0.0,
        aging: Some(Aging {
            share: 0.15,
            life_ms: (8 * DAY, 28 * DAY),
            heat_c,
            ..Aging::default()
        }),
        ..Behaviour::default()
    }
}

fn run(seed: u64, stations: usize, days: u64) -> Outcome {
    run_with(seed, stations, days, Aging::default().heat_c)
}

/// `heat_c` 0: the worn connectors do not run hot (and no temperature is
/// fed to the model).
fn run_with(seed: u64, stations: usize, days: u64, heat_c: f64) -> Outcome {
    let t0: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let at = |ms: u64| t0 + Duration::milliseconds(ms as i64);
    let mut health = HealthModel::default();
    let mut models: Vec<StationModel> = (0..stations)
        .map(|i| {
            StationModel::new(
                &format!("CS{i:03}"),
                2,
                behaviour_with(heat_c),
                seed + i as u64,
            )
        })
        .collect();
    let mut status: BTreeMap<HealthKey, Status> = BTreeMap::new();
    let mut alarms: BTreeMap<HealthKey, u64> = BTreeMap::new();
    let mut causes: BTreeMap<String, usize> = BTreeMap::new();
    let mut now = 0;
    while now < days * DAY {
        now += MINUTE;
        for m in &mut models {
            let mut queue = m.tick(now);
            while let Some(msg) = queue.pop() {
                let key = |c: u32| HealthKey::new(m.identity.clone(), ConnectorId::new(c, 1));
                let (k, observation) = match msg {
                    Msg::Authorize { connector, token } => {
                        // the CSMS accepts every driver
                        queue.extend(m.authorized(connector, &token, true));
                        continue;
                    }
                    Msg::Status {
                        connector,
                        status: s,
                    } => {
                        let k = key(connector);
                        let before = status.insert(k.clone(), s);
                        if s != Status::Faulted {
                            continue;
                        }
                        let idle_occupied = before == Some(Status::Preparing)
                            && m.connectors
                                .iter()
                                .any(|c| c.id == connector && c.tx.is_none());
                        let o = if idle_occupied {
                            Observation::StartFailed
                        } else {
                            Observation::Fault { error_code: None }
                        };
                        (k, o)
                    }
                    Msg::TxStart { connector, .. } => (key(connector), Observation::SessionStarted),
                    // the simulator reports a fault's end of session as `Other`
                    Msg::TxEnd { connector, .. } => {
                        (key(connector), Observation::session_ended(None))
                    }
                    Msg::TxMeter {
                        connector,
                        temperature_c: Some(t),
                        ..
                    } if heat_c > 0.0 => (key(connector), Observation::Temperature { celsius: t }),
                    _ => continue,
                };
                if let Some(Change::AtRisk { key, cause, .. }) =
                    health.handle(&k, at(now), observation)
                {
                    if !alarms.contains_key(&key) {
                        *causes.entry(format!("{cause:?}")).or_default() += 1;
                    }
                    alarms.entry(key).or_insert(now);
                }
            }
        }
    }
    let mut out = Outcome {
        worn: Vec::new(),
        healthy: 0,
        false_alarms: 0,
        causes,
    };
    for m in &models {
        for c in &m.connectors {
            let k = HealthKey::new(m.identity.clone(), ConnectorId::new(c.id, 1));
            let alarm = alarms.get(&k).copied();
            match c.fails_at {
                Some(end) if end < days * DAY => out.worn.push((alarm, end)),
                Some(_) => {} // still wearing out when the run ended: either way is right
                None => {
                    out.healthy += 1;
                    out.false_alarms += usize::from(alarm.is_some());
                }
            }
        }
    }
    out
}

#[test]
fn worn_connectors_are_caught_before_they_fail() {
    let mut caught = 0;
    let mut worn = 0;
    let mut lead_days = Vec::new();
    let mut healthy = 0;
    let mut false_alarms = 0;
    let mut causes: BTreeMap<String, usize> = BTreeMap::new();
    for seed in [1, 1_000, 77_777] {
        let o = run(seed, 40, 30);
        for (c, n) in o.causes {
            *causes.entry(c).or_default() += n;
        }
        for (alarm, end) in &o.worn {
            worn += 1;
            if let Some(a) = alarm.filter(|a| a < end) {
                caught += 1;
                lead_days.push((end - a) as f64 / DAY as f64);
            }
        }
        healthy += o.healthy;
        false_alarms += o.false_alarms;
    }
    lead_days.sort_by(f64::total_cmp);
    let median = lead_days.get(lead_days.len() / 2).copied().unwrap_or(0.0);
    println!(
        "worn connectors caught before failing: {caught}/{worn}; median lead {median:.1} days; \
         false alarms: {false_alarms}/{healthy} connectors in good order; alarms by cause {causes:?}"
    );
    assert!(worn >= 10, "the seeds give enough worn connectors ({worn})");
    assert!(caught * 10 >= worn * 8, "caught {caught} of {worn}");
    assert!(median >= 1.0, "median lead {median:.1} days");
    assert!(
        false_alarms * 20 <= healthy,
        "{false_alarms} false alarms of {healthy}"
    );
}

/// The event detector alone (no temperature reported: stations that do not
/// measure it) still catches most of them, later.
#[test]
fn worn_connectors_are_caught_from_faults_alone() {
    let mut caught = 0;
    let mut worn = 0;
    let mut false_alarms = 0;
    let mut healthy = 0;
    for seed in [5, 505] {
        let o = run_with(seed, 40, 30, 0.0);
        worn += o.worn.len();
        caught += o
            .worn
            .iter()
            .filter(|(a, end)| a.is_some_and(|a| a < *end))
            .count();
        healthy += o.healthy;
        false_alarms += o.false_alarms;
        assert!(!o.causes.contains_key("Temperature"));
    }
    println!("from faults alone: caught {caught}/{worn}; false alarms {false_alarms}/{healthy}");
    assert!(worn >= 5);
    assert!(caught * 10 >= worn * 6, "caught {caught} of {worn}");
    assert!(
        false_alarms * 20 <= healthy,
        "{false_alarms} false alarms of {healthy}"
    );
}

#[test]
fn without_aging_nothing_wears_and_no_temperature_is_reported() {
    let b = Behaviour {
        aging: None,
        ..behaviour()
    };
    let mut m = StationModel::new("CS", 2, b, 9);
    let mut temperatures = 0;
    for t in 1..=(2 * DAY / MINUTE) {
        for msg in m.tick(t * MINUTE) {
            match msg {
                Msg::Authorize { connector, token } => {
                    m.authorized(connector, &token, true);
                }
                Msg::TxMeter { temperature_c, .. } => {
                    temperatures += usize::from(temperature_c.is_some())
                }
                _ => {}
            }
        }
    }
    assert_eq!(temperatures, 0);
    assert!(m.connectors.iter().all(|c| c.fails_at.is_none()));
    assert_eq!(m.tally.start_failures, 0);
}
