//! `evproto load`: K simulated stations against any CSMS URL, measuring
//! connections, throughput and latency per action.
//!
//! Each station is a task running the sans-IO `evproto_ocpp_proto::Endpoint` (the
//! same core as `ocpp-client`) over a lean tokio-tungstenite connection, so
//! the load generator spends little of the machine the server also needs.
//!
//! Two message mixes: `idle` (Heartbeat, StatusNotification, MeterValues
//! outside transactions, which a CSMS mostly need not write) and
//! `transactions` ([`transactions`]: charging sessions, every message a
//! durable write).

mod transactions;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evproto_ocpp_proto::{BootState, Config, Endpoint, Event, ProtocolVersion, Role};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Options of `evproto load`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// CSMS URL: `ws://127.0.0.1:9000/ocpp` (a trailing slash or a final
    /// `{identity}` placeholder, as the CSMS prints it, is fine too); station i
    /// connects to `…/ocpp/{prefix}{i}`.
    #[arg(long)]
    url: String,
    /// Number of stations (connections).
    #[arg(long, default_value_t = 100)]
    stations: usize,
    /// Seconds of steady load after the ramp (1 to 86400).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration: u64,
    /// New connections per second during the ramp.
    #[arg(long, default_value_t = 1000)]
    ramp: u64,
    /// Messages per station per second (e.g. 0.1 = one every 10 s).
    #[arg(long, default_value_t = 0.1, conflicts_with = "saturate")]
    rate: f64,
    /// Each station sends its next message as soon as the previous is answered.
    #[arg(long)]
    saturate: bool,
    /// Message mix. `idle`: Heartbeat, StatusNotification and MeterValues
    /// outside transactions. `transactions`: each station loops through
    /// charging sessions, Authorize → start → 5 meter values → stop (1.6
    /// Authorize, StartTransaction, MeterValues with the transactionId,
    /// StopTransaction; 2.x Authorize, TransactionEvent Started, 5× Updated
    /// with meterValue, Ended, a fresh transactionId per session), so every
    /// message is one the CSMS has to store; the report then counts
    /// `sessions_completed` and the start answers by status
    /// (`start_not_accepted`: a CSMS refusing --id-tag would otherwise look
    /// fast).
    #[arg(long, value_enum, default_value_t = Mix::Idle)]
    mix: Mix,
    /// The idTag (1.6) / idToken (2.x, type ISO14443) of the `transactions`
    /// mix; the CSMS must accept it.
    #[arg(long, default_value = "LOADTAG")]
    id_tag: String,
    /// OCPP version: 1.6, 2.0.1 or 2.1.
    #[arg(long, default_value = "2.0.1", value_parser = ["1.6", "2.0.1", "2.1"])]
    ocpp: String,
    /// Basic-auth password for every station (identity = username).
    #[arg(long)]
    password: Option<String>,
    /// Identity prefix; station i is `{prefix}{i}`.
    #[arg(long, default_value = "LOAD")]
    prefix: String,
    /// After the steady phase, drop every connection and reconnect all
    /// (reconnect storm); reported as `storm_*` figures.
    #[arg(long)]
    reconnect_storm: bool,
    /// The server's process id: its resident memory is reported.
    #[arg(long)]
    pid: Option<u32>,
    /// Loopback source addresses to spread connections over (127.0.0.1 ..
    /// 127.0.0.N), so more than 64k connections are possible.
    #[arg(long, default_value_t = 16)]
    source_addresses: u8,
    /// Allow a non-loopback target.
    #[arg(long)]
    allow_remote: bool,
    /// Seconds a call may take before it counts as a timeout.
    #[arg(long, default_value_t = 30)]
    call_timeout: u64,
}

/// The message mix of `evproto load --mix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mix {
    /// Heartbeat, StatusNotification, MeterValues outside transactions.
    Idle,
    /// Charging sessions: Authorize, start, meter values, stop.
    Transactions,
}

impl Mix {
    fn as_str(self) -> &'static str {
        match self {
            Mix::Idle => "idle",
            Mix::Transactions => "transactions",
        }
    }
}

#[derive(Default)]
struct Counters {
    connected: AtomicU64,
    connect_failed: AtomicU64,
    sent: AtomicU64,
    responses: AtomicU64,
    errors: AtomicU64,
}

/// What one station measured.
#[derive(Default)]
struct StationReport {
    connected: bool,
    connect_error: Option<String>,
    latencies: BTreeMap<&'static str, Vec<u32>>,
    /// Latencies of the messages (boots apart) sent once every station had
    /// started connecting (the end of the ramp).
    after_ramp: Vec<u32>,
    errors: BTreeMap<String, u64>,
    storm_ok: Option<bool>,
    tally: transactions::Tally,
}

fn boot_payload(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::V16 => r#"{"chargePointVendor":"evproto","chargePointModel":"load"}"#,
        _ => r#"{"reason":"PowerUp","chargingStation":{"model":"load","vendorName":"evproto"}}"#,
    }
}

/// The `idle` message mix: Heartbeat, StatusNotification, MeterValues.
fn message(v: ProtocolVersion, n: u64) -> (&'static str, String) {
    let now = "2024-05-01T10:15:00Z";
    match (v, n % 4) {
        (_, 0) | (_, 2) => ("Heartbeat", "{}".to_owned()),
        (ProtocolVersion::V16, 1) => (
            "StatusNotification",
            r#"{"connectorId":1,"errorCode":"NoError","status":"Available"}"#.to_owned(),
        ),
        (_, 1) => (
            "StatusNotification",
            format!(
                r#"{{"timestamp":"{now}","connectorStatus":"Available","evseId":1,"connectorId":1}}"#
            ),
        ),
        (ProtocolVersion::V16, _) => (
            "MeterValues",
            format!(
                r#"{{"connectorId":1,"meterValue":[{{"timestamp":"{now}","sampledValue":[{{"value":"{n}","measurand":"Energy.Active.Import.Register","unit":"Wh"}},{{"value":"7200","measurand":"Power.Active.Import","unit":"W"}}]}}]}}"#
            ),
        ),
        (_, _) => (
            "MeterValues",
            format!(
                r#"{{"evseId":1,"meterValue":[{{"timestamp":"{now}","sampledValue":[{{"value":{n},"measurand":"Energy.Active.Import.Register"}},{{"value":7200,"measurand":"Power.Active.Import"}}]}}]}}"#
            ),
        ),
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn connect(
    args: &Args,
    version: ProtocolVersion,
    i: usize,
    host: &str,
    port: u16,
) -> Result<Ws, String> {
    let url = format!("{}{}{}", args.url, args.prefix, i);
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(version.subprotocol()),
    );
    if let Some(p) = &args.password {
        let raw = format!("{}{}:{p}", args.prefix, i);
        req.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("Basic {}", base64(raw.as_bytes())))
                .map_err(|e| e.to_string())?,
        );
    }
    let target: IpAddr = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?
        .ip();
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    if target.is_loopback() && args.source_addresses > 1 {
        let src = Ipv4Addr::new(
            127,
            0,
            0,
            1 + (i % usize::from(args.source_addresses)) as u8,
        );
        socket
            .bind(SocketAddr::new(IpAddr::V4(src), 0))
            .map_err(|e| e.to_string())?;
    }
    let tcp = socket
        .connect(SocketAddr::new(target, port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, tcp, Some(config))
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

fn base64(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

/// One call through the endpoint; the latency in µs and the answer's
/// payload, or the error kind.
async fn call(
    ws: &mut Ws,
    ep: &mut Endpoint,
    action: &str,
    payload: String,
    counters: &Counters,
) -> Result<(u32, String), String> {
    let start = Instant::now();
    ep.send_call(start, action, payload)
        .map_err(|e| format!("api: {e}"))?;
    while let Some(t) = ep.poll_transmit() {
        ws.send(Message::text(t))
            .await
            .map_err(|_| "send".to_owned())?;
    }
    counters.sent.fetch_add(1, Ordering::Relaxed);
    loop {
        let deadline = ep.poll_timeout().map(tokio::time::Instant::from_std);
        let msg = match deadline {
            Some(d) => match tokio::time::timeout_at(d, ws.next()).await {
                Ok(m) => Some(m),
                Err(_) => {
                    ep.handle_timeout(Instant::now());
                    None
                }
            },
            None => Some(ws.next().await),
        };
        match msg {
            Some(Some(Ok(Message::Text(t)))) => ep.handle_text(Instant::now(), t.as_str()),
            Some(Some(Ok(Message::Close(_))) | None) => return Err("closed".to_owned()),
            Some(Some(Err(_))) => return Err("transport".to_owned()),
            Some(Some(Ok(_))) | None => {}
        }
        while let Some(t) = ep.poll_transmit() {
            // answers to CSMS-initiated calls or errors the endpoint produced
            ws.send(Message::text(t))
                .await
                .map_err(|_| "send".to_owned())?;
        }
        while let Some(ev) = ep.poll_event() {
            match ev {
                Event::CallCompleted {
                    result: Ok(answer), ..
                } => {
                    counters.responses.fetch_add(1, Ordering::Relaxed);
                    let us = u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX);
                    return Ok((us, answer));
                }
                Event::CallCompleted { result: Err(e), .. } => {
                    return Err(format!("CALLERROR {}", e.code))
                }
                Event::CallTimedOut { .. } => return Err("timeout".to_owned()),
                Event::IncomingCall { id, .. } => {
                    // A load station implements nothing the CSMS might ask.
                    let _ = ep.respond(
                        &id,
                        Err(evproto_ocpp_proto::CallError::new(
                            "NotImplemented",
                            "load generator",
                        )),
                    );
                }
                _ => {}
            }
        }
    }
}

async fn boot(
    ws: &mut Ws,
    ep: &mut Endpoint,
    v: ProtocolVersion,
    counters: &Counters,
    report: &mut StationReport,
) -> bool {
    match call(
        ws,
        ep,
        "BootNotification",
        boot_payload(v).to_owned(),
        counters,
    )
    .await
    {
        Ok((us, _)) => {
            report
                .latencies
                .entry("BootNotification")
                .or_default()
                .push(us);
            ep.boot_state() == BootState::Accepted
        }
        Err(e) => {
            *report
                .errors
                .entry(format!("BootNotification {e}"))
                .or_default() += 1;
            false
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn station(
    args: Arc<Args>,
    v: ProtocolVersion,
    sessions: Option<transactions::Sessions>,
    i: usize,
    host: Arc<str>,
    port: u16,
    (start_at, ramp_end, steady_end): (
        tokio::time::Instant,
        tokio::time::Instant,
        tokio::time::Instant,
    ),
    storm: Arc<tokio::sync::Barrier>,
    counters: Arc<Counters>,
) -> StationReport {
    let mut report = StationReport::default();
    tokio::time::sleep_until(start_at).await;
    let config = Config::default().with_call_timeout(Duration::from_secs(args.call_timeout));
    let mut ws = match connect(&args, v, i, &host, port).await {
        Ok(ws) => ws,
        Err(e) => {
            counters.connect_failed.fetch_add(1, Ordering::Relaxed);
            report.connect_error = Some(e);
            if args.reconnect_storm {
                storm.wait().await;
            }
            return report;
        }
    };
    counters.connected.fetch_add(1, Ordering::Relaxed);
    report.connected = true;
    let mut ep = Endpoint::new(Role::ChargingStation, v, config.clone());
    if !boot(&mut ws, &mut ep, v, &counters, &mut report).await {
        counters.errors.fetch_add(1, Ordering::Relaxed);
    }
    let interval = if args.saturate || args.rate <= 0.0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(1.0 / args.rate)
    };
    // spread the first message over one interval
    let mut next =
        tokio::time::Instant::now() + interval.mul_f64(((i * 7919) % 1000) as f64 / 1000.0);
    let mut n = i as u64;
    let mut sessions = sessions;
    while tokio::time::Instant::now() < steady_end {
        if !interval.is_zero() {
            if next >= steady_end {
                tokio::time::sleep_until(steady_end).await;
                break;
            }
            tokio::time::sleep_until(next).await;
            next += interval;
        }
        let (action, payload) = match &mut sessions {
            Some(s) => s.next_message(&now()),
            None => message(v, n),
        };
        n += 1;
        let after_ramp = tokio::time::Instant::now() >= ramp_end;
        let result = call(&mut ws, &mut ep, action, payload, &counters).await;
        let result = match (result, &mut sessions) {
            (Ok((us, answer)), Some(s)) => s.answered(&answer, &mut report.tally).map(|()| us),
            (Ok((us, _)), None) => Ok(us),
            (Err(e), s) => {
                if let Some(s) = s {
                    s.failed();
                }
                Err(e)
            }
        };
        match result {
            Ok(us) => {
                report.latencies.entry(action).or_default().push(us);
                if after_ramp {
                    report.after_ramp.push(us);
                }
            }
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                *report.errors.entry(format!("{action} {e}")).or_default() += 1;
                if e == "closed" || e == "transport" {
                    break;
                }
            }
        }
    }
    if args.reconnect_storm {
        let _ = ws.close(None).await;
        drop(ws);
        storm.wait().await;
        // everyone reconnects at once
        let ok = match connect(&args, v, i, &host, port).await {
            Ok(mut ws) => {
                let mut ep = Endpoint::new(Role::ChargingStation, v, config);
                boot(&mut ws, &mut ep, v, &counters, &mut report).await
            }
            Err(e) => {
                *report
                    .errors
                    .entry(format!("storm connect {e}"))
                    .or_default() += 1;
                false
            }
        };
        report.storm_ok = Some(ok);
    } else {
        let _ = ws.close(None).await;
    }
    report
}

/// The time stamp of a message: now, UTC, milliseconds.
fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx.min(sorted.len() - 1)]) / 1000.0
}

/// Runs the load; `Ok(false)` when connections failed or errors occurred
/// (exit 1), `Err` for usage and setup errors (exit 2).
pub(crate) fn run(mut args: Args) -> Result<bool, String> {
    let v = match args.ocpp.as_str() {
        "1.6" => ProtocolVersion::V16,
        "2.1" => ProtocolVersion::V21,
        _ => ProtocolVersion::V201,
    };
    // from here on, the prefix each station's identity is appended to
    args.url = evproto_sim::station_url_prefix(&args.url).map_err(|e| format!("--url: {e}"))?;
    let url: tokio_tungstenite::tungstenite::http::Uri =
        args.url.parse().map_err(|e| format!("bad --url: {e}"))?;
    let host: Arc<str> = Arc::from(
        url.host()
            .ok_or("--url needs a host")?
            .trim_matches(['[', ']']),
    );
    let port = url.port_u16().unwrap_or(80);
    let tag = match args.mix {
        Mix::Transactions => Some(
            transactions::Sessions::tag_literal(v, &args.id_tag)
                .map_err(|e| format!("--id-tag: {e}"))?,
        ),
        Mix::Idle => None,
    };
    // this run's 2.x transaction ids differ from an earlier run's
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    if url.scheme_str() != Some("ws") {
        return Err("only ws:// URLs are supported by the load generator".to_owned());
    }
    crate::raise_open_files(args.stations);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let target_ip = tokio::net::lookup_host((&*host, port)).await.map_err(|e| e.to_string())?.next().ok_or("no address")?.ip();
        if !target_ip.is_loopback() && !args.allow_remote {
            return Err(format!("{target_ip} is not loopback: pass --allow-remote to load another machine"));
        }
        let args = Arc::new(args);
        let counters = Arc::new(Counters::default());
        let t0 = tokio::time::Instant::now();
        let ramp = Duration::from_secs_f64(args.stations as f64 / args.ramp.max(1) as f64);
        let steady_end = t0 + ramp + Duration::from_secs(args.duration);
        let storm = Arc::new(tokio::sync::Barrier::new(args.stations));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..args.stations {
            let start_at = t0 + Duration::from_secs_f64(i as f64 / args.ramp.max(1) as f64);
            let sessions = tag.clone().map(|t| transactions::Sessions::new(v, t, run_id, i));
            tasks.spawn(station(args.clone(), v, sessions, i, host.clone(), port, (start_at, t0 + ramp, steady_end), storm.clone(), counters.clone()));
        }
        // progress line
        let progress = {
            let c = counters.clone();
            let stations = args.stations;
            tokio::spawn(async move {
                let mut last = 0;
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let r = c.responses.load(Ordering::Relaxed);
                    eprint!(
                        "\r{:>6.1}s connected {}/{} failed {} sent {} responses {} errors {} ({} msg/s)   ",
                        t0.elapsed().as_secs_f64(),
                        c.connected.load(Ordering::Relaxed),
                        stations,
                        c.connect_failed.load(Ordering::Relaxed),
                        c.sent.load(Ordering::Relaxed),
                        r,
                        c.errors.load(Ordering::Relaxed),
                        r - last
                    );
                    last = r;
                }
            })
        };
        let mut rss_during = None;
        if let Some(pid) = args.pid {
            let wait = steady_end.saturating_duration_since(tokio::time::Instant::now()) / 2;
            let c = counters.clone();
            let sampler = tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                (rss_kib(pid), c.connected.load(Ordering::Relaxed))
            });
            rss_during = sampler.await.ok();
        }
        let mut reports = Vec::new();
        while let Some(r) = tasks.join_next().await {
            if let Ok(r) = r {
                reports.push(r);
            }
        }
        progress.abort();
        eprintln!();
        let elapsed = t0.elapsed().as_secs_f64();
        let steady_secs = args.duration as f64;
        // merge
        let mut per_action: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        let mut connect_errors: BTreeMap<String, u64> = BTreeMap::new();
        let (mut storm_ok, mut storm_total) = (0u64, 0u64);
        let mut tally = transactions::Tally::default();
        let mut after_ramp: Vec<u32> = Vec::new();
        for r in reports {
            tally.merge(r.tally);
            after_ramp.extend(r.after_ramp);
            for (a, l) in r.latencies {
                per_action.entry(a).or_default().extend(l);
            }
            for (e, n) in r.errors {
                *errors.entry(e).or_default() += n;
            }
            if let Some(e) = r.connect_error {
                *connect_errors.entry(e).or_default() += 1;
            }
            if let Some(ok) = r.storm_ok {
                storm_total += 1;
                storm_ok += u64::from(ok);
            }
        }
        let mut all: Vec<u32> = per_action.iter().filter(|(a, _)| **a != "BootNotification").flat_map(|(_, l)| l.iter().copied()).collect();
        all.sort_unstable();
        after_ramp.sort_unstable();
        let steady_responses = all.len() as f64;
        let c = &counters;
        eprintln!("{:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}", "action", "count", "min ms", "p50 ms", "p95 ms", "p99 ms", "max ms");
        for (a, l) in per_action.iter_mut() {
            l.sort_unstable();
            eprintln!(
                "{:<22} {:>9} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                a,
                l.len(),
                percentile(l, 0.0),
                percentile(l, 0.5),
                percentile(l, 0.95),
                percentile(l, 0.99),
                percentile(l, 1.0)
            );
        }
        for (e, n) in errors.iter().chain(connect_errors.iter()) {
            eprintln!("error: {e}: {n}");
        }
        let server_rss = args.pid.and_then(rss_kib);
        let per_action: BTreeMap<&str, usize> = per_action.iter().map(|(a, l)| (*a, l.len())).collect();
        let mut report = json!({
            "stations": args.stations,
            "ocpp": args.ocpp,
            "mix": args.mix.as_str(),
            "connections_ok": c.connected.load(Ordering::Relaxed),
            "connections_failed": c.connect_failed.load(Ordering::Relaxed),
            "sent": c.sent.load(Ordering::Relaxed),
            "responses": c.responses.load(Ordering::Relaxed),
            "errors": c.errors.load(Ordering::Relaxed),
            "errors_by_kind": errors,
            "per_action": per_action,
            "connect_errors": connect_errors,
            "throughput_msg_s": steady_responses / steady_secs.max(1e-9),
            "latency_ms": {
                "p50": percentile(&all, 0.5),
                "p95": percentile(&all, 0.95),
                "p99": percentile(&all, 0.99),
                "max": percentile(&all, 1.0),
            },
            // the messages sent after the ramp (every station started), boots
            // apart: the steady state, with whatever backlog the ramp left
            "after_ramp_latency_ms": {
                "count": after_ramp.len(),
                "p50": percentile(&after_ramp, 0.5),
                "p95": percentile(&after_ramp, 0.95),
                "p99": percentile(&after_ramp, 0.99),
                "max": percentile(&after_ramp, 1.0),
            },
            "duration_s": elapsed,
        });
        if args.mix == Mix::Transactions {
            report["id_tag"] = json!(args.id_tag);
            report["sessions_completed"] = json!(tally.sessions_completed);
            report["authorize_not_accepted"] = json!(transactions::Tally::refused(&tally.authorize_status));
            report["authorize_status"] = json!(tally.authorize_status);
            report["start_answers"] = json!(tally.start_status.values().sum::<u64>());
            report["start_not_accepted"] = json!(transactions::Tally::refused(&tally.start_status));
            report["start_status"] = json!(tally.start_status);
        }
        if let Some(rss) = server_rss {
            report["server_rss_kib"] = json!(rss);
        }
        if let Some((Some(rss), connected)) = rss_during {
            report["server_rss_kib_mid_run"] = json!(rss);
            report["connected_mid_run"] = json!(connected);
        }
        if args.reconnect_storm {
            report["storm_rebooted"] = json!(storm_ok);
            report["storm_stations"] = json!(storm_total);
        }
        println!("{report}");
        let failed = c.connect_failed.load(Ordering::Relaxed);
        let errors = c.errors.load(Ordering::Relaxed);
        if failed > 0 || errors > 0 {
            eprintln!("evproto load: {failed} connections failed, {errors} errors");
            return Ok(false);
        }
        Ok(true)
    })
}
