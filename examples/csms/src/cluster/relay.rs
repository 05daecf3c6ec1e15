//! Which live events a node publishes to the cluster, without I/O.
//!
//! A node publishes what it broadcasts locally and re-broadcasts the other
//! nodes' events into the same local channel (so `/api/events`, the
//! console and the driver app see them). Its publisher reads that channel
//! too, so it must not send the re-broadcast events out again. The relay
//! injects them in order and the channel keeps that order, so an injected
//! event comes back at the front of [`Echoes`]; any other event is local.

use std::collections::VecDeque;

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
