//! Tariff and cost conformance (OCPP 2.0.1 Part 2 block I): with a tariff
//! in force, the CSMS answers an `Updated` TransactionEvent with the running
//! total cost (I02) and the `Ended` one with the final total cost (I03),
//! without reading the station's device model first.

mod common;

use common::conformance::{ended, started, Lab, Station};
use evproto_ocpp_proto::ProtocolVersion::V201;
use serde_json::{json, Value};

/// A register reading of `wh` taken `s` seconds from now.
fn reading(wh: i64, s: i64) -> (String, Value) {
    let at = (chrono::Utc::now() + chrono::Duration::seconds(s))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let value = json!([{"timestamp": at, "sampledValue": [{"value": wh, "measurand": "Energy.Active.Import.Register"}]}]);
    (at, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i02_i03_running_then_final_total_cost() {
    let lab = Lab::start("i02-cost").await;
    lab.token("PAYER", "Accepted", None).await;
    let tariff = json!({"currency": "EUR", "elements": [{"price_components": [{"type": "ENERGY", "price": 0.50, "step_size": 1}]}]});
    lab.ok("PUT", "/api/tariffs/default", Some(tariff)).await;
    let st = Station::connect(&lab, "CONF-I02", V201).await;
    let mut events = [
        started("TX-I", 1, Some("PAYER")),
        json!({"eventType": "Updated", "triggerReason": "MeterValuePeriodic", "seqNo": 1,
            "transactionInfo": {"transactionId": "TX-I", "chargingState": "Charging"}}),
        ended("TX-I", 2, None, "EVDisconnected"),
    ];
    for (event, (wh, s)) in events
        .iter_mut()
        .zip([(0, -1800), (4000, -900), (10000, 0)])
    {
        let (at, value) = reading(wh, s);
        event["timestamp"] = json!(at);
        event["meterValue"] = value;
    }
    let [start, update, end] = events;
    let answer = st.ok("TransactionEvent", start).await;
    assert!(answer.get("totalCost").is_none(), "{answer}");
    // I02: 4 kWh at 0.50 EUR so far
    let answer = st.ok("TransactionEvent", update).await;
    assert_eq!(answer["totalCost"].as_f64(), Some(2.0), "{answer}");
    // I03: 10 kWh at 0.50 EUR, incl. VAT when the operator adds it (none here)
    let answer = st.ok("TransactionEvent", end).await;
    assert_eq!(answer["totalCost"].as_f64(), Some(5.0), "{answer}");
    st.stop().await;
    lab.stop().await;
}
