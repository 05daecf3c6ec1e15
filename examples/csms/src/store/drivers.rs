//! The drivers' tables (migration 15): accounts, their bearer logins (as
//! SHA-256 hashes: a leaked table opens no account), the id tokens they own,
//! and what the app API reads of sessions on their behalf. Every read that
//! returns a session goes through a driver's own tokens, so a driver never
//! sees another's.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::Row;

use super::paging::{like_pattern, time_conds, Cond, Keyset, ListQuery, Page};
use super::{now, ts, Result, Session, Store, StoreError, TokenRecord};

/// How a driver pays for sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentChoice {
    /// The prepaid wallet of the token (the default; post-paid without one).
    Wallet,
    /// The saved card, through the card gateway.
    Card,
}

impl PaymentChoice {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentChoice::Wallet => "wallet",
            PaymentChoice::Card => "card",
        }
    }

    fn parse(s: &str) -> Result<PaymentChoice> {
        match s {
            "wallet" => Ok(PaymentChoice::Wallet),
            "card" => Ok(PaymentChoice::Card),
            _ => Err(StoreError::Corrupt("drivers.payment")),
        }
    }
}

/// A driver's account as the app shows it to its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Driver {
    /// `drv_...`.
    pub id: String,
    /// Lower-cased e-mail address (the sign-in name).
    pub email: String,
    /// How sessions are paid.
    pub payment: PaymentChoice,
    /// The saved card (`visa ...4242`), when there is one.
    pub card: Option<String>,
    /// When the account was made.
    pub created_at: String,
    /// The card gateway's customer.
    #[serde(skip)]
    pub card_customer: Option<String>,
    /// The saved payment method at the gateway.
    #[serde(skip)]
    pub card_payment_method: Option<String>,
}

/// An id token a driver owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwnedToken {
    /// The token (1.6 idTag, 2.x idToken).
    pub id_token: String,
    /// `rfid` or `app`.
    pub kind: String,
    /// The driver's name for it.
    pub label: Option<String>,
    /// Since when the driver owns it: sessions before are not theirs.
    pub created_at: String,
}

/// What the card provider needs to hold on a token's card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardOwner {
    /// The driver.
    pub driver_id: String,
    /// The gateway's customer.
    pub customer: String,
    /// The saved payment method.
    pub payment_method: String,
}

/// The condition that session `s` is of the owner of token row `t`: the
/// CSMS received its first message after the token was claimed (both times
/// written by the CSMS, in one format).
pub(super) const OWNED_SINCE: &str =
    "(SELECT MIN(m.received_at) FROM tx_messages m WHERE m.session_id = s.id) >= t.created_at";

const DRIVER_COLS: &str =
    "id, email, payment, card_customer, card_payment_method, card_label, created_at";

fn driver_from_row(r: &sqlx::any::AnyRow) -> Result<Driver> {
    Ok(Driver {
        id: r.try_get(0)?,
        email: r.try_get(1)?,
        payment: PaymentChoice::parse(&r.try_get::<String, _>(2)?)?,
        card_customer: r.try_get(3)?,
        card_payment_method: r.try_get(4)?,
        card: r.try_get(5)?,
        created_at: r.try_get(6)?,
    })
}

/// The drivers' side of the store.
#[derive(Debug, Clone)]
pub struct DriverStore {
    store: Store,
}

impl DriverStore {
    /// Over `store`.
    pub fn new(store: Store) -> DriverStore {
        DriverStore { store }
    }

    /// The store underneath.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates an account; `None` when the e-mail address has one already.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn create_driver(&self, email: &str, password_hash: &str) -> Result<Option<Driver>> {
        let id = format!("drv_{}", crate::store::random_hex(12));
        let created = sqlx::query(
            "INSERT INTO drivers (id, email, password_hash, payment, created_at) VALUES ($1, $2, $3, 'wallet', $4) ON CONFLICT (email) DO NOTHING",
        )
        .bind(&id)
        .bind(email)
        .bind(password_hash)
        .bind(now())
        .execute(self.store.pool())
        .await?
        .rows_affected()
            == 1;
        if !created {
            return Ok(None);
        }
        self.driver(&id).await
    }

    /// A driver by id.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn driver(&self, id: &str) -> Result<Option<Driver>> {
        sqlx::query(&format!("SELECT {DRIVER_COLS} FROM drivers WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.store.pool())
            .await?
            .as_ref()
            .map(driver_from_row)
            .transpose()
    }

    /// A driver's id and password hash by e-mail address.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn credentials(&self, email: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query("SELECT id, password_hash FROM drivers WHERE email = $1")
            .bind(email)
            .fetch_optional(self.store.pool())
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Records a login (its token's hash) valid until `expires_at`, and
    /// drops the driver's expired ones.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn add_login(
        &self,
        token_hash: &str,
        driver_id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.store.pool().begin().await?;
        sqlx::query("DELETE FROM driver_logins WHERE driver_id = $1 AND expires_at < $2")
            .bind(driver_id)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO driver_logins (token_hash, driver_id, expires_at, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(driver_id)
        .bind(ts(expires_at))
        .bind(now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The driver a login token's hash is for, while it is valid.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn login(&self, token_hash: &str) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT driver_id FROM driver_logins WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now())
        .fetch_optional(self.store.reader())
        .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }

    /// Ends a login.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn drop_login(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM driver_logins WHERE token_hash = $1")
            .bind(token_hash)
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// Gives a driver `id_token`; false when another driver (or this one)
    /// owns it already. A token the registry does not know is registered
    /// as `Accepted`; a known one keeps its status (a blocked card stays
    /// blocked).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn claim_token(
        &self,
        driver_id: &str,
        id_token: &str,
        kind: &str,
        token_type: &str,
        label: Option<&str>,
    ) -> Result<bool> {
        let claimed = sqlx::query(
            "INSERT INTO driver_tokens (id_token, driver_id, kind, label, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id_token) DO NOTHING",
        )
        .bind(id_token)
        .bind(driver_id)
        .bind(kind)
        .bind(label)
        .bind(now())
        .execute(self.store.pool())
        .await?
        .rows_affected()
            == 1;
        if claimed && self.store.token(id_token).await?.is_none() {
            self.store
                .upsert_token(&TokenRecord {
                    id_token: id_token.to_owned(),
                    token_type: token_type.to_owned(),
                    status: "Accepted".into(),
                    group_id: None,
                    expires_at: None,
                    allow_concurrent: false,
                    language: None,
                    created_at: now(),
                })
                .await?;
        }
        Ok(claimed)
    }

    /// The tokens a driver owns, oldest first.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn tokens_of(&self, driver_id: &str) -> Result<Vec<OwnedToken>> {
        let rows = sqlx::query(
            "SELECT id_token, kind, label, created_at FROM driver_tokens WHERE driver_id = $1 ORDER BY created_at, id_token",
        )
        .bind(driver_id)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OwnedToken {
                    id_token: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    label: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// The driver's sessions, newest first, at most `limit`: those started
    /// with a token the driver owned when the CSMS received the session's
    /// first message (the CSMS's clock, not the station's), so claiming a
    /// card shows none of its earlier sessions.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn sessions_of(&self, driver_id: &str, limit: i64) -> Result<Vec<Session>> {
        let rows = sqlx::query(&format!(
            "SELECT s.id FROM sessions s JOIN driver_tokens t ON s.id_token = t.id_token \
             WHERE t.driver_id = $1 AND {OWNED_SINCE} ORDER BY COALESCE(s.started_at, '') DESC, s.id DESC LIMIT $2"
        ))
        .bind(driver_id)
        .bind(limit.clamp(1, 1000))
        .fetch_all(self.store.reader())
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let id: String = r.try_get(0)?;
            if let Some(s) = self.store.session(&id).await? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// A session if it is the driver's (see [`DriverStore::sessions_of`]);
    /// `None` otherwise: another's session and no session look the same.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn session_of(&self, driver_id: &str, session_id: &str) -> Result<Option<Session>> {
        let mine = sqlx::query(&format!(
            "SELECT 1 FROM sessions s JOIN driver_tokens t ON s.id_token = t.id_token \
             WHERE s.id = $1 AND t.driver_id = $2 AND {OWNED_SINCE}"
        ))
        .bind(session_id)
        .bind(driver_id)
        .fetch_optional(self.store.reader())
        .await?
        .is_some();
        if !mine {
            return Ok(None);
        }
        self.store.session(session_id).await
    }

    /// The latest reading of a measurand in a session: (time, value, unit).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn latest_reading(
        &self,
        session_id: &str,
        measurand: &str,
    ) -> Result<Option<(String, Decimal, Option<String>)>> {
        let row = sqlx::query(
            "SELECT ts, value, unit FROM meter_values WHERE session_id = $1 AND measurand = $2 ORDER BY ts DESC LIMIT 1",
        )
        .bind(session_id)
        .bind(measurand)
        .fetch_optional(self.store.reader())
        .await?;
        row.map(|r| {
            let v: String = r.try_get(1)?;
            Ok((
                r.try_get(0)?,
                v.parse::<Decimal>()
                    .map_err(|_| StoreError::Corrupt("meter_values.value"))?,
                r.try_get(2)?,
            ))
        })
        .transpose()
    }

    /// Sets how a driver pays.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn set_payment(&self, driver_id: &str, choice: PaymentChoice) -> Result<()> {
        sqlx::query("UPDATE drivers SET payment = $1 WHERE id = $2")
            .bind(choice.as_str())
            .bind(driver_id)
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// Saves a driver's card (the gateway's customer and payment method)
    /// and makes it how the driver pays.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn save_card(
        &self,
        driver_id: &str,
        customer: &str,
        payment_method: &str,
        label: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE drivers SET card_customer = $1, card_payment_method = $2, card_label = $3, payment = 'card' WHERE id = $4",
        )
        .bind(customer)
        .bind(payment_method)
        .bind(label)
        .bind(driver_id)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// The card a token's sessions are paid with: its owner chose to pay
    /// by card and has one saved. `None`: the wallet (or post-paid).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn card_of_token(&self, id_token: &str) -> Result<Option<CardOwner>> {
        let row = sqlx::query(
            "SELECT d.id, d.card_customer, d.card_payment_method FROM driver_tokens t JOIN drivers d ON d.id = t.driver_id \
             WHERE t.id_token = $1 AND d.payment = 'card' AND d.card_customer IS NOT NULL AND d.card_payment_method IS NOT NULL",
        )
        .bind(id_token)
        .fetch_optional(self.store.pool())
        .await?;
        row.map(|r| {
            Ok(CardOwner {
                driver_id: r.try_get(0)?,
                customer: r.try_get(1)?,
                payment_method: r.try_get(2)?,
            })
        })
        .transpose()
    }
}

impl DriverStore {
    /// Drivers by e-mail address, one page (the operator's list): `search`
    /// in the address or the id, `since`/`until` on when the account was
    /// made.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn drivers_page(&self, q: &ListQuery) -> Result<Page<Driver>> {
        let mut conds = Vec::new();
        if let Some(text) = &q.search {
            conds.push(Cond::Like(&["email", "id"], like_pattern(text)));
        }
        time_conds(&mut conds, "created_at", q);
        let ks = Keyset {
            from: "drivers",
            cols: DRIVER_COLS,
            keys: &["email"],
            desc: false,
        };
        let (rows, next, total) = self.store.page(&ks, conds, q).await?;
        let items = rows.iter().map(driver_from_row).collect::<Result<_>>()?;
        Ok(Page { items, next, total })
    }
}
