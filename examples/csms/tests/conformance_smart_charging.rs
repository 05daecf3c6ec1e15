//! Smart charging conformance (OCPP 2.0.1 Part 2 block K): profiles set,
//! cleared by id and by criteria, read back (GetChargingProfiles and the
//! ReportChargingProfiles it triggers), composite schedules, and the
//! external limits a station reports (NotifyChargingLimit,
//! ClearedChargingLimit) shown to the operator and respected by the site
//! limit's shares (K02, K11, K14), and the EV's charging needs and
//! schedules under smart charging (K15–K17).

mod common;

use common::conformance::{ended, started, Lab, Station};
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

/// The limit of the site share the CSMS sent `st` (a `TxDefaultProfile` on
/// EVSE 1), W.
async fn share_sent(st: &mut Station) -> f64 {
    // the station's TxDefaultProfile and ChargingStationMaxProfile (EVSE 0)
    // come and go with the site's shares; the session's share is its TxProfile
    loop {
        let p = st.received("SetChargingProfile").await;
        let profile = &p["chargingProfile"];
        if profile["chargingProfilePurpose"] != "TxProfile" {
            assert_eq!(p["evseId"], 0, "{p}");
            continue;
        }
        assert_eq!(p["evseId"], 1, "{p}");
        assert!(profile["transactionId"].is_string(), "{p}");
        return profile["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"]
            .as_f64()
            .unwrap();
    }
}

/// K02 central smart charging by a site limit (22 kW): the first session
/// gets it all, two share it equally, and when one ends the other gets it
/// all again; K11 an external limit (NotifyChargingLimit with a 4 kW
/// schedule on an EVSE) caps that EVSE's share and the freed capacity goes
/// to the other session; K14 once it is cleared (ClearedChargingLimit) the
/// shares are equal again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k02_k11_k14_site_limit_shared_and_external_limits_respected() {
    let lab = Lab::start_with("k02-site", |c| c.site_limit_w = Some(22_000)).await;
    lab.token("K-A", "Accepted", None).await;
    lab.token("K-B", "Accepted", None).await;
    let mut a = Station::connect(&lab, "CONF-K02A", V201).await;
    let mut b = Station::connect(&lab, "CONF-K02B", V201).await;
    let s = a
        .ok("TransactionEvent", started("TX-A", 1, Some("K-A")))
        .await;
    assert_eq!(s["idTokenInfo"]["status"], "Accepted", "{s}");
    assert_eq!(share_sent(&mut a).await, 22_000.0);
    b.ok("TransactionEvent", started("TX-B", 1, Some("K-B")))
        .await;
    assert_eq!(share_sent(&mut a).await, 11_000.0);
    assert_eq!(share_sent(&mut b).await, 11_000.0);
    // K11: an energy management system limits A's EVSE to 4 kW
    let limit = json!({"evseId": 1, "chargingLimit": {"chargingLimitSource": "EMS"},
        "chargingSchedule": [{"id": 1, "chargingRateUnit": "W",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 4000}]}]});
    assert_eq!(a.ok("NotifyChargingLimit", limit).await, json!({}));
    assert_eq!(share_sent(&mut a).await, 4_000.0);
    assert_eq!(share_sent(&mut b).await, 18_000.0);
    // K14: cleared, shared equally again
    let cleared = json!({"chargingLimitSource": "EMS", "evseId": 1});
    assert_eq!(a.ok("ClearedChargingLimit", cleared).await, json!({}));
    assert_eq!(share_sent(&mut a).await, 11_000.0);
    assert_eq!(share_sent(&mut b).await, 11_000.0);
    // K02: B's session ends, A gets the site again
    b.ok("TransactionEvent", ended("TX-B", 1, None, "EVDisconnected"))
        .await;
    assert_eq!(share_sent(&mut a).await, 22_000.0);
    a.stop().await;
    b.stop().await;
    lab.stop().await;
}

/// K08 after every push: a station whose composite schedule differs from
/// what the CSMS installed raises a `composite_schedule` alert; a station
/// that refused a profile (after a site limit change through the operator
/// API) is sent it again by the retry timer, with no other event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k08_missed_answers_are_retried_and_a_wrong_composite_raises_an_alert() {
    let lab = Lab::start_with("k08-check", |c| c.site_limit_w = Some(11_000)).await;
    lab.token("K-C", "Accepted", None).await;
    let mut st = Station::connect(&lab, "CONF-K08", V201).await;
    // the default share on connection
    let first = st.received("SetChargingProfile").await;
    assert_eq!(first["evseId"], 0, "{first}");
    assert_eq!(
        first["chargingProfile"]["chargingProfilePurpose"], "TxDefaultProfile",
        "{first}"
    );
    // the operator lowers the site: the new default is refused, then sent
    // again by the retry timer with no other event
    st.answer("SetChargingProfile", json!({"status": "Rejected"}));
    lab.ok("PUT", "/api/site/limits", Some(json!({"limit_w": 7_000})))
        .await;
    let refused = st.received("SetChargingProfile").await;
    let limit = |p: &Value| {
        p["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"].as_f64()
    };
    assert_eq!(limit(&refused), Some(7_000.0), "{refused}");
    let again = st.received("SetChargingProfile").await;
    assert_eq!(again, refused);
    // a session: its TxProfile, then the check; the station reports 5 kW
    // where the CSMS installed 11 kW
    st.answer(
        "GetCompositeSchedule",
        json!({"status": "Accepted", "schedule": {"evseId": 1, "duration": 300,
            "scheduleStart": common::conformance::now(), "chargingRateUnit": "W",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 5000}]}}),
    );
    st.ok("TransactionEvent", started("TX-C", 1, Some("K-C")))
        .await;
    assert_eq!(share_sent(&mut st).await, 7_000.0);
    let asked = st.received("GetCompositeSchedule").await;
    assert_eq!(asked["evseId"], 1, "{asked}");
    assert_eq!(asked["chargingRateUnit"], "W", "{asked}");
    let alert = common::until(
        std::time::Duration::from_secs(10),
        "composite_schedule alert",
        || async {
            let (_, list) = lab.api("GET", "/api/alerts?status=open", None).await;
            list["items"]
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .find(|a| a["kind"] == "composite_schedule")
                        .cloned()
                })
                .ok_or_else(|| list.to_string())
        },
    )
    .await;
    assert_eq!(alert["station"], "CONF-K08", "{alert}");
    assert!(
        alert["message"].as_str().unwrap().contains("5000 W"),
        "{alert}"
    );
    st.stop().await;
    lab.stop().await;
}

/// K15 (and K17, the same message later in the transaction): with smart
/// charging on, the EV's needs are `Accepted` (K15.FR.03) and the
/// transaction's `TxProfile` follows, computed with them (K15.FR.07: its
/// maximum, 16 A on one phase = 3680 W of the site's 22 kW); K15.FR.10,
/// K16.FR.06: an EV schedule within it is `Accepted`; K15.FR.12/13,
/// K16.FR.07/08: one above it is `Rejected` and the CSMS sends its
/// `TxProfile` again; K17: new needs (three phases) give a new profile.
/// Without smart charging the CSMS offers no schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k15_k16_k17_ev_needs_and_schedules_under_smart_charging() {
    let lab = Lab::start_with("k15-needs", |c| c.site_limit_w = Some(22_000)).await;
    lab.token("K-N", "Accepted", None).await;
    let mut st = Station::connect(&lab, "CONF-K15", V201).await;
    st.ok("TransactionEvent", started("TX-N", 1, Some("K-N")))
        .await;
    assert_eq!(share_sent(&mut st).await, 22_000.0);
    let needs = |mode: &str| {
        json!({"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": mode,
            "acChargingParameters": {"energyAmount": 5000, "evMinCurrent": 6, "evMaxCurrent": 16, "evMaxVoltage": 230}}})
    };
    let r = st
        .ok("NotifyEVChargingNeeds", needs("AC_single_phase"))
        .await;
    assert_eq!(r["status"], "Accepted", "{r}");
    assert_eq!(share_sent(&mut st).await, 3_680.0);
    let schedule = |limit: f64| {
        json!({"timeBase": "2030-01-01T00:00:00Z", "evseId": 1, "chargingSchedule": {"id": 1,
            "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit, "numberPhases": 1}]}})
    };
    let r = st.ok("NotifyEVChargingSchedule", schedule(16.0)).await;
    assert_eq!(r["status"], "Accepted", "{r}");
    let r = st.ok("NotifyEVChargingSchedule", schedule(32.0)).await;
    assert_eq!(r["status"], "Rejected", "{r}");
    assert_eq!(r["statusInfo"]["reasonCode"], "OutOfLimits", "{r}");
    // K16: the CSMS renegotiates with its TxProfile
    assert_eq!(share_sent(&mut st).await, 3_680.0);
    // K17: the EV asks again, on three phases now: 16 A × 690 V
    let r = st
        .ok("NotifyEVChargingNeeds", needs("AC_three_phase"))
        .await;
    assert_eq!(r["status"], "Accepted", "{r}");
    assert_eq!(share_sent(&mut st).await, 11_040.0);
    st.stop().await;
    lab.stop().await;

    // no smart charging: no schedule offered, any EV schedule taken as is
    let lab = Lab::start("k15-no-smart").await;
    let st = Station::connect(&lab, "CONF-K15B", V201).await;
    let r = st
        .ok("NotifyEVChargingNeeds", needs("AC_three_phase"))
        .await;
    assert_eq!(r["status"], "Rejected", "{r}");
    let r = st.ok("NotifyEVChargingSchedule", schedule(32.0)).await;
    assert_eq!(r["status"], "Accepted", "{r}");
    st.stop().await;
    lab.stop().await;
}
