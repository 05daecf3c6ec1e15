//! Sans-IO session state machines: the SECC (charger) and the EVCC (car),
//! from the SupportedAppProtocol handshake to SessionStop, with external
//! identification means (EIM): DIN SPEC 70121 DC ([`din`]), ISO 15118-2
//! AC and DC ([`iso2`]: renegotiation, pause and resume) and ISO 15118-20
//! AC and DC in the scheduled and dynamic control modes, and their
//! bidirectional services DC_BPT and AC_BPT ([`iso20`], [`SeccConfig::bpt`],
//! [`EvccConfig::bpt`]: pause and resume; value-added services,
//! [`SeccConfig::vas`]; service renegotiation,
//! [`SeccConfig::service_renegotiation`]; no schedule renegotiation).
//! Plug & Charge ([`pnc`], [`SeccConfig::pnc`], [`EvccConfig::pnc`]):
//! ISO 15118-2 whole (contract, CertificateInstallation,
//! CertificateUpdate, MeteringReceipt); ISO 15118-20 the authorization by
//! contract (`PnC_AReqAuthorizationMode`) and CertificateInstallation
//! (secp521r1). TLS is the
//! shells' (`shell::tls`, features `tls` and `tls-openssl`). The
//! SECC's handshake offers what [`SeccConfig::protocols`] lists: DIN and -2
//! by default, the -20 namespaces ([`Protocol::Iso20Dc`],
//! [`Protocol::Iso20Ac`]) only when added, since without TLS they are a lab
//! shortcut.
//!
//! A machine never reads a clock, never draws random numbers and does no
//! I/O: bytes come in through `handle_message(now, exi)` (or
//! `handle_packet(now, payload_type, exi)`), time through
//! `handle_timeout(now)`, the charger's or car's answers through
//! `handle_*`/`set_*` calls, and everything it wants done comes out of
//! `poll_effect()` as an [`Effect`]; `poll_timeout()` says when to call
//! `handle_timeout` next. Messages are EXI payloads: the handshake, DIN and
//! -2 in V2GTP payload type `0x8001` ([`Effect::Transmit`]), -20 in its own
//! (`0x8002` CommonMessages, `0x8003` AC, `0x8004` DC: [`Effect::TransmitAs`]);
//! the shell frames them with [`crate::v2gtp`].
//!
//! - [`Secc`] / [`Evcc`]: the SupportedAppProtocol step ([`crate::app_protocol::negotiate`]
//!   on the SECC, the EV's offer list on the EVCC) followed by the machine of the
//!   chosen protocol, [`din::Secc`]/[`din::Evcc`], [`iso2::Secc`]/[`iso2::Evcc`]
//!   or [`iso20::Secc`]/[`iso20::Evcc`];
//! - [`Timers`]: the timers of the three standards as deadlines ([`TimerKind`] cites the tables);
//! - [`EvseStatus`], [`EvStatus`]: what the machines cannot know, given by the shell.
//!
//! # Call order and time
//!
//! - Feed every EXI payload from the peer to `handle_message`, in order. Call
//!   `handle_timeout` when the instant from `poll_timeout` has come.
//! - After **every** input (message, timeout, `handle_*`/`set_*`), drain
//!   `poll_effect` until `None` (send each [`Effect::Transmit`] in order),
//!   then read `poll_timeout`.
//! - `now` must never go backwards. After [`Effect::SessionEnded`] the
//!   machine takes no more input; close the TCP connection.
//!
//! # Why plain data and request/answer calls, not `Evse`/`Ev` traits
//!
//! The SECC must answer every request within its performance time, and
//! some decisions (the authorization by a backend, the SA schedules, the
//! isolation test) take seconds. A trait called synchronously would make
//! the machine wait for the shell or force it to be `async`, which the
//! cores must not be (STYLE §2.3). So the machines split what they need in two:
//!
//! - **measurements and limits** that are always available — present
//!   voltage/current, limits, isolation state, emergency stop, meter: a
//!   snapshot the shell keeps current with `set_evse` / `set_ev`
//!   ([`EvseStatus`], [`EvStatus`]); the machine answers from the latest one;
//! - **decisions** that take time — authorization, schedules: the machine
//!   asks once with [`Effect::Evse`] and the shell answers later
//!   ([`Secc::handle_authorization`], [`Secc::handle_schedules`]); until
//!   then the SECC answers `EVSEProcessing=Ongoing`. A cable check is
//!   `Ongoing` until the snapshot's isolation leaves `Invalid`.
//!
//! Plain data is also what a fuzzer and a proptest can generate, and what a
//! test can script on a virtual clock.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use evproto_iso15118::session::{Effect, Evcc, EvccConfig, Secc, SeccConfig};
//!
//! let now = Instant::now();
//! let mut secc = Secc::new(SeccConfig::new(vec![0x1d, 0xc9, 0x83, 0xcd, 0x60, 0, 0, 1]), now);
//! let mut evcc = Evcc::new(EvccConfig::din_dc(vec![0x84, 0x87, 0x72, 0x60, 0xf3, 0x58]), now);
//! // the EVCC speaks first: its SupportedAppProtocolReq
//! let Some(Effect::Transmit(req)) = evcc.poll_effect() else { panic!() };
//! secc.handle_message(now, &req);
//! let Some(Effect::Transmit(res)) = secc.poll_effect() else { panic!() };
//! evcc.handle_message(now, &res);
//! assert_eq!(evcc.protocol(), Some(evproto_iso15118::session::Protocol::Din));
//! // ... and SessionSetupReq follows
//! assert!(matches!(evcc.poll_effect(), Some(Effect::Transmit(_))));
//! assert!(secc.poll_timeout().unwrap() <= now + Duration::from_secs(60));
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::app_protocol::{self, AppProtocol, Offer, ResponseCode, SupportedAppProtocolReq};
use crate::v2gtp::PayloadType;

mod common;
pub mod din;
pub mod iso2;
pub mod iso20;
pub mod pnc;
mod timers;

use common::Pacing;
pub use pnc::{
    CertificateInstallation, CertificateUpdate, Contract, ContractProvisioning, ContractStatus,
    EvPnc, InstallError, Iso20CertificateInstallation, Provisioning, SeccPnc,
};
pub use timers::{msg_timeout, MsgKind, Standard, TimerConfig, TimerKind, Timers};

/// The protocol a session speaks after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// DIN SPEC 70121:2012 (`urn:din:70121:2012:MsgDef`).
    Din,
    /// ISO 15118-2:2014 (`urn:iso:15118:2:2013:MsgDef`).
    Iso2,
    /// ISO 15118-20:2022 AC (`urn:iso:std:iso:15118:-20:AC`).
    Iso20Ac,
    /// ISO 15118-20:2022 DC (`urn:iso:std:iso:15118:-20:DC`).
    Iso20Dc,
}

impl Protocol {
    /// The SupportedAppProtocol offer of this protocol.
    pub fn offer(self) -> Offer {
        match self {
            Protocol::Din => Offer::DIN,
            Protocol::Iso2 => Offer::ISO2,
            Protocol::Iso20Ac => Offer::ISO20_AC,
            Protocol::Iso20Dc => Offer::ISO20_DC,
        }
    }

    /// Whether this is one of the ISO 15118-20 namespaces.
    pub fn is_iso20(self) -> bool {
        matches!(self, Protocol::Iso20Ac | Protocol::Iso20Dc)
    }
}

/// The control mode of an ISO 15118-20 energy transfer service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ControlMode {
    /// Scheduled: the EVSE offers schedules, the EV chooses one and sets its targets.
    Scheduled,
    /// Dynamic: the EV gives limits and energy requests, the EVSE sets the power.
    Dynamic,
}

/// An energy transfer mode (DIN `EVRequestedEnergyTransferType`, -2 `EnergyTransferModeType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EnergyMode {
    /// AC, one phase.
    AcSinglePhaseCore,
    /// AC, three phases.
    AcThreePhaseCore,
    /// DC over the AC pins.
    DcCore,
    /// DC over the extra pins of the combo inlet (CCS).
    DcExtended,
    /// DC combo core.
    DcComboCore,
    /// DC unique.
    DcUnique,
}

impl EnergyMode {
    /// Whether this is a DC mode.
    pub fn is_dc(self) -> bool {
        !matches!(
            self,
            EnergyMode::AcSinglePhaseCore | EnergyMode::AcThreePhaseCore
        )
    }
}

/// Why a session ended (the payload of [`Effect::SessionEnded`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// SessionStop answered OK: the normal end.
    Finished,
    /// SessionStop(Pause) answered OK (ISO 15118-2): the session may be
    /// resumed with this id ([`SeccConfig::resume`], [`EvccConfig::resume`]).
    Paused {
        /// The id to resume.
        session_id: Vec<u8>,
    },
    /// SupportedAppProtocol found nothing in common (`Failed_NoNegotiation`).
    NoNegotiation,
    /// A request that is not allowed in the current state (the SECC answered
    /// `FAILED_SequenceError`), or a response the EVCC did not wait for.
    SequenceError,
    /// The request's SessionID is not this session's (`FAILED_UnknownSession`).
    UnknownSession,
    /// A timer ran out.
    Timeout(TimerKind),
    /// The EVSE reported an emergency stop (`EVSE_EmergencyShutdown`).
    EmergencyStop,
    /// The isolation monitor reported a fault (`EVSEIsolationStatus=Fault`).
    IsolationFault,
    /// The authorization was refused.
    AuthorizationRejected,
    /// The peer's answer carried a `FAILED*` code, or the SECC answered one.
    Failed {
        /// The response code's name as in the schema.
        response_code: String,
    },
    /// Bytes that are not a message of the session's schema, or a value
    /// the machine cannot take.
    Malformed(String),
}

/// The EVSE's side of a decision the SECC cannot take alone; answer with
/// the named `Secc` method.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EvseRequest {
    /// Authorize the EV (EIM: RFID, app, free charging...); answer with
    /// [`Secc::handle_authorization`]. The SECC answers `Ongoing` until then.
    Authorize {
        /// The EVCCID from SessionSetupReq (the EV's MAC address).
        evcc_id: Vec<u8>,
    },
    /// The SA schedules for the EV's request; answer with
    /// [`Secc::handle_schedules`]. The SECC answers `Ongoing` until then.
    Schedules {
        /// The EV's `MaxEntriesSAScheduleTuple`, if any (DIN has none).
        max_entries: Option<u16>,
        /// The EV's departure time in seconds from now, if given.
        departure_time: Option<u32>,
        /// The energy the EV asks for, in Wh, if given.
        energy_request_wh: Option<f64>,
        /// True when this follows a renegotiation.
        renegotiation: bool,
    },
    /// Start the isolation test; report its result in
    /// [`EvseStatus::isolation`] (the SECC answers `Ongoing` while it is `Invalid`).
    StartCableCheck,
    /// Drive the power module to this target (PreCharge, CurrentDemand);
    /// report the result in [`EvseStatus::present_voltage`] / `present_current`.
    Target {
        /// Volts.
        voltage: f64,
        /// Amperes.
        current: f64,
    },
    /// Close (`true`) or open the output contactors (PowerDelivery).
    Power(bool),
    /// ISO 15118-20: the EV selected these value-added services
    /// (ServiceSelectionReq), `(ServiceID, ParameterSetID)`: provide them
    /// (e.g. route the car's traffic for Internet access). Nothing to answer.
    ValueAddedServices {
        /// What the EV selected, each one offered ([`SeccConfig::vas`]).
        selected: Vec<(u16, u16)>,
    },
    /// Plug & Charge (ISO 15118-2 and -20): the contract chain verified
    /// against the MO roots, the car's signature with its key verified;
    /// decide whether it may charge (OCSP, contract database) and answer
    /// with [`Secc::handle_contract_status`]. The SECC answers
    /// AuthorizationReq `Ongoing` until then.
    AuthorizeContract {
        /// The eMAID: PaymentDetailsReq's (-2), the contract
        /// certificate's CN (-20, whose request carries none apart).
        emaid: String,
        /// The contract certificate, DER.
        certificate: Vec<u8>,
        /// Its sub-CAs, DER.
        sub_cas: Vec<Vec<u8>>,
    },
    /// Plug & Charge (ISO 15118-2): the car asks for a contract
    /// (CertificateInstallationReq, its signature verified); answer with
    /// [`Secc::handle_certificate_installation`] (the backend's response,
    /// e.g. OCPP `Get15118EVCertificate`, or [`ContractProvisioning::install`]).
    InstallCertificate {
        /// The OEM provisioning certificate, DER.
        oem_provisioning_cert: Vec<u8>,
        /// The V2G roots the car trusts, `(issuer, serial)`.
        root_ids: Vec<(String, i64)>,
        /// The request as it came (EXI), for a backend that takes it whole.
        exi: Vec<u8>,
    },
    /// Plug & Charge (ISO 15118-20): the car asks for a contract
    /// (CertificateInstallationReq, its header signature by the OEM
    /// provisioning key verified); answer with
    /// [`Secc::handle_iso20_certificate_installation`] (the backend's
    /// response, e.g. OCPP `Get15118EVCertificate` with the -20 schema, or
    /// [`ContractProvisioning::install_iso20`]).
    InstallCertificateIso20 {
        /// The OEM provisioning certificate, DER (its CN is the PCID).
        oem_provisioning_cert: Vec<u8>,
        /// Its sub-CAs, DER, as the request carried them.
        oem_sub_cas: Vec<Vec<u8>>,
        /// The V2G roots the car trusts, `(issuer, serial)`.
        root_ids: Vec<(String, i64)>,
        /// `MaximumContractCertificateChains`.
        maximum_chains: u8,
        /// `PrioritizedEMAIDs`, in the car's order.
        prioritized_emaids: Vec<String>,
        /// The request as it came (EXI), for a backend that takes it whole.
        exi: Vec<u8>,
    },
    /// Plug & Charge (ISO 15118-2): the car asks for a new contract in
    /// place of the one it has (CertificateUpdateReq: its contract chain
    /// verified against the MO roots, its eMAID the certificate's, its
    /// signature by the contract key verified); answer with
    /// [`Secc::handle_certificate_update`] (the backend's response, e.g.
    /// OCPP `Get15118EVCertificate` with action `Update`, or
    /// [`ContractProvisioning::update`]).
    UpdateCertificate {
        /// The eMAID of the request.
        emaid: String,
        /// The contract certificate to replace, DER.
        certificate: Vec<u8>,
        /// Its sub-CAs, DER.
        sub_cas: Vec<Vec<u8>>,
        /// The V2G roots the car trusts, `(issuer, serial)`.
        root_ids: Vec<(String, i64)>,
        /// The request as it came (EXI), for a backend that takes it whole.
        exi: Vec<u8>,
    },
}

/// What the EVCC tells the car's shell; nothing here needs an answer (the
/// car's state goes in through [`Evcc::set_ev`] and [`Evcc::request_stop`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EvNotice {
    /// PreCharge reached the target: close the EV's contactors.
    PreChargeDone,
    /// PowerDelivery(Start) was accepted: energy flows.
    ChargingStarted,
    /// The EVSE's present values from a charge-loop answer.
    Present {
        /// Volts (-2 AC: the EVSE's nominal voltage from ChargeParameterDiscoveryRes).
        voltage: f64,
        /// Amperes (DC: the EVSE's present current; -2 AC, where the EVSE
        /// does not report it: what the EV draws, all phases together).
        current: f64,
    },
    /// PowerDelivery(Stop) was accepted: open the EV's contactors.
    ChargingStopped,
    /// A charge-loop answer carried the EVSE's meter reading (ISO 15118-2).
    Meter {
        /// Wh.
        wh: u64,
    },
}

/// What a machine wants done. Drain with `poll_effect`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Effect {
    /// Send this EXI payload (frame it as V2GTP payload type `0x8001`).
    Transmit(Vec<u8>),
    /// Send this EXI payload in a V2GTP frame of this payload type
    /// (ISO 15118-20: `0x8002` CommonMessages, `0x8003` AC, `0x8004` DC).
    TransmitAs(PayloadType, Vec<u8>),
    /// The session is over; close the connection. Comes once, last.
    SessionEnded {
        /// Why.
        reason: EndReason,
    },
    /// The SECC asks the EVSE (see [`EvseRequest`]).
    Evse(EvseRequest),
    /// The EVCC tells the car (see [`EvNotice`]).
    Ev(EvNotice),
}

/// Isolation monitor state (`isolationLevelType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Isolation {
    /// Not (yet) measured: a cable check is `Ongoing` while this holds.
    Invalid,
    /// Isolation OK.
    Valid,
    /// Degraded but chargeable.
    Warning,
    /// Isolation fault: the session fails.
    Fault,
    /// No isolation monitor (DIN reports `Invalid`).
    NoImd,
}

/// The EVSE's measurements and limits, kept current by the shell
/// ([`Secc::set_evse`]). Units: V, A, W, Wh.
#[derive(Debug, Clone, PartialEq)]
pub struct EvseStatus {
    /// Highest output voltage.
    pub max_voltage: f64,
    /// Lowest output voltage (DC).
    pub min_voltage: f64,
    /// Highest output current.
    pub max_current: f64,
    /// Lowest output current.
    pub min_current: f64,
    /// Highest output power.
    pub max_power: f64,
    /// DC current ripple (peak to peak).
    pub peak_current_ripple: f64,
    /// Voltage at the output now.
    pub present_voltage: f64,
    /// Current at the output now.
    pub present_current: f64,
    /// Isolation monitor state.
    pub isolation: Isolation,
    /// The emergency stop was pressed or the EVSE shut down: the SECC
    /// answers the next request with `FAILED` and `EVSE_EmergencyShutdown`
    /// and ends the session.
    pub emergency_stop: bool,
    /// Meter reading in Wh, if a meter is present (ISO 15118-2 sends it in
    /// ChargingStatusRes / CurrentDemandRes).
    pub meter_wh: Option<u64>,
    /// AC nominal voltage (ISO 15118-2 `EVSENominalVoltage`).
    pub nominal_voltage: f64,
}

impl Default for EvseStatus {
    fn default() -> Self {
        Self {
            max_voltage: 500.0,
            min_voltage: 50.0,
            max_current: 125.0,
            min_current: 0.0,
            max_power: 50_000.0,
            peak_current_ripple: 1.0,
            present_voltage: 0.0,
            present_current: 0.0,
            isolation: Isolation::Invalid,
            emergency_stop: false,
            meter_wh: None,
            nominal_voltage: 230.0,
        }
    }
}

/// The authorization decision (EIM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Authorization {
    /// Charge.
    Accepted,
    /// Do not: the SECC answers `FAILED` and ends the session.
    Rejected,
}

/// One SA schedule tuple: its id and its PMax entries.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleTuple {
    /// `SAScheduleTupleID`.
    pub id: u8,
    /// `(start in s from now, PMax in W)`, in order; the first starts at 0.
    pub entries: Vec<(u32, f64)>,
    /// The schedule's length in s (the first entry's `duration`), 86400 by default.
    pub duration: u32,
}

/// The car's state, kept current by the shell ([`Evcc::set_ev`]). Units: V, A, W, Wh, %.
#[derive(Debug, Clone, PartialEq)]
pub struct EvStatus {
    /// Battery capacity.
    pub battery_capacity_wh: f64,
    /// State of charge, 0..=100.
    pub soc: u8,
    /// Highest voltage the EV takes.
    pub max_voltage: f64,
    /// Highest current the EV takes.
    pub max_current: f64,
    /// Highest power the EV takes.
    pub max_power: f64,
    /// The voltage the EV asks for (PreCharge, CurrentDemand).
    pub target_voltage: f64,
    /// The current the EV asks for.
    pub target_current: f64,
    /// Energy the EV wants.
    pub energy_request_wh: f64,
    /// Departure time, s from now.
    pub departure_time: Option<u32>,
    /// The battery is full: the EVCC sets `ChargingComplete` and stops.
    pub charging_complete: bool,
}

impl Default for EvStatus {
    fn default() -> Self {
        Self {
            battery_capacity_wh: 60_000.0,
            soc: 40,
            max_voltage: 450.0,
            max_current: 120.0,
            max_power: 50_000.0,
            target_voltage: 400.0,
            target_current: 100.0,
            energy_request_wh: 30_000.0,
            departure_time: None,
            charging_complete: false,
        }
    }
}

/// How the EVCC ends its session ([`Evcc::request_stop`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopKind {
    /// SessionStop (`ChargingSession=Terminate` in -2).
    Terminate,
    /// SessionStop with `ChargingSession=Pause` (ISO 15118-2): the session
    /// ends with [`EndReason::Paused`] and may be resumed. DIN has no pause:
    /// its EVCC terminates.
    Pause,
}

/// A session the SECC may rejoin: a SessionSetupReq carrying this id is
/// answered `OK_OldSessionJoined` and keeps it (DIN and -2; -2 pauses with
/// SessionStop(Pause), [`EndReason::Paused`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PausedSession {
    /// Its id.
    pub session_id: Vec<u8>,
}

/// SECC settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SeccConfig {
    /// The id of a new session (1..=8 bytes, not all zero): injected so the
    /// machine draws no random numbers.
    pub session_id: Vec<u8>,
    /// EVSEID: DIN takes bytes (hexBinary): this string's bytes (at most
    /// 32), one zero byte when empty; -2 takes the string (7 to 37
    /// characters, `ZZ00000` when shorter).
    pub evse_id: String,
    /// The protocols offered, by the SECC's preference in case of a tie.
    pub protocols: Vec<Protocol>,
    /// Energy transfer modes offered.
    pub energy_modes: Vec<EnergyMode>,
    /// Timer values.
    pub timers: TimerConfig,
    /// A session a SessionSetupReq may rejoin.
    pub resume: Option<PausedSession>,
    /// Initial EVSE state.
    pub evse: EvseStatus,
    /// ISO 15118-20 control modes offered (ServiceDetail parameter sets),
    /// both by default.
    pub control_modes: Vec<ControlMode>,
    /// Unix time (s) at the machine's creation: the -20 header TimeStamps
    /// count on from it (the machine reads no clock), and Plug & Charge
    /// checks certificate validity at it. 0 by default.
    pub unix_time: u64,
    /// Plug & Charge: offered when set, beside EIM (-2: `Contract` besides
    /// `ExternalPayment`; -20: `PnC` besides `EIM` in
    /// AuthorizationSetupRes, with the GenChallenge). Run it over TLS only
    /// [V2G2-634].
    pub pnc: Option<SeccPnc>,
    /// ISO 15118-20 bidirectional power transfer: the BPT service (DC_BPT
    /// or AC_BPT) offered besides DC or AC when set. None by default.
    pub bpt: Option<SeccBpt>,
    /// ISO 15118-20 value-added services offered in ServiceDiscoveryRes
    /// (at most 8). None by default: Josev's EVCC, offered any, fails.
    pub vas: Vec<Vas>,
    /// ISO 15118-20: ServiceRenegotiationSupported in ServiceDiscoveryRes:
    /// the EV may come back from SessionStop(ServiceRenegotiation) to
    /// ServiceDiscovery, and [`Secc::request_renegotiation`] asks it to.
    /// Off by default.
    pub service_renegotiation: bool,
}

/// A value-added service an ISO 15118-20 SECC offers ([`SeccConfig::vas`]):
/// its ServiceID, whether it is free, and its parameter sets as
/// ServiceDetailRes lists them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Vas {
    /// The ServiceID (-20: 65 Internet, 66 ParkingStatus; 61 to 65535 are
    /// value-added services).
    pub service_id: u16,
    /// `FreeService` in ServiceDiscoveryRes.
    pub free: bool,
    /// The parameter sets (at least one: the EV selects one of them).
    pub parameter_sets: Vec<crate::messages::iso20::ParameterSetType>,
}

impl Vas {
    /// ServiceID of the Internet access service.
    pub const INTERNET: u16 = 65;

    /// A service with these parameter sets.
    pub fn new(
        service_id: u16,
        free: bool,
        parameter_sets: Vec<crate::messages::iso20::ParameterSetType>,
    ) -> Self {
        Self {
            service_id,
            free,
            parameter_sets,
        }
    }

    /// Internet access (ServiceID 65) with the parameter sets ISO 15118-2
    /// Table 106 gives it: 1 `ftp` port 20, 2 `ftp` 21, 3 `http` 80,
    /// 4 `https` 443 (parameters `Protocol`, a finite string, and `Port`,
    /// an int).
    pub fn internet(free: bool) -> Self {
        use crate::messages::iso20 as cm;
        let set = |id: u16, protocol: &str, port: i32| cm::ParameterSetType {
            parameter_set_id: id,
            parameter: vec![
                cm::ParameterType {
                    name: "Protocol".into(),
                    bool_value: None,
                    byte_value: None,
                    short_value: None,
                    int_value: None,
                    rational_number: None,
                    finite_string: Some(protocol.into()),
                },
                cm::ParameterType {
                    name: "Port".into(),
                    bool_value: None,
                    byte_value: None,
                    short_value: None,
                    int_value: Some(port),
                    rational_number: None,
                    finite_string: None,
                },
            ],
        };
        Self::new(
            Self::INTERNET,
            free,
            vec![
                set(1, "ftp", 20),
                set(2, "ftp", 21),
                set(3, "http", 80),
                set(4, "https", 443),
            ],
        )
    }
}

/// What an SECC can take back from a car (ISO 15118-20 BPT). Units: W, A.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct SeccBpt {
    /// Highest discharge power (positive).
    pub max_discharge_power: f64,
    /// Highest discharge current (DC, positive).
    pub max_discharge_current: f64,
    /// Dynamic control mode: the power the SECC asks back from a car that
    /// offers energy (its EVMinimumEnergyRequest below zero), within both
    /// sides' limits; 0 (the default): it charges the car.
    pub discharge_demand: f64,
}

impl SeccBpt {
    /// Discharge limits, no demand.
    pub fn new(max_discharge_power: f64, max_discharge_current: f64) -> Self {
        Self {
            max_discharge_power,
            max_discharge_current,
            discharge_demand: 0.0,
        }
    }
    /// Sets [`SeccBpt::discharge_demand`].
    pub fn with_discharge_demand(mut self, w: f64) -> Self {
        self.discharge_demand = w;
        self
    }
}

/// What a car can give back (ISO 15118-20 BPT). Units: W, A, Wh.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct EvBpt {
    /// Highest discharge power (positive).
    pub max_discharge_power: f64,
    /// Highest discharge current (DC, positive).
    pub max_discharge_current: f64,
    /// Energy the car gives back. Scheduled control mode: it selects the
    /// `Discharge` channel, discharges this much within the SECC's limits
    /// and its DischargingSchedule, then stops. Dynamic: it offers this
    /// much (EVMinimumEnergyRequest = minus what is left of it) and
    /// charges or discharges as the SECC decides. 0: a BPT session that
    /// charges.
    pub discharge_wh: f64,
}

impl EvBpt {
    /// Discharge limits and the energy to give back.
    pub fn new(max_discharge_power: f64, max_discharge_current: f64, discharge_wh: f64) -> Self {
        Self {
            max_discharge_power,
            max_discharge_current,
            discharge_wh,
        }
    }
}

impl SeccConfig {
    /// ISO 15118-2 and DIN (in this order on a tie), DC extended and AC
    /// three-phase, default timers.
    pub fn new(session_id: Vec<u8>) -> Self {
        Self {
            session_id,
            evse_id: "DE*EVP*E1".into(),
            protocols: vec![Protocol::Iso2, Protocol::Din],
            energy_modes: vec![EnergyMode::DcExtended, EnergyMode::AcThreePhaseCore],
            timers: TimerConfig::default(),
            resume: None,
            evse: EvseStatus::default(),
            control_modes: vec![ControlMode::Scheduled, ControlMode::Dynamic],
            unix_time: 0,
            pnc: None,
            bpt: None,
            vas: Vec::new(),
            service_renegotiation: false,
        }
    }
    /// Sets [`SeccConfig::bpt`].
    pub fn with_bpt(mut self, bpt: Option<SeccBpt>) -> Self {
        self.bpt = bpt;
        self
    }
    /// Sets [`SeccConfig::vas`].
    pub fn with_vas(mut self, vas: Vec<Vas>) -> Self {
        self.vas = vas;
        self
    }
    /// Sets [`SeccConfig::service_renegotiation`].
    pub fn with_service_renegotiation(mut self, on: bool) -> Self {
        self.service_renegotiation = on;
        self
    }
    /// Sets [`SeccConfig::pnc`].
    pub fn with_pnc(mut self, pnc: Option<SeccPnc>) -> Self {
        self.pnc = pnc;
        self
    }
    /// Sets [`SeccConfig::control_modes`].
    pub fn with_control_modes(mut self, m: Vec<ControlMode>) -> Self {
        self.control_modes = m;
        self
    }
    /// Sets [`SeccConfig::unix_time`].
    pub fn with_unix_time(mut self, t: u64) -> Self {
        self.unix_time = t;
        self
    }
    /// Sets [`SeccConfig::protocols`].
    pub fn with_protocols(mut self, p: Vec<Protocol>) -> Self {
        self.protocols = p;
        self
    }
    /// Sets [`SeccConfig::energy_modes`].
    pub fn with_energy_modes(mut self, m: Vec<EnergyMode>) -> Self {
        self.energy_modes = m;
        self
    }
    /// Sets [`SeccConfig::resume`].
    pub fn with_resume(mut self, p: Option<PausedSession>) -> Self {
        self.resume = p;
        self
    }
    /// Sets [`SeccConfig::evse`].
    pub fn with_evse(mut self, e: EvseStatus) -> Self {
        self.evse = e;
        self
    }
    /// Sets [`SeccConfig::timers`].
    pub fn with_timers(mut self, t: TimerConfig) -> Self {
        self.timers = t;
        self
    }
}

/// EVCC settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EvccConfig {
    /// EVCCID: the EV's MAC address (6 bytes).
    pub evcc_id: Vec<u8>,
    /// The protocols offered, best first (priority 1, 2, ...).
    pub protocols: Vec<Protocol>,
    /// The energy transfer mode asked for.
    pub energy_mode: EnergyMode,
    /// Time between two charge-loop requests and between repeated requests
    /// after `Ongoing` (PreCharge, CableCheck, Authorization ...). Default 100 ms.
    pub loop_interval: Duration,
    /// PreCharge is done when the EVSE's present voltage is within this of
    /// the target (V). Default 20 V.
    pub precharge_tolerance: f64,
    /// Timer values.
    pub timers: TimerConfig,
    /// Initial car state.
    pub ev: EvStatus,
    /// The id of a paused session to resume: sent in SessionSetupReq
    /// (instead of `0`); the SECC answers `OK_OldSessionJoined` if it knows it.
    pub resume: Option<Vec<u8>>,
    /// ISO 15118-20: the control mode the EV selects. Scheduled by default.
    pub control_mode: ControlMode,
    /// Unix time (s) at the machine's creation, for the -20 header
    /// TimeStamps and the validity of certificates (Plug & Charge).
    pub unix_time: u64,
    /// Plug & Charge: -2, the EVCC selects `Contract` payment (installing
    /// a contract first when it has none) when set; -20, it selects `PnC`
    /// when it has a contract and the SECC offers PnC, else EIM.
    pub pnc: Option<EvPnc>,
    /// ISO 15118-20: the EVCC selects the BPT service (DC_BPT, AC_BPT)
    /// instead of DC or AC when set.
    pub bpt: Option<EvBpt>,
    /// ISO 15118-20: the value-added services (ServiceIDs) the car wants,
    /// in its order of preference: those the SECC offers it asks
    /// ServiceDetail of and selects with their first parameter set.
    pub vas: Vec<u16>,
}

impl EvccConfig {
    /// A DIN DC (extended) EVCC.
    pub fn din_dc(evcc_id: Vec<u8>) -> Self {
        Self {
            evcc_id,
            protocols: vec![Protocol::Din],
            energy_mode: EnergyMode::DcExtended,
            loop_interval: Duration::from_millis(100),
            precharge_tolerance: 20.0,
            timers: TimerConfig::default(),
            ev: EvStatus::default(),
            resume: None,
            control_mode: ControlMode::Scheduled,
            unix_time: 0,
            pnc: None,
            bpt: None,
            vas: Vec::new(),
        }
    }
    /// Sets [`EvccConfig::bpt`].
    pub fn with_bpt(mut self, bpt: Option<EvBpt>) -> Self {
        self.bpt = bpt;
        self
    }
    /// Sets [`EvccConfig::vas`].
    pub fn with_vas(mut self, vas: Vec<u16>) -> Self {
        self.vas = vas;
        self
    }
    /// Sets [`EvccConfig::pnc`].
    pub fn with_pnc(mut self, pnc: Option<EvPnc>) -> Self {
        self.pnc = pnc;
        self
    }
    /// An ISO 15118-2 DC (extended) EVCC.
    pub fn iso2_dc(evcc_id: Vec<u8>) -> Self {
        Self {
            protocols: vec![Protocol::Iso2],
            ..Self::din_dc(evcc_id)
        }
    }
    /// An ISO 15118-2 AC (three-phase) EVCC: 16 A.
    pub fn iso2_ac(evcc_id: Vec<u8>) -> Self {
        Self {
            protocols: vec![Protocol::Iso2],
            energy_mode: EnergyMode::AcThreePhaseCore,
            ev: EvStatus {
                max_voltage: 400.0,
                max_current: 16.0,
                max_power: 11_000.0,
                ..EvStatus::default()
            },
            ..Self::din_dc(evcc_id)
        }
    }
    /// An ISO 15118-20 DC EVCC (scheduled control mode).
    pub fn iso20_dc(evcc_id: Vec<u8>) -> Self {
        Self {
            protocols: vec![Protocol::Iso20Dc],
            ..Self::din_dc(evcc_id)
        }
    }
    /// An ISO 15118-20 AC (three-phase) EVCC (scheduled control mode): 11 kW.
    pub fn iso20_ac(evcc_id: Vec<u8>) -> Self {
        Self {
            protocols: vec![Protocol::Iso20Ac],
            ..Self::iso2_ac(evcc_id)
        }
    }
    /// Sets [`EvccConfig::control_mode`].
    pub fn with_control_mode(mut self, m: ControlMode) -> Self {
        self.control_mode = m;
        self
    }
    /// Sets [`EvccConfig::unix_time`].
    pub fn with_unix_time(mut self, t: u64) -> Self {
        self.unix_time = t;
        self
    }
    /// Sets [`EvccConfig::energy_mode`].
    pub fn with_energy_mode(mut self, m: EnergyMode) -> Self {
        self.energy_mode = m;
        self
    }
    /// Sets [`EvccConfig::resume`].
    pub fn with_resume(mut self, id: Option<Vec<u8>>) -> Self {
        self.resume = id;
        self
    }
    /// Sets [`EvccConfig::loop_interval`].
    pub fn with_loop_interval(mut self, d: Duration) -> Self {
        self.loop_interval = d;
        self
    }
    /// Sets [`EvccConfig::ev`].
    pub fn with_ev(mut self, ev: EvStatus) -> Self {
        self.ev = ev;
        self
    }
    /// Sets [`EvccConfig::timers`].
    pub fn with_timers(mut self, t: TimerConfig) -> Self {
        self.timers = t;
        self
    }
    /// Sets [`EvccConfig::protocols`].
    pub fn with_protocols(mut self, p: Vec<Protocol>) -> Self {
        self.protocols = p;
        self
    }
}

// ---- shared plumbing ----

/// The effect queue, timers and end flag every machine has.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) effects: VecDeque<Effect>,
    pub(crate) timers: Timers,
    pub(crate) ended: Option<EndReason>,
}

impl Core {
    pub(crate) fn new() -> Self {
        Self {
            effects: VecDeque::new(),
            timers: Timers::default(),
            ended: None,
        }
    }
    pub(crate) fn transmit(&mut self, bytes: Vec<u8>) {
        self.effects.push_back(Effect::Transmit(bytes));
    }
    pub(crate) fn transmit_as(&mut self, payload_type: PayloadType, bytes: Vec<u8>) {
        self.effects
            .push_back(Effect::TransmitAs(payload_type, bytes));
    }
    /// Ends the session once: clears the timers, reports the reason.
    pub(crate) fn end(&mut self, reason: EndReason) {
        if self.ended.is_none() {
            self.timers.clear();
            self.ended = Some(reason.clone());
            self.effects.push_back(Effect::SessionEnded { reason });
        }
    }
    pub(crate) fn is_ended(&self) -> bool {
        self.ended.is_some()
    }
}

/// `(value, multiplier)` for a `PhysicalValueType`: the smallest multiplier
/// in -3..=3 whose value fits an `i16`, clamped beyond.
pub(crate) fn scale(x: f64) -> (i16, i8) {
    if !x.is_finite() {
        return (0, 0);
    }
    for m in -3i8..=3 {
        let v = (x / 10f64.powi(i32::from(m))).round();
        if v.abs() <= f64::from(i16::MAX) {
            return (v as i16, m);
        }
    }
    (if x < 0.0 { i16::MIN } else { i16::MAX }, 3)
}

/// The number a `PhysicalValueType` stands for.
pub(crate) fn unscale(value: i16, multiplier: i8) -> f64 {
    f64::from(value) * 10f64.powi(i32::from(multiplier))
}

/// Energy accounting of a charge loop: `V × I` over the time since the last
/// loop answer, in Wh.
#[derive(Debug, Default, Clone)]
pub(crate) struct Energy {
    pub(crate) wh: f64,
    last: Option<Instant>,
    meter: Option<u64>,
}

impl Energy {
    pub(crate) fn add(&mut self, now: Instant, voltage: f64, current: f64) {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.wh += voltage * current * dt / 3600.0;
        }
        self.last = Some(now);
    }
    /// A pause in the loop (PowerDelivery stop, renegotiation).
    pub(crate) fn pause(&mut self) {
        self.last = None;
    }
    /// A meter reading (AC): the energy grows by the increase since the
    /// previous reading.
    pub(crate) fn meter(&mut self, wh: u64) {
        if let Some(prev) = self.meter {
            self.wh += wh.saturating_sub(prev) as f64;
        }
        self.meter = Some(wh);
    }
}

// ---- the top-level machines: handshake, then the protocol's machine ----

#[derive(Debug)]
enum SeccInner {
    Handshake(Core),
    Din(Box<din::Secc>),
    Iso2(Box<iso2::Secc>),
    Iso20(Box<iso20::Secc>),
}

/// The SECC of one TCP connection: the SupportedAppProtocol handshake, then
/// [`din::Secc`], [`iso2::Secc`] or [`iso20::Secc`]. See the [module docs](self) for the call order.
///
/// ```text
///  Handshake ──SupportedAppProtocolReq──► negotiate ─┬─DIN──► din::Secc
///                                                   ├─ -2──► iso2::Secc
///                                                   └─ -20 AC/DC ──► iso20::Secc
///      └── no match / garbage / V2G_SECC_CommunicationSetup timeout ──► SessionEnded
/// ```
#[derive(Debug)]
pub struct Secc {
    config: SeccConfig,
    inner: SeccInner,
}

impl Secc {
    /// A SECC for a connection accepted at `now`: the
    /// V2G_SECC_CommunicationSetup timer starts.
    pub fn new(config: SeccConfig, now: Instant) -> Self {
        let mut core = Core::new();
        core.timers.arm(
            TimerKind::SeccCommunicationSetup,
            now + config.timers.communication_setup,
        );
        Self {
            config,
            inner: SeccInner::Handshake(core),
        }
    }

    /// The protocol chosen, once the handshake is done.
    pub fn protocol(&self) -> Option<Protocol> {
        match &self.inner {
            SeccInner::Handshake(_) => None,
            SeccInner::Din(_) => Some(Protocol::Din),
            SeccInner::Iso2(_) => Some(Protocol::Iso2),
            SeccInner::Iso20(m) => Some(if m.is_dc() {
                Protocol::Iso20Dc
            } else {
                Protocol::Iso20Ac
            }),
        }
    }

    /// The ISO 15118-2 machine, when -2 was chosen.
    pub fn iso2(&self) -> Option<&iso2::Secc> {
        match &self.inner {
            SeccInner::Iso2(m) => Some(m),
            _ => None,
        }
    }

    /// Asks the EV to renegotiate. ISO 15118-2: the next charge-loop answer
    /// carries `EVSENotification=ReNegotiation`, the EV comes back through
    /// ChargeParameterDiscovery (a new [`EvseRequest::Schedules`] with
    /// `renegotiation: true`) and PowerDelivery. ISO 15118-20, with
    /// [`SeccConfig::service_renegotiation`]: `EVSENotification=
    /// ServiceRenegotiation`, the EV stops, sends
    /// SessionStop(ServiceRenegotiation) and comes back through
    /// ServiceDiscovery (the schedules asked again with `renegotiation:
    /// true`). Ignored outside the charge loop and by DIN, which has no
    /// renegotiation.
    pub fn request_renegotiation(&mut self) {
        match &mut self.inner {
            SeccInner::Iso2(m) => m.request_renegotiation(),
            SeccInner::Iso20(m) => m.request_renegotiation(),
            _ => {}
        }
    }

    /// The DIN machine, when DIN was chosen.
    pub fn din(&self) -> Option<&din::Secc> {
        match &self.inner {
            SeccInner::Din(m) => Some(m),
            _ => None,
        }
    }

    /// The ISO 15118-20 machine, when -20 was chosen.
    pub fn iso20(&self) -> Option<&iso20::Secc> {
        match &self.inner {
            SeccInner::Iso20(m) => Some(m),
            _ => None,
        }
    }

    /// One EXI payload of V2GTP payload type `0x8001` from the EVCC
    /// (the handshake, DIN, -2): [`Secc::handle_packet`] with it.
    pub fn handle_message(&mut self, now: Instant, exi: &[u8]) {
        self.handle_packet(now, PayloadType::EXI, exi)
    }

    /// One V2GTP payload from the EVCC with its payload type: `0x8001`
    /// for the handshake, DIN and -2; -20 messages in theirs (`0x8002`
    /// CommonMessages, `0x8003` AC, `0x8004` DC). A payload type the
    /// session does not speak ends it ([`EndReason::Malformed`]).
    pub fn handle_packet(&mut self, now: Instant, payload_type: PayloadType, exi: &[u8]) {
        if let SeccInner::Iso20(m) = &mut self.inner {
            return m.handle_message(now, payload_type, exi);
        }
        if payload_type != PayloadType::EXI {
            let core = self.core_mut();
            if !core.is_ended() {
                core.end(EndReason::Malformed(format!(
                    "V2GTP payload type {:#06x} outside an ISO 15118-20 session",
                    payload_type.0
                )));
            }
            return;
        }
        match &mut self.inner {
            SeccInner::Din(m) => m.handle_message(now, exi),
            SeccInner::Iso2(m) => m.handle_message(now, exi),
            SeccInner::Iso20(_) => {}
            SeccInner::Handshake(core) => {
                if core.is_ended() {
                    return;
                }
                let req = match app_protocol::decode(exi) {
                    Ok(app_protocol::Message::Req(req)) => req,
                    Ok(_) => return core.end(EndReason::SequenceError),
                    Err(e) => return core.end(EndReason::Malformed(e.to_string())),
                };
                let offers: Vec<Offer> = self.config.protocols.iter().map(|p| p.offer()).collect();
                let res = app_protocol::negotiate(&req, &offers);
                let chosen = res.schema_id.and_then(|id| {
                    let p = req.app_protocols.iter().find(|p| p.schema_id == id)?;
                    self.config
                        .protocols
                        .iter()
                        .copied()
                        .find(|o| o.offer().namespace == p.protocol_namespace)
                });
                let mut bytes = Vec::new();
                app_protocol::encode(&app_protocol::Message::Res(res), &mut bytes);
                core.transmit(bytes);
                let mut core = std::mem::replace(core, Core::new());
                match chosen {
                    Some(Protocol::Din) => {
                        self.inner =
                            SeccInner::Din(Box::new(din::Secc::new(self.config.clone(), core, now)))
                    }
                    Some(Protocol::Iso2) => {
                        self.inner = SeccInner::Iso2(Box::new(iso2::Secc::new(
                            self.config.clone(),
                            core,
                            now,
                        )))
                    }
                    Some(p @ (Protocol::Iso20Ac | Protocol::Iso20Dc)) => {
                        self.inner = SeccInner::Iso20(Box::new(iso20::Secc::new(
                            self.config.clone(),
                            core,
                            now,
                            p == Protocol::Iso20Dc,
                        )))
                    }
                    None => {
                        core.end(EndReason::NoNegotiation);
                        self.inner = SeccInner::Handshake(core);
                    }
                }
            }
        }
    }

    /// Time has come (see [`Secc::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.inner {
            SeccInner::Din(m) => m.handle_timeout(now),
            SeccInner::Iso2(m) => m.handle_timeout(now),
            SeccInner::Iso20(m) => m.handle_timeout(now),
            SeccInner::Handshake(core) => {
                if let Some(kind) = core.timers.expired(now) {
                    core.end(EndReason::Timeout(kind));
                }
            }
        }
    }

    /// The authorization decision asked for by [`EvseRequest::Authorize`].
    pub fn handle_authorization(&mut self, now: Instant, decision: Authorization) {
        match &mut self.inner {
            SeccInner::Din(m) => m.handle_authorization(now, decision),
            SeccInner::Iso2(m) => m.handle_authorization(now, decision),
            SeccInner::Iso20(m) => m.handle_authorization(now, decision),
            SeccInner::Handshake(_) => {}
        }
    }

    /// The backend's verdict asked for by [`EvseRequest::AuthorizeContract`]
    /// (ISO 15118-2 and -20 Plug & Charge).
    pub fn handle_contract_status(&mut self, now: Instant, status: ContractStatus) {
        match &mut self.inner {
            SeccInner::Iso2(m) => m.handle_contract_status(now, status),
            SeccInner::Iso20(m) => m.handle_contract_status(now, status),
            SeccInner::Din(_) | SeccInner::Handshake(_) => {}
        }
    }

    /// The CertificateInstallationRes asked for by
    /// [`EvseRequest::InstallCertificate`] (`None`: no contract for this
    /// car, `FAILED_NoCertificateAvailable`).
    pub fn handle_certificate_installation(
        &mut self,
        now: Instant,
        installation: Option<CertificateInstallation>,
    ) {
        if let SeccInner::Iso2(m) = &mut self.inner {
            m.handle_certificate_installation(now, installation)
        }
    }

    /// The ISO 15118-20 CertificateInstallationRes asked for by
    /// [`EvseRequest::InstallCertificateIso20`] (`None`: no contract for
    /// this car, `WARNING_NoCertificateAvailable`).
    pub fn handle_iso20_certificate_installation(
        &mut self,
        now: Instant,
        installation: Option<Iso20CertificateInstallation>,
    ) {
        if let SeccInner::Iso20(m) = &mut self.inner {
            m.handle_certificate_installation(now, installation)
        }
    }

    /// The CertificateUpdateRes asked for by
    /// [`EvseRequest::UpdateCertificate`] (`None`: no new contract for this
    /// car, `FAILED_NoCertificateAvailable`).
    pub fn handle_certificate_update(&mut self, now: Instant, update: Option<CertificateUpdate>) {
        if let SeccInner::Iso2(m) = &mut self.inner {
            m.handle_certificate_update(now, update)
        }
    }

    /// The schedules asked for by [`EvseRequest::Schedules`] (empty: the
    /// SECC offers one tuple, id 1, of the EVSE's maximum power).
    pub fn handle_schedules(&mut self, now: Instant, schedules: Vec<ScheduleTuple>) {
        match &mut self.inner {
            SeccInner::Din(m) => m.handle_schedules(now, schedules),
            SeccInner::Iso2(m) => m.handle_schedules(now, schedules),
            SeccInner::Iso20(m) => m.handle_schedules(now, schedules),
            SeccInner::Handshake(_) => {}
        }
    }

    /// The EVSE's current measurements and limits.
    pub fn set_evse(&mut self, status: EvseStatus) {
        self.config.evse = status.clone();
        match &mut self.inner {
            SeccInner::Din(m) => m.set_evse(status),
            SeccInner::Iso2(m) => m.set_evse(status),
            SeccInner::Iso20(m) => m.set_evse(status),
            SeccInner::Handshake(_) => {}
        }
    }

    /// The EVSE state the SECC answers from.
    pub fn evse(&self) -> &EvseStatus {
        match &self.inner {
            SeccInner::Din(m) => m.evse(),
            SeccInner::Iso2(m) => m.evse(),
            SeccInner::Iso20(m) => m.evse(),
            SeccInner::Handshake(_) => &self.config.evse,
        }
    }

    /// Energy delivered in the charge loops so far (Wh, from the present values answered).
    pub fn energy_wh(&self) -> f64 {
        match &self.inner {
            SeccInner::Din(m) => m.energy_wh(),
            SeccInner::Iso2(m) => m.energy_wh(),
            SeccInner::Iso20(m) => m.energy_wh(),
            SeccInner::Handshake(_) => 0.0,
        }
    }

    /// Energy taken back from the car in the charge loops so far (Wh,
    /// ISO 15118-20 BPT; 0 otherwise).
    pub fn discharged_wh(&self) -> f64 {
        match &self.inner {
            SeccInner::Iso20(m) => m.discharged_wh(),
            _ => 0.0,
        }
    }

    /// Whether the car selected an ISO 15118-20 BPT service (DC_BPT, AC_BPT).
    pub fn is_bpt(&self) -> bool {
        matches!(&self.inner, SeccInner::Iso20(m) if m.is_bpt())
    }

    /// ISO 15118-20: the value-added services the EV selected,
    /// `(ServiceID, ParameterSetID)` (empty before ServiceSelection and
    /// for DIN and -2).
    pub fn selected_vas(&self) -> &[(u16, u16)] {
        match &self.inner {
            SeccInner::Iso20(m) => m.selected_vas(),
            _ => &[],
        }
    }

    /// Plug & Charge: the eMAID of the contract the car presented and the
    /// SECC verified (-2 and -20); `None` for EIM.
    pub fn contract_emaid(&self) -> Option<&str> {
        match &self.inner {
            SeccInner::Iso2(m) => m.contract_emaid(),
            SeccInner::Iso20(m) => m.contract_emaid(),
            SeccInner::Din(_) | SeccInner::Handshake(_) => None,
        }
    }

    /// Why the session ended, once it has.
    pub fn ended(&self) -> Option<&EndReason> {
        self.core().ended.as_ref()
    }

    /// The id of the session (after SessionSetup), or `None`.
    pub fn session_id(&self) -> Option<&[u8]> {
        match &self.inner {
            SeccInner::Din(m) => m.session_id(),
            SeccInner::Iso2(m) => m.session_id(),
            SeccInner::Iso20(m) => m.session_id(),
            SeccInner::Handshake(_) => None,
        }
    }

    fn core(&self) -> &Core {
        match &self.inner {
            SeccInner::Din(m) => &m.core,
            SeccInner::Iso2(m) => &m.core,
            SeccInner::Iso20(m) => &m.core,
            SeccInner::Handshake(c) => c,
        }
    }

    fn core_mut(&mut self) -> &mut Core {
        match &mut self.inner {
            SeccInner::Din(m) => &mut m.core,
            SeccInner::Iso2(m) => &mut m.core,
            SeccInner::Iso20(m) => &mut m.core,
            SeccInner::Handshake(c) => c,
        }
    }

    /// The next effect.
    #[must_use]
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.core_mut().effects.pop_front()
    }

    /// When to call [`Secc::handle_timeout`].
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core().timers.next()
    }
}

#[derive(Debug)]
enum EvccInner {
    Handshake(Core, Vec<AppProtocol>),
    Din(Box<din::Evcc>),
    Iso2(Box<iso2::Evcc>),
    Iso20(Box<iso20::Evcc>),
}

/// The EVCC of one TCP connection: SupportedAppProtocolReq with the
/// configured protocols, then [`din::Evcc`], [`iso2::Evcc`] or [`iso20::Evcc`]. Created when
/// the TCP connection is up; its first effect is the handshake request.
#[derive(Debug)]
pub struct Evcc {
    config: EvccConfig,
    inner: EvccInner,
}

impl Evcc {
    /// An EVCC whose TCP connection is up at `now`: sends
    /// SupportedAppProtocolReq and starts V2G_EVCC_CommunicationSetup and
    /// the handshake's message timer.
    pub fn new(config: EvccConfig, now: Instant) -> Self {
        let mut core = Core::new();
        let protocols: Vec<AppProtocol> = config
            .protocols
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let o = p.offer();
                AppProtocol {
                    protocol_namespace: o.namespace.into(),
                    version_number_major: o.major,
                    version_number_minor: o.minor,
                    schema_id: i as u8 + 1,
                    priority: (i as u8 + 1).min(20),
                }
            })
            .collect();
        let mut bytes = Vec::new();
        app_protocol::encode(
            &app_protocol::Message::Req(SupportedAppProtocolReq {
                app_protocols: protocols.clone(),
            }),
            &mut bytes,
        );
        core.transmit(bytes);
        core.timers.arm(
            TimerKind::EvccCommunicationSetup,
            now + config.timers.communication_setup,
        );
        core.timers.arm(
            TimerKind::EvccMsg(MsgKind::SupportedAppProtocol),
            now + msg_timeout(Standard::Din70121, MsgKind::SupportedAppProtocol),
        );
        Self {
            config,
            inner: EvccInner::Handshake(core, protocols),
        }
    }

    /// The protocol the SECC chose, once it has.
    pub fn protocol(&self) -> Option<Protocol> {
        match &self.inner {
            EvccInner::Handshake(..) => None,
            EvccInner::Din(_) => Some(Protocol::Din),
            EvccInner::Iso2(_) => Some(Protocol::Iso2),
            EvccInner::Iso20(m) => Some(if m.is_dc() {
                Protocol::Iso20Dc
            } else {
                Protocol::Iso20Ac
            }),
        }
    }

    /// The ISO 15118-2 machine, when -2 was chosen.
    pub fn iso2(&self) -> Option<&iso2::Evcc> {
        match &self.inner {
            EvccInner::Iso2(m) => Some(m),
            _ => None,
        }
    }

    /// The ISO 15118-20 machine, when -20 was chosen.
    pub fn iso20(&self) -> Option<&iso20::Evcc> {
        match &self.inner {
            EvccInner::Iso20(m) => Some(m),
            _ => None,
        }
    }

    /// One EXI payload of V2GTP payload type `0x8001` from the SECC:
    /// [`Evcc::handle_packet`] with it.
    pub fn handle_message(&mut self, now: Instant, exi: &[u8]) {
        self.handle_packet(now, PayloadType::EXI, exi)
    }

    /// One V2GTP payload from the SECC with its payload type (see
    /// [`Secc::handle_packet`]).
    pub fn handle_packet(&mut self, now: Instant, payload_type: PayloadType, exi: &[u8]) {
        if let EvccInner::Iso20(m) = &mut self.inner {
            return m.handle_message(now, payload_type, exi);
        }
        if payload_type != PayloadType::EXI {
            let core = self.core_mut();
            if !core.is_ended() {
                core.end(EndReason::Malformed(format!(
                    "V2GTP payload type {:#06x} outside an ISO 15118-20 session",
                    payload_type.0
                )));
            }
            return;
        }
        match &mut self.inner {
            EvccInner::Din(m) => m.handle_message(now, exi),
            EvccInner::Iso2(m) => m.handle_message(now, exi),
            EvccInner::Iso20(_) => {}
            EvccInner::Handshake(core, offered) => {
                if core.is_ended() {
                    return;
                }
                let res = match app_protocol::decode(exi) {
                    Ok(app_protocol::Message::Res(res)) => res,
                    Ok(_) => return core.end(EndReason::SequenceError),
                    Err(e) => return core.end(EndReason::Malformed(e.to_string())),
                };
                let chosen = match (res.response_code, res.schema_id) {
                    (ResponseCode::FailedNoNegotiation, _) | (_, None) => None,
                    (_, Some(id)) => offered
                        .iter()
                        .position(|p| p.schema_id == id)
                        .map(|i| self.config.protocols[i]),
                };
                let mut core = std::mem::replace(core, Core::new());
                core.timers
                    .disarm(TimerKind::EvccMsg(MsgKind::SupportedAppProtocol));
                match chosen {
                    Some(Protocol::Din) => {
                        self.inner =
                            EvccInner::Din(Box::new(din::Evcc::new(self.config.clone(), core, now)))
                    }
                    Some(Protocol::Iso2) => {
                        self.inner = EvccInner::Iso2(Box::new(iso2::Evcc::new(
                            self.config.clone(),
                            core,
                            now,
                        )))
                    }
                    Some(p @ (Protocol::Iso20Ac | Protocol::Iso20Dc)) => {
                        self.inner = EvccInner::Iso20(Box::new(iso20::Evcc::new(
                            self.config.clone(),
                            core,
                            now,
                            p == Protocol::Iso20Dc,
                        )))
                    }
                    None => {
                        core.end(EndReason::NoNegotiation);
                        self.inner = EvccInner::Handshake(core, Vec::new());
                    }
                }
            }
        }
    }

    /// Time has come (see [`Evcc::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.inner {
            EvccInner::Din(m) => m.handle_timeout(now),
            EvccInner::Iso2(m) => m.handle_timeout(now),
            EvccInner::Iso20(m) => Pacing::handle_timeout(m.as_mut(), now),
            EvccInner::Handshake(core, _) => {
                if let Some(kind) = core.timers.expired(now) {
                    core.end(EndReason::Timeout(kind));
                }
            }
        }
    }

    /// The car's current state.
    pub fn set_ev(&mut self, ev: EvStatus) {
        self.config.ev = ev.clone();
        match &mut self.inner {
            EvccInner::Din(m) => m.set_ev(ev),
            EvccInner::Iso2(m) => m.set_ev(ev),
            EvccInner::Iso20(m) => m.set_ev(ev),
            EvccInner::Handshake(..) => {}
        }
    }

    /// ISO 15118-20: renegotiate the services (where the SECC said it
    /// supports that): the next charge-loop request becomes
    /// PowerDelivery(Stop), then (DC) WeldingDetection,
    /// SessionStop(ServiceRenegotiation) and ServiceDiscovery again.
    /// Ignored by DIN and -2 and where the SECC does not support it.
    pub fn request_service_renegotiation(&mut self) {
        if let EvccInner::Iso20(m) = &mut self.inner {
            m.request_service_renegotiation();
        }
    }

    /// Stop charging: the next charge-loop request becomes PowerDelivery(Stop),
    /// then (DC) WeldingDetection and SessionStop of this kind.
    pub fn request_stop(&mut self, kind: StopKind) {
        match &mut self.inner {
            EvccInner::Din(m) => m.request_stop(kind),
            EvccInner::Iso2(m) => m.request_stop(kind),
            EvccInner::Iso20(m) => m.request_stop(kind),
            EvccInner::Handshake(..) => {}
        }
    }

    /// Charge-loop answers received so far (CurrentDemandRes / ChargingStatusRes).
    pub fn charge_loops(&self) -> u32 {
        match &self.inner {
            EvccInner::Din(m) => m.charge_loops(),
            EvccInner::Iso2(m) => m.charge_loops(),
            EvccInner::Iso20(m) => m.charge_loops(),
            EvccInner::Handshake(..) => 0,
        }
    }

    /// The first PMax (W) of the SA schedule the car chose and follows
    /// (DIN, -2; -20 in scheduled mode), once it has.
    pub fn schedule_pmax(&self) -> Option<f64> {
        match &self.inner {
            EvccInner::Din(m) => m.schedule_pmax(),
            EvccInner::Iso2(m) => m.schedule_pmax(),
            EvccInner::Iso20(m) => m.schedule_pmax(),
            EvccInner::Handshake(..) => None,
        }
    }

    /// Energy received in the charge loops (Wh, from the EVSE's present values).
    pub fn energy_wh(&self) -> f64 {
        match &self.inner {
            EvccInner::Din(m) => m.energy_wh(),
            EvccInner::Iso2(m) => m.energy_wh(),
            EvccInner::Iso20(m) => m.energy_wh(),
            EvccInner::Handshake(..) => 0.0,
        }
    }

    /// Energy given back in the charge loops (Wh, ISO 15118-20 BPT; 0 otherwise).
    pub fn discharged_wh(&self) -> f64 {
        match &self.inner {
            EvccInner::Iso20(m) => m.discharged_wh(),
            _ => 0.0,
        }
    }

    /// Whether this session runs an ISO 15118-20 BPT service (once the
    /// -20 machine runs and [`EvccConfig::bpt`] is set).
    pub fn is_bpt(&self) -> bool {
        matches!(&self.inner, EvccInner::Iso20(m) if m.is_bpt())
    }

    /// ISO 15118-20: the value-added services selected, `(ServiceID,
    /// ParameterSetID)` (empty before ServiceSelection and for DIN and -2).
    pub fn selected_vas(&self) -> &[(u16, u16)] {
        match &self.inner {
            EvccInner::Iso20(m) => m.selected_vas(),
            _ => &[],
        }
    }

    /// Plug & Charge: the eMAID of the contract the car authorized with
    /// (-2: paid by contract; -20: PnC selected); `None` for EIM.
    pub fn contract_emaid(&self) -> Option<&str> {
        match &self.inner {
            EvccInner::Iso2(m) => m.contract_emaid(),
            EvccInner::Iso20(m) => m.contract_emaid(),
            _ => None,
        }
    }

    /// The session id the SECC gave, once it has.
    pub fn session_id(&self) -> Option<&[u8]> {
        match &self.inner {
            EvccInner::Din(m) => m.session_id(),
            EvccInner::Iso2(m) => m.session_id(),
            EvccInner::Iso20(m) => m.session_id(),
            EvccInner::Handshake(..) => None,
        }
    }

    /// Why the session ended, once it has.
    pub fn ended(&self) -> Option<&EndReason> {
        self.core().ended.as_ref()
    }

    fn core(&self) -> &Core {
        match &self.inner {
            EvccInner::Din(m) => &m.core,
            EvccInner::Iso2(m) => &m.core,
            EvccInner::Iso20(m) => &m.core,
            EvccInner::Handshake(c, _) => c,
        }
    }

    fn core_mut(&mut self) -> &mut Core {
        match &mut self.inner {
            EvccInner::Din(m) => &mut m.core,
            EvccInner::Iso2(m) => &mut m.core,
            EvccInner::Iso20(m) => &mut m.core,
            EvccInner::Handshake(c, _) => c,
        }
    }

    /// The next effect.
    #[must_use]
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.core_mut().effects.pop_front()
    }

    /// When to call [`Evcc::handle_timeout`].
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core().timers.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_keeps_values_in_i16_with_the_finest_multiplier() {
        assert_eq!(scale(400.0), (4000, -1));
        assert_eq!(scale(1.5), (1500, -3));
        assert_eq!(scale(50_000.0), (5000, 1));
        assert_eq!(scale(-12.0), (-12000, -3));
        assert_eq!(scale(f64::NAN), (0, 0));
        assert_eq!(scale(1e12), (i16::MAX, 3));
        assert_eq!(unscale(4000, -1), 400.0);
    }

    #[test]
    fn energy_integrates_between_loop_answers() {
        let t = Instant::now();
        let mut e = Energy::default();
        e.add(t, 400.0, 100.0);
        e.add(t + Duration::from_secs(36), 400.0, 100.0);
        assert!((e.wh - 400.0).abs() < 1e-9);
        e.pause();
        e.add(t + Duration::from_secs(100), 400.0, 100.0);
        assert!((e.wh - 400.0).abs() < 1e-9);
    }

    #[test]
    fn no_common_protocol_ends_both_sides() {
        let now = Instant::now();
        let mut secc = Secc::new(
            SeccConfig::new(vec![1, 2, 3, 4]).with_protocols(vec![]),
            now,
        );
        let mut evcc = Evcc::new(EvccConfig::din_dc(vec![1; 6]), now);
        let Some(Effect::Transmit(req)) = evcc.poll_effect() else {
            panic!()
        };
        secc.handle_message(now, &req);
        let Some(Effect::Transmit(res)) = secc.poll_effect() else {
            panic!()
        };
        assert_eq!(
            secc.poll_effect(),
            Some(Effect::SessionEnded {
                reason: EndReason::NoNegotiation
            })
        );
        evcc.handle_message(now, &res);
        assert_eq!(
            evcc.poll_effect(),
            Some(Effect::SessionEnded {
                reason: EndReason::NoNegotiation
            })
        );
        assert_eq!(evcc.poll_timeout(), None);
    }

    #[test]
    fn secc_communication_setup_timeout() {
        let now = Instant::now();
        let mut secc = Secc::new(SeccConfig::new(vec![1]), now);
        let at = secc.poll_timeout().unwrap();
        assert_eq!(at, now + Duration::from_secs(20));
        secc.handle_timeout(at - Duration::from_millis(1));
        assert_eq!(secc.poll_effect(), None);
        secc.handle_timeout(at);
        assert_eq!(
            secc.poll_effect(),
            Some(Effect::SessionEnded {
                reason: EndReason::Timeout(TimerKind::SeccCommunicationSetup)
            })
        );
    }
}
