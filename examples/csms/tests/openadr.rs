//! Demand response against a real OpenADR 3 VTN (`openleadr-vtn` from
//! crates.io, on the PostgreSQL these machines run): the CSMS is the VEN of
//! a program, simulated stations charge, the business logic (BL) creates an
//! event lowering the site's import limit, and
//!
//! - every station gets a lower charging limit within the ramp time (the
//!   CSMS's live events: what it sent and each station's answer);
//! - the sessions stay within the limit (their `Power.Active.Import` meter
//!   values after the ramp);
//! - the VEN's report of the delivered load reaches the VTN (read back by
//!   the BL client).
//!
//! The VTN is installed by `tests/openadr/vtn.sh` (once, into a cache
//! outside the clone). Its migrations are applied here, not by the VTN:
//! two of them use subqueries without an alias, which PostgreSQL before 16
//! refuses; they are run with an alias added and recorded with the
//! original's checksum, so the VTN finds them applied.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use csms::events::LiveEvent;
use csms::openadr::VenConfig;
use evproto_ocpp_proto::ProtocolVersion;
use evproto_sim::{model::Behaviour, SimConfig};
use openleadr_client::{BusinessLogic, Client, ClientCredentials};
use openleadr_wire::event::{EventInterval, EventType, EventValuesMap};
use openleadr_wire::interval::IntervalPeriod;
use openleadr_wire::program::ProgramRequest;
use openleadr_wire::values_map::Value;
use serde_json::json;
use sha2::Digest;

const KEY: &str = "openadr-test-api-key-0123456789";
const PROGRAM: &str = "site-demand-response";
/// The event's import limit, kW.
const LIMIT_KW: i64 = 12;
/// From the event's creation to every station having its new limit.
const RAMP: Duration = Duration::from_secs(15);

/// The VTN's binary, built by `vtn.sh` when missing.
fn vtn_binary() -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openadr/vtn.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed: {}", script.display(), out.status));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// A running VTN on a fresh database, killed and dropped at the end.
struct Vtn {
    child: Child,
    url: String,
    admin: String,
    db: String,
    bl: (String, String),
    ven: (String, String),
}

impl Drop for Vtn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("psql")
            .args([
                &self.admin,
                "-qc",
                &format!("DROP DATABASE IF EXISTS {}", self.db),
            ])
            .output();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Applies the VTN's migrations from `dir` (see the module docs).
async fn migrate(pool: &sqlx::PgPool, dir: &Path) {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, checksum BYTEA NOT NULL, \
         execution_time BIGINT NOT NULL)",
    )
    .execute(pool)
    .await
    .unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "migrations in {}", dir.display());
    for f in files {
        let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
        let (version, description) = stem.split_once('_').unwrap();
        let sql = std::fs::read_to_string(&f).unwrap();
        let pg15 = sql.replace(
            "FROM (SELECT unnest(_scopes) AS scope)",
            "FROM (SELECT unnest(_scopes) AS scope) AS scopes",
        );
        let mut tx = pool.begin().await.unwrap();
        sqlx::raw_sql(&pg15).execute(&mut *tx).await.unwrap();
        sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES ($1, $2, TRUE, $3, 0)")
            .bind(version.parse::<i64>().unwrap())
            .bind(description.replace('_', " "))
            .bind(sha2::Sha384::digest(sql.as_bytes()).to_vec())
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
}

impl Vtn {
    async fn start(bin: &Path) -> Vtn {
        let admin = std::env::var("CSMS_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let db = format!("openadr_vtn_{}", std::process::id());
        let base = admin.rsplit_once('/').unwrap().0.to_owned();
        let admin_pool = sqlx::PgPool::connect(&admin).await.unwrap();
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {db}"))
            .execute(&admin_pool)
            .await
            .unwrap();
        sqlx::raw_sql(&format!("CREATE DATABASE {db}"))
            .execute(&admin_pool)
            .await
            .unwrap();
        admin_pool.close().await;
        let db_url = format!("{base}/{db}");
        let pool = sqlx::PgPool::connect(&db_url).await.unwrap();
        migrate(
            &pool,
            &bin.parent().unwrap().parent().unwrap().join("migrations"),
        )
        .await;
        // the BL and the VEN, each with a random secret (the VTN keeps Argon2 hashes)
        let bl = ("csms-test-bl".to_owned(), csms::store::random_hex(16));
        let ven = ("csms-test-ven".to_owned(), csms::store::random_hex(16));
        for (user, (id, secret), scopes) in [
            (
                "bl",
                &bl,
                "{read_all,write_programs,write_events,write_vens_bl,write_reports_bl}",
            ),
            (
                "ven",
                &ven,
                "{read_targets,read_ven_objects,write_reports_ven,write_vens_ven}",
            ),
        ] {
            sqlx::query("INSERT INTO \"user\" (id, reference, description, scopes, created, modified) VALUES ($1, $1, NULL, $2::scope[], now(), now())")
                .bind(user)
                .bind(scopes)
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("INSERT INTO user_credentials (user_id, client_id, client_secret) VALUES ($1, $2, $3)")
                .bind(user)
                .bind(id)
                .bind(csms::store::hash_password(secret))
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}/");
        let jwt_secret = base64_secret();
        let child = Command::new(bin)
            .env("DATABASE_URL", &db_url)
            .env("PORT", port.to_string())
            .env("OAUTH_TYPE", "INTERNAL")
            .env("OAUTH_BASE64_SECRET", jwt_secret)
            .env("OAUTH_TOKEN_URL", format!("{url}auth/token"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let vtn = Vtn {
            child,
            url,
            admin,
            db,
            bl,
            ven,
        };
        let t = Instant::now();
        loop {
            let ok = reqwest::get(format!("{}health", vtn.url))
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "the VTN did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        vtn
    }

    fn bl_client(&self) -> Client<BusinessLogic> {
        Client::with_url(
            self.url.parse().unwrap(),
            Some(ClientCredentials::new(self.bl.0.clone(), self.bl.1.clone())),
        )
    }
}

fn base64_secret() -> String {
    use base64::Engine;
    let bytes: Vec<u8> = (0..2)
        .flat_map(|_| csms::store::random_hex(16).into_bytes())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Each active session's power samples (time, W), from the operator API.
async fn power_samples(
    admin: u16,
    from: chrono::DateTime<Utc>,
) -> Vec<(String, Vec<(chrono::DateTime<Utc>, f64)>)> {
    let (_, list) = common::api(
        KEY,
        admin,
        "GET",
        "/api/sessions?status=Active&limit=100",
        None,
    )
    .await;
    let mut out = Vec::new();
    for s in list["sessions"]
        .as_array()
        .or(list["items"].as_array())
        .into_iter()
        .flatten()
    {
        let id = s["id"].as_str().unwrap().to_owned();
        let (_, one) = common::api(KEY, admin, "GET", &format!("/api/sessions/{id}"), None).await;
        let samples = one["meter_values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["measurand"] == "Power.Active.Import")
            .filter_map(|m| {
                let t = chrono::DateTime::parse_from_rfc3339(m["timestamp"].as_str()?).ok()?;
                let w: f64 = m["value"].as_str()?.parse().ok()?;
                let w = if m["unit"]
                    .as_str()
                    .is_some_and(|u| u.eq_ignore_ascii_case("kW"))
                {
                    w * 1000.0
                } else {
                    w
                };
                Some((t.with_timezone(&Utc), w))
            })
            .filter(|(t, _)| *t >= from)
            .collect();
        out.push((id, samples));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vtn_event_lowers_the_site_limit_and_the_delivered_load_is_reported() {
    let bin = match vtn_binary() {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "\n\n!!! SKIPPED: the OpenADR VTN (openleadr-vtn) cannot be built here: {e}\n\n"
            );
            return;
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("csms::openadr=info")
        .with_test_writer()
        .try_init();
    let vtn = Vtn::start(&bin).await;
    let bl = vtn.bl_client();
    let program = bl
        .create_program(ProgramRequest::new(PROGRAM.to_owned()))
        .await
        .unwrap();

    // The CSMS, a VEN of the program, polled every half second.
    let dir = common::temp_dir("openadr");
    let mut config = common::lab_config(&dir, KEY);
    let mut ven = VenConfig::new(
        vtn.url.clone(),
        vtn.ven.0.clone(),
        vtn.ven.1.clone(),
        PROGRAM.into(),
    );
    ven.poll = Duration::from_millis(500);
    ven.slot = chrono::Duration::minutes(5);
    ven.slots = 48;
    config.openadr = Some(ven);
    let csms = common::InProcess::start(config).await;
    let admin = csms.started.admin_port;
    let mut live = common::live_events(KEY, admin).await;
    assert_eq!(
        common::api(
            KEY,
            admin,
            "PUT",
            "/api/tokens/DR-TOKEN",
            Some(json!({"status": "Accepted"}))
        )
        .await
        .0 / 100,
        2
    );

    // Three stations (1.6, 2.0.1, 2.1), one connector each, 11 kW, charging at once.
    let sim = tokio::spawn(evproto_sim::run(
        SimConfig {
            url: format!("ws://127.0.0.1:{}/ocpp/", csms.started.ocpp_port),
            stations: 3,
            versions: vec![
                ProtocolVersion::V16,
                ProtocolVersion::V201,
                ProtocolVersion::V21,
            ],
            connectors: (1, 1),
            duration: Duration::from_secs(120),
            prefix: "DR".into(),
            password: None,
            behaviour: Behaviour {
                idle_ms: (0, 200),
                session_ms: (600_000, 600_000),
                meter_interval_ms: 500,
                max_power_w: 11_000.0,
                fault_per_s: 0.0,
                disconnect_per_s: 0.0,
                tokens: vec!["DR-TOKEN".into()],
                ..Behaviour::default()
            },
            ..SimConfig::default()
        },
        None,
    ));

    // All three charge, each with the VEN's limit before the event.
    let t = Instant::now();
    let before = loop {
        let samples = power_samples(admin, Utc::now() - chrono::Duration::seconds(2)).await;
        if samples.len() == 3
            && samples
                .iter()
                .all(|(_, s)| s.iter().any(|(_, w)| *w > 5_000.0))
        {
            break samples;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "three sessions charging: {samples:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let sessions: Vec<String> = before.iter().map(|(id, _)| id.clone()).collect();
    let mut first: std::collections::HashMap<String, u32> = Default::default();
    let t = Instant::now();
    while first.len() < 3 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "limits before the event: {first:?}"
        );
        if let Ok(Some((_, LiveEvent::SmartCharging { sent, .. }))) =
            tokio::time::timeout(Duration::from_secs(1), live.recv()).await
        {
            for s in sent {
                first.insert(s.session, s.limit_w);
            }
        }
    }

    // The BL lowers the site's import to 12 kW for an hour, from now.
    let created = Instant::now();
    let event_start = Utc::now();
    let mut event = program.new_event(vec![EventInterval {
        id: 0,
        interval_period: None,
        payloads: vec![EventValuesMap {
            value_type: EventType::ImportCapacityLimit,
            values: vec![Value::Number(LIMIT_KW as f64)],
        }],
    }]);
    event.event_name = Some("evening peak".into());
    event.interval_period = Some(IntervalPeriod {
        start: event_start,
        duration: Some("PT1H".parse().unwrap()),
        randomize_start: None,
    });
    let event = program.create_event(event).await.unwrap();

    // Within the ramp time every session has a lower limit, all of them
    // together within the event's, and the stations accepted them.
    let limits = loop {
        let left = RAMP.saturating_sub(created.elapsed());
        assert!(!left.is_zero(), "no new limits within {RAMP:?}");
        if let Ok(Some((
            at,
            LiveEvent::SmartCharging {
                sent, site_limit_w, ..
            },
        ))) = tokio::time::timeout(left, live.recv()).await
        {
            if site_limit_w == (LIMIT_KW * 1000) as u32 {
                assert!(at - created <= RAMP);
                break sent;
            }
        }
    };
    assert_eq!(limits.len(), 3, "{limits:?}");
    let total: u32 = limits.iter().map(|s| s.limit_w).sum();
    assert!(total <= (LIMIT_KW * 1000) as u32, "{limits:?}");
    for s in &limits {
        assert!(sessions.contains(&s.session), "{s:?}");
        assert_eq!(s.status, "Accepted", "{s:?}");
        assert!(
            s.limit_w < first[&s.session],
            "lower than before: {s:?} {first:?}"
        );
    }

    // The sessions keep to it: their power after the ramp (a meter
    // interval for the station to apply it).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = Utc::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let samples = power_samples(admin, after).await;
    let mut site = 0.0;
    for (id, s) in &samples {
        let limit = limits.iter().find(|l| &l.session == id).unwrap().limit_w;
        assert!(!s.is_empty(), "{id}: meter values after the ramp");
        for (t, w) in s {
            assert!(
                *w <= f64::from(limit) + 1.0,
                "{id} at {t}: {w} W over its {limit} W"
            );
        }
        site += s.iter().map(|(_, w)| w).fold(0.0, |a: f64, b| a.max(*b));
    }
    assert!(site <= (LIMIT_KW * 1000) as f64 + 1.0, "site {site} W");

    // The VEN reports the delivered load on the event: the BL reads it.
    let t = Instant::now();
    let report = loop {
        let reports = event.get_report_list(None).await.unwrap();
        if let Some(r) = reports
            .into_iter()
            .find(|r| r.content().client_name == vtn.ven.0)
        {
            break r;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "no report on the event"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let content = report.content();
    assert_eq!(content.event_id, *event.id());
    let interval = &content.resources[0].intervals[0];
    assert_eq!(interval.payloads[0].value_type.0, "DEMAND");
    let Value::Number(kw) = interval.payloads[0].values[0] else {
        panic!("{content:?}");
    };
    assert!(kw > 0.0 && kw <= 3.0 * 11.0, "{kw} kW");
    assert!(interval.interval_period.as_ref().unwrap().start <= Utc::now());
    // and it is kept up to date as the interval goes on: it covers more of it
    let covered = |r: &openleadr_wire::report::ReportRequest| {
        let p = r.resources[0].intervals[0].interval_period.clone().unwrap();
        p.duration.unwrap().to_chrono_at_datetime(p.start)
    };
    let first_cover = covered(content);
    let t = Instant::now();
    loop {
        let again = event.get_report_list(Some(&vtn.ven.0)).await.unwrap();
        assert_eq!(again.len(), 1, "one report per event, updated");
        let r = again[0].content();
        if covered(r) > first_cover {
            let Value::Number(kw) = r.resources[0].intervals[0].payloads[0].values[0] else {
                panic!("{r:?}");
            };
            // the site's mean load over what it covers, as the meter values say
            let p = r.resources[0].intervals[0].interval_period.clone().unwrap();
            let end = p.start + covered(r);
            let measured: f64 = power_samples(admin, p.start)
                .await
                .iter()
                .filter_map(|(_, s)| {
                    let w: Vec<f64> = s
                        .iter()
                        .filter(|(t, _)| *t < end)
                        .map(|(_, w)| *w)
                        .collect();
                    (!w.is_empty()).then(|| w.iter().sum::<f64>() / w.len() as f64)
                })
                .sum();
            assert!(
                (kw - measured / 1000.0).abs() < 0.5,
                "reported {kw} kW, measured {measured} W"
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the report was not updated: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    sim.abort();
    csms.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    drop(vtn);
}
