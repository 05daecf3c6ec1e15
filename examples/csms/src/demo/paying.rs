//! The demo's paying step: a driver signs up in the app, saves a card
//! against a `localstripe` (a local Stripe-compatible server) that the demo
//! starts when it is installed, starts and stops a charge from the app on
//! a simulated station, is charged by card (the captured amount in minor
//! units is the session's price) and gets a receipt; then a fleet's month
//! is invoiced.
//!
//! The card gateway is configured when a CSMS starts (from the
//! environment: `crate::stripe::StripeConfig::from_env`), so this step
//! runs its own CSMS next to the demo's, with the gateway when localstripe
//! was found. Without it the card sub-steps are recorded as skipped with
//! the reason (not failed): the driver then pays post-paid, and the fleet's
//! invoice is made all the same.
//!
//! The fleet's session must have ended in a month that is over (a month is
//! invoiced once it is), so it is run on a 1.6 station that reports its
//! own timestamps: the 15th of last month.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use evproto_ocpp_proto::ProtocolVersion;
use evproto_sim::{model::Behaviour, SimConfig};
use serde_json::{json, Value};

use super::{api, Steps, PASSWORD, TARIFF};

const SECRET: &str = "sk_test_evproto_demo";
/// What localstripe signs its webhook events with.
const WEBHOOK_SECRET: &str = "whsec_evproto_demo";
const DRIVER: &str = "demo-driver@example.com";
const FLEET_CARD: &str = "DEMOFLEET01";
/// The demo's charges are a few seconds long: the hold covers them.
const HOLD: i64 = 20;

/// A localstripe the step started, stopped when dropped.
struct LocalStripe {
    child: Child,
    base: String,
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where localstripe is installed: the evproto cache's venv (as the
/// tests install it), else on `PATH`.
fn localstripe_bin() -> Option<PathBuf> {
    let cache = std::env::var_os("EVPROTO_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/evproto")));
    let venv = cache.map(|c| c.join("venv-localstripe/bin/localstripe"));
    venv.filter(|p| p.is_file()).or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join("localstripe"))
            .find(|p| p.is_file())
    })
}

/// Starts localstripe on a free port; the reason when it cannot.
async fn start_localstripe() -> Result<LocalStripe, String> {
    let bin = localstripe_bin().ok_or(
        "localstripe is not installed (pip install localstripe into ~/.cache/evproto/venv-localstripe)",
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new(&bin)
        .args(["--port", &port.to_string(), "--from-scratch"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let ls = LocalStripe {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    // a loaded machine can take many seconds to start the Python server
    for _ in 0..600 {
        if gateway(&ls, "GET", "/v1/customers", "").await.is_ok() {
            return Ok(ls);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("localstripe did not answer on port {port}"))
}

/// A call to the gateway, as an app's Stripe.js would make it.
async fn gateway(ls: &LocalStripe, method: &str, path: &str, form: &str) -> Result<Value, String> {
    let r = reqwest::Client::new()
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?,
            format!("{}{path}", ls.base),
        )
        .bearer_auth(SECRET)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("{path}: {}", r.status()));
    }
    // the configuration routes answer with an empty body
    let text = r.text().await.map_err(|e| e.to_string())?;
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

/// An app API call (the driver's bearer token, when signed in).
async fn app(
    port: u16,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    // the app API takes no operator key: an empty bearer is no login
    api(port, token.unwrap_or_default(), method, path, body).await
}

/// A decimal amount in minor units of `currency`.
fn minor_units(amount: &Value, currency: &str) -> Option<i64> {
    let d: rust_decimal::Decimal = match amount {
        Value::String(s) => s.parse().ok()?,
        Value::Number(n) => n.to_string().parse().ok()?,
        _ => return None,
    };
    let c = evproto_csms_core::money::Currency::from_code(currency)?;
    evproto_csms_core::money::Money::try_round(d, c)
        .ok()
        .map(|m| m.minor())
}

/// Records a sub-step that could not run, and why (not a failure).
fn skipped(steps: &mut Steps, name: &str, reason: &str) {
    if !steps.json {
        eprintln!("skip {name}: {reason}");
    }
    steps
        .steps
        .push(json!({"step": name, "ok": true, "skipped": true, "reason": reason}));
}

/// The paying step (see the module's docs).
///
/// # Errors
///
/// Its CSMS could not start.
pub(super) async fn run(steps: &mut Steps) -> Result<(), String> {
    let ls = start_localstripe().await;
    if let Ok(ls) = &ls {
        // read once, when the CSMS below starts (as in production)
        std::env::set_var("CSMS_STRIPE_SECRET_KEY", SECRET);
        std::env::set_var("CSMS_STRIPE_API_BASE", &ls.base);
        std::env::set_var("CSMS_STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET);
    }
    let key = crate::store::random_hex(24);
    let csms = super::Csms::start(super::lab_config("demo-paying", &key, HOLD)).await;
    if ls.is_ok() {
        std::env::remove_var("CSMS_STRIPE_SECRET_KEY");
        std::env::remove_var("CSMS_STRIPE_API_BASE");
        std::env::remove_var("CSMS_STRIPE_WEBHOOK_SECRET");
    }
    let csms = csms?;
    let result = story(
        &csms.started,
        &key,
        ls.as_ref().map_err(String::as_str),
        steps,
    )
    .await;
    csms.stop().await;
    result
}

async fn story(
    started: &crate::Started,
    key: &str,
    ls: Result<&LocalStripe, &str>,
    steps: &mut Steps,
) -> Result<(), String> {
    let (admin, public) = (started.admin_port, started.http_port);
    let op = |method: &'static str, path: String, body: Option<Value>| async move {
        api(admin, key, method, &path, body.as_ref()).await
    };
    let tariff: Value = serde_json::from_str(TARIFF).unwrap_or_default();
    op("PUT", "/api/tariffs/default".into(), Some(tariff)).await?;

    // 1. the driver signs up and signs in; the app's own token
    let creds = json!({"email": DRIVER, "password": "correct horse battery staple"});
    let (s, me) = app(public, None, "POST", "/app/v1/signup", Some(&creds)).await?;
    let (_, login) = app(public, None, "POST", "/app/v1/signin", Some(&creds)).await?;
    let bearer = login["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (st, tok) = app(
        public,
        Some(&bearer),
        "POST",
        "/app/v1/tokens",
        Some(&json!({"kind": "app"})),
    )
    .await?;
    steps.record(
        "paying: driver signed up in the app",
        s == 201 && !bearer.is_empty() && st == 201,
        json!({"driver": me["id"], "email": DRIVER, "id_token": tok["id_token"]}),
    );

    // 2. a card saved through the gateway, which tells the CSMS what
    // happened to its payments (webhook events)
    let card = match ls {
        Ok(ls) => {
            let hook =
                format!("url=http://127.0.0.1:{public}/webhooks/stripe&secret={WEBHOOK_SECRET}");
            let hooked = gateway(ls, "POST", "/_config/webhooks/csms", &hook).await;
            let pm = gateway(ls, "POST", "/v1/payment_methods",
                "type=card&card[number]=4242424242424242&card[exp_month]=12&card[exp_year]=2031&card[cvc]=123").await;
            let pm = pm.map(|p| p["id"].as_str().unwrap_or_default().to_owned());
            let (s, me) = match &pm {
                Ok(pm) => {
                    app(
                        public,
                        Some(&bearer),
                        "POST",
                        "/app/v1/me/card",
                        Some(&json!({"payment_method": pm})),
                    )
                    .await?
                }
                Err(e) => (0, json!({"error": e})),
            };
            let ok = s == 200 && me["payment"] == "card";
            steps.record(
                "paying: card saved (localstripe)",
                ok,
                json!({"status": s, "card": me["card"], "payment": me["payment"], "webhook": hooked.map_or_else(|e| e, |_| "configured".to_owned())}),
            );
            ok
        }
        Err(reason) => {
            skipped(steps, "paying: card saved (localstripe)", reason);
            false
        }
    };

    // 3. a charge started and stopped from the app on a simulated station
    let location = json!({"password": PASSWORD, "location": {"name": "Demo paying site", "address": "Stationsplein 2",
        "city": "Utrecht", "country": "NLD", "coordinates": {"latitude": "52.089400", "longitude": "5.110000"},
        "time_zone": "Europe/Amsterdam"}});
    op("PUT", "/api/stations/PAY0".into(), Some(location)).await?;
    let sim = tokio::spawn(evproto_sim::run(
        SimConfig {
            url: format!("ws://127.0.0.1:{}/ocpp/", started.ocpp_port),
            stations: 1,
            versions: vec![ProtocolVersion::V201],
            connectors: (1, 1),
            duration: Duration::from_secs(60),
            prefix: "PAY".into(),
            password: Some(PASSWORD.into()),
            behaviour: Behaviour {
                // the driver starts and stops from the app only
                idle_ms: (600_000, 600_000),
                session_ms: (600_000, 600_000),
                meter_interval_ms: 500,
                max_power_w: 22_000.0,
                fault_per_s: 0.0,
                disconnect_per_s: 0.0,
                ..Behaviour::default()
            },
            ..SimConfig::default()
        },
        None,
    ));
    let session = charge_from_the_app(public, &bearer, steps).await;
    sim.abort();
    let Some(session) = session? else {
        return fleet_month(admin, key, started.ocpp_port, steps).await;
    };

    // 4. charged by card at the price; the receipt
    let (_, cdr) = op("GET", format!("/api/sessions/{session}/cdr"), None).await?;
    let currency = cdr["currency"].as_str().unwrap_or("EUR").to_owned();
    let price = minor_units(&cdr["total_cost"]["incl_vat"], &currency);
    if card {
        // the capture runs from the outbox, right after the session's end;
        // the gateway's event about it comes a second or so later
        let mut answer = (0, Value::Null);
        for _ in 0..80 {
            answer = op("GET", format!("/api/sessions/{session}/card-payment"), None).await?;
            if answer.1["status"] == "Captured" && answer.1["gateway_status"] == "succeeded" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let (s, paid) = answer;
        let (_, receipt) = app(
            public,
            Some(&bearer),
            "GET",
            &format!("/app/v1/sessions/{session}/receipt"),
            None,
        )
        .await?;
        let captured = paid["captured_minor"].as_i64();
        steps.record(
            "paying: charged by card, captured amount = the session's price, receipt",
            s == 200 && paid["status"] == "Captured" && price.is_some() && captured == price && receipt["payment"]["provider"] == "card",
            json!({"session": session, "currency": currency, "price_minor": price, "captured_minor": captured,
                "gateway_status": paid["gateway_status"], "receipt": receipt}),
        );
    } else {
        skipped(
            steps,
            "paying: charged by card, captured amount = the session's price, receipt",
            ls.err().unwrap_or("the card was not saved"),
        );
    }
    fleet_month(admin, key, started.ocpp_port, steps).await
}

/// Starts a charge from the app, lets it run a few seconds, stops it from
/// the app; the session once completed.
async fn charge_from_the_app(
    public: u16,
    bearer: &str,
    steps: &mut Steps,
) -> Result<Option<String>, String> {
    let mut start = (0, Value::Null);
    // the station boots first: its connector must be Available
    for _ in 0..60 {
        start = app(
            public,
            Some(bearer),
            "POST",
            "/app/v1/sessions",
            Some(&json!({"station": "PAY0", "evse": 1})),
        )
        .await?;
        if start.0 == 202 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut active = None;
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (_, list) = app(public, Some(bearer), "GET", "/app/v1/sessions", None).await?;
        active = list
            .as_array()
            .and_then(|l| l.iter().find(|s| s["status"] == "Active"))
            .and_then(|s| s["id"].as_str())
            .map(str::to_owned);
        if active.is_some() {
            break;
        }
    }
    let Some(id) = active else {
        steps.record(
            "paying: charge started and stopped from the app",
            false,
            json!({"start": start.1, "error": "no session started"}),
        );
        return Ok(None);
    };
    // a few meter values
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (stop, answer) = app(
        public,
        Some(bearer),
        "POST",
        &format!("/app/v1/sessions/{id}/stop"),
        None,
    )
    .await?;
    let mut done = Value::Null;
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (_, s) = app(
            public,
            Some(bearer),
            "GET",
            &format!("/app/v1/sessions/{id}"),
            None,
        )
        .await?;
        if s["status"] == "Completed" {
            done = s;
            break;
        }
    }
    let ok = start.0 == 202 && stop == 202 && done["status"] == "Completed";
    steps.record(
        "paying: charge started and stopped from the app",
        ok,
        json!({"session": id, "start": start.0, "stop": stop, "stop_answer": answer, "energy_wh": done["energy_wh"]}),
    );
    Ok(ok.then_some(id))
}

/// A fleet with a card that charged on the 15th of last month (a 1.6
/// station with its own timestamps); the month's invoice.
async fn fleet_month(
    admin: u16,
    key: &str,
    ocpp_port: u16,
    steps: &mut Steps,
) -> Result<(), String> {
    use chrono::Datelike;
    use evproto_ocpp_client::{Client, ClientConfig, MemoryStore};

    let op = |method: &'static str, path: String, body: Option<Value>| async move {
        api(admin, key, method, &path, body.as_ref()).await
    };
    let (_, fleet) = op(
        "POST",
        "/api/fleets".into(),
        Some(json!({"name": "Demo fleet", "email": "billing@demo-fleet.example"})),
    )
    .await?;
    let fleet_id = fleet["id"].as_str().unwrap_or_default().to_owned();
    op(
        "PUT",
        format!("/api/fleets/{fleet_id}/cards/{FLEET_CARD}"),
        Some(json!({"label": "pool car"})),
    )
    .await?;
    op(
        "PUT",
        "/api/stations/FLEET0".into(),
        Some(json!({"password": PASSWORD})),
    )
    .await?;
    let station = Client::start(
        ClientConfig::new(
            format!("ws://127.0.0.1:{ocpp_port}/ocpp/"),
            "FLEET0",
            ProtocolVersion::V16,
        )
        .with_password(PASSWORD),
        evproto_ocpp_rpc::Router::station_v16().into_routes(),
        r#"{"chargePointVendor":"evproto","chargePointModel":"demo"}"#,
        MemoryStore::default(),
    );
    station
        .wait_ready(Duration::from_secs(20))
        .await
        .map_err(|e| e.to_string())?;
    let call = |action: &'static str, payload: Value| {
        let peer = station.peer();
        async move {
            let peer = peer.ok_or("the fleet's station is not connected")?;
            let answer = peer
                .call_raw(action, payload.to_string())
                .await
                .map_err(|e| e.to_string())?;
            serde_json::from_str::<Value>(&answer).map_err(|e| e.to_string())
        }
    };
    let first = chrono::Utc::now()
        .date_naive()
        .with_day(1)
        .unwrap_or_default();
    let day = (first - chrono::Duration::days(20))
        .with_day(15)
        .unwrap_or(first);
    let period = format!("{:04}-{:02}", day.year(), day.month());
    let at = |h: u32| {
        day.and_hms_opt(h, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    call(
        "StatusNotification",
        json!({"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
    )
    .await?;
    let start = call(
        "StartTransaction",
        json!({"connectorId": 1, "idTag": FLEET_CARD, "meterStart": 0, "timestamp": at(9)}),
    )
    .await?;
    let tx = start["transactionId"].as_i64().unwrap_or_default();
    call(
        "StopTransaction",
        json!({"transactionId": tx, "meterStop": 18_500, "timestamp": at(11), "reason": "Local"}),
    )
    .await?;
    station.shutdown().await;
    let session = format!("FLEET0:{tx}");
    for _ in 0..50 {
        if op("GET", format!("/api/sessions/{session}/cdr"), None)
            .await?
            .0
            == 200
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, inv) = op(
        "POST",
        format!("/api/fleets/{fleet_id}/invoices"),
        Some(json!({"period": period})),
    )
    .await?;
    let on_it = inv["lines"]
        .as_array()
        .is_some_and(|l| l.iter().any(|l| l["session_id"] == session.as_str()));
    steps.record(
        "paying: a fleet's month invoiced",
        s == 201 && on_it && inv["total_minor"].as_i64().unwrap_or_default() > 0,
        json!({"fleet": fleet_id, "period": period, "session": session, "number": inv["number"], "currency": inv["currency"],
            "total_net_minor": inv["total_net_minor"], "total_tax_minor": inv["total_tax_minor"], "total_minor": inv["total_minor"],
            "tax_totals": inv["tax_totals"]}),
    );
    Ok(())
}
