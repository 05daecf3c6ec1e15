//! A CALL and its CALLRESULT through two sans-IO endpoints (no sockets):
//! the cost of the RPC core per exchange.
//!
//! `cargo bench -p evproto-ocpp-proto --bench roundtrip`

#![allow(missing_docs)]

use std::time::Instant;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use evproto_ocpp_proto::{BootState, Config, Endpoint, Event, ProtocolVersion, Role};

const HEARTBEAT_RES: &str = r#"{"currentTime":"2024-01-01T00:00:00Z"}"#;
const METER_VALUES: &str = r#"{"evseId":1,"meterValue":[{"timestamp":"2024-05-01T10:15:00Z","sampledValue":[{"value":12345.6,"measurand":"Energy.Active.Import.Register"},{"value":7200,"measurand":"Power.Active.Import"},{"value":16.1,"measurand":"Current.Import","phase":"L1"},{"value":230.1,"measurand":"Voltage","phase":"L1-N"}]}]}"#;

fn exchange(
    cs: &mut Endpoint,
    csms: &mut Endpoint,
    now: Instant,
    action: &str,
    payload: &str,
    answer: &str,
    decode: bool,
) {
    cs.send_call(now, action, payload.to_owned()).unwrap();
    let frame = cs.poll_transmit().unwrap();
    csms.handle_text(now, &frame);
    let Some(Event::IncomingCall { id, payload, .. }) = csms.poll_event() else {
        panic!()
    };
    if decode {
        black_box(evproto_ocpp_types::v201::Request::decode(action, &payload).unwrap());
    }
    csms.respond(&id, Ok(answer.to_owned())).unwrap();
    let frame = csms.poll_transmit().unwrap();
    cs.handle_text(now, &frame);
    let Some(Event::CallCompleted { .. }) = cs.poll_event() else {
        panic!()
    };
}

fn bench(c: &mut Criterion) {
    let now = Instant::now();
    let mut g = c.benchmark_group("ocpp-proto round trip");
    g.throughput(Throughput::Elements(1));
    for (name, action, payload, answer, decode) in [
        (
            "Heartbeat, framing only",
            "Heartbeat",
            "{}",
            HEARTBEAT_RES,
            false,
        ),
        (
            "MeterValues, framing only",
            "MeterValues",
            METER_VALUES,
            "{}",
            false,
        ),
        (
            "MeterValues + typed decode",
            "MeterValues",
            METER_VALUES,
            "{}",
            true,
        ),
    ] {
        let mut cs = Endpoint::new(
            Role::ChargingStation,
            ProtocolVersion::V201,
            Config::default(),
        );
        let mut csms = Endpoint::new(Role::Csms, ProtocolVersion::V201, Config::default());
        cs.set_boot_state(now, BootState::Accepted);
        csms.set_boot_state(now, BootState::Accepted);
        g.bench_function(name, |b| {
            b.iter(|| exchange(&mut cs, &mut csms, now, action, payload, answer, decode))
        });
    }
    g.finish();
}

criterion_group!(roundtrip, bench);
criterion_main!(roundtrip);
