//! A station's local authorization list (OCPP 2.0.1 block D, 1.6 Local Auth
//! List Management), kept in step by csms-core's
//! [`LocalList`](evproto_csms_core::authorization::LocalList): the CSMS
//! remembers the version and the entries the station last accepted, and
//! sends what changed (`Differential`) when it knows them, else the whole
//! list (`Full`).
//!
//! - `PUT /api/stations/{id}/local-list` (D01, 1.6 SendLocalList): the list
//!   the operator wants (`tokens`, default every accepted token of the
//!   registry), each entry as stations are answered about the token (its
//!   status, group and expiry); `update` `Full` forces a whole list. The
//!   version grows with each update; `VersionMismatch` or `Failed` make
//!   the CSMS forget the station's entries, so the next update is full.
//! - `GET /api/stations/{id}/local-list` (D02, 1.6 GetLocalListVersion):
//!   the station's version, and what the CSMS knows; a version other than
//!   the one the CSMS knows makes it forget the entries too.
//!
//! The state is kept per station in the store ([`crate::store::KeptList`]:
//! the version, and the entries when known).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use evproto_csms_core::authorization::{self, Decision, ListUpdate, LocalList, Purpose, Status};
use evproto_csms_core::token::{IdToken, TokenKind};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_types::{v16, v201, v21, BoundedString};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::{body, ApiError, ApiResult};
use crate::gateway::{StationCallError, StationGateway};
use crate::App;

/// The routes, mounted with the operator API (behind its key).
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/stations/{id}/local-list", get(version).put(update))
}

/// The update type the operator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum Wanted {
    /// The whole list.
    Full,
    /// What changed, when the CSMS knows the station's entries (else Full).
    Differential,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListBody {
    /// Tokens to put on the station's list (default: every Accepted token
    /// of the registry).
    #[serde(default)]
    tokens: Option<Vec<String>>,
    /// `Full` or `Differential` (default).
    #[serde(default)]
    update: Option<Wanted>,
}

/// One entry as kept between updates.
type Entry = crate::store::ListEntry;

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Accepted => "Accepted",
        Status::Blocked => "Blocked",
        Status::ConcurrentTx => "ConcurrentTx",
        Status::Expired => "Expired",
        Status::NoCredit => "NoCredit",
        Status::NotAllowedTypeEvse => "NotAllowedTypeEVSE",
        Status::NotAtThisLocation => "NotAtThisLocation",
        Status::NotAtThisTime => "NotAtThisTime",
        Status::Unknown => "Unknown",
        _ => "Invalid",
    }
}

fn status_of(s: &str) -> Status {
    [
        Status::Accepted,
        Status::Blocked,
        Status::ConcurrentTx,
        Status::Expired,
        Status::NoCredit,
        Status::NotAllowedTypeEvse,
        Status::NotAtThisLocation,
        Status::NotAtThisTime,
        Status::Unknown,
    ]
    .into_iter()
    .find(|x| status_name(*x) == s)
    .unwrap_or(Status::Invalid)
}

/// An entry as kept, and back.
trait Kept {
    fn of(d: &Decision) -> Self;
    fn decision(&self) -> Decision;
}

impl Kept for Entry {
    fn of(d: &Decision) -> Entry {
        Entry {
            status: status_name(d.status).to_owned(),
            group: d.group.as_ref().map(|g| g.id.clone()),
            group_type: d
                .group
                .as_ref()
                .and_then(|g| g.kind.as_wire().map(str::to_owned)),
            expires_at: d.expires_at,
        }
    }

    fn decision(&self) -> Decision {
        Decision {
            status: status_of(&self.status),
            group: self.group.as_ref().map(|g| {
                IdToken::new(
                    g.clone(),
                    TokenKind::from_wire(self.group_type.as_deref().unwrap_or("Central")),
                )
            }),
            expires_at: self.expires_at,
        }
    }
}

/// What the CSMS knows of the station's list.
async fn known(app: &App, station: &str) -> crate::store::Result<LocalList> {
    let kept = app.store.local_list(station).await?;
    let mut list = LocalList::default();
    match kept.entries {
        Some(e) if kept.version > 0 => list.accepted(&ListUpdate::Full {
            version: kept.version,
            entries: e.iter().map(|(k, v)| (k.clone(), v.decision())).collect(),
        }),
        _ => list.forget(Some(kept.version)),
    }
    Ok(list)
}

/// Keeps the version and, when known, the entries.
async fn keep(
    app: &App,
    station: &str,
    version: i32,
    entries: Option<&BTreeMap<String, Decision>>,
) -> crate::store::Result<()> {
    let kept = crate::store::KeptList {
        version,
        entries: entries.map(|e| e.iter().map(|(k, d)| (k.clone(), Entry::of(d))).collect()),
    };
    app.store.put_local_list(station, &kept).await
}

/// The entries the operator wants, each as stations are answered about its
/// token now (an unknown token: `Unknown`, 1.6 `Invalid`).
async fn desired(
    app: &App,
    tokens: Option<Vec<String>>,
) -> crate::store::Result<BTreeMap<String, (String, Decision)>> {
    let all = app.store.tokens().await?;
    let by_id: BTreeMap<&str, &crate::store::TokenRecord> =
        all.iter().map(|t| (t.id_token.as_str(), t)).collect();
    let names: Vec<String> = match tokens {
        Some(list) => list,
        None => all
            .iter()
            .filter(|t| t.status == "Accepted")
            .map(|t| t.id_token.clone())
            .collect(),
    };
    let now = Utc::now();
    let policy = authorization::Policy::default();
    let record = |t: &crate::store::TokenRecord| authorization::Record {
        status: status_of(&t.status),
        expires_at: t.expires_at,
        group: t.group_id.as_ref().map(|g| {
            let kind = by_id.get(g.as_str()).map_or(TokenKind::Central, |gt| {
                TokenKind::from_wire(&gt.token_type)
            });
            IdToken::new(g.clone(), kind)
        }),
        allow_concurrent: t.allow_concurrent,
    };
    let mut out = BTreeMap::new();
    for name in names {
        let own = by_id.get(name.as_str()).map(|t| record(t));
        let group = by_id
            .get(name.as_str())
            .and_then(|t| t.group_id.as_deref())
            .and_then(|g| by_id.get(g))
            .map(|g| record(g));
        let d = authorization::authorize(
            own.as_ref(),
            group.as_ref(),
            0,
            Purpose::Authorize,
            now,
            &policy,
        );
        let kind = by_id
            .get(name.as_str())
            .map_or_else(|| "ISO14443".to_owned(), |t| t.token_type.clone());
        out.insert(name, (kind, d));
    }
    Ok(out)
}

/// `PUT /api/stations/{id}/local-list`: SendLocalList, differential when
/// the CSMS knows the station's entries; the station's answer, the version
/// and the update type sent (`null` when the station's list is already as
/// wanted: nothing sent).
async fn update(State(app): State<Arc<App>>, Path(id): Path<String>, bytes: Bytes) -> ApiResult {
    let b: ListBody = if bytes.is_empty() {
        ListBody {
            tokens: None,
            update: None,
        }
    } else {
        body(&bytes)?
    };
    let version = app.gateway.connection(&id).await?;
    let wanted = desired(&app, b.tokens).await?;
    let kinds: BTreeMap<&str, &str> = wanted
        .iter()
        .map(|(k, (kind, _))| (k.as_str(), kind.as_str()))
        .collect();
    let entries: BTreeMap<String, Decision> = wanted
        .iter()
        .map(|(k, (_, d))| (k.clone(), d.clone()))
        .collect();
    let mut list = known(&app, &id).await?;
    let next = list.version().unwrap_or(0).checked_add(1).ok_or_else(|| {
        ApiError::new(StatusCode::CONFLICT, "the list version is past its maximum")
    })?;
    let update = match b.update {
        Some(Wanted::Full) => Some(ListUpdate::Full {
            version: next,
            entries: entries.clone(),
        }),
        _ => list.next_update(&entries),
    };
    let Some(update) = update else {
        return Ok(Json(json!({"list_version": list.version(), "update": null,
            "entries": entries.len(), "answer": null}))
        .into_response());
    };
    let kind_of = |t: &str| kinds.get(t).copied().unwrap_or("ISO14443").to_owned();
    let (status, answer) = send(&app.gateway, &id, version, &update, kind_of).await?;
    match status {
        "Accepted" => {
            list.accepted(&update);
            // the station's entries now: the whole list wanted
            keep(&app, &id, update.version(), Some(&entries)).await?;
        }
        "VersionMismatch" | "Failed" => {
            list.forget(None);
            keep(&app, &id, list.version().unwrap_or(0), None).await?;
        }
        _ => {}
    }
    let (kind, sent) = match &update {
        ListUpdate::Full { entries, .. } => ("Full", entries.len()),
        ListUpdate::Differential { changes, .. } => ("Differential", changes.len()),
    };
    Ok(Json(
        json!({"list_version": update.version(), "update": kind, "entries": entries.len(),
        "sent": sent, "answer": answer}),
    )
    .into_response())
}

/// `GET /api/stations/{id}/local-list`: GetLocalListVersion; the station's
/// version and the CSMS's (after the answer: the CSMS forgets the entries
/// when they differ).
async fn version(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    let v = app.gateway.connection(&id).await?;
    let reported = match v {
        ProtocolVersion::V16 => {
            app.gateway
                .call::<v16::action::GetLocalListVersion>(&id, v16::GetLocalListVersionRequest {})
                .await?
                .list_version
        }
        ProtocolVersion::V201 => {
            let r = v201::GetLocalListVersionRequest { custom_data: None };
            app.gateway
                .call::<v201::action::GetLocalListVersion>(&id, r)
                .await?
                .version_number
        }
        _ => {
            let r = v21::GetLocalListVersionRequest { custom_data: None };
            app.gateway
                .call::<v21::action::GetLocalListVersion>(&id, r)
                .await?
                .version_number
        }
    };
    let mut list = known(&app, &id).await?;
    let was = list.version();
    if was != Some(reported) && !(was.is_none() && reported <= 0) {
        list.forget(Some(reported));
        keep(&app, &id, list.version().unwrap_or(0), None).await?;
    }
    let entries_known = app.store.local_list(&id).await?.entries.is_some();
    Ok(Json(
        json!({"station_version": reported, "list_version": list.version(),
        "entries_known": entries_known}),
    )
    .into_response())
}

/// The station's answer: its status and the answer as JSON.
type Answer = (&'static str, serde_json::Value);

fn as_json<R: Serialize>(r: &R) -> serde_json::Value {
    serde_json::to_value(r).unwrap_or(serde_json::Value::Null)
}

/// SendLocalList of `update` in the station's version; a removed entry
/// (differential) goes without its info.
async fn send(
    gateway: &StationGateway,
    station: &str,
    version: ProtocolVersion,
    update: &ListUpdate,
    kind_of: impl Fn(&str) -> String,
) -> Result<Answer, StationCallError> {
    let bad = |e| StationCallError::rejected(station, e);
    let (full, list_version, changes): (bool, i32, Vec<(&String, Option<&Decision>)>) = match update
    {
        ListUpdate::Full { version, entries } => (
            true,
            *version,
            entries.iter().map(|(k, d)| (k, Some(d))).collect(),
        ),
        ListUpdate::Differential { version, changes } => (
            false,
            *version,
            changes.iter().map(|(k, d)| (k, d.as_ref())).collect(),
        ),
    };
    match version {
        ProtocolVersion::V16 => {
            let list = changes
                .iter()
                .map(|(t, d)| {
                    Ok(v16::AuthorizationData {
                        id_tag: BoundedString::new((*t).clone()).map_err(bad)?,
                        id_tag_info: d.map(Decision::to_v16),
                    })
                })
                .collect::<Result<Vec<_>, StationCallError>>()?;
            let request = v16::SendLocalListRequest {
                list_version,
                local_authorization_list: Some(list),
                update_type: if full {
                    v16::UpdateType::Full
                } else {
                    v16::UpdateType::Differential
                },
            };
            let r = gateway
                .call::<v16::action::SendLocalList>(station, request)
                .await?;
            Ok((r.status.as_str(), as_json(&r)))
        }
        ProtocolVersion::V201 => {
            let list = changes
                .iter()
                .map(|(t, d)| {
                    Ok(v201::AuthorizationData {
                        custom_data: None,
                        id_token: v201::IdTokenType {
                            custom_data: None,
                            additional_info: None,
                            id_token: BoundedString::new((*t).clone()).map_err(bad)?,
                            r#type: kind_of(t.as_str())
                                .parse()
                                .unwrap_or(v201::IdTokenEnumType::ISO14443),
                        },
                        id_token_info: d.map(Decision::to_v201),
                    })
                })
                .collect::<Result<Vec<_>, StationCallError>>()?;
            let request = v201::SendLocalListRequest {
                custom_data: None,
                local_authorization_list: Some(list),
                version_number: list_version,
                update_type: if full {
                    v201::UpdateEnumType::Full
                } else {
                    v201::UpdateEnumType::Differential
                },
            };
            let r = gateway
                .call::<v201::action::SendLocalList>(station, request)
                .await?;
            Ok((r.status.as_str(), as_json(&r)))
        }
        _ => {
            let list = changes
                .iter()
                .map(|(t, d)| {
                    Ok(v21::AuthorizationData {
                        id_token: v21::IdTokenType {
                            additional_info: None,
                            id_token: BoundedString::new((*t).clone()).map_err(bad)?,
                            r#type: BoundedString::new(kind_of(t.as_str())).map_err(bad)?,
                            custom_data: None,
                        },
                        id_token_info: d.map(Decision::to_v21),
                        custom_data: None,
                    })
                })
                .collect::<Result<Vec<_>, StationCallError>>()?;
            let request = v21::SendLocalListRequest {
                local_authorization_list: Some(list),
                version_number: list_version,
                update_type: if full {
                    v21::UpdateEnumType::Full
                } else {
                    v21::UpdateEnumType::Differential
                },
                custom_data: None,
            };
            let r = gateway
                .call::<v21::action::SendLocalList>(station, request)
                .await?;
            Ok((r.status.as_str(), as_json(&r)))
        }
    }
}
