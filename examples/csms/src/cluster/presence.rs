//! The presence rules, without I/O: which node holds which station's
//! connection, and what a node does about it.
//!
//! The registry is two key-value buckets. The first maps each identity to
//! an [`Entry`] (its node, the node's incarnation, the connection's epoch),
//! written once per connection and never renewed; its writes are numbered
//! by the store (the revision, increasing over the whole bucket). The
//! second holds one key per node, its current incarnation, which the node
//! writes again every third of a lease and which the bucket drops one lease
//! after its last write. An entry is *live* while the incarnation it names
//! is its node's current one ([`is_live`]): a dead node's entries stop
//! counting one lease after its death, whatever their number, and the
//! cost of presence is one write per connection plus one per node and
//! third of a lease, not one per station and third of a lease.
//!
//! A node that accepts a station's connection claims its entry (this node,
//! epoch + 1), writing only over the revision it read, so of two claims
//! the later one has the higher revision. A node that holds a connection
//! and sees another node's write of that identity at a higher revision
//! than its own closes its connection: the station connected elsewhere
//! after it, exactly as one server replaces an identity's old connection.
//! The owner deletes its entry when the connection ends, only if it is
//! still the revision it wrote (again at each tick until that is done or
//! moot). Entries whose node is not live one `grace` after that was first
//! seen are deleted by the node that sweeps ([`Input::Nodes`] with
//! `sweep`), each only at the revision seen; an entry of this node's own
//! earlier incarnation at once.
//!
//! [`Presence::handle`] takes one [`Input`] with the time and returns the
//! [`Decision`]s; the shell (`cluster::run`) does them and feeds their
//! outcomes back as inputs.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use evproto_ocpp_proto::ProtocolVersion;
use serde::{Deserialize, Serialize};

/// What the registry says about one identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The node holding its connection.
    pub node: String,
    /// The node's incarnation (one per start of the node) that wrote it;
    /// empty in entries written before incarnations, which are never live.
    #[serde(default)]
    pub incarnation: String,
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

/// The live nodes: each node's current incarnation, as the node bucket
/// holds them.
pub type LiveNodes = HashMap<String, String>;

/// Whether `entry` names its node's current incarnation in `live`.
pub fn is_live(entry: &Entry, live: &LiveNodes) -> bool {
    !entry.incarnation.is_empty() && live.get(&entry.node) == Some(&entry.incarnation)
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
    /// A [`Decision::Delete`] could not be sent (the registry is
    /// unreachable; a delete refused because the entry changed is done):
    /// tried again at the next tick unless the entry changed meanwhile.
    DeleteFailed {
        /// Identity.
        station: String,
        /// The revision it was to delete.
        revision: u64,
    },
    /// The registry's entry of a station as written (`None`: deleted) at
    /// `revision`, from its watch.
    Seen {
        /// Identity.
        station: String,
        /// The entry, `None` when it was deleted.
        entry: Option<Entry>,
        /// The write's revision.
        revision: u64,
    },
    /// The node bucket as read now; `sweep`: this node is the one that
    /// deletes dead nodes' entries.
    Nodes {
        /// Each live node's incarnation.
        live: LiveNodes,
        /// Sweep dead nodes' entries.
        sweep: bool,
    },
    /// Time passed: retry failed claims and deletes.
    Tick,
}

/// What the shell does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Write the station's entry naming this node and incarnation: read
    /// it, write the next epoch over the revision read (create it when
    /// absent), again on a conflict; answer [`Input::Claimed`] or
    /// [`Input::ClaimFailed`].
    Claim {
        /// Identity.
        station: String,
        /// Its version.
        version: ProtocolVersion,
    },
    /// Close this node's connection of the station: it connected elsewhere
    /// later.
    Close {
        /// Identity.
        station: String,
    },
    /// Delete the station's entry if it is still at `revision`; answer
    /// [`Input::DeleteFailed`] when it could not be sent.
    Delete {
        /// Identity.
        station: String,
        /// The revision to delete.
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
        revision: u64,
    },
}

/// An entry another node wrote (or this node's earlier incarnation), as
/// last seen.
#[derive(Debug)]
struct Other {
    node: String,
    incarnation: String,
    revision: u64,
}

/// One node's presence state: the stations connected here and their
/// entries, the other entries the registry holds, and the live nodes.
#[derive(Debug)]
pub struct Presence {
    node: String,
    incarnation: String,
    grace: Duration,
    held: HashMap<String, Hold>,
    others: HashMap<String, Other>,
    /// Deletes to send again: station → revision.
    retry_delete: HashMap<String, u64>,
    /// Since when each (node, incarnation) named by an entry was seen not
    /// live.
    dead_since: HashMap<(String, String), Duration>,
}

impl Presence {
    /// The rules of node `node` in its incarnation `incarnation`; a dead
    /// node's entries are deleted `grace` after it was first seen dead
    /// (a lease: a node just started, or back from an outage, has written
    /// its key again by then).
    pub fn new(
        node: impl Into<String>,
        incarnation: impl Into<String>,
        grace: Duration,
    ) -> Presence {
        Presence {
            node: node.into(),
            incarnation: incarnation.into(),
            grace,
            held: HashMap::new(),
            others: HashMap::new(),
            retry_delete: HashMap::new(),
            dead_since: HashMap::new(),
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

    /// Entries of other nodes (live or not) known from the watch.
    pub fn others(&self) -> usize {
        self.others.len()
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
                epoch: _,
                revision,
            } => self.claimed(station, revision),
            Input::ClaimFailed { station } => {
                if let Some(Hold::Claiming { pending, .. }) = self.held.get_mut(&station) {
                    *pending = false;
                }
                Vec::new()
            }
            Input::DeleteFailed { station, revision } => {
                // only while nothing newer was seen and it is not held again
                let newer = self
                    .others
                    .get(&station)
                    .is_some_and(|o| o.revision > revision)
                    || self.held.contains_key(&station);
                if !newer {
                    self.retry_delete.insert(station, revision);
                }
                Vec::new()
            }
            Input::Seen {
                station,
                entry,
                revision,
            } => self.seen(station, entry, revision),
            Input::Nodes { live, sweep } => self.nodes(now, live, sweep),
            Input::Tick => self.tick(),
        }
    }

    fn connected(&mut self, station: String, version: ProtocolVersion) -> Vec<Decision> {
        self.retry_delete.remove(&station);
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

    fn claimed(&mut self, station: String, revision: u64) -> Vec<Decision> {
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
                self.held
                    .insert(station, Hold::Holding { version, revision });
                Vec::new()
            }
        }
    }

    fn seen(&mut self, station: String, entry: Option<Entry>, revision: u64) -> Vec<Decision> {
        // what others wrote, for the sweep (this node's current entries are
        // in `held`)
        match &entry {
            Some(e) if e.node != self.node || e.incarnation != self.incarnation => {
                let newer = self
                    .others
                    .get(&station)
                    .is_none_or(|o| o.revision < revision);
                if newer {
                    self.others.insert(
                        station.clone(),
                        Other {
                            node: e.node.clone(),
                            incarnation: e.incarnation.clone(),
                            revision,
                        },
                    );
                }
            }
            _ => {
                if self
                    .others
                    .get(&station)
                    .is_some_and(|o| o.revision < revision)
                {
                    self.others.remove(&station);
                }
            }
        }
        if self
            .retry_delete
            .get(&station)
            .is_some_and(|r| *r < revision)
        {
            self.retry_delete.remove(&station);
        }
        let mine = entry.as_ref().map(|e| e.node == self.node);
        match (self.held.get_mut(&station), mine) {
            // an entry naming this node without a connection here: left by
            // an earlier run of this node, or a claim whose connection ended
            (None, Some(true)) => {
                self.others.remove(&station);
                vec![Decision::Delete { station, revision }]
            }
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
            // deleted by someone else while connected here (a sweep while
            // this node was cut off): claimed again
            (
                Some(Hold::Holding {
                    revision: r,
                    version,
                }),
                None,
            ) if revision > *r => {
                let version = *version;
                self.connected(station, version)
            }
            (Some(Hold::Holding { .. }), _) => Vec::new(),
        }
    }

    fn nodes(&mut self, now: Duration, live: LiveNodes, sweep: bool) -> Vec<Decision> {
        let mut out = Vec::new();
        let mut named = HashSet::new();
        for (station, o) in &self.others {
            if live.get(&o.node) == Some(&o.incarnation) && !o.incarnation.is_empty() {
                continue;
            }
            let key = (o.node.clone(), o.incarnation.clone());
            let since = *self.dead_since.entry(key.clone()).or_insert(now);
            named.insert(key);
            if sweep && now.saturating_sub(since) >= self.grace {
                out.push(Decision::Delete {
                    station: station.clone(),
                    revision: o.revision,
                });
            }
        }
        self.dead_since.retain(|k, _| named.contains(k));
        for d in &out {
            if let Decision::Delete { station, .. } = d {
                self.others.remove(station);
            }
        }
        out
    }

    fn tick(&mut self) -> Vec<Decision> {
        let mut out = Vec::new();
        for (station, hold) in &mut self.held {
            if let Hold::Claiming {
                version,
                pending: pending @ false,
                ..
            } = hold
            {
                *pending = true;
                out.push(Decision::Claim {
                    station: station.clone(),
                    version: *version,
                });
            }
        }
        for (station, revision) in self.retry_delete.drain() {
            out.push(Decision::Delete { station, revision });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: ProtocolVersion = ProtocolVersion::V201;
    const GRACE: Duration = Duration::from_secs(30);

    fn s(x: u64) -> Duration {
        Duration::from_secs(x)
    }

    /// An entry of `node` in its incarnation `i{node}`.
    fn entry(node: &str, epoch: u64) -> Option<Entry> {
        Some(Entry {
            node: node.into(),
            incarnation: format!("i{node}"),
            epoch,
            version: V,
        })
    }

    fn new() -> Presence {
        Presence::new("n1", "in1", GRACE)
    }

    /// The node bucket with `nodes` live in their incarnations `i{node}`.
    fn nodes(p: &mut Presence, at: u64, nodes: &[&str], sweep: bool) -> Vec<Decision> {
        let live = nodes
            .iter()
            .map(|n| ((*n).to_owned(), format!("i{n}")))
            .collect();
        p.handle(s(at), Input::Nodes { live, sweep })
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
        let mut p = new();
        assert_eq!(connected(&mut p, V), claim(V));
        assert!(claimed(&mut p, 3, 10).is_empty());
        p
    }

    #[test]
    fn the_owner_writes_its_entry_once_per_connection() {
        let mut p = holding();
        for at in [10, 100, 1000, 10_000] {
            assert!(p.handle(s(at), Input::Tick).is_empty());
            assert!(nodes(&mut p, at, &["n1", "n2"], true).is_empty());
        }
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn a_dead_nodes_entries_are_swept_one_grace_after_it_was_seen_dead_by_the_sweeper_only() {
        let mut p = new();
        let station = |i: u32| format!("CP{i}");
        for i in 0..3 {
            let seen = Input::Seen {
                station: station(i),
                entry: entry(if i == 2 { "n3" } else { "n2" }, 1),
                revision: u64::from(i) + 1,
            };
            assert!(p.handle(s(0), seen).is_empty());
        }
        assert_eq!(p.others(), 3);
        // all live
        assert!(nodes(&mut p, 0, &["n1", "n2", "n3"], true).is_empty());
        // n2 gone (its key expired): not before the grace
        assert!(nodes(&mut p, 10, &["n1", "n3"], true).is_empty());
        assert!(nodes(&mut p, 39, &["n1", "n3"], true).is_empty());
        // a node that does not sweep never deletes
        assert!(nodes(&mut p, 40, &["n1", "n3"], false).is_empty());
        let mut swept = nodes(&mut p, 41, &["n1", "n3"], true);
        swept.sort_by_key(|d| format!("{d:?}"));
        assert_eq!(
            swept,
            vec![
                Decision::Delete {
                    station: station(0),
                    revision: 1
                },
                Decision::Delete {
                    station: station(1),
                    revision: 2
                },
            ]
        );
        // once
        assert!(nodes(&mut p, 50, &["n1", "n3"], true).is_empty());
        assert_eq!(p.others(), 1);
    }

    #[test]
    fn a_node_back_within_the_grace_or_restarted_counts_from_its_new_incarnation() {
        let mut p = new();
        let seen = Input::Seen {
            station: "CP9".into(),
            entry: entry("n2", 1),
            revision: 4,
        };
        p.handle(s(0), seen);
        // n2 missed a renewal (an outage) and is back before the grace
        assert!(nodes(&mut p, 0, &["n1"], true).is_empty());
        assert!(nodes(&mut p, 20, &["n1", "n2"], true).is_empty());
        // the grace starts again from its next absence
        assert!(nodes(&mut p, 40, &["n1"], true).is_empty());
        assert!(nodes(&mut p, 69, &["n1"], true).is_empty());
        // n2 restarted: a new incarnation does not make the old entry live
        let mut live: LiveNodes = [("n1".to_owned(), "in1".to_owned())].into();
        live.insert("n2".into(), "other".into());
        let swept = p.handle(s(70), Input::Nodes { live, sweep: true });
        assert_eq!(
            swept,
            vec![Decision::Delete {
                station: "CP9".into(),
                revision: 4
            }]
        );
    }

    #[test]
    fn liveness_is_the_nodes_current_incarnation() {
        let live: LiveNodes = [("n2".to_owned(), "in2".to_owned())].into();
        assert!(is_live(&entry("n2", 1).unwrap(), &live));
        assert!(!is_live(&entry("n3", 1).unwrap(), &live));
        let mut old = entry("n2", 1).unwrap();
        old.incarnation = "before".into();
        assert!(!is_live(&old, &live));
        // entries written before incarnations never are
        old.incarnation = String::new();
        let live: LiveNodes = [("n2".to_owned(), String::new())].into();
        assert!(!is_live(&old, &live));
    }

    #[test]
    fn a_delete_that_could_not_be_sent_is_retried_unless_the_entry_changed() {
        let mut p = holding();
        assert_eq!(disconnected(&mut p, false), delete(10));
        let failed = |revision| Input::DeleteFailed {
            station: "CP1".into(),
            revision,
        };
        p.handle(s(2), failed(10));
        assert_eq!(p.handle(s(3), Input::Tick), delete(10));
        assert!(p.handle(s(4), Input::Tick).is_empty());
        // failed again, but another node claimed it meanwhile: dropped
        p.handle(s(5), failed(10));
        assert!(seen(&mut p, entry("n2", 4), 11).is_empty());
        assert!(p.handle(s(6), Input::Tick).is_empty());
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
        let mut p = new();
        connected(&mut p, V);
        assert!(disconnected(&mut p, false).is_empty());
        assert_eq!(claimed(&mut p, 1, 5), delete(5));
    }

    #[test]
    fn a_claim_overtaken_by_another_node_while_in_flight_closes_here() {
        let mut p = new();
        connected(&mut p, V);
        seen(&mut p, entry("n2", 5), 8);
        assert_eq!(claimed(&mut p, 4, 7), close());
        // overtaken by an older write only: held
        let mut p = new();
        connected(&mut p, V);
        seen(&mut p, entry("n2", 3), 6);
        assert!(claimed(&mut p, 4, 7).is_empty());
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn an_entry_naming_this_node_without_a_connection_is_deleted() {
        let mut p = new();
        assert_eq!(seen(&mut p, entry("n1", 2), 3), delete(3));
        // another node's entries are theirs
        assert!(seen(&mut p, entry("n2", 2), 4).is_empty());
    }

    #[test]
    fn a_failed_claim_is_retried_at_the_next_tick() {
        let mut p = new();
        connected(&mut p, V);
        // in flight: not sent twice
        assert!(p.handle(s(1), Input::Tick).is_empty());
        let station = "CP1".into();
        p.handle(s(1), Input::ClaimFailed { station });
        assert_eq!(p.handle(s(2), Input::Tick), claim(V));
    }

    #[test]
    fn an_entry_deleted_elsewhere_while_connected_here_is_claimed_again() {
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
        assert_eq!(
            text,
            r#"{"node":"n1","incarnation":"in1","epoch":7,"version":"ocpp2.0.1"}"#
        );
        assert_eq!(serde_json::from_str::<Entry>(&text).unwrap(), e);
        // written before incarnations: read, never live
        let old: Entry =
            serde_json::from_str(r#"{"node":"n1","epoch":7,"version":"ocpp2.0.1"}"#).unwrap();
        assert_eq!(old.incarnation, "");
        assert!(
            serde_json::from_str::<Entry>(r#"{"node":"n1","epoch":7,"version":"ocpp9"}"#).is_err()
        );
    }
}
