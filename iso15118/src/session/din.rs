//! DIN SPEC 70121:2012 DC charging with external identification means
//! (EIM): the SECC and the EVCC after the SupportedAppProtocol handshake.
//!
//! ```text
//!  SessionSetup ─► ServiceDiscovery ─► ServicePaymentSelection ─► ContractAuthentication ⟲ Ongoing
//!      ─► ChargeParameterDiscovery ⟲ Ongoing ─► CableCheck ⟲ Ongoing ─► PreCharge ⟲
//!      ─► PowerDelivery(ReadyToCharge) ─► CurrentDemand ⟲ ─► PowerDelivery(stop)
//!      ─► WeldingDetection ⟲ ─► SessionStop
//! ```
//!
//! SECC rules (DIN SPEC 70121 §9.4, §9.6): a request not allowed in the
//! state is answered with its response carrying `FAILED_SequenceError`; a
//! SessionID other than the session's with `FAILED_UnknownSession`; an
//! emergency stop with `FAILED` and `EVSEStatusCode=EVSE_EmergencyShutdown`;
//! an isolation fault with `FAILED`, `EVSEIsolationStatus=Fault` and
//! `EVSE_Malfunction`. After any `FAILED*` answer the session ends.

use std::time::Instant;

use crate::grammar::HexBinary;
use crate::messages::din as m;

use super::common::{
    awaited, check_answer, evcc_plumbing, failed, loop_present, request_session_id, response_codes,
    screen, setup_session, Codes, DcStatus, Pacing,
};
use super::{scale, unscale};
use super::{
    Authorization, Core, EndReason, Energy, EnergyMode, EvNotice, EvStatus, EvccConfig,
    EvseRequest, EvseStatus, Isolation, MsgKind, ScheduleTuple, SeccConfig, Standard, StopKind,
    TimerKind,
};

/// A request of the DIN schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Request {
    /// SessionSetupReq.
    SessionSetup,
    /// ServiceDiscoveryReq.
    ServiceDiscovery,
    /// ServiceDetailReq.
    ServiceDetail,
    /// ServicePaymentSelectionReq.
    ServicePaymentSelection,
    /// PaymentDetailsReq.
    PaymentDetails,
    /// ContractAuthenticationReq.
    ContractAuthentication,
    /// ChargeParameterDiscoveryReq.
    ChargeParameterDiscovery,
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
    /// PowerDeliveryReq.
    PowerDelivery,
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
        Request::ServicePaymentSelection,
        Request::PaymentDetails,
        Request::ContractAuthentication,
        Request::ChargeParameterDiscovery,
        Request::ChargingStatus,
        Request::MeteringReceipt,
        Request::CertificateInstallation,
        Request::CertificateUpdate,
        Request::CableCheck,
        Request::PreCharge,
        Request::PowerDelivery,
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
        } else if b.service_payment_selection_req.is_some() {
            Request::ServicePaymentSelection
        } else if b.payment_details_req.is_some() {
            Request::PaymentDetails
        } else if b.contract_authentication_req.is_some() {
            Request::ContractAuthentication
        } else if b.charge_parameter_discovery_req.is_some() {
            Request::ChargeParameterDiscovery
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
        } else if b.power_delivery_req.is_some() {
            Request::PowerDelivery
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
            Request::ServicePaymentSelection => MsgKind::PaymentServiceSelection,
            Request::PaymentDetails => MsgKind::PaymentDetails,
            Request::ContractAuthentication => MsgKind::Authorization,
            Request::ChargeParameterDiscovery => MsgKind::ChargeParameterDiscovery,
            Request::ChargingStatus => MsgKind::ChargingStatus,
            Request::MeteringReceipt => MsgKind::MeteringReceipt,
            Request::CertificateInstallation | Request::CertificateUpdate => MsgKind::Certificate,
            Request::CableCheck => MsgKind::CableCheck,
            Request::PreCharge => MsgKind::PreCharge,
            Request::PowerDelivery => MsgKind::PowerDelivery,
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
    /// ServicePaymentSelectionReq.
    ServicePaymentSelection,
    /// ContractAuthenticationReq (again while `Ongoing`).
    ContractAuthentication,
    /// ChargeParameterDiscoveryReq (again while `Ongoing`).
    ChargeParameterDiscovery,
    /// CableCheckReq (again while `Ongoing`).
    CableCheck,
    /// PreChargeReq or PowerDeliveryReq.
    PreCharge,
    /// CurrentDemandReq or PowerDeliveryReq.
    ChargeLoop,
    /// WeldingDetectionReq or SessionStopReq.
    PostCharge,
    /// Nothing: the session is over.
    Ended,
}

impl SeccState {
    /// Whether `req` is allowed here.
    pub fn allows(self, req: Request) -> bool {
        use Request as R;
        matches!(
            (self, req),
            (SeccState::SessionSetup, R::SessionSetup)
                | (SeccState::ServiceDiscovery, R::ServiceDiscovery)
                | (
                    SeccState::ServicePaymentSelection,
                    R::ServicePaymentSelection
                )
                | (SeccState::ContractAuthentication, R::ContractAuthentication)
                | (
                    SeccState::ChargeParameterDiscovery,
                    R::ChargeParameterDiscovery
                )
                | (SeccState::CableCheck, R::CableCheck)
                | (SeccState::PreCharge, R::PreCharge | R::PowerDelivery)
                | (SeccState::ChargeLoop, R::CurrentDemand | R::PowerDelivery)
                | (SeccState::PostCharge, R::WeldingDetection | R::SessionStop)
        )
    }
}

fn pv(x: f64, unit: m::UnitSymbolType) -> m::PhysicalValueType {
    let (value, multiplier) = scale(x);
    m::PhysicalValueType {
        multiplier,
        unit: Some(unit),
        value,
    }
}

fn val(p: &m::PhysicalValueType) -> f64 {
    unscale(p.value, p.multiplier)
}

response_codes!(m);

fn encode(session_id: &[u8], body: m::BodyType) -> Result<Vec<u8>, String> {
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

fn din_mode(mode: EnergyMode) -> m::EVRequestedEnergyTransferType {
    match mode {
        EnergyMode::AcSinglePhaseCore => m::EVRequestedEnergyTransferType::AcSinglePhaseCore,
        EnergyMode::AcThreePhaseCore => m::EVRequestedEnergyTransferType::AcThreePhaseCore,
        EnergyMode::DcCore => m::EVRequestedEnergyTransferType::DcCore,
        EnergyMode::DcExtended => m::EVRequestedEnergyTransferType::DcExtended,
        EnergyMode::DcComboCore => m::EVRequestedEnergyTransferType::DcComboCore,
        EnergyMode::DcUnique => m::EVRequestedEnergyTransferType::DcUnique,
    }
}

fn din_isolation(i: Isolation) -> m::IsolationLevelType {
    match i {
        Isolation::Invalid | Isolation::NoImd => m::IsolationLevelType::Invalid,
        Isolation::Valid => m::IsolationLevelType::Valid,
        Isolation::Warning => m::IsolationLevelType::Warning,
        Isolation::Fault => m::IsolationLevelType::Fault,
    }
}

/// The SECC's side of a DIN session (after the handshake; made by
/// [`super::Secc`]). See the [module docs](self) for the sequence and codes.
#[derive(Debug)]
pub struct Secc {
    pub(crate) core: Core,
    config: SeccConfig,
    state: SeccState,
    session_id: Option<Vec<u8>>,
    evcc_id: Vec<u8>,
    authorization: Option<Authorization>,
    auth_asked: bool,
    schedules: Option<Vec<ScheduleTuple>>,
    schedules_asked: bool,
    cable_check_started: bool,
    energy: Energy,
}

impl Secc {
    pub(crate) fn new(config: SeccConfig, core: Core, now: Instant) -> Self {
        let mut s = Self {
            core,
            config,
            state: SeccState::SessionSetup,
            session_id: None,
            evcc_id: Vec::new(),
            authorization: None,
            auth_asked: false,
            schedules: None,
            schedules_asked: false,
            cable_check_started: false,
            energy: Energy::default(),
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

    fn arm_sequence(&mut self, now: Instant) {
        self.core.arm_sequence(now, &self.config);
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.core.expire(now) {
            self.state = SeccState::Ended;
        }
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
            self.state.allows(req),
            &self.config.evse,
            matches!(
                req,
                Request::CableCheck | Request::PreCharge | Request::CurrentDemand
            ),
        );
        if let Some(r) = refusal {
            return self.fail(req, r.code(), r.reason());
        }
        let mut body = self.response(req, m::ResponseCodeType::OK);
        let b = msg.body;
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
                self.evcc_id = b.session_setup_req.map(|r| r.evccid.0).unwrap_or_default();
                if let Some(r) = body.session_setup_res.as_mut() {
                    r.response_code = code;
                }
                self.state = SeccState::ServiceDiscovery;
            }
            Request::ServiceDiscovery => self.state = SeccState::ServicePaymentSelection,
            Request::ServicePaymentSelection => {
                let r = b.service_payment_selection_req.unwrap_or_else(|| {
                    m::ServicePaymentSelectionReqType {
                        selected_payment_option: m::PaymentOptionType::Contract,
                        selected_service_list: m::SelectedServiceListType {
                            selected_service: vec![],
                        },
                    }
                });
                if r.selected_payment_option != m::PaymentOptionType::ExternalPayment {
                    return self.fail(
                        req,
                        m::ResponseCodeType::FailedPaymentSelectionInvalid,
                        failed(m::ResponseCodeType::FailedPaymentSelectionInvalid),
                    );
                }
                if r.selected_service_list
                    .selected_service
                    .iter()
                    .any(|s| s.service_id != 1)
                {
                    return self.fail(
                        req,
                        m::ResponseCodeType::FailedServiceSelectionInvalid,
                        failed(m::ResponseCodeType::FailedServiceSelectionInvalid),
                    );
                }
                self.state = SeccState::ContractAuthentication;
            }
            Request::ContractAuthentication => match self.authorization {
                Some(Authorization::Accepted) => {
                    self.state = SeccState::ChargeParameterDiscovery;
                }
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
                    if let Some(r) = body.contract_authentication_res.as_mut() {
                        r.evse_processing = m::EVSEProcessingType::Ongoing;
                    }
                }
            },
            Request::ChargeParameterDiscovery => {
                let r = b.charge_parameter_discovery_req;
                let ok_mode = r.as_ref().is_some_and(|r| {
                    r.dc_ev_charge_parameter.is_some()
                        && self.config.energy_modes.iter().any(|mode| {
                            mode.is_dc() && din_mode(*mode) == r.ev_requested_energy_transfer_type
                        })
                });
                if !ok_mode {
                    let code = m::ResponseCodeType::FailedWrongEnergyTransferType;
                    return self.fail(req, code, failed(code));
                }
                match self.schedules.clone() {
                    Some(s) => {
                        if let Some(res) = body.charge_parameter_discovery_res.as_mut() {
                            res.sa_schedule_list = Some(self.schedule_list(&s));
                        }
                        self.state = SeccState::CableCheck;
                    }
                    None => {
                        if !self.schedules_asked {
                            self.schedules_asked = true;
                            let p = r.and_then(|r| r.dc_ev_charge_parameter);
                            self.core.evse(EvseRequest::Schedules {
                                max_entries: None,
                                departure_time: None,
                                energy_request_wh: p
                                    .and_then(|p| p.ev_energy_request)
                                    .map(|e| val(&e)),
                                renegotiation: false,
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
                if let Some(r) = b.pre_charge_req {
                    self.core.evse(EvseRequest::Target {
                        voltage: val(&r.ev_target_voltage),
                        current: val(&r.ev_target_current),
                    });
                }
            }
            Request::PowerDelivery => {
                let ready = b
                    .power_delivery_req
                    .is_some_and(|r| r.ready_to_charge_state);
                self.energy.pause();
                self.core.evse(EvseRequest::Power(ready));
                self.state = if ready {
                    SeccState::ChargeLoop
                } else {
                    SeccState::PostCharge
                };
            }
            Request::CurrentDemand => {
                let e = &self.config.evse;
                self.energy.add(now, e.present_voltage, e.present_current);
                if let Some(r) = b.current_demand_req {
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
            }
            Request::WeldingDetection => {}
            Request::SessionStop => {
                self.send(body);
                return self.end(EndReason::Finished);
            }
            // not allowed in any state: answered by `fail` above
            Request::ServiceDetail
            | Request::PaymentDetails
            | Request::ChargingStatus
            | Request::MeteringReceipt
            | Request::CertificateInstallation
            | Request::CertificateUpdate => {}
        }
        self.send(body);
        if !self.core.is_ended() {
            self.arm_sequence(now);
        }
    }

    fn end(&mut self, reason: EndReason) {
        self.state = SeccState::Ended;
        self.core.end(reason);
    }

    fn send(&mut self, body: m::BodyType) {
        let id = self.session_id.clone().unwrap_or_else(|| vec![0]);
        match encode(&id, body) {
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

    fn dc_status(&self) -> m::DcEVSEStatusType {
        let e = &self.config.evse;
        let (code, notification) = if e.emergency_stop {
            (
                m::DcEVSEStatusCodeType::EvseEmergencyShutdown,
                m::EVSENotificationType::StopCharging,
            )
        } else if e.isolation == Isolation::Fault {
            (
                m::DcEVSEStatusCodeType::EvseMalfunction,
                m::EVSENotificationType::StopCharging,
            )
        } else {
            (
                m::DcEVSEStatusCodeType::EvseReady,
                m::EVSENotificationType::None,
            )
        };
        m::DcEVSEStatusType {
            evse_isolation_status: Some(din_isolation(e.isolation)),
            evse_status_code: code,
            notification_max_delay: 0,
            evse_notification: notification,
        }
    }

    fn schedule_list(&self, s: &[ScheduleTuple]) -> m::SAScheduleListType {
        let default = [ScheduleTuple {
            id: 1,
            entries: vec![(0, self.config.evse.max_power)],
            duration: 86_400,
        }];
        let s = if s.is_empty() { &default[..] } else { s };
        m::SAScheduleListType {
            sa_schedule_tuple: s
                .iter()
                .map(|t| m::SAScheduleTupleType {
                    sa_schedule_tuple_id: i16::from(t.id),
                    p_max_schedule: m::PMaxScheduleType {
                        p_max_schedule_id: i16::from(t.id),
                        p_max_schedule_entry: t
                            .entries
                            .iter()
                            .enumerate()
                            .map(|(i, (start, p))| m::PMaxScheduleEntryType {
                                relative_time_interval: Some(m::RelativeTimeIntervalType {
                                    start: *start,
                                    duration: (i == 0).then_some(t.duration),
                                }),
                                time_interval: None,
                                // DIN's PMaxType is a bare short: W, clamped
                                p_max: p.clamp(0.0, f64::from(i16::MAX)) as i16,
                            })
                            .collect(),
                    },
                    sales_tariff: None,
                })
                .collect(),
        }
    }

    /// The response to `req` with `code`, every field from the EVSE state.
    fn response(&self, req: Request, code: m::ResponseCodeType) -> m::BodyType {
        let e = &self.config.evse;
        let status = self.dc_status();
        let v = pv(e.present_voltage, m::UnitSymbolType::V);
        let i = pv(e.present_current, m::UnitSymbolType::A);
        let evse_id = if self.config.evse_id.is_empty() {
            vec![0]
        } else {
            self.config
                .evse_id
                .as_bytes()
                .iter()
                .copied()
                .take(32)
                .collect()
        };
        let ac_status = m::AcEVSEStatusType {
            power_switch_closed: false,
            rcd: false,
            notification_max_delay: 0,
            evse_notification: m::EVSENotificationType::None,
        };
        let mut b = m::BodyType::default();
        match req {
            Request::SessionSetup => {
                b.session_setup_res = Some(m::SessionSetupResType {
                    response_code: code,
                    evseid: HexBinary(evse_id),
                    date_time_now: None,
                })
            }
            Request::ServiceDiscovery => {
                let mode = self
                    .config
                    .energy_modes
                    .iter()
                    .find_map(|mode| match mode {
                        EnergyMode::DcCore => Some(m::EVSESupportedEnergyTransferType::DcCore),
                        EnergyMode::DcExtended => {
                            Some(m::EVSESupportedEnergyTransferType::DcExtended)
                        }
                        EnergyMode::DcComboCore => {
                            Some(m::EVSESupportedEnergyTransferType::DcComboCore)
                        }
                        _ => None,
                    })
                    .unwrap_or(m::EVSESupportedEnergyTransferType::DcExtended);
                b.service_discovery_res = Some(m::ServiceDiscoveryResType {
                    response_code: code,
                    payment_options: m::PaymentOptionsType {
                        payment_option: vec![m::PaymentOptionType::ExternalPayment],
                    },
                    charge_service: m::ServiceChargeType {
                        service_tag: m::ServiceTagType {
                            service_id: 1,
                            service_name: None,
                            service_category: m::ServiceCategoryType::EVCharging,
                            service_scope: None,
                        },
                        free_service: false,
                        energy_transfer_type: mode,
                    },
                    service_list: None,
                })
            }
            Request::ServiceDetail => {
                b.service_detail_res = Some(m::ServiceDetailResType {
                    response_code: code,
                    service_id: 0,
                    service_parameter_list: None,
                })
            }
            Request::ServicePaymentSelection => {
                b.service_payment_selection_res = Some(m::ServicePaymentSelectionResType {
                    response_code: code,
                })
            }
            Request::PaymentDetails => {
                b.payment_details_res = Some(m::PaymentDetailsResType {
                    response_code: code,
                    gen_challenge: String::new(),
                    date_time_now: 0,
                })
            }
            Request::ContractAuthentication => {
                b.contract_authentication_res = Some(m::ContractAuthenticationResType {
                    response_code: code,
                    evse_processing: m::EVSEProcessingType::Finished,
                })
            }
            Request::ChargeParameterDiscovery => {
                b.charge_parameter_discovery_res = Some(m::ChargeParameterDiscoveryResType {
                    response_code: code,
                    evse_processing: m::EVSEProcessingType::Finished,
                    // the schema's choice wants one: the EVSE's maximum until
                    // the schedules are known
                    sa_schedule_list: Some(self.schedule_list(&[])),
                    sa_schedules: None,
                    ac_evse_charge_parameter: None,
                    dc_evse_charge_parameter: Some(m::DcEVSEChargeParameterType {
                        dc_evse_status: status,
                        evse_maximum_current_limit: pv(e.max_current, m::UnitSymbolType::A),
                        evse_maximum_power_limit: Some(pv(e.max_power, m::UnitSymbolType::W)),
                        evse_maximum_voltage_limit: pv(e.max_voltage, m::UnitSymbolType::V),
                        evse_minimum_current_limit: pv(e.min_current, m::UnitSymbolType::A),
                        evse_minimum_voltage_limit: pv(e.min_voltage, m::UnitSymbolType::V),
                        evse_current_regulation_tolerance: None,
                        evse_peak_current_ripple: pv(e.peak_current_ripple, m::UnitSymbolType::A),
                        evse_energy_to_be_delivered: None,
                    }),
                    evse_charge_parameter: None,
                })
            }
            Request::ChargingStatus => {
                b.charging_status_res = Some(m::ChargingStatusResType {
                    response_code: code,
                    evseid: HexBinary(evse_id),
                    sa_schedule_tuple_id: 1,
                    evse_max_current: None,
                    meter_info: None,
                    receipt_required: false,
                    ac_evse_status: ac_status,
                })
            }
            Request::MeteringReceipt => {
                b.metering_receipt_res = Some(m::MeteringReceiptResType {
                    response_code: code,
                    ac_evse_status: ac_status,
                })
            }
            Request::CertificateInstallation => {
                b.certificate_installation_res = Some(m::CertificateInstallationResType {
                    id: "ID1".into(),
                    response_code: code,
                    contract_signature_cert_chain: m::CertificateChainType {
                        certificate: Default::default(),
                        sub_certificates: None,
                    },
                    contract_signature_encrypted_private_key: Default::default(),
                    dh_params: Default::default(),
                    contract_id: String::new(),
                })
            }
            Request::CertificateUpdate => {
                b.certificate_update_res = Some(m::CertificateUpdateResType {
                    id: "ID1".into(),
                    response_code: code,
                    contract_signature_cert_chain: m::CertificateChainType {
                        certificate: Default::default(),
                        sub_certificates: None,
                    },
                    contract_signature_encrypted_private_key: Default::default(),
                    dh_params: Default::default(),
                    contract_id: String::new(),
                    retry_counter: 0,
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
            Request::PowerDelivery => {
                b.power_delivery_res = Some(m::PowerDeliveryResType {
                    response_code: code,
                    ac_evse_status: None,
                    dc_evse_status: Some(status),
                    evse_status: None,
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

// ---- EVCC ----

/// The EVCC's side of a DIN DC session (after the handshake; made by [`super::Evcc`]).
///
/// It sends the next request as soon as an answer allows it, but the
/// repeated ones (after `Ongoing`, the PreCharge and CurrentDemand loops)
/// after [`EvccConfig::loop_interval`]. PreCharge ends when the EVSE's
/// present voltage is within [`EvccConfig::precharge_tolerance`] of the
/// target; one WeldingDetection precedes SessionStop.
#[derive(Debug)]
pub struct Evcc {
    pub(crate) core: Core,
    config: EvccConfig,
    session_id: Option<Vec<u8>>,
    awaiting: Option<Request>,
    next: Option<Request>,
    stop: Option<StopKind>,
    charging: bool,
    loops: u32,
    energy: Energy,
    /// The first PMax (W) of the SA schedule offered (DIN's car takes the
    /// first tuple).
    pmax: Option<f64>,
}

impl Evcc {
    pub(crate) fn new(config: EvccConfig, core: Core, now: Instant) -> Self {
        let mut s = Self {
            core,
            config,
            session_id: None,
            awaiting: None,
            next: None,
            stop: None,
            charging: false,
            loops: 0,
            energy: Energy::default(),
            pmax: None,
        };
        s.send(now, Request::SessionSetup);
        s
    }

    /// The first PMax (W) of the SA schedule the car follows, once offered.
    pub fn schedule_pmax(&self) -> Option<f64> {
        self.pmax
    }

    /// The current the EV asks for, capped so that its target voltage ×
    /// current stays within the schedule's PMax.
    fn target_current(&self) -> f64 {
        super::common::scheduled_current(&self.config.ev, self.schedule_pmax())
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

    fn ev_status(&self) -> m::DcEVStatusType {
        m::DcEVStatusType {
            ev_ready: true,
            ev_cabin_conditioning: None,
            evress_conditioning: None,
            ev_error_code: m::DcEVErrorCodeType::NoERROR,
            evresssoc: self.config.ev.soc.min(100),
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
            Request::ServicePaymentSelection => {
                b.service_payment_selection_req = Some(m::ServicePaymentSelectionReqType {
                    selected_payment_option: m::PaymentOptionType::ExternalPayment,
                    selected_service_list: m::SelectedServiceListType {
                        selected_service: vec![m::SelectedServiceType {
                            service_id: 1,
                            parameter_set_id: None,
                        }],
                    },
                })
            }
            Request::ContractAuthentication => {
                b.contract_authentication_req = Some(m::ContractAuthenticationReqType {
                    id: None,
                    gen_challenge: None,
                })
            }
            Request::ChargeParameterDiscovery => {
                b.charge_parameter_discovery_req = Some(m::ChargeParameterDiscoveryReqType {
                    ev_requested_energy_transfer_type: din_mode(self.config.energy_mode),
                    ac_ev_charge_parameter: None,
                    dc_ev_charge_parameter: Some(m::DcEVChargeParameterType {
                        dc_ev_status: self.ev_status(),
                        ev_maximum_current_limit: pv(ev.max_current, m::UnitSymbolType::A),
                        ev_maximum_power_limit: Some(pv(ev.max_power, m::UnitSymbolType::W)),
                        ev_maximum_voltage_limit: pv(ev.max_voltage, m::UnitSymbolType::V),
                        ev_energy_capacity: Some(pv(ev.battery_capacity_wh, m::UnitSymbolType::Wh)),
                        ev_energy_request: Some(pv(ev.energy_request_wh, m::UnitSymbolType::Wh)),
                        full_soc: Some(100),
                        bulk_soc: Some(80),
                    }),
                    ev_charge_parameter: None,
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
                let ready = self.stop.is_none() && !self.charging;
                b.power_delivery_req = Some(m::PowerDeliveryReqType {
                    ready_to_charge_state: ready,
                    charging_profile: None,
                    dc_ev_power_delivery_parameter: Some(m::DcEVPowerDeliveryParameterType {
                        dc_ev_status: self.ev_status(),
                        bulk_charging_complete: None,
                        charging_complete: !ready,
                    }),
                    ev_power_delivery_parameter: None,
                })
            }
            Request::CurrentDemand => {
                b.current_demand_req = Some(m::CurrentDemandReqType {
                    dc_ev_status: self.ev_status(),
                    ev_target_current: pv(self.target_current(), m::UnitSymbolType::A),
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
            Request::SessionStop => b.session_stop_req = Some(m::SessionStopType {}),
            // EIM never sends these
            Request::ServiceDetail
            | Request::PaymentDetails
            | Request::ChargingStatus
            | Request::MeteringReceipt
            | Request::CertificateInstallation
            | Request::CertificateUpdate => {}
        }
        b
    }

    fn send(&mut self, now: Instant, req: Request) {
        // a stop asked for while the next loop request waited
        let req = if req == Request::CurrentDemand
            && (self.stop.is_some() || self.config.ev.charging_complete)
        {
            self.stop.get_or_insert(StopKind::Terminate);
            Request::PowerDelivery
        } else {
            req
        };
        let id = request_session_id(
            req == Request::SessionSetup,
            &self.config.resume,
            &self.session_id,
            1,
        );
        let encoded = encode(&id, self.body(req));
        if self.core.send_request(
            now,
            encoded,
            Standard::Din70121,
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
        Pacing::ongoing(self, now, req, processing == m::EVSEProcessingType::Ongoing)
    }

    /// Ends on a FAILED code or an EVSE status that forbids going on.
    fn check(&mut self, code: m::ResponseCodeType, status: Option<&m::DcEVSEStatusType>) -> bool {
        let failure = code.is_failed().then(|| failed(code));
        check_answer(&mut self.core, failure, status)
    }
}

evcc_plumbing!(m);

impl Evcc {
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
                if !r
                    .payment_options
                    .payment_option
                    .contains(&m::PaymentOptionType::ExternalPayment)
                {
                    return self.core.end(EndReason::Failed {
                        response_code: "ExternalPayment not offered".into(),
                    });
                }
                self.send(now, Request::ServicePaymentSelection);
            }
            Request::ServicePaymentSelection => {
                let r = res!(service_payment_selection_res);
                if self.check(r.response_code, None) {
                    self.send(now, Request::ContractAuthentication);
                }
            }
            Request::ContractAuthentication => {
                let r = res!(contract_authentication_res);
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
                if self.check(r.response_code, status)
                    && !self.processing(now, awaiting, r.evse_processing)
                {
                    // the first tuple's first PMax (DIN's PMax: W in a
                    // short; its maximum says no more than "at least that",
                    // so it does not limit)
                    self.pmax = r
                        .sa_schedule_list
                        .as_ref()
                        .and_then(|l| l.sa_schedule_tuple.first())
                        .and_then(|t| t.p_max_schedule.p_max_schedule_entry.first())
                        .filter(|e| e.p_max < i16::MAX)
                        .map(|e| f64::from(e.p_max));
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
                if r.evse_processing == m::EVSEProcessingType::Ongoing || !ok {
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
                if self.charging {
                    self.charging = false;
                    self.core.notice(EvNotice::ChargingStopped);
                    self.send(now, Request::WeldingDetection);
                } else if self.stop.is_some() {
                    self.send(now, Request::WeldingDetection);
                } else {
                    self.charging = true;
                    self.core.notice(EvNotice::ChargingStarted);
                    self.send(now, Request::CurrentDemand);
                }
            }
            Request::CurrentDemand => {
                let r = res!(current_demand_res);
                if !self.check(r.response_code, Some(&r.dc_evse_status)) {
                    return;
                }
                let (v, i) = (val(&r.evse_present_voltage), val(&r.evse_present_current));
                loop_present(&mut self.core, &mut self.energy, &mut self.loops, now, v, i);
                if r.dc_evse_status.evse_notification == m::EVSENotificationType::StopCharging
                    || r.dc_evse_status.evse_status_code != m::DcEVSEStatusCodeType::EvseReady
                {
                    self.stop.get_or_insert(StopKind::Terminate);
                }
                if self.stop.is_some() || self.config.ev.charging_complete {
                    self.stop.get_or_insert(StopKind::Terminate);
                    self.send_later(now, Request::PowerDelivery);
                } else {
                    self.send_later(now, Request::CurrentDemand);
                }
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
                    self.core.end(EndReason::Finished);
                }
            }
            Request::ServiceDetail
            | Request::PaymentDetails
            | Request::ChargingStatus
            | Request::MeteringReceipt
            | Request::CertificateInstallation
            | Request::CertificateUpdate => self.core.end(EndReason::SequenceError),
        }
    }
}

/// A valid request body of each kind, as our EVCC would send it (for tests,
/// fuzzing and the SECC's proptest).
pub fn sample_request(req: Request) -> m::BodyType {
    let mut ev = Evcc {
        core: Core::new(),
        config: EvccConfig::din_dc(vec![0x84, 0x87, 0x72, 0x60, 0xf3, 0x58]),
        session_id: None,
        awaiting: None,
        next: None,
        stop: None,
        charging: false,
        loops: 0,
        energy: Energy::default(),
        pmax: None,
    };
    let mut b = ev.body(req);
    let empty = m::BodyType::default();
    if b == empty {
        // the PnC / AC requests our EIM EVCC never sends
        match req {
            Request::ServiceDetail => {
                b.service_detail_req = Some(m::ServiceDetailReqType { service_id: 1 })
            }
            Request::PaymentDetails => {
                b.payment_details_req = Some(m::PaymentDetailsReqType {
                    contract_id: "DE8AA001234567".into(),
                    contract_signature_cert_chain: m::CertificateChainType {
                        certificate: Default::default(),
                        sub_certificates: None,
                    },
                })
            }
            Request::ChargingStatus => b.charging_status_req = Some(m::ChargingStatusReqType {}),
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
                    id: None,
                    oem_provisioning_cert: Default::default(),
                    list_of_root_certificate_i_ds: m::ListOfRootCertificateIDsType {
                        root_certificate_id: vec!["R".into()],
                    },
                    dh_params: Default::default(),
                })
            }
            Request::CertificateUpdate => {
                b.certificate_update_req = Some(m::CertificateUpdateReqType {
                    id: None,
                    contract_signature_cert_chain: m::CertificateChainType {
                        certificate: Default::default(),
                        sub_certificates: None,
                    },
                    contract_id: "DE8AA001234567".into(),
                    list_of_root_certificate_i_ds: m::ListOfRootCertificateIDsType {
                        root_certificate_id: vec!["R".into()],
                    },
                    dh_params: Default::default(),
                })
            }
            _ => {}
        }
    }
    ev.core.effects.clear();
    b
}

/// `sample_request` as an encoded message with this session id.
pub fn encode_request(session_id: &[u8], req: Request) -> Vec<u8> {
    encode(session_id, sample_request(req)).unwrap_or_default()
}

/// The response a DIN message carries, decoded: its element name and code,
/// or `None` when the bytes are no DIN response.
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
        for req in Request::ALL {
            let bytes = encode_request(&[1, 2], req);
            assert!(!bytes.is_empty(), "{req:?} encodes");
            let msg = decode(&bytes).unwrap();
            assert_eq!(Request::of(&msg.body), Some(req));
        }
    }

    #[test]
    fn every_failed_response_encodes() {
        let core = Core::new();
        let now = Instant::now();
        let secc = Secc::new(SeccConfig::new(vec![1, 2, 3]), core, now);
        for req in Request::ALL {
            let body = secc.response(req, m::ResponseCodeType::FailedSequenceError);
            let bytes = encode(&[1, 2, 3], body).unwrap_or_else(|e| panic!("{req:?}: {e}"));
            let (_, code) = response_code(&bytes).unwrap();
            assert_eq!(code, "FAILED_SequenceError");
        }
    }

    #[test]
    fn state_table_allows_one_path() {
        let allowed: Vec<_> = Request::ALL
            .iter()
            .filter(|r| SeccState::PreCharge.allows(**r))
            .collect();
        assert_eq!(allowed, [&Request::PreCharge, &Request::PowerDelivery]);
        assert!(Request::ALL.iter().all(|r| !SeccState::Ended.allows(*r)));
    }
}
