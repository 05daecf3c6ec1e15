//! Reservation conformance (OCPP 2.0.1 Part 2 block H, 1.6 Reservation
//! profile): the operator reserves an EVSE (1.6: a connector) through the
//! API (`POST /api/stations/{id}/reservations`, ReserveNow, H01) and cancels
//! it (`DELETE .../reservations/{reservation_id}`, CancelReservation, H02);
//! the CSMS keeps each reservation with its state, honours it at a start
//! (H03: the reservation's token or one of its group uses it, another token
//! is refused) and keeps what the station reports of its end (H04).

mod common;

use common::conformance::{ended, now, start_16, started, Lab, Station};
use evproto_ocpp_proto::ProtocolVersion::{V16, V201};
use serde_json::{json, Value};

/// An hour from now, as OCPP timestamps are written.
fn in_an_hour() -> String {
    (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The station's reservations as the operator reads them, by id: state.
async fn states(lab: &Lab, station: &str) -> Vec<(i64, String)> {
    let v = lab
        .ok(
            "GET",
            &format!("/api/stations/{station}/reservations"),
            None,
        )
        .await;
    let mut s: Vec<_> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    s.sort();
    s
}

/// The operator reserves: the API's answer once the station answered `answer`.
async fn reserve(lab: &Lab, st: &Station, body: Value, answer: &str) -> (u16, Value) {
    st.answer("ReserveNow", json!({ "status": answer }));
    lab.api(
        "POST",
        &format!("/api/stations/{}/reservations", st.id),
        Some(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h01_h02_h03_h04_reservation_made_used_cancelled_and_ended_201() {
    let lab = Lab::start("h03-reservation-201").await;
    lab.token("FLEET-R", "Accepted", None).await;
    lab.token("RES-A", "Accepted", Some("FLEET-R")).await;
    lab.token("RES-B", "Accepted", Some("FLEET-R")).await;
    lab.token("OTHER", "Accepted", None).await;
    let mut st = Station::connect(&lab, "CONF-H03-201", V201).await;
    // H01: ReserveNow with the token and its group, kept once accepted
    let expiry = in_an_hour();
    let (s, made) = reserve(
        &lab,
        &st,
        json!({"evse_id": 1, "id_token": "RES-A", "expires_at": expiry}),
        "Accepted",
    )
    .await;
    assert_eq!(s, 201, "{made}");
    let request = st.received("ReserveNow").await;
    assert_eq!(
        request,
        json!({"id": 1, "expiryDateTime": expiry, "evseId": 1,
            "idToken": {"idToken": "RES-A", "type": "ISO14443"},
            "groupIdToken": {"idToken": "FLEET-R", "type": "Central"}})
    );
    assert_eq!(made["reservation"]["state"], "Reserved", "{made}");
    assert_eq!(made["answer"]["status"], "Accepted", "{made}");
    // H03: another token on the reserved EVSE is refused; the reservation stays
    let answer = st
        .ok("TransactionEvent", started("TX-OTHER", 1, Some("OTHER")))
        .await;
    assert_eq!(answer["idTokenInfo"]["status"], "NotAtThisTime", "{answer}");
    st.ok(
        "TransactionEvent",
        ended("TX-OTHER", 1, None, "DeAuthorized"),
    )
    .await;
    assert_eq!(states(&lab, &st.id).await, [(1, "Reserved".into())]);
    // a token of the reservation's group uses it
    let mut start = started("TX-RES", 1, Some("RES-B"));
    start["reservationId"] = json!(1);
    let answer = st.ok("TransactionEvent", start).await;
    assert_eq!(answer["idTokenInfo"]["status"], "Accepted", "{answer}");
    let v = lab
        .ok(
            "GET",
            &format!("/api/stations/{}/reservations", st.id),
            None,
        )
        .await;
    assert_eq!(v["items"][0]["state"], "Used", "{v}");
    assert_eq!(v["items"][0]["session_id"], "CONF-H03-201:TX-RES", "{v}");
    // the station refuses a reservation: nothing kept
    let (s, refused) = reserve(
        &lab,
        &st,
        json!({"id": 5, "evse_id": 1, "id_token": "RES-A", "expires_at": in_an_hour()}),
        "Occupied",
    )
    .await;
    assert_eq!(s, 200, "{refused}");
    assert_eq!(refused["reservation"], Value::Null, "{refused}");
    assert_eq!(refused["answer"]["status"], "Occupied", "{refused}");
    // H02: a reservation on EVSE 2, cancelled by the operator
    let body = json!({"evse_id": 2, "id_token": "RES-A", "expires_at": in_an_hour()});
    assert_eq!(reserve(&lab, &st, body, "Accepted").await.0, 201);
    st.received("ReserveNow").await;
    let path = format!("/api/stations/{}/reservations/2", st.id);
    let cancelled = lab.ok("DELETE", &path, None).await;
    assert_eq!(
        st.received("CancelReservation").await,
        json!({"reservationId": 2})
    );
    assert_eq!(
        cancelled["reservation"]["state"], "Cancelled",
        "{cancelled}"
    );
    // EVSE 2 is free again
    let answer = st
        .ok("TransactionEvent", started("TX-FREE", 2, Some("OTHER")))
        .await;
    assert_eq!(answer["idTokenInfo"]["status"], "Accepted", "{answer}");
    // H04: the station reports a reservation expired
    let body = json!({"id": 3, "evse_id": 3, "id_token": "RES-A", "expires_at": in_an_hour()});
    assert_eq!(reserve(&lab, &st, body, "Accepted").await.0, 201);
    st.received("ReserveNow").await;
    let update = json!({"reservationId": 3, "reservationUpdateStatus": "Expired"});
    assert_eq!(st.ok("ReservationStatusUpdate", update).await, json!({}));
    assert_eq!(
        states(&lab, &st.id).await,
        [
            (1, "Used".into()),
            (2, "Cancelled".into()),
            (3, "Expired".into())
        ]
    );
    // refusals of the API: unknown reservation, an expiry past
    let (s, _) = lab
        .api(
            "DELETE",
            &format!("/api/stations/{}/reservations/99", st.id),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let past = json!({"evse_id": 1, "id_token": "RES-A", "expires_at": now()});
    let (s, b) = lab
        .api(
            "POST",
            &format!("/api/stations/{}/reservations", st.id),
            Some(past),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    st.stop().await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservation_16_reserve_now_honoured_at_start_transaction() {
    let lab = Lab::start("h03-reservation-16").await;
    lab.token("RES16", "Accepted", None).await;
    lab.token("OTHER16", "Accepted", None).await;
    let mut st = Station::connect(&lab, "CONF-H03-16", V16).await;
    let expiry = in_an_hour();
    let (s, made) = reserve(
        &lab,
        &st,
        json!({"id": 7, "evse_id": 1, "id_token": "RES16", "expires_at": expiry}),
        "Accepted",
    )
    .await;
    assert_eq!(s, 201, "{made}");
    assert_eq!(
        st.received("ReserveNow").await,
        json!({"connectorId": 1, "expiryDate": expiry, "idTag": "RES16", "reservationId": 7})
    );
    // another idTag on the reserved connector: Invalid (1.6 has no NotAtThisTime)
    let other = st.ok("StartTransaction", start_16(1, "OTHER16")).await;
    assert_eq!(other["idTagInfo"]["status"], "Invalid", "{other}");
    let tx = other["transactionId"].as_i64().unwrap();
    st.ok(
        "StopTransaction",
        json!({"transactionId": tx, "meterStop": 0, "timestamp": now(), "reason": "DeAuthorized"}),
    )
    .await;
    // the reservation's idTag with its reservationId
    let mut start = start_16(1, "RES16");
    start["reservationId"] = json!(7);
    let answer = st.ok("StartTransaction", start).await;
    assert_eq!(answer["idTagInfo"]["status"], "Accepted", "{answer}");
    assert_eq!(states(&lab, &st.id).await, [(7, "Used".into())]);
    st.stop().await;
    lab.stop().await;
}
