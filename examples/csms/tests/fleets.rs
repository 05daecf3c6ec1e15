//! Fleets, their monthly invoices and e-mail, end to end: the CSMS
//! in-process, a 1.6 station on `ocpp-client`, and an SMTP server from
//! PyPI (`aiosmtpd`, with `pypdf` to read the attached PDF; a venv under
//! the evproto cache, as `.ci/run` installs it):
//!
//! - a fleet owns a card, a vehicle and a driver (its manager); their
//!   sessions hold nothing (a wallet of 0 does not refuse a fleet card) and
//!   are on the fleet's invoice of the month, another driver's are not;
//! - the invoice's lines and totals per tax rate (two rates: the tariff
//!   changes between sessions) are recomputed here from the CDRs;
//! - numbers are gap-free: a month invoiced twice or with nothing to
//!   invoice uses no number; a credit note has its own series;
//! - CSV and PDF exports; the invoice e-mailed with its PDF attached, the
//!   PDF's text read back;
//! - a credit note for a disputed session, once;
//! - the monthly run (`POST /api/invoicing/run` with the time it believes
//!   it is): the month's invoice of each fleet that has none, e-mailed;
//!   run again, none more: exactly one invoice per fleet and month;
//! - fleet managers in the app API see their own fleet's documents only;
//! - drivers get e-mails: session started and ended, a receipt for a paid
//!   session, a failed payment.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use chrono::{Datelike, TimeZone, Utc};
use evproto_ocpp_client::{Client, ClientConfig, MemoryStore as Queue};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_rpc::Router;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};

const KEY: &str = "fleets-test-key-0123456789";

/// The SMTP sink (tests/fleets/smtp_sink.py), killed when dropped; each
/// message it receives is a JSON file in `dir`.
struct SmtpSink {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sink's packages, as `.ci/run` installs them.
const MAIL_PACKAGES: &[&str] = &["aiosmtpd==1.4.6", "pypdf==7.1.0"];

impl SmtpSink {
    fn start(dir: &Path) -> SmtpSink {
        let py = test_support::peers::venv("venv-mail", MAIL_PACKAGES);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = dir.join("mail");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fleets/smtp_sink.py");
        let mut child = Command::new(py)
            .arg(script)
            .arg(port.to_string())
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the SMTP sink starts");
        // it prints "ready" once it listens
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "ready");
        SmtpSink { child, port, dir }
    }

    /// The messages received so far, in order.
    fn received(&self) -> Vec<Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.retain(|p| p.extension().is_some_and(|e| e == "json"));
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }

    /// Waits (a minute at most) until a message with `subject` arrived.
    async fn wait_for(&self, subject: &str) -> Value {
        for _ in 0..600 {
            if let Some(m) = self
                .received()
                .into_iter()
                .find(|m| m["subject"].as_str() == Some(subject))
            {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no e-mail {subject:?}; received: {:?}",
            self.received()
                .iter()
                .map(|m| m["subject"].clone())
                .collect::<Vec<_>>()
        );
    }
}

/// An HTTP request: (status, JSON body or the text as a string, raw bytes).
async fn http(
    port: u16,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, Vec<u8>) {
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
    let bytes = r.bytes().await.unwrap().to_vec();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        bytes,
    )
}

struct Lab {
    csms: common::InProcess,
}

impl Lab {
    async fn op(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (s, b, _) = http(self.csms.started.admin_port, method, path, Some(KEY), body).await;
        (s, b)
    }

    async fn op_bytes(&self, path: &str) -> (u16, Vec<u8>) {
        let (s, _, bytes) = http(self.csms.started.admin_port, "GET", path, Some(KEY), None).await;
        (s, bytes)
    }

    async fn app(
        &self,
        method: &str,
        path: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (s, b, _) = http(
            self.csms.started.http_port,
            method,
            path,
            Some(bearer),
            body,
        )
        .await;
        (s, b)
    }

    /// Signs a driver up and in: (bearer, driver id).
    async fn driver(&self, email: &str) -> (String, String) {
        let creds = json!({"email": email, "password": "correct horse battery"});
        let port = self.csms.started.http_port;
        let (s, b, _) = http(port, "POST", "/app/v1/signup", None, Some(creds.clone())).await;
        assert_eq!(s, 201, "{b}");
        let id = b["id"].as_str().unwrap().to_owned();
        let (s, b, _) = http(port, "POST", "/app/v1/signin", None, Some(creds)).await;
        assert_eq!(s, 200, "{b}");
        (b["access_token"].as_str().unwrap().to_owned(), id)
    }

    /// A driver's RFID card, claimed in the app.
    async fn card(&self, bearer: &str, uid: &str) {
        let (s, b) = self
            .app(
                "POST",
                "/app/v1/tokens",
                bearer,
                Some(json!({"kind": "rfid", "id_token": uid})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }

    async fn fleet(&self, name: &str, email: &str) -> String {
        let (s, b) = self
            .op(
                "POST",
                "/api/fleets",
                Some(json!({"name": name, "email": email})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        b["id"].as_str().unwrap().to_owned()
    }

    async fn tariff(&self, vat: &str, energy: &str, flat: &str) {
        let t = json!({"currency": "EUR", "elements": [{"price_components": [
            {"type": "ENERGY", "price": Decimal::from_str(energy).unwrap(), "vat": Decimal::from_str(vat).unwrap(), "step_size": 1},
            {"type": "FLAT", "price": Decimal::from_str(flat).unwrap(), "vat": Decimal::from_str(vat).unwrap(), "step_size": 1}]}]});
        let (s, b) = self.op("PUT", "/api/tariffs/default", Some(t)).await;
        assert!(s == 200 || s == 201, "{s} {b}");
    }
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

/// Noon UTC on `day` of the month before this one.
fn last_month(day: u32, hour: u32) -> chrono::DateTime<Utc> {
    let now = Utc::now();
    let first = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .unwrap();
    let prev = first - chrono::Duration::days(1);
    Utc.with_ymd_and_hms(prev.year(), prev.month(), day, hour, 0, 0)
        .unwrap()
}

fn rfc(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A session on the 1.6 station from `start` for an hour, `wh` delivered:
/// the start's idTagInfo status and the session's id.
async fn session(
    station: &Client,
    token: &str,
    start: chrono::DateTime<Utc>,
    wh: i64,
) -> (String, String) {
    let s = call(
        station,
        "StartTransaction",
        json!({"connectorId": 1, "idTag": token, "meterStart": 0, "timestamp": rfc(start)}),
    )
    .await;
    let tx = s["transactionId"].as_i64().unwrap();
    call(
        station,
        "StopTransaction",
        json!({"transactionId": tx, "meterStop": wh, "timestamp": rfc(start + chrono::Duration::hours(1)), "reason": "Local"}),
    )
    .await;
    (
        s["idTagInfo"]["status"].as_str().unwrap().to_owned(),
        format!("FLT16:{tx}"),
    )
}

/// The session's CDR once it is priced.
async fn cdr(lab: &Lab, session: &str) -> Value {
    for _ in 0..200 {
        let (s, b) = lab
            .op("GET", &format!("/api/sessions/{session}/cdr"), None)
            .await;
        if s == 200 {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("session {session} was not priced");
}

fn dec(v: &Value) -> Decimal {
    match v {
        Value::String(s) => Decimal::from_str(s).unwrap(),
        other => Decimal::from_str(&other.to_string()).unwrap(),
    }
}

/// Rounded to cents, half away from zero, as cents.
fn cents(d: Decimal) -> i64 {
    let r =
        (d * Decimal::from(100)).round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    i64::try_from(r).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_invoices_credit_notes_mail_and_managers() {
    let dir = common::temp_dir("fleets");
    std::fs::create_dir_all(&dir).unwrap();
    let sink = SmtpSink::start(&dir);
    // the only CSMS of this binary: e-mail is configured from the
    // environment, as in production
    std::env::set_var("CSMS_SMTP_URL", format!("smtp://127.0.0.1:{}", sink.port));
    std::env::set_var("CSMS_MAIL_FROM", "billing@cpo.example");
    let config = csms::config::Config {
        time_zone: "UTC".into(),
        outbox_retry_base: Duration::from_millis(200),
        ..common::lab_config(&dir, KEY)
    };
    let lab = Lab {
        csms: common::InProcess::start(config).await,
    };
    let loc = json!({"location": {"name": "Depot", "address": "Stationsplein 1", "city": "Utrecht",
        "postal_code": "3511", "country": "NLD", "time_zone": "Europe/Amsterdam",
        "coordinates": {"latitude": "52.0894", "longitude": "5.1100"}}});
    lab.op("PUT", "/api/stations/FLT16", Some(loc)).await;

    // fleet 1: a card, a vehicle, a manager who also drives
    let f1 = lab.fleet("Acme Vans", "AP@acme.example").await;
    let (s, b) = lab
        .op(
            "PUT",
            &format!("/api/fleets/{f1}/cards/fleetcard1"),
            Some(json!({"label": "pool card"})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["cards"][0]["id_token"], "FLEETCARD1");
    let (s, b) = lab
        .op(
            "POST",
            &format!("/api/fleets/{f1}/vehicles"),
            Some(json!({"plate": "VAN-01", "id_token": "VAN1TAG"})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (manager, manager_id) = lab.driver("boss@acme.example").await;
    lab.card(&manager, "BOSSCARD").await;
    let (s, b) = lab
        .op(
            "PUT",
            &format!("/api/fleets/{f1}/members/{manager_id}"),
            Some(json!({"role": "manager"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    // a card of the fleet is nobody else's; a driver is in one fleet
    let f2 = lab.fleet("Beta Taxis", "fin@beta.example").await;
    let (s, _) = lab
        .op(
            "PUT",
            &format!("/api/fleets/{f2}/cards/FLEETCARD1"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 409);
    let (s, _) = lab
        .op(
            "PUT",
            &format!("/api/fleets/{f2}/members/{manager_id}"),
            Some(json!({"role": "driver"})),
        )
        .await;
    assert_eq!(s, 409);
    lab.op(
        "PUT",
        &format!("/api/fleets/{f2}/cards/F2CARD"),
        Some(json!({})),
    )
    .await;
    let (manager2, manager2_id) = lab.driver("boss@beta.example").await;
    lab.op(
        "PUT",
        &format!("/api/fleets/{f2}/members/{manager2_id}"),
        Some(json!({"role": "manager"})),
    )
    .await;
    // drivers of no fleet: one pays by wallet, one has no credit
    let (payer, _) = lab.driver("payer@example.com").await;
    lab.card(&payer, "PAYERCARD").await;
    lab.op(
        "PUT",
        "/api/wallets/PAYERCARD",
        Some(json!({"balance": 50, "currency": "EUR"})),
    )
    .await;
    let (broke, _) = lab.driver("broke@example.com").await;
    lab.card(&broke, "BROKECARD").await;
    lab.op(
        "PUT",
        "/api/wallets/BROKECARD",
        Some(json!({"balance": 0, "currency": "EUR"})),
    )
    .await;
    // the fleet card has an empty wallet too: the fleet pays, nothing is held
    lab.op(
        "PUT",
        "/api/wallets/FLEETCARD1",
        Some(json!({"balance": 0, "currency": "EUR"})),
    )
    .await;

    let station = Client::start(
        ClientConfig::new(
            format!("ws://127.0.0.1:{}/ocpp/", lab.csms.started.ocpp_port),
            "FLT16",
            ProtocolVersion::V16,
        ),
        Router::station_v16().with_state(()),
        r#"{"chargePointVendor":"V","chargePointModel":"M"}"#,
        Queue::default(),
    );
    station.wait_ready(Duration::from_secs(20)).await.unwrap();

    // last month's sessions: 20 % VAT, then 9 %
    lab.tariff("20", "0.30", "1.00").await;
    let (st, s1) = session(&station, "FLEETCARD1", last_month(3, 8), 10_005).await;
    assert_eq!(st, "Accepted", "a fleet card holds nothing");
    let (st, s2) = session(&station, "BOSSCARD", last_month(4, 9), 7_777).await;
    assert_eq!(st, "Accepted");
    let (st, s_paid) = session(&station, "PAYERCARD", last_month(4, 12), 5_000).await;
    assert_eq!(st, "Accepted");
    let (st, _) = session(&station, "BROKECARD", last_month(4, 14), 1_000).await;
    assert_ne!(st, "Accepted", "no credit: the hold is refused");
    let cdr1 = cdr(&lab, &s1).await;
    let cdr2 = cdr(&lab, &s2).await;
    cdr(&lab, &s_paid).await;
    lab.tariff("9", "0.25", "0.50").await;
    let (_, s3) = session(&station, "VAN1TAG", last_month(5, 10), 12_345).await;
    let (_, s5) = session(&station, "F2CARD", last_month(6, 10), 3_000).await;
    let cdr3 = cdr(&lab, &s3).await;
    cdr(&lab, &s5).await;
    // fleet 4 is left to the monthly run
    let f4 = lab.fleet("Gamma Cabs", "ops@gamma.example").await;
    let (s, b) = lab
        .op(
            "PUT",
            &format!("/api/fleets/{f4}/cards/G4CARD"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (_, s6) = session(&station, "G4CARD", last_month(7, 10), 4_000).await;
    cdr(&lab, &s6).await;
    assert_eq!(
        lab.op("GET", &format!("/api/sessions/{s1}/payment"), None)
            .await
            .0,
        404,
        "no payment for a fleet's session"
    );

    // the invoice of last month, recomputed here from the CDRs
    let period = format!(
        "{:04}-{:02}",
        last_month(1, 0).year(),
        last_month(1, 0).month()
    );
    let year = Utc::now().year();
    let (s, inv) = lab
        .op(
            "POST",
            &format!("/api/fleets/{f1}/invoices"),
            Some(json!({"period": period})),
        )
        .await;
    assert_eq!(s, 201, "{inv}");
    let number = inv["number"].as_str().unwrap().to_owned();
    assert_eq!(number, format!("INV-{year}-000001"));
    assert_eq!(
        (
            inv["currency"].as_str(),
            inv["minor_unit"].as_u64(),
            inv["bill_to"].as_str()
        ),
        (Some("EUR"), Some(2), Some("ap@acme.example"))
    );
    let expect: Vec<(String, Decimal, i64, i64)> =
        [(&s1, &cdr1, "20"), (&s2, &cdr2, "20"), (&s3, &cdr3, "9")]
            .iter()
            .map(|(s, c, rate)| {
                let net = cents(dec(&c["total_cost"]["excl_vat"]));
                let rate = Decimal::from_str(rate).unwrap();
                let tax = cents(Decimal::new(net, 2) * rate / Decimal::from(100));
                ((*s).clone(), rate, net, tax)
            })
            .collect();
    let lines = inv["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 3, "{inv}");
    for (l, (s, rate, net, tax)) in lines.iter().zip(&expect) {
        assert_eq!(l["session_id"].as_str(), Some(s.as_str()));
        assert_eq!(l["station"], "FLT16");
        assert_eq!(dec(&l["tax_rate"]), *rate);
        assert_eq!(
            (
                l["net_minor"].as_i64(),
                l["tax_minor"].as_i64(),
                l["amount_minor"].as_i64()
            ),
            (Some(*net), Some(*tax), Some(net + tax)),
            "{l}"
        );
        assert!(l["energy_kwh"].is_string() || l["energy_kwh"].is_number());
    }
    let totals = inv["tax_totals"].as_array().unwrap();
    assert_eq!(totals.len(), 2, "{inv}");
    for t in totals {
        let rate = dec(&t["tax_rate"]);
        let of: Vec<_> = expect.iter().filter(|e| e.1 == rate).collect();
        let net: i64 = of.iter().map(|e| e.2).sum();
        let tax: i64 = of.iter().map(|e| e.3).sum();
        assert_eq!(
            (
                t["net_minor"].as_i64(),
                t["tax_minor"].as_i64(),
                t["amount_minor"].as_i64()
            ),
            (Some(net), Some(tax), Some(net + tax)),
            "{t}"
        );
    }
    let total: i64 = expect.iter().map(|e| e.2 + e.3).sum();
    assert_eq!(inv["total_minor"].as_i64(), Some(total));

    // gap-free: the month again, and a fleet with nothing, use no number
    let (s, b) = lab
        .op(
            "POST",
            &format!("/api/fleets/{f1}/invoices"),
            Some(json!({"period": period})),
        )
        .await;
    assert_eq!(s, 409, "{b}");
    let f3 = lab.fleet("Empty Ltd", "x@empty.example").await;
    let (s, _) = lab
        .op(
            "POST",
            &format!("/api/fleets/{f3}/invoices"),
            Some(json!({"period": period})),
        )
        .await;
    assert_eq!(s, 409);
    let (s, inv2) = lab
        .op(
            "POST",
            &format!("/api/fleets/{f2}/invoices"),
            Some(json!({"period": period})),
        )
        .await;
    assert_eq!(s, 201, "{inv2}");
    assert_eq!(inv2["number"], format!("INV-{year}-000002"));
    assert_eq!(inv2["lines"].as_array().unwrap().len(), 1);
    // the monthly run, as at the start of this month: fleet 4's invoice
    // only (1 and 2 have theirs, 3 has nothing), with the next number
    let start_of_month = {
        let n = Utc::now();
        Utc.with_ymd_and_hms(n.year(), n.month(), 1, 0, 30, 0)
            .unwrap()
    };
    let run = json!({"at": rfc(start_of_month)});
    let (s, r) = lab
        .op("POST", "/api/invoicing/run", Some(run.clone()))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["months"], json!([period]), "{r}");
    let inv4 = format!("INV-{year}-000003");
    assert_eq!(
        r["issued"],
        json!([{"fleet_id": f4, "period": period, "number": inv4}]),
        "{r}"
    );
    // again, and with no time (now: the same month): nothing more
    for body in [Some(run.clone()), None] {
        let (s, r) = lab.op("POST", "/api/invoicing/run", body).await;
        assert_eq!((s, &r["issued"]), (200, &json!([])), "{r}");
    }
    // exactly one invoice per fleet and month
    for (f, n) in [(&f1, 1), (&f2, 1), (&f3, 0), (&f4, 1)] {
        let (s, docs) = lab
            .op("GET", &format!("/api/fleets/{f}/invoices"), None)
            .await;
        assert_eq!(s, 200, "{docs}");
        let of_month = docs
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"] == "invoice" && d["period"] == period.as_str())
            .count();
        assert_eq!(of_month, n, "{f}: {docs}");
    }
    let (_, doc4) = lab.op("GET", &format!("/api/invoices/{inv4}"), None).await;
    assert_eq!(doc4["lines"][0]["session_id"], s6.as_str(), "{doc4}");
    let m4 = sink
        .wait_for(&format!("Invoice {inv4} for Gamma Cabs ({period})"))
        .await;
    assert_eq!(m4["rcpt_tos"], json!(["ops@gamma.example"]));
    // a time to come, or not one, is refused
    for bad in [json!({"at": "2999-01-01T00:00:00Z"}), json!({"at": "soon"})] {
        let (s, b) = lab.op("POST", "/api/invoicing/run", Some(bad)).await;
        assert_eq!((s, b["error"].is_string()), (400, true), "{b}");
    }

    // this month is not over
    let this_month = format!("{:04}-{:02}", Utc::now().year(), Utc::now().month());
    assert_eq!(
        lab.op(
            "POST",
            &format!("/api/fleets/{f1}/invoices"),
            Some(json!({"period": this_month}))
        )
        .await
        .0,
        409
    );
    assert_eq!(
        lab.op(
            "POST",
            &format!("/api/fleets/{f1}/invoices"),
            Some(json!({"period": "2026-13"}))
        )
        .await
        .0,
        400
    );

    // CSV: a row per line, per rate, and the total
    let (s, csv) = lab.op_bytes(&format!("/api/invoices/{number}/csv")).await;
    assert_eq!(s, 200);
    let csv = String::from_utf8(csv).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 1 + 3 + 2 + 1, "{csv}");
    assert!(
        rows[1].starts_with(&format!("{number},line,{s1},FLT16,")),
        "{csv}"
    );
    assert!(
        rows[6].ends_with(&format!(",{},EUR", Decimal::new(total, 2))),
        "{csv}"
    );
    // the PDF, as the e-mail carries it
    let (s, pdf) = lab.op_bytes(&format!("/api/invoices/{number}/pdf")).await;
    assert_eq!((s, &pdf[..5]), (200, &b"%PDF-"[..]));
    let mail = sink
        .wait_for(&format!("Invoice {number} for Acme Vans ({period})"))
        .await;
    assert_eq!(mail["rcpt_tos"], json!(["ap@acme.example"]));
    assert_eq!(mail["mail_from"], "billing@cpo.example");
    let att = &mail["attachments"][0];
    assert_eq!(
        (
            att["filename"].as_str(),
            att["content_type"].as_str(),
            att["bytes"].as_u64()
        ),
        (
            Some(format!("{number}.pdf").as_str()),
            Some("application/pdf"),
            Some(pdf.len() as u64)
        )
    );
    let text = att["text"].as_str().unwrap();
    assert!(text.contains(&format!("Invoice {number}")), "{text}");
    for (s, ..) in &expect {
        assert!(text.contains(s.as_str()), "{s} in {text}");
    }
    assert!(
        text.contains(&format!("total {} EUR", Decimal::new(total, 2))),
        "{text}"
    );

    // a credit note for the disputed vehicle session, once
    let (s, cn) = lab
        .op(
            "POST",
            &format!("/api/invoices/{number}/credit-notes"),
            Some(json!({"sessions": [s3], "reason": "the van was parked"})),
        )
        .await;
    assert_eq!(s, 201, "{cn}");
    assert_eq!(cn["number"], format!("CN-{year}-000001"));
    assert_eq!(cn["credits"], number.as_str());
    assert_eq!(
        cn["total_minor"].as_i64(),
        Some(-(expect[2].2 + expect[2].3))
    );
    let (s, _) = lab
        .op(
            "POST",
            &format!("/api/invoices/{number}/credit-notes"),
            Some(json!({"sessions": [s3], "reason": "again"})),
        )
        .await;
    assert_eq!(s, 409);
    let (s, _) = lab
        .op(
            "POST",
            &format!("/api/invoices/{number}/credit-notes"),
            Some(json!({"sessions": [s5], "reason": "not ours"})),
        )
        .await;
    assert_eq!(s, 404, "a session of another invoice");
    let cn_mail = sink
        .wait_for(&format!("Credit note CN-{year}-000001 for Acme Vans"))
        .await;
    assert!(cn_mail["attachments"][0]["text"]
        .as_str()
        .unwrap()
        .contains(&format!("Credits invoice {number}")));

    // managers: their own fleet only
    let (s, b) = lab.app("GET", "/app/v1/fleet", &manager, None).await;
    assert_eq!((s, b["id"].as_str()), (200, Some(f1.as_str())), "{b}");
    assert_eq!(b["vehicles"][0]["plate"], "VAN-01");
    let (s, b) = lab
        .app("GET", "/app/v1/fleet/invoices", &manager, None)
        .await;
    assert_eq!(s, 200);
    let mine: Vec<&str> = b
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["number"].as_str().unwrap())
        .collect();
    assert_eq!(mine.len(), 2, "the invoice and the credit note: {b}");
    assert!(mine.contains(&number.as_str()));
    let other = inv2["number"].as_str().unwrap();
    let (s, _) = lab
        .app(
            "GET",
            &format!("/app/v1/fleet/invoices/{other}"),
            &manager,
            None,
        )
        .await;
    assert_eq!(s, 404, "another fleet's invoice is none");
    let (s, _) = lab
        .app(
            "GET",
            &format!("/app/v1/fleet/invoices/{number}"),
            &manager2,
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, b) = lab
        .app(
            "GET",
            &format!("/app/v1/fleet/invoices/{other}"),
            &manager2,
            None,
        )
        .await;
    assert_eq!((s, b["number"].as_str()), (200, Some(other)));
    let (s, _, pdf) = http(
        lab.csms.started.http_port,
        "GET",
        &format!("/app/v1/fleet/invoices/{number}?format=pdf"),
        Some(&manager),
        None,
    )
    .await;
    assert_eq!((s, &pdf[..5]), (200, &b"%PDF-"[..]));
    let (s, _) = lab.app("GET", "/app/v1/fleet", &payer, None).await;
    assert_eq!(s, 403, "a driver of no fleet manages none");

    // the drivers' e-mails: started and ended, a receipt, a failed payment
    let m = sink.wait_for("Charging started at FLT16").await;
    assert!(
        sink.received()
            .iter()
            .any(|m| m["subject"] == "Charging started at FLT16"
                && m["rcpt_tos"] == json!(["boss@acme.example"])),
        "{m}"
    );
    sink.wait_for("Charging ended at FLT16").await;
    let r = sink.wait_for("Receipt for charging at FLT16").await;
    assert_eq!(r["rcpt_tos"], json!(["payer@example.com"]));
    assert!(r["text"].as_str().unwrap().contains(&s_paid), "{r}");
    let f = sink.wait_for("Payment failed for charging at FLT16").await;
    assert_eq!(f["rcpt_tos"], json!(["broke@example.com"]));
    // each once, however often the outbox ran
    let started_for_boss = sink
        .received()
        .iter()
        .filter(|m| {
            m["subject"] == "Charging started at FLT16"
                && m["rcpt_tos"] == json!(["boss@acme.example"])
        })
        .count();
    assert_eq!(started_for_boss, 1);

    lab.csms.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
