//! The site's power over time (smart charging, `crate::smart`): at each
//! recomputation and every half minute, the site limit, the power the
//! CSMS planned (the sum of the shares it sent) and the power delivered
//! (the sum of the active sessions' latest `Power.Active.Import`). Kept
//! for [`SITE_POWER_KEEP_DAYS`] days.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::Row;

use super::{ts, Result, Store, StoreError};

/// How long samples are kept.
pub const SITE_POWER_KEEP_DAYS: i64 = 7;

/// One sample of the site's power.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SitePower {
    /// When, RFC 3339 (milliseconds, UTC).
    pub at: String,
    /// The site limit in force, W.
    pub limit_w: i64,
    /// The power planned: the sum of the shares, W.
    pub planned_w: Decimal,
    /// The power delivered: the sum of the latest readings, W (`None`: no
    /// session reported one).
    pub delivered_w: Option<Decimal>,
}

impl Store {
    /// Records a sample (one per instant: a second one at the same
    /// millisecond replaces it) and forgets those older than
    /// [`SITE_POWER_KEEP_DAYS`].
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn record_site_power(
        &self,
        at: DateTime<Utc>,
        limit_w: i64,
        planned_w: Decimal,
        delivered_w: Option<Decimal>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO site_power (at, limit_w, planned_w, delivered_w) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (at) DO UPDATE SET limit_w = excluded.limit_w, planned_w = excluded.planned_w, \
             delivered_w = excluded.delivered_w",
        )
        .bind(ts(at))
        .bind(limit_w)
        .bind(planned_w.to_string())
        .bind(delivered_w.map(|d| d.to_string()))
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM site_power WHERE at < $1")
            .bind(ts(at - Duration::days(SITE_POWER_KEEP_DAYS)))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The samples at or after `since`, oldest first (at most `limit`, the
    /// most recent).
    ///
    /// # Errors
    ///
    /// The database failed, or a stored value is not a number.
    pub async fn site_power(&self, since: DateTime<Utc>, limit: i64) -> Result<Vec<SitePower>> {
        let rows = sqlx::query(
            "SELECT at, limit_w, planned_w, delivered_w FROM site_power WHERE at >= $1 ORDER BY at DESC LIMIT $2",
        )
        .bind(ts(since))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        let dec = |s: String| {
            s.parse::<Decimal>()
                .map_err(|_| StoreError::Corrupt("site_power"))
        };
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(SitePower {
                    at: r.try_get(0)?,
                    limit_w: r.try_get(1)?,
                    planned_w: dec(r.try_get(2)?)?,
                    delivered_w: r.try_get::<Option<String>, _>(3)?.map(dec).transpose()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }

    /// The power the active sessions deliver now, W: the sum of each one's
    /// latest `Power.Active.Import` reading (`kW` readings converted), with
    /// the readings per session id; `None` when none reported one.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn delivered_power(&self) -> Result<(Option<Decimal>, Vec<(String, Decimal)>)> {
        let rows = sqlx::query(
            "SELECT m.session_id, m.value, m.unit FROM meter_values m JOIN sessions s ON s.id = m.session_id \
             WHERE s.status = 'Active' AND m.measurand = 'Power.Active.Import' AND m.ts = \
             (SELECT MAX(ts) FROM meter_values l WHERE l.session_id = m.session_id AND l.measurand = 'Power.Active.Import')",
        )
        .fetch_all(&self.read)
        .await?;
        let mut each = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = r.try_get(0)?;
            let value: String = r.try_get(1)?;
            let unit: Option<String> = r.try_get(2)?;
            let Ok(v) = value.trim().parse::<Decimal>() else {
                continue;
            };
            let w = match unit.as_deref() {
                Some("kW") => v * Decimal::from(1000),
                _ => v,
            };
            each.push((id, w));
        }
        let total = (!each.is_empty()).then(|| each.iter().map(|e| e.1).sum());
        Ok((total, each))
    }

    /// The active sessions' latest per-line currents: (session, line,
    /// A) from the last reading of `Current.Import` on `L1`, `L2` or `L3`
    /// (in A) each session has.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn line_currents(&self) -> Result<Vec<(String, String, Decimal)>> {
        let rows = sqlx::query(
            "SELECT m.session_id, m.measurand, m.value, m.unit FROM meter_values m JOIN sessions s ON s.id = m.session_id \
             WHERE s.status = 'Active' AND m.measurand IN ('Current.Import.L1', 'Current.Import.L2', 'Current.Import.L3') \
             AND m.ts = (SELECT MAX(ts) FROM meter_values l WHERE l.session_id = m.session_id \
             AND l.measurand IN ('Current.Import.L1', 'Current.Import.L2', 'Current.Import.L3'))",
        )
        .fetch_all(&self.read)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = r.try_get(0)?;
            let measurand: String = r.try_get(1)?;
            let value: String = r.try_get(2)?;
            let unit: Option<String> = r.try_get(3)?;
            let (Some(line), Ok(a), None | Some("A")) = (
                measurand.strip_prefix("Current.Import."),
                value.trim().parse::<Decimal>(),
                unit.as_deref(),
            ) else {
                continue;
            };
            out.push((id, line.to_owned(), a));
        }
        Ok(out)
    }

    /// The EVSEs each station reported a status for (EVSE ids above 0), by
    /// station.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn evse_counts(&self) -> Result<std::collections::HashMap<String, u32>> {
        let rows = sqlx::query(
            "SELECT station_id, COUNT(DISTINCT evse_id) FROM connectors WHERE evse_id > 0 GROUP BY station_id",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let n: i64 = r.try_get(1)?;
                Ok((r.try_get(0)?, u32::try_from(n).unwrap_or(u32::MAX)))
            })
            .collect()
    }
}
