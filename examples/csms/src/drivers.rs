//! Drivers' authentication and limits for the app API (`crate::app_api`).
//!
//! The choice, documented: **passwords hashed with Argon2id** (the same
//! OWASP cost as station passwords, `crate::store::hash_password`, run on
//! the blocking pool) and **short-lived opaque bearer tokens**: 32 random
//! bytes from the OS, given to the app once at sign-in, kept in the store
//! only as their SHA-256 (`driver_logins`), valid for [`LOGIN_TTL`] and
//! revoked at sign-out. Opaque rather than signed (JWT): nothing to
//! forge, revocation is a row deleted, and a lookup by hash compares no
//! secret in variable time. A high-entropy token needs no slow hash.
//! Magic links would need mail delivery, which the CSMS does not have yet.
//!
//! Requests are limited per account (signed in) and per e-mail address and
//! per client address (sign-up and sign-in), with token buckets in memory
//! ([`RateLimiter`]); over the limit is a 429 with `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How long a sign-in's bearer token is valid.
pub const LOGIN_TTL: Duration = Duration::from_secs(3600);

/// The shortest password accepted.
pub const MIN_PASSWORD: usize = 10;
/// The longest password accepted (Argon2 takes any length; a bound on the
/// work one request can ask for).
pub const MAX_PASSWORD: usize = 128;

/// An e-mail address as the sign-in name: trimmed, lower-cased, one `@`
/// with text on both sides and a dot in the domain, at most 254 bytes.
///
/// # Errors
///
/// Why it is not one.
pub fn normalize_email(email: &str) -> Result<String, &'static str> {
    let e = email.trim().to_lowercase();
    let ok = e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(e.split_once('@'), Some((local, domain))
            if !local.is_empty() && domain.contains('.') && !domain.contains('@')
                && !domain.starts_with('.') && !domain.ends_with('.'));
    if ok {
        Ok(e)
    } else {
        Err("email: an address like driver@example.com")
    }
}

/// Whether a password is long enough and not too long.
///
/// # Errors
///
/// Why it is not accepted.
pub fn check_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        return Err(format!(
            "password: {MIN_PASSWORD} to {MAX_PASSWORD} characters"
        ));
    }
    Ok(())
}

/// A new bearer token (64 hex digits, 256 random bits).
pub fn new_login_token() -> String {
    crate::store::random_hex(32)
}

/// What the store keeps of a bearer token.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new app token for a driver: `APP` and 16 hex digits (19 characters,
/// within 1.6's 20 for an idTag), sent to stations as the 2.x idToken of
/// type `Central`.
pub fn new_app_token() -> String {
    format!("APP{}", crate::store::random_hex(8).to_uppercase())
}

/// Whether text is an RFID card's UID as a driver may register it: 4 to 20
/// characters (1.6's idTag length) of letters and digits.
///
/// # Errors
///
/// Why it is not.
pub fn check_rfid(uid: &str) -> Result<(), &'static str> {
    if (4..=20).contains(&uid.len()) && uid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err("id_token: 4 to 20 letters and digits (the card's UID)")
    }
}

/// Token buckets per key: `burst` requests at once, refilled at `per_second`.
#[derive(Debug)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    burst: f64,
    per_second: f64,
}

/// Keys kept before idle buckets are dropped.
const MAX_KEYS: usize = 100_000;

impl RateLimiter {
    /// A limiter of `burst` requests refilled at `per_minute`.
    pub fn new(burst: u32, per_minute: u32) -> RateLimiter {
        RateLimiter {
            buckets: Mutex::new(HashMap::new()),
            burst: f64::from(burst),
            per_second: f64::from(per_minute) / 60.0,
        }
    }

    /// Takes one request of `key`'s budget; `Err(wait)` when there is none
    /// left (`wait`: until there is).
    ///
    /// # Errors
    ///
    /// Over the limit.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            // full buckets carry no state: forget them first
            let (burst, rate) = (self.burst, self.per_second);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        let refilled = (*tokens
            + now.saturating_duration_since(*at).as_secs_f64() * self.per_second)
            .min(self.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            let wait = (1.0 - refilled) / self.per_second.max(f64::MIN_POSITIVE);
            Err(Duration::from_secs_f64(wait.min(3600.0)).max(Duration::from_secs(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_passwords_and_cards() {
        assert_eq!(
            normalize_email(" Ann@Example.COM ").unwrap(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "@x.org",
            "ann@",
            "ann@x",
            "a b@x.org",
            "ann@x.org@y.org",
            "ann@.org",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
        assert!(check_password("short").is_err());
        assert!(check_password(&"x".repeat(129)).is_err());
        assert!(check_password("long enough pass").is_ok());
        assert!(check_rfid("04A2B3C4").is_ok());
        assert!(check_rfid("04 A2").is_err());
        assert!(check_rfid(&"A".repeat(21)).is_err());
        let t = new_app_token();
        assert_eq!((t.len(), t.starts_with("APP")), (19, true));
        assert_ne!(new_login_token(), new_login_token());
        assert_eq!(token_hash("x").len(), 64);
    }

    #[test]
    fn token_bucket_refills() {
        let l = RateLimiter::new(3, 60);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check_at("a", t0).is_ok());
        }
        let wait = l.check_at("a", t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        // another key has its own budget
        assert!(l.check_at("b", t0).is_ok());
        // one a second comes back
        assert!(l.check_at("a", t0 + Duration::from_millis(1100)).is_ok());
        assert!(l.check_at("a", t0 + Duration::from_millis(1200)).is_err());
    }
}
