//! Alerts (raised once per station and kind while open, cleared by id or
//! by kind), stations connecting and going away (their uptime and
//! `offline` alerts, in group commits), and uptime per station.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::paging::{time_conds, Cond, Keyset, ListQuery, Page};
use super::{now, random_hex, ts, Result, Store};

/// What [`Store::connections_changed`] did to stations' `offline` alerts.
#[derive(Debug, Default)]
pub struct ConnectionAlerts {
    /// Stations whose `offline` alert was raised, with its detail.
    pub raised: Vec<(String, Offline)>,
    /// Stations whose `offline` alert was cleared.
    pub cleared: Vec<String>,
}

/// The detail of an `offline` alert, as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Offline {
    /// When the station went away (as stored, see [`now`]).
    pub since: String,
}

/// An alert as listed.
#[derive(Debug, Serialize)]
pub struct AlertRow {
    /// Its id (`POST /api/alerts/{id}/clear`).
    pub id: String,
    /// The station (empty: the CSMS's own).
    pub station: String,
    /// What kind (`fault`, `offline`, `security`, ...).
    pub kind: String,
    /// In words ([`crate::alerts::message`]).
    pub message: String,
    /// What was stored with it (JSON).
    pub detail: Option<Box<serde_json::value::RawValue>>,
    /// When raised (RFC 3339).
    pub raised_at: String,
    /// When cleared.
    pub cleared_at: Option<String>,
}

/// The columns [`AlertRow::from_row`] reads, in its order.
const ALERT_COLS: &str = "id, station_id, kind, detail, raised_at, cleared_at";

impl AlertRow {
    /// From a row of [`ALERT_COLS`].
    fn from_row(r: &AnyRow) -> Result<AlertRow> {
        let station: String = r.try_get(1)?;
        let kind: String = r.try_get(2)?;
        let detail: String = r.try_get(3)?;
        Ok(AlertRow {
            id: r.try_get(0)?,
            message: crate::alerts::message(&kind, &station, &detail),
            detail: serde_json::value::RawValue::from_string(detail).ok(),
            station,
            kind,
            raised_at: r.try_get(4)?,
            cleared_at: r.try_get(5)?,
        })
    }
}

/// A `station_uptime` row (`station_id, tracked_since, online_since,
/// online_ms`) as of `now`: the station, the share of the time since it was
/// first tracked that it was connected (0 to 1), and whether it is online.
pub(crate) fn uptime_of(r: &AnyRow, now: DateTime<Utc>) -> Result<(String, f64, bool)> {
    let parse = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    let id: String = r.try_get(0)?;
    let tracked: String = r.try_get(1)?;
    let since: Option<String> = r.try_get(2)?;
    let mut ms: i64 = r.try_get(3)?;
    if let Some(s) = since.as_deref().and_then(parse) {
        ms += (now - s).num_milliseconds().max(0);
    }
    let total = parse(&tracked)
        .map(|t| (now - t).num_milliseconds())
        .unwrap_or(0)
        .max(1);
    Ok((id, (ms as f64 / total as f64).min(1.0), since.is_some()))
}

/// Whether an alert of `kind` is open for `station`.
pub(crate) async fn open_alert<'e>(
    e: impl sqlx::Executor<'e, Database = sqlx::Any>,
    station: Option<&str>,
    kind: &str,
) -> Result<bool> {
    Ok(sqlx::query(
        "SELECT id FROM alerts WHERE kind = $1 AND station_id = $2 AND cleared_at IS NULL",
    )
    .bind(kind)
    .bind(station.unwrap_or(""))
    .fetch_optional(e)
    .await?
    .is_some())
}

/// Inserts an open alert; its id.
pub(crate) async fn insert_alert<'e>(
    e: impl sqlx::Executor<'e, Database = sqlx::Any>,
    station: Option<&str>,
    kind: &str,
    detail: &Value,
) -> Result<String> {
    let id = random_hex(8);
    sqlx::query(
        "INSERT INTO alerts (id, station_id, kind, detail, raised_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(station.unwrap_or(""))
    .bind(kind)
    .bind(detail.to_string())
    .bind(now())
    .execute(e)
    .await?;
    Ok(id)
}

impl Store {
    /// Raises an alert unless the same kind is already open for the
    /// station (a repeated fault is one alert); returns its id when new.
    pub async fn raise_alert(
        &self,
        station: Option<&str>,
        kind: &str,
        detail: &Value,
    ) -> Result<Option<String>> {
        if open_alert(&self.read, station, kind).await? {
            return Ok(None);
        }
        insert_alert(&self.pool, station, kind, detail)
            .await
            .map(Some)
    }

    /// Raises an alert even when one of its kind is open for the station
    /// (the caller raises it once per thing, e.g. per session); its id.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn add_alert(
        &self,
        station: Option<&str>,
        kind: &str,
        detail: &Value,
    ) -> Result<String> {
        insert_alert(&self.pool, station, kind, detail).await
    }

    /// Clears open alerts of a kind at a station; the number cleared.
    pub async fn clear_alerts(&self, station: &str, kind: &str) -> Result<u64> {
        // most reports clear nothing: learn it without the write connection
        if sqlx::query(
            "SELECT 1 FROM alerts WHERE station_id = $1 AND kind = $2 AND cleared_at IS NULL",
        )
        .bind(station)
        .bind(kind)
        .fetch_optional(&self.read)
        .await?
        .is_none()
        {
            return Ok(0);
        }
        Ok(sqlx::query("UPDATE alerts SET cleared_at = $1 WHERE station_id = $2 AND kind = $3 AND cleared_at IS NULL")
            .bind(now())
            .bind(station)
            .bind(kind)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Clears one alert by id; false if there is no open alert with it.
    pub async fn clear_alert(&self, id: &str) -> Result<bool> {
        Ok(
            sqlx::query("UPDATE alerts SET cleared_at = $1 WHERE id = $2 AND cleared_at IS NULL")
                .bind(now())
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1,
        )
    }

    /// Alerts, newest first; only open ones with `open_only`.
    pub async fn alerts(&self, open_only: bool, limit: i64) -> Result<Vec<AlertRow>> {
        let filter = if open_only {
            "WHERE cleared_at IS NULL"
        } else {
            ""
        };
        let sql =
            format!("SELECT {ALERT_COLS} FROM alerts {filter} ORDER BY raised_at DESC LIMIT $1");
        let rows = sqlx::query(&sql).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(AlertRow::from_row).collect()
    }

    /// Alerts, newest first; `status` is `open` or `cleared`,
    /// `since`/`until` bound when they were raised.
    pub async fn alerts_page(&self, q: &ListQuery) -> Result<Page<AlertRow>> {
        let mut conds = Vec::new();
        if let Some(s) = &q.station {
            conds.push(Cond::Cmp("station_id", "=", s.clone()));
        }
        match q.status.as_deref() {
            Some("open") => conds.push(Cond::Fixed("cleared_at IS NULL")),
            Some(_) => conds.push(Cond::Fixed("cleared_at IS NOT NULL")),
            None => {}
        }
        time_conds(&mut conds, "raised_at", q);
        let ks = Keyset {
            from: "alerts",
            cols: ALERT_COLS,
            keys: &["raised_at", "id"],
            desc: true,
        };
        let (rows, next, total) = self.page(&ks, conds, q).await?;
        let items = rows.iter().map(AlertRow::from_row).collect::<Result<_>>()?;
        Ok(Page { items, next, total })
    }

    /// Stations that connected (`true`) or went away, in the order they
    /// did: their uptime kept and their `offline` alerts raised (gone) or
    /// cleared (back), all in one group commit, so a boot storm of
    /// thousands of stations is a few commits. What it did to the alerts.
    ///
    /// # Errors
    ///
    /// The store failed: nothing was kept.
    pub async fn connections_changed(
        &self,
        changes: &[(String, bool)],
    ) -> Result<ConnectionAlerts> {
        use std::collections::{HashMap, HashSet};
        let t = now();
        let at = Utc::now();
        let mut ids: Vec<&str> = changes.iter().map(|(s, _)| s.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        // what is stored of them: uptime, and which have an open `offline` alert
        let mut uptime: HashMap<String, (Option<DateTime<Utc>>, i64)> = HashMap::new();
        let mut offline: HashSet<String> = HashSet::new();
        for chunk in ids.chunks(128) {
            let list = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(",");
            let sql = format!(
                "SELECT station_id, online_since, online_ms FROM station_uptime WHERE station_id IN ({list})"
            );
            for r in self.read_with_ids(&sql, chunk).await? {
                let since: Option<String> = r.try_get(1)?;
                let since = since.as_deref().and_then(|s| {
                    DateTime::parse_from_rfc3339(s)
                        .ok()
                        .map(|t| t.with_timezone(&Utc))
                });
                uptime.insert(r.try_get(0)?, (since, r.try_get(2)?));
            }
            let sql = format!(
                "SELECT station_id FROM alerts WHERE kind = 'offline' AND cleared_at IS NULL AND station_id IN ({list})"
            );
            for r in self.read_with_ids(&sql, chunk).await? {
                offline.insert(r.try_get(0)?);
            }
        }
        let mut ops = Vec::new();
        let mut out = ConnectionAlerts::default();
        for (station, online) in changes {
            let (since, ms) = uptime.entry(station.clone()).or_insert((None, 0));
            if let Some(s) = since {
                *ms += (at - *s).num_milliseconds().max(0);
            }
            *since = online.then_some(at);
            if *online {
                if offline.remove(station) {
                    ops.push(crate::writer::Op::ClearAlerts {
                        station: station.clone(),
                        kind: "offline",
                    });
                    out.cleared.push(station.clone());
                }
            } else if offline.insert(station.clone()) {
                let detail = Offline { since: t.clone() };
                ops.push(crate::writer::Op::RaiseAlert {
                    id: random_hex(8),
                    station: station.clone(),
                    kind: "offline",
                    // one string field: encoding cannot fail
                    detail: serde_json::to_string(&detail).unwrap_or_default(),
                });
                out.raised.push((station.clone(), detail));
            }
        }
        ops.extend(
            uptime
                .into_iter()
                .map(|(station, (since, ms))| crate::writer::Op::Uptime {
                    station,
                    tracked_since: t.clone(),
                    online_since: since.map(ts),
                    online_ms: ms,
                }),
        );
        self.writer.write(ops).await?;
        Ok(out)
    }

    /// The rows of `sql` read with `ids` bound to its `$1`, `$2`, ...
    async fn read_with_ids(&self, sql: &str, ids: &[&str]) -> Result<Vec<AnyRow>> {
        let mut q = sqlx::query(sql);
        for id in ids {
            q = q.bind(*id);
        }
        Ok(q.fetch_all(&self.read).await?)
    }

    /// Uptime per station: (station, ratio online since tracking began, online now).
    pub async fn uptime(&self) -> Result<Vec<(String, f64, bool)>> {
        let rows = sqlx::query("SELECT station_id, tracked_since, online_since, online_ms FROM station_uptime ORDER BY station_id")
            .fetch_all(&self.read)
            .await?;
        let now = chrono::Utc::now();
        rows.iter().map(|r| uptime_of(r, now)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A station that goes away gets one typed `offline` alert (listed in
    /// words, its detail as stored); coming back clears it.
    #[tokio::test]
    async fn offline_alerts_are_raised_once_and_cleared_on_return() {
        let dir = std::env::temp_dir().join(format!("csms-alerts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("a.db").display());
        let store = Store::open(&url).await.unwrap();
        let gone = vec![("CP1".to_owned(), false)];
        let out = store.connections_changed(&gone).await.unwrap();
        assert_eq!(out.raised.len(), 1);
        let (station, detail) = &out.raised[0];
        assert_eq!(station, "CP1");
        // away again before coming back: still one alert
        assert!(store
            .connections_changed(&gone)
            .await
            .unwrap()
            .raised
            .is_empty());
        let open = store.alerts(true, 10).await.unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].kind, "offline");
        assert_eq!(open[0].message, "Station CP1 went offline.");
        let stored = open[0].detail.as_ref().map(|d| d.get().to_owned());
        assert_eq!(stored, Some(format!(r#"{{"since":"{}"}}"#, detail.since)));
        let back = vec![("CP1".to_owned(), true)];
        let out = store.connections_changed(&back).await.unwrap();
        assert_eq!(out.cleared, ["CP1"]);
        assert!(store.alerts(true, 10).await.unwrap().is_empty());
        assert_eq!(store.alerts(false, 10).await.unwrap().len(), 1);
    }
}
