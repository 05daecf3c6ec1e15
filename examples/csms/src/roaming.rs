//! OCPI roaming: the CSMS as a charge point operator (CPO) on `ocpi`'s
//! server and client.
//!
//! - OCPI is served at `{public_url}/ocpi` on the HTTP port, versions 2.3.0,
//!   2.2.1 and 2.1.1: our objects are kept in 2.2.1 and converted
//!   (`evproto_ocpi::convert`) for 2.3.0 and 2.1.1 partners, both when they pull and
//!   when we push;
//! - partners register either way: `POST /api/ocpi/token-a` issues a token
//!   A for a partner that registers with us; `POST /api/ocpi/partners`
//!   registers us with a partner (we are the credentials Sender);
//! - Locations are built from the station registry (one per station, an
//!   EVSE per OCPP EVSE/connector) and pushed to every partner when a
//!   station boots or a connector changes status; the `default` tariff is
//!   published and pushed;
//! - Tokens pushed by eMSPs are stored and authorize drivers at our
//!   stations (whitelist `ALWAYS`/`ALLOWED`/`ALLOWED_OFFLINE`, or a real-time
//!   `authorize` call to the eMSP for `NEVER`);
//! - Sessions of roaming drivers are pushed to their eMSP when they start
//!   and end, and the CDR is POSTed when the session is priced;
//! - Commands (START_SESSION, STOP_SESSION, RESERVE_NOW,
//!   CANCEL_RESERVATION, UNLOCK_CONNECTOR) become the matching OCPP call to
//!   the station in its version; the `CommandResult` goes to the partner's
//!   `response_url` when the station answers.
//!
//! What a partner can reach (issue 16):
//! - tokens are told apart by owner (`CC/PID`) and uid, never by uid
//!   alone ([`attribute`]): a local driver's card is never a partner's, a
//!   session belongs to the partner whose token it runs on (recorded on
//!   first sight, `store_ocpi`), and only that partner hears of it; local
//!   drivers' sessions and CDRs go to nobody;
//! - partners know sessions and CDRs by random public ids (16 bytes from
//!   the OS generator), never by our `{station}:{transaction}` ids;
//! - commands act only on the caller's own: the token of START_SESSION and
//!   RESERVE_NOW is stored under the caller's identity (never over another
//!   owner's, never a local driver's card); STOP_SESSION, UNLOCK_CONNECTOR
//!   and CANCEL_RESERVATION find only the caller's sessions and
//!   reservations, anything else is `UNKNOWN_SESSION`/`REJECTED`;
//! - registration refuses identities that are ours or another partner's;
//!   a failed registration withdraws the token B we handed out;
//! - a store failure reaches the partner as OCPI 3000 (HTTP 500/503), never
//!   as a decision;
//! - partner URLs (versions, endpoints, a command's `response_url`) pass
//!   the strict `UrlPolicy` (https, public addresses) unless the lab setting
//!   `ocpi_allow_private_urls` is on, and a `response_url` must be on a host
//!   the partner registered (`evproto_ocpi`, issue 16 item 5).
//!
//! Pushes go through the outbox (kind [`PUSH`]): each push of one object
//! to one partner is an entry naming the partner, the module and the
//! object; running it PUTs the object as it is then (a CDR is POSTed, once
//! ever per partner: its entry id is made from its subject), so running an
//! entry twice is harmless. An entry is tried at once; when the partner is
//! down (a transport error, HTTP 5xx/408/429, OCPI 3xxx) it is retried with
//! exponential backoff (`outbox_retry_base` doubled per attempt, at most 10
//! minutes) and all of that partner's pushes wait for the retry (one probe,
//! not one per object; a change meanwhile joins the waiting push of its
//! object). The partner gets everything once it answers again, in the
//! order it was queued. A push the partner refuses (4xx, OCPI 2xxx) is
//! ended with its reason. One run at a time per partner and object, each
//! reading the object when its turn comes, so the last push carries the
//! newest state.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use evproto_csms_core::authorization::Status;
use evproto_ocpi::client::{Client, ClientError, Peer};
use evproto_ocpi::commands::{respond, Command};
use evproto_ocpi::credentials::{Own, Registered, UrlPolicy};
use evproto_ocpi::pagination::Page;
use evproto_ocpi::server::{
    Config as OcpiConfig, Handler, Party, Role, Server, Store as OcpiStoreTrait, StoreError,
};
use evproto_ocpi::types::{CiString, Str};
use evproto_ocpi::v221::{self, Cdr, CommandResponseType as Answer};
use evproto_ocpi::Version;
use evproto_ocpp_proto::ProtocolVersion;
use serde::Serialize;
use serde_json::{json, Value};

use tokio::sync::{broadcast, mpsc};

use crate::events::LiveEvent;
use crate::gateway::{StationCallError, StationGateway};
use crate::store::{Session, Store};

/// `evproto_ocpi::server::Store` on the CSMS database.
#[derive(Debug, Clone)]
pub struct OcpiStore(pub Store);

/// A registration as the store keeps it (`Registered`'s own JSON form).
fn registration_to_json(r: &Registered) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

fn registration_from_json(v: &Value) -> Option<Registered> {
    serde_json::from_value(v.clone()).ok()
}

/// A stored party; a registration that cannot be read back is a store
/// failure (answered 500), never taken for "not registered".
fn party_of(row: (String, String, bool, Option<Value>)) -> Result<Party, StoreError> {
    let registration = match &row.3 {
        Some(v) => Some(
            registration_from_json(v)
                .ok_or_else(|| db_error(crate::store::StoreError::Corrupt("ocpi registration")))?,
        ),
        None => None,
    };
    Ok(Party {
        id: row.0,
        token: row.1,
        token_a: row.2,
        registration,
    })
}

/// A csms store failure as the OCPI server answers it: a database that
/// cannot be reached is "unavailable" (HTTP 503), anything else a failure
/// (HTTP 500); both OCPI 3000, the text logged only.
fn db_error(e: crate::store::StoreError) -> StoreError {
    use crate::store::StoreError as E;
    match e {
        E::Db(
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed,
        ) => StoreError::unavailable(e),
        e => StoreError::backend(e),
    }
}

#[async_trait]
impl OcpiStoreTrait for OcpiStore {
    async fn party_by_token(&self, token: &str) -> Result<Option<Party>, StoreError> {
        let p = self.0.ocpi_party_by_token(token).await.map_err(db_error)?;
        p.map(party_of).transpose()
    }
    async fn save_party(&self, party: Party) -> Result<(), StoreError> {
        let reg = party.registration.as_ref().map(registration_to_json);
        self.0
            .ocpi_save_party(&party.id, &party.token, party.token_a, reg.as_ref())
            .await
            .map_err(db_error)
    }
    async fn remove_party(&self, id: &str) -> Result<(), StoreError> {
        let r = self.0.ocpi_remove_party(id).await;
        r.map_err(db_error)
    }
    async fn list_parties(&self) -> Result<Vec<Party>, StoreError> {
        let parties = self.0.ocpi_parties().await.map_err(db_error)?;
        parties.into_iter().map(party_of).collect()
    }
    async fn put_object(&self, module: &str, key: &str, object: Value) -> Result<bool, StoreError> {
        let r = self.0.ocpi_put_object(module, key, &object).await;
        r.map_err(db_error)
    }
    async fn get_object(&self, module: &str, key: &str) -> Result<Option<Value>, StoreError> {
        let r = self.0.ocpi_object(module, key).await;
        r.map_err(db_error)
    }
    async fn delete_object(&self, module: &str, key: &str) -> Result<bool, StoreError> {
        let r = self.0.ocpi_delete_object(module, key).await;
        r.map_err(db_error)
    }
    async fn list_objects(
        &self,
        module: &str,
        owners: &[String],
        page: &Page,
    ) -> Result<(Vec<Value>, usize), StoreError> {
        let all = self.0.ocpi_objects(module).await.map_err(db_error)?;
        Ok(evproto_ocpi::server::select_page(
            all.iter().map(|(k, v)| (k.as_str(), v)),
            owners,
            page,
        ))
    }
}

/// The CSMS's roaming side.
#[derive(Debug)]
pub struct Roaming {
    /// The OCPI server (mounted at `/ocpi`).
    pub server: Server,
    /// The OCPI client.
    pub client: Client,
    /// Our country code.
    pub country_code: String,
    /// Our party id.
    pub party_id: String,
    /// Our versions URL.
    pub versions_url: String,
    own: Own,
    store: Store,
    /// First retry delay of a failed push (doubled per attempt).
    retry_base: Duration,
    /// One run at a time per push subject (partner and object).
    turns: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Partners with a retry timer set (see [`Roaming::retry_later`]).
    retrying: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Work for [`RoamingWork::run`] (partner syncs, push retries).
    work: mpsc::UnboundedSender<Work>,
    /// Stations whose Location is to be rebuilt.
    rebuilds: std::sync::Mutex<Rebuilds>,
    /// The last round of Location rebuilds done.
    rebuilt: tokio::sync::watch::Sender<u64>,
}

/// Locations stored per group commit.
const LOCATIONS_PER_COMMIT: usize = 256;

/// Stations whose Location is to be rebuilt
/// ([`Roaming::location_changed_soon`]).
#[derive(Debug, Default)]
struct Rebuilds {
    /// Marked since the last round took them.
    stations: std::collections::BTreeSet<String>,
    /// Rounds taken (the next takes `stations`).
    taken: u64,
    /// Whether the rebuilder runs.
    running: bool,
}

/// One of our objects as JSON text if it is valid OCPI 2.2.1 (else logged):
/// the generated types hold the fields' bounds, the schema also checks
/// formats (coordinates, codes).
fn valid_ocpi(kind: &str, id: &str, obj: &impl Serialize) -> Option<String> {
    let text = match serde_json::to_string(obj) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(id, "{kind} not written: {e}");
            return None;
        }
    };
    match evproto_ocpi::validate::validate(Version::V221, kind, &text) {
        Ok(_) => Some(text),
        Err(e) => {
            tracing::warn!(id, "{kind} not valid OCPI: {e}");
            None
        }
    }
}

/// What roaming needs from the rest of the CSMS.
#[derive(Debug)]
pub struct Needs<'a> {
    /// The store (partners, objects, sessions, the outbox).
    pub store: Store,
    /// For partners' commands to stations.
    pub gateway: StationGateway,
    /// Where commands, registrations and pushes are published.
    pub events: broadcast::Sender<LiveEvent>,
    /// Our identity (`ocpi_country_code`, `ocpi_party_id`), URL policy,
    /// push retry base and call timeout.
    pub config: &'a crate::config::Config,
}

/// Background work of the roaming side, asked for by the OCPI handler and
/// by failed pushes, run by [`RoamingWork::run`].
#[derive(Debug)]
enum Work {
    /// Push everything to a partner that just registered.
    Sync(String),
    /// Run a partner's due pushes after a delay.
    Retry(String, Duration),
}

/// The roaming side's background worker: spawn [`RoamingWork::run`] once
/// the roaming side is built.
#[derive(Debug)]
pub struct RoamingWork {
    requests: mpsc::UnboundedReceiver<Work>,
}

impl RoamingWork {
    /// Runs the work asked for until the roaming side is dropped.
    pub async fn run(mut self, roaming: Arc<Roaming>) {
        while let Some(work) = self.requests.recv().await {
            let r = roaming.clone();
            match work {
                Work::Sync(partner) => {
                    tokio::spawn(async move { r.sync_partner(&partner).await });
                }
                Work::Retry(partner, delay) => {
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        r.retry_now(&partner).await;
                    });
                }
            }
        }
    }
}

/// The outbox kind of a push to a partner.
pub const PUSH: &str = "ocpi_push";

/// The subject of a push entry: partner id, module, object id (our id:
/// the station for a Location, the tariff id, our session id for a Session
/// and its CDR), as a JSON array.
fn push_subject(partner: &str, module: &str, id: &str) -> String {
    json!([partner, module, id]).to_string()
}

fn parse_push_subject(subject: &str) -> Option<(String, String, String)> {
    let v: Vec<String> = serde_json::from_str(subject).ok()?;
    match <[String; 3]>::try_from(v) {
        Ok([partner, module, id]) => Some((partner, module, id)),
        Err(_) => None,
    }
}

/// Why a push did not happen.
#[derive(Debug, thiserror::Error)]
enum PushError {
    /// The partner is unreachable or failing: retry later, hold its pushes.
    #[error("partner unavailable: {0}")]
    Down(ClientError),
    /// The partner refused the object: retrying would not help.
    #[error("partner refused: {0}")]
    Refused(ClientError),
    /// Our store failed reading the object: retry later.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl From<ClientError> for PushError {
    fn from(e: ClientError) -> PushError {
        let down = match &e {
            ClientError::Http(_) => true,
            ClientError::Unexpected { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            ClientError::Status { code, .. } => *code >= 3000,
            _ => false,
        };
        if down {
            PushError::Down(e)
        } else {
            PushError::Refused(e)
        }
    }
}

impl Roaming {
    /// Builds the roaming side and its background worker; `base_url` is
    /// where `/ocpi` is reachable.
    ///
    /// # Errors
    ///
    /// The HTTP client could not be built.
    pub fn new(needs: Needs<'_>, base_url: &str) -> Result<(Arc<Roaming>, RoamingWork), String> {
        let Needs {
            store,
            gateway,
            events,
            config,
        } = needs;
        let (country_code, party_id) = (&config.ocpi_country_code, &config.ocpi_party_id);
        let versions_url = format!("{base_url}/versions");
        let mut own = Own::with_role(
            &versions_url,
            country_code,
            party_id,
            "CPO",
            "evproto reference CSMS",
        );
        own.versions = vec![Version::V230, Version::V221, Version::V211];
        let (work, requests) = mpsc::unbounded_channel();
        own.policy = if config.ocpi_allow_private_urls {
            UrlPolicy::lab()
        } else {
            UrlPolicy::default()
        };
        let client = Client::new(own.policy).map_err(|e| e.to_string())?;
        let handler = CpoHandler {
            store: store.clone(),
            gateway,
            events,
            client: client.clone(),
            call_timeout: config.call_timeout,
            work: work.clone(),
        };
        let server = Server::new(
            OcpiConfig {
                role: Role::Cpo,
                base_url: base_url.to_string(),
                own: own.clone(),
                max_limit: 100,
                token_encoding: evproto_ocpi::auth::TokenEncoding::Lenient,
                trailing_slash: false,
                storage_version: Some(Version::V221),
            },
            Arc::new(OcpiStore(store.clone())),
            Arc::new(handler),
            client.clone(),
        );
        let roaming = Roaming {
            server,
            client,
            country_code: country_code.to_ascii_uppercase(),
            party_id: party_id.to_ascii_uppercase(),
            versions_url,
            own,
            store,
            retry_base: config.outbox_retry_base,
            turns: std::sync::Mutex::default(),
            retrying: std::sync::Mutex::default(),
            work,
            rebuilds: std::sync::Mutex::default(),
            rebuilt: tokio::sync::watch::Sender::new(0),
        };
        Ok((Arc::new(roaming), RoamingWork { requests }))
    }

    fn owner_key(&self, id: &str) -> String {
        format!("{}/{}/{id}", self.country_code, self.party_id)
    }

    /// Registers us with a partner that gave us `token` (its token A) and
    /// its versions URL; returns the party id.
    ///
    /// The token B we hand the partner works only while the registration
    /// is under way and once it is stored: a failed registration withdraws
    /// it. A partner whose credentials claim our identity or another
    /// partner's is refused.
    ///
    /// # Errors
    ///
    /// The handshake failed, the partner's identity is taken, or the store
    /// failed; the reason.
    pub async fn register_with(&self, versions_url: &str, token: &str) -> Result<Value, String> {
        let token_b = crate::store::random_hex(24);
        let label = format!("partner-{}", &token_b[..8]);
        // The partner calls our versions back with token B during the handshake.
        self.server
            .issue_token_a_as(&label, &token_b)
            .await
            .map_err(|e| e.to_string())?;
        let done = self
            .finish_registration(&label, versions_url, token, &token_b)
            .await;
        if let Err(why) = &done {
            // token B must not outlive the failed registration
            if let Err(e) = self.store.ocpi_remove_party(&label).await {
                tracing::error!(label, "token B of a failed registration not withdrawn: {e}");
                return Err(format!("{why}; token B not withdrawn: {e}"));
            }
        }
        done
    }

    async fn finish_registration(
        &self,
        label: &str,
        versions_url: &str,
        token: &str,
        token_b: &str,
    ) -> Result<Value, String> {
        let peer = self
            .client
            .register(self.own.clone(), versions_url, token, token_b)
            .await
            .map_err(|e| e.to_string())?;
        let reg = peer.registration().clone();
        let taken = self
            .server
            .identity_in_use(label, &reg.peer_credentials)
            .await
            .map_err(|e| e.to_string())?;
        if let Some((cc, pid)) = taken {
            return Err(format!(
                "the partner's identity {cc}/{pid} is already in use"
            ));
        }
        let id = party_label(&reg).unwrap_or(label.to_owned());
        let parties = self.store.ocpi_parties().await.map_err(|e| e.to_string())?;
        if parties.iter().any(|p| p.0 == id) {
            return Err(format!("a partner named {id} exists"));
        }
        // one transaction: the token A entry becomes the registered partner
        self.store
            .ocpi_replace_party(label, &id, token_b, &registration_to_json(&reg))
            .await
            .map_err(|e| e.to_string())?;
        self.sync_partner(&id).await;
        Ok(
            json!({"id": id, "version": reg.version.as_str(), "roles": reg.peer_credentials.get("roles").cloned()}),
        )
    }

    /// Every stored party (a store failure is logged: nobody is pushed to).
    async fn parties(&self) -> Vec<Party> {
        let rows = match self.store.ocpi_parties().await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!("OCPI parties not read: {e}");
                return Vec::new();
            }
        };
        rows.into_iter()
            .filter_map(|row| {
                let id = row.0.clone();
                party_of(row)
                    .map_err(|e| tracing::error!(party = id, "OCPI party not read: {e}"))
                    .ok()
            })
            .collect()
    }

    /// Every registered partner as a client handle.
    pub async fn partners(&self) -> Vec<(String, Peer)> {
        self.parties()
            .await
            .into_iter()
            .filter(|p| !p.token_a)
            .filter_map(|p| {
                let reg = p.registration?;
                let from = (self.country_code.clone(), self.party_id.clone());
                Some((p.id, self.client.peer(reg).from_party(&from.0, &from.1)))
            })
            .collect()
    }

    /// Partners as the API shows them.
    pub async fn partner_list(&self) -> Vec<Value> {
        self.parties()
            .await
            .into_iter()
            .map(|p| {
                let reg = p.registration.as_ref();
                json!({"id": p.id, "registered": !p.token_a && reg.is_some(),
                    "version": reg.map(|r| r.version.as_str()),
                    "roles": reg.and_then(|r| r.peer_credentials.get("roles").cloned()),
                    "modules": reg.map(|r| r.endpoints.iter().map(|e| format!("{}:{}", e.module, e.role.clone().unwrap_or_default())).collect::<Vec<_>>())})
            })
            .collect()
    }

    /// Pushes our locations and tariffs to a newly registered partner.
    async fn sync_partner(&self, partner: &str) {
        let mut due = Vec::new();
        for module in ["locations", "tariffs"] {
            let objects = match self.store.ocpi_objects(module).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!("{module} not pushed to a new partner: {e}");
                    continue;
                }
            };
            let ours = format!("{}/{}/", self.country_code, self.party_id);
            for (key, _) in objects {
                if let Some(id) = key.strip_prefix(&ours) {
                    due.extend(self.queue_push(partner, module, id).await);
                }
            }
        }
        self.run_pushes(due).await;
    }

    /// Rebuilds a station's Location, stores it for pulls and pushes it;
    /// returns once it is stored and its pushes are queued.
    ///
    /// See [`Roaming::location_changed_soon`]: this waits for the round
    /// that rebuilds it.
    pub async fn location_changed(self: &Arc<Self>, station_id: &str) {
        let round = self.location_changed_soon(station_id);
        let mut rebuilt = self.rebuilt.subscribe();
        let _ = rebuilt.wait_for(|done| *done >= round).await;
    }

    /// Marks a station's Location for rebuilding and returns at once; the
    /// round that will rebuild it.
    ///
    /// One rebuilder works in rounds: each takes every station marked
    /// since the round before, reads each when its round comes (so the
    /// newest view is stored last: a boot and its first status arrive
    /// together) and stores the Locations `LOCATIONS_PER_COMMIT` (256) to a
    /// group commit. A boot storm of thousands of stations is then a few
    /// rounds of a few commits, instead of one task and one commit per
    /// event holding the write connection every station message needs.
    pub fn location_changed_soon(self: &Arc<Self>, station_id: &str) -> u64 {
        let (round, start) = {
            let mut r = self.rebuilds.lock().unwrap_or_else(|e| e.into_inner());
            r.stations.insert(station_id.to_owned());
            let start = !r.running;
            r.running = true;
            (r.taken + 1, start)
        };
        if start {
            let this = self.clone();
            tokio::spawn(async move { this.rebuild_locations().await });
        }
        round
    }

    /// The rebuilder: rounds until no station is marked.
    async fn rebuild_locations(self: Arc<Self>) {
        loop {
            let (stations, round) = {
                let mut r = self.rebuilds.lock().unwrap_or_else(|e| e.into_inner());
                if r.stations.is_empty() {
                    r.running = false;
                    return;
                }
                r.taken += 1;
                (std::mem::take(&mut r.stations), r.taken)
            };
            let stations: Vec<String> = stations.into_iter().collect();
            let mut due = Vec::new();
            // read once per round, not once per station
            let partners: Vec<String> = self.partners().await.into_iter().map(|p| p.0).collect();
            for chunk in stations.chunks(LOCATIONS_PER_COMMIT) {
                let mut ops = Vec::with_capacity(chunk.len());
                let mut stored = Vec::with_capacity(chunk.len());
                // three reads for the chunk, not three per station
                let read = async {
                    let registered = self.store.stations_by_id(chunk).await?;
                    let places = Place::of_many(&self.store, chunk).await?;
                    Ok::<_, crate::store::StoreError>((registered, places))
                };
                let (mut registered, mut places) = match read.await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(stations = chunk.len(), "locations not built: {e}");
                        continue;
                    }
                };
                for id in chunk {
                    let Some(station) = registered.remove(id) else {
                        continue;
                    };
                    let place = places.remove(id).unwrap_or_default();
                    match location_of(&self.country_code, &self.party_id, &station, place) {
                        Ok(loc) => {
                            if let Some(body) = valid_ocpi("Location", id, &loc) {
                                ops.push(crate::writer::Op::OcpiObject {
                                    module: "locations",
                                    key: self.owner_key(id),
                                    body,
                                });
                                stored.push(id);
                            }
                        }
                        Err(e) => tracing::warn!(station = %id, "location not built: {e}"),
                    }
                }
                if let Err(e) = self.store.writer().write(ops).await {
                    // partners that pull would not see them: not pushed either
                    tracing::error!(stations = stored.len(), "locations not stored: {e}");
                    continue;
                }
                for id in stored {
                    for partner in &partners {
                        due.extend(self.queue_push(partner, "locations", id).await);
                    }
                }
            }
            self.rebuilt.send_replace(round);
            if !due.is_empty() {
                let this = self.clone();
                tokio::spawn(async move { this.run_pushes(due).await });
            }
        }
    }

    /// Publishes a tariff under its id, as ours and changed now, and
    /// pushes it.
    pub async fn tariff_changed(self: &Arc<Self>, id: &str, tariff: &v221::Tariff) {
        let mut t = tariff.clone();
        let ours = (|| {
            t.country_code = CiString::new(self.country_code.as_str())?;
            t.party_id = CiString::new(self.party_id.as_str())?;
            t.id = CiString::new(id)?;
            Ok::<_, evproto_ocpi::types::TypeError>(())
        })();
        if let Err(e) = ours {
            tracing::warn!(id, "tariff not published: {e}");
            return;
        }
        t.last_updated = evproto_ocpi::types::DateTime(Utc::now());
        self.publish("tariffs", "Tariff", id, &t).await;
    }

    /// Validates one of our objects, stores it for pulls and pushes it to
    /// every partner in the background.
    async fn publish(
        self: &Arc<Self>,
        module: &'static str,
        kind: &'static str,
        id: &str,
        obj: &impl Serialize,
    ) {
        if self.store_published(module, kind, id, obj).await {
            let due = self.queue_all(module, id).await;
            let this = self.clone();
            tokio::spawn(async move { this.run_pushes(due).await });
        }
    }

    /// Validates one of our objects and stores it for pulls; `false`
    /// (logged) when it is not valid OCPI or not stored, and then not
    /// pushed either.
    async fn store_published(
        &self,
        module: &'static str,
        kind: &'static str,
        id: &str,
        obj: &impl Serialize,
    ) -> bool {
        let Some(body) = valid_ocpi(kind, id, obj) else {
            return false;
        };
        let op = crate::writer::Op::OcpiObject {
            module,
            key: self.owner_key(id),
            body,
        };
        if let Err(e) = self.store.writer().write(vec![op]).await {
            // partners that pull would not see it: not pushed either
            tracing::error!(id, "{kind} not stored: {e}");
            return false;
        }
        true
    }

    /// Queues a push of one of our objects to every partner: the entries
    /// due now.
    async fn queue_all(&self, module: &str, id: &str) -> Vec<(String, String)> {
        let mut due = Vec::new();
        for (partner, _) in self.partners().await {
            due.extend(self.queue_push(&partner, module, id).await);
        }
        due
    }

    /// Queues a push of `module`/`id` to `partner` in the outbox: the entry
    /// `(id, subject)` when it is due now (the caller runs it), `None` when
    /// it waits behind the partner's retry, joined a waiting push of the
    /// same object, or is a CDR queued before.
    async fn queue_push(&self, partner: &str, module: &str, id: &str) -> Option<(String, String)> {
        let subject = push_subject(partner, module, id);
        let entry = if module == "cdrs" {
            // a CDR is POSTed once per partner, ever
            format!("{PUSH}:{subject}")
        } else {
            format!("{PUSH}:{}", crate::store::random_hex(16))
        };
        match self.store.outbox_add(&entry, PUSH, &subject, partner).await {
            Ok(crate::store::OutboxAdded::Due) => Some((entry, subject)),
            Ok(_) => None,
            Err(e) => {
                tracing::error!(subject, "push not queued: {e}");
                None
            }
        }
    }

    /// Runs push entries one after the other.
    async fn run_pushes(&self, due: Vec<(String, String)>) {
        for (id, subject) in due {
            self.run_push(&id, &subject).await;
        }
    }

    /// Runs one push entry of the outbox and marks it: done; failed with
    /// backoff and the partner's other pushes held as long (partner down);
    /// ended with the reason (partner refused the object). One run at a time
    /// per subject, and only while the entry is still due, so an entry is
    /// never pushed twice by two runners (the outbox worker and the change
    /// that queued it).
    pub async fn run_push(&self, id: &str, subject: &str) {
        let Some((partner, module, object)) = parse_push_subject(subject) else {
            tracing::error!(id, subject, "push entry with an unreadable subject: ended");
            if let Err(e) = self.store.outbox_give_up(id, "unreadable subject").await {
                tracing::warn!(id, "outbox: {e}");
            }
            return;
        };
        let turn = self
            .turns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(subject.to_owned())
            .or_default()
            .clone();
        {
            let _turn = turn.lock().await;
            match self.store.outbox_due(id).await {
                Ok(true) => {
                    let pushed = self.push_now(&partner, &module, &object).await;
                    self.mark_push(id, &partner, pushed).await;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(id, "outbox: {e}"),
            }
        }
        // the map keeps only turns somebody holds or waits for
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        if Arc::strong_count(&turn) <= 2 {
            turns.remove(subject);
        }
    }

    async fn mark_push(&self, id: &str, partner: &str, pushed: Result<(), PushError>) {
        let marked = match pushed {
            Ok(()) => self.store.outbox_done(id).await,
            Err(PushError::Refused(e)) => {
                tracing::warn!(id, partner, "push refused, not retried: {e}");
                self.store.outbox_give_up(id, &e.to_string()).await
            }
            Err(e) => {
                let failed = self
                    .store
                    .outbox_failed(id, &e.to_string(), self.retry_base)
                    .await;
                match (failed, &e) {
                    (Ok(delay), PushError::Down(_)) => {
                        tracing::warn!(id, partner, "push failed, retried in {delay:?}: {e}");
                        let held = self.store.outbox_hold(PUSH, partner, delay).await;
                        self.retry_later(partner, delay);
                        held
                    }
                    (Ok(delay), _) => {
                        tracing::warn!(id, partner, "push failed, retried in {delay:?}: {e}");
                        Ok(())
                    }
                    (Err(f), _) => Err(f),
                }
            }
        };
        if let Err(e) = marked {
            tracing::warn!(id, "outbox: {e}");
        }
    }

    /// Runs the partner's due pushes after `delay`, in the order they were
    /// queued (the first failure holds the rest again and sets the next
    /// timer). One timer per partner; the outbox worker runs the same
    /// entries after a restart.
    fn retry_later(&self, partner: &str, delay: Duration) {
        if !self
            .retrying
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(partner.to_owned())
        {
            return;
        }
        let _ = self.work.send(Work::Retry(partner.to_owned(), delay));
    }

    /// Runs a partner's due pushes now (its retry timer went off).
    async fn retry_now(&self, partner: &str) {
        self.retrying
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(partner);
        match self.store.outbox_pending_in(PUSH, partner, 500).await {
            Ok(due) => self.run_pushes(due).await,
            Err(e) => tracing::warn!(partner, "outbox: {e}"),
        }
    }

    /// Pushes the current state of one of our objects to a partner. Nothing
    /// to do (`Ok`) when the partner or the object is gone, the partner
    /// has no Receiver for the module, or the object is not the partner's.
    async fn push_now(&self, partner: &str, module: &str, id: &str) -> Result<(), PushError> {
        let Some((_, peer)) = self
            .partners()
            .await
            .into_iter()
            .find(|(p, _)| p == partner)
        else {
            tracing::info!(partner, "push to a partner no longer registered: dropped");
            return Ok(());
        };
        let (cc, pid) = (self.country_code.as_str(), self.party_id.as_str());
        match module {
            "locations" | "tariffs" => {
                let kind = if module == "locations" {
                    "Location"
                } else {
                    "Tariff"
                };
                // as stored for pulls (validated when published)
                if let Some(obj) = self.store.ocpi_object(module, &self.owner_key(id)).await? {
                    push_object(&peer, module, (cc, pid, id), &obj, kind).await?;
                }
            }
            "sessions" | "cdrs" => {
                let Some(s) = self.store.session(id).await? else {
                    return Ok(());
                };
                let Some((owner, session, cdr, token_type)) = self.session_objects(&s).await?
                else {
                    return Ok(());
                };
                if !serves_owner(&peer, &owner) {
                    return Ok(());
                }
                if module == "sessions" {
                    if peer.endpoint("sessions", "RECEIVER").is_ok() {
                        if let Some(mut body) = for_peer(&peer, "Session", &session) {
                            restore_token_type(&peer, &mut body, token_type.as_ref());
                            let ids = [cc, pid, session.id.as_str()];
                            peer.put("sessions", &ids, &body).await?;
                        }
                    }
                } else if let Some(cdr) = cdr {
                    if peer.endpoint("cdrs", "RECEIVER").is_ok() {
                        if let Some(mut body) = for_peer(&peer, "Cdr", &cdr) {
                            restore_token_type(&peer, &mut body, token_type.as_ref());
                            let r = peer.post("cdrs", &[], &body).await?;
                            tracing::info!(cdr = %cdr.id.as_str(), location = ?r.location, "CDR sent");
                        }
                    }
                }
            }
            other => tracing::error!(partner, "push of unknown module {other}: dropped"),
        }
        Ok(())
    }

    /// The authorization status of a roaming token, `None` if no
    /// partner's token stands for `uid` (see [`attribute`]: a local
    /// driver's card, or a uid several partners pushed and none of them
    /// started with, is no partner's). A token with whitelist `NEVER` is
    /// asked of its eMSP in real time with its own type (`EMAID` for a
    /// Plug & Charge contract of a 2.3.0 eMSP); no answer in 5 s, or a
    /// token that cannot be read, is `Invalid`, never taken for unknown.
    pub async fn authorize(&self, uid: &str) -> Option<Status> {
        use evproto_ocpi::v230::WhitelistType as W;
        let (key, token) = match attribute(&self.store, uid, None).await {
            Ok(found) => found?,
            Err(e) => {
                tracing::error!("roaming token {uid} not read: {e}");
                return Some(Status::Invalid);
            }
        };
        if !token.valid {
            return Some(Status::Blocked);
        }
        match token.whitelist {
            W::Always | W::Allowed | W::AllowedOffline => Some(Status::Accepted),
            W::Never => {
                // mod_tokens "Real-time authorization", under the uid the
                // eMSP knows the token by
                let owner = owner_of(&key);
                for (_, peer) in self.partners().await {
                    if !serves_owner(&peer, &owner) {
                        continue;
                    }
                    let ty = token.r#type.as_str();
                    let asked = token.uid.as_str();
                    let answer = tokio::time::timeout(
                        Duration::from_secs(5),
                        peer.authorize(asked, ty, None),
                    )
                    .await;
                    // `allowed` reads the same in every version
                    #[derive(serde::Deserialize)]
                    struct Info {
                        allowed: v221::AllowedType,
                    }
                    let info = match answer {
                        Ok(Ok(info)) => serde_json::from_value::<Info>(info).ok(),
                        Ok(Err(e)) => {
                            tracing::info!(uid, "real-time authorization not answered: {e}");
                            None
                        }
                        Err(_) => {
                            tracing::warn!(uid, "real-time authorization timed out");
                            None
                        }
                    };
                    return Some(match info.map(|i| i.allowed) {
                        Some(v221::AllowedType::Allowed) => Status::Accepted,
                        Some(v221::AllowedType::Expired) => Status::Expired,
                        Some(v221::AllowedType::NoCredit) => Status::NoCredit,
                        Some(_) => Status::Blocked,
                        None => Status::Invalid,
                    });
                }
                Some(Status::Invalid)
            }
        }
    }

    /// Pushes a roaming driver's session to its eMSP (start, updates, end)
    /// and, when priced (`cdr`), its CDR: the one `crate::billing` built
    /// and stored, as it is (in the partner's version), never a second one.
    /// Both go through the outbox ([`PUSH`]) and carry what is stored when
    /// they run. The partner knows both by their public ids (`store_ocpi`),
    /// never by ours; a local driver's session goes to no partner.
    pub async fn session_changed(self: &Arc<Self>, s: &Session, cdr: Option<&Cdr>) {
        let att = match attribution(&self.store, s).await {
            Ok(Some(a)) => a,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(session = %s.id, "session not attributed, not pushed: {e}");
                return;
            }
        };
        let owner = owner_of(&format!("{}/", att.row.owner));
        let mut due = Vec::new();
        for (partner, peer) in self.partners().await {
            if !serves_owner(&peer, &owner) {
                continue;
            }
            due.extend(self.queue_push(&partner, "sessions", &s.id).await);
            if cdr.is_some() {
                due.extend(self.queue_push(&partner, "cdrs", &s.id).await);
            }
        }
        let this = self.clone();
        tokio::spawn(async move { this.run_pushes(due).await });
    }

    /// A roaming driver's session as its eMSP sees it: the owner (`CC`,
    /// `PID`), the Session and, once priced, the CDR (both 2.2.1, with their
    /// public ids), and the type of the token as its eMSP pushed it (for
    /// [`restore_token_type`]); `None` for a local driver's session.
    async fn session_objects(
        &self,
        s: &Session,
    ) -> Result<Option<SessionObjects>, crate::store::StoreError> {
        let Some(att) = attribution(&self.store, s).await? else {
            return Ok(None);
        };
        let owner = owner_of(&format!("{}/", att.row.owner));
        fn public_id<const N: usize>(
            session: &str,
            field: &str,
            id: &str,
        ) -> Result<CiString<N>, crate::store::StoreError> {
            CiString::new(id).map_err(|e| {
                tracing::error!(session, "{field}: {e}");
                crate::store::StoreError::Corrupt("ocpi_sessions public id")
            })
        }
        let token = match att.token.as_ref() {
            Some(t) => Self::cdr_token(t),
            // the partner withdrew the token since: the session still carries it
            None => v221::CdrToken {
                country_code: public_id(&s.id, "country_code", &owner.0)?,
                party_id: public_id(&s.id, "party_id", &owner.1)?,
                uid: public_id(&s.id, "uid", &att.row.token_uid)?,
                r#type: v221::TokenType::Rfid,
                contract_id: public_id(&s.id, "contract_id", &att.row.token_uid)?,
                extra: Default::default(),
            },
        };
        let cdr = match self.store.cdr(&s.id).await? {
            Some(stored) => {
                let mut c: Cdr = serde_json::from_value(stored)
                    .map_err(|_| crate::store::StoreError::Corrupt("cdrs.body"))?;
                c.id = public_id(&s.id, "cdr id", &att.row.cdr_id)?;
                c.session_id = Some(public_id(&s.id, "session id", &att.row.public_id)?);
                Some(c)
            }
            None => None,
        };
        // the session's currency is its tariff's (the CDR's when priced)
        let currency = match &cdr {
            Some(c) => Some(c.currency.clone()),
            None => self.store.tariff("default").await?.and_then(|t| {
                #[derive(serde::Deserialize)]
                struct Currency {
                    currency: Str<3>,
                }
                serde_json::from_value::<Currency>(t)
                    .ok()
                    .map(|c| c.currency)
            }),
        };
        let id = public_id(&s.id, "session id", &att.row.public_id)?;
        let session = match self.ocpi_session(s, id, token, currency) {
            Ok(session) => session,
            Err(e) => {
                tracing::error!(session = %s.id, "not an OCPI session: {e}");
                return Err(crate::store::StoreError::Corrupt("sessions"));
            }
        };
        let token_type = att.token.map(|t| t.r#type);
        Ok(Some((owner, session, cdr, token_type)))
    }

    /// A roaming token as a Session/CDR carries it (in 2.2.1, the version
    /// the CSMS writes them in: a type 2.2.1 lacks, `EMAID`, is `OTHER`
    /// there, and the push writes it back for a partner of
    /// a later version).
    pub fn cdr_token(token: &RoamingToken) -> v221::CdrToken {
        use evproto_ocpi::v230::TokenType as T;
        v221::CdrToken {
            country_code: token.country_code.clone(),
            party_id: token.party_id.clone(),
            uid: token.uid.clone(),
            r#type: match token.r#type {
                T::AdHocUser => v221::TokenType::AdHocUser,
                T::AppUser => v221::TokenType::AppUser,
                T::Rfid => v221::TokenType::Rfid,
                T::Emaid | T::Other | T::Custom(_) => v221::TokenType::Other,
            },
            contract_id: token.contract_id.clone(),
            extra: Default::default(),
        }
    }

    /// The Session object under its public `id`; `currency` is the
    /// tariff's (without a tariff nothing is priced and the required field
    /// says EUR).
    fn ocpi_session(
        &self,
        s: &Session,
        id: CiString<36>,
        cdr_token: v221::CdrToken,
        currency: Option<Str<3>>,
    ) -> Result<v221::Session, evproto_ocpi::types::TypeError> {
        let at = |t: Option<chrono::DateTime<Utc>>| {
            evproto_ocpi::types::DateTime(t.unwrap_or_else(Utc::now))
        };
        let evse = s.evse_id.unwrap_or(1);
        Ok(v221::Session {
            country_code: CiString::new(self.country_code.as_str())?,
            party_id: CiString::new(self.party_id.as_str())?,
            id,
            start_date_time: at(s.started_at),
            end_date_time: s.stopped_at.map(|t| at(Some(t))),
            kwh: (s.energy_wh / rust_decimal::Decimal::from(1000)).normalize(),
            cdr_token,
            auth_method: v221::AuthMethod::Whitelist,
            authorization_reference: None,
            location_id: CiString::new(s.station_id.as_str())?,
            evse_uid: CiString::new(evse_uid(&s.station_id, evse))?,
            connector_id: CiString::new(s.connector_id.unwrap_or(1).max(1).to_string())?,
            meter_id: None,
            currency: match currency {
                Some(c) => c,
                None => Str::new("EUR")?,
            },
            charging_periods: Vec::new(),
            total_cost: None,
            status: if s.status == crate::store::SessionStatus::Completed {
                v221::SessionStatus::Completed
            } else {
                v221::SessionStatus::Active
            },
            last_updated: evproto_ocpi::types::DateTime(Utc::now()),
            extra: Default::default(),
        })
    }
}

/// Where a station is, as the operator registers it with `PUT
/// /api/stations/{id}` (`location`) for its OCPI Location: every field in
/// OCPI 2.2.1's bounds (a longer address is refused there, not published
/// broken); what is missing is filled in ([`station_location`]).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Place {
    /// Display name (default: the station's identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Str<255>>,
    /// Street and number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Str<45>>,
    /// City or town.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<Str<45>>,
    /// Postal code (optional in 2.2.1, required by 2.1.1 partners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<Str<10>>,
    /// ISO 3166-1 alpha-3 country code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<Str<3>>,
    /// WGS 84 coordinates, OCPI's decimal text (`"52.123456"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinates: Option<v221::GeoLocation>,
    /// IANA time zone (`Europe/Amsterdam`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<Str<255>>,
}

impl Place {
    /// The place as OCPI 2.2.1 writes it, or what is wrong with it:
    /// coordinates in any decimal precision within their ranges become
    /// OCPI's 6 decimals (`52.0894` → `52.089400`); the country must be
    /// ISO 3166-1 alpha-3 in upper case.
    ///
    /// # Errors
    ///
    /// The field and what it must be.
    pub fn normalized(mut self) -> Result<Place, String> {
        if let Some(c) = &mut self.coordinates {
            let fix = |name: &str, text: &str, max: i64| -> Result<String, String> {
                let d: rust_decimal::Decimal = text
                    .trim()
                    .parse()
                    .map_err(|_| format!("coordinates.{name}: a decimal number"))?;
                if d.abs() > rust_decimal::Decimal::from(max) {
                    return Err(format!("coordinates.{name}: between -{max} and {max}"));
                }
                Ok(format!("{:.6}", d.round_dp(6)))
            };
            let latitude = fix("latitude", c.latitude.as_str(), 90)?;
            let longitude = fix("longitude", c.longitude.as_str(), 180)?;
            c.latitude = Str::new(latitude).map_err(|e| format!("coordinates.latitude: {e}"))?;
            c.longitude = Str::new(longitude).map_err(|e| format!("coordinates.longitude: {e}"))?;
            let json = serde_json::to_string(c).map_err(|e| e.to_string())?;
            evproto_ocpi::validate::validate(Version::V221, "GeoLocation", &json)
                .map_err(|e| format!("coordinates: {e}"))?;
        }
        if let Some(c) = &self.country {
            if !(c.as_str().len() == 3 && c.as_str().bytes().all(|b| b.is_ascii_uppercase())) {
                return Err("country: ISO 3166-1 alpha-3, upper case (NLD)".into());
            }
        }
        Ok(self)
    }

    /// The place registered for a station; an unreadable one (kept
    /// before these bounds) counts as none, logged.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn of(store: &Store, station_id: &str) -> Result<Place, crate::store::StoreError> {
        Ok(store
            .place(station_id)
            .await?
            .map(|p| Place::read(station_id, p))
            .unwrap_or_default())
    }

    /// The places registered for `stations`, by station (one read; a
    /// station without one, or with an unreadable one, has none).
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn of_many(
        store: &Store,
        stations: &[String],
    ) -> Result<std::collections::HashMap<String, Place>, crate::store::StoreError> {
        let mut kept = store.places(stations).await?;
        Ok(stations
            .iter()
            .map(|s| {
                let p = kept.remove(s).map(|p| Place::read(s, p));
                (s.clone(), p.unwrap_or_default())
            })
            .collect())
    }

    /// The place as the store keeps it.
    pub fn to_stored(&self) -> crate::store::StationPlace {
        fn text<const N: usize>(s: &Option<Str<N>>) -> Option<String> {
            s.as_ref().map(|s| s.as_str().to_owned())
        }
        crate::store::StationPlace {
            name: text(&self.name),
            address: text(&self.address),
            city: text(&self.city),
            postal_code: text(&self.postal_code),
            country: text(&self.country),
            coordinates: self.coordinates.as_ref().map(|c| {
                (
                    c.latitude.as_str().to_owned(),
                    c.longitude.as_str().to_owned(),
                )
            }),
            time_zone: text(&self.time_zone),
        }
    }

    /// A kept place, checked against the bounds again (`None`: one that
    /// does not fit them, kept before they were).
    fn from_stored(p: crate::store::StationPlace) -> Result<Place, String> {
        fn str<const N: usize>(what: &str, s: Option<String>) -> Result<Option<Str<N>>, String> {
            s.map(|s| Str::new(s).map_err(|e| format!("{what}: {e}")))
                .transpose()
        }
        let coordinates = match p.coordinates {
            Some((lat, lon)) => Some(v221::GeoLocation {
                latitude: Str::new(lat).map_err(|e| format!("latitude: {e}"))?,
                longitude: Str::new(lon).map_err(|e| format!("longitude: {e}"))?,
                extra: Default::default(),
            }),
            None => None,
        };
        Ok(Place {
            name: str("name", p.name)?,
            address: str("address", p.address)?,
            city: str("city", p.city)?,
            postal_code: str("postal_code", p.postal_code)?,
            country: str("country", p.country)?,
            coordinates,
            time_zone: str("time_zone", p.time_zone)?,
        })
    }

    /// A kept place, read (unreadable: none, logged).
    pub fn read(station_id: &str, p: crate::store::StationPlace) -> Place {
        Place::from_stored(p).unwrap_or_else(|e| {
            tracing::warn!(
                station = station_id,
                "registered place not readable, not used: {e}"
            );
            Place::default()
        })
    }
}

/// Why a station's Location could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A field does not fit OCPI (e.g. an identity longer than 36
    /// characters).
    #[error("{0}")]
    Invalid(String),
}

fn field<T>(name: &str, r: Result<T, evproto_ocpi::types::TypeError>) -> Result<T, LocationError> {
    r.map_err(|e| LocationError::Invalid(format!("{name}: {e}")))
}

/// The OCPI 2.2.1 Location of a station, from the station registry (one
/// EVSE per OCPP EVSE/connector, `{station}-{evse}`) and its registered
/// [`Place`]; `None` when the station is not registered. Published to
/// partners by [`Roaming::location_changed`] and copied into every CDR
/// (`crate::billing`), so both say the same.
///
/// # Errors
///
/// The store failed, or the station's identity does not fit an OCPI id.
pub async fn station_location(
    store: &Store,
    country_code: &str,
    party_id: &str,
    station_id: &str,
) -> Result<Option<v221::Location>, LocationError> {
    let Some(station) = store.station(station_id).await? else {
        return Ok(None);
    };
    let place = Place::of(store, station_id).await?;
    location_of(country_code, party_id, &station, place).map(Some)
}

/// The Location of `station` registered at `place` (see
/// [`station_location`]), built from what was read.
///
/// # Errors
///
/// The station's identity does not fit an OCPI id.
fn location_of(
    country_code: &str,
    party_id: &str,
    station: &crate::store::Station,
    place: Place,
) -> Result<v221::Location, LocationError> {
    let owner = (
        country_code.to_ascii_uppercase(),
        party_id.to_ascii_uppercase(),
    );
    let station_id = station.id.as_str();
    let now = evproto_ocpi::types::DateTime(Utc::now());
    let mut evses: Vec<v221::Evse> = Vec::new();
    for c in station.connectors.iter().filter(|c| c.evse_id > 0) {
        let uid = evse_uid(station_id, c.evse_id);
        match evses.iter_mut().find(|e| e.uid == uid.as_str()) {
            Some(e) => e.connectors.push(ocpi_connector(c.connector_id, &now)?),
            None => evses.push(ocpi_evse(
                (&owner.0, &owner.1),
                station_id,
                (c.evse_id, c.connector_id),
                ocpi_status(&c.status),
                &now,
            )?),
        }
    }
    fn default<const N: usize>(name: &str, text: &str) -> Result<Str<N>, LocationError> {
        field(name, Str::new(text))
    }
    Ok(v221::Location {
        country_code: field("country_code", CiString::new(owner.0))?,
        party_id: field("party_id", CiString::new(owner.1))?,
        id: field("id", CiString::new(station_id))?,
        publish: true,
        publish_allowed_to: Vec::new(),
        name: Some(match place.name {
            Some(n) => n,
            None => default("name", station_id)?,
        }),
        address: place
            .address
            .map_or_else(|| default("address", "Unknown"), Ok)?,
        city: place.city.map_or_else(|| default("city", "Unknown"), Ok)?,
        postal_code: place.postal_code,
        state: None,
        country: place
            .country
            .map_or_else(|| default("country", "NLD"), Ok)?,
        coordinates: match place.coordinates {
            Some(c) => c,
            None => v221::GeoLocation {
                latitude: default("latitude", "52.000000")?,
                longitude: default("longitude", "4.000000")?,
                extra: Default::default(),
            },
        },
        related_locations: Vec::new(),
        parking_type: None,
        evses,
        directions: Vec::new(),
        operator: None,
        suboperator: None,
        owner: None,
        facilities: Vec::new(),
        time_zone: place
            .time_zone
            .map_or_else(|| default("time_zone", "Europe/Amsterdam"), Ok)?,
        opening_times: None,
        charging_when_closed: None,
        images: Vec::new(),
        energy_mix: None,
        last_updated: now,
        extra: Default::default(),
    })
}

/// One OCPI EVSE of a station's OCPP EVSE with one connector; `owner` is
/// (country code, party id), `ids` (OCPP EVSE, connector).
///
/// # Errors
///
/// An id does not fit OCPI's bounds.
pub fn ocpi_evse(
    owner: (&str, &str),
    station_id: &str,
    ids: (i64, i64),
    status: v221::Status,
    now: &evproto_ocpi::types::DateTime,
) -> Result<v221::Evse, LocationError> {
    Ok(v221::Evse {
        uid: field("evse.uid", CiString::new(evse_uid(station_id, ids.0)))?,
        evse_id: Some(field(
            "evse.evse_id",
            CiString::new(evse_id(owner.0, owner.1, station_id, ids.0)),
        )?),
        status,
        status_schedule: Vec::new(),
        capabilities: vec![
            v221::Capability::RemoteStartStopCapable,
            v221::Capability::Reservable,
            v221::Capability::UnlockCapable,
        ],
        connectors: vec![ocpi_connector(ids.1, now)?],
        floor_level: None,
        coordinates: None,
        physical_reference: None,
        directions: Vec::new(),
        parking_restrictions: Vec::new(),
        images: Vec::new(),
        last_updated: *now,
        extra: Default::default(),
    })
}

/// The OCPI Connector of an OCPP connector (the registry knows no plug
/// type: a Type 2 socket, 3-phase 32 A, under the `default` tariff).
fn ocpi_connector(
    connector: i64,
    now: &evproto_ocpi::types::DateTime,
) -> Result<v221::Connector, LocationError> {
    Ok(v221::Connector {
        id: field("connector.id", CiString::new(connector.max(1).to_string()))?,
        standard: v221::ConnectorType::Iec62196T2,
        format: v221::ConnectorFormat::Socket,
        power_type: v221::PowerType::Ac3Phase,
        max_voltage: 230,
        max_amperage: 32,
        max_electric_power: None,
        tariff_ids: vec![field("connector.tariff_ids", CiString::new("default"))?],
        terms_and_conditions: None,
        last_updated: *now,
        extra: Default::default(),
    })
}

/// The OCPI EVSE `uid` of a station's OCPP EVSE (1.6: connector).
pub fn evse_uid(station_id: &str, evse: i64) -> String {
    format!("{station_id}-{evse}")
}

/// The eMI3 EVSE id of a station's OCPP EVSE (1.6: connector).
pub fn evse_id(country_code: &str, party_id: &str, station_id: &str, evse: i64) -> String {
    let station = station_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_uppercase();
    format!("{country_code}*{party_id}*E{station}{evse}")
}

/// A roaming token as the CSMS reads it: OCPI 2.3.0's, the newest
/// version, whose `Token` holds every 2.2.1 token as it is and adds the
/// type `EMAID` (a Plug & Charge contract). The OCPI server keeps each
/// token in the version its eMSP pushed it in.
pub type RoamingToken = evproto_ocpi::v230::Token;

/// A stored roaming token (`key` `CC/PID/UID`), as the OCPI server stored
/// it after validation: a 2.2.1 or 2.3.0 token read as it is, a 2.1.1 one
/// (no owner, `auth_id` for `contract_id`) converted, owned by its key's
/// party. One that reads as neither is corrupt, never taken for unknown.
fn stored_token(key: &str, v: Value) -> Result<RoamingToken, crate::store::StoreError> {
    use serde::Deserialize as _;
    if let Ok(t) = RoamingToken::deserialize(&v) {
        return Ok(t);
    }
    let (country_code, party_id) = owner_of(key);
    let ctx = evproto_ocpi::convert::Context {
        country_code,
        party_id,
        ..Default::default()
    };
    evproto_ocpi::convert::convert(Version::V211, Version::V230, "Token", &v, &ctx)
        .ok()
        .and_then(|c| RoamingToken::deserialize(&c.object).ok())
        .ok_or(crate::store::StoreError::Corrupt("ocpi tokens"))
}

/// Whether two token uids name the same token: case-insensitively, and
/// for an eMAID also with or without its separators (`NL-PRT-C00000000-1`
/// is `NLPRTC000000001` plus the check digit, as ISO 15118 carries it
/// without dashes).
fn same_uid(stored: &str, presented: &str) -> bool {
    let bare = |u: &str| -> String {
        u.chars()
            .filter(|c| *c != '-')
            .flat_map(char::to_uppercase)
            .collect()
    };
    stored.eq_ignore_ascii_case(presented) || bare(stored) == bare(presented)
}

/// The roaming token stored under `key` (`CC/PID/UID`).
async fn token_at(
    store: &Store,
    key: &str,
) -> Result<Option<RoamingToken>, crate::store::StoreError> {
    store
        .ocpi_object("tokens", key)
        .await?
        .map(|v| stored_token(key, v))
        .transpose()
}

/// The roaming tokens with this uid, of every partner: `(key, token)`,
/// keys `CC/PID/UID`; an `EMAID` token also under its uid's other
/// spelling ([`same_uid`]).
async fn tokens_with_uid(
    store: &Store,
    uid: &str,
) -> Result<Vec<(String, RoamingToken)>, crate::store::StoreError> {
    let all = store.ocpi_objects("tokens").await?;
    let mut found = Vec::new();
    for (k, v) in all {
        let Some(stored) = k.splitn(3, '/').nth(2) else {
            continue;
        };
        if !same_uid(stored, uid) {
            continue;
        }
        let exact = stored.eq_ignore_ascii_case(uid);
        let token = stored_token(&k, v)?;
        if exact || token.r#type == evproto_ocpi::v230::TokenType::Emaid {
            found.push((k, token));
        }
    }
    Ok(found)
}

/// The partner token a uid presented at a station stands for: `(key,
/// token)`. Tokens are told apart by owner and uid, never by uid alone:
/// - a local driver's card (the CSMS's own tokens) is no partner's, even
///   if a partner pushed the same uid;
/// - a uid one partner pushed is that partner's;
/// - a uid several partners pushed is the one's that sent `START_SESSION`
///   or `RESERVE_NOW` with it (at `station`, when given) in the last
///   minutes, and otherwise nobody's (refused rather than billed to a
///   guess).
///
/// # Errors
///
/// The store failed.
pub async fn attribute(
    store: &Store,
    uid: &str,
    station: Option<&str>,
) -> Result<Option<(String, RoamingToken)>, crate::store::StoreError> {
    if uid.is_empty() || store.token_status(uid).await?.is_some() {
        return Ok(None);
    }
    let found = tokens_with_uid(store, uid).await?;
    let mut owners: Vec<String> = found.iter().map(|(k, _)| owner_prefix(k)).collect();
    owners.dedup();
    if owners.len() <= 1 {
        return Ok(found.into_iter().next());
    }
    let Some(owner) = store.ocpi_remote_start_owner(uid, station).await? else {
        tracing::warn!(uid, "a uid several partners pushed: no partner's");
        return Ok(None);
    };
    Ok(found.into_iter().find(|(k, _)| owner_prefix(k) == owner))
}

/// Whose a session is, as roaming pushes and bills it.
struct Attribution {
    /// Its row: owner, public ids.
    row: crate::store_ocpi::OcpiSession,
    /// The owner's token as stored now (`None`: withdrawn since).
    token: Option<RoamingToken>,
}

/// The partner a session belongs to, attributed on first sight from its
/// token ([`attribute`] at its station) and kept: `None` for a local
/// driver's session or a token no single partner owns.
async fn attribution(
    store: &Store,
    s: &Session,
) -> Result<Option<Attribution>, crate::store::StoreError> {
    // a session this process created and nobody attributed has no row
    if !store.known_unattributed(&s.id) {
        if let Some(row) = store.ocpi_session(&s.id).await? {
            let key = format!("{}/{}", row.owner, row.token_uid);
            let token = token_at(store, &key).await?;
            return Ok(Some(Attribution { row, token }));
        }
    }
    let Some(uid) = s.id_token.as_deref() else {
        return Ok(None);
    };
    let Some((key, token)) = attribute(store, uid, Some(&s.station_id)).await? else {
        return Ok(None);
    };
    let key_uid = key.splitn(3, '/').nth(2).unwrap_or(uid);
    let row = store
        .ocpi_attribute_session(&s.id, &owner_prefix(&key), key_uid)
        .await?;
    // a concurrent first sight may have won: its row holds
    let token = if format!("{}/{}", row.owner, row.token_uid) == key {
        Some(token)
    } else {
        let key = format!("{}/{}", row.owner, row.token_uid);
        token_at(store, &key).await?
    };
    Ok(Some(Attribution { row, token }))
}

/// The partner token a session runs on, `(key, token)`: what its CDR
/// names as `cdr_token` (`crate::billing`); `None` for a local driver's.
///
/// # Errors
///
/// The store failed.
pub async fn session_token(
    store: &Store,
    s: &Session,
) -> Result<Option<(String, RoamingToken)>, crate::store::StoreError> {
    Ok(attribution(store, s).await?.and_then(|a| {
        let key = format!("{}/{}", a.row.owner, a.row.token_uid);
        a.token.map(|t| (key, t))
    }))
}

/// `CC/PID` of a key `CC/PID/ID`.
fn owner_prefix(key: &str) -> String {
    let (cc, pid) = owner_of(key);
    format!("{cc}/{pid}")
}

fn owner_of(key: &str) -> (String, String) {
    let mut it = key.split('/');
    (
        it.next().unwrap_or("").to_string(),
        it.next().unwrap_or("").to_string(),
    )
}

/// Whether a partner speaks for `owner` (`CC`, `PID`): one of the
/// identities its credentials claim.
fn serves_owner(peer: &Peer, owner: &(String, String)) -> bool {
    peer.registration()
        .identities()
        .iter()
        .any(|(cc, pid)| cc.eq_ignore_ascii_case(&owner.0) && pid.eq_ignore_ascii_case(&owner.1))
}

/// A partner's name: its first identity, `CC-PID`.
fn party_label(reg: &Registered) -> Option<String> {
    let (cc, pid) = reg.identities().into_iter().next()?;
    Some(format!("{cc}-{pid}"))
}

/// One of our 2.2.1 objects in the version a peer speaks (`None` when it
/// cannot be expressed there; logged).
fn for_peer(peer: &Peer, kind: &str, obj: &impl Serialize) -> Option<Value> {
    let obj = match serde_json::to_value(obj) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("{kind} not written: {e}");
            return None;
        }
    };
    if peer.version() == Version::V221 {
        return Some(obj);
    }
    match evproto_ocpi::convert::convert(
        Version::V221,
        peer.version(),
        kind,
        &obj,
        &Default::default(),
    ) {
        Ok(c) => Some(c.object),
        Err(e) => {
            tracing::debug!("{kind} not sent to an OCPI {} partner: {e}", peer.version());
            None
        }
    }
}

/// What [`Roaming::session_objects`] gives: owner, Session, CDR and the
/// token's type as pushed.
type SessionObjects = (
    (String, String),
    v221::Session,
    Option<Cdr>,
    Option<evproto_ocpi::v230::TokenType>,
);

/// The token type of a Session's or CDR's `cdr_token` that 2.2.1, the
/// version the CSMS writes them in, could not carry (`EMAID`, written
/// `OTHER` there: [`Roaming::cdr_token`]) put back for a partner whose
/// version has it, so its eMSP finds the token by uid and type.
fn restore_token_type(peer: &Peer, body: &mut Value, ty: Option<&evproto_ocpi::v230::TokenType>) {
    use evproto_ocpi::v230::TokenType as T;
    if peer.version() != Version::V230 {
        return;
    }
    if let Some(ty @ (T::Emaid | T::Custom(_))) = ty {
        if let Some(t) = body.get_mut("cdr_token").and_then(Value::as_object_mut) {
            t.insert("type".into(), Value::String(ty.as_str().to_owned()));
        }
    }
}

/// PUTs one of our objects (`kind`, its OCPI `id`) to a partner's
/// Receiver interface in its version; nothing (`Ok`) when it has none for
/// the module or the object cannot be expressed in its version.
async fn push_object(
    peer: &Peer,
    module: &str,
    (cc, pid, id): (&str, &str, &str),
    obj: &impl Serialize,
    kind: &str,
) -> Result<(), ClientError> {
    if peer.endpoint(module, "RECEIVER").is_err() {
        return Ok(());
    }
    let Some(body) = for_peer(peer, kind, obj) else {
        return Ok(());
    };
    peer.put(module, &[cc, pid, id], &body).await.map(|_| ())
}

fn ocpi_status(ocpp: &str) -> v221::Status {
    match ocpp {
        "Available" => v221::Status::Available,
        "Occupied" | "Charging" | "Preparing" | "SuspendedEV" | "SuspendedEVSE" | "Finishing" => {
            v221::Status::Charging
        }
        "Reserved" => v221::Status::Reserved,
        "Unavailable" => v221::Status::Inoperative,
        "Faulted" => v221::Status::Outoforder,
        _ => v221::Status::Unknown,
    }
}

/// Commands from eMSPs become OCPP calls.
struct CpoHandler {
    store: Store,
    gateway: StationGateway,
    events: broadcast::Sender<LiveEvent>,
    /// For the `CommandResult` to the partner's `response_url`.
    client: Client,
    call_timeout: Duration,
    /// For a partner that just registered: push it everything.
    work: mpsc::UnboundedSender<Work>,
}

/// What a partner's command asks of a station, whatever its OCPP version.
#[derive(Debug, Clone, PartialEq)]
enum StationCommand {
    /// 1.6 RemoteStartTransaction, 2.x RequestStartTransaction.
    Start {
        /// The partner's token uid.
        uid: String,
        /// EVSE (1.6: connector), when the command names one.
        evse: Option<i32>,
        /// 2.x `remoteStartId`.
        remote_start_id: i32,
    },
    /// ReserveNow.
    Reserve {
        /// The partner's token uid.
        uid: String,
        /// EVSE (1.6: connector; 0 is any), when the command names one.
        evse: Option<i32>,
        /// Our reservation number.
        id: i32,
        /// Until when.
        expiry: chrono::DateTime<chrono::Utc>,
    },
    /// UnlockConnector.
    Unlock {
        /// EVSE (1.6: connector).
        evse: i32,
        /// 2.x connector within the EVSE.
        connector: i32,
    },
    /// 1.6 RemoteStopTransaction, 2.x RequestStopTransaction.
    Stop {
        /// The station's transaction id.
        transaction_id: String,
    },
    /// CancelReservation.
    CancelReservation {
        /// Our reservation number.
        id: i32,
    },
}

/// The OCPP call of a command in 2.0.1 or 2.1 (the same messages; the
/// token's type is an enum in 2.0.1 and a string in 2.1).
macro_rules! command_2x {
    ($gateway:expr, $station:expr, $command:expr, $ver:ident, $central:expr) => {{
        let (gateway, station) = ($gateway, $station);
        let bad = |e: evproto_ocpp_types::TooLong| StationCallError::rejected(station, e);
        let token = |uid: &str| -> Result<$ver::IdTokenType, StationCallError> {
            Ok($ver::IdTokenType {
                additional_info: None,
                id_token: uid.parse().map_err(bad)?,
                r#type: $central,
                custom_data: None,
            })
        };
        match $command {
            StationCommand::Start {
                uid,
                evse,
                remote_start_id,
            } => {
                let request = token(&uid).map(|id_token| $ver::RequestStartTransactionRequest {
                    evse_id: evse,
                    group_id_token: None,
                    id_token,
                    remote_start_id,
                    charging_profile: None,
                    custom_data: None,
                });
                sent::<$ver::action::RequestStartTransaction>(gateway, station, request, |r| {
                    r.status.as_str()
                })
                .await
            }
            StationCommand::Reserve {
                uid,
                evse,
                id,
                expiry,
            } => {
                let request = token(&uid).map(|id_token| $ver::ReserveNowRequest {
                    id,
                    expiry_date_time: expiry,
                    connector_type: None,
                    id_token,
                    evse_id: evse,
                    group_id_token: None,
                    custom_data: None,
                });
                sent::<$ver::action::ReserveNow>(gateway, station, request, |r| r.status.as_str())
                    .await
            }
            StationCommand::Unlock { evse, connector } => {
                let request = Ok($ver::UnlockConnectorRequest {
                    evse_id: evse,
                    connector_id: connector,
                    custom_data: None,
                });
                sent::<$ver::action::UnlockConnector>(gateway, station, request, |r| {
                    r.status.as_str()
                })
                .await
            }
            StationCommand::Stop { transaction_id } => {
                let request = transaction_id.parse().map_err(bad).map(|transaction_id| {
                    $ver::RequestStopTransactionRequest {
                        transaction_id,
                        custom_data: None,
                    }
                });
                sent::<$ver::action::RequestStopTransaction>(gateway, station, request, |r| {
                    r.status.as_str()
                })
                .await
            }
            StationCommand::CancelReservation { id } => {
                let request = Ok($ver::CancelReservationRequest {
                    reservation_id: id,
                    custom_data: None,
                });
                sent::<$ver::action::CancelReservation>(gateway, station, request, |r| {
                    r.status.as_str()
                })
                .await
            }
        }
    }};
}

/// Sends a command's request (unless building it failed): the action sent
/// and the status the station answered.
async fn sent<A: evproto_ocpp_types::Action>(
    gateway: &StationGateway,
    station: &str,
    request: Result<A::Request, StationCallError>,
    status: fn(&A::Response) -> &'static str,
) -> (&'static str, Result<&'static str, StationCallError>) {
    let answer = match request {
        Ok(request) => gateway
            .call::<A>(station, request)
            .await
            .map(|r| status(&r)),
        Err(e) => Err(e),
    };
    (A::NAME, answer)
}

impl StationCommand {
    /// Sends the command to `station` in the version it is connected with:
    /// the OCPP action sent and the status the station answered.
    async fn send(
        self,
        gateway: &StationGateway,
        station: &str,
        version: ProtocolVersion,
    ) -> (&'static str, Result<&'static str, StationCallError>) {
        use evproto_ocpp_types::{v201, v21};
        match version {
            ProtocolVersion::V16 => self.send_16(gateway, station).await,
            ProtocolVersion::V201 => {
                command_2x!(gateway, station, self, v201, v201::IdTokenEnumType::Central)
            }
            _ => command_2x!(
                gateway,
                station,
                self,
                v21,
                "Central"
                    .parse()
                    .map_err(|e| StationCallError::rejected(station, e))?
            ),
        }
    }

    async fn send_16(
        self,
        gateway: &StationGateway,
        station: &str,
    ) -> (&'static str, Result<&'static str, StationCallError>) {
        use evproto_ocpp_types::v16;
        let tag = |uid: &str| {
            uid.parse()
                .map_err(|e| StationCallError::rejected(station, e))
        };
        match self {
            StationCommand::Start { uid, evse, .. } => {
                let request = tag(&uid).map(|id_tag| v16::RemoteStartTransactionRequest {
                    connector_id: evse,
                    id_tag,
                    charging_profile: None,
                });
                sent::<v16::action::RemoteStartTransaction>(gateway, station, request, |r| {
                    r.status.as_str()
                })
                .await
            }
            StationCommand::Reserve {
                uid,
                evse,
                id,
                expiry,
            } => {
                let request = tag(&uid).map(|id_tag| v16::ReserveNowRequest {
                    connector_id: evse.unwrap_or(0),
                    expiry_date: expiry,
                    id_tag,
                    parent_id_tag: None,
                    reservation_id: id,
                });
                sent::<v16::action::ReserveNow>(gateway, station, request, |r| r.status.as_str())
                    .await
            }
            StationCommand::Unlock { evse, .. } => {
                let request = Ok(v16::UnlockConnectorRequest { connector_id: evse });
                sent::<v16::action::UnlockConnector>(gateway, station, request, |r| {
                    r.status.as_str()
                })
                .await
            }
            StationCommand::Stop { transaction_id } => {
                let request = transaction_id
                    .parse()
                    .map(|transaction_id| v16::RemoteStopTransactionRequest { transaction_id })
                    .map_err(|_| {
                        StationCallError::rejected(station, "a 1.6 transaction id is a number")
                    });
                sent::<v16::action::RemoteStopTransaction>(gateway, station, request, |r| {
                    r.status.as_str()
                })
                .await
            }
            StationCommand::CancelReservation { id } => {
                let request = Ok(v16::CancelReservationRequest { reservation_id: id });
                sent::<v16::action::CancelReservation>(gateway, station, request, |r| {
                    r.status.as_str()
                })
                .await
            }
        }
    }
}

/// A number the station's message holds (`i32`), else `REJECTED`.
fn small(n: i64) -> Option<i32> {
    i32::try_from(n).ok()
}

/// A `CommandResponse` without a timeout (decided at once).
fn answer(result: Answer, why: &str) -> v221::CommandResponse {
    respond(result, 0, why)
}

/// The token a command carries, as the calling party may give it: under
/// the identity the token names when that is one of the caller's, else
/// under the caller's first identity (the token's `country_code` and
/// `party_id` set to it): `(owner CC/PID, uid, token)`. `None` when the
/// caller has no identity or the token no uid.
fn callers_token(
    ids: &[(String, String)],
    t: &v221::Token,
) -> Option<(String, String, v221::Token)> {
    let uid = Some(t.uid.as_str()).filter(|u| !u.is_empty())?.to_owned();
    let named = (
        t.country_code.as_str().to_ascii_uppercase(),
        t.party_id.as_str().to_ascii_uppercase(),
    );
    let (cc, pid) = Some(named)
        .filter(|n| ids.contains(n))
        .or_else(|| ids.first().cloned())?;
    let mut token = t.clone();
    token.country_code = CiString::new(cc.as_str()).ok()?;
    token.party_id = CiString::new(pid.as_str()).ok()?;
    Some((format!("{cc}/{pid}"), uid, token))
}

/// The OCPP EVSE number (1.6: connector) of an OCPI `evse_uid` at a station
/// (`{station}-{n}`, [`evse_uid`]).
fn evse_number(station: &str, uid: Option<&str>) -> Option<i64> {
    let n = uid?
        .strip_prefix(station)?
        .strip_prefix('-')?
        .parse()
        .ok()?;
    Some(n).filter(|n: &i64| *n > 0)
}

#[async_trait]
impl Handler for CpoHandler {
    /// Commands act only on what is the calling party's: its own tokens
    /// (stored under its own identity), its sessions (named by their public
    /// ids), its reservations, connectors where its token has the active
    /// session. Anything else is answered as if unknown: `UNKNOWN_SESSION`
    /// for STOP_SESSION, `REJECTED` otherwise. A store failure is an OCPI
    /// error (3000), with nothing sent to the station.
    async fn command(
        &self,
        party: &Party,
        command: Command,
    ) -> Result<v221::CommandResponse, StoreError> {
        let ids = party.identities();
        let owners: Vec<String> = ids.iter().map(|(c, p)| format!("{c}/{p}")).collect();
        let response_url = command.response_url().to_owned();
        let store = &self.store;
        // Which station, and what to ask of it.
        let (station, ask) = match command {
            Command::StartSession(v221::StartSession {
                ref token,
                ref location_id,
                ref evse_uid,
                ..
            })
            | Command::ReserveNow(v221::ReserveNow {
                ref token,
                ref location_id,
                ref evse_uid,
                ..
            }) => {
                let station = location_id.as_str().to_owned();
                let evse =
                    evse_number(&station, evse_uid.as_ref().map(CiString::as_str)).and_then(small);
                if !self.gateway.is_connected(&station).await {
                    return Ok(answer(Answer::Rejected, "station not connected"));
                }
                let Some((owner, uid, token)) = callers_token(&ids, token) else {
                    return Ok(answer(Answer::Rejected, "no token of these credentials"));
                };
                // a local driver's card is never a partner's
                if store.token_status(&uid).await.map_err(db_error)?.is_some() {
                    return Ok(answer(Answer::Rejected, "unknown token"));
                }
                // The token comes with the command: remember it (under the
                // caller, never over another owner's) so the station's
                // Authorize/StartTransaction accepts it for this partner.
                // (the note first: alone, after a failed token write, it
                // attributes nothing)
                store
                    .ocpi_note_remote_start(&owner, &uid, &station)
                    .await
                    .map_err(db_error)?;
                let key = format!("{owner}/{uid}");
                let stored = serde_json::to_value(&token).map_err(StoreError::backend)?;
                store
                    .ocpi_put_object("tokens", &key, &stored)
                    .await
                    .map_err(db_error)?;
                let ask = match &command {
                    Command::ReserveNow(r) => {
                        let rid = r.reservation_id.as_str();
                        let number = store
                            .ocpi_reserve(&owner, rid, &station, &uid)
                            .await
                            .map_err(db_error)?;
                        let Some(id) = small(number) else {
                            return Ok(answer(Answer::Rejected, "no reservation number left"));
                        };
                        StationCommand::Reserve {
                            uid,
                            evse,
                            id,
                            expiry: r.expiry_date.0,
                        }
                    }
                    _ => StationCommand::Start {
                        uid,
                        evse,
                        remote_start_id: i32::from_str_radix(&crate::store::random_hex(3), 16)
                            .unwrap_or(1)
                            .max(1),
                    },
                };
                (station, ask)
            }
            Command::UnlockConnector(u) => {
                let station = u.location_id.as_str().to_owned();
                let Some(evse) = evse_number(&station, Some(u.evse_uid.as_str())) else {
                    return Ok(answer(Answer::Rejected, "unknown EVSE"));
                };
                // only where the caller's own token has the active session
                let mut own_session = false;
                for owner in &owners {
                    for sid in store
                        .ocpi_active_sessions_of(owner, &station)
                        .await
                        .map_err(db_error)?
                    {
                        let s = store.session(&sid).await.map_err(db_error)?;
                        own_session |= s.is_some_and(|s| {
                            s.status != crate::store::SessionStatus::Completed
                                && s.evse_id.unwrap_or(1).max(1) == evse
                        });
                    }
                }
                let Some(evse) = small(evse).filter(|_| own_session) else {
                    return Ok(answer(
                        Answer::Rejected,
                        "no session of yours at this connector",
                    ));
                };
                let connector = u.connector_id.as_str().parse::<i32>().unwrap_or(1);
                (station, StationCommand::Unlock { evse, connector })
            }
            Command::StopSession(stop) => {
                // partners name sessions by their public ids, and only their own
                let row = store
                    .ocpi_session_by_public_id(stop.session_id.as_str())
                    .await
                    .map_err(db_error)?;
                let Some(row) = row.filter(|r| owners.contains(&r.owner)) else {
                    return Ok(answer(Answer::UnknownSession, ""));
                };
                let session = match store.session(&row.session_id).await.map_err(db_error)? {
                    Some(s) if s.status != crate::store::SessionStatus::Completed => s,
                    _ => return Ok(answer(Answer::UnknownSession, "")),
                };
                let ask = StationCommand::Stop {
                    transaction_id: session.ocpp_tx_id,
                };
                (session.station_id, ask)
            }
            Command::CancelReservation(cancel) => {
                // the command names no station: the one the caller's reservation is at
                let rid = cancel.reservation_id.as_str();
                let mut found = None;
                for owner in &owners {
                    found = store.ocpi_reservation(owner, rid).await.map_err(db_error)?;
                    if found.is_some() {
                        break;
                    }
                }
                let Some((id, station)) = found.and_then(|(n, s)| Some((small(n)?, s))) else {
                    return Ok(answer(Answer::Rejected, "unknown reservation"));
                };
                (station, StationCommand::CancelReservation { id })
            }
        };
        let Some(version) = self.gateway.version(&station).await else {
            return Ok(answer(Answer::Rejected, "station not connected"));
        };
        let party = party.clone();
        let (gateway, events, client) = (
            self.gateway.clone(),
            self.events.clone(),
            self.client.clone(),
        );
        let timeout = self.call_timeout;
        let secs = timeout.as_secs().max(1);
        tokio::spawn(async move {
            let (action, answer) = ask.send(&gateway, &station, version).await;
            let result = match answer {
                Ok("Accepted" | "Unlocked") => v221::CommandResultType::Accepted,
                Ok(_) => v221::CommandResultType::Rejected,
                Err(e) => {
                    tracing::info!("OCPI command not done: {e}");
                    v221::CommandResultType::Failed
                }
            };
            let _ = events.send(LiveEvent::OcpiCommand {
                command: action.to_string(),
                station: station.to_string(),
                result: result.as_str().to_string(),
            });
            let result = v221::CommandResult {
                result,
                message: Vec::new(),
                extra: Default::default(),
            };
            let Some(reg) = party.registration.clone() else {
                return;
            };
            let peer = client.peer(reg);
            if let Err(e) = tokio::time::timeout(
                timeout,
                peer.post_url(
                    &response_url,
                    &serde_json::to_value(&result).unwrap_or_default(),
                ),
            )
            .await
            {
                tracing::warn!("command result not delivered: {e}");
            }
        });
        Ok(respond(
            Answer::Accepted,
            i64::try_from(secs).unwrap_or(i64::MAX),
            "",
        ))
    }

    async fn registered(&self, party: &Party) {
        let _ = self.events.send(LiveEvent::OcpiPartnerRegistered {
            party: party.id.to_string(),
        });
        if party.registration.is_some() {
            let _ = self.work.send(Work::Sync(party.id.clone()));
        }
    }

    async fn pushed(&self, party: &Party, module: &str, key: &str, _object: &Value) {
        let _ = self.events.send(LiveEvent::OcpiPushed {
            party: party.id.to_string(),
            module: module.to_string(),
            key: key.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{outbox_backoff, OUTBOX_MAX_DELAY};

    /// Exponential backoff from the base, doubled per attempt, capped at 10
    /// minutes (also for attempt counts that would overflow).
    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let base = Duration::from_millis(100);
        let waits: Vec<u128> = (0..=6)
            .map(|n| outbox_backoff(n, base).as_millis())
            .collect();
        assert_eq!(waits, [100, 100, 200, 400, 800, 1600, 3200]);
        assert_eq!(outbox_backoff(14, base), OUTBOX_MAX_DELAY);
        assert_eq!(outbox_backoff(i64::MAX, base), OUTBOX_MAX_DELAY);
        assert_eq!(OUTBOX_MAX_DELAY, Duration::from_secs(600));
    }

    /// Tokens are read in the version their eMSP pushed: 2.2.1 and 2.3.0
    /// as they are (an `EMAID` contract kept as such), 2.1.1 converted and
    /// owned by its key's party; anything else is corrupt, not unknown.
    #[test]
    fn stored_tokens_of_every_version_read_back() {
        use evproto_ocpi::v230::{TokenType, WhitelistType};
        let v221 = json!({"country_code": "DE", "party_id": "EMS", "uid": "R1", "type": "RFID",
            "contract_id": "DE-EMS-R1", "issuer": "e", "valid": true, "whitelist": "ALLOWED",
            "last_updated": "2024-01-01T00:00:00Z"});
        let t = stored_token("DE/EMS/R1", v221).unwrap();
        assert_eq!(t.r#type, TokenType::Rfid);
        let mut v230 = json!({"country_code": "NL", "party_id": "PRT", "uid": "NL-PRT-C00000000-1",
            "type": "EMAID", "contract_id": "NL-PRT-C00000000-1", "issuer": "p", "valid": true,
            "whitelist": "NEVER", "last_updated": "2024-01-01T00:00:00Z"});
        let t = stored_token("NL/PRT/NL-PRT-C00000000-1", v230.clone()).unwrap();
        assert_eq!(
            (t.r#type, t.whitelist),
            (TokenType::Emaid, WhitelistType::Never)
        );
        // written as 2.2.1 in Sessions and CDRs: OTHER there
        let cdr = Roaming::cdr_token(&stored_token("NL/PRT/X", v230.clone()).unwrap());
        assert_eq!(cdr.r#type, v221::TokenType::Other);
        let v211 = json!({"uid": "OLD1", "type": "RFID", "auth_id": "FR-OLD-1", "issuer": "o",
            "valid": true, "whitelist": "ALWAYS", "last_updated": "2024-01-01T00:00:00Z"});
        let t = stored_token("FR/OLD/OLD1", v211).unwrap();
        assert_eq!(
            (
                t.country_code.as_str(),
                t.party_id.as_str(),
                t.contract_id.as_str()
            ),
            ("FR", "OLD", "FR-OLD-1")
        );
        v230["valid"] = json!("yes");
        assert!(matches!(
            stored_token("NL/PRT/X", v230),
            Err(crate::store::StoreError::Corrupt(_))
        ));
    }

    /// An eMAID matches with or without its dashes, in any case; other
    /// uids only case-insensitively as they are.
    #[test]
    fn emaids_match_in_either_spelling() {
        assert!(same_uid("NL-PRT-C00000000-1", "nlprtc000000001"));
        assert!(same_uid("ROAM1", "roam1"));
        assert!(!same_uid("NL-PRT-C00000000-1", "NLPRTC000000002"));
    }

    /// A push subject names partner, module and object unambiguously,
    /// whatever characters they hold.
    #[test]
    fn push_subjects_round_trip() {
        for (p, m, id) in [
            ("DE-EMS", "sessions", "RS1:4"),
            ("a\",\"b", "locations", "x/y"),
        ] {
            let s = push_subject(p, m, id);
            assert_eq!(
                parse_push_subject(&s),
                Some((p.to_owned(), m.to_owned(), id.to_owned()))
            );
        }
        assert_eq!(parse_push_subject("[\"a\",\"b\"]"), None);
        assert_eq!(parse_push_subject("RS1:4"), None);
    }

    /// A partner down (transport, 5xx, 408, 429, OCPI 3xxx) is retried and
    /// holds its pushes; a refusal of the object itself is not retried.
    #[test]
    fn which_failures_are_retried() {
        let down = |e| matches!(PushError::from(e), PushError::Down(_));
        let unexpected = |status| ClientError::Unexpected {
            status,
            reason: String::new(),
        };
        let status = |code| ClientError::Status {
            code,
            message: String::new(),
        };
        for e in [
            unexpected(503),
            unexpected(500),
            unexpected(408),
            unexpected(429),
        ] {
            assert!(down(e));
        }
        assert!(down(status(3000)));
        for e in [
            unexpected(400),
            unexpected(404),
            status(2001),
            ClientError::BodyTooLarge { limit: 1 },
            ClientError::Redirect {
                status: 302,
                location: None,
            },
        ] {
            assert!(!down(e));
        }
    }

    fn place(v: Value) -> Result<Place, String> {
        serde_json::from_value::<Place>(v)
            .map_err(|e| e.to_string())?
            .normalized()
    }

    /// Coordinates in any precision become OCPI's 6 decimals; what OCPI
    /// cannot hold is refused with the field's name.
    #[test]
    fn a_place_is_written_as_ocpi_2_2_1_writes_it() {
        let p = place(json!({"address": "Stationsplein 1", "country": "NLD",
            "coordinates": {"latitude": "52.0894", "longitude": "-5.11"}}))
        .unwrap();
        let c = p.coordinates.unwrap();
        assert_eq!(
            (c.latitude.as_str(), c.longitude.as_str()),
            ("52.089400", "-5.110000")
        );
        for (bad, field) in [
            (
                json!({"coordinates": {"latitude": "91", "longitude": "4"}}),
                "latitude",
            ),
            (
                json!({"coordinates": {"latitude": "52", "longitude": "east"}}),
                "longitude",
            ),
            (json!({"country": "nl"}), "country"),
            (json!({"address": "x".repeat(46)}), "45"),
            (json!({"postal_code": "12345678901"}), "10"),
            (json!({"planet": "Mars"}), "planet"),
        ] {
            let e = place(bad.clone()).unwrap_err();
            assert!(e.contains(field), "{bad}: {e}");
        }
    }

    /// The Location built from the registry is valid OCPI 2.2.1, with the
    /// registered place and one EVSE per OCPP EVSE (the station-wide
    /// connector 0 is none).
    #[tokio::test]
    async fn a_station_location_is_valid_ocpi() {
        let dir = std::env::temp_dir().join(format!("csms-roaming-loc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&format!("sqlite://{}?mode=rwc", dir.join("r.db").display()))
            .await
            .unwrap();
        store.upsert_station("CS1", None).await.unwrap();
        for (evse, status) in [(0, "Available"), (1, "Charging"), (2, "Faulted")] {
            store
                .set_status("CS1", evse, 1, status, None)
                .await
                .unwrap();
        }
        let p = place(
            json!({"name": "Depot", "coordinates": {"latitude": "52.1", "longitude": "4.3"}}),
        )
        .unwrap();
        store.put_place("CS1", &p.to_stored()).await.unwrap();
        let loc = station_location(&store, "nl", "evp", "CS1")
            .await
            .unwrap()
            .unwrap();
        assert!(valid_ocpi("Location", "CS1", &loc).is_some());
        assert_eq!(loc.name.as_ref().unwrap().as_str(), "Depot");
        assert_eq!(loc.address.as_str(), "Unknown");
        assert_eq!(loc.coordinates.latitude.as_str(), "52.100000");
        let evses: Vec<_> = loc
            .evses
            .iter()
            .map(|e| (e.uid.as_str(), e.status.clone()))
            .collect();
        assert_eq!(
            evses,
            [
                ("CS1-1", v221::Status::Charging),
                ("CS1-2", v221::Status::Outoforder)
            ]
        );
        assert_eq!(
            loc.evses[0].evse_id.as_ref().unwrap().as_str(),
            "NL*EVP*ECS11"
        );
        assert!(station_location(&store, "NL", "EVP", "nobody")
            .await
            .unwrap()
            .is_none());
        // an identity OCPI cannot hold is a typed refusal, not a broken object
        let long = "S".repeat(40);
        store.upsert_station(&long, None).await.unwrap();
        assert!(matches!(
            station_location(&store, "NL", "EVP", &long).await,
            Err(LocationError::Invalid(_))
        ));

        // the rebuild's reads, a chunk at a time: the same stations and
        // places as one by one, the unknown left out
        store.upsert_station("CS2", None).await.unwrap();
        store
            .set_status("CS2", 1, 1, "Available", None)
            .await
            .unwrap();
        let ids: Vec<String> = ["CS1", "nobody", "CS2"].map(String::from).to_vec();
        let batch = store.stations_by_id(&ids).await.unwrap();
        assert_eq!(batch.len(), 2);
        for id in ["CS1", "CS2"] {
            assert_eq!(
                batch.get(id),
                store.station(id).await.unwrap().as_ref(),
                "{id}"
            );
        }
        let places = Place::of_many(&store, &ids).await.unwrap();
        assert_eq!(places["CS1"], p);
        assert_eq!(places["CS2"], Place::default());
        assert_eq!(places["nobody"], Place::default());
        let built = location_of("NL", "EVP", &batch["CS1"], places["CS1"].clone()).unwrap();
        assert_eq!(built.evses.len(), loc.evses.len());
        assert_eq!(built.name, loc.name);
    }
}
