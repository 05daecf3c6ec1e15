//! The generated typed codecs (`iso15118::messages`) against the XSD-driven
//! engine (`iso15118::schema`, itself checked byte for byte against
//! EXIficient): for generated instances of every message of every schema
//! set, header signatures included, many seeds:
//! - the typed decoder reads the engine's bytes, and the typed encoder
//!   writes them back identically;
//! - the typed value serializes to the engine's JSON view, and that JSON
//!   deserializes to the same typed value;
//! - every proper prefix of the bytes fails to decode.

use iso15118::messages::{din, iso2, iso20, iso20_ac, iso20_acdp, iso20_dc, iso20_wpt};
use proptest::prelude::*;
use serde_json::Value;

macro_rules! check_set {
    ($set:expr, $module:ident, $seed:expr) => {{
        let set: &str = $set;
        let schema = iso15118::schema::by_name(set).unwrap();
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
