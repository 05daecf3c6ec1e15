//! Two-peer tests of the sans-IO endpoint on a virtual clock: a charging
//! station core against a CSMS core, frames delivered, dropped, duplicated,
//! delayed and reordered by hand.

use std::time::Duration;

use evproto_ocpp_proto::{
    ApiMisuse, BootState, CallError, Config, Endpoint, Event, PeerMisbehavedKind, ProtocolVersion,
    Role,
};
use test_support::{Pair, Side};

const BOOT_201: &str = r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#;
const BOOT_16: &str = r#"{"chargePointVendor":"V","chargePointModel":"M"}"#;
const ACCEPTED: &str =
    r#"{"currentTime":"2024-01-01T00:00:00Z","interval":300,"status":"Accepted"}"#;
const HEARTBEAT_RES: &str = r#"{"currentTime":"2024-01-01T00:00:00Z"}"#;

fn incoming(events: &[Event]) -> Vec<(String, &'static str)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::IncomingCall { id, action, .. } => Some((id.clone(), *action)),
            _ => None,
        })
        .collect()
}

/// Handles of the calls completed, in order.
fn completed(events: &[Event]) -> Vec<evproto_ocpp_proto::CallHandle> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::CallCompleted { handle, .. } => Some(*handle),
            _ => None,
        })
        .collect()
}

fn misbehaved(events: &[Event]) -> Vec<PeerMisbehavedKind> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::PeerMisbehaved(p) => Some(p.kind),
            _ => None,
        })
        .collect()
}

/// Boots a 2.0.1 pair: station calls, CSMS accepts.
fn booted(version: ProtocolVersion) -> Pair {
    let mut p = Pair::new(version);
    let boot = if version == ProtocolVersion::V16 {
        BOOT_16
    } else {
        BOOT_201
    };
    p.station
        .send_call(p.clock.now(), "BootNotification", boot.into())
        .unwrap();
    p.deliver_one(Side::Csms);
    let calls = incoming(&p.take_events(Side::Csms));
    p.csms.respond(&calls[0].0, Ok(ACCEPTED.into())).unwrap();
    p.drive();
    assert_eq!(p.station.boot_state(), BootState::Accepted);
    assert_eq!(p.csms.boot_state(), BootState::Accepted);
    p.take_events(Side::Station);
    p.take_events(Side::Csms);
    p
}

#[test]
fn boot_then_heartbeat_in_every_version() {
    for v in ProtocolVersion::ALL {
        let mut p = booted(v);
        let h = p
            .station
            .send_call(p.clock.now(), "Heartbeat", "{}".into())
            .unwrap();
        p.deliver_one(Side::Csms);
        let calls = incoming(&p.take_events(Side::Csms));
        assert_eq!(calls[0].1, "Heartbeat");
        p.csms
            .respond(&calls[0].0, Ok(HEARTBEAT_RES.into()))
            .unwrap();
        p.drive();
        let ev = p.take_events(Side::Station);
        assert!(
            matches!(&ev[0], Event::CallCompleted { handle, result: Ok(r), .. } if *handle == h && r == HEARTBEAT_RES),
            "{ev:?}"
        );
    }
}

#[test]
fn one_outstanding_call_the_rest_queue_in_order() {
    let mut p = booted(ProtocolVersion::V201);
    let now = p.clock.now();
    let a = p.station.send_call(now, "Heartbeat", "{}".into()).unwrap();
    let b = p.station.send_call(now, "Heartbeat", "{}".into()).unwrap();
    p.collect();
    assert_eq!(p.to_csms.len(), 1, "only one CALL on the wire");
    assert_eq!(p.station.queued(), 1);
    p.deliver_one(Side::Csms);
    let first = incoming(&p.take_events(Side::Csms));
    p.csms
        .respond(&first[0].0, Ok(HEARTBEAT_RES.into()))
        .unwrap();
    p.deliver_one(Side::Station);
    // the second goes out only now
    assert_eq!(p.to_csms.len(), 1);
    p.deliver_one(Side::Csms);
    let second = incoming(&p.take_events(Side::Csms));
    assert_ne!(first[0].0, second[0].0);
    p.csms
        .respond(&second[0].0, Ok(HEARTBEAT_RES.into()))
        .unwrap();
    p.drive();
    let done = completed(&p.take_events(Side::Station));
    assert_eq!(done, vec![a, b]);
}

#[test]
fn both_directions_at_once_are_independent() {
    let mut p = booted(ProtocolVersion::V201);
    let now = p.clock.now();
    let s = p.station.send_call(now, "Heartbeat", "{}".into()).unwrap();
    let c = p
        .csms
        .send_call(now, "Reset", r#"{"type":"Immediate"}"#.into())
        .unwrap();
    p.collect();
    assert_eq!(
        (p.to_csms.len(), p.to_station.len()),
        (1, 1),
        "both CALLs on the wire together"
    );
    p.drive();
    let at_csms = incoming(&p.take_events(Side::Csms));
    let at_station = incoming(&p.take_events(Side::Station));
    assert_eq!((at_csms[0].1, at_station[0].1), ("Heartbeat", "Reset"));
    // answer in the opposite order
    p.station
        .respond(&at_station[0].0, Ok(r#"{"status":"Accepted"}"#.into()))
        .unwrap();
    p.csms
        .respond(&at_csms[0].0, Ok(HEARTBEAT_RES.into()))
        .unwrap();
    p.drive();
    assert!(p
        .take_events(Side::Station)
        .iter()
        .any(|e| matches!(e, Event::CallCompleted { handle, .. } if *handle == s)));
    assert!(p
        .take_events(Side::Csms)
        .iter()
        .any(|e| matches!(e, Event::CallCompleted { handle, .. } if *handle == c)));
}

#[test]
fn timeout_then_late_result_is_dropped_not_matched_to_the_next_call() {
    let config = Config::default().with_call_timeout(Duration::from_secs(10));
    let mut p = Pair::with_configs(ProtocolVersion::V201, config.clone(), config);
    p.station.set_boot_state(p.clock.now(), BootState::Accepted);
    p.csms.set_boot_state(p.clock.now(), BootState::Accepted);
    let first = p
        .station
        .send_call(p.clock.now(), "Heartbeat", "{}".into())
        .unwrap();
    p.deliver_one(Side::Csms);
    let slow = incoming(&p.take_events(Side::Csms));
    assert_eq!(
        p.station.poll_timeout(),
        Some(p.clock.now() + Duration::from_secs(10))
    );
    p.advance(Duration::from_secs(10));
    let ev = p.take_events(Side::Station);
    assert!(
        matches!(ev[0], Event::CallTimedOut { handle, sent: true, .. } if handle == first),
        "{ev:?}"
    );
    // a new call goes out; then the old answer arrives late
    let second = p
        .station
        .send_call(p.clock.now(), "Heartbeat", "{}".into())
        .unwrap();
    p.deliver_one(Side::Csms);
    let fresh = incoming(&p.take_events(Side::Csms));
    p.csms
        .respond(
            &slow[0].0,
            Ok(r#"{"currentTime":"2000-01-01T00:00:00Z"}"#.into()),
        )
        .unwrap();
    p.deliver_one(Side::Station);
    let ev = p.take_events(Side::Station);
    assert_eq!(misbehaved(&ev), vec![PeerMisbehavedKind::LateResult]);
    assert!(
        !ev.iter().any(|e| matches!(e, Event::CallCompleted { .. })),
        "late result must not complete the new call"
    );
    assert!(p.station.has_outstanding_call());
    p.csms
        .respond(&fresh[0].0, Ok(HEARTBEAT_RES.into()))
        .unwrap();
    p.drive();
    let ev = p.take_events(Side::Station);
    assert!(
        matches!(&ev[0], Event::CallCompleted { handle, result: Ok(r), .. } if *handle == second && r == HEARTBEAT_RES)
    );
}

#[test]
fn queued_calls_time_out_unsent() {
    let config = Config::default().with_call_timeout(Duration::from_secs(5));
    let mut p = Pair::with_configs(ProtocolVersion::V16, config, Config::default());
    p.station.set_boot_state(p.clock.now(), BootState::Accepted);
    p.station
        .send_call(p.clock.now(), "Heartbeat", "{}".into())
        .unwrap();
    let queued = p
        .station
        .send_call(p.clock.now(), "Heartbeat", "{}".into())
        .unwrap();
    p.advance(Duration::from_secs(5));
    let ev = p.take_events(Side::Station);
    assert!(
        ev.iter().any(
            |e| matches!(e, Event::CallTimedOut { handle, sent: false, .. } if *handle == queued)
        ),
        "{ev:?}"
    );
    assert_eq!(p.to_csms.len(), 1, "the queued call never reached the wire");
}

#[test]
fn duplicated_and_retransmitted_calls() {
    let mut p = booted(ProtocolVersion::V201);
    p.station
        .send_call(p.clock.now(), "Heartbeat", "{}".into())
        .unwrap();
    p.collect();
    let frame = p.to_csms[0].clone();
    p.to_csms.push_back(frame.clone()); // the network duplicates it
    p.deliver_one(Side::Csms);
    p.deliver_one(Side::Csms);
    let ev = p.take_events(Side::Csms);
    assert_eq!(incoming(&ev).len(), 1, "handled once");
    assert_eq!(misbehaved(&ev), vec![PeerMisbehavedKind::DuplicateCall]);
    let id = incoming(&ev)[0].0.clone();
    p.csms.respond(&id, Ok(HEARTBEAT_RES.into())).unwrap();
    // the station retransmits after the answer: the same answer again, no new event
    p.csms.handle_text(p.clock.now(), &frame);
    p.collect();
    assert_eq!(p.to_station.len(), 2);
    assert_eq!(p.to_station[0], p.to_station[1]);
    assert_eq!(
        misbehaved(&p.take_events(Side::Csms)),
        vec![PeerMisbehavedKind::RetransmittedCall]
    );
    // responding twice is the caller's mistake
    assert_eq!(
        p.csms.respond(&id, Ok("{}".into())),
        Err(ApiMisuse::UnknownIncomingCall(id))
    );
}

#[test]
fn unknown_action_wrong_direction_and_call_before_boot() {
    let now = std::time::Instant::now();
    // 1.6 §4.2 and 2.0.1 B02.FR.09 / B03.FR.07: no call before the boot is accepted
    for (v, code) in [
        (ProtocolVersion::V16, "SecurityError"),
        (ProtocolVersion::V201, "SecurityError"),
        (ProtocolVersion::V21, "SecurityError"),
    ] {
        let mut csms = Endpoint::new(Role::Csms, v, Config::default());
        csms.handle_text(now, r#"[2,"1","Teleport",{}]"#);
        assert_eq!(
            csms.poll_transmit().unwrap(),
            r#"[4,"1","NotImplemented","unknown action `Teleport`",{}]"#
        );
        csms.handle_text(now, r#"[2,"2","Reset",{"type":"Immediate"}]"#);
        let t = csms.poll_transmit().unwrap();
        assert!(t.starts_with(r#"[4,"2","NotSupported""#), "{t}");
        csms.handle_text(now, r#"[2,"3","Heartbeat",{}]"#);
        assert!(csms
            .poll_transmit()
            .unwrap()
            .starts_with(&format!(r#"[4,"3","{code}""#)));
        // with the gate off (a lab setting), the call goes through
        let mut open = Endpoint::new(Role::Csms, v, Config::default().with_boot_gate(false));
        open.handle_text(now, r#"[2,"4","Heartbeat",{}]"#);
        assert_eq!(open.poll_transmit(), None);
        let ev: Vec<_> = std::iter::from_fn(|| open.poll_event()).collect();
        assert_eq!(incoming(&ev), vec![("4".to_owned(), "Heartbeat")]);
    }
}

#[test]
fn malformed_and_oversized_frames_get_their_prescribed_answers() {
    let now = std::time::Instant::now();
    let cases: [(ProtocolVersion, &str, &str); 8] = [
        (
            ProtocolVersion::V201,
            "not json",
            r#"[4,"-1","RpcFrameworkError""#,
        ),
        (
            ProtocolVersion::V201,
            r#"[2,17,"Heartbeat",{}]"#,
            r#"[4,"-1","RpcFrameworkError""#,
        ),
        (
            ProtocolVersion::V201,
            r#"[9,"x","Heartbeat",{}]"#,
            r#"[4,"x","MessageTypeNotSupported""#,
        ),
        (
            ProtocolVersion::V201,
            r#"[2,"y","Heartbeat",[]]"#,
            r#"[4,"y","FormatViolation""#,
        ),
        (
            ProtocolVersion::V201,
            r#"[6,"z","NotifyPeriodicEventStream",{}]"#,
            r#"[4,"z","MessageTypeNotSupported""#,
        ),
        (
            ProtocolVersion::V16,
            "not json",
            r#"[4,"-1","FormationViolation""#,
        ),
        (
            ProtocolVersion::V16,
            r#"[2,"a"]"#,
            r#"[4,"a","FormationViolation""#,
        ),
        (
            ProtocolVersion::V21,
            r#"[2,"b","Heartbeat"]"#,
            r#"[4,"b","RpcFrameworkError""#,
        ),
    ];
    for (v, input, answer) in cases {
        let mut ep = Endpoint::new(Role::Csms, v, Config::default());
        ep.handle_text(now, input);
        let t = ep.poll_transmit().unwrap_or_default();
        assert!(t.starts_with(answer), "{v} {input}: {t}");
        assert!(matches!(ep.poll_event(), Some(Event::PeerMisbehaved(_))));
    }
    let mut ep = Endpoint::new(
        Role::Csms,
        ProtocolVersion::V201,
        Config::default().with_max_message_size(64),
    );
    let big = format!(
        r#"[2,"big","DataTransfer",{{"vendorId":"{}"}}]"#,
        "x".repeat(100)
    );
    ep.handle_text(now, &big);
    assert!(ep
        .poll_transmit()
        .unwrap()
        .starts_with(r#"[4,"big","FormatViolation","message too large""#));
    // a malformed result is not answered (it is not a call)
    ep.handle_text(now, r#"[3,"q"]"#);
    assert_eq!(ep.poll_transmit(), None);
}

#[test]
fn unknown_results_are_reported_and_dropped() {
    let mut p = booted(ProtocolVersion::V201);
    p.station
        .handle_text(p.clock.now(), r#"[3,"never-sent",{}]"#);
    p.station
        .handle_text(p.clock.now(), r#"[4,"never-sent","GenericError","",{}]"#);
    assert_eq!(
        misbehaved(&p.take_events(Side::Station)),
        vec![
            PeerMisbehavedKind::UnknownResult,
            PeerMisbehavedKind::UnknownResult
        ]
    );
}

#[test]
fn call_errors_complete_the_call() {
    let mut p = booted(ProtocolVersion::V16);
    let h = p
        .station
        .send_call(p.clock.now(), "Heartbeat", "{}".into())
        .unwrap();
    p.deliver_one(Side::Csms);
    let id = incoming(&p.take_events(Side::Csms))[0].0.clone();
    p.csms
        .respond(&id, Err(CallError::new("InternalError", "x".repeat(300))))
        .unwrap();
    p.collect();
    let frame: serde_json::Value = serde_json::from_str(&p.to_station[0]).unwrap();
    assert_eq!(
        frame[3].as_str().unwrap().chars().count(),
        255,
        "description cut to 255"
    );
    p.drive();
    let ev = p.take_events(Side::Station);
    assert!(
        matches!(&ev[0], Event::CallCompleted { handle, result: Err(e), .. } if *handle == h && e.code == "InternalError")
    );
}

#[test]
fn cancelled_callers() {
    let mut p = booted(ProtocolVersion::V201);
    let now = p.clock.now();
    let a = p.station.send_call(now, "Heartbeat", "{}".into()).unwrap();
    let b = p.station.send_call(now, "Heartbeat", "{}".into()).unwrap();
    let c = p.station.send_call(now, "Heartbeat", "{}".into()).unwrap();
    p.station.cancel(b); // queued: gone
    p.station.cancel(a); // outstanding: its answer is discarded, the slot is kept
    p.deliver_one(Side::Csms);
    let id = incoming(&p.take_events(Side::Csms))[0].0.clone();
    p.csms.respond(&id, Ok(HEARTBEAT_RES.into())).unwrap();
    p.drive();
    let calls = incoming(&p.take_events(Side::Csms));
    assert_eq!(calls.len(), 1, "only c goes out next");
    p.csms
        .respond(&calls[0].0, Ok(HEARTBEAT_RES.into()))
        .unwrap();
    p.drive();
    let done = completed(&p.take_events(Side::Station));
    assert_eq!(done, vec![c]);
}

#[test]
fn caller_mistakes_are_api_misuse_and_never_reach_the_wire() {
    let now = std::time::Instant::now();
    let mut cs = Endpoint::new(
        Role::ChargingStation,
        ProtocolVersion::V201,
        Config::default().with_max_queue(1),
    );
    assert_eq!(
        cs.send_call(now, "Teleport", "{}".into()),
        Err(ApiMisuse::UnknownAction("Teleport".into()))
    );
    assert_eq!(
        cs.send_call(now, "Reset", "{}".into()),
        Err(ApiMisuse::WrongDirection("Reset".into()))
    );
    cs.send_call(now, "BootNotification", BOOT_201.into())
        .unwrap();
    cs.send_call(now, "Heartbeat", "{}".into()).unwrap();
    assert_eq!(
        cs.send_call(now, "Heartbeat", "{}".into()),
        Err(ApiMisuse::QueueFull)
    );
    assert_eq!(
        cs.send_message("NotifyPeriodicEventStream", "{}"),
        Err(ApiMisuse::UnknownAction("NotifyPeriodicEventStream".into()))
    );
    assert_eq!(
        cs.result_error("1", &CallError::new("GenericError", "")),
        Err(ApiMisuse::NotInVersion)
    );
    // only the boot went out: other calls wait for acceptance
    assert!(cs.poll_transmit().unwrap().contains("BootNotification"));
    assert_eq!(cs.poll_transmit(), None);
}

#[test]
fn pending_boot_holds_station_calls_until_accepted() {
    let mut p = Pair::new(ProtocolVersion::V201);
    p.station
        .send_call(p.clock.now(), "BootNotification", BOOT_201.into())
        .unwrap();
    p.station
        .send_call(p.clock.now(), "Heartbeat", "{}".into())
        .unwrap();
    p.deliver_one(Side::Csms);
    let id = incoming(&p.take_events(Side::Csms))[0].0.clone();
    p.csms
        .respond(
            &id,
            Ok(r#"{"currentTime":"2024-01-01T00:00:00Z","interval":10,"status":"Pending"}"#.into()),
        )
        .unwrap();
    p.drive();
    assert_eq!(p.station.boot_state(), BootState::Pending);
    assert!(p
        .take_events(Side::Station)
        .contains(&Event::BootStateChanged(BootState::Pending)));
    assert!(p.to_csms.is_empty(), "heartbeat held while pending");
    // the CSMS may call the station while pending
    p.csms.send_call(p.clock.now(), "GetVariables", r#"{"getVariableData":[{"component":{"name":"OCPPCommCtrlr"},"variable":{"name":"HeartbeatInterval"}}]}"#.into()).unwrap();
    p.deliver_one(Side::Station);
    assert_eq!(incoming(&p.take_events(Side::Station))[0].1, "GetVariables");
    // a second boot, accepted: the held heartbeat goes
    p.station
        .send_call(p.clock.now(), "BootNotification", BOOT_201.into())
        .unwrap();
    p.deliver_one(Side::Csms);
    let id = incoming(&p.take_events(Side::Csms))[0].0.clone();
    p.csms.respond(&id, Ok(ACCEPTED.into())).unwrap();
    p.deliver_one(Side::Station);
    p.collect();
    assert!(p.to_csms.iter().any(|f| f.contains("Heartbeat")));
}

#[test]
fn v21_send_and_call_result_error() {
    let mut p = booted(ProtocolVersion::V21);
    p.station
        .send_message(
            "NotifyPeriodicEventStream",
            r#"{"id":1,"pending":0,"basetime":"2024-01-01T00:00:00Z","data":[{"t":0,"v":"1"}]}"#,
        )
        .unwrap();
    p.drive();
    let ev = p.take_events(Side::Csms);
    assert!(
        matches!(
            &ev[0],
            Event::IncomingSend {
                action: "NotifyPeriodicEventStream",
                ..
            }
        ),
        "{ev:?}"
    );
    assert!(p.to_station.is_empty(), "a SEND gets no answer");
    p.csms
        .result_error("42", &CallError::new("FormatViolation", "bad result"))
        .unwrap();
    p.drive();
    let ev = p.take_events(Side::Station);
    assert!(
        matches!(&ev[0], Event::ResultRejected { id, error } if id == "42" && error.code == "FormatViolation")
    );
    // a SEND for a CALL action is dropped and reported, not answered
    p.csms
        .handle_text(p.clock.now(), r#"[6,"9","Heartbeat",{}]"#);
    p.collect();
    assert!(p.to_station.is_empty());
    assert_eq!(
        misbehaved(&p.take_events(Side::Csms)),
        vec![PeerMisbehavedKind::BadSend]
    );
}

#[test]
fn out_of_order_delivery_of_results_after_retries() {
    // Station: call A times out, call B is sent; the CSMS answers B then A.
    let config = Config::default().with_call_timeout(Duration::from_secs(1));
    let mut p = Pair::with_configs(ProtocolVersion::V16, config, Config::default());
    p.station.set_boot_state(p.clock.now(), BootState::Accepted);
    p.csms.set_boot_state(p.clock.now(), BootState::Accepted);
    p.station
        .send_call(p.clock.now(), "Heartbeat", "{}".into())
        .unwrap();
    p.deliver_one(Side::Csms);
    p.advance(Duration::from_secs(1));
    let b = p
        .station
        .send_call(p.clock.now(), "Heartbeat", "{}".into())
        .unwrap();
    p.deliver_one(Side::Csms);
    let calls = incoming(&p.take_events(Side::Csms));
    p.csms
        .respond(
            &calls[1].0,
            Ok(r#"{"currentTime":"2024-01-01T00:00:02Z"}"#.into()),
        )
        .unwrap();
    p.csms
        .respond(
            &calls[0].0,
            Ok(r#"{"currentTime":"2024-01-01T00:00:01Z"}"#.into()),
        )
        .unwrap();
    p.drive();
    let ev = p.take_events(Side::Station);
    let completed: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::CallCompleted { handle, result, .. } => Some((*handle, result.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        completed,
        vec![(
            b,
            Ok(r#"{"currentTime":"2024-01-01T00:00:02Z"}"#.to_owned())
        )]
    );
    assert!(misbehaved(&ev).contains(&PeerMisbehavedKind::LateResult));
}

#[test]
fn calls_past_the_bound_of_unanswered_ones_get_a_call_error_and_are_not_handled() {
    let now = std::time::Instant::now();
    // OCPP-J §4.1.1: a peer sends a CALL once its earlier ones were answered
    // or timed out, so a few may be open at once; past the bound (default 4)
    // the extra ones are refused with the version's framework code and
    // never reach a handler
    for (v, code) in [
        (ProtocolVersion::V16, "GenericError"),
        (ProtocolVersion::V201, "RpcFrameworkError"),
        (ProtocolVersion::V21, "RpcFrameworkError"),
    ] {
        let mut csms = Endpoint::new(Role::Csms, v, Config::default().with_boot_gate(false));
        for i in 1..=4 {
            csms.handle_text(now, &format!(r#"[2,"{i}","Heartbeat",{{}}]"#));
            assert_eq!(csms.poll_transmit(), None, "{v}: call {i} is handled");
        }
        for i in 5..100 {
            csms.handle_text(now, &format!(r#"[2,"{i}","Heartbeat",{{}}]"#));
            let t = csms.poll_transmit().expect("an answer to the extra call");
            assert!(t.starts_with(&format!(r#"[4,"{i}","{code}""#)), "{v}: {t}");
        }
        let ev: Vec<_> = std::iter::from_fn(|| csms.poll_event()).collect();
        let handled: Vec<_> = incoming(&ev).into_iter().map(|(id, _)| id).collect();
        assert_eq!(handled, ["1", "2", "3", "4"], "{v}");
        assert_eq!(
            misbehaved(&ev),
            vec![PeerMisbehavedKind::ConcurrentCall; 3 + 95]
        );
        // once one is answered, the next call is handled
        csms.respond("1", Ok(HEARTBEAT_RES.into())).unwrap();
        while csms.poll_transmit().is_some() {}
        csms.handle_text(now, r#"[2,"100","Heartbeat",{}]"#);
        assert_eq!(csms.poll_transmit(), None);
        let ev: Vec<_> = std::iter::from_fn(|| csms.poll_event()).collect();
        assert_eq!(incoming(&ev), vec![("100".to_owned(), "Heartbeat")]);
    }
    // the strictest reading: one call at a time
    let mut csms = Endpoint::new(
        Role::Csms,
        ProtocolVersion::V201,
        Config::default()
            .with_boot_gate(false)
            .with_max_incoming_calls(1),
    );
    for i in 1..=2 {
        csms.handle_text(now, &format!(r#"[2,"{i}","Heartbeat",{{}}]"#));
    }
    let t = csms.poll_transmit().unwrap();
    assert!(t.starts_with(r#"[4,"2","RpcFrameworkError""#), "{t}");
    let ev: Vec<_> = std::iter::from_fn(|| csms.poll_event()).collect();
    assert_eq!(incoming(&ev).len(), 1);
}
