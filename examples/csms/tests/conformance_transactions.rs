//! Transactions and meter values conformance (OCPP 2.0.1 Part 2 blocks E
//! and J; 1.6 Core StartTransaction/MeterValues/StopTransaction): a
//! scripted station runs a transaction's events and the test asserts the
//! session the CSMS keeps; GetTransactionStatus while the station still
//! holds queued messages (E14), asked by the operator and by the CSMS's
//! recovery of stuck sessions.

mod common;

use common::conformance::{ended, now, start_16, started, stop_16, Lab, Station};
use evproto_ocpp_proto::ProtocolVersion::{V16, V201};
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
    let lab = Lab::start("e01-transaction").await;
    lab.token("TX-DRIVER", "Accepted", None).await;
    let st = Station::connect(&lab, "CONF-E01", V201).await;
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
