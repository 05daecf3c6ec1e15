//! ISO 15118-2 session machines, AC and DC: our EVCC against our SECC in
//! memory on a virtual clock, every byte through the real EXI codecs.
#![allow(missing_docs)]

use std::collections::VecDeque;
use std::time::Duration;

use evproto_iso15118::messages::iso2 as m;
use evproto_iso15118::session::{
    iso2, Authorization, Effect, EndReason, EnergyMode, EvNotice, Evcc, EvccConfig, EvseRequest,
    Isolation, MsgKind, PausedSession, Protocol, ScheduleTuple, Secc, SeccConfig, Standard,
    StopKind, TimerKind,
};
use test_support::VirtualClock;

mod session_common;
use session_common::{body_name_in, collapse, replay, Plant, EVCC_ID, SESSION};

const OTHER: [u8; 4] = [0x0a, 0x0b, 0x0c, 0x0d];
const AC_POWER: f64 = 230.0 * 16.0 * 3.0;

/// -2: AC or DC, the schedules to offer, the AC meter.
struct Iso2 {
    dc: bool,
    /// The answers to successive `Schedules` requests (empty: the default tuple).
    schedules: VecDeque<Vec<ScheduleTuple>>,
    /// AC: the EVSE's meter counts `AC_POWER` while the power is on.
    power_on: bool,
    has_meter: bool,
    meter_exact: f64,
}

impl Plant for Iso2 {
    fn schedules(sim: &mut Sim) -> Vec<ScheduleTuple> {
        sim.schedules.pop_front().unwrap_or_default()
    }
    fn power(sim: &mut Sim, on: bool) {
        sim.power_on = on;
        if !sim.dc {
            sim.evse.present_voltage = if on { 230.0 } else { 0.0 };
            sim.evse.present_current = if on { 16.0 } else { 0.0 };
        } else if !on {
            sim.evse.present_voltage = 0.0;
            sim.evse.present_current = 0.0;
        }
        sim.secc.set_evse(sim.evse.clone());
    }
    fn advanced(sim: &mut Sim, dt: Duration) {
        if sim.power_on && !sim.dc && sim.has_meter {
            sim.meter_exact += AC_POWER * dt.as_secs_f64() / 3600.0;
            sim.evse.meter_wh = Some(sim.meter_exact as u64);
            sim.secc.set_evse(sim.evse.clone());
        }
    }
    fn body_name(b: &[u8]) -> String {
        body_name(b)
    }
    fn response_code(b: &[u8]) -> Option<(String, String)> {
        iso2::response_code(b)
    }
}

type Sim = session_common::Sim<Iso2>;

impl Sim {
    fn new(secc: SeccConfig, evcc: EvccConfig) -> Self {
        let clock = VirtualClock::new();
        let now = clock.now();
        let mut evse = secc.evse.clone();
        evse.meter_wh = Some(1000);
        let dc = evcc.energy_mode.is_dc();
        let mut secc = Secc::new(secc, now);
        secc.set_evse(evse.clone());
        let evcc = Evcc::new(evcc, now);
        let plant = Iso2 {
            dc,
            schedules: VecDeque::new(),
            power_on: false,
            has_meter: true,
            meter_exact: 1000.0,
        };
        Self::with(clock, secc, evcc, evse, plant)
    }

    fn ac() -> Self {
        Self::new(
            SeccConfig::new(SESSION.to_vec()),
            EvccConfig::iso2_ac(EVCC_ID.to_vec()),
        )
    }

    fn dc() -> Self {
        Self::new(
            SeccConfig::new(SESSION.to_vec()),
            EvccConfig::iso2_dc(EVCC_ID.to_vec()),
        )
    }

    fn of(dc: bool) -> Self {
        if dc {
            Self::dc()
        } else {
            Self::ac()
        }
    }

    fn meter_readings(&self) -> Vec<u64> {
        self.notices
            .iter()
            .filter_map(|n| match n {
                EvNotice::Meter { wh } => Some(*wh),
                _ => None,
            })
            .collect()
    }

    /// The ChargeProgress of every PowerDeliveryReq, in order.
    fn progress(&self) -> Vec<String> {
        self.to_secc
            .iter()
            .filter(|b| body_name(b) == "PowerDeliveryReq")
            .map(|b| {
                decode_json(b)["PowerDeliveryReq"]["ChargeProgress"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }
}

fn decode_msg(b: &[u8]) -> Option<m::V2gMessage> {
    match m::Message::decode(b) {
        Ok(m::Message::V2gMessage(v)) => Some(*v),
        _ => None,
    }
}

fn decode_json(b: &[u8]) -> serde_json::Value {
    serde_json::to_value(&decode_msg(b).expect("a -2 message").body).unwrap()
}

/// The body element of a -2 message (or the handshake's root).
fn body_name(b: &[u8]) -> String {
    body_name_in(b, |b| {
        decode_msg(b).map(|v| serde_json::to_value(&v.body).unwrap())
    })
}

fn ended(secc: &mut Secc) -> Option<EndReason> {
    match secc.poll_effect() {
        Some(Effect::SessionEnded { reason }) => Some(reason),
        _ => None,
    }
}

#[test]
fn the_handshake_chooses_iso2_and_the_evcc_its_mode() {
    for dc in [false, true] {
        let mut sim = Sim::of(dc);
        sim.stop_after = Some((1, StopKind::Terminate));
        sim.run(Duration::from_secs(60));
        assert_eq!(sim.secc.protocol(), Some(Protocol::Iso2));
        assert_eq!(sim.evcc.protocol(), Some(Protocol::Iso2));
        let mode = sim.secc.iso2().unwrap().energy_mode().unwrap();
        assert_eq!(mode.is_dc(), dc);
        let cpd = sim
            .to_secc
            .iter()
            .find(|b| body_name(b) == "ChargeParameterDiscoveryReq")
            .unwrap();
        let json = decode_json(cpd);
        assert_eq!(
            json["ChargeParameterDiscoveryReq"]["RequestedEnergyTransferMode"],
            if dc {
                "DC_extended"
            } else {
                "AC_three_phase_core"
            }
        );
    }
}

#[test]
fn ac_happy_path_with_one_five_and_a_hundred_loops() {
    for n in [1u32, 5, 100] {
        let mut sim = Sim::ac();
        sim.stop_after = Some((n, StopKind::Terminate));
        sim.run(Duration::from_secs(600));
        assert_eq!(sim.secc_end, Some(EndReason::Finished), "n={n}");
        assert_eq!(sim.evcc_end, Some(EndReason::Finished), "n={n}");
        assert_eq!(sim.evcc.charge_loops(), n);
        // authorization 500 ms at 100 ms a repeat: Ongoing 5 times; the
        // schedules come after the first ChargeParameterDiscoveryRes (Ongoing)
        assert_eq!(
            sim.requests(),
            collapse(&[
                ("supportedAppProtocolReq", 1),
                ("SessionSetupReq", 1),
                ("ServiceDiscoveryReq", 1),
                ("PaymentServiceSelectionReq", 1),
                ("AuthorizationReq", 6),
                ("ChargeParameterDiscoveryReq", 2),
                ("PowerDeliveryReq", 1),
                ("ChargingStatusReq", n as usize),
                ("PowerDeliveryReq", 1),
                ("SessionStopReq", 1),
            ]),
            "n={n}"
        );
        assert_eq!(sim.progress(), ["Start", "Stop"]);
        let answers = sim.answers();
        assert!(
            answers.iter().all(|(_, c)| c.starts_with("OK")),
            "{answers:?}"
        );
        assert_eq!(
            answers[0],
            ("SessionSetupRes".into(), "OK_NewSessionEstablished".into())
        );
        // the SAScheduleList came with the second ChargeParameterDiscoveryRes only
        let cpd: Vec<_> = sim
            .to_evcc
            .iter()
            .filter(|b| body_name(b) == "ChargeParameterDiscoveryRes")
            .map(|b| decode_json(b)["ChargeParameterDiscoveryRes"].clone())
            .collect();
        assert_eq!(cpd[0]["EVSEProcessing"], "Ongoing");
        assert!(cpd[0]["SAScheduleList"].is_null());
        assert_eq!(cpd[1]["EVSEProcessing"], "Finished");
        assert_eq!(
            cpd[1]["SAScheduleList"]["SAScheduleTuple"][0]["SAScheduleTupleID"],
            1
        );
        assert!(cpd[1]["AC_EVSEChargeParameter"].is_object());
        assert_eq!(sim.evcc.iso2().unwrap().schedule_tuple_id(), Some(1));
        assert_eq!(sim.secc.iso2().unwrap().schedule_tuple_id(), Some(1));
        // energy: the meter readings of the loop answers, the same on both sides
        let readings = sim.meter_readings();
        assert_eq!(readings.len(), n as usize);
        let expected = (readings[readings.len() - 1] - readings[0]) as f64;
        assert_eq!(sim.evcc.energy_wh(), expected);
        assert_eq!(sim.secc.energy_wh(), expected);
        let exact = f64::from(n - 1) * AC_POWER * 0.1 / 3600.0;
        assert!((expected - exact).abs() <= 1.0, "{expected} vs {exact}");
        if n == 100 {
            assert!(expected >= 29.0, "{expected}");
        }
        let status = decode_json(
            sim.to_evcc
                .iter()
                .find(|b| body_name(b) == "ChargingStatusRes")
                .unwrap(),
        );
        assert_eq!(status["ChargingStatusRes"]["EVSEID"], "DE*EVP*E1");
        assert_eq!(
            status["ChargingStatusRes"]["MeterInfo"]["MeterReading"],
            readings[0]
        );
        assert!(sim.notices.contains(&EvNotice::ChargingStarted));
        assert_eq!(sim.evse_requests.last(), Some(&EvseRequest::Power(false)));
        assert!(!sim
            .evse_requests
            .iter()
            .any(|r| matches!(r, EvseRequest::StartCableCheck)));
        assert_eq!(sim.secc.poll_timeout(), None);
        assert_eq!(sim.evcc.poll_timeout(), None);
    }
}

/// An SECC without a meter sends no MeterInfo (it is optional; Josev's
/// SECC never sends one): the EVCC then counts what it draws, nominal
/// voltage × its current (at most the EVSE's EVSEMaxCurrent) × phases,
/// capped by the schedule's PMax, between two ChargingStatus answers
/// 100 ms apart. The SECC, with no meter, counts nothing.
#[test]
fn ac_without_a_meter_sends_no_meter_info_and_the_evcc_counts_what_it_draws() {
    // (loops, EVSE max current, PMax of the tuple, single phase, expected W)
    let cases = [
        (3u32, 125.0, None, false, AC_POWER),
        (50, 125.0, None, false, AC_POWER),
        (20, 10.0, None, false, 230.0 * 10.0 * 3.0),
        (20, 125.0, Some(2_000.0), false, 2_000.0),
        (20, 125.0, None, true, 230.0 * 16.0),
    ];
    for (n, max_current, pmax, single, watts) in cases {
        let mut evcc = EvccConfig::iso2_ac(EVCC_ID.to_vec());
        if single {
            evcc.energy_mode = EnergyMode::AcSinglePhaseCore;
        }
        let mut secc = SeccConfig::new(SESSION.to_vec()).with_energy_modes(vec![
            EnergyMode::AcSinglePhaseCore,
            EnergyMode::AcThreePhaseCore,
        ]);
        secc.evse.max_current = max_current;
        let mut sim = Sim::new(secc, evcc);
        if let Some(p) = pmax {
            sim.schedules.push_back(vec![ScheduleTuple {
                id: 1,
                entries: vec![(0, p)],
                duration: 86_400,
            }]);
        }
        sim.has_meter = false;
        sim.evse.meter_wh = None;
        sim.secc.set_evse(sim.evse.clone());
        sim.stop_after = Some((n, StopKind::Terminate));
        sim.run(Duration::from_secs(60));
        let case = format!("n={n} max={max_current} pmax={pmax:?} single={single}");
        assert_eq!(sim.evcc_end, Some(EndReason::Finished), "{case}");
        assert_eq!(sim.evcc.charge_loops(), n, "{case}");
        assert!(sim.meter_readings().is_empty(), "{case}");
        assert_eq!(sim.secc.energy_wh(), 0.0, "{case}");
        let exact = f64::from(n - 1) * watts * 0.1 / 3600.0;
        let got = sim.evcc.energy_wh();
        assert!(
            (got - exact).abs() <= 1e-9 * exact,
            "{case}: {got} vs {exact}"
        );
        let status = decode_json(
            sim.to_evcc
                .iter()
                .find(|b| body_name(b) == "ChargingStatusRes")
                .unwrap(),
        );
        assert!(status["ChargingStatusRes"]["MeterInfo"].is_null(), "{case}");
        // the EV says what it draws
        let drawn = watts / 230.0;
        assert!(
            sim.notices.iter().any(|x| matches!(x,
                EvNotice::Present { voltage, current }
                    if *voltage == 230.0 && (current - drawn).abs() < 1e-9)),
            "{case}"
        );
    }
}

#[test]
fn dc_happy_path_with_one_five_and_a_hundred_loops() {
    for n in [1u32, 5, 100] {
        let mut sim = Sim::dc();
        sim.stop_after = Some((n, StopKind::Terminate));
        sim.run(Duration::from_secs(600));
        assert_eq!(sim.secc_end, Some(EndReason::Finished), "n={n}");
        assert_eq!(sim.evcc_end, Some(EndReason::Finished), "n={n}");
        assert_eq!(sim.evcc.charge_loops(), n);
        assert_eq!(
            sim.requests(),
            collapse(&[
                ("supportedAppProtocolReq", 1),
                ("SessionSetupReq", 1),
                ("ServiceDiscoveryReq", 1),
                ("PaymentServiceSelectionReq", 1),
                ("AuthorizationReq", 6),
                ("ChargeParameterDiscoveryReq", 2),
                ("CableCheckReq", 4),
                ("PreChargeReq", 2),
                ("PowerDeliveryReq", 1),
                ("CurrentDemandReq", n as usize),
                ("PowerDeliveryReq", 1),
                ("WeldingDetectionReq", 1),
                ("SessionStopReq", 1),
            ]),
            "n={n}"
        );
        assert_eq!(sim.progress(), ["Start", "Stop"]);
        let answers = sim.answers();
        assert!(
            answers.iter().all(|(_, c)| c.starts_with("OK")),
            "{answers:?}"
        );
        assert_eq!(sim.evcc.session_id(), Some(&SESSION[..]));
        let stop = sim.to_secc.last().unwrap();
        assert_eq!(
            decode_json(stop)["SessionStopReq"]["ChargingSession"],
            "Terminate"
        );
        // the first CurrentDemandRes still shows the PreCharge current; then
        // 400 V × 100 A every 100 ms
        let expected = f64::from(n - 1) * 400.0 * 100.0 * 0.1 / 3600.0;
        assert!(
            (sim.evcc.energy_wh() - expected).abs() < 1e-6,
            "{}",
            sim.evcc.energy_wh()
        );
        assert!((sim.secc.energy_wh() - expected).abs() < 1e-6);
        let cd = decode_json(
            sim.to_evcc
                .iter()
                .find(|b| body_name(b) == "CurrentDemandRes")
                .unwrap(),
        );
        assert_eq!(cd["CurrentDemandRes"]["SAScheduleTupleID"], 1);
        assert_eq!(
            cd["CurrentDemandRes"]["DC_EVSEStatus"]["EVSEIsolationStatus"],
            "Valid"
        );
        assert!(sim.notices.contains(&EvNotice::PreChargeDone));
        assert_eq!(sim.evse_requests.last(), Some(&EvseRequest::Power(false)));
        assert_eq!(sim.secc.poll_timeout(), None);
        assert_eq!(sim.evcc.poll_timeout(), None);
    }
}

/// A DC car follows the SA schedule it chose: its target current keeps
/// target voltage × current within the PMax (7.4 kW at 400 V: 18.5 A, not
/// the 100 A it would take), and the EVSE's energy is what that delivers.
#[test]
fn a_dc_car_asks_no_more_current_than_its_schedule_allows() {
    let mut sim = Sim::dc();
    sim.plant.schedules.push_back(vec![ScheduleTuple {
        id: 3,
        entries: vec![(0, 7_400.0)],
        duration: 86_400,
    }]);
    sim.stop_after = Some((5, StopKind::Terminate));
    sim.run(Duration::from_secs(600));
    assert_eq!(sim.evcc_end, Some(EndReason::Finished));
    assert_eq!(sim.evcc.iso2().unwrap().schedule_pmax(), Some(7_400.0));
    let targets: Vec<f64> = sim
        .to_secc
        .iter()
        .filter(|b| body_name(b) == "CurrentDemandReq")
        .map(|b| {
            let t = &decode_json(b)["CurrentDemandReq"]["EVTargetCurrent"];
            t["Value"].as_f64().unwrap() * 10f64.powi(t["Multiplier"].as_i64().unwrap() as i32)
        })
        .collect();
    assert_eq!(targets.len(), 5);
    assert!(
        targets.iter().all(|a| (a - 18.5).abs() < 0.01),
        "{targets:?}"
    );
    let expected = 4.0 * 400.0 * 18.5 * 0.1 / 3600.0;
    assert!(
        (sim.secc.energy_wh() - expected).abs() < 1e-3,
        "{}",
        sim.secc.energy_wh()
    );
}

#[test]
fn long_authorization_keeps_the_secc_answering_ongoing() {
    for dc in [false, true] {
        let mut sim = Sim::of(dc);
        sim.auth = Some((Authorization::Accepted, Duration::from_secs(30)));
        sim.stop_after = Some((3, StopKind::Terminate));
        sim.run(Duration::from_secs(600));
        assert_eq!(sim.evcc_end, Some(EndReason::Finished));
        let processing: Vec<String> = sim
            .to_evcc
            .iter()
            .filter(|b| body_name(b) == "AuthorizationRes")
            .map(|b| {
                decode_json(b)["AuthorizationRes"]["EVSEProcessing"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(processing.len(), 301);
        assert!(processing[..300].iter().all(|p| p == "Ongoing"));
        assert_eq!(processing[300], "Finished");
        let asked = sim
            .evse_requests
            .iter()
            .filter(|r| matches!(r, EvseRequest::Authorize { evcc_id } if evcc_id == &EVCC_ID))
            .count();
        assert_eq!(asked, 1);
    }
}

#[test]
fn rejected_authorization_fails_the_session() {
    let mut sim = Sim::ac();
    sim.auth = Some((Authorization::Rejected, Duration::from_secs(1)));
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.secc_end, Some(EndReason::AuthorizationRejected));
    assert_eq!(
        sim.evcc_end,
        Some(EndReason::Failed {
            response_code: "FAILED".into()
        })
    );
}

fn pause_then_resume(dc: bool) {
    // first connection: 3 loops, then SessionStop(Pause)
    let mut sim = Sim::of(dc);
    sim.stop_after = Some((3, StopKind::Pause));
    sim.run(Duration::from_secs(600));
    let paused = EndReason::Paused {
        session_id: SESSION.to_vec(),
    };
    assert_eq!(sim.secc_end, Some(paused.clone()));
    assert_eq!(sim.evcc_end, Some(paused));
    assert_eq!(
        decode_json(sim.to_secc.last().unwrap())["SessionStopReq"]["ChargingSession"],
        "Pause"
    );
    assert_eq!(sim.progress(), ["Start", "Stop"]);

    // second connection: a SECC whose new id would be OTHER, told the paused one
    let evcc = if dc {
        EvccConfig::iso2_dc(EVCC_ID.to_vec())
    } else {
        EvccConfig::iso2_ac(EVCC_ID.to_vec())
    };
    let mut sim = Sim::new(
        SeccConfig::new(OTHER.to_vec()).with_resume(Some(PausedSession {
            session_id: SESSION.to_vec(),
        })),
        evcc.with_resume(Some(SESSION.to_vec())),
    );
    sim.stop_after = Some((2, StopKind::Terminate));
    sim.run(Duration::from_secs(600));
    assert_eq!(sim.secc_end, Some(EndReason::Finished));
    assert_eq!(sim.evcc_end, Some(EndReason::Finished));
    assert_eq!(
        sim.answers()[0],
        ("SessionSetupRes".into(), "OK_OldSessionJoined".into())
    );
    assert_eq!(sim.secc.session_id(), Some(&SESSION[..]));
    assert_eq!(sim.evcc.session_id(), Some(&SESSION[..]));
    // every message of the resumed session carries the old id
    for b in sim.to_secc.iter().skip(1).chain(&sim.to_evcc[1..]) {
        assert_eq!(decode_msg(b).unwrap().header.session_id.0, SESSION);
    }
    assert_eq!(sim.evcc.charge_loops(), 2);
}

#[test]
fn pause_and_resume_ac() {
    pause_then_resume(false);
}

#[test]
fn pause_and_resume_dc() {
    pause_then_resume(true);
}

#[test]
fn resume_with_an_unknown_id_starts_a_new_session() {
    let mut sim = Sim::new(
        SeccConfig::new(OTHER.to_vec()).with_resume(Some(PausedSession {
            session_id: SESSION.to_vec(),
        })),
        EvccConfig::iso2_ac(EVCC_ID.to_vec()).with_resume(Some(vec![7, 7, 7])),
    );
    sim.stop_after = Some((1, StopKind::Terminate));
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.evcc_end, Some(EndReason::Finished));
    assert_eq!(
        sim.answers()[0],
        ("SessionSetupRes".into(), "OK_NewSessionEstablished".into())
    );
    assert_eq!(sim.evcc.session_id(), Some(&OTHER[..]));
}

fn renegotiate(dc: bool) -> Sim {
    let mut sim = Sim::of(dc);
    sim.schedules = VecDeque::from([
        vec![],
        vec![ScheduleTuple {
            id: 2,
            entries: vec![(0, 7_000.0), (1800, 3_000.0)],
            duration: 3600,
        }],
    ]);
    let mut asked = false;
    sim.hook = Box::new(move |secc, _, evcc| {
        if !asked && evcc.charge_loops() == 3 {
            asked = true;
            secc.request_renegotiation();
        }
    });
    sim.stop_after = Some((8, StopKind::Terminate));
    sim.run(Duration::from_secs(600));
    sim
}

#[test]
fn renegotiation_ac_and_dc() {
    for dc in [false, true] {
        let sim = renegotiate(dc);
        assert_eq!(sim.secc_end, Some(EndReason::Finished), "dc={dc}");
        assert_eq!(sim.evcc_end, Some(EndReason::Finished), "dc={dc}");
        assert_eq!(sim.progress(), ["Start", "Renegotiate", "Start", "Stop"]);
        let lp = if dc {
            "CurrentDemandReq"
        } else {
            "ChargingStatusReq"
        };
        let names: Vec<String> = sim.requests().into_iter().map(|(n, _)| n).collect();
        let i = names.iter().position(|n| n == lp).expect("a charge loop");
        assert_eq!(
            names[i..],
            [
                lp,
                "PowerDeliveryReq",
                "ChargeParameterDiscoveryReq",
                "PowerDeliveryReq",
                lp,
                "PowerDeliveryReq",
            ]
            .into_iter()
            .chain(dc.then_some("WeldingDetectionReq"))
            .chain(["SessionStopReq"])
            .collect::<Vec<_>>()[..]
        );
        // no second cable check, the power stayed on
        assert_eq!(
            names.iter().filter(|n| *n == "CableCheckReq").count(),
            usize::from(dc)
        );
        assert_eq!(
            sim.evse_requests
                .iter()
                .filter(|r| **r == EvseRequest::Power(true))
                .count(),
            1
        );
        let renegotiations: Vec<bool> = sim
            .evse_requests
            .iter()
            .filter_map(|r| match r {
                EvseRequest::Schedules { renegotiation, .. } => Some(*renegotiation),
                _ => None,
            })
            .collect();
        assert_eq!(renegotiations, [false, true]);
        // the notification was sent, then cleared by PowerDelivery(Renegotiate)
        let notes: Vec<String> = sim
            .to_evcc
            .iter()
            .filter(|b| decode_msg(b).is_some())
            .filter_map(|b| {
                let j = decode_json(b);
                let s = if dc {
                    j["CurrentDemandRes"]["DC_EVSEStatus"]["EVSENotification"].clone()
                } else {
                    j["ChargingStatusRes"]["AC_EVSEStatus"]["EVSENotification"].clone()
                };
                s.as_str().map(str::to_string)
            })
            .collect();
        assert_eq!(
            notes.iter().filter(|n| *n == "ReNegotiation").count(),
            1,
            "{notes:?}"
        );
        assert_eq!(sim.evcc.iso2().unwrap().renegotiations(), 1);
        assert_eq!(sim.evcc.iso2().unwrap().schedule_tuple_id(), Some(2));
        assert_eq!(sim.secc.iso2().unwrap().schedule_tuple_id(), Some(2));
        // the second PowerDelivery(Start) asks for the new tuple within its PMax
        let starts: Vec<serde_json::Value> = sim
            .to_secc
            .iter()
            .filter(|b| body_name(b) == "PowerDeliveryReq")
            .map(|b| decode_json(b)["PowerDeliveryReq"].clone())
            .filter(|p| p["ChargeProgress"] == "Start")
            .collect();
        assert_eq!(starts[1]["SAScheduleTupleID"], 2);
        let p = &starts[1]["ChargingProfile"]["ProfileEntry"][0]["ChargingProfileEntryMaxPower"];
        assert_eq!(
            p["Value"].as_f64().unwrap() * 10f64.powi(p["Multiplier"].as_i64().unwrap() as i32),
            7000.0
        );
        assert_eq!(sim.evcc.charge_loops(), 8);
    }
}

#[test]
fn wrong_energy_mode_is_refused() {
    let mut sim = Sim::new(
        SeccConfig::new(SESSION.to_vec()).with_energy_modes(vec![EnergyMode::DcExtended]),
        EvccConfig::iso2_ac(EVCC_ID.to_vec()),
    );
    sim.run(Duration::from_secs(60));
    let code = "FAILED_WrongEnergyTransferMode".to_string();
    assert_eq!(
        sim.answers().last().unwrap(),
        &("ChargeParameterDiscoveryRes".to_string(), code.clone())
    );
    assert_eq!(
        sim.secc_end,
        Some(EndReason::Failed {
            response_code: code.clone()
        })
    );
    assert_eq!(
        sim.evcc_end,
        Some(EndReason::Failed {
            response_code: code
        })
    );
    // the ServiceDiscoveryRes listed only DC
    let sd = decode_json(
        sim.to_evcc
            .iter()
            .find(|b| body_name(b) == "ServiceDiscoveryRes")
            .unwrap(),
    );
    assert_eq!(
        sd["ServiceDiscoveryRes"]["ChargeService"]["SupportedEnergyTransferMode"]
            ["EnergyTransferMode"],
        serde_json::json!(["DC_extended"])
    );
}

#[test]
fn emergency_stop_ac_and_dc() {
    for dc in [false, true] {
        let mut sim = Sim::of(dc);
        sim.hook = Box::new(|secc, evse, evcc| {
            if evcc.charge_loops() == 10 && !evse.emergency_stop {
                evse.emergency_stop = true;
                secc.set_evse(evse.clone());
            }
        });
        sim.run(Duration::from_secs(600));
        assert_eq!(sim.secc_end, Some(EndReason::EmergencyStop));
        assert_eq!(sim.evcc.charge_loops(), 10);
        let json = decode_json(sim.to_evcc.last().unwrap());
        if dc {
            assert_eq!(sim.evcc_end, Some(EndReason::EmergencyStop));
            assert_eq!(json["CurrentDemandRes"]["ResponseCode"], "FAILED");
            assert_eq!(
                json["CurrentDemandRes"]["DC_EVSEStatus"]["EVSEStatusCode"],
                "EVSE_EmergencyShutdown"
            );
        } else {
            assert_eq!(
                sim.evcc_end,
                Some(EndReason::Failed {
                    response_code: "FAILED".into()
                })
            );
            assert_eq!(json["ChargingStatusRes"]["ResponseCode"], "FAILED");
            assert_eq!(
                json["ChargingStatusRes"]["AC_EVSEStatus"]["EVSENotification"],
                "StopCharging"
            );
        }
    }
}

#[test]
fn isolation_fault_at_cable_check_and_in_the_loop() {
    let mut sim = Sim::dc();
    sim.isolation = Some((Isolation::Fault, Duration::from_millis(250)));
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.secc_end, Some(EndReason::IsolationFault));
    assert_eq!(sim.evcc_end, Some(EndReason::IsolationFault));
    let json = decode_json(sim.to_evcc.last().unwrap());
    assert_eq!(json["CableCheckRes"]["ResponseCode"], "FAILED");
    assert_eq!(
        json["CableCheckRes"]["DC_EVSEStatus"]["EVSEIsolationStatus"],
        "Fault"
    );
    assert_eq!(
        json["CableCheckRes"]["DC_EVSEStatus"]["EVSEStatusCode"],
        "EVSE_Malfunction"
    );
    assert!(!sim.evse_requests.contains(&EvseRequest::Power(true)));

    let mut sim = Sim::dc();
    sim.hook = Box::new(|secc, evse, evcc| {
        if evcc.charge_loops() == 4 && evse.isolation != Isolation::Fault {
            evse.isolation = Isolation::Fault;
            secc.set_evse(evse.clone());
        }
    });
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.secc_end, Some(EndReason::IsolationFault));
    assert_eq!(sim.evcc_end, Some(EndReason::IsolationFault));
    assert_eq!(sim.evcc.charge_loops(), 4);
    assert_eq!(
        decode_json(sim.to_evcc.last().unwrap())["CurrentDemandRes"]["ResponseCode"],
        "FAILED"
    );
}

#[test]
fn secc_sequence_timeout_ends_the_session() {
    let mut sim = Sim::ac();
    sim.lose_answer = Box::new(|b| body_name(b) == "ServiceDiscoveryRes");
    let start = sim.clock.now();
    sim.run(Duration::from_secs(59));
    assert_eq!(sim.secc_end, None);
    assert_eq!(
        sim.evcc_end,
        Some(EndReason::Timeout(TimerKind::EvccMsg(
            MsgKind::ServiceDiscovery
        )))
    );
    sim.run(Duration::from_secs(5));
    assert_eq!(
        sim.secc_end,
        Some(EndReason::Timeout(TimerKind::SeccSequence))
    );
    assert_eq!(sim.clock.now() - start, Duration::from_secs(60));
}

#[test]
fn evcc_message_timeouts_follow_the_iso2_table() {
    // CurrentDemand 250 ms (DC), PowerDelivery 5 s (-2; DIN 2 s), ChargingStatus 2 s (AC)
    for (dc, lost, nth, kind, after) in [
        (true, "CurrentDemandRes", 7, MsgKind::CurrentDemand, 250u64),
        (false, "PowerDeliveryRes", 1, MsgKind::PowerDelivery, 5000),
        (false, "ChargingStatusRes", 3, MsgKind::ChargingStatus, 2000),
    ] {
        let mut sim = Sim::of(dc);
        let mut seen = 0;
        sim.lose_answer = Box::new(move |b| {
            if body_name(b) == lost {
                seen += 1;
                return seen == nth;
            }
            false
        });
        sim.run(Duration::from_secs(30));
        assert_eq!(
            sim.evcc_end,
            Some(EndReason::Timeout(TimerKind::EvccMsg(kind)))
        );
        // the unanswered request was the last one, sent exactly `after` before the end
        assert_eq!(
            body_name(sim.to_secc.last().unwrap()),
            lost.replace("Res", "Req")
        );
        assert_eq!(
            sim.evcc_end_at.unwrap() - *sim.sent_at.last().unwrap(),
            Duration::from_millis(after)
        );
        if lost != "PowerDeliveryRes" {
            assert_eq!(sim.evcc.charge_loops(), nth - 1);
        }
        // the SECC waits for its sequence timeout
        assert_eq!(sim.secc_end, None);
        sim.run(Duration::from_secs(61));
        assert_eq!(
            sim.secc_end,
            Some(EndReason::Timeout(TimerKind::SeccSequence))
        );
    }
}

/// `TimerConfig::current_demand` replaces the 250 ms of CurrentDemand
/// (for slow peers such as Josev's SECC); the other timers keep the table's.
#[test]
fn a_raised_current_demand_timeout_is_the_one_armed() {
    let mut evcc = EvccConfig::iso2_dc(EVCC_ID.to_vec());
    evcc.timers.current_demand = Duration::from_millis(1500);
    assert_eq!(
        evcc.timers
            .evcc_msg_timeout(Standard::Iso15118_2, MsgKind::PowerDelivery),
        Duration::from_secs(5)
    );
    let mut sim = Sim::new(SeccConfig::new(SESSION.to_vec()), evcc);
    let mut seen = 0;
    sim.lose_answer = Box::new(move |b| {
        if body_name(b) == "CurrentDemandRes" {
            seen += 1;
            return seen == 4;
        }
        false
    });
    sim.run(Duration::from_secs(30));
    assert_eq!(
        sim.evcc_end,
        Some(EndReason::Timeout(TimerKind::EvccMsg(
            MsgKind::CurrentDemand
        )))
    );
    assert_eq!(
        sim.evcc_end_at.unwrap() - *sim.sent_at.last().unwrap(),
        Duration::from_millis(1500)
    );
    assert_eq!(sim.evcc.charge_loops(), 3);
}

#[test]
fn evcc_ongoing_and_cable_check_and_precharge_timeouts() {
    let mut sim = Sim::ac();
    sim.auth = None;
    let start = sim.clock.now();
    sim.run(Duration::from_secs(120));
    assert_eq!(
        sim.evcc_end,
        Some(EndReason::Timeout(TimerKind::EvccOngoing))
    );
    let after = sim.evcc_end_at.unwrap() - start;
    assert!(after >= Duration::from_secs(60) && after < Duration::from_secs(61));

    let mut sim = Sim::dc();
    sim.isolation = None;
    sim.run(Duration::from_secs(120));
    assert_eq!(
        sim.evcc_end,
        Some(EndReason::Timeout(TimerKind::CableCheck))
    );

    let mut sim = Sim::dc();
    sim.follow_targets = false;
    sim.run(Duration::from_secs(120));
    assert_eq!(sim.evcc_end, Some(EndReason::Timeout(TimerKind::PreCharge)));
}

// ---- the SECC against scripted requests ----

/// The EVCC's requests of a run where the EVSE decides at once, with one
/// renegotiation, to replay into fresh SECCs.
fn script(dc: bool) -> Vec<Vec<u8>> {
    let mut sim = Sim::of(dc);
    sim.auth = Some((Authorization::Accepted, Duration::ZERO));
    sim.isolation = Some((Isolation::Valid, Duration::ZERO));
    let mut asked = false;
    sim.hook = Box::new(move |secc, _, evcc| {
        if !asked && evcc.charge_loops() == 1 {
            asked = true;
            secc.request_renegotiation();
        }
    });
    sim.stop_after = Some((3, StopKind::Terminate));
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.secc_end, Some(EndReason::Finished));
    assert_eq!(sim.progress(), ["Start", "Renegotiate", "Start", "Stop"]);
    sim.to_secc
}

fn mode(dc: bool) -> EnergyMode {
    if dc {
        EnergyMode::DcExtended
    } else {
        EnergyMode::AcThreePhaseCore
    }
}

#[test]
fn every_message_out_of_order_is_a_sequence_error_in_every_state() {
    for dc in [false, true] {
        let script = script(dc);
        let mut checked = 0;
        let mut states = std::collections::HashSet::new();
        for k in 1..script.len() {
            let (probe, _) = replay(&script[..k]);
            let state = probe.iso2().unwrap().state();
            states.insert(state);
            let id = probe.session_id().map(<[u8]>::to_vec).unwrap_or(vec![0]);
            for req in iso2::Request::ALL {
                if state.allows(req) {
                    continue;
                }
                let (mut secc, now) = replay(&script[..k]);
                secc.handle_message(now, &iso2::encode_request(&id, mode(dc), req));
                let Some(Effect::Transmit(res)) = secc.poll_effect() else {
                    panic!("{state:?} {req:?}: no answer")
                };
                assert_eq!(
                    iso2::response_code(&res),
                    Some((format!("{req:?}Res"), "FAILED_SequenceError".into())),
                    "{state:?} {req:?}"
                );
                assert_eq!(ended(&mut secc), Some(EndReason::SequenceError));
                assert_eq!(secc.poll_effect(), None);
                assert_eq!(secc.poll_timeout(), None);
                checked += 1;
            }
        }
        // AC: 8 states from SessionSetup to AcPostCharge; DC: 10
        assert_eq!(states.len(), if dc { 10 } else { 8 }, "{states:?}");
        assert!(checked > 150, "{checked}");
    }
}

/// A PowerDeliveryReq with this progress, tuple 1, no profile.
fn power_delivery(
    id: &[u8],
    dc: bool,
    progress: m::ChargeProgressType,
    tuple: u8,
    pmax: Option<f64>,
) -> Vec<u8> {
    let mut b = iso2::sample_request(mode(dc), iso2::Request::PowerDelivery);
    let r = b.power_delivery_req.as_mut().unwrap();
    r.charge_progress = progress;
    r.sa_schedule_tuple_id = tuple;
    r.charging_profile = pmax.map(|p| m::ChargingProfileType {
        profile_entry: vec![m::ProfileEntryType {
            charging_profile_entry_start: 0,
            charging_profile_entry_max_power: m::PhysicalValueType {
                multiplier: 1,
                unit: m::UnitSymbolType::W,
                value: (p / 10.0) as i16,
            },
            charging_profile_entry_max_number_of_phases_in_use: None,
        }],
    });
    iso2::encode_message(id, b).unwrap()
}

/// The index of the first script message the SECC answers in `state`.
fn prefix_in(script: &[Vec<u8>], state: iso2::SeccState) -> usize {
    (1..script.len())
        .find(|k| replay(&script[..*k]).0.iso2().unwrap().state() == state)
        .unwrap_or_else(|| panic!("{state:?} not reached"))
}

#[test]
fn charge_progress_out_of_order_is_a_sequence_error() {
    use iso2::SeccState as S;
    use m::ChargeProgressType as P;
    let cases = [
        (true, S::PreCharge, P::Renegotiate),
        (true, S::DcChargeLoop, P::Start),
        (false, S::PowerDelivery, P::Renegotiate),
        (false, S::AcChargeLoop, P::Start),
    ];
    for (dc, state, progress) in cases {
        let script = script(dc);
        let k = prefix_in(&script, state);
        let (mut secc, now) = replay(&script[..k]);
        secc.handle_message(now, &power_delivery(&SESSION, dc, progress, 1, None));
        let Some(Effect::Transmit(res)) = secc.poll_effect() else {
            panic!()
        };
        assert_eq!(
            iso2::response_code(&res).unwrap().1,
            "FAILED_SequenceError",
            "{state:?} {progress:?}"
        );
        assert_eq!(ended(&mut secc), Some(EndReason::SequenceError));
    }
}

#[test]
fn schedule_tuple_and_charging_profile_are_checked() {
    let script = script(false);
    let k = prefix_in(&script, iso2::SeccState::PowerDelivery);
    // the default tuple: id 1, PMax = the EVSE's 50 kW
    for (tuple, pmax, code) in [
        (7u8, None, Some("FAILED_TariffSelectionInvalid")),
        (1, Some(60_000.0), Some("FAILED_ChargingProfileInvalid")),
        (1, Some(50_000.0), None),
        (1, None, None),
    ] {
        let (mut secc, now) = replay(&script[..k]);
        secc.handle_message(
            now,
            &power_delivery(&SESSION, false, m::ChargeProgressType::Start, tuple, pmax),
        );
        let mut power = Vec::new();
        let res = loop {
            match secc.poll_effect() {
                Some(Effect::Transmit(res)) => break res,
                Some(Effect::Evse(r)) => power.push(r),
                other => panic!("{other:?}"),
            }
        };
        // the contactors close only on an accepted start
        assert_eq!(power.is_empty(), code.is_some());
        let got = iso2::response_code(&res).unwrap().1;
        match code {
            Some(c) => {
                assert_eq!(got, c);
                assert_eq!(
                    ended(&mut secc),
                    Some(EndReason::Failed {
                        response_code: c.into()
                    })
                );
            }
            None => {
                assert_eq!(got, "OK");
                assert_eq!(secc.iso2().unwrap().state(), iso2::SeccState::AcChargeLoop);
            }
        }
    }
}

#[test]
fn contract_payment_and_other_services_are_refused() {
    let script = script(true);
    let k = prefix_in(&script, iso2::SeccState::PaymentServiceSelection);
    let select = |option, ids: &[u16]| {
        let mut b = iso2::sample_request(
            EnergyMode::DcExtended,
            iso2::Request::PaymentServiceSelection,
        );
        let r = b.payment_service_selection_req.as_mut().unwrap();
        r.selected_payment_option = option;
        r.selected_service_list.selected_service = ids
            .iter()
            .map(|id| m::SelectedServiceType {
                service_id: *id,
                parameter_set_id: None,
            })
            .collect();
        iso2::encode_message(&SESSION, b).unwrap()
    };
    let detail = |id| {
        let mut b = iso2::sample_request(EnergyMode::DcExtended, iso2::Request::ServiceDetail);
        b.service_detail_req.as_mut().unwrap().service_id = id;
        iso2::encode_message(&SESSION, b).unwrap()
    };
    for (msg, code) in [
        (
            select(m::PaymentOptionType::Contract, &[1]),
            "FAILED_PaymentSelectionInvalid",
        ),
        (
            select(m::PaymentOptionType::ExternalPayment, &[1, 2]),
            "FAILED_ServiceSelectionInvalid",
        ),
        (
            select(m::PaymentOptionType::ExternalPayment, &[2]),
            "FAILED_NoChargeServiceSelected",
        ),
        (detail(5), "FAILED_ServiceIDInvalid"),
    ] {
        let (mut secc, now) = replay(&script[..k]);
        secc.handle_message(now, &msg);
        let Some(Effect::Transmit(res)) = secc.poll_effect() else {
            panic!()
        };
        assert_eq!(iso2::response_code(&res).unwrap().1, code);
        assert_eq!(
            ended(&mut secc),
            Some(EndReason::Failed {
                response_code: code.into()
            })
        );
    }
    // ServiceDetail of the charge service is answered, and the selection follows
    let (mut secc, now) = replay(&script[..k]);
    secc.handle_message(now, &detail(1));
    let Some(Effect::Transmit(res)) = secc.poll_effect() else {
        panic!()
    };
    assert_eq!(
        iso2::response_code(&res).unwrap(),
        ("ServiceDetailRes".into(), "OK".into())
    );
    secc.handle_message(now, &select(m::PaymentOptionType::ExternalPayment, &[1]));
    let _ = secc.poll_effect();
    assert_eq!(secc.iso2().unwrap().state(), iso2::SeccState::Authorization);
    // the ServiceDiscoveryRes offered ExternalPayment only
    let (mut secc, now) = replay(&script[..k - 1]);
    secc.handle_message(now, &script[k - 1]);
    let Some(Effect::Transmit(res)) = secc.poll_effect() else {
        panic!()
    };
    assert_eq!(
        decode_json(&res)["ServiceDiscoveryRes"]["PaymentOptionList"]["PaymentOption"],
        serde_json::json!(["ExternalPayment"])
    );
}

#[test]
fn a_changed_mode_at_renegotiation_and_a_wrong_parameter_are_refused() {
    // AC mode with a DC parameter
    let script = script(false);
    let k = prefix_in(&script, iso2::SeccState::ChargeParameterDiscovery);
    let mut b = iso2::sample_request(
        EnergyMode::DcExtended,
        iso2::Request::ChargeParameterDiscovery,
    );
    b.charge_parameter_discovery_req
        .as_mut()
        .unwrap()
        .requested_energy_transfer_mode = m::EnergyTransferModeType::AcThreePhaseCore;
    let (mut secc, now) = replay(&script[..k]);
    secc.handle_message(now, &iso2::encode_message(&SESSION, b).unwrap());
    let Some(Effect::Transmit(res)) = secc.poll_effect() else {
        panic!()
    };
    assert_eq!(
        iso2::response_code(&res).unwrap().1,
        "FAILED_WrongChargeParameter"
    );

    // after an AC start, a renegotiation asking for DC
    let names: Vec<String> = script.iter().map(|b| body_name(b)).collect();
    let renegotiate = names
        .iter()
        .enumerate()
        .filter(|(_, n)| *n == "PowerDeliveryReq")
        .nth(1)
        .unwrap()
        .0;
    let (mut secc, now) = replay(&script[..=renegotiate]);
    assert_eq!(
        secc.iso2().unwrap().state(),
        iso2::SeccState::ChargeParameterDiscovery
    );
    secc.handle_message(
        now,
        &iso2::encode_request(
            &SESSION,
            EnergyMode::DcExtended,
            iso2::Request::ChargeParameterDiscovery,
        ),
    );
    let Some(Effect::Transmit(res)) = secc.poll_effect() else {
        panic!()
    };
    assert_eq!(
        iso2::response_code(&res).unwrap().1,
        "FAILED_WrongEnergyTransferMode"
    );
}

#[test]
fn unknown_session_id_is_refused() {
    for dc in [false, true] {
        let script = script(dc);
        for k in [3usize, 8, script.len() - 2] {
            let (probe, _) = replay(&script[..k]);
            let state = probe.iso2().unwrap().state();
            let req = iso2::Request::ALL
                .into_iter()
                .find(|r| state.allows(*r))
                .unwrap();
            let (mut secc, now) = replay(&script[..k]);
            secc.handle_message(now, &iso2::encode_request(&[9, 9, 9, 9], mode(dc), req));
            let Some(Effect::Transmit(res)) = secc.poll_effect() else {
                panic!()
            };
            assert_eq!(
                iso2::response_code(&res),
                Some((format!("{req:?}Res"), "FAILED_UnknownSession".into()))
            );
            assert_eq!(ended(&mut secc), Some(EndReason::UnknownSession));
        }
    }
}

#[test]
fn garbage_and_din_bytes_end_the_session_without_an_answer() {
    let script = script(true);
    let (mut secc, now) = replay(&script[..4]);
    // a DIN message is no -2 message
    let din = evproto_iso15118::session::din::encode_request(
        &SESSION,
        evproto_iso15118::session::din::Request::ContractAuthentication,
    );
    secc.handle_message(now, &din);
    assert!(matches!(
        secc.poll_effect(),
        Some(Effect::SessionEnded {
            reason: EndReason::Malformed(_)
        })
    ));
    assert_eq!(secc.poll_effect(), None);
    secc.handle_message(now, &script[4]);
    assert_eq!(secc.poll_effect(), None);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Random sequences of valid -2 requests (AC or DC bodies, right or
        /// wrong session id, random EVSE decisions, renegotiation requests
        /// and time steps): the SECC never panics, every answer is a -2
        /// response to the request, a FAILED answer ends the session, and
        /// nothing comes after the end.
        #[test]
        fn secc_answers_anything_cleanly(
            steps in proptest::collection::vec(
                (0usize..17, any::<bool>(), any::<bool>(), 0u8..8, 0u64..3000), 1..40)
        ) {
            let script = script(true);
            let mut clock = VirtualClock::new();
            let mut secc = Secc::new(SeccConfig::new(SESSION.to_vec()), clock.now());
            secc.handle_message(clock.now(), &script[0]);
            let _ = secc.poll_effect();
            prop_assert_eq!(secc.protocol(), Some(Protocol::Iso2));
            let mut ended = false;
            for (kind, right_id, dc, action, ms) in steps {
                clock.advance(Duration::from_millis(ms));
                let now = clock.now();
                match action {
                    0 => secc.handle_authorization(now, Authorization::Accepted),
                    1 => secc.handle_authorization(now, Authorization::Rejected),
                    2 => {
                        let mut e = secc.evse().clone();
                        e.isolation = Isolation::Valid;
                        e.present_voltage = 400.0;
                        secc.set_evse(e);
                    }
                    3 => secc.handle_schedules(now, vec![]),
                    4 => secc.request_renegotiation(),
                    5 => {
                        let mut e = secc.evse().clone();
                        e.meter_wh = Some(ms);
                        secc.set_evse(e);
                    }
                    _ => {}
                }
                if secc.poll_timeout().is_some_and(|t| t <= now) {
                    secc.handle_timeout(now);
                }
                let id = if right_id { SESSION.to_vec() } else { vec![0] };
                let req = iso2::Request::ALL[kind];
                secc.handle_message(now, &iso2::encode_request(&id, mode(dc), req));
                while let Some(e) = secc.poll_effect() {
                    prop_assert!(!ended, "effect after the end: {:?}", e);
                    match e {
                        Effect::Transmit(b) => {
                            let (name, code) = iso2::response_code(&b).expect("a -2 response");
                            prop_assert_eq!(name, format!("{req:?}Res"));
                            if !code.starts_with("OK") {
                                prop_assert!(secc.ended().is_some(), "{} without an end", code);
                            }
                        }
                        Effect::SessionEnded { .. } => ended = true,
                        Effect::Evse(_) => {}
                        other => prop_assert!(false, "{:?}", other),
                    }
                }
            }
        }
    }
}

// ---- Plug & Charge ----

mod pnc {
    use super::*;
    use evproto_iso15118::pki::demo::{issue, DemoPki, Role};
    use evproto_iso15118::pki::TrustStore;
    use evproto_iso15118::session::{
        Contract, ContractProvisioning, ContractStatus, EvPnc, Provisioning, SeccPnc,
    };
    use std::sync::OnceLock;

    /// 2026-05-28: the machines' Unix time; the demo PKI is valid 2023..2030.
    const NOW: u64 = 1_780_000_000;
    const CHALLENGE: [u8; 16] = [0xc5; 16];

    fn pki() -> &'static DemoPki {
        static P: OnceLock<DemoPki> = OnceLock::new();
        P.get_or_init(|| {
            DemoPki::generate(
                b"evproto test",
                "DEEVPC000000001",
                1_690_000_000,
                1_900_000_000,
            )
            .unwrap()
        })
    }

    fn foreign() -> &'static DemoPki {
        static P: OnceLock<DemoPki> = OnceLock::new();
        P.get_or_init(|| {
            DemoPki::generate(
                b"someone else",
                "DEXYZC000000001",
                1_690_000_000,
                1_900_000_000,
            )
            .unwrap()
        })
    }

    fn contract_of(p: &DemoPki) -> Contract {
        Contract::new(
            p.emaid.clone(),
            p.contract.cert.der().to_vec(),
            p.contract_sub_cas(),
            p.contract.key_bytes(),
        )
    }

    fn v2g_roots() -> TrustStore {
        TrustStore::new(vec![pki().v2g_root.cert.clone()])
    }

    fn sim(dc: bool, contract: Option<Contract>) -> Sim {
        sim_renewing(dc, contract, None)
    }

    fn sim_renewing(dc: bool, contract: Option<Contract>, renew_within: Option<u64>) -> Sim {
        let p = pki();
        let secc = SeccConfig::new(SESSION.to_vec())
            .with_unix_time(NOW)
            .with_pnc(Some(SeccPnc::new(
                TrustStore::new(vec![p.mo_root.cert.clone()]),
                CHALLENGE,
            )));
        let evcc = if dc {
            EvccConfig::iso2_dc(EVCC_ID.to_vec())
        } else {
            EvccConfig::iso2_ac(EVCC_ID.to_vec())
        };
        let provisioning = Provisioning::new(
            p.oem_provisioning.cert.der().to_vec(),
            p.oem_provisioning.key_bytes(),
        );
        let evcc = evcc.with_unix_time(NOW).with_pnc(Some(
            EvPnc::new(contract, Some(provisioning), v2g_roots()).with_renewal(renew_within),
        ));
        let mut sim = Sim::new(secc, evcc);
        sim.provisioning = Some(ContractProvisioning {
            cps_key: p.cps.key.clone(),
            cps_certificate: p.cps.cert.der().to_vec(),
            cps_sub_cas: p.cps_sub_cas(),
            contract: contract_of(p),
        });
        sim
    }

    /// Both sides finished: the car's requests, runs collapsed.
    fn finished_requests(sim: &Sim, dc: bool) -> Vec<String> {
        assert_eq!(
            (&sim.secc_end, &sim.evcc_end),
            (&Some(EndReason::Finished), &Some(EndReason::Finished)),
            "dc={dc} {:?}",
            sim.answers()
        );
        sim.requests().into_iter().map(|(n, _)| n).collect()
    }

    fn position(names: &[String], n: &str) -> usize {
        names
            .iter()
            .position(|x| x == n)
            .unwrap_or_else(|| panic!("{n} in {names:?}"))
    }

    fn answer_of<'a>(sim: &'a Sim, name: &str) -> Vec<&'a str> {
        let mut out = Vec::new();
        for (n, c) in sim.answers().iter() {
            if n == name {
                out.push(if c == "OK" { "OK" } else { "other" });
            }
        }
        out
    }

    fn failed_with(sim: &Sim, res: &str, code: &str) {
        let answers = sim.answers();
        assert_eq!(
            answers.last(),
            Some(&(res.to_string(), code.to_string())),
            "{answers:?}"
        );
        assert_eq!(
            sim.secc_end,
            Some(EndReason::Failed {
                response_code: code.into()
            })
        );
        assert_eq!(
            sim.evcc_end,
            Some(EndReason::Failed {
                response_code: code.into()
            })
        );
    }

    #[test]
    fn happy_path_ac_and_dc_with_a_signed_challenge_and_metering_receipt() {
        for dc in [false, true] {
            let mut sim = sim(dc, Some(contract_of(pki())));
            sim.stop_after = Some((3, StopKind::Terminate));
            sim.run(Duration::from_secs(120));
            let names = finished_requests(&sim, dc);
            let pos = |n: &str| position(&names, n);
            assert!(pos("PaymentServiceSelectionReq") < pos("PaymentDetailsReq"));
            assert!(pos("PaymentDetailsReq") < pos("AuthorizationReq"));
            assert!(!names.iter().any(|n| n == "CertificateInstallationReq"));
            assert_eq!(answer_of(&sim, "MeteringReceiptRes"), ["OK"], "dc={dc}");
            // Contract chosen, the challenge signed in the header
            let auth = sim
                .to_secc
                .iter()
                .find(|b| body_name(b) == "AuthorizationReq")
                .unwrap();
            let msg = decode_msg(auth).unwrap();
            assert_eq!(
                msg.body.authorization_req.unwrap().gen_challenge.unwrap().0,
                CHALLENGE
            );
            assert!(msg.header.signature.is_some());
            let pss = sim
                .to_secc
                .iter()
                .find(|b| body_name(b) == "PaymentServiceSelectionReq")
                .unwrap();
            assert_eq!(
                decode_json(pss)["PaymentServiceSelectionReq"]["SelectedPaymentOption"],
                "Contract"
            );
            assert_eq!(sim.secc.iso2().unwrap().emaid(), Some("DEEVPC000000001"));
            assert!(sim.evcc.charge_loops() >= 3);
        }
    }

    #[test]
    fn a_wrong_signature_is_failed_signature_error_and_ends_the_session() {
        let mut c = contract_of(pki());
        c.key = foreign().contract.key_bytes(); // signs with a key not the certificate's
        let mut sim = sim(true, Some(c));
        sim.run(Duration::from_secs(60));
        failed_with(&sim, "AuthorizationRes", "FAILED_SignatureError");
    }

    #[test]
    fn an_expired_contract_is_failed_certificate_expired() {
        let p = pki();
        let key = evproto_iso15118::pki::demo::derive_key(b"expired", "contract");
        let old = issue(
            "CN=DEEVPC000000001,O=evproto,DC=MO",
            &key,
            Some(&p.mo_sub_ca2),
            Role::Signer,
            99,
            1_690_000_000,
            NOW - 86_400,
        )
        .unwrap();
        let c = Contract::new(
            p.emaid.clone(),
            old.cert.der().to_vec(),
            p.contract_sub_cas(),
            old.key_bytes(),
        );
        let mut sim = sim(false, Some(c));
        sim.run(Duration::from_secs(60));
        failed_with(&sim, "PaymentDetailsRes", "FAILED_CertificateExpired");
    }

    #[test]
    fn a_contract_of_a_foreign_root_is_failed_cert_chain_error() {
        let mut sim = sim(true, Some(contract_of(foreign())));
        sim.run(Duration::from_secs(60));
        failed_with(&sim, "PaymentDetailsRes", "FAILED_CertChainError");
    }

    #[test]
    fn a_revoked_contract_is_failed_certificate_revoked_after_the_signature() {
        let mut sim = sim(true, Some(contract_of(pki())));
        sim.contract_status = Some(ContractStatus::Revoked);
        sim.run(Duration::from_secs(60));
        failed_with(&sim, "AuthorizationRes", "FAILED_CertificateRevoked");
    }

    #[test]
    fn a_pending_verdict_is_ongoing_then_accepted() {
        let mut sim = sim(false, Some(contract_of(pki())));
        sim.contract_status = None;
        sim.stop_after = Some((1, StopKind::Terminate));
        sim.run(Duration::from_secs(2));
        assert_eq!(sim.secc_end, None);
        let auths = sim
            .requests()
            .into_iter()
            .find(|(n, _)| n == "AuthorizationReq")
            .unwrap()
            .1;
        assert!(auths >= 5, "{auths} AuthorizationReq while Ongoing");
        let now = sim.clock.now();
        sim.secc
            .handle_contract_status(now, ContractStatus::Accepted);
        sim.run(Duration::from_secs(60));
        assert_eq!(sim.evcc_end, Some(EndReason::Finished));
    }

    #[test]
    fn without_a_contract_the_car_installs_one_then_authorizes_with_it() {
        for dc in [false, true] {
            let mut sim = sim(dc, None);
            sim.stop_after = Some((2, StopKind::Terminate));
            sim.run(Duration::from_secs(120));
            assert_eq!(
                sim.evcc_end,
                Some(EndReason::Finished),
                "{:?}",
                sim.answers()
            );
            let names: Vec<String> = sim.requests().into_iter().map(|(n, _)| n).collect();
            let pos = |n: &str| names.iter().position(|x| x == n).unwrap();
            assert!(pos("CertificateInstallationReq") < pos("PaymentDetailsReq"));
            assert_eq!(answer_of(&sim, "CertificateInstallationRes"), ["OK"]);
            let installed = sim.evcc.iso2().unwrap().installed_contract().unwrap();
            assert_eq!(installed.emaid, "DEEVPC000000001");
            assert_eq!(installed.key, pki().contract.key_bytes());
        }
    }

    #[test]
    fn no_contract_at_the_backend_is_failed_no_certificate_available() {
        let mut sim = sim(true, None);
        sim.provisioning = None;
        sim.run(Duration::from_secs(60));
        failed_with(
            &sim,
            "CertificateInstallationRes",
            "FAILED_NoCertificateAvailable",
        );
    }

    #[test]
    fn an_installation_signed_by_a_foreign_provisioning_service_is_refused_by_the_car() {
        let f = foreign();
        let mut sim = sim(true, None);
        sim.provisioning = Some(ContractProvisioning {
            cps_key: f.cps.key.clone(),
            cps_certificate: f.cps.cert.der().to_vec(),
            cps_sub_cas: f.cps_sub_cas(),
            contract: contract_of(pki()),
        });
        sim.run(Duration::from_secs(60));
        match &sim.evcc_end {
            Some(EndReason::Failed { response_code }) => {
                assert!(
                    response_code.starts_with("FAILED_CertChainError"),
                    "{response_code}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    /// A contract of the test PKI's MO chain for its eMAID, ending at `end`
    /// (key from `label`).
    fn contract_ending(label: &str, end: u64) -> Contract {
        let p = pki();
        let key = evproto_iso15118::pki::demo::derive_key(label.as_bytes(), "contract");
        let c = issue(
            "CN=DEEVPC000000001,O=evproto,DC=MO",
            &key,
            Some(&p.mo_sub_ca2),
            Role::Signer,
            77,
            1_690_000_000,
            end,
        )
        .unwrap();
        Contract::new(
            p.emaid.clone(),
            c.cert.der().to_vec(),
            p.contract_sub_cas(),
            c.key_bytes(),
        )
    }

    /// A Plug & Charge session whose car renews a contract expiring
    /// within `renew_within` seconds.
    fn renewing(dc: bool, contract: Contract, renew_within: u64) -> Sim {
        sim_renewing(dc, Some(contract), Some(renew_within))
    }

    const DAY: u64 = 86_400;

    #[test]
    fn a_contract_near_its_end_is_renewed_by_certificate_update_then_authorizes() {
        for dc in [false, true] {
            // ten days left, renewed within thirty
            let old = contract_ending("old", NOW + 10 * DAY);
            let mut sim = renewing(dc, old.clone(), 30 * DAY);
            sim.stop_after = Some((2, StopKind::Terminate));
            sim.run(Duration::from_secs(120));
            let names = finished_requests(&sim, dc);
            let pos = |n: &str| position(&names, n);
            assert!(pos("PaymentServiceSelectionReq") < pos("CertificateUpdateReq"));
            assert!(pos("CertificateUpdateReq") < pos("PaymentDetailsReq"));
            assert!(!names.iter().any(|n| n == "CertificateInstallationReq"));
            assert_eq!(answer_of(&sim, "CertificateUpdateRes"), ["OK"]);
            // the SECC offered the Certificate service; the car selected its Update set
            let discovery = sim
                .to_evcc
                .iter()
                .find(|b| body_name(b) == "ServiceDiscoveryRes")
                .unwrap();
            assert_eq!(
                decode_json(discovery)["ServiceDiscoveryRes"]["ServiceList"]["Service"][0],
                serde_json::json!({"ServiceID": 2, "ServiceCategory": "ContractCertificate",
                    "FreeService": true})
            );
            let pss = sim
                .to_secc
                .iter()
                .find(|b| body_name(b) == "PaymentServiceSelectionReq")
                .unwrap();
            assert_eq!(
                decode_json(pss)["PaymentServiceSelectionReq"]["SelectedServiceList"]
                    ["SelectedService"],
                serde_json::json!([{"ServiceID": 1}, {"ServiceID": 2, "ParameterSetID": 2}])
            );
            // the request: the old chain and eMAID, signed by the old key
            let req = sim
                .to_secc
                .iter()
                .find(|b| body_name(b) == "CertificateUpdateReq")
                .unwrap();
            let msg = decode_msg(req).unwrap();
            assert!(msg.header.signature.is_some());
            let r = msg.body.certificate_update_req.unwrap();
            assert_eq!(
                r.contract_signature_cert_chain.certificate.0,
                old.certificate
            );
            assert_eq!(r.e_maid, "DEEVPC000000001");
            assert!(sim.evse_requests.iter().any(|r| matches!(r,
                EvseRequest::UpdateCertificate { emaid, certificate, .. }
                    if emaid == "DEEVPC000000001" && *certificate == old.certificate)));
            // the new contract replaced the old and authorized the session
            let iso = sim.evcc.iso2().unwrap();
            assert!(iso.contract_renewed());
            let new = iso.contract().unwrap();
            assert_eq!(new.key, pki().contract.key_bytes());
            assert_eq!(new.certificate, pki().contract.cert.der());
            let details = sim
                .to_secc
                .iter()
                .find(|b| body_name(b) == "PaymentDetailsReq")
                .unwrap();
            let d = decode_msg(details)
                .unwrap()
                .body
                .payment_details_req
                .unwrap();
            assert_eq!(
                d.contract_signature_cert_chain.certificate.0,
                new.certificate
            );
            assert_eq!(sim.secc.iso2().unwrap().emaid(), Some("DEEVPC000000001"));
        }
    }

    #[test]
    fn a_contract_far_from_its_end_is_not_renewed() {
        let mut sim = renewing(true, contract_of(pki()), 30 * DAY);
        sim.stop_after = Some((1, StopKind::Terminate));
        sim.run(Duration::from_secs(60));
        assert_eq!(sim.evcc_end, Some(EndReason::Finished));
        assert!(!sim
            .requests()
            .iter()
            .any(|(n, _)| n == "CertificateUpdateReq"));
        assert!(!sim.evcc.iso2().unwrap().contract_renewed());
        let pss = sim
            .to_secc
            .iter()
            .find(|b| body_name(b) == "PaymentServiceSelectionReq")
            .unwrap();
        assert_eq!(
            decode_json(pss)["PaymentServiceSelectionReq"]["SelectedServiceList"]
                ["SelectedService"],
            serde_json::json!([{"ServiceID": 1}])
        );
    }

    #[test]
    fn certificate_update_failures_are_typed_and_end_the_session() {
        // a contract of another MO root
        let mut sim = renewing(true, contract_of(foreign()), 100_000 * DAY);
        sim.run(Duration::from_secs(60));
        failed_with(&sim, "CertificateUpdateRes", "FAILED_CertChainError");
        // expired: an update cannot bring it back (installation can)
        let mut sim = renewing(true, contract_ending("expired", NOW - DAY), 30 * DAY);
        sim.run(Duration::from_secs(60));
        failed_with(&sim, "CertificateUpdateRes", "FAILED_CertificateExpired");
        // signed by a key not the certificate's
        let mut c = contract_ending("old", NOW + DAY);
        c.key = foreign().contract.key_bytes();
        let mut sim = renewing(false, c, 30 * DAY);
        sim.run(Duration::from_secs(60));
        failed_with(&sim, "CertificateUpdateRes", "FAILED_SignatureError");
        // an eMAID other than the certificate's
        let mut c = contract_ending("old", NOW + DAY);
        c.emaid = "DEEVPC000000002".into();
        let mut sim = renewing(true, c, 30 * DAY);
        sim.run(Duration::from_secs(60));
        failed_with(&sim, "CertificateUpdateRes", "FAILED_CertChainError");
        // the backend has no new contract
        let mut sim = renewing(true, contract_ending("old", NOW + DAY), 30 * DAY);
        sim.provisioning = None;
        sim.run(Duration::from_secs(60));
        failed_with(
            &sim,
            "CertificateUpdateRes",
            "FAILED_NoCertificateAvailable",
        );
        // none of these asked the backend but the last
        assert_eq!(
            sim.evse_requests
                .iter()
                .filter(|r| matches!(r, EvseRequest::UpdateCertificate { .. }))
                .count(),
            1
        );
    }

    #[test]
    fn an_update_the_car_cannot_decrypt_is_refused_by_the_car() {
        // the provisioning service encrypts for another certificate's key
        let mut sim = renewing(true, contract_ending("old", NOW + DAY), 30 * DAY);
        let p = pki();
        let prov = ContractProvisioning {
            cps_key: p.cps.key.clone(),
            cps_certificate: p.cps.cert.der().to_vec(),
            cps_sub_cas: p.cps_sub_cas(),
            contract: contract_of(p),
        };
        let other = contract_ending("another", NOW + DAY);
        let u = prov
            .update(&other.certificate, &[0x43; 32], [0x25; 16])
            .unwrap();
        sim.update_answer = Some(u);
        sim.run(Duration::from_secs(60));
        match &sim.evcc_end {
            Some(EndReason::Failed { response_code }) => assert!(
                !response_code.starts_with("FAILED_CertChainError"),
                "{response_code}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(!sim.evcc.iso2().unwrap().contract_renewed());
    }

    #[test]
    fn the_certificate_service_is_detailed_and_selected_with_pnc_only() {
        let p = pki();
        let pnc_secc = || {
            SeccConfig::new(SESSION.to_vec()).with_pnc(Some(SeccPnc::new(
                TrustStore::new(vec![p.mo_root.cert.clone()]),
                CHALLENGE,
            )))
        };
        let script = script(true);
        let k = prefix_in(&script, iso2::SeccState::PaymentServiceSelection);
        let replay_pnc = || {
            let clock = VirtualClock::new();
            let now = clock.now();
            let mut secc = Secc::new(pnc_secc(), now);
            for b in &script[..k] {
                secc.handle_message(now, b);
                while secc.poll_effect().is_some() {}
            }
            (secc, now)
        };
        let detail = |id| {
            let mut b = iso2::sample_request(EnergyMode::DcExtended, iso2::Request::ServiceDetail);
            b.service_detail_req.as_mut().unwrap().service_id = id;
            iso2::encode_message(&SESSION, b).unwrap()
        };
        let select = |option, services: &[(u16, Option<i16>)]| {
            let mut b = iso2::sample_request(
                EnergyMode::DcExtended,
                iso2::Request::PaymentServiceSelection,
            );
            let r = b.payment_service_selection_req.as_mut().unwrap();
            r.selected_payment_option = option;
            r.selected_service_list.selected_service = services
                .iter()
                .map(|(id, set)| m::SelectedServiceType {
                    service_id: *id,
                    parameter_set_id: *set,
                })
                .collect();
            iso2::encode_message(&SESSION, b).unwrap()
        };
        let answer = |secc: &mut Secc| {
            let Some(Effect::Transmit(res)) = secc.poll_effect() else {
                panic!()
            };
            res
        };
        // with Plug & Charge: ServiceDetail(2) names Installation and Update
        let (mut secc, now) = replay_pnc();
        assert_eq!(
            secc.iso2().unwrap().state(),
            iso2::SeccState::PaymentServiceSelection
        );
        secc.handle_message(now, &detail(2));
        let res = answer(&mut secc);
        let j = decode_json(&res);
        assert_eq!(j["ServiceDetailRes"]["ResponseCode"], "OK");
        assert_eq!(j["ServiceDetailRes"]["ServiceID"], 2);
        let sets = &j["ServiceDetailRes"]["ServiceParameterList"]["ParameterSet"];
        assert_eq!(sets[0]["ParameterSetID"], 1);
        assert_eq!(sets[0]["Parameter"][0]["stringValue"], "Installation");
        assert_eq!(sets[1]["ParameterSetID"], 2);
        assert_eq!(sets[1]["Parameter"][0]["stringValue"], "Update");
        secc.handle_message(
            now,
            &select(m::PaymentOptionType::Contract, &[(1, None), (2, Some(1))]),
        );
        assert_eq!(iso2::response_code(&answer(&mut secc)).unwrap().1, "OK");
        assert_eq!(
            secc.iso2().unwrap().state(),
            iso2::SeccState::PaymentDetails
        );
        // a parameter set the service does not have, or the service with EIM
        for msg in [
            select(m::PaymentOptionType::Contract, &[(1, None), (2, Some(3))]),
            select(
                m::PaymentOptionType::ExternalPayment,
                &[(1, None), (2, Some(1))],
            ),
        ] {
            let (mut secc, now) = replay_pnc();
            secc.handle_message(now, &msg);
            assert_eq!(
                iso2::response_code(&answer(&mut secc)).unwrap().1,
                "FAILED_ServiceSelectionInvalid"
            );
        }
        // without Plug & Charge there is no service 2
        let (mut secc, now) = replay(&script[..k]);
        secc.handle_message(now, &detail(2));
        assert_eq!(
            iso2::response_code(&answer(&mut secc)).unwrap().1,
            "FAILED_ServiceIDInvalid"
        );
    }

    #[test]
    fn the_secc_refuses_contract_payment_when_pnc_is_off_and_the_ev_falls_back_to_eim() {
        let p = pki();
        let evcc = EvccConfig::iso2_dc(EVCC_ID.to_vec()).with_pnc(Some(EvPnc::new(
            Some(contract_of(p)),
            None,
            v2g_roots(),
        )));
        let mut sim = Sim::new(SeccConfig::new(SESSION.to_vec()), evcc);
        sim.stop_after = Some((1, StopKind::Terminate));
        sim.run(Duration::from_secs(60));
        assert_eq!(sim.evcc_end, Some(EndReason::Finished));
        assert!(!sim.requests().iter().any(|(n, _)| n == "PaymentDetailsReq"));
    }

    #[test]
    fn a_tampered_metering_receipt_is_failed_metering_signature_not_valid() {
        // the meter reading changed on the way: the signature no longer covers it
        let mut sim = sim(true, Some(contract_of(pki())));
        sim.stop_after = Some((3, StopKind::Terminate));
        sim.tamper = Box::new(|b| {
            let mut msg = decode_msg(b)?;
            let r = msg.body.metering_receipt_req.as_mut()?;
            r.meter_info.meter_reading = Some(r.meter_info.meter_reading.unwrap_or(0) + 1);
            let mut out = Vec::new();
            m::Message::V2gMessage(Box::new(msg))
                .encode(&mut out)
                .ok()?;
            Some(out)
        });
        sim.run(Duration::from_secs(60));
        failed_with(
            &sim,
            "MeteringReceiptRes",
            "FAILED_MeteringSignatureNotValid",
        );
    }
}
