//! Card payments against `localstripe` (a local, stateful Stripe-compatible
//! server from PyPI, in a venv under the evproto cache), never the internet:
//!
//! - hold, capture at a lower final price, the same receipt again; a hold
//!   released; a zero price cancels; a declined card refuses the hold;
//! - partial refunds through the outbox, run twice, refunded once, and
//!   never more than was captured;
//! - a capture retried after a crash (the gateway captured, the CSMS had
//!   not recorded it): captured once, the receipt right;
//! - end to end: a driver saves a card through the app API, starts from the
//!   app on a 1.6 station, is charged by card at the stop, and the
//!   gateway's webhook (recorded as localstripe sent it) replayed twice is
//!   applied once; a forged or stale one is refused.
//!
//! localstripe has no `Idempotency-Key` support: the keys are sent, and
//! safety on retry comes from reading the intent's state first (tested).

mod common;

use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use csms::payments::{Hold, PaymentProvider, Receipt, Wallets};
use csms::store::Store;
use csms::store_drivers::DriverStore;
use csms::stripe::StripeConfig;
use evproto_csms_core::money::Money;
use rust_decimal::Decimal;
use serde_json::{json, Value};

const SECRET: &str = "sk_test_evproto_localstripe";
const WEBHOOK_SECRET: &str = "whsec_evproto_test";

/// A localstripe on a free port, killed when dropped.
struct LocalStripe {
    child: Child,
    port: u16,
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LocalStripe {
    async fn start() -> LocalStripe {
        let py = test_support::peers::venv("venv-localstripe", &["localstripe==1.15.10"]);
        let bin = py.parent().unwrap().join("localstripe");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--from-scratch"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("localstripe starts");
        let ls = LocalStripe { child, port };
        let _ = rustls::crypto::ring::default_provider().install_default();
        // a loaded machine can take many seconds to start the Python server
        for _ in 0..600 {
            if ls.get("/v1/customers").await.is_some() {
                return ls;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("localstripe did not answer on {port}");
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn config(&self) -> StripeConfig {
        StripeConfig {
            api_base: self.base(),
            secret_key: SECRET.into(),
            webhook_secret: Some(WEBHOOK_SECRET.into()),
        }
    }

    async fn get(&self, path: &str) -> Option<Value> {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", self.base()))
            .bearer_auth(SECRET)
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(())?;
        r.json().await.ok()
    }

    async fn post(&self, path: &str, form: &str) -> Value {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.base()))
            .bearer_auth(SECRET)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form.to_owned())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        // the configuration routes answer with an empty body
        r.json().await.unwrap_or(Value::Null)
    }

    /// A card payment method as Stripe.js makes it in an app.
    async fn card(&self, number: &str) -> String {
        let pm = self
            .post(
                "/v1/payment_methods",
                &format!("type=card&card[number]={number}&card[exp_month]=12&card[exp_year]=2031&card[cvc]=123"),
            )
            .await;
        pm["id"].as_str().unwrap().to_owned()
    }

    async fn intent(&self, id: &str) -> Value {
        self.get(&format!("/v1/payment_intents/{id}"))
            .await
            .unwrap()
    }

    /// A charge's refunds, newest first (localstripe records a partial
    /// capture's release as a refund of the rest).
    async fn refunds_of(&self, intent: &str) -> Vec<i64> {
        let l = self
            .get(&format!("/v1/refunds?payment_intent={intent}"))
            .await
            .unwrap();
        l["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["amount"].as_i64().unwrap())
            .collect()
    }
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn eur(s: &str) -> Money {
    Money::parse(d(s), "EUR").unwrap()
}

/// A store with a driver who pays by a card saved at the gateway, and the
/// payment providers over it.
struct Setup {
    wallets: Wallets,
    store: Store,
    dir: std::path::PathBuf,
}

async fn setup(name: &str, ls: &LocalStripe, card_number: &str) -> Setup {
    let dir = common::temp_dir(&format!("stripe-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("s.db").display());
    setup_on(name, &url, dir, ls, card_number).await
}

/// A fresh PostgreSQL database (`CSMS_TEST_POSTGRES`, default the local
/// server the e2e tests use); its URL.
async fn postgres_db(tag: &str) -> String {
    let admin = std::env::var("CSMS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("csms_stripe_{tag}_{}", std::process::id());
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
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').expect("a database in the URL");
    format!("{base}/{name}")
}

async fn setup_on(
    name: &str,
    url: &str,
    dir: std::path::PathBuf,
    ls: &LocalStripe,
    card_number: &str,
) -> Setup {
    let store = Store::open(url).await.unwrap();
    let wallets = Wallets::with_cards(store.clone(), Some(ls.config()));
    let drivers = DriverStore::new(store.clone());
    let driver = drivers
        .create_driver(&format!("{name}@example.com"), "x")
        .await
        .unwrap()
        .unwrap();
    assert!(drivers
        .claim_token(&driver.id, "CARD1", "app", "Central", None)
        .await
        .unwrap());
    let gw = wallets.cards().unwrap().gateway();
    let customer = gw.create_customer(&driver.id, &driver.email).await.unwrap();
    let pm = ls.card(card_number).await;
    let pm = gw.attach_payment_method(&pm, &customer.id).await.unwrap();
    assert_eq!(pm.customer.as_deref(), Some(customer.id.as_str()));
    drivers
        .save_card(&driver.id, &customer.id, &pm.id, "visa …4242")
        .await
        .unwrap();
    Setup {
        wallets,
        store,
        dir,
    }
}

impl Setup {
    async fn payment(&self, session: &str) -> csms::payments::CardPayment {
        let cards = self.wallets.cards().unwrap();
        cards.payment(session).await.unwrap().unwrap()
    }

    async fn intent_of(&self, session: &str) -> String {
        self.payment(session).await.intent.unwrap()
    }

    async fn status_of(&self, session: &str) -> String {
        self.payment(session).await.status
    }

    async fn pending_outbox(&self) -> Vec<(String, String, String)> {
        self.store.outbox_pending(100).await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_capture_cancel_and_partial_refunds() {
    let ls = LocalStripe::start().await;
    let s = setup("flow", &ls, "4242424242424242").await;
    card_flow(&ls, &s).await;
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// The same on PostgreSQL (its types: SUM of BIGINT is NUMERIC there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_capture_cancel_and_partial_refunds_on_postgres() {
    let ls = LocalStripe::start().await;
    let url = postgres_db("flow").await;
    let dir = common::temp_dir("stripe-flow-pg");
    let s = setup_on("flowpg", &url, dir, &ls, "4242424242424242").await;
    card_flow(&ls, &s).await;
}

async fn card_flow(ls: &LocalStripe, s: &Setup) {
    let w = &s.wallets;
    // hold 30.00 on the card: an intent waiting for capture, again the same
    assert_eq!(
        w.hold("S1", "CARD1", d("30")).await.unwrap(),
        Hold::Held(d("30.00"))
    );
    assert_eq!(
        w.hold("S1", "CARD1", d("30")).await.unwrap(),
        Hold::Held(d("30.00"))
    );
    let pi = s.intent_of("S1").await;
    let at_gateway = ls.intent(&pi).await;
    assert_eq!(
        (at_gateway["status"].as_str(), at_gateway["amount"].as_i64()),
        (Some("requires_capture"), Some(3000))
    );
    assert_eq!(at_gateway["capture_method"], "manual");
    // capture the final price, 12.34: the rest of the hold goes back
    let r = w.capture("S1", eur("12.34")).await.unwrap().unwrap();
    let Receipt::Card(card) = &r else {
        panic!("not a card receipt: {r:?}")
    };
    assert_eq!(
        (
            card.charged.as_str(),
            card.unpaid.as_str(),
            card.held.as_str()
        ),
        ("12.34", "0.00", "30.00"),
        "{r:?}"
    );
    assert_eq!(r.provider(), "card");
    assert_eq!(ls.intent(&pi).await["status"], "succeeded");
    assert_eq!(
        ls.refunds_of(&pi).await,
        vec![3000 - 1234],
        "the uncaptured rest"
    );
    // again: the same receipt, nothing more captured
    assert_eq!(w.capture("S1", eur("99")).await.unwrap().unwrap(), r);
    assert_eq!(ls.refunds_of(&pi).await, vec![1766]);

    // a hold given back
    assert_eq!(
        w.hold("S2", "CARD1", d("30")).await.unwrap(),
        Hold::Held(d("30.00"))
    );
    w.release("S2").await.unwrap();
    w.release("S2").await.unwrap();
    assert_eq!(
        ls.intent(&s.intent_of("S2").await).await["status"],
        "canceled"
    );
    assert_eq!(s.status_of("S2").await, "Released");
    // nothing owed: the hold is cancelled, nothing charged
    w.hold("S3", "CARD1", d("30")).await.unwrap();
    let r = w.capture("S3", eur("0")).await.unwrap().unwrap();
    assert_eq!(r.charged(), "0.00");
    assert_eq!(
        ls.intent(&s.intent_of("S3").await).await["status"],
        "canceled"
    );
    assert_eq!(s.status_of("S3").await, "Released");
    // a price above the hold: the hold is captured, the rest unpaid
    w.hold("S4", "CARD1", d("5")).await.unwrap();
    let r = w.capture("S4", eur("7.50")).await.unwrap().unwrap();
    assert_eq!((r.charged(), r.unpaid()), ("5.00", "2.50"));
    // a token without a card stays on the wallet side (post-paid here)
    assert_eq!(
        w.hold("S5", "NO-CARD", d("5")).await.unwrap(),
        Hold::NotApplicable
    );

    // partial refunds of S1 (12.34 captured): 4.00, then 8.34; more is refused
    let cards = w.cards().unwrap();
    let r1 = cards.refund("S1", eur("4.00")).await.unwrap();
    let pending = s.pending_outbox().await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(
        (pending[0].1.as_str(), pending[0].2.as_str()),
        ("card_refund", r1.as_str())
    );
    // run twice (a crash between the refund and its mark): refunded once
    cards
        .run_outbox(
            &pending[0].0,
            &pending[0].1,
            &pending[0].2,
            Duration::from_millis(10),
        )
        .await;
    cards
        .run_outbox(
            &pending[0].0,
            &pending[0].1,
            &pending[0].2,
            Duration::from_millis(10),
        )
        .await;
    assert!(s.pending_outbox().await.is_empty());
    assert_eq!(
        ls.refunds_of(&pi)
            .await
            .iter()
            .filter(|a| **a == 400)
            .count(),
        1
    );
    assert_eq!(
        cards.payment("S1").await.unwrap().unwrap().refunded_minor,
        400
    );
    assert!(
        cards.refund("S1", eur("8.35")).await.is_err(),
        "more than captured"
    );
    assert!(
        cards.refund("S2", eur("1")).await.is_err(),
        "nothing captured"
    );
    let r2 = cards.refund("S1", eur("8.34")).await.unwrap();
    assert_ne!(r1, r2);
    let pending = s.pending_outbox().await;
    cards
        .run_outbox(
            &pending[0].0,
            &pending[0].1,
            &pending[0].2,
            Duration::from_millis(10),
        )
        .await;
    assert_eq!(
        cards.payment("S1").await.unwrap().unwrap().refunded_minor,
        1234
    );
    assert!(
        cards.refund("S1", eur("0.01")).await.is_err(),
        "all refunded"
    );
    let _ = std::fs::remove_dir_all(&s.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_card_refuses_the_hold() {
    let ls = LocalStripe::start().await;
    // localstripe declines charges on this test number, as Stripe does
    let s = setup("declined", &ls, "4000000000000341").await;
    assert_eq!(
        s.wallets.hold("D1", "CARD1", d("30")).await.unwrap(),
        Hold::Refused
    );
    assert_eq!(
        s.wallets.hold("D1", "CARD1", d("30")).await.unwrap(),
        Hold::Refused
    );
    assert_eq!(s.status_of("D1").await, "Refused");
    assert!(s.wallets.capture("D1", eur("3")).await.unwrap().is_none());
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// The process captured at the gateway and died before it wrote that down:
/// the `bill` entry runs again, the capture is asked again, and the intent
/// is found captured: recorded, not captured twice (localstripe would
/// refuse a second capture with a 400, failing the retry for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_retried_after_a_crash_charges_once() {
    let ls = LocalStripe::start().await;
    let s = setup("crash", &ls, "4242424242424242").await;
    let w = &s.wallets;
    w.hold("C1", "CARD1", d("20")).await.unwrap();
    let pi = s.intent_of("C1").await;
    // what the crashed run did: marked the row Capturing, captured 9.99
    sqlx::query("UPDATE card_payments SET status = 'Capturing' WHERE session_id = 'C1'")
        .execute(s.store.pool())
        .await
        .unwrap();
    w.cards()
        .unwrap()
        .gateway()
        .capture("C1", &pi, 999)
        .await
        .unwrap();
    assert_eq!(ls.intent(&pi).await["status"], "succeeded");
    // the retry
    let r = w.capture("C1", eur("9.99")).await.unwrap().unwrap();
    assert_eq!(r.charged(), "9.99", "{r:?}");
    assert_eq!(s.status_of("C1").await, "Captured");
    assert_eq!(
        ls.refunds_of(&pi).await,
        vec![2000 - 999],
        "one capture of 9.99"
    );
    // and once more: the stored receipt
    assert_eq!(w.capture("C1", eur("9.99")).await.unwrap().unwrap(), r);
    // the gateway down at capture time: no receipt now, a card_capture entry
    // retries it (the bill entry itself completes)
    w.hold("C2", "CARD1", d("20")).await.unwrap();
    let down = Wallets::with_cards(
        s.store.clone(),
        Some(StripeConfig {
            api_base: "http://127.0.0.1:9".into(),
            ..ls.config()
        }),
    );
    assert!(down.capture("C2", eur("3.00")).await.unwrap().is_none());
    let pending = s.pending_outbox().await;
    assert_eq!(
        pending
            .iter()
            .map(|p| (p.1.as_str(), p.2.as_str()))
            .collect::<Vec<_>>(),
        vec![("card_capture", "C2")]
    );
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// A webhook delivery recorded as localstripe sent it.
#[derive(Clone, Debug)]
struct Delivery {
    signature: String,
    body: Vec<u8>,
}

/// An HTTP server that records webhook deliveries.
async fn recorder() -> (u16, tokio::sync::mpsc::UnboundedReceiver<Delivery>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(Delivery {
                        signature: headers
                            .get("stripe-signature")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned(),
                        body: body.to_vec(),
                    });
                    "ok"
                }
            },
        ),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await });
    (port, rx)
}

async fn post_webhook(port: u16, body: &[u8], signature: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhooks/stripe"))
        .header("Stripe-Signature", signature)
        .header("Content-Type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// The whole card path through the app API and a 1.6 station, and the
/// gateway's webhook replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_card_payment_end_to_end_and_webhook_applied_once() {
    use evproto_ocpp_client::{Client, ClientConfig, MemoryStore as Queue};
    use evproto_ocpp_proto::ProtocolVersion;
    use evproto_ocpp_rpc::{Ctx, Router};
    use evproto_ocpp_types::v16;

    let ls = LocalStripe::start().await;
    // the only test of this binary that starts a CSMS: the gateway comes
    // from the environment, as in production
    std::env::set_var("CSMS_STRIPE_SECRET_KEY", SECRET);
    std::env::set_var("CSMS_STRIPE_API_BASE", ls.base());
    std::env::set_var("CSMS_STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET);
    let key = "stripe-e2e-api-key-0123456789";
    let dir = common::temp_dir("stripe-e2e");
    let csms = common::InProcess::start(common::lab_config(&dir, key)).await;
    let public = csms.started.http_port;
    let admin = csms.started.admin_port;
    let op = |m: &'static str, p: &'static str, b: Option<Value>| common::api(key, admin, m, p, b);
    let tariff = json!({"currency": "EUR", "elements": [{"price_components": [
        {"type": "ENERGY", "price": 0.30, "vat": 20.0, "step_size": 1}]}]});
    assert_eq!(op("PUT", "/api/tariffs/default", Some(tariff)).await.0, 201);
    let loc = json!({"location": {"name": "Depot", "address": "Stationsplein 1", "city": "Utrecht",
        "postal_code": "3511", "country": "NLD", "time_zone": "Europe/Amsterdam",
        "coordinates": {"latitude": "52.0894", "longitude": "5.1100"}}});
    op("PUT", "/api/stations/CARD16", Some(loc)).await;
    // localstripe delivers its events to the CSMS and to the test's recorder
    let (rec_port, mut deliveries) = recorder().await;
    for (id, url) in [
        ("csms", format!("http://127.0.0.1:{public}/webhooks/stripe")),
        ("recorder", format!("http://127.0.0.1:{rec_port}/hook")),
    ] {
        ls.post(
            &format!("/_config/webhooks/{id}"),
            &format!("url={url}&secret={WEBHOOK_SECRET}"),
        )
        .await;
    }

    let app = |m: &'static str, p: &'static str, t: Option<String>, b: Option<Value>| async move {
        let mut rb = reqwest::Client::new().request(
            reqwest::Method::from_bytes(m.as_bytes()).unwrap(),
            format!("http://127.0.0.1:{public}{p}"),
        );
        if let Some(t) = t {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = b {
            rb = rb
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let r = rb.send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json::<Value>().await.unwrap_or(Value::Null))
    };
    let creds = json!({"email": "card@example.com", "password": "correct horse battery"});
    assert_eq!(
        app("POST", "/app/v1/signup", None, Some(creds.clone()))
            .await
            .0,
        201
    );
    let (_, b) = app("POST", "/app/v1/signin", None, Some(creds)).await;
    let t = b["access_token"].as_str().unwrap().to_owned();
    let (s, tok) = app(
        "POST",
        "/app/v1/tokens",
        Some(t.clone()),
        Some(json!({"kind": "app"})),
    )
    .await;
    assert_eq!(s, 201);
    let token = tok["id_token"].as_str().unwrap().to_owned();
    // the app's Stripe.js made a payment method; the CSMS saves it
    let pm = ls.card("4242424242424242").await;
    let (s, me) = app(
        "POST",
        "/app/v1/me/card",
        Some(t.clone()),
        Some(json!({"payment_method": pm})),
    )
    .await;
    assert_eq!((s, me["payment"].as_str()), (200, Some("card")), "{me}");
    assert!(me["card"].as_str().unwrap().ends_with("4242"), "{me}");
    // a payment method that does not exist: the gateway's refusal in words
    let (s, b) = app(
        "POST",
        "/app/v1/me/card",
        Some(t.clone()),
        Some(json!({"payment_method": "pm_nope"})),
    )
    .await;
    assert_eq!((s, b["error"].is_string()), (422, true), "{b}");

    // a 1.6 station that accepts remote starts
    let (tx, mut asked) = tokio::sync::mpsc::unbounded_channel::<String>();
    let routes = Router::station_v16()
        .on::<v16::action::RemoteStartTransaction>(
            |ctx: Ctx<tokio::sync::mpsc::UnboundedSender<String>>,
             req: v16::RemoteStartTransactionRequest| async move {
                let _ = ctx.state.send(req.id_tag.to_string());
                Ok(evproto_ocpp_types::from_str(r#"{"status":"Accepted"}"#).unwrap())
            },
        )
        .with_state(tx);
    let station = Client::start(
        ClientConfig::new(
            format!("ws://127.0.0.1:{}/ocpp/", csms.started.ocpp_port),
            "CARD16",
            ProtocolVersion::V16,
        ),
        routes,
        r#"{"chargePointVendor":"V","chargePointModel":"M"}"#,
        Queue::default(),
    );
    station.wait_ready(Duration::from_secs(20)).await.unwrap();
    let call = |action: &'static str, payload: Value| {
        let peer = station.peer().unwrap();
        async move {
            serde_json::from_str::<Value>(
                &peer.call_raw(action, payload.to_string()).await.unwrap(),
            )
            .unwrap()
        }
    };
    call(
        "StatusNotification",
        json!({"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
    )
    .await;
    let (s, b) = app(
        "POST",
        "/app/v1/sessions",
        Some(t.clone()),
        Some(json!({"station": "CARD16", "evse": 1})),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let id_tag = tokio::time::timeout(Duration::from_secs(10), asked.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id_tag, token);
    let at = |min: i64| {
        (chrono::Utc::now() - chrono::Duration::minutes(min))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let start = call(
        "StartTransaction",
        json!({"connectorId": 1, "idTag": id_tag, "meterStart": 0, "timestamp": at(20)}),
    )
    .await;
    assert_eq!(
        start["idTagInfo"]["status"], "Accepted",
        "the card hold succeeded: {start}"
    );
    let tx_id = start["transactionId"].as_i64().unwrap();
    let session = format!("CARD16:{tx_id}");
    // 10 kWh × 0.30 × 1.2 = 3.60, captured on the card at the stop
    call(
        "StopTransaction",
        json!({"transactionId": tx_id, "meterStop": 10000, "timestamp": at(0), "reason": "Local"}),
    )
    .await;
    let path = format!("/app/v1/sessions/{session}/receipt");
    let path: &'static str = Box::leak(path.into_boxed_str());
    let (s, r) = app("GET", path, Some(t.clone()), None).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (
            r["total_incl_vat"].as_str(),
            r["payment"]["provider"].as_str()
        ),
        (Some("3.60"), Some("card")),
        "{r}"
    );
    assert_eq!(
        (
            r["payment"]["status"].as_str(),
            r["payment"]["charged"].as_str()
        ),
        (Some("Captured"), Some("3.60")),
        "{r}"
    );

    // localstripe's payment_intent.succeeded, as delivered (about a second later)
    let delivery = loop {
        let d = tokio::time::timeout(Duration::from_secs(15), deliveries.recv())
            .await
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_slice(&d.body).unwrap();
        if v["type"] == "payment_intent.succeeded" {
            break d;
        }
    };
    let event: Value = serde_json::from_slice(&delivery.body).unwrap();
    let store = Store::open(&format!(
        "sqlite://{}?mode=rwc",
        dir.join("csms.db").display()
    ))
    .await
    .unwrap();
    // replayed twice: both answered, applied once (the CSMS's own delivery or the first replay)
    let mut duplicates = 0;
    for _ in 0..2 {
        let (s, b) = post_webhook(public, &delivery.body, &delivery.signature).await;
        assert_eq!((s, b["received"].as_bool()), (200, Some(true)), "{b}");
        duplicates += usize::from(b["duplicate"] == true);
    }
    assert!(duplicates >= 1);
    {
        let n: i64 = sqlx::Row::try_get(
            &sqlx::query("SELECT COUNT(*) FROM gateway_events WHERE id = $1")
                .bind(event["id"].as_str().unwrap())
                .fetch_one(store.pool())
                .await
                .unwrap(),
            0,
        )
        .unwrap();
        assert_eq!(n, 1);
        let gs: Option<String> = sqlx::Row::try_get(
            &sqlx::query("SELECT gateway_status FROM card_payments WHERE session_id = $1")
                .bind(&session)
                .fetch_one(store.pool())
                .await
                .unwrap(),
            0,
        )
        .unwrap();
        assert_eq!(gs.as_deref(), Some("succeeded"));
    }
    // forged, tampered and stale deliveries are refused
    let (s, _) = post_webhook(public, &delivery.body, "t=1,v1=00").await;
    assert_eq!(s, 400);
    let mut tampered = delivery.body.clone();
    tampered.extend_from_slice(b" ");
    let (s, _) = post_webhook(public, &tampered, &delivery.signature).await;
    assert_eq!(s, 400);
    let old = chrono::Utc::now().timestamp() - 3600;
    let stale = format!(
        "t={old},v1={}",
        csms::stripe::sign(WEBHOOK_SECRET, old, &delivery.body)
    );
    let (s, b) = post_webhook(public, &delivery.body, &stale).await;
    assert_eq!((s, b["error"].is_string()), (400, true), "{b}");

    station.shutdown().await;
    csms.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
