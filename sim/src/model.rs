//! The station model: a sans-IO state machine of one charging station with
//! 1–4 connectors. Time comes in as milliseconds since the station started,
//! randomness from a seeded generator, so a run is reproducible; it emits
//! version-neutral [`Msg`]s that the shell renders for the station's OCPP
//! version and sends.

use std::collections::BTreeMap;

/// A small deterministic generator (xorshift64*): no RNG dependency, and the
/// same seed gives the same station behaviour.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in `[lo, hi]` (milliseconds or any integer range).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// How the simulated drivers and hardware behave. Times in milliseconds.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Idle time on an available connector before the next driver arrives.
    pub idle_ms: (u64, u64),
    /// Planned length of a session.
    pub session_ms: (u64, u64),
    /// Interval of meter values during a transaction.
    pub meter_interval_ms: u64,
    /// Hardware power of each connector, W.
    pub max_power_w: f64,
    /// Probability per connector per second of a fault.
    pub fault_per_s: f64,
    /// How long a fault lasts.
    pub fault_ms: (u64, u64),
    /// Probability per station per second of a dropped connection.
    pub disconnect_per_s: f64,
    /// The id tokens drivers present (chosen at random).
    pub tokens: Vec<String>,
    /// Connectors that wear out and fail for good (none by default).
    pub aging: Option<Aging>,
    /// Share of sessions (0 to 1) whose car is bidirectional (V2X): on a
    /// 2.x station every car then reports its needs at the start
    /// (`NotifyEVChargingNeeds`; 2.1 with its discharge power), and a
    /// bidirectional one follows a negative setpoint by discharging, metered
    /// on the export register. 0 (the default): no needs reported.
    pub v2x_share: f64,
    /// Most a bidirectional car gives back, W.
    pub max_discharge_w: f64,
    /// Local cost on a 2.1 station: tariffs, `costDetails`, settlements
    /// (off by default).
    pub local_cost: crate::tariff::LocalCostBehaviour,
    /// Every car on a 2.x station reports its needs at the start
    /// (`NotifyEVChargingNeeds`), bidirectional or not; they also do
    /// whenever [`Behaviour::v2x_share`] is above 0.
    pub ev_needs: bool,
    /// Disturbances of the grid a 2.1 station's DER function sees: each
    /// raises a `NotifyDERAlarm` and ends it ([`GridFault`]).
    pub grid_faults: Vec<GridFault>,
    /// A 2.1 station opens a periodic event stream of its power (stream 1
    /// of monitor 1, `OpenPeriodicEventStream`) once booted, and sends a
    /// value every this many seconds (`NotifyPeriodicEventStream`) until
    /// the CSMS clears the monitor; `None` (the default): no stream.
    pub event_stream_s: Option<u32>,
    /// DER control types (2.1 `DERControlEnumType`: `FreqWatt`, ...) a 2.1
    /// station's DER function does not have: `SetDERControl` of one is
    /// answered `NotSupported` (none by default: it has them all).
    pub der_unsupported: Vec<String>,
    /// Share of cars (0 to 1) that charge on one phase: they draw at most a
    /// third of [`Behaviour::max_power_w`] (one of the station's three
    /// phases), ask for `AC_single_phase` when they report their needs, and
    /// their current shows on L1 alone. 0 (the default): every car uses
    /// three phases.
    pub single_phase_share: f64,
    /// What a car asks for when it reports its needs, as a share of what
    /// its planned session would take at full power (1, the default: all
    /// of it; 0.1: a car that could leave with a tenth of it).
    pub energy_share: f64,
}

/// A disturbance of the grid at a 2.1 station: from `at_ms` (since the
/// model's start) for `lasts_ms`, the station's DER function reports an
/// alarm of its `control_type` control (`NotifyDERAlarm` with the
/// `fault`), then that it ended (`alarmEnded`).
#[derive(Debug, Clone, PartialEq)]
pub struct GridFault {
    /// When it starts, ms since the model's start.
    pub at_ms: u64,
    /// How long it lasts, ms.
    pub lasts_ms: u64,
    /// What happened (a 2.1 `GridEventFaultEnumType`: `OverVoltage`, ...).
    pub fault: String,
    /// The DER control it trips (a 2.1 `DERControlEnumType`: `HVMustTrip`, ...).
    pub control_type: String,
}

/// Connectors that wear out: as a worn connector nears the end of its life,
/// its faults come more often, authorized starts fail, sessions end in
/// faults, its contacts run hot (reported as `Temperature` samples), its
/// supply sags (`Voltage` samples of phase L1-N) and, when
/// [`Aging::crash_per_s`] is set, its station's watchdog reboots it; at the
/// end it fails for good (Faulted, never cleared). What a
/// predictive-maintenance score should catch ahead of the failure.
///
/// Its wear `w` grows from 0 at the start of the model to 1 at the end of
/// its life; the effects grow with `w²` (slowly, then fast).
#[derive(Debug, Clone, PartialEq)]
pub struct Aging {
    /// Share of connectors that wear out (drawn per connector); the others
    /// stay as new.
    pub share: f64,
    /// When a worn connector fails for good, ms since the model's start
    /// (drawn uniformly per connector).
    pub life_ms: (u64, u64),
    /// Fault rate at the end of life, as a multiple of `fault_per_s`.
    pub fault_factor: f64,
    /// Probability that an authorized start fails, at the end of life.
    pub start_failure: f64,
    /// Extra temperature at the end of life, °C.
    pub heat_c: f64,
    /// Voltage lost at the connector at the end of life, V (the samples:
    /// 230 V, an offset of ±3 V per station, ±1 V noise, less this × `w²`).
    pub sag_v: f64,
    /// Watchdog reboots of the station per second at the end of life (×
    /// `w²`; 0, the default: none): it reboots with reason `Watchdog`
    /// ([`Msg::Crash`]).
    pub crash_per_s: f64,
}

impl Default for Aging {
    fn default() -> Self {
        Aging {
            share: 0.1,
            life_ms: (3_600_000, 7_200_000),
            fault_factor: 20.0,
            start_failure: 0.5,
            heat_c: 25.0,
            sag_v: 25.0,
            crash_per_s: 0.0,
        }
    }
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            idle_ms: (2_000, 20_000),
            session_ms: (10_000, 60_000),
            meter_interval_ms: 5_000,
            max_power_w: 22_000.0,
            fault_per_s: 0.0005,
            fault_ms: (5_000, 20_000),
            disconnect_per_s: 0.0002,
            tokens: vec!["SIMTOKEN1".into(), "SIMTOKEN2".into(), "SIMTOKEN3".into()],
            aging: None,
            v2x_share: 0.0,
            max_discharge_w: 11_000.0,
            local_cost: crate::tariff::LocalCostBehaviour::default(),
            ev_needs: false,
            grid_faults: Vec::new(),
            event_stream_s: None,
            der_unsupported: Vec::new(),
            single_phase_share: 0.0,
            energy_share: 1.0,
        }
    }
}

/// A connector's status, in OCPP 1.6 terms (2.x maps them to its five).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Free.
    Available,
    /// A driver plugged in / presented a token; no transaction yet.
    Preparing,
    /// Energy flows.
    Charging,
    /// The transaction ended; the cable is still in.
    Finishing,
    /// Hardware fault.
    Faulted,
    /// Taken out of service by ChangeAvailability.
    Unavailable,
}

/// Why a transaction ended (rendered per version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The driver stopped locally.
    Local,
    /// RemoteStop / RequestStop.
    Remote,
    /// The station was reset.
    Reset,
    /// A fault ended it.
    Fault,
    /// The CSMS did not accept the token.
    DeAuthorized,
}

/// An ongoing transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Tx {
    /// The station's own id (2.x transactionId; 1.6 local reference).
    pub local_id: String,
    /// The CSMS's id (1.6 StartTransaction.conf transactionId).
    pub csms_id: Option<i64>,
    /// The driver's token.
    pub token: String,
    /// The RequestStartTransaction remoteStartId (2.x).
    pub remote_start_id: Option<i64>,
    /// Meter register at start, Wh.
    pub meter_start_wh: f64,
    /// When the driver will stop (ms since start).
    pub stop_at: u64,
    /// Next meter value due (ms).
    pub next_meter: u64,
    /// TransactionEvent sequence number for the next event (2.x).
    pub seq_no: u32,
    /// Whether the start was sent (1.6 needs the CSMS's id first).
    pub started: bool,
    /// Power in the last interval, W (negative: discharging).
    pub power_w: f64,
    /// The car's bidirectional side, when it has one.
    pub v2x: Option<V2x>,
    /// The phases the car charges on (1 or 3).
    pub phases: u8,
    /// The most the car draws, W, when it said (an ISO 15118 car: what it
    /// drew in its charge loop, its demand within its schedule); `None`:
    /// whatever the station gives.
    pub ev_max_w: Option<f64>,
}

/// A bidirectional car's side of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct V2x {
    /// Most it gives back, W.
    pub max_discharge_w: f64,
    /// Export register at the start, Wh.
    pub export_start_wh: f64,
    /// The CSMS's setpoint (2.1 `setpoint` under `CentralSetpoint`), W;
    /// negative discharges.
    pub setpoint_w: Option<f64>,
}

/// One connector (for 2.x: EVSE `id` with connector 1).
#[derive(Debug, Clone)]
pub struct Connector {
    /// 1-based id.
    pub id: u32,
    /// Current status.
    pub status: Status,
    /// The transaction on it.
    pub tx: Option<Tx>,
    /// Energy register, Wh (monotone over the station's life).
    pub register_wh: f64,
    /// Limit set by a charging profile, W.
    pub limit_w: Option<f64>,
    /// When the next driver arrives / the fault clears (ms).
    pub wake_at: u64,
    /// Waiting for the Authorize answer.
    pub authorizing: bool,
    /// When it fails for good, if it wears out ([`Aging`]), ms.
    pub fails_at: Option<u64>,
    /// Energy register of what cars gave back, Wh.
    pub export_register_wh: f64,
}

/// Version-neutral messages the station sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    /// StatusNotification for a connector.
    Status {
        /// Connector id.
        connector: u32,
        /// New status.
        status: Status,
    },
    /// Authorize a token on a connector (the answer goes to [`StationModel::authorized`]).
    Authorize {
        /// Connector id.
        connector: u32,
        /// The token.
        token: String,
    },
    /// StartTransaction (1.6) / TransactionEvent Started (2.x).
    TxStart {
        /// Connector id.
        connector: u32,
        /// The transaction as it starts.
        tx: Tx,
        /// Time of the start (ms since start of the model).
        at: u64,
    },
    /// MeterValues (1.6) / TransactionEvent Updated (2.x).
    TxMeter {
        /// Connector id.
        connector: u32,
        /// Snapshot of the transaction.
        tx: Tx,
        /// Register now, Wh.
        register_wh: f64,
        /// The connector's temperature, °C, when the station measures it
        /// (stations with [`Aging`] configured do, worn or not; sent as a
        /// 1.6 `Temperature` sample; 2.x has no such measurand).
        temperature_c: Option<f64>,
        /// The supply voltage at the connector, phase L1-N, V (stations
        /// with [`Aging`] configured report it).
        voltage_v: Option<f64>,
        /// Export register now, Wh (a bidirectional car's transaction).
        export_wh: Option<f64>,
    },
    /// StopTransaction (1.6) / TransactionEvent Ended (2.x).
    TxEnd {
        /// Connector id.
        connector: u32,
        /// The transaction as it ends.
        tx: Tx,
        /// Register at the end, Wh.
        register_wh: f64,
        /// Why it ended.
        reason: StopReason,
        /// Export register at the end, Wh (a bidirectional car's transaction).
        export_wh: Option<f64>,
    },
    /// NotifyEVChargingNeeds (2.x; sent after the start when
    /// [`Behaviour::v2x_share`] is above 0).
    EvNeeds {
        /// Connector id (EVSE).
        connector: u32,
        /// Energy the car asks for, Wh.
        energy_wh: f64,
        /// When it leaves (ms since start of the model).
        departure_ms: u64,
        /// Most it takes, W.
        max_charge_w: f64,
        /// Most it gives back, W (a bidirectional car).
        max_discharge_w: Option<f64>,
        /// The phases it charges on.
        phases: u8,
    },
    /// A message of the grid side ([`crate::grid`]), 2.1: its action and payload.
    Grid {
        /// The action (`ReportDERControl`, ...).
        action: &'static str,
        /// Its payload.
        payload: serde_json::Value,
    },
    /// NotifyDERAlarm (2.1): a [`GridFault`] began, or ended.
    DerAlarm {
        /// The DER control it trips.
        control_type: String,
        /// What happened.
        fault: String,
        /// Whether it ended.
        ended: bool,
    },
    /// A Heartbeat (TriggerMessage).
    Heartbeat,
    /// A fresh BootNotification (TriggerMessage).
    Boot,
    /// Drop the connection and reconnect (a network glitch).
    Disconnect,
    /// Reboot: close, wait, connect again and boot.
    Reboot,
    /// The station's watchdog rebooted it (a worn connector, [`Aging`]):
    /// as [`Msg::Reboot`], its boot says `Watchdog`.
    Crash,
}

/// A station's answer to a CSMS request, version-neutral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Accepted.
    Accepted,
    /// Rejected.
    Rejected,
    /// Accepted, but the change waits for a running transaction to end.
    Scheduled,
}

/// Counters one station keeps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Transactions started (start sent).
    pub started: u64,
    /// Transactions ended.
    pub ended: u64,
    /// Energy delivered in ended transactions, Wh.
    pub energy_wh: f64,
    /// Faults.
    pub faults: u64,
    /// Authorized starts that failed (a worn connector).
    pub start_failures: u64,
    /// Tokens refused by the CSMS.
    pub auth_rejected: u64,
}

/// One simulated charging station.
#[derive(Debug, Clone)]
pub struct StationModel {
    /// Identity (used in transaction ids).
    pub identity: String,
    /// The connectors.
    pub connectors: Vec<Connector>,
    /// Configuration keys (1.6 GetConfiguration / 2.x GetVariables as `Component.Variable`).
    pub config: BTreeMap<String, String>,
    /// Counters.
    pub tally: Tally,
    behaviour: Behaviour,
    rng: Rng,
    /// Draws of the aging model, apart from `rng` so a model without aging
    /// draws the same numbers as before aging existed.
    wear_rng: Rng,
    /// Draws of the voltage samples and the watchdog, apart from the others
    /// for the same reason.
    supply_rng: Rng,
    /// This station's supply offset from 230 V, V.
    supply_offset_v: f64,
    tx_counter: u64,
    now: u64,
    last_tick: u64,
    reboot_pending: bool,
    /// Of each [`Behaviour::grid_faults`]: 0 not yet, 1 alarm raised, 2 ended.
    grid_faults: Vec<u8>,
}

impl StationModel {
    /// A station with `connectors` (1..=4 are typical) connectors.
    pub fn new(identity: &str, connectors: u32, behaviour: Behaviour, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut wear_rng = Rng::new(seed ^ 0x005E_ED0F_A61E);
        let connectors = (1..=connectors.max(1))
            .map(|id| Connector {
                id,
                status: Status::Available,
                tx: None,
                register_wh: rng.range(0, 5_000_000) as f64,
                limit_w: None,
                wake_at: rng.range(behaviour.idle_ms.0, behaviour.idle_ms.1),
                authorizing: false,
                export_register_wh: 0.0,
                fails_at: behaviour.aging.as_ref().and_then(|a| {
                    wear_rng
                        .chance(a.share)
                        .then(|| wear_rng.range(a.life_ms.0, a.life_ms.1.max(a.life_ms.0)))
                }),
            })
            .collect();
        let grid_faults = vec![0; behaviour.grid_faults.len()];
        let mut supply_rng = Rng::new(seed ^ 0x5A99_1E5A_9000);
        let supply_offset_v = 6.0 * supply_rng.unit() - 3.0;
        let mut config = BTreeMap::new();
        config.insert("HeartbeatInterval".into(), "300".into());
        config.insert(
            "MeterValueSampleInterval".into(),
            (behaviour.meter_interval_ms / 1000).to_string(),
        );
        config.insert("AuthorizeRemoteTxRequests".into(), "false".into());
        StationModel {
            identity: identity.to_owned(),
            connectors,
            config,
            tally: Tally::default(),
            behaviour,
            rng,
            wear_rng,
            supply_rng,
            supply_offset_v,
            tx_counter: 0,
            now: 0,
            last_tick: 0,
            reboot_pending: false,
            grid_faults,
        }
    }

    /// Whether its DER function has controls of `control_type`
    /// ([`Behaviour::der_unsupported`]).
    pub fn der_supports(&self, control_type: &str) -> bool {
        !self
            .behaviour
            .der_unsupported
            .iter()
            .any(|t| t == control_type)
    }

    /// Every connector's status, for a (re)boot.
    pub fn all_status(&self) -> Vec<Msg> {
        self.connectors
            .iter()
            .map(|c| Msg::Status {
                connector: c.id,
                status: c.status,
            })
            .collect()
    }

    fn connector(&mut self, id: u32) -> Option<&mut Connector> {
        self.connectors.iter_mut().find(|c| c.id == id)
    }

    /// Power now, W: the limit (or the station's maximum), or the CSMS's
    /// setpoint for a bidirectional car (negative: it gives back).
    fn power(&self, c: &Connector) -> f64 {
        let phases = c.tx.as_ref().map_or(3, |t| t.phases);
        let p = self.behaviour.max_power_w * f64::from(phases) / 3.0;
        // a car that draws less than the station gives takes only that
        let p = match c.tx.as_ref().and_then(|t| t.ev_max_w) {
            Some(ev) => p.min(ev.max(0.0)),
            None => p,
        };
        let limit = c.limit_w.map_or(p, |l| l.clamp(0.0, p));
        match c.tx.as_ref().and_then(|t| t.v2x.as_ref()) {
            Some(V2x {
                setpoint_w: Some(sp),
                max_discharge_w,
                ..
            }) if *sp < 0.0 => -sp.abs().min(*max_discharge_w).min(p),
            Some(V2x {
                setpoint_w: Some(sp),
                ..
            }) => sp.min(limit),
            _ => limit,
        }
    }

    fn new_tx(&mut self, token: String, remote_start_id: Option<i64>, register_wh: f64) -> Tx {
        self.tx_counter += 1;
        let len = self
            .rng
            .range(self.behaviour.session_ms.0, self.behaviour.session_ms.1);
        // drawn only when some cars are single-phase: seeded runs without
        // them keep their sequence
        let share = self.behaviour.single_phase_share;
        let phases = if share > 0.0 && self.rng.chance(share) {
            1
        } else {
            3
        };
        Tx {
            local_id: format!(
                "{}-{}-{}",
                self.identity,
                self.rng.next_u64() % 1_000_000,
                self.tx_counter
            ),
            csms_id: None,
            token,
            remote_start_id,
            meter_start_wh: register_wh,
            stop_at: self.now + len,
            next_meter: self.now + self.behaviour.meter_interval_ms,
            seq_no: 0,
            started: false,
            power_w: 0.0,
            v2x: None,
            phases,
            ev_max_w: None,
        }
    }

    /// Advances the model to `now_ms` and returns what to send.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Msg> {
        let mut out = Vec::new();
        let dt_ms = now_ms.saturating_sub(self.last_tick);
        self.now = now_ms;
        self.last_tick = now_ms;
        if self.reboot_pending {
            return out;
        }
        self.grid_alarms(now_ms, &mut out);
        let secs = dt_ms as f64 / 1000.0;
        if self.crashes(secs) {
            let (_, crashed) = self.reboot_with(Msg::Crash);
            out.extend(crashed);
            return out;
        }
        if self.rng.chance(self.behaviour.disconnect_per_s * secs) {
            out.push(Msg::Disconnect);
        }
        for i in 0..self.connectors.len() {
            let power = self.power(&self.connectors[i]);
            let fault = self.rng.chance(self.behaviour.fault_per_s * secs);
            if self.worn_out(i, now_ms, &mut out) {
                continue;
            }
            let fault = fault || self.wear_fault(i, secs);
            let c = &mut self.connectors[i];
            // energy flows while charging
            if let (Status::Charging, Some(tx)) = (c.status, c.tx.as_mut()) {
                if tx.started {
                    let wh = power * dt_ms as f64 / 3_600_000.0;
                    if wh >= 0.0 {
                        c.register_wh += wh;
                    } else {
                        c.export_register_wh -= wh;
                    }
                    tx.power_w = power;
                }
            }
            let id = c.id;
            if fault && c.status != Status::Faulted && c.status != Status::Unavailable {
                self.fault(id, &mut out);
                continue;
            }
            let c = &mut self.connectors[i];
            match c.status {
                Status::Faulted if now_ms >= c.wake_at => {
                    c.status = Status::Available;
                    c.wake_at = now_ms
                        + self
                            .rng
                            .range(self.behaviour.idle_ms.0, self.behaviour.idle_ms.1);
                    out.push(Msg::Status {
                        connector: id,
                        status: Status::Available,
                    });
                }
                Status::Available if now_ms >= c.wake_at && !c.authorizing => {
                    // a driver arrives and presents a token
                    let n = self.behaviour.tokens.len().max(1);
                    let token = self
                        .behaviour
                        .tokens
                        .get(self.rng.range(0, n as u64 - 1) as usize)
                        .cloned()
                        .unwrap_or_else(|| "SIMTOKEN".into());
                    let c = &mut self.connectors[i];
                    c.status = Status::Preparing;
                    c.authorizing = true;
                    out.push(Msg::Status {
                        connector: id,
                        status: Status::Preparing,
                    });
                    out.push(Msg::Authorize {
                        connector: id,
                        token,
                    });
                }
                Status::Charging => {
                    let register = c.register_wh;
                    let export = c.export_register_wh;
                    let interval = self.behaviour.meter_interval_ms;
                    let Some(tx) = c.tx.as_mut() else { continue };
                    if !tx.started {
                        continue;
                    }
                    if now_ms >= tx.stop_at {
                        self.end(id, StopReason::Local, &mut out);
                    } else if now_ms >= tx.next_meter {
                        tx.next_meter = now_ms + interval;
                        let snapshot = tx.clone();
                        tx.seq_no += 1;
                        let temperature_c = self.temperature(i, power);
                        let voltage_v = self.voltage(i);
                        let export_wh = snapshot.v2x.as_ref().map(|_| export);
                        out.push(Msg::TxMeter {
                            connector: id,
                            tx: snapshot,
                            register_wh: register,
                            temperature_c,
                            voltage_v,
                            export_wh,
                        });
                    }
                }
                Status::Finishing if now_ms >= c.wake_at => {
                    c.status = Status::Available;
                    c.wake_at = now_ms
                        + self
                            .rng
                            .range(self.behaviour.idle_ms.0, self.behaviour.idle_ms.1);
                    out.push(Msg::Status {
                        connector: id,
                        status: Status::Available,
                    });
                }
                _ => {}
            }
        }
        out
    }

    /// The [`GridFault`]s that began or ended by `now_ms`: their alarms.
    fn grid_alarms(&mut self, now_ms: u64, out: &mut Vec<Msg>) {
        for (f, state) in self.behaviour.grid_faults.iter().zip(&mut self.grid_faults) {
            let ended = match *state {
                0 if now_ms >= f.at_ms => false,
                1 if now_ms >= f.at_ms.saturating_add(f.lasts_ms) => true,
                _ => continue,
            };
            *state += 1;
            out.push(Msg::DerAlarm {
                control_type: f.control_type.clone(),
                fault: f.fault.clone(),
                ended,
            });
        }
    }

    /// How worn connector `i` is now: 0 (new, or not aging) to 1 (its end).
    pub fn wear(&self, i: usize) -> f64 {
        match self.connectors.get(i).and_then(|c| c.fails_at) {
            Some(end) if end > 0 => (self.now as f64 / end as f64).min(1.0),
            Some(_) => 1.0,
            None => 0.0,
        }
    }

    /// A worn connector at the end of its life fails for good (once).
    fn worn_out(&mut self, i: usize, now_ms: u64, out: &mut Vec<Msg>) -> bool {
        let c = &self.connectors[i];
        if c.fails_at.is_none_or(|end| now_ms < end) {
            return false;
        }
        if c.status == Status::Faulted && c.wake_at == u64::MAX {
            return true;
        }
        let id = c.id;
        self.fault(id, out);
        if let Some(c) = self.connector(id) {
            c.wake_at = u64::MAX;
        }
        true
    }

    /// The extra faults of a worn connector over `secs`.
    fn wear_fault(&mut self, i: usize, secs: f64) -> bool {
        let Some(a) = self.behaviour.aging.as_ref() else {
            return false;
        };
        let w = self.wear(i);
        if w <= 0.0 {
            return false;
        }
        let p = self.behaviour.fault_per_s * a.fault_factor * w * w * secs;
        self.wear_rng.chance(p)
    }

    /// The connector's temperature while it delivers `power_w`, when the
    /// station reports temperatures (aging configured): 25 °C ambient, up to
    /// 15 °C from the load, ±2 °C noise, and the heat of its wear.
    fn temperature(&mut self, i: usize, power_w: f64) -> Option<f64> {
        let heat = self.behaviour.aging.as_ref()?.heat_c;
        let w = self.wear(i);
        let load = (power_w / self.behaviour.max_power_w.max(1.0)).clamp(0.0, 1.0);
        let noise = 4.0 * self.wear_rng.unit() - 2.0;
        Some(((25.0 + 15.0 * load + noise + heat * w * w) * 10.0).round() / 10.0)
    }

    /// The connector's supply voltage (phase L1-N), when the station
    /// reports it (aging configured): 230 V and the station's offset, ±1 V
    /// noise, less the sag of its wear.
    fn voltage(&mut self, i: usize) -> Option<f64> {
        let sag = self.behaviour.aging.as_ref()?.sag_v;
        let w = self.wear(i);
        let noise = 2.0 * self.supply_rng.unit() - 1.0;
        Some(((230.0 + self.supply_offset_v + noise - sag * w * w) * 10.0).round() / 10.0)
    }

    /// Whether the watchdog reboots the station over `secs`: each worn
    /// connector (still in service) adds `crash_per_s × w²`.
    fn crashes(&mut self, secs: f64) -> bool {
        let Some(rate) = self.behaviour.aging.as_ref().map(|a| a.crash_per_s) else {
            return false;
        };
        if rate <= 0.0 {
            return false;
        }
        let p: f64 = (0..self.connectors.len())
            .filter(|&i| self.connectors[i].wake_at != u64::MAX)
            .map(|i| rate * self.wear(i).powi(2) * secs)
            .sum();
        p > 0.0 && self.supply_rng.chance(p)
    }

    fn fault(&mut self, id: u32, out: &mut Vec<Msg>) {
        self.tally.faults += 1;
        if self.connector(id).is_some_and(|c| c.tx.is_some()) {
            self.end(id, StopReason::Fault, out);
        }
        let wake = self.now
            + self
                .rng
                .range(self.behaviour.fault_ms.0, self.behaviour.fault_ms.1);
        if let Some(c) = self.connector(id) {
            c.status = Status::Faulted;
            c.authorizing = false;
            c.wake_at = wake;
        }
        out.push(Msg::Status {
            connector: id,
            status: Status::Faulted,
        });
    }

    /// Ends the transaction on `id` (if any) and emits its end and status.
    fn end(&mut self, id: u32, reason: StopReason, out: &mut Vec<Msg>) {
        let wake = self.now + 2_000;
        let Some(c) = self.connector(id) else { return };
        let Some(tx) = c.tx.take() else { return };
        let register = c.register_wh;
        let export_wh = tx.v2x.as_ref().map(|_| c.export_register_wh);
        c.status = Status::Finishing;
        c.wake_at = wake;
        if tx.started {
            self.tally.ended += 1;
            self.tally.energy_wh += register - tx.meter_start_wh;
            out.push(Msg::TxEnd {
                connector: id,
                tx,
                register_wh: register,
                reason,
                export_wh,
            });
        }
        out.push(Msg::Status {
            connector: id,
            status: Status::Finishing,
        });
    }

    fn start(&mut self, id: u32, token: String, remote_start_id: Option<i64>, out: &mut Vec<Msg>) {
        let register = self.connector(id).map_or(0.0, |c| c.register_wh);
        let export = self.connector(id).map_or(0.0, |c| c.export_register_wh);
        let mut tx = self.new_tx(token, remote_start_id, register);
        let share = self.behaviour.v2x_share;
        if share > 0.0 && self.wear_rng.chance(share) {
            tx.v2x = Some(V2x {
                max_discharge_w: self.behaviour.max_discharge_w,
                export_start_wh: export,
                setpoint_w: None,
            });
        }
        let now = self.now;
        if let Some(c) = self.connector(id) {
            c.status = Status::Charging;
            c.authorizing = false;
            c.tx = Some(Tx {
                started: true,
                seq_no: 1,
                ..tx.clone()
            });
        }
        self.tally.started += 1;
        let needs = (share > 0.0 || self.behaviour.ev_needs).then(|| Msg::EvNeeds {
            connector: id,
            // what the planned session would take at full power (times the
            // behaviour's share); a bidirectional car half of it (room left
            // to give back)
            energy_wh: (self.behaviour.max_power_w * (tx.stop_at - now) as f64 / 3_600_000.0
                * self.behaviour.energy_share
                * if tx.v2x.is_some() { 0.5 } else { 1.0 })
            .round(),
            departure_ms: tx.stop_at,
            max_charge_w: self.behaviour.max_power_w * f64::from(tx.phases) / 3.0,
            phases: tx.phases,
            max_discharge_w: tx.v2x.as_ref().map(|v| v.max_discharge_w),
        });
        out.push(Msg::TxStart {
            connector: id,
            tx,
            at: now,
        });
        out.extend(needs);
        out.push(Msg::Status {
            connector: id,
            status: Status::Charging,
        });
    }

    /// The CSMS's answer to an Authorize for `connector`.
    pub fn authorized(&mut self, connector: u32, token: &str, accepted: bool) -> Vec<Msg> {
        let mut out = Vec::new();
        let Some(c) = self.connector(connector) else {
            return out;
        };
        if !c.authorizing || c.status != Status::Preparing {
            return out; // a fault or reset came in between
        }
        if accepted {
            let i = self.connectors.iter().position(|c| c.id == connector);
            let fails = match (self.behaviour.aging.as_ref(), i) {
                (Some(a), Some(i)) => {
                    let w = self.wear(i);
                    let p = a.start_failure * w * w;
                    w > 0.0 && self.wear_rng.chance(p)
                }
                _ => false,
            };
            if fails {
                // the contactor does not close: the driver gets a fault
                self.tally.start_failures += 1;
                self.fault(connector, &mut out);
                return out;
            }
            self.start(connector, token.to_owned(), None, &mut out);
            out
        } else {
            self.tally.auth_rejected += 1;
            self.authorize_failed(connector)
        }
    }

    /// The CSMS's answer for an ISO 15118 car at `connector`, which drew
    /// at most `drawn_w` in its charge loop: as [`StationModel::authorized`], and
    /// the transaction's power (its meter values) follows what the car
    /// drew, within the station's limits.
    pub fn authorized_drawing(
        &mut self,
        connector: u32,
        token: &str,
        accepted: bool,
        drawn_w: Option<f64>,
    ) -> Vec<Msg> {
        let out = self.authorized(connector, token, accepted);
        if let Some(tx) = self.connector(connector).and_then(|c| c.tx.as_mut()) {
            tx.ev_max_w = drawn_w.filter(|w| *w > 0.0);
        }
        out
    }

    /// The driver gives up waiting for an authorization (refused, or the
    /// Authorize could not be delivered): the connector frees up.
    pub fn authorize_failed(&mut self, connector: u32) -> Vec<Msg> {
        let wake = self.now
            + self
                .rng
                .range(self.behaviour.idle_ms.0, self.behaviour.idle_ms.1);
        let mut out = Vec::new();
        let Some(c) = self.connector(connector) else {
            return out;
        };
        if c.authorizing && c.status == Status::Preparing {
            c.authorizing = false;
            c.status = Status::Available;
            c.wake_at = wake;
            out.push(Msg::Status {
                connector,
                status: Status::Available,
            });
        }
        out
    }

    /// The end of the run: every driver stops their session.
    pub fn stop_all(&mut self, now_ms: u64) -> Vec<Msg> {
        self.now = now_ms;
        let mut out = Vec::new();
        let ids: Vec<u32> = self
            .connectors
            .iter()
            .filter(|c| c.tx.is_some())
            .map(|c| c.id)
            .collect();
        for id in ids {
            self.end(id, StopReason::Local, &mut out);
        }
        out
    }

    /// The CSMS's answer to a 1.6 StartTransaction: its transaction id and
    /// whether the token was accepted (a refused token ends the transaction
    /// with `DeAuthorized`).
    pub fn start_confirmed(
        &mut self,
        connector: u32,
        local_id: &str,
        csms_id: i64,
        accepted: bool,
    ) -> Vec<Msg> {
        let mut out = Vec::new();
        let Some(c) = self.connector(connector) else {
            return out;
        };
        match c.tx.as_mut() {
            Some(tx) if tx.local_id == local_id => tx.csms_id = Some(csms_id),
            _ => return out,
        }
        if !accepted {
            self.end(connector, StopReason::DeAuthorized, &mut out);
        }
        out
    }

    /// A 1.6 StartTransaction that could not be delivered: the transaction
    /// is abandoned (nothing was billed), the connector frees up.
    pub fn start_failed(&mut self, connector: u32, local_id: &str) -> Vec<Msg> {
        let wake = self.now + 2_000;
        let mut out = Vec::new();
        let Some(c) = self.connector(connector) else {
            return out;
        };
        if c.tx.as_ref().is_some_and(|t| t.local_id == local_id) {
            c.tx = None;
            c.status = Status::Finishing;
            c.wake_at = wake;
            self.tally.started -= 1;
            out.push(Msg::Status {
                connector,
                status: Status::Finishing,
            });
        }
        out
    }

    /// RemoteStartTransaction / RequestStartTransaction: starts on the given
    /// connector, or the first available one.
    pub fn remote_start(
        &mut self,
        connector: Option<u32>,
        token: &str,
        remote_start_id: Option<i64>,
    ) -> (Answer, Vec<Msg>) {
        let mut out = Vec::new();
        let target = self
            .connectors
            .iter()
            .find(|c| {
                connector.is_none_or(|id| c.id == id)
                    && matches!(c.status, Status::Available | Status::Preparing)
                    && c.tx.is_none()
            })
            .map(|c| c.id);
        let Some(id) = target else {
            return (Answer::Rejected, out);
        };
        if self.reboot_pending {
            return (Answer::Rejected, out);
        }
        if self
            .connector(id)
            .is_some_and(|c| c.status == Status::Available)
        {
            out.push(Msg::Status {
                connector: id,
                status: Status::Preparing,
            });
        }
        self.start(id, token.to_owned(), remote_start_id, &mut out);
        (Answer::Accepted, out)
    }

    /// RemoteStopTransaction / RequestStopTransaction by the CSMS's id (1.6)
    /// or the station's id (2.x).
    pub fn remote_stop(&mut self, id: &str) -> (Answer, Vec<Msg>) {
        let mut out = Vec::new();
        let found = self.connectors.iter().find(|c| {
            c.tx.as_ref()
                .is_some_and(|t| t.local_id == id || t.csms_id.is_some_and(|n| n.to_string() == id))
        });
        let Some(cid) = found.map(|c| c.id) else {
            return (Answer::Rejected, out);
        };
        self.end(cid, StopReason::Remote, &mut out);
        (Answer::Accepted, out)
    }

    /// Reset: every transaction ends, then the station reboots.
    pub fn reset(&mut self) -> (Answer, Vec<Msg>) {
        self.reboot_with(Msg::Reboot)
    }

    /// Every transaction ends, then the station reboots (`last`:
    /// [`Msg::Reboot`] or [`Msg::Crash`]).
    fn reboot_with(&mut self, last: Msg) -> (Answer, Vec<Msg>) {
        let mut out = Vec::new();
        let ids: Vec<u32> = self
            .connectors
            .iter()
            .filter(|c| c.tx.is_some())
            .map(|c| c.id)
            .collect();
        for id in ids {
            self.end(id, StopReason::Reset, &mut out);
        }
        out.retain(|m| !matches!(m, Msg::Status { .. }));
        for c in &mut self.connectors {
            c.authorizing = false;
            if c.status != Status::Unavailable {
                c.status = Status::Available;
            }
            c.limit_w = None;
        }
        self.reboot_pending = true;
        out.push(last);
        (Answer::Accepted, out)
    }

    /// The shell rebooted the station: it runs again.
    pub fn rebooted(&mut self) {
        self.reboot_pending = false;
        for i in 0..self.connectors.len() {
            let wake = self.now
                + self
                    .rng
                    .range(self.behaviour.idle_ms.0, self.behaviour.idle_ms.1);
            self.connectors[i].wake_at = wake;
        }
    }

    /// SetChargingProfile: limit `connector` (0 or `None` = all) to `limit_w`.
    pub fn set_limit(&mut self, connector: Option<u32>, limit_w: f64) -> Answer {
        if !(limit_w.is_finite() && limit_w >= 0.0) {
            return Answer::Rejected;
        }
        let mut any = false;
        for c in &mut self.connectors {
            if connector.is_none_or(|id| id == 0 || id == c.id) {
                c.limit_w = Some(limit_w);
                any = true;
            }
        }
        if any {
            Answer::Accepted
        } else {
            Answer::Rejected
        }
    }

    /// A 2.1 charging profile's setpoint (`CentralSetpoint`) for the
    /// transaction on `connector`: negative discharges. Rejected when no
    /// transaction runs there, or when it is negative and the car is not
    /// bidirectional.
    pub fn set_setpoint(&mut self, connector: Option<u32>, setpoint_w: f64) -> Answer {
        if !setpoint_w.is_finite() {
            return Answer::Rejected;
        }
        let Some(c) = self
            .connectors
            .iter_mut()
            .find(|c| connector.is_none_or(|id| id == 0 || id == c.id) && c.tx.is_some())
        else {
            return Answer::Rejected;
        };
        match c.tx.as_mut().and_then(|t| t.v2x.as_mut()) {
            Some(v) => {
                v.setpoint_w = Some(setpoint_w);
                Answer::Accepted
            }
            // a car that only charges: a setpoint to charge is a limit
            None if setpoint_w >= 0.0 => {
                c.limit_w = Some(setpoint_w);
                Answer::Accepted
            }
            None => Answer::Rejected,
        }
    }

    /// The hardware's power of each connector, W.
    pub fn max_power_w(&self) -> f64 {
        self.behaviour.max_power_w
    }

    /// The limit the station's charging profiles give `connector` now, W
    /// (`None`: none limits it).
    pub fn follow_limit(&mut self, connector: u32, limit_w: Option<f64>) {
        if let Some(c) = self.connector(connector) {
            c.limit_w = limit_w.filter(|w| w.is_finite() && *w >= 0.0);
        }
    }

    /// ClearChargingProfile: lift every limit.
    pub fn clear_limits(&mut self) -> Answer {
        let had = self.connectors.iter().any(|c| {
            c.limit_w.is_some()
                || c.tx
                    .as_ref()
                    .is_some_and(|t| t.v2x.as_ref().is_some_and(|v| v.setpoint_w.is_some()))
        });
        for c in &mut self.connectors {
            c.limit_w = None;
            if let Some(v) = c.tx.as_mut().and_then(|t| t.v2x.as_mut()) {
                v.setpoint_w = None;
            }
        }
        if had {
            Answer::Accepted
        } else {
            Answer::Rejected
        }
    }

    /// ChangeAvailability of `connector` (0 or `None` = the whole station).
    pub fn change_availability(
        &mut self,
        connector: Option<u32>,
        operative: bool,
    ) -> (Answer, Vec<Msg>) {
        let mut out = Vec::new();
        let mut answer = Answer::Accepted;
        let now = self.now;
        let mut any = false;
        for c in &mut self.connectors {
            if !connector.is_none_or(|id| id == 0 || id == c.id) {
                continue;
            }
            any = true;
            if c.tx.is_some() {
                answer = Answer::Scheduled;
                continue;
            }
            let status = if operative {
                Status::Available
            } else {
                Status::Unavailable
            };
            if operative && c.status != Status::Unavailable {
                continue;
            }
            c.status = status;
            c.authorizing = false;
            c.wake_at = now + 2_000;
            out.push(Msg::Status {
                connector: c.id,
                status,
            });
        }
        if !any {
            return (Answer::Rejected, out);
        }
        (answer, out)
    }

    /// Where a connector's energy register stands, Wh.
    pub fn register(&self, connector: u32) -> Option<f64> {
        self.connectors
            .iter()
            .find(|c| c.id == connector)
            .map(|c| c.register_wh)
    }

    /// The station's power now, W: what its transactions draw (negative:
    /// a car gives back).
    pub fn power_w(&self) -> f64 {
        self.connectors
            .iter()
            .filter_map(|c| c.tx.as_ref().filter(|t| t.started).map(|t| t.power_w))
            .sum()
    }

    /// The periodic event stream the station opens, if any: its interval, s.
    pub fn event_stream_s(&self) -> Option<u32> {
        self.behaviour.event_stream_s
    }

    /// Whether a reset is waiting for the reboot.
    pub fn reboot_pending(&self) -> bool {
        self.reboot_pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet() -> Behaviour {
        Behaviour {
            fault_per_s: 0.0,
            disconnect_per_s: 0.0,
            ..Behaviour::default()
        }
    }

    fn run(m: &mut StationModel, from: u64, to: u64, step: u64) -> Vec<Msg> {
        let mut out = Vec::new();
        let mut t = from;
        while t <= to {
            for msg in m.tick(t) {
                if let Msg::Authorize { connector, token } = &msg {
                    let (c, tk) = (*connector, token.clone());
                    out.push(msg);
                    out.extend(m.authorized(c, &tk, true));
                    continue;
                }
                out.push(msg);
            }
            t += step;
        }
        out
    }

    #[test]
    fn a_driver_arrives_charges_and_leaves() {
        let mut m = StationModel::new("S1", 2, quiet(), 7);
        let out = run(&mut m, 0, 200_000, 1000);
        let starts = out
            .iter()
            .filter(|m| matches!(m, Msg::TxStart { .. }))
            .count();
        let ends: Vec<_> = out
            .iter()
            .filter(|m| matches!(m, Msg::TxEnd { .. }))
            .collect();
        assert!(starts >= 2, "{starts} starts");
        assert!(!ends.is_empty());
        for e in &ends {
            let Msg::TxEnd {
                tx,
                register_wh,
                reason,
                ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(*reason, StopReason::Local);
            assert!(*register_wh > tx.meter_start_wh, "energy flowed");
        }
        assert!(out.iter().any(|m| matches!(m, Msg::TxMeter { .. })));
        assert_eq!(m.tally.started, starts as u64);
    }

    #[test]
    fn same_seed_same_story() {
        let a = run(
            &mut StationModel::new("S", 3, Behaviour::default(), 42),
            0,
            300_000,
            1000,
        );
        let b = run(
            &mut StationModel::new("S", 3, Behaviour::default(), 42),
            0,
            300_000,
            1000,
        );
        assert_eq!(a, b);
        let c = run(
            &mut StationModel::new("S", 3, Behaviour::default(), 43),
            0,
            300_000,
            1000,
        );
        assert_ne!(a, c);
    }

    /// A one-connector station whose driver arrives at once and stays
    /// `session_ms`, and the Authorize it sends at 1 s: (connector, token).
    fn driver_at_the_door(session_ms: u64) -> (StationModel, u32, String) {
        let mut m = StationModel::new(
            "S",
            1,
            Behaviour {
                idle_ms: (0, 0),
                session_ms: (session_ms, session_ms),
                ..quiet()
            },
            1,
        );
        let out = m.tick(1000);
        let Some(Msg::Authorize { connector, token }) = out
            .iter()
            .find(|m| matches!(m, Msg::Authorize { .. }))
            .cloned()
        else {
            panic!("no authorize in {out:?}")
        };
        (m, connector, token)
    }

    #[test]
    fn rejected_token_frees_the_connector() {
        let (mut m, connector, token) = driver_at_the_door(quiet().session_ms.0);
        let out = m.authorized(connector, &token, false);
        assert_eq!(
            out,
            vec![Msg::Status {
                connector,
                status: Status::Available
            }]
        );
        assert_eq!(m.tally.auth_rejected, 1);
        assert!(m.connectors[0].tx.is_none());
        // a late duplicate answer changes nothing
        assert!(m.authorized(connector, &token, true).is_empty());
    }

    #[test]
    fn remote_start_and_stop() {
        let mut m = StationModel::new(
            "S",
            2,
            Behaviour {
                idle_ms: (1_000_000, 1_000_000),
                ..quiet()
            },
            3,
        );
        let (a, out) = m.remote_start(Some(2), "RFID1", Some(77));
        assert_eq!(a, Answer::Accepted);
        let Some(Msg::TxStart {
            connector: 2, tx, ..
        }) = out
            .iter()
            .find(|m| matches!(m, Msg::TxStart { .. }))
            .cloned()
        else {
            panic!("{out:?}")
        };
        assert_eq!(tx.remote_start_id, Some(77));
        assert_eq!(tx.token, "RFID1");
        // busy connector: rejected
        assert_eq!(m.remote_start(Some(2), "X", None).0, Answer::Rejected);
        // unknown transaction: rejected
        assert_eq!(m.remote_stop("nope").0, Answer::Rejected);
        run(&mut m, 1000, 3000, 1000);
        let (a, out) = m.remote_stop(&tx.local_id);
        assert_eq!(a, Answer::Accepted);
        assert!(out.iter().any(|m| matches!(
            m,
            Msg::TxEnd {
                reason: StopReason::Remote,
                ..
            }
        )));
        // 1.6: stop by the CSMS's id
        let (_, out) = m.remote_start(None, "RFID2", None);
        let Some(Msg::TxStart { connector, tx, .. }) =
            out.into_iter().find(|m| matches!(m, Msg::TxStart { .. }))
        else {
            panic!()
        };
        assert!(m
            .start_confirmed(connector, &tx.local_id, 5001, true)
            .is_empty());
        assert_eq!(m.remote_stop("5001").0, Answer::Accepted);
    }

    #[test]
    fn refused_start_deauthorizes() {
        let mut m = StationModel::new("S", 1, quiet(), 3);
        let (_, out) = m.remote_start(None, "BAD", None);
        let Some(Msg::TxStart { connector, tx, .. }) =
            out.into_iter().find(|m| matches!(m, Msg::TxStart { .. }))
        else {
            panic!()
        };
        let out = m.start_confirmed(connector, &tx.local_id, 9, false);
        assert!(
            matches!(
                out[0],
                Msg::TxEnd {
                    reason: StopReason::DeAuthorized,
                    ..
                }
            ),
            "{out:?}"
        );
    }

    #[test]
    fn charging_profile_limits_power() {
        let mut m = StationModel::new(
            "S",
            1,
            Behaviour {
                idle_ms: (100_000_000, 100_000_000),
                session_ms: (100_000_000, 100_000_000),
                ..quiet()
            },
            3,
        );
        m.remote_start(Some(1), "T", None);
        let r0 = m.register(1).unwrap();
        m.tick(3_600_000); // one hour at full power
        let full = m.register(1).unwrap() - r0;
        assert!((full - 22_000.0).abs() < 1e-6, "{full}");
        assert_eq!(m.set_limit(Some(1), 3_700.0), Answer::Accepted);
        assert_eq!(m.set_limit(Some(1), f64::NAN), Answer::Rejected);
        assert_eq!(m.set_limit(Some(9), 1.0), Answer::Rejected);
        let r1 = m.register(1).unwrap();
        m.tick(7_200_000);
        let limited = m.register(1).unwrap() - r1;
        assert!((limited - 3_700.0).abs() < 1e-6, "{limited}");
        assert_eq!(m.clear_limits(), Answer::Accepted);
        assert_eq!(m.clear_limits(), Answer::Rejected);
    }

    /// An ISO 15118 car's transaction draws what the car drew in its
    /// charge loop (below the station's 22 kW), and a lower limit holds.
    #[test]
    fn an_iso15118_cars_transaction_draws_what_its_loop_drew() {
        let (mut m, connector, token) = driver_at_the_door(100_000_000);
        let out = m.authorized_drawing(connector, &token, true, Some(8_000.0));
        assert!(
            out.iter().any(|m| matches!(m, Msg::TxStart { .. })),
            "{out:?}"
        );
        let r0 = m.register(connector).unwrap();
        m.tick(1000 + 3_600_000);
        let drawn = m.register(connector).unwrap() - r0;
        assert!((drawn - 8_000.0).abs() < 1e-6, "{drawn}");
        assert_eq!(m.set_limit(Some(connector), 3_700.0), Answer::Accepted);
        let r1 = m.register(connector).unwrap();
        m.tick(1000 + 2 * 3_600_000);
        let limited = m.register(connector).unwrap() - r1;
        assert!((limited - 3_700.0).abs() < 1e-6, "{limited}");
        // a car that drew nothing (or did not say) takes what the station gives
        let (mut m, connector, token) = driver_at_the_door(100_000_000);
        m.authorized_drawing(connector, &token, true, Some(0.0));
        let r2 = m.register(connector).unwrap();
        m.tick(1000 + 3_600_000);
        let full = m.register(connector).unwrap() - r2;
        assert!((full - 22_000.0).abs() < 1e-6, "{full}");
    }

    #[test]
    fn reset_ends_transactions_and_reboots() {
        let mut m = StationModel::new("S", 2, quiet(), 5);
        m.remote_start(Some(1), "T", None);
        let (a, out) = m.reset();
        assert_eq!(a, Answer::Accepted);
        assert!(matches!(
            out[0],
            Msg::TxEnd {
                reason: StopReason::Reset,
                ..
            }
        ));
        assert_eq!(out.last(), Some(&Msg::Reboot));
        assert!(m.reboot_pending());
        assert!(m.tick(10_000).is_empty(), "nothing happens while rebooting");
        assert_eq!(m.remote_start(None, "T", None).0, Answer::Rejected);
        m.rebooted();
        assert!(m.all_status().iter().all(|s| matches!(
            s,
            Msg::Status {
                status: Status::Available,
                ..
            }
        )));
    }

    #[test]
    fn faults_end_transactions_and_clear() {
        let b = Behaviour {
            fault_per_s: 1.0,
            fault_ms: (3_000, 3_000),
            ..quiet()
        };
        let mut m = StationModel::new("S", 1, b, 5);
        m.remote_start(Some(1), "T", None);
        let out = m.tick(1000);
        assert!(
            matches!(
                out[0],
                Msg::TxEnd {
                    reason: StopReason::Fault,
                    ..
                }
            ),
            "{out:?}"
        );
        assert!(out.contains(&Msg::Status {
            connector: 1,
            status: Status::Faulted
        }));
        m.behaviour.fault_per_s = 0.0;
        let out = m.tick(4000);
        assert!(
            out.contains(&Msg::Status {
                connector: 1,
                status: Status::Available
            }),
            "{out:?}"
        );
    }

    #[test]
    fn availability() {
        let mut m = StationModel::new("S", 2, quiet(), 5);
        m.remote_start(Some(1), "T", None);
        let (a, out) = m.change_availability(None, false);
        assert_eq!(a, Answer::Scheduled);
        assert_eq!(
            out,
            vec![Msg::Status {
                connector: 2,
                status: Status::Unavailable
            }]
        );
        assert!(m
            .tick(100_000)
            .iter()
            .all(|m| !matches!(m, Msg::Authorize { connector: 2, .. })));
        let (a, out) = m.change_availability(Some(2), true);
        assert_eq!(a, Answer::Accepted);
        assert_eq!(
            out,
            vec![Msg::Status {
                connector: 2,
                status: Status::Available
            }]
        );
        assert_eq!(m.change_availability(Some(7), true).0, Answer::Rejected);
    }

    #[test]
    fn a_bidirectional_car_follows_a_negative_setpoint_on_the_export_register() {
        let b = Behaviour {
            v2x_share: 1.0,
            max_discharge_w: 7_000.0,
            session_ms: (3_600_000, 3_600_000),
            idle_ms: (1_000, 1_000),
            meter_interval_ms: 60_000,
            ..quiet()
        };
        let mut m = StationModel::new("CS", 1, b, 3);
        let out = run(&mut m, 0, 2_000, 1_000);
        let needs = out.iter().find_map(|x| match x {
            Msg::EvNeeds {
                max_discharge_w,
                departure_ms,
                energy_wh,
                ..
            } => Some((*max_discharge_w, *departure_ms, *energy_wh)),
            _ => None,
        });
        let (discharge, departure, energy) = needs.expect("needs reported after the start");
        assert_eq!(discharge, Some(7_000.0));
        assert!(departure > 3_600_000 && energy > 0.0);
        let import0 = m.register(1).unwrap();
        assert_eq!(m.set_setpoint(Some(1), -5_000.0), Answer::Accepted);
        // half an hour at -5 kW: 2.5 kWh out, nothing in
        let out = run(&mut m, 3_000, 1_803_000, 1_000);
        let c = &m.connectors[0];
        assert!(
            (c.export_register_wh - 2_500.0).abs() < 5.0,
            "{}",
            c.export_register_wh
        );
        assert!((m.register(1).unwrap() - import0).abs() < 1e-9);
        let last = out.iter().rev().find_map(|x| match x {
            Msg::TxMeter { tx, export_wh, .. } => Some((tx.power_w, *export_wh)),
            _ => None,
        });
        let (power, export) = last.expect("meter values");
        assert_eq!(power, -5_000.0);
        assert!(export.is_some_and(|e| e > 2_400.0));
        // above the car's discharge power: capped
        assert_eq!(m.set_setpoint(Some(1), -20_000.0), Answer::Accepted);
        assert_eq!(m.power(&m.connectors[0]), -7_000.0);
        // cleared: charges again
        assert_eq!(m.clear_limits(), Answer::Accepted);
        assert!(m.power(&m.connectors[0]) > 0.0);
    }

    #[test]
    fn a_grid_fault_raises_a_der_alarm_then_ends_it_once() {
        let b = Behaviour {
            idle_ms: (10_000_000, 10_000_000),
            grid_faults: vec![GridFault {
                at_ms: 5_000,
                lasts_ms: 3_000,
                fault: "OverVoltage".into(),
                control_type: "HVMustTrip".into(),
            }],
            ..quiet()
        };
        let mut m = StationModel::new("CS", 1, b, 3);
        let alarms = |out: Vec<Msg>| -> Vec<(String, String, bool)> {
            out.into_iter()
                .filter_map(|x| match x {
                    Msg::DerAlarm {
                        control_type,
                        fault,
                        ended,
                    } => Some((control_type, fault, ended)),
                    _ => None,
                })
                .collect()
        };
        assert!(alarms(run(&mut m, 0, 4_000, 1_000)).is_empty());
        assert_eq!(
            alarms(run(&mut m, 5_000, 7_000, 1_000)),
            vec![("HVMustTrip".into(), "OverVoltage".into(), false)]
        );
        assert_eq!(
            alarms(run(&mut m, 8_000, 20_000, 1_000)),
            vec![("HVMustTrip".into(), "OverVoltage".into(), true)]
        );
    }

    #[test]
    fn cars_that_only_charge_report_their_needs_when_asked_to() {
        let b = Behaviour {
            session_ms: (3_600_000, 3_600_000),
            idle_ms: (1_000, 1_000),
            ev_needs: true,
            ..quiet()
        };
        let mut m = StationModel::new("CS", 1, b, 3);
        let out = run(&mut m, 0, 2_000, 1_000);
        let needs = out.iter().find_map(|x| match x {
            Msg::EvNeeds {
                max_discharge_w, ..
            } => Some(*max_discharge_w),
            _ => None,
        });
        assert_eq!(needs, Some(None), "needs of a car that only charges");
        assert_eq!(m.set_setpoint(Some(1), -5_000.0), Answer::Rejected);
    }

    #[test]
    fn a_car_that_only_charges_refuses_to_discharge() {
        let b = Behaviour {
            session_ms: (3_600_000, 3_600_000),
            idle_ms: (1_000, 1_000),
            ..quiet()
        };
        let mut m = StationModel::new("CS", 1, b, 3);
        let out = run(&mut m, 0, 2_000, 1_000);
        assert!(
            !out.iter().any(|x| matches!(x, Msg::EvNeeds { .. })),
            "no needs without v2x_share"
        );
        assert_eq!(m.set_setpoint(Some(1), -5_000.0), Answer::Rejected);
        assert_eq!(m.set_setpoint(Some(1), 4_000.0), Answer::Accepted);
        assert_eq!(m.power(&m.connectors[0]), 4_000.0);
        assert_eq!(m.set_setpoint(Some(2), 4_000.0), Answer::Rejected);
        assert_eq!(m.set_setpoint(Some(1), f64::NAN), Answer::Rejected);
    }
}
