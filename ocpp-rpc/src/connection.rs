//! The per-connection task: moves text between the WebSocket and the sans-IO
//! endpoint, runs handlers, and serves the peer handle's commands.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use evproto_ocpp_proto::{BootState, CallError, CallHandle, Endpoint, Event};
use futures_util::FutureExt as _;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::transport::{Incoming, Transport, TransportError};

use crate::peer::{CallFailure, Command, Peer};
use crate::router::{Ctx, Routes};

/// Keepalive and limits of one connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionConfig {
    /// Send a WebSocket ping this often (`None`: never). Default 30 s.
    pub ping_interval: Option<Duration>,
    /// Close the connection after this long without any frame from the peer
    /// (pongs count). Default 90 s.
    pub idle_timeout: Duration,
    /// Depth of the command queue of the peer handle (calls beyond it wait
    /// for room, they are not refused). Default 8.
    pub command_queue: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            ping_interval: Some(Duration::from_secs(30)),
            idle_timeout: Duration::from_secs(90),
            command_queue: 8,
        }
    }
}

impl ConnectionConfig {
    /// Sets [`ConnectionConfig::ping_interval`].
    pub fn with_ping_interval(mut self, d: Option<Duration>) -> Self {
        self.ping_interval = d;
        self
    }
    /// Sets [`ConnectionConfig::idle_timeout`].
    pub fn with_idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }
}

/// What a connection reports to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The boot state changed.
    Boot(BootState),
    /// A 2.1 SEND message arrived (action, payload JSON).
    Send {
        /// Action.
        action: &'static str,
        /// Payload JSON text.
        payload: String,
    },
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Closed {
    /// The peer closed (with its close code, if any).
    ByPeer(Option<u16>),
    /// Closed locally (`Peer::close`, replaced, shutdown).
    Locally,
    /// No frame from the peer within the idle timeout.
    IdleTimeout,
    /// The transport failed.
    Transport(TransportError),
}

/// One connection: the endpoint, the socket, the routes.
pub struct Connection<T> {
    ws: T,
    endpoint: Endpoint,
    routes: Routes,
    identity: Arc<str>,
    config: ConnectionConfig,
    cmd_tx: mpsc::Sender<Box<Command>>,
    cmd_rx: mpsc::Receiver<Box<Command>>,
    events: Option<EventSink>,
}

/// Receives a connection's events, synchronously, on the connection's task
/// (keep it cheap: forward, don't process).
pub type EventSink = Box<dyn Fn(ConnectionEvent) + Send + Sync>;

impl<T> std::fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("identity", &self.identity)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Connection<T> {
    /// Wraps an accepted or connected WebSocket. `identity` is the station's
    /// identity (on both sides).
    pub fn new(
        ws: T,
        endpoint: Endpoint,
        routes: Routes,
        identity: Arc<str>,
        config: ConnectionConfig,
    ) -> Self {
        let (cmd_tx, cmd_rx) = mpsc::channel(config.command_queue.max(1));
        Self {
            ws,
            endpoint,
            routes,
            identity,
            config,
            cmd_tx,
            cmd_rx,
            events: None,
        }
    }

    /// Reports boot changes and SEND messages to `tx`.
    pub fn with_events(mut self, sink: impl Fn(ConnectionEvent) + Send + Sync + 'static) -> Self {
        self.events = Some(Box::new(sink));
        self
    }

    /// A handle for calls to the peer.
    pub fn peer(&self) -> Peer {
        Peer {
            identity: self.identity.clone(),
            version: self.endpoint.version(),
            tx: self.cmd_tx.clone(),
        }
    }

    /// Runs the connection until it closes.
    pub async fn run(mut self) -> Closed {
        // `peer` (given to handlers) keeps the command channel open while we run.
        let peer = self.peer();

        let mut pending: HashMap<CallHandle, oneshot::Sender<Result<String, CallFailure>>> =
            HashMap::new();
        let mut last_seen = Instant::now();
        let mut ping = self
            .config
            .ping_interval
            .map(|d| tokio::time::interval_at(Instant::now() + d, d));
        let closed = loop {
            // Drain outputs in the endpoint's documented order.
            while let Some(text) = self.endpoint.poll_transmit() {
                if let Err(e) = self.ws.feed_text(text).await {
                    return Closed::Transport(e);
                }
            }
            if let Err(e) = self.ws.flush().await {
                return Closed::Transport(e);
            }
            while let Some(ev) = self.endpoint.poll_event() {
                self.on_event(ev, &peer, &mut pending);
            }
            let deadline = self.endpoint.poll_timeout().map(Instant::from_std);
            let idle_deadline = last_seen + self.config.idle_timeout;
            tokio::select! {
                msg = self.ws.recv() => match msg {
                    Some(Ok(Incoming::Text(t))) => {
                        last_seen = Instant::now();
                        self.endpoint.handle_text(Instant::now().into_std(), &t);
                    }
                    Some(Ok(Incoming::Binary)) => {
                        // OCPP-J is text only (1.6 §3.1, 2.0.1 Part 4 §3): close with 1003.
                        self.ws.close(1003, "OCPP-J uses text frames").await;
                        break Closed::Locally;
                    }
                    Some(Ok(Incoming::Close(code))) => break Closed::ByPeer(code),
                    Some(Ok(_)) => last_seen = Instant::now(), // ping, pong (the WebSocket layer answers pings)
                    Some(Err(e)) => break Closed::Transport(e),
                    None => break Closed::ByPeer(None),
                },
                cmd = self.cmd_rx.recv() => match cmd.map(|c| *c) {
                    Some(Command::Call { action, payload, reply }) => {
                        match self.endpoint.send_call(Instant::now().into_std(), action, payload) {
                            Ok(h) => { pending.insert(h, reply); }
                            Err(e) => { let _ = reply.send(Err(CallFailure::Refused(e))); }
                        }
                    }
                    Some(Command::Send { action, payload, reply }) => {
                        let r = self.endpoint.send_message(action, &payload).map_err(CallFailure::Refused);
                        let _ = reply.send(r);
                    }
                    Some(Command::Close { reason }) => {
                        self.ws.close(1000, &reason).await;
                        break Closed::Locally;
                    }
                    Some(Command::Respond { id, result }) => {
                        if let Err(e) = self.endpoint.respond(&id, result) {
                            warn!(identity = %self.identity, "respond: {e}");
                        }
                    }
                    None => unreachable_closed(),
                },
                () = sleep_until_opt(deadline) => self.endpoint.handle_timeout(Instant::now().into_std()),
                () = tokio::time::sleep_until(idle_deadline) => {
                    self.ws.close(1001, "idle timeout").await;
                    break Closed::IdleTimeout;
                }
                _ = tick_opt(&mut ping) => {
                    if let Err(e) = self.ws.ping().await {
                        break Closed::Transport(e);
                    }
                }
            }
        };
        // the call on the wire may have reached the peer; the queued ones did not
        let on_the_wire = self.endpoint.outstanding_call();
        for (handle, reply) in pending.drain() {
            let failure = if Some(handle) == on_the_wire {
                CallFailure::ConnectionLost
            } else {
                CallFailure::NotConnected
            };
            let _ = reply.send(Err(failure));
        }
        debug!(identity = %self.identity, ?closed, "connection closed");
        closed
    }

    fn on_event(
        &mut self,
        ev: Event,
        peer: &Peer,
        pending: &mut HashMap<CallHandle, oneshot::Sender<Result<String, CallFailure>>>,
    ) {
        match ev {
            Event::IncomingCall {
                id,
                action,
                payload,
            } => {
                let ctx = Ctx {
                    identity: self.identity.clone(),
                    version: self.endpoint.version(),
                    peer: peer.clone(),
                    state: (),
                };
                let fut = self.routes.dispatch(action, ctx, &payload);
                let tx = self.cmd_tx.clone();
                tokio::spawn(async move {
                    // A panicking handler must not take the connection down:
                    // it answers InternalError instead.
                    let result = std::panic::AssertUnwindSafe(fut)
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| Err(CallError::internal()));
                    let _ = tx.send(Box::new(Command::Respond { id, result })).await;
                });
            }
            Event::IncomingSend {
                action, payload, ..
            } => self.emit(ConnectionEvent::Send { action, payload }),
            Event::CallCompleted { handle, result, .. } => {
                if let Some(reply) = pending.remove(&handle) {
                    let _ = reply.send(result.map_err(CallFailure::CallError));
                }
            }
            Event::CallTimedOut { handle, .. } => {
                if let Some(reply) = pending.remove(&handle) {
                    let _ = reply.send(Err(CallFailure::Timeout));
                }
            }
            Event::BootStateChanged(state) => self.emit(ConnectionEvent::Boot(state)),
            Event::ResultRejected { id, error } => {
                warn!(identity = %self.identity, %id, %error, "peer rejected our result")
            }
            Event::PeerMisbehaved(p) => {
                warn!(identity = %self.identity, kind = ?p.kind, id = ?p.id, "{}", p.detail)
            }
            _ => {}
        }
    }

    fn emit(&self, ev: ConnectionEvent) {
        if let Some(sink) = &self.events {
            sink(ev);
        }
    }
}

/// The command channel cannot close while `run` holds a `Peer`.
fn unreachable_closed() {
    debug!("command channel closed");
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn tick_opt(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use evproto_ocpp_proto::{Config, ProtocolVersion, Role};

    use super::*;
    use crate::transport::TransportErrorKind;
    use crate::Router;

    /// A transport fed by the test: what it receives comes from `rx` (then
    /// it waits forever), what it sends is counted.
    struct Wired {
        rx: tokio::sync::mpsc::UnboundedReceiver<Result<Incoming, TransportError>>,
        sent: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Wired {
        /// One that receives `script`, then waits forever.
        fn scripted(script: impl IntoIterator<Item = Result<Incoming, TransportError>>) -> Wired {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            for r in script {
                let _ = tx.send(r);
            }
            // the sender is leaked so the channel stays open: recv waits
            std::mem::forget(tx);
            Wired {
                rx,
                sent: Arc::default(),
            }
        }
    }

    impl Transport for Wired {
        async fn recv(&mut self) -> Option<Result<Incoming, TransportError>> {
            self.rx.recv().await
        }
        async fn feed_text(&mut self, _: String) -> Result<(), TransportError> {
            self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
        async fn flush(&mut self) -> Result<(), TransportError> {
            Ok(())
        }
        async fn ping(&mut self) -> Result<(), TransportError> {
            Ok(())
        }
        async fn close(&mut self, _: u16, _: &str) {}
    }

    #[tokio::test]
    async fn a_close_fails_the_call_on_the_wire_as_lost_and_the_queued_ones_as_not_connected() {
        let (close, rx) = tokio::sync::mpsc::unbounded_channel();
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ws = Wired {
            rx,
            sent: sent.clone(),
        };
        let endpoint = Endpoint::new(
            Role::ChargingStation,
            ProtocolVersion::V201,
            Config::default()
                .with_boot_gate(false)
                .with_hold_calls_until_boot(false),
        );
        let conn = Connection::new(
            ws,
            endpoint,
            Router::station_v201().into_routes(),
            Arc::from("CP1"),
            ConnectionConfig::default(),
        );
        let peer = conn.peer();
        let run = tokio::spawn(conn.run());
        let first = tokio::spawn({
            let peer = peer.clone();
            async move { peer.call_raw("Heartbeat", "{}".to_owned()).await }
        });
        let on_the_wire = async {
            while sent.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), on_the_wire)
            .await
            .expect("the first call went out");
        // the first is on the wire; the second waits behind it
        let second = tokio::spawn(async move { peer.call_raw("Heartbeat", "{}".to_owned()).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(sent.load(std::sync::atomic::Ordering::SeqCst), 1);
        close.send(Ok(Incoming::Close(Some(1001)))).unwrap();
        assert!(matches!(run.await.unwrap(), Closed::ByPeer(_)));
        let first = first.await.unwrap().unwrap_err();
        assert!(first.is_connection_lost(), "{first:?}");
        assert!(!first.is_not_connected());
        let second = second.await.unwrap().unwrap_err();
        assert!(second.is_not_connected(), "{second:?}");
    }

    #[tokio::test]
    async fn a_transport_failure_closes_with_the_typed_error() {
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        let ws = Wired::scripted([Err(TransportError::new(TransportErrorKind::Io, reset))]);
        let endpoint = Endpoint::new(Role::Csms, ProtocolVersion::V201, Config::default());
        let conn = Connection::new(
            ws,
            endpoint,
            Router::csms_v201().into_routes(),
            Arc::from("CP1"),
            ConnectionConfig::default(),
        );
        let Closed::Transport(e) = conn.run().await else {
            panic!("expected a transport failure")
        };
        assert!(e.is_io(), "{e}");
        let source = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(
            source.map(io::Error::kind),
            Some(io::ErrorKind::ConnectionReset)
        );
    }
}
