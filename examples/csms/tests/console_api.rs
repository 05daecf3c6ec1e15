//! The operator API the console reads beyond the resource lists: OCPP
//! actions with their schemas, text search, the overview, live sessions,
//! energy and revenue per day, payments, a tariff's price for a sample
//! session, deleting tariffs and tokens, alerts in words; and tokens' group
//! and expiry as stations are told them (OCPP 2.0.1 C01/C39-C43, 1.6
//! `parentIdTag`/`expiryDate`).
//!
//! Timeouts are hang guards, far above anything under test.

mod common;

use std::time::Duration;

use evproto_ocpp_client::{Client, ClientConfig, MemoryStore as Queue};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_rpc::Router;
use serde_json::{json, Value};

const KEY: &str = "console-api-key-0123456789";
const GUARD: Duration = Duration::from_secs(60);

struct Csms {
    admin: u16,
    ocpp: u16,
    running: common::InProcess,
}

impl Csms {
    async fn start(name: &str) -> Csms {
        let dir = common::temp_dir(&format!("console-api-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let running = tokio::time::timeout(
            GUARD,
            common::InProcess::start(common::lab_config(&dir, KEY)),
        )
        .await
        .expect("started in time");
        Csms {
            admin: running.started.admin_port,
            ocpp: running.started.ocpp_port,
            running,
        }
    }

    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        common::api(KEY, self.admin, method, path, body).await
    }

    async fn station(&self, id: &str, version: ProtocolVersion) -> Client {
        let url = format!("ws://127.0.0.1:{}/ocpp/", self.ocpp);
        let config = ClientConfig::new(url, id.to_owned(), version);
        let client = match version {
            ProtocolVersion::V16 => Client::start(
                config,
                Router::station_v16().with_state(()),
                r#"{"chargePointVendor":"V","chargePointModel":"M"}"#,
                Queue::default(),
            ),
            _ => Client::start(
                config,
                Router::station_v201().with_state(()),
                r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#,
                Queue::default(),
            ),
        };
        client.wait_ready(GUARD).await.unwrap();
        client
    }
}

async fn call(station: &Client, action: &str, payload: Value) -> Value {
    let answer = station
        .peer()
        .expect("connected")
        .call_raw(action, payload.to_string())
        .await
        .unwrap_or_else(|e| panic!("{action}: {e}"));
    serde_json::from_str(&answer).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_with_their_schemas_per_version() {
    let csms = Csms::start("actions").await;
    for (version, has, lacks) in [
        ("1.6", "RemoteStartTransaction", "StartTransaction"),
        ("2.0.1", "RequestStartTransaction", "TransactionEvent"),
        ("2.1", "SetDERControl", "NotifyPeriodicEventStream"),
    ] {
        let (status, body) = csms
            .api("GET", &format!("/api/ocpp/actions?version={version}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["version"], version);
        let items = body["items"].as_array().unwrap();
        let names: Vec<&str> = items
            .iter()
            .map(|a| a["action"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"Reset"), "{version}: {names:?}");
        assert!(names.contains(&has), "{version}: {names:?}");
        // only what a CSMS sends
        assert!(!names.contains(&lacks), "{version}: {names:?}");
        assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted");
        let reset = items.iter().find(|a| a["action"] == "Reset").unwrap();
        assert_eq!(reset["schema"]["type"], "object", "{reset}");
        assert!(reset["schema"]["required"]
            .as_array()
            .unwrap()
            .contains(&json!("type")));
    }
    let (status, body) = csms.api("GET", "/api/ocpp/actions?version=3.0", None).await;
    assert_eq!((status, body["error"].is_string()), (400, true), "{body}");
    let (status, _) = csms.api("GET", "/api/ocpp/actions", None).await;
    assert_eq!(status, 400);
    csms.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_tokens_groups_and_expiry() {
    let csms = Csms::start("tokens").await;
    for id in ["ALPHA-1", "alpha-22", "BETA-3", "50%_OFF"] {
        let (s, b) = csms
            .api("PUT", &format!("/api/stations/{id}"), Some(json!({})))
            .await;
        assert!(s == 200 || s == 201, "{id}: {s} {b}");
    }
    let ids = |b: &Value| -> Vec<String> {
        b["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, b) = csms.api("GET", "/api/stations?q=ALPHA", None).await;
    assert_eq!(
        (ids(&b), b["total"].as_i64()),
        (vec!["ALPHA-1".to_owned(), "alpha-22".to_owned()], Some(2))
    );
    // LIKE's wildcards are searched for as text
    let (_, b) = csms.api("GET", "/api/stations?q=%25_", None).await;
    assert_eq!(ids(&b), vec!["50%_OFF".to_owned()], "{b}");
    let (s, b) = csms.api("GET", "/api/sessions?q=x", None).await;
    assert_eq!(s, 400, "{b}");
    // the registered location comes back for the console's edit form
    let place = json!({"name": "Depot", "city": "Utrecht", "country": "NLD"});
    let (s, b) = csms
        .api(
            "PUT",
            "/api/stations/ALPHA-1",
            Some(json!({"location": place})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (_, b) = csms.api("GET", "/api/stations/ALPHA-1", None).await;
    assert_eq!(b["location"], place, "{b}");
    assert!(b["firmware_status"].is_null(), "{b}");

    // tokens: a group that is blocked binds its members; expiry; delete
    let expired = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let later = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    for (path, body) in [
        (
            "/api/tokens/FLEET-7",
            json!({"type": "Central", "status": "Accepted"}),
        ),
        (
            "/api/tokens/CARD-1",
            json!({"group_id": "FLEET-7", "expires_at": later}),
        ),
        ("/api/tokens/CARD-2", json!({"expires_at": expired})),
        ("/api/tokens/CARD-3", json!({"group_id": "FLEET-8"})),
        ("/api/tokens/FLEET-8", json!({"status": "Blocked"})),
    ] {
        let (s, b) = csms.api("PUT", path, Some(body)).await;
        assert_eq!(s, 201, "{path}: {b}");
    }
    let (s, b) = csms.api("GET", "/api/tokens/CARD-1", None).await;
    assert_eq!((s, b["group_id"].as_str()), (200, Some("FLEET-7")), "{b}");
    let (s, b) = csms
        .api(
            "PUT",
            "/api/tokens/CARD-1",
            Some(json!({"id_token": "OTHER"})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = csms
        .api(
            "PUT",
            "/api/tokens/CARD-1",
            Some(json!({"group_id": "x".repeat(21)})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    let (_, b) = csms.api("GET", "/api/tokens?q=fleet", None).await;
    // FLEET-7, FLEET-8 and the members of their groups
    assert_eq!(b["total"], 4, "{b}");

    let v16 = csms.station("TOK-16", ProtocolVersion::V16).await;
    let v201 = csms.station("TOK-201", ProtocolVersion::V201).await;
    let a = call(&v16, "Authorize", json!({"idTag": "CARD-1"})).await;
    assert_eq!(a["idTagInfo"]["status"], "Accepted", "{a}");
    assert_eq!(a["idTagInfo"]["parentIdTag"], "FLEET-7", "{a}");
    assert!(a["idTagInfo"]["expiryDate"].is_string(), "{a}");
    let a = call(&v16, "Authorize", json!({"idTag": "CARD-2"})).await;
    assert_eq!(a["idTagInfo"]["status"], "Expired", "{a}");
    let a = call(&v16, "Authorize", json!({"idTag": "CARD-3"})).await;
    assert_eq!(
        a["idTagInfo"]["status"], "Blocked",
        "the group's status binds: {a}"
    );
    let token = |t: &str| json!({"idToken": {"idToken": t, "type": "ISO14443"}});
    let a = call(&v201, "Authorize", token("CARD-1")).await;
    assert_eq!(a["idTokenInfo"]["status"], "Accepted", "{a}");
    assert_eq!(
        a["idTokenInfo"]["groupIdToken"]["idToken"], "FLEET-7",
        "{a}"
    );
    assert_eq!(a["idTokenInfo"]["groupIdToken"]["type"], "Central", "{a}");
    let a = call(&v201, "Authorize", token("CARD-2")).await;
    assert_eq!(a["idTokenInfo"]["status"], "Expired", "{a}");

    let (s, _) = csms.api("DELETE", "/api/tokens/CARD-1", None).await;
    assert_eq!(s, 204);
    let (s, _) = csms.api("DELETE", "/api/tokens/CARD-1", None).await;
    assert_eq!(s, 404);
    let a = call(&v201, "Authorize", token("CARD-1")).await;
    assert_eq!(
        a["idTokenInfo"]["status"], "Unknown",
        "a deleted token is unknown: {a}"
    );
    v16.shutdown().await;
    v201.shutdown().await;
    csms.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_overview_live_daily_payments_and_alerts() {
    let csms = Csms::start("overview").await;
    let tariff = json!({"currency": "EUR", "elements": [{"price_components": [
        {"type": "ENERGY", "price": 0.30, "vat": 20, "step_size": 1},
        {"type": "FLAT", "price": 1.00, "vat": 20, "step_size": 1}]}]});
    let (s, p) = csms
        .api(
            "POST",
            "/api/tariffs/preview",
            Some(json!({"tariff": tariff, "session": {
                "start": "2026-03-01T10:00:00Z", "end": "2026-03-01T11:00:00Z", "energy_wh": 12345}})),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    // 12.345 kWh × 0.30 + 1.00 = 4.7035 excl., × 1.2 = 5.6442 incl.
    assert_eq!(
        (
            &p["currency"],
            &p["total_excl_vat"],
            &p["total_incl_vat"],
            &p["total_minor"]
        ),
        (
            &json!("EUR"),
            &json!("4.7035"),
            &json!("5.6442"),
            &json!(564)
        ),
        "{p}"
    );
    let (s, p) = csms
        .api(
            "POST",
            "/api/tariffs/preview",
            Some(json!({"tariff": {"currency": "EUR"}, "session": {
                "start": "2026-03-01T10:00:00Z", "end": "2026-03-01T09:00:00Z", "energy_wh": 1}})),
        )
        .await;
    assert_eq!((s, p["error"].is_string()), (400, true), "{p}");
    // amounts no decimal holds are refused, not a crash
    let huge = json!({"currency": "EUR", "elements": [{"price_components": [
        {"type": "ENERGY", "price": 7.9e27, "step_size": 1}, {"type": "TIME", "price": 7.9e27, "step_size": 1}]}]});
    let (s, p) = csms
        .api(
            "POST",
            "/api/tariffs/preview",
            Some(json!({"tariff": huge, "session": {
                "start": "2000-01-01T00:00:00Z", "end": "2026-03-01T09:00:00Z", "energy_wh": 7.9e27}})),
        )
        .await;
    assert_eq!((s, p["error"].is_string()), (400, true), "{p}");

    let (s, _) = csms.api("PUT", "/api/tariffs/default", Some(tariff)).await;
    assert_eq!(s, 201);
    let (s, _) = csms
        .api("POST", "/api/tokens", Some(json!({"id_token": "DRIVER-1"})))
        .await;
    assert_eq!(s, 201);
    let (s, _) = csms
        .api(
            "PUT",
            "/api/wallets/DRIVER-1",
            Some(json!({"balance": "50.00", "currency": "EUR"})),
        )
        .await;
    assert!(s == 200 || s == 201, "{s}");
    let st = csms.station("OV-1", ProtocolVersion::V201).await;
    let started = chrono::Utc::now() - chrono::Duration::minutes(30);
    let sample = |t: chrono::DateTime<chrono::Utc>, wh: f64, w: f64| {
        json!([{"timestamp": t.to_rfc3339(), "sampledValue": [
            {"value": wh, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}},
            {"value": w, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}}]}])
    };
    let event = |kind: &str, seq: u32, t: chrono::DateTime<chrono::Utc>, wh: f64, w: f64| {
        json!({"eventType": kind, "timestamp": t.to_rfc3339(), "triggerReason": "MeterValuePeriodic",
            "seqNo": seq, "transactionInfo": {"transactionId": "T-OV-1"},
            "idToken": {"idToken": "DRIVER-1", "type": "ISO14443"},
            "evse": {"id": 1, "connectorId": 1}, "meterValue": sample(t, wh, w)})
    };
    call(
        &st,
        "TransactionEvent",
        event("Started", 0, started, 1000.0, 0.0),
    )
    .await;
    call(
        &st,
        "TransactionEvent",
        event(
            "Updated",
            1,
            started + chrono::Duration::minutes(10),
            3000.0,
            11000.0,
        ),
    )
    .await;
    let (s, o) = csms.api("GET", "/api/overview", None).await;
    assert_eq!(s, 200, "{o}");
    assert_eq!(
        (
            &o["stations_total"],
            &o["stations_online"],
            &o["sessions_active"],
            &o["power_w"]
        ),
        (&json!(1), &json!(1), &json!(1), &json!("11000")),
        "{o}"
    );
    let (s, live) = csms
        .api("GET", "/api/sessions/live?station=OV-1", None)
        .await;
    assert_eq!(s, 200, "{live}");
    assert_eq!(live[0]["power_w"], "11000", "{live}");
    assert_eq!(live[0]["energy_wh"], "2000", "{live}");
    // 2 kWh × 0.30 + 1.00 = 1.60 excl., 1.92 incl.
    assert_eq!(live[0]["running_cost"], "1.92", "{live}");

    call(
        &st,
        "TransactionEvent",
        json!({"eventType": "Ended", "timestamp": (started + chrono::Duration::minutes(20)).to_rfc3339(),
            "triggerReason": "EVDeparted", "seqNo": 2,
            "transactionInfo": {"transactionId": "T-OV-1", "stoppedReason": "EVDisconnected"},
            "meterValue": sample(started + chrono::Duration::minutes(20), 6000.0, 0.0)}),
    )
    .await;
    // billing runs after the answer: wait for the CDR
    let t = std::time::Instant::now();
    let daily = loop {
        let (_, d) = csms.api("GET", "/api/stats/daily?days=7", None).await;
        if d.as_array().is_some_and(|a| !a.is_empty()) || t.elapsed() > GUARD {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // 5 kWh × 0.30 + 1.00 = 2.50 excl., 3.00 incl.
    assert_eq!(
        (
            &daily[0]["sessions"],
            &daily[0]["energy_kwh"],
            &daily[0]["revenue_incl_vat"],
            &daily[0]["currency"]
        ),
        (&json!(1), &json!("5"), &json!("3"), &json!("EUR")),
        "{daily}"
    );
    let (s, _) = csms.api("GET", "/api/stats/daily?days=0", None).await;
    assert_eq!(s, 400);
    let (s, pays) = csms.api("GET", "/api/payments?station=OV-1", None).await;
    assert_eq!(s, 200, "{pays}");
    assert_eq!(pays["total"], 1, "{pays}");
    assert_eq!(pays["items"][0]["status"], "Captured", "{pays}");
    assert_eq!(pays["items"][0]["id_token"], "DRIVER-1", "{pays}");
    let (s, _) = csms.api("GET", "/api/payments?status=Lost", None).await;
    assert_eq!(s, 400);

    // an alert in words
    call(
        &st,
        "StatusNotification",
        json!({"timestamp": chrono::Utc::now().to_rfc3339(), "connectorStatus": "Faulted", "evseId": 1, "connectorId": 1}),
    )
    .await;
    let (_, alerts) = csms
        .api("GET", "/api/alerts?station=OV-1&status=open", None)
        .await;
    let fault = alerts["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "fault")
        .cloned()
        .unwrap_or_else(|| panic!("{alerts}"));
    assert_eq!(
        fault["message"], "Station OV-1: EVSE 1 connector 1 is Faulted.",
        "{fault}"
    );

    let (s, _) = csms.api("DELETE", "/api/tariffs/default", None).await;
    assert_eq!(s, 204);
    let (s, _) = csms.api("GET", "/api/tariffs/default", None).await;
    assert_eq!(s, 404);
    let (s, _) = csms.api("DELETE", "/api/tariffs/default", None).await;
    assert_eq!(s, 404);
    st.shutdown().await;
    csms.running.stop().await;
}
