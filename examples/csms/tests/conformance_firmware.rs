//! Firmware management conformance (OCPP 2.0.1 Part 2 block L): secure
//! firmware updates with the signing certificate and signature, the
//! operator's campaign, the station's FirmwareStatusNotification shown as
//! its firmware status, and publishing firmware on a local controller
//! (PublishFirmware, PublishFirmwareStatusNotification, UnpublishFirmware).

mod common;

use common::conformance::{Lab, Station};
use evproto_ocpp_proto::ProtocolVersion::{V16, V201};
use serde_json::json;

/// L01: UpdateFirmware with the firmware's signing certificate and
/// signature reaches the station as given; each FirmwareStatusNotification
/// of the install is shown as the station's firmware status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l01_secure_firmware_update_with_signature_and_its_statuses() {
    let lab = Lab::start("l01-secure-update").await;
    let mut st = Station::connect(&lab, "CONF-L01", V201).await;
    let update = json!({"requestId": 61, "retries": 2, "retryInterval": 30, "firmware": {
        "location": "https://fw.example/cp-2.1.bin", "retrieveDateTime": "2030-01-01T00:00:00Z",
        "signingCertificate": "-----BEGIN CERTIFICATE-----\nMIIBfirmwaresigner\n-----END CERTIFICATE-----",
        "signature": "MEUCIQDsignature=="}});
    lab.exchange(
        &mut st,
        "UpdateFirmware",
        update,
        json!({"status": "Accepted"}),
    )
    .await;
    for status in [
        "Downloading",
        "Downloaded",
        "SignatureVerified",
        "Installing",
        "Installed",
    ] {
        let n = json!({"status": status, "requestId": 61});
        assert_eq!(st.ok("FirmwareStatusNotification", n).await, json!({}));
        let station = lab
            .ok("GET", &format!("/api/stations/{}", st.id), None)
            .await;
        assert_eq!(station["firmware_status"]["status"], status, "{station}");
        assert_eq!(station["firmware_status"]["request_id"], 61, "{station}");
    }
    // L01 with a bad signature: the station says so, the operator sees it
    let n = json!({"status": "InvalidSignature", "requestId": 61});
    assert_eq!(st.ok("FirmwareStatusNotification", n).await, json!({}));
    let station = lab
        .ok("GET", &format!("/api/stations/{}", st.id), None)
        .await;
    assert_eq!(station["firmware_status"]["status"], "InvalidSignature");
    st.stop().await;
    lab.stop().await;
}

/// L02 (non-secure update, from the operator's campaign): UpdateFirmware
/// with the campaign's location and a request id the campaign keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l02_firmware_campaign_sends_update_firmware() {
    let lab = Lab::start("l02-campaign").await;
    let mut st = Station::connect(&lab, "CONF-L02", V201).await;
    let campaign = lab
        .ok(
            "POST",
            "/api/firmware-campaigns",
            Some(json!({"location": "https://fw.example/cp-2.2.bin", "stations": [st.id]})),
        )
        .await;
    let request = st.received("UpdateFirmware").await;
    assert_eq!(
        request["firmware"]["location"],
        "https://fw.example/cp-2.2.bin"
    );
    assert_eq!(request["requestId"], campaign["id"], "{campaign}");
    assert_eq!(campaign["stations"][0]["requested"], true, "{campaign}");
    st.stop().await;
    lab.stop().await;
}

/// L03, L04: PublishFirmware to a local controller, its status
/// notifications kept (a failure alerted), then UnpublishFirmware.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l03_l04_publish_firmware_on_a_local_controller_then_unpublish() {
    let lab = Lab::start("l03-publish").await;
    let mut st = Station::connect(&lab, "CONF-L03", V201).await;
    let checksum = "0123456789abcdef0123456789abcdef";
    lab.exchange(
        &mut st,
        "PublishFirmware",
        json!({"location": "https://fw.example/cp-2.1.bin", "checksum": checksum, "requestId": 71}),
        json!({"status": "Accepted"}),
    )
    .await;
    for status in ["Downloaded", "ChecksumVerified"] {
        let n = json!({"status": status, "requestId": 71});
        assert_eq!(
            st.ok("PublishFirmwareStatusNotification", n).await,
            json!({})
        );
    }
    let published = json!({"status": "Published", "requestId": 71,
        "location": ["http://lc.local/cp-2.1.bin", "ftp://lc.local/cp-2.1.bin"]});
    assert_eq!(
        st.ok("PublishFirmwareStatusNotification", published).await,
        json!({})
    );
    let kept = lab.reports(&st.id, "publish_firmware").await;
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert_eq!(kept[0]["body"]["status"], "Published");
    assert_eq!(kept[0]["body"]["location"][1], "ftp://lc.local/cp-2.1.bin");
    // the operator's view: the request's latest status and where it is published
    let view = lab
        .ok(
            "GET",
            &format!("/api/stations/{}/published-firmware", st.id),
            None,
        )
        .await;
    assert_eq!(view.as_array().map(Vec::len), Some(1), "{view}");
    assert_eq!(view[0]["request_id"], 71, "{view}");
    assert_eq!(view[0]["status"], "Published", "{view}");
    let published = json!(["http://lc.local/cp-2.1.bin", "ftp://lc.local/cp-2.1.bin"]);
    assert_eq!(view[0]["locations"], published, "{view}");
    lab.exchange(
        &mut st,
        "UnpublishFirmware",
        json!({"checksum": checksum}),
        json!({"status": "Unpublished"}),
    )
    .await;
    st.stop().await;
    lab.stop().await;
}

/// L01 from the operator's campaign: a campaign with the signing
/// certificate and signature sends a secure update (2.0.1 UpdateFirmware
/// with both; 1.6 SignedUpdateFirmware), the campaign says it is signed and
/// shows the station's `InvalidSignature`; a signature without its
/// certificate, or not base64, is a 400 with a reason and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l01_signed_firmware_campaign_sends_certificate_and_signature() {
    let lab = Lab::start("l01-signed-campaign").await;
    let mut st = Station::connect(&lab, "CONF-L01C", V201).await;
    let mut st16 = Station::connect(&lab, "CONF-L01C16", V16).await;
    let certificate = "-----BEGIN CERTIFICATE-----\nMIIBfirmwaresigner\n-----END CERTIFICATE-----";
    let signature = "MEUCIQDsignature==";
    for bad in [
        json!({"location": "https://fw.example/s.bin", "stations": [st.id], "signature": signature}),
        json!({"location": "https://fw.example/s.bin", "stations": [st.id],
            "signing_certificate": certificate, "signature": "not base64!"}),
        json!({"location": "https://fw.example/s.bin", "stations": [st.id],
            "signing_certificate": "no PEM", "signature": signature}),
    ] {
        let (status, b) = lab
            .api("POST", "/api/firmware-campaigns", Some(bad.clone()))
            .await;
        assert_eq!(status, 400, "{bad}: {b}");
        assert!(b["error"].is_string(), "{b}");
    }
    st.not_received("UpdateFirmware").await;
    let campaign = lab
        .ok(
            "POST",
            "/api/firmware-campaigns",
            Some(
                json!({"location": "https://fw.example/signed.bin", "stations": [st.id, st16.id],
                "signing_certificate": certificate, "signature": signature}),
            ),
        )
        .await;
    assert_eq!(campaign["signed"], true, "{campaign}");
    let request = st.received("UpdateFirmware").await;
    assert_eq!(
        request["firmware"]["signingCertificate"], certificate,
        "{request}"
    );
    assert_eq!(request["firmware"]["signature"], signature, "{request}");
    assert_eq!(request["requestId"], campaign["id"], "{request}");
    let request = st16.received("SignedUpdateFirmware").await;
    assert_eq!(
        request["firmware"]["signingCertificate"], certificate,
        "{request}"
    );
    assert_eq!(request["firmware"]["signature"], signature, "{request}");
    assert_eq!(
        request["firmware"]["location"],
        "https://fw.example/signed.bin"
    );
    for s in campaign["stations"].as_array().unwrap() {
        assert_eq!(s["requested"], true, "{campaign}");
    }
    let n = json!({"status": "InvalidSignature", "requestId": campaign["id"]});
    assert_eq!(st.ok("FirmwareStatusNotification", n).await, json!({}));
    let shown = lab
        .ok(
            "GET",
            &format!("/api/firmware-campaigns/{}", campaign["id"]),
            None,
        )
        .await;
    let mine = shown["stations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["station"] == st.id.as_str())
        .unwrap();
    assert_eq!(mine["status"], "InvalidSignature", "{shown}");
    st.stop().await;
    st16.stop().await;
    lab.stop().await;
}
