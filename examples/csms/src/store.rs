//! The store: one schema for SQLite (embedded default) and PostgreSQL,
//! through sqlx's `Any` driver with portable SQL (`$n` placeholders, TEXT
//! times in RFC 3339, decimals as TEXT, `ON CONFLICT DO NOTHING`,
//! `RETURNING`). Every station message is committed here before it is
//! answered; duplicates are absorbed by unique keys.

use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::writer::Writer;

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

/// Schema migrations, applied in order once each (`schema_migrations`).
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
    "CREATE TABLE IF NOT EXISTS stations (
        id TEXT PRIMARY KEY,
        password_hash TEXT,
        vendor TEXT, model TEXT, serial TEXT, firmware TEXT,
        ocpp_version TEXT,
        boot_status TEXT,
        last_boot TEXT, last_seen TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS connectors (
        station_id TEXT NOT NULL, evse_id BIGINT NOT NULL, connector_id BIGINT NOT NULL,
        status TEXT NOT NULL, error_code TEXT, updated_at TEXT NOT NULL,
        PRIMARY KEY (station_id, evse_id, connector_id)
    );
    CREATE TABLE IF NOT EXISTS tokens (
        id_token TEXT PRIMARY KEY, token_type TEXT NOT NULL, status TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
    CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY,
        station_id TEXT NOT NULL, ocpp_tx_id TEXT NOT NULL,
        evse_id BIGINT, connector_id BIGINT,
        id_token TEXT,
        status TEXT NOT NULL,
        started_at TEXT, stopped_at TEXT,
        meter_start_wh TEXT, meter_stop_wh TEXT, last_register_wh TEXT,
        stop_reason TEXT,
        start_key TEXT,
        updated_at TEXT NOT NULL,
        UNIQUE (station_id, ocpp_tx_id)
    );
    CREATE TABLE IF NOT EXISTS session_start_keys (start_key TEXT PRIMARY KEY, session_id TEXT NOT NULL, ocpp_tx_id TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS tx_events (
        session_id TEXT NOT NULL, seq_no BIGINT NOT NULL, event_type TEXT NOT NULL,
        ts TEXT NOT NULL, payload TEXT NOT NULL,
        PRIMARY KEY (session_id, seq_no)
    );
    CREATE TABLE IF NOT EXISTS meter_values (
        session_id TEXT NOT NULL, ts TEXT NOT NULL, measurand TEXT NOT NULL,
        value TEXT NOT NULL, unit TEXT,
        PRIMARY KEY (session_id, ts, measurand)
    );
    CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
    (
        2,
        "CREATE TABLE IF NOT EXISTS tariffs (id TEXT PRIMARY KEY, body TEXT NOT NULL, updated_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS cdrs (
        session_id TEXT PRIMARY KEY, currency TEXT NOT NULL, total_excl TEXT NOT NULL, total_incl TEXT NOT NULL,
        body TEXT NOT NULL, created_at TEXT NOT NULL
    )",
    ),
    (
        3,
        "CREATE TABLE IF NOT EXISTS wallets (id_token TEXT PRIMARY KEY, balance TEXT NOT NULL, currency TEXT NOT NULL, updated_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS payments (
        session_id TEXT PRIMARY KEY, id_token TEXT NOT NULL, held TEXT NOT NULL, status TEXT NOT NULL,
        receipt TEXT, updated_at TEXT NOT NULL
    )",
    ),
    (
        4,
        "CREATE TABLE IF NOT EXISTS ocpi_parties (id TEXT PRIMARY KEY, token TEXT NOT NULL, token_a BIGINT NOT NULL, registration TEXT, updated_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS ocpi_objects (module TEXT NOT NULL, object_key TEXT NOT NULL, body TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (module, object_key))",
    ),
    (
        5,
        "CREATE TABLE IF NOT EXISTS alerts (id TEXT PRIMARY KEY, station_id TEXT, kind TEXT NOT NULL, detail TEXT NOT NULL, raised_at TEXT NOT NULL, cleared_at TEXT);
    CREATE TABLE IF NOT EXISTS station_uptime (station_id TEXT PRIMARY KEY, tracked_since TEXT NOT NULL, online_since TEXT, online_ms BIGINT NOT NULL);
    CREATE TABLE IF NOT EXISTS device_model (station_id TEXT NOT NULL, component TEXT NOT NULL, variable TEXT NOT NULL, body TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (station_id, component, variable))",
    ),
    (
        6,
        // the transaction messages a session is rebuilt from (the model is the rule, these are
        // its input), the session's energy as the model computes it, and the outbox of side
        // effects written in the same database transaction as the message that causes them
        "CREATE TABLE IF NOT EXISTS tx_messages (session_id TEXT NOT NULL, msg_key TEXT NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL, received_at TEXT NOT NULL, PRIMARY KEY (session_id, msg_key));
    CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, kind TEXT NOT NULL, subject TEXT NOT NULL, created_at TEXT NOT NULL, done_at TEXT, attempts BIGINT NOT NULL, last_error TEXT);
    ALTER TABLE sessions ADD COLUMN energy_wh TEXT",
    ),
    (
        7,
        // what stations report besides transactions (charging limits and needs, monitoring,
        // display messages, DER, settlements, …), one row per message, see `add_station_report`
        "CREATE TABLE IF NOT EXISTS station_reports (station_id TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL, received_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS station_reports_by_kind ON station_reports (station_id, kind, received_at)",
    ),
    (
        9,
        // roaming (store_ocpi.rs): a partner's sessions with their public ids, its reservations,
        // its recent remote starts
        "CREATE TABLE IF NOT EXISTS ocpi_sessions (session_id TEXT PRIMARY KEY, public_id TEXT NOT NULL UNIQUE, cdr_id TEXT NOT NULL UNIQUE, owner TEXT NOT NULL, token_uid TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS ocpi_sessions_by_owner ON ocpi_sessions (owner);
    CREATE TABLE IF NOT EXISTS ocpi_reservations (reservation_number BIGINT PRIMARY KEY, owner TEXT NOT NULL, reservation_id TEXT NOT NULL, station_id TEXT NOT NULL, token_uid TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (owner, reservation_id));
    CREATE TABLE IF NOT EXISTS ocpi_remote_starts (owner TEXT NOT NULL, token_uid TEXT NOT NULL, station_id TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS ocpi_remote_starts_by_uid ON ocpi_remote_starts (token_uid, created_at)",
    ),
    (
        11,
        // outbox retries with backoff: when an entry may run next (NULL: now), and the lane it
        // shares a retry hold with (an OCPI partner: one that is down holds all its pushes)
        "ALTER TABLE outbox ADD COLUMN next_attempt_at TEXT;
    ALTER TABLE outbox ADD COLUMN lane TEXT;
    CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (done_at, next_attempt_at)",
    ),
    (
        12,
        // keyset-paged lists (`Store::*_page`): the orders they page in, and stations in
        // natural order (`LOAD2` before `LOAD10`) by a stored key, see `natural_key`
        "ALTER TABLE stations ADD COLUMN sort_key TEXT;
    CREATE INDEX IF NOT EXISTS stations_by_sort_key ON stations (sort_key, id);
    CREATE INDEX IF NOT EXISTS sessions_by_start ON sessions ((COALESCE(started_at, '')), id);
    CREATE INDEX IF NOT EXISTS sessions_by_station ON sessions (station_id, (COALESCE(started_at, '')), id);
    CREATE INDEX IF NOT EXISTS cdrs_by_created ON cdrs (created_at, session_id);
    CREATE INDEX IF NOT EXISTS alerts_by_raised ON alerts (raised_at, id)",
    ),
    (
        13,
        // per station (OCPP 2.0.1 B02, B03, A00): the boot answer the operator chose (NULL:
        // Accepted) and the security profile it connects under (NULL: the server's default)
        "ALTER TABLE stations ADD COLUMN registration TEXT;
    ALTER TABLE stations ADD COLUMN security_profile BIGINT",
    ),
    (
        14,
        // tokens' group (1.6 parentIdTag, 2.x groupIdToken) and expiry, see `TokenRecord`
        "ALTER TABLE tokens ADD COLUMN group_id TEXT;
    ALTER TABLE tokens ADD COLUMN expires_at TEXT",
    ),
    (
        15,
        // drivers and the app API (store_drivers.rs): accounts, their bearer logins (hashed),
        // the id tokens they own; card payments through a gateway (stripe.rs) per session, their
        // refunds, and the gateway's webhook events applied once
        "CREATE TABLE IF NOT EXISTS drivers (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL, payment TEXT NOT NULL, card_customer TEXT, card_payment_method TEXT, card_label TEXT, created_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS driver_logins (token_hash TEXT PRIMARY KEY, driver_id TEXT NOT NULL, expires_at TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS driver_logins_by_driver ON driver_logins (driver_id);
    CREATE TABLE IF NOT EXISTS driver_tokens (id_token TEXT PRIMARY KEY, driver_id TEXT NOT NULL, kind TEXT NOT NULL, label TEXT, created_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS driver_tokens_by_driver ON driver_tokens (driver_id);
    CREATE TABLE IF NOT EXISTS card_payments (session_id TEXT PRIMARY KEY, driver_id TEXT NOT NULL, id_token TEXT NOT NULL, intent TEXT, status TEXT NOT NULL, gateway_status TEXT, currency TEXT NOT NULL, held_minor BIGINT NOT NULL, captured_minor BIGINT NOT NULL, refunded_minor BIGINT NOT NULL, receipt TEXT, updated_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS card_payments_by_intent ON card_payments (intent);
    CREATE TABLE IF NOT EXISTS card_refunds (id TEXT PRIMARY KEY, session_id TEXT NOT NULL, amount_minor BIGINT NOT NULL, gateway_id TEXT, status TEXT NOT NULL, created_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS gateway_events (id TEXT PRIMARY KEY, kind TEXT NOT NULL, subject TEXT, received_at TEXT NOT NULL)",
    ),
    (
        16,
        // a station's open alerts of a kind, found without reading every alert: raised and
        // cleared as stations go and come back (thousands in a reconnect storm); a token's
        // active sessions (ConcurrentTx, at every Authorize and start) without reading every
        // session
        "CREATE INDEX IF NOT EXISTS alerts_by_station ON alerts (station_id, kind, cleared_at);
    CREATE INDEX IF NOT EXISTS sessions_active_by_token ON sessions (LOWER(id_token)) WHERE status = 'Active'",
    ),
];

/// What [`Store::connections_changed`] did to stations' `offline` alerts.
#[derive(Debug, Default)]
pub struct ConnectionAlerts {
    /// Stations whose `offline` alert was raised, with its detail.
    pub raised: Vec<(String, Value)>,
    /// Stations whose `offline` alert was cleared.
    pub cleared: Vec<String>,
}

/// An id token as the CSMS keeps it: what authorization (the core's
/// `authorization::Record`) and the API read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The token (1.6 idTag, 2.x idToken).
    pub id_token: String,
    /// Its type (2.x `IdTokenEnumType`: `ISO14443`, `Central`, ...).
    #[serde(rename = "type")]
    pub token_type: String,
    /// `Accepted`, `Blocked`, `Expired`, `Invalid` or `NoCredit`.
    pub status: String,
    /// Its group (1.6 `parentIdTag`, 2.x `groupIdToken`), told to stations
    /// so any token of the group may stop the session.
    pub group_id: Option<String>,
    /// After this instant the token is `Expired`.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was registered.
    pub created_at: String,
}

impl TokenRecord {
    /// From a row of `TOKEN_COLS`.
    fn from_row(r: &AnyRow) -> Result<TokenRecord> {
        let expires: Option<String> = r.try_get(4)?;
        Ok(TokenRecord {
            id_token: r.try_get(0)?,
            token_type: r.try_get(1)?,
            status: r.try_get(2)?,
            group_id: r.try_get(3)?,
            expires_at: expires
                .map(|e| {
                    DateTime::parse_from_rfc3339(&e)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|_| StoreError::Corrupt("tokens.expires_at"))
                })
                .transpose()?,
            created_at: r.try_get(5)?,
        })
    }
}

/// The columns [`TokenRecord::from_row`] reads, in its order.
const TOKEN_COLS: &str = "id_token, token_type, status, group_id, expires_at, created_at";

/// The boot answer the operator chose for a registered station (OCPP 1.6
/// §4.2, 2.0.1 B01-B03): `Accepted`, `Pending` or `Rejected`, the same
/// spelling in every version, in the store and in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Registration {
    /// Its boots are accepted.
    #[default]
    Accepted,
    /// Its boots are answered Pending: it may be configured, not used.
    Pending,
    /// Its boots are answered Rejected.
    Rejected,
}

impl Registration {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Registration::Accepted => "Accepted",
            Registration::Pending => "Pending",
            Registration::Rejected => "Rejected",
        }
    }

    /// From its stored text (`None`, or text it does not know: Accepted).
    pub fn parse(s: Option<&str>) -> Registration {
        match s {
            Some("Pending") => Registration::Pending,
            Some("Rejected") => Registration::Rejected,
            _ => Registration::Accepted,
        }
    }
}

/// A station's entry in the registry as the handshake needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Identity.
    pub id: String,
    /// Its password's hash, if it has one.
    pub password_hash: Option<String>,
    /// Its security profile, `None` for the server's default.
    pub security_profile: Option<u8>,
}

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
}

pub(crate) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Now, as stored.
pub fn now() -> String {
    ts(Utc::now())
}

/// Argon2id cost of station passwords, in one place: OWASP's recommended
/// set (m = 19 MiB, t = 2, p = 1, about 20-30 ms on one core). A station
/// authenticates once per connection, not per message, and
/// `crate::station_auth` caches successes, so the cost falls on guessing,
/// not on charging; it runs on the blocking pool, a few at a time (memory:
/// 19 MiB each). Raising a cost re-hashes each station's password at its
/// next successful login ([`needs_rehash`]).
pub const PASSWORD_M_COST_KIB: u32 = 19 * 1024;
/// Argon2id passes (see [`PASSWORD_M_COST_KIB`]).
pub const PASSWORD_T_COST: u32 = 2;
/// Argon2id lanes (see [`PASSWORD_M_COST_KIB`]).
pub const PASSWORD_P_COST: u32 = 1;

fn argon2id() -> argon2::Argon2<'static> {
    let params = argon2::Params::new(PASSWORD_M_COST_KIB, PASSWORD_T_COST, PASSWORD_P_COST, None)
        .expect("the constant Argon2 parameters are valid");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// An Argon2id password hash in PHC string format
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), with a random
/// 128-bit salt. Slow on purpose: call it off the async workers.
pub fn hash_password(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    // 32 hex digits are valid B64 salt characters: 128 random bits
    let salt = SaltString::from_b64(&random_hex(16)).expect("hex is a valid salt");
    argon2id()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2id hashes any password with a valid salt")
        .to_string()
}

/// The hash of releases before Argon2id: one salted SHA-256,
/// `sha256$<salt>$<hex>`. Only verified (and then replaced).
fn legacy_sha256(password: &str, salt: &str) -> String {
    let digest = Sha256::digest(format!("{salt}:{password}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256${salt}${hex}")
}

/// Whether `password` matches a stored hash: Argon2id (or another PHC
/// hash the `argon2` crate reads), or a legacy salted SHA-256 (constant-time
/// compare). Slow on purpose: call it off the async workers.
pub fn verify_password(stored: &str, password: &[u8]) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
    if stored.starts_with('$') {
        return PasswordHash::new(stored)
            .is_ok_and(|h| argon2id().verify_password(password, &h).is_ok());
    }
    let mut parts = stored.splitn(3, '$');
    let (Some("sha256"), Some(salt), Some(hex)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(password) = std::str::from_utf8(password) else {
        return false;
    };
    let want = legacy_sha256(password, salt);
    let got = format!("sha256${salt}${hex}");
    want.len() == got.len()
        && want
            .bytes()
            .zip(got.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Whether a stored hash is not Argon2id with today's costs (a legacy
/// SHA-256, or older parameters): re-hash it after the next successful
/// login.
pub fn needs_rehash(stored: &str) -> bool {
    let Ok(h) = argon2::password_hash::PasswordHash::new(stored) else {
        return true;
    };
    let current = argon2id();
    h.algorithm != argon2::Algorithm::Argon2id.ident()
        || argon2::Params::try_from(&h).map_or(true, |p| {
            (p.m_cost(), p.t_cost(), p.p_cost())
                != (
                    current.params().m_cost(),
                    current.params().t_cost(),
                    current.params().p_cost(),
                )
        })
}

/// A random-enough salt or key from the OS clock and addresses (no RNG
/// dependency): hashed, so unpredictable enough for salts; API keys are
/// generated from `/dev/urandom`.
pub fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_err()
    {
        let seed = format!("{:?}{:p}", std::time::SystemTime::now(), &buf);
        buf = Sha256::digest(seed.as_bytes())
            .iter()
            .copied()
            .cycle()
            .take(bytes)
            .collect();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stored security profile: 0-3, or `None` (the server's default).
fn profile(stored: Option<i64>) -> Result<Option<u8>> {
    stored
        .map(|p| {
            u8::try_from(p)
                .ok()
                .filter(|p| *p <= 3)
                .ok_or(StoreError::Corrupt("stations.security_profile"))
        })
        .transpose()
}

/// A station as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Station {
    /// Identity.
    pub id: String,
    /// Whether a password is set.
    pub has_password: bool,
    /// Vendor from the boot.
    pub vendor: Option<String>,
    /// Model from the boot.
    pub model: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// Firmware version.
    pub firmware: Option<String>,
    /// Negotiated OCPP version at the last connection.
    pub ocpp_version: Option<String>,
    /// Last boot answer (Accepted, Pending, Rejected).
    pub boot_status: Option<String>,
    /// The boot answer the operator chose for it.
    pub registration: Registration,
    /// The security profile it connects under (0-3); `None` in the store
    /// when it follows the server's default (the API shows that number).
    pub security_profile: Option<u8>,
    /// Last boot time.
    pub last_boot: Option<String>,
    /// Last message time.
    pub last_seen: Option<String>,
    /// Connectors and their status.
    pub connectors: Vec<Value>,
}

/// A charging session (1.6 transaction or 2.x transaction), as stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Session {
    /// Our id: `{station}:{ocpp transaction id}`.
    pub id: String,
    /// Station identity.
    pub station_id: String,
    /// The OCPP transaction id (1.6: the number we assigned; 2.x: the station's).
    pub ocpp_tx_id: String,
    /// EVSE (2.x) or connector (1.6).
    pub evse_id: Option<i64>,
    /// Connector.
    pub connector_id: Option<i64>,
    /// The driver's token.
    pub id_token: Option<String>,
    /// Active or Completed.
    pub status: String,
    /// Start time.
    pub started_at: Option<String>,
    /// Stop time.
    pub stopped_at: Option<String>,
    /// Meter at start, Wh.
    pub meter_start_wh: Option<Decimal>,
    /// Meter at stop, Wh.
    pub meter_stop_wh: Option<Decimal>,
    /// Energy delivered so far, Wh.
    pub energy_wh: Decimal,
    /// Why it stopped.
    pub stop_reason: Option<String>,
}

fn opt_dec(row: &AnyRow, col: &str) -> Result<Option<Decimal>> {
    match row.try_get::<Option<String>, _>(col)? {
        Some(s) => Decimal::from_str(&s)
            .map(Some)
            .map_err(|_| StoreError::Corrupt("decimal")),
        None => Ok(None),
    }
}

/// The first column of a row, a JSON document stored as text.
fn json_col(row: &AnyRow, what: &'static str) -> Result<Value> {
    let text: String = row.try_get(0)?;
    serde_json::from_str(&text).map_err(|_| StoreError::Corrupt(what))
}

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

fn session_from_row(row: &AnyRow) -> Result<Session> {
    let start = opt_dec(row, "meter_start_wh")?;
    let stop = opt_dec(row, "meter_stop_wh")?;
    let last = opt_dec(row, "last_register_wh")?;
    let end = stop.or(last);
    // the transaction model's energy (resets and jumps excluded); rows written
    // before it existed fall back to stop − start
    let energy = match (opt_dec(row, "energy_wh")?, start, end) {
        (Some(e), _, _) => e,
        (None, Some(s), Some(e)) if e > s => e - s,
        _ => Decimal::ZERO,
    };
    Ok(Session {
        id: row.try_get("id")?,
        station_id: row.try_get("station_id")?,
        ocpp_tx_id: row.try_get("ocpp_tx_id")?,
        evse_id: row.try_get("evse_id")?,
        connector_id: row.try_get("connector_id")?,
        id_token: row.try_get("id_token")?,
        status: row.try_get("status")?,
        started_at: row.try_get("started_at")?,
        stopped_at: row.try_get("stopped_at")?,
        meter_start_wh: start.map(|d| d.normalize()),
        meter_stop_wh: stop.map(|d| d.normalize()),
        energy_wh: energy.normalize(),
        stop_reason: row.try_get("stop_reason")?,
    })
}

const SESSION_COLS: &str =
    "id, station_id, ocpp_tx_id, evse_id, connector_id, id_token, status, started_at, stopped_at, \
     meter_start_wh, meter_stop_wh, last_register_wh, stop_reason, energy_wh";

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
            // SQLite is in-process: a ping before each use would be one more
            // round trip to the connection's thread, for nothing
            .test_before_acquire(!sqlite)
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
            // (rolling back whatever it held) when it is not.
            .after_release(move |conn, _| {
                Box::pin(async move {
                    if !sqlite {
                        return Ok(true);
                    }
                    match sqlx::query("BEGIN").execute(&mut *conn).await {
                        Ok(_) => {
                            sqlx::query("ROLLBACK").execute(&mut *conn).await?;
                            Ok(true)
                        }
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
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(*version)
                .bind(now())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// A setting.
    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.read)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    /// Settings whose key starts with `prefix`, in key order.
    pub async fn settings_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT key, value FROM settings WHERE key LIKE $1 ORDER BY key")
            .bind(format!("{prefix}%"))
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?)))
            // LIKE treats `_` as a wildcard: keep exact prefixes only
            .filter(|r: &Result<(String, String)>| {
                r.as_ref().map_or(true, |(k, _)| k.starts_with(prefix))
            })
            .collect()
    }

    /// Sets a setting.
    pub async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = $2",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

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

    /// Raises an alert unless the same kind is already open for the
    /// station (a repeated fault is one alert); returns its id when new.
    pub async fn raise_alert(
        &self,
        station: Option<&str>,
        kind: &str,
        detail: &Value,
    ) -> Result<Option<String>> {
        let open = sqlx::query(
            "SELECT id FROM alerts WHERE kind = $1 AND station_id = $2 AND cleared_at IS NULL",
        )
        .bind(kind)
        .bind(station.unwrap_or(""))
        .fetch_optional(&self.read)
        .await?;
        if open.is_some() {
            return Ok(None);
        }
        let id = random_hex(8);
        sqlx::query("INSERT INTO alerts (id, station_id, kind, detail, raised_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&id)
            .bind(station.unwrap_or(""))
            .bind(kind)
            .bind(detail.to_string())
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(Some(id))
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
    pub async fn alerts(&self, open_only: bool, limit: i64) -> Result<Vec<Value>> {
        let sql = if open_only {
            "SELECT id, station_id, kind, detail, raised_at, cleared_at FROM alerts WHERE cleared_at IS NULL ORDER BY raised_at DESC LIMIT $1"
        } else {
            "SELECT id, station_id, kind, detail, raised_at, cleared_at FROM alerts ORDER BY raised_at DESC LIMIT $1"
        };
        let rows = sqlx::query(sql).bind(limit).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let detail: String = r.try_get(3)?;
                Ok(json!({"id": r.try_get::<String, _>(0)?, "station": r.try_get::<String, _>(1)?,
                    "kind": r.try_get::<String, _>(2)?, "detail": serde_json::from_str::<Value>(&detail).unwrap_or(Value::Null),
                    "raised_at": r.try_get::<String, _>(4)?, "cleared_at": r.try_get::<Option<String>, _>(5)?}))
            })
            .collect()
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
                let detail = json!({"since": t});
                ops.push(crate::writer::Op::RaiseAlert {
                    id: random_hex(8),
                    station: station.clone(),
                    kind: "offline",
                    detail: detail.to_string(),
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

    /// Stores a variable a station reported (NotifyReport, 2.x) in its
    /// device model: an update, or a new row while the station has fewer
    /// than `max_rows`. Whether it was kept.
    pub async fn put_device_model(
        &self,
        station: &str,
        component: &str,
        variable: &str,
        body: &Value,
        max_rows: i64,
    ) -> Result<bool> {
        // an update, or a new row while the station has fewer than `max_rows`
        let updated = sqlx::query(
            "UPDATE device_model SET body = $4, updated_at = $5 WHERE station_id = $1 AND component = $2 AND variable = $3",
        )
        .bind(station)
        .bind(component)
        .bind(variable)
        .bind(body.to_string())
        .bind(now())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated > 0 {
            return Ok(true);
        }
        let inserted = sqlx::query(
            "INSERT INTO device_model (station_id, component, variable, body, updated_at)
             SELECT $1, $2, $3, $4, $5 WHERE (SELECT COUNT(*) FROM device_model WHERE station_id = $1) < $6
             ON CONFLICT (station_id, component, variable) DO UPDATE SET body = $4, updated_at = $5",
        )
        .bind(station)
        .bind(component)
        .bind(variable)
        .bind(body.to_string())
        .bind(now())
        .bind(max_rows)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted > 0)
    }

    /// One reported variable of a station's device model.
    pub async fn device_variable(
        &self,
        station: &str,
        component: &str,
        variable: &str,
    ) -> Result<Option<Value>> {
        let row = sqlx::query("SELECT body FROM device_model WHERE station_id = $1 AND component = $2 AND variable = $3")
            .bind(station)
            .bind(component)
            .bind(variable)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| json_col(&r, "device model")).transpose()
    }

    /// A station's device model.
    pub async fn device_model(&self, station: &str) -> Result<Vec<Value>> {
        let rows = sqlx::query(
            "SELECT body FROM device_model WHERE station_id = $1 ORDER BY component, variable",
        )
        .bind(station)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| json_col(r, "device model")).collect()
    }

    /// Sets a setting if it is not set yet; returns the value in force.
    pub async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(self.setting(key).await?.unwrap_or_else(|| value.to_owned()))
    }

    /// Registers or updates a station; `password` replaces the stored one when given.
    pub async fn upsert_station(&self, id: &str, password: Option<&str>) -> Result<bool> {
        let hash = match password {
            // Argon2id is slow on purpose: off the async workers
            Some(p) => {
                let p = p.to_owned();
                tokio::task::spawn_blocking(move || hash_password(&p))
                    .await
                    .ok()
            }
            None => None,
        };
        if password.is_some() && hash.is_none() {
            return Err(StoreError::Corrupt("password hash"));
        }
        let created = sqlx::query("INSERT INTO stations (id, password_hash, created_at, sort_key) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(hash.clone())
            .bind(now())
            .bind(natural_key(id))
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1;
        if !created {
            if let Some(h) = hash {
                sqlx::query("UPDATE stations SET password_hash = $1 WHERE id = $2")
                    .bind(h)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(created)
    }

    /// Removes a station (its sessions stay).
    pub async fn delete_station(&self, id: &str) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM stations WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1)
    }

    /// Replaces a station's password hash by `new` if it is still `old`
    /// (a re-hash after login; a password set meanwhile wins). Whether it
    /// was replaced.
    pub async fn rehash_password(&self, id: &str, old: &str, new: &str) -> Result<bool> {
        Ok(sqlx::query(
            "UPDATE stations SET password_hash = $1 WHERE id = $2 AND password_hash = $3",
        )
        .bind(new)
        .bind(id)
        .bind(old)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Every station's identity, password hash and security profile.
    pub async fn credentials(&self) -> Result<Vec<Credentials>> {
        let rows = sqlx::query("SELECT id, password_hash, security_profile FROM stations")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Credentials {
                    id: r.try_get(0)?,
                    password_hash: r.try_get(1)?,
                    security_profile: profile(r.try_get(2)?)?,
                })
            })
            .collect()
    }

    /// Sets a registered station's registration and security profile (each
    /// when given); whether the station exists.
    pub async fn set_station_policy(
        &self,
        id: &str,
        registration: Option<Registration>,
        security_profile: Option<u8>,
    ) -> Result<bool> {
        let mut found = true;
        if let Some(r) = registration {
            found &= sqlx::query("UPDATE stations SET registration = $1 WHERE id = $2")
                .bind(r.as_str())
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1;
        }
        if let Some(p) = security_profile {
            found &= sqlx::query("UPDATE stations SET security_profile = $1 WHERE id = $2")
                .bind(i64::from(p))
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1;
        }
        Ok(found)
    }

    /// Records a boot (vendor, model, serial and firmware from `info`,
    /// the version and the answer), registering the station first when
    /// `register` (an unknown identity accepted or pending): one write in
    /// the next group commit.
    ///
    /// # Errors
    ///
    /// The database failed: nothing of it was kept.
    pub async fn record_boot(
        &self,
        id: &str,
        register: bool,
        version: &'static str,
        info: &Value,
        status: &'static str,
    ) -> Result<()> {
        use crate::writer::Op;
        let s = |k: &str| info.get(k).and_then(Value::as_str).map(str::to_owned);
        let mut ops = Vec::with_capacity(2);
        if register {
            ops.push(Op::Station { id: id.to_owned() });
        }
        ops.push(Op::Boot {
            id: id.to_owned(),
            version,
            info: [s("vendor"), s("model"), s("serial"), s("firmware")],
            status,
        });
        self.writer.write(ops).await
    }

    /// Writes last-seen times (in the next group commit).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn seen_batch(&self, batch: &[(String, String)]) -> Result<()> {
        self.writer
            .write(
                batch
                    .iter()
                    .map(|(station, at)| crate::writer::Op::Seen {
                        station: station.clone(),
                        at: at.clone(),
                    })
                    .collect(),
            )
            .await
    }

    /// Records a connector status (in the next group commit).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn set_status(
        &self,
        id: &str,
        evse: i64,
        connector: i64,
        status: &str,
        error: Option<&str>,
    ) -> Result<()> {
        self.writer
            .write(vec![crate::writer::Op::Status {
                station: id.to_owned(),
                evse,
                connector,
                status: status.to_owned(),
                error: error.map(str::to_owned),
            }])
            .await
    }

    /// One station with its connectors.
    pub async fn station(&self, id: &str) -> Result<Option<Station>> {
        let Some(row) = sqlx::query(
            "SELECT id, password_hash, vendor, model, serial, firmware, ocpp_version, boot_status, last_boot, last_seen, registration, security_profile FROM stations WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?
        else {
            return Ok(None);
        };
        let conns = sqlx::query("SELECT evse_id, connector_id, status, error_code, updated_at FROM connectors WHERE station_id = $1 ORDER BY evse_id, connector_id")
            .bind(id)
            .fetch_all(&self.read)
            .await?;
        let connectors = conns
            .iter()
            .map(|c| {
                Ok(json!({"evse_id": c.try_get::<i64, _>(0)?, "connector_id": c.try_get::<i64, _>(1)?,
                    "status": c.try_get::<String, _>(2)?, "error_code": c.try_get::<Option<String>, _>(3)?,
                    "updated_at": c.try_get::<String, _>(4)?}))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Station {
            id: row.try_get(0)?,
            has_password: row.try_get::<Option<String>, _>(1)?.is_some(),
            vendor: row.try_get(2)?,
            model: row.try_get(3)?,
            serial: row.try_get(4)?,
            firmware: row.try_get(5)?,
            ocpp_version: row.try_get(6)?,
            boot_status: row.try_get(7)?,
            last_boot: row.try_get(8)?,
            last_seen: row.try_get(9)?,
            registration: Registration::parse(row.try_get::<Option<String>, _>(10)?.as_deref()),
            security_profile: profile(row.try_get(11)?)?,
            connectors,
        }))
    }

    /// Stations whose last boot was accepted.
    pub async fn accepted_stations(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM stations WHERE boot_status = 'Accepted'")
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Every station's identity.
    pub async fn station_ids(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM stations ORDER BY id")
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Creates or updates a token (all but `created_at`, which a new one
    /// gets now); whether it was created.
    pub async fn upsert_token(&self, t: &TokenRecord) -> Result<bool> {
        let expires = t.expires_at.map(ts);
        let created = sqlx::query(
            "INSERT INTO tokens (id_token, token_type, status, group_id, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id_token) DO NOTHING",
        )
        .bind(&t.id_token)
        .bind(&t.token_type)
        .bind(&t.status)
        .bind(&t.group_id)
        .bind(&expires)
        .bind(now())
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        if !created {
            sqlx::query(
                "UPDATE tokens SET token_type = $1, status = $2, group_id = $3, expires_at = $4 \
                 WHERE id_token = $5",
            )
            .bind(&t.token_type)
            .bind(&t.status)
            .bind(&t.group_id)
            .bind(&expires)
            .bind(&t.id_token)
            .execute(&self.pool)
            .await?;
        }
        // read back (created_at) into the cache
        let stored = self.token(&t.id_token).await?;
        self.cache
            .tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(t.id_token.clone(), stored);
        Ok(created)
    }

    /// Deletes a token; whether there was one. Its wallet and sessions stay.
    pub async fn delete_token(&self, id_token: &str) -> Result<bool> {
        let gone = sqlx::query("DELETE FROM tokens WHERE id_token = $1")
            .bind(id_token)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1;
        self.cache
            .tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id_token.to_owned(), None);
        Ok(gone)
    }

    /// A token's status, if known (cached, see [`Store::token_record`]).
    pub async fn token_status(&self, id_token: &str) -> Result<Option<String>> {
        Ok(self.token_record(id_token).await?.map(|t| t.status))
    }

    /// A token as stations are answered about it, if known (cached; the
    /// cache follows [`Store::upsert_token`] and [`Store::delete_token`]).
    pub async fn token_record(&self, id_token: &str) -> Result<Option<TokenRecord>> {
        if let Some(t) = self
            .cache
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id_token)
        {
            return Ok(t.clone());
        }
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM tokens WHERE id_token = $1"
        ))
        .bind(id_token)
        .fetch_optional(&self.read)
        .await?;
        let record = row.as_ref().map(TokenRecord::from_row).transpose()?;
        let mut cache = self.cache.tokens.write().unwrap_or_else(|e| e.into_inner());
        // a bound on what unknown tokens presented at random can fill
        if cache.len() >= 100_000 {
            cache.retain(|_, s| s.is_some());
        }
        // an upsert that raced this read wins
        Ok(cache.entry(id_token.to_owned()).or_insert(record).clone())
    }

    /// Every token.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM tokens ORDER BY id_token"
        ))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(TokenRecord::from_row).collect()
    }

    /// Meter samples for a session; the energy register also moves the
    /// session's last reading (only forward).
    pub async fn meter_values(
        &self,
        session_id: &str,
        samples: &[(String, String, String, Option<String>)],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (t, measurand, value, unit) in samples {
            sqlx::query("INSERT INTO meter_values (session_id, ts, measurand, value, unit) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
                .bind(session_id)
                .bind(t.clone())
                .bind(measurand.clone())
                .bind(value.clone())
                .bind(unit.clone())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let registers: Vec<Decimal> = samples
            .iter()
            .filter(|s| s.1 == "Energy.Active.Import.Register")
            .filter_map(|s| to_wh(&s.2, s.3.as_deref()))
            .collect();
        if let Some(max) = registers.into_iter().max() {
            self.advance_register(session_id, max).await?;
        }
        Ok(())
    }

    async fn advance_register(&self, session_id: &str, wh: Decimal) -> Result<()> {
        let current = sqlx::query("SELECT last_register_wh FROM sessions WHERE id = $1")
            .bind(session_id)
            .fetch_optional(&self.read)
            .await?;
        let Some(row) = current else { return Ok(()) };
        let cur = opt_dec(&row, "last_register_wh")?;
        if cur.is_none_or(|c| wh > c) {
            sqlx::query("UPDATE sessions SET last_register_wh = $1, updated_at = $2 WHERE id = $3")
                .bind(wh.to_string())
                .bind(now())
                .bind(session_id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Creates or replaces a tariff (OCPI 2.2.1 JSON, checked by the caller).
    pub async fn put_tariff(&self, id: &str, body: &Value) -> Result<bool> {
        let created = sqlx::query("INSERT INTO tariffs (id, body, updated_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(body.to_string())
            .bind(now())
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1;
        if !created {
            sqlx::query("UPDATE tariffs SET body = $1, updated_at = $2 WHERE id = $3")
                .bind(body.to_string())
                .bind(now())
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        self.cache
            .tariffs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), Some(body.clone()));
        Ok(created)
    }

    /// Marks a tariff gone in the cache (after its row was deleted).
    pub(crate) fn forget_tariff(&self, id: &str) {
        self.cache
            .tariffs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), None);
    }

    /// A tariff's JSON (cached; the cache follows [`Store::put_tariff`]).
    pub async fn tariff(&self, id: &str) -> Result<Option<Value>> {
        if let Some(t) = self
            .cache
            .tariffs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            return Ok(t.clone());
        }
        let row = sqlx::query("SELECT body FROM tariffs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        let body = row.map(|r| json_col(&r, "tariff")).transpose()?;
        let mut cache = self
            .cache
            .tariffs
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if cache.len() >= 10_000 {
            cache.clear();
        }
        Ok(cache.entry(id.to_owned()).or_insert(body).clone())
    }

    /// Every tariff's JSON.
    pub async fn tariffs(&self) -> Result<Vec<Value>> {
        let rows = sqlx::query("SELECT body FROM tariffs ORDER BY id")
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| json_col(r, "tariff")).collect()
    }

    /// Stores a session's CDR once; a second one for the same session is
    /// ignored (returns false).
    pub async fn insert_cdr(
        &self,
        session_id: &str,
        currency: &str,
        excl: Decimal,
        incl: Decimal,
        body: &Value,
    ) -> Result<bool> {
        Ok(sqlx::query(
            "INSERT INTO cdrs (session_id, currency, total_excl, total_incl, body, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (session_id) DO NOTHING",
        )
        .bind(session_id)
        .bind(currency)
        .bind(excl.to_string())
        .bind(incl.to_string())
        .bind(body.to_string())
        .bind(now())
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// A session's CDR.
    pub async fn cdr(&self, session_id: &str) -> Result<Option<Value>> {
        let row = sqlx::query("SELECT body FROM cdrs WHERE session_id = $1")
            .bind(session_id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| json_col(&r, "cdr")).transpose()
    }

    /// CDRs, newest first.
    pub async fn cdrs(&self, limit: i64) -> Result<Vec<Value>> {
        let rows = sqlx::query("SELECT body FROM cdrs ORDER BY created_at DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| json_col(r, "cdr")).collect()
    }

    /// Revenue: (currency, total excl. VAT, total incl. VAT, CDR count) per currency.
    pub async fn revenue(&self) -> Result<Vec<(String, Decimal, Decimal, i64)>> {
        let rows = sqlx::query("SELECT currency, total_excl, total_incl FROM cdrs")
            .fetch_all(&self.read)
            .await?;
        let mut out: Vec<(String, Decimal, Decimal, i64)> = Vec::new();
        for r in rows {
            let cur: String = r.try_get(0)?;
            let e = Decimal::from_str(&r.try_get::<String, _>(1)?)
                .map_err(|_| StoreError::Corrupt("cdr total"))?;
            let i = Decimal::from_str(&r.try_get::<String, _>(2)?)
                .map_err(|_| StoreError::Corrupt("cdr total"))?;
            match out.iter_mut().find(|x| x.0 == cur) {
                Some(x) => {
                    x.1 += e;
                    x.2 += i;
                    x.3 += 1;
                }
                None => out.push((cur, e, i, 1)),
            }
        }
        Ok(out)
    }

    /// One session, as committed (read without the write connection: a
    /// station message's answer never waits for other stations' commits).
    pub async fn session(&self, id: &str) -> Result<Option<Session>> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// Sessions, newest first, optionally of one station.
    pub async fn sessions(&self, station: Option<&str>, limit: i64) -> Result<Vec<Session>> {
        let rows = match station {
            Some(s) => {
                sqlx::query(&format!("SELECT {SESSION_COLS} FROM sessions WHERE station_id = $1 ORDER BY updated_at DESC LIMIT $2"))
                    .bind(s)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(&format!("SELECT {SESSION_COLS} FROM sessions ORDER BY updated_at DESC LIMIT $1"))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(session_from_row).collect()
    }

    /// A session's meter values in time order.
    pub async fn session_meter_values(&self, id: &str) -> Result<Vec<Value>> {
        let rows = sqlx::query("SELECT ts, measurand, value, unit FROM meter_values WHERE session_id = $1 ORDER BY ts, measurand")
            .bind(id)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(json!({"timestamp": r.try_get::<String, _>(0)?, "measurand": r.try_get::<String, _>(1)?,
                    "value": r.try_get::<String, _>(2)?, "unit": r.try_get::<Option<String>, _>(3)?}))
            })
            .collect()
    }

    /// The active session on a station's EVSE/connector (1.6 MeterValues without a transaction id).
    pub async fn active_session_on(&self, station: &str, connector: i64) -> Result<Option<String>> {
        Ok(sqlx::query("SELECT id FROM sessions WHERE station_id = $1 AND connector_id = $2 AND status = 'Active' ORDER BY updated_at DESC LIMIT 1")
            .bind(station)
            .bind(connector)
            .fetch_optional(&self.read)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

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
}

/// An energy reading in Wh from its text and unit (Wh or kWh).
pub fn to_wh(value: &str, unit: Option<&str>) -> Option<Decimal> {
    let v = Decimal::from_str(value.trim())
        .or_else(|_| Decimal::from_scientific(value.trim()))
        .ok()?;
    let wh = match unit.unwrap_or("Wh") {
        "kWh" => v.checked_mul(Decimal::from(1000))?,
        "Wh" => v,
        _ => return None,
    };
    // a register outside the physical range is no reading (no sum of them overflows)
    (Decimal::ZERO..=evproto_csms_core::transaction::MAX_REGISTER_WH)
        .contains(&wh)
        .then_some(wh)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Digit runs compare by value, the rest by bytes; ids that differ only
    /// in leading zeros share a key (the id breaks the tie).
    #[test]
    fn natural_keys() {
        let mut ids = [
            "LOAD10", "LOAD2", "LOAD1", "A9", "A10b", "A10a", "B", "LOAD002",
        ];
        ids.sort_by_key(|id| (natural_key(id), id.to_string()));
        assert_eq!(
            ids,
            ["A9", "A10a", "A10b", "B", "LOAD1", "LOAD002", "LOAD2", "LOAD10"]
        );
        assert_eq!(natural_key("CP-007x12"), "CP-017x0212");
        assert_eq!(natural_key("0"), "010");
    }

    /// The keyset condition for two keys, numbered after the filters' binds.
    #[test]
    fn after_condition() {
        let mut sql = Sql {
            text: String::new(),
            binds: vec!["filter".into()],
        };
        let c = after_cond(&mut sql, &["a", "b"], &["x".into(), "y".into()], "<");
        assert_eq!(c, "(a < $2 OR (a = $3 AND b < $4))");
        assert_eq!(sql.binds, ["filter", "x", "x", "y"]);
    }

    #[test]
    fn passwords() {
        let h = hash_password("secret-password");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password(&h, b"secret-password"));
        assert!(!verify_password(&h, b"secret-passwore"));
        assert!(!verify_password("garbage", b"secret-password"));
        assert!(!verify_password("$argon2id$garbage", b"secret-password"));
        assert!(!verify_password(&h, &[0xff, 0xfe]));
        assert_ne!(hash_password("x"), hash_password("x"), "salted");
        assert!(!needs_rehash(&h));
        // the hashes of earlier releases still verify, and are re-hashed
        let legacy = legacy_sha256("secret-password", "abcd");
        assert!(verify_password(&legacy, b"secret-password"));
        assert!(!verify_password(&legacy, b"secret-passwore"));
        assert!(needs_rehash(&legacy));
        let weaker = h.replace("m=19456,t=2", "m=19456,t=1");
        assert!(needs_rehash(&weaker));
        assert_eq!(random_hex(16).len(), 32);
        assert_ne!(random_hex(16), random_hex(16));
    }

    #[test]
    fn energy_units() {
        assert_eq!(to_wh("1.5", Some("kWh")), Some(Decimal::from(1500)));
        assert_eq!(to_wh("1000.5", None), Decimal::from_str("1000.5").ok());
        assert_eq!(to_wh("1e3", Some("Wh")), Some(Decimal::from(1000)));
        assert_eq!(to_wh("x", None), None);
        assert_eq!(to_wh("5", Some("varh")), None);
        // out of the physical range, or too large to scale: no reading, no panic
        assert_eq!(to_wh("1e26", Some("kWh")), None);
        assert_eq!(to_wh("79228162514264337593543950335", Some("kWh")), None);
        assert_eq!(to_wh("-1", None), None);
    }
}

/// A session row as the transaction model summarizes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// Our id.
    pub id: String,
    /// Station identity.
    pub station_id: String,
    /// The OCPP transaction id.
    pub ocpp_tx_id: String,
    /// EVSE (2.x) or connector (1.6).
    pub evse_id: Option<i64>,
    /// Connector.
    pub connector_id: Option<i64>,
    /// The token that started it.
    pub id_token: Option<String>,
    /// Completed (else Active).
    pub completed: bool,
    /// Start time.
    pub started_at: Option<DateTime<Utc>>,
    /// Stop time.
    pub stopped_at: Option<DateTime<Utc>>,
    /// Register at start, Wh.
    pub meter_start_wh: Option<Decimal>,
    /// Register at stop, Wh (completed sessions).
    pub meter_stop_wh: Option<Decimal>,
    /// Latest register, Wh.
    pub last_register_wh: Option<Decimal>,
    /// Energy, Wh.
    pub energy_wh: Decimal,
    /// Why it stopped (the OCPP name).
    pub stop_reason: Option<&'static str>,
    /// 1.6: the start key a replayed StartTransaction is recognized by.
    pub start_key: Option<String>,
}

impl SessionRow {
    /// The session as [`Store::session`] reads this row back.
    pub fn to_session(&self) -> Session {
        Session {
            id: self.id.clone(),
            station_id: self.station_id.clone(),
            ocpp_tx_id: self.ocpp_tx_id.clone(),
            evse_id: self.evse_id,
            connector_id: self.connector_id,
            id_token: self.id_token.clone(),
            status: if self.completed {
                "Completed"
            } else {
                "Active"
            }
            .to_owned(),
            started_at: self.started_at.map(ts),
            stopped_at: self.stopped_at.map(ts),
            meter_start_wh: self.meter_start_wh.map(|d| d.normalize()),
            meter_stop_wh: self.meter_stop_wh.map(|d| d.normalize()),
            energy_wh: self.energy_wh.normalize(),
            stop_reason: self.stop_reason.map(str::to_owned),
        }
    }
}

impl Store {
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

    /// A session's transaction messages: (key, kind, payload), in the order
    /// received.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn tx_messages(&self, session_id: &str) -> Result<Vec<(String, String, String)>> {
        self.fault()?;
        let rows = sqlx::query(
            "SELECT msg_key, kind, payload FROM tx_messages WHERE session_id = $1 ORDER BY received_at, msg_key",
        )
        .bind(session_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// The 1.6 transaction id a start key was given, if any.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn start_key(&self, key: &str) -> Result<Option<i64>> {
        self.fault()?;
        let row = sqlx::query("SELECT ocpp_tx_id FROM session_start_keys WHERE start_key = $1")
            .bind(key)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| {
            r.try_get::<String, _>(0)?
                .parse()
                .map_err(|_| StoreError::Corrupt("transaction id"))
        })
        .transpose()
    }

    /// A counter's value (0 when it was never raised).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn counter(&self, name: &str) -> Result<i64> {
        self.fault()?;
        Ok(sqlx::query("SELECT value FROM counters WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await?
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .unwrap_or(0))
    }
}

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
        // kept while the station has fewer than `max_rows` reports
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
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted > 0)
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
    /// Deletes a setting; whether it was there.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn delete_setting(&self, key: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM settings WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a setting only while it still holds `value`: true for the
    /// one caller that took it (single-use values such as upload tokens).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn take_setting(&self, key: &str, value: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM settings WHERE key = $1 AND value = $2")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
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

    /// Revenue incl. VAT and CDR count per currency, summed by the
    /// database (as floating point: what a metric is).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn revenue_sums(&self) -> Result<Vec<(String, f64, i64)>> {
        let rows = sqlx::query(
            "SELECT currency, SUM(CAST(total_incl AS DOUBLE PRECISION)), COUNT(*) FROM cdrs GROUP BY currency ORDER BY currency",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }
}

/// What a list request asks for: its filters and where the previous page
/// ended. Times are as stored (see [`now`]); the caller checks the values.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Rows per page.
    pub limit: i64,
    /// The sort key of the last row of the previous page ([`Page::next`]).
    pub after: Option<Vec<String>>,
    /// Only rows of this station.
    pub station: Option<String>,
    /// Only rows in this status (the list's own statuses).
    pub status: Option<String>,
    /// Only rows at or after this time.
    pub since: Option<String>,
    /// Only rows before this time.
    pub until: Option<String>,
    /// Only rows whose identity (and, where the list says, other text
    /// columns) contains this text, case-insensitively.
    pub search: Option<String>,
}

/// A `LIKE` pattern matching `text` anywhere, lower-cased, with `%`, `_`
/// and the escape character `\` escaped (see [`Cond::Like`]).
pub(crate) fn like_pattern(text: &str) -> String {
    let mut p = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
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

/// One page of a list in a stable order.
#[derive(Debug)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// The sort key of the last row when more follow (the next page's
    /// [`ListQuery::after`]).
    pub next: Option<Vec<String>>,
    /// Rows matching the filters, over all pages.
    pub total: i64,
}

/// A keyset-paged listing: rows in the order of `keys` (unique together,
/// never changed once written, so a row is on exactly one page however
/// many pages are read), filtered by `conds`.
pub(crate) struct Keyset<'a> {
    /// `FROM` and joins.
    pub(crate) from: &'a str,
    /// Selected columns; the keys follow them.
    pub(crate) cols: &'a str,
    /// Sort key expressions (text), most significant first.
    pub(crate) keys: &'a [&'a str],
    /// Newest (greatest) first.
    pub(crate) desc: bool,
}

/// A filter: `expr op value` with the value bound, or a fixed condition.
pub(crate) enum Cond<'a> {
    Cmp(&'a str, &'static str, String),
    Fixed(&'static str),
    /// One of the columns, lower-cased, matches the `LIKE` pattern (made by
    /// [`like_pattern`]).
    Like(&'static [&'static str], String),
}

/// Binds as `$n` in order.
struct Sql {
    text: String,
    binds: Vec<String>,
}

impl Sql {
    fn bind(&mut self, v: String) -> String {
        self.binds.push(v);
        format!("${}", self.binds.len())
    }

    fn conds(&mut self, conds: &[Cond<'_>]) {
        let mut first = true;
        for c in conds {
            self.text.push_str(if first { " WHERE " } else { " AND " });
            first = false;
            match c {
                Cond::Cmp(expr, op, v) => {
                    let p = self.bind(v.clone());
                    self.text.push_str(&format!("{expr} {op} {p}"));
                }
                Cond::Fixed(s) => self.text.push_str(s),
                Cond::Like(cols, pattern) => {
                    let p = self.bind(pattern.clone());
                    let any: Vec<String> = cols
                        .iter()
                        .map(|c| format!("LOWER({c}) LIKE {p} ESCAPE '\\'"))
                        .collect();
                    self.text.push_str(&format!("({})", any.join(" OR ")));
                }
            }
        }
    }
}

/// `(k1 > a OR (k1 = a AND (k2 > b ...)))` for the row after `after`.
fn after_cond(sql: &mut Sql, keys: &[&str], after: &[String], op: &str) -> String {
    match (keys, after) {
        ([k], [a]) => format!("{k} {op} {}", sql.bind(a.clone())),
        ([k, ks @ ..], [a, as_ @ ..]) => {
            let gt = sql.bind(a.clone());
            let eq = sql.bind(a.clone());
            let rest = after_cond(sql, ks, as_, op);
            format!("({k} {op} {gt} OR ({k} = {eq} AND {rest}))")
        }
        _ => "1 = 0".to_owned(),
    }
}

/// A station identity's natural sort key: each run of digits becomes its
/// length (two digits) and the digits without leading zeros, so `LOAD2`
/// sorts before `LOAD10` by plain byte order.
pub fn natural_key(id: &str) -> String {
    let mut out = String::with_capacity(id.len() + 8);
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if !digits.is_empty() {
            let d = digits.trim_start_matches('0');
            let d = if d.is_empty() { "0" } else { d };
            out.push_str(&format!("{:02}{d}", d.len()));
            digits.clear();
        }
    };
    for c in id.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

impl Store {
    /// One page of `ks` under `conds`, with the total under `conds`.
    pub(crate) async fn page(
        &self,
        ks: &Keyset<'_>,
        conds: Vec<Cond<'_>>,
        q: &ListQuery,
    ) -> Result<(Vec<AnyRow>, Option<Vec<String>>, i64)> {
        let mut count = Sql {
            text: format!("SELECT COUNT(*) FROM {}", ks.from),
            binds: Vec::new(),
        };
        count.conds(&conds);
        let mut rows = Sql {
            text: format!(
                "SELECT {}, {} FROM {}",
                ks.cols,
                ks.keys.join(", "),
                ks.from
            ),
            binds: Vec::new(),
        };
        rows.conds(&conds);
        if let Some(after) = &q.after {
            if after.len() != ks.keys.len() {
                return Err(StoreError::BadCursor);
            }
            let cond = after_cond(&mut rows, ks.keys, after, if ks.desc { "<" } else { ">" });
            rows.text
                .push_str(if conds.is_empty() { " WHERE " } else { " AND " });
            rows.text.push_str(&cond);
        }
        let dir = if ks.desc { "DESC" } else { "ASC" };
        let order: Vec<String> = ks.keys.iter().map(|k| format!("{k} {dir}")).collect();
        let limit = q.limit.clamp(1, 1000);
        rows.text.push_str(&format!(
            " ORDER BY {} LIMIT {}",
            order.join(", "),
            limit + 1
        ));
        let mut total = sqlx::query(&count.text);
        for b in &count.binds {
            total = total.bind(b.clone());
        }
        let total: i64 = total.fetch_one(&self.read).await?.try_get(0)?;
        let mut rows_q = sqlx::query(&rows.text);
        for b in &rows.binds {
            rows_q = rows_q.bind(b.clone());
        }
        let mut rows = rows_q.fetch_all(&self.read).await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next = match rows.last() {
            Some(r) if more => {
                let first = r.columns().len() - ks.keys.len();
                Some(
                    (first..r.columns().len())
                        .map(|i| r.try_get::<String, _>(i))
                        .collect::<std::result::Result<Vec<_>, _>>()?,
                )
            }
            _ => None,
        };
        Ok((rows, next, total))
    }

    /// Stations in natural order of their identities (`LOAD2` before
    /// `LOAD10`); `status` is the last boot's (`Accepted`, `Pending`,
    /// `Rejected`).
    pub async fn stations_page(&self, q: &ListQuery) -> Result<Page<Station>> {
        // stations registered by a boot (the writer) get their key here
        let unkeyed = sqlx::query("SELECT id FROM stations WHERE sort_key IS NULL")
            .fetch_all(&self.read)
            .await?;
        for r in unkeyed {
            let id: String = r.try_get(0)?;
            sqlx::query("UPDATE stations SET sort_key = $1 WHERE id = $2")
                .bind(natural_key(&id))
                .bind(&id)
                .execute(&self.pool)
                .await?;
        }
        let mut conds = Vec::new();
        if let Some(s) = &q.status {
            conds.push(Cond::Cmp("boot_status", "=", s.clone()));
        }
        if let Some(text) = &q.search {
            conds.push(Cond::Like(&["id"], like_pattern(text)));
        }
        let ks = Keyset {
            from: "stations",
            cols: "id",
            keys: &["sort_key", "id"],
            desc: false,
        };
        let (rows, next, total) = self.page(&ks, conds, q).await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in rows {
            if let Some(s) = self.station(&r.try_get::<String, _>(0)?).await? {
                items.push(s);
            }
        }
        Ok(Page { items, next, total })
    }

    /// Tokens by id; `status` is the token's, `since`/`until` bound its
    /// creation, `q` searches the token and its group.
    pub async fn tokens_page(&self, q: &ListQuery) -> Result<Page<TokenRecord>> {
        let mut conds = Vec::new();
        if let Some(s) = &q.status {
            conds.push(Cond::Cmp("status", "=", s.clone()));
        }
        if let Some(text) = &q.search {
            conds.push(Cond::Like(&["id_token", "group_id"], like_pattern(text)));
        }
        time_conds(&mut conds, "created_at", q);
        let ks = Keyset {
            from: "tokens",
            cols: TOKEN_COLS,
            keys: &["id_token"],
            desc: false,
        };
        let (rows, next, total) = self.page(&ks, conds, q).await?;
        let items = rows
            .iter()
            .map(TokenRecord::from_row)
            .collect::<Result<_>>()?;
        Ok(Page { items, next, total })
    }

    /// One token, if known (from the database, not the cache).
    pub async fn token(&self, id_token: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLS} FROM tokens WHERE id_token = $1"
        ))
        .bind(id_token)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(TokenRecord::from_row).transpose()
    }

    /// Sessions, latest start first (the start never changes, so paging
    /// is stable while sessions update); `since`/`until` bound the start.
    pub async fn sessions_page(&self, q: &ListQuery) -> Result<Page<Session>> {
        let mut conds = Vec::new();
        if let Some(s) = &q.station {
            conds.push(Cond::Cmp("station_id", "=", s.clone()));
        }
        if let Some(s) = &q.status {
            conds.push(Cond::Cmp("status", "=", s.clone()));
        }
        time_conds(&mut conds, "COALESCE(started_at, '')", q);
        let ks = Keyset {
            from: "sessions",
            cols: SESSION_COLS,
            keys: &["COALESCE(started_at, '')", "id"],
            desc: true,
        };
        let (rows, next, total) = self.page(&ks, conds, q).await?;
        let items = rows.iter().map(session_from_row).collect::<Result<_>>()?;
        Ok(Page { items, next, total })
    }

    /// CDRs, newest first; `station` is the session's, `since`/`until`
    /// bound when the CDR was made.
    pub async fn cdrs_page(&self, q: &ListQuery) -> Result<Page<Value>> {
        let mut conds = Vec::new();
        let from = if let Some(s) = &q.station {
            conds.push(Cond::Cmp("s.station_id", "=", s.clone()));
            "cdrs c JOIN sessions s ON s.id = c.session_id"
        } else {
            "cdrs c"
        };
        time_conds(&mut conds, "c.created_at", q);
        let ks = Keyset {
            from,
            cols: "c.body",
            keys: &["c.created_at", "c.session_id"],
            desc: true,
        };
        let (rows, next, total) = self.page(&ks, conds, q).await?;
        let items = rows
            .iter()
            .map(|r| json_col(r, "cdr"))
            .collect::<Result<_>>()?;
        Ok(Page { items, next, total })
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
            cols: "id, station_id, kind, detail, raised_at, cleared_at",
            keys: &["raised_at", "id"],
            desc: true,
        };
        let (rows, next, total) = self.page(&ks, conds, q).await?;
        let items = rows
            .iter()
            .map(|r| {
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
            })
            .collect::<Result<_>>()?;
        Ok(Page { items, next, total })
    }

    /// Tariffs by id.
    pub async fn tariffs_page(&self, q: &ListQuery) -> Result<Page<Value>> {
        let ks = Keyset {
            from: "tariffs",
            cols: "body",
            keys: &["id"],
            desc: false,
        };
        let (rows, next, total) = self.page(&ks, Vec::new(), q).await?;
        let items = rows
            .iter()
            .map(|r| json_col(r, "tariff"))
            .collect::<Result<_>>()?;
        Ok(Page { items, next, total })
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

pub(crate) fn time_conds<'a>(conds: &mut Vec<Cond<'a>>, expr: &'a str, q: &ListQuery) {
    if let Some(t) = &q.since {
        conds.push(Cond::Cmp(expr, ">=", t.clone()));
    }
    if let Some(t) = &q.until {
        conds.push(Cond::Cmp(expr, "<", t.clone()));
    }
}
