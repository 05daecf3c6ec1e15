//! Issue 16 item 5, server-side request forgery: the URLs a peer hands us
//! (versions, endpoints, redirects, `Link`, a command's `response_url`)
//! reach only what the [`UrlPolicy`] allows and the peer's own hosts, and
//! no response body is read without a cap. Each test fails without its
//! guard: the strict default policy, the redirect policy, the capped body
//! reader, the `response_url` host check on both sides.
#![cfg(feature = "server")]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::{header, StatusCode as Http};
use axum::response::IntoResponse;
use axum::routing::get;
use evproto_ocpi::client::{Client, ClientError, Peer, MAX_BODY};
use evproto_ocpi::commands::{respond, Command};
use evproto_ocpi::credentials::{self, Own, UrlPolicy};
use evproto_ocpi::server::{Handler, NoHandler, Party, Role, StoreError};
use evproto_ocpi::v221;
use evproto_ocpi::Version;
use serde_json::{json, Value};

use super::server::{node, Node};

async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// A GET through the client's transport (what every call uses).
async fn fetch(client: &Client, url: &str) -> Result<credentials::Response, ClientError> {
    client
        .execute(&credentials::Request {
            method: "GET",
            url: url.to_string(),
            token: "t".into(),
            base64: true,
            body: None,
        })
        .await
}

const ENVELOPE: &str = r#"{"status_code": 1000, "timestamp": "2024-01-01T00:00:00Z", "data": []}"#;

/// Redirects are followed to the same origin only: one to another host
/// (here `localhost` for a server on `127.0.0.1`, which the lab policy
/// itself allows) is a typed error and that host is never called.
#[tokio::test]
async fn redirects_to_another_host_are_refused() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let other = serve(axum::Router::new().route(
        "/final",
        get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { ENVELOPE }
        }),
    ))
    .await;
    let elsewhere = format!("http://localhost:{}/final", other.port());
    let metadata = "http://169.254.169.254/latest/meta-data".to_string();
    let origin =
        serve(
            axum::Router::new()
                .route("/final", get(|| async { ENVELOPE }))
                .route(
                    "/same",
                    get(|| async { (Http::FOUND, [(header::LOCATION, "/final")]) }),
                )
                .route(
                    "/other",
                    get(move || async move { (Http::FOUND, [(header::LOCATION, elsewhere)]) }),
                )
                .route(
                    "/metadata",
                    get(move || async move {
                        (Http::TEMPORARY_REDIRECT, [(header::LOCATION, metadata)])
                    }),
                )
                .route(
                    "/loop",
                    get(|| async { (Http::FOUND, [(header::LOCATION, "/loop")]) }),
                ),
        )
        .await;
    let client = Client::new(UrlPolicy::lab()).unwrap();
    let same = fetch(&client, &format!("http://{origin}/same"))
        .await
        .unwrap();
    assert_eq!((same.status, same.body.as_str()), (200, ENVELOPE));
    let e = fetch(&client, &format!("http://{origin}/other"))
        .await
        .unwrap_err();
    match &e {
        ClientError::Redirect { status, location } => {
            assert_eq!(*status, 302);
            assert!(location
                .as_deref()
                .unwrap()
                .starts_with("http://localhost:"));
        }
        other => panic!("{other}"),
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the other host was called");
    let e = fetch(&client, &format!("http://{origin}/metadata"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Redirect { status: 307, .. }),
        "{e}"
    );
    // a redirect loop on the same origin ends (typed, not reqwest's error)
    let e = fetch(&client, &format!("http://{origin}/loop"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Redirect { status: 302, .. }),
        "{e}"
    );
}

/// Bodies are read with a running count: past the cap the call fails with
/// a typed error, whether or not the peer announced the length.
#[tokio::test]
async fn oversize_bodies_are_refused() {
    let chunk = 1 << 20;
    let chunks = MAX_BODY / chunk + 1;
    let addr = serve(
        axum::Router::new()
            .route(
                "/streamed",
                get(move || async move {
                    let parts =
                        (0..chunks).map(move |_| Ok::<_, std::io::Error>(vec![b' '; chunk]));
                    axum::body::Body::from_stream(futures_util::stream::iter(parts))
                }),
            )
            .route(
                "/announced",
                get(move || async move { vec![b' '; MAX_BODY + 1].into_response() }),
            )
            .route("/small", get(|| async { ENVELOPE })),
    )
    .await;
    let client = Client::new(UrlPolicy::lab()).unwrap();
    for path in ["streamed", "announced"] {
        let e = fetch(&client, &format!("http://{addr}/{path}"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, ClientError::BodyTooLarge { limit } if limit == MAX_BODY),
            "{path}: {e}"
        );
    }
    let small = fetch(&client, &format!("http://{addr}/small"))
        .await
        .unwrap();
    assert_eq!(small.body, ENVELOPE);
    let tight = client.with_max_body(ENVELOPE.len() - 1);
    let e = fetch(&tight, &format!("http://{addr}/small"))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::BodyTooLarge { .. }), "{e}");
}

/// The default policy is the strict one: a peer on loopback or over plain
/// http is refused before any request.
#[tokio::test]
async fn the_default_policy_refuses_loopback_and_http() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let addr = serve(axum::Router::new().route(
        "/versions",
        get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { ENVELOPE }
        }),
    ))
    .await;
    assert_eq!(UrlPolicy::default(), UrlPolicy::STRICT);
    let client = Client::new(UrlPolicy::default()).unwrap();
    let own = Own::with_role("https://us.example/versions", "NL", "CPO", "CPO", "Us");
    assert_eq!(own.policy, UrlPolicy::STRICT);
    for (url, reason) in [
        (format!("http://{addr}/versions"), "plain http"),
        (format!("https://{addr}/versions"), "private or loopback"),
        (
            format!("https://localhost:{}/versions", addr.port()),
            "loopback host",
        ),
        (
            format!("https://[::ffff:127.0.0.1]:{}/versions", addr.port()),
            "private or loopback",
        ),
    ] {
        let e = client
            .register(own.clone(), &url, "token-a", "token-b")
            .await
            .unwrap_err();
        assert!(
            matches!(&e, ClientError::Handshake(credentials::HandshakeError::Url(r)) if r.reason.contains(reason)),
            "{url}: {e}"
        );
        let e = fetch(&client, &url).await.unwrap_err();
        assert!(
            matches!(&e, ClientError::Url(r) if r.reason.contains(reason)),
            "{url}: {e}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

/// Counts the commands and charging profile requests that reach the
/// application.
#[derive(Default)]
struct Counting(AtomicUsize);

#[async_trait::async_trait]
impl Handler for Counting {
    async fn command(&self, _p: &Party, _c: Command) -> Result<v221::CommandResponse, StoreError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(respond(v221::CommandResponseType::Accepted, 30, ""))
    }
    async fn charging_profile(
        &self,
        _p: &Party,
        _a: &str,
        _s: &str,
        _b: Option<&Value>,
        _q: &str,
    ) -> Value {
        self.0.fetch_add(1, Ordering::SeqCst);
        json!({"result": "ACCEPTED", "timeout": 20})
    }
}

/// An eMSP registered with a CPO: its handle on the CPO.
async fn registered(cpo: &Node, emsp: &Node) -> Peer {
    let token_a = cpo.server.issue_token_a("emsp").await.unwrap();
    let token_b = emsp.server.issue_token_a("cpo").await.unwrap();
    let mut own = Own::with_role(&format!("{}/versions", emsp.base), "DE", "EMS", "EMSP", "e");
    own.policy = UrlPolicy::lab();
    let peer = Client::new(UrlPolicy::lab())
        .unwrap()
        .register(own, &format!("{}/versions", cpo.base), &token_a, &token_b)
        .await
        .unwrap();
    emsp.server
        .adopt("cpo", &token_b, peer.registration().clone())
        .await
        .unwrap();
    peer
}

fn start(response_url: &str) -> Value {
    json!({"response_url": response_url, "token": {"country_code": "DE", "party_id": "EMS",
        "uid": "0102030405", "type": "RFID", "contract_id": "DE-EMS-C12345678-X", "issuer": "EMS",
        "valid": true, "whitelist": "ALLOWED", "last_updated": "2024-01-01T00:00:00Z"},
        "location_id": "LOC001"})
}

/// mod_commands / mod_charging_profiles: the `response_url` a party gives
/// is where the CPO POSTs the result with its token, so it is accepted
/// only on a host the party registered (2001 otherwise, before the
/// application sees the request), and the CPO's client refuses to POST a
/// result anywhere else either.
#[tokio::test]
async fn response_url_must_be_on_the_partners_host() {
    let handler = Arc::new(Counting::default());
    let v221 = || vec![Version::V221];
    let cpo = node(Role::Cpo, "NL", "CPO", handler.clone(), v221()).await;
    let emsp = node(Role::Emsp, "DE", "EMS", Arc::new(NoHandler), v221()).await;
    let peer = registered(&cpo, &emsp).await;
    let emsp_port = emsp
        .base
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let mine = format!("http://127.0.0.1:{emsp_port}/ocpi/2.2.1/commands/START_SESSION/1");
    for elsewhere in [
        "http://10.0.0.1/cb".to_string(),
        format!("http://localhost:{emsp_port}/cb"),
        "http://169.254.169.254/latest/meta-data".into(),
        // another loopback address is another host
        format!("http://127.0.0.2:{emsp_port}/cb"),
        "not a url".into(),
    ] {
        let e = peer
            .post("commands", &["START_SESSION"], &start(&elsewhere))
            .await
            .unwrap_err();
        assert!(
            matches!(e, ClientError::Status { code: 2001, .. }),
            "{elsewhere}: {e}"
        );
        let q = format!(
            "?duration=900&response_url={}",
            url::form_urlencoded::byte_serialize(elsewhere.as_bytes()).collect::<String>()
        );
        let e = peer
            .get_url(&format!("{}/2.2.1/chargingprofiles/S1{q}", cpo.base))
            .await
            .unwrap_err();
        assert!(
            matches!(e, ClientError::Status { code: 2001, .. }),
            "{elsewhere}: {e}"
        );
    }
    assert_eq!(
        handler.0.load(Ordering::SeqCst),
        0,
        "refused before the handler"
    );
    let r = peer
        .post("commands", &["START_SESSION"], &start(&mine))
        .await
        .unwrap();
    assert_eq!(r.data["result"], "ACCEPTED");
    assert_eq!(handler.0.load(Ordering::SeqCst), 1);

    // The CPO's side: its handle on the eMSP posts results to the eMSP's
    // hosts only.
    let party = cpo
        .store
        .parties()
        .into_iter()
        .find(|p| p.id == "emsp")
        .unwrap();
    let to_emsp = Client::new(UrlPolicy::lab())
        .unwrap()
        .peer(party.registration.unwrap());
    let e = to_emsp
        .post_url(
            &format!("http://localhost:{emsp_port}/cb"),
            &json!({"result": "ACCEPTED"}),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ClientError::Url(r) if r.reason.contains("registered")),
        "{e}"
    );
    assert!(evproto_ocpi::client::on_registered_host(
        to_emsp.registration(),
        &mine
    ));
}
