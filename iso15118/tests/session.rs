//! Session state machines: our EVCC against our SECC in memory on a
//! virtual clock, every byte through the real EXI codecs.
#![allow(missing_docs)]

use std::time::Duration;

use evproto_iso15118::session::{
    din, Authorization, Effect, EndReason, EvNotice, Evcc, EvccConfig, EvseRequest, Isolation,
    MsgKind, PausedSession, Protocol, ScheduleTuple, Secc, SeccConfig, StopKind, TimerKind,
};
use test_support::VirtualClock;

mod session_common;
use session_common::{body_name_in, collapse, replay, Plant, EVCC_ID, SESSION};

/// DIN: the EVSE has no schedules to offer, the power module drops to
/// 0 V when switched off.
struct Din;

impl Plant for Din {
    fn schedules(_: &mut Sim) -> Vec<ScheduleTuple> {
        vec![]
    }
    fn power(sim: &mut Sim, on: bool) {
        if !on {
            sim.evse.present_voltage = 0.0;
            sim.evse.present_current = 0.0;
            sim.secc.set_evse(sim.evse.clone());
        }
    }
    fn body_name(b: &[u8]) -> String {
        body_name(b)
    }
    fn response_code(b: &[u8]) -> Option<(String, String)> {
        din::response_code(b)
    }
}

type Sim = session_common::Sim<Din>;

impl Sim {
    fn new(secc: SeccConfig, evcc: EvccConfig) -> Self {
        let clock = VirtualClock::new();
        let now = clock.now();
        let evse = secc.evse.clone();
        let (secc, evcc) = (Secc::new(secc, now), Evcc::new(evcc, now));
        Self::with(clock, secc, evcc, evse, Din)
    }

    fn din() -> Self {
        Self::new(
            SeccConfig::new(SESSION.to_vec()),
            EvccConfig::din_dc(EVCC_ID.to_vec()),
        )
    }
}

/// The body element of a DIN message (or the handshake's root).
fn body_name(b: &[u8]) -> String {
    use evproto_iso15118::messages::din as m;
    body_name_in(b, |b| match m::Message::decode(b) {
        Ok(m::Message::V2gMessage(v)) => Some(serde_json::to_value(&v.body).unwrap()),
        _ => None,
    })
}

mod din_dc {
    use super::*;

    fn happy(n: u32) -> Sim {
        let mut sim = Sim::din();
        sim.stop_after = Some((n, StopKind::Terminate));
        sim.run(Duration::from_secs(600));
        sim
    }

    #[test]
    fn happy_path_with_one_five_and_a_hundred_loops() {
        for n in [1u32, 5, 100] {
            let sim = happy(n);
            assert_eq!(sim.secc_end, Some(EndReason::Finished), "n={n}");
            assert_eq!(sim.evcc_end, Some(EndReason::Finished), "n={n}");
            assert_eq!(sim.evcc.charge_loops(), n);
            // authorization takes 500 ms at 100 ms per repeat: Ongoing 5 times, then Finished;
            // the schedules come right after the first ChargeParameterDiscoveryRes (Ongoing);
            // the cable check 300 ms; PreCharge reaches 400 V on its second answer
            assert_eq!(
                sim.requests(),
                collapse(&[
                    ("supportedAppProtocolReq", 1),
                    ("SessionSetupReq", 1),
                    ("ServiceDiscoveryReq", 1),
                    ("ServicePaymentSelectionReq", 1),
                    ("ContractAuthenticationReq", 6),
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
            let answers = sim.answers();
            assert!(
                answers.iter().all(|(_, c)| c.starts_with("OK")),
                "{answers:?}"
            );
            assert_eq!(
                answers[0],
                ("SessionSetupRes".into(), "OK_NewSessionEstablished".into())
            );
            assert_eq!(sim.evcc.session_id(), Some(&SESSION[..]));
            // energy: the first CurrentDemandRes still shows the PreCharge
            // current; then 400 V × 100 A every 100 ms
            let expected = f64::from(n - 1) * 400.0 * 100.0 * 0.1 / 3600.0;
            assert!(
                (sim.evcc.energy_wh() - expected).abs() < 1e-6,
                "{}",
                sim.evcc.energy_wh()
            );
            assert!((sim.secc.energy_wh() - expected).abs() < 1e-6);
            let authorize = sim
                .evse_requests
                .iter()
                .filter(|r| matches!(r, EvseRequest::Authorize { evcc_id } if evcc_id == &EVCC_ID))
                .count();
            assert_eq!(authorize, 1);
            assert!(sim.evse_requests.contains(&EvseRequest::Power(true)));
            assert_eq!(sim.evse_requests.last(), Some(&EvseRequest::Power(false)));
            assert!(sim.notices.contains(&EvNotice::PreChargeDone));
            assert_eq!(sim.secc.poll_timeout(), None);
            assert_eq!(sim.evcc.poll_timeout(), None);
        }
    }

    #[test]
    fn resume_joins_the_paused_session() {
        let old = vec![0x11, 0x22, 0x33, 0x44];
        let mut sim = Sim::new(
            SeccConfig::new(SESSION.to_vec()).with_resume(Some(PausedSession {
                session_id: old.clone(),
            })),
            EvccConfig::din_dc(EVCC_ID.to_vec()).with_resume(Some(old.clone())),
        );
        sim.stop_after = Some((2, StopKind::Terminate));
        sim.run(Duration::from_secs(600));
        assert_eq!(sim.secc_end, Some(EndReason::Finished));
        assert_eq!(sim.evcc_end, Some(EndReason::Finished));
        assert_eq!(
            sim.answers()[0],
            ("SessionSetupRes".into(), "OK_OldSessionJoined".into())
        );
        assert_eq!(sim.secc.session_id(), Some(&old[..]));
        assert_eq!(sim.evcc.session_id(), Some(&old[..]));
        // every message after the handshake carries the old id
        for b in sim.to_secc[1..].iter().chain(&sim.to_evcc[1..]) {
            use evproto_iso15118::messages::din as m;
            let Ok(m::Message::V2gMessage(v)) = m::Message::decode(b) else {
                panic!()
            };
            assert_eq!(v.header.session_id.0, old);
        }

        // an id the SECC does not know: a new session
        let mut sim = Sim::new(
            SeccConfig::new(SESSION.to_vec()).with_resume(Some(PausedSession {
                session_id: old.clone(),
            })),
            EvccConfig::din_dc(EVCC_ID.to_vec()).with_resume(Some(vec![7, 7])),
        );
        sim.stop_after = Some((1, StopKind::Terminate));
        sim.run(Duration::from_secs(600));
        assert_eq!(sim.evcc_end, Some(EndReason::Finished));
        assert_eq!(
            sim.answers()[0],
            ("SessionSetupRes".into(), "OK_NewSessionEstablished".into())
        );
        assert_eq!(sim.evcc.session_id(), Some(&SESSION[..]));

        // DIN has no pause: a Pause stop terminates
        let mut sim = Sim::din();
        sim.stop_after = Some((1, StopKind::Pause));
        sim.run(Duration::from_secs(600));
        assert_eq!(sim.secc_end, Some(EndReason::Finished));
        assert_eq!(sim.evcc_end, Some(EndReason::Finished));
    }

    #[test]
    fn long_authorization_keeps_the_secc_answering_ongoing() {
        let mut sim = Sim::din();
        sim.auth = Some((Authorization::Accepted, Duration::from_secs(30)));
        sim.stop_after = Some((3, StopKind::Terminate));
        sim.run(Duration::from_secs(600));
        assert_eq!(sim.evcc_end, Some(EndReason::Finished));
        let ongoing = sim
            .to_evcc
            .iter()
            .filter(|b| body_name(b) == "ContractAuthenticationRes")
            .filter(|b| {
                let din_json = decode_json(b);
                din_json["ContractAuthenticationRes"]["EVSEProcessing"] == "Ongoing"
            })
            .count();
        assert_eq!(ongoing, 300);
    }

    #[test]
    fn rejected_authorization_fails_the_session() {
        let mut sim = Sim::din();
        sim.auth = Some((Authorization::Rejected, Duration::from_secs(1)));
        sim.run(Duration::from_secs(600));
        assert_eq!(sim.secc_end, Some(EndReason::AuthorizationRejected));
        assert_eq!(
            sim.evcc_end,
            Some(EndReason::Failed {
                response_code: "FAILED".into()
            })
        );
        assert_eq!(
            sim.answers().last().unwrap(),
            &(
                "ContractAuthenticationRes".to_string(),
                "FAILED".to_string()
            )
        );
    }

    #[test]
    fn emergency_stop_during_the_charge_loop() {
        let mut sim = Sim::din();
        sim.hook = Box::new(|secc, evse, evcc| {
            if evcc.charge_loops() == 10 && !evse.emergency_stop {
                evse.emergency_stop = true;
                secc.set_evse(evse.clone());
            }
        });
        sim.run(Duration::from_secs(600));
        assert_eq!(sim.secc_end, Some(EndReason::EmergencyStop));
        assert_eq!(sim.evcc_end, Some(EndReason::EmergencyStop));
        let last = sim.to_evcc.last().unwrap();
        let json = decode_json(last);
        assert_eq!(json["CurrentDemandRes"]["ResponseCode"], "FAILED");
        assert_eq!(
            json["CurrentDemandRes"]["DC_EVSEStatus"]["EVSEStatusCode"],
            "EVSE_EmergencyShutdown"
        );
        assert_eq!(sim.evcc.charge_loops(), 10);
    }

    #[test]
    fn isolation_fault_at_cable_check() {
        let mut sim = Sim::din();
        sim.isolation = Some((Isolation::Fault, Duration::from_millis(250)));
        sim.run(Duration::from_secs(600));
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
        assert!(!sim
            .evse_requests
            .iter()
            .any(|r| matches!(r, EvseRequest::Power(true))));
    }

    #[test]
    fn isolation_fault_during_the_charge_loop() {
        let mut sim = Sim::din();
        sim.hook = Box::new(|secc, evse, evcc| {
            if evcc.charge_loops() == 4 && evse.isolation != Isolation::Fault {
                evse.isolation = Isolation::Fault;
                secc.set_evse(evse.clone());
            }
        });
        sim.run(Duration::from_secs(600));
        assert_eq!(sim.secc_end, Some(EndReason::IsolationFault));
        assert_eq!(sim.evcc_end, Some(EndReason::IsolationFault));
        assert_eq!(
            decode_json(sim.to_evcc.last().unwrap())["CurrentDemandRes"]["ResponseCode"],
            "FAILED"
        );
    }

    #[test]
    fn secc_sequence_timeout_ends_the_session() {
        // the EVCC goes silent after ServiceDiscoveryRes: its answer is lost
        let mut sim = Sim::din();
        sim.lose_answer = Box::new(|b| body_name(b) == "ServiceDiscoveryRes");
        let start = sim.clock.now();
        sim.run(Duration::from_secs(59));
        assert_eq!(sim.secc_end, None);
        // (the EVCC gave up after its 2 s message timeout)
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
    fn evcc_message_timeout_ends_the_session() {
        let mut sim = Sim::din();
        let mut seen = 0;
        sim.lose_answer = Box::new(move |b| {
            if body_name(b) == "CurrentDemandRes" {
                seen += 1;
                return seen == 7;
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
        assert_eq!(sim.evcc.charge_loops(), 6);
        // the SECC waits for its sequence timeout
        assert_eq!(sim.secc_end, None);
        sim.run(Duration::from_secs(61));
        assert_eq!(
            sim.secc_end,
            Some(EndReason::Timeout(TimerKind::SeccSequence))
        );
    }

    #[test]
    fn evcc_ongoing_timeout_when_authorization_never_comes() {
        let mut sim = Sim::din();
        sim.auth = None;
        let start = sim.clock.now();
        sim.run(Duration::from_secs(120));
        assert_eq!(
            sim.evcc_end,
            Some(EndReason::Timeout(TimerKind::EvccOngoing))
        );
        let ended_after = sim.evcc_end_at.unwrap() - start;
        assert!(ended_after >= Duration::from_secs(60) && ended_after < Duration::from_secs(61));
    }

    #[test]
    fn evcc_cable_check_and_precharge_timeouts() {
        let mut sim = Sim::din();
        sim.isolation = None;
        sim.run(Duration::from_secs(120));
        assert_eq!(
            sim.evcc_end,
            Some(EndReason::Timeout(TimerKind::CableCheck))
        );

        let mut sim = Sim::din();
        sim.follow_targets = false;
        sim.run(Duration::from_secs(120));
        assert_eq!(sim.evcc_end, Some(EndReason::Timeout(TimerKind::PreCharge)));
        let pre = sim
            .requests()
            .iter()
            .find(|(n, _)| n == "PreChargeReq")
            .unwrap()
            .1;
        assert!((69..=71).contains(&pre), "{pre} PreChargeReq in 7 s");
    }

    /// The EVCC's requests of a run where the EVSE decides at once, to
    /// replay into fresh SECCs.
    fn script() -> Vec<Vec<u8>> {
        let mut sim = Sim::din();
        sim.auth = Some((Authorization::Accepted, Duration::ZERO));
        sim.isolation = Some((Isolation::Valid, Duration::ZERO));
        sim.stop_after = Some((2, StopKind::Terminate));
        sim.run(Duration::from_secs(60));
        assert_eq!(sim.secc_end, Some(EndReason::Finished));
        sim.to_secc
    }

    #[test]
    fn every_message_out_of_order_is_a_sequence_error() {
        let script = script();
        let mut checked = 0;
        // after the handshake (index 1), before each later message
        for k in 1..script.len() {
            let (probe, _) = replay(&script[..k]);
            let state = probe.din().unwrap().state();
            let id = probe.session_id().map(<[u8]>::to_vec).unwrap_or(vec![0]);
            for req in din::Request::ALL {
                if state.allows(req) {
                    continue;
                }
                let (mut secc, now) = replay(&script[..k]);
                secc.handle_message(now, &din::encode_request(&id, req));
                let Some(Effect::Transmit(res)) = secc.poll_effect() else {
                    panic!("{state:?} {req:?}: no answer")
                };
                assert_eq!(
                    din::response_code(&res),
                    Some((format!("{req:?}Res"), "FAILED_SequenceError".into())),
                    "{state:?} {req:?}"
                );
                assert_eq!(
                    secc.poll_effect(),
                    Some(Effect::SessionEnded {
                        reason: EndReason::SequenceError
                    })
                );
                assert_eq!(secc.poll_effect(), None);
                assert_eq!(secc.poll_timeout(), None);
                checked += 1;
            }
        }
        assert!(checked > 200, "{checked}");
    }

    #[test]
    fn unknown_session_id_is_refused() {
        let script = script();
        for k in [3usize, 8, script.len() - 2] {
            let (probe, _) = replay(&script[..k]);
            let state = probe.din().unwrap().state();
            let req = din::Request::ALL
                .into_iter()
                .find(|r| state.allows(*r))
                .unwrap();
            let (mut secc, now) = replay(&script[..k]);
            secc.handle_message(now, &din::encode_request(&[9, 9, 9, 9], req));
            let Some(Effect::Transmit(res)) = secc.poll_effect() else {
                panic!()
            };
            assert_eq!(
                din::response_code(&res),
                Some((format!("{req:?}Res"), "FAILED_UnknownSession".into()))
            );
            assert_eq!(
                secc.poll_effect(),
                Some(Effect::SessionEnded {
                    reason: EndReason::UnknownSession
                })
            );
        }
    }

    #[test]
    fn garbage_ends_the_session_without_an_answer() {
        let script = script();
        let (mut secc, now) = replay(&script[..4]);
        secc.handle_message(now, &[0x80, 0xff, 0x00]);
        assert!(matches!(
            secc.poll_effect(),
            Some(Effect::SessionEnded {
                reason: EndReason::Malformed(_)
            })
        ));
        assert_eq!(secc.poll_effect(), None);
        // and nothing after the end
        secc.handle_message(now, &script[4]);
        assert_eq!(secc.poll_effect(), None);
    }

    #[test]
    fn evcc_refuses_an_unasked_answer() {
        let script = script();
        let clock = VirtualClock::new();
        let mut evcc = Evcc::new(EvccConfig::din_dc(EVCC_ID.to_vec()), clock.now());
        let _sap = evcc.poll_effect();
        // a SessionSetupReq is no answer to the handshake
        evcc.handle_message(clock.now(), &script[1]);
        assert!(matches!(
            evcc.poll_effect(),
            Some(Effect::SessionEnded {
                reason: EndReason::Malformed(_)
            })
        ));
        assert_eq!(evcc.protocol(), None::<Protocol>);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            /// Random sequences of valid requests (right or wrong session
            /// id, random EVSE decisions and time steps): the SECC never
            /// panics, every answer is a DIN response, a FAILED answer ends
            /// the session, and nothing comes after the end.
            #[test]
            fn secc_answers_anything_cleanly(
                steps in proptest::collection::vec(
                    (0usize..17, any::<bool>(), 0u8..6, 0u64..3000), 1..40)
            ) {
                let script = script();
                let mut clock = VirtualClock::new();
                let mut secc = Secc::new(SeccConfig::new(SESSION.to_vec()), clock.now());
                secc.handle_message(clock.now(), &script[0]);
                let _ = secc.poll_effect();
                let mut ended = false;
                for (kind, right_id, action, ms) in steps {
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
                        _ => {}
                    }
                    if secc.poll_timeout().is_some_and(|t| t <= now) {
                        secc.handle_timeout(now);
                    }
                    let id = if right_id { SESSION.to_vec() } else { vec![0] };
                    secc.handle_message(now, &din::encode_request(&id, din::Request::ALL[kind]));
                    while let Some(e) = secc.poll_effect() {
                        prop_assert!(!ended, "effect after the end: {:?}", e);
                        match e {
                            Effect::Transmit(b) => {
                                let (name, code) = din::response_code(&b)
                                    .expect("a DIN response");
                                prop_assert!(name.ends_with("Res"));
                                if !code.starts_with("OK") {
                                    prop_assert!(secc.ended().is_some(), "{} {} without an end", name, code);
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
}

fn decode_json(b: &[u8]) -> serde_json::Value {
    use evproto_iso15118::messages::din as m;
    let m::Message::V2gMessage(v) = m::Message::decode(b).unwrap() else {
        panic!()
    };
    serde_json::to_value(&v.body).unwrap()
}
