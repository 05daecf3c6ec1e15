//! Payments: a [`PaymentProvider`] holds an amount when a session starts,
//! captures the priced amount when its CDR is made, and releases the hold
//! when a session ends unpriced. The built-in provider is a prepaid wallet
//! per driver token ([`Wallets`]); tokens without a wallet are post-paid
//! (no hold). Every operation is idempotent per session, so replayed
//! station messages never charge twice, and each capture leaves a receipt.

use std::str::FromStr;

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::Row;

use evproto_csms_core::money::{Money, MoneyError};

use crate::store::{now, Store, StoreError};

/// What a hold did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// The amount is reserved.
    Held(Decimal),
    /// The token pays afterwards (no wallet): nothing reserved.
    NotApplicable,
    /// Not enough funds: the session must not go on.
    Refused,
}

/// Payment errors.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An amount or currency that is not money (unknown currency, out of range).
    #[error("money: {0}")]
    Money(#[from] MoneyError),
    /// The price is in another currency than the wallet.
    #[error("the price is in {price}, the wallet in {wallet}")]
    CurrencyMismatch {
        /// The wallet's currency.
        wallet: String,
        /// The price's currency.
        price: String,
    },
}

impl From<sqlx::Error> for PaymentError {
    fn from(e: sqlx::Error) -> Self {
        PaymentError::Store(StoreError::Db(e))
    }
}

/// A payment back end.
#[async_trait]
pub trait PaymentProvider: Send + Sync + std::fmt::Debug {
    /// Reserves `amount` for `session_id` from `id_token`'s means (again for
    /// the same session: the first outcome).
    async fn hold(
        &self,
        session_id: &str,
        id_token: &str,
        amount: Decimal,
    ) -> Result<Hold, PaymentError>;
    /// Charges `amount` (in minor units: the session's total rounded once,
    /// see `evproto_csms_core::money`) for the session and returns the
    /// receipt (again: the same receipt). `None` when nothing was held
    /// (post-paid).
    async fn capture(&self, session_id: &str, amount: Money)
        -> Result<Option<Value>, PaymentError>;
    /// Gives a hold back (a session that ended without a price).
    async fn release(&self, session_id: &str) -> Result<(), PaymentError>;
}

/// Prepaid wallets in the CSMS's store.
#[derive(Debug, Clone)]
pub struct Wallets {
    store: Store,
    /// Whether a token has a wallet (wallets are created, never removed):
    /// most sessions' tokens have none, and they need not wait for the
    /// write connection to learn it.
    has_wallet: std::sync::Arc<std::sync::RwLock<std::collections::HashMap<String, bool>>>,
}

fn dec(s: &str) -> Result<Decimal, PaymentError> {
    Decimal::from_str(s).map_err(|_| PaymentError::Store(StoreError::Corrupt("amount")))
}

impl Wallets {
    /// Wallets over `store`.
    pub fn new(store: Store) -> Self {
        Wallets {
            store,
            has_wallet: std::sync::Arc::default(),
        }
    }

    /// Whether `id_token` has a wallet (read once, then remembered).
    async fn wallet_exists(&self, id_token: &str) -> Result<bool, PaymentError> {
        if let Some(&b) = self
            .has_wallet
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id_token)
        {
            return Ok(b);
        }
        let exists = sqlx::query("SELECT 1 FROM wallets WHERE id_token = $1")
            .bind(id_token)
            .fetch_optional(self.store.reader())
            .await?
            .is_some();
        let mut m = self.has_wallet.write().unwrap_or_else(|e| e.into_inner());
        if m.len() >= 100_000 {
            m.retain(|_, b| *b);
        }
        // a wallet created meanwhile wins
        let e = m.entry(id_token.to_owned()).or_insert(exists);
        *e |= exists;
        Ok(*e)
    }

    /// Whether a session has a payment row (none: nothing to capture or
    /// release). Read without the write connection.
    async fn has_payment(&self, session_id: &str) -> Result<bool, PaymentError> {
        Ok(sqlx::query("SELECT 1 FROM payments WHERE session_id = $1")
            .bind(session_id)
            .fetch_optional(self.store.reader())
            .await?
            .is_some())
    }

    /// A read of the rows a balance change depends on, locked until the
    /// transaction ends: two holds on one wallet are serialized, the second
    /// sees the first's balance (PostgreSQL `FOR UPDATE`; SQLite serializes
    /// writers by itself).
    fn locked(&self, select: &str) -> String {
        match self.store.backend() {
            "postgres" => format!("{select} FOR UPDATE"),
            _ => select.to_owned(),
        }
    }

    /// Sets a token's balance (creates the wallet).
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn set_balance(
        &self,
        id_token: &str,
        balance: Decimal,
        currency: &str,
    ) -> Result<(), PaymentError> {
        let balance = Money::parse(balance, currency)?;
        let currency = balance.currency().code();
        let balance = balance.to_decimal();
        sqlx::query(
            "INSERT INTO wallets (id_token, balance, currency, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id_token) DO UPDATE SET balance = excluded.balance, currency = excluded.currency, updated_at = excluded.updated_at",
        )
        .bind(id_token)
        .bind(balance.to_string())
        .bind(currency)
        .bind(now())
        .execute(self.store.pool())
        .await?;
        self.has_wallet
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id_token.to_owned(), true);
        Ok(())
    }

    /// A wallet: `{id_token, balance, currency}`.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn wallet(&self, id_token: &str) -> Result<Option<Value>, PaymentError> {
        let row = sqlx::query("SELECT balance, currency FROM wallets WHERE id_token = $1")
            .bind(id_token)
            .fetch_optional(self.store.pool())
            .await?;
        row.map(|r| -> Result<Value, PaymentError> {
            let currency: String = r.try_get(1)?;
            // in the currency's minor units: "40.00 EUR", never "40" or "40.005"
            let balance = Money::parse(dec(&r.try_get::<String, _>(0)?)?, &currency)?;
            Ok(json!({"id_token": id_token, "balance": balance.to_decimal().to_string(), "currency": currency}))
        })
        .transpose()
    }

    /// A session's payment record.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn payment(&self, session_id: &str) -> Result<Option<Value>, PaymentError> {
        let row = sqlx::query(
            "SELECT id_token, held, status, receipt FROM payments WHERE session_id = $1",
        )
        .bind(session_id)
        .fetch_optional(self.store.pool())
        .await?;
        row.map(|r| -> Result<Value, PaymentError> {
            let receipt: Option<String> = r.try_get(3)?;
            Ok(json!({"session_id": session_id, "id_token": r.try_get::<String, _>(0)?, "held": r.try_get::<String, _>(1)?,
                "status": r.try_get::<String, _>(2)?, "receipt": receipt.and_then(|t| serde_json::from_str::<Value>(&t).ok())}))
        })
        .transpose()
    }
}

#[async_trait]
impl PaymentProvider for Wallets {
    async fn hold(
        &self,
        session_id: &str,
        id_token: &str,
        amount: Decimal,
    ) -> Result<Hold, PaymentError> {
        // no wallet now: none when a first hold of this session was asked for either
        if !self.wallet_exists(id_token).await? {
            return Ok(Hold::NotApplicable);
        }
        let mut tx = self.store.pool().begin().await?;
        if let Some(r) =
            sqlx::query(&self.locked("SELECT held, status FROM payments WHERE session_id = $1"))
                .bind(session_id)
                .fetch_optional(&mut *tx)
                .await?
        {
            let status: String = r.try_get(1)?;
            return Ok(if status == "Refused" {
                Hold::Refused
            } else {
                Hold::Held(dec(&r.try_get::<String, _>(0)?)?)
            });
        }
        let Some(w) =
            sqlx::query(&self.locked("SELECT balance, currency FROM wallets WHERE id_token = $1"))
                .bind(id_token)
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(Hold::NotApplicable);
        };
        let balance = dec(&w.try_get::<String, _>(0)?)?;
        let amount = Money::parse(amount, &w.try_get::<String, _>(1)?)?.to_decimal();
        let (status, held) = if balance >= amount {
            ("Held", amount)
        } else {
            ("Refused", Decimal::ZERO)
        };
        sqlx::query("INSERT INTO payments (session_id, id_token, held, status, updated_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(session_id)
            .bind(id_token)
            .bind(held.to_string())
            .bind(status)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        if status == "Held" {
            sqlx::query("UPDATE wallets SET balance = $1, updated_at = $2 WHERE id_token = $3")
                .bind((balance - amount).to_string())
                .bind(now())
                .bind(id_token)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(if status == "Held" {
            Hold::Held(amount)
        } else {
            Hold::Refused
        })
    }

    async fn capture(
        &self,
        session_id: &str,
        amount: Money,
    ) -> Result<Option<Value>, PaymentError> {
        let currency = amount.currency();
        let money = |d: Decimal| Money::try_round(d, currency).map(|m| m.to_decimal().to_string());
        let amount = amount.to_decimal();
        if !self.has_payment(session_id).await? {
            return Ok(None);
        }
        let mut tx = self.store.pool().begin().await?;
        let Some(p) =
            sqlx::query(&self.locked(
                "SELECT id_token, held, status, receipt FROM payments WHERE session_id = $1",
            ))
            .bind(session_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let status: String = p.try_get(2)?;
        if status == "Captured" {
            let receipt: Option<String> = p.try_get(3)?;
            return Ok(receipt.and_then(|t| serde_json::from_str(&t).ok()));
        }
        if status != "Held" {
            return Ok(None);
        }
        let token: String = p.try_get(0)?;
        let held = dec(&p.try_get::<String, _>(1)?)?;
        let balance = match sqlx::query(
            &self.locked("SELECT balance, currency FROM wallets WHERE id_token = $1"),
        )
        .bind(token.clone())
        .fetch_optional(&mut *tx)
        .await?
        {
            Some(w) => {
                let wallet: String = w.try_get(1)?;
                if !wallet.eq_ignore_ascii_case(currency.code()) {
                    // never convert silently: the hold stays until an operator decides
                    return Err(PaymentError::CurrencyMismatch {
                        wallet,
                        price: currency.code().to_owned(),
                    });
                }
                dec(&w.try_get::<String, _>(0)?)?
            }
            None => Decimal::ZERO,
        };
        // the hold comes back, the price goes out; a price above the hold takes what the wallet has left
        let available = balance + held;
        let charged = amount.min(available).max(Decimal::ZERO);
        let unpaid = amount - charged;
        let after = available - charged;
        let receipt = json!({"session_id": session_id, "id_token": token, "currency": currency.code(),
            "held": money(held)?, "charged": money(charged)?,
            "unpaid": money(unpaid)?, "balance_after": money(after)?, "at": now()});
        sqlx::query("UPDATE wallets SET balance = $1, updated_at = $2 WHERE id_token = $3")
            .bind(money(after)?)
            .bind(now())
            .bind(token)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE payments SET status = 'Captured', receipt = $1, updated_at = $2 WHERE session_id = $3")
            .bind(receipt.to_string())
            .bind(now())
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(receipt))
    }

    async fn release(&self, session_id: &str) -> Result<(), PaymentError> {
        if !self.has_payment(session_id).await? {
            return Ok(());
        }
        let mut tx = self.store.pool().begin().await?;
        let Some(p) = sqlx::query(
            &self.locked("SELECT id_token, held, status FROM payments WHERE session_id = $1"),
        )
        .bind(session_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(());
        };
        if p.try_get::<String, _>(2)? != "Held" {
            return Ok(());
        }
        let token: String = p.try_get(0)?;
        let held = dec(&p.try_get::<String, _>(1)?)?;
        if let Some(w) =
            sqlx::query(&self.locked("SELECT balance FROM wallets WHERE id_token = $1"))
                .bind(token.clone())
                .fetch_optional(&mut *tx)
                .await?
        {
            let balance = dec(&w.try_get::<String, _>(0)?)?;
            sqlx::query("UPDATE wallets SET balance = $1 WHERE id_token = $2")
                .bind((balance + held).to_string())
                .bind(token)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE payments SET status = 'Released', updated_at = $1 WHERE session_id = $2",
        )
        .bind(now())
        .bind(session_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn wallets(name: &str) -> Wallets {
        let dir = std::env::temp_dir().join(format!("csms-pay-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Wallets::new(
            Store::open(&format!("sqlite://{}?mode=rwc", dir.join("p.db").display()))
                .await
                .unwrap(),
        )
    }

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[tokio::test]
    async fn hold_capture_release_idempotent() {
        let w = wallets("flow").await;
        w.set_balance("TOK", d("50"), "EUR").await.unwrap();
        assert_eq!(
            w.hold("S1", "TOK", d("30")).await.unwrap(),
            Hold::Held(d("30"))
        );
        assert_eq!(
            w.hold("S1", "TOK", d("30")).await.unwrap(),
            Hold::Held(d("30")),
            "replay: same hold"
        );
        assert_eq!(w.wallet("TOK").await.unwrap().unwrap()["balance"], "20.00");
        let eur = |a: &str| Money::parse(d(a), "EUR").unwrap();
        // a second session cannot hold 30 more
        assert_eq!(w.hold("S2", "TOK", d("30")).await.unwrap(), Hold::Refused);
        assert_eq!(w.hold("S2", "TOK", d("30")).await.unwrap(), Hold::Refused);
        let r = w.capture("S1", eur("12.34")).await.unwrap().unwrap();
        assert_eq!(
            (
                r["charged"].as_str(),
                r["balance_after"].as_str(),
                r["unpaid"].as_str()
            ),
            (Some("12.34"), Some("37.66"), Some("0.00"))
        );
        assert_eq!(
            w.capture("S1", eur("99")).await.unwrap().unwrap(),
            r,
            "replay: same receipt"
        );
        assert_eq!(w.wallet("TOK").await.unwrap().unwrap()["balance"], "37.66");
        // release gives a hold back, once
        assert_eq!(
            w.hold("S3", "TOK", d("10")).await.unwrap(),
            Hold::Held(d("10"))
        );
        w.release("S3").await.unwrap();
        w.release("S3").await.unwrap();
        assert_eq!(w.wallet("TOK").await.unwrap().unwrap()["balance"], "37.66");
        // post-paid token: no hold, no receipt
        assert_eq!(
            w.hold("S4", "OTHER", d("10")).await.unwrap(),
            Hold::NotApplicable
        );
        assert!(w.capture("S4", eur("5")).await.unwrap().is_none());
        // a price above hold and balance: what there is, the rest unpaid
        w.set_balance("POOR", d("5"), "EUR").await.unwrap();
        assert_eq!(
            w.hold("S5", "POOR", d("5")).await.unwrap(),
            Hold::Held(d("5"))
        );
        let r = w.capture("S5", eur("7.5")).await.unwrap().unwrap();
        assert_eq!(
            (
                r["charged"].as_str(),
                r["unpaid"].as_str(),
                r["balance_after"].as_str()
            ),
            (Some("5.00"), Some("2.50"), Some("0.00"))
        );
        // money is minor units: a balance or hold with fractions of a cent is rounded,
        // half away from zero; a currency that is not ISO 4217 is refused
        w.set_balance("CENTS", d("10.005"), "eur").await.unwrap();
        assert_eq!(
            w.wallet("CENTS").await.unwrap().unwrap()["balance"],
            "10.01"
        );
        assert_eq!(
            w.hold("S6", "CENTS", d("1.004")).await.unwrap(),
            Hold::Held(d("1.00"))
        );
        let r = w
            .capture("S6", Money::round(d("1.00468"), eur("0").currency()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r["charged"].as_str(), Some("1.00"));
        assert!(matches!(
            w.set_balance("X", d("1"), "EURO").await,
            Err(PaymentError::Money(_))
        ));
        // a price in another currency than the wallet is not captured
        w.set_balance("USD-CARD", d("50"), "USD").await.unwrap();
        w.hold("S7", "USD-CARD", d("10")).await.unwrap();
        assert!(matches!(
            w.capture("S7", eur("5")).await,
            Err(PaymentError::CurrencyMismatch { .. })
        ));
        assert_eq!(
            w.wallet("USD-CARD").await.unwrap().unwrap()["balance"],
            "40.00"
        );
    }

    /// Concurrent holds on one wallet on PostgreSQL: exactly as many succeed
    /// as the balance covers (without row locks every one read the same
    /// balance and succeeded).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_holds_on_postgres_never_overdraw() {
        use sqlx::Connection;
        let admin = std::env::var("CSMS_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("csms_pay_{}", std::process::id());
        let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        let w = Wallets::new(Store::open(&url).await.unwrap());
        w.set_balance("TOK", d("50"), "EUR").await.unwrap();
        let holds = (0..10).map(|i| {
            let w = w.clone();
            tokio::spawn(async move { w.hold(&format!("S{i}"), "TOK", d("10")).await })
        });
        let mut held = 0;
        for h in holds {
            if let Ok(Hold::Held(_)) = h.await.unwrap() {
                held += 1;
            }
        }
        let balance = w.wallet("TOK").await.unwrap().unwrap()["balance"].clone();
        drop(w);
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut c)
            .await
            .unwrap();
        assert_eq!((held, balance.as_str()), (5, Some("0.00")));
    }
}
