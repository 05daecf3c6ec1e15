//! Transactions and meter values conformance (OCPP 2.0.1 Part 2 blocks E
//! and J; 1.6 Core StartTransaction/MeterValues/StopTransaction): a
//! scripted station runs a transaction's events and the test asserts the
//! session the CSMS keeps; GetTransactionStatus while the station still
//! holds queued messages (E14), asked by the operator and by the CSMS's
//! recovery of stuck sessions.

mod common;

use common::conformance::{ended, now, start_16, started, stop_16, token, Lab, Station};
use evproto_ocpp_proto::ProtocolVersion::{self, V16, V201, V21};
use serde_json::json;

/// `s` seconds from now, as OCPP timestamps are written.
fn at(s: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(s))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An energy register reading of `wh` taken at `when`.
fn energy(wh: i64, when: &str) -> serde_json::Value {
    json!([{"timestamp": when, "sampledValue": [{"value": wh, "measurand": "Energy.Active.Import.Register"}]}])
}

/// A session's energy, Wh.
fn energy_wh(session: &serde_json::Value) -> f64 {
    session["energy_wh"]
        .as_str()
        .and_then(|e| e.parse().ok())
        .unwrap()
}

/// E03 (started with the idToken), E06 (ended when the EV left), J02
/// (meter values in TransactionEvent),
/// J01 (MeterValues during the transaction): the session as kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e03_e06_j01_j02_transaction_events_and_meter_values_kept() {
    e03_e06_j01_j02_transaction_events_and_meter_values_kept_on(
        V201,
        "e01-transaction",
        "CONF-E01",
    )
    .await;
}

/// The same on a 2.1 station.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e03_e06_j01_j02_transaction_events_and_meter_values_kept_21() {
    e03_e06_j01_j02_transaction_events_and_meter_values_kept_on(
        V21,
        "e01-transaction-21",
        "CONF-E01-21",
    )
    .await;
}

async fn e03_e06_j01_j02_transaction_events_and_meter_values_kept_on(
    version: ProtocolVersion,
    lab: &str,
    station: &str,
) {
    let lab = Lab::start(lab).await;
    lab.token("TX-DRIVER", "Accepted", None).await;
    let st = Station::connect(&lab, station, version).await;
    let (t0, t1, t2, t3) = (at(-30), at(-20), at(-10), at(0));
    let mut start = started("TX-E", 1, Some("TX-DRIVER"));
    start["timestamp"] = json!(t0);
    start["meterValue"] = energy(100, &t0);
    let s = st.ok("TransactionEvent", start).await;
    assert_eq!(s["idTokenInfo"]["status"], "Accepted", "{s}");
    let mut update = json!({"eventType": "Updated", "timestamp": t1, "triggerReason": "MeterValuePeriodic",
        "seqNo": 1, "transactionInfo": {"transactionId": "TX-E", "chargingState": "Charging"}});
    update["meterValue"] = energy(400, &t1);
    st.ok("TransactionEvent", update).await;
    // J01: MeterValues on the EVSE, outside a TransactionEvent
    let meter = json!({"evseId": 1, "meterValue": energy(600, &t2)});
    assert_eq!(st.ok("MeterValues", meter).await, json!({}));
    let mut end = ended("TX-E", 2, None, "EVDisconnected");
    end["timestamp"] = json!(t3);
    end["meterValue"] = energy(1500, &t3);
    st.ok("TransactionEvent", end).await;
    let session = lab.session(&st.id, "TX-E").await;
    assert_eq!(session["status"], "Completed", "{session}");
    assert_eq!(session["stop_reason"], "EVDisconnected", "{session}");
    assert_eq!(energy_wh(&session), 1400.0, "{session}");
    let readings = session["meter_values"].to_string();
    for wh in ["100", "400", "600", "1500"] {
        assert!(readings.contains(wh), "{wh} Wh kept: {readings}");
    }
    st.stop().await;
    lab.stop().await;
}

/// E14: the operator asks the transaction's status while the station still
/// holds its messages; the session stays open until the queued Ended
/// arrives, then the station has nothing queued and no transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e14_transaction_status_with_messages_still_queued() {
    let lab = Lab::start("e14-status").await;
    let mut st = Station::connect(&lab, "CONF-E14", V201).await;
    st.ok("TransactionEvent", started("TX-Q", 1, None)).await;
    lab.exchange(
        &mut st,
        "GetTransactionStatus",
        json!({"transactionId": "TX-Q"}),
        json!({"messagesInQueue": true, "ongoingIndicator": false}),
    )
    .await;
    assert_eq!(lab.session(&st.id, "TX-Q").await["status"], "Active");
    // the queue is delivered: the transaction ended while offline
    let mut end = ended("TX-Q", 1, None, "PowerLoss");
    end["offline"] = json!(true);
    st.ok("TransactionEvent", end).await;
    lab.exchange(
        &mut st,
        "GetTransactionStatus",
        json!({"transactionId": "TX-Q"}),
        json!({"messagesInQueue": false, "ongoingIndicator": false}),
    )
    .await;
    let session = lab.session(&st.id, "TX-Q").await;
    assert_eq!(session["status"], "Completed", "{session}");
    assert_eq!(session["stop_reason"], "PowerLoss", "{session}");
    st.stop().await;
    lab.stop().await;
}

/// A 2.x StatusNotification: `evse`'s connector 1 is `Available`.
fn available(evse: i32) -> serde_json::Value {
    json!({"timestamp": now(), "connectorStatus": "Available", "evseId": evse, "connectorId": 1})
}

/// E14 in the CSMS's recovery of stuck sessions: a station rebooted with
/// three transactions open and reports their EVSEs `Available`; before
/// ending a session the CSMS asks GetTransactionStatus for its
/// transaction. While the station answers `messagesInQueue: true` the
/// session stays open (asked once, not again on the next report) until the
/// queued `Ended` arrives, which ends it as the station says; a
/// transaction with nothing queued and not ongoing is ended by the CSMS
/// (`Reboot`); an ongoing one is left to the station.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e14_stuck_session_recovery_asks_transaction_status_and_waits_for_the_queue() {
    let lab = Lab::start("e14-recovery").await;
    let st = Station::connect(&lab, "CONF-E14R", V201).await;
    for (tx, evse) in [("TX-QUEUED", 1), ("TX-LOST", 2), ("TX-ONGOING", 3)] {
        st.ok("TransactionEvent", started(tx, evse, None)).await;
    }
    st.stop().await;
    // it rebooted: a new connection and BootNotification
    let mut st = Station::connect(&lab, "CONF-E14R", V201).await;
    for (tx, evse, answer) in [
        (
            "TX-QUEUED",
            1,
            json!({"messagesInQueue": true, "ongoingIndicator": false}),
        ),
        (
            "TX-ONGOING",
            3,
            json!({"messagesInQueue": false, "ongoingIndicator": true}),
        ),
        (
            "TX-LOST",
            2,
            json!({"messagesInQueue": false, "ongoingIndicator": false}),
        ),
    ] {
        st.answer("GetTransactionStatus", answer);
        st.ok("StatusNotification", available(evse)).await;
        let asked = st.received("GetTransactionStatus").await;
        assert_eq!(asked, json!({"transactionId": tx}), "{tx}");
    }
    // nothing queued, not ongoing: the CSMS ends it
    let lost = lab.session_when(&st.id, "TX-LOST", "Completed").await;
    assert_eq!(lost["stop_reason"], "Reboot", "{lost}");
    assert_eq!(lost["closed_by_csms"]["by"], "recovery", "{lost}");
    // queued or ongoing: open, and the next report asks nothing more
    for (tx, evse) in [("TX-QUEUED", 1), ("TX-ONGOING", 3)] {
        st.ok("StatusNotification", available(evse)).await;
        st.not_received("GetTransactionStatus").await;
        assert_eq!(lab.session(&st.id, tx).await["status"], "Active", "{tx}");
    }
    // the queue is delivered: the transaction ended while offline
    let mut end = ended("TX-QUEUED", 1, None, "PowerLoss");
    end["offline"] = json!(true);
    st.ok("TransactionEvent", end).await;
    let queued = lab.session(&st.id, "TX-QUEUED").await;
    assert_eq!(queued["status"], "Completed", "{queued}");
    assert_eq!(queued["stop_reason"], "PowerLoss", "{queued}");
    assert!(
        queued["closed_by_csms"].is_null(),
        "the station's end: {queued}"
    );
    let ongoing = lab.session(&st.id, "TX-ONGOING").await;
    assert_eq!(ongoing["status"], "Active", "{ongoing}");
    st.stop().await;
    lab.stop().await;
}

/// A 2.x TransactionEvent of `tx`: `kind` with sequence number `seq` at
/// `when`, for `trigger`, with an energy register reading of `wh` (its
/// context follows the event type).
fn event(kind: &str, tx: &str, seq: i64, when: &str, trigger: &str, wh: i64) -> serde_json::Value {
    let context = match kind {
        "Started" => "Transaction.Begin",
        "Ended" => "Transaction.End",
        _ => "Sample.Periodic",
    };
    json!({"eventType": kind, "timestamp": when, "triggerReason": trigger, "seqNo": seq,
        "transactionInfo": {"transactionId": tx}, "evse": {"id": 1, "connectorId": 1},
        "meterValue": [{"timestamp": when, "sampledValue": [{"value": wh, "context": context,
            "measurand": "Energy.Active.Import.Register"}]}]})
}

/// The first 19 characters of an RFC 3339 time (to the second).
fn second(t: &serde_json::Value) -> String {
    t.as_str().unwrap_or_default().chars().take(19).collect()
}

/// E04 (a transaction started while offline), E08 (stopped while
/// offline), E12 (the offline transaction delivered after the connection
/// is back): each event `offline: true`, with the station's past times;
/// the start answered with the token's status now, and the session kept
/// with the station's times, token and energy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e04_e08_e12_offline_transaction_delivered_later_is_kept_with_the_stations_times() {
    let lab = Lab::start("e04-offline").await;
    lab.token("OFF-DRIVER", "Accepted", None).await;
    let st = Station::connect(&lab, "CONF-E04", V201).await;
    let (t0, t1, t2) = (at(-3600), at(-1800), at(-600));
    let mut start = event("Started", "TX-OFF", 0, &t0, "Authorized", 100);
    start["offline"] = json!(true);
    start["idToken"] = token("OFF-DRIVER");
    let a = st.ok("TransactionEvent", start).await;
    assert_eq!(a["idTokenInfo"]["status"], "Accepted", "{a}");
    let mut update = event("Updated", "TX-OFF", 1, &t1, "MeterValuePeriodic", 900);
    update["offline"] = json!(true);
    st.ok("TransactionEvent", update).await;
    let mut end = event("Ended", "TX-OFF", 2, &t2, "EVCommunicationLost", 2100);
    end["offline"] = json!(true);
    end["transactionInfo"]["stoppedReason"] = json!("EVDisconnected");
    st.ok("TransactionEvent", end).await;
    let s = lab.session(&st.id, "TX-OFF").await;
    assert_eq!(s["status"], "Completed", "{s}");
    assert_eq!(second(&s["started_at"]), t0[..19], "{s}");
    assert_eq!(second(&s["stopped_at"]), t2[..19], "{s}");
    assert_eq!(s["id_token"], "OFF-DRIVER", "{s}");
    assert_eq!(s["stop_reason"], "EVDisconnected", "{s}");
    assert_eq!(energy_wh(&s), 2000.0, "{s}");
    // an unknown token started offline: answered Unknown (the station ends it)
    let mut start = event("Started", "TX-OFF2", 0, &t1, "Authorized", 0);
    start["offline"] = json!(true);
    start["idToken"] = token("NOBODY");
    let a = st.ok("TransactionEvent", start).await;
    assert_eq!(a["idTokenInfo"]["status"], "Unknown", "{a}");
    st.stop().await;
    lab.stop().await;
}

/// E05 (a start with a token the CSMS does not accept) then the
/// transaction's `Deauthorized` end: the Started answered `Blocked`, the
/// station ends it with `triggerReason` `Deauthorized` and `stoppedReason`
/// `DeAuthorized`, which the session keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e05_start_with_a_token_not_accepted_then_deauthorized() {
    e05_start_with_a_token_not_accepted_then_deauthorized_on(V201, "e05-deauthorized", "CONF-E05")
        .await;
}

/// The same on a 2.1 station.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e05_start_with_a_token_not_accepted_then_deauthorized_21() {
    e05_start_with_a_token_not_accepted_then_deauthorized_on(
        V21,
        "e05-deauthorized-21",
        "CONF-E05-21",
    )
    .await;
}

async fn e05_start_with_a_token_not_accepted_then_deauthorized_on(
    version: ProtocolVersion,
    lab: &str,
    station: &str,
) {
    let lab = Lab::start(lab).await;
    lab.token("BLOCKED-CARD", "Blocked", None).await;
    let st = Station::connect(&lab, station, version).await;
    let a = st
        .ok(
            "TransactionEvent",
            started("TX-DEAUTH", 1, Some("BLOCKED-CARD")),
        )
        .await;
    assert_eq!(a["idTokenInfo"]["status"], "Blocked", "{a}");
    let mut end = event("Ended", "TX-DEAUTH", 1, &now(), "Deauthorized", 0);
    end["transactionInfo"]["stoppedReason"] = json!("DeAuthorized");
    st.ok("TransactionEvent", end).await;
    let s = lab.session(&st.id, "TX-DEAUTH").await;
    assert_eq!(s["status"], "Completed", "{s}");
    assert_eq!(s["stop_reason"], "DeAuthorized", "{s}");
    assert_eq!(energy_wh(&s), 0.0, "{s}");
    st.stop().await;
    lab.stop().await;
}

/// E11/E12 (the queue delivered after a connection loss), as it may
/// arrive: out of order (`Ended` first) and with a repeat of a `seqNo`
/// (the station did not get the first answer): every event answered, the
/// repeat as the first time, kept once; the session as the station's own
/// order gives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e11_e12_events_out_of_order_and_repeated_are_kept_once() {
    e11_e12_events_out_of_order_and_repeated_are_kept_once_on(V201, "e11-order", "CONF-E11").await;
}

/// The same on a 2.1 station.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e11_e12_events_out_of_order_and_repeated_are_kept_once_21() {
    e11_e12_events_out_of_order_and_repeated_are_kept_once_on(V21, "e11-order-21", "CONF-E11-21")
        .await;
}

async fn e11_e12_events_out_of_order_and_repeated_are_kept_once_on(
    version: ProtocolVersion,
    lab: &str,
    station: &str,
) {
    let lab = Lab::start(lab).await;
    let st = Station::connect(&lab, station, version).await;
    let (t0, t1, t2, t3) = (at(-40), at(-30), at(-20), at(-10));
    let mut end = event("Ended", "TX-ORD", 3, &t3, "EVCommunicationLost", 1600);
    end["transactionInfo"]["stoppedReason"] = json!("EVDisconnected");
    let second_update = event("Updated", "TX-ORD", 2, &t2, "MeterValuePeriodic", 1100);
    for e in [
        end,
        second_update.clone(),
        event("Started", "TX-ORD", 0, &t0, "CablePluggedIn", 100),
        event("Updated", "TX-ORD", 1, &t1, "MeterValuePeriodic", 600),
    ] {
        st.ok("TransactionEvent", e).await;
    }
    let before = lab.session(&st.id, "TX-ORD").await;
    let first = st.ok("TransactionEvent", second_update.clone()).await;
    let again = st.ok("TransactionEvent", second_update).await;
    assert_eq!(first, again, "a repeat is answered as the first time");
    let s = lab.session(&st.id, "TX-ORD").await;
    assert_eq!(s, before, "a repeat changes nothing");
    assert_eq!(s["status"], "Completed", "{s}");
    assert_eq!(second(&s["started_at"]), t0[..19], "{s}");
    assert_eq!(second(&s["stopped_at"]), t3[..19], "{s}");
    assert_eq!(s["stop_reason"], "EVDisconnected", "{s}");
    assert_eq!(energy_wh(&s), 1500.0, "{s}");
    let readings = s["meter_values"].as_array().unwrap();
    assert_eq!(readings.len(), 4, "each reading once: {s}");
    st.stop().await;
    lab.stop().await;
}

/// E02 (cable plugged in first, authorized later), E07 (stopped locally
/// with the idToken: `StopAuthorized`, the token answered), the trigger
/// reasons of the events in between, and the meter data in `Ended` (the
/// `Transaction.End` register and the other measurands sampled with it):
/// the session has the token that authorized it, the station's reason and
/// the energy to the end register; the Ended's readings are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e02_e07_trigger_reasons_and_meter_data_in_ended_kept() {
    let lab = Lab::start("e07-trigger").await;
    lab.token("LOCAL-CARD", "Accepted", None).await;
    let st = Station::connect(&lab, "CONF-E07", V201).await;
    let (t0, t1, t2, t3) = (at(-40), at(-30), at(-20), at(-10));
    let a = st
        .ok(
            "TransactionEvent",
            event("Started", "TX-LOC", 0, &t0, "CablePluggedIn", 200),
        )
        .await;
    assert!(
        a.get("idTokenInfo").is_none(),
        "no token, no idTokenInfo: {a}"
    );
    let mut auth = event("Updated", "TX-LOC", 1, &t1, "Authorized", 200);
    auth["idToken"] = token("LOCAL-CARD");
    let a = st.ok("TransactionEvent", auth).await;
    assert_eq!(a["idTokenInfo"]["status"], "Accepted", "{a}");
    let mut state = event("Updated", "TX-LOC", 2, &t2, "ChargingStateChanged", 700);
    state["transactionInfo"]["chargingState"] = json!("SuspendedEV");
    st.ok("TransactionEvent", state).await;
    let mut end = event("Ended", "TX-LOC", 3, &t3, "StopAuthorized", 1200);
    end["idToken"] = token("LOCAL-CARD");
    end["transactionInfo"]["stoppedReason"] = json!("Local");
    end["meterValue"][0]["sampledValue"]
        .as_array_mut()
        .unwrap()
        .extend([
            json!({"value": 7200, "measurand": "Power.Active.Import", "context": "Transaction.End"}),
            json!({"value": 80, "measurand": "SoC", "context": "Transaction.End"}),
        ]);
    let a = st.ok("TransactionEvent", end).await;
    assert_eq!(
        a["idTokenInfo"]["status"], "Accepted",
        "the stop token: {a}"
    );
    let s = lab.session(&st.id, "TX-LOC").await;
    assert_eq!(s["status"], "Completed", "{s}");
    assert_eq!(s["id_token"], "LOCAL-CARD", "{s}");
    assert_eq!(s["stop_reason"], "Local", "{s}");
    assert_eq!(energy_wh(&s), 1000.0, "{s}");
    let at_end: Vec<_> = s["meter_values"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| second(&r["timestamp"]) == t3[..19])
        .map(|r| {
            (
                r["measurand"].as_str().unwrap().to_owned(),
                r["value"].as_str().unwrap().parse::<f64>().unwrap(),
            )
        })
        .collect();
    for (m, v) in [
        ("Energy.Active.Import.Register", 1200.0),
        ("Power.Active.Import", 7200.0),
        ("SoC", 80.0),
    ] {
        assert!(
            at_end.contains(&(m.to_owned(), v)),
            "{m} {v} kept: {at_end:?}"
        );
    }
    st.stop().await;
    lab.stop().await;
}

/// E09/E10 (the cable unplugged on the EV side): `EVCommunicationLost`
/// with `chargingState` `Idle` suspends (the session stays open), an
/// `Ended` with `EVDisconnected` stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e09_e10_cable_unplugged_suspends_then_stops() {
    let lab = Lab::start("e09-unplugged").await;
    let st = Station::connect(&lab, "CONF-E09", V201).await;
    let (t0, t1, t2) = (at(-30), at(-20), at(-10));
    st.ok(
        "TransactionEvent",
        event("Started", "TX-PLUG", 0, &t0, "CablePluggedIn", 0),
    )
    .await;
    let mut idle = event("Updated", "TX-PLUG", 1, &t1, "EVCommunicationLost", 300);
    idle["transactionInfo"]["chargingState"] = json!("Idle");
    st.ok("TransactionEvent", idle).await;
    let s = lab.session(&st.id, "TX-PLUG").await;
    assert_eq!(s["status"], "Active", "suspended, not ended: {s}");
    let mut end = event("Ended", "TX-PLUG", 2, &t2, "EVCommunicationLost", 300);
    end["transactionInfo"]["stoppedReason"] = json!("EVDisconnected");
    st.ok("TransactionEvent", end).await;
    let s = lab.session(&st.id, "TX-PLUG").await;
    assert_eq!(s["status"], "Completed", "{s}");
    assert_eq!(s["stop_reason"], "EVDisconnected", "{s}");
    assert_eq!(energy_wh(&s), 300.0, "{s}");
    st.stop().await;
    lab.stop().await;
}

/// E13 (a transaction-related message the CSMS does not accept): a
/// TransactionEvent without its `seqNo` gets a CALLERROR and nothing is
/// kept; the station's retry of the valid message is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e13_transaction_event_not_accepted_keeps_nothing_then_the_retry_is_kept() {
    let lab = Lab::start("e13-refused").await;
    let st = Station::connect(&lab, "CONF-E13", V201).await;
    let good = started("TX-RETRY", 1, None);
    let mut bad = good.clone();
    bad.as_object_mut().unwrap().remove("seqNo");
    let refused = st.call("TransactionEvent", bad).await;
    assert!(refused.is_err(), "a CALLERROR: {refused:?}");
    let (status, b) = lab
        .api("GET", "/api/sessions/CONF-E13:TX-RETRY", None)
        .await;
    assert_eq!(status, 404, "nothing kept: {b}");
    st.ok("TransactionEvent", good).await;
    assert_eq!(lab.session(&st.id, "TX-RETRY").await["status"], "Active");
    st.stop().await;
    lab.stop().await;
}

/// A transaction across a reset (B12 with E06): `Reset` `OnIdle` answered
/// `Scheduled` leaves the transaction to end normally, the station resets
/// after it; `Reset` `Immediate` makes the station end its transaction
/// (`ResetCommand`, `ImmediateReset`) before it reboots. Each session keeps
/// the station's end, and the boot after the reset leaves no suspect: the
/// CSMS asks nothing and closes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b12_e06_transactions_across_a_reset() {
    let lab = Lab::start("e-reset").await;
    let mut st = Station::connect(&lab, "CONF-ERESET", V201).await;
    st.ok("TransactionEvent", started("TX-IDLE", 1, None)).await;
    lab.exchange(
        &mut st,
        "Reset",
        json!({"type": "OnIdle"}),
        json!({"status": "Scheduled"}),
    )
    .await;
    let mut end = event("Ended", "TX-IDLE", 1, &now(), "EVCommunicationLost", 1000);
    end["transactionInfo"]["stoppedReason"] = json!("EVDisconnected");
    st.ok("TransactionEvent", end).await;
    st.stop().await;
    let mut st = Station::connect(&lab, "CONF-ERESET", V201).await;
    st.ok("TransactionEvent", started("TX-NOW", 1, None)).await;
    lab.exchange(
        &mut st,
        "Reset",
        json!({"type": "Immediate"}),
        json!({"status": "Accepted"}),
    )
    .await;
    let mut end = event("Ended", "TX-NOW", 1, &now(), "ResetCommand", 500);
    end["transactionInfo"]["stoppedReason"] = json!("ImmediateReset");
    st.ok("TransactionEvent", end).await;
    st.stop().await;
    let mut st = Station::connect(&lab, "CONF-ERESET", V201).await;
    st.ok("StatusNotification", available(1)).await;
    st.not_received("GetTransactionStatus").await;
    for (tx, reason) in [("TX-IDLE", "EVDisconnected"), ("TX-NOW", "ImmediateReset")] {
        let s = lab.session(&st.id, tx).await;
        assert_eq!(s["status"], "Completed", "{s}");
        assert_eq!(s["stop_reason"], reason, "{s}");
        assert!(s["closed_by_csms"].is_null(), "{s}");
    }
    st.stop().await;
    lab.stop().await;
}

/// B13 (2.1): `Reset` `ImmediateAndResume` from the operator endpoint
/// while a transaction runs; the station reboots and resumes it
/// (`TransactionEvent` `Updated`, `TxResumed`, the seqNo going on). The
/// boot does not end the session: the resumed event clears it, the CSMS
/// asks no `GetTransactionStatus` and closes nothing, and the session ends
/// once, when the station ends it, with the energy of the whole
/// transaction. A 2.0.1 or 1.6 station gets 400 for the 2.1 type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b13_e17_reset_immediate_and_resume_keeps_the_transaction() {
    let lab = Lab::start("b13-resume").await;
    let mut st = Station::connect(&lab, "CONF-B13", V21).await;
    st.ok(
        "TransactionEvent",
        event("Started", "TX-RES", 0, &at(-60), "Authorized", 1000),
    )
    .await;
    st.ok(
        "TransactionEvent",
        event("Updated", "TX-RES", 1, &at(-30), "MeterValuePeriodic", 1800),
    )
    .await;
    st.answer("Reset", json!({"status": "Accepted"}));
    let r = lab
        .ok(
            "POST",
            "/api/stations/CONF-B13/reset",
            Some(json!({"type": "ImmediateAndResume"})),
        )
        .await;
    assert_eq!(r["status"], "Accepted", "{r}");
    assert_eq!(
        st.received("Reset").await,
        json!({"type": "ImmediateAndResume"})
    );
    // the reboot
    st.stop().await;
    let mut st = Station::connect(&lab, "CONF-B13", V21).await;
    st.ok(
        "TransactionEvent",
        event("Updated", "TX-RES", 2, &at(-5), "TxResumed", 1900),
    )
    .await;
    let occupied =
        json!({"timestamp": now(), "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1});
    st.ok("StatusNotification", occupied).await;
    st.not_received("GetTransactionStatus").await;
    let s = lab.session(&st.id, "TX-RES").await;
    assert_eq!(s["status"], "Active", "{s}");
    let mut end = event("Ended", "TX-RES", 3, &at(0), "EVCommunicationLost", 2600);
    end["transactionInfo"]["stoppedReason"] = json!("EVDisconnected");
    st.ok("TransactionEvent", end).await;
    let s = lab.session(&st.id, "TX-RES").await;
    assert_eq!(s["status"], "Completed", "{s}");
    assert_eq!(s["stop_reason"], "EVDisconnected", "{s}");
    assert!(s["closed_by_csms"].is_null(), "{s}");
    assert_eq!(energy_wh(&s), 1600.0, "{s}");
    st.stop().await;
    // the type is 2.1's
    for (id, version) in [("CONF-B13-201", V201), ("CONF-B13-16", V16)] {
        let st = Station::connect(&lab, id, version).await;
        let (status, v) = lab
            .api(
                "POST",
                &format!("/api/stations/{id}/reset"),
                Some(json!({"type": "ImmediateAndResume"})),
            )
            .await;
        assert_eq!(status, 400, "{v}");
        assert!(v.to_string().contains("2.1"), "{v}");
        st.stop().await;
    }
    lab.stop().await;
}

/// 1.6 Core: StartTransaction gets a transaction id, MeterValues with it are
/// kept, StopTransaction completes the session with its meter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_16_start_meter_values_stop() {
    let lab = Lab::start("core16-transaction").await;
    lab.token("TAG16", "Accepted", None).await;
    let st = Station::connect(&lab, "CONF-CORE16", V16).await;
    let start = st.ok("StartTransaction", start_16(1, "TAG16")).await;
    assert_eq!(start["idTagInfo"]["status"], "Accepted", "{start}");
    let tx = start["transactionId"].as_i64().unwrap();
    let meter = json!({"connectorId": 1, "transactionId": tx, "meterValue": [{"timestamp": now(),
        "sampledValue": [{"value": "700", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]});
    assert_eq!(st.ok("MeterValues", meter).await, json!({}));
    st.ok("StopTransaction", stop_16(tx, None, "EVDisconnected"))
        .await;
    let session = lab.session(&st.id, &tx.to_string()).await;
    assert_eq!(session["status"], "Completed", "{session}");
    assert_eq!(energy_wh(&session), 1000.0, "{session}");
    assert!(
        session["meter_values"].to_string().contains("700"),
        "{session}"
    );
    st.stop().await;
    lab.stop().await;
}
