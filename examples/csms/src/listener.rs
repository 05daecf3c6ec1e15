//! The HTTP ports' front door, shared by the public and the admin listener:
//! a cap on open connections (one over it is answered 503 and closed at
//! once), a deadline for a request's headers (a client that trickles them
//! loses its connection; the same deadline ends idle kept-alive
//! connections), a stall limit on writes (a client that stops reading a
//! response is dropped), a cap on the size of a request head, and a
//! bounded graceful stop. Each request carries its connection's peer
//! address as axum's `ConnectInfo<SocketAddr>` (the app API limits
//! clients by it).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower_service::Service;

use crate::config::Config;

/// Largest request line plus headers, bytes (hyper answers 431 above it).
const MAX_HEAD: usize = 64 * 1024;
/// How long a stopping connection may finish its request.
const GRACE: Duration = Duration::from_secs(5);
/// Connections being told "503, too many" at once; beyond, they are just closed.
const REFUSALS: usize = 64;

/// The limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to send a request's headers; also how long a kept-alive connection may idle.
    pub header_timeout: Duration,
    /// Time a response write may wait for the client to read.
    pub write_timeout: Duration,
    /// Open connections.
    pub max_connections: usize,
}

impl Limits {
    /// The limits the configuration sets.
    pub fn of(config: &Config) -> Limits {
        Limits {
            header_timeout: config.http_header_timeout,
            write_timeout: config.http_idle_timeout,
            max_connections: config.http_max_connections,
        }
    }
}

/// Serves `router` on `listener` until `stop` turns true (or its sender
/// goes away), then lets open connections finish for a few seconds.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSALS));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // out of file descriptors and the like: do not spin
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Ok(r) = refusals.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    let _r = r;
                    refuse(stream).await;
                });
            }
            continue;
        };
        // each request gets the peer's address as `ConnectInfo`
        let for_peer = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            // a router is always ready (its `poll_ready` is `Ready`); a clone is a counter
            for_peer.clone().call(req)
        });
        let conn = http.serve_connection(
            TokioIo::new(Stalls::new(stream, limits.write_timeout)),
            service,
        );
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.wait_for(|s| *s) => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(GRACE, conn).await;
        });
    }
    drop(listener);
    // every connection gives its slot back within GRACE of the stop
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(GRACE * 2, slots.acquire_many(all)).await;
}

/// Tells a connection over the cap why it is closed: 503, then close after
/// reading what the client sent (closing with unread input would reset the
/// connection and lose the answer), all within a second.
async fn refuse(mut stream: TcpStream) {
    let body = r#"{"error":"too many connections"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    })
    .await;
}

/// A connection whose writes fail once they have waited `limit` for the
/// client to read.
struct Stalls {
    io: TcpStream,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stalls {
    fn new(io: TcpStream, limit: Duration) -> Stalls {
        Stalls {
            io,
            limit,
            stalled: None,
        }
    }

    /// Passes on a write's outcome, failing a pending one that waited too long.
    fn watch<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Stalls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stalls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
