//! Periodic event streams (2.1, migration 24): the streams stations opened
//! (one row per station and stream, with its parameters and whether it is
//! closed) and the values they sent, as a time series.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{now, ts, Result, Store, StoreError};

/// A stream as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventStream {
    /// Its id on the station.
    pub stream_id: i32,
    /// The variable monitor it streams.
    pub monitor_id: i32,
    /// Seconds between the station's messages (`None`: the station's default).
    pub interval_s: Option<i32>,
    /// Values per message (`None`: the station's default).
    pub values: Option<i32>,
    /// When it was opened (RFC 3339).
    pub opened_at: String,
    /// When it was closed (by the station, or the operator).
    pub closed_at: Option<String>,
    /// Values kept.
    pub samples: i64,
}

/// One value of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamValue {
    /// When it was measured.
    pub at: DateTime<Utc>,
    /// The value as the station wrote it.
    pub value: String,
}

impl Store {
    /// Keeps a stream the station opened (replacing one of its id: a
    /// station that reopens it starts afresh, its values kept).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn open_event_stream(
        &self,
        station: &str,
        stream: i32,
        monitor: i32,
        interval_s: Option<i32>,
        values: Option<i32>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO event_streams (station_id, stream_id, monitor_id, interval_s, values_n, opened_at, closed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL) ON CONFLICT (station_id, stream_id) DO UPDATE SET \
             monitor_id = $3, interval_s = $4, values_n = $5, opened_at = $6, closed_at = NULL",
        )
        .bind(station)
        .bind(i64::from(stream))
        .bind(i64::from(monitor))
        .bind(interval_s.map(i64::from))
        .bind(values.map(i64::from))
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// New parameters of an open stream; whether it is kept and open.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn adjust_event_stream(
        &self,
        station: &str,
        stream: i32,
        interval_s: Option<i32>,
        values: Option<i32>,
    ) -> Result<bool> {
        let q = sqlx::query(
            "UPDATE event_streams SET interval_s = $1, values_n = $2 \
             WHERE station_id = $3 AND stream_id = $4 AND closed_at IS NULL",
        )
        .bind(interval_s.map(i64::from))
        .bind(values.map(i64::from));
        self.update_open_stream(q, station, stream).await
    }

    /// Marks a stream closed; whether it was open.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn close_event_stream(&self, station: &str, stream: i32) -> Result<bool> {
        let q = sqlx::query(
            "UPDATE event_streams SET closed_at = $1 \
             WHERE station_id = $2 AND stream_id = $3 AND closed_at IS NULL",
        )
        .bind(now());
        self.update_open_stream(q, station, stream).await
    }

    /// Runs `q`, an UPDATE of an open stream whose last two parameters are
    /// the station and the stream; whether it changed a row.
    async fn update_open_stream<'q>(
        &self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        station: &'q str,
        stream: i32,
    ) -> Result<bool> {
        Ok(q.bind(station)
            .bind(i64::from(stream))
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }

    /// Keeps the values of an open stream (one transaction; a value of the
    /// same time is kept once); how many were kept. Values of a stream that
    /// is not open are not kept.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn put_stream_values(
        &self,
        station: &str,
        stream: i32,
        values: &[StreamValue],
    ) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let open = sqlx::query(
            "SELECT 1 FROM event_streams WHERE station_id = $1 AND stream_id = $2 AND closed_at IS NULL",
        )
        .bind(station)
        .bind(i64::from(stream))
        .fetch_optional(&mut *tx)
        .await?;
        if open.is_none() {
            return Ok(0);
        }
        let mut kept = 0;
        for v in values {
            kept += sqlx::query(
                "INSERT INTO event_stream_values (station_id, stream_id, at, value) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(station)
            .bind(i64::from(stream))
            .bind(ts(v.at))
            .bind(&v.value)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(kept)
    }

    /// A station's streams, by id.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn event_streams(&self, station: &str) -> Result<Vec<EventStream>> {
        let rows = sqlx::query(
            "SELECT s.stream_id, s.monitor_id, s.interval_s, s.values_n, s.opened_at, s.closed_at, \
             (SELECT COUNT(*) FROM event_stream_values v WHERE v.station_id = s.station_id AND v.stream_id = s.stream_id) \
             FROM event_streams s WHERE s.station_id = $1 ORDER BY s.stream_id",
        )
        .bind(station)
        .fetch_all(&self.read)
        .await?;
        let int = |v: i64| i32::try_from(v).map_err(|_| StoreError::Corrupt("event_streams"));
        rows.iter()
            .map(|r| {
                Ok(EventStream {
                    stream_id: int(r.try_get(0)?)?,
                    monitor_id: int(r.try_get(1)?)?,
                    interval_s: r.try_get::<Option<i64>, _>(2)?.map(int).transpose()?,
                    values: r.try_get::<Option<i64>, _>(3)?.map(int).transpose()?,
                    opened_at: r.try_get(4)?,
                    closed_at: r.try_get(5)?,
                    samples: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// A stream's values from `since` on, oldest first, at most `limit`.
    ///
    /// # Errors
    ///
    /// The database failed, or a time is not readable.
    pub async fn stream_values(
        &self,
        station: &str,
        stream: i32,
        since: Option<DateTime<Utc>>,
        limit: i64,
    ) -> Result<Vec<StreamValue>> {
        let rows = sqlx::query(
            "SELECT at, value FROM event_stream_values WHERE station_id = $1 AND stream_id = $2 AND at >= $3 \
             ORDER BY at LIMIT $4",
        )
        .bind(station)
        .bind(i64::from(stream))
        .bind(since.map(ts).unwrap_or_default())
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let at: String = r.try_get(0)?;
                Ok(StreamValue {
                    at: DateTime::parse_from_rfc3339(&at)
                        .map_err(|_| StoreError::Corrupt("event_stream_values.at"))?
                        .with_timezone(&Utc),
                    value: r.try_get(1)?,
                })
            })
            .collect()
    }
}
