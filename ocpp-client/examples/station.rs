//! A charging station on `ocpp-client` that runs one charging session:
//! boot, status, heartbeat, authorize, a transaction with meter values, and
//! answers the CSMS's GetConfiguration (1.6) / GetVariables (2.x). Exits 0
//! once the session is done and one CSMS-initiated call was answered.
//!
//! ```text
//! cargo run -p evproto-ocpp-client --example station -- --url ws://127.0.0.1:9000/ocpp/ --id CP1 --version 2.0.1
//! ```

#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use evproto_ocpp_client::{Client, ClientConfig, MemoryStore};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_rpc::{Ctx, Router, Routes};
use evproto_ocpp_types::{v16, v201, v21};
use serde_json::json;
use tokio::sync::Notify;

#[derive(Debug, Parser)]
struct Args {
    /// CSMS URL; the identity is appended.
    #[arg(long)]
    url: String,
    /// Station identity.
    #[arg(long)]
    id: String,
    /// OCPP version: 1.6, 2.0.1 or 2.1.
    #[arg(long, value_parser = ["1.6", "2.0.1", "2.1"])]
    version: String,
    /// Basic-auth password.
    #[arg(long)]
    password: Option<String>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn say(v: serde_json::Value) {
    println!("{v}");
}

fn routes(version: ProtocolVersion, answered: Arc<Notify>) -> Routes {
    const VARS: &str = r#"{"getVariableResult":[{"attributeStatus":"Accepted","attributeValue":"300","component":{"name":"OCPPCommCtrlr"},"variable":{"name":"HeartbeatInterval"}}]}"#;
    match version {
        ProtocolVersion::V16 => Router::station_v16()
            .on::<v16::action::GetConfiguration>(|ctx: Ctx<Arc<Notify>>, _: v16::GetConfigurationRequest| async move {
                ctx.state.notify_one();
                Ok(evproto_ocpp_types::from_str(r#"{"configurationKey":[{"key":"HeartbeatInterval","readonly":false,"value":"300"}]}"#).unwrap_or_else(|_| unreachable!()))
            })
            .with_state(answered),
        ProtocolVersion::V201 => Router::station_v201()
            .on::<v201::action::GetVariables>(|ctx: Ctx<Arc<Notify>>, _: v201::GetVariablesRequest| async move {
                ctx.state.notify_one();
                Ok(evproto_ocpp_types::from_str(VARS).unwrap_or_else(|_| unreachable!()))
            })
            .with_state(answered),
        _ => Router::station_v21()
            .on::<v21::action::GetVariables>(|ctx: Ctx<Arc<Notify>>, _: v21::GetVariablesRequest| async move {
                ctx.state.notify_one();
                Ok(evproto_ocpp_types::from_str(VARS).unwrap_or_else(|_| unreachable!()))
            })
            .with_state(answered),
    }
}

/// The session's calls as (action, payload) pairs; `{tx}` is replaced by the
/// transaction id the CSMS assigned (1.6).
fn session(version: ProtocolVersion) -> Vec<(&'static str, serde_json::Value)> {
    let t = now();
    match version {
        ProtocolVersion::V16 => vec![
            (
                "StatusNotification",
                json!({"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
            ),
            ("Heartbeat", json!({})),
            ("Authorize", json!({"idTag": "TAG1"})),
            (
                "StartTransaction",
                json!({"connectorId": 1, "idTag": "TAG1", "meterStart": 0, "timestamp": t}),
            ),
            (
                "StatusNotification",
                json!({"connectorId": 1, "errorCode": "NoError", "status": "Charging"}),
            ),
            (
                "MeterValues",
                json!({"connectorId": 1, "transactionId": "{tx}", "meterValue": [{"timestamp": t, "sampledValue": [
                {"value": "1000", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]}),
            ),
            (
                "StopTransaction",
                json!({"meterStop": 2000, "timestamp": t, "transactionId": "{tx}", "idTag": "TAG1"}),
            ),
        ],
        _ => vec![
            (
                "StatusNotification",
                json!({"timestamp": t, "connectorStatus": "Available", "evseId": 1, "connectorId": 1}),
            ),
            ("Heartbeat", json!({})),
            (
                "Authorize",
                json!({"idToken": {"idToken": "TAG1", "type": "ISO14443"}}),
            ),
            (
                "TransactionEvent",
                json!({"eventType": "Started", "timestamp": t, "triggerReason": "Authorized", "seqNo": 0,
                "transactionInfo": {"transactionId": "T-1"}, "idToken": {"idToken": "TAG1", "type": "ISO14443"}, "evse": {"id": 1, "connectorId": 1}}),
            ),
            (
                "TransactionEvent",
                json!({"eventType": "Updated", "timestamp": t, "triggerReason": "MeterValuePeriodic", "seqNo": 1,
                "transactionInfo": {"transactionId": "T-1"}, "meterValue": [{"timestamp": t, "sampledValue": [{"value": 1000.5, "measurand": "Energy.Active.Import.Register"}]}]}),
            ),
            (
                "TransactionEvent",
                json!({"eventType": "Ended", "timestamp": t, "triggerReason": "StopAuthorized", "seqNo": 2,
                "transactionInfo": {"transactionId": "T-1", "stoppedReason": "Local"}}),
            ),
        ],
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let version = match args.version.as_str() {
        "1.6" => ProtocolVersion::V16,
        "2.0.1" => ProtocolVersion::V201,
        _ => ProtocolVersion::V21,
    };
    let boot = match version {
        ProtocolVersion::V16 => r#"{"chargePointVendor":"V","chargePointModel":"M"}"#,
        _ => r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#,
    };
    let mut config = ClientConfig::new(&args.url, &args.id, version);
    if let Some(p) = &args.password {
        config = config.with_password(p.as_bytes());
    }
    let answered = Arc::new(Notify::new());
    let client = Client::start(
        config,
        routes(version, answered.clone()),
        boot,
        MemoryStore::new(),
    );
    if let Err(e) = client.wait_ready(Duration::from_secs(20)).await {
        say(json!({"event": "failed", "error": e.to_string()}));
        std::process::exit(1);
    }
    say(json!({"event": "boot_accepted"}));
    let Some(peer) = client.peer() else {
        std::process::exit(1)
    };
    let mut tx = serde_json::Value::Null;
    for (action, mut payload) in session(version) {
        for key in ["transactionId"] {
            if payload.get(key) == Some(&json!("{tx}")) {
                payload[key] = tx.clone();
            }
        }
        match peer.call_raw(action, payload.to_string()).await {
            Ok(answer) => {
                if action == "StartTransaction" {
                    tx = serde_json::from_str::<serde_json::Value>(&answer).unwrap_or_default()
                        ["transactionId"]
                        .clone();
                }
                say(json!({"event": "call_ok", "action": action}));
            }
            Err(e) => {
                say(json!({"event": "call_failed", "action": action, "error": e.to_string()}));
                std::process::exit(1);
            }
        }
    }
    say(json!({"event": "session_done"}));
    if tokio::time::timeout(Duration::from_secs(20), answered.notified())
        .await
        .is_err()
    {
        say(json!({"event": "failed", "error": "no CSMS-initiated call"}));
        std::process::exit(1);
    }
    say(json!({"event": "csms_call_answered"}));
    tokio::time::sleep(Duration::from_millis(200)).await;
    client.shutdown().await;
}
