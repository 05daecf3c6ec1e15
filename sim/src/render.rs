//! Renders the model's version-neutral messages as OCPP 1.6 / 2.0.1 / 2.1
//! payloads (the shell parses them into the generated types before sending,
//! so a payload that breaks its schema never leaves the station).

use chrono::{DateTime, SecondsFormat, Utc};
use evproto_ocpp_proto::ProtocolVersion;
use serde_json::{json, Value};

use super::model::{Status, StopReason, Tx};

/// A time as the station writes it (RFC 3339, UTC).
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// BootNotification request (2.x: after a power-up).
pub fn boot(v: ProtocolVersion, model: &str, serial: &str) -> Value {
    boot_for(v, model, serial, "PowerUp")
}

/// BootNotification request; 2.x with its `reason` (a
/// `BootReasonEnumType`: `PowerUp`, `RemoteReset`, `Watchdog`, ...).
pub fn boot_for(v: ProtocolVersion, model: &str, serial: &str, reason: &str) -> Value {
    match v {
        ProtocolVersion::V16 => json!({
            "chargePointVendor": "evproto", "chargePointModel": model,
            "chargePointSerialNumber": serial, "firmwareVersion": env!("CARGO_PKG_VERSION"),
        }),
        _ => json!({
            "reason": reason,
            "chargingStation": {"model": model, "vendorName": "evproto", "serialNumber": serial,
                "firmwareVersion": env!("CARGO_PKG_VERSION")},
        }),
    }
}

/// StatusNotification request.
pub fn status(v: ProtocolVersion, connector: u32, s: Status, now: DateTime<Utc>) -> Value {
    match v {
        ProtocolVersion::V16 => {
            let (status, error) = match s {
                Status::Available => ("Available", "NoError"),
                Status::Preparing => ("Preparing", "NoError"),
                Status::Charging => ("Charging", "NoError"),
                Status::Finishing => ("Finishing", "NoError"),
                Status::Faulted => ("Faulted", "OtherError"),
                Status::Unavailable => ("Unavailable", "NoError"),
            };
            json!({"connectorId": connector, "errorCode": error, "status": status, "timestamp": ts(now)})
        }
        _ => {
            let status = match s {
                Status::Available => "Available",
                Status::Preparing | Status::Charging | Status::Finishing => "Occupied",
                Status::Faulted => "Faulted",
                Status::Unavailable => "Unavailable",
            };
            json!({"timestamp": ts(now), "connectorStatus": status, "evseId": connector, "connectorId": 1})
        }
    }
}

/// Authorize request.
pub fn authorize(v: ProtocolVersion, token: &str) -> Value {
    match v {
        ProtocolVersion::V16 => json!({"idTag": token}),
        _ => json!({"idToken": {"idToken": token, "type": "ISO14443"}}),
    }
}

fn wh(x: f64) -> i64 {
    x.floor() as i64
}

/// Import register and power; with `export_wh` (a bidirectional car's
/// transaction) the export register too, and a negative power as
/// `Power.Active.Export`.
fn sampled_v2(register_wh: f64, power_w: f64, export_wh: Option<f64>) -> Value {
    // 2.x sampled values are numbers; one decimal keeps them exact in JSON
    let r = (register_wh * 10.0).floor() / 10.0;
    let p = (power_w.max(0.0) * 10.0).round() / 10.0;
    let mut v = vec![
        json!({"value": r, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}}),
        json!({"value": p, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}}),
    ];
    if let Some(e) = export_wh {
        let out = ((-power_w).max(0.0) * 10.0).round() / 10.0;
        v.push(json!({"value": (e * 10.0).floor() / 10.0, "measurand": "Energy.Active.Export.Register", "unitOfMeasure": {"unit": "Wh"}}));
        v.push(json!({"value": out, "measurand": "Power.Active.Export", "unitOfMeasure": {"unit": "W"}}));
    }
    Value::Array(v)
}

/// The current on each line the car draws on while it charges, A (one
/// decimal, 230 V per phase): L1 for a single-phase car, L1 to L3 for a
/// three-phase one; none while it discharges or draws nothing.
fn line_currents(tx: &Tx) -> Vec<(&'static str, f64)> {
    if tx.power_w <= 0.0 {
        return Vec::new();
    }
    let phases = tx.phases.clamp(1, 3);
    let a = (tx.power_w / (230.0 * f64::from(phases)) * 10.0).floor() / 10.0;
    ["L1", "L2", "L3"][..usize::from(phases)]
        .iter()
        .map(|l| (*l, a))
        .collect()
}

/// The transaction's start: (action, payload).
pub fn tx_start(
    v: ProtocolVersion,
    connector: u32,
    tx: &Tx,
    now: DateTime<Utc>,
) -> (&'static str, Value) {
    match v {
        ProtocolVersion::V16 => (
            "StartTransaction",
            json!({"connectorId": connector, "idTag": tx.token, "meterStart": wh(tx.meter_start_wh), "timestamp": ts(now)}),
        ),
        _ => {
            let mut p = json!({
                "eventType": "Started", "timestamp": ts(now),
                "triggerReason": if tx.remote_start_id.is_some() { "RemoteStart" } else { "Authorized" },
                "seqNo": 0,
                "transactionInfo": {"transactionId": tx.local_id, "chargingState": "Charging"},
                "idToken": {"idToken": tx.token, "type": "ISO14443"},
                "evse": {"id": connector, "connectorId": 1},
                "meterValue": [{"timestamp": ts(now), "sampledValue": [
                    {"value": (tx.meter_start_wh * 10.0).floor() / 10.0, "measurand": "Energy.Active.Import.Register", "context": "Transaction.Begin"}]}],
            });
            if let Some(id) = tx.remote_start_id {
                p["transactionInfo"]["remoteStartId"] = json!(id);
            }
            ("TransactionEvent", p)
        }
    }
}

/// What a meter value reports besides the energy register and the power.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Readings {
    /// The connector's temperature, °C (1.6 only).
    pub temperature_c: Option<f64>,
    /// The supply voltage, phase L1-N, V.
    pub voltage_v: Option<f64>,
    /// The export register, Wh (a bidirectional car's transaction).
    pub export_wh: Option<f64>,
}

/// A periodic meter value during the transaction: (action, payload).
pub fn tx_meter(
    v: ProtocolVersion,
    connector: u32,
    tx: &Tx,
    register_wh: f64,
    readings: Readings,
    now: DateTime<Utc>,
) -> (&'static str, Value) {
    let Readings {
        temperature_c,
        voltage_v,
        export_wh,
    } = readings;
    match v {
        ProtocolVersion::V16 => {
            let mut p = json!({"connectorId": connector, "meterValue": [{"timestamp": ts(now), "sampledValue": [
                {"value": wh(register_wh).to_string(), "measurand": "Energy.Active.Import.Register", "unit": "Wh", "context": "Sample.Periodic"},
                {"value": format!("{:.1}", tx.power_w), "measurand": "Power.Active.Import", "unit": "W", "context": "Sample.Periodic"},
            ]}]});
            if let Some(values) = p["meterValue"][0]["sampledValue"].as_array_mut() {
                for (line, a) in line_currents(tx) {
                    values.push(json!({"value": format!("{a:.1}"), "measurand": "Current.Import", "phase": line, "unit": "A", "context": "Sample.Periodic"}));
                }
                if let Some(t) = temperature_c {
                    values.push(json!({"value": format!("{t:.1}"), "measurand": "Temperature", "unit": "Celsius", "context": "Sample.Periodic"}));
                }
                if let Some(u) = voltage_v {
                    values.push(json!({"value": format!("{u:.1}"), "measurand": "Voltage", "phase": "L1-N", "unit": "V", "context": "Sample.Periodic"}));
                }
                if let Some(e) = export_wh {
                    values.push(json!({"value": wh(e).to_string(), "measurand": "Energy.Active.Export.Register", "unit": "Wh", "context": "Sample.Periodic"}));
                }
            }
            if let Some(id) = tx.csms_id {
                p["transactionId"] = json!(id);
            }
            ("MeterValues", p)
        }
        // 2.x has no Temperature measurand (a station reports temperatures
        // through its device model's monitors, NotifyEvent): not sent here
        _ => {
            let mut values = sampled_v2(register_wh, tx.power_w, export_wh);
            if let Some(list) = values.as_array_mut() {
                for (line, a) in line_currents(tx) {
                    list.push(json!({"value": a, "measurand": "Current.Import", "phase": line, "unitOfMeasure": {"unit": "A"}}));
                }
                if let Some(u) = voltage_v {
                    list.push(json!({"value": (u * 10.0).round() / 10.0, "measurand": "Voltage", "phase": "L1-N", "unitOfMeasure": {"unit": "V"}}));
                }
            }
            (
                "TransactionEvent",
                json!({
                    "eventType": "Updated", "timestamp": ts(now), "triggerReason": "MeterValuePeriodic",
                    "seqNo": tx.seq_no,
                    "transactionInfo": {"transactionId": tx.local_id, "chargingState": "Charging"},
                    "meterValue": [{"timestamp": ts(now), "sampledValue": values}],
                }),
            )
        }
    }
}

/// The transaction's end: (action, payload). `None` for a 1.6 transaction
/// the CSMS never numbered (its start was not delivered).
pub fn tx_end(
    v: ProtocolVersion,
    tx: &Tx,
    register_wh: f64,
    reason: StopReason,
    export_wh: Option<f64>,
    now: DateTime<Utc>,
) -> Option<(&'static str, Value)> {
    match v {
        ProtocolVersion::V16 => {
            let reason = match reason {
                StopReason::Local => "Local",
                StopReason::Remote => "Remote",
                StopReason::Reset => "HardReset",
                StopReason::Fault => "Other",
                StopReason::DeAuthorized => "DeAuthorized",
            };
            Some((
                "StopTransaction",
                json!({"transactionId": tx.csms_id?, "idTag": tx.token, "meterStop": wh(register_wh),
                    "timestamp": ts(now), "reason": reason}),
            ))
        }
        _ => {
            let (trigger, stopped) = match reason {
                StopReason::Local => ("StopAuthorized", "Local"),
                StopReason::Remote => ("RemoteStop", "Remote"),
                StopReason::Reset => ("ResetCommand", "ImmediateReset"),
                StopReason::Fault => ("AbnormalCondition", "Other"),
                StopReason::DeAuthorized => ("Deauthorized", "DeAuthorized"),
            };
            let mut sampled = vec![
                json!({"value": (register_wh * 10.0).floor() / 10.0, "measurand": "Energy.Active.Import.Register", "context": "Transaction.End"}),
            ];
            if let Some(e) = export_wh {
                sampled.push(json!({"value": (e * 10.0).floor() / 10.0, "measurand": "Energy.Active.Export.Register", "context": "Transaction.End"}));
            }
            Some((
                "TransactionEvent",
                json!({
                    "eventType": "Ended", "timestamp": ts(now), "triggerReason": trigger, "seqNo": tx.seq_no,
                    "transactionInfo": {"transactionId": tx.local_id, "stoppedReason": stopped, "chargingState": "Idle"},
                    "meterValue": [{"timestamp": ts(now), "sampledValue": sampled}],
                }),
            ))
        }
    }
}

/// What a simulated bidirectional car may give back above its V2X
/// minimum state of charge, Wh (`evMinV2XEnergyRequest` is its negative).
pub const V2X_ROOM_WH: f64 = 20_000.0;

/// Room above a bidirectional car's target, Wh (`evMaxEnergyRequest` is
/// the target's energy plus this).
pub const V2X_HEADROOM_WH: f64 = 10_000.0;

/// NotifyEVChargingNeeds of a car that just started (2.x; `None` for 1.6,
/// which has no such message): its energy request, departure, maximum
/// current and phases (`AC_single_phase` or `AC_three_phase`); in 2.1 a bidirectional car also asks for `AC_BPT` with its
/// discharge power under scheduled control.
pub fn ev_needs(
    v: ProtocolVersion,
    connector: u32,
    energy_wh: f64,
    departure: DateTime<Utc>,
    (max_charge_w, phases): (f64, u8),
    max_discharge_w: Option<f64>,
) -> Option<(&'static str, Value)> {
    // on its phases at 230 V
    let max_a = (max_charge_w / (230.0 * f64::from(phases.max(1))))
        .floor()
        .max(6.0);
    let ac = json!({"energyAmount": energy_wh.round(), "evMinCurrent": 6, "evMaxCurrent": max_a, "evMaxVoltage": 400});
    let mode = if phases == 1 {
        "AC_single_phase"
    } else {
        "AC_three_phase"
    };
    let mut needs = json!({"requestedEnergyTransfer": mode, "departureTime": ts(departure), "acChargingParameters": ac});
    match (v, max_discharge_w) {
        (ProtocolVersion::V16, _) => return None,
        (ProtocolVersion::V21, Some(d)) => {
            needs["requestedEnergyTransfer"] = json!("AC_BPT");
            needs["availableEnergyTransfer"] = json!(["AC_three_phase", "AC_BPT"]);
            needs["controlMode"] = json!("ScheduledControl");
            // the battery: its energy need to the target, room up to full, and
            // what it may give back above its V2X minimum (a negative request)
            needs["v2xChargingParameters"] = json!({"maxChargePower": max_charge_w.round(), "maxDischargePower": d.round(),
                "evTargetEnergyRequest": energy_wh.round(), "evMaxEnergyRequest": (energy_wh + V2X_HEADROOM_WH).round(),
                "evMinV2XEnergyRequest": -V2X_ROOM_WH, "evMaxV2XEnergyRequest": (energy_wh + V2X_HEADROOM_WH).round()});
        }
        _ => {}
    }
    Some((
        "NotifyEVChargingNeeds",
        json!({"evseId": connector, "chargingNeeds": needs}),
    ))
}

/// NotifyDERAlarm of a grid fault that began or `ended` (2.1 only: `None`
/// for the versions without DER control).
pub fn der_alarm(
    v: ProtocolVersion,
    control_type: &str,
    fault: &str,
    ended: bool,
    now: DateTime<Utc>,
) -> Option<(&'static str, Value)> {
    if v != ProtocolVersion::V21 {
        return None;
    }
    let mut p = json!({"controlType": control_type, "gridEventFault": fault, "timestamp": ts(now)});
    if ended {
        p["alarmEnded"] = json!(true);
    }
    Some(("NotifyDERAlarm", p))
}

/// A 2.1 charging profile's first period setpoint as watts (`setpoint`
/// under `CentralSetpoint` or `ExternalSetpoint`; amps × 230 V × phases),
/// negative to discharge. `None` when it carries none.
pub fn profile_setpoint_w(schedule: &Value) -> Option<f64> {
    let unit = schedule.get("chargingRateUnit")?.as_str()?;
    let period = schedule.get("chargingSchedulePeriod")?.get(0)?;
    let mode = period.get("operationMode").and_then(Value::as_str);
    if !matches!(mode, Some("CentralSetpoint" | "ExternalSetpoint")) {
        return None;
    }
    let sp = period.get("setpoint")?.as_f64()?;
    let phases = period
        .get("numberPhases")
        .and_then(Value::as_f64)
        .unwrap_or(3.0);
    match unit {
        "W" => Some(sp),
        "A" => Some(sp * 230.0 * phases),
        _ => None,
    }
}

/// Reads a charging profile's first period limit as watts (amps × 230 V ×
/// phases, 3 when absent). `None` when the request has no usable limit.
pub fn profile_limit_w(schedule: &Value) -> Option<f64> {
    let unit = schedule.get("chargingRateUnit")?.as_str()?;
    let period = schedule.get("chargingSchedulePeriod")?.get(0)?;
    let limit = period.get("limit")?.as_f64()?;
    let phases = period
        .get("numberPhases")
        .and_then(Value::as_f64)
        .unwrap_or(3.0);
    match unit {
        "W" => Some(limit),
        "A" => Some(limit * 230.0 * phases),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Tx;
    use evproto_ocpp_types::{v16, v201, v21};

    fn tx(csms: Option<i64>, remote: Option<i64>) -> Tx {
        Tx {
            local_id: "S-1-1".into(),
            csms_id: csms,
            token: "TOK".into(),
            remote_start_id: remote,
            meter_start_wh: 1234.56,
            stop_at: 0,
            next_meter: 0,
            seq_no: 3,
            started: true,
            power_w: 11_000.04,
            v2x: None,
            phases: 3,
            ev_max_w: None,
        }
    }

    /// A single-phase car: its current on L1 alone, its needs in one phase.
    #[test]
    fn a_single_phase_car_shows_on_l1_and_asks_for_one_phase() {
        let now = Utc::now();
        let one = Tx {
            phases: 1,
            power_w: 3_680.0,
            ..tx(None, None)
        };
        for v in [
            ProtocolVersion::V16,
            ProtocolVersion::V201,
            ProtocolVersion::V21,
        ] {
            let (_, p) = tx_meter(v, 1, &one, 10.0, Readings::default(), now);
            let currents: Vec<(String, f64)> = p["meterValue"][0]["sampledValue"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["measurand"] == "Current.Import")
                .map(|s| {
                    let a = s["value"]
                        .as_f64()
                        .or_else(|| s["value"].as_str()?.parse().ok())
                        .unwrap();
                    (s["phase"].as_str().unwrap().to_owned(), a)
                })
                .collect();
            assert_eq!(currents, vec![("L1".to_owned(), 16.0)], "{v:?}: {p}");
        }
        let (_, three) = tx_meter(
            ProtocolVersion::V201,
            1,
            &tx(None, None),
            1.0,
            Readings::default(),
            now,
        );
        let lines = three["meterValue"][0]["sampledValue"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["measurand"] == "Current.Import")
            .count();
        assert_eq!(lines, 3);
        let (_, needs) =
            ev_needs(ProtocolVersion::V201, 1, 5_000.0, now, (3_680.0, 1), None).unwrap();
        ok::<v201::NotifyEVChargingNeedsRequest>(&needs);
        assert_eq!(
            needs["chargingNeeds"]["requestedEnergyTransfer"],
            "AC_single_phase"
        );
        assert_eq!(
            needs["chargingNeeds"]["acChargingParameters"]["evMaxCurrent"],
            16.0
        );
    }

    fn ok<T: evproto_ocpp_types::Message>(v: &Value) {
        if let Err(e) = evproto_ocpp_types::from_str::<T>(&v.to_string()) {
            panic!("{v} is not schema-valid: {e:?}");
        }
    }

    /// Every rendered payload is valid for its version's schema.
    #[test]
    fn payloads_are_schema_valid() {
        let now = Utc::now();
        let statuses = [
            Status::Available,
            Status::Preparing,
            Status::Charging,
            Status::Finishing,
            Status::Faulted,
            Status::Unavailable,
        ];
        let reasons = [
            StopReason::Local,
            StopReason::Remote,
            StopReason::Reset,
            StopReason::Fault,
            StopReason::DeAuthorized,
        ];
        let v = ProtocolVersion::V16;
        ok::<v16::BootNotificationRequest>(&boot(v, "M", "SN"));
        ok::<v16::AuthorizeRequest>(&authorize(v, "T"));
        for s in statuses {
            ok::<v16::StatusNotificationRequest>(&status(v, 2, s, now));
        }
        ok::<v16::StartTransactionRequest>(&tx_start(v, 1, &tx(None, None), now).1);
        ok::<v16::MeterValuesRequest>(
            &tx_meter(
                v,
                1,
                &tx(Some(5), None),
                2000.7,
                Readings {
                    temperature_c: Some(41.3),
                    voltage_v: Some(228.4),
                    export_wh: Some(120.4),
                },
                now,
            )
            .1,
        );
        for r in reasons {
            ok::<v16::StopTransactionRequest>(
                &tx_end(v, &tx(Some(5), None), 2000.7, r, None, now)
                    .unwrap()
                    .1,
            );
        }
        assert!(tx_end(v, &tx(None, None), 1.0, StopReason::Local, None, now).is_none());
        assert!(ev_needs(v, 1, 1.0, now, (11_000.0, 3), Some(7_000.0)).is_none());
        macro_rules! v2 {
            ($m:ident, $v:expr) => {
                let v = $v;
                ok::<$m::BootNotificationRequest>(&boot(v, "M", "SN"));
                ok::<$m::AuthorizeRequest>(&authorize(v, "T"));
                for s in statuses {
                    ok::<$m::StatusNotificationRequest>(&status(v, 2, s, now));
                }
                ok::<$m::TransactionEventRequest>(&tx_start(v, 1, &tx(None, Some(4)), now).1);
                ok::<$m::TransactionEventRequest>(&tx_start(v, 1, &tx(None, None), now).1);
                ok::<$m::TransactionEventRequest>(
                    &tx_meter(
                        v,
                        1,
                        &tx(None, None),
                        2000.77,
                        Readings {
                            temperature_c: Some(39.95),
                            voltage_v: Some(212.26),
                            export_wh: Some(300.0),
                        },
                        now,
                    )
                    .1,
                );
                for r in reasons {
                    ok::<$m::TransactionEventRequest>(
                        &tx_end(v, &tx(None, None), 2000.7, r, Some(512.3), now)
                            .unwrap()
                            .1,
                    );
                }
                for d in [None, Some(7_000.0)] {
                    ok::<$m::NotifyEVChargingNeedsRequest>(
                        &ev_needs(v, 2, 15_000.0, now, (11_000.0, 3), d).unwrap().1,
                    );
                }
            };
        }
        v2!(v201, ProtocolVersion::V201);
        v2!(v21, ProtocolVersion::V21);
    }

    #[test]
    fn der_alarms_are_21_messages() {
        let now = Utc::now();
        let (a, p) = der_alarm(
            ProtocolVersion::V21,
            "HVMustTrip",
            "OverVoltage",
            false,
            now,
        )
        .unwrap();
        assert_eq!(a, "NotifyDERAlarm");
        let r: v21::NotifyDERAlarmRequest = evproto_ocpp_types::from_str(&p.to_string()).unwrap();
        assert_eq!(r.control_type, v21::DERControlEnumType::HVMustTrip);
        assert_eq!(
            r.grid_event_fault,
            Some(v21::GridEventFaultEnumType::OverVoltage)
        );
        assert_eq!(r.alarm_ended, None);
        let (_, p) =
            der_alarm(ProtocolVersion::V21, "HVMustTrip", "OverVoltage", true, now).unwrap();
        let r: v21::NotifyDERAlarmRequest = evproto_ocpp_types::from_str(&p.to_string()).unwrap();
        assert_eq!(r.alarm_ended, Some(true));
        assert!(der_alarm(
            ProtocolVersion::V201,
            "HVMustTrip",
            "OverVoltage",
            true,
            now
        )
        .is_none());
    }

    #[test]
    fn profile_setpoints() {
        let sp = |p: Value| {
            profile_setpoint_w(&json!({"chargingRateUnit": "W", "chargingSchedulePeriod": [p]}))
        };
        assert_eq!(
            sp(json!({"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": -7000})),
            Some(-7000.0)
        );
        assert_eq!(
            sp(json!({"startPeriod": 0, "operationMode": "ChargingOnly", "setpoint": -7000})),
            None
        );
        assert_eq!(sp(json!({"startPeriod": 0, "limit": 7000})), None);
        assert_eq!(
            profile_setpoint_w(&json!({"chargingRateUnit": "A", "chargingSchedulePeriod": [
                {"startPeriod": 0, "operationMode": "ExternalSetpoint", "setpoint": -10, "numberPhases": 1}]})),
            Some(-2300.0)
        );
    }

    #[test]
    fn profile_limits() {
        assert_eq!(
            profile_limit_w(
                &json!({"chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400}]})
            ),
            Some(7400.0)
        );
        assert_eq!(
            profile_limit_w(
                &json!({"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16, "numberPhases": 1}]})
            ),
            Some(3680.0)
        );
        assert_eq!(
            profile_limit_w(&json!({"chargingRateUnit": "A", "chargingSchedulePeriod": []})),
            None
        );
        assert_eq!(profile_limit_w(&json!({})), None);
    }
}
