//! The charging-transaction model: one [`Transaction`] per OCPP transaction,
//! fed [`TxEvent`]s converted from the typed messages of every version
//! (1.6 `StartTransaction`/`MeterValues`/`StopTransaction`, 2.0.1 and 2.1
//! `TransactionEvent`), answering what the session is.
//!
//! # Rules
//!
//! 1. **Duplicates are answered as the first time.** An event is identified by
//!    its [`EventId`] (2.x `seqNo`; 1.6 Start and Stop); a second event with
//!    the same id changes nothing and [`Applied::duplicate`] says so. 1.6
//!    `MeterValues` carry no id: a replay carries the same readings, which
//!    change nothing, and is reported as a duplicate for that reason.
//! 2. **Order does not matter.** The transaction is a join of its events:
//!    every field is merged commutatively and idempotently (the earliest
//!    event that carries a value wins, by [`EventId`] then value; flags are
//!    or-ed; readings are a set). Any permutation of any duplication of a set
//!    of events gives an equal `Transaction` (property-tested), so an `Ended`
//!    before its `Started`, or an `Updated` after `Ended`, end in the same
//!    session as the station's own order would.
//! 3. **A missing `Started` is reconstructed** from what the other events
//!    carry: the start time is the earliest event's, the EVSE and token are
//!    the earliest event's that has them, the start register is the earliest
//!    reading.
//! 4. **Meter registers.** The start register is the `Transaction.Begin`
//!    reading (1.6 `meterStart`; 2.x: a `Started` event's reading without a
//!    context too), else the earliest reading; the stop register is the
//!    `Transaction.End` reading (1.6 `meterStop`; 2.x: an `Ended` event's
//!    reading without a context too), else the latest. The
//!    energy is the sum of the forward steps between consecutive readings
//!    from start to stop: a register that goes down was reset (a new meter)
//!    and, when [`MeterPolicy::max_power_w`] is set, a step larger than that
//!    power could deliver in the time between the readings is a jump; neither
//!    step counts, the next steps count from the new value. So the energy is
//!    never negative, and a meter swap or a glitch bills only what was
//!    measured. Jumps are judged by the station's clock, which is often wrong
//!    (offline stations, simulators): the check is off unless configured.
//! 5. **The CSMS may end a transaction the station will not end**
//!    ([`Transaction::closing`], on the rules of [`crate::recovery`] or an
//!    operator's order): an `Ended` of id [`EventId::Closed`] at the time of
//!    the last reading (else of the last event), so the session is priced up
//!    to its last meter value and no further (readings after it do not
//!    count). The station's word stays the truth: a station `Ended` applied
//!    before or after it wins (it ranks first as every earlier event id
//!    does), and its times, reason and stop register replace the CSMS's; the
//!    session was complete already, so that is
//!    [`Effect::AmendedAfterCompletion`], never a second
//!    [`Effect::Completed`] (billed once).
//!
//! The model reads no clock and does no I/O; timestamps are the station's.
//!
//! # Example
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use evproto_csms_core::transaction::{Effect, Register, Status, Transaction, TxEvent};
//! use evproto_ocpp_types::v16;
//!
//! let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
//! let start: v16::StartTransactionRequest = serde_json::from_str(
//!     r#"{"connectorId":1,"idTag":"CARD1","meterStart":1000,"timestamp":"2026-01-01T10:00:00Z"}"#,
//! )?;
//! let stop: v16::StopTransactionRequest = serde_json::from_str(
//!     r#"{"transactionId":7,"meterStop":8500,"timestamp":"2026-01-01T11:00:00Z","reason":"EVDisconnected"}"#,
//! )?;
//!
//! let mut tx = Transaction::default();
//! // the Stop arrives first (the station replayed its queue out of order)
//! assert_eq!(tx.apply(&TxEvent::from(&stop)).effects, vec![Effect::Opened, Effect::Completed]);
//! tx.apply(&TxEvent::from(&start));
//! assert!(tx.apply(&TxEvent::from(&start)).duplicate);
//!
//! let s = tx.summary();
//! assert_eq!(s.status, Status::Completed);
//! assert_eq!(s.started_at, Some(t0));
//! assert_eq!(s.energy_wh(Register::Import), rust_decimal::Decimal::from(7500));
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use evproto_ocpp_types::{v16, v201, v21};
use rust_decimal::Decimal;

use crate::token::IdToken;

/// What a transaction event says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// The transaction started (2.x `Started`, 1.6 `StartTransaction`).
    Started,
    /// Something changed or was measured (2.x `Updated`, 1.6 `MeterValues`).
    Updated,
    /// The transaction ended (2.x `Ended`, 1.6 `StopTransaction`).
    Ended,
}

/// The identity of an event within its transaction, for de-duplication and
/// for "earliest event wins".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventId {
    /// 1.6 `StartTransaction`.
    Start16,
    /// 2.x `seqNo`.
    Seq(u32),
    /// 1.6 `MeterValues` (no id of its own: its readings de-duplicate).
    Meter16,
    /// 1.6 `StopTransaction`.
    Stop16,
    /// The CSMS ended the transaction because the station will not (see
    /// [`Transaction::closing`] and [`crate::recovery`]). It ranks after
    /// every station event, so a station's own `Ended`, whenever it
    /// arrives, is the one the session ends with.
    Closed,
}

/// Where the transaction takes place. A 1.6 connector `N` is EVSE `N`, and
/// the transaction names no connector within it (`connector_id: None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EvseRef {
    /// 2.x EVSE id, 1.6 connector id.
    pub evse_id: u32,
    /// 2.x connector id within the EVSE, when the station says it.
    pub connector_id: Option<u32>,
}

/// Why a transaction stopped: the union of the 1.6 `Reason` and the 2.0.1 /
/// 2.1 `ReasonEnumType` values (same names on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
#[allow(missing_docs)] // the spec's names
pub enum StopReason {
    DeAuthorized,
    EmergencyStop,
    EnergyLimitReached,
    EVDisconnected,
    GroundFault,
    HardReset,
    ImmediateReset,
    Local,
    LocalOutOfCredit,
    MasterPass,
    Other,
    OvercurrentFault,
    PowerLoss,
    PowerQuality,
    Reboot,
    Remote,
    ReqEnergyTransferRejected,
    SoftReset,
    SOCLimitReached,
    StoppedByEV,
    TimeLimitReached,
    Timeout,
    UnlockCommand,
}

/// Which energy register a reading is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Register {
    /// `Energy.Active.Import.Register` (energy to the car; the default measurand).
    Import,
    /// `Energy.Active.Export.Register` (energy from the car, V2X).
    Export,
}

/// The reading's place in the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReadingContext {
    /// `Transaction.Begin` (1.6 `meterStart`).
    Begin,
    /// Any other context (periodic, clock-aligned, trigger, interruption).
    Other,
    /// `Transaction.End` (1.6 `meterStop`).
    End,
}

/// One energy-register reading, in Wh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reading {
    /// When it was measured.
    pub at: DateTime<Utc>,
    /// Which register.
    pub register: Register,
    /// Its context.
    pub context: ReadingContext,
    /// The register's value in Wh.
    pub wh: Decimal,
}

/// The largest energy register the model takes, in Wh (10^12 Wh = 1 TWh,
/// far above any meter in a charging station). A reading outside
/// `0..=MAX_REGISTER_WH` is not physical: [`TxEvent::out_of_range`] reports
/// it so the application can refuse the message (OCPP
/// `PropertyConstraintViolation`), and [`Transaction::apply`] ignores it, so
/// no sum of registers can overflow.
pub const MAX_REGISTER_WH: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0);

impl Reading {
    /// Whether the register is physical (`0..=MAX_REGISTER_WH`).
    pub fn in_range(&self) -> bool {
        self.wh >= Decimal::ZERO && self.wh <= MAX_REGISTER_WH
    }
}

/// One transaction event in the version-independent form the model takes.
/// Build it with `From` from the typed OCPP messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxEvent {
    /// Started, Updated or Ended.
    pub kind: EventKind,
    /// Its identity within the transaction.
    pub id: EventId,
    /// When it happened (the station's clock).
    pub timestamp: DateTime<Utc>,
    /// Where, when the event says it.
    pub evse: Option<EvseRef>,
    /// The id token, when the event carries one (on `Ended`: the token that stopped it).
    pub id_token: Option<IdToken>,
    /// 2.x `remoteStartId`.
    pub remote_start_id: Option<i32>,
    /// The reservation this transaction used.
    pub reservation_id: Option<i32>,
    /// 2.x `offline`: the event happened while the station was offline.
    pub offline: bool,
    /// Why it stopped (on `Ended`; 2.x may also send it on a late `Updated`).
    pub stopped_reason: Option<StopReason>,
    /// Energy-register readings.
    pub readings: Vec<Reading>,
    /// Sampled values the model could not use (signed or unparsable values,
    /// unknown units); the application may log them.
    pub skipped_samples: usize,
}

/// How meter readings are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterPolicy {
    /// The most power a station can deliver, in W. When set, a forward step
    /// larger than this power over the time between two readings (by the
    /// station's timestamps), plus [`slack_wh`](Self::slack_wh), is a jump
    /// and does not count. Default: not set (no jump detection).
    pub max_power_w: Option<Decimal>,
    /// Tolerance for readings close in time (rounding of registers and
    /// timestamps), in Wh. Default 100 Wh.
    pub slack_wh: Decimal,
}

impl Default for MeterPolicy {
    fn default() -> Self {
        MeterPolicy {
            max_power_w: None,
            slack_wh: Decimal::from(100),
        }
    }
}

/// The session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// No `Ended` yet.
    Active,
    /// `Ended` (1.6 `StopTransaction`) seen.
    Completed,
}

/// What applying an event caused, for the application to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// The first event of this transaction: the session now exists.
    Opened,
    /// The first `Ended`: the session is complete; price and bill it (once).
    Completed,
    /// A late event changed a completed session's figures (energy, times):
    /// re-rate it.
    AmendedAfterCompletion,
}

/// The answer of [`Transaction::apply`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    /// The event had been applied before (or changed nothing, for 1.6
    /// `MeterValues`): answer it as the first time, do nothing else.
    pub duplicate: bool,
    /// What the application must do, in this order.
    pub effects: Vec<Effect>,
}

/// The earliest value by event id (ties by value): a commutative, idempotent
/// merge.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Earliest<T>(Option<(EventId, T)>);

impl<T> Default for Earliest<T> {
    fn default() -> Self {
        Earliest(None)
    }
}

impl<T: Ord + Clone> Earliest<T> {
    fn offer(&mut self, id: EventId, value: Option<&T>) -> bool {
        let Some(value) = value else { return false };
        match &self.0 {
            Some((i, v)) if (i, v) <= (&id, value) => false,
            _ => {
                self.0 = Some((id, value.clone()));
                true
            }
        }
    }
    fn get(&self) -> Option<&T> {
        self.0.as_ref().map(|(_, v)| v)
    }
}

/// One transaction, as the join of its events. See the [module docs](self)
/// for the rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transaction {
    policy: MeterPolicy,
    seen: BTreeSet<EventId>,
    earliest_at: Option<DateTime<Utc>>,
    /// The latest station event's time (a CSMS close's own is not counted).
    latest_at: Option<DateTime<Utc>>,
    started: Earliest<DateTime<Utc>>,
    ended: Earliest<(DateTime<Utc>, Option<StopReason>)>,
    stop_reason: Earliest<StopReason>,
    evse: Earliest<EvseRef>,
    id_token: Earliest<IdToken>,
    stop_token: Earliest<IdToken>,
    remote_start_id: Earliest<i32>,
    reservation_id: Earliest<i32>,
    offline: bool,
    /// (register, time, context) → Wh; conflicting values keep the larger.
    readings: BTreeMap<(Register, DateTime<Utc>, ReadingContext), Decimal>,
}

/// The derived view of a [`Transaction`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Active or Completed.
    pub status: Status,
    /// The `Started` event's time, else the earliest event's (`None` before any event).
    pub started_at: Option<DateTime<Utc>>,
    /// The `Ended` event's time.
    pub stopped_at: Option<DateTime<Utc>>,
    /// Why it stopped.
    pub stop_reason: Option<StopReason>,
    /// Where.
    pub evse: Option<EvseRef>,
    /// The token that started it (the earliest event's that carries one).
    pub id_token: Option<IdToken>,
    /// The token on `Ended`, when the station says who stopped it.
    pub stop_token: Option<IdToken>,
    /// 2.x `remoteStartId`.
    pub remote_start_id: Option<i32>,
    /// The reservation it used.
    pub reservation_id: Option<i32>,
    /// Any event happened while the station was offline.
    pub offline: bool,
    /// Per register: (start reading, last or stop reading, energy), in Wh.
    pub import: Option<Meter>,
    /// The export register (V2X), when the station reports it.
    pub export: Option<Meter>,
}

/// A register's figures over a session, in Wh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meter {
    /// The start register.
    pub start_wh: Decimal,
    /// The stop register (completed) or the latest reading (active).
    pub last_wh: Decimal,
    /// The energy: forward steps only, resets and jumps excluded; never negative.
    pub energy_wh: Decimal,
}

impl Summary {
    /// The energy of a register in Wh (zero when it was never read).
    pub fn energy_wh(&self, register: Register) -> Decimal {
        match register {
            Register::Import => self.import,
            Register::Export => self.export,
        }
        .map_or(Decimal::ZERO, |m| m.energy_wh)
    }
}

impl TxEvent {
    /// The first reading outside `0..=MAX_REGISTER_WH`, if any.
    pub fn out_of_range(&self) -> Option<&Reading> {
        self.readings.iter().find(|r| !r.in_range())
    }
}

impl Transaction {
    /// A transaction whose readings are judged by `policy`
    /// ([`Default`] uses [`MeterPolicy::default`]).
    pub fn new(policy: MeterPolicy) -> Self {
        Transaction {
            policy,
            ..Transaction::default()
        }
    }

    /// Applies one event; see the [module docs](self) for the rules.
    pub fn apply(&mut self, ev: &TxEvent) -> Applied {
        let opened = self.earliest_at.is_none();
        let was_completed = self.ended.get().is_some();
        let before = was_completed.then(|| self.figures());
        if ev.id != EventId::Meter16 && !self.seen.insert(ev.id) {
            return Applied {
                duplicate: true,
                effects: Vec::new(),
            };
        }
        let mut changed = ev.id != EventId::Meter16;
        if self.earliest_at.is_none_or(|t| ev.timestamp < t) {
            self.earliest_at = Some(ev.timestamp);
            changed = true;
        }
        if ev.id != EventId::Closed && self.latest_at.is_none_or(|t| ev.timestamp > t) {
            self.latest_at = Some(ev.timestamp);
            changed = true;
        }
        match ev.kind {
            EventKind::Started => changed |= self.started.offer(ev.id, Some(&ev.timestamp)),
            EventKind::Ended => {
                changed |= self
                    .ended
                    .offer(ev.id, Some(&(ev.timestamp, ev.stopped_reason)));
                changed |= self.stop_token.offer(ev.id, ev.id_token.as_ref());
            }
            EventKind::Updated => {}
        }
        changed |= self.stop_reason.offer(ev.id, ev.stopped_reason.as_ref());
        changed |= self.evse.offer(ev.id, ev.evse.as_ref());
        if ev.kind != EventKind::Ended {
            changed |= self.id_token.offer(ev.id, ev.id_token.as_ref());
        }
        changed |= self
            .remote_start_id
            .offer(ev.id, ev.remote_start_id.as_ref());
        changed |= self.reservation_id.offer(ev.id, ev.reservation_id.as_ref());
        if ev.offline && !self.offline {
            self.offline = true;
            changed = true;
        }
        for r in ev.readings.iter().filter(|r| r.in_range()) {
            match self.readings.entry((r.register, r.at, r.context)) {
                Entry::Vacant(v) => {
                    v.insert(r.wh);
                    changed = true;
                }
                Entry::Occupied(mut o) => {
                    if r.wh > *o.get() {
                        o.insert(r.wh);
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            return Applied {
                duplicate: true,
                effects: Vec::new(),
            };
        }
        let mut effects = Vec::new();
        if opened {
            effects.push(Effect::Opened);
        }
        if !was_completed && self.ended.get().is_some() {
            effects.push(Effect::Completed);
        } else if let Some(before) = before {
            if before != self.figures() {
                effects.push(Effect::AmendedAfterCompletion);
            }
        }
        Applied {
            duplicate: false,
            effects,
        }
    }

    /// Whether an `Ended` has been applied.
    pub fn is_completed(&self) -> bool {
        self.ended.get().is_some()
    }

    /// The event ids applied so far (1.6 `MeterValues` not included).
    pub fn event_ids(&self) -> impl Iterator<Item = EventId> + '_ {
        self.seen.iter().copied()
    }

    /// The readings applied so far, in time order per register.
    pub fn readings(&self) -> impl Iterator<Item = Reading> + '_ {
        self.readings
            .iter()
            .map(|(&(register, at, context), &wh)| Reading {
                at,
                register,
                context,
                wh,
            })
    }

    /// What a completed session is billed on (times, energies, reason).
    fn figures(&self) -> Summary {
        self.summary()
    }

    /// The session as its events say it is.
    pub fn summary(&self) -> Summary {
        let ended = self.ended.get();
        Summary {
            status: if ended.is_some() {
                Status::Completed
            } else {
                Status::Active
            },
            started_at: self.started.get().copied().or(self.earliest_at),
            stopped_at: ended.map(|e| e.0),
            stop_reason: ended.and_then(|e| e.1).or(self.stop_reason.get().copied()),
            evse: self.evse.get().copied(),
            id_token: self.id_token.get().cloned(),
            stop_token: self.stop_token.get().cloned(),
            remote_start_id: self.remote_start_id.get().copied(),
            reservation_id: self.reservation_id.get().copied(),
            offline: self.offline,
            import: self.meter(Register::Import),
            export: self.meter(Register::Export),
        }
    }

    /// An `Ended` by the CSMS ([`EventId::Closed`], rule 5 of the [module
    /// docs](self)) for a transaction the station will not end: at the time
    /// of its latest reading or event, whichever is later, with `reason`.
    /// `None` when it is completed already (the station's `Ended`, or an
    /// earlier close, stands).
    pub fn closing(&self, reason: StopReason) -> Option<TxEvent> {
        if self.is_completed() {
            return None;
        }
        let last_reading = self.readings.keys().map(|&(_, at, _)| at).max();
        let at = match (last_reading, self.latest_at) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b)?,
        };
        Some(TxEvent {
            kind: EventKind::Ended,
            id: EventId::Closed,
            timestamp: at,
            evse: None,
            id_token: None,
            remote_start_id: None,
            reservation_id: None,
            offline: false,
            stopped_reason: Some(reason),
            readings: Vec::new(),
            skipped_samples: 0,
        })
    }

    /// Whether the session's end is the CSMS's ([`Transaction::closing`]),
    /// not the station's.
    pub fn closed_by_csms(&self) -> bool {
        matches!(self.ended.0, Some((EventId::Closed, _)))
    }

    /// Start, last/stop and energy of one register.
    pub fn meter(&self, register: Register) -> Option<Meter> {
        let policy = &self.policy;
        // a CSMS close prices up to its time: later readings do not count
        let cut = match self.ended.0 {
            Some((EventId::Closed, (at, _))) => Some(at),
            _ => None,
        };
        // readings of this register in time order; at one instant Begin < Other < End
        let all: Vec<(DateTime<Utc>, ReadingContext, Decimal)> = self
            .readings
            .range((register, DateTime::<Utc>::MIN_UTC, ReadingContext::Begin)..)
            .take_while(|((r, _, _), _)| *r == register)
            .filter(|((_, at, _), _)| cut.is_none_or(|c| *at <= c))
            .map(|(&(_, at, ctx), &wh)| (at, ctx, wh))
            .collect();
        if all.is_empty() {
            return None;
        }
        let first = all
            .iter()
            .position(|r| r.1 == ReadingContext::Begin)
            .unwrap_or(0);
        let last = match all.iter().rposition(|r| r.1 == ReadingContext::End) {
            Some(i) if i >= first => i,
            _ => all.len() - 1,
        };
        let window = &all[first..=last];
        let mut energy = Decimal::ZERO;
        for pair in window.windows(2) {
            let (t0, _, a) = pair[0];
            let (t1, _, b) = pair[1];
            if b <= a {
                continue; // reset (or no change)
            }
            // registers are within 0..=MAX_REGISTER_WH (see `apply`): no step overflows
            let step = b - a;
            let plausible = policy.max_power_w.is_none_or(|max| {
                let seconds = Decimal::from((t1 - t0).num_seconds().max(0));
                max.checked_mul(seconds)
                    .and_then(|e| e.checked_div(Decimal::from(3600)))
                    .and_then(|e| e.checked_add(policy.slack_wh))
                    .is_none_or(|possible| step <= possible)
            });
            if plausible {
                energy += step;
            }
        }
        Some(Meter {
            start_wh: window[0].2,
            last_wh: window[window.len() - 1].2,
            energy_wh: energy,
        })
    }
}

// ---- conversions from the typed messages ----

/// A register value in Wh; `None` for a unit that is not energy. A value
/// too large to scale is [`Decimal::MAX`], which is out of range
/// ([`TxEvent::out_of_range`]) rather than silently dropped.
fn wh_from(value: Decimal, unit: Option<&str>, multiplier: Option<i32>) -> Option<Decimal> {
    let scale = match unit.unwrap_or("Wh") {
        u if u.eq_ignore_ascii_case("Wh") => Decimal::ONE,
        u if u.eq_ignore_ascii_case("kWh") => Decimal::from(1000),
        _ => return None,
    };
    let too_large = if value.is_sign_negative() {
        Decimal::MIN
    } else {
        Decimal::MAX
    };
    let m = multiplier.unwrap_or(0);
    if m > 28 {
        return Some(if value.is_zero() { value } else { too_large });
    }
    let Some(mut v) = value.checked_mul(scale) else {
        return Some(too_large);
    };
    let ten = Decimal::from(10);
    for _ in 0..m.unsigned_abs().min(29) {
        v = if m > 0 {
            match v.checked_mul(ten) {
                Some(v) => v,
                None => return Some(too_large),
            }
        } else {
            v.checked_div(ten).unwrap_or(Decimal::ZERO)
        };
    }
    Some(v)
}

fn evse16(connector_id: i32) -> Option<EvseRef> {
    u32::try_from(connector_id)
        .ok()
        .filter(|&c| c > 0)
        .map(|evse_id| EvseRef {
            evse_id,
            connector_id: None,
        })
}

fn context16(c: Option<v16::ReadingContext>) -> ReadingContext {
    match c {
        Some(v16::ReadingContext::TransactionBegin) => ReadingContext::Begin,
        Some(v16::ReadingContext::TransactionEnd) => ReadingContext::End,
        _ => ReadingContext::Other,
    }
}

/// A 1.6 sampled value as a reading: energy registers of the whole outlet in
/// plain (not signed) format only.
#[allow(clippy::too_many_arguments)]
fn reading16(
    at: DateTime<Utc>,
    value: &str,
    context: Option<v16::ReadingContext>,
    format: Option<v16::ValueFormat>,
    measurand: Option<v16::Measurand>,
    phase: bool,
    location: Option<v16::Location>,
    unit: Option<&str>,
) -> Result<Option<Reading>, ()> {
    let register = match measurand {
        None | Some(v16::Measurand::EnergyActiveImportRegister) => Register::Import,
        Some(v16::Measurand::EnergyActiveExportRegister) => Register::Export,
        Some(_) => return Ok(None),
    };
    if phase || !matches!(location, None | Some(v16::Location::Outlet)) {
        return Ok(None);
    }
    if format == Some(v16::ValueFormat::SignedData) {
        return Err(());
    }
    // 1.6 sends the value as text: plain or scientific notation ("1.5e3")
    let text = value.trim();
    let value: Decimal = text
        .parse()
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| ())?;
    let wh = wh_from(value, unit, None).ok_or(())?;
    Ok(Some(Reading {
        at,
        register,
        context: context16(context),
        wh,
    }))
}

fn readings16<'a>(
    values: impl Iterator<Item = (DateTime<Utc>, &'a [v16::SampledValue])>,
    readings: &mut Vec<Reading>,
    skipped: &mut usize,
) {
    for (at, samples) in values {
        for s in samples {
            match reading16(
                at,
                &s.value,
                s.context,
                s.format,
                s.measurand,
                s.phase.is_some(),
                s.location,
                s.unit.map(|u| u.as_str()),
            ) {
                Ok(Some(r)) => readings.push(r),
                Ok(None) => {}
                Err(()) => *skipped += 1,
            }
        }
    }
}

impl From<&v16::StartTransactionRequest> for TxEvent {
    fn from(m: &v16::StartTransactionRequest) -> Self {
        TxEvent {
            kind: EventKind::Started,
            id: EventId::Start16,
            timestamp: m.timestamp,
            evse: evse16(m.connector_id),
            id_token: Some(IdToken::id_tag(m.id_tag.as_str())),
            remote_start_id: None,
            reservation_id: m.reservation_id,
            offline: false,
            stopped_reason: None,
            readings: vec![Reading {
                at: m.timestamp,
                register: Register::Import,
                context: ReadingContext::Begin,
                wh: Decimal::from(m.meter_start),
            }],
            skipped_samples: 0,
        }
    }
}

impl From<&v16::StopTransactionRequest> for TxEvent {
    fn from(m: &v16::StopTransactionRequest) -> Self {
        let mut readings = vec![Reading {
            at: m.timestamp,
            register: Register::Import,
            context: ReadingContext::End,
            wh: Decimal::from(m.meter_stop),
        }];
        let mut skipped = 0;
        // transactionData uses the same sampled-value shape under another name
        for d in m.transaction_data.iter().flatten() {
            for s in &d.sampled_value {
                match reading16(
                    d.timestamp,
                    &s.value,
                    s.context,
                    s.format,
                    s.measurand,
                    s.phase.is_some(),
                    s.location,
                    s.unit.map(|u| u.as_str()),
                ) {
                    Ok(Some(r)) => readings.push(r),
                    Ok(None) => {}
                    Err(()) => skipped += 1,
                }
            }
        }
        TxEvent {
            kind: EventKind::Ended,
            id: EventId::Stop16,
            timestamp: m.timestamp,
            evse: None,
            id_token: m.id_tag.as_ref().map(|t| IdToken::id_tag(t.as_str())),
            remote_start_id: None,
            reservation_id: None,
            offline: false,
            stopped_reason: Some(m.reason.map_or(StopReason::Local, StopReason::from)),
            readings,
            skipped_samples: skipped,
        }
    }
}

impl From<&v16::MeterValuesRequest> for TxEvent {
    /// A 1.6 `MeterValues` as an `Updated` event of the transaction its
    /// `transactionId` names (the caller routes it; without one it belongs to
    /// no transaction). Its time is its earliest sample's.
    fn from(m: &v16::MeterValuesRequest) -> Self {
        let mut readings = Vec::new();
        let mut skipped = 0;
        readings16(
            m.meter_value
                .iter()
                .map(|v| (v.timestamp, v.sampled_value.as_slice())),
            &mut readings,
            &mut skipped,
        );
        TxEvent {
            kind: EventKind::Updated,
            id: EventId::Meter16,
            timestamp: m
                .meter_value
                .iter()
                .map(|v| v.timestamp)
                .min()
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            evse: evse16(m.connector_id),
            id_token: None,
            remote_start_id: None,
            reservation_id: None,
            offline: false,
            stopped_reason: None,
            readings,
            skipped_samples: skipped,
        }
    }
}

impl StopReason {
    const ALL: [StopReason; 23] = [
        StopReason::DeAuthorized,
        StopReason::EmergencyStop,
        StopReason::EnergyLimitReached,
        StopReason::EVDisconnected,
        StopReason::GroundFault,
        StopReason::HardReset,
        StopReason::ImmediateReset,
        StopReason::Local,
        StopReason::LocalOutOfCredit,
        StopReason::MasterPass,
        StopReason::Other,
        StopReason::OvercurrentFault,
        StopReason::PowerLoss,
        StopReason::PowerQuality,
        StopReason::Reboot,
        StopReason::Remote,
        StopReason::ReqEnergyTransferRejected,
        StopReason::SoftReset,
        StopReason::SOCLimitReached,
        StopReason::StoppedByEV,
        StopReason::TimeLimitReached,
        StopReason::Timeout,
        StopReason::UnlockCommand,
    ];

    /// The wire name (the same in every version that has the value).
    pub fn as_wire(self) -> &'static str {
        match self {
            StopReason::DeAuthorized => "DeAuthorized",
            StopReason::EmergencyStop => "EmergencyStop",
            StopReason::EnergyLimitReached => "EnergyLimitReached",
            StopReason::EVDisconnected => "EVDisconnected",
            StopReason::GroundFault => "GroundFault",
            StopReason::HardReset => "HardReset",
            StopReason::ImmediateReset => "ImmediateReset",
            StopReason::Local => "Local",
            StopReason::LocalOutOfCredit => "LocalOutOfCredit",
            StopReason::MasterPass => "MasterPass",
            StopReason::Other => "Other",
            StopReason::OvercurrentFault => "OvercurrentFault",
            StopReason::PowerLoss => "PowerLoss",
            StopReason::PowerQuality => "PowerQuality",
            StopReason::Reboot => "Reboot",
            StopReason::Remote => "Remote",
            StopReason::ReqEnergyTransferRejected => "ReqEnergyTransferRejected",
            StopReason::SoftReset => "SoftReset",
            StopReason::SOCLimitReached => "SOCLimitReached",
            StopReason::StoppedByEV => "StoppedByEV",
            StopReason::TimeLimitReached => "TimeLimitReached",
            StopReason::Timeout => "Timeout",
            StopReason::UnlockCommand => "UnlockCommand",
        }
    }

    /// The reason a wire name names, `None` for a name no version has.
    pub fn from_wire(s: &str) -> Option<StopReason> {
        StopReason::ALL.into_iter().find(|r| r.as_wire() == s)
    }
}

impl From<v16::Reason> for StopReason {
    fn from(r: v16::Reason) -> Self {
        StopReason::from_wire(r.as_str()).unwrap_or(StopReason::Other)
    }
}

impl From<v201::ReasonEnumType> for StopReason {
    fn from(r: v201::ReasonEnumType) -> Self {
        StopReason::from_wire(r.as_str()).unwrap_or(StopReason::Other)
    }
}

impl From<v21::ReasonEnumType> for StopReason {
    fn from(r: v21::ReasonEnumType) -> Self {
        StopReason::from_wire(r.as_str()).unwrap_or(StopReason::Other)
    }
}

/// One 2.x `TransactionEventRequest` as a model event; the same code for
/// 2.0.1 and 2.1 (their types differ in name only where it does not matter here).
macro_rules! transaction_event_2x {
    ($ver:ident) => {
        impl From<&$ver::TransactionEventRequest> for TxEvent {
            fn from(m: &$ver::TransactionEventRequest) -> Self {
                let kind = match m.event_type {
                    $ver::TransactionEventEnumType::Started => EventKind::Started,
                    $ver::TransactionEventEnumType::Ended => EventKind::Ended,
                    _ => EventKind::Updated,
                };
                let mut readings = Vec::new();
                let mut skipped = 0;
                for mv in m.meter_value.iter().flatten() {
                    for s in &mv.sampled_value {
                        let register = match s.measurand {
                            None | Some($ver::MeasurandEnumType::EnergyActiveImportRegister) => {
                                Register::Import
                            }
                            Some($ver::MeasurandEnumType::EnergyActiveExportRegister) => {
                                Register::Export
                            }
                            Some(_) => continue,
                        };
                        if s.phase.is_some()
                            || !matches!(s.location, None | Some($ver::LocationEnumType::Outlet))
                        {
                            continue;
                        }
                        let unit = s.unit_of_measure.as_ref();
                        let Some(wh) = wh_from(
                            s.value,
                            unit.and_then(|u| u.unit.as_ref()).map(|u| u.as_str()),
                            unit.and_then(|u| u.multiplier),
                        ) else {
                            skipped += 1;
                            continue;
                        };
                        let context = match s.context {
                            Some($ver::ReadingContextEnumType::TransactionBegin) => {
                                ReadingContext::Begin
                            }
                            Some($ver::ReadingContextEnumType::TransactionEnd) => {
                                ReadingContext::End
                            }
                            // a Started (Ended) event's reading without a
                            // context is where the transaction began (ended):
                            // else it merges with an Updated's at the same instant
                            None => match kind {
                                EventKind::Started => ReadingContext::Begin,
                                EventKind::Ended => ReadingContext::End,
                                _ => ReadingContext::Other,
                            },
                            _ => ReadingContext::Other,
                        };
                        readings.push(Reading {
                            at: mv.timestamp,
                            register,
                            context,
                            wh,
                        });
                    }
                }
                let info = &m.transaction_info;
                TxEvent {
                    kind,
                    // the schema has no minimum: a negative seqNo is kept distinct from every valid one
                    id: EventId::Seq(m.seq_no as u32),
                    timestamp: m.timestamp,
                    evse: m.evse.as_ref().and_then(|e| {
                        Some(EvseRef {
                            evse_id: u32::try_from(e.id).ok()?,
                            connector_id: e.connector_id.and_then(|c| u32::try_from(c).ok()),
                        })
                    }),
                    id_token: m.id_token.as_ref().map(IdToken::from),
                    remote_start_id: info.remote_start_id,
                    reservation_id: m.reservation_id,
                    offline: m.offline.unwrap_or(false),
                    stopped_reason: match m.event_type {
                        $ver::TransactionEventEnumType::Ended => Some(
                            info.stopped_reason
                                .map_or(StopReason::Local, StopReason::from),
                        ),
                        _ => info.stopped_reason.map(StopReason::from),
                    },
                    readings,
                    skipped_samples: skipped,
                }
            }
        }
    };
}
transaction_event_2x!(v201);
transaction_event_2x!(v21);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap() + chrono::Duration::minutes(min)
    }

    fn ev(kind: EventKind, seq: u32, min: i64, wh: &[(i64, i64, ReadingContext)]) -> TxEvent {
        TxEvent {
            kind,
            id: EventId::Seq(seq),
            timestamp: t(min),
            evse: Some(EvseRef {
                evse_id: 1,
                connector_id: Some(1),
            }),
            id_token: (kind == EventKind::Started).then(|| IdToken::id_tag("A")),
            remote_start_id: None,
            reservation_id: None,
            offline: false,
            stopped_reason: (kind == EventKind::Ended).then_some(StopReason::EVDisconnected),
            readings: wh
                .iter()
                .map(|&(m, v, context)| Reading {
                    at: t(m),
                    register: Register::Import,
                    context,
                    wh: Decimal::from(v),
                })
                .collect(),
            skipped_samples: 0,
        }
    }

    fn energy(events: &[TxEvent]) -> Decimal {
        let mut tx = Transaction::new(MeterPolicy {
            max_power_w: Some(Decimal::from(1_000_000)),
            ..MeterPolicy::default()
        });
        for e in events {
            tx.apply(e);
        }
        tx.summary().energy_wh(Register::Import)
    }

    use ReadingContext::{Begin, End, Other};

    #[test]
    fn a_csms_close_prices_up_to_the_last_reading_and_ends_once() {
        let mut tx = Transaction::default();
        tx.apply(&ev(EventKind::Started, 0, 0, &[(0, 1000, Begin)]));
        tx.apply(&ev(EventKind::Updated, 1, 10, &[(10, 3000, Other)]));
        let close = tx.closing(StopReason::Reboot).unwrap();
        assert_eq!((close.id, close.timestamp), (EventId::Closed, t(10)));
        assert_eq!(tx.apply(&close).effects, vec![Effect::Completed]);
        assert!(tx.closed_by_csms());
        assert!(tx.closing(StopReason::Other).is_none(), "closed once");
        assert!(tx.apply(&close).duplicate);
        let s = tx.summary();
        assert_eq!(
            (s.status, s.stopped_at, s.stop_reason),
            (Status::Completed, Some(t(10)), Some(StopReason::Reboot))
        );
        assert_eq!(s.energy_wh(Register::Import), Decimal::from(2000));
        // a reading after the close (a late queued sample) does not extend it
        let late = tx.apply(&ev(EventKind::Updated, 2, 20, &[(20, 9000, Other)]));
        assert!(!late.effects.contains(&Effect::Completed));
        assert_eq!(
            tx.summary().energy_wh(Register::Import),
            Decimal::from(2000)
        );
    }

    #[test]
    fn the_station_s_own_end_wins_over_a_csms_close_in_any_order() {
        let events = [
            ev(EventKind::Started, 0, 0, &[(0, 1000, Begin)]),
            ev(EventKind::Updated, 1, 10, &[(10, 3000, Other)]),
            ev(EventKind::Ended, 2, 30, &[(30, 5000, End)]),
        ];
        let mut reference = Transaction::default();
        for e in &events {
            reference.apply(e);
        }
        let want = reference.summary();
        // the close decided after any prefix of the station's events, then
        // the rest of them in any order
        let orders: [[usize; 3]; 6] = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        for order in orders {
            for at in 1..=3 {
                let mut tx = Transaction::default();
                let mut completed = 0;
                for (i, &k) in order.iter().enumerate() {
                    if i == at {
                        if let Some(c) = tx.closing(StopReason::Reboot) {
                            completed += tx
                                .apply(&c)
                                .effects
                                .iter()
                                .filter(|e| **e == Effect::Completed)
                                .count();
                        }
                    }
                    completed += tx
                        .apply(&events[k])
                        .effects
                        .iter()
                        .filter(|e| **e == Effect::Completed)
                        .count();
                }
                assert_eq!(completed, 1, "{order:?} closed after {at}: completed once");
                assert_eq!(tx.summary(), want, "{order:?} closed after {at}");
                assert!(!tx.closed_by_csms());
            }
        }
    }

    #[test]
    fn a_register_reset_counts_from_the_new_value() {
        // 1000 → 2000, new meter at 100 → 600: 1000 + 500
        let e = energy(&[
            ev(EventKind::Started, 0, 0, &[(0, 1000, Begin)]),
            ev(EventKind::Updated, 1, 10, &[(10, 2000, Other)]),
            ev(EventKind::Updated, 2, 20, &[(20, 100, Other)]),
            ev(EventKind::Ended, 3, 30, &[(30, 600, End)]),
        ]);
        assert_eq!(e, Decimal::from(1500));
    }

    #[test]
    fn without_a_power_limit_every_forward_step_counts() {
        // start and stop only, 2 kWh in "no time" (a simulator's clock): billed
        let mut tx = Transaction::default();
        tx.apply(&ev(EventKind::Started, 0, 0, &[(0, 0, Begin)]));
        tx.apply(&ev(EventKind::Ended, 1, 0, &[(0, 2000, End)]));
        assert_eq!(
            tx.summary().energy_wh(Register::Import),
            Decimal::from(2000)
        );
    }

    #[test]
    fn an_impossible_jump_does_not_count() {
        // 1 GWh in one minute is a glitch; the 500 Wh after it count
        let e = energy(&[
            ev(EventKind::Started, 0, 0, &[(0, 1000, Begin)]),
            ev(EventKind::Updated, 1, 1, &[(1, 1_000_001_000, Other)]),
            ev(EventKind::Ended, 2, 2, &[(2, 1_000_001_500, End)]),
        ]);
        assert_eq!(e, Decimal::from(500));
    }

    #[test]
    fn readings_before_begin_and_after_end_are_outside_the_session() {
        let e = energy(&[
            ev(EventKind::Updated, 1, -5, &[(-5, 10, Other)]),
            ev(EventKind::Started, 0, 0, &[(0, 1000, Begin)]),
            ev(EventKind::Ended, 2, 30, &[(30, 4000, End)]),
            ev(EventKind::Updated, 3, 40, &[(40, 9000, Other)]),
        ]);
        assert_eq!(e, Decimal::from(3000));
    }

    #[test]
    fn missing_started_is_reconstructed() {
        let mut tx = Transaction::default();
        let mut upd = ev(EventKind::Updated, 3, 5, &[(5, 1200, Other)]);
        upd.id_token = Some(IdToken::id_tag("B"));
        assert_eq!(tx.apply(&upd).effects, vec![Effect::Opened]);
        let end = ev(EventKind::Ended, 4, 30, &[(30, 2200, End)]);
        assert_eq!(tx.apply(&end).effects, vec![Effect::Completed]);
        let s = tx.summary();
        assert_eq!(s.started_at, Some(t(5)));
        assert_eq!(s.id_token, Some(IdToken::id_tag("B")));
        assert_eq!(s.import.unwrap().start_wh, Decimal::from(1200));
        assert_eq!(s.energy_wh(Register::Import), Decimal::from(1000));
        assert_eq!(s.stop_reason, Some(StopReason::EVDisconnected));
    }

    #[test]
    fn a_late_event_after_completion_is_an_amendment_and_a_replay_is_a_duplicate() {
        let mut tx = Transaction::default();
        tx.apply(&ev(EventKind::Started, 0, 0, &[(0, 1000, Begin)]));
        tx.apply(&ev(EventKind::Ended, 5, 30, &[(30, 3000, End)]));
        // a reset in between, reported late, changes the energy
        let late = ev(EventKind::Updated, 3, 20, &[(20, 50, Other)]);
        assert_eq!(
            tx.apply(&late).effects,
            vec![Effect::AmendedAfterCompletion]
        );
        assert!(tx.apply(&late).duplicate);
        // a late event that changes no figure is no amendment
        let mut quiet = ev(EventKind::Updated, 4, 25, &[]);
        quiet.evse = None;
        assert_eq!(tx.apply(&quiet), Applied::default());
    }

    #[test]
    fn stop_reasons_of_every_version_keep_their_name() {
        for r in StopReason::ALL {
            assert_eq!(StopReason::from_wire(r.as_wire()), Some(r));
        }
        assert_eq!(
            StopReason::from(v16::Reason::UnlockCommand),
            StopReason::UnlockCommand
        );
        assert_eq!(
            StopReason::from(v16::Reason::HardReset),
            StopReason::HardReset
        );
        assert_eq!(
            StopReason::from(v201::ReasonEnumType::SOCLimitReached),
            StopReason::SOCLimitReached
        );
        assert_eq!(
            StopReason::from(v21::ReasonEnumType::ReqEnergyTransferRejected),
            StopReason::ReqEnergyTransferRejected
        );
    }

    #[test]
    fn unphysical_registers_are_reported_and_ignored() {
        assert_eq!(MAX_REGISTER_WH, Decimal::from(1_000_000_000_000i64));
        let huge = ev(EventKind::Updated, 1, 5, &[(5, 0, Other)]);
        let mut huge = huge;
        huge.readings[0].wh = Decimal::from_str_exact("1e26").unwrap_or(Decimal::MAX);
        let mut negative = ev(EventKind::Started, 0, 0, &[(0, -1, Begin)]);
        assert!(huge.out_of_range().is_some());
        assert!(negative.out_of_range().is_some());
        let fine = ev(EventKind::Ended, 2, 9, &[(9, 5000, End)]);
        assert!(fine.out_of_range().is_none());
        // applied anyway (a store replaying old rows): ignored, no overflow, no panic
        let mut tx = Transaction::default();
        negative.readings.push(Reading {
            at: t(0),
            register: Register::Import,
            context: Begin,
            wh: Decimal::MIN,
        });
        for e in [&negative, &huge, &fine] {
            tx.apply(e);
        }
        assert_eq!(tx.summary().energy_wh(Register::Import), Decimal::ZERO);
        assert_eq!(tx.summary().import.unwrap().start_wh, Decimal::from(5000));
    }

    #[test]
    fn units_and_multipliers() {
        assert_eq!(
            wh_from(Decimal::new(15, 1), Some("kWh"), None),
            Some(Decimal::from(1500))
        );
        assert_eq!(
            wh_from(Decimal::from(15), Some("Wh"), Some(2)),
            Some(Decimal::from(1500))
        );
        assert_eq!(
            wh_from(Decimal::from(1500), Some("Wh"), Some(-3)),
            Some(Decimal::new(15, 1))
        );
        assert_eq!(wh_from(Decimal::ONE, Some("varh"), None), None);
        // too large to scale: out of range, not dropped
        assert_eq!(wh_from(Decimal::ONE, None, Some(99)), Some(Decimal::MAX));
        assert_eq!(wh_from(Decimal::MAX, Some("kWh"), None), Some(Decimal::MAX));
        assert_eq!(wh_from(Decimal::MIN, Some("kWh"), None), Some(Decimal::MIN));
        assert_eq!(wh_from(Decimal::ONE, None, Some(-99)), Some(Decimal::ZERO));
    }

    /// A station sending Started, Updated and Ended within one millisecond,
    /// readings without a context: Started's reading is the start and
    /// Ended's the stop (they no longer merge with the Updated's at the
    /// same instant, which left the start at the Updated's register).
    #[test]
    fn readings_of_started_and_ended_without_a_context_begin_and_end_the_session() {
        let event = |kind: &str, seq: u32, wh: i64| -> v201::TransactionEventRequest {
            serde_json::from_value(serde_json::json!({
                "eventType": kind, "timestamp": "2026-12-07T17:34:35.194Z",
                "triggerReason": "MeterValuePeriodic", "seqNo": seq,
                "transactionInfo": {"transactionId": "T0"},
                "meterValue": [{"timestamp": "2026-12-07T17:34:35.194Z",
                    "sampledValue": [{"value": wh, "measurand": "Energy.Active.Import.Register"}]}]
            }))
            .unwrap()
        };
        let events = [
            event("Started", 0, 1_000_000),
            event("Updated", 1, 1_000_333),
            event("Updated", 2, 1_000_666),
            event("Ended", 3, 1_001_000),
        ];
        let contexts: Vec<ReadingContext> = events
            .iter()
            .map(|e| TxEvent::from(e).readings[0].context)
            .collect();
        assert_eq!(contexts, [Begin, Other, Other, End]);
        // in any order
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]] {
            let mut tx = Transaction::new(MeterPolicy::default());
            for i in order {
                tx.apply(&TxEvent::from(&events[i]));
            }
            let meter = tx.meter(Register::Import).unwrap();
            assert_eq!(meter.start_wh, Decimal::from(1_000_000), "{order:?}");
            assert_eq!(meter.energy_wh, Decimal::from(1_000), "{order:?}");
        }
        // a context given is kept
        let mut periodic = event("Started", 0, 5);
        let sv = &mut periodic.meter_value.as_mut().unwrap()[0].sampled_value[0];
        sv.context = Some(v201::ReadingContextEnumType::SamplePeriodic);
        assert_eq!(TxEvent::from(&periodic).readings[0].context, Other);
    }
}
