//! Tariff and cost conformance (OCPP 2.0.1 Part 2 block I): with a tariff
//! in force, the CSMS answers an `Updated` TransactionEvent with the running
//! total cost (I02) and the `Ended` one with the final total cost (I03),
//! without reading the station's device model first; it tells the driver
//! the tariff in words in the `personalMessage` of an accepted token, in
//! the token's language (I01), and again in `updatedPersonalMessage` once
//! the tariff changed during the transaction (I06).

mod common;

use common::conformance::{ended, started, token, Lab, Station};
use evproto_ocpp_proto::ProtocolVersion::{self, V201, V21};
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
    i02_i03_running_then_final_total_cost_on(V201, "i02-cost", "CONF-I02").await;
}

/// The same on a 2.1 station.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i02_i03_running_then_final_total_cost_21() {
    i02_i03_running_then_final_total_cost_on(V21, "i02-cost-21", "CONF-I02-21").await;
}

async fn i02_i03_running_then_final_total_cost_on(
    version: ProtocolVersion,
    lab: &str,
    station: &str,
) {
    let lab = Lab::start(lab).await;
    lab.token("PAYER", "Accepted", None).await;
    let tariff = json!({"currency": "EUR", "elements": [{"price_components": [{"type": "ENERGY", "price": 0.50, "step_size": 1}]}]});
    lab.ok("PUT", "/api/tariffs/default", Some(tariff)).await;
    let st = Station::connect(&lab, station, version).await;
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

/// The default tariff: 0.25 EUR/kWh plus 20 % VAT, with texts in English
/// (`en`, first) and Dutch when `en` is given.
fn tariff_with_texts(en: Option<&str>) -> Value {
    let mut t = json!({"currency": "EUR", "elements": [{"price_components": [
        {"type": "ENERGY", "price": 0.25, "vat": 20, "step_size": 1}]}]});
    if let Some(en) = en {
        t["tariff_alt_text"] = json!([{"language": "en", "text": en},
            {"language": "nl", "text": "0,30 EUR per kWh"}]);
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i01_driver_specific_tariff_in_personal_message() {
    let lab = Lab::start("i01-tariff-text").await;
    lab.token_with("NL-DRIVER", json!({"language": "nl"})).await;
    lab.token("ANY-DRIVER", "Accepted", None).await;
    lab.token("BLOCKED", "Blocked", None).await;
    let st = Station::connect(&lab, "CONF-I01", V201).await;
    let authorize = |id: &'static str| {
        let st = &st;
        async move { st.ok("Authorize", json!({"idToken": token(id)})).await["idTokenInfo"].clone() }
    };
    // no tariff: no message
    let info = authorize("ANY-DRIVER").await;
    assert!(info.get("personalMessage").is_none(), "{info}");
    // a tariff without texts: its prices in words, VAT included
    lab.ok("PUT", "/api/tariffs/default", Some(tariff_with_texts(None)))
        .await;
    let info = authorize("ANY-DRIVER").await;
    let words = json!({"format": "UTF8", "language": "en", "content": "Tariff: 0.30 EUR/kWh"});
    assert_eq!(info["personalMessage"], words, "{info}");
    // with texts: the one in the driver's language (language1), else the first
    lab.ok(
        "PUT",
        "/api/tariffs/default",
        Some(tariff_with_texts(Some("0.30 EUR per kWh"))),
    )
    .await;
    let info = authorize("NL-DRIVER").await;
    assert_eq!(info["status"], "Accepted", "{info}");
    assert_eq!(info["language1"], "nl", "{info}");
    assert_eq!(
        info["personalMessage"],
        json!({"format": "UTF8", "language": "nl", "content": "0,30 EUR per kWh"}),
        "{info}"
    );
    let info = authorize("ANY-DRIVER").await;
    assert!(info.get("language1").is_none(), "{info}");
    assert_eq!(info["personalMessage"]["content"], "0.30 EUR per kWh");
    // a refused token is told no tariff
    let info = authorize("BLOCKED").await;
    assert!(info.get("personalMessage").is_none(), "{info}");
    // the transaction's start authorizes too (C01): the same text
    let answer = st
        .ok("TransactionEvent", started("TX-I01", 1, Some("NL-DRIVER")))
        .await;
    assert_eq!(
        answer["idTokenInfo"]["personalMessage"]["content"], "0,30 EUR per kWh",
        "{answer}"
    );
    st.stop().await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i06_tariff_changed_during_a_transaction() {
    let lab = Lab::start("i06-tariff-update").await;
    lab.token("DRIVER", "Accepted", None).await;
    lab.ok(
        "PUT",
        "/api/tariffs/default",
        Some(tariff_with_texts(Some("0.30 EUR per kWh"))),
    )
    .await;
    let st = Station::connect(&lab, "CONF-I06", V201).await;
    let update = |seq: i32| {
        let (at, value) = reading(1000 * i64::from(seq), 0);
        json!({"eventType": "Updated", "triggerReason": "MeterValuePeriodic", "seqNo": seq,
            "timestamp": at, "meterValue": value,
            "transactionInfo": {"transactionId": "TX-I06", "chargingState": "Charging"}})
    };
    let answer = st
        .ok("TransactionEvent", started("TX-I06", 1, Some("DRIVER")))
        .await;
    assert_eq!(
        answer["idTokenInfo"]["personalMessage"]["content"], "0.30 EUR per kWh",
        "{answer}"
    );
    // the tariff has not changed: nothing to tell
    let answer = st.ok("TransactionEvent", update(1)).await;
    assert!(answer.get("updatedPersonalMessage").is_none(), "{answer}");
    // the operator changes the tariff: the next answer tells the driver, once
    lab.ok(
        "PUT",
        "/api/tariffs/default",
        Some(tariff_with_texts(Some("0.40 EUR per kWh from now on"))),
    )
    .await;
    let answer = st.ok("TransactionEvent", update(2)).await;
    assert_eq!(
        answer["updatedPersonalMessage"],
        json!({"format": "UTF8", "language": "en", "content": "0.40 EUR per kWh from now on"}),
        "{answer}"
    );
    let answer = st.ok("TransactionEvent", update(3)).await;
    assert!(answer.get("updatedPersonalMessage").is_none(), "{answer}");
    // and nothing at the end
    lab.ok(
        "PUT",
        "/api/tariffs/default",
        Some(tariff_with_texts(Some("0.50 EUR per kWh"))),
    )
    .await;
    let answer = st
        .ok(
            "TransactionEvent",
            ended("TX-I06", 4, None, "EVDisconnected"),
        )
        .await;
    assert!(answer.get("updatedPersonalMessage").is_none(), "{answer}");
    st.stop().await;
    lab.stop().await;
}
