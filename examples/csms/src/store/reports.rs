//! What the operator console reads across aggregates: the network's
//! counters, the live power of active sessions, energy and revenue per day,
//! and the payments list. Read-only queries on the read pool; each bounded
//! (a window of days, a page, the active sessions) so a network of 20,000
//! stations answers them in one round trip each.

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::Row;

use super::paging::{time_conds, Cond, Keyset, ListQuery, Page};
use super::{Result, Store, StoreError};

/// Counters of the overview.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Registered (or booted) stations.
    pub stations: i64,
    /// Sessions in progress.
    pub active_sessions: i64,
}

/// The power an active session draws now: its latest `Power.Active.Import`
/// reading, in W.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LivePower {
    /// Session id.
    pub session_id: String,
    /// Station identity.
    pub station: String,
    /// W (readings in kW are converted).
    pub power_w: Decimal,
    /// When it was read (RFC 3339, as the station sent it).
    pub at: String,
}

/// One day's energy and revenue in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Day {
    /// `YYYY-MM-DD` (UTC) of the sessions' start.
    pub day: String,
    /// ISO 4217.
    pub currency: String,
    /// Priced sessions.
    pub sessions: u64,
    /// kWh, 3 decimals at most.
    pub energy_kwh: String,
    /// Revenue incl. VAT, 2 decimals at most.
    pub revenue_incl_vat: String,
}

/// A station's uptime.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Uptime {
    /// Identity.
    pub station: String,
    /// Share of the time since the CSMS first saw it that it was
    /// connected, 0 to 1 (4 decimals).
    pub uptime: f64,
    /// Connected now.
    pub online: bool,
}

/// A payment as listed: the session it settles and what happened to it.
#[derive(Debug, Serialize)]
pub struct PaymentRow {
    /// The session.
    pub session_id: String,
    /// Its station.
    pub station: Option<String>,
    /// The token that paid.
    pub id_token: String,
    /// Held at start (major units, as stored).
    pub held: String,
    /// `held`, `captured`, `released`, ...
    pub status: String,
    /// The receipt once captured (JSON, as stored).
    pub receipt: Option<Box<RawValue>>,
    /// Last change.
    pub updated_at: String,
}

fn dec(s: &str, what: &'static str) -> Result<Decimal> {
    Decimal::from_str(s.trim()).map_err(|_| StoreError::Corrupt(what))
}

impl Store {
    /// Stations and active sessions, counted.
    pub async fn network_counts(&self) -> Result<Counts> {
        let stations: i64 = sqlx::query("SELECT COUNT(*) FROM stations")
            .fetch_one(self.reader())
            .await?
            .try_get(0)?;
        let active_sessions: i64 =
            sqlx::query("SELECT COUNT(*) FROM sessions WHERE status = 'Active'")
                .fetch_one(self.reader())
                .await?
                .try_get(0)?;
        Ok(Counts {
            stations,
            active_sessions,
        })
    }

    /// The latest power reading of each active session (of one station, or
    /// all), at most `limit`.
    pub async fn live_power(&self, station: Option<&str>, limit: i64) -> Result<Vec<LivePower>> {
        let mut sql = String::from(
            "SELECT s.id, s.station_id, m.value, m.unit, m.ts FROM sessions s \
             JOIN meter_values m ON m.session_id = s.id AND m.measurand = 'Power.Active.Import' \
             AND m.ts = (SELECT MAX(m2.ts) FROM meter_values m2 \
                         WHERE m2.session_id = s.id AND m2.measurand = 'Power.Active.Import') \
             WHERE s.status = 'Active'",
        );
        if station.is_some() {
            sql.push_str(" AND s.station_id = $2");
        }
        sql.push_str(" ORDER BY s.id LIMIT $1");
        let mut q = sqlx::query(&sql).bind(limit);
        if let Some(st) = station {
            q = q.bind(st);
        }
        let rows = q.fetch_all(self.reader()).await?;
        rows.iter()
            .map(|r| {
                let value = dec(&r.try_get::<String, _>(2)?, "meter_values.value")?;
                let unit: Option<String> = r.try_get(3)?;
                let power_w = match unit.as_deref() {
                    Some("kW") => value * Decimal::from(1000),
                    _ => value,
                };
                Ok(LivePower {
                    session_id: r.try_get(0)?,
                    station: r.try_get(1)?,
                    power_w: power_w.normalize(),
                    at: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Energy and revenue per day and currency of the priced sessions that
    /// started at or after `since` (RFC 3339), newest day first. Sums are
    /// exact (decimal), rounded only for display.
    pub async fn daily(&self, since: &str) -> Result<Vec<Day>> {
        let rows = sqlx::query(
            "SELECT COALESCE(s.started_at, c.created_at), c.currency, c.total_incl, s.energy_wh \
             FROM cdrs c LEFT JOIN sessions s ON s.id = c.session_id \
             WHERE COALESCE(s.started_at, c.created_at) >= $1",
        )
        .bind(since)
        .fetch_all(self.reader())
        .await?;
        let mut days: BTreeMap<(String, String), (u64, Decimal, Decimal)> = BTreeMap::new();
        for r in rows {
            let at: String = r.try_get(0)?;
            let day: String = at.chars().take(10).collect();
            let e = days.entry((day, r.try_get(1)?)).or_default();
            e.0 += 1;
            e.2 += dec(&r.try_get::<String, _>(2)?, "cdrs.total_incl")?;
            if let Some(wh) = r.try_get::<Option<String>, _>(3)? {
                e.1 += dec(&wh, "sessions.energy_wh")? / Decimal::from(1000);
            }
        }
        Ok(days
            .into_iter()
            .rev()
            .map(|((day, currency), (sessions, kwh, incl))| Day {
                day,
                currency,
                sessions,
                energy_kwh: kwh.round_dp(3).normalize().to_string(),
                revenue_incl_vat: incl.round_dp(2).normalize().to_string(),
            })
            .collect())
    }

    /// Payments, latest change first; `station`, `status` and the time of
    /// the last change filter.
    pub async fn payments_page(&self, q: &ListQuery) -> Result<Page<PaymentRow>> {
        let mut conds = Vec::new();
        if let Some(s) = &q.station {
            conds.push(Cond::Cmp("s.station_id", "=", s.clone()));
        }
        if let Some(s) = &q.status {
            conds.push(Cond::Cmp("p.status", "=", s.clone()));
        }
        time_conds(&mut conds, "p.updated_at", q);
        let ks = Keyset {
            from: "payments p LEFT JOIN sessions s ON s.id = p.session_id",
            cols:
                "p.session_id, s.station_id, p.id_token, p.held, p.status, p.receipt, p.updated_at",
            keys: &["p.updated_at", "p.session_id"],
            desc: true,
        };
        let (rows, next, total) = self.page(&ks, conds, q).await?;
        let items = rows
            .iter()
            .map(|r| {
                let receipt: Option<String> = r.try_get(5)?;
                Ok(PaymentRow {
                    session_id: r.try_get(0)?,
                    station: r.try_get(1)?,
                    id_token: r.try_get(2)?,
                    held: r.try_get(3)?,
                    status: r.try_get(4)?,
                    receipt: receipt
                        .map(|t| {
                            RawValue::from_string(t)
                                .map_err(|_| StoreError::Corrupt("payments.receipt"))
                        })
                        .transpose()?,
                    updated_at: r.try_get(6)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Page { items, next, total })
    }

    /// A station's reports (`kind` as [`ListQuery::status`]), newest
    /// first, paged by arrival.
    pub async fn station_reports_page(
        &self,
        station: &str,
        q: &ListQuery,
    ) -> Result<Page<super::StationReport>> {
        let mut conds = vec![Cond::Cmp("station_id", "=", station.to_owned())];
        if let Some(k) = &q.status {
            conds.push(Cond::Cmp("kind", "=", k.clone()));
        }
        let ks = Keyset {
            from: "station_reports",
            cols: "kind, key, body, received_at",
            keys: &["received_at", "kind", "key"],
            desc: true,
        };
        let (rows, next, total) = self.page(&ks, conds, q).await?;
        let items = rows
            .iter()
            .map(super::StationReport::from_row)
            .collect::<Result<_>>()?;
        Ok(Page { items, next, total })
    }

    /// Uptime per station, by identity, paged: the share of time connected
    /// since the CSMS first saw it, and whether it is online now.
    pub async fn uptime_page(&self, q: &ListQuery) -> Result<Page<Uptime>> {
        let mut conds = Vec::new();
        if let Some(s) = &q.station {
            conds.push(Cond::Cmp("station_id", "=", s.clone()));
        }
        let ks = Keyset {
            from: "station_uptime",
            cols: "station_id, tracked_since, online_since, online_ms",
            keys: &["station_id"],
            desc: false,
        };
        let (rows, next, total) = self.page(&ks, conds, q).await?;
        let now = chrono::Utc::now();
        let items = rows
            .iter()
            .map(|r| {
                let (station, ratio, online) = super::alerts::uptime_of(r, now)?;
                Ok(Uptime {
                    station,
                    uptime: (ratio * 10_000.0).round() / 10_000.0,
                    online,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Page { items, next, total })
    }

    /// Deletes a tariff; whether there was one.
    pub async fn delete_tariff(&self, id: &str) -> Result<bool> {
        let gone = sqlx::query("DELETE FROM tariffs WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?
            .rows_affected()
            == 1;
        self.forget_tariff(id);
        Ok(gone)
    }
}

/// What `/metrics` shows, counted by the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricCounts {
    /// Registered stations.
    pub stations: i64,
    /// Sessions in progress.
    pub sessions_active: i64,
    /// Sessions completed.
    pub sessions_completed: i64,
    /// Driver tokens.
    pub tokens: i64,
    /// Alerts not cleared.
    pub alerts_open: i64,
}

impl Store {
    /// Counts for metrics: (stations, active sessions, completed sessions, tokens).
    pub async fn counts(&self) -> Result<(i64, i64, i64, i64)> {
        let one = |sql: &'static str| async move {
            sqlx::query(sql)
                .fetch_one(&self.pool)
                .await
                .and_then(|r| r.try_get::<i64, _>(0))
        };
        Ok((
            one("SELECT COUNT(*) FROM stations").await?,
            one("SELECT COUNT(*) FROM sessions WHERE status = 'Active'").await?,
            one("SELECT COUNT(*) FROM sessions WHERE status = 'Completed'").await?,
            one("SELECT COUNT(*) FROM tokens").await?,
        ))
    }

    /// The counts of `/metrics`, one aggregate query on the read pool.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn metric_counts(&self) -> Result<MetricCounts> {
        let r = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM stations), \
             (SELECT COUNT(*) FROM sessions WHERE status = 'Active'), \
             (SELECT COUNT(*) FROM sessions WHERE status = 'Completed'), \
             (SELECT COUNT(*) FROM tokens), \
             (SELECT COUNT(*) FROM alerts WHERE cleared_at IS NULL)",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(MetricCounts {
            stations: r.try_get(0)?,
            sessions_active: r.try_get(1)?,
            sessions_completed: r.try_get(2)?,
            tokens: r.try_get(3)?,
            alerts_open: r.try_get(4)?,
        })
    }
}
