//! OCPI interop with the Python `extrawest-ocpi` package (py_ocpi), in its
//! own venv (it pins pydantic 1): its CPO application
//! (`tests/interop/ocpi/extrawest_cpo.py`) against our `ocpi` client and
//! eMSP server.
//!
//! - our client registers with it (it is the credentials Receiver: it calls
//!   our versions and details back with our token B, Base64-encoded);
//! - we pull paginated locations (150 over pages of 50), tariffs, sessions
//!   and CDRs into our 2.2.1 types;
//! - we push a token to its Tokens Receiver;
//! - its client side (the package's push endpoint) PUTs a location to our
//!   eMSP Locations Receiver.
//!
//! Quirks of theirs we tolerate, each asserted here:
//! 1. `Link` says `https://` although it serves `http://`, and its path
//!    holds Python enum reprs (`/cpo/VersionNumber.v_2_2_1/ModuleID.locations/`)
//!    and `date_from=None`: it leads to a 404. Our client keeps the scheme of
//!    the page it fetched when host and port match, and when a `Link` gives
//!    404 it continues with `offset` on the first page's URL.
//! 2. The last page carries an empty `Link:` header (not an absent one).
//! 3. `X-Limit` echoes the requested limit instead of the server's cap.
//! 4. Unknown tokens get HTTP 403, not 401 (transport_and_format says 401).
//! 6. Its CdrLocation lacks the required `evse_uid`: our typed decode
//!    refuses such CDRs with the field's path; read them as JSON instead.
//! 8. A GET of one object answers `data: [ {..} ]`, a one-element list:
//!    our client's typed `get` takes the single element.
//! 7. It lower-cases the CiStrings it sends (`"id": "loc007"` for
//!    `LOC007`): our server compares ids without case, as CiString says.
//! 5. Its push appends `CC/PID/ID` to our endpoint URL without a `/`: our
//!    server advertises endpoint URLs with a trailing slash
//!    (`Config::trailing_slash`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use evproto_ocpi::auth::TokenEncoding;
use evproto_ocpi::client::Client;
use evproto_ocpi::credentials::{Own, UrlPolicy};
use evproto_ocpi::server::{Config, MemoryStore, NoHandler, Role, Server};
use evproto_ocpi::Version;
use futures_util::TryStreamExt;
use serde_json::{json, Value};

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_cpo(token_a: &str) -> (Peer, u16) {
    let py = test_support::peers::python_extrawest();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/ocpi/extrawest_cpo.py");
    let mut child = Command::new(py)
        .args([
            script,
            "--port",
            "0",
            "--token-a",
            token_a,
            "--locations",
            "150",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start extrawest CPO");
    let out = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).unwrap();
    let port = line
        .trim()
        .strip_prefix("READY ")
        .unwrap_or_else(|| panic!("extrawest CPO did not start: {line:?}"))
        .parse()
        .unwrap();
    (Peer(child), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extrawest_cpo_against_our_client_and_emsp() {
    // Our eMSP server.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/ocpi", listener.local_addr().unwrap());
    let mut own = Own::with_role(
        &format!("{base}/versions"),
        "DE",
        "EMS",
        "EMSP",
        "evproto eMSP",
    );
    // both sides on loopback over plain http: the lab policy
    own.policy = UrlPolicy::lab();
    let store = Arc::new(MemoryStore::new());
    let server = Server::new(
        Config {
            role: Role::Emsp,
            base_url: base.clone(),
            own: own.clone(),
            max_limit: 100,
            token_encoding: TokenEncoding::Lenient,
            trailing_slash: true,
            storage_version: None,
        },
        store.clone(),
        Arc::new(NoHandler),
        Client::new(UrlPolicy::lab()).unwrap(),
    );
    let app = axum::Router::new().nest("/ocpi", server.router());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (_cpo, port) = start_cpo("token-a-exw");
    let cpo_versions = format!("http://127.0.0.1:{port}/ocpi/versions");

    // Registration: they call us back with token B.
    let token_b = server.issue_token_a("extrawest").await.unwrap();
    let client = Client::new(UrlPolicy::lab()).unwrap();
    let peer = client
        .register(own, &cpo_versions, "token-a-exw", &token_b)
        .await
        .expect("handshake with extrawest-ocpi");
    assert_eq!(peer.version(), Version::V221);
    let token_c = peer.registration().token.clone();
    assert_ne!(token_c, "token-a-exw");
    server
        .adopt("extrawest", &token_b, peer.registration().clone())
        .await
        .unwrap();

    // Paginated pull into typed 2.2.1 objects (quirks 1, 2).
    let locations: Vec<evproto_ocpi::v221::Location> =
        peer.list("locations", &[]).try_collect().await.unwrap();
    assert_eq!(locations.len(), 150);
    let mut ids: Vec<&str> = locations.iter().map(|l| l.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 150, "no page fetched twice");
    let tariffs: Vec<evproto_ocpi::v221::Tariff> =
        peer.list("tariffs", &[]).try_collect().await.unwrap();
    assert_eq!(tariffs.len(), 3);
    let sessions: Vec<evproto_ocpi::v221::Session> =
        peer.list("sessions", &[]).try_collect().await.unwrap();
    assert_eq!(sessions.len(), 3);
    // Quirk 6: their CdrLocation model has no `evse_uid` (required in
    // 2.2.1 mod_cdrs "CdrLocation class"), so their CDRs do not decode as
    // our v221::Cdr; the error names the field. Read as JSON they arrive.
    let strict: Result<Vec<evproto_ocpi::v221::Cdr>, _> =
        peer.list("cdrs", &[]).try_collect().await;
    let err = strict.unwrap_err().to_string();
    assert!(
        err.contains("cdr_location: missing field `evse_uid`"),
        "{err}"
    );
    let cdrs: Vec<Value> = peer.list("cdrs", &[]).try_collect().await.unwrap();
    assert_eq!(cdrs.len(), 3);
    assert_eq!(cdrs[0]["total_cost"]["excl_vat"], json!(2.5));

    // One object by id (Sender interface); quirk 8: it comes wrapped in a
    // one-element list, which our client unwraps.
    let raw: Value = peer.get("locations", &["LOC007"]).await.unwrap();
    assert!(
        raw.as_array().is_some_and(|a| a.len() == 1),
        "quirk 8: {raw}"
    );
    let one: evproto_ocpi::v221::Location = peer.get("locations", &["LOC007"]).await.unwrap();
    assert!(one.id.as_str().eq_ignore_ascii_case("LOC007"));
    // Raw headers: quirks 1–4.
    let http = reqwest_get(
        &format!("http://127.0.0.1:{port}/ocpi/cpo/2.2.1/locations/?limit=1000"),
        &token_c,
    )
    .await;
    assert_eq!(http.0, 200);
    assert_eq!(
        http.1.get("x-limit").map(|v| v.to_str().unwrap()),
        Some("1000"),
        "quirk 3"
    );
    assert_eq!(
        http.1.get("link").map(|v| v.to_str().unwrap()),
        Some(""),
        "quirk 2"
    );
    let first = reqwest_get(
        &format!("http://127.0.0.1:{port}/ocpi/cpo/2.2.1/locations/?limit=50"),
        &token_c,
    )
    .await;
    let link = first.1["link"].to_str().unwrap();
    assert!(
        link.starts_with("<https://127.0.0.1") && link.contains("ModuleID.locations"),
        "quirk 1: {link}"
    );
    assert_eq!(
        reqwest_get(
            &format!("http://127.0.0.1:{port}/ocpi/cpo/2.2.1/locations/"),
            "nope"
        )
        .await
        .0,
        403,
        "quirk 4"
    );

    // Push a token to their Tokens Receiver.
    let token = json!({"country_code": "DE", "party_id": "EMS", "uid": "04A1B2C3", "type": "RFID",
        "contract_id": "DE-EMS-C12345678-X", "issuer": "evproto", "valid": true,
        "whitelist": "ALLOWED", "last_updated": "2024-01-01T00:00:00Z"});
    let token: evproto_ocpi::v221::Token = serde_json::from_value(token).unwrap();
    let pushed = peer
        .put("tokens", &["DE", "EMS", "04A1B2C3"], &token)
        .await
        .unwrap();
    assert!(matches!(pushed.http_status, 200 | 201), "{pushed:?}");

    // Their client side pushes a location to our Locations Receiver (quirk 5).
    let our_details = format!("{base}/2.2.1");
    let push = json!({"module_id": "locations", "object_id": "LOC007",
        "receivers": [{"endpoints_url": our_details, "auth_token": token_c_for_us(&store)}]});
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/push/2.2.1"))
        .header(
            "Authorization",
            evproto_ocpi::auth::encode_token(&token_c, TokenEncoding::Base64),
        )
        .json(&push)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{body}");
    let stored = store
        .get_object_sync("locations", "NL/EXW/LOC007")
        .unwrap_or_else(|| panic!("location not pushed to us: {body}"));
    // Quirk 7: it lower-cases CiStrings it sends (CI_STRING_LOWERCASE_PREFERENCE).
    assert_eq!(stored["id"], "loc007");
    assert!(stored["evses"][0]["uid"]
        .as_str()
        .unwrap()
        .eq_ignore_ascii_case("EVSE7"));
}

/// The token extrawest must present to us: the token C our server issued
/// to it during the handshake.
fn token_c_for_us(store: &MemoryStore) -> String {
    store
        .parties()
        .into_iter()
        .find(|p| p.id == "extrawest")
        .map(|p| p.token)
        .expect("party registered")
}

async fn reqwest_get(url: &str, token: &str) -> (u16, reqwest::header::HeaderMap) {
    let r = reqwest::Client::new()
        .get(url)
        .header(
            "Authorization",
            evproto_ocpi::auth::encode_token(token, TokenEncoding::Base64),
        )
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.headers().clone())
}
