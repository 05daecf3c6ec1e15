//! Local cost (OCPP 2.1 block I): the tariff the CSMS prices with, sent to
//! the 2.1 stations that calculate costs themselves, and their reported
//! cost checked against the CSMS's price.
//!
//! The rules are plain functions:
//!
//! - [`to_ocpp21`] converts the OCPI 2.2.1 tariff the engine prices with
//!   (`PUT /api/tariffs/default`, [`crate::billing::DefaultTariff`]) into a
//!   2.1 `TariffType`, or says why 2.1 cannot carry it
//!   ([`LocalCostError`]). Per dimension the 2.1 tariff lists, in element
//!   order, one price for each OCPI element that has a component of that
//!   dimension, its restrictions as the price's conditions: a 2.1 station
//!   takes the first price whose conditions hold, as the engine takes the
//!   first element whose restrictions hold. ENERGY is `energy` (per kWh),
//!   TIME `chargingTime` (per minute: the hourly price / 60), PARKING_TIME
//!   `idleTime`, FLAT `fixedFee`; a dimension's VAT is its `taxRates`;
//!   `min_price`/`max_price` are `minCost`/`maxCost`; `start_date_time` is
//!   `validFrom`; `tariff_alt_text` the description. Its id is the OCPI id
//!   and a digest of its content ([`tariff_id`]): a 2.1 tariff id never
//!   changes content, so a changed tariff goes under a new id.
//! - [`check_cost`] compares a station's `costDetails` with the CSMS's
//!   price, both in the currency's minor unit ([`TOLERANCE_MINOR`]);
//!   [`check_running`] its running cost (`TransactionEvent` Updated) with
//!   the CSMS's running cost ([`running_tolerance_minor`]).
//! - [`receipt`] is the CSMS's own receipt of a session a station's payment
//!   terminal settled (`NotifySettlement`): the CSMS's price and what the
//!   terminal took.
//!
//! The shell ([`station_booted`], [`tariff_changed`], [`check_ended`] and
//! the routes) sends `SetDefaultTariff` to a 2.1 station that says
//! `TariffCostCtrlr.Enabled[Tariff]` is true (asked with `GetVariables`
//! after its boot is accepted, and again whenever the `default` tariff
//! changes), `ChangeTransactionTariff` for each of its running
//! transactions when the tariff changes, and serves `GET` / `DELETE
//! /api/stations/{id}/tariffs` (`GetTariffs` / `ClearTariffs`) and `POST
//! /api/stations/{id}/tariffs/default` (send the default tariff now).
//! The CDR is always the CSMS's price: a station whose total differs beyond
//! rounding gets a `cost` alert, and its figure stays in the stored
//! `TransactionEvent`, nothing else. While a session runs, each `Updated`
//! event with `costDetails` is checked against the CSMS's running cost (the
//! one its answer carries as `totalCost`, priced incrementally: one open
//! period on top of those priced before); the first mismatch of a session
//! is a `running_cost` alert (one per session, not one per message:
//! [`RunningChecks`]), and the CSMS's running cost stays what the station is
//! told. `GET /api/sessions/{id}/receipt` serves [`receipt`].

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use evproto_csms_core::money::{Currency, Money};
use evproto_ocpi::tariff::{Dimension, Element, Restrictions, Tariff};
use evproto_ocpi::v221;
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_types::{v21, BoundedString};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::api::{ApiError, ApiQuery, ApiResult};
use crate::gateway::StationCallError;
use crate::App;

/// Why an OCPI tariff cannot be sent as a 2.1 `TariffType` (2.1 has no
/// field for it, or says it otherwise).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalCostError {
    /// The engine cannot read the tariff.
    #[error("not a tariff the engine can price: {0}")]
    Invalid(String),
    /// A `reservation` restriction: 2.1 prices reservations apart, not as
    /// a condition.
    #[error("element {element}: 2.1 has no reservation restriction")]
    Reservation {
        /// Index of the element.
        element: usize,
    },
    /// A `step_size` above 1: 2.1 prices have no billing blocks.
    #[error("element {element}: step_size {step} (2.1 prices have no steps)")]
    StepSize {
        /// Index of the element.
        element: usize,
        /// The step.
        step: u64,
    },
    /// Components of one dimension with different VAT: 2.1 has one set of
    /// tax rates per dimension.
    #[error("{dimension}: components with different VAT (2.1 has one tax rate per dimension)")]
    MixedVat {
        /// The dimension, as OCPI names it.
        dimension: &'static str,
    },
    /// A FLAT component restricted by energy, power, current or duration:
    /// 2.1 fixed-fee conditions are by time of day, weekday and date only.
    #[error("element {element}: a FLAT price restricted by {restriction} (2.1 fixed fees have calendar conditions only)")]
    FlatRestriction {
        /// Index of the element.
        element: usize,
        /// The OCPI restriction.
        restriction: &'static str,
    },
    /// A value beyond what 2.1 carries (an id or text too long, a duration
    /// past 32 bits).
    #[error("{0}: too long for 2.1")]
    TooLong(&'static str),
}

/// The OCPI name of a dimension.
fn dimension_name(d: Dimension) -> &'static str {
    match d {
        Dimension::Energy => "ENERGY",
        Dimension::Flat => "FLAT",
        Dimension::ParkingTime => "PARKING_TIME",
        Dimension::Time => "TIME",
    }
}

fn weekday(d: chrono::Weekday) -> v21::DayOfWeekEnumType {
    use chrono::Weekday::*;
    match d {
        Mon => v21::DayOfWeekEnumType::Monday,
        Tue => v21::DayOfWeekEnumType::Tuesday,
        Wed => v21::DayOfWeekEnumType::Wednesday,
        Thu => v21::DayOfWeekEnumType::Thursday,
        Fri => v21::DayOfWeekEnumType::Friday,
        Sat => v21::DayOfWeekEnumType::Saturday,
        Sun => v21::DayOfWeekEnumType::Sunday,
    }
}

fn secs(v: Option<i64>) -> Result<Option<i32>, LocalCostError> {
    v.map(|s| i32::try_from(s).map_err(|_| LocalCostError::TooLong("duration")))
        .transpose()
}

/// A restriction's calendar part, as 2.1 writes it.
struct Calendar {
    start: Option<String>,
    end: Option<String>,
    days: Option<Vec<v21::DayOfWeekEnumType>>,
    from: Option<String>,
    to: Option<String>,
}

fn calendar(r: &Restrictions) -> Calendar {
    Calendar {
        start: r.start_time.map(|t| t.format("%H:%M").to_string()),
        end: r.end_time.map(|t| t.format("%H:%M").to_string()),
        days: (!r.day_of_week.is_empty())
            .then(|| r.day_of_week.iter().map(|d| weekday(*d)).collect()),
        from: r.start_date.map(|d| d.format("%Y-%m-%d").to_string()),
        to: r.end_date.map(|d| d.format("%Y-%m-%d").to_string()),
    }
}

/// The conditions of a price per unit (energy, time).
fn conditions(r: &Restrictions) -> Result<Option<v21::TariffConditionsType>, LocalCostError> {
    if *r == Restrictions::default() {
        return Ok(None);
    }
    let kw = |v: Option<Decimal>| v.map(|k| k * Decimal::from(1000));
    let c = calendar(r);
    Ok(Some(v21::TariffConditionsType {
        start_time_of_day: c.start,
        end_time_of_day: c.end,
        day_of_week: c.days,
        valid_from_date: c.from,
        valid_to_date: c.to,
        evse_kind: None,
        min_energy: kw(r.min_kwh),
        max_energy: kw(r.max_kwh),
        min_current: r.min_current,
        max_current: r.max_current,
        min_power: kw(r.min_power),
        max_power: kw(r.max_power),
        min_time: secs(r.min_duration)?,
        max_time: secs(r.max_duration)?,
        min_charging_time: None,
        max_charging_time: None,
        min_idle_time: None,
        max_idle_time: None,
        custom_data: None,
    }))
}

/// The conditions of a fixed fee: calendar ones only.
fn fixed_conditions(
    element: usize,
    r: &Restrictions,
) -> Result<Option<v21::TariffConditionsFixedType>, LocalCostError> {
    let beyond = [
        ("min_kwh", r.min_kwh.is_some()),
        ("max_kwh", r.max_kwh.is_some()),
        ("min_current", r.min_current.is_some()),
        ("max_current", r.max_current.is_some()),
        ("min_power", r.min_power.is_some()),
        ("max_power", r.max_power.is_some()),
        ("min_duration", r.min_duration.is_some()),
        ("max_duration", r.max_duration.is_some()),
    ];
    if let Some((restriction, _)) = beyond.into_iter().find(|(_, set)| *set) {
        return Err(LocalCostError::FlatRestriction {
            element,
            restriction,
        });
    }
    if *r == Restrictions::default() {
        return Ok(None);
    }
    let c = calendar(r);
    Ok(Some(v21::TariffConditionsFixedType {
        start_time_of_day: c.start,
        end_time_of_day: c.end,
        day_of_week: c.days,
        valid_from_date: c.from,
        valid_to_date: c.to,
        evse_kind: None,
        payment_brand: None,
        payment_recognition: None,
        custom_data: None,
    }))
}

/// One dimension's prices in element order, (element index, price per
/// OCPI unit, restrictions), and the dimension's VAT.
type DimensionPrices = (Vec<(usize, Decimal, Restrictions)>, Option<Decimal>);

/// One dimension's prices, in element order: (element index, price per
/// OCPI unit, restrictions), and its one VAT.
fn prices_of(
    elements: &[Element],
    dimension: Dimension,
) -> Result<DimensionPrices, LocalCostError> {
    let mut out = Vec::new();
    let mut vat: Option<Option<Decimal>> = None;
    for (i, e) in elements.iter().enumerate() {
        let Some(c) = e.price_components.iter().find(|c| c.dimension == dimension) else {
            continue;
        };
        let r = e.restrictions.clone().unwrap_or_default();
        if r.reservation.is_some() {
            return Err(LocalCostError::Reservation { element: i });
        }
        if c.step_size > 1 {
            return Err(LocalCostError::StepSize {
                element: i,
                step: c.step_size,
            });
        }
        match vat {
            Some(v) if v != c.vat => {
                return Err(LocalCostError::MixedVat {
                    dimension: dimension_name(dimension),
                })
            }
            _ => vat = Some(c.vat),
        }
        out.push((i, c.price, r));
    }
    Ok((out, vat.flatten()))
}

fn tax_rates(vat: Option<Decimal>) -> Option<Vec<v21::TaxRateType>> {
    vat.map(|tax| {
        vec![v21::TaxRateType {
            r#type: BoundedString::new("VAT").unwrap_or_default(),
            tax,
            stack: None,
            custom_data: None,
        }]
    })
}

/// One dimension's 2.1 prices, each made by `price` from (element index,
/// price per OCPI unit, restrictions), and its tax rates; `None` when the
/// tariff has no component of the dimension.
type Priced21<P> = Option<(Vec<P>, Option<Vec<v21::TaxRateType>>)>;

fn dimension<P>(
    elements: &[Element],
    d: Dimension,
    price: impl Fn(usize, Decimal, &Restrictions) -> Result<P, LocalCostError>,
) -> Result<Priced21<P>, LocalCostError> {
    let (prices, vat) = prices_of(elements, d)?;
    if prices.is_empty() {
        return Ok(None);
    }
    let prices = prices
        .iter()
        .map(|(i, p, r)| price(*i, *p, r))
        .collect::<Result<_, LocalCostError>>()?;
    Ok(Some((prices, tax_rates(vat))))
}

fn time_prices(
    elements: &[Element],
    d: Dimension,
) -> Result<Option<v21::TariffTimeType>, LocalCostError> {
    let prices = dimension(elements, d, |_, per_hour, r| {
        Ok(v21::TariffTimePriceType {
            price_minute: (per_hour / Decimal::from(60)).normalize(),
            conditions: conditions(r)?,
            custom_data: None,
        })
    })?;
    Ok(prices.map(|(prices, tax_rates)| v21::TariffTimeType {
        prices,
        tax_rates,
        custom_data: None,
    }))
}

fn price_type(l: &evproto_ocpi::tariff::Limit) -> v21::PriceType {
    v21::PriceType {
        excl_tax: Some(l.excl),
        incl_tax: l.incl,
        tax_rates: None,
        custom_data: None,
    }
}

/// The 2.1 tariff id of a converted tariff: the OCPI id and the first 12
/// hex digits of the SHA-256 of the 2.1 tariff's JSON without its id.
pub fn tariff_id(ocpi_id: &str, content: &v21::TariffType) -> String {
    use sha2::Digest;
    let mut anonymous = content.clone();
    anonymous.tariff_id = BoundedString::default();
    let digest = sha2::Sha256::digest(evproto_ocpp_types::to_json(&anonymous).as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{ocpi_id}-{hex}")
}

/// Converts the OCPI 2.2.1 tariff the CSMS prices with into the 2.1
/// `TariffType` a station prices with (see the module's documentation).
///
/// # Errors
///
/// [`LocalCostError`]: what 2.1 cannot express.
pub fn to_ocpp21(ocpi: &v221::Tariff) -> Result<v21::TariffType, LocalCostError> {
    let engine = Tariff::try_from(ocpi).map_err(|e| LocalCostError::Invalid(e.to_string()))?;
    let elements = &engine.elements;
    let energy = dimension(elements, Dimension::Energy, |_, per_kwh, r| {
        Ok(v21::TariffEnergyPriceType {
            price_kwh: per_kwh,
            conditions: conditions(r)?,
            custom_data: None,
        })
    })?
    .map(|(prices, tax_rates)| v21::TariffEnergyType {
        prices,
        tax_rates,
        custom_data: None,
    });
    let fixed_fee = dimension(elements, Dimension::Flat, |i, price, r| {
        Ok(v21::TariffFixedPriceType {
            conditions: fixed_conditions(i, r)?,
            price_fixed: price,
            custom_data: None,
        })
    })?
    .map(|(prices, tax_rates)| v21::TariffFixedType {
        prices,
        tax_rates,
        custom_data: None,
    });
    let description = (!ocpi.tariff_alt_text.is_empty())
        .then(|| {
            ocpi.tariff_alt_text
                .iter()
                .map(|t| {
                    Ok(v21::MessageContentType {
                        format: v21::MessageFormatEnumType::UTF8,
                        language: Some(
                            BoundedString::new(t.language.as_str())
                                .map_err(|_| LocalCostError::TooLong("language"))?,
                        ),
                        content: BoundedString::new(t.text.as_str())
                            .map_err(|_| LocalCostError::TooLong("tariff_alt_text"))?,
                        custom_data: None,
                    })
                })
                .collect::<Result<Vec<_>, LocalCostError>>()
        })
        .transpose()?;
    let mut tariff = v21::TariffType {
        tariff_id: BoundedString::default(),
        description,
        currency: BoundedString::new(engine.currency.as_str())
            .map_err(|_| LocalCostError::TooLong("currency"))?,
        energy,
        valid_from: ocpi.start_date_time.as_ref().map(|t| t.0),
        charging_time: time_prices(elements, Dimension::Time)?,
        idle_time: time_prices(elements, Dimension::ParkingTime)?,
        fixed_fee,
        reservation_time: None,
        reservation_fixed: None,
        min_cost: engine.min_price.as_ref().map(price_type),
        max_cost: engine.max_price.as_ref().map(price_type),
        custom_data: None,
    };
    tariff.tariff_id = BoundedString::new(tariff_id(&engine.id, &tariff))
        .map_err(|_| LocalCostError::TooLong("tariff id"))?;
    Ok(tariff)
}

/// How far a station's total may be from the CSMS's, in the currency's
/// minor unit: 1, rounding only (a station may round each dimension to the
/// minor unit before adding them; the CSMS rounds the exact total once).
pub const TOLERANCE_MINOR: i64 = 1;

/// What the CSMS charges for a session: its CDR's totals (exact, before
/// the rounding to the minor unit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CsmsPrice {
    /// The currency.
    pub currency: Currency,
    /// Excl. VAT.
    pub excl: Decimal,
    /// Incl. VAT.
    pub incl: Decimal,
}

/// A station's cost next to the CSMS's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum CostCheck {
    /// Within [`TOLERANCE_MINOR`].
    Agrees,
    /// Beyond it (a `cost` alert).
    Differs(CostMismatch),
}

/// The detail of a `cost` alert: a station's reported cost of a session
/// against the CSMS's price, which stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostMismatch {
    /// The session (filled in by the caller; empty from [`check_cost`]).
    pub session: String,
    /// ISO 4217 code of the CSMS's price.
    pub currency: String,
    /// What the station reported, in its currency's minor unit (`None`:
    /// it reported no usable total: failed to calculate, or a currency that
    /// is not ISO 4217).
    pub station_minor: Option<i64>,
    /// The station's currency, as it wrote it.
    pub station_currency: String,
    /// The CSMS's price in minor units (what the CDR and the payment carry).
    pub csms_minor: i64,
    /// Whether the totals compared include tax.
    pub incl_tax: bool,
    /// The station's reason when it failed to calculate.
    pub failure: Option<String>,
}

/// Compares a station's `costDetails` with the CSMS's price: the station's
/// total incl. tax against the CSMS's incl. VAT (or, when the station gives
/// its total excl. tax only, excl. against excl.), both rounded to the
/// minor unit half away from zero; they agree within [`TOLERANCE_MINOR`].
/// A station that failed to calculate, or priced in another currency,
/// differs.
pub fn check_cost(station: &v21::CostDetailsType, csms: CsmsPrice) -> CostCheck {
    compare(station, csms, |_| TOLERANCE_MINOR)
}

/// How far a station's running cost may be from the CSMS's, in percent of
/// the CSMS's (on top of [`TOLERANCE_MINOR`]): the CSMS prices time up to
/// the moment it handles the event, the station up to the event's
/// timestamp, and a station may price one reading behind.
pub const RUNNING_TOLERANCE_PERCENT: i64 = 2;

/// The tolerance of a running cost of `csms_minor`: [`TOLERANCE_MINOR`]
/// plus [`RUNNING_TOLERANCE_PERCENT`] of it, in minor units.
pub fn running_tolerance_minor(csms_minor: i64) -> i64 {
    TOLERANCE_MINOR + csms_minor.saturating_abs() * RUNNING_TOLERANCE_PERCENT / 100
}

/// Compares a station's running cost (`costDetails` of an `Updated`
/// event) with the CSMS's running cost, incl. VAT and rounded
/// ([`crate::billing::RunningCosts::cost`]), within
/// [`running_tolerance_minor`]. `None` when they cannot be compared: the
/// station gives its total excl. tax only (the CSMS's running cost is
/// incl. VAT).
pub fn check_running(station: &v21::CostDetailsType, csms: Money) -> Option<CostCheck> {
    let failed = station.failure_to_calculate == Some(true);
    if station.total_cost.total.incl_tax.is_none() && !failed {
        return None;
    }
    let price = CsmsPrice {
        currency: csms.currency(),
        excl: csms.to_decimal(),
        incl: csms.to_decimal(),
    };
    Some(compare(station, price, running_tolerance_minor))
}

/// [`check_cost`] with the tolerance a function of the CSMS's minor units.
fn compare(
    station: &v21::CostDetailsType,
    csms: CsmsPrice,
    tolerance: impl Fn(i64) -> i64,
) -> CostCheck {
    let total = &station.total_cost.total;
    let (reported, incl_tax) = match (total.incl_tax, total.excl_tax) {
        (Some(i), _) => (Some(i), true),
        (None, x) => (x, false),
    };
    let ours = Money::round(if incl_tax { csms.incl } else { csms.excl }, csms.currency);
    let failed = station.failure_to_calculate == Some(true);
    let station_currency = station.total_cost.currency.as_str();
    let theirs = reported
        .filter(|_| !failed)
        .and_then(|d| Money::parse(d, station_currency).ok())
        .filter(|m| m.currency() == csms.currency);
    if let Some(m) = theirs {
        if (m.minor() - ours.minor()).abs() <= tolerance(ours.minor()) {
            return CostCheck::Agrees;
        }
    }
    CostCheck::Differs(CostMismatch {
        session: String::new(),
        currency: csms.currency.code().to_owned(),
        station_minor: reported
            .and_then(|d| Money::parse(d, station_currency).ok())
            .map(|m| m.minor()),
        station_currency: station_currency.to_owned(),
        csms_minor: ours.minor(),
        incl_tax,
        failure: station
            .failure_reason
            .as_ref()
            .map(|r| r.as_str().to_owned())
            .or_else(|| failed.then(|| "failed to calculate".to_owned())),
    })
}

// ---- the shell: sending tariffs, checking reported costs, the routes ----

/// The `default` tariff as a 2.1 tariff (`None`: none is set).
///
/// # Errors
///
/// The store failed, the stored tariff is unusable, or 2.1 cannot carry it.
async fn default_tariff(app: &App) -> Result<Option<v21::TariffType>, String> {
    let Some(body) = app
        .store
        .tariff("default")
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let op = crate::billing::Operator::of(&app.config);
    let t = crate::billing::DefaultTariff::parse(&body, &op).map_err(|e| e.to_string())?;
    to_ocpp21(&t.ocpi).map(Some).map_err(|e| e.to_string())
}

/// Whether a 2.1 station calculates costs itself: `GetVariables`
/// `TariffCostCtrlr.Enabled[Tariff]` reads `true`.
async fn calculates_locally(app: &App, station: &str) -> Result<bool, StationCallError> {
    if app.gateway.version(station).await != Some(ProtocolVersion::V21) {
        return Ok(false);
    }
    let name = |s: &str| BoundedString::new(s).unwrap_or_default();
    let request = v21::GetVariablesRequest {
        get_variable_data: vec![v21::GetVariableDataType {
            attribute_type: None,
            component: v21::ComponentType {
                evse: None,
                name: name("TariffCostCtrlr"),
                instance: None,
                custom_data: None,
            },
            variable: v21::VariableType {
                name: name("Enabled"),
                instance: Some(name("Tariff")),
                custom_data: None,
            },
            custom_data: None,
        }],
        custom_data: None,
    };
    let answer = app
        .gateway
        .call::<v21::action::GetVariables>(station, request)
        .await?;
    Ok(answer.get_variable_result.iter().any(|r| {
        r.attribute_status == v21::GetVariableStatusEnumType::Accepted
            && r.attribute_value
                .as_deref()
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }))
}

/// Why a tariff was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The call failed.
    #[error(transparent)]
    Call(#[from] StationCallError),
    /// No usable `default` tariff (none set, unusable, or not for 2.1).
    #[error("no default tariff to send: {0}")]
    NoTariff(String),
    /// The station does not calculate costs (not 2.1, or
    /// `TariffCostCtrlr.Enabled[Tariff]` is not true).
    #[error("station {0} does not calculate costs locally")]
    NotLocal(String),
}

/// What the station answered to the tariffs sent.
#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    /// The 2.1 tariff id sent.
    pub tariff_id: String,
    /// `SetDefaultTariff` status.
    pub default: v21::TariffSetStatusEnumType,
    /// `ChangeTransactionTariff` per running transaction: (transaction id, status).
    pub transactions: Vec<(String, v21::TariffChangeStatusEnumType)>,
}

/// Sends the `default` tariff to a station that calculates costs locally
/// (`SetDefaultTariff` for every EVSE) and, with `running`, to each of its
/// running transactions (`ChangeTransactionTariff`).
///
/// # Errors
///
/// [`SendError`].
pub async fn send_default(app: &App, station: &str, running: bool) -> Result<Sent, SendError> {
    if !calculates_locally(app, station).await? {
        return Err(SendError::NotLocal(station.to_owned()));
    }
    let tariff = default_tariff(app)
        .await
        .map_err(SendError::NoTariff)?
        .ok_or_else(|| SendError::NoTariff("none is set".into()))?;
    let request = v21::SetDefaultTariffRequest {
        evse_id: 0,
        tariff: tariff.clone(),
        custom_data: None,
    };
    let default = app
        .gateway
        .call::<v21::action::SetDefaultTariff>(station, request)
        .await?
        .status;
    let mut transactions = Vec::new();
    if running {
        let sessions = app
            .store
            .sessions(Some(station), 1000)
            .await
            .map_err(|e| SendError::NoTariff(e.to_string()))?;
        for s in sessions
            .iter()
            .filter(|s| s.status == crate::store::SessionStatus::Active)
        {
            let Ok(transaction_id) = BoundedString::new(s.ocpp_tx_id.as_str()) else {
                continue;
            };
            let request = v21::ChangeTransactionTariffRequest {
                tariff: tariff.clone(),
                transaction_id,
                custom_data: None,
            };
            let status = app
                .gateway
                .call::<v21::action::ChangeTransactionTariff>(station, request)
                .await?
                .status;
            transactions.push((s.ocpp_tx_id.clone(), status));
        }
    }
    Ok(Sent {
        tariff_id: tariff.tariff_id.as_str().to_owned(),
        default,
        transactions,
    })
}

/// After a 2.1 station's boot was accepted: its default tariff, in the
/// background (the boot's answer goes first).
pub fn station_booted(app: &Arc<App>, station: &str) {
    let (app, station) = (app.clone(), station.to_owned());
    tokio::spawn(async move {
        match send_default(&app, &station, false).await {
            Ok(s) => {
                tracing::info!(station, tariff = s.tariff_id, status = ?s.default, "SetDefaultTariff")
            }
            Err(SendError::NotLocal(_)) => {}
            Err(e) => tracing::debug!(station, "no default tariff sent: {e}"),
        }
    });
}

/// The `default` tariff changed: every connected 2.1 station that
/// calculates costs gets it, for its EVSEs and its running transactions,
/// in the background, each station on its own (one slow station holds up
/// no other).
pub fn tariff_changed(app: &Arc<App>) {
    let app = app.clone();
    tokio::spawn(async move {
        for station in app.gateway.connected().await {
            let app = app.clone();
            tokio::spawn(async move {
                match send_default(&app, &station, true).await {
                    Ok(s) => {
                        tracing::info!(station, tariff = s.tariff_id, status = ?s.default, "tariff sent")
                    }
                    Err(SendError::NotLocal(_)) => {}
                    Err(e) => tracing::warn!(station, "tariff not sent: {e}"),
                }
            });
        }
    });
}

/// A 2.1 `TransactionEvent(Ended)` carried the station's `costDetails`:
/// compared with the session's CDR (already billed: the CSMS's price
/// stands); beyond rounding, a `cost` alert for the station.
///
/// # Errors
///
/// The store failed.
pub async fn check_ended(
    app: &App,
    station: &str,
    session: &str,
    details: &v21::CostDetailsType,
) -> crate::store::Result<Option<CostMismatch>> {
    let Some(cdr) = app
        .store
        .cdr(session)
        .await?
        .and_then(|c| crate::billing::decode_cdr(c).ok())
    else {
        return Ok(None);
    };
    let Some(currency) = Currency::from_code(cdr.currency.as_str()) else {
        return Ok(None);
    };
    let excl = cdr.total_cost.excl_vat;
    let csms = CsmsPrice {
        currency,
        excl,
        incl: cdr.total_cost.incl_vat.unwrap_or(excl),
    };
    let CostCheck::Differs(mut m) = check_cost(details, csms) else {
        return Ok(None);
    };
    m.session = session.to_owned();
    tracing::warn!(station, session, station_minor = ?m.station_minor, csms_minor = m.csms_minor, "local cost differs from the CSMS's price");
    let detail = serde_json::to_value(&m).map_err(|_| crate::store::StoreError::Corrupt("cost"))?;
    if app
        .store
        .raise_alert(Some(station), "cost", &detail)
        .await?
        .is_some()
    {
        app.notify(crate::events::LiveEvent::alert(station, "cost", &detail));
    }
    Ok(Some(m))
}

/// The sessions whose running cost already raised its alert (one per
/// session), held by the [`App`]; a session is forgotten when it ends.
#[derive(Debug, Default)]
pub struct RunningChecks {
    alerted: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl RunningChecks {
    fn alerted(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.alerted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a mismatch of `session` is its first (then remembered).
    pub fn first_mismatch(&self, session: &str) -> bool {
        self.alerted().insert(session.to_owned())
    }

    /// Whether `session` had a mismatch already.
    pub fn mismatched(&self, session: &str) -> bool {
        self.alerted().contains(session)
    }

    /// The session ended.
    pub fn forget(&self, session: &str) {
        self.alerted().remove(session);
    }
}

/// A 2.1 `TransactionEvent(Updated)` carried the station's running
/// `costDetails`: compared with the CSMS's running cost (`csms`, `None`
/// without a tariff: nothing to compare); the first mismatch of the
/// session is a `running_cost` alert. A session already alerted is not
/// checked again.
///
/// # Errors
///
/// The store failed.
pub async fn check_updated(
    app: &App,
    station: &str,
    session: &str,
    details: &v21::CostDetailsType,
    csms: Option<Money>,
) -> crate::store::Result<Option<CostMismatch>> {
    let Some(csms) = csms else { return Ok(None) };
    if app.running_costs.mismatched(session) {
        return Ok(None);
    }
    let Some(CostCheck::Differs(mut m)) = check_running(details, csms) else {
        return Ok(None);
    };
    if !app.running_costs.first_mismatch(session) {
        return Ok(None);
    }
    m.session = session.to_owned();
    tracing::warn!(station, session, station_minor = ?m.station_minor, csms_minor = m.csms_minor, "running local cost differs from the CSMS's");
    let detail = serde_json::to_value(&m).map_err(|_| crate::store::StoreError::Corrupt("cost"))?;
    app.store
        .add_alert(Some(station), "running_cost", &detail)
        .await?;
    app.notify(crate::events::LiveEvent::alert(
        station,
        "running_cost",
        &detail,
    ));
    Ok(Some(m))
}

/// The CSMS's receipt of a session a station's payment terminal settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// Its number: the station and the payment's PSP reference.
    pub number: String,
    /// The session.
    pub session_id: String,
    /// The station.
    pub station_id: String,
    /// The CDR's start and end (RFC 3339).
    pub started_at: String,
    /// The CDR's end.
    pub ended_at: String,
    /// Energy, kWh (as on the CDR).
    pub energy_kwh: String,
    /// ISO 4217 code.
    pub currency: String,
    /// The CSMS's price excl. VAT, minor units.
    pub total_excl_vat_minor: i64,
    /// The CSMS's price incl. VAT, minor units (what is owed).
    pub total_incl_vat_minor: i64,
    /// The VAT, minor units.
    pub vat_minor: i64,
    /// What the terminal took, minor units.
    pub paid_minor: i64,
    /// `paid_minor − total_incl_vat_minor`: what the operator owes the
    /// driver back (positive) or is still owed (negative).
    pub balance_minor: i64,
    /// The terminal's payment reference.
    pub psp_ref: String,
    /// When the terminal settled.
    pub settled_at: String,
    /// The terminal's own receipt, when it issued one.
    pub terminal_receipt_id: Option<String>,
    /// Its URL.
    pub terminal_receipt_url: Option<String>,
}

/// Why a session has no receipt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// No settlement of its terminal says `Settled`.
    #[error("the session was not settled at a payment terminal")]
    NotSettled,
    /// The CDR's or the settlement's amount is not money of the CDR's currency.
    #[error("not an amount in the session's currency: {0}")]
    Amount(String),
}

/// The CSMS's receipt of a session: its CDR (the CSMS's price, which
/// stands) and the terminal's `Settled` settlement (the latest, when there
/// are several).
///
/// # Errors
///
/// [`ReceiptError`].
pub fn receipt(
    cdr: &v221::Cdr,
    session_id: &str,
    settlements: &[crate::store::Settlement],
) -> Result<Receipt, ReceiptError> {
    let s = settlements
        .iter()
        .filter(|s| s.status == "Settled")
        .max_by(|a, b| a.settled_at.cmp(&b.settled_at))
        .ok_or(ReceiptError::NotSettled)?;
    let code = cdr.currency.as_str();
    let money = |d: Decimal| {
        Money::parse(d, code)
            .map(|m| m.minor())
            .map_err(|e| ReceiptError::Amount(e.to_string()))
    };
    let excl = money(cdr.total_cost.excl_vat)?;
    let incl = money(cdr.total_cost.incl_vat.unwrap_or(cdr.total_cost.excl_vat))?;
    let paid = money(
        s.amount
            .parse()
            .map_err(|_| ReceiptError::Amount(s.amount.clone()))?,
    )?;
    Ok(Receipt {
        number: format!("{}-{}", s.station_id, s.psp_ref),
        session_id: session_id.to_owned(),
        station_id: s.station_id.clone(),
        started_at: cdr.start_date_time.to_string(),
        ended_at: cdr.end_date_time.to_string(),
        energy_kwh: cdr.total_energy.normalize().to_string(),
        currency: code.to_owned(),
        total_excl_vat_minor: excl,
        total_incl_vat_minor: incl,
        vat_minor: incl - excl,
        paid_minor: paid,
        balance_minor: paid - incl,
        psp_ref: s.psp_ref.clone(),
        settled_at: s.settled_at.clone(),
        terminal_receipt_id: s.receipt_id.clone(),
        terminal_receipt_url: s.receipt_url.clone(),
    })
}

/// `GET /api/sessions/{id}/receipt`: [`receipt`]; 404 without a CDR or a
/// settled payment.
async fn get_receipt(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let not_found = |why: String| ApiError::new(axum::http::StatusCode::NOT_FOUND, why);
    let Some(cdr) = app.store.cdr(&id).await? else {
        return Err(not_found(format!("no CDR of session {id}")));
    };
    let cdr = crate::billing::decode_cdr(cdr)
        .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let settlements = app.store.session_settlements(&id).await?;
    match receipt(&cdr, &id, &settlements) {
        Ok(r) => Ok(Json(r).into_response()),
        Err(e @ ReceiptError::NotSettled) => Err(not_found(e.to_string())),
        Err(e) => Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            e.to_string(),
        )),
    }
}

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/sessions/{id}/receipt", get(get_receipt))
        .route(
            "/api/stations/{id}/tariffs",
            get(get_tariffs).delete(clear_tariffs),
        )
        .route("/api/stations/{id}/tariffs/default", post(push_default))
}

/// `?evse_id=` of `GET /api/stations/{id}/tariffs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvseQuery {
    evse_id: Option<i32>,
}

/// `?evse_id=&tariff_id=` of `DELETE /api/stations/{id}/tariffs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClearQuery {
    evse_id: Option<i32>,
    tariff_id: Option<String>,
}

/// A 2.1 station connected here or elsewhere, else 404 (not connected) or
/// 422 (another version: tariffs are 2.1's).
async fn v21_station(app: &App, id: &str) -> Result<(), ApiError> {
    match app.gateway.connection(id).await? {
        ProtocolVersion::V21 => Ok(()),
        v => Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "{id} speaks OCPP {}: tariffs are sent to 2.1 stations only",
                crate::ocpp::version_name(v)
            ),
        )),
    }
}

fn negative(evse: Option<i32>) -> Result<(), ApiError> {
    match evse {
        Some(e) if e < 0 => Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "evse_id: 0 or more",
        )),
        _ => Ok(()),
    }
}

/// `GET /api/stations/{id}/tariffs`: GetTariffs, the station's answer.
async fn get_tariffs(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<EvseQuery>,
) -> ApiResult {
    negative(q.evse_id)?;
    v21_station(&app, &id).await?;
    let request = v21::GetTariffsRequest {
        evse_id: q.evse_id.unwrap_or(0),
        custom_data: None,
    };
    let answer = app
        .gateway
        .call::<v21::action::GetTariffs>(&id, request)
        .await?;
    Ok(Json(answer).into_response())
}

/// `DELETE /api/stations/{id}/tariffs`: ClearTariffs, the station's answer.
async fn clear_tariffs(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ClearQuery>,
) -> ApiResult {
    negative(q.evse_id)?;
    let tariff_ids = q
        .tariff_id
        .map(|t| {
            BoundedString::new(t).map(|t| vec![t]).map_err(|_| {
                ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "tariff_id: at most 60 characters",
                )
            })
        })
        .transpose()?;
    v21_station(&app, &id).await?;
    let request = v21::ClearTariffsRequest {
        tariff_ids,
        evse_id: q.evse_id,
        custom_data: None,
    };
    let answer = app
        .gateway
        .call::<v21::action::ClearTariffs>(&id, request)
        .await?;
    Ok(Json(answer).into_response())
}

/// `POST /api/stations/{id}/tariffs/default`: the default tariff now, to
/// the station's EVSEs and running transactions.
async fn push_default(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    v21_station(&app, &id).await?;
    match send_default(&app, &id, true).await {
        Ok(sent) => Ok(Json(sent).into_response()),
        Err(SendError::Call(e)) => Err(e.into()),
        Err(e @ (SendError::NoTariff(_) | SendError::NotLocal(_))) => Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            e.to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use evproto_ocpi::tariff::{ChargingPeriod, Session};
    use proptest::prelude::*;
    use serde_json::json;

    fn ocpi(v: serde_json::Value) -> v221::Tariff {
        let mut t = json!({"country_code": "NL", "party_id": "EVP", "id": "default",
            "last_updated": "2026-03-01T00:00:00Z"});
        for (k, x) in v.as_object().unwrap() {
            t[k] = x.clone();
        }
        serde_json::from_value(t).unwrap()
    }

    #[test]
    fn dimensions_restrictions_and_bounds_convert() {
        let t = ocpi(json!({"currency": "EUR",
            "tariff_alt_text": [{"language": "en", "text": "0.25/kWh"}],
            "min_price": {"excl_vat": 1, "incl_vat": 1.2},
            "elements": [
                {"price_components": [{"type": "ENERGY", "price": 0.30, "vat": 21, "step_size": 1}],
                 "restrictions": {"start_time": "18:00", "end_time": "22:00", "day_of_week": ["MONDAY"], "min_kwh": 5, "min_power": 11}},
                {"price_components": [{"type": "ENERGY", "price": 0.25, "vat": 21, "step_size": 1},
                                      {"type": "TIME", "price": 1.20, "vat": 21, "step_size": 1}]},
                {"price_components": [{"type": "FLAT", "price": 0.5, "step_size": 1},
                                      {"type": "PARKING_TIME", "price": 6, "step_size": 1}],
                 "restrictions": {"start_date": "2026-01-01"}}]}));
        let c = to_ocpp21(&t).unwrap();
        let energy = c.energy.as_ref().unwrap();
        assert_eq!(energy.prices.len(), 2);
        let cond = energy.prices[0].conditions.as_ref().unwrap();
        assert_eq!(cond.start_time_of_day.as_deref(), Some("18:00"));
        assert_eq!(cond.end_time_of_day.as_deref(), Some("22:00"));
        assert_eq!(cond.day_of_week, Some(vec![v21::DayOfWeekEnumType::Monday]));
        assert_eq!(cond.min_energy, Some(Decimal::from(5000)));
        assert_eq!(cond.min_power, Some(Decimal::from(11000)));
        assert!(energy.prices[1].conditions.is_none());
        assert_eq!(energy.tax_rates.as_ref().unwrap()[0].tax, Decimal::from(21));
        let time = c.charging_time.as_ref().unwrap();
        assert_eq!(time.prices[0].price_minute, Decimal::new(2, 2));
        assert_eq!(
            c.idle_time.as_ref().unwrap().prices[0].price_minute,
            Decimal::new(1, 1)
        );
        let fixed = c.fixed_fee.as_ref().unwrap();
        assert_eq!(fixed.prices[0].price_fixed, Decimal::new(5, 1));
        assert_eq!(
            fixed.prices[0]
                .conditions
                .as_ref()
                .unwrap()
                .valid_from_date
                .as_deref(),
            Some("2026-01-01")
        );
        assert!(fixed.tax_rates.is_none(), "no VAT given: none applies");
        assert_eq!(
            c.min_cost.as_ref().unwrap().incl_tax,
            Some(Decimal::new(12, 1))
        );
        assert_eq!(
            c.description.as_ref().unwrap()[0].content.as_str(),
            "0.25/kWh"
        );
        assert!(c.tariff_id.as_str().starts_with("default-"));
        // the wire form is a valid 2.1 SetDefaultTariff
        let req = v21::SetDefaultTariffRequest {
            evse_id: 0,
            tariff: c.clone(),
            custom_data: None,
        };
        let back: v21::SetDefaultTariffRequest =
            evproto_ocpp_types::from_str(&evproto_ocpp_types::to_json(&req)).unwrap();
        assert_eq!(back.tariff, c);
        // another content, another id; the same content, the same id
        let mut t2 = t.clone();
        t2.elements[1].price_components[0].price = Decimal::new(26, 2);
        assert_ne!(to_ocpp21(&t2).unwrap().tariff_id, c.tariff_id);
        assert_eq!(to_ocpp21(&t).unwrap().tariff_id, c.tariff_id);
    }

    #[test]
    fn what_21_cannot_carry_is_a_typed_error() {
        let energy = |extra: serde_json::Value| {
            let mut e =
                json!({"price_components": [{"type": "ENERGY", "price": 0.3, "step_size": 1}]});
            for (k, x) in extra.as_object().unwrap() {
                e[k] = x.clone();
            }
            e
        };
        let reservation = ocpi(json!({"currency": "EUR", "elements": [
            energy(json!({"restrictions": {"reservation": "RESERVATION"}}))]}));
        assert_eq!(
            to_ocpp21(&reservation),
            Err(LocalCostError::Reservation { element: 0 })
        );
        let step = ocpi(json!({"currency": "EUR", "elements": [
            {"price_components": [{"type": "TIME", "price": 2, "step_size": 300}]}]}));
        assert_eq!(
            to_ocpp21(&step),
            Err(LocalCostError::StepSize {
                element: 0,
                step: 300
            })
        );
        let vat = ocpi(json!({"currency": "EUR", "elements": [
            {"price_components": [{"type": "ENERGY", "price": 0.3, "vat": 21, "step_size": 1}], "restrictions": {"min_kwh": 10}},
            {"price_components": [{"type": "ENERGY", "price": 0.4, "vat": 9, "step_size": 1}]}]}));
        assert_eq!(
            to_ocpp21(&vat),
            Err(LocalCostError::MixedVat {
                dimension: "ENERGY"
            })
        );
        let flat = ocpi(json!({"currency": "EUR", "elements": [
            {"price_components": [{"type": "FLAT", "price": 1, "step_size": 1}], "restrictions": {"min_kwh": 10}}]}));
        assert_eq!(
            to_ocpp21(&flat),
            Err(LocalCostError::FlatRestriction {
                element: 0,
                restriction: "min_kwh"
            })
        );
    }

    fn details(total: serde_json::Value, extra: serde_json::Value) -> v21::CostDetailsType {
        let mut d = json!({"totalCost": {"currency": "EUR", "typeOfCost": "NormalCost", "total": total},
            "totalUsage": {"energy": 1000, "chargingTime": 60, "idleTime": 0}});
        for (k, x) in extra.as_object().unwrap() {
            d[k] = x.clone();
        }
        evproto_ocpp_types::from_str(&d.to_string()).unwrap()
    }

    #[test]
    fn a_station_total_within_a_minor_unit_agrees() {
        let eur = Currency::from_code("EUR").unwrap();
        let csms = CsmsPrice {
            currency: eur,
            excl: Decimal::new(10_0004, 4),
            incl: Decimal::new(12_1050, 4),
        };
        // 12.1050 → 12.11 (half away from zero)
        let at = |incl: &str| details(json!({"inclTax": incl.parse::<f64>().unwrap()}), json!({}));
        assert_eq!(check_cost(&at("12.11"), csms), CostCheck::Agrees);
        assert_eq!(check_cost(&at("12.10"), csms), CostCheck::Agrees);
        assert_eq!(check_cost(&at("12.12"), csms), CostCheck::Agrees);
        let CostCheck::Differs(m) = check_cost(&at("12.13"), csms) else {
            panic!("2 cents off agrees");
        };
        assert_eq!(
            (m.station_minor, m.csms_minor, m.incl_tax),
            (Some(1213), 1211, true)
        );
        // excl. tax only: compared with the CSMS's excl. VAT (10.0004 → 10.00)
        let excl = details(json!({"exclTax": 10.01}), json!({}));
        assert_eq!(check_cost(&excl, csms), CostCheck::Agrees);
        let excl = details(json!({"exclTax": 12.11}), json!({}));
        assert!(matches!(check_cost(&excl, csms), CostCheck::Differs(_)));
        // failed to calculate, or another currency: never agrees
        let failed = details(
            json!({"inclTax": 12.11}),
            json!({"failureToCalculate": true, "failureReason": "no tariff"}),
        );
        let CostCheck::Differs(m) = check_cost(&failed, csms) else {
            panic!("a failure agrees");
        };
        assert_eq!(m.failure.as_deref(), Some("no tariff"));
        let mut usd = at("12.11");
        usd.total_cost.currency = BoundedString::new("USD").unwrap();
        assert!(matches!(check_cost(&usd, csms), CostCheck::Differs(_)));
    }

    #[test]
    fn a_running_cost_agrees_within_two_percent_and_a_minor_unit() {
        let csms = Money::parse(Decimal::new(1000, 2), "EUR").unwrap();
        assert_eq!(running_tolerance_minor(1000), 21);
        assert_eq!(running_tolerance_minor(0), 1);
        let at = |incl: f64| details(json!({"inclTax": incl}), json!({}));
        assert_eq!(check_running(&at(10.21), csms), Some(CostCheck::Agrees));
        assert_eq!(check_running(&at(9.79), csms), Some(CostCheck::Agrees));
        let Some(CostCheck::Differs(m)) = check_running(&at(10.50), csms) else {
            panic!("50 cents off agrees");
        };
        assert_eq!((m.station_minor, m.csms_minor), (Some(1050), 1000));
        // excl. tax only: not comparable with a running cost incl. VAT
        assert_eq!(
            check_running(&details(json!({"exclTax": 3.0}), json!({})), csms),
            None
        );
        // a station that failed to calculate differs
        let failed = details(json!({"exclTax": 0}), json!({"failureToCalculate": true}));
        assert!(matches!(
            check_running(&failed, csms),
            Some(CostCheck::Differs(_))
        ));
        // one alert per session
        let checks = RunningChecks::default();
        assert!(checks.first_mismatch("CS:1"));
        assert!(!checks.first_mismatch("CS:1"));
        assert!(checks.mismatched("CS:1") && !checks.mismatched("CS:2"));
        checks.forget("CS:1");
        assert!(!checks.mismatched("CS:1"));
    }

    #[test]
    fn a_receipt_is_the_csms_price_and_what_the_terminal_took() {
        let cdr: v221::Cdr = serde_json::from_value(json!({
            "country_code": "NL", "party_id": "EVP", "id": "CDR1",
            "start_date_time": "2026-03-01T10:00:00Z", "end_date_time": "2026-03-01T11:00:00Z",
            "cdr_token": {"country_code": "NL", "party_id": "EVP", "uid": "T1", "type": "RFID", "contract_id": "T1"},
            "auth_method": "WHITELIST",
            "cdr_location": {"id": "L1", "address": "a", "city": "c", "country": "NLD",
                "coordinates": {"latitude": "52.0", "longitude": "4.0"},
                "evse_uid": "E1", "evse_id": "E1", "connector_id": "1",
                "connector_standard": "IEC_62196_T2", "connector_format": "SOCKET", "connector_power_type": "AC_3_PHASE"},
            "currency": "EUR",
            "charging_periods": [{"start_date_time": "2026-03-01T10:00:00Z",
                "dimensions": [{"type": "ENERGY", "volume": 10}]}],
            "total_cost": {"excl_vat": 5.0, "incl_vat": 6.05},
            "total_energy": 10, "total_time": 1,
            "last_updated": "2026-03-01T11:00:00Z"
        }))
        .unwrap();
        let settled = |status: &str, amount: &str, at: &str| crate::store::Settlement {
            station_id: "CS".into(),
            psp_ref: format!("PSP-{at}"),
            session_id: Some("CS:1".into()),
            transaction_id: Some("1".into()),
            status: status.into(),
            amount: amount.into(),
            settled_at: at.into(),
            status_info: None,
            receipt_id: Some("R-1".into()),
            receipt_url: None,
        };
        assert_eq!(
            receipt(&cdr, "CS:1", &[settled("Rejected", "6.05", "1")]),
            Err(ReceiptError::NotSettled)
        );
        let r = receipt(
            &cdr,
            "CS:1",
            &[
                settled("Settled", "6.00", "1"),
                settled("Settled", "6.10", "2"),
            ],
        )
        .unwrap();
        assert_eq!(r.number, "CS-PSP-2", "the latest settlement");
        assert_eq!(
            (r.total_excl_vat_minor, r.total_incl_vat_minor, r.vat_minor),
            (500, 605, 105)
        );
        assert_eq!((r.paid_minor, r.balance_minor), (610, 5));
        assert_eq!(r.terminal_receipt_id.as_deref(), Some("R-1"));
        assert!(matches!(
            receipt(&cdr, "CS:1", &[settled("Settled", "six", "1")]),
            Err(ReceiptError::Amount(_))
        ));
    }

    /// The periods between register readings, as the CSMS's CDR has them
    /// (energy and charging time each).
    fn engine_session(points: &[(DateTime<Utc>, Decimal)]) -> Session {
        Session {
            start_date_time: points[0].0,
            end_date_time: points[points.len() - 1].0,
            charging_periods: points
                .windows(2)
                .map(|w| ChargingPeriod {
                    start_date_time: w[0].0,
                    energy: Some((w[1].1 - w[0].1) / Decimal::from(1000)),
                    time: Some(
                        Decimal::from((w[1].0 - w[0].0).num_seconds()) / Decimal::from(3600),
                    ),
                    ..ChargingPeriod::default()
                })
                .collect(),
        }
    }

    proptest! {
        /// The converted tariff, priced by a 2.1 station (the simulator's
        /// own reading of the 2.1 data types), costs what the OCPI engine
        /// charges for the same session: energy, time and flat prices, VAT,
        /// energy / duration / time-of-day restrictions, min and max price.
        #[test]
        fn a_station_prices_the_converted_tariff_as_the_engine(
            kwh_cents in 0i64..100, peak_cents in 0i64..100, hour_cents in 0i64..600,
            flat_cents in 0i64..300, vat in prop::sample::select(vec![None, Some(9i64), Some(21)]),
            min_kwh in 0i64..40, min_minutes in 0i64..120, peak_hour in 0u32..24,
            bounds in prop::option::of((0i64..500, 500i64..5000)),
            start_s in 0i64..(14 * 86_400), steps in prop::collection::vec((1i64..7200, 0i64..20_000), 1..8),
        ) {
            let vat_json = |c: serde_json::Value| {
                let mut c = c;
                if let Some(v) = vat { c["vat"] = json!(v); }
                c
            };
            let money = |c: i64| Decimal::new(c, 2);
            let mut t = json!({"currency": "EUR", "elements": [
                {"price_components": [vat_json(json!({"type": "ENERGY", "price": money(peak_cents), "step_size": 1}))],
                 "restrictions": {"start_time": format!("{peak_hour:02}:00"), "end_time": format!("{:02}:30", (peak_hour + 3) % 24)}},
                {"price_components": [vat_json(json!({"type": "ENERGY", "price": money(kwh_cents + 5), "step_size": 1}))],
                 "restrictions": {"min_kwh": min_kwh}},
                {"price_components": [vat_json(json!({"type": "ENERGY", "price": money(kwh_cents), "step_size": 1})),
                                      vat_json(json!({"type": "TIME", "price": money(hour_cents), "step_size": 1}))],
                 "restrictions": {"min_duration": min_minutes * 60}},
                {"price_components": [vat_json(json!({"type": "TIME", "price": money(hour_cents / 2), "step_size": 1})),
                                      vat_json(json!({"type": "FLAT", "price": money(flat_cents), "step_size": 1}))]}]});
            if let Some((lo, hi)) = bounds {
                t["min_price"] = json!({"excl_vat": money(lo)});
                t["max_price"] = json!({"excl_vat": money(hi)});
            }
            let ocpi = ocpi(t);
            let converted = to_ocpp21(&ocpi).unwrap();
            let start = DateTime::<Utc>::from_timestamp(1_767_225_600 + start_s, 0).unwrap();
            let mut points = vec![(start, Decimal::from(1_000))];
            for (s, wh) in &steps {
                let (t, w) = *points.last().unwrap();
                points.push((t + chrono::Duration::seconds(*s), w + Decimal::from(*wh)));
            }
            let engine = Tariff::try_from(&ocpi).unwrap();
            let priced = evproto_ocpi::tariff::price(&engine, &engine_session(&points), Some("UTC")).unwrap();
            let station = evproto_sim::tariff::price(&converted, &points).unwrap();
            let close = |a: Decimal, b: Decimal| (a - b).abs() < Decimal::new(1, 6);
            prop_assert!(close(priced.total_cost.excl, station.excl), "excl: engine {} station {}", priced.total_cost.excl, station.excl);
            prop_assert!(close(priced.total_cost.incl(), station.incl), "incl: engine {} station {}", priced.total_cost.incl(), station.incl);
        }
    }
}
