//! Property tests of the transaction model: any permutation and duplication
//! of a valid event sequence (1.6 and 2.x, built from the typed messages)
//! gives the same transaction, session, energy and final state.

use chrono::{DateTime, Duration, TimeZone, Utc};
use evproto_csms_core::transaction::{Effect, Register, Status, Transaction, TxEvent};
use evproto_ocpp_types::{v16, v201};
use proptest::prelude::*;
use rust_decimal::Decimal;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap()
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Register values of a session: steps of 0..5 kWh a minute apart, with a
/// reset to a small value now and then.
fn registers() -> impl Strategy<Value = Vec<i64>> {
    (
        0i64..1_000_000,
        prop::collection::vec((0i64..5_000, prop::bool::weighted(0.15), 0i64..500), 1..8),
    )
        .prop_map(|(start, steps)| {
            let mut v = vec![start];
            let mut cur = start;
            for (step, reset, after) in steps {
                cur = if reset { after } else { cur + step };
                v.push(cur);
            }
            v
        })
}

/// Energy as the model's rules define it, computed here independently:
/// forward steps between consecutive readings (all plausible: ≤ 5 kWh a
/// minute is far below 1 MW).
fn expected_energy(regs: &[i64]) -> Decimal {
    Decimal::from(regs.windows(2).map(|w| (w[1] - w[0]).max(0)).sum::<i64>())
}

fn v2x_events(regs: &[i64]) -> Vec<TxEvent> {
    let n = regs.len();
    (0..n)
        .map(|i| {
            let (kind, ctx) = match i {
                0 => ("Started", "Transaction.Begin"),
                i if i == n - 1 && n > 1 => ("Ended", "Transaction.End"),
                _ => ("Updated", "Sample.Periodic"),
            };
            let t = iso(t0() + Duration::minutes(i as i64));
            let extra = match kind {
                "Started" => r#","idToken":{"idToken":"04A1B2","type":"ISO14443"},"evse":{"id":2,"connectorId":1}"#.to_owned(),
                "Ended" => String::new(),
                _ => String::new(),
            };
            let stopped = if kind == "Ended" { r#","stoppedReason":"EVDisconnected""# } else { "" };
            let json = format!(
                r#"{{"eventType":"{kind}","timestamp":"{t}","triggerReason":"MeterValuePeriodic","seqNo":{i},
                "transactionInfo":{{"transactionId":"TX-9"{stopped}}}{extra},
                "meterValue":[{{"timestamp":"{t}","sampledValue":[{{"value":{v},"context":"{ctx}"}}]}}]}}"#,
                v = regs[i]
            );
            let msg: v201::TransactionEventRequest = serde_json::from_str(&json).unwrap();
            TxEvent::from(&msg)
        })
        .collect()
}

fn v16_events(regs: &[i64]) -> Vec<TxEvent> {
    let n = regs.len();
    let mut out = Vec::new();
    let start: v16::StartTransactionRequest = serde_json::from_str(&format!(
        r#"{{"connectorId":2,"idTag":"CARD1","meterStart":{},"timestamp":"{}"}}"#,
        regs[0],
        iso(t0())
    ))
    .unwrap();
    out.push(TxEvent::from(&start));
    for (i, v) in regs.iter().enumerate().take(n.saturating_sub(1)).skip(1) {
        let mv: v16::MeterValuesRequest = serde_json::from_str(&format!(
            r#"{{"connectorId":2,"transactionId":7,"meterValue":[{{"timestamp":"{}","sampledValue":[{{"value":"{}","measurand":"Energy.Active.Import.Register","unit":"Wh"}}]}}]}}"#,
            iso(t0() + Duration::minutes(i as i64)),
            v
        ))
        .unwrap();
        out.push(TxEvent::from(&mv));
    }
    if n > 1 {
        let stop: v16::StopTransactionRequest = serde_json::from_str(&format!(
            r#"{{"transactionId":7,"meterStop":{},"timestamp":"{}","reason":"EVDisconnected"}}"#,
            regs[n - 1],
            iso(t0() + Duration::minutes(n as i64 - 1))
        ))
        .unwrap();
        out.push(TxEvent::from(&stop));
    }
    out
}

/// Applies `events` in the given order; checks the effects are those of a
/// session (opened once, completed at most once) and returns the model.
fn run(events: &[TxEvent]) -> Transaction {
    let mut tx = Transaction::default();
    let (mut opened, mut completed) = (0, 0);
    for e in events {
        let a = tx.apply(e);
        opened += a.effects.iter().filter(|e| **e == Effect::Opened).count();
        completed += a
            .effects
            .iter()
            .filter(|e| **e == Effect::Completed)
            .count();
    }
    assert_eq!(opened, 1, "opened exactly once");
    assert_eq!(
        completed,
        usize::from(tx.is_completed()),
        "completed at most once"
    );
    tx
}

/// A permutation of the events with some of them repeated.
fn shuffled_with_duplicates(
    events: Vec<TxEvent>,
) -> impl Strategy<Value = (Vec<TxEvent>, Vec<TxEvent>)> {
    let n = events.len();
    (prop::collection::vec(0..n, 0..4), Just(events)).prop_flat_map(|(dups, events)| {
        let mut all = events.clone();
        all.extend(dups.into_iter().map(|i| events[i].clone()));
        (Just(events), Just(all).prop_shuffle())
    })
}

fn check(in_order: &[TxEvent], any_order: &[TxEvent], regs: &[i64]) {
    let a = run(in_order);
    let b = run(any_order);
    assert_eq!(a, b, "same transaction whatever the order");
    let s = b.summary();
    assert_eq!(s, a.summary());
    assert!(s.energy_wh(Register::Import) >= Decimal::ZERO);
    if regs.len() > 1 {
        assert_eq!(s.status, Status::Completed);
        assert_eq!(s.energy_wh(Register::Import), expected_energy(regs));
        assert_eq!(s.started_at, Some(t0()));
    } else {
        assert_eq!(s.status, Status::Active);
    }
    assert_eq!(s.evse.map(|e| e.evse_id), Some(2));
    assert!(s.id_token.is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn v2x_any_order_and_duplication_gives_the_same_session(
        (regs, (in_order, any_order)) in registers().prop_flat_map(|r| {
            let evs = v2x_events(&r);
            (Just(r), shuffled_with_duplicates(evs))
        })
    ) {
        check(&in_order, &any_order, &regs);
    }

    #[test]
    fn v16_any_order_and_duplication_gives_the_same_session(
        (regs, (in_order, any_order)) in registers().prop_flat_map(|r| {
            let evs = v16_events(&r);
            (Just(r), shuffled_with_duplicates(evs))
        })
    ) {
        check(&in_order, &any_order, &regs);
    }

    /// Without its Started event the session still completes, starts at the
    /// earliest event left and bills the readings it has.
    #[test]
    fn v2x_missing_started_is_reconstructed(regs in registers().prop_filter("3+", |r| r.len() >= 3)) {
        let events = v2x_events(&regs);
        let tx = run(&events[1..]);
        let s = tx.summary();
        prop_assert_eq!(s.status, Status::Completed);
        prop_assert_eq!(s.started_at, Some(t0() + Duration::minutes(1)));
        prop_assert_eq!(s.energy_wh(Register::Import), expected_energy(&regs[1..]));
    }
}
