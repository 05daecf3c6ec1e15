//! The grid side of a simulated 2.1 station: dynamic charging schedules
//! (`UpdateDynamicSchedule` on a profile the station accepted), DER
//! controls (`SetDERControl`, `GetDERControl` answered with
//! `ReportDERControl`, `ClearDERControl`), kept per station, and periodic
//! event streams (opened by the station; `GetPeriodicEventStream` and
//! `AdjustPeriodicEventStream` from the CSMS; `ClearVariableMonitoring` of
//! the stream's monitor makes the station close it).
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
    /// Open periodic event streams by id: their constant data as sent
    /// (`id`, `variableMonitoringId`, `params`) and when the next value is due, ms.
    streams: BTreeMap<i64, (Value, u64)>,
}

/// The station's stream: id 1, of its power monitor (id 1).
pub const STREAM_ID: i64 = 1;

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

    /// The `OpenPeriodicEventStream` the station sends (values every
    /// `interval_s`, one per message).
    pub fn open_stream_request(interval_s: u32) -> Value {
        json!({"constantStreamData": {"id": STREAM_ID, "variableMonitoringId": 1,
            "params": {"interval": interval_s, "values": 1}}})
    }

    /// The CSMS accepted the stream `request` opened: values are due from `now_ms`.
    pub fn stream_opened(&mut self, request: &Value, now_ms: u64) {
        let c = &request["constantStreamData"];
        if let Some(id) = c["id"].as_i64() {
            self.streams.insert(id, (c.clone(), now_ms));
        }
    }

    /// Whether a stream is open.
    pub fn streaming(&self) -> bool {
        !self.streams.is_empty()
    }

    /// The `NotifyPeriodicEventStream`s due at `now_ms`, with the station's
    /// `power_w` as their value at `basetime` (`t` 0): their payloads.
    pub fn due_stream_values(&mut self, now_ms: u64, power_w: f64, basetime: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for (id, (c, next)) in &mut self.streams {
            if now_ms < *next {
                continue;
            }
            let every = c["params"]["interval"].as_u64().unwrap_or(1).max(1);
            *next = now_ms + every * 1000;
            out.push(json!({"id": id, "pending": 0, "basetime": basetime,
                "data": [{"t": 0, "v": format!("{power_w:.1}")}]}));
        }
        out
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
                if !model.der_supports(&kind) {
                    return Some(json!({"status": "NotSupported"}));
                }
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
            "GetPeriodicEventStream" => {
                let open: Vec<Value> = self.streams.values().map(|(c, _)| c.clone()).collect();
                if open.is_empty() {
                    json!({})
                } else {
                    json!({"constantStreamData": open})
                }
            }
            "AdjustPeriodicEventStream" => {
                let id = req["id"].as_i64().unwrap_or_default();
                match self.streams.get_mut(&id) {
                    Some((c, _)) => {
                        c["params"] = req["params"].clone();
                        json!({"status": "Accepted"})
                    }
                    None => json!({"status": "Rejected"}),
                }
            }
            // the CSMS ends a stream by clearing its monitor: the station
            // then closes the stream (ClosePeriodicEventStream is the station's)
            "ClearVariableMonitoring" => {
                let results: Vec<Value> = req["id"]
                    .as_array()
                    .map(|a| a.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .map(|m| {
                        let closed: Vec<i64> = self
                            .streams
                            .iter()
                            .filter(|(_, (c, _))| c["variableMonitoringId"] == *m)
                            .map(|(id, _)| *id)
                            .collect();
                        for id in &closed {
                            self.streams.remove(id);
                            out.push(Msg::Grid {
                                action: "ClosePeriodicEventStream",
                                payload: json!({"id": id}),
                            });
                        }
                        let status = if closed.is_empty() {
                            "NotFound"
                        } else {
                            "Accepted"
                        };
                        json!({"id": m, "status": status})
                    })
                    .collect();
                json!({"clearMonitoringResult": results})
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
    fn a_stream_sends_at_its_interval_until_adjusted_or_closed() {
        let mut m = StationModel::new("S", 1, Behaviour::default(), 1);
        let mut g = GridState::default();
        let mut out = Vec::new();
        let open = GridState::open_stream_request(1);
        evproto_ocpp_types::from_str::<v21::OpenPeriodicEventStreamRequest>(&open.to_string())
            .unwrap();
        assert!(g
            .due_stream_values(0, 1.0, "2026-01-01T00:00:00Z")
            .is_empty());
        g.stream_opened(&open, 0);
        let sent = g.due_stream_values(0, 11_000.0, "2026-01-01T00:00:00Z");
        assert_eq!(sent.len(), 1);
        let n: v21::NotifyPeriodicEventStreamRequest =
            evproto_ocpp_types::from_str(&sent[0].to_string()).unwrap();
        assert_eq!((n.id, n.data[0].v.as_str()), (1, "11000.0"));
        assert!(g
            .due_stream_values(500, 1.0, "2026-01-01T00:00:00Z")
            .is_empty());
        assert_eq!(
            g.due_stream_values(1_000, 1.0, "2026-01-01T00:00:01Z")
                .len(),
            1
        );
        let got = g
            .on_call(&mut m, "GetPeriodicEventStream", &json!({}), &mut out)
            .unwrap();
        let got: v21::GetPeriodicEventStreamResponse =
            evproto_ocpp_types::from_str(&got.to_string()).unwrap();
        assert_eq!(
            got.constant_stream_data.unwrap()[0].params.interval,
            Some(1)
        );
        let adjust = json!({"id": 1, "params": {"interval": 3, "values": 1}});
        let a = g
            .on_call(&mut m, "AdjustPeriodicEventStream", &adjust, &mut out)
            .unwrap();
        assert_eq!(a["status"], "Accepted");
        assert_eq!(
            g.due_stream_values(2_000, 1.0, "2026-01-01T00:00:02Z")
                .len(),
            1
        );
        assert!(g
            .due_stream_values(4_000, 1.0, "2026-01-01T00:00:04Z")
            .is_empty());
        let unknown = json!({"id": 9, "params": {}});
        let a = g
            .on_call(&mut m, "AdjustPeriodicEventStream", &unknown, &mut out)
            .unwrap();
        assert_eq!(a["status"], "Rejected");
        let c = g
            .on_call(
                &mut m,
                "ClearVariableMonitoring",
                &json!({"id": [1, 5]}),
                &mut out,
            )
            .unwrap();
        let c: v21::ClearVariableMonitoringResponse =
            evproto_ocpp_types::from_str(&c.to_string()).unwrap();
        let statuses: Vec<_> = c
            .clear_monitoring_result
            .iter()
            .map(|r| r.status.as_str())
            .collect();
        assert_eq!(statuses, ["Accepted", "NotFound"]);
        let Some(Msg::Grid { action, payload }) = out.pop() else {
            panic!("the station closes the stream")
        };
        assert_eq!(
            (action, payload),
            ("ClosePeriodicEventStream", json!({"id": 1}))
        );
        assert!(!g.streaming());
        assert!(g
            .due_stream_values(9_000, 1.0, "2026-01-01T00:00:09Z")
            .is_empty());
        let got = g
            .on_call(&mut m, "GetPeriodicEventStream", &json!({}), &mut out)
            .unwrap();
        assert_eq!(got, json!({}));
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
