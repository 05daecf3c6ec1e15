//! The outbox: side effects (billing, payment capture, roaming pushes)
//! written in the same database transaction as the message that causes
//! them, run after it, retried with a backoff until done or given up.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{now, ts, Result, Store};

/// The longest wait between two attempts at an outbox entry.
pub const OUTBOX_MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(600);

/// The wait after the `attempts`-th failed attempt at an outbox entry:
/// `base`, doubled per attempt, at most [`OUTBOX_MAX_DELAY`].
pub fn outbox_backoff(attempts: i64, base: std::time::Duration) -> std::time::Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 31)).unwrap_or(31);
    base.saturating_mul(1u32 << doublings).min(OUTBOX_MAX_DELAY)
}

/// What [`Store::outbox_add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxAdded {
    /// Added, due now: the caller may run it at once.
    Due,
    /// Added behind its lane's retry hold.
    Held,
    /// Not added: the entry exists, or a pending one does the same work.
    No,
}

impl Store {
    /// Side effects due now (not done, their retry time reached), oldest
    /// first: (id, kind, subject).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn outbox_pending(&self, limit: i64) -> Result<Vec<(String, String, String)>> {
        let rows = sqlx::query(
            "SELECT id, kind, subject FROM outbox WHERE done_at IS NULL AND (next_attempt_at IS NULL OR next_attempt_at <= $2) ORDER BY created_at, id LIMIT $1",
        )
        .bind(limit)
        .bind(now())
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// The entries of `kind` in `lane` due now, oldest first: (id, subject).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn outbox_pending_in(
        &self,
        kind: &str,
        lane: &str,
        limit: i64,
    ) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT id, subject FROM outbox WHERE kind = $1 AND lane = $2 AND done_at IS NULL AND (next_attempt_at IS NULL OR next_attempt_at <= $3) ORDER BY created_at, id LIMIT $4",
        )
        .bind(kind)
        .bind(lane)
        .bind(now())
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Whether an outbox entry is still to be done and due now: what a
    /// runner checks once it holds the entry's turn, so an entry another
    /// runner finished or put back is not run again.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn outbox_due(&self, id: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM outbox WHERE id = $1 AND done_at IS NULL AND (next_attempt_at IS NULL OR next_attempt_at <= $2)",
        )
        .bind(id)
        .bind(now())
        .fetch_optional(&self.read)
        .await?;
        Ok(row.is_some())
    }

    /// The time until the next retry of a pending entry (zero when one is
    /// due), `None` when no entry waits for a retry.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn outbox_next_retry(&self) -> Result<Option<std::time::Duration>> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE done_at IS NULL AND next_attempt_at IS NOT NULL",
        )
        .fetch_one(&self.read)
        .await?;
        let next: Option<String> = row.try_get(0)?;
        Ok(next
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| {
                (t.with_timezone(&Utc) - Utc::now())
                    .to_std()
                    .unwrap_or_default()
            }))
    }

    /// Adds an outbox entry `id` of `kind` on `subject` (outside a station
    /// message's transaction: OCPI pushes), in `lane`:
    /// - not when an entry with this id exists, done or not (an id made
    ///   from the subject makes an effect happen once, ever);
    /// - not when an entry of the same kind and subject is pending and
    ///   waiting for a retry: it does the same work when it runs (entries
    ///   act on the subject's state as it is then);
    /// - held until the lane's hold when an entry of the lane waits for a
    ///   retry (its partner is down: no new attempt before the retry).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn outbox_add(
        &self,
        id: &str,
        kind: &str,
        subject: &str,
        lane: &str,
    ) -> Result<OutboxAdded> {
        let now = now();
        let hold: Option<String> = sqlx::query(
            "SELECT MAX(next_attempt_at) FROM outbox WHERE kind = $1 AND lane = $2 AND done_at IS NULL AND next_attempt_at > $3",
        )
        .bind(kind)
        .bind(lane)
        .bind(&now)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        let added = sqlx::query(
            "INSERT INTO outbox (id, kind, subject, created_at, attempts, next_attempt_at, lane) \
             SELECT $1, $2, $3, $4, 0, $5, $6 WHERE NOT EXISTS \
             (SELECT 1 FROM outbox WHERE kind = $2 AND subject = $3 AND done_at IS NULL AND next_attempt_at > $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(kind)
        .bind(subject)
        .bind(&now)
        .bind(hold.as_deref())
        .bind(lane)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(match (added, hold) {
            (0, _) => OutboxAdded::No,
            (_, None) => OutboxAdded::Due,
            (_, Some(_)) => OutboxAdded::Held,
        })
    }

    /// Marks an outbox entry done (in the next group commit; an entry done
    /// already stays as it was).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn outbox_done(&self, id: &str) -> Result<()> {
        self.writer
            .write(vec![crate::writer::Op::OutboxDone { id: id.to_owned() }])
            .await
    }

    /// Records a failed attempt at an outbox entry: it stays pending and is
    /// due again after [`outbox_backoff`] of its attempts; returns that
    /// delay.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn outbox_failed(
        &self,
        id: &str,
        error: &str,
        base: std::time::Duration,
    ) -> Result<std::time::Duration> {
        let attempts: Option<i64> = sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $1 WHERE id = $2 RETURNING attempts",
        )
        .bind(error)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
        let delay = outbox_backoff(attempts.unwrap_or(1), base);
        let until = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        sqlx::query("UPDATE outbox SET next_attempt_at = $1 WHERE id = $2")
            .bind(ts(Utc::now() + until))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(delay)
    }

    /// Holds every pending entry of `kind` in `lane` until `delay` from now
    /// (none is moved earlier): their partner is down, so none of them is
    /// tried before the retry that found it so.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn outbox_hold(
        &self,
        kind: &str,
        lane: &str,
        delay: std::time::Duration,
    ) -> Result<()> {
        let until = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        let until = ts(Utc::now() + until);
        sqlx::query(
            "UPDATE outbox SET next_attempt_at = $3 WHERE kind = $1 AND lane = $2 AND done_at IS NULL AND (next_attempt_at IS NULL OR next_attempt_at < $3)",
        )
        .bind(kind)
        .bind(lane)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends an outbox entry that cannot succeed (the partner refused the
    /// object itself), keeping the reason.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn outbox_give_up(&self, id: &str, error: &str) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $1, done_at = $2 WHERE id = $3 AND done_at IS NULL",
        )
        .bind(error)
        .bind(now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
