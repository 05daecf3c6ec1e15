//! Authorization conformance (OCPP 2.0.1 Part 2 block C; 1.6 Core
//! `Authorize`, `StartTransaction`/`StopTransaction` `idTagInfo`): a scripted
//! station presents tokens the operator registered (`/api/tokens`, with
//! their group) and the test asserts each `idTokenInfo` / `idTagInfo` the
//! CSMS answers.
//!
//! - C01 (and 1.6 Core): the token's status; an unknown token is `Unknown`
//!   (1.6 `Invalid`).
//! - C09 (1.6 `parentIdTag`): the token's group is named in every answer; a
//!   blocked group blocks its members; another member of the group ends the
//!   session, also while in a session of its own.
//! - C16: a token of the station's master-pass group (its reported
//!   `AuthCtrlr.MasterPassGroupId`) is accepted to authorize and to end any
//!   transaction, and `Invalid` at a start.
//!
//! C10-C15 (cache and local list on the station) are the station's; the
//! CSMS's side of the local list is in `conformance_local_list.rs`.

mod common;

use common::conformance::{ended, now, start_16, started, stop_16, token, Lab, Station};
use evproto_ocpp_proto::ProtocolVersion::{V16, V201};
use serde_json::{json, Value};

/// The registry: `OK` accepted, `BLK` blocked, `FLEET` a group with
/// members `CARD-A` and `CARD-B`, `GONE` a blocked group with member `CARD-G`.
async fn registry(lab: &Lab) {
    lab.token("OK", "Accepted", None).await;
    lab.token("BLK", "Blocked", None).await;
    lab.token("FLEET", "Accepted", None).await;
    lab.token("CARD-A", "Accepted", Some("FLEET")).await;
    lab.token("CARD-B", "Accepted", Some("FLEET")).await;
    lab.token("GONE", "Blocked", None).await;
    lab.token("CARD-G", "Accepted", Some("GONE")).await;
}

async fn authorize_201(station: &Station, id: &str) -> Value {
    station.ok("Authorize", json!({"idToken": token(id)})).await["idTokenInfo"].clone()
}

async fn authorize_16(station: &Station, id: &str) -> Value {
    station.ok("Authorize", json!({"idTag": id})).await["idTagInfo"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c01_c09_authorize_answers_status_and_group() {
    let lab = Lab::start("c01-authorize").await;
    registry(&lab).await;
    let v201 = Station::connect(&lab, "CONF-C-201", V201).await;
    let v16 = Station::connect(&lab, "CONF-C-16", V16).await;
    // (token, 2.0.1 status, 1.6 status, group named)
    let cases = [
        ("OK", "Accepted", "Accepted", None),
        ("BLK", "Blocked", "Blocked", None),
        ("NOBODY", "Unknown", "Invalid", None),
        ("CARD-A", "Accepted", "Accepted", Some("FLEET")),
        // C09: a blocked group blocks its members
        ("CARD-G", "Blocked", "Blocked", Some("GONE")),
    ];
    for (id, status_201, status_16, group) in cases {
        let info = authorize_201(&v201, id).await;
        assert_eq!(info["status"], status_201, "{id}: {info}");
        assert_eq!(
            info["groupIdToken"]["idToken"].as_str(),
            group,
            "{id}: {info}"
        );
        let info = authorize_16(&v16, id).await;
        assert_eq!(info["status"], status_16, "{id}: {info}");
        assert_eq!(info["parentIdTag"].as_str(), group, "{id}: {info}");
    }
    v201.stop().await;
    v16.stop().await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c09_group_member_ends_the_session_of_another_201() {
    let lab = Lab::start("c09-group-stop-201").await;
    registry(&lab).await;
    let st = Station::connect(&lab, "CONF-C09-201", V201).await;
    // CARD-A starts on EVSE 1, CARD-B charges on EVSE 2
    let a = st
        .ok("TransactionEvent", started("TX-A", 1, Some("CARD-A")))
        .await;
    assert_eq!(a["idTokenInfo"]["status"], "Accepted", "{a}");
    assert_eq!(a["idTokenInfo"]["groupIdToken"]["idToken"], "FLEET", "{a}");
    let b = st
        .ok("TransactionEvent", started("TX-B", 2, Some("CARD-B")))
        .await;
    assert_eq!(b["idTokenInfo"]["status"], "Accepted", "{b}");
    // CARD-B (same group) ends CARD-A's session: accepted though in a session of its own
    let end = st
        .ok(
            "TransactionEvent",
            ended("TX-A", 1, Some("CARD-B"), "Local"),
        )
        .await;
    assert_eq!(end["idTokenInfo"]["status"], "Accepted", "{end}");
    assert_eq!(
        end["idTokenInfo"]["groupIdToken"]["idToken"], "FLEET",
        "{end}"
    );
    let session = lab.session(&st.id, "TX-A").await;
    assert_eq!(session["status"], "Completed", "{session}");
    assert_eq!(session["id_token"], "CARD-A", "{session}");
    st.stop().await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c09_group_member_ends_the_session_of_another_16() {
    let lab = Lab::start("c09-group-stop-16").await;
    registry(&lab).await;
    let st = Station::connect(&lab, "CONF-C09-16", V16).await;
    let a = st.ok("StartTransaction", start_16(1, "CARD-A")).await;
    assert_eq!(a["idTagInfo"]["status"], "Accepted", "{a}");
    assert_eq!(a["idTagInfo"]["parentIdTag"], "FLEET", "{a}");
    let b = st.ok("StartTransaction", start_16(2, "CARD-B")).await;
    assert_eq!(b["idTagInfo"]["status"], "Accepted", "{b}");
    // the station learns CARD-B's group from Authorize before letting it stop
    let info = authorize_16(&st, "CARD-B").await;
    assert_eq!(info["parentIdTag"], "FLEET", "{info}");
    let tx = a["transactionId"].as_i64().unwrap();
    let stop = st
        .ok("StopTransaction", stop_16(tx, Some("CARD-B"), "Local"))
        .await;
    assert_eq!(stop["idTagInfo"]["status"], "Accepted", "{stop}");
    assert_eq!(stop["idTagInfo"]["parentIdTag"], "FLEET", "{stop}");
    let session = lab.session(&st.id, &tx.to_string()).await;
    assert_eq!(session["status"], "Completed", "{session}");
    st.stop().await;
    lab.stop().await;
}

/// The station reports its master-pass group (C16) in its device model.
async fn report_master_pass_group(st: &Station, group: &str) {
    let report = json!({"requestId": 1, "generatedAt": now(), "seqNo": 0, "tbc": false,
        "reportData": [{"component": {"name": "AuthCtrlr"}, "variable": {"name": "MasterPassGroupId"},
            "variableAttribute": [{"type": "Actual", "value": group}]}]});
    st.ok("NotifyReport", report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c16_master_pass_authorizes_ends_every_transaction_and_starts_none() {
    let lab = Lab::start("c16-master-pass").await;
    registry(&lab).await;
    lab.token("MASTERPASS", "Accepted", None).await;
    lab.token("MP-1", "Accepted", Some("MASTERPASS")).await;
    let st = Station::connect(&lab, "CONF-C16", V201).await;
    report_master_pass_group(&st, "MASTERPASS").await;
    // C16: the master pass is presented; the CSMS names its group so the station knows it
    let info = authorize_201(&st, "MP-1").await;
    assert_eq!(info["status"], "Accepted", "{info}");
    assert_eq!(info["groupIdToken"]["idToken"], "MASTERPASS", "{info}");
    // two drivers charge; the master pass ends both
    for (tx, evse, driver) in [("TX-M1", 1, "OK"), ("TX-M2", 2, "CARD-A")] {
        let s = st
            .ok("TransactionEvent", started(tx, evse, Some(driver)))
            .await;
        assert_eq!(s["idTokenInfo"]["status"], "Accepted", "{s}");
    }
    for tx in ["TX-M1", "TX-M2"] {
        let e = st
            .ok("TransactionEvent", ended(tx, 1, Some("MP-1"), "MasterPass"))
            .await;
        assert_eq!(e["idTokenInfo"]["status"], "Accepted", "{tx}: {e}");
        let session = lab.session(&st.id, tx).await;
        assert_eq!(session["status"], "Completed", "{session}");
        assert_eq!(session["stop_reason"], "MasterPass", "{session}");
    }
    // a master pass starts nothing
    let s = st
        .ok("TransactionEvent", started("TX-M3", 1, Some("MP-1")))
        .await;
    assert_eq!(s["idTokenInfo"]["status"], "Invalid", "{s}");
    st.stop().await;
    lab.stop().await;
}
