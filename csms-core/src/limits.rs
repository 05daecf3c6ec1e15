//! Charging limits: one model of a charging profile for OCPP 1.6, 2.0.1 and
//! 2.1, the composite schedule a station's profiles give an EVSE
//! ([`composite_schedule`]), and a site allocator that splits a site's
//! limit over its active sessions ([`allocate`]) and says which
//! `TxProfile`/`TxDefaultProfile` to send.
//!
//! The CSMS calls [`allocate`] again on every session start and stop, on
//! every new EV request (2.x `NotifyEVChargingNeeds`) and on every change of
//! the site limit, and sends the profiles whose limit changed.
//!
//! # Rules
//!
//! 1. **A profile's limit at an instant** (1.6 §3.13.1 and §7 types
//!    `ChargingProfile`/`ChargingSchedule`; 2.0.1 and 2.1 Part 2 §K
//!    "Charging profiles"): it applies from `validFrom` (inclusive) to
//!    `validTo` (exclusive). Its schedule starts at `startSchedule`
//!    (`Absolute`), at the transaction's start (`Relative`; with no
//!    transaction given, at the start of the requested window: what a
//!    transaction starting then would get), or at `startSchedule` plus a
//!    whole number of days or weeks (`Recurring` `Daily`/`Weekly`; never
//!    before `startSchedule`). A 2.1 `Dynamic` profile's schedule starts at
//!    its `startSchedule`, else it is always in its first period (its limit
//!    is updated in place). A period lasts from its `startPeriod` to the next
//!    one's; the last lasts until `duration` (if given) ends the schedule, or
//!    until the next recurrence. Outside all that the profile has nothing to
//!    say about the instant. Of a 2.x profile's schedules (up to three, ISO
//!    15118 alternatives offered to the EV) the first is used.
//! 2. **Stacking** (1.6 §3.13.2, 2.0.1 §K "Stacking charging profiles"):
//!    within one purpose the *leading* profile at an instant is the one with
//!    the highest stack level among those that have a limit at that instant;
//!    a higher level that has ended or not yet begun does not shadow a lower
//!    one. At equal stack level an EVSE-specific profile beats one installed
//!    for the whole station (EVSE/connector 0), then the lower limit wins
//!    (so the answer does not depend on the input's order).
//! 3. **Combining purposes** (1.6 §3.13.3, 2.0.1 §K "Combining charging
//!    profile purposes", K08 `GetCompositeSchedule`): the tx-level limit is
//!    the leading `TxProfile` of the transaction (same transaction id, or
//!    none given, installed on the EVSE), else the leading
//!    `TxDefaultProfile`. The composite is the lowest of the tx-level limit
//!    and the leading `ChargePointMaxProfile`/`ChargingStationMaxProfile`
//!    and `ChargingStationExternalConstraints` limits. For EVSE 0 (the
//!    station's grid connection) only the last two count.
//! 4. **2.1's extra purposes**: a leading `PriorityCharging` profile
//!    replaces the tx-level limit while the request says priority charging
//!    is active (2.1 §K, `UsePriorityCharging`). `LocalGeneration`
//!    profiles are kept by the conversions but left out of the composite:
//!    they raise a limit by local generation the CSMS does not measure, so
//!    leaving them out errs on the safe side.
//! 5. **Units** (a `W` limit caps the total power, an `A` limit the current
//!    on each phase): at an instant the number of phases `n` is the fewest
//!    `numberPhases` of the periods that apply (3 when absent, as both
//!    versions assume), and **W = A × V × n** with the caller's
//!    phase-to-neutral voltage `V`. Values converted from W to A are
//!    rounded down to 0.1 A (never above a limit); values in the requested
//!    unit are unchanged.
//! 6. **Output**: periods cover the requested window, adjacent periods with
//!    the same limit and phases are merged, a period without limit means no
//!    profile limits that time.
//! 7. **Inconsistent input** is a typed [`Error`], never a panic: no
//!    schedule, no periods, period starts not strictly increasing, negative
//!    numbers, phases outside 1..=3, `Absolute`/`Recurring` without
//!    `startSchedule`, `Recurring` without `recurrencyKind`, a transaction
//!    id on a profile other than `TxProfile`, a non-positive voltage.
//! 8. **Site allocation** (max-min fairness, "water-filling"): each session
//!    can use up to its cap, the lowest of its station's maximum, its EV's
//!    request when known and an external limit on its EVSE when there is
//!    one (2.x `NotifyChargingLimit`, K11–K14: an energy management system's
//!    or grid operator's limit the CSMS must not exceed). Every session gets `min(cap, L)` with the
//!    level `L` as high as the site limit allows (and, when given, the
//!    per-phase current limit, counted as if every single-phase car were on
//!    the same phase: `Σ P / (V × phases) ≤ I`, true whatever the wiring).
//!    So nobody gets more than they can use and what is left is shared
//!    equally; `L` is rounded down to 0.1 W, so the limits hold exactly.
//!    **Priorities** ([`Session::priority`], e.g. fleet vehicles first):
//!    sessions are served by priority, highest first; each priority gets
//!    its own level `L` out of what the higher ones left of the site limit
//!    and of the per-phase current, so a session of a lower priority gets
//!    anything only once every session above it has its cap. Within a
//!    priority the shares are max-min fair as above.
//! 9. **Minimum rate**: a session given less than its minimum (the site's
//!    `min_current_a × V × phases`, 6 A by default: IEC 61851-1 cannot signal
//!    less to an AC car; never more than its cap) is not given a useless
//!    trickle. While some session is below its minimum, one of those below
//!    is paused at 0 W, the lowest priority first, then the most recently
//!    started (ties: the larger session id), and the rest is shared again.
//!    Sessions already at their minimum are never paused to make room.
//! 10. **Determinism**: the allocations are sorted by session id and depend
//!     only on the set of sessions, not on their order; duplicate session
//!     ids are an error.
//! 11. **The profiles of a station** ([`station_profiles`], OCPP's purposes
//!     as the spec intends them): each running transaction gets a
//!     `TxProfile` with its transaction id and its share
//!     ([`TX_PROFILE_BASE`] + EVSE, stack level [`SHARE_STACK_LEVEL`]);
//!     the station gets one `TxDefaultProfile` for all its EVSEs (EVSE 0,
//!     [`TX_DEFAULT_PROFILE_ID`]) with [`Site::default_share`]: what any
//!     EVSE of the site may use before the CSMS knows of its transaction,
//!     low enough that the site holds if every EVSE used it at once; and
//!     while the site limit holds one of its sessions below its cap, a
//!     `ChargingStationMaxProfile` (1.6 `ChargePointMaxProfile`, EVSE 0,
//!     [`STATION_MAX_PROFILE_ID`]) caps the whole station at the sum of its
//!     shares and one default share. The ids are fixed, so a new profile
//!     replaces the old one in place; what no longer applies (the station
//!     maximum once nothing is held back) is cleared by id.
//! 12. **Needs by departure first** (refines rule 8): within a priority,
//!     the shares are filled in two rounds. In the first each session can use at most what it needs to
//!     get the energy it asked for by its departure
//!     ([`Session::required_w`], [`required_w`]; a session whose need is
//!     not known, or whose departure is past, can use its cap), max-min
//!     fair as in rule 8; what the first round leaves is then shared the
//!     same way up to the caps. So a car that must leave soon is served
//!     before a car that has all night gets more than it needs, and
//!     without any need known the result is rule 8's.
//!
//! # Example
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use evproto_csms_core::limits::{
//!     allocate, composite_schedule, CompositeRequest, InstalledProfile, RateUnit, Session, Site,
//! };
//! use evproto_ocpp_types::v16;
//! use rust_decimal::Decimal;
//!
//! let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 8, 0, 0).unwrap();
//! // the station's connection: 32 A, 11 A from 08:30 to 09:00
//! let max: v16::SetChargingProfileRequest = serde_json::from_str(r#"{"connectorId":0,
//!   "csChargingProfiles":{"chargingProfileId":1,"stackLevel":0,
//!   "chargingProfilePurpose":"ChargePointMaxProfile","chargingProfileKind":"Absolute",
//!   "chargingSchedule":{"startSchedule":"2026-01-01T08:00:00Z","chargingRateUnit":"A",
//!   "chargingSchedulePeriod":[{"startPeriod":0,"limit":32},{"startPeriod":1800,"limit":11},
//!   {"startPeriod":3600,"limit":32}]}}}"#)?;
//! let profiles = vec![InstalledProfile::try_from(&max)?];
//!
//! let mut req = CompositeRequest::new(1, t0, 7200, RateUnit::A);
//! let c = composite_schedule(&profiles, &req)?;
//! assert_eq!(c.periods.len(), 3);
//! assert_eq!(c.limit_at(1800), Some(Decimal::from(11)));
//! req.unit = RateUnit::W; // W = A × 230 V × 3 phases
//! assert_eq!(composite_schedule(&profiles, &req)?.limit_at(0), Some(Decimal::from(22080)));
//!
//! // two cars share an 11 kW site; one asks for 3 kW only
//! let site = Site::new(Decimal::from(11_000));
//! let a = Session::new("A", 1, 3, Decimal::from(11_000), t0);
//! let b = Session { ev_max_w: Some(Decimal::from(3_000)), ..Session::new("B", 2, 3, Decimal::from(11_000), t0) };
//! let out = allocate(&site, &[b, a])?;
//! assert_eq!((out[0].watts, out[1].watts), (Decimal::from(8_000), Decimal::from(3_000)));
//! let send = out[0].to_profile(10, 1, RateUnit::A, &site, t0).to_v16()?; // SetChargingProfile
//! assert_eq!(send.cs_charging_profiles.charging_schedule.charging_schedule_period[0].limit,
//!            Decimal::new(115, 1)); // 8000 W / (230 V × 3) = 11.59 A, rounded down
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use evproto_ocpp_types::{v16, v201, v21, BoundedString};
use rust_decimal::{Decimal, RoundingStrategy};

/// The phases assumed when a period does not say (1.6 and 2.x: 3).
pub const DEFAULT_PHASES: u8 = 3;

/// Why a profile applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Purpose {
    /// 1.6 `ChargePointMaxProfile`, 2.x `ChargingStationMaxProfile`: the
    /// station's (or its grid connection's) maximum.
    StationMax,
    /// 2.x `ChargingStationExternalConstraints`: limits set by an external
    /// system (an energy management system), reported to the CSMS.
    ExternalConstraints,
    /// `TxDefaultProfile`: the default for transactions on an EVSE (or all).
    TxDefault,
    /// `TxProfile`: for one transaction.
    Tx,
    /// 2.1 `PriorityCharging`: replaces the tx-level limit while priority
    /// charging is active.
    PriorityCharging,
    /// 2.1 `LocalGeneration`: power from local generation.
    LocalGeneration,
}

/// How often a recurring profile repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Recurrency {
    /// Every 24 hours from `startSchedule`.
    Daily,
    /// Every 7 days from `startSchedule`.
    Weekly,
}

impl Recurrency {
    fn period_ms(self) -> i64 {
        match self {
            Recurrency::Daily => 86_400_000,
            Recurrency::Weekly => 7 * 86_400_000,
        }
    }
}

/// When a profile's schedule starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// At `startSchedule`.
    Absolute,
    /// At `startSchedule`, again every day or week.
    Recurring(Recurrency),
    /// At the transaction's start.
    Relative,
    /// 2.1 `Dynamic`: one period whose limit the CSMS updates in place.
    Dynamic,
}

/// The unit of a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateUnit {
    /// Watts, the total over all phases.
    W,
    /// Amperes, per phase.
    A,
}

/// One period of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// Seconds from the schedule's start.
    pub start_s: u32,
    /// The limit, in the schedule's unit.
    pub limit: Decimal,
    /// Phases the car may use (absent: 3).
    pub number_phases: Option<u8>,
    /// 2.x `phaseToUse` (1..=3) for single-phase charging.
    pub phase_to_use: Option<u8>,
}

/// A charging schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// 2.x schedule id (1.6 has none).
    pub id: Option<i32>,
    /// `startSchedule`.
    pub start: Option<DateTime<Utc>>,
    /// `duration` in seconds.
    pub duration_s: Option<u32>,
    /// `chargingRateUnit`.
    pub unit: RateUnit,
    /// `chargingSchedulePeriod`, by increasing start.
    pub periods: Vec<Period>,
    /// `minChargingRate`, in `unit`.
    pub min_charging_rate: Option<Decimal>,
}

/// A charging profile, version-independent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargingProfile {
    /// `chargingProfileId` / `id`.
    pub id: i32,
    /// `stackLevel`: higher wins within a purpose.
    pub stack_level: u32,
    /// `chargingProfilePurpose`.
    pub purpose: Purpose,
    /// `chargingProfileKind` with `recurrencyKind`.
    pub kind: Kind,
    /// `validFrom`.
    pub valid_from: Option<DateTime<Utc>>,
    /// `validTo`.
    pub valid_to: Option<DateTime<Utc>>,
    /// `transactionId` of a `TxProfile` (1.6's integer in decimal).
    pub transaction_id: Option<String>,
    /// The schedules (1.6: one; 2.x: one to three, the first is followed).
    pub schedules: Vec<Schedule>,
}

/// A profile as installed on a station: for an EVSE (1.6 connector), or
/// for the whole station (0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledProfile {
    /// 2.x `evseId`, 1.6 `connectorId`; 0 is the whole station.
    pub evse_id: u32,
    /// The profile.
    pub profile: ChargingProfile,
}

/// Inconsistent input, or a profile a version cannot carry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A 2.x profile without a schedule.
    NoSchedule {
        /// The profile.
        profile_id: i32,
    },
    /// A schedule without periods.
    NoPeriods {
        /// The profile.
        profile_id: i32,
    },
    /// Period `index` does not start after the one before it.
    PeriodsNotIncreasing {
        /// The profile.
        profile_id: i32,
        /// The period's index.
        index: usize,
    },
    /// A number that may not be negative is.
    Negative {
        /// The profile (0 for a site or session).
        profile_id: i32,
        /// The field, as on the wire.
        field: &'static str,
    },
    /// A number of phases (or phase to use) outside 1..=3.
    InvalidPhases {
        /// The profile (0 for a session).
        profile_id: i32,
        /// The value.
        value: i32,
    },
    /// An `Absolute` or `Recurring` profile without `startSchedule`.
    MissingStartSchedule {
        /// The profile.
        profile_id: i32,
    },
    /// A `Recurring` profile without `recurrencyKind`.
    MissingRecurrency {
        /// The profile.
        profile_id: i32,
    },
    /// A transaction id on a profile that is not a `TxProfile`.
    TransactionIdNotAllowed {
        /// The profile.
        profile_id: i32,
    },
    /// A 2.1 period without `limit` (setpoint-only operation modes).
    MissingLimit {
        /// The profile.
        profile_id: i32,
        /// The period's index.
        index: usize,
    },
    /// A value the target version cannot carry (a 2.1 purpose or kind in
    /// 1.6 or 2.0.1, a second schedule in 1.6, a 1.6 transaction id that is
    /// not an integer, a string too long), or an enum value this crate does
    /// not know.
    NotInVersion {
        /// The profile.
        profile_id: i32,
        /// What.
        what: &'static str,
    },
    /// A voltage that is not positive.
    InvalidVoltage,
    /// Two sessions with the same id.
    DuplicateSession(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoSchedule { profile_id } => write!(f, "profile {profile_id} has no schedule"),
            Error::NoPeriods { profile_id } => {
                write!(f, "profile {profile_id} has a schedule without periods")
            }
            Error::PeriodsNotIncreasing { profile_id, index } => write!(
                f,
                "profile {profile_id}: period {index} does not start after the one before it"
            ),
            Error::Negative { profile_id, field } => {
                write!(f, "profile {profile_id}: negative {field}")
            }
            Error::InvalidPhases { profile_id, value } => {
                write!(f, "profile {profile_id}: {value} phases (1..=3 allowed)")
            }
            Error::MissingStartSchedule { profile_id } => {
                write!(
                    f,
                    "profile {profile_id}: Absolute or Recurring without startSchedule"
                )
            }
            Error::MissingRecurrency { profile_id } => {
                write!(f, "profile {profile_id}: Recurring without recurrencyKind")
            }
            Error::TransactionIdNotAllowed { profile_id } => {
                write!(
                    f,
                    "profile {profile_id}: transactionId on a profile that is not a TxProfile"
                )
            }
            Error::MissingLimit { profile_id, index } => {
                write!(f, "profile {profile_id}: period {index} has no limit")
            }
            Error::NotInVersion { profile_id, what } => {
                write!(
                    f,
                    "profile {profile_id}: {what} cannot be expressed in this version"
                )
            }
            Error::InvalidVoltage => f.write_str("the voltage must be positive"),
            Error::DuplicateSession(id) => write!(f, "session {id} is listed twice"),
        }
    }
}

impl std::error::Error for Error {}

fn phases(profile_id: i32, v: Option<i32>) -> Result<Option<u8>, Error> {
    match v {
        None => Ok(None),
        Some(n @ 1..=3) => Ok(Some(n as u8)),
        Some(n) => Err(Error::InvalidPhases {
            profile_id,
            value: n,
        }),
    }
}

fn non_negative(profile_id: i32, field: &'static str, v: i32) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::Negative { profile_id, field })
}

impl ChargingProfile {
    /// Checks the profile's consistency (rule 7).
    ///
    /// # Errors
    ///
    /// The first inconsistency found.
    pub fn validate(&self) -> Result<(), Error> {
        let profile_id = self.id;
        let Some(first) = self.schedules.first() else {
            return Err(Error::NoSchedule { profile_id });
        };
        if matches!(self.kind, Kind::Absolute | Kind::Recurring(_)) && first.start.is_none() {
            return Err(Error::MissingStartSchedule { profile_id });
        }
        if self.transaction_id.is_some() && self.purpose != Purpose::Tx {
            return Err(Error::TransactionIdNotAllowed { profile_id });
        }
        for s in &self.schedules {
            if s.periods.is_empty() {
                return Err(Error::NoPeriods { profile_id });
            }
            if s.min_charging_rate
                .is_some_and(|m| m.is_sign_negative() && !m.is_zero())
            {
                return Err(Error::Negative {
                    profile_id,
                    field: "minChargingRate",
                });
            }
            for (index, p) in s.periods.iter().enumerate() {
                if index > 0 && p.start_s <= s.periods[index - 1].start_s {
                    return Err(Error::PeriodsNotIncreasing { profile_id, index });
                }
                if p.limit.is_sign_negative() && !p.limit.is_zero() {
                    return Err(Error::Negative {
                        profile_id,
                        field: "limit",
                    });
                }
                for v in [p.number_phases, p.phase_to_use].into_iter().flatten() {
                    if !(1..=3).contains(&v) {
                        return Err(Error::InvalidPhases {
                            profile_id,
                            value: i32::from(v),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn valid_at(&self, t: DateTime<Utc>) -> bool {
        self.valid_from.is_none_or(|f| t >= f) && self.valid_to.is_none_or(|v| t < v)
    }

    /// The start of the schedule instance in force at `t` (rule 1).
    fn origin_at(&self, t: DateTime<Utc>, relative_start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let s = self.schedules.first()?;
        match self.kind {
            Kind::Absolute => s.start,
            Kind::Dynamic => Some(s.start.unwrap_or(t)),
            Kind::Relative => Some(relative_start),
            Kind::Recurring(r) => {
                let start = s.start?;
                let d = (t - start).num_milliseconds();
                if d < 0 {
                    return None;
                }
                let per = r.period_ms();
                Some(start + Duration::milliseconds(d.div_euclid(per) * per))
            }
        }
    }

    /// The period in force at `t`, with the schedule's unit.
    fn period_at(
        &self,
        t: DateTime<Utc>,
        relative_start: DateTime<Utc>,
    ) -> Option<(&Period, RateUnit)> {
        if !self.valid_at(t) {
            return None;
        }
        let s = self.schedules.first()?;
        let origin = self.origin_at(t, relative_start)?;
        let off = (t - origin).num_milliseconds();
        if off < 0 {
            return None;
        }
        if let (Some(d), false) = (
            s.duration_s,
            self.kind == Kind::Dynamic && s.start.is_none(),
        ) {
            if off >= i64::from(d) * 1000 {
                return None;
            }
        }
        s.periods
            .iter()
            .rev()
            .find(|p| i64::from(p.start_s) * 1000 <= off)
            .map(|p| (p, s.unit))
    }

    /// Every instant in `[from, to)` at which the profile's limit may change.
    fn breakpoints(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        relative_start: DateTime<Utc>,
        out: &mut BTreeSet<DateTime<Utc>>,
    ) {
        let mut add = |t: DateTime<Utc>| {
            if t > from && t < to {
                out.insert(t);
            }
        };
        self.valid_from.into_iter().for_each(&mut add);
        self.valid_to.into_iter().for_each(&mut add);
        let Some(s) = self.schedules.first() else {
            return;
        };
        let origins: Vec<DateTime<Utc>> = match self.kind {
            Kind::Absolute => s.start.into_iter().collect(),
            Kind::Dynamic => s.start.into_iter().collect(),
            Kind::Relative => vec![relative_start],
            Kind::Recurring(r) => {
                let Some(start) = s.start else { return };
                let per = r.period_ms();
                let k0 = (from - start).num_milliseconds().div_euclid(per).max(0);
                let k1 = (to - start).num_milliseconds().div_euclid(per);
                (k0..=k1)
                    .map(|k| start + Duration::milliseconds(k * per))
                    .collect()
            }
        };
        for o in origins {
            add(o);
            for p in &s.periods {
                add(o + Duration::seconds(i64::from(p.start_s)));
            }
            if let Some(d) = s.duration_s {
                add(o + Duration::seconds(i64::from(d)));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// From the typed messages

impl TryFrom<&v16::ChargingProfile> for ChargingProfile {
    type Error = Error;

    fn try_from(p: &v16::ChargingProfile) -> Result<Self, Error> {
        use v16::ChargingProfileKindType as K;
        use v16::ChargingProfilePurposeType as P;
        let id = p.charging_profile_id;
        let unknown = |what| Error::NotInVersion {
            profile_id: id,
            what,
        };
        let purpose = match p.charging_profile_purpose {
            P::ChargePointMaxProfile => Purpose::StationMax,
            P::TxDefaultProfile => Purpose::TxDefault,
            P::TxProfile => Purpose::Tx,
            _ => return Err(unknown("chargingProfilePurpose")),
        };
        let kind = match (p.charging_profile_kind, p.recurrency_kind) {
            (K::Absolute, _) => Kind::Absolute,
            (K::Relative, _) => Kind::Relative,
            (K::Recurring, Some(v16::RecurrencyKindType::Daily)) => {
                Kind::Recurring(Recurrency::Daily)
            }
            (K::Recurring, Some(v16::RecurrencyKindType::Weekly)) => {
                Kind::Recurring(Recurrency::Weekly)
            }
            (K::Recurring, None) => return Err(Error::MissingRecurrency { profile_id: id }),
            _ => return Err(unknown("chargingProfileKind")),
        };
        let s = &p.charging_schedule;
        let periods = s
            .charging_schedule_period
            .iter()
            .map(|q| {
                Ok(Period {
                    start_s: non_negative(id, "startPeriod", q.start_period)?,
                    limit: q.limit,
                    number_phases: phases(id, q.number_phases)?,
                    phase_to_use: None,
                })
            })
            .collect::<Result<_, Error>>()?;
        let out = ChargingProfile {
            id,
            stack_level: non_negative(id, "stackLevel", p.stack_level)?,
            purpose,
            kind,
            valid_from: p.valid_from,
            valid_to: p.valid_to,
            transaction_id: p.transaction_id.map(|t| t.to_string()),
            schedules: vec![Schedule {
                id: None,
                start: s.start_schedule,
                duration_s: s
                    .duration
                    .map(|d| non_negative(id, "duration", d))
                    .transpose()?,
                unit: match s.charging_rate_unit {
                    v16::ChargingRateUnitType::A => RateUnit::A,
                    v16::ChargingRateUnitType::W => RateUnit::W,
                    _ => return Err(unknown("chargingRateUnit")),
                },
                periods,
                min_charging_rate: s.min_charging_rate,
            }],
        };
        out.validate()?;
        Ok(out)
    }
}

macro_rules! profile_2x {
    ($ver:ident, $limit:expr) => {
        impl TryFrom<&$ver::ChargingProfileType> for ChargingProfile {
            type Error = Error;

            fn try_from(p: &$ver::ChargingProfileType) -> Result<Self, Error> {
                let id = p.id;
                let unknown = |what| Error::NotInVersion {
                    profile_id: id,
                    what,
                };
                let purpose = match p.charging_profile_purpose.as_str() {
                    "ChargingStationMaxProfile" => Purpose::StationMax,
                    "ChargingStationExternalConstraints" => Purpose::ExternalConstraints,
                    "TxDefaultProfile" => Purpose::TxDefault,
                    "TxProfile" => Purpose::Tx,
                    "PriorityCharging" => Purpose::PriorityCharging,
                    "LocalGeneration" => Purpose::LocalGeneration,
                    _ => return Err(unknown("chargingProfilePurpose")),
                };
                let kind = match (p.charging_profile_kind.as_str(), p.recurrency_kind) {
                    ("Absolute", _) => Kind::Absolute,
                    ("Relative", _) => Kind::Relative,
                    ("Dynamic", _) => Kind::Dynamic,
                    ("Recurring", Some($ver::RecurrencyKindEnumType::Daily)) => {
                        Kind::Recurring(Recurrency::Daily)
                    }
                    ("Recurring", Some($ver::RecurrencyKindEnumType::Weekly)) => {
                        Kind::Recurring(Recurrency::Weekly)
                    }
                    ("Recurring", None) => return Err(Error::MissingRecurrency { profile_id: id }),
                    _ => return Err(unknown("chargingProfileKind")),
                };
                let schedules = p
                    .charging_schedule
                    .iter()
                    .map(|s| {
                        let unit = match s.charging_rate_unit {
                            $ver::ChargingRateUnitEnumType::A => RateUnit::A,
                            $ver::ChargingRateUnitEnumType::W => RateUnit::W,
                            _ => return Err(unknown("chargingRateUnit")),
                        };
                        let periods = s
                            .charging_schedule_period
                            .iter()
                            .enumerate()
                            .map(|(index, q)| {
                                Ok(Period {
                                    start_s: non_negative(id, "startPeriod", q.start_period)?,
                                    limit: ($limit)(q, unit).ok_or(Error::MissingLimit {
                                        profile_id: id,
                                        index,
                                    })?,
                                    number_phases: phases(id, q.number_phases)?,
                                    phase_to_use: phases(id, q.phase_to_use)?,
                                })
                            })
                            .collect::<Result<_, Error>>()?;
                        Ok(Schedule {
                            id: Some(s.id),
                            start: s.start_schedule,
                            duration_s: s
                                .duration
                                .map(|d| non_negative(id, "duration", d))
                                .transpose()?,
                            unit,
                            periods,
                            min_charging_rate: s.min_charging_rate,
                        })
                    })
                    .collect::<Result<_, Error>>()?;
                let out = ChargingProfile {
                    id,
                    stack_level: non_negative(id, "stackLevel", p.stack_level)?,
                    purpose,
                    kind,
                    valid_from: p.valid_from,
                    valid_to: p.valid_to,
                    transaction_id: p.transaction_id.as_ref().map(|t| t.as_str().to_owned()),
                    schedules,
                };
                out.validate()?;
                Ok(out)
            }
        }

        impl TryFrom<&$ver::SetChargingProfileRequest> for InstalledProfile {
            type Error = Error;

            fn try_from(m: &$ver::SetChargingProfileRequest) -> Result<Self, Error> {
                Ok(InstalledProfile {
                    evse_id: non_negative(m.charging_profile.id, "evseId", m.evse_id)?,
                    profile: ChargingProfile::try_from(&m.charging_profile)?,
                })
            }
        }
    };
}

profile_2x!(v201, |q: &v201::ChargingSchedulePeriodType, _| Some(
    q.limit
));
// 2.1 per-phase limits (`limit_L2`, `limit_L3`; `limit` is then L1's): the
// lowest of them per phase (A), or the lowest times the phases given (W), so
// never above any phase's limit.
profile_2x!(v21, |q: &v21::ChargingSchedulePeriodType,
                  unit: RateUnit| {
    let given: Vec<Decimal> = [q.limit, q.limit_l2, q.limit_l3]
        .into_iter()
        .flatten()
        .collect();
    let lowest = *given.iter().min()?;
    match (q.limit?, q.limit_l2.is_some() || q.limit_l3.is_some(), unit) {
        (l, false, _) => Some(l),
        (_, true, RateUnit::A) => Some(lowest),
        (_, true, RateUnit::W) => Some(lowest * Decimal::from(given.len())),
    }
});

impl TryFrom<&v16::SetChargingProfileRequest> for InstalledProfile {
    type Error = Error;

    fn try_from(m: &v16::SetChargingProfileRequest) -> Result<Self, Error> {
        let id = m.cs_charging_profiles.charging_profile_id;
        Ok(InstalledProfile {
            evse_id: non_negative(id, "connectorId", m.connector_id)?,
            profile: ChargingProfile::try_from(&m.cs_charging_profiles)?,
        })
    }
}

// ---------------------------------------------------------------------------
// Back to the typed messages, for sending

fn to_i32(profile_id: i32, what: &'static str, v: u32) -> Result<i32, Error> {
    i32::try_from(v).map_err(|_| Error::NotInVersion { profile_id, what })
}

impl TryFrom<&ChargingProfile> for v16::ChargingProfile {
    type Error = Error;

    fn try_from(p: &ChargingProfile) -> Result<Self, Error> {
        p.validate()?;
        let id = p.id;
        let not = |what| Error::NotInVersion {
            profile_id: id,
            what,
        };
        let [s] = p.schedules.as_slice() else {
            return Err(not("more than one chargingSchedule"));
        };
        let (kind, recurrency) = match p.kind {
            Kind::Absolute => (v16::ChargingProfileKindType::Absolute, None),
            Kind::Relative => (v16::ChargingProfileKindType::Relative, None),
            Kind::Recurring(r) => (
                v16::ChargingProfileKindType::Recurring,
                Some(match r {
                    Recurrency::Daily => v16::RecurrencyKindType::Daily,
                    Recurrency::Weekly => v16::RecurrencyKindType::Weekly,
                }),
            ),
            Kind::Dynamic => return Err(not("chargingProfileKind Dynamic")),
        };
        Ok(v16::ChargingProfile {
            charging_profile_id: id,
            transaction_id: p
                .transaction_id
                .as_deref()
                .map(|t| {
                    t.parse::<i32>()
                        .map_err(|_| not("a non-integer transactionId"))
                })
                .transpose()?,
            stack_level: to_i32(id, "stackLevel", p.stack_level)?,
            charging_profile_purpose: match p.purpose {
                Purpose::StationMax => v16::ChargingProfilePurposeType::ChargePointMaxProfile,
                Purpose::TxDefault => v16::ChargingProfilePurposeType::TxDefaultProfile,
                Purpose::Tx => v16::ChargingProfilePurposeType::TxProfile,
                _ => return Err(not("a 2.x chargingProfilePurpose")),
            },
            charging_profile_kind: kind,
            recurrency_kind: recurrency,
            valid_from: p.valid_from,
            valid_to: p.valid_to,
            charging_schedule: v16::ChargingSchedule {
                duration: s
                    .duration_s
                    .map(|d| to_i32(id, "duration", d))
                    .transpose()?,
                start_schedule: s.start,
                charging_rate_unit: match s.unit {
                    RateUnit::A => v16::ChargingRateUnitType::A,
                    RateUnit::W => v16::ChargingRateUnitType::W,
                },
                charging_schedule_period: s
                    .periods
                    .iter()
                    .map(|q| {
                        Ok(v16::ChargingSchedulePeriod {
                            start_period: to_i32(id, "startPeriod", q.start_s)?,
                            limit: q.limit,
                            number_phases: q.number_phases.map(i32::from),
                        })
                    })
                    .collect::<Result<_, Error>>()?,
                min_charging_rate: s.min_charging_rate,
            },
        })
    }
}

impl TryFrom<&ChargingProfile> for v201::ChargingProfileType {
    type Error = Error;

    fn try_from(p: &ChargingProfile) -> Result<Self, Error> {
        p.validate()?;
        let id = p.id;
        let not = |what| Error::NotInVersion {
            profile_id: id,
            what,
        };
        let (kind, recurrency) = match p.kind {
            Kind::Absolute => (v201::ChargingProfileKindEnumType::Absolute, None),
            Kind::Relative => (v201::ChargingProfileKindEnumType::Relative, None),
            Kind::Recurring(r) => (
                v201::ChargingProfileKindEnumType::Recurring,
                Some(match r {
                    Recurrency::Daily => v201::RecurrencyKindEnumType::Daily,
                    Recurrency::Weekly => v201::RecurrencyKindEnumType::Weekly,
                }),
            ),
            Kind::Dynamic => return Err(not("chargingProfileKind Dynamic")),
        };
        use v201::ChargingProfilePurposeEnumType as P;
        Ok(v201::ChargingProfileType {
            custom_data: None,
            id,
            stack_level: to_i32(id, "stackLevel", p.stack_level)?,
            charging_profile_purpose: match p.purpose {
                Purpose::StationMax => P::ChargingStationMaxProfile,
                Purpose::ExternalConstraints => P::ChargingStationExternalConstraints,
                Purpose::TxDefault => P::TxDefaultProfile,
                Purpose::Tx => P::TxProfile,
                _ => return Err(not("a 2.1 chargingProfilePurpose")),
            },
            charging_profile_kind: kind,
            recurrency_kind: recurrency,
            valid_from: p.valid_from,
            valid_to: p.valid_to,
            charging_schedule: p
                .schedules
                .iter()
                .zip(1..)
                .map(|(s, n)| {
                    Ok(v201::ChargingScheduleType {
                        custom_data: None,
                        id: s.id.unwrap_or(n),
                        start_schedule: s.start,
                        duration: s
                            .duration_s
                            .map(|d| to_i32(id, "duration", d))
                            .transpose()?,
                        charging_rate_unit: match s.unit {
                            RateUnit::A => v201::ChargingRateUnitEnumType::A,
                            RateUnit::W => v201::ChargingRateUnitEnumType::W,
                        },
                        charging_schedule_period: s
                            .periods
                            .iter()
                            .map(|q| {
                                Ok(v201::ChargingSchedulePeriodType {
                                    custom_data: None,
                                    start_period: to_i32(id, "startPeriod", q.start_s)?,
                                    limit: q.limit,
                                    number_phases: q.number_phases.map(i32::from),
                                    phase_to_use: q.phase_to_use.map(i32::from),
                                })
                            })
                            .collect::<Result<_, Error>>()?,
                        min_charging_rate: s.min_charging_rate,
                        sales_tariff: None,
                    })
                })
                .collect::<Result<_, Error>>()?,
            transaction_id: p
                .transaction_id
                .as_deref()
                .map(|t| {
                    BoundedString::new(t).map_err(|_| not("a transactionId over 36 characters"))
                })
                .transpose()?,
        })
    }
}

impl InstalledProfile {
    /// The 1.6 `SetChargingProfile` request that installs it.
    ///
    /// # Errors
    ///
    /// An inconsistent profile, or one 1.6 cannot carry.
    pub fn to_v16(&self) -> Result<v16::SetChargingProfileRequest, Error> {
        Ok(v16::SetChargingProfileRequest {
            connector_id: to_i32(self.profile.id, "connectorId", self.evse_id)?,
            cs_charging_profiles: v16::ChargingProfile::try_from(&self.profile)?,
        })
    }

    /// The 2.0.1 `SetChargingProfile` request that installs it.
    ///
    /// # Errors
    ///
    /// An inconsistent profile, or one 2.0.1 cannot carry.
    pub fn to_v201(&self) -> Result<v201::SetChargingProfileRequest, Error> {
        Ok(v201::SetChargingProfileRequest {
            custom_data: None,
            evse_id: to_i32(self.profile.id, "evseId", self.evse_id)?,
            charging_profile: v201::ChargingProfileType::try_from(&self.profile)?,
        })
    }
}

// ---------------------------------------------------------------------------
// The EV's request (2.x NotifyEVChargingNeeds)

/// What an EV asked for in 2.x `NotifyEVChargingNeeds` (1.6 has no such
/// message: the EV's request is unknown there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EvRequest {
    /// AC `evMaxCurrent` (per phase) or DC `evMaxCurrent`.
    pub max_current_a: Option<Decimal>,
    /// DC `evMaxPower`, or DC `evMaxCurrent × evMaxVoltage`.
    pub max_power_w: Option<Decimal>,
    /// The AC phases it asked to charge on (`requestedEnergyTransfer`
    /// `AC_single_phase` 1, `AC_two_phase` 2, `AC_three_phase` 3; `None`
    /// for DC and the other modes).
    pub phases: Option<u8>,
    /// The energy it asked for, Wh (AC or DC `energyAmount`).
    pub energy_wh: Option<Decimal>,
    /// When it leaves (`departureTime`).
    pub departure: Option<DateTime<Utc>>,
}

impl EvRequest {
    /// The EV's maximum in W: its power when it said one, else its current
    /// at `voltage_v` on `phases` phases (W = A × V × phases).
    pub fn max_w(&self, voltage_v: Decimal, phases: u8) -> Option<Decimal> {
        self.max_power_w.or_else(|| {
            self.max_current_a
                .map(|a| a * voltage_v * Decimal::from(phases))
        })
    }
}

/// A line of a three-phase supply, as a meter value's `phase` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Line {
    /// `L1`.
    L1,
    /// `L2`.
    L2,
    /// `L3`.
    L3,
}

impl Line {
    /// The line a meter value's `phase` names (`L1`, `L2`, `L3`; the
    /// other phase values name no single line).
    pub fn from_phase(phase: &str) -> Option<Line> {
        match phase {
            "L1" => Some(Line::L1),
            "L2" => Some(Line::L2),
            "L3" => Some(Line::L3),
            _ => None,
        }
    }
}

/// The least current on a line that counts as the car drawing on it, A.
pub const LINE_IN_USE_A: Decimal = Decimal::ONE;

/// The phases a car draws on, from one meter reading's per-line currents
/// (`Current.Import` with `phase` `L1`, `L2`, `L3`): how many lines carry
/// at least [`LINE_IN_USE_A`]. `None` when none does: no per-line reading,
/// or the car draws (almost) nothing, which tells nothing of its phases.
pub fn phases_in_use(currents: impl IntoIterator<Item = (Line, Decimal)>) -> Option<u8> {
    let lines: BTreeSet<Line> = currents
        .into_iter()
        .filter(|(_, a)| *a >= LINE_IN_USE_A)
        .map(|(l, _)| l)
        .collect();
    match lines.len() {
        0 => None,
        n => u8::try_from(n).ok(),
    }
}

/// A session's phases for the allocator: what its car was last seen
/// drawing on ([`phases_in_use`]), else what the EV asked for
/// ([`EvRequest::phases`]), else [`DEFAULT_PHASES`] (1.6 and 2.x assume
/// three).
pub fn session_phases(measured: Option<u8>, requested: Option<u8>) -> u8 {
    measured
        .or(requested)
        .filter(|p| (1..=3).contains(p))
        .unwrap_or(DEFAULT_PHASES)
}

fn dc_power(power: Option<Decimal>, current: Decimal, voltage: Decimal) -> Option<Decimal> {
    Some(power.unwrap_or(current * voltage))
}

impl From<&v201::NotifyEVChargingNeedsRequest> for EvRequest {
    fn from(m: &v201::NotifyEVChargingNeedsRequest) -> Self {
        let n = &m.charging_needs;
        if let Some(dc) = &n.dc_charging_parameters {
            return EvRequest {
                max_current_a: Some(Decimal::from(dc.ev_max_current)),
                max_power_w: dc_power(
                    dc.ev_max_power.map(Decimal::from),
                    Decimal::from(dc.ev_max_current),
                    Decimal::from(dc.ev_max_voltage),
                ),
                phases: None,
                energy_wh: dc.energy_amount.map(Decimal::from),
                departure: n.departure_time,
            };
        }
        use v201::EnergyTransferModeEnumType as Mode;
        EvRequest {
            max_current_a: n
                .ac_charging_parameters
                .as_ref()
                .map(|ac| Decimal::from(ac.ev_max_current)),
            max_power_w: None,
            phases: match n.requested_energy_transfer {
                Mode::ACSinglePhase => Some(1),
                Mode::ACTwoPhase => Some(2),
                Mode::ACThreePhase => Some(3),
                _ => None,
            },
            energy_wh: n
                .ac_charging_parameters
                .as_ref()
                .map(|ac| Decimal::from(ac.energy_amount)),
            departure: n.departure_time,
        }
    }
}

impl From<&v21::NotifyEVChargingNeedsRequest> for EvRequest {
    fn from(m: &v21::NotifyEVChargingNeedsRequest) -> Self {
        let n = &m.charging_needs;
        if let Some(dc) = &n.dc_charging_parameters {
            return EvRequest {
                max_current_a: Some(dc.ev_max_current),
                max_power_w: dc_power(dc.ev_max_power, dc.ev_max_current, dc.ev_max_voltage),
                phases: None,
                energy_wh: dc.energy_amount,
                departure: n.departure_time,
            };
        }
        use v21::EnergyTransferModeEnumType as Mode;
        EvRequest {
            max_current_a: n
                .ac_charging_parameters
                .as_ref()
                .map(|ac| ac.ev_max_current),
            max_power_w: None,
            phases: match n.requested_energy_transfer {
                Mode::ACSinglePhase => Some(1),
                Mode::ACTwoPhase => Some(2),
                Mode::ACThreePhase => Some(3),
                _ => None,
            },
            // a bidirectional car's target, else its AC energy amount
            energy_wh: n
                .v2x_charging_parameters
                .as_ref()
                .and_then(|v| v.ev_target_energy_request)
                .or_else(|| n.ac_charging_parameters.as_ref().map(|ac| ac.energy_amount)),
            departure: n.departure_time,
        }
    }
}

// ---------------------------------------------------------------------------
// Composite schedule

/// A transaction, for `TxProfile`s and `Relative` profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRef {
    /// Its id (1.6's integer in decimal).
    pub id: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
}

/// What [`composite_schedule`] computes (2.x `GetCompositeScheduleRequest`,
/// plus what the CSMS knows that the station would).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompositeRequest {
    /// The EVSE (1.6 connector); 0 is the station's grid connection.
    pub evse_id: u32,
    /// The transaction on that EVSE, if any.
    pub transaction: Option<TxRef>,
    /// Start of the window.
    pub from: DateTime<Utc>,
    /// Length of the window, in seconds.
    pub duration_s: u32,
    /// The unit of the result.
    pub unit: RateUnit,
    /// Phase-to-neutral voltage for A ↔ W (rule 5).
    pub voltage_v: Decimal,
    /// 2.1 priority charging is active on the EVSE (rule 4).
    pub priority_charging: bool,
}

impl CompositeRequest {
    /// A request without transaction, at 230 V, without priority charging.
    pub fn new(evse_id: u32, from: DateTime<Utc>, duration_s: u32, unit: RateUnit) -> Self {
        CompositeRequest {
            evse_id,
            transaction: None,
            from,
            duration_s,
            unit,
            voltage_v: Decimal::from(230),
            priority_charging: false,
        }
    }
}

/// One period of a composite schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompositePeriod {
    /// Seconds from the window's start.
    pub start_s: u32,
    /// The limit in the requested unit; `None`: no profile limits this time.
    pub limit: Option<Decimal>,
    /// The phases the car may use (with a limit).
    pub number_phases: Option<u8>,
}

/// The composite schedule of an EVSE over a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompositeSchedule {
    /// The EVSE.
    pub evse_id: u32,
    /// Start of the window.
    pub start: DateTime<Utc>,
    /// Length of the window, in seconds.
    pub duration_s: u32,
    /// The unit of the limits.
    pub unit: RateUnit,
    /// Periods by increasing start, the first at 0.
    pub periods: Vec<CompositePeriod>,
}

impl CompositeSchedule {
    /// The limit `offset_s` seconds into the window (`None`: unlimited, or
    /// outside the window).
    pub fn limit_at(&self, offset_s: u32) -> Option<Decimal> {
        if offset_s >= self.duration_s {
            return None;
        }
        self.periods
            .iter()
            .rev()
            .find(|p| p.start_s <= offset_s)
            .and_then(|p| p.limit)
    }
}

fn floor_tenth(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(1, RoundingStrategy::ToZero)
}

/// A contribution at an instant: limit, its unit, its phases.
type Contribution = (Decimal, RateUnit, u8);

/// The leading profile of `purpose` at `t` among `candidates` (rule 2).
fn leading(
    candidates: &[&InstalledProfile],
    purpose: Purpose,
    t: DateTime<Utc>,
    relative_start: DateTime<Utc>,
    voltage: Decimal,
) -> Option<Contribution> {
    candidates
        .iter()
        .filter(|ip| ip.profile.purpose == purpose)
        .filter_map(|ip| {
            let (p, unit) = ip.profile.period_at(t, relative_start)?;
            let n = p.number_phases.unwrap_or(DEFAULT_PHASES);
            let as_w = match unit {
                RateUnit::W => p.limit,
                RateUnit::A => p.limit * voltage * Decimal::from(n),
            };
            let key = (
                ip.profile.stack_level,
                ip.evse_id != 0,
                Reverse(as_w),
                Reverse(ip.profile.id),
            );
            Some((key, (p.limit, unit, n)))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, c)| c)
}

/// The limit at `t` in `unit` with its phases (rules 3 to 5).
fn limit_at(
    candidates: &[&InstalledProfile],
    req: &CompositeRequest,
    t: DateTime<Utc>,
    relative_start: DateTime<Utc>,
) -> (Option<Decimal>, Option<u8>) {
    let lead = |purpose| leading(candidates, purpose, t, relative_start, req.voltage_v);
    let mut parts = vec![
        lead(Purpose::StationMax),
        lead(Purpose::ExternalConstraints),
    ];
    if req.evse_id != 0 {
        let priority = req
            .priority_charging
            .then(|| lead(Purpose::PriorityCharging))
            .flatten();
        parts.push(
            priority
                .or_else(|| lead(Purpose::Tx))
                .or_else(|| lead(Purpose::TxDefault)),
        );
    }
    let parts: Vec<Contribution> = parts.into_iter().flatten().collect();
    let Some(n) = parts.iter().map(|c| c.2).min() else {
        return (None, None);
    };
    let vn = req.voltage_v * Decimal::from(n);
    let limit = parts
        .iter()
        .map(|&(limit, unit, _)| match (unit, req.unit) {
            (RateUnit::W, RateUnit::W) | (RateUnit::A, RateUnit::A) => limit,
            (RateUnit::A, RateUnit::W) => limit * vn,
            (RateUnit::W, RateUnit::A) => floor_tenth(limit / vn),
        })
        .min();
    (limit, Some(n))
}

/// The composite schedule of `req.evse_id` over the requested window, from
/// the profiles installed on its station. See the [module docs](self),
/// rules 1 to 7.
///
/// # Errors
///
/// An inconsistent profile among those that apply to the EVSE
/// ([`ChargingProfile::validate`]), or a non-positive voltage.
pub fn composite_schedule(
    profiles: &[InstalledProfile],
    req: &CompositeRequest,
) -> Result<CompositeSchedule, Error> {
    if req.voltage_v <= Decimal::ZERO {
        return Err(Error::InvalidVoltage);
    }
    let tx = req.transaction.as_ref();
    let candidates: Vec<&InstalledProfile> = profiles
        .iter()
        .filter(|ip| ip.evse_id == 0 || ip.evse_id == req.evse_id)
        .filter(|ip| match ip.profile.purpose {
            Purpose::StationMax | Purpose::ExternalConstraints => true,
            Purpose::LocalGeneration => false,
            Purpose::TxDefault | Purpose::PriorityCharging => req.evse_id != 0,
            Purpose::Tx => {
                req.evse_id != 0
                    && ip.evse_id == req.evse_id
                    && tx.is_some_and(|tx| {
                        ip.profile
                            .transaction_id
                            .as_ref()
                            .is_none_or(|id| *id == tx.id)
                    })
            }
        })
        .collect();
    for ip in &candidates {
        ip.profile.validate()?;
    }
    let from = req.from;
    let to = from + Duration::seconds(i64::from(req.duration_s));
    let relative_start = tx.map_or(from, |tx| tx.started_at);
    let mut instants = BTreeSet::new();
    for ip in &candidates {
        ip.profile
            .breakpoints(from, to, relative_start, &mut instants);
    }
    let mut periods: Vec<CompositePeriod> = Vec::new();
    for t in std::iter::once(from).chain(instants) {
        let (limit, number_phases) = limit_at(&candidates, req, t, relative_start);
        let start_s = u32::try_from((t - from).num_seconds()).unwrap_or(u32::MAX);
        let period = CompositePeriod {
            start_s,
            limit,
            number_phases,
        };
        match periods.last_mut() {
            Some(last) if last.limit == limit && last.number_phases == number_phases => {}
            Some(last) if last.start_s == start_s => *last = period,
            _ => periods.push(period),
        }
    }
    // a replaced period may now equal the one before it
    periods.dedup_by(|b, a| a.limit == b.limit && a.number_phases == b.number_phases);
    Ok(CompositeSchedule {
        evse_id: req.evse_id,
        start: from,
        duration_s: req.duration_s,
        unit: req.unit,
        periods,
    })
}

// ---------------------------------------------------------------------------
// Site allocation

/// A site: its limit and how to count current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The site's limit for charging, in W.
    pub limit_w: Decimal,
    /// The limit of current on each phase, in A, when there is one.
    pub phase_limit_a: Option<Decimal>,
    /// Phase-to-neutral voltage.
    pub voltage_v: Decimal,
    /// The least current per phase worth giving a car (rule 9).
    pub min_current_a: Decimal,
}

impl Site {
    /// A site with a limit in W, 230 V, 6 A minimum, no per-phase limit.
    pub fn new(limit_w: Decimal) -> Site {
        Site {
            limit_w,
            phase_limit_a: None,
            voltage_v: Decimal::from(230),
            min_current_a: Decimal::from(6),
        }
    }
}

/// An active session (or an EVSE waiting for one) at the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Its id, unique at the site (orders the output).
    pub id: String,
    /// The EVSE (1.6 connector) it is on.
    pub evse_id: u32,
    /// Its transaction, once the station reported one (else the profile to
    /// send is a `TxDefaultProfile` on the EVSE).
    pub transaction_id: Option<String>,
    /// Phases it charges on (1..=3).
    pub phases: u8,
    /// The EV's maximum in W, when known ([`EvRequest::max_w`]).
    pub ev_max_w: Option<Decimal>,
    /// The EVSE's own maximum in W.
    pub station_max_w: Decimal,
    /// An external limit on its EVSE in W, when one is in force (K11–K14).
    pub external_limit_w: Option<Decimal>,
    /// When it started (the most recent is paused first, rule 9).
    pub started_at: DateTime<Utc>,
    /// Its priority: higher is served first (rule 8; 0 by default).
    pub priority: u8,
    /// The power it needs to get the energy it asked for by its departure,
    /// W, when both are known ([`required_w`]; rule 12).
    pub required_w: Option<Decimal>,
}

impl Session {
    /// A session without transaction id or EV request.
    pub fn new(
        id: impl Into<String>,
        evse_id: u32,
        phases: u8,
        station_max_w: Decimal,
        started_at: DateTime<Utc>,
    ) -> Session {
        Session {
            id: id.into(),
            evse_id,
            transaction_id: None,
            phases,
            ev_max_w: None,
            station_max_w,
            external_limit_w: None,
            started_at,
            priority: 0,
            required_w: None,
        }
    }

    /// What it can use in the first round of its priority (rule 12): its
    /// cap, or less when it needs less by its departure.
    fn first_cap_w(&self) -> Decimal {
        self.required_w
            .map_or(self.cap_w(), |r| r.max(Decimal::ZERO).min(self.cap_w()))
    }

    /// What it can use: the lowest of the station's maximum, the EV's and
    /// an external limit.
    pub fn cap_w(&self) -> Decimal {
        let cap = [self.ev_max_w, self.external_limit_w]
            .into_iter()
            .flatten()
            .fold(self.station_max_w, Decimal::min);
        cap.max(Decimal::ZERO)
    }

    /// The least worth giving it on `site` (rule 9), never above its cap.
    pub fn min_w(&self, site: &Site) -> Decimal {
        (site.min_current_a * site.voltage_v * Decimal::from(self.phases)).min(self.cap_w())
    }
}

/// One session's share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The session.
    pub session_id: String,
    /// Its EVSE.
    pub evse_id: u32,
    /// Its transaction.
    pub transaction_id: Option<String>,
    /// Its phases.
    pub phases: u8,
    /// Its share, in W.
    pub watts: Decimal,
    /// Paused by the minimum-rate rule (then `watts` is 0).
    pub paused: bool,
    /// Given less than its cap: the site's limits hold it back.
    pub held_back: bool,
}

impl Allocation {
    /// The profile to send for it: a `TxProfile` for its transaction (a
    /// `TxDefaultProfile` on its EVSE while it has none), `Absolute` from
    /// `now`, one period with its share in `unit` (A: W / (V × phases),
    /// rounded down to 0.1 A) on its phases.
    pub fn to_profile(
        &self,
        profile_id: i32,
        stack_level: u32,
        unit: RateUnit,
        site: &Site,
        now: DateTime<Utc>,
    ) -> InstalledProfile {
        let limit = match unit {
            RateUnit::W => self.watts,
            RateUnit::A => floor_tenth(self.watts / (site.voltage_v * Decimal::from(self.phases))),
        };
        InstalledProfile {
            evse_id: self.evse_id,
            profile: ChargingProfile {
                id: profile_id,
                stack_level,
                purpose: if self.transaction_id.is_some() {
                    Purpose::Tx
                } else {
                    Purpose::TxDefault
                },
                kind: Kind::Absolute,
                valid_from: None,
                valid_to: None,
                transaction_id: self.transaction_id.clone(),
                schedules: vec![Schedule {
                    id: None,
                    start: Some(now),
                    duration_s: None,
                    unit,
                    periods: vec![Period {
                        start_s: 0,
                        limit,
                        number_phases: Some(self.phases),
                        phase_to_use: None,
                    }],
                    min_charging_rate: None,
                }],
            },
        }
    }
}

/// The highest level `L ≥ 0` with `Σ wᵢ × min(capᵢ, L) ≤ budget`, `None`
/// when every cap fits (`items`: (cap, weight), weights positive).
fn water_level(items: &mut [(Decimal, Decimal)], budget: Decimal) -> Option<Decimal> {
    items.sort();
    let mut rest_weight: Decimal = items.iter().map(|i| i.1).sum();
    let mut used = Decimal::ZERO;
    for &(cap, w) in items.iter() {
        let level = ((budget - used) / rest_weight).max(Decimal::ZERO);
        if level <= cap {
            return Some(level);
        }
        used += cap * w;
        rest_weight -= w;
    }
    None
}

/// The shares of `active` (sorted by id) without pausing anyone (rule 8):
/// priority by priority, highest first, each out of what the ones above
/// left.
/// A session's weight in the per-phase budget: Σ P/(V n) ≤ I ⇔
/// Σ P × 6/n ≤ 6 I V (exact weights 6, 3, 2).
fn weight(s: &Session) -> Decimal {
    Decimal::from(6 / s.phases)
}

/// One water-filling of `tier` up to `caps` within what is left of the
/// site's power and (6 × V ×) per-phase current: each gets `min(cap, L)`
/// at the highest level `L` (rounded down to 0.1 W) the budgets allow;
/// whether they bound (someone got less than its cap).
fn fill(
    tier: &[&Session],
    caps: &[Decimal],
    power_left: Decimal,
    current_left: Option<Decimal>,
) -> (Vec<Decimal>, bool) {
    let mut by_power: Vec<_> = caps.iter().map(|c| (*c, Decimal::ONE)).collect();
    let mut level = water_level(&mut by_power, power_left.max(Decimal::ZERO));
    if let Some(budget) = current_left {
        let mut by_current: Vec<_> = tier
            .iter()
            .zip(caps)
            .map(|(s, c)| (*c, weight(s)))
            .collect();
        let l2 = water_level(&mut by_current, budget.max(Decimal::ZERO));
        level = match (level, l2) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
    }
    let level = level.map(floor_tenth);
    let w: Vec<Decimal> = caps
        .iter()
        .map(|c| level.map_or(*c, |l| (*c).min(l)))
        .collect();
    let bound = w.iter().zip(caps).any(|(w, c)| w < c);
    (w, bound)
}

fn shares(site: &Site, active: &[&Session]) -> Vec<Decimal> {
    let mut out = vec![Decimal::ZERO; active.len()];
    let mut power_left = site.limit_w;
    let mut current_left = site
        .phase_limit_a
        .map(|a| Decimal::from(6) * a * site.voltage_v);
    let priorities: BTreeSet<u8> = active.iter().map(|s| s.priority).collect();
    for p in priorities.into_iter().rev() {
        let tier: Vec<&Session> = active.iter().copied().filter(|s| s.priority == p).collect();
        // rule 12: first up to what each needs by its departure, then the rest
        let first: Vec<Decimal> = tier.iter().map(|s| s.first_cap_w()).collect();
        let (w1, bound) = fill(&tier, &first, power_left, current_left);
        let mut w = w1.clone();
        if !bound {
            let rest: Vec<Decimal> = tier
                .iter()
                .zip(&w1)
                .map(|(s, w)| (s.cap_w() - *w).max(Decimal::ZERO))
                .collect();
            let used: Decimal = w1.iter().sum();
            let used_current = tier
                .iter()
                .zip(&w1)
                .map(|(s, w)| *w * weight(s))
                .sum::<Decimal>();
            let (w2, _) = fill(
                &tier,
                &rest,
                power_left - used,
                current_left.map(|c| c - used_current),
            );
            for (a, b) in w.iter_mut().zip(w2) {
                *a += b;
            }
        }
        let mut all_capped = true;
        let mut k = 0;
        for (i, s) in active.iter().enumerate() {
            if s.priority != p {
                continue;
            }
            all_capped &= w[k] == s.cap_w();
            out[i] = w[k];
            power_left -= w[k];
            current_left = current_left.map(|c| c - w[k] * weight(s));
            k += 1;
        }
        if !all_capped {
            // the limits bind here: what the rounding left is not for the priorities below
            break;
        }
    }
    out
}

/// Splits the site's limit over `sessions`. See the [module docs](self),
/// rules 8 to 10.
///
/// # Errors
///
/// A negative site limit, phase limit or minimum current, a non-positive
/// voltage, a session with phases outside 1..=3, a duplicate session id.
pub fn allocate(site: &Site, sessions: &[Session]) -> Result<Vec<Allocation>, Error> {
    if site.voltage_v <= Decimal::ZERO {
        return Err(Error::InvalidVoltage);
    }
    for (field, v) in [
        ("site limit", Some(site.limit_w)),
        ("phase limit", site.phase_limit_a),
        ("minimum current", Some(site.min_current_a)),
    ] {
        if v.is_some_and(|v| v < Decimal::ZERO) {
            return Err(Error::Negative {
                profile_id: 0,
                field,
            });
        }
    }
    let mut by_id: BTreeMap<&str, &Session> = BTreeMap::new();
    for s in sessions {
        if !(1..=3).contains(&s.phases) {
            return Err(Error::InvalidPhases {
                profile_id: 0,
                value: i32::from(s.phases),
            });
        }
        if by_id.insert(&s.id, s).is_some() {
            return Err(Error::DuplicateSession(s.id.clone()));
        }
    }
    let mut active: Vec<&Session> = by_id.values().copied().collect();
    let mut paused: BTreeSet<&str> = BTreeSet::new();
    let watts = loop {
        let w = shares(site, &active);
        let victim = active
            .iter()
            .zip(&w)
            .filter(|(s, w)| **w < s.min_w(site))
            .map(|(s, _)| *s)
            .max_by(|a, b| {
                (Reverse(a.priority), a.started_at, &a.id).cmp(&(
                    Reverse(b.priority),
                    b.started_at,
                    &b.id,
                ))
            });
        match victim {
            None => break w,
            Some(v) => {
                paused.insert(&v.id);
                active.retain(|s| s.id != v.id);
            }
        }
    };
    let granted: BTreeMap<&str, Decimal> =
        active.iter().map(|s| s.id.as_str()).zip(watts).collect();
    Ok(by_id
        .values()
        .map(|s| Allocation {
            session_id: s.id.clone(),
            evse_id: s.evse_id,
            transaction_id: s.transaction_id.clone(),
            phases: s.phases,
            watts: granted.get(s.id.as_str()).copied().unwrap_or(Decimal::ZERO),
            paused: paused.contains(s.id.as_str()),
            held_back: granted.get(s.id.as_str()).is_none_or(|w| *w < s.cap_w()),
        })
        .collect())
}

/// The power a car needs to get `remaining_wh` more by `departure`, W
/// (rule 12): `None` when it is already past (then it needs all it can
/// get); 0 when it needs nothing more.
pub fn required_w(
    remaining_wh: Decimal,
    now: DateTime<Utc>,
    departure: DateTime<Utc>,
) -> Option<Decimal> {
    let left_ms = (departure - now).num_milliseconds();
    if left_ms <= 0 {
        return None;
    }
    let hours = Decimal::from(left_ms) / Decimal::from(3_600_000);
    Some(
        (remaining_wh.max(Decimal::ZERO) / hours)
            .round_dp_with_strategy(1, RoundingStrategy::ToPositiveInfinity),
    )
}

/// The `TxDefaultProfile` id of the site's default share (rule 11).
pub const TX_DEFAULT_PROFILE_ID: i32 = 900;
/// The `ChargingStationMaxProfile` id of a held-back station (rule 11).
pub const STATION_MAX_PROFILE_ID: i32 = 901;
/// A `TxProfile`'s id is this plus its EVSE (rule 11).
pub const TX_PROFILE_BASE: i32 = 1000;
/// The stack level of the CSMS's `TxProfile`s and `TxDefaultProfile`s
/// (the station maximum's is 0): above a station's own level-0 defaults.
pub const SHARE_STACK_LEVEL: u32 = 1;

impl Site {
    /// The share any EVSE may use before the CSMS knows of its transaction
    /// (rule 11), for a site of `evses` EVSEs: the site limit over them, and
    /// no more than `V × I / evses` under a per-phase limit (as if every car
    /// were single-phase on the same phase), rounded down to 0.1 W; the
    /// whole limit for no EVSE.
    pub fn default_share(&self, evses: u32) -> Decimal {
        let n = Decimal::from(evses.max(1));
        let by_power = self.limit_w / n;
        let share = match self.phase_limit_a {
            Some(a) => by_power.min(self.voltage_v * a / n),
            None => by_power,
        };
        floor_tenth(share.max(Decimal::ZERO))
    }

    /// [`Site::default_share`] for `evses` counted up to the next step of
    /// 1, 2, …, 8, 12, 16, 24, 32, 48, 64, … (each step 1.5 or 1.33 times
    /// the last): never above `default_share(evses)`, at least 2/3 of it,
    /// and the same for every size between two steps. A site whose stations
    /// connect one by one then changes its default share 14 times from 8 to
    /// 1,000 EVSEs instead of 992, and each change is a new
    /// `TxDefaultProfile` for every connected station.
    pub fn stepped_default_share(&self, evses: u32) -> Decimal {
        self.default_share(default_share_step(evses))
    }
}

/// The step of [`Site::stepped_default_share`] at or above `n`.
fn default_share_step(n: u32) -> u32 {
    if n <= 8 {
        return n;
    }
    let low = 1u32 << (31 - n.leading_zeros());
    let mid = low + low / 2;
    if n == low {
        low
    } else if n <= mid {
        mid
    } else {
        low.saturating_mul(2)
    }
}

/// A one-period profile in W (rule 11's building block).
fn share_profile(
    evse_id: u32,
    id: i32,
    (purpose, kind, stack_level): (Purpose, Kind, u32),
    transaction_id: Option<String>,
    (limit_w, number_phases): (Decimal, Option<u8>),
    start: Option<DateTime<Utc>>,
) -> InstalledProfile {
    InstalledProfile {
        evse_id,
        profile: ChargingProfile {
            id,
            stack_level,
            purpose,
            kind,
            valid_from: None,
            valid_to: None,
            transaction_id,
            schedules: vec![Schedule {
                id: Some(id),
                start,
                duration_s: None,
                unit: RateUnit::W,
                periods: vec![Period {
                    start_s: 0,
                    limit: limit_w,
                    number_phases,
                    phase_to_use: None,
                }],
                min_charging_rate: None,
            }],
        },
    }
}

/// The profiles the CSMS keeps on one station (rule 11), from the
/// allocations of the station's sessions and the site's default share:
/// the station's `TxDefaultProfile` (EVSE 0, `Relative`), a `TxProfile`
/// per allocation with a transaction (`Relative`: from the transaction's
/// start; with `numberPhases` when its car charges on fewer than
/// [`DEFAULT_PHASES`], so the station converts W to A on its phases), and, when one of them is held back, a
/// `ChargingStationMaxProfile` (EVSE 0, `Absolute` from `now`: the
/// purpose cannot be `Relative`) at the sum of the shares plus one default
/// share. Ordered by profile id.
pub fn station_profiles(
    allocations: &[&Allocation],
    default_w: Decimal,
    now: DateTime<Utc>,
) -> Vec<InstalledProfile> {
    let mut out = vec![share_profile(
        0,
        TX_DEFAULT_PROFILE_ID,
        (Purpose::TxDefault, Kind::Relative, SHARE_STACK_LEVEL),
        None,
        (default_w, None),
        None,
    )];
    if allocations.iter().any(|a| a.held_back) {
        let total: Decimal = allocations.iter().map(|a| a.watts).sum();
        out.push(share_profile(
            0,
            STATION_MAX_PROFILE_ID,
            (Purpose::StationMax, Kind::Absolute, 0),
            None,
            (total + default_w, None),
            Some(now),
        ));
    }
    for a in allocations {
        let (Some(tx), Ok(evse)) = (&a.transaction_id, i32::try_from(a.evse_id)) else {
            continue;
        };
        out.push(share_profile(
            a.evse_id,
            TX_PROFILE_BASE.saturating_add(evse),
            (Purpose::Tx, Kind::Relative, SHARE_STACK_LEVEL),
            Some(tx.clone()),
            // a car on fewer phases than the default says so (W → A on its phases)
            (a.watts, (a.phases != DEFAULT_PHASES).then_some(a.phases)),
            None,
        ));
    }
    out.sort_by_key(|p| p.profile.id);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap()
    }

    fn d(v: i64) -> Decimal {
        Decimal::from(v)
    }

    fn prof(
        id: i32,
        purpose: Purpose,
        level: u32,
        unit: RateUnit,
        periods: &[(u32, i64)],
    ) -> ChargingProfile {
        ChargingProfile {
            id,
            stack_level: level,
            purpose,
            kind: Kind::Absolute,
            valid_from: None,
            valid_to: None,
            transaction_id: None,
            schedules: vec![Schedule {
                id: None,
                start: Some(t0()),
                duration_s: None,
                unit,
                periods: periods
                    .iter()
                    .map(|&(start_s, l)| Period {
                        start_s,
                        limit: d(l),
                        number_phases: None,
                        phase_to_use: None,
                    })
                    .collect(),
                min_charging_rate: None,
            }],
        }
    }

    fn at(evse_id: u32, profile: ChargingProfile) -> InstalledProfile {
        InstalledProfile { evse_id, profile }
    }

    fn limits(c: &CompositeSchedule) -> Vec<(u32, Option<Decimal>)> {
        c.periods.iter().map(|p| (p.start_s, p.limit)).collect()
    }

    fn amps(evse: u32, duration_s: u32) -> CompositeRequest {
        CompositeRequest::new(evse, t0(), duration_s, RateUnit::A)
    }

    // --- conversions -------------------------------------------------------

    #[test]
    fn v16_profiles_convert_and_go_back_unchanged() {
        let m: v16::SetChargingProfileRequest = serde_json::from_str(
            r#"{"connectorId":2,"csChargingProfiles":{"chargingProfileId":7,"transactionId":42,
            "stackLevel":1,"chargingProfilePurpose":"TxProfile","chargingProfileKind":"Recurring",
            "recurrencyKind":"Daily","validTo":"2026-02-01T00:00:00Z",
            "chargingSchedule":{"startSchedule":"2026-01-01T22:00:00Z","duration":28800,
            "chargingRateUnit":"W","minChargingRate":1380.0,
            "chargingSchedulePeriod":[{"startPeriod":0,"limit":7400.0,"numberPhases":1},
            {"startPeriod":3600,"limit":11000.0}]}}}"#,
        )
        .unwrap();
        let ip = InstalledProfile::try_from(&m).unwrap();
        assert_eq!(ip.evse_id, 2);
        assert_eq!(ip.profile.purpose, Purpose::Tx);
        assert_eq!(ip.profile.kind, Kind::Recurring(Recurrency::Daily));
        assert_eq!(ip.profile.transaction_id.as_deref(), Some("42"));
        assert_eq!(ip.profile.schedules[0].periods[0].number_phases, Some(1));
        assert_eq!(ip.profile.schedules[0].duration_s, Some(28800));
        assert_eq!(ip.to_v16().unwrap(), m);
    }

    #[test]
    fn v201_profiles_convert_and_go_back_unchanged() {
        let m: v201::SetChargingProfileRequest = serde_json::from_str(
            r#"{"evseId":0,"chargingProfile":{"id":3,"stackLevel":0,
            "chargingProfilePurpose":"ChargingStationExternalConstraints","chargingProfileKind":"Absolute",
            "chargingSchedule":[{"id":1,"startSchedule":"2026-01-05T08:00:00Z","chargingRateUnit":"A",
            "chargingSchedulePeriod":[{"startPeriod":0,"limit":63,"numberPhases":3},
            {"startPeriod":600,"limit":40,"numberPhases":1,"phaseToUse":2}]}]}}"#,
        )
        .unwrap();
        let ip = InstalledProfile::try_from(&m).unwrap();
        assert_eq!(ip.profile.purpose, Purpose::ExternalConstraints);
        assert_eq!(ip.profile.schedules[0].periods[1].phase_to_use, Some(2));
        assert_eq!(ip.to_v201().unwrap(), m);
        // 1.6 has no external constraints
        assert!(matches!(
            ip.to_v16(),
            Err(Error::NotInVersion { profile_id: 3, .. })
        ));
    }

    #[test]
    fn v21_extra_purposes_kinds_and_per_phase_limits() {
        let p: v21::ChargingProfileType = serde_json::from_str(
            r#"{"id":9,"stackLevel":2,"chargingProfilePurpose":"PriorityCharging","chargingProfileKind":"Dynamic",
            "chargingSchedule":[{"id":1,"chargingRateUnit":"W",
            "chargingSchedulePeriod":[{"startPeriod":0,"limit":4000,"limit_L2":3000,"limit_L3":3500}]}]}"#,
        )
        .unwrap();
        let m = ChargingProfile::try_from(&p).unwrap();
        assert_eq!(
            (m.purpose, m.kind),
            (Purpose::PriorityCharging, Kind::Dynamic)
        );
        // W per phase: the lowest phase times three phases
        assert_eq!(m.schedules[0].periods[0].limit, d(9000));
        assert!(matches!(
            v201::ChargingProfileType::try_from(&m),
            Err(Error::NotInVersion { .. })
        ));
        let local: v21::ChargingProfileType = serde_json::from_str(
            r#"{"id":10,"stackLevel":0,"chargingProfilePurpose":"LocalGeneration","chargingProfileKind":"Relative",
            "chargingSchedule":[{"id":1,"chargingRateUnit":"A","chargingSchedulePeriod":[{"startPeriod":0,"limit":20,"limit_L2":16}]}]}"#,
        )
        .unwrap();
        let local = ChargingProfile::try_from(&local).unwrap();
        assert_eq!(local.purpose, Purpose::LocalGeneration);
        assert_eq!(local.schedules[0].periods[0].limit, d(16)); // A: the lowest phase
    }

    #[test]
    fn inconsistent_profiles_are_typed_errors() {
        let v16p = |json: &str| {
            let p: v16::ChargingProfile = serde_json::from_str(json).unwrap();
            ChargingProfile::try_from(&p)
        };
        let head =
            r#""chargingProfileId":5,"stackLevel":0,"chargingProfilePurpose":"TxDefaultProfile""#;
        assert_eq!(
            v16p(&format!(
                r#"{{{head},"chargingProfileKind":"Relative","chargingSchedule":{{"chargingRateUnit":"A","chargingSchedulePeriod":[]}}}}"#
            )),
            Err(Error::NoPeriods { profile_id: 5 })
        );
        assert_eq!(
            v16p(&format!(
                r#"{{{head},"chargingProfileKind":"Relative","chargingSchedule":{{"chargingRateUnit":"A","chargingSchedulePeriod":[{{"startPeriod":0,"limit":10}},{{"startPeriod":0,"limit":8}}]}}}}"#
            )),
            Err(Error::PeriodsNotIncreasing {
                profile_id: 5,
                index: 1
            })
        );
        assert_eq!(
            v16p(&format!(
                r#"{{{head},"chargingProfileKind":"Recurring","chargingSchedule":{{"startSchedule":"2026-01-01T00:00:00Z","chargingRateUnit":"A","chargingSchedulePeriod":[{{"startPeriod":0,"limit":10}}]}}}}"#
            )),
            Err(Error::MissingRecurrency { profile_id: 5 })
        );
        assert_eq!(
            v16p(&format!(
                r#"{{{head},"chargingProfileKind":"Absolute","chargingSchedule":{{"chargingRateUnit":"A","chargingSchedulePeriod":[{{"startPeriod":0,"limit":10}}]}}}}"#
            )),
            Err(Error::MissingStartSchedule { profile_id: 5 })
        );
        assert_eq!(
            v16p(&format!(
                r#"{{{head},"transactionId":3,"chargingProfileKind":"Relative","chargingSchedule":{{"chargingRateUnit":"A","chargingSchedulePeriod":[{{"startPeriod":0,"limit":10}}]}}}}"#
            )),
            Err(Error::TransactionIdNotAllowed { profile_id: 5 })
        );
        assert_eq!(
            v16p(&format!(
                r#"{{{head},"chargingProfileKind":"Relative","chargingSchedule":{{"chargingRateUnit":"A","chargingSchedulePeriod":[{{"startPeriod":0,"limit":10,"numberPhases":4}}]}}}}"#
            )),
            Err(Error::InvalidPhases {
                profile_id: 5,
                value: 4
            })
        );
        assert_eq!(
            v16p(&format!(
                r#"{{{head},"chargingProfileKind":"Relative","chargingSchedule":{{"chargingRateUnit":"A","chargingSchedulePeriod":[{{"startPeriod":-5,"limit":10}}]}}}}"#
            )),
            Err(Error::Negative {
                profile_id: 5,
                field: "startPeriod"
            })
        );
        // the schema asks for at least one schedule; a hand-built message may have none
        let mut no_schedule: v201::ChargingProfileType = serde_json::from_str(
            r#"{"id":6,"stackLevel":0,"chargingProfilePurpose":"TxDefaultProfile","chargingProfileKind":"Relative",
            "chargingSchedule":[{"id":1,"chargingRateUnit":"A","chargingSchedulePeriod":[{"startPeriod":0,"limit":6}]}]}"#,
        )
        .unwrap();
        assert!(ChargingProfile::try_from(&no_schedule).is_ok());
        no_schedule.charging_schedule.clear();
        assert_eq!(
            ChargingProfile::try_from(&no_schedule),
            Err(Error::NoSchedule { profile_id: 6 })
        );
        let setpoint_only: v21::ChargingProfileType = serde_json::from_str(
            r#"{"id":8,"stackLevel":0,"chargingProfilePurpose":"TxDefaultProfile","chargingProfileKind":"Relative",
            "chargingSchedule":[{"id":1,"chargingRateUnit":"W","chargingSchedulePeriod":[{"startPeriod":0,"setpoint":3000}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            ChargingProfile::try_from(&setpoint_only),
            Err(Error::MissingLimit {
                profile_id: 8,
                index: 0
            })
        );
        // and composite_schedule checks a hand-built profile the same way
        let mut bad = prof(1, Purpose::StationMax, 0, RateUnit::A, &[(0, 32), (60, 16)]);
        bad.schedules[0].periods.swap(0, 1);
        assert_eq!(
            composite_schedule(&[at(0, bad)], &amps(1, 600)),
            Err(Error::PeriodsNotIncreasing {
                profile_id: 1,
                index: 1
            })
        );
    }

    #[test]
    fn v16_needs_integer_transaction_ids() {
        let mut p = prof(2, Purpose::Tx, 0, RateUnit::A, &[(0, 16)]);
        p.transaction_id = Some("TX-9".into());
        assert!(matches!(
            v16::ChargingProfile::try_from(&p),
            Err(Error::NotInVersion { .. })
        ));
        assert_eq!(
            v201::ChargingProfileType::try_from(&p)
                .unwrap()
                .transaction_id
                .unwrap()
                .as_str(),
            "TX-9"
        );
    }

    // --- composite schedule ------------------------------------------------

    /// 1.6 §3.13.2, 2.0.1 §K "Stacking charging profiles": the highest stack
    /// level leads while it has a period; when its schedule ends the lower
    /// level shows through.
    #[test]
    fn highest_stack_level_leads_while_it_has_a_period() {
        let low = prof(1, Purpose::TxDefault, 0, RateUnit::A, &[(0, 32)]);
        let mut high = prof(2, Purpose::TxDefault, 3, RateUnit::A, &[(0, 10), (600, 20)]);
        high.schedules[0].duration_s = Some(1200);
        let c = composite_schedule(&[at(1, low), at(1, high)], &amps(1, 3600)).unwrap();
        assert_eq!(
            limits(&c),
            vec![(0, Some(d(10))), (600, Some(d(20))), (1200, Some(d(32)))]
        );
    }

    /// 1.6 §3.13.3, 2.0.1 §K "Combining charging profile purposes": a
    /// TxProfile replaces the TxDefaultProfile for its own transaction only.
    #[test]
    fn tx_profile_overrides_tx_default_for_its_transaction_only() {
        let default = prof(1, Purpose::TxDefault, 5, RateUnit::A, &[(0, 32)]);
        let mut tx = prof(2, Purpose::Tx, 0, RateUnit::A, &[(0, 8)]);
        tx.transaction_id = Some("T1".into());
        let ps = [at(0, default), at(1, tx)];
        let mut req = amps(1, 600);
        assert_eq!(
            limits(&composite_schedule(&ps, &req).unwrap()),
            vec![(0, Some(d(32)))]
        );
        req.transaction = Some(TxRef {
            id: "T1".into(),
            started_at: t0(),
        });
        assert_eq!(
            limits(&composite_schedule(&ps, &req).unwrap()),
            vec![(0, Some(d(8)))]
        );
        req.transaction = Some(TxRef {
            id: "T2".into(),
            started_at: t0(),
        });
        assert_eq!(
            limits(&composite_schedule(&ps, &req).unwrap()),
            vec![(0, Some(d(32)))]
        );
        // the TxProfile is on EVSE 1: EVSE 2's transaction T1 (another station's id) does not get it
        req.evse_id = 2;
        req.transaction = Some(TxRef {
            id: "T1".into(),
            started_at: t0(),
        });
        assert_eq!(
            limits(&composite_schedule(&ps, &req).unwrap()),
            vec![(0, Some(d(32)))]
        );
    }

    /// 1.6 §3.13.3, 2.0.1 K08: the composite is the lowest of the station
    /// maximum, the external constraints and the tx-level limit.
    #[test]
    fn composite_is_the_lowest_of_station_max_and_tx_level() {
        let max = prof(
            1,
            Purpose::StationMax,
            0,
            RateUnit::A,
            &[(0, 16), (1800, 40)],
        );
        let ext = prof(
            2,
            Purpose::ExternalConstraints,
            0,
            RateUnit::A,
            &[(0, 50), (2700, 20)],
        );
        let tx = prof(3, Purpose::TxDefault, 0, RateUnit::A, &[(0, 32)]);
        let c = composite_schedule(&[at(0, max), at(0, ext), at(1, tx)], &amps(1, 3600)).unwrap();
        assert_eq!(
            limits(&c),
            vec![(0, Some(d(16))), (1800, Some(d(32))), (2700, Some(d(20)))]
        );
    }

    /// 1.6 §7 `ChargingProfile` `validFrom`/`validTo`: outside its validity a profile says nothing.
    #[test]
    fn validity_bounds_a_profile() {
        let mut p = prof(1, Purpose::TxDefault, 0, RateUnit::A, &[(0, 16)]);
        p.valid_from = Some(t0() + Duration::minutes(10));
        p.valid_to = Some(t0() + Duration::minutes(20));
        let c = composite_schedule(&[at(1, p)], &amps(1, 3600)).unwrap();
        assert_eq!(
            limits(&c),
            vec![(0, None), (600, Some(d(16))), (1200, None)]
        );
    }

    /// 1.6 §7 `ChargingProfileKindType` `Recurring`: the schedule restarts every day (week) from
    /// `startSchedule`; a period lasts until the next recurrence.
    #[test]
    fn recurring_profiles_repeat_from_start_schedule() {
        // daily: 6 A from 08:00, 16 A from 20:00
        let mut p = prof(
            1,
            Purpose::StationMax,
            0,
            RateUnit::A,
            &[(0, 6), (12 * 3600, 16)],
        );
        p.kind = Kind::Recurring(Recurrency::Daily);
        p.schedules[0].start = Some(t0() - Duration::days(30));
        let c = composite_schedule(&[at(0, p.clone())], &amps(1, 2 * 86400)).unwrap();
        assert_eq!(
            limits(&c),
            vec![
                (0, Some(d(6))),
                (43200, Some(d(16))),
                (86400, Some(d(6))),
                (129600, Some(d(16)))
            ]
        );
        // weekly, with a duration: 10 A for one hour a week
        p.kind = Kind::Recurring(Recurrency::Weekly);
        p.schedules[0].periods.truncate(1);
        p.schedules[0].periods[0].limit = d(10);
        p.schedules[0].duration_s = Some(3600);
        p.schedules[0].start = Some(t0() - Duration::weeks(3) + Duration::hours(2));
        let c = composite_schedule(&[at(0, p)], &amps(1, 14 * 86400)).unwrap();
        let week = 7 * 86400;
        assert_eq!(
            limits(&c),
            vec![
                (0, None),
                (7200, Some(d(10))),
                (10800, None),
                (week + 7200, Some(d(10))),
                (week + 10800, None)
            ]
        );
    }

    /// 1.6 §7 `ChargingProfileKindType` `Relative`: the schedule starts at the transaction's start.
    #[test]
    fn relative_profiles_start_at_the_transaction_start() {
        let mut p = prof(1, Purpose::TxDefault, 0, RateUnit::A, &[(0, 10), (900, 32)]);
        p.kind = Kind::Relative;
        p.schedules[0].start = None;
        let mut req = amps(1, 3600);
        req.transaction = Some(TxRef {
            id: "7".into(),
            started_at: t0() - Duration::minutes(5),
        });
        let c = composite_schedule(&[at(1, p.clone())], &req).unwrap();
        assert_eq!(limits(&c), vec![(0, Some(d(10))), (600, Some(d(32)))]);
        // without a transaction: as if one started at the window's start
        req.transaction = None;
        let c = composite_schedule(&[at(1, p)], &req).unwrap();
        assert_eq!(limits(&c), vec![(0, Some(d(10))), (900, Some(d(32)))]);
    }

    /// Rule 5: W = A × V × phases, with the fewest phases that apply.
    #[test]
    fn amps_and_watts_convert_with_the_fewest_phases() {
        let max = prof(1, Purpose::StationMax, 0, RateUnit::A, &[(0, 32)]);
        let mut tx = prof(
            2,
            Purpose::TxDefault,
            0,
            RateUnit::W,
            &[(0, 11000), (600, 3000)],
        );
        tx.schedules[0].periods[1].number_phases = Some(1);
        let ps = [at(0, max), at(1, tx)];
        let mut req = CompositeRequest::new(1, t0(), 1200, RateUnit::W);
        let c = composite_schedule(&ps, &req).unwrap();
        // 32 A × 230 V × 3 = 22080 W > 11000 W; then 1 phase: 32 × 230 = 7360 > 3000
        assert_eq!(limits(&c), vec![(0, Some(d(11000))), (600, Some(d(3000)))]);
        assert_eq!(c.periods[1].number_phases, Some(1));
        req.unit = RateUnit::A;
        let c = composite_schedule(&ps, &req).unwrap();
        // 11000 / 690 = 15.94 → 15.9 A; 3000 / 230 = 13.04 → 13.0 A
        assert_eq!(
            limits(&c),
            vec![
                (0, Some(Decimal::new(159, 1))),
                (600, Some(Decimal::new(130, 1)))
            ]
        );
        req.voltage_v = Decimal::ZERO;
        assert_eq!(composite_schedule(&ps, &req), Err(Error::InvalidVoltage));
    }

    /// Rule 6: adjacent periods with equal limits are merged.
    #[test]
    fn equal_adjacent_periods_are_merged() {
        let max = prof(
            1,
            Purpose::StationMax,
            0,
            RateUnit::A,
            &[(0, 20), (600, 20), (1200, 10)],
        );
        let tx = prof(2, Purpose::TxDefault, 0, RateUnit::A, &[(0, 25), (900, 20)]);
        let c = composite_schedule(&[at(0, max), at(1, tx)], &amps(1, 1800)).unwrap();
        assert_eq!(limits(&c), vec![(0, Some(d(20))), (1200, Some(d(10)))]);
    }

    /// Rule 2: at equal stack level an EVSE's own TxDefaultProfile beats the
    /// station-wide one (1.6 §3.13.1: connector 0 applies to all connectors).
    #[test]
    fn evse_specific_tx_default_beats_station_wide_at_equal_level() {
        let all = prof(1, Purpose::TxDefault, 1, RateUnit::A, &[(0, 10)]);
        let own = prof(2, Purpose::TxDefault, 1, RateUnit::A, &[(0, 20)]);
        let ps = [at(0, all), at(1, own)];
        assert_eq!(
            limits(&composite_schedule(&ps, &amps(1, 60)).unwrap()),
            vec![(0, Some(d(20)))]
        );
        assert_eq!(
            limits(&composite_schedule(&ps, &amps(2, 60)).unwrap()),
            vec![(0, Some(d(10)))]
        );
        // EVSE 0: only the station's own purposes
        assert_eq!(
            limits(&composite_schedule(&ps, &amps(0, 60)).unwrap()),
            vec![(0, None)]
        );
    }

    /// Rule 4 (2.1 §K, `UsePriorityCharging`): PriorityCharging replaces the tx level while
    /// active; LocalGeneration is left out.
    #[test]
    fn priority_charging_replaces_the_tx_level_while_active() {
        let default = prof(1, Purpose::TxDefault, 0, RateUnit::A, &[(0, 10)]);
        let prio = prof(2, Purpose::PriorityCharging, 0, RateUnit::A, &[(0, 30)]);
        let local = prof(3, Purpose::LocalGeneration, 0, RateUnit::A, &[(0, 1)]);
        let max = prof(4, Purpose::StationMax, 0, RateUnit::A, &[(0, 25)]);
        let ps = [at(1, default), at(1, prio), at(0, local), at(0, max)];
        let mut req = amps(1, 60);
        assert_eq!(
            limits(&composite_schedule(&ps, &req).unwrap()),
            vec![(0, Some(d(10)))]
        );
        req.priority_charging = true;
        assert_eq!(
            limits(&composite_schedule(&ps, &req).unwrap()),
            vec![(0, Some(d(25)))]
        );
    }

    // --- site allocation ---------------------------------------------------

    fn sess(id: &str, phases: u8, max_w: i64, minutes: i64) -> Session {
        Session::new(id, 1, phases, d(max_w), t0() + Duration::minutes(minutes))
    }

    fn watts(out: &[Allocation]) -> Vec<(String, Decimal, bool)> {
        out.iter()
            .map(|a| (a.session_id.clone(), a.watts, a.paused))
            .collect()
    }

    /// Rule 8: nobody capped, the limit is shared equally (rounded down).
    #[test]
    fn the_limit_is_shared_equally() {
        let site = Site::new(d(30_000));
        let out = allocate(
            &site,
            &[
                sess("a", 3, 22_000, 0),
                sess("b", 3, 22_000, 1),
                sess("c", 3, 22_000, 2),
            ],
        )
        .unwrap();
        assert!(out.iter().all(|a| a.watts == d(10_000) && !a.paused));
        // without a minimum rate, 10 kW over three is 3333.3 W each (rounded down)
        let site = Site {
            min_current_a: Decimal::ZERO,
            ..Site::new(d(10_000))
        };
        let out = allocate(
            &site,
            &[
                sess("a", 3, 22_000, 0),
                sess("b", 3, 22_000, 1),
                sess("c", 3, 22_000, 2),
            ],
        )
        .unwrap();
        assert!(out.iter().all(|a| a.watts == Decimal::new(33333, 1)));
    }

    /// Rule 8 with K11–K14: an EVSE under an external limit gets no more
    /// than it; what it cannot use goes to the others.
    #[test]
    fn an_external_limit_caps_its_session_and_frees_the_rest() {
        let site = Site::new(d(22_000));
        let limited = Session {
            external_limit_w: Some(d(4_140)),
            ..sess("limited", 3, 22_000, 0)
        };
        assert_eq!(limited.cap_w(), d(4_140));
        let out = allocate(&site, &[limited.clone(), sess("free", 3, 22_000, 1)]).unwrap();
        assert_eq!(
            watts(&out),
            vec![
                ("free".into(), d(17_860), false),
                ("limited".into(), d(4_140), false)
            ]
        );
        // a limit above what the site gives changes nothing
        let loose = Session {
            external_limit_w: Some(d(20_000)),
            ..limited
        };
        let out = allocate(&site, &[loose, sess("free", 3, 22_000, 1)]).unwrap();
        assert!(out.iter().all(|a| a.watts == d(11_000)), "{out:?}");
    }

    /// Rule 8: what a capped session (its EV's request from 2.0.1
    /// `NotifyEVChargingNeeds`, K15) cannot use goes to the others.
    #[test]
    fn what_capped_sessions_cannot_use_is_shared() {
        let needs: v201::NotifyEVChargingNeedsRequest = serde_json::from_str(
            r#"{"evseId":2,"chargingNeeds":{"requestedEnergyTransfer":"AC_single_phase",
            "acChargingParameters":{"energyAmount":20000,"evMinCurrent":6,"evMaxCurrent":10,"evMaxVoltage":230}}}"#,
        )
        .unwrap();
        let ev = EvRequest::from(&needs);
        let small = Session {
            ev_max_w: ev.max_w(d(230), 1),
            ..sess("small", 1, 7_400, 0)
        };
        assert_eq!(small.cap_w(), d(2_300));
        let site = Site::new(d(20_000));
        let out = allocate(
            &site,
            &[sess("big", 3, 22_000, 1), small, sess("mid", 3, 8_000, 2)],
        )
        .unwrap();
        assert_eq!(
            watts(&out),
            vec![
                ("big".into(), d(9_700), false),
                ("mid".into(), d(8_000), false),
                ("small".into(), d(2_300), false)
            ]
        );
        let dc: v21::NotifyEVChargingNeedsRequest = serde_json::from_str(
            r#"{"evseId":1,"chargingNeeds":{"requestedEnergyTransfer":"DC",
            "dcChargingParameters":{"evMaxCurrent":200,"evMaxVoltage":400}}}"#,
        )
        .unwrap();
        assert_eq!(EvRequest::from(&dc).max_w(d(230), 3), Some(d(80_000)));
    }

    /// Rule 8: the per-phase current limit counts single-phase cars as if on
    /// the same phase.
    #[test]
    fn a_phase_limit_binds_with_single_phase_cars() {
        let site = Site {
            phase_limit_a: Some(d(32)),
            ..Site::new(d(100_000))
        };
        // Σ P/(230 n) ≤ 32 with one 1-phase and one 3-phase car at level L:
        // L/230 + L/690 = 32 → L = 5520
        let out = allocate(
            &site,
            &[sess("one", 1, 7_400, 0), sess("three", 3, 22_000, 1)],
        )
        .unwrap();
        assert_eq!(out[0].watts, d(5_520));
        assert_eq!(out[1].watts, d(5_520));
    }

    /// Rule 9: below the minimum (6 A × 230 V × phases), the most recently
    /// started session below it is paused, and the rest is shared again.
    #[test]
    fn below_the_minimum_the_newest_session_is_paused() {
        let site = Site::new(d(10_000));
        // 3 sessions at 3333.3 W < 4140 W: "c" (newest) pauses, a and b get 5000 W
        let out = allocate(
            &site,
            &[
                sess("c", 3, 22_000, 9),
                sess("a", 3, 22_000, 0),
                sess("b", 3, 22_000, 5),
            ],
        )
        .unwrap();
        assert_eq!(
            watts(&out),
            vec![
                ("a".into(), d(5_000), false),
                ("b".into(), d(5_000), false),
                ("c".into(), d(0), true)
            ]
        );
        // a single-phase car needs only 1380 W: at 2000 W each it is above its
        // minimum and keeps charging; the two 3-phase cars are paused, newest first
        let site = Site::new(d(6_000));
        let out = allocate(
            &site,
            &[
                sess("one", 1, 7_400, 0),
                sess("three", 3, 22_000, 1),
                sess("old3", 3, 22_000, -1),
            ],
        )
        .unwrap();
        assert_eq!(
            watts(&out),
            vec![
                ("old3".into(), d(0), true),
                ("one".into(), d(6_000), false),
                ("three".into(), d(0), true)
            ]
        );
    }

    /// Rule 10: the order of the input does not matter; duplicates are errors.
    #[test]
    fn order_does_not_matter_and_duplicates_are_errors() {
        let site = Site::new(d(12_345));
        let s = [
            sess("x", 1, 3_000, 0),
            sess("y", 3, 11_000, 1),
            sess("z", 2, 9_000, 2),
        ];
        let a = allocate(&site, &s).unwrap();
        let b = allocate(&site, &[s[2].clone(), s[0].clone(), s[1].clone()]).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            allocate(&site, &[s[0].clone(), s[0].clone()]),
            Err(Error::DuplicateSession("x".into()))
        );
        assert!(matches!(
            allocate(&site, &[sess("p", 0, 1, 0)]),
            Err(Error::InvalidPhases { value: 0, .. })
        ));
        assert!(matches!(
            allocate(&Site::new(d(-1)), &s),
            Err(Error::Negative { .. })
        ));
    }

    /// The profile to send: TxProfile for a transaction, TxDefaultProfile
    /// before one; in A rounded down (W = A × V × phases).
    #[test]
    fn allocations_become_the_profiles_to_send() {
        let site = Site::new(d(11_000));
        let with_tx = Session {
            transaction_id: Some("12".into()),
            evse_id: 3,
            ..sess("s", 1, 7_400, 0)
        };
        let out = allocate(&site, &[with_tx]).unwrap();
        assert_eq!(out[0].watts, d(7_400));
        let ip = out[0].to_profile(100, 2, RateUnit::A, &site, t0());
        let v16 = ip.to_v16().unwrap();
        assert_eq!(v16.connector_id, 3);
        assert_eq!(v16.cs_charging_profiles.transaction_id, Some(12));
        assert_eq!(
            v16.cs_charging_profiles.charging_profile_purpose,
            v16::ChargingProfilePurposeType::TxProfile
        );
        let period = &v16
            .cs_charging_profiles
            .charging_schedule
            .charging_schedule_period[0];
        assert_eq!(
            (period.limit, period.number_phases),
            (Decimal::new(321, 1), Some(1))
        );
        // what the station will compute from it is the allocation
        let mut req = CompositeRequest::new(3, t0(), 60, RateUnit::W);
        req.transaction = Some(TxRef {
            id: "12".into(),
            started_at: t0(),
        });
        let c = composite_schedule(&[out[0].to_profile(100, 2, RateUnit::W, &site, t0())], &req)
            .unwrap();
        assert_eq!(c.limit_at(0), Some(d(7_400)));

        let no_tx = allocate(&site, &[sess("s", 3, 22_000, 0)]).unwrap();
        let v201 = no_tx[0]
            .to_profile(101, 0, RateUnit::W, &site, t0())
            .to_v201()
            .unwrap();
        assert_eq!(
            v201.charging_profile.charging_profile_purpose,
            v201::ChargingProfilePurposeEnumType::TxDefaultProfile
        );
        assert_eq!(
            v201.charging_profile.charging_schedule[0].charging_schedule_period[0].limit,
            d(11_000)
        );
    }

    /// Rule 8: a higher priority is served first; a lower one gets what is
    /// left once every session above has its cap, max-min fair within it.
    #[test]
    fn fleet_sessions_are_served_first() {
        let site = Site {
            min_current_a: Decimal::ZERO,
            ..Site::new(d(20_000))
        };
        let fleet = |id: &str, cap: i64| Session {
            priority: 1,
            ..sess(id, 3, cap, 0)
        };
        // two fleet cars take 7 kW each, the two others share the 6 kW left
        let out = allocate(
            &site,
            &[
                fleet("f1", 7_000),
                fleet("f2", 7_000),
                sess("p1", 3, 22_000, 0),
                sess("p2", 3, 22_000, 1),
            ],
        )
        .unwrap();
        assert_eq!(
            out.iter().map(|a| a.watts).collect::<Vec<_>>(),
            vec![d(7_000), d(7_000), d(3_000), d(3_000)]
        );
        assert!(!out[0].held_back && out[2].held_back);
        // fleet cars asking for more than the site: they share it, the others get nothing
        let out = allocate(
            &site,
            &[
                fleet("f1", 22_000),
                fleet("f2", 22_000),
                sess("p1", 3, 22_000, 0),
            ],
        )
        .unwrap();
        assert_eq!(
            out.iter().map(|a| a.watts).collect::<Vec<_>>(),
            vec![d(10_000), d(10_000), d(0)]
        );
        // with the minimum rate, the public car is paused, not a fleet car
        let out = allocate(
            &Site::new(d(20_000)),
            &[
                fleet("f1", 22_000),
                fleet("f2", 22_000),
                sess("p1", 3, 22_000, -10),
            ],
        )
        .unwrap();
        assert!(out[2].paused && !out[0].paused && !out[1].paused);
    }

    /// Rule 8: under a per-phase limit the higher priority takes its
    /// current first, counted with each session's phases.
    #[test]
    fn priorities_share_the_phase_limit_in_order() {
        let site = Site {
            phase_limit_a: Some(d(32)),
            min_current_a: Decimal::ZERO,
            ..Site::new(d(100_000))
        };
        let fleet = Session {
            priority: 1,
            ..sess("f", 1, 7_360, 0)
        };
        // the single-phase fleet car takes 32 A × 230 V = 7360 W: no phase room left
        let out = allocate(&site, &[fleet.clone(), sess("p", 3, 22_000, 0)]).unwrap();
        assert_eq!((out[0].watts, out[1].watts), (d(7_360), d(0)));
        // a 16 A fleet car leaves 16 A per phase: a three-phase car gets 16 A × 690 V
        let small = Session {
            station_max_w: d(3_680),
            ..fleet
        };
        let out = allocate(&site, &[small, sess("p", 3, 22_000, 0)]).unwrap();
        assert_eq!((out[0].watts, out[1].watts), (d(3_680), d(11_040)));
    }

    /// Rule 11: the profiles of a station.
    #[test]
    fn a_station_gets_tx_profiles_a_default_and_a_maximum_when_held_back() {
        let site = Site {
            min_current_a: Decimal::ZERO,
            ..Site::new(d(10_000))
        };
        assert_eq!(site.default_share(4), d(2_500));
        assert_eq!(site.default_share(0), d(10_000));
        let phase = Site {
            phase_limit_a: Some(d(16)),
            ..site.clone()
        };
        // 230 V × 16 A / 3 = 1226.66 → 1226.6
        assert_eq!(phase.default_share(3), Decimal::new(12266, 1));
        let a = Session {
            transaction_id: Some("7".into()),
            ..sess("a", 3, 22_000, 0)
        };
        let b = Session {
            transaction_id: Some("8".into()),
            evse_id: 2,
            ..sess("b", 3, 22_000, 0)
        };
        let out = allocate(&site, &[a, b]).unwrap();
        let refs: Vec<&Allocation> = out.iter().collect();
        let ps = station_profiles(&refs, d(2_000), t0());
        let ids: Vec<i32> = ps.iter().map(|p| p.profile.id).collect();
        assert_eq!(
            ids,
            vec![TX_DEFAULT_PROFILE_ID, STATION_MAX_PROFILE_ID, 1001, 1002]
        );
        for p in &ps {
            p.to_v16().unwrap();
            p.to_v201().unwrap();
        }
        // each transaction's composite is its share; an EVSE without one gets the default
        let req = |evse: u32, tx: Option<&str>| CompositeRequest {
            transaction: tx.map(|id| TxRef {
                id: id.into(),
                started_at: t0(),
            }),
            ..CompositeRequest::new(evse, t0(), 60, RateUnit::W)
        };
        let at = |r: CompositeRequest| composite_schedule(&ps, &r).unwrap().limit_at(0);
        assert_eq!(at(req(1, Some("7"))), Some(d(5_000)));
        assert_eq!(at(req(2, Some("8"))), Some(d(5_000)));
        assert_eq!(at(req(3, None)), Some(d(2_000)));
        // the station's connection: the shares plus one default
        assert_eq!(at(req(0, None)), Some(d(12_000)));
        // nobody held back: no maximum
        let roomy = allocate(&Site::new(d(50_000)), &[sess("a", 3, 22_000, 0)]).unwrap();
        let ps = station_profiles(&[&roomy[0]], d(2_000), t0());
        assert!(ps.iter().all(|p| p.profile.purpose != Purpose::StationMax));
        // no transaction yet: no TxProfile
        assert_eq!(ps.len(), 1);
    }

    /// Rule 11 with a car's phases: a single-phase car's `TxProfile` says
    /// so, a three-phase car's leaves the default.
    #[test]
    fn a_tx_profile_carries_the_phases_of_a_car_on_fewer_than_three() {
        let site = Site {
            min_current_a: Decimal::ZERO,
            ..Site::new(d(10_000))
        };
        let one = Session {
            transaction_id: Some("7".into()),
            ..sess("a", 1, 3_680, 0)
        };
        let three = Session {
            transaction_id: Some("8".into()),
            evse_id: 2,
            ..sess("b", 3, 22_000, 0)
        };
        let out = allocate(&site, &[one, three]).unwrap();
        let refs: Vec<&Allocation> = out.iter().collect();
        let ps = station_profiles(&refs, d(2_000), t0());
        let phases = |id: i32| {
            ps.iter()
                .find(|p| p.profile.id == id)
                .map(|p| p.profile.schedules[0].periods[0].number_phases)
        };
        assert_eq!(phases(1001), Some(Some(1)));
        assert_eq!(phases(1002), Some(None));
        assert_eq!(phases(TX_DEFAULT_PROFILE_ID), Some(None));
        let v201 = ps
            .iter()
            .find(|p| p.profile.id == 1001)
            .unwrap()
            .to_v201()
            .unwrap();
        assert_eq!(
            v201.charging_profile.charging_schedule[0].charging_schedule_period[0].number_phases,
            Some(1)
        );
    }

    /// A car's phases: measured first, then asked for, then three.
    #[test]
    fn a_sessions_phases_come_from_its_meter_then_its_request() {
        let a = |v: i64| Decimal::new(v, 1);
        assert_eq!(phases_in_use([(Line::L1, a(160))]), Some(1));
        assert_eq!(
            phases_in_use([(Line::L1, a(160)), (Line::L2, a(3)), (Line::L3, a(0))]),
            Some(1),
            "below 1 A a line is not in use"
        );
        assert_eq!(
            phases_in_use([(Line::L1, a(100)), (Line::L2, a(100)), (Line::L3, a(100))]),
            Some(3)
        );
        // the same line twice (two readings of one instant) counts once
        assert_eq!(
            phases_in_use([(Line::L2, a(80)), (Line::L2, a(90))]),
            Some(1)
        );
        assert_eq!(phases_in_use([(Line::L1, a(5))]), None);
        assert_eq!(phases_in_use([]), None);
        assert_eq!(Line::from_phase("L3"), Some(Line::L3));
        assert_eq!(Line::from_phase("L1-N"), None);
        assert_eq!(session_phases(Some(1), Some(3)), 1);
        assert_eq!(session_phases(None, Some(2)), 2);
        assert_eq!(session_phases(None, None), DEFAULT_PHASES);
        assert_eq!(session_phases(Some(0), Some(7)), DEFAULT_PHASES);
    }

    /// The EV's requested energy transfer gives its phases (DC none).
    #[test]
    fn an_ev_request_names_its_ac_phases() {
        let needs: v201::NotifyEVChargingNeedsRequest = serde_json::from_str(
            r#"{"evseId":1,"chargingNeeds":{"requestedEnergyTransfer":"AC_single_phase",
               "acChargingParameters":{"energyAmount":5000,"evMinCurrent":6,"evMaxCurrent":16,"evMaxVoltage":230}}}"#,
        )
        .unwrap();
        let r = EvRequest::from(&needs);
        assert_eq!(r.phases, Some(1));
        assert_eq!(r.max_w(d(230), r.phases.unwrap()), Some(d(3_680)));
        let dc: v21::NotifyEVChargingNeedsRequest = serde_json::from_str(
            r#"{"evseId":1,"chargingNeeds":{"requestedEnergyTransfer":"DC",
               "dcChargingParameters":{"evMaxCurrent":200,"evMaxVoltage":400}}}"#,
        )
        .unwrap();
        assert_eq!(EvRequest::from(&dc).phases, None);
    }

    /// The stepped default share changes only between steps.
    #[test]
    fn the_stepped_default_share_moves_in_steps() {
        let steps: Vec<u32> = (0..=100).map(default_share_step).collect();
        assert_eq!(&steps[..10], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 12]);
        assert_eq!(default_share_step(12), 12);
        assert_eq!(default_share_step(13), 16);
        assert_eq!(default_share_step(17), 24);
        assert_eq!(default_share_step(25), 32);
        assert_eq!(default_share_step(1_000), 1_024);
        assert_eq!(default_share_step(u32::MAX), u32::MAX);
        let mut distinct: Vec<u32> = (8..=1_000).map(default_share_step).collect();
        distinct.dedup();
        assert_eq!(distinct.len(), 15, "{distinct:?}");
        let site = Site::new(d(100_000));
        assert_eq!(site.stepped_default_share(9), site.default_share(12));
        assert_eq!(site.stepped_default_share(5), site.default_share(5));
    }

    /// Rule 12: the car that must leave soon gets what it needs first.
    #[test]
    fn a_car_leaving_soon_is_served_before_one_with_all_night() {
        let site = Site {
            min_current_a: Decimal::ZERO,
            ..Site::new(d(8_000))
        };
        let now = t0();
        // A: 10 kWh in 1 h; B: 5 kWh in 10 h (0.5 kW); both could take 11 kW
        let a = Session {
            required_w: required_w(d(10_000), now, now + Duration::hours(1)),
            ..sess("a", 3, 11_000, 0)
        };
        let b = Session {
            evse_id: 2,
            required_w: required_w(d(5_000), now, now + Duration::hours(10)),
            ..sess("b", 3, 11_000, 0)
        };
        assert_eq!(a.required_w, Some(d(10_000)));
        assert_eq!(b.required_w, Some(d(500)));
        let out = allocate(&site, &[a.clone(), b.clone()]).unwrap();
        // needs first: B its 0.5 kW, A the rest (7.5 kW); max-min fair alone: 4 and 4
        assert_eq!((out[0].watts, out[1].watts), (d(7_500), d(500)));
        // room for both needs: the rest is shared up to the caps
        let big = Site {
            min_current_a: Decimal::ZERO,
            ..Site::new(d(16_000))
        };
        let out = allocate(&big, &[a.clone(), b.clone()]).unwrap();
        // round 1: 10 000 + 500; round 2: 5 500 left over A's 1 000 and B's 10 500
        assert_eq!((out[0].watts, out[1].watts), (d(11_000), d(5_000)));
        // a need unknown counts as the whole cap in round 1
        let c = Session {
            required_w: None,
            ..b.clone()
        };
        let out = allocate(&site, &[a, c]).unwrap();
        assert_eq!((out[0].watts, out[1].watts), (d(4_000), d(4_000)));
        // a departure already past, or nothing left to get
        assert_eq!(required_w(d(1_000), now, now), None);
        assert_eq!(required_w(d(-5), now, now + Duration::hours(1)), Some(d(0)));
        assert_eq!(
            required_w(d(1_000), now, now + Duration::minutes(90)),
            Some(Decimal::new(6_667, 1))
        );
    }
}
