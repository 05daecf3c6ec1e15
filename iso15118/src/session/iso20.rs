//! ISO 15118-20:2022 (namespaces `urn:iso:std:iso:15118:-20:DC` and `:AC`)
//! with external identification means (EIM) or a contract (Plug & Charge's
//! authorization, [`super::SeccConfig::pnc`]), DC and AC energy services and
//! their bidirectional (BPT) ones, scheduled and dynamic control modes:
//! the SECC and the EVCC after the
//! SupportedAppProtocol handshake. The handshake's choice
//! ([`super::Protocol::Iso20Dc`] or [`super::Protocol::Iso20Ac`]) decides
//! DC or AC; [`EvccConfig::control_mode`] the control mode, among the SECC's
//! [`SeccConfig::control_modes`].
//!
//! ```text
//!  SessionSetup ─► AuthorizationSetup ─► Authorization(EIM | PnC) ⟲ Ongoing
//!      ─► ServiceDiscovery ─► ServiceDetail ─► ServiceSelection
//!      ─► AC/DC_ChargeParameterDiscovery ─► ScheduleExchange ⟲ Ongoing ─┬─ AC ──────────────────────────────┐
//!                                                                      └─ DC: DC_CableCheck ⟲ ─► DC_PreCharge ⟲ ─┤
//!      ┌────────────────────────────────────────────────────────────────────────────────────────────────┘
//!      └► PowerDelivery(Start) ─► AC_ChargeLoop ⟲ / DC_ChargeLoop ⟲ ─► PowerDelivery(Stop)
//!           ─► DC_WeldingDetection ⟲ (DC) ─► SessionStop(Terminate | Pause)
//! ```
//!
//! **Wire.** -20 messages travel in their own V2GTP payload types: the
//! CommonMessages in `0x8002`, the AC messages in `0x8003`, the DC ones in
//! `0x8004` (the handshake stays `0x8001`). The machines take them with
//! [`super::Secc::handle_packet`] / [`super::Evcc::handle_packet`] and emit
//! [`super::Effect::TransmitAs`]. Every header carries an 8-byte SessionID
//! (a shorter [`SeccConfig::session_id`] is left-padded with zeros) and a
//! TimeStamp: [`SeccConfig::unix_time`] / [`EvccConfig::unix_time`] plus the
//! seconds since the machine started (injected: the machines read no clock).
//! Header signatures: AuthorizationReq's and CertificateInstallationReq's and -Res' in
//! Plug & Charge (below).
//! -20 mandates TLS 1.3; these
//! machines do not care what carries their bytes, and the shells run them
//! over plain TCP only when told to (the CLI's `--allow-iso20-without-tls`).
//!
//! **Plug & Charge.** With [`super::SeccConfig::pnc`] the SECC's
//! AuthorizationSetupRes lists `PnC` and `EIM` and carries
//! `PnC_ASResAuthorizationMode` with [`super::SeccPnc::gen_challenge`]
//! (EIM's parameters only when PnC is not offered [V2G20-2567]). An EV with
//! a contract ([`super::EvPnc::contract`]) then selects PnC: its
//! AuthorizationReq carries `PnC_AReqAuthorizationMode` (`Id` `id1`, the
//! GenChallenge, the contract chain) and a header `Signature` over that
//! element's EXI fragment by the contract key, ECDSA on secp521r1 with
//! SHA-512 (a secp256r1 contract, as Josev's EVCC sends over -20, signs
//! with SHA-256 and is taken too). It sends the same request, signature
//! and all, while the answer is `Ongoing` [V2G20-1582]. Without a
//! contract, or where PnC is not offered, it selects EIM. The SECC checks
//! the first PnC request: the GenChallenge (`WARNING_ChallengeInvalid`),
//! the chain against [`super::SeccPnc::mo_roots`] at the session's Unix
//! time (`WARNING_CertificateExpired`, `WARNING_CertificateNotYetValid`,
//! any other fault `WARNING_CertificateValidationError`), then the
//! signature with the leaf's key (`FAILED_SignatureError`); then it asks
//! [`super::EvseRequest::AuthorizeContract`] once (the eMAID is the
//! leaf's CN) and answers `Ongoing` until
//! [`super::Secc::handle_contract_status`]: `Revoked` is
//! `WARNING_CertificateRevoked`, `Rejected` is
//! `WARNING_GeneralPnCAuthorizationError`. A repeat that is not the same
//! request (another mode, or EIM) is
//! `WARNING_AuthorizationSelectionInvalid`.
//!
//! **Contract installation.** With PnC the SECC also offers
//! `CertificateInstallationService`. An EV without a contract but with an
//! OEM provisioning certificate ([`super::EvPnc::provisioning`],
//! secp521r1) then sends CertificateInstallationReq before its
//! AuthorizationReq: `OEMProvisioningCertificateChain` (`Id` `id1`) signed
//! in the header by the provisioning key, the V2G roots it trusts,
//! `MaximumContractCertificateChains=1`. The SECC verifies that signature
//! (`FAILED_SignatureError`) and asks
//! [`super::EvseRequest::InstallCertificateIso20`]; the backend's answer
//! ([`super::Secc::handle_iso20_certificate_installation`], e.g.
//! [`super::ContractProvisioning::install_iso20`]) goes out under the
//! SECC's header, `None` as `WARNING_NoCertificateAvailable`. A request
//! where PnC is not offered or once a contract is being decided, and any
//! request while an installation waits for the backend, is
//! `FAILED_SequenceError`. The EVCC checks the
//! CPS chain against [`super::EvPnc::v2g_roots`], the CPS leaf's signature
//! over `SignedInstallationData`, decrypts the contract key (secp521r1
//! ECDH, AES-GCM-256 with the PCID and SKI as AAD, [`crate::pki`]), checks
//! it is the certificate's [V2G20-2507], and authorizes by PnC with that
//! contract ([`Evcc::installed_contract`]); anything wrong ends it with
//! [`EndReason::Failed`] naming the fault. `X448` deliveries are refused
//! (no X448 here).
//!
//! **Services.** The SECC offers the energy transfer service DC (id 2) or
//! AC (id 1) and, with [`SeccConfig::bpt`], its bidirectional sibling
//! DC_BPT (6) or AC_BPT (5). Its
//! ServiceDetail lists one
//! parameter set per control mode it allows: id 1 Scheduled
//! (`ControlMode=1`), id 2 Dynamic (`ControlMode=2`), with `Connector`
//! (DC 1 = extended, AC 2 = three-phase), `MobilityNeedsMode` (1, 2 for
//! dynamic), `Pricing=0`, and AC's `EVSENominalVoltage`. The EVCC asks
//! ServiceDetail for that service and selects the set whose `ControlMode`
//! is its own.
//!
//! **Value-added services.** The SECC lists [`SeccConfig::vas`] in
//! ServiceDiscoveryRes's `VASList` (only those whose ids the EV's
//! `SupportedServiceIDs` names, when it names any) and answers their
//! ServiceDetail with their parameter sets ([`super::Vas::internet`]: the
//! Internet service's four). The EVCC asks ServiceDetail of each service
//! of [`EvccConfig::vas`] the SECC offers, after the energy service's, and
//! selects each with its first parameter set. A ServiceSelection naming
//! VAS, each offered once with one of its sets, is taken and handed to
//! the EVSE ([`super::EvseRequest::ValueAddedServices`]).
//!
//! **Service renegotiation.** With [`SeccConfig::service_renegotiation`]
//! ServiceDiscoveryRes says `ServiceRenegotiationSupported`;
//! [`super::Secc::request_renegotiation`] then makes the next charge-loop
//! answer carry `EVSENotification=ServiceRenegotiation`, and the EVCC (or
//! the car of its own, [`super::Evcc::request_service_renegotiation`])
//! stops: PowerDelivery(Stop), DC_WeldingDetection (DC),
//! SessionStop(ServiceRenegotiation), then ServiceDiscovery again in the
//! same session [V2G20-1477]: services, parameter sets, VAS and schedules
//! chosen anew (the schedules asked with `renegotiation: true`), DC's
//! cable check and precharge again. Schedule renegotiation (-20's parallel
//! `ScheduleRenegotiation` V2GTP stream) is not here: `ScheduleRenegotiation`
//! is refused.
//!
//! **Bidirectional power transfer.** A BPT parameter set adds
//! `BPTChannel=1` (unified: one channel both ways, the only one these
//! machines speak), `GeneratorMode=1` (grid following) and, AC,
//! `GridCodeIslandingDetectionMethod=1` (active); an EV with
//! [`EvccConfig::bpt`] selects the BPT service and takes a set naming the
//! unified channel or none. Then every message carries its BPT variant:
//! ChargeParameterDiscovery both sides' discharge limits, the scheduled
//! tuple a DischargingSchedule (the smaller discharge power of both sides,
//! negative: what flows out of the EV), PowerDelivery(Start) a
//! `BPT_ChannelSelection`, the charge loops the `BPT_*` control modes.
//! Power and current are signed, negative when energy flows out of the EV.
//! Scheduled: an EV with energy to give ([`super::EvBpt::discharge_wh`])
//! selects `Discharge`, profiles minus its discharge power (its own, the
//! EVSE's and the schedule's smallest), asks for that (DC: a negative
//! target current at its target voltage; AC: a negative present power),
//! and stops once it gave what it set out to. Dynamic: the EV offers what
//! it has left to give as a negative `EVMinimumEnergyRequest`; while it
//! does and [`super::SeccBpt::discharge_demand`] is set, the SECC asks
//! that power back (DC: a negative current; AC: a negative target active
//! power) within both sides' limits, else it charges the car. Both sides
//! count the energy each way apart ([`super::Secc::discharged_wh`]); an AC
//! BPT SECC counts from the EV's reported power, not its meter, which
//! counts one way.
//!
//! SECC rules (ISO 15118-20 §8.3.5, the response codes of each message): a
//! request not allowed in the state (or a `ChargeProgress` not allowed
//! there) is answered with its response carrying `FAILED_SequenceError`; a
//! SessionID other than the session's with `FAILED_UnknownSession`; PnC
//! selected in AuthorizationReq of an SECC without
//! [`super::SeccConfig::pnc`], or a mode whose parameters are not the
//! selected one's, with `WARNING_AuthorizationSelectionInvalid`;
//! an EIM authorization refused with `WARNING_EIMAuthorizationFailure`;
//! ServiceDetail of a service not offered (BPT without
//! [`SeccConfig::bpt`], a VAS not in [`SeccConfig::vas`]) with
//! `FAILED_ServiceIDInvalid`; ServiceSelection
//! of a service or parameter set not offered (energy or VAS), or of a VAS
//! twice, with `FAILED_ServiceSelectionInvalid`; charge parameters, a ScheduleExchange
//! or a charge loop of the other control mode, or of the other direction
//! (BPT parameters in a session that is not BPT, or the reverse), and a
//! `BPT_ChannelSelection` in a session that is not BPT, with
//! `FAILED_WrongChargeParameter`; a PowerDelivery(Start) naming a schedule
//! tuple not offered with `FAILED_ScheduleSelectionInvalid`, and one whose
//! EVPowerProfile asks for more than the tuple's highest power or gives
//! back more than both sides' discharge limits (anything, outside BPT)
//! with `FAILED_EVPowerProfileInvalid`; `Standby` with
//! `WARNING_StandbyNotAllowed`, `ScheduleRenegotiation` with
//! `FAILED_ScheduleRenegotiation`, SessionStop(ServiceRenegotiation) without
//! [`SeccConfig::service_renegotiation`] with
//! `FAILED_NoServiceRenegotiationSupported`; an emergency stop with `FAILED`
//! (and `EVSENotification=Terminate` where the response has an EVSEStatus);
//! a DC isolation fault (CableCheck, PreCharge, ChargeLoop) with `FAILED`.
//! After any `FAILED*` or `WARNING*` answer the session ends. The requests
//! these machines do not take (MeteringConfirmation, VehicleCheckIn/Out and the WPT/ACDP ones) end the session as a sequence
//! error without an answer.
//!
//! -20 messages have no EVSE status code of their own for an emergency
//! stop or an isolation fault: the EVCC ends on the `FAILED` answer with
//! [`EndReason::Failed`]. In the charge loop, `EVSENotification=Terminate`
//! (or `Pause`) with `OK` makes the EVCC stop (PowerDelivery(Stop), then
//! SessionStop(Terminate | Pause)).
//!
//! A PowerDelivery(Start) with `EVProcessing=Ongoing` (an EV not ready,
//! its profile still to come) is answered `OK` and starts nothing: the
//! EV sends it again, `Finished` when it is ready (Josev's EVCC does so
//! at random).
//!
//! SessionStop(Pause) ends both sides with [`EndReason::Paused`]; a later
//! connection resumes with [`SeccConfig::resume`] and [`EvccConfig::resume`]
//! (SessionSetupRes `OK_OldSessionJoined`, same SessionID, the sequence
//! from AuthorizationSetup again).
//!
//! Timers: the EVCC's `V2G_EVCC_Msg_Timeout` of -20 ([`super::msg_timeout`]
//! with [`Standard::Iso15118_20`]: 2 s, ServiceDetail 5 s, the charge loops
//! [`super::TimerConfig::charge_loop`], 0.5 s), ongoing (60 s), cable check
//! (40 s), pre-charge ([`super::TimerConfig::iso20_pre_charge`], 10 s); the
//! SECC's sequence timer (60 s, [`super::TimerConfig::charge_loop_sequence`]
//! after a charge-loop answer, 0.5 s) and communication setup (20 s).
//!
//! Energy: DC integrates the present voltage × current between two
//! DC_ChargeLoop answers on both sides; AC integrates the EV's present
//! active power between two AC_ChargeLoop requests (SECC) and what the EVCC
//! draws (its maximum power, capped by the schedule's power and the EVSE's
//! target) between two answers (EVCC).

use std::time::{Duration, Instant};

use crate::grammar::{Base64Binary, HexBinary};
use crate::messages::iso20 as cm;
use crate::messages::iso20_ac as ac;
use crate::messages::iso20_dc as dc;
use crate::messages::xmldsig;
use crate::pki::{self, Cert, CertError, LeafUsage, VerifyingKey};
use crate::v2gtp::PayloadType;

use super::common::{awaited, failed, request_session_id, screen, setup_session, Codes, Pacing};
use super::pnc::iso20_installation_fragment;
use super::{scale, unscale};
use super::{
    Authorization, Contract, ContractStatus, ControlMode, Core, EndReason, Energy, EvNotice,
    EvStatus, EvccConfig, EvseRequest, EvseStatus, Iso20CertificateInstallation, Isolation,
    MsgKind, ScheduleTuple, SeccBpt, SeccConfig, Standard, StopKind, TimerKind,
};

/// Service id of the DC energy transfer service.
pub const SERVICE_DC: u16 = 2;
/// Service id of the AC energy transfer service.
pub const SERVICE_AC: u16 = 1;
/// Service id of the AC bidirectional power transfer service.
pub const SERVICE_AC_BPT: u16 = 5;
/// Service id of the DC bidirectional power transfer service.
pub const SERVICE_DC_BPT: u16 = 6;

/// The energy transfer service of a DC (`dc`) or AC session, bidirectional
/// (`bpt`) or not.
fn service(dc: bool, bpt: bool) -> u16 {
    match (dc, bpt) {
        (true, false) => SERVICE_DC,
        (true, true) => SERVICE_DC_BPT,
        (false, false) => SERVICE_AC,
        (false, true) => SERVICE_AC_BPT,
    }
}

/// A request of the -20 schemas the machines take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Request {
    /// SessionSetupReq.
    SessionSetup,
    /// AuthorizationSetupReq.
    AuthorizationSetup,
    /// AuthorizationReq.
    Authorization,
    /// ServiceDiscoveryReq.
    ServiceDiscovery,
    /// ServiceDetailReq.
    ServiceDetail,
    /// ServiceSelectionReq.
    ServiceSelection,
    /// AC_ChargeParameterDiscoveryReq.
    AcChargeParameterDiscovery,
    /// DC_ChargeParameterDiscoveryReq.
    DcChargeParameterDiscovery,
    /// ScheduleExchangeReq.
    ScheduleExchange,
    /// DC_CableCheckReq.
    DcCableCheck,
    /// DC_PreChargeReq.
    DcPreCharge,
    /// PowerDeliveryReq.
    PowerDelivery,
    /// AC_ChargeLoopReq.
    AcChargeLoop,
    /// DC_ChargeLoopReq.
    DcChargeLoop,
    /// DC_WeldingDetectionReq.
    DcWeldingDetection,
    /// SessionStopReq.
    SessionStop,
    /// CertificateInstallationReq (Plug & Charge).
    CertificateInstallation,
}

impl Request {
    /// Every request.
    pub const ALL: [Request; 17] = [
        Request::SessionSetup,
        Request::AuthorizationSetup,
        Request::Authorization,
        Request::ServiceDiscovery,
        Request::ServiceDetail,
        Request::ServiceSelection,
        Request::AcChargeParameterDiscovery,
        Request::DcChargeParameterDiscovery,
        Request::ScheduleExchange,
        Request::DcCableCheck,
        Request::DcPreCharge,
        Request::PowerDelivery,
        Request::AcChargeLoop,
        Request::DcChargeLoop,
        Request::DcWeldingDetection,
        Request::SessionStop,
        Request::CertificateInstallation,
    ];

    fn msg_kind(self) -> MsgKind {
        match self {
            Request::SessionSetup => MsgKind::SessionSetup,
            Request::AuthorizationSetup => MsgKind::AuthorizationSetup,
            Request::Authorization => MsgKind::Authorization,
            Request::ServiceDiscovery => MsgKind::ServiceDiscovery,
            Request::ServiceDetail => MsgKind::ServiceDetail,
            Request::ServiceSelection => MsgKind::ServiceSelection,
            Request::AcChargeParameterDiscovery | Request::DcChargeParameterDiscovery => {
                MsgKind::ChargeParameterDiscovery
            }
            Request::ScheduleExchange => MsgKind::ScheduleExchange,
            Request::DcCableCheck => MsgKind::CableCheck,
            Request::DcPreCharge => MsgKind::PreCharge,
            Request::PowerDelivery => MsgKind::PowerDelivery,
            Request::AcChargeLoop | Request::DcChargeLoop => MsgKind::ChargeLoop,
            Request::DcWeldingDetection => MsgKind::WeldingDetection,
            Request::SessionStop => MsgKind::SessionStop,
            Request::CertificateInstallation => MsgKind::Certificate,
        }
    }

    /// Whether this request belongs to the DC schema (`Some(true)`), the
    /// AC schema (`Some(false)`) or CommonMessages (`None`).
    fn schema_dc(self) -> Option<bool> {
        match self {
            Request::AcChargeParameterDiscovery | Request::AcChargeLoop => Some(false),
            Request::DcChargeParameterDiscovery
            | Request::DcCableCheck
            | Request::DcPreCharge
            | Request::DcChargeLoop
            | Request::DcWeldingDetection => Some(true),
            _ => None,
        }
    }
}

/// A -20 message of one of the three schemas the machines speak.
#[derive(Debug, Clone, PartialEq)]
pub enum Wire {
    /// CommonMessages (payload type `0x8002`).
    Common(cm::Message),
    /// DC (payload type `0x8004`).
    Dc(dc::Message),
    /// AC (payload type `0x8003`).
    Ac(ac::Message),
}

impl Wire {
    /// Decodes an EXI payload of a -20 payload type (and CommonMessages in
    /// `0x8001`, the handshake's, where one EV sends them).
    ///
    /// # Errors
    ///
    /// The payload type is not one of the three (or `0x8001`), or the
    /// bytes are no message of its schema.
    pub fn decode(payload_type: PayloadType, exi: &[u8]) -> Result<Wire, String> {
        match payload_type {
            // Josev's EVCC sends its CertificateInstallationReq in the
            // handshake's `0x8001`: CommonMessages taken there too
            PayloadType::ISO20_MAIN | PayloadType::EXI => cm::Message::decode(exi)
                .map(Wire::Common)
                .map_err(|e| e.to_string()),
            PayloadType::ISO20_DC => dc::Message::decode(exi)
                .map(Wire::Dc)
                .map_err(|e| e.to_string()),
            PayloadType::ISO20_AC => ac::Message::decode(exi)
                .map(Wire::Ac)
                .map_err(|e| e.to_string()),
            other => Err(format!(
                "V2GTP payload type {:#06x} is not a -20 message stream",
                other.0
            )),
        }
    }

    /// The payload type and EXI bytes of this message.
    ///
    /// # Errors
    ///
    /// A value the codec cannot encode.
    pub fn encode(&self) -> Result<(PayloadType, Vec<u8>), String> {
        let mut out = Vec::new();
        let pt = match self {
            Wire::Common(m) => {
                m.encode(&mut out).map_err(|e| e.to_string())?;
                PayloadType::ISO20_MAIN
            }
            Wire::Dc(m) => {
                m.encode(&mut out).map_err(|e| e.to_string())?;
                PayloadType::ISO20_DC
            }
            Wire::Ac(m) => {
                m.encode(&mut out).map_err(|e| e.to_string())?;
                PayloadType::ISO20_AC
            }
        };
        Ok((pt, out))
    }

    /// The element name (`SessionSetupReq`, `DC_ChargeLoopRes`...).
    pub fn name(&self) -> &'static str {
        match self {
            Wire::Common(m) => m.name(),
            Wire::Dc(m) => m.name(),
            Wire::Ac(m) => m.name(),
        }
    }

    /// The request this message is and its header, if it is one the machines take.
    fn request(&self) -> Option<(Request, &cm::MessageHeaderType)> {
        use cm::Message as C;
        Some(match self {
            Wire::Common(C::SessionSetupReq(r)) => (Request::SessionSetup, &r.header),
            Wire::Common(C::AuthorizationSetupReq(r)) => (Request::AuthorizationSetup, &r.header),
            Wire::Common(C::AuthorizationReq(r)) => (Request::Authorization, &r.header),
            Wire::Common(C::ServiceDiscoveryReq(r)) => (Request::ServiceDiscovery, &r.header),
            Wire::Common(C::ServiceDetailReq(r)) => (Request::ServiceDetail, &r.header),
            Wire::Common(C::ServiceSelectionReq(r)) => (Request::ServiceSelection, &r.header),
            Wire::Common(C::ScheduleExchangeReq(r)) => (Request::ScheduleExchange, &r.header),
            Wire::Common(C::PowerDeliveryReq(r)) => (Request::PowerDelivery, &r.header),
            Wire::Common(C::SessionStopReq(r)) => (Request::SessionStop, &r.header),
            Wire::Common(C::CertificateInstallationReq(r)) => {
                (Request::CertificateInstallation, &r.header)
            }
            Wire::Ac(ac::Message::AcChargeParameterDiscoveryReq(r)) => {
                (Request::AcChargeParameterDiscovery, &r.header)
            }
            Wire::Ac(ac::Message::AcChargeLoopReq(r)) => (Request::AcChargeLoop, &r.header),
            Wire::Dc(dc::Message::DcChargeParameterDiscoveryReq(r)) => {
                (Request::DcChargeParameterDiscovery, &r.header)
            }
            Wire::Dc(dc::Message::DcCableCheckReq(r)) => (Request::DcCableCheck, &r.header),
            Wire::Dc(dc::Message::DcPreChargeReq(r)) => (Request::DcPreCharge, &r.header),
            Wire::Dc(dc::Message::DcChargeLoopReq(r)) => (Request::DcChargeLoop, &r.header),
            Wire::Dc(dc::Message::DcWeldingDetectionReq(r)) => {
                (Request::DcWeldingDetection, &r.header)
            }
            _ => return None,
        })
    }

    /// The response's header and code, if this is a response of the machines.
    fn response(&self) -> Option<(Request, &cm::MessageHeaderType, cm::ResponseCodeType)> {
        use cm::Message as C;
        macro_rules! r {
            ($req:expr, $r:expr) => {
                ($req, &$r.header, $r.response_code)
            };
        }
        Some(match self {
            Wire::Common(C::SessionSetupRes(r)) => r!(Request::SessionSetup, r),
            Wire::Common(C::AuthorizationSetupRes(r)) => r!(Request::AuthorizationSetup, r),
            Wire::Common(C::AuthorizationRes(r)) => r!(Request::Authorization, r),
            Wire::Common(C::ServiceDiscoveryRes(r)) => r!(Request::ServiceDiscovery, r),
            Wire::Common(C::ServiceDetailRes(r)) => r!(Request::ServiceDetail, r),
            Wire::Common(C::ServiceSelectionRes(r)) => r!(Request::ServiceSelection, r),
            Wire::Common(C::ScheduleExchangeRes(r)) => r!(Request::ScheduleExchange, r),
            Wire::Common(C::PowerDeliveryRes(r)) => r!(Request::PowerDelivery, r),
            Wire::Common(C::SessionStopRes(r)) => r!(Request::SessionStop, r),
            Wire::Common(C::CertificateInstallationRes(r)) => {
                r!(Request::CertificateInstallation, r)
            }
            Wire::Ac(ac::Message::AcChargeParameterDiscoveryRes(r)) => {
                r!(Request::AcChargeParameterDiscovery, r)
            }
            Wire::Ac(ac::Message::AcChargeLoopRes(r)) => r!(Request::AcChargeLoop, r),
            Wire::Dc(dc::Message::DcChargeParameterDiscoveryRes(r)) => {
                r!(Request::DcChargeParameterDiscovery, r)
            }
            Wire::Dc(dc::Message::DcCableCheckRes(r)) => r!(Request::DcCableCheck, r),
            Wire::Dc(dc::Message::DcPreChargeRes(r)) => r!(Request::DcPreCharge, r),
            Wire::Dc(dc::Message::DcChargeLoopRes(r)) => r!(Request::DcChargeLoop, r),
            Wire::Dc(dc::Message::DcWeldingDetectionRes(r)) => r!(Request::DcWeldingDetection, r),
            _ => return None,
        })
    }
}

impl Codes for cm::ResponseCodeType {
    const UNKNOWN_SESSION: Self = cm::ResponseCodeType::FailedUnknownSession;
    const SEQUENCE_ERROR: Self = cm::ResponseCodeType::FailedSequenceError;
    const FAILED: Self = cm::ResponseCodeType::FAILED;
    /// -20: the `WARNING_*` codes also mean the request was not carried out.
    fn is_failed(self) -> bool {
        !matches!(
            self,
            cm::ResponseCodeType::OK
                | cm::ResponseCodeType::OkCertificateExpiresSoon
                | cm::ResponseCodeType::OkNewSessionEstablished
                | cm::ResponseCodeType::OkOldSessionJoined
                | cm::ResponseCodeType::OkPowerToleranceConfirmed
        )
    }
}

fn rn(x: f64) -> cm::RationalNumberType {
    let (value, exponent) = scale(x);
    cm::RationalNumberType { exponent, value }
}

fn rv(r: &cm::RationalNumberType) -> f64 {
    unscale(r.value, r.exponent)
}

fn is_ongoing(p: cm::ProcessingType) -> bool {
    p != cm::ProcessingType::Finished
}

/// The 8-byte SessionID -20 requires: shorter ids left-padded with zeros,
/// longer ones cut to their last 8 bytes.
fn id8(id: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 8usize.saturating_sub(id.len())];
    out.extend_from_slice(&id[id.len().saturating_sub(8)..]);
    out
}

fn header(session_id: &[u8], time_stamp: u64) -> cm::MessageHeaderType {
    cm::MessageHeaderType {
        session_id: HexBinary(id8(session_id)),
        time_stamp,
        signature: None,
    }
}

/// The value of `ControlMode` in a ServiceDetail parameter set.
fn control_mode_value(m: ControlMode) -> i32 {
    match m {
        ControlMode::Scheduled => 1,
        ControlMode::Dynamic => 2,
    }
}

fn int_param(name: &str, v: i32) -> cm::ParameterType {
    cm::ParameterType {
        name: name.into(),
        bool_value: None,
        byte_value: None,
        short_value: None,
        int_value: Some(v),
        rational_number: None,
        finite_string: None,
    }
}

/// The integer a parameter carries, in any of its integer or rational forms.
fn param_value(p: &cm::ParameterType) -> Option<f64> {
    p.int_value
        .map(f64::from)
        .or(p.short_value.map(f64::from))
        .or(p.byte_value.map(f64::from))
        .or(p.rational_number.as_ref().map(rv))
}

/// The parameter set id of `mode` in the SECC's ServiceDetail.
fn parameter_set_id(m: ControlMode) -> u16 {
    control_mode_value(m) as u16
}

/// The highest power of a tuple (W).
fn pmax(t: &ScheduleTuple) -> f64 {
    t.entries.iter().map(|(_, p)| *p).fold(0.0, f64::max)
}

/// DC_ChargeParameterDiscoveryRes: the EVSE `$e`'s charge limits,
/// as `$m::$ty` (the unidirectional mode or its BPT sibling, which repeats
/// those fields), then the fields that differ.
macro_rules! dc_cpd_res {
    ($m:ident::$ty:ident, $e:expr $(, $f:ident: $v:expr)* $(,)?) => {
        $m::$ty {
            evse_maximum_charge_power: rn($e.max_power),
            evse_minimum_charge_power: rn(0.0),
            evse_maximum_charge_current: rn($e.max_current),
            evse_minimum_charge_current: rn($e.min_current),
            evse_maximum_voltage: rn($e.max_voltage),
            evse_minimum_voltage: rn($e.min_voltage),
            evse_power_ramp_limitation: None,
            $($f: $v,)*
        }
    };
}

/// AC_ChargeParameterDiscoveryRes: the EVSE `$e`'s charge limits,
/// as `$m::$ty` (the unidirectional mode or its BPT sibling, which repeats
/// those fields), then the fields that differ.
macro_rules! ac_cpd_res {
    ($m:ident::$ty:ident, $e:expr $(, $f:ident: $v:expr)* $(,)?) => {
        $m::$ty {
            evse_maximum_charge_power: rn($e.max_power),
            evse_maximum_charge_power_l2: None,
            evse_maximum_charge_power_l3: None,
            evse_minimum_charge_power: rn(0.0),
            evse_minimum_charge_power_l2: None,
            evse_minimum_charge_power_l3: None,
            evse_nominal_frequency: rn(50.0),
            maximum_power_asymmetry: None,
            evse_power_ramp_limitation: None,
            evse_present_active_power: None,
            evse_present_active_power_l2: None,
            evse_present_active_power_l3: None,
            $($f: $v,)*
        }
    };
}

/// DC_ChargeLoopRes, dynamic: the EVSE `$e`'s charge limits,
/// as `$m::$ty` (the unidirectional mode or its BPT sibling, which repeats
/// those fields), then the fields that differ.
macro_rules! dc_dynamic_res {
    ($m:ident::$ty:ident, $e:expr $(, $f:ident: $v:expr)* $(,)?) => {
        $m::$ty {
            departure_time: None,
            minimum_soc: None,
            target_soc: None,
            ack_max_delay: None,
            evse_maximum_charge_power: rn($e.max_power),
            evse_minimum_charge_power: rn(0.0),
            evse_maximum_charge_current: rn($e.max_current),
            evse_maximum_voltage: rn($e.max_voltage),
            $($f: $v,)*
        }
    };
}

/// DC_ChargeLoopRes, scheduled: the EVSE `$e`'s charge limits,
/// as `$m::$ty` (the unidirectional mode or its BPT sibling, which repeats
/// those fields), then the fields that differ.
macro_rules! dc_scheduled_res {
    ($m:ident::$ty:ident, $e:expr $(, $f:ident: $v:expr)* $(,)?) => {
        $m::$ty {
            evse_maximum_charge_power: Some(rn($e.max_power)),
            evse_minimum_charge_power: None,
            evse_maximum_charge_current: Some(rn($e.max_current)),
            evse_maximum_voltage: Some(rn($e.max_voltage)),
            $($f: $v,)*
        }
    };
}

/// AC_ChargeLoopRes, both control modes: the target power `$target`
/// (`rn(W)`, scheduled `Some(rn(W))`),
/// as `$m::$ty` (the unidirectional mode or its BPT sibling, which repeats
/// those fields), then the fields that differ.
macro_rules! ac_loop_res {
    ($m:ident::$ty:ident, $target:expr $(, $f:ident: $v:expr)* $(,)?) => {
        $m::$ty {
            evse_target_active_power: $target,
            evse_target_active_power_l2: None,
            evse_target_active_power_l3: None,
            evse_target_reactive_power: None,
            evse_target_reactive_power_l2: None,
            evse_target_reactive_power_l3: None,
            evse_present_active_power: None,
            evse_present_active_power_l2: None,
            evse_present_active_power_l3: None,
            $($f: $v,)*
        }
    };
}

/// DC_ChargeParameterDiscoveryReq: the EV `$ev`'s charge limits,
/// as `$m::$ty` (the unidirectional mode or its BPT sibling, which repeats
/// those fields), then the fields that differ.
macro_rules! dc_cpd_req {
    ($m:ident::$ty:ident, $ev:expr $(, $f:ident: $v:expr)* $(,)?) => {
        $m::$ty {
            ev_maximum_charge_power: rn($ev.max_power),
            ev_minimum_charge_power: rn(0.0),
            ev_maximum_charge_current: rn($ev.max_current),
            ev_minimum_charge_current: rn(0.0),
            ev_maximum_voltage: rn($ev.max_voltage),
            ev_minimum_voltage: rn($ev.max_voltage.min(200.0)),
            target_soc: Some(100),
            $($f: $v,)*
        }
    };
}

/// AC_ChargeParameterDiscoveryReq: the EV `$ev`'s charge limits,
/// as `$m::$ty` (the unidirectional mode or its BPT sibling, which repeats
/// those fields), then the fields that differ.
macro_rules! ac_cpd_req {
    ($m:ident::$ty:ident, $ev:expr $(, $f:ident: $v:expr)* $(,)?) => {
        $m::$ty {
            ev_maximum_charge_power: rn($ev.max_power),
            ev_maximum_charge_power_l2: None,
            ev_maximum_charge_power_l3: None,
            ev_minimum_charge_power: rn(0.0),
            ev_minimum_charge_power_l2: None,
            ev_minimum_charge_power_l3: None,
            $($f: $v,)*
        }
    };
}

/// DC_ChargeLoopReq, dynamic: the EV `$ev`'s limits and energy requests,
/// as `$m::$ty` (the unidirectional mode or its BPT sibling, which repeats
/// those fields), then the fields that differ.
macro_rules! dc_dynamic_req {
    ($m:ident::$ty:ident, $ev:expr, $energy:expr, $departure:expr $(, $f:ident: $v:expr)* $(,)?) => {
        $m::$ty {
            departure_time: Some($departure),
            ev_target_energy_request: $energy.clone(),
            ev_maximum_energy_request: $energy.clone(),
            ev_maximum_charge_power: rn($ev.max_power),
            ev_minimum_charge_power: rn(0.0),
            ev_maximum_charge_current: rn($ev .target_current .min($ev.max_current)),
            ev_maximum_voltage: rn($ev.target_voltage.min($ev.max_voltage)),
            ev_minimum_voltage: rn($ev.max_voltage.min(200.0)),
            $($f: $v,)*
        }
    };
}

/// DC_ChargeLoopReq, scheduled: the EV `$ev`'s limits and target,
/// as `$m::$ty` (the unidirectional mode or its BPT sibling, which repeats
/// those fields), then the fields that differ.
macro_rules! dc_scheduled_req {
    ($m:ident::$ty:ident, $ev:expr, $energy:expr $(, $f:ident: $v:expr)* $(,)?) => {
        $m::$ty {
            ev_target_energy_request: Some($energy.clone()),
            ev_maximum_energy_request: None,
            ev_target_voltage: rn($ev.target_voltage),
            ev_maximum_charge_power: Some(rn($ev.max_power)),
            ev_minimum_charge_power: None,
            ev_maximum_charge_current: Some(rn($ev.max_current)),
            ev_maximum_voltage: Some(rn($ev.max_voltage)),
            ev_minimum_voltage: None,
            $($f: $v,)*
        }
    };
}

/// AC_ChargeLoopReq, dynamic: the EV `$ev`'s limits, energy requests and present power,
/// as `$m::$ty` (the unidirectional mode or its BPT sibling, which repeats
/// those fields), then the fields that differ.
macro_rules! ac_dynamic_req {
    ($m:ident::$ty:ident, $ev:expr, $energy:expr, $departure:expr, $power:expr $(, $f:ident: $v:expr)* $(,)?) => {
        $m::$ty {
            departure_time: Some($departure),
            ev_target_energy_request: $energy.clone(),
            ev_maximum_energy_request: $energy.clone(),
            ev_maximum_charge_power: rn($ev.max_power),
            ev_maximum_charge_power_l2: None,
            ev_maximum_charge_power_l3: None,
            ev_minimum_charge_power: rn(0.0),
            ev_minimum_charge_power_l2: None,
            ev_minimum_charge_power_l3: None,
            ev_present_active_power: $power.clone(),
            ev_present_active_power_l2: None,
            ev_present_active_power_l3: None,
            ev_present_reactive_power: rn(0.0),
            ev_present_reactive_power_l2: None,
            ev_present_reactive_power_l3: None,
            $($f: $v,)*
        }
    };
}

/// AC_ChargeLoopReq, scheduled: the EV `$ev`'s limits and present power,
/// as `$m::$ty` (the unidirectional mode or its BPT sibling, which repeats
/// those fields), then the fields that differ.
macro_rules! ac_scheduled_req {
    ($m:ident::$ty:ident, $ev:expr, $energy:expr, $power:expr $(, $f:ident: $v:expr)* $(,)?) => {
        $m::$ty {
            ev_target_energy_request: Some($energy.clone()),
            ev_maximum_energy_request: None,
            ev_maximum_charge_power: Some(rn($ev.max_power)),
            ev_maximum_charge_power_l2: None,
            ev_maximum_charge_power_l3: None,
            ev_minimum_charge_power: None,
            ev_minimum_charge_power_l2: None,
            ev_minimum_charge_power_l3: None,
            ev_present_active_power: $power.clone(),
            ev_present_active_power_l2: None,
            ev_present_active_power_l3: None,
            ev_present_reactive_power: None,
            ev_present_reactive_power_l2: None,
            ev_present_reactive_power_l3: None,
            $($f: $v,)*
        }
    };
}

// ---- SECC ----

/// Where the SECC stands: the requests it takes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SeccState {
    /// SessionSetupReq.
    SessionSetup,
    /// AuthorizationSetupReq.
    AuthorizationSetup,
    /// AuthorizationReq (again while `Ongoing`), or CertificateInstallationReq
    /// before it.
    Authorization,
    /// ServiceDiscoveryReq.
    ServiceDiscovery,
    /// ServiceDetailReq or ServiceSelectionReq.
    ServiceSelection,
    /// AC/DC_ChargeParameterDiscoveryReq.
    ChargeParameterDiscovery,
    /// ScheduleExchangeReq (again while `Ongoing`).
    ScheduleExchange,
    /// DC_CableCheckReq (again while `Ongoing`).
    CableCheck,
    /// DC_PreChargeReq or PowerDeliveryReq (DC).
    PreCharge,
    /// PowerDeliveryReq (AC, after ScheduleExchange).
    PowerDelivery,
    /// AC/DC_ChargeLoopReq or PowerDeliveryReq(Stop).
    ChargeLoop,
    /// DC_WeldingDetectionReq (DC) or SessionStopReq.
    PostCharge,
    /// Nothing: the session is over.
    Ended,
}

impl SeccState {
    /// Whether `req` is allowed here in a DC (`dc`) or AC session.
    pub fn allows(self, req: Request, dc: bool) -> bool {
        use Request as R;
        use SeccState as S;
        if req.schema_dc().is_some_and(|d| d != dc) {
            return false;
        }
        matches!(
            (self, req),
            (S::SessionSetup, R::SessionSetup)
                | (S::AuthorizationSetup, R::AuthorizationSetup)
                | (
                    S::Authorization,
                    R::Authorization | R::CertificateInstallation
                )
                | (S::ServiceDiscovery, R::ServiceDiscovery)
                | (S::ServiceSelection, R::ServiceDetail | R::ServiceSelection)
                | (
                    S::ChargeParameterDiscovery,
                    R::AcChargeParameterDiscovery | R::DcChargeParameterDiscovery
                )
                | (S::ScheduleExchange, R::ScheduleExchange)
                | (S::CableCheck, R::DcCableCheck)
                | (S::PreCharge, R::DcPreCharge | R::PowerDelivery)
                | (S::PowerDelivery, R::PowerDelivery)
                | (
                    S::ChargeLoop,
                    R::AcChargeLoop | R::DcChargeLoop | R::PowerDelivery
                )
                | (S::PostCharge, R::DcWeldingDetection | R::SessionStop)
        )
    }
}

/// The SECC's side of an ISO 15118-20 session, EIM or PnC (after the handshake;
/// made by [`super::Secc`]). See the [module docs](self) for the sequence and codes.
#[derive(Debug)]
pub struct Secc {
    pub(crate) core: Core,
    config: SeccConfig,
    dc: bool,
    state: SeccState,
    session_id: Option<Vec<u8>>,
    evcc_id: String,
    control: Option<ControlMode>,
    authorization: Option<Authorization>,
    auth_asked: bool,
    /// PnC: the contract of the first AuthorizationReq that verified (its
    /// leaf's key), and the backend's verdict on it.
    contract: Option<(VerifyingKey, String)>,
    /// PnC: the mode of that request; every repeat must be the same.
    pnc_mode: Option<cm::PnCAReqAuthorizationModeType>,
    contract_status: Option<ContractStatus>,
    contract_asked: bool,
    /// PnC: a CertificateInstallationReq waits for the backend's response.
    installing: bool,
    schedules: Option<Vec<ScheduleTuple>>,
    schedules_asked: bool,
    offered: Vec<ScheduleTuple>,
    tuple_id: Option<u32>,
    cable_check_started: bool,
    /// The EV's present active power of the last AC_ChargeLoopReq (W).
    ev_power: f64,
    energy: Energy,
    /// BPT: the service selected is DC_BPT or AC_BPT.
    bpt: bool,
    /// The value-added services the EV selected, `(ServiceID, ParameterSetID)`.
    vas: Vec<(u16, u16)>,
    /// BPT: the EV's discharge limits of ChargeParameterDiscovery (W, A).
    ev_discharge: (f64, f64),
    /// BPT: energy taken back from the EV.
    discharged: Energy,
    /// BPT, AC dynamic: the last loop request offered energy (its
    /// EVMinimumEnergyRequest below zero).
    ac_offer: bool,
    /// ServiceRenegotiation asked of the EV in the next loop answer.
    renegotiation: bool,
    /// Service renegotiations done.
    renegotiations: u32,
    loops: u32,
    start: Instant,
    now: Instant,
}

impl Secc {
    pub(crate) fn new(config: SeccConfig, core: Core, now: Instant, dc: bool) -> Self {
        let mut s = Self {
            core,
            config,
            dc,
            state: SeccState::SessionSetup,
            session_id: None,
            evcc_id: String::new(),
            control: None,
            authorization: None,
            auth_asked: false,
            contract: None,
            pnc_mode: None,
            contract_status: None,
            contract_asked: false,
            installing: false,
            schedules: None,
            schedules_asked: false,
            offered: Vec::new(),
            tuple_id: None,
            cable_check_started: false,
            ev_power: 0.0,
            energy: Energy::default(),
            bpt: false,
            vas: Vec::new(),
            ev_discharge: (0.0, 0.0),
            discharged: Energy::default(),
            ac_offer: false,
            renegotiation: false,
            renegotiations: 0,
            loops: 0,
            start: now,
            now,
        };
        s.core.arm_sequence(now, &s.config);
        s
    }

    /// Where the session stands.
    pub fn state(&self) -> SeccState {
        self.state
    }

    /// Whether the session is DC (else AC).
    pub fn is_dc(&self) -> bool {
        self.dc
    }

    /// The control mode the EV selected, after ServiceSelection.
    pub fn control_mode(&self) -> Option<ControlMode> {
        self.control
    }

    /// The schedule tuple of PowerDelivery(Start) (scheduled mode).
    pub fn schedule_tuple_id(&self) -> Option<u32> {
        self.tuple_id
    }

    /// The EVCCID from SessionSetupReq.
    pub fn evcc_id(&self) -> &str {
        &self.evcc_id
    }

    /// Charge-loop requests answered.
    pub fn charge_loops(&self) -> u32 {
        self.loops
    }

    pub(crate) fn session_id(&self) -> Option<&[u8]> {
        self.session_id.as_deref()
    }

    pub(crate) fn evse(&self) -> &EvseStatus {
        &self.config.evse
    }

    pub(crate) fn set_evse(&mut self, status: EvseStatus) {
        self.config.evse = status;
    }

    pub(crate) fn energy_wh(&self) -> f64 {
        self.energy.wh
    }

    pub(crate) fn discharged_wh(&self) -> f64 {
        self.discharged.wh
    }

    /// Whether the EV selected the BPT service (DC_BPT or AC_BPT).
    pub fn is_bpt(&self) -> bool {
        self.bpt
    }

    /// Service renegotiations the EV came back from
    /// (SessionStop(ServiceRenegotiation), then ServiceDiscovery).
    pub fn service_renegotiations(&self) -> u32 {
        self.renegotiations
    }

    /// With [`SeccConfig::service_renegotiation`], in the charge loop: the
    /// next loop answer carries `EVSENotification=ServiceRenegotiation`.
    pub(crate) fn request_renegotiation(&mut self) {
        if self.state == SeccState::ChargeLoop && self.config.service_renegotiation {
            self.renegotiation = true;
        }
    }

    /// The value-added services the EV selected, `(ServiceID,
    /// ParameterSetID)`, after ServiceSelection.
    pub fn selected_vas(&self) -> &[(u16, u16)] {
        &self.vas
    }

    /// The offered value-added service of this id.
    fn offered_vas(&self, id: u16) -> Option<&super::Vas> {
        self.config.vas.iter().find(|v| v.service_id == id)
    }

    /// The BPT limits offered, when the SECC offers BPT.
    fn bpt_offer(&self) -> Option<&SeccBpt> {
        self.config.bpt.as_ref()
    }

    /// BPT: the highest discharge power and current of both sides.
    fn discharge_limits(&self) -> (f64, f64) {
        let (p, i) = self.bpt_offer().map_or((0.0, 0.0), |b| {
            (b.max_discharge_power, b.max_discharge_current)
        });
        (p.min(self.ev_discharge.0), i.min(self.ev_discharge.1))
    }

    /// Counts what flowed since the last loop: `power` W into the EV
    /// (negative: out of it).
    fn flowed(&mut self, now: Instant, power: f64) {
        self.energy.add(now, power.max(0.0), 1.0);
        self.discharged.add(now, (-power).max(0.0), 1.0);
    }

    pub(crate) fn handle_authorization(&mut self, _now: Instant, decision: Authorization) {
        self.authorization = Some(decision);
    }

    pub(crate) fn handle_contract_status(&mut self, _now: Instant, status: ContractStatus) {
        self.contract_status = Some(status);
    }

    /// Plug & Charge: the eMAID (the contract certificate's CN) of the
    /// contract whose chain and signature verified.
    pub fn contract_emaid(&self) -> Option<&str> {
        self.contract.as_ref().map(|(_, e)| e.as_str())
    }

    pub(crate) fn handle_schedules(&mut self, _now: Instant, schedules: Vec<ScheduleTuple>) {
        self.schedules = Some(schedules);
    }

    /// PnC: the backend's CertificateInstallationRes, sent under the SECC's
    /// header with `EVSEProcessing=Finished`; `None` is
    /// `WARNING_NoCertificateAvailable`.
    pub(crate) fn handle_certificate_installation(
        &mut self,
        now: Instant,
        installation: Option<Iso20CertificateInstallation>,
    ) {
        if !std::mem::take(&mut self.installing) || self.core.is_ended() {
            return;
        }
        self.now = now;
        let req = Request::CertificateInstallation;
        let Some(i) = installation else {
            return self.fail_code(req, cm::ResponseCodeType::WarningNoCertificateAvailable);
        };
        let mut header = self.head();
        header.signature = Some(i.signature);
        self.send(Wire::Common(cm::Message::CertificateInstallationRes(
            Box::new(cm::CertificateInstallationResType {
                header,
                response_code: cm::ResponseCodeType::OK,
                evse_processing: cm::ProcessingType::Finished,
                cps_certificate_chain: i.cps_chain,
                signed_installation_data: i.data,
                remaining_contract_certificate_chains: i.remaining,
            }),
        )));
        if !self.core.is_ended() {
            self.core.arm_sequence(now, &self.config);
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.core.expire(now) {
            self.state = SeccState::Ended;
        }
    }

    fn stamp(&self) -> u64 {
        self.config.unix_time + self.now.saturating_duration_since(self.start).as_secs()
    }

    fn head(&self) -> cm::MessageHeaderType {
        header(self.session_id.as_deref().unwrap_or(&[0; 8]), self.stamp())
    }

    fn end(&mut self, reason: EndReason) {
        self.state = SeccState::Ended;
        self.core.end(reason);
    }

    fn send(&mut self, w: Wire) {
        match w.encode() {
            Ok((pt, bytes)) => self.core.transmit_as(pt, bytes),
            Err(e) => self.end(EndReason::Malformed(e)),
        }
    }

    /// Answers `req` with `code` and ends the session.
    fn fail(&mut self, req: Request, code: cm::ResponseCodeType, reason: EndReason) {
        let w = self.response(req, code);
        self.send(w);
        self.end(reason);
    }

    fn fail_code(&mut self, req: Request, code: cm::ResponseCodeType) {
        self.fail(req, code, failed(code));
    }

    /// Plug & Charge: an AuthorizationReq with `PnC_AReqAuthorizationMode`.
    /// The first one is checked (GenChallenge, the contract chain against
    /// the MO roots at the header's time, the header signature over the
    /// mode by the contract key); then the backend is asked once, and every
    /// request is answered `Ongoing` until its verdict.
    fn authorize_contract(
        &mut self,
        req: Request,
        mut res: Wire,
        mode: &cm::PnCAReqAuthorizationModeType,
        signature: Option<&xmldsig::SignatureType>,
    ) {
        use cm::ResponseCodeType as Code;
        if self.pnc_mode.as_ref().is_some_and(|m| m != mode) {
            // a repeat is the same request [V2G20-1582]: another challenge
            // or chain is another selection than the one being decided
            return self.fail_code(req, Code::WarningAuthorizationSelectionInvalid);
        }
        if self.contract.is_none() {
            let Some(pnc) = self.config.pnc.as_ref() else {
                return self.fail_code(req, Code::WarningAuthorizationSelectionInvalid);
            };
            if mode.gen_challenge.0 != pnc.gen_challenge {
                return self.fail_code(req, Code::WarningChallengeInvalid);
            }
            let chain = &mode.contract_certificate_chain;
            let subs = chain.sub_certificates.ders();
            let checked = pki::verify_chain(
                &chain.certificate.0,
                &subs,
                &pnc.mo_roots,
                self.stamp(),
                LeafUsage::Signature,
            )
            .and_then(|c| Ok((c.leaf.public_key()?, c.leaf)));
            let (key, leaf) = match checked {
                Ok(k) => k,
                Err(CertError::Expired { .. }) => {
                    return self.fail_code(req, Code::WarningCertificateExpired)
                }
                Err(CertError::NotYetValid { .. }) => {
                    return self.fail_code(req, Code::WarningCertificateNotYetValid)
                }
                Err(_) => return self.fail_code(req, Code::WarningCertificateValidationError),
            };
            let mut fragment = Vec::new();
            let signed = cm::Fragment::PnCAReqAuthorizationMode(Box::new(mode.clone()))
                .encode(&mut fragment)
                .is_ok()
                && signature.is_some_and(|sig| {
                    pki::verify(sig, &[(mode.id.as_str(), fragment.as_slice())], &key).is_ok()
                });
            if !signed {
                return self.fail_code(req, Code::FailedSignatureError);
            }
            let emaid = leaf.common_name().unwrap_or_default();
            self.contract = Some((key, emaid.clone()));
            self.pnc_mode = Some(mode.clone());
            self.core.evse_once(
                &mut self.contract_asked,
                EvseRequest::AuthorizeContract {
                    emaid,
                    certificate: chain.certificate.0.clone(),
                    sub_cas: subs,
                },
            );
        }
        match self.contract_status {
            Some(ContractStatus::Accepted) => self.state = SeccState::ServiceDiscovery,
            Some(ContractStatus::Revoked) => {
                return self.fail(
                    req,
                    Code::WarningCertificateRevoked,
                    EndReason::AuthorizationRejected,
                )
            }
            Some(_) => {
                return self.fail(
                    req,
                    Code::WarningGeneralPnCAuthorizationError,
                    EndReason::AuthorizationRejected,
                )
            }
            None => {
                if let Wire::Common(cm::Message::AuthorizationRes(a)) = &mut res {
                    a.evse_processing = cm::ProcessingType::Ongoing;
                }
            }
        }
        self.send(res);
        if !self.core.is_ended() {
            self.core.arm_sequence(self.now, &self.config);
        }
    }

    pub(crate) fn handle_message(&mut self, now: Instant, payload_type: PayloadType, exi: &[u8]) {
        if self.core.is_ended() {
            return;
        }
        self.now = now;
        let wire = match Wire::decode(payload_type, exi) {
            Ok(w) => w,
            Err(e) => return self.end(EndReason::Malformed(e)),
        };
        let Some((req, head)) = wire.request() else {
            return self.end(EndReason::SequenceError);
        };
        let refusal = screen(
            self.state == SeccState::SessionSetup,
            &head.session_id.0,
            self.session_id.as_ref(),
            self.state.allows(req, self.dc),
            &self.config.evse,
            self.dc
                && matches!(
                    req,
                    Request::DcCableCheck | Request::DcPreCharge | Request::DcChargeLoop
                ),
        );
        if let Some(r) = refusal {
            return self.fail(req, r.code(), r.reason());
        }
        if std::mem::take(&mut self.installing) {
            // the EV waits for its CertificateInstallationRes, which will
            // not come now
            return self.fail_code(req, cm::ResponseCodeType::FailedSequenceError);
        }
        let asked_id = head.session_id.0.clone();
        let signature = head.signature.clone();
        let mut res = self.response(req, cm::ResponseCodeType::OK);
        use cm::Message as C;
        match wire {
            Wire::Common(C::SessionSetupReq(r)) => {
                self.core.timers.disarm(TimerKind::SeccCommunicationSetup);
                let (id, joined) = setup_session(&self.config, &asked_id);
                self.session_id = Some(id8(&id));
                self.evcc_id = r.evccid;
                res = self.response(
                    req,
                    if joined {
                        cm::ResponseCodeType::OkOldSessionJoined
                    } else {
                        cm::ResponseCodeType::OkNewSessionEstablished
                    },
                );
                self.state = SeccState::AuthorizationSetup;
            }
            Wire::Common(C::AuthorizationSetupReq(_)) => self.state = SeccState::Authorization,
            Wire::Common(C::CertificateInstallationReq(r)) => {
                // offered with PnC only, before a contract is being decided
                if self.config.pnc.is_none() || self.pnc_mode.is_some() {
                    return self.fail_code(req, cm::ResponseCodeType::FailedSequenceError);
                }
                if super::pnc::verify_iso20_installation_request(&r).is_err() {
                    return self.fail_code(req, cm::ResponseCodeType::FailedSignatureError);
                }
                let chain = &r.oem_provisioning_certificate_chain;
                self.installing = true;
                self.core.evse(EvseRequest::InstallCertificateIso20 {
                    oem_provisioning_cert: chain.certificate.0.clone(),
                    oem_sub_cas: chain
                        .sub_certificates
                        .as_ref()
                        .map(cm::SubCertificatesType::ders)
                        .unwrap_or_default(),
                    root_ids: r
                        .list_of_root_certificate_i_ds
                        .root_certificate_id
                        .iter()
                        .map(|i| (i.x509_issuer_name.clone(), i.x509_serial_number))
                        .collect(),
                    maximum_chains: r.maximum_contract_certificate_chains,
                    prioritized_emaids: r
                        .prioritized_emai_ds
                        .as_ref()
                        .map(|l| l.emaid.clone())
                        .unwrap_or_default(),
                    exi: exi.to_vec(),
                });
                // answered by `handle_certificate_installation`
                self.core.arm_sequence(now, &self.config);
                return;
            }
            Wire::Common(C::AuthorizationReq(r)) => {
                let pnc = r.selected_authorization_service == cm::AuthorizationType::PnC;
                if pnc && self.config.pnc.is_some() {
                    let Some(mode) = r.pn_c_a_req_authorization_mode.as_ref() else {
                        return self.fail_code(
                            req,
                            cm::ResponseCodeType::WarningAuthorizationSelectionInvalid,
                        );
                    };
                    return self.authorize_contract(req, res, mode, signature.as_ref());
                }
                // EIM selected, or PnC's parameters missing, or EIM after a
                // contract is being decided
                if pnc || r.eim_a_req_authorization_mode.is_none() || self.pnc_mode.is_some() {
                    return self.fail_code(
                        req,
                        cm::ResponseCodeType::WarningAuthorizationSelectionInvalid,
                    );
                }
                match self.authorization {
                    Some(Authorization::Accepted) => self.state = SeccState::ServiceDiscovery,
                    Some(Authorization::Rejected) => {
                        return self.fail(
                            req,
                            cm::ResponseCodeType::WarningEIMAuthorizationFailure,
                            EndReason::AuthorizationRejected,
                        )
                    }
                    None => {
                        self.core.evse_once(
                            &mut self.auth_asked,
                            EvseRequest::Authorize {
                                evcc_id: self.evcc_id.clone().into_bytes(),
                            },
                        );
                        if let Wire::Common(C::AuthorizationRes(a)) = &mut res {
                            a.evse_processing = cm::ProcessingType::Ongoing;
                        }
                    }
                }
            }
            Wire::Common(C::ServiceDiscoveryReq(r)) => {
                // the VAS offered, only those the EV says it supports when
                // it lists any (SupportedServiceIDs)
                let supported = r.supported_service_i_ds.as_ref().map(|l| &l.service_id);
                let vas: Vec<cm::ServiceType> = self
                    .config
                    .vas
                    .iter()
                    .filter(|v| supported.is_none_or(|ids| ids.contains(&v.service_id)))
                    .take(8)
                    .map(|v| cm::ServiceType {
                        service_id: v.service_id,
                        free_service: v.free,
                    })
                    .collect();
                if let Wire::Common(C::ServiceDiscoveryRes(x)) = &mut res {
                    x.vas_list = (!vas.is_empty()).then_some(cm::ServiceListType { service: vas });
                }
                self.state = SeccState::ServiceSelection;
            }
            Wire::Common(C::ServiceDetailReq(r)) => {
                let bpt = r.service_id == service(self.dc, true) && self.bpt_offer().is_some();
                let sets = if r.service_id == service(self.dc, false) || bpt {
                    self.parameter_sets(bpt)
                } else if let Some(v) = self.offered_vas(r.service_id) {
                    v.parameter_sets.clone()
                } else {
                    return self.fail_code(req, cm::ResponseCodeType::FailedServiceIDInvalid);
                };
                if let Wire::Common(C::ServiceDetailRes(x)) = &mut res {
                    x.service_id = r.service_id;
                    x.service_parameter_list.parameter_set = sets;
                }
            }
            Wire::Common(C::ServiceSelectionReq(r)) => {
                let s = &r.selected_energy_transfer_service;
                let mode = self
                    .config
                    .control_modes
                    .iter()
                    .copied()
                    .find(|m| parameter_set_id(*m) == s.parameter_set_id);
                // each VAS offered, with one of its parameter sets, once
                let vas: Vec<(u16, u16)> = r
                    .selected_vas_list
                    .as_ref()
                    .map(|l| {
                        l.selected_service
                            .iter()
                            .map(|v| (v.service_id, v.parameter_set_id))
                            .collect()
                    })
                    .unwrap_or_default();
                let vas_ok = vas.iter().enumerate().all(|(i, (id, set))| {
                    self.offered_vas(*id).is_some_and(|v| {
                        v.parameter_sets.iter().any(|p| p.parameter_set_id == *set)
                    }) && !vas[..i].iter().any(|(other, _)| other == id)
                });
                let bpt = s.service_id == service(self.dc, true) && self.bpt_offer().is_some();
                match mode {
                    Some(m) if (s.service_id == service(self.dc, false) || bpt) && vas_ok => {
                        self.control = Some(m);
                        self.bpt = bpt;
                        self.state = SeccState::ChargeParameterDiscovery;
                        if !vas.is_empty() {
                            self.vas = vas.clone();
                            self.core
                                .evse(EvseRequest::ValueAddedServices { selected: vas });
                        }
                    }
                    _ => {
                        return self
                            .fail_code(req, cm::ResponseCodeType::FailedServiceSelectionInvalid)
                    }
                }
            }
            Wire::Dc(dc::Message::DcChargeParameterDiscoveryReq(r)) => {
                let fits = match &r.bpt_dc_cpd_req_energy_transfer_mode {
                    Some(b) if self.bpt => {
                        self.ev_discharge = (
                            rv(&b.ev_maximum_discharge_power).abs(),
                            rv(&b.ev_maximum_discharge_current).abs(),
                        );
                        true
                    }
                    _ => !self.bpt && r.dc_cpd_req_energy_transfer_mode.is_some(),
                };
                if !fits {
                    return self.fail_code(req, cm::ResponseCodeType::FailedWrongChargeParameter);
                }
                self.state = SeccState::ScheduleExchange;
            }
            Wire::Ac(ac::Message::AcChargeParameterDiscoveryReq(r)) => {
                let fits = match &r.bpt_ac_cpd_req_energy_transfer_mode {
                    Some(b) if self.bpt => {
                        let p = rv(&b.ev_maximum_discharge_power).abs();
                        self.ev_discharge = (p, p / self.config.evse.nominal_voltage.max(1.0));
                        true
                    }
                    _ => !self.bpt && r.ac_cpd_req_energy_transfer_mode.is_some(),
                };
                if !fits {
                    return self.fail_code(req, cm::ResponseCodeType::FailedWrongChargeParameter);
                }
                self.state = SeccState::ScheduleExchange;
            }
            Wire::Common(C::ScheduleExchangeReq(r)) => {
                let scheduled = self.control == Some(ControlMode::Scheduled);
                let fits = if scheduled {
                    r.scheduled_se_req_control_mode.is_some()
                } else {
                    r.dynamic_se_req_control_mode.is_some()
                };
                if !fits {
                    return self.fail_code(req, cm::ResponseCodeType::FailedWrongChargeParameter);
                }
                if !scheduled {
                    self.state = self.after_schedules();
                } else {
                    match self.schedules.clone() {
                        Some(s) => {
                            let mut tuples = self.tuples(&s);
                            let points = usize::from(r.maximum_supporting_points.max(1));
                            for t in &mut tuples {
                                t.entries.truncate(points);
                            }
                            if let Wire::Common(C::ScheduleExchangeRes(x)) = &mut res {
                                x.scheduled_se_res_control_mode = Some(self.schedule_list(&tuples));
                            }
                            self.offered = tuples;
                            self.state = self.after_schedules();
                        }
                        None => {
                            if !self.schedules_asked {
                                self.schedules_asked = true;
                                let s = r.scheduled_se_req_control_mode.as_ref();
                                self.core.evse(EvseRequest::Schedules {
                                    max_entries: None,
                                    departure_time: s.and_then(|s| s.departure_time),
                                    energy_request_wh: s
                                        .and_then(|s| s.ev_target_energy_request.as_ref())
                                        .map(rv),
                                    renegotiation: self.renegotiations > 0,
                                });
                            }
                            // the schema wants a control mode even while Ongoing:
                            // the placeholder tuple of `response` (the EVSE's
                            // maximum power), which the EV does not read
                            if let Wire::Common(C::ScheduleExchangeRes(x)) = &mut res {
                                x.evse_processing = cm::ProcessingType::Ongoing;
                            }
                        }
                    }
                }
            }
            Wire::Dc(dc::Message::DcCableCheckReq(_)) => {
                self.core
                    .evse_once(&mut self.cable_check_started, EvseRequest::StartCableCheck);
                match self.config.evse.isolation {
                    Isolation::Valid | Isolation::Warning => self.state = SeccState::PreCharge,
                    _ => {
                        if let Wire::Dc(dc::Message::DcCableCheckRes(x)) = &mut res {
                            x.evse_processing = cm::ProcessingType::Ongoing;
                        }
                    }
                }
            }
            Wire::Dc(dc::Message::DcPreChargeReq(r)) => {
                self.core.evse(EvseRequest::Target {
                    voltage: rv(&r.ev_target_voltage),
                    current: 2.0,
                });
            }
            Wire::Common(C::PowerDeliveryReq(r)) => {
                self.energy.pause();
                self.discharged.pause();
                match r.charge_progress {
                    cm::ChargeProgressType::Start if self.state != SeccState::ChargeLoop => {
                        // a channel is for BPT sessions only
                        if !self.bpt && r.bpt_channel_selection.is_some() {
                            return self
                                .fail_code(req, cm::ResponseCodeType::FailedWrongChargeParameter);
                        }
                        // EVProcessing=Ongoing: the EV is not ready (no
                        // profile yet); nothing starts and it asks again
                        if r.ev_processing == cm::ProcessingType::Finished {
                            if let Some(code) = self.check_profile(r.ev_power_profile.as_ref()) {
                                return self.fail_code(req, code);
                            }
                            self.core.evse(EvseRequest::Power(true));
                            self.state = SeccState::ChargeLoop;
                        }
                    }
                    cm::ChargeProgressType::Stop => {
                        self.core.evse(EvseRequest::Power(false));
                        self.state = SeccState::PostCharge;
                    }
                    cm::ChargeProgressType::Standby => {
                        return self.fail_code(req, cm::ResponseCodeType::WarningStandbyNotAllowed)
                    }
                    cm::ChargeProgressType::ScheduleRenegotiation => {
                        return self
                            .fail_code(req, cm::ResponseCodeType::FailedScheduleRenegotiation)
                    }
                    cm::ChargeProgressType::Start => {
                        return self.fail(
                            req,
                            cm::ResponseCodeType::FailedSequenceError,
                            EndReason::SequenceError,
                        )
                    }
                }
                res = self.response(req, cm::ResponseCodeType::OK);
            }
            Wire::Dc(dc::Message::DcChargeLoopReq(r)) => {
                let e = self.config.evse.clone();
                let Some((v, i)) = self.dc_target(&r) else {
                    return self.fail_code(req, cm::ResponseCodeType::FailedWrongChargeParameter);
                };
                self.loops += 1;
                self.flowed(now, e.present_voltage * e.present_current);
                let (_, give_i) = self.discharge_limits();
                if let Wire::Dc(dc::Message::DcChargeLoopRes(x)) = &mut res {
                    x.evse_current_limit_achieved = i >= e.max_current || -i >= give_i;
                    x.evse_voltage_limit_achieved = v >= e.max_voltage;
                    x.evse_power_limit_achieved = v * i >= e.max_power;
                    if !r.meter_info_requested {
                        x.meter_info = None;
                    }
                }
                self.core.evse(EvseRequest::Target {
                    voltage: v.min(e.max_voltage),
                    current: i.clamp(-give_i, e.max_current),
                });
            }
            Wire::Ac(ac::Message::AcChargeLoopReq(r)) => {
                let scheduled = self.control == Some(ControlMode::Scheduled);
                let power = match (
                    self.bpt,
                    &r.scheduled_ac_cl_req_control_mode,
                    &r.dynamic_ac_cl_req_control_mode,
                    &r.bpt_scheduled_ac_cl_req_control_mode,
                    &r.bpt_dynamic_ac_cl_req_control_mode,
                ) {
                    (false, Some(s), ..) if scheduled => Some(rv(&s.ev_present_active_power)),
                    (false, _, Some(d), ..) if !scheduled => Some(rv(&d.ev_present_active_power)),
                    (true, _, _, Some(s), _) if scheduled => Some(rv(&s.ev_present_active_power)),
                    (true, _, _, _, Some(d)) if !scheduled => {
                        self.ac_offer = rv(&d.ev_minimum_energy_request) < 0.0;
                        Some(rv(&d.ev_present_active_power))
                    }
                    _ => None,
                };
                let Some(power) = power else {
                    return self.fail_code(req, cm::ResponseCodeType::FailedWrongChargeParameter);
                };
                self.loops += 1;
                match self.config.evse.meter_wh {
                    // a meter counts what flowed in; a BPT session counts
                    // both ways from what the EV reports
                    Some(wh) if !self.bpt => self.energy.meter(wh),
                    _ => self.flowed(now, self.ev_power),
                }
                self.ev_power = power;
                // the target answers this request's power (BPT: its direction)
                res = self.response(req, cm::ResponseCodeType::OK);
                if let Wire::Ac(ac::Message::AcChargeLoopRes(x)) = &mut res {
                    if !r.meter_info_requested {
                        x.meter_info = None;
                    }
                }
            }
            Wire::Dc(dc::Message::DcWeldingDetectionReq(_)) => {}
            Wire::Common(C::SessionStopReq(r)) => {
                let reason = match r.charging_session {
                    cm::ChargingSessionType::Pause => EndReason::Paused {
                        session_id: self.session_id.clone().unwrap_or_default(),
                    },
                    cm::ChargingSessionType::Terminate => EndReason::Finished,
                    cm::ChargingSessionType::ServiceRenegotiation
                        if self.config.service_renegotiation =>
                    {
                        // the same session from ServiceDiscovery: the service,
                        // its parameters and schedules chosen again
                        self.send(res);
                        self.renegotiate_services();
                        if !self.core.is_ended() {
                            self.core.arm_sequence(now, &self.config);
                        }
                        return;
                    }
                    cm::ChargingSessionType::ServiceRenegotiation => {
                        return self.fail_code(
                            req,
                            cm::ResponseCodeType::FailedNoServiceRenegotiationSupported,
                        )
                    }
                };
                self.send(res);
                return self.end(reason);
            }
            // `request()` recognised only the messages above
            _ => return self.end(EndReason::SequenceError),
        }
        self.send(res);
        if !self.core.is_ended() {
            if self.state == SeccState::ChargeLoop
                && matches!(req, Request::AcChargeLoop | Request::DcChargeLoop)
            {
                self.core.timers.arm(
                    TimerKind::SeccSequence,
                    now + self.config.timers.charge_loop_sequence,
                );
            } else {
                self.core.arm_sequence(now, &self.config);
            }
        }
    }

    fn service_id(&self) -> u16 {
        service(self.dc, self.bpt)
    }

    /// Back to ServiceDiscovery after SessionStop(ServiceRenegotiation):
    /// what the selection decided is forgotten, the energy counted stays.
    fn renegotiate_services(&mut self) {
        self.state = SeccState::ServiceDiscovery;
        self.renegotiation = false;
        self.renegotiations += 1;
        self.control = None;
        self.bpt = false;
        self.vas.clear();
        self.schedules = None;
        self.schedules_asked = false;
        self.offered.clear();
        self.tuple_id = None;
        self.cable_check_started = false;
        self.ev_discharge = (0.0, 0.0);
        self.ac_offer = false;
    }

    /// The voltage and current (negative: discharge) a DC_ChargeLoopReq
    /// asks for, by the session's control mode and service; `None` when
    /// it carries the parameters of another.
    fn dc_target(&self, r: &dc::DcChargeLoopReqType) -> Option<(f64, f64)> {
        let e = &self.config.evse;
        let scheduled = self.control == Some(ControlMode::Scheduled);
        let present = rv(&r.ev_present_voltage).max(1.0);
        match (
            self.bpt,
            &r.scheduled_dc_cl_req_control_mode,
            &r.dynamic_dc_cl_req_control_mode,
            &r.bpt_scheduled_dc_cl_req_control_mode,
            &r.bpt_dynamic_dc_cl_req_control_mode,
        ) {
            (false, Some(s), ..) if scheduled => {
                Some((rv(&s.ev_target_voltage), rv(&s.ev_target_current)))
            }
            (false, _, Some(d), ..) if !scheduled => {
                let v = rv(&d.ev_maximum_voltage);
                let p = rv(&d.ev_maximum_charge_power).min(e.max_power);
                Some((v, rv(&d.ev_maximum_charge_current).min(p / present)))
            }
            (true, _, _, Some(s), _) if scheduled => {
                Some((rv(&s.ev_target_voltage), rv(&s.ev_target_current)))
            }
            (true, _, _, _, Some(d)) if !scheduled => {
                let v = rv(&d.ev_maximum_voltage);
                let demand = self.bpt_offer().map_or(0.0, |b| b.discharge_demand);
                if demand > 0.0 && rv(&d.ev_minimum_energy_request) < 0.0 {
                    // the EV offers energy and the SECC asks for it
                    let (give_p, give_i) = self.discharge_limits();
                    let p = demand
                        .min(give_p)
                        .min(rv(&d.ev_maximum_discharge_power).abs());
                    let i = (p / present)
                        .min(give_i)
                        .min(rv(&d.ev_maximum_discharge_current).abs());
                    Some((v, -i))
                } else {
                    let p = rv(&d.ev_maximum_charge_power).min(e.max_power);
                    Some((v, rv(&d.ev_maximum_charge_current).min(p / present)))
                }
            }
            _ => None,
        }
    }

    fn after_schedules(&self) -> SeccState {
        if self.dc {
            SeccState::CableCheck
        } else {
            SeccState::PowerDelivery
        }
    }

    /// The code refusing a PowerDelivery(Start)'s power profile, if any.
    fn check_profile(
        &mut self,
        p: Option<&cm::EVPowerProfileType>,
    ) -> Option<cm::ResponseCodeType> {
        if self.control != Some(ControlMode::Scheduled) {
            return None;
        }
        let chosen = p
            .and_then(|p| p.scheduled_evppt_control_mode.as_ref())
            .map(|s| s.selected_schedule_tuple_id);
        let tuple = match chosen {
            Some(id) => self.offered.iter().find(|t| u32::from(t.id) == id),
            None => self.offered.first(),
        };
        let Some(t) = tuple.cloned() else {
            return Some(cm::ResponseCodeType::FailedScheduleSelectionInvalid);
        };
        // discharging (negative power) within both sides' discharge
        // limits, and only in a BPT session
        let give = if self.bpt {
            self.discharge_limits().0
        } else {
            0.0
        };
        let too_much = p.is_some_and(|p| {
            p.ev_power_profile_entries
                .ev_power_profile_entry
                .iter()
                .any(|e| rv(&e.power) > pmax(&t) + 1e-6 || -rv(&e.power) > give + 1e-6)
        });
        if too_much {
            return Some(cm::ResponseCodeType::FailedEVPowerProfileInvalid);
        }
        self.tuple_id = Some(u32::from(t.id));
        None
    }

    fn tuples(&self, s: &[ScheduleTuple]) -> Vec<ScheduleTuple> {
        if s.is_empty() {
            vec![ScheduleTuple {
                id: 1,
                entries: vec![(0, self.config.evse.max_power)],
                duration: 86_400,
            }]
        } else {
            s.to_vec()
        }
    }

    fn schedule_list(&self, tuples: &[ScheduleTuple]) -> cm::ScheduledSEResControlModeType {
        cm::ScheduledSEResControlModeType {
            schedule_tuple: tuples
                .iter()
                .map(|t| cm::ScheduleTupleType {
                    schedule_tuple_id: u32::from(t.id.max(1)),
                    charging_schedule: cm::ChargingScheduleType {
                        power_schedule: cm::PowerScheduleType {
                            time_anchor: self.stamp(),
                            available_energy: None,
                            power_tolerance: None,
                            power_schedule_entries: cm::PowerScheduleEntryListType {
                                power_schedule_entry: t
                                    .entries
                                    .iter()
                                    .enumerate()
                                    .map(|(i, (start, p))| {
                                        let end = t
                                            .entries
                                            .get(i + 1)
                                            .map_or(t.duration, |(next, _)| *next);
                                        cm::PowerScheduleEntryType {
                                            duration: end.saturating_sub(*start).max(1),
                                            power: rn(*p),
                                            power_l2: None,
                                            power_l3: None,
                                        }
                                    })
                                    .collect(),
                            },
                        },
                        absolute_price_schedule: None,
                        price_level_schedule: Some(self.one_price_level(t.duration)),
                    },
                    discharging_schedule: self.bpt.then(|| self.discharging_schedule(t)),
                })
                .collect(),
        }
    }

    /// BPT: the DischargingSchedule of a tuple, over the same time: the
    /// highest discharge power of both sides, as a negative power (what
    /// flows out of the EV; an EV reads its magnitude).
    fn discharging_schedule(&self, t: &ScheduleTuple) -> cm::ChargingScheduleType {
        cm::ChargingScheduleType {
            power_schedule: cm::PowerScheduleType {
                time_anchor: self.stamp(),
                available_energy: None,
                power_tolerance: None,
                power_schedule_entries: cm::PowerScheduleEntryListType {
                    power_schedule_entry: vec![cm::PowerScheduleEntryType {
                        duration: t.duration.max(1),
                        power: rn(-self.discharge_limits().0),
                        power_l2: None,
                        power_l3: None,
                    }],
                },
            },
            absolute_price_schedule: None,
            price_level_schedule: Some(self.one_price_level(t.duration)),
        }
    }

    /// A PriceLevelSchedule of one level (0 of 1) over `duration` s: the
    /// schema makes a schedule's price optional and these machines price
    /// nothing (`Pricing=0`), but Josev's EVCC refuses a ChargingSchedule
    /// without a PriceLevelSchedule or an AbsolutePriceSchedule.
    fn one_price_level(&self, duration: u32) -> cm::PriceLevelScheduleType {
        cm::PriceLevelScheduleType {
            id: None,
            time_anchor: self.stamp(),
            price_schedule_id: 1,
            price_schedule_description: None,
            number_of_price_levels: 1,
            price_level_schedule_entries: cm::PriceLevelScheduleEntryListType {
                price_level_schedule_entry: vec![cm::PriceLevelScheduleEntryType {
                    duration: duration.max(1),
                    price_level: 0,
                }],
            },
        }
    }

    fn evse_status(&self) -> Option<cm::EVSEStatusType> {
        let e = &self.config.evse;
        if e.emergency_stop || (self.dc && e.isolation == Isolation::Fault) {
            Some(cm::EVSEStatusType {
                notification_max_delay: 0,
                evse_notification: cm::EvseNotificationType::Terminate,
            })
        } else if self.renegotiation && self.state == SeccState::ChargeLoop {
            // the EV has the sequence timeout to begin it
            Some(cm::EVSEStatusType {
                notification_max_delay: self.config.timers.sequence.as_secs().min(65_535) as u16,
                evse_notification: cm::EvseNotificationType::ServiceRenegotiation,
            })
        } else {
            None
        }
    }

    fn evse_id(&self) -> String {
        if self.config.evse_id.len() < 7 {
            "ZZ00000".into()
        } else {
            self.config.evse_id.chars().take(37).collect()
        }
    }

    fn meter_info(&self) -> Option<cm::MeterInfoType> {
        self.config.evse.meter_wh.map(|wh| cm::MeterInfoType {
            meter_id: self.evse_id().chars().take(32).collect(),
            charged_energy_reading_wh: wh,
            bpt_discharged_energy_reading_wh: None,
            capacitive_energy_reading_va_rh: None,
            bpt_inductive_energy_reading_va_rh: None,
            meter_signature: None,
            meter_status: None,
            meter_timestamp: None,
        })
    }

    /// The parameter sets of ServiceDetail, one per control mode offered;
    /// for the BPT service with `BPTChannel` 1 (unified), `GeneratorMode`
    /// 1 (grid following) and, AC, `GridCodeIslandingDetectionMethod` 1
    /// (active).
    fn parameter_sets(&self, bpt: bool) -> Vec<cm::ParameterSetType> {
        let mut modes = self.config.control_modes.clone();
        if modes.is_empty() {
            modes.push(ControlMode::Scheduled);
        }
        modes
            .iter()
            .map(|m| {
                let mut parameter = vec![
                    int_param("Connector", if self.dc { 1 } else { 2 }),
                    int_param("ControlMode", control_mode_value(*m)),
                ];
                if !self.dc {
                    parameter.push(cm::ParameterType {
                        rational_number: Some(rn(self.config.evse.nominal_voltage)),
                        int_value: None,
                        ..int_param("EVSENominalVoltage", 0)
                    });
                }
                parameter.push(int_param(
                    "MobilityNeedsMode",
                    if *m == ControlMode::Dynamic { 2 } else { 1 },
                ));
                parameter.push(int_param("Pricing", 0));
                if bpt {
                    parameter.push(int_param("BPTChannel", 1));
                    parameter.push(int_param("GeneratorMode", 1));
                    if !self.dc {
                        parameter.push(int_param("GridCodeIslandingDetectionMethod", 1));
                    }
                }
                cm::ParameterSetType {
                    parameter_set_id: parameter_set_id(*m),
                    parameter,
                }
            })
            .collect()
    }

    /// The response to `req` with `code`, every field from the EVSE state.
    fn response(&self, req: Request, code: cm::ResponseCodeType) -> Wire {
        use cm::Message as C;
        let e = &self.config.evse;
        let header = self.head();
        let scheduled = self.control != Some(ControlMode::Dynamic);
        let status = self.evse_status();
        let give = self.bpt_offer().copied().unwrap_or(SeccBpt::new(0.0, 0.0));
        match req {
            Request::SessionSetup => {
                Wire::Common(C::SessionSetupRes(Box::new(cm::SessionSetupResType {
                    header,
                    response_code: code,
                    evseid: self.evse_id(),
                })))
            }
            Request::AuthorizationSetup => {
                // one mode's parameters: PnC's when offered (its GenChallenge),
                // EIM's otherwise [V2G20-2567], [V2G20-2568]
                let pnc = self.config.pnc.as_ref();
                Wire::Common(C::AuthorizationSetupRes(Box::new(
                    cm::AuthorizationSetupResType {
                        header,
                        response_code: code,
                        authorization_services: pnc
                            .map(|_| cm::AuthorizationType::PnC)
                            .into_iter()
                            .chain([cm::AuthorizationType::EIM])
                            .collect(),
                        certificate_installation_service: pnc.is_some(),
                        eim_as_res_authorization_mode: pnc
                            .is_none()
                            .then_some(cm::EimASResAuthorizationModeType {}),
                        pn_c_as_res_authorization_mode: pnc.map(|p| {
                            cm::PnCASResAuthorizationModeType {
                                gen_challenge: Base64Binary(p.gen_challenge.to_vec()),
                                supported_providers: None,
                            }
                        }),
                    },
                )))
            }
            Request::CertificateInstallation => {
                // the schema's mandatory elements, empty: the code says it
                Wire::Common(C::CertificateInstallationRes(Box::new(
                    cm::CertificateInstallationResType {
                        header,
                        response_code: code,
                        evse_processing: cm::ProcessingType::Finished,
                        cps_certificate_chain: cm::CertificateChainType {
                            certificate: Base64Binary(Vec::new()),
                            sub_certificates: None,
                        },
                        signed_installation_data: cm::SignedInstallationDataType {
                            id: "id1".into(),
                            contract_certificate_chain: cm::ContractCertificateChainType {
                                certificate: Base64Binary(Vec::new()),
                                sub_certificates: cm::SubCertificatesType {
                                    certificate: vec![Base64Binary(Vec::new())],
                                },
                            },
                            ecdh_curve: cm::EcdhCurveType::SECP521,
                            // the lengths the schema fixes
                            dh_public_key: Base64Binary(vec![0; 133]),
                            secp521_encrypted_private_key: Some(Base64Binary(vec![0; 94])),
                            x448_encrypted_private_key: None,
                            tpm_encrypted_private_key: None,
                        },
                        remaining_contract_certificate_chains: 0,
                    },
                )))
            }
            Request::Authorization => {
                Wire::Common(C::AuthorizationRes(Box::new(cm::AuthorizationResType {
                    header,
                    response_code: code,
                    evse_processing: cm::ProcessingType::Finished,
                })))
            }
            Request::ServiceDiscovery => Wire::Common(C::ServiceDiscoveryRes(Box::new(
                cm::ServiceDiscoveryResType {
                    header,
                    response_code: code,
                    service_renegotiation_supported: self.config.service_renegotiation,
                    energy_transfer_service_list: cm::ServiceListType {
                        service: std::iter::once(false)
                            .chain(self.bpt_offer().map(|_| true))
                            .map(|bpt| cm::ServiceType {
                                service_id: service(self.dc, bpt),
                                free_service: false,
                            })
                            .collect(),
                    },
                    vas_list: None,
                },
            ))),
            Request::ServiceDetail => {
                Wire::Common(C::ServiceDetailRes(Box::new(cm::ServiceDetailResType {
                    header,
                    response_code: code,
                    service_id: self.service_id(),
                    service_parameter_list: cm::ServiceParameterListType {
                        parameter_set: self.parameter_sets(self.bpt),
                    },
                })))
            }
            Request::ServiceSelection => Wire::Common(C::ServiceSelectionRes(Box::new(
                cm::ServiceSelectionResType {
                    header,
                    response_code: code,
                },
            ))),
            Request::DcChargeParameterDiscovery => {
                Wire::Dc(dc::Message::DcChargeParameterDiscoveryRes(Box::new(
                    dc::DcChargeParameterDiscoveryResType {
                        header,
                        response_code: code,
                        bpt_dc_cpd_res_energy_transfer_mode: self.bpt.then(|| {
                            let b = self.bpt_offer().copied().unwrap_or(SeccBpt::new(0.0, 0.0));
                            dc_cpd_res!(dc::BptDcCPDResEnergyTransferModeType, e, evse_maximum_discharge_power: rn(b.max_discharge_power), evse_minimum_discharge_power: rn(0.0), evse_maximum_discharge_current: rn(b.max_discharge_current), evse_minimum_discharge_current: rn(0.0))
                        }),
                        dc_cpd_res_energy_transfer_mode: (!self.bpt).then(|| {
                            dc_cpd_res!(dc::DcCPDResEnergyTransferModeType, e)
                        }),
                    },
                )))
            }
            Request::AcChargeParameterDiscovery => {
                Wire::Ac(ac::Message::AcChargeParameterDiscoveryRes(Box::new(
                    ac::AcChargeParameterDiscoveryResType {
                        header,
                        response_code: code,
                        ac_cpd_res_energy_transfer_mode: (!self.bpt).then(|| {
                            ac_cpd_res!(ac::AcCPDResEnergyTransferModeType, e)
                        }),
                        bpt_ac_cpd_res_energy_transfer_mode: self.bpt.then(|| {
                            let b = self.bpt_offer().copied().unwrap_or(SeccBpt::new(0.0, 0.0));
                            ac_cpd_res!(ac::BptAcCPDResEnergyTransferModeType, e, evse_maximum_discharge_power: rn(b.max_discharge_power), evse_maximum_discharge_power_l2: None, evse_maximum_discharge_power_l3: None, evse_minimum_discharge_power: rn(0.0), evse_minimum_discharge_power_l2: None, evse_minimum_discharge_power_l3: None)
                        }),
                    },
                )))
            }
            Request::ScheduleExchange => Wire::Common(C::ScheduleExchangeRes(Box::new(
                cm::ScheduleExchangeResType {
                    header,
                    response_code: code,
                    evse_processing: cm::ProcessingType::Finished,
                    go_to_pause: None,
                    dynamic_se_res_control_mode: (!scheduled).then_some(
                        cm::DynamicSEResControlModeType {
                            departure_time: None,
                            minimum_soc: None,
                            target_soc: None,
                            absolute_price_schedule: None,
                            price_level_schedule: None,
                        },
                    ),
                    scheduled_se_res_control_mode: scheduled
                        .then(|| self.schedule_list(&self.tuples(&[]))),
                },
            ))),
            Request::DcCableCheck => Wire::Dc(dc::Message::DcCableCheckRes(Box::new(
                dc::DcCableCheckResType {
                    header,
                    response_code: code,
                    evse_processing: cm::ProcessingType::Finished,
                },
            ))),
            Request::DcPreCharge => Wire::Dc(dc::Message::DcPreChargeRes(Box::new(
                dc::DcPreChargeResType {
                    header,
                    response_code: code,
                    evse_present_voltage: rn(e.present_voltage),
                },
            ))),
            Request::PowerDelivery => {
                Wire::Common(C::PowerDeliveryRes(Box::new(cm::PowerDeliveryResType {
                    header,
                    response_code: code,
                    evse_status: status,
                })))
            }
            Request::DcChargeLoop => Wire::Dc(dc::Message::DcChargeLoopRes(Box::new(
                dc::DcChargeLoopResType {
                    header,
                    response_code: code,
                    evse_status: status,
                    meter_info: self.meter_info(),
                    receipt: None,
                    evse_present_current: rn(e.present_current),
                    evse_present_voltage: rn(e.present_voltage),
                    evse_power_limit_achieved: false,
                    evse_current_limit_achieved: false,
                    evse_voltage_limit_achieved: false,
                    bpt_dynamic_dc_cl_res_control_mode: (self.bpt && !scheduled).then(|| {
                        dc_dynamic_res!(dc::BptDynamicDcCLResControlModeType, e, evse_maximum_discharge_power: rn(give.max_discharge_power), evse_minimum_discharge_power: rn(0.0), evse_maximum_discharge_current: rn(give.max_discharge_current), evse_minimum_voltage: rn(e.min_voltage))
                    }),
                    bpt_scheduled_dc_cl_res_control_mode: (self.bpt && scheduled).then(|| {
                        dc_scheduled_res!(dc::BptScheduledDcCLResControlModeType, e, evse_maximum_discharge_power: Some(rn(give.max_discharge_power)), evse_minimum_discharge_power: None, evse_maximum_discharge_current: Some(rn(give.max_discharge_current)), evse_minimum_voltage: Some(rn(e.min_voltage)))
                    }),
                    cl_res_control_mode: None,
                    dynamic_dc_cl_res_control_mode: (!self.bpt && !scheduled).then(|| {
                        dc_dynamic_res!(dc::DynamicDcCLResControlModeType, e)
                    }),
                    scheduled_dc_cl_res_control_mode: (!self.bpt && scheduled).then(|| {
                        dc_scheduled_res!(dc::ScheduledDcCLResControlModeType, e)
                    }),
                },
            ))),
            Request::AcChargeLoop => {
                let charge = match self
                    .offered
                    .iter()
                    .find(|t| Some(u32::from(t.id)) == self.tuple_id)
                {
                    Some(t) if scheduled => pmax(t).min(e.max_power),
                    _ => e.max_power,
                };
                // BPT: discharging, the most both sides give (scheduled:
                // the EV discharges; dynamic: it offers and the SECC asks)
                let (give_p, _) = self.discharge_limits();
                let target = if !self.bpt {
                    charge
                } else if scheduled && self.ev_power < 0.0 {
                    -give_p
                } else if !scheduled && give.discharge_demand > 0.0 && self.ac_offer {
                    -give.discharge_demand.min(give_p)
                } else {
                    charge
                };
                Wire::Ac(ac::Message::AcChargeLoopRes(Box::new(
                    ac::AcChargeLoopResType {
                        header,
                        response_code: code,
                        evse_status: status,
                        meter_info: self.meter_info(),
                        receipt: None,
                        evse_target_frequency: None,
                        bpt_dynamic_ac_cl_res_control_mode: (self.bpt && !scheduled).then(|| {
                            ac_loop_res!(ac::BptDynamicAcCLResControlModeType, rn(target), departure_time: None, minimum_soc: None, target_soc: None, ack_max_delay: None)
                        }),
                        bpt_scheduled_ac_cl_res_control_mode: (self.bpt && scheduled).then(|| {
                            ac_loop_res!(ac::BptScheduledAcCLResControlModeType, Some(rn(target)))
                        }),
                        cl_res_control_mode: None,
                        dynamic_ac_cl_res_control_mode: (!self.bpt && !scheduled).then(|| {
                            ac_loop_res!(ac::DynamicAcCLResControlModeType, rn(target), departure_time: None, minimum_soc: None, target_soc: None, ack_max_delay: None)
                        }),
                        scheduled_ac_cl_res_control_mode: (!self.bpt && scheduled).then(|| {
                            ac_loop_res!(ac::ScheduledAcCLResControlModeType, Some(rn(target)))
                        }),
                    },
                )))
            }
            Request::DcWeldingDetection => Wire::Dc(dc::Message::DcWeldingDetectionRes(Box::new(
                dc::DcWeldingDetectionResType {
                    header,
                    response_code: code,
                    evse_present_voltage: rn(e.present_voltage),
                },
            ))),
            Request::SessionStop => {
                Wire::Common(C::SessionStopRes(Box::new(cm::SessionStopResType {
                    header,
                    response_code: code,
                })))
            }
        }
    }
}

// ---- EVCC ----

/// The EVCC's side of an ISO 15118-20 session, EIM or PnC, DC or AC by the
/// protocol the SECC chose, in [`EvccConfig::control_mode`] (after the
/// handshake; made by [`super::Evcc`]).
///
/// It sends the next request as soon as an answer allows it, the repeated
/// ones (after `Ongoing`, PreCharge, the charge loops) after
/// [`EvccConfig::loop_interval`]. Scheduled: it takes the first
/// ScheduleTuple and sends PowerDelivery(Start) with its id and an
/// EVPowerProfile of one entry, the smaller of the EV's maximum power and
/// the tuple's first power. Dynamic: no profile; the charge loop carries
/// the EV's limits and energy requests.
#[derive(Debug)]
pub struct Evcc {
    pub(crate) core: Core,
    config: EvccConfig,
    dc: bool,
    session_id: Option<Vec<u8>>,
    awaiting: Option<Request>,
    next: Option<Request>,
    stop: Option<StopKind>,
    charging: bool,
    /// The last PowerDeliveryReq was a Stop.
    stopping: bool,
    stop_sent: StopKind,
    tuple: Option<(u32, f64)>,
    /// The chosen schedule carried a PowerTolerance.
    tolerance_offered: bool,
    nominal_voltage: f64,
    /// AC: the EVSE's target active power of the last answer (W).
    evse_target_power: Option<f64>,
    loops: u32,
    energy: Energy,
    /// BPT: energy given back.
    discharged: Energy,
    /// BPT: the EVSE's highest discharge power (ChargeParameterDiscovery).
    evse_discharge_power: Option<f64>,
    /// BPT, scheduled: the chosen tuple's DischargingSchedule's first power
    /// (its magnitude).
    discharge_pmax: Option<f64>,
    /// BPT: PowerDelivery(Start) selected the `Discharge` channel.
    discharging: bool,
    /// VAS: the wanted ones the SECC offers, still to ask ServiceDetail
    /// of; the one asked now; those selected `(ServiceID, ParameterSetID)`.
    vas_queue: std::collections::VecDeque<u16>,
    vas_asked: Option<u16>,
    vas: Vec<(u16, u16)>,
    /// PnC: the AuthorizationReq's mode and its header signature, made
    /// once (a repeated request is the same [V2G20-1582]).
    pnc_auth: Option<(cm::PnCAReqAuthorizationModeType, xmldsig::SignatureType)>,
    /// PnC: the GenChallenge of AuthorizationSetupRes, kept while a
    /// contract is installed.
    challenge: Option<Vec<u8>>,
    /// PnC: CertificateInstallationReq's OEM provisioning chain and its
    /// header signature, made once.
    install_req: Option<(cm::SignedCertificateChainType, xmldsig::SignatureType)>,
    /// PnC: the contract CertificateInstallation delivered.
    installed: Option<Contract>,
    /// The SECC's ServiceRenegotiationSupported (first ServiceDiscoveryRes).
    renegotiation_supported: Option<bool>,
    /// This stop is a service renegotiation: SessionStop(ServiceRenegotiation).
    renegotiate: bool,
    /// Service renegotiations done.
    renegotiations: u32,
    start: Instant,
    now: Instant,
}

impl Evcc {
    pub(crate) fn new(config: EvccConfig, core: Core, now: Instant, dc: bool) -> Self {
        let mut s = Self::idle(config, core, now, dc);
        s.send(now, Request::SessionSetup);
        s
    }

    fn idle(config: EvccConfig, core: Core, now: Instant, dc: bool) -> Self {
        Self {
            core,
            config,
            dc,
            session_id: None,
            awaiting: None,
            next: None,
            stop: None,
            charging: false,
            stopping: false,
            stop_sent: StopKind::Terminate,
            tuple: None,
            tolerance_offered: false,
            nominal_voltage: 230.0,
            evse_target_power: None,
            loops: 0,
            energy: Energy::default(),
            discharged: Energy::default(),
            evse_discharge_power: None,
            discharge_pmax: None,
            discharging: false,
            vas_queue: std::collections::VecDeque::new(),
            vas_asked: None,
            vas: Vec::new(),
            pnc_auth: None,
            challenge: None,
            install_req: None,
            installed: None,
            renegotiation_supported: None,
            renegotiate: false,
            renegotiations: 0,
            start: now,
            now,
        }
    }

    pub(crate) fn session_id(&self) -> Option<&[u8]> {
        self.session_id.as_deref()
    }

    /// PnC: the AuthorizationReq's `PnC_AReqAuthorizationMode` for the
    /// SECC's `challenge`, signed by the contract key (secp521r1 with
    /// SHA-512 as -20 has it; a secp256r1 contract signs with SHA-256).
    fn sign_contract(
        contract: &super::Contract,
        challenge: &[u8],
    ) -> Result<(cm::PnCAReqAuthorizationModeType, xmldsig::SignatureType), String> {
        let cert = Cert::from_der(&contract.certificate).map_err(|e| e.to_string())?;
        let key = pki::check_key_pair(&contract.key, &cert).map_err(|e| e.to_string())?;
        let mode = cm::PnCAReqAuthorizationModeType {
            id: "id1".into(),
            gen_challenge: Base64Binary(challenge.to_vec()),
            contract_certificate_chain: cm::ContractCertificateChainType {
                certificate: Base64Binary(contract.certificate.clone()),
                sub_certificates: cm::SubCertificatesType {
                    certificate: contract.sub_cas.iter().cloned().map(Base64Binary).collect(),
                },
            },
        };
        let mut fragment = Vec::new();
        cm::Fragment::PnCAReqAuthorizationMode(Box::new(mode.clone()))
            .encode(&mut fragment)
            .map_err(|e| e.to_string())?;
        let signature =
            pki::sign(&key, &[(mode.id.as_str(), &fragment)]).map_err(|e| e.to_string())?;
        Ok((mode, signature))
    }

    /// The value-added services selected, `(ServiceID, ParameterSetID)`,
    /// once ServiceSelectionReq is sent.
    pub fn selected_vas(&self) -> &[(u16, u16)] {
        &self.vas
    }

    /// The next VAS to ask ServiceDetail of, else ServiceSelection.
    fn next_detail(&mut self, now: Instant) {
        self.vas_asked = self.vas_queue.pop_front();
        if self.vas_asked.is_some() {
            self.send(now, Request::ServiceDetail);
        } else {
            self.send(now, Request::ServiceSelection);
        }
    }

    /// Plug & Charge: the eMAID of the contract the car authorized with
    /// (PnC selected).
    pub fn contract_emaid(&self) -> Option<&str> {
        self.pnc_auth.as_ref()?;
        Some(self.contract()?.emaid.as_str())
    }

    /// The contract the car authorizes with: the one installed in this
    /// session, else its own.
    fn contract(&self) -> Option<&Contract> {
        self.installed
            .as_ref()
            .or_else(|| self.config.pnc.as_ref()?.contract.as_ref())
    }

    /// Plug & Charge: the contract CertificateInstallation delivered in
    /// this session (its key decrypted and checked against its
    /// certificate).
    pub fn installed_contract(&self) -> Option<&Contract> {
        self.installed.as_ref()
    }

    /// PnC: checks a CertificateInstallationRes and takes its contract: the
    /// CPS chain ends at a V2G root the car trusts, the CPS leaf signed
    /// SignedInstallationData, the key decrypts with the provisioning key
    /// and the AAD of [V2G20-2492], and belongs to the contract
    /// certificate [V2G20-2507].
    fn take_contract(&self, r: &cm::CertificateInstallationResType) -> Result<Contract, String> {
        let pnc = self.config.pnc.as_ref().ok_or("no PnC configuration")?;
        let prov = pnc.provisioning.as_ref().ok_or("no provisioning key")?;
        let subs = |s: Option<&cm::SubCertificatesType>| -> Vec<Vec<u8>> {
            s.map(cm::SubCertificatesType::ders).unwrap_or_default()
        };
        let cps_chain = &r.cps_certificate_chain;
        let cps = pki::verify_chain(
            &cps_chain.certificate.0,
            &subs(cps_chain.sub_certificates.as_ref()),
            &pnc.v2g_roots,
            self.stamp(),
            LeafUsage::Signature,
        )
        .map_err(|e| format!("CPS chain: {e}"))?;
        let signature = r.header.signature.as_ref().ok_or("unsigned")?;
        let d = &r.signed_installation_data;
        let (id, fragment) = iso20_installation_fragment(d).map_err(|e| e.to_string())?;
        let cps_key = cps.leaf.public_key().map_err(|e| e.to_string())?;
        pki::verify(signature, &[(id.as_str(), &fragment)], &cps_key)
            .map_err(|e| format!("signature: {e}"))?;
        if d.ecdh_curve != cm::EcdhCurveType::SECP521 {
            return Err("ECDHCurve X448 is not supported".into());
        }
        let encrypted = d
            .secp521_encrypted_private_key
            .as_ref()
            .ok_or("no SECP521_EncryptedPrivateKey")?;
        let der = d.contract_certificate_chain.certificate.0.clone();
        let cert = Cert::from_der(&der).map_err(|e| e.to_string())?;
        let pcid = Cert::from_der(&prov.certificate)
            .map_err(|e| e.to_string())?
            .common_name()
            .unwrap_or_default();
        let aad = pki::installation_aad(&pcid, &cert).map_err(|e| e.to_string())?;
        let scalar =
            pki::decrypt_contract_key_iso20(&encrypted.0, &d.dh_public_key.0, &prov.key, &aad)
                .map_err(|e| e.to_string())?;
        pki::check_key_pair(&scalar, &cert).map_err(|e| e.to_string())?;
        let emaid = cert.common_name().unwrap_or_default();
        Ok(Contract::new(
            emaid,
            der,
            subs(Some(&d.contract_certificate_chain.sub_certificates)),
            scalar,
        ))
    }

    pub(crate) fn set_ev(&mut self, ev: EvStatus) {
        self.config.ev = ev;
    }
    /// Service renegotiations done (SessionStop(ServiceRenegotiation)
    /// answered, ServiceDiscovery again).
    pub fn service_renegotiations(&self) -> u32 {
        self.renegotiations
    }

    /// Stops charging to renegotiate the services, where the SECC supports it.
    pub(crate) fn request_service_renegotiation(&mut self) {
        if self.renegotiation_supported == Some(true) && self.charging && self.stop.is_none() {
            self.renegotiate = true;
            self.stop = Some(StopKind::Terminate);
        }
    }

    pub(crate) fn request_stop(&mut self, kind: StopKind) {
        self.stop = Some(kind);
    }
    pub(crate) fn charge_loops(&self) -> u32 {
        self.loops
    }
    pub(crate) fn energy_wh(&self) -> f64 {
        self.energy.wh
    }
    pub(crate) fn discharged_wh(&self) -> f64 {
        self.discharged.wh
    }
    /// Whether the session is DC (else AC).
    pub fn is_dc(&self) -> bool {
        self.dc
    }
    /// Whether the EVCC selects the BPT service ([`EvccConfig::bpt`]).
    pub fn is_bpt(&self) -> bool {
        self.config.bpt.is_some()
    }

    /// Whether the car is done: its battery full or, discharging in the
    /// scheduled mode (BPT), once it gave what it set out to.
    fn done(&self) -> bool {
        if self.discharging && self.scheduled() {
            self.to_give() <= 0.0
        } else {
            self.config.ev.charging_complete
        }
    }

    /// BPT: energy left to give back (Wh; 0 without BPT).
    fn to_give(&self) -> f64 {
        self.config
            .bpt
            .map_or(0.0, |b| (b.discharge_wh - self.discharged.wh).max(0.0))
    }

    /// BPT: the power it discharges at: its own highest, capped by the
    /// EVSE's and the schedule's.
    fn discharge_power(&self) -> f64 {
        let mut p = self
            .config
            .bpt
            .map_or(0.0, |b| b.max_discharge_power.max(0.0));
        for cap in [self.evse_discharge_power, self.discharge_pmax]
            .into_iter()
            .flatten()
        {
            p = p.min(cap.abs());
        }
        p
    }

    /// DC: the current it asks for (negative: it discharges).
    fn dc_flow_current(&self) -> f64 {
        match self.config.bpt {
            Some(b) if self.discharging => -(self.discharge_power()
                / self.config.ev.target_voltage.max(1.0))
            .min(b.max_discharge_current.max(0.0)),
            _ => self.dc_target_current(),
        }
    }

    /// AC: the power that flows into the EV (W; negative: out of it).
    /// Scheduled, discharging: its discharge power; dynamic: what the
    /// EVSE's target asks back, within its own limit; else what it draws.
    fn ac_flow(&self) -> f64 {
        if let Some(b) = self.config.bpt {
            if self.scheduled() && self.discharging {
                return -self.discharge_power();
            }
            if let Some(t) = self.evse_target_power.filter(|t| *t < 0.0) {
                if !self.scheduled() && self.to_give() > 0.0 {
                    return -(-t).min(b.max_discharge_power.max(0.0));
                }
            }
        }
        self.ac_power()
    }

    /// Counts what flowed since the last answer: `power` W into the EV
    /// (negative: out of it), and reports the present values.
    fn flowed(&mut self, now: Instant, voltage: f64, current: f64) {
        self.loops += 1;
        let power = voltage * current;
        self.energy.add(now, power.max(0.0), 1.0);
        self.discharged.add(now, (-power).max(0.0), 1.0);
        self.core.notice(EvNotice::Present { voltage, current });
    }
    /// The ScheduleTupleID chosen (scheduled mode), after ScheduleExchange.
    pub fn schedule_tuple_id(&self) -> Option<u32> {
        self.tuple.map(|(id, _)| id)
    }

    fn stamp(&self) -> u64 {
        self.config.unix_time + self.now.saturating_duration_since(self.start).as_secs()
    }

    fn scheduled(&self) -> bool {
        self.config.control_mode == ControlMode::Scheduled
    }

    /// The first power (W) of the schedule tuple the car chose (scheduled
    /// mode), once it has.
    pub fn schedule_pmax(&self) -> Option<f64> {
        self.tuple.map(|(_, p)| p)
    }

    /// DC: the current the EV asks for, capped so that its target voltage
    /// × current stays within the chosen schedule's power.
    fn dc_target_current(&self) -> f64 {
        super::common::scheduled_current(&self.config.ev, self.schedule_pmax())
    }

    /// AC: the power the EV draws (W): its maximum, capped by the
    /// schedule's power and the EVSE's last target.
    fn ac_power(&self) -> f64 {
        let mut p = self.config.ev.max_power.max(0.0);
        if let Some((_, pmax)) = self.tuple {
            if pmax > 0.0 {
                p = p.min(pmax);
            }
        }
        if let Some(t) = self.evse_target_power {
            p = p.min(t.max(0.0));
        }
        p
    }

    fn body(&self, req: Request) -> Wire {
        use cm::Message as C;
        let ev = &self.config.ev;
        let id = request_session_id(
            req == Request::SessionSetup,
            &self.config.resume,
            &self.session_id,
            8,
        );
        let header = header(&id, self.stamp());
        let departure = ev.departure_time.unwrap_or(8 * 3600);
        let energy = rn(ev.energy_request_wh);
        let bpt = self.config.bpt;
        // BPT: what it offers to give back, as a negative minimum
        let minimum = rn(-self.to_give());
        match req {
            Request::SessionSetup => {
                Wire::Common(C::SessionSetupReq(Box::new(cm::SessionSetupReqType {
                    header,
                    evccid: self
                        .config
                        .evcc_id
                        .iter()
                        .map(|b| format!("{b:02X}"))
                        .collect(),
                })))
            }
            Request::AuthorizationSetup => Wire::Common(C::AuthorizationSetupReq(Box::new(
                cm::AuthorizationSetupReqType { header },
            ))),
            Request::Authorization => match &self.pnc_auth {
                Some((mode, signature)) => {
                    let mut header = header;
                    header.signature = Some(signature.clone());
                    Wire::Common(C::AuthorizationReq(Box::new(cm::AuthorizationReqType {
                        header,
                        selected_authorization_service: cm::AuthorizationType::PnC,
                        eim_a_req_authorization_mode: None,
                        pn_c_a_req_authorization_mode: Some(mode.clone()),
                    })))
                }
                None => Wire::Common(C::AuthorizationReq(Box::new(cm::AuthorizationReqType {
                    header,
                    selected_authorization_service: cm::AuthorizationType::EIM,
                    eim_a_req_authorization_mode: Some(cm::EimAReqAuthorizationModeType {}),
                    pn_c_a_req_authorization_mode: None,
                }))),
            },
            Request::CertificateInstallation => {
                let (chain, signature) = match &self.install_req {
                    Some((c, s)) => (c.clone(), Some(s.clone())),
                    None => (
                        cm::SignedCertificateChainType {
                            id: "id1".into(),
                            certificate: Base64Binary(Vec::new()),
                            sub_certificates: None,
                        },
                        None,
                    ),
                };
                let mut roots = self
                    .config
                    .pnc
                    .as_ref()
                    .map(|p| p.v2g_roots.root_ids())
                    .unwrap_or_default();
                roots.truncate(20);
                if roots.is_empty() {
                    // the schema wants one: a car without roots names none it knows
                    roots.push(xmldsig::X509IssuerSerialType {
                        x509_issuer_name: String::new(),
                        x509_serial_number: 0,
                    });
                }
                let mut header = header;
                header.signature = signature;
                Wire::Common(C::CertificateInstallationReq(Box::new(
                    cm::CertificateInstallationReqType {
                        header,
                        oem_provisioning_certificate_chain: chain,
                        list_of_root_certificate_i_ds: cm::ListOfRootCertificateIDsType {
                            root_certificate_id: roots,
                        },
                        maximum_contract_certificate_chains: 1,
                        prioritized_emai_ds: None,
                    },
                )))
            }
            Request::ServiceDiscovery => Wire::Common(C::ServiceDiscoveryReq(Box::new(
                cm::ServiceDiscoveryReqType {
                    header,
                    supported_service_i_ds: None,
                },
            ))),
            Request::ServiceDetail => {
                Wire::Common(C::ServiceDetailReq(Box::new(cm::ServiceDetailReqType {
                    header,
                    service_id: self.vas_asked.unwrap_or(self.service_id()),
                })))
            }
            Request::ServiceSelection => Wire::Common(C::ServiceSelectionReq(Box::new(
                cm::ServiceSelectionReqType {
                    header,
                    selected_energy_transfer_service: cm::SelectedServiceType {
                        service_id: self.service_id(),
                        parameter_set_id: parameter_set_id(self.config.control_mode),
                    },
                    selected_vas_list: (!self.vas.is_empty()).then(|| {
                        cm::SelectedServiceListType {
                            selected_service: self
                                .vas
                                .iter()
                                .map(|(id, set)| cm::SelectedServiceType {
                                    service_id: *id,
                                    parameter_set_id: *set,
                                })
                                .collect(),
                        }
                    }),
                },
            ))),
            Request::DcChargeParameterDiscovery => {
                Wire::Dc(dc::Message::DcChargeParameterDiscoveryReq(Box::new(
                    dc::DcChargeParameterDiscoveryReqType {
                        header,
                        bpt_dc_cpd_req_energy_transfer_mode: bpt.map(|b| {
                            dc_cpd_req!(dc::BptDcCPDReqEnergyTransferModeType, ev, ev_maximum_discharge_power: rn(b.max_discharge_power), ev_minimum_discharge_power: rn(0.0), ev_maximum_discharge_current: rn(b.max_discharge_current), ev_minimum_discharge_current: rn(0.0))
                        }),
                        dc_cpd_req_energy_transfer_mode: bpt.is_none().then(|| {
                            dc_cpd_req!(dc::DcCPDReqEnergyTransferModeType, ev)
                        }),
                    },
                )))
            }
            Request::AcChargeParameterDiscovery => {
                Wire::Ac(ac::Message::AcChargeParameterDiscoveryReq(Box::new(
                    ac::AcChargeParameterDiscoveryReqType {
                        header,
                        ac_cpd_req_energy_transfer_mode: bpt.is_none().then(|| {
                            ac_cpd_req!(ac::AcCPDReqEnergyTransferModeType, ev)
                        }),
                        bpt_ac_cpd_req_energy_transfer_mode: bpt.map(|b| {
                            ac_cpd_req!(ac::BptAcCPDReqEnergyTransferModeType, ev, ev_maximum_discharge_power: rn(b.max_discharge_power), ev_maximum_discharge_power_l2: None, ev_maximum_discharge_power_l3: None, ev_minimum_discharge_power: rn(0.0), ev_minimum_discharge_power_l2: None, ev_minimum_discharge_power_l3: None)
                        }),
                    },
                )))
            }
            Request::ScheduleExchange => {
                let scheduled = self.scheduled();
                Wire::Common(C::ScheduleExchangeReq(Box::new(
                    cm::ScheduleExchangeReqType {
                        header,
                        maximum_supporting_points: 1024,
                        dynamic_se_req_control_mode: (!scheduled).then(|| {
                            cm::DynamicSEReqControlModeType {
                                departure_time: departure,
                                minimum_soc: None,
                                target_soc: Some(100),
                                ev_target_energy_request: energy.clone(),
                                ev_maximum_energy_request: energy.clone(),
                                ev_minimum_energy_request: minimum.clone(),
                                ev_maximum_v2_x_energy_request: None,
                                ev_minimum_v2_x_energy_request: None,
                            }
                        }),
                        scheduled_se_req_control_mode: scheduled.then(|| {
                            cm::ScheduledSEReqControlModeType {
                                departure_time: ev.departure_time,
                                ev_target_energy_request: Some(energy.clone()),
                                ev_maximum_energy_request: Some(energy.clone()),
                                ev_minimum_energy_request: Some(rn(0.0)),
                                ev_energy_offer: None,
                            }
                        }),
                    },
                )))
            }
            Request::DcCableCheck => Wire::Dc(dc::Message::DcCableCheckReq(Box::new(
                dc::DcCableCheckReqType { header },
            ))),
            Request::DcPreCharge => Wire::Dc(dc::Message::DcPreChargeReq(Box::new(
                dc::DcPreChargeReqType {
                    header,
                    ev_processing: cm::ProcessingType::Ongoing,
                    ev_present_voltage: rn(0.0),
                    ev_target_voltage: rn(ev.target_voltage),
                },
            ))),
            Request::PowerDelivery => {
                let start = self.stop.is_none();
                let give = start && self.to_give() > 0.0;
                let profile = (start && self.scheduled()).then(|| {
                    let (id, pmax) = self.tuple.unwrap_or((1, ev.max_power));
                    cm::EVPowerProfileType {
                        time_anchor: self.stamp(),
                        dynamic_evppt_control_mode: None,
                        scheduled_evppt_control_mode: Some(cm::ScheduledEVPPTControlModeType {
                            selected_schedule_tuple_id: id,
                            // optional in the schema, required by some SECCs
                            // (Josev): the EV's profile keeps within PMax, so
                            // it confirms a tolerance only when one was offered
                            power_tolerance_acceptance: Some(if self.tolerance_offered {
                                cm::PowerToleranceAcceptanceType::PowerToleranceConfirmed
                            } else {
                                cm::PowerToleranceAcceptanceType::PowerToleranceNotConfirmed
                            }),
                        }),
                        ev_power_profile_entries: cm::EVPowerProfileEntryListType {
                            ev_power_profile_entry: vec![cm::PowerScheduleEntryType {
                                duration: departure.max(1),
                                power: if give {
                                    rn(-self.discharge_power())
                                } else {
                                    rn(ev.max_power.min(pmax))
                                },
                                power_l2: None,
                                power_l3: None,
                            }],
                        },
                    }
                });
                Wire::Common(C::PowerDeliveryReq(Box::new(cm::PowerDeliveryReqType {
                    header,
                    ev_processing: cm::ProcessingType::Finished,
                    charge_progress: if start {
                        cm::ChargeProgressType::Start
                    } else {
                        cm::ChargeProgressType::Stop
                    },
                    ev_power_profile: profile,
                    // BPT: Discharge while it has energy to give
                    bpt_channel_selection: (start && bpt.is_some()).then_some(if give {
                        cm::ChannelSelectionType::Discharge
                    } else {
                        cm::ChannelSelectionType::Charge
                    }),
                })))
            }
            Request::DcChargeLoop => {
                let scheduled = self.scheduled();
                let give = bpt.unwrap_or(super::EvBpt::new(0.0, 0.0, 0.0));
                Wire::Dc(dc::Message::DcChargeLoopReq(Box::new(
                    dc::DcChargeLoopReqType {
                        header,
                        display_parameters: None,
                        meter_info_requested: true,
                        ev_present_voltage: rn(ev.target_voltage),
                        bpt_dynamic_dc_cl_req_control_mode: (bpt.is_some() && !scheduled).then(
                            || dc_dynamic_req!(dc::BptDynamicDcCLReqControlModeType, ev, energy, departure, ev_minimum_energy_request: minimum.clone(), ev_maximum_discharge_power: rn(give.max_discharge_power), ev_minimum_discharge_power: rn(0.0), ev_maximum_discharge_current: rn(give.max_discharge_current), ev_maximum_v2_x_energy_request: None, ev_minimum_v2_x_energy_request: None),
                        ),
                        bpt_scheduled_dc_cl_req_control_mode: (bpt.is_some() && scheduled).then(
                            || dc_scheduled_req!(dc::BptScheduledDcCLReqControlModeType, ev, energy, ev_minimum_energy_request: Some(minimum.clone()), ev_target_current: rn(self.dc_flow_current()), ev_maximum_discharge_power: Some(rn(give.max_discharge_power)), ev_minimum_discharge_power: None, ev_maximum_discharge_current: Some(rn(give.max_discharge_current))),
                        ),
                        cl_req_control_mode: None,
                        dynamic_dc_cl_req_control_mode: (bpt.is_none() && !scheduled).then(|| {
                            dc_dynamic_req!(dc::DynamicDcCLReqControlModeType, ev, energy, departure, ev_minimum_energy_request: rn(0.0))
                        }),
                        scheduled_dc_cl_req_control_mode: (bpt.is_none() && scheduled).then(|| {
                            dc_scheduled_req!(dc::ScheduledDcCLReqControlModeType, ev, energy, ev_minimum_energy_request: None, ev_target_current: rn(self.dc_target_current()))
                        }),
                    },
                )))
            }
            Request::AcChargeLoop => {
                let scheduled = self.scheduled();
                let power = rn(self.ac_flow());
                let give = bpt.unwrap_or(super::EvBpt::new(0.0, 0.0, 0.0));
                Wire::Ac(ac::Message::AcChargeLoopReq(Box::new(
                    ac::AcChargeLoopReqType {
                        header,
                        display_parameters: None,
                        meter_info_requested: true,
                        bpt_dynamic_ac_cl_req_control_mode: (bpt.is_some() && !scheduled).then(
                            || ac_dynamic_req!(ac::BptDynamicAcCLReqControlModeType, ev, energy, departure, power, ev_minimum_energy_request: minimum.clone(), ev_maximum_discharge_power: rn(give.max_discharge_power), ev_maximum_discharge_power_l2: None, ev_maximum_discharge_power_l3: None, ev_minimum_discharge_power: rn(0.0), ev_minimum_discharge_power_l2: None, ev_minimum_discharge_power_l3: None, ev_maximum_v2_x_energy_request: None, ev_minimum_v2_x_energy_request: None),
                        ),
                        bpt_scheduled_ac_cl_req_control_mode: (bpt.is_some() && scheduled).then(
                            || ac_scheduled_req!(ac::BptScheduledAcCLReqControlModeType, ev, energy, power, ev_minimum_energy_request: Some(minimum.clone()), ev_maximum_discharge_power: Some(rn(give.max_discharge_power)), ev_maximum_discharge_power_l2: None, ev_maximum_discharge_power_l3: None, ev_minimum_discharge_power: None, ev_minimum_discharge_power_l2: None, ev_minimum_discharge_power_l3: None),
                        ),
                        cl_req_control_mode: None,
                        dynamic_ac_cl_req_control_mode: (bpt.is_none() && !scheduled).then(|| {
                            ac_dynamic_req!(ac::DynamicAcCLReqControlModeType, ev, energy, departure, power, ev_minimum_energy_request: rn(0.0))
                        }),
                        scheduled_ac_cl_req_control_mode: (bpt.is_none() && scheduled).then(|| {
                            ac_scheduled_req!(ac::ScheduledAcCLReqControlModeType, ev, energy, power, ev_minimum_energy_request: None)
                        }),
                    },
                )))
            }
            Request::DcWeldingDetection => Wire::Dc(dc::Message::DcWeldingDetectionReq(Box::new(
                dc::DcWeldingDetectionReqType {
                    header,
                    ev_processing: cm::ProcessingType::Finished,
                },
            ))),
            Request::SessionStop => {
                Wire::Common(C::SessionStopReq(Box::new(cm::SessionStopReqType {
                    header,
                    charging_session: match self.stop {
                        _ if self.renegotiate => cm::ChargingSessionType::ServiceRenegotiation,
                        Some(StopKind::Pause) => cm::ChargingSessionType::Pause,
                        _ => cm::ChargingSessionType::Terminate,
                    },
                    ev_termination_code: None,
                    ev_termination_explanation: None,
                })))
            }
        }
    }

    fn service_id(&self) -> u16 {
        service(self.dc, self.is_bpt())
    }

    fn charge_loop(&self) -> Request {
        if self.dc {
            Request::DcChargeLoop
        } else {
            Request::AcChargeLoop
        }
    }

    fn send(&mut self, now: Instant, req: Request) {
        self.now = now;
        // a stop asked for while the next loop request waited
        let req = if matches!(req, Request::DcChargeLoop | Request::AcChargeLoop)
            && (self.stop.is_some() || self.done())
        {
            self.stop.get_or_insert(StopKind::Terminate);
            Request::PowerDelivery
        } else {
            req
        };
        match req {
            Request::PowerDelivery => {
                self.stopping = self.stop.is_some();
                if !self.stopping {
                    self.discharging = self.is_bpt() && self.to_give() > 0.0;
                }
            }
            Request::SessionStop => self.stop_sent = self.stop.unwrap_or(StopKind::Terminate),
            _ => {}
        }
        let encoded = self.body(req).encode();
        let sent = match encoded {
            Ok((pt, bytes)) => {
                self.core.transmit_as(pt, bytes);
                let kind = req.msg_kind();
                self.core.timers.arm(
                    TimerKind::EvccMsg(kind),
                    now + self
                        .config
                        .timers
                        .evcc_msg_timeout(Standard::Iso15118_20, kind),
                );
                true
            }
            Err(e) => {
                self.core.end(EndReason::Malformed(e));
                false
            }
        };
        if sent {
            self.awaiting = Some(req);
        }
    }

    /// Ends on a `FAILED*`/`WARNING*` code; true if the session goes on.
    fn check(&mut self, code: cm::ResponseCodeType) -> bool {
        if code.is_failed() {
            self.core.end(failed(code));
            false
        } else {
            true
        }
    }

    fn processing(&mut self, now: Instant, req: Request, p: cm::ProcessingType) -> bool {
        Pacing::ongoing(self, now, req, is_ongoing(p))
    }

    /// A charge-loop answer's EVSE status: Terminate or Pause stops
    /// charging, ServiceRenegotiation (where the SECC said it supports it)
    /// stops it to renegotiate.
    fn notified(&mut self, s: Option<&cm::EVSEStatusType>) {
        match s.map(|s| s.evse_notification) {
            Some(cm::EvseNotificationType::ServiceRenegotiation) => {
                self.request_service_renegotiation()
            }
            Some(cm::EvseNotificationType::Terminate) => {
                self.stop.get_or_insert(StopKind::Terminate);
            }
            Some(cm::EvseNotificationType::Pause) => {
                self.stop.get_or_insert(StopKind::Pause);
            }
            _ => {}
        }
    }

    fn meter(&mut self, info: Option<&cm::MeterInfoType>) {
        if let Some(i) = info {
            self.core.notice(EvNotice::Meter {
                wh: i.charged_energy_reading_wh,
            });
        }
    }

    fn next_in_loop(&mut self, now: Instant) {
        if self.done() {
            self.stop.get_or_insert(StopKind::Terminate);
        }
        if self.stop.is_some() {
            self.send_later(now, Request::PowerDelivery);
        } else {
            let req = self.charge_loop();
            self.send_later(now, req);
        }
    }

    pub(crate) fn handle_message(&mut self, now: Instant, payload_type: PayloadType, exi: &[u8]) {
        if self.core.is_ended() {
            return;
        }
        self.now = now;
        let wire = match Wire::decode(payload_type, exi) {
            Ok(w) => w,
            Err(e) => return self.core.end(EndReason::Malformed(e)),
        };
        let Some((req, head, code)) = wire.response() else {
            return self.core.end(EndReason::SequenceError);
        };
        let head_id = head.session_id.0.clone();
        let Some(awaiting) = awaited(
            &mut self.core,
            &mut self.awaiting,
            Request::SessionSetup,
            &head_id,
            self.session_id.as_ref(),
        ) else {
            return;
        };
        if req != awaiting {
            return self.core.end(EndReason::SequenceError);
        }
        if !self.check(code) {
            return;
        }
        use cm::Message as C;
        match wire {
            Wire::Common(C::SessionSetupRes(_)) => {
                self.core.timers.disarm(TimerKind::EvccCommunicationSetup);
                self.session_id = Some(head_id);
                self.send(now, Request::AuthorizationSetup);
            }
            Wire::Common(C::AuthorizationSetupRes(r)) => {
                // PnC when the car has a contract and the SECC offers it
                // (with its GenChallenge), else EIM; a car without a
                // contract but with a provisioning certificate installs one
                // first where the SECC offers that
                let contract = self.contract();
                let challenge = r.pn_c_as_res_authorization_mode.as_ref().filter(|_| {
                    r.authorization_services
                        .contains(&cm::AuthorizationType::PnC)
                });
                let provisioning = self
                    .config
                    .pnc
                    .as_ref()
                    .and_then(|p| p.provisioning.as_ref())
                    .filter(|_| r.certificate_installation_service && contract.is_none());
                if let (Some(prov), Some(c)) = (provisioning, challenge) {
                    match prov.sign_iso20_chain() {
                        Ok(signed) => self.install_req = Some(signed),
                        Err(e) => {
                            return self.core.end(EndReason::Failed {
                                response_code: format!("provisioning: {e}"),
                            })
                        }
                    }
                    self.challenge = Some(c.gen_challenge.0.clone());
                    return self.send(now, Request::CertificateInstallation);
                }
                if let (Some(contract), Some(c)) = (contract, challenge) {
                    match Self::sign_contract(contract, &c.gen_challenge.0) {
                        Ok(signed) => self.pnc_auth = Some(signed),
                        Err(e) => {
                            return self.core.end(EndReason::Failed {
                                response_code: format!("contract: {e}"),
                            })
                        }
                    }
                } else if !r
                    .authorization_services
                    .contains(&cm::AuthorizationType::EIM)
                {
                    return self.core.end(EndReason::Failed {
                        response_code: "EIM not offered".into(),
                    });
                }
                self.send(now, Request::Authorization);
            }
            Wire::Common(C::CertificateInstallationRes(r)) => {
                if self.processing(now, req, r.evse_processing) {
                    return;
                }
                let challenge = self.challenge.clone().unwrap_or_default();
                let signed = self
                    .take_contract(&r)
                    .map_err(|e| format!("CertificateInstallationRes: {e}"))
                    .and_then(|c| {
                        let s = Self::sign_contract(&c, &challenge)
                            .map_err(|e| format!("contract: {e}"))?;
                        Ok((c, s))
                    });
                match signed {
                    Ok((contract, auth)) => {
                        self.installed = Some(contract);
                        self.pnc_auth = Some(auth);
                        self.send(now, Request::Authorization);
                    }
                    Err(e) => self.core.end(EndReason::Failed { response_code: e }),
                }
            }
            Wire::Common(C::AuthorizationRes(r)) => {
                if !self.processing(now, req, r.evse_processing) {
                    self.send(now, Request::ServiceDiscovery);
                }
            }
            Wire::Common(C::ServiceDiscoveryRes(r)) => {
                let sid = self.service_id();
                if !r
                    .energy_transfer_service_list
                    .service
                    .iter()
                    .any(|s| s.service_id == sid)
                {
                    return self.core.end(EndReason::Failed {
                        response_code: format!("energy transfer service {sid} not offered"),
                    });
                }
                // valid for the whole session: the first answer's [V2G20-1956]
                self.renegotiation_supported
                    .get_or_insert(r.service_renegotiation_supported);
                let offered = r.vas_list.as_ref().map_or(&[][..], |l| &l.service[..]);
                self.vas_queue = self
                    .config
                    .vas
                    .iter()
                    .copied()
                    .filter(|id| offered.iter().any(|s| s.service_id == *id))
                    .collect();
                self.send(now, Request::ServiceDetail);
            }
            Wire::Common(C::ServiceDetailRes(r)) if self.vas_asked.is_some() => {
                // a VAS: its first parameter set (none: not selected)
                let asked = self.vas_asked.unwrap_or_default();
                if r.service_id != asked {
                    return self.core.end(EndReason::Failed {
                        response_code: format!(
                            "ServiceDetailRes of service {} for {asked}",
                            r.service_id
                        ),
                    });
                }
                if let Some(set) = r.service_parameter_list.parameter_set.first() {
                    self.vas.push((asked, set.parameter_set_id));
                }
                self.next_detail(now);
            }
            Wire::Common(C::ServiceDetailRes(r)) => {
                let want = f64::from(control_mode_value(self.config.control_mode));
                let value = |s: &cm::ParameterSetType, name: &str| {
                    s.parameter
                        .iter()
                        .find(|p| p.name == name)
                        .and_then(param_value)
                };
                // BPT: the unified channel (this EV has no other), or a set
                // that does not say (Josev's SECC names no channel)
                let set = r.service_parameter_list.parameter_set.iter().find(|s| {
                    value(s, "ControlMode") == Some(want)
                        && (!self.is_bpt() || value(s, "BPTChannel").is_none_or(|c| c == 1.0))
                });
                let Some(set) = set else {
                    return self.core.end(EndReason::Failed {
                        response_code: format!(
                            "no parameter set with ControlMode {:?}",
                            self.config.control_mode
                        ),
                    });
                };
                if let Some(v) = set
                    .parameter
                    .iter()
                    .find(|p| p.name == "EVSENominalVoltage")
                    .and_then(param_value)
                {
                    self.nominal_voltage = v;
                }
                self.next_detail(now);
            }
            Wire::Common(C::ServiceSelectionRes(_)) => {
                if self.dc {
                    self.send(now, Request::DcChargeParameterDiscovery);
                } else {
                    self.send(now, Request::AcChargeParameterDiscovery);
                }
            }
            Wire::Dc(dc::Message::DcChargeParameterDiscoveryRes(r)) => {
                self.evse_discharge_power = r
                    .bpt_dc_cpd_res_energy_transfer_mode
                    .as_ref()
                    .map(|b| rv(&b.evse_maximum_discharge_power));
                self.send(now, Request::ScheduleExchange);
            }
            Wire::Ac(ac::Message::AcChargeParameterDiscoveryRes(r)) => {
                self.evse_discharge_power = r
                    .bpt_ac_cpd_res_energy_transfer_mode
                    .as_ref()
                    .map(|b| rv(&b.evse_maximum_discharge_power));
                self.send(now, Request::ScheduleExchange);
            }
            Wire::Common(C::ScheduleExchangeRes(r)) => {
                if self.processing(now, req, r.evse_processing) {
                    return;
                }
                if self.scheduled() {
                    let Some(t) = r
                        .scheduled_se_res_control_mode
                        .as_ref()
                        .and_then(|s| s.schedule_tuple.first())
                    else {
                        return self.core.end(EndReason::Failed {
                            response_code: "no ScheduleTuple".into(),
                        });
                    };
                    let p = t
                        .charging_schedule
                        .power_schedule
                        .power_schedule_entries
                        .power_schedule_entry
                        .first()
                        .map_or(self.config.ev.max_power, |e| rv(&e.power));
                    self.tuple = Some((t.schedule_tuple_id, p));
                    self.tolerance_offered =
                        t.charging_schedule.power_schedule.power_tolerance.is_some();
                    self.discharge_pmax = t.discharging_schedule.as_ref().and_then(|d| {
                        d.power_schedule
                            .power_schedule_entries
                            .power_schedule_entry
                            .first()
                            .map(|e| rv(&e.power).abs())
                    });
                }
                if self.dc {
                    self.core.arm_cable_check(now, &self.config);
                    self.send(now, Request::DcCableCheck);
                } else {
                    self.send(now, Request::PowerDelivery);
                }
            }
            Wire::Dc(dc::Message::DcCableCheckRes(r)) => {
                if is_ongoing(r.evse_processing) {
                    self.send_later(now, Request::DcCableCheck);
                } else {
                    self.core
                        .cable_checked(now, self.config.timers.iso20_pre_charge);
                    self.send(now, Request::DcPreCharge);
                }
            }
            Wire::Dc(dc::Message::DcPreChargeRes(r)) => {
                if self
                    .core
                    .precharged(&self.config, rv(&r.evse_present_voltage))
                {
                    self.send(now, Request::PowerDelivery);
                } else {
                    self.send_later(now, Request::DcPreCharge);
                }
            }
            Wire::Common(C::PowerDeliveryRes(_)) => {
                self.energy.pause();
                self.discharged.pause();
                if self.stopping {
                    if self.charging {
                        self.charging = false;
                        self.core.notice(EvNotice::ChargingStopped);
                    }
                    if self.dc {
                        self.send(now, Request::DcWeldingDetection);
                    } else {
                        self.send(now, Request::SessionStop);
                    }
                } else {
                    self.charging = true;
                    self.core.notice(EvNotice::ChargingStarted);
                    let req = self.charge_loop();
                    self.send(now, req);
                }
            }
            Wire::Dc(dc::Message::DcChargeLoopRes(r)) => {
                let (v, i) = (rv(&r.evse_present_voltage), rv(&r.evse_present_current));
                self.flowed(now, v, i);
                self.meter(r.meter_info.as_ref());
                self.notified(r.evse_status.as_ref());
                self.next_in_loop(now);
            }
            Wire::Ac(ac::Message::AcChargeLoopRes(r)) => {
                let target = r
                    .scheduled_ac_cl_res_control_mode
                    .as_ref()
                    .and_then(|s| s.evse_target_active_power.as_ref())
                    .or(r
                        .dynamic_ac_cl_res_control_mode
                        .as_ref()
                        .map(|d| &d.evse_target_active_power))
                    .or(r
                        .bpt_scheduled_ac_cl_res_control_mode
                        .as_ref()
                        .and_then(|s| s.evse_target_active_power.as_ref()))
                    .or(r
                        .bpt_dynamic_ac_cl_res_control_mode
                        .as_ref()
                        .map(|d| &d.evse_target_active_power));
                if let Some(t) = target {
                    self.evse_target_power = Some(rv(t));
                }
                let v = self.nominal_voltage.max(1.0);
                let i = self.ac_flow() / v;
                self.flowed(now, v, i);
                self.meter(r.meter_info.as_ref());
                self.notified(r.evse_status.as_ref());
                self.next_in_loop(now);
            }
            Wire::Dc(dc::Message::DcWeldingDetectionRes(_)) => {
                self.send(now, Request::SessionStop);
            }
            Wire::Common(C::SessionStopRes(_)) if self.renegotiate => {
                // the same session, from ServiceDiscovery [V2G20-1477]
                self.renegotiate = false;
                self.renegotiations += 1;
                self.stop = None;
                self.stopping = false;
                self.tuple = None;
                self.tolerance_offered = false;
                self.evse_target_power = None;
                self.evse_discharge_power = None;
                self.discharge_pmax = None;
                self.discharging = false;
                self.vas.clear();
                self.vas_queue.clear();
                self.vas_asked = None;
                self.send(now, Request::ServiceDiscovery);
            }
            Wire::Common(C::SessionStopRes(_)) => {
                let reason = match self.stop_sent {
                    StopKind::Pause => EndReason::Paused {
                        session_id: self.session_id.clone().unwrap_or_default(),
                    },
                    _ => EndReason::Finished,
                };
                self.core.end(reason);
            }
            // `response()` recognised only the messages above
            _ => self.core.end(EndReason::SequenceError),
        }
    }
}

impl Pacing for Evcc {
    type Req = Request;
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
    fn evcc_config(&self) -> &EvccConfig {
        &self.config
    }
    fn next_mut(&mut self) -> &mut Option<Request> {
        &mut self.next
    }
    fn send_now(&mut self, now: Instant, req: Request) {
        self.send(now, req);
    }
}

/// A valid request of each kind, as our EVCC in a DC (`dc`) or AC session
/// in `mode` would send it with this SessionID (for tests, fuzzing and the
/// SECC's proptest); PowerDelivery is a Start, SessionStop a Terminate.
pub fn sample_request(dc: bool, mode: ControlMode, session_id: &[u8], req: Request) -> Wire {
    let config = EvccConfig::iso20_dc(vec![0x84, 0x87, 0x72, 0x60, 0xf3, 0x58])
        .with_control_mode(mode)
        .with_resume(Some(session_id.to_vec()));
    let mut ev = Evcc::idle(config, Core::new(), Instant::now(), dc);
    ev.session_id = Some(session_id.to_vec());
    ev.body(req)
}

/// `sample_request` encoded: its payload type and EXI bytes.
pub fn encode_request(
    dc: bool,
    mode: ControlMode,
    session_id: &[u8],
    req: Request,
) -> (PayloadType, Vec<u8>) {
    sample_request(dc, mode, session_id, req)
        .encode()
        .unwrap_or((PayloadType::ISO20_MAIN, Vec::new()))
}

/// The response a -20 payload carries, decoded: its element name and code,
/// or `None` when the bytes are no -20 response.
pub fn response_code(payload_type: PayloadType, exi: &[u8]) -> Option<(String, String)> {
    let w = Wire::decode(payload_type, exi).ok()?;
    let (_, _, code) = w.response()?;
    Some((w.name().to_string(), super::common::code_name(code)))
}

/// The element name of a -20 payload, or `None` when it is none.
pub fn message_name(payload_type: PayloadType, exi: &[u8]) -> Option<&'static str> {
    Wire::decode(payload_type, exi).ok().map(|w| w.name())
}

/// How long the EVCC waits for an answer to `req` (for tests).
pub fn evcc_timeout(config: &EvccConfig, req: Request) -> Duration {
    config
        .timers
        .evcc_msg_timeout(Standard::Iso15118_20, req.msg_kind())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_request_encodes_and_is_recognised() {
        for dc in [true, false] {
            for mode in [ControlMode::Scheduled, ControlMode::Dynamic] {
                for req in Request::ALL {
                    let (pt, bytes) = encode_request(dc, mode, &[1; 8], req);
                    assert!(!bytes.is_empty(), "{dc} {mode:?} {req:?} encodes");
                    let w = Wire::decode(pt, &bytes).unwrap();
                    assert_eq!(w.request().map(|(r, _)| r), Some(req));
                }
            }
        }
    }

    #[test]
    fn every_failed_response_encodes_ac_and_dc() {
        for dc in [true, false] {
            let secc = Secc::new(
                SeccConfig::new(vec![1, 2, 3]),
                Core::new(),
                Instant::now(),
                dc,
            );
            for req in Request::ALL {
                let (pt, bytes) = secc
                    .response(req, cm::ResponseCodeType::FailedSequenceError)
                    .encode()
                    .unwrap_or_else(|e| panic!("{dc} {req:?}: {e}"));
                let (_, code) = response_code(pt, &bytes).unwrap();
                assert_eq!(code, "FAILED_SequenceError");
            }
        }
    }

    #[test]
    fn session_ids_are_eight_bytes() {
        assert_eq!(id8(&[1, 2]), vec![0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(id8(&[9; 10]), vec![9; 8]);
        assert_eq!(id8(&[]), vec![0; 8]);
    }

    #[test]
    fn state_table_keeps_ac_and_dc_apart() {
        assert!(SeccState::ChargeLoop.allows(Request::DcChargeLoop, true));
        assert!(!SeccState::ChargeLoop.allows(Request::AcChargeLoop, true));
        assert!(SeccState::ChargeLoop.allows(Request::AcChargeLoop, false));
        assert!(!SeccState::PostCharge.allows(Request::DcWeldingDetection, false));
        assert!(Request::ALL
            .iter()
            .all(|r| !SeccState::Ended.allows(*r, true)));
    }
}
