//! ISO 15118-20 session machines, DC and AC, scheduled and dynamic control
//! modes: our EVCC against our SECC in memory on a virtual clock, every byte
//! through the real EXI codecs and V2GTP payload types.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use evproto_iso15118::messages::iso20 as cm;
use evproto_iso15118::messages::iso20_dc as dcm;
use evproto_iso15118::session::iso20::{self, Request, SeccState, Wire};
use evproto_iso15118::session::{
    Authorization, ControlMode, Effect, EndReason, EvBpt, EvNotice, Evcc, EvccConfig, EvseRequest,
    Isolation, MsgKind, PausedSession, Protocol, ScheduleTuple, Secc, SeccBpt, SeccConfig,
    StopKind, TimerKind,
};
use evproto_iso15118::v2gtp::PayloadType;
use test_support::VirtualClock;

mod session_common;
use session_common::{collapse, unframe, Plant, EVCC_ID, SESSION};

const OTHER: [u8; 8] = [0x0a, 0x0b, 0x0c, 0x0d, 1, 2, 3, 4];
const ALL: [Protocol; 4] = [
    Protocol::Iso20Dc,
    Protocol::Iso20Ac,
    Protocol::Iso2,
    Protocol::Din,
];

/// -20: the schedules to offer, the power module.
struct Iso20 {
    dc: bool,
    schedules: Vec<ScheduleTuple>,
}

impl Plant for Iso20 {
    fn schedules(sim: &mut Sim) -> Vec<ScheduleTuple> {
        sim.schedules.clone()
    }
    fn power(sim: &mut Sim, on: bool) {
        if !sim.dc {
            sim.evse.present_voltage = if on { 230.0 } else { 0.0 };
        } else if !on {
            sim.evse.present_voltage = 0.0;
            sim.evse.present_current = 0.0;
        }
        sim.secc.set_evse(sim.evse.clone());
    }
    fn body_name(b: &[u8]) -> String {
        body_name(b)
    }
    fn response_code(b: &[u8]) -> Option<(String, String)> {
        let (pt, exi) = unframe(b)?;
        iso20::response_code(pt, &exi)
    }
}

type Sim = session_common::Sim<Iso20>;

fn secc_config() -> SeccConfig {
    SeccConfig::new(SESSION.to_vec()).with_protocols(ALL.to_vec())
}

fn evcc_config(dc: bool, mode: ControlMode) -> EvccConfig {
    if dc {
        EvccConfig::iso20_dc(EVCC_ID.to_vec())
    } else {
        EvccConfig::iso20_ac(EVCC_ID.to_vec())
    }
    .with_control_mode(mode)
}

impl Sim {
    fn new(secc: SeccConfig, evcc: EvccConfig) -> Self {
        let clock = VirtualClock::new();
        let now = clock.now();
        let evse = secc.evse.clone();
        let dc = evcc.protocols.first() != Some(&Protocol::Iso20Ac);
        let secc = Secc::new(secc, now);
        let evcc = Evcc::new(evcc, now);
        let plant = Iso20 {
            dc,
            schedules: Vec::new(),
        };
        Self::with(clock, secc, evcc, evse, plant)
    }

    fn of(dc: bool, mode: ControlMode) -> Self {
        Self::new(secc_config(), evcc_config(dc, mode))
    }

    /// The ChargeProgress of every PowerDeliveryReq, in order.
    fn progress(&self) -> Vec<String> {
        self.to_secc
            .iter()
            .filter(|b| body_name(b) == "PowerDeliveryReq")
            .map(|b| {
                json(b)["PowerDeliveryReq"]["ChargeProgress"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    fn last_answer(&self) -> serde_json::Value {
        json(self.to_evcc.last().unwrap())
    }
}

/// The element name of a recorded message (or the handshake's root).
fn body_name(b: &[u8]) -> String {
    if let Ok(m) = evproto_iso15118::app_protocol::decode(b) {
        return m.name().to_string();
    }
    unframe(b)
        .and_then(|(pt, exi)| iso20::message_name(pt, &exi))
        .unwrap_or("?")
        .to_string()
}

fn wire(b: &[u8]) -> Wire {
    let (pt, exi) = unframe(b).unwrap();
    Wire::decode(pt, &exi).unwrap()
}

fn json(b: &[u8]) -> serde_json::Value {
    match wire(b) {
        Wire::Common(m) => serde_json::to_value(m).unwrap(),
        Wire::Dc(m) => serde_json::to_value(m).unwrap(),
        Wire::Ac(m) => serde_json::to_value(m).unwrap(),
    }
}

fn session_id_of(b: &[u8]) -> Vec<u8> {
    let v = json(b);
    let (_, body) = v.as_object().unwrap().iter().next().unwrap();
    let hex = body["Header"]["SessionID"].as_str().unwrap().to_string();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn modes() -> [(bool, ControlMode); 4] {
    [
        (true, ControlMode::Scheduled),
        (true, ControlMode::Dynamic),
        (false, ControlMode::Scheduled),
        (false, ControlMode::Dynamic),
    ]
}

#[test]
fn the_handshake_chooses_iso20_by_the_evs_priorities() {
    for (offered, secc, chosen) in [
        (vec![Protocol::Iso20Dc], ALL.to_vec(), Protocol::Iso20Dc),
        (
            vec![Protocol::Iso20Ac, Protocol::Iso2],
            ALL.to_vec(),
            Protocol::Iso20Ac,
        ),
        (
            vec![Protocol::Iso2, Protocol::Iso20Dc],
            ALL.to_vec(),
            Protocol::Iso2,
        ),
        // an SECC without -20 (its default): the EV's next choice
        (
            vec![Protocol::Iso20Dc, Protocol::Iso2],
            vec![Protocol::Iso2, Protocol::Din],
            Protocol::Iso2,
        ),
    ] {
        let mut sim = Sim::new(
            SeccConfig::new(SESSION.to_vec()).with_protocols(secc),
            EvccConfig::iso20_dc(EVCC_ID.to_vec()).with_protocols(offered.clone()),
        );
        sim.run(Duration::from_millis(1));
        assert_eq!(sim.evcc.protocol(), Some(chosen), "{offered:?}");
        assert_eq!(sim.secc.protocol(), Some(chosen), "{offered:?}");
    }
    assert!(!SeccConfig::new(vec![1])
        .protocols
        .iter()
        .any(|p| p.is_iso20()));
}

#[test]
fn happy_paths_dc_and_ac_scheduled_and_dynamic_with_one_five_and_a_hundred_loops() {
    for (dc, mode) in modes() {
        for n in [1u32, 5, 100] {
            let mut sim = Sim::of(dc, mode);
            sim.stop_after = Some((n, StopKind::Terminate));
            sim.run(Duration::from_secs(600));
            let at = format!("dc={dc} {mode:?} n={n}");
            assert_eq!(sim.secc_end, Some(EndReason::Finished), "{at}");
            assert_eq!(sim.evcc_end, Some(EndReason::Finished), "{at}");
            assert_eq!(sim.evcc.charge_loops(), n, "{at}");
            assert_eq!(sim.secc.iso20().unwrap().charge_loops(), n, "{at}");
            assert_eq!(sim.secc.iso20().unwrap().control_mode(), Some(mode));
            let scheduled = mode == ControlMode::Scheduled;
            let mut expected = vec![
                ("supportedAppProtocolReq", 1),
                ("SessionSetupReq", 1),
                ("AuthorizationSetupReq", 1),
                ("AuthorizationReq", 6),
                ("ServiceDiscoveryReq", 1),
                ("ServiceDetailReq", 1),
                ("ServiceSelectionReq", 1),
            ];
            // scheduled: the first ScheduleExchange is Ongoing while the EVSE decides
            let se = if scheduled { 2 } else { 1 };
            if dc {
                expected.extend([
                    ("DC_ChargeParameterDiscoveryReq", 1),
                    ("ScheduleExchangeReq", se),
                    ("DC_CableCheckReq", 4),
                    ("DC_PreChargeReq", 2),
                    ("PowerDeliveryReq", 1),
                    ("DC_ChargeLoopReq", n as usize),
                    ("PowerDeliveryReq", 1),
                    ("DC_WeldingDetectionReq", 1),
                    ("SessionStopReq", 1),
                ]);
            } else {
                expected.extend([
                    ("AC_ChargeParameterDiscoveryReq", 1),
                    ("ScheduleExchangeReq", se),
                    ("PowerDeliveryReq", 1),
                    ("AC_ChargeLoopReq", n as usize),
                    ("PowerDeliveryReq", 1),
                    ("SessionStopReq", 1),
                ]);
            }
            assert_eq!(sim.requests(), collapse(&expected), "{at}");
            assert_eq!(sim.progress(), ["Start", "Stop"]);
            let answers = sim.answers();
            assert!(
                answers.iter().all(|(_, c)| c.starts_with("OK")),
                "{at} {answers:?}"
            );
            // every message but the handshake in its -20 payload type, with the 8-byte id
            for b in sim.to_secc[1..].iter().chain(&sim.to_evcc[1..]) {
                let (pt, _) = unframe(b).unwrap();
                let name = body_name(b);
                let want = if name.starts_with("DC_") {
                    PayloadType::ISO20_DC
                } else if name.starts_with("AC_") {
                    PayloadType::ISO20_AC
                } else {
                    PayloadType::ISO20_MAIN
                };
                assert_eq!(pt, want, "{name}");
                if name != "SessionSetupReq" {
                    assert_eq!(session_id_of(b), SESSION, "{name}");
                }
            }
            assert_eq!(session_id_of(&sim.to_secc[1]), [0; 8]);
            assert_eq!(sim.evcc.session_id(), Some(&SESSION[..]));
            let energy = if dc {
                // the first loop answer still shows the PreCharge current;
                // then 400 V × 100 A every 100 ms
                f64::from(n - 1) * 400.0 * 100.0 * 0.1 / 3600.0
            } else {
                // the EV's 11 kW every 100 ms
                f64::from(n - 1) * 11_000.0 * 0.1 / 3600.0
            };
            assert!(
                (sim.evcc.energy_wh() - energy).abs() < 1e-6,
                "{at} {}",
                sim.evcc.energy_wh()
            );
            assert!(
                (sim.secc.energy_wh() - energy).abs() < 1e-6,
                "{at} {}",
                sim.secc.energy_wh()
            );
            if scheduled {
                assert_eq!(sim.secc.iso20().unwrap().schedule_tuple_id(), Some(1));
                assert_eq!(sim.evcc.iso20().unwrap().schedule_tuple_id(), Some(1));
            }
            if dc {
                assert!(sim.notices.contains(&EvNotice::PreChargeDone));
            }
            assert!(sim.notices.contains(&EvNotice::ChargingStarted));
            assert!(sim.notices.contains(&EvNotice::ChargingStopped));
            assert_eq!(sim.evse_requests.last(), Some(&EvseRequest::Power(false)));
            assert_eq!(sim.secc.poll_timeout(), None);
            assert_eq!(sim.evcc.poll_timeout(), None);
        }
    }
}

#[test]
fn the_schedules_offered_are_the_evses_and_the_ev_takes_the_first() {
    let mut sim = Sim::of(false, ControlMode::Scheduled);
    sim.schedules = vec![
        ScheduleTuple {
            id: 3,
            entries: vec![(0, 7_000.0), (3600, 4_000.0)],
            duration: 7200,
        },
        ScheduleTuple {
            id: 4,
            entries: vec![(0, 22_000.0)],
            duration: 86_400,
        },
    ];
    sim.stop_after = Some((3, StopKind::Terminate));
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.evcc_end, Some(EndReason::Finished));
    let res = sim.to_evcc[1..]
        .iter()
        .map(|b| json(b))
        .filter(|j| j.get("ScheduleExchangeRes").is_some())
        .collect::<Vec<_>>();
    assert_eq!(res[0]["ScheduleExchangeRes"]["EVSEProcessing"], "Ongoing");
    let tuples = &res[1]["ScheduleExchangeRes"]["Scheduled_SEResControlMode"]["ScheduleTuple"];
    assert_eq!(tuples[0]["ScheduleTupleID"], 3);
    let entries = &tuples[0]["ChargingSchedule"]["PowerSchedule"]["PowerScheduleEntries"]
        ["PowerScheduleEntry"];
    assert_eq!(entries[0]["Duration"], 3600);
    assert_eq!(entries[1]["Duration"], 3600);
    assert_eq!(sim.secc.iso20().unwrap().schedule_tuple_id(), Some(3));
    // PowerDelivery(Start) names the tuple and, no tolerance offered, does
    // not confirm one (optional in the schema; Josev's SECC requires it)
    let start = sim.to_secc[1..]
        .iter()
        .map(|b| json(b))
        .find(|j| j["PowerDeliveryReq"]["ChargeProgress"] == "Start")
        .unwrap();
    assert_eq!(
        start["PowerDeliveryReq"]["EVPowerProfile"]["Scheduled_EVPPTControlMode"],
        serde_json::json!({"SelectedScheduleTupleID": 3,
            "PowerToleranceAcceptance": "PowerToleranceNotConfirmed"})
    );
    // the EV draws at most the tuple's first power: 7 kW, not its 11 kW
    let loop_req = sim.to_secc[1..]
        .iter()
        .map(|b| json(b))
        .find(|j| j.get("AC_ChargeLoopReq").is_some())
        .unwrap();
    let p = &loop_req["AC_ChargeLoopReq"]["Scheduled_AC_CLReqControlMode"]["EVPresentActivePower"];
    assert_eq!(
        p["Value"].as_i64().unwrap() as f64 * 10f64.powi(p["Exponent"].as_i64().unwrap() as i32),
        7000.0
    );
    let asked = sim
        .evse_requests
        .iter()
        .filter(|r| matches!(r, EvseRequest::Schedules { .. }))
        .count();
    assert_eq!(asked, 1);
}

#[test]
fn long_authorization_keeps_the_secc_answering_ongoing() {
    let mut sim = Sim::of(true, ControlMode::Scheduled);
    sim.auth = Some((Authorization::Accepted, Duration::from_secs(30)));
    sim.stop_after = Some((2, StopKind::Terminate));
    sim.run(Duration::from_secs(600));
    assert_eq!(sim.evcc_end, Some(EndReason::Finished));
    let processing: Vec<String> = sim
        .to_evcc
        .iter()
        .filter(|b| body_name(b) == "AuthorizationRes")
        .map(|b| {
            json(b)["AuthorizationRes"]["EVSEProcessing"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(processing.len(), 301);
    assert!(processing[..300].iter().all(|p| p == "Ongoing"));
    assert_eq!(processing[300], "Finished");
    let expected_id = EVCC_ID
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<String>();
    let asked: Vec<_> = sim
        .evse_requests
        .iter()
        .filter_map(|r| match r {
            EvseRequest::Authorize { evcc_id } => Some(evcc_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(asked, [expected_id.clone().into_bytes()]);
    assert_eq!(sim.secc.iso20().unwrap().evcc_id(), expected_id);
}

#[test]
fn rejected_authorization_fails_the_session() {
    let mut sim = Sim::of(false, ControlMode::Dynamic);
    sim.auth = Some((Authorization::Rejected, Duration::from_secs(1)));
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.secc_end, Some(EndReason::AuthorizationRejected));
    assert_eq!(
        sim.evcc_end,
        Some(EndReason::Failed {
            response_code: "WARNING_EIMAuthorizationFailure".into()
        })
    );
}

fn pause_then_resume(dc: bool, mode: ControlMode) {
    let mut sim = Sim::of(dc, mode);
    sim.stop_after = Some((3, StopKind::Pause));
    sim.run(Duration::from_secs(600));
    let paused = EndReason::Paused {
        session_id: SESSION.to_vec(),
    };
    assert_eq!(sim.secc_end, Some(paused.clone()));
    assert_eq!(sim.evcc_end, Some(paused));
    assert_eq!(sim.last_answer()["SessionStopRes"]["ResponseCode"], "OK");
    assert_eq!(
        json(sim.to_secc.last().unwrap())["SessionStopReq"]["ChargingSession"],
        "Pause"
    );
    assert_eq!(sim.progress(), ["Start", "Stop"]);

    // a new connection: the SECC would give OTHER, but knows the paused session
    let mut sim = Sim::new(
        SeccConfig::new(OTHER.to_vec())
            .with_protocols(ALL.to_vec())
            .with_resume(Some(PausedSession {
                session_id: SESSION.to_vec(),
            })),
        evcc_config(dc, mode).with_resume(Some(SESSION.to_vec())),
    );
    sim.stop_after = Some((2, StopKind::Terminate));
    sim.run(Duration::from_secs(600));
    assert_eq!(sim.secc_end, Some(EndReason::Finished));
    assert_eq!(sim.evcc_end, Some(EndReason::Finished));
    assert_eq!(
        sim.answers()[0],
        ("SessionSetupRes".into(), "OK_OldSessionJoined".into())
    );
    assert_eq!(session_id_of(&sim.to_secc[1]), SESSION);
    for b in sim.to_secc[1..].iter().chain(&sim.to_evcc[1..]) {
        assert_eq!(session_id_of(b), SESSION);
    }
    assert_eq!(sim.evcc.charge_loops(), 2);
}

#[test]
fn pause_and_resume_dc_and_ac() {
    pause_then_resume(true, ControlMode::Scheduled);
    pause_then_resume(false, ControlMode::Dynamic);
}

#[test]
fn resume_with_an_unknown_id_starts_a_new_session() {
    let mut sim = Sim::new(
        SeccConfig::new(OTHER.to_vec())
            .with_protocols(ALL.to_vec())
            .with_resume(Some(PausedSession {
                session_id: SESSION.to_vec(),
            })),
        evcc_config(true, ControlMode::Scheduled).with_resume(Some(vec![7; 8])),
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

#[test]
fn emergency_stop_dc_and_ac() {
    for (dc, mode) in modes() {
        let mut sim = Sim::of(dc, mode);
        sim.hook = Box::new(|secc, evse, evcc| {
            if evcc.charge_loops() == 10 && !evse.emergency_stop {
                evse.emergency_stop = true;
                secc.set_evse(evse.clone());
            }
        });
        sim.run(Duration::from_secs(600));
        assert_eq!(sim.secc_end, Some(EndReason::EmergencyStop));
        assert_eq!(
            sim.evcc_end,
            Some(EndReason::Failed {
                response_code: "FAILED".into()
            })
        );
        assert_eq!(sim.evcc.charge_loops(), 10);
        let res = sim.last_answer();
        let name = if dc {
            "DC_ChargeLoopRes"
        } else {
            "AC_ChargeLoopRes"
        };
        assert_eq!(res[name]["ResponseCode"], "FAILED");
        assert_eq!(res[name]["EVSEStatus"]["EVSENotification"], "Terminate");
    }
}

#[test]
fn emergency_stop_before_charging_refuses_the_next_request() {
    let mut sim = Sim::of(true, ControlMode::Scheduled);
    sim.hook = Box::new(|secc, evse, _| {
        if secc
            .iso20()
            .is_some_and(|s| s.state() == SeccState::CableCheck)
            && !evse.emergency_stop
        {
            evse.emergency_stop = true;
            secc.set_evse(evse.clone());
        }
    });
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.secc_end, Some(EndReason::EmergencyStop));
    assert_eq!(
        sim.last_answer()["DC_CableCheckRes"]["ResponseCode"],
        "FAILED"
    );
    assert!(!sim.evse_requests.contains(&EvseRequest::Power(true)));
}

#[test]
fn isolation_fault_at_cable_check_and_in_the_loop() {
    let mut sim = Sim::of(true, ControlMode::Scheduled);
    sim.isolation = Some((Isolation::Fault, Duration::from_millis(250)));
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.secc_end, Some(EndReason::IsolationFault));
    assert_eq!(
        sim.evcc_end,
        Some(EndReason::Failed {
            response_code: "FAILED".into()
        })
    );
    assert_eq!(
        sim.last_answer()["DC_CableCheckRes"]["ResponseCode"],
        "FAILED"
    );
    assert!(!sim.evse_requests.contains(&EvseRequest::Power(true)));

    let mut sim = Sim::of(true, ControlMode::Dynamic);
    sim.hook = Box::new(|secc, evse, evcc| {
        if evcc.charge_loops() == 4 && evse.isolation != Isolation::Fault {
            evse.isolation = Isolation::Fault;
            secc.set_evse(evse.clone());
        }
    });
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.secc_end, Some(EndReason::IsolationFault));
    assert_eq!(sim.evcc.charge_loops(), 4);
    let res = sim.last_answer();
    assert_eq!(res["DC_ChargeLoopRes"]["ResponseCode"], "FAILED");
    assert_eq!(
        res["DC_ChargeLoopRes"]["EVSEStatus"]["EVSENotification"],
        "Terminate"
    );
}

// ---- timers ----

#[test]
fn secc_sequence_timeouts_before_and_in_the_charge_loop() {
    let mut sim = Sim::of(false, ControlMode::Scheduled);
    sim.lose_answer = Box::new(|b| body_name(b) == "ServiceDiscoveryRes");
    sim.run(Duration::from_secs(59));
    assert_eq!(sim.secc_end, None);
    assert_eq!(
        sim.evcc_end,
        Some(EndReason::Timeout(TimerKind::EvccMsg(
            MsgKind::ServiceDiscovery
        )))
    );
    let sent = *sim.sent_at.last().unwrap();
    sim.run(Duration::from_secs(5));
    assert_eq!(
        sim.secc_end,
        Some(EndReason::Timeout(TimerKind::SeccSequence))
    );
    assert_eq!(sim.clock.now() - sent, Duration::from_secs(60));

    // in the charge loop the SECC waits 0.5 s for the next request
    for dc in [true, false] {
        let mut sim = Sim::of(dc, ControlMode::Dynamic);
        let mut n = 0;
        let name = if dc {
            "DC_ChargeLoopRes"
        } else {
            "AC_ChargeLoopRes"
        };
        sim.lose_answer = Box::new(move |b| {
            if body_name(b) == name {
                n += 1;
                return n == 5;
            }
            false
        });
        sim.run(Duration::from_secs(30));
        assert_eq!(
            sim.evcc_end,
            Some(EndReason::Timeout(TimerKind::EvccMsg(MsgKind::ChargeLoop)))
        );
        assert_eq!(
            sim.evcc_end_at.unwrap() - *sim.sent_at.last().unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(sim.evcc.charge_loops(), 4);
        assert_eq!(
            sim.secc_end,
            Some(EndReason::Timeout(TimerKind::SeccSequence))
        );
    }
}

#[test]
fn evcc_message_timeouts_follow_the_iso20_tables() {
    // ServiceDetail 5 s, PowerDelivery 2 s (-2: 5 s), ScheduleExchange 2 s, charge loop 0.5 s
    for (dc, lost, nth, kind, after) in [
        (true, "ServiceDetailRes", 1, MsgKind::ServiceDetail, 5000u64),
        (true, "PowerDeliveryRes", 1, MsgKind::PowerDelivery, 2000),
        (
            false,
            "ScheduleExchangeRes",
            1,
            MsgKind::ScheduleExchange,
            2000,
        ),
        (
            false,
            "AuthorizationSetupRes",
            1,
            MsgKind::AuthorizationSetup,
            2000,
        ),
        (true, "DC_CableCheckRes", 2, MsgKind::CableCheck, 2000),
        (
            true,
            "DC_WeldingDetectionRes",
            1,
            MsgKind::WeldingDetection,
            2000,
        ),
        (false, "AC_ChargeLoopRes", 3, MsgKind::ChargeLoop, 500),
    ] {
        let mut sim = Sim::of(dc, ControlMode::Scheduled);
        sim.stop_after = Some((3, StopKind::Terminate));
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
            Some(EndReason::Timeout(TimerKind::EvccMsg(kind))),
            "{lost}"
        );
        assert_eq!(
            body_name(sim.to_secc.last().unwrap()),
            lost.replace("Res", "Req")
        );
        assert_eq!(
            sim.evcc_end_at.unwrap() - *sim.sent_at.last().unwrap(),
            Duration::from_millis(after),
            "{lost}"
        );
    }
}

#[test]
fn evcc_ongoing_cable_check_and_precharge_timeouts() {
    let mut sim = Sim::of(false, ControlMode::Scheduled);
    sim.auth = None;
    let start = sim.clock.now();
    sim.run(Duration::from_secs(120));
    assert_eq!(
        sim.evcc_end,
        Some(EndReason::Timeout(TimerKind::EvccOngoing))
    );
    let after = sim.evcc_end_at.unwrap() - start;
    assert!(after >= Duration::from_secs(60) && after < Duration::from_secs(61));

    let mut sim = Sim::of(true, ControlMode::Scheduled);
    sim.isolation = None;
    sim.run(Duration::from_secs(120));
    assert_eq!(
        sim.evcc_end,
        Some(EndReason::Timeout(TimerKind::CableCheck))
    );

    // -20's pre-charge timer is 10 s (-2: 7 s)
    let mut sim = Sim::of(true, ControlMode::Dynamic);
    sim.follow_targets = false;
    sim.run(Duration::from_secs(120));
    assert_eq!(sim.evcc_end, Some(EndReason::Timeout(TimerKind::PreCharge)));
    let first = sim
        .to_secc
        .iter()
        .position(|b| body_name(b) == "DC_PreChargeReq")
        .unwrap();
    assert_eq!(
        sim.evcc_end_at.unwrap() - sim.sent_at[first],
        Duration::from_secs(10)
    );
}

#[test]
fn secc_communication_setup_timeout_covers_the_handshake_and_session_setup() {
    let clock = VirtualClock::new();
    let now = clock.now();
    let mut secc = Secc::new(secc_config(), now);
    let mut evcc = Evcc::new(evcc_config(true, ControlMode::Scheduled), now);
    let Some(Effect::Transmit(req)) = evcc.poll_effect() else {
        panic!()
    };
    secc.handle_message(now, &req);
    assert!(matches!(secc.poll_effect(), Some(Effect::Transmit(_))));
    assert_eq!(secc.protocol(), Some(Protocol::Iso20Dc));
    // no SessionSetupReq follows
    let at = now + Duration::from_secs(20);
    secc.handle_timeout(at - Duration::from_millis(1));
    assert_eq!(secc.poll_effect(), None);
    secc.handle_timeout(at);
    assert_eq!(
        secc.poll_effect(),
        Some(Effect::SessionEnded {
            reason: EndReason::Timeout(TimerKind::SeccCommunicationSetup)
        })
    );
}

// ---- the SECC against scripted requests ----

/// The EVCC's requests (as framed) of a run where the EVSE decides at once.
fn script(dc: bool, mode: ControlMode) -> Vec<Vec<u8>> {
    let mut sim = Sim::of(dc, mode);
    sim.auth = Some((Authorization::Accepted, Duration::ZERO));
    sim.isolation = Some((Isolation::Valid, Duration::ZERO));
    sim.stop_after = Some((3, StopKind::Terminate));
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.secc_end, Some(EndReason::Finished));
    sim.to_secc
}

/// A SECC fed `msgs`, the EVSE answering at once.
fn replay(msgs: &[Vec<u8>]) -> (Secc, Instant) {
    replay_with(secc_config(), msgs)
}

/// A SECC of `config` fed `msgs`, the EVSE answering at once.
fn replay_with(config: SeccConfig, msgs: &[Vec<u8>]) -> (Secc, Instant) {
    let clock = VirtualClock::new();
    let now = clock.now();
    let mut secc = Secc::new(config, now);
    for b in msgs {
        match unframe(b) {
            Some((pt, exi)) => secc.handle_packet(now, pt, &exi),
            None => secc.handle_message(now, b),
        }
        while let Some(e) = secc.poll_effect() {
            match e {
                Effect::Evse(EvseRequest::Authorize { .. }) => {
                    secc.handle_authorization(now, Authorization::Accepted)
                }
                Effect::Evse(EvseRequest::Schedules { .. }) => secc.handle_schedules(now, vec![]),
                Effect::Evse(EvseRequest::StartCableCheck) => {
                    let mut e = secc.evse().clone();
                    e.isolation = Isolation::Valid;
                    secc.set_evse(e);
                }
                Effect::SessionEnded { reason } => panic!("replay ended: {reason:?}"),
                _ => {}
            }
        }
    }
    (secc, now)
}

fn send(secc: &mut Secc, now: Instant, w: &Wire) -> (String, String) {
    let (pt, exi) = w.encode().unwrap();
    secc.handle_packet(now, pt, &exi);
    loop {
        match secc.poll_effect() {
            Some(Effect::TransmitAs(pt, res)) => return iso20::response_code(pt, &res).unwrap(),
            Some(Effect::Evse(_)) => {}
            other => panic!("no answer: {other:?}"),
        }
    }
}

fn ended(secc: &mut Secc) -> Option<EndReason> {
    while let Some(e) = secc.poll_effect() {
        if let Effect::SessionEnded { reason } = e {
            return Some(reason);
        }
    }
    None
}

#[test]
fn every_message_out_of_order_is_a_sequence_error_in_every_state() {
    for (dc, mode) in modes() {
        let script = script(dc, mode);
        let mut checked = 0;
        let mut states = std::collections::HashSet::new();
        for k in 1..script.len() {
            let (probe, _) = replay(&script[..k]);
            let state = probe.iso20().unwrap().state();
            states.insert(state);
            let id = probe.session_id().map(<[u8]>::to_vec).unwrap_or(vec![0; 8]);
            for req in Request::ALL {
                if state.allows(req, dc) {
                    continue;
                }
                let (mut secc, now) = replay(&script[..k]);
                let w = iso20::sample_request(dc, mode, &id, req);
                let (name, code) = send(&mut secc, now, &w);
                assert_eq!(name, w.name().replace("Req", "Res"), "{state:?} {req:?}");
                assert_eq!(code, "FAILED_SequenceError", "{state:?} {req:?}");
                assert_eq!(ended(&mut secc), Some(EndReason::SequenceError));
                assert_eq!(secc.poll_effect(), None);
                assert_eq!(secc.poll_timeout(), None);
                checked += 1;
            }
        }
        // DC: SessionSetup .. PostCharge (11 states); AC: no CableCheck/PreCharge (10... minus)
        assert_eq!(states.len(), if dc { 11 } else { 10 }, "{states:?}");
        assert!(checked > 140, "{checked}");
    }
}

/// The index of the first script message after which the SECC is in `state`.
fn prefix_in(script: &[Vec<u8>], state: SeccState) -> usize {
    (1..script.len())
        .find(|k| replay(&script[..*k]).0.iso20().unwrap().state() == state)
        .unwrap_or_else(|| panic!("{state:?} not reached"))
}

/// The SECC in `state` of a `dc`/`mode` session, and the clock.
fn secc_in(dc: bool, mode: ControlMode, state: SeccState) -> (Secc, Instant) {
    let script = script(dc, mode);
    let k = prefix_in(&script, state);
    replay(&script[..k])
}

fn power_delivery(dc: bool, mode: ControlMode, progress: cm::ChargeProgressType) -> Wire {
    let mut w = iso20::sample_request(dc, mode, &SESSION, Request::PowerDelivery);
    if let Wire::Common(cm::Message::PowerDeliveryReq(r)) = &mut w {
        r.charge_progress = progress;
    }
    w
}

#[test]
fn the_requests_own_codes() {
    use cm::Message as C;
    let s = ControlMode::Scheduled;
    let d = ControlMode::Dynamic;
    type Edit = fn(&mut Wire);
    let cases: Vec<(bool, ControlMode, SeccState, Request, Edit, &str)> = vec![
        (
            true,
            s,
            SeccState::Authorization,
            Request::Authorization,
            |w| {
                if let Wire::Common(C::AuthorizationReq(r)) = w {
                    r.selected_authorization_service = cm::AuthorizationType::PnC;
                }
            },
            "WARNING_AuthorizationSelectionInvalid",
        ),
        (
            true,
            s,
            SeccState::ServiceSelection,
            Request::ServiceDetail,
            |w| {
                if let Wire::Common(C::ServiceDetailReq(r)) = w {
                    r.service_id = 1;
                }
            },
            "FAILED_ServiceIDInvalid",
        ),
        (
            false,
            s,
            SeccState::ServiceSelection,
            Request::ServiceSelection,
            |w| {
                if let Wire::Common(C::ServiceSelectionReq(r)) = w {
                    r.selected_energy_transfer_service.service_id = 2;
                }
            },
            "FAILED_ServiceSelectionInvalid",
        ),
        (
            true,
            s,
            SeccState::ServiceSelection,
            Request::ServiceSelection,
            |w| {
                if let Wire::Common(C::ServiceSelectionReq(r)) = w {
                    r.selected_energy_transfer_service.parameter_set_id = 9;
                }
            },
            "FAILED_ServiceSelectionInvalid",
        ),
        (
            true,
            s,
            SeccState::ServiceSelection,
            Request::ServiceSelection,
            |w| {
                if let Wire::Common(C::ServiceSelectionReq(r)) = w {
                    r.selected_vas_list = Some(cm::SelectedServiceListType {
                        selected_service: vec![cm::SelectedServiceType {
                            service_id: 65,
                            parameter_set_id: 1,
                        }],
                    });
                }
            },
            "FAILED_ServiceSelectionInvalid",
        ),
        (
            true,
            s,
            SeccState::ChargeParameterDiscovery,
            Request::DcChargeParameterDiscovery,
            |w| {
                // bidirectional (BPT) parameters in a DC session
                if let Wire::Dc(dcm::Message::DcChargeParameterDiscoveryReq(r)) = w {
                    let d = r.dc_cpd_req_energy_transfer_mode.take().unwrap();
                    r.bpt_dc_cpd_req_energy_transfer_mode =
                        Some(dcm::BptDcCPDReqEnergyTransferModeType {
                            ev_maximum_charge_power: d.ev_maximum_charge_power.clone(),
                            ev_minimum_charge_power: d.ev_minimum_charge_power.clone(),
                            ev_maximum_charge_current: d.ev_maximum_charge_current.clone(),
                            ev_minimum_charge_current: d.ev_minimum_charge_current.clone(),
                            ev_maximum_voltage: d.ev_maximum_voltage.clone(),
                            ev_minimum_voltage: d.ev_minimum_voltage.clone(),
                            target_soc: None,
                            ev_maximum_discharge_power: d.ev_maximum_charge_power,
                            ev_minimum_discharge_power: d.ev_minimum_charge_power,
                            ev_maximum_discharge_current: d.ev_maximum_charge_current,
                            ev_minimum_discharge_current: d.ev_minimum_charge_current,
                        });
                }
            },
            "FAILED_WrongChargeParameter",
        ),
        (
            true,
            s,
            SeccState::ScheduleExchange,
            Request::ScheduleExchange,
            |w| {
                // a dynamic request in a scheduled session
                let dynamic = iso20::sample_request(
                    true,
                    ControlMode::Dynamic,
                    &SESSION,
                    Request::ScheduleExchange,
                );
                *w = dynamic;
            },
            "FAILED_WrongChargeParameter",
        ),
        (
            true,
            s,
            SeccState::PreCharge,
            Request::PowerDelivery,
            |w| {
                if let Wire::Common(C::PowerDeliveryReq(r)) = w {
                    if let Some(p) = r.ev_power_profile.as_mut() {
                        p.scheduled_evppt_control_mode
                            .as_mut()
                            .unwrap()
                            .selected_schedule_tuple_id = 7;
                    }
                }
            },
            "FAILED_ScheduleSelectionInvalid",
        ),
        (
            false,
            s,
            SeccState::PowerDelivery,
            Request::PowerDelivery,
            |w| {
                if let Wire::Common(C::PowerDeliveryReq(r)) = w {
                    let e = &mut r
                        .ev_power_profile
                        .as_mut()
                        .unwrap()
                        .ev_power_profile_entries
                        .ev_power_profile_entry[0];
                    e.power = cm::RationalNumberType {
                        exponent: 3,
                        value: 60,
                    };
                }
            },
            "FAILED_EVPowerProfileInvalid",
        ),
        (
            false,
            d,
            SeccState::PowerDelivery,
            Request::PowerDelivery,
            |w| {
                if let Wire::Common(C::PowerDeliveryReq(r)) = w {
                    r.charge_progress = cm::ChargeProgressType::Standby;
                }
            },
            "WARNING_StandbyNotAllowed",
        ),
        (
            true,
            d,
            SeccState::ChargeLoop,
            Request::PowerDelivery,
            |w| {
                if let Wire::Common(C::PowerDeliveryReq(r)) = w {
                    r.charge_progress = cm::ChargeProgressType::ScheduleRenegotiation;
                }
            },
            "FAILED_ScheduleRenegotiation",
        ),
        (
            true,
            d,
            SeccState::ChargeLoop,
            Request::PowerDelivery,
            |w| {
                if let Wire::Common(C::PowerDeliveryReq(r)) = w {
                    r.charge_progress = cm::ChargeProgressType::Start;
                }
            },
            "FAILED_SequenceError",
        ),
        (
            true,
            s,
            SeccState::ChargeLoop,
            Request::DcChargeLoop,
            |w| {
                // a dynamic loop in a scheduled session
                *w = iso20::sample_request(
                    true,
                    ControlMode::Dynamic,
                    &SESSION,
                    Request::DcChargeLoop,
                );
            },
            "FAILED_WrongChargeParameter",
        ),
        (
            false,
            d,
            SeccState::PostCharge,
            Request::SessionStop,
            |w| {
                if let Wire::Common(C::SessionStopReq(r)) = w {
                    r.charging_session = cm::ChargingSessionType::ServiceRenegotiation;
                }
            },
            "FAILED_NoServiceRenegotiationSupported",
        ),
        (
            true,
            s,
            SeccState::ServiceDiscovery,
            Request::ServiceDiscovery,
            |w| {
                if let Wire::Common(C::ServiceDiscoveryReq(r)) = w {
                    r.header.session_id.0 = OTHER.to_vec();
                }
            },
            "FAILED_UnknownSession",
        ),
    ];
    for (dc, mode, state, req, edit, code) in cases {
        let (mut secc, now) = secc_in(dc, mode, state);
        let mut w = iso20::sample_request(dc, mode, &SESSION, req);
        edit(&mut w);
        let (_, got) = send(&mut secc, now, &w);
        assert_eq!(got, code, "{state:?} {req:?}");
        let reason = ended(&mut secc).unwrap();
        match code {
            "FAILED_UnknownSession" => assert_eq!(reason, EndReason::UnknownSession),
            "FAILED_SequenceError" => assert_eq!(reason, EndReason::SequenceError),
            _ => assert_eq!(
                reason,
                EndReason::Failed {
                    response_code: code.into()
                }
            ),
        }
        assert!(!matches!(secc.poll_effect(), Some(Effect::TransmitAs(..))));
    }
    // a PowerDelivery(Stop) before charging goes straight to the post-charge
    let (mut secc, now) = secc_in(true, s, SeccState::PreCharge);
    let (_, got) = send(
        &mut secc,
        now,
        &power_delivery(true, s, cm::ChargeProgressType::Stop),
    );
    assert_eq!(got, "OK");
    assert_eq!(secc.iso20().unwrap().state(), SeccState::PostCharge);
}

#[test]
fn a_control_mode_the_secc_does_not_offer_ends_the_evcc() {
    let mut sim = Sim::new(
        secc_config().with_control_modes(vec![ControlMode::Scheduled]),
        evcc_config(true, ControlMode::Dynamic),
    );
    sim.run(Duration::from_secs(60));
    assert_eq!(
        sim.evcc_end,
        Some(EndReason::Failed {
            response_code: "no parameter set with ControlMode Dynamic".into()
        })
    );
    assert_eq!(body_name(sim.to_secc.last().unwrap()), "ServiceDetailReq");
    let detail = json(sim.to_evcc.last().unwrap());
    let sets = detail["ServiceDetailRes"]["ServiceParameterList"]["ParameterSet"]
        .as_array()
        .unwrap();
    assert_eq!(sets.len(), 1);
}

fn good_main(session: &[u8]) -> Vec<u8> {
    iso20::encode_request(
        true,
        ControlMode::Scheduled,
        session,
        Request::ServiceDiscovery,
    )
    .1
}

#[test]
fn garbage_din_bytes_and_wrong_payload_types_end_the_session_without_an_answer() {
    let script = script(true, ControlMode::Scheduled);
    let k = prefix_in(&script, SeccState::ServiceDiscovery);
    let din = evproto_iso15118::session::din::encode_request(
        &SESSION,
        evproto_iso15118::session::din::Request::ServiceDiscovery,
    );
    let (_, good) = iso20::encode_request(
        true,
        ControlMode::Scheduled,
        &SESSION,
        Request::ServiceDiscovery,
    );
    for (pt, bytes) in [
        (PayloadType::ISO20_MAIN, vec![0x80, 0xff, 0x00, 0x13]),
        (PayloadType::ISO20_MAIN, din.clone()),
        (PayloadType::EXI, din),
        (PayloadType::ISO20_DC, good.clone()),
        (PayloadType(0x8006), good),
    ] {
        let (mut secc, now) = replay(&script[..k]);
        secc.handle_packet(now, pt, &bytes);
        match secc.poll_effect() {
            Some(Effect::SessionEnded { reason }) => assert!(
                matches!(reason, EndReason::Malformed(_) | EndReason::SequenceError),
                "{reason:?}"
            ),
            other => panic!("{pt:?}: {other:?}"),
        }
        assert_eq!(secc.poll_effect(), None);
    }
    // a CommonMessages request in the handshake's 0x8001 is taken (Josev's
    // EVCC sends its CertificateInstallationReq so), answered in 0x8002
    let (mut secc, now) = replay(&script[..k]);
    secc.handle_packet(now, PayloadType::EXI, &good_main(&SESSION));
    match secc.poll_effect() {
        Some(Effect::TransmitAs(pt, res)) => {
            assert_eq!(pt, PayloadType::ISO20_MAIN);
            assert_eq!(
                iso20::response_code(pt, &res),
                Some(("ServiceDiscoveryRes".into(), "OK".into()))
            );
        }
        other => panic!("{other:?}"),
    }
    // an AC request in a DC session is a sequence error, answered in its schema
    let (mut secc, now) = replay(&script[..k]);
    let w = iso20::sample_request(
        false,
        ControlMode::Scheduled,
        &SESSION,
        Request::AcChargeLoop,
    );
    let (name, code) = send(&mut secc, now, &w);
    assert_eq!(
        (name.as_str(), code.as_str()),
        ("AC_ChargeLoopRes", "FAILED_SequenceError")
    );
}

#[test]
fn the_evcc_refuses_answers_it_did_not_ask_for() {
    let clock = VirtualClock::new();
    let now = clock.now();
    let mut secc = Secc::new(secc_config(), now);
    let mut evcc = Evcc::new(evcc_config(true, ControlMode::Scheduled), now);
    let Some(Effect::Transmit(req)) = evcc.poll_effect() else {
        panic!()
    };
    secc.handle_message(now, &req);
    let Some(Effect::Transmit(res)) = secc.poll_effect() else {
        panic!()
    };
    evcc.handle_message(now, &res);
    assert!(matches!(
        evcc.poll_effect(),
        Some(Effect::TransmitAs(PayloadType::ISO20_MAIN, _))
    ));
    // a ServiceDiscoveryRes while SessionSetupRes is awaited
    let mut other = replay(&script(true, ControlMode::Scheduled)[..3]).0;
    let w = iso20::sample_request(
        true,
        ControlMode::Scheduled,
        &SESSION,
        Request::ServiceDiscovery,
    );
    let (pt, exi) = w.encode().unwrap();
    other.handle_packet(now, pt, &exi);
    let Some(Effect::TransmitAs(pt, res)) = other.poll_effect() else {
        panic!()
    };
    evcc.handle_packet(now, pt, &res);
    assert_eq!(
        evcc.poll_effect(),
        Some(Effect::SessionEnded {
            reason: EndReason::SequenceError
        })
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any sequence of valid -20 requests (right or wrong id, in or out
        /// of order, DC or AC, either mode): each is answered once in its
        /// schema's payload type or the session ends, after its end nothing
        /// is answered, and every answer decodes.
        #[test]
        fn secc_answers_anything_cleanly(
            steps in proptest::collection::vec(
                (0usize..Request::ALL.len(), any::<bool>(), any::<bool>(), any::<bool>()),
                1..40,
            ),
        ) {
            let mut clock = VirtualClock::new();
            let mut secc = Secc::new(secc_config(), clock.now());
            let mut evcc = Evcc::new(evcc_config(true, ControlMode::Scheduled), clock.now());
            let Some(Effect::Transmit(sap)) = evcc.poll_effect() else { panic!() };
            secc.handle_message(clock.now(), &sap);
            prop_assert!(matches!(secc.poll_effect(), Some(Effect::Transmit(_))));
            let mut ended = false;
            for (i, right_id, dc, scheduled) in steps {
                clock.advance(Duration::from_millis(10));
                let now = clock.now();
                let mode = if scheduled { ControlMode::Scheduled } else { ControlMode::Dynamic };
                let id = if right_id { SESSION.to_vec() } else { OTHER.to_vec() };
                let (pt, bytes) = iso20::encode_request(dc, mode, &id, Request::ALL[i]);
                secc.handle_packet(now, pt, &bytes);
                let mut answers = 0;
                while let Some(e) = secc.poll_effect() {
                    match e {
                        Effect::TransmitAs(pt, res) => {
                            prop_assert!(!ended, "answer after the end");
                            prop_assert!(iso20::response_code(pt, &res).is_some());
                            answers += 1;
                        }
                        Effect::SessionEnded { .. } => {
                            prop_assert!(!ended);
                            ended = true;
                        }
                        Effect::Evse(EvseRequest::Authorize { .. }) => {
                            secc.handle_authorization(now, Authorization::Accepted)
                        }
                        Effect::Evse(EvseRequest::Schedules { .. }) => secc.handle_schedules(now, vec![]),
                        Effect::Evse(_) => {}
                        other => prop_assert!(false, "{other:?}"),
                    }
                }
                prop_assert!(answers <= 1);
                if ended {
                    prop_assert_eq!(secc.poll_timeout(), None);
                } else {
                    prop_assert_eq!(answers, 1);
                }
            }
        }
    }
}

// ---- bidirectional power transfer (DC_BPT, AC_BPT) ----

/// An SECC offering BPT: 10 kW and 25 A back at most, asking `demand` W
/// back in dynamic mode.
fn bpt_secc(demand: f64) -> SeccConfig {
    secc_config().with_bpt(Some(
        SeccBpt::new(10_000.0, 25.0).with_discharge_demand(demand),
    ))
}

/// A BPT car: 7 kW and 20 A back at most, `give` Wh to give back.
fn bpt_evcc(dc: bool, mode: ControlMode, give: f64) -> EvccConfig {
    evcc_config(dc, mode).with_bpt(Some(EvBpt::new(7_000.0, 20.0, give)))
}

/// The first message named `name` of `msgs`, as JSON (its body).
fn first(msgs: &[Vec<u8>], name: &str) -> serde_json::Value {
    let b = msgs
        .iter()
        .find(|b| body_name(b) == name)
        .unwrap_or_else(|| panic!("no {name}"));
    json(b)[name].clone()
}

/// A number of a JSON RationalNumber.
fn num(v: &serde_json::Value) -> f64 {
    v["Value"].as_f64().unwrap() * 10f64.powi(v["Exponent"].as_i64().unwrap() as i32)
}

#[test]
fn bpt_scheduled_the_car_gives_back_what_it_set_out_to_then_stops() {
    for dc in [true, false] {
        let at = format!("dc={dc}");
        let mut sim = Sim::new(bpt_secc(0.0), bpt_evcc(dc, ControlMode::Scheduled, 2.0));
        sim.run(Duration::from_secs(600));
        assert_eq!(sim.secc_end, Some(EndReason::Finished), "{at}");
        assert_eq!(sim.evcc_end, Some(EndReason::Finished), "{at}");
        assert!(sim.secc.is_bpt() && sim.evcc.is_bpt(), "{at}");
        let (uni, bpt) = if dc { (2, 6) } else { (1, 5) };
        // both services offered, the bidirectional one selected and detailed
        let services: Vec<u64> = first(&sim.to_evcc, "ServiceDiscoveryRes")
            ["EnergyTransferServiceList"]["Service"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["ServiceID"].as_u64().unwrap())
            .collect();
        assert_eq!(services, [uni, bpt], "{at}");
        assert_eq!(
            first(&sim.to_secc, "ServiceSelectionReq")["SelectedEnergyTransferService"]
                ["ServiceID"],
            bpt
        );
        let detail = first(&sim.to_evcc, "ServiceDetailRes");
        assert_eq!(detail["ServiceID"], bpt, "{at}");
        let names: Vec<&str> = detail["ServiceParameterList"]["ParameterSet"][0]["Parameter"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["Name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"BPTChannel") && names.contains(&"GeneratorMode"),
            "{names:?}"
        );
        assert_eq!(
            names.contains(&"GridCodeIslandingDetectionMethod"),
            !dc,
            "{names:?}"
        );
        // the bidirectional parameters both ways
        let (req, res, mode) = if dc {
            (
                "DC_ChargeParameterDiscoveryReq",
                "DC_ChargeParameterDiscoveryRes",
                "BPT_DC_CPDReqEnergyTransferMode",
            )
        } else {
            (
                "AC_ChargeParameterDiscoveryReq",
                "AC_ChargeParameterDiscoveryRes",
                "BPT_AC_CPDReqEnergyTransferMode",
            )
        };
        assert_eq!(
            num(&first(&sim.to_secc, req)[mode]["EVMaximumDischargePower"]),
            7_000.0
        );
        let res_mode = mode.replace("Req", "Res");
        assert_eq!(
            num(&first(&sim.to_evcc, res)[&res_mode]["EVSEMaximumDischargePower"]),
            10_000.0
        );
        // a DischargingSchedule of what both sides give, negative
        let tuple = &first(&sim.to_evcc, "ScheduleExchangeRes")["Scheduled_SEResControlMode"]
            ["ScheduleTuple"][0];
        let entry = &tuple["DischargingSchedule"]["PowerSchedule"]["PowerScheduleEntries"]
            ["PowerScheduleEntry"][0];
        assert_eq!(num(&entry["Power"]), -7_000.0, "{at}");
        // one price level each (what Josev's EVCC requires)
        for schedule in ["ChargingSchedule", "DischargingSchedule"] {
            let levels = &tuple[schedule]["PriceLevelSchedule"];
            assert_eq!(levels["NumberOfPriceLevels"], 1, "{at} {schedule}");
        }
        // Discharge selected, a negative profile
        let pd = first(&sim.to_secc, "PowerDeliveryReq");
        assert_eq!(pd["BPT_ChannelSelection"], "Discharge", "{at}");
        let p = &pd["EVPowerProfile"]["EVPowerProfileEntries"]["EVPowerProfileEntry"][0]["Power"];
        assert_eq!(num(p), -7_000.0, "{at}");
        // the loop in the BPT control mode, the energy flowing out
        if dc {
            let l = first(&sim.to_secc, "DC_ChargeLoopReq");
            // 7 kW at 400 V
            assert_eq!(
                num(&l["BPT_Scheduled_DC_CLReqControlMode"]["EVTargetCurrent"]),
                -17.5
            );
            assert!(l.get("Scheduled_DC_CLReqControlMode").is_none());
            assert!(sim.evse_requests.contains(&EvseRequest::Target {
                voltage: 400.0,
                current: -17.5
            }));
        } else {
            let l = first(&sim.to_secc, "AC_ChargeLoopReq");
            assert_eq!(
                num(&l["BPT_Scheduled_AC_CLReqControlMode"]["EVPresentActivePower"]),
                -7_000.0
            );
            // the SECC's target follows: 7 kW out
            for b in sim
                .to_evcc
                .iter()
                .filter(|b| body_name(b) == "AC_ChargeLoopRes")
            {
                let r = &json(b)["AC_ChargeLoopRes"]["BPT_Scheduled_AC_CLResControlMode"];
                assert_eq!(num(&r["EVSETargetActivePower"]), -7_000.0);
            }
        }
        // 2 Wh at 7 kW: 0.19 Wh a loop of 100 ms; it stops once given
        // (the present values answered lag the targets by a loop)
        for (who, given, charged) in [
            ("EV", sim.evcc.discharged_wh(), sim.evcc.energy_wh()),
            ("SECC", sim.secc.discharged_wh(), sim.secc.energy_wh()),
        ] {
            assert!((2.0..2.0 + 0.4).contains(&given), "{at} {who} gave {given}");
            assert_eq!(charged, 0.0, "{at} {who}");
        }
        assert_eq!(sim.progress(), ["Start", "Stop"], "{at}");
        assert!(
            sim.answers().iter().all(|(_, c)| c.starts_with("OK")),
            "{at}"
        );
    }
}

#[test]
fn bpt_dynamic_the_secc_asks_back_what_the_car_offers_then_charges_it() {
    for dc in [true, false] {
        let at = format!("dc={dc}");
        let mut sim = Sim::new(bpt_secc(5_000.0), bpt_evcc(dc, ControlMode::Dynamic, 1.0));
        sim.stop_after = Some((40, StopKind::Terminate));
        sim.run(Duration::from_secs(600));
        assert_eq!(sim.secc_end, Some(EndReason::Finished), "{at}");
        assert_eq!(sim.evcc_end, Some(EndReason::Finished), "{at}");
        // the car offered 1 Wh (a negative minimum), then nothing
        let mode = if dc {
            "BPT_Dynamic_DC_CLReqControlMode"
        } else {
            "BPT_Dynamic_AC_CLReqControlMode"
        };
        let name = if dc {
            "DC_ChargeLoopReq"
        } else {
            "AC_ChargeLoopReq"
        };
        let minimums: Vec<f64> = sim
            .to_secc
            .iter()
            .filter(|b| body_name(b) == name)
            .map(|b| num(&json(b)[name][mode]["EVMinimumEnergyRequest"]))
            .collect();
        assert_eq!(minimums[0], -1.0, "{at}");
        assert_eq!(*minimums.last().unwrap(), 0.0, "{at}");
        // 5 kW asked back: 0.14 Wh a loop (the present values answered lag
        // the targets by a loop); then it charged
        for (who, given, charged) in [
            ("EV", sim.evcc.discharged_wh(), sim.evcc.energy_wh()),
            ("SECC", sim.secc.discharged_wh(), sim.secc.energy_wh()),
        ] {
            assert!((1.0..1.0 + 0.3).contains(&given), "{at} {who} gave {given}");
            assert!(charged > 1.0, "{at} {who} charged {charged}");
        }
        if dc {
            // 5 kW at 400 V out, then the car's charge current in
            assert!(sim.evse_requests.contains(&EvseRequest::Target {
                voltage: 400.0,
                current: -12.5
            }));
            assert!(sim.evse_requests.contains(&EvseRequest::Target {
                voltage: 400.0,
                current: 100.0
            }));
        } else {
            let targets: Vec<f64> = sim
                .to_evcc
                .iter()
                .filter(|b| body_name(b) == "AC_ChargeLoopRes")
                .map(|b| {
                    num(
                        &json(b)["AC_ChargeLoopRes"]["BPT_Dynamic_AC_CLResControlMode"]
                            ["EVSETargetActivePower"],
                    )
                })
                .collect();
            assert!(
                targets.contains(&-5_000.0) && targets.contains(&50_000.0),
                "{targets:?}"
            );
        }
    }
}

#[test]
fn bpt_refused_where_it_does_not_belong() {
    // a BPT car at an SECC without BPT: the service is not offered
    for dc in [true, false] {
        let mut sim = Sim::new(secc_config(), bpt_evcc(dc, ControlMode::Scheduled, 1.0));
        sim.run(Duration::from_secs(60));
        let sid = if dc { 6 } else { 5 };
        assert_eq!(
            sim.evcc_end,
            Some(EndReason::Failed {
                response_code: format!("energy transfer service {sid} not offered")
            }),
            "dc={dc}"
        );
    }
    // the BPT service asked of an SECC that does not offer it
    let (mut secc, now) = secc_in(true, ControlMode::Scheduled, SeccState::ServiceSelection);
    let mut w = iso20::sample_request(
        true,
        ControlMode::Scheduled,
        &SESSION,
        Request::ServiceDetail,
    );
    if let Wire::Common(cm::Message::ServiceDetailReq(r)) = &mut w {
        r.service_id = iso20::SERVICE_DC_BPT;
    }
    assert_eq!(send(&mut secc, now, &w).1, "FAILED_ServiceIDInvalid");
    let (mut secc, now) = secc_in(true, ControlMode::Scheduled, SeccState::ServiceSelection);
    let mut w = iso20::sample_request(
        true,
        ControlMode::Scheduled,
        &SESSION,
        Request::ServiceSelection,
    );
    if let Wire::Common(cm::Message::ServiceSelectionReq(r)) = &mut w {
        r.selected_energy_transfer_service.service_id = iso20::SERVICE_DC_BPT;
    }
    assert_eq!(send(&mut secc, now, &w).1, "FAILED_ServiceSelectionInvalid");
    // a channel or a negative profile in a session that is not BPT
    for edit in [
        (|r: &mut cm::PowerDeliveryReqType| {
            r.bpt_channel_selection = Some(cm::ChannelSelectionType::Charge)
        }) as fn(&mut cm::PowerDeliveryReqType),
        |r| {
            let p = r.ev_power_profile.as_mut().unwrap();
            p.ev_power_profile_entries.ev_power_profile_entry[0].power = cm::RationalNumberType {
                exponent: 0,
                value: -100,
            };
        },
    ]
    .into_iter()
    .zip([
        "FAILED_WrongChargeParameter",
        "FAILED_EVPowerProfileInvalid",
    ]) {
        let (mut secc, now) = secc_in(true, ControlMode::Scheduled, SeccState::PreCharge);
        let mut w = power_delivery(true, ControlMode::Scheduled, cm::ChargeProgressType::Start);
        if let Wire::Common(cm::Message::PowerDeliveryReq(r)) = &mut w {
            (edit.0)(r);
        }
        assert_eq!(send(&mut secc, now, &w).1, edit.1);
    }
}

#[test]
fn bpt_sessions_refuse_unidirectional_parameters_and_too_much_discharge() {
    // the requests of a BPT car's session, replayed into a BPT SECC
    let mut sim = Sim::new(bpt_secc(0.0), bpt_evcc(true, ControlMode::Scheduled, 1.0));
    sim.auth = Some((Authorization::Accepted, Duration::ZERO));
    sim.isolation = Some((Isolation::Valid, Duration::ZERO));
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.secc_end, Some(EndReason::Finished));
    let script = sim.to_secc.clone();
    let upto = |name: &str| script.iter().position(|b| body_name(b) == name).unwrap();
    // unidirectional charge parameters in a BPT session
    let (mut secc, now) = replay_with(
        bpt_secc(0.0),
        &script[..upto("DC_ChargeParameterDiscoveryReq")],
    );
    let w = iso20::sample_request(
        true,
        ControlMode::Scheduled,
        &SESSION,
        Request::DcChargeParameterDiscovery,
    );
    assert_eq!(send(&mut secc, now, &w).1, "FAILED_WrongChargeParameter");
    // a profile giving back more than both sides allow (7 kW)
    let k = upto("PowerDeliveryReq");
    let (mut secc, now) = replay_with(bpt_secc(0.0), &script[..k]);
    let mut w = wire(&script[k]);
    if let Wire::Common(cm::Message::PowerDeliveryReq(r)) = &mut w {
        r.ev_power_profile
            .as_mut()
            .unwrap()
            .ev_power_profile_entries
            .ev_power_profile_entry[0]
            .power = cm::RationalNumberType {
            exponent: 3,
            value: -8,
        };
    }
    assert_eq!(send(&mut secc, now, &w).1, "FAILED_EVPowerProfileInvalid");
    // the unidirectional loop in a BPT session
    let k = upto("DC_ChargeLoopReq");
    let (mut secc, now) = replay_with(bpt_secc(0.0), &script[..k]);
    let w = iso20::sample_request(
        true,
        ControlMode::Scheduled,
        &SESSION,
        Request::DcChargeLoop,
    );
    assert_eq!(send(&mut secc, now, &w).1, "FAILED_WrongChargeParameter");
    // the recorded one is taken
    let (mut secc, now) = replay_with(bpt_secc(0.0), &script[..k]);
    assert_eq!(send(&mut secc, now, &wire(&script[k])).1, "OK");
}

/// PowerDelivery(Start) with EVProcessing=Ongoing (no profile yet) is
/// answered OK and starts nothing, as often as the EV sends it; the
/// Finished one starts the power (DC and AC, both control modes).
#[test]
fn power_delivery_start_while_the_ev_is_not_ready_starts_nothing() {
    for (dc, mode) in modes() {
        let at = format!("dc={dc} {mode:?}");
        let state = if dc {
            SeccState::PreCharge
        } else {
            SeccState::PowerDelivery
        };
        let (mut secc, now) = secc_in(dc, mode, state);
        let mut ongoing = power_delivery(dc, mode, cm::ChargeProgressType::Start);
        if let Wire::Common(cm::Message::PowerDeliveryReq(r)) = &mut ongoing {
            r.ev_processing = cm::ProcessingType::Ongoing;
            r.ev_power_profile = None;
        }
        for _ in 0..3 {
            let (pt, exi) = ongoing.encode().unwrap();
            secc.handle_packet(now, pt, &exi);
            let mut answered = None;
            while let Some(e) = secc.poll_effect() {
                match e {
                    Effect::TransmitAs(pt, res) => answered = iso20::response_code(pt, &res),
                    Effect::Evse(EvseRequest::Power(_)) => panic!("{at}: power before Finished"),
                    Effect::SessionEnded { reason } => panic!("{at}: ended {reason:?}"),
                    _ => {}
                }
            }
            assert_eq!(answered.unwrap().1, "OK", "{at}");
            assert_eq!(secc.iso20().unwrap().state(), state, "{at}");
        }
        let finished = power_delivery(dc, mode, cm::ChargeProgressType::Start);
        assert_eq!(send(&mut secc, now, &finished).1, "OK", "{at}");
        assert_eq!(secc.iso20().unwrap().state(), SeccState::ChargeLoop, "{at}");
    }
}

/// ISO 15118-20 Plug & Charge: the authorization by contract
/// (`PnC_AReqAuthorizationMode`, signed in the header).
/// -20 service renegotiation: SessionStop(ServiceRenegotiation) and back
/// to ServiceDiscovery in the same session.
mod renegotiation {
    use super::*;

    fn names(sim: &Sim) -> Vec<String> {
        sim.to_secc.iter().map(|b| body_name(b)).collect()
    }

    fn charging_sessions(sim: &Sim) -> Vec<String> {
        sim.to_secc
            .iter()
            .filter(|b| body_name(b) == "SessionStopReq")
            .map(|b| {
                json(b)["SessionStopReq"]["ChargingSession"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    fn renegotiating(dc: bool, mode: ControlMode, by_secc: bool) -> Sim {
        let mut sim = Sim::new(
            secc_config().with_service_renegotiation(true),
            evcc_config(dc, mode),
        );
        let mut asked = false;
        sim.hook = Box::new(move |secc, _, evcc| {
            if !asked && evcc.charge_loops() == 3 {
                asked = true;
                if by_secc {
                    secc.request_renegotiation();
                }
            }
        });
        sim.stop_after = Some((8, StopKind::Terminate));
        sim
    }

    #[test]
    fn the_secc_asks_and_the_ev_comes_back_through_service_discovery() {
        for (dc, mode) in modes() {
            let mut sim = renegotiating(dc, mode, true);
            sim.run(Duration::from_secs(600));
            assert_eq!(
                (&sim.secc_end, &sim.evcc_end),
                (&Some(EndReason::Finished), &Some(EndReason::Finished)),
                "{dc} {mode:?}: {:?}",
                sim.answers()
            );
            // one charge loop answer asked for it, with the sequence timeout
            let asked: Vec<serde_json::Value> = sim
                .to_evcc
                .iter()
                .filter(|b| body_name(b).ends_with("ChargeLoopRes"))
                .filter_map(|b| {
                    let j = json(b);
                    let (_, body) = j.as_object()?.iter().next()?;
                    let s = body.get("EVSEStatus")?.clone();
                    (s["EVSENotification"] == "ServiceRenegotiation").then_some(s)
                })
                .collect();
            assert_eq!(asked.len(), 1, "{dc} {mode:?}");
            assert_eq!(asked[0]["NotificationMaxDelay"], 60);
            assert_eq!(
                charging_sessions(&sim),
                ["ServiceRenegotiation", "Terminate"]
            );
            assert_eq!(sim.progress(), ["Start", "Stop", "Start", "Stop"]);
            // after the first SessionStop: the whole selection again
            let n = names(&sim);
            let stop = n.iter().position(|x| x == "SessionStopReq").unwrap();
            let again: Vec<&str> = n[stop + 1..]
                .iter()
                .map(String::as_str)
                .filter(|x| !x.ends_with("ChargeLoopReq") && !x.ends_with("PreChargeReq"))
                .collect();
            let mut want = vec![
                "ServiceDiscoveryReq",
                "ServiceDetailReq",
                "ServiceSelectionReq",
            ];
            want.push(if dc {
                "DC_ChargeParameterDiscoveryReq"
            } else {
                "AC_ChargeParameterDiscoveryReq"
            });
            want.push("ScheduleExchangeReq");
            if dc {
                want.push("DC_CableCheckReq");
            }
            // Start, the loop (left out), Stop: one after `dedup`
            want.push("PowerDeliveryReq");
            if dc {
                want.push("DC_WeldingDetectionReq");
            }
            want.push("SessionStopReq");
            let mut got = again.clone();
            got.dedup();
            assert_eq!(got, want, "{dc} {mode:?}");
            // the same session id after SessionSetup; the schedules asked again as a renegotiation
            let ids: std::collections::BTreeSet<Vec<u8>> = sim
                .to_secc
                .iter()
                .skip(2)
                .map(|b| session_id_of(b))
                .collect();
            assert_eq!(ids.len(), 1, "{ids:?}");
            let renegotiated: Vec<bool> = sim
                .evse_requests
                .iter()
                .filter_map(|r| match r {
                    EvseRequest::Schedules { renegotiation, .. } => Some(*renegotiation),
                    _ => None,
                })
                .collect();
            if mode == ControlMode::Scheduled {
                assert_eq!(renegotiated, [false, true], "{dc}");
            }
            if dc {
                let checks = sim
                    .evse_requests
                    .iter()
                    .filter(|r| matches!(r, EvseRequest::StartCableCheck))
                    .count();
                assert_eq!(checks, 2);
            }
            assert_eq!(sim.secc.iso20().unwrap().service_renegotiations(), 1);
            assert_eq!(sim.evcc.iso20().unwrap().service_renegotiations(), 1);
            assert_eq!(sim.evcc.charge_loops(), 8);
        }
    }

    #[test]
    fn the_ev_asks_of_its_own() {
        let mut sim = renegotiating(true, ControlMode::Scheduled, false);
        let mut asked = false;
        sim.ev_hook = Box::new(move |evcc| {
            if !asked && evcc.charge_loops() == 2 {
                asked = true;
                evcc.request_service_renegotiation();
            }
        });
        sim.run(Duration::from_secs(600));
        assert_eq!(
            sim.secc_end,
            Some(EndReason::Finished),
            "{:?}",
            sim.answers()
        );
        assert_eq!(
            charging_sessions(&sim),
            ["ServiceRenegotiation", "Terminate"]
        );
        assert_eq!(sim.secc.iso20().unwrap().service_renegotiations(), 1);
    }

    #[test]
    fn without_support_nothing_is_asked_and_a_request_is_refused() {
        // the SECC does not offer it: its request is ignored, the EV's too
        let mut sim = Sim::new(secc_config(), evcc_config(true, ControlMode::Scheduled));
        sim.hook = Box::new(|secc, _, evcc| {
            if evcc.charge_loops() == 3 {
                secc.request_renegotiation();
            }
        });
        sim.stop_after = Some((5, StopKind::Terminate));
        sim.ev_hook = Box::new(|evcc| {
            if evcc.charge_loops() == 2 {
                evcc.request_service_renegotiation();
            }
        });
        sim.run(Duration::from_secs(600));
        assert_eq!(sim.secc_end, Some(EndReason::Finished));
        assert_eq!(charging_sessions(&sim), ["Terminate"]);
        let sd = sim
            .to_evcc
            .iter()
            .find(|b| body_name(b) == "ServiceDiscoveryRes")
            .unwrap();
        assert_eq!(
            json(sd)["ServiceDiscoveryRes"]["ServiceRenegotiationSupported"],
            false
        );
        // asked anyway: FAILED_NoServiceRenegotiationSupported
        let (mut secc, now) = secc_in(true, ControlMode::Scheduled, SeccState::PostCharge);
        let mut w =
            iso20::sample_request(true, ControlMode::Scheduled, &SESSION, Request::SessionStop);
        if let Wire::Common(cm::Message::SessionStopReq(r)) = &mut w {
            r.charging_session = cm::ChargingSessionType::ServiceRenegotiation;
        }
        assert_eq!(
            send(&mut secc, now, &w),
            (
                "SessionStopRes".into(),
                "FAILED_NoServiceRenegotiationSupported".into()
            )
        );
    }
}

mod pnc {
    use super::*;
    use evproto_iso15118::grammar::Base64Binary;
    use evproto_iso15118::pki::demo::{issue, Curve, DemoContract, DemoPki, Role};
    use evproto_iso15118::pki::{self, Cert, TrustStore};
    use evproto_iso15118::session::{Contract, ContractStatus, EvPnc, SeccPnc};
    use session_common::frame;
    use std::sync::OnceLock;

    /// 2026-05-28: the machines' Unix time; the demo PKIs are valid 2023..2030.
    const NOW: u64 = 1_780_000_000;
    const CHALLENGE: [u8; 16] = [0xc5; 16];
    const EMAID: &str = "DEEVPC000000001";

    fn p521() -> &'static DemoContract {
        static P: OnceLock<DemoContract> = OnceLock::new();
        P.get_or_init(|| {
            DemoContract::generate(
                b"evproto test",
                EMAID,
                Curve::P521,
                1_690_000_000,
                1_900_000_000,
            )
            .unwrap()
        })
    }

    fn foreign() -> &'static DemoContract {
        static P: OnceLock<DemoContract> = OnceLock::new();
        P.get_or_init(|| {
            DemoContract::generate(
                b"someone else",
                EMAID,
                Curve::P521,
                1_690_000_000,
                1_900_000_000,
            )
            .unwrap()
        })
    }

    fn p256() -> &'static DemoPki {
        static P: OnceLock<DemoPki> = OnceLock::new();
        P.get_or_init(|| {
            DemoPki::generate(b"evproto test", EMAID, 1_690_000_000, 1_900_000_000).unwrap()
        })
    }

    fn contract_of(c: &DemoContract) -> Contract {
        Contract::new(
            c.emaid.clone(),
            c.contract.cert.der().to_vec(),
            c.sub_cas(),
            c.contract.key_bytes(),
        )
    }

    /// The SECC trusts both the -20 and the -2 MO roots.
    fn roots() -> Vec<Cert> {
        vec![p521().mo_root.cert.clone(), p256().mo_root.cert.clone()]
    }

    fn pnc_secc() -> SeccConfig {
        secc_config()
            .with_unix_time(NOW)
            .with_pnc(Some(SeccPnc::new(TrustStore::new(roots()), CHALLENGE)))
    }

    fn pnc_evcc(dc: bool, contract: Option<Contract>) -> EvccConfig {
        evcc_config(dc, ControlMode::Scheduled)
            .with_unix_time(NOW)
            .with_pnc(Some(EvPnc::new(contract, None, TrustStore::new(vec![]))))
    }

    fn sim(dc: bool, contract: Option<Contract>) -> Sim {
        let mut sim = Sim::new(pnc_secc(), pnc_evcc(dc, contract));
        sim.stop_after = Some((2, StopKind::Terminate));
        sim
    }

    fn finished(sim: &Sim) {
        assert_eq!(
            (&sim.secc_end, &sim.evcc_end),
            (&Some(EndReason::Finished), &Some(EndReason::Finished)),
            "{:?}",
            sim.answers()
        );
    }

    fn failed_with(sim: &Sim, code: &str, secc_end: EndReason) {
        let answers = sim.answers();
        assert_eq!(
            answers.last(),
            Some(&("AuthorizationRes".to_string(), code.to_string())),
            "{answers:?} secc {:?} evcc {:?}",
            sim.secc_end,
            sim.evcc_end
        );
        assert_eq!(sim.secc_end, Some(secc_end));
        assert_eq!(
            sim.evcc_end,
            Some(EndReason::Failed {
                response_code: code.into()
            })
        );
    }

    fn failed(code: &str) -> EndReason {
        EndReason::Failed {
            response_code: code.into(),
        }
    }

    fn auth_reqs(sim: &Sim) -> Vec<cm::AuthorizationReqType> {
        sim.to_secc
            .iter()
            .filter_map(|b| match try_wire(b)? {
                Wire::Common(cm::Message::AuthorizationReq(r)) => Some(*r),
                _ => None,
            })
            .collect()
    }

    /// A -20 message (the handshake's are not).
    fn try_wire(b: &[u8]) -> Option<Wire> {
        let (pt, exi) = unframe(b)?;
        Wire::decode(pt, &exi).ok()
    }

    fn contracts_asked(sim: &Sim) -> Vec<(String, Vec<u8>, usize)> {
        sim.evse_requests
            .iter()
            .filter_map(|r| match r {
                EvseRequest::AuthorizeContract {
                    emaid,
                    certificate,
                    sub_cas,
                } => Some((emaid.clone(), certificate.clone(), sub_cas.len())),
                _ => None,
            })
            .collect()
    }

    /// The header signature of `r` verified, here, with `key`.
    fn verify(r: &cm::AuthorizationReqType, key: &pki::VerifyingKey) -> Result<(), String> {
        let mode = r
            .pn_c_a_req_authorization_mode
            .clone()
            .ok_or("no PnC mode")?;
        let mut fragment = Vec::new();
        cm::Fragment::PnCAReqAuthorizationMode(Box::new(mode.clone()))
            .encode(&mut fragment)
            .map_err(|e| e.to_string())?;
        let sig = r.header.signature.as_ref().ok_or("no signature")?;
        pki::verify(sig, &[(mode.id.as_str(), &fragment)], key).map_err(|e| e.to_string())
    }

    /// Rewrites the AuthorizationReqs on their way to the SECC.
    fn tamper_auth(
        mut f: impl FnMut(&mut cm::AuthorizationReqType) + 'static,
    ) -> session_common::Tamper {
        Box::new(move |b| {
            let Wire::Common(cm::Message::AuthorizationReq(mut r)) = try_wire(b)? else {
                return None;
            };
            f(&mut r);
            let (pt, exi) = Wire::Common(cm::Message::AuthorizationReq(r))
                .encode()
                .ok()?;
            Some(frame(pt, &exi))
        })
    }

    #[test]
    fn a_secp521r1_contract_authorizes_dc_and_ac() {
        for dc in [true, false] {
            let mut sim = sim(dc, Some(contract_of(p521())));
            sim.run(Duration::from_secs(120));
            finished(&sim);
            // PnC offered with the challenge, and EIM beside it (no EIM parameters)
            let setup = sim
                .to_evcc
                .iter()
                .find(|b| body_name(b) == "AuthorizationSetupRes")
                .unwrap();
            let Wire::Common(cm::Message::AuthorizationSetupRes(setup)) = wire(setup) else {
                unreachable!()
            };
            assert_eq!(
                setup.authorization_services,
                [cm::AuthorizationType::PnC, cm::AuthorizationType::EIM]
            );
            assert_eq!(
                setup
                    .pn_c_as_res_authorization_mode
                    .unwrap()
                    .gen_challenge
                    .0,
                CHALLENGE
            );
            assert!(setup.eim_as_res_authorization_mode.is_none());
            // the car's request: PnC, the challenge, its chain, signed with SHA-512
            // (answered Ongoing once: the verdict is asked after the first answer)
            let reqs = auth_reqs(&sim);
            assert!(reqs
                .windows(2)
                .all(|w| w[0].header.signature == w[1].header.signature
                    && w[0].pn_c_a_req_authorization_mode == w[1].pn_c_a_req_authorization_mode));
            let r = &reqs[0];
            assert_eq!(r.selected_authorization_service, cm::AuthorizationType::PnC);
            assert!(r.eim_a_req_authorization_mode.is_none());
            let mode = r.pn_c_a_req_authorization_mode.as_ref().unwrap();
            assert_eq!(mode.gen_challenge.0, CHALLENGE);
            assert_eq!(
                mode.contract_certificate_chain.certificate.0,
                p521().contract.cert.der()
            );
            assert_eq!(
                mode.contract_certificate_chain
                    .sub_certificates
                    .certificate
                    .len(),
                2
            );
            let sig = r.header.signature.as_ref().unwrap();
            assert_eq!(
                sig.signed_info.signature_method.algorithm,
                pki::ECDSA_SHA512
            );
            assert_eq!(sig.signed_info.reference[0].uri.as_deref(), Some("#id1"));
            assert_eq!(sig.signature_value.value.0.len(), 132);
            verify(r, &p521().contract.key.verifying_key()).unwrap();
            assert_eq!(
                verify(r, &foreign().contract.key.verifying_key()),
                Err("the signature does not verify".into())
            );
            // the backend asked once, by the certificate's eMAID; no EIM asked
            assert_eq!(
                contracts_asked(&sim),
                [(EMAID.to_string(), p521().contract.cert.der().to_vec(), 2)]
            );
            assert!(!sim
                .evse_requests
                .iter()
                .any(|r| matches!(r, EvseRequest::Authorize { .. })));
        }
    }

    #[test]
    fn a_secp256r1_contract_is_taken_as_well_signed_with_sha256() {
        // Josev's EVCC signs -20 PnC with its -2 contract
        let p = p256();
        let contract = Contract::new(
            p.emaid.clone(),
            p.contract.cert.der().to_vec(),
            p.contract_sub_cas(),
            p.contract.key_bytes(),
        );
        let mut sim = sim(true, Some(contract));
        sim.run(Duration::from_secs(120));
        finished(&sim);
        let reqs = auth_reqs(&sim);
        let sig = reqs[0].header.signature.as_ref().unwrap();
        assert_eq!(
            sig.signed_info.signature_method.algorithm,
            pki::ECDSA_SHA256
        );
        verify(&reqs[0], &p.contract.key.verifying_key()).unwrap();
        assert_eq!(contracts_asked(&sim).len(), 1);
    }

    #[test]
    fn the_verdict_pending_is_ongoing_then_revoked_or_rejected_ends_the_session() {
        for (status, code) in [
            (ContractStatus::Revoked, "WARNING_CertificateRevoked"),
            (
                ContractStatus::Rejected,
                "WARNING_GeneralPnCAuthorizationError",
            ),
        ] {
            let mut sim = sim(true, Some(contract_of(p521())));
            sim.contract_status = None;
            sim.run(Duration::from_secs(5));
            assert_eq!(sim.secc_end, None);
            let ongoing = sim
                .answers()
                .iter()
                .filter(|(n, _)| n == "AuthorizationRes")
                .count();
            assert!(ongoing >= 3, "{:?}", sim.answers());
            // every repeat is the same request, signature and all [V2G20-1582]
            let reqs = auth_reqs(&sim);
            assert!(reqs
                .windows(2)
                .all(|w| w[0].header.signature == w[1].header.signature
                    && w[0].pn_c_a_req_authorization_mode == w[1].pn_c_a_req_authorization_mode));
            assert_eq!(contracts_asked(&sim).len(), 1);
            let now = sim.clock.now();
            sim.secc.handle_contract_status(now, status);
            sim.run(Duration::from_secs(10));
            failed_with(&sim, code, EndReason::AuthorizationRejected);
        }
    }

    #[test]
    fn a_pending_verdict_accepted_goes_on_to_charge() {
        let mut sim = sim(false, Some(contract_of(p521())));
        sim.contract_status = None;
        sim.run(Duration::from_secs(3));
        let now = sim.clock.now();
        sim.secc
            .handle_contract_status(now, ContractStatus::Accepted);
        sim.run(Duration::from_secs(120));
        finished(&sim);
        let processing: Vec<_> = sim
            .to_evcc
            .iter()
            .filter_map(|b| match try_wire(b)? {
                Wire::Common(cm::Message::AuthorizationRes(r)) => Some(r.evse_processing),
                _ => None,
            })
            .collect();
        assert!(processing.len() > 1);
        assert_eq!(processing.last(), Some(&cm::ProcessingType::Finished));
        assert!(processing[..processing.len() - 1]
            .iter()
            .all(|p| *p == cm::ProcessingType::Ongoing));
    }

    /// A contract leaf under the -20 MO sub-CA 2, valid `from`..`to`.
    fn contract_valid(from: u64, to: u64) -> Contract {
        let p = p521();
        let key = evproto_iso15118::pki::demo::derive_key_p521(b"other", "contract");
        let c = issue(
            &format!("CN={EMAID},O=evproto,DC=MO"),
            &key,
            Some(&p.mo_sub_ca2),
            Role::Signer,
            77,
            from,
            to,
        )
        .unwrap();
        Contract::new(
            EMAID.into(),
            c.cert.der().to_vec(),
            p.sub_cas(),
            c.key_bytes(),
        )
    }

    #[test]
    fn contracts_that_do_not_verify_get_their_warning() {
        let cases: Vec<(&str, Contract)> = vec![
            ("WARNING_CertificateValidationError", contract_of(foreign())),
            (
                "WARNING_CertificateExpired",
                contract_valid(1_690_000_000, NOW - 1),
            ),
            (
                "WARNING_CertificateNotYetValid",
                contract_valid(NOW + 3600, 1_900_000_000),
            ),
        ];
        for (code, contract) in cases {
            let mut sim = sim(true, Some(contract));
            sim.run(Duration::from_secs(30));
            failed_with(&sim, code, failed(code));
            assert!(contracts_asked(&sim).is_empty(), "{code}");
        }
        // a chain without its sub-CA 1 does not reach the root
        let mut c = contract_of(p521());
        c.sub_cas.truncate(1);
        let mut sim = sim(true, Some(c));
        sim.run(Duration::from_secs(30));
        let code = "WARNING_CertificateValidationError";
        failed_with(&sim, code, failed(code));
    }

    #[test]
    fn a_wrong_challenge_or_signature_is_refused() {
        type Edit = Box<dyn FnMut(&mut cm::AuthorizationReqType)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "WARNING_ChallengeInvalid",
                Box::new(|r| {
                    r.pn_c_a_req_authorization_mode
                        .as_mut()
                        .unwrap()
                        .gen_challenge
                        .0[0] ^= 1
                }),
            ),
            (
                "FAILED_SignatureError",
                Box::new(|r| r.header.signature.as_mut().unwrap().signature_value.value.0[7] ^= 1),
            ),
            (
                "FAILED_SignatureError",
                Box::new(|r| r.header.signature = None),
            ),
            (
                // signed by the right key over another Id: no Reference for it
                "FAILED_SignatureError",
                Box::new(|r| r.pn_c_a_req_authorization_mode.as_mut().unwrap().id = "id2".into()),
            ),
            (
                // another contract key's signature over the same element
                "FAILED_SignatureError",
                Box::new(|r| {
                    let mode = r.pn_c_a_req_authorization_mode.clone().unwrap();
                    let mut fragment = Vec::new();
                    cm::Fragment::PnCAReqAuthorizationMode(Box::new(mode.clone()))
                        .encode(&mut fragment)
                        .unwrap();
                    r.header.signature = Some(
                        pki::sign(&foreign().contract.key, &[(mode.id.as_str(), &fragment)])
                            .unwrap(),
                    );
                }),
            ),
            (
                // EIM selected, PnC's parameters sent
                "WARNING_AuthorizationSelectionInvalid",
                Box::new(|r| r.selected_authorization_service = cm::AuthorizationType::EIM),
            ),
        ];
        for (code, edit) in cases {
            let mut sim = sim(true, Some(contract_of(p521())));
            sim.tamper = tamper_auth(edit);
            sim.run(Duration::from_secs(30));
            failed_with(&sim, code, failed(code));
            assert!(contracts_asked(&sim).is_empty(), "{code}");
        }
    }

    #[test]
    fn a_repeat_that_is_not_the_same_request_is_refused() {
        type Edit = Box<dyn FnMut(&mut cm::AuthorizationReqType)>;
        let cases: Vec<Edit> = vec![
            // another chain (one sub-CA fewer) under the same signature
            Box::new(|r| {
                r.pn_c_a_req_authorization_mode
                    .as_mut()
                    .unwrap()
                    .contract_certificate_chain
                    .sub_certificates
                    .certificate
                    .truncate(1)
            }),
            // EIM instead, while the contract is being decided
            Box::new(|r| {
                r.selected_authorization_service = cm::AuthorizationType::EIM;
                r.pn_c_a_req_authorization_mode = None;
                r.eim_a_req_authorization_mode = Some(cm::EimAReqAuthorizationModeType {});
                r.header.signature = None;
            }),
        ];
        for mut edit in cases {
            let mut sim = sim(true, Some(contract_of(p521())));
            sim.contract_status = None;
            // the first request as it is, the repeats edited
            let mut seen = 0;
            sim.tamper = tamper_auth(move |r| {
                seen += 1;
                if seen > 1 {
                    edit(r)
                }
            });
            sim.run(Duration::from_secs(30));
            let code = "WARNING_AuthorizationSelectionInvalid";
            failed_with(&sim, code, failed(code));
            assert_eq!(contracts_asked(&sim).len(), 1);
        }
    }

    /// -20 CertificateInstallation: the car has a provisioning certificate
    /// and no contract; the backend delivers `p521()`'s contract.
    mod install {
        use super::*;
        use evproto_iso15118::pki::demo::DemoProvisioning;
        use evproto_iso15118::session::{ContractProvisioning, Provisioning};

        pub(super) fn provisioning() -> &'static DemoProvisioning {
            static P: OnceLock<DemoProvisioning> = OnceLock::new();
            P.get_or_init(|| {
                DemoProvisioning::generate(b"evproto test", 1_690_000_000, 1_900_000_000).unwrap()
            })
        }

        fn other_car() -> &'static DemoProvisioning {
            static P: OnceLock<DemoProvisioning> = OnceLock::new();
            P.get_or_init(|| {
                DemoProvisioning::generate(b"another car", 1_690_000_000, 1_900_000_000).unwrap()
            })
        }

        fn cps() -> ContractProvisioning {
            let p = provisioning();
            ContractProvisioning {
                cps_key: p.cps.key.clone(),
                cps_certificate: p.cps.cert.der().to_vec(),
                cps_sub_cas: p.cps_sub_cas(),
                contract: contract_of(p521()),
            }
        }

        fn car(dc: bool, prov: &DemoProvisioning, v2g_root: &Cert) -> EvccConfig {
            evcc_config(dc, ControlMode::Scheduled)
                .with_unix_time(NOW)
                .with_pnc(Some(EvPnc::new(
                    None,
                    Some(Provisioning::new(
                        prov.oem_provisioning.cert.der().to_vec(),
                        prov.oem_provisioning.key_bytes(),
                    )),
                    TrustStore::new(vec![v2g_root.clone()]),
                )))
        }

        fn installing(dc: bool) -> Sim {
            let p = provisioning();
            let mut sim = Sim::new(pnc_secc(), car(dc, p, &p.v2g_root.cert));
            sim.provisioning_iso20 = Some(cps());
            sim.stop_after = Some((2, StopKind::Terminate));
            sim
        }

        fn install_reqs(sim: &Sim) -> Vec<cm::CertificateInstallationReqType> {
            sim.to_secc
                .iter()
                .filter_map(|b| match try_wire(b)? {
                    Wire::Common(cm::Message::CertificateInstallationReq(r)) => Some(*r),
                    _ => None,
                })
                .collect()
        }

        fn install_res(sim: &Sim) -> Option<cm::CertificateInstallationResType> {
            sim.to_evcc.iter().find_map(|b| match try_wire(b)? {
                Wire::Common(cm::Message::CertificateInstallationRes(r)) => Some(*r),
                _ => None,
            })
        }

        fn fragment_of(c: &cm::SignedCertificateChainType) -> Vec<u8> {
            let mut f = Vec::new();
            cm::Fragment::OEMProvisioningCertificateChain(Box::new(c.clone()))
                .encode(&mut f)
                .unwrap();
            f
        }

        #[test]
        fn a_car_without_a_contract_installs_one_then_authorizes_with_it_dc_and_ac() {
            let p = provisioning();
            for dc in [true, false] {
                let mut sim = installing(dc);
                sim.run(Duration::from_secs(120));
                finished(&sim);
                let names: Vec<String> = sim.to_secc.iter().map(|b| body_name(b)).collect();
                let at = |n: &str| names.iter().position(|x| x == n).unwrap();
                assert!(at("AuthorizationSetupReq") < at("CertificateInstallationReq"));
                assert!(at("CertificateInstallationReq") < at("AuthorizationReq"));
                // the service offered with PnC
                let setup = sim
                    .to_evcc
                    .iter()
                    .find(|b| body_name(b) == "AuthorizationSetupRes")
                    .unwrap();
                let Wire::Common(cm::Message::AuthorizationSetupRes(setup)) = wire(setup) else {
                    unreachable!()
                };
                assert!(setup.certificate_installation_service);
                // the request: the provisioning certificate, the V2G root the
                // car trusts, one chain wanted, signed (SHA-512) by the OEM key
                let reqs = install_reqs(&sim);
                assert_eq!(reqs.len(), 1);
                let r = &reqs[0];
                let chain = &r.oem_provisioning_certificate_chain;
                assert_eq!(chain.certificate.0, p.oem_provisioning.cert.der());
                assert_eq!(r.maximum_contract_certificate_chains, 1);
                assert_eq!(
                    r.list_of_root_certificate_i_ds.root_certificate_id,
                    TrustStore::new(vec![p.v2g_root.cert.clone()]).root_ids()
                );
                let sig = r.header.signature.as_ref().unwrap();
                assert_eq!(
                    sig.signed_info.signature_method.algorithm,
                    pki::ECDSA_SHA512
                );
                let f = fragment_of(chain);
                pki::verify(
                    sig,
                    &[(chain.id.as_str(), &f)],
                    &p.oem_provisioning.key.verifying_key(),
                )
                .unwrap();
                // asked of the backend once, with the PCID's certificate
                let asked: Vec<_> = sim
                    .evse_requests
                    .iter()
                    .filter_map(|r| match r {
                        EvseRequest::InstallCertificateIso20 {
                            oem_provisioning_cert,
                            root_ids,
                            maximum_chains,
                            ..
                        } => Some((
                            oem_provisioning_cert.clone(),
                            root_ids.len(),
                            *maximum_chains,
                        )),
                        _ => None,
                    })
                    .collect();
                assert_eq!(asked, [(p.oem_provisioning.cert.der().to_vec(), 1, 1)]);
                // the response: OK, the contract chain, secp521r1, the key
                // in 94 bytes, the ephemeral key uncompressed in 133
                let res = install_res(&sim).unwrap();
                assert_eq!(res.response_code, cm::ResponseCodeType::OK);
                assert_eq!(res.evse_processing, cm::ProcessingType::Finished);
                let d = &res.signed_installation_data;
                assert_eq!(d.ecdh_curve, cm::EcdhCurveType::SECP521);
                assert_eq!(d.dh_public_key.0.len(), 133);
                assert_eq!(
                    d.secp521_encrypted_private_key.as_ref().unwrap().0.len(),
                    94
                );
                assert_eq!(
                    d.contract_certificate_chain.certificate.0,
                    p521().contract.cert.der()
                );
                // the car took the contract, key and all, and authorized with it
                let installed = sim.evcc.iso20().unwrap().installed_contract().unwrap();
                let want = contract_of(p521());
                assert_eq!(
                    (
                        &installed.emaid,
                        &installed.certificate,
                        &installed.sub_cas,
                        &installed.key
                    ),
                    (&want.emaid, &want.certificate, &want.sub_cas, &want.key)
                );
                assert_eq!(sim.evcc.contract_emaid(), Some(EMAID));
                let auth = auth_reqs(&sim);
                assert_eq!(
                    auth[0].selected_authorization_service,
                    cm::AuthorizationType::PnC
                );
                verify(&auth[0], &p521().contract.key.verifying_key()).unwrap();
                assert_eq!(
                    contracts_asked(&sim),
                    [(EMAID.to_string(), p521().contract.cert.der().to_vec(), 2)]
                );
            }
        }

        #[test]
        fn no_contract_at_the_backend_is_warning_no_certificate_available() {
            let mut sim = installing(true);
            sim.provisioning_iso20 = None;
            sim.run(Duration::from_secs(30));
            let code = "WARNING_NoCertificateAvailable";
            assert_eq!(
                sim.answers().last(),
                Some(&("CertificateInstallationRes".to_string(), code.to_string()))
            );
            assert_eq!(sim.secc_end, Some(failed(code)));
            assert_eq!(sim.evcc_end, Some(failed(code)));
        }

        fn evcc_failure(sim: &Sim) -> String {
            match &sim.evcc_end {
                Some(EndReason::Failed { response_code }) => response_code.clone(),
                other => panic!("{other:?} {:?}", sim.answers()),
            }
        }

        #[test]
        fn an_installation_the_car_cannot_trust_or_decrypt_ends_it() {
            let p = provisioning();
            // a CPS chain under a V2G root the car does not know
            let mut sim = Sim::new(pnc_secc(), car(true, p, &other_car().v2g_root.cert));
            sim.provisioning_iso20 = Some(cps());
            sim.run(Duration::from_secs(30));
            assert!(
                evcc_failure(&sim).starts_with("CertificateInstallationRes: CPS chain:"),
                "{}",
                evcc_failure(&sim)
            );
            assert!(sim.evcc.iso20().unwrap().installed_contract().is_none());
            // SignedInstallationData signed by a key that is not the CPS
            // leaf's: the signature does not hold
            let mut sim = installing(true);
            let mut cps = cps();
            cps.cps_key = other_car().cps.key.clone();
            sim.provisioning_iso20 = Some(cps);
            sim.run(Duration::from_secs(30));
            assert!(
                evcc_failure(&sim).starts_with("CertificateInstallationRes: signature:"),
                "{}",
                evcc_failure(&sim)
            );
            // a request carrying another car's provisioning certificate
            // (signed by that car): the key is encrypted for the other car,
            // and this one cannot decrypt it
            let mut sim = installing(true);
            sim.tamper = Box::new(|b| {
                let Wire::Common(cm::Message::CertificateInstallationReq(mut r)) = try_wire(b)?
                else {
                    return None;
                };
                let o = other_car();
                let chain = &mut r.oem_provisioning_certificate_chain;
                chain.certificate = Base64Binary(o.oem_provisioning.cert.der().to_vec());
                let f = fragment_of(chain);
                r.header.signature =
                    Some(pki::sign(&o.oem_provisioning.key, &[(chain.id.as_str(), &f)]).ok()?);
                let (pt, exi) = Wire::Common(cm::Message::CertificateInstallationReq(r))
                    .encode()
                    .ok()?;
                Some(frame(pt, &exi))
            });
            sim.run(Duration::from_secs(30));
            assert_eq!(
                evcc_failure(&sim),
                "CertificateInstallationRes: the contract key does not decrypt: the AES-GCM tag does not verify"
            );
        }

        #[test]
        fn a_request_not_signed_by_its_provisioning_key_is_failed_signature_error() {
            type Edit = Box<dyn FnMut(&mut cm::CertificateInstallationReqType)>;
            let cases: Vec<Edit> = vec![
                Box::new(|r| r.header.signature = None),
                Box::new(|r| {
                    // signed by another car's key
                    let chain = &r.oem_provisioning_certificate_chain;
                    let f = fragment_of(chain);
                    r.header.signature = pki::sign(
                        &other_car().oem_provisioning.key,
                        &[(chain.id.as_str(), &f)],
                    )
                    .ok();
                }),
                Box::new(|r| {
                    // another certificate than the one signed
                    r.oem_provisioning_certificate_chain.certificate =
                        Base64Binary(other_car().oem_provisioning.cert.der().to_vec());
                }),
            ];
            for mut edit in cases {
                let mut sim = installing(true);
                sim.tamper = Box::new(move |b| {
                    let Wire::Common(cm::Message::CertificateInstallationReq(mut r)) = try_wire(b)?
                    else {
                        return None;
                    };
                    edit(&mut r);
                    let (pt, exi) = Wire::Common(cm::Message::CertificateInstallationReq(r))
                        .encode()
                        .ok()?;
                    Some(frame(pt, &exi))
                });
                sim.run(Duration::from_secs(30));
                let code = "FAILED_SignatureError";
                assert_eq!(
                    sim.answers().last(),
                    Some(&("CertificateInstallationRes".to_string(), code.to_string()))
                );
                assert_eq!(sim.secc_end, Some(failed(code)));
                assert!(!sim
                    .evse_requests
                    .iter()
                    .any(|r| matches!(r, EvseRequest::InstallCertificateIso20 { .. })));
            }
        }

        #[test]
        fn a_request_while_the_backend_decides_is_a_sequence_error() {
            let p = provisioning();
            // the SECC with PnC, at AuthorizationReq
            let script = script(true, ControlMode::Scheduled);
            let k = prefix_in(&script, SeccState::Authorization);
            let (mut secc, now) = replay_with(pnc_secc(), &script[..k]);
            let mut w = iso20::sample_request(
                true,
                ControlMode::Scheduled,
                &SESSION,
                Request::CertificateInstallation,
            );
            if let Wire::Common(cm::Message::CertificateInstallationReq(r)) = &mut w {
                let chain = &mut r.oem_provisioning_certificate_chain;
                chain.certificate = Base64Binary(p.oem_provisioning.cert.der().to_vec());
                let f = fragment_of(chain);
                r.header.signature =
                    Some(pki::sign(&p.oem_provisioning.key, &[(chain.id.as_str(), &f)]).unwrap());
            }
            let (pt, exi) = w.encode().unwrap();
            secc.handle_packet(now, pt, &exi);
            // asked of the backend, no answer yet
            assert!(matches!(
                secc.poll_effect(),
                Some(Effect::Evse(EvseRequest::InstallCertificateIso20 { .. }))
            ));
            assert_eq!(secc.poll_effect(), None);
            // the EV does not wait: a sequence error, and the session ends
            let auth = iso20::sample_request(
                true,
                ControlMode::Scheduled,
                &SESSION,
                Request::Authorization,
            );
            assert_eq!(
                send(&mut secc, now, &auth),
                ("AuthorizationRes".into(), "FAILED_SequenceError".into())
            );
            assert!(matches!(ended(&mut secc), Some(EndReason::Failed { .. })));
            // the backend's late answer goes nowhere
            let late = cps().install_iso20(p.oem_provisioning.cert.der(), &[1; 66], [2; 12]);
            secc.handle_iso20_certificate_installation(now, late.ok());
            assert_eq!(secc.poll_effect(), None);
        }

        #[test]
        fn without_pnc_at_the_secc_there_is_no_installation() {
            // not offered: the car without a contract uses EIM
            let p = provisioning();
            let mut sim = Sim::new(
                secc_config().with_unix_time(NOW),
                car(true, p, &p.v2g_root.cert),
            );
            sim.stop_after = Some((2, StopKind::Terminate));
            sim.run(Duration::from_secs(120));
            finished(&sim);
            assert!(install_reqs(&sim).is_empty());
            assert_eq!(
                auth_reqs(&sim)[0].selected_authorization_service,
                cm::AuthorizationType::EIM
            );
            // asked anyway: a sequence error
            let (mut secc, now) = secc_in(true, ControlMode::Scheduled, SeccState::Authorization);
            let w = iso20::sample_request(
                true,
                ControlMode::Scheduled,
                &SESSION,
                Request::CertificateInstallation,
            );
            assert_eq!(
                send(&mut secc, now, &w),
                (
                    "CertificateInstallationRes".into(),
                    "FAILED_SequenceError".into()
                )
            );
        }
    }

    #[test]
    fn without_pnc_at_the_secc_the_car_uses_eim_and_a_pnc_request_is_refused() {
        // the SECC offers EIM only: the car with a contract falls back to it
        let mut sim = Sim::new(
            secc_config().with_unix_time(NOW),
            pnc_evcc(true, Some(contract_of(p521()))),
        );
        sim.stop_after = Some((2, StopKind::Terminate));
        sim.run(Duration::from_secs(120));
        finished(&sim);
        let reqs = auth_reqs(&sim);
        assert!(reqs.iter().all(|r| r.selected_authorization_service
            == cm::AuthorizationType::EIM
            && r.header.signature.is_none()));
        // a PnC request all the same
        let mut sim = Sim::new(
            secc_config().with_unix_time(NOW),
            pnc_evcc(true, Some(contract_of(p521()))),
        );
        sim.tamper = tamper_auth(|r| {
            let c = p521();
            r.selected_authorization_service = cm::AuthorizationType::PnC;
            r.eim_a_req_authorization_mode = None;
            r.pn_c_a_req_authorization_mode = Some(cm::PnCAReqAuthorizationModeType {
                id: "id1".into(),
                gen_challenge: Base64Binary(CHALLENGE.to_vec()),
                contract_certificate_chain: cm::ContractCertificateChainType {
                    certificate: Base64Binary(c.contract.cert.der().to_vec()),
                    sub_certificates: cm::SubCertificatesType {
                        certificate: c.sub_cas().into_iter().map(Base64Binary).collect(),
                    },
                },
            });
        });
        sim.run(Duration::from_secs(30));
        let code = "WARNING_AuthorizationSelectionInvalid";
        failed_with(&sim, code, failed(code));
        // a car without a contract at a PnC SECC: EIM, asked of the EVSE
        let mut sim = self::sim(false, None);
        sim.run(Duration::from_secs(120));
        finished(&sim);
        assert!(contracts_asked(&sim).is_empty());
        assert!(sim
            .evse_requests
            .iter()
            .any(|r| matches!(r, EvseRequest::Authorize { .. })));
        assert!(auth_reqs(&sim)
            .iter()
            .all(|r| r.selected_authorization_service == cm::AuthorizationType::EIM));
    }

    #[test]
    fn a_car_whose_contract_key_is_not_its_certificates_ends_before_sending() {
        let mut c = contract_of(p521());
        c.key = foreign().contract.key_bytes();
        let mut sim = sim(true, Some(c));
        sim.run(Duration::from_secs(30));
        assert!(auth_reqs(&sim).is_empty());
        match &sim.evcc_end {
            Some(EndReason::Failed { response_code }) => {
                assert!(response_code.starts_with("contract: "), "{response_code}")
            }
            other => panic!("{other:?}"),
        }
    }
}

/// ISO 15118-20 value-added services: offered in ServiceDiscoveryRes,
/// detailed, selected with a parameter set, handed to the EVSE.
mod vas {
    use super::*;
    use evproto_iso15118::session::Vas;

    fn parking() -> Vas {
        let mut v = Vas::internet(false);
        v.service_id = 66;
        v.parameter_sets.truncate(1);
        v
    }

    fn vas_secc() -> SeccConfig {
        secc_config().with_vas(vec![Vas::internet(true), parking()])
    }

    #[test]
    fn the_car_asks_detail_of_what_it_wants_and_selects_its_first_set() {
        for dc in [true, false] {
            let evcc = evcc_config(dc, ControlMode::Scheduled).with_vas(vec![70, 65]);
            let mut sim = Sim::new(vas_secc(), evcc);
            sim.stop_after = Some((2, StopKind::Terminate));
            sim.run(Duration::from_secs(120));
            assert_eq!(
                sim.secc_end,
                Some(EndReason::Finished),
                "{:?}",
                sim.answers()
            );
            assert_eq!(sim.evcc_end, Some(EndReason::Finished));
            // both offered, free or not, in the SECC's order
            let discovery = first(&sim.to_evcc, "ServiceDiscoveryRes");
            assert_eq!(
                discovery["VASList"]["Service"],
                serde_json::json!([{"ServiceID": 65, "FreeService": true},
                    {"ServiceID": 66, "FreeService": false}])
            );
            // the energy service's detail, then Internet's (70 is not offered, 66 not wanted)
            let asked: Vec<u64> = sim
                .to_secc
                .iter()
                .filter(|b| body_name(b) == "ServiceDetailReq")
                .map(|b| json(b)["ServiceDetailReq"]["ServiceID"].as_u64().unwrap())
                .collect();
            assert_eq!(asked, [if dc { 2 } else { 1 }, 65]);
            let detail = sim
                .to_evcc
                .iter()
                .filter(|b| body_name(b) == "ServiceDetailRes")
                .nth(1)
                .map(|b| json(b))
                .unwrap();
            let sets = &detail["ServiceDetailRes"]["ServiceParameterList"]["ParameterSet"];
            assert_eq!(sets.as_array().unwrap().len(), 4, "{detail}");
            assert_eq!(sets[3]["Parameter"][0]["finiteString"], "https", "{detail}");
            assert_eq!(sets[3]["Parameter"][1]["intValue"], 443, "{detail}");
            let selection = first(&sim.to_secc, "ServiceSelectionReq");
            assert_eq!(
                selection["SelectedVASList"]["SelectedService"],
                serde_json::json!([{"ServiceID": 65, "ParameterSetID": 1}])
            );
            assert_eq!(sim.secc.iso20().unwrap().selected_vas(), [(65, 1)]);
            assert_eq!(sim.evcc.selected_vas(), [(65, 1)]);
            let told: Vec<_> = sim
                .evse_requests
                .iter()
                .filter_map(|r| match r {
                    EvseRequest::ValueAddedServices { selected } => Some(selected.clone()),
                    _ => None,
                })
                .collect();
            assert_eq!(told, [vec![(65, 1)]]);
        }
    }

    #[test]
    fn without_vas_wanted_or_offered_nothing_is_listed_or_selected() {
        // offered, not wanted: listed, never detailed nor selected
        let mut sim = Sim::new(vas_secc(), evcc_config(true, ControlMode::Dynamic));
        sim.stop_after = Some((1, StopKind::Terminate));
        sim.run(Duration::from_secs(120));
        assert_eq!(sim.evcc_end, Some(EndReason::Finished));
        assert_eq!(
            sim.to_secc
                .iter()
                .filter(|b| body_name(b) == "ServiceDetailReq")
                .count(),
            1
        );
        assert!(first(&sim.to_secc, "ServiceSelectionReq")
            .get("SelectedVASList")
            .is_none());
        assert!(sim.secc.selected_vas().is_empty());
        assert!(!sim
            .evse_requests
            .iter()
            .any(|r| matches!(r, EvseRequest::ValueAddedServices { .. })));
        // wanted, not offered: no VASList at all
        let evcc = evcc_config(true, ControlMode::Dynamic).with_vas(vec![65]);
        let mut sim = Sim::new(secc_config(), evcc);
        sim.stop_after = Some((1, StopKind::Terminate));
        sim.run(Duration::from_secs(120));
        assert_eq!(sim.evcc_end, Some(EndReason::Finished));
        assert!(first(&sim.to_evcc, "ServiceDiscoveryRes")
            .get("VASList")
            .is_none());
        assert!(sim.evcc.selected_vas().is_empty());
    }

    /// The SECC (with both VAS) in ServiceDiscovery, ServiceSelection.
    fn secc_at(state: SeccState) -> (Secc, Instant) {
        let script = script(true, ControlMode::Scheduled);
        let k = (1..script.len())
            .find(|k| {
                replay_with(vas_secc(), &script[..*k])
                    .0
                    .iso20()
                    .unwrap()
                    .state()
                    == state
            })
            .unwrap();
        replay_with(vas_secc(), &script[..k])
    }

    fn answer(secc: &mut Secc, now: Instant, w: &Wire) -> serde_json::Value {
        let (pt, exi) = w.encode().unwrap();
        secc.handle_packet(now, pt, &exi);
        loop {
            match secc.poll_effect() {
                Some(Effect::TransmitAs(pt, res)) => return json(&session_common::frame(pt, &res)),
                Some(_) => {}
                None => panic!("no answer"),
            }
        }
    }

    #[test]
    fn supported_service_ids_limit_the_vas_listed() {
        for (supported, listed) in [
            (
                Some(vec![2, 66]),
                serde_json::json!([{"ServiceID": 66, "FreeService": false}]),
            ),
            (Some(vec![2]), serde_json::Value::Null),
            (
                None,
                serde_json::json!([{"ServiceID": 65, "FreeService": true},
                    {"ServiceID": 66, "FreeService": false}]),
            ),
        ] {
            let (mut secc, now) = secc_at(SeccState::ServiceDiscovery);
            let mut w = iso20::sample_request(
                true,
                ControlMode::Scheduled,
                &SESSION,
                Request::ServiceDiscovery,
            );
            if let Wire::Common(cm::Message::ServiceDiscoveryReq(r)) = &mut w {
                r.supported_service_i_ds = supported
                    .clone()
                    .map(|service_id| cm::ServiceIDListType { service_id });
            }
            let res = answer(&mut secc, now, &w);
            assert_eq!(
                res["ServiceDiscoveryRes"]["VASList"]["Service"], listed,
                "{supported:?}: {res}"
            );
        }
    }

    fn selection(vas: &[(u16, u16)]) -> Wire {
        let mut w = iso20::sample_request(
            true,
            ControlMode::Scheduled,
            &SESSION,
            Request::ServiceSelection,
        );
        if let Wire::Common(cm::Message::ServiceSelectionReq(r)) = &mut w {
            r.selected_vas_list = Some(cm::SelectedServiceListType {
                selected_service: vas
                    .iter()
                    .map(|(service_id, parameter_set_id)| cm::SelectedServiceType {
                        service_id: *service_id,
                        parameter_set_id: *parameter_set_id,
                    })
                    .collect(),
            });
        }
        w
    }

    #[test]
    fn a_vas_not_offered_or_of_a_set_not_offered_or_twice_is_refused() {
        for vas in [
            &[(70, 1)][..],
            &[(65, 9)][..],
            &[(66, 2)][..],
            &[(65, 1), (65, 3)][..],
        ] {
            let (mut secc, now) = secc_at(SeccState::ServiceSelection);
            let (name, code) = send(&mut secc, now, &selection(vas));
            assert_eq!(
                (name.as_str(), code.as_str()),
                ("ServiceSelectionRes", "FAILED_ServiceSelectionInvalid"),
                "{vas:?}"
            );
            assert!(secc.selected_vas().is_empty());
        }
        // both offered, each with one of its sets: taken
        let (mut secc, now) = secc_at(SeccState::ServiceSelection);
        assert_eq!(
            send(&mut secc, now, &selection(&[(66, 1), (65, 4)])).1,
            "OK"
        );
        assert_eq!(secc.selected_vas(), [(66, 1), (65, 4)]);
        // ServiceDetail of a VAS not offered
        let (mut secc, now) = secc_at(SeccState::ServiceSelection);
        let mut w = iso20::sample_request(
            true,
            ControlMode::Scheduled,
            &SESSION,
            Request::ServiceDetail,
        );
        if let Wire::Common(cm::Message::ServiceDetailReq(r)) = &mut w {
            r.service_id = 70;
        }
        assert_eq!(send(&mut secc, now, &w).1, "FAILED_ServiceIDInvalid");
    }
}
