//! What the `conformance_*` test binaries share: a CSMS started in-process
//! ([`Lab`]) and scripted stations on `ocpp-client` ([`Station`]) that
//! record every call the CSMS makes to them and answer each with what the
//! test queued for it (`{"status": "Accepted"}` when it queued nothing).
//!
//! A test follows a use case's sequence: the operator asks the CSMS through
//! its API ([`Lab::send`] is `POST /api/stations/{id}/ocpp/{action}`), the
//! station sees the CSMS's request ([`Station::received`]), answers, and
//! sends its own messages ([`Station::ok`]); the test asserts each message's
//! fields and what the CSMS kept ([`Lab::reports`]).

// not every test binary uses every helper
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evproto_ocpp_client::{Client, ClientConfig, MemoryStore as Queue};
use evproto_ocpp_proto::{CallError, ProtocolVersion};
use evproto_ocpp_rpc::{CallFailure, Ctx, Router, Routes};
use evproto_ocpp_types::{v16, v201, v21, Action};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{api, lab_config, temp_dir, InProcess};

const KEY: &str = "conformance-lab-api-key";
/// Hang guard of every wait.
const WAIT: Duration = Duration::from_secs(20);

/// The CSMS under test.
pub(crate) struct Lab {
    running: InProcess,
    /// The admin (operator API) port.
    pub(crate) admin: u16,
    /// The OCPP port.
    pub(crate) ocpp: u16,
    /// The public HTTP port (OCPI, uploads, `/ocsp`).
    #[allow(dead_code)] // not every test binary reads it
    pub(crate) http: u16,
    dir: std::path::PathBuf,
}

impl Lab {
    /// The lab configuration (loopback, unknown stations accepted, profile 0).
    pub(crate) async fn start(test: &str) -> Lab {
        Lab::start_with(test, |_| {}).await
    }

    /// As [`Lab::start`], with `tweak` applied to the configuration.
    pub(crate) async fn start_with(
        test: &str,
        tweak: impl FnOnce(&mut csms::config::Config),
    ) -> Lab {
        let dir = temp_dir(&format!("conformance-{test}"));
        let mut config = lab_config(&dir, KEY);
        tweak(&mut config);
        let running = InProcess::start(config).await;
        Lab {
            admin: running.started.admin_port,
            ocpp: running.started.ocpp_port,
            http: running.started.http_port,
            running,
            dir,
        }
    }

    /// An operator API request: (status, body).
    pub(crate) async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        api(KEY, self.admin, method, path, body).await
    }

    /// An operator API request that must succeed (2xx): its body.
    pub(crate) async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.api(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }

    /// The operator has the CSMS send `action` with `payload` to `station`
    /// (the generic operator call): the station's answer as the API returns it.
    pub(crate) async fn send(&self, station: &str, action: &str, payload: Value) -> Value {
        self.ok(
            "POST",
            &format!("/api/stations/{station}/ocpp/{action}"),
            Some(payload),
        )
        .await
    }

    /// One operator-initiated exchange: the operator has the CSMS send
    /// `action` with `payload` to `station`, which answers `answer`. Asserts
    /// the station received `payload` (numbers compared by value) and the
    /// API returned the station's answer.
    pub(crate) async fn exchange(
        &self,
        station: &mut Station,
        action: &str,
        payload: Value,
        answer: Value,
    ) {
        station.answer(action, answer.clone());
        let returned = self.send(&station.id, action, payload.clone()).await;
        let received = station.received(action).await;
        assert!(
            same(&received, &payload),
            "{action}: sent {payload}, the station received {received}"
        );
        assert!(
            same(&returned, &answer),
            "{action}: answered {answer}, the API returned {returned}"
        );
    }

    /// What the CSMS kept of `station`'s messages of `kind`, newest first.
    pub(crate) async fn reports(&self, station: &str, kind: &str) -> Vec<Value> {
        let v = self
            .ok(
                "GET",
                &format!("/api/stations/{station}/reports?kind={kind}"),
                None,
            )
            .await;
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// Registers (or replaces) driver token `id` with `status` and `group`.
    pub(crate) async fn token(&self, id: &str, status: &str, group: Option<&str>) {
        self.ok(
            "PUT",
            &format!("/api/tokens/{id}"),
            Some(json!({"status": status, "group_id": group})),
        )
        .await;
    }

    /// Registers (or replaces) driver token `id` as `body` gives it
    /// (`PUT /api/tokens/{id}`): the token as stored.
    pub(crate) async fn token_with(&self, id: &str, body: Value) -> Value {
        self.ok("PUT", &format!("/api/tokens/{id}"), Some(body))
            .await
    }

    /// The session the CSMS keeps for a station's transaction.
    pub(crate) async fn session(&self, station: &str, transaction: &str) -> Value {
        self.ok(
            "GET",
            &format!("/api/sessions/{station}:{transaction}"),
            None,
        )
        .await
    }

    /// The session of a station's transaction once its `status` is
    /// `status` (the CSMS may get there in the background): polled, the
    /// hang guard fails the test.
    pub(crate) async fn session_when(
        &self,
        station: &str,
        transaction: &str,
        status: &str,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = self.session(station, transaction).await;
            if s["status"] == status {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{station}:{transaction} never {status}: {s}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the CSMS and removes its data.
    pub(crate) async fn stop(self) {
        self.running.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The station side's script: where the CSMS's calls are reported and the
/// answers queued per action.
#[derive(Clone)]
struct Script {
    seen: mpsc::UnboundedSender<(String, Value)>,
    answers: Arc<Mutex<HashMap<String, VecDeque<Value>>>>,
}

impl Script {
    fn answer_for(&self, action: &str) -> Value {
        self.answers
            .lock()
            .unwrap()
            .get_mut(action)
            .and_then(VecDeque::pop_front)
            .unwrap_or_else(|| json!({"status": "Accepted"}))
    }
}

/// Every CSMS-initiated call of a version: reported, then answered as queued.
async fn scripted<A: Action>(ctx: Ctx<Script>, req: A::Request) -> Result<A::Response, CallError> {
    let request =
        serde_json::to_value(&req).map_err(|e| CallError::new("InternalError", e.to_string()))?;
    let answer = ctx.state.answer_for(A::NAME);
    let _ = ctx.state.seen.send((A::NAME.to_owned(), request));
    serde_json::from_value(answer).map_err(|e| {
        CallError::new(
            "InternalError",
            format!("the test queued no valid {} answer: {e}", A::NAME),
        )
    })
}

macro_rules! scripted_routes {
    ($router:expr, $ver:ident, [$($a:ident),* $(,)?]) => {
        $router$(.on::<$ver::action::$a>(scripted::<$ver::action::$a>))*
    };
}

fn routes(version: ProtocolVersion, script: Script) -> Routes {
    match version {
        ProtocolVersion::V16 => scripted_routes!(
            Router::station_v16(),
            v16,
            [
                CancelReservation,
                CertificateSigned,
                ChangeAvailability,
                ChangeConfiguration,
                ClearCache,
                ClearChargingProfile,
                DataTransfer,
                DeleteCertificate,
                ExtendedTriggerMessage,
                GetCompositeSchedule,
                GetConfiguration,
                GetDiagnostics,
                GetInstalledCertificateIds,
                GetLocalListVersion,
                GetLog,
                InstallCertificate,
                RemoteStartTransaction,
                RemoteStopTransaction,
                ReserveNow,
                Reset,
                SendLocalList,
                SetChargingProfile,
                SignedUpdateFirmware,
                TriggerMessage,
                UnlockConnector,
                UpdateFirmware,
            ]
        )
        .with_state(script),
        ProtocolVersion::V201 => scripted_routes!(
            Router::station_v201(),
            v201,
            [
                CancelReservation,
                CertificateSigned,
                ChangeAvailability,
                ClearCache,
                ClearChargingProfile,
                ClearDisplayMessage,
                ClearVariableMonitoring,
                CostUpdated,
                CustomerInformation,
                DataTransfer,
                DeleteCertificate,
                GetBaseReport,
                GetChargingProfiles,
                GetCompositeSchedule,
                GetDisplayMessages,
                GetInstalledCertificateIds,
                GetLocalListVersion,
                GetLog,
                GetMonitoringReport,
                GetReport,
                GetTransactionStatus,
                GetVariables,
                InstallCertificate,
                PublishFirmware,
                RequestStartTransaction,
                RequestStopTransaction,
                ReserveNow,
                Reset,
                SendLocalList,
                SetChargingProfile,
                SetDisplayMessage,
                SetMonitoringBase,
                SetMonitoringLevel,
                SetNetworkProfile,
                SetVariableMonitoring,
                SetVariables,
                TriggerMessage,
                UnlockConnector,
                UnpublishFirmware,
                UpdateFirmware,
            ]
        )
        .with_state(script),
        _ => scripted_routes!(
            Router::station_v21(),
            v21,
            [
                CancelReservation,
                ChangeAvailability,
                ClearCache,
                ClearChargingProfile,
                ClearVariableMonitoring,
                CostUpdated,
                CustomerInformation,
                DataTransfer,
                GetChargingProfiles,
                GetCompositeSchedule,
                GetLocalListVersion,
                GetMonitoringReport,
                GetTransactionStatus,
                GetVariables,
                PublishFirmware,
                RequestBatterySwap,
                RequestStartTransaction,
                RequestStopTransaction,
                ReserveNow,
                Reset,
                SendLocalList,
                SetChargingProfile,
                SetMonitoringBase,
                SetMonitoringLevel,
                SetVariableMonitoring,
                SetVariables,
                TriggerMessage,
                UnlockConnector,
                UnpublishFirmware,
                UpdateFirmware,
            ]
        )
        .with_state(script),
    }
}

/// The BootNotification a scripted station of `version` sends.
fn boot(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V16 => r#"{"chargePointVendor":"V","chargePointModel":"M"}"#,
        _ => r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#,
    }
}

/// A scripted station, connected and accepted.
pub(crate) struct Station {
    /// Its identity.
    pub(crate) id: String,
    client: Client,
    seen: mpsc::UnboundedReceiver<(String, Value)>,
    script: Script,
    /// Calls received while the test waited for another action.
    earlier: Vec<(String, Value)>,
}

impl Station {
    /// Connects `id` speaking `version` and waits until its boot is accepted.
    pub(crate) async fn connect(lab: &Lab, id: &str, version: ProtocolVersion) -> Station {
        let (tx, seen) = mpsc::unbounded_channel();
        let script = Script {
            seen: tx,
            answers: Arc::default(),
        };
        let config = ClientConfig::new(format!("ws://127.0.0.1:{}/ocpp/", lab.ocpp), id, version);
        let client = Client::start(
            config,
            routes(version, script.clone()),
            boot(version),
            Queue::default(),
        );
        client.wait_ready(WAIT).await.expect("boot accepted");
        Station {
            id: id.to_owned(),
            client,
            seen,
            script,
            earlier: Vec::new(),
        }
    }

    /// Queues the answer to the next `action` the CSMS sends.
    pub(crate) fn answer(&self, action: &str, answer: Value) {
        self.script
            .answers
            .lock()
            .unwrap()
            .entry(action.to_owned())
            .or_default()
            .push_back(answer);
    }

    /// Sends `action`: the CSMS's answer, or its CALLERROR's code.
    pub(crate) async fn call(&self, action: &str, payload: Value) -> Result<Value, String> {
        let peer = self.client.peer().expect("connected");
        match peer.call_raw(action, payload.to_string()).await {
            Ok(text) => Ok(serde_json::from_str(&text).expect("JSON answer")),
            Err(CallFailure::CallError(e)) => Err(e.code),
            Err(e) => panic!("{action}: {e}"),
        }
    }

    /// Sends `action`, which the CSMS must answer with a CALLRESULT.
    pub(crate) async fn ok(&self, action: &str, payload: Value) -> Value {
        self.call(action, payload)
            .await
            .unwrap_or_else(|code| panic!("{action} answered with CALLERROR {code}"))
    }

    /// The next `action` the CSMS sent (calls of other actions in between
    /// are kept for a later wait): its request payload.
    pub(crate) async fn received(&mut self, action: &str) -> Value {
        if let Some(i) = self.earlier.iter().position(|(a, _)| a == action) {
            return self.earlier.remove(i).1;
        }
        loop {
            let (a, v) = tokio::time::timeout(WAIT, self.seen.recv())
                .await
                .unwrap_or_else(|_| panic!("the CSMS sent no {action}"))
                .expect("station running");
            if a == action {
                return v;
            }
            self.earlier.push((a, v));
        }
    }

    /// Asserts the CSMS sent no `action` (within a short while).
    pub(crate) async fn not_received(&mut self, action: &str) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        while let Ok(call) = self.seen.try_recv() {
            self.earlier.push(call);
        }
        let sent: Vec<_> = self.earlier.iter().filter(|(a, _)| a == action).collect();
        assert!(sent.is_empty(), "the CSMS sent {sent:?}");
    }

    /// Disconnects.
    pub(crate) async fn stop(self) {
        self.client.shutdown().await;
    }
}

/// Now, as OCPP timestamps are written.
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A 2.x idToken of type ISO14443.
pub(crate) fn token(id: &str) -> Value {
    json!({"idToken": id, "type": "ISO14443"})
}

/// A 2.x TransactionEvent `Started` of `tx` on `evse` (connector 1),
/// authorized by `id_token` when given.
pub(crate) fn started(tx: &str, evse: i32, id_token: Option<&str>) -> Value {
    let mut e = json!({"eventType": "Started", "timestamp": now(), "triggerReason": "Authorized",
        "seqNo": 0, "transactionInfo": {"transactionId": tx, "chargingState": "Charging"},
        "evse": {"id": evse, "connectorId": 1},
        "meterValue": [{"timestamp": now(), "sampledValue": [{"value": 0}]}]});
    if let Some(t) = id_token {
        e["idToken"] = token(t);
    }
    e
}

/// A 2.x TransactionEvent `Ended` of `tx` (sequence number `seq_no`) for
/// `reason`, the stop authorized by `id_token` when given.
pub(crate) fn ended(tx: &str, seq_no: i32, id_token: Option<&str>, reason: &str) -> Value {
    let trigger = if id_token.is_some() {
        "StopAuthorized"
    } else {
        "EVCommunicationLost"
    };
    let mut e = json!({"eventType": "Ended", "timestamp": now(), "triggerReason": trigger,
        "seqNo": seq_no, "transactionInfo": {"transactionId": tx, "stoppedReason": reason},
        "meterValue": [{"timestamp": now(), "sampledValue": [{"value": 1000}]}]});
    if let Some(t) = id_token {
        e["idToken"] = token(t);
    }
    e
}

/// A 1.6 StartTransaction on `connector` with `id_tag`.
pub(crate) fn start_16(connector: i32, id_tag: &str) -> Value {
    json!({"connectorId": connector, "idTag": id_tag, "meterStart": 0, "timestamp": now()})
}

/// A 1.6 StopTransaction of `tx`, by `id_tag` when given.
pub(crate) fn stop_16(tx: i64, id_tag: Option<&str>, reason: &str) -> Value {
    let mut s =
        json!({"transactionId": tx, "meterStop": 1000, "timestamp": now(), "reason": reason});
    if let Some(t) = id_tag {
        s["idTag"] = json!(t);
    }
    s
}

/// JSON equality as OCPP means it: numbers by value (a decimal the typed
/// messages write as `22000.0` is the `22000` a test wrote).
pub(crate) fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}
