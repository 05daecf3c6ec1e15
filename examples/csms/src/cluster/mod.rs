//! Cluster mode: several `csms` nodes on one PostgreSQL store and NATS
//! (`csms --cluster nats://HOST:4222`, with `DATABASE_URL=postgres://...`).
//!
//! * **Presence** ([`presence`]): a JetStream key-value bucket
//!   (`evproto_csms_{cluster}_presence`) maps each connected identity to
//!   the node holding its connection, the node's incarnation and the
//!   connection's epoch, written once per connection; a second one
//!   (`evproto_csms_{cluster}_nodes`) holds each node's incarnation,
//!   renewed every third of the lease. An entry counts while its node's
//!   incarnation is live; a station that connects to another node
//!   replaces its old connection cluster-wide.
//! * **Calls** ([`Remote`]): the [`crate::gateway::StationGateway`] calls a
//!   station connected elsewhere through a NATS request to its node
//!   (`evproto.csms.{cluster}.node.{node}.call`), which calls it and
//!   answers with the station's answer or the typed error.
//! * **Events** ([`relay`]): every node publishes its live events on
//!   `evproto.csms.{cluster}.events.{type}.{station}` and re-broadcasts
//!   the others' locally: their boots always, the rest while its own live
//!   events have followers (NATS then delivers a node nobody watches only
//!   the boots).
//! * **Work done once** ([`lease`], [`jobs`]): the jobs that must run on
//!   one node at a time (the outbox, the offline sweep, the OpenADR poll)
//!   are leased in a second bucket (`evproto_csms_{cluster}_jobs`) and
//!   taken over one lease after their holder's last renewal; every node
//!   announces its stations and jobs on `evproto.csms.{cluster}.nodes`
//!   (the cluster gauges of `/metrics`).
//!
//! The rules are sans-IO cores ([`presence::Presence`],
//! [`relay::Echoes`], [`lease::Leases`], [`jobs::OfflineSweep`]); this
//! module is their I/O.

pub mod jobs;
pub mod lease;
pub mod presence;
pub mod relay;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use evproto_ocpp_server::{Server, ServerEvent};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::{broadcast, mpsc};

use crate::events::LiveEvent;
use crate::gateway::{StationCallError, StationGateway};
pub use jobs::Jobs;
use presence::{Decision, Entry, Input, Presence};

/// The cluster flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterArgs {
    /// Cluster mode: the NATS server (with JetStream) the nodes share, e.g. nats://127.0.0.1:4222; needs DATABASE_URL=postgres://...
    #[arg(long = "cluster", env = "CSMS_CLUSTER")]
    url: Option<String>,
    /// Name of the cluster (letters, digits, - and _): the NATS subjects and the presence bucket are under it, so clusters can share a NATS server.
    #[arg(long, env = "CSMS_CLUSTER_NAME", default_value = "evproto")]
    cluster_name: String,
    /// This node's id in the cluster (letters, digits, - and _), unique in it; default the host name and the OCPP port.
    #[arg(long, env = "CSMS_NODE_ID")]
    node_id: Option<String>,
    /// Seconds a node's liveness and its once-per-cluster jobs' leases live without renewal (the node renews them every third of that; a dead node's jobs are taken over, and its stations' presence entries stop counting, after it).
    #[arg(long, env = "CSMS_CLUSTER_LEASE", default_value_t = 30)]
    cluster_lease: u64,
}

/// Cluster mode's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The NATS server.
    pub url: String,
    /// The cluster's name.
    pub name: String,
    /// This node's id (`None`: host name and OCPP port).
    pub node: Option<String>,
    /// How long a job's lease and a node's liveness live without renewal.
    pub lease: Duration,
}

/// A name usable in a NATS subject token and a bucket name.
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl ClusterArgs {
    /// The settings, `None` without `--cluster`.
    ///
    /// # Errors
    ///
    /// A cluster name or node id that is not letters, digits, `-` and `_`,
    /// or a lease under 3 seconds.
    pub fn to_config(&self) -> Result<Option<ClusterConfig>, String> {
        let Some(url) = self.url.clone().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        if !plain_name(&self.cluster_name) {
            return Err("cluster_name: 1 to 64 letters, digits, - and _".into());
        }
        if let Some(n) = &self.node_id {
            if !plain_name(n) {
                return Err("node_id: 1 to 64 letters, digits, - and _".into());
            }
        }
        if self.cluster_lease < 3 {
            return Err("cluster_lease: 3 seconds or more".into());
        }
        Ok(Some(ClusterConfig {
            url,
            name: self.cluster_name.clone(),
            node: self.node_id.clone(),
            lease: Duration::from_secs(self.cluster_lease),
        }))
    }
}

/// Cluster mode keeps its state in the shared store: PostgreSQL, not a
/// node's own SQLite file.
///
/// # Errors
///
/// The store URL is not PostgreSQL's.
pub fn check_store(database_url: Option<&str>) -> Result<(), String> {
    match database_url {
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => Ok(()),
        _ => Err("cluster mode needs a store the nodes share: set DATABASE_URL=postgres://... (SQLite is one node's file)".into()),
    }
}

/// This node's default id: the host name and the OCPP port.
pub fn default_node_id(ocpp_port: u16) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    let host = if host.is_empty() { "node".into() } else { host };
    format!("{host}-{ocpp_port}")
}

/// The bucket key of an identity: letters, digits, `-` and `_` as they are,
/// any other byte as `=XX` (identities may hold `.`, `:` and more that keys
/// may not).
pub fn key_of(identity: &str) -> String {
    let mut k = String::with_capacity(identity.len());
    for b in identity.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            k.push(char::from(b));
        } else {
            k.push_str(&format!("={b:02X}"));
        }
    }
    k
}

/// The identity of a bucket key ([`key_of`]'s inverse), `None` for a key it
/// did not write.
pub fn identity_of(key: &str) -> Option<String> {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = key.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// NATS is not reachable.
    #[error("cluster: NATS at {url}: {reason}")]
    Nats {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A bucket (presence, jobs) could not be opened or created (no
    /// JetStream?).
    #[error("cluster: bucket {bucket}: {reason} (is JetStream on, nats-server -js?)")]
    Bucket {
        /// Its name.
        bucket: String,
        /// Why.
        reason: String,
    },
}

/// What nodes and the cluster share: NATS, the bucket, the names.
#[derive(Debug)]
struct Shared {
    client: async_nats::Client,
    kv: kv::Store,
    /// The node bucket: each live node's incarnation.
    nodes: kv::Store,
    prefix: String,
    node: String,
    /// This run of the node (its start time and process id).
    incarnation: String,
    /// The live nodes as last read (every third of a lease, and on a
    /// lookup that names a node not in it).
    live: std::sync::RwLock<presence::LiveNodes>,
    /// A job's lease and a node's liveness.
    lease: Duration,
    /// How long a caller waits for the owner's answer: the call timeout and
    /// a margin for the hops.
    wait: Duration,
}

impl Shared {
    fn call_subject(&self, node: &str) -> String {
        format!("{}.node.{node}.call", self.prefix)
    }
}

/// A node joined to its cluster, before [`Cluster::run`].
#[derive(Debug)]
pub struct Cluster {
    shared: Arc<Shared>,
    jobs: jobs::JobShell,
}

impl Cluster {
    /// Connects to NATS and opens (or creates) the presence bucket, as node
    /// `node` whose station calls time out after `call_timeout`.
    ///
    /// # Errors
    ///
    /// NATS unreachable, or no JetStream there.
    pub async fn join(
        config: &ClusterConfig,
        node: String,
        call_timeout: Duration,
    ) -> Result<Cluster, ClusterError> {
        let wait = call_timeout + Duration::from_secs(5);
        let client = async_nats::ConnectOptions::new()
            .name(format!("csms {}/{node}", config.name))
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(wait))
            .connect(config.url.as_str())
            .await
            .map_err(|e| ClusterError::Nats {
                url: crate::config::redact(&config.url),
                reason: e.to_string(),
            })?;
        let js = async_nats::jetstream::new(client.clone());
        let bucket_name = format!("evproto_csms_{}_presence", config.name);
        let about = "evproto CSMS: which node holds which station's connection";
        // entries are written once per connection and never expire: their
        // node's liveness says whether they count
        let kv = bucket(&js, &bucket_name, Duration::ZERO, about).await?;
        let nodes_name = format!("evproto_csms_{}_nodes", config.name);
        let about = "evproto CSMS: each live node's incarnation";
        let nodes = bucket(&js, &nodes_name, config.lease, about).await?;
        let jobs = jobs::JobShell::open(&js, &config.name, &node, config.lease).await?;
        let incarnation = format!(
            "{:x}-{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
            std::process::id()
        );
        let shared = Shared {
            client,
            kv,
            nodes,
            prefix: format!("evproto.csms.{}", config.name),
            node,
            incarnation,
            live: std::sync::RwLock::default(),
            lease: config.lease,
            wait,
        };
        // live before its first claim
        shared
            .nodes
            .put(&shared.node, shared.incarnation.clone().into())
            .await
            .map_err(|e| ClusterError::Bucket {
                bucket: nodes_name.clone(),
                reason: e.to_string(),
            })?;
        let live = read_nodes(&shared)
            .await
            .map_err(|reason| ClusterError::Bucket {
                bucket: nodes_name,
                reason,
            })?;
        *shared.live.write().unwrap_or_else(|e| e.into_inner()) = live;
        tracing::info!(node = shared.node, incarnation = shared.incarnation, cluster = %config.name, "joined the cluster");
        Ok(Cluster {
            jobs,
            shared: Arc::new(shared),
        })
    }

    /// The gate of this node's once-per-cluster jobs (closed until
    /// [`Cluster::run`] takes their leases).
    pub fn jobs(&self) -> Jobs {
        self.jobs.jobs.clone()
    }

    /// The handle the gateway calls other nodes' stations with.
    pub fn remote(&self) -> Remote {
        Remote {
            shared: self.shared.clone(),
        }
    }

    /// Starts the node's cluster work: presence of the stations connected
    /// to `server`, answering other nodes' calls through the app's
    /// gateway, the app's events both ways, and the leases of the
    /// once-per-cluster jobs (the OpenADR poll when the app has a VEN, the
    /// fleets' monthly invoicing).
    ///
    /// # Errors
    ///
    /// The node's subscriptions could not be made.
    pub async fn run(self, server: Server, app: Arc<crate::App>) -> Result<(), String> {
        let (gateway, events) = (app.gateway.clone(), app.events.clone());
        let mut wanted = vec![
            lease::Job::Outbox,
            lease::Job::Offline,
            lease::Job::Invoicing,
        ];
        if app.config.openadr.is_some() {
            wanted.push(lease::Job::OpenAdr);
        }
        let s = &self.shared;
        let calls = s
            .client
            .subscribe(s.call_subject(&s.node))
            .await
            .map_err(|e| format!("cluster: {e}"))?;
        let boots = s
            .client
            .subscribe(relay::boots_filter(&s.prefix))
            .await
            .map_err(|e| format!("cluster: {e}"))?;
        let server_events = server.subscribe();
        let store = app.store.clone();
        let gate = self.jobs.jobs.clone();
        jobs::run(s.clone(), self.jobs, wanted, app, server.clone()).await?;
        tokio::spawn(relay_events(
            s.clone(),
            events,
            boots,
            server.clone(),
            gate.clone(),
        ));
        let (nodes_tx, nodes_rx) = mpsc::channel(4);
        tokio::spawn(nodes_loop(s.clone(), gate, nodes_tx));
        tokio::spawn(presence_loop(
            s.clone(),
            server,
            server_events,
            store,
            nodes_rx,
        ));
        tokio::spawn(answer_calls(s.clone(), gateway, calls));
        Ok(())
    }
}

/// Opens a key-value bucket, creating it when it is not there: the stream
/// a key-value bucket is (as the client's `create_key_value` makes it,
/// which first reads account details that NATS servers before 2.10 answer
/// in a form it does not read), one value per key, entries dropped after
/// `lease` (never: `Duration::ZERO`). A bucket another node created
/// meanwhile is opened as it is; one with another age limit (made by an
/// earlier version) gets this one.
async fn bucket(
    js: &async_nats::jetstream::Context,
    bucket: &str,
    lease: Duration,
    about: &str,
) -> Result<kv::Store, ClusterError> {
    use async_nats::jetstream::stream;
    if let Ok(kv) = js.get_key_value(bucket).await {
        if let Ok(mut s) = js.get_stream(format!("KV_{bucket}")).await {
            if let Ok(info) = s.info().await {
                if info.config.max_age != lease {
                    let mut config = info.config.clone();
                    config.max_age = lease;
                    if let Err(e) = js.update_stream(&config).await {
                        tracing::warn!(bucket, "cluster: setting the bucket's age limit: {e}");
                    }
                }
            }
        }
        return Ok(kv);
    }
    let failed = |reason: String| ClusterError::Bucket {
        bucket: bucket.to_owned(),
        reason,
    };
    let created = js
        .create_stream(stream::Config {
            name: format!("KV_{bucket}"),
            description: Some(about.into()),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_age: lease,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            num_replicas: 1,
            ..Default::default()
        })
        .await;
    match (created, js.get_key_value(bucket).await) {
        (_, Ok(kv)) => Ok(kv),
        (Err(e), Err(_)) => Err(failed(e.to_string())),
        (Ok(_), Err(e)) => Err(failed(e.to_string())),
    }
}

/// A call for a station, from the node that was asked to the node holding
/// its connection.
#[derive(Debug, Serialize, Deserialize)]
struct CallRequest {
    station: String,
    action: String,
    /// The subprotocol the request is written for (typed calls), checked
    /// against the station's connection.
    #[serde(default)]
    version: Option<String>,
    /// The OCPP request payload.
    payload: Box<RawValue>,
}

/// The answer: the station's response payload, or why there is none.
type CallReply = Result<Box<RawValue>, StationCallError>;

/// Calls to stations connected to other nodes (cheap to clone).
#[derive(Debug, Clone)]
pub struct Remote {
    shared: Arc<Shared>,
}

impl Remote {
    /// The entry of a station connected to another node, `None` when it is
    /// connected to none (or only this node's stale entry names it).
    ///
    /// # Errors
    ///
    /// The registry cannot be read (503).
    pub async fn owner(&self, station: &str) -> Result<Option<Entry>, StationCallError> {
        let unreachable = |reason: String| StationCallError::OwnerUnreachable {
            station: station.to_owned(),
            reason,
        };
        // cut off from NATS: said at once rather than after a timeout
        if self.shared.client.connection_state() == async_nats::connection::State::Disconnected {
            return Err(unreachable("this node is not connected to NATS".into()));
        }
        let found = tokio::time::timeout(self.shared.wait, self.shared.kv.entry(key_of(station)))
            .await
            .map_err(|_| unreachable("the presence registry did not answer".into()))?
            .map_err(|e| unreachable(format!("the presence registry: {e}")))?;
        let Some(entry) = found
            .filter(|e| e.operation == kv::Operation::Put)
            .and_then(|e| serde_json::from_slice::<Entry>(&e.value).ok())
            .filter(|e| e.node != self.shared.node)
        else {
            return Ok(None);
        };
        if presence::is_live(
            &entry,
            &self.shared.live.read().unwrap_or_else(|e| e.into_inner()),
        ) {
            return Ok(Some(entry));
        }
        // a node that started or came back since the last reading: asked
        let current = tokio::time::timeout(self.shared.wait, self.shared.nodes.get(&entry.node))
            .await
            .map_err(|_| unreachable("the node registry did not answer".into()))?
            .map_err(|e| unreachable(format!("the node registry: {e}")))?;
        let Some(incarnation) = current.and_then(|v| String::from_utf8(v.to_vec()).ok()) else {
            // its node is dead: connected nowhere
            return Ok(None);
        };
        self.shared
            .live
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.node.clone(), incarnation.clone());
        Ok((incarnation == entry.incarnation && !incarnation.is_empty()).then_some(entry))
    }

    /// Calls `action` with `payload` (the request's JSON text) on a station
    /// connected to another node: the answer's JSON text. `version`, for a
    /// typed call, is the subprotocol the request is written for.
    ///
    /// # Errors
    ///
    /// Not connected anywhere (404), the owner's answer (timeout, CALLERROR,
    /// ...), or the owner unreachable (503).
    pub async fn call(
        &self,
        station: &str,
        action: &str,
        version: Option<&str>,
        payload: String,
    ) -> Result<String, StationCallError> {
        let Some(owner) = self.owner(station).await? else {
            return Err(StationCallError::NotConnected {
                station: station.to_owned(),
            });
        };
        let payload =
            RawValue::from_string(payload).map_err(|e| StationCallError::rejected(station, e))?;
        let body = serde_json::to_vec(&CallRequest {
            station: station.to_owned(),
            action: action.to_owned(),
            version: version.map(str::to_owned),
            payload,
        })
        .map_err(|e| StationCallError::rejected(station, e))?;
        let unreachable = |reason: String| StationCallError::OwnerUnreachable {
            station: station.to_owned(),
            reason: format!("node {}: {reason}", owner.node),
        };
        let request = async_nats::Request::new()
            .payload(body.into())
            .timeout(Some(self.shared.wait));
        let answer = tokio::time::timeout(
            self.shared.wait,
            self.shared
                .client
                .send_request(self.shared.call_subject(&owner.node), request),
        )
        .await
        .map_err(|_| unreachable("no answer in time".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
        match serde_json::from_slice::<CallReply>(&answer.payload) {
            Ok(Ok(text)) => Ok(text.get().to_owned()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(unreachable(format!("an answer that is not one: {e}"))),
        }
    }
}

/// Answers other nodes' calls for stations connected here.
async fn answer_calls(
    shared: Arc<Shared>,
    gateway: StationGateway,
    mut calls: async_nats::Subscriber,
) {
    while let Some(msg) = calls.next().await {
        let Some(reply_to) = msg.reply.clone() else {
            continue;
        };
        let (client, gateway) = (shared.client.clone(), gateway.clone());
        tokio::spawn(async move {
            let reply: CallReply = match serde_json::from_slice::<CallRequest>(&msg.payload) {
                Ok(r) => gateway
                    .call_here(
                        &r.station,
                        &r.action,
                        r.version.as_deref(),
                        r.payload.get().to_owned(),
                    )
                    .await
                    .and_then(|text| {
                        RawValue::from_string(text).map_err(|e| StationCallError::BadAnswer {
                            station: r.station.clone(),
                            reason: e.to_string(),
                        })
                    }),
                Err(e) => Err(StationCallError::Rejected {
                    station: String::new(),
                    reason: format!("a call request that is not one: {e}"),
                }),
            };
            let body = serde_json::to_vec(&reply).unwrap_or_default();
            if let Err(e) = client.publish(reply_to, body.into()).await {
                tracing::warn!("cluster: answering a call: {e}");
            }
        });
    }
}

/// A live event on the cluster's subject, with the node it happened on.
#[derive(Serialize)]
struct EventOut<'a> {
    node: &'a str,
    event: &'a LiveEvent,
}

/// [`EventOut`], read.
#[derive(Deserialize)]
struct EventIn {
    node: String,
    event: LiveEvent,
}

/// How often the relay looks whether anyone follows this node's live
/// events (a new follower sees the other nodes' events from then on).
const FOLLOWERS_CHECK: Duration = Duration::from_millis(200);

/// Publishes this node's live events, each on its kind's and station's
/// subject, and re-broadcasts the other nodes': their boots always (a boot
/// another node answered is remembered here too, so a station that moves
/// here later is not refused for want of one), everything else while this
/// node's live events have followers ([`relay::Following`]).
async fn relay_events(
    shared: Arc<Shared>,
    events: broadcast::Sender<LiveEvent>,
    mut boots: async_nats::Subscriber,
    server: Server,
    jobs: Jobs,
) {
    let mut local = events.subscribe();
    let mut echoes = relay::Echoes::default();
    let mut following = relay::Following::default();
    let mut all: Option<async_nats::Subscriber> = None;
    let mut tick = tokio::time::interval(FOLLOWERS_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // another node's event, taken into the local channel
    let take = |m: async_nats::Message, echoes: &mut relay::Echoes| match serde_json::from_slice::<
        EventIn,
    >(&m.payload)
    {
        Ok(EventIn { node, .. }) if node == shared.node => {}
        Ok(EventIn { event, .. }) => {
            jobs.event_received();
            if let LiveEvent::Boot { station, status } = &event {
                if status == "Accepted" {
                    server.remember_accepted(station.clone());
                } else {
                    server.forget_accepted(station);
                }
            }
            echoes.injected(event.to_json());
            let _ = events.send(event);
        }
        Err(e) => tracing::warn!("cluster: an event that is not one: {e}"),
    };
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // the relay's own receiver follows nothing
                let followers = events.receiver_count().saturating_sub(1);
                match following.followers(followers) {
                    Some(relay::Subscription::TakeAll) => {
                        match shared.client.subscribe(relay::all_filter(&shared.prefix)).await {
                            Ok(sub) => {
                                // the server has it once this returns: the
                                // gauge below says so only then
                                if let Err(e) = shared.client.flush().await {
                                    tracing::debug!("cluster: flushing a subscription: {e}");
                                }
                                all = Some(sub);
                            }
                            Err(e) => {
                                tracing::warn!("cluster: following every node's events: {e}");
                                // asked again at the next look
                                following = relay::Following::default();
                            }
                        }
                    }
                    // dropping it unsubscribes
                    Some(relay::Subscription::BootsOnly) => all = None,
                    None => {}
                }
                jobs.set_events_following(all.is_some());
            }
            e = local.recv() => match e {
                Ok(e) => {
                    if echoes.is_echo(&e.to_json()) {
                        continue;
                    }
                    let out = EventOut { node: &shared.node, event: &e };
                    let Ok(body) = serde_json::to_vec(&out) else { continue };
                    let subject = relay::event_subject(&shared.prefix, e.kind(), e.station());
                    match shared.client.publish(subject, body.into()).await {
                        Ok(()) => jobs.event_published(),
                        Err(err) => tracing::debug!("cluster: publishing an event: {err}"),
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => echoes.lagged(),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            m = boots.next() => {
                let Some(m) = m else { return };
                take(m, &mut echoes);
            }
            m = next_message(&mut all) => match m {
                // boots come through their own subscription
                Some(m) if relay::is_boot_subject(&shared.prefix, m.subject.as_str()) => {}
                Some(m) => take(m, &mut echoes),
                None => {
                    all = None;
                    following = relay::Following::default();
                }
            },
        }
    }
}

/// The next message of a subscription; pending forever without one.
async fn next_message(sub: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match sub {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// The next watch entry; pending forever without a watch.
async fn next_entry(watch: &mut Option<kv::Watch>) -> Option<Result<kv::Entry, kv::WatcherError>> {
    match watch {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

/// Keeps the presence entries of the stations connected here; a station
/// that connects here with its boot accepted by the store (by another
/// node while this one did not hear of it) is taken as booted.
async fn presence_loop(
    shared: Arc<Shared>,
    server: Server,
    mut server_events: broadcast::Receiver<ServerEvent>,
    store: crate::store::Store,
    mut nodes: mpsc::Receiver<Input>,
) {
    let start = Instant::now();
    let mut core = Presence::new(
        shared.node.clone(),
        shared.incarnation.clone(),
        shared.lease,
    );
    let (done, mut outcomes) = mpsc::unbounded_channel::<Input>();
    let mut watch: Option<kv::Watch> = None;
    let mut last_revision = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        if watch.is_none() {
            let opened = if last_revision == 0 {
                shared.kv.watch_all().await
            } else {
                shared.kv.watch_all_from_revision(last_revision + 1).await
            };
            match opened {
                Ok(w) => watch = Some(w),
                Err(e) => tracing::warn!("cluster: watching the presence registry: {e}"),
            }
        }
        let input = tokio::select! {
            e = server_events.recv() => match e {
                Ok(ServerEvent::Connected { identity, version }) => {
                    let (store, server, id) = (store.clone(), server.clone(), identity.clone());
                    tokio::spawn(async move {
                        if let Ok(Some(s)) = store.station(&id).await {
                            if s.boot_status.as_deref() == Some("Accepted") {
                                server.remember_accepted(id);
                            }
                        }
                    });
                    Input::Connected {
                        station: identity,
                        version,
                    }
                }
                Ok(ServerEvent::Disconnected { identity, .. }) => Input::Disconnected {
                    still_here: server.station(&identity).is_ok(),
                    station: identity,
                },
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            w = next_entry(&mut watch) => match w {
                Some(Ok(e)) => {
                    last_revision = last_revision.max(e.revision);
                    let Some(station) = identity_of(&e.key) else { continue };
                    let entry = match e.operation {
                        kv::Operation::Put => match serde_json::from_slice::<Entry>(&e.value) {
                            Ok(entry) => Some(entry),
                            Err(err) => {
                                tracing::warn!(station, "cluster: a presence entry that is not one: {err}");
                                continue;
                            }
                        },
                        kv::Operation::Delete | kv::Operation::Purge => None,
                    };
                    Input::Seen { station, entry, revision: e.revision }
                }
                Some(Err(err)) => {
                    tracing::warn!("cluster: the presence watch: {err}");
                    watch = None;
                    continue;
                }
                None => {
                    watch = None;
                    continue;
                }
            },
            Some(i) = outcomes.recv() => i,
            Some(i) = nodes.recv() => i,
            _ = tick.tick() => Input::Tick,
        };
        for d in core.handle(start.elapsed(), input) {
            execute(&shared, &server, &done, d);
        }
    }
}

/// Does one presence decision in its own task; its outcome comes back on
/// `done`.
fn execute(
    shared: &Arc<Shared>,
    server: &Server,
    done: &mpsc::UnboundedSender<Input>,
    d: Decision,
) {
    let (shared, done) = (shared.clone(), done.clone());
    match d {
        Decision::Claim { station, version } => {
            tokio::spawn(async move {
                let outcome = match claim(&shared, &station, version).await {
                    Ok((epoch, revision)) => Input::Claimed {
                        station,
                        epoch,
                        revision,
                    },
                    Err(e) => {
                        tracing::warn!(station, "cluster: claiming the presence entry: {e}");
                        Input::ClaimFailed { station }
                    }
                };
                let _ = done.send(outcome);
            });
        }
        Decision::Close { station } => {
            let server = server.clone();
            tokio::spawn(async move {
                if server
                    .disconnect(&station, "connected to another node of the cluster")
                    .await
                {
                    tracing::info!(station, "closed: it connected to another node");
                }
            });
        }
        Decision::Delete { station, revision } => {
            tokio::spawn(async move {
                let key = key_of(&station);
                if let Err(e) = shared.kv.delete_expect_revision(&key, Some(revision)).await {
                    // changed since: nothing to delete any more
                    if e.kind() != kv::UpdateErrorKind::WrongLastRevision {
                        tracing::debug!(station, "cluster: presence entry not deleted: {e}");
                        let _ = done.send(Input::DeleteFailed { station, revision });
                    }
                }
            });
        }
    }
}

/// The node bucket now: each live node's incarnation.
async fn read_nodes(shared: &Shared) -> Result<presence::LiveNodes, String> {
    use futures_util::TryStreamExt;
    tokio::time::timeout(shared.wait, async {
        let keys: Vec<String> = shared
            .nodes
            .keys()
            .await
            .map_err(|e| e.to_string())?
            .try_collect()
            .await
            .map_err(|e| e.to_string())?;
        let mut live = presence::LiveNodes::new();
        for k in keys {
            if let Some(v) = shared.nodes.get(&k).await.map_err(|e| e.to_string())? {
                if let Ok(incarnation) = String::from_utf8(v.to_vec()) {
                    live.insert(k, incarnation);
                }
            }
        }
        Ok(live)
    })
    .await
    .map_err(|_| "no answer in time".to_owned())?
}

/// Keeps this node live (its incarnation written again every third of a
/// lease) and reads the other nodes' as often: the reading goes to
/// [`Remote::owner`] and, as [`Input::Nodes`], to the presence loop, whose
/// sweep of dead nodes' entries runs on the node holding the offline job.
async fn nodes_loop(shared: Arc<Shared>, jobs: Jobs, presence: mpsc::Sender<Input>) {
    let mut tick = tokio::time::interval(shared.lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let put = tokio::time::timeout(
            shared.wait,
            shared
                .nodes
                .put(&shared.node, shared.incarnation.clone().into()),
        )
        .await;
        match put {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("cluster: renewing this node's liveness: {e}"),
            Err(_) => tracing::warn!("cluster: renewing this node's liveness: no answer in time"),
        }
        let live = match read_nodes(&shared).await {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!("cluster: reading the live nodes: {e}");
                continue;
            }
        };
        *shared.live.write().unwrap_or_else(|e| e.into_inner()) = live.clone();
        let sweep = jobs.holds(lease::Job::Offline);
        if presence.send(Input::Nodes { live, sweep }).await.is_err() {
            return;
        }
    }
}

/// Writes a station's entry naming this node with the next epoch, over the
/// revision read (created when absent), again on a conflict: the epoch and
/// revision written.
async fn claim(
    shared: &Shared,
    station: &str,
    version: evproto_ocpp_proto::ProtocolVersion,
) -> Result<(u64, u64), String> {
    let key = key_of(station);
    let mut last = String::new();
    for _ in 0..16 {
        let current = shared.kv.entry(&key).await.map_err(|e| e.to_string())?;
        let (epoch, over) = match current {
            Some(e) if e.operation == kv::Operation::Put => (
                serde_json::from_slice::<Entry>(&e.value).map_or(0, |x| x.epoch) + 1,
                Some(e.revision),
            ),
            _ => (1, None),
        };
        let value = serde_json::to_vec(&Entry {
            node: shared.node.clone(),
            incarnation: shared.incarnation.clone(),
            epoch,
            version,
        })
        .map_err(|e| e.to_string())?;
        let written = match over {
            Some(r) => shared.kv.update(&key, value.into(), r).await.map_err(|e| {
                (
                    e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                    e.to_string(),
                )
            }),
            None => shared.kv.create(&key, value.into()).await.map_err(|e| {
                (
                    e.kind() == kv::CreateErrorKind::AlreadyExists,
                    e.to_string(),
                )
            }),
        };
        match written {
            Ok(revision) => return Ok((epoch, revision)),
            Err((true, e)) => last = e,
            Err((false, e)) => return Err(e),
        }
    }
    Err(format!("kept losing the race for it: {last}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_make_valid_keys_and_come_back() {
        for id in ["CP1", "cs-01.site_A:1", "a=b", "Ünï", "x y/z"] {
            let k = key_of(id);
            assert!(
                k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=".contains(c)),
                "{k}"
            );
            assert_eq!(identity_of(&k).as_deref(), Some(id));
        }
        assert_eq!(key_of("cs-01.site_A:1"), "cs-01=2Esite_A=3A1");
        assert_eq!(identity_of("bad=Z"), None);
        assert_eq!(identity_of("bad=ZZ"), None);
    }

    #[test]
    fn cluster_settings_are_checked() {
        let args = |url: Option<&str>, name: &str, node: Option<&str>, lease: u64| ClusterArgs {
            url: url.map(str::to_owned),
            cluster_name: name.into(),
            node_id: node.map(str::to_owned),
            cluster_lease: lease,
        };
        assert_eq!(args(None, "x", None, 30).to_config(), Ok(None));
        let c = args(Some("nats://127.0.0.1:4222"), "prod", Some("n1"), 30)
            .to_config()
            .unwrap()
            .unwrap();
        assert_eq!(c.lease, Duration::from_secs(30));
        assert!(args(Some("nats://h"), "a.b", None, 30).to_config().is_err());
        assert!(args(Some("nats://h"), "a", Some("n 1"), 30)
            .to_config()
            .is_err());
        assert!(args(Some("nats://h"), "a", None, 2).to_config().is_err());
    }

    #[test]
    fn cluster_mode_refuses_a_store_of_one_node() {
        assert!(check_store(Some("postgres://localhost/csms")).is_ok());
        assert!(check_store(Some("postgresql://localhost/csms")).is_ok());
        let e = check_store(Some("sqlite://data/csms.db")).unwrap_err();
        assert!(e.contains("DATABASE_URL=postgres://"), "{e}");
        assert!(check_store(None).is_err());
    }

    #[test]
    fn the_default_node_id_is_a_plain_name() {
        let n = default_node_id(9000);
        assert!(plain_name(&n), "{n}");
        assert!(n.ends_with("-9000"), "{n}");
    }
}
