//! `cargo bench -p iso15118 --bench exi`: encode and decode ns per message.
//! So far the SupportedAppProtocol request with 5 protocols (the DIN, -2
//! and -20 messages of issue 6 follow with their codecs).
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use iso15118::app_protocol::{self, AppProtocol, Message, SupportedAppProtocolReq};

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

criterion_group!(benches, bench);
criterion_main!(benches);
