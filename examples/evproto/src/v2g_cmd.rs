//! `evproto v2g decode|encode`: ISO 15118 / DIN messages as hex EXI lines
//! and JSON lines; `evproto v2g evse|ev`: a charger and a car over the
//! tokio shells of `evproto_iso15118::shell`.

use std::io::{BufRead, Write};

use evproto_iso15118::app_protocol::{self, Message};
use evproto_iso15118::lenient::{Policy, Warning};
use std::net::{SocketAddr, SocketAddrV6};

use evproto_iso15118::pki::demo::{Curve, DemoContract, DemoPki, DemoProvisioning};
use evproto_iso15118::pki::{Cert, SigningKey, TrustStore};
use evproto_iso15118::sdp::Security;
use evproto_iso15118::session::{
    Contract, ContractProvisioning, ControlMode, EnergyMode, EvBpt, EvPnc, EvccConfig, Protocol,
    Provisioning, SeccBpt, SeccConfig, SeccPnc, Vas,
};
use evproto_iso15118::shell::tls::{EvccTls, Identity, SeccTls, TlsInfo, TlsVersion};
use evproto_iso15118::shell::{
    self, Interface, SdpClientConfig, SdpServer, SdpServerConfig, SeccServer, SeccService,
    SessionReport, ShellConfig, SimEv, SimEvse,
};
use evproto_iso15118::v2gtp;
use serde_json::{json, Value};

/// The schema sets the command knows.
pub(crate) const SCHEMAS: &[&str] = &[
    "app",
    "din",
    "iso2",
    "iso20",
    "iso20-ac",
    "iso20-dc",
    "iso20-wpt",
    "iso20-acdp",
    "xmldsig",
];

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !s.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| format!("not hex: {:?}", &s[i..i + 2]))
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The message name of a decoded document: for DIN/-2 `V2G_Message`
/// documents, the body element (`CurrentDemandReq`); otherwise the root.
fn message_name(root: &str, content: &Value) -> String {
    if root == "V2G_Message" {
        if let Some(name) = content["Body"].as_object().and_then(|b| b.keys().next()) {
            return name.clone();
        }
    }
    root.to_string()
}

/// The deviations a lenient decode accepted, as the output line's
/// `"warnings"` (absent when there are none).
fn add_warnings(out: &mut Value, warnings: &[Warning]) {
    if !warnings.is_empty() {
        out["warnings"] = warnings.iter().map(|w| json!(w.to_string())).collect();
    }
}

/// One output line of `decode` for one input line: raw EXI, or V2GTP-framed
/// (detected by the `01 fe` header). Under a lenient `policy` the deviations
/// it accepted are listed in `"warnings"`.
pub(crate) fn decode_line(schema: &str, line: &str, roundtrip: bool, policy: &Policy) -> Value {
    let bytes = match unhex(line) {
        Ok(b) => b,
        Err(e) => return json!({"error": e}),
    };
    let mut schema = schema;
    let exi = if bytes.len() >= 2 && bytes[0] == 0x01 && bytes[1] == 0xfe {
        // a V2G message is far below 64 KiB; the header's length is checked against it
        match v2gtp::decode(&bytes, 65_536) {
            Ok(packet) => {
                // a -20 frame names its schema set (0x8002 CommonMessages,
                // 0x8003 AC, 0x8004 DC, 0x8005 ACDP, 0x8006 WPT)
                if let (true, Some(set)) = (
                    schema.starts_with("iso20"),
                    packet.payload_type.iso20_schema(),
                ) {
                    schema = set;
                }
                packet.payload
            }
            Err(e) => return json!({"error": format!("V2GTP: {e}")}),
        }
    } else {
        bytes
    };
    if schema != "app" {
        let set = match evproto_iso15118::schema::by_name(schema) {
            Ok(s) => s,
            Err(e) => return json!({"error": e.to_string()}),
        };
        return match set.decode_with(&exi, policy) {
            Ok((doc, warnings)) => {
                let (root, content) = doc
                    .as_object()
                    .and_then(|m| m.iter().next())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .unwrap_or_default();
                let mut out = json!({"message": message_name(&root, &content), "body": content});
                if root == "V2G_Message" {
                    out["root"] = json!(root);
                }
                if roundtrip {
                    out["roundtrip"] = json!(set.encode(&doc).is_ok_and(|b| b == exi));
                }
                add_warnings(&mut out, &warnings);
                out
            }
            Err(e) => json!({"error": e.to_string()}),
        };
    }
    match app_protocol::decode(&exi) {
        Ok(m) => {
            let body = serde_json::to_value(&m).unwrap_or(Value::Null)[m.name()].clone();
            let mut out = json!({"message": m.name(), "body": body});
            if roundtrip {
                let mut again = Vec::new();
                app_protocol::encode(&m, &mut again);
                out["roundtrip"] = json!(again == exi);
            }
            out
        }
        Err(e) => json!({"error": e.to_string()}),
    }
}

/// One output line of `encode`: `{"message": .., "body": ..}` (or the
/// message as `{"<name>": body}`) to hex EXI.
pub(crate) fn encode_line(schema: &str, line: &str) -> Value {
    let v: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return json!({"error": format!("not JSON: {e}")}),
    };
    if schema != "app" {
        let set = match evproto_iso15118::schema::by_name(schema) {
            Ok(s) => s,
            Err(e) => return json!({"error": e.to_string()}),
        };
        // {"message": .., "body": ..} as decode prints it, or the document itself
        // the root is `root` when given (decode prints it for V2G_Message),
        // else the message name when that is a document root, else V2G_Message
        let doc = match (v.get("message").and_then(Value::as_str), v.get("body")) {
            (Some(name), Some(body)) => {
                let root =
                    v.get("root")
                        .and_then(Value::as_str)
                        .unwrap_or(if set.has_global(name) {
                            name
                        } else {
                            "V2G_Message"
                        });
                json!({ root: body })
            }
            _ => v,
        };
        let name = doc
            .as_object()
            .and_then(|m| m.keys().next().cloned())
            .unwrap_or_default();
        return match set.encode(&doc) {
            Ok(bytes) => json!({"message": message_name(&name, &doc[&name]), "exi": hex(&bytes)}),
            Err(e) => json!({"error": e.to_string()}),
        };
    }
    let wrapped = match (v.get("message").and_then(Value::as_str), v.get("body")) {
        (Some(name), Some(body)) => json!({ name: body }),
        _ => v,
    };
    let m: Message = match serde_json::from_value(wrapped) {
        Ok(m) => m,
        Err(e) => return json!({"error": e.to_string()}),
    };
    if let Err(e) = app_protocol::check(&m) {
        return json!({"error": e.to_string()});
    }
    let mut out = Vec::new();
    app_protocol::encode(&m, &mut out);
    json!({"message": m.name(), "exi": hex(&out)})
}

/// One output line of `decode --fragment`: `{"message": "<element>",
/// "body": {..}}` (raw EXI only: fragments travel inside messages, not in
/// V2GTP frames).
pub(crate) fn decode_fragment_line(
    schema: &str,
    line: &str,
    roundtrip: bool,
    policy: &Policy,
) -> Value {
    let exi = match unhex(line) {
        Ok(b) => b,
        Err(e) => return json!({"error": e}),
    };
    let set = match evproto_iso15118::schema::by_name(schema) {
        Ok(s) => s,
        Err(e) => return json!({"error": e.to_string()}),
    };
    match set.decode_fragment_with(&exi, policy) {
        Ok((frag, warnings)) => {
            let (name, body) = frag
                .as_object()
                .and_then(|m| m.iter().next())
                .map(|(k, v)| (k.clone(), v.clone()))
                .unwrap_or_default();
            let mut out = json!({"message": name, "body": body});
            if roundtrip {
                out["roundtrip"] = json!(set.encode_fragment(&frag).is_ok_and(|b| b == exi));
            }
            add_warnings(&mut out, &warnings);
            out
        }
        Err(e) => json!({"error": e.to_string()}),
    }
}

/// One output line of `encode --fragment`: `{"message": .., "body": ..}` or
/// `{"<element>": {..}}` to `{"message": .., "exi": "<hex>"}`.
pub(crate) fn encode_fragment_line(schema: &str, line: &str) -> Value {
    let v: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return json!({"error": format!("not JSON: {e}")}),
    };
    let set = match evproto_iso15118::schema::by_name(schema) {
        Ok(s) => s,
        Err(e) => return json!({"error": e.to_string()}),
    };
    let frag = match (v.get("message").and_then(Value::as_str), v.get("body")) {
        (Some(name), Some(body)) => json!({ name: body }),
        _ => v,
    };
    let name = frag
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .unwrap_or_default();
    match set.encode_fragment(&frag) {
        Ok(bytes) => json!({"message": name, "exi": hex(&bytes)}),
        Err(e) => json!({"error": e.to_string()}),
    }
}

/// Runs `decode` or `encode` over stdin. `lenient` (decode only) reads the
/// deviations of [`Policy::lenient`]: each is listed in the line's
/// `"warnings"` and printed on stderr as `evproto: warning: line N: ..`.
/// Decodes or encodes stdin line by line; `Ok(false)` when a line failed
/// (exit 1), `Err` for usage errors (exit 2).
pub(crate) fn run(
    encode: bool,
    schema: &str,
    roundtrip: bool,
    fragment: bool,
    lenient: bool,
) -> Result<bool, String> {
    if !SCHEMAS.contains(&schema) {
        return Err(format!(
            "unknown schema {schema:?}; one of {}",
            SCHEMAS.join(", ")
        ));
    }
    if schema == "app" && fragment {
        return Err("--fragment needs a message schema (not app)".into());
    }
    if schema == "xmldsig" && !fragment {
        return Err("the xmldsig schema codes fragments: add --fragment".into());
    }
    if lenient && (encode || schema == "app") {
        return Err("--lenient is for decoding message schemas (not app)".into());
    }
    let policy = if lenient {
        Policy::lenient()
    } else {
        Policy::strict()
    };
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut failed = 0u64;
    for (n, line) in stdin.lock().lines().enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        let mut v = match (encode, fragment) {
            (true, true) => encode_fragment_line(schema, &line),
            (false, true) => decode_fragment_line(schema, &line, roundtrip, &policy),
            (true, false) => encode_line(schema, &line),
            (false, false) => decode_line(schema, &line, roundtrip, &policy),
        };
        if v.get("error").is_some() {
            failed += 1;
            if !encode && !fragment {
                // the wrong --schema? say which one reads the line
                if let Some(other) = SCHEMAS.iter().copied().find(|&o| {
                    o != schema
                        && o != "xmldsig"
                        && decode_line(o, &line, false, &Policy::strict())
                            .get("error")
                            .is_none()
                }) {
                    v["hint"] = format!("this line decodes with --schema {other}").into();
                }
            }
        }
        for w in v["warnings"].as_array().into_iter().flatten() {
            eprintln!(
                "evproto: warning: line {}: {}",
                n + 1,
                w.as_str().unwrap_or_default()
            );
        }
        writeln!(out, "{v}").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())?;
    Ok(failed == 0)
}

// ---- `evproto v2g evse` and `evproto v2g ev`: a charger and a car ----

/// The protocol names of `--protocol` / `--protocols`.
const PROTOCOLS: &[&str] = &[
    "din",
    "iso2-ac",
    "iso2-dc",
    "iso20-ac",
    "iso20-dc",
    "iso20-ac-bpt",
    "iso20-dc-bpt",
];
/// What `--allow-iso20-without-tls` is about.
const ISO20_TLS: &str = "ISO 15118-20 mandates TLS 1.3: give --tls DIR (a PKI of `evproto v2g \
     pki`); --allow-iso20-without-tls runs -20 EIM over plain TCP, a lab shortcut";

/// A protocol name of the command line: `din`, `iso2-ac`, `iso2-dc`,
/// `iso20-ac`, `iso20-dc`, `iso20-ac-bpt`, `iso20-dc-bpt` (the -20
/// bidirectional services).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProtocolName {
    Din,
    Iso2Ac,
    Iso2Dc,
    Iso20Ac,
    Iso20Dc,
    Iso20AcBpt,
    Iso20DcBpt,
}

impl ProtocolName {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "din" => Ok(Self::Din),
            "iso2-ac" => Ok(Self::Iso2Ac),
            "iso2-dc" => Ok(Self::Iso2Dc),
            "iso20-ac" => Ok(Self::Iso20Ac),
            "iso20-dc" => Ok(Self::Iso20Dc),
            "iso20-ac-bpt" => Ok(Self::Iso20AcBpt),
            "iso20-dc-bpt" => Ok(Self::Iso20DcBpt),
            s => Err(format!(
                "unknown protocol {s:?}; one of {}",
                PROTOCOLS.join(", ")
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Din => "din",
            Self::Iso2Ac => "iso2-ac",
            Self::Iso2Dc => "iso2-dc",
            Self::Iso20Ac => "iso20-ac",
            Self::Iso20Dc => "iso20-dc",
            Self::Iso20AcBpt => "iso20-ac-bpt",
            Self::Iso20DcBpt => "iso20-dc-bpt",
        }
    }

    fn protocol(self) -> Protocol {
        match self {
            Self::Din => Protocol::Din,
            Self::Iso2Ac | Self::Iso2Dc => Protocol::Iso2,
            Self::Iso20Ac | Self::Iso20AcBpt => Protocol::Iso20Ac,
            Self::Iso20Dc | Self::Iso20DcBpt => Protocol::Iso20Dc,
        }
    }

    fn energy_modes(self) -> &'static [EnergyMode] {
        match self {
            Self::Din | Self::Iso2Dc | Self::Iso20Dc | Self::Iso20DcBpt => {
                &[EnergyMode::DcExtended]
            }
            Self::Iso2Ac => &[EnergyMode::AcThreePhaseCore, EnergyMode::AcSinglePhaseCore],
            Self::Iso20Ac | Self::Iso20AcBpt => &[EnergyMode::AcThreePhaseCore],
        }
    }

    fn is_iso20(self) -> bool {
        matches!(
            self,
            Self::Iso20Ac | Self::Iso20Dc | Self::Iso20AcBpt | Self::Iso20DcBpt
        )
    }

    /// An ISO 15118-20 bidirectional service (DC_BPT, AC_BPT).
    fn is_bpt(self) -> bool {
        matches!(self, Self::Iso20AcBpt | Self::Iso20DcBpt)
    }
}

/// `--control-mode` of the -20 EV.
fn control_mode(s: &str) -> Result<ControlMode, String> {
    match s {
        "scheduled" => Ok(ControlMode::Scheduled),
        "dynamic" => Ok(ControlMode::Dynamic),
        s => Err(format!(
            "unknown control mode {s:?}; one of scheduled, dynamic"
        )),
    }
}

/// `evproto v2g evse`: an SECC serving sessions until stopped.
#[derive(Debug, clap::Args)]
pub(crate) struct EvseArgs {
    /// TCP address to listen on, IPv4 or IPv6 (`0.0.0.0:50000`,
    /// `[::]:50000`, `127.0.0.1:0` for a free port). Without it (and with
    /// --iface) the interface's link-local address, on a free port.
    #[arg(long, value_name = "ADDR", required_unless_present = "iface")]
    listen: Option<SocketAddr>,
    /// Also answer SDP (UDP port 15118, ff02::1) on this interface,
    /// announcing the TCP server (its link-local address when --listen is
    /// unspecified or absent).
    #[arg(long, value_name = "IF")]
    iface: Option<String>,
    /// Protocols offered: din, iso2-ac, iso2-dc, iso20-ac, iso20-dc,
    /// iso20-ac-bpt, iso20-dc-bpt (comma-separated; the -20 ones need --tls
    /// or --allow-iso20-without-tls; a -bpt one offers the bidirectional
    /// service DC_BPT or AC_BPT besides DC or AC, taking back as much as
    /// it gives). The energy modes offered are those of the listed names
    /// together. Default: din,iso2-ac,iso2-dc, and the -20 ones (with BPT)
    /// too with --tls or --allow-iso20-without-tls.
    /// Over TLS 1.3 the -20 ones and -2 are offered, over TLS 1.2 -2, over
    /// plain TCP DIN and -2 (and -20 with --allow-iso20-without-tls).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    protocols: Option<Vec<String>>,
    /// Also serve TLS, on a second port of the --listen address (a free
    /// one of 49152-65535; SDP announces it to EVs that ask for TLS), with
    /// the PKI in DIR (`evproto v2g pki DIR`): the SECC presents
    /// secc_leaf with cpo_sub_ca2 and cpo_sub_ca1; TLS 1.3 (-20) requires
    /// the EV's certificate, chained to oem_root; TLS 1.2 (-2) uses
    /// TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256.
    #[arg(long, value_name = "DIR")]
    tls: Option<std::path::PathBuf>,
    /// Serve ISO 15118-20 (EIM, scheduled and dynamic control modes) over
    /// plain TCP too. -20 mandates TLS 1.3 (--tls): a lab shortcut, for
    /// test benches and simulators only.
    #[arg(long)]
    allow_iso20_without_tls: bool,
    /// Exit after this many sessions (default: serve until stopped).
    #[arg(long, value_name = "N")]
    sessions: Option<u64>,
    /// Offer Plug & Charge with the PKI in DIR (`evproto v2g pki DIR`):
    /// contracts are checked against its MO roots (-2's and -20's); over
    /// ISO 15118-2 a car without a contract gets DIR's contract through
    /// CertificateInstallation (signed by the CPS leaf); over -20, the
    /// authorization by contract. Offered over TLS (--tls) only, unless
    /// --allow-pnc-without-tls.
    #[arg(long, value_name = "DIR")]
    pnc: Option<std::path::PathBuf>,
    /// Offer ISO 15118-2 Plug & Charge over plain TCP too. -2 requires TLS
    /// for PnC [V2G2-634]: a lab shortcut.
    #[arg(long)]
    allow_pnc_without_tls: bool,
    /// ISO 15118-20 BPT, dynamic control mode: ask this much power back
    /// from a car that offers energy (within both sides' limits); 0 (the
    /// default) charges every car.
    #[arg(long, value_name = "KW", default_value_t = 0.0)]
    discharge_demand_kw: f64,
    /// ISO 15118-20: offer Internet access as a value-added service
    /// (ServiceID 65, free; its parameter sets ftp 20/21, http 80, https
    /// 443). Off by default: Josev's EVCC fails when offered any VAS.
    #[arg(long)]
    offer_internet: bool,
    /// ISO 15118-20: support service renegotiation (ServiceDiscoveryRes'
    /// ServiceRenegotiationSupported): a car may stop, send
    /// SessionStop(ServiceRenegotiation) and choose its services again.
    #[arg(long)]
    service_renegotiation: bool,
    /// Ask every car to renegotiate N seconds after its power first went
    /// on, once (-2: ReNegotiation; -20 with --service-renegotiation:
    /// ServiceRenegotiation).
    #[arg(long, value_name = "N")]
    renegotiate_after_s: Option<f64>,
}

/// `evproto v2g pki`: a test PKI for Plug & Charge.
#[derive(Debug, clap::Args)]
pub(crate) struct PkiArgs {
    /// The directory to write (created if missing; files are overwritten).
    dir: std::path::PathBuf,
    /// The contract's eMAID (the contract certificate's CN).
    #[arg(long, default_value = "DEEVPC000000001")]
    emaid: String,
    /// Days the certificates stay valid (from yesterday).
    #[arg(long, value_name = "N", default_value_t = 365)]
    days: u64,
    /// Keys are derived from this text (the same seed gives the same PKI).
    /// Default: a random one.
    #[arg(long)]
    seed: Option<String>,
}

/// `evproto v2g ev`: an EVCC charging once and exiting.
#[derive(Debug, clap::Args)]
pub(crate) struct EvArgs {
    /// The SECC's TCP address (IPv4 or IPv6).
    #[arg(long, value_name = "ADDR", required_unless_present = "iface")]
    connect: Option<SocketAddr>,
    /// Find the SECC by SDP on this interface (ff02::1, 250 ms × 50
    /// requests); with --connect, only the scope of a link-local address.
    #[arg(long, value_name = "IF")]
    iface: Option<String>,
    /// The protocol: din, iso2-ac, iso2-dc, iso20-ac, iso20-dc,
    /// iso20-ac-bpt or iso20-dc-bpt (the -20 ones need --tls or
    /// --allow-iso20-without-tls; a -bpt one selects the bidirectional
    /// service, the car giving back as much as it takes).
    #[arg(long, value_name = "P")]
    protocol: String,
    /// Speak TLS, with the PKI in DIR (`evproto v2g pki DIR`): ask for it
    /// in SDP, check the SECC's chain against v2g_root; -20 over TLS 1.3
    /// presenting oem_leaf with oem_sub_ca2 and oem_sub_ca1, -2 over TLS
    /// 1.2 (TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256). Not for din.
    #[arg(long, value_name = "DIR")]
    tls: Option<std::path::PathBuf>,
    /// Speak ISO 15118-20 over plain TCP (it mandates TLS 1.3, --tls): a
    /// lab shortcut.
    #[arg(long)]
    allow_iso20_without_tls: bool,
    /// ISO 15118-20 control mode: scheduled or dynamic.
    #[arg(long, value_name = "MODE", default_value = "scheduled")]
    control_mode: String,
    /// External identification means (the default).
    #[arg(long, conflicts_with = "pnc")]
    eim: bool,
    /// Plug & Charge with the contract of DIR (`evproto v2g pki DIR`):
    /// over ISO 15118-2, contract_leaf, mo_sub_ca2, mo_sub_ca1, v2g_root;
    /// over -20, iso20_contract_leaf and its iso20_ sub-CAs (secp521r1).
    /// Needs --tls (or --allow-pnc-without-tls).
    #[arg(long, value_name = "DIR")]
    pnc: Option<std::path::PathBuf>,
    /// With --pnc over ISO 15118-20: present the -2 contract (secp256r1,
    /// signed with SHA-256) instead of the -20 one. Josev's SECC verifies
    /// SHA-256 signatures only.
    #[arg(long, requires = "pnc")]
    iso2_contract: bool,
    /// With --pnc: start without a contract and install DIR's through
    /// CertificateInstallation with the OEM provisioning certificate
    /// (over -20: iso20_oem_leaf, secp521r1; the EVSE delivers the iso20_
    /// contract).
    #[arg(long, requires = "pnc")]
    install_contract: bool,
    /// With --pnc: renew the contract through CertificateUpdate (the
    /// EVSE's provisioning service sends the new one) when it expires
    /// within N days.
    #[arg(
        long,
        value_name = "N",
        requires = "pnc",
        conflicts_with = "install_contract"
    )]
    renew_contract_within_days: Option<u64>,
    /// Speak ISO 15118-2 Plug & Charge over plain TCP (it requires TLS
    /// [V2G2-634], --tls): a lab shortcut.
    #[arg(long)]
    allow_pnc_without_tls: bool,
    /// Energy to charge, kWh.
    #[arg(long, value_name = "N", default_value_t = 0.1)]
    energy_kwh: f64,
    /// With iso20-ac-bpt or iso20-dc-bpt: energy to give back, kWh.
    /// Scheduled: the car discharges it, then stops; dynamic: it offers it
    /// and the EVSE decides.
    #[arg(long, value_name = "N", default_value_t = 0.0)]
    discharge_kwh: f64,
    /// ISO 15118-20: the value-added services to select where offered
    /// (ServiceIDs, comma-separated, e.g. 65 for Internet access), each
    /// with its first parameter set.
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    vas: Vec<u16>,
    /// DC: PreCharge is done when the EVSE's present voltage is within
    /// this many volts of the target. Raise it only against simulators
    /// whose power module does not follow the target (Josev's SECC
    /// answers 1 V whatever the EV asks).
    #[arg(long, value_name = "V", default_value_t = 20.0)]
    precharge_tolerance_v: f64,
    /// How long to wait for a CurrentDemandRes (the standards' 250 ms by
    /// default). Raise it only for peers known to be slow (Josev's SECC
    /// answers in 50-180 ms on an idle machine).
    #[arg(long, value_name = "MS", default_value_t = 250)]
    current_demand_timeout_ms: u64,
    /// How long to wait for an ISO 15118-20 AC/DC_ChargeLoopRes (the
    /// standard's 500 ms by default). Raise it only for peers known to be
    /// slow (Josev's SECC).
    #[arg(long, value_name = "MS", default_value_t = 500)]
    charge_loop_timeout_ms: u64,
    /// Print the summary as one JSON line (the last line of stdout):
    /// `protocol`, `session_id`, `energy_wh`, `discharged_wh`, `messages`,
    /// `tls`, `emaid` (Plug & Charge: the contract's), `vas` (-20 value-added
    /// services selected, `[ServiceID, ParameterSetID]`), `contract` (one
    /// installed or renewed), `result`.
    #[arg(long)]
    json: bool,
}

/// Eight bytes nobody can guess from outside the process (not for
/// cryptography): std's randomly keyed SipHash over a counter and the clock.
fn random_bytes() -> [u8; 8] {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let mut b = h.finish().to_be_bytes();
    if b.iter().all(|x| *x == 0) {
        b[7] = 1;
    }
    b
}

fn upper_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// The `result` of a summary: `"ok"`, or the failure: its kind, the
/// ResponseCode that ended it (when one did) and a description.
fn result_json(report: &SessionReport) -> Value {
    if report.is_ok() {
        return json!("ok");
    }
    let detail = match &report.end {
        Ok(reason) => format!("{reason:?}"),
        Err(e) => e.to_string(),
    };
    json!({
        "error": shell::end_kind(&report.end),
        "response_code": report.response_code(),
        "detail": detail,
    })
}

/// `n` bytes of [`random_bytes`] (session GenChallenges, the lab
/// provisioning service's seed; not key material of a real PKI).
fn random_vec(n: usize) -> Vec<u8> {
    (0..n.div_ceil(8))
        .flat_map(|_| random_bytes())
        .take(n)
        .collect()
}

/// The files `evproto v2g pki` writes, by stem, with what each is.
const PKI_FILES: &[(&str, &str)] = &[
    (
        "v2g_root",
        "V2G root CA (self-signed; the SECC chain's and the CPS chain's root)",
    ),
    (
        "cpo_sub_ca1",
        "CPO sub-CA 1 (path length 1), issued by the V2G root",
    ),
    (
        "cpo_sub_ca2",
        "CPO sub-CA 2 (path length 0), issued by CPO sub-CA 1",
    ),
    (
        "secc_leaf",
        "SECC leaf (the charger's TLS certificate), issued by CPO sub-CA 2",
    ),
    (
        "cps_sub_ca1",
        "CPS (provisioning service) sub-CA 1, issued by the V2G root",
    ),
    ("cps_sub_ca2", "CPS sub-CA 2, issued by CPS sub-CA 1"),
    (
        "cps_leaf",
        "SA provisioning leaf: signs CertificateInstallationRes",
    ),
    (
        "mo_root",
        "MO root CA (self-signed; contracts must chain to it)",
    ),
    ("mo_sub_ca1", "MO sub-CA 1, issued by the MO root"),
    ("mo_sub_ca2", "MO sub-CA 2, issued by MO sub-CA 1"),
    (
        "contract_leaf",
        "contract certificate, CN = the eMAID (emaid.txt), issued by MO sub-CA 2",
    ),
    ("oem_root", "OEM root CA (self-signed)"),
    ("oem_sub_ca1", "OEM sub-CA 1, issued by the OEM root"),
    ("oem_sub_ca2", "OEM sub-CA 2, issued by OEM sub-CA 1"),
    (
        "oem_leaf",
        "OEM provisioning certificate (digitalSignature, keyAgreement), issued by OEM sub-CA 2",
    ),
    (
        "iso20_mo_root",
        "ISO 15118-20 MO root CA (secp521r1, ecdsa-with-SHA512; self-signed)",
    ),
    (
        "iso20_mo_sub_ca1",
        "-20 MO sub-CA 1, issued by the -20 MO root",
    ),
    (
        "iso20_mo_sub_ca2",
        "-20 MO sub-CA 2, issued by -20 MO sub-CA 1",
    ),
    (
        "iso20_contract_leaf",
        "-20 contract certificate (secp521r1), CN = the eMAID, issued by -20 MO sub-CA 2",
    ),
    (
        "iso20_v2g_root",
        "-20 V2G root CA (secp521r1; the -20 CPS chain's root)",
    ),
    (
        "iso20_cps_sub_ca1",
        "-20 CPS sub-CA 1, issued by the -20 V2G root",
    ),
    (
        "iso20_cps_sub_ca2",
        "-20 CPS sub-CA 2, issued by -20 CPS sub-CA 1",
    ),
    (
        "iso20_cps_leaf",
        "-20 CPS leaf: signs -20 CertificateInstallationRes' SignedInstallationData",
    ),
    ("iso20_oem_root", "-20 OEM root CA (secp521r1; self-signed)"),
    (
        "iso20_oem_sub_ca1",
        "-20 OEM sub-CA 1, issued by the -20 OEM root",
    ),
    (
        "iso20_oem_sub_ca2",
        "-20 OEM sub-CA 2, issued by -20 OEM sub-CA 1",
    ),
    (
        "iso20_oem_leaf",
        "-20 OEM provisioning certificate, CN = the PCID, issued by -20 OEM sub-CA 2",
    ),
];

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Runs `evproto v2g pki DIR`: writes the demo PKI and prints the files.
pub(crate) fn run_pki(args: PkiArgs) -> Result<(), String> {
    if !(1..=36_500).contains(&args.days) {
        return Err("--days: 1 to 36500".into());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let seed = args
        .seed
        .map(String::into_bytes)
        .unwrap_or_else(|| random_vec(32));
    let (not_before, not_after) = (now - 86_400, now + args.days * 86_400);
    let pki =
        DemoPki::generate(&seed, &args.emaid, not_before, not_after).map_err(|e| e.to_string())?;
    let iso20 = DemoContract::generate(&seed, &args.emaid, Curve::P521, not_before, not_after)
        .map_err(|e| e.to_string())?;
    let prov =
        DemoProvisioning::generate(&seed, not_before, not_after).map_err(|e| e.to_string())?;
    let mut all = pki.all();
    all.extend([
        ("iso20_mo_root", &iso20.mo_root),
        ("iso20_mo_sub_ca1", &iso20.mo_sub_ca1),
        ("iso20_mo_sub_ca2", &iso20.mo_sub_ca2),
        ("iso20_contract_leaf", &iso20.contract),
        ("iso20_v2g_root", &prov.v2g_root),
        ("iso20_cps_sub_ca1", &prov.cps_sub_ca1),
        ("iso20_cps_sub_ca2", &prov.cps_sub_ca2),
        ("iso20_cps_leaf", &prov.cps),
        ("iso20_oem_root", &prov.oem_root),
        ("iso20_oem_sub_ca1", &prov.oem_sub_ca1),
        ("iso20_oem_sub_ca2", &prov.oem_sub_ca2),
        ("iso20_oem_leaf", &prov.oem_provisioning),
    ]);
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let write = |name: String, bytes: &[u8]| {
        let path = args.dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))
    };
    let mut readme = String::from(
        "Test PKI for Plug & Charge, made by `evproto v2g pki`: ISO 15118-2's hierarchies\n\
         (secp256r1, ecdsa-with-SHA256) and ISO 15118-20's MO hierarchy and contract, V2G\n\
         root and CPS chain, OEM hierarchy and provisioning certificate (iso20_*: secp521r1,\n\
         ecdsa-with-SHA512). Test keys: no secrets. Each certificate\n\
         NAME is NAME.der and NAME.pem, its private key NAME.key.der and NAME.key.pem\n\
         (PKCS#8, unencrypted).\n\n",
    );
    for (name, issued) in &all {
        let der = issued.cert.der();
        let key = issued.key.to_pkcs8_der().map_err(|e| e.to_string())?;
        write(format!("{name}.der"), der)?;
        write(format!("{name}.pem"), pem("CERTIFICATE", der).as_bytes())?;
        write(format!("{name}.key.der"), &key)?;
        write(
            format!("{name}.key.pem"),
            pem("PRIVATE KEY", &key).as_bytes(),
        )?;
        let what = PKI_FILES
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, w)| *w);
        readme.push_str(&format!(
            "{name:<19} {what}\n                    subject {}\n",
            issued.cert.subject()
        ));
    }
    write("emaid.txt".into(), format!("{}\n", pki.emaid).as_bytes())?;
    write_josev_layout(&args.dir, &pki)?;
    readme.push_str(
        "\niso15118_2/     the same certificates and keys in Josev's layout (its PKI_PATH is DIR):\n\
         \x20              certs/ (DER; PEM for the roots and the SECC leaf; cpoCertChain.pem and\n\
         \x20              oemCertChain.pem, leaf first), private_keys/ (PKCS#8 PEM, unencrypted,\n\
         \x20              empty password files)\n",
    );
    readme.push_str(&format!(
        "\nemaid.txt      the contract's eMAID ({})\n\n\
         evproto v2g evse --listen ADDR --tls DIR --pnc DIR   (prints the TLS port: `tls on ADDR`)\n\
         evproto v2g ev --connect TLS_ADDR --tls DIR --protocol iso2-dc --pnc DIR [--install-contract]\n\
         evproto v2g ev --connect TLS_ADDR --tls DIR --protocol iso20-dc --pnc DIR   (the iso20_ contract)\n\
         evproto v2g ev --connect TLS_ADDR --tls DIR --protocol iso20-dc --pnc DIR --install-contract\n\
         evproto v2g ev --connect TLS_ADDR --tls DIR --protocol iso20-dc\n",
        pki.emaid
    ));
    write("README.txt".into(), readme.as_bytes())?;
    println!("{}", args.dir.display());
    for (name, _) in &all {
        println!("  {name}.der .pem .key.der .key.pem");
    }
    println!("  emaid.txt README.txt iso15118_2/ (Josev's layout)");
    Ok(())
}

/// Our PKI names and Josev's (EcoG-io `iso15118`, `shared/security.py`
/// `CertPath`/`KeyPath`): `{josev}Cert.der` and `{josev}.key`.
const JOSEV_NAMES: &[(&str, &str)] = &[
    ("v2g_root", "v2gRootCA"),
    ("cpo_sub_ca1", "cpoSubCA1"),
    ("cpo_sub_ca2", "cpoSubCA2"),
    ("secc_leaf", "seccLeaf"),
    ("cps_sub_ca1", "cpsSubCA1"),
    ("cps_sub_ca2", "cpsSubCA2"),
    ("cps_leaf", "cpsLeaf"),
    ("mo_root", "moRootCA"),
    ("mo_sub_ca1", "moSubCA1"),
    ("mo_sub_ca2", "moSubCA2"),
    ("contract_leaf", "contractLeaf"),
    ("oem_root", "oemRootCA"),
    ("oem_sub_ca1", "oemSubCA1"),
    ("oem_sub_ca2", "oemSubCA2"),
    ("oem_leaf", "oemLeaf"),
];

/// The PKI in Josev's layout under `dir/iso15118_2/`, so that Josev's SECC
/// and EVCC run Plug & Charge against ours with `PKI_PATH=dir`.
fn write_josev_layout(dir: &std::path::Path, pki: &DemoPki) -> Result<(), String> {
    let certs = dir.join("iso15118_2/certs");
    let keys = dir.join("iso15118_2/private_keys");
    for d in [&certs, &keys] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let write = |path: std::path::PathBuf, bytes: &[u8]| {
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))
    };
    let all = pki.all();
    let issued = |name: &str| {
        all.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, i)| *i)
            .ok_or_else(|| format!("no {name} in the PKI"))
    };
    for (ours, josev) in JOSEV_NAMES {
        let i = issued(ours)?;
        let der = i.cert.der();
        write(certs.join(format!("{josev}Cert.der")), der)?;
        write(
            certs.join(format!("{josev}Cert.pem")),
            pem("CERTIFICATE", der).as_bytes(),
        )?;
        let key = i.key.to_pkcs8_der().map_err(|e| e.to_string())?;
        write(
            keys.join(format!("{josev}.key")),
            pem("PRIVATE KEY", &key).as_bytes(),
        )?;
    }
    for (file, chain) in [
        (
            "cpoCertChain.pem",
            ["secc_leaf", "cpo_sub_ca2", "cpo_sub_ca1"],
        ),
        (
            "oemCertChain.pem",
            ["oem_leaf", "oem_sub_ca2", "oem_sub_ca1"],
        ),
    ] {
        let mut text = String::new();
        for name in chain {
            text.push_str(&pem("CERTIFICATE", issued(name)?.cert.der()));
        }
        write(certs.join(file), text.as_bytes())?;
    }
    // the keys are not encrypted: Josev reads an empty password as none
    for file in [
        "seccLeafPassword.txt",
        "oemLeafPassword.txt",
        "contractLeafPassword.txt",
        "cpsLeafPassword.txt",
        "moSubCA2LeafPassword.txt",
    ] {
        write(keys.join(file), b"")?;
    }
    Ok(())
}

/// A certificate (NAME.der) and, with `key`, its key (NAME.key.der) from a PKI directory.
fn read_pki(dir: &std::path::Path, name: &str) -> Result<Cert, String> {
    let path = dir.join(format!("{name}.der"));
    let der = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Cert::from_der(&der).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_key(dir: &std::path::Path, name: &str) -> Result<SigningKey, String> {
    let path = dir.join(format!("{name}.key.der"));
    let der = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    SigningKey::from_der(&der).map_err(|e| format!("{}: {e}", path.display()))
}

/// The ISO 15118-2 contract of a PKI directory (secp256r1).
fn read_contract(dir: &std::path::Path) -> Result<Contract, String> {
    read_contract_as(dir, "")
}

/// The contract of a PKI directory whose files start with `prefix`
/// (`iso20_`: the ISO 15118-20 one, secp521r1).
fn read_contract_as(dir: &std::path::Path, prefix: &str) -> Result<Contract, String> {
    let leaf = read_pki(dir, &format!("{prefix}contract_leaf"))?;
    let emaid = leaf
        .common_name()
        .ok_or_else(|| format!("{prefix}contract_leaf.der has no CN (the eMAID)"))?;
    Ok(Contract::new(
        emaid,
        leaf.der().to_vec(),
        vec![
            read_pki(dir, &format!("{prefix}mo_sub_ca2"))?
                .der()
                .to_vec(),
            read_pki(dir, &format!("{prefix}mo_sub_ca1"))?
                .der()
                .to_vec(),
        ],
        read_key(dir, &format!("{prefix}contract_leaf"))?.to_bytes(),
    ))
}

const PNC_TLS: &str = "ISO 15118-2 Plug & Charge requires TLS [V2G2-634]: give --tls DIR; \
                       --allow-pnc-without-tls runs it over plain TCP (lab only)";

/// The SECC's TLS from a PKI directory: its CPO chain for both versions,
/// the OEM root for the EVs' certificates (TLS 1.3).
fn secc_tls(dir: &std::path::Path) -> Result<SeccTls, String> {
    let identity = Identity::new(
        read_pki(dir, "secc_leaf")?.der().to_vec(),
        vec![
            read_pki(dir, "cpo_sub_ca2")?.der().to_vec(),
            read_pki(dir, "cpo_sub_ca1")?.der().to_vec(),
        ],
        read_key(dir, "secc_leaf")?
            .to_pkcs8_der()
            .map_err(|e| e.to_string())?,
    );
    let oem = TrustStore::new(vec![read_pki(dir, "oem_root")?]);
    SeccTls::new()
        .with_tls13(&identity, &oem)
        .and_then(|t| t.with_tls12(&identity))
        .map_err(|e| format!("--tls {}: {e}", dir.display()))
}

/// The EV's TLS from a PKI directory: the V2G root; for TLS 1.3 its OEM
/// chain.
fn evcc_tls(dir: &std::path::Path) -> Result<EvccTls, String> {
    let identity = Identity::new(
        read_pki(dir, "oem_leaf")?.der().to_vec(),
        vec![
            read_pki(dir, "oem_sub_ca2")?.der().to_vec(),
            read_pki(dir, "oem_sub_ca1")?.der().to_vec(),
        ],
        read_key(dir, "oem_leaf")?
            .to_pkcs8_der()
            .map_err(|e| e.to_string())?,
    );
    EvccTls::new(TrustStore::new(vec![read_pki(dir, "v2g_root")?]))
        .with_tls13(Some(&identity))
        .and_then(EvccTls::with_tls12)
        .map_err(|e| format!("--tls {}: {e}", dir.display()))
}

/// `"TLSv1.3"` / `"TLSv1.2"` for the session lines.
fn tls_name(info: &TlsInfo) -> &'static str {
    match info.version {
        TlsVersion::Tls13 => "TLSv1.3",
        _ => "TLSv1.2",
    }
}

/// The SECC's sessions: over plain TCP, TLS 1.3 and TLS 1.2 each with
/// its own protocols (and Plug & Charge over plain TCP only when allowed).
struct Charger {
    plain: SeccConfig,
    tls13: SeccConfig,
    tls12: SeccConfig,
    provisioning: Option<ContractProvisioning>,
    provisioning_iso20: Option<ContractProvisioning>,
    renegotiate_after: Option<std::time::Duration>,
    done: tokio::sync::mpsc::UnboundedSender<()>,
}

impl Charger {
    fn session(&self, config: &SeccConfig) -> (SeccConfig, SimEvse) {
        let mut config = config.clone();
        config.session_id = random_bytes().to_vec();
        if let Some(pnc) = config.pnc.as_mut() {
            pnc.gen_challenge.copy_from_slice(&random_vec(16));
        }
        let mut evse = SimEvse::default();
        evse.provisioning = self.provisioning.clone();
        evse.provisioning_iso20 = self.provisioning_iso20.clone();
        evse.renegotiate_after = self.renegotiate_after;
        evse.provisioning_seed.copy_from_slice(&random_vec(32));
        (config, evse)
    }
}

impl SeccService for Charger {
    type Evse = SimEvse;
    fn accept(&self, _peer: SocketAddr) -> (SeccConfig, SimEvse) {
        self.session(&self.plain)
    }
    fn accept_tls(&self, _peer: SocketAddr, tls: &TlsInfo) -> (SeccConfig, SimEvse) {
        match tls.version {
            TlsVersion::Tls13 => self.session(&self.tls13),
            _ => self.session(&self.tls12),
        }
    }
    fn finished(&self, peer: SocketAddr, report: SessionReport) {
        let line = json!({
            "peer": peer.to_string(),
            "protocol": report.protocol.map(|p| match (p, report.energy_mode) {
                (Protocol::Din, _) => "din",
                (Protocol::Iso20Ac, _) if report.bpt => "iso20-ac-bpt",
                (Protocol::Iso20Dc, _) if report.bpt => "iso20-dc-bpt",
                (Protocol::Iso20Ac, _) => "iso20-ac",
                (Protocol::Iso20Dc, _) => "iso20-dc",
                (_, Some(m)) if m.is_dc() => "iso2-dc",
                (_, Some(_)) => "iso2-ac",
                (_, None) => "iso2",
            }),
            "session_id": report.session_id.as_deref().map(upper_hex),
            "energy_wh": (report.energy_wh * 1000.0).round() / 1000.0,
            "discharged_wh": (report.discharged_wh * 1000.0).round() / 1000.0,
            "messages": report.messages(),
            "tls": report.tls.as_ref().map(tls_name),
            "emaid": report.emaid,
            "vas": report.vas,
            "service_renegotiations": report.service_renegotiations,
            "result": result_json(&report),
        });
        println!("{line}");
        let _ = self.done.send(());
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// The SECC's configurations over plain TCP, TLS 1.3 and TLS 1.2 from
/// one with every protocol and Plug & Charge: over plain TCP no -20
/// unless `allow_iso20`, no Plug & Charge unless `allow_pnc`
/// [V2G2-634]; over TLS 1.3 the -20 protocols and -2 (-20 Table 5); over
/// TLS 1.2 -2 only. DIN has no TLS.
fn session_configs(
    all: &SeccConfig,
    allow_iso20: bool,
    allow_pnc: bool,
) -> (SeccConfig, SeccConfig, SeccConfig) {
    let only = |keep: &dyn Fn(Protocol) -> bool, pnc: bool| {
        all.clone()
            .with_protocols(all.protocols.iter().copied().filter(|p| keep(*p)).collect())
            .with_pnc(all.pnc.clone().filter(|_| pnc))
    };
    (
        only(&|p| !p.is_iso20() || allow_iso20, allow_pnc),
        only(&|p| p != Protocol::Din, true),
        only(&|p| p == Protocol::Iso2, true),
    )
}

/// Runs `evproto v2g evse`: prints `listening on ADDR` first (and `sdp on
/// ADDR (IF), announcing ADDR` with --iface), then one JSON line per
/// session ended.
pub(crate) fn run_evse(args: EvseArgs) -> Result<(), String> {
    let default: &[&str] = if args.allow_iso20_without_tls || args.tls.is_some() {
        PROTOCOLS
    } else {
        &PROTOCOLS[..3]
    };
    let listed = args
        .protocols
        .clone()
        .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect());
    let names = listed
        .iter()
        .map(|s| ProtocolName::parse(s.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    if names.is_empty() {
        return Err("--protocols: at least one".into());
    }
    if names.iter().any(|n| n.is_iso20()) && !args.allow_iso20_without_tls && args.tls.is_none() {
        return Err(format!("--protocols: {ISO20_TLS}"));
    }
    let mut protocols: Vec<Protocol> = Vec::new();
    let mut modes: Vec<EnergyMode> = Vec::new();
    for n in &names {
        if !protocols.contains(&n.protocol()) {
            protocols.push(n.protocol());
        }
        for m in n.energy_modes() {
            if !modes.contains(m) {
                modes.push(*m);
            }
        }
    }
    let iface = args
        .iface
        .as_deref()
        .map(Interface::by_name)
        .transpose()
        .map_err(|e| e.to_string())?;
    let listen = match (args.listen, &iface) {
        (Some(a), _) => a,
        (None, Some(i)) => {
            let ll = i.link_local_address().map_err(|e| e.to_string())?;
            SocketAddr::V6(SocketAddrV6::new(ll, 0, 0, i.index()))
        }
        (None, None) => return Err("--listen or --iface".into()),
    };
    if iface.is_some() && listen.is_ipv4() {
        return Err("--iface (SDP) announces an IPv6 address: --listen must be IPv6".into());
    }
    let mut provisioning = None;
    let mut provisioning_iso20 = None;
    let mut pnc = None;
    if let Some(dir) = &args.pnc {
        if !args.allow_pnc_without_tls && args.tls.is_none() {
            return Err(format!("--pnc: {PNC_TLS}"));
        }
        // contracts of either version: -2's MO root and, in a PKI that has
        // it, -20's (a -2 contract over -20 is taken too: Josev sends one)
        let mut mo_roots = vec![read_pki(dir, "mo_root")?];
        if dir.join("iso20_mo_root.der").exists() {
            mo_roots.push(read_pki(dir, "iso20_mo_root")?);
        }
        pnc = Some(SeccPnc::new(TrustStore::new(mo_roots), [0; 16]));
        provisioning = Some(ContractProvisioning {
            cps_key: read_key(dir, "cps_leaf")?,
            cps_certificate: read_pki(dir, "cps_leaf")?.der().to_vec(),
            cps_sub_cas: vec![
                read_pki(dir, "cps_sub_ca2")?.der().to_vec(),
                read_pki(dir, "cps_sub_ca1")?.der().to_vec(),
            ],
            contract: read_contract(dir)?,
        });
        // -20 CertificateInstallation, in a PKI that has its CPS chain
        if dir.join("iso20_cps_leaf.der").exists() {
            provisioning_iso20 = Some(ContractProvisioning {
                cps_key: read_key(dir, "iso20_cps_leaf")?,
                cps_certificate: read_pki(dir, "iso20_cps_leaf")?.der().to_vec(),
                cps_sub_cas: vec![
                    read_pki(dir, "iso20_cps_sub_ca2")?.der().to_vec(),
                    read_pki(dir, "iso20_cps_sub_ca1")?.der().to_vec(),
                ],
                contract: read_contract_as(dir, "iso20_")?,
            });
        }
    }
    if !(args.discharge_demand_kw.is_finite() && args.discharge_demand_kw >= 0.0) {
        return Err("--discharge-demand-kw: a number of kW, 0 or more".into());
    }
    // BPT: the simulated EVSE takes back what it gives
    let evse = SimEvse::default().status;
    let bpt = names.iter().any(|n| n.is_bpt()).then(|| {
        SeccBpt::new(evse.max_power, evse.max_current)
            .with_discharge_demand(args.discharge_demand_kw * 1000.0)
    });
    let base = SeccConfig::new(random_bytes().to_vec())
        .with_protocols(protocols)
        .with_energy_modes(modes)
        .with_pnc(pnc)
        .with_bpt(bpt)
        .with_vas(if args.offer_internet {
            vec![Vas::internet(true)]
        } else {
            vec![]
        })
        .with_service_renegotiation(args.service_renegotiation);
    let renegotiate_after = args
        .renegotiate_after_s
        .map(|s| {
            if s.is_finite() && (0.0..=86_400.0).contains(&s) {
                Ok(std::time::Duration::from_secs_f64(s))
            } else {
                Err("--renegotiate-after-s: 0 to 86400 seconds".to_string())
            }
        })
        .transpose()?;
    let (plain, tls13, tls12) = session_configs(
        &base,
        args.allow_iso20_without_tls,
        args.allow_pnc_without_tls,
    );
    let tls = args.tls.as_deref().map(secc_tls).transpose()?;
    runtime()?.block_on(async move {
        let server = SeccServer::bind(listen, ShellConfig::default())
            .await
            .map_err(|e| e.to_string())?;
        let local = server.local_addr().map_err(|e| e.to_string())?;
        println!("listening on {local}");
        let (done, mut ended) = tokio::sync::mpsc::unbounded_channel();
        let charger = std::sync::Arc::new(Charger {
            plain,
            tls13,
            tls12,
            provisioning,
            provisioning_iso20,
            renegotiate_after,
            done,
        });
        let mut tls_port = None;
        if let Some(tls) = tls {
            let mut at = local;
            at.set_port(0);
            let server = SeccServer::bind(at, ShellConfig::default())
                .await
                .map_err(|e| e.to_string())?
                .with_tls(tls);
            let local = server.local_addr().map_err(|e| e.to_string())?;
            println!("tls on {local}");
            tls_port = Some(local.port());
            tokio::spawn(server.serve(std::sync::Arc::clone(&charger)));
        }
        if let Some(iface) = iface {
            let announced = match local {
                SocketAddr::V6(a) if !a.ip().is_unspecified() => SocketAddr::V6(a),
                SocketAddr::V6(a) => {
                    let ll = iface.link_local_address().map_err(|e| e.to_string())?;
                    SocketAddr::V6(SocketAddrV6::new(ll, a.port(), 0, iface.index()))
                }
                SocketAddr::V4(_) => {
                    return Err(
                        "--iface (SDP) announces an IPv6 address: --listen must be IPv6".into(),
                    )
                }
            };
            let sdp = SdpServerConfig::new(Some(iface.clone()), announced)
                .map_err(|e| e.to_string())?
                .with_tls_port(tls_port);
            let sdp = SdpServer::bind(&sdp).await.map_err(|e| e.to_string())?;
            println!(
                "sdp on {} ({}), announcing {announced}",
                sdp.local_addr().map_err(|e| e.to_string())?,
                iface.name()
            );
            tokio::spawn(sdp.run());
        }
        tokio::spawn(server.serve(charger));
        let mut count = 0u64;
        while ended.recv().await.is_some() {
            count += 1;
            if args.sessions.is_some_and(|n| count >= n) {
                break;
            }
        }
        Ok(())
    })
}

/// Runs `evproto v2g ev`: charges once; the summary is the last stdout
/// line (JSON with --json). `Ok(true)` when the session ended normally.
pub(crate) fn run_ev(args: EvArgs) -> Result<bool, String> {
    let name = ProtocolName::parse(&args.protocol)?;
    if name.is_iso20() && !args.allow_iso20_without_tls && args.tls.is_none() {
        return Err(format!("--protocol {}: {ISO20_TLS}", name.name()));
    }
    if name == ProtocolName::Din && args.tls.is_some() {
        return Err("--tls: DIN SPEC 70121 runs without TLS".into());
    }
    let tls = args.tls.as_deref().map(evcc_tls).transpose()?;
    let mode = control_mode(&args.control_mode)?;
    if !(args.energy_kwh.is_finite() && args.energy_kwh > 0.0 && args.energy_kwh <= 1000.0) {
        return Err("--energy-kwh: a number of kWh above 0 and at most 1000".into());
    }
    if !(args.discharge_kwh.is_finite() && (0.0..=1000.0).contains(&args.discharge_kwh)) {
        return Err("--discharge-kwh: a number of kWh from 0 to 1000".into());
    }
    if args.discharge_kwh > 0.0 && !name.is_bpt() {
        return Err("--discharge-kwh: for iso20-ac-bpt and iso20-dc-bpt".into());
    }
    let _eim = args.eim; // the default identification means
    let iface = args
        .iface
        .as_deref()
        .map(Interface::by_name)
        .transpose()
        .map_err(|e| e.to_string())?;
    if !(args.precharge_tolerance_v.is_finite() && args.precharge_tolerance_v >= 0.0) {
        return Err("--precharge-tolerance-v: a number of volts, 0 or more".into());
    }
    let mut mac = random_bytes()[..6].to_vec();
    mac[0] = (mac[0] & 0xfc) | 0x02; // locally administered, unicast
    let mut config = match name {
        ProtocolName::Din => EvccConfig::din_dc(mac),
        ProtocolName::Iso2Ac => EvccConfig::iso2_ac(mac),
        ProtocolName::Iso2Dc => EvccConfig::iso2_dc(mac),
        ProtocolName::Iso20Ac | ProtocolName::Iso20AcBpt => {
            EvccConfig::iso20_ac(mac).with_control_mode(mode)
        }
        ProtocolName::Iso20Dc | ProtocolName::Iso20DcBpt => {
            EvccConfig::iso20_dc(mac).with_control_mode(mode)
        }
    };
    if name.is_bpt() {
        // the car gives back as much as it takes
        let (p, i) = (config.ev.max_power, config.ev.max_current);
        config = config.with_bpt(Some(EvBpt::new(p, i, args.discharge_kwh * 1000.0)));
    }
    config.precharge_tolerance = args.precharge_tolerance_v;
    if !args.vas.is_empty() {
        if !name.is_iso20() {
            return Err("--vas: value-added services are ISO 15118-20's".into());
        }
        config = config.with_vas(args.vas.clone());
    }
    if let Some(dir) = &args.pnc {
        if !args.allow_pnc_without_tls && tls.is_none() {
            return Err(format!("--pnc: {PNC_TLS}"));
        }
        let iso2 = matches!(name, ProtocolName::Iso2Ac | ProtocolName::Iso2Dc);
        if !iso2 && !name.is_iso20() {
            return Err("--pnc: Plug & Charge is ISO 15118-2 or -20 (not DIN)".into());
        }
        if !iso2 && args.renew_contract_within_days.is_some() {
            return Err(
                "--renew-contract-within-days: ISO 15118-2 only (-20 has no CertificateUpdate)"
                    .into(),
            );
        }
        if !iso2 && args.install_contract && args.iso2_contract {
            return Err(
                "--install-contract over ISO 15118-20 installs the iso20_ contract: \
                 not with --iso2-contract"
                    .into(),
            );
        }
        let contract = if args.install_contract {
            None
        } else if iso2 || args.iso2_contract {
            Some(read_contract(dir)?)
        } else {
            Some(read_contract_as(dir, "iso20_")?)
        };
        // -2: the OEM provisioning certificate (secp256r1) for
        // CertificateInstallation; -20 installs with the secp521r1 one, and
        // only when told to (a -20 car with a contract never installs),
        // trusting the -20 V2G root (the CPS chain's) too
        let oem = if iso2 {
            Some("oem_leaf")
        } else {
            args.install_contract.then_some("iso20_oem_leaf")
        };
        let provisioning = oem
            .map(|oem| -> Result<Provisioning, String> {
                Ok(Provisioning::new(
                    read_pki(dir, oem)?.der().to_vec(),
                    read_key(dir, oem)?.to_bytes(),
                ))
            })
            .transpose()?;
        let mut roots = vec![read_pki(dir, "v2g_root")?];
        if !iso2 && dir.join("iso20_v2g_root.der").exists() {
            roots.push(read_pki(dir, "iso20_v2g_root")?);
        }
        let roots = TrustStore::new(roots);
        config.unix_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let renew = args
            .renew_contract_within_days
            .map(|d| d.saturating_mul(86_400));
        config = config.with_pnc(Some(
            EvPnc::new(contract, provisioning, roots).with_renewal(renew),
        ));
    }
    if !(1..=60_000).contains(&args.current_demand_timeout_ms) {
        return Err("--current-demand-timeout-ms: 1 to 60000".into());
    }
    config.timers.current_demand = std::time::Duration::from_millis(args.current_demand_timeout_ms);
    if !(1..=60_000).contains(&args.charge_loop_timeout_ms) {
        return Err("--charge-loop-timeout-ms: 1 to 60000".into());
    }
    config.timers.charge_loop = std::time::Duration::from_millis(args.charge_loop_timeout_ms);
    // where to connect (Ok), or the interface to run SDP on (Err)
    let target: Result<SocketAddr, Interface> = match (args.connect, iface) {
        (Some(SocketAddr::V6(a)), Some(i)) if a.scope_id() == 0 => Ok(SocketAddr::V6(
            SocketAddrV6::new(*a.ip(), a.port(), 0, i.index()),
        )),
        (Some(a), _) => Ok(a),
        (None, Some(i)) => Err(i),
        (None, None) => return Err("--connect or --iface".into()),
    };
    let wh = args.energy_kwh * 1000.0;
    let ev = SimEv::new(wh).with_status(config.ev.clone());
    let shell_config = ShellConfig::default();
    let outcome = runtime()?.block_on(async move {
        let addr = match target {
            Ok(a) => a,
            Err(i) => {
                eprintln!("evproto: SDP on {}", i.name());
                let security = if tls.is_some() {
                    Security::Tls
                } else {
                    Security::None
                };
                shell::discover(&SdpClientConfig::multicast(i).with_security(security))
                    .await
                    .map_err(|e| ("discovery", e))?
            }
        };
        eprintln!("evproto: charging {wh} Wh over {} from {addr}", name.name());
        let stream = shell::connect(addr, shell_config.connect_timeout)
            .await
            .map_err(|e| ("connect", e))?;
        let Some(tls) = tls else {
            return Ok((
                shell::run_evcc(stream, config, ev, &shell_config).await,
                None,
            ));
        };
        let version = if name.is_iso20() {
            TlsVersion::Tls13
        } else {
            TlsVersion::Tls12
        };
        let (stream, info) = tls
            .connect(stream, version, shell_config.handshake_timeout)
            .await
            .map_err(|e| ("tls", e))?;
        eprintln!("evproto: {} with {}", tls_name(&info), info.cipher_suite);
        let report = shell::run_evcc(stream, config, ev, &shell_config).await;
        Ok::<_, (&str, shell::Error)>((report, Some(info)))
    });
    let (summary, ok) = match outcome {
        Ok((report, tls)) => (
            json!({
                "protocol": name.name(),
                "session_id": report.session_id.as_deref().map(upper_hex),
                "energy_wh": (report.energy_wh * 1000.0).round() / 1000.0,
                "discharged_wh": (report.discharged_wh * 1000.0).round() / 1000.0,
                "messages": report.messages(),
                "tls": tls.as_ref().map(tls_name),
                "emaid": report.emaid,
                "vas": report.vas,
                "service_renegotiations": report.service_renegotiations,
                "contract": report.contract.as_ref().map(|(c, change)| json!({
                    "emaid": c.emaid,
                    "change": match change {
                        shell::ContractChange::Installed => "installed",
                        shell::ContractChange::Renewed => "renewed",
                    },
                })),
                "result": result_json(&report),
            }),
            report.is_ok(),
        ),
        Err((stage, e)) => (
            json!({
                "protocol": name.name(),
                "session_id": null,
                "energy_wh": 0.0,
                "discharged_wh": 0.0,
                "messages": 0,
                "tls": null,
                "emaid": null,
                "vas": [],
                "contract": null,
                "result": {"error": stage, "response_code": null, "detail": e.to_string()},
            }),
            false,
        ),
    };
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "protocol {}  session {}  energy {} Wh  messages {}  result {}",
            summary["protocol"].as_str().unwrap_or_default(),
            summary["session_id"].as_str().unwrap_or("-"),
            summary["energy_wh"],
            summary["messages"],
            match &summary["result"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }
        );
    }
    if !ok {
        eprintln!("evproto: the session failed: {}", summary["result"]);
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pki_writes_a_chain_the_pnc_flags_read_back() {
        let dir = std::env::temp_dir().join(format!("evproto-pki-{}", std::process::id()));
        run_pki(PkiArgs {
            dir: dir.clone(),
            emaid: "DEEVPC000000042".into(),
            days: 30,
            seed: Some("unit".into()),
        })
        .unwrap();
        for (name, _) in PKI_FILES {
            for ext in ["der", "pem", "key.der", "key.pem"] {
                assert!(dir.join(format!("{name}.{ext}")).is_file(), "{name}.{ext}");
            }
        }
        for (ours, josev) in JOSEV_NAMES {
            let der = std::fs::read(dir.join(format!("iso15118_2/certs/{josev}Cert.der"))).unwrap();
            assert_eq!(der, std::fs::read(dir.join(format!("{ours}.der"))).unwrap());
            assert!(dir
                .join(format!("iso15118_2/private_keys/{josev}.key"))
                .is_file());
        }
        let chain = std::fs::read(dir.join("iso15118_2/certs/cpoCertChain.pem")).unwrap();
        let chain = Cert::from_pem_chain(&chain).unwrap();
        assert_eq!(chain.len(), 3);
        assert_eq!(chain[0].der(), read_pki(&dir, "secc_leaf").unwrap().der());
        let c = read_contract(&dir).unwrap();
        assert_eq!(c.emaid, "DEEVPC000000042");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let roots = TrustStore::new(vec![read_pki(&dir, "mo_root").unwrap()]);
        evproto_iso15118::pki::verify_chain(
            &c.certificate,
            &c.sub_cas,
            &roots,
            now,
            evproto_iso15118::pki::LeafUsage::Signature,
        )
        .unwrap();
        let key = read_key(&dir, "contract_leaf").unwrap();
        evproto_iso15118::pki::check_key_pair(
            &key.to_bytes(),
            &Cert::from_der(&c.certificate).unwrap(),
        )
        .unwrap();
        // the -20 contract: secp521r1 under the -20 MO root, the same eMAID
        let c20 = read_contract_as(&dir, "iso20_").unwrap();
        assert_eq!(c20.emaid, "DEEVPC000000042");
        assert_eq!(c20.key.len(), 66);
        let roots20 = TrustStore::new(vec![read_pki(&dir, "iso20_mo_root").unwrap()]);
        let chain20 = evproto_iso15118::pki::verify_chain(
            &c20.certificate,
            &c20.sub_cas,
            &roots20,
            now,
            evproto_iso15118::pki::LeafUsage::Signature,
        )
        .unwrap();
        assert!(matches!(
            chain20.leaf.public_key().unwrap(),
            evproto_iso15118::pki::VerifyingKey::P521(_)
        ));
        // each contract under its own root only
        assert!(evproto_iso15118::pki::verify_chain(
            &c20.certificate,
            &c20.sub_cas,
            &roots,
            now,
            evproto_iso15118::pki::LeafUsage::Signature,
        )
        .is_err());
        assert!(read_pki(&dir, "no_such").is_err());
        assert!(run_pki(PkiArgs {
            dir: dir.clone(),
            emaid: "X".into(),
            days: 0,
            seed: None
        })
        .is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn plain_tcp_gets_neither_iso20_nor_pnc_unless_allowed() {
        let pnc = SeccPnc::new(TrustStore::new(vec![]), [0; 16]);
        let all = SeccConfig::new(vec![1])
            .with_protocols(vec![Protocol::Iso20Dc, Protocol::Iso2, Protocol::Din])
            .with_pnc(Some(pnc));
        let (plain, tls13, tls12) = session_configs(&all, false, false);
        assert_eq!(plain.protocols, [Protocol::Iso2, Protocol::Din]);
        assert!(plain.pnc.is_none());
        assert_eq!(tls13.protocols, [Protocol::Iso20Dc, Protocol::Iso2]);
        assert!(tls13.pnc.is_some());
        assert_eq!(tls12.protocols, [Protocol::Iso2]);
        assert!(tls12.pnc.is_some());
        let (plain, _, _) = session_configs(&all, true, true);
        assert_eq!(plain.protocols, all.protocols);
        assert!(plain.pnc.is_some());
    }

    const DIN_REQ: &str = "8000dbab9371d3234b71d1b981899189d191818991d26b9b3a232b30020000040040";

    #[test]
    fn decode_raw_and_framed() {
        let v = decode_line("app", DIN_REQ, true, &Policy::strict());
        assert_eq!(v["message"], "supportedAppProtocolReq");
        assert_eq!(
            v["body"]["AppProtocol"][0]["ProtocolNamespace"],
            "urn:din:70121:2012:MsgDef"
        );
        assert_eq!(v["roundtrip"], true);
        let framed = format!("01fe8001{:08x}{DIN_REQ}", DIN_REQ.len() / 2);
        assert_eq!(
            decode_line("app", &framed, false, &Policy::strict())["message"],
            "supportedAppProtocolReq"
        );
        assert!(decode_line("app", "zz", false, &Policy::strict())["error"].is_string());
        assert!(
            decode_line("app", "01fe800100000010", false, &Policy::strict())["error"]
                .as_str()
                .unwrap()
                .starts_with("V2GTP")
        );
        let v = decode_line("din", "809a02004080c1014181c211f0", true, &Policy::strict());
        assert_eq!(
            (v["message"].as_str(), v["roundtrip"].as_bool()),
            (Some("SessionStopReq"), Some(true)),
            "{v}"
        );
        assert!(decode_line("iso20", "80", false, &Policy::strict())["error"].is_string());
        // a -20 DC frame (payload type 0x8004) is read with the DC set even
        // when the line says iso20 (libiso15118's DC_ChargeLoopReq)
        let dc = "8034041ea65fc99ba76c4d8cdbfe1b6062810012006464000a02002400ca";
        let framed = format!("01fe8004{:08x}{dc}", dc.len() / 2);
        let v = decode_line("iso20", &framed, true, &Policy::strict());
        assert_eq!(
            (v["message"].as_str(), v["roundtrip"].as_bool()),
            (Some("DC_ChargeLoopReq"), Some(true)),
            "{v}"
        );
        // unframed, the schema given is the one used
        assert!(decode_line("iso20", dc, false, &Policy::strict())["error"].is_string());
    }

    #[test]
    fn fragments() {
        // EXIficient's bytes for a -2 AuthorizationReq as signed
        let auth = "80040152510c408000081018202830384048505860687079e8";
        let v = decode_fragment_line("iso2", auth, true, &Policy::strict());
        assert_eq!(
            (v["message"].as_str(), v["roundtrip"].as_bool()),
            (Some("AuthorizationReq"), Some(true)),
            "{v}"
        );
        assert_eq!(encode_fragment_line("iso2", &v.to_string())["exi"], auth);
        // not a document, and a truncated fragment is an error
        assert!(decode_line("iso2", auth, false, &Policy::strict())["error"].is_string());
        assert!(
            decode_fragment_line("iso2", &auth[..20], false, &Policy::strict())["error"]
                .is_string()
        );
        assert!(
            encode_fragment_line("xmldsig", r#"{"AuthorizationReq": {}}"#)["error"].is_string()
        );
        assert!(run(false, "xmldsig", false, false, false).is_err());
        assert!(run(false, "app", false, false, true).is_err());
        assert!(run(true, "din", false, false, true).is_err());
    }

    #[test]
    fn lenient_decode() {
        // a real DIN frame (uhi22/pyPLC's DemoExiLog.txt) with a byte after the document
        let real = "809a022189cbf75b9625a95198";
        let line = format!("{real}00");
        let strict = decode_line("din", &line, false, &Policy::strict());
        assert_eq!(
            strict["error"], "1 bytes after the end of the EXI document",
            "{strict}"
        );
        let want = decode_line("din", real, false, &Policy::strict());
        assert!(want.get("warnings").is_none() && want.get("error").is_none());
        let v = decode_line("din", &line, true, &Policy::lenient());
        assert_eq!(
            (&v["message"], &v["body"]),
            (&want["message"], &want["body"])
        );
        assert_eq!(
            v["warnings"],
            json!(["byte 13: 1 byte after the end of the EXI document (ignored)"])
        );
        // the byte is not written again
        assert_eq!(v["roundtrip"], false);
        // V2GTP-framed, the header's length counting the byte
        let framed = format!("01fe8001{:08x}{line}", line.len() / 2);
        assert_eq!(
            decode_line("din", &framed, false, &Policy::lenient())["warnings"],
            v["warnings"]
        );
        // a frame as sent: no warnings
        assert!(decode_line("din", real, false, &Policy::lenient())
            .get("warnings")
            .is_none());
        // fragments too (EXIficient's -2 AuthorizationReq)
        let auth = "80040152510c408000081018202830384048505860687079e8";
        let f = decode_fragment_line("iso2", &format!("{auth}00"), false, &Policy::lenient());
        assert_eq!(f["message"], "AuthorizationReq", "{f}");
        assert_eq!(
            f["warnings"],
            json!(["byte 25: 1 byte after the end of the EXI document (ignored)"])
        );
        assert!(
            decode_fragment_line("iso2", &format!("{auth}00"), false, &Policy::strict())["error"]
                .is_string()
        );
    }

    #[test]
    fn encode_lines() {
        let v = decode_line("app", DIN_REQ, false, &Policy::strict());
        let back = encode_line("app", &v.to_string());
        assert_eq!(back["exi"], DIN_REQ);
        let res = encode_line(
            "app",
            r#"{"supportedAppProtocolRes": {"ResponseCode": "OK_SuccessfulNegotiation", "SchemaID": 1}}"#,
        );
        assert_eq!(res["message"], "supportedAppProtocolRes");
        assert!(
            encode_line("app", r#"{"supportedAppProtocolReq": {"AppProtocol": []}}"#)["error"]
                .is_string()
        );
        assert!(encode_line("app", "{").get("error").is_some());
        // DIN: what decode printed encodes back to the same bytes
        let v = decode_line(
            "din",
            "809a02004080c1014181c211f0",
            false,
            &Policy::strict(),
        );
        assert_eq!(
            encode_line("din", &v.to_string())["exi"],
            "809a02004080c1014181c211f0"
        );
    }
}
