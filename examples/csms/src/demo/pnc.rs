//! The demo's Plug & Charge step: a car with no contract plugs into a
//! 2.0.1 station (`PNC0`); over ISO 15118-2 (the `iso15118` session
//! machines in memory, the simulator's [`evproto_sim::iso15118`]) it asks
//! for a contract, which the station fetches from the CSMS
//! (`Get15118EVCertificate`: the CSMS's built-in contract provider signs
//! one under its MO root); the car installs it, then authorizes with it
//! (`Authorize` with the contract chain, checked by the CSMS against its
//! trusted MO roots and its OCSP responder) and charges. One step reports
//! it; its detail has the `emaid`, the `protocol`, the charge `loops` and
//! the `energy_wh`.

use std::time::Duration;

use base64::Engine;
use evproto_iso15118::pki::demo::DemoPki;
use evproto_iso15118::pki::{Cert, TrustStore};
use evproto_iso15118::session::{
    ContractStatus, EvPnc, EvccConfig, Provisioning, SeccConfig, SeccPnc,
};
use evproto_ocpp_client::{Client, ClientConfig, MemoryStore};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_types::v201;
use evproto_sim::iso15118::{run_session, Backend, Plan};
use serde_json::json;

use super::{api, Steps, PASSWORD};

const STATION: &str = "PNC0";
/// The card the station's own reader would accept (EIM; not used by a
/// Plug & Charge car).
const CARD: &str = "PNC-CARD";

fn unix_now() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default()
}

/// An `Authorize` of `token` (of `kind`), with a contract chain when given
/// (`None`: a value too long for the message).
fn authorize(
    token: &str,
    kind: v201::IdTokenEnumType,
    chain_pem: Option<&str>,
) -> Option<v201::AuthorizeRequest> {
    Some(v201::AuthorizeRequest {
        custom_data: None,
        id_token: v201::IdTokenType {
            custom_data: None,
            additional_info: None,
            id_token: token.parse().ok()?,
            r#type: kind,
        },
        certificate: match chain_pem {
            Some(c) => Some(c.parse().ok()?),
            None => None,
        },
        iso15118certificate_hash_data: None,
    })
}

/// The station between the car's SECC and the CSMS: its typed 2.0.1 calls.
struct Station<'a>(&'a Client);

impl Backend for Station<'_> {
    async fn authorize_card(&mut self) -> bool {
        let Some(req) = authorize(CARD, v201::IdTokenEnumType::ISO14443, None) else {
            return false;
        };
        self.0
            .call::<v201::action::Authorize>(&req)
            .await
            .is_ok_and(|a| a.id_token_info.status == v201::AuthorizationStatusEnumType::Accepted)
    }

    async fn authorize_contract(&mut self, emaid: &str, chain_pem: String) -> ContractStatus {
        let Some(req) = authorize(emaid, v201::IdTokenEnumType::EMAID, Some(&chain_pem)) else {
            return ContractStatus::Rejected;
        };
        match self.0.call::<v201::action::Authorize>(&req).await {
            Ok(a)
                if a.certificate_status
                    == Some(v201::AuthorizeCertificateStatusEnumType::CertificateRevoked) =>
            {
                ContractStatus::Revoked
            }
            Ok(a)
                if a.id_token_info.status == v201::AuthorizationStatusEnumType::Accepted
                    && a.certificate_status
                        == Some(v201::AuthorizeCertificateStatusEnumType::Accepted) =>
            {
                ContractStatus::Accepted
            }
            _ => ContractStatus::Rejected,
        }
    }

    async fn install_certificate(&mut self, exi: Vec<u8>) -> Option<Vec<u8>> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let req = v201::Get15118EVCertificateRequest {
            custom_data: None,
            iso15118schema_version: "urn:iso:15118:2:2013:MsgDef".parse().ok()?,
            action: v201::CertificateActionEnumType::Install,
            exi_request: b64.encode(exi).parse().ok()?,
        };
        let a = self
            .0
            .call::<v201::action::Get15118EVCertificate>(&req)
            .await
            .ok()?;
        if a.status != v201::Iso15118EVCertificateStatusEnumType::Accepted {
            return None;
        }
        b64.decode(a.exi_response.as_str()).ok()
    }
}

/// The step: the CSMS (started with Plug & Charge) on `admin` and
/// `ocpp_port`.
pub(super) async fn story(
    admin: u16,
    key: &str,
    ocpp_port: u16,
    steps: &mut Steps,
) -> Result<(), String> {
    let (s, _) = api(
        admin,
        key,
        "PUT",
        &format!("/api/stations/{STATION}"),
        Some(&json!({"password": PASSWORD})),
    )
    .await?;
    if s != 201 {
        steps.record(
            "Plug & Charge: a contract installed, then charging by it",
            false,
            json!({"station_registered": s}),
        );
        return Ok(());
    }
    // what the CSMS trusts: its V2G root (the car's SECC chain) and its MO roots
    let (_, overview) = api(admin, key, "GET", "/api/pnc", None).await?;
    let pems = |pem: Option<&str>| -> Vec<Cert> {
        pem.and_then(|p| Cert::from_pem_chain(p.as_bytes()).ok())
            .unwrap_or_default()
    };
    let v2g_roots = TrustStore::new(pems(overview["v2g_root"].as_str()));
    let mo_roots = TrustStore::new(
        overview["trusted_mo_roots"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| pems(p.as_str()))
            .collect(),
    );
    // the car's maker: its provisioning certificate and key
    let t = unix_now();
    let maker = DemoPki::generate(b"demo car maker", "DEOEMC000000001", t - 86_400, t + 86_400)
        .map_err(|e| format!("the car maker's PKI: {e}"))?;
    let provisioning = Provisioning::new(
        maker.oem_provisioning.cert.der().to_vec(),
        maker.oem_provisioning.key_bytes(),
    );
    let station = Client::start(
        ClientConfig::new(
            format!("ws://127.0.0.1:{ocpp_port}/ocpp/"),
            STATION,
            ProtocolVersion::V201,
        )
        .with_password(PASSWORD),
        evproto_ocpp_rpc::Router::station_v201().into_routes(),
        r#"{"reason":"PowerUp","chargingStation":{"vendorName":"evproto","model":"demo-pnc"}}"#,
        MemoryStore::default(),
    );
    station
        .wait_ready(Duration::from_secs(20))
        .await
        .map_err(|e| e.to_string())?;
    let secc = SeccConfig::new(vec![1, 2, 3, 4, 5, 6, 7, 8])
        .with_unix_time(unix_now())
        .with_pnc(Some(SeccPnc::new(mo_roots, [0x5a; 16])));
    let evcc = EvccConfig::iso2_dc(vec![0x02, 0, 0, 0, 0, 3])
        .with_unix_time(unix_now())
        .with_loop_interval(Duration::from_millis(20))
        .with_pnc(Some(EvPnc::new(None, Some(provisioning), v2g_roots)));
    let plan = Plan {
        loops: 3,
        limit: Duration::from_secs(30),
    };
    let outcome = run_session(secc, evcc, &plan, &mut Station(&station)).await;
    station.shutdown().await;
    let installed = outcome.installed.as_ref().map(|c| c.emaid.clone());
    let ok = outcome.finished()
        && installed.is_some()
        && outcome.emaid == installed
        && outcome.energy_wh > 0.0;
    steps.record(
        "Plug & Charge: a contract installed, then charging by it",
        ok,
        json!({"station": STATION, "emaid": outcome.emaid, "installed": installed,
            "protocol": outcome.protocol.map(|p| format!("{p:?}")), "loops": outcome.loops,
            "energy_wh": outcome.energy_wh}),
    );
    Ok(())
}
