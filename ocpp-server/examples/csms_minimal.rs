//! A minimal CSMS on `ocpp-server`: accepts OCPP 1.6, 2.0.1 and 2.1 stations,
//! answers the calls of a charging session, and, once a station's boot is
//! accepted, sends it CSMS-initiated calls (1.6 GetConfiguration, 2.x
//! GetVariables). Prints one JSON line per event on stdout.
//!
//! ```text
//! cargo run -p evproto-ocpp-server --example csms_minimal -- --port 9000 --password s3cret
//! cargo run -p evproto-ocpp-server --example csms_minimal -- --port 9000 --unsecured
//! ```

#![allow(missing_docs)]

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use clap::Parser;
use evproto_ocpp_proto::{BootState, CallError};
use evproto_ocpp_rpc::{Ctx, Router};
use evproto_ocpp_server::{Security, Server, ServerEvent};
use evproto_ocpp_types::{v16, v201, v21};
use serde_json::json;

#[derive(Debug, Parser)]
struct Args {
    /// TCP port to listen on (127.0.0.1 unless --host).
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Basic-auth password every station must present (security profile 1).
    #[arg(long, conflicts_with = "unsecured")]
    password: Option<String>,
    /// Accept stations without authentication (security profile 0).
    #[arg(long)]
    unsecured: bool,
    /// Do not offer permessage-deflate (connections then run on tokio-tungstenite).
    #[arg(long)]
    no_deflate: bool,
    /// Print connection events only, not every call (for load tests).
    #[arg(long)]
    quiet: bool,
}

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[derive(Clone, Default)]
struct App {
    next_tx: Arc<AtomicI32>,
}

fn say(v: serde_json::Value) {
    if !(QUIET.load(std::sync::atomic::Ordering::Relaxed) && v["event"] == "call") {
        println!("{v}");
    }
}

/// Builds a response from JSON through its typed decoder (so it is valid).
fn resp<T: evproto_ocpp_types::Message>(v: serde_json::Value) -> Result<T, CallError> {
    evproto_ocpp_types::from_str(&v.to_string()).map_err(|_| CallError::internal())
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn v16_routes(app: App) -> evproto_ocpp_rpc::Routes {
    use v16::action::*;
    Router::csms_v16()
        .on::<BootNotification>(|ctx: Ctx<App>, req: v16::BootNotificationRequest| async move {
            say(json!({"event": "call", "identity": &*ctx.identity, "action": "BootNotification", "model": req.charge_point_model.as_str()}));
            resp(json!({"status": "Accepted", "currentTime": now(), "interval": 300}))
        })
        .on::<StatusNotification>(|ctx: Ctx<App>, req: v16::StatusNotificationRequest| async move {
            say(json!({"event": "call", "identity": &*ctx.identity, "action": "StatusNotification", "status": req.status.as_str()}));
            Ok(v16::StatusNotificationResponse::default())
        })
        .on::<Heartbeat>(|_: Ctx<App>, _: v16::HeartbeatRequest| async move { resp(json!({"currentTime": now()})) })
        .on::<Authorize>(|ctx: Ctx<App>, req: v16::AuthorizeRequest| async move {
            say(json!({"event": "call", "identity": &*ctx.identity, "action": "Authorize", "idTag": req.id_tag.as_str()}));
            resp(json!({"idTagInfo": {"status": "Accepted"}}))
        })
        .on::<StartTransaction>(|ctx: Ctx<App>, req: v16::StartTransactionRequest| async move {
            let tx = ctx.state.next_tx.fetch_add(1, Ordering::Relaxed) + 1;
            say(json!({"event": "call", "identity": &*ctx.identity, "action": "StartTransaction", "transactionId": tx, "meterStart": req.meter_start}));
            resp(json!({"transactionId": tx, "idTagInfo": {"status": "Accepted"}}))
        })
        .on::<MeterValues>(|ctx: Ctx<App>, req: v16::MeterValuesRequest| async move {
            let n: usize = req.meter_value.iter().map(|m| m.sampled_value.len()).sum();
            say(json!({"event": "call", "identity": &*ctx.identity, "action": "MeterValues", "samples": n}));
            Ok(v16::MeterValuesResponse::default())
        })
        .on::<StopTransaction>(|ctx: Ctx<App>, req: v16::StopTransactionRequest| async move {
            say(json!({"event": "call", "identity": &*ctx.identity, "action": "StopTransaction", "transactionId": req.transaction_id, "meterStop": req.meter_stop}));
            resp(json!({"idTagInfo": {"status": "Accepted"}}))
        })
        .on::<DataTransfer>(|_: Ctx<App>, _: v16::DataTransferRequest| async move { resp(json!({"status": "UnknownVendorId"})) })
        .on::<FirmwareStatusNotification>(|_: Ctx<App>, _: v16::FirmwareStatusNotificationRequest| async move {
            Ok(v16::FirmwareStatusNotificationResponse::default())
        })
        .on::<SecurityEventNotification>(|_: Ctx<App>, _: v16::SecurityEventNotificationRequest| async move {
            Ok(v16::SecurityEventNotificationResponse::default())
        })
        .with_state(app)
}

/// 2.0.1 and 2.1 share the handlers' shape; one macro writes both routers.
macro_rules! v2_routes {
    ($v:ident, $router:ident) => {{
        use $v::action::*;
        |app: App| {
            Router::$router()
                .on::<BootNotification>(|ctx: Ctx<App>, req: $v::BootNotificationRequest| async move {
                    say(json!({"event": "call", "identity": &*ctx.identity, "action": "BootNotification", "model": req.charging_station.model.as_str()}));
                    resp(json!({"status": "Accepted", "currentTime": now(), "interval": 300}))
                })
                .on::<StatusNotification>(|ctx: Ctx<App>, req: $v::StatusNotificationRequest| async move {
                    say(json!({"event": "call", "identity": &*ctx.identity, "action": "StatusNotification", "status": req.connector_status.as_str()}));
                    resp(json!({}))
                })
                .on::<Heartbeat>(|_: Ctx<App>, _: $v::HeartbeatRequest| async move { resp(json!({"currentTime": now()})) })
                .on::<Authorize>(|ctx: Ctx<App>, req: $v::AuthorizeRequest| async move {
                    say(json!({"event": "call", "identity": &*ctx.identity, "action": "Authorize", "idToken": req.id_token.id_token.as_str()}));
                    resp(json!({"idTokenInfo": {"status": "Accepted"}}))
                })
                .on::<TransactionEvent>(|ctx: Ctx<App>, req: $v::TransactionEventRequest| async move {
                    say(json!({"event": "call", "identity": &*ctx.identity, "action": "TransactionEvent", "eventType": req.event_type.as_str(),
                        "transactionId": req.transaction_info.transaction_id.as_str(), "seqNo": req.seq_no}));
                    resp(json!({}))
                })
                .on::<MeterValues>(|_: Ctx<App>, _: $v::MeterValuesRequest| async move { resp(json!({})) })
                .on::<NotifyEvent>(|_: Ctx<App>, _: $v::NotifyEventRequest| async move { resp(json!({})) })
                .on::<NotifyReport>(|_: Ctx<App>, _: $v::NotifyReportRequest| async move { resp(json!({})) })
                .on::<SecurityEventNotification>(|_: Ctx<App>, _: $v::SecurityEventNotificationRequest| async move { resp(json!({})) })
                .on::<FirmwareStatusNotification>(|_: Ctx<App>, _: $v::FirmwareStatusNotificationRequest| async move { resp(json!({})) })
                .on::<DataTransfer>(|_: Ctx<App>, _: $v::DataTransferRequest| async move { resp(json!({"status": "UnknownVendorId"})) })
                .with_state(app)
        }
    }};
}

/// After a boot is accepted, ask the station something.
async fn csms_initiated(server: Server, identity: String) {
    let Ok(peer) = server.station(&identity) else {
        return;
    };
    let result = match peer.version() {
        evproto_ocpp_proto::ProtocolVersion::V16 => {
            let req = v16::GetConfigurationRequest {
                key: Some(vec!["HeartbeatInterval".parse().unwrap_or_default()]),
            };
            peer.call::<v16::action::GetConfiguration>(&req)
                .await
                .map(|r| json!(r))
        }
        evproto_ocpp_proto::ProtocolVersion::V201 => {
            let req: v201::GetVariablesRequest = serde_json::from_value(json!({"getVariableData": [
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}))
            .unwrap_or_else(|_| unreachable!());
            peer.call::<v201::action::GetVariables>(&req)
                .await
                .map(|r| json!(r))
        }
        _ => {
            let req: v21::GetVariablesRequest = serde_json::from_value(json!({"getVariableData": [
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]}))
            .unwrap_or_else(|_| unreachable!());
            peer.call::<v21::action::GetVariables>(&req)
                .await
                .map(|r| json!(r))
        }
    };
    match result {
        Ok(r) => say(json!({"event": "csms_call_result", "identity": identity, "result": r})),
        Err(e) => {
            say(json!({"event": "csms_call_failed", "identity": identity, "error": e.to_string()}))
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let security = match (args.unsecured, args.password) {
        (true, _) => Security::unsecured(),
        (false, Some(p)) => Security::basic_auth(move |_: &str, pass: &[u8]| pass == p.as_bytes()),
        (false, None) => {
            eprintln!(
                "choose --password <PASSWORD> (security profile 1) or --unsecured (profile 0)"
            );
            std::process::exit(2);
        }
    };
    QUIET.store(args.quiet, std::sync::atomic::Ordering::Relaxed);
    let app = App::default();
    let server = Server::builder(security)
        .config(
            evproto_ocpp_server::ServerConfig::default().with_permessage_deflate(!args.no_deflate),
        )
        .v16(v16_routes(app.clone()))
        .v201(v2_routes!(v201, csms_v201)(app.clone()))
        .v21(v2_routes!(v21, csms_v21)(app))
        .build();
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await?;
    say(json!({"event": "listening", "port": listener.local_addr()?.port()}));
    let mut events = server.subscribe();
    let watcher = server.clone();
    tokio::spawn(async move {
        while let Ok(ev) = events.recv().await {
            match ev {
                ServerEvent::Connected { identity, version } => say(
                    json!({"event": "connected", "identity": identity, "version": version.to_string()}),
                ),
                ServerEvent::Boot {
                    identity,
                    state: BootState::Accepted,
                } => {
                    say(json!({"event": "boot_accepted", "identity": identity}));
                    tokio::spawn(csms_initiated(watcher.clone(), identity));
                }
                ServerEvent::Disconnected { identity, reason } => say(
                    json!({"event": "disconnected", "identity": identity, "reason": format!("{reason:?}")}),
                ),
                ServerEvent::Refused { status, reason } => {
                    say(json!({"event": "refused", "status": status, "reason": reason.to_string()}))
                }
                _ => {}
            }
        }
    });
    server
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
