//! Station passwords at the WebSocket handshake (security profiles 1, 2),
//! the registry check of profile 3, and each station's security profile
//! (OCPP 2.0.1 A00-A08: the registered profile decides how a station may
//! connect, see [`StationAuth::profile_of`]).
//!
//! - Passwords are Argon2id hashes (`crate::store::hash_password`, costs in
//!   `crate::store::PASSWORD_M_COST_KIB`); a legacy SHA-256 hash still
//!   verifies and is replaced by Argon2id at that login.
//! - Verification runs on tokio's blocking pool, at most one per core at a
//!   time (each takes 19 MiB), never on an async worker.
//! - A bounded cache of recent successes, keyed by identity, holds a
//!   SHA-256 of (per-process random key, identity, stored hash, password):
//!   a reconnect storm of thousands of stations costs one Argon2id per
//!   station, once. It never holds a password, its digests are useless
//!   outside this process, and an entry is dropped when the station's
//!   password changes or it is deleted (the stored hash is in the digest
//!   too, so a changed hash never matches).
//! - An unknown identity, or one without a password, is verified against a
//!   dummy Argon2id hash of the same costs and then refused: refusing it
//!   takes as long as refusing a wrong password.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use evproto_ocpp_server::{PasswordCheck, Verdict};
use sha2::{Digest, Sha256};

use crate::store::{self, Store};

/// Successful logins remembered (about 150 bytes each).
pub const CACHE_ENTRIES: usize = 65_536;

/// A cache digest (see the module docs).
type Digest32 = [u8; 32];

/// The registry as the handshake sees it, and the password check.
#[derive(Debug)]
pub struct StationAuth {
    store: Store,
    /// Identity → stored hash and profile.
    registry: RwLock<HashMap<String, Entry>>,
    cache: Mutex<Cache>,
    /// Keys the cache digests; random per process.
    key: [u8; 32],
    /// Argon2id runs at once (each holds 19 MiB).
    hashing: tokio::sync::Semaphore,
    /// What unknown identities are verified against.
    dummy: Arc<str>,
    /// Argon2id (or legacy) verifications run, for tests and metrics.
    verifications: AtomicU64,
}

/// A registered station as the handshake sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its password's stored hash (`None`: registered without a password).
    pub hash: Option<Arc<str>>,
    /// Its security profile (`None`: the server's default).
    pub profile: Option<u8>,
}

#[derive(Debug, Default)]
struct Cache {
    digests: HashMap<String, Digest32>,
    /// Insertion order, for eviction.
    order: VecDeque<String>,
}

impl StationAuth {
    /// The registry of `store`, loaded.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn load(store: Store) -> store::Result<Self> {
        let dummy_password = store::random_hex(16);
        let dummy = tokio::task::spawn_blocking(move || store::hash_password(&dummy_password))
            .await
            .map_err(|_| store::StoreError::Corrupt("password hash"))?;
        let mut key = [0u8; 32];
        for (i, b) in Sha256::digest(store::random_hex(32).as_bytes())
            .iter()
            .enumerate()
        {
            key[i] = *b;
        }
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let auth = StationAuth {
            store,
            registry: RwLock::new(HashMap::new()),
            cache: Mutex::new(Cache::default()),
            key,
            hashing: tokio::sync::Semaphore::new(cores),
            dummy: Arc::from(dummy),
            verifications: AtomicU64::new(0),
        };
        auth.reload().await?;
        Ok(auth)
    }

    /// Reads the registry from the store again.
    ///
    /// # Errors
    ///
    /// The store failed (the registry in memory is kept).
    pub async fn reload(&self) -> store::Result<()> {
        let creds = self.store.credentials().await?;
        *self.registry.write().unwrap_or_else(|e| e.into_inner()) = creds
            .into_iter()
            .map(|c| {
                let entry = Entry {
                    hash: c.password_hash.map(Arc::from),
                    profile: c.security_profile,
                };
                (c.id, entry)
            })
            .collect();
        Ok(())
    }

    /// The registry entry of `identity`, `None` if it is not registered.
    pub fn entry(&self, identity: &str) -> Option<Entry> {
        self.registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(identity)
            .cloned()
    }

    /// The stored password hash of `identity`, if it is registered with one.
    fn hash(&self, identity: &str) -> Option<Arc<str>> {
        self.entry(identity).and_then(|e| e.hash)
    }

    /// The security profile `identity` must connect under: its registered
    /// one, else `default` (the server's; unknown identities too).
    pub fn profile_of(&self, identity: &str, default: u8) -> u8 {
        self.entry(identity)
            .and_then(|e| e.profile)
            .unwrap_or(default)
    }

    /// Whether `identity` is registered (profile 3's admission).
    pub fn is_registered(&self, identity: &str) -> bool {
        self.entry(identity).is_some()
    }

    /// Forgets `identity`'s cached login (its password changed, or it was
    /// deleted).
    pub fn forget(&self, identity: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .digests
            .remove(identity);
    }

    /// How many Argon2id (or legacy) verifications ran.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    fn digest(&self, identity: &str, hash: &str, password: &[u8]) -> Digest32 {
        let mut h = Sha256::new();
        h.update(self.key);
        for part in [identity.as_bytes(), hash.as_bytes(), password] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    fn cached(&self, identity: &str, digest: &Digest32) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .digests
            .get(identity)
            .is_some_and(|d| d.iter().zip(digest).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0)
    }

    fn remember(&self, identity: &str, digest: Digest32) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.digests.insert(identity.to_owned(), digest).is_none() {
            cache.order.push_back(identity.to_owned());
        }
        while cache.order.len() > CACHE_ENTRIES {
            if let Some(old) = cache.order.pop_front() {
                cache.digests.remove(&old);
            }
        }
    }

    /// Whether `password` is `identity`'s (see the module docs).
    pub async fn verify(&self, identity: &str, password: &[u8]) -> bool {
        let stored = self.hash(identity);
        // unknown identities and those without a password take the same path
        let hash = stored.clone().unwrap_or_else(|| self.dummy.clone());
        let digest = self.digest(identity, &hash, password);
        if stored.is_some() && self.cached(identity, &digest) {
            return true;
        }
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let rehash = stored.is_some() && store::needs_rehash(&hash);
        let (h, pw) = (hash.clone(), password.to_vec());
        let Ok((right, new_hash)) = tokio::task::spawn_blocking(move || {
            let right = store::verify_password(&h, &pw);
            let new_hash = (right && rehash)
                .then(|| std::str::from_utf8(&pw).ok().map(store::hash_password))
                .flatten();
            (right, new_hash)
        })
        .await
        else {
            return false;
        };
        drop(_permit);
        if !(right && stored.is_some()) {
            return false;
        }
        let mut digest = digest;
        if let Some(new) = new_hash {
            // a legacy or weaker hash: Argon2id with today's costs from now on
            match self.store.rehash_password(identity, &hash, &new).await {
                Ok(true) => {
                    let mut registry = self.registry.write().unwrap_or_else(|e| e.into_inner());
                    if let Some(entry) = registry.get_mut(identity) {
                        if entry.hash.as_deref() == Some(&*hash) {
                            entry.hash = Some(Arc::from(new.as_str()));
                            digest = self.digest(identity, &new, password);
                        }
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(identity, "password not re-hashed: {e}"),
            }
        }
        self.remember(identity, digest);
        true
    }
}

/// [`StationAuth`] as the OCPP server's password check.
#[derive(Debug, Clone)]
pub struct Check(pub Arc<StationAuth>);

impl PasswordCheck for Check {
    /// Blocking; the server calls [`PasswordCheck::verify`].
    fn check(&self, identity: &str, password: &[u8]) -> bool {
        let hash = self.0.hash(identity);
        let right = store::verify_password(hash.as_deref().unwrap_or(&self.0.dummy), password);
        right && hash.is_some()
    }

    fn verify(self: Arc<Self>, identity: String, password: Vec<u8>) -> Verdict {
        Box::pin(async move { self.0.verify(&identity, &password).await })
    }
}

/// What a station said when it was sent a new password
/// ([`send_password`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSent {
    /// It accepted it: the CSMS adopts it.
    Accepted,
    /// It refused it, with its status (`Rejected`, `NotSupported`,
    /// `RebootRequired`, `UnknownVariable`, ...): the old password stays.
    Refused(String),
}

/// Why a password could not be sent ([`send_password`]).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The call failed: CALLERROR, timeout, connection lost.
    #[error(transparent)]
    Call(#[from] crate::gateway::StationCallError),
    /// It does not fit the message.
    #[error("password: {0}")]
    TooLong(#[from] evproto_ocpp_types::TooLong),
}

/// A generated station password: 40 hexadecimal digits (20 random bytes),
/// the most OCPP allows (1.6 security whitepaper, 2.0.1
/// `SecurityCtrlr.BasicAuthPassword`: 16 to 40 characters).
pub fn generate_password() -> String {
    store::random_hex(20)
}

/// Sends `password` to a connected station as its new Basic-auth password
/// (OCPP 2.0.1 A01, 1.6 security whitepaper): 2.x `SetVariables`
/// `SecurityCtrlr.BasicAuthPassword`, 1.6 `ChangeConfiguration`
/// `AuthorizationKey`. What it answered; the caller adopts the password
/// only when it is [`PasswordSent::Accepted`].
///
/// # Errors
///
/// The call failed (CALLERROR, timeout, connection lost), or `password` is
/// longer than the message allows.
pub async fn send_password(
    gateway: &crate::gateway::StationGateway,
    station: &str,
    password: &str,
) -> Result<PasswordSent, SendError> {
    use evproto_ocpp_proto::ProtocolVersion;
    use evproto_ocpp_types::{v16, v201, v21};
    let version = gateway.version(station).await.ok_or_else(|| {
        crate::gateway::StationCallError::NotConnected {
            station: station.to_owned(),
        }
    })?;
    let status: String = match version {
        ProtocolVersion::V16 => {
            let req = v16::ChangeConfigurationRequest {
                key: "AuthorizationKey".parse()?,
                value: password.parse()?,
            };
            let r = gateway
                .call::<v16::action::ChangeConfiguration>(station, req)
                .await?;
            r.status.as_str().to_owned()
        }
        ProtocolVersion::V201 => {
            let req = v201::SetVariablesRequest {
                set_variable_data: vec![v201::SetVariableDataType {
                    attribute_type: None,
                    attribute_value: password.parse()?,
                    component: v201::ComponentType {
                        name: "SecurityCtrlr".parse()?,
                        instance: None,
                        evse: None,
                        custom_data: None,
                    },
                    variable: v201::VariableType {
                        name: "BasicAuthPassword".parse()?,
                        instance: None,
                        custom_data: None,
                    },
                    custom_data: None,
                }],
                custom_data: None,
            };
            let r = gateway
                .call::<v201::action::SetVariables>(station, req)
                .await?;
            r.set_variable_result
                .first()
                .map_or("no result", |v| v.attribute_status.as_str())
                .to_owned()
        }
        _ => {
            let req = v21::SetVariablesRequest {
                set_variable_data: vec![v21::SetVariableDataType {
                    attribute_type: None,
                    attribute_value: password.parse()?,
                    component: v21::ComponentType {
                        name: "SecurityCtrlr".parse()?,
                        instance: None,
                        evse: None,
                        custom_data: None,
                    },
                    variable: v21::VariableType {
                        name: "BasicAuthPassword".parse()?,
                        instance: None,
                        custom_data: None,
                    },
                    custom_data: None,
                }],
                custom_data: None,
            };
            let r = gateway
                .call::<v21::action::SetVariables>(station, req)
                .await?;
            r.set_variable_result
                .first()
                .map_or("no result", |v| v.attribute_status.as_str())
                .to_owned()
        }
    };
    Ok(if status == "Accepted" {
        PasswordSent::Accepted
    } else {
        PasswordSent::Refused(status)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn temp_store(name: &str) -> Store {
        let dir = std::env::temp_dir().join(format!("csms-auth-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Store::open(&format!("sqlite://{}?mode=rwc", dir.join("t.db").display()))
            .await
            .unwrap()
    }

    const PW: &str = "a-station-password-01";

    #[tokio::test]
    async fn unknown_identities_go_through_the_same_verification_as_known_ones() {
        let store = temp_store("same-path").await;
        store.upsert_station("KNOWN", Some(PW)).await.unwrap();
        store.upsert_station("NO-PASSWORD", None).await.unwrap();
        let auth = StationAuth::load(store).await.unwrap();
        let runs = |before: u64| auth.verifications() - before;
        for (identity, password) in [
            ("KNOWN", "a-wrong-password-0001"),
            ("UNKNOWN", PW),
            ("NO-PASSWORD", PW),
            ("NO-PASSWORD", ""),
        ] {
            let before = auth.verifications();
            assert!(!auth.verify(identity, password.as_bytes()).await);
            assert_eq!(runs(before), 1, "{identity}: one Argon2id verification");
        }
        // refused logins are never cached: each costs the same again
        let before = auth.verifications();
        assert!(!auth.verify("UNKNOWN", PW.as_bytes()).await);
        assert_eq!(runs(before), 1);
    }

    #[tokio::test]
    async fn a_login_is_hashed_once_then_cached_until_the_password_changes() {
        let store = temp_store("cache").await;
        store.upsert_station("CP1", Some(PW)).await.unwrap();
        let auth = StationAuth::load(store.clone()).await.unwrap();
        assert!(auth.verify("CP1", PW.as_bytes()).await);
        let after_first = auth.verifications();
        for _ in 0..20 {
            assert!(auth.verify("CP1", PW.as_bytes()).await);
        }
        assert_eq!(auth.verifications(), after_first, "reconnects are cached");
        // a wrong password is not a cache hit
        assert!(!auth.verify("CP1", b"a-wrong-password-0001").await);
        // the password changes: the old one no longer opens, even cached
        store
            .upsert_station("CP1", Some("the-new-password-0001"))
            .await
            .unwrap();
        auth.reload().await.unwrap();
        auth.forget("CP1");
        assert!(!auth.verify("CP1", PW.as_bytes()).await);
        assert!(auth.verify("CP1", b"the-new-password-0001").await);
        // deleted: refused
        store.delete_station("CP1").await.unwrap();
        auth.reload().await.unwrap();
        auth.forget("CP1");
        assert!(!auth.verify("CP1", b"the-new-password-0001").await);
    }

    #[tokio::test]
    async fn a_station_follows_its_own_profile_or_the_servers_default() {
        let store = temp_store("profiles").await;
        store.upsert_station("P3", None).await.unwrap();
        store.upsert_station("DEFAULT", Some(PW)).await.unwrap();
        assert!(store.set_station_policy("P3", None, Some(3)).await.unwrap());
        assert!(!store
            .set_station_policy("NONE", None, Some(1))
            .await
            .unwrap());
        let auth = StationAuth::load(store.clone()).await.unwrap();
        assert_eq!(auth.profile_of("P3", 1), 3);
        assert_eq!(auth.profile_of("DEFAULT", 1), 1);
        assert_eq!(auth.profile_of("DEFAULT", 2), 2);
        assert_eq!(auth.profile_of("UNKNOWN", 0), 0);
        // a change is seen after a reload, and changes the entry
        let before = auth.entry("P3");
        store.set_station_policy("P3", None, Some(2)).await.unwrap();
        auth.reload().await.unwrap();
        assert_eq!(auth.profile_of("P3", 1), 2);
        assert_ne!(auth.entry("P3"), before);
    }

    #[tokio::test]
    async fn a_legacy_sha256_hash_verifies_once_and_is_replaced_by_argon2id() {
        let store = temp_store("rehash").await;
        store.upsert_station("OLD", None).await.unwrap();
        // as releases before Argon2id stored it
        let legacy = format!(
            "sha256$abcd${}",
            Sha256::digest(format!("abcd:{PW}").as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        sqlx::query("UPDATE stations SET password_hash = $1 WHERE id = 'OLD'")
            .bind(&legacy)
            .execute(store.pool())
            .await
            .unwrap();
        let auth = StationAuth::load(store.clone()).await.unwrap();
        assert!(!auth.verify("OLD", b"a-wrong-password-0001").await);
        assert_eq!(auth.hash("OLD"), Some(Arc::from(legacy.as_str())));
        assert!(auth.verify("OLD", PW.as_bytes()).await);
        let stored = store.credentials().await.unwrap();
        let now = stored[0].password_hash.clone().unwrap();
        assert!(now.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{now}");
        assert_eq!(auth.hash("OLD"), Some(Arc::from(now.as_str())));
        // and it still opens, cached, and after a reload
        assert!(auth.verify("OLD", PW.as_bytes()).await);
        auth.reload().await.unwrap();
        auth.forget("OLD");
        assert!(auth.verify("OLD", PW.as_bytes()).await);
    }
}
