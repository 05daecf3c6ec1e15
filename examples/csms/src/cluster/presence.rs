//! The presence rules, without I/O: which node holds which station's
//! connection, and what a node does about it.
//!
//! The registry is a key-value bucket (identity → [`Entry`]) whose writes
//! are numbered by the store (the revision, increasing over the whole
//! bucket). A node that accepts a station's connection claims its entry
//! (node, epoch + 1), writing only over the revision it read, so of two
//! claims the later one has the higher revision. A node that holds a
//! connection and sees another node's write of that identity at a higher
//! revision than its own closes its connection: the station connected
//! elsewhere after it, exactly as one server replaces an identity's old
//! connection. The owner renews its entry before the bucket's age limit
//! drops it and deletes it when the connection ends, only if it is still
//! the revision it wrote.
//!
//! [`Presence::handle`] takes one [`Input`] with the time and returns the
//! [`Decision`]s; the shell (`cluster::run`) does them and feeds their
//! outcomes back as inputs.

use std::collections::HashMap;
use std::time::Duration;

use evproto_ocpp_proto::ProtocolVersion;
use serde::{Deserialize, Serialize};

/// What the registry says about one identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The node holding its connection.
    pub node: String,
    /// Its connections since the entry was created (each claim adds one).
    pub epoch: u64,
    /// The version it is connected with.
    #[serde(with = "subprotocol")]
    pub version: ProtocolVersion,
}

/// The version as its WebSocket subprotocol (`ocpp2.0.1`).
mod subprotocol {
    use evproto_ocpp_proto::ProtocolVersion;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &ProtocolVersion, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.subprotocol())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<ProtocolVersion, D::Error> {
        let s = <&str>::deserialize(d)?;
        ProtocolVersion::from_subprotocol(s)
            .ok_or_else(|| serde::de::Error::custom(format!("no OCPP version {s}")))
    }
}

/// What happened, for [`Presence::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A station connected here.
    Connected {
        /// Identity.
        station: String,
        /// Its version.
        version: ProtocolVersion,
    },
    /// A connection of a station here ended; `still_here` when a newer one
    /// of the same identity is still open here (a local replacement).
    Disconnected {
        /// Identity.
        station: String,
        /// Another connection of it is open here.
        still_here: bool,
    },
    /// A [`Decision::Claim`] was written.
    Claimed {
        /// Identity.
        station: String,
        /// The epoch written.
        epoch: u64,
        /// Its revision.
        revision: u64,
    },
    /// A [`Decision::Claim`] failed (the registry is unreachable): tried
    /// again at the next tick.
    ClaimFailed {
        /// Identity.
        station: String,
    },
    /// A [`Decision::Renew`] was written.
    Renewed {
        /// Identity.
        station: String,
        /// Its new revision.
        revision: u64,
    },
    /// A [`Decision::Renew`] failed; the entry found instead, if the write
    /// was refused because it changed, comes as [`Input::Seen`] or
    /// [`Input::Gone`].
    RenewFailed {
        /// Identity.
        station: String,
    },
    /// The registry's entry of a station as written (`None`: deleted) at
    /// `revision`, from its watch or read after a refused renewal.
    Seen {
        /// Identity.
        station: String,
        /// The entry, `None` when it was deleted.
        entry: Option<Entry>,
        /// The write's revision.
        revision: u64,
    },
    /// A station's entry is not there (expired while unreachable).
    Gone {
        /// Identity.
        station: String,
    },
    /// Time passed: renew what is due, retry failed claims.
    Tick,
}

/// What the shell does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Write the station's entry naming this node: read it, write the next
    /// epoch over the revision read (create it when absent), again on a
    /// conflict; answer [`Input::Claimed`] or [`Input::ClaimFailed`].
    Claim {
        /// Identity.
        station: String,
        /// Its version.
        version: ProtocolVersion,
    },
    /// Write `entry` again over `revision`; answer [`Input::Renewed`] or
    /// [`Input::RenewFailed`] (and on a conflict what is there now).
    Renew {
        /// Identity.
        station: String,
        /// What to write.
        entry: Entry,
        /// The revision it must still be at.
        revision: u64,
    },
    /// Close this node's connection of the station: it connected elsewhere
    /// later.
    Close {
        /// Identity.
        station: String,
    },
    /// Delete the station's entry if it is still at `revision`.
    Delete {
        /// Identity.
        station: String,
        /// The revision this node wrote.
        revision: u64,
    },
}

#[derive(Debug)]
enum Hold {
    /// Connected here, the entry being written (`pending`) or to be written
    /// again at the next tick; `newer_elsewhere`: the highest revision
    /// another node wrote meanwhile.
    Claiming {
        version: ProtocolVersion,
        pending: bool,
        newer_elsewhere: u64,
    },
    /// Connected here and the entry is this node's at `revision`.
    Holding {
        version: ProtocolVersion,
        epoch: u64,
        revision: u64,
        renewed_at: Duration,
        renewing: bool,
    },
}

/// One node's presence state: the stations connected here and their
/// entries.
#[derive(Debug)]
pub struct Presence {
    node: String,
    renew_every: Duration,
    held: HashMap<String, Hold>,
}

impl Presence {
    /// The rules of node `node`, renewing its entries every `renew_every`
    /// (a third of the bucket's age limit).
    pub fn new(node: impl Into<String>, renew_every: Duration) -> Presence {
        Presence {
            node: node.into(),
            renew_every,
            held: HashMap::new(),
        }
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Stations connected here.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// No station is connected here.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Applies `input` at `now` (time since the shell started).
    pub fn handle(&mut self, now: Duration, input: Input) -> Vec<Decision> {
        match input {
            Input::Connected { station, version } => self.connected(station, version),
            Input::Disconnected {
                station,
                still_here,
            } => {
                if still_here {
                    return Vec::new();
                }
                match self.held.remove(&station) {
                    Some(Hold::Holding { revision, .. }) => {
                        vec![Decision::Delete { station, revision }]
                    }
                    // a claim in flight is deleted when it lands
                    _ => Vec::new(),
                }
            }
            Input::Claimed {
                station,
                epoch,
                revision,
            } => self.claimed(now, station, epoch, revision),
            Input::ClaimFailed { station } => {
                if let Some(Hold::Claiming { pending, .. }) = self.held.get_mut(&station) {
                    *pending = false;
                }
                Vec::new()
            }
            Input::Renewed { station, revision } => {
                if let Some(Hold::Holding {
                    revision: r,
                    renewed_at,
                    renewing,
                    ..
                }) = self.held.get_mut(&station)
                {
                    *r = (*r).max(revision);
                    *renewed_at = now;
                    *renewing = false;
                }
                Vec::new()
            }
            Input::RenewFailed { station } => {
                if let Some(Hold::Holding { renewing, .. }) = self.held.get_mut(&station) {
                    *renewing = false;
                }
                Vec::new()
            }
            Input::Seen {
                station,
                entry,
                revision,
            } => self.seen(station, entry, revision),
            Input::Gone { station } => match self.held.get(&station) {
                Some(Hold::Holding { version, .. }) => {
                    let version = *version;
                    self.connected(station, version)
                }
                _ => Vec::new(),
            },
            Input::Tick => self.tick(now),
        }
    }

    fn connected(&mut self, station: String, version: ProtocolVersion) -> Vec<Decision> {
        match self.held.get_mut(&station) {
            // the claim in flight is later than any other node's connection
            Some(Hold::Claiming {
                version: v,
                pending: true,
                ..
            }) => {
                *v = version;
                Vec::new()
            }
            _ => {
                self.held.insert(
                    station.clone(),
                    Hold::Claiming {
                        version,
                        pending: true,
                        newer_elsewhere: 0,
                    },
                );
                vec![Decision::Claim { station, version }]
            }
        }
    }

    fn claimed(
        &mut self,
        now: Duration,
        station: String,
        epoch: u64,
        revision: u64,
    ) -> Vec<Decision> {
        match self.held.get(&station) {
            None => vec![Decision::Delete { station, revision }],
            Some(Hold::Claiming {
                newer_elsewhere, ..
            }) if *newer_elsewhere > revision => {
                self.held.remove(&station);
                vec![Decision::Close { station }]
            }
            Some(Hold::Holding { revision: r, .. }) if *r >= revision => Vec::new(),
            Some(Hold::Claiming { version, .. } | Hold::Holding { version, .. }) => {
                let version = *version;
                self.held.insert(
                    station,
                    Hold::Holding {
                        version,
                        epoch,
                        revision,
                        renewed_at: now,
                        renewing: false,
                    },
                );
                Vec::new()
            }
        }
    }

    fn seen(&mut self, station: String, entry: Option<Entry>, revision: u64) -> Vec<Decision> {
        let mine = entry.as_ref().map(|e| e.node == self.node);
        match (self.held.get_mut(&station), mine) {
            // an entry naming this node without a connection here: left by
            // an earlier run of this node, or a claim whose connection ended
            (None, Some(true)) => vec![Decision::Delete { station, revision }],
            (None, _) => Vec::new(),
            (
                Some(Hold::Claiming {
                    newer_elsewhere, ..
                }),
                Some(false),
            ) => {
                *newer_elsewhere = (*newer_elsewhere).max(revision);
                Vec::new()
            }
            (Some(Hold::Claiming { .. }), _) => Vec::new(),
            (Some(Hold::Holding { revision: r, .. }), Some(true)) => {
                *r = (*r).max(revision);
                Vec::new()
            }
            (Some(Hold::Holding { revision: r, .. }), Some(false)) if revision > *r => {
                self.held.remove(&station);
                vec![Decision::Close { station }]
            }
            // deleted by someone else while connected here: claimed again
            (
                Some(Hold::Holding {
                    revision: r,
                    version,
                    ..
                }),
                None,
            ) if revision > *r => {
                let version = *version;
                self.connected(station, version)
            }
            (Some(Hold::Holding { .. }), _) => Vec::new(),
        }
    }

    fn tick(&mut self, now: Duration) -> Vec<Decision> {
        let mut out = Vec::new();
        for (station, hold) in &mut self.held {
            match hold {
                Hold::Claiming {
                    version,
                    pending: pending @ false,
                    ..
                } => {
                    *pending = true;
                    out.push(Decision::Claim {
                        station: station.clone(),
                        version: *version,
                    });
                }
                Hold::Holding {
                    version,
                    epoch,
                    revision,
                    renewed_at,
                    renewing: renewing @ false,
                } if now.saturating_sub(*renewed_at) >= self.renew_every => {
                    *renewing = true;
                    out.push(Decision::Renew {
                        station: station.clone(),
                        entry: Entry {
                            node: self.node.clone(),
                            epoch: *epoch,
                            version: *version,
                        },
                        revision: *revision,
                    });
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: ProtocolVersion = ProtocolVersion::V201;
    const RENEW: Duration = Duration::from_secs(10);

    fn s(x: u64) -> Duration {
        Duration::from_secs(x)
    }

    fn entry(node: &str, epoch: u64) -> Option<Entry> {
        Some(Entry {
            node: node.into(),
            epoch,
            version: V,
        })
    }

    // the inputs for station CP1
    fn connected(p: &mut Presence, version: ProtocolVersion) -> Vec<Decision> {
        let station = "CP1".into();
        p.handle(s(0), Input::Connected { station, version })
    }
    fn disconnected(p: &mut Presence, still_here: bool) -> Vec<Decision> {
        let station = "CP1".into();
        p.handle(
            s(1),
            Input::Disconnected {
                station,
                still_here,
            },
        )
    }
    fn claimed(p: &mut Presence, epoch: u64, revision: u64) -> Vec<Decision> {
        let station = "CP1".into();
        let claimed = Input::Claimed {
            station,
            epoch,
            revision,
        };
        p.handle(s(0), claimed)
    }
    fn seen(p: &mut Presence, entry: Option<Entry>, revision: u64) -> Vec<Decision> {
        let station = "CP1".into();
        let seen = Input::Seen {
            station,
            entry,
            revision,
        };
        p.handle(s(1), seen)
    }
    fn claim(version: ProtocolVersion) -> Vec<Decision> {
        let station = "CP1".into();
        vec![Decision::Claim { station, version }]
    }
    fn close() -> Vec<Decision> {
        let station = "CP1".into();
        vec![Decision::Close { station }]
    }
    fn delete(revision: u64) -> Vec<Decision> {
        let station = "CP1".into();
        vec![Decision::Delete { station, revision }]
    }

    /// Node `n1` holding `CP1` at revision 10, epoch 3, since time 0.
    fn holding() -> Presence {
        let mut p = Presence::new("n1", RENEW);
        assert_eq!(connected(&mut p, V), claim(V));
        assert!(claimed(&mut p, 3, 10).is_empty());
        p
    }

    #[test]
    fn the_owner_renews_its_entry_when_due_and_once_at_a_time() {
        let mut p = holding();
        assert!(p.handle(s(9), Input::Tick).is_empty());
        let due = vec![Decision::Renew {
            station: "CP1".into(),
            entry: entry("n1", 3).unwrap(),
            revision: 10,
        }];
        assert_eq!(p.handle(s(10), Input::Tick), due);
        // still in flight
        assert!(p.handle(s(11), Input::Tick).is_empty());
        let station = "CP1".to_owned();
        let renewed = Input::Renewed {
            station: station.clone(),
            revision: 14,
        };
        p.handle(s(11), renewed);
        assert!(p.handle(s(20), Input::Tick).is_empty());
        let next = p.handle(s(21), Input::Tick);
        assert!(
            matches!(&next[..], [Decision::Renew { revision: 14, .. }]),
            "{next:?}"
        );
        // a failed renewal is tried again at the next tick
        p.handle(s(21), Input::RenewFailed { station });
        assert_eq!(p.handle(s(22), Input::Tick).len(), 1);
    }

    #[test]
    fn a_later_claim_elsewhere_closes_the_connection_here_an_earlier_write_does_not() {
        let mut p = holding();
        // a write of another node before ours (a stale watch delivery)
        assert!(seen(&mut p, entry("n2", 2), 9).is_empty());
        // our own write, seen through the watch
        assert!(seen(&mut p, entry("n1", 3), 10).is_empty());
        assert_eq!(seen(&mut p, entry("n2", 4), 11), close());
        // the closed connection's end deletes nothing: the entry is n2's
        assert!(disconnected(&mut p, false).is_empty());
        assert!(p.is_empty());
    }

    #[test]
    fn the_owner_deletes_its_entry_when_the_connection_ends_not_on_a_local_replacement() {
        let mut p = holding();
        assert!(disconnected(&mut p, true).is_empty());
        assert_eq!(disconnected(&mut p, false), delete(10));
    }

    #[test]
    fn a_claim_landing_after_its_connection_ended_is_deleted() {
        let mut p = Presence::new("n1", RENEW);
        connected(&mut p, V);
        assert!(disconnected(&mut p, false).is_empty());
        assert_eq!(claimed(&mut p, 1, 5), delete(5));
    }

    #[test]
    fn a_claim_overtaken_by_another_node_while_in_flight_closes_here() {
        let mut p = Presence::new("n1", RENEW);
        connected(&mut p, V);
        seen(&mut p, entry("n2", 5), 8);
        assert_eq!(claimed(&mut p, 4, 7), close());
        // overtaken by an older write only: held
        let mut p = Presence::new("n1", RENEW);
        connected(&mut p, V);
        seen(&mut p, entry("n2", 3), 6);
        assert!(claimed(&mut p, 4, 7).is_empty());
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn an_entry_naming_this_node_without_a_connection_is_deleted() {
        let mut p = Presence::new("n1", RENEW);
        assert_eq!(seen(&mut p, entry("n1", 2), 3), delete(3));
        // another node's entries are theirs
        assert!(seen(&mut p, entry("n2", 2), 4).is_empty());
    }

    #[test]
    fn a_failed_claim_is_retried_at_the_next_tick() {
        let mut p = Presence::new("n1", RENEW);
        connected(&mut p, V);
        // in flight: not sent twice
        assert!(p.handle(s(1), Input::Tick).is_empty());
        let station = "CP1".into();
        p.handle(s(1), Input::ClaimFailed { station });
        assert_eq!(p.handle(s(2), Input::Tick), claim(V));
    }

    #[test]
    fn an_entry_gone_or_deleted_elsewhere_while_connected_here_is_claimed_again() {
        let mut p = holding();
        let station = "CP1".into();
        assert_eq!(p.handle(s(1), Input::Gone { station }), claim(V));
        let mut p = holding();
        // our own delete seen late (revision before ours): nothing
        assert!(seen(&mut p, None, 9).is_empty());
        assert_eq!(seen(&mut p, None, 12), claim(V));
    }

    #[test]
    fn a_new_local_connection_while_holding_claims_a_new_epoch() {
        let mut p = holding();
        let v21 = ProtocolVersion::V21;
        assert_eq!(connected(&mut p, v21), claim(v21));
        // a second one while that claim is in flight adds none
        assert!(connected(&mut p, v21).is_empty());
    }

    #[test]
    fn entries_are_json_with_the_subprotocol() {
        let e = entry("n1", 7).unwrap();
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(text, r#"{"node":"n1","epoch":7,"version":"ocpp2.0.1"}"#);
        assert_eq!(serde_json::from_str::<Entry>(&text).unwrap(), e);
        assert!(
            serde_json::from_str::<Entry>(r#"{"node":"n1","epoch":7,"version":"ocpp9"}"#).is_err()
        );
    }
}
