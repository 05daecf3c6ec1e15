//! The device model a 2.x station reports (B05–B08), kept per variable
//! (`device_model` rows, shown at `GET /api/stations/{id}/device-model`):
//! NotifyReport parts (after GetBaseReport or GetReport) store each
//! variable as the station reported it, and the answers to the operator's
//! SetVariables and GetVariables update the values they name, so the
//! device model shown is what the station has now. A value the station
//! refused (`Rejected`, `UnknownComponent`, `UnknownVariable`,
//! `NotSupportedAttributeType`) changes nothing; `RebootRequired` is kept
//! (the station takes it at its next boot).
//!
//! The rules are plain functions on the typed messages (one module per
//! version, [`v201`] and [`v21`]); [`learn`] reads and writes the rows.

use evproto_ocpp_proto::ProtocolVersion;
use evproto_ocpp_types::Action;

use crate::App;

/// A value learnt from an answer: the component, the variable, the
/// attribute (absent: `Actual`) and its value.
type Learnt<C, V, A> = (C, V, Option<A>, String);

macro_rules! device_model_2x {
    ($ver:ident) => {
        /// The rules on this version's messages.
        pub(crate) mod $ver {
            use evproto_ocpp_types::$ver::{
                AttributeEnumType, ComponentType, GetVariableStatusEnumType, GetVariablesResponse,
                ReportDataType, SetVariableStatusEnumType, SetVariablesRequest,
                SetVariablesResponse, VariableAttributeType, VariableType,
            };

            use super::Learnt;

            /// A learnt value of this version.
            pub(crate) type Value = Learnt<ComponentType, VariableType, AttributeEnumType>;

            /// The keys a component and a variable are stored under.
            pub(crate) fn keys(c: &ComponentType, v: &VariableType) -> (String, String) {
                (
                    crate::ocpp::component_key(
                        &c.name,
                        c.instance.as_deref(),
                        c.evse.as_ref().map(|e| e.id),
                    ),
                    crate::ocpp::variable_key(&v.name, v.instance.as_deref()),
                )
            }

            /// The values SetVariables set: each request entry the station
            /// answered `Accepted` or `RebootRequired` (matched by component,
            /// variable and attribute).
            pub(crate) fn set(
                req: &SetVariablesRequest,
                resp: &SetVariablesResponse,
            ) -> Vec<Value> {
                let kept = |s: SetVariableStatusEnumType| {
                    matches!(
                        s,
                        SetVariableStatusEnumType::Accepted
                            | SetVariableStatusEnumType::RebootRequired
                    )
                };
                let attribute =
                    |a: Option<AttributeEnumType>| a.unwrap_or(AttributeEnumType::Actual);
                req.set_variable_data
                    .iter()
                    .filter(|d| {
                        resp.set_variable_result.iter().any(|r| {
                            kept(r.attribute_status)
                                && keys(&r.component, &r.variable)
                                    == keys(&d.component, &d.variable)
                                && attribute(r.attribute_type) == attribute(d.attribute_type)
                        })
                    })
                    .map(|d| {
                        (
                            d.component.clone(),
                            d.variable.clone(),
                            d.attribute_type,
                            d.attribute_value.as_str().to_owned(),
                        )
                    })
                    .collect()
            }

            /// The values GetVariables read: each `Accepted` result with a value.
            pub(crate) fn got(resp: &GetVariablesResponse) -> Vec<Value> {
                resp.get_variable_result
                    .iter()
                    .filter(|r| r.attribute_status == GetVariableStatusEnumType::Accepted)
                    .filter_map(|r| {
                        Some((
                            r.component.clone(),
                            r.variable.clone(),
                            r.attribute_type,
                            r.attribute_value.as_ref()?.as_str().to_owned(),
                        ))
                    })
                    .collect()
            }

            /// `stored` (the variable as kept, if it was) with `value` as its
            /// attribute's value; a variable not kept yet gets a report of
            /// that attribute alone. `None`: a value too long for a report.
            pub(crate) fn with_value(
                stored: Option<ReportDataType>,
                value: Value,
            ) -> Option<ReportDataType> {
                let (component, variable, attribute, value) = value;
                let mut data = stored.unwrap_or(ReportDataType {
                    component,
                    variable,
                    variable_attribute: Vec::new(),
                    variable_characteristics: None,
                    custom_data: None,
                });
                let want = attribute.unwrap_or(AttributeEnumType::Actual);
                let value = value.parse().ok()?;
                match data
                    .variable_attribute
                    .iter_mut()
                    .find(|a| a.r#type.unwrap_or(AttributeEnumType::Actual) == want)
                {
                    Some(a) => a.value = Some(value),
                    None => data.variable_attribute.push(VariableAttributeType {
                        r#type: Some(want),
                        value: Some(value),
                        mutability: None,
                        persistent: None,
                        constant: None,
                        custom_data: None,
                    }),
                }
                Some(data)
            }
        }
    };
}
device_model_2x!(v201);
device_model_2x!(v21);

/// Why an answer was not learnt.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LearnError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A stored variable did not decode or encode.
    #[error("device model: {0}")]
    Stored(#[from] serde_json::Error),
    /// The exchange did not decode.
    #[error("device model: {0}")]
    Exchange(#[from] evproto_ocpp_types::DecodeError),
}

macro_rules! learn_2x {
    ($app:expr, $station:expr, $ver:ident, $action:expr, $request:expr, $answer:expr) => {{
        use evproto_ocpp_types::$ver::{action, ReportDataType};
        let values = if $action == action::SetVariables::NAME {
            $ver::set(
                &evproto_ocpp_types::from_str($request)?,
                &evproto_ocpp_types::from_str($answer)?,
            )
        } else if $action == action::GetVariables::NAME {
            $ver::got(&evproto_ocpp_types::from_str($answer)?)
        } else {
            Vec::new()
        };
        let cap = $app.config.station_limits.max_device_model_rows;
        for value in values {
            let (component, variable) = $ver::keys(&value.0, &value.1);
            let stored = match $app
                .store
                .device_variable($station, &component, &variable)
                .await?
            {
                Some(body) => Some(serde_json::from_value::<ReportDataType>(body)?),
                None => None,
            };
            if let Some(data) = $ver::with_value(stored, value) {
                let body = serde_json::to_value(&data)?;
                $app.store
                    .put_device_model($station, &component, &variable, &body, cap)
                    .await?;
            }
        }
        Ok(())
    }};
}

/// The station's answer to the operator's `action` (`request`, `answer`:
/// the exchange's JSON): the values SetVariables set and GetVariables read
/// are kept in the device model. Other actions and 1.6 stations: nothing.
///
/// # Errors
///
/// The store failed, or the exchange or a stored variable did not decode.
pub(crate) async fn learn(
    app: &App,
    station: &str,
    version: ProtocolVersion,
    action: &str,
    request: &str,
    answer: &str,
) -> Result<(), LearnError> {
    match version {
        ProtocolVersion::V201 => learn_2x!(app, station, v201, action, request, answer),
        ProtocolVersion::V21 => learn_2x!(app, station, v21, action, request, answer),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use evproto_ocpp_types::{from_str, v201};

    #[test]
    fn accepted_values_are_set_and_refused_ones_are_not() {
        let req: v201::SetVariablesRequest = from_str(
            r#"{"setVariableData":[
              {"attributeValue":"120","component":{"name":"OCPPCommCtrlr"},"variable":{"name":"HeartbeatInterval"}},
              {"attributeValue":"45","component":{"name":"TxCtrlr"},"variable":{"name":"EVConnectionTimeOut"}},
              {"attributeValue":"7","attributeType":"Target","component":{"name":"X","evse":{"id":1}},"variable":{"name":"Y","instance":"i"}}]}"#,
        )
        .unwrap();
        let resp: v201::SetVariablesResponse = from_str(
            r#"{"setVariableResult":[
              {"attributeStatus":"Accepted","component":{"name":"OCPPCommCtrlr"},"variable":{"name":"HeartbeatInterval"}},
              {"attributeStatus":"Rejected","component":{"name":"TxCtrlr"},"variable":{"name":"EVConnectionTimeOut"}},
              {"attributeStatus":"RebootRequired","attributeType":"Target","component":{"name":"X","evse":{"id":1}},"variable":{"name":"Y","instance":"i"}}]}"#,
        )
        .unwrap();
        let set = super::v201::set(&req, &resp);
        let names: Vec<_> = set
            .iter()
            .map(|v| (v.1.name.as_str(), v.3.as_str()))
            .collect();
        assert_eq!(names, [("HeartbeatInterval", "120"), ("Y", "7")]);
        assert_eq!(
            super::v201::keys(&set[1].0, &set[1].1),
            ("X@evse1".to_owned(), "Y[i]".to_owned())
        );
        // the same entry answered for another attribute: not set
        let other: v201::SetVariablesResponse = from_str(
            r#"{"setVariableResult":[{"attributeStatus":"Accepted","attributeType":"MaxSet","component":{"name":"OCPPCommCtrlr"},"variable":{"name":"HeartbeatInterval"}}]}"#,
        )
        .unwrap();
        assert!(super::v201::set(&req, &other).is_empty());
    }

    #[test]
    fn a_value_replaces_its_attribute_only_or_is_added() {
        let stored: v201::ReportDataType = from_str(
            r#"{"component":{"name":"OCPPCommCtrlr"},"variable":{"name":"HeartbeatInterval"},
              "variableAttribute":[{"type":"Actual","value":"60","mutability":"ReadWrite"},{"type":"MaxSet","value":"3600"}]}"#,
        )
        .unwrap();
        let value = (
            stored.component.clone(),
            stored.variable.clone(),
            None,
            "120".to_owned(),
        );
        let data = super::v201::with_value(Some(stored.clone()), value.clone()).unwrap();
        let attrs: Vec<_> = data
            .variable_attribute
            .iter()
            .map(|a| a.value.as_ref().map(|v| v.as_str().to_owned()))
            .collect();
        assert_eq!(attrs, [Some("120".to_owned()), Some("3600".to_owned())]);
        assert_eq!(
            data.variable_attribute[0].mutability,
            Some(v201::MutabilityEnumType::ReadWrite)
        );
        // not kept yet: a report of that attribute alone
        let new = super::v201::with_value(None, value).unwrap();
        assert_eq!(new.variable_attribute.len(), 1);
        assert_eq!(
            new.variable_attribute[0].r#type,
            Some(v201::AttributeEnumType::Actual)
        );
        let got: v201::GetVariablesResponse = from_str(
            r#"{"getVariableResult":[{"attributeStatus":"Accepted","attributeValue":"true","component":{"name":"AuthCtrlr"},"variable":{"name":"Enabled"}},
              {"attributeStatus":"UnknownVariable","component":{"name":"AuthCtrlr"},"variable":{"name":"Nope"}}]}"#,
        )
        .unwrap();
        let got = super::v201::got(&got);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].3, "true");
    }
}
