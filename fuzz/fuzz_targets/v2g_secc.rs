#![no_main]
//! Arbitrary bytes as messages into both session machines (after a valid
//! handshake, and raw): never a panic, nothing after the end. The first
//! input byte picks the protocol and mode: DIN DC, ISO 15118-2 DC or -2 AC
//! (`% 3`); its top bit makes the SECC ask for a renegotiation at every step,
//! bit 0x40 configures ISO 15118-2 Plug & Charge on both sides (the demo
//! PKI's MO root, the car's contract and provisioning credentials).
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use evproto_iso15118::app_protocol::{self, Message, ResponseCode, SupportedAppProtocolRes};
use evproto_iso15118::pki::demo::DemoPki;
use evproto_iso15118::pki::TrustStore;
use evproto_iso15118::session::{
    Contract, Effect, EvPnc, Evcc, EvccConfig, Protocol, Provisioning, Secc, SeccConfig, SeccPnc,
};

fn pki() -> &'static DemoPki {
    static P: OnceLock<DemoPki> = OnceLock::new();
    P.get_or_init(|| {
        DemoPki::generate(b"fuzz", "DEEVPC000000001", 0, 4_000_000_000).expect("demo PKI")
    })
}
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let config = match pick % 3 {
        0 => EvccConfig::din_dc(vec![1; 6]),
        1 => EvccConfig::iso2_dc(vec![1; 6]),
        _ => EvccConfig::iso2_ac(vec![1; 6]),
    };
    let renegotiate = pick & 0x80 != 0;
    let (config, secc_config) = if pick & 0x40 != 0 {
        let p = pki();
        let contract = Contract::new(
            p.emaid.clone(),
            p.contract.cert.der().to_vec(),
            p.contract_sub_cas(),
            p.contract.key_bytes(),
        );
        let prov = Provisioning::new(
            p.oem_provisioning.cert.der().to_vec(),
            p.oem_provisioning.key_bytes(),
        );
        let roots = TrustStore::new(vec![p.v2g_root.cert.clone()]);
        (
            config
                .with_unix_time(1_780_000_000)
                .with_pnc(Some(EvPnc::new(Some(contract), Some(prov), roots))),
            SeccConfig::new(vec![1, 2, 3, 4])
                .with_unix_time(1_780_000_000)
                .with_pnc(Some(SeccPnc::new(
                    TrustStore::new(vec![p.mo_root.cert.clone()]),
                    [7; 16],
                ))),
        )
    } else {
        (config, SeccConfig::new(vec![1, 2, 3, 4]))
    };
    let now = Instant::now();
    let mut evcc = Evcc::new(config.clone(), now);
    let Some(Effect::Transmit(sap_req)) = evcc.poll_effect() else {
        unreachable!()
    };
    let mut secc = Secc::new(secc_config, now);
    secc.handle_message(now, &sap_req);
    assert_eq!(
        secc.protocol(),
        Some(if pick % 3 == 0 {
            Protocol::Din
        } else {
            Protocol::Iso2
        })
    );
    let mut sap_res = Vec::new();
    app_protocol::encode(
        &Message::Res(SupportedAppProtocolRes {
            response_code: ResponseCode::OkSuccessfulNegotiation,
            schema_id: Some(1),
        }),
        &mut sap_res,
    );
    evcc.handle_message(now, &sap_res);
    let mut raw_secc = Secc::new(SeccConfig::new(vec![1]), now);
    let mut raw_evcc = Evcc::new(config, now);
    // the input is messages split at 0xff bytes, each followed by 10 ms
    let mut t = now;
    let mut ended = [false; 4];
    for chunk in data.split(|b| *b == 0xff) {
        t += Duration::from_millis(10);
        if renegotiate {
            secc.request_renegotiation();
        }
        secc.handle_message(t, chunk);
        evcc.handle_message(t, chunk);
        raw_secc.handle_message(t, chunk);
        raw_evcc.handle_message(t, chunk);
        secc.handle_timeout(t);
        evcc.handle_timeout(t);
        drain_secc(&mut secc, &mut ended[0]);
        drain_secc(&mut raw_secc, &mut ended[1]);
        drain_evcc(&mut evcc, &mut ended[2]);
        drain_evcc(&mut raw_evcc, &mut ended[3]);
    }
});

fn drain_secc(m: &mut Secc, ended: &mut bool) {
    while let Some(e) = m.poll_effect() {
        assert!(!*ended, "effect after SessionEnded");
        *ended |= matches!(e, Effect::SessionEnded { .. });
    }
}

fn drain_evcc(m: &mut Evcc, ended: &mut bool) {
    while let Some(e) = m.poll_effect() {
        assert!(!*ended, "effect after SessionEnded");
        *ended |= matches!(e, Effect::SessionEnded { .. });
    }
}
