//! `cargo bench -p evproto-iso15118 --bench session`: the DIN DC,
//! ISO 15118-2 DC and ISO 15118-20 DC session machines in memory, every
//! message through the generated EXI codecs.
//!
//! - `din_dc/full_session_100_loops`, `iso2_dc/full_session_100_loops`,
//!   `iso20_dc/full_session_100_loops`: handshake to SessionStop with 100
//!   CurrentDemand / DC_ChargeLoop loops, our EVCC against our SECC on a
//!   virtual clock (authorization, isolation and schedules answered at once);
//! - `din_dc/secc_current_demand`, `iso20_dc/secc_dc_charge_loop`: the
//!   SECC's cost of one CurrentDemandReq / DC_ChargeLoopReq (decode, answer,
//!   encode, drain);
//! - `iso20_dc_bpt/…`: the same two through the bidirectional service
//!   (DC_BPT, the car charging), its messages' BPT variants;
//! - `iso20_dc_pnc/full_session_100_loops`, `iso20_dc_pnc_p256/…`: the -20
//!   DC session authorized by contract (Plug & Charge), the car signing
//!   `PnC_AReqAuthorizationMode` and the SECC checking the chain and the
//!   signature, with a secp521r1 contract (-20's) and a secp256r1 one:
//!   beside `iso20_dc/full_session_100_loops`, the cost of the contract;
//! - `iso20_dc_pnc_install/full_session_100_loops`: the same secp521r1
//!   session of a car without a contract, which installs one first
//!   (CertificateInstallation: the car's signature, the SECC's check, the
//!   backend's `ContractProvisioning::install_iso20`, the car's checks of
//!   the CPS chain and signature and its decryption of the key);
//!   `iso20/install_contract_backend`: that backend's part alone (ECDH,
//!   KDF, AES-GCM, the CPS signature).
//!
//! The SECC offers DC_BPT beside DC throughout (and PnC in the `pnc` ones).
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use evproto_iso15118::pki::demo::{Curve, DemoContract, DemoProvisioning};
use evproto_iso15118::pki::TrustStore;
use evproto_iso15118::session::{
    din, iso20, Authorization, Contract, ContractProvisioning, ContractStatus, Effect, EndReason,
    EvBpt, EvPnc, Evcc, EvccConfig, EvseRequest, Isolation, Protocol, Provisioning, Secc, SeccBpt,
    SeccConfig, SeccPnc, StopKind,
};
use evproto_iso15118::v2gtp::PayloadType;

const SESSION: [u8; 4] = [1, 2, 3, 4];

fn secc_config() -> SeccConfig {
    SeccConfig::new(SESSION.to_vec())
        .with_protocols(vec![Protocol::Iso20Dc, Protocol::Iso2, Protocol::Din])
        .with_bpt(Some(SeccBpt::new(50_000.0, 125.0)))
}

/// A -20 DC car selecting DC_BPT, charging (nothing to give back).
fn bpt_car() -> EvccConfig {
    EvccConfig::iso20_dc(vec![1; 6]).with_bpt(Some(EvBpt::new(50_000.0, 120.0, 0.0)))
}

/// 2026-05-28: inside the demo contracts' validity.
const NOW: u64 = 1_780_000_000;

/// A -20 DC car with a contract on `curve`, and an SECC offering PnC
/// that trusts its MO root.
fn pnc_pair(curve: Curve) -> (SeccConfig, EvccConfig) {
    let c = DemoContract::generate(
        b"bench",
        "DEEVPC000000001",
        curve,
        1_690_000_000,
        1_900_000_000,
    )
    .expect("demo contract");
    let secc = secc_config()
        .with_unix_time(NOW)
        .with_pnc(Some(SeccPnc::new(
            TrustStore::new(vec![c.mo_root.cert.clone()]),
            [9; 16],
        )));
    let contract = Contract::new(
        c.emaid.clone(),
        c.contract.cert.der().to_vec(),
        c.sub_cas(),
        c.contract.key_bytes(),
    );
    let evcc = EvccConfig::iso20_dc(vec![1; 6])
        .with_unix_time(NOW)
        .with_pnc(Some(EvPnc::new(
            Some(contract),
            None,
            TrustStore::new(vec![]),
        )));
    (secc, evcc)
}

/// A -20 DC car with no contract but a provisioning certificate, an SECC
/// offering PnC, and the backend's provisioning service (a CPS under the
/// V2G root the car trusts, and the contract to deliver).
fn install_pair() -> (SeccConfig, EvccConfig, ContractProvisioning) {
    let c = DemoContract::generate(
        b"bench",
        "DEEVPC000000001",
        Curve::P521,
        1_690_000_000,
        1_900_000_000,
    )
    .expect("demo contract");
    let p = DemoProvisioning::generate(b"bench", 1_690_000_000, 1_900_000_000)
        .expect("demo provisioning");
    let secc = secc_config()
        .with_unix_time(NOW)
        .with_pnc(Some(SeccPnc::new(
            TrustStore::new(vec![c.mo_root.cert.clone()]),
            [9; 16],
        )));
    let evcc = EvccConfig::iso20_dc(vec![1; 6])
        .with_unix_time(NOW)
        .with_pnc(Some(EvPnc::new(
            None,
            Some(Provisioning::new(
                p.oem_provisioning.cert.der().to_vec(),
                p.oem_provisioning.key_bytes(),
            )),
            TrustStore::new(vec![p.v2g_root.cert.clone()]),
        )));
    let backend = ContractProvisioning {
        cps_key: p.cps.key.clone(),
        cps_certificate: p.cps.cert.der().to_vec(),
        cps_sub_cas: p.cps_sub_cas(),
        contract: Contract::new(
            c.emaid.clone(),
            c.contract.cert.der().to_vec(),
            c.sub_cas(),
            c.contract.key_bytes(),
        ),
    };
    (secc, evcc, backend)
}

/// The -20 ephemeral key and IV of the bench's installations (fixed: a
/// benchmark, not a backend).
fn ephemeral() -> ([u8; 66], [u8; 12]) {
    let mut k = [0x42; 66];
    k[0] = 1;
    (k, [7; 12])
}

/// Runs one session; returns the EVCC's requests with their payload types.
fn session(config: EvccConfig, loops: u32) -> Vec<(PayloadType, Vec<u8>)> {
    session_with(secc_config(), config, loops)
}

/// [`session`] against an SECC of `secc`.
fn session_with(secc: SeccConfig, config: EvccConfig, loops: u32) -> Vec<(PayloadType, Vec<u8>)> {
    session_installing(secc, config, None, loops)
}

/// [`session_with`], the -20 installations answered by `backend`.
fn session_installing(
    secc: SeccConfig,
    config: EvccConfig,
    backend: Option<&ContractProvisioning>,
    loops: u32,
) -> Vec<(PayloadType, Vec<u8>)> {
    let mut now = Instant::now();
    let mut secc = Secc::new(secc, now);
    let mut evcc = Evcc::new(config, now);
    let mut sent = Vec::new();
    let mut stop_asked = false;
    loop {
        let mut progress = true;
        while progress {
            progress = false;
            while let Some(e) = evcc.poll_effect() {
                progress = true;
                match e {
                    Effect::Transmit(b) => {
                        secc.handle_message(now, &b);
                        sent.push((PayloadType::EXI, b));
                    }
                    Effect::TransmitAs(pt, b) => {
                        secc.handle_packet(now, pt, &b);
                        sent.push((pt, b));
                    }
                    Effect::SessionEnded { reason } => {
                        assert_eq!(reason, EndReason::Finished);
                        return sent;
                    }
                    _ => {}
                }
            }
            while let Some(e) = secc.poll_effect() {
                progress = true;
                match e {
                    Effect::Transmit(b) => evcc.handle_message(now, &b),
                    Effect::TransmitAs(pt, b) => evcc.handle_packet(now, pt, &b),
                    Effect::Evse(EvseRequest::Authorize { .. }) => {
                        secc.handle_authorization(now, Authorization::Accepted)
                    }
                    Effect::Evse(EvseRequest::Schedules { .. }) => {
                        secc.handle_schedules(now, vec![])
                    }
                    Effect::Evse(EvseRequest::AuthorizeContract { .. }) => {
                        secc.handle_contract_status(now, ContractStatus::Accepted)
                    }
                    Effect::Evse(EvseRequest::InstallCertificateIso20 {
                        oem_provisioning_cert,
                        ..
                    }) => {
                        let (k, iv) = ephemeral();
                        let installation = backend.map(|b| {
                            b.install_iso20(&oem_provisioning_cert, &k, iv)
                                .expect("installation")
                        });
                        secc.handle_iso20_certificate_installation(now, installation)
                    }
                    Effect::Evse(EvseRequest::StartCableCheck) => {
                        let mut e = secc.evse().clone();
                        e.isolation = Isolation::Valid;
                        secc.set_evse(e);
                    }
                    Effect::Evse(EvseRequest::Target { voltage, current }) => {
                        let mut e = secc.evse().clone();
                        e.present_voltage = voltage;
                        e.present_current = current;
                        secc.set_evse(e);
                    }
                    _ => {}
                }
            }
            if !stop_asked && evcc.charge_loops() >= loops {
                stop_asked = true;
                evcc.request_stop(StopKind::Terminate);
            }
        }
        let next = [secc.poll_timeout(), evcc.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .expect("a deadline");
        now = now.max(next);
        evcc.handle_timeout(now);
        secc.handle_timeout(now);
    }
}

fn bench(c: &mut Criterion) {
    c.bench_function("din_dc/full_session_100_loops", |b| {
        b.iter(|| black_box(session(EvccConfig::din_dc(vec![1; 6]), 100)))
    });
    c.bench_function("iso2_dc/full_session_100_loops", |b| {
        b.iter(|| {
            let sent = session(EvccConfig::iso2_dc(vec![1; 6]), 100);
            assert!(sent.len() > 100);
            black_box(sent)
        })
    });
    c.bench_function("iso20_dc/full_session_100_loops", |b| {
        b.iter(|| {
            let sent = session(EvccConfig::iso20_dc(vec![1; 6]), 100);
            assert!(sent.len() > 100);
            black_box(sent)
        })
    });
    c.bench_function("iso20_dc_bpt/full_session_100_loops", |b| {
        b.iter(|| {
            let sent = session(bpt_car(), 100);
            assert!(sent.len() > 100);
            black_box(sent)
        })
    });

    for (name, curve) in [
        ("iso20_dc_pnc/full_session_100_loops", Curve::P521),
        ("iso20_dc_pnc_p256/full_session_100_loops", Curve::P256),
    ] {
        let (secc, evcc) = pnc_pair(curve);
        // authorized by the contract, not by EIM
        let pnc = session_with(secc.clone(), evcc.clone(), 1)
            .iter()
            .filter_map(|(pt, b)| iso20::Wire::decode(*pt, b).ok())
            .any(|w| {
                matches!(w, iso20::Wire::Common(evproto_iso15118::messages::iso20::Message::AuthorizationReq(r))
                    if r.pn_c_a_req_authorization_mode.is_some())
            });
        assert!(pnc, "{name}: no PnC AuthorizationReq");
        c.bench_function(name, |b| {
            b.iter(|| {
                let sent = session_with(secc.clone(), evcc.clone(), 100);
                assert!(sent.len() > 100);
                black_box(sent)
            })
        });
    }

    let (secc, evcc, backend) = install_pair();
    // the car installs, then is authorized by its new contract
    let names: Vec<&str> = session_installing(secc.clone(), evcc.clone(), Some(&backend), 1)
        .iter()
        .filter_map(|(pt, b)| iso20::message_name(*pt, b))
        .collect();
    let at = |n: &str| names.iter().position(|x| *x == n);
    assert!(
        at("CertificateInstallationReq").is_some()
            && at("CertificateInstallationReq") < at("AuthorizationReq"),
        "{names:?}"
    );
    c.bench_function("iso20_dc_pnc_install/full_session_100_loops", |b| {
        b.iter(|| {
            let sent = session_installing(secc.clone(), evcc.clone(), Some(&backend), 100);
            assert!(sent.len() > 100);
            black_box(sent)
        })
    });
    let oem = DemoProvisioning::generate(b"bench", 1_690_000_000, 1_900_000_000)
        .expect("demo provisioning")
        .oem_provisioning;
    c.bench_function("iso20/install_contract_backend", |b| {
        let (k, iv) = ephemeral();
        b.iter(|| {
            black_box(
                backend
                    .install_iso20(oem.cert.der(), &k, iv)
                    .expect("installation"),
            )
        })
    });

    // a SECC in its charge loop, and a CurrentDemandReq for it
    let script = session(EvccConfig::din_dc(vec![1; 6]), 2);
    let start = script
        .iter()
        .position(|(_, b)| din::response_code(b).is_none() && is_current_demand(b))
        .expect("a CurrentDemandReq");
    loop_bench(c, "din_dc/secc_current_demand", &script, start);

    // the same for a -20 DC_ChargeLoopReq
    let script = session(EvccConfig::iso20_dc(vec![1; 6]), 2);
    let start = script
        .iter()
        .position(|(pt, b)| iso20::message_name(*pt, b) == Some("DC_ChargeLoopReq"))
        .expect("a DC_ChargeLoopReq");
    loop_bench(c, "iso20_dc/secc_dc_charge_loop", &script, start);

    // and through DC_BPT
    let script = session(bpt_car(), 2);
    let start = script
        .iter()
        .position(|(pt, b)| iso20::message_name(*pt, b) == Some("DC_ChargeLoopReq"))
        .expect("a DC_ChargeLoopReq");
    loop_bench(c, "iso20_dc_bpt/secc_dc_charge_loop", &script, start);
}

/// The SECC's cost of `script[start]`, a charge-loop request, after the
/// requests before it.
fn loop_bench(c: &mut Criterion, name: &str, script: &[(PayloadType, Vec<u8>)], start: usize) {
    let mut now = Instant::now();
    let mut secc = Secc::new(secc_config(), now);
    for (pt, b) in &script[..start] {
        secc.handle_packet(now, *pt, b);
        while let Some(e) = secc.poll_effect() {
            match e {
                Effect::Evse(EvseRequest::Authorize { .. }) => {
                    secc.handle_authorization(now, Authorization::Accepted)
                }
                Effect::Evse(EvseRequest::Schedules { .. }) => secc.handle_schedules(now, vec![]),
                Effect::Evse(EvseRequest::StartCableCheck) => {
                    let mut e = secc.evse().clone();
                    e.isolation = Isolation::Valid;
                    secc.set_evse(e);
                }
                _ => {}
            }
        }
    }
    let (pt, req) = script[start].clone();
    c.bench_function(name, |b| {
        b.iter(|| {
            now += Duration::from_millis(100);
            secc.handle_packet(now, pt, black_box(&req));
            let mut n = 0;
            while let Some(e) = secc.poll_effect() {
                if let Effect::Transmit(bytes) | Effect::TransmitAs(_, bytes) = e {
                    n += bytes.len();
                }
            }
            assert!(n > 0 && secc.ended().is_none());
            n
        })
    });
}

fn is_current_demand(b: &[u8]) -> bool {
    use evproto_iso15118::messages::din as m;
    matches!(m::Message::decode(b), Ok(m::Message::V2gMessage(v)) if v.body.current_demand_req.is_some())
}

criterion_group!(benches, bench);
criterion_main!(benches);
