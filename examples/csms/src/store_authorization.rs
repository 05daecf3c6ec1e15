//! What authorization reads beyond a token's record (csms-core's
//! `authorization::authorize` takes it as a plain value): the master-pass
//! group a 2.x station was given (rule 4, 2.0.1 C16).

use evproto_ocpp_types::{v201, v21};

use crate::store::{Result, Store};

impl Store {
    /// The station's master-pass group: the `Actual` value of
    /// `AuthCtrlr.MasterPassGroupId` in the device model it reported
    /// (NotifyReport), when it reported one.
    pub async fn master_pass_group(&self, station: &str) -> Result<Option<String>> {
        let Some(body) = self
            .device_variable(station, "AuthCtrlr", "MasterPassGroupId")
            .await?
        else {
            return Ok(None);
        };
        // the Actual attribute's value, as the station's version reported it
        macro_rules! actual {
            ($data:expr) => {
                $data.variable_attribute.into_iter().find_map(|a| {
                    let kind = a.r#type.map(|t| t.as_str());
                    kind.is_none_or(|k| k == "Actual")
                        .then(|| a.value.map(|v| v.as_str().to_owned()))
                        .flatten()
                })
            };
        }
        let value = match serde_json::from_value::<v201::ReportDataType>(body.clone()) {
            Ok(d) => actual!(d),
            Err(_) => serde_json::from_value::<v21::ReportDataType>(body)
                .ok()
                .and_then(|d| actual!(d)),
        };
        Ok(value.filter(|v| !v.trim().is_empty()))
    }
}
