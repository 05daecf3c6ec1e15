//! The grid side of a simulated 2.1 station: dynamic charging schedules
//! (`UpdateDynamicSchedule` on a profile the station accepted) and DER
//! controls (`SetDERControl`, `GetDERControl` answered with
//! `ReportDERControl`, `ClearDERControl`), kept per station.
//!
//! Requests and answers are JSON here, as in the rest of the simulator's
//! CSMS-call handling; the typed routes decode the request first and check
//! the answer against the response schema.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use crate::model::{Answer, Msg, StationModel};

/// What a station holds of the grid side.
#[derive(Debug, Default)]
pub struct GridState {
    /// Charging profile id → the EVSE it was set on (a 2.1 profile with a
    /// setpoint the station follows), for `UpdateDynamicSchedule`.
    profiles: HashMap<i64, Option<u32>>,
    /// DER controls by id: (control type, whether a default, the request's
    /// control as sent).
    der: BTreeMap<String, (String, bool, Value)>,
}

fn status(a: Answer) -> &'static str {
    match a {
        Answer::Accepted => "Accepted",
        Answer::Rejected => "Rejected",
        Answer::Scheduled => "Scheduled",
    }
}

impl GridState {
    /// A charging profile with a setpoint was accepted on `evse`.
    pub fn profile_set(&mut self, profile: &Value, evse: Option<u32>) {
        if let Some(id) = profile.get("id").and_then(Value::as_i64) {
            self.profiles.insert(id, evse);
        }
    }

    /// A CSMS call this module answers (`None`: not one of them). The
    /// messages the station sends because of it are pushed to `out`.
    pub fn on_call(
        &mut self,
        model: &mut StationModel,
        action: &str,
        req: &Value,
        out: &mut Vec<Msg>,
    ) -> Option<Value> {
        Some(match action {
            "UpdateDynamicSchedule" => {
                let id = req["chargingProfileId"].as_i64().unwrap_or_default();
                let update = &req["scheduleUpdate"];
                let answer = match (self.profiles.get(&id), update["setpoint"].as_f64()) {
                    (None, _) => None,
                    (Some(evse), Some(sp)) => Some(model.set_setpoint(*evse, sp)),
                    (Some(evse), None) => {
                        update["limit"].as_f64().map(|w| model.set_limit(*evse, w))
                    }
                };
                match answer {
                    Some(a) => json!({"status": status(a)}),
                    None => {
                        json!({"status": "Rejected", "statusInfo": {"reasonCode": "UnknownProfile"}})
                    }
                }
            }
            "SetDERControl" => {
                let id = req["controlId"].as_str().unwrap_or_default().to_owned();
                let kind = req["controlType"].as_str().unwrap_or_default().to_owned();
                let default = req["isDefault"].as_bool().unwrap_or(false);
                // one control of a type per default/scheduled kind: a new one supersedes
                let superseded: Vec<String> = self
                    .der
                    .iter()
                    .filter(|(k, (t, d, _))| **k != id && *t == kind && *d == default)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in &superseded {
                    self.der.remove(k);
                }
                self.der.insert(id, (kind, default, req.clone()));
                let mut a = json!({"status": "Accepted"});
                if !superseded.is_empty() {
                    a["supersededIds"] = json!(superseded);
                }
                a
            }
            "GetDERControl" => {
                let rid = req["requestId"].as_i64().unwrap_or_default();
                let kind = req["controlType"].as_str();
                let id = req["controlId"].as_str();
                let default = req["isDefault"].as_bool();
                let chosen: Vec<&(String, bool, Value)> = self
                    .der
                    .iter()
                    .filter(|(k, (t, d, _))| {
                        id.is_none_or(|i| i == k.as_str())
                            && kind.is_none_or(|x| x == t)
                            && default.is_none_or(|x| x == *d)
                    })
                    .map(|(_, v)| v)
                    .collect();
                if chosen.is_empty() {
                    return Some(json!({"status": "NotFound"}));
                }
                out.push(Msg::Grid {
                    action: "ReportDERControl",
                    payload: report(rid, &chosen),
                });
                json!({"status": "Accepted"})
            }
            "ClearDERControl" => {
                let kind = req["controlType"].as_str();
                let id = req["controlId"].as_str();
                let default = req["isDefault"].as_bool().unwrap_or(false);
                let before = self.der.len();
                self.der.retain(|k, (t, d, _)| {
                    !(id.is_none_or(|i| i == k.as_str())
                        && kind.is_none_or(|x| x == t)
                        && *d == default)
                });
                if self.der.len() < before {
                    json!({"status": "Accepted"})
                } else {
                    json!({"status": "NotFound"})
                }
            }
            _ => return None,
        })
    }

    /// The DER controls the station holds: (id, control type).
    pub fn der_controls(&self) -> Vec<(String, String)> {
        self.der
            .iter()
            .map(|(k, (t, _, _))| (k.clone(), t.clone()))
            .collect()
    }
}

/// The 2.1 `ReportDERControl` of `controls`: each control in the list of
/// its type (`curve` for the curve types, `fixedPFAbsorb`/`fixedPFInject`,
/// `fixedVar`, `limitMaxDischarge`, `freqDroop`, `enterService`,
/// `gradient`), with the `id`, `isDefault` and `isSuperseded` the report
/// carries.
fn report(request_id: i64, controls: &[&(String, bool, Value)]) -> Value {
    let mut r = json!({"requestId": request_id, "tbc": false});
    for (kind, default, req) in controls {
        // (the report's list, the set request's field, the item's field, whether it has the flags)
        let (list, field, inner, flags) = match kind.as_str() {
            "FixedPFAbsorb" => ("fixedPFAbsorb", "fixedPFAbsorb", "fixedPF", true),
            "FixedPFInject" => ("fixedPFInject", "fixedPFInject", "fixedPF", true),
            "FixedVar" => ("fixedVar", "fixedVar", "fixedVar", true),
            "LimitMaxDischarge" => (
                "limitMaxDischarge",
                "limitMaxDischarge",
                "limitMaxDischarge",
                true,
            ),
            "FreqDroop" => ("freqDroop", "freqDroop", "freqDroop", true),
            "EnterService" => ("enterService", "enterService", "enterService", false),
            "Gradients" => ("gradient", "gradient", "gradient", false),
            _ => ("curve", "curve", "curve", true),
        };
        let Some(value) = req.get(field).cloned().filter(Value::is_object) else {
            continue;
        };
        let mut item = json!({ inner: value, "id": req["controlId"] });
        if list == "curve" {
            item["curveType"] = json!(kind);
        }
        if flags {
            item["isDefault"] = json!(default);
            item["isSuperseded"] = json!(false);
        }
        if let Some(a) = r.get_mut(list).and_then(Value::as_array_mut) {
            a.push(item);
        } else {
            r[list] = json!([item]);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Behaviour;
    use evproto_ocpp_types::v21;

    fn limit_max_discharge(id: &str, pct: f64) -> Value {
        json!({"isDefault": false, "controlId": id, "controlType": "LimitMaxDischarge",
            "limitMaxDischarge": {"priority": 1, "pctMaxDischargePower": pct,
                "startTime": "2026-01-01T00:00:00Z", "duration": 3600}})
    }

    #[test]
    fn der_controls_are_kept_reported_superseded_and_cleared() {
        let mut m = StationModel::new("S", 1, Behaviour::default(), 1);
        let mut g = GridState::default();
        let mut out = Vec::new();
        let set = |g: &mut GridState, m: &mut StationModel, req: Value| {
            let a = g
                .on_call(m, "SetDERControl", &req, &mut Vec::new())
                .unwrap();
            evproto_ocpp_types::from_str::<v21::SetDERControlResponse>(&a.to_string()).unwrap();
            a
        };
        assert_eq!(
            set(&mut g, &mut m, limit_max_discharge("a", 50.0))["status"],
            "Accepted"
        );
        let a = set(&mut g, &mut m, limit_max_discharge("b", 30.0));
        assert_eq!(a["supersededIds"], json!(["a"]));
        assert_eq!(
            g.der_controls(),
            vec![("b".into(), "LimitMaxDischarge".into())]
        );
        let got = g
            .on_call(
                &mut m,
                "GetDERControl",
                &json!({"requestId": 7, "controlType": "LimitMaxDischarge"}),
                &mut out,
            )
            .unwrap();
        assert_eq!(got["status"], "Accepted");
        let Some(Msg::Grid { action, payload }) = out.pop() else {
            panic!("a report is sent")
        };
        assert_eq!(action, "ReportDERControl");
        let r: v21::ReportDERControlRequest =
            evproto_ocpp_types::from_str(&payload.to_string()).unwrap();
        assert_eq!(r.request_id, 7);
        let l = r.limit_max_discharge.unwrap();
        assert_eq!(l[0].id.as_str(), "b");
        let none = g.on_call(
            &mut m,
            "GetDERControl",
            &json!({"requestId": 8, "controlId": "zz"}),
            &mut out,
        );
        assert_eq!(none.unwrap()["status"], "NotFound");
        let c = g
            .on_call(
                &mut m,
                "ClearDERControl",
                &json!({"isDefault": false, "controlId": "b"}),
                &mut out,
            )
            .unwrap();
        assert_eq!(c["status"], "Accepted");
        assert!(g.der_controls().is_empty());
        let c = g
            .on_call(
                &mut m,
                "ClearDERControl",
                &json!({"isDefault": false}),
                &mut out,
            )
            .unwrap();
        assert_eq!(c["status"], "NotFound");
    }

    #[test]
    fn a_dynamic_update_moves_the_setpoint_of_a_known_profile_only() {
        let mut m = StationModel::new("S", 1, Behaviour::default(), 1);
        let mut g = GridState::default();
        let mut out = Vec::new();
        let upd = json!({"chargingProfileId": 5, "scheduleUpdate": {"setpoint": 3000}});
        let a = g
            .on_call(&mut m, "UpdateDynamicSchedule", &upd, &mut out)
            .unwrap();
        assert_eq!(a["status"], "Rejected");
        evproto_ocpp_types::from_str::<v21::UpdateDynamicScheduleResponse>(&a.to_string()).unwrap();
        let (answer, _) = m.remote_start(Some(1), "T", None);
        assert_eq!(answer, Answer::Accepted);
        g.profile_set(&json!({"id": 5}), Some(1));
        let a = g
            .on_call(&mut m, "UpdateDynamicSchedule", &upd, &mut out)
            .unwrap();
        assert_eq!(a["status"], "Accepted");
        assert!(g.on_call(&mut m, "Reset", &json!({}), &mut out).is_none());
    }
}
