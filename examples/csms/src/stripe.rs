//! Card payments through Stripe's API: customers with a saved payment
//! method, PaymentIntents with manual capture (a hold at a session's start,
//! captured at its final price, cancelled when nothing is owed), refunds,
//! and webhook events verified by their `Stripe-Signature`.
//!
//! Every call that changes something carries an `Idempotency-Key` made
//! from what it does (`hold:{session}`, `capture:{session}`, ...): a retry
//! after a crash or a timeout gets the first call's answer from Stripe
//! instead of a second charge. Callers also read the intent's state before
//! acting again ([`Stripe::payment_intent`]), so a retry is safe on a
//! gateway that ignores the header (the localstripe test server does).
//!
//! Configuration (environment, read at start): `CSMS_STRIPE_SECRET_KEY`
//! (`sk_...`; without it cards are off and every token pays by wallet),
//! `CSMS_STRIPE_API_BASE` (default `https://api.stripe.com`; a localstripe
//! in tests) and `CSMS_STRIPE_WEBHOOK_SECRET` (`whsec_...`; without it the
//! webhook endpoint answers 503).

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// How far a webhook's signed timestamp may be from now (Stripe's default
/// tolerance): older deliveries are refused as replays.
pub const WEBHOOK_TOLERANCE: Duration = Duration::from_secs(300);

/// Where and how to reach Stripe.
#[derive(Clone)]
pub struct StripeConfig {
    /// `https://api.stripe.com`, or a localstripe's address.
    pub api_base: String,
    /// The secret API key (`sk_...`).
    pub secret_key: String,
    /// The webhook endpoint's signing secret (`whsec_...`).
    pub webhook_secret: Option<String>,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("api_base", &self.api_base)
            .field("secret_key", &"<redacted>")
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl StripeConfig {
    /// From `CSMS_STRIPE_SECRET_KEY`, `CSMS_STRIPE_API_BASE` and
    /// `CSMS_STRIPE_WEBHOOK_SECRET`; `None` without a secret key.
    pub fn from_env() -> Option<StripeConfig> {
        let secret_key = std::env::var("CSMS_STRIPE_SECRET_KEY")
            .ok()
            .filter(|k| !k.is_empty())?;
        Some(StripeConfig {
            api_base: std::env::var("CSMS_STRIPE_API_BASE")
                .ok()
                .filter(|b| !b.is_empty())
                .unwrap_or_else(|| "https://api.stripe.com".into())
                .trim_end_matches('/')
                .to_owned(),
            secret_key,
            webhook_secret: std::env::var("CSMS_STRIPE_WEBHOOK_SECRET")
                .ok()
                .filter(|s| !s.is_empty()),
        })
    }
}

/// Gateway errors.
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// Stripe could not be reached, or its answer could not be read: the
    /// call may or may not have happened (retry with the same key).
    #[error("card gateway unreachable: {0}")]
    Transport(String),
    /// Stripe answered with an error (a declined card is a 402).
    #[error("card gateway refused ({status}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Stripe's `error.code`, when it gives one.
        code: Option<String>,
        /// Stripe's `error.message`.
        message: String,
    },
}

/// A Stripe object that may come as its id or expanded.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Expandable<T> {
    /// Its id.
    Id(String),
    /// The object.
    Object(T),
}

/// A PaymentIntent, the fields the CSMS reads.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentIntent {
    /// `pi_...`.
    pub id: String,
    /// `requires_capture` once held, `succeeded` once captured,
    /// `canceled`, `requires_payment_method` when declined, ...
    pub status: String,
    /// The amount authorized, minor units.
    pub amount: i64,
    /// The amount captured, minor units (Stripe; localstripe leaves it out).
    #[serde(default)]
    pub amount_received: Option<i64>,
    /// Lower-case ISO 4217.
    pub currency: String,
    /// Its charge.
    #[serde(default)]
    pub latest_charge: Option<Expandable<Charge>>,
}

/// A charge, the fields the CSMS reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Charge {
    /// `ch_...`.
    pub id: String,
    /// Whether it is captured.
    #[serde(default)]
    pub captured: bool,
}

/// A customer.
#[derive(Debug, Clone, Deserialize)]
pub struct Customer {
    /// `cus_...`.
    pub id: String,
}

/// A payment method's card details.
#[derive(Debug, Clone, Deserialize)]
pub struct CardDetails {
    /// The card's brand.
    #[serde(default)]
    pub brand: Option<String>,
    /// Its last four digits.
    #[serde(default)]
    pub last4: Option<String>,
}

/// A payment method.
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentMethod {
    /// `pm_...`.
    pub id: String,
    /// The customer it is attached to.
    #[serde(default)]
    pub customer: Option<String>,
    /// Its card, for a card.
    #[serde(default)]
    pub card: Option<CardDetails>,
}

/// A refund.
#[derive(Debug, Clone, Deserialize)]
pub struct Refund {
    /// `re_...`.
    pub id: String,
    /// Minor units.
    pub amount: i64,
    /// `succeeded`, `pending`, `failed`, ...
    pub status: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// A webhook event, as verified by [`verify_webhook`].
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    /// `evt_...`: applied once.
    pub id: String,
    /// `payment_intent.succeeded`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The object it is about.
    pub data: EventData,
}

/// An event's object.
#[derive(Debug, Clone, Deserialize)]
pub struct EventData {
    /// The object.
    pub object: EventObject,
}

/// What the CSMS reads of an event's object.
#[derive(Debug, Clone, Deserialize)]
pub struct EventObject {
    /// Its id (`pi_...` for the intents' events).
    pub id: String,
    /// `payment_intent`, `charge`, ...
    pub object: String,
    /// Its status, when it has one.
    #[serde(default)]
    pub status: Option<String>,
    /// The intent a charge belongs to.
    #[serde(default)]
    pub payment_intent: Option<String>,
}

/// Why a webhook delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No `Stripe-Signature`, or one without `t=` and `v1=`.
    #[error("no valid Stripe-Signature header")]
    MissingSignature,
    /// No `v1` signature matches the payload.
    #[error("the signature does not match the payload")]
    BadSignature,
    /// The signed timestamp is outside the tolerance.
    #[error("the signed timestamp is too far from now")]
    Stale,
    /// The payload is not an event.
    #[error("not an event: {0}")]
    NotAnEvent(String),
}

/// Verifies a webhook delivery (`Stripe-Signature: t=...,v1=...`: an
/// HMAC-SHA256 with the endpoint's secret over `{t}.{payload}`, compared in
/// constant time; `t` within `tolerance` of `now`) and reads the event.
///
/// # Errors
///
/// [`WebhookError`].
pub fn verify_webhook(
    payload: &[u8],
    header: Option<&str>,
    secret: &str,
    now: chrono::DateTime<chrono::Utc>,
    tolerance: Duration,
) -> Result<Event, WebhookError> {
    let header = header.ok_or(WebhookError::MissingSignature)?;
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v.to_owned()),
            _ => {}
        }
    }
    let t = t.ok_or(WebhookError::MissingSignature)?;
    if signatures.is_empty() {
        return Err(WebhookError::MissingSignature);
    }
    let expected = sign(secret, t, payload);
    if !signatures
        .iter()
        .any(|s| ct_eq(s.as_bytes(), expected.as_bytes()))
    {
        return Err(WebhookError::BadSignature);
    }
    let age = now.timestamp().abs_diff(t);
    if age > tolerance.as_secs() {
        return Err(WebhookError::Stale);
    }
    serde_json::from_slice(payload).map_err(|e| WebhookError::NotAnEvent(e.to_string()))
}

/// Equal bytes, in a time that does not depend on where they differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `v1` signature of a payload signed at `t` (hex HMAC-SHA256).
pub fn sign(secret: &str, t: i64, payload: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `application/x-www-form-urlencoded`, as Stripe's API takes its
/// parameters (`metadata[session_id]` style keys are passed as they are).
fn form(params: &[(&str, String)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A Stripe API client.
#[derive(Debug, Clone)]
pub struct Stripe {
    http: reqwest::Client,
    config: StripeConfig,
}

impl Stripe {
    /// A client of `config` (a 20 s deadline per call).
    ///
    /// # Errors
    ///
    /// The HTTP client could not be built (no TLS provider).
    pub fn new(config: StripeConfig) -> Result<Stripe, StripeError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| StripeError::Transport(e.to_string()))?;
        Ok(Stripe { http, config })
    }

    /// The configuration in force.
    pub fn config(&self) -> &StripeConfig {
        &self.config
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        params: &[(&str, String)],
        idempotency_key: Option<&str>,
    ) -> Result<T, StripeError> {
        let url = format!("{}{path}", self.config.api_base);
        let mut rb = self
            .http
            .request(method.clone(), url)
            .bearer_auth(&self.config.secret_key);
        if method == reqwest::Method::GET {
            if !params.is_empty() {
                rb = self
                    .http
                    .get(format!("{}{path}?{}", self.config.api_base, form(params)))
                    .bearer_auth(&self.config.secret_key);
            }
        } else {
            rb = rb
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form(params));
        }
        if let Some(k) = idempotency_key {
            rb = rb.header("Idempotency-Key", k);
        }
        let answer = rb
            .send()
            .await
            .map_err(|e| StripeError::Transport(e.to_string()))?;
        let status = answer.status();
        let bytes = answer
            .bytes()
            .await
            .map_err(|e| StripeError::Transport(e.to_string()))?;
        if !status.is_success() {
            let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => (
                    b.error.code,
                    b.error.message.unwrap_or_else(|| status.to_string()),
                ),
                Err(_) => (
                    None,
                    String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                ),
            };
            return Err(StripeError::Refused {
                status: status.as_u16(),
                code,
                message,
            });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| StripeError::Transport(format!("unreadable answer: {e}")))
    }

    /// Creates a customer for a driver (once per `driver_id`: the key).
    ///
    /// # Errors
    ///
    /// [`StripeError`].
    pub async fn create_customer(
        &self,
        driver_id: &str,
        email: &str,
    ) -> Result<Customer, StripeError> {
        self.send(
            reqwest::Method::POST,
            "/v1/customers",
            &[
                ("email", email.to_owned()),
                ("metadata[driver_id]", driver_id.to_owned()),
            ],
            Some(&format!("customer:{driver_id}")),
        )
        .await
    }

    /// Attaches a payment method (made by Stripe.js in the driver's app:
    /// card numbers never reach the CSMS) to a customer.
    ///
    /// # Errors
    ///
    /// [`StripeError`].
    pub async fn attach_payment_method(
        &self,
        payment_method: &str,
        customer: &str,
    ) -> Result<PaymentMethod, StripeError> {
        let pm: PaymentMethod = self
            .send(
                reqwest::Method::GET,
                &format!("/v1/payment_methods/{}", path_id(payment_method)?),
                &[],
                None,
            )
            .await?;
        if pm.customer.as_deref() == Some(customer) {
            return Ok(pm);
        }
        self.send(
            reqwest::Method::POST,
            &format!("/v1/payment_methods/{}/attach", path_id(payment_method)?),
            &[("customer", customer.to_owned())],
            Some(&format!("attach:{payment_method}:{customer}")),
        )
        .await
    }

    /// Authorizes `amount` minor units on the customer's saved card without
    /// capturing it (`capture_method=manual`, confirmed off-session).
    ///
    /// # Errors
    ///
    /// [`StripeError`] (a declined card: `Refused` with status 402).
    pub async fn hold(
        &self,
        session_id: &str,
        customer: &str,
        payment_method: &str,
        amount: i64,
        currency: &str,
    ) -> Result<PaymentIntent, StripeError> {
        self.send(
            reqwest::Method::POST,
            "/v1/payment_intents",
            &[
                ("amount", amount.to_string()),
                ("currency", currency.to_ascii_lowercase()),
                ("customer", customer.to_owned()),
                ("payment_method", payment_method.to_owned()),
                ("capture_method", "manual".into()),
                ("confirm", "true".into()),
                ("off_session", "true".into()),
                ("metadata[session_id]", session_id.to_owned()),
            ],
            Some(&format!("hold:{session_id}")),
        )
        .await
    }

    /// An intent as Stripe has it now.
    ///
    /// # Errors
    ///
    /// [`StripeError`].
    pub async fn payment_intent(&self, id: &str) -> Result<PaymentIntent, StripeError> {
        self.send(
            reqwest::Method::GET,
            &format!("/v1/payment_intents/{}", path_id(id)?),
            &[],
            None,
        )
        .await
    }

    /// Captures `amount` minor units of a held intent (the rest of the hold
    /// is released).
    ///
    /// # Errors
    ///
    /// [`StripeError`].
    pub async fn capture(
        &self,
        session_id: &str,
        intent: &str,
        amount: i64,
    ) -> Result<PaymentIntent, StripeError> {
        self.send(
            reqwest::Method::POST,
            &format!("/v1/payment_intents/{}/capture", path_id(intent)?),
            &[("amount_to_capture", amount.to_string())],
            Some(&format!("capture:{session_id}")),
        )
        .await
    }

    /// Cancels a held intent (nothing is owed).
    ///
    /// # Errors
    ///
    /// [`StripeError`].
    pub async fn cancel(
        &self,
        session_id: &str,
        intent: &str,
    ) -> Result<PaymentIntent, StripeError> {
        self.send(
            reqwest::Method::POST,
            &format!("/v1/payment_intents/{}/cancel", path_id(intent)?),
            &[],
            Some(&format!("cancel:{session_id}")),
        )
        .await
    }

    /// Refunds `amount` minor units of a captured intent; `key` names the
    /// refund (one refund per key, however often it is sent).
    ///
    /// # Errors
    ///
    /// [`StripeError`].
    pub async fn refund(
        &self,
        key: &str,
        intent: &str,
        amount: i64,
    ) -> Result<Refund, StripeError> {
        self.send(
            reqwest::Method::POST,
            "/v1/refunds",
            &[
                ("payment_intent", intent.to_owned()),
                ("amount", amount.to_string()),
                ("metadata[refund_key]", key.to_owned()),
            ],
            Some(&format!("refund:{key}")),
        )
        .await
    }
}

/// An id put in a URL path: Stripe ids are `[A-Za-z0-9_]`.
fn path_id(id: &str) -> Result<&str, StripeError> {
    if !id.is_empty()
        && id.len() <= 255
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Ok(id)
    } else {
        Err(StripeError::Refused {
            status: 400,
            code: Some("invalid_id".into()),
            message: "not a Stripe id".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_signature_checked_in_constant_time_with_tolerance() {
        let payload = br#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","object":"payment_intent","status":"succeeded"}}}"#;
        let now = chrono::Utc::now();
        let t = now.timestamp();
        let header = format!("t={t},v1={}", sign("whsec_x", t, payload));
        let e = verify_webhook(payload, Some(&header), "whsec_x", now, WEBHOOK_TOLERANCE).unwrap();
        assert_eq!(
            (e.id.as_str(), e.data.object.id.as_str()),
            ("evt_1", "pi_1")
        );
        // another secret, a changed payload, no header, an old timestamp
        assert_eq!(
            verify_webhook(payload, Some(&header), "whsec_y", now, WEBHOOK_TOLERANCE).unwrap_err(),
            WebhookError::BadSignature
        );
        let mut changed = payload.to_vec();
        changed[8] = b'2';
        assert_eq!(
            verify_webhook(&changed, Some(&header), "whsec_x", now, WEBHOOK_TOLERANCE).unwrap_err(),
            WebhookError::BadSignature
        );
        assert_eq!(
            verify_webhook(payload, None, "whsec_x", now, WEBHOOK_TOLERANCE).unwrap_err(),
            WebhookError::MissingSignature
        );
        let old = t - 301;
        let stale = format!("t={old},v1={}", sign("whsec_x", old, payload));
        assert_eq!(
            verify_webhook(payload, Some(&stale), "whsec_x", now, WEBHOOK_TOLERANCE).unwrap_err(),
            WebhookError::Stale
        );
        // several v1 signatures (a secret being rolled): one matching is enough
        let two = format!("t={t},v1=00,v1={}", sign("whsec_x", t, payload));
        assert!(verify_webhook(payload, Some(&two), "whsec_x", now, WEBHOOK_TOLERANCE).is_ok());
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form(&[
                ("metadata[session_id]", "CP 1:7&x".into()),
                ("a", "é".into())
            ]),
            "metadata%5Bsession_id%5D=CP+1%3A7%26x&a=%C3%A9"
        );
        assert!(path_id("pi_123").is_ok());
        assert!(path_id("../v1/x").is_err());
    }
}
