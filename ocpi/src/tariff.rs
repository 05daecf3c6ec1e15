//! The tariff engine: prices a session's charging periods under an OCPI
//! tariff, exactly (`rust_decimal`, no floats, no rounding of money — the
//! 2.2.1-d2 note leaves rounding to law and contracts).
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
//!
//! ```
//! use evproto_ocpi::tariff::{price_json, Version};
//! let tariff = serde_json::json!({"id": "T1", "currency": "EUR", "elements": [
//!     {"price_components": [{"type": "ENERGY", "price": 0.25, "vat": 20.0, "step_size": 1}]}]});
//! let cdr = serde_json::json!({"start_date_time": "2026-03-01T10:00:00Z", "end_date_time": "2026-03-01T11:00:00Z",
//!     "charging_periods": [{"start_date_time": "2026-03-01T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 10}]}]});
//! let out = price_json(&tariff, &cdr, Some("Europe/Amsterdam"), Version::V221).unwrap();
//! assert_eq!(out["total_cost"]["excl_vat"], "2.5");
//! assert_eq!(out["total_cost"]["incl_vat"], "3");
//! ```

use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

mod zones;

/// Why a session could not be priced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TariffError {
    /// The tariff or CDR JSON does not have the shape of the version.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// `tariff`, `cdr` or `location`.
        what: &'static str,
        /// The decoder's message.
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

fn decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let v = Value::deserialize(d)?;
    to_decimal(&v).ok_or_else(|| serde::de::Error::custom(format!("expected a number, got {v}")))
}

fn opt_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => to_decimal(&v)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("expected a number, got {v}"))),
    }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
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

/// One price component.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PriceComponent {
    /// The dimension.
    #[serde(rename = "type")]
    pub dimension: Dimension,
    /// Price per unit, excl. VAT.
    #[serde(deserialize_with = "decimal")]
    pub price: Decimal,
    /// VAT percentage; absent = no VAT applies.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub vat: Option<Decimal>,
    /// Billing block: Wh for ENERGY, seconds for times.
    #[serde(default = "one")]
    pub step_size: u64,
}

fn one() -> u64 {
    1
}

/// When an element applies.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Restrictions {
    /// Local "HH:MM", inclusive.
    pub start_time: Option<String>,
    /// Local "HH:MM", exclusive.
    pub end_time: Option<String>,
    /// Local date, inclusive.
    pub start_date: Option<String>,
    /// Local date, exclusive.
    pub end_date: Option<String>,
    /// kWh before the period, inclusive.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub min_kwh: Option<Decimal>,
    /// kWh before the period, exclusive.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub max_kwh: Option<Decimal>,
    /// A, inclusive.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub min_current: Option<Decimal>,
    /// A, exclusive.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub max_current: Option<Decimal>,
    /// kW, inclusive.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub min_power: Option<Decimal>,
    /// kW, exclusive.
    #[serde(default, deserialize_with = "opt_decimal")]
    pub max_power: Option<Decimal>,
    /// Seconds of session before the period, inclusive.
    pub min_duration: Option<i64>,
    /// Seconds of session before the period, exclusive.
    pub max_duration: Option<i64>,
    /// MONDAY .. SUNDAY.
    #[serde(default)]
    pub day_of_week: Vec<String>,
    /// RESERVATION or RESERVATION_EXPIRES.
    pub reservation: Option<String>,
}

/// A tariff element.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Element {
    /// Its components.
    pub price_components: Vec<PriceComponent>,
    /// Its restrictions.
    #[serde(default)]
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

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let excl = to_decimal(&v["excl_vat"]).or_else(|| to_decimal(&v["before_taxes"]));
        let incl = to_decimal(&v["incl_vat"]).or_else(|| to_decimal(&v["after_taxes"]));
        match excl {
            Some(excl) => Ok(Limit { excl, incl }),
            None => Err(serde::de::Error::custom(
                "a price needs excl_vat (2.2.1) or before_taxes (2.3.0)",
            )),
        }
    }
}

/// The parts of a Tariff the engine reads (other fields are ignored here).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Tariff {
    /// Tariff id.
    #[serde(default)]
    pub id: String,
    /// ISO 4217 currency.
    #[serde(default)]
    pub currency: String,
    /// Elements in priority order.
    pub elements: Vec<Element>,
    /// Minimum total.
    #[serde(default)]
    pub min_price: Option<Limit>,
    /// Maximum total.
    #[serde(default)]
    pub max_price: Option<Limit>,
}

/// A CDR dimension volume.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CdrDimension {
    /// ENERGY, TIME, PARKING_TIME, CURRENT, MAX_POWER, RESERVATION_TIME, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The volume (kWh, hours, A, kW).
    #[serde(deserialize_with = "decimal")]
    pub volume: Decimal,
}

/// A charging period.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChargingPeriod {
    /// When it starts.
    #[serde(deserialize_with = "lenient_time")]
    pub start_date_time: DateTime<Utc>,
    /// Its volumes.
    pub dimensions: Vec<CdrDimension>,
}

/// The session to price: a CDR's times and periods.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Session {
    /// Session start.
    #[serde(deserialize_with = "lenient_time")]
    pub start_date_time: DateTime<Utc>,
    /// Session end (2.1.1 calls it `stop_date_time`).
    #[serde(deserialize_with = "lenient_time", alias = "stop_date_time")]
    pub end_date_time: DateTime<Utc>,
    /// Periods.
    pub charging_periods: Vec<ChargingPeriod>,
}

/// OCPI times are UTC; real peers omit the `Z`: read both.
fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let s = String::deserialize(d)?;
    DateTime::parse_from_rfc3339(&s)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc())
        })
        .map_err(|_| serde::de::Error::custom(format!("not an OCPI DateTime: {s}")))
}

/// Money is kept to 10 decimal places: far below any currency's minor unit,
/// so no currency rounding happens here (that is the caller's, by law and
/// contract), yet a price per hour × seconds that does not terminate in
/// decimal stays summable.
pub const MONEY_DP: u32 = 10;

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
    /// The amount as a CDR carries it: every price rounded on its own from
    /// the exact value to at most 4 decimals (an OCPI `number`), half away
    /// from zero; the exact values stay in [`Amount`] and the breakdown.
    fn json(&self, v: Version) -> Value {
        let n = |d: Decimal| {
            d.round_dp_with_strategy(4, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
                .normalize()
                .to_string()
        };
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
#[derive(Debug, Clone, PartialEq)]
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
    /// Every priced line.
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

fn hhmm(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M").ok()
}

fn weekday(s: &str) -> Option<Weekday> {
    Some(match s {
        "MONDAY" => Weekday::Mon,
        "TUESDAY" => Weekday::Tue,
        "WEDNESDAY" => Weekday::Wed,
        "THURSDAY" => Weekday::Thu,
        "FRIDAY" => Weekday::Fri,
        "SATURDAY" => Weekday::Sat,
        "SUNDAY" => Weekday::Sun,
        _ => return None,
    })
}

fn matches(r: &Restrictions, c: &Context) -> bool {
    let t = c.local.time();
    let time_ok = match (
        r.start_time.as_deref().and_then(hhmm),
        r.end_time.as_deref().and_then(hhmm),
    ) {
        (None, None) => true,
        (Some(s), None) => t >= s,
        (None, Some(e)) => e == NaiveTime::MIN || t < e,
        (Some(s), Some(e)) if s == e => true,
        (Some(s), Some(e)) if e == NaiveTime::MIN => t >= s,
        (Some(s), Some(e)) if s < e => t >= s && t < e,
        (Some(s), Some(e)) => t >= s || t < e, // wraps past midnight
    };
    let date = c.local.date();
    let date_ok = r
        .start_date
        .as_deref()
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .is_none_or(|s| date >= s)
        && r.end_date
            .as_deref()
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .is_none_or(|e| date < e);
    let day_ok = r.day_of_week.is_empty()
        || r.day_of_week
            .iter()
            .filter_map(|d| weekday(d))
            .any(|d| d == date.weekday());
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
    /// `CdrLocation`: its `time_zone`, else its `country`.
    pub fn of_location(location: &Value) -> Zone {
        if let Some(z) = location.get("time_zone").and_then(Value::as_str) {
            return Zone::Named(z.to_owned());
        }
        match location.get("country").and_then(Value::as_str) {
            Some(c) => Zone::Country(c.to_owned()),
            None => Zone::Unknown,
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
/// total priced under it (decision 10).
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
    let needs_zone = period_tariffs
        .iter()
        .flatten()
        .flat_map(|t| &tariffs[*t].elements)
        .filter_map(|e| e.restrictions.as_ref())
        .any(|r| {
            r.start_time.is_some()
                || r.end_time.is_some()
                || r.start_date.is_some()
                || r.end_date.is_some()
                || !r.day_of_week.is_empty()
        });
    let tz = zone.resolve(needs_zone)?;
    let mut periods: Vec<(&ChargingPeriod, Option<usize>)> = session
        .charging_periods
        .iter()
        .zip(period_tariffs.iter().copied())
        .collect();
    periods.sort_by_key(|p| p.0.start_date_time);
    if session.end_date_time < session.start_date_time {
        return Err(TariffError::Periods(
            "the session ends before it starts".into(),
        ));
    }
    if let Some((p, _)) = periods.iter().find(|(p, _)| {
        p.start_date_time < session.start_date_time || p.start_date_time > session.end_date_time
    }) {
        return Err(TariffError::Periods(format!(
            "a period starts at {} outside the session",
            p.start_date_time
        )));
    }
    let mut out = Priced {
        total_cost: Amount::default(),
        total_fixed_cost: Amount::default(),
        total_energy: Decimal::ZERO,
        total_energy_cost: Amount::default(),
        total_time: Decimal::ZERO,
        total_time_cost: Amount::default(),
        total_parking_time: Decimal::ZERO,
        total_parking_cost: Amount::default(),
        total_reservation_cost: Amount::default(),
        lines: Vec::new(),
    };
    let mut flat_done = false;
    // last component used per dimension, for step_size: (tariff, element, component)
    let mut last: [Option<(usize, usize, PriceComponent)>; 3] = [None, None, None];
    let mut billed = [Decimal::ZERO; 3]; // kWh, h, h
    for (i, (p, tariff)) in periods.iter().enumerate() {
        let end = periods
            .get(i + 1)
            .map_or(session.end_date_time, |n| n.0.start_date_time);
        let duration_h = hours((end - p.start_date_time).num_milliseconds().max(0));
        let dim = |k: &str| p.dimensions.iter().find(|d| d.kind == k).map(|d| d.volume);
        let energy = dim("ENERGY").unwrap_or_default();
        let parking = dim("PARKING_TIME").unwrap_or_default();
        let reservation_h = dim("RESERVATION_TIME");
        // decision 9: no TIME dimension = charging for the period's whole
        // length (its boundaries), unless it reports parking or reservation
        let time = dim("TIME").unwrap_or(
            if dim("PARKING_TIME").is_some() || reservation_h.is_some() {
                Decimal::ZERO
            } else {
                duration_h
            },
        );
        let ctx = Context {
            local: p.start_date_time.with_timezone(&tz).naive_local(),
            kwh_before: out.total_energy,
            seconds_before: (p.start_date_time - session.start_date_time).num_seconds(),
            current: dim("CURRENT").or(dim("MAX_CURRENT")),
            power: dim("POWER").or(dim("MAX_POWER")),
            reservation: reservation_h.is_some(),
        };
        let active = |d: Dimension| {
            let ti = (*tariff)?;
            tariffs[ti].elements.iter().enumerate().find_map(|(ei, e)| {
                let c = e.price_components.iter().find(|c| c.dimension == d)?;
                let ok = match &e.restrictions {
                    Some(r) => matches(r, &ctx),
                    None => !ctx.reservation,
                };
                ok.then(|| (ti, ei, c.clone()))
            })
        };
        if ctx.reservation {
            if let (Some((ti, ei, c)), Some(h)) = (active(Dimension::Time), reservation_h) {
                let cost = (h * c.price).round_dp(MONEY_DP);
                out.total_reservation_cost.add(cost, c.vat);
                out.lines.push(Line {
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
            if !flat_done {
                if let Some((ti, ei, c)) = active(Dimension::Flat) {
                    flat_done = true;
                    out.total_reservation_cost.add(c.price, c.vat);
                    out.lines.push(Line {
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
            continue;
        }
        out.total_energy += energy;
        out.total_time += time;
        out.total_parking_time += parking;
        for (slot, d, volume) in [
            (0, Dimension::Energy, energy),
            (1, Dimension::Time, time),
            (2, Dimension::ParkingTime, parking),
        ] {
            if volume.is_zero() {
                continue;
            }
            if let Some((ti, ei, c)) = active(d) {
                let cost = (volume * c.price).round_dp(MONEY_DP);
                match d {
                    Dimension::Energy => out.total_energy_cost.add(cost, c.vat),
                    Dimension::Time => out.total_time_cost.add(cost, c.vat),
                    _ => out.total_parking_cost.add(cost, c.vat),
                }
                billed[slot] += volume;
                out.lines.push(Line {
                    period: Some(i),
                    tariff: ti,
                    element: ei,
                    dimension: d,
                    volume,
                    price: c.price,
                    vat: c.vat,
                    cost,
                });
                last[slot] = Some((ti, ei, c));
            }
        }
        if !flat_done {
            if let Some((ti, ei, c)) = active(Dimension::Flat) {
                flat_done = true;
                out.total_fixed_cost.add(c.price, c.vat);
                out.lines.push(Line {
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
    // step_size, once per session
    let round_up = |total: Decimal, unit: Decimal, step: u64| -> Decimal {
        if step == 0 {
            return Decimal::ZERO; // decision 5: no rounding
        }
        // Wh or seconds; times come from milliseconds, so 6 places are exact enough
        let units = (total * unit).round_dp(6);
        let step = Decimal::from(step);
        (units / step).ceil() * step - units
    };
    let extra = |slot: usize, unit: Decimal, out: &mut Priced| {
        if let Some((ti, ei, c)) = last[slot].clone() {
            let extra_units = round_up(billed[slot], unit, c.step_size);
            if extra_units > Decimal::ZERO {
                let add = extra_units / unit;
                let cost = (extra_units * c.price / unit).round_dp(MONEY_DP);
                match c.dimension {
                    Dimension::Energy => out.total_energy_cost.add(cost, c.vat),
                    Dimension::Time => out.total_time_cost.add(cost, c.vat),
                    _ => out.total_parking_cost.add(cost, c.vat),
                }
                out.lines.push(Line {
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
    };
    extra(0, Decimal::from(1000), &mut out);
    // TIME and PARKING_TIME: when the session ends parking only the parking total is rounded
    let parking_last = periods
        .last()
        .is_some_and(|p| p.0.dimensions.iter().any(|d| d.kind == "PARKING_TIME"));
    if parking_last && last[2].is_some() {
        extra(2, Decimal::from(3600), &mut out);
    } else {
        extra(1, Decimal::from(3600), &mut out);
    }
    // min/max: one tariff bounds the whole total; several each bound the
    // lines priced under them (decision 10)
    let mut total = Amount::default();
    if let [t] = tariffs {
        for a in [
            &out.total_fixed_cost,
            &out.total_energy_cost,
            &out.total_time_cost,
            &out.total_parking_cost,
            &out.total_reservation_cost,
        ] {
            total.merge(a);
        }
        total = clamp(total, t.min_price, t.max_price);
    } else {
        for (ti, t) in tariffs.iter().enumerate() {
            if !period_tariffs.contains(&Some(ti)) {
                continue;
            }
            let mut part = Amount::default();
            for l in out.lines.iter().filter(|l| l.tariff == ti) {
                part.add(l.cost, l.vat);
            }
            total.merge(&clamp(part, t.min_price, t.max_price));
        }
    }
    out.total_cost = total;
    Ok(out)
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

/// Prices from JSON: a Tariff, a CDR (or anything with `start_date_time`,
/// `end_date_time` or 2.1.1's `stop_date_time`, `charging_periods`) and
/// the location's time zone; the totals under the CDR's field names, a
/// Credit CDR's `total_cost` negated (decision 11).
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
    price_cdr(cdr, Some(tariff), &zone, version)
}

/// Prices a CDR of any version (2.1.1 `stop_date_time`, 2.2.1/2.3.0
/// `end_date_time`) from JSON:
///
/// - under `tariff` when one is given (every period), else under the CDR's
///   own `tariffs`, each period under the tariff its `tariff_id` names
///   (decision 10);
/// - restrictions in `zone` ([`Zone::of_location`]); with [`Zone::Unknown`]
///   the CDR's own location (`cdr_location`, 2.1.1 `location`) is asked;
/// - a Credit CDR (`credit: true`) gets the negated `total_cost` the spec
///   prescribes (decision 11);
/// - the totals under the CDR field names of `version`.
///
/// # Errors
///
/// [`TariffError`]: [`TariffError::NoTariff`] without `tariff` and
/// `tariffs`, [`TariffError::UnknownTariffId`] for a period naming a
/// tariff the CDR does not carry.
pub fn price_cdr(
    cdr: &Value,
    tariff: Option<&Value>,
    zone: &Zone,
    version: Version,
) -> Result<Value, TariffError> {
    let invalid = |what: &'static str| {
        move |e: serde_json::Error| TariffError::Invalid {
            what,
            reason: e.to_string(),
        }
    };
    // a separate tariff is read first, the CDR's own tariffs after the CDR
    let given: Option<Tariff> = match tariff {
        Some(t) => Some(serde_json::from_value(t.clone()).map_err(invalid("tariff"))?),
        None => None,
    };
    let session: Session = serde_json::from_value(cdr.clone()).map_err(invalid("cdr"))?;
    let tariffs: Vec<Tariff> = match given {
        Some(t) => vec![t],
        None => match cdr.get("tariffs") {
            Some(Value::Array(ts)) if !ts.is_empty() => ts
                .iter()
                .map(|t| serde_json::from_value(t.clone()).map_err(invalid("tariff")))
                .collect::<Result<_, _>>()?,
            _ => return Err(TariffError::NoTariff),
        },
    };
    let n = session.charging_periods.len();
    let period_tariffs: Vec<Option<usize>> = if tariff.is_some() || tariffs.len() == 1 {
        vec![Some(0); n]
    } else {
        let ids: Vec<Option<&str>> = cdr
            .get("charging_periods")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| p.get("tariff_id").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        ids.iter()
            .map(|id| match id {
                // mod_cdrs ChargingPeriod.tariff_id: "If not provided, no
                // Tariff is relevant during this period."
                None => Ok(None),
                Some(id) => tariffs
                    .iter()
                    .position(|t| t.id.eq_ignore_ascii_case(id))
                    .map(Some)
                    .ok_or_else(|| TariffError::UnknownTariffId((*id).to_owned())),
            })
            .collect::<Result<_, _>>()?
    };
    let zone = match zone {
        Zone::Unknown => cdr
            .get("cdr_location")
            .or_else(|| cdr.get("location"))
            .map_or(Zone::Unknown, Zone::of_location),
        z => z.clone(),
    };
    let refs: Vec<&Tariff> = tariffs.iter().collect();
    let mut priced = price_periods(&refs, &session, &period_tariffs, &zone)?;
    if cdr.get("credit").and_then(Value::as_bool) == Some(true) {
        priced = priced.credited();
    }
    Ok(priced.to_json(version))
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
        serde_json::from_value(
            json!({"start_date_time": start, "end_date_time": end, "charging_periods": periods}),
        )
        .unwrap()
    }

    fn tariff(elements: Value) -> Tariff {
        serde_json::from_value(json!({"id": "T", "currency": "EUR", "elements": elements})).unwrap()
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
            {"type": "ENERGY", "price": 0.3125, "vat": 20.0}]}]));
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
        let t = tariff(json!([{"price_components": [{"type": "FLAT", "price": 0.00005}]}]));
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
        let t: Tariff = serde_json::from_value(json!({"id": "T", "currency": "EUR", "min_price": {"excl_vat": 5, "incl_vat": 6},
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
            json!([{"start_date_time": "2026-03-02T12:00:00Z", "dimensions": []}]),
        );
        assert!(matches!(price(&t, &s, None), Err(TariffError::Periods(_))));
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
        let s: Session = serde_json::from_value(json!({"start_date_time": "2026-03-02T10:00:00", "end_date_time": "2026-03-02T11:00:00Z", "charging_periods": []})).unwrap();
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
        let out = price_cdr(&cdr, None, &Zone::Unknown, Version::V211).unwrap();
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
        let out = price_cdr(&cdr, None, &Zone::Unknown, Version::V221).unwrap();
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
        let out = price_cdr(&cdr, Some(&flat), &Zone::Unknown, Version::V221).unwrap();
        assert_eq!(out["total_cost"]["excl_vat"], "1.7");
        // a tariff_id the CDR does not carry
        cdr["charging_periods"][2]["tariff_id"] = json!("WEEKEND");
        assert_eq!(
            price_cdr(&cdr, None, &Zone::Unknown, Version::V221),
            Err(TariffError::UnknownTariffId("WEEKEND".into()))
        );
        // one tariff: every period under it, tariff_id or not
        cdr["tariffs"] = json!([cdr["tariffs"][0].clone()]);
        let out = price_cdr(&cdr, None, &Zone::Unknown, Version::V221).unwrap();
        assert_eq!(out["total_cost"]["excl_vat"], "5.1", "17 kWh × 0.30");
        // no tariff at all
        cdr["tariffs"] = json!([]);
        assert_eq!(
            price_cdr(&cdr, None, &Zone::Unknown, Version::V221),
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
        let out = price_cdr(&cdr, Some(&tariff), &nl, Version::V221).unwrap();
        assert_eq!(out["total_cost"]["excl_vat"], "2", "10 kWh × 0.20 (night)");
        // a time_zone wins over the country
        let utc = Zone::of_location(&json!({"country": "NLD", "time_zone": "UTC"}));
        let out = price_cdr(&cdr, Some(&tariff), &utc, Version::V221).unwrap();
        assert_eq!(out["total_cost"]["excl_vat"], "3", "10 kWh × 0.30 (day)");
        // the CDR's own cdr_location when no location is given
        cdr["cdr_location"] = json!({"id": "L", "country": "NLD"});
        let out = price_cdr(&cdr, Some(&tariff), &Zone::Unknown, Version::V221).unwrap();
        assert_eq!(out["total_cost"]["excl_vat"], "2");
        // Germany has two zones (Berlin, Büsingen): refused, naming time_zone
        let de = Zone::of_location(&json!({"country": "DEU"}));
        let e = price_cdr(&cdr, Some(&tariff), &de, Version::V221).unwrap_err();
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
            price_cdr(&cdr, Some(&tariff), &Zone::Unknown, Version::V221),
            Err(TariffError::TimeZoneMissing)
        );
        // a tariff without time restrictions needs no zone, even in Germany
        let plain = json!({"id": "P", "currency": "EUR", "elements": [{"price_components": [
            {"type": "ENERGY", "price": 0.30, "step_size": 1}]}]});
        let out = price_cdr(&cdr, Some(&plain), &de, Version::V221).unwrap();
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

        /// min/max clamp the total and nothing else.
        #[test]
        fn clamps(kwh in 0u32..1000, min in 0u32..50, span in 0u32..50) {
            let max = min + span;
            let t: Tariff = serde_json::from_value(json!({"elements": [{"price_components": [{"type": "ENERGY", "price": 0.3, "step_size": 1}]}],
                "min_price": {"excl_vat": min}, "max_price": {"excl_vat": max}})).unwrap();
            let s = session("2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z", json!([{"start_date_time": "2026-03-02T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": kwh}]}]));
            let p = price(&t, &s, None).unwrap();
            prop_assert!(p.total_cost.excl >= Decimal::from(min) && p.total_cost.excl <= Decimal::from(max));
            prop_assert_eq!(p.total_energy_cost.excl, Decimal::from(kwh) * d("0.3"));
        }
    }
}
