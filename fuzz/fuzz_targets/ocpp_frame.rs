#![no_main]
use evproto_ocpp_types::rpc::{Frame, MAX_MESSAGE_ID_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(f) = Frame::parse(text) {
        assert!(f.id().chars().count() <= MAX_MESSAGE_ID_LEN);
    }
    let _ = evproto_ocpp_types::v16::parse_frame(text);
    let _ = evproto_ocpp_types::v201::parse_frame(text);
    let _ = evproto_ocpp_types::v21::parse_frame(text);
});
