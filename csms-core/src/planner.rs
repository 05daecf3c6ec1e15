//! Charging plans for a site over the next hours: each EV's energy need
//! met before its departure at the lowest price the site's limits allow,
//! fleet vehicles first, and bidirectional (V2X) EVs discharging when the
//! price is high enough to pay for charging the energy back later.
//!
//! Where [`crate::limits::allocate`] splits the site's limit *now*, a
//! [`Plan`] looks ahead: it is what a grid event (an OpenADR price or limit
//! event, a `ChargingStationExternalConstraints` limit, a new
//! `NotifyEVChargingNeeds`) reshapes. The CSMS turns each EV's setpoints
//! into the `TxProfile` it sends ([`EvPlan::periods`]: positive = charge,
//! negative = discharge, 2.1's `setpoint` / `dischargeLimit`), and plans
//! again on every session start and stop, limit change and grid event.
//!
//! # The method (deterministic, documented, tested)
//!
//! Time is cut into equal slots from [`PlanRequest::start`]. Each slot has
//! the site's import limit (W), its export limit (W; 0 = no feeding back)
//! and the energy price (per kWh; a price event's value). An EV may use the
//! slots that end at or before its departure.
//!
//! 1. **Order**: EVs by priority (higher first), then by departure (earlier
//!    first), then by session id: the plan does not depend on the input's
//!    order.
//! 2. **Charging** (each EV in that order): its need goes into its cheapest
//!    usable slots first (ties: the earlier slot), each slot filled up to the
//!    lowest of the EV's maximum power and the site's import room left by
//!    the EVs before it. A slot with less room than the EV's minimum power
//!    (6 A for an AC car) is skipped; a slot's power is never below that
//!    minimum (the last slot may then deliver a little more than the need,
//!    less than one slot at the minimum). For a single EV this greedy
//!    choice is the cheapest plan (linear prices, independent slots); across
//!    EVs priority comes before price. What cannot be placed is the EV's
//!    [`EvPlan::unmet_wh`] (tell the driver or the operator).
//! 3. **Discharging** (V2X EVs, after every EV's charging, in the same
//!    order): a slot where the EV does not charge is a candidate when its
//!    price exceeds the price of some other usable slot by more than
//!    [`PlanRequest::cycle_cost`] (the wear of a kWh through the battery).
//!    Highest price first, the EV discharges as much as its maximum
//!    discharge power and the site's export room allow, and charges the
//!    same energy back in the cheapest slots with room (so its energy at
//!    departure is unchanged); a move that would take the battery's state
//!    of charge below its reserve or above its capacity at any slot is made
//!    smaller or dropped. Without battery figures an EV is not discharged.
//! 4. **Units**: powers in W, energies in Wh, both `Decimal` and exact:
//!    energy = power × slot length; a power derived from an energy is
//!    rounded down to 0.1 W (never above a limit).
//! 5. **Bad input** (no slots, a slot list of the wrong length, a negative
//!    limit or need, a minimum above the maximum, duplicate sessions) is a
//!    typed [`PlanError`], never a panic.
//!
//! # Example
//!
//! ```
//! use chrono::{Duration, TimeZone, Utc};
//! use evproto_csms_core::planner::{plan, EvInput, PlanRequest};
//! use rust_decimal::Decimal;
//!
//! let start = Utc.with_ymd_and_hms(2026, 1, 1, 18, 0, 0).unwrap();
//! let kw = |x: i64| Decimal::from(x * 1000);
//! // four hours in 1-hour slots; evening peak price, then cheap night
//! let mut req = PlanRequest::new(start, Duration::hours(1), vec![kw(22); 4]);
//! req.price = vec![Decimal::new(40, 2), Decimal::new(35, 2), Decimal::new(12, 2), Decimal::new(10, 2)];
//! req.export_w = vec![kw(11); 4];
//! // a car that needs 20 kWh by 22:00, takes 22 kW and can feed back 11 kW
//! let mut car = EvInput::new("S1", kw(20), start + Duration::hours(4), kw(22));
//! car.max_discharge_w = kw(11);
//! car.battery = Some((kw(60), kw(30), kw(10))); // capacity, now, reserve (Wh)
//! let p = plan(&req, &[car])?;
//! let s = &p.evs[0].setpoints_w;
//! assert_eq!(s[0], -kw(11)); // sells at the peak
//! assert_eq!(s[1], kw(0)); // a second hour would cross the 10 kWh reserve
//! assert_eq!((s[2], s[3]), (kw(9), kw(22))); // charges at night, cheapest first
//! assert_eq!(p.evs[0].unmet_wh, Decimal::ZERO);
//! assert_eq!(p.evs[0].net_wh(&req), kw(20)); // what it needed, no more
//! # Ok::<(), evproto_csms_core::planner::PlanError>(())
//! ```

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::{Decimal, RoundingStrategy};

/// What to plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRequest {
    /// Start of the first slot.
    pub start: DateTime<Utc>,
    /// Length of every slot (e.g. 15 minutes).
    pub slot: Duration,
    /// The site's import limit per slot, W (one value per slot; its length
    /// is the number of slots).
    pub import_w: Vec<Decimal>,
    /// The site's export limit per slot, W (empty = no export).
    pub export_w: Vec<Decimal>,
    /// Price per kWh per slot (empty = flat: only the limits shape the plan).
    pub price: Vec<Decimal>,
    /// Cost of cycling a kWh through a battery (discharge, charge back);
    /// discharging pays only where the price spread exceeds it.
    pub cycle_cost: Decimal,
}

impl PlanRequest {
    /// A plan over `import_w.len()` slots of `slot`, flat price, no export,
    /// a cycle cost of 0.05 per kWh.
    pub fn new(start: DateTime<Utc>, slot: Duration, import_w: Vec<Decimal>) -> Self {
        PlanRequest {
            start,
            slot,
            import_w,
            export_w: Vec::new(),
            price: Vec::new(),
            cycle_cost: Decimal::new(5, 2),
        }
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.import_w.len()
    }

    /// Start of slot `i`.
    pub fn slot_start(&self, i: usize) -> DateTime<Utc> {
        self.start + self.slot * i as i32
    }

    fn hours(&self) -> Decimal {
        Decimal::from(self.slot.num_seconds()) / Decimal::from(3600)
    }

    fn price(&self, i: usize) -> Decimal {
        self.price.get(i).copied().unwrap_or(Decimal::ZERO)
    }

    fn export(&self, i: usize) -> Decimal {
        self.export_w.get(i).copied().unwrap_or(Decimal::ZERO)
    }
}

/// One EV with a session on the site.
#[derive(Debug, Clone, PartialEq)]
pub struct EvInput {
    /// The session.
    pub session: String,
    /// Higher goes first (e.g. fleet vehicles 1, others 0).
    pub priority: i32,
    /// Energy to add before departure, Wh (2.x `energyAmount`).
    pub need_wh: Decimal,
    /// When it leaves (2.x `departureTime`).
    pub departure: DateTime<Utc>,
    /// Most it takes, W (the lowest of the EVSE's and the EV's).
    pub max_charge_w: Decimal,
    /// Least worth giving, W (6 A on its phases for an AC car; 0 for DC).
    pub min_charge_w: Decimal,
    /// Most it gives back, W (0: not bidirectional).
    pub max_discharge_w: Decimal,
    /// (capacity, energy now, reserve), Wh: needed to discharge it.
    pub battery: Option<(Decimal, Decimal, Decimal)>,
}

impl EvInput {
    /// An EV that only charges, priority 0, no minimum.
    pub fn new(
        session: impl Into<String>,
        need_wh: Decimal,
        departure: DateTime<Utc>,
        max_charge_w: Decimal,
    ) -> Self {
        EvInput {
            session: session.into(),
            priority: 0,
            need_wh,
            departure,
            max_charge_w,
            min_charge_w: Decimal::ZERO,
            max_discharge_w: Decimal::ZERO,
            battery: None,
        }
    }
}

/// One EV's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct EvPlan {
    /// The session.
    pub session: String,
    /// Power per slot, W: positive charges, negative discharges.
    pub setpoints_w: Vec<Decimal>,
    /// Need that no slot could take, Wh.
    pub unmet_wh: Decimal,
    /// Energy given back to the site, Wh.
    pub discharged_wh: Decimal,
}

impl EvPlan {
    /// Energy added over the plan (charged − discharged), Wh.
    pub fn net_wh(&self, req: &PlanRequest) -> Decimal {
        self.setpoints_w.iter().sum::<Decimal>() * req.hours()
    }

    /// The setpoints as schedule periods: (seconds from the plan's start,
    /// W), adjacent equal slots merged; what a `TxProfile`'s periods carry.
    pub fn periods(&self, req: &PlanRequest) -> Vec<(i64, Decimal)> {
        let mut out: Vec<(i64, Decimal)> = Vec::new();
        for (i, w) in self.setpoints_w.iter().enumerate() {
            if out.last().is_some_and(|(_, last)| last == w) {
                continue;
            }
            out.push((req.slot.num_seconds() * i as i64, *w));
        }
        out
    }
}

/// The site's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Per EV, in the input's order.
    pub evs: Vec<EvPlan>,
    /// The site's net import per slot, W (negative: exporting).
    pub site_w: Vec<Decimal>,
    /// Σ price × energy over the plan (export credited at the slot's price).
    pub cost: Decimal,
}

/// Why there is no plan.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlanError {
    /// No slots, or a slot that is not positive.
    NoSlots,
    /// `export_w` or `price` has neither 0 nor `import_w.len()` values.
    SlotCount {
        /// Which list.
        field: &'static str,
    },
    /// A negative limit, need, power or battery figure.
    Negative {
        /// Which value.
        field: &'static str,
    },
    /// An EV's minimum power is above its maximum.
    MinAboveMax {
        /// The session.
        session: String,
    },
    /// Two EVs with the same session.
    DuplicateSession(String),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::NoSlots => write!(f, "a plan needs at least one slot of positive length"),
            PlanError::SlotCount { field } => {
                write!(f, "{field} must have one value per slot (or none)")
            }
            PlanError::Negative { field } => write!(f, "{field} must not be negative"),
            PlanError::MinAboveMax { session } => {
                write!(f, "session {session}: minimum power above its maximum")
            }
            PlanError::DuplicateSession(s) => write!(f, "session {s} is listed twice"),
        }
    }
}

impl std::error::Error for PlanError {}

fn check(req: &PlanRequest, evs: &[EvInput]) -> Result<(), PlanError> {
    if req.slots() == 0 || req.slot <= Duration::zero() {
        return Err(PlanError::NoSlots);
    }
    for (field, v) in [("export_w", &req.export_w), ("price", &req.price)] {
        if !v.is_empty() && v.len() != req.slots() {
            return Err(PlanError::SlotCount { field });
        }
    }
    let negative = |field, v: &[Decimal]| {
        if v.iter().any(|x| *x < Decimal::ZERO) {
            Err(PlanError::Negative { field })
        } else {
            Ok(())
        }
    };
    negative("import_w", &req.import_w)?;
    negative("export_w", &req.export_w)?;
    if req.cycle_cost < Decimal::ZERO {
        return Err(PlanError::Negative {
            field: "cycle_cost",
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for ev in evs {
        if !seen.insert(ev.session.as_str()) {
            return Err(PlanError::DuplicateSession(ev.session.clone()));
        }
        let figures = [
            ("need_wh", ev.need_wh),
            ("max_charge_w", ev.max_charge_w),
            ("min_charge_w", ev.min_charge_w),
            ("max_discharge_w", ev.max_discharge_w),
        ];
        for (field, v) in figures {
            if v < Decimal::ZERO {
                return Err(PlanError::Negative { field });
            }
        }
        if let Some((cap, now, reserve)) = ev.battery {
            if cap < Decimal::ZERO || now < Decimal::ZERO || reserve < Decimal::ZERO {
                return Err(PlanError::Negative { field: "battery" });
            }
        }
        if ev.min_charge_w > ev.max_charge_w {
            return Err(PlanError::MinAboveMax {
                session: ev.session.clone(),
            });
        }
    }
    Ok(())
}

fn floor_w(w: Decimal) -> Decimal {
    w.round_dp_with_strategy(1, RoundingStrategy::ToNegativeInfinity)
}

/// The site's room per slot while planning.
struct Room {
    import: Vec<Decimal>,
    export: Vec<Decimal>,
}

/// Plans the site (see the module docs).
///
/// # Errors
///
/// Inconsistent input ([`PlanError`]).
pub fn plan(req: &PlanRequest, evs: &[EvInput]) -> Result<Plan, PlanError> {
    check(req, evs)?;
    let n = req.slots();
    let h = req.hours();
    let mut order: Vec<usize> = (0..evs.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&evs[a], &evs[b]);
        b.priority
            .cmp(&a.priority)
            .then(a.departure.cmp(&b.departure))
            .then(a.session.cmp(&b.session))
    });
    let mut room = Room {
        import: req.import_w.clone(),
        export: (0..n).map(|i| req.export(i)).collect(),
    };
    // slots by price, then time: the order every EV fills them in
    let mut by_price: Vec<usize> = (0..n).collect();
    by_price.sort_by(|&a, &b| req.price(a).cmp(&req.price(b)).then(a.cmp(&b)));
    let mut plans: Vec<EvPlan> = evs
        .iter()
        .map(|ev| EvPlan {
            session: ev.session.clone(),
            setpoints_w: vec![Decimal::ZERO; n],
            unmet_wh: Decimal::ZERO,
            discharged_wh: Decimal::ZERO,
        })
        .collect();
    for &e in &order {
        let ev = &evs[e];
        let usable = usable_slots(req, ev);
        let mut left = ev.need_wh;
        for &s in by_price.iter().filter(|&&s| s < usable) {
            if left <= Decimal::ZERO {
                break;
            }
            left -= charge_into(
                &mut plans[e].setpoints_w[s],
                &mut room.import[s],
                ev,
                left,
                h,
            );
        }
        plans[e].unmet_wh = left.max(Decimal::ZERO);
    }
    for &e in &order {
        discharge(req, &evs[e], &mut plans[e], &mut room, &by_price);
    }
    let site_w: Vec<Decimal> = (0..n)
        .map(|s| plans.iter().map(|p| p.setpoints_w[s]).sum())
        .collect();
    let cost = site_w
        .iter()
        .enumerate()
        .map(|(s, w)| *w * h / Decimal::from(1000) * req.price(s))
        .sum();
    Ok(Plan {
        evs: plans,
        site_w,
        cost,
    })
}

/// Slots `0..usable` end at or before the EV's departure.
fn usable_slots(req: &PlanRequest, ev: &EvInput) -> usize {
    let secs = (ev.departure - req.start).num_seconds();
    if secs <= 0 {
        return 0;
    }
    ((secs / req.slot.num_seconds().max(1)) as usize).min(req.slots())
}

/// Adds up to `want_wh` of charging to one slot of one EV; returns the
/// energy added (Wh).
fn charge_into(
    setpoint: &mut Decimal,
    import_room: &mut Decimal,
    ev: &EvInput,
    want_wh: Decimal,
    h: Decimal,
) -> Decimal {
    let room = (ev.max_charge_w - *setpoint).min(*import_room);
    if room <= Decimal::ZERO || (*setpoint <= Decimal::ZERO && room < ev.min_charge_w) {
        return Decimal::ZERO;
    }
    let mut w = floor_w(want_wh / h).min(room);
    if *setpoint + w < ev.min_charge_w {
        w = ev.min_charge_w - *setpoint;
    }
    if w <= Decimal::ZERO {
        // less than 0.1 W: take the smallest step the rounding allows
        w = Decimal::new(1, 1).min(room);
    }
    *setpoint += w;
    *import_room -= w;
    w * h
}

/// The battery's energy after each slot stays within [reserve, capacity].
fn soc_ok(ev: &EvInput, setpoints: &[Decimal], h: Decimal) -> bool {
    let Some((cap, now, reserve)) = ev.battery else {
        return false;
    };
    let mut e = now;
    for w in setpoints {
        e += *w * h;
        if e < reserve || e > cap {
            return false;
        }
    }
    true
}

/// Step 3 for one EV.
fn discharge(
    req: &PlanRequest,
    ev: &EvInput,
    plan: &mut EvPlan,
    room: &mut Room,
    by_price: &[usize],
) {
    if ev.max_discharge_w <= Decimal::ZERO || ev.battery.is_none() {
        return;
    }
    let h = req.hours();
    let usable = usable_slots(req, ev);
    let mut dear: Vec<usize> = by_price.iter().copied().filter(|&s| s < usable).collect();
    dear.sort_by(|&a, &b| match req.price(b).cmp(&req.price(a)) {
        Ordering::Equal => a.cmp(&b),
        o => o,
    });
    for d in dear {
        if plan.setpoints_w[d] != Decimal::ZERO || room.export[d] <= Decimal::ZERO {
            continue;
        }
        let out_w = ev.max_discharge_w.min(room.export[d]);
        // charge the same energy back in the cheapest slots that pay for the cycle
        let mut trial = plan.setpoints_w.clone();
        let mut import = room.import.clone();
        trial[d] = -out_w;
        let mut owed = out_w * h;
        for &c in by_price.iter().filter(|&&c| c < usable && c != d) {
            if owed <= Decimal::ZERO {
                break;
            }
            if req.price(d) - req.price(c) <= req.cycle_cost || trial[c] < Decimal::ZERO {
                continue;
            }
            owed -= charge_into(&mut trial[c], &mut import[c], ev, owed, h);
        }
        if owed > Decimal::ZERO {
            continue; // cannot be charged back at a profit: not worth it
        }
        // the extra charged back (minimum powers, rounding) stays within a slot's step
        if !soc_ok(ev, &trial, h) {
            continue;
        }
        room.export[d] -= out_w;
        room.import = import;
        plan.setpoints_w = trial;
        plan.discharged_wh += out_w * h;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap()
    }

    fn kw(x: i64) -> Decimal {
        Decimal::from(x * 1000)
    }

    #[test]
    fn cheapest_slots_first_and_priority_before_price() {
        let mut req = PlanRequest::new(t0(), Duration::hours(1), vec![kw(11); 4]);
        req.price = [30, 10, 20, 10].map(|c| Decimal::new(c, 2)).to_vec();
        let depart = t0() + Duration::hours(4);
        let guest = EvInput::new("guest", kw(11), depart, kw(11));
        let fleet = EvInput {
            priority: 1,
            ..EvInput::new("fleet", kw(11), depart, kw(11))
        };
        let p = plan(&req, &[guest, fleet]).unwrap();
        // the fleet car takes the cheapest hour (the earlier of the two), the guest the other
        assert_eq!(p.evs[1].setpoints_w, vec![kw(0), kw(11), kw(0), kw(0)]);
        assert_eq!(p.evs[0].setpoints_w, vec![kw(0), kw(0), kw(0), kw(11)]);
        assert_eq!(p.cost, Decimal::new(220, 2)); // 22 kWh at 0.10
    }

    #[test]
    fn departure_and_limits_leave_a_need_unmet() {
        let req = PlanRequest::new(t0(), Duration::minutes(30), vec![kw(7); 8]);
        // 4 hours of slots, leaves after 1.5 h: 3 slots × 7 kW × 0.5 h = 10.5 kWh at most
        let ev = EvInput::new("A", kw(20), t0() + Duration::minutes(100), kw(11));
        let p = plan(&req, &[ev]).unwrap();
        assert_eq!(p.evs[0].unmet_wh, Decimal::from(9_500));
        assert!(p.evs[0].setpoints_w[3..].iter().all(|w| w.is_zero()));
    }

    #[test]
    fn minimum_power_is_respected() {
        let req = PlanRequest::new(t0(), Duration::hours(1), vec![kw(22); 3]);
        let ev = EvInput {
            min_charge_w: Decimal::from(4_140),
            ..EvInput::new("A", Decimal::from(1_000), t0() + Duration::hours(3), kw(11))
        };
        let p = plan(&req, &[ev]).unwrap();
        assert_eq!(p.evs[0].setpoints_w[0], Decimal::from(4_140));
        assert!(p.evs[0].setpoints_w[1..].iter().all(|w| w.is_zero()));
        // a slot with less room than the minimum is skipped
        let req = PlanRequest::new(t0(), Duration::hours(1), vec![Decimal::from(3_000), kw(22)]);
        let ev = EvInput {
            min_charge_w: Decimal::from(4_140),
            ..EvInput::new("A", Decimal::from(1_000), t0() + Duration::hours(2), kw(11))
        };
        let p = plan(&req, &[ev]).unwrap();
        assert_eq!(
            p.evs[0].setpoints_w,
            vec![Decimal::ZERO, Decimal::from(4_140)]
        );
    }

    #[test]
    fn no_discharge_without_a_spread_above_the_cycle_cost_or_without_a_battery() {
        let mut req = PlanRequest::new(t0(), Duration::hours(1), vec![kw(22); 4]);
        req.export_w = vec![kw(11); 4];
        req.price = [14, 10, 12, 11].map(|c| Decimal::new(c, 2)).to_vec();
        let mut ev = EvInput::new("A", kw(5), t0() + Duration::hours(4), kw(11));
        ev.max_discharge_w = kw(11);
        ev.battery = Some((kw(60), kw(30), kw(10)));
        // spread 0.04 < 0.05
        let p = plan(&req, std::slice::from_ref(&ev)).unwrap();
        assert_eq!(p.evs[0].discharged_wh, Decimal::ZERO);
        req.price[0] = Decimal::new(40, 2);
        let p = plan(&req, std::slice::from_ref(&ev)).unwrap();
        assert_eq!(p.evs[0].discharged_wh, kw(11));
        ev.battery = None;
        let p = plan(&req, &[ev]).unwrap();
        assert_eq!(p.evs[0].discharged_wh, Decimal::ZERO);
    }

    #[test]
    fn discharge_keeps_the_reserve() {
        let mut req = PlanRequest::new(t0(), Duration::hours(1), vec![kw(22); 3]);
        req.export_w = vec![kw(11); 3];
        req.price = [50, 10, 10].map(|c| Decimal::new(c, 2)).to_vec();
        let mut ev = EvInput::new("A", Decimal::ZERO, t0() + Duration::hours(3), kw(11));
        ev.max_discharge_w = kw(11);
        // only 5 kWh above the reserve: an 11 kWh hour would cross it
        ev.battery = Some((kw(60), kw(15), kw(10)));
        let p = plan(&req, &[ev]).unwrap();
        assert_eq!(p.evs[0].discharged_wh, Decimal::ZERO);
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let req = PlanRequest::new(t0(), Duration::hours(1), vec![]);
        assert_eq!(plan(&req, &[]), Err(PlanError::NoSlots));
        let mut req = PlanRequest::new(t0(), Duration::hours(1), vec![kw(1); 2]);
        req.price = vec![Decimal::ONE];
        assert_eq!(
            plan(&req, &[]),
            Err(PlanError::SlotCount { field: "price" })
        );
        let req = PlanRequest::new(t0(), Duration::hours(1), vec![kw(-1)]);
        assert_eq!(
            plan(&req, &[]),
            Err(PlanError::Negative { field: "import_w" })
        );
        let req = PlanRequest::new(t0(), Duration::hours(1), vec![kw(1)]);
        let a = EvInput::new("A", kw(1), t0(), kw(1));
        assert_eq!(
            plan(&req, &[a.clone(), a.clone()]),
            Err(PlanError::DuplicateSession("A".into()))
        );
        let b = EvInput {
            min_charge_w: kw(2),
            ..a
        };
        assert!(matches!(
            plan(&req, &[b]),
            Err(PlanError::MinAboveMax { .. })
        ));
    }

    #[test]
    fn periods_merge_equal_slots() {
        let req = PlanRequest::new(t0(), Duration::minutes(15), vec![kw(22); 4]);
        let p = EvPlan {
            session: "A".into(),
            setpoints_w: vec![kw(5), kw(5), kw(0), kw(-3)],
            unmet_wh: Decimal::ZERO,
            discharged_wh: Decimal::ZERO,
        };
        assert_eq!(
            p.periods(&req),
            vec![(0, kw(5)), (1800, kw(0)), (2700, kw(-3))]
        );
    }

    fn arb_case() -> impl Strategy<Value = (PlanRequest, Vec<EvInput>)> {
        let slots = 1usize..24;
        slots.prop_flat_map(|n| {
            (
                proptest::collection::vec(0i64..50, n),
                proptest::collection::vec(0i64..20, n),
                proptest::collection::vec(1i64..60, n),
                proptest::collection::vec(
                    (
                        0i64..40,
                        1u32..30,
                        1i64..23,
                        0i64..12,
                        0i32..2,
                        0i64..8,
                        any::<bool>(),
                    ),
                    0..6,
                ),
            )
                .prop_map(move |(import, export, price, evs)| {
                    let mut req = PlanRequest::new(
                        t0(),
                        Duration::minutes(30),
                        import.into_iter().map(kw).collect(),
                    );
                    req.export_w = export.into_iter().map(kw).collect();
                    req.price = price.into_iter().map(|c| Decimal::new(c, 2)).collect();
                    let evs = evs
                        .into_iter()
                        .enumerate()
                        .map(|(i, (need, dep, max, dis, prio, min, battery))| EvInput {
                            priority: prio,
                            min_charge_w: kw(min.min(max)),
                            max_discharge_w: kw(dis),
                            battery: battery.then(|| (kw(80), kw(40), kw(10))),
                            ..EvInput::new(
                                format!("S{i}"),
                                kw(need),
                                t0() + Duration::minutes(30 * i64::from(dep)),
                                kw(max),
                            )
                        })
                        .collect();
                    (req, evs)
                })
        })
    }

    proptest! {
        /// The site's limits hold in every slot; no EV exceeds its powers,
        /// uses a slot after its departure, gets more than its need plus one
        /// slot at its minimum, or leaves its battery's bounds; the plan does
        /// not depend on the input's order.
        #[test]
        fn limits_needs_and_order(case in arb_case()) {
            let (req, evs) = case;
            let p = plan(&req, &evs).unwrap();
            let h = req.hours();
            for s in 0..req.slots() {
                let import: Decimal = p.evs.iter().map(|e| e.setpoints_w[s].max(Decimal::ZERO)).sum();
                let export: Decimal = p.evs.iter().map(|e| (-e.setpoints_w[s]).max(Decimal::ZERO)).sum();
                prop_assert!(import <= req.import_w[s], "slot {s}: {import} > {}", req.import_w[s]);
                prop_assert!(export <= req.export_w[s]);
            }
            for (ev, e) in evs.iter().zip(&p.evs) {
                let usable = usable_slots(&req, ev);
                for (s, w) in e.setpoints_w.iter().enumerate() {
                    prop_assert!(*w <= ev.max_charge_w && -*w <= ev.max_discharge_w);
                    prop_assert!(s < usable || w.is_zero());
                    prop_assert!(*w <= Decimal::ZERO || *w >= ev.min_charge_w);
                }
                let net = e.net_wh(&req);
                prop_assert!(net + e.unmet_wh >= ev.need_wh);
                // overshoot: below one minimum slot for the need, and per
                // discharge, below one slot at the minimum
                let moves = e.setpoints_w.iter().filter(|w| **w < Decimal::ZERO).count() + 1;
                let slack = (ev.min_charge_w * h + Decimal::new(1, 1) * h) * Decimal::from(moves as u64);
                prop_assert!(net <= ev.need_wh + slack, "net {net} need {} slack {slack}", ev.need_wh);
                if e.discharged_wh > Decimal::ZERO {
                    prop_assert!(soc_ok(ev, &e.setpoints_w, h));
                }
            }
            let mut reversed = evs.clone();
            reversed.reverse();
            let q = plan(&req, &reversed).unwrap();
            for e in &p.evs {
                let f = q.evs.iter().find(|x| x.session == e.session).unwrap();
                prop_assert_eq!(e, f);
            }
        }

        /// A lone EV that only charges gets its need whenever its usable
        /// slots can hold it, at the lowest possible cost.
        #[test]
        fn a_lone_ev_is_served_at_the_lowest_cost(case in arb_case()) {
            let (req, evs) = case;
            let Some(first) = evs.first() else { return Ok(()) };
            let ev = EvInput { min_charge_w: Decimal::ZERO, max_discharge_w: Decimal::ZERO, ..first.clone() };
            let p = plan(&req, std::slice::from_ref(&ev)).unwrap();
            let h = req.hours();
            let usable = usable_slots(&req, &ev);
            let capacity: Decimal = (0..usable).map(|s| ev.max_charge_w.min(req.import_w[s]) * h).sum();
            if ev.need_wh <= capacity {
                prop_assert!(p.evs[0].unmet_wh.is_zero());
            }
            // exchange argument: no energy in a slot while a cheaper usable slot has room
            let sp = &p.evs[0].setpoints_w;
            for a in 0..usable {
                for b in 0..usable {
                    let room_b = ev.max_charge_w.min(req.import_w[b]) - sp[b];
                    if sp[a] > Decimal::new(1, 1) && req.price(b) < req.price(a) {
                        prop_assert!(room_b < Decimal::new(1, 1), "slot {a} used while cheaper {b} has room");
                    }
                }
            }
        }
    }
}
