//! OCPI roaming end to end: the reference CSMS as CPO with an in-process
//! eMSP built on `ocpi` (server + client) and an OCPP 1.6 station on
//! `ocpp-client`.
//!
//! Partner registration from the operator API (credentials handshake, the
//! CSMS as Sender), the station's Location pushed on boot, a token pushed by
//! the eMSP authorizing a driver, a token with whitelist NEVER authorized in
//! real time, the session pushed at start and end, the priced CDR POSTed,
//! and START_SESSION mapped to RemoteStartTransaction with the
//! CommandResult delivered to the eMSP's response_url; the site limit
//! shared by active sessions (smart charging).
//!
//! Also monitoring with a 2.0.1 station: alerts, uptime, device model.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use evproto_ocpi::auth::TokenEncoding;
use evproto_ocpi::client::Client;
use evproto_ocpi::credentials::{Own, UrlPolicy};
use evproto_ocpi::server::{Config as OcpiConfig, Handler, MemoryStore, Party, Role, Server};
use evproto_ocpi::Version;
use evproto_ocpp_client::{Client as Station, ClientConfig, MemoryStore as Queue};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_rpc::{Ctx, Router};
use evproto_ocpp_types::v16;
use serde_json::{json, Value};

const KEY: &str = "roaming-test-api-key-0123";

/// The last CostUpdated a test station received.
static COST_SEEN: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

struct Emsp;

#[async_trait::async_trait]
impl Handler for Emsp {
    async fn authorize(
        &self,
        _p: &Party,
        uid: &str,
        _ty: &str,
        _l: Option<&Value>,
    ) -> Option<Value> {
        (uid == "LIVE1").then(|| json!({"allowed": "ALLOWED", "token": {"country_code": "DE", "party_id": "EMS", "uid": "LIVE1",
            "type": "RFID", "contract_id": "DE-EMS-LIVE1", "issuer": "EMS", "valid": true, "whitelist": "NEVER",
            "last_updated": "2024-01-01T00:00:00Z"}}))
    }
}

fn token(uid: &str, whitelist: &str) -> Value {
    json!({"country_code": "DE", "party_id": "EMS", "uid": uid, "type": "RFID", "contract_id": format!("DE-EMS-{uid}"),
        "issuer": "EMS", "valid": true, "whitelist": whitelist, "last_updated": "2024-01-01T00:00:00Z"})
}

async fn api(port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    common::api(KEY, port, method, path, body).await
}

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        // a hang guard, generous for a loaded CI machine
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every object of a module in an in-memory OCPI store.
async fn objects(store: &MemoryStore, module: &str) -> Vec<Value> {
    use evproto_ocpi::server::Store as _;
    let page = evproto_ocpi::pagination::Page {
        offset: 0,
        limit: 1000,
        date_from: None,
        date_to: None,
    };
    store
        .list_objects(module, &[String::new()], &page)
        .await
        .unwrap()
        .0
}

/// The first object of a module once there is one.
async fn first_object(store: &MemoryStore, module: &str) -> Value {
    let t = Instant::now();
    loop {
        if let Some(o) = objects(store, module).await.into_iter().next() {
            return o;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "timed out waiting for {module}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpo_roaming_with_an_emsp() {
    let dir = std::env::temp_dir().join(format!("csms-roaming-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = csms::config::Config {
        bind: std::net::IpAddr::from([127, 0, 0, 1]),
        ocpp_port: 0,
        http_port: 0,
        admin_port: 0,
        data_dir: dir.clone(),
        api_key: Some(KEY.into()),
        security_profile: 0,
        unknown_stations: csms::config::UnknownStations::Accept,
        call_timeout: Duration::from_secs(10),
        site_limit_w: Some(7400),
        // the eMSP is on loopback over plain http
        ocpi_allow_private_urls: true,
        // a push that fails on a loaded machine is retried within the waits below
        outbox_retry_base: Duration::from_millis(100),
        ..Default::default()
    };
    config.time_zone = "Europe/Amsterdam".into();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let csms_task = tokio::spawn(csms::serve_until(
        config,
        async {
            let _ = stop_rx.await;
        },
        Some(ready_tx),
        false,
    ));
    let started = ready_rx.await.unwrap();
    let http = started.admin_port;
    let tariff = json!({"currency": "EUR", "elements": [{"price_components": [
        {"type": "ENERGY", "price": 0.30, "vat": 20.0, "step_size": 1}, {"type": "FLAT", "price": 1.00, "step_size": 1}]}]});
    assert_eq!(
        api(http, "PUT", "/api/tariffs/default", Some(tariff))
            .await
            .0,
        201
    );

    // The eMSP.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let emsp_base = format!("http://{}/ocpi", listener.local_addr().unwrap());
    let mut emsp_own = Own::with_role(
        &format!("{emsp_base}/versions"),
        "DE",
        "EMS",
        "EMSP",
        "test eMSP",
    );
    emsp_own.policy = UrlPolicy::lab();
    let emsp_store = Arc::new(MemoryStore::new());
    let emsp = Server::new(
        OcpiConfig {
            role: Role::Emsp,
            base_url: emsp_base.clone(),
            own: emsp_own,
            max_limit: 50,
            token_encoding: TokenEncoding::Lenient,
            trailing_slash: false,
            storage_version: None,
        },
        emsp_store.clone(),
        Arc::new(Emsp),
        Client::new(UrlPolicy::lab()).unwrap(),
    );
    let app = axum::Router::new().nest("/ocpi", emsp.router());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // Registration from the operator API: the CSMS is the Sender.
    let token_a = emsp.issue_token_a("csms").await.unwrap();
    let (s, reg) = api(
        http,
        "POST",
        "/api/ocpi/partners",
        Some(json!({"versions_url": format!("{emsp_base}/versions"), "token": token_a})),
    )
    .await;
    assert_eq!(s, 201, "{reg}");
    assert_eq!(reg["version"], "2.3.0", "highest mutual version");
    let (_, partners) = api(http, "GET", "/api/ocpi/partners", None).await;
    assert_eq!(partners["partners"][0]["registered"], true, "{partners}");
    // Bad bodies are refused with a reason.
    assert_eq!(
        api(http, "POST", "/api/ocpi/partners", Some(json!({"url": 1})))
            .await
            .0,
        400
    );
    let (s, _) = api(
        http,
        "POST",
        "/api/ocpi/partners",
        Some(json!({"versions_url": "http://127.0.0.1:1/versions", "token": "x"})),
    )
    .await;
    assert_eq!(s, 502);

    // The eMSP's handle on the CSMS (the registration it stored).
    let party = emsp_store
        .parties()
        .into_iter()
        .find(|p| p.id == "csms")
        .unwrap();
    let cpo = Client::new(UrlPolicy::lab())
        .unwrap()
        .peer(party.registration.clone().unwrap())
        .from_party("DE", "EMS");
    assert_eq!(cpo.version(), Version::V230);
    cpo.put(
        "tokens",
        &["DE", "EMS", "ROAM1"],
        &token("ROAM1", "ALLOWED"),
    )
    .await
    .unwrap();
    cpo.put("tokens", &["DE", "EMS", "LIVE1"], &token("LIVE1", "NEVER"))
        .await
        .unwrap();
    let (_, tokens) = api(http, "GET", "/api/ocpi/tokens", None).await;
    assert_eq!(tokens["items"].as_array().unwrap().len(), 2, "{tokens}");
    assert_eq!(tokens["total"], 2, "{tokens}");

    // A 1.6 station that accepts remote starts.
    let (remote_tx, mut remote_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let routes = Router::station_v16()
        .on::<v16::action::RemoteStartTransaction>(
            |ctx: Ctx<tokio::sync::mpsc::UnboundedSender<String>>,
             req: v16::RemoteStartTransactionRequest| async move {
                let _ = ctx.state.send(req.id_tag.to_string());
                Ok(evproto_ocpp_types::from_str(r#"{"status":"Accepted"}"#).unwrap())
            },
        )
        .on::<v16::action::SetChargingProfile>(
            |ctx: Ctx<tokio::sync::mpsc::UnboundedSender<String>>,
             req: v16::SetChargingProfileRequest| async move {
                let limit = req
                    .cs_charging_profiles
                    .charging_schedule
                    .charging_schedule_period[0]
                    .limit;
                let _ = ctx
                    .state
                    .send(format!("profile {} {limit}", req.connector_id));
                Ok(evproto_ocpp_types::from_str(r#"{"status":"Accepted"}"#).unwrap())
            },
        )
        .with_state(remote_tx);
    let station = Station::start(
        ClientConfig::new(
            format!("ws://127.0.0.1:{}/ocpp/", started.ocpp_port),
            "RS1",
            ProtocolVersion::V16,
        ),
        routes,
        r#"{"chargePointVendor":"V","chargePointModel":"M"}"#,
        Queue::default(),
    );
    station.wait_ready(Duration::from_secs(20)).await.unwrap();
    let call = |action: &'static str, payload: Value| {
        let peer = station.peer().unwrap();
        async move {
            serde_json::from_str::<Value>(
                &peer.call_raw(action, payload.to_string()).await.unwrap(),
            )
            .unwrap()
        }
    };
    call(
        "StatusNotification",
        json!({"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
    )
    .await;

    // Its Location reaches the eMSP.
    let loc = eventually("location push", || {
        emsp_store
            .get_object_sync("locations", "NL/EVP/RS1")
            .filter(|l| l["evses"][0]["status"] == "AVAILABLE")
    })
    .await;
    assert_eq!(loc["evses"][0]["uid"], "RS1-1");
    assert!(
        emsp_store
            .get_object_sync("tariffs", "NL/EVP/default")
            .is_some(),
        "tariff pushed at registration"
    );

    // Authorization: pushed token, real-time token, unknown token.
    assert_eq!(
        call("Authorize", json!({"idTag": "ROAM1"})).await["idTagInfo"]["status"],
        "Accepted"
    );
    assert_eq!(
        call("Authorize", json!({"idTag": "LIVE1"})).await["idTagInfo"]["status"],
        "Accepted"
    );
    assert_eq!(
        call("Authorize", json!({"idTag": "NOBODY"})).await["idTagInfo"]["status"],
        "Invalid"
    );

    // A session of the roaming driver.
    let at = |min_ago: i64| {
        (chrono::Utc::now() - chrono::Duration::minutes(min_ago))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let start = call(
        "StartTransaction",
        json!({"connectorId": 1, "idTag": "ROAM1", "meterStart": 1000, "timestamp": at(20)}),
    )
    .await;
    assert_eq!(start["idTagInfo"]["status"], "Accepted");
    let tx = start["transactionId"].as_i64().unwrap();
    // Smart charging: the site limit (7400 W) goes to the one active session
    // (its TxProfile on connector 1; the station's default share is on 0).
    let profile = loop {
        let p = tokio::time::timeout(Duration::from_secs(10), remote_rx.recv())
            .await
            .unwrap()
            .unwrap();
        if !p.starts_with("profile 0 ") {
            break p;
        }
    };
    assert_eq!(profile, "profile 1 7400");
    let sid = format!("RS1:{tx}");
    // the partner knows the session by a random public id, never ours
    let pushed = first_object(&emsp_store, "sessions").await;
    let public = pushed["id"].as_str().unwrap().to_string();
    assert!(emsp_store
        .get_object_sync("sessions", &format!("NL/EVP/{sid}"))
        .is_none());
    assert_eq!(public.len(), 32, "{public}");
    assert!(public.bytes().all(|b| b.is_ascii_hexdigit()), "{public}");
    call("MeterValues", json!({"connectorId": 1, "transactionId": tx, "meterValue": [{"timestamp": at(10),
        "sampledValue": [{"value": "6000", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]})).await;
    call(
        "StopTransaction",
        json!({"transactionId": tx, "meterStop": 11000, "timestamp": at(0), "reason": "Local"}),
    )
    .await;
    let session = eventually("completed session push", || {
        emsp_store
            .get_object_sync("sessions", &format!("NL/EVP/{public}"))
            .filter(|s| s["status"] == "COMPLETED")
    })
    .await;
    assert_eq!(session["kwh"], json!(10));
    let cdr = first_object(&emsp_store, "cdrs").await;
    // its own random id, naming the session by its public id
    let cdr_id = cdr["id"].as_str().unwrap().to_string();
    assert!(cdr_id.len() == 32 && cdr_id != public, "{cdr}");
    assert_eq!(cdr["session_id"], json!(public));
    assert!(emsp_store
        .get_object_sync("cdrs", &format!("NL/EVP/{cdr_id}"))
        .is_some());
    // 10 kWh × 0.30 + 1.00 = 4.00 before taxes; VAT 20 % on the energy: 0.60
    // (the 2.3.0 price shape: the partner speaks 2.3.0, our store 2.2.1)
    assert_eq!(
        cdr["total_cost"],
        json!({"before_taxes": 4, "taxes": [{"name": "VAT", "amount": 0.6}]}),
        "{cdr}"
    );
    assert_eq!(cdr["tariffs"][0]["tax_included"], "NO");
    assert_eq!(cdr["cdr_token"]["uid"], "ROAM1");
    // the station's registered Location (as the eMSP got it), the tariff's
    // currency, and the very CDR the CSMS stored (built once)
    for k in ["address", "city", "country", "coordinates"] {
        assert_eq!(cdr["cdr_location"][k], loc[k], "{k}: {cdr}");
    }
    assert_eq!(cdr["cdr_location"]["evse_uid"], "RS1-1");
    assert_eq!(cdr["cdr_location"]["evse_id"], loc["evses"][0]["evse_id"]);
    assert_eq!(cdr["currency"], "EUR");
    let (_, stored) = api(http, "GET", &format!("/api/sessions/{sid}/cdr"), None).await;
    assert_eq!(
        (&stored["last_updated"], &stored["total_energy"]),
        (&cdr["last_updated"], &cdr["total_energy"]),
        "{stored}"
    );
    assert_eq!(
        stored["total_cost"],
        json!({"excl_vat": 4, "incl_vat": 4.6})
    );
    // Energy and revenue over time.
    let (_, daily) = api(http, "GET", "/api/stats/daily", None).await;
    assert_eq!(
        (
            daily[0]["sessions"].as_u64(),
            daily[0]["energy_kwh"].as_str(),
            daily[0]["revenue_incl_vat"].as_str()
        ),
        (Some(1), Some("10"), Some("4.6")),
        "{daily}"
    );

    // START_SESSION → RemoteStartTransaction → CommandResult at response_url.
    let cmd = json!({"response_url": format!("{emsp_base}/2.2.1/commands/START_SESSION/req-1"),
        "token": token("ROAM1", "ALLOWED"), "location_id": "RS1", "evse_uid": "RS1-1"});
    let r = cpo
        .post("commands", &["START_SESSION"], &cmd)
        .await
        .unwrap();
    assert_eq!(r.data["result"], "ACCEPTED");
    let tag = tokio::time::timeout(Duration::from_secs(10), remote_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tag, "ROAM1");
    let result = eventually("command result", || {
        emsp_store.get_object_sync("command_results", "NL/EVP/START_SESSION/req-1")
    })
    .await;
    assert_eq!(result["result"], "ACCEPTED");
    // Commands for an unknown location or session are refused at once.
    let mut bad = cmd.clone();
    bad["location_id"] = json!("NOPE");
    assert_eq!(
        cpo.post("commands", &["START_SESSION"], &bad)
            .await
            .unwrap()
            .data["result"],
        "REJECTED"
    );
    let stop = json!({"response_url": format!("{emsp_base}/2.2.1/commands/STOP_SESSION/req-2"), "session_id": "RS1:999"});
    assert_eq!(
        cpo.post("commands", &["STOP_SESSION"], &stop)
            .await
            .unwrap()
            .data["result"],
        "UNKNOWN_SESSION"
    );

    // The eMSP pulls our locations (Sender interface, paginated).
    use futures_util::TryStreamExt;
    let locations: Vec<evproto_ocpi::v230::Location> =
        cpo.list("locations", &[]).try_collect().await.unwrap();
    assert_eq!(locations.len(), 1);

    station.shutdown().await;
    let _ = stop_tx.send(());
    csms_task.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Monitoring with a 2.0.1 station: a fault and a security event become
/// alerts (the fault clears when the connector works again), NotifyReport
/// is stored as the device model, uptime is tracked, a disconnect raises an
/// `offline` alert that the reconnect clears; `/metrics` reports them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_alerts_uptime_device_model() {
    let dir = std::env::temp_dir().join(format!("csms-monitoring-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = csms::config::Config {
        bind: std::net::IpAddr::from([127, 0, 0, 1]),
        ocpp_port: 0,
        http_port: 0,
        admin_port: 0,
        data_dir: dir.clone(),
        api_key: Some(KEY.into()),
        security_profile: 0,
        unknown_stations: csms::config::UnknownStations::Accept,
        ..Default::default()
    };
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(csms::serve_until(
        config,
        async {
            let _ = stop_rx.await;
        },
        Some(ready_tx),
        false,
    ));
    let started = ready_rx.await.unwrap();
    let (http, public) = (started.admin_port, started.http_port);
    let connect = || {
        Station::start(
            ClientConfig::new(
                format!("ws://127.0.0.1:{}/ocpp/", started.ocpp_port),
                "MON1",
                ProtocolVersion::V201,
            ),
            Router::station_v201()
                .on::<evproto_ocpp_types::v201::action::UpdateFirmware>(
                    |_: Ctx<()>, _: evproto_ocpp_types::v201::UpdateFirmwareRequest| async move {
                        Ok(evproto_ocpp_types::from_str(r#"{"status":"Accepted"}"#).unwrap())
                    },
                )
                .on::<evproto_ocpp_types::v201::action::CostUpdated>(
                    |_: Ctx<()>, req: evproto_ocpp_types::v201::CostUpdatedRequest| async move {
                        *COST_SEEN.lock().unwrap() = Some(req.total_cost.to_string());
                        Ok(evproto_ocpp_types::from_str("{}").unwrap())
                    },
                )
                .on::<evproto_ocpp_types::v201::action::GetLog>(
                    |_: Ctx<()>, _: evproto_ocpp_types::v201::GetLogRequest| async move {
                        Ok(evproto_ocpp_types::from_str(
                            r#"{"status":"Accepted","filename":"diag.log"}"#,
                        )
                        .unwrap())
                    },
                )
                .on::<evproto_ocpp_types::v201::action::SendLocalList>(
                    |_: Ctx<()>, req: evproto_ocpp_types::v201::SendLocalListRequest| async move {
                        assert_eq!(req.local_authorization_list.map(|l| l.len()), Some(1));
                        Ok(evproto_ocpp_types::from_str(r#"{"status":"Accepted"}"#).unwrap())
                    },
                )
                .with_state(()),
            r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#,
            Queue::default(),
        )
    };
    let station = connect();
    station.wait_ready(Duration::from_secs(20)).await.unwrap();
    let call = |action: &'static str, payload: Value| {
        let peer = station.peer().unwrap();
        async move { peer.call_raw(action, payload.to_string()).await.unwrap() }
    };
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    call(
        "StatusNotification",
        json!({"timestamp": ts, "connectorStatus": "Faulted", "evseId": 1, "connectorId": 1}),
    )
    .await;
    call(
        "StatusNotification",
        json!({"timestamp": ts, "connectorStatus": "Faulted", "evseId": 1, "connectorId": 1}),
    )
    .await;
    call(
        "SecurityEventNotification",
        json!({"type": "TamperDetectionActivated", "timestamp": ts, "techInfo": "lid open"}),
    )
    .await;
    call("NotifyReport", json!({"requestId": 7, "generatedAt": ts, "seqNo": 0, "reportData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"},
         "variableAttribute": [{"type": "Actual", "value": "300", "mutability": "ReadWrite"}]},
        {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"},
         "variableAttribute": [{"type": "MaxSet", "value": "22000"}], "variableCharacteristics": {"unit": "W", "dataType": "decimal", "supportsMonitoring": true}}]})).await;
    let (_, alerts) = api(http, "GET", "/api/alerts?status=open", None).await;
    let kinds: Vec<&str> = alerts["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "fault").count(),
        1,
        "a repeated fault is one alert: {alerts}"
    );
    assert!(kinds.contains(&"security"), "{alerts}");
    call(
        "StatusNotification",
        json!({"timestamp": ts, "connectorStatus": "Available", "evseId": 1, "connectorId": 1}),
    )
    .await;
    let (_, alerts) = api(http, "GET", "/api/alerts?status=open", None).await;
    assert!(
        !alerts["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "fault"),
        "fault cleared: {alerts}"
    );
    let security = alerts["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "security")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        api(http, "POST", &format!("/api/alerts/{security}/clear"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        api(http, "POST", &format!("/api/alerts/{security}/clear"), None)
            .await
            .0,
        404
    );
    let (s, model) = api(http, "GET", "/api/stations/MON1/device-model", None).await;
    assert_eq!(s, 200);
    assert_eq!(model["variables"].as_array().unwrap().len(), 2, "{model}");
    assert_eq!(
        api(http, "GET", "/api/stations/NOPE/device-model", None)
            .await
            .0,
        404
    );
    let (_, up) = api(http, "GET", "/api/uptime", None).await;
    assert_eq!(up["items"][0]["station"], "MON1", "{up}");
    assert_eq!(up["items"][0]["online"], true);

    // Firmware campaign: the image is served by the CSMS, UpdateFirmware
    // goes out, the station's status is tracked.
    let put = reqwest::Client::new()
        .put(format!("http://127.0.0.1:{http}/api/firmware/fw-2.0.bin"))
        .header("Authorization", format!("Bearer {KEY}"))
        .body(vec![7u8; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 201);
    let image = reqwest::get(format!("http://127.0.0.1:{public}/firmware/fw-2.0.bin"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(image.len(), 100_000);
    assert_eq!(
        reqwest::get(format!("http://127.0.0.1:{public}/firmware/..%2Fcsms.db"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    let (s, campaign) = api(
        http,
        "POST",
        "/api/firmware-campaigns",
        Some(json!({"firmware": "fw-2.0.bin"})),
    )
    .await;
    assert_eq!(s, 201, "{campaign}");
    assert_eq!(campaign["stations"][0]["requested"], true, "{campaign}");
    let cid = campaign["id"].as_i64().unwrap();
    call(
        "FirmwareStatusNotification",
        json!({"status": "Installed", "requestId": cid}),
    )
    .await;
    let (_, c) = api(http, "GET", &format!("/api/firmware-campaigns/{cid}"), None).await;
    assert_eq!(c["stations"][0]["status"], "Installed", "{c}");
    assert_eq!(
        api(
            http,
            "POST",
            "/api/firmware-campaigns",
            Some(json!({"firmware": "missing.bin"}))
        )
        .await
        .0,
        400
    );

    // Logs: GetLog points at our upload URL; the upload is stored.
    let (s, logs) = api(http, "POST", "/api/stations/MON1/logs", None).await;
    assert_eq!(s, 200, "{logs}");
    let url = logs["upload_url"].as_str().unwrap().to_string();
    let up_resp = reqwest::Client::new()
        .put(format!("{url}/diag.log"))
        .body("log line\n")
        .send()
        .await
        .unwrap();
    assert_eq!(up_resp.status().as_u16(), 201);
    let forged = reqwest::Client::new()
        .put(format!(
            "http://127.0.0.1:{public}/upload/MON1/wrong/diag.log"
        ))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    call(
        "LogStatusNotification",
        json!({"status": "Uploaded", "requestId": 1}),
    )
    .await;
    let (_, logs) = api(http, "GET", "/api/stations/MON1/logs", None).await;
    assert_eq!(logs["files"][0]["file"], "diag.log", "{logs}");
    assert_eq!(logs["status"]["status"], "Uploaded");

    // Local authorization list from the registry's Accepted tokens.
    assert_eq!(
        api(
            http,
            "POST",
            "/api/tokens",
            Some(json!({"id_token": "LOCAL1"}))
        )
        .await
        .0,
        201
    );
    let (s, ll) = api(http, "PUT", "/api/stations/MON1/local-list", None).await;
    assert_eq!(s, 200, "{ll}");
    assert_eq!(
        (ll["list_version"].as_i64(), ll["answer"]["status"].as_str()),
        (Some(1), Some("Accepted"))
    );
    assert_eq!(
        api(http, "PUT", "/api/stations/NOPE/local-list", None)
            .await
            .0,
        404
    );

    // Running cost: totalCost in the TransactionEvent answer and a CostUpdated call.
    let tariff = json!({"currency": "EUR", "elements": [{"price_components": [{"type": "ENERGY", "price": 0.50, "step_size": 1}]}]});
    assert_eq!(
        api(http, "PUT", "/api/tariffs/default", Some(tariff))
            .await
            .0,
        201
    );
    let t0 = (chrono::Utc::now() - chrono::Duration::minutes(30))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let t1 = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let ev = |seq: i64, kind: &str, t: &str, wh: i64| {
        json!({"eventType": kind, "timestamp": t, "triggerReason": "MeterValuePeriodic",
        "seqNo": seq, "transactionInfo": {"transactionId": "T-COST"}, "idToken": {"idToken": "LOCAL1", "type": "ISO14443"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [{"timestamp": t, "sampledValue": [{"value": wh, "measurand": "Energy.Active.Import.Register"}]}]})
    };
    // the station says it shows costs (OCPP 2.0.1 I02 precondition)
    call("NotifyReport", json!({"requestId": 8, "generatedAt": t1, "seqNo": 0, "reportData": [
        {"component": {"name": "TariffCostCtrlr"}, "variable": {"name": "Enabled", "instance": "Cost"},
         "variableAttribute": [{"type": "Actual", "value": "true"}]}]})).await;
    call("TransactionEvent", ev(0, "Started", &t0, 1000)).await;
    let answer: Value =
        serde_json::from_str(&call("TransactionEvent", ev(1, "Updated", &t1, 5000)).await).unwrap();
    assert_eq!(answer["totalCost"], json!(2), "4 kWh × 0.50: {answer}");
    eventually("CostUpdated", || COST_SEEN.lock().unwrap().clone()).await;
    assert_eq!(COST_SEEN.lock().unwrap().as_deref(), Some("2"));
    // A Started that arrives after its Ended places no hold (a hold never outlives its session).
    assert_eq!(
        api(
            http,
            "POST",
            "/api/tokens",
            Some(json!({"id_token": "LATE1"}))
        )
        .await
        .0,
        201
    );
    let (s, _) = api(
        http,
        "PUT",
        "/api/wallets/LATE1",
        Some(json!({"balance": 20, "currency": "EUR"})),
    )
    .await;
    assert!(s == 200 || s == 201, "wallet: {s}");
    let late = |seq: i64, kind: &str, t: &str, wh: i64| {
        let mut e = ev(seq, kind, t, wh);
        e["transactionInfo"]["transactionId"] = json!("T-LATE");
        e["idToken"]["idToken"] = json!("LATE1");
        e
    };
    call("TransactionEvent", late(1, "Ended", &t1, 3000)).await;
    call("TransactionEvent", late(0, "Started", &t0, 1000)).await;
    let (s, pay) = api(http, "GET", "/api/sessions/MON1:T-LATE/payment", None).await;
    assert_eq!(s, 404, "no hold after the end: {pay}");
    let (_, w) = api(http, "GET", "/api/wallets/LATE1", None).await;
    assert_eq!(w["balance"], "20.00", "{w}");
    // Offline while disconnected, cleared on reconnect.
    station.shutdown().await;
    let mut offline = false;
    for _ in 0..100 {
        let (_, alerts) = api(http, "GET", "/api/alerts?status=open", None).await;
        if alerts["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "offline" && a["station"] == "MON1")
        {
            offline = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(offline, "offline alert raised");
    let (_, up) = api(http, "GET", "/api/uptime", None).await;
    assert_eq!(up["items"][0]["online"], false, "{up}");
    let again = connect();
    again.wait_ready(Duration::from_secs(20)).await.unwrap();
    let mut cleared = false;
    for _ in 0..100 {
        let (_, alerts) = api(http, "GET", "/api/alerts?status=open", None).await;
        if !alerts["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "offline")
        {
            cleared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cleared, "offline alert cleared on reconnect");
    let m = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{http}/metrics"))
        .header("Authorization", format!("Bearer {KEY}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("csms_alerts_open 0"), "{m}");
    assert!(
        m.contains("csms_station_uptime_ratio{station=\"MON1\"}"),
        "{m}"
    );
    again.shutdown().await;
    let _ = stop_tx.send(());
    task.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Security profiles 2 (TLS + Basic auth) and 3 (TLS client certificates,
/// CN = identity) from PEM files in the configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_profiles_2_and_3() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let dir = std::env::temp_dir().join(format!("csms-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "csms test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |sans: Vec<String>, cn: &str| {
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let k = KeyPair::generate().unwrap();
        let c = p.signed_by(&k, &issuer).unwrap();
        (c, k)
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into()], "localhost");
    std::fs::write(dir.join("server.pem"), server_cert.pem() + &ca.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let client_tls = |cn: Option<&str>| {
        let b = rustls::ClientConfig::builder().with_root_certificates(roots.clone());
        Arc::new(match cn {
            Some(cn) => {
                let (c, k) = leaf(Vec::new(), cn);
                let key = rustls::pki_types::PrivateKeyDer::Pkcs8(k.serialize_der().into());
                b.with_client_auth_cert(vec![c.der().clone(), ca.der().clone()], key)
                    .unwrap()
            }
            None => b.with_no_client_auth(),
        })
    };
    for profile in [2u8, 3] {
        let config = csms::config::Config {
            bind: std::net::IpAddr::from([127, 0, 0, 1]),
            ocpp_port: 0,
            http_port: 0,
            admin_port: 0,
            data_dir: dir.join(format!("p{profile}")),
            api_key: Some(KEY.into()),
            security_profile: profile,
            unknown_stations: csms::config::UnknownStations::Reject,
            tls_cert: Some(dir.join("server.pem")),
            tls_key: Some(dir.join("server.key")),
            tls_client_ca: (profile == 3).then(|| dir.join("ca.pem")),
            ..Default::default()
        };
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(csms::serve_until(
            config,
            async {
                let _ = stop_rx.await;
            },
            Some(ready_tx),
            false,
        ));
        let started = ready_rx.await.unwrap();
        let body = if profile == 2 {
            json!({"password": "tls-station-password-1"})
        } else {
            json!({})
        };
        assert_eq!(
            api(started.admin_port, "PUT", "/api/stations/TLS1", Some(body))
                .await
                .0,
            201
        );
        let url = format!("wss://localhost:{}/ocpp/", started.ocpp_port);
        let station = |cn: Option<&str>, password: Option<&str>| {
            let mut c = ClientConfig::new(url.clone(), "TLS1", ProtocolVersion::V201)
                .with_tls(client_tls(cn));
            if let Some(p) = password {
                c = c.with_password(p.as_bytes());
            }
            Station::start(
                c,
                Router::station_v201().with_state(()),
                r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#,
                Queue::default(),
            )
        };
        let (good, bad) = if profile == 2 {
            (
                station(None, Some("tls-station-password-1")),
                station(None, Some("wrong-password-000000")),
            )
        } else {
            (station(Some("TLS1"), None), station(Some("OTHER"), None))
        };
        good.wait_ready(Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("profile {profile}: {e}"));
        assert!(
            bad.wait_ready(Duration::from_secs(2)).await.is_err(),
            "profile {profile}: a forged station connected"
        );
        good.shutdown().await;
        bad.shutdown().await;
        let _ = stop_tx.send(());
        task.await.unwrap().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
