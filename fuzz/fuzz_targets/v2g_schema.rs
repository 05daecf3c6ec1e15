#![no_main]
//! Any bytes as a document of any V2G schema set (the XSD-driven engine),
//! and as a fragment (what signatures digest) of it or of the xmldsig set:
//! never a panic; whatever decodes re-encodes to bytes that decode the same.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let sets = iso15118::schema::SETS;
    let fragment = pick & 0x80 != 0;
    let k = usize::from(pick & 0x7f) % (sets.len() + 1);
    let name = if k == sets.len() { iso15118::schema::XMLDSIG.0 } else { sets[k].0 };
    let Ok(set) = iso15118::schema::by_name(name) else { return };
    if fragment || k == sets.len() {
        if let Ok(frag) = set.decode_fragment(rest) {
            let bytes = set.encode_fragment(&frag).expect("a decoded fragment encodes");
            assert_eq!(set.decode_fragment(&bytes).expect("re-encoded fragment decodes"), frag);
        }
    } else if let Ok(doc) = set.decode(rest) {
        let bytes = set.encode(&doc).expect("a decoded document encodes");
        assert_eq!(set.decode(&bytes).expect("re-encoded document decodes"), doc);
    }
});
