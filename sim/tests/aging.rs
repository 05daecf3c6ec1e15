//! Predictive maintenance against the simulator: seeded fleets whose worn
//! connectors fail for good, watched by `evproto_csms_core::health` exactly
//! as the CSMS feeds it (status reports, session starts and ends,
//! temperature and voltage samples, watchdog reboots). The score must raise
//! its alarm ahead of each failure, and seldom on connectors that are not
//! wearing out.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use evproto_csms_core::connector::ConnectorId;
use evproto_csms_core::health::{Change, HealthKey, HealthModel, Observation, StationObservation};
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

/// What the worn connectors show and the model is fed.
#[derive(Clone, Copy)]
struct Inputs {
    /// Their heat at the end of life (0: no temperature fed).
    heat_c: f64,
    /// Voltage samples fed (their sag: [`Aging::default`]'s).
    voltage: bool,
    /// Watchdog reboots per second at the end of life (fed as unplanned reboots).
    crash_per_s: f64,
    /// Connectors per station.
    connectors: u32,
    /// The worn connectors fault more often and fail to start (else they
    /// show their wear in their samples and reboots only).
    wear_faults: bool,
}

/// Temperature, as the CSMS sees a 1.6 station's, on two connectors per station.
const TEMPERATURE: Inputs = Inputs {
    heat_c: 25.0,
    voltage: false,
    crash_per_s: 0.0,
    connectors: 2,
    wear_faults: true,
};

fn behaviour() -> Behaviour {
    behaviour_with(TEMPERATURE)
}

fn behaviour_with(inputs: Inputs) -> Behaviour {
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
            heat_c: inputs.heat_c,
            crash_per_s: inputs.crash_per_s,
            fault_factor: if inputs.wear_faults { 20.0 } else { 0.0 },
            start_failure: if inputs.wear_faults { 0.5 } else { 0.0 },
            ..Aging::default()
        }),
        ..Behaviour::default()
    }
}

/// `inputs.heat_c` 0: the worn connectors do not run hot (and no
/// temperature is fed to the model).
fn run_with(seed: u64, stations: usize, days: u64, inputs: Inputs) -> Outcome {
    let heat_c = inputs.heat_c;
    let t0: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let at = |ms: u64| t0 + Duration::milliseconds(ms as i64);
    let mut health = HealthModel::default();
    let mut models: Vec<StationModel> = (0..stations)
        .map(|i| {
            StationModel::new(
                &format!("CS{i:03}"),
                inputs.connectors,
                behaviour_with(inputs),
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
                if let Msg::TxMeter {
                    connector,
                    voltage_v: Some(v),
                    ..
                } = &msg
                {
                    if inputs.voltage {
                        let o = Observation::Voltage {
                            volts: *v,
                            nominal: 230.0,
                        };
                        alarm(
                            &mut alarms,
                            &mut causes,
                            now,
                            health.handle(&key(*connector), at(now), o),
                        );
                    }
                }
                let (k, observation) = match msg {
                    Msg::Crash => {
                        // the station reboots (with reason Watchdog): unplanned
                        m.rebooted();
                        let what = StationObservation::UnplannedReboot;
                        for c in health.handle_station(&m.identity, at(now), what) {
                            alarm(&mut alarms, &mut causes, now, Some(c));
                        }
                        continue;
                    }
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
                let change = health.handle(&k, at(now), observation);
                alarm(&mut alarms, &mut causes, now, change);
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

/// Keeps the first alarm of each connector and what tripped it.
fn alarm(
    alarms: &mut BTreeMap<HealthKey, u64>,
    causes: &mut BTreeMap<String, usize>,
    now: u64,
    change: Option<Change>,
) {
    if let Some(Change::AtRisk { key, cause, .. }) = change {
        if !alarms.contains_key(&key) {
            *causes.entry(format!("{cause:?}")).or_default() += 1;
        }
        alarms.entry(key).or_insert(now);
    }
}

/// Runs over seeds, added up.
#[derive(Default)]
struct Totals {
    caught: usize,
    worn: usize,
    lead_days: Vec<f64>,
    healthy: usize,
    false_alarms: usize,
    causes: BTreeMap<String, usize>,
}

impl Totals {
    /// `run_with(seed, stations, 30 days, inputs)` for each seed.
    fn of(seeds: &[u64], stations: usize, inputs: Inputs) -> Totals {
        let mut t = Totals::default();
        for &seed in seeds {
            let o = run_with(seed, stations, 30, inputs);
            for (c, n) in o.causes {
                *t.causes.entry(c).or_default() += n;
            }
            for (alarm, end) in &o.worn {
                t.worn += 1;
                if let Some(a) = alarm.filter(|a| a < end) {
                    t.caught += 1;
                    t.lead_days.push((end - a) as f64 / DAY as f64);
                }
            }
            t.healthy += o.healthy;
            t.false_alarms += o.false_alarms;
        }
        t.lead_days.sort_by(f64::total_cmp);
        t
    }

    /// The median lead of the alarms, days.
    fn median_lead(&self) -> f64 {
        let d = &self.lead_days;
        d.get(d.len() / 2).copied().unwrap_or(0.0)
    }

    /// At least 10 worn connectors, 80 % of them caught with a median lead
    /// of a day or more, at most 5 % of the others alarmed.
    fn check(&self) {
        let Totals {
            caught,
            worn,
            healthy,
            false_alarms,
            ..
        } = *self;
        let median = self.median_lead();
        assert!(worn >= 10, "the seeds give enough worn connectors ({worn})");
        assert!(caught * 10 >= worn * 8, "caught {caught} of {worn}");
        assert!(median >= 1.0, "median lead {median:.1} days");
        assert!(
            false_alarms * 20 <= healthy,
            "{false_alarms} false alarms of {healthy}"
        );
    }
}

#[test]
fn worn_connectors_are_caught_before_they_fail() {
    let t = Totals::of(&[1, 1_000, 77_777], 40, TEMPERATURE);
    let Totals {
        caught,
        worn,
        healthy,
        false_alarms,
        ref causes,
        ..
    } = t;
    let median = t.median_lead();
    println!(
        "worn connectors caught before failing: {caught}/{worn}; median lead {median:.1} days; \
         false alarms: {false_alarms}/{healthy} connectors in good order; alarms by cause {causes:?}"
    );
    t.check();
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
        let o = run_with(
            seed,
            40,
            30,
            Inputs {
                heat_c: 0.0,
                ..TEMPERATURE
            },
        );
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

/// A 2.x station reports no temperature, and these worn connectors do not
/// fault more often: their voltage samples (the supply sags) and their
/// station's watchdog reboots (one-connector stations: a reboot is the
/// whole station's) alone catch them ahead of the failure.
#[test]
fn worn_connectors_are_caught_from_voltage_and_reboots() {
    let inputs = Inputs {
        heat_c: 0.0,
        voltage: true,
        // at the end of life, a watchdog reboot every 6 hours
        crash_per_s: 1.0 / (6.0 * 3600.0),
        connectors: 1,
        wear_faults: false,
    };
    let t = Totals::of(&[3, 303, 3_003], 60, inputs);
    let (caught, worn, median, causes) = (t.caught, t.worn, t.median_lead(), &t.causes);
    println!(
        "from voltage and reboots: caught {caught}/{worn}; median lead {median:.1} days; \
         false alarms {}/{}; alarms by cause {causes:?}",
        t.false_alarms, t.healthy
    );
    t.check();
    // what tripped the alarms: the station's reboots and the supply's drift
    assert!(
        causes.contains_key("Reboots") && causes.contains_key("VoltageDrift"),
        "{causes:?}"
    );
    assert!(!causes.contains_key("Temperature"), "{causes:?}");
}

#[test]
fn worn_stations_sag_and_reboot_before_they_fail() {
    let b = behaviour_with(Inputs {
        heat_c: 25.0,
        voltage: true,
        crash_per_s: 1.0 / 3600.0,
        connectors: 1,
        wear_faults: true,
    });
    // seeds until one has a worn connector
    let mut m = (0..100)
        .map(|seed| StationModel::new("CS", 1, b.clone(), seed))
        .find(|m| m.connectors[0].fails_at.is_some())
        .expect("a worn connector");
    let end = m.connectors[0].fails_at.unwrap();
    let (mut early, mut late) = (Vec::new(), Vec::new());
    let mut crashes = (0, 0);
    let mut t = 0;
    while t < end {
        t += MINUTE;
        for msg in m.tick(t) {
            match msg {
                Msg::Authorize { connector, token } => {
                    m.authorized(connector, &token, true);
                }
                Msg::TxMeter {
                    voltage_v: Some(v), ..
                } => {
                    if t < end / 4 {
                        early.push(v)
                    } else if t > end * 9 / 10 {
                        late.push(v)
                    }
                }
                Msg::Crash => {
                    m.rebooted();
                    if t < end / 2 {
                        crashes.0 += 1
                    } else {
                        crashes.1 += 1
                    }
                }
                _ => {}
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    assert!(!early.is_empty() && !late.is_empty());
    // w² ≤ 1/16 early, ≥ 0.81 late: the supply sags by 25 V × w²
    assert!(
        mean(&early) - mean(&late) > 15.0,
        "{} → {}",
        mean(&early),
        mean(&late)
    );
    // reboots come as it wears: more in the second half of its life
    assert!(crashes.1 > crashes.0, "{crashes:?}");
}
