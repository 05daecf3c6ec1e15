//! Diagnostics and monitoring conformance (OCPP 2.0.1 Part 2 block N): the
//! operator's requests reach the station as given, the station's answers
//! reach the operator, and what the station reports afterwards
//! (NotifyMonitoringReport, NotifyCustomerInformation, NotifyEvent,
//! LogStatusNotification) is kept where the operator reads it.

mod common;

use common::conformance::{now, token, Lab, Station};
use evproto_ocpp_proto::ProtocolVersion::V201;
use serde_json::json;

/// N03, N04, N05, N06: the monitoring settings, each request and answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n03_n04_n05_n06_monitoring_set_and_cleared() {
    let lab = Lab::start("n04-monitoring").await;
    let mut st = Station::connect(&lab, "CONF-N04", V201).await;
    let power =
        json!({"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"}});
    let cases = [
        // N03 monitoring base
        (
            "SetMonitoringBase",
            json!({"monitoringBase": "FactoryDefault"}),
            json!({"status": "Accepted"}),
        ),
        // N04 a variable monitor
        (
            "SetVariableMonitoring",
            json!({"setMonitoringData": [{"value": 22000, "type": "UpperThreshold", "severity": 4,
                "component": power["component"], "variable": power["variable"]}]}),
            json!({"setMonitoringResult": [{"id": 31, "status": "Accepted", "type": "UpperThreshold", "severity": 4,
                "component": power["component"], "variable": power["variable"]}]}),
        ),
        // N05 monitoring level
        (
            "SetMonitoringLevel",
            json!({"severity": 5}),
            json!({"status": "Accepted"}),
        ),
        // N06 clear a monitor by id
        (
            "ClearVariableMonitoring",
            json!({"id": [31]}),
            json!({"clearMonitoringResult": [{"id": 31, "status": "Accepted"}]}),
        ),
    ];
    for (action, payload, answer) in cases {
        lab.exchange(&mut st, action, payload, answer).await;
    }
    st.stop().await;
    lab.stop().await;
}

/// N02: GetMonitoringReport, then the report in parts; each part kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n02_monitoring_report_in_parts_is_kept() {
    let lab = Lab::start("n02-monitoring-report").await;
    let mut st = Station::connect(&lab, "CONF-N02", V201).await;
    lab.exchange(
        &mut st,
        "GetMonitoringReport",
        json!({"requestId": 21, "monitoringCriteria": ["ThresholdMonitoring"]}),
        json!({"status": "Accepted"}),
    )
    .await;
    for (seq_no, tbc, id) in [(0, true, 31), (1, false, 32)] {
        let part = json!({"requestId": 21, "seqNo": seq_no, "tbc": tbc, "generatedAt": now(), "monitor": [
            {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"},
             "variableMonitoring": [{"id": id, "transaction": false, "value": 22000, "type": "UpperThreshold", "severity": 4}]}]});
        assert_eq!(st.ok("NotifyMonitoringReport", part).await, json!({}));
    }
    let kept = lab.reports(&st.id, "monitoring_report").await;
    let keys: Vec<_> = kept.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["21:1", "21:0"], "newest first: {kept:?}");
    assert_eq!(
        kept[1]["body"]["monitor"][0]["variableMonitoring"][0]["id"],
        31
    );
    // the operator's view: the report's monitors, its parts in order
    let view = lab
        .ok("GET", &format!("/api/stations/{}/monitors", st.id), None)
        .await;
    assert_eq!(view["request_id"], 21, "{view}");
    assert_eq!(view["complete"], true, "{view}");
    let ids: Vec<_> = view["monitors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, [json!(31), json!(32)], "{view}");
    let m = &view["monitors"][0];
    let shown = [
        &m["component"],
        &m["evse"],
        &m["variable"],
        &m["type"],
        &m["severity"],
    ];
    assert_eq!(
        shown,
        [
            &json!("EVSE"),
            &json!(1),
            &json!("Power"),
            &json!("UpperThreshold"),
            &json!(4)
        ],
        "{view}"
    );
    st.stop().await;
    lab.stop().await;
}

/// N09, N10: CustomerInformation (report and clear), then the station's
/// NotifyCustomerInformation parts, kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n09_n10_customer_information_requested_reported_and_kept() {
    let lab = Lab::start("n09-customer").await;
    let mut st = Station::connect(&lab, "CONF-N09", V201).await;
    lab.exchange(
        &mut st,
        "CustomerInformation",
        json!({"requestId": 41, "report": true, "clear": true, "idToken": token("DRIVER-9")}),
        json!({"status": "Accepted"}),
    )
    .await;
    for (seq_no, tbc, data) in [(0, true, "DRIVER-9: 3 sessions"), (1, false, "cleared")] {
        let part = json!({"requestId": 41, "seqNo": seq_no, "tbc": tbc, "generatedAt": now(), "data": data});
        assert_eq!(st.ok("NotifyCustomerInformation", part).await, json!({}));
    }
    let kept = lab.reports(&st.id, "customer_information").await;
    let data: Vec<_> = kept
        .iter()
        .map(|r| r["body"]["data"].as_str().unwrap())
        .collect();
    assert_eq!(data, ["cleared", "DRIVER-9: 3 sessions"], "{kept:?}");
    // the operator's view: the request's parts joined in order
    let view = lab
        .ok(
            "GET",
            &format!("/api/stations/{}/customer-information", st.id),
            None,
        )
        .await;
    assert_eq!(view[0]["request_id"], 41, "{view}");
    assert_eq!(view[0]["complete"], true, "{view}");
    assert_eq!(view[0]["parts"], 2, "{view}");
    assert_eq!(view[0]["data"], "DRIVER-9: 3 sessionscleared", "{view}");
    st.stop().await;
    lab.stop().await;
}

/// N01: the operator asks for the diagnostics log (`POST
/// /api/stations/{id}/logs`): GetLog with an upload location of the CSMS's,
/// then the station's LogStatusNotification is shown with the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n01_get_log_to_an_upload_location_of_the_csms() {
    let lab = Lab::start("n01-log").await;
    let mut st = Station::connect(&lab, "CONF-N01", V201).await;
    st.answer(
        "GetLog",
        json!({"status": "Accepted", "filename": "diag.log"}),
    );
    let answer = lab
        .ok("POST", &format!("/api/stations/{}/logs", st.id), None)
        .await;
    let request = st.received("GetLog").await;
    assert_eq!(request["logType"], "DiagnosticsLog", "{request}");
    let location = request["log"]["remoteLocation"].as_str().unwrap();
    assert_eq!(answer["upload_url"], location, "{answer}");
    assert_eq!(answer["answer"]["status"], "Accepted", "{answer}");
    let request_id = request["requestId"].as_i64().unwrap();
    let status = json!({"status": "Uploaded", "requestId": request_id});
    assert_eq!(st.ok("LogStatusNotification", status).await, json!({}));
    let logs = lab
        .ok("GET", &format!("/api/stations/{}/logs", st.id), None)
        .await;
    assert_eq!(logs["status"]["status"], "Uploaded", "{logs}");
    st.stop().await;
    lab.stop().await;
}

/// N07: a monitor's event (NotifyEvent, a threshold crossed) becomes an
/// alert the operator sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n07_monitor_event_alerts_the_operator() {
    let lab = Lab::start("n07-event").await;
    let st = Station::connect(&lab, "CONF-N07", V201).await;
    let event = json!({"generatedAt": now(), "seqNo": 0, "tbc": false, "eventData": [{"eventId": 1,
        "timestamp": now(), "trigger": "Alerting", "actualValue": "23000", "cleared": false,
        "techCode": "OverPower", "eventNotificationType": "CustomMonitor", "variableMonitoringId": 31,
        "component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"}}]});
    assert_eq!(st.ok("NotifyEvent", event).await, json!({}));
    let alerts = lab
        .ok("GET", &format!("/api/alerts?station={}", st.id), None)
        .await;
    let items = alerts["items"].as_array().unwrap();
    assert!(
        items.iter().any(|a| a["kind"] == "event"),
        "no event alert: {alerts}"
    );
    st.stop().await;
    lab.stop().await;
}

/// N08: a periodic monitor the operator set reports its variable's value
/// each interval (NotifyEvent, trigger `Periodic`): answered, no alert, and
/// the monitor's latest value shown with the station's monitors (an
/// alerting event's value too, N07); an older value from the station's
/// queue does not replace a newer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n08_periodic_events_kept_as_the_monitors_latest_value() {
    let lab = Lab::start("n08-periodic").await;
    let mut st = Station::connect(&lab, "CONF-N08", V201).await;
    let power =
        json!({"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"}});
    lab.exchange(
        &mut st,
        "SetVariableMonitoring",
        json!({"setMonitoringData": [{"value": 60, "type": "Periodic", "severity": 8,
            "component": power["component"], "variable": power["variable"]}]}),
        json!({"setMonitoringResult": [{"id": 41, "status": "Accepted", "type": "Periodic", "severity": 8,
            "component": power["component"], "variable": power["variable"]}]}),
    )
    .await;
    let report = json!({"requestId": 22, "seqNo": 0, "tbc": false, "generatedAt": now(), "monitor": [
        {"component": power["component"], "variable": power["variable"],
         "variableMonitoring": [{"id": 41, "transaction": false, "value": 60, "type": "Periodic", "severity": 8}]}]});
    st.ok("NotifyMonitoringReport", report).await;
    let at = |s: i64| {
        (chrono::Utc::now() + chrono::Duration::seconds(s))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let periodic = |id: i32, value: &str, when: &str| {
        json!({"generatedAt": now(), "seqNo": 0, "tbc": false, "eventData": [{"eventId": id,
            "timestamp": when, "trigger": "Periodic", "actualValue": value,
            "eventNotificationType": "CustomMonitor", "variableMonitoringId": 41,
            "component": power["component"], "variable": power["variable"]}]})
    };
    let (first, second) = (at(-60), at(0));
    assert_eq!(
        st.ok("NotifyEvent", periodic(1, "7400", &first)).await,
        json!({})
    );
    assert_eq!(
        st.ok("NotifyEvent", periodic(2, "11000", &second)).await,
        json!({})
    );
    // from the queue, older: kept out
    assert_eq!(
        st.ok("NotifyEvent", periodic(3, "3700", &at(-120))).await,
        json!({})
    );
    let view = lab
        .ok("GET", &format!("/api/stations/{}/monitors", st.id), None)
        .await;
    let monitor = &view["monitors"][0];
    assert_eq!(monitor["id"], 41, "{view}");
    assert_eq!(monitor["type"], "Periodic", "{view}");
    let last = &monitor["last_event"];
    assert_eq!(last["value"], "11000", "{view}");
    assert_eq!(last["trigger"], "Periodic", "{view}");
    assert_eq!(last["at"], second.as_str(), "{view}");
    // periodic values are no alert
    let alerts = lab
        .ok("GET", &format!("/api/alerts?station={}", st.id), None)
        .await;
    assert_eq!(alerts["items"], json!([]), "{alerts}");
    st.stop().await;
    lab.stop().await;
}
