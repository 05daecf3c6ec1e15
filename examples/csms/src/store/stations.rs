//! Stations: the registry (identity, password hash, the boot answer the
//! operator chose, security profile), boots and last-seen times, connector
//! statuses, the device model a 2.x station reports (NotifyReport), and the
//! credentials the handshake checks.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;

use super::paging::{like_pattern, Cond, Keyset, ListQuery, Page};
use super::{hash_password, json_col, now, Result, Store, StoreError};

/// The boot answer the operator chose for a registered station (OCPP 1.6
/// §4.2, 2.0.1 B01-B03): `Accepted`, `Pending` or `Rejected`, the same
/// spelling in every version, in the store and in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Registration {
    /// Its boots are accepted.
    #[default]
    Accepted,
    /// Its boots are answered Pending: it may be configured, not used.
    Pending,
    /// Its boots are answered Rejected.
    Rejected,
}

impl Registration {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Registration::Accepted => "Accepted",
            Registration::Pending => "Pending",
            Registration::Rejected => "Rejected",
        }
    }

    /// From its stored text (`None`, or text it does not know: Accepted).
    pub fn parse(s: Option<&str>) -> Registration {
        match s {
            Some("Pending") => Registration::Pending,
            Some("Rejected") => Registration::Rejected,
            _ => Registration::Accepted,
        }
    }
}

/// A station's entry in the registry as the handshake needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Identity.
    pub id: String,
    /// Its password's hash, if it has one.
    pub password_hash: Option<String>,
    /// Its security profile, `None` for the server's default.
    pub security_profile: Option<u8>,
}

/// A station as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Station {
    /// Identity.
    pub id: String,
    /// Whether a password is set.
    pub has_password: bool,
    /// Vendor from the boot.
    pub vendor: Option<String>,
    /// Model from the boot.
    pub model: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// Firmware version.
    pub firmware: Option<String>,
    /// Negotiated OCPP version at the last connection.
    pub ocpp_version: Option<String>,
    /// Last boot answer (Accepted, Pending, Rejected).
    pub boot_status: Option<String>,
    /// The boot answer the operator chose for it.
    pub registration: Registration,
    /// The security profile it connects under (0-3); `None` in the store
    /// when it follows the server's default (the API shows that number).
    pub security_profile: Option<u8>,
    /// Last boot time.
    pub last_boot: Option<String>,
    /// Last message time.
    pub last_seen: Option<String>,
    /// Connectors and their status.
    pub connectors: Vec<ConnectorState>,
}

/// A connector as the registry knows it (1.6: EVSE = connector; 0 is the
/// station as a whole).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectorState {
    /// The EVSE (1.6: the connector id).
    pub evse_id: i64,
    /// The connector on the EVSE.
    pub connector_id: i64,
    /// Its last status, as the station's version says it.
    pub status: String,
    /// The error code of the last status, when not `NoError`.
    pub error_code: Option<String>,
    /// When the status was reported.
    pub updated_at: String,
}

/// A stored security profile: 0-3, or `None` (the server's default).
fn profile(stored: Option<i64>) -> Result<Option<u8>> {
    stored
        .map(|p| {
            u8::try_from(p)
                .ok()
                .filter(|p| *p <= 3)
                .ok_or(StoreError::Corrupt("stations.security_profile"))
        })
        .transpose()
}

/// A station identity's natural sort key: each run of digits becomes its
/// length (two digits) and the digits without leading zeros, so `LOAD2`
/// sorts before `LOAD10` by plain byte order.
pub fn natural_key(id: &str) -> String {
    let mut out = String::with_capacity(id.len() + 8);
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if !digits.is_empty() {
            let d = digits.trim_start_matches('0');
            let d = if d.is_empty() { "0" } else { d };
            out.push_str(&format!("{:02}{d}", d.len()));
            digits.clear();
        }
    };
    for c in id.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

impl Store {
    /// Registers or updates a station; `password` replaces the stored one when given.
    pub async fn upsert_station(&self, id: &str, password: Option<&str>) -> Result<bool> {
        let hash = match password {
            // Argon2id is slow on purpose: off the async workers
            Some(p) => {
                let p = p.to_owned();
                tokio::task::spawn_blocking(move || hash_password(&p))
                    .await
                    .ok()
            }
            None => None,
        };
        if password.is_some() && hash.is_none() {
            return Err(StoreError::Corrupt("password hash"));
        }
        let created = sqlx::query("INSERT INTO stations (id, password_hash, created_at, sort_key) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(hash.clone())
            .bind(now())
            .bind(natural_key(id))
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1;
        if !created {
            if let Some(h) = hash {
                sqlx::query("UPDATE stations SET password_hash = $1 WHERE id = $2")
                    .bind(h)
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(created)
    }

    /// Removes a station (its sessions stay).
    pub async fn delete_station(&self, id: &str) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM stations WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1)
    }

    /// Replaces a station's password hash by `new` if it is still `old`
    /// (a re-hash after login; a password set meanwhile wins). Whether it
    /// was replaced.
    pub async fn rehash_password(&self, id: &str, old: &str, new: &str) -> Result<bool> {
        Ok(sqlx::query(
            "UPDATE stations SET password_hash = $1 WHERE id = $2 AND password_hash = $3",
        )
        .bind(new)
        .bind(id)
        .bind(old)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Every station's identity, password hash and security profile.
    pub async fn credentials(&self) -> Result<Vec<Credentials>> {
        let rows = sqlx::query("SELECT id, password_hash, security_profile FROM stations")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Credentials {
                    id: r.try_get(0)?,
                    password_hash: r.try_get(1)?,
                    security_profile: profile(r.try_get(2)?)?,
                })
            })
            .collect()
    }

    /// Sets a registered station's registration and security profile (each
    /// when given); whether the station exists.
    pub async fn set_station_policy(
        &self,
        id: &str,
        registration: Option<Registration>,
        security_profile: Option<u8>,
    ) -> Result<bool> {
        let mut found = true;
        if let Some(r) = registration {
            found &= sqlx::query("UPDATE stations SET registration = $1 WHERE id = $2")
                .bind(r.as_str())
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1;
        }
        if let Some(p) = security_profile {
            found &= sqlx::query("UPDATE stations SET security_profile = $1 WHERE id = $2")
                .bind(i64::from(p))
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1;
        }
        Ok(found)
    }

    /// Records a boot (vendor, model, serial and firmware from `info`,
    /// the version and the answer), registering the station first when
    /// `register` (an unknown identity accepted or pending): one write in
    /// the next group commit.
    ///
    /// # Errors
    ///
    /// The database failed: nothing of it was kept.
    pub async fn record_boot(
        &self,
        id: &str,
        register: bool,
        version: &'static str,
        info: &Value,
        status: &'static str,
    ) -> Result<()> {
        use crate::writer::Op;
        let s = |k: &str| info.get(k).and_then(Value::as_str).map(str::to_owned);
        let mut ops = Vec::with_capacity(2);
        if register {
            ops.push(Op::Station { id: id.to_owned() });
        }
        ops.push(Op::Boot {
            id: id.to_owned(),
            version,
            info: [s("vendor"), s("model"), s("serial"), s("firmware")],
            status,
        });
        self.writer.write(ops).await
    }

    /// Writes last-seen times (in the next group commit).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn seen_batch(&self, batch: &[(String, String)]) -> Result<()> {
        self.writer
            .write(
                batch
                    .iter()
                    .map(|(station, at)| crate::writer::Op::Seen {
                        station: station.clone(),
                        at: at.clone(),
                    })
                    .collect(),
            )
            .await
    }

    /// Records a connector status (in the next group commit).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn set_status(
        &self,
        id: &str,
        evse: i64,
        connector: i64,
        status: &str,
        error: Option<&str>,
    ) -> Result<()> {
        self.writer
            .write(vec![crate::writer::Op::Status {
                station: id.to_owned(),
                evse,
                connector,
                status: status.to_owned(),
                error: error.map(str::to_owned),
            }])
            .await
    }

    /// A station with its connectors; `None` if unknown.
    pub async fn station(&self, id: &str) -> Result<Option<Station>> {
        Ok(self.stations_by_id(&[id.to_owned()]).await?.remove(id))
    }

    /// The stations of `ids` that exist, with their connectors, by id:
    /// two reads for all of them (the Location rebuild reads a round's
    /// stations so).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn stations_by_id(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, Station>> {
        let mut out = std::collections::HashMap::with_capacity(ids.len());
        if ids.is_empty() {
            return Ok(out);
        }
        let list = super::in_list(ids.len());
        let sql = format!(
            "SELECT id, password_hash, vendor, model, serial, firmware, ocpp_version, boot_status, last_boot, last_seen, registration, security_profile FROM stations WHERE id IN ({list})"
        );
        let rows = super::bind_all(sqlx::query(&sql), ids);
        for row in rows.fetch_all(&self.read).await? {
            let id: String = row.try_get(0)?;
            out.insert(
                id.clone(),
                Station {
                    id,
                    has_password: row.try_get::<Option<String>, _>(1)?.is_some(),
                    vendor: row.try_get(2)?,
                    model: row.try_get(3)?,
                    serial: row.try_get(4)?,
                    firmware: row.try_get(5)?,
                    ocpp_version: row.try_get(6)?,
                    boot_status: row.try_get(7)?,
                    last_boot: row.try_get(8)?,
                    last_seen: row.try_get(9)?,
                    registration: Registration::parse(
                        row.try_get::<Option<String>, _>(10)?.as_deref(),
                    ),
                    security_profile: profile(row.try_get(11)?)?,
                    connectors: Vec::new(),
                },
            );
        }
        if out.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT station_id, evse_id, connector_id, status, error_code, updated_at FROM connectors WHERE station_id IN ({list}) ORDER BY station_id, evse_id, connector_id"
        );
        let rows = super::bind_all(sqlx::query(&sql), ids);
        for c in rows.fetch_all(&self.read).await? {
            let station: String = c.try_get(0)?;
            if let Some(s) = out.get_mut(&station) {
                s.connectors.push(ConnectorState {
                    evse_id: c.try_get(1)?,
                    connector_id: c.try_get(2)?,
                    status: c.try_get(3)?,
                    error_code: c.try_get(4)?,
                    updated_at: c.try_get(5)?,
                });
            }
        }
        Ok(out)
    }

    /// Stations whose last boot was accepted.
    pub async fn accepted_stations(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM stations WHERE boot_status = 'Accepted'")
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Every station's identity.
    pub async fn station_ids(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM stations ORDER BY id")
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Stations in natural order of their identities (`LOAD2` before
    /// `LOAD10`); `status` is the last boot's (`Accepted`, `Pending`,
    /// `Rejected`).
    pub async fn stations_page(&self, q: &ListQuery) -> Result<Page<Station>> {
        // stations registered by a boot (the writer) get their key here
        let unkeyed = sqlx::query("SELECT id FROM stations WHERE sort_key IS NULL")
            .fetch_all(&self.read)
            .await?;
        for r in unkeyed {
            let id: String = r.try_get(0)?;
            sqlx::query("UPDATE stations SET sort_key = $1 WHERE id = $2")
                .bind(natural_key(&id))
                .bind(&id)
                .execute(&self.pool)
                .await?;
        }
        let mut conds = Vec::new();
        if let Some(s) = &q.status {
            conds.push(Cond::Cmp("boot_status", "=", s.clone()));
        }
        if let Some(text) = &q.search {
            conds.push(Cond::Like(&["id"], like_pattern(text)));
        }
        let ks = Keyset {
            from: "stations",
            cols: "id",
            keys: &["sort_key", "id"],
            desc: false,
        };
        let (rows, next, total) = self.page(&ks, conds, q).await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in rows {
            if let Some(s) = self.station(&r.try_get::<String, _>(0)?).await? {
                items.push(s);
            }
        }
        Ok(Page { items, next, total })
    }

    /// Stores a variable a station reported (NotifyReport, 2.x) in its
    /// device model: an update, or a new row while the station has fewer
    /// than `max_rows`. Whether it was kept. The one writer of the device
    /// model: a write of the master-pass group forgets what is cached of it
    /// (here, and on the other nodes in cluster mode).
    pub async fn put_device_model(
        &self,
        station: &str,
        component: &str,
        variable: &str,
        body: &Value,
        max_rows: i64,
    ) -> Result<bool> {
        let written: Result<bool> = async {
            // an update, or a new row while the station has fewer than `max_rows`
            let updated = sqlx::query(
                "UPDATE device_model SET body = $4, updated_at = $5 WHERE station_id = $1 AND component = $2 AND variable = $3",
            )
            .bind(station)
            .bind(component)
            .bind(variable)
            .bind(body.to_string())
            .bind(now())
            .execute(&self.pool)
            .await?
            .rows_affected();
            if updated > 0 {
                return Ok(true);
            }
            let inserted = sqlx::query(
                "INSERT INTO device_model (station_id, component, variable, body, updated_at)
                 SELECT $1, $2, $3, $4, $5 WHERE (SELECT COUNT(*) FROM device_model WHERE station_id = $1) < $6
                 ON CONFLICT (station_id, component, variable) DO UPDATE SET body = $4, updated_at = $5",
            )
            .bind(station)
            .bind(component)
            .bind(variable)
            .bind(body.to_string())
            .bind(now())
            .bind(max_rows)
            .execute(&self.pool)
            .await?
            .rows_affected();
            Ok(inserted > 0)
        }
        .await;
        // after the write, whether it failed or not (a failed commit may
        // still have written)
        if (component, variable) == super::tokens::MASTER_PASS_GROUP {
            self.forget_master_pass(Some(station));
            self.cached_changed();
        }
        written
    }

    /// One reported variable of a station's device model.
    pub async fn device_variable(
        &self,
        station: &str,
        component: &str,
        variable: &str,
    ) -> Result<Option<Value>> {
        let row = sqlx::query("SELECT body FROM device_model WHERE station_id = $1 AND component = $2 AND variable = $3")
            .bind(station)
            .bind(component)
            .bind(variable)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| json_col(&r, "device model")).transpose()
    }

    /// A station's device model.
    pub async fn device_model(&self, station: &str) -> Result<Vec<Value>> {
        let rows = sqlx::query(
            "SELECT body FROM device_model WHERE station_id = $1 ORDER BY component, variable",
        )
        .bind(station)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| json_col(r, "device model")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Digit runs compare by value, the rest by bytes; ids that differ only
    /// in leading zeros share a key (the id breaks the tie).
    #[test]
    fn natural_keys() {
        let mut ids = [
            "LOAD10", "LOAD2", "LOAD1", "A9", "A10b", "A10a", "B", "LOAD002",
        ];
        ids.sort_by_key(|id| (natural_key(id), id.to_string()));
        assert_eq!(
            ids,
            ["A9", "A10a", "A10b", "B", "LOAD1", "LOAD002", "LOAD2", "LOAD10"]
        );
        assert_eq!(natural_key("CP-007x12"), "CP-017x0212");
        assert_eq!(natural_key("0"), "010");
    }
}
