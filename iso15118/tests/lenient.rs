//! The lenient decoding policy on real frames (issue 14): the public
//! captures of `vectors.rs` with a byte appended, or an integer patched to a
//! value outside its facet. Strict decoding (the default) refuses each with
//! a typed error; lenient decoding reads it, with the exact warning; the
//! XSD-driven engine and the generated typed codecs agree on both.

use evproto_iso15118::exi::ExiError;
use evproto_iso15118::lenient::{Policy, Warning, WarningKind};
use evproto_iso15118::messages::{din, iso2};
use evproto_iso15118::schema::by_name;
use serde_json::{json, Value};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn get_bits(b: &[u8], start: usize, n: usize) -> u32 {
    (start..start + n).fold(0, |v, i| (v << 1) | u32::from(b[i / 8] >> (7 - i % 8) & 1))
}

fn set_bits(b: &mut [u8], start: usize, n: usize, value: u32) {
    for k in 0..n {
        let i = start + k;
        let bit = (value >> (n - 1 - k)) & 1;
        b[i / 8] = (b[i / 8] & !(1 << (7 - i % 8))) | ((bit as u8) << (7 - i % 8));
    }
}

/// The first bit where two encodings of the same layout differ.
fn first_difference(a: &[u8], b: &[u8]) -> usize {
    assert_eq!(a.len(), b.len(), "same layout");
    (0..a.len() * 8)
        .find(|&i| get_bits(a, i, 1) != get_bits(b, i, 1))
        .expect("the encodings differ")
}

/// Real DIN frames (uhi22/pyPLC `DemoExiLog.txt`, and the payload of a
/// V2GTP frame of its `RawExiLog.txt`, as in `vectors.rs`).
const PYPLC_DIN: &[&str] = &[
    "809a022189cbf75b9625a95198",
    "809a022189cbf75b9625a951a00120024100c4",
    "809a022189cbf75b9625a9507191400500c8c82324701900",
    "809a022189cbf75b9625a95151400500c9cc0206401000",
];
/// pyPLC's first logged CurrentDemandReq (V2GTP payload of `RawExiLog.txt`).
const PYPLC_CURRENT_DEMAND: &str =
    "809a0203af96e35a4fb8de50d1401240c0c0b46001810580480c08360100c143340800";
/// EVerest/libcbv2g's -2 SessionSetupRes.
const LIBCBV2G_ISO2: &str =
    "80980214b22ca1afff8d8b51e020451114a9413960a914c4c8ccd0d4a8c412d71bd3c0c0";

/// A byte after the end of a real DIN document: strict refuses it with
/// `ExiError::Trailing(1)`, lenient reads the document with one warning at
/// the byte's offset; the same for the -2 vector.
#[test]
fn trailing_byte_after_real_frames() {
    let din_set = by_name("din").unwrap();
    let iso2_set = by_name("iso2").unwrap();
    for hex in PYPLC_DIN
        .iter()
        .chain([&PYPLC_CURRENT_DEMAND, &LIBCBV2G_ISO2])
    {
        let real = unhex(hex);
        let (set, is_din) = if hex.starts_with("809a") {
            (din_set, true)
        } else {
            (iso2_set, false)
        };
        let view = set.decode(&real).unwrap();
        for extra in [0x00u8, 0xff] {
            let mut bytes = real.clone();
            bytes.push(extra);
            let want = vec![Warning {
                kind: WarningKind::TrailingBytes { count: 1 },
                bit: 8 * real.len(),
                path: String::new(),
            }];
            // engine
            assert_eq!(set.decode(&bytes), Err(ExiError::Trailing(1)), "{hex}");
            let (lenient, warnings) = set.decode_with(&bytes, &Policy::lenient()).unwrap();
            assert_eq!((&lenient, &warnings), (&view, &want), "{hex}");
            // typed
            if is_din {
                assert_eq!(din::Message::decode(&bytes), Err(ExiError::Trailing(1)));
                let (m, w) = din::Message::decode_with(&bytes, &Policy::lenient()).unwrap();
                assert_eq!(serde_json::to_value(&m).unwrap(), view);
                assert_eq!(w, want);
            } else {
                assert_eq!(iso2::Message::decode(&bytes), Err(ExiError::Trailing(1)));
                let (m, w) = iso2::Message::decode_with(&bytes, &Policy::lenient()).unwrap();
                assert_eq!(serde_json::to_value(&m).unwrap(), view);
                assert_eq!(w, want);
            }
            // the policy accepts only what it names
            let other = Policy::strict().with_integer_outside_facet(true);
            assert_eq!(set.decode_with(&bytes, &other), Err(ExiError::Trailing(1)));
        }
        // the frame as sent: no warning in either mode
        assert_eq!(
            set.decode_with(&real, &Policy::lenient()).unwrap(),
            (view, vec![])
        );
    }
    // two bytes are counted as two
    let mut two = unhex(PYPLC_DIN[0]);
    let end = two.len();
    two.extend([0, 0]);
    let (_, w) = din_set.decode_with(&two, &Policy::lenient()).unwrap();
    assert_eq!(w[0].kind, WarningKind::TrailingBytes { count: 2 });
    assert_eq!(w[0].byte(), end);
}

/// pyPLC's real CurrentDemandReq with EVTargetCurrent's Multiplier
/// (`unitMultiplierType`, -3..=3, a 3-bit code) patched to the code's top
/// value, 4: strict refuses it with `ExiError::IntegerOutsideFacet`, lenient
/// reads 4 with a warning naming the bit and the element path.
#[test]
fn din_integer_outside_facet_in_real_current_demand() {
    let set = by_name("din").unwrap();
    let real = unhex(PYPLC_CURRENT_DEMAND);
    let view = set.decode(&real).unwrap();
    // the real frame re-encodes to itself: its layout is the encoder's
    assert_eq!(set.encode(&view).unwrap(), real);
    let target = "/V2G_Message/Body/CurrentDemandReq/EVTargetCurrent/Multiplier";
    let with = |m: i64| {
        let mut v = view.clone();
        *v.pointer_mut(target).unwrap() = json!(m);
        set.encode(&v).unwrap()
    };
    // codes 000 (-3) and 100 (1) differ in the field's first bit
    let start = first_difference(&with(-3), &with(1));
    let original = view.pointer(target).unwrap().as_i64().unwrap();
    assert_eq!(i64::from(get_bits(&real, start, 3)), original + 3, "layout");
    let mut bytes = real.clone();
    set_bits(&mut bytes, start, 3, 7);

    let refused = Some(ExiError::IntegerOutsideFacet {
        value: 4,
        min: -3,
        max: 3,
        bit: start,
    });
    assert_eq!(set.decode(&bytes).err(), refused);
    assert_eq!(din::Message::decode(&bytes).err(), refused);
    let other = Policy::strict().with_trailing_bytes(true);
    assert_eq!(set.decode_with(&bytes, &other).err(), refused);

    let want = vec![Warning {
        kind: WarningKind::IntegerOutsideFacet {
            value: 4,
            min: -3,
            max: 3,
        },
        bit: start,
        path: target[1..].to_string(),
    }];
    let (doc, warnings) = set.decode_with(&bytes, &Policy::lenient()).unwrap();
    assert_eq!(warnings, want);
    let mut expected = view.clone();
    *expected.pointer_mut(target).unwrap() = json!(4);
    assert_eq!(doc, expected);
    let (typed, warnings) = din::Message::decode_with(&bytes, &Policy::lenient()).unwrap();
    assert_eq!(warnings, want);
    assert_eq!(serde_json::to_value(&typed).unwrap(), expected);
    let din::Message::V2gMessage(m) = &typed else {
        panic!("not a V2G_Message")
    };
    let req = m.body.current_demand_req.as_ref().unwrap();
    assert_eq!(req.ev_target_current.multiplier, 4);
    // read, never written: the encoders refuse the value
    assert!(matches!(set.encode(&doc), Err(ExiError::Value { .. })));
    assert!(matches!(
        typed.encode(&mut Vec::new()),
        Err(ExiError::Value { .. })
    ));
    // both deviations at once: two warnings, in stream order
    bytes.push(0);
    let (_, warnings) = set.decode_with(&bytes, &Policy::lenient()).unwrap();
    assert_eq!(
        warnings.iter().map(|w| &w.kind).collect::<Vec<_>>(),
        [&want[0].kind, &WarningKind::TrailingBytes { count: 1 }]
    );
    assert_eq!(
        din::Message::decode_with(&bytes, &Policy::lenient())
            .unwrap()
            .1,
        warnings
    );
}

/// The case of the issue: a -2 ChargingProfileEntryMaxNumberOfPhasesInUse
/// (`maxNumPhasesType`, 1..=3, a 2-bit code) of 4. The public -2 vectors of
/// `vectors.rs` carry no such field, so the frame is a PowerDeliveryReq
/// under the real libcbv2g header (its SessionID), encoded with 3 and
/// patched to 4. A code outside the Rust type (SAScheduleTupleID,
/// `SAIDType` 1..=255 in a `u8`, code 255 = 256) stays refused.
#[test]
fn iso2_phases_outside_facet() {
    let set = by_name("iso2").unwrap();
    let header = set.decode(&unhex(LIBCBV2G_ISO2)).unwrap()["V2G_Message"]["Header"].clone();
    let doc = |phases: i64, said: i64| -> Value {
        json!({"V2G_Message": {"Header": header, "Body": {"PowerDeliveryReq": {
            "ChargeProgress": "Start",
            "SAScheduleTupleID": said,
            "ChargingProfile": {"ProfileEntry": [{
                "ChargingProfileEntryStart": 0,
                "ChargingProfileEntryMaxPower": {"Multiplier": 3, "Unit": "W", "Value": 11},
                "ChargingProfileEntryMaxNumberOfPhasesInUse": phases
            }]}
        }}}})
    };
    let sent = set.encode(&doc(3, 1)).unwrap();
    // codes 00 (1) and 10 (3) differ in the field's first bit
    let start = first_difference(&set.encode(&doc(1, 1)).unwrap(), &sent);
    assert_eq!(get_bits(&sent, start, 2), 2, "layout");
    let mut bytes = sent.clone();
    set_bits(&mut bytes, start, 2, 3);

    let refused = Some(ExiError::IntegerOutsideFacet {
        value: 4,
        min: 1,
        max: 3,
        bit: start,
    });
    assert_eq!(set.decode(&bytes).err(), refused);
    assert_eq!(iso2::Message::decode(&bytes).err(), refused);
    let want = vec![Warning {
        kind: WarningKind::IntegerOutsideFacet {
            value: 4,
            min: 1,
            max: 3,
        },
        bit: start,
        path: "V2G_Message/Body/PowerDeliveryReq/ChargingProfile/ProfileEntry/ChargingProfileEntryMaxNumberOfPhasesInUse".into(),
    }];
    let (view, warnings) = set.decode_with(&bytes, &Policy::lenient()).unwrap();
    assert_eq!(warnings, want);
    assert_eq!(view, doc(4, 1));
    let (typed, warnings) = iso2::Message::decode_with(&bytes, &Policy::lenient()).unwrap();
    assert_eq!(warnings, want);
    assert_eq!(serde_json::to_value(&typed).unwrap(), view);
    assert_eq!(
        warnings[0].to_string(),
        format!(
            "bit {start} (byte {}), {}: integer 4 outside its facet 1..=3 (accepted)",
            start / 8,
            want[0].path
        )
    );

    // SAScheduleTupleID 255 (code 254) patched to code 255: 256 fits no u8
    let sent = set.encode(&doc(3, 255)).unwrap();
    let start = first_difference(&set.encode(&doc(3, 1)).unwrap(), &sent);
    assert_eq!(get_bits(&sent, start, 8), 254, "layout");
    let mut bytes = sent.clone();
    set_bits(&mut bytes, start, 8, 255);
    let refused = Some(ExiError::IntegerOutsideFacet {
        value: 256,
        min: 1,
        max: 255,
        bit: start,
    });
    assert_eq!(set.decode_with(&bytes, &Policy::lenient()).err(), refused);
    assert_eq!(
        iso2::Message::decode_with(&bytes, &Policy::lenient()).err(),
        refused
    );
}

/// Fragments take the policy too: EXIficient's -2 AuthorizationReq
/// fragment (as in `vectors.rs`) with a byte after it.
#[test]
fn fragment_with_trailing_byte() {
    let set = by_name("iso2").unwrap();
    let real = unhex("80040152510c408000081018202830384048505860687079e8");
    let mut bytes = real.clone();
    bytes.push(0);
    assert_eq!(set.decode_fragment(&bytes), Err(ExiError::Trailing(1)));
    assert_eq!(iso2::Fragment::decode(&bytes), Err(ExiError::Trailing(1)));
    let want = vec![Warning {
        kind: WarningKind::TrailingBytes { count: 1 },
        bit: 8 * real.len(),
        path: String::new(),
    }];
    let (v, w) = set
        .decode_fragment_with(&bytes, &Policy::lenient())
        .unwrap();
    assert_eq!((v, w), (set.decode_fragment(&real).unwrap(), want.clone()));
    let (f, w) = iso2::Fragment::decode_with(&bytes, &Policy::lenient()).unwrap();
    assert_eq!((f, w), (iso2::Fragment::decode(&real).unwrap(), want));
}

/// Every single-bit flip of the real frames above, decoded leniently by the
/// engine and by the typed codec: both accept the same flips, with the same
/// view and the same warnings (element paths included), and a flip strict
/// decoding refuses is accepted only with a warning.
#[test]
fn engine_and_typed_agree_on_bit_flips() {
    let lenient = Policy::lenient();
    let mut facets = 0;
    for hex in PYPLC_DIN
        .iter()
        .chain([&PYPLC_CURRENT_DEMAND, &LIBCBV2G_ISO2])
    {
        let real = unhex(hex);
        let is_din = hex.starts_with("809a");
        let set = by_name(if is_din { "din" } else { "iso2" }).unwrap();
        for i in 8..real.len() * 8 {
            let mut bytes = real.clone();
            bytes[i / 8] ^= 0x80 >> (i % 8);
            let engine = set.decode_with(&bytes, &lenient);
            let typed = if is_din {
                din::Message::decode_with(&bytes, &lenient)
                    .map(|(m, w)| (serde_json::to_value(m).unwrap(), w))
            } else {
                iso2::Message::decode_with(&bytes, &lenient)
                    .map(|(m, w)| (serde_json::to_value(m).unwrap(), w))
            };
            assert_eq!(engine.as_ref().ok(), typed.as_ref().ok(), "{hex} bit {i}");
            assert_eq!(engine.is_ok(), typed.is_ok(), "{hex} bit {i}");
            if let Ok((_, warnings)) = &engine {
                if set.decode(&bytes).is_err() {
                    assert!(!warnings.is_empty(), "{hex} bit {i}");
                }
                facets += warnings
                    .iter()
                    .filter(|w| matches!(w.kind, WarningKind::IntegerOutsideFacet { .. }))
                    .count();
            }
        }
    }
    assert!(facets > 0, "no flip gave an integer outside its facet");
}
