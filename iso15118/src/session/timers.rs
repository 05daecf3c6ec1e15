//! The session timers of DIN SPEC 70121, ISO 15118-2 and ISO 15118-20 as deadlines.
//!
//! Values: ISO 15118-2:2014 §8.7.2 (the message timeouts of Table 109,
//! `V2G_EVCC_Msg_Timeout` per message, and the sequence, ongoing and
//! communication-setup timers of the tables beside it) and DIN SPEC
//! 70121:2012 §9.6 (the same names, all message timeouts 2 s but
//! CurrentDemand). The numbers are those other implementations check
//! against the standard (EcoG-io/iso15118 `shared/messages/*/timeouts.py`,
//! hupe1980/iso15118 against Tables 109/111 of -2): see
//! `/work/shared/ISO15118-NOTES.md` §1 "Session FSMs + timers".

use std::time::{Duration, Instant};

/// Which standard's table a message timeout comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Standard {
    /// DIN SPEC 70121:2012.
    Din70121,
    /// ISO 15118-2:2014.
    Iso15118_2,
    /// ISO 15118-20:2022 (Tables 216/217: the charge loops 0.5 s).
    Iso15118_20,
}

/// A timer of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimerKind {
    /// `V2G_SECC_Sequence_Timeout` (60 s, -2 [V2G2-443], DIN the same):
    /// from a response sent to the next request; on expiry the SECC stops
    /// the session.
    SeccSequence,
    /// `V2G_SECC_CommunicationSetup_Timeout` (20 s): from the TCP connection
    /// to SessionSetupReq (SupportedAppProtocol included).
    SeccCommunicationSetup,
    /// `V2G_EVCC_Msg_Timeout` of one request (see [`msg_timeout`]).
    EvccMsg(MsgKind),
    /// `V2G_EVCC_Ongoing_Timeout` (60 s, -2 [V2G2-711]): how long the EVCC
    /// takes `EVSEProcessing=Ongoing` for one message type.
    EvccOngoing,
    /// `V2G_EVCC_CommunicationSetup_Timeout` (20 s): from the TCP connection
    /// to SessionSetupRes.
    EvccCommunicationSetup,
    /// `V2G_EVCC_CableCheck_Timeout` (40 s, -2 [V2G2-702]): the whole cable check.
    CableCheck,
    /// `V2G_EVCC_PreCharge_Timeout` (7 s, -2 [V2G2-706]; 10 s in -20): the whole pre-charge.
    PreCharge,
    /// Not a timer of the standards: the EVCC's pause before the next
    /// request of a loop (charge loop, `Ongoing`), [`super::EvccConfig::loop_interval`].
    EvccNextRequest,
}

/// The request a `V2G_EVCC_Msg_Timeout` is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MsgKind {
    /// SupportedAppProtocolReq.
    SupportedAppProtocol,
    /// SessionSetupReq.
    SessionSetup,
    /// ServiceDiscoveryReq.
    ServiceDiscovery,
    /// ServiceDetailReq.
    ServiceDetail,
    /// ServicePaymentSelectionReq (DIN) / PaymentServiceSelectionReq (-2).
    PaymentServiceSelection,
    /// PaymentDetailsReq.
    PaymentDetails,
    /// ContractAuthenticationReq (DIN) / AuthorizationReq (-2).
    Authorization,
    /// ChargeParameterDiscoveryReq.
    ChargeParameterDiscovery,
    /// PowerDeliveryReq.
    PowerDelivery,
    /// ChargingStatusReq.
    ChargingStatus,
    /// MeteringReceiptReq.
    MeteringReceipt,
    /// CertificateInstallationReq / CertificateUpdateReq.
    Certificate,
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
    /// AuthorizationSetupReq (-20).
    AuthorizationSetup,
    /// ServiceSelectionReq (-20).
    ServiceSelection,
    /// ScheduleExchangeReq (-20).
    ScheduleExchange,
    /// AC_ChargeLoopReq / DC_ChargeLoopReq (-20).
    ChargeLoop,
}

/// `V2G_EVCC_Msg_Timeout` for a request: 2 s, but 5 s for ServiceDetail,
/// PaymentDetails, the certificate messages and (-2 only) PowerDelivery, and
/// 0.25 s for CurrentDemand (-2 Table 109; DIN §9.6 has 2 s for
/// PowerDelivery); -20 (Tables 216/217): 0.5 s for the AC and DC charge
/// loops, 5 s for ServiceDetail and CertificateInstallation, 2 s for the rest.
pub fn msg_timeout(standard: Standard, kind: MsgKind) -> Duration {
    match kind {
        MsgKind::CurrentDemand => Duration::from_millis(250),
        MsgKind::ChargeLoop => Duration::from_millis(500),
        MsgKind::ServiceDetail | MsgKind::PaymentDetails | MsgKind::Certificate => {
            Duration::from_secs(5)
        }
        MsgKind::PowerDelivery if standard == Standard::Iso15118_2 => Duration::from_secs(5),
        _ => Duration::from_secs(2),
    }
}

/// The timer values that are not per message (defaults as the standards say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimerConfig {
    /// `V2G_SECC_Sequence_Timeout`, 60 s.
    pub sequence: Duration,
    /// `V2G_SECC/EVCC_CommunicationSetup_Timeout`, 20 s.
    pub communication_setup: Duration,
    /// `V2G_EVCC_Ongoing_Timeout`, 60 s.
    pub ongoing: Duration,
    /// `V2G_EVCC_CableCheck_Timeout`, 40 s.
    pub cable_check: Duration,
    /// `V2G_EVCC_PreCharge_Timeout`, 7 s.
    pub pre_charge: Duration,
    /// `V2G_EVCC_Msg_Timeout` for CurrentDemandReq, 250 ms (the EVCC's
    /// only sub-second message timer; the others are [`msg_timeout`]'s).
    /// Raise it only for peers known to be slow: Josev's SECC answers in
    /// 50–180 ms, its EXI codec being a JVM behind py4j.
    pub current_demand: Duration,
    /// `V2G_EVCC_Msg_Timeout` for AC/DC_ChargeLoopReq (-20), 500 ms.
    pub charge_loop: Duration,
    /// `V2G_SECC_Sequence_Timeout` after a -20 charge-loop answer
    /// (`V2G_SECC_Sequence_Timeout_AC_CL`/`_DC_CL`), 500 ms.
    pub charge_loop_sequence: Duration,
    /// `V2G_EVCC_PreCharge_Timeout` of -20, 10 s.
    pub iso20_pre_charge: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            sequence: Duration::from_secs(60),
            communication_setup: Duration::from_secs(20),
            ongoing: Duration::from_secs(60),
            cable_check: Duration::from_secs(40),
            pre_charge: Duration::from_secs(7),
            current_demand: msg_timeout(Standard::Din70121, MsgKind::CurrentDemand),
            charge_loop: msg_timeout(Standard::Iso15118_20, MsgKind::ChargeLoop),
            charge_loop_sequence: Duration::from_millis(500),
            iso20_pre_charge: Duration::from_secs(10),
        }
    }
}

impl TimerConfig {
    /// The EVCC's timeout for `kind`: [`msg_timeout`], but
    /// [`TimerConfig::current_demand`] for CurrentDemand and
    /// [`TimerConfig::charge_loop`] for the -20 charge loops.
    pub fn evcc_msg_timeout(&self, standard: Standard, kind: MsgKind) -> Duration {
        match kind {
            MsgKind::CurrentDemand => self.current_demand,
            MsgKind::ChargeLoop => self.charge_loop,
            _ => msg_timeout(standard, kind),
        }
    }
}

/// The armed timers of one machine: at most one deadline per [`TimerKind`]
/// (a message timer replaces the previous one: one request is outstanding).
#[derive(Debug, Clone, Default)]
pub struct Timers {
    armed: Vec<(TimerKind, Instant)>,
}

impl Timers {
    /// Arms (or re-arms) a timer. Arming an [`TimerKind::EvccMsg`] disarms
    /// the previous message timer.
    pub fn arm(&mut self, kind: TimerKind, at: Instant) {
        self.armed.retain(|(k, _)| {
            *k != kind
                && !(matches!(kind, TimerKind::EvccMsg(_)) && matches!(k, TimerKind::EvccMsg(_)))
        });
        self.armed.push((kind, at));
    }
    /// Arms a timer unless it is armed already.
    pub fn arm_once(&mut self, kind: TimerKind, at: Instant) {
        if !self.is_armed(kind) {
            self.armed.push((kind, at));
        }
    }
    /// Disarms a timer.
    pub fn disarm(&mut self, kind: TimerKind) {
        self.armed.retain(|(k, _)| *k != kind);
    }
    /// Disarms every message timer.
    pub fn disarm_msg(&mut self) {
        self.armed
            .retain(|(k, _)| !matches!(k, TimerKind::EvccMsg(_)));
    }
    /// Whether a timer is armed.
    pub fn is_armed(&self, kind: TimerKind) -> bool {
        self.armed.iter().any(|(k, _)| *k == kind)
    }
    /// Disarms everything.
    pub fn clear(&mut self) {
        self.armed.clear();
    }
    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.armed.iter().map(|(_, at)| *at).min()
    }
    /// The earliest timer whose deadline is `now` or earlier, disarmed.
    pub fn expired(&mut self, now: Instant) -> Option<TimerKind> {
        let (i, _) = self
            .armed
            .iter()
            .enumerate()
            .filter(|(_, (_, at))| *at <= now)
            .min_by_key(|(_, (_, at))| *at)?;
        Some(self.armed.remove(i).0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_timeouts_follow_the_tables() {
        assert_eq!(
            msg_timeout(Standard::Din70121, MsgKind::CurrentDemand),
            Duration::from_millis(250)
        );
        assert_eq!(
            msg_timeout(Standard::Iso15118_2, MsgKind::PowerDelivery),
            Duration::from_secs(5)
        );
        assert_eq!(
            msg_timeout(Standard::Din70121, MsgKind::PowerDelivery),
            Duration::from_secs(2)
        );
        assert_eq!(
            msg_timeout(Standard::Iso15118_2, MsgKind::PaymentDetails),
            Duration::from_secs(5)
        );
        assert_eq!(
            msg_timeout(Standard::Iso15118_2, MsgKind::SessionSetup),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn timers_report_the_earliest_and_replace_message_timers() {
        let t = Instant::now();
        let mut timers = Timers::default();
        timers.arm(TimerKind::SeccSequence, t + Duration::from_secs(60));
        timers.arm(
            TimerKind::EvccMsg(MsgKind::SessionSetup),
            t + Duration::from_secs(2),
        );
        timers.arm(
            TimerKind::EvccMsg(MsgKind::CurrentDemand),
            t + Duration::from_secs(1),
        );
        assert!(!timers.is_armed(TimerKind::EvccMsg(MsgKind::SessionSetup)));
        assert_eq!(timers.next(), Some(t + Duration::from_secs(1)));
        assert_eq!(timers.expired(t), None);
        assert_eq!(
            timers.expired(t + Duration::from_secs(61)),
            Some(TimerKind::EvccMsg(MsgKind::CurrentDemand))
        );
        assert_eq!(
            timers.expired(t + Duration::from_secs(61)),
            Some(TimerKind::SeccSequence)
        );
        assert_eq!(timers.next(), None);
        timers.arm_once(TimerKind::EvccOngoing, t);
        timers.arm_once(TimerKind::EvccOngoing, t + Duration::from_secs(5));
        assert_eq!(timers.next(), Some(t));
    }
}
