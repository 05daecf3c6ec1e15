//! Issue 16, station side, end to end: a CSMS started in-process and
//! stations on `ocpp-client`.
//!
//! - Changing a station's password or deleting it (operator API) closes its
//!   live connection; the old password no longer opens one.
//! - One station cannot grow connectors or reports without bound: ids past
//!   the limits get `PropertyConstraintViolation`, device-model rows past
//!   the cap are dropped with a `report_capped` alert.

mod common;

use std::time::Duration;

use evproto_ocpp_client::{Client, ClientConfig, MemoryStore as Queue};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_rpc::Router;
use serde_json::{json, Value};

const KEY: &str = "station-security-api-key-1";
const BOOT: &str = r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#;

struct Csms {
    ocpp: u16,
    /// The admin port (operator API).
    http: u16,
    running: common::InProcess,
}

impl Csms {
    async fn start(test: &str, profile: u8, limits: csms::ocpp::StationLimits) -> Csms {
        let dir = common::temp_dir(&format!("station-security-{test}"));
        let config = csms::config::Config {
            security_profile: profile,
            station_limits: limits,
            ..common::lab_config(&dir, KEY)
        };
        let running = common::InProcess::start(config).await;
        Csms {
            ocpp: running.started.ocpp_port,
            http: running.started.admin_port,
            running,
        }
    }

    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        common::api(KEY, self.http, method, path, body).await
    }

    fn station(&self, id: &str, password: Option<&str>) -> Client {
        let mut config = ClientConfig::new(
            format!("ws://127.0.0.1:{}/ocpp/", self.ocpp),
            id,
            ProtocolVersion::V201,
        );
        if let Some(p) = password {
            config = config.with_password(p);
        }
        Client::start(
            config,
            Router::station_v201().with_state(()),
            BOOT,
            Queue::default(),
        )
    }

    /// Waits (hang guard: 20 s) until the API shows `id` as not connected.
    async fn wait_disconnected(&self, id: &str) {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let (_, v) = self.api("GET", &format!("/api/stations/{id}"), None).await;
                if v["connected"] != json!(true) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{id} is still connected"));
    }

    async fn stop(self) {
        self.running.stop().await;
    }
}

#[tokio::test]
async fn a_password_change_or_a_deletion_closes_the_live_connection() {
    let csms = Csms::start("closes", 1, Default::default()).await;
    let (first, second) = ("the-first-password-01", "the-second-password-2");
    let path = "/api/stations/SEC-1";
    assert_eq!(
        csms.api("PUT", path, Some(json!({"password": first})))
            .await
            .0,
        201
    );
    let station = csms.station("SEC-1", Some(first));
    station.wait_ready(Duration::from_secs(20)).await.unwrap();
    // a change of location only keeps the connection
    let loc = json!({"location": {"name": "Depot"}});
    assert_eq!(csms.api("PUT", path, Some(loc)).await.0, 200);
    let (_, v) = csms.api("GET", path, None).await;
    assert_eq!(v["connected"], json!(true));
    // a new password closes it, and the old one does not open another
    let body = json!({"password": second});
    assert_eq!(csms.api("PUT", path, Some(body)).await.0, 200);
    csms.wait_disconnected("SEC-1").await;
    station.shutdown().await;
    // the new password opens one; deleting the station closes it
    let station = csms.station("SEC-1", Some(second));
    station.wait_ready(Duration::from_secs(20)).await.unwrap();
    assert_eq!(csms.api("DELETE", path, None).await.0, 204);
    tokio::time::timeout(Duration::from_secs(20), async {
        while station.peer().is_some_and(|p| p.is_connected()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the deleted station's connection was closed");
    station.shutdown().await;
    csms.stop().await;
}

#[tokio::test]
async fn ids_past_the_station_limits_are_refused_and_report_rows_are_capped() {
    let limits = csms::ocpp::StationLimits {
        max_evses: 2,
        max_connectors_per_evse: 2,
        max_device_model_rows: 2,
        ..Default::default()
    };
    let csms = Csms::start("limits", 0, limits).await;
    let station = csms.station("SEC-2", None);
    station.wait_ready(Duration::from_secs(20)).await.unwrap();
    let peer = station.peer().unwrap();
    let status = |evse: i32, connector: i32| {
        json!({"timestamp": "2026-01-01T00:00:00Z", "connectorStatus": "Available",
            "evseId": evse, "connectorId": connector})
        .to_string()
    };
    assert!(peer
        .call_raw("StatusNotification", status(2, 2))
        .await
        .is_ok());
    for (evse, connector) in [(3, 1), (1, 3), (1000, 1)] {
        let e = peer
            .call_raw("StatusNotification", status(evse, connector))
            .await
            .expect_err("past the limits");
        assert!(
            e.to_string().contains("PropertyConstraintViolation"),
            "{evse}/{connector}: {e}"
        );
    }
    // nothing of the refused ones was stored
    let (_, v) = csms.api("GET", "/api/stations/SEC-2", None).await;
    let text = v.to_string();
    assert!(
        !text.contains("\"evse\":3") && !text.contains("\"evse\":1000"),
        "{text}"
    );
    // three variables, two rows allowed: two kept, an alert for the third
    let variable = |name: &str| {
        json!({"component": {"name": "C"}, "variable": {"name": name},
            "variableAttribute": [{"value": "1"}]})
    };
    let report = json!({"requestId": 1, "generatedAt": "2026-01-01T00:00:00Z", "seqNo": 0,
        "tbc": false, "reportData": [variable("A"), variable("B"), variable("X")]});
    peer.call_raw("NotifyReport", report.to_string())
        .await
        .unwrap();
    let (_, dm) = csms
        .api("GET", "/api/stations/SEC-2/device-model", None)
        .await;
    let kept = dm["variables"].as_array().map_or(0, Vec::len);
    assert_eq!(kept, 2, "{dm}");
    let (_, alerts) = csms.api("GET", "/api/alerts", None).await;
    assert!(
        alerts.to_string().contains("report_capped"),
        "an alert when capped: {alerts}"
    );
    // an update of a kept row still goes through at the cap
    let again = json!({"requestId": 2, "generatedAt": "2026-01-01T00:00:00Z", "seqNo": 0,
        "tbc": false, "reportData": [variable("A")]});
    assert!(peer
        .call_raw("NotifyReport", again.to_string())
        .await
        .is_ok());
    station.shutdown().await;
    csms.stop().await;
}
