//! Fleets, their invoices and the e-mail queue (migration 21).
//!
//! A fleet owns drivers (app accounts, one fleet each, as `driver` or
//! `manager`), cards and vehicles (each with an optional id token). A
//! session is the fleet's when it was started with one of those tokens and
//! the CSMS received its first message after the token became the fleet's
//! (the same rule as a driver's sessions, `store::drivers`): the fleet pays
//! it by invoice.
//!
//! Invoice numbers are gap-free per series and year: the year's counter is
//! taken (`UPDATE ... RETURNING`, a row lock on PostgreSQL, the one writer
//! on SQLite) in the same transaction that stores the document and marks
//! its sessions, so a failed issue gives its number back.

use serde::Serialize;
use sqlx::Row;

use super::paging::{like_pattern, Cond, Keyset, ListQuery, Page};
use super::{now, Result, Store, StoreError};
use crate::invoices::{DocumentKind, Invoice};

/// A fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fleet {
    /// `flt_...`.
    pub id: String,
    /// Its name, printed on invoices.
    pub name: String,
    /// Where its invoices are sent.
    pub email: String,
    /// When it was made.
    pub created_at: String,
}

/// A driver of a fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetMember {
    /// The driver's account.
    pub driver_id: String,
    /// Its e-mail address.
    pub email: String,
    /// `driver` or `manager`.
    pub role: String,
    /// Since when.
    pub created_at: String,
}

/// A card of a fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetCard {
    /// The token (1.6 idTag, 2.x idToken).
    pub id_token: String,
    /// The fleet's name for it.
    pub label: Option<String>,
    /// Since when.
    pub created_at: String,
}

/// A vehicle of a fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vehicle {
    /// `veh_...`.
    pub id: String,
    /// Licence plate.
    pub plate: String,
    /// The fleet's name for it.
    pub label: Option<String>,
    /// The token it charges with (Autocharge, a contract), if any.
    pub id_token: Option<String>,
    /// Since when.
    pub created_at: String,
}

/// A kept invoice or credit note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentRow {
    /// Its number.
    pub number: String,
    /// `invoice` or `credit_note`.
    pub kind: String,
    /// The fleet.
    pub fleet_id: String,
    /// `YYYY-MM`.
    pub period: String,
    /// The invoice a credit note corrects.
    pub credits: Option<String>,
    /// ISO 4217.
    pub currency: String,
    /// Its total, minor units.
    pub total_minor: i64,
    /// When issued.
    pub issued_at: String,
    /// When it was e-mailed.
    pub sent_at: Option<String>,
}

/// An e-mail in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailRow {
    /// Its id: what it is about (`invoice:INV-2026-000001`,
    /// `receipt:{session}`), so queuing it twice sends it once.
    pub id: String,
    /// `invoice`, `receipt`, `session_started`, ...
    pub kind: String,
    /// The address.
    pub recipient: String,
    /// Subject line.
    pub subject: String,
    /// Plain text.
    pub body: String,
    /// An invoice or credit note attached as PDF (its number).
    pub document: Option<String>,
    /// `Pending` or `Sent`.
    pub status: String,
}

/// The outbox kind of an e-mail (subject: the mail's id).
pub const MAIL: &str = "mail";

/// A fleet's tokens and since when each is the fleet's: its cards, its
/// vehicles' tokens, its drivers' tokens (since the later of the token's
/// claim and the driver's joining).
const FLEET_TOKENS: &str = "SELECT id_token, created_at AS since FROM fleet_tokens WHERE fleet_id = $1 \
     UNION ALL SELECT id_token, created_at AS since FROM fleet_vehicles WHERE fleet_id = $1 AND id_token IS NOT NULL \
     UNION ALL SELECT t.id_token, CASE WHEN t.created_at > m.created_at THEN t.created_at ELSE m.created_at END AS since \
     FROM driver_tokens t JOIN fleet_members m ON m.driver_id = t.driver_id WHERE m.fleet_id = $1";

fn fleet_from_row(r: &sqlx::any::AnyRow) -> Result<Fleet> {
    Ok(Fleet {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        email: r.try_get(2)?,
        created_at: r.try_get(3)?,
    })
}

fn document_from_row(r: &sqlx::any::AnyRow) -> Result<DocumentRow> {
    Ok(DocumentRow {
        number: r.try_get(0)?,
        kind: r.try_get(1)?,
        fleet_id: r.try_get(2)?,
        period: r.try_get(3)?,
        credits: r.try_get(4)?,
        currency: r.try_get(5)?,
        total_minor: r.try_get(6)?,
        issued_at: r.try_get(7)?,
        sent_at: r.try_get(8)?,
    })
}

const DOCUMENT_COLS: &str =
    "number, kind, fleet_id, period, credits, currency, total_minor, issued_at, sent_at";

impl Store {
    /// Makes a fleet.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn create_fleet(&self, name: &str, email: &str) -> Result<Fleet> {
        let f = Fleet {
            id: format!("flt_{}", super::random_hex(8)),
            name: name.to_owned(),
            email: email.to_owned(),
            created_at: now(),
        };
        sqlx::query("INSERT INTO fleets (id, name, email, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&f.id)
            .bind(&f.name)
            .bind(&f.email)
            .bind(&f.created_at)
            .execute(self.pool())
            .await?;
        Ok(f)
    }

    /// A fleet.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn fleet(&self, id: &str) -> Result<Option<Fleet>> {
        let r = sqlx::query("SELECT id, name, email, created_at FROM fleets WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        r.as_ref().map(fleet_from_row).transpose()
    }

    /// The fleets, by name.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn fleets(&self) -> Result<Vec<Fleet>> {
        let rows = sqlx::query(
            "SELECT id, name, email, created_at FROM fleets ORDER BY name, id LIMIT 1000",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(fleet_from_row).collect()
    }

    /// Puts a driver in a fleet as `role` (a driver is in one fleet at a
    /// time: false when another fleet has them). Again: the role changes.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn put_fleet_member(
        &self,
        fleet_id: &str,
        driver_id: &str,
        role: &str,
    ) -> Result<bool> {
        let n = sqlx::query(
            "INSERT INTO fleet_members (driver_id, fleet_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (driver_id) DO UPDATE SET role = excluded.role WHERE fleet_members.fleet_id = excluded.fleet_id",
        )
        .bind(driver_id)
        .bind(fleet_id)
        .bind(role)
        .bind(now())
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Takes a driver out of a fleet; false when not in it.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn drop_fleet_member(&self, fleet_id: &str, driver_id: &str) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM fleet_members WHERE fleet_id = $1 AND driver_id = $2")
                .bind(fleet_id)
                .bind(driver_id)
                .execute(self.pool())
                .await?
                .rows_affected()
                == 1,
        )
    }

    /// A fleet's drivers.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn fleet_members(&self, fleet_id: &str) -> Result<Vec<FleetMember>> {
        let rows = sqlx::query(
            "SELECT m.driver_id, d.email, m.role, m.created_at FROM fleet_members m JOIN drivers d ON d.id = m.driver_id \
             WHERE m.fleet_id = $1 ORDER BY d.email",
        )
        .bind(fleet_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FleetMember {
                    driver_id: r.try_get(0)?,
                    email: r.try_get(1)?,
                    role: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// The fleet a driver is in and their role there.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn fleet_of_driver(&self, driver_id: &str) -> Result<Option<(String, String)>> {
        let r = sqlx::query("SELECT fleet_id, role FROM fleet_members WHERE driver_id = $1")
            .bind(driver_id)
            .fetch_optional(self.pool())
            .await?;
        r.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Gives a fleet a card; false when a fleet, a vehicle or a driver
    /// has the token already. A token the registry does not know is
    /// registered as `Accepted` (type `ISO14443`).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn add_fleet_card(
        &self,
        fleet_id: &str,
        id_token: &str,
        label: Option<&str>,
    ) -> Result<bool> {
        if self.token_taken(id_token).await? {
            return Ok(false);
        }
        let added = sqlx::query(
            "INSERT INTO fleet_tokens (id_token, fleet_id, label, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id_token) DO NOTHING",
        )
        .bind(id_token)
        .bind(fleet_id)
        .bind(label)
        .bind(now())
        .execute(self.pool())
        .await?
        .rows_affected()
            == 1;
        if added {
            self.register_token(id_token).await?;
        }
        Ok(added)
    }

    /// Whether a fleet card, a vehicle or a driver has `id_token`.
    async fn token_taken(&self, id_token: &str) -> Result<bool> {
        Ok(sqlx::query(
            "SELECT 1 FROM fleet_tokens WHERE id_token = $1 UNION ALL SELECT 1 FROM fleet_vehicles WHERE id_token = $1 \
             UNION ALL SELECT 1 FROM driver_tokens WHERE id_token = $1",
        )
        .bind(id_token)
        .fetch_optional(self.pool())
        .await?
        .is_some())
    }

    async fn register_token(&self, id_token: &str) -> Result<()> {
        if self.token(id_token).await?.is_none() {
            self.upsert_token(&super::TokenRecord {
                id_token: id_token.to_owned(),
                token_type: "ISO14443".into(),
                status: "Accepted".into(),
                group_id: None,
                expires_at: None,
                allow_concurrent: false,
                language: None,
                created_at: now(),
            })
            .await?;
        }
        Ok(())
    }

    /// A fleet's cards.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn fleet_cards(&self, fleet_id: &str) -> Result<Vec<FleetCard>> {
        let rows = sqlx::query(
            "SELECT id_token, label, created_at FROM fleet_tokens WHERE fleet_id = $1 ORDER BY created_at, id_token",
        )
        .bind(fleet_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FleetCard {
                    id_token: r.try_get(0)?,
                    label: r.try_get(1)?,
                    created_at: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Gives a fleet a vehicle; `None` when its token is someone's already.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn add_vehicle(
        &self,
        fleet_id: &str,
        plate: &str,
        label: Option<&str>,
        id_token: Option<&str>,
    ) -> Result<Option<Vehicle>> {
        if let Some(t) = id_token {
            if self.token_taken(t).await? {
                return Ok(None);
            }
        }
        let v = Vehicle {
            id: format!("veh_{}", super::random_hex(8)),
            plate: plate.to_owned(),
            label: label.map(str::to_owned),
            id_token: id_token.map(str::to_owned),
            created_at: now(),
        };
        sqlx::query(
            "INSERT INTO fleet_vehicles (id, fleet_id, plate, label, id_token, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&v.id)
        .bind(fleet_id)
        .bind(&v.plate)
        .bind(&v.label)
        .bind(&v.id_token)
        .bind(&v.created_at)
        .execute(self.pool())
        .await?;
        if let Some(t) = id_token {
            self.register_token(t).await?;
        }
        Ok(Some(v))
    }

    /// A fleet's vehicles.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn vehicles(&self, fleet_id: &str) -> Result<Vec<Vehicle>> {
        let rows = sqlx::query(
            "SELECT id, plate, label, id_token, created_at FROM fleet_vehicles WHERE fleet_id = $1 ORDER BY plate, id",
        )
        .bind(fleet_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Vehicle {
                    id: r.try_get(0)?,
                    plate: r.try_get(1)?,
                    label: r.try_get(2)?,
                    id_token: r.try_get(3)?,
                    created_at: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Whether sessions of `id_token` are charged to a fleet now (its
    /// card, a vehicle's or a member driver's token).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn token_is_fleets(&self, id_token: &str) -> Result<bool> {
        Ok(sqlx::query(
            "SELECT 1 FROM fleet_tokens WHERE id_token = $1 UNION ALL SELECT 1 FROM fleet_vehicles WHERE id_token = $1 \
             UNION ALL SELECT 1 FROM driver_tokens t JOIN fleet_members m ON m.driver_id = t.driver_id WHERE t.id_token = $1",
        )
        .bind(id_token)
        .fetch_optional(self.reader())
        .await?
        .is_some())
    }

    /// A fleet's priced sessions not yet on an invoice whose CDR was made
    /// at or after `cdrs_since`: (session, station, CDR body).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn fleet_sessions_to_invoice(
        &self,
        fleet_id: &str,
        cdrs_since: &str,
    ) -> Result<Vec<(String, String, serde_json::Value)>> {
        let rows = sqlx::query(&format!(
            "SELECT s.id, s.station_id, c.body FROM sessions s JOIN ({FLEET_TOKENS}) ft ON ft.id_token = s.id_token \
             JOIN cdrs c ON c.session_id = s.id \
             WHERE c.created_at >= $2 AND (SELECT MIN(m.received_at) FROM tx_messages m WHERE m.session_id = s.id) >= ft.since \
             AND NOT EXISTS (SELECT 1 FROM invoiced_sessions i WHERE i.session_id = s.id AND i.kind = 'invoice') \
             ORDER BY s.id"
        ))
        .bind(fleet_id)
        .bind(cdrs_since)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let body: String = r.try_get(2)?;
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    serde_json::from_str(&body).map_err(|_| StoreError::Corrupt("cdrs.body"))?,
                ))
            })
            .collect()
    }

    /// Issues a document: takes the next number of its series in the year
    /// of issue, lets `make` build the document with it (and the e-mail
    /// that carries it), keeps it, marks its sessions (each session once
    /// per kind) and queues the e-mail, all in one transaction. `Ok(None)`
    /// when a session is on a document of the kind already (or the fleet's
    /// month is invoiced): nothing is kept and no number is used up.
    ///
    /// # Errors
    ///
    /// The database failed; `Ok(Err(reason))` when `make` refused.
    pub async fn issue_document(
        &self,
        kind: DocumentKind,
        year: i32,
        make: impl FnOnce(String) -> std::result::Result<(Invoice, Option<MailRow>), String>,
    ) -> Result<std::result::Result<Option<Invoice>, String>> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO invoice_numbers (series, year, last_seq) VALUES ($1, $2, 0) ON CONFLICT (series, year) DO NOTHING",
        )
        .bind(kind.series())
        .bind(i64::from(year))
        .execute(&mut *tx)
        .await?;
        let seq: i64 = sqlx::query(
            "UPDATE invoice_numbers SET last_seq = last_seq + 1 WHERE series = $1 AND year = $2 RETURNING last_seq",
        )
        .bind(kind.series())
        .bind(i64::from(year))
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let number = crate::invoices::number(kind, year, seq);
        let (doc, mail) = match make(number.clone()) {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let h = &doc.header;
        let body = serde_json::to_string(&doc).map_err(|_| StoreError::Corrupt("invoice"))?;
        let stored = sqlx::query(
            "INSERT INTO invoices (number, kind, fleet_id, period, credits, currency, total_minor, issued_at, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(&number)
        .bind(kind.as_str())
        .bind(&h.fleet_id)
        .bind(&h.period)
        .bind(&h.credits)
        .bind(&h.currency)
        .bind(doc.total_minor)
        .bind(&h.issued_at)
        .bind(body)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !stored {
            return Ok(Ok(None));
        }
        let mut sessions: Vec<&str> = doc.lines.iter().map(|l| l.session_id.as_str()).collect();
        sessions.dedup();
        for s in sessions {
            let marked = sqlx::query(
                "INSERT INTO invoiced_sessions (session_id, kind, number) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(s)
            .bind(kind.as_str())
            .bind(&number)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !marked {
                return Ok(Ok(None));
            }
        }
        if let Some(m) = mail {
            queue_mail_in(&mut tx, &m).await?;
        }
        tx.commit().await?;
        Ok(Ok(Some(doc)))
    }

    /// Which of `fleets`' invoices of `months` (`YYYY-MM`) are issued: the
    /// (fleet, month) pairs that have one.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn invoiced_months(
        &self,
        months: &[String],
    ) -> Result<std::collections::HashSet<(String, String)>> {
        let mut out = std::collections::HashSet::new();
        for m in months {
            let rows = sqlx::query(
                "SELECT fleet_id, period FROM invoices WHERE kind = 'invoice' AND period = $1",
            )
            .bind(m)
            .fetch_all(self.pool())
            .await?;
            for r in rows {
                out.insert((r.try_get(0)?, r.try_get(1)?));
            }
        }
        Ok(out)
    }

    /// A kept document.
    ///
    /// # Errors
    ///
    /// The database failed, or the kept body is no document.
    pub async fn document(&self, number: &str) -> Result<Option<(DocumentRow, Invoice)>> {
        let r = sqlx::query(&format!(
            "SELECT {DOCUMENT_COLS}, body FROM invoices WHERE number = $1"
        ))
        .bind(number)
        .fetch_optional(self.pool())
        .await?;
        r.map(|r| {
            let body: String = r.try_get(9)?;
            Ok((
                document_from_row(&r)?,
                serde_json::from_str(&body).map_err(|_| StoreError::Corrupt("invoices.body"))?,
            ))
        })
        .transpose()
    }

    /// A fleet's documents, newest first.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn documents(&self, fleet_id: &str) -> Result<Vec<DocumentRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {DOCUMENT_COLS} FROM invoices WHERE fleet_id = $1 ORDER BY issued_at DESC, number DESC LIMIT 1000"
        ))
        .bind(fleet_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(document_from_row).collect()
    }

    /// The e-mail address of the driver whose session it is (see
    /// `store::drivers`: the token's owner when the session began), and
    /// the session's station.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn driver_email_of_session(
        &self,
        session_id: &str,
    ) -> Result<Option<(String, String)>> {
        let r = sqlx::query(&format!(
            "SELECT d.email, s.station_id FROM sessions s JOIN driver_tokens t ON s.id_token = t.id_token JOIN drivers d ON d.id = t.driver_id \
             WHERE s.id = $1 AND {}",
            super::drivers::OWNED_SINCE
        ))
        .bind(session_id)
        .fetch_optional(self.reader())
        .await?;
        r.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Queues an e-mail and its outbox entry (once per id: false when it
    /// was queued before).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn queue_mail(&self, m: &MailRow) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let new = queue_mail_in(&mut tx, m).await?;
        tx.commit().await?;
        Ok(new)
    }

    /// A queued e-mail.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn mail(&self, id: &str) -> Result<Option<MailRow>> {
        let r = sqlx::query(
            "SELECT id, kind, recipient, subject, body, document, status FROM mails WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        r.map(|r| {
            Ok(MailRow {
                id: r.try_get(0)?,
                kind: r.try_get(1)?,
                recipient: r.try_get(2)?,
                subject: r.try_get(3)?,
                body: r.try_get(4)?,
                document: r.try_get(5)?,
                status: r.try_get(6)?,
            })
        })
        .transpose()
    }

    /// Marks an e-mail sent (and its document, when it carried one).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn mail_sent(&self, id: &str, document: Option<&str>) -> Result<()> {
        let at = now();
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE mails SET status = 'Sent', sent_at = $1 WHERE id = $2")
            .bind(&at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if let Some(d) = document {
            sqlx::query("UPDATE invoices SET sent_at = $1 WHERE number = $2")
                .bind(&at)
                .bind(d)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The queued e-mails of a kind, newest first: (id, recipient, status).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn mails_of_kind(&self, kind: &str) -> Result<Vec<(String, String, String)>> {
        let rows = sqlx::query(
            "SELECT id, recipient, status FROM mails WHERE kind = $1 ORDER BY created_at DESC, id LIMIT 1000",
        )
        .bind(kind)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }
}

async fn queue_mail_in(tx: &mut sqlx::Transaction<'_, sqlx::Any>, m: &MailRow) -> Result<bool> {
    let at = now();
    let new = sqlx::query(
        "INSERT INTO mails (id, kind, recipient, subject, body, document, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'Pending', $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&m.id)
    .bind(&m.kind)
    .bind(&m.recipient)
    .bind(&m.subject)
    .bind(&m.body)
    .bind(&m.document)
    .bind(&at)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if new {
        sqlx::query(
            "INSERT INTO outbox (id, kind, subject, created_at, attempts) VALUES ($1, $2, $3, $4, 0) ON CONFLICT (id) DO NOTHING",
        )
        .bind(format!("{MAIL}:{}", m.id))
        .bind(MAIL)
        .bind(&m.id)
        .bind(&at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(new)
}

impl Store {
    /// Every fleet's invoices and credit notes, newest first, one page (the
    /// operator's list): `status` is the kind (`invoice`, `credit_note`),
    /// `search` in the number or the fleet's id.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn documents_page(&self, q: &ListQuery) -> Result<Page<DocumentRow>> {
        let mut conds = Vec::new();
        if let Some(kind) = &q.status {
            conds.push(Cond::Cmp("kind", "=", kind.clone()));
        }
        if let Some(text) = &q.search {
            conds.push(Cond::Like(&["number", "fleet_id"], like_pattern(text)));
        }
        let ks = Keyset {
            from: "invoices",
            cols: DOCUMENT_COLS,
            keys: &["issued_at", "number"],
            desc: true,
        };
        let (rows, next, total) = self.page(&ks, conds, q).await?;
        let items = rows.iter().map(document_from_row).collect::<Result<_>>()?;
        Ok(Page { items, next, total })
    }
}
