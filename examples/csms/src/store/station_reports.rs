//! What stations report besides transactions (charging limits and needs,
//! monitoring, display messages, DER, settlements, ...), one row per
//! message, bounded per station.

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Result, Store, StoreError};

/// A station report as kept and shown: what a station sent besides its
/// transactions, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StationReport {
    /// What kind of report (`charging_limit`, `ev_charging_needs`, …).
    pub kind: String,
    /// What it is about within its kind (an EVSE, a request id, …).
    pub key: String,
    /// The message as the station sent it (or the detail the CSMS kept).
    pub body: Value,
    /// When the CSMS received it (RFC 3339, nanoseconds: the order of arrival).
    pub received_at: String,
}

impl StationReport {
    /// From a row of `kind, key, body, received_at`.
    pub(crate) fn from_row(r: &AnyRow) -> Result<StationReport> {
        let body: String = r.try_get(2)?;
        Ok(StationReport {
            kind: r.try_get(0)?,
            key: r.try_get(1)?,
            body: serde_json::from_str(&body).map_err(|_| StoreError::Corrupt("station report"))?,
            received_at: r.try_get(3)?,
        })
    }
}

/// Inserts a station report (`kind`, `key`, `body`) while the station has
/// fewer than `max_rows`; whether it was kept.
pub(crate) async fn insert_station_report<'e>(
    e: impl sqlx::Executor<'e, Database = sqlx::Any>,
    station: &str,
    (kind, key, body): (&str, &str, &Value),
    max_rows: i64,
) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO station_reports (station_id, kind, key, body, received_at)
         SELECT $1, $2, $3, $4, $5 WHERE (SELECT COUNT(*) FROM station_reports WHERE station_id = $1) < $6",
    )
    .bind(station)
    .bind(kind)
    .bind(key)
    .bind(body.to_string())
    .bind(Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true))
    .bind(max_rows)
    .execute(e)
    .await?
    .rows_affected();
    Ok(inserted > 0)
}

impl Store {
    /// Keeps a station report (`station_reports`) while the station has
    /// fewer than `max_rows`. Whether it was kept.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn add_station_report(
        &self,
        station: &str,
        kind: &str,
        key: &str,
        body: &Value,
        max_rows: i64,
    ) -> Result<bool> {
        insert_station_report(&self.pool, station, (kind, key, body), max_rows).await
    }

    /// A station's reports, of one kind or all, newest first, at most `limit`.
    ///
    /// # Errors
    ///
    /// The database failed or a stored body is not JSON.
    pub async fn station_reports(
        &self,
        station: &str,
        kind: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StationReport>> {
        let rows = match kind {
            Some(k) => sqlx::query("SELECT kind, key, body, received_at FROM station_reports WHERE station_id = $1 AND kind = $2 ORDER BY received_at DESC LIMIT $3")
                .bind(station)
                .bind(k)
                .bind(limit)
                .fetch_all(&self.read)
                .await?,
            None => sqlx::query("SELECT kind, key, body, received_at FROM station_reports WHERE station_id = $1 ORDER BY received_at DESC LIMIT $2")
                .bind(station)
                .bind(limit)
                .fetch_all(&self.read)
                .await?,
        };
        rows.iter().map(StationReport::from_row).collect()
    }

    /// The latest report of `kind` per station and key, for the stations
    /// with an active session (e.g. the EV's charging needs per EVSE, for
    /// smart charging): (station, report).
    ///
    /// # Errors
    ///
    /// The database failed or a stored body is not JSON.
    pub async fn latest_reports_of_active_stations(
        &self,
        kind: &str,
    ) -> Result<Vec<(String, StationReport)>> {
        let rows = sqlx::query(
            "SELECT r.kind, r.key, r.body, r.received_at, r.station_id FROM station_reports r \
             WHERE r.kind = $1 AND r.station_id IN (SELECT station_id FROM sessions WHERE status = 'Active') \
             AND r.received_at = (SELECT MAX(l.received_at) FROM station_reports l \
             WHERE l.station_id = r.station_id AND l.kind = r.kind AND l.key = r.key)",
        )
        .bind(kind)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(4)?, StationReport::from_row(r)?)))
            .collect()
    }

    /// The latest report of a kind per key (e.g. the charging limit per
    /// source and EVSE), newest first.
    ///
    /// # Errors
    ///
    /// The database failed or a stored body is not JSON.
    pub async fn latest_station_reports(
        &self,
        station: &str,
        kind: &str,
    ) -> Result<Vec<StationReport>> {
        let mut seen = std::collections::HashSet::new();
        Ok(self
            .station_reports(station, Some(kind), 10_000)
            .await?
            .into_iter()
            .filter(|r| seen.insert(r.key.clone()))
            .collect())
    }
}
