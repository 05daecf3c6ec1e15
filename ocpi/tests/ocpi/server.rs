//! The `server` and `client` features against each other over real HTTP:
//! a CPO and an eMSP, each an axum server on a loopback port, register by
//! the credentials handshake and exchange objects. Each transport rule is a
//! test citing its section of `transport_and_format.asciidoc` (TF) or
//! `credentials.asciidoc` (CR) at 2.2.1.
#![cfg(feature = "server")]

use std::sync::Arc;

use evproto_ocpi::auth::TokenEncoding;
use evproto_ocpi::client::{Client, ClientError};
use evproto_ocpi::commands::{respond, Command};
use evproto_ocpi::credentials::{Own, UrlPolicy};
use evproto_ocpi::server::{
    Config, Handler, MemoryStore, NoHandler, Party, PublishError, Role, Server, Store, StoreError,
};
use evproto_ocpi::v221;
use evproto_ocpi::Version;
use futures_util::TryStreamExt;
use serde_json::{json, Value};

/// `own` with the lab URL policy: the peers of these tests are on loopback
/// over plain http, which the default policy refuses.
fn lab(mut own: Own) -> Own {
    own.policy = UrlPolicy::lab();
    own
}

/// A CPO or eMSP on a loopback port (also for the other test modules).
pub(super) struct Node {
    pub(super) server: Server,
    pub(super) base: String,
    pub(super) store: Arc<MemoryStore>,
}

pub(super) async fn node(
    role: Role,
    cc: &str,
    pid: &str,
    handler: Arc<dyn Handler>,
    versions: Vec<Version>,
) -> Node {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/ocpi", listener.local_addr().unwrap());
    let kind = if role == Role::Cpo { "CPO" } else { "EMSP" };
    let mut own = lab(Own::with_role(
        &format!("{base}/versions"),
        cc,
        pid,
        kind,
        &format!("{pid} test"),
    ));
    own.versions = versions;
    let store = Arc::new(MemoryStore::new());
    let server = Server::new(
        Config {
            role,
            base_url: base.clone(),
            own,
            max_limit: 50,
            token_encoding: TokenEncoding::Lenient,
            trailing_slash: false,
            storage_version: None,
        },
        store.clone(),
        handler,
        Client::new(UrlPolicy::lab()).unwrap(),
    );
    let app = axum::Router::new().nest("/ocpi", server.router());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Node {
        server,
        base,
        store,
    }
}

fn location(i: usize) -> Value {
    json!({
        "country_code": "NL", "party_id": "CPO", "id": format!("LOC{i:03}"), "publish": true,
        "address": "Street 1", "city": "Town", "postal_code": "1234AB", "country": "NLD",
        "coordinates": {"latitude": "52.0", "longitude": "4.0"},
        "time_zone": "Europe/Amsterdam",
        "evses": [{"uid": format!("EVSE{i}"), "status": "AVAILABLE", "connectors": [
            {"id": "1", "standard": "IEC_62196_T2", "format": "SOCKET", "power_type": "AC_3_PHASE",
             "max_voltage": 230, "max_amperage": 16, "last_updated": "2024-01-01T00:00:00Z"}],
         "last_updated": "2024-01-01T00:00:00Z"}],
        "last_updated": format!("2024-01-{:02}T00:00:00Z", 1 + i % 28)
    })
}

fn token(uid: &str) -> Value {
    json!({"country_code": "DE", "party_id": "EMS", "uid": uid, "type": "RFID",
           "contract_id": "DE-EMS-C12345678-X", "issuer": "EMS", "valid": true,
           "whitelist": "ALLOWED", "last_updated": "2024-01-01T00:00:00Z"})
}

struct Commands;

#[async_trait::async_trait]
impl Handler for Commands {
    async fn command(
        &self,
        _p: &Party,
        command: Command,
    ) -> Result<v221::CommandResponse, StoreError> {
        assert!(!command.response_url().is_empty());
        match command {
            Command::StartSession(_) => Ok(respond(v221::CommandResponseType::Accepted, 30, "")),
            // the application's database failed
            Command::StopSession(_) => Err(StoreError::backend(Fire)),
            _ => Ok(respond(v221::CommandResponseType::NotSupported, 0, "")),
        }
    }
    async fn charging_profile(
        &self,
        _p: &Party,
        action: &str,
        session: &str,
        body: Option<&Value>,
        query: &str,
    ) -> Value {
        assert_eq!(session, "S1");
        assert_eq!(action == "SET", body.is_some());
        assert!(action == "SET" || query.contains("response_url="));
        json!({"result": "ACCEPTED", "timeout": 20})
    }
}

async fn pair() -> (Node, Node, evproto_ocpi::client::Peer, String) {
    let cpo = node(
        Role::Cpo,
        "NL",
        "CPO",
        Arc::new(Commands),
        vec![Version::V221, Version::V211],
    )
    .await;
    let emsp = node(
        Role::Emsp,
        "DE",
        "EMS",
        Arc::new(NoHandler),
        vec![Version::V230, Version::V221],
    )
    .await;
    for i in 0..120 {
        cpo.server.publish("locations", location(i)).await.unwrap();
    }
    let token_a = cpo.server.issue_token_a("emsp-1").await.unwrap();
    let client = Client::new(UrlPolicy::lab()).unwrap();
    let own = lab(Own::with_role(
        &format!("{}/versions", emsp.base),
        "DE",
        "EMS",
        "EMSP",
        "EMS test",
    ));
    // The eMSP's own token B must be known to its server for the call-back.
    let token_b = emsp.server.issue_token_a("cpo-1").await.unwrap();
    let peer = client
        .register(own, &format!("{}/versions", cpo.base), &token_a, &token_b)
        .await
        .unwrap();
    emsp.server
        .adopt("cpo-1", &token_b, peer.registration().clone())
        .await
        .unwrap();
    (cpo, emsp, peer, token_b)
}

/// CR "Registration": handshake end to end; highest mutual version (2.2.1);
/// token A is dead afterwards; token C works.
#[tokio::test]
async fn registration_and_paginated_pull() {
    let (cpo, _emsp, peer, _) = pair().await;
    assert_eq!(peer.version(), Version::V221);
    let parties = cpo.store.parties();
    let p = parties.iter().find(|p| p.id == "emsp-1").unwrap();
    assert!(!p.token_a);
    assert_eq!(p.identities(), vec![("DE".to_string(), "EMS".to_string())]);
    // TF "Pagination": 120 objects in pages of at most 50, following Link.
    let all: Vec<evproto_ocpi::v221::Location> =
        peer.list("locations", &[]).try_collect().await.unwrap();
    assert_eq!(all.len(), 120);
    assert_eq!(peer.count("locations").await.unwrap(), Some(120));
    // date_from inclusive, date_to exclusive: days 1..=2 of January.
    let some: Vec<evproto_ocpi::v221::Location> = peer
        .list(
            "locations",
            &[
                ("date_from", "2024-01-01T00:00:00Z"),
                ("date_to", "2024-01-03T00:00:00Z"),
            ],
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(some.len(), 120 / 28 * 2 + 2);
    // One location, EVSE, connector (Sender interface by id).
    let evse: Value = peer.get("locations", &["LOC007", "EVSE7"]).await.unwrap();
    assert_eq!(evse["uid"], "EVSE7");
    let missing = peer.get::<Value>("locations", &["NOPE"]).await.unwrap_err();
    assert!(
        matches!(missing, ClientError::Status { code: 2003, .. }),
        "{missing}"
    );
}

/// Push to the CPO's Tokens Receiver: 201 created, 200 replaced, PATCH
/// rules, id mismatch 2001, foreign party 404; commands.
#[tokio::test]
async fn pushes_and_commands() {
    let (cpo, _emsp, peer, _) = pair().await;
    let t = token("0102030405");
    let r = peer
        .put("tokens", &["DE", "EMS", "0102030405"], &t)
        .await
        .unwrap();
    assert_eq!(r.http_status, 201);
    let r = peer
        .put("tokens", &["de", "ems", "0102030405"], &t)
        .await
        .unwrap();
    assert_eq!(
        r.http_status, 200,
        "CiString path segments compare without case"
    );
    // PATCH needs last_updated (TF "PATCH": 2001 otherwise).
    let e = peer
        .patch(
            "tokens",
            &["DE", "EMS", "0102030405"],
            &json!({"valid": false}),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Status { code: 2001, .. }), "{e}");
    peer.patch(
        "tokens",
        &["DE", "EMS", "0102030405"],
        &json!({"valid": false, "last_updated": "2024-02-01T00:00:00Z"}),
    )
    .await
    .unwrap();
    let stored = cpo
        .store
        .get_object_sync("tokens", "DE/EMS/0102030405")
        .unwrap();
    assert_eq!(stored["valid"], false);
    // Object id in the body differs from the URL: 2001.
    let e = peer
        .put("tokens", &["DE", "EMS", "OTHER"], &t)
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Status { code: 2001, .. }), "{e}");
    // An invalid object: 2001 with the path of the fault.
    let mut bad = t.clone();
    bad["whitelist"] = json!("SOMETIMES");
    match peer
        .put("tokens", &["DE", "EMS", "0102030405"], &bad)
        .await
        .unwrap_err()
    {
        ClientError::Status { code, message } => {
            assert_eq!(code, 2001);
            assert!(message.starts_with("whitelist:"), "{message}");
        }
        e => panic!("{e}"),
    }
    // Another party's namespace: 404.
    let mut foreign = t.clone();
    foreign["country_code"] = json!("FR");
    let e = peer
        .put("tokens", &["FR", "EMS", "0102030405"], &foreign)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Unexpected { status: 404, .. } | ClientError::Status { .. }
        ),
        "{e}"
    );
    // Commands: the handler answers.
    let start = json!({"response_url": "http://127.0.0.1:1/cb", "token": {"country_code": "DE", "party_id": "EMS",
        "uid": "0102030405", "type": "RFID", "contract_id": "DE-EMS-C12345678-X", "issuer": "EMS", "valid": true,
        "whitelist": "ALLOWED", "last_updated": "2024-01-01T00:00:00Z"}, "location_id": "LOC001"});
    let r = peer
        .post("commands", &["START_SESSION"], &start)
        .await
        .unwrap();
    assert_eq!(r.data["result"], "ACCEPTED");
    let e = peer
        .post("commands", &["START_SESSION"], &json!({"location_id": "x"}))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Status { code: 2001, .. }), "{e}");
    // The handler's store failed: OCPI 3000 with HTTP 500, never an answer
    // the partner would take for a decision.
    let token_c = peer.registration().peer_credentials["token"]
        .as_str()
        .unwrap()
        .to_string();
    let auth = evproto_ocpi::auth::encode_token(&token_c, TokenEncoding::Base64);
    let stop = json!({"response_url": "http://127.0.0.1:1/cb", "session_id": "S1"});
    let (s, _, body) = raw(
        "POST",
        &format!("{}/2.2.1/commands/STOP_SESSION", cpo.base),
        Some(&auth),
        Some(&stop.to_string()),
        &[],
    )
    .await;
    assert_eq!(
        (s, body["status_code"].as_u64()),
        (500, Some(3000)),
        "{body}"
    );
    assert!(!body.to_string().contains("fire"), "{body}");
}

async fn raw(
    method: &str,
    url: &str,
    auth: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let c = reqwest::Client::new();
    let mut rb = c.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    if let Some(a) = auth {
        rb = rb.header("Authorization", a);
    }
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.body(b.to_string());
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        h,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// TF "Authorization header", "Request and Correlation ids", "HTTP status
/// codes"; CR "Credentials endpoint" 405 rules.
#[tokio::test]
async fn transport_rules() {
    let (cpo, _emsp, peer, _) = pair().await;
    let token_c = peer.registration().peer_credentials["token"]
        .as_str()
        .unwrap()
        .to_string();
    let b64 = evproto_ocpi::auth::encode_token(&token_c, TokenEncoding::Base64);
    let plain = evproto_ocpi::auth::encode_token(&token_c, TokenEncoding::Plain);
    let loc = format!("{}/2.2.1/locations", cpo.base);
    // Missing and unknown tokens: 401.
    assert_eq!(raw("GET", &loc, None, None, &[]).await.0, 401);
    assert_eq!(
        raw("GET", &loc, Some("Token bm9wZQ=="), None, &[]).await.0,
        401
    );
    // Base64 and, leniently, plain.
    assert_eq!(raw("GET", &loc, Some(&b64), None, &[]).await.0, 200);
    assert_eq!(raw("GET", &loc, Some(&plain), None, &[]).await.0, 200);
    // A fresh token A works on versions and credentials only.
    let a = cpo.server.issue_token_a("other").await.unwrap();
    let a = evproto_ocpi::auth::encode_token(&a, TokenEncoding::Base64);
    assert_eq!(
        raw(
            "GET",
            &format!("{}/versions", cpo.base),
            Some(&a),
            None,
            &[]
        )
        .await
        .0,
        200
    );
    assert_eq!(raw("GET", &loc, Some(&a), None, &[]).await.0, 401);
    // Request ids echoed; generated when absent.
    let (_, h, _) = raw(
        "GET",
        &loc,
        Some(&b64),
        None,
        &[("X-Request-ID", "req-1"), ("X-Correlation-ID", "corr-1")],
    )
    .await;
    assert_eq!(h["X-Request-ID"], "req-1");
    assert_eq!(h["X-Correlation-ID"], "corr-1");
    let (_, h, _) = raw("GET", &loc, Some(&b64), None, &[]).await;
    assert_eq!(h["X-Request-ID"].len(), 36);
    // TF "Message Routing Headers", direct response: to the requester, from us.
    assert_eq!(
        (
            h["OCPI-to-country-code"].to_str().unwrap(),
            h["OCPI-to-party-id"].to_str().unwrap()
        ),
        ("DE", "EMS")
    );
    assert_eq!(
        (
            h["OCPI-from-country-code"].to_str().unwrap(),
            h["OCPI-from-party-id"].to_str().unwrap()
        ),
        ("NL", "CPO")
    );
    // ... or swapped from the request's own headers.
    let (_, h, _) = raw(
        "GET",
        &loc,
        Some(&b64),
        None,
        &[
            ("OCPI-from-country-code", "DE"),
            ("OCPI-from-party-id", "XYZ"),
            ("OCPI-to-country-code", "NL"),
            ("OCPI-to-party-id", "CPO"),
        ],
    )
    .await;
    assert_eq!(h["OCPI-to-party-id"], "XYZ");
    // Configuration modules carry none.
    let (_, h, _) = raw(
        "GET",
        &format!("{}/versions", cpo.base),
        Some(&b64),
        None,
        &[],
    )
    .await;
    assert!(h.get("OCPI-to-party-id").is_none());
    // Pagination headers: X-Limit is the cap, Link carries the filters.
    let (_, h, body) = raw(
        "GET",
        &format!("{loc}?limit=500&date_from=2024-01-01T00:00:00Z"),
        Some(&b64),
        None,
        &[],
    )
    .await;
    assert_eq!(h["X-Limit"], "50");
    assert_eq!(h["X-Total-Count"], "120");
    assert_eq!(body["data"].as_array().unwrap().len(), 50);
    let link = h["Link"].to_str().unwrap();
    assert!(
        link.contains("offset=50") && link.contains("date_from=2024-01-01T00%3A00%3A00Z"),
        "{link}"
    );
    // Bad parameter: 2001.
    let (s, _, body) = raw("GET", &format!("{loc}?offset=abc"), Some(&b64), None, &[]).await;
    assert_eq!((s, body["status_code"].as_u64()), (200, Some(2001)));
    // Body that is not JSON: 400.
    let tok = format!("{}/2.2.1/tokens/DE/EMS/X1", cpo.base);
    let (s, _, body) = raw("PUT", &tok, Some(&b64), Some("{not json"), &[]).await;
    assert_eq!((s, body["status_code"].as_u64()), (400, Some(2001)));
    // GET of an unknown object: 404.
    assert_eq!(raw("GET", &tok, Some(&b64), None, &[]).await.0, 404);
    // Credentials: POST when registered → 405; GET returns our credentials with token C.
    let cred = format!("{}/2.2.1/credentials", cpo.base);
    assert_eq!(raw("POST", &cred, Some(&b64), Some("{}"), &[]).await.0, 405);
    let (s, _, body) = raw("GET", &cred, Some(&b64), None, &[]).await;
    assert_eq!(
        (s, body["data"]["token"].as_str()),
        (200, Some(token_c.as_str()))
    );
    // PUT/DELETE when not registered → 405.
    assert_eq!(raw("DELETE", &cred, Some(&a), None, &[]).await.0, 405);
    // Unsupported version: 404 with 3002.
    let (s, _, body) = raw("GET", &format!("{}/2.3.0", cpo.base), Some(&b64), None, &[]).await;
    assert_eq!((s, body["status_code"].as_u64()), (404, Some(3002)));
    // Charging Profiles GET needs a response_url (2001 otherwise).
    let cp = format!("{}/2.2.1/chargingprofiles/S1", cpo.base);
    let (s, _, body) = raw("GET", &format!("{cp}?duration=900"), Some(&b64), None, &[]).await;
    assert_eq!((s, body["status_code"].as_u64()), (200, Some(2001)));
    let (s, _, body) = raw(
        "GET",
        &format!("{cp}?duration=900&response_url=http%3A%2F%2F127.0.0.1%3A1%2Fr"),
        Some(&b64),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (s, body["data"]["result"].as_str()),
        (200, Some("ACCEPTED"))
    );
    // DELETE unregisters: the token stops working.
    assert_eq!(raw("DELETE", &cred, Some(&b64), None, &[]).await.0, 200);
    assert_eq!(raw("GET", &loc, Some(&b64), None, &[]).await.0, 401);
}

/// Errata decision (OCPI-NOTES §2.2 item 8): real-time authorization of an
/// unknown token answers HTTP 404, as mod_tokens says, with status 2004
/// "Unknown Token" in the envelope. The CPO calls the eMSP with token B.
#[tokio::test]
async fn authorize_unknown_token_is_404_with_2004() {
    let (_cpo, emsp, _peer, token_b) = pair().await;
    let auth = evproto_ocpi::auth::encode_token(&token_b, TokenEncoding::Base64);
    let url = format!("{}/2.2.1/tokens/NOPE/authorize?type=RFID", emsp.base);
    let (s, _, body) = raw("POST", &url, Some(&auth), None, &[]).await;
    assert_eq!((s, body["status_code"].as_u64()), (404, Some(2004)));
    // The eMSP's Tokens Sender list works with the same token.
    let (s, _, body) = raw(
        "GET",
        &format!("{}/2.2.1/tokens", emsp.base),
        Some(&auth),
        None,
        &[],
    )
    .await;
    assert_eq!((s, body["status_code"].as_u64()), (200, Some(1000)));
}

/// CR: POST credentials pointing at an unreachable versions URL → 3001;
/// at a metadata address → refused by the URL policy (3001).
#[tokio::test]
async fn receiver_failures() {
    let cpo = node(
        Role::Cpo,
        "NL",
        "CPO",
        Arc::new(NoHandler),
        vec![Version::V221],
    )
    .await;
    let a = cpo.server.issue_token_a("x").await.unwrap();
    let a = evproto_ocpi::auth::encode_token(&a, TokenEncoding::Base64);
    let cred = format!("{}/2.2.1/credentials", cpo.base);
    for url in [
        "http://127.0.0.1:1/versions",
        "http://169.254.169.254/latest/meta-data",
    ] {
        let body = json!({"token": "b", "url": url, "roles": [{"role": "EMSP", "party_id": "EMS", "country_code": "DE", "business_details": {"name": "x"}}]});
        let (s, _, resp) = raw("POST", &cred, Some(&a), Some(&body.to_string()), &[]).await;
        assert_eq!(
            (s, resp["status_code"].as_u64()),
            (200, Some(3001)),
            "{url}: {resp}"
        );
    }
    // An eMSP that speaks only 2.3.0 registering with a 2.2.1-only CPO: 3002.
    let emsp = node(
        Role::Emsp,
        "DE",
        "EMS",
        Arc::new(NoHandler),
        vec![Version::V230],
    )
    .await;
    let b = emsp.server.issue_token_a("cpo").await.unwrap();
    let body = json!({"token": b, "url": format!("{}/versions", emsp.base), "roles": [{"role": "EMSP", "party_id": "EMS", "country_code": "DE", "business_details": {"name": "x"}}]});
    let (s, _, resp) = raw("POST", &cred, Some(&a), Some(&body.to_string()), &[]).await;
    assert_eq!(
        (s, resp["status_code"].as_u64()),
        (200, Some(3002)),
        "{resp}"
    );
}

/// A CPO that stores 2.2.1 objects serves them to 2.3.0 and 2.1.1
/// partners converted (`Config::storage_version`).
#[tokio::test]
async fn objects_are_served_in_the_partners_version() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/ocpi", listener.local_addr().unwrap());
    let own = lab(Own::with_role(
        &format!("{base}/versions"),
        "NL",
        "CPO",
        "CPO",
        "CPO",
    ));
    let store = Arc::new(MemoryStore::new());
    let server = Server::new(
        Config {
            role: Role::Cpo,
            base_url: base.clone(),
            own,
            max_limit: 50,
            token_encoding: TokenEncoding::Lenient,
            trailing_slash: false,
            storage_version: Some(Version::V221),
        },
        store,
        Arc::new(NoHandler),
        Client::new(UrlPolicy::lab()).unwrap(),
    );
    let app = axum::Router::new().nest("/ocpi", server.router());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    server.publish("locations", location(1)).await.unwrap();
    server
        .publish("tariffs", json!({"country_code": "NL", "party_id": "CPO", "id": "T1", "currency": "EUR",
            "max_price": {"excl_vat": 10, "incl_vat": 12.1},
            "elements": [{"price_components": [{"type": "ENERGY", "price": 0.25, "vat": 21, "step_size": 1}]}],
            "last_updated": "2024-01-01T00:00:00Z"}))
        .await
        .unwrap();
    // two eMSPs (one identity each: a second DE/EMS would be refused)
    for (version, emsp_versions, pid) in [
        (Version::V230, vec![Version::V230], "EMS"),
        (Version::V211, vec![Version::V211], "EM2"),
    ] {
        let emsp = node(Role::Emsp, "DE", pid, Arc::new(NoHandler), emsp_versions).await;
        let token_a = server
            .issue_token_a(&format!("emsp-{version}"))
            .await
            .unwrap();
        let token_b = emsp.server.issue_token_a("cpo").await.unwrap();
        let mut own = lab(Own::with_role(
            &format!("{}/versions", emsp.base),
            "DE",
            pid,
            "EMSP",
            "e",
        ));
        own.versions = vec![version];
        let peer = Client::new(UrlPolicy::lab())
            .unwrap()
            .register(own, &format!("{base}/versions"), &token_a, &token_b)
            .await
            .unwrap();
        assert_eq!(peer.version(), version);
        let tariffs: Vec<Value> = peer.list("tariffs", &[]).try_collect().await.unwrap();
        match version {
            Version::V230 => {
                let t: Vec<evproto_ocpi::v230::Tariff> = tariffs
                    .iter()
                    .map(|t| serde_json::from_value(t.clone()).unwrap())
                    .collect();
                assert_eq!(
                    tariffs[0]["max_price"],
                    json!({"before_taxes": 10, "after_taxes": 12.1})
                );
                assert_eq!(t[0].tax_included, evproto_ocpi::v230::TaxIncluded::No);
                let locs: Vec<evproto_ocpi::v230::Location> =
                    peer.list("locations", &[]).try_collect().await.unwrap();
                assert_eq!(locs.len(), 1);
            }
            _ => {
                let _: Vec<evproto_ocpi::v211::Tariff> = tariffs
                    .iter()
                    .map(|t| serde_json::from_value(t.clone()).unwrap())
                    .collect();
                assert!(
                    tariffs[0].get("country_code").is_none(),
                    "2.1.1 tariffs have no owner"
                );
                let loc: evproto_ocpi::v211::Location =
                    peer.get("locations", &["LOC001"]).await.unwrap();
                assert_eq!(loc.id.as_str(), "LOC001");
            }
        }
    }
}

/// Ids are percent-decoded exactly once (TF "Unique message IDs" /
/// "Client Owned Object Push": ids are CiString and may hold `/` or `%`):
/// `LOC%2F1` names `LOC/1` (one segment, not two), `LOC%252F2` names
/// `LOC%2F2`.
#[tokio::test]
async fn ids_with_slashes_and_percents_are_decoded_once() {
    let (cpo, _emsp, peer, _) = pair().await;
    let token_c = peer.registration().peer_credentials["token"]
        .as_str()
        .unwrap()
        .to_string();
    let auth = evproto_ocpi::auth::encode_token(&token_c, TokenEncoding::Base64);
    for id in ["LOC/1", "LOC%2F2"] {
        let mut l = location(0);
        l["id"] = json!(id);
        cpo.server.publish("locations", l).await.unwrap();
    }
    for (path, want) in [("LOC%2F1", "LOC/1"), ("LOC%252F2", "LOC%2F2")] {
        let url = format!("{}/2.2.1/locations/{path}", cpo.base);
        let (s, _, resp) = raw("GET", &url, Some(&auth), None, &[]).await;
        assert_eq!(
            (s, resp["status_code"].as_u64(), resp["data"]["id"].as_str()),
            (200, Some(1000), Some(want)),
            "{path}: {resp}"
        );
    }
    // `LOC/1` sent unencoded is two segments: an EVSE `1` of location `LOC`
    let url = format!("{}/2.2.1/locations/LOC/1", cpo.base);
    let (s, _, _) = raw("GET", &url, Some(&auth), None, &[]).await;
    assert_eq!(s, 404);
}

/// A store whose party or object operations can be made to fail.
#[derive(Default)]
struct Flaky {
    inner: MemoryStore,
    parties_down: std::sync::atomic::AtomicBool,
    objects_fail: std::sync::atomic::AtomicBool,
}

#[derive(Debug, thiserror::Error)]
#[error("disk on fire at /var/lib/secret")]
struct Fire;

impl Flaky {
    fn parties(&self) -> Result<(), StoreError> {
        if self.parties_down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::unavailable(Fire));
        }
        Ok(())
    }
    fn objects(&self) -> Result<(), StoreError> {
        if self.objects_fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::backend(Fire));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for Flaky {
    async fn party_by_token(&self, token: &str) -> Result<Option<Party>, StoreError> {
        self.parties()?;
        self.inner.party_by_token(token).await
    }
    async fn save_party(&self, party: Party) -> Result<(), StoreError> {
        self.parties()?;
        self.inner.save_party(party).await
    }
    async fn remove_party(&self, id: &str) -> Result<(), StoreError> {
        self.parties()?;
        self.inner.remove_party(id).await
    }
    async fn list_parties(&self) -> Result<Vec<Party>, StoreError> {
        self.parties()?;
        self.inner.list_parties().await
    }
    async fn put_object(&self, module: &str, key: &str, object: Value) -> Result<bool, StoreError> {
        self.objects()?;
        self.inner.put_object(module, key, object).await
    }
    async fn get_object(&self, module: &str, key: &str) -> Result<Option<Value>, StoreError> {
        self.objects()?;
        self.inner.get_object(module, key).await
    }
    async fn delete_object(&self, module: &str, key: &str) -> Result<bool, StoreError> {
        self.objects()?;
        self.inner.delete_object(module, key).await
    }
    async fn list_objects(
        &self,
        module: &str,
        owners: &[String],
        page: &evproto_ocpi::pagination::Page,
    ) -> Result<(Vec<Value>, usize), StoreError> {
        self.objects()?;
        self.inner.list_objects(module, owners, page).await
    }
}

async fn flaky_cpo() -> (Server, String, Arc<Flaky>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/ocpi", listener.local_addr().unwrap());
    let own = lab(Own::with_role(
        &format!("{base}/versions"),
        "NL",
        "CPO",
        "CPO",
        "CPO",
    ));
    let store = Arc::new(Flaky::default());
    let server = Server::new(
        Config {
            role: Role::Cpo,
            base_url: base.clone(),
            own,
            max_limit: 50,
            token_encoding: TokenEncoding::Plain,
            trailing_slash: false,
            storage_version: None,
        },
        store.clone(),
        Arc::new(NoHandler),
        Client::new(UrlPolicy::lab()).unwrap(),
    );
    let app = axum::Router::new().nest("/ocpi", server.router());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // a registered party DE/EMS (token C "tok-c"), without a handshake
    store
        .save_party(Party {
            id: "emsp".into(),
            token: "tok-c".into(),
            token_a: false,
            registration: Some(evproto_ocpi::credentials::Registered {
                version: Version::V221,
                endpoints: Vec::new(),
                token: "tok-b".into(),
                base64: true,
                versions_url: "http://127.0.0.1:1/versions".into(),
                peer_credentials: json!({"roles": [{"country_code": "DE", "party_id": "EMS"}]}),
            }),
        })
        .await
        .unwrap();
    (server, base, store)
}

/// Issue 14 B: a failing store is answered, never a panic and never
/// mistaken for "not found" or "unknown token": OCPI 3000 (generic server
/// error) with HTTP 503 (unavailable) or 500 (failed), the reason in
/// `status_message`, the store's own text kept off the wire.
#[tokio::test]
async fn store_failures_become_ocpi_3000() {
    let (server, base, store) = flaky_cpo().await;
    server.publish("locations", location(1)).await.unwrap();
    let auth = Some("Token tok-c");
    let loc = format!("{base}/2.2.1/locations/LOC001");
    let (s, _, body) = raw("GET", &loc, auth, None, &[]).await;
    assert_eq!((s, body["data"]["id"].as_str()), (200, Some("LOC001")));

    // objects fail: GET, PUT and DELETE paths answer 500 / 3000
    store
        .objects_fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (s, _, body) = raw("GET", &loc, auth, None, &[]).await;
    assert_eq!(
        (
            s,
            body["status_code"].as_u64(),
            body["status_message"].as_str()
        ),
        (500, Some(3000), Some("store failed")),
        "{body}"
    );
    assert!(!body.to_string().contains("fire"), "{body}");
    let tok = format!("{base}/2.2.1/tokens/DE/EMS/T1");
    let t = token("T1");
    for (method, body) in [("GET", None), ("PUT", Some(t.to_string()))] {
        let (s, _, resp) = raw(method, &tok, auth, body.as_deref(), &[]).await;
        assert_eq!(
            (s, resp["status_code"].as_u64()),
            (500, Some(3000)),
            "{method}"
        );
    }
    assert!(matches!(
        server.publish("locations", location(2)).await,
        Err(PublishError::Store(StoreError::Backend(_)))
    ));
    assert!(matches!(
        server.publish("locations", json!({"id": "x"})).await,
        Err(PublishError::NoKey)
    ));

    // parties unavailable: 503 / 3000, not 401
    store
        .parties_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    for url in [format!("{base}/versions"), loc.clone()] {
        let (s, _, body) = raw("GET", &url, auth, None, &[]).await;
        assert_eq!(
            (
                s,
                body["status_code"].as_u64(),
                body["status_message"].as_str()
            ),
            (503, Some(3000), Some("store unavailable")),
            "{url}: {body}"
        );
    }
    assert!(server.issue_token_a("x").await.is_err());
    // back up: served again
    store
        .parties_down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    store
        .objects_fail
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(raw("GET", &loc, auth, None, &[]).await.0, 200);
}

/// Issue 14 C: each module's interface is its own route: a path our role
/// does not serve is 404 and a method the interface lacks 405, both with
/// an envelope and only after authentication; every named segment is
/// percent-decoded once (here a token uid with `/` and `%`).
#[tokio::test]
async fn module_routes_per_role() {
    let (cpo, emsp, peer, token_b) = pair().await;
    let token_c = peer.registration().peer_credentials["token"]
        .as_str()
        .unwrap()
        .to_string();
    let c = evproto_ocpi::auth::encode_token(&token_c, TokenEncoding::Base64);
    let b = evproto_ocpi::auth::encode_token(&token_b, TokenEncoding::Base64);
    // unknown module: 401 without a token, 404 with one
    let nope = format!("{}/2.2.1/nope/x", cpo.base);
    assert_eq!(raw("GET", &nope, None, None, &[]).await.0, 401);
    let (s, _, body) = raw("GET", &nope, Some(&c), None, &[]).await;
    assert_eq!((s, body["status_code"].as_u64()), (404, Some(2000)));
    // a CPO has no Locations Receiver: PUT on a location path is 405
    let (s, _, body) = raw(
        "PUT",
        &format!("{}/2.2.1/locations/LOC001", cpo.base),
        Some(&c),
        Some("{}"),
        &[],
    )
    .await;
    assert_eq!((s, body["status_code"].as_u64()), (405, Some(2000)));
    assert_eq!(
        raw(
            "PUT",
            &format!("{}/2.2.1/locations/LOC001", cpo.base),
            None,
            Some("{}"),
            &[]
        )
        .await
        .0,
        401
    );
    // ... and an eMSP no Locations Sender list by id: GET /locations/LOC001 is 404
    let (s, _, _) = raw(
        "GET",
        &format!("{}/2.2.1/locations/LOC001", emsp.base),
        Some(&b),
        None,
        &[],
    )
    .await;
    assert_eq!(s, 404);
    // 2.1.1 has no Charging Profiles: 404 on a route 2.2.1 serves
    let (s, _, _) = raw(
        "GET",
        &format!("{}/2.1.1/chargingprofiles/S1?response_url=x", cpo.base),
        Some(&c),
        None,
        &[],
    )
    .await;
    assert_eq!(s, 404);
    // a token uid holding `/` and `%`, percent-encoded once in the URL
    let mut t = token("A/B%");
    t["uid"] = json!("A/B%");
    let url = format!("{}/2.2.1/tokens/DE/EMS/A%2FB%25", cpo.base);
    let (s, _, body) = raw("PUT", &url, Some(&c), Some(&t.to_string()), &[]).await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(
        cpo.store.get_object_sync("tokens", "DE/EMS/A/B%").unwrap()["uid"],
        "A/B%"
    );
    let (s, _, body) = raw("GET", &url, Some(&c), None, &[]).await;
    assert_eq!((s, body["data"]["uid"].as_str()), (200, Some("A/B%")));
}

/// `sender` (a node) registers with `receiver` as credentials Sender under
/// `cc`/`pid`; the Sender's handle on the Receiver.
async fn register(
    sender: &Node,
    (cc, pid, role): (&str, &str, &str),
    receiver: &Node,
    label: &str,
) -> Result<evproto_ocpi::client::Peer, ClientError> {
    let token_a = receiver.server.issue_token_a(label).await.unwrap();
    let own = lab(Own::with_role(
        &format!("{}/versions", sender.base),
        cc,
        pid,
        role,
        &format!("{pid} test"),
    ));
    let token_b = sender.server.issue_token_a("peer").await.unwrap();
    let peer = Client::new(UrlPolicy::lab())
        .unwrap()
        .register(
            own,
            &format!("{}/versions", receiver.base),
            &token_a,
            &token_b,
        )
        .await?;
    sender
        .server
        .adopt("peer", &token_b, peer.registration().clone())
        .await
        .unwrap();
    Ok(peer.from_party(cc, pid))
}

/// A 2.2.1 CDR (the spec's example, with the token's party it lacks) of
/// the CPO `cc`/`pid`.
fn cdr(cc: &str, pid: &str, id: &str) -> Value {
    let mut c: Value =
        serde_json::from_str(include_str!("../../spec/v221/examples/cdr_example.json")).unwrap();
    c["country_code"] = json!(cc);
    c["party_id"] = json!(pid);
    c["id"] = json!(id);
    c["cdr_token"]["country_code"] = json!("DE");
    c["cdr_token"]["party_id"] = json!("EMS");
    c
}

/// Issue 16 item 6: an eMSP keeps CDRs, hub client info, command results
/// and charging profile results under the party that sent them; one CPO
/// can neither read nor pre-empt another's (same ids), nor send under
/// another's country/party.
#[tokio::test]
async fn emsp_keeps_what_each_cpo_sends_apart() {
    let emsp = node(
        Role::Emsp,
        "DE",
        "EMS",
        Arc::new(NoHandler),
        vec![Version::V221],
    )
    .await;
    let cpo1 = node(
        Role::Cpo,
        "NL",
        "CPO",
        Arc::new(NoHandler),
        vec![Version::V221],
    )
    .await;
    let cpo2 = node(
        Role::Cpo,
        "BE",
        "CPT",
        Arc::new(NoHandler),
        vec![Version::V221],
    )
    .await;
    let p1 = register(&cpo1, ("NL", "CPO", "CPO"), &emsp, "cpo1")
        .await
        .unwrap();
    let p2 = register(&cpo2, ("BE", "CPT", "CPO"), &emsp, "cpo2")
        .await
        .unwrap();

    // CPO 2 posts first, under its own party: CPO 1's CDR of the same id
    // is still accepted (not pre-empted) and each reads back its own.
    let r2 = p2
        .post("cdrs", &[], &cdr("BE", "CPT", "CDR1"))
        .await
        .unwrap();
    let r1 = p1
        .post("cdrs", &[], &cdr("NL", "CPO", "CDR1"))
        .await
        .unwrap();
    assert_eq!((r1.http_status, r2.http_status), (201, 201));
    assert!(emsp.store.get_object_sync("cdrs", "NL/CPO/CDR1").is_some());
    assert!(emsp.store.get_object_sync("cdrs", "BE/CPT/CDR1").is_some());
    let location = r1.location.clone().unwrap();
    assert!(location.ends_with("/cdrs/CDR1"), "{location}");
    let token = |p: &evproto_ocpi::client::Peer| {
        let t = p.registration().peer_credentials["token"]
            .as_str()
            .unwrap()
            .to_string();
        evproto_ocpi::auth::encode_token(&t, TokenEncoding::Base64)
    };
    let (t1, t2) = (token(&p1), token(&p2));
    let (s, _, body) = raw("GET", &location, Some(&t1), None, &[]).await;
    assert_eq!((s, body["data"]["party_id"].as_str()), (200, Some("CPO")));
    let (s, _, body) = raw("GET", &location, Some(&t2), None, &[]).await;
    assert_eq!((s, body["data"]["party_id"].as_str()), (200, Some("CPT")));
    // A CDR only CPO 1 sent is unknown to CPO 2.
    p1.post("cdrs", &[], &cdr("NL", "CPO", "ONLY1"))
        .await
        .unwrap();
    let only1 = location.replace("CDR1", "ONLY1");
    assert_eq!(raw("GET", &only1, Some(&t1), None, &[]).await.0, 200);
    let (s, _, _) = raw("GET", &only1, Some(&t2), None, &[]).await;
    assert_eq!(s, 404);
    // Immutable per party: CPO 1 posting CDR1 again is refused.
    let e = p1
        .post("cdrs", &[], &cdr("NL", "CPO", "CDR1"))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Status { code: 2001, .. }), "{e}");
    // CPO 2 posting in CPO 1's name: refused, nothing stored.
    let e = p2
        .post("cdrs", &[], &cdr("NL", "CPO", "FORGED"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Unexpected { status: 404, .. } | ClientError::Status { .. }
        ),
        "{e}"
    );
    assert!(emsp
        .store
        .get_object_sync("cdrs", "NL/CPO/FORGED")
        .is_none());

    // Hub client info: what CPO 1 tells about XX/AAA is not CPO 2's to read
    // or overwrite.
    let info = |status: &str| {
        json!({"party_id": "AAA", "country_code": "XX", "role": "EMSP", "status": status,
            "last_updated": "2024-01-01T00:00:00Z"})
    };
    let hci = format!("{}/2.2.1/hubclientinfo/XX/AAA", emsp.base);
    let (s, _, body) = raw(
        "PUT",
        &hci,
        Some(&t1),
        Some(&info("CONNECTED").to_string()),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let (s, _, _) = raw("GET", &hci, Some(&t2), None, &[]).await;
    assert_eq!(s, 404, "another party's client info");
    let (s, _, _) = raw(
        "PUT",
        &hci,
        Some(&t2),
        Some(&info("SUSPENDED").to_string()),
        &[],
    )
    .await;
    assert_eq!(s, 201, "CPO 2's own entry, not CPO 1's replaced");
    let (s, _, body) = raw("GET", &hci, Some(&t1), None, &[]).await;
    assert_eq!(
        (s, body["data"]["status"].as_str()),
        (200, Some("CONNECTED"))
    );

    // Command results and charging profile results: under the sender.
    let result = format!("{}/2.2.1/commands/START_SESSION/req-1", emsp.base);
    let (s, _, _) = raw(
        "POST",
        &result,
        Some(&t2),
        Some(r#"{"result":"REJECTED"}"#),
        &[],
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = raw(
        "POST",
        &result,
        Some(&t1),
        Some(r#"{"result":"ACCEPTED"}"#),
        &[],
    )
    .await;
    assert_eq!(s, 200);
    let stored = |key: &str| emsp.store.get_object_sync("command_results", key);
    assert_eq!(
        stored("NL/CPO/START_SESSION/req-1").unwrap()["result"],
        "ACCEPTED"
    );
    assert_eq!(
        stored("BE/CPT/START_SESSION/req-1").unwrap()["result"],
        "REJECTED"
    );
    assert!(stored("START_SESSION/req-1").is_none());
    let cp = format!("{}/2.2.1/chargingprofiles/S1/req-9", emsp.base);
    let (s, _, _) = raw(
        "POST",
        &cp,
        Some(&t2),
        Some(r#"{"result":"ACCEPTED"}"#),
        &[],
    )
    .await;
    assert_eq!(s, 200);
    assert!(emsp
        .store
        .get_object_sync("charging_profile_results", "BE/CPT/S1/req-9")
        .is_some());
}

/// Issue 16 item 3: a registration claiming the Receiver's own identity or
/// one another party registered with is refused (2001) and leaves the
/// token A a registration token; a distinct identity still registers.
#[tokio::test]
async fn registration_refuses_identities_in_use() {
    let cpo = node(
        Role::Cpo,
        "NL",
        "CPO",
        Arc::new(NoHandler),
        vec![Version::V221],
    )
    .await;
    let emsp1 = node(
        Role::Emsp,
        "DE",
        "EMS",
        Arc::new(NoHandler),
        vec![Version::V221],
    )
    .await;
    register(&emsp1, ("DE", "EMS", "EMSP"), &cpo, "emsp1")
        .await
        .unwrap();
    let intruder = node(
        Role::Emsp,
        "DE",
        "EMS",
        Arc::new(NoHandler),
        vec![Version::V221],
    )
    .await;
    for (cc, pid) in [("NL", "CPO"), ("DE", "EMS"), ("nl", "cpo")] {
        let e = register(&intruder, (cc, pid, "EMSP"), &cpo, "intruder")
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
        let p = cpo
            .store
            .parties()
            .into_iter()
            .find(|p| p.id == "intruder")
            .unwrap();
        assert!(p.token_a && p.registration.is_none(), "{cc}/{pid}");
    }
    // emsp1's registration is untouched
    let p = cpo
        .store
        .parties()
        .into_iter()
        .find(|p| p.id == "emsp1")
        .unwrap();
    assert_eq!(p.identities(), vec![("DE".to_string(), "EMS".to_string())]);
    assert_eq!(
        cpo.server
            .identity_in_use(
                "emsp1",
                &json!({"roles": [{"country_code": "de", "party_id": "ems"}]})
            )
            .await
            .unwrap(),
        None,
        "a party's own identity is not in use against itself"
    );
    // a free identity registers
    register(&intruder, ("FR", "NEW", "EMSP"), &cpo, "newcomer")
        .await
        .unwrap();
    // ... and cannot take emsp1's with an update (PUT credentials)
    let p = cpo
        .store
        .parties()
        .into_iter()
        .find(|p| p.id == "newcomer")
        .unwrap();
    let auth = evproto_ocpi::auth::encode_token(&p.token, TokenEncoding::Base64);
    let b = intruder.server.issue_token_a("again").await.unwrap();
    let body = json!({"token": b, "url": format!("{}/versions", intruder.base), "roles": [{"role": "EMSP",
        "party_id": "EMS", "country_code": "DE", "business_details": {"name": "x"}}]});
    let (s, _, resp) = raw(
        "PUT",
        &format!("{}/2.2.1/credentials", cpo.base),
        Some(&auth),
        Some(&body.to_string()),
        &[],
    )
    .await;
    assert_eq!(
        (s, resp["status_code"].as_u64()),
        (200, Some(2001)),
        "{resp}"
    );
    let p = cpo
        .store
        .parties()
        .into_iter()
        .find(|p| p.id == "newcomer")
        .unwrap();
    assert_eq!(p.identities(), vec![("FR".to_string(), "NEW".to_string())]);
}

/// A CPO's Sessions and CDRs Sender lists serve each eMSP only what runs on
/// its own tokens (`cdr_token`), counted and paged after that selection.
#[tokio::test]
async fn cpo_lists_sessions_and_cdrs_per_emsp() {
    let cpo = node(
        Role::Cpo,
        "NL",
        "CPO",
        Arc::new(NoHandler),
        vec![Version::V221],
    )
    .await;
    let e1 = node(
        Role::Emsp,
        "DE",
        "EMS",
        Arc::new(NoHandler),
        vec![Version::V221],
    )
    .await;
    let e2 = node(
        Role::Emsp,
        "FR",
        "BMS",
        Arc::new(NoHandler),
        vec![Version::V221],
    )
    .await;
    let p1 = register(&e1, ("DE", "EMS", "EMSP"), &cpo, "e1")
        .await
        .unwrap();
    let p2 = register(&e2, ("FR", "BMS", "EMSP"), &cpo, "e2")
        .await
        .unwrap();
    let session = |id: &str, cc: &str, pid: &str| {
        json!({"country_code": "NL", "party_id": "CPO", "id": id, "status": "ACTIVE",
            "cdr_token": {"country_code": cc, "party_id": pid, "uid": "U", "type": "RFID", "contract_id": "C"},
            "last_updated": "2024-01-01T00:00:00Z"})
    };
    for (id, cc, pid) in [
        ("S1", "DE", "EMS"),
        ("S2", "FR", "BMS"),
        ("S3", "de", "ems"),
    ] {
        cpo.server
            .publish("sessions", session(id, cc, pid))
            .await
            .unwrap();
    }
    let mut c2 = cdr("NL", "CPO", "C2");
    c2["cdr_token"]["country_code"] = json!("FR");
    c2["cdr_token"]["party_id"] = json!("BMS");
    cpo.server
        .publish("cdrs", cdr("NL", "CPO", "C1"))
        .await
        .unwrap();
    cpo.server.publish("cdrs", c2).await.unwrap();
    let ids = |v: Vec<Value>| {
        v.iter()
            .map(|o| o["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let s1: Vec<Value> = p1.list("sessions", &[]).try_collect().await.unwrap();
    let s2: Vec<Value> = p2.list("sessions", &[]).try_collect().await.unwrap();
    assert_eq!(
        (ids(s1), ids(s2)),
        (vec!["S1".into(), "S3".into()], vec!["S2".into()])
    );
    assert_eq!(p1.count("sessions").await.unwrap(), Some(2));
    let c1: Vec<Value> = p1.list("cdrs", &[]).try_collect().await.unwrap();
    let c2: Vec<Value> = p2.list("cdrs", &[]).try_collect().await.unwrap();
    assert_eq!((ids(c1), ids(c2)), (vec!["C1".into()], vec!["C2".into()]));
    // a page after the selection: offset 1 of DE/EMS's sessions is S3
    let (s, _, body) = raw(
        "GET",
        &format!("{}/2.2.1/sessions?offset=1&limit=1", cpo.base),
        Some(&evproto_ocpi::auth::encode_token(
            p1.registration().peer_credentials["token"]
                .as_str()
                .unwrap(),
            TokenEncoding::Base64,
        )),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (s, body["data"][0]["id"].as_str()),
        (200, Some("S3")),
        "{body}"
    );
}
