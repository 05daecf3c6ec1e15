#![no_main]
//! Any bytes as a document of any V2G schema set (the XSD-driven engine):
//! never a panic; whatever decodes re-encodes to bytes that decode the same.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let (name, _) = iso15118::schema::SETS[usize::from(pick) % iso15118::schema::SETS.len()];
    let Ok(set) = iso15118::schema::by_name(name) else { return };
    if let Ok(doc) = set.decode(rest) {
        let bytes = set.encode(&doc).expect("a decoded document encodes");
        assert_eq!(set.decode(&bytes).expect("re-encoded document decodes"), doc);
    }
});
