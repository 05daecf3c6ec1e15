//! A Heartbeat CALL and its CALLRESULT from `ocpp-client` to `ocpp-server`
//! over a loopback WebSocket: sequential round trips (latency) and 64
//! concurrent stations (throughput), in one run.
//!
//! `cargo bench -p evproto-ocpp-server --bench loopback`

#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use evproto_ocpp_client::{Client, ClientConfig, MemoryStore};
use evproto_ocpp_proto::{CallError, ProtocolVersion};
use evproto_ocpp_rpc::{Ctx, Router};
use evproto_ocpp_server::{Security, Server, ServerConfig};
use evproto_ocpp_types::v201::{self, action};

async fn heartbeat(
    _: Ctx<()>,
    _: v201::HeartbeatRequest,
) -> Result<v201::HeartbeatResponse, CallError> {
    Ok(v201::HeartbeatResponse {
        custom_data: None,
        current_time: chrono::Utc::now(),
    })
}

async fn boot(
    _: Ctx<()>,
    _: v201::BootNotificationRequest,
) -> Result<v201::BootNotificationResponse, CallError> {
    Ok(v201::BootNotificationResponse {
        custom_data: None,
        current_time: chrono::Utc::now(),
        interval: 3600,
        status: v201::RegistrationStatusEnumType::Accepted,
        status_info: None,
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("loopback WebSocket");
    for deflate in [false, true] {
        let clients = rt.block_on(async {
            let server = Server::builder(Security::unsecured())
                .config(ServerConfig::default().with_permessage_deflate(deflate))
                .v201(
                    Router::csms_v201()
                        .on::<action::BootNotification>(boot)
                        .on::<action::Heartbeat>(heartbeat)
                        .into_routes(),
                )
                .build();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move { server.serve(listener, std::future::pending()).await });
            let boot = r#"{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"V"}}"#;
            let mut clients = Vec::new();
            for i in 0..64 {
                let cfg = ClientConfig::new(
                    format!("ws://127.0.0.1:{port}/ocpp/"),
                    format!("B{i}"),
                    ProtocolVersion::V201,
                )
                .with_permessage_deflate(deflate);
                let client = Client::start(
                    cfg,
                    Router::station_v201().into_routes(),
                    boot,
                    MemoryStore::new(),
                );
                client.wait_ready(Duration::from_secs(10)).await.unwrap();
                clients.push(client);
            }
            clients
        });
        let label = if deflate {
            "yawc, permessage-deflate"
        } else {
            "tungstenite, uncompressed"
        };
        let one = clients[0].peer().unwrap();
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("Heartbeat round trip, 1 station ({label})"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    one.call::<action::Heartbeat>(&Default::default())
                        .await
                        .unwrap()
                })
            })
        });
        let peers: Vec<_> = clients.iter().map(|c| c.peer().unwrap()).collect();
        g.throughput(Throughput::Elements(peers.len() as u64));
        g.bench_function(
            format!("Heartbeat round trips, 64 stations concurrently ({label})"),
            |b| {
                b.iter(|| {
                    rt.block_on(async {
                        let mut tasks = tokio::task::JoinSet::new();
                        for p in &peers {
                            let p = p.clone();
                            tasks.spawn(async move {
                                p.call::<action::Heartbeat>(&Default::default())
                                    .await
                                    .unwrap()
                            });
                        }
                        while tasks.join_next().await.is_some() {}
                    })
                })
            },
        );
    }
    g.finish();
}

criterion_group!(loopback, bench);
criterion_main!(loopback);
