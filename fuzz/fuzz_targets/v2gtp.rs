#![no_main]
use evproto_iso15118::v2gtp::{self, Reassembler};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = v2gtp::decode(data, 1 << 16);
    let mut r = Reassembler::new(1 << 16);
    for chunk in data.chunks(7) {
        r.push(chunk);
        while let Ok(Some(p)) = r.next_packet() {
            assert!(p.payload.len() <= 1 << 16);
        }
    }
});
