//! A recording CSMS for the tests: answers a charging session's calls in
//! every version and keeps what it received.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use evproto_ocpp_proto::CallError;
use evproto_ocpp_rpc::{Ctx, Router};
use evproto_ocpp_server::{Security, Server, ServerConfig};
use evproto_ocpp_types::{v16, v201, v21};
use serde_json::{json, Value};

/// (identity, action, request payload)
type Call = (String, &'static str, Value);

#[derive(Clone, Default)]
pub struct Recorder {
    pub calls: Arc<Mutex<Vec<Call>>>,
    next_tx: Arc<AtomicI32>,
}

impl Recorder {
    fn record<T: serde::Serialize>(&self, identity: &str, action: &'static str, req: &T) {
        self.calls.lock().unwrap().push((
            identity.to_owned(),
            action,
            serde_json::to_value(req).unwrap(),
        ));
    }
    pub fn actions(&self, identity: &str) -> Vec<&'static str> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.0 == identity)
            .map(|c| c.1)
            .collect()
    }
    pub fn payloads(&self, identity: &str, action: &str) -> Vec<Value> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.0 == identity && c.1 == action)
            .map(|c| c.2.clone())
            .collect()
    }
}

fn resp<T: evproto_ocpp_types::Message>(v: Value) -> Result<T, CallError> {
    Ok(evproto_ocpp_types::from_str(&v.to_string()).expect("test response is schema-valid"))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

macro_rules! rec {
    ($v:ident, $action:ident, $answer:expr) => {
        |ctx: Ctx<Recorder>, req: <$v::action::$action as evproto_ocpp_types::Action>::Request| async move {
            ctx.state.record(&ctx.identity, stringify!($action), &req);
            let f: fn(&Recorder) -> Value = $answer;
            resp(f(&ctx.state))
        }
    };
}

macro_rules! v2 {
    ($v:ident, $router:ident, $rec:expr) => {{
        use $v::action::*;
        Router::$router()
            .on::<BootNotification>(rec!($v, BootNotification, |_| json!({"status": "Accepted", "currentTime": now(), "interval": 300})))
            .on::<StatusNotification>(rec!($v, StatusNotification, |_| json!({})))
            .on::<Heartbeat>(rec!($v, Heartbeat, |_| json!({"currentTime": now()})))
            .on::<Authorize>(rec!($v, Authorize, |_| json!({"idTokenInfo": {"status": "Accepted"}})))
            .on::<TransactionEvent>(rec!($v, TransactionEvent, |_| json!({})))
            .on::<MeterValues>(rec!($v, MeterValues, |_| json!({})))
            .with_state($rec)
    }};
}

pub fn routes16(rec: Recorder) -> evproto_ocpp_rpc::Routes {
    use v16::action::*;
    Router::csms_v16()
        .on::<BootNotification>(rec!(v16, BootNotification, |_| json!({"status": "Accepted", "currentTime": now(), "interval": 300})))
        .on::<StatusNotification>(rec!(v16, StatusNotification, |_| json!({})))
        .on::<Heartbeat>(rec!(v16, Heartbeat, |_| json!({"currentTime": now()})))
        .on::<Authorize>(rec!(v16, Authorize, |_| json!({"idTagInfo": {"status": "Accepted"}})))
        .on::<StartTransaction>(rec!(v16, StartTransaction, |r| json!({"transactionId": r.next_tx.fetch_add(1, Ordering::Relaxed) + 1, "idTagInfo": {"status": "Accepted"}})))
        .on::<MeterValues>(rec!(v16, MeterValues, |_| json!({})))
        .on::<StopTransaction>(rec!(v16, StopTransaction, |_| json!({"idTagInfo": {"status": "Accepted"}})))
        .with_state(rec)
}

pub fn routes201(rec: Recorder) -> evproto_ocpp_rpc::Routes {
    v2!(v201, csms_v201, rec)
}

pub fn routes21(rec: Recorder) -> evproto_ocpp_rpc::Routes {
    v2!(v21, csms_v21, rec)
}

pub struct Running {
    pub server: Server,
    pub port: u16,
    pub rec: Recorder,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub async fn start(security: Security, config: ServerConfig) -> Self {
        Self::start_on(security, config, 0).await
    }

    pub async fn start_on(security: Security, config: ServerConfig, port: u16) -> Self {
        let rec = Recorder::default();
        let server = Server::builder(security)
            .config(config)
            .v16(routes16(rec.clone()))
            .v201(routes201(rec.clone()))
            .v21(routes21(rec.clone()))
            .build();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let s = server.clone();
        let task = tokio::spawn(async move {
            s.serve(listener, async {
                let _ = rx.await;
            })
            .await
        });
        Self {
            server,
            port,
            rec,
            stop: Some(tx),
            task,
        }
    }

    pub fn url(&self, scheme: &str) -> String {
        let host = if scheme == "wss" {
            "localhost"
        } else {
            "127.0.0.1"
        };
        format!("{scheme}://{host}:{}/ocpp/", self.port)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}
