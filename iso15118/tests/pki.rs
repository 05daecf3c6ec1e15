//! Plug & Charge cryptography: certificate chains of the demo PKI, the
//! relaxed `eMAID` fragment against EXIficient's bytes, and our signatures
//! and contract key encryption checked by another implementation (Python
//! `cryptography` and Josev's `decrypt_priv_key`, in the Josev venv).
#![allow(missing_docs)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use evproto_iso15118::grammar::Base64Binary;
use evproto_iso15118::messages::iso2;
use evproto_iso15118::pki::demo::{derive_key, issue, DemoPki, Role};
use evproto_iso15118::pki::{self, CertError, LeafUsage, SignatureError, TrustStore};
use evproto_iso15118::session::{Contract, ContractProvisioning};

const NOW: u64 = 1_780_000_000;

fn demo() -> &'static DemoPki {
    static P: OnceLock<DemoPki> = OnceLock::new();
    P.get_or_init(|| {
        DemoPki::generate(
            b"pki tests",
            "DEEVPC000000001",
            1_690_000_000,
            1_900_000_000,
        )
        .unwrap()
    })
}

fn mo_roots() -> TrustStore {
    TrustStore::new(vec![demo().mo_root.cert.clone()])
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn every_demo_chain_verifies_against_its_root() {
    let p = demo();
    let v2g = TrustStore::new(vec![p.v2g_root.cert.clone()]);
    let oem = TrustStore::new(vec![p.oem_root.cert.clone()]);
    let sub = |a: &pki::demo::Issued, b: &pki::demo::Issued| {
        vec![a.cert.der().to_vec(), b.cert.der().to_vec()]
    };
    let c = pki::verify_chain(
        p.contract.cert.der(),
        &p.contract_sub_cas(),
        &mo_roots(),
        NOW,
        LeafUsage::Signature,
    )
    .unwrap();
    assert_eq!(c.sub_cas.len(), 2);
    assert_eq!(c.leaf.common_name().as_deref(), Some("DEEVPC000000001"));
    pki::verify_chain(
        p.secc.cert.der(),
        &sub(&p.cpo_sub_ca1, &p.cpo_sub_ca2),
        &v2g,
        NOW,
        LeafUsage::Signature,
    )
    .unwrap();
    pki::verify_chain(
        p.cps.cert.der(),
        &p.cps_sub_cas(),
        &v2g,
        NOW,
        LeafUsage::Signature,
    )
    .unwrap();
    pki::verify_chain(
        p.oem_provisioning.cert.der(),
        &p.oem_sub_cas(),
        &oem,
        NOW,
        LeafUsage::KeyAgreement,
    )
    .unwrap();
    // ISO 15118-2 [V2G2-010]: at most 800 bytes DER
    for (name, i) in p.all() {
        assert!(
            i.cert.der().len() <= 800,
            "{name}: {} bytes",
            i.cert.der().len()
        );
    }
}

#[test]
fn chain_failures_are_typed() {
    let p = demo();
    let subs = p.contract_sub_cas();
    let leaf = p.contract.cert.der();
    let verify = |leaf: &[u8], subs: &[Vec<u8>], at: u64| {
        pki::verify_chain(leaf, subs, &mo_roots(), at, LeafUsage::Signature)
    };
    assert!(matches!(
        verify(leaf, &subs, 1_950_000_000),
        Err(CertError::Expired { .. })
    ));
    assert!(matches!(
        verify(leaf, &subs, 1_600_000_000),
        Err(CertError::NotYetValid { .. })
    ));
    // a foreign PKI whose root has our root's name: its signature fails
    let other =
        DemoPki::generate(b"other", "DEXYZC000000001", 1_690_000_000, 1_900_000_000).unwrap();
    assert!(matches!(
        verify(other.contract.cert.der(), &other.contract_sub_cas(), NOW),
        Err(CertError::BadSignature { .. })
    ));
    // trusted too: two roots of one name (a root renewed with a new key), each chain
    // verifies against the root that signed it, in either order
    for both in [
        vec![p.mo_root.cert.clone(), other.mo_root.cert.clone()],
        vec![other.mo_root.cert.clone(), p.mo_root.cert.clone()],
    ] {
        let both = TrustStore::new(both);
        for (q, root) in [(p, &p.mo_root), (&other, &other.mo_root)] {
            let v = pki::verify_chain(
                q.contract.cert.der(),
                &q.contract_sub_cas(),
                &both,
                NOW,
                LeafUsage::Signature,
            )
            .unwrap();
            assert_eq!(v.root.der(), root.cert.der());
        }
    }
    // a root of another name
    let k = derive_key(b"x", "foreign root");
    let foreign = issue(
        "CN=Foreign Root",
        &k,
        None,
        Role::Root,
        1,
        1_690_000_000,
        1_900_000_000,
    )
    .unwrap();
    let kl = derive_key(b"x", "foreign leaf");
    let fleaf = issue(
        "CN=DEXYZC000000002",
        &kl,
        Some(&foreign),
        Role::Signer,
        2,
        1_690_000_000,
        1_900_000_000,
    )
    .unwrap();
    assert_eq!(
        verify(fleaf.cert.der(), &[], NOW),
        Err(CertError::UnknownRoot {
            issuer: "CN=Foreign Root".into()
        })
    );
    // a missing sub-CA
    assert!(matches!(
        verify(leaf, &subs[..1], NOW),
        Err(CertError::UnknownRoot { .. })
    ));
    // a tampered leaf (one bit of its public key)
    let mut bad = leaf.to_vec();
    let n = bad.len();
    bad[n - 80] ^= 1;
    assert!(matches!(
        verify(&bad, &subs, NOW),
        Err(CertError::BadSignature { .. }
            | CertError::Unsupported { .. }
            | CertError::Malformed(_))
    ));
    // a sub-CA 2 (path length 0) that issued another CA
    let k = derive_key(b"x", "rogue");
    let rogue_ca = issue(
        "CN=Rogue CA",
        &k,
        Some(&p.mo_sub_ca2),
        Role::SubCa(0),
        77,
        1_690_000_000,
        1_900_000_000,
    )
    .unwrap();
    let k2 = derive_key(b"x", "rogue leaf");
    let rogue = issue(
        "CN=DEEVPC000000009",
        &k2,
        Some(&rogue_ca),
        Role::Signer,
        78,
        1_690_000_000,
        1_900_000_000,
    )
    .unwrap();
    let three = vec![
        rogue_ca.cert.der().to_vec(),
        subs[0].clone(),
        subs[1].clone(),
    ];
    assert_eq!(
        verify(rogue.cert.der(), &three, NOW),
        Err(CertError::ChainLength(3))
    );
    let two = vec![rogue_ca.cert.der().to_vec(), subs[0].clone()];
    assert!(matches!(
        verify(rogue.cert.der(), &two, NOW),
        Err(CertError::NotAnIssuer { .. })
    ));
    // a CA certificate as the leaf, and a leaf without keyAgreement as OEM
    assert!(matches!(
        verify(p.mo_sub_ca2.cert.der(), &subs[1..], NOW),
        Err(CertError::KeyUsage { .. })
    ));
    assert!(matches!(
        pki::verify_chain(leaf, &subs, &mo_roots(), NOW, LeafUsage::KeyAgreement),
        Err(CertError::KeyUsage { .. })
    ));
    assert!(matches!(
        pki::Cert::from_der(&[0x30, 0x03, 1, 2, 3]),
        Err(CertError::Malformed(_))
    ));
}

#[test]
fn the_demo_pki_is_deterministic() {
    let a = DemoPki::generate(b"seed", "DEEVPC000000001", 1_690_000_000, 1_900_000_000).unwrap();
    let b = DemoPki::generate(b"seed", "DEEVPC000000001", 1_690_000_000, 1_900_000_000).unwrap();
    for ((n, x), (_, y)) in a.all().iter().zip(b.all().iter()) {
        assert_eq!(x.cert.der(), y.cert.der(), "{n}");
    }
}

/// EXIficient 1.0.7 (the jar of PyPI `iso15118` 0.31.2) encodes the -2
/// fragment `<eMAID Id="id4">DEEVPC000000001</eMAID>` as these bytes: the
/// relaxed element fragment grammar (eMAID has two types in -2).
#[test]
fn the_emaid_fragment_matches_exificient() {
    let set = evproto_iso15118::schema::by_name("iso2").unwrap();
    let json = serde_json::json!({"eMAID": {"Id": "id4", "value": "DEEVPC000000001"}});
    assert_eq!(
        hex(&set.encode_fragment(&json).unwrap()),
        "80ec0202b4b21a4004511151559410cc0c0c0c0c0c0c0c0c7d3d00"
    );
}

/// Runs `script` in the Josev venv's Python with `input` on stdin; its stdout.
fn python(script: &str, input: &str) -> String {
    let py = test_support::peers::python_josev();
    let mut child = Command::new(py)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Our signature (over the EXI SignedInfo fragment, r||s) verifies with
/// Python `cryptography` and the contract certificate as it parses it;
/// Python's signature over the same bytes verifies with ours; Josev's
/// `decrypt_priv_key` recovers the contract key we encrypted for the OEM
/// provisioning key; and `cryptography` verifies the contract certificate's
/// signature with the MO sub-CA 2's key.
#[test]
fn signatures_and_the_contract_key_check_out_with_python_cryptography_and_josev() {
    let p = demo();
    let auth = iso2::AuthorizationReqType {
        id: Some("ID1".into()),
        gen_challenge: Some(Base64Binary(vec![0xc5; 16])),
    };
    let mut element = Vec::new();
    iso2::Fragment::AuthorizationReq(Box::new(auth))
        .encode(&mut element)
        .unwrap();
    let sig = pki::sign(&p.contract.key, &[("ID1", &element)]).unwrap();
    let signed_info = pki::signed_info_bytes(&sig.signed_info).unwrap();
    assert_eq!(
        sig.signed_info.reference[0].digest_value.0,
        pki::sha256(&element)
    );
    let provisioning = ContractProvisioning {
        cps_key: p.cps.key.clone(),
        cps_certificate: p.cps.cert.der().to_vec(),
        cps_sub_cas: p.cps_sub_cas(),
        contract: Contract::new(
            p.emaid.clone(),
            p.contract.cert.der().to_vec(),
            p.contract_sub_cas(),
            p.contract.key_bytes(),
        ),
    };
    let inst = provisioning
        .install(p.oem_provisioning.cert.der(), &[0x42; 32], [0x24; 16])
        .unwrap();
    let input = [
        hex(&signed_info),
        hex(&sig.signature_value.value.0),
        hex(p.contract.cert.der()),
        hex(p.mo_sub_ca2.cert.der()),
        hex(&inst
            .response
            .contract_signature_encrypted_private_key
            .value
            .0),
        hex(&inst.response.d_hpublickey.value.0),
        hex(&p.oem_provisioning.key_bytes()),
    ]
    .join("\n");
    let script = r#"
import sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature, decode_dss_signature
from iso15118.shared.security import decrypt_priv_key
si, sig, leaf, sub2, enc, dh, oem = [bytes.fromhex(l.strip()) for l in sys.stdin.read().split("\n")]
cert = x509.load_der_x509_certificate(leaf)
pub = cert.public_key()
pub.verify(encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")), si, ec.ECDSA(hashes.SHA256()))
print("ours verified")
x509.load_der_x509_certificate(sub2).public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
print("chain verified")
oem_key = ec.derive_private_key(int.from_bytes(oem, "big"), ec.SECP256R1())
dh_pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), dh)
print("contract key", decrypt_priv_key(enc, oem_key, dh_pub).hex())
k = ec.derive_private_key(7, ec.SECP256R1())
r, s = decode_dss_signature(k.sign(si, ec.ECDSA(hashes.SHA256())))
print("theirs", (r.to_bytes(32, "big") + s.to_bytes(32, "big")).hex())
"#;
    let out = python(script, &input);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "ours verified", "{out}");
    assert_eq!(lines[1], "chain verified", "{out}");
    assert_eq!(
        lines[2],
        format!("contract key {}", hex(&p.contract.key_bytes())),
        "{out}"
    );
    let theirs: Vec<u8> = {
        let h = lines[3].strip_prefix("theirs ").unwrap();
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    };
    let mut seven = [0u8; 32];
    seven[31] = 7;
    let key = pki::SigningKey::p256_from_bytes(&seven)
        .unwrap()
        .verifying_key();
    key.verify_raw(&signed_info, &theirs).unwrap();
    let mut flipped = theirs.clone();
    flipped[10] ^= 1;
    assert_eq!(
        key.verify_raw(&signed_info, &flipped),
        Err(SignatureError::Invalid)
    );
}
