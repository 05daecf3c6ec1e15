//! Which live events a node publishes to the cluster, without I/O.
//!
//! A node publishes what it broadcasts locally and re-broadcasts the other
//! nodes' events into the same local channel (so `/api/events`, the
//! console and the driver app see them). Its publisher reads that channel
//! too, so it must not send the re-broadcast events out again. The relay
//! injects them in order and the channel keeps that order, so an injected
//! event comes back at the front of [`Echoes`]; any other event is local.
//!
//! Each event goes out on a subject of its own kind and station,
//! `{prefix}.events.{type}.{station}` ([`event_subject`]), so NATS delivers
//! a node only what it asks for ([`Following`]): every node takes the
//! other nodes' boots (a station that moves to it later is known to have
//! booted), and every other event only while someone follows its live
//! events (`/api/events`, the console, the driver app). A node nobody
//! watches reads nothing of the other nodes' traffic but their boots.

use std::collections::VecDeque;

/// The subject of a live event of `kind` about `station` (`None`: about
/// no station) under `prefix`.
pub fn event_subject(prefix: &str, kind: &str, station: Option<&str>) -> String {
    format!(
        "{prefix}.events.{kind}.{}",
        station.map_or_else(|| "-".to_owned(), subject_token)
    )
}

/// The subjects of the boots of every station under `prefix`.
pub fn boots_filter(prefix: &str) -> String {
    format!("{prefix}.events.boot.>")
}

/// Whether `subject` is a boot's under `prefix` (one [`boots_filter`]
/// takes).
pub fn is_boot_subject(prefix: &str, subject: &str) -> bool {
    subject
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with(".events.boot."))
}

/// The subjects of every live event under `prefix`.
pub fn all_filter(prefix: &str) -> String {
    format!("{prefix}.events.>")
}

/// A station identity as one NATS subject token: letters, digits, `-` and
/// `_` as they are, every other byte (`.`, `*`, `>`, spaces, `~`, ...) as
/// `~` and two hex digits, so that distinct identities stay distinct
/// tokens and none can reach into another's subject.
pub fn subject_token(station: &str) -> String {
    let mut out = String::with_capacity(station.len());
    for b in station.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("~{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push('~');
    }
    out
}

/// Whether a node takes every node's events or their boots only, from
/// how many follow its live events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Following {
    all: bool,
}

/// What the relay does to its subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    /// Subscribe to [`all_filter`] (keeping the boots').
    TakeAll,
    /// Drop the subscription to [`all_filter`].
    BootsOnly,
}

impl Following {
    /// `followers` follow the node's live events now: the change to make,
    /// if any.
    pub fn followers(&mut self, followers: usize) -> Option<Subscription> {
        let want = followers > 0;
        if want == self.all {
            return None;
        }
        self.all = want;
        Some(if want {
            Subscription::TakeAll
        } else {
            Subscription::BootsOnly
        })
    }

    /// Whether every event is taken.
    pub fn all(&self) -> bool {
        self.all
    }
}

/// How many re-broadcast events may wait to come back through the channel
/// (more than the channel holds: the oldest are dropped).
const MOST: usize = 4096;

/// The re-broadcast events not yet seen back, as JSON text.
#[derive(Debug, Default)]
pub struct Echoes {
    pending: VecDeque<String>,
}

impl Echoes {
    /// An event from another node (its JSON text), about to be
    /// re-broadcast locally.
    pub fn injected(&mut self, text: String) {
        if self.pending.len() == MOST {
            self.pending.pop_front();
        }
        self.pending.push_back(text);
    }

    /// Whether an event read from the local channel is a re-broadcast one
    /// (not published), rather than this node's own (published).
    pub fn is_echo(&mut self, text: &str) -> bool {
        if self.pending.front().is_some_and(|f| f == text) {
            self.pending.pop_front();
            true
        } else {
            false
        }
    }

    /// The reader lagged and missed events: which were echoes is unknown;
    /// the ones missed are forgotten (an echo published again is dropped by
    /// its origin node as its own).
    pub fn lagged(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_goes_out_on_its_kind_and_stations_subject() {
        assert_eq!(
            event_subject("evproto.csms.c1", "boot", Some("CP-1_a")),
            "evproto.csms.c1.events.boot.CP-1_a"
        );
        assert_eq!(
            event_subject("p", "smart_charging", None),
            "p.events.smart_charging.-"
        );
        // dots, wildcards, spaces and the escape itself stay in one token
        assert_eq!(subject_token("a.b*c>d e~"), "a~2Eb~2Ac~3Ed~20e~7E");
        assert_eq!(subject_token("é"), "~C3~A9");
        assert_eq!(subject_token(""), "~");
        // distinct identities, distinct tokens
        assert_ne!(subject_token("a.b"), subject_token("a~2Eb"));
        // the boots' filter takes every station's boot, not other kinds
        let boots = boots_filter("p");
        assert_eq!(boots, "p.events.boot.>");
        assert!(is_boot_subject(
            "p",
            &event_subject("p", "boot", Some("x.y"))
        ));
        assert!(!is_boot_subject(
            "p",
            &event_subject("p", "status", Some("x"))
        ));
        assert!(!is_boot_subject(
            "q",
            &event_subject("p", "boot", Some("x"))
        ));
        // a station named like a kind stays in the station's token
        assert!(!is_boot_subject(
            "p",
            &event_subject("p", "status", Some("boot"))
        ));
        assert_eq!(all_filter("p"), "p.events.>");
    }

    #[test]
    fn every_event_is_taken_while_someone_follows_and_boots_only_after() {
        let mut f = Following::default();
        assert!(!f.all());
        assert_eq!(f.followers(0), None);
        assert_eq!(f.followers(1), Some(Subscription::TakeAll));
        assert_eq!(f.followers(3), None);
        assert!(f.all());
        assert_eq!(f.followers(0), Some(Subscription::BootsOnly));
        assert_eq!(f.followers(0), None);
        assert!(!f.all());
    }

    #[test]
    fn re_broadcast_events_are_not_published_again_local_ones_are() {
        let mut e = Echoes::default();
        e.injected("r1".into());
        e.injected("r2".into());
        // a local event between: published
        assert!(!e.is_echo("l1"));
        assert!(e.is_echo("r1"));
        assert!(!e.is_echo("l2"));
        assert!(e.is_echo("r2"));
        // nothing pending: everything is local
        assert!(!e.is_echo("r2"));
    }

    #[test]
    fn a_local_event_equal_to_a_pending_echo_publishes_that_text_once() {
        let mut e = Echoes::default();
        e.injected("same".into());
        // the local one comes first and is taken for the echo; the echo
        // then goes out in its place: one copy of the text is published
        let published = ["same", "same"]
            .into_iter()
            .filter(|t| !e.is_echo(t))
            .count();
        assert_eq!(published, 1);
    }

    #[test]
    fn after_a_lag_nothing_is_taken_for_an_echo_and_the_queue_is_bounded() {
        let mut e = Echoes::default();
        e.injected("r1".into());
        e.lagged();
        assert!(!e.is_echo("r1"));
        for i in 0..MOST + 10 {
            e.injected(i.to_string());
        }
        assert_eq!(e.pending.len(), MOST);
        assert!(e.is_echo("10"));
    }
}
