//! The drivers' app API (`/app/v1` on the public port), against the CSMS
//! in-process and stations on `ocpp-client`:
//!
//! - accounts: sign-up, sign-in, sign-out, wrong passwords, the per-address
//!   rate limit (429 with `Retry-After`), malformed bodies as JSON reasons;
//! - tokens: an app token and an RFID card per driver, a card another
//!   driver owns refused;
//! - stations with location, live availability and the tariff's price;
//! - start from the app on a 1.6, a 2.0.1 and a 2.1 station (the station
//!   receives RemoteStartTransaction / RequestStartTransaction with the
//!   driver's app token), live view and server-sent events with power,
//!   energy and running cost, stop (RemoteStop / RequestStop), history and
//!   receipt;
//! - the per-client-address limit: sign-ups, sign-ins and requests without
//!   a valid sign-in from one address get 429 with `Retry-After` once its
//!   budget is spent, and pass again after it; another address and a
//!   signed-in driver are not held back;
//! - isolation: another driver can neither read, follow, start with the
//!   token of, nor stop the session, and gets none of its events.

mod common;

use std::time::Duration;

use evproto_ocpp_client::{Client, ClientConfig, MemoryStore as Queue};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_rpc::{Ctx, Router};
use evproto_ocpp_types::{v16, v201, v21};
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

const KEY: &str = "app-api-test-key-0123456789";
/// 0.30 per kWh with 20 % VAT, 1.00 per session.
fn tariff() -> Value {
    json!({"currency": "EUR", "elements": [{"price_components": [
        {"type": "ENERGY", "price": 0.30, "vat": 20.0, "step_size": 1},
        {"type": "FLAT", "price": 1.00, "step_size": 1}]}]})
}

fn location() -> Value {
    json!({"location": {"name": "Depot", "address": "Stationsplein 1", "city": "Utrecht",
        "postal_code": "3511", "country": "NLD", "time_zone": "Europe/Amsterdam",
        "coordinates": {"latitude": "52.0894", "longitude": "5.1100"}}})
}

/// An HTTP request: (status, JSON body or the text, headers).
async fn http(
    port: u16,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut rb = reqwest::Client::new().request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("http://127.0.0.1:{port}{path}"),
    );
    if let Some(t) = bearer {
        rb = rb.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        rb = rb
            .header("Content-Type", "application/json")
            .body(b.to_string());
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

struct Csms {
    running: common::InProcess,
    dir: std::path::PathBuf,
}

impl Csms {
    async fn start(name: &str) -> Csms {
        Csms::start_on(name, None).await
    }

    /// On the database at `database_url` (SQLite in a temporary directory
    /// without).
    async fn start_on(name: &str, database_url: Option<String>) -> Csms {
        let dir = common::temp_dir(&format!("app-api-{name}"));
        let config = csms::config::Config {
            database_url,
            ..common::lab_config(&dir, KEY)
        };
        let running = common::InProcess::start(config).await;
        Csms { running, dir }
    }

    fn public(&self) -> u16 {
        self.running.started.http_port
    }

    async fn app(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (s, b, _) = http(self.public(), method, path, token, body).await;
        (s, b)
    }

    async fn operator(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        common::api(KEY, self.running.started.admin_port, method, path, body).await
    }

    /// Signs up and in: the bearer token.
    async fn driver(&self, email: &str) -> String {
        let creds = json!({"email": email, "password": "correct horse battery"});
        let (s, b) = self
            .app("POST", "/app/v1/signup", None, Some(creds.clone()))
            .await;
        assert_eq!(s, 201, "{b}");
        let (s, b) = self.app("POST", "/app/v1/signin", None, Some(creds)).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["token_type"], "Bearer");
        assert_eq!(b["expires_in"], 3600);
        b["access_token"].as_str().unwrap().to_owned()
    }

    /// A new app token of the driver.
    async fn app_token(&self, bearer: &str) -> String {
        let (s, b) = self
            .app(
                "POST",
                "/app/v1/tokens",
                Some(bearer),
                Some(json!({"kind": "app", "label": "phone"})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        assert_eq!(b["kind"], "app");
        b["id_token"].as_str().unwrap().to_owned()
    }

    async fn stop(self) {
        self.running.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the station was asked to do.
#[derive(Debug)]
enum Asked {
    Start { evse: i32, token: String },
    Stop { tx: String },
}

/// A 2.0.1 or 2.1 station's `router` (`$v`: `v201` or `v21`) that
/// accepts RequestStartTransaction (with a `Central` token) and
/// RequestStopTransaction and tells the test about them.
macro_rules! station_2x {
    ($router:expr, $v:ident) => {
        $router
            .on::<$v::action::RequestStartTransaction>(
                |ctx: Ctx<UnboundedSender<Asked>>, req: $v::RequestStartTransactionRequest| async move {
                    assert_eq!(serde_json::to_value(&req.id_token.r#type).unwrap(), "Central");
                    let _ = ctx.state.send(Asked::Start {
                        evse: req.evse_id.unwrap_or(0),
                        token: req.id_token.id_token.to_string(),
                    });
                    Ok(evproto_ocpp_types::from_str(r#"{"status":"Accepted"}"#).unwrap())
                },
            )
            .on::<$v::action::RequestStopTransaction>(
                |ctx: Ctx<UnboundedSender<Asked>>, req: $v::RequestStopTransactionRequest| async move {
                    let _ = ctx.state.send(Asked::Stop {
                        tx: req.transaction_id.to_string(),
                    });
                    Ok(evproto_ocpp_types::from_str(r#"{"status":"Accepted"}"#).unwrap())
                },
            )
    };
}

/// A station of `version` that accepts remote starts and stops and tells
/// the test about them.
async fn station(
    csms: &Csms,
    id: &str,
    version: ProtocolVersion,
) -> (Client, UnboundedReceiver<Asked>) {
    let (tx, rx) = unbounded_channel::<Asked>();
    let url = format!("ws://127.0.0.1:{}/ocpp/", csms.running.started.ocpp_port);
    let config = ClientConfig::new(url, id.to_owned(), version);
    let client =
        match version {
            ProtocolVersion::V21 => Client::start(
                config,
                station_2x!(Router::station_v21(), v21).with_state(tx),
                r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#,
                Queue::default(),
            ),
            ProtocolVersion::V16 => Client::start(
                config,
                Router::station_v16()
                    .on::<v16::action::RemoteStartTransaction>(
                        |ctx: Ctx<UnboundedSender<Asked>>,
                         req: v16::RemoteStartTransactionRequest| async move {
                            let _ = ctx.state.send(Asked::Start {
                                evse: req.connector_id.unwrap_or(0),
                                token: req.id_tag.to_string(),
                            });
                            Ok(evproto_ocpp_types::from_str(r#"{"status":"Accepted"}"#).unwrap())
                        },
                    )
                    .on::<v16::action::RemoteStopTransaction>(
                        |ctx: Ctx<UnboundedSender<Asked>>,
                         req: v16::RemoteStopTransactionRequest| async move {
                            let _ = ctx.state.send(Asked::Stop {
                                tx: req.transaction_id.to_string(),
                            });
                            Ok(evproto_ocpp_types::from_str(r#"{"status":"Accepted"}"#).unwrap())
                        },
                    )
                    .with_state(tx),
                r#"{"chargePointVendor":"V","chargePointModel":"M"}"#,
                Queue::default(),
            ),
            _ => Client::start(
                config,
                station_2x!(Router::station_v201(), v201).with_state(tx),
                r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#,
                Queue::default(),
            ),
        };
    client.wait_ready(Duration::from_secs(20)).await.unwrap();
    (client, rx)
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

fn at(min_ago: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(min_ago))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn asked(rx: &mut UnboundedReceiver<Asked>) -> Asked {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the station was asked in time")
        .expect("station alive")
}

/// Reads server-sent events of a stream for `wait`: their data.
async fn sse_events(mut resp: reqwest::Response, wait: Duration) -> Vec<Value> {
    let mut text = String::new();
    let _ = tokio::time::timeout(wait, async {
        while let Ok(Some(chunk)) = resp.chunk().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}

async fn sse(port: u16, bearer: &str) -> reqwest::Response {
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/app/v1/events"))
        .header("Authorization", format!("Bearer {bearer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r
}

/// The whole app flow on a station of `version`, with a second driver who
/// must see and do nothing of the first's.
async fn start_follow_stop(version: ProtocolVersion, database_url: Option<String>) {
    let v = match version {
        ProtocolVersion::V16 => "16",
        ProtocolVersion::V201 => "201",
        _ => "21",
    };
    let csms = Csms::start_on(&format!("flow-{v}"), database_url).await;
    let id = format!("APP-{v}");
    assert_eq!(
        csms.operator("PUT", "/api/tariffs/default", Some(tariff()))
            .await
            .0,
        201
    );
    let (s, b) = csms
        .operator("PUT", &format!("/api/stations/{id}"), Some(location()))
        .await;
    assert!(s == 200 || s == 201, "{s} {b}");
    let (station, mut rx) = station(&csms, &id, version).await;
    if version == ProtocolVersion::V16 {
        call(
            &station,
            "StatusNotification",
            json!({"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
        )
        .await;
    } else {
        call(&station, "StatusNotification", json!({"timestamp": at(0), "connectorStatus": "Available", "evseId": 1, "connectorId": 1})).await;
    }

    let ann = csms.driver("ann@example.com").await;
    let bob = csms.driver("bob@example.com").await;
    let ann_token = csms.app_token(&ann).await;
    let bob_token = csms.app_token(&bob).await;
    // ann's card is hers alone
    let (s, b) = csms
        .app(
            "POST",
            "/app/v1/tokens",
            Some(&ann),
            Some(json!({"kind": "rfid", "id_token": "04aabbcc"})),
        )
        .await;
    assert_eq!((s, b["id_token"].as_str()), (201, Some("04AABBCC")), "{b}");
    let (s, b) = csms
        .app(
            "POST",
            "/app/v1/tokens",
            Some(&bob),
            Some(json!({"kind": "rfid", "id_token": "04AABBCC"})),
        )
        .await;
    assert_eq!(s, 409, "{b}");
    // a wallet for ann's app token: the receipt shows what it paid
    let (s, b) = csms
        .operator(
            "PUT",
            &format!("/api/wallets/{ann_token}"),
            Some(json!({"balance": "50", "currency": "EUR"})),
        )
        .await;
    assert!(s == 200 || s == 201, "{s} {b}");

    // stations: location, live availability, price
    let (s, list) = csms
        .app("GET", "/app/v1/stations?available=true", Some(&ann), None)
        .await;
    assert_eq!(s, 200, "{list}");
    let st = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(st["connected"], true);
    assert_eq!(st["location"]["city"], "Utrecht");
    assert_eq!(st["connectors"][0]["available"], true, "{st}");
    assert_eq!(st["price"]["currency"], "EUR");
    assert_eq!(st["price"]["components"][0]["type"], "ENERGY");

    // bob's event stream, to show it gets nothing of ann's
    let bob_events = sse(csms.public(), &bob).await;
    let ann_events = sse(csms.public(), &ann).await;

    // bob cannot start with ann's token
    let (s, b) = csms
        .app(
            "POST",
            "/app/v1/sessions",
            Some(&bob),
            Some(json!({"station": id, "evse": 1, "id_token": ann_token})),
        )
        .await;
    assert_eq!(s, 403, "{b}");
    // ann starts from the app: the station is asked with her app token
    let (s, b) = csms
        .app(
            "POST",
            "/app/v1/sessions",
            Some(&ann),
            Some(json!({"station": id, "evse": 1})),
        )
        .await;
    assert_eq!((s, b["status"].as_str()), (202, Some("Accepted")), "{b}");
    let Asked::Start { evse, token } = asked(&mut rx).await else {
        panic!("a start was asked")
    };
    assert_eq!((evse, token.as_str()), (1, ann_token.as_str()));
    // the station starts the transaction with it
    let session_id = if version == ProtocolVersion::V16 {
        let r = call(
            &station,
            "StartTransaction",
            json!({"connectorId": 1, "idTag": token, "meterStart": 1000, "timestamp": at(30)}),
        )
        .await;
        assert_eq!(r["idTagInfo"]["status"], "Accepted", "{r}");
        format!("{id}:{}", r["transactionId"])
    } else {
        let r = call(&station, "TransactionEvent", json!({"eventType": "Started", "timestamp": at(30), "triggerReason": "RemoteStart",
            "seqNo": 0, "transactionInfo": {"transactionId": "APPTX1", "remoteStartId": 1}, "evse": {"id": 1, "connectorId": 1},
            "idToken": {"idToken": token, "type": "Central"},
            "meterValue": [{"timestamp": at(30), "sampledValue": [{"value": 1000, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}}]}]})).await;
        assert_eq!(r["idTokenInfo"]["status"], "Accepted", "{r}");
        format!("{id}:APPTX1")
    };
    // meter values: power and energy
    if version == ProtocolVersion::V16 {
        let tx: i64 = session_id.rsplit(':').next().unwrap().parse().unwrap();
        call(&station, "MeterValues", json!({"connectorId": 1, "transactionId": tx, "meterValue": [{"timestamp": at(10), "sampledValue": [
            {"value": "6000", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
            {"value": "11", "measurand": "Power.Active.Import", "unit": "kW"}]}]})).await;
    } else {
        call(&station, "TransactionEvent", json!({"eventType": "Updated", "timestamp": at(10), "triggerReason": "MeterValuePeriodic",
            "seqNo": 1, "transactionInfo": {"transactionId": "APPTX1"},
            "meterValue": [{"timestamp": at(10), "sampledValue": [
                {"value": 6000, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}},
                {"value": 11000, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}}]}]})).await;
    }
    let path = format!("/app/v1/sessions/{session_id}");
    let (s, live) = csms.app("GET", &path, Some(&ann), None).await;
    assert_eq!(s, 200, "{live}");
    assert_eq!(live["status"], "Active");
    assert_eq!(live["energy_wh"], "5000", "{live}");
    assert_eq!(live["power_w"], "11000", "{live}");
    // 5 kWh × 0.30 × 1.2 + 1.00 = 2.80 so far
    assert_eq!(live["cost"]["amount"], "2.80", "{live}");
    assert_eq!(live["cost"]["currency"], "EUR");

    // isolation: bob can neither read, nor stop, nor list ann's session
    for p in [path.clone(), format!("{path}/receipt")] {
        let (s, b) = csms.app("GET", &p, Some(&bob), None).await;
        assert_eq!(s, 404, "{p}: {b}");
    }
    let (s, b) = csms
        .app("POST", &format!("{path}/stop"), Some(&bob), None)
        .await;
    assert_eq!(s, 404, "{b}");
    let (s, b) = csms.app("GET", "/app/v1/sessions", Some(&bob), None).await;
    assert_eq!((s, b.as_array().map(Vec::len)), (200, Some(0)), "{b}");
    assert!(rx.try_recv().is_err(), "bob's stop reached the station");

    // ann stops from the app
    let (s, b) = csms
        .app("POST", &format!("{path}/stop"), Some(&ann), None)
        .await;
    assert_eq!(
        (s, b["session"].as_str()),
        (202, Some(session_id.as_str())),
        "{b}"
    );
    let Asked::Stop { tx } = asked(&mut rx).await else {
        panic!("a stop was asked")
    };
    assert_eq!(tx, session_id.rsplit(':').next().unwrap());
    if version == ProtocolVersion::V16 {
        call(&station, "StopTransaction", json!({"transactionId": tx.parse::<i64>().unwrap(), "meterStop": 8000, "timestamp": at(0), "reason": "Remote"})).await;
    } else {
        call(&station, "TransactionEvent", json!({"eventType": "Ended", "timestamp": at(0), "triggerReason": "RemoteStop",
            "seqNo": 2, "transactionInfo": {"transactionId": tx, "stoppedReason": "Remote"},
            "meterValue": [{"timestamp": at(0), "sampledValue": [{"value": 8000, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}}]}]})).await;
    }
    // history and receipt: 7 kWh × 0.36 + 1.00 = 3.52, paid from the wallet
    let (s, h) = csms.app("GET", "/app/v1/sessions", Some(&ann), None).await;
    assert_eq!(s, 200);
    assert_eq!(h.as_array().unwrap().len(), 1, "{h}");
    assert_eq!(
        (h[0]["id"].as_str(), h[0]["status"].as_str()),
        (Some(session_id.as_str()), Some("Completed"))
    );
    let (s, r) = csms
        .app("GET", &format!("{path}/receipt"), Some(&ann), None)
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (r["total_incl_vat"].as_str(), r["currency"].as_str()),
        (Some("3.52"), Some("EUR")),
        "{r}"
    );
    assert_eq!(r["payment"]["provider"], "wallet", "{r}");
    assert_eq!(r["payment"]["charged"], "3.52", "{r}");
    let (s, b) = csms
        .app("POST", &format!("{path}/stop"), Some(&ann), None)
        .await;
    assert_eq!(s, 409, "{b}");

    // the event streams: ann's has her session's updates, bob's none
    let ann_seen = sse_events(ann_events, Duration::from_millis(500)).await;
    assert!(
        ann_seen
            .iter()
            .any(|e| e["id"] == session_id.as_str() && e["status"] == "Completed"),
        "{ann_seen:?}"
    );
    assert!(ann_seen.iter().all(|e| e["id"] == session_id.as_str()));
    let bob_seen = sse_events(bob_events, Duration::from_millis(200)).await;
    assert!(bob_seen.is_empty(), "bob saw {bob_seen:?}");
    // bob's own token is untouched and usable
    let (_, me) = csms.app("GET", "/app/v1/me", Some(&bob), None).await;
    assert_eq!(me["tokens"][0]["id_token"], bob_token.as_str());

    station.shutdown().await;
    csms.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_start_follow_stop_v16() {
    start_follow_stop(ProtocolVersion::V16, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_start_follow_stop_v201() {
    start_follow_stop(ProtocolVersion::V201, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_start_follow_stop_v21() {
    start_follow_stop(ProtocolVersion::V21, None).await;
}

/// The drivers' tables and queries on PostgreSQL too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_start_follow_stop_v201_on_postgres() {
    let admin = std::env::var("CSMS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("csms_app_api_{}", std::process::id());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&admin)
        .await
        .expect("PostgreSQL reachable (CSMS_TEST_POSTGRES)");
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(&sql).execute(&pool).await.unwrap();
    }
    let (base, _) = admin.rsplit_once('/').expect("a database in the URL");
    start_follow_stop(ProtocolVersion::V201, Some(format!("{base}/{name}"))).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&pool)
        .await
        .unwrap();
}

/// Accounts: sign-up rules, sign-in, sign-out, limits and clear errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_and_their_limits() {
    let csms = Csms::start("accounts").await;
    let creds = |e: &str, p: &str| Some(json!({"email": e, "password": p}));
    // bad input: a JSON reason, never a crash
    for (body, want) in [
        (creds("not-an-address", "correct horse battery"), 400),
        (creds("cy@example.com", "short"), 400),
        (Some(json!({"email": "cy@example.com"})), 400),
        (Some(json!("text")), 400),
    ] {
        let (s, b) = csms.app("POST", "/app/v1/signup", None, body).await;
        assert_eq!((s, b["error"].is_string()), (want, true), "{b}");
    }
    let token = csms.driver("Cy@Example.com").await;
    // the address is the account's, whatever its case
    let (s, b) = csms
        .app(
            "POST",
            "/app/v1/signup",
            None,
            creds("cy@example.COM", "another good pass"),
        )
        .await;
    assert_eq!(s, 409, "{b}");
    // a wrong password and an unknown address answer alike
    let (s1, b1) = csms
        .app(
            "POST",
            "/app/v1/signin",
            None,
            creds("cy@example.com", "wrong password!"),
        )
        .await;
    let (s2, b2) = csms
        .app(
            "POST",
            "/app/v1/signin",
            None,
            creds("nobody@example.com", "wrong password!"),
        )
        .await;
    assert_eq!((s1, s2, &b1), (401, 401, &b2));
    // no or a bad bearer token
    for t in [None, Some("abc"), Some(&*"0".repeat(64))] {
        let (s, b) = csms.app("GET", "/app/v1/me", t, None).await;
        assert_eq!((s, b["error"].is_string()), (401, true), "{b}");
    }
    let (s, me) = csms.app("GET", "/app/v1/me", Some(&token), None).await;
    assert_eq!(
        (s, me["email"].as_str(), me["payment"].as_str()),
        (200, Some("cy@example.com"), Some("wallet"))
    );
    assert_eq!(me["card_payments"], false);
    // no card gateway here: saving a card or paying by card is refused
    // clearly (a state of this CSMS, not an outage: no 5xx)
    let (s, b) = csms
        .app(
            "POST",
            "/app/v1/me/card",
            Some(&token),
            Some(json!({"payment_method": "pm_x"})),
        )
        .await;
    assert_eq!((s, b["error"].is_string()), (409, true), "{b}");
    let (s, b) = csms
        .app(
            "PUT",
            "/app/v1/me/payment",
            Some(&token),
            Some(json!({"method": "card"})),
        )
        .await;
    assert_eq!(s, 409, "{b}");
    // unknown fields and bad queries
    let (s, b) = csms
        .app("GET", "/app/v1/stations?limit=0", Some(&token), None)
        .await;
    assert_eq!((s, b["error"].is_string()), (400, true), "{b}");
    let (s, b) = csms
        .app("GET", "/app/v1/sessions?nope=1", Some(&token), None)
        .await;
    assert_eq!((s, b["error"].is_string()), (400, true), "{b}");
    let (s, b) = csms
        .app(
            "POST",
            "/app/v1/tokens",
            Some(&token),
            Some(json!({"kind": "rfid", "id_token": "x y"})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = csms
        .app(
            "POST",
            "/app/v1/sessions",
            Some(&token),
            Some(json!({"station": "NOPE", "evse": 1})),
        )
        .await;
    assert_eq!(s, 409, "no app token yet: {b}");
    csms.app_token(&token).await;
    let (s, b) = csms
        .app(
            "POST",
            "/app/v1/sessions",
            Some(&token),
            Some(json!({"station": "NOPE", "evse": 1})),
        )
        .await;
    assert_eq!(s, 404, "{b}");
    let (s, b) = csms
        .app("GET", "/app/v1/sessions/NOPE:1", Some(&token), None)
        .await;
    assert_eq!(s, 404, "{b}");
    // sign-out revokes the token
    let (s, _) = csms
        .app("POST", "/app/v1/signout", Some(&token), None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = csms.app("GET", "/app/v1/me", Some(&token), None).await;
    assert_eq!(s, 401);
    // guessing one address's password: limited, with Retry-After
    let mut limited = None;
    for _ in 0..15 {
        let (s, b, h) = http(
            csms.public(),
            "POST",
            "/app/v1/signin",
            None,
            creds("cy@example.com", "guess guess guess"),
        )
        .await;
        if s == 429 {
            limited = Some((b, h));
            break;
        }
        assert_eq!(s, 401);
    }
    let (b, h) = limited.expect("sign-in guesses are limited");
    assert!(b["error"].is_string());
    assert!(h.get("retry-after").is_some());
    // the OpenAPI document names every route
    let (s, doc) = csms.app("GET", "/app/v1/openapi.json", None, None).await;
    assert_eq!(s, 200);
    for p in [
        "/app/v1/signup",
        "/app/v1/signin",
        "/app/v1/sessions",
        "/app/v1/sessions/{id}/stop",
        "/app/v1/sessions/{id}/receipt",
        "/app/v1/events",
        "/app/v1/stations",
        "/app/v1/tokens",
        "/app/v1/me/card",
        "/webhooks/stripe",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} missing");
    }
    // the operator API is not on the public port
    let (s, _) = csms.app("GET", "/api/stations", Some(KEY), None).await;
    assert_eq!(s, 404);
    csms.stop().await;
}

/// The per-client-address limit (here 3 at once, then one per 10 s):
/// sign-up, sign-in and requests without a valid sign-in take from it;
/// once spent they get 429 with a JSON reason and `Retry-After`, and pass
/// again after it. A signed-in driver on the same address and another
/// address are not held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_address_is_limited_and_recovers() {
    let dir = common::temp_dir("app-api-per-address");
    let mut config = common::lab_config(&dir, KEY);
    config.app_rates.client = csms::config::Rate {
        burst: 3,
        per_minute: 6,
    };
    let csms = Csms {
        running: common::InProcess::start(config).await,
        dir,
    };
    // a sign-up and a sign-in: two of the three
    let ann = csms.driver("ann@example.com").await;
    // requests without a sign-in: 401 while the budget lasts, then 429
    let mut limited = None;
    for i in 0..6 {
        let token = (i % 2 == 1).then(|| "ab".repeat(32));
        let (s, b, h) = http(csms.public(), "GET", "/app/v1/me", token.as_deref(), None).await;
        if s == 429 {
            limited = Some((b, h));
            break;
        }
        assert_eq!((s, b["error"].is_string()), (401, true), "{b}");
    }
    let (b, h) = limited.expect("requests without a sign-in are limited per address");
    assert!(b["error"].is_string(), "{b}");
    let wait: u64 = h
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=10).contains(&wait), "{wait}");
    // sign-in and sign-up from the address wait too
    let creds = json!({"email": "ann@example.com", "password": "correct horse battery"});
    let (s, b) = csms
        .app("POST", "/app/v1/signin", None, Some(creds.clone()))
        .await;
    assert_eq!(s, 429, "{b}");
    let other = json!({"email": "eve@example.com", "password": "correct horse battery"});
    let (s, _) = csms.app("POST", "/app/v1/signup", None, Some(other)).await;
    assert_eq!(s, 429);
    // the signed-in driver on the same address is not held back
    let (s, me) = csms.app("GET", "/app/v1/me", Some(&ann), None).await;
    assert_eq!((s, me["email"].as_str()), (200, Some("ann@example.com")));
    // another address has its own budget
    let _ = rustls::crypto::ring::default_provider().install_default();
    let from_other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{}/app/v1/me", csms.public()))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(from_other, 401, "127.0.0.2 is not 127.0.0.1");
    // after Retry-After the address has budget again
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let (s, b) = csms.app("POST", "/app/v1/signin", None, Some(creds)).await;
    assert_eq!(s, 200, "recovered: {b}");
    csms.stop().await;
}

/// Claiming a card shows none of its earlier sessions: only those the CSMS
/// received after the claim are the driver's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_card_brings_no_earlier_sessions() {
    let csms = Csms::start("claim").await;
    let (s, b) = csms
        .operator("POST", "/api/tokens", Some(json!({"id_token": "OLDCARD1"})))
        .await;
    assert_eq!(s, 201, "{b}");
    let (station, _rx) = station(&csms, "CLAIM16", ProtocolVersion::V16).await;
    let session = |meter: i64| {
        let station = &station;
        async move {
            let r = call(station, "StartTransaction", json!({"connectorId": 1, "idTag": "OLDCARD1", "meterStart": meter, "timestamp": at(5)})).await;
            let tx = r["transactionId"].as_i64().unwrap();
            call(
                station,
                "StopTransaction",
                json!({"transactionId": tx, "meterStop": meter + 1000, "timestamp": at(1)}),
            )
            .await;
            format!("CLAIM16:{tx}")
        }
    };
    let before = session(0).await;
    let dan = csms.driver("dan@example.com").await;
    let (s, b) = csms
        .app(
            "POST",
            "/app/v1/tokens",
            Some(&dan),
            Some(json!({"kind": "rfid", "id_token": "OLDCARD1"})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = csms
        .app(
            "GET",
            &format!("/app/v1/sessions/{before}"),
            Some(&dan),
            None,
        )
        .await;
    assert_eq!(s, 404, "a session from before the claim: {b}");
    let after = session(5000).await;
    let (s, h) = csms.app("GET", "/app/v1/sessions", Some(&dan), None).await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, vec![after.as_str()]);
    station.shutdown().await;
    csms.stop().await;
}
