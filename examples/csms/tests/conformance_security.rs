//! Security conformance, per station (the task's A04-A10; OCPP 2.0.1
//! Part 2 A00 security profiles, A01 password update, and the 1.6 security
//! whitepaper): a CSMS started in-process with a plain `ws://` port and a
//! TLS `wss://` port side by side, stations scripted on `ocpp-client`, each
//! handshake's outcome asserted.
//!
//! - A04-A07: the station's registered profile decides: 0 (no password)
//!   and 1 (Basic auth) only on `ws://`, 2 (TLS + Basic auth) and 3 (TLS
//!   client certificate whose CN is the identity) only on `wss://`; any
//!   other way in is refused with 401 at the WebSocket handshake, logged
//!   and raised as an alert with the reason.
//! - A08: what `PUT /api/stations/{id}` accepts (a password under 1 and 2,
//!   a profile the CSMS can serve), the default profile shown, unknown
//!   stations under the server default, a profile change closing the live
//!   connection.
//! - A09, A10: `POST /api/stations/{id}/password` sends the new password
//!   (2.x `SetVariables SecurityCtrlr.BasicAuthPassword`, 1.6
//!   `ChangeConfiguration AuthorizationKey`) and adopts it only when the
//!   station accepts: the old one is refused afterwards; a refusal keeps
//!   the old one (502); a station not connected is 404.
//! - A19-A21 (2.0.1 A05, 1.6 whitepaper): `POST
//!   /api/stations/{id}/security-profile` upgrades a station's profile (2.x
//!   `SetNetworkProfile`, `SetVariables
//!   OCPPCommCtrlr.NetworkConfigurationPriority`, `Reset`; 1.6
//!   `ChangeConfiguration SecurityProfile`); then its old profile is refused
//!   and it connects under the new one; a downgrade is refused (409).

mod common;

use std::sync::Arc;
use std::time::Duration;

use evproto_ocpp_client::{Client, ClientConfig, ConnectFailure, MemoryStore as Queue};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_rpc::{Ctx, Router, Routes};
use evproto_ocpp_types::{v16, v201};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const KEY: &str = "conformance-security-api-key";
const BOOT_201: &str = r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#;
const BOOT_16: &str = r#"{"chargePointVendor":"V","chargePointModel":"M"}"#;
const WAIT: Duration = Duration::from_secs(20);
const PW: &str = "the-station-password-1";

/// A test CA, the CSMS's certificate and client certificates by CN.
struct Pki {
    dir: std::path::PathBuf,
    ca: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new(dir: &std::path::Path) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        std::fs::create_dir_all(dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "conformance test CA");
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        let pki = Pki {
            dir: dir.to_path_buf(),
            ca,
            issuer: Issuer::new(params, key),
        };
        let (cert, key) = pki.leaf(vec!["localhost".into()], "localhost");
        std::fs::write(dir.join("server.pem"), cert.pem() + &pki.ca.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("ca.pem"), pki.ca.pem()).unwrap();
        pki
    }

    fn leaf(&self, sans: Vec<String>, cn: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
        let mut p = rcgen::CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let k = rcgen::KeyPair::generate().unwrap();
        (p.signed_by(&k, &self.issuer).unwrap(), k)
    }

    /// A station's TLS configuration: trusts the CA, presents a client
    /// certificate for `cn` if given.
    fn client(&self, cn: Option<&str>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let b = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        Arc::new(match cn {
            Some(cn) => {
                let (c, k) = self.leaf(Vec::new(), cn);
                let key = rustls::pki_types::PrivateKeyDer::Pkcs8(k.serialize_der().into());
                b.with_client_auth_cert(vec![c.der().clone(), self.ca.der().clone()], key)
                    .unwrap()
            }
            None => b.with_no_client_auth(),
        })
    }
}

struct Csms {
    ws: u16,
    wss: Option<u16>,
    admin: u16,
    pki: Pki,
    running: common::InProcess,
}

/// How a station dials in.
#[derive(Clone, Copy, Debug)]
enum Via {
    Ws,
    Wss,
}

/// What a scripted station is told, and what it answers to a new password.
#[derive(Clone)]
struct Script {
    seen: mpsc::UnboundedSender<String>,
    password_answer: &'static str,
}

fn answer<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid answer")
}

fn routes(version: ProtocolVersion, script: Script) -> Routes {
    match version {
        ProtocolVersion::V16 => Router::station_v16()
            .on::<v16::action::ChangeConfiguration>(
                |ctx: Ctx<Script>, req: v16::ChangeConfigurationRequest| async move {
                    let _ = ctx.state.seen.send(format!(
                        "ChangeConfiguration {}={}",
                        req.key.as_str(),
                        req.value.as_str()
                    ));
                    Ok(answer(json!({"status": ctx.state.password_answer})))
                },
            )
            .with_state(script),
        _ => Router::station_v201()
            .on::<v201::action::SetVariables>(
                |ctx: Ctx<Script>, req: v201::SetVariablesRequest| async move {
                    let d = &req.set_variable_data[0];
                    let _ = ctx.state.seen.send(format!(
                        "SetVariables {}.{}={}",
                        d.component.name.as_str(),
                        d.variable.name.as_str(),
                        d.attribute_value.as_str()
                    ));
                    Ok(answer(json!({"setVariableResult": [{
                        "attributeStatus": ctx.state.password_answer,
                        "component": {"name": d.component.name.as_str()},
                        "variable": {"name": d.variable.name.as_str()}}]})))
                },
            )
            .on::<v201::action::SetNetworkProfile>(
                |ctx: Ctx<Script>, req: v201::SetNetworkProfileRequest| async move {
                    let c = &req.connection_data;
                    let _ = ctx.state.seen.send(format!(
                        "SetNetworkProfile slot {} profile {} {}",
                        req.configuration_slot,
                        c.security_profile,
                        c.ocpp_csms_url.as_str()
                    ));
                    Ok(answer(json!({"status": "Accepted"})))
                },
            )
            .on::<v201::action::Reset>(|ctx: Ctx<Script>, req: v201::ResetRequest| async move {
                let _ = ctx
                    .state
                    .seen
                    .send(format!("Reset {}", req.r#type.as_str()));
                Ok(answer(json!({"status": "Accepted"})))
            })
            .with_state(script),
    }
}

/// A scripted station.
struct Station {
    client: Client,
    seen: mpsc::UnboundedReceiver<String>,
}

impl Station {
    /// Waits until it is connected with its boot accepted.
    async fn accepted(&self, what: &str) {
        self.client.wait_ready(WAIT).await.unwrap_or_else(|e| {
            panic!(
                "{what}: not accepted: {e} ({:?})",
                self.client.last_failure()
            )
        });
    }

    /// Waits until a connection attempt failed; how.
    async fn refused(&self, what: &str) -> ConnectFailure {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(f) = self.client.last_failure() {
                    return f;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{what}: neither connected nor refused"))
    }

    async fn next_seen(&mut self) -> String {
        tokio::time::timeout(WAIT, self.seen.recv())
            .await
            .expect("the CSMS sent something")
            .expect("station running")
    }

    async fn stop(self) {
        self.client.shutdown().await;
    }
}

impl Csms {
    /// Default profile `profile`, unknown identities `unknown`, a `wss://`
    /// port beside the `ws://` one when `two_ports`.
    async fn start(
        test: &str,
        profile: u8,
        unknown: csms::config::UnknownStations,
        two_ports: bool,
    ) -> Csms {
        let dir = common::temp_dir(&format!("conformance-security-{test}"));
        let pki = Pki::new(&dir.join("pki"));
        let config = csms::config::Config {
            security_profile: profile,
            unknown_stations: unknown,
            ocpp_tls_port: two_ports.then_some(0),
            tls_cert: two_ports.then(|| pki.dir.join("server.pem")),
            tls_key: two_ports.then(|| pki.dir.join("server.key")),
            tls_client_ca: two_ports.then(|| pki.dir.join("ca.pem")),
            ..common::lab_config(&dir.join("data"), KEY)
        };
        let running = common::InProcess::start(config).await;
        Csms {
            ws: running.started.ocpp_port,
            wss: running.started.ocpp_tls_port,
            admin: running.started.admin_port,
            pki,
            running,
        }
    }

    /// The layout of A04-A07: default profile 1, ws:// and wss://, unknown
    /// identities refused.
    async fn two_ports(test: &str) -> Csms {
        Csms::start(test, 1, csms::config::UnknownStations::Reject, true).await
    }

    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        common::api(KEY, self.admin, method, path, body).await
    }

    async fn register(&self, id: &str, body: Value) {
        let (status, v) = self
            .api("PUT", &format!("/api/stations/{id}"), Some(body))
            .await;
        assert_eq!(status, 201, "{id}: {v}");
    }

    fn station_with(
        &self,
        id: &str,
        version: ProtocolVersion,
        via: Via,
        password: Option<&str>,
        cert_cn: Option<&str>,
        password_answer: &'static str,
    ) -> Station {
        let url = match via {
            Via::Ws => format!("ws://127.0.0.1:{}/ocpp/", self.ws),
            Via::Wss => format!("wss://localhost:{}/ocpp/", self.wss.expect("a wss:// port")),
        };
        let mut config = ClientConfig::new(url, id, version);
        if let Via::Wss = via {
            config = config.with_tls(self.pki.client(cert_cn));
        }
        if let Some(p) = password {
            config = config.with_password(p);
        }
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let script = Script {
            seen: seen_tx,
            password_answer,
        };
        let boot = match version {
            ProtocolVersion::V16 => BOOT_16,
            _ => BOOT_201,
        };
        Station {
            client: Client::start(config, routes(version, script), boot, Queue::default()),
            seen,
        }
    }

    fn station(
        &self,
        id: &str,
        via: Via,
        password: Option<&str>,
        cert_cn: Option<&str>,
    ) -> Station {
        self.station_with(
            id,
            ProtocolVersion::V201,
            via,
            password,
            cert_cn,
            "Accepted",
        )
    }

    /// The open `refused_connection` alert's reason (refusals are one
    /// alert until cleared).
    async fn refusal_alert(&self) -> String {
        let (_, v) = self.api("GET", "/api/alerts", None).await;
        let items = v["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .find(|a| a["kind"] == "refused_connection")
            .map(|a| a["detail"]["reason"].as_str().unwrap_or("").to_owned())
            .unwrap_or_else(|| panic!("no refused_connection alert: {v}"))
    }

    async fn stop(self) {
        self.running.stop().await;
    }
}

fn http_401(f: &ConnectFailure) -> bool {
    *f == ConnectFailure::Http(401)
}

/// A04: a profile 0 station connects over ws:// without a password, and is
/// refused over wss:// (401), with an alert that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a04_profile_0_station_only_on_plain_websocket() {
    let csms = Csms::two_ports("a04").await;
    assert!(csms.wss.is_some() && csms.wss != Some(csms.ws));
    csms.register("A04", json!({"security_profile": 0})).await;
    let (_, v) = csms.api("GET", "/api/stations/A04", None).await;
    assert_eq!(
        (&v["security_profile"], &v["has_password"]),
        (&json!(0), &json!(false)),
        "{v}"
    );
    let ok = csms.station("A04", Via::Ws, None, None);
    ok.accepted("profile 0 over ws://").await;
    let over_tls = csms.station("A04", Via::Wss, None, None);
    let f = over_tls.refused("profile 0 over wss://").await;
    assert!(http_401(&f), "{f}");
    let reason = csms.refusal_alert().await;
    assert!(
        reason.contains("A04") && reason.contains("security profile 0"),
        "{reason}"
    );
    ok.stop().await;
    over_tls.stop().await;
    csms.stop().await;
}

/// A05: a profile 1 station connects over ws:// with its password only;
/// a wrong or missing password, or its password over wss://, is 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a05_profile_1_station_with_its_password_on_plain_websocket() {
    let csms = Csms::two_ports("a05").await;
    csms.register("A05", json!({"security_profile": 1, "password": PW}))
        .await;
    let ok = csms.station("A05", Via::Ws, Some(PW), None);
    ok.accepted("profile 1, right password").await;
    for (what, via, pw) in [
        ("wrong password", Via::Ws, Some("a-wrong-password-00001")),
        ("no password", Via::Ws, None),
        ("over wss://", Via::Wss, Some(PW)),
    ] {
        let s = csms.station("A05", via, pw, None);
        let f = s.refused(what).await;
        assert!(http_401(&f), "{what}: {f}");
        s.stop().await;
    }
    // the right station stayed connected through the others' refusals
    let (_, v) = csms.api("GET", "/api/stations/A05", None).await;
    assert_eq!(v["connected"], json!(true), "{v}");
    ok.stop().await;
    csms.stop().await;
}

/// A06: a profile 2 station connects over wss:// with its password only;
/// its password over ws:// is refused (401), alert included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a06_profile_2_station_with_its_password_on_tls() {
    let csms = Csms::two_ports("a06").await;
    csms.register("A06", json!({"security_profile": 2, "password": PW}))
        .await;
    let plain = csms.station("A06", Via::Ws, Some(PW), None);
    let f = plain.refused("profile 2 over ws://").await;
    assert!(http_401(&f), "{f}");
    let reason = csms.refusal_alert().await;
    assert!(reason.contains("security profile 2"), "{reason}");
    assert!(reason.contains("TLS"), "{reason}");
    plain.stop().await;
    let ok = csms.station("A06", Via::Wss, Some(PW), None);
    ok.accepted("profile 2 over wss://").await;
    let wrong = csms.station("A06", Via::Wss, Some("a-wrong-password-00001"), None);
    let f = wrong.refused("profile 2, wrong password").await;
    assert!(http_401(&f), "{f}");
    wrong.stop().await;
    ok.stop().await;
    csms.stop().await;
}

/// A07: a profile 3 station connects over wss:// with a client certificate
/// whose CN is its identity; another CN, no certificate, or ws:// is 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a07_profile_3_station_with_its_client_certificate() {
    let csms = Csms::two_ports("a07").await;
    csms.register("A07", json!({"security_profile": 3})).await;
    let ok = csms.station("A07", Via::Wss, None, Some("A07"));
    ok.accepted("profile 3, its certificate").await;
    for (what, via, cn) in [
        ("another CN", Via::Wss, Some("OTHER")),
        ("no certificate", Via::Wss, None),
        ("over ws://", Via::Ws, None),
    ] {
        let s = csms.station("A07", via, None, cn);
        let f = s.refused(what).await;
        assert!(http_401(&f), "{what}: {f}");
        s.stop().await;
    }
    // a profile 1 station with a valid certificate is still not let in over TLS
    csms.register("A07-P1", json!({"security_profile": 1, "password": PW}))
        .await;
    let s = csms.station("A07-P1", Via::Wss, Some(PW), Some("A07-P1"));
    let f = s.refused("profile 1 with a certificate over wss://").await;
    assert!(http_401(&f), "{f}");
    s.stop().await;
    ok.stop().await;
    csms.stop().await;
}

/// A08: the registration rules: a password under profiles 1 and 2, only
/// profiles the CSMS serves, the server's default shown when none is set,
/// unknown stations under the default, and a profile change closing the
/// live connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a08_profiles_at_registration_defaults_and_changes() {
    let csms = Csms::two_ports("a08").await;
    for (body, needle) in [
        (json!({"security_profile": 1}), "password"),
        (json!({"security_profile": 2}), "password"),
        (json!({"security_profile": 4}), "security_profile"),
        (json!({"security_profile": -1}), "invalid JSON"),
        (
            json!({"security_profile": 1, "password": "short"}),
            "password",
        ),
    ] {
        let (status, v) = csms
            .api("PUT", "/api/stations/A08-BAD", Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(
            v["error"].as_str().unwrap_or("").contains(needle),
            "{body}: {v}"
        );
    }
    // the server's default (1) when none is given; it needs a password then
    let (status, _) = csms.api("PUT", "/api/stations/A08", Some(json!({}))).await;
    assert_eq!(status, 400);
    csms.register("A08", json!({"password": PW})).await;
    let (_, v) = csms.api("GET", "/api/stations/A08", None).await;
    assert_eq!(v["security_profile"], json!(1), "{v}");
    // connected under 1; moved to 2, its ws:// connection is closed and refused again
    let plain = csms.station("A08", Via::Ws, Some(PW), None);
    plain.accepted("A08 under the default profile").await;
    let (status, v) = csms
        .api(
            "PUT",
            "/api/stations/A08",
            Some(json!({"security_profile": 2})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["security_profile"], json!(2), "{v}");
    let f = plain.refused("A08 over ws:// after moving to 2").await;
    assert!(http_401(&f), "{f}");
    plain.stop().await;
    let tls = csms.station("A08", Via::Wss, Some(PW), None);
    tls.accepted("A08 over wss:// under 2").await;
    tls.stop().await;
    csms.stop().await;

    // a CSMS serving ws:// only refuses profiles 2 and 3; unknown identities
    // connect under its default (0 here, unknown_stations accept)
    let plain_only =
        Csms::start("a08-plain", 0, csms::config::UnknownStations::Accept, false).await;
    assert_eq!(plain_only.wss, None);
    for p in [2, 3] {
        let (status, v) = plain_only
            .api(
                "PUT",
                "/api/stations/A08-TLS",
                Some(json!({"security_profile": p, "password": PW})),
            )
            .await;
        assert_eq!(status, 400, "{v}");
        assert!(v["error"].as_str().unwrap_or("").contains("TLS"), "{v}");
    }
    let unknown = plain_only.station("A08-UNKNOWN", Via::Ws, None, None);
    unknown
        .accepted("an unknown station under the default profile 0")
        .await;
    let (_, v) = plain_only
        .api("GET", "/api/stations/A08-UNKNOWN", None)
        .await;
    assert_eq!(v["security_profile"], json!(0), "{v}");
    unknown.stop().await;
    plain_only.stop().await;
}

/// A09 (2.0.1 A01): the operator rotates a 2.0.1 station's password: the
/// CSMS sends `SetVariables SecurityCtrlr.BasicAuthPassword`, adopts the
/// new password once the station accepts, closes the connection; the old
/// password is refused afterwards and the new one opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a09_password_rotation_201() {
    let csms = Csms::two_ports("a09").await;
    for (id, via, profile) in [("A09-P1", Via::Ws, 1), ("A09-P2", Via::Wss, 2)] {
        csms.register(id, json!({"security_profile": profile, "password": PW}))
            .await;
        let mut station = csms.station(id, via, Some(PW), None);
        station.accepted("before the rotation").await;
        let (status, v) = csms
            .api("POST", &format!("/api/stations/{id}/password"), None)
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            (&v["station"], &v["outcome"]),
            (&json!(id), &json!("Accepted")),
            "{v}"
        );
        let new = v["password"]
            .as_str()
            .expect("the generated password")
            .to_owned();
        assert_eq!(new.len(), 40, "{new}");
        assert!(new.bytes().all(|b| b.is_ascii_hexdigit()), "{new}");
        assert_eq!(
            station.next_seen().await,
            format!("SetVariables SecurityCtrlr.BasicAuthPassword={new}")
        );
        // the connection is closed; the old password no longer opens one
        let f = station.refused("the old password after the rotation").await;
        assert!(http_401(&f), "{f}");
        station.stop().await;
        let renewed = csms.station(id, via, Some(&new), None);
        renewed.accepted("the new password").await;
        // a password the operator chooses
        let chosen = "the-operator-chose-this1";
        let (status, v) = csms
            .api(
                "POST",
                &format!("/api/stations/{id}/password"),
                Some(json!({"password": chosen})),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            v["password"],
            Value::Null,
            "a chosen password is not echoed: {v}"
        );
        renewed.stop().await;
        let again = csms.station(id, via, Some(chosen), None);
        again.accepted("the chosen password").await;
        again.stop().await;
    }
    csms.stop().await;
}

/// A10 (1.6 security whitepaper): a 1.6 station's password is rotated with
/// `ChangeConfiguration AuthorizationKey`; a station that refuses keeps its
/// old password (502); a station not connected is 404, an unknown one 404,
/// a bad password 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a10_password_rotation_16_and_refusals() {
    let csms = Csms::two_ports("a10").await;
    csms.register("A10", json!({"security_profile": 1, "password": PW}))
        .await;
    let mut station = csms.station_with(
        "A10",
        ProtocolVersion::V16,
        Via::Ws,
        Some(PW),
        None,
        "Accepted",
    );
    station.accepted("1.6 before the rotation").await;
    let chosen = "a-new-16-station-password";
    let (status, v) = csms
        .api(
            "POST",
            "/api/stations/A10/password",
            Some(json!({"password": chosen})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["outcome"], "Accepted", "{v}");
    assert_eq!(
        station.next_seen().await,
        format!("ChangeConfiguration AuthorizationKey={chosen}")
    );
    let f = station.refused("1.6, the old password").await;
    assert!(http_401(&f), "{f}");
    station.stop().await;
    let station = csms.station_with(
        "A10",
        ProtocolVersion::V16,
        Via::Ws,
        Some(chosen),
        None,
        "Accepted",
    );
    station.accepted("1.6, the new password").await;
    station.stop().await;

    // a station that refuses keeps its password, and its connection
    csms.register("A10-NO", json!({"security_profile": 1, "password": PW}))
        .await;
    for version in [ProtocolVersion::V16, ProtocolVersion::V201] {
        let mut refuses = csms.station_with("A10-NO", version, Via::Ws, Some(PW), None, "Rejected");
        refuses.accepted("a station that will refuse").await;
        let (status, v) = csms
            .api("POST", "/api/stations/A10-NO/password", None)
            .await;
        assert_eq!(status, 502, "{v}");
        let error = v["error"].as_str().unwrap_or("");
        assert!(
            error.contains("Rejected") && error.contains("old one"),
            "{v}"
        );
        assert!(refuses.next_seen().await.contains("="));
        let (_, v) = csms.api("GET", "/api/stations/A10-NO", None).await;
        assert_eq!(v["connected"], json!(true), "{v}");
        refuses.stop().await;
        let old = csms.station_with("A10-NO", version, Via::Ws, Some(PW), None, "Rejected");
        old.accepted("the old password still opens").await;
        old.stop().await;
    }
    // not connected, unknown, a password too short
    csms.register("A10-OFF", json!({"security_profile": 1, "password": PW}))
        .await;
    let (status, v) = csms
        .api("POST", "/api/stations/A10-OFF/password", None)
        .await;
    assert_eq!(status, 404, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("not connected"),
        "{v}"
    );
    let (status, _) = csms
        .api("POST", "/api/stations/A10-NONE/password", None)
        .await;
    assert_eq!(status, 404);
    let (status, v) = csms
        .api(
            "POST",
            "/api/stations/A10-OFF/password",
            Some(json!({"password": "short"})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    csms.stop().await;
}

/// A19-A21 (2.0.1 A05): a profile 1 station is upgraded to profile 2 from
/// the operator API; the requests reach it in order, its plain connection
/// is closed and refused from then on, and it connects over TLS with its
/// password; a downgrade or the same profile is 409. 1.6: one
/// `ChangeConfiguration SecurityProfile`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a19_a21_security_profile_upgrade_then_the_old_profile_refused() {
    let csms = Csms::two_ports("a19").await;
    let url = format!("wss://localhost:{}/ocpp/", csms.wss.unwrap());
    for (version, id) in [
        (ProtocolVersion::V201, "A19-201"),
        (ProtocolVersion::V16, "A19-16"),
    ] {
        csms.register(id, json!({"security_profile": 1, "password": PW}))
            .await;
        let mut station = csms.station_with(id, version, Via::Ws, Some(PW), None, "Accepted");
        station.accepted("under profile 1").await;
        let path = format!("/api/stations/{id}/security-profile");
        let (status, v) = csms
            .api("POST", &path, Some(json!({"profile": 1, "url": url})))
            .await;
        assert_eq!(status, 409, "the same profile: {v}");
        let (status, v) = csms
            .api("POST", &path, Some(json!({"profile": 2, "url": url})))
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!((&v["from"], &v["profile"]), (&json!(1), &json!(2)), "{v}");
        if version == ProtocolVersion::V16 {
            assert_eq!(
                station.next_seen().await,
                "ChangeConfiguration SecurityProfile=2"
            );
        } else {
            assert_eq!(
                station.next_seen().await,
                format!("SetNetworkProfile slot 1 profile 2 {url}")
            );
            assert_eq!(
                station.next_seen().await,
                "SetVariables OCPPCommCtrlr.NetworkConfigurationPriority=1"
            );
            assert_eq!(station.next_seen().await, "Reset OnIdle");
            let steps: Vec<_> = v["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (s["action"].clone(), s["status"].clone()))
                .collect();
            assert_eq!(
                steps,
                [
                    (json!("SetNetworkProfile"), json!("Accepted")),
                    (json!("SetVariables"), json!("Accepted")),
                    (json!("Reset"), json!("Accepted"))
                ]
            );
        }
        // the connection under profile 1 is closed; profile 1 is refused from now on
        let f = station.refused("profile 1 after the upgrade").await;
        assert!(http_401(&f), "{f}");
        station.stop().await;
        let upgraded = csms.station_with(id, version, Via::Wss, Some(PW), None, "Accepted");
        upgraded.accepted("under profile 2").await;
        let (_, s) = csms.api("GET", &format!("/api/stations/{id}"), None).await;
        assert_eq!(s["security_profile"], 2, "{s}");
        // no way back down
        let (status, v) = csms
            .api("POST", &path, Some(json!({"profile": 1, "url": url})))
            .await;
        assert_eq!(status, 409, "a downgrade: {v}");
        upgraded.stop().await;
    }
    csms.stop().await;
}
