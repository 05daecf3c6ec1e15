//! Charging sessions: the transaction messages of every version (1.6
//! `StartTransaction` / `MeterValues` / `StopTransaction`, 2.0.1 and 2.1
//! `TransactionEvent`) go through the `evproto-csms-core` transaction model,
//! each kept whole or not at all:
//!
//! 1. the session is taken from memory ([`Sessions`]), or loaded from its
//!    stored messages (after a restart, or when it had completed), and
//!    locked until its write is committed;
//! 2. a message whose de-duplication key (2.x `seqNo`, 1.6 start and stop,
//!    a 1.6 `MeterValues` by its content) the session already holds is a
//!    duplicate, answered as the first time, and nothing else happens;
//! 3. the model applies the message (the model holds the rules: order,
//!    duplicates, resets) and the writes follow from it: the message under
//!    its key, the session row, its sampled values and, when the session
//!    just completed, the billing entry of the outbox;
//! 4. they go to the store's group-commit writer (`crate::writer`), which
//!    commits them together, with other stations' messages of the same
//!    moment, before the station is answered; if the commit fails, nothing
//!    of the message is kept, the cached session is dropped (the next
//!    message loads what was committed), the station gets `InternalError`
//!    and retries, and the retry is not a duplicate because the key was
//!    never committed.
//!
//! Billing (price, CDR, capture, roaming push) runs from the outbox after
//! the commit, right away for the answer's final cost and again from the
//! outbox worker until it succeeds; each step is idempotent, so a crash
//! between two steps re-runs the step and never doubles it.

use chrono::{DateTime, Utc};
use evproto_csms_core::recovery::{self, Inquiry, Protocol, Signal, Step, TxStatus};
use evproto_csms_core::transaction::{
    Applied, Effect, EventId, EventKind, EvseRef, Register, StopReason, Transaction, TxEvent,
};
use evproto_ocpp_types::{v16, v201, v21};
use sha2::{Digest, Sha256};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::store::{Session, SessionRow, Store};
use crate::writer::Op;

/// One transaction message, typed as it arrived.
#[derive(Debug, Clone, Copy)]
pub enum TxMessage<'a> {
    /// 1.6 StartTransaction.
    Start16(&'a v16::StartTransactionRequest),
    /// 1.6 StopTransaction.
    Stop16(&'a v16::StopTransactionRequest),
    /// 1.6 MeterValues with a transaction.
    Meter16(&'a v16::MeterValuesRequest),
    /// 2.0.1 TransactionEvent.
    Event201(&'a v201::TransactionEventRequest),
    /// 2.1 TransactionEvent.
    Event21(&'a v21::TransactionEventRequest),
}

/// How a message is stored: the `kind` column it is decoded back by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Start16,
    Stop16,
    Meter16,
    Event201,
    Event21,
    /// The CSMS's close of a transaction the station will not end ([`Closed`]).
    Close,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Start16,
        Kind::Stop16,
        Kind::Meter16,
        Kind::Event201,
        Kind::Event21,
        Kind::Close,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Kind::Start16 => "1.6/StartTransaction",
            Kind::Stop16 => "1.6/StopTransaction",
            Kind::Meter16 => "1.6/MeterValues",
            Kind::Event201 => "2.0.1/TransactionEvent",
            Kind::Event21 => "2.1/TransactionEvent",
            Kind::Close => "csms/Close",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// A stored message back as a model event (`None`: unreadable, which a
    /// message we stored ourselves never is).
    fn decode(self, payload: &str) -> Option<TxEvent> {
        use evproto_ocpp_types::from_str;
        Some(match self {
            Kind::Start16 => {
                TxEvent::from(&from_str::<v16::StartTransactionRequest>(payload).ok()?)
            }
            Kind::Stop16 => TxEvent::from(&from_str::<v16::StopTransactionRequest>(payload).ok()?),
            Kind::Meter16 => TxEvent::from(&from_str::<v16::MeterValuesRequest>(payload).ok()?),
            Kind::Event201 => {
                TxEvent::from(&from_str::<v201::TransactionEventRequest>(payload).ok()?)
            }
            Kind::Event21 => {
                TxEvent::from(&from_str::<v21::TransactionEventRequest>(payload).ok()?)
            }
            Kind::Close => serde_json::from_str::<Closed>(payload).ok()?.event()?,
        })
    }
}

impl TxMessage<'_> {
    fn kind(&self) -> Kind {
        match self {
            TxMessage::Start16(_) => Kind::Start16,
            TxMessage::Stop16(_) => Kind::Stop16,
            TxMessage::Meter16(_) => Kind::Meter16,
            TxMessage::Event201(_) => Kind::Event201,
            TxMessage::Event21(_) => Kind::Event21,
        }
    }

    fn payload(&self) -> String {
        match self {
            TxMessage::Start16(m) => evproto_ocpp_types::to_json(*m),
            TxMessage::Stop16(m) => evproto_ocpp_types::to_json(*m),
            TxMessage::Meter16(m) => evproto_ocpp_types::to_json(*m),
            TxMessage::Event201(m) => evproto_ocpp_types::to_json(*m),
            TxMessage::Event21(m) => evproto_ocpp_types::to_json(*m),
        }
    }

    /// The de-duplication key within the session.
    fn key(&self, payload: &str) -> String {
        match self {
            TxMessage::Start16(_) => "start".into(),
            TxMessage::Stop16(_) => "stop".into(),
            TxMessage::Meter16(_) => {
                let digest = Sha256::digest(payload.as_bytes());
                let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
                format!("meter:{hex}")
            }
            TxMessage::Event201(m) => format!("seq:{}", m.seq_no),
            TxMessage::Event21(m) => format!("seq:{}", m.seq_no),
        }
    }

    fn event(&self) -> TxEvent {
        match self {
            TxMessage::Start16(m) => TxEvent::from(*m),
            TxMessage::Stop16(m) => TxEvent::from(*m),
            TxMessage::Meter16(m) => TxEvent::from(*m),
            TxMessage::Event201(m) => TxEvent::from(*m),
            TxMessage::Event21(m) => TxEvent::from(*m),
        }
    }

    /// Every sampled value as (timestamp, measurand[.phase], value, unit),
    /// for charts and the CDR's charging periods.
    pub fn samples(&self) -> Vec<(String, String, String, Option<String>)> {
        let ts = |t: &chrono::DateTime<chrono::Utc>| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        let name = |measurand: Option<&str>, phase: Option<&str>| {
            let m = measurand.unwrap_or("Energy.Active.Import.Register");
            match phase {
                Some(p) => format!("{m}.{p}"),
                None => m.to_owned(),
            }
        };
        let mut out = Vec::new();
        match self {
            TxMessage::Start16(_) => {}
            TxMessage::Stop16(m) => {
                for v in m.transaction_data.iter().flatten() {
                    for s in &v.sampled_value {
                        out.push((
                            ts(&v.timestamp),
                            name(s.measurand.map(|m| m.as_str()), s.phase.map(|p| p.as_str())),
                            s.value.clone(),
                            s.unit.map(|u| u.as_str().to_owned()),
                        ));
                    }
                }
            }
            TxMessage::Meter16(m) => {
                for v in &m.meter_value {
                    for s in &v.sampled_value {
                        out.push((
                            ts(&v.timestamp),
                            name(s.measurand.map(|m| m.as_str()), s.phase.map(|p| p.as_str())),
                            s.value.clone(),
                            s.unit.map(|u| u.as_str().to_owned()),
                        ));
                    }
                }
            }
            TxMessage::Event201(m) => {
                for v in m.meter_value.iter().flatten() {
                    for s in &v.sampled_value {
                        out.push((
                            ts(&v.timestamp),
                            name(s.measurand.map(|m| m.as_str()), s.phase.map(|p| p.as_str())),
                            s.value.normalize().to_string(),
                            s.unit_of_measure
                                .as_ref()
                                .and_then(|u| u.unit.as_ref())
                                .map(|u| u.as_str().to_owned()),
                        ));
                    }
                }
            }
            TxMessage::Event21(m) => {
                for v in m.meter_value.iter().flatten() {
                    for s in &v.sampled_value {
                        out.push((
                            ts(&v.timestamp),
                            name(s.measurand.map(|m| m.as_str()), s.phase.map(|p| p.as_str())),
                            s.value.normalize().to_string(),
                            s.unit_of_measure
                                .as_ref()
                                .and_then(|u| u.unit.as_ref())
                                .map(|u| u.as_str().to_owned()),
                        ));
                    }
                }
            }
        }
        out
    }
}

/// Why a transaction message was not applied.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The store failed: nothing of the message was kept (`InternalError`).
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// An energy register outside the physical range (`PropertyConstraintViolation`):
    /// kept, it would overflow every later sum.
    #[error("energy register {wh} Wh is outside 0..=10^12 Wh")]
    OutOfRange {
        /// The register as sent, in Wh.
        wh: rust_decimal::Decimal,
    },
}

/// What a transaction message did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Our session id.
    pub session_id: String,
    /// The model's answer (duplicate, effects).
    pub applied: Applied,
    /// The 1.6 transaction id (StartTransaction: assigned now or, for a
    /// replay, the first time).
    pub tx_id_16: Option<i64>,
    /// The session as stored after this message (`None` for a replayed
    /// 1.6 start, whose session may have moved on since).
    pub session: Option<Session>,
}

/// The 1.6 start key a replayed StartTransaction is recognized by.
fn start_key(station: &str, m: &v16::StartTransactionRequest) -> String {
    format!(
        "{station}|{}|{}|{}|{}",
        m.connector_id,
        m.id_tag.as_str(),
        m.meter_start,
        m.timestamp
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    )
}

/// The session id of a station's OCPP transaction id.
pub fn session_id(station: &str, ocpp_tx_id: &str) -> String {
    format!("{station}:{ocpp_tx_id}")
}

/// A session as the rules see it: its model and the keys of the messages
/// it was built from.
#[derive(Debug)]
struct Loaded {
    model: Transaction,
    keys: HashSet<String>,
    /// The session as stored (`None`: it does not exist yet).
    session: Option<Session>,
}

/// A cache slot. Its lock is held from the rules' decision to the commit of
/// what they decided, so two messages of one session never decide on the
/// same state.
#[derive(Debug, Default)]
struct Slot {
    /// `None`: not loaded (or dropped after a failed write).
    loaded: Option<Loaded>,
    /// 1.6 start keys: the transaction id the key was given.
    start: Option<i64>,
    /// Removed from the map: whoever still holds it looks again.
    evicted: bool,
}

type SlotRef = Arc<tokio::sync::Mutex<Slot>>;

/// Open sessions in memory, with the store as the truth: a session is
/// loaded from its stored messages on first use after a start, kept while
/// it is open, and dropped when it completes or its station disconnects
/// (a later message loads it again). A 1.6 start's slot lives only while
/// the start is decided: a replay finds its id in the store. Every change is written through the store's
/// group-commit writer before the cache takes it.
#[derive(Debug)]
pub struct Sessions {
    store: Store,
    /// Key → (station, slot).
    slots: std::sync::Mutex<HashMap<String, (String, SlotRef)>>,
    /// The next 1.6 transaction id (loaded from the store's counter).
    next_16: tokio::sync::Mutex<Option<i64>>,
    /// Stations that booted with sessions open, and when: their suspects
    /// are ended after the grace period ([`Sessions::tick`]).
    booted: std::sync::Mutex<HashMap<String, DateTime<Utc>>>,
    /// When a suspect is ended for silence.
    policy: recovery::Policy,
    /// 2.x suspects the CSMS asked (or will ask) `GetTransactionStatus`
    /// about before ending them (E14): session id → (station, inquiry).
    /// Dropped when the session completes or its station boots again.
    inquiries: std::sync::Mutex<HashMap<String, (String, Inquiry)>>,
    /// Running prices of open sessions, fed the readings each message commits.
    running: crate::billing::RunningCosts,
    /// Station → its sessions that may be open: every session stored
    /// `Active` is here (added before its row is written, removed after the
    /// row that completes it is committed), so a station absent here has
    /// none and its StatusNotification and MeterValues need no read.
    /// Loaded from the store on first use ([`Sessions::may_have_open`]).
    open: std::sync::Mutex<HashMap<String, HashSet<String>>>,
    open_loaded: tokio::sync::OnceCell<()>,
}

impl Sessions {
    /// The sessions of `store`.
    pub fn new(store: Store) -> Self {
        Sessions {
            store,
            slots: std::sync::Mutex::new(HashMap::new()),
            next_16: tokio::sync::Mutex::new(None),
            booted: std::sync::Mutex::new(HashMap::new()),
            policy: recovery::Policy::default(),
            inquiries: std::sync::Mutex::new(HashMap::new()),
            running: crate::billing::RunningCosts::default(),
            open: std::sync::Mutex::new(HashMap::new()),
            open_loaded: tokio::sync::OnceCell::new(),
        }
    }

    /// Whether `station` may have an open session (false: it has none, no
    /// read needed). The first call reads the sessions stored `Active`.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn may_have_open(&self, station: &str) -> Result<bool, crate::store::StoreError> {
        self.open_loaded
            .get_or_try_init(|| async {
                use sqlx::Row;
                let rows =
                    sqlx::query("SELECT station_id, id FROM sessions WHERE status = 'Active'")
                        .fetch_all(self.store.reader())
                        .await?;
                let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
                for r in rows {
                    open.entry(r.try_get(0)?).or_default().insert(r.try_get(1)?);
                }
                Ok::<(), crate::store::StoreError>(())
            })
            .await?;
        Ok(self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(station))
    }

    /// Session `id` of `station` may be open: called before its row is written.
    fn opening(&self, station: &str, id: &str) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        match open.get_mut(station) {
            Some(ids) => {
                if !ids.contains(id) {
                    ids.insert(id.to_owned());
                }
            }
            None => {
                open.insert(station.to_owned(), HashSet::from([id.to_owned()]));
            }
        }
    }

    /// Session `id` of `station` is completed, committed.
    fn completed(&self, station: &str, id: &str) {
        self.inquiries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ids) = open.get_mut(station) {
            ids.remove(id);
            if ids.is_empty() {
                open.remove(station);
            }
        }
    }

    /// The running prices of open sessions (running costs, `CostUpdated`).
    pub fn running(&self) -> &crate::billing::RunningCosts {
        &self.running
    }

    /// How many sessions (and 1.6 start keys) are held in memory.
    pub fn cached(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn slot(&self, station: &str, key: &str) -> SlotRef {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_owned())
            .or_insert_with(|| (station.to_owned(), SlotRef::default()))
            .1
            .clone()
    }

    /// Drops what is held of `station`'s sessions (it disconnected, or was
    /// deleted). A slot in use by a message being applied stays; that
    /// message's own rules drop it when its session completes.
    pub fn forget_station(&self, station: &str) {
        self.running.forget_station(station);
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (owner, slot)| {
                if owner != station {
                    return true;
                }
                match slot.try_lock() {
                    Ok(mut g) => {
                        g.evicted = true;
                        false
                    }
                    Err(_) => true,
                }
            });
    }

    /// Locks `station`'s slot of `key`, skipping slots evicted meanwhile.
    async fn lock(&self, station: &str, key: &str) -> tokio::sync::OwnedMutexGuard<Slot> {
        loop {
            let guard = self.slot(station, key).lock_owned().await;
            if !guard.evicted {
                return guard;
            }
        }
    }

    /// Removes a slot whose lock the caller holds.
    fn evict(&self, key: &str, guard: &mut Slot) {
        guard.evicted = true;
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    async fn next_tx_16(&self) -> Result<i64, SessionError> {
        let mut next = self.next_16.lock().await;
        let n = match *next {
            Some(n) => n,
            None => self.store.counter(COUNTER_16).await? + 1,
        };
        *next = Some(n + 1);
        Ok(n)
    }

    /// A transaction id whose start was not written: the next start gets it
    /// again when no other start took an id since (ids stay dense).
    async fn give_back_tx_16(&self, tx: i64) {
        let mut next = self.next_16.lock().await;
        if *next == Some(tx + 1) {
            *next = Some(tx);
        }
    }

    /// Loads a session from its stored messages (one read: its row and its
    /// messages together).
    async fn load(&self, id: &str) -> Result<Loaded, SessionError> {
        let mut model = Transaction::default();
        let mut keys = HashSet::new();
        let (session, stored) = match self.store.session_with_messages(id).await? {
            Some((s, messages)) => (Some(s), messages),
            None => (None, Vec::new()),
        };
        for (key, kind, payload) in &stored {
            match Kind::parse(kind).and_then(|k| k.decode(payload)) {
                Some(ev) => {
                    model.apply(&ev);
                }
                None => return Err(crate::store::StoreError::Corrupt("transaction message").into()),
            }
            keys.insert(key.clone());
        }
        Ok(Loaded {
            model,
            keys,
            session,
        })
    }

    /// Applies a transaction message (see the module docs): decided in
    /// memory, written in the next group commit, answered after it. `None`
    /// for a 1.6 Stop or MeterValues naming a transaction this CSMS never
    /// started (nothing is written; the station is answered).
    ///
    /// # Errors
    ///
    /// The store failed, or a register is not physical: nothing of the
    /// message was kept.
    pub async fn apply(
        &self,
        station: &str,
        msg: TxMessage<'_>,
    ) -> Result<Option<Outcome>, SessionError> {
        if let Some(r) = msg.event().out_of_range() {
            return Err(SessionError::OutOfRange { wh: r.wh });
        }
        let mut ops = Vec::new();
        let mut start = None;
        // a 1.6 start: its transaction id, by its start key
        let start_guard = if let TxMessage::Start16(m) = msg {
            let key = start_key(station, m);
            let mut g = self.lock(station, &format!("start|{key}")).await;
            let known = match g.start {
                Some(tx) => Some(tx),
                None => self.store.start_key(&key).await?,
            };
            if let Some(tx) = known {
                g.start = Some(tx);
                self.evict(&format!("start|{key}"), &mut g);
                // a replayed StartTransaction: the first answer's transaction id
                return Ok(Some(Outcome {
                    session_id: session_id(station, &tx.to_string()),
                    applied: Applied {
                        duplicate: true,
                        effects: Vec::new(),
                    },
                    tx_id_16: Some(tx),
                    session: None,
                }));
            }
            let tx = self.next_tx_16().await?;
            ops.push(Op::Counter {
                name: COUNTER_16,
                at_least: tx,
            });
            ops.push(Op::StartKey {
                key: key.clone(),
                session_id: session_id(station, &tx.to_string()),
                tx_id: tx,
            });
            start = Some((tx, key));
            Some(g)
        } else {
            None
        };
        let ocpp_tx_id = match (msg, &start) {
            (_, Some((tx, _))) => tx.to_string(),
            (TxMessage::Stop16(m), _) => m.transaction_id.to_string(),
            (TxMessage::Meter16(m), _) => match m.transaction_id {
                Some(t) => t.to_string(),
                None => return Ok(None),
            },
            (TxMessage::Event201(m), _) => m.transaction_info.transaction_id.as_str().to_owned(),
            (TxMessage::Event21(m), _) => m.transaction_info.transaction_id.as_str().to_owned(),
            (TxMessage::Start16(_), None) => unreachable!("a 1.6 start has its id"),
        };
        let id = session_id(station, &ocpp_tx_id);
        let mut slot = self.lock(station, &id).await;
        let mut loaded = match slot.loaded.take() {
            Some(l) => l,
            None if start.is_some() => Loaded {
                model: Transaction::default(),
                keys: HashSet::new(),
                session: None,
            },
            None => self.load(&id).await?,
        };
        if matches!(msg, TxMessage::Stop16(_) | TxMessage::Meter16(_)) && loaded.session.is_none() {
            return Ok(None);
        }
        let tx_id_16 = start.as_ref().map(|s| s.0);
        let payload = msg.payload();
        let key = msg.key(&payload);
        if loaded.keys.contains(&key) {
            let session = loaded.session.clone();
            slot.loaded = Some(loaded);
            return Ok(Some(Outcome {
                session_id: id,
                applied: Applied {
                    duplicate: true,
                    effects: Vec::new(),
                },
                tx_id_16,
                session,
            }));
        }
        // the model changes in place; if the write fails the slot is left
        // unloaded, and the next message loads what was committed
        let applied = loaded.model.apply(&msg.event());
        if applied.duplicate {
            // a 1.6 MeterValues repeated with other bytes but the same readings: keep nothing
            let session = loaded.session.clone();
            slot.loaded = Some(loaded);
            return Ok(Some(Outcome {
                session_id: id,
                applied,
                tx_id_16,
                session,
            }));
        }
        // a later row keeps the start key the first one wrote
        let row = row(
            station,
            &ocpp_tx_id,
            &id,
            &loaded.model,
            start.as_ref().map(|s| s.1.clone()),
        );
        ops.push(Op::TxMessage {
            session_id: id.clone(),
            key: key.clone(),
            kind: msg.kind().as_str(),
            payload,
        });
        let session = row.to_session();
        if !row.completed {
            self.opening(station, &id);
        }
        ops.push(Op::Session(Box::new(row)));
        let samples = msg.samples();
        let readings = (!samples.is_empty()).then(|| samples.clone());
        if !samples.is_empty() {
            ops.push(Op::MeterValues {
                session_id: id.clone(),
                samples,
            });
        }
        let completed = applied.effects.contains(&Effect::Completed);
        if completed {
            ops.push(Op::Enqueue {
                id: format!("bill:{id}"),
                kind: "bill",
                subject: id.clone(),
            });
        }
        if loaded.session.is_none() {
            // not stored yet, so nobody attributed it to a partner: known
            // before the commit makes it visible to whoever would
            self.store.session_created(&id);
        }
        if let Err(e) = self.store.writer().write(ops).await {
            if let Some(tx) = tx_id_16 {
                self.give_back_tx_16(tx).await;
            }
            return Err(e.into());
        }
        if let (Some(mut g), Some((tx, key))) = (start_guard, start.as_ref()) {
            // decided and committed: a replay finds the id in the store, and
            // whoever waits on this slot looks again (a station's starts do
            // not pile up in memory)
            g.start = Some(*tx);
            self.evict(&format!("start|{key}"), &mut g);
        }
        loaded.keys.insert(key);
        loaded.session = Some(session.clone());
        // committed: the running price takes the readings (the slot's lock
        // keeps them in commit order)
        if let Some(r) = &readings {
            self.running.observe(&id, r);
        }
        if loaded.model.is_completed() {
            self.completed(station, &id);
            self.running.forget(&id);
            self.evict(&id, &mut slot);
        } else {
            slot.loaded = Some(loaded);
        }
        Ok(Some(Outcome {
            session_id: id,
            applied,
            tx_id_16,
            session: Some(session),
        }))
    }
}

/// Who ended a session the station did not end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Closer {
    /// The stuck-session rules ([`recovery`]): the station rebooted or
    /// reported the connector `Available` without ending it.
    Recovery,
    /// An operator (`POST /api/sessions/{id}/close`).
    Operator,
}

/// A CSMS close as stored with the session's messages (kind `csms/Close`)
/// and shown with the session: the model's `Ended` plus who and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Closed {
    /// Who closed it.
    pub by: Closer,
    /// The stop reason given to the session (wire name).
    pub stop_reason: String,
    /// The operator's reason, or what the rules saw.
    pub reason: String,
    /// When the CSMS closed it (its clock).
    pub closed_at: DateTime<Utc>,
    /// The session's stop time: its last meter value's (the station's clock).
    pub stopped_at: DateTime<Utc>,
}

impl Closed {
    /// The model's `Ended` this close is.
    fn event(&self) -> Option<TxEvent> {
        Some(TxEvent {
            kind: EventKind::Ended,
            id: EventId::Closed,
            timestamp: self.stopped_at,
            evse: None,
            id_token: None,
            remote_start_id: None,
            reservation_id: None,
            offline: false,
            stopped_reason: Some(StopReason::from_wire(&self.stop_reason)?),
            readings: Vec::new(),
            skipped_samples: 0,
        })
    }
}

/// Why a session was not closed.
#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    /// The store failed: nothing was kept.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// No such session.
    #[error("unknown session {0}")]
    Unknown(String),
    /// It is completed already (by its station, or closed before).
    #[error("session {0} is completed already")]
    Completed(String),
}

impl From<SessionError> for CloseError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Store(e) => CloseError::Store(e),
            // a close carries no register
            SessionError::OutOfRange { .. } => {
                CloseError::Store(crate::store::StoreError::Corrupt("register"))
            }
        }
    }
}

/// An open session of a station, as the recovery rules need it.
struct OpenRow {
    id: String,
    /// The station's transaction id.
    ocpp_tx_id: String,
    open: recovery::Open,
}

/// A `GetTransactionStatus` the stuck-session rules want sent before they
/// end a 2.x session (E14); its answer goes to
/// [`Sessions::status_answered`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusAsk {
    /// The session.
    pub session: String,
    /// The station's transaction id (the request's `transactionId`).
    pub transaction_id: String,
}

/// What the stuck-session rules did on one input.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The sessions closed, each with its bill queued.
    pub closed: Vec<String>,
    /// The `GetTransactionStatus` calls to send.
    pub ask: Vec<StatusAsk>,
}

fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl Sessions {
    /// Ends session `id` now (the station will not): priced up to its last
    /// meter value, billed through the outbox written with it. The caller
    /// runs that outbox entry (`bill:{id}`) after.
    ///
    /// # Errors
    ///
    /// Unknown, completed already, or the store failed (nothing kept).
    pub async fn close(
        &self,
        id: &str,
        by: Closer,
        stop_reason: StopReason,
        reason: &str,
    ) -> Result<Session, CloseError> {
        let Some(stored) = self.store.session(id).await? else {
            return Err(CloseError::Unknown(id.to_owned()));
        };
        let station = stored.station_id.clone();
        let mut slot = self.lock(&station, id).await;
        let mut loaded = match slot.loaded.take() {
            Some(l) => l,
            None => self.load(id).await?,
        };
        let Some(event) = loaded.model.closing(stop_reason) else {
            slot.loaded = Some(loaded);
            return Err(CloseError::Completed(id.to_owned()));
        };
        let record = Closed {
            by,
            stop_reason: stop_reason.as_wire().to_owned(),
            reason: reason.to_owned(),
            closed_at: Utc::now(),
            stopped_at: event.timestamp,
        };
        loaded.model.apply(&event);
        let row = row(&station, &stored.ocpp_tx_id, id, &loaded.model, None);
        let session = row.to_session();
        let ops = vec![
            Op::TxMessage {
                session_id: id.to_owned(),
                key: "close".into(),
                kind: Kind::Close.as_str(),
                payload: serde_json::to_string(&record)
                    .map_err(|_| crate::store::StoreError::Corrupt("close record"))?,
            },
            Op::Session(Box::new(row)),
            Op::Enqueue {
                id: format!("bill:{id}"),
                kind: "bill",
                subject: id.to_owned(),
            },
        ];
        // on failure the slot is left unloaded: the next use loads what was committed
        self.store.writer().write(ops).await?;
        self.completed(&station, id);
        self.evict(id, &mut slot);
        tracing::info!(session = id, by = ?by, stop_reason = stop_reason.as_wire(), reason, "closed by the CSMS");
        Ok(session)
    }

    /// The CSMS's close of session `id`, if it was closed so.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn closed(&self, id: &str) -> Result<Option<Closed>, crate::store::StoreError> {
        Ok(self
            .store
            .tx_messages(id)
            .await?
            .into_iter()
            .find(|(_, kind, _)| kind == Kind::Close.as_str())
            .and_then(|(_, _, payload)| serde_json::from_str(&payload).ok()))
    }

    /// `station` booted at `at`: its open sessions are now suspects (see
    /// [`recovery`]), ended when it reports their connector `Available`
    /// ([`Sessions::available`]) or after the grace period without a word
    /// about them ([`Sessions::tick`]).
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn booted(&self, station: &str, at: DateTime<Utc>) -> Result<(), SessionError> {
        // what it answered before this boot says nothing now
        self.inquiries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (owner, _)| owner != station);
        if self.may_have_open(station).await? && !self.open_of(station, Some(at)).await?.is_empty()
        {
            self.booted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(station.to_owned(), at);
        }
        Ok(())
    }

    /// `station` reported `at` `Available` (its report's own time
    /// `timestamp`; received `now`): ends the sessions the rules say it will
    /// not end (1.6), or has their `GetTransactionStatus` asked first (2.x).
    ///
    /// # Errors
    ///
    /// The store failed (what was closed before stays closed).
    pub async fn available(
        &self,
        station: &str,
        protocol: Protocol,
        at: EvseRef,
        timestamp: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Recovered, SessionError> {
        let signal = Signal::Available { at, timestamp };
        let boot = self.boot_of(station);
        self.recover(station, protocol, &signal, boot, now).await
    }

    /// The station's latest boot with sessions open, as this process saw it
    /// (`None`: read the stored one).
    fn boot_of(&self, station: &str) -> Option<DateTime<Utc>> {
        self.booted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(station)
            .copied()
    }

    /// Time passed (`now`, the CSMS's clock; the station spoke, e.g. a
    /// Heartbeat): ends the station's suspects after the grace period (2.x:
    /// asks first, and again while the station holds their messages). Reads
    /// the store only for a station that booted with sessions open.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn tick(
        &self,
        station: &str,
        protocol: Protocol,
        now: DateTime<Utc>,
    ) -> Result<Recovered, SessionError> {
        let Some(boot) = self
            .boot_of(station)
            .filter(|b| now - *b >= self.policy.grace)
        else {
            return Ok(Recovered::default());
        };
        let done = self
            .recover(station, protocol, &Signal::Tick { now }, Some(boot), now)
            .await?;
        // every suspect of that boot is decided now, unless the station was
        // asked about one or holds its messages (ask again later)
        let waiting = self
            .inquiries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|(owner, q)| {
                owner == station && matches!(q, Inquiry::Asked { .. } | Inquiry::Queued { .. })
            });
        let mut booted = self.booted.lock().unwrap_or_else(|e| e.into_inner());
        if !waiting && booted.get(station) == Some(&boot) {
            booted.remove(station);
        }
        Ok(done)
    }

    /// The station's answer (`None`: none: a CALLERROR, a timeout, not
    /// connected) to the `GetTransactionStatus` of `ask`, received `now`:
    /// the session closed if the rules end it now (nothing queued, not
    /// ongoing, or no answer) and it is still a suspect; else it stays open.
    ///
    /// # Errors
    ///
    /// The store failed (the next input asks again).
    pub async fn status_answered(
        &self,
        station: &str,
        ask: &StatusAsk,
        answer: Option<TxStatus>,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, SessionError> {
        let step = match self
            .inquiries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&ask.session)
        {
            Some((_, q)) => q.answered(answer, now),
            None => Step::Keep,
        };
        let Step::End(stop) = step else {
            return Ok(None);
        };
        // a message of it may have arrived while the CSMS asked
        let suspect = self
            .open_of(station, self.boot_of(station))
            .await?
            .iter()
            .any(|s| s.id == ask.session && s.open.suspect());
        if !suspect {
            return Ok(None);
        }
        let why = match answer {
            Some(_) => "the station rebooted and answered GetTransactionStatus that it holds no message of it and it is not ongoing",
            None => "the station rebooted and did not answer GetTransactionStatus",
        };
        match self.close(&ask.session, Closer::Recovery, stop, why).await {
            Ok(_) => Ok(Some(ask.session.clone())),
            Err(CloseError::Completed(_) | CloseError::Unknown(_)) => Ok(None),
            Err(CloseError::Store(e)) => Err(e.into()),
        }
    }

    async fn recover(
        &self,
        station: &str,
        protocol: Protocol,
        signal: &Signal,
        boot: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Recovered, SessionError> {
        let mut done = Recovered::default();
        if !self.may_have_open(station).await? {
            return Ok(done);
        }
        for s in self.open_of(station, boot).await? {
            let Some(mut stop) = recovery::decide(protocol, &self.policy, &s.open, signal) else {
                continue;
            };
            if protocol == Protocol::V2x {
                // E14: the station may still hold the transaction's Ended
                let step = self
                    .inquiries
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(s.id.clone())
                    .or_insert_with(|| (station.to_owned(), Inquiry::default()))
                    .1
                    .wants_end(&self.policy, stop, now);
                match step {
                    Step::Ask => {
                        done.ask.push(StatusAsk {
                            session: s.id,
                            transaction_id: s.ocpp_tx_id,
                        });
                        continue;
                    }
                    Step::Keep => continue,
                    Step::End(reason) => stop = reason,
                }
            }
            let why = match (signal, s.open.suspect()) {
                (Signal::Available { .. }, true) => {
                    "the station rebooted and reported the connector Available"
                }
                (Signal::Available { .. }, false) => "the station reported the connector Available",
                (Signal::Tick { .. }, _) => {
                    "the station rebooted and said nothing of it within the grace period"
                }
            };
            match self.close(&s.id, Closer::Recovery, stop, why).await {
                Ok(_) => done.closed.push(s.id),
                // ended meanwhile by its station: nothing to do
                Err(CloseError::Completed(_) | CloseError::Unknown(_)) => {}
                Err(CloseError::Store(e)) => return Err(e.into()),
            }
        }
        Ok(done)
    }

    /// The station's open sessions with what the rules need; `boot`: its
    /// latest boot when the caller knows it (else read from the store).
    async fn open_of(
        &self,
        station: &str,
        boot: Option<DateTime<Utc>>,
    ) -> Result<Vec<OpenRow>, crate::store::StoreError> {
        use sqlx::Row;
        // a read of the sessions aggregate for the rules here (the store
        // module keeps the writes; this is its one read by station and status)
        let rows = sqlx::query(
            "SELECT s.id, s.evse_id, s.connector_id, s.started_at, s.updated_at, \
             (SELECT MAX(m.received_at) FROM tx_messages m WHERE m.session_id = s.id), \
             (SELECT st.last_boot FROM stations st WHERE st.id = s.station_id), s.ocpp_tx_id \
             FROM sessions s WHERE s.station_id = $1 AND s.status = 'Active'",
        )
        .bind(station)
        .fetch_all(self.store.reader())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let evse: Option<i64> = r.try_get(1)?;
            let connector: Option<i64> = r.try_get(2)?;
            let started: Option<String> = r.try_get(3)?;
            let updated: String = r.try_get(4)?;
            let last: Option<String> = r.try_get(5)?;
            let stored_boot: Option<String> = r.try_get(6)?;
            let Some(last_message_at) = parse_ts(last.as_deref().unwrap_or(&updated)) else {
                return Err(crate::store::StoreError::Corrupt("session time"));
            };
            let evse = evse
                .and_then(|e| u32::try_from(e).ok())
                .map(|evse_id| EvseRef {
                    evse_id,
                    // 1.6: the connector again (its reports name no other); 2.x: the
                    // connector within the EVSE
                    connector_id: connector.and_then(|c| u32::try_from(c).ok()),
                });
            out.push(OpenRow {
                id: r.try_get(0)?,
                ocpp_tx_id: r.try_get(7)?,
                open: recovery::Open {
                    evse,
                    started_at: started.as_deref().and_then(parse_ts),
                    last_message_at,
                    last_boot_at: boot.or_else(|| stored_boot.as_deref().and_then(parse_ts)),
                },
            });
        }
        Ok(out)
    }
}

/// The counter 1.6 transaction ids come from.
const COUNTER_16: &str = "transaction_16";

fn row(
    station: &str,
    ocpp_tx_id: &str,
    id: &str,
    model: &Transaction,
    start_key: Option<String>,
) -> SessionRow {
    let s = model.summary();
    let import = s.import;
    let completed = model.is_completed();
    SessionRow {
        id: id.to_owned(),
        station_id: station.to_owned(),
        ocpp_tx_id: ocpp_tx_id.to_owned(),
        evse_id: s.evse.map(|e| i64::from(e.evse_id)),
        // 1.6 names no connector within its "connector": the same number
        connector_id: s
            .evse
            .map(|e| i64::from(e.connector_id.unwrap_or(e.evse_id))),
        id_token: s.id_token.as_ref().map(|t| t.id.clone()),
        completed,
        started_at: s.started_at,
        stopped_at: s.stopped_at,
        meter_start_wh: import.map(|m| m.start_wh),
        meter_stop_wh: import.filter(|_| completed).map(|m| m.last_wh),
        last_register_wh: import.map(|m| m.last_wh),
        energy_wh: s.energy_wh(Register::Import),
        stop_reason: s.stop_reason,
        start_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn temp_store(name: &str) -> Store {
        let dir = std::env::temp_dir().join(format!("csms-sessions-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Store::open(&format!("sqlite://{}?mode=rwc", dir.join("t.db").display()))
            .await
            .unwrap()
    }

    /// Everything a transaction message may write, time-independent.
    async fn snapshot(store: &Store) -> Vec<String> {
        use sqlx::Row;
        let mut out = Vec::new();
        for q in [
            "SELECT id || '|' || status || '|' || COALESCE(energy_wh, '') || '|' || COALESCE(started_at, '') || '|' || COALESCE(stopped_at, '') || '|' || COALESCE(meter_start_wh, '') || '|' || COALESCE(meter_stop_wh, '') || '|' || COALESCE(id_token, '') FROM sessions ORDER BY 1",
            "SELECT session_id || '/' || msg_key FROM tx_messages ORDER BY 1",
            "SELECT id || '/' || COALESCE(done_at, 'pending') FROM outbox ORDER BY 1",
            "SELECT session_id || ts || measurand || value FROM meter_values ORDER BY 1",
            "SELECT start_key || '=' || ocpp_tx_id FROM session_start_keys ORDER BY 1",
            "SELECT name || '=' || CAST(value AS TEXT) FROM counters ORDER BY 1",
        ] {
            for r in sqlx::query(q).fetch_all(store.pool()).await.unwrap() {
                out.push(r.try_get::<String, _>(0).unwrap());
            }
            out.push("--".into());
        }
        out
    }

    fn messages_16() -> (
        v16::StartTransactionRequest,
        v16::MeterValuesRequest,
        v16::StopTransactionRequest,
    ) {
        use evproto_ocpp_types::from_str;
        (
            from_str(r#"{"connectorId":1,"idTag":"TAG","meterStart":100,"timestamp":"2026-01-01T00:00:00Z"}"#).unwrap(),
            from_str(r#"{"connectorId":1,"transactionId":1,"meterValue":[{"timestamp":"2026-01-01T00:30:00Z","sampledValue":[{"value":"350"}]}]}"#).unwrap(),
            from_str(r#"{"transactionId":1,"meterStop":600,"timestamp":"2026-01-01T01:00:00Z","reason":"Local"}"#).unwrap(),
        )
    }

    fn events_201() -> Vec<v201::TransactionEventRequest> {
        ["Started:0:1000:Transaction.Begin", "Updated:1:2000:Sample.Periodic", "Ended:2:3000:Transaction.End"]
            .iter()
            .map(|e| {
                let p: Vec<&str> = e.split(':').collect();
                evproto_ocpp_types::from_str(&format!(
                    r#"{{"eventType":"{}","seqNo":{},"timestamp":"2026-01-01T00:0{}:00Z","triggerReason":"MeterValuePeriodic",
                    "transactionInfo":{{"transactionId":"T1"}},"evse":{{"id":1,"connectorId":1}},
                    "idToken":{{"idToken":"TAG","type":"ISO14443"}},
                    "meterValue":[{{"timestamp":"2026-01-01T00:0{}:00Z","sampledValue":[{{"value":{},"context":"{}"}}]}}]}}"#,
                    p[0], p[1], p[1], p[1], p[2], p[3]
                ))
                .unwrap()
            })
            .collect()
    }

    #[tokio::test]
    async fn memory_holds_open_sessions_only_until_they_complete_or_the_station_leaves() {
        let store = temp_store("pruned").await;
        let sessions = Sessions::new(store.clone());
        let (start, _, stop) = messages_16();
        let ev = events_201();
        sessions
            .apply("CP", TxMessage::Start16(&start))
            .await
            .unwrap();
        // the open session only: the start's slot went with its commit
        assert_eq!(sessions.cached(), 1);
        sessions
            .apply("CP", TxMessage::Start16(&start))
            .await
            .unwrap();
        assert_eq!(sessions.cached(), 1, "a replay keeps nothing either");
        sessions
            .apply("CP", TxMessage::Stop16(&stop))
            .await
            .unwrap();
        assert_eq!(sessions.cached(), 0, "completed");
        // open sessions of two stations; one disconnects
        sessions
            .apply("CP3", TxMessage::Start16(&start))
            .await
            .unwrap();
        sessions
            .apply("CP2", TxMessage::Event201(&ev[0]))
            .await
            .unwrap();
        assert_eq!(sessions.cached(), 2);
        sessions.forget_station("CP");
        assert_eq!(sessions.cached(), 2, "another station's sessions stay");
        sessions.forget_station("CP3");
        assert_eq!(sessions.cached(), 1);
        sessions.forget_station("CP2");
        assert_eq!(sessions.cached(), 0);
        // a dropped session is loaded again from the store when it goes on
        let done = sessions
            .apply("CP2", TxMessage::Event201(&ev[2]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.applied.effects, vec![Effect::Completed]);
    }

    #[tokio::test]
    async fn start_replays_get_the_same_id_and_a_stop_completes_once() {
        let store = temp_store("start").await;
        let sessions = Sessions::new(store.clone());
        let (start, meter, stop) = messages_16();
        let a = sessions
            .apply("CP", TxMessage::Start16(&start))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.tx_id_16, a.applied.effects.as_slice()),
            (Some(1), &[Effect::Opened][..])
        );
        let b = sessions
            .apply("CP", TxMessage::Start16(&start))
            .await
            .unwrap()
            .unwrap();
        assert!(b.applied.duplicate);
        assert_eq!(b.tx_id_16, Some(1));
        sessions
            .apply("CP", TxMessage::Meter16(&meter))
            .await
            .unwrap()
            .unwrap();
        assert!(
            sessions
                .apply("CP", TxMessage::Meter16(&meter))
                .await
                .unwrap()
                .unwrap()
                .applied
                .duplicate
        );
        let done = sessions
            .apply("CP", TxMessage::Stop16(&stop))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done.applied.effects, vec![Effect::Completed]);
        assert!(
            sessions
                .apply("CP", TxMessage::Stop16(&stop))
                .await
                .unwrap()
                .unwrap()
                .applied
                .duplicate
        );
        let s = store.session("CP:1").await.unwrap().unwrap();
        assert_eq!(
            (s.status.as_str(), s.energy_wh),
            ("Completed", rust_decimal::Decimal::from(500))
        );
        assert_eq!(
            store.outbox_pending(10).await.unwrap().len(),
            1,
            "billed once"
        );
        // a stop of a transaction this CSMS never started writes nothing
        let mut unknown = stop.clone();
        unknown.transaction_id = 999;
        assert!(sessions
            .apply("CP", TxMessage::Stop16(&unknown))
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn unphysical_registers_are_refused_and_nothing_is_kept() {
        use evproto_ocpp_types::from_str;
        let store = temp_store("range").await;
        let sessions = Sessions::new(store.clone());
        let start: v16::StartTransactionRequest = from_str(
            r#"{"connectorId":1,"idTag":"TAG","meterStart":-1,"timestamp":"2026-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        let before = snapshot(&store).await;
        assert!(matches!(
            sessions.apply("CP", TxMessage::Start16(&start)).await,
            Err(SessionError::OutOfRange { .. })
        ));
        let (start, _, _) = messages_16();
        sessions
            .apply("CP", TxMessage::Start16(&start))
            .await
            .unwrap();
        let huge: v16::MeterValuesRequest = from_str(
            r#"{"connectorId":1,"transactionId":1,"meterValue":[{"timestamp":"2026-01-01T00:30:00Z","sampledValue":[{"value":"1e26","unit":"kWh"}]}]}"#,
        )
        .unwrap();
        let after_start = snapshot(&store).await;
        assert_ne!(before, after_start);
        let r = sessions.apply("CP", TxMessage::Meter16(&huge)).await;
        assert!(matches!(r, Err(SessionError::OutOfRange { .. })), "{r:?}");
        assert_eq!(snapshot(&store).await, after_start, "nothing of it kept");
        // every later read of the session still works
        assert!(store.session("CP:1").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn transaction_events_in_any_order_and_duplicated() {
        let store = temp_store("events").await;
        let sessions = Sessions::new(store.clone());
        let ev = events_201();
        for i in [2, 1, 2, 0, 1] {
            sessions
                .apply("CP", TxMessage::Event201(&ev[i]))
                .await
                .unwrap();
        }
        let s = store.session("CP:T1").await.unwrap().unwrap();
        assert_eq!(
            (s.status.as_str(), s.energy_wh),
            ("Completed", rust_decimal::Decimal::from(2000))
        );
        assert_eq!(
            s.started_at.map(crate::store::ts).as_deref(),
            Some("2026-01-01T00:00:00.000Z")
        );
        assert_eq!(s.stop_reason.map(StopReason::as_wire), Some("Local"));
        assert_eq!(s.id_token.as_deref(), Some("TAG"));
        assert_eq!(store.outbox_pending(10).await.unwrap().len(), 1);
    }

    /// A session's row and its messages come in one read: none for a
    /// session not stored, the messages in the order received, and a row
    /// stored without messages (before they were kept) still found.
    #[tokio::test]
    async fn a_session_and_its_messages_are_read_together() {
        let store = temp_store("together").await;
        assert!(store
            .session_with_messages("CP:T1")
            .await
            .unwrap()
            .is_none());
        let sessions = Sessions::new(store.clone());
        let ev = events_201();
        for e in &ev[..2] {
            sessions.apply("CP", TxMessage::Event201(e)).await.unwrap();
        }
        let (s, messages) = store.session_with_messages("CP:T1").await.unwrap().unwrap();
        assert_eq!(Some(s), store.session("CP:T1").await.unwrap());
        assert_eq!(messages, store.tx_messages("CP:T1").await.unwrap());
        assert_eq!(messages.len(), 2);
        sqlx::query(
            "INSERT INTO sessions (id, station_id, ocpp_tx_id, status, started_at, energy_wh, updated_at) \
             VALUES ('CP:OLD', 'CP', 'OLD', 'Active', '2026-01-01T00:00:00.000Z', '0', '2026-01-01T00:00:00.000Z')",
        )
        .execute(store.pool())
        .await
        .unwrap();
        let (s, messages) = store
            .session_with_messages("CP:OLD")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.id, "CP:OLD");
        assert!(messages.is_empty());
    }

    /// A failure at any store call of a message leaves nothing of it; the
    /// station's retry then leaves everything, exactly as without the failure.
    #[tokio::test]
    async fn a_fault_at_any_store_call_keeps_all_or_nothing_of_a_message() {
        let (start, meter, stop) = messages_16();
        let ev = events_201();
        let msgs = [
            TxMessage::Start16(&start),
            TxMessage::Meter16(&meter),
            TxMessage::Stop16(&stop),
            TxMessage::Event201(&ev[0]),
            TxMessage::Event201(&ev[2]),
            TxMessage::Event201(&ev[1]),
        ];
        let mut injected = 0;
        for i in 0..msgs.len() {
            // the reference: the same messages without faults
            let reference = temp_store(&format!("ref{i}")).await;
            let reference_sessions = Sessions::new(reference.clone());
            for m in &msgs[..=i] {
                reference_sessions.apply("CP", *m).await.unwrap();
            }
            let want = snapshot(&reference).await;
            for n in 0.. {
                let store = temp_store(&format!("f{i}-{n}")).await;
                let sessions = Sessions::new(store.clone());
                for m in &msgs[..i] {
                    sessions.apply("CP", *m).await.unwrap();
                }
                let before = snapshot(&store).await;
                store.fail_after(Some(n));
                let r = sessions.apply("CP", msgs[i]).await;
                store.fail_after(None);
                if r.is_ok() {
                    assert_eq!(
                        snapshot(&store).await,
                        want,
                        "message {i}, no fault reached"
                    );
                    break;
                }
                injected += 1;
                assert_eq!(
                    snapshot(&store).await,
                    before,
                    "message {i}, fault at call {n}: nothing kept"
                );
                sessions.apply("CP", msgs[i]).await.unwrap();
                assert_eq!(
                    snapshot(&store).await,
                    want,
                    "message {i}, fault at call {n}: the retry keeps everything"
                );
            }
        }
        assert!(injected >= 20, "faults injected: {injected}");
    }

    /// The stuck-session rules on a virtual clock: a station that booted
    /// with a session open and says nothing of it gets it ended after the
    /// grace period (not before), priced up to its last meter value and
    /// billed once; the station's own late Stop queues no second bill.
    #[tokio::test]
    async fn a_suspect_ends_after_the_grace_period_and_bills_once() {
        let store = temp_store("grace").await;
        let sessions = Sessions::new(store.clone());
        let (start, meter, stop) = messages_16();
        sessions
            .apply("CP", TxMessage::Start16(&start))
            .await
            .unwrap();
        sessions
            .apply("CP", TxMessage::Meter16(&meter))
            .await
            .unwrap();
        let grace = recovery::Policy::default().grace;
        let boot = Utc::now() + chrono::Duration::seconds(1);
        // no boot yet: time alone ends nothing
        assert!(sessions
            .tick("CP", Protocol::V16, boot + grace)
            .await
            .unwrap()
            .closed
            .is_empty());
        sessions.booted("CP", boot).await.unwrap();
        let just_before = boot + grace - chrono::Duration::seconds(1);
        assert!(sessions
            .tick("CP", Protocol::V16, just_before)
            .await
            .unwrap()
            .closed
            .is_empty());
        assert_eq!(
            store.session("CP:1").await.unwrap().unwrap().status,
            crate::store::SessionStatus::Active
        );
        let closed = sessions
            .tick("CP", Protocol::V16, boot + grace)
            .await
            .unwrap();
        assert_eq!(closed.closed, vec!["CP:1".to_owned()]);
        assert!(closed.ask.is_empty(), "1.6 has no GetTransactionStatus");
        let s = store.session("CP:1").await.unwrap().unwrap();
        assert_eq!(
            (
                s.status.as_str(),
                s.stop_reason.map(StopReason::as_wire),
                s.energy_wh
            ),
            (
                "Completed",
                Some("Reboot"),
                rust_decimal::Decimal::from(250)
            )
        );
        assert_eq!(
            s.stopped_at.map(crate::store::ts).as_deref(),
            Some("2026-01-01T00:30:00.000Z")
        );
        let c = sessions.closed("CP:1").await.unwrap().unwrap();
        assert_eq!(c.by, Closer::Recovery);
        assert_eq!(store.outbox_pending(10).await.unwrap().len(), 1, "one bill");
        assert!(sessions
            .tick("CP", Protocol::V16, boot + grace * 2)
            .await
            .unwrap()
            .closed
            .is_empty());
        assert!(matches!(
            sessions
                .close("CP:1", Closer::Operator, StopReason::Other, "again")
                .await,
            Err(CloseError::Completed(_))
        ));
        // the station's own Stop, late: its figures, no second bill
        let out = sessions
            .apply("CP", TxMessage::Stop16(&stop))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(out.applied.effects, vec![Effect::AmendedAfterCompletion]);
        let s = store.session("CP:1").await.unwrap().unwrap();
        assert_eq!(
            (s.stop_reason.map(StopReason::as_wire), s.energy_wh),
            (Some("Local"), rust_decimal::Decimal::from(500))
        );
        assert_eq!(
            store.outbox_pending(10).await.unwrap().len(),
            1,
            "still one bill"
        );
        // loaded again from the store (close and Stop in it): the same session
        sessions.forget_station("CP");
        let again = sessions
            .apply("CP", TxMessage::Stop16(&stop))
            .await
            .unwrap()
            .unwrap();
        assert!(again.applied.duplicate);
        assert!(matches!(
            sessions
                .close("NOPE:1", Closer::Operator, StopReason::Other, "x")
                .await,
            Err(CloseError::Unknown(_))
        ));
    }

    /// E14 on a virtual clock: a 2.x suspect is not ended at the grace
    /// period but asked about; while the station holds its messages it
    /// stays open (asked again a grace period later), and it is ended once
    /// the station has nothing queued or does not answer; an `ongoing`
    /// transaction is left to the station.
    #[tokio::test]
    async fn a_2x_suspect_is_asked_about_and_kept_while_its_messages_are_queued() {
        let store = temp_store("e14").await;
        let sessions = Sessions::new(store.clone());
        let events = events_201();
        for e in &events[..2] {
            sessions.apply("CP", TxMessage::Event201(e)).await.unwrap();
        }
        let grace = recovery::Policy::default().grace;
        let boot = Utc::now() + chrono::Duration::seconds(1);
        sessions.booted("CP", boot).await.unwrap();
        let ask = StatusAsk {
            session: "CP:T1".into(),
            transaction_id: "T1".into(),
        };
        let first = sessions
            .tick("CP", Protocol::V2x, boot + grace)
            .await
            .unwrap();
        assert_eq!(
            first,
            Recovered {
                closed: Vec::new(),
                ask: vec![ask.clone()]
            }
        );
        // asked, not answered yet: an Available asks nothing more, ends nothing
        let at = EvseRef {
            evse_id: 1,
            connector_id: Some(1),
        };
        let again = sessions
            .available("CP", Protocol::V2x, at, None, boot + grace)
            .await
            .unwrap();
        assert_eq!(again, Recovered::default());
        let queued = TxStatus {
            messages_in_queue: true,
            ongoing: Some(false),
        };
        let t1 = boot + grace;
        assert_eq!(
            sessions
                .status_answered("CP", &ask, Some(queued), t1)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store.session("CP:T1").await.unwrap().unwrap().status,
            crate::store::SessionStatus::Active
        );
        let later = t1 + grace - chrono::Duration::seconds(1);
        assert_eq!(
            sessions.tick("CP", Protocol::V2x, later).await.unwrap(),
            Recovered::default(),
            "the queue has its grace period"
        );
        let asked_again = sessions
            .tick("CP", Protocol::V2x, t1 + grace)
            .await
            .unwrap();
        assert_eq!(asked_again.ask, vec![ask.clone()]);
        // no answer now (a CALLERROR, a timeout): ended as the rules say
        assert_eq!(
            sessions
                .status_answered("CP", &ask, None, t1 + grace)
                .await
                .unwrap(),
            Some("CP:T1".to_owned())
        );
        let s = store.session("CP:T1").await.unwrap().unwrap();
        assert_eq!(
            (s.status.as_str(), s.stop_reason.map(StopReason::as_wire)),
            ("Completed", Some("Reboot"))
        );
        assert_eq!(
            sessions.closed("CP:T1").await.unwrap().unwrap().by,
            Closer::Recovery
        );
        assert_eq!(store.outbox_pending(10).await.unwrap().len(), 1, "one bill");
        // a late answer for it changes nothing
        assert_eq!(
            sessions
                .status_answered("CP", &ask, None, t1 + grace)
                .await
                .unwrap(),
            None
        );

        // another transaction the station says is ongoing: left to it
        let mut e: v201::TransactionEventRequest = events[0].clone();
        e.transaction_info.transaction_id = "T2".parse().unwrap();
        sessions.apply("CP", TxMessage::Event201(&e)).await.unwrap();
        let boot2 = Utc::now() + chrono::Duration::seconds(1);
        sessions.booted("CP", boot2).await.unwrap();
        let ask2 = StatusAsk {
            session: "CP:T2".into(),
            transaction_id: "T2".into(),
        };
        let asked = sessions
            .available("CP", Protocol::V2x, at, None, boot2)
            .await
            .unwrap();
        assert_eq!(asked.ask, vec![ask2.clone()]);
        let ongoing = TxStatus {
            messages_in_queue: false,
            ongoing: Some(true),
        };
        assert_eq!(
            sessions
                .status_answered("CP", &ask2, Some(ongoing), boot2)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            sessions
                .tick("CP", Protocol::V2x, boot2 + grace * 10)
                .await
                .unwrap(),
            Recovered::default()
        );
        assert_eq!(
            store.session("CP:T2").await.unwrap().unwrap().status,
            crate::store::SessionStatus::Active
        );
        // its next boot asks again; nothing queued, not ongoing: ended
        let boot3 = boot2 + grace * 11;
        sessions.booted("CP", boot3).await.unwrap();
        let asked = sessions
            .available("CP", Protocol::V2x, at, None, boot3)
            .await
            .unwrap();
        assert_eq!(asked.ask, vec![ask2.clone()]);
        let nothing = TxStatus {
            messages_in_queue: false,
            ongoing: Some(false),
        };
        assert_eq!(
            sessions
                .status_answered("CP", &ask2, Some(nothing), boot3)
                .await
                .unwrap(),
            Some("CP:T2".to_owned())
        );
    }

    #[test]
    fn stored_kinds_read_back() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("1.6/Heartbeat"), None);
    }

    #[test]
    fn keys_and_samples_of_typed_messages() {
        let mv: v16::MeterValuesRequest = evproto_ocpp_types::from_str(
            r#"{"connectorId":1,"transactionId":4,"meterValue":[{"timestamp":"2026-01-01T00:00:00Z","sampledValue":[{"value":"10","unit":"kWh"},{"value":"230.1","measurand":"Voltage","phase":"L1"}]}]}"#,
        )
        .unwrap();
        let m = TxMessage::Meter16(&mv);
        let p = m.payload();
        assert!(m.key(&p).starts_with("meter:"));
        assert_eq!(m.key(&p), m.key(&p));
        let s = m.samples();
        assert_eq!(s[0].1, "Energy.Active.Import.Register");
        assert_eq!(s[0].3.as_deref(), Some("kWh"));
        assert_eq!(s[1].1, "Voltage.L1");
        assert_eq!(Kind::Meter16.decode(&p), Some(m.event()));
        let ev: v201::TransactionEventRequest = evproto_ocpp_types::from_str(
            r#"{"eventType":"Started","seqNo":3,"timestamp":"2026-01-01T00:00:00Z","triggerReason":"Authorized","transactionInfo":{"transactionId":"T1"}}"#,
        )
        .unwrap();
        let m = TxMessage::Event201(&ev);
        assert_eq!(m.key(&m.payload()), "seq:3");
        assert_eq!(Kind::Event201.decode(&m.payload()), Some(m.event()));
    }
}
