//! Session state machines: our EVCC against our SECC in memory on a
//! virtual clock, every byte through the real EXI codecs.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use evproto_iso15118::session::{
    din, Authorization, Effect, EndReason, EvNotice, Evcc, EvccConfig, EvseRequest, EvseStatus,
    Isolation, MsgKind, PausedSession, Protocol, Secc, SeccConfig, StopKind, TimerKind,
};
use test_support::VirtualClock;

const SESSION: [u8; 8] = [0x52, 0xc8, 0xb2, 0x86, 0xbf, 0xfe, 0x36, 0x2d];
const EVCC_ID: [u8; 6] = [0x84, 0x87, 0x72, 0x60, 0xf3, 0x58];

type LoseAnswer = Box<dyn FnMut(&[u8]) -> bool>;
type Hook = Box<dyn FnMut(&mut Secc, &mut EvseStatus, &Evcc)>;

/// The EVSE and car around the two machines, and the wire between them.
struct Sim {
    clock: VirtualClock,
    secc: Secc,
    evcc: Evcc,
    evse: EvseStatus,
    /// Authorization decision and how long it takes (`None`: never).
    auth: Option<(Authorization, Duration)>,
    auth_at: Option<Instant>,
    /// Isolation result and how long the test takes (`None`: never ends).
    isolation: Option<(Isolation, Duration)>,
    isolation_at: Option<Instant>,
    /// The power module follows targets (false: stuck at 0 V).
    follow_targets: bool,
    /// Stop after this many charge loops.
    stop_after: Option<(u32, StopKind)>,
    /// Drops the SECC's answer when true.
    lose_answer: LoseAnswer,
    /// Called after every delivery, to inject faults.
    hook: Hook,
    to_secc: Vec<Vec<u8>>,
    to_evcc: Vec<Vec<u8>>,
    evse_requests: Vec<EvseRequest>,
    notices: Vec<EvNotice>,
    secc_end: Option<EndReason>,
    evcc_end: Option<EndReason>,
    evcc_end_at: Option<Instant>,
}

impl Sim {
    fn new(secc: SeccConfig, evcc: EvccConfig) -> Self {
        let clock = VirtualClock::new();
        let now = clock.now();
        let evse = secc.evse.clone();
        Self {
            secc: Secc::new(secc, now),
            evcc: Evcc::new(evcc, now),
            clock,
            evse,
            auth: Some((Authorization::Accepted, Duration::from_millis(500))),
            auth_at: None,
            isolation: Some((Isolation::Valid, Duration::from_millis(300))),
            isolation_at: None,
            follow_targets: true,
            stop_after: None,
            lose_answer: Box::new(|_| false),
            hook: Box::new(|_, _, _| {}),
            to_secc: Vec::new(),
            to_evcc: Vec::new(),
            evse_requests: Vec::new(),
            notices: Vec::new(),
            secc_end: None,
            evcc_end: None,
            evcc_end_at: None,
        }
    }

    fn din() -> Self {
        Self::new(
            SeccConfig::new(SESSION.to_vec()),
            EvccConfig::din_dc(EVCC_ID.to_vec()),
        )
    }

    fn evse_request(&mut self, r: EvseRequest) {
        let now = self.clock.now();
        match &r {
            EvseRequest::Authorize { .. } => {
                self.auth_at = self.auth.map(|(_, d)| now + d);
            }
            EvseRequest::Schedules { .. } => self.secc.handle_schedules(now, vec![]),
            EvseRequest::StartCableCheck => {
                self.isolation_at = self.isolation.map(|(_, d)| now + d);
            }
            EvseRequest::Target { voltage, current } if self.follow_targets => {
                self.evse.present_voltage = voltage.min(self.evse.max_voltage);
                self.evse.present_current = current.min(self.evse.max_current);
                self.secc.set_evse(self.evse.clone());
            }
            EvseRequest::Power(false) => {
                self.evse.present_voltage = 0.0;
                self.evse.present_current = 0.0;
                self.secc.set_evse(self.evse.clone());
            }
            _ => {}
        }
        self.evse_requests.push(r);
    }

    /// Delivers everything that is ready now.
    fn drain(&mut self) {
        loop {
            let now = self.clock.now();
            let mut progress = false;
            while let Some(e) = self.evcc.poll_effect() {
                progress = true;
                match e {
                    Effect::Transmit(b) => {
                        self.to_secc.push(b.clone());
                        self.secc.handle_message(now, &b);
                    }
                    Effect::SessionEnded { reason } => {
                        assert!(self.evcc_end.is_none(), "EVCC ended twice");
                        self.evcc_end = Some(reason);
                        self.evcc_end_at = Some(now);
                    }
                    Effect::Ev(n) => self.notices.push(n),
                    other => panic!("EVCC effect {other:?}"),
                }
            }
            while let Some(e) = self.secc.poll_effect() {
                progress = true;
                match e {
                    Effect::Transmit(b) => {
                        if (self.lose_answer)(&b) {
                            continue;
                        }
                        self.to_evcc.push(b.clone());
                        self.evcc.handle_message(now, &b);
                    }
                    Effect::SessionEnded { reason } => {
                        assert!(self.secc_end.is_none(), "SECC ended twice");
                        self.secc_end = Some(reason)
                    }
                    Effect::Evse(r) => self.evse_request(r),
                    other => panic!("SECC effect {other:?}"),
                }
            }
            if let Some((n, kind)) = self.stop_after {
                if self.evcc.charge_loops() >= n {
                    self.evcc.request_stop(kind);
                    self.stop_after = None;
                }
            }
            (self.hook)(&mut self.secc, &mut self.evse, &self.evcc);
            if !progress {
                break;
            }
        }
    }

    /// Runs until both sides ended (or the SECC ended and the EVCC has no
    /// more deadlines) or `limit` of virtual time passed.
    fn run(&mut self, limit: Duration) {
        let end = self.clock.now() + limit;
        self.drain();
        while self.clock.now() < end && !(self.secc_end.is_some() && self.evcc_end.is_some()) {
            let next = [
                self.secc.poll_timeout(),
                self.evcc.poll_timeout(),
                self.auth_at,
                self.isolation_at,
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|n| *n <= end) else {
                self.clock.advance(end - self.clock.now());
                break;
            };
            if next > self.clock.now() {
                self.clock.advance(next - self.clock.now());
            }
            let now = self.clock.now();
            if self.auth_at.is_some_and(|t| t <= now) {
                self.auth_at = None;
                let (d, _) = self.auth.unwrap();
                self.secc.handle_authorization(now, d);
            }
            if self.isolation_at.is_some_and(|t| t <= now) {
                self.isolation_at = None;
                self.evse.isolation = self.isolation.unwrap().0;
                self.secc.set_evse(self.evse.clone());
            }
            self.secc.handle_timeout(now);
            self.evcc.handle_timeout(now);
            self.drain();
        }
    }

    /// The names of the requests the SECC got, in order, runs collapsed:
    /// `("ContractAuthenticationReq", 3)`.
    fn requests(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for b in &self.to_secc {
            let name = body_name(b);
            match out.last_mut() {
                Some((n, c)) if *n == name => *c += 1,
                _ => out.push((name, 1)),
            }
        }
        out
    }

    fn answers(&self) -> Vec<(String, String)> {
        self.to_evcc
            .iter()
            .filter_map(|b| din::response_code(b))
            .collect()
    }
}

/// The body element of a DIN message (or the handshake's root).
fn body_name(b: &[u8]) -> String {
    if let Ok(m) = evproto_iso15118::app_protocol::decode(b) {
        return m.name().to_string();
    }
    use evproto_iso15118::messages::din as m;
    let Ok(m::Message::V2gMessage(v)) = m::Message::decode(b) else {
        return "?".into();
    };
    let json = serde_json::to_value(&v.body).unwrap();
    json.as_object()
        .unwrap()
        .iter()
        .find(|(_, v)| !v.is_null())
        .map(|(k, _)| k.clone())
        .unwrap_or_default()
}

fn collapse(names: &[(&str, usize)]) -> Vec<(String, usize)> {
    names.iter().map(|(n, c)| (n.to_string(), *c)).collect()
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

    /// A SECC fed `msgs`, the EVSE answering at once.
    fn replay(msgs: &[Vec<u8>]) -> (Secc, Instant) {
        let clock = VirtualClock::new();
        let now = clock.now();
        let mut secc = Secc::new(SeccConfig::new(SESSION.to_vec()), now);
        for b in msgs {
            secc.handle_message(now, b);
            while let Some(e) = secc.poll_effect() {
                match e {
                    Effect::Evse(EvseRequest::Authorize { .. }) => {
                        secc.handle_authorization(now, Authorization::Accepted)
                    }
                    Effect::Evse(EvseRequest::Schedules { .. }) => {
                        secc.handle_schedules(now, vec![])
                    }
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
