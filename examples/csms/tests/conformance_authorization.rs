//! Authorization conformance (OCPP 2.0.1 Part 2 block C; 1.6 Core
//! `Authorize`, `StartTransaction`/`StopTransaction` `idTagInfo`): a scripted
//! station presents tokens the operator registered (`/api/tokens`, with
//! their group) and the test asserts each `idTokenInfo` / `idTagInfo` the
//! CSMS answers.
//!
//! - C01 (and 1.6 Core): the token's status; an unknown token is `Unknown`
//!   (1.6 `Invalid`); a token already in a transaction is `ConcurrentTx`
//!   at another start (and at a 1.6 Authorize), not at its own start or a
//!   replay of it, unless the operator registered it as shared
//!   (`allow_concurrent`, a card several cars use).
//! - C09 (1.6 `parentIdTag`): the token's group is named in every answer; a
//!   blocked group blocks its members; another member of the group ends the
//!   session, also while in a session of its own.
//! - C16: a token of the station's master-pass group (its reported
//!   `AuthCtrlr.MasterPassGroupId`) is accepted to authorize and to end any
//!   transaction, and `Invalid` at a start.
//!
//! - C10-C15 (the station's cache and local list; the CSMS's side of the
//!   list is in `conformance_local_list.rs`): the answer's cache expiry is
//!   the token's own (C10, 1.6 `expiryDate`), the operator clears a
//!   station's cache (C11), and a start the station authorized from its
//!   cache or list, or offline for an unknown token, is answered with the
//!   token's status now (C12-C15), so the station ends a transaction the
//!   CSMS refuses (`DeAuthorized`), which the CSMS keeps.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c01_token_in_another_transaction_is_concurrent_tx_201() {
    let lab = Lab::start("c01-concurrent-201").await;
    registry(&lab).await;
    let st = Station::connect(&lab, "CONF-CTX-201", V201).await;
    // judged at the start, not at Authorize, and not against the
    // transaction it starts (a repeated Started is not concurrent with itself)
    let first = st
        .ok("TransactionEvent", started("TX-1", 1, Some("OK")))
        .await;
    assert_eq!(first["idTokenInfo"]["status"], "Accepted", "{first}");
    let again = st
        .ok("TransactionEvent", started("TX-1", 1, Some("OK")))
        .await;
    assert_eq!(again["idTokenInfo"]["status"], "Accepted", "{again}");
    assert_eq!(authorize_201(&st, "OK").await["status"], "Accepted");
    let second = st
        .ok("TransactionEvent", started("TX-2", 2, Some("OK")))
        .await;
    assert_eq!(second["idTokenInfo"]["status"], "ConcurrentTx", "{second}");
    // its own stop is accepted, and afterwards it may start again
    let end = st
        .ok("TransactionEvent", ended("TX-1", 1, Some("OK"), "Local"))
        .await;
    assert_eq!(end["idTokenInfo"]["status"], "Accepted", "{end}");
    let end = st
        .ok("TransactionEvent", ended("TX-2", 1, None, "Local"))
        .await;
    assert!(end.get("idTokenInfo").is_none(), "{end}");
    let third = st
        .ok("TransactionEvent", started("TX-3", 1, Some("OK")))
        .await;
    assert_eq!(third["idTokenInfo"]["status"], "Accepted", "{third}");
    // a shared token (a card several cars use) starts while in a transaction
    let shared = lab
        .token_with("SHARED", json!({"allow_concurrent": true}))
        .await;
    assert_eq!(shared["allow_concurrent"], true, "{shared}");
    for (tx, evse) in [("TX-S1", 2), ("TX-S2", 3)] {
        let s = st
            .ok("TransactionEvent", started(tx, evse, Some("SHARED")))
            .await;
        assert_eq!(s["idTokenInfo"]["status"], "Accepted", "{tx}: {s}");
    }
    // no longer shared (PUT replaces the token): the next start is refused
    let unshared = lab.token_with("SHARED", json!({})).await;
    assert_eq!(unshared["allow_concurrent"], false, "{unshared}");
    let s = st
        .ok("TransactionEvent", started("TX-S3", 4, Some("SHARED")))
        .await;
    assert_eq!(s["idTokenInfo"]["status"], "ConcurrentTx", "{s}");
    st.stop().await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c01_token_in_another_transaction_is_concurrent_tx_16() {
    let lab = Lab::start("c01-concurrent-16").await;
    registry(&lab).await;
    // judged at Authorize and at StartTransaction; a replayed start is not
    // concurrent with itself; another station's transaction counts too
    let st = Station::connect(&lab, "CONF-CTX-16", V16).await;
    let other = Station::connect(&lab, "CONF-CTX-16B", V16).await;
    let start = start_16(1, "OK");
    let first = st.ok("StartTransaction", start.clone()).await;
    assert_eq!(first["idTagInfo"]["status"], "Accepted", "{first}");
    let replay = st.ok("StartTransaction", start).await;
    assert_eq!(replay["idTagInfo"]["status"], "Accepted", "{replay}");
    assert_eq!(replay["transactionId"], first["transactionId"]);
    assert_eq!(authorize_16(&other, "OK").await["status"], "ConcurrentTx");
    let second = other.ok("StartTransaction", start_16(1, "OK")).await;
    assert_eq!(second["idTagInfo"]["status"], "ConcurrentTx", "{second}");
    // once its transaction ended it is accepted again
    let tx = first["transactionId"].as_i64().unwrap();
    let stop = st
        .ok("StopTransaction", stop_16(tx, Some("OK"), "Local"))
        .await;
    assert_eq!(stop["idTagInfo"]["status"], "Accepted", "{stop}");
    let tx2 = second["transactionId"].as_i64().unwrap();
    other
        .ok("StopTransaction", stop_16(tx2, None, "DeAuthorized"))
        .await;
    assert_eq!(authorize_16(&other, "OK").await["status"], "Accepted");
    // a shared token: accepted at Authorize and at a start while in a transaction
    lab.token_with("SHARED", json!({"allow_concurrent": true}))
        .await;
    for station in [&st, &other] {
        let s = station.ok("StartTransaction", start_16(2, "SHARED")).await;
        assert_eq!(s["idTagInfo"]["status"], "Accepted", "{s}");
        assert_eq!(authorize_16(station, "SHARED").await["status"], "Accepted");
    }
    st.stop().await;
    other.stop().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c10_c11_cache_expiry_is_the_tokens_and_the_cache_is_cleared() {
    let lab = Lab::start("c10-cache").await;
    let expiry = "2031-05-01T12:00:00Z";
    lab.token_with("CACHED", json!({"expires_at": expiry}))
        .await;
    lab.token("FOREVER", "Accepted", None).await;
    let mut v201 = Station::connect(&lab, "CONF-C10-201", V201).await;
    let mut v16 = Station::connect(&lab, "CONF-C10-16", V16).await;
    // C10: the station may cache the answer until the token's expiry
    let info = authorize_201(&v201, "CACHED").await;
    assert_eq!(info["cacheExpiryDateTime"], expiry, "{info}");
    assert_eq!(authorize_16(&v16, "CACHED").await["expiryDate"], expiry);
    // a token without expiry: no limit given
    let info = authorize_201(&v201, "FOREVER").await;
    assert!(info.get("cacheExpiryDateTime").is_none(), "{info}");
    // an expired token is Expired, and nothing is cached
    lab.token_with("CACHED", json!({"expires_at": "2020-01-01T00:00:00Z"}))
        .await;
    let info = authorize_201(&v201, "CACHED").await;
    assert_eq!(info["status"], "Expired", "{info}");
    assert!(info.get("cacheExpiryDateTime").is_none(), "{info}");
    // C11 (1.6 ClearCache): the operator clears the cache; a refusal reaches the operator
    for (st, answer) in [(&mut v201, "Accepted"), (&mut v16, "Rejected")] {
        lab.exchange(st, "ClearCache", json!({}), json!({"status": answer}))
            .await;
    }
    v201.stop().await;
    v16.stop().await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c12_c13_c15_cached_and_offline_starts_answered_with_the_status_now() {
    let lab = Lab::start("c12-offline").await;
    registry(&lab).await;
    let st = Station::connect(&lab, "CONF-C12", V201).await;
    // C12: started with a token the station had cached as accepted, blocked since
    let answer = st
        .ok("TransactionEvent", started("TX-C12", 1, Some("BLK")))
        .await;
    assert_eq!(answer["idTokenInfo"]["status"], "Blocked", "{answer}");
    // the station ends it (StopTxOnInvalidId): kept with its reason
    let mut end = ended("TX-C12", 1, None, "DeAuthorized");
    end["triggerReason"] = json!("Deauthorized");
    st.ok("TransactionEvent", end).await;
    let session = lab.session(&st.id, "TX-C12").await;
    assert_eq!(session["status"], "Completed", "{session}");
    assert_eq!(session["stop_reason"], "DeAuthorized", "{session}");
    // C13: started offline with a token of its local list, sent when back online
    let mut offline = started("TX-C13", 2, Some("OK"));
    offline["offline"] = json!(true);
    let answer = st.ok("TransactionEvent", offline).await;
    assert_eq!(answer["idTokenInfo"]["status"], "Accepted", "{answer}");
    assert_eq!(lab.session(&st.id, "TX-C13").await["status"], "Active");
    // C15: started offline for an unknown token: Unknown, and the station ends it
    let mut unknown = started("TX-C15", 3, Some("STRANGER"));
    unknown["offline"] = json!(true);
    let answer = st.ok("TransactionEvent", unknown).await;
    assert_eq!(answer["idTokenInfo"]["status"], "Unknown", "{answer}");
    let mut end = ended("TX-C15", 1, None, "DeAuthorized");
    end["triggerReason"] = json!("Deauthorized");
    st.ok("TransactionEvent", end).await;
    let session = lab.session(&st.id, "TX-C15").await;
    assert_eq!(session["status"], "Completed", "{session}");
    assert_eq!(session["id_token"], "STRANGER", "{session}");
    st.stop().await;
    lab.stop().await;
}
