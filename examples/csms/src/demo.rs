//! `csms demo`: the whole story in one command, on a temporary store.
//!
//! It starts the CSMS, registers a tariff, a driver token and three
//! stations (OCPP 1.6, 2.0.1, 2.1, Basic auth), runs them with the
//! `evproto` simulator (boot, authorization, charging with meter values),
//! puts a smart-charging limit on every active session through the operator
//! API (SetChargingProfile in each station's version), lets the drivers stop,
//! and checks that every session was stored, limited, priced and got its CDR,
//! and that the driver's prepaid wallet was held at start and charged the
//! price at the end, with a receipt. Then roaming: an eMSP partner built on
//! `ocpi` (its own OCPI server and client, in process) is registered from
//! the operator API by the credentials handshake, pushes its driver's
//! token, sees the new station's Location, starts a session remotely
//! (START_SESSION → RequestStartTransaction, result at its response_url),
//! and receives the session and its priced CDR. Then paying (a card at a
//! terminal, a fleet's invoice), the grid (a V2X session discharging under
//! a grid event) and Plug & Charge (a car gets a contract through the CSMS
//! over ISO 15118-2 and charges by it; the eMSP that owns the contract
//! pushes its token, type `EMAID`; the car plugs in again, is authorized by
//! its certificate, and the priced CDR goes to that eMSP).
//! Each step is reported; the exit status is 0 only if every step succeeded.
//! The dashboard stays browsable while it runs (its URL is printed first).

use std::time::Duration;

use evproto_ocpp_proto::ProtocolVersion;
use evproto_sim::{model::Behaviour, SimConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;

mod grid;
mod paying;
mod pnc;

const PASSWORD: &str = "demo-station-password";
const TOKEN: &str = "DEMO-TOKEN-1";
/// 0.30/kWh + 20 % VAT, 1.00 per session.
const TARIFF: &str = r#"{"currency": "EUR", "elements": [{"price_components": [
    {"type": "ENERGY", "price": 0.30, "vat": 20.0, "step_size": 1},
    {"type": "FLAT", "price": 1.00, "step_size": 1}]}]}"#;
/// The driver's prepaid wallet, and the hold per session.
const WALLET: i64 = 50;
const HOLD: i64 = 10;
/// The site limit spread over the active sessions, W.
const SITE_LIMIT_W: u32 = 11_000;

/// A minimal HTTP/1.1 call to the CSMS's own API: (status, JSON body).
async fn api(
    port: u16,
    key: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .map_err(|_| "API timeout".to_owned())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").ok_or("bad HTTP answer")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("bad HTTP status")?;
    let payload = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail.get(n + 2..).unwrap_or_default();
        }
        out
    } else {
        rest.to_owned()
    };
    Ok((
        status,
        serde_json::from_str(&payload).unwrap_or(Value::String(payload)),
    ))
}

struct Steps {
    steps: Vec<Value>,
    json: bool,
}

impl Steps {
    fn record(&mut self, name: &str, ok: bool, detail: Value) -> bool {
        if !self.json {
            eprintln!("{} {name}: {detail}", if ok { "ok  " } else { "FAIL" });
        }
        self.steps
            .push(json!({"step": name, "ok": ok, "detail": detail}));
        ok
    }
}

fn profile(version: &str, limit_w: u32) -> Value {
    let schedule = json!({"chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit_w}]});
    if version == "1.6" {
        json!({"connectorId": 1, "csChargingProfiles": {"chargingProfileId": 100, "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative", "chargingSchedule": schedule}})
    } else {
        let mut s = schedule;
        s["id"] = json!(100);
        json!({"evseId": 1, "chargingProfile": {"id": 100, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative", "chargingSchedule": [s]}})
    }
}

const ROAM_TOKEN: &str = "EMSP-DRIVER-1";

/// The demo's eMSP once registered: the CSMS as it sees it (its OCPI
/// client's peer, speaking for `DE`/`EMS`), what it received, and its
/// server (stopped when dropped).
struct Emsp {
    cpo: evproto_ocpi::client::Peer,
    store: std::sync::Arc<evproto_ocpi::server::MemoryStore>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Emsp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The eMSP side of the demo: its own OCPI server (in memory) and client;
/// kept for the Plug & Charge step (the contract's eMSP) once registered.
async fn roaming_story(
    port: u16,
    key: &str,
    ocpp_port: u16,
    steps: &mut Steps,
) -> Result<Option<Emsp>, String> {
    use evproto_ocpi::server::Store as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let emsp_base = format!(
        "http://{}/ocpi",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let mut own = evproto_ocpi::credentials::Own::with_role(
        &format!("{emsp_base}/versions"),
        "DE",
        "EMS",
        "EMSP",
        "Demo eMSP",
    );
    // the CSMS it talks to is on loopback over plain http
    own.policy = evproto_ocpi::credentials::UrlPolicy::lab();
    let store = std::sync::Arc::new(evproto_ocpi::server::MemoryStore::new());
    let client = evproto_ocpi::client::Client::new(own.policy).map_err(|e| e.to_string())?;
    let emsp = evproto_ocpi::server::Server::new(
        evproto_ocpi::server::Config {
            role: evproto_ocpi::server::Role::Emsp,
            base_url: emsp_base.clone(),
            own,
            max_limit: 100,
            token_encoding: evproto_ocpi::auth::TokenEncoding::Lenient,
            trailing_slash: false,
            storage_version: None,
        },
        store.clone(),
        std::sync::Arc::new(evproto_ocpi::server::NoHandler),
        client.clone(),
    );
    let app = axum::Router::new().nest_service("/ocpi", emsp.router());
    let emsp_task = tokio::spawn(async move { axum::serve(listener, app).await });
    let token_a = emsp
        .issue_token_a("csms")
        .await
        .map_err(|e| e.to_string())?;
    let (s, reg) = api(
        port,
        key,
        "POST",
        "/api/ocpi/partners",
        Some(&json!({"versions_url": format!("{emsp_base}/versions"), "token": token_a})),
    )
    .await?;
    steps.record(
        "roaming partner registered (OCPI credentials handshake)",
        s == 201,
        json!({"status": s, "partner": reg}),
    );
    let party = store
        .parties()
        .into_iter()
        .find(|p| p.id == "csms" && !p.token_a);
    let Some(reg) = party.and_then(|p| p.registration) else {
        steps.record(
            "eMSP pushed its driver's token",
            false,
            json!({"error": "no registration"}),
        );
        emsp_task.abort();
        return Ok(None);
    };
    let cpo = client.peer(reg).from_party("DE", "EMS");
    let token = json!({"country_code": "DE", "party_id": "EMS", "uid": ROAM_TOKEN, "type": "RFID",
        "contract_id": "DE-EMS-C00000001-X", "issuer": "Demo eMSP", "valid": true, "whitelist": "ALLOWED",
        "last_updated": crate::store::now()});
    let pushed = cpo.put("tokens", &["DE", "EMS", ROAM_TOKEN], &token).await;
    steps.record("eMSP pushed its driver's token", pushed.is_ok(), json!({"uid": ROAM_TOKEN, "result": pushed.map(|p| p.http_status).map_err(|e| e.to_string())}));
    let (s, _) = api(port, key, "PUT", "/api/stations/ROAM0", Some(&json!({"password": PASSWORD,
        "location": {"name": "Demo roaming site", "address": "Stationsplein 1", "city": "Amsterdam", "country": "NLD",
            "coordinates": {"latitude": "52.378900", "longitude": "4.900400"}, "time_zone": "Europe/Amsterdam"}}))).await?;
    let sim = tokio::spawn(evproto_sim::run(
        SimConfig {
            url: format!("ws://127.0.0.1:{ocpp_port}/ocpp/"),
            stations: 1,
            versions: vec![ProtocolVersion::V201],
            connectors: (1, 1),
            duration: Duration::from_secs(9),
            prefix: "ROAM".into(),
            password: Some(PASSWORD.into()),
            behaviour: Behaviour {
                // drivers only start remotely, from the eMSP's app
                idle_ms: (60_000, 60_000),
                session_ms: (3_000, 3_500),
                meter_interval_ms: 500,
                max_power_w: 22_000.0,
                fault_per_s: 0.0,
                disconnect_per_s: 0.0,
                tokens: vec![ROAM_TOKEN.into()],
                ..Behaviour::default()
            },
            ..SimConfig::default()
        },
        None,
    ));
    let mut location = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        location = store
            .get_object_sync("locations", "NL/EVP/ROAM0")
            .filter(|l| l["evses"].as_array().is_some_and(|e| !e.is_empty()));
        if location.is_some() {
            break;
        }
    }
    steps.record("station location published to the eMSP", s == 201 && location.is_some(),
        json!({"location": location.as_ref().map(|l| json!({"id": l["id"], "address": l["address"], "evses": l["evses"].as_array().map(Vec::len)}))}));
    let command = json!({"response_url": format!("{emsp_base}/2.2.1/commands/START_SESSION/demo-1"), "token": token,
        "location_id": "ROAM0", "evse_uid": "ROAM0-1"});
    let answer = cpo
        .post("commands", &["START_SESSION"], &command)
        .await
        .map(|p| p.data)
        .map_err(|e| e.to_string());
    let mut result = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        result = store.get_object_sync("command_results", "NL/EVP/START_SESSION/demo-1");
        if result.is_some() {
            break;
        }
    }
    steps.record(
        "eMSP started a session remotely (START_SESSION → RequestStartTransaction)",
        answer.as_ref().is_ok_and(|a| a["result"] == "ACCEPTED")
            && result.as_ref().is_some_and(|r| r["result"] == "ACCEPTED"),
        json!({"response": answer.unwrap_or_else(|e| json!(e)), "result": result}),
    );
    let report = sim.await.map_err(|e| e.to_string())??;
    let mut cdrs = Vec::new();
    let mut sessions = Vec::new();
    let page = evproto_ocpi::pagination::Page {
        offset: 0,
        limit: 100,
        date_from: None,
        date_to: None,
    };
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cdrs = store
            .list_objects("cdrs", &["NL/EVP/".into()], &page)
            .await
            .map_err(|e| e.to_string())?
            .0;
        sessions = store
            .list_objects("sessions", &["NL/EVP/".into()], &page)
            .await
            .map_err(|e| e.to_string())?
            .0;
        if !cdrs.is_empty() {
            break;
        }
    }
    let completed = sessions
        .iter()
        .filter(|s| s["status"] == "COMPLETED")
        .count();
    steps.record("roaming session pushed to the eMSP, priced CDR sent to it",
        report.error_count() == 0 && completed >= 1 && !cdrs.is_empty() && cdrs.iter().all(|c| c["cdr_token"]["uid"] == ROAM_TOKEN),
        json!({"sessions_completed": completed, "cdrs": cdrs.iter().map(|c| json!({"id": c["id"], "total_energy": c["total_energy"], "total_cost": c["total_cost"]})).collect::<Vec<_>>()}));
    Ok(Some(Emsp {
        cpo,
        store,
        task: emsp_task,
    }))
}

/// The configuration every CSMS of the demo shares: loopback, free ports,
/// a fresh store under the system's temporary folder (`csms-{name}-{pid}`),
/// the API key `key`, profile 1 with unknown stations refused, and a hold
/// of `hold` EUR at each start.
fn lab_config(name: &str, key: &str, hold: i64) -> Config {
    let dir = std::env::temp_dir().join(format!("csms-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    Config {
        bind: loopback,
        admin_bind: loopback,
        ocpp_port: 0,
        http_port: 0,
        admin_port: 0,
        data_dir: dir,
        database_url: None,
        api_key: Some(key.to_owned()),
        security_profile: 1,
        unknown_stations: crate::config::UnknownStations::Reject,
        time_zone: "Europe/Amsterdam".into(),
        hold_amount: rust_decimal::Decimal::from(hold),
        ocpi_country_code: "NL".into(),
        ocpi_party_id: "EVP".into(),
        ..Config::default()
    }
}

/// A CSMS the demo runs in process until [`Csms::stop`].
struct Csms {
    started: crate::Started,
    data_dir: std::path::PathBuf,
    stop_tx: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), String>>,
}

impl Csms {
    /// Starts `config` and waits until its ports are open.
    async fn start(config: Config) -> Result<Csms, String> {
        let data_dir = config.data_dir.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::serve_until(
            config,
            async {
                let _ = stop_rx.await;
            },
            Some(ready_tx),
            false,
        ));
        match ready_rx.await {
            Ok(started) => Ok(Csms {
                started,
                data_dir,
                stop_tx,
                server,
            }),
            Err(_) => Err(server
                .await
                .map_err(|e| e.to_string())?
                .err()
                .unwrap_or_else(|| "the demo's CSMS did not start".into())),
        }
    }

    /// Stops it and removes its store.
    async fn stop(self) {
        let _ = self.stop_tx.send(());
        let _ = self.server.await;
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Runs the demo; returns the summary and whether every step succeeded.
///
/// # Errors
///
/// The CSMS could not start.
pub async fn run(json_output: bool) -> Result<(Value, bool), String> {
    // the demo's own key, passed to the dashboard link below
    let key = crate::store::random_hex(24);
    let config = Config {
        heartbeat_interval: 60,
        call_timeout: Duration::from_secs(10),
        // the demo's eMSP is on loopback over plain http
        ocpi_allow_private_urls: true,
        // Plug & Charge with the CSMS's own demo PKI (the PnC step)
        pnc: Some(crate::pnc::PncConfig::default()),
        ..lab_config("demo", &key, HOLD)
    };
    let csms = Csms::start(config).await?;
    let started = &csms.started;
    // the operator API is on the admin port
    let port = started.admin_port;
    if !json_output {
        eprintln!("dashboard: http://127.0.0.1:{port}/?key={key}");
    }
    let mut steps = Steps {
        steps: Vec::new(),
        json: json_output,
    };

    // 1. operator set-up through the API
    let (s, _) = api(
        port,
        &key,
        "PUT",
        "/api/tariffs/default",
        Some(&serde_json::from_str(TARIFF).unwrap_or_default()),
    )
    .await?;
    steps.record("tariff registered", s == 201, json!({"status": s}));
    let (s, _) = api(
        port,
        &key,
        "POST",
        "/api/tokens",
        // the demo's stations all charge with it at once: a shared token
        Some(&json!({"id_token": TOKEN, "type": "ISO14443", "status": "Accepted", "allow_concurrent": true})),
    )
    .await?;
    steps.record(
        "driver token registered",
        s == 201,
        json!({"status": s, "id_token": TOKEN}),
    );
    let (s, w) = api(
        port,
        &key,
        "PUT",
        &format!("/api/wallets/{TOKEN}"),
        Some(&json!({"balance": WALLET.to_string(), "currency": "EUR"})),
    )
    .await?;
    // a new wallet: 201 (an update would be 200)
    steps.record("prepaid wallet funded", s == 201, json!({"wallet": w}));
    let versions = [("DEMO0", "1.6"), ("DEMO1", "2.0.1"), ("DEMO2", "2.1")];
    let mut all = true;
    for (id, _) in versions {
        let (s, _) = api(
            port,
            &key,
            "PUT",
            &format!("/api/stations/{id}"),
            Some(&json!({"password": PASSWORD})),
        )
        .await?;
        all &= s == 201;
    }
    steps.record(
        "stations registered with passwords",
        all,
        json!({"stations": versions.iter().map(|v| v.0).collect::<Vec<_>>()}),
    );

    // 2. the stations run: boot, authorize, charge
    let sim = tokio::spawn(evproto_sim::run(
        SimConfig {
            url: format!("ws://127.0.0.1:{}/ocpp/", started.ocpp_port),
            stations: 3,
            versions: vec![
                ProtocolVersion::V16,
                ProtocolVersion::V201,
                ProtocolVersion::V21,
            ],
            connectors: (1, 1),
            duration: Duration::from_secs(16),
            prefix: "DEMO".into(),
            password: Some(PASSWORD.into()),
            behaviour: Behaviour {
                idle_ms: (500, 1_500),
                session_ms: (11_000, 13_000),
                meter_interval_ms: 1_000,
                max_power_w: 22_000.0,
                fault_per_s: 0.0,
                disconnect_per_s: 0.0,
                tokens: vec![TOKEN.into()],
                ..Behaviour::default()
            },
            ..SimConfig::default()
        },
        None,
    ));
    // 3. smart charging once every station charges: the site limit split over the sessions
    let mut active: Vec<Value> = Vec::new();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (_, sessions) = api(port, &key, "GET", "/api/sessions?limit=100", None).await?;
        active = sessions["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s["status"] == "Active")
            .collect();
        if active.len() >= versions.len() {
            break;
        }
    }
    let booted = active.len() >= versions.len();
    steps.record(
        "stations booted, drivers authorized, sessions charging",
        booted,
        json!({"active_sessions": active.len()}),
    );
    let per_session = SITE_LIMIT_W / u32::try_from(active.len().max(1)).unwrap_or(1);
    let limited_at = chrono::Utc::now();
    let mut accepted = 0;
    for (id, version) in versions {
        let (s, answer) = api(
            port,
            &key,
            "POST",
            &format!("/api/stations/{id}/ocpp/SetChargingProfile"),
            Some(&profile(version, per_session)),
        )
        .await?;
        if s == 200 && answer["status"] == "Accepted" {
            accepted += 1;
        }
    }
    steps.record(
        "smart charging: site limit split over the active sessions",
        accepted == versions.len(),
        json!({"site_limit_w": SITE_LIMIT_W, "per_session_w": per_session, "accepted": accepted}),
    );
    // 4. the drivers stop; the run ends
    let report = sim.await.map_err(|e| e.to_string())??;
    steps.record(
        "stations ran without errors",
        report.error_count() == 0 && report.booted == 3,
        json!({"booted": report.booted, "sessions_started": report.sessions_started, "errors": report.errors}),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // 5. every session stored, limited, priced, with a CDR
    let (_, sessions) = api(port, &key, "GET", "/api/sessions?limit=100", None).await?;
    let sessions = sessions["items"].as_array().cloned().unwrap_or_default();
    let completed: Vec<&Value> = sessions
        .iter()
        .filter(|s| s["status"] == "Completed")
        .collect();
    steps.record(
        "sessions completed and stored",
        completed.len() >= versions.len() && completed.len() == sessions.len(),
        json!({"completed": completed.len(), "stored": sessions.len()}),
    );
    let mut max_power_after = 0.0f64;
    let mut cdrs = Vec::new();
    for s in &completed {
        let id = s["id"].as_str().unwrap_or_default();
        let (_, detail) = api(port, &key, "GET", &format!("/api/sessions/{id}"), None).await?;
        for m in detail["meter_values"].as_array().into_iter().flatten() {
            let after = m["timestamp"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t > limited_at + chrono::Duration::seconds(2));
            if after && m["measurand"] == "Power.Active.Import" {
                max_power_after = max_power_after.max(
                    m["value"]
                        .as_str()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0.0),
                );
            }
        }
        let (st, cdr) = api(port, &key, "GET", &format!("/api/sessions/{id}/cdr"), None).await?;
        if st == 200 {
            cdrs.push(json!({"session": id, "energy_kwh": cdr["total_energy"], "total_cost": cdr["total_cost"]}));
        }
    }
    steps.record(
        "charging stayed under the smart-charging limit",
        max_power_after > 0.0 && max_power_after <= f64::from(per_session),
        json!({"max_power_w_after_limit": max_power_after, "limit_w": per_session}),
    );
    let priced = cdrs.len() == completed.len() && !cdrs.is_empty();
    steps.record(
        "every session priced with a CDR",
        priced,
        json!({"cdrs": cdrs}),
    );
    // payments: each session held, then captured at its price; the wallet pays it all
    let mut captured = rust_decimal::Decimal::ZERO;
    let mut receipts = Vec::new();
    for s in &completed {
        let id = s["id"].as_str().unwrap_or_default();
        let (st, p) = api(
            port,
            &key,
            "GET",
            &format!("/api/sessions/{id}/payment"),
            None,
        )
        .await?;
        if st == 200 && p["status"] == "Captured" {
            captured += p["receipt"]["charged"]
                .as_str()
                .and_then(|c| c.parse::<rust_decimal::Decimal>().ok())
                .unwrap_or_default();
            receipts.push(p["receipt"].clone());
        }
    }
    let (_, wallet) = api(port, &key, "GET", &format!("/api/wallets/{TOKEN}"), None).await?;
    let balance: rust_decimal::Decimal = wallet["balance"]
        .as_str()
        .and_then(|b| b.parse().ok())
        .unwrap_or_default();
    steps.record(
        "payments held at start, captured at the price, receipts issued",
        receipts.len() == completed.len() && !receipts.is_empty() && balance + captured == rust_decimal::Decimal::from(WALLET),
        json!({"receipts": receipts, "wallet_balance": balance.to_string(), "captured": captured.to_string()}),
    );
    let (_, metrics) = api(port, &key, "GET", "/metrics", None).await?;
    let revenue: Vec<String> = metrics
        .as_str()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("csms_revenue"))
        .map(str::to_owned)
        .collect();
    steps.record(
        "revenue reported",
        !revenue.is_empty(),
        json!({"metrics": revenue}),
    );

    // 6. roaming: an eMSP partner (built on `ocpi`) registers, pushes its
    // driver's token, starts a session remotely, and receives the session
    // and its CDR
    let emsp = roaming_story(port, &key, started.ocpp_port, &mut steps).await?;
    paying::run(&mut steps).await?;
    grid::story(port, &key, started.ocpp_port, &mut steps).await?;
    pnc::story(port, &key, started.ocpp_port, emsp.as_ref(), &mut steps).await?;
    drop(emsp);

    csms.stop().await;
    let ok = steps.steps.iter().all(|s| s["ok"] == true);
    let summary = json!({
        "ok": ok,
        "steps": steps.steps,
        "simulator": report.to_json(),
    });
    Ok((summary, ok))
}
