//! The engine's model from the generated OCPI types of every version, and
//! from JSON through them.

use chrono::{NaiveDate, NaiveTime, Weekday};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;

use super::{
    ChargingPeriod, Dimension, Element, Limit, PriceComponent, Reservation, Restrictions, Session,
    Tariff, TariffError, Zone,
};
use crate::{v211, v221, v230};

fn invalid(what: &'static str, reason: impl std::fmt::Display) -> TariffError {
    TariffError::Invalid {
        what,
        reason: reason.to_string(),
    }
}

fn time_of_day(field: &str, s: Option<&str>) -> Result<Option<NaiveTime>, TariffError> {
    s.map(|s| {
        NaiveTime::parse_from_str(s, "%H:%M")
            .map_err(|_| invalid("tariff", format!("restrictions.{field} {s:?} is not HH:MM")))
    })
    .transpose()
}

fn date(field: &str, s: Option<&str>) -> Result<Option<NaiveDate>, TariffError> {
    s.map(|s| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
            invalid(
                "tariff",
                format!("restrictions.{field} {s:?} is not YYYY-MM-DD"),
            )
        })
    })
    .transpose()
}

fn weekday(s: &str) -> Result<Weekday, TariffError> {
    Ok(match s {
        "MONDAY" => Weekday::Mon,
        "TUESDAY" => Weekday::Tue,
        "WEDNESDAY" => Weekday::Wed,
        "THURSDAY" => Weekday::Thu,
        "FRIDAY" => Weekday::Fri,
        "SATURDAY" => Weekday::Sat,
        "SUNDAY" => Weekday::Sun,
        other => return Err(invalid("tariff", format!("day_of_week {other:?}"))),
    })
}

fn component(
    dimension: &str,
    price: Decimal,
    vat: Option<Decimal>,
    step_size: i64,
) -> Result<PriceComponent, TariffError> {
    Ok(PriceComponent {
        dimension: Dimension::from_wire(dimension)
            .ok_or_else(|| invalid("tariff", format!("price component type {dimension:?}")))?,
        price,
        vat,
        step_size: u64::try_from(step_size)
            .map_err(|_| invalid("tariff", format!("step_size {step_size} is negative")))?,
    })
}

/// The restrictions 2.2.1 and 2.3.0 share field for field.
macro_rules! restrictions_22x {
    ($v:ident) => {
        impl TryFrom<&$v::TariffRestrictions> for Restrictions {
            type Error = TariffError;
            fn try_from(r: &$v::TariffRestrictions) -> Result<Self, TariffError> {
                Ok(Restrictions {
                    start_time: time_of_day(
                        "start_time",
                        r.start_time.as_ref().map(|s| s.as_str()),
                    )?,
                    end_time: time_of_day("end_time", r.end_time.as_ref().map(|s| s.as_str()))?,
                    start_date: date("start_date", r.start_date.as_ref().map(|s| s.as_str()))?,
                    end_date: date("end_date", r.end_date.as_ref().map(|s| s.as_str()))?,
                    min_kwh: r.min_kwh,
                    max_kwh: r.max_kwh,
                    min_current: r.min_current,
                    max_current: r.max_current,
                    min_power: r.min_power,
                    max_power: r.max_power,
                    min_duration: r.min_duration,
                    max_duration: r.max_duration,
                    day_of_week: r
                        .day_of_week
                        .iter()
                        .map(|d| weekday(d.as_str()))
                        .collect::<Result<_, _>>()?,
                    reservation: r.reservation.as_ref().map(|x| match x {
                        $v::ReservationRestrictionType::Reservation => Reservation::Reservation,
                        $v::ReservationRestrictionType::ReservationExpires => Reservation::Expires,
                    }),
                })
            }
        }

        impl TryFrom<&$v::TariffElement> for Element {
            type Error = TariffError;
            fn try_from(e: &$v::TariffElement) -> Result<Self, TariffError> {
                Ok(Element {
                    price_components: e
                        .price_components
                        .iter()
                        .map(|c| component(c.r#type.as_str(), c.price, c.vat, c.step_size))
                        .collect::<Result<_, _>>()?,
                    restrictions: e
                        .restrictions
                        .as_ref()
                        .map(Restrictions::try_from)
                        .transpose()?,
                })
            }
        }

        impl From<&$v::ChargingPeriod> for ChargingPeriod {
            fn from(p: &$v::ChargingPeriod) -> Self {
                period(
                    *p.start_date_time,
                    p.dimensions.iter().map(|d| (d.r#type.as_str(), d.volume)),
                    p.tariff_id.as_ref().map(|t| t.as_str().to_owned()),
                )
            }
        }
    };
}

restrictions_22x!(v221);
restrictions_22x!(v230);

impl TryFrom<&v211::TariffRestrictions> for Restrictions {
    type Error = TariffError;
    fn try_from(r: &v211::TariffRestrictions) -> Result<Self, TariffError> {
        Ok(Restrictions {
            start_time: time_of_day("start_time", r.start_time.as_ref().map(|s| s.as_str()))?,
            end_time: time_of_day("end_time", r.end_time.as_ref().map(|s| s.as_str()))?,
            start_date: date("start_date", r.start_date.as_ref().map(|s| s.as_str()))?,
            end_date: date("end_date", r.end_date.as_ref().map(|s| s.as_str()))?,
            min_kwh: r.min_kwh,
            max_kwh: r.max_kwh,
            min_power: r.min_power,
            max_power: r.max_power,
            min_duration: r.min_duration,
            max_duration: r.max_duration,
            day_of_week: r
                .day_of_week
                .iter()
                .map(|d| weekday(d.as_str()))
                .collect::<Result<_, _>>()?,
            ..Restrictions::default()
        })
    }
}

impl TryFrom<&v211::TariffElement> for Element {
    type Error = TariffError;
    fn try_from(e: &v211::TariffElement) -> Result<Self, TariffError> {
        Ok(Element {
            // 2.1.1 price components carry no VAT (decision 12)
            price_components: e
                .price_components
                .iter()
                .map(|c| component(c.r#type.as_str(), c.price, None, c.step_size))
                .collect::<Result<_, _>>()?,
            restrictions: e
                .restrictions
                .as_ref()
                .map(Restrictions::try_from)
                .transpose()?,
        })
    }
}

impl From<&v211::ChargingPeriod> for ChargingPeriod {
    fn from(p: &v211::ChargingPeriod) -> Self {
        period(
            *p.start_date_time,
            p.dimensions.iter().map(|d| (d.r#type.as_str(), d.volume)),
            None,
        )
    }
}

/// A period from its dimensions as written on the wire: the first of a
/// type counts; `CURRENT` before `MAX_CURRENT`, `POWER` before `MAX_POWER`.
fn period<'a>(
    start: chrono::DateTime<chrono::Utc>,
    dimensions: impl Iterator<Item = (&'a str, Decimal)>,
    tariff_id: Option<String>,
) -> ChargingPeriod {
    let mut p = ChargingPeriod {
        start_date_time: start,
        tariff_id,
        ..ChargingPeriod::default()
    };
    let (mut max_current, mut max_power) = (None, None);
    for (kind, volume) in dimensions {
        let slot = match kind {
            "ENERGY" => &mut p.energy,
            "TIME" => &mut p.time,
            "PARKING_TIME" => &mut p.parking_time,
            "RESERVATION_TIME" => &mut p.reservation_time,
            "CURRENT" => &mut p.current,
            "MAX_CURRENT" => &mut max_current,
            "POWER" => &mut p.power,
            "MAX_POWER" => &mut max_power,
            _ => continue,
        };
        slot.get_or_insert(volume);
    }
    p.current = p.current.or(max_current);
    p.power = p.power.or(max_power);
    p
}

fn elements<'a, E: 'a>(es: impl IntoIterator<Item = &'a E>) -> Result<Vec<Element>, TariffError>
where
    Element: TryFrom<&'a E, Error = TariffError>,
{
    es.into_iter().map(Element::try_from).collect()
}

impl TryFrom<&v211::Tariff> for Tariff {
    type Error = TariffError;
    fn try_from(t: &v211::Tariff) -> Result<Self, TariffError> {
        Ok(Tariff {
            id: t.id.as_str().to_owned(),
            currency: t.currency.as_str().to_owned(),
            elements: elements(&t.elements)?,
            min_price: None,
            max_price: None,
        })
    }
}

impl TryFrom<&v221::Tariff> for Tariff {
    type Error = TariffError;
    fn try_from(t: &v221::Tariff) -> Result<Self, TariffError> {
        let limit = |p: &v221::Price| Limit {
            excl: p.excl_vat,
            incl: p.incl_vat,
        };
        Ok(Tariff {
            id: t.id.as_str().to_owned(),
            currency: t.currency.as_str().to_owned(),
            elements: elements(&t.elements)?,
            min_price: t.min_price.as_ref().map(limit),
            max_price: t.max_price.as_ref().map(limit),
        })
    }
}

impl TryFrom<&v230::Tariff> for Tariff {
    type Error = TariffError;
    fn try_from(t: &v230::Tariff) -> Result<Self, TariffError> {
        let limit = |p: &v230::PriceLimit| Limit {
            excl: p.before_taxes,
            incl: p.after_taxes,
        };
        Ok(Tariff {
            id: t.id.as_str().to_owned(),
            currency: t.currency.as_str().to_owned(),
            elements: elements(&t.elements)?,
            min_price: t.min_price.as_ref().map(limit),
            max_price: t.max_price.as_ref().map(limit),
        })
    }
}

/// A `min_price`/`max_price` in JSON: 2.2.1 or 2.3.0 shape.
#[derive(Deserialize)]
#[serde(untagged)]
enum WireLimit {
    V221(v221::Price),
    V230(v230::PriceLimit),
}

/// A tariff in JSON: its elements as the generated 2.2.1 type (2.1.1 and
/// 2.3.0 elements have the same shape, 2.1.1 without VAT and current and
/// reservation restrictions); the envelope fields the engine does not
/// read may be left out.
#[derive(Deserialize)]
struct WireTariff {
    #[serde(default)]
    id: String,
    #[serde(default)]
    currency: String,
    elements: Vec<v221::TariffElement>,
    #[serde(default)]
    min_price: Option<WireLimit>,
    #[serde(default)]
    max_price: Option<WireLimit>,
}

impl Tariff {
    /// Reads a tariff of any version from JSON: its `elements` (and
    /// `min_price`/`max_price`, 2.2.1 `{excl_vat, incl_vat}` or 2.3.0
    /// `{before_taxes, after_taxes}`) as the generated types read them,
    /// converted as `TryFrom` converts a generated `Tariff`. The envelope
    /// (`country_code`, `party_id`, `last_updated`...) is not needed; `id`
    /// and `currency` are kept when given.
    ///
    /// # Errors
    ///
    /// [`TariffError::Invalid`] (`what`: `tariff`).
    pub fn from_json(v: &Value) -> Result<Tariff, TariffError> {
        let w = WireTariff::deserialize(v).map_err(|e| invalid("tariff", e))?;
        let limit = |l: &WireLimit| match l {
            WireLimit::V221(p) => Limit {
                excl: p.excl_vat,
                incl: p.incl_vat,
            },
            WireLimit::V230(p) => Limit {
                excl: p.before_taxes,
                incl: p.after_taxes,
            },
        };
        Ok(Tariff {
            id: w.id,
            currency: w.currency,
            elements: elements(&w.elements)?,
            min_price: w.min_price.as_ref().map(limit),
            max_price: w.max_price.as_ref().map(limit),
        })
    }
}

/// A CDR to price, from a generated `Cdr` of any version (`TryFrom`) or
/// from JSON ([`CdrInput::from_json`]): its session (times, periods with
/// their `tariff_id`s), its own `tariffs`, whether it is a Credit CDR and
/// the zone of its location.
#[derive(Debug, Clone, PartialEq)]
pub struct CdrInput {
    /// Times and charging periods.
    pub session: Session,
    /// The CDR's own tariffs (decision 10).
    pub tariffs: Vec<Tariff>,
    /// A Credit CDR (decision 11).
    pub credit: bool,
    /// The zone of the CDR's location (2.1.1 `location`: its `time_zone`,
    /// else its country; 2.2.1+ `cdr_location`: its country).
    pub zone: Zone,
}

impl CdrInput {
    /// A session alone: no tariffs of its own, not a credit, no zone.
    pub fn new(session: Session) -> CdrInput {
        CdrInput {
            session,
            tariffs: Vec::new(),
            credit: false,
            zone: Zone::Unknown,
        }
    }

    /// Reads a CDR of any version from JSON: `start_date_time`,
    /// `end_date_time` (2.1.1: `stop_date_time`) and `charging_periods` as
    /// the generated `ChargingPeriod` of its version reads them (2.1.1
    /// when it has `stop_date_time` and no `end_date_time`), `tariffs`
    /// ([`Tariff::from_json`]), `credit`, and the zone of `cdr_location`
    /// (2.1.1 `location`, [`Zone::of_location`]); nothing else of the CDR
    /// is needed.
    ///
    /// # Errors
    ///
    /// [`TariffError::Invalid`] (`what`: `cdr` or `tariff`).
    pub fn from_json(v: &Value) -> Result<CdrInput, TariffError> {
        #[derive(Deserialize)]
        struct Wire {
            start_date_time: crate::types::DateTime,
            #[serde(default)]
            end_date_time: Option<crate::types::DateTime>,
            #[serde(default)]
            stop_date_time: Option<crate::types::DateTime>,
            charging_periods: Vec<Value>,
            #[serde(default)]
            tariffs: Option<Vec<Value>>,
            #[serde(default)]
            credit: Option<bool>,
        }
        let w = Wire::deserialize(v).map_err(|e| invalid("cdr", e))?;
        let (end, v211) = match (w.end_date_time, w.stop_date_time) {
            (Some(e), _) => (e, false),
            (None, Some(s)) => (s, true),
            (None, None) => return Err(invalid("cdr", "missing field `end_date_time`")),
        };
        let charging_periods = w
            .charging_periods
            .iter()
            .map(|p| {
                if v211 {
                    v211::ChargingPeriod::deserialize(p).map(|p| ChargingPeriod::from(&p))
                } else {
                    v221::ChargingPeriod::deserialize(p).map(|p| ChargingPeriod::from(&p))
                }
                .map_err(|e| invalid("cdr", format!("charging_periods: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let tariffs = w
            .tariffs
            .iter()
            .flatten()
            .map(Tariff::from_json)
            .collect::<Result<_, _>>()?;
        let zone = v
            .get("cdr_location")
            .or_else(|| v.get("location"))
            .map_or(Zone::Unknown, Zone::of_location);
        Ok(CdrInput {
            session: Session {
                start_date_time: *w.start_date_time,
                end_date_time: *end,
                charging_periods,
            },
            tariffs,
            credit: w.credit == Some(true),
            zone,
        })
    }
}

impl Session {
    /// Reads a session from JSON, as [`CdrInput::from_json`] reads a CDR.
    ///
    /// # Errors
    ///
    /// [`TariffError::Invalid`].
    pub fn from_json(v: &Value) -> Result<Session, TariffError> {
        CdrInput::from_json(v).map(|c| c.session)
    }
}

impl TryFrom<&v211::Cdr> for CdrInput {
    type Error = TariffError;
    fn try_from(c: &v211::Cdr) -> Result<Self, TariffError> {
        Ok(CdrInput {
            session: Session {
                start_date_time: *c.start_date_time,
                end_date_time: *c.stop_date_time,
                charging_periods: c.charging_periods.iter().map(Into::into).collect(),
            },
            tariffs: c
                .tariffs
                .iter()
                .map(Tariff::try_from)
                .collect::<Result<_, _>>()?,
            credit: false,
            zone: Zone::of(
                c.location.time_zone.as_ref().map(|z| z.as_str()),
                c.location.country.as_str(),
            ),
        })
    }
}

macro_rules! cdr_22x {
    ($v:ident) => {
        impl TryFrom<&$v::Cdr> for CdrInput {
            type Error = TariffError;
            fn try_from(c: &$v::Cdr) -> Result<Self, TariffError> {
                Ok(CdrInput {
                    session: Session {
                        start_date_time: *c.start_date_time,
                        end_date_time: *c.end_date_time,
                        charging_periods: c.charging_periods.iter().map(Into::into).collect(),
                    },
                    tariffs: c
                        .tariffs
                        .iter()
                        .map(Tariff::try_from)
                        .collect::<Result<_, _>>()?,
                    credit: c.credit == Some(true),
                    // a CdrLocation has no time_zone: its country (decision 4)
                    zone: Zone::Country(c.cdr_location.country.as_str().to_owned()),
                })
            }
        }
    };
}

cdr_22x!(v221);
cdr_22x!(v230);

/// The zone of a 2.2.1 Location: its `time_zone`.
impl From<&v221::Location> for Zone {
    fn from(l: &v221::Location) -> Zone {
        Zone::Named(l.time_zone.as_str().to_owned())
    }
}
