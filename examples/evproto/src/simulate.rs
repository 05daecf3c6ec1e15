//! `evproto simulate`: the command line over [`evproto_sim`].

use std::time::Duration;

use evproto_sim::{self as sim, model::Behaviour, SimConfig};

/// Options of `evproto simulate`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// CSMS URL: `ws://host:9000/ocpp`, with or without the trailing slash,
    /// or as the CSMS prints it (`.../ocpp/{identity}`); each station's
    /// identity is appended.
    #[arg(long, default_value = "ws://127.0.0.1:9000/ocpp/")]
    url: String,
    /// Number of simulated stations.
    #[arg(long, default_value_t = 10)]
    stations: usize,
    /// Seconds to run after the last station started (at most 86400); then
    /// every running session is stopped, queued messages are delivered
    /// (up to 10 s) and the report is printed.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration: u64,
    /// Stations started per second.
    #[arg(long, default_value_t = 50.0)]
    ramp: f64,
    /// OCPP versions, comma-separated, assigned round-robin: station i
    /// speaks the (i mod n)-th (e.g. `1.6,1.6,2.0.1` for two thirds 1.6).
    #[arg(long, default_value = "1.6,2.0.1,2.1", value_delimiter = ',', value_parser = ["1.6", "2.0.1", "2.1"])]
    ocpp: Vec<String>,
    /// Connectors per station, `N` or `MIN-MAX` (drawn per station).
    #[arg(long, default_value = "1-4", value_parser = parse_range)]
    connectors: (u64, u64),
    /// Seconds a connector stays free before the next driver arrives, `MIN-MAX`.
    #[arg(long, default_value = "5-60", value_parser = parse_range)]
    idle: (u64, u64),
    /// Seconds a driver charges, `MIN-MAX` (sessions are ended earlier by
    /// remote stops, faults, resets and the end of the run).
    #[arg(long, default_value = "30-300", value_parser = parse_range)]
    session: (u64, u64),
    /// Seconds between meter values during a transaction.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    meter_interval: u64,
    /// Maximum power per connector, W (charging profiles lower it).
    #[arg(long, default_value_t = 22_000.0)]
    max_power: f64,
    /// Faults per connector per hour (each ends its session; cleared after 5–20 s).
    #[arg(long, default_value_t = 1.0)]
    faults_per_hour: f64,
    /// Network drops per station per hour (the station reconnects with back-off).
    #[arg(long, default_value_t = 1.0)]
    drops_per_hour: f64,
    /// Share of connectors (0 to 1) that wear out during the run: their
    /// faults and failed starts grow more frequent, they report rising
    /// temperatures, and they fail for good between a third of the run and
    /// its end (what the CSMS's maintenance score should catch first).
    #[arg(long, default_value_t = 0.0)]
    aging: f64,
    /// Share of sessions (0 to 1) whose car is bidirectional; above 0, every
    /// 2.x car reports its needs (NotifyEVChargingNeeds; in 2.1 a
    /// bidirectional one with its discharge power) and follows a 2.1
    /// charging profile's negative setpoint by discharging.
    #[arg(long, default_value_t = 0.0)]
    v2x: f64,
    /// Id tokens drivers present, comma-separated (chosen at random).
    #[arg(
        long,
        default_value = "SIMTOKEN1,SIMTOKEN2,SIMTOKEN3",
        value_delimiter = ','
    )]
    tokens: Vec<String>,
    /// Identity prefix: station i is `{prefix}{i}`.
    #[arg(long, default_value = "SIM")]
    prefix: String,
    /// Basic-auth password for every station (identity = username).
    #[arg(long)]
    password: Option<String>,
    /// Seed: the same seed gives the same drivers, faults and drops.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Do not offer permessage-deflate.
    #[arg(long)]
    no_deflate: bool,
    /// Print one JSON line per station event (connected, CSMS call,
    /// authorization, reboot, drop) on stdout before the report.
    #[arg(long)]
    events: bool,
    /// Allow a CSMS that is not on loopback.
    #[arg(long)]
    allow_remote: bool,
    /// ISO 15118 cars: at each plug-in the station's SECC and the car hold
    /// a session (in memory) that authorizes the transaction: by the
    /// driver's card (EIM; the car speaks DIN 70121, ISO 15118-2 or -20,
    /// one in three each) or by Plug & Charge (ISO 15118-2; see
    /// --pnc-share). The car charges under the schedule the station holds,
    /// and the transaction's meter follows what it drew in its charge loop.
    #[arg(long)]
    iso15118: bool,
    /// With --iso15118: the share of cars that use Plug & Charge (0 to 1):
    /// a car without a contract gets one installed through the CSMS
    /// (Get15118EVCertificate), then is authorized by it.
    #[arg(long, default_value_t = 0.5, requires = "iso15118")]
    pnc_share: f64,
    /// With --iso15118: PEM file of the CSMS's V2G root and MO roots (the
    /// reference CSMS shows them at GET /api/pnc); without, Plug & Charge
    /// cars cannot check a contract installation nor the charger their
    /// contract, and are refused.
    #[arg(long, requires = "iso15118")]
    pnc_roots: Option<std::path::PathBuf>,
    /// With --iso15118: a Plug & Charge car renews its contract through
    /// the CSMS (CertificateUpdate, Get15118EVCertificate with action
    /// Update) when it ends within N days.
    #[arg(long, value_name = "N", requires = "iso15118")]
    pnc_renew_within_days: Option<u64>,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|_| format!("{s}: expected N or MIN-MAX"))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|_| format!("{s}: expected N or MIN-MAX"))?;
    if a > b {
        return Err(format!("{s}: MIN is above MAX"));
    }
    Ok((a, b))
}

/// Runs the simulation; `Ok(false)` when stations failed to boot or
/// errors occurred (exit 1), `Err` for usage and setup errors (exit 2).
pub(crate) fn run(args: Args) -> Result<bool, String> {
    if args.connectors.0 == 0 || args.connectors.1 > 4 {
        return Err("--connectors: between 1 and 4".into());
    }
    if args.tokens.iter().any(|t| t.is_empty() || t.len() > 20) {
        return Err("--tokens: each 1 to 20 characters".into());
    }
    if !(args.max_power.is_finite() && args.max_power > 0.0) {
        return Err("--max-power: a positive number of watts".into());
    }
    if !(0.0..=1.0).contains(&args.aging) {
        return Err("--aging: a share between 0 and 1".into());
    }
    if !(0.0..=1.0).contains(&args.v2x) {
        return Err("--v2x: a share between 0 and 1".into());
    }
    if !(args.ramp.is_finite() && args.ramp > 0.0) {
        return Err("--ramp: a positive number of stations per second".into());
    }
    if !(0.0..=1.0).contains(&args.pnc_share) {
        return Err("--pnc-share: a share between 0 and 1".into());
    }
    let iso15118 = if args.iso15118 {
        let roots = match &args.pnc_roots {
            Some(p) => {
                let pem =
                    std::fs::read(p).map_err(|e| format!("--pnc-roots {}: {e}", p.display()))?;
                evproto_iso15118::pki::Cert::from_pem_chain(&pem)
                    .map_err(|e| format!("--pnc-roots {}: {e}", p.display()))?
                    .iter()
                    .map(|c| c.der().to_vec())
                    .collect()
            }
            None => Vec::new(),
        };
        Some(sim::iso15118::Iso15118Sim {
            pnc_share: args.pnc_share,
            roots,
            renew_within: args
                .pnc_renew_within_days
                .map(|d| Duration::from_secs(d.saturating_mul(86_400))),
        })
    } else {
        None
    };
    let versions = args
        .ocpp
        .iter()
        .filter_map(|v| sim::parse_version(v))
        .collect();
    let config = SimConfig {
        url: args.url.clone(),
        stations: args.stations,
        versions,
        connectors: (args.connectors.0 as u32, args.connectors.1 as u32),
        duration: Duration::from_secs(args.duration),
        ramp_per_s: args.ramp,
        prefix: args.prefix.clone(),
        password: args.password.clone(),
        seed: args.seed,
        behaviour: Behaviour {
            idle_ms: (args.idle.0 * 1000, args.idle.1 * 1000),
            session_ms: (args.session.0 * 1000, args.session.1 * 1000),
            meter_interval_ms: args.meter_interval * 1000,
            max_power_w: args.max_power,
            fault_per_s: args.faults_per_hour.max(0.0) / 3600.0,
            fault_ms: (5_000, 20_000),
            disconnect_per_s: args.drops_per_hour.max(0.0) / 3600.0,
            tokens: args.tokens.clone(),
            aging: (args.aging > 0.0).then(|| {
                let run_ms =
                    args.duration * 1000 + (args.stations as f64 / args.ramp * 1000.0) as u64;
                sim::model::Aging {
                    share: args.aging,
                    life_ms: (run_ms / 3, run_ms),
                    ..sim::model::Aging::default()
                }
            }),
            v2x_share: args.v2x,
            ..Behaviour::default()
        },
        permessage_deflate: !args.no_deflate,
        events: args.events,
        iso15118,
    };
    crate::raise_open_files(args.stations);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let report = runtime.block_on(async {
        sim::check_target(&config.url, args.allow_remote).await?;
        sim::run(config, Some(Box::new(|line| eprintln!("{line}")))).await
    })?;
    eprintln!(
        "stations            {} (booted {}, connected at the end {})",
        report.stations, report.booted, report.connected_at_end
    );
    eprintln!("boots / reboots     {} / {}", report.boots, report.reboots);
    eprintln!(
        "sessions            {} started, {} ended, {:.3} kWh",
        report.sessions_started, report.sessions_completed, report.energy_kwh
    );
    eprintln!(
        "authorizations      {} accepted, {} refused",
        report.auth_accepted, report.auth_rejected
    );
    eprintln!("meter values        {}", report.meter_values);
    eprintln!(
        "faults / drops      {} / {}",
        report.faults, report.disconnects
    );
    eprintln!(
        "messages            {} sent, {} answered, {} still queued",
        report.sent, report.responses, report.queued_at_end
    );
    for (action, n) in &report.csms_calls {
        eprintln!("CSMS call           {action}: {n}");
    }
    for (kind, n) in &report.errors {
        eprintln!("error               {kind}: {n}");
    }
    for (reason, n) in &report.connect_failures {
        eprintln!("connect failure     {reason}: {n}");
    }
    println!("{}", report.to_json());
    match report.failure() {
        None => Ok(true),
        Some(why) => {
            eprintln!("evproto simulate: {why}");
            Ok(false)
        }
    }
}
