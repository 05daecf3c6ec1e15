//! The station gateway: how every part of the CSMS calls a connected
//! station (operations, smart charging, roaming commands, running-cost
//! pushes, the operator API).
//!
//! ```text
//! let (gateway, link) = StationGateway::new(call_timeout, events);
//! // ... build what needs the gateway, then the OCPP handlers, then the server ...
//! tokio::spawn(link.serve(server.clone()));
//! let r = gateway.call::<v201::action::UnlockConnector>("CP1", request).await?;
//! ```
//!
//! Calls are typed: the station's version ([`StationGateway::version`])
//! says which generated request type (`ocpp_types::v16`, `v201`, `v21`) to
//! send, and the answer comes back as that version's response type. The
//! one untyped call, [`StationGateway::call_operator_json`], is for the
//! operator API's `POST /api/stations/{id}/ocpp/{Action}`, where the
//! operator picks the action and writes its JSON.
//!
//! Why a channel: the OCPP server is built from the handlers' routes, and
//! the handlers (through roaming and smart charging) need the gateway. The
//! gateway therefore exists first and reaches the server through a channel
//! served by [`GatewayLink::serve`], started right after the server is
//! built. Nothing is set later and nothing points back at the app.
//!
//! In cluster mode ([`StationGateway::clustered`]) a station that is not
//! connected here is called through the node holding its connection
//! ([`crate::cluster::Remote`]), with the same answers and errors, and
//! [`StationCallError::OwnerUnreachable`] when that node does not answer.

use std::time::Duration;

use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_rpc::CallFailure;
use evproto_ocpp_server::{Peer, Server};
use evproto_ocpp_types::Action;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::events::LiveEvent;

/// Why a call to a station produced no answer (between nodes of a cluster
/// as JSON).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum StationCallError {
    /// The station is not connected (the API answers 404).
    #[error("station {station} is not connected")]
    NotConnected {
        /// Identity.
        station: String,
    },
    /// No answer within the call timeout (504).
    #[error("{station} did not answer {action} in time")]
    Timeout {
        /// Identity.
        station: String,
        /// The action called.
        action: String,
    },
    /// The station's connection closed while the call was on the wire: it
    /// may have acted on it, the answer is lost (504, like a timeout).
    #[error("{station} disconnected before answering {action} (it may have acted on it)")]
    ConnectionLost {
        /// Identity.
        station: String,
        /// The action called.
        action: String,
    },
    /// The station answered with a CALLERROR (502).
    #[error("{station} answered {action} with CALLERROR {code}: {description}")]
    CallError {
        /// Identity.
        station: String,
        /// The action called.
        action: String,
        /// `errorCode`.
        code: String,
        /// `errorDescription`.
        description: String,
        /// `errorDetails`, as JSON text.
        details: String,
    },
    /// The station's answer broke the response schema, it reconnected in
    /// another version meanwhile, or the call could not be queued (502).
    #[error("{station}: {reason}")]
    BadAnswer {
        /// Identity.
        station: String,
        /// What was wrong.
        reason: String,
    },
    /// The request could not be built: a value does not fit its field
    /// (422).
    #[error("{station}: {reason}")]
    Rejected {
        /// Identity.
        station: String,
        /// Why.
        reason: String,
    },
    /// Cluster mode: the node holding the station's connection, or the
    /// presence registry naming it, did not answer (503).
    #[error("{station} is connected to a node that cannot be reached: {reason}")]
    OwnerUnreachable {
        /// Identity.
        station: String,
        /// Why.
        reason: String,
    },
}

impl StationCallError {
    fn of(station: &str, action: &str, e: CallFailure) -> StationCallError {
        let station = station.to_owned();
        match e {
            CallFailure::NotConnected => StationCallError::NotConnected { station },
            CallFailure::Timeout => StationCallError::Timeout {
                station,
                action: action.to_owned(),
            },
            CallFailure::ConnectionLost => StationCallError::ConnectionLost {
                station,
                action: action.to_owned(),
            },
            CallFailure::CallError(c) => StationCallError::CallError {
                station,
                action: action.to_owned(),
                code: c.code,
                description: c.description,
                details: c.details,
            },
            other => StationCallError::BadAnswer {
                station,
                reason: other.to_string(),
            },
        }
    }

    /// A request that does not fit its message (a value too long for its
    /// field), found while building it.
    pub fn rejected(station: &str, reason: impl std::fmt::Display) -> StationCallError {
        StationCallError::Rejected {
            station: station.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// A request for the OCPP server, answered by [`GatewayLink::serve`].
type ServerRequest = oneshot::Sender<Server>;

/// Typed calls to connected stations (cheap to clone).
#[derive(Debug, Clone)]
pub struct StationGateway {
    server: mpsc::UnboundedSender<ServerRequest>,
    call_timeout: Duration,
    events: broadcast::Sender<LiveEvent>,
    /// Cluster mode: the other nodes' stations.
    cluster: Option<crate::cluster::Remote>,
}

/// The gateway's end at the OCPP server: [`GatewayLink::serve`] it once the
/// server is built.
#[derive(Debug)]
pub struct GatewayLink {
    requests: mpsc::UnboundedReceiver<ServerRequest>,
}

impl GatewayLink {
    /// Answers the gateway's requests with `server` until the gateway and
    /// all its clones are dropped.
    pub async fn serve(mut self, server: Server) {
        while let Some(reply) = self.requests.recv().await {
            let _ = reply.send(server.clone());
        }
    }
}

impl StationGateway {
    /// A gateway whose calls time out after `call_timeout`, publishing each
    /// answered call on `events`, and its link to the OCPP server.
    pub fn new(
        call_timeout: Duration,
        events: broadcast::Sender<LiveEvent>,
    ) -> (StationGateway, GatewayLink) {
        let (server, requests) = mpsc::unbounded_channel();
        (
            StationGateway {
                server,
                call_timeout,
                events,
                cluster: None,
            },
            GatewayLink { requests },
        )
    }

    /// The gateway of a cluster node: stations connected to other nodes
    /// are called through `remote`.
    pub fn clustered(mut self, remote: crate::cluster::Remote) -> StationGateway {
        self.cluster = Some(remote);
        self
    }

    /// Cluster mode: the entry of a station connected to another node.
    async fn elsewhere(
        &self,
        station: &str,
    ) -> Result<Option<crate::cluster::presence::Entry>, StationCallError> {
        match &self.cluster {
            Some(remote) => remote.owner(station).await,
            None => Ok(None),
        }
    }

    /// The OCPP server, `None` once it is gone (shutting down).
    async fn server(&self) -> Option<Server> {
        let (reply, answer) = oneshot::channel();
        self.server.send(reply).ok()?;
        answer.await.ok()
    }

    async fn peer(&self, station: &str) -> Result<Peer, StationCallError> {
        self.server()
            .await
            .and_then(|s| s.station(station).ok())
            .ok_or_else(|| StationCallError::NotConnected {
                station: station.to_owned(),
            })
    }

    /// The version a station is connected with (in cluster mode: to any
    /// node).
    ///
    /// # Errors
    ///
    /// Not connected (404), or in cluster mode the presence registry
    /// cannot be read (503: connected somewhere, maybe).
    pub async fn connection(&self, station: &str) -> Result<ProtocolVersion, StationCallError> {
        if let Ok(p) = self.peer(station).await {
            return Ok(p.version());
        }
        match self.elsewhere(station).await? {
            Some(e) => Ok(e.version),
            None => Err(StationCallError::NotConnected {
                station: station.to_owned(),
            }),
        }
    }

    /// The version a station is connected with, `None` when it is not (or
    /// cannot be known: see [`StationGateway::connection`]).
    pub async fn version(&self, station: &str) -> Option<ProtocolVersion> {
        self.connection(station).await.ok()
    }

    /// Whether a station is connected (in cluster mode: to any node).
    pub async fn is_connected(&self, station: &str) -> bool {
        self.connection(station).await.is_ok()
    }

    /// Identities of the connected stations.
    pub async fn connected(&self) -> Vec<String> {
        self.server()
            .await
            .map(|s| s.connected())
            .unwrap_or_default()
    }

    /// Remembers that a station's boot was accepted (from the store, after a
    /// restart).
    pub async fn remember_accepted(&self, station: String) {
        if let Some(s) = self.server().await {
            s.remember_accepted(station);
        }
    }

    /// Forgets that a station's boot was accepted: its calls are refused
    /// until it boots again.
    pub async fn forget_accepted(&self, station: &str) {
        if let Some(s) = self.server().await {
            s.forget_accepted(station);
        }
    }

    /// Closes a station's connection; whether it was connected.
    pub async fn disconnect(&self, station: &str, reason: &str) -> bool {
        match self.server().await {
            Some(s) => s.disconnect(station, reason).await,
            None => false,
        }
    }

    /// Calls action `A` on a connected station and returns its typed answer.
    /// `A` must be of the version the station is connected with (see
    /// [`StationGateway::version`]).
    ///
    /// # Errors
    ///
    /// Not connected, no answer in time, a CALLERROR, an answer that breaks
    /// its schema, or a station connected in another version.
    pub async fn call<A: Action>(
        &self,
        station: &str,
        request: A::Request,
    ) -> Result<A::Response, StationCallError> {
        let peer = match (self.peer(station).await, &self.cluster) {
            (Ok(peer), _) => peer,
            (Err(_), Some(remote)) => {
                use evproto_ocpp_types::Version;
                let payload = evproto_ocpp_types::to_json(&request);
                let version = Some(<A::Version as Version>::SUBPROTOCOL);
                let text = remote.call(station, A::NAME, version, payload).await?;
                return evproto_ocpp_types::from_str::<A::Response>(&text).map_err(|e| {
                    StationCallError::BadAnswer {
                        station: station.to_owned(),
                        reason: e.to_string(),
                    }
                });
            }
            (Err(e), None) => return Err(e),
        };
        let answer = tokio::time::timeout(self.call_timeout, peer.call::<A>(&request))
            .await
            .unwrap_or(Err(CallFailure::Timeout))
            .map_err(|e| StationCallError::of(station, A::NAME, e))?;
        self.answered(station, A::NAME);
        Ok(answer)
    }

    /// The operator API's raw call (`POST /api/stations/{id}/ocpp/{Action}`,
    /// where the operator chooses the action and writes the payload, checked
    /// against the action's schema by the caller): the answer's JSON text.
    /// Application code uses [`StationGateway::call`].
    ///
    /// # Errors
    ///
    /// As [`StationGateway::call`], without the answer's decoding.
    pub async fn call_operator_json(
        &self,
        station: &str,
        action: &str,
        payload: String,
    ) -> Result<String, StationCallError> {
        match (&self.cluster, self.peer(station).await) {
            (Some(remote), Err(_)) => remote.call(station, action, None, payload).await,
            _ => self.call_here(station, action, None, payload).await,
        }
    }

    /// [`StationGateway::call_operator_json`] on this node's connection only
    /// (another node's call, see [`crate::cluster`]); `version`, when
    /// given, is the subprotocol the request is written for.
    ///
    /// # Errors
    ///
    /// As [`StationGateway::call_operator_json`], and a station connected
    /// here in another version.
    pub async fn call_here(
        &self,
        station: &str,
        action: &str,
        version: Option<&str>,
        payload: String,
    ) -> Result<String, StationCallError> {
        let peer = self.peer(station).await?;
        if let Some(v) = version.filter(|v| *v != peer.version().subprotocol()) {
            return Err(StationCallError::BadAnswer {
                station: station.to_owned(),
                reason: format!("connected with {}, not {v}", peer.version().subprotocol()),
            });
        }
        let answer = tokio::time::timeout(self.call_timeout, peer.call_raw(action, payload))
            .await
            .unwrap_or(Err(CallFailure::Timeout))
            .map_err(|e| StationCallError::of(station, action, e))?;
        self.answered(station, action);
        Ok(answer)
    }

    fn answered(&self, station: &str, action: &str) {
        let _ = self.events.send(LiveEvent::Operation {
            station: station.to_owned(),
            action: action.to_owned(),
        });
    }
}
