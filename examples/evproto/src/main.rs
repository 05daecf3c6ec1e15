//! `evproto`: command-line tools over the evproto crates.
//!
//! ```text
//! evproto ocpp validate --version 2.0.1 --action BootNotification --message request < payloads.jsonl
//! evproto ocpp validate --version 1.6 < frames.jsonl
//! ```

mod load;
mod ocpi_cmd;
mod simulate;
mod v2g_cmd;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Tools for EV-charging protocols.
#[derive(Debug, Parser)]
#[command(name = "evproto", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// OCPP tools.
    Ocpp {
        #[command(subcommand)]
        command: OcppCommand,
    },
    /// OCPI tools.
    Ocpi {
        #[command(subcommand)]
        command: OcpiCommand,
    },
    /// ISO 15118 / DIN 70121 tools.
    V2g {
        #[command(subcommand)]
        command: V2gCommand,
    },
    /// Load a CSMS with K simulated stations and report connections,
    /// throughput and latency per action.
    ///
    /// Ramps K WebSocket connections at --ramp per second (spread over
    /// loopback source addresses 127.0.0.1..N), boots each station, then sends
    /// a message mix at --rate messages per station per second, or as fast as
    /// answers come with --saturate, for --duration seconds: `--mix idle`
    /// (default) Heartbeat, StatusNotification, MeterValues; `--mix
    /// transactions` charging sessions (Authorize, start, 5 meter values,
    /// stop, with --id-tag), every message one the CSMS must store, with
    /// sessions completed and refused starts in the report. Optionally drops
    /// and reconnects all
    /// (--reconnect-storm). Stops by itself; refuses non-loopback targets
    /// unless --allow-remote. Prints a progress line and a table on stderr and
    /// one JSON object on the last line of stdout.
    Load(load::Args),
    /// Simulate N charging stations against a CSMS for a bounded time.
    ///
    /// Each station (OCPP 1.6, 2.0.1 or 2.1, round-robin over --ocpp) has
    /// 1–4 connectors and boots, reports status, heartbeats, authorizes
    /// drivers' tokens, runs transactions with periodic meter values, has
    /// occasional faults and network drops, and answers the CSMS like a real
    /// charger: remote start/stop really start and stop a transaction,
    /// Reset ends the sessions and reboots, charging profiles limit the
    /// power, ChangeAvailability, TriggerMessage, UnlockConnector and
    /// Get/ChangeConfiguration (1.6) or Get/SetVariables (2.x) work.
    /// Refuses non-loopback targets unless --allow-remote. Prints a progress
    /// line and a table on stderr and one JSON report on the last line of
    /// stdout.
    Simulate(simulate::Args),
}

#[derive(Debug, Subcommand)]
enum V2gCommand {
    /// Decode EXI messages: one hex line each on stdin (raw EXI, or V2GTP-framed,
    /// detected by the 01 fe header); one JSON line each on stdout,
    /// `{"message": "<name>", "body": {..}}` or `{"error": ".."}`.
    /// Schemas: app, din, iso2, iso20, iso20-ac, iso20-dc, iso20-wpt, iso20-acdp,
    /// and xmldsig (fragments only).
    /// For DIN and -2, `message` is the body element and `body` the whole
    /// V2G_Message (header signatures included). A V2GTP-framed -20 line is
    /// read with the set its payload type names (0x8003 AC, 0x8004 DC…).
    Decode {
        /// Schema set.
        #[arg(long)]
        schema: String,
        /// Also say whether re-encoding gives the same bytes (`"roundtrip": true|false`).
        #[arg(long)]
        roundtrip: bool,
        /// Lines are EXI fragments of one element (what XML signatures
        /// digest, e.g. an AuthorizationReq in iso2, SignedInfo in xmldsig).
        #[arg(long)]
        fragment: bool,
        /// Accept the deviations real cars and chargers send (bytes after the
        /// document, an integer outside its facet): each is listed in the
        /// line's `"warnings"` and printed on stderr (`evproto: warning: ..`).
        #[arg(long)]
        lenient: bool,
    },
    /// Encode JSON lines (`{"message": .., "body": ..}` as `decode` prints them)
    /// to `{"message": .., "exi": "<hex>"}` lines, or `{"error": ".."}`.
    Encode {
        /// Schema set.
        #[arg(long)]
        schema: String,
        /// Write EXI fragments of one element (`{"<element>": {..}}` lines).
        #[arg(long)]
        fragment: bool,
    },
    /// Run a charger (SECC) serving DIN 70121, ISO 15118-2 and -20 sessions
    /// (EIM; -2 Plug & Charge with --pnc DIR) over TCP until stopped, with
    /// TLS (1.3 for -20, 1.2 for -2) on a second port with --tls DIR, and
    /// SDP on --iface. The power electronics
    /// are simulated: present voltage and current follow the EV's targets,
    /// the meter counts power × time. Prints `listening on ADDR` first
    /// (and `tls on ADDR` with --tls), then one JSON line per session ended.
    Evse(v2g_cmd::EvseArgs),
    /// Run a car (EVCC): find the charger (--connect, or SDP on --iface),
    /// charge --energy-kwh with EIM (or -2 Plug & Charge with --pnc DIR),
    /// over TLS with --tls DIR, stop and exit. The last stdout line is
    /// the summary (JSON with --json: `protocol`, `session_id`, `energy_wh`,
    /// `messages`, `result`: "ok" or the failure with its ResponseCode).
    /// Exits 1 when the session failed, 2 on a usage error.
    Ev(v2g_cmd::EvArgs),
    /// Create a test PKI for Plug & Charge in DIR (V2G root, CPO and CPS
    /// sub-CAs, SECC and SA provisioning leaves, MO chain with a contract
    /// and its eMAID, OEM chain with a provisioning certificate): every
    /// certificate as NAME.der and NAME.pem, every key as NAME.key.der and
    /// NAME.key.pem (PKCS#8); README.txt lists them. `evse --pnc DIR` and
    /// `ev --pnc DIR` use it. Test keys, no secrets.
    Pki(v2g_cmd::PkiArgs),
}

#[derive(Debug, Subcommand)]
enum OcpiCommand {
    /// Validate OCPI objects, one JSON object per line on stdin, against the
    /// typed objects of a version (generated from the spec's tables).
    ///
    /// Prints exactly one line per input line: `ok`, or
    /// `error 2001 <path> <reason>`: 2001 is the OCPI status an invalid
    /// object gets, the path is the JSON path of the fault (`.` for the whole
    /// object). `--module` takes a module id (`locations`, `tariffs`,
    /// `sessions`, `cdrs`, `tokens`, `credentials`, `commands`, `versions`,
    /// `version_details`, `chargingprofiles`, `hubclientinfo`) or a type's
    /// name (`TariffRestrictions`, `Evse`, ...).
    Validate {
        /// Module id or type name.
        #[arg(long)]
        module: String,
        /// OCPI version: 2.1.1, 2.2.1 or 2.3.0.
        #[arg(long, default_value = "2.2.1")]
        version: String,
    },
    /// Price CDRs under tariffs (`evproto_ocpi::tariff`), one JSON object per line.
    ///
    /// Each input line is `{"tariff": .., "cdr": .., "location": {"time_zone": ..}}`
    /// (2.2.1 or 2.3.0 shapes; 2.3.0 when the line carries `before_taxes` or
    /// `tax_included`). Each output line has the computed totals under the
    /// CDR's own field names (`total_cost`, `total_energy`,
    /// `total_energy_cost`, `total_time`, `total_time_cost`,
    /// `total_parking_time`, `total_parking_cost`, `total_fixed_cost`,
    /// `total_reservation_cost`; prices as the version's price object), or
    /// `{"error": ".."}`.
    Price,
}

#[derive(Debug, Subcommand)]
enum OcppCommand {
    /// Validate OCPP JSON, one document per line on stdin, against the official schemas.
    ///
    /// Prints exactly one line per input line: `ok`, or
    /// `error <ErrorCode> <json-pointer> <reason>` with the version's spelling
    /// of the CALLERROR code. The pointer is empty for the whole document, so
    /// the line then reads `error <ErrorCode>  <reason>` (split on single spaces,
    /// at most 4 fields).
    ///
    /// With --action and --message each line is one payload. Without them each
    /// line is a whole OCPP-J frame: a CALL is checked against its action's
    /// request schema, a CALLRESULT against the response schema of the CALL
    /// with the same message id earlier in the input (a CALLRESULT whose CALL
    /// is not in the input is checked as a frame only), a CALLERROR's code
    /// against the version's list.
    Validate(validate::Args),
}

/// Room for one socket per station: raises the soft open-files limit up to
/// the hard one (which is the machine's).
fn raise_open_files(stations: usize) {
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() {
        let want = (stations as u64 + 256).min(hard);
        if want > soft {
            let _ = rlimit::Resource::NOFILE.set(want, hard);
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ocpp {
            command: OcppCommand::Validate(args),
        } => match validate::run(&args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
        Command::Ocpi {
            command: OcpiCommand::Price,
        } => ocpi_cmd::run_price(),
        Command::Ocpi {
            command: OcpiCommand::Validate { module, version },
        } => ocpi_cmd::run_validate(&module, &version),
        Command::V2g {
            command:
                V2gCommand::Decode {
                    schema,
                    roundtrip,
                    fragment,
                    lenient,
                },
        } => match v2g_cmd::run(false, &schema, roundtrip, fragment, lenient) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
        Command::V2g {
            command: V2gCommand::Encode { schema, fragment },
        } => match v2g_cmd::run(true, &schema, false, fragment, false) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
        Command::V2g {
            command: V2gCommand::Evse(args),
        } => v2g_cmd::run_evse(args),
        Command::V2g {
            command: V2gCommand::Pki(args),
        } => v2g_cmd::run_pki(args),
        Command::V2g {
            command: V2gCommand::Ev(args),
        } => match v2g_cmd::run_ev(args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
        Command::Load(args) => match load::run(args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
        Command::Simulate(args) => match simulate::run(args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("evproto: {e}");
            ExitCode::from(2)
        }
    }
}
