//! Work done once per cluster: the leases' I/O ([`super::lease`] is the rules),
//! the gate the background work asks ([`Jobs::holds`]), the sweep of
//! stations left online by a dead node ([`OfflineSweep`]), the
//! cluster-level view every node publishes (stations per node, jobs held)
//! for `/metrics`, and the changes other nodes must hear of
//! ([`Change`]: the store's cached tables, a station's credentials).
//!
//! The leases are entries of a JetStream key-value bucket
//! (`evproto_csms_{cluster}_jobs`, entries dropped one lease after their
//! last write), next to the presence bucket: a NATS outage pauses the
//! once-per-cluster jobs (each holder stops two thirds of a lease after
//! its last renewal), and they resume when it is back. Station traffic
//! does not depend on them: an ended session is billed and captured
//! inline by the node that received it; the outbox job only runs what a
//! crash or a failure left pending, and every outbox kind is keyed, so a
//! brief overlap of two runners does each entry once.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use evproto_ocpp_server::Server;
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::lease::{Decision, Input, Job, Leases};
use super::Shared;
use crate::App;

/// A change of what nodes keep in memory, made through one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// A cached table of the store (tokens, tariffs).
    Cached,
    /// A station's registration or password (its identity).
    Station(String),
}

/// A [`Change`] on the cluster's subject, with the node it was made on.
#[derive(Debug, Serialize, Deserialize)]
struct ChangeMsg {
    node: String,
    change: Change,
}

/// What one node tells the others every few seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct NodeStatus {
    /// The node.
    pub(super) node: String,
    /// Stations connected to it.
    pub(super) stations: u64,
    /// The jobs it runs (their names).
    pub(super) jobs: Vec<String>,
}

#[derive(Debug)]
struct Inner {
    /// This node's id; `None`: a single node, which runs every job.
    node: Option<String>,
    held: [AtomicBool; Job::ALL.len()],
    taken: AtomicU64,
    nats_connected: AtomicBool,
    /// The relay's counts (see [`super::relay`]).
    events_published: AtomicU64,
    events_received: AtomicU64,
    events_following: AtomicBool,
    /// Cluster mode: the nodes heard from, with when.
    nodes: Mutex<BTreeMap<String, (NodeStatus, Instant)>>,
    /// How long a node counts as up after it was last heard from.
    heard_within: Duration,
    /// Cluster mode: where the changes to tell the others go.
    tell: OnceLock<mpsc::UnboundedSender<Change>>,
}

/// Which once-per-cluster jobs this node runs (cheap to clone): ask
/// [`Jobs::holds`] before each turn of a job.
#[derive(Debug, Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

impl Jobs {
    /// A single node: it runs every job.
    pub fn single() -> Jobs {
        Jobs::new(None, Duration::ZERO)
    }

    fn new(node: Option<String>, heard_within: Duration) -> Jobs {
        Jobs {
            inner: Arc::new(Inner {
                node,
                held: Default::default(),
                taken: AtomicU64::new(0),
                events_published: AtomicU64::new(0),
                events_received: AtomicU64::new(0),
                events_following: AtomicBool::new(false),
                nats_connected: AtomicBool::new(false),
                nodes: Mutex::new(BTreeMap::new()),
                heard_within,
                tell: OnceLock::new(),
            }),
        }
    }

    /// A station's credentials were changed through this node: the other
    /// nodes reload theirs (nothing for a single node).
    pub fn station_changed(&self, station: &str) {
        if let Some(tell) = self.inner.tell.get() {
            let _ = tell.send(Change::Station(station.to_owned()));
        }
    }

    /// Whether this node runs `job` now.
    pub fn holds(&self, job: Job) -> bool {
        self.inner.node.is_none() || self.inner.held[job.index()].load(Ordering::Relaxed)
    }

    fn set(&self, job: Job, held: bool) {
        self.inner.held[job.index()].store(held, Ordering::Relaxed);
    }

    fn held_names(&self) -> Vec<String> {
        Job::ALL
            .into_iter()
            .filter(|j| self.holds(*j))
            .map(|j| j.name().to_owned())
            .collect()
    }

    fn heard(&self, status: NodeStatus) {
        let mut nodes = self.inner.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.insert(status.node.clone(), (status, Instant::now()));
    }

    /// The relay published one of this node's live events.
    pub(super) fn event_published(&self) {
        self.inner.events_published.fetch_add(1, Ordering::Relaxed);
    }

    /// The relay took one of another node's live events.
    pub(super) fn event_received(&self) {
        self.inner.events_received.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the relay takes every node's events (this node's live
    /// events have followers) or their boots only.
    pub(super) fn set_events_following(&self, all: bool) {
        self.inner.events_following.store(all, Ordering::Relaxed);
    }

    /// The cluster's gauges in Prometheus text (empty for a single node):
    /// this node's jobs and takes, its relay's counts, and per node heard
    /// from within a lease its stations and jobs.
    pub fn metrics(&self) -> String {
        use std::fmt::Write;
        let Some(node) = &self.inner.node else {
            return String::new();
        };
        let mut out = String::new();
        let label = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(out, "# HELP csms_cluster_job_held Whether this node runs the once-per-cluster job.\n# TYPE csms_cluster_job_held gauge");
        for j in Job::ALL {
            let held = u8::from(self.holds(j));
            let _ = writeln!(
                out,
                "csms_cluster_job_held{{node=\"{}\",job=\"{}\"}} {held}",
                label(node),
                j.name()
            );
        }
        let taken = self.inner.taken.load(Ordering::Relaxed);
        let connected = u8::from(self.inner.nats_connected.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP csms_cluster_jobs_taken_total Jobs this node took (at start or over from another node).\n# TYPE csms_cluster_jobs_taken_total counter\ncsms_cluster_jobs_taken_total{{node=\"{}\"}} {taken}", label(node));
        let _ = writeln!(out, "# HELP csms_cluster_nats_connected Whether this node is connected to NATS.\n# TYPE csms_cluster_nats_connected gauge\ncsms_cluster_nats_connected{{node=\"{}\"}} {connected}", label(node));
        let published = self.inner.events_published.load(Ordering::Relaxed);
        let received = self.inner.events_received.load(Ordering::Relaxed);
        let following = u8::from(self.inner.events_following.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP csms_cluster_events_published_total Live events this node published to the cluster.\n# TYPE csms_cluster_events_published_total counter\ncsms_cluster_events_published_total{{node=\"{}\"}} {published}", label(node));
        let _ = writeln!(out, "# HELP csms_cluster_events_received_total Other nodes' live events this node took (their boots, and every event while its own have followers).\n# TYPE csms_cluster_events_received_total counter\ncsms_cluster_events_received_total{{node=\"{}\"}} {received}", label(node));
        let _ = writeln!(out, "# HELP csms_cluster_events_following Whether this node takes every node's live events (1: its own have followers) or their boots only (0).\n# TYPE csms_cluster_events_following gauge\ncsms_cluster_events_following{{node=\"{}\"}} {following}", label(node));
        let nodes = self.inner.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let live: Vec<&NodeStatus> = nodes
            .values()
            .filter(|(_, at)| at.elapsed() <= self.inner.heard_within)
            .map(|(s, _)| s)
            .collect();
        let _ = writeln!(out, "# HELP csms_cluster_nodes Nodes heard from within a lease.\n# TYPE csms_cluster_nodes gauge\ncsms_cluster_nodes {}", live.len());
        let _ = writeln!(out, "# HELP csms_cluster_node_stations Stations connected per node (as each node last said).\n# TYPE csms_cluster_node_stations gauge");
        for s in &live {
            let _ = writeln!(
                out,
                "csms_cluster_node_stations{{node=\"{}\"}} {}",
                label(&s.node),
                s.stations
            );
        }
        let _ = writeln!(out, "# HELP csms_cluster_job_holder The node running each once-per-cluster job (as each node last said).\n# TYPE csms_cluster_job_holder gauge");
        for s in &live {
            for j in &s.jobs {
                let _ = writeln!(
                    out,
                    "csms_cluster_job_holder{{job=\"{}\",node=\"{}\"}} 1",
                    label(j),
                    label(&s.node)
                );
            }
        }
        out
    }
}

/// Stations the store says are online and that no node's presence entry
/// names: marked offline when that is so at two sweeps in a row (a station
/// whose claim is still being written is not caught).
#[derive(Debug, Default)]
pub struct OfflineSweep {
    suspects: HashSet<String>,
}

impl OfflineSweep {
    /// One sweep: `online`, the stations online in the store; `present`,
    /// those with a presence entry. Returns the stations to mark offline.
    pub fn sweep(
        &mut self,
        online: impl IntoIterator<Item = String>,
        present: &HashSet<String>,
    ) -> Vec<String> {
        let mut gone = Vec::new();
        let mut suspects = HashSet::new();
        for s in online {
            if present.contains(&s) {
                continue;
            }
            if self.suspects.contains(&s) {
                gone.push(s);
            } else {
                suspects.insert(s);
            }
        }
        self.suspects = suspects;
        gone.sort_unstable();
        gone
    }

    /// The job moved away: what was suspected is forgotten.
    pub fn reset(&mut self) {
        self.suspects.clear();
    }
}

/// The cluster's job bucket and this node's gate, before [`run`].
#[derive(Debug)]
pub(super) struct JobShell {
    pub(super) kv: kv::Store,
    pub(super) jobs: Jobs,
}

impl JobShell {
    /// Opens (or creates) the job bucket of the cluster.
    pub(super) async fn open(
        js: &async_nats::jetstream::Context,
        cluster: &str,
        node: &str,
        lease: Duration,
    ) -> Result<JobShell, super::ClusterError> {
        let bucket = format!("evproto_csms_{cluster}_jobs");
        let about = "evproto CSMS: which node runs which once-per-cluster job";
        let kv = super::bucket(js, &bucket, lease, about).await?;
        Ok(JobShell {
            kv,
            jobs: Jobs::new(Some(node.to_owned()), lease),
        })
    }
}

/// Runs the leases of `wanted`, the node's announcements and the offline
/// sweep.
pub(super) async fn run(
    shared: Arc<Shared>,
    shell: JobShell,
    wanted: Vec<Job>,
    app: Arc<App>,
    server: Server,
) -> Result<(), String> {
    let subject = format!("{}.nodes", shared.prefix);
    let heard = shared
        .client
        .subscribe(subject.clone())
        .await
        .map_err(|e| format!("cluster: {e}"))?;
    let changes = shared
        .client
        .subscribe(format!("{}.changed", shared.prefix))
        .await
        .map_err(|e| format!("cluster: {e}"))?;
    let jobs = shell.jobs.clone();
    let (tell, told) = mpsc::unbounded_channel();
    let (cached, cache_told) = mpsc::unbounded_channel();
    app.store.on_cached_change(cached);
    let _ = jobs.inner.tell.set(tell.clone());
    tokio::spawn(forward_cached(cache_told, tell));
    tokio::spawn(tell_changes(shared.clone(), told));
    tokio::spawn(hear_changes(shared.node.clone(), app.clone(), changes));
    tokio::spawn(announce(shared.clone(), jobs.clone(), server, subject));
    tokio::spawn(listen(jobs.clone(), heard));
    tokio::spawn(offline_loop(shared.clone(), jobs.clone(), app));
    tokio::spawn(lease_loop(shared, shell, wanted));
    Ok(())
}

/// Keeps the leases: takes free jobs, renews held ones, gives up lapsed
/// ones, and sets the gate.
async fn lease_loop(shared: Arc<Shared>, shell: JobShell, wanted: Vec<Job>) {
    let start = Instant::now();
    let mut core = Leases::new(shared.node.clone(), shared.lease, &wanted);
    let (done, mut outcomes) = mpsc::unbounded_channel::<Input>();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let kv = Arc::new(shell.kv);
    loop {
        let input = tokio::select! {
            _ = tick.tick() => Input::Tick,
            Some(i) = outcomes.recv() => i,
        };
        for d in core.handle(start.elapsed(), input) {
            match d {
                Decision::Start { job } => {
                    shell.jobs.set(job, true);
                    shell
                        .jobs
                        .inner
                        .taken
                        .store(core.taken(), Ordering::Relaxed);
                    tracing::info!(job = job.name(), "cluster: this node runs the job");
                }
                Decision::Stop { job } => {
                    shell.jobs.set(job, false);
                    tracing::info!(
                        job = job.name(),
                        "cluster: this node no longer runs the job"
                    );
                }
                Decision::Take { job } => {
                    let (kv, node, done) = (kv.clone(), shared.node.clone(), done.clone());
                    tokio::spawn(async move {
                        let _ = done.send(take(&kv, job, node).await);
                    });
                }
                Decision::Renew { job, revision } => {
                    let (kv, node, done) = (kv.clone(), shared.node.clone(), done.clone());
                    tokio::spawn(async move {
                        let outcome = match kv.update(job.name(), node.into(), revision).await {
                            Ok(revision) => Input::Written { job, revision },
                            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                                Input::Lost { job }
                            }
                            Err(e) => {
                                tracing::warn!(
                                    job = job.name(),
                                    "cluster: renewing the job's lease: {e}"
                                );
                                Input::Failed { job }
                            }
                        };
                        let _ = done.send(outcome);
                    });
                }
            }
        }
    }
}

/// Creates a job's entry naming `node`: the outcome.
async fn take(kv: &kv::Store, job: Job, node: String) -> Input {
    match kv.create(job.name(), node.into()).await {
        Ok(revision) => Input::Written { job, revision },
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
            let holder = match kv.get(job.name()).await {
                Ok(Some(v)) => String::from_utf8(v.to_vec()).ok(),
                _ => None,
            };
            Input::Held { job, holder }
        }
        Err(e) => {
            tracing::debug!(job = job.name(), "cluster: taking the job's lease: {e}");
            Input::Failed { job }
        }
    }
}

/// The store's cached tables changed here: one [`Change::Cached`] per
/// burst.
async fn forward_cached(
    mut changed: mpsc::UnboundedReceiver<()>,
    tell: mpsc::UnboundedSender<Change>,
) {
    while changed.recv().await.is_some() {
        while changed.try_recv().is_ok() {}
        if tell.send(Change::Cached).is_err() {
            return;
        }
    }
}

/// Publishes this node's changes.
async fn tell_changes(shared: Arc<Shared>, mut told: mpsc::UnboundedReceiver<Change>) {
    let subject = format!("{}.changed", shared.prefix);
    while let Some(change) = told.recv().await {
        let msg = ChangeMsg {
            node: shared.node.clone(),
            change,
        };
        let Ok(body) = serde_json::to_vec(&msg) else {
            continue;
        };
        if let Err(e) = shared.client.publish(subject.clone(), body.into()).await {
            tracing::warn!("cluster: telling a change: {e}");
        }
    }
}

/// Applies the other nodes' changes here: the store's caches are
/// forgotten (again a second later, for a read that was in flight), a
/// station's credentials reloaded (and its connection here closed when
/// they changed).
async fn hear_changes(node: String, app: Arc<App>, mut changes: async_nats::Subscriber) {
    while let Some(m) = changes.next().await {
        match serde_json::from_slice::<ChangeMsg>(&m.payload) {
            Ok(c) if c.node == node => {}
            Ok(ChangeMsg {
                change: Change::Cached,
                ..
            }) => {
                app.store.forget_cached();
                let store = app.store.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    store.forget_cached();
                });
            }
            Ok(ChangeMsg {
                change: Change::Station(id),
                ..
            }) => {
                if let Err(e) = app.credentials_reloaded(&id).await {
                    tracing::warn!(station = id, "cluster: reloading credentials: {e}");
                }
            }
            Err(e) => tracing::warn!("cluster: a change that is not one: {e}"),
        }
    }
}

/// Tells the other nodes this node's stations and jobs every few seconds.
async fn announce(shared: Arc<Shared>, jobs: Jobs, server: Server, subject: String) {
    let every = (shared.lease / 3).min(Duration::from_secs(5));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let connected =
            shared.client.connection_state() == async_nats::connection::State::Connected;
        jobs.inner
            .nats_connected
            .store(connected, Ordering::Relaxed);
        let status = NodeStatus {
            node: shared.node.clone(),
            stations: server.connected().len() as u64,
            jobs: jobs.held_names(),
        };
        // this node's own line, NATS or not
        jobs.heard(status.clone());
        let Ok(body) = serde_json::to_vec(&status) else {
            continue;
        };
        if let Err(e) = shared.client.publish(subject.clone(), body.into()).await {
            tracing::debug!("cluster: announcing this node: {e}");
        }
    }
}

/// Records the other nodes' announcements.
async fn listen(jobs: Jobs, mut heard: async_nats::Subscriber) {
    while let Some(m) = heard.next().await {
        match serde_json::from_slice::<NodeStatus>(&m.payload) {
            Ok(s) => jobs.heard(s),
            Err(e) => tracing::warn!("cluster: a node status that is not one: {e}"),
        }
    }
}

/// While this node runs [`Job::Offline`]: every lease, the stations online
/// in the store without a presence entry (their node died) are marked
/// offline, as their node would have on their disconnection.
async fn offline_loop(shared: Arc<Shared>, jobs: Jobs, app: Arc<App>) {
    let mut sweep = OfflineSweep::default();
    let mut tick = tokio::time::interval(shared.lease);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !jobs.holds(Job::Offline) {
            sweep.reset();
            continue;
        }
        let present = match present(&shared).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("cluster: offline sweep: the presence registry: {e}");
                continue;
            }
        };
        let online = match app.store.uptime().await {
            Ok(rows) => rows.into_iter().filter(|r| r.2).map(|r| r.0),
            Err(e) => {
                tracing::warn!("cluster: offline sweep: {e}");
                continue;
            }
        };
        let gone = sweep.sweep(online, &present);
        if gone.is_empty() {
            continue;
        }
        tracing::info!(
            stations = gone.len(),
            "cluster: stations whose node is gone marked offline"
        );
        crate::connections_changed(&app, gone.into_iter().map(|s| (s, false)).collect()).await;
    }
}

/// The identities with a presence entry now.
async fn present(shared: &Shared) -> Result<HashSet<String>, String> {
    let keys = tokio::time::timeout(shared.wait, async {
        shared
            .kv
            .keys()
            .await
            .map_err(|e| e.to_string())?
            .try_collect::<Vec<String>>()
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|_| "no answer in time".to_owned())??;
    Ok(keys.iter().filter_map(|k| super::identity_of(k)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }
    fn list(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_station_online_without_presence_at_two_sweeps_is_marked_offline() {
        let mut s = OfflineSweep::default();
        // A and B online in the store; only A present; B is a suspect
        assert!(s.sweep(list(&["A", "B"]), &set(&["A"])).is_empty());
        // B still absent: offline; C newly absent: a suspect
        assert_eq!(s.sweep(list(&["A", "B", "C"]), &set(&["A"])), list(&["B"]));
        // C came back (its claim landed): nothing
        assert!(s.sweep(list(&["A", "C"]), &set(&["A", "C"])).is_empty());
        // a station marked offline is not online in the store any more
        assert!(s.sweep(list(&["A"]), &set(&["A"])).is_empty());
    }

    #[test]
    fn suspects_are_forgotten_when_the_job_moves() {
        let mut s = OfflineSweep::default();
        s.sweep(list(&["B"]), &set(&[]));
        s.reset();
        assert!(s.sweep(list(&["B"]), &set(&[])).is_empty());
        assert_eq!(s.sweep(list(&["B"]), &set(&[])), list(&["B"]));
    }

    #[test]
    fn a_single_node_runs_every_job_and_shows_no_cluster_metrics() {
        let j = Jobs::single();
        assert!(Job::ALL.into_iter().all(|x| j.holds(x)));
        assert_eq!(j.metrics(), "");
    }

    #[test]
    fn a_cluster_node_runs_what_it_holds_and_shows_the_cluster() {
        let j = Jobs::new(Some("n1".into()), Duration::from_secs(30));
        assert!(!j.holds(Job::Outbox));
        j.set(Job::Outbox, true);
        assert!(j.holds(Job::Outbox) && !j.holds(Job::Offline));
        j.heard(NodeStatus {
            node: "n2".into(),
            stations: 7,
            jobs: vec!["offline".into()],
        });
        let m = j.metrics();
        for line in [
            "csms_cluster_job_held{node=\"n1\",job=\"outbox\"} 1",
            "csms_cluster_job_held{node=\"n1\",job=\"offline\"} 0",
            "csms_cluster_node_stations{node=\"n2\"} 7",
            "csms_cluster_job_holder{job=\"offline\",node=\"n2\"} 1",
            "csms_cluster_nodes 1",
        ] {
            assert!(m.lines().any(|l| l == line), "{line} in {m}");
        }
    }
}
