//! Issue 16, roaming partners: what one OCPI partner can reach of another's
//! and of local drivers'. The reference CSMS as CPO, two in-process eMSPs
//! built on `ocpi` (A = DE/EMS, B = FR/BMS) registered from the operator
//! API, and an OCPP 1.6 station that reports every call the CSMS makes.
//!
//! - item 1: commands act only on the caller's own sessions (named by
//!   unguessable public ids), reservations and connectors;
//! - item 2: a command's token is stored under the caller's identity only;
//! - item 3: tokens are told apart by owner and uid; local drivers'
//!   sessions and CDRs never reach a partner; registration refuses
//!   identities in use;
//! - item 4: store failures reach the partner as OCPI errors, a failed
//!   registration leaves no usable token B;
//! - item 5 (SSRF): by default partner URLs on loopback, private or
//!   link-local addresses or over plain http are refused at registration,
//!   both ways; a command's `response_url` must be on the partner's host.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use evproto_ocpi::auth::TokenEncoding;
use evproto_ocpi::client::{Client, ClientError, Peer};
use evproto_ocpi::credentials::{Own, UrlPolicy};
use evproto_ocpi::server::{Config as OcpiConfig, MemoryStore, NoHandler, Role, Server};
use evproto_ocpp_client::{Client as Station, ClientConfig, MemoryStore as Queue};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_rpc::{Ctx, Router};
use evproto_ocpp_types::v16;
use serde_json::{json, Value};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

const KEY: &str = "roaming-security-api-key-01";

async fn api(port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    common::api(KEY, port, method, path, body).await
}

/// An OCPI request with a raw token: (HTTP status, body).
async fn raw(method: &str, url: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
    let auth = evproto_ocpi::auth::encode_token(token, TokenEncoding::Base64);
    let mut rb = reqwest::Client::new()
        .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url)
        .header("Authorization", auth);
    if let Some(b) = body {
        rb = rb
            .header("Content-Type", "application/json")
            .body(b.to_string());
    }
    let r = rb.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

struct Csms {
    /// The admin port (operator API).
    http: u16,
    /// The public port (OCPI).
    public: u16,
    ocpp: u16,
    dir: std::path::PathBuf,
    running: common::InProcess,
}

/// The CSMS for partners on loopback (the lab URL policy).
async fn csms(name: &str) -> Csms {
    csms_with(name, true).await
}

/// The CSMS; `lab`: partner URLs may be plain http on loopback.
async fn csms_with(name: &str, lab: bool) -> Csms {
    let dir = common::temp_dir(name);
    let config = csms::config::Config {
        call_timeout: Duration::from_secs(10),
        ocpi_allow_private_urls: lab,
        ..common::lab_config(&dir, KEY)
    };
    let running = common::InProcess::start(config).await;
    let started = running.started.clone();
    Csms {
        http: started.admin_port,
        public: started.http_port,
        ocpp: started.ocpp_port,
        dir,
        running,
    }
}

impl Csms {
    async fn shutdown(self) {
        self.running.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An eMSP on `ocpi` and its handle on the CSMS.
struct Emsp {
    base: String,
    store: Arc<MemoryStore>,
    server: Server,
}

async fn emsp(cc: &str, pid: &str) -> Emsp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/ocpi", listener.local_addr().unwrap());
    let mut own = Own::with_role(&format!("{base}/versions"), cc, pid, "EMSP", "test eMSP");
    own.policy = UrlPolicy::lab();
    let store = Arc::new(MemoryStore::new());
    let server = Server::new(
        OcpiConfig {
            role: Role::Emsp,
            base_url: base.clone(),
            own,
            max_limit: 50,
            token_encoding: TokenEncoding::Lenient,
            trailing_slash: false,
            storage_version: None,
        },
        store.clone(),
        Arc::new(NoHandler),
        Client::new(UrlPolicy::lab()).unwrap(),
    );
    let app = axum::Router::new().nest("/ocpi", server.router());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Emsp {
        base,
        store,
        server,
    }
}

impl Emsp {
    /// Registered from the operator API (the CSMS is the Sender): the
    /// eMSP's handle on the CSMS, or the API's answer.
    async fn register(&self, http: u16, cc: &str, pid: &str) -> Result<Peer, (u16, Value)> {
        let token_a = self.server.issue_token_a("csms").await.unwrap();
        let (s, reg) = api(
            http,
            "POST",
            "/api/ocpi/partners",
            Some(json!({"versions_url": format!("{}/versions", self.base), "token": token_a})),
        )
        .await;
        if s != 201 {
            return Err((s, reg));
        }
        let party = self
            .store
            .parties()
            .into_iter()
            .find(|p| p.id == "csms" && p.registration.is_some())
            .unwrap();
        Ok(Client::new(UrlPolicy::lab())
            .unwrap()
            .peer(party.registration.unwrap())
            .from_party(cc, pid))
    }

    fn url(&self, what: &str) -> String {
        format!("{}/2.3.0/commands/{what}", self.base)
    }
}

fn token(cc: &str, pid: &str, uid: &str) -> Value {
    json!({"country_code": cc, "party_id": pid, "uid": uid, "type": "RFID", "contract_id": format!("{cc}-{pid}-{uid}"),
        "issuer": pid, "valid": true, "whitelist": "ALLOWED", "last_updated": "2024-01-01T00:00:00Z"})
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

/// Waits for an object of `module` that `f` picks.
async fn wait_object(store: &MemoryStore, module: &str, f: impl Fn(&Value) -> bool) -> Value {
    let t = Instant::now();
    loop {
        if let Some(o) = objects(store, module).await.into_iter().find(|o| f(o)) {
            return o;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "timed out waiting for {module}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `{"status": "Accepted"}` as any response type.
fn accepted<T: serde::de::DeserializeOwned>() -> T {
    evproto_ocpp_types::from_str(r#"{"status":"Accepted"}"#).unwrap()
}

/// A 1.6 station accepting every remote call, reporting each as text.
fn station(ocpp: u16, tx: UnboundedSender<String>) -> Station {
    type S = UnboundedSender<String>;
    let routes = Router::station_v16()
        .on::<v16::action::RemoteStartTransaction>(
            move |ctx: Ctx<S>, req: v16::RemoteStartTransactionRequest| async move {
                let _ = ctx.state.send(format!("start {}", req.id_tag));
                Ok(accepted())
            },
        )
        .on::<v16::action::RemoteStopTransaction>(
            move |ctx: Ctx<S>, req: v16::RemoteStopTransactionRequest| async move {
                let _ = ctx.state.send(format!("stop {}", req.transaction_id));
                Ok(accepted())
            },
        )
        .on::<v16::action::UnlockConnector>(
            |ctx: Ctx<S>, req: v16::UnlockConnectorRequest| async move {
                let _ = ctx.state.send(format!("unlock {}", req.connector_id));
                Ok(evproto_ocpp_types::from_str(r#"{"status":"Unlocked"}"#).unwrap())
            },
        )
        .on::<v16::action::ReserveNow>(move |ctx: Ctx<S>, req: v16::ReserveNowRequest| async move {
            let _ = ctx.state.send(format!("reserve {}", req.reservation_id));
            Ok(accepted())
        })
        .on::<v16::action::CancelReservation>(
            move |ctx: Ctx<S>, req: v16::CancelReservationRequest| async move {
                let _ = ctx.state.send(format!("cancel {}", req.reservation_id));
                Ok(accepted())
            },
        )
        .on::<v16::action::SetChargingProfile>(
            |_: Ctx<S>, _: v16::SetChargingProfileRequest| async move {
                Ok(evproto_ocpp_types::from_str(r#"{"status":"Accepted"}"#).unwrap())
            },
        )
        .with_state(tx);
    Station::start(
        ClientConfig::new(
            format!("ws://127.0.0.1:{ocpp}/ocpp/"),
            "RS1",
            ProtocolVersion::V16,
        ),
        routes,
        r#"{"chargePointVendor":"V","chargePointModel":"M"}"#,
        Queue::default(),
    )
}

async fn call(station: &Station, action: &'static str, payload: Value) -> Value {
    let peer = station.peer().unwrap();
    serde_json::from_str(&peer.call_raw(action, payload.to_string()).await.unwrap()).unwrap()
}

/// The next call the station received.
async fn next(rx: &mut UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the station got no call")
        .unwrap()
}

/// No call reached the station (the commands before were refused).
async fn none(rx: &mut UnboundedReceiver<String>) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rx.try_recv().ok(),
        None,
        "a refused command reached the station"
    );
}

async fn command(peer: &Peer, name: &str, body: Value) -> String {
    let r = peer.post("commands", &[name], &body).await.unwrap();
    r.data["result"].as_str().unwrap().to_string()
}

fn at(min_ago: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(min_ago))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The roaming tokens the CSMS holds, by key.
async fn roaming_tokens(http: u16) -> std::collections::BTreeMap<String, Value> {
    let (_, tokens) = api(http, "GET", "/api/ocpi/tokens?limit=1000", None).await;
    tokens["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a page of tokens: {tokens}"))
        .iter()
        .map(|t| (t["key"].as_str().unwrap().to_string(), t["token"].clone()))
        .collect()
}

/// The CSMS with the `default` tariff, eMSPs A (DE/EMS, token AT1) and B
/// (FR/BMS) registered, a local driver's card LOC1 and station RS1 with
/// connectors 1 and 2 available.
struct World {
    c: Csms,
    http: u16,
    a: Emsp,
    b: Emsp,
    pa: Peer,
    pb: Peer,
    st: Station,
    rx: UnboundedReceiver<String>,
}

async fn world(name: &str) -> World {
    let c = csms(name).await;
    let http = c.http;
    let tariff = json!({"currency": "EUR", "elements": [{"price_components": [
        {"type": "ENERGY", "price": 0.30, "step_size": 1}]}]});
    assert_eq!(
        api(http, "PUT", "/api/tariffs/default", Some(tariff))
            .await
            .0,
        201
    );
    let (a, b) = (emsp("DE", "EMS").await, emsp("FR", "BMS").await);
    let pa = a.register(http, "DE", "EMS").await.unwrap();
    let pb = b.register(http, "FR", "BMS").await.unwrap();
    pa.put("tokens", &["DE", "EMS", "AT1"], &token("DE", "EMS", "AT1"))
        .await
        .unwrap();
    assert_eq!(
        api(
            http,
            "POST",
            "/api/tokens",
            Some(json!({"id_token": "LOC1"}))
        )
        .await
        .0,
        201
    );
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let st = station(c.ocpp, tx);
    st.wait_ready(Duration::from_secs(20)).await.unwrap();
    for connector in [1, 2] {
        call(
            &st,
            "StatusNotification",
            json!({"connectorId": connector, "errorCode": "NoError", "status": "Available"}),
        )
        .await;
    }
    World {
        c,
        http,
        a,
        b,
        pa,
        pb,
        st,
        rx,
    }
}

impl World {
    /// StartTransaction on `connector` with `tag`: the transaction id.
    async fn start(&self, connector: i64, tag: &str) -> i64 {
        let s = call(
            &self.st,
            "StartTransaction",
            json!({"connectorId": connector, "idTag": tag, "meterStart": 1000, "timestamp": at(20)}),
        )
        .await;
        assert_eq!(s["idTagInfo"]["status"], "Accepted", "{tag}");
        s["transactionId"].as_i64().unwrap()
    }

    async fn stop(&self, tx: i64) {
        call(
            &self.st,
            "StopTransaction",
            json!({"transactionId": tx, "meterStop": 6000, "timestamp": at(0), "reason": "Local"}),
        )
        .await;
    }

    async fn shutdown(self) {
        self.st.shutdown().await;
        self.c.shutdown().await;
    }
}

fn start_cmd(e: &Emsp, t: Value) -> Value {
    json!({"response_url": e.url("START_SESSION/x"), "token": t, "location_id": "RS1", "evse_uid": "RS1-2"})
}

/// Item 1: sessions are known to partners by unguessable public ids; a
/// partner stops, unlocks, cancels only what is its own; everything else
/// is answered as unknown and reaches no station.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_act_only_on_the_callers_own() {
    let mut w = world("roaming-cmd").await;
    let (a, b, pa, pb) = (&w.a, &w.b, &w.pa, &w.pb);
    let tx1 = w.start(1, "AT1").await;
    let tx2 = w.start(2, "LOC1").await;
    let pushed = wait_object(&a.store, "sessions", |s| s["cdr_token"]["uid"] == "AT1").await;
    let p1 = pushed["id"].as_str().unwrap().to_string();
    assert!(
        p1.len() == 32 && p1.bytes().all(|b| b.is_ascii_hexdigit()),
        "{p1}"
    );
    let stop =
        |e: &Emsp, sid: &str| json!({"response_url": e.url("STOP_SESSION/x"), "session_id": sid});
    // B cannot stop A's session, by its public id or by our internal id;
    // A cannot stop the local driver's, nor its own by our internal id.
    for (peer, e, sid) in [
        (pb, b, p1.clone()),
        (pb, b, format!("RS1:{tx1}")),
        (pa, a, format!("RS1:{tx2}")),
        (pa, a, format!("RS1:{tx1}")),
    ] {
        assert_eq!(
            command(peer, "STOP_SESSION", stop(e, &sid)).await,
            "UNKNOWN_SESSION",
            "{sid}"
        );
    }
    none(&mut w.rx).await;
    assert_eq!(command(pa, "STOP_SESSION", stop(a, &p1)).await, "ACCEPTED");
    assert_eq!(next(&mut w.rx).await, format!("stop {tx1}"));

    // Unlock only where the caller's own token has the active session.
    let unlock = |e: &Emsp, evse: &str| json!({"response_url": e.url("UNLOCK_CONNECTOR/x"), "location_id": "RS1", "evse_uid": evse, "connector_id": "1"});
    assert_eq!(
        command(pb, "UNLOCK_CONNECTOR", unlock(b, "RS1-1")).await,
        "REJECTED"
    );
    assert_eq!(
        command(pa, "UNLOCK_CONNECTOR", unlock(a, "RS1-2")).await,
        "REJECTED",
        "the local driver's connector"
    );
    none(&mut w.rx).await;
    assert_eq!(
        command(pa, "UNLOCK_CONNECTOR", unlock(a, "RS1-1")).await,
        "ACCEPTED"
    );
    assert_eq!(next(&mut w.rx).await, "unlock 1");

    // Reservations: B can neither cancel A's R1 nor share its number.
    let reserve = |e: &Emsp, t: Value| {
        json!({"response_url": e.url("RESERVE_NOW/x"), "token": t, "expiry_date": "2030-01-01T00:00:00Z",
            "reservation_id": "R1", "location_id": "RS1", "evse_uid": "RS1-1"})
    };
    let cancel =
        |e: &Emsp| json!({"response_url": e.url("CANCEL_RESERVATION/x"), "reservation_id": "R1"});
    assert_eq!(
        command(pa, "RESERVE_NOW", reserve(a, token("DE", "EMS", "AT1"))).await,
        "ACCEPTED"
    );
    let ra = next(&mut w.rx).await;
    assert_eq!(
        command(pb, "CANCEL_RESERVATION", cancel(b)).await,
        "REJECTED"
    );
    none(&mut w.rx).await;
    assert_eq!(
        command(pb, "RESERVE_NOW", reserve(b, token("FR", "BMS", "BT1"))).await,
        "ACCEPTED"
    );
    let rb = next(&mut w.rx).await;
    assert_ne!(ra, rb, "each partner's R1 is its own reservation");
    assert_eq!(
        command(pa, "CANCEL_RESERVATION", cancel(a)).await,
        "ACCEPTED"
    );
    assert_eq!(next(&mut w.rx).await, ra.replace("reserve", "cancel"));

    // The CDR has its own random id and names the session by its public id.
    w.stop(tx1).await;
    let cdr = wait_object(&a.store, "cdrs", |_| true).await;
    assert_eq!(cdr["session_id"], json!(p1));
    let cdr_id = cdr["id"].as_str().unwrap();
    assert!(cdr_id.len() == 32 && cdr_id != p1, "{cdr}");
    w.shutdown().await;
}

/// Item 2: the token of B's START_SESSION naming A's identity is stored
/// as B's; A's token stays as A pushed it; a local driver's card is never
/// taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_tokens_are_the_callers_own() {
    let mut w = world("roaming-tok").await;
    let (a, b, pa, pb, http) = (&w.a, &w.b, &w.pa, &w.pb, w.http);
    let mut forged = token("DE", "EMS", "AT1");
    forged["valid"] = json!(false);
    assert_eq!(
        command(pb, "START_SESSION", start_cmd(b, forged)).await,
        "ACCEPTED"
    );
    assert_eq!(next(&mut w.rx).await, "start AT1");
    let tokens = roaming_tokens(http).await;
    assert_eq!(tokens["DE/EMS/AT1"]["valid"], true, "{tokens:?}");
    assert_eq!(tokens["FR/BMS/AT1"]["country_code"], "FR", "{tokens:?}");
    assert_eq!(tokens["FR/BMS/AT1"]["valid"], false, "{tokens:?}");
    for (peer, e, t) in [
        (pb, b, token("FR", "BMS", "LOC1")),
        (pa, a, token("DE", "EMS", "LOC1")),
    ] {
        assert_eq!(
            command(peer, "START_SESSION", start_cmd(e, t)).await,
            "REJECTED",
            "a local driver's card"
        );
    }
    none(&mut w.rx).await;
    let tokens = roaming_tokens(http).await;
    assert!(!tokens.keys().any(|k| k.ends_with("/LOC1")), "{tokens:?}");
    w.shutdown().await;
}

/// Item 3: tokens are told apart by owner and uid. B pushing a local
/// driver's uid gets none of that driver's sessions or CDRs (the CDR names
/// our token); a uid two partners hold is the one's that started with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_by_owner_and_uid() {
    let mut w = world("roaming-uid").await;
    let (a, b, pb, http) = (&w.a, &w.b, &w.pb, w.http);
    pb.put(
        "tokens",
        &["FR", "BMS", "LOC1"],
        &token("FR", "BMS", "LOC1"),
    )
    .await
    .unwrap();
    let local = w.start(2, "LOC1").await;
    let tx1 = w.start(1, "AT1").await;
    w.stop(local).await;
    let (s, local_cdr) = api(http, "GET", &format!("/api/sessions/RS1:{local}/cdr"), None).await;
    assert_eq!(s, 200, "{local_cdr}");
    assert_eq!(local_cdr["cdr_token"]["party_id"], "EVP", "{local_cdr}");
    // A's session ends and is priced: its CDR reaches A (a sync point for
    // the pushes before it), nothing reaches B.
    w.stop(tx1).await;
    wait_object(&a.store, "cdrs", |_| true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for module in ["sessions", "cdrs"] {
        assert_eq!(
            objects(&b.store, module).await,
            Vec::<Value>::new(),
            "{module} reached B"
        );
        assert!(
            objects(&a.store, module)
                .await
                .iter()
                .all(|o| o["cdr_token"]["uid"] == "AT1"),
            "{module}: only A's own reached A"
        );
    }
    // AT1 held by A and B: the partner that last started with it at RS1
    // owns the next session on it there, and only it hears of it.
    assert_eq!(
        command(pb, "START_SESSION", start_cmd(b, token("FR", "BMS", "AT1"))).await,
        "ACCEPTED"
    );
    assert_eq!(next(&mut w.rx).await, "start AT1");
    w.start(2, "AT1").await;
    let to_b = wait_object(&b.store, "sessions", |_| true).await;
    assert_eq!(to_b["cdr_token"]["country_code"], "FR");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        objects(&a.store, "sessions").await.len(),
        1,
        "A got only its own session"
    );
    w.shutdown().await;
}

/// Item 3: registration refuses identities in use, both ways: a partner we
/// register with that answers with another partner's identity, and a
/// partner registering with us claiming ours or another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_refuses_identities_in_use() {
    let c = csms("roaming-reg").await;
    let (http, public) = (c.http, c.public);
    let a = emsp("DE", "EMS").await;
    a.register(http, "DE", "EMS").await.unwrap();
    let intruder = emsp("DE", "EMS").await;
    let (s, why) = intruder.register(http, "DE", "EMS").await.unwrap_err();
    assert_eq!(s, 502, "{why}");
    let (_, partners) = api(http, "GET", "/api/ocpi/partners", None).await;
    assert_eq!(
        partners["partners"].as_array().unwrap().len(),
        1,
        "{partners}"
    );
    for (cc, pid) in [("NL", "EVP"), ("DE", "EMS")] {
        let name = format!("in-{pid}");
        let (_, t) = api(
            http,
            "POST",
            "/api/ocpi/token-a",
            Some(json!({"name": name})),
        )
        .await;
        let versions = t["versions_url"].as_str().unwrap();
        let token_a = t["token"].as_str().unwrap();
        let me = emsp(cc, pid).await;
        let mut own = Own::with_role(&format!("{}/versions", me.base), cc, pid, "EMSP", "x");
        own.policy = UrlPolicy::lab();
        let token_b = me.server.issue_token_a("csms").await.unwrap();
        let e = Client::new(UrlPolicy::lab())
            .unwrap()
            .register(own, versions, token_a, &token_b)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                ClientError::Handshake(evproto_ocpi::credentials::HandshakeError::Refused {
                    code: 2001,
                    ..
                })
            ),
            "{cc}/{pid}: {e}"
        );
        // token A stays a registration token: no module answers it
        let (s, _) = raw(
            "GET",
            &format!("http://127.0.0.1:{public}/ocpi/2.2.1/locations"),
            token_a,
            None,
        )
        .await;
        assert_eq!(s, 401);
    }
    c.shutdown().await;
}

/// A partner that takes our token B and then fails the registration.
async fn failing_partner() -> (String, Arc<std::sync::Mutex<Option<String>>>) {
    use axum::routing::{get, post};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::Mutex::new(None));
    let ok = |data: Value| {
        axum::Json(json!({"status_code": 1000, "timestamp": "2024-01-01T00:00:00Z", "data": data}))
    };
    let (b1, b2) = (base.clone(), base.clone());
    let keep = seen.clone();
    let app = axum::Router::new()
        .route(
            "/versions",
            get(move || async move { ok(json!([{"version": "2.2.1", "url": format!("{b1}/2.2.1")}])) }),
        )
        .route(
            "/2.2.1",
            get(move || async move {
                ok(json!({"version": "2.2.1", "endpoints": [
                    {"identifier": "credentials", "role": "RECEIVER", "url": format!("{b2}/2.2.1/credentials")},
                    {"identifier": "credentials", "role": "SENDER", "url": format!("{b2}/2.2.1/credentials")}]}))
            }),
        )
        .route(
            "/2.2.1/credentials",
            post(move |body: axum::body::Bytes| async move {
                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                *keep.lock().unwrap() = v["token"].as_str().map(str::to_string);
                axum::Json(json!({"status_code": 3001, "status_message": "cannot use your API",
                    "timestamp": "2024-01-01T00:00:00Z"}))
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("{base}/versions"), seen)
}

/// Item 4: a registration that fails after the partner saw our token B
/// leaves token B unusable and no partner behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_registration_withdraws_token_b() {
    let c = csms("roaming-regfail").await;
    let (http, public) = (c.http, c.public);
    let (versions, seen) = failing_partner().await;
    let (s, why) = api(
        http,
        "POST",
        "/api/ocpi/partners",
        Some(json!({"versions_url": versions, "token": "token-a-of-the-partner"})),
    )
    .await;
    assert_eq!(s, 502, "{why}");
    let token_b = seen
        .lock()
        .unwrap()
        .clone()
        .expect("the partner got token B");
    let (s, body) = raw(
        "GET",
        &format!("http://127.0.0.1:{public}/ocpi/versions"),
        &token_b,
        None,
    )
    .await;
    assert_eq!(s, 401, "token B still works: {body}");
    let (_, partners) = api(http, "GET", "/api/ocpi/partners", None).await;
    assert_eq!(partners["partners"], json!([]), "{partners}");
    c.shutdown().await;
}

/// Item 4: a database failure while handling a partner's request is an
/// OCPI error (3000, HTTP 500), never an answer the partner would take for
/// a decision, and nothing half-done reaches the station.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failures_are_ocpi_errors() {
    let mut w = world("roaming-dbfail").await;
    let (a, pa, http) = (&w.a, &w.pa, w.http);
    // The database refuses token writes (a trigger, from a second connection).
    let db = w.c.dir.join("csms.db");
    let mut conn = {
        use sqlx::Connection;
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap()
    };
    for op in ["INSERT", "UPDATE"] {
        sqlx::query(&format!(
            "CREATE TRIGGER fail_tokens_{op} BEFORE {op} ON ocpi_objects WHEN NEW.module = 'tokens' \
             BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let cmd = json!({"response_url": a.url("START_SESSION/1"), "token": token("DE", "EMS", "AT9"),
        "location_id": "RS1", "evse_uid": "RS1-1"});
    let e = pa
        .post("commands", &["START_SESSION"], &cmd)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Status { code: 3000, .. } | ClientError::Unexpected { status: 500, .. }
        ),
        "a failed token write is an error, not ACCEPTED: {e}"
    );
    none(&mut w.rx).await;
    let e = pa
        .put("tokens", &["DE", "EMS", "AT9"], &token("DE", "EMS", "AT9"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Status { code: 3000, .. } | ClientError::Unexpected { status: 500, .. }
        ),
        "{e}"
    );
    assert!(!roaming_tokens(http).await.contains_key("DE/EMS/AT9"));
    // Back to normal: the same command works.
    for op in ["INSERT", "UPDATE"] {
        sqlx::query(&format!("DROP TRIGGER fail_tokens_{op}"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(command(pa, "START_SESSION", cmd).await, "ACCEPTED");
    assert_eq!(next(&mut w.rx).await, "start AT9");

    w.shutdown().await;
}

/// Item 5: the default configuration (no lab setting) refuses partners on
/// loopback, private and link-local addresses and over plain http, whichever
/// side registers, with the reason, before any request to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_refuses_private_partner_urls() {
    let c = csms_with("roaming-ssrf", false).await;
    let http = c.http;
    let a = emsp("DE", "EMS").await;
    let port = a.base.split(':').nth(2).unwrap().split('/').next().unwrap();
    let (s, why) = a.register(http, "DE", "EMS").await.unwrap_err();
    assert_eq!(s, 502, "{why}");
    let why = why["error"].as_str().unwrap();
    assert!(
        why.contains("refused URL") && why.contains("plain http is not allowed"),
        "{why}"
    );
    for (url, reason) in [
        (
            format!("https://127.0.0.1:{port}/ocpi/versions"),
            "private or loopback",
        ),
        (
            "https://10.1.2.3/ocpi/versions".into(),
            "private or loopback",
        ),
        (
            "https://100.64.0.7/ocpi/versions".into(),
            "private or loopback",
        ),
        (
            format!("https://[::ffff:127.0.0.1]:{port}/ocpi/versions"),
            "private or loopback",
        ),
        (
            format!("https://localhost:{port}/ocpi/versions"),
            "loopback host",
        ),
        ("https://169.254.169.254/latest".into(), "link-local"),
        ("https://[fd00:ec2::254]/latest".into(), "link-local"),
    ] {
        let (s, why) = api(
            http,
            "POST",
            "/api/ocpi/partners",
            Some(json!({"versions_url": url, "token": "token-a"})),
        )
        .await;
        let why = why["error"].as_str().unwrap_or_default().to_owned();
        assert_eq!(s, 502, "{url}: {why}");
        assert!(
            why.contains("refused URL") && why.contains(reason),
            "{url}: {why}"
        );
    }
    let (_, partners) = api(http, "GET", "/api/ocpi/partners", None).await;
    assert_eq!(partners["partners"], json!([]), "{partners}");
    // The other way: a partner on loopback registering with us.
    let (_, t) = api(
        http,
        "POST",
        "/api/ocpi/token-a",
        Some(json!({"name": "loopback"})),
    )
    .await;
    let mut own = Own::with_role(&format!("{}/versions", a.base), "DE", "EMS", "EMSP", "x");
    own.policy = UrlPolicy::lab();
    let token_b = a.server.issue_token_a("csms-2").await.unwrap();
    let e = Client::new(UrlPolicy::lab())
        .unwrap()
        .register(
            own,
            t["versions_url"].as_str().unwrap(),
            t["token"].as_str().unwrap(),
            &token_b,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            ClientError::Handshake(evproto_ocpi::credentials::HandshakeError::Refused {
                code: 3001,
                message
            }) if message.contains("plain http")
        ),
        "{e}"
    );
    c.shutdown().await;
}

/// Item 5: a command's `response_url` must be on a host the partner
/// registered: anything else (another host, a private or metadata
/// address) is OCPI 2001 and reaches no station; the partner's own URL
/// works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_url_on_another_host_is_refused() {
    let mut w = world("roaming-respurl").await;
    let (a, pa) = (&w.a, &w.pa);
    let port = a.base.split(':').nth(2).unwrap().split('/').next().unwrap();
    for elsewhere in [
        "http://10.0.0.1/cb".to_string(),
        format!("http://localhost:{port}/ocpi/2.3.0/commands/START_SESSION/x"),
        format!("http://127.0.0.2:{port}/cb"),
        "http://169.254.169.254/latest/meta-data".into(),
    ] {
        let cmd = json!({"response_url": elsewhere, "token": token("DE", "EMS", "AT1"),
            "location_id": "RS1", "evse_uid": "RS1-1"});
        let e = pa
            .post("commands", &["START_SESSION"], &cmd)
            .await
            .unwrap_err();
        assert!(
            matches!(e, ClientError::Status { code: 2001, .. }),
            "{elsewhere}: {e}"
        );
    }
    none(&mut w.rx).await;
    assert_eq!(
        command(pa, "START_SESSION", start_cmd(a, token("DE", "EMS", "AT1"))).await,
        "ACCEPTED"
    );
    assert_eq!(next(&mut w.rx).await, "start AT1");
    w.shutdown().await;
}
