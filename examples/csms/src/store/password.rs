//! Station passwords: Argon2id hashes with today's costs, the salted
//! SHA-256 of earlier releases (verified, then re-hashed at the next login),
//! and random salts and keys.

use sha2::{Digest, Sha256};

/// Argon2id cost of station passwords, in one place: OWASP's recommended
/// set (m = 19 MiB, t = 2, p = 1, about 20-30 ms on one core). A station
/// authenticates once per connection, not per message, and
/// `crate::station_auth` caches successes, so the cost falls on guessing,
/// not on charging; it runs on the blocking pool, a few at a time (memory:
/// 19 MiB each). Raising a cost re-hashes each station's password at its
/// next successful login ([`needs_rehash`]).
pub const PASSWORD_M_COST_KIB: u32 = 19 * 1024;

/// Argon2id passes (see [`PASSWORD_M_COST_KIB`]).
pub const PASSWORD_T_COST: u32 = 2;

/// Argon2id lanes (see [`PASSWORD_M_COST_KIB`]).
pub const PASSWORD_P_COST: u32 = 1;

fn argon2id() -> argon2::Argon2<'static> {
    let params = argon2::Params::new(PASSWORD_M_COST_KIB, PASSWORD_T_COST, PASSWORD_P_COST, None)
        .expect("the constant Argon2 parameters are valid");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// An Argon2id password hash in PHC string format
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), with a random
/// 128-bit salt. Slow on purpose: call it off the async workers.
pub fn hash_password(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    // 32 hex digits are valid B64 salt characters: 128 random bits
    let salt = SaltString::from_b64(&random_hex(16)).expect("hex is a valid salt");
    argon2id()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2id hashes any password with a valid salt")
        .to_string()
}

/// The hash of releases before Argon2id: one salted SHA-256,
/// `sha256$<salt>$<hex>`. Only verified (and then replaced).
fn legacy_sha256(password: &str, salt: &str) -> String {
    let digest = Sha256::digest(format!("{salt}:{password}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256${salt}${hex}")
}

/// Whether `password` matches a stored hash: Argon2id (or another PHC
/// hash the `argon2` crate reads), or a legacy salted SHA-256 (constant-time
/// compare). Slow on purpose: call it off the async workers.
pub fn verify_password(stored: &str, password: &[u8]) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
    if stored.starts_with('$') {
        return PasswordHash::new(stored)
            .is_ok_and(|h| argon2id().verify_password(password, &h).is_ok());
    }
    let mut parts = stored.splitn(3, '$');
    let (Some("sha256"), Some(salt), Some(hex)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(password) = std::str::from_utf8(password) else {
        return false;
    };
    let want = legacy_sha256(password, salt);
    let got = format!("sha256${salt}${hex}");
    want.len() == got.len()
        && want
            .bytes()
            .zip(got.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Whether a stored hash is not Argon2id with today's costs (a legacy
/// SHA-256, or older parameters): re-hash it after the next successful
/// login.
pub fn needs_rehash(stored: &str) -> bool {
    let Ok(h) = argon2::password_hash::PasswordHash::new(stored) else {
        return true;
    };
    let current = argon2id();
    h.algorithm != argon2::Algorithm::Argon2id.ident()
        || argon2::Params::try_from(&h).map_or(true, |p| {
            (p.m_cost(), p.t_cost(), p.p_cost())
                != (
                    current.params().m_cost(),
                    current.params().t_cost(),
                    current.params().p_cost(),
                )
        })
}

/// A random-enough salt or key from the OS clock and addresses (no RNG
/// dependency): hashed, so unpredictable enough for salts; API keys are
/// generated from `/dev/urandom`.
pub fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_err()
    {
        let seed = format!("{:?}{:p}", std::time::SystemTime::now(), &buf);
        buf = Sha256::digest(seed.as_bytes())
            .iter()
            .copied()
            .cycle()
            .take(bytes)
            .collect();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords() {
        let h = hash_password("secret-password");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password(&h, b"secret-password"));
        assert!(!verify_password(&h, b"secret-passwore"));
        assert!(!verify_password("garbage", b"secret-password"));
        assert!(!verify_password("$argon2id$garbage", b"secret-password"));
        assert!(!verify_password(&h, &[0xff, 0xfe]));
        assert_ne!(hash_password("x"), hash_password("x"), "salted");
        assert!(!needs_rehash(&h));
        // the hashes of earlier releases still verify, and are re-hashed
        let legacy = legacy_sha256("secret-password", "abcd");
        assert!(verify_password(&legacy, b"secret-password"));
        assert!(!verify_password(&legacy, b"secret-passwore"));
        assert!(needs_rehash(&legacy));
        let weaker = h.replace("m=19456,t=2", "m=19456,t=1");
        assert!(needs_rehash(&weaker));
        assert_eq!(random_hex(16).len(), 32);
        assert_ne!(random_hex(16), random_hex(16));
    }
}
