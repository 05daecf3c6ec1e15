//! Local authorization list conformance (OCPP 2.0.1 Part 2 block D, 1.6
//! Local Auth List Management profile): the operator replaces a station's
//! list (`PUT /api/stations/{id}/local-list`, SendLocalList `Full` with the
//! registry's tokens, their status, group and expiry), then sends what
//! changed (`Differential`: changed entries, removed ones without their
//! info) while the CSMS knows the station's entries, and reads its version
//! (GetLocalListVersion, `GET .../local-list`); the list version grows with
//! each accepted update, and a `VersionMismatch` or another version
//! reported make the next update a full one.

mod common;

use common::conformance::{Lab, Station};
use evproto_ocpp_proto::ProtocolVersion::{self, V16, V201};
use serde_json::{json, Value};

/// The version and the (token, status) entries of a SendLocalList.
fn entries(version: ProtocolVersion, request: &Value) -> (i64, Vec<(String, String)>) {
    let (v, list, token) = match version {
        V16 => ("listVersion", "localAuthorizationList", "/idTag"),
        _ => (
            "versionNumber",
            "localAuthorizationList",
            "/idToken/idToken",
        ),
    };
    let info = if version == V16 {
        "/idTagInfo/status"
    } else {
        "/idTokenInfo/status"
    };
    let mut e: Vec<_> = request[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let s = |p: &str| x.pointer(p).and_then(Value::as_str).unwrap().to_owned();
            (s(token), s(info))
        })
        .collect();
    e.sort();
    (request[v].as_i64().unwrap(), e)
}

async fn full_list_then_version(version: ProtocolVersion, id: &str) {
    let lab = Lab::start(id).await;
    lab.token("LL-A", "Accepted", None).await;
    lab.token("LL-B", "Accepted", None).await;
    lab.token("LL-X", "Blocked", None).await;
    let mut st = Station::connect(&lab, id, version).await;
    let path = format!("/api/stations/{id}/local-list");
    // D01 / 1.6 SendLocalList Full: every accepted token
    let answer = lab.ok("PUT", &path, None).await;
    let request = st.received("SendLocalList").await;
    assert_eq!(request["updateType"], "Full");
    let (v1, list) = entries(version, &request);
    let accepted = |t: &str| (t.to_owned(), "Accepted".to_owned());
    assert_eq!(list, [accepted("LL-A"), accepted("LL-B")]);
    assert_eq!(answer["list_version"], v1, "{answer}");
    // named tokens, a blocked one with its status; the version grows
    lab.ok("PUT", &path, Some(json!({"tokens": ["LL-A", "LL-X"]})))
        .await;
    let request = st.received("SendLocalList").await;
    let (v2, list) = entries(version, &request);
    assert_eq!(v2, v1 + 1);
    assert_eq!(list, [accepted("LL-A"), ("LL-X".into(), "Blocked".into())]);
    // D02 / 1.6 GetLocalListVersion
    let field = if version == V16 {
        "listVersion"
    } else {
        "versionNumber"
    };
    lab.exchange(
        &mut st,
        "GetLocalListVersion",
        json!({}),
        json!({ field: v2 }),
    )
    .await;
    st.stop().await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d01_d02_send_full_local_list_and_get_its_version_201() {
    full_list_then_version(V201, "CONF-D01-201").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_auth_list_16_send_full_list_and_get_its_version() {
    full_list_then_version(V16, "CONF-D01-16").await;
}

/// The (token, status, group) entries of a SendLocalList; status `None`
/// for an entry without its info (removed).
fn changes(
    version: ProtocolVersion,
    request: &Value,
) -> Vec<(String, Option<String>, Option<String>)> {
    let (token, info, group) = match version {
        V16 => ("/idTag", "idTagInfo", "/parentIdTag"),
        _ => ("/idToken/idToken", "idTokenInfo", "/groupIdToken/idToken"),
    };
    let mut e: Vec<_> = request["localAuthorizationList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let i = x.get(info);
            let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
            (
                s(x.pointer(token)).unwrap(),
                s(i.and_then(|i| i.get("status"))),
                s(i.and_then(|i| i.pointer(group))),
            )
        })
        .collect();
    e.sort();
    e
}

async fn differential_updates(version: ProtocolVersion, id: &str) {
    let lab = Lab::start(id).await;
    let expiry = "2031-01-01T00:00:00Z";
    lab.token("DL-FLEET", "Accepted", None).await;
    lab.token("DL-A", "Accepted", Some("DL-FLEET")).await;
    lab.token_with("DL-B", json!({"expires_at": expiry})).await;
    lab.token("DL-C", "Accepted", None).await;
    let mut st = Station::connect(&lab, id, version).await;
    let path = format!("/api/stations/{id}/local-list");
    let s = |v: &str| Some(v.to_owned());
    // the first list is full (the CSMS does not know the station's), with groups and expiry
    let answer = lab.ok("PUT", &path, None).await;
    assert_eq!(answer["update"], "Full", "{answer}");
    let request = st.received("SendLocalList").await;
    assert_eq!(request["updateType"], "Full");
    let v1 = answer["list_version"].as_i64().unwrap();
    assert_eq!(
        changes(version, &request),
        [
            ("DL-A".into(), s("Accepted"), s("DL-FLEET")),
            ("DL-B".into(), s("Accepted"), None),
            ("DL-C".into(), s("Accepted"), None),
            ("DL-FLEET".into(), s("Accepted"), None),
        ]
    );
    let expiry_field = if version == V16 {
        "/idTagInfo/expiryDate"
    } else {
        "/idTokenInfo/cacheExpiryDateTime"
    };
    let b = request["localAuthorizationList"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e.to_string().contains("DL-B"))
        .unwrap();
    assert_eq!(
        b.pointer(expiry_field).and_then(Value::as_str),
        Some(expiry)
    );
    // nothing changed: nothing sent
    let answer = lab.ok("PUT", &path, None).await;
    assert_eq!(answer["update"], Value::Null, "{answer}");
    st.not_received("SendLocalList").await;
    // DL-C blocked, DL-D new: only those two, the version one up
    lab.token("DL-C", "Blocked", None).await;
    lab.token("DL-D", "Accepted", None).await;
    let tokens = json!({"tokens": ["DL-FLEET", "DL-A", "DL-B", "DL-C", "DL-D"]});
    let answer = lab.ok("PUT", &path, Some(tokens)).await;
    assert_eq!(answer["update"], "Differential", "{answer}");
    let request = st.received("SendLocalList").await;
    assert_eq!(request["updateType"], "Differential");
    let v2 = answer["list_version"].as_i64().unwrap();
    assert_eq!(v2, v1 + 1);
    assert_eq!(
        changes(version, &request),
        [
            ("DL-C".into(), s("Blocked"), None),
            ("DL-D".into(), s("Accepted"), None),
        ]
    );
    // DL-B left off the list: removed (no info)
    let tokens = json!({"tokens": ["DL-FLEET", "DL-A", "DL-C", "DL-D"]});
    lab.ok("PUT", &path, Some(tokens)).await;
    let request = st.received("SendLocalList").await;
    assert_eq!(request["updateType"], "Differential");
    assert_eq!(changes(version, &request), [("DL-B".into(), None, None)]);
    // the station has another version: the next update is full, above it
    st.answer("SendLocalList", json!({"status": "VersionMismatch"}));
    lab.token("DL-E", "Accepted", None).await;
    let tokens = json!({"tokens": ["DL-FLEET", "DL-A", "DL-C", "DL-D", "DL-E"]});
    lab.ok("PUT", &path, Some(tokens.clone())).await;
    assert_eq!(
        st.received("SendLocalList").await["updateType"],
        "Differential"
    );
    let answer = lab.ok("PUT", &path, Some(tokens)).await;
    assert_eq!(answer["update"], "Full", "{answer}");
    assert_eq!(st.received("SendLocalList").await["updateType"], "Full");
    let v = answer["list_version"].as_i64().unwrap();
    // D02: the station reports the version it has; another one is forgotten
    let field = if version == V16 {
        "listVersion"
    } else {
        "versionNumber"
    };
    st.answer("GetLocalListVersion", json!({ field: v }));
    let read = lab.ok("GET", &path, None).await;
    st.received("GetLocalListVersion").await;
    assert_eq!(read["station_version"], v, "{read}");
    assert_eq!(read["entries_known"], true, "{read}");
    st.answer("GetLocalListVersion", json!({ field: v + 5 }));
    let read = lab.ok("GET", &path, None).await;
    st.received("GetLocalListVersion").await;
    assert_eq!(read["entries_known"], false, "{read}");
    let answer = lab
        .ok("PUT", &path, Some(json!({"update": "Differential"})))
        .await;
    assert_eq!(answer["update"], "Full", "{answer}");
    assert_eq!(answer["list_version"], v + 6, "{answer}");
    st.received("SendLocalList").await;
    st.stop().await;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d01_d02_differential_updates_with_versions_201() {
    differential_updates(V201, "CONF-D01-DIFF-201").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_auth_list_16_differential_updates_with_versions() {
    differential_updates(V16, "CONF-D01-DIFF-16").await;
}
