//! Group commit: the writes of station messages that arrive together share
//! one database transaction and one commit (one `fsync` of the SQLite WAL,
//! one PostgreSQL WAL flush), and each message is answered only after the
//! commit that holds it.
//!
//! A message's writes are a [`WriteSet`] of typed [`Op`]s, computed in
//! memory by the rules (`crate::sessions`) before anything is written. The
//! writer task takes every set queued while the previous commit ran (up to
//! [`MAX_BATCH`]), writes them as a few multi-row statements per table,
//! commits, and tells each sender. When a batch fails, its sets are written
//! again one by one, each in its own transaction, so one bad message does
//! not fail the messages that merely shared its commit; a set that fails
//! alone leaves nothing of itself (its sender answers `InternalError` and
//! the station retries).
//!
//! Durability: SQLite runs in WAL mode with `synchronous=FULL` on the write
//! connection, so the WAL is synced at every commit and a power cut loses no
//! committed (hence no answered) message; PostgreSQL's default
//! `synchronous_commit=on` gives the same. Group commit is what makes a
//! sync per commit affordable.

use rust_decimal::Decimal;
use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

use crate::store::{now, Result, SessionRow, StoreError};

/// The most write sets one commit takes.
pub const MAX_BATCH: usize = 1024;

/// A sampled value as kept: (timestamp, measurand[.phase], value, unit).
pub type Sample = (String, String, String, Option<String>);

/// One typed write.
#[derive(Debug, Clone)]
pub enum Op {
    /// A transaction message under its de-duplication key.
    TxMessage {
        /// The session.
        session_id: String,
        /// The de-duplication key within the session.
        key: String,
        /// How the payload is decoded back.
        kind: &'static str,
        /// The message as received (its JSON).
        payload: String,
    },
    /// A session row, created or replaced.
    Session(Box<SessionRow>),
    /// Sampled values of a session (repeats ignored).
    MeterValues {
        /// The session.
        session_id: String,
        /// The values.
        samples: Vec<Sample>,
    },
    /// A side effect to run after the commit, once per id.
    Enqueue {
        /// Its id (`bill:{session}`).
        id: String,
        /// What it does.
        kind: &'static str,
        /// What it is about.
        subject: String,
    },
    /// A 1.6 start key and the transaction id it was given.
    StartKey {
        /// The key.
        key: String,
        /// The session.
        session_id: String,
        /// The 1.6 transaction id.
        tx_id: i64,
    },
    /// A station registered by its first boot (no password; an existing
    /// one stays as it is).
    Station {
        /// Its identity.
        id: String,
    },
    /// What a station said at boot, and the answer.
    Boot {
        /// Its identity.
        id: String,
        /// The OCPP version it speaks.
        version: &'static str,
        /// Vendor, model, serial number, firmware version.
        info: [Option<String>; 4],
        /// The registration status answered.
        status: &'static str,
    },
    /// A connector's status, created or replaced.
    Status {
        /// The station.
        station: String,
        /// The EVSE (1.6: the connector).
        evse: i64,
        /// The connector.
        connector: i64,
        /// The status as reported.
        status: String,
        /// 1.6 error code.
        error: Option<String>,
    },
    /// When a station was last heard from.
    Seen {
        /// The station.
        station: String,
        /// When (RFC 3339).
        at: String,
    },
    /// A station's uptime record, created or replaced.
    Uptime {
        /// The station.
        station: String,
        /// Since when it is tracked (kept when the record exists).
        tracked_since: String,
        /// Online since (`None`: offline).
        online_since: Option<String>,
        /// Milliseconds online before `online_since`.
        online_ms: i64,
    },
    /// An outbox entry done.
    OutboxDone {
        /// Its id.
        id: String,
    },
    /// An alert raised at a station, unless one of its kind is open there.
    RaiseAlert {
        /// Its id.
        id: String,
        /// The station.
        station: String,
        /// Its kind (`offline`).
        kind: &'static str,
        /// Its detail (JSON).
        detail: String,
    },
    /// A station's open alerts of a kind, cleared.
    ClearAlerts {
        /// The station.
        station: String,
        /// Their kind.
        kind: &'static str,
    },
    /// One of our OCPI objects stored for pulls, created or replaced
    /// (the last of a key in a batch wins).
    OcpiObject {
        /// Its module (`locations`).
        module: &'static str,
        /// Its key (`{country}/{party}/{id}`).
        key: String,
        /// The object (JSON).
        body: String,
    },
    /// A counter raised to at least a value.
    Counter {
        /// Its name.
        name: &'static str,
        /// The value it reaches at least.
        at_least: i64,
    },
}

/// Everything one station message writes, committed together or not at all.
pub type WriteSet = Vec<Op>;

struct Job {
    ops: WriteSet,
    done: oneshot::Sender<Result<()>>,
}

/// The handle to the writer task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("ops", &self.ops.len()).finish()
    }
}

/// What the writer writes with: the write pool and, in tests, the fault
/// counter of [`crate::store::Store::fail_after`].
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub pool: AnyPool,
    /// SQLite takes `?` placeholders: sqlx binds a `$n` one by asking SQLite
    /// its name, a linear search, which makes a statement of n arguments
    /// cost n² (a third of the CPU of a busy CSMS, measured with perf).
    pub sqlite: bool,
    /// PostgreSQL: the URL the writer opens a connection of its own with,
    /// on its own runtime (a connection opened on the stations' runtime
    /// hears from its socket only when that busy runtime polls it). SQLite
    /// (`None`) shares the one write connection, which runs on a thread of
    /// its own anyway.
    pub own_connection: Option<String>,
    #[cfg(test)]
    pub faults: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

/// Tests: counts a store call down and fails the one it reaches 0 at (a
/// negative count: no failure). Shared by the writer and the store's reads.
#[cfg(test)]
pub(crate) fn injected_fault(faults: &std::sync::atomic::AtomicI64) -> Result<()> {
    use std::sync::atomic::Ordering;
    match faults.load(Ordering::SeqCst) {
        n if n < 0 => Ok(()),
        0 => {
            faults.store(-1, Ordering::SeqCst);
            Err(StoreError::Corrupt("injected fault"))
        }
        _ => {
            faults.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }
    }
}

impl Target {
    #[cfg(test)]
    fn fault(&self) -> Result<()> {
        injected_fault(&self.faults)
    }

    #[cfg(not(test))]
    #[inline]
    fn fault(&self) -> Result<()> {
        Ok(())
    }
}

impl Writer {
    /// Starts the writer on `target`, on a thread and runtime of its own:
    /// a batch is a few dozen statements, each a round trip to the
    /// database, and on the stations' runtime every one of them waited its
    /// turn behind thousands of connection tasks (measured: half of a
    /// batch's time). It stops when the last [`Writer`] is dropped.
    ///
    /// # Errors
    ///
    /// The thread or its runtime could not be started.
    pub(crate) fn spawn(target: Target) -> std::io::Result<Writer> {
        let (jobs, rx) = mpsc::channel(4 * MAX_BATCH);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("csms-writer".into())
            .spawn(move || {
                runtime.block_on(async move { run(own_connection(target), rx).await })
            })?;
        Ok(Writer { jobs })
    }

    /// Writes `ops` in the next group commit and returns once it is
    /// committed.
    ///
    /// # Errors
    ///
    /// The database failed: nothing of `ops` was kept.
    pub async fn write(&self, ops: WriteSet) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let (done, answer) = oneshot::channel();
        self.jobs
            .send(Job { ops, done })
            .await
            .map_err(|_| StoreError::Corrupt("writer stopped"))?;
        answer
            .await
            .map_err(|_| StoreError::Corrupt("writer stopped"))?
    }
}

/// `target` with its own connection when it asks for one (opened at the
/// first batch, on the writer's runtime); the shared pool if the URL is not
/// one.
fn own_connection(mut target: Target) -> Target {
    if let Some(url) = target.own_connection.take() {
        match sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect_lazy(&url)
        {
            Ok(pool) => target.pool = pool,
            Err(e) => tracing::warn!("writer: no connection of its own, sharing the pool: {e}"),
        }
    }
    target
}

async fn run(target: Target, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let sets: Vec<&WriteSet> = batch.iter().map(|j| &j.ops).collect();
        let started = std::time::Instant::now();
        let result = commit(&target, &sets).await;
        tracing::debug!(
            sets = sets.len(),
            ops = sets.iter().map(|s| s.len()).sum::<usize>(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            ok = result.is_ok(),
            "group commit"
        );
        match result {
            Ok(()) => {
                for j in batch.drain(..) {
                    let _ = j.done.send(Ok(()));
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some(j) = batch.pop() {
                    let _ = j.done.send(Err(e));
                }
            }
            Err(e) => {
                // find the set that failed: each alone, in its own transaction
                tracing::warn!(
                    sets = batch.len(),
                    "group commit failed, writing one by one: {e}"
                );
                for j in batch.drain(..) {
                    let r = commit(&target, &[&j.ops]).await;
                    let _ = j.done.send(r);
                }
            }
        }
    }
}

/// A multi-row statement: `head` then `rows` groups of `cols` placeholders,
/// then `tail`.
fn multi_row(sqlite: bool, head: &str, cols: usize, rows: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * cols * 5);
    sql.push_str(head);
    sql.push_str(" VALUES ");
    let mut n = 1;
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push(',');
            }
            placeholder(&mut sql, sqlite, n);
            n += 1;
        }
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

/// The `n`th (1-based) argument's placeholder.
fn placeholder(sql: &mut String, sqlite: bool, n: usize) {
    if sqlite {
        sql.push('?');
    } else {
        sql.push('$');
        sql.push_str(&n.to_string());
    }
}

/// Row counts per statement: few distinct statements (so they stay in the
/// prepared-statement cache) and few statements per batch.
fn chunks(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    for size in [256, 64, 16, 4, 1] {
        while n >= size {
            out.push(size);
            n -= size;
        }
    }
    out
}

/// A bound value: text or integer (PostgreSQL is strict about the difference).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Arg {
    Text(Option<String>),
    Int(Option<i64>),
}

/// Runs `head VALUES (...), ... tail` over `rows` (each `cols` arguments) in
/// as few statements as [`chunks`] allows.
async fn insert_rows(
    target: &Target,
    conn: &mut sqlx::AnyConnection,
    head: &str,
    cols: usize,
    tail: &str,
    rows: &[Vec<Arg>],
) -> Result<()> {
    let mut at = 0;
    for size in chunks(rows.len()) {
        target.fault()?;
        let sql = multi_row(target.sqlite, head, cols, size, tail);
        let mut q = sqlx::query(&sql);
        for row in &rows[at..at + size] {
            debug_assert_eq!(row.len(), cols);
            for v in row {
                q = match v {
                    Arg::Text(t) => q.bind(t.clone()),
                    Arg::Int(i) => q.bind(*i),
                };
            }
        }
        q.execute(&mut *conn).await?;
        at += size;
    }
    Ok(())
}

fn text(s: &str) -> Arg {
    Arg::Text(Some(s.to_owned()))
}

fn opt(s: Option<String>) -> Arg {
    Arg::Text(s)
}

fn dec(d: Option<Decimal>) -> Arg {
    Arg::Text(d.map(|d| d.normalize().to_string()))
}

/// Writes the sets in one transaction.
async fn commit(target: &Target, sets: &[&WriteSet]) -> Result<()> {
    let received = now();
    let mut messages = Vec::new();
    // the last row of a session wins (rows are whole snapshots, in order)
    let mut sessions: Vec<&SessionRow> = Vec::new();
    let mut session_at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut samples = Vec::new();
    let mut outbox = Vec::new();
    let mut start_keys = Vec::new();
    let mut counters: Vec<(&'static str, i64)> = Vec::new();
    let mut done: Vec<&str> = Vec::new();
    let mut stations = Vec::new();
    let mut seen = Vec::new();
    let mut uptimes: Vec<Vec<Arg>> = Vec::new();
    let mut uptime_at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut boots: Vec<Vec<Arg>> = Vec::new();
    let mut boot_at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    // raised and cleared in the order they came (a station may go and come back)
    let mut alerts: Vec<&Op> = Vec::new();
    let mut objects: Vec<Vec<Arg>> = Vec::new();
    let mut object_at: std::collections::HashMap<(&str, &str), usize> =
        std::collections::HashMap::new();
    let mut statuses: Vec<Vec<Arg>> = Vec::new();
    let mut status_at: std::collections::HashMap<(&str, i64, i64), usize> =
        std::collections::HashMap::new();
    for op in sets.iter().flat_map(|s| s.iter()) {
        match op {
            Op::TxMessage {
                session_id,
                key,
                kind,
                payload,
            } => messages.push(vec![
                text(session_id),
                text(key),
                text(kind),
                text(payload),
                text(&received),
            ]),
            Op::Session(row) => match session_at.get(row.id.as_str()) {
                Some(&i) => sessions[i] = row,
                None => {
                    session_at.insert(&row.id, sessions.len());
                    sessions.push(row);
                }
            },
            Op::MeterValues {
                session_id,
                samples: s,
            } => {
                for (t, measurand, value, unit) in s {
                    samples.push(vec![
                        text(session_id),
                        text(t),
                        text(measurand),
                        text(value),
                        opt(unit.clone()),
                    ]);
                }
            }
            Op::Enqueue { id, kind, subject } => outbox.push(vec![
                text(id),
                text(kind),
                text(subject),
                text(&received),
                Arg::Int(Some(0)),
            ]),
            Op::StartKey {
                key,
                session_id,
                tx_id,
            } => start_keys.push(vec![text(key), text(session_id), text(&tx_id.to_string())]),
            Op::OutboxDone { id } => done.push(id),
            Op::Uptime {
                station,
                tracked_since,
                online_since,
                online_ms,
            } => {
                let row = vec![
                    text(station),
                    text(tracked_since),
                    opt(online_since.clone()),
                    Arg::Int(Some(*online_ms)),
                ];
                match uptime_at.get(station.as_str()) {
                    Some(&i) => uptimes[i] = row,
                    None => {
                        uptime_at.insert(station, uptimes.len());
                        uptimes.push(row);
                    }
                }
            }
            Op::Seen { station, at } => seen.push(vec![text(station), text(at)]),
            Op::Station { id } => stations.push(vec![text(id), text(&received)]),
            Op::Boot {
                id,
                version,
                info,
                status,
            } => {
                let mut row = vec![text(id)];
                row.extend(info.iter().map(|i| opt(i.clone())));
                row.extend([text(version), text(status), text(&received)]);
                // the last boot of a station wins
                match boot_at.get(id.as_str()) {
                    Some(&i) => boots[i] = row,
                    None => {
                        boot_at.insert(id, boots.len());
                        boots.push(row);
                    }
                }
            }
            Op::RaiseAlert { .. } | Op::ClearAlerts { .. } => alerts.push(op),
            Op::Status {
                station,
                evse,
                connector,
                status,
                error,
            } => {
                let row = vec![
                    text(station),
                    Arg::Int(Some(*evse)),
                    Arg::Int(Some(*connector)),
                    text(status),
                    opt(error.clone()),
                    text(&received),
                ];
                // the last report of a connector wins
                match status_at.get(&(station.as_str(), *evse, *connector)) {
                    Some(&i) => statuses[i] = row,
                    None => {
                        status_at.insert((station, *evse, *connector), statuses.len());
                        statuses.push(row);
                    }
                }
            }
            Op::OcpiObject { module, key, body } => {
                let row = vec![text(module), text(key), text(body), text(&received)];
                // PostgreSQL updates a row once per statement: the last wins
                match object_at.get(&(*module, key.as_str())) {
                    Some(&i) => objects[i] = row,
                    None => {
                        object_at.insert((module, key), objects.len());
                        objects.push(row);
                    }
                }
            }
            Op::Counter { name, at_least } => match counters.iter_mut().find(|(n, _)| n == name) {
                Some((_, v)) => *v = (*v).max(*at_least),
                None => counters.push((name, *at_least)),
            },
        }
    }
    // meter values: one row per (session, ts, measurand); PostgreSQL's DO NOTHING
    // takes repeats within one statement, but keep the statement small
    samples.sort();
    samples.dedup_by(|a, b| a[..3] == b[..3]);
    let session_rows: Vec<Vec<Arg>> = sessions
        .iter()
        .map(|r| {
            vec![
                text(&r.id),
                text(&r.station_id),
                text(&r.ocpp_tx_id),
                Arg::Int(r.evse_id),
                Arg::Int(r.connector_id),
                opt(r.id_token.clone()),
                text(if r.completed { "Completed" } else { "Active" }),
                opt(r.started_at.map(crate::store::ts)),
                opt(r.stopped_at.map(crate::store::ts)),
                dec(r.meter_start_wh),
                dec(r.meter_stop_wh),
                dec(r.last_register_wh),
                opt(r.stop_reason.map(|r| r.as_wire().to_owned())),
                opt(r.start_key.clone()),
                text(&r.energy_wh.normalize().to_string()),
                text(&received),
            ]
        })
        .collect();

    target.fault()?;
    let began = std::time::Instant::now();
    let mut tx = target.pool.begin().await?;
    insert_rows(
        target,
        &mut tx,
        "INSERT INTO stations (id, created_at)",
        2,
        "ON CONFLICT (id) DO NOTHING",
        &stations,
    )
    .await?;
    // boots: one UPDATE ... FROM a VALUES list per chunk
    insert_rows(
        target,
        &mut tx,
        "WITH v (id, vendor, model, serial, firmware, version, status, t) AS (",
        8,
        ") UPDATE stations SET vendor = v.vendor, model = v.model, serial = v.serial, firmware = v.firmware, \
         ocpp_version = v.version, boot_status = v.status, last_boot = v.t, last_seen = v.t FROM v WHERE stations.id = v.id",
        &boots,
    )
    .await?;
    insert_rows(
        target,
        &mut tx,
        "INSERT INTO connectors (station_id, evse_id, connector_id, status, error_code, updated_at)",
        6,
        "ON CONFLICT (station_id, evse_id, connector_id) DO UPDATE SET status = excluded.status, \
         error_code = excluded.error_code, updated_at = excluded.updated_at",
        &statuses,
    )
    .await?;
    insert_rows(
        target,
        &mut tx,
        "INSERT INTO tx_messages (session_id, msg_key, kind, payload, received_at)",
        5,
        "ON CONFLICT (session_id, msg_key) DO NOTHING",
        &messages,
    )
    .await?;
    insert_rows(
        target,
        &mut tx,
        "INSERT INTO session_start_keys (start_key, session_id, ocpp_tx_id)",
        3,
        "",
        &start_keys,
    )
    .await?;
    for (name, at_least) in counters {
        target.fault()?;
        sqlx::query(
            "INSERT INTO counters (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE \
             SET value = CASE WHEN counters.value < excluded.value THEN excluded.value ELSE counters.value END",
        )
        .bind(name)
        .bind(at_least)
        .execute(&mut *tx)
        .await?;
    }
    insert_rows(
        target,
        &mut tx,
        SESSIONS_HEAD,
        16,
        SESSIONS_TAIL,
        &session_rows,
    )
    .await?;
    insert_rows(
        target,
        &mut tx,
        "INSERT INTO meter_values (session_id, ts, measurand, value, unit)",
        5,
        "ON CONFLICT DO NOTHING",
        &samples,
    )
    .await?;
    insert_rows(
        target,
        &mut tx,
        "INSERT INTO outbox (id, kind, subject, created_at, attempts)",
        5,
        "ON CONFLICT (id) DO NOTHING",
        &outbox,
    )
    .await?;
    insert_rows(
        target,
        &mut tx,
        "INSERT INTO station_uptime (station_id, tracked_since, online_since, online_ms)",
        4,
        "ON CONFLICT (station_id) DO UPDATE SET online_since = excluded.online_since, online_ms = excluded.online_ms",
        &uptimes,
    )
    .await?;
    insert_rows(
        target,
        &mut tx,
        "INSERT INTO ocpi_objects (module, object_key, body, updated_at)",
        4,
        "ON CONFLICT (module, object_key) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        &objects,
    )
    .await?;
    // last-seen times: one UPDATE ... FROM a VALUES list per chunk
    insert_rows(
        target,
        &mut tx,
        "WITH v (id, t) AS (",
        2,
        ") UPDATE stations SET last_seen = v.t FROM v WHERE stations.id = v.id",
        &seen,
    )
    .await?;
    let mut at = 0;
    for size in chunks(done.len()) {
        target.fault()?;
        let mut sql = String::from("UPDATE outbox SET done_at = ");
        placeholder(&mut sql, target.sqlite, 1);
        sql.push_str(" WHERE done_at IS NULL AND id IN (");
        for i in 0..size {
            if i > 0 {
                sql.push(',');
            }
            placeholder(&mut sql, target.sqlite, i + 2);
        }
        sql.push(')');
        let mut q = sqlx::query(&sql).bind(received.clone());
        for id in &done[at..at + size] {
            q = q.bind(*id);
        }
        q.execute(&mut *tx).await?;
        at += size;
    }
    for op in alerts {
        target.fault()?;
        match op {
            Op::RaiseAlert {
                id,
                station,
                kind,
                detail,
            } => sqlx::query(
                "INSERT INTO alerts (id, station_id, kind, detail, raised_at) SELECT $1, $2, $3, $4, $5 \
                 WHERE NOT EXISTS (SELECT 1 FROM alerts WHERE station_id = $2 AND kind = $3 AND cleared_at IS NULL)",
            )
            .bind(id.clone())
            .bind(station.clone())
            .bind(*kind)
            .bind(detail.clone())
            .bind(received.clone()),
            Op::ClearAlerts { station, kind } => sqlx::query(
                "UPDATE alerts SET cleared_at = $1 WHERE station_id = $2 AND kind = $3 AND cleared_at IS NULL",
            )
            .bind(received.clone())
            .bind(station.clone())
            .bind(*kind),
            _ => continue,
        }
        .execute(&mut *tx)
        .await?;
    }
    target.fault()?;
    let written = std::time::Instant::now();
    tx.commit().await?;
    tracing::debug!(
        statements_ms = (written - began).as_secs_f64() * 1e3,
        commit_ms = written.elapsed().as_secs_f64() * 1e3,
        "group commit written"
    );
    Ok(())
}

const SESSIONS_HEAD: &str = "INSERT INTO sessions (id, station_id, ocpp_tx_id, evse_id, connector_id, id_token, status, started_at, stopped_at, meter_start_wh, meter_stop_wh, last_register_wh, stop_reason, start_key, energy_wh, updated_at)";
const SESSIONS_TAIL: &str = "ON CONFLICT (id) DO UPDATE SET evse_id = excluded.evse_id, connector_id = excluded.connector_id, \
     id_token = excluded.id_token, status = excluded.status, started_at = excluded.started_at, stopped_at = excluded.stopped_at, \
     meter_start_wh = excluded.meter_start_wh, meter_stop_wh = excluded.meter_stop_wh, last_register_wh = excluded.last_register_wh, \
     stop_reason = excluded.stop_reason, start_key = COALESCE(sessions.start_key, excluded.start_key), \
     energy_wh = excluded.energy_wh, updated_at = excluded.updated_at";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_with_few_statement_shapes() {
        for n in 0..2000 {
            let c = chunks(n);
            assert_eq!(c.iter().sum::<usize>(), n);
            assert!(c.iter().all(|s| [256, 64, 16, 4, 1].contains(s)));
        }
        assert_eq!(chunks(300), vec![256, 16, 16, 4, 4, 4]);
    }

    #[test]
    fn multi_row_numbers_placeholders_in_order() {
        assert_eq!(
            multi_row(
                false,
                "INSERT INTO t (a, b)",
                2,
                2,
                "ON CONFLICT DO NOTHING"
            ),
            "INSERT INTO t (a, b) VALUES ($1,$2),($3,$4) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            multi_row(true, "INSERT INTO t (a)", 1, 2, ""),
            "INSERT INTO t (a) VALUES (?),(?) "
        );
    }
}
