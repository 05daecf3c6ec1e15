#![no_main]
//! Any bytes as a document of any V2G schema set (the XSD-driven engine),
//! and as a fragment (what signatures digest) of it or of the xmldsig set:
//! never a panic; whatever decodes re-encodes to bytes that decode the same,
//! unless it carried an untyped value outside its facets (a non-strict
//! deviation that is read but never written: then a value error). The
//! lenient policy reads every document strict decoding reads, the same and
//! without warnings, and what else it reads only with a warning.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let sets = evproto_iso15118::schema::SETS;
    let fragment = pick & 0x80 != 0;
    let k = usize::from(pick & 0x7f) % (sets.len() + 1);
    let name = if k == sets.len() {
        evproto_iso15118::schema::XMLDSIG.0
    } else {
        sets[k].0
    };
    let Ok(set) = evproto_iso15118::schema::by_name(name) else {
        return;
    };
    if fragment || k == sets.len() {
        if let Ok(frag) = set.decode_fragment(rest) {
            match set.encode_fragment(&frag) {
                Ok(bytes) => assert_eq!(
                    set.decode_fragment(&bytes)
                        .expect("re-encoded fragment decodes"),
                    frag
                ),
                Err(e) => assert!(
                    matches!(e, evproto_iso15118::exi::ExiError::Value { .. }),
                    "{e}"
                ),
            }
        }
    } else {
        let strict = set.decode(rest);
        if let Ok(doc) = &strict {
            match set.encode(doc) {
                Ok(bytes) => assert_eq!(
                    &set.decode(&bytes).expect("re-encoded document decodes"),
                    doc
                ),
                Err(e) => assert!(
                    matches!(e, evproto_iso15118::exi::ExiError::Value { .. }),
                    "{e}"
                ),
            }
        }
        // lenient reads everything strict reads, the same, without a warning
        let lenient = set.decode_with(rest, &evproto_iso15118::lenient::Policy::lenient());
        match (strict, lenient) {
            (Ok(doc), Ok((again, warnings))) => assert_eq!((doc, warnings), (again, vec![])),
            (Ok(_), Err(e)) => panic!("lenient refuses what strict reads: {e}"),
            (Err(_), Ok((_, warnings))) => {
                assert!(!warnings.is_empty(), "accepted without a warning")
            }
            (Err(_), Err(_)) => {}
        }
    }
});
