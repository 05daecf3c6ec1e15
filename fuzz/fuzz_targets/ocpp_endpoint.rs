#![no_main]
use evproto_ocpp_proto::{Config, Endpoint, ProtocolVersion, Role};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let version = [
        ProtocolVersion::V16,
        ProtocolVersion::V201,
        ProtocolVersion::V21,
    ][usize::from(pick % 3)];
    let role = if pick & 4 == 0 {
        Role::Csms
    } else {
        Role::ChargingStation
    };
    let mut ep = Endpoint::new(role, version, Config::default().with_max_message_size(4096));
    let now = std::time::Instant::now();
    let _ = ep.send_call(now, "Heartbeat", "{}".into());
    for line in text.split('\n') {
        ep.handle_text(now, line);
        while let Some(t) = ep.poll_transmit() {
            assert!(evproto_ocpp_types::rpc::Frame::parse(&t).is_ok(), "{t}");
        }
        while ep.poll_event().is_some() {}
    }
    ep.handle_timeout(now + std::time::Duration::from_secs(3600));
});
