//! The harness both session test files share: our EVCC against our SECC in
//! memory on a virtual clock, the EVSE and car around them, the wire
//! between them. What differs per protocol is a [`Plant`].
#![allow(dead_code)]

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use evproto_iso15118::session::{
    Authorization, CertificateUpdate, ContractProvisioning, ContractStatus, Effect, EndReason,
    EvNotice, Evcc, EvseRequest, EvseStatus, Isolation, ScheduleTuple, Secc, SeccConfig, StopKind,
};
use evproto_iso15118::v2gtp::{self, PayloadType};
use test_support::VirtualClock;

pub(crate) const SESSION: [u8; 8] = [0x52, 0xc8, 0xb2, 0x86, 0xbf, 0xfe, 0x36, 0x2d];
pub(crate) const EVCC_ID: [u8; 6] = [0x84, 0x87, 0x72, 0x60, 0xf3, 0x58];

pub(crate) type LoseAnswer = Box<dyn FnMut(&[u8]) -> bool>;
pub(crate) type Tamper = Box<dyn FnMut(&[u8]) -> Option<Vec<u8>>>;
pub(crate) type Hook = Box<dyn FnMut(&mut Secc, &mut EvseStatus, &Evcc)>;
/// What the car does of its own after each step (e.g. ask a renegotiation).
pub(crate) type EvHook = Box<dyn FnMut(&mut Evcc)>;

/// What a protocol's simulation adds: the EVSE's answers that differ and
/// the reading of its messages.
pub(crate) trait Plant: Sized {
    /// The answer to an `EvseRequest::Schedules`.
    fn schedules(sim: &mut Sim<Self>) -> Vec<ScheduleTuple>;
    /// The power module switched.
    fn power(sim: &mut Sim<Self>, on: bool);
    /// The clock moved on by `dt`.
    fn advanced(_sim: &mut Sim<Self>, _dt: Duration) {}
    /// The body element of a message (or the handshake's root).
    fn body_name(b: &[u8]) -> String;
    /// The response name and code of an answer.
    fn response_code(b: &[u8]) -> Option<(String, String)>;
}

/// The EVSE and car around the two machines, and the wire between them;
/// the protocol's own state in `plant` (reached through `Deref`).
pub(crate) struct Sim<P> {
    pub(crate) clock: VirtualClock,
    pub(crate) secc: Secc,
    pub(crate) evcc: Evcc,
    pub(crate) evse: EvseStatus,
    /// Authorization decision and how long it takes (`None`: never).
    pub(crate) auth: Option<(Authorization, Duration)>,
    pub(crate) auth_at: Option<Instant>,
    /// Plug & Charge: the backend's verdict on a contract (`None`: never).
    pub(crate) contract_status: Option<ContractStatus>,
    /// Plug & Charge: the provisioning service answering CertificateInstallation.
    pub(crate) provisioning: Option<ContractProvisioning>,
    /// Plug & Charge, -20: the provisioning service of -20's
    /// CertificateInstallation (a secp521r1 contract).
    pub(crate) provisioning_iso20: Option<ContractProvisioning>,
    /// Plug & Charge: the answer to CertificateUpdate when set (else the
    /// provisioning service's).
    pub(crate) update_answer: Option<CertificateUpdate>,
    /// Isolation result and how long the test takes (`None`: never ends).
    pub(crate) isolation: Option<(Isolation, Duration)>,
    pub(crate) isolation_at: Option<Instant>,
    /// The power module follows targets (false: stuck at 0 V).
    pub(crate) follow_targets: bool,
    /// Stop after this many charge loops.
    pub(crate) stop_after: Option<(u32, StopKind)>,
    /// Drops the SECC's answer when true.
    pub(crate) lose_answer: LoseAnswer,
    /// Replaces an EVCC request on the wire when `Some` (DIN/-2: its
    /// payload; -20: its V2GTP frame).
    pub(crate) tamper: Tamper,
    /// Called after every delivery, to inject faults.
    pub(crate) hook: Hook,
    pub(crate) ev_hook: EvHook,
    pub(crate) to_secc: Vec<Vec<u8>>,
    /// When each of `to_secc` was sent.
    pub(crate) sent_at: Vec<Instant>,
    pub(crate) to_evcc: Vec<Vec<u8>>,
    pub(crate) evse_requests: Vec<EvseRequest>,
    pub(crate) notices: Vec<EvNotice>,
    pub(crate) secc_end: Option<EndReason>,
    pub(crate) evcc_end: Option<EndReason>,
    pub(crate) evcc_end_at: Option<Instant>,
    pub(crate) plant: P,
}

impl<P> Deref for Sim<P> {
    type Target = P;
    fn deref(&self) -> &P {
        &self.plant
    }
}

impl<P> DerefMut for Sim<P> {
    fn deref_mut(&mut self) -> &mut P {
        &mut self.plant
    }
}

impl<P: Plant> Sim<P> {
    /// The two machines made at `clock`'s now, the EVSE as `evse`.
    pub(crate) fn with(
        clock: VirtualClock,
        secc: Secc,
        evcc: Evcc,
        evse: EvseStatus,
        plant: P,
    ) -> Self {
        Self {
            clock,
            secc,
            evcc,
            evse,
            auth: Some((Authorization::Accepted, Duration::from_millis(500))),
            auth_at: None,
            contract_status: Some(ContractStatus::Accepted),
            provisioning: None,
            provisioning_iso20: None,
            update_answer: None,
            isolation: Some((Isolation::Valid, Duration::from_millis(300))),
            isolation_at: None,
            follow_targets: true,
            stop_after: None,
            lose_answer: Box::new(|_| false),
            tamper: Box::new(|_| None),
            hook: Box::new(|_, _, _| {}),
            ev_hook: Box::new(|_| {}),
            to_secc: Vec::new(),
            sent_at: Vec::new(),
            to_evcc: Vec::new(),
            evse_requests: Vec::new(),
            notices: Vec::new(),
            secc_end: None,
            evcc_end: None,
            evcc_end_at: None,
            plant,
        }
    }

    pub(crate) fn evse_request(&mut self, r: EvseRequest) {
        let now = self.clock.now();
        match &r {
            EvseRequest::Authorize { .. } => {
                self.auth_at = self.auth.map(|(_, d)| now + d);
            }
            EvseRequest::Schedules { .. } => {
                let s = P::schedules(self);
                self.secc.handle_schedules(now, s);
            }
            EvseRequest::StartCableCheck => {
                self.isolation_at = self.isolation.map(|(_, d)| now + d);
            }
            EvseRequest::Target { voltage, current } if self.follow_targets => {
                self.evse.present_voltage = voltage.min(self.evse.max_voltage);
                self.evse.present_current = current.min(self.evse.max_current);
                self.secc.set_evse(self.evse.clone());
            }
            EvseRequest::Power(on) => P::power(self, *on),
            EvseRequest::AuthorizeContract { .. } => {
                if let Some(s) = self.contract_status {
                    self.secc.handle_contract_status(now, s);
                }
            }
            EvseRequest::InstallCertificate {
                oem_provisioning_cert,
                ..
            } => {
                let answer = self.provisioning.as_ref().map(|p| {
                    p.install(oem_provisioning_cert, &[0x42; 32], [0x24; 16])
                        .unwrap()
                });
                self.secc.handle_certificate_installation(now, answer);
            }
            EvseRequest::InstallCertificateIso20 {
                oem_provisioning_cert,
                ..
            } => {
                let mut eph = [0x42; 66];
                eph[0] = 0;
                let answer = self.provisioning_iso20.as_ref().map(|p| {
                    p.install_iso20(oem_provisioning_cert, &eph, [0x26; 12])
                        .unwrap()
                });
                self.secc.handle_iso20_certificate_installation(now, answer);
            }
            EvseRequest::UpdateCertificate { certificate, .. } => {
                let answer = self.update_answer.clone().or_else(|| {
                    self.provisioning
                        .as_ref()
                        .map(|p| p.update(certificate, &[0x43; 32], [0x25; 16]).unwrap())
                });
                self.secc.handle_certificate_update(now, answer);
            }
            _ => {}
        }
        self.evse_requests.push(r);
    }

    /// Delivers everything that is ready now.
    pub(crate) fn drain(&mut self) {
        loop {
            let now = self.clock.now();
            let mut progress = false;
            while let Some(e) = self.evcc.poll_effect() {
                progress = true;
                match e {
                    Effect::Transmit(b) => {
                        let b = (self.tamper)(&b).unwrap_or(b);
                        self.to_secc.push(b.clone());
                        self.sent_at.push(now);
                        self.secc.handle_message(now, &b);
                    }
                    Effect::TransmitAs(pt, b) => {
                        // tampered as framed (-20), delivered as its payload
                        let f = frame(pt, &b);
                        let f = (self.tamper)(&f).unwrap_or(f);
                        let (pt, b) = unframe(&f).expect("a tamper keeps the V2GTP frame");
                        self.to_secc.push(f);
                        self.sent_at.push(now);
                        self.secc.handle_packet(now, pt, &b);
                    }
                    Effect::SessionEnded { reason } => {
                        assert!(self.evcc_end.is_none(), "EVCC ended twice");
                        self.evcc_end = Some(reason);
                        self.evcc_end_at = Some(now);
                    }
                    Effect::Ev(n) => self.notices.push(n),
                    other => panic!("EVCC effect {other:?}"),
                }
            }
            while let Some(e) = self.secc.poll_effect() {
                progress = true;
                match e {
                    Effect::Transmit(b) => {
                        if (self.lose_answer)(&b) {
                            continue;
                        }
                        self.to_evcc.push(b.clone());
                        self.evcc.handle_message(now, &b);
                    }
                    Effect::TransmitAs(pt, b) => {
                        let f = frame(pt, &b);
                        if (self.lose_answer)(&f) {
                            continue;
                        }
                        self.to_evcc.push(f);
                        self.evcc.handle_packet(now, pt, &b);
                    }
                    Effect::SessionEnded { reason } => {
                        assert!(self.secc_end.is_none(), "SECC ended twice");
                        self.secc_end = Some(reason)
                    }
                    Effect::Evse(r) => self.evse_request(r),
                    other => panic!("SECC effect {other:?}"),
                }
            }
            if let Some((n, kind)) = self.stop_after {
                if self.evcc.charge_loops() >= n {
                    self.evcc.request_stop(kind);
                    self.stop_after = None;
                }
            }
            (self.hook)(&mut self.secc, &mut self.evse, &self.evcc);
            (self.ev_hook)(&mut self.evcc);
            if !progress {
                break;
            }
        }
    }

    /// Moves the clock on to `t` (not back).
    pub(crate) fn advance_to(&mut self, t: Instant) {
        let dt = t.saturating_duration_since(self.clock.now());
        if dt.is_zero() {
            return;
        }
        self.clock.advance(dt);
        P::advanced(self, dt);
    }

    /// Runs until both sides ended (or the SECC ended and the EVCC has no
    /// more deadlines) or `limit` of virtual time passed.
    pub(crate) fn run(&mut self, limit: Duration) {
        let end = self.clock.now() + limit;
        self.drain();
        while self.clock.now() < end && !(self.secc_end.is_some() && self.evcc_end.is_some()) {
            let next = [
                self.secc.poll_timeout(),
                self.evcc.poll_timeout(),
                self.auth_at,
                self.isolation_at,
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|n| *n <= end) else {
                self.advance_to(end);
                break;
            };
            self.advance_to(next);
            let now = self.clock.now();
            if self.auth_at.is_some_and(|t| t <= now) {
                self.auth_at = None;
                let (d, _) = self.auth.unwrap();
                self.secc.handle_authorization(now, d);
            }
            if self.isolation_at.is_some_and(|t| t <= now) {
                self.isolation_at = None;
                self.evse.isolation = self.isolation.unwrap().0;
                self.secc.set_evse(self.evse.clone());
            }
            self.secc.handle_timeout(now);
            self.evcc.handle_timeout(now);
            self.drain();
        }
    }

    /// The names of the requests the SECC got, in order, runs collapsed:
    /// `("ContractAuthenticationReq", 3)`.
    pub(crate) fn requests(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for b in &self.to_secc {
            let name = P::body_name(b);
            match out.last_mut() {
                Some((n, c)) if *n == name => *c += 1,
                _ => out.push((name, 1)),
            }
        }
        out
    }

    pub(crate) fn answers(&self) -> Vec<(String, String)> {
        self.to_evcc
            .iter()
            .filter_map(|b| P::response_code(b))
            .collect()
    }
}

/// The body element of a message whose body `decode` gives as JSON (or
/// the handshake's root).
pub(crate) fn body_name_in(
    b: &[u8],
    decode: impl FnOnce(&[u8]) -> Option<serde_json::Value>,
) -> String {
    if let Ok(m) = evproto_iso15118::app_protocol::decode(b) {
        return m.name().to_string();
    }
    let Some(json) = decode(b) else {
        return "?".into();
    };
    json.as_object()
        .unwrap()
        .iter()
        .find(|(_, v)| !v.is_null())
        .map(|(k, _)| k.clone())
        .unwrap_or_default()
}

/// A -20 payload as the harness records it: framed in its V2GTP header,
/// so that the payload type stays with the bytes (DIN/-2 payloads are
/// recorded bare).
pub(crate) fn frame(pt: PayloadType, exi: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    v2gtp::encode(pt, exi, &mut out).unwrap();
    out
}

/// The payload type and payload of a frame recorded by [`frame`].
pub(crate) fn unframe(b: &[u8]) -> Option<(PayloadType, Vec<u8>)> {
    let mut r = v2gtp::Reassembler::new(1 << 20);
    r.push(b);
    let p = r.next_packet().ok()??;
    Some((p.payload_type, p.payload))
}

pub(crate) fn collapse(names: &[(&str, usize)]) -> Vec<(String, usize)> {
    names.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

/// A SECC fed `msgs`, the EVSE answering at once.
pub(crate) fn replay(msgs: &[Vec<u8>]) -> (Secc, Instant) {
    let clock = VirtualClock::new();
    let now = clock.now();
    let mut secc = Secc::new(SeccConfig::new(SESSION.to_vec()), now);
    for b in msgs {
        secc.handle_message(now, b);
        while let Some(e) = secc.poll_effect() {
            match e {
                Effect::Evse(EvseRequest::Authorize { .. }) => {
                    secc.handle_authorization(now, Authorization::Accepted)
                }
                Effect::Evse(EvseRequest::Schedules { .. }) => secc.handle_schedules(now, vec![]),
                Effect::Evse(EvseRequest::StartCableCheck) => {
                    let mut e = secc.evse().clone();
                    e.isolation = Isolation::Valid;
                    secc.set_evse(e);
                }
                Effect::SessionEnded { reason } => panic!("replay ended: {reason:?}"),
                _ => {}
            }
        }
    }
    (secc, now)
}
