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
//!
//! Then the demo's eMSP (the roaming step's) gives the CSMS the contract's
//! token (OCPI 2.3.0, type `EMAID`), the car plugs in again and is
//! authorized by its certificate, the station's transaction carries the
//! energy the ISO 15118 loop metered, and the CSMS prices it and sends the
//! CDR to the eMSP (a second step: the `emaid`, `energy_wh`, and the `cdr`
//! as the eMSP received it).

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
/// The second step's name.
const BILLED: &str = "Plug & Charge: plugged in again, priced, the CDR sent to the contract's eMSP";

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

impl Station<'_> {
    /// `Get15118EVCertificate` with `action` and the car's EXI request: the
    /// CSMS's EXI answer when `Accepted`.
    async fn ev_certificate(
        &self,
        action: v201::CertificateActionEnumType,
        exi: Vec<u8>,
    ) -> Option<Vec<u8>> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let req = v201::Get15118EVCertificateRequest {
            custom_data: None,
            iso15118schema_version: "urn:iso:15118:2:2013:MsgDef".parse().ok()?,
            action,
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
        self.ev_certificate(v201::CertificateActionEnumType::Install, exi)
            .await
    }

    async fn update_certificate(&mut self, exi: Vec<u8>) -> Option<Vec<u8>> {
        self.ev_certificate(v201::CertificateActionEnumType::Update, exi)
            .await
    }
}

/// The step: the CSMS (started with Plug & Charge) on `admin` and
/// `ocpp_port`; `emsp`, the demo's eMSP, owns the contract the car gets.
pub(super) async fn story(
    admin: u16,
    key: &str,
    ocpp_port: u16,
    emsp: Option<&super::Emsp>,
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
    let secc = || {
        SeccConfig::new(vec![1, 2, 3, 4, 5, 6, 7, 8])
            .with_unix_time(unix_now())
            .with_pnc(Some(SeccPnc::new(mo_roots.clone(), [0x5a; 16])))
    };
    let evcc = |pnc: EvPnc| {
        EvccConfig::iso2_dc(vec![0x02, 0, 0, 0, 0, 3])
            .with_unix_time(unix_now())
            .with_loop_interval(Duration::from_millis(20))
            .with_pnc(Some(pnc))
    };
    let plan = Plan {
        loops: 3,
        limit: Duration::from_secs(30),
    };
    let first = EvPnc::new(None, Some(provisioning.clone()), v2g_roots.clone());
    let outcome = run_session(secc(), evcc(first), &plan, &mut Station(&station)).await;
    let installed = outcome.installed.clone();
    let emaid = installed.as_ref().map(|c| c.emaid.clone());
    let ok =
        outcome.finished() && emaid.is_some() && outcome.emaid == emaid && outcome.energy_wh > 0.0;
    steps.record(
        "Plug & Charge: a contract installed, then charging by it",
        ok,
        json!({"station": STATION, "emaid": outcome.emaid, "installed": emaid,
            "protocol": outcome.protocol.map(|p| format!("{p:?}")), "loops": outcome.loops,
            "energy_wh": outcome.energy_wh}),
    );
    if let (Some(contract), Some(emsp)) = (installed, emsp) {
        // the eMSP that owns the contract gives the CSMS its token (OCPI
        // 2.3.0, type EMAID); the car plugs in again
        let emaid = contract.emaid.clone();
        let token = json!({"country_code": "DE", "party_id": "EMS", "uid": emaid, "type": "EMAID",
            "contract_id": emaid, "issuer": "Demo eMSP", "valid": true, "whitelist": "ALLOWED",
            "last_updated": crate::store::now()});
        match emsp.cpo.put("tokens", &["DE", "EMS", &emaid], &token).await {
            Ok(_) => {
                let again = EvPnc::new(Some(contract), Some(provisioning), v2g_roots);
                let started_at = chrono::Utc::now();
                let outcome = run_session(secc(), evcc(again), &plan, &mut Station(&station)).await;
                billed(&station, emsp, started_at, &outcome, steps).await?;
            }
            Err(e) => {
                steps.record(
                    BILLED,
                    false,
                    json!({"error": format!("the eMSP's token not pushed: {e}")}),
                );
            }
        }
    }
    station.shutdown().await;
    Ok(())
}

/// A 2.0.1 `TransactionEvent` of the demo's transaction: `Started` with
/// the eMAID and the meter at 0, or `Ended` with the meter at `wh`.
fn tx_event(
    event: v201::TransactionEventEnumType,
    seq_no: i32,
    emaid: &str,
    wh: f64,
    at: chrono::DateTime<chrono::Utc>,
) -> Option<v201::TransactionEventRequest> {
    use v201::TransactionEventEnumType as E;
    let (trigger, context, state, reason) = match event {
        E::Started => (
            v201::TriggerReasonEnumType::Authorized,
            v201::ReadingContextEnumType::TransactionBegin,
            Some(v201::ChargingStateEnumType::Charging),
            None,
        ),
        _ => (
            v201::TriggerReasonEnumType::EVCommunicationLost,
            v201::ReadingContextEnumType::TransactionEnd,
            None,
            Some(v201::ReasonEnumType::EVDisconnected),
        ),
    };
    Some(v201::TransactionEventRequest {
        custom_data: None,
        event_type: event,
        meter_value: Some(vec![v201::MeterValueType {
            custom_data: None,
            sampled_value: vec![v201::SampledValueType {
                custom_data: None,
                value: rust_decimal::Decimal::from_f64_retain(wh)?.round_dp(3),
                context: Some(context),
                measurand: Some(v201::MeasurandEnumType::EnergyActiveImportRegister),
                phase: None,
                location: None,
                signed_meter_value: None,
                unit_of_measure: None,
            }],
            timestamp: at,
        }]),
        timestamp: at,
        trigger_reason: trigger,
        seq_no,
        offline: None,
        number_of_phases_used: None,
        cable_max_current: None,
        reservation_id: None,
        transaction_info: v201::TransactionType {
            custom_data: None,
            transaction_id: "PNC-DEMO-1".parse().ok()?,
            charging_state: state,
            time_spent_charging: None,
            stopped_reason: reason,
            remote_start_id: None,
        },
        evse: Some(v201::EVSEType {
            custom_data: None,
            id: 1,
            connector_id: Some(1),
        }),
        id_token: Some(v201::IdTokenType {
            custom_data: None,
            additional_info: None,
            id_token: emaid.parse().ok()?,
            r#type: v201::IdTokenEnumType::EMAID,
        }),
    })
}

/// The second step: the car plugged in again and was authorized by its
/// certificate, the eMSP confirming the token (`outcome`, from
/// `started_at`); the station's transaction, named by the eMAID, carries
/// the energy the ISO 15118 loop metered; the CSMS prices it and sends
/// the CDR to the eMSP.
async fn billed(
    station: &Client,
    emsp: &super::Emsp,
    started_at: chrono::DateTime<chrono::Utc>,
    outcome: &evproto_sim::iso15118::Outcome,
    steps: &mut Steps,
) -> Result<(), String> {
    use evproto_ocpi::server::Store as _;
    let Some(emaid) = outcome.emaid.clone().filter(|_| outcome.finished()) else {
        steps.record(BILLED, false, json!({"error": "the car was not authorized by its contract", "car": format!("{:?}", outcome.evcc_end)}));
        return Ok(());
    };
    use v201::TransactionEventEnumType as E;
    let ended_at = chrono::Utc::now().max(started_at + chrono::Duration::seconds(1));
    for (event, seq, wh, at) in [
        (E::Started, 0, 0.0, started_at),
        (E::Ended, 1, outcome.energy_wh, ended_at),
    ] {
        let Some(req) = tx_event(event, seq, &emaid, wh, at) else {
            steps.record(
                BILLED,
                false,
                json!({"error": "a TransactionEvent out of bounds"}),
            );
            return Ok(());
        };
        let answer = station.call::<v201::action::TransactionEvent>(&req).await;
        let accepted = answer
            .as_ref()
            .ok()
            .and_then(|a| a.id_token_info.as_ref())
            .map(|i| i.status);
        if event == E::Started && accepted != Some(v201::AuthorizationStatusEnumType::Accepted) {
            steps.record(
                BILLED,
                false,
                json!({"error": "transaction not accepted", "answer": format!("{answer:?}")}),
            );
            return Ok(());
        }
    }
    let page = evproto_ocpi::pagination::Page {
        offset: 0,
        limit: 100,
        date_from: None,
        date_to: None,
    };
    let mut cdr = None;
    for _ in 0..100 {
        let cdrs = emsp
            .store
            .list_objects("cdrs", &["NL/EVP/".into()], &page)
            .await
            .map_err(|e| e.to_string())?
            .0;
        cdr = cdrs
            .into_iter()
            .find(|c| c["cdr_token"]["uid"] == emaid.as_str());
        if cdr.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ok = cdr.as_ref().is_some_and(|c| {
        c["cdr_token"]["type"] == "EMAID"
            && c["total_cost"]["before_taxes"]
                .as_f64()
                .is_some_and(|p| p > 0.0)
    });
    steps.record(
        BILLED,
        ok,
        json!({"emaid": emaid, "energy_wh": outcome.energy_wh, "loops": outcome.loops,
            "cdr": cdr.map(|c| json!({"id": c["id"], "cdr_token": c["cdr_token"], "total_energy": c["total_energy"],
                "total_cost": c["total_cost"]}))}),
    );
    Ok(())
}
