//! Provisioning a station from the operator API (OCPP 2.0.1 block B; the
//! 1.6 Core profile's configuration keys), typed in each version:
//!
//! - `POST /api/stations/{id}/variables/set` (B05): `SetVariables`; 1.6
//!   `ChangeConfiguration`, one per variable (the variable is the key);
//! - `POST /api/stations/{id}/variables/get` (B06): `GetVariables`; 1.6
//!   `GetConfiguration` with the keys;
//! - `POST /api/stations/{id}/reset` (B11, B12, B13): `Reset` `Immediate`
//!   or `OnIdle` (an EVSE's, 2.x), `ImmediateAndResume` (2.1 only: 400 for
//!   an earlier version); 1.6 `Hard` or `Soft`;
//! - `POST /api/stations/{id}/network-profile` (B09, B10: a new connection
//!   profile in a slot, that slot first in `NetworkConfigurationPriority`,
//!   then `Reset` `OnIdle`, each step only when the one before was
//!   accepted; a station is moved to another CSMS this way). 2.x only.
//!
//! Each answers what the station answered, per variable or per step; the
//! values the station set or read are its device model
//! ([`crate::device_model`]). A station that is not connected is 404, a
//! body the station's version cannot express 400, a station that does not
//! answer 504, as for every call ([`StationCallError`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_types::codec::WireEnum;
use evproto_ocpp_types::{v16, v201, v21, Action};
use serde::{Deserialize, Serialize};

use crate::api::{body, ApiError, ApiResult};
use crate::gateway::{StationCallError, StationGateway};
use crate::App;

/// The routes, mounted with the operator API (behind its key).
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/stations/{id}/variables/set", post(set_variables))
        .route("/api/stations/{id}/variables/get", post(get_variables))
        .route("/api/stations/{id}/reset", post(reset))
        .route("/api/stations/{id}/network-profile", post(network_profile))
}

/// A variable of a station's device model, as the API names it (2.x:
/// component, optional instance and EVSE/connector, variable, optional
/// instance, attribute; 1.6: the variable is the configuration key and
/// nothing else is given).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    #[serde(default)]
    component: Option<String>,
    #[serde(default)]
    component_instance: Option<String>,
    #[serde(default)]
    evse_id: Option<i32>,
    #[serde(default)]
    connector_id: Option<i32>,
    variable: String,
    #[serde(default)]
    variable_instance: Option<String>,
    /// `Actual` (the default), `Target`, `MinSet`, `MaxSet`.
    #[serde(default)]
    attribute: Option<String>,
    /// The value to set (set only).
    #[serde(default)]
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Items {
    variables: Vec<Item>,
}

/// What the station answered for one variable.
#[derive(Debug, Serialize, PartialEq)]
struct ItemResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    component_instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    evse_id: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connector_id: Option<i32>,
    variable: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    variable_instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attribute: Option<String>,
    /// The station's status for it (`Accepted`, `Rejected`,
    /// `RebootRequired`, `UnknownComponent`, ...; 1.6 `NotSupported`,
    /// `UnknownKey` for a key GetConfiguration did not know).
    status: String,
    /// The value read (get) or set (set, when accepted).
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    /// 1.6: a key the station does not let be changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    readonly: Option<bool>,
    /// The station's reason, when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Debug, Serialize)]
struct ItemResults {
    station: String,
    results: Vec<ItemResult>,
}

fn bad(why: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, why)
}

/// A text for a bounded OCPP string field, or 400 naming the field.
fn text<T: std::str::FromStr>(field: &str, s: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| bad(format!("{field}: {e}")))
}

/// The items of a body: at least one, each asking what its use needs.
fn items(bytes: &Bytes, setting: bool, version: ProtocolVersion) -> Result<Vec<Item>, ApiError> {
    let Items { variables } = body(bytes)?;
    if variables.is_empty() {
        return Err(bad("variables: at least one"));
    }
    for (i, it) in variables.iter().enumerate() {
        if setting != it.value.is_some() {
            return Err(bad(if setting {
                format!("variables[{i}].value: the value to set")
            } else {
                format!("variables[{i}].value: not read by a get")
            }));
        }
        if version == ProtocolVersion::V16 {
            let extra = it.component.is_some()
                || it.component_instance.is_some()
                || it.evse_id.is_some()
                || it.connector_id.is_some()
                || it.variable_instance.is_some()
                || it.attribute.is_some();
            if extra {
                return Err(bad(format!(
                    "variables[{i}]: an OCPP 1.6 station has configuration keys only (give `variable`, the key)"
                )));
            }
        } else if it.component.is_none() {
            return Err(bad(format!(
                "variables[{i}].component: required in OCPP 2.x"
            )));
        }
        if it.connector_id.is_some() && it.evse_id.is_none() {
            return Err(bad(format!("variables[{i}].connector_id: needs evse_id")));
        }
    }
    Ok(variables)
}

/// Records what the station set or read in its device model (B05/B06);
/// a failure is logged, the operator still gets the station's answer.
async fn learn<A: Action>(
    app: &App,
    station: &str,
    version: ProtocolVersion,
    request: &A::Request,
    answer: &A::Response,
) {
    let (Ok(req), Ok(res)) = (
        serde_json::to_string(request),
        serde_json::to_string(answer),
    ) else {
        return;
    };
    if let Err(e) = crate::device_model::learn(app, station, version, A::NAME, &req, &res).await {
        tracing::warn!(station, action = A::NAME, "device model not updated: {e}");
    }
}

/// A station's status info as one text: `code: more`.
fn reason(code: &str, more: Option<&str>) -> String {
    match more {
        Some(more) => format!("{code}: {more}"),
        None => code.to_owned(),
    }
}

macro_rules! variables_2x {
    ($m:ident, $ver:ident, $pv:ident) => {
        /// Set and get in this version.
        mod $m {
            use super::*;

            fn component_of(it: &Item) -> Result<$ver::ComponentType, ApiError> {
                Ok($ver::ComponentType {
                    name: text("component", it.component.as_deref().unwrap_or_default())?,
                    instance: it
                        .component_instance
                        .as_deref()
                        .map(|s| text("component_instance", s))
                        .transpose()?,
                    evse: it.evse_id.map(|id| $ver::EVSEType {
                        id,
                        connector_id: it.connector_id,
                        custom_data: None,
                    }),
                    custom_data: None,
                })
            }

            fn variable_of(it: &Item) -> Result<$ver::VariableType, ApiError> {
                Ok($ver::VariableType {
                    name: text("variable", &it.variable)?,
                    instance: it
                        .variable_instance
                        .as_deref()
                        .map(|s| text("variable_instance", s))
                        .transpose()?,
                    custom_data: None,
                })
            }

            fn attribute_of(it: &Item) -> Result<Option<$ver::AttributeEnumType>, ApiError> {
                it.attribute
                    .as_deref()
                    .map(|a| {
                        <$ver::AttributeEnumType as WireEnum>::from_wire(a).ok_or_else(|| {
                            bad(format!(
                                "attribute: {a} is none of Actual, Target, MinSet, MaxSet"
                            ))
                        })
                    })
                    .transpose()
            }

            fn result_of(
                c: &$ver::ComponentType,
                v: &$ver::VariableType,
                attribute: Option<&$ver::AttributeEnumType>,
            ) -> ItemResult {
                ItemResult {
                    component: Some(c.name.to_string()),
                    component_instance: c.instance.as_ref().map(|s| s.to_string()),
                    evse_id: c.evse.as_ref().map(|e| e.id),
                    connector_id: c.evse.as_ref().and_then(|e| e.connector_id),
                    variable: v.name.to_string(),
                    variable_instance: v.instance.as_ref().map(|s| s.to_string()),
                    attribute: attribute.map(|a| a.as_str().to_owned()),
                    status: String::new(),
                    value: None,
                    readonly: None,
                    reason: None,
                }
            }

            pub(super) async fn set(
                app: &App,
                station: &str,
                items: &[Item],
            ) -> Result<Vec<ItemResult>, ApiError> {
                let mut data = Vec::with_capacity(items.len());
                for it in items {
                    data.push($ver::SetVariableDataType {
                        attribute_type: attribute_of(it)?,
                        attribute_value: text("value", it.value.as_deref().unwrap_or_default())?,
                        component: component_of(it)?,
                        variable: variable_of(it)?,
                        custom_data: None,
                    });
                }
                let request = $ver::SetVariablesRequest {
                    set_variable_data: data,
                    custom_data: None,
                };
                type A = $ver::action::SetVariables;
                let answer = app.gateway.call::<A>(station, request.clone()).await?;
                learn::<A>(app, station, ProtocolVersion::$pv, &request, &answer).await;
                Ok(answer
                    .set_variable_result
                    .iter()
                    .map(|r| {
                        let asked = request.set_variable_data.iter().find(|d| {
                            d.component == r.component
                                && d.variable == r.variable
                                && d.attribute_type == r.attribute_type
                        });
                        let mut out =
                            result_of(&r.component, &r.variable, r.attribute_type.as_ref());
                        out.status = r.attribute_status.as_str().to_owned();
                        out.reason = r
                            .attribute_status_info
                            .as_ref()
                            .map(|i| reason(&i.reason_code, i.additional_info.as_deref()));
                        out.value = asked.map(|d| d.attribute_value.to_string());
                        out
                    })
                    .collect())
            }

            pub(super) async fn get(
                app: &App,
                station: &str,
                items: &[Item],
            ) -> Result<Vec<ItemResult>, ApiError> {
                let mut data = Vec::with_capacity(items.len());
                for it in items {
                    data.push($ver::GetVariableDataType {
                        attribute_type: attribute_of(it)?,
                        component: component_of(it)?,
                        variable: variable_of(it)?,
                        custom_data: None,
                    });
                }
                let request = $ver::GetVariablesRequest {
                    get_variable_data: data,
                    custom_data: None,
                };
                type A = $ver::action::GetVariables;
                let answer = app.gateway.call::<A>(station, request.clone()).await?;
                learn::<A>(app, station, ProtocolVersion::$pv, &request, &answer).await;
                Ok(answer
                    .get_variable_result
                    .iter()
                    .map(|r| {
                        let mut out =
                            result_of(&r.component, &r.variable, r.attribute_type.as_ref());
                        out.status = r.attribute_status.as_str().to_owned();
                        out.value = r.attribute_value.as_ref().map(|v| v.to_string());
                        out.reason = r
                            .attribute_status_info
                            .as_ref()
                            .map(|i| reason(&i.reason_code, i.additional_info.as_deref()));
                        out
                    })
                    .collect())
            }
        }
    };
}

variables_2x!(items_201, v201, V201);
variables_2x!(items_21, v21, V21);

/// The 1.6 set: one `ChangeConfiguration` per key, in order.
async fn set_16(
    gateway: &StationGateway,
    station: &str,
    items: &[Item],
) -> Result<Vec<ItemResult>, ApiError> {
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let value = it.value.clone().unwrap_or_default();
        let request = v16::ChangeConfigurationRequest {
            key: text("variable", &it.variable)?,
            value: text("value", &value)?,
        };
        let r = gateway
            .call::<v16::action::ChangeConfiguration>(station, request)
            .await?;
        out.push(ItemResult {
            component: None,
            component_instance: None,
            evse_id: None,
            connector_id: None,
            variable: it.variable.clone(),
            variable_instance: None,
            attribute: None,
            status: r.status.as_str().to_owned(),
            value: Some(value),
            readonly: None,
            reason: None,
        });
    }
    Ok(out)
}

/// The 1.6 get: `GetConfiguration` with the keys; each key answered with
/// its value, or `UnknownKey`.
async fn get_16(
    gateway: &StationGateway,
    station: &str,
    items: &[Item],
) -> Result<Vec<ItemResult>, ApiError> {
    let keys = items
        .iter()
        .map(|it| text("variable", &it.variable))
        .collect::<Result<Vec<_>, _>>()?;
    let request = v16::GetConfigurationRequest { key: Some(keys) };
    let r = gateway
        .call::<v16::action::GetConfiguration>(station, request)
        .await?;
    let known = r.configuration_key.unwrap_or_default();
    Ok(items
        .iter()
        .map(|it| {
            let found = known.iter().find(|k| k.key.as_str() == it.variable);
            ItemResult {
                component: None,
                component_instance: None,
                evse_id: None,
                connector_id: None,
                variable: it.variable.clone(),
                variable_instance: None,
                attribute: None,
                status: if found.is_some() {
                    "Accepted"
                } else {
                    "UnknownKey"
                }
                .to_owned(),
                value: found.and_then(|k| k.value.as_ref().map(|v| v.to_string())),
                readonly: found.map(|k| k.readonly),
                reason: None,
            }
        })
        .collect())
}

/// `POST /api/stations/{id}/variables/set` (B05).
async fn set_variables(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    variables(&app, id, &bytes, true).await
}

/// `POST /api/stations/{id}/variables/get` (B06).
async fn get_variables(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    variables(&app, id, &bytes, false).await
}

/// Sets (`setting`) or reads the variables of the body, in the station's
/// version.
async fn variables(app: &App, id: String, bytes: &Bytes, setting: bool) -> ApiResult {
    let version = app.gateway.connection(&id).await?;
    let items = items(bytes, setting, version)?;
    let results = match (version, setting) {
        (ProtocolVersion::V16, true) => set_16(&app.gateway, &id, &items).await?,
        (ProtocolVersion::V16, false) => get_16(&app.gateway, &id, &items).await?,
        (ProtocolVersion::V201, true) => items_201::set(app, &id, &items).await?,
        (ProtocolVersion::V201, false) => items_201::get(app, &id, &items).await?,
        (_, true) => items_21::set(app, &id, &items).await?,
        (_, false) => items_21::get(app, &id, &items).await?,
    };
    Ok(Json(ItemResults {
        station: id,
        results,
    })
    .into_response())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum ResetKind {
    /// Now, ending transactions (1.6 `Hard`).
    Immediate,
    /// When no transaction runs (1.6 `Soft`; 2.x answers `Scheduled` while
    /// one does).
    OnIdle,
    /// Now, the station resuming its transactions after the reboot (2.1,
    /// B13: they continue with `TransactionEvent` `Updated`
    /// `TxResumed`).
    ImmediateAndResume,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    r#type: ResetKind,
    /// Only this EVSE (2.x).
    #[serde(default)]
    evse_id: Option<i32>,
}

/// What the station answered to a call.
#[derive(Debug, Serialize)]
struct Answered {
    station: String,
    action: &'static str,
    status: String,
}

/// `POST /api/stations/{id}/reset` (B11, B12).
async fn reset(State(app): State<Arc<App>>, Path(id): Path<String>, bytes: Bytes) -> ApiResult {
    let b: ResetBody = body(&bytes)?;
    let version = app.gateway.connection(&id).await?;
    if b.r#type == ResetKind::ImmediateAndResume
        && matches!(version, ProtocolVersion::V16 | ProtocolVersion::V201)
    {
        return Err(bad(
            "type: ImmediateAndResume is OCPP 2.1 (B13); this station speaks an earlier version",
        ));
    }
    if let Some(evse) = b.evse_id {
        if version == ProtocolVersion::V16 {
            return Err(bad("evse_id: an OCPP 1.6 station resets as a whole"));
        }
        if evse <= 0 {
            return Err(bad("evse_id: 1 or more"));
        }
    }
    let gw = &app.gateway;
    // the reboot that follows is a requested one (predictive maintenance)
    app.maintenance.reset_requested(&id, chrono::Utc::now());
    let status = match version {
        ProtocolVersion::V16 => {
            let r#type = match b.r#type {
                ResetKind::Immediate | ResetKind::ImmediateAndResume => v16::ResetType::Hard,
                ResetKind::OnIdle => v16::ResetType::Soft,
            };
            let r = gw
                .call::<v16::action::Reset>(&id, v16::ResetRequest { r#type })
                .await?;
            r.status.as_str().to_owned()
        }
        ProtocolVersion::V201 => {
            let r#type = match b.r#type {
                ResetKind::Immediate | ResetKind::ImmediateAndResume => {
                    v201::ResetEnumType::Immediate
                }
                ResetKind::OnIdle => v201::ResetEnumType::OnIdle,
            };
            let request = v201::ResetRequest {
                r#type,
                evse_id: b.evse_id,
                custom_data: None,
            };
            gw.call::<v201::action::Reset>(&id, request)
                .await?
                .status
                .as_str()
                .to_owned()
        }
        _ => {
            let r#type = match b.r#type {
                ResetKind::Immediate => v21::ResetEnumType::Immediate,
                ResetKind::OnIdle => v21::ResetEnumType::OnIdle,
                ResetKind::ImmediateAndResume => v21::ResetEnumType::ImmediateAndResume,
            };
            let request = v21::ResetRequest {
                r#type,
                evse_id: b.evse_id,
                custom_data: None,
            };
            gw.call::<v21::action::Reset>(&id, request)
                .await?
                .status
                .as_str()
                .to_owned()
        }
    };
    Ok(Json(Answered {
        station: id,
        action: "Reset",
        status,
    })
    .into_response())
}

/// A new connection profile for a station (B09, B10, and the security
/// profile upgrade of A19-A21).
#[derive(Debug, Clone)]
pub(crate) struct NetworkChange<'a> {
    /// The configuration slot it goes in.
    pub(crate) slot: i32,
    /// The CSMS's URL (`ocppCsmsUrl`).
    pub(crate) url: &'a str,
    /// The security profile to connect under.
    pub(crate) security_profile: i32,
    /// Put the slot first in `OCPPCommCtrlr.NetworkConfigurationPriority`.
    pub(crate) first: bool,
    /// Then `Reset` `OnIdle`, so the station connects with it.
    pub(crate) reset: bool,
}

/// One request of a change and the station's answer.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Step {
    /// The OCPP action.
    pub(crate) action: &'static str,
    /// What the station answered.
    pub(crate) status: String,
}

/// Whether a step's answer lets the change go on (a reset may be
/// scheduled).
pub(crate) fn accepted(status: &str) -> bool {
    matches!(status, "Accepted" | "Scheduled")
}

/// The 2.x steps (2.0.1 and 2.1 differ in a few fields only).
macro_rules! network_2x {
    ($name:ident, $ver:ident, |$c:ident| $connection:expr) => {
        async fn $name(
            gateway: &StationGateway,
            station: &str,
            change: &NetworkChange<'_>,
        ) -> Result<Vec<Step>, StationCallError> {
            let bad = |e| StationCallError::rejected(station, e);
            let mut steps = Vec::with_capacity(3);
            let $c = (change.url.parse().map_err(bad)?, change.security_profile);
            let request = $ver::SetNetworkProfileRequest {
                configuration_slot: change.slot,
                connection_data: $connection,
                custom_data: None,
            };
            let r = gateway
                .call::<$ver::action::SetNetworkProfile>(station, request)
                .await?;
            steps.push(Step {
                action: "SetNetworkProfile",
                status: r.status.as_str().to_owned(),
            });
            if !accepted(&steps[0].status) || !change.first {
                return Ok(steps);
            }
            let request = $ver::SetVariablesRequest {
                set_variable_data: vec![$ver::SetVariableDataType {
                    attribute_type: None,
                    attribute_value: change.slot.to_string().parse().map_err(bad)?,
                    component: $ver::ComponentType {
                        name: "OCPPCommCtrlr".parse().map_err(bad)?,
                        instance: None,
                        evse: None,
                        custom_data: None,
                    },
                    variable: $ver::VariableType {
                        name: "NetworkConfigurationPriority".parse().map_err(bad)?,
                        instance: None,
                        custom_data: None,
                    },
                    custom_data: None,
                }],
                custom_data: None,
            };
            let r = gateway
                .call::<$ver::action::SetVariables>(station, request)
                .await?;
            let status = r
                .set_variable_result
                .first()
                .map_or("no result", |v| v.attribute_status.as_str());
            steps.push(Step {
                action: "SetVariables",
                status: status.to_owned(),
            });
            if !accepted(&steps[1].status) || !change.reset {
                return Ok(steps);
            }
            let request = $ver::ResetRequest {
                r#type: $ver::ResetEnumType::OnIdle,
                evse_id: None,
                custom_data: None,
            };
            let r = gateway
                .call::<$ver::action::Reset>(station, request)
                .await?;
            steps.push(Step {
                action: "Reset",
                status: r.status.as_str().to_owned(),
            });
            Ok(steps)
        }
    };
}

network_2x!(network_201, v201, |c| v201::NetworkConnectionProfileType {
    custom_data: None,
    apn: None,
    ocpp_version: v201::OCPPVersionEnumType::OCPP20,
    ocpp_transport: v201::OCPPTransportEnumType::JSON,
    ocpp_csms_url: c.0,
    message_timeout: 30,
    security_profile: c.1,
    ocpp_interface: v201::OCPPInterfaceEnumType::Wired0,
    vpn: None,
});
network_2x!(network_21, v21, |c| v21::NetworkConnectionProfileType {
    apn: None,
    ocpp_version: Some(v21::OCPPVersionEnumType::OCPP21),
    ocpp_interface: v21::OCPPInterfaceEnumType::Wired0,
    ocpp_transport: v21::OCPPTransportEnumType::JSON,
    message_timeout: 30,
    ocpp_csms_url: c.0,
    security_profile: c.1,
    identity: None,
    basic_auth_password: None,
    vpn: None,
    custom_data: None,
});

/// Sends a 2.x station a new connection profile, in its version; `None`
/// for a 1.6 station (it has no network profiles).
///
/// # Errors
///
/// The call failed ([`StationCallError`]).
pub(crate) async fn change_network(
    gateway: &StationGateway,
    station: &str,
    version: ProtocolVersion,
    change: &NetworkChange<'_>,
) -> Result<Option<Vec<Step>>, StationCallError> {
    Ok(match version {
        ProtocolVersion::V16 => None,
        ProtocolVersion::V201 => Some(network_201(gateway, station, change).await?),
        _ => Some(network_21(gateway, station, change).await?),
    })
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkBody {
    /// The CSMS's URL (`ws://` for profiles 0-1, `wss://` for 2-3).
    url: String,
    /// The security profile to connect under (default: the station's).
    #[serde(default)]
    security_profile: Option<u8>,
    /// The configuration slot (default 1).
    #[serde(default)]
    slot: Option<i32>,
    /// Make it the first in `NetworkConfigurationPriority` (default true).
    #[serde(default = "yes")]
    first: bool,
    /// Then reset `OnIdle` so the station connects with it (default true).
    #[serde(default = "yes")]
    reset: bool,
}

#[derive(Debug, Serialize)]
struct NetworkChanged {
    station: String,
    url: String,
    security_profile: u8,
    steps: Vec<Step>,
}

/// `POST /api/stations/{id}/network-profile` (B09, B10): 200 with the
/// steps when every step was accepted, 502 with them when the station
/// refused one (the steps after it are not sent).
async fn network_profile(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let b: NetworkBody = body(&bytes)?;
    let Some(station) = app.store.station(&id).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown station {id}"),
        ));
    };
    let profile = b
        .security_profile
        .or(station.security_profile)
        .unwrap_or(app.config.security_profile);
    if profile > 3 {
        return Err(bad("security_profile: 0 to 3"));
    }
    let tls = b.url.starts_with("wss://");
    if !(tls || b.url.starts_with("ws://")) || tls != (profile >= 2) {
        return Err(bad(
            "url: ws:// for security profiles 0 and 1, wss:// for 2 and 3",
        ));
    }
    if matches!(b.slot, Some(s) if s <= 0) {
        return Err(bad("slot: 1 or more"));
    }
    let version = app.gateway.connection(&id).await?;
    if let Err(why) = crate::ocpp::may_send(&app, &id, "SetNetworkProfile").await? {
        return Err(ApiError::new(StatusCode::CONFLICT, why));
    }
    let change = NetworkChange {
        slot: b.slot.unwrap_or(1),
        url: &b.url,
        security_profile: i32::from(profile),
        first: b.first,
        reset: b.reset,
    };
    if change.reset {
        app.maintenance.reset_requested(&id, chrono::Utc::now());
    }
    let Some(steps) = change_network(&app.gateway, &id, version, &change).await? else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{id} speaks OCPP 1.6, which has no network profiles"),
        ));
    };
    if let Some(s) = steps.iter().find(|s| !accepted(&s.status)) {
        return Err(ApiError(
            StatusCode::BAD_GATEWAY,
            serde_json::json!({"error": format!("{id} answered {} to {}", s.status, s.action), "steps": steps}),
        ));
    }
    tracing::info!(station = %id, url = %b.url, profile, "network profile sent");
    Ok(Json(NetworkChanged {
        station: id,
        url: b.url,
        security_profile: profile,
        steps,
    })
    .into_response())
}
