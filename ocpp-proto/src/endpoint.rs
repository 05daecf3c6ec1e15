//! The per-connection endpoint.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use evproto_ocpp_types::rpc::{self, Frame};

use crate::error::{ApiMisuse, CallError, PeerMisbehaved, PeerMisbehavedKind, ProtocolVersion};

/// Which side of the connection this endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// The central system: accepts station connections.
    Csms,
    /// The charging station: connects to the CSMS.
    ChargingStation,
}

/// Where the boot handshake stands (OCPP 1.6 §4.2, 2.0.1 B01–B03).
///
/// ```text
///  NotBooted ──BootNotification──► Accepted
///      │                              ▲
///      └────► Pending / Rejected ─────┘ (a later BootNotification)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BootState {
    /// No BootNotification answered yet.
    NotBooted,
    /// The CSMS answered `Pending`.
    Pending,
    /// The CSMS answered `Rejected`.
    Rejected,
    /// The CSMS answered `Accepted`.
    Accepted,
}

/// Endpoint settings.
///
/// ```
/// use std::time::Duration;
/// let config = evproto_ocpp_proto::Config::default()
///     .with_call_timeout(Duration::from_secs(10))
///     .with_max_queue(16);
/// assert_eq!(config.max_queue, 16);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// How long a call may take, from `send_call` to its result, queue time
    /// included. Default 30 s.
    pub call_timeout: Duration,
    /// Calls that may wait behind the outstanding one. Default 64.
    pub max_queue: usize,
    /// The largest frame accepted, in bytes. Default 1 MiB.
    pub max_message_size: usize,
    /// CSMS: answer `SecurityError` to a station's calls before its boot is
    /// accepted (2.0.1 B02.FR.09, B03.FR.07; 1.6 §4.2 forbids a Pending or
    /// Rejected charge point any request but BootNotification, and
    /// `SecurityError` is a 1.6 error code too). Default on.
    pub boot_gate: bool,
    /// Charging station: hold calls other than BootNotification until the
    /// boot is accepted. Default on.
    pub hold_calls_until_boot: bool,
    /// Answered incoming calls remembered, to answer a retransmitted CALL
    /// with the same result. Default 4 (a station retransmits its last call, not its last sixteen; each entry holds the answer frame).
    pub answered_cache: usize,
    /// The peer's calls handled at the same time; a CALL beyond them gets a
    /// CALLERROR (`RpcFrameworkError`; 1.6, which has no such code,
    /// `GenericError`) and is not handled. OCPP-J (1.6 §4.1.1, 2.0.1 and 2.1
    /// Part 4 §4.1.1) lets a sender send a CALL once all its earlier ones
    /// were answered *or timed out*; the receiver cannot see the sender's
    /// timeout, so while a handler is slow a well-behaved peer may have a
    /// few calls open. Default 4: one, plus three the peer gave up on; more
    /// is a flood. Whatever the value, extra calls are refused, never
    /// queued without bound.
    pub max_incoming_calls: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(30),
            max_queue: 64,
            max_message_size: 1 << 20,
            boot_gate: true,
            hold_calls_until_boot: true,
            answered_cache: 4,
            max_incoming_calls: 4,
        }
    }
}

impl Config {
    /// Sets [`Config::call_timeout`].
    pub fn with_call_timeout(mut self, d: Duration) -> Self {
        self.call_timeout = d;
        self
    }
    /// Sets [`Config::max_queue`].
    pub fn with_max_queue(mut self, n: usize) -> Self {
        self.max_queue = n;
        self
    }
    /// Sets [`Config::max_message_size`].
    pub fn with_max_message_size(mut self, n: usize) -> Self {
        self.max_message_size = n;
        self
    }
    /// Sets [`Config::boot_gate`].
    pub fn with_boot_gate(mut self, on: bool) -> Self {
        self.boot_gate = on;
        self
    }
    /// Sets [`Config::hold_calls_until_boot`].
    pub fn with_hold_calls_until_boot(mut self, on: bool) -> Self {
        self.hold_calls_until_boot = on;
        self
    }
    /// Sets [`Config::answered_cache`].
    pub fn with_answered_cache(mut self, n: usize) -> Self {
        self.answered_cache = n;
        self
    }
    /// Sets [`Config::max_incoming_calls`] (at least 1).
    pub fn with_max_incoming_calls(mut self, n: usize) -> Self {
        self.max_incoming_calls = n.max(1);
        self
    }
}

/// Makes message ids for outgoing calls (unique per connection, ≤ 36 characters).
///
/// Injected so the endpoint never touches a random number generator.
pub trait IdGenerator: Send {
    /// The next id.
    fn next_id(&mut self) -> String;
}

/// Ids `"1"`, `"2"`, ... (with an optional prefix). The default.
#[derive(Debug, Clone, Default)]
pub struct SequentialIds {
    prefix: String,
    next: u64,
}

impl SequentialIds {
    /// Ids `prefix1`, `prefix2`, ... (the prefix should keep them ≤ 36 characters).
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            next: 0,
        }
    }
}

impl IdGenerator for SequentialIds {
    fn next_id(&mut self) -> String {
        self.next += 1;
        format!("{}{}", self.prefix, self.next)
    }
}

/// Names one outgoing call from `send_call` to its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallHandle(u64);

/// What the endpoint reports. Drain with [`Endpoint::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The peer called; answer with [`Endpoint::respond`]. The action exists
    /// in this version and the peer may send it; the payload is not yet
    /// decoded (decode it typed, and on failure respond with
    /// [`CallError::for_decode_error`]).
    IncomingCall {
        /// Message id, to pass to `respond`.
        id: String,
        /// Action name.
        action: &'static str,
        /// The payload, JSON text.
        payload: String,
    },
    /// The peer sent a 2.1 SEND message (no answer).
    IncomingSend {
        /// Message id.
        id: String,
        /// Action name.
        action: &'static str,
        /// The payload, JSON text.
        payload: String,
    },
    /// An outgoing call got its answer.
    CallCompleted {
        /// The call.
        handle: CallHandle,
        /// Its action.
        action: &'static str,
        /// The CALLRESULT payload (JSON text, not yet decoded) or the CALLERROR.
        result: Result<String, CallError>,
    },
    /// An outgoing call got no answer before its deadline. `sent` is false if
    /// it timed out still queued (it was never sent).
    CallTimedOut {
        /// The call.
        handle: CallHandle,
        /// Its action.
        action: &'static str,
        /// Whether it reached the wire.
        sent: bool,
    },
    /// The peer could not process one of our CALLRESULTs (2.1 CALLRESULTERROR).
    ResultRejected {
        /// The message id of the CALL we answered.
        id: String,
        /// Their error.
        error: CallError,
    },
    /// The boot state changed (from a BootNotification answer either way).
    BootStateChanged(BootState),
    /// The peer broke the protocol; already answered or dropped as the spec says.
    PeerMisbehaved(PeerMisbehaved),
}

struct OutCall {
    handle: CallHandle,
    action: &'static str,
    payload: String,
    deadline: Instant,
    cancelled: bool,
}

struct InFlight {
    id: String,
    call: OutCall,
}

/// One OCPP-J connection's RPC state, for either role and any version.
///
/// # Call order and time
///
/// - Feed every text frame from the peer to [`handle_text`](Self::handle_text),
///   in order. Call [`handle_timeout`](Self::handle_timeout) when the time
///   from [`poll_timeout`](Self::poll_timeout) has come.
/// - After **every** input, drain in this order: [`poll_transmit`](Self::poll_transmit)
///   until `None` (send each frame, in order), then
///   [`poll_event`](Self::poll_event) until `None`, then read
///   [`poll_timeout`](Self::poll_timeout).
/// - `now` must never go backwards. The endpoint never reads a clock.
///
/// # Guarantees
///
/// - At most one outgoing CALL is on the wire; others wait in a queue of
///   [`Config::max_queue`]. Incoming and outgoing calls are independent.
/// - A result is matched only by message id to the outstanding call. A late
///   result (after its call timed out) or an unknown one is dropped and
///   reported, never given to another call.
pub struct Endpoint {
    role: Role,
    version: ProtocolVersion,
    config: Config,
    ids: Box<dyn IdGenerator>,
    next_handle: u64,
    in_flight: Option<InFlight>,
    queue: VecDeque<OutCall>,
    timed_out: VecDeque<String>,
    incoming: Vec<(String, &'static str)>,
    answered: VecDeque<(String, String)>,
    boot: BootState,
    transmits: VecDeque<String>,
    events: VecDeque<Event>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("role", &self.role)
            .field("version", &self.version)
            .field("boot", &self.boot)
            .field(
                "in_flight",
                &self.in_flight.as_ref().map(|f| (&f.id, f.call.action)),
            )
            .field("queued", &self.queue.len())
            .field("incoming", &self.incoming)
            .finish_non_exhaustive()
    }
}

/// Ids of timed-out calls remembered to classify late results.
const TIMED_OUT_MEMORY: usize = 64;
/// The 2.x limit on `errorDescription`.
const MAX_DESCRIPTION: usize = 255;

impl Endpoint {
    /// A new endpoint with sequential message ids.
    pub fn new(role: Role, version: ProtocolVersion, config: Config) -> Self {
        Self::with_id_generator(role, version, config, Box::new(SequentialIds::default()))
    }

    /// A new endpoint with the given message id generator.
    pub fn with_id_generator(
        role: Role,
        version: ProtocolVersion,
        config: Config,
        ids: Box<dyn IdGenerator>,
    ) -> Self {
        Self {
            role,
            version,
            config,
            ids,
            next_handle: 0,
            in_flight: None,
            queue: VecDeque::new(),
            timed_out: VecDeque::new(),
            incoming: Vec::new(),
            answered: VecDeque::new(),
            boot: BootState::NotBooted,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The connection's OCPP version.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The boot state.
    pub fn boot_state(&self) -> BootState {
        self.boot
    }

    /// Sets the boot state, e.g. for a station already accepted before a
    /// reconnect (2.0.1 B01: no new BootNotification is needed then).
    pub fn set_boot_state(&mut self, now: Instant, state: BootState) {
        self.boot = state;
        self.pump(now);
    }

    /// Calls waiting behind the outstanding one.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether an outgoing call is on the wire.
    pub fn has_outstanding_call(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The outgoing call on the wire, if any: when the connection closes
    /// now, it is the one the peer may have received and acted on without
    /// its answer coming back (the queued ones never went out).
    pub fn outstanding_call(&self) -> Option<CallHandle> {
        self.in_flight.as_ref().map(|f| f.call.handle)
    }

    // ---- inputs ----

    /// Handles one text frame from the peer.
    pub fn handle_text(&mut self, now: Instant, text: &str) {
        if text.len() > self.config.max_message_size {
            let id = sniff_call_id(text);
            self.misbehaved(
                PeerMisbehavedKind::Oversized,
                id.clone(),
                format!("frame of {} bytes", text.len()),
            );
            if let Some(id) = id {
                let code = self.version.format_violation();
                self.send_error(&id, &CallError::new(code, "message too large"), false);
            }
            return;
        }
        let frame = match self.version.parse_frame(text) {
            Ok(f) => f,
            Err(e) => {
                // Answer what may have been a CALL; results and SENDs get no answer.
                if matches!(e.message_type(), None | Some(2))
                    || e.kind() == rpc::FrameErrorKind::UnknownMessageType
                {
                    let id = e.id().unwrap_or("-1").to_owned();
                    let code = self.version.code_for_frame_error(&e);
                    self.send_error(&id, &CallError::new(code, e.message()), false);
                }
                self.misbehaved(
                    PeerMisbehavedKind::MalformedFrame,
                    e.id().map(str::to_owned),
                    e.message().to_owned(),
                );
                return;
            }
        };
        match frame {
            Frame::Call {
                id,
                action,
                payload,
            } => self.on_call(&id, &action, payload.get()),
            Frame::CallResult { id, payload } => {
                self.on_result(now, &id, Ok(payload.get().to_owned()))
            }
            Frame::CallError { id, error } => {
                if !self.version.is_known_code(&error.code) {
                    self.misbehaved(
                        PeerMisbehavedKind::UnknownErrorCode,
                        Some(id.to_string()),
                        format!("error code `{}`", error.code),
                    );
                }
                let err = CallError {
                    code: error.code.into_owned(),
                    description: error.description.into_owned(),
                    details: error.details.get().to_owned(),
                };
                self.on_result(now, &id, Err(err));
            }
            Frame::CallResultError { id, error } => {
                let error = CallError {
                    code: error.code.into_owned(),
                    description: error.description.into_owned(),
                    details: error.details.get().to_owned(),
                };
                self.events.push_back(Event::ResultRejected {
                    id: id.into_owned(),
                    error,
                });
            }
            Frame::Send {
                id,
                action,
                payload,
            } => match self.version.action(&action) {
                Some(info) if info.send && self.peer_may_send(info.direction) => {
                    self.events.push_back(Event::IncomingSend {
                        id: id.into_owned(),
                        action: info.name,
                        payload: payload.get().to_owned(),
                    });
                }
                _ => self.misbehaved(
                    PeerMisbehavedKind::BadSend,
                    Some(id.into_owned()),
                    format!("SEND of `{action}`"),
                ),
            },
            _ => {}
        }
    }

    /// Queues an outgoing CALL. `payload` is the request's JSON text (encode
    /// it from the typed request; the endpoint does not re-validate it).
    ///
    /// # Errors
    ///
    /// [`ApiMisuse`] if the action does not exist in this version, may not be
    /// sent by this side, is a SEND message, or the queue is full.
    pub fn send_call(
        &mut self,
        now: Instant,
        action: &str,
        payload: String,
    ) -> Result<CallHandle, ApiMisuse> {
        let info = self
            .version
            .action(action)
            .ok_or_else(|| ApiMisuse::UnknownAction(action.to_owned()))?;
        if info.send {
            return Err(ApiMisuse::WrongMessageType(action.to_owned()));
        }
        if !self.we_may_send(info.direction) {
            return Err(ApiMisuse::WrongDirection(action.to_owned()));
        }
        if self.queue.len() >= self.config.max_queue {
            return Err(ApiMisuse::QueueFull);
        }
        self.next_handle += 1;
        let handle = CallHandle(self.next_handle);
        self.queue.push_back(OutCall {
            handle,
            action: info.name,
            payload,
            deadline: now + self.config.call_timeout,
            cancelled: false,
        });
        self.pump(now);
        Ok(handle)
    }

    /// Sends a 2.1 SEND message now (it needs no answer and waits for nothing).
    ///
    /// # Errors
    ///
    /// [`ApiMisuse`] if the action is not a SEND message of this version, or
    /// may not be sent by this side.
    pub fn send_message(&mut self, action: &str, payload: &str) -> Result<(), ApiMisuse> {
        let info = self
            .version
            .action(action)
            .ok_or_else(|| ApiMisuse::UnknownAction(action.to_owned()))?;
        if !info.send {
            return Err(ApiMisuse::WrongMessageType(action.to_owned()));
        }
        if !self.we_may_send(info.direction) {
            return Err(ApiMisuse::WrongDirection(action.to_owned()));
        }
        let id = self.ids.next_id();
        self.transmits
            .push_back(rpc::send_to_string(&id, info.name, payload));
        Ok(())
    }

    /// Answers an incoming call: a CALLRESULT with `Ok(payload)`, a CALLERROR with `Err`.
    ///
    /// # Errors
    ///
    /// [`ApiMisuse::UnknownIncomingCall`] if `id` is not an unanswered incoming call.
    pub fn respond(
        &mut self,
        id: &str,
        result: Result<String, CallError>,
    ) -> Result<(), ApiMisuse> {
        let pos = self
            .incoming
            .iter()
            .position(|(i, _)| i == id)
            .ok_or_else(|| ApiMisuse::UnknownIncomingCall(id.to_owned()))?;
        let (id, action) = self.incoming.swap_remove(pos);
        let text = match &result {
            Ok(payload) => {
                if action == "BootNotification" && self.role == Role::Csms {
                    self.boot_answered(payload);
                }
                rpc::call_result_to_string(&id, payload)
            }
            Err(e) => error_frame(&id, e, false),
        };
        self.remember_answer(id, text.clone());
        self.transmits.push_back(text);
        Ok(())
    }

    /// Tells the peer we could not process its CALLRESULT (2.1 CALLRESULTERROR).
    ///
    /// # Errors
    ///
    /// [`ApiMisuse::NotInVersion`] before 2.1.
    pub fn result_error(&mut self, id: &str, error: &CallError) -> Result<(), ApiMisuse> {
        if self.version != ProtocolVersion::V21 {
            return Err(ApiMisuse::NotInVersion);
        }
        self.send_error(id, error, true);
        Ok(())
    }

    /// The caller of `handle` lost interest (its future was dropped). A
    /// queued call is removed; an outstanding one keeps its place until its
    /// result or deadline (so results never shift), and that result is
    /// discarded.
    pub fn cancel(&mut self, handle: CallHandle) {
        self.queue.retain(|c| c.handle != handle);
        if let Some(f) = self.in_flight.as_mut().filter(|f| f.call.handle == handle) {
            f.call.cancelled = true;
        }
    }

    /// Expires calls whose deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(f) = self.in_flight.take_if(|f| f.call.deadline <= now) {
            self.timed_out.push_back(f.id);
            if self.timed_out.len() > TIMED_OUT_MEMORY {
                self.timed_out.pop_front();
            }
            if !f.call.cancelled {
                self.events.push_back(Event::CallTimedOut {
                    handle: f.call.handle,
                    action: f.call.action,
                    sent: true,
                });
            }
        }
        let mut i = 0;
        while i < self.queue.len() {
            if self.queue[i].deadline <= now {
                if let Some(c) = self.queue.remove(i) {
                    self.events.push_back(Event::CallTimedOut {
                        handle: c.handle,
                        action: c.action,
                        sent: false,
                    });
                }
            } else {
                i += 1;
            }
        }
        self.pump(now);
    }

    // ---- outputs ----

    /// The next frame to send to the peer.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<String> {
        self.transmits.pop_front()
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let flight = self.in_flight.as_ref().map(|f| f.call.deadline);
        let queued = self.queue.iter().map(|c| c.deadline).min();
        match (flight, queued) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- internals ----

    fn peer_may_send(&self, d: evproto_ocpp_types::Direction) -> bool {
        match self.role {
            Role::Csms => d.from_charging_station(),
            Role::ChargingStation => d.from_csms(),
        }
    }

    fn we_may_send(&self, d: evproto_ocpp_types::Direction) -> bool {
        match self.role {
            Role::Csms => d.from_csms(),
            Role::ChargingStation => d.from_charging_station(),
        }
    }

    fn misbehaved(&mut self, kind: PeerMisbehavedKind, id: Option<String>, detail: String) {
        self.events
            .push_back(Event::PeerMisbehaved(PeerMisbehaved { kind, id, detail }));
    }

    fn send_error(&mut self, id: &str, e: &CallError, result_error: bool) {
        self.transmits.push_back(error_frame(id, e, result_error));
    }

    fn remember_answer(&mut self, id: String, text: String) {
        if self.config.answered_cache == 0 {
            return;
        }
        if self.answered.len() >= self.config.answered_cache {
            self.answered.pop_front();
        }
        self.answered.push_back((id, text));
    }

    /// A version-specific code, spelled the same in every version.
    fn answer_call_error(
        &mut self,
        id: &str,
        code: &str,
        description: String,
        kind: PeerMisbehavedKind,
    ) {
        let e = CallError::new(code, description.clone());
        let text = error_frame(id, &e, false);
        self.remember_answer(id.to_owned(), text.clone());
        self.transmits.push_back(text);
        self.misbehaved(kind, Some(id.to_owned()), description);
    }

    fn on_call(&mut self, id: &str, action: &str, payload: &str) {
        if let Some((_, text)) = self.answered.iter().find(|(i, _)| i == id) {
            let text = text.clone();
            self.transmits.push_back(text);
            self.misbehaved(
                PeerMisbehavedKind::RetransmittedCall,
                Some(id.to_owned()),
                format!("`{action}` answered again"),
            );
            return;
        }
        if self.incoming.iter().any(|(i, _)| i == id) {
            self.misbehaved(
                PeerMisbehavedKind::DuplicateCall,
                Some(id.to_owned()),
                format!("`{action}` still being handled"),
            );
            return;
        }
        let Some(info) = self.version.action(action) else {
            // OCPP-J 1.6 §4.2.3 / 2.0.1 Part 4 §4.3: "Requested Action is not known by receiver".
            return self.answer_call_error(
                id,
                "NotImplemented",
                format!("unknown action `{action}`"),
                PeerMisbehavedKind::UnknownAction,
            );
        };
        if info.send {
            let code = self.version.format_violation();
            return self.answer_call_error(
                id,
                code,
                format!("`{action}` is a SEND message"),
                PeerMisbehavedKind::BadSend,
            );
        }
        if !self.peer_may_send(info.direction) {
            // "Requested Action is recognized but not supported by the receiver".
            return self.answer_call_error(
                id,
                "NotSupported",
                format!("`{action}` is not sent in this direction"),
                PeerMisbehavedKind::WrongDirection,
            );
        }
        if self.role == Role::Csms
            && self.config.boot_gate
            && self.boot != BootState::Accepted
            && info.name != "BootNotification"
        {
            // 2.0.1 B02.FR.09 / B03.FR.07, 1.6 §4.2: calls before acceptance get SecurityError.
            return self.answer_call_error(
                id,
                "SecurityError",
                "boot not accepted".to_owned(),
                PeerMisbehavedKind::CallBeforeBoot,
            );
        }
        if self.incoming.len() >= self.config.max_incoming_calls.max(1) {
            // more calls open than a peer that waits for answers or timeouts
            // can have (OCPP-J §4.1.1): not handled, so a peer cannot grow
            // our handlers without bound
            let code = self.version.rpc_framework_error();
            return self.answer_call_error(
                id,
                code,
                format!(
                    "`{action}` while {} calls are unanswered",
                    self.incoming.len()
                ),
                PeerMisbehavedKind::ConcurrentCall,
            );
        }
        if !self.incoming.is_empty() {
            // handled: the peer's earlier call may have timed out on its side
            self.misbehaved(
                PeerMisbehavedKind::ConcurrentCall,
                Some(id.to_owned()),
                format!("`{action}` while a call is unanswered"),
            );
        }
        self.incoming.push((id.to_owned(), info.name));
        self.events.push_back(Event::IncomingCall {
            id: id.to_owned(),
            action: info.name,
            payload: payload.to_owned(),
        });
    }

    fn on_result(&mut self, now: Instant, id: &str, result: Result<String, CallError>) {
        match self.in_flight.take_if(|f| f.id == id) {
            Some(f) => {
                if f.call.action == "BootNotification" && self.role == Role::ChargingStation {
                    if let Ok(payload) = &result {
                        self.boot_answered(payload);
                    }
                }
                if !f.call.cancelled {
                    self.events.push_back(Event::CallCompleted {
                        handle: f.call.handle,
                        action: f.call.action,
                        result,
                    });
                }
                self.pump(now);
            }
            None if self.timed_out.iter().any(|i| i == id) => {
                self.misbehaved(
                    PeerMisbehavedKind::LateResult,
                    Some(id.to_owned()),
                    "result after the call timed out".to_owned(),
                );
            }
            None => {
                self.misbehaved(
                    PeerMisbehavedKind::UnknownResult,
                    Some(id.to_owned()),
                    "result for no outstanding call".to_owned(),
                );
            }
        }
    }

    fn boot_answered(&mut self, payload: &str) {
        let status = serde_json::from_str::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned));
        let state = match status.as_deref() {
            Some("Accepted") => BootState::Accepted,
            Some("Pending") => BootState::Pending,
            Some("Rejected") => BootState::Rejected,
            _ => return,
        };
        if state != self.boot {
            self.boot = state;
            self.events.push_back(Event::BootStateChanged(state));
        }
    }

    /// Puts the next eligible queued call on the wire if none is outstanding.
    fn pump(&mut self, now: Instant) {
        if self.in_flight.is_some() {
            return;
        }
        let hold = self.role == Role::ChargingStation
            && self.config.hold_calls_until_boot
            && self.boot != BootState::Accepted;
        let pos = self
            .queue
            .iter()
            .position(|c| c.deadline > now && (!hold || c.action == "BootNotification"));
        let Some(call) = pos.and_then(|p| self.queue.remove(p)) else {
            return;
        };
        let id = self.ids.next_id();
        self.transmits
            .push_back(rpc::call_to_string(&id, call.action, &call.payload));
        self.in_flight = Some(InFlight { id, call });
    }
}

fn error_frame(id: &str, e: &CallError, result_error: bool) -> String {
    let description: String = e.description.chars().take(MAX_DESCRIPTION).collect();
    let details = if e.details.trim_start().starts_with('{') {
        e.details.as_str()
    } else {
        "{}"
    };
    rpc::call_error_to_string(id, &e.code, &description, details, result_error)
}

/// The id of an oversized CALL, read from its first bytes without parsing it.
fn sniff_call_id(text: &str) -> Option<String> {
    let head = text.get(..text.len().min(128))?;
    let rest = head
        .trim_start()
        .strip_prefix('[')?
        .trim_start()
        .strip_prefix('2')?
        .trim_start()
        .strip_prefix(',')?;
    let rest = rest.trim_start().strip_prefix('"')?;
    let end = rest.find('"')?;
    let id = &rest[..end];
    (id.len() <= rpc::MAX_MESSAGE_ID_LEN && !id.contains('\\')).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_ids_of_oversized_calls() {
        assert_eq!(
            sniff_call_id(r#"[2,"abc","X",{"a":"...."#).as_deref(),
            Some("abc")
        );
        assert_eq!(sniff_call_id(r#" [ 2 , "abc","#).as_deref(), Some("abc"));
        assert_eq!(sniff_call_id(r#"[3,"abc",{}]"#), None);
        assert_eq!(sniff_call_id("garbage"), None);
    }
}
