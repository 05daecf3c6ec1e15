//! Test helpers (not published): a virtual clock and a two-peer harness that
//! runs a charging-station endpoint against a CSMS endpoint with no sockets;
//! and the peer programs of the interop tests ([`peers`]).

#![forbid(unsafe_code)]

pub mod peers;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use evproto_ocpp_proto::{Config, Endpoint, Event, ProtocolVersion, Role};

/// A clock that moves only when told.
#[derive(Debug, Clone, Copy)]
pub struct VirtualClock {
    now: Instant,
}

impl Default for VirtualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtualClock {
    /// A clock at an arbitrary origin.
    pub fn new() -> Self {
        Self {
            now: Instant::now(),
        }
    }
    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }
    /// Moves time forward.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }
}

/// Which peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The charging station endpoint.
    Station,
    /// The CSMS endpoint.
    Csms,
}

/// A charging station and a CSMS endpoint joined by in-memory "wires" whose
/// frames the test can inspect, drop, duplicate or reorder before delivery.
#[derive(Debug)]
pub struct Pair {
    /// The clock both endpoints see.
    pub clock: VirtualClock,
    /// The station.
    pub station: Endpoint,
    /// The CSMS.
    pub csms: Endpoint,
    /// Frames sent by the station, not yet delivered.
    pub to_csms: VecDeque<String>,
    /// Frames sent by the CSMS, not yet delivered.
    pub to_station: VecDeque<String>,
    /// Events the station reported.
    pub station_events: Vec<Event>,
    /// Events the CSMS reported.
    pub csms_events: Vec<Event>,
}

impl Pair {
    /// Two endpoints of `version` with default configs.
    pub fn new(version: ProtocolVersion) -> Self {
        Self::with_configs(version, Config::default(), Config::default())
    }

    /// Two endpoints with the given configs.
    pub fn with_configs(version: ProtocolVersion, station: Config, csms: Config) -> Self {
        Self {
            clock: VirtualClock::new(),
            station: Endpoint::new(Role::ChargingStation, version, station),
            csms: Endpoint::new(Role::Csms, version, csms),
            to_csms: VecDeque::new(),
            to_station: VecDeque::new(),
            station_events: Vec::new(),
            csms_events: Vec::new(),
        }
    }

    /// Drains both endpoints' outputs onto the wires and into the event logs.
    pub fn collect(&mut self) {
        while let Some(t) = self.station.poll_transmit() {
            self.to_csms.push_back(t);
        }
        while let Some(t) = self.csms.poll_transmit() {
            self.to_station.push_back(t);
        }
        while let Some(e) = self.station.poll_event() {
            self.station_events.push(e);
        }
        while let Some(e) = self.csms.poll_event() {
            self.csms_events.push(e);
        }
    }

    /// Delivers one frame waiting for `to`, if any.
    pub fn deliver_one(&mut self, to: Side) -> bool {
        self.collect();
        let now = self.clock.now();
        let frame = match to {
            Side::Csms => self.to_csms.pop_front(),
            Side::Station => self.to_station.pop_front(),
        };
        let Some(frame) = frame else { return false };
        match to {
            Side::Csms => self.csms.handle_text(now, &frame),
            Side::Station => self.station.handle_text(now, &frame),
        }
        self.collect();
        true
    }

    /// Delivers frames both ways until both wires are empty.
    pub fn drive(&mut self) {
        loop {
            self.collect();
            let a = self.deliver_one(Side::Csms);
            let b = self.deliver_one(Side::Station);
            if !a && !b {
                break;
            }
        }
    }

    /// Advances the clock and runs both endpoints' timers.
    pub fn advance(&mut self, d: Duration) {
        self.clock.advance(d);
        let now = self.clock.now();
        self.station.handle_timeout(now);
        self.csms.handle_timeout(now);
        self.collect();
    }

    /// Takes the events reported by `side` so far.
    pub fn take_events(&mut self, side: Side) -> Vec<Event> {
        self.collect();
        match side {
            Side::Station => std::mem::take(&mut self.station_events),
            Side::Csms => std::mem::take(&mut self.csms_events),
        }
    }
}
