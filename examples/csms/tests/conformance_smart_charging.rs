//! Smart charging conformance (OCPP 2.0.1 Part 2 block K): profiles set,
//! cleared by id and by criteria, read back (GetChargingProfiles and the
//! ReportChargingProfiles it triggers), composite schedules, and the
//! external limits a station reports (NotifyChargingLimit,
//! ClearedChargingLimit) shown to the operator.

mod common;

use common::conformance::{Lab, Station};
use evproto_ocpp_proto::ProtocolVersion::V201;
use serde_json::{json, Value};

fn tx_default_profile(id: i32, limit: i32) -> Value {
    json!({"id": id, "stackLevel": 1, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute", "chargingSchedule": [{"id": id, "chargingRateUnit": "W",
        "startSchedule": "2030-01-01T00:00:00Z",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]}]})
}

/// K01 set a profile, K08 the composite schedule, K10 clear by id and by
/// criteria: each request reaches the station as given, its answer the operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k01_k08_k10_profiles_set_read_and_cleared_by_id_and_criteria() {
    let lab = Lab::start("k01-profiles").await;
    let mut st = Station::connect(&lab, "CONF-K01", V201).await;
    let accepted = json!({"status": "Accepted"});
    let cases = [
        (
            "SetChargingProfile",
            json!({"evseId": 1, "chargingProfile": tx_default_profile(101, 11000)}),
            accepted.clone(),
        ),
        (
            "GetCompositeSchedule",
            json!({"duration": 3600, "evseId": 1, "chargingRateUnit": "W"}),
            json!({"status": "Accepted", "schedule": {"evseId": 1, "duration": 3600,
                "scheduleStart": "2030-01-01T00:00:00Z", "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000}]}}),
        ),
        // by id
        (
            "ClearChargingProfile",
            json!({"chargingProfileId": 101}),
            accepted.clone(),
        ),
        // by criteria: every TxDefaultProfile of stack level 1 on EVSE 1
        (
            "ClearChargingProfile",
            json!({"chargingProfileCriteria": {"evseId": 1, "chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 1}}),
            accepted.clone(),
        ),
        // nothing matched
        (
            "ClearChargingProfile",
            json!({"chargingProfileId": 999}),
            json!({"status": "Unknown"}),
        ),
    ];
    for (action, payload, answer) in cases {
        lab.exchange(&mut st, action, payload, answer).await;
    }
    st.stop().await;
    lab.stop().await;
}

/// K09: GetChargingProfiles, the station answers Accepted and reports the
/// profiles in parts (ReportChargingProfiles, one per EVSE); each is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k09_get_charging_profiles_and_the_reports_it_triggers() {
    let lab = Lab::start("k09-get-profiles").await;
    let mut st = Station::connect(&lab, "CONF-K09", V201).await;
    lab.exchange(
        &mut st,
        "GetChargingProfiles",
        json!({"requestId": 51, "chargingProfile": {"chargingProfilePurpose": "TxDefaultProfile"}}),
        json!({"status": "Accepted"}),
    )
    .await;
    for (evse, tbc, id) in [(1, true, 101), (2, false, 102)] {
        let report = json!({"requestId": 51, "chargingLimitSource": "CSO", "evseId": evse, "tbc": tbc,
            "chargingProfile": [tx_default_profile(id, 7400)]});
        assert_eq!(st.ok("ReportChargingProfiles", report).await, json!({}));
    }
    let kept = lab.reports(&st.id, "charging_profiles").await;
    let keys: Vec<_> = kept.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["51:evse2", "51:evse1"], "{kept:?}");
    assert_eq!(kept[1]["body"]["chargingProfile"][0]["id"], 101);
    // none to report: NoProfiles, and nothing follows
    lab.exchange(
        &mut st,
        "GetChargingProfiles",
        json!({"requestId": 52, "chargingProfile": {"chargingProfileId": [999]}}),
        json!({"status": "NoProfiles"}),
    )
    .await;
    st.stop().await;
    lab.stop().await;
}

/// K12, K13: an external limit the station reports is shown on the station
/// as the limit in force, until it reports the limit cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k12_k13_external_limit_shown_until_cleared() {
    let lab = Lab::start("k12-external-limit").await;
    let st = Station::connect(&lab, "CONF-K12", V201).await;
    let limit = json!({"evseId": 1, "chargingLimit": {"chargingLimitSource": "EMS", "isGridCritical": true},
        "chargingSchedule": [{"id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6000}]}]});
    assert_eq!(st.ok("NotifyChargingLimit", limit).await, json!({}));
    let in_force = |station: Value| station["charging_limits"].as_array().cloned().unwrap();
    let station = lab
        .ok("GET", &format!("/api/stations/{}", st.id), None)
        .await;
    let limits = in_force(station);
    assert_eq!(limits.len(), 1, "{limits:?}");
    assert_eq!(limits[0]["key"], "EMS@evse1");
    let cleared = json!({"chargingLimitSource": "EMS", "evseId": 1});
    assert_eq!(st.ok("ClearedChargingLimit", cleared).await, json!({}));
    let station = lab
        .ok("GET", &format!("/api/stations/{}", st.id), None)
        .await;
    assert!(in_force(station).is_empty());
    let kept = lab.reports(&st.id, "charging_limit").await;
    assert_eq!(kept.len(), 2, "the limit and its clearing: {kept:?}");
    st.stop().await;
    lab.stop().await;
}
