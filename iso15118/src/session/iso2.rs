//! ISO 15118-2:2014 (namespace `urn:iso:15118:2:2013:MsgDef`) with external
//! identification means (EIM), AC and DC: the SECC and the EVCC after the
//! SupportedAppProtocol handshake. The EVCC's [`EvccConfig::energy_mode`]
//! decides AC or DC; the SECC takes any mode of [`SeccConfig::energy_modes`].
//!
//! ```text
//!  SessionSetup ─► ServiceDiscovery ─► PaymentServiceSelection ─► Authorization ⟲ Ongoing
//!      ─► ChargeParameterDiscovery ⟲ Ongoing ─┬─ AC ───────────────────────────────┐
//!                                             └─ DC: CableCheck ⟲ ─► PreCharge ⟲ ─┤
//!      ┌──────────────────────────────────────────────────────────────────────────┘
//!      └► PowerDelivery(Start, SAScheduleTupleID) ─► ChargingStatus ⟲ (AC) / CurrentDemand ⟲ (DC)
//!           ├─ EVSENotification=ReNegotiation: PowerDelivery(Renegotiate)
//!           │      ─► ChargeParameterDiscovery ⟲ ─► PowerDelivery(Start) ─► loop again
//!           └─ PowerDelivery(Stop) ─► WeldingDetection ⟲ (DC) ─► SessionStop(Terminate | Pause)
//! ```
//!
//! SECC rules (ISO 15118-2 §8.4, §8.8): a request not allowed in the state
//! (or a `ChargeProgress` not allowed there) is answered with its response
//! carrying `FAILED_SequenceError`; a SessionID other than the session's
//! with `FAILED_UnknownSession`; `Contract` payment when Plug & Charge is
//! not configured ([`SeccConfig::pnc`]) with `FAILED_PaymentSelectionInvalid`; a service list without
//! the charge service with `FAILED_NoChargeServiceSelected`, with another
//! service with `FAILED_ServiceSelectionInvalid`; an energy transfer mode
//! not offered (or changed at a renegotiation) with
//! `FAILED_WrongEnergyTransferMode`, a charge parameter of the other kind
//! with `FAILED_WrongChargeParameter`; a PowerDelivery(Start) naming a tuple
//! not offered with `FAILED_TariffSelectionInvalid`, and one whose
//! ChargingProfile asks for more than the tuple's PMax with
//! `FAILED_ChargingProfileInvalid`; an emergency stop with `FAILED` (DC:
//! `EVSEStatusCode=EVSE_EmergencyShutdown`; AC: `EVSENotification=StopCharging`);
//! a DC isolation fault with `FAILED`, `EVSEIsolationStatus=Fault` and
//! `EVSE_Malfunction`. After any `FAILED*` answer the session ends.
//!
//! **Plug & Charge** ([`SeccConfig::pnc`], [`EvccConfig::pnc`]): the SECC
//! offers `Contract`; the EVCC selects it, installs a contract first when
//! it has none (CertificateInstallationReq signed by its OEM provisioning
//! key; the SECC verifies that signature — `FAILED_SignatureError` — and
//! asks [`EvseRequest::InstallCertificate`]; the EVCC checks the SA
//! provisioning chain against its V2G roots and the signature over the
//! four elements, decrypts the contract key and checks it belongs to the
//! certificate), then sends PaymentDetailsReq: the SECC verifies the
//! contract chain against the MO roots at its Unix time
//! (`FAILED_CertificateExpired`, any other chain fault
//! `FAILED_CertChainError`, an eMAID other than the certificate's CN
//! `FAILED_CertChainError`), asks [`EvseRequest::AuthorizeContract`] and
//! answers the GenChallenge of [`super::SeccPnc`]. AuthorizationReq must
//! carry that challenge (`FAILED_ChallengeInvalid`) signed by the contract
//! key (`FAILED_SignatureError`); then `Ongoing` until the verdict, which
//! may be `FAILED_CertificateRevoked` or `FAILED`. In the charge loop the
//! SECC asks once for a receipt (`ReceiptRequired`); the EVCC's
//! MeteringReceiptReq signed by the contract key must verify
//! (`FAILED_MeteringSignatureNotValid`).
//!
//! **Contract renewal** ([`super::EvPnc::renew_within`]): a car whose
//! contract expires within that time sends CertificateUpdateReq (its
//! contract chain and eMAID, signed by the contract key) instead of going
//! straight to PaymentDetails. The SECC checks the chain against the MO
//! roots (`FAILED_CertificateExpired`, `FAILED_CertChainError`, also for an
//! eMAID other than the certificate's), then the signature
//! (`FAILED_SignatureError`), and asks [`EvseRequest::UpdateCertificate`];
//! no answer is `FAILED_NoCertificateAvailable`. The car checks the answer
//! as an installation's, decrypts the new key with the old contract's key
//! and goes on with the new contract. With Plug & Charge the SECC offers
//! the Certificate service (ServiceID 2; ServiceDetail: parameter set 1
//! Installation, 2 Update) and the car selects it with the set of the step
//! it takes when offered; an SECC takes the certificate requests without
//! that selection too.
//!
//! SessionStop(Pause) ends both sides with [`EndReason::Paused`]: a later
//! connection resumes the session with [`SeccConfig::resume`] and
//! [`EvccConfig::resume`] (SessionSetupRes `OK_OldSessionJoined`, same
//! SessionID, the sequence from ServiceDiscovery again).
//!
//! Energy: DC integrates the present voltage × current between two
//! CurrentDemand answers (as DIN); AC counts the EVSE's meter readings
//! answered in ChargingStatusRes, on both sides. An SECC whose
//! ChargingStatusRes carry no MeterInfo (it is optional; Josev's never do)
//! leaves the EVCC counting what its charger draws: the EVSE's nominal
//! voltage × the current it may draw (its own maximum, at most the EVSE's
//! EVSEMaxCurrent) × its phases, capped by the schedule's PMax, between two
//! ChargingStatus answers; once a meter reading came, the meter counts.

use std::time::Instant;

use crate::grammar::{Base64Binary, HexBinary};
use crate::messages::iso2 as m;
use crate::messages::xmldsig;

use super::common::{
    awaited, check_answer, evcc_plumbing, failed, loop_present, request_session_id, response_codes,
    screen, setup_session, Codes, DcStatus, Pacing,
};
use super::pnc::Contract;
use super::pnc::{
    as_refs, chain_parts, encode_signed, fragment, installation_fragments, update_fragments,
    CertificateInstallation, CertificateUpdate, ContractStatus,
};
use super::{scale, unscale};
use super::{
    Authorization, Core, EndReason, Energy, EnergyMode, EvNotice, EvStatus, EvccConfig,
    EvseRequest, EvseStatus, Isolation, MsgKind, ScheduleTuple, SeccConfig, Standard, StopKind,
    TimerKind,
};
use crate::pki::{self, Cert, CertError, LeafUsage, VerifyingKey};

/// A request of the ISO 15118-2 schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Request {
    /// SessionSetupReq.
    SessionSetup,
    /// ServiceDiscoveryReq.
    ServiceDiscovery,
    /// ServiceDetailReq.
    ServiceDetail,
    /// PaymentServiceSelectionReq.
    PaymentServiceSelection,
    /// PaymentDetailsReq.
    PaymentDetails,
    /// AuthorizationReq.
    Authorization,
    /// ChargeParameterDiscoveryReq.
    ChargeParameterDiscovery,
    /// PowerDeliveryReq.
    PowerDelivery,
    /// ChargingStatusReq.
    ChargingStatus,
    /// MeteringReceiptReq.
    MeteringReceipt,
    /// CertificateInstallationReq.
    CertificateInstallation,
    /// CertificateUpdateReq.
    CertificateUpdate,
    /// CableCheckReq.
    CableCheck,
    /// PreChargeReq.
    PreCharge,
    /// CurrentDemandReq.
    CurrentDemand,
    /// WeldingDetectionReq.
    WeldingDetection,
    /// SessionStopReq.
    SessionStop,
}

impl Request {
    /// Every request.
    pub const ALL: [Request; 17] = [
        Request::SessionSetup,
        Request::ServiceDiscovery,
        Request::ServiceDetail,
        Request::PaymentServiceSelection,
        Request::PaymentDetails,
        Request::Authorization,
        Request::ChargeParameterDiscovery,
        Request::PowerDelivery,
        Request::ChargingStatus,
        Request::MeteringReceipt,
        Request::CertificateInstallation,
        Request::CertificateUpdate,
        Request::CableCheck,
        Request::PreCharge,
        Request::CurrentDemand,
        Request::WeldingDetection,
        Request::SessionStop,
    ];

    /// The request a body carries, if it carries one.
    pub fn of(b: &m::BodyType) -> Option<Request> {
        Some(if b.session_setup_req.is_some() {
            Request::SessionSetup
        } else if b.service_discovery_req.is_some() {
            Request::ServiceDiscovery
        } else if b.service_detail_req.is_some() {
            Request::ServiceDetail
        } else if b.payment_service_selection_req.is_some() {
            Request::PaymentServiceSelection
        } else if b.payment_details_req.is_some() {
            Request::PaymentDetails
        } else if b.authorization_req.is_some() {
            Request::Authorization
        } else if b.charge_parameter_discovery_req.is_some() {
            Request::ChargeParameterDiscovery
        } else if b.power_delivery_req.is_some() {
            Request::PowerDelivery
        } else if b.charging_status_req.is_some() {
            Request::ChargingStatus
        } else if b.metering_receipt_req.is_some() {
            Request::MeteringReceipt
        } else if b.certificate_installation_req.is_some() {
            Request::CertificateInstallation
        } else if b.certificate_update_req.is_some() {
            Request::CertificateUpdate
        } else if b.cable_check_req.is_some() {
            Request::CableCheck
        } else if b.pre_charge_req.is_some() {
            Request::PreCharge
        } else if b.current_demand_req.is_some() {
            Request::CurrentDemand
        } else if b.welding_detection_req.is_some() {
            Request::WeldingDetection
        } else if b.session_stop_req.is_some() {
            Request::SessionStop
        } else {
            return None;
        })
    }

    fn msg_kind(self) -> MsgKind {
        match self {
            Request::SessionSetup => MsgKind::SessionSetup,
            Request::ServiceDiscovery => MsgKind::ServiceDiscovery,
            Request::ServiceDetail => MsgKind::ServiceDetail,
            Request::PaymentServiceSelection => MsgKind::PaymentServiceSelection,
            Request::PaymentDetails => MsgKind::PaymentDetails,
            Request::Authorization => MsgKind::Authorization,
            Request::ChargeParameterDiscovery => MsgKind::ChargeParameterDiscovery,
            Request::PowerDelivery => MsgKind::PowerDelivery,
            Request::ChargingStatus => MsgKind::ChargingStatus,
            Request::MeteringReceipt => MsgKind::MeteringReceipt,
            Request::CertificateInstallation | Request::CertificateUpdate => MsgKind::Certificate,
            Request::CableCheck => MsgKind::CableCheck,
            Request::PreCharge => MsgKind::PreCharge,
            Request::CurrentDemand => MsgKind::CurrentDemand,
            Request::WeldingDetection => MsgKind::WeldingDetection,
            Request::SessionStop => MsgKind::SessionStop,
        }
    }
}

/// Where the SECC stands: the requests it takes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SeccState {
    /// SessionSetupReq.
    SessionSetup,
    /// ServiceDiscoveryReq.
    ServiceDiscovery,
    /// ServiceDetailReq or PaymentServiceSelectionReq.
    PaymentServiceSelection,
    /// Plug & Charge: PaymentDetailsReq, CertificateInstallationReq or
    /// CertificateUpdateReq.
    PaymentDetails,
    /// AuthorizationReq (again while `Ongoing`).
    Authorization,
    /// ChargeParameterDiscoveryReq (again while `Ongoing`; also after a renegotiation).
    ChargeParameterDiscovery,
    /// CableCheckReq (DC, again while `Ongoing`).
    CableCheck,
    /// PreChargeReq or PowerDeliveryReq (DC).
    PreCharge,
    /// PowerDeliveryReq (AC after ChargeParameterDiscovery, both after a renegotiation).
    PowerDelivery,
    /// ChargingStatusReq or PowerDeliveryReq (AC).
    AcChargeLoop,
    /// CurrentDemandReq or PowerDeliveryReq (DC).
    DcChargeLoop,
    /// SessionStopReq (AC after PowerDelivery(Stop)).
    AcPostCharge,
    /// WeldingDetectionReq or SessionStopReq (DC after PowerDelivery(Stop)).
    DcPostCharge,
    /// Nothing: the session is over.
    Ended,
}

impl SeccState {
    /// Whether `req` is allowed here.
    pub fn allows(self, req: Request) -> bool {
        use Request as R;
        use SeccState as S;
        matches!(
            (self, req),
            (S::SessionSetup, R::SessionSetup)
                | (S::ServiceDiscovery, R::ServiceDiscovery)
                | (
                    S::PaymentServiceSelection,
                    R::ServiceDetail | R::PaymentServiceSelection
                )
                | (
                    S::PaymentDetails,
                    R::PaymentDetails | R::CertificateInstallation | R::CertificateUpdate
                )
                | (S::Authorization, R::Authorization)
                | (S::ChargeParameterDiscovery, R::ChargeParameterDiscovery)
                | (S::CableCheck, R::CableCheck)
                | (S::PreCharge, R::PreCharge | R::PowerDelivery)
                | (S::PowerDelivery, R::PowerDelivery)
                | (S::AcChargeLoop, R::ChargingStatus | R::PowerDelivery)
                | (S::DcChargeLoop, R::CurrentDemand | R::PowerDelivery)
                | (S::AcPostCharge, R::SessionStop)
                | (S::DcPostCharge, R::WeldingDetection | R::SessionStop)
        )
    }

    /// Whether a PowerDeliveryReq with this `ChargeProgress` is allowed here:
    /// Start before the loop, Renegotiate in the loop, Stop in both.
    fn allows_progress(self, p: m::ChargeProgressType) -> bool {
        use SeccState as S;
        match p {
            m::ChargeProgressType::Start => matches!(self, S::PreCharge | S::PowerDelivery),
            m::ChargeProgressType::Renegotiate => matches!(self, S::AcChargeLoop | S::DcChargeLoop),
            m::ChargeProgressType::Stop => matches!(
                self,
                S::PreCharge | S::PowerDelivery | S::AcChargeLoop | S::DcChargeLoop
            ),
        }
    }
}

/// The ServiceID of the Certificate service (installation and update of
/// contract certificates), offered with Plug & Charge.
const CERTIFICATE_SERVICE: u16 = 2;

/// The Certificate service's parameter sets (ServiceDetailRes): 1
/// Installation, 2 Update.
fn certificate_parameter_sets() -> m::ServiceParameterListType {
    let set = |id: i16, what: &str| m::ParameterSetType {
        parameter_set_id: id,
        parameter: vec![m::ParameterType {
            name: "Service".into(),
            bool_value: None,
            byte_value: None,
            short_value: None,
            int_value: None,
            physical_value: None,
            string_value: Some(what.into()),
        }],
    };
    m::ServiceParameterListType {
        parameter_set: vec![set(1, "Installation"), set(2, "Update")],
    }
}

/// Whether `emaid` names the contract certificate `cert` (its CN, dashes
/// and case aside).
fn same_emaid(cert: &Cert, emaid: &str) -> bool {
    cert.common_name().is_some_and(|cn| {
        cn.replace('-', "")
            .eq_ignore_ascii_case(&emaid.replace('-', ""))
    })
}

fn pv(x: f64, unit: m::UnitSymbolType) -> m::PhysicalValueType {
    let (value, multiplier) = scale(x);
    m::PhysicalValueType {
        multiplier,
        unit,
        value,
    }
}

fn val(p: &m::PhysicalValueType) -> f64 {
    unscale(p.value, p.multiplier)
}

response_codes!(m);

/// Encodes a `V2G_Message` of the -2 schema with this header SessionID and body.
pub fn encode_message(session_id: &[u8], body: m::BodyType) -> Result<Vec<u8>, String> {
    let msg = m::Message::V2gMessage(Box::new(m::V2gMessage {
        header: m::MessageHeaderType {
            session_id: HexBinary(session_id.to_vec()),
            notification: None,
            signature: None,
        },
        body,
    }));
    let mut out = Vec::new();
    msg.encode(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn decode(exi: &[u8]) -> Result<m::V2gMessage, String> {
    match m::Message::decode(exi) {
        Ok(m::Message::V2gMessage(v)) => Ok(*v),
        Ok(other) => Err(format!("{} is not a V2G_Message", other.name())),
        Err(e) => Err(e.to_string()),
    }
}

fn iso2_mode(mode: EnergyMode) -> m::EnergyTransferModeType {
    match mode {
        EnergyMode::AcSinglePhaseCore => m::EnergyTransferModeType::AcSinglePhaseCore,
        EnergyMode::AcThreePhaseCore => m::EnergyTransferModeType::AcThreePhaseCore,
        EnergyMode::DcCore => m::EnergyTransferModeType::DcCore,
        EnergyMode::DcExtended => m::EnergyTransferModeType::DcExtended,
        EnergyMode::DcComboCore => m::EnergyTransferModeType::DcComboCore,
        EnergyMode::DcUnique => m::EnergyTransferModeType::DcUnique,
    }
}

fn mode_of(mode: m::EnergyTransferModeType) -> EnergyMode {
    match mode {
        m::EnergyTransferModeType::AcSinglePhaseCore => EnergyMode::AcSinglePhaseCore,
        m::EnergyTransferModeType::AcThreePhaseCore => EnergyMode::AcThreePhaseCore,
        m::EnergyTransferModeType::DcCore => EnergyMode::DcCore,
        m::EnergyTransferModeType::DcExtended => EnergyMode::DcExtended,
        m::EnergyTransferModeType::DcComboCore => EnergyMode::DcComboCore,
        m::EnergyTransferModeType::DcUnique => EnergyMode::DcUnique,
    }
}

fn iso2_isolation(i: Isolation) -> m::IsolationLevelType {
    match i {
        Isolation::Invalid => m::IsolationLevelType::Invalid,
        Isolation::Valid => m::IsolationLevelType::Valid,
        Isolation::Warning => m::IsolationLevelType::Warning,
        Isolation::Fault => m::IsolationLevelType::Fault,
        Isolation::NoImd => m::IsolationLevelType::NoIMD,
    }
}

fn is_ongoing(p: m::EVSEProcessingType) -> bool {
    p != m::EVSEProcessingType::Finished
}

/// The PMax of a tuple at `t` s from its start.
fn pmax_at(t: &ScheduleTuple, at: u32) -> f64 {
    t.entries
        .iter()
        .take_while(|(start, _)| *start <= at)
        .last()
        .or(t.entries.first())
        .map_or(0.0, |(_, p)| *p)
}

/// The SECC's side of an ISO 15118-2 session (after the handshake; made by
/// [`super::Secc`]). See the [module docs](self) for the sequence and codes.
#[derive(Debug)]
pub struct Secc {
    pub(crate) core: Core,
    config: SeccConfig,
    state: SeccState,
    session_id: Option<Vec<u8>>,
    evcc_id: Vec<u8>,
    mode: Option<EnergyMode>,
    authorization: Option<Authorization>,
    auth_asked: bool,
    schedules: Option<Vec<ScheduleTuple>>,
    schedules_asked: bool,
    /// The tuples of the last SAScheduleList sent.
    offered: Vec<ScheduleTuple>,
    tuple_id: Option<u8>,
    /// The EVSE asked for a renegotiation the EV has not begun.
    renegotiation: bool,
    /// Between PowerDelivery(Renegotiate) and PowerDelivery(Start).
    renegotiating: bool,
    cable_check_started: bool,
    energy: Energy,
    /// When the machine was made: `config.unix_time` is then.
    started: Instant,
    /// Plug & Charge: the contract of PaymentDetailsReq (its key, eMAID).
    contract: Option<(VerifyingKey, String)>,
    contract_status: Option<ContractStatus>,
    /// The signed AuthorizationReq verified.
    challenge_signed: bool,
    /// A CertificateInstallationReq waits for the backend's response.
    installing: bool,
    /// A CertificateUpdateReq waits for the backend's response.
    updating: bool,
    /// A MeteringReceiptReq is due (ReceiptRequired was sent).
    receipt_pending: bool,
    receipt_asked: bool,
}

impl Secc {
    pub(crate) fn new(config: SeccConfig, core: Core, now: Instant) -> Self {
        let mut s = Self {
            core,
            config,
            state: SeccState::SessionSetup,
            session_id: None,
            evcc_id: Vec::new(),
            mode: None,
            authorization: None,
            auth_asked: false,
            schedules: None,
            schedules_asked: false,
            offered: Vec::new(),
            tuple_id: None,
            renegotiation: false,
            renegotiating: false,
            cable_check_started: false,
            energy: Energy::default(),
            started: now,
            contract: None,
            contract_status: None,
            challenge_signed: false,
            installing: false,
            updating: false,
            receipt_pending: false,
            receipt_asked: false,
        };
        s.arm_sequence(now);
        s
    }

    /// Where the session stands.
    pub fn state(&self) -> SeccState {
        self.state
    }

    /// The session's id, after SessionSetup.
    pub fn session_id(&self) -> Option<&[u8]> {
        self.session_id.as_deref()
    }

    /// The energy transfer mode of the session, after ChargeParameterDiscovery.
    pub fn energy_mode(&self) -> Option<EnergyMode> {
        self.mode
    }

    /// The SAScheduleTupleID of the last PowerDelivery(Start).
    pub fn schedule_tuple_id(&self) -> Option<u8> {
        self.tuple_id
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

    pub(crate) fn handle_authorization(&mut self, _now: Instant, decision: Authorization) {
        self.authorization = Some(decision);
    }

    pub(crate) fn handle_schedules(&mut self, _now: Instant, schedules: Vec<ScheduleTuple>) {
        self.schedules = Some(schedules);
    }

    /// The eMAID of the contract the EV presented (Plug & Charge).
    pub fn emaid(&self) -> Option<&str> {
        self.contract.as_ref().map(|(_, e)| e.as_str())
    }

    pub(crate) fn handle_contract_status(&mut self, _now: Instant, status: ContractStatus) {
        self.contract_status = Some(status);
    }

    /// Plug & Charge: the eMAID of the contract PaymentDetailsReq
    /// presented and the SECC verified.
    pub fn contract_emaid(&self) -> Option<&str> {
        self.contract.as_ref().map(|(_, e)| e.as_str())
    }

    pub(crate) fn handle_certificate_installation(
        &mut self,
        now: Instant,
        installation: Option<CertificateInstallation>,
    ) {
        if !std::mem::take(&mut self.installing) {
            return;
        }
        let answer = installation.map(|mut i| {
            i.response.response_code = m::ResponseCodeType::OK;
            let body = m::BodyType {
                certificate_installation_res: Some(i.response),
                ..Default::default()
            };
            (body, i.signature)
        });
        self.certificate_answer(now, Request::CertificateInstallation, answer);
    }

    pub(crate) fn handle_certificate_update(
        &mut self,
        now: Instant,
        update: Option<CertificateUpdate>,
    ) {
        if !std::mem::take(&mut self.updating) {
            return;
        }
        let answer = update.map(|mut u| {
            u.response.response_code = m::ResponseCodeType::OK;
            let body = m::BodyType {
                certificate_update_res: Some(u.response),
                ..Default::default()
            };
            (body, u.signature)
        });
        self.certificate_answer(now, Request::CertificateUpdate, answer);
    }

    /// Sends the backend's signed answer to `req`, or
    /// `FAILED_NoCertificateAvailable` when it has none.
    fn certificate_answer(
        &mut self,
        now: Instant,
        req: Request,
        answer: Option<(m::BodyType, xmldsig::SignatureType)>,
    ) {
        if self.core.is_ended() {
            return;
        }
        let Some((body, signature)) = answer else {
            let code = m::ResponseCodeType::FailedNoCertificateAvailable;
            return self.fail(req, code, failed(code));
        };
        self.send_signed(body, Some(signature));
        if !self.core.is_ended() {
            self.arm_sequence(now);
        }
    }

    /// Unix time at `now` (the configured time plus the time since).
    fn unix_now(&self, now: Instant) -> u64 {
        self.config.unix_time + now.saturating_duration_since(self.started).as_secs()
    }

    /// A contract chain (PaymentDetailsReq, CertificateUpdateReq) checked
    /// at `now`: its leaf's key, or the response code that refuses it —
    /// `FAILED_CertificateExpired` for a certificate out of its validity,
    /// `FAILED_CertChainError` for any other chain fault and for an eMAID
    /// that is not the certificate's CN [V2G2-...].
    fn check_contract(
        &self,
        now: Instant,
        leaf: &[u8],
        sub_cas: &[Vec<u8>],
        emaid: &str,
    ) -> Result<VerifyingKey, m::ResponseCodeType> {
        let roots = self
            .config
            .pnc
            .as_ref()
            .map(|p| &p.mo_roots)
            .ok_or(m::ResponseCodeType::FailedCertChainError)?;
        let checked = pki::verify_chain(
            leaf,
            sub_cas,
            roots,
            self.unix_now(now),
            LeafUsage::Signature,
        )
        .and_then(|c| Ok((c.leaf.public_key()?, c.leaf)));
        match checked {
            Ok((key, cert)) if same_emaid(&cert, emaid) => Ok(key),
            Ok(_) => Err(m::ResponseCodeType::FailedCertChainError),
            Err(CertError::Expired { .. } | CertError::NotYetValid { .. }) => {
                Err(m::ResponseCodeType::FailedCertificateExpired)
            }
            Err(_) => Err(m::ResponseCodeType::FailedCertChainError),
        }
    }

    /// A header signature over `elements` that verifies with `key`.
    fn signature_ok(
        signature: Option<&xmldsig::SignatureType>,
        elements: Result<(String, Vec<u8>), String>,
        key: &VerifyingKey,
    ) -> bool {
        match (signature, elements) {
            (Some(sig), Ok((id, bytes))) => {
                pki::verify(sig, &[(id.as_str(), bytes.as_slice())], key).is_ok()
            }
            _ => false,
        }
    }

    pub(crate) fn request_renegotiation(&mut self) {
        if matches!(
            self.state,
            SeccState::AcChargeLoop | SeccState::DcChargeLoop
        ) {
            self.renegotiation = true;
        }
    }

    fn arm_sequence(&mut self, now: Instant) {
        self.core.arm_sequence(now, &self.config);
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.core.expire(now) {
            self.state = SeccState::Ended;
        }
    }

    fn is_dc(&self) -> bool {
        self.mode
            .or(self.config.energy_modes.first().copied())
            .is_some_and(EnergyMode::is_dc)
    }

    pub(crate) fn handle_message(&mut self, now: Instant, exi: &[u8]) {
        if self.core.is_ended() {
            return;
        }
        let msg = match decode(exi) {
            Ok(msg) => msg,
            Err(e) => return self.end(EndReason::Malformed(e)),
        };
        let Some(req) = Request::of(&msg.body) else {
            return self.end(EndReason::Malformed("not a request".into()));
        };
        let refusal = screen(
            self.state == SeccState::SessionSetup,
            &msg.header.session_id.0,
            self.session_id.as_ref(),
            self.state.allows(req) || (req == Request::MeteringReceipt && self.receipt_pending),
            &self.config.evse,
            self.is_dc()
                && matches!(
                    req,
                    Request::CableCheck | Request::PreCharge | Request::CurrentDemand
                ),
        );
        if let Some(r) = refusal {
            return self.fail(req, r.code(), r.reason());
        }
        let mut body = self.response(req, m::ResponseCodeType::OK);
        let b = msg.body;
        // `Request::of` found the field: never `None`
        macro_rules! take {
            ($field:ident) => {
                match b.$field {
                    Some(r) => r,
                    None => return self.end(EndReason::Malformed("empty request".into())),
                }
            };
        }
        match req {
            Request::SessionSetup => {
                self.core.timers.disarm(TimerKind::SeccCommunicationSetup);
                let (id, joined) = setup_session(&self.config, &msg.header.session_id.0);
                let code = if joined {
                    m::ResponseCodeType::OkOldSessionJoined
                } else {
                    m::ResponseCodeType::OkNewSessionEstablished
                };
                self.session_id = Some(id);
                self.evcc_id = take!(session_setup_req).evccid.0;
                if let Some(r) = body.session_setup_res.as_mut() {
                    r.response_code = code;
                }
                self.state = SeccState::ServiceDiscovery;
            }
            Request::ServiceDiscovery => self.state = SeccState::PaymentServiceSelection,
            Request::ServiceDetail => {
                let id = take!(service_detail_req).service_id;
                if id != 1 && !(id == CERTIFICATE_SERVICE && self.config.pnc.is_some()) {
                    let code = m::ResponseCodeType::FailedServiceIDInvalid;
                    return self.fail(req, code, failed(code));
                }
                if let Some(r) = body.service_detail_res.as_mut() {
                    r.service_id = id;
                    if id == CERTIFICATE_SERVICE {
                        r.service_parameter_list = Some(certificate_parameter_sets());
                    }
                }
            }
            Request::PaymentServiceSelection => {
                let r = take!(payment_service_selection_req);
                let ids: Vec<u16> = r
                    .selected_service_list
                    .selected_service
                    .iter()
                    .map(|s| s.service_id)
                    .collect();
                let contract = r.selected_payment_option == m::PaymentOptionType::Contract;
                let pnc = contract && self.config.pnc.is_some();
                // the Certificate service (installation 1 or update 2) goes with Contract
                let certificate_ok = |s: &m::SelectedServiceType| {
                    pnc && s.service_id == CERTIFICATE_SERVICE
                        && s.parameter_set_id.is_none_or(|p| p == 1 || p == 2)
                };
                let code = if !(r.selected_payment_option == m::PaymentOptionType::ExternalPayment
                    || pnc)
                {
                    Some(m::ResponseCodeType::FailedPaymentSelectionInvalid)
                } else if !ids.contains(&1) {
                    Some(m::ResponseCodeType::FailedNoChargeServiceSelected)
                } else if r
                    .selected_service_list
                    .selected_service
                    .iter()
                    .any(|s| s.service_id != 1 && !certificate_ok(s))
                {
                    Some(m::ResponseCodeType::FailedServiceSelectionInvalid)
                } else {
                    None
                };
                if let Some(code) = code {
                    return self.fail(req, code, failed(code));
                }
                self.state = if contract {
                    SeccState::PaymentDetails
                } else {
                    SeccState::Authorization
                };
            }
            Request::PaymentDetails => {
                let r = take!(payment_details_req);
                let (leaf, subs) = chain_parts(&r.contract_signature_cert_chain);
                if self.config.pnc.is_none() {
                    return self.end(EndReason::SequenceError);
                }
                let key = match self.check_contract(now, &leaf, &subs, &r.e_maid) {
                    Ok(k) => k,
                    Err(code) => return self.fail(req, code, failed(code)),
                };
                self.contract = Some((key, r.e_maid.clone()));
                self.core.evse(EvseRequest::AuthorizeContract {
                    emaid: r.e_maid,
                    certificate: leaf,
                    sub_cas: subs,
                });
                self.state = SeccState::Authorization;
            }
            Request::CertificateInstallation => {
                let r = take!(certificate_installation_req);
                let key = Cert::from_der(&r.oem_provisioning_cert.0).and_then(|c| c.public_key());
                let signed = key.as_ref().is_ok_and(|k| {
                    Self::signature_ok(
                        msg.header.signature.as_ref(),
                        fragment(
                            &r.id,
                            m::Fragment::CertificateInstallationReq(Box::new(r.clone())),
                        ),
                        k,
                    )
                });
                if !signed {
                    let code = m::ResponseCodeType::FailedSignatureError;
                    return self.fail(req, code, failed(code));
                }
                self.installing = true;
                self.core.evse(EvseRequest::InstallCertificate {
                    oem_provisioning_cert: r.oem_provisioning_cert.0.clone(),
                    root_ids: r
                        .list_of_root_certificate_i_ds
                        .root_certificate_id
                        .iter()
                        .map(|i| (i.x509_issuer_name.clone(), i.x509_serial_number))
                        .collect(),
                    exi: exi.to_vec(),
                });
                // answered by `handle_certificate_installation`
                self.arm_sequence(now);
                return;
            }
            Request::CertificateUpdate => {
                let r = take!(certificate_update_req);
                if self.config.pnc.is_none() {
                    return self.end(EndReason::SequenceError);
                }
                // the contract to replace: its chain to an MO root, still valid
                let (leaf, subs) = chain_parts(&r.contract_signature_cert_chain);
                let key = match self.check_contract(now, &leaf, &subs, &r.e_maid) {
                    Ok(k) => k,
                    Err(code) => return self.fail(req, code, failed(code)),
                };
                // signed by the contract's key [V2G2-771]
                let signed = Self::signature_ok(
                    msg.header.signature.as_ref(),
                    fragment(
                        &r.id,
                        m::Fragment::CertificateUpdateReq(Box::new(r.clone())),
                    ),
                    &key,
                );
                if !signed {
                    let code = m::ResponseCodeType::FailedSignatureError;
                    return self.fail(req, code, failed(code));
                }
                self.updating = true;
                self.core.evse(EvseRequest::UpdateCertificate {
                    emaid: r.e_maid.clone(),
                    certificate: leaf,
                    sub_cas: subs,
                    root_ids: r
                        .list_of_root_certificate_i_ds
                        .root_certificate_id
                        .iter()
                        .map(|i| (i.x509_issuer_name.clone(), i.x509_serial_number))
                        .collect(),
                    exi: exi.to_vec(),
                });
                // answered by `handle_certificate_update`
                self.arm_sequence(now);
                return;
            }
            Request::MeteringReceipt => {
                let r = take!(metering_receipt_req);
                let signed = self.contract.as_ref().is_some_and(|(k, _)| {
                    Self::signature_ok(
                        msg.header.signature.as_ref(),
                        fragment(
                            r.id.as_deref().unwrap_or_default(),
                            m::Fragment::MeteringReceiptReq(Box::new(r.clone())),
                        ),
                        k,
                    )
                });
                if !signed {
                    let code = m::ResponseCodeType::FailedMeteringSignatureNotValid;
                    return self.fail(req, code, failed(code));
                }
                self.receipt_pending = false;
            }
            Request::Authorization if self.contract.is_some() => {
                let r = take!(authorization_req);
                if !self.challenge_signed {
                    let pnc_challenge = self.config.pnc.as_ref().map(|p| p.gen_challenge.to_vec());
                    if r.gen_challenge.as_ref().map(|g| g.0.clone()) != pnc_challenge
                        || r.id.is_none()
                    {
                        let code = m::ResponseCodeType::FailedChallengeInvalid;
                        return self.fail(req, code, failed(code));
                    }
                    let signed = self.contract.as_ref().is_some_and(|(k, _)| {
                        Self::signature_ok(
                            msg.header.signature.as_ref(),
                            fragment(
                                r.id.as_deref().unwrap_or_default(),
                                m::Fragment::AuthorizationReq(Box::new(r.clone())),
                            ),
                            k,
                        )
                    });
                    if !signed {
                        let code = m::ResponseCodeType::FailedSignatureError;
                        return self.fail(req, code, failed(code));
                    }
                    self.challenge_signed = true;
                }
                match self.contract_status {
                    Some(ContractStatus::Accepted) => {
                        self.state = SeccState::ChargeParameterDiscovery
                    }
                    Some(ContractStatus::Revoked) => {
                        let code = m::ResponseCodeType::FailedCertificateRevoked;
                        return self.fail(req, code, failed(code));
                    }
                    Some(_) => {
                        return self.fail(
                            req,
                            m::ResponseCodeType::FAILED,
                            EndReason::AuthorizationRejected,
                        );
                    }
                    None => {
                        if let Some(r) = body.authorization_res.as_mut() {
                            r.evse_processing = m::EVSEProcessingType::Ongoing;
                        }
                    }
                }
            }
            Request::Authorization => match self.authorization {
                Some(Authorization::Accepted) => self.state = SeccState::ChargeParameterDiscovery,
                Some(Authorization::Rejected) => {
                    return self.fail(
                        req,
                        m::ResponseCodeType::FAILED,
                        EndReason::AuthorizationRejected,
                    );
                }
                None => {
                    self.core.evse_once(
                        &mut self.auth_asked,
                        EvseRequest::Authorize {
                            evcc_id: self.evcc_id.clone(),
                        },
                    );
                    if let Some(r) = body.authorization_res.as_mut() {
                        r.evse_processing = m::EVSEProcessingType::Ongoing;
                    }
                }
            },
            Request::ChargeParameterDiscovery => {
                let r = take!(charge_parameter_discovery_req);
                let mode = mode_of(r.requested_energy_transfer_mode);
                if !self.config.energy_modes.contains(&mode) || self.mode.is_some_and(|m| m != mode)
                {
                    let code = m::ResponseCodeType::FailedWrongEnergyTransferMode;
                    return self.fail(req, code, failed(code));
                }
                self.mode = Some(mode);
                if mode.is_dc() != r.dc_ev_charge_parameter.is_some()
                    || mode.is_dc() == r.ac_ev_charge_parameter.is_some()
                {
                    let code = m::ResponseCodeType::FailedWrongChargeParameter;
                    return self.fail(req, code, failed(code));
                }
                body = self.response(req, m::ResponseCodeType::OK);
                match self.schedules.clone() {
                    Some(s) => {
                        let mut tuples = self.tuples(&s);
                        if let Some(n) = r.max_entries_sa_schedule_tuple {
                            tuples.truncate(usize::from(n.max(1)));
                        }
                        if let Some(res) = body.charge_parameter_discovery_res.as_mut() {
                            res.sa_schedule_list = Some(schedule_list(&tuples));
                        }
                        self.offered = tuples;
                        self.state = if self.renegotiating || !mode.is_dc() {
                            SeccState::PowerDelivery
                        } else {
                            SeccState::CableCheck
                        };
                    }
                    None => {
                        if !self.schedules_asked {
                            self.schedules_asked = true;
                            let (departure_time, energy) =
                                match (&r.ac_ev_charge_parameter, &r.dc_ev_charge_parameter) {
                                    (Some(ac), _) => (ac.departure_time, Some(val(&ac.e_amount))),
                                    (_, Some(dc)) => {
                                        (dc.departure_time, dc.ev_energy_request.as_ref().map(val))
                                    }
                                    _ => (None, None),
                                };
                            self.core.evse(EvseRequest::Schedules {
                                max_entries: r.max_entries_sa_schedule_tuple,
                                departure_time,
                                energy_request_wh: energy,
                                renegotiation: self.renegotiating,
                            });
                        }
                        if let Some(res) = body.charge_parameter_discovery_res.as_mut() {
                            res.evse_processing = m::EVSEProcessingType::Ongoing;
                        }
                    }
                }
            }
            Request::CableCheck => {
                self.core
                    .evse_once(&mut self.cable_check_started, EvseRequest::StartCableCheck);
                match self.config.evse.isolation {
                    Isolation::Valid | Isolation::Warning => self.state = SeccState::PreCharge,
                    _ => {
                        if let Some(r) = body.cable_check_res.as_mut() {
                            r.evse_processing = m::EVSEProcessingType::Ongoing;
                            r.dc_evse_status.evse_status_code =
                                m::DcEVSEStatusCodeType::EvseIsolationMonitoringActive;
                        }
                    }
                }
            }
            Request::PreCharge => {
                let r = take!(pre_charge_req);
                self.core.evse(EvseRequest::Target {
                    voltage: val(&r.ev_target_voltage),
                    current: val(&r.ev_target_current),
                });
            }
            Request::PowerDelivery => {
                let r = take!(power_delivery_req);
                if !self.state.allows_progress(r.charge_progress) {
                    return self.fail(
                        req,
                        m::ResponseCodeType::FailedSequenceError,
                        EndReason::SequenceError,
                    );
                }
                let dc = self.is_dc();
                self.energy.pause();
                match r.charge_progress {
                    m::ChargeProgressType::Start => {
                        let Some(t) = self
                            .offered
                            .iter()
                            .find(|t| t.id == r.sa_schedule_tuple_id)
                            .cloned()
                        else {
                            let code = m::ResponseCodeType::FailedTariffSelectionInvalid;
                            return self.fail(req, code, failed(code));
                        };
                        let too_much = r.charging_profile.as_ref().is_some_and(|p| {
                            p.profile_entry.iter().any(|e| {
                                val(&e.charging_profile_entry_max_power)
                                    > pmax_at(&t, e.charging_profile_entry_start) + 1e-6
                            })
                        });
                        if too_much {
                            let code = m::ResponseCodeType::FailedChargingProfileInvalid;
                            return self.fail(req, code, failed(code));
                        }
                        self.tuple_id = Some(t.id);
                        if !self.renegotiating {
                            self.core.evse(EvseRequest::Power(true));
                        }
                        self.renegotiating = false;
                        self.state = if dc {
                            SeccState::DcChargeLoop
                        } else {
                            SeccState::AcChargeLoop
                        };
                    }
                    m::ChargeProgressType::Renegotiate => {
                        self.renegotiation = false;
                        self.renegotiating = true;
                        self.schedules = None;
                        self.schedules_asked = false;
                        self.state = SeccState::ChargeParameterDiscovery;
                    }
                    m::ChargeProgressType::Stop => {
                        self.core.evse(EvseRequest::Power(false));
                        self.state = if dc {
                            SeccState::DcPostCharge
                        } else {
                            SeccState::AcPostCharge
                        };
                    }
                }
                // the status of the answer after the notification is cleared
                let again = self.response(req, m::ResponseCodeType::OK);
                body.power_delivery_res = again.power_delivery_res;
            }
            Request::ChargingStatus => {
                if let Some(wh) = self.config.evse.meter_wh {
                    self.energy.meter(wh);
                }
            }
            Request::CurrentDemand => {
                let r = take!(current_demand_req);
                let e = &self.config.evse;
                self.energy.add(now, e.present_voltage, e.present_current);
                let (v, i) = (val(&r.ev_target_voltage), val(&r.ev_target_current));
                if let Some(res) = body.current_demand_res.as_mut() {
                    res.evse_current_limit_achieved = i >= e.max_current;
                    res.evse_voltage_limit_achieved = v >= e.max_voltage;
                    res.evse_power_limit_achieved = v * i >= e.max_power;
                }
                self.core.evse(EvseRequest::Target {
                    voltage: v.min(e.max_voltage),
                    current: i.min(e.max_current),
                });
            }
            Request::WeldingDetection => {}
            Request::SessionStop => {
                let r = take!(session_stop_req);
                self.send(body);
                let reason = match r.charging_session {
                    m::ChargingSessionType::Pause => EndReason::Paused {
                        session_id: self.session_id.clone().unwrap_or_default(),
                    },
                    m::ChargingSessionType::Terminate => EndReason::Finished,
                };
                return self.end(reason);
            }
        }
        self.ask_receipt(&mut body);
        self.send(body);
        if !self.core.is_ended() {
            self.arm_sequence(now);
        }
    }

    fn end(&mut self, reason: EndReason) {
        self.state = SeccState::Ended;
        self.core.end(reason);
    }

    /// Plug & Charge: `ReceiptRequired` in the first charge-loop answer
    /// with a meter reading; the EV's next request is MeteringReceiptReq.
    fn ask_receipt(&mut self, body: &mut m::BodyType) {
        let wanted = self.contract.is_some()
            && self.config.pnc.as_ref().is_some_and(|p| p.receipt_required)
            && !self.receipt_asked
            && self.config.evse.meter_wh.is_some();
        if !wanted {
            return;
        }
        let flag = if let Some(r) = body.charging_status_res.as_mut() {
            &mut r.receipt_required
        } else if let Some(r) = body.current_demand_res.as_mut() {
            &mut r.receipt_required
        } else {
            return;
        };
        *flag = Some(true);
        self.receipt_asked = true;
        self.receipt_pending = true;
    }

    fn send(&mut self, body: m::BodyType) {
        self.send_signed(body, None)
    }

    fn send_signed(&mut self, body: m::BodyType, signature: Option<xmldsig::SignatureType>) {
        let id = self.session_id.clone().unwrap_or_else(|| vec![0]);
        match encode_signed(&id, body, signature) {
            Ok(bytes) => self.core.transmit(bytes),
            Err(e) => self.end(EndReason::Malformed(e)),
        }
    }

    /// Answers `req` with `code` and ends the session.
    fn fail(&mut self, req: Request, code: m::ResponseCodeType, reason: EndReason) {
        let body = self.response(req, code);
        self.send(body);
        self.end(reason);
    }

    fn notification(&self) -> m::EVSENotificationType {
        let e = &self.config.evse;
        if e.emergency_stop || (self.is_dc() && e.isolation == Isolation::Fault) {
            m::EVSENotificationType::StopCharging
        } else if self.renegotiation {
            m::EVSENotificationType::ReNegotiation
        } else {
            m::EVSENotificationType::None
        }
    }

    fn dc_status(&self) -> m::DcEVSEStatusType {
        let e = &self.config.evse;
        let code = if e.emergency_stop {
            m::DcEVSEStatusCodeType::EvseEmergencyShutdown
        } else if e.isolation == Isolation::Fault {
            m::DcEVSEStatusCodeType::EvseMalfunction
        } else {
            m::DcEVSEStatusCodeType::EvseReady
        };
        m::DcEVSEStatusType {
            notification_max_delay: 0,
            evse_notification: self.notification(),
            evse_isolation_status: Some(iso2_isolation(e.isolation)),
            evse_status_code: code,
        }
    }

    fn ac_status(&self) -> m::AcEVSEStatusType {
        m::AcEVSEStatusType {
            notification_max_delay: 0,
            evse_notification: self.notification(),
            rcd: false,
        }
    }

    fn evse_id(&self) -> String {
        // [V2G2-...]: "ZZ00000" when the EVSE has no id
        if self.config.evse_id.len() < 7 {
            "ZZ00000".into()
        } else {
            self.config.evse_id.chars().take(37).collect()
        }
    }

    fn meter_info(&self) -> Option<m::MeterInfoType> {
        self.config.evse.meter_wh.map(|wh| m::MeterInfoType {
            meter_id: self.evse_id().chars().take(32).collect(),
            meter_reading: Some(wh),
            sig_meter_reading: None,
            meter_status: None,
            t_meter: None,
        })
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

    /// The response to `req` with `code`, every field from the EVSE state.
    fn response(&self, req: Request, code: m::ResponseCodeType) -> m::BodyType {
        let e = &self.config.evse;
        let dc = self.is_dc();
        let status = self.dc_status();
        let v = pv(e.present_voltage, m::UnitSymbolType::V);
        let i = pv(e.present_current, m::UnitSymbolType::A);
        let tuple_id = self.tuple_id.unwrap_or(1).max(1);
        let empty_chain = || m::CertificateChainType {
            id: None,
            certificate: Base64Binary(vec![0]),
            sub_certificates: None,
        };
        let mut b = m::BodyType::default();
        match req {
            Request::SessionSetup => {
                b.session_setup_res = Some(m::SessionSetupResType {
                    response_code: code,
                    evseid: self.evse_id(),
                    evse_time_stamp: None,
                })
            }
            Request::ServiceDiscovery => {
                let modes = self.config.energy_modes.iter().map(|m| iso2_mode(*m));
                b.service_discovery_res = Some(m::ServiceDiscoveryResType {
                    response_code: code,
                    payment_option_list: m::PaymentOptionListType {
                        payment_option: if self.config.pnc.is_some() {
                            vec![
                                m::PaymentOptionType::Contract,
                                m::PaymentOptionType::ExternalPayment,
                            ]
                        } else {
                            vec![m::PaymentOptionType::ExternalPayment]
                        },
                    },
                    charge_service: m::ChargeServiceType {
                        service_id: 1,
                        service_name: None,
                        service_category: m::ServiceCategoryType::EVCharging,
                        service_scope: None,
                        free_service: false,
                        supported_energy_transfer_mode: m::SupportedEnergyTransferModeType {
                            energy_transfer_mode: if self.config.energy_modes.is_empty() {
                                vec![m::EnergyTransferModeType::DcExtended]
                            } else {
                                modes.take(6).collect()
                            },
                        },
                    },
                    // Plug & Charge: the Certificate service (installation, update)
                    service_list: self.config.pnc.is_some().then(|| m::ServiceListType {
                        service: vec![m::ServiceType {
                            service_id: CERTIFICATE_SERVICE,
                            service_name: None,
                            service_category: m::ServiceCategoryType::ContractCertificate,
                            service_scope: None,
                            free_service: true,
                        }],
                    }),
                })
            }
            Request::ServiceDetail => {
                b.service_detail_res = Some(m::ServiceDetailResType {
                    response_code: code,
                    service_id: 1,
                    service_parameter_list: None,
                })
            }
            Request::PaymentServiceSelection => {
                b.payment_service_selection_res = Some(m::PaymentServiceSelectionResType {
                    response_code: code,
                })
            }
            Request::PaymentDetails => {
                b.payment_details_res = Some(m::PaymentDetailsResType {
                    response_code: code,
                    gen_challenge: Base64Binary(
                        self.config
                            .pnc
                            .as_ref()
                            .map_or(vec![0; 16], |p| p.gen_challenge.to_vec()),
                    ),
                    evse_time_stamp: self.config.unix_time as i64,
                })
            }
            Request::Authorization => {
                b.authorization_res = Some(m::AuthorizationResType {
                    response_code: code,
                    evse_processing: m::EVSEProcessingType::Finished,
                })
            }
            Request::ChargeParameterDiscovery => {
                b.charge_parameter_discovery_res = Some(m::ChargeParameterDiscoveryResType {
                    response_code: code,
                    evse_processing: m::EVSEProcessingType::Finished,
                    sa_schedule_list: None,
                    ac_evse_charge_parameter: (!dc).then(|| m::AcEVSEChargeParameterType {
                        ac_evse_status: self.ac_status(),
                        evse_nominal_voltage: pv(e.nominal_voltage, m::UnitSymbolType::V),
                        evse_max_current: pv(e.max_current, m::UnitSymbolType::A),
                    }),
                    dc_evse_charge_parameter: dc.then(|| m::DcEVSEChargeParameterType {
                        dc_evse_status: status.clone(),
                        evse_maximum_current_limit: pv(e.max_current, m::UnitSymbolType::A),
                        evse_maximum_power_limit: pv(e.max_power, m::UnitSymbolType::W),
                        evse_maximum_voltage_limit: pv(e.max_voltage, m::UnitSymbolType::V),
                        evse_minimum_current_limit: pv(e.min_current, m::UnitSymbolType::A),
                        evse_minimum_voltage_limit: pv(e.min_voltage, m::UnitSymbolType::V),
                        evse_current_regulation_tolerance: None,
                        evse_peak_current_ripple: pv(e.peak_current_ripple, m::UnitSymbolType::A),
                        evse_energy_to_be_delivered: None,
                    }),
                })
            }
            Request::PowerDelivery => {
                b.power_delivery_res = Some(m::PowerDeliveryResType {
                    response_code: code,
                    ac_evse_status: (!dc).then(|| self.ac_status()),
                    dc_evse_status: dc.then(|| status.clone()),
                })
            }
            Request::ChargingStatus => {
                b.charging_status_res = Some(m::ChargingStatusResType {
                    response_code: code,
                    evseid: self.evse_id(),
                    sa_schedule_tuple_id: tuple_id,
                    evse_max_current: Some(pv(e.max_current, m::UnitSymbolType::A)),
                    meter_info: self.meter_info(),
                    receipt_required: Some(false),
                    ac_evse_status: self.ac_status(),
                })
            }
            Request::MeteringReceipt => {
                b.metering_receipt_res = Some(m::MeteringReceiptResType {
                    response_code: code,
                    ac_evse_status: (!dc).then(|| self.ac_status()),
                    dc_evse_status: dc.then(|| status.clone()),
                })
            }
            Request::CertificateInstallation => {
                b.certificate_installation_res = Some(m::CertificateInstallationResType {
                    response_code: code,
                    sa_provisioning_certificate_chain: empty_chain(),
                    contract_signature_cert_chain: empty_chain(),
                    contract_signature_encrypted_private_key:
                        m::ContractSignatureEncryptedPrivateKeyType {
                            id: "id1".into(),
                            value: Base64Binary(vec![0; 48]),
                        },
                    d_hpublickey: m::DiffieHellmanPublickeyType {
                        id: "id2".into(),
                        value: Base64Binary(vec![0; 65]),
                    },
                    e_maid: m::EMAIDType {
                        id: "id3".into(),
                        value: "DEEVP0000000001".into(),
                    },
                })
            }
            Request::CertificateUpdate => {
                b.certificate_update_res = Some(m::CertificateUpdateResType {
                    response_code: code,
                    sa_provisioning_certificate_chain: empty_chain(),
                    contract_signature_cert_chain: empty_chain(),
                    contract_signature_encrypted_private_key:
                        m::ContractSignatureEncryptedPrivateKeyType {
                            id: "id1".into(),
                            value: Base64Binary(vec![0; 48]),
                        },
                    d_hpublickey: m::DiffieHellmanPublickeyType {
                        id: "id2".into(),
                        value: Base64Binary(vec![0; 65]),
                    },
                    e_maid: m::EMAIDType {
                        id: "id3".into(),
                        value: "DEEVP0000000001".into(),
                    },
                    retry_counter: None,
                })
            }
            Request::CableCheck => {
                b.cable_check_res = Some(m::CableCheckResType {
                    response_code: code,
                    dc_evse_status: status,
                    evse_processing: m::EVSEProcessingType::Finished,
                })
            }
            Request::PreCharge => {
                b.pre_charge_res = Some(m::PreChargeResType {
                    response_code: code,
                    dc_evse_status: status,
                    evse_present_voltage: v,
                })
            }
            Request::CurrentDemand => {
                b.current_demand_res = Some(m::CurrentDemandResType {
                    response_code: code,
                    dc_evse_status: status,
                    evse_present_voltage: v,
                    evse_present_current: i,
                    evse_current_limit_achieved: false,
                    evse_voltage_limit_achieved: false,
                    evse_power_limit_achieved: false,
                    evse_maximum_voltage_limit: Some(pv(e.max_voltage, m::UnitSymbolType::V)),
                    evse_maximum_current_limit: Some(pv(e.max_current, m::UnitSymbolType::A)),
                    evse_maximum_power_limit: Some(pv(e.max_power, m::UnitSymbolType::W)),
                    evseid: self.evse_id(),
                    sa_schedule_tuple_id: tuple_id,
                    meter_info: self.meter_info(),
                    receipt_required: Some(false),
                })
            }
            Request::WeldingDetection => {
                b.welding_detection_res = Some(m::WeldingDetectionResType {
                    response_code: code,
                    dc_evse_status: status,
                    evse_present_voltage: v,
                })
            }
            Request::SessionStop => {
                b.session_stop_res = Some(m::SessionStopResType {
                    response_code: code,
                })
            }
        }
        b
    }
}

fn schedule_list(tuples: &[ScheduleTuple]) -> m::SAScheduleListType {
    m::SAScheduleListType {
        sa_schedule_tuple: tuples
            .iter()
            .map(|t| m::SAScheduleTupleType {
                sa_schedule_tuple_id: t.id,
                p_max_schedule: m::PMaxScheduleType {
                    p_max_schedule_entry: t
                        .entries
                        .iter()
                        .enumerate()
                        .map(|(i, (start, p))| m::PMaxScheduleEntryType {
                            relative_time_interval: Some(m::RelativeTimeIntervalType {
                                start: *start,
                                duration: (i + 1 == t.entries.len())
                                    .then_some(t.duration.saturating_sub(*start).max(1)),
                            }),
                            p_max: pv(*p, m::UnitSymbolType::W),
                        })
                        .collect(),
                },
                sales_tariff: None,
            })
            .collect(),
    }
}

// ---- EVCC ----

/// The EVCC's side of an ISO 15118-2 EIM session, AC or DC by
/// [`EvccConfig::energy_mode`] (after the handshake; made by [`super::Evcc`]).
///
/// It sends the next request as soon as an answer allows it, but the
/// repeated ones (after `Ongoing`, the PreCharge and charge loops) after
/// [`EvccConfig::loop_interval`]. It takes the first tuple of the
/// SAScheduleList and sends PowerDelivery(Start) with its id and a
/// ChargingProfile of one entry: the smaller of the EV's maximum power and
/// the tuple's first PMax. `EVSENotification=StopCharging` stops charging,
/// `ReNegotiation` sends PowerDelivery(Renegotiate), ChargeParameterDiscovery
/// and PowerDelivery(Start) again. It does not check the offered energy
/// transfer modes: the SECC's ChargeParameterDiscoveryRes decides.
#[derive(Debug)]
pub struct Evcc {
    pub(crate) core: Core,
    config: EvccConfig,
    session_id: Option<Vec<u8>>,
    awaiting: Option<Request>,
    next: Option<Request>,
    stop: Option<StopKind>,
    charging: bool,
    /// The SECC asked for a renegotiation: PowerDelivery(Renegotiate) next.
    renegotiate: bool,
    /// After PowerDelivery(Renegotiate), until PowerDelivery(Start).
    renegotiating: bool,
    /// The ChargeProgress of the last PowerDeliveryReq.
    progress: m::ChargeProgressType,
    /// The SessionStop kind sent.
    stop_sent: StopKind,
    tuple: Option<(u8, f64)>,
    nominal_voltage: f64,
    /// AC: the EVSE's EVSEMaxCurrent (ChargeParameterDiscoveryRes, then
    /// each ChargingStatusRes that has it).
    ac_max_current: f64,
    /// AC: a ChargingStatusRes carried a meter reading (the meter counts).
    metered: bool,
    loops: u32,
    renegotiations: u32,
    energy: Energy,
    /// When the machine was made: `config.unix_time` is then.
    started: Option<Instant>,
    /// Plug & Charge chosen (the SECC offered `Contract`).
    pnc: bool,
    /// The contract installed by CertificateInstallation or renewed by
    /// CertificateUpdate.
    installed: Option<Contract>,
    /// `installed` came by CertificateUpdate.
    renewed: bool,
    /// Plug & Charge: CertificateInstallation or CertificateUpdate before
    /// PaymentDetails (decided at ServiceDiscoveryRes), and whether the
    /// SECC offered the Certificate service to select for it.
    certificate_step: Option<Request>,
    certificate_service: bool,
    gen_challenge: Option<Vec<u8>>,
    /// The charge-loop answer asked for a MeteringReceipt: its meter info
    /// and the request the loop goes on with.
    receipt: Option<(m::MeterInfoType, Request)>,
}

/// What a CertificateInstallationRes or CertificateUpdateRes delivers.
struct Delivered<'a> {
    sa_chain: &'a m::CertificateChainType,
    /// The four signed elements, `(Id, EXI fragment)`.
    fragments: Vec<(String, Vec<u8>)>,
    signature: Option<&'a xmldsig::SignatureType>,
    encrypted_key: &'a m::ContractSignatureEncryptedPrivateKeyType,
    dh_public_key: &'a m::DiffieHellmanPublickeyType,
    emaid: &'a m::EMAIDType,
    contract_chain: &'a m::CertificateChainType,
}

impl Evcc {
    pub(crate) fn new(config: EvccConfig, core: Core, now: Instant) -> Self {
        let mut s = Self::idle(config, core);
        s.started = Some(now);
        s.send(now, Request::SessionSetup);
        s
    }

    fn idle(config: EvccConfig, core: Core) -> Self {
        Self {
            core,
            config,
            session_id: None,
            awaiting: None,
            next: None,
            stop: None,
            charging: false,
            renegotiate: false,
            renegotiating: false,
            progress: m::ChargeProgressType::Start,
            stop_sent: StopKind::Terminate,
            tuple: None,
            nominal_voltage: 0.0,
            ac_max_current: 0.0,
            metered: false,
            loops: 0,
            renegotiations: 0,
            energy: Energy::default(),
            started: None,
            pnc: false,
            installed: None,
            renewed: false,
            certificate_step: None,
            certificate_service: false,
            gen_challenge: None,
            receipt: None,
        }
    }

    /// The eMAID of the contract the session paid by (Plug & Charge
    /// chosen and PaymentDetails sent).
    pub fn contract_emaid(&self) -> Option<&str> {
        self.pnc
            .then(|| self.contract().map(|c| c.emaid.as_str()))
            .flatten()
    }

    /// The contract the EVCC uses (the one installed in this session, or
    /// the configured one).
    pub fn contract(&self) -> Option<&Contract> {
        self.installed
            .as_ref()
            .or_else(|| self.config.pnc.as_ref()?.contract.as_ref())
    }

    /// The contract installed by CertificateInstallation, or renewed by
    /// CertificateUpdate, in this session.
    pub fn installed_contract(&self) -> Option<&Contract> {
        self.installed.as_ref()
    }

    /// Whether [`Evcc::installed_contract`] renewed the car's contract
    /// (CertificateUpdate) rather than installing a first one.
    pub fn contract_renewed(&self) -> bool {
        self.renewed && self.installed.is_some()
    }

    /// What comes before PaymentDetails with Plug & Charge at `now`:
    /// CertificateInstallation without a contract, CertificateUpdate for
    /// one that expires within [`super::EvPnc::renew_within`] (and has a
    /// key to sign the request with), else nothing.
    fn certificate_step_at(&self, now: Instant) -> Option<Request> {
        let pnc = self.config.pnc.as_ref()?;
        let Some(contract) = self.contract() else {
            return Some(Request::CertificateInstallation);
        };
        let within = pnc.renew_within?;
        let (_, not_after) = Cert::from_der(&contract.certificate).ok()?.validity();
        (not_after <= self.unix_now(now).saturating_add(within))
            .then_some(Request::CertificateUpdate)
    }

    fn unix_now(&self, now: Instant) -> u64 {
        self.config.unix_time
            + self
                .started
                .map_or(0, |s| now.saturating_duration_since(s).as_secs())
    }

    /// The header signature a PnC request carries: AuthorizationReq,
    /// MeteringReceiptReq and CertificateUpdateReq by the contract key,
    /// CertificateInstallationReq by the OEM provisioning key.
    fn signature(&self, b: &m::BodyType) -> Result<Option<xmldsig::SignatureType>, String> {
        let (key, element) =
            if let Some(r) = b.authorization_req.as_ref().filter(|r| r.id.is_some()) {
                let id = r.id.clone().unwrap_or_default();
                (
                    self.contract().map(|c| c.key.clone()),
                    fragment(&id, m::Fragment::AuthorizationReq(Box::new(r.clone())))?,
                )
            } else if let Some(r) = &b.metering_receipt_req {
                let id = r.id.clone().unwrap_or_default();
                (
                    self.contract().map(|c| c.key.clone()),
                    fragment(&id, m::Fragment::MeteringReceiptReq(Box::new(r.clone())))?,
                )
            } else if let Some(r) = &b.certificate_update_req {
                (
                    self.contract().map(|c| c.key.clone()),
                    fragment(
                        &r.id,
                        m::Fragment::CertificateUpdateReq(Box::new(r.clone())),
                    )?,
                )
            } else if let Some(r) = &b.certificate_installation_req {
                (
                    self.config
                        .pnc
                        .as_ref()
                        .and_then(|p| p.provisioning.as_ref())
                        .map(|p| p.key.clone()),
                    fragment(
                        &r.id,
                        m::Fragment::CertificateInstallationReq(Box::new(r.clone())),
                    )?,
                )
            } else {
                return Ok(None);
            };
        let key = key.ok_or("no key to sign with")?;
        let key = pki::SigningKey::p256_from_bytes(&key).map_err(|e| e.to_string())?;
        pki::sign(&key, &[(element.0.as_str(), element.1.as_slice())])
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// Checks a CertificateInstallationRes and takes its contract (its key
    /// decrypted with the OEM provisioning key).
    fn install(
        &self,
        now: Instant,
        r: &m::CertificateInstallationResType,
        signature: Option<&xmldsig::SignatureType>,
    ) -> Result<Contract, String> {
        let pnc = self.config.pnc.as_ref().ok_or("no PnC configuration")?;
        let prov = pnc.provisioning.as_ref().ok_or("no provisioning key")?;
        let frags = installation_fragments(r).map_err(|e| e.to_string())?;
        self.take_contract(
            now,
            Delivered {
                sa_chain: &r.sa_provisioning_certificate_chain,
                fragments: frags,
                signature,
                encrypted_key: &r.contract_signature_encrypted_private_key,
                dh_public_key: &r.d_hpublickey,
                emaid: &r.e_maid,
                contract_chain: &r.contract_signature_cert_chain,
            },
            &prov.key,
        )
    }

    /// Checks a CertificateUpdateRes and takes its contract (its key
    /// decrypted with the key of the contract it replaces).
    fn update(
        &self,
        now: Instant,
        r: &m::CertificateUpdateResType,
        signature: Option<&xmldsig::SignatureType>,
    ) -> Result<Contract, String> {
        let old = self.contract().ok_or("no contract to update")?;
        let frags = update_fragments(r).map_err(|e| e.to_string())?;
        self.take_contract(
            now,
            Delivered {
                sa_chain: &r.sa_provisioning_certificate_chain,
                fragments: frags,
                signature,
                encrypted_key: &r.contract_signature_encrypted_private_key,
                dh_public_key: &r.d_hpublickey,
                emaid: &r.e_maid,
                contract_chain: &r.contract_signature_cert_chain,
            },
            &old.key,
        )
    }

    /// The SA provisioning chain ends at a V2G root the car trusts, its
    /// leaf signed the four elements, and the key decrypted with
    /// `receiver_key` belongs to the delivered certificate.
    fn take_contract(
        &self,
        now: Instant,
        d: Delivered<'_>,
        receiver_key: &[u8],
    ) -> Result<Contract, String> {
        let pnc = self.config.pnc.as_ref().ok_or("no PnC configuration")?;
        let (leaf, subs) = chain_parts(d.sa_chain);
        let sa = pki::verify_chain(
            &leaf,
            &subs,
            &pnc.v2g_roots,
            self.unix_now(now),
            LeafUsage::Signature,
        )
        .map_err(|e| format!("FAILED_CertChainError: {e}"))?;
        let sig = d.signature.ok_or("FAILED_SignatureError: unsigned")?;
        let key = sa.leaf.public_key().map_err(|e| e.to_string())?;
        pki::verify(sig, &as_refs(&d.fragments), &key)
            .map_err(|e| format!("FAILED_SignatureError: {e}"))?;
        let scalar = pki::decrypt_contract_key(
            &d.encrypted_key.value.0,
            &d.dh_public_key.value.0,
            receiver_key,
        )
        .map_err(|e| e.to_string())?;
        let (cert, sub_cas) = chain_parts(d.contract_chain);
        let parsed = Cert::from_der(&cert).map_err(|e| e.to_string())?;
        pki::check_key_pair(&scalar, &parsed).map_err(|e| e.to_string())?;
        Ok(Contract::new(d.emaid.value.clone(), cert, sub_cas, scalar))
    }

    pub(crate) fn session_id(&self) -> Option<&[u8]> {
        self.session_id.as_deref()
    }
    pub(crate) fn set_ev(&mut self, ev: EvStatus) {
        self.config.ev = ev;
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
    /// Renegotiations done (PowerDelivery(Renegotiate) answered).
    pub fn renegotiations(&self) -> u32 {
        self.renegotiations
    }
    /// The SAScheduleTupleID chosen, after ChargeParameterDiscovery.
    pub fn schedule_tuple_id(&self) -> Option<u8> {
        self.tuple.map(|(id, _)| id)
    }

    /// The first PMax (W) of the tuple chosen, after ChargeParameterDiscovery.
    pub fn schedule_pmax(&self) -> Option<f64> {
        self.tuple.map(|(_, pmax)| pmax)
    }

    fn dc(&self) -> bool {
        self.config.energy_mode.is_dc()
    }

    /// AC: the current the EV draws, all phases together (A): its maximum
    /// per phase, at most the EVSE's, times its phases, capped so that
    /// nominal voltage × current stays within the schedule's PMax.
    fn ac_drawn_current(&self) -> f64 {
        let phases = match self.config.energy_mode {
            EnergyMode::AcSinglePhaseCore => 1.0,
            _ => 3.0,
        };
        let per_phase = self.config.ev.max_current.min(self.ac_max_current).max(0.0);
        let mut current = per_phase * phases;
        if let Some((_, pmax)) = self.tuple {
            if self.nominal_voltage > 0.0 && pmax > 0.0 {
                current = current.min(pmax / self.nominal_voltage);
            }
        }
        current
    }

    /// DC: the current the EV asks for, capped so that its target voltage
    /// × current stays within the schedule's PMax (the EV follows the SA
    /// schedule it chose).
    fn dc_target_current(&self) -> f64 {
        super::common::scheduled_current(&self.config.ev, self.schedule_pmax())
    }

    fn ev_status(&self) -> m::DcEVStatusType {
        m::DcEVStatusType {
            ev_ready: true,
            ev_error_code: m::DcEVErrorCodeType::NoERROR,
            evresssoc: self.config.ev.soc.min(100),
        }
    }

    fn next_progress(&self) -> m::ChargeProgressType {
        if self.stop.is_some() {
            m::ChargeProgressType::Stop
        } else if self.renegotiate {
            m::ChargeProgressType::Renegotiate
        } else {
            m::ChargeProgressType::Start
        }
    }

    fn body(&self, req: Request) -> m::BodyType {
        let ev = &self.config.ev;
        let mut b = m::BodyType::default();
        match req {
            Request::SessionSetup => {
                b.session_setup_req = Some(m::SessionSetupReqType {
                    evccid: HexBinary(self.config.evcc_id.clone()),
                })
            }
            Request::ServiceDiscovery => {
                b.service_discovery_req = Some(m::ServiceDiscoveryReqType {
                    service_scope: None,
                    service_category: Some(m::ServiceCategoryType::EVCharging),
                })
            }
            Request::PaymentServiceSelection => {
                b.payment_service_selection_req = Some(m::PaymentServiceSelectionReqType {
                    selected_payment_option: if self.pnc {
                        m::PaymentOptionType::Contract
                    } else {
                        m::PaymentOptionType::ExternalPayment
                    },
                    selected_service_list: m::SelectedServiceListType {
                        selected_service: std::iter::once(m::SelectedServiceType {
                            service_id: 1,
                            parameter_set_id: None,
                        })
                        .chain(self.certificate_selection())
                        .collect(),
                    },
                })
            }
            Request::Authorization => {
                b.authorization_req = Some(m::AuthorizationReqType {
                    id: self.gen_challenge.is_some().then(|| "ID1".into()),
                    gen_challenge: self.gen_challenge.clone().map(Base64Binary),
                })
            }
            Request::PaymentDetails => {
                if let Some(c) = self.contract() {
                    b.payment_details_req = Some(m::PaymentDetailsReqType {
                        e_maid: c.emaid.clone(),
                        contract_signature_cert_chain: m::CertificateChainType {
                            id: None,
                            certificate: Base64Binary(c.certificate.clone()),
                            sub_certificates: (!c.sub_cas.is_empty()).then(|| {
                                m::SubCertificatesType {
                                    certificate: c
                                        .sub_cas
                                        .iter()
                                        .cloned()
                                        .map(Base64Binary)
                                        .collect(),
                                }
                            }),
                        },
                    })
                }
            }
            Request::CertificateInstallation => {
                if let Some(pnc) = &self.config.pnc {
                    b.certificate_installation_req = Some(m::CertificateInstallationReqType {
                        id: "ID1".into(),
                        oem_provisioning_cert: Base64Binary(
                            pnc.provisioning
                                .as_ref()
                                .map(|p| p.certificate.clone())
                                .unwrap_or_default(),
                        ),
                        list_of_root_certificate_i_ds: m::ListOfRootCertificateIDsType {
                            root_certificate_id: pnc.v2g_roots.root_ids(),
                        },
                    })
                }
            }
            Request::CertificateUpdate => {
                if let (Some(pnc), Some(c)) = (&self.config.pnc, self.contract()) {
                    b.certificate_update_req = Some(m::CertificateUpdateReqType {
                        id: "ID1".into(),
                        contract_signature_cert_chain: m::CertificateChainType {
                            id: None,
                            certificate: Base64Binary(c.certificate.clone()),
                            sub_certificates: (!c.sub_cas.is_empty()).then(|| {
                                m::SubCertificatesType {
                                    certificate: c
                                        .sub_cas
                                        .iter()
                                        .cloned()
                                        .map(Base64Binary)
                                        .collect(),
                                }
                            }),
                        },
                        e_maid: c.emaid.clone(),
                        list_of_root_certificate_i_ds: m::ListOfRootCertificateIDsType {
                            root_certificate_id: pnc.v2g_roots.root_ids(),
                        },
                    })
                }
            }
            Request::MeteringReceipt => {
                if let Some((info, _)) = &self.receipt {
                    b.metering_receipt_req = Some(m::MeteringReceiptReqType {
                        id: Some("ID1".into()),
                        session_id: HexBinary(self.session_id.clone().unwrap_or_default()),
                        sa_schedule_tuple_id: self.tuple.map(|(id, _)| id),
                        meter_info: info.clone(),
                    })
                }
            }
            Request::ChargeParameterDiscovery => {
                let dc = self.dc();
                b.charge_parameter_discovery_req = Some(m::ChargeParameterDiscoveryReqType {
                    max_entries_sa_schedule_tuple: None,
                    requested_energy_transfer_mode: iso2_mode(self.config.energy_mode),
                    ac_ev_charge_parameter: (!dc).then(|| m::AcEVChargeParameterType {
                        departure_time: ev.departure_time,
                        e_amount: pv(ev.energy_request_wh, m::UnitSymbolType::Wh),
                        ev_max_voltage: pv(ev.max_voltage, m::UnitSymbolType::V),
                        ev_max_current: pv(ev.max_current, m::UnitSymbolType::A),
                        ev_min_current: pv(ev.max_current.min(6.0), m::UnitSymbolType::A),
                    }),
                    dc_ev_charge_parameter: dc.then(|| m::DcEVChargeParameterType {
                        departure_time: ev.departure_time,
                        dc_ev_status: self.ev_status(),
                        ev_maximum_current_limit: pv(ev.max_current, m::UnitSymbolType::A),
                        ev_maximum_power_limit: Some(pv(ev.max_power, m::UnitSymbolType::W)),
                        ev_maximum_voltage_limit: pv(ev.max_voltage, m::UnitSymbolType::V),
                        ev_energy_capacity: Some(pv(ev.battery_capacity_wh, m::UnitSymbolType::Wh)),
                        ev_energy_request: Some(pv(ev.energy_request_wh, m::UnitSymbolType::Wh)),
                        full_soc: Some(100),
                        bulk_soc: Some(80),
                    }),
                })
            }
            Request::CableCheck => {
                b.cable_check_req = Some(m::CableCheckReqType {
                    dc_ev_status: self.ev_status(),
                })
            }
            Request::PreCharge => {
                b.pre_charge_req = Some(m::PreChargeReqType {
                    dc_ev_status: self.ev_status(),
                    ev_target_voltage: pv(ev.target_voltage, m::UnitSymbolType::V),
                    ev_target_current: pv(2.0, m::UnitSymbolType::A),
                })
            }
            Request::PowerDelivery => {
                let progress = self.next_progress();
                let (id, pmax) = self.tuple.unwrap_or((1, ev.max_power));
                b.power_delivery_req = Some(m::PowerDeliveryReqType {
                    charge_progress: progress,
                    sa_schedule_tuple_id: id,
                    charging_profile: (progress == m::ChargeProgressType::Start).then(|| {
                        m::ChargingProfileType {
                            profile_entry: vec![m::ProfileEntryType {
                                charging_profile_entry_start: 0,
                                charging_profile_entry_max_power: pv(
                                    ev.max_power.min(pmax),
                                    m::UnitSymbolType::W,
                                ),
                                charging_profile_entry_max_number_of_phases_in_use: None,
                            }],
                        }
                    }),
                    dc_ev_power_delivery_parameter: self.dc().then(|| {
                        m::DcEVPowerDeliveryParameterType {
                            dc_ev_status: self.ev_status(),
                            bulk_charging_complete: None,
                            charging_complete: progress == m::ChargeProgressType::Stop,
                        }
                    }),
                })
            }
            Request::ChargingStatus => b.charging_status_req = Some(m::ChargingStatusReqType {}),
            Request::CurrentDemand => {
                b.current_demand_req = Some(m::CurrentDemandReqType {
                    dc_ev_status: self.ev_status(),
                    ev_target_current: pv(self.dc_target_current(), m::UnitSymbolType::A),
                    ev_maximum_voltage_limit: Some(pv(ev.max_voltage, m::UnitSymbolType::V)),
                    ev_maximum_current_limit: Some(pv(ev.max_current, m::UnitSymbolType::A)),
                    ev_maximum_power_limit: Some(pv(ev.max_power, m::UnitSymbolType::W)),
                    bulk_charging_complete: None,
                    charging_complete: ev.charging_complete,
                    remaining_time_to_full_so_c: None,
                    remaining_time_to_bulk_so_c: None,
                    ev_target_voltage: pv(ev.target_voltage, m::UnitSymbolType::V),
                })
            }
            Request::WeldingDetection => {
                b.welding_detection_req = Some(m::WeldingDetectionReqType {
                    dc_ev_status: self.ev_status(),
                })
            }
            Request::SessionStop => {
                b.session_stop_req = Some(m::SessionStopReqType {
                    charging_session: match self.stop {
                        Some(StopKind::Pause) => m::ChargingSessionType::Pause,
                        _ => m::ChargingSessionType::Terminate,
                    },
                })
            }
            // never sent
            Request::ServiceDetail => {}
        }
        b
    }

    /// The Certificate service with its parameter set (1 installation, 2
    /// update) when a certificate step comes and the SECC offered it.
    fn certificate_selection(&self) -> Option<m::SelectedServiceType> {
        let set = match self.certificate_step? {
            Request::CertificateInstallation => 1,
            Request::CertificateUpdate => 2,
            _ => return None,
        };
        (self.pnc && self.certificate_service).then_some(m::SelectedServiceType {
            service_id: CERTIFICATE_SERVICE,
            parameter_set_id: Some(set),
        })
    }

    fn send(&mut self, now: Instant, req: Request) {
        // a stop or renegotiation asked for while the next loop request waited
        let req = if matches!(req, Request::CurrentDemand | Request::ChargingStatus)
            && (self.stop.is_some() || self.config.ev.charging_complete || self.renegotiate)
        {
            if self.config.ev.charging_complete {
                self.stop.get_or_insert(StopKind::Terminate);
            }
            Request::PowerDelivery
        } else {
            req
        };
        match req {
            Request::PowerDelivery => self.progress = self.next_progress(),
            Request::SessionStop => self.stop_sent = self.stop.unwrap_or(StopKind::Terminate),
            _ => {}
        }
        let id = request_session_id(
            req == Request::SessionSetup,
            &self.config.resume,
            &self.session_id,
            1,
        );
        let body = self.body(req);
        let encoded = self
            .signature(&body)
            .and_then(|sig| encode_signed(&id, body, sig));
        if self.core.send_request(
            now,
            encoded,
            Standard::Iso15118_2,
            req.msg_kind(),
            &self.config.timers,
        ) {
            self.awaiting = Some(req);
        }
    }

    fn processing(
        &mut self,
        now: Instant,
        req: Request,
        processing: m::EVSEProcessingType,
    ) -> bool {
        Pacing::ongoing(self, now, req, is_ongoing(processing))
    }

    /// Ends on a FAILED code or an EVSE status that forbids going on.
    fn check(&mut self, code: m::ResponseCodeType, status: Option<&m::DcEVSEStatusType>) -> bool {
        let failure = code.is_failed().then(|| failed(code));
        check_answer(&mut self.core, failure, status)
    }
}

evcc_plumbing!(m);

impl Evcc {
    /// A charge-loop answer's notification.
    fn notified(&mut self, n: m::EVSENotificationType) {
        match n {
            m::EVSENotificationType::StopCharging => {
                self.stop.get_or_insert(StopKind::Terminate);
            }
            m::EVSENotificationType::ReNegotiation => self.renegotiate = true,
            m::EVSENotificationType::None => {}
        }
    }

    fn meter(&mut self, info: Option<&m::MeterInfoType>) {
        if let Some(wh) = info.and_then(|i| i.meter_reading) {
            // DC counts V × I; AC has nothing but the meter
            if !self.dc() {
                self.energy.meter(wh);
            }
            self.core.notice(EvNotice::Meter { wh });
        }
    }

    /// The next request after a charge-loop answer.
    fn next_in_loop(&mut self, now: Instant, req: Request) {
        if self.config.ev.charging_complete {
            self.stop.get_or_insert(StopKind::Terminate);
        }
        if self.stop.is_some() || self.renegotiate {
            self.send_later(now, Request::PowerDelivery);
        } else {
            self.send_later(now, req);
        }
    }

    pub(crate) fn handle_message(&mut self, now: Instant, exi: &[u8]) {
        if self.core.is_ended() {
            return;
        }
        let msg = match decode(exi) {
            Ok(msg) => msg,
            Err(e) => return self.core.end(EndReason::Malformed(e)),
        };
        let Some(awaiting) = awaited(
            &mut self.core,
            &mut self.awaiting,
            Request::SessionSetup,
            &msg.header.session_id.0,
            self.session_id.as_ref(),
        ) else {
            return;
        };
        let b = msg.body;
        macro_rules! res {
            ($field:ident) => {
                match b.$field {
                    Some(r) => r,
                    None => return self.core.end(EndReason::SequenceError),
                }
            };
        }
        match awaiting {
            Request::SessionSetup => {
                let r = res!(session_setup_res);
                if !self.check(r.response_code, None) {
                    return;
                }
                self.core.timers.disarm(TimerKind::EvccCommunicationSetup);
                self.session_id = Some(msg.header.session_id.0);
                self.send(now, Request::ServiceDiscovery);
            }
            Request::ServiceDiscovery => {
                let r = res!(service_discovery_res);
                if !self.check(r.response_code, None) {
                    return;
                }
                let offered = &r.payment_option_list.payment_option;
                self.pnc =
                    self.config.pnc.is_some() && offered.contains(&m::PaymentOptionType::Contract);
                self.certificate_service = r.service_list.as_ref().is_some_and(|l| {
                    l.service
                        .iter()
                        .any(|s| s.service_id == CERTIFICATE_SERVICE)
                });
                self.certificate_step = if self.pnc {
                    self.certificate_step_at(now)
                } else {
                    None
                };
                if !self.pnc && !offered.contains(&m::PaymentOptionType::ExternalPayment) {
                    return self.core.end(EndReason::Failed {
                        response_code: "ExternalPayment not offered".into(),
                    });
                }
                self.send(now, Request::PaymentServiceSelection);
            }
            Request::PaymentServiceSelection => {
                let r = res!(payment_service_selection_res);
                if self.check(r.response_code, None) {
                    let next = if !self.pnc {
                        Request::Authorization
                    } else {
                        self.certificate_step.unwrap_or(Request::PaymentDetails)
                    };
                    self.send(now, next);
                }
            }
            Request::CertificateInstallation => {
                let r = res!(certificate_installation_res);
                if !self.check(r.response_code, None) {
                    return;
                }
                match self.install(now, &r, msg.header.signature.as_ref()) {
                    Ok(c) => {
                        self.installed = Some(c);
                        self.send(now, Request::PaymentDetails);
                    }
                    Err(e) => self.core.end(EndReason::Failed { response_code: e }),
                }
            }
            Request::CertificateUpdate => {
                let r = res!(certificate_update_res);
                if !self.check(r.response_code, None) {
                    return;
                }
                match self.update(now, &r, msg.header.signature.as_ref()) {
                    Ok(c) => {
                        self.installed = Some(c);
                        self.renewed = true;
                        self.send(now, Request::PaymentDetails);
                    }
                    Err(e) => self.core.end(EndReason::Failed { response_code: e }),
                }
            }
            Request::PaymentDetails => {
                let r = res!(payment_details_res);
                if self.check(r.response_code, None) {
                    self.gen_challenge = Some(r.gen_challenge.0);
                    self.send(now, Request::Authorization);
                }
            }
            Request::MeteringReceipt => {
                let r = res!(metering_receipt_res);
                if !self.check(r.response_code, r.dc_evse_status.as_ref()) {
                    return;
                }
                if let Some((_, next)) = self.receipt.take() {
                    self.next_in_loop(now, next);
                }
            }
            Request::Authorization => {
                let r = res!(authorization_res);
                if self.check(r.response_code, None)
                    && !self.processing(now, awaiting, r.evse_processing)
                {
                    self.send(now, Request::ChargeParameterDiscovery);
                }
            }
            Request::ChargeParameterDiscovery => {
                let r = res!(charge_parameter_discovery_res);
                let status = r
                    .dc_evse_charge_parameter
                    .as_ref()
                    .map(|p| &p.dc_evse_status);
                if !self.check(r.response_code, status)
                    || self.processing(now, awaiting, r.evse_processing)
                {
                    return;
                }
                let Some(t) = r
                    .sa_schedule_list
                    .as_ref()
                    .and_then(|l| l.sa_schedule_tuple.first())
                else {
                    return self.core.end(EndReason::Failed {
                        response_code: "no SAScheduleList".into(),
                    });
                };
                let pmax = t
                    .p_max_schedule
                    .p_max_schedule_entry
                    .first()
                    .map_or(self.config.ev.max_power, |e| val(&e.p_max));
                self.tuple = Some((t.sa_schedule_tuple_id, pmax));
                if let Some(ac) = &r.ac_evse_charge_parameter {
                    self.nominal_voltage = val(&ac.evse_nominal_voltage);
                    self.ac_max_current = val(&ac.evse_max_current);
                }
                if self.renegotiating || !self.dc() {
                    self.send(now, Request::PowerDelivery);
                } else {
                    self.core.arm_cable_check(now, &self.config);
                    self.send(now, Request::CableCheck);
                }
            }
            Request::CableCheck => {
                let r = res!(cable_check_res);
                if !self.check(r.response_code, Some(&r.dc_evse_status)) {
                    return;
                }
                let ok = matches!(
                    r.dc_evse_status.evse_isolation_status,
                    Some(m::IsolationLevelType::Valid | m::IsolationLevelType::Warning)
                );
                if is_ongoing(r.evse_processing) || !ok {
                    self.send_later(now, Request::CableCheck);
                } else {
                    self.core.cable_checked(now, self.config.timers.pre_charge);
                    self.send(now, Request::PreCharge);
                }
            }
            Request::PreCharge => {
                let r = res!(pre_charge_res);
                if !self.check(r.response_code, Some(&r.dc_evse_status)) {
                    return;
                }
                if self
                    .core
                    .precharged(&self.config, val(&r.evse_present_voltage))
                {
                    self.send(now, Request::PowerDelivery);
                } else {
                    self.send_later(now, Request::PreCharge);
                }
            }
            Request::PowerDelivery => {
                let r = res!(power_delivery_res);
                if !self.check(r.response_code, r.dc_evse_status.as_ref()) {
                    return;
                }
                self.energy.pause();
                match self.progress {
                    m::ChargeProgressType::Stop => {
                        if self.charging {
                            self.charging = false;
                            self.core.notice(EvNotice::ChargingStopped);
                        }
                        if self.dc() {
                            self.send(now, Request::WeldingDetection);
                        } else {
                            self.send(now, Request::SessionStop);
                        }
                    }
                    m::ChargeProgressType::Renegotiate => {
                        self.renegotiate = false;
                        self.renegotiating = true;
                        self.renegotiations += 1;
                        self.send(now, Request::ChargeParameterDiscovery);
                    }
                    m::ChargeProgressType::Start => {
                        self.renegotiating = false;
                        if !self.charging {
                            self.charging = true;
                            self.core.notice(EvNotice::ChargingStarted);
                        }
                        if self.dc() {
                            self.send(now, Request::CurrentDemand);
                        } else {
                            self.send(now, Request::ChargingStatus);
                        }
                    }
                }
            }
            Request::ChargingStatus => {
                let r = res!(charging_status_res);
                if !self.check(r.response_code, None) {
                    return;
                }
                self.loops += 1;
                if let Some(i) = &r.evse_max_current {
                    self.ac_max_current = val(i);
                }
                self.metered |= r
                    .meter_info
                    .as_ref()
                    .and_then(|i| i.meter_reading)
                    .is_some();
                self.meter(r.meter_info.as_ref());
                let current = self.ac_drawn_current();
                if !self.metered {
                    self.energy.add(now, self.nominal_voltage, current);
                }
                self.core.notice(EvNotice::Present {
                    voltage: self.nominal_voltage,
                    current,
                });
                self.notified(r.ac_evse_status.evse_notification);
                self.loop_or_receipt(
                    now,
                    Request::ChargingStatus,
                    r.receipt_required,
                    r.meter_info,
                );
            }
            Request::CurrentDemand => {
                let r = res!(current_demand_res);
                if !self.check(r.response_code, Some(&r.dc_evse_status)) {
                    return;
                }
                let (v, i) = (val(&r.evse_present_voltage), val(&r.evse_present_current));
                loop_present(&mut self.core, &mut self.energy, &mut self.loops, now, v, i);
                self.meter(r.meter_info.as_ref());
                if r.dc_evse_status.evse_status_code != m::DcEVSEStatusCodeType::EvseReady {
                    self.stop.get_or_insert(StopKind::Terminate);
                }
                self.notified(r.dc_evse_status.evse_notification);
                self.loop_or_receipt(
                    now,
                    Request::CurrentDemand,
                    r.receipt_required,
                    r.meter_info,
                );
            }
            Request::WeldingDetection => {
                let r = res!(welding_detection_res);
                if self.check(r.response_code, Some(&r.dc_evse_status)) {
                    self.send(now, Request::SessionStop);
                }
            }
            Request::SessionStop => {
                let r = res!(session_stop_res);
                if self.check(r.response_code, None) {
                    let reason = match self.stop_sent {
                        StopKind::Pause => EndReason::Paused {
                            session_id: self.session_id.clone().unwrap_or_default(),
                        },
                        _ => EndReason::Finished,
                    };
                    self.core.end(reason);
                }
            }
            Request::ServiceDetail => self.core.end(EndReason::SequenceError),
        }
    }

    /// Plug & Charge: a MeteringReceiptReq when the answer asked for one
    /// (and has a meter reading to sign), else the loop goes on.
    fn loop_or_receipt(
        &mut self,
        now: Instant,
        next: Request,
        required: Option<bool>,
        meter: Option<m::MeterInfoType>,
    ) {
        match meter {
            Some(info) if self.pnc && required == Some(true) => {
                self.receipt = Some((info, next));
                self.send(now, Request::MeteringReceipt);
            }
            _ => self.next_in_loop(now, next),
        }
    }
}

/// A valid request body of each kind, as our EVCC in `mode` would send it
/// (for tests, fuzzing and the SECC's proptest); PowerDelivery is a
/// Start with tuple 1, SessionStop a Terminate.
pub fn sample_request(mode: EnergyMode, req: Request) -> m::BodyType {
    let mut config = EvccConfig::iso2_dc(vec![0x84, 0x87, 0x72, 0x60, 0xf3, 0x58]);
    config.energy_mode = mode;
    let ev = Evcc::idle(config, Core::new());
    let mut b = ev.body(req);
    let chain = || m::CertificateChainType {
        id: None,
        certificate: Base64Binary(vec![0x30]),
        sub_certificates: None,
    };
    let roots = || m::ListOfRootCertificateIDsType {
        root_certificate_id: vec![xmldsig::X509IssuerSerialType {
            x509_issuer_name: "CN=V2G Root".into(),
            x509_serial_number: 1,
        }],
    };
    // the PnC requests our EIM EVCC never sends
    match req {
        Request::ServiceDetail => {
            b.service_detail_req = Some(m::ServiceDetailReqType { service_id: 1 })
        }
        Request::PaymentDetails => {
            b.payment_details_req = Some(m::PaymentDetailsReqType {
                e_maid: "DEEVP0000000001".into(),
                contract_signature_cert_chain: chain(),
            })
        }
        Request::MeteringReceipt => {
            b.metering_receipt_req = Some(m::MeteringReceiptReqType {
                id: None,
                session_id: HexBinary(vec![0]),
                sa_schedule_tuple_id: None,
                meter_info: m::MeterInfoType {
                    meter_id: "M".into(),
                    meter_reading: None,
                    sig_meter_reading: None,
                    meter_status: None,
                    t_meter: None,
                },
            })
        }
        Request::CertificateInstallation => {
            b.certificate_installation_req = Some(m::CertificateInstallationReqType {
                id: "id1".into(),
                oem_provisioning_cert: Base64Binary(vec![0x30]),
                list_of_root_certificate_i_ds: roots(),
            })
        }
        Request::CertificateUpdate => {
            b.certificate_update_req = Some(m::CertificateUpdateReqType {
                id: "id1".into(),
                contract_signature_cert_chain: chain(),
                e_maid: "DEEVP0000000001".into(),
                list_of_root_certificate_i_ds: roots(),
            })
        }
        _ => {}
    }
    b
}

/// `sample_request` as an encoded message with this session id.
pub fn encode_request(session_id: &[u8], mode: EnergyMode, req: Request) -> Vec<u8> {
    encode_message(session_id, sample_request(mode, req)).unwrap_or_default()
}

/// The response a -2 message carries, decoded: its element name and code,
/// or `None` when the bytes are no -2 response.
pub fn response_code(exi: &[u8]) -> Option<(String, String)> {
    let msg = decode(exi).ok()?;
    let v = serde_json::to_value(&msg.body).ok()?;
    let (name, body) = v.as_object()?.iter().find(|(_, v)| !v.is_null())?;
    let code = body.get("ResponseCode")?.as_str()?.to_string();
    Some((name.clone(), code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_request_encodes_and_is_recognised() {
        for mode in [EnergyMode::AcThreePhaseCore, EnergyMode::DcExtended] {
            for req in Request::ALL {
                let bytes = encode_request(&[1, 2], mode, req);
                assert!(!bytes.is_empty(), "{mode:?} {req:?} encodes");
                let msg = decode(&bytes).unwrap();
                assert_eq!(Request::of(&msg.body), Some(req));
            }
        }
    }

    #[test]
    fn every_failed_response_encodes_ac_and_dc() {
        for mode in [EnergyMode::AcSinglePhaseCore, EnergyMode::DcCore] {
            let config = SeccConfig::new(vec![1, 2, 3]).with_energy_modes(vec![mode]);
            let secc = Secc::new(config, Core::new(), Instant::now());
            for req in Request::ALL {
                let body = secc.response(req, m::ResponseCodeType::FailedSequenceError);
                let bytes = encode_message(&[1, 2, 3], body)
                    .unwrap_or_else(|e| panic!("{mode:?} {req:?}: {e}"));
                let (name, code) = response_code(&bytes).unwrap();
                assert_eq!(name, format!("{req:?}Res"));
                assert_eq!(code, "FAILED_SequenceError");
            }
        }
    }

    #[test]
    fn state_table_and_charge_progress() {
        let allowed: Vec<_> = Request::ALL
            .iter()
            .filter(|r| SeccState::AcChargeLoop.allows(**r))
            .collect();
        assert_eq!(allowed, [&Request::PowerDelivery, &Request::ChargingStatus]);
        assert!(Request::ALL.iter().all(|r| !SeccState::Ended.allows(*r)));
        assert!(!SeccState::PreCharge.allows_progress(m::ChargeProgressType::Renegotiate));
        assert!(SeccState::DcChargeLoop.allows_progress(m::ChargeProgressType::Renegotiate));
        assert!(!SeccState::DcChargeLoop.allows_progress(m::ChargeProgressType::Start));
    }

    #[test]
    fn pmax_at_takes_the_entry_in_force() {
        let t = ScheduleTuple {
            id: 2,
            entries: vec![(0, 11_000.0), (3600, 7_000.0)],
            duration: 86_400,
        };
        assert_eq!(pmax_at(&t, 0), 11_000.0);
        assert_eq!(pmax_at(&t, 3599), 11_000.0);
        assert_eq!(pmax_at(&t, 7200), 7_000.0);
        let list = schedule_list(&[t]);
        let entries = &list.sa_schedule_tuple[0]
            .p_max_schedule
            .p_max_schedule_entry;
        assert_eq!(
            entries[0].relative_time_interval.as_ref().unwrap().duration,
            None
        );
        assert_eq!(
            entries[1].relative_time_interval.as_ref().unwrap().duration,
            Some(86_400 - 3600)
        );
    }
}
