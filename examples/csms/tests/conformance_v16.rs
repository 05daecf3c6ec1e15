//! OCPP 1.6 profiles beyond Core transactions (Firmware Management, Remote
//! Trigger, Reservation, Smart Charging) and the security extensions
//! (signed firmware, logs, extended trigger): each operator request reaches
//! a scripted 1.6 station as given, its answer the operator, and the
//! station's status notifications are answered and kept.

mod common;

use common::conformance::{Lab, Station};
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
