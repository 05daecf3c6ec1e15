//! Sessions that cannot get stuck (issue 18 item 2): a station that
//! crashes mid-session (its client dropped), reboots (a new client: a
//! BootNotification) and reports the connector `Available` gets its session
//! ended by the CSMS, priced up to the last meter value and captured once;
//! an operator can force-close a session; a late StopTransaction /
//! TransactionEvent `Ended` after either never charges twice. A 2.0.1
//! station is asked `GetTransactionStatus` first (E14; the queue cases are
//! `conformance_transactions.rs::e14_*`). Stations are
//! `evproto-ocpp-client`s talking to the CSMS started in-process.

mod common;

use std::time::Duration;

use evproto_ocpp_client::{Client, ClientConfig, MemoryStore as Queue};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_rpc::{Ctx, Router};
use evproto_ocpp_types::v201;
use rust_decimal::Decimal;
use serde_json::{json, Value};

const KEY: &str = "stuck-sessions-api-key-0123";
/// 0.30 per kWh with 20 % VAT, plus 1.00 per session.
const TARIFF: &str = r#"{"currency": "EUR", "elements": [{"price_components": [
    {"type": "ENERGY", "price": 0.30, "vat": 20.0, "step_size": 1},
    {"type": "FLAT", "price": 1.00, "step_size": 1}]}]}"#;
const WALLET: &str = "100.00";

/// The CSMS in-process, with the tariff and a driver token with a wallet.
struct Csms {
    ocpp: u16,
    api: u16,
    running: common::InProcess,
    dir: std::path::PathBuf,
}

impl Csms {
    async fn start(test: &str) -> Csms {
        let dir = common::temp_dir(&format!("stuck-{test}"));
        let running = common::InProcess::start(common::lab_config(&dir, KEY)).await;
        let csms = Csms {
            ocpp: running.started.ocpp_port,
            api: running.started.admin_port,
            running,
            dir,
        };
        let tariff: Value = serde_json::from_str(TARIFF).unwrap();
        let (s, b) = csms.api("PUT", "/api/tariffs/default", Some(tariff)).await;
        assert!(s == 200 || s == 201, "tariff: {s} {b}");
        let (s, b) = csms
            .api("POST", "/api/tokens", Some(json!({"id_token": "DRIVER"})))
            .await;
        assert!(s == 200 || s == 201, "token: {s} {b}");
        let (s, b) = csms
            .api(
                "PUT",
                "/api/wallets/DRIVER",
                Some(json!({"balance": WALLET.parse::<Decimal>().unwrap()})),
            )
            .await;
        assert!(s == 200 || s == 201, "wallet: {s} {b}");
        csms
    }

    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        common::api(KEY, self.api, method, path, body).await
    }

    /// Boots station `id` (a new client: the CSMS sees a BootNotification).
    async fn station(&self, id: &str, version: ProtocolVersion) -> Client {
        let url = format!("ws://127.0.0.1:{}/ocpp/", self.ocpp);
        let config = ClientConfig::new(url, id.to_owned(), version);
        let boot_2x = r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#;
        let station = match version {
            ProtocolVersion::V16 => Client::start(
                config,
                Router::station_v16().with_state(()),
                r#"{"chargePointVendor":"V","chargePointModel":"M"}"#,
                Queue::default(),
            ),
            _ => Client::start(
                config,
                Router::station_v201()
                    .on::<v201::action::GetTransactionStatus>(nothing_queued)
                    .with_state(()),
                boot_2x,
                Queue::default(),
            ),
        };
        station.wait_ready(Duration::from_secs(20)).await.unwrap();
        station
    }

    /// Waits until the CSMS completed the session and captured its payment
    /// (it may do so in the background, after asking the station).
    async fn completed(&self, id: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.session(id).await;
            let (_, p) = self
                .api("GET", &format!("/api/sessions/{id}/payment"), None)
                .await;
            if s["status"] == "Completed" && p["status"] == "Captured" {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never settled: {s} {p}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn session(&self, id: &str) -> Value {
        let (s, b) = self.api("GET", &format!("/api/sessions/{id}"), None).await;
        assert_eq!(s, 200, "{id}: {b}");
        b
    }

    /// The session is Completed with `reason`, priced on `energy_wh`, one
    /// CDR, captured once: the wallet went down by exactly the CDR's total.
    async fn settled_once(&self, id: &str, reason: &str, energy_wh: i64) -> Value {
        let s = self.session(id).await;
        assert_eq!(s["status"], "Completed", "{s}");
        assert_eq!(s["stop_reason"], reason, "{s}");
        assert_eq!(s["energy_wh"], energy_wh.to_string(), "{s}");
        let (st, cdr) = self
            .api("GET", &format!("/api/sessions/{id}/cdr"), None)
            .await;
        assert_eq!(st, 200, "{cdr}");
        assert_eq!(
            cdr["total_energy"].to_string().parse::<Decimal>().unwrap(),
            Decimal::new(energy_wh, 3),
            "{cdr}"
        );
        let (st, p) = self
            .api("GET", &format!("/api/sessions/{id}/payment"), None)
            .await;
        assert_eq!((st, &p["status"]), (200, &json!("Captured")), "{p}");
        let total: Decimal = cdr["total_cost"]["incl_vat"].to_string().parse().unwrap();
        assert!(total > Decimal::ZERO);
        let (_, w) = self.api("GET", "/api/wallets/DRIVER", None).await;
        let balance: Decimal = w["balance"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            balance,
            WALLET.parse::<Decimal>().unwrap() - total.round_dp(2),
            "captured once: {w} {cdr}"
        );
        cdr
    }

    async fn stop(self) {
        self.running.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A 2.0.1 station that lost its transactions in the crash: nothing queued
/// of the transaction asked about, not ongoing.
async fn nothing_queued(
    _: Ctx<()>,
    req: v201::GetTransactionStatusRequest,
) -> Result<v201::GetTransactionStatusResponse, evproto_ocpp_proto::CallError> {
    assert_eq!(
        req.transaction_id.as_ref().map(|t| t.as_str()),
        Some("TX-1")
    );
    Ok(v201::GetTransactionStatusResponse {
        custom_data: None,
        ongoing_indicator: Some(false),
        messages_in_queue: false,
    })
}

async fn call(station: &Client, action: &str, payload: Value) -> Value {
    let peer = station.peer().expect("connected");
    let answer = peer
        .call_raw(action, payload.to_string())
        .await
        .unwrap_or_else(|e| panic!("{action}: {e}"));
    serde_json::from_str(&answer).unwrap()
}

/// `min` minutes after the sessions' start (two hours ago, one base for the run).
fn at(min: i64) -> String {
    static BASE: std::sync::OnceLock<chrono::DateTime<chrono::Utc>> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| chrono::Utc::now() - chrono::Duration::hours(2));
    let t = base + chrono::Duration::minutes(min);
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn status_16(connector: i64, status: &str) -> Value {
    json!({"connectorId": connector, "errorCode": "NoError", "status": status, "timestamp": at(60)})
}

fn status_201(status: &str) -> Value {
    json!({"timestamp": at(60), "connectorStatus": status, "evseId": 1, "connectorId": 1})
}

/// A 1.6 session on connector 1 with 1000 → 3000 Wh; its transaction id.
async fn start_16(station: &Client) -> i64 {
    let a = call(
        station,
        "StartTransaction",
        json!({"connectorId": 1, "idTag": "DRIVER", "meterStart": 1000, "timestamp": at(0)}),
    )
    .await;
    assert_eq!(a["idTagInfo"]["status"], "Accepted", "{a}");
    let tx = a["transactionId"].as_i64().unwrap();
    call(station, "StatusNotification", status_16(1, "Charging")).await;
    call(
        station,
        "MeterValues",
        json!({"connectorId": 1, "transactionId": tx,
            "meterValue": [{"timestamp": at(20), "sampledValue": [{"value": "3000"}]}]}),
    )
    .await;
    tx
}

fn event_201(kind: &str, seq: i64, min: i64, wh: i64, extra: Value) -> Value {
    let context = match kind {
        "Started" => "Transaction.Begin",
        "Ended" => "Transaction.End",
        _ => "Sample.Periodic",
    };
    let mut e = json!({"eventType": kind, "seqNo": seq, "timestamp": at(min),
        "triggerReason": "MeterValuePeriodic", "transactionInfo": {"transactionId": "TX-1"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [{"timestamp": at(min), "sampledValue": [{"value": wh, "context": context}]}]});
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

/// A 2.0.1 session TX-1 on EVSE 1 with 1000 → 3000 Wh.
async fn start_201(station: &Client) {
    let a = call(
        station,
        "TransactionEvent",
        event_201(
            "Started",
            0,
            0,
            1000,
            json!({"idToken": {"idToken": "DRIVER", "type": "ISO14443"}}),
        ),
    )
    .await;
    assert_eq!(a["idTokenInfo"]["status"], "Accepted", "{a}");
    call(
        station,
        "TransactionEvent",
        event_201("Updated", 1, 20, 3000, json!({})),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v16_station_that_rebooted_and_reports_available_ends_its_session_once() {
    let csms = Csms::start("v16").await;
    let station = csms.station("STUCK16", ProtocolVersion::V16).await;
    let tx = start_16(&station).await;
    let id = format!("STUCK16:{tx}");
    // the crash: the connection drops, nothing is sent
    drop(station);
    let station = csms.station("STUCK16", ProtocolVersion::V16).await;
    // booted again: a suspect, not closed yet (its StopTransaction may be queued)
    assert_eq!(csms.session(&id).await["status"], "Active");
    // connector 2 is not the session's
    call(&station, "StatusNotification", status_16(2, "Available")).await;
    assert_eq!(csms.session(&id).await["status"], "Active");
    call(&station, "StatusNotification", status_16(1, "Available")).await;
    let cdr = csms.settled_once(&id, "Reboot", 2000).await;
    let s = csms.session(&id).await;
    assert_eq!(s["closed_by_csms"]["by"], "recovery", "{s}");
    assert_eq!(
        s["stopped_at"],
        json!(format!("{}.000Z", &at(20)[..19])),
        "{s}"
    );
    // the station's own StopTransaction, late, from its queue: answered, never billed twice
    call(
        &station,
        "StopTransaction",
        json!({"transactionId": tx, "meterStop": 4000, "timestamp": at(40), "reason": "PowerLoss"}),
    )
    .await;
    csms.settled_once_after_amendment(&id, &cdr).await;
    // a repeated Available ends nothing more
    call(&station, "StatusNotification", status_16(1, "Available")).await;
    csms.settled_once_after_amendment(&id, &cdr).await;
    station.shutdown().await;
    csms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v201_station_that_rebooted_and_reports_available_ends_its_session_once() {
    let csms = Csms::start("v201").await;
    let station = csms.station("STUCK201", ProtocolVersion::V201).await;
    start_201(&station).await;
    let id = "STUCK201:TX-1";
    // 2.0.1 without a boot: a transaction may be open on an Available
    // connector (TxStartPoint Authorized): nothing ends
    call(&station, "StatusNotification", status_201("Available")).await;
    assert_eq!(csms.session(id).await["status"], "Active");
    drop(station);
    let station = csms.station("STUCK201", ProtocolVersion::V201).await;
    assert_eq!(csms.session(id).await["status"], "Active");
    call(&station, "StatusNotification", status_201("Available")).await;
    // the CSMS asks GetTransactionStatus: nothing queued, not ongoing
    csms.completed(id).await;
    let cdr = csms.settled_once(id, "Reboot", 2000).await;
    assert_eq!(csms.session(id).await["closed_by_csms"]["by"], "recovery");
    // the station's Ended from its offline queue, late: absorbed
    call(
        &station,
        "TransactionEvent",
        event_201(
            "Ended",
            2,
            40,
            4000,
            json!({"offline": true, "triggerReason": "AbnormalCondition",
                "transactionInfo": {"transactionId": "TX-1", "stoppedReason": "PowerLoss"}}),
        ),
    )
    .await;
    csms.settled_once_after_amendment(id, &cdr).await;
    station.shutdown().await;
    csms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v201_session_spoken_of_after_the_boot_is_left_to_the_station() {
    let csms = Csms::start("v201-resumed").await;
    let station = csms.station("RESUME201", ProtocolVersion::V201).await;
    start_201(&station).await;
    drop(station);
    let station = csms.station("RESUME201", ProtocolVersion::V201).await;
    // the station resumed its transaction after the boot: it will end it itself
    call(
        &station,
        "TransactionEvent",
        event_201("Updated", 2, 30, 3500, json!({})),
    )
    .await;
    call(&station, "StatusNotification", status_201("Available")).await;
    assert_eq!(csms.session("RESUME201:TX-1").await["status"], "Active");
    station.shutdown().await;
    csms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_force_close_prices_settles_and_is_idempotent() {
    let csms = Csms::start("force").await;
    let station = csms.station("FORCE16", ProtocolVersion::V16).await;
    let tx = start_16(&station).await;
    let id = format!("FORCE16:{tx}");
    let path = format!("/api/sessions/{id}/close");
    for bad in [
        json!({}),
        json!({"reason": ""}),
        json!({"reason": "x".repeat(256)}),
        json!({"reason": "ok", "other": 1}),
    ] {
        let (s, b) = csms.api("POST", &path, Some(bad.clone())).await;
        assert_eq!(s, 400, "{bad}: {b}");
        assert!(b["error"].is_string(), "{b}");
    }
    let (s, b) = csms
        .api(
            "POST",
            "/api/sessions/NOPE:1/close",
            Some(json!({"reason": "x"})),
        )
        .await;
    assert_eq!(s, 404, "{b}");
    assert!(b["error"].is_string(), "{b}");
    assert_eq!(csms.session(&id).await["status"], "Active");
    let reason = "driver called: the station hangs";
    let (s, b) = csms
        .api("POST", &path, Some(json!({"reason": reason})))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "Completed", "{b}");
    let cdr = csms.settled_once(&id, "Other", 2000).await;
    let shown = csms.session(&id).await;
    assert_eq!(shown["closed_by_csms"]["by"], "operator", "{shown}");
    assert_eq!(shown["closed_by_csms"]["reason"], reason, "{shown}");
    // a second close: 409 with a reason, nothing billed again
    let (s, b) = csms
        .api("POST", &path, Some(json!({"reason": "again"})))
        .await;
    assert_eq!(s, 409, "{b}");
    assert!(b["error"].as_str().unwrap().contains("completed"), "{b}");
    // the station ends it late itself: never charged twice
    call(
        &station,
        "StopTransaction",
        json!({"transactionId": tx, "meterStop": 5000, "timestamp": at(50), "reason": "Local"}),
    )
    .await;
    csms.settled_once_after_amendment(&id, &cdr).await;
    station.shutdown().await;
    csms.stop().await;
}

impl Csms {
    /// After a late station end: the session shows the station's own end,
    /// but the CDR and the capture are the first ones, once.
    async fn settled_once_after_amendment(&self, id: &str, cdr: &Value) {
        let s = self.session(id).await;
        assert_eq!(s["status"], "Completed", "{s}");
        let (_, now) = self
            .api("GET", &format!("/api/sessions/{id}/cdr"), None)
            .await;
        assert_eq!(&now, cdr, "the CDR is the one settled");
        let (_, p) = self
            .api("GET", &format!("/api/sessions/{id}/payment"), None)
            .await;
        assert_eq!(p["status"], "Captured", "{p}");
        let total: Decimal = cdr["total_cost"]["incl_vat"].to_string().parse().unwrap();
        let (_, w) = self.api("GET", "/api/wallets/DRIVER", None).await;
        let balance: Decimal = w["balance"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            balance,
            WALLET.parse::<Decimal>().unwrap() - total.round_dp(2),
            "captured once: {w}"
        );
    }
}
