//! Payments: a [`PaymentProvider`] holds an amount when a session starts,
//! captures the priced amount when its CDR is made, and releases the hold
//! when a session ends unpriced. The built-in provider is a prepaid wallet
//! per driver token ([`Wallets`]); tokens without a wallet are post-paid
//! (no hold). Every operation is idempotent per session, so replayed
//! station messages never charge twice, and each capture leaves a receipt.
//!
//! A driver who saved a card and chose to pay by card (app API) pays by
//! card instead: [`Cards`] holds on the card through the gateway
//! (`crate::stripe`) when the session starts, captures the final price from
//! the `bill` outbox entry written with the session's end (so a crash
//! retries it, and the retry reads the intent's state first: captured once),
//! cancels the hold when nothing is owed, and refunds through `card_refund`
//! outbox entries. The provider is chosen per token: the owner's choice.
//! A fleet's token (its card, a vehicle's, a member driver's) holds
//! nothing: the fleet pays by invoice (`crate::fleets`).

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
    /// The card gateway failed or refused.
    #[error(transparent)]
    Gateway(#[from] crate::stripe::StripeError),
    /// A refund the payment cannot give.
    #[error("refund: {0}")]
    Refund(String),
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
    async fn capture(
        &self,
        session_id: &str,
        amount: Money,
    ) -> Result<Option<Receipt>, PaymentError>;
    /// Gives a hold back (a session that ended without a price).
    async fn release(&self, session_id: &str) -> Result<(), PaymentError>;
}

/// The payment providers: prepaid wallets in the CSMS's store (the
/// default), and cards through the gateway for the tokens whose owner pays
/// by card ([`Cards`], when a gateway is configured).
#[derive(Debug, Clone)]
pub struct Wallets {
    store: Store,
    cards: Option<Cards>,
    /// Whether a token has a wallet (wallets are created, never removed):
    /// most sessions' tokens have none, and they need not wait for the
    /// write connection to learn it.
    has_wallet: std::sync::Arc<std::sync::RwLock<std::collections::HashMap<String, bool>>>,
}

fn dec(s: &str) -> Result<Decimal, PaymentError> {
    Decimal::from_str(s).map_err(|_| PaymentError::Store(StoreError::Corrupt("amount")))
}

impl Wallets {
    /// Wallets over `store`, and cards through the gateway configured in
    /// the environment ([`crate::stripe::StripeConfig::from_env`]).
    pub fn new(store: Store) -> Self {
        let cards = crate::stripe::StripeConfig::from_env();
        Self::with_cards(store, cards)
    }

    /// Wallets over `store`, and cards through `cards` when given.
    pub fn with_cards(store: Store, cards: Option<crate::stripe::StripeConfig>) -> Self {
        let cards = cards.and_then(|c| match crate::stripe::Stripe::new(c) {
            Ok(s) => Some(Cards::new(store.clone(), s)),
            Err(e) => {
                tracing::error!("card payments off: {e}");
                None
            }
        });
        Wallets {
            store,
            cards,
            has_wallet: std::sync::Arc::default(),
        }
    }

    /// The card side, when a gateway is configured.
    pub fn cards(&self) -> Option<&Cards> {
        self.cards.as_ref()
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

    /// A wallet.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn wallet(&self, id_token: &str) -> Result<Option<Wallet>, PaymentError> {
        let row = sqlx::query("SELECT balance, currency FROM wallets WHERE id_token = $1")
            .bind(id_token)
            .fetch_optional(self.store.pool())
            .await?;
        row.map(|r| -> Result<Wallet, PaymentError> {
            let currency: String = r.try_get(1)?;
            // in the currency's minor units: "40.00 EUR", never "40" or "40.005"
            let balance = Money::parse(dec(&r.try_get::<String, _>(0)?)?, &currency)?;
            Ok(Wallet {
                id_token: id_token.to_owned(),
                balance: balance.to_decimal().to_string(),
                currency,
            })
        })
        .transpose()
    }

    /// A session's payment record.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn payment(&self, session_id: &str) -> Result<Option<WalletPayment>, PaymentError> {
        let row = sqlx::query(
            "SELECT id_token, held, status, receipt FROM payments WHERE session_id = $1",
        )
        .bind(session_id)
        .fetch_optional(self.store.pool())
        .await?;
        row.map(|r| -> Result<WalletPayment, PaymentError> {
            let receipt = r
                .try_get::<Option<String>, _>(3)?
                .map(|t| serde_json::from_str::<WalletReceipt>(&t))
                .transpose()
                .map_err(|_| StoreError::Corrupt("payments.receipt"))?;
            Ok(WalletPayment {
                session_id: session_id.to_owned(),
                id_token: r.try_get(0)?,
                held: r.try_get(1)?,
                status: r.try_get(2)?,
                receipt,
            })
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
        // a fleet's token: the fleet pays by its monthly invoice (crate::fleets)
        if self.store.token_is_fleets(id_token).await? {
            return Ok(Hold::NotApplicable);
        }
        if let Some(cards) = &self.cards {
            if let Some(owner) = cards.drivers.card_of_token(id_token).await? {
                return cards.hold(session_id, id_token, &owner, amount).await;
            }
        }
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
    ) -> Result<Option<Receipt>, PaymentError> {
        if let Some(cards) = &self.cards {
            if let Some(receipt) = cards.capture(session_id, amount).await? {
                return Ok(receipt.map(Receipt::Card));
            }
        }
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
            return receipt
                .map(|t| serde_json::from_str::<WalletReceipt>(&t).map(Receipt::Wallet))
                .transpose()
                .map_err(|_| PaymentError::Store(StoreError::Corrupt("payments.receipt")));
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
        let receipt = WalletReceipt {
            session_id: session_id.to_owned(),
            id_token: token.clone(),
            currency: currency.code().to_owned(),
            held: money(held)?,
            charged: money(charged)?,
            unpaid: money(unpaid)?,
            balance_after: money(after)?,
            at: now(),
        };
        let text =
            serde_json::to_string(&receipt).map_err(|_| StoreError::Corrupt("payments.receipt"))?;
        sqlx::query("UPDATE wallets SET balance = $1, updated_at = $2 WHERE id_token = $3")
            .bind(money(after)?)
            .bind(now())
            .bind(token)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE payments SET status = 'Captured', receipt = $1, updated_at = $2 WHERE session_id = $3")
            .bind(text)
            .bind(now())
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(Receipt::Wallet(receipt)))
    }

    async fn release(&self, session_id: &str) -> Result<(), PaymentError> {
        if let Some(cards) = &self.cards {
            if cards.release(session_id).await? {
                return Ok(());
            }
        }
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

/// The outbox kind of a card refund (subject: the refund's id).
pub const CARD_REFUND: &str = "card_refund";
/// The outbox kind of a capture retried after the gateway could not be
/// reached from the session's `bill` entry (subject: the session).
pub const CARD_CAPTURE: &str = "card_capture";
/// As [`CARD_CAPTURE`], for the release of a hold.
pub const CARD_RELEASE: &str = "card_release";

/// Whether a gateway error may pass by itself (unreachable, 429, 5xx):
/// the step is retried from the outbox.
fn transient(e: &PaymentError) -> bool {
    matches!(
        e,
        PaymentError::Gateway(crate::stripe::StripeError::Transport(_))
    ) || matches!(e, PaymentError::Gateway(crate::stripe::StripeError::Refused { status, .. }) if *status == 429 || *status >= 500)
}

/// A prepaid wallet (`GET /api/wallets/{id_token}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Wallet {
    /// Whose.
    pub id_token: String,
    /// What is left, in the currency's minor units (`"40.00"`).
    pub balance: String,
    /// ISO 4217.
    pub currency: String,
}

/// A session paid from a wallet (`GET /api/sessions/{id}/payment`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WalletPayment {
    /// The session.
    pub session_id: String,
    /// The token it was started with.
    pub id_token: String,
    /// Held at the start.
    pub held: String,
    /// `Held`, `Captured` or `Released`.
    pub status: String,
    /// Once captured.
    pub receipt: Option<WalletReceipt>,
}

/// A wallet payment's receipt (what `capture` returns for a wallet
/// session); amounts in the currency's minor units.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WalletReceipt {
    /// The session.
    pub session_id: String,
    /// The token it was started with.
    pub id_token: String,
    /// ISO 4217.
    pub currency: String,
    /// Held at the start.
    pub held: String,
    /// Taken from the wallet.
    pub charged: String,
    /// Owed beyond what the wallet had (not charged).
    pub unpaid: String,
    /// The wallet's balance afterwards.
    pub balance_after: String,
    /// When it was captured.
    pub at: String,
}

/// What a captured session's payment says: a wallet's or a card's
/// receipt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Receipt {
    /// Paid from a wallet.
    Wallet(WalletReceipt),
    /// Paid by card.
    Card(CardReceipt),
}

impl Receipt {
    /// `wallet` or `card`.
    pub fn provider(&self) -> &str {
        match self {
            Receipt::Wallet(_) => "wallet",
            Receipt::Card(c) => &c.provider,
        }
    }
    /// What was charged.
    pub fn charged(&self) -> &str {
        match self {
            Receipt::Wallet(r) => &r.charged,
            Receipt::Card(r) => &r.charged,
        }
    }
    /// What is still owed.
    pub fn unpaid(&self) -> &str {
        match self {
            Receipt::Wallet(r) => &r.unpaid,
            Receipt::Card(r) => &r.unpaid,
        }
    }
    /// ISO 4217.
    pub fn currency(&self) -> &str {
        match self {
            Receipt::Wallet(r) => &r.currency,
            Receipt::Card(r) => &r.currency,
        }
    }
}

/// A card payment's receipt (what `capture` returns for a card session).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CardReceipt {
    /// The session.
    pub session_id: String,
    /// The token it was started with.
    pub id_token: String,
    /// `card`.
    pub provider: String,
    /// ISO 4217.
    pub currency: String,
    /// Held at the start.
    pub held: String,
    /// Charged to the card.
    pub charged: String,
    /// Owed beyond what the hold covered (not charged).
    pub unpaid: String,
    /// The gateway's payment intent.
    pub intent: Option<String>,
    /// When it was captured.
    pub at: String,
}

/// A refund of a card payment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CardRefund {
    /// `{session}:refund{n}`: its key at the gateway too.
    pub id: String,
    /// Minor units.
    pub amount_minor: i64,
    /// `Pending` (in the outbox), `Succeeded` or `Failed`.
    pub status: String,
    /// The gateway's refund (`re_...`), once made.
    pub gateway_id: Option<String>,
    /// When it was asked for.
    pub created_at: String,
}

/// A card payment as the app and the console show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CardPayment {
    /// The session.
    pub session_id: String,
    /// Who pays.
    pub driver_id: String,
    /// `Holding`, `Held`, `Refused`, `Capturing`, `Captured`, `Released`
    /// or `Expired`.
    pub status: String,
    /// The gateway's last word on it (from its webhook events).
    pub gateway_status: Option<String>,
    /// ISO 4217.
    pub currency: String,
    /// Held, minor units.
    pub held_minor: i64,
    /// Captured, minor units.
    pub captured_minor: i64,
    /// Refunded, minor units.
    pub refunded_minor: i64,
    /// The receipt, once captured.
    pub receipt: Option<CardReceipt>,
    /// The gateway's payment intent.
    #[serde(skip)]
    pub intent: Option<String>,
    /// The token.
    #[serde(skip)]
    pub id_token: String,
}

const CARD_COLS: &str = "session_id, driver_id, id_token, intent, status, gateway_status, currency, held_minor, captured_minor, refunded_minor, receipt";

fn card_from_row(r: &sqlx::any::AnyRow) -> Result<CardPayment, PaymentError> {
    let receipt: Option<String> = r.try_get(10)?;
    Ok(CardPayment {
        session_id: r.try_get(0)?,
        driver_id: r.try_get(1)?,
        id_token: r.try_get(2)?,
        intent: r.try_get(3)?,
        status: r.try_get(4)?,
        gateway_status: r.try_get(5)?,
        currency: r.try_get(6)?,
        held_minor: r.try_get(7)?,
        captured_minor: r.try_get(8)?,
        refunded_minor: r.try_get(9)?,
        receipt: receipt
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|_| PaymentError::Store(StoreError::Corrupt("card_payments.receipt")))?,
    })
}

/// Card payments through the gateway, one row per session in
/// `card_payments`. Each step is idempotent: its gateway call carries a key
/// made from the session and the step, and a step that finds the row in a
/// state a crash may have left (`Holding`, `Capturing`) asks the gateway
/// what happened before it acts again.
#[derive(Debug, Clone)]
pub struct Cards {
    store: Store,
    /// The drivers' tables (who pays by card).
    pub drivers: crate::store_drivers::DriverStore,
    stripe: crate::stripe::Stripe,
}

impl Cards {
    /// Cards over `store` through `stripe`.
    pub fn new(store: Store, stripe: crate::stripe::Stripe) -> Cards {
        Cards {
            drivers: crate::store_drivers::DriverStore::new(store.clone()),
            store,
            stripe,
        }
    }

    /// The gateway client.
    pub fn gateway(&self) -> &crate::stripe::Stripe {
        &self.stripe
    }

    /// A session's card payment.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn payment(&self, session_id: &str) -> Result<Option<CardPayment>, PaymentError> {
        sqlx::query(&format!(
            "SELECT {CARD_COLS} FROM card_payments WHERE session_id = $1"
        ))
        .bind(session_id)
        .fetch_optional(self.store.pool())
        .await?
        .as_ref()
        .map(card_from_row)
        .transpose()
    }

    async fn set_status(
        &self,
        session_id: &str,
        status: &str,
        intent: Option<&str>,
        held: Option<i64>,
    ) -> Result<(), PaymentError> {
        sqlx::query(
            "UPDATE card_payments SET status = $1, intent = COALESCE($2, intent), held_minor = COALESCE($3, held_minor), updated_at = $4 WHERE session_id = $5",
        )
        .bind(status)
        .bind(intent)
        .bind(held)
        .bind(now())
        .bind(session_id)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// The currency holds are made in: the `default` tariff's (EUR without one).
    async fn currency(&self) -> Result<evproto_csms_core::money::Currency, PaymentError> {
        let code = self
            .store
            .tariff("default")
            .await?
            .and_then(|t| t.get("currency").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| "EUR".into());
        Ok(Money::parse(Decimal::ZERO, &code)?.currency())
    }

    /// Holds `amount` on the owner's card for a session (again: the first
    /// outcome).
    ///
    /// # Errors
    ///
    /// The store failed, or the gateway could not be reached (the row stays
    /// `Holding`: capture and release ask the gateway later).
    pub async fn hold(
        &self,
        session_id: &str,
        id_token: &str,
        owner: &crate::store_drivers::CardOwner,
        amount: Decimal,
    ) -> Result<Hold, PaymentError> {
        let currency = self.currency().await?;
        let minor = Money::try_round(amount, currency)?.minor();
        sqlx::query(
            "INSERT INTO card_payments (session_id, driver_id, id_token, status, currency, held_minor, captured_minor, refunded_minor, updated_at) \
             VALUES ($1, $2, $3, 'Holding', $4, $5, 0, 0, $6) ON CONFLICT (session_id) DO NOTHING",
        )
        .bind(session_id)
        .bind(&owner.driver_id)
        .bind(id_token)
        .bind(currency.code())
        .bind(minor)
        .bind(now())
        .execute(self.store.pool())
        .await?;
        let Some(p) = self.payment(session_id).await? else {
            return Err(PaymentError::Store(StoreError::Corrupt("card_payments")));
        };
        let held = |m: i64| Money::from_minor(m, currency).to_decimal();
        match p.status.as_str() {
            "Holding" => {}
            "Refused" => return Ok(Hold::Refused),
            _ => return Ok(Hold::Held(held(p.held_minor))),
        }
        Ok(match self.hold_at_gateway(&p, owner).await? {
            Some((_, amount)) => Hold::Held(held(amount)),
            None => Hold::Refused,
        })
    }

    /// Asks the gateway for a `Holding` row's hold (its key: the session, so
    /// asking again gets the first intent back) and records the outcome:
    /// the intent and the amount held, `None` when it was refused.
    async fn hold_at_gateway(
        &self,
        p: &CardPayment,
        owner: &crate::store_drivers::CardOwner,
    ) -> Result<Option<(String, i64)>, PaymentError> {
        let session_id = p.session_id.as_str();
        let answer = self
            .stripe
            .hold(
                session_id,
                &owner.customer,
                &owner.payment_method,
                p.held_minor,
                &p.currency,
            )
            .await;
        let refused_intent = match answer {
            Ok(pi) if pi.status == "requires_capture" => {
                self.set_status(session_id, "Held", Some(&pi.id), Some(pi.amount))
                    .await?;
                return Ok(Some((pi.id, pi.amount)));
            }
            Ok(pi) => {
                tracing::warn!(session = session_id, status = %pi.status, "card hold not authorized");
                Some(pi.id)
            }
            Err(crate::stripe::StripeError::Refused {
                status, message, ..
            }) if (400..500).contains(&status) && status != 429 => {
                tracing::warn!(session = session_id, "card hold refused: {message}");
                None
            }
            Err(e) => return Err(e.into()),
        };
        self.set_status(session_id, "Refused", refused_intent.as_deref(), Some(0))
            .await?;
        Ok(None)
    }

    /// A `Holding` row's intent, asked of the gateway again (the hold's
    /// key gives the first call's intent back).
    async fn settle_holding(&self, p: &CardPayment) -> Result<Option<String>, PaymentError> {
        let Some(owner) = self.drivers.card_of_token(&p.id_token).await? else {
            self.set_status(&p.session_id, "Released", None, None)
                .await?;
            return Ok(None);
        };
        Ok(self
            .hold_at_gateway(p, &owner)
            .await?
            .map(|(intent, _)| intent))
    }

    /// Captures a session's price on its card: the receipt (again: the
    /// same receipt); `Ok(None)` when the session is not paid by card.
    /// A price above the hold captures the hold (the rest is `unpaid`); a
    /// price of zero cancels the hold.
    ///
    /// # Errors
    ///
    /// The store or the gateway failed (the `bill` entry is retried), or
    /// the price is in another currency than the hold.
    pub async fn capture(
        &self,
        session_id: &str,
        amount: Money,
    ) -> Result<Option<Option<CardReceipt>>, PaymentError> {
        match self.capture_now(session_id, amount).await {
            Err(e) if transient(&e) => {
                tracing::warn!(session = session_id, "capture retried from the outbox: {e}");
                self.retry_later(CARD_CAPTURE, session_id).await?;
                Ok(Some(None))
            }
            other => other,
        }
    }

    /// Writes an outbox entry that runs a card step again later (once per
    /// step and session).
    async fn retry_later(&self, kind: &str, session_id: &str) -> Result<(), PaymentError> {
        sqlx::query(
            "INSERT INTO outbox (id, kind, subject, created_at, attempts) VALUES ($1, $2, $3, $4, 0) ON CONFLICT (id) DO NOTHING",
        )
        .bind(format!("{kind}:{session_id}"))
        .bind(kind)
        .bind(session_id)
        .bind(now())
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// Runs a card outbox entry ([`CARD_CAPTURE`], [`CARD_RELEASE`],
    /// [`CARD_REFUND`]) and marks it.
    pub async fn run_outbox(
        &self,
        outbox_id: &str,
        kind: &str,
        subject: &str,
        retry_base: std::time::Duration,
    ) {
        let result = match kind {
            CARD_REFUND => self.refund_once(subject).await,
            CARD_CAPTURE => self.capture_priced(subject).await,
            CARD_RELEASE => self.release_now(subject).await.map(|_| ()),
            _ => return,
        };
        let marked = match result {
            Ok(()) => self.store.outbox_done(outbox_id).await,
            // refused for good (a refund above what is left, an unknown intent)
            Err(PaymentError::Gateway(crate::stripe::StripeError::Refused {
                status,
                message,
                ..
            })) if kind == CARD_REFUND && (400..500).contains(&status) && status != 429 => {
                tracing::warn!(refund = subject, "refund refused: {message}");
                match sqlx::query(
                    "UPDATE card_refunds SET status = 'Failed' WHERE id = $1 AND status = 'Pending'",
                )
                .bind(subject)
                .execute(self.store.pool())
                .await
                {
                    Ok(_) => self.store.outbox_give_up(outbox_id, &message).await,
                    Err(e) => Err(StoreError::Db(e)),
                }
            }
            Err(e) => self
                .store
                .outbox_failed(outbox_id, &e.to_string(), retry_base)
                .await
                .map(|_| ()),
        };
        if let Err(e) = marked {
            tracing::warn!(outbox_id, "card outbox: {e}");
        }
    }

    /// Captures a session's priced total (its CDR's, incl. VAT, once
    /// rounded); nothing without a CDR.
    async fn capture_priced(&self, session_id: &str) -> Result<(), PaymentError> {
        let Some(cdr) = self.store.cdr(session_id).await? else {
            return Ok(());
        };
        let cdr = crate::billing::decode_cdr(cdr)
            .map_err(|_| PaymentError::Store(StoreError::Corrupt("cdrs.body")))?;
        let amount = Money::parse(
            cdr.total_cost.incl_vat.unwrap_or(cdr.total_cost.excl_vat),
            cdr.currency.as_str(),
        )?;
        self.capture_now(session_id, amount).await.map(|_| ())
    }

    async fn capture_now(
        &self,
        session_id: &str,
        amount: Money,
    ) -> Result<Option<Option<CardReceipt>>, PaymentError> {
        let Some(mut p) = self.payment(session_id).await? else {
            return Ok(None);
        };
        match p.status.as_str() {
            "Captured" => return Ok(Some(p.receipt.clone())),
            "Refused" | "Released" | "Expired" => return Ok(Some(None)),
            "Holding" => match self.settle_holding(&p).await? {
                Some(intent) => {
                    p.intent = Some(intent);
                }
                None => return Ok(Some(None)),
            },
            _ => {}
        }
        if !p.currency.eq_ignore_ascii_case(amount.currency().code()) {
            return Err(PaymentError::CurrencyMismatch {
                wallet: p.currency.clone(),
                price: amount.currency().code().to_owned(),
            });
        }
        let Some(intent) = p.intent.clone() else {
            return Err(PaymentError::Store(StoreError::Corrupt(
                "card_payments.intent",
            )));
        };
        let currency = amount.currency();
        let held = self
            .payment(session_id)
            .await?
            .map_or(p.held_minor, |q| q.held_minor);
        let owed = amount.minor().max(0);
        let mut charge = owed.min(held);
        self.set_status(session_id, "Capturing", None, None).await?;
        // what the gateway did before a crash, if anything
        let pi = self.stripe.payment_intent(&intent).await?;
        match pi.status.as_str() {
            "succeeded" => charge = pi.amount_received.unwrap_or(charge),
            "canceled" => charge = 0,
            "requires_capture" if charge == 0 => {
                self.stripe.cancel(session_id, &intent).await?;
            }
            "requires_capture" => {
                let done = self.stripe.capture(session_id, &intent, charge).await?;
                charge = done.amount_received.unwrap_or(charge);
            }
            other => {
                return Err(PaymentError::Refund(format!(
                    "intent {intent} is {other}, neither held nor captured"
                )))
            }
        }
        let d = |m: i64| Money::from_minor(m, currency).to_decimal().to_string();
        let receipt = CardReceipt {
            session_id: session_id.to_owned(),
            id_token: p.id_token.clone(),
            provider: "card".into(),
            currency: currency.code().to_owned(),
            held: d(held),
            charged: d(charge),
            unpaid: d(owed - charge),
            intent: Some(intent),
            at: now(),
        };
        let status = if pi.status == "canceled" || (charge == 0 && owed == 0) {
            if pi.status == "canceled" && owed > 0 {
                "Expired"
            } else {
                "Released"
            }
        } else {
            "Captured"
        };
        let text = serde_json::to_string(&receipt)
            .map_err(|_| PaymentError::Store(StoreError::Corrupt("receipt")))?;
        sqlx::query(
            "UPDATE card_payments SET status = $1, captured_minor = $2, receipt = $3, updated_at = $4 WHERE session_id = $5 AND status = 'Capturing'",
        )
        .bind(status)
        .bind(charge)
        .bind(text)
        .bind(now())
        .bind(session_id)
        .execute(self.store.pool())
        .await?;
        let stored = self.payment(session_id).await?;
        Ok(Some(stored.and_then(|s| s.receipt)))
    }

    /// Gives a session's hold back (it ended without a price); false when
    /// the session is not paid by card.
    ///
    /// # Errors
    ///
    /// The store or the gateway failed (retried from the outbox).
    pub async fn release(&self, session_id: &str) -> Result<bool, PaymentError> {
        match self.release_now(session_id).await {
            Err(e) if transient(&e) => {
                tracing::warn!(session = session_id, "release retried from the outbox: {e}");
                self.retry_later(CARD_RELEASE, session_id).await?;
                Ok(true)
            }
            other => other,
        }
    }

    async fn release_now(&self, session_id: &str) -> Result<bool, PaymentError> {
        let Some(p) = self.payment(session_id).await? else {
            return Ok(false);
        };
        let intent = match p.status.as_str() {
            "Held" | "Capturing" => p.intent.clone(),
            "Holding" => self.settle_holding(&p).await?,
            _ => return Ok(true),
        };
        if let Some(intent) = intent {
            let pi = self.stripe.payment_intent(&intent).await?;
            if pi.status == "requires_capture" {
                self.stripe.cancel(session_id, &intent).await?;
            }
        }
        self.set_status(session_id, "Released", None, None).await?;
        Ok(true)
    }

    /// Asks for a refund of `amount` of a captured card payment: a
    /// `card_refunds` row and its `card_refund` outbox entry, written in
    /// one transaction, then run (a failure stays in the outbox). Returns
    /// the refund's id.
    ///
    /// # Errors
    ///
    /// Not a captured card payment, another currency, or more than is left
    /// to refund; the store failed.
    pub async fn refund(&self, session_id: &str, amount: Money) -> Result<String, PaymentError> {
        let Some(p) = self.payment(session_id).await? else {
            return Err(PaymentError::Refund(
                "no card payment for this session".into(),
            ));
        };
        if p.status != "Captured" {
            return Err(PaymentError::Refund(format!(
                "the payment is {}, not captured",
                p.status
            )));
        }
        if !p.currency.eq_ignore_ascii_case(amount.currency().code()) || amount.minor() <= 0 {
            return Err(PaymentError::Refund(format!(
                "a positive amount in {} is needed",
                p.currency
            )));
        }
        let mut tx = self.store.pool().begin().await?;
        let row = sqlx::query(
            "SELECT COUNT(*), CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM card_refunds WHERE session_id = $1 AND status <> 'Failed'",
        )
        .bind(session_id)
        .fetch_one(&mut *tx)
        .await?;
        let (count, asked): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        if asked + amount.minor() > p.captured_minor {
            return Err(PaymentError::Refund(format!(
                "{} minor units were captured, {asked} refunded or asked for already",
                p.captured_minor
            )));
        }
        let id = format!("{session_id}:refund{}", count + 1);
        sqlx::query(
            "INSERT INTO card_refunds (id, session_id, amount_minor, status, created_at) VALUES ($1, $2, $3, 'Pending', $4)",
        )
        .bind(&id)
        .bind(session_id)
        .bind(amount.minor())
        .bind(now())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO outbox (id, kind, subject, created_at, attempts) VALUES ($1, $2, $3, $4, 0)",
        )
        .bind(format!("{CARD_REFUND}:{id}"))
        .bind(CARD_REFUND)
        .bind(&id)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Runs a refund (the subject of a [`CARD_REFUND`] entry); its key at
    /// the gateway is its id, so a retry refunds once.
    async fn refund_once(&self, refund_id: &str) -> Result<(), PaymentError> {
        let Some(r) = sqlx::query(
            "SELECT r.session_id, r.amount_minor, r.status, p.intent FROM card_refunds r JOIN card_payments p ON p.session_id = r.session_id WHERE r.id = $1",
        )
        .bind(refund_id)
        .fetch_optional(self.store.pool())
        .await?
        else {
            return Ok(());
        };
        let status: String = r.try_get(2)?;
        if status != "Pending" {
            return Ok(());
        }
        let session: String = r.try_get(0)?;
        let amount: i64 = r.try_get(1)?;
        let intent: Option<String> = r.try_get(3)?;
        let intent = intent.ok_or(PaymentError::Store(StoreError::Corrupt(
            "card_payments.intent",
        )))?;
        let done = self.stripe.refund(refund_id, &intent, amount).await?;
        let mut tx = self.store.pool().begin().await?;
        let first = sqlx::query(
            "UPDATE card_refunds SET status = 'Succeeded', gateway_id = $1 WHERE id = $2 AND status = 'Pending'",
        )
        .bind(&done.id)
        .bind(refund_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if first {
            sqlx::query(
                "UPDATE card_payments SET refunded_minor = refunded_minor + $1, updated_at = $2 WHERE session_id = $3",
            )
            .bind(amount)
            .bind(now())
            .bind(&session)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Applies a verified gateway event once (its id is kept in the same
    /// transaction as its effect): the intent's gateway status; a failed
    /// payment raises an alert. Returns false for an event seen before.
    ///
    /// # Errors
    ///
    /// The store failed (the gateway delivers it again).
    pub async fn apply_event(&self, event: &crate::stripe::Event) -> Result<bool, PaymentError> {
        let object = &event.data.object;
        let intent = match object.object.as_str() {
            "payment_intent" => Some(object.id.clone()),
            _ => object.payment_intent.clone(),
        };
        let mut tx = self.store.pool().begin().await?;
        let new = sqlx::query(
            "INSERT INTO gateway_events (id, kind, subject, received_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&event.id)
        .bind(&event.kind)
        .bind(intent.as_deref())
        .bind(now())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !new {
            return Ok(false);
        }
        let status = match event.kind.as_str() {
            "payment_intent.succeeded" => Some("succeeded"),
            "payment_intent.canceled" => Some("canceled"),
            "payment_intent.payment_failed" => Some("payment_failed"),
            "payment_intent.amount_capturable_updated" => Some("requires_capture"),
            "charge.refunded" => Some("refunded"),
            _ => None,
        };
        if let (Some(status), Some(intent)) = (status, intent.as_deref()) {
            let session: Option<String> = sqlx::query(
                "UPDATE card_payments SET gateway_status = $1, updated_at = $2 WHERE intent = $3 RETURNING session_id",
            )
            .bind(status)
            .bind(now())
            .bind(intent)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
            if let (Some(session), "payment_failed") = (session, status) {
                let detail = json!({"session": session, "reason": "the card payment failed", "event": event.id});
                sqlx::query(
                    "INSERT INTO alerts (id, station_id, kind, detail, raised_at) VALUES ($1, '', 'payment', $2, $3)",
                )
                .bind(crate::store::random_hex(12))
                .bind(detail.to_string())
                .bind(now())
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// A session's refunds, oldest first.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn refunds(&self, session_id: &str) -> Result<Vec<CardRefund>, PaymentError> {
        let rows = sqlx::query(
            "SELECT id, amount_minor, status, gateway_id, created_at FROM card_refunds WHERE session_id = $1 ORDER BY created_at, id",
        )
        .bind(session_id)
        .fetch_all(self.store.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CardRefund {
                    id: r.try_get(0)?,
                    amount_minor: r.try_get(1)?,
                    status: r.try_get(2)?,
                    gateway_id: r.try_get(3)?,
                    created_at: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// The session a payment intent holds for.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn session_of_intent(&self, intent: &str) -> Result<Option<String>, PaymentError> {
        Ok(
            sqlx::query("SELECT session_id FROM card_payments WHERE intent = $1")
                .bind(intent)
                .fetch_optional(self.store.pool())
                .await?
                .map(|r| r.try_get(0))
                .transpose()?,
        )
    }

    /// How many gateway events were applied (`gateway_events`).
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn events_applied(&self, id: &str) -> Result<i64, PaymentError> {
        Ok(
            sqlx::query("SELECT COUNT(*) FROM gateway_events WHERE id = $1")
                .bind(id)
                .fetch_one(self.store.pool())
                .await?
                .try_get(0)?,
        )
    }
}

// ---- the operator API: refunds ----

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Json;

use crate::api::{ApiError, ApiResult};
use crate::App;

/// The operator API's refund routes (merged into `api::admin_router`).
pub(crate) fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new().route(
        "/api/sessions/{id}/refunds",
        get(list_refunds).post(post_refund),
    )
}

fn cards_of(app: &App) -> Result<&Cards, ApiError> {
    app.payments.cards().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "card payments are not configured: only card payments are refunded",
        )
    })
}

/// `GET /api/sessions/{id}/refunds`: the refunds of a session's card payment.
async fn list_refunds(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let cards = cards_of(&app)?;
    if cards.payment(&id).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no card payment for session {id}"),
        ));
    }
    Ok(Json(cards.refunds(&id).await?).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundBody {
    /// In the payment's currency's minor units (cents), at least 1.
    amount_minor: i64,
}

/// `POST /api/sessions/{id}/refunds` `{amount_minor}`: a partial (or
/// full) refund of a captured card payment through the gateway: written
/// with its outbox entry, then run (a gateway that is down leaves it
/// `Pending`, retried). 201 with the refund; 404 without a card payment;
/// 409 not captured, or more than is left.
async fn post_refund(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> ApiResult {
    let b: RefundBody = crate::api::body(&bytes)?;
    let cards = cards_of(&app)?;
    let Some(p) = cards.payment(&id).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no card payment for session {id}"),
        ));
    };
    if b.amount_minor < 1 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "amount_minor: 1 or more",
        ));
    }
    let currency = evproto_csms_core::money::Currency::from_code(&p.currency).ok_or(
        PaymentError::Store(StoreError::Corrupt("card_payments.currency")),
    )?;
    let refund = cards
        .refund(&id, Money::from_minor(b.amount_minor, currency))
        .await
        .map_err(|e| match e {
            PaymentError::Refund(r) => ApiError::new(StatusCode::CONFLICT, r),
            other => other.into(),
        })?;
    let outbox = format!("{CARD_REFUND}:{refund}");
    cards
        .run_outbox(&outbox, CARD_REFUND, &refund, app.config.outbox_retry_base)
        .await;
    let made = cards
        .refunds(&id)
        .await?
        .into_iter()
        .find(|r| r.id == refund)
        .ok_or(PaymentError::Store(StoreError::Corrupt("card_refunds")))?;
    Ok((StatusCode::CREATED, Json(made)).into_response())
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
        assert_eq!(w.wallet("TOK").await.unwrap().unwrap().balance, "20.00");
        let eur = |a: &str| Money::parse(d(a), "EUR").unwrap();
        // a second session cannot hold 30 more
        assert_eq!(w.hold("S2", "TOK", d("30")).await.unwrap(), Hold::Refused);
        assert_eq!(w.hold("S2", "TOK", d("30")).await.unwrap(), Hold::Refused);
        let r = w.capture("S1", eur("12.34")).await.unwrap().unwrap();
        assert_eq!(
            (
                Some(wallet_receipt(&r).charged.as_str()),
                Some(wallet_receipt(&r).balance_after.as_str()),
                Some(wallet_receipt(&r).unpaid.as_str())
            ),
            (Some("12.34"), Some("37.66"), Some("0.00"))
        );
        assert_eq!(
            w.capture("S1", eur("99")).await.unwrap().unwrap(),
            r,
            "replay: same receipt"
        );
        assert_eq!(w.wallet("TOK").await.unwrap().unwrap().balance, "37.66");
        // release gives a hold back, once
        assert_eq!(
            w.hold("S3", "TOK", d("10")).await.unwrap(),
            Hold::Held(d("10"))
        );
        w.release("S3").await.unwrap();
        w.release("S3").await.unwrap();
        assert_eq!(w.wallet("TOK").await.unwrap().unwrap().balance, "37.66");
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
                Some(wallet_receipt(&r).charged.as_str()),
                Some(wallet_receipt(&r).unpaid.as_str()),
                Some(wallet_receipt(&r).balance_after.as_str())
            ),
            (Some("5.00"), Some("2.50"), Some("0.00"))
        );
        // money is minor units: a balance or hold with fractions of a cent is rounded,
        // half away from zero; a currency that is not ISO 4217 is refused
        w.set_balance("CENTS", d("10.005"), "eur").await.unwrap();
        assert_eq!(w.wallet("CENTS").await.unwrap().unwrap().balance, "10.01");
        assert_eq!(
            w.hold("S6", "CENTS", d("1.004")).await.unwrap(),
            Hold::Held(d("1.00"))
        );
        let r = w
            .capture("S6", Money::round(d("1.00468"), eur("0").currency()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(Some(wallet_receipt(&r).charged.as_str()), Some("1.00"));
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
            w.wallet("USD-CARD").await.unwrap().unwrap().balance,
            "40.00"
        );
    }

    fn wallet_receipt(r: &Receipt) -> &WalletReceipt {
        match r {
            Receipt::Wallet(w) => w,
            Receipt::Card(c) => panic!("a card receipt: {c:?}"),
        }
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
        let balance = w.wallet("TOK").await.unwrap().unwrap().balance;
        drop(w);
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut c)
            .await
            .unwrap();
        assert_eq!((held, balance.as_str()), (5, "0.00"));
    }
}
