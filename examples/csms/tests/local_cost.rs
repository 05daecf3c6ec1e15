//! Local cost end to end (OCPP 2.1 block I) against the simulator: 2.1
//! stations that calculate costs get the CSMS's tariff (SetDefaultTariff,
//! converted from the OCPI tariff it prices with), price their sessions
//! with it and report `costDetails`; the CSMS checks them against its own
//! price (which stands on the CDR), their running cost on each `Updated`
//! against the CSMS's running cost (one `running_cost` alert per session
//! that differs), and records the terminal's settlement with the session,
//! for which the CSMS issues its own receipt. The operator reads and
//! clears a station's tariffs through the API (GetTariffs, ClearTariffs).

mod common;

use std::time::Duration;

use evproto_ocpp_proto::ProtocolVersion;
use evproto_sim::model::Behaviour;
use evproto_sim::tariff::LocalCostBehaviour;
use evproto_sim::SimConfig;
use rust_decimal::Decimal;
use serde_json::{json, Value};

const KEY: &str = "local-cost-test-api-key-0123456789";
const TOKEN: &str = "LC-TOKEN";

/// Polls `f` every 100 ms until it gives `Some` (a hang guard of two minutes).
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within two minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A simulated 2.1 station (one connector, short sessions with meter values
/// every half second) that calculates costs as `local_cost` says.
fn station(ocpp_port: u16, prefix: &str, local_cost: LocalCostBehaviour) -> SimConfig {
    SimConfig {
        url: format!("ws://127.0.0.1:{ocpp_port}/ocpp/"),
        stations: 1,
        versions: vec![ProtocolVersion::V21],
        connectors: (1, 1),
        duration: Duration::from_secs(300),
        prefix: prefix.into(),
        password: None,
        behaviour: Behaviour {
            idle_ms: (1_500, 2_000),
            session_ms: (3_000, 4_000),
            meter_interval_ms: 500,
            max_power_w: 11_000.0,
            fault_per_s: 0.0,
            disconnect_per_s: 0.0,
            tokens: vec![TOKEN.into()],
            local_cost,
            ..Behaviour::default()
        },
        ..SimConfig::default()
    }
}

/// A completed session of `station` whose terminal settled it: (session,
/// its settlements, its CDR). A session that ended before the station held
/// a tariff has no local cost and no settlement; a later one has.
async fn settled_session(admin: u16, station: &str) -> (Value, Vec<Value>, Value) {
    eventually(&format!("a settled session of {station}"), || async move {
        let (_, page) = common::api(
            KEY,
            admin,
            "GET",
            &format!("/api/sessions?station={station}&status=Completed"),
            None,
        )
        .await;
        for s in page["items"].as_array()? {
            let id = urlenc(s["id"].as_str()?);
            let (_, settled) = common::api(
                KEY,
                admin,
                "GET",
                &format!("/api/sessions/{id}/settlements"),
                None,
            )
            .await;
            let settled = settled["items"]
                .as_array()
                .filter(|a| !a.is_empty())?
                .clone();
            let (status, cdr) =
                common::api(KEY, admin, "GET", &format!("/api/sessions/{id}/cdr"), None).await;
            if status == 200 {
                return Some((s.clone(), settled, cdr));
            }
        }
        None
    })
    .await
}

fn urlenc(s: &str) -> String {
    s.replace(':', "%3A")
}

async fn open_alerts(admin: u16, station: &str, kind: &str) -> Vec<Value> {
    let (_, page) = common::api(
        KEY,
        admin,
        "GET",
        &format!("/api/alerts?station={station}&status=open"),
        None,
    )
    .await;
    page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["kind"] == kind)
        .cloned()
        .collect()
}

fn dec(v: &Value) -> Decimal {
    v.to_string().trim_matches('"').parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stations_price_locally_the_csms_checks_and_its_price_stands() {
    let dir = common::temp_dir("local-cost");
    let csms = common::InProcess::start(common::lab_config(&dir, KEY)).await;
    let (admin, ocpp) = (csms.started.admin_port, csms.started.ocpp_port);
    let put = |path: &'static str, body: Value| async move {
        let (status, answer) = common::api(KEY, admin, "PUT", path, Some(body)).await;
        assert_eq!(status / 100, 2, "{path}: {answer}");
    };
    put("/api/tokens/LC-TOKEN", json!({"status": "Accepted"})).await;
    // 0.40/kWh and a 1.00 start fee, 21% VAT: the price the CSMS charges
    put(
        "/api/tariffs/default",
        json!({"currency": "EUR", "elements": [{"price_components": [
            {"type": "ENERGY", "price": 0.40, "vat": 21.0, "step_size": 1},
            {"type": "FLAT", "price": 1.00, "vat": 21.0, "step_size": 1}]}]}),
    )
    .await;

    // an honest station with a payment terminal, and one that adds 0.50 to its totals
    let honest = tokio::spawn(evproto_sim::run(
        station(
            ocpp,
            "LCOK",
            LocalCostBehaviour {
                enabled: true,
                settlement: true,
                ..Default::default()
            },
        ),
        None,
    ));
    let tampered = tokio::spawn(evproto_sim::run(
        station(
            ocpp,
            "LCBAD",
            LocalCostBehaviour {
                enabled: true,
                misreport: Decimal::new(50, 2),
                ..Default::default()
            },
        ),
        None,
    ));

    // the honest station: its settlement (queued behind its Ended) reaches
    // the session; the amount it settled is what the CSMS charges
    let (session, settlements, cdr) = settled_session(admin, "LCOK0").await;
    let tx = session["ocpp_tx_id"].as_str().unwrap();
    assert_eq!(settlements[0]["psp_ref"], format!("PSP-{tx}"));
    assert_eq!(settlements[0]["status"], "Settled");
    assert_eq!(settlements[0]["receipt_id"], format!("R-{tx}"));
    let charged = dec(&cdr["total_cost"]["incl_vat"]).round_dp(2);
    // within the check's tolerance of one minor unit (rounding only)
    assert!(
        (dec(&settlements[0]["amount"]) - charged).abs() <= Decimal::new(1, 2),
        "the station priced the session as the CSMS: {settlements:?} {cdr}"
    );
    assert!(charged >= Decimal::new(121, 2), "the start fee at least");
    assert!(
        open_alerts(admin, "LCOK0", "cost").await.is_empty(),
        "no cost alert for a station that agrees"
    );

    // the tampered station: a `cost` alert, and the CSMS's price on the CDR
    let alert = eventually("a cost alert for the tampered station", || async move {
        open_alerts(admin, "LCBAD0", "cost")
            .await
            .into_iter()
            .next()
    })
    .await;
    let detail = &alert["detail"];
    let bad_session = detail["session"].as_str().unwrap();
    let (status, bad_cdr) = common::api(
        KEY,
        admin,
        "GET",
        &format!("/api/sessions/{}/cdr", urlenc(bad_session)),
        None,
    )
    .await;
    assert_eq!(status, 200, "{bad_cdr}");
    let csms_minor = (dec(&bad_cdr["total_cost"]["incl_vat"]) * Decimal::from(100))
        .round()
        .to_string();
    assert_eq!(detail["csms_minor"].to_string(), csms_minor, "{alert}");
    assert_eq!(
        detail["station_minor"].as_i64().unwrap() - detail["csms_minor"].as_i64().unwrap(),
        50,
        "the station's 0.50 on top: {alert}"
    );
    assert!(
        alert["message"].as_str().unwrap().contains("differs"),
        "{alert}"
    );

    // the running cost: each session of the tampered station differs from
    // its first update on, one `running_cost` alert per session however
    // many updates follow; the honest station's agree
    let running = eventually("running_cost alerts of two sessions", || async move {
        let a = open_alerts(admin, "LCBAD0", "running_cost").await;
        (a.len() >= 2).then_some(a)
    })
    .await;
    let mut sessions: Vec<&str> = running
        .iter()
        .map(|a| a["detail"]["session"].as_str().unwrap())
        .collect();
    sessions.sort_unstable();
    sessions.dedup();
    assert_eq!(
        sessions.len(),
        running.len(),
        "one per session: {running:?}"
    );
    for a in &running {
        let d = &a["detail"];
        let off = d["station_minor"].as_i64().unwrap() - d["csms_minor"].as_i64().unwrap();
        assert!((47..=53).contains(&off), "the station's 0.50 on top: {a}");
    }
    assert!(
        open_alerts(admin, "LCOK0", "running_cost").await.is_empty(),
        "no running_cost alert for a station that agrees"
    );

    // the CSMS's own receipt of the session the terminal settled
    let (status, receipt) = common::api(
        KEY,
        admin,
        "GET",
        &format!(
            "/api/sessions/{}/receipt",
            urlenc(session["id"].as_str().unwrap())
        ),
        None,
    )
    .await;
    assert_eq!(status, 200, "{receipt}");
    let minor = |d: Decimal| (d * Decimal::from(100)).round().to_string();
    assert_eq!(
        receipt["total_incl_vat_minor"].to_string(),
        minor(charged),
        "{receipt}"
    );
    let paid = dec(&settlements[0]["amount"]);
    assert_eq!(receipt["paid_minor"].to_string(), minor(paid), "{receipt}");
    assert_eq!(
        receipt["balance_minor"].as_i64().unwrap(),
        receipt["paid_minor"].as_i64().unwrap() - receipt["total_incl_vat_minor"].as_i64().unwrap()
    );
    assert_eq!(receipt["number"], format!("LCOK0-PSP-{tx}"), "{receipt}");
    assert_eq!(
        receipt["terminal_receipt_id"],
        format!("R-{tx}"),
        "{receipt}"
    );
    assert_eq!(receipt["currency"], "EUR");
    // no terminal, no receipt
    let (status, b) = common::api(
        KEY,
        admin,
        "GET",
        &format!("/api/sessions/{}/receipt", urlenc(bad_session)),
        None,
    )
    .await;
    assert_eq!(status, 404, "{b}");
    assert!(b["error"].is_string(), "{b}");

    // the operator: GetTariffs, ClearTariffs, the default sent again
    let get =
        || async move { common::api(KEY, admin, "GET", "/api/stations/LCOK0/tariffs", None).await };
    let (status, held) = get().await;
    assert_eq!(status, 200, "{held}");
    assert_eq!(held["status"], "Accepted", "{held}");
    let assignment = &held["tariffAssignments"][0];
    assert_eq!(assignment["tariffKind"], "DefaultTariff", "{held}");
    let tariff_id = assignment["tariffId"].as_str().unwrap().to_owned();
    assert!(tariff_id.starts_with("default-"), "{held}");
    let (status, cleared) = common::api(
        KEY,
        admin,
        "DELETE",
        &format!("/api/stations/LCOK0/tariffs?tariff_id={tariff_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["clearTariffsResult"][0]["status"], "Accepted");
    assert_eq!(get().await.1["status"], "NoTariff");
    let (status, sent) = common::api(
        KEY,
        admin,
        "POST",
        "/api/stations/LCOK0/tariffs/default",
        None,
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["default"], "Accepted", "{sent}");
    assert_eq!(
        sent["tariff_id"],
        tariff_id.as_str(),
        "the same tariff, the same id"
    );
    assert_eq!(
        get().await.1["tariffAssignments"][0]["tariffId"],
        tariff_id.as_str()
    );
    // bad input gets a 400, a station that is not connected a 404
    let (status, _) = common::api(
        KEY,
        admin,
        "GET",
        "/api/stations/LCOK0/tariffs?evse_id=-1",
        None,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = common::api(KEY, admin, "GET", "/api/stations/NOPE/tariffs", None).await;
    assert_eq!(status, 404);

    // a changed tariff reaches the stations under a new id
    put(
        "/api/tariffs/default",
        json!({"currency": "EUR", "elements": [{"price_components": [
            {"type": "ENERGY", "price": 0.45, "vat": 21.0, "step_size": 1},
            {"type": "FLAT", "price": 1.00, "vat": 21.0, "step_size": 1}]}]}),
    )
    .await;
    let new_id = eventually("the changed tariff at the station", || {
        let old = tariff_id.clone();
        async move {
            let (_, held) = get().await;
            let id = held["tariffAssignments"]
                .as_array()?
                .iter()
                .find(|a| a["tariffKind"] == "DefaultTariff")?["tariffId"]
                .as_str()?
                .to_owned();
            (id != old).then_some(id)
        }
    })
    .await;
    assert!(new_id.starts_with("default-"));

    honest.abort();
    tampered.abort();
    csms.stop().await;
}
