#![no_main]
//! Any bytes as an OCPI object of any module/type in any version: never a
//! panic, and whatever decodes re-encodes to something that decodes the
//! same; the credentials machines take any response.
use evproto_ocpi::Version;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let version = Version::ALL[usize::from(pick % 3)];
    let names = match version {
        Version::V211 => evproto_ocpi::v211::TYPES,
        Version::V221 => evproto_ocpi::v221::TYPES,
        Version::V230 => evproto_ocpi::v230::TYPES,
    };
    let name = names[usize::from(pick / 3) % names.len()];
    if let Ok(v) = evproto_ocpi::validate::validate(version, name, text) {
        let again = evproto_ocpi::validate::validate(version, name, &v.to_string())
            .expect("re-encoded object decodes");
        assert_eq!(v, again);
    }
    let own = evproto_ocpi::credentials::Own::new("https://us.example/versions", "NL", "CPO", "Us");
    if let Ok((mut s, _)) =
        evproto_ocpi::credentials::Sender::start(own, "https://peer.example/versions", "a", "b")
    {
        for part in text.split('\u{1}') {
            let _ = s.handle(evproto_ocpi::credentials::Response::new(200, part));
        }
    }
});
