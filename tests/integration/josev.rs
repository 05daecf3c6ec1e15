//! Interop with Josev (EcoG-io's PyPI `iso15118` 0.31.2, see
//! [`test_support::peers::PYTHON_JOSEV`]) over a real link: a veth pair
//! between two network namespaces made for each test, each peer in its own
//! namespace, so that SDP runs over IPv6 link-local multicast (`ff02::1`,
//! UDP 15118) and the session over TCP to the SECC's link-local address.
//!
//! - Josev's EVCC (its simulated EV, EIM, no TLS) against `evproto v2g
//!   evse --iface`: DIN SPEC 70121 DC, ISO 15118-2 AC and DC.
//! - `evproto v2g ev --iface` against Josev's SECC (its simulated EVSE,
//!   `AUTH_MODES=EIM`, TLS off): DIN DC, -2 DC, -2 AC, one SECC for all three.
//! - Our EV finding our EVSE by SDP across the same kind of link.
//! - ISO 15118-20 DC and DC_BPT (the bidirectional service, charging)
//!   over TLS 1.3 with mutual authentication, both ways: Josev's EVCC
//!   against `evse --tls`, our EV against Josev's SECC (`ENABLE_TLS_1_3`;
//!   it offers both services). Not discharging: its simulated EVSE answers
//!   a present current of 1 A whatever it is asked (quirk 2), so a car
//!   giving energy back never sees it flow.
//! - ISO 15118-20 AC and AC_BPT (charging), both ways, over TLS 1.3.
//! - ISO 15118-20 DC Plug & Charge (the authorization by contract) over
//!   TLS 1.3, both ways (quirk 10).
//! - ISO 15118-20 CertificateInstallationReq of Josev's EVCC verified by
//!   our SECC (quirk 12), and our SECC's ServiceRenegotiation notification
//!   taken by it (quirk 13).
//! - ISO 15118-2 DC Plug & Charge over TLS 1.2, both ways, with a PKI of
//!   `evproto v2g pki` that Josev reads in its own layout (`PKI_PATH`):
//!   Josev's EVCC by its contract and installing one against `evse --tls
//!   --pnc`, our EV by its contract against Josev's SECC (`AUTH_MODES=PnC`).
//!
//! Namespaces and veth interfaces need root: CI runs as root; elsewhere the
//! tests say why on stderr and pass without running. Every process is
//! started in its own process group and killed with it (Josev's JVM too)
//! when its guard drops, and the namespaces are deleted even when a test
//! fails. Timeouts are hang guards only.
//!
//! Josev's quirks we tolerate, each checked below:
//!
//! 1. Its EVCC drops an SDP response whose SECC port is outside 49152–65535
//!    (RFC 6335's dynamic ports; it then dies of an `AttributeError`). Linux
//!    hands out ephemeral ports from 32768, so our SECC now binds port 0 to a
//!    port of that range (`SeccServer::bind`, `iso15118/tests/shell.rs`
//!    `port_zero_binds_a_dynamic_port`); checked on the port we announce.
//! 2. Its simulated EVSE answers EVSEPresentVoltage 1 V (and 1 A) whatever
//!    the EV asks, so PreCharge never reaches the target: our EV would end
//!    with `Timeout(PreCharge)`, as a car must. The test raises the tolerance
//!    (`--precharge-tolerance-v 400`) and asks for 0.5 mWh, which 1 V × 1 A
//!    delivers in under 2 s; checked in Josev's log (PreChargeRes at 1 V).
//! 3. Its ChargingStatusRes (-2 AC) carry no MeterInfo (optional in the
//!    schema). Our EVCC counted AC energy from meter readings only, so it
//!    never finished; it now counts what it draws when no reading comes
//!    (`iso15118/tests/session_iso2.rs`
//!    `ac_without_a_meter_sends_no_meter_info_and_the_evcc_counts_what_it_draws`);
//!    checked: energy > 0 with no MeterInfo in Josev's log.
//! 4. Its EXI codec is EXIficient in a JVM behind py4j: 50–180 ms per answer
//!    on an idle machine, over half of CurrentDemand's 250 ms. Our EV gets
//!    `--current-demand-timeout-ms 1000` so a loaded CI machine does not fail
//!    the session (`a_raised_current_demand_timeout_is_the_one_armed`), and
//!    `--charge-loop-timeout-ms 2000`: its -20 AC_ChargeLoopRes took longer
//!    than -20's 500 ms (our EV timed out on the first one;
//!    `our_ev_charges_from_josev_secc_over_iso20_ac_and_tls13`).
//! 5. After SessionStop it keeps the TCP connection 5 s, and its SECC leaves
//!    SDP unanswered until then ("UDP server has been resumed"): the next EV
//!    starts once that line is in its log. Our SECC reports the session at
//!    SessionStop, before Josev's EVCC closes and exits.
//! 6. Its EVCC imports `aiofile`, which the package does not declare: the
//!    venv lists it (without it the first test fails at Josev's import).
//! 7. Its SECC refuses an ISO 15118-20 PowerDeliveryReq whose
//!    `Scheduled_EVPPTControlMode` has no `PowerToleranceAcceptance`
//!    (optional in the schema): our EVCC now always sends it
//!    (`NotConfirmed` unless the schedule offered a tolerance); checked in
//!    `our_ev_charges_from_josev_secc_over_iso20_dc_and_tls13` and
//!    `iso15118/tests/session_iso20.rs`.
//! 8. Its EVCC puts the SECC's link-local address, with its zone, in the
//!    TLS SNI, which is no host name (RFC 6066 allows none other): rustls,
//!    which carries our SECC's TLS 1.3, refuses that ClientHello
//!    (`ServerNameMustContainOneHostName`, seen in a trial run). Our SECC
//!    now reads the name in the ClientHello and hands such a one to
//!    OpenSSL's TLS 1.3 (same suites, the EV's OEM chain required and
//!    checked the same way; `iso15118/tests/tls.rs`
//!    `an_ev_naming_a_link_local_address_gets_tls13_all_the_same`); checked
//!    in `josev_evcc_charges_from_our_evse_over_iso20_dc_and_tls13`. Its -2
//!    TLS 1.2 went to OpenSSL already, which ignores the name.
//! 9. Its EVCC refuses a -20 ScheduleExchangeRes whose ChargingSchedule has
//!    neither a PriceLevelSchedule nor an AbsolutePriceSchedule (both
//!    optional in the schema; a validation error, then it drops the
//!    session). Our SECC now sends one price level over each schedule
//!    (`iso15118/tests/session_iso20.rs`
//!    `bpt_scheduled_the_car_gives_back_what_it_set_out_to_then_stops`);
//!    checked in `josev_evcc_charges_from_our_evse_over_iso20_dc_and_tls13`.
//! 10. Its -20 Plug & Charge uses its ISO 15118-2 contract (its
//!     `iso15118_2/` PKI: secp256r1) and signs and verifies
//!     `PnC_AReqAuthorizationMode` with SHA-256 only, where -20 has
//!     secp521r1 and SHA-512 (its SECC splits the signature into two
//!     32-byte halves). Our SECC trusts both MO roots of `evproto v2g pki`
//!     and verifies by the key's curve, so its EVCC's contract is taken
//!     (`josev_evcc_authorizes_by_contract_at_our_evse_over_iso20_and_tls13`);
//!     our EV presents the -2 contract to its SECC with `--iso2-contract`
//!     (`our_ev_authorizes_by_contract_at_josev_secc_over_iso20_and_tls13`;
//!     `iso15118/tests/session_iso20.rs`
//!     `a_secp256r1_contract_is_taken_as_well_signed_with_sha256`).
//! 11. Its EVCC fails when an SECC offers any -20 value-added service: it
//!     never asks ServiceDetail of one, then selects the first of its
//!     (empty) parameter sets (`IndexError ... in state ServiceDetail`,
//!     seen in a trial run against `evse --offer-internet`). Our SECC
//!     offers none unless told to, so every test here runs without.
//! 12. Its -20 EVCC sends CertificateInstallationReq (`isCertInstallNeeded`)
//!     in V2GTP payload type `0x8001` (the handshake's; -20's CommonMessages
//!     go in `0x8002`: our SECC ended the session as malformed, seen in a
//!     trial run; it now takes CommonMessages there too,
//!     `iso15118/tests/session_iso20.rs`
//!     `garbage_din_bytes_and_wrong_payload_types_end_the_session_without_an_answer`),
//!     with its ISO 15118-2 OEM provisioning chain (secp256r1, signed with
//!     SHA-256), where -20's is secp521r1, and it cannot take the answer
//!     (its `CertificateInstallation` state raises `NotImplementedError`;
//!     its SECC too). Our SECC verifies its signature over the
//!     `OEMProvisioningCertificateChain` fragment all the same and asks its
//!     backend, which delivers -20 contracts for secp521r1 keys only:
//!     `WARNING_NoCertificateAvailable`
//!     (`josev_evcc_asks_our_evse_for_a_contract_over_iso20`).
//! 13. Its -20 EVCC takes `EVSENotification=ServiceRenegotiation` (which our
//!     SECC sends with `--service-renegotiation` when asked to) by stopping,
//!     then sends SessionStop with `Terminate`, not `ServiceRenegotiation`
//!     (the session ends there, normally, for our SECC), and after the
//!     SessionStopRes it fails (`FaultyStateImplementationError`: it meant
//!     to renegotiate after all) and stays up until killed
//!     (`josev_evcc_stops_when_our_evse_asks_a_service_renegotiation_over_iso20`;
//!     the renegotiation itself: `iso15118/tests/session_iso20.rs`
//!     `mod renegotiation`, and our EV against our EVSE,
//!     `a_car_renegotiates_its_service_over_iso20_when_the_evse_asks`).

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::peers::python_josev;

/// Hang guard for one session or one wait.
const GUARD: Duration = Duration::from_secs(90);

/// Root, or why these tests cannot run.
fn is_root() -> bool {
    let root = fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1))
                == Some("0")
        })
        .unwrap_or(false);
    if !root {
        eprintln!(
            "josev: not root: network namespaces and veth pairs need root (CI runs as root); \
             the Josev interop tests did not run"
        );
    }
    root
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A veth pair between two fresh network namespaces (`ns[0]` has
/// `iface[0]`, `ns[1]` has `iface[1]`), up, link-local addresses past DAD.
/// Dropping it deletes both namespaces (and so the pair).
struct Link {
    ns: [String; 2],
    iface: [String; 2],
}

impl Link {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "{}{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let link = Self {
            ns: [format!("evpj{tag}e"), format!("evpj{tag}v")],
            iface: [format!("vj{tag}a"), format!("vj{tag}b")],
        };
        for ns in &link.ns {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            run(Command::new("ip").args(["netns", "add", ns]));
        }
        run(Command::new("ip").args([
            "link",
            "add",
            &link.iface[0],
            "type",
            "veth",
            "peer",
            "name",
            &link.iface[1],
        ]));
        for (ns, iface) in link.ns.iter().zip(&link.iface) {
            run(Command::new("ip").args(["link", "set", iface, "netns", ns]));
            run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]));
            run(Command::new("ip").args(["-n", ns, "link", "set", iface, "up"]));
        }
        // the link-local addresses come up by themselves; DAD takes a moment
        let start = Instant::now();
        for (ns, iface) in link.ns.iter().zip(&link.iface) {
            loop {
                let out = Command::new("ip")
                    .args(["-n", ns, "-6", "addr", "show", "dev", iface])
                    .output()
                    .unwrap();
                let s = String::from_utf8_lossy(&out.stdout);
                if s.contains("fe80::") && !s.contains("tentative") {
                    break;
                }
                assert!(start.elapsed() < GUARD, "no link-local address: {s}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        link
    }

    /// `cmd args` in namespace `side` (0 or 1).
    fn command(&self, side: usize, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns[side]]).arg(program);
        c.process_group(0);
        c
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for ns in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A child in its own process group, killed with its group when dropped.
struct Proc(Child);

impl Proc {
    fn spawn(cmd: &mut Command) -> Self {
        Self(cmd.spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}")))
    }

    /// Waits for the exit (at most [`GUARD`]).
    fn wait(&mut self, what: &str) -> std::process::ExitStatus {
        self.wait_logging(what, None)
    }

    /// Waits for the exit (at most [`GUARD`]); a process still running
    /// then fails the test with the end of its `log`.
    fn wait_logging(&mut self, what: &str, log: Option<&Path>) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() >= GUARD {
                let end = log.map(|l| tail(&fs::read_to_string(l).unwrap_or_default()));
                panic!("{what}: still running\n{}", end.unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .output();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "evproto-josev-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The `evproto` binary, built once on demand.
fn evproto() -> &'static Path {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(build_evproto)
}

fn build_evproto() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(cargo)
        .args(["build", "-q", "-p", "evproto", "--bin", "evproto"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "building evproto failed");
    // target/<profile>/deps/integration-* → target/<profile>/evproto
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().join("evproto")
}

/// A Josev program (`secc` or `evcc`) in namespace `side`, its settings in
/// the environment, stdout and stderr to `log`, started in `dir` (where it
/// would read a `.env`: there is none).
fn josev(
    link: &Link,
    side: usize,
    kind: &str,
    env: &[(&str, &str)],
    dir: &Path,
    log: &Path,
) -> Proc {
    let py = python_josev();
    let out = fs::File::create(log).unwrap();
    let mut cmd = link.command(side, py);
    cmd.args(["-m", &format!("iso15118.{kind}.main")])
        .current_dir(dir)
        .env("LOG_LEVEL", "INFO")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    Proc::spawn(&mut cmd)
}

/// Josev's EVCC in namespace 1 on the link with `config` (its
/// `EVCC_CONFIG_PATH`, written to `dir` as `NAME.json`) and `env`, run to
/// its end: its exit status and its log (`dir/evcc-NAME.log`).
fn josev_evcc(
    link: &Link,
    dir: &Path,
    name: &str,
    config: &Value,
    env: &[(&str, &str)],
) -> (std::process::ExitStatus, String) {
    let (mut evcc, log) = josev_evcc_started(link, dir, name, config, env);
    let status = evcc.wait_logging("Josev EVCC", Some(&log));
    (status, fs::read_to_string(&log).unwrap())
}

/// Josev's EVCC started like [`josev_evcc`] but not waited for (for runs
/// it does not end by itself): the process, killed with its group when
/// dropped, and its log's path.
fn josev_evcc_started(
    link: &Link,
    dir: &Path,
    name: &str,
    config: &Value,
    env: &[(&str, &str)],
) -> (Proc, PathBuf) {
    let path = dir.join(format!("{name}.json"));
    fs::write(&path, config.to_string()).unwrap();
    let log = dir.join(format!("evcc-{name}.log"));
    let mut all = vec![
        ("NETWORK_INTERFACE", link.iface[1].as_str()),
        ("EVCC_CONFIG_PATH", path.to_str().unwrap()),
    ];
    all.extend_from_slice(env);
    (josev(link, 1, "evcc", &all, dir, &log), log)
}

/// Waits until `log` holds `needle` at least `count` times.
fn wait_in_log(log: &Path, needle: &str, count: usize) -> String {
    let start = Instant::now();
    loop {
        let s = fs::read_to_string(log).unwrap_or_default();
        if s.matches(needle).count() >= count {
            return s;
        }
        assert!(
            start.elapsed() < GUARD,
            "{needle:?} ×{count} not in the log:\n{}",
            tail(&s)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// What `evproto v2g ev` needs against Josev's SECC: quirk 2 (its EVSE
/// stays at 1 V) and quirk 4 (its answers take 50-180 ms, the -20 charge
/// loops' more).
const JOSEV_SECC_FLAGS: &[&str] = &[
    "--precharge-tolerance-v",
    "400",
    "--current-demand-timeout-ms",
    "1000",
    "--charge-loop-timeout-ms",
    "2000",
];

/// `evproto v2g ev` in namespace 1 against Josev's SECC: `args` and
/// [`JOSEV_SECC_FLAGS`].
fn our_ev_at_josev(link: &Link, dir: &Path, args: &[&str]) -> EvRun {
    let all: Vec<&str> = args.iter().chain(JOSEV_SECC_FLAGS).copied().collect();
    our_ev(link, 1, dir, &all)
}

/// A running `evproto v2g evse --iface`: its announced address and its
/// stdout lines (one JSON line per session).
struct Evse {
    _proc: Proc,
    port: u16,
    /// The TLS port (`--tls`).
    tls_port: Option<u16>,
    lines: mpsc::Receiver<String>,
}

/// The port of a `[fe80::…%N]:PORT` line after `prefix`.
fn port_of(line: &str, prefix: &str) -> u16 {
    let addr = line
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{prefix:?} line: {line:?}"));
    assert!(addr.starts_with("[fe80::"), "{addr}");
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

impl Evse {
    fn start(link: &Link, side: usize) -> Self {
        Self::start_with(link, side, &[])
    }

    fn start_with(link: &Link, side: usize, extra: &[&str]) -> Self {
        let mut cmd = link.command(side, evproto());
        cmd.args(["v2g", "evse", "--iface", &link.iface[side]])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut proc = Proc::spawn(&mut cmd);
        let stdout = proc.0.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines.recv_timeout(GUARD).expect("evse: no first line");
        // "listening on [fe80::…%N]:PORT", with --tls "tls on [fe80::…%N]:PORT"
        let port = port_of(&first, "listening on ");
        let mut sdp = lines.recv_timeout(GUARD).expect("evse: no sdp line");
        let mut tls_port = None;
        if sdp.starts_with("tls on ") {
            tls_port = Some(port_of(&sdp, "tls on "));
            sdp = lines.recv_timeout(GUARD).expect("evse: no sdp line");
        }
        assert!(sdp.starts_with("sdp on "), "{sdp}");
        Self {
            _proc: proc,
            port,
            tls_port,
            lines,
        }
    }

    fn next_session(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(GUARD)
            .expect("evse: no session line");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }
}

/// What `evproto v2g ev` did.
struct EvRun {
    ok: bool,
    stderr: String,
    /// The last stdout line (`--json`: the summary).
    summary: Value,
}

/// `evproto v2g ev --iface --json` in namespace `side`, its output in `dir`.
fn our_ev(link: &Link, side: usize, dir: &Path, extra: &[&str]) -> EvRun {
    let (out, err) = (dir.join("ev.stdout"), dir.join("ev.stderr"));
    let mut cmd = link.command(side, evproto());
    cmd.args(["v2g", "ev", "--iface", &link.iface[side], "--json"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap());
    let ok = Proc::spawn(&mut cmd).wait("evproto v2g ev").success();
    let stdout = fs::read_to_string(&out).unwrap();
    let stderr = fs::read_to_string(&err).unwrap();
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no stdout; stderr: {stderr}"));
    let summary = serde_json::from_str(last).unwrap_or_else(|e| panic!("{last:?}: {e}"));
    EvRun {
        ok,
        stderr,
        summary,
    }
}

/// Josev's EVCC against `evproto v2g evse`: DIN DC, -2 AC, -2 DC, each a
/// session found by SDP, ended normally on both sides, energy counted by
/// our SECC, the protocol and mode the EV asked for negotiated.
#[test]
fn josev_evcc_charges_from_our_evse_over_din_and_iso2() {
    if !is_root() {
        return;
    }
    let link = Link::new();
    let evse = Evse::start(&link, 0);
    // quirk 1: Josev's EVCC takes only a port of the dynamic range
    assert!(
        (49152..=65535).contains(&evse.port),
        "announced port {}",
        evse.port
    );
    let scratch = Scratch::new("evcc");
    for (name, config) in [
        (
            "din",
            r#"{"supportedProtocols": ["DIN_SPEC_70121"], "energyTransferMode": "DC_extended"}"#,
        ),
        (
            "iso2-ac",
            r#"{"supportedProtocols": ["ISO_15118_2"], "supportedEnergyServices": ["AC"], "energyTransferMode": "AC_three_phase_core"}"#,
        ),
        (
            "iso2-dc",
            r#"{"supportedProtocols": ["ISO_15118_2"], "supportedEnergyServices": ["DC"], "energyTransferMode": "DC_extended"}"#,
        ),
    ] {
        let mut config: Value = serde_json::from_str(config).unwrap();
        config["isCertInstallNeeded"] = false.into();
        config["useTls"] = false.into();
        config["chargeLoopCycle"] = 5.into();
        let (status, josev_log) = josev_evcc(&link, &scratch.0, name, &config, &[]);
        let ours = evse.next_session();
        assert!(status.success(), "{name}: {status}\n{}", tail(&josev_log));
        assert_eq!(ours["result"], "ok", "{name}: {ours}\n{}", tail(&josev_log));
        assert_eq!(ours["protocol"], name, "{ours}");
        assert!(ours["energy_wh"].as_f64().unwrap() > 0.0, "{ours}");
        // handshake, setup .. authorization, 2+ parameter/cable/precharge,
        // power delivery twice, 5 loops, stop
        assert!(ours["messages"].as_u64().unwrap() >= 12, "{ours}");
        assert!(
            ours["peer"].as_str().unwrap().starts_with("[fe80::"),
            "{ours}"
        );
        // Josev found us by SDP at the port announced and ended normally
        assert!(
            josev_log.contains(&format!("Port: {} ", evse.port)),
            "{}",
            tail(&josev_log)
        );
        let id = ours["session_id"].as_str().unwrap();
        assert!(josev_log.contains(id), "session {id} not in Josev's log");
        assert!(
            josev_log.contains("SessionStopRes received"),
            "{}",
            tail(&josev_log)
        );
        assert!(
            !josev_log.lines().any(|l| l.starts_with("ERROR")),
            "{}",
            tail(&josev_log)
        );
    }
}

/// `evproto v2g ev` against Josev's SECC: DIN DC, -2 DC, -2 AC against one
/// SECC found by SDP each time; our summary says ok with energy, Josev's
/// log the protocol it chose and the session ended in SessionStop.
#[test]
fn our_ev_charges_from_josev_secc_over_din_and_iso2() {
    if !is_root() {
        return;
    }
    let link = Link::new();
    let scratch = Scratch::new("secc");
    let log = scratch.0.join("secc.log");
    let _secc = josev(
        &link,
        0,
        "secc",
        &[
            ("NETWORK_INTERFACE", link.iface[0].as_str()),
            ("PROTOCOLS", "DIN_SPEC_70121,ISO_15118_2"),
            ("AUTH_MODES", "EIM"),
            ("SECC_ENFORCE_TLS", "false"),
        ],
        &scratch.0,
        &log,
    );
    wait_in_log(&log, "UDP server started", 1);
    let cases = [
        ("din", "0.0000005", "DIN_SPEC_70121"),
        ("iso2-dc", "0.0000005", "ISO_15118_2"),
        ("iso2-ac", "0.001", "ISO_15118_2"),
    ];
    for (n, (name, kwh, chosen)) in cases.into_iter().enumerate() {
        if n > 0 {
            // quirk 5: no SDP answer until the last session's TCP linger ends
            wait_in_log(&log, "UDP server has been resumed", n);
        }
        let run = our_ev_at_josev(
            &link,
            &scratch.0,
            &["--protocol", name, "--energy-kwh", kwh],
        );
        let s = &run.summary;
        let josev_log = wait_in_log(&log, "Session ended in", n + 1);
        assert!(run.ok, "{name}: {s}\n{}\n{}", run.stderr, tail(&josev_log));
        assert_eq!(s["result"], "ok", "{s}");
        assert_eq!(s["protocol"], name, "{s}");
        assert!(s["energy_wh"].as_f64().unwrap() > 0.0, "{s}");
        assert!(s["messages"].as_u64().unwrap() >= 12, "{s}");
        assert_eq!(
            josev_log.matches("Chosen protocol: ").count(),
            n + 1,
            "{}",
            tail(&josev_log)
        );
        assert!(
            josev_log
                .lines()
                .filter(|l| l.contains("Chosen protocol: "))
                .nth(n)
                .unwrap()
                .ends_with(chosen),
            "{}",
            tail(&josev_log)
        );
        let id = s["session_id"].as_str().unwrap();
        let session: Vec<&str> = josev_log.lines().filter(|l| l.contains(id)).collect();
        assert!(!session.is_empty(), "session {id} not in Josev's log");
        assert!(
            josev_log.contains("Session ended in SessionStop"),
            "{}",
            tail(&josev_log)
        );
        if name == "iso2-ac" {
            // quirk 3: no MeterInfo, yet our EV counted energy
            let status: Vec<&&str> = session
                .iter()
                .filter(|l| l.contains("\"ChargingStatusRes\""))
                .collect();
            assert!(!status.is_empty(), "{}", tail(&josev_log));
            assert!(
                status.iter().all(|l| !l.contains("MeterInfo")),
                "{status:?}"
            );
        } else {
            // quirk 2: Josev's PreChargeRes say 1 V while the EV asks 400 V
            let precharge: Vec<&&str> = session
                .iter()
                .filter(|l| l.contains("\"PreChargeRes\""))
                .collect();
            assert!(!precharge.is_empty(), "{}", tail(&josev_log));
            assert!(
                precharge.iter().all(|l| l.contains(
                    r#""EVSEPresentVoltage": {"Value": 1, "Multiplier": 0, "Unit": "V"}"#
                )),
                "{precharge:?}"
            );
        }
    }
}

/// Our EV finds our EVSE by SDP across the veth pair (link-local multicast,
/// then TCP to the announced link-local address) and charges over each
/// protocol.
#[test]
fn our_ev_finds_our_evse_by_sdp_across_a_veth_pair() {
    if !is_root() {
        return;
    }
    let link = Link::new();
    let evse = Evse::start(&link, 0);
    let scratch = Scratch::new("sdp");
    for (name, kwh) in [("din", "0.01"), ("iso2-dc", "0.01"), ("iso2-ac", "0.003")] {
        let run = our_ev(
            &link,
            1,
            &scratch.0,
            &["--protocol", name, "--energy-kwh", kwh],
        );
        let s = &run.summary;
        assert!(run.ok, "{name}: {s}\n{}", run.stderr);
        assert_eq!(s["result"], "ok", "{s}");
        // found by SDP: the address announced, on the EV's side of the link
        let port = format!("]:{}", evse.port);
        assert!(
            run.stderr
                .lines()
                .any(|l| l.starts_with("evproto: charging")
                    && l.contains("[fe80::")
                    && l.ends_with(&port)),
            "{}",
            run.stderr
        );
        let ours = evse.next_session();
        assert_eq!(ours["result"], "ok", "{ours}");
        assert_eq!(ours["protocol"], name, "{ours}");
        assert_eq!(ours["session_id"], s["session_id"], "{ours} vs {s}");
        assert!(s["energy_wh"].as_f64().unwrap() >= 1000.0 * kwh.parse::<f64>().unwrap());
    }
}

/// `evproto v2g pki DIR --seed SEED`.
fn make_pki(dir: &Path, seed: &str) {
    let out = Command::new(evproto())
        .args(["v2g", "pki"])
        .arg(dir)
        .args(["--seed", seed])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Our EV finds our EVSE by SDP asking for TLS (`evse --tls DIR --pnc
/// DIR`, `ev --tls DIR`): SDP answers with the TLS port, ISO 15118-2
/// Plug & Charge runs over TLS 1.2 with the -2 suite (with the EV's
/// contract, installing one, renewing one), -20 DC over TLS 1.3
/// with the EV's OEM certificate; an EV trusting another V2G root refuses
/// the SECC, and both sides report a TLS failure.
#[test]
fn our_ev_charges_from_our_evse_over_tls() {
    if !is_root() {
        return;
    }
    let link = Link::new();
    let scratch = Scratch::new("tls");
    let pki = scratch.0.join("pki");
    let other = scratch.0.join("other");
    make_pki(&pki, "tls");
    make_pki(&other, "another V2G root");
    let pki_s = pki.to_str().unwrap();
    let evse = Evse::start_with(&link, 0, &["--tls", pki_s, "--pnc", pki_s]);
    let tls_port = evse.tls_port.expect("evse --tls: no `tls on` line");
    assert_ne!(tls_port, evse.port);
    for (name, extra, version, contract) in [
        ("iso2-dc", &["--pnc", pki_s][..], "TLSv1.2", Value::Null),
        (
            "iso2-ac",
            &["--pnc", pki_s, "--install-contract"][..],
            "TLSv1.2",
            Value::from("installed"),
        ),
        // CertificateUpdate: a contract that ends within 100,000 days is renewed
        (
            "iso2-dc",
            &["--pnc", pki_s, "--renew-contract-within-days", "100000"][..],
            "TLSv1.2",
            Value::from("renewed"),
        ),
        ("iso20-dc", &[][..], "TLSv1.3", Value::Null),
    ] {
        let run = our_ev(
            &link,
            1,
            &scratch.0,
            &[
                &["--protocol", name, "--tls", pki_s, "--energy-kwh", "0.005"],
                extra,
            ]
            .concat(),
        );
        let s = &run.summary;
        assert!(run.ok, "{name}: {s}\n{}", run.stderr);
        assert_eq!(s["result"], "ok", "{s}");
        assert_eq!(s["tls"], version, "{s}");
        assert_eq!(s["contract"]["change"], contract, "{s}");
        // SDP gave the TLS port to the EV that asked for TLS
        let port = format!("]:{tls_port}");
        assert!(
            run.stderr
                .lines()
                .any(|l| l.starts_with("evproto: charging") && l.ends_with(&port)),
            "{}",
            run.stderr
        );
        let ours = evse.next_session();
        assert_eq!(ours["result"], "ok", "{ours}");
        assert_eq!(ours["protocol"], name, "{ours}");
        assert_eq!(ours["tls"], version, "{ours}");
        assert_eq!(ours["session_id"], s["session_id"], "{ours} vs {s}");
    }
    // an EV that trusts another V2G root
    let run = our_ev(
        &link,
        1,
        &scratch.0,
        &["--protocol", "iso20-dc", "--tls", other.to_str().unwrap()],
    );
    let s = &run.summary;
    assert!(!run.ok, "{s}");
    assert_eq!(s["result"]["error"], "tls", "{s}");
    assert!(
        s["result"]["detail"]
            .as_str()
            .unwrap()
            .contains("invalid peer certificate"),
        "{s}"
    );
    let ours = evse.next_session();
    assert_eq!(ours["result"]["error"], "tls", "{ours}");
    assert_eq!(ours["protocol"], Value::Null, "{ours}");
}

/// Josev's EVCC with Plug & Charge over TLS 1.2 against `evproto v2g evse
/// --tls DIR --pnc DIR`, the PKI made by `evproto v2g pki DIR` and read by
/// Josev in its own layout (`PKI_PATH=DIR`, `DIR/iso15118_2/`): with the
/// contract it has, then installing one (it asks ServiceDetail of our
/// Certificate service, selects it, sends CertificateInstallationReq).
#[test]
fn josev_evcc_charges_by_contract_from_our_evse_over_tls() {
    if !is_root() {
        return;
    }
    let link = Link::new();
    let scratch = Scratch::new("evcc-pnc");
    let pki = scratch.0.join("pki");
    make_pki(&pki, "josev plug and charge");
    let pki_s = pki.to_str().unwrap();
    let evse = Evse::start_with(&link, 0, &["--tls", pki_s, "--pnc", pki_s]);
    for install in [false, true] {
        let config = serde_json::json!({
            "supportedProtocols": ["ISO_15118_2"], "supportedEnergyServices": ["DC"],
            "energyTransferMode": "DC_extended", "isCertInstallNeeded": install,
            "useTls": true, "chargeLoopCycle": 3,
        });
        let name = format!("pnc-{install}");
        let (status, josev_log) =
            josev_evcc(&link, &scratch.0, &name, &config, &[("PKI_PATH", pki_s)]);
        let ours = evse.next_session();
        assert!(
            status.success(),
            "install={install}: {status}\n{}",
            tail(&josev_log)
        );
        assert_eq!(
            ours["result"],
            "ok",
            "install={install}: {ours}\n{}",
            tail(&josev_log)
        );
        assert_eq!(ours["protocol"], "iso2-dc", "{ours}");
        assert_eq!(ours["tls"], "TLSv1.2", "{ours}");
        // Contract payment: the contract chain, the signed challenge
        for res in ["PaymentDetailsRes", "AuthorizationRes", "SessionStopRes"] {
            assert!(
                josev_log.contains(res),
                "install={install}: no {res}\n{}",
                tail(&josev_log)
            );
        }
        // the eMAID of the PKI's contract (the one installed is the same)
        assert!(
            josev_log.contains("DEEVPC000000001"),
            "{}",
            tail(&josev_log)
        );
        assert_eq!(
            josev_log.contains("CertificateInstallationRes"),
            install,
            "{}",
            tail(&josev_log)
        );
        assert!(
            !josev_log.lines().any(|l| l.starts_with("ERROR")),
            "{}",
            tail(&josev_log)
        );
    }
}

/// Josev's EVCC over ISO 15118-20 DC (EIM, TLS 1.3 with its OEM chain,
/// `ENABLE_TLS_1_3`) against `evproto v2g evse --tls DIR`, the PKI made by
/// `evproto v2g pki DIR` (quirk 8: its ClientHello names our link-local
/// address, which rustls refuses; OpenSSL serves such a ClientHello the
/// same TLS 1.3): our SECC checked its OEM chain and ended normally, Josev
/// chose -20 DC and stopped the session.
#[test]
fn josev_evcc_charges_from_our_evse_over_iso20_dc_and_tls13() {
    josev_evcc_over_iso20("DC", "DC_extended", 3);
}

/// Josev's EVCC over ISO 15118-20 AC, then AC_BPT (EIM, TLS 1.3 with its
/// OEM chain) against `evproto v2g evse --tls DIR`: as over DC, with 20
/// charge loops (our AC SECC counts the meter's whole Wh: three loops of
/// Josev's pass in under one).
#[test]
fn josev_evcc_charges_from_our_evse_over_iso20_ac_and_tls13() {
    josev_evcc_over_iso20("AC", "AC_three_phase_core", 20);
}

/// Josev's EVCC over -20 `kind` (DC or AC), then its BPT service, with
/// `loops` charge loops, against `evse --tls`: both ended normally, our
/// SECC counted energy over TLS 1.3, Josev logged no error.
fn josev_evcc_over_iso20(kind: &str, transfer_mode: &str, loops: u32) {
    if !is_root() {
        return;
    }
    let link = Link::new();
    let scratch = Scratch::new(&format!("evcc-iso20-{kind}"));
    let pki = scratch.0.join("pki");
    make_pki(&pki, &format!("josev iso20 {kind}"));
    let pki_s = pki.to_str().unwrap();
    // the -20 protocols (and their BPT services) are offered over TLS 1.3
    let evse = Evse::start_with(&link, 0, &["--tls", pki_s]);
    let lower = kind.to_lowercase();
    for (service, ours_name) in [
        (kind.to_string(), format!("iso20-{lower}")),
        (format!("{kind}_BPT"), format!("iso20-{lower}-bpt")),
    ] {
        let config = serde_json::json!({
            "supportedProtocols": [format!("ISO_15118_20_{kind}")],
            "supportedEnergyServices": [service],
            "energyTransferMode": transfer_mode, "isCertInstallNeeded": false,
            "useTls": true, "chargeLoopCycle": loops,
        });
        let env = [("PKI_PATH", pki_s), ("ENABLE_TLS_1_3", "true")];
        let name = format!("iso20-{service}");
        let (status, josev_log) = josev_evcc(&link, &scratch.0, &name, &config, &env);
        let ours = evse.next_session();
        assert!(
            status.success(),
            "{service}: {status}\n{}",
            tail(&josev_log)
        );
        assert_eq!(ours["result"], "ok", "{ours}\n{}", tail(&josev_log));
        assert_eq!(ours["protocol"], ours_name.as_str(), "{ours}");
        assert_eq!(ours["tls"], "TLSv1.3", "{ours}");
        assert!(ours["energy_wh"].as_f64().unwrap() > 0.0, "{ours}");
        assert!(josev_log.contains("SessionStopRes"), "{}", tail(&josev_log));
        assert!(
            !josev_log.lines().any(|l| l.starts_with("ERROR")),
            "{service}: {}",
            tail(&josev_log)
        );
    }
}

/// Josev's EVCC over ISO 15118-20 DC with Plug & Charge (TLS 1.3) against
/// `evproto v2g evse --tls DIR --pnc DIR`: our SECC offers PnC with its
/// GenChallenge, Josev's EVCC selects it and signs
/// `PnC_AReqAuthorizationMode` with its contract (quirk 10: the -2 one,
/// secp256r1 and SHA-256, where -20 has secp521r1 and SHA-512; our SECC
/// trusts both MO roots and takes it), our SECC verifies the chain and the
/// signature and reports the contract's eMAID.
#[test]
fn josev_evcc_authorizes_by_contract_at_our_evse_over_iso20_and_tls13() {
    if !is_root() {
        return;
    }
    let link = Link::new();
    let scratch = Scratch::new("evcc-iso20-pnc");
    let pki = scratch.0.join("pki");
    make_pki(&pki, "josev iso20 pnc");
    let pki_s = pki.to_str().unwrap();
    let evse = Evse::start_with(&link, 0, &["--tls", pki_s, "--pnc", pki_s]);
    let config = serde_json::json!({
        "supportedProtocols": ["ISO_15118_20_DC"], "supportedEnergyServices": ["DC"],
        "energyTransferMode": "DC_extended", "isCertInstallNeeded": false,
        "useTls": true, "chargeLoopCycle": 3,
    });
    let env = [("PKI_PATH", pki_s), ("ENABLE_TLS_1_3", "true")];
    let (status, josev_log) = josev_evcc(&link, &scratch.0, "iso20-pnc", &config, &env);
    let ours = evse.next_session();
    assert!(status.success(), "{status}\n{}", tail(&josev_log));
    assert_eq!(ours["result"], "ok", "{ours}\n{}", tail(&josev_log));
    assert_eq!(ours["protocol"], "iso20-dc", "{ours}");
    assert_eq!(ours["tls"], "TLSv1.3", "{ours}");
    // authorized by the contract our SECC verified, not by EIM
    assert_eq!(ours["emaid"], "DEEVPC000000001", "{ours}");
    assert!(ours["energy_wh"].as_f64().unwrap() > 0.0, "{ours}");
    for line in [
        "AuthorizationSetupRes",
        "AuthorizationRes",
        "SessionStopRes",
    ] {
        assert!(josev_log.contains(line), "no {line}\n{}", tail(&josev_log));
    }
    assert!(
        !josev_log.lines().any(|l| l.starts_with("ERROR")),
        "{}",
        tail(&josev_log)
    );
}

/// Josev's EVCC over ISO 15118-20 DC asking `evproto v2g evse --tls DIR
/// --pnc DIR` for a contract (`isCertInstallNeeded`, quirk 12): our SECC
/// offers CertificateInstallation, verifies the request's signature by
/// Josev's OEM provisioning key over the EXI fragment both sides encode
/// (no `FAILED_SignatureError`), and its backend refuses a secp256r1
/// provisioning key (`WARNING_NoCertificateAvailable`), which Josev's EVCC
/// decodes. It cannot take any CertificateInstallationRes and stays up
/// after its failure, so the test kills it.
#[test]
fn josev_evcc_asks_our_evse_for_a_contract_over_iso20() {
    if !is_root() {
        return;
    }
    let link = Link::new();
    let scratch = Scratch::new("evcc-iso20-install");
    let pki = scratch.0.join("pki");
    make_pki(&pki, "josev iso20 install");
    let pki_s = pki.to_str().unwrap();
    let evse = Evse::start_with(&link, 0, &["--tls", pki_s, "--pnc", pki_s]);
    let config = serde_json::json!({
        "supportedProtocols": ["ISO_15118_20_DC"], "supportedEnergyServices": ["DC"],
        "energyTransferMode": "DC_extended", "isCertInstallNeeded": true,
        "useTls": true, "chargeLoopCycle": 3,
    });
    // Josev's EVCC does not exit after its failure: our session's line,
    // then its log, then it is killed with its process group
    let env = [("PKI_PATH", pki_s), ("ENABLE_TLS_1_3", "true")];
    let (josev_evcc, log) = josev_evcc_started(&link, &scratch.0, "iso20-install", &config, &env);
    let ours = evse.next_session();
    let josev_log = wait_in_log(&log, "CertificateInstallationRes", 1);
    drop(josev_evcc);
    assert_eq!(ours["protocol"], "iso20-dc", "{ours}\n{}", tail(&josev_log));
    assert_eq!(ours["tls"], "TLSv1.3", "{ours}");
    assert_eq!(
        ours["result"]["response_code"],
        "WARNING_NoCertificateAvailable",
        "{ours}\n{}",
        tail(&josev_log)
    );
    assert!(
        josev_log.contains("CertificateInstallationReq"),
        "{}",
        tail(&josev_log)
    );
}

/// Josev's EVCC over ISO 15118-20 DC (EIM, TLS 1.3) against `evproto v2g
/// evse --tls DIR --service-renegotiation --renegotiate-after-s 0`: our
/// SECC says ServiceRenegotiationSupported and asks for it in the first
/// charge-loop answer (`EVSENotification=ServiceRenegotiation`), which
/// Josev's EVCC decodes and stops for (PowerDelivery(Stop),
/// DC_WeldingDetection), then ends with SessionStop(Terminate) (quirk 13):
/// our SECC ends the session normally, with no renegotiation. Josev's
/// process fails after the SessionStopRes and is killed.
#[test]
fn josev_evcc_stops_when_our_evse_asks_a_service_renegotiation_over_iso20() {
    if !is_root() {
        return;
    }
    let link = Link::new();
    let scratch = Scratch::new("evcc-iso20-renegotiation");
    let pki = scratch.0.join("pki");
    make_pki(&pki, "josev iso20 renegotiation");
    let pki_s = pki.to_str().unwrap();
    let evse = Evse::start_with(
        &link,
        0,
        &[
            "--tls",
            pki_s,
            "--service-renegotiation",
            "--renegotiate-after-s",
            "0",
        ],
    );
    let config = serde_json::json!({
        "supportedProtocols": ["ISO_15118_20_DC"], "supportedEnergyServices": ["DC"],
        "energyTransferMode": "DC_extended", "isCertInstallNeeded": false,
        "useTls": true, "chargeLoopCycle": 5,
    });
    // Josev's EVCC does not exit after it (quirk 13): our session's line,
    // its SessionStopRes in its log, then it is killed with its group
    let env = [("PKI_PATH", pki_s), ("ENABLE_TLS_1_3", "true")];
    let (josev_evcc, log) =
        josev_evcc_started(&link, &scratch.0, "iso20-renegotiation", &config, &env);
    let ours = evse.next_session();
    let josev_log = wait_in_log(&log, "SessionStopRes", 1);
    drop(josev_evcc);
    assert_eq!(ours["result"], "ok", "{ours}\n{}", tail(&josev_log));
    assert_eq!(ours["protocol"], "iso20-dc", "{ours}");
    assert_eq!(ours["service_renegotiations"], 0, "{ours}");
    for needle in [
        r#""ServiceRenegotiationSupported":true"#,
        r#""EVSENotification":"ServiceRenegotiation""#,
        r#""ChargeProgress": "Stop""#,
        r#""ChargingSession": "Terminate""#,
    ] {
        assert!(
            josev_log.contains(needle),
            "no {needle}\n{}",
            tail(&josev_log)
        );
    }
}

/// Josev's SECC in namespace 0 with a PKI of `evproto v2g pki` (in its
/// layout, `PKI_PATH`) and `env`, started (its UDP server up).
struct JosevSecc {
    _proc: Proc,
    /// The PKI directory.
    pki: String,
    log: PathBuf,
}

impl JosevSecc {
    fn start(link: &Link, scratch: &Scratch, env: &[(&str, &str)]) -> Self {
        let pki = scratch.0.join("pki");
        make_pki(&pki, "josev secc");
        let pki = pki.to_str().unwrap().to_owned();
        let log = scratch.0.join("secc.log");
        let mut all = vec![
            ("NETWORK_INTERFACE", link.iface[0].as_str()),
            ("PKI_PATH", pki.as_str()),
        ];
        all.extend_from_slice(env);
        let proc = josev(link, 0, "secc", &all, &scratch.0, &log);
        wait_in_log(&log, "UDP server started", 1);
        Self {
            _proc: proc,
            pki,
            log,
        }
    }
}

/// `evproto v2g ev --tls DIR --pnc DIR` against Josev's SECC with Plug &
/// Charge (`AUTH_MODES=PnC`, TLS 1.2 with its CPO chain from the same PKI
/// in its layout): our EV checks its chain against the V2G root, pays by
/// contract, signs the challenge, charges and ends normally.
#[test]
fn our_ev_charges_by_contract_from_josev_secc_over_tls() {
    if !is_root() {
        return;
    }
    let link = Link::new();
    let scratch = Scratch::new("secc-pnc");
    let secc = JosevSecc::start(
        &link,
        &scratch,
        &[("PROTOCOLS", "ISO_15118_2"), ("AUTH_MODES", "PnC")],
    );
    let (pki_s, log) = (secc.pki.as_str(), &secc.log);
    let run = our_ev_at_josev(
        &link,
        &scratch.0,
        &[
            "--protocol",
            "iso2-dc",
            "--tls",
            pki_s,
            "--pnc",
            pki_s,
            "--energy-kwh",
            "0.0000005",
        ],
    );
    let s = &run.summary;
    let josev_log = wait_in_log(log, "Session ended in", 1);
    assert!(run.ok, "{s}\n{}\n{}", run.stderr, tail(&josev_log));
    assert_eq!(s["result"], "ok", "{s}");
    assert_eq!(s["tls"], "TLSv1.2", "{s}");
    for req in ["PaymentDetailsReq", "AuthorizationReq"] {
        assert!(josev_log.contains(req), "no {req}\n{}", tail(&josev_log));
    }
    assert!(
        josev_log.contains("DEEVPC000000001"),
        "{}",
        tail(&josev_log)
    );
    assert!(
        josev_log.contains("Session ended in SessionStop"),
        "{}",
        tail(&josev_log)
    );
}

/// `evproto v2g ev` over ISO 15118-20 DC (EIM, scheduled) with TLS 1.3
/// against Josev's SECC (`ENABLE_TLS_1_3`, its CPO chain from the PKI in
/// its layout, our EV's OEM chain checked against the OEM root): our
/// summary says ok, Josev chose -20 DC and the session ended in SessionStop.
#[test]
fn our_ev_charges_from_josev_secc_over_iso20_dc_and_tls13() {
    our_ev_at_josev_secc_over_iso20("DC");
}

/// Our EV over -20 `kind` (DC or AC), then its BPT service (Josev's SECC
/// offers both), charging, with TLS 1.3 against Josev's SECC: our summary
/// says ok, Josev chose -20 `kind`, took our PowerDeliveryReqs (quirk 7)
/// and each session ended in SessionStop.
fn our_ev_at_josev_secc_over_iso20(kind: &str) {
    if !is_root() {
        return;
    }
    let link = Link::new();
    let scratch = Scratch::new(&format!("secc-iso20-{kind}"));
    let protocol = format!("ISO_15118_20_{kind}");
    let secc = JosevSecc::start(
        &link,
        &scratch,
        &[
            ("PROTOCOLS", protocol.as_str()),
            ("AUTH_MODES", "EIM"),
            ("ENABLE_TLS_1_3", "true"),
        ],
    );
    let (pki_s, log) = (secc.pki.as_str(), &secc.log);
    let lower = kind.to_lowercase();
    let names = [format!("iso20-{lower}"), format!("iso20-{lower}-bpt")];
    for (n, name) in names.iter().enumerate() {
        if n > 0 {
            // quirk 5: no SDP answer until the last session's TCP linger ends
            wait_in_log(log, "UDP server has been resumed", n);
        }
        let run = our_ev_at_josev(
            &link,
            &scratch.0,
            &[
                "--protocol",
                name,
                "--tls",
                pki_s,
                "--energy-kwh",
                "0.0000005",
            ],
        );
        let s = &run.summary;
        let josev_log = wait_in_log(log, "Session ended in", n + 1);
        assert!(run.ok, "{name}: {s}\n{}\n{}", run.stderr, tail(&josev_log));
        assert_eq!(s["result"], "ok", "{s}");
        assert_eq!(s["protocol"], name.as_str(), "{s}");
        assert_eq!(s["tls"], "TLSv1.3", "{s}");
        assert_eq!(
            josev_log
                .matches(&format!("Chosen protocol: {protocol}"))
                .count(),
            n + 1,
            "{}",
            tail(&josev_log)
        );
        // quirk 7: it took our PowerDeliveryReq (PowerToleranceAcceptance set)
        assert_eq!(
            josev_log.matches("Sent PowerDeliveryRes").count(),
            2 * (n + 1),
            "{}",
            tail(&josev_log)
        );
        assert_eq!(
            josev_log.matches("Session ended in SessionStop").count(),
            n + 1,
            "{}",
            tail(&josev_log)
        );
    }
}

/// `evproto v2g ev --pnc DIR --iso2-contract` over ISO 15118-20 DC with TLS
/// 1.3 against Josev's SECC with Plug & Charge (`AUTH_MODES=PnC`): it
/// offers PnC with a GenChallenge, our EV signs `PnC_AReqAuthorizationMode`
/// with the -2 contract (quirk 10: Josev's SECC verifies secp256r1 and
/// SHA-256 only, so `--iso2-contract`), Josev verifies the signature,
/// authorizes and the session ends in SessionStop.
#[test]
fn our_ev_authorizes_by_contract_at_josev_secc_over_iso20_and_tls13() {
    if !is_root() {
        return;
    }
    let link = Link::new();
    let scratch = Scratch::new("secc-iso20-pnc");
    let secc = JosevSecc::start(
        &link,
        &scratch,
        &[
            ("PROTOCOLS", "ISO_15118_20_DC"),
            ("AUTH_MODES", "PnC"),
            ("ENABLE_TLS_1_3", "true"),
        ],
    );
    let (pki_s, log) = (secc.pki.as_str(), &secc.log);
    let run = our_ev_at_josev(
        &link,
        &scratch.0,
        &[
            "--protocol",
            "iso20-dc",
            "--tls",
            pki_s,
            "--pnc",
            pki_s,
            "--iso2-contract",
            "--energy-kwh",
            "0.0000005",
        ],
    );
    let s = &run.summary;
    let josev_log = wait_in_log(log, "Session ended in", 1);
    assert!(run.ok, "{s}\n{}\n{}", run.stderr, tail(&josev_log));
    assert_eq!(s["result"], "ok", "{s}");
    assert_eq!(s["tls"], "TLSv1.3", "{s}");
    assert_eq!(s["emaid"], "DEEVPC000000001", "{s}");
    assert!(
        josev_log.contains("Chosen protocol: ISO_15118_20_DC"),
        "{}",
        tail(&josev_log)
    );
    assert!(
        !josev_log.contains("Unable to verify signature"),
        "{}",
        tail(&josev_log)
    );
    assert!(
        josev_log.contains("Session ended in SessionStop"),
        "{}",
        tail(&josev_log)
    );
}

/// `evproto v2g ev` over ISO 15118-20 AC, then AC_BPT (EIM, scheduled,
/// charging) with TLS 1.3 against Josev's SECC
/// (`PROTOCOLS=ISO_15118_20_AC`; it offers both services): our summary
/// says ok, Josev chose -20 AC and each session ended in SessionStop.
/// Quirk 4 again: its AC_ChargeLoopRes take longer than -20's 500 ms
/// (`--charge-loop-timeout-ms`; our EV timed out on the first one before).
#[test]
fn our_ev_charges_from_josev_secc_over_iso20_ac_and_tls13() {
    our_ev_at_josev_secc_over_iso20("AC");
}
