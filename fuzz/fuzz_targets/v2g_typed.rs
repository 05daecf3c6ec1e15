#![no_main]
//! Any bytes through the generated typed decoders of every schema set,
//! differentially against the XSD-driven engine: never a panic; the typed
//! decoder accepts exactly what the engine accepts, with the same JSON view;
//! what decodes re-encodes to bytes that decode the same (or, for an untyped
//! value outside its facets, read but never written, to a value error);
//! under the lenient policy both accept the same bytes with the same
//! warnings.
use evproto_iso15118::messages::{din, iso2, iso20, iso20_ac, iso20_acdp, iso20_dc, iso20_wpt};
use libfuzzer_sys::fuzz_target;

macro_rules! check {
    ($set:expr, $module:ident, $bytes:expr) => {{
        let engine = evproto_iso15118::schema::by_name($set)
            .expect("schemas load")
            .decode($bytes);
        match $module::Message::decode($bytes) {
            Ok(m) => {
                let view = serde_json::to_value(&m).expect("serializes");
                assert_eq!(
                    Some(&view),
                    engine.as_ref().ok(),
                    "engine reads it otherwise"
                );
                let mut again = Vec::new();
                match m.encode(&mut again) {
                    Ok(()) => assert_eq!(
                        $module::Message::decode(&again).expect("re-encoded decodes"),
                        m
                    ),
                    Err(e) => assert!(
                        matches!(e, evproto_iso15118::exi::ExiError::Value { .. }),
                        "{e}"
                    ),
                }
            }
            Err(_) => assert!(
                engine.is_err(),
                "the engine accepts what the typed decoder refuses"
            ),
        }
        // lenient: the same deviations accepted, with the same warnings
        let policy = evproto_iso15118::lenient::Policy::lenient();
        let engine = evproto_iso15118::schema::by_name($set)
            .expect("schemas load")
            .decode_with($bytes, &policy);
        match $module::Message::decode_with($bytes, &policy) {
            Ok((m, warnings)) => {
                let view = serde_json::to_value(&m).expect("serializes");
                assert_eq!(
                    Some(&(view, warnings)),
                    engine.as_ref().ok(),
                    "the engine reads it otherwise"
                );
            }
            Err(_) => assert!(
                engine.is_err(),
                "the engine accepts what the typed decoder refuses (lenient)"
            ),
        }
    }};
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 7 {
        0 => check!("din", din, rest),
        1 => check!("iso2", iso2, rest),
        2 => check!("iso20", iso20, rest),
        3 => check!("iso20-ac", iso20_ac, rest),
        4 => check!("iso20-dc", iso20_dc, rest),
        5 => check!("iso20-wpt", iso20_wpt, rest),
        _ => check!("iso20-acdp", iso20_acdp, rest),
    }
});
