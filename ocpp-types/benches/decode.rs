//! Decode+validate and encode, ns/message and MB/s, beside the jsonschema
//! crate validating the same payloads against the official schemas.
//!
//! `cargo bench -p evproto-ocpp-types --bench decode`

#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use evproto_ocpp_types::{v16, v201, Action};
use serde_json::Value;

const BOOT_V16: &str = r#"{"chargePointVendor":"VendorX","chargePointModel":"SingleSocketCharger","chargePointSerialNumber":"SN-0001-2345","chargeBoxSerialNumber":"CB-0001","firmwareVersion":"1.2.3-rc4","iccid":"8931440400000000001","imsi":"310150123456789","meterType":"ACME 3ph","meterSerialNumber":"M-123456"}"#;

const METER_VALUES_V16: &str = r#"{"connectorId":1,"transactionId":123456,"meterValue":[{"timestamp":"2024-05-01T10:15:00Z","sampledValue":[{"value":"12345.6","context":"Sample.Periodic","format":"Raw","measurand":"Energy.Active.Import.Register","location":"Outlet","unit":"Wh"},{"value":"7200","context":"Sample.Periodic","measurand":"Power.Active.Import","unit":"W"},{"value":"16.1","context":"Sample.Periodic","measurand":"Current.Import","phase":"L1","unit":"A"},{"value":"16.0","context":"Sample.Periodic","measurand":"Current.Import","phase":"L2","unit":"A"},{"value":"15.9","context":"Sample.Periodic","measurand":"Current.Import","phase":"L3","unit":"A"},{"value":"230.1","context":"Sample.Periodic","measurand":"Voltage","phase":"L1-N","unit":"V"},{"value":"229.8","context":"Sample.Periodic","measurand":"Voltage","phase":"L2-N","unit":"V"},{"value":"231.0","context":"Sample.Periodic","measurand":"Voltage","phase":"L3-N","unit":"V"},{"value":"55","context":"Sample.Periodic","measurand":"SoC","location":"EV","unit":"Percent"},{"value":"31.5","context":"Sample.Periodic","measurand":"Temperature","location":"Body","unit":"Celsius"}]}]}"#;

const TRANSACTION_EVENT_V201: &str = r#"{"eventType":"Updated","timestamp":"2024-05-01T10:15:00.000Z","triggerReason":"MeterValuePeriodic","seqNo":12,"offline":false,"transactionInfo":{"transactionId":"f0e1d2c3-b4a5-4697-8877-665544332211","chargingState":"Charging"},"evse":{"id":1,"connectorId":1},"idToken":{"idToken":"04A2B3C4D5E6F7","type":"ISO14443"},"meterValue":[{"timestamp":"2024-05-01T10:15:00.000Z","sampledValue":[{"value":12345.6,"context":"Sample.Periodic","measurand":"Energy.Active.Import.Register","unitOfMeasure":{"unit":"Wh"}},{"value":7200,"context":"Sample.Periodic","measurand":"Power.Active.Import","unitOfMeasure":{"unit":"W"}},{"value":16.1,"context":"Sample.Periodic","measurand":"Current.Import","phase":"L1"},{"value":230.1,"context":"Sample.Periodic","measurand":"Voltage","phase":"L1-N"}]}]}"#;

fn schema(text: &str) -> jsonschema::Validator {
    let v: Value = serde_json::from_str(text.trim_start_matches('\u{feff}')).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&v)
        .unwrap()
}

fn bench<T: evproto_ocpp_types::Message>(
    c: &mut Criterion,
    name: &str,
    payload: &str,
    schema_text: &str,
) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("evproto decode+validate", |b| {
        b.iter(|| evproto_ocpp_types::from_str::<T>(black_box(payload)).unwrap())
    });
    let value: T = evproto_ocpp_types::from_str(payload).unwrap();
    g.bench_function("evproto encode", |b| {
        b.iter(|| evproto_ocpp_types::to_json(black_box(&value)))
    });
    let validator = schema(schema_text);
    g.bench_function("jsonschema parse+validate", |b| {
        b.iter(|| {
            let doc: Value = serde_json::from_str(black_box(payload)).unwrap();
            assert!(validator.is_valid(&doc));
        })
    });
    let doc: Value = serde_json::from_str(payload).unwrap();
    g.bench_function("jsonschema validate only (pre-parsed)", |b| {
        b.iter(|| validator.is_valid(black_box(&doc)))
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench::<v16::BootNotificationRequest>(
        c,
        "v16 BootNotification",
        BOOT_V16,
        v16::action::BootNotification::REQUEST_SCHEMA,
    );
    bench::<v16::MeterValuesRequest>(
        c,
        "v16 MeterValues (10 sampled values)",
        METER_VALUES_V16,
        v16::action::MeterValues::REQUEST_SCHEMA,
    );
    bench::<v201::TransactionEventRequest>(
        c,
        "v201 TransactionEvent",
        TRANSACTION_EVENT_V201,
        v201::action::TransactionEvent::REQUEST_SCHEMA,
    );
}

criterion_group!(decode, benches);
criterion_main!(decode);
