//! Battery swapping conformance (OCPP 2.1 Part 2 block S): a swap station
//! reports each swap with `BatterySwap` (`BatteryIn`, `BatteryOut`,
//! `BatteryOutTimeout`), after the driver authorized at the station (S01)
//! or after the operator requested the swap for the driver's token
//! (`POST /api/stations/{id}/battery-swaps`, `RequestBatterySwap`, S02).
//! The CSMS answers and keeps every event, shows each swap per request
//! (`GET /api/stations/{id}/battery-swaps`) and alerts the operator of a
//! swap for a token it does not accept, of a swap naming another token's
//! request, and of a battery not taken out in time.

mod common;

use common::conformance::{token, Lab, Station};
use evproto_ocpp_proto::ProtocolVersion::{V201, V21};
use serde_json::{json, Value};

/// A `BatterySwap` event of `request_id` for `id_token`, battery `serial`
/// in slot 1.
fn swap(event: &str, request_id: i64, id_token: &str, serial: &str, soc: u32) -> Value {
    json!({"eventType": event, "requestId": request_id, "idToken": token(id_token),
        "batteryData": [{"evseId": 1, "serialNumber": serial, "soC": soc, "soH": 97}]})
}

/// The station's swaps as the operator reads them, newest first.
async fn swaps(lab: &Lab, station: &str) -> Vec<Value> {
    let v = lab
        .ok(
            "GET",
            &format!("/api/stations/{station}/battery-swaps"),
            None,
        )
        .await;
    v["items"].as_array().cloned().unwrap_or_default()
}

/// The swap of `request_id`.
async fn swap_of(lab: &Lab, station: &str, request_id: i64) -> Value {
    let all = swaps(lab, station).await;
    all.iter()
        .find(|s| s["request_id"] == request_id)
        .cloned()
        .unwrap_or_else(|| panic!("no swap {request_id}: {all:?}"))
}

/// The station's open `battery_swap` alerts.
async fn swap_alerts(lab: &Lab, station: &str) -> Vec<Value> {
    let v = lab
        .ok("GET", &format!("/api/alerts?station={station}"), None)
        .await;
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "battery_swap")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s01_s02_swaps_authorized_locally_and_requested_by_the_operator() {
    let lab = Lab::start("s01-battery-swap").await;
    lab.token("SWAP-A", "Accepted", None).await;
    lab.token("SWAP-X", "Blocked", None).await;
    let mut st = Station::connect(&lab, "CONF-S01", V21).await;

    // S01: the driver authorizes at the station, the station swaps
    let a = st
        .ok("Authorize", json!({"idToken": token("SWAP-A")}))
        .await;
    assert_eq!(a["idTokenInfo"]["status"], "Accepted", "{a}");
    let answer = st
        .ok("BatterySwap", swap("BatteryIn", 1, "SWAP-A", "OLD-1", 12))
        .await;
    assert_eq!(answer, json!({}));
    assert_eq!(swap_of(&lab, &st.id, 1).await["state"], "BatteryIn");
    st.ok("BatterySwap", swap("BatteryOut", 1, "SWAP-A", "NEW-1", 98))
        .await;
    let s = swap_of(&lab, &st.id, 1).await;
    assert_eq!(s["state"], "Swapped", "{s}");
    assert_eq!(s["id_token"], "SWAP-A", "{s}");
    assert_eq!(s["requested"], Value::Null, "{s}");
    assert_eq!(s["batteries_in"][0]["serial_number"], "OLD-1", "{s}");
    assert_eq!(s["batteries_in"][0]["soc"], 12.0, "{s}");
    assert_eq!(s["batteries_out"][0]["serial_number"], "NEW-1", "{s}");
    assert_eq!(s["batteries_out"][0]["soh"], 97.0, "{s}");
    let events: Vec<_> = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events, ["BatteryIn", "BatteryOut"], "{s}");
    assert!(swap_alerts(&lab, &st.id).await.is_empty(), "in order");

    // S02: the operator requests a swap for the driver's token (the next request id)
    st.answer("RequestBatterySwap", json!({"status": "Accepted"}));
    let path = format!("/api/stations/{}/battery-swaps", st.id);
    let (status, made) = lab
        .api("POST", &path, Some(json!({"id_token": "SWAP-A"})))
        .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["request_id"], 2, "{made}");
    assert_eq!(made["answer"]["status"], "Accepted", "{made}");
    assert_eq!(
        st.received("RequestBatterySwap").await,
        json!({"requestId": 2, "idToken": token("SWAP-A")})
    );
    let s = swap_of(&lab, &st.id, 2).await;
    assert_eq!(s["state"], "Requested", "{s}");
    assert_eq!(s["requested"]["status"], "Accepted", "{s}");
    st.ok("BatterySwap", swap("BatteryIn", 2, "SWAP-A", "OLD-2", 20))
        .await;
    assert_eq!(swap_of(&lab, &st.id, 2).await["state"], "BatteryIn");
    // the driver does not take the charged battery: the operator is told
    st.ok(
        "BatterySwap",
        swap("BatteryOutTimeout", 2, "SWAP-A", "NEW-2", 99),
    )
    .await;
    let s = swap_of(&lab, &st.id, 2).await;
    assert_eq!(s["state"], "OutTimeout", "{s}");
    let alerts = swap_alerts(&lab, &st.id).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["detail"]["request_id"], 2, "{alerts:?}");
    assert!(
        alerts[0]["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("not taken out"),
        "{alerts:?}"
    );

    // the station refuses a request: kept as refused
    st.answer(
        "RequestBatterySwap",
        json!({"status": "Rejected", "statusInfo": {"reasonCode": "NoBattery"}}),
    );
    let (status, refused) = lab
        .api(
            "POST",
            &path,
            Some(json!({"id_token": "SWAP-A", "request_id": 10})),
        )
        .await;
    assert_eq!(status, 200, "{refused}");
    assert_eq!(refused["answer"]["status"], "Rejected", "{refused}");
    st.received("RequestBatterySwap").await;
    let s = swap_of(&lab, &st.id, 10).await;
    assert_eq!(s["state"], "Refused", "{s}");
    assert_eq!(s["requested"]["reason"], "NoBattery", "{s}");
    assert_eq!(
        swaps(&lab, &st.id).await[0]["request_id"],
        10,
        "newest first"
    );

    // no request for a token the CSMS does not accept, nor a bad body
    let (status, v) = lab
        .api("POST", &path, Some(json!({"id_token": "SWAP-X"})))
        .await;
    assert_eq!(status, 422, "{v}");
    let (status, v) = lab
        .api("POST", &path, Some(json!({"id_token": "NOBODY"})))
        .await;
    assert_eq!(status, 422, "{v}");
    let (status, v) = lab.api("POST", &path, Some(json!({"id_token": ""}))).await;
    assert_eq!(status, 400, "{v}");
    st.not_received("RequestBatterySwap").await;
    st.stop().await;

    // a swap for a blocked token the operator did not request is alerted
    let st = Station::connect(&lab, "CONF-S01-B", V21).await;
    st.ok("BatterySwap", swap("BatteryIn", 1, "SWAP-X", "OLD-3", 30))
        .await;
    let alerts = swap_alerts(&lab, &st.id).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["detail"]["status"], "Blocked", "{alerts:?}");
    assert_eq!(alerts[0]["detail"]["id_token"], "SWAP-X", "{alerts:?}");
    st.stop().await;

    // a swap naming the operator's request for another token is alerted
    let mut st = Station::connect(&lab, "CONF-S01-C", V21).await;
    st.answer("RequestBatterySwap", json!({"status": "Accepted"}));
    let path = format!("/api/stations/{}/battery-swaps", st.id);
    assert_eq!(
        lab.api("POST", &path, Some(json!({"id_token": "SWAP-A"})))
            .await
            .0,
        201
    );
    st.received("RequestBatterySwap").await;
    lab.token("SWAP-B", "Accepted", None).await;
    st.ok("BatterySwap", swap("BatteryIn", 1, "SWAP-B", "OLD-4", 40))
        .await;
    let alerts = swap_alerts(&lab, &st.id).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0]["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("another token"),
        "{alerts:?}"
    );
    st.stop().await;

    // battery swapping is 2.1: a 2.0.1 station gets no request
    let st = Station::connect(&lab, "CONF-S01-201", V201).await;
    let path = format!("/api/stations/{}/battery-swaps", st.id);
    let (status, v) = lab
        .api("POST", &path, Some(json!({"id_token": "SWAP-A"})))
        .await;
    assert_eq!(status, 400, "{v}");
    st.stop().await;
    lab.stop().await;
}
