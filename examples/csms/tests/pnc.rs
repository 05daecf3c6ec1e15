//! Plug & Charge end to end (issue 19) against the CSMS started with
//! `--pnc`: scripted OCPP stations (2.0.1, 1.6) have their certificates
//! signed, checked and renewed (A02/A03); contracts are authorized by their
//! chain and OCSP, refused when revoked, expired, of a foreign MO or of
//! another eMAID (C07, M06); and a car with no contract gets one installed
//! through `Get15118EVCertificate` (M01), then charges by it, over the
//! ISO 15118-2 and -20 machines in memory (the simulator's `iso15118`
//! module).

mod common;

use std::time::Duration;

use base64::Engine;
use common::conformance::{now, Lab, Station};
use csms::pnc::ocsp::{CertId, HttpOcspClient, OcspClient, OcspStatus};
use csms::pnc::PncConfig;
use evproto_iso15118::pki::demo::{self, DemoPki, DemoProvisioning, Role};
use evproto_iso15118::pki::{verify_chain, Cert, LeafUsage, TrustStore, VerifyingKey};
use evproto_iso15118::session::{
    Contract, ContractStatus, EndReason, EvPnc, EvccConfig, Protocol, Provisioning, SeccConfig,
    SeccPnc,
};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_sim::iso15118::{run_session, Backend, Iso15118Sim, Plan};
use serde_json::{json, Value};

fn unix_now() -> u64 {
    chrono::Utc::now().timestamp() as u64
}

fn pem_chain(certs: &[&[u8]]) -> String {
    certs.iter().map(|c| csms::pnc::ca::pem(c)).collect()
}

/// A demo PKI's contract chain: the leaf and its two MO sub-CAs.
fn contract_chain(p: &DemoPki) -> String {
    let subs = p.contract_sub_cas();
    pem_chain(&[p.contract.cert.der(), &subs[0], &subs[1]])
}

fn certs(v: &Value) -> Vec<Cert> {
    Cert::from_pem_chain(v.as_str().expect("PEM").as_bytes()).expect("certificates")
}

/// The MO roots the CSMS trusts (`GET /api/pnc`'s `trusted_mo_roots`).
fn trusted_mo_roots(overview: &Value) -> Vec<Cert> {
    overview["trusted_mo_roots"]
        .as_array()
        .expect("trusted_mo_roots")
        .iter()
        .flat_map(certs)
        .collect()
}

/// The first TriggerMessage for `message` (others, from the renewal
/// worker, are skipped).
async fn trigger(st: &mut Station, message: &str) -> Value {
    loop {
        let t = st.received("TriggerMessage").await;
        if t["requestedMessage"] == message {
            return t;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a02_a03_station_certificates_signed_checked_and_renewed() {
    // every certificate is due for renewal as soon as it is signed
    let lab = Lab::start_with("pnc-sign", |c| {
        c.pnc = Some(PncConfig {
            certificate_lifetime: Duration::from_secs(86_400),
            renew_before: Duration::from_secs(2 * 86_400),
            renew_check: Duration::from_millis(200),
            ..PncConfig::default()
        })
    })
    .await;
    let overview = lab.ok("GET", "/api/pnc", None).await;
    let v2g_root = TrustStore::new(certs(&overview["v2g_root"]));
    let station_ca = TrustStore::new(certs(&overview["station_ca"]));
    let mut st = Station::connect(&lab, "CS-PNC-1", ProtocolVersion::V201).await;

    // A03: the V2G certificate, signed by the CPO sub-CA 2 under the V2G root
    let key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
    let csr = csms::pnc::csr::request("CN=CS-PNC-1,O=evproto", &key).unwrap();
    let (chain, subs) = v2g_certificate(&mut st, &csr).await;
    assert_eq!(chain.len(), 3, "leaf and the two CPO sub-CAs");
    let verified = verify_chain(
        chain[0].der(),
        &subs,
        &v2g_root,
        unix_now(),
        LeafUsage::Signature,
    )
    .expect("the V2G certificate chains to the V2G root");
    assert_eq!(verified.leaf.common_name().as_deref(), Some("CS-PNC-1"));
    assert_eq!(
        VerifyingKey::of(&chain[0]).unwrap(),
        VerifyingKey::P256(*key.verifying_key()),
        "the certificate is of the CSR's key"
    );

    // renewal: the CSMS asks for a new CSR before the certificate expires
    trigger(&mut st, "SignV2GCertificate").await;
    let key2 = p256::ecdsa::SigningKey::from_slice(&[8; 32]).unwrap();
    let csr2 = csms::pnc::csr::request("CN=CS-PNC-1,O=evproto", &key2).unwrap();
    let a = st
        .ok(
            "SignCertificate",
            json!({"csr": csr2, "certificateType": "V2GCertificate"}),
        )
        .await;
    assert_eq!(a["status"], "Accepted");
    let renewed = certs(&st.received("CertificateSigned").await["certificateChain"]);
    assert_ne!(renewed[0].der(), chain[0].der());
    assert_eq!(
        VerifyingKey::of(&renewed[0]).unwrap(),
        VerifyingKey::P256(*key2.verifying_key())
    );

    // A02: the charging-station certificate, signed by the station CA
    let a = st.ok("SignCertificate", json!({"csr": csr})).await;
    assert_eq!(a["status"], "Accepted");
    let cs = certs(&st.received("CertificateSigned").await["certificateChain"]);
    assert_eq!(cs.len(), 1);
    verify_chain(
        cs[0].der(),
        &[],
        &station_ca,
        unix_now(),
        LeafUsage::Signature,
    )
    .expect("chains to the station CA");
    let kept = lab
        .ok("GET", "/api/stations/CS-PNC-1/certificates/signed", None)
        .await;
    let uses: Vec<&str> = kept
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["certificate_use"].as_str().unwrap())
        .collect();
    assert_eq!(uses, ["ChargingStationCertificate", "V2GCertificate"]);

    // the operator asks for a renewal now
    let r = lab
        .ok(
            "POST",
            "/api/stations/CS-PNC-1/certificates/renew",
            Some(json!({"certificate_type": "ChargingStationCertificate"})),
        )
        .await;
    assert_eq!(r["accepted"], true);
    trigger(&mut st, "SignChargingStationCertificate").await;

    // M05, M03, M04 from the operator API: the built-in V2G root installed,
    // the installed certificates listed, one deleted
    let installed = lab
        .ok(
            "POST",
            "/api/stations/CS-PNC-1/certificates",
            Some(json!({"certificate_type": "V2GRootCertificate"})),
        )
        .await;
    assert_eq!(installed["status"], "Accepted");
    let sent = st.received("InstallCertificate").await;
    assert_eq!(sent["certificateType"], "V2GRootCertificate");
    assert_eq!(sent["certificate"], overview["v2g_root"]);
    let hash = json!({"hashAlgorithm": "SHA256", "issuerNameHash": "aa", "issuerKeyHash": "bb", "serialNumber": "01"});
    st.answer(
        "GetInstalledCertificateIds",
        json!({"status": "Accepted", "certificateHashDataChain": [
            {"certificateType": "V2GRootCertificate", "certificateHashData": hash}]}),
    );
    let ids = lab
        .ok("GET", "/api/stations/CS-PNC-1/certificates", None)
        .await;
    assert_eq!(
        ids["certificateHashDataChain"][0]["certificateHashData"],
        hash
    );
    st.received("GetInstalledCertificateIds").await;
    let deleted = lab
        .ok(
            "POST",
            "/api/stations/CS-PNC-1/certificates/delete",
            Some(json!({"hash_algorithm": "SHA256", "issuer_name_hash": "aa",
                "issuer_key_hash": "bb", "serial_number": "01"})),
        )
        .await;
    assert_eq!(deleted["status"], "Accepted");
    assert_eq!(
        st.received("DeleteCertificate").await["certificateHashData"],
        hash
    );

    // CSRs that break a rule are rejected with the reason, nothing signed
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "CS-PNC-1");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "evproto");
    let p384_csr = params.serialize_request(&p384).unwrap().pem().unwrap();
    // (a P-384 key is for a charging-station certificate only)
    for (bad, use_, why) in [
        (
            csms::pnc::csr::request("CN=CS-OTHER,O=evproto", &key).unwrap(),
            "ChargingStationCertificate",
            "CS-OTHER",
        ),
        (
            csms::pnc::csr::request("CN=CS-PNC-1,O=someone", &key).unwrap(),
            "ChargingStationCertificate",
            "someone",
        ),
        (p384_csr, "V2GCertificate", "secp256r1"),
        ("not a CSR".to_owned(), "ChargingStationCertificate", "PEM"),
    ] {
        let a = st
            .ok(
                "SignCertificate",
                json!({"csr": bad, "certificateType": use_}),
            )
            .await;
        assert_eq!(a["status"], "Rejected", "{why}: {a}");
        assert_eq!(a["statusInfo"]["reasonCode"], "InvalidCSR");
        let info = a["statusInfo"]["additionalInfo"].as_str().unwrap();
        assert!(info.contains(why), "{why}: {info}");
    }
    st.not_received("CertificateSigned").await;
    st.stop().await;

    // 1.6 (security extension): the charge point certificate
    let mut st16 = Station::connect(&lab, "CS-PNC-16", ProtocolVersion::V16).await;
    let key16 = p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap();
    let csr16 = csms::pnc::csr::request("CN=CS-PNC-16,O=evproto", &key16).unwrap();
    let a = st16.ok("SignCertificate", json!({"csr": csr16})).await;
    assert_eq!(a["status"], "Accepted");
    let cs16 = certs(&st16.received("CertificateSigned").await["certificateChain"]);
    verify_chain(
        cs16[0].der(),
        &[],
        &station_ca,
        unix_now(),
        LeafUsage::Signature,
    )
    .unwrap();
    // its V2G certificate through the OCA application note's DataTransfer
    let inner = json!({"csr": csr16, "certificateType": "V2GCertificate"});
    let a = st16
        .ok(
            "DataTransfer",
            json!({"vendorId": "org.openchargealliance.iso15118pnc",
                "messageId": "SignCertificate", "data": inner.to_string()}),
        )
        .await;
    assert_eq!(a["status"], "Accepted");
    let answer: Value = serde_json::from_str(a["data"].as_str().unwrap()).unwrap();
    assert_eq!(answer["status"], "Accepted");
    let dt = st16.received("DataTransfer").await;
    assert_eq!(dt["messageId"], "CertificateSigned");
    let signed: Value = serde_json::from_str(dt["data"].as_str().unwrap()).unwrap();
    let v2g16 = certs(&signed["certificateChain"]);
    assert_eq!(v2g16.len(), 3);
    let subs: Vec<Vec<u8>> = v2g16[1..].iter().map(|c| c.der().to_vec()).collect();
    verify_chain(
        v2g16[0].der(),
        &subs,
        &v2g_root,
        unix_now(),
        LeafUsage::Signature,
    )
    .unwrap();
    // another vendor's DataTransfer is not this
    let a = st16
        .ok(
            "DataTransfer",
            json!({"vendorId": "com.example", "messageId": "SignCertificate"}),
        )
        .await;
    assert_eq!(a["status"], "UnknownVendorId");
    st16.stop().await;
    lab.stop().await;
}

/// A contract's `Authorize` with its chain.
fn by_chain(emaid: &str, chain: &str) -> Value {
    json!({"idToken": {"idToken": emaid, "type": "eMAID"}, "certificate": chain})
}

/// OCPP's OCSP request data of a certificate.
fn hash_data(id: &CertId) -> Value {
    json!({"hashAlgorithm": "SHA256", "issuerNameHash": id.issuer_name_hash,
        "issuerKeyHash": id.issuer_key_hash, "serialNumber": id.serial,
        "responderURL": "http://ocsp.example/"})
}

/// A contract's `Authorize` with its OCSP data only (the station checked the chain).
fn by_hash(emaid: &str, id: &CertId) -> Value {
    json!({"idToken": {"idToken": emaid, "type": "eMAID"}, "iso15118CertificateHashData": [hash_data(id)]})
}

fn answered(a: &Value) -> (&str, &str) {
    (
        a["idTokenInfo"]["status"].as_str().unwrap(),
        a["certificateStatus"].as_str().unwrap_or("-"),
    )
}

/// The decoded `ocspResult` of a GetCertificateStatus answer.
fn ocsp_result(a: &Value) -> Vec<u8> {
    assert_eq!(a["status"], "Accepted", "{a}");
    base64::engine::general_purpose::STANDARD
        .decode(a["ocspResult"].as_str().unwrap())
        .unwrap()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn c07_m06_contracts_by_certificate_and_ocsp() {
    let t = unix_now();
    // a roaming partner's MO, its root configured as trusted
    let partner = DemoPki::generate(
        b"partner mo",
        "NLPRTC000000001",
        t - 86_400,
        t + 86_400 * 3650,
    )
    .unwrap();
    let root = partner.mo_root.cert.der().to_vec();
    let lab = Lab::start_with("pnc-contracts", move |c| {
        c.pnc = Some(PncConfig {
            mo_roots: vec![root],
            ..PncConfig::default()
        })
    })
    .await;
    let st = Station::connect(&lab, "CS-PNC-2", ProtocolVersion::V201).await;
    let subs = partner.contract_sub_cas();
    let chain = contract_chain(&partner);
    let id = CertId::of(partner.contract.cert.der(), partner.mo_sub_ca2.cert.der()).unwrap();
    let emaid = "NL-PRT-C00000000-1";

    // a valid contract: accepted by its chain, and by its OCSP data alone
    let a = st.ok("Authorize", by_chain(emaid, &chain)).await;
    assert_eq!(answered(&a), ("Accepted", "Accepted"), "{a}");
    let a = st.ok("Authorize", by_hash(emaid, &id)).await;
    assert_eq!(answered(&a), ("Accepted", "Accepted"), "{a}");
    // the transaction that follows starts with the eMAID
    let started = json!({"eventType": "Started", "timestamp": now(), "triggerReason": "Authorized",
        "seqNo": 0, "transactionInfo": {"transactionId": "PNC-TX-1", "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1}, "idToken": {"idToken": emaid, "type": "eMAID"},
        "meterValue": [{"timestamp": now(), "sampledValue": [{"value": 0}]}]});
    let e = st.ok("TransactionEvent", started).await;
    assert_eq!(e["idTokenInfo"]["status"], "Accepted", "{e}");
    // M06: the station asks for the OCSP answer to hand to the car
    let good = ocsp_result(
        &st.ok(
            "GetCertificateStatus",
            json!({"ocspRequestData": hash_data(&id)}),
        )
        .await,
    );
    assert_eq!(good[0], 0x30);
    assert!(contains(&good, &[0x80, 0x00]), "certStatus good");

    // revoked at the MO's responder: refused
    revoke(&lab, &id).await;
    let a = st.ok("Authorize", by_chain(emaid, &chain)).await;
    assert_eq!(answered(&a), ("Invalid", "CertificateRevoked"), "{a}");
    let a = st.ok("Authorize", by_hash(emaid, &id)).await;
    assert_eq!(answered(&a), ("Invalid", "CertificateRevoked"), "{a}");
    let revoked = ocsp_result(
        &st.ok(
            "GetCertificateStatus",
            json!({"ocspRequestData": hash_data(&id)}),
        )
        .await,
    );
    // certStatus revoked: [1] with the revocation's GeneralizedTime
    assert!(
        contains(&revoked, &[0xa1, 0x11, 0x18, 0x0f]),
        "certStatus revoked"
    );

    // expired: issued by the partner's MO sub-CA 2 for 2020-2022
    let old_key = demo::derive_key(b"old", "contract");
    let expired = demo::issue(
        "CN=NLPRTC000000002,O=partner,DC=MO",
        &old_key,
        Some(&partner.mo_sub_ca2),
        Role::Signer,
        900,
        1_580_000_000,
        1_640_000_000,
    )
    .unwrap();
    let a = st
        .ok(
            "Authorize",
            by_chain(
                "NLPRTC000000002",
                &pem_chain(&[expired.cert.der(), &subs[0], &subs[1]]),
            ),
        )
        .await;
    assert_eq!(answered(&a), ("Invalid", "CertificateExpired"), "{a}");

    // an MO the CSMS does not trust
    let foreign =
        DemoPki::generate(b"foreign mo", "DEXYZC000000001", t - 86_400, t + 86_400).unwrap();
    let a = st
        .ok(
            "Authorize",
            by_chain("DEXYZC000000001", &contract_chain(&foreign)),
        )
        .await;
    assert_eq!(answered(&a), ("Invalid", "CertChainError"), "{a}");

    // a valid certificate presented for another eMAID
    let fresh =
        DemoPki::generate(b"partner mo", "NLPRTC000000003", t - 86_400, t + 86_400).unwrap();
    let a = st
        .ok(
            "Authorize",
            by_chain("NLPRTC000000099", &contract_chain(&fresh)),
        )
        .await;
    assert_eq!(answered(&a), ("Invalid", "CertChainError"), "{a}");

    // a card is answered as before: no certificate status
    let a = st
        .ok(
            "Authorize",
            json!({"idToken": {"idToken": "CARD-1", "type": "ISO14443"}}),
        )
        .await;
    assert_eq!(answered(&a), ("Unknown", "-"), "{a}");
    st.stop().await;
    lab.stop().await;
}

/// The station in between the car's SECC and the CSMS: its OCPP calls,
/// in 2.0.1 or, for a 1.6 station, inside the OCA application note's
/// `DataTransfer`.
struct StationBackend<'a> {
    st: &'a Station,
    oca: bool,
    /// The last `Get15118EVCertificate` answer.
    last_answer: std::sync::Mutex<Value>,
}

impl<'a> StationBackend<'a> {
    fn new(st: &'a Station, oca: bool) -> Self {
        StationBackend {
            st,
            oca,
            last_answer: std::sync::Mutex::new(Value::Null),
        }
    }
}

impl StationBackend<'_> {
    /// A 2.0.1 request: its answer.
    async fn call(&self, action: &str, payload: Value) -> Value {
        if !self.oca {
            return self.st.ok(action, payload).await;
        }
        let a = self
            .st
            .ok(
                "DataTransfer",
                json!({"vendorId": "org.openchargealliance.iso15118pnc",
                    "messageId": action, "data": payload.to_string()}),
            )
            .await;
        assert_eq!(a["status"], "Accepted", "{action}: {a}");
        serde_json::from_str(a["data"].as_str().unwrap()).unwrap()
    }

    /// `Get15118EVCertificate` of ISO 15118-2 with `action`: the EXI
    /// answer when accepted.
    async fn ev_certificate(&self, action: &str, exi: Vec<u8>) -> Option<Vec<u8>> {
        self.ev_certificate_of("urn:iso:15118:2:2013:MsgDef", action, exi)
            .await
    }

    /// `Get15118EVCertificate` of `schema` with `action`: the EXI answer
    /// when accepted (the answer's JSON kept in `last_answer`).
    async fn ev_certificate_of(&self, schema: &str, action: &str, exi: Vec<u8>) -> Option<Vec<u8>> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let a = self
            .call(
                "Get15118EVCertificate",
                json!({"iso15118SchemaVersion": schema,
                    "action": action, "exiRequest": b64.encode(exi)}),
            )
            .await;
        *self.last_answer.lock().unwrap() = a.clone();
        if a["status"] != "Accepted" {
            return None;
        }
        b64.decode(a["exiResponse"].as_str()?).ok()
    }
}

impl Backend for StationBackend<'_> {
    async fn authorize_card(&mut self) -> bool {
        let a = self
            .call(
                "Authorize",
                json!({"idToken": {"idToken": "CARD-1", "type": "ISO14443"}}),
            )
            .await;
        a["idTokenInfo"]["status"] == "Accepted"
    }

    async fn authorize_contract(&mut self, emaid: &str, chain_pem: String) -> ContractStatus {
        let a = self.call("Authorize", by_chain(emaid, &chain_pem)).await;
        match answered(&a) {
            ("Accepted", "Accepted") => ContractStatus::Accepted,
            (_, "CertificateRevoked") => ContractStatus::Revoked,
            _ => ContractStatus::Rejected,
        }
    }

    async fn install_certificate(&mut self, exi: Vec<u8>) -> Option<Vec<u8>> {
        self.ev_certificate("Install", exi).await
    }

    async fn update_certificate(&mut self, exi: Vec<u8>) -> Option<Vec<u8>> {
        self.ev_certificate("Update", exi).await
    }

    async fn install_certificate_iso20(&mut self, exi: Vec<u8>) -> Option<Vec<u8>> {
        self.ev_certificate_of(ISO20_SCHEMA, "Install", exi).await
    }
}

const ISO20_SCHEMA: &str = "urn:iso:std:iso:15118:-20:CommonMessages";

#[tokio::test(flavor = "multi_thread")]
async fn m01_c07_a_car_gets_a_contract_installed_then_charges_by_it() {
    let lab = Lab::start_with("pnc-install", |c| c.pnc = Some(PncConfig::default())).await;
    let st = Station::connect(&lab, "CS-PNC-3", ProtocolVersion::V201).await;
    car_gets_a_contract_then_charges_by_it(&lab, &st, false).await;
    st.stop().await;
    // 1.6: the same through the OCA application note's DataTransfer
    let st16 = Station::connect(&lab, "CS-PNC-3-16", ProtocolVersion::V16).await;
    car_gets_a_contract_then_charges_by_it(&lab, &st16, true).await;
    st16.stop().await;
    lab.stop().await;
}

/// A car with no contract gets one, charges by it, is refused once it is
/// revoked; `oca`: the station speaks 1.6 with the OCA DataTransfer.
async fn car_gets_a_contract_then_charges_by_it(lab: &Lab, st: &Station, oca: bool) {
    let overview = lab.ok("GET", "/api/pnc", None).await;
    let v2g_roots = TrustStore::new(certs(&overview["v2g_root"]));
    let mo_roots = TrustStore::new(trusted_mo_roots(&overview));
    // the car's maker: its provisioning certificate and key
    let t = unix_now();
    let maker = DemoPki::generate(b"car maker", "DEOEMC000000001", t - 86_400, t + 86_400).unwrap();
    let provisioning = Provisioning::new(
        maker.oem_provisioning.cert.der().to_vec(),
        maker.oem_provisioning.key_bytes(),
    );
    let renewing = |contract, renew_within| {
        let secc = SeccConfig::new(vec![1, 2, 3, 4, 5, 6, 7, 8])
            .with_unix_time(unix_now())
            .with_pnc(Some(SeccPnc::new(mo_roots.clone(), [0x5a; 16])));
        let evcc = EvccConfig::iso2_dc(vec![0x02, 0, 0, 0, 0, 3])
            .with_unix_time(unix_now())
            .with_loop_interval(Duration::from_millis(20))
            .with_pnc(Some(
                EvPnc::new(contract, Some(provisioning.clone()), v2g_roots.clone())
                    .with_renewal(renew_within),
            ));
        (secc, evcc)
    };
    let session = |contract| renewing(contract, None);
    let plan = Plan {
        loops: 3,
        limit: Duration::from_secs(30),
    };
    let mut backend = StationBackend::new(st, oca);

    // no contract: one is installed through the CSMS, then the car is authorized by it
    let (secc, evcc) = session(None);
    let first = run_session(secc, evcc, &plan, &mut backend).await;
    assert!(first.finished(), "{first:?}");
    let names: Vec<&str> = first.requests.iter().map(|(n, _)| n.as_str()).collect();
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(
        pos("CertificateInstallationReq") < pos("PaymentDetailsReq"),
        "{names:?}"
    );
    let installed = first.installed.clone().expect("a contract installed");
    assert!(installed.emaid.starts_with("NLEVPC"), "{}", installed.emaid);
    assert_eq!(first.emaid.as_deref(), Some(installed.emaid.as_str()));
    assert!(first.loops >= 3 && first.energy_wh > 0.0, "{first:?}");

    // plugged in again with it: authorized by its certificate, nothing installed
    let (secc, evcc) = session(Some(installed.clone()));
    let second = run_session(secc, evcc, &plan, &mut backend).await;
    assert!(second.finished(), "{second:?}");
    assert!(!second
        .requests
        .iter()
        .any(|(n, _)| n == "CertificateInstallationReq"));

    // M02: renewed before its end (CertificateUpdate through the CSMS's
    // provider): the same eMAID, a new certificate and key, authorized by it
    let within = Some(PncConfig::default().contract_lifetime.as_secs() + 86_400);
    let (secc, evcc) = renewing(Some(installed.clone()), within);
    let renewal = run_session(secc, evcc, &plan, &mut backend).await;
    assert!(renewal.finished(), "{renewal:?}");
    let names: Vec<&str> = renewal.requests.iter().map(|(n, _)| n.as_str()).collect();
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(
        pos("CertificateUpdateReq") < pos("PaymentDetailsReq"),
        "{names:?}"
    );
    assert!(renewal.renewed, "{renewal:?}");
    let renewed = renewal.installed.clone().expect("a contract renewed");
    assert_eq!(renewed.emaid, installed.emaid);
    assert_ne!(renewed.certificate, installed.certificate);
    assert_ne!(renewed.key, installed.key);
    assert_eq!(renewal.emaid.as_deref(), Some(installed.emaid.as_str()));
    // a contract of another MO is not renewed: the CSMS answers Failed
    let foreign =
        DemoPki::generate(b"another MO", "DEXYZC000000001", t - 86_400, t + 86_400).unwrap();
    let mut mo_roots_too = mo_roots.roots().to_vec();
    mo_roots_too.push(foreign.mo_root.cert.clone());
    let secc = SeccConfig::new(vec![1, 2, 3, 4, 5, 6, 7, 9])
        .with_unix_time(unix_now())
        .with_pnc(Some(SeccPnc::new(
            TrustStore::new(mo_roots_too),
            [0x5b; 16],
        )));
    let (_, evcc) = renewing(
        Some(Contract::new(
            foreign.emaid.clone(),
            foreign.contract.cert.der().to_vec(),
            foreign.contract_sub_cas(),
            foreign.contract.key_bytes(),
        )),
        within,
    );
    let refused = run_session(secc, evcc, &plan, &mut backend).await;
    assert_eq!(
        refused.secc_end,
        Some(EndReason::Failed {
            response_code: "FAILED_NoCertificateAvailable".into()
        }),
        "{refused:?}"
    );
    let installed = renewed;

    // revoked by its MO: the car is told FAILED_CertificateRevoked
    let id = CertId::of(&installed.certificate, &installed.sub_cas[0]).unwrap();
    revoke(lab, &id).await;
    let (secc, evcc) = session(Some(installed));
    let third = run_session(secc, evcc, &plan, &mut backend).await;
    assert_eq!(
        third.secc_end,
        Some(EndReason::Failed {
            response_code: "FAILED_CertificateRevoked".into()
        }),
        "{third:?}"
    );
}

/// M01 and C07 over ISO 15118-20, through 2.0.1, 2.1 and 1.6 (the OCA
/// DataTransfer): a car with no contract and a secp521r1 provisioning
/// certificate gets a -20 contract from the CSMS (under its -20 MO chain,
/// delivered by its -20 CPS, whose V2G root the car trusts), then charges
/// by it; plugged in again it is authorized by it and installs nothing;
/// a car that trusts none of the CSMS's -20 roots gets `Failed` and its
/// SECC tells it `WARNING_NoCertificateAvailable`; revoked, the contract
/// is refused.
#[tokio::test(flavor = "multi_thread")]
async fn m01_c07_an_iso20_car_gets_a_secp521r1_contract_then_charges_by_it() {
    let lab = Lab::start_with("pnc-install-20", |c| c.pnc = Some(PncConfig::default())).await;
    let overview = lab.ok("GET", "/api/pnc", None).await;
    let v2g_roots = TrustStore::new(certs(&overview["iso20_v2g_root"]));
    let iso20_mo_root = certs(&overview["iso20_mo_root"]);
    let mo_roots = TrustStore::new(trusted_mo_roots(&overview));
    assert!(
        mo_roots.roots().contains(&iso20_mo_root[0]),
        "the -20 MO root is trusted"
    );
    let t = unix_now();
    let maker = DemoProvisioning::generate(b"a -20 car maker", t - 86_400, t + 86_400).unwrap();
    let provisioning = Provisioning::new(
        maker.oem_provisioning.cert.der().to_vec(),
        maker.oem_provisioning.key_bytes(),
    );
    let session = |contract, v2g_roots: &TrustStore| {
        let secc = SeccConfig::new(vec![1, 2, 3, 4, 5, 6, 7, 8])
            .with_protocols(vec![Protocol::Iso20Dc])
            .with_unix_time(unix_now())
            .with_pnc(Some(SeccPnc::new(mo_roots.clone(), [0x5a; 16])));
        let evcc = EvccConfig::iso20_dc(vec![0x02, 0, 0, 0, 0, 0x20])
            .with_unix_time(unix_now())
            .with_loop_interval(Duration::from_millis(20))
            .with_pnc(Some(EvPnc::new(
                contract,
                Some(provisioning.clone()),
                v2g_roots.clone(),
            )));
        (secc, evcc)
    };
    let plan = Plan {
        loops: 3,
        limit: Duration::from_secs(30),
    };
    for (version, oca) in [
        (ProtocolVersion::V201, false),
        (ProtocolVersion::V21, false),
        (ProtocolVersion::V16, true),
    ] {
        let st = Station::connect(&lab, &format!("CS-PNC-20-{version:?}"), version).await;
        let mut backend = StationBackend::new(&st, oca);
        let (secc, evcc) = session(None, &v2g_roots);
        let first = run_session(secc, evcc, &plan, &mut backend).await;
        assert!(first.finished(), "{version:?}: {first:?}");
        assert_eq!(first.protocol, Some(Protocol::Iso20Dc));
        let names: Vec<&str> = first.requests.iter().map(|(n, _)| n.as_str()).collect();
        let pos = |n: &str| names.iter().position(|x| *x == n);
        assert!(
            pos("CertificateInstallationReq") < pos("AuthorizationReq")
                && pos("CertificateInstallationReq").is_some(),
            "{version:?}: {names:?}"
        );
        // 2.1 says how many contracts are left: none
        let answer = backend.last_answer.lock().unwrap().clone();
        assert_eq!(answer["status"], "Accepted", "{version:?}: {answer}");
        if version == ProtocolVersion::V21 {
            assert_eq!(answer["remainingContracts"], 0, "{answer}");
        } else {
            assert!(answer.get("remainingContracts").is_none(), "{answer}");
        }
        let installed = first.installed.clone().expect("a contract installed");
        assert!(installed.emaid.starts_with("NLEVPC"), "{}", installed.emaid);
        assert_eq!(installed.key.len(), 66, "a secp521r1 key");
        let leaf = Cert::from_der(&installed.certificate).unwrap();
        assert!(matches!(leaf.public_key(), Ok(VerifyingKey::P521(_))));
        let chain = verify_chain(
            &installed.certificate,
            &installed.sub_cas,
            &TrustStore::new(iso20_mo_root.clone()),
            unix_now(),
            LeafUsage::Signature,
        )
        .unwrap();
        assert_eq!(chain.leaf.common_name(), Some(installed.emaid.clone()));
        assert_eq!(first.emaid.as_deref(), Some(installed.emaid.as_str()));
        assert!(first.loops >= 3 && first.energy_wh > 0.0, "{first:?}");

        // plugged in again with it: authorized by its certificate
        let (secc, evcc) = session(Some(installed.clone()), &v2g_roots);
        let second = run_session(secc, evcc, &plan, &mut backend).await;
        assert!(second.finished(), "{version:?}: {second:?}");
        assert!(!second
            .requests
            .iter()
            .any(|(n, _)| n == "CertificateInstallationReq"));
        assert_eq!(second.emaid.as_deref(), Some(installed.emaid.as_str()));

        // a car that trusts only other V2G roots: the CSMS answers Failed
        let (secc, evcc) = session(None, &TrustStore::new(certs(&overview["v2g_root"])));
        let refused = run_session(secc, evcc, &plan, &mut backend).await;
        assert_eq!(
            refused.secc_end,
            Some(EndReason::Failed {
                response_code: "WARNING_NoCertificateAvailable".into()
            }),
            "{version:?}: {refused:?}"
        );
        let answer = backend.last_answer.lock().unwrap().clone();
        assert_eq!(answer["status"], "Failed", "{answer}");

        // revoked by its MO: the car is told so, the SECC ends refused
        let id = CertId::of(&installed.certificate, &installed.sub_cas[0]).unwrap();
        revoke(&lab, &id).await;
        let (secc, evcc) = session(Some(installed), &v2g_roots);
        let revoked = run_session(secc, evcc, &plan, &mut backend).await;
        assert_eq!(
            revoked.secc_end,
            Some(EndReason::AuthorizationRejected),
            "{version:?}: {revoked:?}"
        );
        assert_eq!(
            revoked.evcc_end,
            Some(EndReason::Failed {
                response_code: "WARNING_CertificateRevoked".into()
            }),
            "{version:?}: {revoked:?}"
        );
        st.stop().await;
    }
    lab.stop().await;
}

/// OCSP over HTTP (RFC 6960 appendix A.1): a PKI's responder (here another
/// CSMS's built-in one, at `POST /ocsp`, its answers valid 1 s) answers
/// clients that trust its root and not others, and `malformedRequest` to
/// nonsense; a CSMS configured with its URL and root
/// (`--pnc-ocsp-url`, `--pnc-ocsp-roots`) authorizes contracts by its
/// answers, forwards them to stations (M06), sees a revocation there once
/// its cached answer expired, and refuses a contract it cannot get an
/// answer for when the responder is down.
#[tokio::test(flavor = "multi_thread")]
async fn c07_m06_contracts_checked_by_a_pkis_ocsp_responder_over_http() {
    let t = unix_now();
    let partner = DemoPki::generate(
        b"partner mo over http",
        "NLPRTC000000002",
        t - 86_400,
        t + 86_400 * 3650,
    )
    .unwrap();
    let pki = Lab::start_with("pnc-ocsp-responder", |c| {
        c.pnc = Some(PncConfig {
            ocsp_validity: Duration::from_secs(1),
            ..PncConfig::default()
        })
    })
    .await;
    let overview = pki.ok("GET", "/api/pnc", None).await;
    let root = Cert::from_pem_chain(overview["v2g_root"].as_str().unwrap().as_bytes()).unwrap();
    let url = format!("http://127.0.0.1:{}/ocsp", pki.http);
    let id = CertId::of(partner.contract.cert.der(), partner.mo_sub_ca2.cert.der()).unwrap();

    // a client that trusts the PKI's root gets its signed answer
    let client = HttpOcspClient::new(&url, TrustStore::new(root.clone())).unwrap();
    let answer = client.check(&id, unix_now()).await.unwrap();
    assert_eq!(answer.status, OcspStatus::Good);
    assert!(answer.next_update > answer.this_update);
    // one that trusts another root does not take it
    let wary =
        HttpOcspClient::new(&url, TrustStore::new(vec![partner.mo_root.cert.clone()])).unwrap();
    let e = wary.check(&id, unix_now()).await.unwrap_err();
    assert!(e.to_string().contains("not trusted"), "{e}");
    // nonsense gets malformedRequest
    let r = reqwest::Client::new()
        .post(&url)
        .body("nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/ocsp-response");
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        [0x30, 0x03, 0x0a, 0x01, 0x01]
    );

    // a CSMS that asks the PKI's responder
    let (mo_root, ocsp_root) = (partner.mo_root.cert.der().to_vec(), root[0].der().to_vec());
    let lab = Lab::start_with("pnc-ocsp-client", move |c| {
        c.pnc = Some(PncConfig {
            mo_roots: vec![mo_root],
            ocsp_url: Some(url),
            ocsp_roots: vec![ocsp_root],
            ..PncConfig::default()
        })
    })
    .await;
    let st = Station::connect(&lab, "CS-PNC-HTTP", ProtocolVersion::V201).await;
    let emaid = "NL-PRT-C00000000-2";
    let a = st.ok("Authorize", by_hash(emaid, &id)).await;
    assert_eq!(answered(&a), ("Accepted", "Accepted"), "{a}");
    let a = st
        .ok("Authorize", by_chain(emaid, &contract_chain(&partner)))
        .await;
    assert_eq!(answered(&a), ("Accepted", "Accepted"), "{a}");
    // M06: the PKI's answer, forwarded as it was signed
    let forwarded = ocsp_result(
        &st.ok(
            "GetCertificateStatus",
            json!({"ocspRequestData": hash_data(&id)}),
        )
        .await,
    );
    let e = decode_or_err(&forwarded, &id, &root);
    assert_eq!(e, Ok(OcspStatus::Good));
    // revoked at the PKI: refused once the cached answer expired
    revoke(&pki, &id).await;
    let since = std::time::Instant::now();
    loop {
        let a = st.ok("Authorize", by_hash(emaid, &id)).await;
        if answered(&a) == ("Invalid", "CertificateRevoked") {
            break;
        }
        assert_eq!(answered(&a), ("Accepted", "Accepted"), "{a}");
        assert!(since.elapsed() < Duration::from_secs(15), "still {a}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // the responder down: a contract without an answer is refused
    pki.stop().await;
    let unseen = CertId {
        serial: "4242".into(),
        ..id.clone()
    };
    let a = st.ok("Authorize", by_hash(emaid, &unseen)).await;
    assert_eq!(answered(&a), ("Invalid", "CertChainError"), "{a}");
    st.stop().await;
    lab.stop().await;
}

/// The status a forwarded OCSP response says, checked against `root`.
fn decode_or_err(der: &[u8], id: &CertId, root: &[Cert]) -> Result<OcspStatus, String> {
    csms::pnc::ocsp::decode_response(der, id, &TrustStore::new(root.to_vec()), unix_now())
        .map(|a| a.status)
        .map_err(|e| e.to_string())
}

/// Revokes `id` at `lab`'s built-in responder.
async fn revoke(lab: &Lab, id: &CertId) {
    let (status, v) = lab
        .api(
            "POST",
            "/api/pnc/revocations",
            Some(
                json!({"hash_algorithm": "SHA256", "issuer_name_hash": id.issuer_name_hash,
                "issuer_key_hash": id.issuer_key_hash, "serial_number": id.serial}),
            ),
        )
        .await;
    assert_eq!(status, 204, "{v}");
}

/// M03, M04, M05 and the V2G certificate's renewal (A03) for a 1.6 station,
/// by the OCA application note: the 2.0.1 request inside a `DataTransfer`
/// (vendorId `org.openchargealliance.iso15118pnc`, messageId the action),
/// its answer read from the answer's `data`; the station's CSMS root by the
/// security extensions' own InstallCertificate; a station that does not
/// speak the note is a 502 with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn m03_m04_m05_a03_a_16_stations_certificates_through_the_oca_data_transfer() {
    let lab = Lab::start_with("pnc-oca-api", |c| c.pnc = Some(PncConfig::default())).await;
    let overview = lab.ok("GET", "/api/pnc", None).await;
    let mut st = Station::connect(&lab, "CS-PNC-OCA", ProtocolVersion::V16).await;
    let path = format!("/api/stations/{}/certificates", st.id);
    let inside = |answer: Value| json!({"status": "Accepted", "data": answer.to_string()});
    // the 2.0.1 request a DataTransfer carried, checked to be the note's
    async fn carried(st: &mut Station, action: &str) -> Value {
        let sent = st.received("DataTransfer").await;
        assert_eq!(
            sent["vendorId"], "org.openchargealliance.iso15118pnc",
            "{sent}"
        );
        assert_eq!(sent["messageId"], action, "{sent}");
        serde_json::from_str(sent["data"].as_str().unwrap()).unwrap()
    }

    // M05: the built-in V2G root
    st.answer("DataTransfer", inside(json!({"status": "Accepted"})));
    let r = lab
        .ok(
            "POST",
            &path,
            Some(json!({"certificate_type": "V2GRootCertificate"})),
        )
        .await;
    assert_eq!(r["status"], "Accepted", "{r}");
    let sent = carried(&mut st, "InstallCertificate").await;
    assert_eq!(sent["certificateType"], "V2GRootCertificate");
    assert_eq!(sent["certificate"], overview["v2g_root"]);
    // M03: the installed certificates
    let hash = json!({"hashAlgorithm": "SHA256", "issuerNameHash": "aa", "issuerKeyHash": "bb", "serialNumber": "01"});
    st.answer(
        "DataTransfer",
        inside(json!({"status": "Accepted", "certificateHashDataChain": [
            {"certificateType": "V2GRootCertificate", "certificateHashData": hash}]})),
    );
    let ids = lab.ok("GET", &path, None).await;
    assert_eq!(
        ids["certificateHashDataChain"][0]["certificateHashData"], hash,
        "{ids}"
    );
    carried(&mut st, "GetInstalledCertificateIds").await;
    // M04: one deleted
    st.answer("DataTransfer", inside(json!({"status": "Accepted"})));
    let deleted = lab
        .ok(
            "POST",
            &format!("{path}/delete"),
            Some(json!({"hash_algorithm": "SHA256", "issuer_name_hash": "aa",
                "issuer_key_hash": "bb", "serial_number": "01"})),
        )
        .await;
    assert_eq!(deleted["status"], "Accepted", "{deleted}");
    assert_eq!(
        carried(&mut st, "DeleteCertificate").await["certificateHashData"],
        hash
    );
    // A03: the V2G certificate renewed now, by TriggerMessage inside
    st.answer("DataTransfer", inside(json!({"status": "Accepted"})));
    let r = lab
        .ok(
            "POST",
            &format!("{path}/renew"),
            Some(json!({"certificate_type": "V2GCertificate"})),
        )
        .await;
    assert_eq!(r["accepted"], true, "{r}");
    assert_eq!(
        carried(&mut st, "TriggerMessage").await["requestedMessage"],
        "SignV2GCertificate"
    );
    // the CSMS root: the security extensions' own InstallCertificate
    st.answer("InstallCertificate", json!({"status": "Accepted"}));
    let r = lab
        .ok(
            "POST",
            &path,
            Some(json!({"certificate_type": "CSMSRootCertificate", "certificate": overview["station_ca"]})),
        )
        .await;
    assert_eq!(r["status"], "Accepted", "{r}");
    let sent = st.received("InstallCertificate").await;
    assert_eq!(sent["certificateType"], "CentralSystemRootCertificate");
    // a station without the note: 502 with the reason
    st.answer("DataTransfer", json!({"status": "UnknownVendorId"}));
    let (status, v) = lab.api("GET", &path, None).await;
    assert_eq!(status, 502, "{v}");
    assert!(v.to_string().contains("UnknownVendorId"), "{v}");
    // an answer that is not the action's: 502
    st.answer("DataTransfer", inside(json!({"nonsense": true})));
    let (status, v) = lab.api("GET", &path, None).await;
    assert_eq!(status, 502, "{v}");
    st.stop().await;
    lab.stop().await;
}

/// The simulator's ISO 15118 cars (`evproto simulate --iso15118`) at 2.0.1
/// and 1.6 stations: each plug-in holds an ISO 15118-2 session; Plug &
/// Charge cars without a contract get one installed through the CSMS
/// (Get15118EVCertificate; 1.6 inside the OCA DataTransfer), are then
/// authorized by it (Authorize with the chain, checked and asked of OCSP)
/// and charge under their eMAID; EIM cars by the driver's card. Every
/// transaction the simulator ended is a completed session of the CSMS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_cars_get_contracts_installed_and_charge_by_them() {
    let lab = Lab::start_with("pnc-simulated", |c| c.pnc = Some(PncConfig::default())).await;
    lab.token("SIM-CARD-1", "Accepted", None).await;
    let overview = lab.ok("GET", "/api/pnc", None).await;
    let mut roots = certs(&overview["v2g_root"]);
    // the -20 cars check the -20 CPS's installations against it
    roots.extend(certs(&overview["iso20_v2g_root"]));
    roots.extend(trusted_mo_roots(&overview));
    let config = evproto_sim::SimConfig {
        url: format!("ws://127.0.0.1:{}/ocpp/", lab.ocpp),
        stations: 4,
        versions: vec![ProtocolVersion::V201, ProtocolVersion::V16],
        connectors: (1, 1),
        duration: Duration::from_secs(25),
        ramp_per_s: 10.0,
        prefix: "PNC-SIM-".into(),
        behaviour: evproto_sim::model::Behaviour {
            idle_ms: (300, 1_000),
            session_ms: (2_000, 4_000),
            meter_interval_ms: 1_000,
            fault_per_s: 0.0,
            disconnect_per_s: 0.0,
            tokens: vec!["SIM-CARD-1".into()],
            ..evproto_sim::model::Behaviour::default()
        },
        iso15118: Some(Iso15118Sim {
            pnc_share: 0.7,
            roots: roots.iter().map(|c| c.der().to_vec()).collect(),
            // every car that has a contract renews it (M02) before it charges
            renew_within: Some(
                PncConfig::default().contract_lifetime + Duration::from_secs(86_400),
            ),
        }),
        ..evproto_sim::SimConfig::default()
    };
    let report = evproto_sim::run(config, None).await.unwrap();
    eprintln!("{}", report.to_json());
    assert_eq!(report.error_count(), 0, "{}", report.to_json());
    assert!(report.iso15118_sessions >= 4, "{}", report.to_json());
    // no site limit, no profile: the SECC offers the EVSE's maximum
    assert_eq!(report.iso15118_scheduled, 0, "{}", report.to_json());
    assert!(report.contracts_installed >= 1, "{}", report.to_json());
    assert!(report.contracts_renewed >= 1, "{}", report.to_json());
    assert!(
        report.pnc_authorized > report.contracts_installed,
        "cars came back with their contracts: {}",
        report.to_json()
    );
    assert_eq!(report.iso15118_refused, 0, "{}", report.to_json());
    // the last ends may still be on their way
    let since = std::time::Instant::now();
    let sessions = loop {
        let sessions = lab.ok("GET", "/api/sessions?limit=500", None).await;
        let completed = sessions["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["status"] == "Completed")
            .count();
        if completed as u64 >= report.sessions_completed {
            break sessions;
        }
        assert!(
            since.elapsed() < Duration::from_secs(15),
            "{completed} completed, the simulator ended {}: {sessions}",
            report.sessions_completed
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let items = sessions["items"].as_array().unwrap();
    // 2.0.1 (PNC-SIM-0) and 1.6 (PNC-SIM-1): sessions by a contract that charged
    for version_station in ["PNC-SIM-0", "PNC-SIM-1"] {
        let charged_by_contract = items
            .iter()
            .filter(|s| s["station_id"] == version_station)
            .filter(|s| {
                s["id_token"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("NLEVPC"))
            })
            .filter(|s| s["stop_reason"] != "DeAuthorized")
            .filter(|s| s["energy_wh"].as_str().and_then(|e| e.parse::<f64>().ok()) > Some(0.0))
            .count();
        assert!(
            charged_by_contract >= 1,
            "{version_station}: no session charged by a contract: {sessions}"
        );
    }
    lab.stop().await;
}

/// A11–A14 with the operator's own CAs (`--pnc-station-ca`, `--pnc-cpo-ca`,
/// each with its key): a station's V2G certificate is signed by the
/// operator's CPO sub-CA 2 and chains to the operator's V2G root (not the
/// built-in one), its charging-station certificate by the operator's
/// station CA, sent with that CA; a key that is not the CA's, and a
/// certificate that is no CA, are refused at start.
#[tokio::test(flavor = "multi_thread")]
async fn a02_a03_station_certificates_signed_by_the_operators_own_cas() {
    use csms::pnc::ca::{pem, ConfiguredCa};
    let t = unix_now();
    let operator = DemoPki::generate(
        b"operator pki",
        "NLOPRC000000001",
        t - 86_400,
        t + 86_400 * 3650,
    )
    .unwrap();
    let chain_pem = |certs: &[&Cert]| certs.iter().map(|c| pem(c.der())).collect::<String>();
    let key_pem = |i: &demo::Issued| {
        x509_cert::der::pem::encode_string(
            "PRIVATE KEY",
            x509_cert::der::pem::LineEnding::LF,
            &i.key.to_pkcs8_der().unwrap(),
        )
        .unwrap()
    };
    let (sub2, sub1) = (&operator.cpo_sub_ca2, &operator.cpo_sub_ca1);
    let cpo = ConfiguredCa::from_pem(
        chain_pem(&[&sub2.cert, &sub1.cert]).as_bytes(),
        key_pem(sub2).as_bytes(),
    )
    .unwrap();
    let station = ConfiguredCa::from_pem(
        chain_pem(&[&sub1.cert]).as_bytes(),
        key_pem(sub1).as_bytes(),
    )
    .unwrap();
    let e = ConfiguredCa::from_pem(
        chain_pem(&[&sub2.cert]).as_bytes(),
        key_pem(sub1).as_bytes(),
    )
    .unwrap_err();
    assert!(e.contains("is not"), "{e}");
    let e = ConfiguredCa::from_pem(
        chain_pem(&[&operator.contract.cert]).as_bytes(),
        key_pem(&operator.contract).as_bytes(),
    )
    .unwrap_err();
    assert!(e.contains("not a CA"), "{e}");
    assert!(ConfiguredCa::from_pem(b"", key_pem(sub1).as_bytes()).is_err());

    let lab = Lab::start_with("pnc-own-cas", move |c| {
        c.pnc = Some(PncConfig {
            station_ca: Some(station),
            cpo_ca: Some(cpo),
            ..PncConfig::default()
        })
    })
    .await;
    let overview = lab.ok("GET", "/api/pnc", None).await;
    assert_eq!(overview["station_ca"], pem(sub1.cert.der()));
    let operators_root = TrustStore::new(vec![operator.v2g_root.cert.clone()]);
    let mut st = Station::connect(&lab, "CS-PNC-OWN", ProtocolVersion::V201).await;
    let key = p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap();
    let csr = csms::pnc::csr::request("CN=CS-PNC-OWN,O=evproto", &key).unwrap();

    // the V2G certificate: the operator's CPO sub-CAs, the operator's V2G root
    let (chain, subs) = v2g_certificate(&mut st, &csr).await;
    assert_eq!(chain.len(), 3, "the leaf and the operator's two sub-CAs");
    verify_chain(
        chain[0].der(),
        &subs,
        &operators_root,
        unix_now(),
        LeafUsage::Signature,
    )
    .expect("chains to the operator's V2G root");
    let builtin = TrustStore::new(certs(&overview["v2g_root"]));
    assert!(verify_chain(
        chain[0].der(),
        &subs,
        &builtin,
        unix_now(),
        LeafUsage::Signature
    )
    .is_err());
    assert_eq!(
        VerifyingKey::of(&chain[0]).unwrap(),
        VerifyingKey::P256(*key.verifying_key())
    );
    // the charging-station certificate: the operator's station CA, sent with it
    let a = st.ok("SignCertificate", json!({"csr": csr})).await;
    assert_eq!(a["status"], "Accepted", "{a}");
    let cs = certs(&st.received("CertificateSigned").await["certificateChain"]);
    assert_eq!(cs.len(), 2, "the leaf and the station CA");
    verify_chain(
        cs[0].der(),
        &[cs[1].der().to_vec()],
        &operators_root,
        unix_now(),
        LeafUsage::Signature,
    )
    .expect("chains through the operator's station CA");
    st.stop().await;
    lab.stop().await;
}

/// The station's V2G certificate for `csr`: SignCertificate accepted, then
/// the chain of the CertificateSigned that follows (and its sub-CAs, DER).
async fn v2g_certificate(st: &mut Station, csr: &str) -> (Vec<Cert>, Vec<Vec<u8>>) {
    let a = st
        .ok(
            "SignCertificate",
            json!({"csr": csr, "certificateType": "V2GCertificate"}),
        )
        .await;
    assert_eq!(a["status"], "Accepted", "{a}");
    let signed = st.received("CertificateSigned").await;
    assert_eq!(signed["certificateType"], "V2GCertificate");
    let chain = certs(&signed["certificateChain"]);
    let subs = chain[1..].iter().map(|c| c.der().to_vec()).collect();
    (chain, subs)
}

/// The roaming partner's eMSP: answers real-time authorizations as the
/// test says (`ALLOWED`, `BLOCKED`, or not at all: the token unknown
/// there) and notes what it was asked, `(uid, type)`.
#[derive(Default)]
struct PartnerEmsp {
    answer: std::sync::Mutex<Option<&'static str>>,
    asked: std::sync::Mutex<Vec<(String, String)>>,
}

#[async_trait::async_trait]
impl evproto_ocpi::server::Handler for PartnerEmsp {
    async fn authorize(
        &self,
        _party: &evproto_ocpi::server::Party,
        uid: &str,
        ty: &str,
        _location: Option<&Value>,
    ) -> Option<Value> {
        self.asked
            .lock()
            .unwrap()
            .push((uid.to_owned(), ty.to_owned()));
        let allowed = (*self.answer.lock().unwrap())?;
        Some(json!({"allowed": allowed, "token": partner_token(uid)}))
    }
}

/// The partner's token for a contract: 2.3.0 type `EMAID`, asked for in
/// real time (whitelist `NEVER`).
fn partner_token(uid: &str) -> Value {
    json!({"country_code": "NL", "party_id": "PRT", "uid": uid, "type": "EMAID", "contract_id": uid,
        "issuer": "partner", "valid": true, "whitelist": "NEVER", "last_updated": "2026-01-01T00:00:00Z"})
}

/// A contract of a roaming partner's eMSP (OCPI 2.3.0, token type
/// `EMAID`): its certificate checked by the CSMS (chain to the partner's
/// MO root, OCSP), the token authorized by the eMSP in real time with its
/// eMAID; the session and the CDR go to the eMSP naming the token as it
/// pushed it. Blocked by the eMSP, or unknown there, the contract is not
/// accepted on its certificate alone.
#[tokio::test(flavor = "multi_thread")]
async fn c07_a_roaming_partners_contract_authorized_by_its_emsp_in_real_time() {
    use evproto_ocpi::client::Client;
    use evproto_ocpi::credentials::{Own, UrlPolicy};
    use evproto_ocpi::server::{Config as OcpiConfig, MemoryStore, Role, Server};
    use std::sync::Arc;

    let t = unix_now();
    let partner = DemoPki::generate(
        b"roaming partner mo",
        "NLPRTC000000001",
        t - 86_400,
        t + 86_400 * 3650,
    )
    .unwrap();
    let root = partner.mo_root.cert.der().to_vec();
    let lab = Lab::start_with("pnc-roaming", move |c| {
        c.pnc = Some(PncConfig {
            mo_roots: vec![root],
            ..PncConfig::default()
        });
        // the eMSP is on loopback over plain http
        c.ocpi_allow_private_urls = true;
        c.outbox_retry_base = Duration::from_millis(100);
    })
    .await;
    let tariff = json!({"currency": "EUR", "elements": [{"price_components": [
        {"type": "ENERGY", "price": 0.30, "vat": 20.0, "step_size": 1}]}]});
    lab.ok("PUT", "/api/tariffs/default", Some(tariff)).await;

    // the partner's eMSP, registered from the operator API
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/ocpi", listener.local_addr().unwrap());
    let mut own = Own::with_role(&format!("{base}/versions"), "NL", "PRT", "EMSP", "partner");
    own.policy = UrlPolicy::lab();
    let store = Arc::new(MemoryStore::new());
    let handler = Arc::new(PartnerEmsp::default());
    let emsp = Server::new(
        OcpiConfig {
            role: Role::Emsp,
            base_url: base.clone(),
            own,
            max_limit: 50,
            token_encoding: evproto_ocpi::auth::TokenEncoding::Lenient,
            trailing_slash: false,
            storage_version: None,
        },
        store.clone(),
        handler.clone(),
        Client::new(UrlPolicy::lab()).unwrap(),
    );
    let router = axum::Router::new().nest("/ocpi", emsp.router());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let token_a = emsp.issue_token_a("csms").await.unwrap();
    let reg = lab
        .ok(
            "POST",
            "/api/ocpi/partners",
            Some(json!({"versions_url": format!("{base}/versions"), "token": token_a})),
        )
        .await;
    assert_eq!(reg["version"], "2.3.0", "{reg}");
    let party = store
        .parties()
        .into_iter()
        .find(|p| p.id == "csms")
        .unwrap();
    let cpo = Client::new(UrlPolicy::lab())
        .unwrap()
        .peer(party.registration.clone().unwrap())
        .from_party("NL", "PRT");
    // the eMSP spells the eMAID with its separators, the car without
    let uid = "NL-PRT-C00000000-1";
    let emaid = "NLPRTC000000001";
    cpo.put("tokens", &["NL", "PRT", uid], &partner_token(uid))
        .await
        .unwrap();

    let st = Station::connect(&lab, "CS-PNC-ROAM", ProtocolVersion::V201).await;
    let chain = contract_chain(&partner);
    let id = CertId::of(partner.contract.cert.der(), partner.mo_sub_ca2.cert.der()).unwrap();

    // the eMSP allows: accepted, asked with the token's uid and type EMAID
    *handler.answer.lock().unwrap() = Some("ALLOWED");
    let a = st.ok("Authorize", by_chain(emaid, &chain)).await;
    assert_eq!(answered(&a), ("Accepted", "Accepted"), "{a}");
    assert_eq!(
        handler.asked.lock().unwrap().last().cloned(),
        Some((uid.to_owned(), "EMAID".to_owned()))
    );
    let ten_min_ago = (chrono::Utc::now() - chrono::Duration::minutes(10))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut started = json!({"eventType": "Started", "timestamp": ten_min_ago, "triggerReason": "Authorized",
        "seqNo": 0, "transactionInfo": {"transactionId": "PNC-ROAM-1", "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1}, "idToken": {"idToken": emaid, "type": "eMAID"},
        "meterValue": [{"timestamp": ten_min_ago, "sampledValue": [{"value": 0,
            "measurand": "Energy.Active.Import.Register"}]}]});
    let e = st.ok("TransactionEvent", started.clone()).await;
    assert_eq!(e["idTokenInfo"]["status"], "Accepted", "{e}");
    let ended = json!({"eventType": "Ended", "timestamp": now(), "triggerReason": "EVCommunicationLost",
        "seqNo": 1, "transactionInfo": {"transactionId": "PNC-ROAM-1", "stoppedReason": "EVDisconnected"},
        "meterValue": [{"timestamp": now(), "sampledValue": [{"value": 10000,
            "measurand": "Energy.Active.Import.Register"}]}]});
    st.ok("TransactionEvent", ended).await;

    // the session and its CDR reach the eMSP, naming its EMAID token
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let cdr = loop {
        let found = {
            use evproto_ocpi::server::Store as _;
            let page = evproto_ocpi::pagination::Page {
                offset: 0,
                limit: 10,
                date_from: None,
                date_to: None,
            };
            store
                .list_objects("cdrs", &[String::new()], &page)
                .await
                .unwrap()
                .0
        };
        if let Some(c) = found.into_iter().next() {
            break c;
        }
        assert!(tokio::time::Instant::now() < deadline, "no CDR pushed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        cdr["cdr_token"],
        json!({"country_code": "NL", "party_id": "PRT", "uid": uid, "type": "EMAID", "contract_id": uid}),
        "{cdr}"
    );
    assert_eq!(cdr["auth_method"], "AUTH_REQUEST", "{cdr}");
    assert_eq!(cdr["total_energy"], json!(10), "{cdr}");
    // 10 kWh × 0.30
    assert_eq!(cdr["total_cost"]["before_taxes"], json!(3), "{cdr}");
    let session = store
        .get_object_sync(
            "sessions",
            &format!("NL/EVP/{}", cdr["session_id"].as_str().unwrap()),
        )
        .expect("the session pushed");
    assert_eq!(session["cdr_token"]["type"], "EMAID", "{session}");

    // blocked by the eMSP: refused though the certificate is good
    *handler.answer.lock().unwrap() = Some("BLOCKED");
    let a = st.ok("Authorize", by_chain(emaid, &chain)).await;
    assert_eq!(answered(&a), ("Blocked", "Accepted"), "{a}");
    // unknown to the eMSP (no answer): not accepted either, by chain,
    // by OCSP data, nor at a transaction's start
    *handler.answer.lock().unwrap() = None;
    let a = st.ok("Authorize", by_chain(emaid, &chain)).await;
    assert_eq!(answered(&a), ("Invalid", "Accepted"), "{a}");
    let a = st.ok("Authorize", by_hash(emaid, &id)).await;
    assert_eq!(answered(&a), ("Invalid", "Accepted"), "{a}");
    started["transactionInfo"]["transactionId"] = json!("PNC-ROAM-2");
    let e = st.ok("TransactionEvent", started).await;
    assert_eq!(e["idTokenInfo"]["status"], "Invalid", "{e}");
    st.stop().await;
    lab.stop().await;
}

/// A02 with OpenSSL's requests: a station's RSA 2048 or P-384 key gets its
/// charging-station certificate (signed by the station CA, of the CSR's
/// key); the V2G certificate takes P-256 only (`Rejected`, `InvalidCSR`,
/// the key named), and an RSA 1024 key is refused for both.
#[tokio::test(flavor = "multi_thread")]
async fn a02_rsa_and_p384_station_keys_by_use() {
    use p256::ecdsa::signature::Verifier;
    use x509_cert::der::{Decode, DecodePem, Encode};
    let lab = Lab::start_with("pnc-keys", |c| c.pnc = Some(PncConfig::default())).await;
    let overview = lab.ok("GET", "/api/pnc", None).await;
    let ca = certs(&overview["station_ca"]).remove(0);
    let ca = x509_cert::Certificate::from_der(ca.der()).unwrap();
    let ca_key = p256::ecdsa::VerifyingKey::from_sec1_bytes(
        ca.tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes(),
    )
    .unwrap();
    // the requests name CN=CS-1, O=evproto
    let mut st = Station::connect(&lab, "CS-1", ProtocolVersion::V201).await;
    let testdata = |name: &str| {
        let path = format!("{}/src/pnc/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).unwrap()
    };
    for name in ["rsa2048.csr.pem", "p384-sha384.csr.pem"] {
        let csr = testdata(name);
        let a = st.ok("SignCertificate", json!({"csr": csr})).await;
        assert_eq!(a["status"], "Accepted", "{name}: {a}");
        let chain = st.received("CertificateSigned").await["certificateChain"].clone();
        let leaf = x509_cert::Certificate::from_der(certs(&chain)[0].der()).unwrap();
        let req = x509_cert::request::CertReq::from_pem(csr.trim()).unwrap();
        assert_eq!(
            leaf.tbs_certificate().subject_public_key_info(),
            &req.info.public_key,
            "{name}: the certificate is of the CSR's key"
        );
        assert_eq!(
            leaf.tbs_certificate().issuer(),
            ca.tbs_certificate().subject()
        );
        let signature =
            p256::ecdsa::Signature::from_der(leaf.signature().as_bytes().unwrap()).unwrap();
        ca_key
            .verify(&leaf.tbs_certificate().to_der().unwrap(), &signature)
            .expect("signed by the station CA");
        // not for the SECC's certificate
        let a = st
            .ok(
                "SignCertificate",
                json!({"csr": csr, "certificateType": "V2GCertificate"}),
            )
            .await;
        assert_eq!(a["status"], "Rejected", "{name}: {a}");
        assert_eq!(a["statusInfo"]["reasonCode"], "InvalidCSR", "{a}");
        assert!(
            a["statusInfo"]["additionalInfo"]
                .as_str()
                .is_some_and(|i| i.contains("secp256r1")),
            "{a}"
        );
    }
    let a = st
        .ok(
            "SignCertificate",
            json!({"csr": testdata("rsa1024.csr.pem")}),
        )
        .await;
    assert_eq!(a["status"], "Rejected", "{a}");
    assert!(
        a["statusInfo"]["additionalInfo"]
            .as_str()
            .is_some_and(|i| i.contains("RSA 1024 bits")),
        "{a}"
    );
    st.stop().await;
    lab.stop().await;
}

/// Interop: a 2.0.1 station on the Python `ocpp` package (its own OCPP
/// schemas check every message both ways) does the certificate messages
/// against the CSMS: SignCertificate and the CertificateSigned that
/// follows, Authorize with a contract by chain and by OCSP data,
/// GetCertificateStatus, Get15118EVCertificate (unreadable: `Failed`), and
/// the operator's InstallCertificate and GetInstalledCertificateIds.
#[tokio::test(flavor = "multi_thread")]
async fn python_ocpp_station_does_the_certificate_messages() {
    use tokio::io::AsyncBufReadExt;
    let python = tokio::task::spawn_blocking(test_support::peers::python)
        .await
        .unwrap();
    let t = unix_now();
    let partner =
        DemoPki::generate(b"python mo", "NLPRTC000000007", t - 86_400, t + 86_400).unwrap();
    let root = partner.mo_root.cert.der().to_vec();
    let lab = Lab::start_with("pnc-python", move |c| {
        c.pnc = Some(PncConfig {
            mo_roots: vec![root],
            ..PncConfig::default()
        })
    })
    .await;
    let dir = std::env::temp_dir().join(format!("pnc-python-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = p256::ecdsa::SigningKey::from_slice(&[9; 32]).unwrap();
    let csr = csms::pnc::csr::request("CN=CS-PY-1,O=evproto", &key).unwrap();
    std::fs::write(dir.join("csr.pem"), csr).unwrap();
    std::fs::write(dir.join("contract.pem"), contract_chain(&partner)).unwrap();
    let id = CertId::of(partner.contract.cert.der(), partner.mo_sub_ca2.cert.der()).unwrap();
    let ocsp = json!({"hash_algorithm": "SHA256", "issuer_name_hash": id.issuer_name_hash,
        "issuer_key_hash": id.issuer_key_hash, "serial_number": id.serial,
        "responder_url": "http://ocsp.example/"});
    let script = format!(
        "{}/../../tests/interop/python/ocpp_pnc_station.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut child = tokio::process::Command::new(python)
        .arg(script)
        .args(["--url", &format!("ws://127.0.0.1:{}/ocpp/", lab.ocpp)])
        .args(["--id", "CS-PY-1", "--emaid", "NLPRTC000000007"])
        .arg("--csr")
        .arg(dir.join("csr.pem"))
        .arg("--contract")
        .arg(dir.join("contract.pem"))
        .args(["--ocsp", &ocsp.to_string()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut events = Vec::new();
    let deadline = Duration::from_secs(90);
    while let Some(line) = tokio::time::timeout(deadline, lines.next_line())
        .await
        .expect("the Python station hangs")
        .unwrap()
    {
        let e: Value = serde_json::from_str(&line).unwrap_or(json!({"raw": line}));
        if e["event"] == "ready" {
            // the operator's calls, through the Python station's schemas
            let path = "/api/stations/CS-PY-1/certificates";
            let r = lab
                .ok(
                    "POST",
                    path,
                    Some(json!({"certificate_type": "V2GRootCertificate"})),
                )
                .await;
            assert_eq!(r["status"], "Accepted", "{r}");
            let ids = lab.ok("GET", path, None).await;
            assert_eq!(
                ids["certificateHashDataChain"][0]["certificateType"], "V2GRootCertificate",
                "{ids}"
            );
        }
        events.push(e);
    }
    let status = tokio::time::timeout(deadline, child.wait())
        .await
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let seen = |name: &str| {
        events
            .iter()
            .find(|e| e["event"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name}: {events:?}"))
    };
    assert!(status.success(), "{events:?}");
    assert_eq!(
        seen("certificate_signed")["certificates"],
        3,
        "leaf and two sub-CAs"
    );
    assert_eq!(seen("authorize")["certificate_status"], "Accepted");
    assert_eq!(seen("get_certificate_status")["ocsp_result"], true);
    assert_eq!(seen("get_15118_ev_certificate")["status"], "Failed");
    assert_eq!(seen("install_certificate")["pem"], true);
    seen("get_installed_certificate_ids");
    seen("done");
    lab.stop().await;
}
