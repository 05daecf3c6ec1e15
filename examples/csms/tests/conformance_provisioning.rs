//! Provisioning conformance (OCPP 2.0.1 Part 2 B02, B03; B30, B31 as the
//! task numbers the gate of a station not accepted; 1.6 §4.2 for 1.6): a
//! CSMS started in-process, stations scripted step by step on
//! `ocpp-client` (their own BootNotification, then raw calls), each answer
//! of the CSMS asserted.
//!
//! - B02: a registered station set `Pending` boots `Pending` with an
//!   interval; the CSMS may still configure it (SetVariables, GetBaseReport,
//!   TriggerMessage; 1.6 ChangeConfiguration, GetConfiguration) but not
//!   start or stop a transaction on it; the operator accepting it makes the
//!   CSMS trigger a BootNotification at once, which is then accepted.
//! - B03: a station set `Rejected` boots `Rejected` with an interval, and
//!   the CSMS sends it nothing (1.6 §4.2: "the Central System SHOULD NOT
//!   initiate any").
//! - B30, B31: anything but BootNotification from a Pending (B30) or
//!   Rejected (B31) station gets CALLERROR `SecurityError`, and nothing of
//!   it is kept; a station that was accepted and is set Pending is gated
//!   again when it reconnects.
//! - B05–B08: GetBaseReport/GetReport with their NotifyReport parts kept as
//!   the device model, SetVariables/GetVariables answers kept in it; B09,
//!   B11, B12: SetNetworkProfile and Reset answered to the operator (on the
//!   shared scripted station of `common::conformance`).

mod common;

use std::time::Duration;

use common::conformance::{now, Lab, Station as Scripted};

use evproto_ocpp_client::{Client, ClientConfig, ClientState, MemoryStore as Queue};
use evproto_ocpp_proto::{BootState, ProtocolVersion};
use evproto_ocpp_rpc::{CallFailure, Ctx, Peer, Router, Routes};
use evproto_ocpp_types::{v16, v201};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const KEY: &str = "conformance-provisioning-key";
const BOOT_201: &str = r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#;
const BOOT_16: &str = r#"{"chargePointVendor":"V","chargePointModel":"M"}"#;
/// The heartbeat (and boot retry) interval the CSMS answers with.
const INTERVAL: u32 = 600;
const WAIT: Duration = Duration::from_secs(20);

struct Csms {
    ocpp: u16,
    admin: u16,
    running: common::InProcess,
}

impl Csms {
    async fn start(test: &str) -> Csms {
        Csms::start_on(test, None).await
    }

    /// As [`Csms::start`], on the store at `database_url` (SQLite in the
    /// test's directory when `None`).
    async fn start_on(test: &str, database_url: Option<String>) -> Csms {
        let dir = common::temp_dir(&format!("conformance-provisioning-{test}"));
        let config = csms::config::Config {
            heartbeat_interval: INTERVAL,
            unknown_stations: csms::config::UnknownStations::Reject,
            database_url,
            ..common::lab_config(&dir, KEY)
        };
        let running = common::InProcess::start(config).await;
        Csms {
            ocpp: running.started.ocpp_port,
            admin: running.started.admin_port,
            running,
        }
    }

    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        common::api(KEY, self.admin, method, path, body).await
    }

    /// Registers `id` with `registration`.
    async fn register(&self, id: &str, registration: &str) {
        let (status, v) = self
            .api(
                "PUT",
                &format!("/api/stations/{id}"),
                Some(json!({"registration": registration})),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        assert_eq!(v["registration"], registration, "{v}");
    }

    async fn stop(self) {
        self.running.stop().await;
    }
}

/// What a scripted station saw the CSMS send it, and the answers to the
/// BootNotifications it sent when triggered.
#[derive(Clone)]
struct Seen(mpsc::UnboundedSender<String>);

fn answer<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid answer")
}

/// Answers a TriggerMessage `Accepted` and, for BootNotification, sends
/// one right after (B02: the CSMS asks the station to boot again); reports
/// the boot's answer.
fn boot_after_trigger(peer: Peer, seen: Seen, boot: &'static str) {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answer = match peer.call_raw("BootNotification", boot.to_owned()).await {
            Ok(text) => text,
            Err(e) => format!("error: {e}"),
        };
        let _ = seen.0.send(format!("boot answer {answer}"));
    });
}

fn routes_201(seen: Seen) -> Routes {
    Router::station_v201()
        .on::<v201::action::TriggerMessage>(
            |ctx: Ctx<Seen>, req: v201::TriggerMessageRequest| async move {
                let what = req.requested_message.as_str();
                let _ = ctx.state.0.send(format!("TriggerMessage {what}"));
                if what == "BootNotification" {
                    boot_after_trigger(ctx.peer.clone(), ctx.state.clone(), BOOT_201);
                }
                Ok(answer(json!({"status": "Accepted"})))
            },
        )
        .on::<v201::action::SetVariables>(|ctx: Ctx<Seen>, req: v201::SetVariablesRequest| async move {
            let d = &req.set_variable_data[0];
            let _ = ctx.state.0.send(format!("SetVariables {}", d.variable.name.as_str()));
            Ok(answer(json!({"setVariableResult": [{"attributeStatus": "Accepted",
                "component": {"name": d.component.name.as_str()}, "variable": {"name": d.variable.name.as_str()}}]})))
        })
        .on::<v201::action::GetBaseReport>(|ctx: Ctx<Seen>, _: v201::GetBaseReportRequest| async move {
            let _ = ctx.state.0.send("GetBaseReport".into());
            Ok(answer(json!({"status": "Accepted"})))
        })
        .with_state(seen)
}

fn routes_16(seen: Seen) -> Routes {
    Router::station_v16()
        .on::<v16::action::TriggerMessage>(
            |ctx: Ctx<Seen>, req: v16::TriggerMessageRequest| async move {
                let what = req.requested_message.as_str();
                let _ = ctx.state.0.send(format!("TriggerMessage {what}"));
                if what == "BootNotification" {
                    boot_after_trigger(ctx.peer.clone(), ctx.state.clone(), BOOT_16);
                }
                Ok(answer(json!({"status": "Accepted"})))
            },
        )
        .on::<v16::action::ChangeConfiguration>(
            |ctx: Ctx<Seen>, req: v16::ChangeConfigurationRequest| async move {
                let _ = ctx.state.0.send(format!("ChangeConfiguration {}", req.key.as_str()));
                Ok(answer(json!({"status": "Accepted"})))
            },
        )
        .on::<v16::action::GetConfiguration>(
            |ctx: Ctx<Seen>, _: v16::GetConfigurationRequest| async move {
                let _ = ctx.state.0.send("GetConfiguration".into());
                Ok(answer(json!({"configurationKey": [{"key": "HeartbeatInterval", "readonly": false, "value": "600"}]})))
            },
        )
        .with_state(seen)
}

/// A scripted station: it sends its BootNotification on connecting, and
/// any call the test makes at once (it does not hold them until accepted).
struct Station {
    client: Client,
    seen: mpsc::UnboundedReceiver<String>,
    version: ProtocolVersion,
}

impl Station {
    fn start(csms: &Csms, id: &str, version: ProtocolVersion) -> Station {
        let (tx, seen) = mpsc::unbounded_channel();
        let config = ClientConfig::new(format!("ws://127.0.0.1:{}/ocpp/", csms.ocpp), id, version)
            .with_endpoint(evproto_ocpp_proto::Config::default().with_hold_calls_until_boot(false));
        let (routes, boot) = match version {
            ProtocolVersion::V16 => (routes_16(Seen(tx)), BOOT_16),
            _ => (routes_201(Seen(tx)), BOOT_201),
        };
        Station {
            client: Client::start(config, routes, boot, Queue::default()),
            seen,
            version,
        }
    }

    fn boot_payload(&self) -> &'static str {
        match self.version {
            ProtocolVersion::V16 => BOOT_16,
            _ => BOOT_201,
        }
    }

    /// Waits until connected with its boot answered `state`.
    async fn wait_boot(&self, state: BootState) {
        let mut rx = self.client.watch_state();
        tokio::time::timeout(WAIT, async {
            loop {
                if *rx.borrow_and_update() == ClientState::Connected(state) {
                    return;
                }
                rx.changed().await.expect("client running");
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no boot answered {state:?}"));
    }

    fn peer(&self) -> Peer {
        self.client.peer().expect("connected")
    }

    /// Sends a raw call: the answer's payload, or the CALLERROR's code.
    async fn call(&self, action: &str, payload: Value) -> Result<Value, String> {
        match self.peer().call_raw(action, payload.to_string()).await {
            Ok(text) => Ok(serde_json::from_str(&text).expect("JSON answer")),
            Err(CallFailure::CallError(e)) => Err(e.code),
            Err(e) => panic!("{action}: {e}"),
        }
    }

    /// The next thing the CSMS sent it (hang guard: 20 s).
    async fn next_seen(&mut self) -> String {
        tokio::time::timeout(WAIT, self.seen.recv())
            .await
            .expect("the CSMS sent something")
            .expect("station running")
    }

    async fn stop(self) {
        self.client.shutdown().await;
    }
}

/// The calls a station that is not accepted tries (B30, B31): each must get
/// `SecurityError`.
fn other_messages(version: ProtocolVersion) -> Vec<(&'static str, Value)> {
    match version {
        ProtocolVersion::V16 => vec![
            ("Heartbeat", json!({})),
            (
                "StatusNotification",
                json!({"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
            ),
            ("Authorize", json!({"idTag": "TAG1"})),
            (
                "StartTransaction",
                json!({"connectorId": 1, "idTag": "TAG1", "meterStart": 0, "timestamp": "2026-01-01T00:00:00Z"}),
            ),
        ],
        _ => vec![
            ("Heartbeat", json!({})),
            (
                "StatusNotification",
                json!({"timestamp": "2026-01-01T00:00:00Z", "connectorStatus": "Available", "evseId": 1, "connectorId": 1}),
            ),
            (
                "Authorize",
                json!({"idToken": {"idToken": "TAG1", "type": "ISO14443"}}),
            ),
            (
                "TransactionEvent",
                json!({"eventType": "Started", "timestamp": "2026-01-01T00:00:00Z", "triggerReason": "Authorized",
                "seqNo": 0, "transactionInfo": {"transactionId": "TX1"}, "evse": {"id": 1, "connectorId": 1}}),
            ),
        ],
    }
}

const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V16, ProtocolVersion::V201];

fn tag(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V16 => "16",
        _ => "201",
    }
}

/// B02 (2.0.1) and 1.6 §4.2 Pending: the boot is answered Pending with an
/// interval; the CSMS may configure the station but not start or stop a
/// transaction on it; accepting it triggers a BootNotification at once,
/// answered Accepted, after which the station's messages are answered.
#[tokio::test]
async fn b02_pending_station_is_configured_then_accepted_by_a_triggered_boot() {
    let csms = Csms::start("b02").await;
    for version in VERSIONS {
        let id = format!("B02-{}", tag(version));
        csms.register(&id, "Pending").await;
        let mut station = Station::start(&csms, &id, version);
        station.wait_boot(BootState::Pending).await;
        // a BootNotification again: Pending, with the interval to wait before the next
        let boot: Value = serde_json::from_str(station.boot_payload()).unwrap();
        let answer = station.call("BootNotification", boot).await.unwrap();
        assert_eq!(answer["status"], "Pending", "{answer}");
        assert_eq!(answer["interval"], json!(INTERVAL), "{answer}");
        assert!(answer["currentTime"].is_string(), "{answer}");
        let (_, v) = csms.api("GET", &format!("/api/stations/{id}"), None).await;
        assert_eq!(
            (&v["registration"], &v["boot_status"], &v["connected"]),
            (&json!("Pending"), &json!("Pending"), &json!(true)),
            "{v}"
        );
        // the CSMS may configure a Pending station ...
        let calls: Vec<(&str, Value, &str)> = match version {
            ProtocolVersion::V16 => vec![
                ("GetConfiguration", json!({}), "GetConfiguration"),
                (
                    "ChangeConfiguration",
                    json!({"key": "HeartbeatInterval", "value": "600"}),
                    "ChangeConfiguration HeartbeatInterval",
                ),
                (
                    "TriggerMessage",
                    json!({"requestedMessage": "Heartbeat"}),
                    "TriggerMessage Heartbeat",
                ),
            ],
            _ => vec![
                (
                    "GetBaseReport",
                    json!({"requestId": 1, "reportBase": "FullInventory"}),
                    "GetBaseReport",
                ),
                (
                    "SetVariables",
                    json!({"setVariableData": [{"attributeValue": "600",
                        "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}),
                    "SetVariables HeartbeatInterval",
                ),
                (
                    "TriggerMessage",
                    json!({"requestedMessage": "Heartbeat"}),
                    "TriggerMessage Heartbeat",
                ),
            ],
        };
        for (action, payload, expected) in calls {
            let (status, v) = csms
                .api(
                    "POST",
                    &format!("/api/stations/{id}/ocpp/{action}"),
                    Some(payload),
                )
                .await;
            assert_eq!(status, 200, "{action} to a Pending station: {v}");
            assert_eq!(station.next_seen().await, expected);
        }
        // ... but not start or stop a transaction on it
        let (start, stop) = match version {
            ProtocolVersion::V16 => (
                ("RemoteStartTransaction", json!({"idTag": "TAG1"})),
                ("RemoteStopTransaction", json!({"transactionId": 1})),
            ),
            _ => (
                (
                    "RequestStartTransaction",
                    json!({"idToken": {"idToken": "TAG1", "type": "ISO14443"}, "remoteStartId": 1}),
                ),
                ("RequestStopTransaction", json!({"transactionId": "TX1"})),
            ),
        };
        for (action, payload) in [start, stop] {
            let (status, v) = csms
                .api(
                    "POST",
                    &format!("/api/stations/{id}/ocpp/{action}"),
                    Some(payload),
                )
                .await;
            assert_eq!(status, 409, "{action} to a Pending station: {v}");
            assert!(v["error"].as_str().unwrap_or("").contains("Pending"), "{v}");
        }
        // the operator accepts it: the CSMS triggers a BootNotification at once
        let (status, v) = csms
            .api(
                "PUT",
                &format!("/api/stations/{id}"),
                Some(json!({"registration": "Accepted"})),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            (&v["registration"], &v["boot_trigger"]),
            (&json!("Accepted"), &json!("Accepted")),
            "{v}"
        );
        assert_eq!(station.next_seen().await, "TriggerMessage BootNotification");
        let booted = station.next_seen().await;
        let answer: Value =
            serde_json::from_str(booted.strip_prefix("boot answer ").expect(&booted)).unwrap();
        assert_eq!(answer["status"], "Accepted", "{answer}");
        assert_eq!(answer["interval"], json!(INTERVAL), "{answer}");
        // accepted: its messages are answered now
        let hb = station.call("Heartbeat", json!({})).await.unwrap();
        assert!(hb["currentTime"].is_string(), "{hb}");
        let (_, v) = csms.api("GET", &format!("/api/stations/{id}"), None).await;
        assert_eq!(v["boot_status"], "Accepted", "{v}");
        station.stop().await;
    }
    csms.stop().await;
}

/// B03 (2.0.1) and 1.6 §4.2 Rejected: the boot is answered Rejected with
/// an interval, and the CSMS sends the station nothing, not even when the
/// operator tries.
#[tokio::test]
async fn b03_rejected_station_gets_rejected_with_an_interval_and_is_sent_nothing() {
    let csms = Csms::start("b03").await;
    for version in VERSIONS {
        let id = format!("B03-{}", tag(version));
        csms.register(&id, "Rejected").await;
        let station = Station::start(&csms, &id, version);
        station.wait_boot(BootState::Rejected).await;
        let boot: Value = serde_json::from_str(station.boot_payload()).unwrap();
        let answer = station.call("BootNotification", boot).await.unwrap();
        assert_eq!(answer["status"], "Rejected", "{answer}");
        assert_eq!(answer["interval"], json!(INTERVAL), "{answer}");
        let (_, v) = csms.api("GET", &format!("/api/stations/{id}"), None).await;
        assert_eq!(
            (&v["registration"], &v["boot_status"]),
            (&json!("Rejected"), &json!("Rejected")),
            "{v}"
        );
        let action = match version {
            ProtocolVersion::V16 => ("GetConfiguration", json!({})),
            _ => (
                "GetBaseReport",
                json!({"requestId": 1, "reportBase": "FullInventory"}),
            ),
        };
        let (status, v) = csms
            .api(
                "POST",
                &format!("/api/stations/{id}/ocpp/{}", action.0),
                Some(action.1),
            )
            .await;
        assert_eq!(status, 409, "{v}");
        assert!(
            v["error"].as_str().unwrap_or("").contains("Rejected"),
            "{v}"
        );
        // nor a password, nor a boot trigger when the operator changes its registration
        let (status, _) = csms
            .api("POST", &format!("/api/stations/{id}/password"), None)
            .await;
        assert_eq!(status, 409);
        let (status, v) = csms
            .api(
                "PUT",
                &format!("/api/stations/{id}"),
                Some(json!({"registration": "Accepted"})),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        assert!(
            v["boot_trigger"]
                .as_str()
                .unwrap_or("")
                .contains("Rejected"),
            "no TriggerMessage to a Rejected station: {v}"
        );
        // its next boot (after the interval) is accepted
        let boot: Value = serde_json::from_str(station.boot_payload()).unwrap();
        let answer = station.call("BootNotification", boot).await.unwrap();
        assert_eq!(answer["status"], "Accepted", "{answer}");
        station.stop().await;
    }
    csms.stop().await;
}

/// B30: a Pending station's messages other than BootNotification get
/// `SecurityError`, in 1.6 and 2.0.1, and nothing of them is kept.
#[tokio::test]
async fn b30_pending_station_messages_get_security_error() {
    let csms = Csms::start("b30").await;
    for version in VERSIONS {
        let id = format!("B30-{}", tag(version));
        csms.register(&id, "Pending").await;
        let station = Station::start(&csms, &id, version);
        station.wait_boot(BootState::Pending).await;
        for (action, payload) in other_messages(version) {
            assert_eq!(
                station.call(action, payload).await,
                Err("SecurityError".to_owned()),
                "{action} from a Pending station"
            );
        }
        let (_, v) = csms.api("GET", &format!("/api/stations/{id}"), None).await;
        assert_eq!(v["connectors"], json!([]), "no status kept: {v}");
        assert_eq!(v["sessions"], json!([]), "no session kept: {v}");
        station.stop().await;
    }
    // a station accepted before and set Pending is gated again when it reconnects
    let id = "B30-RECONNECT";
    csms.register(id, "Accepted").await;
    let station = Station::start(&csms, id, ProtocolVersion::V201);
    station.wait_boot(BootState::Accepted).await;
    assert!(station.call("Heartbeat", json!({})).await.is_ok());
    station.stop().await;
    let (status, _) = csms
        .api(
            "PUT",
            &format!("/api/stations/{id}"),
            Some(json!({"registration": "Pending"})),
        )
        .await;
    assert_eq!(status, 200);
    let station = Station::start(&csms, id, ProtocolVersion::V201);
    station.wait_boot(BootState::Pending).await;
    assert_eq!(
        station.call("Heartbeat", json!({})).await,
        Err("SecurityError".to_owned())
    );
    station.stop().await;
    csms.stop().await;
}

/// B31: a Rejected station's messages other than BootNotification get
/// `SecurityError`, in 1.6 and 2.0.1, and nothing of them is kept.
#[tokio::test]
async fn b31_rejected_station_messages_get_security_error() {
    let csms = Csms::start("b31").await;
    for version in VERSIONS {
        let id = format!("B31-{}", tag(version));
        csms.register(&id, "Rejected").await;
        let station = Station::start(&csms, &id, version);
        station.wait_boot(BootState::Rejected).await;
        for (action, payload) in other_messages(version) {
            assert_eq!(
                station.call(action, payload).await,
                Err("SecurityError".to_owned()),
                "{action} from a Rejected station"
            );
        }
        let (_, v) = csms.api("GET", &format!("/api/stations/{id}"), None).await;
        assert_eq!(v["connectors"], json!([]), "no status kept: {v}");
        assert_eq!(v["sessions"], json!([]), "no session kept: {v}");
        station.stop().await;
    }
    // a registration the API does not know is refused
    let (status, v) = csms
        .api(
            "PUT",
            "/api/stations/B31-BAD",
            Some(json!({"registration": "Maybe"})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    csms.stop().await;
}

/// A fresh PostgreSQL database (`CSMS_TEST_POSTGRES`, default the local
/// server as tests/e2e.rs uses it); its URL.
async fn postgres_db(tag: &str) -> (String, String) {
    let admin = std::env::var("CSMS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("csms_conformance_{tag}_{}", std::process::id());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&admin)
        .await
        .expect("PostgreSQL reachable");
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(&sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').expect("a database in the URL");
    (format!("{base}/{name}"), admin)
}

/// Migration 13 on PostgreSQL: a station's registration and security
/// profile are stored, returned and followed at boot there too (B02).
#[tokio::test]
async fn b02_registration_and_profile_kept_in_postgresql() {
    let (url, admin) = postgres_db("b02").await;
    let csms = Csms::start_on("b02-pg", Some(url)).await;
    let (status, v) = csms
        .api(
            "PUT",
            "/api/stations/B02-PG",
            Some(json!({"registration": "Pending", "security_profile": 0})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let mut station = Station::start(&csms, "B02-PG", ProtocolVersion::V201);
    station.wait_boot(BootState::Pending).await;
    assert_eq!(
        station.call("Heartbeat", json!({})).await,
        Err("SecurityError".to_owned())
    );
    let (_, v) = csms.api("GET", "/api/stations/B02-PG", None).await;
    assert_eq!(
        (
            &v["registration"],
            &v["security_profile"],
            &v["boot_status"]
        ),
        (&json!("Pending"), &json!(0), &json!("Pending")),
        "{v}"
    );
    let (status, v) = csms
        .api(
            "PUT",
            "/api/stations/B02-PG",
            Some(json!({"registration": "Accepted"})),
        )
        .await;
    assert_eq!(
        (status, &v["boot_trigger"]),
        (200, &json!("Accepted")),
        "{v}"
    );
    assert_eq!(station.next_seen().await, "TriggerMessage BootNotification");
    let booted = station.next_seen().await;
    assert!(booted.contains("\"Accepted\""), "{booted}");
    assert!(station.call("Heartbeat", json!({})).await.is_ok());
    station.stop().await;
    csms.stop().await;
    let pool = sqlx::AnyPool::connect(&admin).await.unwrap();
    let name = format!("csms_conformance_b02_{}", std::process::id());
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&pool)
        .await
        .unwrap();
}

/// The variable `component`/`variable` in the device model the CSMS shows,
/// if kept: its `Actual` value (`None`: kept without one).
async fn shown(
    lab: &Lab,
    station: &str,
    component: &str,
    variable: &str,
) -> Option<Option<String>> {
    let model = lab
        .ok(
            "GET",
            &format!("/api/stations/{station}/device-model"),
            None,
        )
        .await;
    let found = model["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["component"]["name"] == component && v["variable"]["name"] == variable)?
        .clone();
    Some(
        found["variableAttribute"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"].as_str().unwrap_or("Actual") == "Actual")
            .and_then(|a| a["value"].as_str().map(str::to_owned)),
    )
}

/// One reported variable of a NotifyReport.
fn reported(component: &str, variable: &str, value: &str) -> Value {
    json!({"component": {"name": component}, "variable": {"name": variable},
        "variableAttribute": [{"type": "Actual", "value": value, "mutability": "ReadWrite"}]})
}

/// B07 GetBaseReport and B08 GetReport with their NotifyReport parts kept
/// as the device model and shown by the API; B05 SetVariables: the values
/// the station accepted (or takes at its next boot, `RebootRequired`)
/// replace the shown ones, the refused ones change nothing; B06
/// GetVariables: the values read are shown. The station's answers reach
/// the operator as given (`EmptyResultSet`, `Rejected`, ...).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b05_b06_b07_b08_variables_and_reports_kept_as_the_device_model() {
    let lab = Lab::start("b05-device-model").await;
    let mut st = Scripted::connect(&lab, "CONF-B05", ProtocolVersion::V201).await;
    let id = st.id.clone();
    // B07: the base report in two parts
    lab.exchange(
        &mut st,
        "GetBaseReport",
        json!({"requestId": 1, "reportBase": "FullInventory"}),
        json!({"status": "Accepted"}),
    )
    .await;
    let parts = [
        (
            0,
            true,
            reported("OCPPCommCtrlr", "HeartbeatInterval", "60"),
        ),
        (1, false, reported("TxCtrlr", "EVConnectionTimeOut", "30")),
    ];
    for (seq, tbc, data) in parts {
        let part = json!({"requestId": 1, "generatedAt": now(), "seqNo": seq, "tbc": tbc,
            "reportData": [data]});
        assert_eq!(st.ok("NotifyReport", part).await, json!({}));
    }
    assert_eq!(
        shown(&lab, &id, "OCPPCommCtrlr", "HeartbeatInterval").await,
        Some(Some("60".into()))
    );
    assert_eq!(
        shown(&lab, &id, "TxCtrlr", "EVConnectionTimeOut").await,
        Some(Some("30".into()))
    );
    // B05: one accepted, one rejected, one unknown, one at the next boot
    let set = |c: &str, v: &str, value: &str| json!({"attributeValue": value, "component": {"name": c}, "variable": {"name": v}});
    let result = |c: &str, v: &str, status: &str| json!({"attributeStatus": status, "component": {"name": c}, "variable": {"name": v}});
    lab.exchange(
        &mut st,
        "SetVariables",
        json!({"setVariableData": [
            set("OCPPCommCtrlr", "HeartbeatInterval", "120"),
            set("TxCtrlr", "EVConnectionTimeOut", "45"),
            set("Nowhere", "Nothing", "1"),
            set("SecurityCtrlr", "OrganizationName", "Lab"),
        ]}),
        json!({"setVariableResult": [
            result("OCPPCommCtrlr", "HeartbeatInterval", "Accepted"),
            result("TxCtrlr", "EVConnectionTimeOut", "Rejected"),
            result("Nowhere", "Nothing", "UnknownComponent"),
            result("SecurityCtrlr", "OrganizationName", "RebootRequired"),
        ]}),
    )
    .await;
    assert_eq!(
        shown(&lab, &id, "OCPPCommCtrlr", "HeartbeatInterval").await,
        Some(Some("120".into()))
    );
    assert_eq!(
        shown(&lab, &id, "TxCtrlr", "EVConnectionTimeOut").await,
        Some(Some("30".into()))
    );
    assert_eq!(shown(&lab, &id, "Nowhere", "Nothing").await, None);
    assert_eq!(
        shown(&lab, &id, "SecurityCtrlr", "OrganizationName").await,
        Some(Some("Lab".into()))
    );
    // B06: a value read is shown; an unknown variable is not kept
    lab.exchange(
        &mut st,
        "GetVariables",
        json!({"getVariableData": [
            {"component": {"name": "AuthCtrlr"}, "variable": {"name": "Enabled"}},
            {"component": {"name": "AuthCtrlr"}, "variable": {"name": "Nope"}},
        ]}),
        json!({"getVariableResult": [
            {"attributeStatus": "Accepted", "attributeValue": "true",
                "component": {"name": "AuthCtrlr"}, "variable": {"name": "Enabled"}},
            {"attributeStatus": "UnknownVariable",
                "component": {"name": "AuthCtrlr"}, "variable": {"name": "Nope"}},
        ]}),
    )
    .await;
    assert_eq!(
        shown(&lab, &id, "AuthCtrlr", "Enabled").await,
        Some(Some("true".into()))
    );
    assert_eq!(shown(&lab, &id, "AuthCtrlr", "Nope").await, None);
    // B08: a report of one component replaces what it reports
    lab.exchange(
        &mut st,
        "GetReport",
        json!({"requestId": 2, "componentVariable": [{"component": {"name": "TxCtrlr"}}]}),
        json!({"status": "Accepted"}),
    )
    .await;
    let part = json!({"requestId": 2, "generatedAt": now(), "seqNo": 0,
        "reportData": [reported("TxCtrlr", "EVConnectionTimeOut", "50")]});
    st.ok("NotifyReport", part).await;
    assert_eq!(
        shown(&lab, &id, "TxCtrlr", "EVConnectionTimeOut").await,
        Some(Some("50".into()))
    );
    // nothing to report: the operator gets the station's answer
    lab.exchange(
        &mut st,
        "GetReport",
        json!({"requestId": 3, "componentCriteria": ["Problem"]}),
        json!({"status": "EmptyResultSet"}),
    )
    .await;
    st.stop().await;
    lab.stop().await;
}

/// B09 SetNetworkProfile (accepted, then rejected: each answer to the
/// operator as given); B11 Reset without a transaction (`Immediate`
/// accepted, the station boots again and is accepted); B12 Reset with one
/// (`OnIdle`: `Scheduled`) and of an EVSE the station refuses
/// (`Rejected`). The transaction across the reset is
/// `conformance_transactions.rs::b12_e06_transactions_across_a_reset`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b09_b11_b12_network_profile_and_reset_answers() {
    let lab = Lab::start("b09-reset").await;
    let mut st = Scripted::connect(&lab, "CONF-B09", ProtocolVersion::V201).await;
    let profile = json!({"configurationSlot": 2, "connectionData": {
        "ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppInterface": "Wired0",
        "ocppCsmsUrl": format!("ws://127.0.0.1:{}/ocpp/", lab.ocpp),
        "messageTimeout": 30, "securityProfile": 1}});
    for status in ["Accepted", "Rejected", "Failed"] {
        lab.exchange(
            &mut st,
            "SetNetworkProfile",
            profile.clone(),
            json!({"status": status}),
        )
        .await;
    }
    lab.exchange(
        &mut st,
        "Reset",
        json!({"type": "Immediate"}),
        json!({"status": "Accepted"}),
    )
    .await;
    st.stop().await;
    // rebooted: accepted again
    let mut st = Scripted::connect(&lab, "CONF-B09", ProtocolVersion::V201).await;
    let station = lab.ok("GET", "/api/stations/CONF-B09", None).await;
    assert_eq!(station["boot_status"], "Accepted", "{station}");
    st.ok(
        "TransactionEvent",
        common::conformance::started("TX-B12", 1, None),
    )
    .await;
    lab.exchange(
        &mut st,
        "Reset",
        json!({"type": "OnIdle"}),
        json!({"status": "Scheduled"}),
    )
    .await;
    lab.exchange(
        &mut st,
        "Reset",
        json!({"type": "Immediate", "evseId": 1}),
        json!({"status": "Rejected"}),
    )
    .await;
    st.stop().await;
    lab.stop().await;
}

/// B05, B06 from the operator's own endpoints (`/variables/set`, `/get`):
/// the station receives the typed request, the operator gets the
/// station's answer per variable, and the device model keeps what the
/// station accepted or read; a 1.6 station gets ChangeConfiguration (one
/// per key) and GetConfiguration. A body the version cannot express is 400
/// before anything is sent.
#[tokio::test]
async fn b05_b06_variables_from_the_operator_endpoints() {
    let lab = Lab::start("b05-endpoints").await;
    let mut st = Scripted::connect(&lab, "CONF-B05E", ProtocolVersion::V201).await;
    st.answer(
        "SetVariables",
        json!({"setVariableResult": [
            {"attributeStatus": "Accepted", "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
            {"attributeStatus": "Rejected", "attributeStatusInfo": {"reasonCode": "OutOfRange", "additionalInfo": "max 24"},
             "component": {"name": "TxCtrlr", "evse": {"id": 1}}, "variable": {"name": "EVConnectionTimeOut"}}]}),
    );
    let set = lab
        .ok(
            "POST",
            "/api/stations/CONF-B05E/variables/set",
            Some(json!({"variables": [
                {"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval", "value": "120"},
                {"component": "TxCtrlr", "evse_id": 1, "variable": "EVConnectionTimeOut", "value": "99"}]})),
        )
        .await;
    let sent = st.received("SetVariables").await;
    assert_eq!(sent["setVariableData"][0]["attributeValue"], "120");
    assert_eq!(sent["setVariableData"][1]["component"]["evse"]["id"], 1);
    assert_eq!(set["results"][0]["status"], "Accepted", "{set}");
    assert_eq!(set["results"][0]["value"], "120");
    assert_eq!(set["results"][1]["status"], "Rejected");
    assert_eq!(set["results"][1]["reason"], "OutOfRange: max 24");
    st.answer(
        "GetVariables",
        json!({"getVariableResult": [
            {"attributeStatus": "Accepted", "attributeValue": "DE", "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "Language"}},
            {"attributeStatus": "UnknownVariable", "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "Nope"}}]}),
    );
    let got = lab
        .ok(
            "POST",
            "/api/stations/CONF-B05E/variables/get",
            Some(json!({"variables": [
                {"component": "OCPPCommCtrlr", "variable": "Language"},
                {"component": "OCPPCommCtrlr", "variable": "Nope", "attribute": "Actual"}]})),
        )
        .await;
    let sent = st.received("GetVariables").await;
    assert_eq!(sent["getVariableData"][1]["attributeType"], "Actual");
    assert_eq!(got["results"][0]["value"], "DE", "{got}");
    assert_eq!(got["results"][1]["status"], "UnknownVariable");
    // the device model: the accepted value and the value read, not the refused one
    let model = lab
        .ok("GET", "/api/stations/CONF-B05E/device-model", None)
        .await;
    let text = model.to_string();
    assert!(
        text.contains("HeartbeatInterval") && text.contains("\"120\""),
        "{model}"
    );
    assert!(
        text.contains("Language") && text.contains("\"DE\""),
        "{model}"
    );
    assert!(!text.contains("\"99\""), "{model}");
    // what 2.x cannot express: 400, nothing sent
    for (path, body) in [
        (
            "set",
            json!({"variables": [{"variable": "HeartbeatInterval", "value": "1"}]}),
        ),
        (
            "set",
            json!({"variables": [{"component": "C", "variable": "V"}]}),
        ),
        (
            "get",
            json!({"variables": [{"component": "C", "variable": "V", "value": "1"}]}),
        ),
        ("get", json!({"variables": []})),
        (
            "get",
            json!({"variables": [{"component": "C", "variable": "V", "attribute": "Now"}]}),
        ),
        (
            "get",
            json!({"variables": [{"component": "C", "variable": "V", "connector_id": 1}]}),
        ),
        (
            "set",
            json!({"variables": [{"component": "C", "variable": "x".repeat(51), "value": "1"}]}),
        ),
    ] {
        let (status, why) = lab
            .api(
                "POST",
                &format!("/api/stations/CONF-B05E/variables/{path}"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, 400, "{body}: {why}");
        assert!(why["error"].is_string(), "{why}");
    }
    st.not_received("SetVariables").await;
    st.not_received("GetVariables").await;
    st.stop().await;

    // 1.6: configuration keys
    let mut st = Scripted::connect(&lab, "CONF-B05E16", ProtocolVersion::V16).await;
    st.answer("ChangeConfiguration", json!({"status": "Accepted"}));
    st.answer("ChangeConfiguration", json!({"status": "NotSupported"}));
    let set = lab
        .ok(
            "POST",
            "/api/stations/CONF-B05E16/variables/set",
            Some(json!({"variables": [
                {"variable": "HeartbeatInterval", "value": "300"},
                {"variable": "FancyKey", "value": "1"}]})),
        )
        .await;
    assert_eq!(
        st.received("ChangeConfiguration").await,
        json!({"key": "HeartbeatInterval", "value": "300"})
    );
    assert_eq!(
        st.received("ChangeConfiguration").await,
        json!({"key": "FancyKey", "value": "1"})
    );
    assert_eq!(set["results"][0]["status"], "Accepted", "{set}");
    assert_eq!(set["results"][1]["status"], "NotSupported");
    st.answer(
        "GetConfiguration",
        json!({"configurationKey": [{"key": "HeartbeatInterval", "readonly": false, "value": "300"}], "unknownKey": ["Nope"]}),
    );
    let got = lab
        .ok(
            "POST",
            "/api/stations/CONF-B05E16/variables/get",
            Some(json!({"variables": [{"variable": "HeartbeatInterval"}, {"variable": "Nope"}]})),
        )
        .await;
    assert_eq!(
        st.received("GetConfiguration").await,
        json!({"key": ["HeartbeatInterval", "Nope"]})
    );
    assert_eq!(got["results"][0]["value"], "300", "{got}");
    assert_eq!(got["results"][0]["readonly"], false);
    assert_eq!(got["results"][1]["status"], "UnknownKey");
    let (status, _) = lab
        .api(
            "POST",
            "/api/stations/CONF-B05E16/variables/get",
            Some(json!({"variables": [{"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval"}]})),
        )
        .await;
    assert_eq!(status, 400, "a 1.6 station has keys only");
    st.stop().await;
    // not connected: 404
    let (status, _) = lab
        .api(
            "POST",
            "/api/stations/CONF-B05E16/variables/get",
            Some(json!({"variables": [{"variable": "X"}]})),
        )
        .await;
    assert_eq!(status, 404);
    lab.stop().await;
}

/// B11, B12 from `/reset`: Immediate and OnIdle (Scheduled while a
/// transaction runs), an EVSE's reset; 1.6 Hard and Soft; an EVSE on 1.6
/// is 400.
#[tokio::test]
async fn b11_b12_reset_from_the_operator_endpoint() {
    let lab = Lab::start("b11-endpoint").await;
    let mut st = Scripted::connect(&lab, "CONF-B11E", ProtocolVersion::V201).await;
    for (body, answer) in [
        (json!({"type": "Immediate"}), "Accepted"),
        (json!({"type": "OnIdle"}), "Scheduled"),
        (json!({"type": "Immediate", "evse_id": 1}), "Rejected"),
    ] {
        st.answer("Reset", json!({"status": answer}));
        let r = lab
            .ok("POST", "/api/stations/CONF-B11E/reset", Some(body.clone()))
            .await;
        let sent = st.received("Reset").await;
        assert_eq!(sent["type"], body["type"]);
        assert_eq!(sent.get("evseId"), body.get("evse_id"));
        assert_eq!(r["status"], answer, "{r}");
    }
    for bad in [
        json!({"type": "Hard"}),
        json!({"type": "OnIdle", "evse_id": 0}),
        json!({}),
    ] {
        let (status, _) = lab
            .api("POST", "/api/stations/CONF-B11E/reset", Some(bad.clone()))
            .await;
        assert_eq!(status, 400, "{bad}");
    }
    st.stop().await;
    let mut st = Scripted::connect(&lab, "CONF-B11E16", ProtocolVersion::V16).await;
    for (kind, sent_type) in [("Immediate", "Hard"), ("OnIdle", "Soft")] {
        let r = lab
            .ok(
                "POST",
                "/api/stations/CONF-B11E16/reset",
                Some(json!({"type": kind})),
            )
            .await;
        assert_eq!(st.received("Reset").await, json!({"type": sent_type}));
        assert_eq!(r["status"], "Accepted");
    }
    let (status, _) = lab
        .api(
            "POST",
            "/api/stations/CONF-B11E16/reset",
            Some(json!({"type": "Immediate", "evse_id": 1})),
        )
        .await;
    assert_eq!(status, 400);
    st.stop().await;
    lab.stop().await;
}

/// B09, B10: `/network-profile` moves a station to another CSMS: the new
/// connection profile in slot 2, slot 2 first in the priority, a reset
/// OnIdle; the station then connects to the second CSMS and boots there.
/// A refused step stops the rest (502 with the steps); a 1.6 station is
/// 409; a URL that does not fit the profile is 400.
#[tokio::test]
async fn b09_b10_moving_a_station_to_another_csms() {
    let lab = Lab::start("b10-from").await;
    let other = Lab::start("b10-to").await;
    let mut st = Scripted::connect(&lab, "CONF-B10", ProtocolVersion::V201).await;
    let url = format!("ws://127.0.0.1:{}/ocpp/", other.ocpp);
    st.answer(
        "SetVariables",
        json!({"setVariableResult": [{"attributeStatus": "Accepted",
            "component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "NetworkConfigurationPriority"}}]}),
    );
    let moved = lab
        .ok(
            "POST",
            "/api/stations/CONF-B10/network-profile",
            Some(json!({"url": url, "slot": 2, "security_profile": 0})),
        )
        .await;
    let profile = st.received("SetNetworkProfile").await;
    assert_eq!(profile["configurationSlot"], 2);
    assert_eq!(profile["connectionData"]["ocppCsmsUrl"], url);
    assert_eq!(profile["connectionData"]["securityProfile"], 0);
    let priority = st.received("SetVariables").await;
    assert_eq!(
        priority["setVariableData"][0]["variable"]["name"],
        "NetworkConfigurationPriority"
    );
    assert_eq!(priority["setVariableData"][0]["attributeValue"], "2");
    assert_eq!(st.received("Reset").await["type"], "OnIdle");
    let steps: Vec<_> = moved["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].clone())
        .collect();
    assert_eq!(
        steps,
        ["SetNetworkProfile", "SetVariables", "Reset"],
        "{moved}"
    );
    // the station follows its new profile: it boots at the other CSMS
    st.stop().await;
    let st = Scripted::connect(&other, "CONF-B10", ProtocolVersion::V201).await;
    let there = other.ok("GET", "/api/stations/CONF-B10", None).await;
    assert_eq!(there["boot_status"], "Accepted", "{there}");
    assert_eq!(there["connected"], true);
    st.stop().await;

    // a refused profile: nothing after it
    let mut st = Scripted::connect(&lab, "CONF-B09E", ProtocolVersion::V201).await;
    st.answer("SetNetworkProfile", json!({"status": "Rejected"}));
    let (status, why) = lab
        .api(
            "POST",
            "/api/stations/CONF-B09E/network-profile",
            Some(json!({"url": url})),
        )
        .await;
    assert_eq!(status, 502, "{why}");
    assert_eq!(why["steps"].as_array().unwrap().len(), 1, "{why}");
    st.received("SetNetworkProfile").await;
    st.not_received("Reset").await;
    for bad in [
        json!({"url": url, "security_profile": 2}),
        json!({"url": "http://example.com/"}),
        json!({"url": url, "slot": 0}),
    ] {
        let (status, _) = lab
            .api(
                "POST",
                "/api/stations/CONF-B09E/network-profile",
                Some(bad.clone()),
            )
            .await;
        assert_eq!(status, 400, "{bad}");
    }
    st.stop().await;
    let st = Scripted::connect(&lab, "CONF-B09E16", ProtocolVersion::V16).await;
    let (status, _) = lab
        .api(
            "POST",
            "/api/stations/CONF-B09E16/network-profile",
            Some(json!({"url": url})),
        )
        .await;
    assert_eq!(status, 409);
    st.stop().await;
    other.stop().await;
    lab.stop().await;
}
