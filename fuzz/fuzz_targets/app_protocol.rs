#![no_main]
//! Any bytes as a SupportedAppProtocol document: never a panic; whatever
//! decodes re-encodes to the same message.
use evproto_iso15118::app_protocol;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = app_protocol::decode(data) {
        let mut out = Vec::new();
        app_protocol::encode(&m, &mut out);
        assert_eq!(
            app_protocol::decode(&out).expect("re-encoded message decodes"),
            m
        );
    }
});
