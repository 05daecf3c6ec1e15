//! Local authorization list conformance (OCPP 2.0.1 Part 2 block D, 1.6
//! Local Auth List Management profile): the operator replaces a station's
//! list (`PUT /api/stations/{id}/local-list`, SendLocalList `Full` with the
//! registry's tokens and their status) and reads its version
//! (GetLocalListVersion); the list version grows with each accepted list.

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
