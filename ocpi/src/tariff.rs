//! The tariff engine: prices a session's charging periods under an OCPI
//! tariff, exactly (`rust_decimal`, no floats, no rounding of money — the
//! 2.2.1-d2 note leaves rounding to law and contracts).
//!
//! # Typed API
//!
//! The engine prices the generated OCPI types: a [`Tariff`] is converted
//! from a [`v211::Tariff`](crate::v211::Tariff),
//! [`v221::Tariff`](crate::v221::Tariff) or
//! [`v230::Tariff`](crate::v230::Tariff) (`TryFrom`, refusing with
//! [`TariffError::Invalid`] what it cannot use: a `start_time` that is not
//! `HH:MM`, a negative `step_size`...), a [`CdrInput`] (times, charging
//! periods, the CDR's own tariffs, `credit`, the zone of its location)
//! from a [`v211::Cdr`](crate::v211::Cdr), [`v221::Cdr`](crate::v221::Cdr)
//! or [`v230::Cdr`](crate::v230::Cdr), a [`ChargingPeriod`] from each
//! version's `ChargingPeriod`. [`price_cdr`] prices one; [`Pricer`] prices
//! periods as they come (a running cost: [`Pricer::total_at`] costs the
//! same whatever the session's length). The engine's model ([`Tariff`],
//! [`Element`], [`Restrictions`], [`ChargingPeriod`]) is typed: times of
//! day, dates, weekdays and dimensions are values, not strings.
//!
//! The JSON entry points ([`price_json`], [`price_cdr_json`],
//! [`check_json`]) are thin wrappers for command lines and HTTP: they read
//! the tariff's elements and the CDR's charging periods as the generated
//! types ([`Tariff::from_json`], [`CdrInput::from_json`]; the tariff's
//! envelope fields the engine does not read may be left out), price with
//! the typed API and print [`Priced::to_json`].
//!
//! # Rounding
//!
//! - Pricing is exact: each priced line (volume × price) and its VAT are
//!   kept to [`MONEY_DP`] (10) places, far below any currency's minor
//!   unit; totals are sums of lines, never rounded.
//! - A CDR's prices carry at most 4 decimals, the most an OCPI `number`
//!   allows ([`cdr_number`], [`Amount::to_v221`], [`Amount::to_v230`],
//!   [`Priced::to_json`]): every total (excl. and incl. VAT, each tax line,
//!   per dimension and overall) is rounded on its own from its exact value,
//!   half away from zero (`0.00005` → `0.0001`). The exact values stay in
//!   [`Priced`].
//! - What a driver is charged (the total incl. VAT rounded once to the
//!   currency's minor unit) is the caller's: the reference CSMS does it
//!   with `evproto_csms_core::money`.
//!
//! Rules (`mod_tariffs.asciidoc`, `mod_cdrs.asciidoc` of OCPI 2.2.1):
//!
//! - Per dimension (ENERGY, TIME, PARKING_TIME, FLAT) the **first** element,
//!   in list order, that has a component of that dimension and whose
//!   restrictions all hold is used; a dimension with no such element is free.
//! - Restrictions are judged at the start of each charging period, in the
//!   location's local time ([`chrono_tz`]): `start_time`/`end_time` (wrapping
//!   past midnight, `00:00` as end = end of day), `start_date` (incl.) /
//!   `end_date` (excl.), `day_of_week`, `min_kwh` (incl.) / `max_kwh` (excl.)
//!   on the energy charged *before* the period, `min/max_current` and
//!   `min/max_power` on the period's current/power dimensions,
//!   `min_duration` (incl.) / `max_duration` (excl.) on the session time
//!   before the period, `reservation` only on reservation periods.
//! - `step_size` is applied once per session on the total of a dimension,
//!   with the step of the last component used: ENERGY in Wh; TIME and
//!   PARKING_TIME together in seconds, where only the parking total is
//!   rounded when the session ends parking.
//! - `min_price` / `max_price` clamp the total, excl. and incl. VAT each.
//!
//! Decisions on the ambiguities (OCPI-NOTES §2.2), each pinned by a test:
//!
//! 1. step_size: the 2.2.1-d2 text above (one rounding per session, last
//!    component's step), not the per-element reading of older examples.
//! 2. `min/max_duration` count the whole session time (charging and
//!    parking) before the period starts.
//! 3. A FLAT fee is charged once: the first FLAT component that becomes
//!    active, in period order.
//! 4. Time zone: the location's `time_zone`; without one, the zone of the
//!    location's `country` when the tz database's `zone.tab` lists exactly
//!    one for it (`Europe/Amsterdam` for `NLD`; [`Zone::Country`]); a
//!    country with several (`DEU`: Berlin and Büsingen; `ESP`; `USA`) or
//!    none is refused ([`TariffError::CountryZones`]), as is a location
//!    with neither ([`TariffError::TimeZoneMissing`]). Only tariffs with
//!    time restrictions need a zone.
//! 5. `step_size` 0 means no rounding; `start_time == end_time` means the
//!    whole day.
//! 6. A period is priced as a whole by its start (no splitting after the
//!    fact).
//! 7. min/max clamping changes `total_cost` only; per-dimension totals keep
//!    their computed values; 2.3.0 tax lines are scaled with the clamp.
//! 8. Checking a CDR ([`check_json`]): the spec has no rounding rules, so a
//!    money total matches when it is within half a cent (0.005) of the
//!    exact price, before and after taxes; energy within 1 Wh, times
//!    within one second. A total the CDR leaves out is not checked.
//! 9. A charging period without a `TIME` dimension: charging time is the
//!    period's length from its boundaries, unless the period reports
//!    `PARKING_TIME` or `RESERVATION_TIME` (then it is a parking or
//!    reservation period and its charging time is 0). A `TIME` dimension
//!    given is used as it is. From `mod_cdrs.asciidoc` (2.2.1),
//!    "ChargingPeriod _class_": a period's `start_date_time` "A period ends
//!    when the next period starts. The last period ends when the session
//!    ends", so every period has a length; "CdrDimensionType _enum_": `TIME`
//!    is "Time charging during this ChargingPeriod" and `PARKING_TIME` "Time
//!    during this ChargingPeriod not charging"; and "ChargingPeriod" in the
//!    CDR object's text: a CPO "SHALL at least start (and add) a
//!    ChargingPeriod every moment/event that has relevance for the total
//!    costs", so charging and parking are separate periods, and a period
//!    that reports neither parking nor reservation is a charging one. The
//!    spec's energy example ("a new Charging Period at 17:00, which
//!    contains at least the energy in kWh") carries no `TIME` at all.
//! 10. A CDR's own `tariffs` ([`price_cdr`] without a separate tariff):
//!     each period is priced under the tariff its `tariff_id` names; a
//!     period without `tariff_id` is priced under none ("If not provided, no
//!     Tariff is relevant during this period", ChargingPeriod class), except
//!     that a CDR with exactly one tariff prices every period under it (CDRs
//!     commonly leave `tariff_id` out then). FLAT once and step_size once
//!     per session hold across tariffs; each tariff's `min_price` /
//!     `max_price` bound the part of the total priced under it ("a Charging
//!     Session with this tariff will at least cost this amount").
//! 11. A Credit CDR (`credit: true`, 2.2.1+) is priced like its original,
//!     then `total_cost` is negated, before and after taxes, and nothing
//!     else ("Credit CDRs" in `mod_cdrs.asciidoc`: "Only the values in the
//!     `total_cost` field SHALL contain the negative amounts of the original
//!     CDR"; [`Priced::credited`]).
//! 12. OCPI 2.1.1 CDRs (`stop_date_time`) are priced by the same rules;
//!     2.1.1 price components carry no VAT, and [`Version::V211`] prints
//!     `total_cost` as the 2.1.1 number (excl. VAT) with `total_energy`,
//!     `total_time`, `total_parking_time`.
//! 13. Periods priced one by one ([`Pricer`]) cost exactly what the same
//!     periods priced at once cost ([`price_periods`] is the same
//!     [`Pricer`] fed the periods in time order); a period earlier than
//!     the one before it is refused there ([`TariffError::Periods`]).
//!
//! ```
//! use evproto_ocpi::tariff::{price_cdr, CdrInput, Tariff, Zone};
//! use evproto_ocpi::v221;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tariff: v221::Tariff = serde_json::from_str(r#"{"country_code": "NL", "party_id": "EVP",
//!     "id": "T1", "currency": "EUR", "last_updated": "2026-03-01T00:00:00Z",
//!     "elements": [{"price_components": [{"type": "ENERGY", "price": 0.25, "vat": 20.0, "step_size": 1}]}]}"#)?;
//! let periods: Vec<v221::ChargingPeriod> = serde_json::from_str(r#"[{"start_date_time": "2026-03-01T10:00:00Z",
//!     "dimensions": [{"type": "ENERGY", "volume": 10}]}]"#)?;
//! let tariff = Tariff::try_from(&tariff)?;
//! let session = evproto_ocpi::tariff::Session {
//!     start_date_time: "2026-03-01T10:00:00Z".parse()?,
//!     end_date_time: "2026-03-01T11:00:00Z".parse()?,
//!     charging_periods: periods.iter().map(Into::into).collect(),
//! };
//! let cdr = CdrInput::new(session);
//! let priced = price_cdr(&cdr, Some(&tariff), &Zone::Named("Europe/Amsterdam".into()))?;
//! assert_eq!(priced.total_cost.to_v221().excl_vat.to_string(), "2.5");
//! assert_eq!(priced.total_cost.to_v221().incl_vat.unwrap().to_string(), "3");
//! # Ok(())
//! # }
//! ```

use std::borrow::Borrow;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};

mod convert;
mod zones;

pub use convert::CdrInput;

/// Why a session could not be priced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TariffError {
    /// The tariff or CDR does not have the shape of its version, or holds
    /// a value the engine cannot use (a `start_time` that is not `HH:MM`, a
    /// negative `step_size`).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// `tariff`, `cdr` or `location`.
        what: &'static str,
        /// The decoder's message, or the value and why it is refused.
        reason: String,
    },
    /// No time zone for the restrictions.
    #[error("the location's time_zone is needed to apply time restrictions")]
    TimeZoneMissing,
    /// No `time_zone` on the location, and its country has not exactly
    /// one zone in the tz database (decision 4).
    #[error("the location has no time_zone and its country {country} has {zones} time zones, not one: time_zone is needed to apply time restrictions")]
    CountryZones {
        /// The location's `country`.
        country: String,
        /// How many zones the tz database lists for it (0: unknown country).
        zones: usize,
    },
    /// Neither a tariff nor a CDR with `tariffs` to price with.
    #[error("no tariff: give one or a CDR with tariffs")]
    NoTariff,
    /// A charging period's `tariff_id` names no tariff of the CDR.
    #[error("charging period tariff_id {0} is not among the CDR's tariffs")]
    UnknownTariffId(String),
    /// Not an IANA zone.
    #[error("unknown time zone {0}")]
    UnknownTimeZone(String),
    /// A charging period outside the session, or periods out of order.
    #[error("charging periods: {0}")]
    Periods(String),
}

/// Which version's price objects to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// OCPI 2.1.1: `total_cost` is a number (excl. VAT; 2.1.1 has no VAT
    /// and no per-dimension costs).
    V211,
    /// `{excl_vat, incl_vat}`.
    V221,
    /// `{before_taxes, taxes: [..]}`.
    V230,
}

/// A JSON number (or numeric string) as an exact decimal: the number's
/// shortest text, never arithmetic on a float.
pub fn to_decimal(v: &Value) -> Option<Decimal> {
    let s = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    Decimal::from_str(&s)
        .or_else(|_| Decimal::from_scientific(&s))
        .ok()
}

/// A tariff dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// Per kWh.
    Energy,
    /// Once per session.
    Flat,
    /// Per hour not charging.
    ParkingTime,
    /// Per hour charging.
    Time,
}

impl Dimension {
    /// A `TariffDimensionType` as written on the wire (every version).
    pub fn from_wire(s: &str) -> Option<Dimension> {
        Some(match s {
            "ENERGY" => Dimension::Energy,
            "FLAT" => Dimension::Flat,
            "PARKING_TIME" => Dimension::ParkingTime,
            "TIME" => Dimension::Time,
            _ => return None,
        })
    }
}

/// One price component.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceComponent {
    /// The dimension.
    pub dimension: Dimension,
    /// Price per unit, excl. VAT.
    pub price: Decimal,
    /// VAT percentage; absent = no VAT applies.
    pub vat: Option<Decimal>,
    /// Billing block: Wh for ENERGY, seconds for times (0: no rounding).
    pub step_size: u64,
}

/// A reservation restriction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// `RESERVATION`: the reservation's costs.
    Reservation,
    /// `RESERVATION_EXPIRES`: the costs of a reservation that expires.
    Expires,
}

/// When an element applies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Restrictions {
    /// Local time of day, inclusive.
    pub start_time: Option<NaiveTime>,
    /// Local time of day, exclusive (`00:00`: end of day).
    pub end_time: Option<NaiveTime>,
    /// Local date, inclusive.
    pub start_date: Option<NaiveDate>,
    /// Local date, exclusive.
    pub end_date: Option<NaiveDate>,
    /// kWh before the period, inclusive.
    pub min_kwh: Option<Decimal>,
    /// kWh before the period, exclusive.
    pub max_kwh: Option<Decimal>,
    /// A, inclusive.
    pub min_current: Option<Decimal>,
    /// A, exclusive.
    pub max_current: Option<Decimal>,
    /// kW, inclusive.
    pub min_power: Option<Decimal>,
    /// kW, exclusive.
    pub max_power: Option<Decimal>,
    /// Seconds of session before the period, inclusive.
    pub min_duration: Option<i64>,
    /// Seconds of session before the period, exclusive.
    pub max_duration: Option<i64>,
    /// Days of the week (empty: every day).
    pub day_of_week: Vec<Weekday>,
    /// Reservation periods only.
    pub reservation: Option<Reservation>,
}

impl Restrictions {
    /// Whether a restriction reads local time (so a zone is needed).
    fn reads_local_time(&self) -> bool {
        self.start_time.is_some()
            || self.end_time.is_some()
            || self.start_date.is_some()
            || self.end_date.is_some()
            || !self.day_of_week.is_empty()
    }

    /// Whether it judges a period by its place in the session: local time,
    /// date, day, energy or time before it.
    pub fn positional(&self) -> bool {
        self.reads_local_time()
            || self.min_kwh.is_some()
            || self.max_kwh.is_some()
            || self.min_duration.is_some()
            || self.max_duration.is_some()
    }
}

/// A tariff element.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    /// Its components.
    pub price_components: Vec<PriceComponent>,
    /// Its restrictions.
    pub restrictions: Option<Restrictions>,
}

/// A min/max price: 2.2.1 `{excl_vat, incl_vat?}` or 2.3.0 `{before_taxes, after_taxes?}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Excl. VAT / before taxes.
    pub excl: Decimal,
    /// Incl. VAT / after taxes.
    pub incl: Option<Decimal>,
}

/// The parts of a tariff the engine reads, converted from a generated
/// `Tariff` of any version (`TryFrom`) or read from JSON
/// ([`Tariff::from_json`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Tariff {
    /// Tariff id.
    pub id: String,
    /// ISO 4217 currency.
    pub currency: String,
    /// Elements in priority order.
    pub elements: Vec<Element>,
    /// Minimum total.
    pub min_price: Option<Limit>,
    /// Maximum total.
    pub max_price: Option<Limit>,
}

impl Tariff {
    fn needs_zone(&self) -> bool {
        self.elements
            .iter()
            .filter_map(|e| e.restrictions.as_ref())
            .any(Restrictions::reads_local_time)
    }
}

/// A charging period: when it starts and the volumes it reports (from the
/// `dimensions` of any version's `ChargingPeriod`, the first of a type
/// when one repeats).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChargingPeriod {
    /// When it starts.
    pub start_date_time: DateTime<Utc>,
    /// `ENERGY`, kWh.
    pub energy: Option<Decimal>,
    /// `TIME`, hours charging (absent: decision 9).
    pub time: Option<Decimal>,
    /// `PARKING_TIME`, hours: a parking period.
    pub parking_time: Option<Decimal>,
    /// `RESERVATION_TIME`, hours: a reservation period.
    pub reservation_time: Option<Decimal>,
    /// `CURRENT`, else `MAX_CURRENT`, A.
    pub current: Option<Decimal>,
    /// `POWER`, else `MAX_POWER`, kW.
    pub power: Option<Decimal>,
    /// The tariff it is priced under, by id (2.2.1+).
    pub tariff_id: Option<String>,
}

/// The session to price: a CDR's times and periods.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Session start.
    pub start_date_time: DateTime<Utc>,
    /// Session end (2.1.1 calls it `stop_date_time`).
    pub end_date_time: DateTime<Utc>,
    /// Periods.
    pub charging_periods: Vec<ChargingPeriod>,
}

/// Money is kept to 10 decimal places: far below any currency's minor unit,
/// so no currency rounding happens here (that is the caller's, by law and
/// contract), yet a price per hour × seconds that does not terminate in
/// decimal stays summable.
pub const MONEY_DP: u32 = 10;

/// A price as a CDR carries it (an OCPI `number`): at most 4 decimals,
/// rounded from the exact value half away from zero, trailing zeros
/// dropped (see "Rounding" in the module docs).
pub fn cdr_number(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero)
        .normalize()
}

/// An amount with and without VAT, grouped by VAT rate for tax lines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Amount {
    /// Excl. VAT.
    pub excl: Decimal,
    /// VAT per rate (percentage, amount); rate `None` = no VAT applies.
    pub vat: Vec<(Option<Decimal>, Decimal)>,
}

impl Amount {
    fn add(&mut self, excl: Decimal, rate: Option<Decimal>) {
        let excl = excl.round_dp(MONEY_DP);
        self.excl += excl;
        let tax = rate.map_or(Decimal::ZERO, |r| {
            (excl * r / Decimal::from(100)).round_dp(MONEY_DP)
        });
        match self.vat.iter_mut().find(|(r, _)| *r == rate) {
            Some(slot) => slot.1 += tax,
            None => self.vat.push((rate, tax)),
        }
    }
    fn merge(&mut self, other: &Amount) {
        self.excl += other.excl;
        for (r, t) in &other.vat {
            match self.vat.iter_mut().find(|(x, _)| x == r) {
                Some(slot) => slot.1 += *t,
                None => self.vat.push((*r, *t)),
            }
        }
    }
    /// Incl. VAT.
    pub fn incl(&self) -> Decimal {
        self.excl + self.vat.iter().map(|v| v.1).sum::<Decimal>()
    }
    fn scaled(&self, excl: Decimal, incl: Decimal) -> Amount {
        let tax = self.incl() - self.excl;
        let new_tax = incl - excl;
        let vat = self
            .vat
            .iter()
            .map(|(r, t)| {
                (
                    *r,
                    if tax.is_zero() {
                        Decimal::ZERO
                    } else {
                        *t * new_tax / tax
                    },
                )
            })
            .collect();
        Amount { excl, vat }
    }

    /// As a 2.2.1 CDR carries it: excl. and incl. VAT, each rounded on its
    /// own to 4 decimals ([`cdr_number`]).
    pub fn to_v221(&self) -> crate::v221::Price {
        crate::v221::Price {
            excl_vat: cdr_number(self.excl),
            incl_vat: Some(cdr_number(self.incl())),
            extra: Default::default(),
        }
    }

    /// As a 2.3.0 CDR carries it: before taxes and one `VAT` tax line per
    /// rate, each rounded on its own to 4 decimals ([`cdr_number`]).
    pub fn to_v230(&self) -> crate::v230::Price {
        crate::v230::Price {
            before_taxes: cdr_number(self.excl),
            taxes: self
                .vat
                .iter()
                .filter_map(|(r, t)| {
                    r.map(|r| crate::v230::TaxAmount {
                        name: "VAT".into(),
                        account_number: None,
                        percentage: Some(cdr_number(r)),
                        amount: cdr_number(*t),
                        extra: Default::default(),
                    })
                })
                .collect(),
            extra: Default::default(),
        }
    }

    /// The amount as a CDR carries it, in `v`'s shape (2.1.1: the number
    /// excl. VAT), numbers as strings ([`cdr_number`]).
    fn json(&self, v: Version) -> Value {
        let n = |d: Decimal| cdr_number(d).to_string();
        match v {
            Version::V211 => Value::String(n(self.excl)),
            Version::V221 => json!({"excl_vat": n(self.excl), "incl_vat": n(self.incl())}),
            Version::V230 => {
                let taxes: Vec<Value> = self
                    .vat
                    .iter()
                    .filter_map(|(r, t)| {
                        r.map(|r| json!({"name": "VAT", "percentage": n(r), "amount": n(*t)}))
                    })
                    .collect();
                json!({"before_taxes": n(self.excl), "taxes": taxes})
            }
        }
    }
}

/// One priced line of the breakdown.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Period index (`None` for the step-size rounding line).
    pub period: Option<usize>,
    /// Tariff index (0 with one tariff; see [`price_periods`]).
    pub tariff: usize,
    /// Element index in the tariff.
    pub element: usize,
    /// Dimension.
    pub dimension: Dimension,
    /// Billed volume: kWh, hours, or 1 for FLAT.
    pub volume: Decimal,
    /// Price per unit excl. VAT.
    pub price: Decimal,
    /// VAT rate.
    pub vat: Option<Decimal>,
    /// volume × price.
    pub cost: Decimal,
}

/// A priced session: the CDR totals and the breakdown.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Priced {
    /// Everything.
    pub total_cost: Amount,
    /// FLAT.
    pub total_fixed_cost: Amount,
    /// kWh.
    pub total_energy: Decimal,
    /// ENERGY cost.
    pub total_energy_cost: Amount,
    /// Hours charging.
    pub total_time: Decimal,
    /// TIME cost.
    pub total_time_cost: Amount,
    /// Hours parking.
    pub total_parking_time: Decimal,
    /// PARKING_TIME cost.
    pub total_parking_cost: Amount,
    /// Reservation cost.
    pub total_reservation_cost: Amount,
    /// Every priced line (empty from a [`Pricer::without_lines`]).
    pub lines: Vec<Line>,
}

impl Priced {
    /// As a Credit CDR carries it (`mod_cdrs.asciidoc` "Credit CDRs": "Only
    /// the values in the `total_cost` field SHALL contain the negative
    /// amounts of the original CDR"): `total_cost` negated, excl. VAT and
    /// every tax line; every other total and the breakdown as they are.
    pub fn credited(mut self) -> Priced {
        self.total_cost.excl = -self.total_cost.excl;
        for (_, t) in &mut self.total_cost.vat {
            *t = -*t;
        }
        self
    }

    /// The totals under the CDR's field names, prices in `version`'s shape.
    pub fn to_json(&self, version: Version) -> Value {
        let n = |d: Decimal| d.normalize().to_string();
        let breakdown = self.lines.iter().map(|l| json!({
            "period": l.period, "tariff": l.tariff, "element": l.element, "dimension": format!("{:?}", l.dimension),
            "volume": n(l.volume), "price": n(l.price), "vat": l.vat.map(n), "cost": n(l.cost),
        })).collect::<Vec<_>>();
        if version == Version::V211 {
            // 2.1.1 CDR: total_cost (excl. VAT), total_energy, total_time,
            // total_parking_time; no per-dimension costs
            return json!({
                "total_cost": self.total_cost.json(version),
                "total_energy": n(self.total_energy),
                "total_time": n(self.total_time),
                "total_parking_time": n(self.total_parking_time),
                "breakdown": breakdown,
            });
        }
        json!({
            "total_cost": self.total_cost.json(version),
            "total_fixed_cost": self.total_fixed_cost.json(version),
            "total_energy": n(self.total_energy),
            "total_energy_cost": self.total_energy_cost.json(version),
            "total_time": n(self.total_time),
            "total_time_cost": self.total_time_cost.json(version),
            "total_parking_time": n(self.total_parking_time),
            "total_parking_cost": self.total_parking_cost.json(version),
            "total_reservation_cost": self.total_reservation_cost.json(version),
            "breakdown": breakdown,
        })
    }
}

/// What the restrictions are judged on, at a period's start.
struct Context {
    local: chrono::NaiveDateTime,
    kwh_before: Decimal,
    seconds_before: i64,
    current: Option<Decimal>,
    power: Option<Decimal>,
    reservation: bool,
}

fn matches(r: &Restrictions, c: &Context) -> bool {
    let t = c.local.time();
    let time_ok = match (r.start_time, r.end_time) {
        (None, None) => true,
        (Some(s), None) => t >= s,
        (None, Some(e)) => e == NaiveTime::MIN || t < e,
        (Some(s), Some(e)) if s == e => true,
        (Some(s), Some(e)) if e == NaiveTime::MIN => t >= s,
        (Some(s), Some(e)) if s < e => t >= s && t < e,
        (Some(s), Some(e)) => t >= s || t < e, // wraps past midnight
    };
    let date = c.local.date();
    let date_ok = r.start_date.is_none_or(|s| date >= s) && r.end_date.is_none_or(|e| date < e);
    let day_ok = r.day_of_week.is_empty() || r.day_of_week.contains(&date.weekday());
    let range = |v: Option<Decimal>, min: Option<Decimal>, max: Option<Decimal>| match v {
        Some(v) => min.is_none_or(|m| v >= m) && max.is_none_or(|m| v < m),
        // a restriction on a value the period does not report cannot be shown to hold
        None => min.is_none() && max.is_none(),
    };
    let kwh_ok = range(Some(c.kwh_before), r.min_kwh, r.max_kwh);
    let current_ok = range(c.current, r.min_current, r.max_current);
    let power_ok = range(c.power, r.min_power, r.max_power);
    let dur_ok = r.min_duration.is_none_or(|m| c.seconds_before >= m)
        && r.max_duration.is_none_or(|m| c.seconds_before < m);
    let reservation_ok = r.reservation.is_some() == c.reservation;
    time_ok && date_ok && day_ok && kwh_ok && current_ok && power_ok && dur_ok && reservation_ok
}

fn hours(ms: i64) -> Decimal {
    Decimal::from(ms) / Decimal::from(3_600_000)
}

/// Prices `session` under `tariff`, restrictions in `time_zone`.
///
/// # Errors
///
/// [`TariffError`]: no time zone when the tariff has time restrictions, an
/// unknown zone, or periods outside the session.
pub fn price(
    tariff: &Tariff,
    session: &Session,
    time_zone: Option<&str>,
) -> Result<Priced, TariffError> {
    let zone = time_zone.map_or(Zone::Unknown, |z| Zone::Named(z.to_owned()));
    let every = vec![Some(0); session.charging_periods.len()];
    price_periods(&[tariff], session, &every, &zone)
}

/// Where the local time of time restrictions comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Zone {
    /// An IANA zone name: the location's `time_zone`.
    Named(String),
    /// No `time_zone`, only the location's country (ISO 3166-1 alpha-3, as
    /// OCPI writes it, or alpha-2): its zone when it has exactly one in the
    /// tz database's `zone.tab` (decision 4).
    Country(String),
    /// Nothing known: tariffs without time restrictions only.
    Unknown,
}

impl Zone {
    /// The zone of a Location (2.1.1, 2.2.1, 2.3.0) or a 2.2.1+
    /// `CdrLocation` as JSON: its `time_zone`, else its `country`.
    pub fn of_location(location: &Value) -> Zone {
        if let Some(z) = location.get("time_zone").and_then(Value::as_str) {
            return Zone::Named(z.to_owned());
        }
        match location.get("country").and_then(Value::as_str) {
            Some(c) => Zone::Country(c.to_owned()),
            None => Zone::Unknown,
        }
    }

    /// A location's `time_zone` when it has one, else its `country`.
    pub fn of(time_zone: Option<&str>, country: &str) -> Zone {
        match time_zone {
            Some(z) => Zone::Named(z.to_owned()),
            None => Zone::Country(country.to_owned()),
        }
    }

    /// The zone, or why there is none; `needed` is false when no
    /// restriction reads local time (UTC is used then).
    fn resolve(&self, needed: bool) -> Result<Tz, TariffError> {
        match self {
            Zone::Named(z) => z
                .parse()
                .map_err(|_| TariffError::UnknownTimeZone(z.clone())),
            _ if !needed => Ok(Tz::UTC),
            Zone::Country(c) => match zones::of_country(c) {
                [one] => one
                    .parse()
                    .map_err(|_| TariffError::UnknownTimeZone((*one).to_owned())),
                many => Err(TariffError::CountryZones {
                    country: c.clone(),
                    zones: many.len(),
                }),
            },
            Zone::Unknown => Err(TariffError::TimeZoneMissing),
        }
    }
}

/// Prices `session` under several tariffs: period `i` (in the order of
/// `session.charging_periods`) under `tariffs[period_tariffs[i]]`, or
/// under none when that is `None` (its volumes still count). FLAT once per
/// session and step_size once per session apply across tariffs (decisions
/// 1 and 3); each tariff's `min_price`/`max_price` bounds the part of the
/// total priced under it (decision 10). The periods are priced in time
/// order by a [`Pricer`].
///
/// # Errors
///
/// [`TariffError`], and [`TariffError::Periods`] when `period_tariffs` does
/// not have one entry per period or names no tariff of `tariffs`.
pub fn price_periods(
    tariffs: &[&Tariff],
    session: &Session,
    period_tariffs: &[Option<usize>],
    zone: &Zone,
) -> Result<Priced, TariffError> {
    if period_tariffs.len() != session.charging_periods.len()
        || period_tariffs.iter().flatten().any(|t| *t >= tariffs.len())
    {
        return Err(TariffError::Periods(
            "one tariff index per charging period, within the tariffs given".into(),
        ));
    }
    if session.end_date_time < session.start_date_time {
        return Err(TariffError::Periods(
            "the session ends before it starts".into(),
        ));
    }
    let mut order: Vec<usize> = (0..session.charging_periods.len()).collect();
    order.sort_by_key(|i| session.charging_periods[*i].start_date_time);
    let mut pricer = Pricer::new(tariffs.to_vec(), session.start_date_time, zone)?;
    for i in order {
        pricer.push(session.charging_periods[i].clone(), period_tariffs[i])?;
    }
    pricer.finish(session.end_date_time)
}

/// Prices charging periods one at a time, in time order: the state of a
/// session priced so far. [`Pricer::push`] adds a period (the one before
/// it is priced then, its end now known), [`Pricer::total_at`] gives the
/// price as if the session ended at a time with one more, open period,
/// [`Pricer::finish`] ends it. Pushing the periods of a session one by one
/// and finishing gives exactly what [`price_periods`] gives for them
/// (decision 13; it is this same code).
///
/// `T` is how the tariffs are held: `&Tariff` for one pricing,
/// `Arc<Tariff>` for a pricer kept across events.
///
/// ```
/// use std::sync::Arc;
/// use evproto_ocpi::tariff::{ChargingPeriod, Pricer, Tariff, Zone};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let tariff = Tariff::from_json(&serde_json::json!({"currency": "EUR", "elements": [
///     {"price_components": [{"type": "ENERGY", "price": 0.30, "step_size": 1}]}]}))?;
/// let t0: chrono::DateTime<chrono::Utc> = "2026-03-01T10:00:00Z".parse()?;
/// let mut running = Pricer::new(vec![Arc::new(tariff)], t0, &Zone::Unknown)?.without_lines();
/// for minute in 0..3 {
///     let at = t0 + chrono::Duration::minutes(minute);
///     running.push(ChargingPeriod { start_date_time: at, energy: Some(1.into()), ..Default::default() }, Some(0))?;
/// }
/// let now = t0 + chrono::Duration::minutes(3);
/// assert_eq!(running.total_at(None, now)?.total_cost.excl, rust_decimal::Decimal::new(90, 2));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Pricer<T: Borrow<Tariff>> {
    tariffs: Vec<T>,
    needs_zone: Vec<bool>,
    start: DateTime<Utc>,
    zone: Zone,
    tz: Option<Tz>,
    keep_lines: bool,
    pending: Option<(ChargingPeriod, Option<usize>)>,
    periods: usize,
    out: Priced,
    flat_done: bool,
    /// The last component used per dimension, for step_size: (tariff, element, component).
    last: [Option<(usize, usize, PriceComponent)>; 3],
    /// kWh, h, h billed.
    billed: [Decimal; 3],
    /// Per tariff: what was priced under it (decision 10) and whether a period used it.
    parts: Vec<(Amount, bool)>,
}

impl<T: Borrow<Tariff> + Clone> Pricer<T> {
    /// A session starting at `start` under `tariffs` (periods name them by
    /// index), restrictions in `zone`.
    ///
    /// # Errors
    ///
    /// [`TariffError::UnknownTimeZone`] for a named zone that is not one.
    pub fn new(tariffs: Vec<T>, start: DateTime<Utc>, zone: &Zone) -> Result<Self, TariffError> {
        let tz = match zone {
            Zone::Named(_) => Some(zone.resolve(false)?),
            _ => None,
        };
        Ok(Pricer {
            needs_zone: tariffs.iter().map(|t| t.borrow().needs_zone()).collect(),
            parts: vec![(Amount::default(), false); tariffs.len()],
            tariffs,
            start,
            zone: zone.clone(),
            tz,
            keep_lines: true,
            pending: None,
            periods: 0,
            out: Priced::default(),
            flat_done: false,
            last: [None, None, None],
            billed: [Decimal::ZERO; 3],
        })
    }

    /// Keeps no breakdown ([`Priced::lines`] stays empty): what a running
    /// cost needs, so that a pricer's size does not grow with the session.
    pub fn without_lines(mut self) -> Self {
        self.keep_lines = false;
        self
    }

    /// The periods pushed so far.
    pub fn periods(&self) -> usize {
        self.periods + usize::from(self.pending.is_some())
    }

    /// The start of the last period pushed.
    pub fn last_start(&self) -> Option<DateTime<Utc>> {
        self.pending.as_ref().map(|p| p.0.start_date_time)
    }

    /// Adds the next period, priced under `tariffs[tariff]` (`None`: no
    /// tariff is relevant, its volumes still count).
    ///
    /// # Errors
    ///
    /// [`TariffError::Periods`]: it starts before the session or before
    /// the period pushed last, or names no tariff; the zone errors when its
    /// tariff reads local time and the zone gives none. The pricer is
    /// unchanged then.
    pub fn push(
        &mut self,
        period: ChargingPeriod,
        tariff: Option<usize>,
    ) -> Result<(), TariffError> {
        if tariff.is_some_and(|t| t >= self.tariffs.len()) {
            return Err(TariffError::Periods(
                "one tariff index per charging period, within the tariffs given".into(),
            ));
        }
        if period.start_date_time < self.start {
            return Err(TariffError::Periods(format!(
                "a period starts at {} outside the session",
                period.start_date_time
            )));
        }
        if self
            .last_start()
            .is_some_and(|last| period.start_date_time < last)
        {
            return Err(TariffError::Periods(format!(
                "a period starts at {}, before the one pushed last",
                period.start_date_time
            )));
        }
        if let Some(t) = tariff {
            if self.needs_zone[t] && self.tz.is_none() {
                self.tz = Some(self.zone.resolve(true)?);
            }
            self.parts[t].1 = true;
        }
        let end = period.start_date_time;
        if let Some((prev, pt)) = self.pending.replace((period, tariff)) {
            self.price_one(&prev, pt, end);
        }
        Ok(())
    }

    /// The price as if the session ended at `end`, after one more period
    /// `open` (under the first tariff) when given: the pricer is not
    /// changed. Costs a copy of the pricer's totals (no breakdown with
    /// [`Pricer::without_lines`]), whatever the number of periods.
    ///
    /// # Errors
    ///
    /// As [`Pricer::push`] and [`Pricer::finish`].
    pub fn total_at(
        &self,
        open: Option<ChargingPeriod>,
        end: DateTime<Utc>,
    ) -> Result<Priced, TariffError> {
        let mut p = self.clone();
        if let Some(open) = open {
            let t = (!p.tariffs.is_empty()).then_some(0);
            p.push(open, t)?;
        }
        p.finish(end)
    }

    /// Ends the session at `end`: prices the last period, then the
    /// step_size rounding and min/max.
    ///
    /// # Errors
    ///
    /// [`TariffError::Periods`]: `end` is before the session's start or
    /// the last period's.
    pub fn finish(mut self, end: DateTime<Utc>) -> Result<Priced, TariffError> {
        if end < self.start {
            return Err(TariffError::Periods(
                "the session ends before it starts".into(),
            ));
        }
        let mut parking_last = false;
        if let Some((p, t)) = self.pending.take() {
            if p.start_date_time > end {
                return Err(TariffError::Periods(format!(
                    "a period starts at {} outside the session",
                    p.start_date_time
                )));
            }
            parking_last = p.parking_time.is_some();
            self.price_one(&p, t, end);
        }
        // step_size, once per session
        self.step(0, Decimal::from(1000));
        // TIME and PARKING_TIME: when the session ends parking only the parking total is rounded
        if parking_last && self.last[2].is_some() {
            self.step(2, Decimal::from(3600));
        } else {
            self.step(1, Decimal::from(3600));
        }
        // min/max: one tariff bounds the whole total; several each bound the
        // lines priced under them (decision 10)
        let mut total = Amount::default();
        let out = &mut self.out;
        if let [t] = self.tariffs.as_slice() {
            for a in [
                &out.total_fixed_cost,
                &out.total_energy_cost,
                &out.total_time_cost,
                &out.total_parking_cost,
                &out.total_reservation_cost,
            ] {
                total.merge(a);
            }
            let t = t.borrow();
            total = clamp(total, t.min_price, t.max_price);
        } else {
            for (t, (part, used)) in self.tariffs.iter().zip(&self.parts) {
                if *used {
                    let t = t.borrow();
                    total.merge(&clamp(part.clone(), t.min_price, t.max_price));
                }
            }
        }
        out.total_cost = total;
        Ok(self.out)
    }

    fn line(&mut self, line: Line) {
        self.parts[line.tariff].0.add(line.cost, line.vat);
        if self.keep_lines {
            self.out.lines.push(line);
        }
    }

    fn step(&mut self, slot: usize, unit: Decimal) {
        let Some((ti, ei, c)) = self.last[slot].clone() else {
            return;
        };
        if c.step_size == 0 {
            return; // decision 5: no rounding
        }
        // Wh or seconds; times come from milliseconds, so 6 places are exact enough
        let units = (self.billed[slot] * unit).round_dp(6);
        let step = Decimal::from(c.step_size);
        let extra_units = (units / step).ceil() * step - units;
        if extra_units > Decimal::ZERO {
            let add = extra_units / unit;
            let cost = (extra_units * c.price / unit).round_dp(MONEY_DP);
            match c.dimension {
                Dimension::Energy => self.out.total_energy_cost.add(cost, c.vat),
                Dimension::Time => self.out.total_time_cost.add(cost, c.vat),
                _ => self.out.total_parking_cost.add(cost, c.vat),
            }
            self.line(Line {
                period: None,
                tariff: ti,
                element: ei,
                dimension: c.dimension,
                volume: add,
                price: c.price,
                vat: c.vat,
                cost,
            });
        }
    }

    fn price_one(&mut self, p: &ChargingPeriod, tariff: Option<usize>, end: DateTime<Utc>) {
        let i = self.periods;
        self.periods += 1;
        let duration_h = hours((end - p.start_date_time).num_milliseconds().max(0));
        let energy = p.energy.unwrap_or_default();
        let parking = p.parking_time.unwrap_or_default();
        let reservation_h = p.reservation_time;
        // decision 9: no TIME dimension = charging for the period's whole
        // length (its boundaries), unless it reports parking or reservation
        let time = p
            .time
            .unwrap_or(if p.parking_time.is_some() || reservation_h.is_some() {
                Decimal::ZERO
            } else {
                duration_h
            });
        let tz = self.tz.unwrap_or(Tz::UTC);
        let ctx = Context {
            local: p.start_date_time.with_timezone(&tz).naive_local(),
            kwh_before: self.out.total_energy,
            seconds_before: (p.start_date_time - self.start).num_seconds(),
            current: p.current,
            power: p.power,
            reservation: reservation_h.is_some(),
        };
        let tariffs = &self.tariffs;
        let active = |d: Dimension| {
            let ti = tariff?;
            let t: &Tariff = tariffs[ti].borrow();
            t.elements.iter().enumerate().find_map(|(ei, e)| {
                let c = e.price_components.iter().find(|c| c.dimension == d)?;
                let ok = match &e.restrictions {
                    Some(r) => matches(r, &ctx),
                    None => !ctx.reservation,
                };
                ok.then(|| (ti, ei, c.clone()))
            })
        };
        let flat = if self.flat_done {
            None
        } else {
            active(Dimension::Flat)
        };
        if ctx.reservation {
            let time_c = active(Dimension::Time);
            if let (Some((ti, ei, c)), Some(h)) = (time_c, reservation_h) {
                let cost = (h * c.price).round_dp(MONEY_DP);
                self.out.total_reservation_cost.add(cost, c.vat);
                self.line(Line {
                    period: Some(i),
                    tariff: ti,
                    element: ei,
                    dimension: Dimension::Time,
                    volume: h,
                    price: c.price,
                    vat: c.vat,
                    cost,
                });
            }
            if let Some((ti, ei, c)) = flat {
                self.flat_done = true;
                self.out.total_reservation_cost.add(c.price, c.vat);
                self.line(Line {
                    period: Some(i),
                    tariff: ti,
                    element: ei,
                    dimension: Dimension::Flat,
                    volume: Decimal::ONE,
                    price: c.price,
                    vat: c.vat,
                    cost: c.price,
                });
            }
            return;
        }
        let found: Vec<_> = [
            (0, Dimension::Energy, energy),
            (1, Dimension::Time, time),
            (2, Dimension::ParkingTime, parking),
        ]
        .into_iter()
        .filter(|(_, _, v)| !v.is_zero())
        .map(|(slot, d, v)| (slot, d, v, active(d)))
        .collect();
        self.out.total_energy += energy;
        self.out.total_time += time;
        self.out.total_parking_time += parking;
        for (slot, d, volume, comp) in found {
            if let Some((ti, ei, c)) = comp {
                let cost = (volume * c.price).round_dp(MONEY_DP);
                match d {
                    Dimension::Energy => self.out.total_energy_cost.add(cost, c.vat),
                    Dimension::Time => self.out.total_time_cost.add(cost, c.vat),
                    _ => self.out.total_parking_cost.add(cost, c.vat),
                }
                self.billed[slot] += volume;
                self.line(Line {
                    period: Some(i),
                    tariff: ti,
                    element: ei,
                    dimension: d,
                    volume,
                    price: c.price,
                    vat: c.vat,
                    cost,
                });
                self.last[slot] = Some((ti, ei, c));
            }
        }
        if let Some((ti, ei, c)) = flat {
            self.flat_done = true;
            self.out.total_fixed_cost.add(c.price, c.vat);
            self.line(Line {
                period: Some(i),
                tariff: ti,
                element: ei,
                dimension: Dimension::Flat,
                volume: Decimal::ONE,
                price: c.price,
                vat: c.vat,
                cost: c.price,
            });
        }
    }
}

/// `min_price` / `max_price` on an amount, excl. and incl. VAT each
/// (decision 7: tax lines scaled with the clamp).
fn clamp(total: Amount, min: Option<Limit>, max: Option<Limit>) -> Amount {
    let (mut excl, mut incl) = (total.excl, total.incl());
    if let Some(m) = min {
        excl = excl.max(m.excl);
        if let Some(i) = m.incl {
            incl = incl.max(i);
        }
    }
    if let Some(m) = max {
        excl = excl.min(m.excl);
        if let Some(i) = m.incl {
            incl = incl.min(i);
        }
    }
    incl = incl.max(excl);
    if excl == total.excl && incl == total.incl() {
        total
    } else {
        total.scaled(excl, incl)
    }
}

/// Prices a CDR:
///
/// - under `tariff` when one is given (every period), else under the CDR's
///   own `tariffs`, each period under the tariff its `tariff_id` names
///   (decision 10);
/// - restrictions in `zone`; with [`Zone::Unknown`] the zone of the CDR's
///   own location ([`CdrInput::zone`]);
/// - a Credit CDR (`credit: true`) gets the negated `total_cost` the spec
///   prescribes (decision 11).
///
/// # Errors
///
/// [`TariffError`]: [`TariffError::NoTariff`] without `tariff` and
/// `tariffs`, [`TariffError::UnknownTariffId`] for a period naming a
/// tariff the CDR does not carry.
pub fn price_cdr(
    cdr: &CdrInput,
    tariff: Option<&Tariff>,
    zone: &Zone,
) -> Result<Priced, TariffError> {
    let tariffs: Vec<&Tariff> = match tariff {
        Some(t) => vec![t],
        None if !cdr.tariffs.is_empty() => cdr.tariffs.iter().collect(),
        None => return Err(TariffError::NoTariff),
    };
    let periods = &cdr.session.charging_periods;
    let period_tariffs: Vec<Option<usize>> = if tariffs.len() == 1 {
        vec![Some(0); periods.len()]
    } else {
        periods
            .iter()
            .map(|p| match &p.tariff_id {
                // mod_cdrs ChargingPeriod.tariff_id: "If not provided, no
                // Tariff is relevant during this period."
                None => Ok(None),
                Some(id) => tariffs
                    .iter()
                    .position(|t| t.id.eq_ignore_ascii_case(id))
                    .map(Some)
                    .ok_or_else(|| TariffError::UnknownTariffId(id.clone())),
            })
            .collect::<Result<_, _>>()?
    };
    let zone = match zone {
        Zone::Unknown => &cdr.zone,
        z => z,
    };
    let priced = price_periods(&tariffs, &cdr.session, &period_tariffs, zone)?;
    Ok(if cdr.credit {
        priced.credited()
    } else {
        priced
    })
}

/// [`price_cdr`] from JSON, for command lines and HTTP: a CDR of any
/// version (2.1.1 `stop_date_time`, 2.2.1/2.3.0 `end_date_time`; read by
/// [`CdrInput::from_json`]), a tariff ([`Tariff::from_json`]) or none (the
/// CDR's own `tariffs`), the zone as [`price_cdr`] takes it; the totals
/// under the CDR field names of `version` ([`Priced::to_json`]).
///
/// # Errors
///
/// [`TariffError`]; [`TariffError::Invalid`] when the JSON is no tariff or
/// CDR.
pub fn price_cdr_json(
    cdr: &Value,
    tariff: Option<&Value>,
    zone: &Zone,
    version: Version,
) -> Result<Value, TariffError> {
    // a separate tariff is read first, the CDR after
    let tariff = tariff.map(Tariff::from_json).transpose()?;
    let cdr = CdrInput::from_json(cdr)?;
    Ok(price_cdr(&cdr, tariff.as_ref(), zone)?.to_json(version))
}

/// [`price_cdr_json`] with a tariff and the location's time zone: the
/// totals under the CDR's field names, a Credit CDR's `total_cost` negated
/// (decision 11).
///
/// # Errors
///
/// [`TariffError`].
pub fn price_json(
    tariff: &Value,
    cdr: &Value,
    time_zone: Option<&str>,
    version: Version,
) -> Result<Value, TariffError> {
    let zone = time_zone.map_or(Zone::Unknown, |z| Zone::Named(z.to_owned()));
    price_cdr_json(cdr, Some(tariff), &zone, version)
}

/// A CDR total that does not match its tariff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The CDR field (`total_cost.incl_vat`, `total_energy`, ...).
    pub field: String,
    /// What the CDR says.
    pub cdr: Decimal,
    /// What the tariff gives.
    pub computed: Decimal,
}

/// Checks a CDR's totals against its tariff (decision 8 for tolerances):
/// the mismatching fields, empty when the CDR is right.
///
/// # Errors
///
/// [`TariffError`] when the tariff or CDR cannot be priced.
pub fn check_json(
    tariff: &Value,
    cdr: &Value,
    time_zone: Option<&str>,
    version: Version,
) -> Result<Vec<Mismatch>, TariffError> {
    let computed = price_json(tariff, cdr, time_zone, version)?;
    let money = Decimal::new(5, 3);
    let mut out = Vec::new();
    let mut cmp = |field: String, cdr_v: Option<Decimal>, ours: Option<Decimal>, tol: Decimal| {
        if let (Some(c), Some(o)) = (cdr_v, ours) {
            if (c - o).abs() > tol {
                out.push(Mismatch {
                    field,
                    cdr: c,
                    computed: o,
                });
            }
        }
    };
    for (field, tol) in [
        ("total_energy", Decimal::new(1, 3)),
        ("total_time", Decimal::ONE / Decimal::from(3600)),
        ("total_parking_time", Decimal::ONE / Decimal::from(3600)),
    ] {
        cmp(
            field.into(),
            cdr.get(field).and_then(to_decimal),
            computed.get(field).and_then(to_decimal),
            tol,
        );
    }
    for field in [
        "total_cost",
        "total_fixed_cost",
        "total_energy_cost",
        "total_time_cost",
        "total_parking_cost",
        "total_reservation_cost",
    ] {
        let (Some(c), Some(o)) = (cdr.get(field), computed.get(field)) else {
            continue;
        };
        if version == Version::V211 {
            // a plain number, excl. VAT
            cmp(field.into(), to_decimal(c), to_decimal(o), money);
            continue;
        }
        let parts: &[&str] = match version {
            Version::V211 | Version::V221 => &["excl_vat", "incl_vat"],
            Version::V230 => &["before_taxes"],
        };
        for part in parts {
            cmp(
                format!("{field}.{part}"),
                c.get(*part).and_then(to_decimal),
                o.get(*part).and_then(to_decimal),
                money,
            );
        }
        if version == Version::V230 {
            let sum = |v: &Value| -> Option<Decimal> {
                v.get("taxes")?
                    .as_array()?
                    .iter()
                    .map(|t| t.get("amount").and_then(to_decimal))
                    .sum()
            };
            cmp(format!("{field}.taxes"), sum(c), sum(o), money);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn check_a_cdr_against_its_tariff() {
        let tariff = json!({"id": "T", "currency": "EUR", "elements": [{"price_components": [
            {"type": "ENERGY", "price": 0.25, "vat": 20, "step_size": 1}, {"type": "FLAT", "price": 1, "vat": 20, "step_size": 1}]}]});
        let mut cdr = json!({"start_date_time": "2026-03-01T10:00:00Z", "end_date_time": "2026-03-01T11:00:00Z",
            "charging_periods": [{"start_date_time": "2026-03-01T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 10.001}]}],
            "total_energy": 10.001, "total_cost": {"excl_vat": 3.50, "incl_vat": 4.20}});
        // 10.001 × 0.25 + 1 = 3.50025 excl., 4.2003 incl.: within half a cent.
        assert_eq!(
            check_json(&tariff, &cdr, Some("UTC"), Version::V221).unwrap(),
            vec![]
        );
        cdr["total_cost"]["incl_vat"] = json!(4.21);
        cdr["total_energy"] = json!(11);
        let m = check_json(&tariff, &cdr, Some("UTC"), Version::V221).unwrap();
        let fields: Vec<&str> = m.iter().map(|m| m.field.as_str()).collect();
        assert_eq!(fields, vec!["total_energy", "total_cost.incl_vat"]);
        assert_eq!(m[1].computed, d("4.2003"));
    }

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn session(start: &str, end: &str, periods: Value) -> Session {
        Session::from_json(
            &json!({"start_date_time": start, "end_date_time": end, "charging_periods": periods}),
        )
        .unwrap()
    }

    fn tariff(elements: Value) -> Tariff {
        Tariff::from_json(&json!({"id": "T", "currency": "EUR", "elements": elements})).unwrap()
    }

    #[test]
    fn energy_time_flat_and_vat() {
        let t = tariff(json!([{"price_components": [
            {"type": "FLAT", "price": 0.50, "vat": 10.0, "step_size": 1},
            {"type": "ENERGY", "price": 0.25, "vat": 10.0, "step_size": 1},
            {"type": "TIME", "price": 2.00, "vat": 10.0, "step_size": 1}]}]));
        let s = session(
            "2026-03-02T10:00:00Z",
            "2026-03-02T11:30:00Z",
            json!([
            {"start_date_time": "2026-03-02T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 10}, {"type": "TIME", "volume": 1.5}]}]),
        );
        let p = price(&t, &s, Some("Europe/Amsterdam")).unwrap();
        assert_eq!(p.total_fixed_cost.excl, d("0.5"));
        assert_eq!(p.total_energy_cost.excl, d("2.5"));
        assert_eq!(p.total_time_cost.excl, d("3"));
        assert_eq!(p.total_cost.excl, d("6"));
        assert_eq!(p.total_cost.incl(), d("6.6"));
        let j = p.to_json(Version::V230);
        assert_eq!(j["total_cost"]["before_taxes"], "6");
        assert_eq!(j["total_cost"]["taxes"][0]["amount"], "0.6");
        assert_eq!(j["total_cost"]["taxes"][0]["percentage"], "10");
    }

    #[test]
    fn cdr_prices_carry_at_most_four_decimals() {
        // 2.791 kWh at 0.3125 + 20 % VAT: 0.8721875 excl, 1.046625 incl, exactly
        let t = tariff(json!([{"price_components": [
            {"type": "ENERGY", "price": 0.3125, "vat": 20.0, "step_size": 1}]}]));
        let s = session(
            "2026-03-02T10:00:00Z",
            "2026-03-02T11:00:00Z",
            json!([{"start_date_time": "2026-03-02T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 2.791}]}]),
        );
        let p = price(&t, &s, Some("UTC")).unwrap();
        assert_eq!(p.total_cost.excl, d("0.8721875"));
        assert_eq!(p.total_cost.incl(), d("1.046625"));
        let j = p.to_json(Version::V221);
        assert_eq!(j["total_cost"]["excl_vat"], "0.8722");
        assert_eq!(j["total_cost"]["incl_vat"], "1.0466");
        let j = p.to_json(Version::V230);
        assert_eq!(j["total_cost"]["before_taxes"], "0.8722");
        assert_eq!(j["total_cost"]["taxes"][0]["amount"], "0.1744");
        // a midpoint rounds away from zero
        let t = tariff(
            json!([{"price_components": [{"type": "FLAT", "price": 0.00005, "step_size": 1}]}]),
        );
        let p = price(&t, &s, Some("UTC")).unwrap();
        assert_eq!(p.to_json(Version::V221)["total_cost"]["excl_vat"], "0.0001");
    }

    #[test]
    fn first_matching_element_per_dimension_and_time_of_day_across_midnight() {
        // night 22:00-06:00 cheaper energy, day default after it
        let t = tariff(json!([
            {"price_components": [{"type": "ENERGY", "price": 0.20, "step_size": 1}], "restrictions": {"start_time": "22:00", "end_time": "06:00"}},
            {"price_components": [{"type": "ENERGY", "price": 0.30, "step_size": 1}]}]));
        // Amsterdam is UTC+1 in March: 21:30Z = 22:30 local (night), 05:30Z = 06:30 local (day)
        let s = session(
            "2026-03-02T21:30:00Z",
            "2026-03-03T06:00:00Z",
            json!([
            {"start_date_time": "2026-03-02T21:30:00Z", "dimensions": [{"type": "ENERGY", "volume": 10}]},
            {"start_date_time": "2026-03-03T05:30:00Z", "dimensions": [{"type": "ENERGY", "volume": 5}]}]),
        );
        let p = price(&t, &s, Some("Europe/Amsterdam")).unwrap();
        assert_eq!(p.total_energy_cost.excl, d("3.5"), "{:?}", p.lines);
        assert_eq!(p.lines[0].element, 0);
        assert_eq!(p.lines[1].element, 1);
        // no zone for a time-restricted tariff: refused, not guessed
        assert_eq!(price(&t, &s, None), Err(TariffError::TimeZoneMissing));
        assert_eq!(
            price(&t, &s, Some("Mars/Base")).unwrap_err(),
            TariffError::UnknownTimeZone("Mars/Base".into())
        );
    }

    #[test]
    fn daylight_saving_change() {
        // 2026-03-29 02:00 local Amsterdam jumps to 03:00; 01:30Z = 03:30 CEST (after the change)
        let t = tariff(json!([
            {"price_components": [{"type": "TIME", "price": 1, "step_size": 1}], "restrictions": {"start_time": "03:00", "end_time": "04:00"}},
            {"price_components": [{"type": "TIME", "price": 2, "step_size": 1}]}]));
        let s = session(
            "2026-03-29T01:30:00Z",
            "2026-03-29T02:00:00Z",
            json!([
            {"start_date_time": "2026-03-29T01:30:00Z", "dimensions": [{"type": "TIME", "volume": 0.5}]}]),
        );
        assert_eq!(
            price(&t, &s, Some("Europe/Amsterdam"))
                .unwrap()
                .total_time_cost
                .excl,
            d("0.5")
        );
        // the same instant a day earlier is 02:30 CET: the default element
        let s = session(
            "2026-03-28T01:30:00Z",
            "2026-03-28T02:00:00Z",
            json!([
            {"start_date_time": "2026-03-28T01:30:00Z", "dimensions": [{"type": "TIME", "volume": 0.5}]}]),
        );
        assert_eq!(
            price(&t, &s, Some("Europe/Amsterdam"))
                .unwrap()
                .total_time_cost
                .excl,
            d("1")
        );
    }

    #[test]
    fn kwh_duration_power_day_and_date_restrictions() {
        let t = tariff(json!([
            {"price_components": [{"type": "ENERGY", "price": 0.10, "step_size": 1}], "restrictions": {"min_kwh": 20}},
            {"price_components": [{"type": "ENERGY", "price": 0.40, "step_size": 1}], "restrictions": {"min_power": 50}},
            {"price_components": [{"type": "ENERGY", "price": 0.05, "step_size": 1}], "restrictions": {"day_of_week": ["SUNDAY"]}},
            {"price_components": [{"type": "ENERGY", "price": 0.01, "step_size": 1}], "restrictions": {"start_date": "2026-12-25", "end_date": "2026-12-26"}},
            {"price_components": [{"type": "PARKING_TIME", "price": 6, "step_size": 1}], "restrictions": {"min_duration": 7200}},
            {"price_components": [{"type": "ENERGY", "price": 0.30, "step_size": 1}]}]));
        // Monday: 20 kWh at 11 kW (0.30), then 5 kWh (past 20 kWh: 0.10), then 1 h parking before the 2 h mark (free), 1 h after (6/h)
        let s = session(
            "2026-03-02T10:00:00Z",
            "2026-03-02T13:00:00Z",
            json!([
            {"start_date_time": "2026-03-02T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 20}, {"type": "MAX_POWER", "volume": 11}]},
            {"start_date_time": "2026-03-02T10:30:00Z", "dimensions": [{"type": "ENERGY", "volume": 5}, {"type": "MAX_POWER", "volume": 11}]},
            {"start_date_time": "2026-03-02T11:00:00Z", "dimensions": [{"type": "PARKING_TIME", "volume": 1}]},
            {"start_date_time": "2026-03-02T12:00:00Z", "dimensions": [{"type": "PARKING_TIME", "volume": 1}]}]),
        );
        let p = price(&t, &s, Some("UTC")).unwrap();
        assert_eq!(p.total_energy_cost.excl, d("6.5"));
        assert_eq!(
            p.total_parking_cost.excl,
            d("6"),
            "min_duration counts the whole session before the period"
        );
        assert_eq!(p.total_parking_time, d("2"));
        // high power: 0.40
        let s2 = session(
            "2026-03-02T10:00:00Z",
            "2026-03-02T10:30:00Z",
            json!([
            {"start_date_time": "2026-03-02T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 10}, {"type": "MAX_POWER", "volume": 150}]}]),
        );
        assert_eq!(
            price(&t, &s2, Some("UTC")).unwrap().total_energy_cost.excl,
            d("4")
        );
        // Sunday, and Christmas day
        let sunday = session(
            "2026-03-01T10:00:00Z",
            "2026-03-01T10:30:00Z",
            json!([{"start_date_time": "2026-03-01T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 10}]}]),
        );
        assert_eq!(
            price(&t, &sunday, Some("UTC"))
                .unwrap()
                .total_energy_cost
                .excl,
            d("0.5")
        );
        let xmas = session(
            "2026-12-25T10:00:00Z",
            "2026-12-25T10:30:00Z",
            json!([{"start_date_time": "2026-12-25T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 10}]}]),
        );
        assert_eq!(
            price(&t, &xmas, Some("UTC"))
                .unwrap()
                .total_energy_cost
                .excl,
            d("0.1")
        );
    }

    #[test]
    fn step_size_once_per_session_with_the_last_component() {
        // TIME in 5-minute blocks, 6 minutes used: 10 minutes billed
        let t =
            tariff(json!([{"price_components": [{"type": "TIME", "price": 6, "step_size": 300}]}]));
        let s = session(
            "2026-03-02T10:00:00Z",
            "2026-03-02T10:06:00Z",
            json!([{"start_date_time": "2026-03-02T10:00:00Z", "dimensions": [{"type": "TIME", "volume": 0.1}]}]),
        );
        let p = price(&t, &s, Some("UTC")).unwrap();
        assert_eq!(p.total_time_cost.excl, d("1"), "{:?}", p.lines);
        // ENERGY in 1 kWh blocks over two elements: rounded once, at the last element's price
        let t = tariff(json!([
            {"price_components": [{"type": "ENERGY", "price": 0.20, "step_size": 500}], "restrictions": {"max_kwh": 10}},
            {"price_components": [{"type": "ENERGY", "price": 0.30, "step_size": 1000}]}]));
        let s = session(
            "2026-03-02T10:00:00Z",
            "2026-03-02T11:00:00Z",
            json!([
            {"start_date_time": "2026-03-02T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 10.2}]},
            {"start_date_time": "2026-03-02T10:30:00Z", "dimensions": [{"type": "ENERGY", "volume": 2.5}]}]),
        );
        let p = price(&t, &s, Some("UTC")).unwrap();
        // 10.2 × 0.2 + 2.5 × 0.3 + (13 − 12.7) × 0.3
        assert_eq!(p.total_energy_cost.excl, d("2.04") + d("0.75") + d("0.09"));
        // TIME then PARKING_TIME: only the parking total is rounded
        let t = tariff(
            json!([{"price_components": [{"type": "TIME", "price": 1, "step_size": 3600}, {"type": "PARKING_TIME", "price": 2, "step_size": 3600}]}]),
        );
        let s = session(
            "2026-03-02T10:00:00Z",
            "2026-03-02T10:40:00Z",
            json!([
            {"start_date_time": "2026-03-02T10:00:00Z", "dimensions": [{"type": "TIME", "volume": 0.5}]},
            {"start_date_time": "2026-03-02T10:30:00Z", "dimensions": [{"type": "PARKING_TIME", "volume": 0.1}]}]),
        );
        let p = price(&t, &s, Some("UTC")).unwrap();
        assert_eq!(p.total_time_cost.excl, d("0.5"));
        assert_eq!(
            p.total_parking_cost.excl,
            d("2"),
            "0.1 h rounded up to 1 h of parking"
        );
        // step_size 0: no rounding
        let t =
            tariff(json!([{"price_components": [{"type": "TIME", "price": 6, "step_size": 0}]}]));
        let s = session(
            "2026-03-02T10:00:00Z",
            "2026-03-02T10:06:00Z",
            json!([{"start_date_time": "2026-03-02T10:00:00Z", "dimensions": [{"type": "TIME", "volume": 0.1}]}]),
        );
        assert_eq!(
            price(&t, &s, Some("UTC")).unwrap().total_time_cost.excl,
            d("0.6")
        );
    }

    /// The worked step_size examples of 2.2.1 `mod_cdrs.asciidoc` ("step_size").
    #[test]
    fn spec_step_size_worked_examples() {
        let utc = Some("UTC");
        // "Charging cost 0.20 euro/Wh before 17:00 and 0.27 euro/Wh after 17:00
        // both have a step_size of 500 Wh. 4.3 kWh before and 1.1 kWh after:
        // 5.4 kWh, rounded up to 5.5 kWh total" (the spec's "euro/Wh" means
        // per kWh, the unit of ENERGY prices).
        let t = tariff(json!([
            {"price_components": [{"type": "ENERGY", "price": 0.20, "step_size": 500}], "restrictions": {"end_time": "17:00"}},
            {"price_components": [{"type": "ENERGY", "price": 0.27, "step_size": 500}], "restrictions": {"start_time": "17:00"}}]));
        let s = session(
            "2026-03-02T16:00:00Z",
            "2026-03-02T18:00:00Z",
            json!([
            {"start_date_time": "2026-03-02T16:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 4.3}]},
            {"start_date_time": "2026-03-02T17:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 1.1}]}]),
        );
        let p = price(&t, &s, utc).unwrap();
        assert_eq!(p.total_energy, d("5.4"));
        // 4.3 × 0.20 + (1.1 + 0.1) × 0.27: the rounding goes to the last element.
        assert_eq!(
            p.total_energy_cost.excl,
            d("0.86") + d("0.324"),
            "{:?}",
            p.lines
        );

        // "5 euro/hour before 17:00 and 7 euro/hour after, step_size 10 minutes.
        // 6 minutes before and 22 after: 28 minutes, rounded to 30, so 24
        // minutes after 17:00 will be billed."
        let t = tariff(json!([
            {"price_components": [{"type": "TIME", "price": 5, "step_size": 600}], "restrictions": {"end_time": "17:00"}},
            {"price_components": [{"type": "TIME", "price": 7, "step_size": 600}], "restrictions": {"start_time": "17:00"}}]));
        let s = session(
            "2026-03-02T16:54:00Z",
            "2026-03-02T17:22:00Z",
            json!([
            {"start_date_time": "2026-03-02T16:54:00Z", "dimensions": [{"type": "TIME", "volume": 0.1}]},
            {"start_date_time": "2026-03-02T17:00:00Z", "dimensions": [{"type": "TIME", "volume": "0.3666666666666666666666666667"}]}]),
        );
        let p = price(&t, &s, utc).unwrap();
        // 6 min × 5 €/h + 24 min × 7 €/h = 0.5 + 2.8
        assert_eq!(
            p.total_time_cost.excl.round_dp(6),
            d("3.3"),
            "{:?}",
            p.lines
        );

        // "step_size for both charging (TIME) and parking is 5 minutes. After
        // 21 minutes of charging, the EV is full but remains connected for 7
        // more minutes: charging on 21 minutes (not 25), parking on 10."
        let t = tariff(json!([{"price_components": [
            {"type": "TIME", "price": 6, "step_size": 300},
            {"type": "PARKING_TIME", "price": 6, "step_size": 300}]}]));
        let s = session(
            "2026-03-02T10:00:00Z",
            "2026-03-02T10:28:00Z",
            json!([
            {"start_date_time": "2026-03-02T10:00:00Z", "dimensions": [{"type": "TIME", "volume": 0.35}]},
            {"start_date_time": "2026-03-02T10:21:00Z", "dimensions": [{"type": "PARKING_TIME", "volume": "0.1166666666666666666666666667"}]}]),
        );
        let p = price(&t, &s, utc).unwrap();
        assert_eq!(p.total_time_cost.excl, d("2.1"), "21 min at 6 €/h");
        assert_eq!(
            p.total_parking_cost.excl.round_dp(6),
            d("1"),
            "10 min at 6 €/h"
        );

        // "Charging 1.00 euro/hour, parking 2.00 euro/hour, both step_size 10
        // minutes. 21 minutes charging, 16 more connected: parking rounded up
        // to 20 minutes, 41 in total; charging not rounded."
        let t = tariff(json!([{"price_components": [
            {"type": "TIME", "price": 1, "step_size": 600},
            {"type": "PARKING_TIME", "price": 2, "step_size": 600}]}]));
        let s = session(
            "2026-03-02T10:00:00Z",
            "2026-03-02T10:37:00Z",
            json!([
            {"start_date_time": "2026-03-02T10:00:00Z", "dimensions": [{"type": "TIME", "volume": 0.35}]},
            {"start_date_time": "2026-03-02T10:21:00Z", "dimensions": [{"type": "PARKING_TIME", "volume": "0.2666666666666666666666666667"}]}]),
        );
        let p = price(&t, &s, utc).unwrap();
        assert_eq!(p.total_time_cost.excl, d("0.35"));
        assert_eq!(
            p.total_parking_cost.excl.round_dp(6),
            d("0.666667"),
            "20 min at 2 €/h"
        );
    }

    #[test]
    fn flat_fee_once_and_min_max() {
        let t = Tariff::from_json(&json!({"id": "T", "currency": "EUR", "min_price": {"excl_vat": 5, "incl_vat": 6},
            "max_price": {"excl_vat": 8}, "elements": [
            {"price_components": [{"type": "FLAT", "price": 1, "step_size": 1}], "restrictions": {"start_time": "10:00", "end_time": "11:00"}},
            {"price_components": [{"type": "FLAT", "price": 3, "step_size": 1}, {"type": "ENERGY", "price": 0.5, "vat": 20, "step_size": 1}]}]}))
        .unwrap();
        let s = session(
            "2026-03-02T09:00:00Z",
            "2026-03-02T12:00:00Z",
            json!([
            {"start_date_time": "2026-03-02T09:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 1}]},
            {"start_date_time": "2026-03-02T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 1}]}]),
        );
        let p = price(&t, &s, Some("UTC")).unwrap();
        // the first FLAT that becomes active (element 1, period 0) is the only one
        assert_eq!(p.total_fixed_cost.excl, d("3"));
        // 3 + 1 = 4 < min 5: clamped; incl 4 + 0.2 = 4.2 < 6: clamped
        assert_eq!(p.total_cost.excl, d("5"));
        assert_eq!(p.total_cost.incl(), d("6"));
        assert_eq!(
            p.total_energy_cost.excl,
            d("1"),
            "dimension totals keep their values"
        );
        let big = session(
            "2026-03-02T09:00:00Z",
            "2026-03-02T12:00:00Z",
            json!([
            {"start_date_time": "2026-03-02T09:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 100}]}]),
        );
        assert_eq!(
            price(&t, &big, Some("UTC")).unwrap().total_cost.excl,
            d("8")
        );
    }

    #[test]
    fn bad_input_is_refused() {
        let t =
            tariff(json!([{"price_components": [{"type": "ENERGY", "price": 1, "step_size": 1}]}]));
        let s = session("2026-03-02T10:00:00Z", "2026-03-02T09:00:00Z", json!([]));
        assert!(matches!(price(&t, &s, None), Err(TariffError::Periods(_))));
        let s = session(
            "2026-03-02T10:00:00Z",
            "2026-03-02T11:00:00Z",
            json!([{"start_date_time": "2026-03-02T12:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 1}]}]),
        );
        assert!(matches!(price(&t, &s, None), Err(TariffError::Periods(_))));
        // a period without dimensions is no OCPI ChargingPeriod
        let e = CdrInput::from_json(
            &json!({"start_date_time": "2026-03-02T10:00:00Z", "end_date_time": "2026-03-02T11:00:00Z",
            "charging_periods": [{"start_date_time": "2026-03-02T10:00:00Z", "dimensions": []}]}),
        );
        assert!(
            matches!(e, Err(TariffError::Invalid { what: "cdr", .. })),
            "{e:?}"
        );
        // values the engine cannot use: refused, naming them
        for (restrictions, step, field) in [
            (json!({"start_time": "25:00"}), 1, "start_time"),
            (json!({"end_date": "2026-13-01"}), 1, "end_date"),
            (json!({}), -5, "step_size"),
        ] {
            let e = Tariff::from_json(&json!({"elements": [{"price_components": [
                {"type": "ENERGY", "price": 1, "step_size": step}], "restrictions": restrictions}]}))
            .unwrap_err();
            assert!(
                matches!(&e, TariffError::Invalid { what: "tariff", reason } if reason.contains(field)),
                "{e:?}"
            );
        }
        let e = price_json(
            &json!({"elements": [{"price_components": [{"type": "ENERGY", "price": "x"}]}]}),
            &json!({}),
            None,
            Version::V221,
        );
        assert!(
            matches!(e, Err(TariffError::Invalid { what: "tariff", .. })),
            "{e:?}"
        );
        // times without Z are read as UTC (real peers send them)
        let s = Session::from_json(&json!({"start_date_time": "2026-03-02T10:00:00", "end_date_time": "2026-03-02T11:00:00Z", "charging_periods": []})).unwrap();
        assert_eq!(s.start_date_time.to_rfc3339(), "2026-03-02T10:00:00+00:00");
        // numbers are read exactly
        assert_eq!(to_decimal(&json!(0.1)), Some(d("0.1")));
        assert_eq!(to_decimal(&json!("397853.1")), Some(d("397853.1")));
    }

    /// Issue 14 A.1, decision 12: a 2.1.1 CDR (`stop_date_time`, a plain
    /// `total_cost`, no VAT) is priced like a 2.2.1 one and printed in the
    /// 2.1.1 shape. Before, `stop_date_time` was not read (no
    /// `end_date_time`: invalid CDR).
    #[test]
    fn ocpi_211_cdr_is_priced() {
        let tariff = json!({"id": "11", "currency": "EUR", "elements": [{"price_components": [
            {"type": "ENERGY", "price": 0.25, "step_size": 1},
            {"type": "TIME", "price": 2.00, "step_size": 60}]}],
            "last_updated": "2026-01-01T00:00:00Z"});
        let mut cdr = json!({"id": "C1", "start_date_time": "2026-03-02T10:00:00Z",
            "stop_date_time": "2026-03-02T11:30:00Z", "auth_id": "A", "auth_method": "WHITELIST",
            "currency": "EUR", "tariffs": [tariff.clone()],
            "location": {"id": "L1", "country": "NLD", "time_zone": "Europe/Amsterdam"},
            "charging_periods": [
                {"start_date_time": "2026-03-02T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 10}, {"type": "TIME", "volume": 1}]},
                {"start_date_time": "2026-03-02T11:00:00Z", "dimensions": [{"type": "PARKING_TIME", "volume": 0.5}]}],
            "total_cost": 4.5, "total_energy": 10, "total_time": 1, "total_parking_time": 0.5,
            "last_updated": "2026-03-02T11:31:00Z"});
        // 10 kWh × 0.25 + 1 h × 2.00 = 4.50; parking has no component: free
        let out = price_cdr_json(&cdr, None, &Zone::Unknown, Version::V211).unwrap();
        assert_eq!(out["total_cost"], "4.5");
        assert_eq!(out["total_energy"], "10");
        assert_eq!(out["total_time"], "1");
        assert_eq!(out["total_parking_time"], "0.5");
        assert!(
            out.get("total_energy_cost").is_none(),
            "2.1.1 has no cost per dimension"
        );
        // the same CDR against a separate tariff, in 2.2.1 shape
        let v221 = price_json(&tariff, &cdr, None, Version::V221).unwrap();
        assert_eq!(
            v221["total_cost"],
            json!({"excl_vat": "4.5", "incl_vat": "4.5"})
        );
        assert_eq!(v221["total_energy_cost"]["excl_vat"], "2.5");
        // checking a 2.1.1 CDR compares the plain total_cost
        assert_eq!(
            check_json(&tariff, &cdr, None, Version::V211).unwrap(),
            vec![]
        );
        cdr["total_cost"] = json!(4.6);
        let m = check_json(&tariff, &cdr, None, Version::V211).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].field.as_str(), m[0].computed),
            ("total_cost", d("4.5"))
        );
    }

    /// Issue 14 A.2, decision 10: a CDR's own `tariffs`, each period under
    /// the tariff its `tariff_id` names; none named: free; one tariff: all.
    #[test]
    fn cdr_tariffs_by_period_tariff_id() {
        let day = json!({"id": "DAY", "currency": "EUR", "elements": [{"price_components": [
            {"type": "ENERGY", "price": 0.30, "vat": 20, "step_size": 1}]}]});
        let night = json!({"id": "NIGHT", "currency": "EUR",
            "min_price": {"excl_vat": 2.5, "incl_vat": 3},
            "elements": [{"price_components": [
                {"type": "ENERGY", "price": 0.20, "vat": 20, "step_size": 1},
                {"type": "FLAT", "price": 1, "vat": 20, "step_size": 1}]}]});
        let mut cdr = json!({"start_date_time": "2026-03-02T16:00:00Z", "end_date_time": "2026-03-02T20:00:00Z",
            "tariffs": [day, night],
            "charging_periods": [
                {"start_date_time": "2026-03-02T16:00:00Z", "tariff_id": "DAY", "dimensions": [{"type": "ENERGY", "volume": 10}]},
                {"start_date_time": "2026-03-02T18:00:00Z", "tariff_id": "night", "dimensions": [{"type": "ENERGY", "volume": 5}]},
                {"start_date_time": "2026-03-02T19:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 2}]}]});
        let out = price_cdr_json(&cdr, None, &Zone::Unknown, Version::V221).unwrap();
        // DAY: 10 × 0.30 = 3.00 (incl. 3.60)
        // NIGHT: 5 × 0.20 + FLAT 1.00 = 2.00 (incl. 2.40), below its minimum: 2.50 / 3.00
        // third period: no tariff_id, no tariff relevant: free
        assert_eq!(out["total_energy"], "17");
        assert_eq!(
            out["total_energy_cost"],
            json!({"excl_vat": "4", "incl_vat": "4.8"})
        );
        assert_eq!(
            out["total_fixed_cost"],
            json!({"excl_vat": "1", "incl_vat": "1.2"})
        );
        assert_eq!(
            out["total_cost"],
            json!({"excl_vat": "5.5", "incl_vat": "6.6"})
        );
        assert_eq!(out["breakdown"][1]["tariff"], 1);
        // a separate tariff overrides the CDR's: every period under it
        let flat = json!({"id": "X", "currency": "EUR", "elements": [{"price_components": [
            {"type": "ENERGY", "price": 0.10, "step_size": 1}]}]});
        let out = price_cdr_json(&cdr, Some(&flat), &Zone::Unknown, Version::V221).unwrap();
        assert_eq!(out["total_cost"]["excl_vat"], "1.7");
        // a tariff_id the CDR does not carry
        cdr["charging_periods"][2]["tariff_id"] = json!("WEEKEND");
        assert_eq!(
            price_cdr_json(&cdr, None, &Zone::Unknown, Version::V221),
            Err(TariffError::UnknownTariffId("WEEKEND".into()))
        );
        // one tariff: every period under it, tariff_id or not
        cdr["tariffs"] = json!([cdr["tariffs"][0].clone()]);
        let out = price_cdr_json(&cdr, None, &Zone::Unknown, Version::V221).unwrap();
        assert_eq!(out["total_cost"]["excl_vat"], "5.1", "17 kWh × 0.30");
        // no tariff at all
        cdr["tariffs"] = json!([]);
        assert_eq!(
            price_cdr_json(&cdr, None, &Zone::Unknown, Version::V221),
            Err(TariffError::NoTariff)
        );
    }

    /// Issue 14 A.3, decision 11 (2.2.1 `mod_cdrs.asciidoc` "Credit CDRs":
    /// "Only the values in the `total_cost` field SHALL contain the negative
    /// amounts of the original CDR").
    #[test]
    fn credit_cdr_negates_total_cost_only() {
        let tariff = json!({"id": "T", "currency": "EUR", "elements": [{"price_components": [
            {"type": "ENERGY", "price": 0.25, "vat": 20, "step_size": 1},
            {"type": "FLAT", "price": 1, "vat": 20, "step_size": 1}]}]});
        let mut cdr = json!({"id": "C1-C", "credit": true, "credit_reference_id": "C1",
            "start_date_time": "2026-03-01T10:00:00Z", "end_date_time": "2026-03-01T11:00:00Z",
            "charging_periods": [{"start_date_time": "2026-03-01T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 10}]}],
            "total_cost": {"excl_vat": -3.5, "incl_vat": -4.2}, "total_energy": 10,
            "total_energy_cost": {"excl_vat": 2.5, "incl_vat": 3}});
        // original: 10 × 0.25 + 1 = 3.50, VAT 20 %: 4.20
        let out = price_json(&tariff, &cdr, None, Version::V221).unwrap();
        assert_eq!(
            out["total_cost"],
            json!({"excl_vat": "-3.5", "incl_vat": "-4.2"})
        );
        assert_eq!(
            out["total_energy_cost"],
            json!({"excl_vat": "2.5", "incl_vat": "3"})
        );
        assert_eq!(
            out["total_fixed_cost"],
            json!({"excl_vat": "1", "incl_vat": "1.2"})
        );
        assert_eq!(out["total_energy"], "10");
        let v230 = price_json(&tariff, &cdr, None, Version::V230).unwrap();
        assert_eq!(v230["total_cost"]["before_taxes"], "-3.5");
        assert_eq!(v230["total_cost"]["taxes"][0]["amount"], "-0.7");
        // the credit CDR's own totals check out
        assert_eq!(
            check_json(&tariff, &cdr, None, Version::V221).unwrap(),
            vec![]
        );
        // the same CDR not marked credit: positive totals
        cdr["credit"] = json!(false);
        let out = price_json(&tariff, &cdr, None, Version::V221).unwrap();
        assert_eq!(
            out["total_cost"],
            json!({"excl_vat": "3.5", "incl_vat": "4.2"})
        );
    }

    /// Issue 14 A.4, decision 4: no `time_zone`: the country's one zone
    /// from the tz database's `zone.tab`; several or none: an error naming
    /// `time_zone`.
    #[test]
    fn zone_from_the_locations_country() {
        // night energy 22:00–06:00 local at 0.20, else 0.30
        let tariff = json!({"id": "T", "currency": "EUR", "elements": [
            {"price_components": [{"type": "ENERGY", "price": 0.20, "step_size": 1}], "restrictions": {"start_time": "22:00", "end_time": "06:00"}},
            {"price_components": [{"type": "ENERGY", "price": 0.30, "step_size": 1}]}]});
        // 21:30Z in March is 22:30 in Amsterdam (night), 21:30 in UTC (day)
        let mut cdr = json!({"start_date_time": "2026-03-02T21:30:00Z", "end_date_time": "2026-03-02T22:30:00Z",
            "charging_periods": [{"start_date_time": "2026-03-02T21:30:00Z", "dimensions": [{"type": "ENERGY", "volume": 10}]}]});
        let nl = Zone::of_location(&json!({"id": "L", "country": "NLD"}));
        assert_eq!(nl, Zone::Country("NLD".into()));
        let out = price_cdr_json(&cdr, Some(&tariff), &nl, Version::V221).unwrap();
        assert_eq!(out["total_cost"]["excl_vat"], "2", "10 kWh × 0.20 (night)");
        // a time_zone wins over the country
        let utc = Zone::of_location(&json!({"country": "NLD", "time_zone": "UTC"}));
        let out = price_cdr_json(&cdr, Some(&tariff), &utc, Version::V221).unwrap();
        assert_eq!(out["total_cost"]["excl_vat"], "3", "10 kWh × 0.30 (day)");
        // the CDR's own cdr_location when no location is given
        cdr["cdr_location"] = json!({"id": "L", "country": "NLD"});
        let out = price_cdr_json(&cdr, Some(&tariff), &Zone::Unknown, Version::V221).unwrap();
        assert_eq!(out["total_cost"]["excl_vat"], "2");
        // Germany has two zones (Berlin, Büsingen): refused, naming time_zone
        let de = Zone::of_location(&json!({"country": "DEU"}));
        let e = price_cdr_json(&cdr, Some(&tariff), &de, Version::V221).unwrap_err();
        assert_eq!(
            e,
            TariffError::CountryZones {
                country: "DEU".into(),
                zones: 2
            }
        );
        assert!(e.to_string().contains("time_zone"), "{e}");
        // nothing: refused as before
        cdr.as_object_mut().unwrap().remove("cdr_location");
        assert_eq!(
            price_cdr_json(&cdr, Some(&tariff), &Zone::Unknown, Version::V221),
            Err(TariffError::TimeZoneMissing)
        );
        // a tariff without time restrictions needs no zone, even in Germany
        let plain = json!({"id": "P", "currency": "EUR", "elements": [{"price_components": [
            {"type": "ENERGY", "price": 0.30, "step_size": 1}]}]});
        let out = price_cdr_json(&cdr, Some(&plain), &de, Version::V221).unwrap();
        assert_eq!(out["total_cost"]["excl_vat"], "3");
    }

    /// Issue 14 A.5, decision 9 (2.2.1 `mod_cdrs.asciidoc`, ChargingPeriod
    /// class and CdrDimensionType): without `TIME`, a period's charging
    /// time comes from its boundaries unless it reports parking; a `TIME`
    /// given is used as it is.
    #[test]
    fn time_without_a_time_dimension() {
        let t = tariff(json!([{"price_components": [
            {"type": "TIME", "price": 2, "step_size": 1},
            {"type": "PARKING_TIME", "price": 4, "step_size": 1}]}]));
        // 10:00–11:00 energy only: 1 h charging (boundaries);
        // 11:00–11:30 parking: no charging time
        let s = session(
            "2026-03-02T10:00:00Z",
            "2026-03-02T11:30:00Z",
            json!([
            {"start_date_time": "2026-03-02T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 5}]},
            {"start_date_time": "2026-03-02T11:00:00Z", "dimensions": [{"type": "PARKING_TIME", "volume": 0.5}]}]),
        );
        let p = price(&t, &s, None).unwrap();
        assert_eq!(p.total_time, d("1"));
        assert_eq!(p.total_time_cost.excl, d("2"), "1 h × 2");
        assert_eq!(p.total_parking_cost.excl, d("2"), "0.5 h × 4");
        assert_eq!(p.total_cost.excl, d("4"));
        // the same periods with TIME given (0.75 h, less than the 1 h period): used as given
        let s = session(
            "2026-03-02T10:00:00Z",
            "2026-03-02T11:30:00Z",
            json!([
            {"start_date_time": "2026-03-02T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 5}, {"type": "TIME", "volume": 0.75}]},
            {"start_date_time": "2026-03-02T11:00:00Z", "dimensions": [{"type": "PARKING_TIME", "volume": 0.5}]}]),
        );
        let p = price(&t, &s, None).unwrap();
        assert_eq!(p.total_time, d("0.75"));
        assert_eq!(p.total_time_cost.excl, d("1.5"), "0.75 h × 2");
        assert_eq!(p.total_cost.excl, d("3.5"));
        // the last period runs to the session's end: 10:00–10:45 without TIME is 0.75 h
        let s = session(
            "2026-03-02T10:00:00Z",
            "2026-03-02T10:45:00Z",
            json!([{"start_date_time": "2026-03-02T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 5}]}]),
        );
        assert_eq!(price(&t, &s, None).unwrap().total_time_cost.excl, d("1.5"));
    }

    proptest! {
        /// More energy or more time never costs less; tax lines sum to incl − excl.
        #[test]
        fn monotone_and_taxes_sum(kwh in 0u32..500, extra_kwh in 0u32..50, minutes in 1u32..600, extra_min in 0u32..60, step in 0u64..3600) {
            let t = tariff(json!([{"price_components": [
                {"type": "ENERGY", "price": 0.31, "vat": 21, "step_size": step},
                {"type": "TIME", "price": 1.2, "vat": 9, "step_size": step}]}]));
            let mk = |k: u32, m: u32| {
                let end = DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z").unwrap().with_timezone(&Utc) + chrono::Duration::minutes(i64::from(m));
                session("2026-03-02T10:00:00Z", &end.to_rfc3339(), json!([{"start_date_time": "2026-03-02T10:00:00Z",
                    "dimensions": [{"type": "ENERGY", "volume": k}]}]))
            };
            let a = price(&t, &mk(kwh, minutes), None).unwrap();
            let b = price(&t, &mk(kwh + extra_kwh, minutes), None).unwrap();
            let c = price(&t, &mk(kwh, minutes + extra_min), None).unwrap();
            prop_assert!(b.total_cost.excl >= a.total_cost.excl);
            prop_assert!(c.total_cost.excl >= a.total_cost.excl);
            let taxes: Decimal = a.total_cost.vat.iter().map(|v| v.1).sum();
            prop_assert_eq!(a.total_cost.excl + taxes, a.total_cost.incl());
            let j = a.to_json(Version::V230);
            // each tax line is rounded on its own to 4 decimals: within half a unit of the 4th each
            let lines = j["total_cost"]["taxes"].as_array().unwrap();
            let sum: Decimal = lines.iter().map(|t| d(t["amount"].as_str().unwrap())).sum();
            let half = Decimal::new(5, 5) * Decimal::from(lines.len());
            prop_assert!((sum - (a.total_cost.incl() - a.total_cost.excl)).abs() <= half);
            for t in lines {
                prop_assert!(d(t["amount"].as_str().unwrap()).scale() <= 4);
            }
        }

        /// The typed path (generated `v221`/`v230`/`v211` tariffs and
        /// charging periods, converted) and the JSON path (`price_json`)
        /// give the same totals; periods pushed one by one into a
        /// [`Pricer`] give what pricing them at once gives, also for a
        /// running total with an open last period.
        #[test]
        fn typed_json_and_incremental_agree(
            comps in proptest::collection::vec((0usize..4, 0u32..500, proptest::option::of(0u32..25), 0i64..900), 1..4),
            restr in proptest::collection::vec((0u32..24, 0u32..24, proptest::option::of(0u32..30), proptest::option::of(0i64..7200)), 0..3),
            periods in proptest::collection::vec((1i64..5400, 0u32..40_000, proptest::bool::ANY, proptest::bool::ANY), 1..12),
            min in proptest::option::of(0u32..2000),
            tail in 0i64..3600,
        ) {
            let dims = ["ENERGY", "TIME", "PARKING_TIME", "FLAT"];
            let component = |(k, price, vat, step): &(usize, u32, Option<u32>, i64)| {
                let mut c = json!({"type": dims[*k], "price": Decimal::new(i64::from(*price), 2).to_string(), "step_size": step});
                if let Some(v) = vat { c["vat"] = json!(v); }
                c
            };
            let mut elements: Vec<Value> = restr.iter().map(|(h1, h2, kwh, dur)| {
                let mut r = json!({"start_time": format!("{h1:02}:00"), "end_time": format!("{h2:02}:30")});
                if let Some(k) = kwh { r["min_kwh"] = json!(k); }
                if let Some(d) = dur { r["max_duration"] = json!(d); }
                json!({"price_components": comps.iter().map(component).collect::<Vec<_>>(), "restrictions": r})
            }).collect();
            elements.push(json!({"price_components": comps.iter().map(component).collect::<Vec<_>>()}));
            let mut t221 = json!({"country_code": "NL", "party_id": "EVP", "id": "T", "currency": "EUR",
                "last_updated": "2026-03-01T00:00:00Z", "elements": elements});
            if let Some(m) = min { t221["min_price"] = json!({"excl_vat": Decimal::new(i64::from(m), 2).to_string()}); }
            let start: DateTime<Utc> = "2026-03-02T20:00:00Z".parse().unwrap();
            let mut at = start;
            let mut cps = Vec::new();
            for (secs, wh, parking, with_time) in &periods {
                let mut dims = vec![json!({"type": "ENERGY", "volume": Decimal::new(i64::from(*wh), 3).to_string()})];
                if *parking { dims = vec![json!({"type": "PARKING_TIME", "volume": hours(secs * 1000).to_string()})]; }
                else if *with_time { dims.push(json!({"type": "TIME", "volume": hours(secs * 1000).to_string()})); }
                cps.push(json!({"start_date_time": at.to_rfc3339(), "dimensions": dims}));
                at += chrono::Duration::seconds(*secs);
            }
            let end = at + chrono::Duration::seconds(tail);
            let cdr = json!({"start_date_time": start.to_rfc3339(), "end_date_time": end.to_rfc3339(), "charging_periods": cps});
            let zone = Some("Europe/Amsterdam");
            let by_json = price_json(&t221, &cdr, zone, Version::V221).unwrap();

            // typed: the generated 2.2.1 types, converted
            let typed_tariff: crate::v221::Tariff = serde_json::from_value(t221.clone()).unwrap();
            let typed_periods: Vec<crate::v221::ChargingPeriod> = serde_json::from_value(cdr["charging_periods"].clone()).unwrap();
            let engine = Tariff::try_from(&typed_tariff).unwrap();
            let session = Session { start_date_time: start, end_date_time: end,
                charging_periods: typed_periods.iter().map(ChargingPeriod::from).collect() };
            let typed = price_cdr(&CdrInput::new(session.clone()), Some(&engine), &Zone::Named("Europe/Amsterdam".into())).unwrap();
            prop_assert_eq!(&typed.to_json(Version::V221), &by_json);

            // 2.3.0: the same tariff with 2.3.0 money
            let mut t230 = t221.clone();
            t230["tax_included"] = json!("NO");
            if let Some(m) = min { t230["min_price"] = json!({"before_taxes": Decimal::new(i64::from(m), 2).to_string()}); }
            let typed230: crate::v230::Tariff = serde_json::from_value(t230.clone()).unwrap();
            let p230 = price(&Tariff::try_from(&typed230).unwrap(), &session, zone).unwrap();
            prop_assert_eq!(p230.to_json(Version::V230), price_json(&t230, &cdr, zone, Version::V230).unwrap());
            prop_assert_eq!(&p230.total_cost, &typed.total_cost);

            // incremental: pushed one by one, with a running total after each
            let mut pricer = Pricer::new(vec![&engine], start, &Zone::Named("Europe/Amsterdam".into())).unwrap().without_lines();
            let (last, closed) = session.charging_periods.split_last().unwrap();
            for (i, p) in closed.iter().enumerate() {
                pricer.push(p.clone(), Some(0)).unwrap();
                let next = &session.charging_periods[i + 1];
                let running = pricer.total_at(Some(next.clone()), end).unwrap();
                let upto = Session { start_date_time: start, end_date_time: end,
                    charging_periods: session.charging_periods[..=i + 1].to_vec() };
                let at_once = price(&engine, &upto, zone).unwrap();
                prop_assert_eq!(running, Priced { lines: Vec::new(), ..at_once });
            }
            pricer.push(last.clone(), Some(0)).unwrap();
            prop_assert_eq!(pricer.finish(end).unwrap(), Priced { lines: Vec::new(), ..typed });
        }

        /// min/max clamp the total and nothing else.
        #[test]
        fn clamps(kwh in 0u32..1000, min in 0u32..50, span in 0u32..50) {
            let max = min + span;
            let t = Tariff::from_json(&json!({"elements": [{"price_components": [{"type": "ENERGY", "price": 0.3, "step_size": 1}]}],
                "min_price": {"excl_vat": min}, "max_price": {"excl_vat": max}})).unwrap();
            let s = session("2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z", json!([{"start_date_time": "2026-03-02T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": kwh}]}]));
            let p = price(&t, &s, None).unwrap();
            prop_assert!(p.total_cost.excl >= Decimal::from(min) && p.total_cost.excl <= Decimal::from(max));
            prop_assert_eq!(p.total_energy_cost.excl, Decimal::from(kwh) * d("0.3"));
        }
    }
}
