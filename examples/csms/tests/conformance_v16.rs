//! OCPP 1.6 profiles beyond Core transactions (Firmware Management, Remote
//! Trigger, Reservation, Smart Charging) and the security extensions
//! (signed firmware, logs, extended trigger): each operator request reaches
//! a scripted 1.6 station as given, its answer the operator, and the
//! station's status notifications are answered and kept.

mod common;

use common::conformance::{now, Lab, Station};
use evproto_ocpp_proto::ProtocolVersion::V16;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_16_operator_requests_and_answers() {
    let lab = Lab::start("v16-profiles").await;
    let mut st = Station::connect(&lab, "CONF-16", V16).await;
    let accepted = json!({"status": "Accepted"});
    let profile = json!({"chargingProfileId": 5, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative", "chargingSchedule": {"chargingRateUnit": "A",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}]}});
    let cases = [
        // Core
        (
            "ChangeAvailability",
            json!({"connectorId": 1, "type": "Inoperative"}),
            accepted.clone(),
        ),
        (
            "UnlockConnector",
            json!({"connectorId": 1}),
            json!({"status": "Unlocked"}),
        ),
        ("ClearCache", json!({}), accepted.clone()),
        (
            "RemoteStartTransaction",
            json!({"idTag": "TAG16", "connectorId": 1}),
            accepted.clone(),
        ),
        (
            "RemoteStopTransaction",
            json!({"transactionId": 1}),
            accepted.clone(),
        ),
        // Firmware Management
        (
            "UpdateFirmware",
            json!({"location": "https://fw.example/cp.bin", "retrieveDate": "2030-01-01T00:00:00Z"}),
            json!({}),
        ),
        (
            "GetDiagnostics",
            json!({"location": "ftp://diag.example/"}),
            json!({"fileName": "diag.zip"}),
        ),
        // Remote Trigger
        (
            "TriggerMessage",
            json!({"requestedMessage": "MeterValues", "connectorId": 1}),
            accepted.clone(),
        ),
        // Reservation
        (
            "ReserveNow",
            json!({"connectorId": 1, "expiryDate": "2030-01-01T00:00:00Z", "idTag": "TAG16", "reservationId": 3}),
            accepted.clone(),
        ),
        (
            "CancelReservation",
            json!({"reservationId": 3}),
            accepted.clone(),
        ),
        // Smart Charging
        (
            "SetChargingProfile",
            json!({"connectorId": 1, "csChargingProfiles": profile}),
            accepted.clone(),
        ),
        (
            "GetCompositeSchedule",
            json!({"connectorId": 1, "duration": 600}),
            json!({"status": "Rejected"}),
        ),
        ("ClearChargingProfile", json!({"id": 5}), accepted.clone()),
        (
            "ClearChargingProfile",
            json!({"connectorId": 1, "chargingProfilePurpose": "TxDefaultProfile", "stackLevel": 0}),
            json!({"status": "Unknown"}),
        ),
        // security extensions
        (
            "ExtendedTriggerMessage",
            json!({"requestedMessage": "SignChargePointCertificate"}),
            accepted.clone(),
        ),
        (
            "SignedUpdateFirmware",
            json!({"requestId": 81, "firmware": {"location": "https://fw.example/cp.bin",
            "retrieveDateTime": "2030-01-01T00:00:00Z",
            "signingCertificate": "-----BEGIN CERTIFICATE-----\nMIIBsigner\n-----END CERTIFICATE-----",
            "signature": "MEUCIQsig=="}}),
            accepted.clone(),
        ),
    ];
    for (action, payload, answer) in cases {
        lab.exchange(&mut st, action, payload, answer).await;
    }
    st.stop().await;
    lab.stop().await;
}

/// Firmware Management and the signed update's statuses: each notification
/// answered and the latest shown as the station's firmware status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_16_status_notifications_shown() {
    let lab = Lab::start("v16-firmware").await;
    let st = Station::connect(&lab, "CONF-16-FW", V16).await;
    let cases = [
        (
            "FirmwareStatusNotification",
            json!({"status": "Installed"}),
            "Installed",
        ),
        (
            "DiagnosticsStatusNotification",
            json!({"status": "Uploaded"}),
            "Installed",
        ),
        (
            "SignedFirmwareStatusNotification",
            json!({"status": "InvalidSignature", "requestId": 81}),
            "InvalidSignature",
        ),
    ];
    for (action, payload, shown) in cases {
        assert_eq!(st.ok(action, payload).await, json!({}), "{action}");
        let station = lab
            .ok("GET", &format!("/api/stations/{}", st.id), None)
            .await;
        assert_eq!(
            station["firmware_status"]["status"], shown,
            "{action}: {station}"
        );
    }
    st.stop().await;
    lab.stop().await;
}

/// Security extensions, logs and security events: the operator asks for
/// the security log (`POST /api/stations/{id}/logs` with `log_type`
/// `SecurityLog`): GetLog with an upload location of the CSMS's (the
/// diagnostics log stays GetDiagnostics); the station uploads it there and
/// its LogStatusNotification is shown with the uploads; a
/// SecurityEventNotification is answered and alerts the operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_16_security_log_uploaded_and_security_events_alerted() {
    let lab = Lab::start("v16-security-log").await;
    let mut st = Station::connect(&lab, "CONF-16-SEC", V16).await;
    let path = format!("/api/stations/{}/logs", st.id);
    st.answer(
        "GetLog",
        json!({"status": "Accepted", "filename": "security.log"}),
    );
    let asked = lab
        .ok("POST", &path, Some(json!({"log_type": "SecurityLog"})))
        .await;
    assert_eq!(asked["action"], "GetLog", "{asked}");
    assert_eq!(asked["answer"]["status"], "Accepted", "{asked}");
    let request = st.received("GetLog").await;
    assert_eq!(request["logType"], "SecurityLog", "{request}");
    let url = request["log"]["remoteLocation"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(asked["upload_url"], url, "{asked}");
    let request_id = request["requestId"].as_i64().unwrap();
    // the station uploads its log to the location it was given
    let uploading = json!({"status": "Uploading", "requestId": request_id});
    assert_eq!(st.ok("LogStatusNotification", uploading).await, json!({}));
    let put = reqwest::Client::new()
        .put(format!("{url}/security.log"))
        .body("2026-12-07T04:00:00Z FirmwareUpdated\n")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{:?}", put.text().await);
    let uploaded = json!({"status": "Uploaded", "requestId": request_id});
    assert_eq!(st.ok("LogStatusNotification", uploaded).await, json!({}));
    let logs = lab.ok("GET", &path, None).await;
    assert_eq!(logs["status"]["status"], "Uploaded", "{logs}");
    assert_eq!(logs["status"]["request_id"], request_id, "{logs}");
    assert!(
        logs.to_string().contains("security.log"),
        "the upload listed: {logs}"
    );
    // without a log type: the diagnostics, by GetDiagnostics
    st.answer("GetDiagnostics", json!({"fileName": "diag.zip"}));
    let asked = lab.ok("POST", &path, None).await;
    assert_eq!(asked["action"], "GetDiagnostics", "{asked}");
    assert!(st.received("GetDiagnostics").await["location"].is_string());
    // an unknown log type is refused before anything is sent
    let (status, v) = lab
        .api("POST", &path, Some(json!({"log_type": "AuditLog"})))
        .await;
    assert_eq!(status, 400, "{v}");
    st.not_received("GetLog").await;
    // a security event is answered and alerts the operator
    let event =
        json!({"type": "TamperDetectionActivated", "timestamp": now(), "techInfo": "lid open"});
    assert_eq!(st.ok("SecurityEventNotification", event).await, json!({}));
    let alerts = lab
        .ok("GET", &format!("/api/alerts?station={}", st.id), None)
        .await;
    let security: Vec<_> = alerts["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "security")
        .collect();
    assert_eq!(security.len(), 1, "{alerts}");
    assert!(
        security[0]["message"]
            .as_str()
            .unwrap()
            .contains("TamperDetectionActivated"),
        "{alerts}"
    );
    st.stop().await;
    lab.stop().await;
}
