//! Property tests of charging limits: the site allocator never exceeds the
//! site's or a session's limit, serves higher priorities first, is max-min
//! fair within a priority (needs by departure served first) and does not
//! depend on the input's order; the
//! stepped default share never exceeds the exact one; the composite schedule equals an independent evaluation
//! of the stacking and combining rules at every instant (so never exceeds a
//! leading profile), and equals the profile when only one applies.

use chrono::{DateTime, Duration, TimeZone, Utc};
use evproto_csms_core::limits::{
    allocate, composite_schedule, ChargingProfile, CompositeRequest, InstalledProfile, Kind,
    Period, Purpose, RateUnit, Recurrency, Schedule, Session, Site, TxRef,
};
use proptest::prelude::*;
use rust_decimal::Decimal;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 6, 0, 0).unwrap()
}

fn d(v: i64) -> Decimal {
    Decimal::from(v)
}

// --- site allocation ------------------------------------------------------

fn sessions() -> impl Strategy<Value = Vec<Session>> {
    prop::collection::vec(
        (
            1u8..=3,
            0i64..30_000,
            prop::option::of(0i64..30_000),
            (0i64..100, 0u8..3),
        ),
        0..8,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (phases, station, ev, (minute, priority)))| Session {
                ev_max_w: ev.map(d),
                priority,
                ..Session::new(
                    format!("s{i}"),
                    i as u32 + 1,
                    phases,
                    d(station),
                    t0() + Duration::minutes(minute),
                )
            })
            .collect()
    })
}

fn sites() -> impl Strategy<Value = Site> {
    (0i64..100_000, prop::option::of(0i64..200), 0i64..10).prop_map(|(w, a, min)| Site {
        phase_limit_a: a.map(d),
        min_current_a: d(min),
        ..Site::new(d(w))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Limits hold, the allocation is max-min fair among the sessions that
    /// charge, everyone charging gets their minimum, and the site's capacity
    /// is not left unused (up to the 0.1 W rounding).
    #[test]
    fn allocations_respect_limits_and_are_max_min_fair(site in sites(), ss in sessions()) {
        let out = allocate(&site, &ss).unwrap();
        prop_assert_eq!(out.len(), ss.len());
        let by_id = |id: &str| ss.iter().find(|s| s.id == id).unwrap();
        let total: Decimal = out.iter().map(|a| a.watts).sum();
        prop_assert!(total <= site.limit_w, "{total} > {}", site.limit_w);
        // per phase, single-phase cars counted as if on one phase: Σ P × 6/n ≤ 6 I V
        let six = d(6);
        let phase_load: Decimal = out.iter().map(|a| a.watts * d(6 / i64::from(a.phases))).sum();
        if let Some(i) = site.phase_limit_a {
            prop_assert!(phase_load <= six * i * site.voltage_v);
        }
        for a in &out {
            let s = by_id(&a.session_id);
            prop_assert!(a.watts >= Decimal::ZERO && a.watts <= s.cap_w());
            if a.paused {
                prop_assert_eq!(a.watts, Decimal::ZERO);
            } else {
                prop_assert!(a.watts >= s.min_w(&site), "{} below its minimum", a.session_id);
            }
        }
        let charging: Vec<_> = out.iter().filter(|a| !a.paused).collect();
        for a in &charging {
            let pa = by_id(&a.session_id).priority;
            for b in &charging {
                let pb = by_id(&b.session_id).priority;
                if pa == pb && a.watts < b.watts {
                    // a could take more than it has only if it is at its cap
                    prop_assert_eq!(a.watts, by_id(&a.session_id).cap_w());
                }
                if pa > pb && b.watts > Decimal::ZERO {
                    // a lower priority gets something only once a higher one has its cap
                    prop_assert_eq!(a.watts, by_id(&a.session_id).cap_w());
                }
            }
            prop_assert_eq!(a.held_back, a.watts < by_id(&a.session_id).cap_w());
        }
        // the paused: the lowest priorities first (a lower one still
        // "charging" then has nothing, its cap being 0)
        for p in out.iter().filter(|a| a.paused) {
            for c in &charging {
                if by_id(&c.session_id).priority < by_id(&p.session_id).priority {
                    prop_assert_eq!(c.watts, Decimal::ZERO);
                }
            }
        }
        // work conservation: when nobody is paused and someone is below its
        // cap, a constraint is tight up to the rounding of the level
        let below_cap = charging.iter().any(|a| a.watts < by_id(&a.session_id).cap_w());
        if out.iter().all(|a| !a.paused) && below_cap {
            let n = d(out.len() as i64);
            let power_tight = site.limit_w - total < Decimal::new(1, 1) * n;
            let phase_tight = site
                .phase_limit_a
                .is_some_and(|i| six * i * site.voltage_v - phase_load < Decimal::new(6, 1) * n);
            prop_assert!(power_tight || phase_tight, "capacity left unused");
        }
    }

    /// Rule 12: with needs by departure, the limits still hold, nobody gets
    /// more than its cap, and when every session's need (its cap when not
    /// known) fits the site at once, each gets at least that; the site's
    /// capacity is not left unused while someone is below its cap.
    #[test]
    fn needs_by_departure_are_served_first_within_the_limits(
        site in sites(),
        ss in sessions(),
        needs in prop::collection::vec(prop::option::of(0i64..20_000), 8),
    ) {
        let site = Site { min_current_a: Decimal::ZERO, ..site };
        let ss: Vec<Session> = ss
            .into_iter()
            .zip(needs)
            .map(|(s, n)| Session { required_w: n.map(d), priority: 0, ..s })
            .collect();
        let out = allocate(&site, &ss).unwrap();
        let by_id = |id: &str| ss.iter().find(|s| s.id == id).unwrap();
        let total: Decimal = out.iter().map(|a| a.watts).sum();
        prop_assert!(total <= site.limit_w);
        let phase_load: Decimal = out.iter().map(|a| a.watts * d(6 / i64::from(a.phases))).sum();
        if let Some(i) = site.phase_limit_a {
            prop_assert!(phase_load <= d(6) * i * site.voltage_v);
        }
        let first = |s: &Session| s.required_w.map_or(s.cap_w(), |r| r.min(s.cap_w()));
        let first_total: Decimal = ss.iter().map(first).sum();
        let first_phase: Decimal = ss.iter().map(|s| first(s) * d(6 / i64::from(s.phases))).sum();
        let fits = first_total <= site.limit_w
            && site.phase_limit_a.is_none_or(|i| first_phase <= d(6) * i * site.voltage_v);
        for a in &out {
            let s = by_id(&a.session_id);
            prop_assert!(a.watts >= Decimal::ZERO && a.watts <= s.cap_w());
            if fits {
                prop_assert!(a.watts >= first(s), "{}: {} below its need {}", a.session_id, a.watts, first(s));
            }
        }
        let below_cap = out.iter().any(|a| a.watts < by_id(&a.session_id).cap_w());
        if below_cap {
            let n = d(2 * out.len() as i64);
            let power_tight = site.limit_w - total < Decimal::new(1, 1) * n;
            let phase_tight = site
                .phase_limit_a
                .is_some_and(|i| d(6) * i * site.voltage_v - phase_load < Decimal::new(6, 1) * n);
            prop_assert!(power_tight || phase_tight, "capacity left unused");
        }
    }

    /// The result depends on the set of sessions, not on their order.
    #[test]
    fn allocations_do_not_depend_on_input_order(
        site in sites(),
        (ss, shuffled) in sessions().prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
    ) {
        prop_assert_eq!(allocate(&site, &ss).unwrap(), allocate(&site, &shuffled).unwrap());
    }

    /// The stepped default share is never above the exact one (the site
    /// holds if every EVSE takes it), at least 2/3 of it (up to the 0.1 W
    /// rounding), and never grows as EVSEs are added.
    #[test]
    fn the_stepped_default_share_is_safe_and_close(site in sites(), n in 0u32..5_000) {
        let exact = site.default_share(n);
        let stepped = site.stepped_default_share(n);
        prop_assert!(stepped <= exact, "{} > {}", stepped, exact);
        prop_assert!(stepped >= exact * d(2) / d(3) - Decimal::new(1, 1), "{} vs {}", stepped, exact);
        prop_assert!(site.stepped_default_share(n + 1) <= stepped);
    }
}

// --- composite schedule ---------------------------------------------------

/// All generated times are multiples of this many seconds, so sampling at
/// its multiples visits every segment of the composite.
const STEP: i64 = 30;
const WINDOW_S: u32 = 7200;

fn schedule(
    start: Option<DateTime<Utc>>,
    duration: Option<u32>,
    periods: Vec<(u32, i64)>,
) -> Schedule {
    Schedule {
        id: None,
        start,
        duration_s: duration,
        unit: RateUnit::A,
        periods: periods
            .into_iter()
            .map(|(start_s, limit)| Period {
                start_s,
                limit: d(limit),
                number_phases: None,
                phase_to_use: None,
            })
            .collect(),
        min_charging_rate: None,
    }
}

fn periods() -> impl Strategy<Value = Vec<(u32, i64)>> {
    prop::collection::vec((1u32..40, 0i64..64), 1..5).prop_map(|v| {
        let mut at = 0;
        v.into_iter()
            .enumerate()
            .map(|(i, (gap, limit))| {
                if i > 0 {
                    at += gap * STEP as u32;
                }
                (at, limit)
            })
            .collect()
    })
}

fn at_step(k: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(k * STEP)
}

/// An absolute profile of one of three purposes, with optional duration and
/// validity; StationMax installed on the station, the others on EVSE 1.
fn absolute_profiles() -> impl Strategy<Value = Vec<InstalledProfile>> {
    prop::collection::vec(
        (
            0usize..3,
            0u32..4,
            -40i64..200,
            prop::option::of(1u32..200),
            prop::option::of(-20i64..240),
            prop::option::of(0i64..260),
            periods(),
        ),
        1..6,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (purpose, level, start, dur, from, to, ps))| {
                let purpose = [Purpose::StationMax, Purpose::TxDefault, Purpose::Tx][purpose];
                InstalledProfile {
                    evse_id: if purpose == Purpose::StationMax { 0 } else { 1 },
                    profile: ChargingProfile {
                        id: i as i32,
                        stack_level: level,
                        purpose,
                        kind: Kind::Absolute,
                        valid_from: from.map(at_step),
                        valid_to: to.map(at_step),
                        transaction_id: (purpose == Purpose::Tx).then(|| "T".to_owned()),
                        schedules: vec![schedule(
                            Some(at_step(start)),
                            dur.map(|x| x * STEP as u32),
                            ps,
                        )],
                    },
                }
            })
            .collect()
    })
}

/// The profile's limit at `t`, evaluated here independently of the crate:
/// validity, the schedule's start (by kind), duration, last period begun.
fn own_limit(p: &ChargingProfile, t: DateTime<Utc>, tx_start: DateTime<Utc>) -> Option<Decimal> {
    if p.valid_from.is_some_and(|f| t < f) || p.valid_to.is_some_and(|v| t >= v) {
        return None;
    }
    let s = &p.schedules[0];
    let origin = match p.kind {
        Kind::Relative => tx_start,
        Kind::Recurring(r) => {
            let start = s.start.unwrap();
            let len = match r {
                Recurrency::Daily => Duration::days(1),
                Recurrency::Weekly => Duration::weeks(1),
            };
            if t < start {
                return None;
            }
            let mut o = start;
            while o + len <= t {
                o += len;
            }
            o
        }
        _ => s.start.unwrap(),
    };
    let off = (t - origin).num_seconds();
    if off < 0 || s.duration_s.is_some_and(|dur| off >= i64::from(dur)) {
        return None;
    }
    s.periods
        .iter()
        .rfind(|q| i64::from(q.start_s) <= off)
        .map(|q| q.limit)
}

/// The leading limit of a purpose: the highest stack level with a limit at
/// `t`, the lowest limit among equals.
fn lead(ps: &[InstalledProfile], purpose: Purpose, t: DateTime<Utc>) -> Option<Decimal> {
    ps.iter()
        .filter(|ip| ip.profile.purpose == purpose)
        .filter_map(|ip| Some((ip.profile.stack_level, own_limit(&ip.profile, t, t0())?)))
        .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)))
        .map(|x| x.1)
}

fn request() -> CompositeRequest {
    let mut req = CompositeRequest::new(1, t0(), WINDOW_S, RateUnit::A);
    req.transaction = Some(TxRef {
        id: "T".into(),
        started_at: t0(),
    });
    req
}

fn samples() -> impl Iterator<Item = u32> {
    (0..WINDOW_S).step_by(STEP as usize)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// At every instant the composite is the lowest of the leading station
    /// maximum and the tx level (TxProfile over TxDefaultProfile), so it
    /// never exceeds any leading profile's limit; periods are merged.
    #[test]
    fn composite_follows_stacking_and_combining(ps in absolute_profiles()) {
        let c = composite_schedule(&ps, &request()).unwrap();
        prop_assert_eq!(c.periods[0].start_s, 0);
        for w in c.periods.windows(2) {
            prop_assert!(w[0].start_s < w[1].start_s);
            prop_assert!(w[0].limit != w[1].limit, "adjacent equal periods not merged");
        }
        for off in samples() {
            let t = t0() + Duration::seconds(i64::from(off));
            let max = lead(&ps, Purpose::StationMax, t);
            let tx_level = lead(&ps, Purpose::Tx, t).or_else(|| lead(&ps, Purpose::TxDefault, t));
            let got = c.limit_at(off);
            for bound in [max, tx_level].into_iter().flatten() {
                prop_assert!(got.is_some_and(|g| g <= bound), "{got:?} exceeds {bound} at {off}");
            }
            let expected = [max, tx_level].into_iter().flatten().min();
            prop_assert_eq!(got, expected, "at {}", off);
        }
    }

    /// With one profile, the composite is that profile, whatever its kind;
    /// in W it is the limit × 230 V × 3 phases.
    #[test]
    fn a_single_profile_is_its_own_composite(
        kind in 0usize..4,
        start in -3000i64..200,
        dur in prop::option::of(1u32..400),
        ps in periods(),
    ) {
        let kind = [
            Kind::Absolute,
            Kind::Relative,
            Kind::Recurring(Recurrency::Daily),
            Kind::Recurring(Recurrency::Weekly),
        ][kind];
        let p = ChargingProfile {
            id: 1,
            stack_level: 0,
            purpose: Purpose::TxDefault,
            kind,
            valid_from: None,
            valid_to: None,
            transaction_id: None,
            schedules: vec![schedule(
                (kind != Kind::Relative).then(|| at_step(start)),
                dur.map(|x| x * STEP as u32),
                ps,
            )],
        };
        let installed = [InstalledProfile { evse_id: 1, profile: p.clone() }];
        let mut req = request();
        req.duration_s = 2 * 86400; // two days: recurrences show
        let c = composite_schedule(&installed, &req).unwrap();
        req.unit = RateUnit::W;
        let w = composite_schedule(&installed, &req).unwrap();
        for off in (0..req.duration_s).step_by(STEP as usize) {
            let t = t0() + Duration::seconds(i64::from(off));
            let own = own_limit(&p, t, t0());
            prop_assert_eq!(c.limit_at(off), own, "at {}", off);
            prop_assert_eq!(w.limit_at(off), own.map(|a| a * d(690)), "at {} (W)", off);
        }
    }
}
