//! What the roaming side ([`crate::roaming`]) keeps:
//!
//! - `ocpi_parties` and `ocpi_objects` (migration 4): the partners, each
//!   with the token it presents and its registration, and the OCPI objects
//!   by module and key;
//!
//! and since migration 9:
//!
//! - `ocpi_sessions`: which partner a session belongs to (`owner`, the
//!   `CC/PID` of the token's eMSP, and the token's uid), and the ids the
//!   partner knows it and its CDR by: random, unguessable, never the
//!   internal `{station}:{transaction}` id. A session without a row is no
//!   partner's (a local driver's, or not yet attributed);
//! - `ocpi_reservations`: a partner's reservation (its own
//!   `reservation_id`, unique per owner) and the OCPP reservation number we
//!   chose for it at a station;
//! - `ocpi_remote_starts`: the partner that recently sent `START_SESSION` or
//!   `RESERVE_NOW` with a token uid at a station, which decides a session
//!   when several partners pushed the same uid.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::paging::{Cond, Keyset, ListQuery, Page};
use super::{json_col, now, Result, Store, StoreError};

fn ocpi_party_row(r: &AnyRow) -> Result<(String, String, bool, Option<Value>)> {
    let reg: Option<String> = r.try_get(3)?;
    let reg = reg
        .map(|t| serde_json::from_str(&t).map_err(|_| StoreError::Corrupt("ocpi registration")))
        .transpose()?;
    Ok((
        r.try_get(0)?,
        r.try_get(1)?,
        r.try_get::<i64, _>(2)? != 0,
        reg,
    ))
}

impl Store {
    /// An OCPI party by the token it presents: (id, token, token_a, registration JSON).
    pub async fn ocpi_party_by_token(
        &self,
        token: &str,
    ) -> Result<Option<(String, String, bool, Option<Value>)>> {
        let row = sqlx::query(
            "SELECT id, token, token_a, registration FROM ocpi_parties WHERE token = $1",
        )
        .bind(token)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| ocpi_party_row(&r)).transpose()
    }

    /// Every OCPI party.
    pub async fn ocpi_parties(&self) -> Result<Vec<(String, String, bool, Option<Value>)>> {
        let rows =
            sqlx::query("SELECT id, token, token_a, registration FROM ocpi_parties ORDER BY id")
                .fetch_all(&self.read)
                .await?;
        rows.iter().map(ocpi_party_row).collect()
    }

    /// Saves an OCPI party.
    pub async fn ocpi_save_party(
        &self,
        id: &str,
        token: &str,
        token_a: bool,
        registration: Option<&Value>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO ocpi_parties (id, token, token_a, registration, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET token = $2, token_a = $3, registration = $4, updated_at = $5",
        )
        .bind(id)
        .bind(token)
        .bind(i64::from(token_a))
        .bind(registration.map(Value::to_string))
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes an OCPI party.
    pub async fn ocpi_remove_party(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM ocpi_parties WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores an OCPI object; true if it was new.
    pub async fn ocpi_put_object(&self, module: &str, key: &str, body: &Value) -> Result<bool> {
        let existed = self.ocpi_object(module, key).await?.is_some();
        sqlx::query(
            "INSERT INTO ocpi_objects (module, object_key, body, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (module, object_key) DO UPDATE SET body = $3, updated_at = $4",
        )
        .bind(module)
        .bind(key)
        .bind(body.to_string())
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(!existed)
    }

    /// One OCPI object.
    pub async fn ocpi_object(&self, module: &str, key: &str) -> Result<Option<Value>> {
        let row =
            sqlx::query("SELECT body FROM ocpi_objects WHERE module = $1 AND object_key = $2")
                .bind(module)
                .bind(key)
                .fetch_optional(&self.read)
                .await?;
        row.map(|r| json_col(&r, "ocpi object")).transpose()
    }

    /// Removes an OCPI object; true if there was one.
    pub async fn ocpi_delete_object(&self, module: &str, key: &str) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM ocpi_objects WHERE module = $1 AND object_key = $2")
                .bind(module)
                .bind(key)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1,
        )
    }

    /// A module's OCPI objects with their keys, in key order.
    pub async fn ocpi_objects(&self, module: &str) -> Result<Vec<(String, Value)>> {
        let rows = sqlx::query(
            "SELECT body, object_key FROM ocpi_objects WHERE module = $1 ORDER BY object_key",
        )
        .bind(module)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>(1)?, json_col(r, "ocpi object")?)))
            .collect()
    }

    /// A module's OCPI objects with their keys, by key.
    pub async fn ocpi_objects_page(
        &self,
        module: &str,
        q: &ListQuery,
    ) -> Result<Page<(String, Value)>> {
        let ks = Keyset {
            from: "ocpi_objects",
            cols: "body, object_key",
            keys: &["object_key"],
            desc: false,
        };
        let conds = vec![Cond::Cmp("module", "=", module.to_owned())];
        let (rows, next, total) = self.page(&ks, conds, q).await?;
        let items = rows
            .iter()
            .map(|r| Ok((r.try_get::<String, _>(1)?, json_col(r, "ocpi object")?)))
            .collect::<Result<_>>()?;
        Ok(Page { items, next, total })
    }
}

/// How a session is known to the partner it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OcpiSession {
    /// Our session id (internal, never sent to partners).
    pub(crate) session_id: String,
    /// The OCPI Session id the partner sees.
    pub(crate) public_id: String,
    /// The OCPI CDR id the partner sees.
    pub(crate) cdr_id: String,
    /// `CC/PID` of the eMSP whose token the session runs on.
    pub(crate) owner: String,
    /// The token's uid as that eMSP gave it.
    pub(crate) token_uid: String,
}

/// 16 bytes from the operating system's random generator, hex: a public
/// id nobody can guess from another.
///
/// # Errors
///
/// The generator could not be read (no weaker fallback).
pub(crate) fn public_id() -> Result<String> {
    use std::io::Read;
    let mut buf = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A random OCPP reservation number (1 ..= 2^31 - 1: an `integer` in
/// every OCPP version).
fn reservation_number() -> Result<i64> {
    let hex = public_id()?;
    let n = i64::from_str_radix(&hex[..8], 16).map_err(|_| StoreError::Corrupt("random"))?;
    Ok((n & 0x7fff_ffff).max(1))
}

fn ocpi_session_row(r: &AnyRow) -> Result<OcpiSession> {
    Ok(OcpiSession {
        session_id: r.try_get(0)?,
        public_id: r.try_get(1)?,
        cdr_id: r.try_get(2)?,
        owner: r.try_get(3)?,
        token_uid: r.try_get(4)?,
    })
}

const OCPI_SESSION_COLS: &str = "session_id, public_id, cdr_id, owner, token_uid";

/// `now - minutes`, as stored times are written (RFC 3339, milliseconds, `Z`).
fn minutes_ago(minutes: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// How long a `START_SESSION`/`RESERVE_NOW` decides whose a uid is at a
/// station.
const REMOTE_START_MINUTES: i64 = 15;

impl Store {
    /// How a session is known to its partner, if it is a partner's.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub(crate) async fn ocpi_session(&self, session_id: &str) -> Result<Option<OcpiSession>> {
        let row = sqlx::query(&format!(
            "SELECT {OCPI_SESSION_COLS} FROM ocpi_sessions WHERE session_id = $1"
        ))
        .bind(session_id)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(ocpi_session_row).transpose()
    }

    /// The session a partner names by its public OCPI id.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub(crate) async fn ocpi_session_by_public_id(
        &self,
        public_id: &str,
    ) -> Result<Option<OcpiSession>> {
        let row = sqlx::query(&format!(
            "SELECT {OCPI_SESSION_COLS} FROM ocpi_sessions WHERE public_id = $1"
        ))
        .bind(public_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(ocpi_session_row).transpose()
    }

    /// Cluster mode: other processes share the database, so this one
    /// keeps nothing it would know only from its own writes (which sessions
    /// have no `ocpi_sessions` row). Called before any station is served.
    pub fn set_clustered(&self) {
        self.cache
            .clustered
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.unattributed().clear();
    }

    fn unattributed(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.cache
            .unattributed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Session `id` was just created by this process's commit: it has no
    /// `ocpi_sessions` row (rows are only written for stored sessions, by
    /// [`Store::ocpi_attribute_session`], which forgets the id first), so
    /// roaming attribution need not read one ([`Store::known_unattributed`]).
    /// Not kept in cluster mode, where another node may attribute it.
    pub(crate) fn session_created(&self, id: &str) {
        if self
            .cache
            .clustered
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let mut known = self.unattributed();
        // a bound on sessions that never complete here
        if known.len() >= 100_000 {
            known.clear();
        }
        known.insert(id.to_owned());
    }

    /// Session `id` is completed and billed: no longer kept in memory
    /// (a later attribution reads).
    pub(crate) fn session_settled(&self, id: &str) {
        self.unattributed().remove(id);
    }

    /// Whether session `id` is known to have no `ocpi_sessions` row
    /// without reading (false: read it).
    pub(crate) fn known_unattributed(&self, id: &str) -> bool {
        !self
            .cache
            .clustered
            .load(std::sync::atomic::Ordering::SeqCst)
            && self.unattributed().contains(id)
    }

    /// Attributes a session to a partner's token, with fresh public ids;
    /// the first attribution stays (the stored row is returned).
    ///
    /// # Errors
    ///
    /// The database or the random generator failed.
    pub(crate) async fn ocpi_attribute_session(
        &self,
        session_id: &str,
        owner: &str,
        token_uid: &str,
    ) -> Result<OcpiSession> {
        // before the row exists: nobody skips reading it from here on
        self.unattributed().remove(session_id);
        sqlx::query(
            "INSERT INTO ocpi_sessions (session_id, public_id, cdr_id, owner, token_uid, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (session_id) DO NOTHING",
        )
        .bind(session_id)
        .bind(public_id()?)
        .bind(public_id()?)
        .bind(owner)
        .bind(token_uid)
        .bind(crate::store::now())
        .execute(self.pool())
        .await?;
        self.ocpi_session(session_id)
            .await?
            .ok_or(StoreError::Corrupt("ocpi_sessions"))
    }

    /// The active sessions at a station that run on a token of `owner`
    /// (`CC/PID`).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub(crate) async fn ocpi_active_sessions_of(
        &self,
        owner: &str,
        station: &str,
    ) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT s.id FROM sessions s JOIN ocpi_sessions o ON o.session_id = s.id \
             WHERE o.owner = $1 AND s.station_id = $2 AND s.status = 'Active' ORDER BY s.id",
        )
        .bind(owner)
        .bind(station)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Notes that `owner` sent a start or reservation with `uid` at
    /// `station` (entries older than the window are dropped).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub(crate) async fn ocpi_note_remote_start(
        &self,
        owner: &str,
        uid: &str,
        station: &str,
    ) -> Result<()> {
        sqlx::query("DELETE FROM ocpi_remote_starts WHERE created_at < $1")
            .bind(minutes_ago(REMOTE_START_MINUTES))
            .execute(self.pool())
            .await?;
        sqlx::query(
            "INSERT INTO ocpi_remote_starts (owner, token_uid, station_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(owner)
        .bind(uid.to_ascii_uppercase())
        .bind(station)
        .bind(crate::store::now())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The owner that most recently sent a start or reservation with
    /// `uid` (at `station` when given) within the window.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub(crate) async fn ocpi_remote_start_owner(
        &self,
        uid: &str,
        station: Option<&str>,
    ) -> Result<Option<String>> {
        let since = minutes_ago(REMOTE_START_MINUTES);
        let uid = uid.to_ascii_uppercase();
        let row = match station {
            Some(st) => sqlx::query(
                "SELECT owner FROM ocpi_remote_starts WHERE token_uid = $1 AND station_id = $2 \
                 AND created_at >= $3 ORDER BY created_at DESC LIMIT 1",
            )
            .bind(uid)
            .bind(st)
            .bind(since),
            None => sqlx::query(
                "SELECT owner FROM ocpi_remote_starts WHERE token_uid = $1 AND created_at >= $2 \
                 ORDER BY created_at DESC LIMIT 1",
            )
            .bind(uid)
            .bind(since),
        }
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Records a partner's reservation at a station; the OCPP reservation
    /// number for it (the one it already had when `owner` reserves with the
    /// same `reservation_id` again, which replaces it).
    ///
    /// # Errors
    ///
    /// The database or the random generator failed.
    pub(crate) async fn ocpi_reserve(
        &self,
        owner: &str,
        reservation_id: &str,
        station: &str,
        uid: &str,
    ) -> Result<i64> {
        if let Some((n, _)) = self.ocpi_reservation(owner, reservation_id).await? {
            sqlx::query(
                "UPDATE ocpi_reservations SET station_id = $1, token_uid = $2 WHERE reservation_number = $3",
            )
            .bind(station)
            .bind(uid)
            .bind(n)
            .execute(self.pool())
            .await?;
            return Ok(n);
        }
        for _ in 0..8 {
            let n = reservation_number()?;
            let inserted = sqlx::query(
                "INSERT INTO ocpi_reservations (reservation_number, owner, reservation_id, station_id, token_uid, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(n)
            .bind(owner)
            .bind(reservation_id)
            .bind(station)
            .bind(uid)
            .bind(crate::store::now())
            .execute(self.pool())
            .await?
            .rows_affected();
            if inserted == 1 {
                return Ok(n);
            }
            // the same (owner, reservation_id) raced us: take its number
            if let Some((n, _)) = self.ocpi_reservation(owner, reservation_id).await? {
                return Ok(n);
            }
        }
        Err(StoreError::Corrupt("ocpi_reservations"))
    }

    /// A partner's reservation by its own id: (OCPP number, station).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub(crate) async fn ocpi_reservation(
        &self,
        owner: &str,
        reservation_id: &str,
    ) -> Result<Option<(i64, String)>> {
        let row = sqlx::query(
            "SELECT reservation_number, station_id FROM ocpi_reservations WHERE owner = $1 AND reservation_id = $2",
        )
        .bind(owner)
        .bind(reservation_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Replaces the party `old_id` (the registration token we handed out)
    /// by the registered party `id`, in one database transaction: either
    /// the registration is stored and the old entry gone, or nothing
    /// changed. A party already named `id` is an error.
    ///
    /// # Errors
    ///
    /// The database failed (for instance on a party `id` that exists).
    pub(crate) async fn ocpi_replace_party(
        &self,
        old_id: &str,
        id: &str,
        token: &str,
        registration: &Value,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM ocpi_parties WHERE id = $1")
            .bind(old_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO ocpi_parties (id, token, token_a, registration, updated_at) VALUES ($1, $2, 0, $3, $4)",
        )
        .bind(id)
        .bind(token)
        .bind(registration.to_string())
        .bind(crate::store::now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What this process knows of sessions without a partner: forgotten by
    /// their attribution (before its row is written) and once settled, and
    /// never kept in cluster mode.
    #[tokio::test]
    async fn unattributed_sessions_follow_attribution() {
        let store = Store::open_temp("unattributed").await;
        assert!(!store.known_unattributed("CP1:1"));
        store.session_created("CP1:1");
        store.session_created("CP1:2");
        assert!(store.known_unattributed("CP1:1"));
        // attributed to a partner: read from here on, and the row is there
        let row = store
            .ocpi_attribute_session("CP1:1", "NL/EMS", "UID1")
            .await
            .unwrap();
        assert!(!store.known_unattributed("CP1:1"));
        assert_eq!(store.ocpi_session("CP1:1").await.unwrap(), Some(row));
        // settled: forgotten
        assert!(store.known_unattributed("CP1:2"));
        store.session_settled("CP1:2");
        assert!(!store.known_unattributed("CP1:2"));
        // cluster mode: another node may attribute any session
        store.session_created("CP1:3");
        store.set_clustered();
        assert!(!store.known_unattributed("CP1:3"));
        store.session_created("CP1:4");
        assert!(!store.known_unattributed("CP1:4"));
    }
}
