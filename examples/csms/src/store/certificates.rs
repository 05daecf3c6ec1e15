//! Plug & Charge (pnc/): the certificates the CSMS's CA signed for each
//! station (the latest per station and use, for renewal before expiry)
//! and the revocations the lab's OCSP responder answers from.

use sqlx::Row;

use super::{now, Result, Store};

/// A certificate the CSMS signed for a station.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StationCertificate {
    /// The station.
    pub station_id: String,
    /// `ChargingStationCertificate` or `V2GCertificate`.
    pub certificate_use: String,
    /// Serial number, hex.
    pub serial: String,
    /// Expiry, Unix s.
    pub not_after: i64,
    /// The chain sent (PEM).
    pub certificate: String,
    /// When it was signed (RFC 3339).
    pub issued_at: String,
    /// When the station was last asked to renew it (RFC 3339).
    pub renewal_requested_at: Option<String>,
}

const COLS: &str =
    "station_id, certificate_use, serial, not_after, certificate, issued_at, renewal_requested_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<StationCertificate> {
    Ok(StationCertificate {
        station_id: r.try_get(0)?,
        certificate_use: r.try_get(1)?,
        serial: r.try_get(2)?,
        not_after: r.try_get(3)?,
        certificate: r.try_get(4)?,
        issued_at: r.try_get(5)?,
        renewal_requested_at: r.try_get(6)?,
    })
}

impl Store {
    /// Records the certificate signed for `station` as `usage` (replacing
    /// the one before: a renewal starts the count again).
    pub async fn station_certificate_signed(
        &self,
        station: &str,
        usage: &str,
        serial: &str,
        not_after: i64,
        certificate: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO station_certificates (station_id, certificate_use, serial, not_after, certificate, issued_at, renewal_requested_at) VALUES ($1, $2, $3, $4, $5, $6, NULL)
             ON CONFLICT (station_id, certificate_use) DO UPDATE SET serial = $3, not_after = $4, certificate = $5, issued_at = $6, renewal_requested_at = NULL",
        )
        .bind(station)
        .bind(usage)
        .bind(serial)
        .bind(not_after)
        .bind(certificate)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The certificates signed for `station`.
    pub async fn station_certificates(&self, station: &str) -> Result<Vec<StationCertificate>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM station_certificates WHERE station_id = $1 ORDER BY certificate_use"
        ))
        .bind(station)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Certificates that expire before `before` (Unix s) whose station was
    /// not asked to renew them yet, at most `limit`, soonest first.
    pub async fn certificates_to_renew(
        &self,
        before: i64,
        limit: i64,
    ) -> Result<Vec<StationCertificate>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLS} FROM station_certificates WHERE not_after < $1 AND renewal_requested_at IS NULL ORDER BY not_after LIMIT $2"
        ))
        .bind(before)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Notes that `station` was asked to renew its `usage` certificate.
    pub async fn certificate_renewal_requested(&self, station: &str, usage: &str) -> Result<()> {
        sqlx::query("UPDATE station_certificates SET renewal_requested_at = $3 WHERE station_id = $1 AND certificate_use = $2")
            .bind(station)
            .bind(usage)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Revokes the certificate of OCSP id `cert_id` at `at` (Unix s); a
    /// second revocation keeps the first time.
    pub async fn revoke_certificate(&self, cert_id: &str, at: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO certificate_revocations (cert_id, revoked_at) VALUES ($1, $2) ON CONFLICT (cert_id) DO NOTHING",
        )
        .bind(cert_id)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// When the certificate of OCSP id `cert_id` was revoked, if it was.
    pub async fn certificate_revoked_at(&self, cert_id: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query("SELECT revoked_at FROM certificate_revocations WHERE cert_id = $1")
                .bind(cert_id)
                .fetch_optional(&self.read)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?,
        )
    }
}
