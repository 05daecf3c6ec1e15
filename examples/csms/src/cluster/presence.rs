//! The presence rules, without I/O: which node holds which station's
//! connection, which nodes are alive, and what a node does about it.
//!
//! Two key-value buckets, whose writes the store numbers (the revision,
//! increasing over the whole bucket):
//!
//! * **The registry** (identity → [`Entry`]: the node, the node's epoch,
//!   the version) is written once per connection. A node that accepts a
//!   station's connection writes its entry; of two nodes' writes the later
//!   has the higher revision. A node that holds a connection and sees
//!   another node's write of that identity at a higher revision closes its
//!   connection: the station connected elsewhere after it, exactly as one
//!   server replaces an identity's old connection. The owner deletes its
//!   entry when the connection ends, only if it is still the revision it
//!   wrote. Entries have no age limit: nothing is written while a
//!   connection lasts.
//! * **Liveness** (node → [`Beat`]: its epoch, a number new at each start)
//!   is one lease per node: the bucket drops an entry one lease after its
//!   last write, and its node writes it again every third of the lease.
//!
//! An entry counts while its node's lease does, with the same epoch
//! ([`live`]). Every node watches both buckets and knows every entry;
//! one that has not heard a node's beat for a lease, counted while it
//! could hear (from the moment its watch of the beats opened or NATS came
//! back), takes that node as dead and deletes the entries naming it, each
//! only if it is still the revision seen: idempotent, any node may do it,
//! and a station that connected elsewhere meanwhile keeps its new entry.
//! Entries naming an earlier epoch of a node (it restarted) are deleted
//! the same way, by it and by the others, at once.
//!
//! [`Presence::handle`] takes one [`Input`] with the time and returns the
//! [`Decision`]s; the shell (`cluster::presence_loop`) does them and feeds
//! their outcomes back as inputs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use evproto_ocpp_proto::ProtocolVersion;
use serde::{Deserialize, Serialize};

/// What the registry says about one identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The node holding its connection.
    pub node: String,
    /// That node's epoch when it wrote the entry ([`Beat::epoch`]).
    pub epoch: u64,
    /// The version it is connected with.
    #[serde(with = "subprotocol")]
    pub version: ProtocolVersion,
}

/// A node's liveness entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    /// The node's epoch: new at each start of the node.
    pub epoch: u64,
}

/// Whether `entry` counts, given its node's liveness entry (`None`: the
/// node's lease lapsed): the node is alive and has not restarted since.
pub fn live(entry: &Entry, beat: Option<&Beat>) -> bool {
    beat.is_some_and(|b| b.epoch == entry.epoch)
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
    /// A [`Decision::Claim`] was written at `revision`.
    Claimed {
        /// Identity.
        station: String,
        /// Its revision.
        revision: u64,
    },
    /// A [`Decision::Claim`] failed (the registry is unreachable): tried
    /// again at the next tick.
    ClaimFailed {
        /// Identity.
        station: String,
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
    /// A node's beat, from the watch of the liveness bucket (this node's
    /// own too).
    Beaten {
        /// The node.
        node: String,
        /// Its epoch.
        epoch: u64,
    },
    /// A [`Decision::Beat`] was written (`ok`) or failed.
    BeatDone {
        /// Written.
        ok: bool,
    },
    /// This node hears the others' beats from now on: its watch of the
    /// liveness bucket (re)opened, or NATS came back. Every node gets a
    /// full lease from now to be heard.
    Hearing,
    /// This node cannot hear the others (NATS is gone): no node is taken
    /// as dead until [`Input::Hearing`].
    Deaf,
    /// Time passed: beat when due, retry failed claims, drop the entries
    /// of dead nodes.
    Tick,
}

/// What the shell does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Write the station's entry naming this node and its epoch (a put);
    /// answer [`Input::Claimed`] or [`Input::ClaimFailed`].
    Claim {
        /// Identity.
        station: String,
        /// What to write.
        entry: Entry,
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
        /// The revision seen.
        revision: u64,
    },
    /// Write this node's beat; answer [`Input::BeatDone`].
    Beat(Beat),
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

/// An entry of the registry as last seen.
#[derive(Debug)]
struct Known {
    node: Arc<str>,
    epoch: u64,
    revision: u64,
    /// When its deletion was sent (a dead node's entry).
    dropping: Option<Duration>,
}

/// Whether an entry's node counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Live,
    /// Its node restarted (another epoch) or is dead.
    Gone,
}

/// One node's presence state: the stations connected here, every entry of
/// the registry, and the nodes heard from.
#[derive(Debug)]
pub struct Presence {
    node: Arc<str>,
    epoch: u64,
    lease: Duration,
    held: HashMap<String, Hold>,
    known: HashMap<String, Known>,
    /// Entries known per (node, epoch).
    owners: HashMap<(Arc<str>, u64), usize>,
    /// Nodes heard: their epoch and when.
    heard: HashMap<Arc<str>, (u64, Duration)>,
    /// Since when this node can hear the others' beats.
    hearing_since: Option<Duration>,
    /// When this node's last beat was sent, and whether it is in flight.
    beat_sent: Option<Duration>,
    beating: bool,
}

impl Presence {
    /// The rules of node `node` in its run `epoch`, whose lease lives
    /// `lease` after each beat (sent every third of it).
    pub fn new(node: impl Into<String>, epoch: u64, lease: Duration) -> Presence {
        Presence {
            node: Arc::from(node.into()),
            epoch,
            lease,
            held: HashMap::new(),
            known: HashMap::new(),
            owners: HashMap::new(),
            heard: HashMap::new(),
            hearing_since: None,
            beat_sent: None,
            beating: false,
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

    /// Entries of the registry this node knows of.
    pub fn entries(&self) -> usize {
        self.known.len()
    }

    /// Entries this node knows naming `node` (any epoch).
    pub fn entries_of(&self, node: &str) -> usize {
        self.owners
            .iter()
            .filter(|((n, _), _)| &**n == node)
            .map(|(_, c)| c)
            .sum()
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
            Input::Claimed { station, revision } => self.claimed(station, revision),
            Input::ClaimFailed { station } => {
                if let Some(Hold::Claiming { pending, .. }) = self.held.get_mut(&station) {
                    *pending = false;
                }
                Vec::new()
            }
            Input::Seen {
                station,
                entry,
                revision,
            } => self.seen(now, station, entry, revision),
            Input::Beaten { node, epoch } => {
                let key = self.intern(&node);
                self.heard.insert(key, (epoch, now));
                Vec::new()
            }
            Input::BeatDone { ok } => {
                self.beating = false;
                if !ok {
                    // tried again at the next tick
                    self.beat_sent = None;
                }
                Vec::new()
            }
            Input::Hearing => {
                self.hearing_since = Some(now);
                Vec::new()
            }
            Input::Deaf => {
                self.hearing_since = None;
                Vec::new()
            }
            Input::Tick => self.tick(now),
        }
    }

    /// The shared name of `node` (one allocation per node, not per entry).
    fn intern(&self, node: &str) -> Arc<str> {
        if *self.node == *node {
            return self.node.clone();
        }
        match self.heard.get_key_value(node) {
            Some((k, _)) => k.clone(),
            None => self
                .owners
                .keys()
                .find(|(n, _)| &**n == node)
                .map_or_else(|| Arc::from(node), |(n, _)| n.clone()),
        }
    }

    /// Whether the entries of `node` written in `epoch` count at `now`.
    fn status(&self, now: Duration, node: &str, epoch: u64) -> Status {
        if node == &*self.node {
            return if epoch == self.epoch {
                Status::Live
            } else {
                Status::Gone
            };
        }
        // deaf: nobody is judged
        let Some(since) = self.hearing_since else {
            return Status::Live;
        };
        match self.heard.get(node) {
            Some((e, _)) if *e != epoch => Status::Gone,
            Some((_, at)) if now.saturating_sub((*at).max(since)) >= self.lease => Status::Gone,
            None if now.saturating_sub(since) >= self.lease => Status::Gone,
            _ => Status::Live,
        }
    }

    fn entry(&self, version: ProtocolVersion) -> Entry {
        Entry {
            node: self.node.to_string(),
            epoch: self.epoch,
            version,
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
                let entry = self.entry(version);
                vec![Decision::Claim { station, entry }]
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

    /// Records what the registry holds for `station` now.
    fn know(&mut self, station: &str, entry: Option<&Entry>, revision: u64) {
        if self
            .known
            .get(station)
            .is_some_and(|k| k.revision > revision)
        {
            return;
        }
        if let Some(old) = self.known.remove(station) {
            let key = (old.node, old.epoch);
            if let Some(c) = self.owners.get_mut(&key) {
                *c -= 1;
                if *c == 0 {
                    self.owners.remove(&key);
                }
            }
        }
        if let Some(e) = entry {
            let node = self.intern(&e.node);
            *self.owners.entry((node.clone(), e.epoch)).or_default() += 1;
            self.known.insert(
                station.to_owned(),
                Known {
                    node,
                    epoch: e.epoch,
                    revision,
                    dropping: None,
                },
            );
        }
    }

    fn seen(
        &mut self,
        now: Duration,
        station: String,
        entry: Option<Entry>,
        revision: u64,
    ) -> Vec<Decision> {
        self.know(&station, entry.as_ref(), revision);
        let mine = entry.as_ref().map(|e| *e.node == *self.node);
        match (self.held.get_mut(&station), mine) {
            // an entry naming this node without a connection here: left by
            // an earlier run of this node, or a claim whose connection ended
            (None, Some(true)) => {
                self.dropping(now, &station);
                vec![Decision::Delete { station, revision }]
            }
            // another node's entry: deleted if that node is gone
            (None, Some(false)) => {
                let e = entry.as_ref().map(|e| (e.node.as_str(), e.epoch));
                match e {
                    Some((node, epoch)) if self.status(now, node, epoch) == Status::Gone => {
                        self.dropping(now, &station);
                        vec![Decision::Delete { station, revision }]
                    }
                    _ => Vec::new(),
                }
            }
            (None, None) => Vec::new(),
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
            // deleted by someone else while connected here (this node was
            // taken as dead): claimed again
            (
                Some(Hold::Holding {
                    revision: r,
                    version,
                }),
                None,
            ) if revision > *r => {
                let version = *version;
                self.held.remove(&station);
                self.connected(station, version)
            }
            (Some(Hold::Holding { .. }), _) => Vec::new(),
        }
    }

    fn dropping(&mut self, now: Duration, station: &str) {
        if let Some(k) = self.known.get_mut(station) {
            k.dropping = Some(now);
        }
    }

    fn tick(&mut self, now: Duration) -> Vec<Decision> {
        let mut out = Vec::new();
        if !self.beating
            && self
                .beat_sent
                .is_none_or(|at| now.saturating_sub(at) >= self.lease / 3)
        {
            self.beating = true;
            self.beat_sent = Some(now);
            out.push(Decision::Beat(Beat { epoch: self.epoch }));
        }
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
                    entry: Entry {
                        node: self.node.to_string(),
                        epoch: self.epoch,
                        version: *version,
                    },
                });
            }
        }
        // the entries of gone nodes, not held here (those are this node's
        // own epoch), whose deletion was not sent within a lease
        let gone: Vec<(Arc<str>, u64)> = self
            .owners
            .keys()
            .filter(|(n, e)| self.status(now, n, *e) == Status::Gone)
            .cloned()
            .collect();
        if gone.is_empty() {
            return out;
        }
        for (station, k) in &mut self.known {
            let of_gone = gone.iter().any(|(n, e)| *n == k.node && *e == k.epoch);
            let due = k
                .dropping
                .is_none_or(|at| now.saturating_sub(at) >= self.lease);
            if of_gone && due && !self.held.contains_key(station) {
                k.dropping = Some(now);
                out.push(Decision::Delete {
                    station: station.clone(),
                    revision: k.revision,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: ProtocolVersion = ProtocolVersion::V201;
    const LEASE: Duration = Duration::from_secs(30);
    /// This node's epoch in the tests.
    const EPOCH: u64 = 7;

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

    fn node(name: &str) -> Presence {
        Presence::new(name, EPOCH, LEASE)
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
    fn claimed(p: &mut Presence, revision: u64) -> Vec<Decision> {
        let station = "CP1".into();
        p.handle(s(0), Input::Claimed { station, revision })
    }
    fn seen_at(p: &mut Presence, now: u64, entry: Option<Entry>, revision: u64) -> Vec<Decision> {
        let station = "CP1".into();
        let seen = Input::Seen {
            station,
            entry,
            revision,
        };
        p.handle(s(now), seen)
    }
    fn seen(p: &mut Presence, entry: Option<Entry>, revision: u64) -> Vec<Decision> {
        seen_at(p, 1, entry, revision)
    }
    fn claim(p: &Presence, version: ProtocolVersion) -> Vec<Decision> {
        let station = "CP1".into();
        let entry = Entry {
            node: p.node().into(),
            epoch: EPOCH,
            version,
        };
        vec![Decision::Claim { station, entry }]
    }
    fn close() -> Vec<Decision> {
        let station = "CP1".into();
        vec![Decision::Close { station }]
    }
    fn delete(revision: u64) -> Vec<Decision> {
        let station = "CP1".into();
        vec![Decision::Delete { station, revision }]
    }
    fn beaten(p: &mut Presence, now: u64, node: &str, epoch: u64) {
        let node = node.into();
        assert!(p.handle(s(now), Input::Beaten { node, epoch }).is_empty());
    }
    /// The deletions of a tick (its beat left out).
    fn deletions(p: &mut Presence, now: u64) -> Vec<Decision> {
        p.handle(s(now), Input::Tick)
            .into_iter()
            .filter(|d| matches!(d, Decision::Delete { .. }))
            .collect()
    }

    /// Node `n1` holding `CP1` at revision 10.
    fn holding() -> Presence {
        let mut p = node("n1");
        assert_eq!(connected(&mut p, V), claim(&p, V));
        assert!(claimed(&mut p, 10).is_empty());
        p
    }

    #[test]
    fn a_node_beats_every_third_of_its_lease_not_per_station() {
        let mut p = holding();
        let beat = vec![Decision::Beat(Beat { epoch: EPOCH })];
        assert_eq!(p.handle(s(0), Input::Tick), beat);
        // in flight, then not due
        assert!(p.handle(s(1), Input::Tick).is_empty());
        p.handle(s(1), Input::BeatDone { ok: true });
        assert!(p.handle(s(9), Input::Tick).is_empty());
        assert_eq!(p.handle(s(10), Input::Tick), beat);
        // a failed beat is sent again at the next tick
        p.handle(s(10), Input::BeatDone { ok: false });
        assert_eq!(p.handle(s(11), Input::Tick), beat);
        // the station's entry is never written again while it is connected
        p.handle(s(11), Input::BeatDone { ok: true });
        for t in 12..200 {
            let out = p.handle(s(t), Input::Tick);
            assert!(
                out.iter().all(|d| matches!(d, Decision::Beat(_))),
                "{out:?}"
            );
        }
    }

    #[test]
    fn a_later_claim_elsewhere_closes_the_connection_here_an_earlier_write_does_not() {
        let mut p = holding();
        p.handle(s(0), Input::Hearing);
        beaten(&mut p, 0, "n2", 4);
        // a write of another node before ours (a stale watch delivery)
        assert!(seen(&mut p, entry("n2", 4), 9).is_empty());
        // our own write, seen through the watch
        assert!(seen(&mut p, entry("n1", EPOCH), 10).is_empty());
        assert_eq!(seen(&mut p, entry("n2", 4), 11), close());
        // the closed connection's end deletes nothing: the entry is n2's
        assert!(disconnected(&mut p, false).is_empty());
        assert!(p.is_empty());
        assert_eq!((p.entries(), p.entries_of("n2")), (1, 1));
    }

    #[test]
    fn the_owner_deletes_its_entry_when_the_connection_ends_not_on_a_local_replacement() {
        let mut p = holding();
        assert!(disconnected(&mut p, true).is_empty());
        assert_eq!(disconnected(&mut p, false), delete(10));
    }

    #[test]
    fn a_claim_landing_after_its_connection_ended_is_deleted() {
        let mut p = node("n1");
        connected(&mut p, V);
        assert!(disconnected(&mut p, false).is_empty());
        assert_eq!(claimed(&mut p, 5), delete(5));
    }

    #[test]
    fn a_claim_overtaken_by_another_node_while_in_flight_closes_here() {
        let mut p = node("n1");
        connected(&mut p, V);
        seen(&mut p, entry("n2", 1), 8);
        assert_eq!(claimed(&mut p, 7), close());
        // overtaken by an older write only: held
        let mut p = node("n1");
        connected(&mut p, V);
        seen(&mut p, entry("n2", 1), 6);
        assert!(claimed(&mut p, 7).is_empty());
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn an_entry_naming_this_node_without_a_connection_is_deleted_any_epoch() {
        let mut p = node("n1");
        // a claim whose connection ended, or an earlier run's
        assert_eq!(seen(&mut p, entry("n1", EPOCH), 3), delete(3));
        assert_eq!(seen(&mut p, entry("n1", 2), 4), delete(4));
        // another node's entries are theirs while it lives
        p.handle(s(1), Input::Hearing);
        beaten(&mut p, 1, "n2", 2);
        assert!(seen(&mut p, entry("n2", 2), 5).is_empty());
    }

    #[test]
    fn a_failed_claim_is_retried_at_the_next_tick() {
        let mut p = node("n1");
        connected(&mut p, V);
        p.handle(s(0), Input::Tick);
        p.handle(s(0), Input::BeatDone { ok: true });
        // in flight: not sent twice
        assert!(p.handle(s(1), Input::Tick).is_empty());
        let station = "CP1".into();
        p.handle(s(1), Input::ClaimFailed { station });
        assert_eq!(p.handle(s(2), Input::Tick), claim(&p, V));
    }

    #[test]
    fn an_entry_deleted_elsewhere_while_connected_here_is_claimed_again() {
        let mut p = holding();
        // our own delete seen late (revision before ours): nothing
        assert!(seen(&mut p, None, 9).is_empty());
        assert_eq!(seen(&mut p, None, 12), claim(&p, V));
        assert!(claimed(&mut p, 13).is_empty());
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn a_new_local_connection_while_holding_writes_the_entry_again() {
        let mut p = holding();
        let v21 = ProtocolVersion::V21;
        assert_eq!(connected(&mut p, v21), claim(&p, v21));
        // a second one while that claim is in flight adds none
        assert!(connected(&mut p, v21).is_empty());
    }

    #[test]
    fn a_dead_nodes_entries_are_dropped_once_its_lease_lapsed() {
        let mut p = node("n1");
        p.handle(s(0), Input::Hearing);
        beaten(&mut p, 0, "n2", 4);
        for (i, id) in ["A", "B", "C"].into_iter().enumerate() {
            let seen = Input::Seen {
                station: id.into(),
                entry: entry("n2", 4),
                revision: 20 + i as u64,
            };
            assert!(p.handle(s(1), seen).is_empty());
        }
        beaten(&mut p, 10, "n2", 4);
        // heard at 10: alive until 40
        assert!(deletions(&mut p, 39).is_empty());
        let mut dropped = deletions(&mut p, 40);
        dropped.sort_by_key(|d| format!("{d:?}"));
        let want: Vec<Decision> = ["A", "B", "C"]
            .into_iter()
            .enumerate()
            .map(|(i, id)| Decision::Delete {
                station: id.into(),
                revision: 20 + i as u64,
            })
            .collect();
        assert_eq!(dropped, want);
        // sent once; again a lease later if the deletions did not land
        assert!(deletions(&mut p, 41).is_empty());
        assert!(deletions(&mut p, 69).is_empty());
        assert_eq!(deletions(&mut p, 70).len(), 3);
        // a station that connected elsewhere meanwhile is not touched, the
        // others' deletions seen end it
        let now_n3 = Input::Seen {
            station: "A".into(),
            entry: entry("n3", 1),
            revision: 30,
        };
        p.handle(s(71), now_n3);
        for (id, rev) in [("B", 31), ("C", 32)] {
            let gone = Input::Seen {
                station: id.into(),
                entry: None,
                revision: rev,
            };
            assert!(p.handle(s(71), gone).is_empty());
        }
        assert_eq!(p.entries_of("n2"), 0);
        beaten(&mut p, 195, "n3", 1);
        assert!(deletions(&mut p, 200).is_empty());
        // an entry of the dead node written late is deleted when seen
        assert_eq!(seen_at(&mut p, 201, entry("n2", 4), 40), delete(40), "late");
    }

    #[test]
    fn a_node_never_heard_counts_as_dead_a_lease_after_this_node_could_hear() {
        let mut p = node("n1");
        let seen = |p: &mut Presence, now| seen_at(p, now, entry("ghost", 1), 5);
        // deaf: nobody is judged, however long
        assert!(seen(&mut p, 100).is_empty());
        assert!(deletions(&mut p, 100).is_empty());
        p.handle(s(100), Input::Hearing);
        assert!(deletions(&mut p, 129).is_empty());
        assert_eq!(deletions(&mut p, 130), delete(5));
    }

    #[test]
    fn time_deaf_does_not_count_against_the_others() {
        let mut p = node("n1");
        p.handle(s(0), Input::Hearing);
        beaten(&mut p, 0, "n2", 4);
        seen(&mut p, entry("n2", 4), 5);
        // NATS gone at 5 and back at 100: n2 gets a lease from 100
        p.handle(s(5), Input::Deaf);
        assert!(deletions(&mut p, 99).is_empty());
        p.handle(s(100), Input::Hearing);
        assert!(deletions(&mut p, 129).is_empty());
        beaten(&mut p, 101, "n2", 4);
        assert!(deletions(&mut p, 130).is_empty());
        assert_eq!(deletions(&mut p, 131), delete(5));
    }

    #[test]
    fn a_restarted_nodes_earlier_entries_are_dropped_at_once() {
        let mut p = node("n1");
        p.handle(s(0), Input::Hearing);
        beaten(&mut p, 0, "n2", 4);
        assert!(seen(&mut p, entry("n2", 4), 5).is_empty());
        // n2 restarted: epoch 5
        beaten(&mut p, 2, "n2", 5);
        assert_eq!(deletions(&mut p, 2), delete(5));
        // its new entries count
        assert!(seen_at(&mut p, 3, entry("n2", 5), 6).is_empty());
        assert!(deletions(&mut p, 4).is_empty());
        // and an old-epoch entry seen later goes at once
        let old = Input::Seen {
            station: "CP2".into(),
            entry: entry("n2", 4),
            revision: 7,
        };
        assert_eq!(p.handle(s(5), old).len(), 1);
    }

    #[test]
    fn entries_and_beats_are_json() {
        let e = entry("n1", 7).unwrap();
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(text, r#"{"node":"n1","epoch":7,"version":"ocpp2.0.1"}"#);
        assert_eq!(serde_json::from_str::<Entry>(&text).unwrap(), e);
        assert!(
            serde_json::from_str::<Entry>(r#"{"node":"n1","epoch":7,"version":"ocpp9"}"#).is_err()
        );
        let b = serde_json::to_string(&Beat { epoch: 3 }).unwrap();
        assert_eq!(b, r#"{"epoch":3}"#);
        assert!(live(&e, Some(&Beat { epoch: 7 })));
        assert!(!live(&e, Some(&Beat { epoch: 8 })));
        assert!(!live(&e, None));
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        /// One step of a cluster of three nodes on a simulated registry.
        #[derive(Debug, Clone)]
        enum Step {
            /// Station `s` connects to node `n`.
            Connect(usize, usize),
            /// Station `s`'s connection ends (wherever it is).
            Disconnect(usize),
            /// Node `n` is killed (no more beats, connections gone without
            /// deletions).
            Kill(usize),
            /// Seconds pass.
            Wait(u64),
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                4 => (0..3usize, 0..6usize).prop_map(|(n, s)| Step::Connect(n, s)),
                2 => (0..6usize).prop_map(Step::Disconnect),
                1 => (1..3usize).prop_map(Step::Kill),
                3 => (1..20u64).prop_map(Step::Wait),
            ]
        }

        /// The registry and beats the shell's buckets are, on a virtual
        /// clock, with every write delivered to every live node's watch
        /// in order.
        struct World {
            nodes: Vec<Option<Presence>>,
            /// Which node each station is connected to.
            conn: Vec<Option<usize>>,
            registry: HashMap<String, (Entry, u64)>,
            revision: u64,
            now: u64,
        }

        impl World {
            fn new() -> World {
                let mut nodes = Vec::new();
                for i in 0..3 {
                    let mut p = Presence::new(format!("n{i}"), 100 + i as u64, LEASE);
                    p.handle(s(0), Input::Hearing);
                    nodes.push(Some(p));
                }
                World {
                    nodes,
                    conn: vec![None; 6],
                    registry: HashMap::new(),
                    revision: 0,
                    now: 0,
                }
            }

            fn broadcast(&mut self, station: &str, entry: Option<Entry>, revision: u64) {
                let mut todo = Vec::new();
                for (i, n) in self.nodes.iter_mut().enumerate() {
                    if let Some(p) = n {
                        let seen = Input::Seen {
                            station: station.into(),
                            entry: entry.clone(),
                            revision,
                        };
                        for d in p.handle(s(self.now), seen) {
                            todo.push((i, d));
                        }
                    }
                }
                for (i, d) in todo {
                    self.apply(i, d);
                }
            }

            fn input(&mut self, i: usize, input: Input) {
                let Some(p) = self.nodes[i].as_mut() else {
                    return;
                };
                for d in p.handle(s(self.now), input) {
                    self.apply(i, d);
                }
            }

            fn apply(&mut self, i: usize, d: Decision) {
                if self.nodes[i].is_none() {
                    return;
                }
                match d {
                    Decision::Claim { station, entry } => {
                        self.revision += 1;
                        let r = self.revision;
                        self.registry.insert(station.clone(), (entry.clone(), r));
                        self.input(
                            i,
                            Input::Claimed {
                                station: station.clone(),
                                revision: r,
                            },
                        );
                        self.broadcast(&station, Some(entry), r);
                    }
                    Decision::Delete { station, revision } => {
                        if self.registry.get(&station).is_some_and(|e| e.1 == revision) {
                            self.registry.remove(&station);
                            self.revision += 1;
                            let r = self.revision;
                            self.broadcast(&station, None, r);
                        }
                    }
                    Decision::Close { station } => {
                        let k: usize = station[1..].parse().unwrap();
                        if self.conn[k] == Some(i) {
                            self.conn[k] = None;
                            self.input(
                                i,
                                Input::Disconnected {
                                    station,
                                    still_here: false,
                                },
                            );
                        }
                    }
                    Decision::Beat(b) => {
                        let node = format!("n{i}");
                        self.input(i, Input::BeatDone { ok: true });
                        for j in 0..3 {
                            let (node, epoch) = (node.clone(), b.epoch);
                            self.input(j, Input::Beaten { node, epoch });
                        }
                    }
                }
            }

            fn run(&mut self, step: Step) {
                match step {
                    Step::Connect(n, k) => {
                        if self.nodes[n].is_none() {
                            return;
                        }
                        let station = format!("S{k}");
                        // the station's old connection, if on n, is
                        // replaced locally (its end comes with still_here)
                        self.conn[k] = Some(n);
                        self.input(
                            n,
                            Input::Connected {
                                station,
                                version: V,
                            },
                        );
                    }
                    Step::Disconnect(k) => {
                        if let Some(n) = self.conn[k].take() {
                            let station = format!("S{k}");
                            let gone = Input::Disconnected {
                                station,
                                still_here: false,
                            };
                            self.input(n, gone);
                        }
                    }
                    Step::Kill(n) => {
                        self.nodes[n] = None;
                        for c in &mut self.conn {
                            if *c == Some(n) {
                                *c = None;
                            }
                        }
                    }
                    Step::Wait(secs) => {
                        for _ in 0..secs {
                            self.now += 1;
                            for i in 0..3 {
                                self.input(i, Input::Tick);
                            }
                        }
                    }
                }
            }
        }

        proptest! {
            /// Whatever happens, once two leases passed: every connected
            /// station has exactly its node's entry, held there; no entry
            /// names a dead node or a station connected nowhere.
            #[test]
            fn the_registry_ends_up_naming_exactly_the_live_connections(
                steps in proptest::collection::vec(step(), 1..60)
            ) {
                let mut w = World::new();
                w.run(Step::Wait(1));
                for st in steps {
                    w.run(st);
                }
                w.run(Step::Wait(2 * LEASE.as_secs() + 2));
                for k in 0..6 {
                    let station = format!("S{k}");
                    let got = w.registry.get(&station).map(|(e, _)| e.node.clone());
                    let want = w.conn[k].map(|n| format!("n{n}"));
                    prop_assert_eq!(&got, &want, "{}", station);
                }
                for (i, n) in w.nodes.iter().enumerate() {
                    if let Some(p) = n {
                        let held = w.conn.iter().filter(|c| **c == Some(i)).count();
                        prop_assert_eq!(p.len(), held, "n{}", i);
                        prop_assert_eq!(p.entries(), w.registry.len(), "n{}", i);
                    }
                }
            }
        }
    }
}
