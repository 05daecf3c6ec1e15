//! Sessions that cannot get stuck: when the CSMS ends a transaction the
//! station will not end itself.
//!
//! A station that crashes, loses power or is reset mid-transaction comes
//! back with a `BootNotification`. What it then does about the transactions
//! it had open differs per version, and the CSMS must not end a transaction
//! the station will still end from its offline queue:
//!
//! - **OCPP 1.6.** A transaction ends only with `StopTransaction` (§4.8);
//!   transaction-related messages are queued while offline and delivered
//!   in order after reconnecting, and a station that kept its transaction
//!   over a reboot sends its `StopTransaction` with reason `PowerLoss` or
//!   `Reboot` (the `Reason` values for exactly that). But a station that
//!   lost its transaction with its memory never does; after its boot
//!   (§4.2) it reports every connector's status (§4.9), and a connector
//!   `Available` has no transaction on it (`ChargePointStatus` `Available`:
//!   available for a new user; a connector in a transaction is `Charging`,
//!   `SuspendedEV(SE)` or `Finishing`). So in 1.6 an `Available`
//!   on a connector ends the transaction the CSMS still holds open there,
//!   with a boot or without one (a station that dropped its transaction
//!   without a reboot, e.g. a firmware bug, says the same thing).
//! - **OCPP 2.0.1 / 2.1.** Transactions are not tied to the connector's
//!   status: with `TxStartPoint` `Authorized` (E01, E03) a transaction is
//!   open while the connector is still `Available` (the cable not plugged
//!   in yet), and `TxStopPoint` decides when it ends (E06). A station that
//!   rebooted either resumes its transaction (2.1 `TxResumptionTimeout`)
//!   or ends it with `TransactionEvent` `Ended`, `stoppedReason` `PowerLoss`
//!   / `Reboot` and the like, possibly much later from its offline queue
//!   (E04, `offline = true`). Either way it sends a `TransactionEvent` for
//!   that transaction after its boot. So in 2.x `Available` without a boot
//!   ends nothing; after a boot it ends a transaction the station has said
//!   nothing about since (a *suspect*).
//!
//! # Rules
//!
//! A session is **suspect** when its station booted after the last message
//! of the transaction was received ([`Open::suspect`]): the station may have
//! lost it. A message of the transaction received after the boot clears
//! that (the station knows it: it will end it itself).
//!
//! 1. [`Signal::Available`] on the session's connector (1.6: the connector;
//!    2.x: the EVSE, and the connector when the session names one) ends
//!    - in 1.6: the session, with `Reboot` when it is suspect, else `Other`
//!      (the CSMS does not know why the station dropped it: it does not
//!      claim `EVDisconnected`);
//!    - in 2.x: a suspect session, with `Reboot`; nothing else.
//!
//!    A report whose own timestamp (the station's clock) is before the
//!    session started is an old one from a queue and ends nothing.
//! 2. [`Signal::Tick`]: a suspect session the station has said nothing of
//!    for [`Policy::grace`] after its boot ends with `Reboot` (the station
//!    is back and has delivered its queue; it has forgotten the
//!    transaction).
//! 3. Ending is the CSMS's `Ended` ([`crate::transaction::Transaction::closing`]),
//!    priced up to the last meter value received. A station's own `Ended`
//!    arriving later wins in the transaction model (its figures replace the
//!    CSMS's, the session is billed once), so closing too early costs no
//!    money; it is corrected before settlement if settlement has not run.
//!
//! 4. **2.x asks first (E14).** Before ending a 2.x session by rule 1 or 2
//!    the CSMS asks the station `GetTransactionStatus` for it
//!    ([`Inquiry`]): while the station answers `messagesInQueue: true` the
//!    session stays open (its queued `Ended` is on the way; asked again
//!    every [`Policy::grace`] while the rules still say end);
//!    `ongoingIndicator: true` with nothing queued leaves it to the station
//!    (it resumed the transaction) until its next boot; nothing queued and
//!    not ongoing, or no answer (a CALLERROR such as `NotImplemented`, a
//!    timeout, the station gone), ends it as the rules said. 1.6 has no
//!    such message: it ends at once.
//!
//! The rules read no clock: times are the CSMS's receipt times (and, for
//! the stale-report check, the station's own timestamps), given with each
//! input. They depend on the latest boot and the latest message only, so
//! the inputs may be learnt in any order.

use chrono::{DateTime, Duration, Utc};

use crate::transaction::{EvseRef, StopReason};

/// Which rules apply: 1.6 ties transactions to connector status, 2.x does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// OCPP 1.6.
    V16,
    /// OCPP 2.0.1 and 2.1.
    V2x,
}

/// How long a station that booted has to speak of a transaction before the
/// CSMS ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Default 15 minutes: far longer than a station takes to deliver its
    /// queue after a boot, short enough that a driver is not charged for a
    /// night of idle time (the price stops at the last meter value anyway).
    pub grace: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            grace: Duration::minutes(15),
        }
    }
}

/// An open session as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    /// Where it takes place (1.6: the connector as EVSE, no connector).
    pub evse: Option<EvseRef>,
    /// When it started (the station's clock).
    pub started_at: Option<DateTime<Utc>>,
    /// When the CSMS received its latest message (the CSMS's clock).
    pub last_message_at: DateTime<Utc>,
    /// When the CSMS received the station's latest BootNotification.
    pub last_boot_at: Option<DateTime<Utc>>,
}

impl Open {
    /// The station booted after the transaction's latest message.
    pub fn suspect(&self) -> bool {
        self.last_boot_at.is_some_and(|b| b >= self.last_message_at)
    }
}

/// What the CSMS learnt about a station.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A StatusNotification `Available`.
    Available {
        /// 1.6: the connector (as `evse_id`, no connector); 2.x: EVSE and connector.
        at: EvseRef,
        /// The report's own timestamp (the station's clock), when it has one.
        timestamp: Option<DateTime<Utc>>,
    },
    /// Time passed: `now` on the CSMS's clock.
    Tick {
        /// Now.
        now: DateTime<Utc>,
    },
}

/// Whether the CSMS ends `session` on `signal`, and why (`None`: it stays
/// open). See the [module docs](self) for the rules.
pub fn decide(
    protocol: Protocol,
    policy: &Policy,
    session: &Open,
    signal: &Signal,
) -> Option<StopReason> {
    let suspect = session.suspect();
    match *signal {
        Signal::Available { at, timestamp } => {
            let evse = session.evse?;
            let here = evse.evse_id == at.evse_id
                && match (evse.connector_id, at.connector_id) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                };
            let stale = matches!((timestamp, session.started_at), (Some(t), Some(s)) if t < s);
            if !here || stale {
                return None;
            }
            match (protocol, suspect) {
                (_, true) => Some(StopReason::Reboot),
                (Protocol::V16, false) => Some(StopReason::Other),
                (Protocol::V2x, false) => None,
            }
        }
        Signal::Tick { now } => {
            let boot = session.last_boot_at.filter(|_| suspect)?;
            (now - boot >= policy.grace).then_some(StopReason::Reboot)
        }
    }
}

/// What a station answered to `GetTransactionStatus` for one transaction
/// (2.0.1/2.1 E14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxStatus {
    /// `messagesInQueue`: it still holds messages of the transaction.
    pub messages_in_queue: bool,
    /// `ongoingIndicator`: the transaction is still ongoing (absent: not said).
    pub ongoing: Option<bool>,
}

/// What the CSMS does about a 2.x suspect the rules would end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send `GetTransactionStatus` for it, then give the answer to
    /// [`Inquiry::answered`].
    Ask,
    /// End it with this reason.
    End(StopReason),
    /// Leave it open for now.
    Keep,
}

/// The CSMS's inquiry about one 2.x suspect before it ends it (rule 4 in
/// the [module docs](self)): a state machine fed the rules' decisions
/// ([`Inquiry::wants_end`]) and the station's answers
/// ([`Inquiry::answered`]), time passed in. A new inquiry starts with each
/// boot of the station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Inquiry {
    /// Nothing asked yet.
    #[default]
    Idle,
    /// `GetTransactionStatus` sent at `at`, no answer yet; `stop` is what
    /// the rules said.
    Asked {
        /// When it was sent.
        at: DateTime<Utc>,
        /// The reason the session ends with if the answer says so.
        stop: StopReason,
    },
    /// The station holds messages of the transaction (answered at `at`):
    /// the session stays open until they arrive.
    Queued {
        /// When the station said so.
        at: DateTime<Utc>,
    },
    /// The station has the transaction ongoing and nothing queued: it will
    /// end it itself.
    Ongoing,
}

impl Inquiry {
    /// The rules ([`decide`]) say end the session with `stop` at `now`.
    pub fn wants_end(&mut self, policy: &Policy, stop: StopReason, now: DateTime<Utc>) -> Step {
        match *self {
            Inquiry::Idle => {
                *self = Inquiry::Asked { at: now, stop };
                Step::Ask
            }
            Inquiry::Queued { at } if now - at >= policy.grace => {
                // the queue has had its time: has it been delivered?
                *self = Inquiry::Asked { at: now, stop };
                Step::Ask
            }
            Inquiry::Asked { .. } | Inquiry::Queued { .. } | Inquiry::Ongoing => Step::Keep,
        }
    }

    /// The station's answer at `now` to the `GetTransactionStatus` asked
    /// ([`Step::Ask`]); `None`: no answer (a CALLERROR, a timeout, not
    /// connected). An answer nothing was asked for changes nothing.
    pub fn answered(&mut self, answer: Option<TxStatus>, now: DateTime<Utc>) -> Step {
        let Inquiry::Asked { stop, .. } = *self else {
            return Step::Keep;
        };
        match answer {
            Some(TxStatus {
                messages_in_queue: true,
                ..
            }) => {
                *self = Inquiry::Queued { at: now };
                Step::Keep
            }
            Some(TxStatus {
                ongoing: Some(true),
                ..
            }) => {
                *self = Inquiry::Ongoing;
                Step::Keep
            }
            Some(_) | None => {
                *self = Inquiry::Idle;
                Step::End(stop)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap() + Duration::minutes(min)
    }

    fn evse(e: u32, c: Option<u32>) -> EvseRef {
        EvseRef {
            evse_id: e,
            connector_id: c,
        }
    }

    fn open(last_message: i64, boot: Option<i64>) -> Open {
        Open {
            evse: Some(evse(1, Some(1))),
            started_at: Some(t(0)),
            last_message_at: t(last_message),
            last_boot_at: boot.map(t),
        }
    }

    fn available(e: u32, c: Option<u32>) -> Signal {
        Signal::Available {
            at: evse(e, c),
            timestamp: None,
        }
    }

    const P: Policy = Policy {
        grace: Duration::minutes(15),
    };

    #[test]
    fn v16_available_ends_the_connector_s_session_with_or_without_a_boot() {
        let mut s = open(10, Some(20));
        s.evse = Some(evse(1, None));
        let a = available(1, None);
        assert_eq!(decide(Protocol::V16, &P, &s, &a), Some(StopReason::Reboot));
        s.last_boot_at = None;
        assert_eq!(decide(Protocol::V16, &P, &s, &a), Some(StopReason::Other));
        // another connector
        assert_eq!(decide(Protocol::V16, &P, &s, &available(2, None)), None);
    }

    #[test]
    fn v2x_available_ends_only_a_session_the_station_said_nothing_of_since_its_boot() {
        let a = available(1, Some(1));
        assert_eq!(
            decide(Protocol::V2x, &P, &open(10, Some(20)), &a),
            Some(StopReason::Reboot)
        );
        // no boot: TxStartPoint Authorized keeps a transaction on an Available connector
        assert_eq!(decide(Protocol::V2x, &P, &open(10, None), &a), None);
        // a message after the boot: the station knows the transaction and will end it
        assert_eq!(decide(Protocol::V2x, &P, &open(30, Some(20)), &a), None);
        // another connector of the EVSE, another EVSE
        assert_eq!(
            decide(
                Protocol::V2x,
                &P,
                &open(10, Some(20)),
                &available(1, Some(2))
            ),
            None
        );
        assert_eq!(
            decide(
                Protocol::V2x,
                &P,
                &open(10, Some(20)),
                &available(2, Some(1))
            ),
            None
        );
        // the EVSE without a connector named: the whole EVSE
        assert_eq!(
            decide(Protocol::V2x, &P, &open(10, Some(20)), &available(1, None)),
            Some(StopReason::Reboot)
        );
    }

    #[test]
    fn an_old_report_from_a_queue_ends_nothing() {
        let s = open(10, Some(20));
        let old = Signal::Available {
            at: evse(1, Some(1)),
            timestamp: Some(t(-1)),
        };
        assert_eq!(decide(Protocol::V16, &P, &s, &old), None);
        assert_eq!(decide(Protocol::V2x, &P, &s, &old), None);
    }

    #[test]
    fn a_suspect_ends_after_the_grace_period_from_the_boot() {
        let s = open(10, Some(20));
        let tick = |m| Signal::Tick { now: t(m) };
        for p in [Protocol::V16, Protocol::V2x] {
            assert_eq!(decide(p, &P, &s, &tick(34)), None);
            assert_eq!(decide(p, &P, &s, &tick(35)), Some(StopReason::Reboot));
            // not suspect: never by time
            assert_eq!(decide(p, &P, &open(21, Some(20)), &tick(10_000)), None);
            assert_eq!(decide(p, &P, &open(10, None), &tick(10_000)), None);
        }
    }

    fn status(queued: bool, ongoing: Option<bool>) -> Option<TxStatus> {
        Some(TxStatus {
            messages_in_queue: queued,
            ongoing,
        })
    }

    #[test]
    fn v2x_asks_then_keeps_the_session_while_messages_are_queued() {
        let mut q = Inquiry::default();
        assert_eq!(q.wants_end(&P, StopReason::Reboot, t(0)), Step::Ask);
        // asked, no answer yet: no second question
        assert_eq!(q.wants_end(&P, StopReason::Reboot, t(1)), Step::Keep);
        assert_eq!(q.answered(status(true, Some(false)), t(1)), Step::Keep);
        assert_eq!(q, Inquiry::Queued { at: t(1) });
        // the queue has its grace period before the CSMS asks again
        assert_eq!(q.wants_end(&P, StopReason::Reboot, t(15)), Step::Keep);
        assert_eq!(q.wants_end(&P, StopReason::Reboot, t(16)), Step::Ask);
        assert_eq!(q.answered(status(true, None), t(16)), Step::Keep);
        assert_eq!(q.wants_end(&P, StopReason::Reboot, t(31)), Step::Ask);
        // delivered now, and not ongoing: the rules' end
        assert_eq!(
            q.answered(status(false, Some(false)), t(31)),
            Step::End(StopReason::Reboot)
        );
    }

    #[test]
    fn v2x_ends_when_nothing_is_queued_or_nothing_is_answered() {
        for answer in [status(false, Some(false)), status(false, None), None] {
            let mut q = Inquiry::default();
            assert_eq!(q.wants_end(&P, StopReason::Reboot, t(0)), Step::Ask);
            assert_eq!(q.answered(answer, t(0)), Step::End(StopReason::Reboot));
        }
    }

    #[test]
    fn v2x_leaves_an_ongoing_transaction_to_the_station() {
        let mut q = Inquiry::default();
        q.wants_end(&P, StopReason::Reboot, t(0));
        assert_eq!(q.answered(status(false, Some(true)), t(0)), Step::Keep);
        assert_eq!(q.wants_end(&P, StopReason::Reboot, t(10_000)), Step::Keep);
        // an answer nothing was asked for changes nothing
        assert_eq!(q.answered(None, t(10_000)), Step::Keep);
        assert_eq!(q, Inquiry::Ongoing);
        let mut idle = Inquiry::default();
        assert_eq!(idle.answered(None, t(0)), Step::Keep);
        assert_eq!(idle, Inquiry::Idle);
    }

    /// What the CSMS learns, in the order it happens to learn it.
    #[derive(Debug, Clone, Copy)]
    enum Learnt {
        Boot(i64),
        Message(i64),
    }

    /// The session as known after learning `facts` in this order (latest
    /// boot, latest message: what the store keeps).
    fn fold(facts: &[Learnt]) -> Open {
        let mut s = open(0, None);
        for f in facts {
            match *f {
                Learnt::Boot(m) => s.last_boot_at = s.last_boot_at.max(Some(t(m))),
                Learnt::Message(m) => s.last_message_at = s.last_message_at.max(t(m)),
            }
        }
        s
    }

    use proptest::prelude::*;

    fn facts() -> impl Strategy<Value = Vec<Learnt>> {
        prop::collection::vec(
            prop_oneof![
                (0i64..100).prop_map(Learnt::Boot),
                (0i64..100).prop_map(Learnt::Message)
            ],
            0..8,
        )
    }

    proptest! {
        /// Boots and messages learnt in any order give the same decision, at
        /// any time and on any report; a decision to end is never taken back
        /// by time passing; 2.x never ends a session the station spoke of
        /// since its boot, 1.6 only on an Available of its connector.
        #[test]
        fn any_order_same_decision_monotone_in_time(
            facts in facts(),
            perm in any::<prop::sample::Index>(),
            now in 0i64..200,
            later in 0i64..200,
            connector in 1u32..3,
        ) {
            let mut shuffled = facts.clone();
            let n = shuffled.len();
            if n > 1 {
                let k = perm.index(n);
                shuffled.rotate_left(k);
                shuffled.swap(0, n - 1);
            }
            let (a, b) = (fold(&facts), fold(&shuffled));
            let signals = [
                Signal::Tick { now: t(now) },
                Signal::Tick { now: t(now + later) },
                available(1, Some(connector)),
            ];
            for p in [Protocol::V16, Protocol::V2x] {
                for sig in &signals {
                    prop_assert_eq!(decide(p, &P, &a, sig), decide(p, &P, &b, sig));
                    let d = decide(p, &P, &a, sig);
                    if !a.suspect() {
                        let v16_available = p == Protocol::V16 && matches!(sig, Signal::Available { .. });
                        prop_assert!(d.is_none() || v16_available, "{:?} {:?} {:?}", p, a, sig);
                    }
                }
                if decide(p, &P, &a, &signals[0]).is_some() {
                    prop_assert!(decide(p, &P, &a, &signals[1]).is_some());
                }
            }
        }
    }
}
