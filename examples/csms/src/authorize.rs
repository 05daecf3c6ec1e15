//! What the CSMS answers about an id token a station presents (OCPP 2.0.1
//! block C and I01/I06, 1.6 Core `idTagInfo`).
//!
//! - [`decide`]: csms-core's [`authorization::authorize`] over the registry:
//!   the token's own record (status, expiry, group, and whether it may be
//!   in several transactions at once), its group's record, whether it is in
//!   another active transaction now (`ConcurrentTx` unless the token is
//!   shared), and the station's master-pass group (C16).
//! - [`personalize`]: the driver's tariff in words (I01 `personalMessage`,
//!   with the token's language as `language1`), for an accepted 2.x token.
//! - [`tariff_notice`]: the tariff text again in a transaction's
//!   `TransactionEventResponse` (`updatedPersonalMessage`, I06) once the
//!   tariff changed since its driver was shown it.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::Utc;
use evproto_csms_core::authorization::{self, Decision, Purpose};
use evproto_csms_core::token::{IdToken, TokenKind};
use evproto_ocpi::tariff::{Dimension, Element};
use evproto_ocpp_types::{v201, v21, BoundedString};
use rust_decimal::Decimal;

use crate::store::{Result, TokenRecord};
use crate::App;

/// A registry status as csms-core reads it.
fn status_of(s: &str) -> authorization::Status {
    match s {
        "Accepted" => authorization::Status::Accepted,
        "Blocked" => authorization::Status::Blocked,
        "Expired" => authorization::Status::Expired,
        "NoCredit" => authorization::Status::NoCredit,
        _ => authorization::Status::Invalid,
    }
}

/// A registered token as csms-core's record, with its group.
fn record(t: &TokenRecord, group: Option<IdToken>) -> authorization::Record {
    authorization::Record {
        status: status_of(&t.status),
        expires_at: t.expires_at,
        group,
        allow_concurrent: t.allow_concurrent,
    }
}

/// The authorization decision for `token` presented at `station` for
/// `purpose`: the CSMS's own tokens first, then a roaming partner's (OCPI
/// tokens pushed to us, real-time authorization). At a start (and a 1.6
/// `Authorize`, after which the station starts) a token that is in another
/// active transaction than `session` (the one it starts, so a replayed
/// start is not concurrent with itself) is `ConcurrentTx`, unless its
/// record allows concurrent use; the station's reported
/// `AuthCtrlr.MasterPassGroupId` is the master-pass group (C16).
///
/// # Errors
///
/// The store failed.
pub async fn decide(
    app: &App,
    station: &str,
    token: &str,
    purpose: Purpose,
    session: Option<&str>,
) -> Result<Decision> {
    let (own, group_record) = match app.store.token_record(token).await? {
        Some(t) => {
            // the group as a token of its own, when registered: its status
            // and expiry bind every member (C39-C43)
            let group_token = match &t.group_id {
                Some(g) => app.store.token_record(g).await?,
                None => None,
            };
            let group = t.group_id.as_ref().map(|g| {
                let kind = group_token.as_ref().map_or(TokenKind::Central, |gt| {
                    TokenKind::from_wire(&gt.token_type)
                });
                IdToken::new(g.clone(), kind)
            });
            (
                Some(record(&t, group)),
                group_token.as_ref().map(|gt| record(gt, None)),
            )
        }
        None => (None, None),
    };
    let own = match own {
        Some(r) => Some(r),
        None if !token.is_empty() => {
            app.roaming
                .authorize(token)
                .await
                .map(|status| authorization::Record {
                    status,
                    ..authorization::Record::accepted()
                })
        }
        None => None,
    };
    // only where concurrent use is judged, and not for a shared token
    let judged = matches!(purpose, Purpose::Start | Purpose::Authorize16);
    let active = match &own {
        Some(r) if judged && !r.allow_concurrent => {
            usize::from(app.store.in_another_active_session(token, session).await?)
        }
        _ => 0,
    };
    let policy = authorization::Policy {
        master_pass_group: app
            .store
            .master_pass_group(station)
            .await?
            .map(|g| IdToken::new(g, TokenKind::Central)),
        ..authorization::Policy::default()
    };
    Ok(authorization::authorize(
        own.as_ref(),
        group_record.as_ref(),
        active,
        purpose,
        Utc::now(),
        &policy,
    ))
}

/// A text for the driver (a 2.x `MessageContentType` in format `UTF8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverText {
    /// The words.
    pub content: String,
    /// Their language (RFC 5646), when known.
    pub language: Option<String>,
}

/// A version's `MessageContentType`, built from a [`DriverText`].
pub trait MessageContent: Sized {
    /// The message, `None` when the text does not fit the version's limits.
    fn from_text(t: &DriverText) -> Option<Self>;
}

/// A version's `IdTokenInfoType`, which [`personalize`] completes.
pub trait Personalize {
    /// Whether the token is accepted.
    fn accepted(&self) -> bool;
    /// Sets the driver's language (`language1`) and the message.
    fn personalize(&mut self, language: Option<&str>, text: Option<&DriverText>);
}

macro_rules! message_types {
    ($ver:ident) => {
        impl MessageContent for $ver::MessageContentType {
            fn from_text(t: &DriverText) -> Option<Self> {
                Some($ver::MessageContentType {
                    format: $ver::MessageFormatEnumType::UTF8,
                    language: t
                        .language
                        .as_ref()
                        .and_then(|l| BoundedString::new(l.clone()).ok()),
                    content: BoundedString::new(t.content.clone()).ok()?,
                    custom_data: None,
                })
            }
        }

        impl Personalize for $ver::IdTokenInfoType {
            fn accepted(&self) -> bool {
                self.status == $ver::AuthorizationStatusEnumType::Accepted
            }

            fn personalize(&mut self, language: Option<&str>, text: Option<&DriverText>) {
                if let Some(l) = language.and_then(|l| BoundedString::new(l.to_owned()).ok()) {
                    self.language1 = Some(l);
                }
                if let Some(m) = text.and_then(MessageContent::from_text) {
                    self.personal_message = Some(m);
                }
            }
        }
    };
}
message_types!(v201);
message_types!(v21);

impl DriverText {
    /// As the version's `MessageContentType`.
    pub fn message<M: MessageContent>(&self) -> Option<M> {
        M::from_text(self)
    }
}

/// A price in words: at least two decimals, no trailing zeros beyond them.
fn amount(d: Decimal) -> String {
    let mut d = d.normalize();
    if d.scale() < 2 {
        d.rescale(2);
    }
    d.to_string()
}

/// One element's prices in words, VAT included where the tariff gives it
/// (`0.36 EUR/kWh, 1.00 EUR per session`).
fn element_words(e: &Element, currency: &str) -> String {
    let parts: Vec<String> = e
        .price_components
        .iter()
        .map(|c| {
            let price = match c.vat {
                Some(v) => (c.price * (Decimal::ONE + v / Decimal::ONE_HUNDRED)).round_dp(4),
                None => c.price,
            };
            let per = match c.dimension {
                Dimension::Energy => "/kWh",
                Dimension::Flat => " per session",
                Dimension::Time => "/h charging",
                Dimension::ParkingTime => "/h parking",
            };
            format!("{} {currency}{per}", amount(price))
        })
        .collect();
    parts.join(", ")
}

/// The tariff that prices a driver's session (the `default` tariff) as a
/// text in the driver's `language`: its `tariff_alt_text` in that language,
/// else its first one, else its prices in words (the element without
/// restrictions, else the first). `None` without a usable tariff.
///
/// # Errors
///
/// The store failed.
pub async fn tariff_text(app: &App, language: Option<&str>) -> Result<Option<DriverText>> {
    let Some(body) = app.store.tariff("default").await? else {
        return Ok(None);
    };
    let Ok(tariff) =
        crate::billing::DefaultTariff::parse(&body, &crate::billing::Operator::of(&app.config))
    else {
        return Ok(None);
    };
    let alt = &tariff.ocpi.tariff_alt_text;
    let chosen = language
        .and_then(|l| {
            alt.iter().find(|t| {
                t.language
                    .as_str()
                    .eq_ignore_ascii_case(l.get(..2).unwrap_or(l))
            })
        })
        .or_else(|| alt.first());
    if let Some(t) = chosen {
        return Ok(Some(DriverText {
            content: t.text.as_str().to_owned(),
            language: Some(t.language.as_str().to_owned()),
        }));
    }
    let engine = &tariff.engine;
    let element = engine
        .elements
        .iter()
        .find(|e| e.restrictions.is_none())
        .or_else(|| engine.elements.first());
    Ok(element.map(|e| DriverText {
        content: format!("Tariff: {}", element_words(e, &engine.currency)),
        language: Some("en".into()),
    }))
}

/// Completes an accepted 2.x `idTokenInfo` for `token` (I01): the token's
/// language as `language1` and the driver's tariff text as
/// `personalMessage`; `session` is the transaction it starts, whose driver
/// is then noted as shown that text (for [`tariff_notice`]). A store
/// failure leaves the answer as it was (logged).
pub async fn personalize<I: Personalize>(
    app: &App,
    token: &str,
    session: Option<&str>,
    info: &mut I,
) {
    if !info.accepted() {
        return;
    }
    let found = async {
        let language = app
            .store
            .token_record(token)
            .await?
            .and_then(|t| t.language);
        let text = tariff_text(app, language.as_deref()).await?;
        Ok::<_, crate::store::StoreError>((language, text))
    };
    match found.await {
        Ok((language, text)) => {
            info.personalize(language.as_deref(), text.as_ref());
            if let (Some(s), Some(t)) = (session, &text) {
                app.tariff_notices.shown(s, t);
            }
        }
        Err(e) => tracing::warn!(token, "no tariff text for the driver: {e}"),
    }
}

/// The tariff text to show again in the answer to a 2.x transaction's
/// event (I06 `updatedPersonalMessage`): `Some` when the tariff changed
/// since the transaction's driver was shown its text (then noted as
/// shown), `None` otherwise; at the transaction's end it is forgotten.
pub async fn tariff_notice(app: &App, session: &str, ended: bool) -> Option<DriverText> {
    if ended {
        app.tariff_notices.forget(session);
        return None;
    }
    let shown = app.tariff_notices.shown_text(session)?;
    let text = match tariff_text(app, shown.language.as_deref()).await {
        Ok(t) => t?,
        Err(e) => {
            tracing::warn!(session, "no tariff text for the driver: {e}");
            return None;
        }
    };
    (text != shown).then(|| {
        app.tariff_notices.shown(session, &text);
        text
    })
}

/// Per open 2.x transaction, the tariff text its driver was last shown
/// (I01 at its start, I06 after a change). In memory: after a restart a
/// transaction's driver is told again only about a change seen since.
#[derive(Debug, Default)]
pub struct TariffNotices(Mutex<HashMap<String, DriverText>>);

/// A bound on the transactions remembered (one that never ends is dropped
/// with the rest when it is reached).
const NOTICES_HELD: usize = 100_000;

impl TariffNotices {
    fn shown(&self, session: &str, text: &DriverText) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= NOTICES_HELD && !m.contains_key(session) {
            m.clear();
        }
        m.insert(session.to_owned(), text.clone());
    }

    fn shown_text(&self, session: &str) -> Option<DriverText> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(session)
            .cloned()
    }

    fn forget(&self, session: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_in_words_include_vat_and_two_decimals() {
        let tariff = serde_json::json!({"currency": "EUR", "elements": [{"price_components": [
            {"type": "ENERGY", "price": "0.25", "vat": "20", "step_size": 1},
            {"type": "FLAT", "price": "1", "step_size": 1},
            {"type": "PARKING_TIME", "price": "2.125", "step_size": 60}]}]});
        let t = evproto_ocpi::tariff::Tariff::from_json(&tariff).unwrap();
        assert_eq!(
            element_words(&t.elements[0], "EUR"),
            "0.30 EUR/kWh, 1.00 EUR per session, 2.125 EUR/h parking"
        );
    }

    #[test]
    fn notices_are_bounded_and_forgotten() {
        let n = TariffNotices::default();
        let t = DriverText {
            content: "a".into(),
            language: None,
        };
        n.shown("S:1", &t);
        assert_eq!(n.shown_text("S:1"), Some(t));
        n.forget("S:1");
        assert_eq!(n.shown_text("S:1"), None);
    }
}
