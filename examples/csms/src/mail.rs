//! E-mail over SMTP: fleet invoices and credit notes (their PDF attached),
//! drivers' receipts and notifications.
//!
//! Every e-mail goes through the outbox: a `mails` row and its `mail`
//! outbox entry are written in one transaction with what caused them (an
//! invoice issued, a session ended), keyed by what the mail is about
//! (`invoice:INV-2026-000001`, `receipt:{session}`), so asking twice queues
//! it once. The outbox worker sends it and marks it sent; a failure is
//! retried with the outbox's backoff. SMTP has no idempotency: a crash
//! between the server's acceptance and the mark sends it again, with the
//! same `Message-ID` (derived from the mail's id) so a mail client shows
//! one.
//!
//! Configuration (environment, read at start): `CSMS_SMTP_URL` (without it
//! no e-mail is queued) in lettre's URL form: `smtp://host:25` (plain, for
//! a relay on the same host or a test server), `smtp://user:pass@host:587?tls=required`
//! (STARTTLS), `smtps://user:pass@host:465` (TLS from the start); and
//! `CSMS_MAIL_FROM` (default `csms@localhost`). TLS is rustls with the ring
//! provider (lettre's `ring` feature: the process default when one was
//! installed, else ring; the roots are the platform's).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::store::fleets::MailRow;
use crate::store::{Store, StoreError};

/// Why an e-mail was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configuration or an address is not usable.
    #[error("mail: {0}")]
    Config(String),
    /// The SMTP server could not be reached or refused.
    #[error("smtp: {0}")]
    Smtp(String),
}

/// The SMTP side, when configured.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish()
    }
}

impl Mailer {
    /// A mailer for `url` (see the module's documentation) sending as
    /// `from`, with a 30 s deadline per step.
    ///
    /// # Errors
    ///
    /// [`MailError::Config`].
    pub fn new(url: &str, from: &str) -> Result<Mailer, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| MailError::Config(format!("CSMS_SMTP_URL: {e}")))?
            .timeout(Some(Duration::from_secs(30)))
            .build();
        let from = from
            .parse()
            .map_err(|e| MailError::Config(format!("CSMS_MAIL_FROM: {e}")))?;
        Ok(Mailer { transport, from })
    }

    /// From `CSMS_SMTP_URL` and `CSMS_MAIL_FROM`; `None` without a URL (a
    /// bad one is logged).
    pub fn from_env() -> Option<Mailer> {
        let url = std::env::var("CSMS_SMTP_URL").ok()?;
        let from = std::env::var("CSMS_MAIL_FROM").unwrap_or_else(|_| "csms@localhost".into());
        match Mailer::new(&url, &from) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::error!("e-mail off: {e}");
                None
            }
        }
    }

    /// Sends one e-mail, with a PDF when given (file name, bytes).
    ///
    /// # Errors
    ///
    /// [`MailError`].
    pub async fn send(&self, m: &MailRow, pdf: Option<(String, Vec<u8>)>) -> Result<(), MailError> {
        let to: Mailbox = m
            .recipient
            .parse()
            .map_err(|e| MailError::Config(format!("recipient {}: {e}", m.recipient)))?;
        let domain = self.from.email.domain().to_owned();
        let id: String =
            m.id.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                        c
                    } else {
                        '.'
                    }
                })
                .collect();
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(m.subject.clone())
            .message_id(Some(format!("<{id}@{domain}>")));
        let text = SinglePart::plain(m.body.clone());
        let message = match pdf {
            Some((name, bytes)) => builder.multipart(
                MultiPart::mixed().singlepart(text).singlepart(
                    Attachment::new(name).body(
                        bytes,
                        ContentType::parse("application/pdf")
                            .map_err(|e| MailError::Config(e.to_string()))?,
                    ),
                ),
            ),
            None => builder.singlepart(text),
        }
        .map_err(|e| MailError::Config(e.to_string()))?;
        self.transport
            .send(message)
            .await
            .map_err(|e| MailError::Smtp(e.to_string()))?;
        Ok(())
    }
}

/// Sends a queued e-mail (the subject of a `mail` outbox entry) and marks
/// it sent; one sent before is not sent again.
///
/// # Errors
///
/// [`MailError`] (the outbox retries it).
pub async fn send_queued(store: &Store, mailer: &Mailer, id: &str) -> Result<(), MailError> {
    let Some(m) = store.mail(id).await? else {
        return Ok(());
    };
    if m.status == "Sent" {
        return Ok(());
    }
    let pdf = match &m.document {
        Some(number) => match store.document(number).await? {
            Some((_, doc)) => Some((format!("{number}.pdf"), crate::invoices::to_pdf(&doc))),
            None => return Err(MailError::Config(format!("no document {number}"))),
        },
        None => None,
    };
    mailer.send(&m, pdf).await?;
    store.mail_sent(id, m.document.as_deref()).await?;
    Ok(())
}

/// Runs a `mail` outbox entry and marks it: done when sent (or sent
/// before), retried with the outbox's backoff otherwise.
pub async fn run_outbox(
    store: &Store,
    mailer: &Mailer,
    outbox_id: &str,
    mail_id: &str,
    retry_base: Duration,
) {
    let marked = match send_queued(store, mailer, mail_id).await {
        Ok(()) => store.outbox_done(outbox_id).await,
        Err(MailError::Store(e)) => Err(e),
        Err(e) => {
            tracing::warn!(mail = mail_id, "not sent, retried: {e}");
            store
                .outbox_failed(outbox_id, &e.to_string(), retry_base)
                .await
                .map(|_| ())
        }
    };
    if let Err(e) = marked {
        tracing::warn!(outbox_id, "mail outbox: {e}");
    }
}

/// What a driver is told about a session of theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Charging started.
    Started,
    /// Charging ended: the energy, and the price when it is priced.
    Stopped {
        /// Energy, kWh.
        energy_kwh: rust_decimal::Decimal,
        /// Price incl. VAT, rounded once (`12.34 EUR`).
        price: Option<String>,
    },
    /// A paid session's receipt: what was charged, how.
    Receipt {
        /// `wallet` or `card`.
        provider: String,
        /// Charged (`12.34`).
        charged: String,
        /// Owed beyond the hold (`0.00`).
        unpaid: String,
        /// ISO 4217, when the receipt says.
        currency: Option<String>,
    },
    /// A payment failed: a hold refused, a capture or the card failed.
    PaymentFailed {
        /// Why, in words.
        reason: String,
    },
}

impl Notice {
    fn kind(&self) -> &'static str {
        match self {
            Notice::Started => "session_started",
            Notice::Stopped { .. } => "session_stopped",
            Notice::Receipt { .. } => "receipt",
            Notice::PaymentFailed { .. } => "payment_failed",
        }
    }

    /// Subject and text of the e-mail.
    pub fn text(&self, session: &str, station: &str) -> (String, String) {
        match self {
            Notice::Started => (
                format!("Charging started at {station}"),
                format!("Your charging session {session} started at station {station}.\n"),
            ),
            Notice::Stopped { energy_kwh, price } => (
                format!("Charging ended at {station}"),
                format!(
                    "Your charging session {session} at station {station} ended: {energy_kwh} kWh{}.\n",
                    price.as_ref().map(|p| format!(", {p} incl. VAT")).unwrap_or_default()
                ),
            ),
            Notice::Receipt {
                provider,
                charged,
                unpaid,
                currency,
            } => {
                let cur = currency.as_deref().unwrap_or("");
                (
                    format!("Receipt for charging at {station}"),
                    format!(
                        "Receipt for session {session} at station {station}\nPaid by {provider}: {charged} {cur}\nUnpaid: {unpaid} {cur}\n"
                    ),
                )
            }
            Notice::PaymentFailed { reason } => (
                format!("Payment failed for charging at {station}"),
                format!("The payment of your charging session {session} at station {station} failed: {reason}.\n"),
            ),
        }
    }
}

impl Notice {
    /// The receipt notice of a capture's receipt.
    pub fn receipt(receipt: &crate::payments::Receipt) -> Notice {
        Notice::Receipt {
            provider: receipt.provider().to_owned(),
            charged: receipt.charged().to_owned(),
            unpaid: receipt.unpaid().to_owned(),
            currency: Some(receipt.currency().to_owned()),
        }
    }
}

/// Queues a notice to the driver whose session it is (none: nothing), once
/// per session and kind. Nothing without e-mail configured.
///
/// # Errors
///
/// The store failed.
pub async fn notify(
    store: &Store,
    mailer: Option<&Mailer>,
    session: &str,
    notice: Notice,
) -> Result<(), StoreError> {
    if mailer.is_none() {
        return Ok(());
    }
    let Some((to, station)) = store.driver_email_of_session(session).await? else {
        return Ok(());
    };
    let (subject, body) = notice.text(session, &station);
    store
        .queue_mail(&MailRow {
            id: format!("{}:{session}", notice.kind()),
            kind: notice.kind().to_owned(),
            recipient: to,
            subject,
            body,
            document: None,
            status: "Pending".into(),
        })
        .await?;
    Ok(())
}

/// A session ended: its driver is told the energy and price, and gets the
/// receipt when it was paid (nothing without e-mail configured).
///
/// # Errors
///
/// The store failed.
pub async fn session_ended(
    app: &crate::App,
    s: &crate::store::Session,
    cdr: Option<&evproto_ocpi::v221::Cdr>,
    receipt: Option<&crate::payments::Receipt>,
) -> Result<(), StoreError> {
    let mailer = app.mail.as_ref();
    if mailer.is_none() {
        return Ok(());
    }
    let price = cdr.and_then(|c| {
        evproto_csms_core::money::Money::parse(
            c.total_cost.incl_vat.unwrap_or(c.total_cost.excl_vat),
            c.currency.as_str(),
        )
        .ok()
    });
    let stopped = Notice::Stopped {
        energy_kwh: (s.energy_wh / rust_decimal::Decimal::from(1000)).normalize(),
        price: price.map(|m| m.to_string()),
    };
    notify(&app.store, mailer, &s.id, stopped).await?;
    if let Some(r) = receipt.map(Notice::receipt) {
        notify(&app.store, mailer, &s.id, r).await?;
    }
    Ok(())
}
