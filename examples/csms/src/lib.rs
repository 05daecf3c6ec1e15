//! `csms`: the evproto reference Charging Station Management System.
//!
//! ```text
//! cargo run --release -p csms                      # SQLite under ./data, OCPP on :9000, public HTTP on :8080, admin on 127.0.0.1:8081
//! DATABASE_URL=postgres://localhost/csms cargo run --release -p csms
//! ```
//!
//! Stations connect to `ws://HOST:9000/ocpp/{identity}` (OCPP 1.6, 2.0.1 or
//! 2.1; security profile 0 or 1). Every message is committed to the store
//! before it is answered; replays are absorbed; a restart resumes open
//! sessions. The public HTTP port (8080) serves what stations and roaming
//! partners reach: OCPI (`/ocpi`), firmware downloads (`/firmware/{name}`)
//! and station uploads (`/upload/...`). The admin port (8081, loopback
//! unless `admin_bind` opens it) serves the operator API (`/api`, bearer
//! key), the OpenAPI document (`/api/openapi.json`), Prometheus metrics
//! (`/metrics`, bearer key) and the dashboard (`/`).
//!
//! # How it is put together
//!
//! [`serve`] builds the services in dependency order, each from what it
//! needs, and nothing holds a pointer back to the whole app:
//!
//! 1. the [`store::Store`], then the ports (the public base URL names the
//!    HTTP port, so it is known before anything that hands out URLs);
//! 2. the [`gateway::StationGateway`], typed calls to connected stations
//!    (`gateway.call::<v201::action::UnlockConnector>(station, request)`);
//! 3. the services that use it: [`roaming::Roaming`] (store, gateway,
//!    events), [`smart::SiteShares`] (store, gateway, events);
//! 4. the [`App`]: the state the OCPP handlers ([`ocpp::routes`]) and the
//!    HTTP handlers ([`api`]) get, holding those services;
//! 5. the OCPP server, built from the handlers' routes.
//!
//! The one cycle, server → handlers → gateway → server, is broken by a
//! channel: the gateway asks the server for a station's connection through
//! [`gateway::GatewayLink`], served once the server exists (likewise the
//! roaming side's background work goes through [`roaming::RoamingWork`]).
//! Background work is spawned with the handles it uses: the outbox worker
//! and last-seen flusher with the app, a smart-charging rebalance with its
//! [`smart::SiteShares`], roaming retries with the roaming side.

pub mod alerts;
pub mod api;
pub mod app_api;
pub mod authorize;
mod battery_swap;
pub mod billing;
pub mod cluster;
pub mod config;
pub mod console;
pub mod datadir;
pub mod demo;
pub mod der;
mod device_model;
pub mod drivers;
pub mod events;
pub mod fleets;
pub mod gateway;
pub mod invoices;
pub mod listener;
pub mod local_cost;
mod local_list;
pub mod mail;
pub mod maintenance;
mod monitoring;
pub mod ocpp;
pub mod openadr;
pub mod payments;
pub mod pnc;
mod profile_upgrade;
mod provisioning;
mod reservations;
pub mod roaming;
pub mod sessions;
pub mod smart;
pub mod station_auth;
pub mod store;
// the store's drivers, roaming and console modules under the names they had
// before the store was split by aggregate
pub use store::drivers as store_drivers;
pub(crate) use store::ocpi as store_ocpi;
pub use store::reports as store_reports;
pub mod streams;
pub mod stripe;
pub mod v2x;
pub mod writer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use evproto_ocpp_server::{Security, Server, ServerConfig, ServerEvent, Tls};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::config::Config;
use crate::store::{Session, Store};

/// (station, EVSE, connector).
/// What a node remembers of a station while it is connected: the
/// connector statuses as stored (to skip writing repeats) and whether it is
/// known to have no open `fault` alert (to skip looking for one to clear).
/// Dropped when the station disconnects.
#[derive(Debug, Default)]
struct StationMemo {
    /// (EVSE, connector) → (status, 1.6 error code), as stored.
    statuses: HashMap<(i64, i64), (String, Option<String>)>,
    /// No `fault` alert of it is open (as far as this node cleared or
    /// found); `false`: unknown or open.
    no_open_fault: bool,
}

/// The running CSMS's shared state.
#[derive(Debug)]
pub struct App {
    /// The store.
    pub store: Store,
    /// Configuration in force.
    pub config: Config,
    /// The operator API key (its hash).
    pub api_key: api::ApiKey,
    /// The HTTP side's caches and transfer slots.
    pub http: api::HttpState,
    /// Live events for the dashboard and `/api/events`.
    pub events: broadcast::Sender<events::LiveEvent>,
    /// Typed calls to connected stations.
    pub gateway: gateway::StationGateway,
    /// The roaming side (OCPI).
    pub roaming: Arc<roaming::Roaming>,
    /// The public base URL of the HTTP port (firmware downloads, uploads,
    /// OCPI), without a trailing `/`.
    pub public_base: String,
    /// The station registry and password check of the handshake.
    pub auth: Arc<station_auth::StationAuth>,
    /// Last message time per station, flushed to the store every few
    /// seconds: a Heartbeat needs no durable write of its own.
    last_seen: std::sync::Mutex<HashMap<String, String>>,
    /// The site limit's shares (smart charging).
    pub site: smart::SiteShares,
    /// Bidirectional charging: V2X sessions' plans and setpoints.
    pub v2x: v2x::V2x,
    /// The payment back end (prepaid wallets by default).
    pub payments: payments::Wallets,
    /// Open sessions, in memory with the store as the truth.
    pub sessions: sessions::Sessions,
    /// Per connected station: its connector statuses as stored and its
    /// fault alert's state, to skip writes and reads of repeats.
    memos: std::sync::Mutex<HashMap<String, StationMemo>>,
    /// Every connector's health score (predictive maintenance).
    pub maintenance: maintenance::Maintenance,
    /// The sessions whose running local cost was found to differ (2.1).
    pub running_costs: local_cost::RunningChecks,
    /// E-mail (invoices, receipts, notifications), when configured.
    pub mail: Option<mail::Mailer>,
    /// Plug & Charge (`--pnc`): the CSMS's CAs, contract checks, OCSP.
    pub pnc: Option<Arc<pnc::Pnc>>,
    /// Which once-per-cluster jobs this node runs (all of them on a single
    /// node).
    pub jobs: cluster::Jobs,
    /// The tariff text each open 2.x transaction's driver was shown (I06).
    pub tariff_notices: authorize::TariffNotices,
}

impl App {
    /// Publishes a live event (dropped when nobody listens).
    pub fn notify(&self, v: events::LiveEvent) {
        let _ = self.events.send(v);
    }

    /// Notes that a station was heard from now (written by [`App::flush_seen`]).
    pub fn seen(&self, station: &str) {
        self.last_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(station.to_owned(), store::now());
    }

    /// Writes the last-seen times collected since the previous flush.
    ///
    /// # Errors
    ///
    /// The store failed (the times are kept for the next flush).
    pub async fn flush_seen(&self) -> store::Result<()> {
        let batch: Vec<(String, String)> =
            std::mem::take(&mut *self.last_seen.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .collect();
        if let Err(e) = self.store.seen_batch(&batch).await {
            let mut seen = self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
            for (k, v) in batch {
                seen.entry(k).or_insert(v);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Whether a connector status differs from the one stored last (and
    /// records it as stored).
    pub fn status_changed(
        &self,
        station: &str,
        evse: i64,
        connector: i64,
        status: &str,
        error: Option<&str>,
    ) -> bool {
        let value = (status.to_owned(), error.map(str::to_owned));
        let mut m = self.memos.lock().unwrap_or_else(|e| e.into_inner());
        let memo = match m.get_mut(station) {
            Some(memo) => memo,
            None => m.entry(station.to_owned()).or_default(),
        };
        memo.statuses.insert((evse, connector), value.clone()) != Some(value)
    }

    /// Forgets a cached status (its write failed).
    pub fn forget_status(&self, station: &str, evse: i64, connector: i64) {
        if let Some(memo) = self
            .memos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(station)
        {
            memo.statuses.remove(&(evse, connector));
        }
    }

    /// Whether `station` is known here to have no open `fault` alert.
    pub fn no_open_fault(&self, station: &str) -> bool {
        self.memos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(station)
            .is_some_and(|m| m.no_open_fault)
    }

    /// Records whether `station` has no open `fault` alert (`false`: one was
    /// raised, or it is not known).
    pub fn set_no_open_fault(&self, station: &str, none_open: bool) {
        let mut m = self.memos.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(station) {
            Some(memo) => memo.no_open_fault = none_open,
            None => m.entry(station.to_owned()).or_default().no_open_fault = none_open,
        }
    }

    /// Reloads station passwords into the in-memory check used during the
    /// WebSocket handshake.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn reload_credentials(&self) -> store::Result<()> {
        self.auth.reload().await
    }

    /// A station was registered, deleted, or its password changed (operator
    /// API): the registry in memory is reloaded and, if the station's entry
    /// changed, its cached login is dropped and its live connection closed,
    /// so it authenticates again with what is stored now. A deleted station
    /// also loses its accepted boot and its state in memory. In cluster
    /// mode the other nodes do the same.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn station_credentials_changed(&self, id: &str) -> store::Result<()> {
        self.jobs.station_changed(id);
        self.credentials_reloaded(id).await
    }

    /// [`App::station_credentials_changed`] on this node only (another
    /// node changed them).
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn credentials_reloaded(&self, id: &str) -> store::Result<()> {
        let before = self.auth.entry(id);
        self.auth.reload().await?;
        let after = self.auth.entry(id);
        if before == after {
            return Ok(());
        }
        self.auth.forget(id);
        if after.is_none() {
            self.gateway.forget_accepted(id).await;
            self.station_disconnected(id);
        }
        if before.is_some() && self.gateway.disconnect(id, "credentials changed").await {
            tracing::info!(station = id, "closed: its credentials changed");
        }
        Ok(())
    }

    /// A station's connection ended (or it was deleted): what is held in
    /// memory per transaction and per connector of it is dropped (the store
    /// keeps the truth; the next message loads what it needs).
    pub fn station_disconnected(&self, id: &str) {
        self.sessions.forget_station(id);
        ocpp::forget_station(id);
        self.memos
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// A session ended: price it, keep its CDR (once), publish it; the CDR
    /// (`None`: not priced). A pricing failure is published and logged; the
    /// session stays stored and can be billed again later.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn session_completed(
        &self,
        s: &Session,
    ) -> store::Result<Option<evproto_ocpi::v221::Cdr>> {
        let cdr = match billing::bill(&self.store, s, &billing::Operator::of(&self.config)).await {
            Ok(cdr) => cdr,
            Err(billing::BillingError::Store(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(session = %s.id, "not priced: {e}");
                self.notify(crate::events::LiveEvent::PricingFailed {
                    session: s.id.to_string(),
                    reason: e.to_string(),
                });
                None
            }
        };
        // capture the priced amount, or give the hold back when there is no price
        use payments::PaymentProvider;
        let paid = match &cdr {
            Some(c) => {
                // the session's total after taxes, rounded once to the currency's minor unit
                let amount = c.total_cost.incl_vat.unwrap_or(c.total_cost.excl_vat);
                let currency = c.currency.as_str();
                match evproto_csms_core::money::Money::parse(amount, currency) {
                    Ok(m) => self.payments.capture(&s.id, m).await,
                    Err(e) => Err(payments::PaymentError::Money(e)),
                }
            }
            None => self.payments.release(&s.id).await.map(|()| None),
        };
        let receipt = match paid {
            Ok(r) => r,
            Err(payments::PaymentError::Store(e)) => return Err(e),
            Err(e) => {
                // not money, or another currency than the wallet's: an alert, nothing charged
                tracing::warn!(session = %s.id, "not captured: {e}");
                let detail = json!({"session": s.id, "reason": e.to_string()});
                self.store
                    .raise_alert(Some(&s.station_id), "payment", &detail)
                    .await?;
                self.notify(crate::events::LiveEvent::PaymentFailed {
                    session: s.id.to_string(),
                    reason: e.to_string(),
                });
                let failed = mail::Notice::PaymentFailed {
                    reason: e.to_string(),
                };
                mail::notify(&self.store, self.mail.as_ref(), &s.id, failed).await?;
                None
            }
        };
        mail::session_ended(self, s, cdr.as_ref(), receipt.as_ref()).await?;
        self.roaming.session_changed(s, cdr.as_ref()).await;
        v2x::completed(self, s).await?;
        self.site.rebalance();
        if let (Some(evse), at) = (s.evse_id, chrono::Utc::now()) {
            let reason = s.stop_reason;
            let ended = evproto_csms_core::health::Observation::session_ended(reason);
            let change = self.maintenance.observe(
                &s.station_id,
                evse,
                s.connector_id.unwrap_or(1),
                at,
                ended,
            );
            maintenance::changed(self, change).await?;
        }
        self.notify(crate::events::LiveEvent::SessionCompleted {
            station: s.station_id.to_string(),
            session: s.id.to_string(),
            energy_wh: s.energy_wh,
            total_cost: cdr.as_ref().map(|c| c.total_cost.clone()),
            receipt: receipt.and_then(|r| serde_json::value::to_raw_value(&r).ok()),
        });
        self.store.session_settled(&s.id);
        Ok(cdr)
    }

    /// The billing a transaction message's commit queued (`bill:{id}` for
    /// the session it completed), run right after that commit with the
    /// session as committed rather than read back: what
    /// [`App::run_outbox`] does for the entry, marked the same way. The CDR
    /// it made (`Some(None)`: not priced); `None` when it failed (the entry
    /// stays pending for the outbox worker).
    pub async fn bill_committed(&self, s: &Session) -> Option<Option<evproto_ocpi::v221::Cdr>> {
        let id = format!("bill:{}", s.id);
        match self.session_completed(s).await {
            Ok(cdr) => {
                self.outbox_ran(&id, Ok(())).await;
                Some(cdr)
            }
            Err(e) => {
                self.outbox_ran(&id, Err(e)).await;
                None
            }
        }
    }

    /// Runs one outbox entry (a side effect written with the message that
    /// caused it) and marks it done; a failure leaves it pending for the
    /// outbox worker. Every kind is idempotent: running one twice (a crash
    /// between the effect and the mark) does it once.
    pub async fn run_outbox(&self, id: &str, kind: &str, subject: &str) {
        let result = match kind {
            "bill" => match self.store.session(subject).await {
                Ok(Some(s)) => self.session_completed(&s).await.map(|_| ()),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
            roaming::PUSH => {
                // the roaming side runs and marks its pushes (one run at a
                // time per partner and object; a partner down holds them all)
                self.roaming.run_push(id, subject).await;
                return;
            }
            store::fleets::MAIL => {
                match &self.mail {
                    Some(m) => {
                        mail::run_outbox(&self.store, m, id, subject, self.config.outbox_retry_base)
                            .await
                    }
                    None => tracing::warn!(
                        id,
                        "mail outbox entry without e-mail configured: left pending"
                    ),
                }
                return;
            }
            payments::CARD_CAPTURE | payments::CARD_RELEASE | payments::CARD_REFUND => {
                match self.payments.cards() {
                    Some(c) => {
                        c.run_outbox(id, kind, subject, self.config.outbox_retry_base)
                            .await
                    }
                    None => {
                        tracing::warn!(id, "card outbox entry without a card gateway: left pending")
                    }
                }
                return;
            }
            other => {
                tracing::error!(id, "outbox entry of unknown kind {other}: left pending");
                return;
            }
        };
        self.outbox_ran(id, result).await;
    }

    /// Marks outbox entry `id` after a run: done, or failed (retried after
    /// its backoff).
    async fn outbox_ran(&self, id: &str, result: store::Result<()>) {
        let marked = match result {
            Ok(()) => self.store.outbox_done(id).await,
            Err(e) => {
                let base = self.config.outbox_retry_base;
                match self.store.outbox_failed(id, &e.to_string(), base).await {
                    Ok(delay) => {
                        tracing::warn!(id, "outbox entry failed, retried in {delay:?}: {e}");
                        Ok(())
                    }
                    Err(f) => Err(f),
                }
            }
        };
        if let Err(e) = marked {
            tracing::warn!(id, "outbox: {e}");
        }
    }

    /// How often the outbox worker calls [`App::drain_outbox`].
    pub const OUTBOX_TURN: std::time::Duration = std::time::Duration::from_secs(5);

    /// Runs the outbox entries that are due, oldest first, then the retries
    /// that come due within [`App::OUTBOX_TURN`] (the worker's period), so a
    /// backoff shorter than the period is kept to; returns how many ran.
    ///
    /// # Errors
    ///
    /// The store failed to list them.
    pub async fn drain_outbox(&self) -> store::Result<usize> {
        let started = std::time::Instant::now();
        let mut ran = 0;
        loop {
            let pending = self.store.outbox_pending(500).await?;
            for (id, kind, subject) in &pending {
                self.run_outbox(id, kind, subject).await;
            }
            ran += pending.len();
            // at least a short pause: an entry another runner holds stays due
            let wait = match self.store.outbox_next_retry().await? {
                Some(w) => w.max(std::time::Duration::from_millis(20)),
                None => return Ok(ran),
            };
            if started.elapsed() + wait >= Self::OUTBOX_TURN {
                return Ok(ran);
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// A session started: hold the configured amount on the token's wallet.
    /// Returns false when the wallet cannot cover it (the station is told
    /// the token is not accepted). `committed`: the session as the start's
    /// commit stored it, when the caller has it (else it is read).
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn session_started(
        &self,
        session_id: &str,
        id_token: Option<&str>,
        committed: Option<&Session>,
    ) -> store::Result<bool> {
        use payments::PaymentProvider;
        let Some(token) = id_token else {
            return Ok(true);
        };
        match self
            .payments
            .hold(session_id, token, self.config.hold_amount)
            .await
        {
            Ok(payments::Hold::Refused) => {
                self.notify(crate::events::LiveEvent::PaymentRefused {
                    session: session_id.to_string(),
                    id_token: token.to_string(),
                });
                let failed = mail::Notice::PaymentFailed {
                    reason: "the payment could not be reserved".into(),
                };
                mail::notify(&self.store, self.mail.as_ref(), session_id, failed).await?;
                Ok(false)
            }
            Ok(h) => {
                mail::notify(
                    &self.store,
                    self.mail.as_ref(),
                    session_id,
                    mail::Notice::Started,
                )
                .await?;
                match committed {
                    Some(s) => self.roaming.session_changed(s, None).await,
                    None => {
                        if let Ok(Some(s)) = self.store.session(session_id).await {
                            self.roaming.session_changed(&s, None).await;
                        }
                    }
                }
                self.site.rebalance();
                if let payments::Hold::Held(a) = h {
                    self.notify(crate::events::LiveEvent::PaymentHeld {
                        session: session_id.to_string(),
                        amount: a,
                    });
                }
                Ok(true)
            }
            Err(payments::PaymentError::Store(e)) => Err(e),
            Err(e) => {
                tracing::warn!(session = session_id, "no hold: {e}");
                Ok(false)
            }
        }
    }
}

/// The TLS server configuration of security profiles 2 and 3 from the
/// PEM files of the configuration. With `tls_client_ca`, client
/// certificates signed by it are asked for but not required at the TLS
/// handshake: profile 2 and profile 3 stations share the TLS port, and the
/// WebSocket handshake refuses a profile 3 station without one (401).
fn tls_config(config: &Config) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Err("security profiles 2 and 3 need tls_cert and tls_key".into());
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect)
        .map_err(|e| format!("tls_cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("tls_cert {}: no certificate", cert.display()));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls_key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    if config.security_profile == 3 && config.tls_client_ca.is_none() {
        return Err("security profile 3 needs tls_client_ca".into());
    }
    let builder = if let Some(ca) = &config.tls_client_ca {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("tls_client_ca {}: {e}", ca.display()))?
        {
            roots
                .add(c.map_err(|e| format!("tls_client_ca {}: {e}", ca.display()))?)
                .map_err(|e| format!("tls_client_ca {}: {e}", ca.display()))?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("tls_client_ca: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let tls = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("tls_cert/tls_key: {e}"))?;
    Ok(Arc::new(tls))
}

/// The OpenSSL listener of `tls_backend = "openssl"`: OCPP's static-RSA
/// suites beside the ECDHE ones (A00.FR.318), `tls_cert` and the optional
/// `tls_rsa_cert` served at once, client certificates as [`tls_config`].
#[cfg(feature = "tls-openssl")]
fn openssl_tls(config: &Config) -> Result<Tls, String> {
    use evproto_ocpp_server::tls_openssl::{acceptor, PemIdentity};
    let read = |what: &str, p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("{what} {}: {e}", p.display()))
    };
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Err("security profiles 2 and 3 need tls_cert and tls_key".into());
    };
    let mut pems = vec![(read("tls_cert", cert)?, read("tls_key", key)?)];
    if let Some((cert, key)) = &config.tls_rsa {
        pems.push((read("tls_rsa_cert", cert)?, read("tls_rsa_key", key)?));
    }
    let identities: Vec<PemIdentity<'_>> = pems
        .iter()
        .map(|(chain, key)| PemIdentity { chain, key })
        .collect();
    let client_ca = match &config.tls_client_ca {
        Some(p) => Some(read("tls_client_ca", p)?),
        None => None,
    };
    let acceptor =
        acceptor(&identities, client_ca.as_deref()).map_err(|e| format!("OpenSSL TLS: {e}"))?;
    Ok(Tls::from(acceptor))
}

/// Built without the feature `tls-openssl`, `tls_backend = "openssl"` is
/// refused at start, saying how to get it.
#[cfg(not(feature = "tls-openssl"))]
fn openssl_tls(_: &Config) -> Result<Tls, String> {
    Err(
        "tls_backend openssl: this csms was built without the feature tls-openssl \
         (cargo build --release -p csms --features tls-openssl; needs OpenSSL's headers, \
         Debian: libssl-dev)"
            .into(),
    )
}

/// What `csms` prints on stdout, one JSON object a line (`event`: what
/// happened): read by people, scripts and the tests.
#[derive(serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Said<'a> {
    /// The configuration in force (secrets left out).
    Config { config: Value },
    /// The API key generated at a first start, shown this once.
    ApiKeyGenerated {
        api_key: &'a str,
        console_url: String,
        note: &'static str,
    },
    /// Where it listens.
    Listening {
        ocpp_port: u16,
        ocpp_tls_port: Option<u16>,
        http_port: u16,
        admin_port: u16,
        store: &'static str,
        ocpp_url: String,
        ocpp_tls_url: Option<String>,
        public_url: String,
        admin_url: &'a str,
        dashboard: String,
    },
    /// Roaming is served here.
    Ocpi { versions_url: &'a str },
    /// It is stopping.
    Stopping,
}

fn say(s: &Said<'_>) {
    println!("{}", serde_json::to_string(s).unwrap_or_default());
}

/// Why [`serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data directory is another process's (the binary exits 2).
    #[error(transparent)]
    DataDir(#[from] datadir::LockError),
    /// The store, a port or the TLS configuration failed.
    #[error("{0}")]
    Failed(String),
}

/// Takes the data directory, opens the store, starts OCPP and HTTP, and
/// serves until Ctrl-C/SIGTERM.
///
/// # Errors
///
/// The data directory is in use, or the store or a port could not be opened.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let _lock = datadir::lock(&config.data_dir)?;
    run(config, shutdown_signal(), None, true)
        .await
        .map_err(ServeError::Failed)
}

/// Where a started CSMS listens.
#[derive(Debug, Clone)]
pub struct Started {
    /// OCPP port (plain ws://, or TLS when the default security profile is
    /// 2 or 3 and there is no `ocpp_tls_port`).
    pub ocpp_port: u16,
    /// OCPP port over TLS (wss://) beside the plain one, when configured.
    pub ocpp_tls_port: Option<u16>,
    /// Public HTTP port (OCPI, firmware downloads, station uploads).
    pub http_port: u16,
    /// Admin HTTP port (operator API, dashboard, metrics).
    pub admin_port: u16,
    /// The API key in force when this process knows it (configured, or
    /// generated at this start); `None` when only its stored hash is.
    pub api_key: Option<String>,
}

/// As [`serve`], until `shutdown` completes; `ready` gets the ports;
/// `announce` prints the configuration and ports as JSON lines on stdout.
///
/// The data directory is locked while it runs (see [`datadir`]).
///
/// # Errors
///
/// The data directory is in use, or the store or a port could not be opened.
pub async fn serve_until(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
    ready: Option<tokio::sync::oneshot::Sender<Started>>,
    announce: bool,
) -> Result<(), String> {
    let _lock = datadir::lock(&config.data_dir).map_err(|e| e.to_string())?;
    run(config, shutdown, ready, announce).await
}

async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
    ready: Option<tokio::sync::oneshot::Sender<Started>>,
    announce: bool,
) -> Result<(), String> {
    let say = |s: &Said<'_>| {
        if announce {
            say(s);
        }
    };
    let url = config.database_url();
    let store = Store::open(&url)
        .await
        .map_err(|e| format!("store {}: {e}", config::redact(&url)))?;
    if config.cluster.is_some() {
        store.set_clustered();
    }
    let key = api::settle_api_key(&store, config.api_key.as_deref())
        .await
        .map_err(|e| format!("API key: {e}"))?;
    // Each station connects under its registered security profile (A00-A08),
    // unknown identities under the server's default; the default also says
    // whether the single OCPP port runs TLS when there is no TLS port beside it.
    let default_profile = config.security_profile;
    let tls = match (config.tls_cert.is_some(), config.tls_key.is_some()) {
        (true, true) => Some(match config.tls_backend {
            config::TlsBackend::Rustls => Tls::Rustls(tls_config(&config)?),
            config::TlsBackend::Openssl => openssl_tls(&config)?,
        }),
        _ => None,
    };
    // 1. The ports first: the public base URL names the HTTP port.
    let ocpp_listener =
        tokio::net::TcpListener::bind(SocketAddr::new(config.bind, config.ocpp_port))
            .await
            .map_err(|e| format!("OCPP port {}: {e}", config.ocpp_port))?;
    let http_listener =
        tokio::net::TcpListener::bind(SocketAddr::new(config.bind, config.http_port))
            .await
            .map_err(|e| format!("HTTP port {}: {e}", config.http_port))?;
    let ocpp_port = ocpp_listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .port();
    let ocpp_tls_listener = match (config.ocpp_tls_port, &tls) {
        (Some(port), Some(_)) => Some(
            tokio::net::TcpListener::bind(SocketAddr::new(config.bind, port))
                .await
                .map_err(|e| format!("OCPP TLS port {port}: {e}"))?,
        ),
        (Some(_), None) => return Err("ocpp_tls_port needs tls_cert and tls_key".into()),
        (None, _) => None,
    };
    let ocpp_tls_port = match &ocpp_tls_listener {
        Some(l) => Some(l.local_addr().map_err(|e| e.to_string())?.port()),
        None => None,
    };
    let http_port = http_listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .port();
    let admin_listener =
        tokio::net::TcpListener::bind(SocketAddr::new(config.admin_bind, config.admin_port))
            .await
            .map_err(|e| format!("admin port {}: {e}", config.admin_port))?;
    let admin_port = admin_listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .port();
    let public_base = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{http_port}"))
        .trim_end_matches('/')
        .to_owned();
    // 2. The services, each given what it needs, in dependency order.
    let (events, _) = broadcast::channel(1024);
    let (gateway, gateway_link) = gateway::StationGateway::new(config.call_timeout, events.clone());
    // cluster mode: the other nodes' stations, reached over NATS
    let node = config.cluster.as_ref().map(|c| {
        c.node
            .clone()
            .unwrap_or_else(|| cluster::default_node_id(ocpp_port))
    });
    let cluster = match (&config.cluster, &node) {
        (Some(c), Some(node)) => {
            let joined = cluster::Cluster::join(c, node.clone(), config.call_timeout).await;
            Some(joined.map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    let gateway = match &cluster {
        Some(c) => gateway.clustered(c.remote()),
        None => gateway,
    };
    let (roaming, roaming_work) = roaming::Roaming::new(
        roaming::Needs {
            store: store.clone(),
            gateway: gateway.clone(),
            events: events.clone(),
            config: &config,
        },
        &format!("{public_base}/ocpi"),
    )?;
    let site = smart::SiteShares::new(
        store.clone(),
        gateway.clone(),
        events.clone(),
        config.site_limit_w.map(|limit_w| smart::SiteLimits {
            limit_w,
            phase_limit_a: None,
            evse_max_w: None,
        }),
    );
    site.load().await.map_err(|e| e.to_string())?;
    let v2x = v2x::V2x {
        store: store.clone(),
        gateway: gateway.clone(),
        events: events.clone(),
        site_limits: site.limits.clone(),
        config: config.v2x.clone(),
        lock: Arc::default(),
    };
    let sessions = sessions::Sessions::new(store.clone());
    let pnc = match config.pnc.clone() {
        Some(c) => {
            let prefix = format!("{}{}", config.ocpi_country_code, config.ocpi_party_id);
            Some(Arc::new(pnc::Pnc::start(store.clone(), c, &prefix).await?))
        }
        None => None,
    };
    let auth = station_auth::StationAuth::load(store.clone())
        .await
        .map_err(|e| e.to_string())?;
    let app = Arc::new(App {
        payments: payments::Wallets::new(store.clone()),
        store,
        config: config.clone(),
        api_key: key.key.clone(),
        http: api::HttpState::new(&config),
        events,
        gateway,
        roaming: roaming.clone(),
        public_base,
        site,
        v2x,
        auth: Arc::new(auth),
        last_seen: std::sync::Mutex::new(HashMap::new()),
        memos: std::sync::Mutex::new(HashMap::new()),
        sessions,
        maintenance: maintenance::Maintenance::kept_as(node.as_deref()),
        running_costs: local_cost::RunningChecks::default(),
        mail: mail::Mailer::from_env(),
        pnc,
        jobs: cluster
            .as_ref()
            .map_or_else(cluster::Jobs::single, |c| c.jobs()),
        tariff_notices: authorize::TariffNotices::default(),
    });
    // 3. The OCPP server, from the handlers (their state is the app), and
    // the gateway's link to it.
    let password = station_auth::Check(app.auth.clone());
    // each handshake is checked under its station's profile
    // (`per_station_profiles`), and each listener says its own TLS
    // (`serve_on`): the server-wide `Security` decides nothing here
    if default_profile >= 2 && tls.is_none() {
        return Err("security profiles 2 and 3 need tls_cert and tls_key".into());
    }
    let security = match default_profile {
        0 => Security::unsecured(),
        _ => Security::basic_auth(password.clone()),
    };
    let ocpp_tls = if config.ocpp_tls_port.is_none() && default_profile >= 2 {
        tls.clone()
    } else {
        None
    };
    let (r16, r201, r21) = ocpp::routes(&app);
    let registry = app.auth.clone();
    let profiles = app.auth.clone();
    let server = Server::builder(security)
        .per_station_profiles(
            move |id: &str| profiles.profile_of(id, default_profile),
            password,
        )
        // a CA-signed certificate outlives its station's registration: an
        // unknown identity under a default of profile 3 is not let in
        .admit(move |id: &str| default_profile != 3 || registry.is_registered(id))
        .v16(r16)
        .v201(r201)
        .v21(r21)
        .config(ServerConfig::default().with_endpoint(
            evproto_ocpp_proto::Config::default().with_call_timeout(config.call_timeout),
        ))
        .build();
    tokio::spawn(gateway_link.serve(server.clone()));
    if let Some(c) = cluster {
        c.run(server.clone(), app.clone()).await?;
    }
    // 4. Background work, each with the handles it uses.
    tokio::spawn(roaming_work.run(roaming.clone()));
    tokio::spawn(app.v2x.clone().run());
    tokio::spawn(app.site.clone().run());
    if let Some(p) = &app.pnc {
        let (store, gateway) = (app.store.clone(), app.gateway.clone());
        tokio::spawn(pnc::renewals(store, gateway, p.config.clone()));
    }
    if let Some(ven) = config.openadr.clone() {
        let (store, gateway, events) = (app.store.clone(), app.gateway.clone(), app.events.clone());
        let ven = openadr::Ven::new(ven, store, gateway, events, config.site_limit_w);
        tokio::spawn(ven.run(app.jobs.clone()));
    }
    // boots accepted before a restart stay accepted: a station that only
    // reconnects does not boot again (OCPP 2.0.1 B01-B03)
    for id in app
        .store
        .accepted_stations()
        .await
        .map_err(|e| e.to_string())?
    {
        server.remember_accepted(id);
    }
    say(&Said::Config {
        config: config.shown(),
    });
    let url_host = |ip: std::net::IpAddr| match ip {
        ip if ip.is_unspecified() => "localhost".to_owned(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        ip => ip.to_string(),
    };
    let admin_url = format!("http://{}:{admin_port}", url_host(config.admin_bind));
    if let (true, Some(plain)) = (key.generated, &key.plain) {
        // the console takes the key out of its address at once
        say(&Said::ApiKeyGenerated {
            api_key: plain,
            console_url: format!("{admin_url}/?key={plain}"),
            note: "shown this once: only its hash is stored. Keep it, or choose your own with --api-key or CSMS_API_KEY (16 characters or more), which also replaces a lost one",
        });
    }
    say(&Said::Listening {
        ocpp_port,
        ocpp_tls_port,
        http_port,
        admin_port,
        store: app.store.backend(),
        ocpp_url: format!(
            "{}://{}:{ocpp_port}/ocpp/{{identity}}",
            if ocpp_tls.is_some() { "wss" } else { "ws" },
            config.bind
        ),
        ocpp_tls_url: ocpp_tls_port.map(|p| format!("wss://{}:{p}/ocpp/{{identity}}", config.bind)),
        public_url: format!("http://{}:{http_port}", url_host(config.bind)),
        admin_url: &admin_url,
        dashboard: format!("{admin_url}/"),
    });
    // the health model, kept while it changes (and taken back first)
    app.maintenance
        .load(&app.store)
        .await
        .map_err(|e| format!("maintenance model: {e}"))?;
    let keeper = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(maintenance::KEEP_EVERY);
        loop {
            tick.tick().await;
            if let Err(e) = keeper.maintenance.keep(&keeper.store).await {
                tracing::warn!("maintenance model not kept: {e}");
            }
        }
    });
    // last-seen times, written in batches
    let flusher = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            if let Err(e) = flusher.flush_seen().await {
                tracing::warn!("last-seen flush: {e}");
            }
        }
    });
    // the fleets' monthly invoices, once per cluster
    tokio::spawn(crate::fleets::monthly(app.clone()));
    // side effects left pending by a crash or a failure: billing, capture, pushes
    let outbox = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(App::OUTBOX_TURN);
        loop {
            tick.tick().await;
            if !outbox.jobs.holds(cluster::lease::Job::Outbox) {
                continue;
            }
            if let Err(e) = outbox.drain_outbox().await {
                tracing::warn!("outbox: {e}");
            }
        }
    });
    // connection events: the uptime and `offline` alerts of every event
    // queued go in one group commit (a boot storm is a few commits, not one
    // per station), then to the live view
    let mut server_events = server.subscribe();
    let watcher = app.clone();
    tokio::spawn(async move {
        loop {
            let mut events = match server_events.recv().await {
                Ok(e) => vec![e],
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => break,
            };
            loop {
                match server_events.try_recv() {
                    Ok(e) => events.push(e),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
            let mut changes = Vec::new();
            for e in &events {
                match e {
                    ServerEvent::Connected { identity, .. } => {
                        // a station that connects gets the site's default share
                        watcher.site.rebalance();
                        changes.push((identity.to_string(), true));
                    }
                    ServerEvent::Disconnected { identity, reason } => {
                        watcher.station_disconnected(identity);
                        maintenance::disconnected(&watcher, identity, reason).await;
                        changes.push((identity.to_string(), false));
                    }
                    ServerEvent::Send {
                        identity,
                        action,
                        payload,
                    } => streams::received(&watcher, identity, action, payload).await,
                    ServerEvent::Refused { status, reason } => {
                        // refused connections (wrong password, unknown identity, the
                        // wrong transport for the station's profile) are security alerts
                        let reason = reason.to_string();
                        tracing::warn!(status, %reason, "station connection refused");
                        let detail = json!({"status": status, "reason": reason});
                        let _ = watcher
                            .store
                            .raise_alert(None, "refused_connection", &detail)
                            .await;
                        watcher.notify(crate::events::LiveEvent::Refused {
                            status: *status,
                            reason,
                        });
                    }
                    _ => {}
                }
            }
            connections_changed(&watcher, changes).await;
            for e in events {
                match e {
                    ServerEvent::Connected { identity, version } => {
                        watcher.notify(crate::events::LiveEvent::Connected {
                            station: identity.to_string(),
                            version: ocpp::version_name(version).to_string(),
                        });
                    }
                    ServerEvent::Disconnected { identity, .. } => {
                        watcher.notify(crate::events::LiveEvent::Disconnected {
                            station: identity.to_string(),
                        });
                    }
                    _ => {}
                }
            }
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut ocpp_stop = stop_rx.clone();
    let tls_server = server.clone();
    let ocpp_task = tokio::spawn(async move {
        server
            .serve_on(ocpp_listener, ocpp_tls, async move {
                let _ = ocpp_stop.wait_for(|s| *s).await;
            })
            .await
    });
    let ocpp_tls_task = match (ocpp_tls_listener, tls) {
        (Some(listener), Some(tls)) => {
            let mut stop = stop_rx.clone();
            Some(tokio::spawn(async move {
                tls_server
                    .serve_on(listener, Some(tls), async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await
            }))
        }
        _ => None,
    };
    // OCPI roaming, at {public_url}/ocpi
    if let Ok(Some(t)) = app.store.tariff("default").await {
        match billing::check_tariff(&t) {
            Ok(t) => roaming.tariff_changed("default", &t).await,
            Err(e) => tracing::warn!("the stored default tariff is not published: {e}"),
        }
    }
    say(&Said::Ocpi {
        versions_url: &roaming.versions_url,
    });
    let app_for_flush = app.clone();
    let limits = listener::Limits::of(&config);
    let public_routes = api::public_router(app.clone(), Some(roaming.server.router()));
    let http_task = tokio::spawn(listener::serve(
        http_listener,
        public_routes,
        limits,
        stop_rx.clone(),
    ));
    let admin_task = tokio::spawn(listener::serve(
        admin_listener,
        api::admin_router(app),
        limits,
        stop_rx.clone(),
    ));
    if let Some(r) = ready {
        let _ = r.send(Started {
            ocpp_port,
            ocpp_tls_port,
            http_port,
            admin_port,
            api_key: key.plain,
        });
    }
    shutdown.await;
    say(&Said::Stopping);
    let _ = stop_tx.send(true);
    let _ = ocpp_task.await;
    if let Some(t) = ocpp_tls_task {
        let _ = t.await;
    }
    let _ = http_task.await;
    let _ = admin_task.await;
    let _ = app_for_flush.flush_seen().await;
    if let Err(e) = app_for_flush.maintenance.keep(&app_for_flush.store).await {
        tracing::warn!("maintenance model not kept: {e}");
    }
    Ok(())
}

/// Stations connected (`true`) or gone (`false`): their uptime and
/// `offline` alerts in one group commit, the alerts to the live view.
pub(crate) async fn connections_changed(app: &App, changes: Vec<(String, bool)>) {
    match app.store.connections_changed(&changes).await {
        Ok(alerts) => {
            for (station, detail) in &alerts.raised {
                app.notify(crate::events::LiveEvent::alert(station, "offline", detail));
            }
            for station in alerts.cleared {
                app.notify(crate::events::LiveEvent::AlertCleared {
                    id: None,
                    station: Some(station),
                    kind: Some("offline".to_string()),
                });
            }
        }
        Err(e) => tracing::warn!("uptime and offline alerts: {e}"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
