//! `cargo bench -p evproto-ocpi`: the figures issue 5 asks for.
//!
//! - `price/100_periods_3_elements`: price a CDR with 100 charging periods
//!   under a tariff whose three elements split the day (`evproto_ocpi::tariff`),
//!   from JSON and from parsed structs;
//! - `running/update_after_{100,10000}_periods`: one running-cost update
//!   (`Pricer::total_at`: the priced periods so far plus one open period)
//!   after 100 and after 10,000 periods; the two figures should be alike
//!   (an update costs the same whatever the session's length);
//! - `locations/page_of_100`: decode and validate a page of 100 locations
//!   (2.2.1 envelope, typed `v221::Location`s), and the same page as plain
//!   `serde_json::Value` for comparison.

#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};

fn tariff() -> Value {
    json!({"id": "T", "currency": "EUR", "elements": [
        {"price_components": [{"type": "ENERGY", "price": 0.35, "vat": 21, "step_size": 1},
                              {"type": "TIME", "price": 1.2, "vat": 21, "step_size": 60}],
         "restrictions": {"start_time": "07:00", "end_time": "19:00"}},
        {"price_components": [{"type": "ENERGY", "price": 0.25, "vat": 21, "step_size": 1}],
         "restrictions": {"start_time": "19:00", "end_time": "07:00"}},
        {"price_components": [{"type": "FLAT", "price": 0.5, "vat": 21, "step_size": 1},
                              {"type": "PARKING_TIME", "price": 2, "vat": 21, "step_size": 300}]}]})
}

fn cdr() -> Value {
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-02T16:00:00Z").unwrap();
    let periods: Vec<Value> = (0..100)
        .map(|i| {
            let t = start + chrono::Duration::minutes(6 * i);
            let dims = if i < 90 {
                json!([{"type": "ENERGY", "volume": 1.1}, {"type": "TIME", "volume": 0.1}])
            } else {
                json!([{"type": "PARKING_TIME", "volume": 0.1}])
            };
            json!({"start_date_time": t.to_rfc3339(), "dimensions": dims})
        })
        .collect();
    let end = start + chrono::Duration::minutes(600);
    json!({"start_date_time": start.to_rfc3339(), "end_date_time": end.to_rfc3339(), "charging_periods": periods})
}

fn location(i: usize) -> Value {
    json!({
        "country_code": "NL", "party_id": "CPO", "id": format!("LOC{i:05}"), "publish": true,
        "name": "Gent Zuid", "address": "F.Rooseveltlaan 3A", "city": "Gent", "postal_code": "9000",
        "country": "BEL", "coordinates": {"latitude": "51.047599", "longitude": "3.729944"},
        "parking_type": "ON_STREET", "time_zone": "Europe/Brussels",
        "evses": (0..2).map(|e| json!({
            "uid": format!("{i}-{e}"), "evse_id": format!("BE*BEC*E{i:05}{e}"), "status": "AVAILABLE",
            "capabilities": ["RESERVABLE", "RFID_READER"],
            "connectors": [{"id": "1", "standard": "IEC_62196_T2", "format": "CABLE", "power_type": "AC_3_PHASE",
                "max_voltage": 220, "max_amperage": 16, "tariff_ids": ["11"], "last_updated": "2015-03-16T10:10:02Z"}],
            "physical_reference": "1", "floor_level": "-1", "last_updated": "2015-06-28T08:12:01Z"})).collect::<Vec<_>>(),
        "operator": {"name": "BeCharged"}, "opening_times": {"twentyfourseven": true},
        "last_updated": "2015-06-29T20:39:09Z"
    })
}

fn bench(c: &mut Criterion) {
    let t = tariff();
    let s = cdr();
    c.bench_function("price/100_periods_3_elements", |b| {
        b.iter(|| {
            evproto_ocpi::tariff::price_json(
                black_box(&t),
                black_box(&s),
                Some("Europe/Amsterdam"),
                evproto_ocpi::tariff::Version::V221,
            )
            .unwrap()
        })
    });
    let tp = evproto_ocpi::tariff::Tariff::from_json(&t).unwrap();
    let sp = evproto_ocpi::tariff::Session::from_json(&s).unwrap();
    c.bench_function("price/100_periods_3_elements/parsed", |b| {
        b.iter(|| {
            evproto_ocpi::tariff::price(black_box(&tp), black_box(&sp), Some("Europe/Amsterdam"))
                .unwrap()
        })
    });

    for n in [100i64, 10_000] {
        let start: chrono::DateTime<chrono::Utc> = "2026-03-02T16:00:00Z".parse().unwrap();
        let mut pricer = evproto_ocpi::tariff::Pricer::new(
            vec![std::sync::Arc::new(tp.clone())],
            start,
            &evproto_ocpi::tariff::Zone::Named("Europe/Amsterdam".into()),
        )
        .unwrap()
        .without_lines();
        let period = |i: i64| evproto_ocpi::tariff::ChargingPeriod {
            start_date_time: start + chrono::Duration::seconds(30 * i),
            energy: Some(rust_decimal::Decimal::new(9, 2)),
            time: Some(rust_decimal::Decimal::new(83, 4)),
            ..Default::default()
        };
        for i in 0..n {
            pricer.push(period(i), Some(0)).unwrap();
        }
        let end = start + chrono::Duration::seconds(30 * (n + 1));
        c.bench_function(&format!("running/update_after_{n}_periods"), |b| {
            b.iter(|| black_box(&pricer).total_at(Some(period(n)), end).unwrap())
        });
    }

    let page = json!({"status_code": 1000, "timestamp": "2026-01-01T00:00:00Z",
        "data": (0..100).map(location).collect::<Vec<_>>()})
    .to_string();
    #[derive(serde::Deserialize)]
    struct Envelope {
        data: Vec<evproto_ocpi::v221::Location>,
    }
    c.bench_function("locations/page_of_100/typed", |b| {
        b.iter(|| {
            let e: Envelope = serde_json::from_str(black_box(&page)).unwrap();
            assert_eq!(e.data.len(), 100);
            e
        })
    });
    c.bench_function("locations/page_of_100/serde_json_value", |b| {
        b.iter(|| serde_json::from_str::<Value>(black_box(&page)).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
