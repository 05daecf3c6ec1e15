//! The store: one schema for SQLite (embedded default) and PostgreSQL,
//! through sqlx's `Any` driver with portable SQL (`$n` placeholders, TEXT
//! times in RFC 3339, decimals as TEXT, `ON CONFLICT DO NOTHING`,
//! `RETURNING`). Every station message is committed here before it is
//! answered; duplicates are absorbed by unique keys.
//!
//! This file holds the handle ([`Store`]: the pools, the group-commit
//! [`Writer`], the in-memory cache), its error type and the migration
//! runner. Each aggregate keeps its tables' rows, row types and queries in
//! a file of its own under `store/`, as one `impl Store` block; its types
//! are re-exported here, so `crate::store::Session` names the session
//! wherever it is defined:
//!
//! - `migrations.rs`: the schema, every migration in order (a new one goes
//!   at the end, with the next free number);
//! - `stations.rs`: the station registry (identity, password hash,
//!   registration, security profile), boots, last-seen times, connector
//!   statuses, the device model stations report, and the credentials the
//!   handshake checks;
//! - `password.rs`: station password hashes (Argon2id; the legacy salted
//!   SHA-256 verified, then replaced) and random salts and keys;
//! - `tokens.rs`: id tokens (cached, as stations are answered about them)
//!   and what authorization reads beyond a token (the master-pass group);
//! - `sessions.rs`: charging sessions, their meter values, the transaction
//!   messages a session is rebuilt from, 1.6 start keys and counters;
//! - `tariffs.rs`: tariffs (cached);
//! - `billing.rs`: CDRs and revenue;
//! - `outbox.rs`: the outbox of side effects and its retry backoff;
//! - `alerts.rs`: alerts, stations connecting and going away (their
//!   `offline` alerts) and uptime;
//! - `settings.rs`: key-value settings;
//! - `station_reports.rs`: what stations report besides transactions;
//! - `ocpi.rs`: roaming: OCPI parties and objects, partners' sessions,
//!   reservations and remote starts;
//! - [`drivers`]: drivers' accounts, logins and tokens (the app API);
//! - [`reports`]: what the console and `/metrics` read across aggregates;
//! - `paging.rs`: keyset-paged lists ([`ListQuery`], [`Page`]); each
//!   aggregate's `*_page` query is in its own file.

mod alerts;
mod billing;
mod campaigns;
mod certificates;
mod cluster;
pub mod drivers;
pub mod fleets;
pub mod grid;
mod local_lists;
mod migrations;
mod monitor_values;
pub(crate) mod ocpi;
mod operations;
mod outbox;
mod paging;
mod password;
mod places;
pub mod reports;
mod reservations;
mod sessions;
mod settings;
mod settlements;
pub mod site;
mod station_reports;
mod stations;
pub mod streams;
mod tariffs;
mod tokens;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::writer::Writer;
use migrations::MIGRATIONS;

pub use alerts::{AlertRow, ConnectionAlerts, Offline};
pub use campaigns::{Campaign, CampaignStation};
pub use certificates::StationCertificate;
pub use local_lists::{KeptList, ListEntry};
pub use monitor_values::MonitorValue;
pub use operations::{Operation, OperationStatus};
pub use outbox::{outbox_backoff, OutboxAdded, OUTBOX_MAX_DELAY};
pub use paging::{ListQuery, Page};
pub use password::{
    hash_password, needs_rehash, random_hex, verify_password, PASSWORD_M_COST_KIB, PASSWORD_P_COST,
    PASSWORD_T_COST,
};
pub use places::StationPlace;
pub use reports::MetricCounts;
pub use reservations::{Reservation, ReservationState};
pub use sessions::{to_wh, Session, SessionRow, SessionStatus};
pub use settlements::{Settlement, SettlementRecorded};
pub use station_reports::StationReport;
pub use stations::{natural_key, ConnectorState, Credentials, Registration, Station};
pub use tokens::TokenRecord;

/// Store errors. The text is for logs and API answers.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// A stored value could not be read back.
    #[error("corrupt value in {0}")]
    Corrupt(&'static str),
    /// A list cursor that does not fit the list it was given to.
    #[error("the cursor is not one of this list")]
    BadCursor,
}

/// Result alias.
pub type Result<T> = std::result::Result<T, StoreError>;

/// The store handle. Cheap to clone.
///
/// SQLite has one write connection (`pool`, `synchronous=FULL`) and a few
/// read-only ones (`read`): WAL readers never wait for the writer, and
/// station messages' writes go through the group-commit [`Writer`].
/// PostgreSQL uses one pool for both.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    read: AnyPool,
    backend: &'static str,
    writer: Writer,
    cache: std::sync::Arc<Cache>,
    /// Tests: the number of [`StoreTx`] calls that succeed before one fails
    /// (negative: none fails).
    #[cfg(test)]
    faults: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

/// What the store keeps in memory besides the database: small tables read
/// on every station message. Filled on first read, updated by the store's
/// own writes of them (the database stays the truth: a process only ever
/// reads what it or its database holds).
#[derive(Debug, Default)]
struct Cache {
    /// Token → its record (`None`: not there).
    tokens: std::sync::RwLock<std::collections::HashMap<String, Option<TokenRecord>>>,
    /// Tariff id → body (`None`: not there).
    tariffs: std::sync::RwLock<std::collections::HashMap<String, Option<Value>>>,
    /// Station → its master-pass group (`None`: it reported none), read by
    /// every authorization decision (store/tokens.rs).
    master_pass: std::sync::Mutex<MasterPassCache>,
    /// Sessions this process created that have no `ocpi_sessions` row (no
    /// partner's), so roaming attribution need not read it (store/ocpi.rs).
    /// Kept only while this process is the database's one writer.
    unattributed: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Cluster mode: other processes write the database too, so what this
    /// process knows only from its own writes is not kept.
    clustered: std::sync::atomic::AtomicBool,
    /// Cluster mode: told when this process changed a cached table
    /// (store/cluster.rs).
    changed: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<()>>,
}

/// The master-pass groups read so far, and a generation counted up by each
/// write of one (and each forget): a read that began before a write does not
/// fill the cache with what it read.
#[derive(Debug, Default)]
struct MasterPassCache {
    groups: std::collections::HashMap<String, Option<String>>,
    generation: u64,
}

impl MasterPassCache {
    /// Keeps `group`, read for `station` from the database by a read that
    /// began at `generation`, unless a write or a forget came since.
    fn fill(&mut self, generation: u64, station: &str, group: &Option<String>) {
        if self.generation != generation {
            return;
        }
        // a bound on what stations that never report one can fill
        if self.groups.len() >= 100_000 {
            self.groups.clear();
        }
        self.groups.insert(station.to_owned(), group.clone());
    }

    /// Forgets `station`'s group (`None`: every station's).
    fn forget(&mut self, station: Option<&str>) {
        self.generation += 1;
        match station {
            Some(s) => {
                self.groups.remove(s);
            }
            None => self.groups.clear(),
        }
    }
}

/// The placeholders of an `IN (…)` list of `n` values: `$1, $2, …`.
pub(crate) fn in_list(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `q` with `values` bound in order (for an [`in_list`]).
pub(crate) fn bind_all<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    values: &'q [String],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    values.iter().fold(q, |q, v| q.bind(v.as_str()))
}

pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Now, as stored.
pub fn now() -> String {
    ts(Utc::now())
}

/// The first column of a row, a JSON document stored as text.
fn json_col(row: &AnyRow, what: &'static str) -> Result<Value> {
    let text: String = row.try_get(0)?;
    serde_json::from_str(&text).map_err(|_| StoreError::Corrupt(what))
}

impl Store {
    /// Connects (`sqlite://path?mode=rwc` or `postgres://...`) and migrates.
    ///
    /// # Errors
    ///
    /// The database could not be opened or migrated.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres") {
            "postgres"
        } else {
            "sqlite"
        };
        let sqlite = backend == "sqlite";
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 1 } else { 16 })
            // no ping before each use: on SQLite it is one more round trip
            // to the connection's thread for nothing; on PostgreSQL one more
            // round trip to the server per query (17 % of a cluster node's
            // CPU, measured with perf). A connection the server dropped fails
            // its next query, which is answered as a store error (a station
            // retries) and closes it.
            .test_before_acquire(false)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // WAL: readers and the writer do not block each other; FULL: the
                        // WAL is synced at every commit, so what is answered survives a
                        // power cut (group commit makes that one sync per batch)
                        sqlx::query("PRAGMA journal_mode=WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous=FULL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout=10000")
                            .execute(&mut *conn)
                            .await?;
                        // 64 MiB of pages: the indexes station messages write into stay
                        // in memory instead of being read back from the OS for every batch
                        sqlx::query("PRAGMA cache_size=-65536")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            // A failed transaction must leave the connection outside any
            // transaction. SQLite may roll a transaction back by itself (a
            // full disk, an I/O error) and the driver's own bookkeeping can
            // then disagree with it; a connection left inside a transaction
            // the driver thinks is closed would take every later commit as a
            // savepoint release, answered but never written. So each write
            // connection proves it is in autocommit mode when it comes back
            // to the pool (`BEGIN` fails inside a transaction), and is closed
            // (rolling back whatever it held) when it is not. `BEGIN` and the
            // `ROLLBACK` of the transaction it opened go as one batch: one
            // round trip to the connection's thread, and the `ROLLBACK` only
            // runs when the `BEGIN` succeeded.
            .after_release(move |conn, _| {
                Box::pin(async move {
                    if !sqlite {
                        return Ok(true);
                    }
                    match sqlx::query("BEGIN; ROLLBACK").execute(&mut *conn).await {
                        Ok(_) => Ok(true),
                        Err(e) => {
                            tracing::error!(
                                "store connection left inside a transaction, closed: {e}"
                            );
                            Ok(false)
                        }
                    }
                })
            })
            .connect(url)
            .await?;
        let read = if sqlite {
            AnyPoolOptions::new()
                .max_connections(4)
                .test_before_acquire(false)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        sqlx::query("PRAGMA query_only=1")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA cache_size=-16384")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout=10000")
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .connect(url)
                .await?
        } else {
            pool.clone()
        };
        #[cfg(test)]
        let faults = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(-1));
        let writer = Writer::spawn(crate::writer::Target {
            pool: pool.clone(),
            sqlite,
            own_connection: (!sqlite).then(|| url.to_owned()),
            #[cfg(test)]
            faults: faults.clone(),
        })
        .map_err(sqlx::Error::Io)?;
        let store = Store {
            pool,
            read,
            backend,
            writer,
            cache: std::sync::Arc::default(),
            #[cfg(test)]
            faults,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The connection pool, for modules that keep their own tables (payments).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The read pool: SQLite's read-only connections (PostgreSQL: the pool).
    /// Sees what is committed.
    pub fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// The group-commit writer of station messages' writes.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)")
            .execute(&self.pool)
            .await?;
        for (version, sql) in MIGRATIONS {
            let done: Option<i64> =
                sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(&self.read)
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?;
            if done.is_some() {
                continue;
            }
            let mut tx = self.pool.begin().await?;
            for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(stmt).execute(&mut *tx).await?;
            }
            // data steps a statement cannot express, in the same transaction
            if *version == 26 {
                operations::move_from_settings(&mut tx).await?;
            }
            if *version == 27 {
                campaigns::move_from_settings(&mut tx).await?;
            }
            if *version == 28 {
                places::move_from_settings(&mut tx).await?;
            }
            if *version == 29 {
                local_lists::move_from_settings(&mut tx).await?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(*version)
                .bind(now())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Tests: a store on a fresh SQLite file under the temporary directory
    /// (`name` and the process id tell it apart).
    #[cfg(test)]
    pub(crate) async fn open_temp(name: &str) -> Store {
        let dir = std::env::temp_dir().join(format!("csms-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        Store::open(&format!("sqlite://{}?mode=rwc", dir.join("t.db").display()))
            .await
            .expect("a store")
    }

    /// Tests: a store on a fresh PostgreSQL database (`CSMS_TEST_POSTGRES`,
    /// else the local server) named after `name` and the process id,
    /// dropped with [`PgScratch::drop_db`] after the store.
    #[cfg(test)]
    pub(crate) async fn open_temp_pg(name: &str) -> (Store, PgScratch) {
        use sqlx::Connection;
        let admin = std::env::var("CSMS_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let db = format!("csms_{name}_{}", std::process::id());
        let mut c = sqlx::PgConnection::connect(&admin)
            .await
            .expect("PostgreSQL");
        for stmt in [
            format!("DROP DATABASE IF EXISTS {db}"),
            format!("CREATE DATABASE {db}"),
        ] {
            sqlx::query(&stmt)
                .execute(&mut c)
                .await
                .expect("a database");
        }
        let url = format!("{}/{db}", admin.rsplit_once('/').expect("a URL").0);
        let store = Store::open(&url).await.expect("a store");
        (store, PgScratch { admin: c, db })
    }

    /// Tests: the next `n` calls of the store's session path (reads of a
    /// session's messages, the writer's statements and its commit) succeed,
    /// the one after fails (`None`: none fails).
    #[cfg(test)]
    pub fn fail_after(&self, n: Option<i64>) {
        self.faults
            .store(n.unwrap_or(-1), std::sync::atomic::Ordering::SeqCst);
    }

    /// Tests: an injected failure (see [`Store::fail_after`]).
    #[cfg(test)]
    fn fault(&self) -> Result<()> {
        crate::writer::injected_fault(&self.faults)
    }

    #[cfg(not(test))]
    #[inline]
    fn fault(&self) -> Result<()> {
        Ok(())
    }
}

/// Tests: `$check(&Store)` on SQLite (test `$sqlite`) and on a scratch
/// PostgreSQL database (test `$pg`), both named after `$name`.
#[cfg(test)]
macro_rules! on_both_stores {
    ($(#[$doc:meta])* $sqlite:ident, $pg:ident, $name:literal, $check:path) => {
        $(#[$doc])*
        #[tokio::test]
        async fn $sqlite() {
            $check(&Store::open_temp($name).await).await;
        }

        $(#[$doc])*
        #[tokio::test]
        async fn $pg() {
            let (store, db) = Store::open_temp_pg($name).await;
            $check(&store).await;
            drop(store);
            db.drop_db().await;
        }
    };
}
#[cfg(test)]
pub(crate) use on_both_stores;

/// Tests: a scratch PostgreSQL database ([`Store::open_temp_pg`]), dropped
/// by [`PgScratch::drop_db`] once its store is gone.
#[cfg(test)]
pub(crate) struct PgScratch {
    admin: sqlx::PgConnection,
    db: String,
}

#[cfg(test)]
impl PgScratch {
    /// Drops the database (its store dropped first).
    pub(crate) async fn drop_db(mut self) {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db))
            .execute(&mut self.admin)
            .await;
    }
}
