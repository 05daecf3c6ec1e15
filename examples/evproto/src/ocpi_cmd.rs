//! `evproto ocpi price`: prices CDRs under tariffs with `evproto_ocpi::tariff`.

use std::io::{BufRead, Write};

use evproto_ocpi::tariff::{price_cdr_json, Version, Zone};
use serde_json::{json, Value};

/// The version whose price objects a line uses: 2.1.1 when its CDR has
/// 2.1.1's `stop_date_time`; 2.3.0 when its tariff or CDR carries 2.3.0
/// money (`before_taxes`, `tax_included`); else 2.2.1.
fn version_of(line: &Value) -> Version {
    let cdr = &line["cdr"];
    if cdr.get("stop_date_time").is_some() && cdr.get("end_date_time").is_none() {
        return Version::V211;
    }
    let text = line.to_string();
    if text.contains("\"before_taxes\"") || text.contains("\"tax_included\"") {
        Version::V230
    } else {
        Version::V221
    }
}

/// One input line → one output line: `{"cdr": .., "tariff"?: ..,
/// "location"?: .., "time_zone"?: ..}`; without `tariff` the CDR's own
/// `tariffs` price it; the zone is the location's `time_zone`, else
/// `time_zone`, else the location's country, else the CDR's own location.
pub(crate) fn price_line(line: &str) -> Value {
    let v: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return json!({"error": format!("not JSON: {e}")}),
    };
    let Some(cdr) = v.get("cdr") else {
        return json!({"error": "expected an object with \"cdr\" (and \"tariff\" unless the CDR has \"tariffs\")"});
    };
    let zone = match (
        v.get("location").map(Zone::of_location),
        v["time_zone"].as_str(),
    ) {
        (Some(Zone::Named(z)), _) => Zone::Named(z),
        (_, Some(z)) => Zone::Named(z.to_owned()),
        (Some(z), None) => z,
        (None, None) => Zone::Unknown,
    };
    match price_cdr_json(cdr, v.get("tariff"), &zone, version_of(&v)) {
        Ok(mut out) => {
            if let Some(o) = out.as_object_mut() {
                o.remove("breakdown");
            }
            out
        }
        Err(e) => json!({"error": e.to_string()}),
    }
}

/// Reads stdin line by line, writes one JSON line per input line.
pub(crate) fn run_price() -> Result<(), String> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        writeln!(out, "{}", price_line(&line)).map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}

/// One output line of `evproto ocpi validate` for one input line.
pub(crate) fn validate_line(version: evproto_ocpi::Version, module: &str, line: &str) -> String {
    match evproto_ocpi::validate::validate(version, module, line) {
        Ok(_) => "ok".to_string(),
        Err(evproto_ocpi::validate::Invalid::Object { path, message }) => {
            // serde_path_to_error writes `?` where the text stops being JSON.
            let path = if path.is_empty() || path == "?" {
                ".".to_string()
            } else {
                path
            };
            format!("error 2001 {path} {}", message.replace('\n', " "))
        }
        Err(e) => format!("error 2001 . {e}"),
    }
}

/// Reads stdin line by line, writes `ok` / `error ..` per line.
pub(crate) fn run_validate(module: &str, version: &str) -> Result<(), String> {
    let version = evproto_ocpi::Version::parse(version)
        .ok_or_else(|| format!("unknown OCPI version {version:?}: use 2.1.1, 2.2.1 or 2.3.0"))?;
    if evproto_ocpi::validate::module_types(version, module).is_none()
        && evproto_ocpi::validate::validate(version, module, "{}")
            .is_err_and(|e| matches!(e, evproto_ocpi::validate::Invalid::UnknownName { .. }))
    {
        return Err(format!(
            "OCPI {version} has no module or type {module:?}; modules: {}",
            evproto_ocpi::validate::modules(version).join(", ")
        ));
    }
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        writeln!(out, "{}", validate_line(version, module, &line)).map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_lines() {
        let v = evproto_ocpi::Version::V221;
        let tariff = r#"{"country_code": "NL", "party_id": "CPO", "id": "T1", "currency": "EUR",
            "elements": [{"price_components": [{"type": "ENERGY", "price": 0.25, "step_size": 1}]}],
            "last_updated": "2024-01-01T00:00:00Z"}"#;
        assert_eq!(
            validate_line(v, "tariffs", &tariff.replace('\n', " ")),
            "ok"
        );
        let bad = tariff.replace("ENERGY", "WATER").replace('\n', " ");
        let out = validate_line(v, "tariffs", &bad);
        assert!(
            out.starts_with(
                "error 2001 elements[0].price_components[0].type unknown variant `WATER`"
            ),
            "{out}"
        );
        assert!(validate_line(v, "tariffs", "{").starts_with("error 2001 . "));
        assert!(validate_line(v, "tariffs", "{}").starts_with("error 2001 . missing field"));
        // 2.3.0 requires tax_included.
        assert!(validate_line(
            evproto_ocpi::Version::V230,
            "tariffs",
            &tariff.replace('\n', " ")
        )
        .contains("tax_included"));
        assert_eq!(
            validate_line(v, "TariffRestrictions", r#"{"max_kwh": 20}"#),
            "ok"
        );
    }

    #[test]
    fn lines() {
        let ok = price_line(
            r#"{"tariff": {"id": "T", "currency": "EUR", "elements": [{"price_components": [{"type": "ENERGY", "price": 0.3, "vat": 21, "step_size": 1}]}]},
                "cdr": {"start_date_time": "2026-01-01T10:00:00Z", "end_date_time": "2026-01-01T11:00:00Z",
                        "charging_periods": [{"start_date_time": "2026-01-01T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 10}]}]},
                "location": {"time_zone": "Europe/Berlin"}}"#,
        );
        assert_eq!(
            ok["total_cost"],
            json!({"excl_vat": "3", "incl_vat": "3.63"})
        );
        assert_eq!(ok["total_energy"], "10");
        assert!(ok.get("breakdown").is_none());
        assert!(price_line("{").get("error").is_some());
        assert!(price_line("{}").get("error").is_some());
        let v230 = price_line(
            r#"{"tariff": {"id": "T", "currency": "EUR", "tax_included": "NO", "elements": [{"price_components": [{"type": "FLAT", "price": 1, "vat": 20, "step_size": 1}]}]},
                "cdr": {"start_date_time": "2026-01-01T10:00:00Z", "end_date_time": "2026-01-01T11:00:00Z",
                        "charging_periods": [{"start_date_time": "2026-01-01T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 1}]}]}}"#,
        );
        assert_eq!(v230["total_cost"]["before_taxes"], "1");
        assert_eq!(v230["total_cost"]["taxes"][0]["amount"], "0.2");
    }

    /// Issue 14 A: a 2.1.1 CDR with its own tariffs and no separate tariff;
    /// a Credit CDR; a location known by its country only.
    #[test]
    fn cdr_lines_of_issue_14() {
        // 2.1.1: stop_date_time, the CDR's one tariff, total_cost a number:
        // 12 kWh × 0.25 = 3
        let v211 = price_line(
            r#"{"cdr": {"start_date_time": "2026-01-01T10:00:00Z", "stop_date_time": "2026-01-01T11:00:00Z",
                        "tariffs": [{"id": "11", "currency": "EUR", "elements": [{"price_components": [{"type": "ENERGY", "price": 0.25, "step_size": 1}]}]}],
                        "charging_periods": [{"start_date_time": "2026-01-01T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 12}]}]}}"#,
        );
        assert_eq!(v211["total_cost"], "3", "{v211}");
        assert_eq!(v211["total_energy"], "12");
        // credit: total_cost negated: −(10 × 0.3 × 1.21) = −3.63
        let credit = price_line(
            r#"{"tariff": {"id": "T", "currency": "EUR", "elements": [{"price_components": [{"type": "ENERGY", "price": 0.3, "vat": 21, "step_size": 1}]}]},
                "cdr": {"credit": true, "credit_reference_id": "C1", "start_date_time": "2026-01-01T10:00:00Z", "end_date_time": "2026-01-01T11:00:00Z",
                        "charging_periods": [{"start_date_time": "2026-01-01T10:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 10}]}]}}"#,
        );
        assert_eq!(
            credit["total_cost"],
            json!({"excl_vat": "-3", "incl_vat": "-3.63"})
        );
        assert_eq!(
            credit["total_energy_cost"],
            json!({"excl_vat": "3", "incl_vat": "3.63"})
        );
        // location by country only: 21:30Z is 22:30 in Amsterdam, night
        // price 0.20 × 10 = 2; in Germany (two zones) an error naming time_zone
        let line = |country: &str| {
            format!(
                r#"{{"tariff": {{"id": "T", "currency": "EUR", "elements": [
                  {{"price_components": [{{"type": "ENERGY", "price": 0.2, "step_size": 1}}], "restrictions": {{"start_time": "22:00", "end_time": "06:00"}}}},
                  {{"price_components": [{{"type": "ENERGY", "price": 0.3, "step_size": 1}}]}}]}},
                  "cdr": {{"start_date_time": "2026-03-02T21:30:00Z", "end_date_time": "2026-03-02T22:30:00Z",
                          "charging_periods": [{{"start_date_time": "2026-03-02T21:30:00Z", "dimensions": [{{"type": "ENERGY", "volume": 10}}]}}]}},
                  "location": {{"country": "{country}"}}}}"#
            )
            .replace('\n', " ")
        };
        assert_eq!(price_line(&line("NLD"))["total_cost"]["excl_vat"], "2");
        let e = price_line(&line("DEU"));
        assert!(e["error"].as_str().unwrap().contains("time_zone"), "{e}");
    }
}
