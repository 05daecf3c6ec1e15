//! What the DIN, -2 and -20 machines share: the SECC's screening of a
//! request, session resumption, the EVCC's request pacing and timers, and
//! the reading of an answer's code and DC status. The messages themselves
//! stay with each protocol (their types are the schema's).

use std::fmt::Debug;
use std::time::{Duration, Instant};

use super::Effect;
use super::{
    Core, EndReason, Energy, EvNotice, EvccConfig, EvseRequest, EvseStatus, Isolation, MsgKind,
    SeccConfig, Standard, TimerConfig, TimerKind,
};

/// The schema's name of a response code (`"FAILED_SequenceError"`).
/// DC: the current an EV asks for (its target current at its target
/// voltage), capped so that voltage × current stays within the PMax of the
/// schedule it chose (none, or one that is not positive: uncapped).
pub(crate) fn scheduled_current(ev: &super::EvStatus, pmax: Option<f64>) -> f64 {
    match pmax {
        Some(p) if p > 0.0 && ev.target_voltage > 0.0 => {
            ev.target_current.min(p / ev.target_voltage)
        }
        _ => ev.target_current,
    }
}

pub(crate) fn code_name<C: serde::Serialize + Debug>(c: C) -> String {
    match serde_json::to_value(&c) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{c:?}"),
    }
}

/// The end of a session on a `FAILED*` response code.
pub(crate) fn failed<C: serde::Serialize + Debug>(c: C) -> EndReason {
    EndReason::Failed {
        response_code: code_name(c),
    }
}

/// A schema's response codes, as the machines read and refuse with them.
pub(crate) trait Codes: Copy {
    /// `FAILED_UnknownSession`.
    const UNKNOWN_SESSION: Self;
    /// `FAILED_SequenceError`.
    const SEQUENCE_ERROR: Self;
    /// `FAILED`.
    const FAILED: Self;
    /// Any `FAILED*` code (not one of the `OK*`).
    fn is_failed(self) -> bool;
}

/// [`Codes`] of the schema `$m` (its `ResponseCodeType`s are spelt alike).
macro_rules! response_codes {
    ($m:ident) => {
        impl Codes for $m::ResponseCodeType {
            const UNKNOWN_SESSION: Self = $m::ResponseCodeType::FailedUnknownSession;
            const SEQUENCE_ERROR: Self = $m::ResponseCodeType::FailedSequenceError;
            const FAILED: Self = $m::ResponseCodeType::FAILED;
            fn is_failed(self) -> bool {
                !matches!(
                    self,
                    $m::ResponseCodeType::OK
                        | $m::ResponseCodeType::OkNewSessionEstablished
                        | $m::ResponseCodeType::OkOldSessionJoined
                        | $m::ResponseCodeType::OkCertificateExpiresSoon
                )
            }
        }
    };
}
pub(crate) use response_codes;

/// Why the SECC refuses a request before looking at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Another SessionID than the session's.
    UnknownSession,
    /// Not allowed in the state.
    SequenceError,
    /// The EVSE is in emergency stop.
    EmergencyStop,
    /// An isolation fault, for a request that needs isolation.
    IsolationFault,
}

impl Refusal {
    /// The response code of the refusal in a schema.
    pub(crate) fn code<C: Codes>(self) -> C {
        match self {
            Refusal::UnknownSession => C::UNKNOWN_SESSION,
            Refusal::SequenceError => C::SEQUENCE_ERROR,
            Refusal::EmergencyStop | Refusal::IsolationFault => C::FAILED,
        }
    }

    /// How the session ends after the refusal.
    pub(crate) fn reason(self) -> EndReason {
        match self {
            Refusal::UnknownSession => EndReason::UnknownSession,
            Refusal::SequenceError => EndReason::SequenceError,
            Refusal::EmergencyStop => EndReason::EmergencyStop,
            Refusal::IsolationFault => EndReason::IsolationFault,
        }
    }
}

/// The SECC's checks of a request, in order: the header's SessionID (after
/// SessionSetup), the state, the emergency stop, the isolation (for
/// requests that need it).
pub(crate) fn screen(
    in_setup: bool,
    header_id: &[u8],
    session_id: Option<&Vec<u8>>,
    allowed: bool,
    evse: &EvseStatus,
    needs_isolation: bool,
) -> Option<Refusal> {
    if !in_setup && session_id.map(Vec::as_slice) != Some(header_id) {
        Some(Refusal::UnknownSession)
    } else if !allowed {
        Some(Refusal::SequenceError)
    } else if evse.emergency_stop {
        Some(Refusal::EmergencyStop)
    } else if evse.isolation == Isolation::Fault && needs_isolation {
        Some(Refusal::IsolationFault)
    } else {
        None
    }
}

/// The SessionID a SessionSetupReq gets and whether it joins a paused
/// session (the asked id is not all zeros and is the paused one's).
pub(crate) fn setup_session(config: &SeccConfig, asked: &[u8]) -> (Vec<u8>, bool) {
    let resumed = config
        .resume
        .as_ref()
        .is_some_and(|p| !asked.iter().all(|b| *b == 0) && p.session_id == asked);
    if resumed {
        (asked.to_vec(), true)
    } else {
        (config.session_id.clone(), false)
    }
}

impl Core {
    /// The SECC's timeout: ends the session on the first expired timer;
    /// true if it did.
    pub(crate) fn expire(&mut self, now: Instant) -> bool {
        match self.timers.expired(now) {
            Some(kind) => {
                self.end(EndReason::Timeout(kind));
                true
            }
            None => false,
        }
    }

    /// Arms the SECC's sequence timer.
    pub(crate) fn arm_sequence(&mut self, now: Instant, config: &SeccConfig) {
        self.timers
            .arm(TimerKind::SeccSequence, now + config.timers.sequence);
    }

    /// Transmits an encoded request and arms its message timer; ends the
    /// session when it could not be encoded. True if it was sent.
    pub(crate) fn send_request(
        &mut self,
        now: Instant,
        encoded: Result<Vec<u8>, String>,
        standard: Standard,
        kind: MsgKind,
        timers: &TimerConfig,
    ) -> bool {
        match encoded {
            Ok(bytes) => {
                self.transmit(bytes);
                self.timers.arm(
                    TimerKind::EvccMsg(kind),
                    now + timers.evcc_msg_timeout(standard, kind),
                );
                true
            }
            Err(e) => {
                self.end(EndReason::Malformed(e));
                false
            }
        }
    }

    /// Asks the EVSE.
    pub(crate) fn evse(&mut self, r: EvseRequest) {
        self.effects.push_back(Effect::Evse(r));
    }

    /// Asks the EVSE once: when `asked` is not yet set (and sets it).
    pub(crate) fn evse_once(&mut self, asked: &mut bool, r: EvseRequest) {
        if !*asked {
            *asked = true;
            self.evse(r);
        }
    }

    /// Reports a car notice.
    pub(crate) fn notice(&mut self, n: EvNotice) {
        self.effects.push_back(Effect::Ev(n));
    }
}

/// The header SessionID of the EVCC's request: SessionSetup asks for the
/// paused session (or `blank` zero bytes: 1 in DIN/-2, 8 in -20), the rest
/// carry the session's.
pub(crate) fn request_session_id(
    setup: bool,
    resume: &Option<Vec<u8>>,
    session_id: &Option<Vec<u8>>,
    blank: usize,
) -> Vec<u8> {
    let id = if setup { resume } else { session_id };
    id.clone().unwrap_or_else(|| vec![0; blank])
}

/// The EVCC's first look at an answer: one must be awaited (else a
/// sequence error); its message timer goes; its SessionID must be the
/// session's (but for SessionSetup's). The awaited request, or `None` when
/// the session ended.
pub(crate) fn awaited<R: Copy + PartialEq>(
    core: &mut Core,
    awaiting: &mut Option<R>,
    setup: R,
    header_id: &[u8],
    session_id: Option<&Vec<u8>>,
) -> Option<R> {
    let Some(req) = awaiting.take() else {
        core.end(EndReason::SequenceError);
        return None;
    };
    core.timers.disarm_msg();
    if req != setup && session_id.map(Vec::as_slice) != Some(header_id) {
        core.end(EndReason::UnknownSession);
        return None;
    }
    Some(req)
}

/// The EVCC's charge-loop answer with present values: counted, integrated
/// and reported.
pub(crate) fn loop_present(
    core: &mut Core,
    energy: &mut Energy,
    loops: &mut u32,
    now: Instant,
    voltage: f64,
    current: f64,
) {
    *loops += 1;
    energy.add(now, voltage, current);
    core.notice(EvNotice::Present { voltage, current });
}

impl Core {
    /// The EVCC starts the cable check: its timer runs.
    pub(crate) fn arm_cable_check(&mut self, now: Instant, config: &EvccConfig) {
        self.timers
            .arm(TimerKind::CableCheck, now + config.timers.cable_check);
    }

    /// The EVCC's cable check passed: PreCharge's timer (`pre_charge`: 7 s
    /// in DIN/-2, 10 s in -20) runs instead.
    pub(crate) fn cable_checked(&mut self, now: Instant, pre_charge: Duration) {
        self.timers.disarm(TimerKind::CableCheck);
        self.timers.arm(TimerKind::PreCharge, now + pre_charge);
    }

    /// The EVCC's PreCharge answer: true (and PreCharge done) when the
    /// present voltage is within the tolerance of the target.
    pub(crate) fn precharged(&mut self, config: &EvccConfig, present: f64) -> bool {
        if (present - config.ev.target_voltage).abs() <= config.precharge_tolerance {
            self.timers.disarm(TimerKind::PreCharge);
            self.notice(EvNotice::PreChargeDone);
            true
        } else {
            false
        }
    }
}

/// An EVSE's DC status, as both schemas carry it.
pub(crate) trait DcStatus {
    /// `EVSE_EmergencyShutdown`.
    fn emergency_shutdown(&self) -> bool;
    /// `EVSEIsolationStatus=Fault`.
    fn isolation_fault(&self) -> bool;
}

/// The EVCC's reading of an answer: ends on an EVSE status that forbids
/// going on or on `failure` (a FAILED code); true if the session goes on.
pub(crate) fn check_answer<S: DcStatus>(
    core: &mut Core,
    failure: Option<EndReason>,
    status: Option<&S>,
) -> bool {
    if let Some(s) = status {
        if s.emergency_shutdown() {
            core.end(EndReason::EmergencyStop);
            return false;
        }
        if s.isolation_fault() {
            core.end(EndReason::IsolationFault);
            return false;
        }
    }
    if let Some(reason) = failure {
        core.end(reason);
        return false;
    }
    true
}

/// The EVCC's pacing: requests sent now or after the loop interval, the
/// `Ongoing` repeats and the timeouts.
pub(crate) trait Pacing {
    /// The protocol's request kind.
    type Req: Copy;
    /// The machine's core.
    fn core_mut(&mut self) -> &mut Core;
    /// The EVCC's configuration.
    fn evcc_config(&self) -> &EvccConfig;
    /// The request waiting for the loop interval.
    fn next_mut(&mut self) -> &mut Option<Self::Req>;
    /// Sends `req` now.
    fn send_now(&mut self, now: Instant, req: Self::Req);

    /// Sends `req` after the loop interval.
    fn send_later(&mut self, now: Instant, req: Self::Req) {
        *self.next_mut() = Some(req);
        let at = now + self.evcc_config().loop_interval;
        self.core_mut().timers.arm(TimerKind::EvccNextRequest, at);
    }

    /// Time has come: the waiting request goes out; any other timer ends
    /// the session.
    fn handle_timeout(&mut self, now: Instant) {
        while let Some(kind) = self.core_mut().timers.expired(now) {
            if kind == TimerKind::EvccNextRequest {
                if let Some(req) = self.next_mut().take() {
                    self.send_now(now, req);
                }
            } else {
                return self.core_mut().end(EndReason::Timeout(kind));
            }
        }
    }

    /// An answer's EVSEProcessing: when `ongoing`, repeats `req` later
    /// (under the Ongoing timer) and says true.
    fn ongoing(&mut self, now: Instant, req: Self::Req, ongoing: bool) -> bool {
        if ongoing {
            let at = now + self.evcc_config().timers.ongoing;
            self.core_mut().timers.arm_once(TimerKind::EvccOngoing, at);
            self.send_later(now, req);
            true
        } else {
            self.core_mut().timers.disarm(TimerKind::EvccOngoing);
            false
        }
    }
}

/// The plumbing of a protocol's EVCC, the same but for the schema `$m`
/// (in scope as `m`, with `Evcc`, `Request`, `Core` and `EvccConfig`):
/// its DC status read by [`check_answer`] and its [`Pacing`].
macro_rules! evcc_plumbing {
    ($m:ident) => {
        impl DcStatus for $m::DcEVSEStatusType {
            fn emergency_shutdown(&self) -> bool {
                self.evse_status_code == $m::DcEVSEStatusCodeType::EvseEmergencyShutdown
            }
            fn isolation_fault(&self) -> bool {
                self.evse_isolation_status == Some($m::IsolationLevelType::Fault)
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
    };
}
pub(crate) use evcc_plumbing;
