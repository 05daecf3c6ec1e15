//! Sans-IO building blocks of a CSMS (charging station management system),
//! for vendors building their own on the evproto crates and used by the
//! workspace's reference CSMS:
//!
//! - [`transaction`]: one model of a charging transaction for OCPP 1.6
//!   (`StartTransaction`/`MeterValues`/`StopTransaction`) and 2.0.1/2.1
//!   (`TransactionEvent`): duplicates answered as the first time, events in
//!   any order giving the same session, meter resets and jumps, a missing
//!   `Started` reconstructed;
//! - [`authorization`]: id-token decisions (status, expiry, groups, master
//!   pass, concurrent transactions, who may stop, cache expiry) in every
//!   version's answer type, and local authorization list versions
//!   (full/differential);
//! - [`connector`]: EVSE and connector status (1.6 connector 0, 2.x
//!   EVSE + connector; Faulted/Unavailable/Occupied/Reserved precedence,
//!   operator availability, reservations, status after reboot);
//! - [`limits`]: charging limits: one charging-profile model for every
//!   version, the composite schedule of an EVSE (stack levels, purposes,
//!   validity, recurrency, A/W), and a site allocator splitting a site limit
//!   fairly over active sessions into the `TxProfile`s to send;
//! - [`recovery`]: when the CSMS ends a transaction the station will not
//!   end (a station that rebooted and forgot it, per version), so no
//!   session stays open forever;
//! - [`money`]: amounts in a currency's minor units and the one rounding
//!   rule (exact pricing, CDR prices to 4 decimals, the charged total to the
//!   minor unit, half away from zero);
//! - [`token`]: id tokens of every version in one type;
//! - [`planner`]: a site's charging plan over the next hours: needs met
//!   before departure at the lowest price the limits allow, priorities, and
//!   V2X discharge where the price spread pays for the cycle;
//! - [`health`]: predictive maintenance: a health score per connector from
//!   faults, failed starts, aborts, station reboots and temperature, with a
//!   change detector that alerts before a connector goes out of service.
//!
//! # What this crate does not do
//!
//! No I/O, no clock, no storage, no async: events go in (built with `From`
//! from the typed messages of `evproto-ocpp-types`), decisions and effects
//! come out, the time is the events' own. Persisting a model, answering the
//! station and acting on effects (billing, pushes) are the application's.
//!
//! # Example
//!
//! ```
//! use evproto_csms_core::transaction::{Register, Status, Transaction, TxEvent};
//! use evproto_ocpp_types::v201;
//!
//! let started: v201::TransactionEventRequest = serde_json::from_str(r#"{
//!     "eventType": "Started", "timestamp": "2026-01-01T10:00:00Z", "triggerReason": "Authorized",
//!     "seqNo": 0, "transactionInfo": {"transactionId": "T-1"}, "evse": {"id": 1, "connectorId": 1},
//!     "idToken": {"idToken": "04A1B2", "type": "ISO14443"},
//!     "meterValue": [{"timestamp": "2026-01-01T10:00:00Z",
//!         "sampledValue": [{"value": 12.5, "context": "Transaction.Begin", "unitOfMeasure": {"unit": "kWh"}}]}]
//! }"#)?;
//! let ended: v201::TransactionEventRequest = serde_json::from_str(r#"{
//!     "eventType": "Ended", "timestamp": "2026-01-01T11:00:00Z", "triggerReason": "EVCommunicationLost",
//!     "seqNo": 1, "transactionInfo": {"transactionId": "T-1", "stoppedReason": "EVDisconnected"},
//!     "meterValue": [{"timestamp": "2026-01-01T11:00:00Z",
//!         "sampledValue": [{"value": 19.25, "context": "Transaction.End", "unitOfMeasure": {"unit": "kWh"}}]}]
//! }"#)?;
//!
//! let mut tx = Transaction::default();
//! tx.apply(&TxEvent::from(&started));
//! tx.apply(&TxEvent::from(&ended));
//! assert!(tx.apply(&TxEvent::from(&ended)).duplicate); // a retry changes nothing
//! let s = tx.summary();
//! assert_eq!(s.status, Status::Completed);
//! assert_eq!(s.energy_wh(Register::Import), rust_decimal::Decimal::from(6750));
//! # Ok::<(), serde_json::Error>(())
//! ```

pub mod authorization;
pub mod connector;
pub mod health;
pub mod limits;
pub mod money;
pub mod planner;
pub mod recovery;
pub mod token;
pub mod transaction;

/// The README's examples compile and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
