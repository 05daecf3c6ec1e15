//! Remote control, availability, reservation, display messages and data
//! transfer conformance (OCPP 2.0.1 Part 2 blocks F, G, H, O, P): the
//! operator asks the CSMS (its generic call, `POST
//! /api/stations/{id}/ocpp/{action}`), a scripted station receives the
//! request, answers, and sends what the use case has it send next; the test
//! asserts every message and what the CSMS kept.

mod common;

use common::conformance::{ended, now, started, token, Lab, Station};
use evproto_ocpp_proto::ProtocolVersion::{self, V201, V21};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f01_f03_remote_start_and_stop_of_a_transaction() {
    f01_f03_remote_start_and_stop_of_a_transaction_on(V201, "f01-remote-start", "CONF-F01").await;
}

/// The same on a 2.1 station.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f01_f03_remote_start_and_stop_of_a_transaction_21() {
    f01_f03_remote_start_and_stop_of_a_transaction_on(V21, "f01-remote-start-21", "CONF-F01-21")
        .await;
}

async fn f01_f03_remote_start_and_stop_of_a_transaction_on(
    version: ProtocolVersion,
    lab: &str,
    station: &str,
) {
    let lab = Lab::start(lab).await;
    lab.token("REMOTE-1", "Accepted", None).await;
    let mut st = Station::connect(&lab, station, version).await;
    // F01: RequestStartTransaction with the driver's token and a remoteStartId
    let request = json!({"idToken": token("REMOTE-1"), "remoteStartId": 42, "evseId": 1});
    lab.exchange(
        &mut st,
        "RequestStartTransaction",
        request,
        json!({"status": "Accepted"}),
    )
    .await;
    // the station starts, naming the remote start (triggerReason RemoteStart, its remoteStartId)
    let mut event = started("TX-F01", 1, Some("REMOTE-1"));
    event["triggerReason"] = json!("RemoteStart");
    event["transactionInfo"]["remoteStartId"] = json!(42);
    let answer = st.ok("TransactionEvent", event).await;
    assert_eq!(answer["idTokenInfo"]["status"], "Accepted", "{answer}");
    let session = lab.session(&st.id, "TX-F01").await;
    assert_eq!(session["status"], "Active", "{session}");
    assert_eq!(session["id_token"], "REMOTE-1", "{session}");
    // F03: RequestStopTransaction, the station ends it as remotely stopped
    lab.exchange(
        &mut st,
        "RequestStopTransaction",
        json!({"transactionId": "TX-F01"}),
        json!({"status": "Accepted"}),
    )
    .await;
    let mut end = ended("TX-F01", 1, None, "Remote");
    end["triggerReason"] = json!("RemoteStop");
    st.ok("TransactionEvent", end).await;
    let session = lab.session(&st.id, "TX-F01").await;
    assert_eq!(session["status"], "Completed", "{session}");
    assert_eq!(session["stop_reason"], "Remote", "{session}");
    st.stop().await;
    lab.stop().await;
}

/// F05, F06, G03, G04, H01, H02, O01, O04, O05, P01: each operator request
/// reaches the station as given and its answer reaches the operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f05_f06_g03_g04_h01_h02_o01_o04_o05_p01_operator_requests_and_answers() {
    let lab = Lab::start("remote-requests").await;
    let mut st = Station::connect(&lab, "CONF-REMOTE", V201).await;
    let accepted = json!({"status": "Accepted"});
    let cases = [
        // F05 remotely unlock connector
        (
            "UnlockConnector",
            json!({"evseId": 1, "connectorId": 1}),
            json!({"status": "Unlocked"}),
        ),
        // F06 trigger message
        (
            "TriggerMessage",
            json!({"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}}),
            accepted.clone(),
        ),
        // G03 change availability of an EVSE, G04 of the station
        (
            "ChangeAvailability",
            json!({"operationalStatus": "Inoperative", "evse": {"id": 1}}),
            accepted.clone(),
        ),
        (
            "ChangeAvailability",
            json!({"operationalStatus": "Operative"}),
            json!({"status": "Scheduled"}),
        ),
        // H01 reserve an EVSE, H02 cancel the reservation
        (
            "ReserveNow",
            json!({"id": 7, "expiryDateTime": "2030-01-01T00:00:00Z", "idToken": token("RES-1"), "evseId": 1}),
            accepted.clone(),
        ),
        (
            "CancelReservation",
            json!({"reservationId": 7}),
            accepted.clone(),
        ),
        // O01 set, O04 get, O05 clear a display message
        (
            "SetDisplayMessage",
            json!({"message": {"id": 3, "priority": "NormalCycle", "message": {"format": "UTF8", "content": "Closed at 22:00"}}}),
            accepted.clone(),
        ),
        (
            "GetDisplayMessages",
            json!({"requestId": 11, "id": [3]}),
            accepted.clone(),
        ),
        ("ClearDisplayMessage", json!({"id": 3}), accepted.clone()),
        // P01 data transfer to the station
        (
            "DataTransfer",
            json!({"vendorId": "org.example", "messageId": "ping", "data": "1"}),
            json!({"status": "Accepted", "data": "pong"}),
        ),
    ];
    for (action, payload, answer) in cases {
        lab.exchange(&mut st, action, payload, answer).await;
    }
    st.stop().await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o03_display_messages_reported_are_kept() {
    let lab = Lab::start("o03-display").await;
    let mut st = Station::connect(&lab, "CONF-O03", V201).await;
    lab.exchange(
        &mut st,
        "GetDisplayMessages",
        json!({"requestId": 12}),
        json!({"status": "Accepted"}),
    )
    .await;
    let report = json!({"requestId": 12, "tbc": false, "messageInfo": [{"id": 3, "priority": "AlwaysFront",
        "message": {"format": "UTF8", "content": "Out of order"}}]});
    assert_eq!(st.ok("NotifyDisplayMessages", report).await, json!({}));
    let kept = lab.reports(&st.id, "display_messages").await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["key"], "12");
    assert_eq!(
        kept[0]["body"]["messageInfo"][0]["message"]["content"],
        "Out of order"
    );
    st.stop().await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h01_h04_reservation_then_its_expiry_answered() {
    let lab = Lab::start("h04-reservation").await;
    let mut st = Station::connect(&lab, "CONF-H04", V201).await;
    lab.exchange(
        &mut st,
        "ReserveNow",
        json!({"id": 9, "expiryDateTime": "2030-01-01T00:00:00Z", "idToken": token("RES-9")}),
        json!({"status": "Accepted"}),
    )
    .await;
    // H04: the reservation expired
    let update = json!({"reservationId": 9, "reservationUpdateStatus": "Expired"});
    assert_eq!(st.ok("ReservationStatusUpdate", update).await, json!({}));
    st.stop().await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p02_data_transfer_from_the_station_unknown_vendor() {
    let lab = Lab::start("p02-data-transfer").await;
    let st = Station::connect(&lab, "CONF-P02", V201).await;
    let answer = st
        .ok(
            "DataTransfer",
            json!({"vendorId": "com.unknown", "messageId": "x", "data": now()}),
        )
        .await;
    // a vendor the CSMS does not know is UnknownVendorId
    assert_eq!(answer["status"], "UnknownVendorId", "{answer}");
    st.stop().await;
    lab.stop().await;
}

/// F02 / K05: a remote start with the transaction's charging profile
/// (TxProfile, no transaction id yet) reaches the station as given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f02_k05_remote_start_with_a_charging_profile() {
    let lab = Lab::start("f02-remote-start-profile").await;
    let mut st = Station::connect(&lab, "CONF-F02", V201).await;
    let profile = json!({"id": 500, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative", "chargingSchedule": [{"id": 500, "chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}]}]});
    let request = json!({"idToken": token("REMOTE-2"), "remoteStartId": 43, "evseId": 1,
        "chargingProfile": profile});
    lab.exchange(
        &mut st,
        "RequestStartTransaction",
        request,
        json!({"status": "Accepted"}),
    )
    .await;
    st.stop().await;
    lab.stop().await;
}

/// O02: a display message for an ongoing transaction (its `transactionId`),
/// and one for a transaction the station does not know (`UnknownTransaction`
/// reaches the operator); O06: a message set again with the same id
/// replaces it, and the station's report of its messages, kept, shows the
/// new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o02_o06_display_message_for_a_transaction_then_replaced() {
    let lab = Lab::start("o02-o06-display").await;
    lab.token("DISPLAY-1", "Accepted", None).await;
    let mut st = Station::connect(&lab, "CONF-O02", V201).await;
    let answer = st
        .ok("TransactionEvent", started("TX-O02", 1, Some("DISPLAY-1")))
        .await;
    assert_eq!(answer["idTokenInfo"]["status"], "Accepted", "{answer}");
    let message = |content: &str, tx: &str| {
        json!({"message": {"id": 7, "priority": "InFront", "transactionId": tx,
            "message": {"format": "UTF8", "content": content}}})
    };
    // O02: for the ongoing transaction
    lab.exchange(
        &mut st,
        "SetDisplayMessage",
        message("Charging until 18:00", "TX-O02"),
        json!({"status": "Accepted"}),
    )
    .await;
    // O02: a transaction the station does not know
    lab.exchange(
        &mut st,
        "SetDisplayMessage",
        message("Charging until 18:00", "TX-NONE"),
        json!({"status": "UnknownTransaction"}),
    )
    .await;
    // O06: the same id again replaces the message
    lab.exchange(
        &mut st,
        "SetDisplayMessage",
        message("Charging until 19:30", "TX-O02"),
        json!({"status": "Accepted"}),
    )
    .await;
    lab.exchange(
        &mut st,
        "GetDisplayMessages",
        json!({"requestId": 13, "id": [7]}),
        json!({"status": "Accepted"}),
    )
    .await;
    let report = json!({"requestId": 13, "tbc": false, "messageInfo": [{"id": 7, "priority": "InFront",
        "transactionId": "TX-O02", "message": {"format": "UTF8", "content": "Charging until 19:30"}}]});
    assert_eq!(st.ok("NotifyDisplayMessages", report).await, json!({}));
    let kept = lab.reports(&st.id, "display_messages").await;
    assert_eq!(kept[0]["key"], "13", "{kept:?}");
    let info = &kept[0]["body"]["messageInfo"][0];
    assert_eq!(info["message"]["content"], "Charging until 19:30", "{info}");
    assert_eq!(info["transactionId"], "TX-O02", "{info}");
    st.stop().await;
    lab.stop().await;
}
