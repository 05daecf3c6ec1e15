#![no_main]
//! Arbitrary message sequences into the ISO 15118-20 SECC and EVCC (after
//! a valid handshake): never a panic, nothing after the end, at most one
//! answer per request. The first input byte picks DC or AC, the control
//! mode, whether the SECC offers and the EV selects the bidirectional
//! service (BPT: bits 0x04 and 0x08), and whether the SECC offers Plug &
//! Charge (0x10) and the EV has a contract to sign with (0x20; a fixed
//! secp521r1 demo contract the SECC trusts, the backend accepting it), and
//! whether the SECC offers Internet access (0x40) and the EV wants it
//! (0x80); the second byte's bit 0x01 gives the PnC EV an OEM provisioning
//! certificate instead of its contract (it installs one by -20
//! CertificateInstallation, the backend delivering the demo contract).
//! The rest is messages split at 0xff bytes, each followed by 10 ms.
//! A message whose first byte has its top bit set is a valid -20 request
//! (`Request::ALL[b % 17]`, the session's id when bit 0x40 is set, DC or
//! AC schema by bit 0x20, scheduled or dynamic by bit 0x10) sent to the
//! SECC, whose answers go on to the EVCC; otherwise its first byte picks
//! the V2GTP payload type (0x8001 to 0x8004) and the rest is fed to both
//! machines as is.
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use evproto_iso15118::pki::demo::{Curve, DemoContract, DemoProvisioning};
use evproto_iso15118::pki::TrustStore;
use evproto_iso15118::session::iso20::{self, Request};
use evproto_iso15118::session::{
    Authorization, Contract, ContractProvisioning, ContractStatus, ControlMode, Effect, EvBpt,
    EvPnc, Evcc, EvccConfig, EvseRequest, Protocol, Provisioning, Secc, SeccBpt, SeccConfig,
    SeccPnc, Vas,
};
use evproto_iso15118::v2gtp::PayloadType;
use libfuzzer_sys::fuzz_target;

const ID: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
/// 2026-05-28, inside the demo contract's validity.
const NOW: u64 = 1_780_000_000;

fn contract() -> &'static DemoContract {
    static C: OnceLock<DemoContract> = OnceLock::new();
    C.get_or_init(|| {
        DemoContract::generate(
            b"fuzz",
            "DEFUZ0000000001",
            Curve::P521,
            1_690_000_000,
            1_900_000_000,
        )
        .expect("demo contract")
    })
}

fn provisioning() -> &'static DemoProvisioning {
    static P: OnceLock<DemoProvisioning> = OnceLock::new();
    P.get_or_init(|| {
        DemoProvisioning::generate(b"fuzz", 1_690_000_000, 1_900_000_000)
            .expect("demo provisioning")
    })
}

fn the_contract() -> Contract {
    let c = contract();
    Contract::new(
        c.emaid.clone(),
        c.contract.cert.der().to_vec(),
        c.sub_cas(),
        c.contract.key_bytes(),
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let Some((&pick2, data)) = data.split_first() else {
        return;
    };
    let install = pick2 & 1 != 0;
    let dc = pick & 1 == 0;
    let mode = if pick & 2 == 0 {
        ControlMode::Scheduled
    } else {
        ControlMode::Dynamic
    };
    let config = if dc {
        EvccConfig::iso20_dc(vec![1; 6])
    } else {
        EvccConfig::iso20_ac(vec![1; 6])
    }
    .with_control_mode(mode)
    .with_unix_time(NOW)
    .with_vas(if pick & 0x80 != 0 {
        vec![Vas::INTERNET]
    } else {
        vec![]
    })
    .with_bpt((pick & 4 != 0).then(|| EvBpt::new(7_000.0, 20.0, 1.0)))
    .with_pnc((pick & 0x20 != 0).then(|| {
        if install {
            let p = provisioning();
            EvPnc::new(
                None,
                Some(Provisioning::new(
                    p.oem_provisioning.cert.der().to_vec(),
                    p.oem_provisioning.key_bytes(),
                )),
                TrustStore::new(vec![p.v2g_root.cert.clone()]),
            )
        } else {
            EvPnc::new(Some(the_contract()), None, TrustStore::new(vec![]))
        }
    }));
    let now = Instant::now();
    let mut evcc = Evcc::new(config, now);
    let Some(Effect::Transmit(sap_req)) = evcc.poll_effect() else {
        unreachable!()
    };
    let mut secc = Secc::new(
        SeccConfig::new(ID.to_vec())
            .with_protocols(vec![Protocol::Iso20Dc, Protocol::Iso20Ac])
            .with_unix_time(NOW)
            .with_vas(if pick & 0x40 != 0 {
                vec![Vas::internet(true)]
            } else {
                vec![]
            })
            .with_bpt((pick & 8 != 0).then(|| SeccBpt::new(10_000.0, 25.0)))
            .with_pnc((pick & 0x10 != 0).then(|| {
                SeccPnc::new(
                    TrustStore::new(vec![contract().mo_root.cert.clone()]),
                    [7; 16],
                )
            })),
        now,
    );
    secc.handle_message(now, &sap_req);
    let Some(Effect::Transmit(sap_res)) = secc.poll_effect() else {
        unreachable!()
    };
    evcc.handle_message(now, &sap_res);
    assert!(evcc.protocol().is_some_and(Protocol::is_iso20));
    let mut t = now;
    let (mut secc_ended, mut evcc_ended) = (false, false);
    for chunk in data.split(|b| *b == 0xff) {
        t += Duration::from_millis(10);
        let Some((&head, rest)) = chunk.split_first() else {
            continue;
        };
        if head & 0x80 != 0 {
            let req = Request::ALL[usize::from(head) % Request::ALL.len()];
            let id = if head & 0x40 != 0 {
                ID.to_vec()
            } else {
                rest.to_vec()
            };
            let mode = if head & 0x10 != 0 {
                ControlMode::Dynamic
            } else {
                ControlMode::Scheduled
            };
            let (pt, bytes) = iso20::encode_request(head & 0x20 == 0, mode, &id, req);
            secc.handle_packet(t, pt, &bytes);
        } else {
            let pt = PayloadType(0x8001 + u16::from(head % 4));
            secc.handle_packet(t, pt, rest);
            evcc.handle_packet(t, pt, rest);
        }
        secc.handle_timeout(t);
        evcc.handle_timeout(t);
        let answers = drain_secc(&mut secc, &mut evcc, t, &mut secc_ended);
        assert!(answers <= 1, "{answers} answers to one request");
        while let Some(e) = evcc.poll_effect() {
            assert!(!evcc_ended, "effect after SessionEnded");
            evcc_ended |= matches!(e, Effect::SessionEnded { .. });
        }
    }
});

/// Drains the SECC, answering the EVSE's questions at once and passing
/// its answers on to the EVCC; the number of answers.
fn drain_secc(secc: &mut Secc, evcc: &mut Evcc, t: Instant, ended: &mut bool) -> usize {
    let mut answers = 0;
    while let Some(e) = secc.poll_effect() {
        assert!(!*ended, "effect after SessionEnded");
        match e {
            Effect::SessionEnded { .. } => *ended = true,
            Effect::TransmitAs(pt, res) => {
                answers += 1;
                assert!(
                    iso20::response_code(pt, &res).is_some(),
                    "an answer that does not decode"
                );
                evcc.handle_packet(t, pt, &res);
            }
            Effect::Evse(EvseRequest::Authorize { .. }) => {
                secc.handle_authorization(t, Authorization::Accepted)
            }
            Effect::Evse(EvseRequest::Schedules { .. }) => secc.handle_schedules(t, vec![]),
            Effect::Evse(EvseRequest::AuthorizeContract { .. }) => {
                secc.handle_contract_status(t, ContractStatus::Accepted)
            }
            Effect::Evse(EvseRequest::InstallCertificateIso20 {
                oem_provisioning_cert,
                ..
            }) => {
                let p = provisioning();
                let cps = ContractProvisioning {
                    cps_key: p.cps.key.clone(),
                    cps_certificate: p.cps.cert.der().to_vec(),
                    cps_sub_cas: p.cps_sub_cas(),
                    contract: the_contract(),
                };
                let mut eph = [0x42; 66];
                eph[0] = 0;
                // `None` (no contract) for a certificate that is no
                // secp521r1 provisioning certificate
                let answer = cps.install_iso20(&oem_provisioning_cert, &eph, [9; 12]).ok();
                secc.handle_iso20_certificate_installation(t, answer)
            }
            _ => {}
        }
    }
    answers
}
