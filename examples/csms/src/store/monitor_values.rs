//! The value each variable monitor of a station last reported (2.x
//! NotifyEvent with a `variableMonitoringId`: alerting events, N07, and
//! periodic ones, N08), one row per monitor, replaced by the next.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{now, ts, Result, Store, StoreError};

/// A monitor's latest reported value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonitorValue {
    /// The monitor's id on the station.
    pub monitor_id: i32,
    /// Its component (`name`, `name[instance]`, `name@evse<id>`).
    pub component: String,
    /// Its variable (`name`, `name[instance]`).
    pub variable: String,
    /// The value reported (`actualValue`).
    pub value: String,
    /// Why: `Alerting`, `Delta` or `Periodic`.
    pub trigger: String,
    /// When the station saw it.
    pub at: DateTime<Utc>,
}

impl Store {
    /// Keeps each monitor's latest value (one transaction; a value older
    /// than the one kept, from a station's queue, does not replace it); a
    /// new monitor only while the station has fewer than `max_rows`. How
    /// many values were not kept for that.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn put_monitor_values(
        &self,
        station: &str,
        values: &[MonitorValue],
        max_rows: i64,
    ) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let received = now();
        let mut dropped = 0;
        for v in values {
            let kept = sqlx::query(
                "INSERT INTO monitor_values (station_id, monitor_id, component, variable, value, \
                 event_trigger, event_at, received_at) SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
                 WHERE (SELECT COUNT(*) FROM monitor_values WHERE station_id = $1) < $9 \
                 OR EXISTS (SELECT 1 FROM monitor_values WHERE station_id = $1 AND monitor_id = $2) \
                 ON CONFLICT (station_id, monitor_id) DO UPDATE SET component = $3, variable = $4, \
                 value = $5, event_trigger = $6, event_at = $7, received_at = $8 \
                 WHERE monitor_values.event_at <= $7",
            )
            .bind(station)
            .bind(i64::from(v.monitor_id))
            .bind(&v.component)
            .bind(&v.variable)
            .bind(&v.value)
            .bind(&v.trigger)
            .bind(ts(v.at))
            .bind(&received)
            .bind(max_rows)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            // an older value for a known monitor is not counted as dropped
            if kept == 0
                && !self
                    .has_monitor_value(&mut tx, station, v.monitor_id)
                    .await?
            {
                dropped += 1;
            }
        }
        tx.commit().await?;
        Ok(dropped)
    }

    async fn has_monitor_value(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        station: &str,
        monitor: i32,
    ) -> Result<bool> {
        Ok(
            sqlx::query("SELECT 1 FROM monitor_values WHERE station_id = $1 AND monitor_id = $2")
                .bind(station)
                .bind(i64::from(monitor))
                .fetch_optional(&mut **tx)
                .await?
                .is_some(),
        )
    }

    /// A station's monitors' latest values, by monitor id.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn monitor_values(&self, station: &str) -> Result<Vec<MonitorValue>> {
        let rows = sqlx::query(
            "SELECT monitor_id, component, variable, value, event_trigger, event_at \
             FROM monitor_values WHERE station_id = $1 ORDER BY monitor_id LIMIT 10000",
        )
        .bind(station)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get(0)?;
                let at: String = r.try_get(5)?;
                Ok(MonitorValue {
                    monitor_id: i32::try_from(id)
                        .map_err(|_| StoreError::Corrupt("monitor_values.monitor_id"))?,
                    component: r.try_get(1)?,
                    variable: r.try_get(2)?,
                    value: r.try_get(3)?,
                    trigger: r.try_get(4)?,
                    at: DateTime::parse_from_rfc3339(&at)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|_| StoreError::Corrupt("monitor_values.event_at"))?,
                })
            })
            .collect()
    }
}
