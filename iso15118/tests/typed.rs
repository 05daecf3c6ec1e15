//! The generated typed codecs (`evproto_iso15118::messages`) against the XSD-driven
//! engine (`evproto_iso15118::schema`, itself checked byte for byte against
//! EXIficient): for generated instances of every message of every schema
//! set, header signatures included, many seeds:
//! - the typed decoder reads the engine's bytes, and the typed encoder
//!   writes them back identically;
//! - the typed value serializes to the engine's JSON view, and that JSON
//!   deserializes to the same typed value;
//! - every proper prefix of the bytes fails to decode.

use evproto_iso15118::messages::{
    din, iso2, iso20, iso20_ac, iso20_acdp, iso20_dc, iso20_wpt, xmldsig,
};
use proptest::prelude::*;
use serde_json::Value;

macro_rules! check_set {
    ($set:expr, $module:ident, $seed:expr) => {{
        let set: &str = $set;
        let schema = evproto_iso15118::schema::by_name(set).unwrap();
        let v2g = schema.roots().contains(&"V2G_Message");
        let mut checked = 0;
        for root in schema.roots() {
            if !(root.ends_with("Req") || root.ends_with("Res")) {
                continue;
            }
            let Some(body) = schema.example(root, $seed) else {
                continue;
            };
            let doc: Value = if v2g {
                let mut d = schema.example("V2G_Message", $seed).unwrap();
                d["V2G_Message"]["Body"] = body;
                d
            } else {
                body
            };
            let bytes = schema.encode(&doc).unwrap();
            let typed = $module::Message::decode(&bytes)
                .unwrap_or_else(|e| panic!("{set}:{root}: typed decode: {e}\n{doc}"));
            let mut again = Vec::new();
            typed
                .encode(&mut again)
                .unwrap_or_else(|e| panic!("{set}:{root}: typed encode: {e}"));
            assert_eq!(again, bytes, "{set}:{root}: typed bytes differ\n{doc}");
            assert_eq!(
                serde_json::to_value(&typed).unwrap(),
                doc,
                "{set}:{root}: JSON view differs"
            );
            let from_json: $module::Message = serde_json::from_value(doc.clone())
                .unwrap_or_else(|e| panic!("{set}:{root}: from JSON: {e}\n{doc}"));
            assert_eq!(from_json, typed, "{set}:{root}");
            for n in 0..bytes.len() {
                assert!(
                    $module::Message::decode(&bytes[..n]).is_err(),
                    "{set}:{root}: prefix {n} of {} decoded",
                    bytes.len()
                );
            }
            checked += 1;
        }
        checked
    }};
}

/// Every element declaration of a set as a fragment: the typed `Fragment`
/// reads the engine's fragment bytes, writes them back identically, and
/// has the same JSON view.
macro_rules! check_fragments {
    ($set:expr, $module:ident, $seed:expr) => {{
        let set: &str = $set;
        let schema = evproto_iso15118::schema::by_name(set).unwrap();
        let mut checked = 0;
        let mut names = schema.fragment_elements();
        names.dedup();
        for el in names {
            let Some(m) = schema.fragment_example(el, $seed) else {
                continue;
            };
            let bytes = schema.encode_fragment(&m).unwrap();
            let typed = $module::Fragment::decode(&bytes)
                .unwrap_or_else(|e| panic!("{set}:{el}: typed decode: {e}\n{m}"));
            let mut again = Vec::new();
            typed.encode(&mut again).unwrap();
            assert_eq!(again, bytes, "{set}:{el}: typed bytes differ\n{m}");
            assert_eq!(serde_json::to_value(&typed).unwrap(), m, "{set}:{el}");
            for n in 0..bytes.len() {
                assert!(
                    $module::Fragment::decode(&bytes[..n]).is_err(),
                    "{set}:{el}: prefix {n}"
                );
            }
            checked += 1;
        }
        checked
    }};
}

#[test]
fn every_fragment_of_every_set() {
    for seed in [3u64, 11, 2024] {
        let n = check_fragments!("din", din, seed)
            + check_fragments!("iso2", iso2, seed)
            + check_fragments!("iso20", iso20, seed)
            + check_fragments!("iso20-ac", iso20_ac, seed)
            + check_fragments!("iso20-dc", iso20_dc, seed)
            + check_fragments!("iso20-wpt", iso20_wpt, seed)
            + check_fragments!("iso20-acdp", iso20_acdp, seed)
            + check_fragments!("xmldsig", xmldsig, seed);
        assert!(n > 1000, "seed {seed}: only {n} fragments");
        eprintln!("seed {seed}: {n} fragments");
    }
}

/// EXIficient's bytes for a -2 AuthorizationReq fragment and a V2G
/// SignedInfo (as in `vectors.rs`), through the typed fragments.
#[test]
fn exificient_fragments_typed() {
    let auth = [
        0x80, 0x04, 0x01, 0x52, 0x51, 0x0c, 0x40, 0x80, 0x00, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30,
        0x38, 0x40, 0x48, 0x50, 0x58, 0x60, 0x68, 0x70, 0x79, 0xe8,
    ];
    let f = iso2::Fragment::decode(&auth).unwrap();
    let iso2::Fragment::AuthorizationReq(req) = &f else {
        panic!("{f:?}")
    };
    assert_eq!(req.id.as_deref(), Some("ID1"));
    assert_eq!(
        req.gen_challenge.as_ref().unwrap().0,
        (0..16).collect::<Vec<u8>>()
    );
    let mut again = Vec::new();
    f.encode(&mut again).unwrap();
    assert_eq!(again, auth);

    let signed_info: xmldsig::Fragment = serde_json::from_value(serde_json::json!({"SignedInfo": {
        "CanonicalizationMethod": {"Algorithm": "http://www.w3.org/TR/canonical-exi/"},
        "SignatureMethod": {"Algorithm": "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"},
        "Reference": [{"URI": "#ID1",
            "Transforms": {"Transform": [{"Algorithm": "http://www.w3.org/TR/canonical-exi/"}]},
            "DigestMethod": {"Algorithm": "http://www.w3.org/2001/04/xmlenc#sha256"},
            "DigestValue": "AAECAwQFBgcICQoLDA0ODwABAgMEBQYHCAkKCwwNDg8="}]}}))
    .unwrap();
    let mut bytes = Vec::new();
    signed_info.encode(&mut bytes).unwrap();
    let dsig = evproto_iso15118::schema::by_name("xmldsig").unwrap();
    assert_eq!(
        bytes,
        dsig.encode_fragment(&serde_json::to_value(&signed_info).unwrap())
            .unwrap()
    );
    assert_eq!(bytes[..4], [0x80, 0x81, 0x12, 0xb4]);
}

fn all(seed: u64) -> usize {
    check_set!("din", din, seed)
        + check_set!("iso2", iso2, seed)
        + check_set!("iso20", iso20, seed)
        + check_set!("iso20-ac", iso20_ac, seed)
        + check_set!("iso20-dc", iso20_dc, seed)
        + check_set!("iso20-wpt", iso20_wpt, seed)
        + check_set!("iso20-acdp", iso20_acdp, seed)
}

#[test]
fn every_message_of_every_set_fixed_seeds() {
    for seed in [1u64, 7, 42, 99, 123] {
        let n = all(seed);
        assert!(n > 100, "seed {seed}: only {n} messages");
        eprintln!("seed {seed}: {n} messages");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn every_message_of_every_set(seed in any::<u64>()) {
        all(seed);
    }
}

/// Bad input to the typed decoders: a wrong header, an event code no
/// grammar has, trailing garbage, hostile lengths: errors, no panic.
#[test]
fn hostile_input_is_an_error() {
    assert!(din::Message::decode(&[]).is_err());
    assert!(din::Message::decode(&[0x81]).is_err());
    assert!(iso2::Message::decode(&[0x80, 0xff, 0xff]).is_err());
    // a SessionSetupReq whose EVCCID claims 2^60 bytes
    let mut huge = vec![
        0x80, 0x9a, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x11, 0xd0,
    ];
    huge.extend([0xff; 9]);
    assert!(din::Message::decode(&huge).is_err());
    // the libcbv2g vector with a byte of garbage after it
    let mut v = vec![
        0x80, 0x9a, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x11, 0xd0, 0x1a, 0x12,
        0x1d, 0xc9, 0x83, 0xcd, 0x60, 0x00,
    ];
    assert!(din::Message::decode(&v).is_ok());
    v.push(0xff);
    assert!(din::Message::decode(&v).is_err());
    // values outside their facets are refused when encoding
    let json = serde_json::json!({"V2G_Message": {"Header": {"SessionID": "00"},
        "Body": {"SessionSetupReq": {"EVCCID": "00112233445566778899"}}}});
    let m: din::Message = serde_json::from_value(json).unwrap();
    assert!(
        m.encode(&mut Vec::new()).is_err(),
        "EVCCID is at most 8 bytes? then refused"
    );
}

/// Length facets: a -20 SessionID is exactly 8 bytes (`xs:length`), a DIN
/// or -2 one at most 8 (real Audi and VW cars send a 1-byte `00`); both
/// codecs refuse what the schema refuses, encoding and decoding.
#[test]
fn length_facets() {
    let din_doc = serde_json::json!({"V2G_Message": {"Header": {"SessionID": "00"},
        "Body": {"SessionSetupReq": {"EVCCID": "010203040506"}}}});
    let din_set = evproto_iso15118::schema::by_name("din").unwrap();
    let bytes = din_set.encode(&din_doc).unwrap();
    let m = din::Message::decode(&bytes).unwrap();
    assert_eq!(serde_json::to_value(&m).unwrap(), din_doc);

    let iso20_set = evproto_iso15118::schema::by_name("iso20").unwrap();
    let ok = serde_json::json!({"SessionSetupReq": {"Header": {"SessionID": "0102030405060708", "TimeStamp": 1},
        "EVCCID": "WMI"}});
    let bytes = iso20_set.encode(&ok).unwrap();
    assert!(iso20::Message::decode(&bytes).is_ok());
    let short = serde_json::json!({"SessionSetupReq": {"Header": {"SessionID": "010203", "TimeStamp": 1},
        "EVCCID": "WMI"}});
    assert!(iso20_set.encode(&short).is_err());
    let typed: iso20::Message = serde_json::from_value(short).unwrap();
    assert!(typed.encode(&mut Vec::new()).is_err());
    // decoding checks the same bounds (the value reader itself)
    let mut w = evproto_iso15118::exi::BitWriter::new();
    evproto_iso15118::grammar::enc_binary(&mut w, &[1, 2, 3], 0, None).unwrap();
    let three = w.finish();
    let mut r = evproto_iso15118::exi::BitReader::new(&three);
    assert!(evproto_iso15118::grammar::dec_binary(&mut r, 8, Some(8)).is_err());
    let mut r = evproto_iso15118::exi::BitReader::new(&three);
    assert_eq!(
        evproto_iso15118::grammar::dec_binary(&mut r, 0, Some(8)).unwrap(),
        [1, 2, 3]
    );
}
