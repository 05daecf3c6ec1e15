//! Every message a station may send that is not a transaction, in each
//! version (1.6 with the security extensions, 2.0.1, 2.1): a station on
//! `ocpp-client` sends it to the CSMS started in-process, and the test checks
//! the answer and what the operator API shows afterwards
//! (`/api/stations/{id}/reports`, `/api/stations/{id}`, `/api/alerts`).
//!
//! The messages routed before (boot, status, authorization, transactions,
//! firmware and log status, security events, NotifyEvent/NotifyReport) are
//! covered in `e2e.rs` and `roaming.rs`.

mod common;

use std::time::Duration;

use evproto_ocpp_client::{Client, ClientConfig, MemoryStore as Queue};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_rpc::Router;
use serde_json::{json, Value};

const KEY: &str = "station-messages-api-key-01";

/// The CSMS in-process with one station connected and booted.
struct Harness {
    http: u16,
    station: Client,
    id: String,
    running: common::InProcess,
    dir: std::path::PathBuf,
}

impl Harness {
    async fn start(test: &str, version: ProtocolVersion) -> Harness {
        Harness::start_on(test, version, None).await
    }

    /// As [`Harness::start`], on the database at `database_url` (SQLite in a
    /// temporary directory without).
    async fn start_on(
        test: &str,
        version: ProtocolVersion,
        database_url: Option<String>,
    ) -> Harness {
        let dir = common::temp_dir(&format!("station-messages-{test}"));
        let config = csms::config::Config {
            database_url,
            ..common::lab_config(&dir, KEY)
        };
        let running = common::InProcess::start(config).await;
        let started = running.started.clone();
        let id = format!("SM-{}", test.replace('_', "-"));
        let url = format!("ws://127.0.0.1:{}/ocpp/", started.ocpp_port);
        let config = ClientConfig::new(url, id.clone(), version);
        let station = match version {
            ProtocolVersion::V16 => Client::start(
                config,
                Router::station_v16().with_state(()),
                r#"{"chargePointVendor":"V","chargePointModel":"M"}"#,
                Queue::default(),
            ),
            ProtocolVersion::V201 => Client::start(
                config,
                Router::station_v201().with_state(()),
                r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#,
                Queue::default(),
            ),
            _ => Client::start(
                config,
                Router::station_v21().with_state(()),
                r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#,
                Queue::default(),
            ),
        };
        station.wait_ready(Duration::from_secs(20)).await.unwrap();
        Harness {
            http: started.admin_port,
            station,
            id,
            running,
            dir,
        }
    }

    /// Sends `action` and returns the CSMS's answer (a CALLERROR fails the test).
    async fn call(&self, action: &str, payload: Value) -> Value {
        let peer = self.station.peer().expect("connected");
        let answer = peer
            .call_raw(action, payload.to_string())
            .await
            .unwrap_or_else(|e| panic!("{action}: {e}"));
        serde_json::from_str(&answer).unwrap()
    }

    async fn api(&self, path: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}{path}", self.http))
            .header("Authorization", format!("Bearer {KEY}"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The station's reports of `kind`, newest first.
    async fn reports(&self, kind: &str) -> Vec<Value> {
        let (status, body) = self
            .api(&format!("/api/stations/{}/reports?kind={kind}", self.id))
            .await;
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().unwrap().clone()
    }

    /// The only report of `kind`, checked to have `key`; its body.
    async fn one_report(&self, kind: &str, key: &str) -> Value {
        let reports = self.reports(kind).await;
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0]["kind"], kind);
        assert_eq!(reports[0]["key"], key, "{reports:?}");
        reports[0]["body"].clone()
    }

    /// The station's open alerts of `kind`.
    async fn open_alerts(&self, kind: &str) -> Vec<Value> {
        let (_, alerts) = self
            .api(&format!("/api/alerts?status=open&station={}", self.id))
            .await;
        alerts["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["station"] == self.id.as_str() && a["kind"] == kind)
            .cloned()
            .collect()
    }

    async fn station(&self) -> Value {
        let (status, body) = self.api(&format!("/api/stations/{}", self.id)).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn stop(self) {
        self.station.shutdown().await;
        self.running.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn version_name(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::V16 => "16",
        ProtocolVersion::V201 => "201",
        _ => "21",
    }
}

async fn start(test: &str, v: ProtocolVersion) -> Harness {
    Harness::start(&format!("{}-{test}", version_name(v)), v).await
}

/// A certificate request is refused as not served yet, kept, and alerted.
async fn certificate_refused(h: &Harness, action: &str, request: &Value) {
    let body = h.one_report("certificate_request", action).await;
    assert_eq!(&body, request);
    let alerts = h.open_alerts("certificate").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["detail"]["action"], action);
}

// ---- 1.6 (security extensions) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v16_sign_certificate() {
    let h = start("sign_certificate", ProtocolVersion::V16).await;
    let req = json!({"csr": "-----BEGIN CERTIFICATE REQUEST-----\nMIIBCSR16\n-----END CERTIFICATE REQUEST-----"});
    let answer = h.call("SignCertificate", req.clone()).await;
    assert_eq!(answer, json!({"status": "Rejected"}));
    certificate_refused(&h, "SignCertificate", &req).await;
    h.stop().await;
}

// ---- 2.0.1 and 2.1: the same messages ----

async fn notify_charging_limit(v: ProtocolVersion) {
    let h = start("notify_charging_limit", v).await;
    let req = json!({"evseId": 1, "chargingLimit": {"chargingLimitSource": "EMS", "isGridCritical": true},
        "chargingSchedule": [{"id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000}]}]});
    assert_eq!(h.call("NotifyChargingLimit", req.clone()).await, json!({}));
    let body = h.one_report("charging_limit", "EMS@evse1").await;
    assert_eq!(body["chargingLimit"]["isGridCritical"], true);
    assert_eq!(
        body["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"],
        11000.0
    );
    // shown on the station as the limit in force
    let station = h.station().await;
    let limits = station["charging_limits"].as_array().unwrap();
    assert_eq!(limits.len(), 1, "{station}");
    assert_eq!(limits[0]["key"], "EMS@evse1");
    assert_eq!(limits[0]["body"]["evseId"], 1);
    h.stop().await;
}

async fn cleared_charging_limit(v: ProtocolVersion) {
    let h = start("cleared_charging_limit", v).await;
    for (source, evse) in [("EMS", 1), ("SO", 2)] {
        let req = json!({"evseId": evse, "chargingLimit": {"chargingLimitSource": source}});
        assert_eq!(h.call("NotifyChargingLimit", req).await, json!({}));
    }
    assert_eq!(
        h.station().await["charging_limits"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let answer = h
        .call(
            "ClearedChargingLimit",
            json!({"chargingLimitSource": "EMS", "evseId": 1}),
        )
        .await;
    assert_eq!(answer, json!({}));
    // history: the clearing is the newest report, the limit before it kept
    let reports = h.reports("charging_limit").await;
    assert_eq!(reports.len(), 3, "{reports:?}");
    assert_eq!(reports[0]["key"], "EMS@evse1");
    assert_eq!(
        reports[0]["body"],
        json!({"cleared": true, "chargingLimitSource": "EMS", "evseId": 1})
    );
    // in force: only the SO limit
    let station = h.station().await;
    let limits = station["charging_limits"].as_array().unwrap();
    assert_eq!(limits.len(), 1, "{station}");
    assert_eq!(limits[0]["key"], "SO@evse2");
    h.stop().await;
}

async fn notify_ev_charging_needs(v: ProtocolVersion) {
    let h = start("notify_ev_charging_needs", v).await;
    let needs = |amount: u32| {
        json!({"evseId": 2, "maxScheduleTuples": 3, "chargingNeeds": {"requestedEnergyTransfer": "AC_three_phase",
        "acChargingParameters": {"energyAmount": amount, "evMinCurrent": 6, "evMaxCurrent": 32, "evMaxVoltage": 400}}})
    };
    let answer = h.call("NotifyEVChargingNeeds", needs(20000)).await;
    // no schedule is computed from the needs: the version's way to say so
    let expected = if v == ProtocolVersion::V201 {
        "Rejected"
    } else {
        "NoChargingProfile"
    };
    assert_eq!(answer["status"], expected, "{answer}");
    assert_eq!(answer["statusInfo"]["reasonCode"], "NoSchedule");
    h.call("NotifyEVChargingNeeds", needs(30000)).await;
    let reports = h.reports("ev_charging_needs").await;
    assert_eq!(reports.len(), 2);
    assert_eq!(
        reports[0]["body"]["chargingNeeds"]["acChargingParameters"]["energyAmount"],
        30000.0
    );
    // the station shows the latest needs per EVSE
    let station = h.station().await;
    let latest = station["ev_charging_needs"].as_array().unwrap();
    assert_eq!(latest.len(), 1, "{station}");
    assert_eq!(latest[0]["key"], "evse2");
    assert_eq!(
        latest[0]["body"]["chargingNeeds"]["acChargingParameters"]["energyAmount"],
        30000.0
    );
    h.stop().await;
}

async fn notify_ev_charging_schedule(v: ProtocolVersion) {
    let h = start("notify_ev_charging_schedule", v).await;
    let req = json!({"timeBase": now(), "evseId": 1, "chargingSchedule": {"id": 4, "chargingRateUnit": "W",
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400}, {"startPeriod": 1800, "limit": 3700}]}});
    let answer = h.call("NotifyEVChargingSchedule", req).await;
    assert_eq!(answer["status"], "Accepted");
    let body = h.one_report("ev_charging_schedule", "evse1").await;
    assert_eq!(
        body["chargingSchedule"]["chargingSchedulePeriod"][1]["startPeriod"],
        1800
    );
    h.stop().await;
}

async fn notify_display_messages(v: ProtocolVersion) {
    let h = start("notify_display_messages", v).await;
    let req = json!({"requestId": 5, "messageInfo": [{"id": 1, "priority": "NormalCycle",
        "message": {"format": "UTF8", "content": "Welcome"}}]});
    assert_eq!(h.call("NotifyDisplayMessages", req).await, json!({}));
    let body = h.one_report("display_messages", "5").await;
    assert_eq!(body["messageInfo"][0]["message"]["content"], "Welcome");
    h.stop().await;
}

async fn notify_monitoring_report(v: ProtocolVersion) {
    let h = start("notify_monitoring_report", v).await;
    let mut monitor = json!({"id": 1, "transaction": false, "value": 22000, "type": "UpperThreshold", "severity": 5});
    if v != ProtocolVersion::V201 {
        monitor["eventNotificationType"] = json!("CustomMonitor");
    }
    let req = json!({"requestId": 6, "seqNo": 1, "generatedAt": now(), "tbc": false, "monitor": [
        {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "Power"}, "variableMonitoring": [monitor]}]});
    assert_eq!(h.call("NotifyMonitoringReport", req).await, json!({}));
    let body = h.one_report("monitoring_report", "6:1").await;
    assert_eq!(
        body["monitor"][0]["variableMonitoring"][0]["value"],
        22000.0
    );
    h.stop().await;
}

async fn notify_customer_information(v: ProtocolVersion) {
    let h = start("notify_customer_information", v).await;
    let req = json!({"data": "idToken ABC: 2 transactions", "seqNo": 0, "generatedAt": now(), "requestId": 7});
    assert_eq!(h.call("NotifyCustomerInformation", req).await, json!({}));
    let body = h.one_report("customer_information", "7:0").await;
    assert_eq!(body["data"], "idToken ABC: 2 transactions");
    h.stop().await;
}

async fn publish_firmware_status_notification(v: ProtocolVersion) {
    let h = start("publish_firmware_status_notification", v).await;
    let published =
        json!({"status": "Published", "requestId": 8, "location": ["http://lc.local/fw.bin"]});
    assert_eq!(
        h.call("PublishFirmwareStatusNotification", published).await,
        json!({})
    );
    let body = h.one_report("publish_firmware", "request8").await;
    assert_eq!(body["location"][0], "http://lc.local/fw.bin");
    assert!(h.open_alerts("publish_firmware").await.is_empty());
    let failed = json!({"status": "PublishFailed", "requestId": 8});
    assert_eq!(
        h.call("PublishFirmwareStatusNotification", failed).await,
        json!({})
    );
    assert_eq!(h.reports("publish_firmware").await.len(), 2);
    let alerts = h.open_alerts("publish_firmware").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["detail"]["status"], "PublishFailed");
    assert_eq!(alerts[0]["detail"]["request_id"], 8);
    h.stop().await;
}

async fn report_charging_profiles(v: ProtocolVersion) {
    let h = start("report_charging_profiles", v).await;
    let req = json!({"requestId": 9, "chargingLimitSource": "CSO", "evseId": 1, "tbc": false, "chargingProfile": [
        {"id": 900, "stackLevel": 1, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
         "chargingSchedule": [{"id": 900, "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400}]}]}]});
    assert_eq!(h.call("ReportChargingProfiles", req).await, json!({}));
    let body = h.one_report("charging_profiles", "9:evse1").await;
    assert_eq!(body["chargingProfile"][0]["id"], 900);
    h.stop().await;
}

async fn get_certificate_status(v: ProtocolVersion) {
    let h = start("get_certificate_status", v).await;
    let req = json!({"ocspRequestData": {"hashAlgorithm": "SHA256", "issuerNameHash": "aa11", "issuerKeyHash": "bb22",
        "serialNumber": "01", "responderURL": "http://ocsp.example"}});
    let answer = h.call("GetCertificateStatus", req.clone()).await;
    assert_eq!(answer["status"], "Failed", "{answer}");
    assert_eq!(answer["statusInfo"]["reasonCode"], "NotSupported");
    assert!(answer.get("ocspResult").is_none());
    certificate_refused(&h, "GetCertificateStatus", &req).await;
    h.stop().await;
}

async fn get_15118_ev_certificate(v: ProtocolVersion) {
    let h = start("get_15118_ev_certificate", v).await;
    let req = json!({"iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install", "exiRequest": "AAECAw=="});
    let answer = h.call("Get15118EVCertificate", req.clone()).await;
    assert_eq!(answer["status"], "Failed", "{answer}");
    assert_eq!(answer["exiResponse"], "");
    assert_eq!(answer["statusInfo"]["reasonCode"], "NotSupported");
    certificate_refused(&h, "Get15118EVCertificate", &req).await;
    h.stop().await;
}

async fn sign_certificate(v: ProtocolVersion) {
    let h = start("sign_certificate", v).await;
    let req = json!({"csr": "-----BEGIN CERTIFICATE REQUEST-----\nMIIBCSR2X\n-----END CERTIFICATE REQUEST-----",
        "certificateType": "ChargingStationCertificate"});
    let answer = h.call("SignCertificate", req.clone()).await;
    assert_eq!(answer["status"], "Rejected", "{answer}");
    assert_eq!(answer["statusInfo"]["reasonCode"], "NotSupported");
    certificate_refused(&h, "SignCertificate", &req).await;
    h.stop().await;
}

macro_rules! per_version {
    ($($name:ident),* $(,)?) => {
        mod v201 {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(ProtocolVersion::V201).await
                }
            )*
        }
        mod v21 {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(ProtocolVersion::V21).await
                }
            )*
        }
    };
}
per_version!(
    notify_charging_limit,
    cleared_charging_limit,
    notify_ev_charging_needs,
    notify_ev_charging_schedule,
    notify_display_messages,
    notify_monitoring_report,
    notify_customer_information,
    publish_firmware_status_notification,
    report_charging_profiles,
    get_certificate_status,
    get_15118_ev_certificate,
    sign_certificate,
);

// ---- 2.1 only ----

async fn v21(test: &str) -> Harness {
    start(test, ProtocolVersion::V21).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v21_battery_swap() {
    let h = v21("battery_swap").await;
    let req = json!({"eventType": "BatteryIn", "requestId": 11, "idToken": {"idToken": "SWAP1", "type": "ISO14443"},
        "batteryData": [{"evseId": 1, "serialNumber": "B-1", "soC": 80, "soH": 95}]});
    assert_eq!(h.call("BatterySwap", req).await, json!({}));
    let body = h.one_report("battery_swap", "11").await;
    assert_eq!(body["eventType"], "BatteryIn");
    assert_eq!(body["batteryData"][0]["serialNumber"], "B-1");
    assert_eq!(body["idToken"]["idToken"], "SWAP1");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v21_open_periodic_event_stream() {
    let h = v21("open_periodic_event_stream").await;
    let req = json!({"constantStreamData": {"id": 3, "variableMonitoringId": 1, "params": {"interval": 60, "values": 10}}});
    let answer = h.call("OpenPeriodicEventStream", req).await;
    // taken: its values come as NotifyPeriodicEventStream SENDs (tests/streams.rs)
    assert_eq!(answer["status"], "Accepted", "{answer}");
    let body = h.one_report("event_stream", "3").await;
    assert_eq!(body["constantStreamData"]["params"]["interval"], 60);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v21_close_periodic_event_stream() {
    let h = v21("close_periodic_event_stream").await;
    assert_eq!(
        h.call("ClosePeriodicEventStream", json!({"id": 3})).await,
        json!({})
    );
    let body = h.one_report("event_stream", "3").await;
    assert_eq!(body, json!({"id": 3}));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v21_get_certificate_chain_status() {
    let h = v21("get_certificate_chain_status").await;
    let hash = |serial: &str| json!({"hashAlgorithm": "SHA256", "issuerNameHash": "aa11", "issuerKeyHash": "bb22", "serialNumber": serial});
    let req = json!({"certificateStatusRequests": [
        {"certificateHashData": hash("01"), "source": "OCSP", "urls": ["http://ocsp.example"]},
        {"certificateHashData": hash("02"), "source": "CRL", "urls": ["http://crl.example"]}]});
    let answer = h.call("GetCertificateChainStatus", req.clone()).await;
    let statuses = answer["certificateStatus"].as_array().unwrap();
    assert_eq!(statuses.len(), 2, "{answer}");
    for (s, (serial, source)) in statuses.iter().zip([("01", "OCSP"), ("02", "CRL")]) {
        assert_eq!(s["status"], "Failed");
        assert_eq!(s["source"], source);
        assert_eq!(s["certificateHashData"]["serialNumber"], serial);
        assert!(s["nextUpdate"].is_string());
    }
    certificate_refused(&h, "GetCertificateChainStatus", &req).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v21_notify_der_alarm() {
    let h = v21("notify_der_alarm").await;
    let alarm = json!({"controlType": "FreqDroop", "gridEventFault": "OverVoltage", "timestamp": now(), "extraInfo": "L1 253 V"});
    assert_eq!(h.call("NotifyDERAlarm", alarm).await, json!({}));
    let body = h.one_report("der_alarm", "FreqDroop").await;
    assert_eq!(body["gridEventFault"], "OverVoltage");
    let alerts = h.open_alerts("der_alarm").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["detail"]["extraInfo"], "L1 253 V");
    let ended = json!({"controlType": "FreqDroop", "alarmEnded": true, "timestamp": now()});
    assert_eq!(h.call("NotifyDERAlarm", ended).await, json!({}));
    assert_eq!(h.reports("der_alarm").await.len(), 2);
    assert!(h.open_alerts("der_alarm").await.is_empty(), "alarm ended");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v21_notify_der_start_stop() {
    let h = v21("notify_der_start_stop").await;
    let req = json!({"controlId": "ctl-1", "started": true, "timestamp": now(), "supersededIds": ["ctl-0"]});
    assert_eq!(h.call("NotifyDERStartStop", req).await, json!({}));
    let body = h.one_report("der_start_stop", "ctl-1").await;
    assert_eq!(body["started"], true);
    assert_eq!(body["supersededIds"][0], "ctl-0");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v21_report_der_control() {
    let h = v21("report_der_control").await;
    let req = json!({"requestId": 12, "tbc": false, "fixedPFAbsorb": [{"id": "pf-1", "isDefault": true, "isSuperseded": false,
        "fixedPF": {"priority": 1, "displacement": 0.95, "excitation": true}}]});
    assert_eq!(h.call("ReportDERControl", req).await, json!({}));
    let body = h.one_report("der_control", "12").await;
    assert_eq!(body["fixedPFAbsorb"][0]["id"], "pf-1");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v21_notify_priority_charging() {
    let h = v21("notify_priority_charging").await;
    let req = json!({"transactionId": "tx-9", "activated": true});
    assert_eq!(
        h.call("NotifyPriorityCharging", req.clone()).await,
        json!({})
    );
    assert_eq!(h.one_report("priority_charging", "tx-9").await, req);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v21_notify_settlement() {
    let h = v21("notify_settlement").await;
    let settled = json!({"pspRef": "psp-1", "status": "Settled", "settlementAmount": 12.5, "settlementTime": now(),
        "transactionId": "tx-9", "receiptId": "r-1"});
    let answer = h.call("NotifySettlement", settled).await;
    assert_eq!(answer, json!({}), "no receipt of the CSMS's own");
    let body = h.one_report("settlement", "psp-1").await;
    assert_eq!(body["settlementAmount"], 12.5);
    assert!(h.open_alerts("settlement").await.is_empty());
    let failed = json!({"pspRef": "psp-2", "status": "Failed", "statusInfo": "card declined", "settlementAmount": 7,
        "settlementTime": now()});
    assert_eq!(h.call("NotifySettlement", failed).await, json!({}));
    let alerts = h.open_alerts("settlement").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["detail"]["pspRef"], "psp-2");
    assert_eq!(alerts[0]["detail"]["statusInfo"], "card declined");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v21_pull_dynamic_schedule_update() {
    let h = v21("pull_dynamic_schedule_update").await;
    let answer = h
        .call("PullDynamicScheduleUpdate", json!({"chargingProfileId": 5}))
        .await;
    assert_eq!(answer["status"], "Rejected", "{answer}");
    assert!(answer.get("scheduleUpdate").is_none());
    assert_eq!(answer["statusInfo"]["reasonCode"], "UnknownProfile");
    let body = h.one_report("dynamic_schedule", "5").await;
    assert_eq!(body, json!({"chargingProfileId": 5}));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v21_vat_number_validation() {
    let h = v21("vat_number_validation").await;
    let answer = h
        .call(
            "VatNumberValidation",
            json!({"vatNumber": "NL123456789B01", "evseId": 1}),
        )
        .await;
    assert_eq!(answer["status"], "Rejected", "{answer}");
    assert_eq!(answer["vatNumber"], "NL123456789B01");
    assert_eq!(answer["evseId"], 1);
    assert!(answer.get("company").is_none());
    let body = h.one_report("vat_number", "NL123456789B01").await;
    assert_eq!(body["evseId"], 1);
    h.stop().await;
}

// ---- the reports API ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_api_is_newest_first_bounded_and_checked() {
    let h = start("reports_api", ProtocolVersion::V201).await;
    for id in 1..=3 {
        h.call(
            "NotifyDisplayMessages",
            json!({"requestId": id, "tbc": false}),
        )
        .await;
    }
    h.call("ClearedChargingLimit", json!({"chargingLimitSource": "SO"}))
        .await;
    let (status, all) = h.api(&format!("/api/stations/{}/reports", h.id)).await;
    assert_eq!(status, 200);
    let keys: Vec<(&str, &str)> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["key"].as_str().unwrap()))
        .collect();
    assert_eq!(
        keys,
        [
            ("charging_limit", "SO@station"),
            ("display_messages", "3"),
            ("display_messages", "2"),
            ("display_messages", "1")
        ]
    );
    let (_, two) = h
        .api(&format!(
            "/api/stations/{}/reports?kind=display_messages&limit=2",
            h.id
        ))
        .await;
    assert_eq!(two["items"].as_array().unwrap().len(), 2);
    assert_eq!(two["total"], 3, "{two}");
    assert_eq!(two["items"][0]["key"], "3");
    let (r0, r1) = (&two["items"][0], &two["items"][1]);
    assert!(r0["received_at"].as_str().unwrap() > r1["received_at"].as_str().unwrap());
    // the next page has the oldest
    let (_, rest) = h
        .api(&format!(
            "/api/stations/{}/reports?kind=display_messages&limit=2&cursor={}",
            h.id,
            two["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(rest["items"][0]["key"], "1", "{rest}");
    assert!(rest["next_cursor"].is_null(), "{rest}");
    let (status, err) = h
        .api(&format!("/api/stations/{}/reports?kind=nonsense", h.id))
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(h.api("/api/stations/NOPE/reports").await.0, 404);
    h.stop().await;
}

// ---- completeness: every call a station may send is routed ----

/// Sends every action of `v`'s generated table that a charging station may
/// send as a CALL, with an empty payload: the CSMS must answer each one,
/// with a result or a schema CALLERROR, never `NotImplemented` (what a
/// router without a handler for the action answers).
async fn every_station_call_is_routed(v: ProtocolVersion) {
    let h = start("every_station_call", v).await;
    let peer = h.station.peer().expect("connected");
    let mut routed = 0;
    for info in v.actions() {
        if info.send || info.direction == evproto_ocpp_types::Direction::CsmsToChargingStation {
            continue;
        }
        match peer.call_raw(info.name, "{}".into()).await {
            Ok(_) => {}
            Err(evproto_ocpp_rpc::CallFailure::CallError(e)) => {
                assert_ne!(
                    e.code, "NotImplemented",
                    "{} is not routed: {e:?}",
                    info.name
                )
            }
            Err(e) => panic!("{}: {e}", info.name),
        }
        routed += 1;
    }
    // 1.6 with the security extensions: 14; 2.0.1: 25; 2.1: 36 (the generated `Csms*` traits)
    let expected = match v {
        ProtocolVersion::V16 => 14,
        ProtocolVersion::V201 => 25,
        _ => 36,
    };
    assert_eq!(routed, expected);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v16_every_station_call_is_routed() {
    every_station_call_is_routed(ProtocolVersion::V16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v201_every_station_call_is_routed() {
    every_station_call_is_routed(ProtocolVersion::V201).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v21_every_station_call_is_routed() {
    every_station_call_is_routed(ProtocolVersion::V21).await;
}

// ---- the same on PostgreSQL ----

/// Runs `sql` on the PostgreSQL server the e2e tests use (`CSMS_TEST_POSTGRES`).
async fn pg(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} (set CSMS_TEST_POSTGRES): {e}"));
    sqlx::query(sql)
        .execute(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The report table, its newest-first order and the latest charging limit
/// and needs per EVSE on PostgreSQL (the migration and queries are portable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_on_postgres() {
    let admin = std::env::var("CSMS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("csms_station_messages_{}", std::process::id());
    pg(&admin, &format!("DROP DATABASE IF EXISTS {name}")).await;
    pg(&admin, &format!("CREATE DATABASE {name}")).await;
    let (base, _) = admin.rsplit_once('/').expect("admin URL has a path");
    let h = Harness::start_on(
        "reports_on_postgres",
        ProtocolVersion::V201,
        Some(format!("{base}/{name}")),
    )
    .await;
    for (source, evse) in [("EMS", 1), ("SO", 1)] {
        let req = json!({"evseId": evse, "chargingLimit": {"chargingLimitSource": source}});
        assert_eq!(h.call("NotifyChargingLimit", req).await, json!({}));
    }
    h.call(
        "ClearedChargingLimit",
        json!({"chargingLimitSource": "SO", "evseId": 1}),
    )
    .await;
    let needs = json!({"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "DC",
        "dcChargingParameters": {"evMaxCurrent": 200, "evMaxVoltage": 800}}});
    assert_eq!(
        h.call("NotifyEVChargingNeeds", needs).await["status"],
        "Rejected"
    );
    let keys: Vec<String> = h
        .reports("charging_limit")
        .await
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["SO@evse1", "SO@evse1", "EMS@evse1"]);
    let station = h.station().await;
    let limits = station["charging_limits"].as_array().unwrap();
    assert_eq!(limits.len(), 1, "{station}");
    assert_eq!(limits[0]["key"], "EMS@evse1");
    assert_eq!(
        station["ev_charging_needs"][0]["body"]["chargingNeeds"]["dcChargingParameters"]
            ["evMaxVoltage"],
        800
    );
    h.stop().await;
    pg(
        &admin,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await;
}
