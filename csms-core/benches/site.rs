//! A site of 1,000 sessions: what the CSMS recomputes after a limit change
//! or a grid event (the allocation of the limit now, and the plan of the
//! next 24 hours in 15-minute slots with prices and V2X discharge).

#![allow(missing_docs)] // criterion's generated functions

use chrono::{Duration, TimeZone, Utc};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use evproto_csms_core::limits::{allocate, Session, Site};
use evproto_csms_core::planner::{plan, EvInput, PlanRequest};
use rust_decimal::Decimal;

fn site(c: &mut Criterion) {
    let t0 = Utc.with_ymd_and_hms(2026, 6, 1, 16, 0, 0).unwrap();
    let kw = |x: i64| Decimal::from(x * 1000);
    let sessions: Vec<Session> = (0..1000)
        .map(|i| Session::new(format!("S{i:04}"), 1, 3, kw(11 + i % 12), t0))
        .collect();
    let limit = Site::new(kw(4_000));
    c.bench_function("allocate 1,000 sessions", |b| {
        b.iter(|| allocate(black_box(&limit), black_box(&sessions)).map(|a| a.len()))
    });
    let slots = 96;
    let mut req = PlanRequest::new(t0, Duration::minutes(15), vec![kw(4_000); slots]);
    req.export_w = vec![kw(1_000); slots];
    // evening peak, cheap night
    req.price = (0..slots)
        .map(|s| Decimal::new(if (8..20).contains(&(s / 4)) { 10 } else { 38 }, 2))
        .collect();
    let evs: Vec<EvInput> = (0..1000)
        .map(|i| {
            let mut ev = EvInput::new(
                format!("S{i:04}"),
                kw(10 + i % 40),
                t0 + Duration::hours(8 + i % 12),
                kw(11 + i % 12),
            );
            ev.priority = i32::from(i % 10 == 0);
            if i % 4 == 0 {
                ev.max_discharge_w = kw(7);
                ev.battery = Some((kw(75), kw(40), kw(15)));
            }
            ev
        })
        .collect();
    c.bench_function("plan 1,000 sessions x 96 slots", |b| {
        b.iter(|| plan(black_box(&req), black_box(&evs)).map(|p| p.cost))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = site
}
criterion_main!(benches);
