//! `cargo bench -p evproto-iso15118 --bench exi`: encode and decode ns per message.
//! The SupportedAppProtocol request with 5 protocols (typed codec), and DIN
//! CurrentDemandReq/Res, -2 ChargeParameterDiscoveryRes with a sales tariff
//! and -20 DC_ChargeLoopReq both through the generated typed codecs
//! (`evproto_iso15118::messages`, `typed/…`) and through the XSD-driven engine over
//! its JSON view (`json/…`), side by side in one run.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use evproto_iso15118::app_protocol::{self, AppProtocol, Message, SupportedAppProtocolReq};

fn bench(c: &mut Criterion) {
    let p = |ns: &str, major, id, prio| AppProtocol {
        protocol_namespace: ns.into(),
        version_number_major: major,
        version_number_minor: 0,
        schema_id: id,
        priority: prio,
    };
    let m = Message::Req(SupportedAppProtocolReq {
        app_protocols: vec![
            p("urn:iso:std:iso:15118:-20:DC", 1, 1, 1),
            p("urn:iso:std:iso:15118:-20:AC", 1, 2, 2),
            p("urn:iso:15118:2:2013:MsgDef", 2, 3, 3),
            p("urn:din:70121:2012:MsgDef", 2, 4, 4),
            p("urn:tesla:din:2018:MsgDef", 2, 5, 5),
        ],
    });
    let mut bytes = Vec::new();
    app_protocol::encode(&m, &mut bytes);
    c.bench_function("app_protocol/req_5_protocols/encode", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(256);
            app_protocol::encode(black_box(&m), &mut out);
            out
        })
    });
    c.bench_function("app_protocol/req_5_protocols/decode", |b| {
        b.iter(|| app_protocol::decode(black_box(&bytes)).unwrap())
    });
}

/// The XSD-driven engine (`evproto_iso15118::schema`) over its JSON view: the
/// charge-loop messages of issue 6.
fn schema_sets(c: &mut Criterion) {
    let pv =
        |unit: &str, value: i64| serde_json::json!({"Multiplier": 0, "Unit": unit, "Value": value});
    let ev_status =
        serde_json::json!({"EVReady": true, "EVErrorCode": "NO_ERROR", "EVRESSSOC": 55});
    let evse_status = serde_json::json!({"EVSEIsolationStatus": "Valid", "EVSEStatusCode": "EVSE_Ready", "NotificationMaxDelay": 0, "EVSENotification": "None"});
    let msg = |body: serde_json::Value| serde_json::json!({"V2G_Message": {"Header": {"SessionID": "0102030405060708"}, "Body": body}});
    let rational = |v: i64| serde_json::json!({"Value": v, "Exponent": 0});
    let cases = [
        (
            "din",
            "din/CurrentDemandReq",
            msg(
                serde_json::json!({"CurrentDemandReq": {"DC_EVStatus": ev_status, "EVTargetCurrent": pv("A", 100),
            "ChargingComplete": false, "EVTargetVoltage": pv("V", 400)}}),
            ),
        ),
        (
            "din",
            "din/CurrentDemandRes",
            msg(
                serde_json::json!({"CurrentDemandRes": {"ResponseCode": "OK", "DC_EVSEStatus": evse_status,
            "EVSEPresentVoltage": pv("V", 398), "EVSEPresentCurrent": pv("A", 99), "EVSECurrentLimitAchieved": false,
            "EVSEVoltageLimitAchieved": false, "EVSEPowerLimitAchieved": false, "EVSEMaximumCurrentLimit": pv("A", 200)}}),
            ),
        ),
        (
            "iso2",
            "iso2/ChargeParameterDiscoveryRes+SalesTariff",
            msg(
                serde_json::json!({"ChargeParameterDiscoveryRes": {"ResponseCode": "OK", "EVSEProcessing": "Finished",
            "SAScheduleList": {"SAScheduleTuple": [{"SAScheduleTupleID": 1, "PMaxSchedule": {"PMaxScheduleEntry": [
                {"RelativeTimeInterval": {"start": 0, "duration": 86400}, "PMax": {"Multiplier": 0, "Unit": "W", "Value": 11000}}]},
                "SalesTariff": {"Id": "tariff1", "SalesTariffID": 1, "SalesTariffDescription": "day/night", "NumEPriceLevels": 2,
                    "SalesTariffEntry": [
                        {"RelativeTimeInterval": {"start": 0}, "EPriceLevel": 1, "ConsumptionCost": [
                            {"startValue": pv("Wh", 0), "Cost": [{"costKind": "relativePricePercentage", "amount": 80}]}]},
                        {"RelativeTimeInterval": {"start": 21600}, "EPriceLevel": 2, "ConsumptionCost": [
                            {"startValue": pv("Wh", 0), "Cost": [{"costKind": "relativePricePercentage", "amount": 100}]},
                            {"startValue": {"Multiplier": 3, "Unit": "Wh", "Value": 20}, "Cost": [{"costKind": "relativePricePercentage", "amount": 120}]}]},
                        {"RelativeTimeInterval": {"start": 79200, "duration": 7200}, "EPriceLevel": 1}]}}]},
            "DC_EVSEChargeParameter": {"DC_EVSEStatus": {"EVSEIsolationStatus": "Valid", "EVSEStatusCode": "EVSE_Ready", "NotificationMaxDelay": 0, "EVSENotification": "None"},
                "EVSEMaximumCurrentLimit": pv("A", 200), "EVSEMaximumPowerLimit": {"Multiplier": 3, "Unit": "W", "Value": 50}, "EVSEMaximumVoltageLimit": pv("V", 500),
                "EVSEMinimumCurrentLimit": pv("A", 0), "EVSEMinimumVoltageLimit": pv("V", 150), "EVSEPeakCurrentRipple": pv("A", 1)}}}),
            ),
        ),
        (
            "iso20-dc",
            "iso20-dc/DC_ChargeLoopReq",
            serde_json::json!({"DC_ChargeLoopReq": {"Header": {"SessionID": "0102030405060708", "TimeStamp": 1_700_000_000},
            "DisplayParameters": {"PresentSOC": 50}, "MeterInfoRequested": false, "EVPresentVoltage": rational(400),
            "Scheduled_DC_CLReqControlMode": {"EVTargetCurrent": rational(100), "EVTargetVoltage": rational(400)}}}),
        ),
    ];
    // the bytes a PnC EVCC signs: SignedInfo as an xmldsig fragment
    let signed_info = serde_json::json!({"SignedInfo": {
        "CanonicalizationMethod": {"Algorithm": "http://www.w3.org/TR/canonical-exi/"},
        "SignatureMethod": {"Algorithm": "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"},
        "Reference": [{"URI": "#id1",
            "Transforms": {"Transform": [{"Algorithm": "http://www.w3.org/TR/canonical-exi/"}]},
            "DigestMethod": {"Algorithm": "http://www.w3.org/2001/04/xmlenc#sha256"},
            "DigestValue": "AAECAwQFBgcICQoLDA0ODwABAgMEBQYHCAkKCwwNDg8="}]}});
    let dsig = evproto_iso15118::schema::by_name(evproto_iso15118::schema::XMLDSIG.0).unwrap();
    c.bench_function("xmldsig/SignedInfo/encode_fragment", |b| {
        b.iter(|| dsig.encode_fragment(black_box(&signed_info)).unwrap())
    });
    for (set, name, m) in cases {
        let schema = evproto_iso15118::schema::by_name(set).unwrap();
        let bytes = schema.encode(&m).unwrap_or_else(|e| panic!("{name}: {e}"));
        macro_rules! typed {
            ($module:ident) => {{
                use evproto_iso15118::messages::$module::Message;
                let t = Message::decode(&bytes).unwrap();
                let mut again = Vec::new();
                t.encode(&mut again).unwrap();
                assert_eq!(again, bytes, "{name}: typed bytes differ");
                c.bench_function(&format!("typed/{name}/encode"), |b| {
                    b.iter(|| {
                        let mut out = Vec::with_capacity(256);
                        black_box(&t).encode(&mut out).unwrap();
                        out
                    })
                });
                c.bench_function(&format!("typed/{name}/decode"), |b| {
                    b.iter(|| Message::decode(black_box(&bytes)).unwrap())
                });
            }};
        }
        match set {
            "din" => typed!(din),
            "iso2" => typed!(iso2),
            _ => typed!(iso20_dc),
        }
        c.bench_function(&format!("json/{name}/encode"), |b| {
            b.iter(|| schema.encode(black_box(&m)).unwrap())
        });
        c.bench_function(&format!("json/{name}/decode"), |b| {
            b.iter(|| schema.decode(black_box(&bytes)).unwrap())
        });
    }
}

criterion_group!(benches, bench, schema_sets);
criterion_main!(benches);
