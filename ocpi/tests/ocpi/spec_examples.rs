//! Round trips of the specification's own JSON examples, every version:
//! each example decodes into our types and encodes back to the same JSON
//! (up to timestamp spelling, number spelling, and absent-versus-empty
//! optional lists). Sources: `ocpi/spec/v221/examples/`,
//! `ocpi/spec/v230/examples/` (files of the spec repository at tags
//! `2.2.1` and `v2.3.0`) and the ```json blocks of the 2.1.1 Markdown.
//!
//! PATCH examples carry only the changed fields: they are applied to the
//! module's first full example and the result must decode.

use std::path::{Path, PathBuf};

use evproto_ocpi::validate::validate;
use evproto_ocpi::Version;
use serde_json::Value;

fn spec_dir(v: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("spec").join(v)
}

/// Examples the spec gets wrong, with the reason; they must fail, so the
/// list stays true.
const EXPECTED_FAILURES: &[(&str, &str)] = &[
    ("v221/cdr_example.json", "its cdr_token lacks country_code and party_id, required since 2.2.1 (mod_cdrs, CdrToken class)"),
    ("v221/session_example_1_simple_start.json", "its cdr_token lacks country_code and party_id (mod_cdrs, CdrToken class)"),
    ("v221/session_example_2_short_finished.json", "its cdr_token lacks country_code and party_id (mod_cdrs, CdrToken class)"),
    ("v221/session_patch_example_charging_period.json", "applied to session_example_1, which fails as above"),
    ("v221/session_patch_example_total_cost.json", "applied to session_example_1, which fails as above"),
    ("v221/location_put_example_add_evse.json", "its connector lacks the required power_type (mod_locations, Connector object)"),
    ("v230/location_put_example_add_evse.json", "its connector lacks the required power_type (mod_locations, Connector object)"),
    ("v230/cdr_example.json", "its tariff lacks tax_included, required in 2.3.0 (mod_tariffs, Tariff object)"),
    ("v230/location_example.json", "EVSE parking holds id strings; 2.3.0 defines it as EVSEParking objects (mod_locations, EVSEParking class)"),
    ("v230/location_example_parking_garage_opening_hours.json", "EVSE parking holds id strings, not EVSEParking objects"),
    ("v230/location_patch_example_location.json", "applied to location_example, which fails as above"),
    ("v230/location_patch_example_remove_evse.json", "applied to location_example, which fails as above"),
    ("v230/location_patch_example_status.json", "applied to location_example, which fails as above"),
    ("v230/location_patch_example_tariff.json", "applied to location_example, which fails as above"),
    // Payments (feature `payments`).
    ("v230/payment_financial_advice_confirmation_create.json", "total_costs in the 2.2.1 Price shape (excl_vat/incl_vat); 2.3.0 Price has before_taxes/taxes"),
    ("v230/payment_financial_advice_confirmation_example_failure.json", "total_costs in the 2.2.1 Price shape"),
    ("v230/payment_financial_advice_confirmation_example_success.json", "total_costs in the 2.2.1 Price shape"),
    ("v230/payment_terminal_create_minimal.json", "a request body with terminal_id only, not a Terminal object"),
    ("v230/payment_terminal_location_assignment.json", "a partial update without terminal_id, not a Terminal object"),
    ("v230/payment_terminal_put_update.json", "a partial update without terminal_id, not a Terminal object"),
    // 2.1.1's Markdown examples are looser than its tables.
    ("v211/mod_cdrs.md:249", "location.evses[0] lacks the required status (mod_locations 3.2 EVSE Object)"),
    ("v211/mod_sessions.md:190", "location.evses[0] lacks the required status"),
    ("v211/mod_sessions.md:244", "location.evses[0] lacks the required status"),
    ("v211/mod_sessions.md:326", "dimension type written in lower case (`energy`); CdrDimensionType values are upper case"),
    ("v211/mod_locations.md:289", "connectors lack the required last_updated (mod_locations 3.3 Connector Object)"),
    ("v211/mod_locations.md:302", "connectors lack the required last_updated"),
    ("v211/mod_locations.md:315", "connectors lack the required last_updated"),
    ("v211/mod_locations.md:328", "connector lacks the required power_type"),
    ("v211/mod_locations.md:354", "connectors lack the required last_updated"),
    ("v211/mod_locations.md:431", "connectors lack the required last_updated"),
    ("v211/mod_locations.md:707", "connectors lack the required last_updated"),
    ("v211/mod_locations.md:715", "connectors lack the required last_updated"),
    ("v211/mod_locations.md:725", "not JSON: a trailing comma"),
    ("v211/mod_locations.md:1004", "connectors lack the required last_updated"),
    ("v211/mod_tariffs.md:186", "PUT example without the required last_updated"),
    ("v211/mod_tariffs.md:208", "PATCH applied to the PUT example above, which fails"),
];

/// Normalizes what may legitimately differ between the spec's text and ours.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null() && !matches!(v, Value::Array(a) if a.is_empty()))
                .map(|(k, v)| (k.clone(), normalize(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        Value::Number(n) => serde_json::json!(n.as_f64()),
        Value::String(s) => match evproto_ocpi::types::DateTime::parse(s) {
            Some(t) if s.len() >= 19 && s.as_bytes().get(10) == Some(&b'T') => {
                Value::String(t.to_wire())
            }
            _ => v.clone(),
        },
        _ => v.clone(),
    }
}

fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(slot) if v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

struct Outcome {
    name: String,
    result: Result<String, String>,
}

/// Decodes `value` as `ty` (a module or type name) and checks the round trip.
fn round_trip(version: Version, ty: &str, value: &Value) -> Result<(), String> {
    let text = value.to_string();
    let back = validate(version, ty, &text).map_err(|e| e.to_string())?;
    let (a, b) = (normalize(value), normalize(&back));
    if a != b {
        return Err(format!(
            "round trip changed the object:\n spec: {a}\n ours: {b}"
        ));
    }
    Ok(())
}

/// What an example file or block holds: a type name for the value, or
/// `data` of an envelope / one key of a wrapper object.
fn check(
    version: Version,
    ty: &str,
    value: &Value,
    base: Option<&Value>,
) -> Result<String, String> {
    // Envelope: {"data": .., "status_code": ..}
    if let Some(data) = value
        .get("data")
        .filter(|_| value.get("status_code").is_some())
    {
        return check(version, ty, data, base).map(|s| format!("envelope data: {s}"));
    }
    if let Value::Array(items) = value {
        for (i, item) in items.iter().enumerate() {
            check(version, ty, item, base).map_err(|e| format!("[{i}]: {e}"))?;
        }
        return Ok(format!("list of {} {ty}", items.len()));
    }
    match round_trip(version, ty, value) {
        Ok(()) => Ok(ty.to_string()),
        Err(e) if e.contains("missing field") && base.is_some() => {
            let mut merged = base.cloned().unwrap_or(Value::Null);
            merge(&mut merged, value);
            round_trip(version, ty, &merged).map(|()| format!("PATCH applied to {ty}"))
        }
        Err(e) => Err(e),
    }
}

/// The type each example file of 2.2.1 / 2.3.0 holds, by file name.
fn type_for_file(name: &str) -> Option<(&'static str, Option<&'static str>)> {
    // (type, key of a wrapper object)
    let t = if name.starts_with("location_energymix") {
        ("EnergyMix", Some("energy_mix"))
    } else if name.starts_with("location_regularhours") {
        ("Hours", Some("opening_times"))
    } else if name.starts_with("location_hours") {
        ("Hours", None)
    } else if name.starts_with("location_put_example_add_evse") {
        ("Evse", None)
    } else if name.starts_with("location") {
        ("Location", None)
    } else if name.starts_with("tariff") {
        ("Tariff", None)
    } else if name.starts_with("session") {
        ("Session", None)
    } else if name.starts_with("cdr") {
        ("Cdr", None)
    } else if name.starts_with("credentials") {
        ("Credentials", None)
    } else if name.starts_with("token") || name.contains("get_token") {
        ("Token", None)
    } else if name.contains("version_details") {
        ("VersionDetails", None)
    } else if name.contains("version_info") || name.starts_with("versions_info") {
        ("Version", None)
    } else if name.starts_with("type_displaytext") {
        ("DisplayText", None)
    } else if name.starts_with("payment_terminal") {
        ("Terminal", None)
    } else if name.starts_with("payment_financial_advice") {
        ("FinancialAdviceConfirmation", None)
    } else {
        return None;
    };
    Some(t)
}

fn run_examples_dir(version: Version, dir: &str) -> Vec<Outcome> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(spec_dir(dir).join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let read = |p: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let first_full = |prefix: &str| -> Option<Value> {
        files
            .iter()
            .find(|p| {
                let n = p.file_name().unwrap().to_str().unwrap();
                n.starts_with(prefix) && !n.contains("patch")
            })
            .map(|p| read(p))
    };
    let mut out = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        if name.starts_with("payment") && !cfg!(feature = "payments") {
            continue;
        }
        let Some((ty, key)) = type_for_file(&name) else {
            out.push(Outcome {
                name,
                result: Err("no type known for this file".into()),
            });
            continue;
        };
        let value = read(f);
        let value = match key {
            Some(k) => value.get(k).cloned().unwrap_or(Value::Null),
            None => value,
        };
        let base = match ty {
            "Location" => first_full("location_example"),
            "Session" => first_full("session_example"),
            "Token" => first_full("token_example"),
            "Tariff" => first_full("tariff_1"),
            _ => None,
        };
        out.push(Outcome {
            result: check(version, ty, &value, base.as_ref()),
            name: format!("{dir}/{name}"),
        });
    }
    out
}

/// The ```json blocks of the 2.1.1 Markdown, with the file they are in.
fn markdown_blocks() -> Vec<(String, usize, Result<Value, String>)> {
    let mut out = Vec::new();
    let dir = spec_dir("v211");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        let mut lines = text.lines().enumerate();
        while let Some((n, l)) = lines.next() {
            if l.trim() != "```json" {
                continue;
            }
            let mut block = String::new();
            for (_, l) in lines.by_ref() {
                if l.trim() == "```" {
                    break;
                }
                block.push_str(l);
                block.push('\n');
            }
            // Some blocks start with a request line ("PATCH To URL: ...").
            let start = block.find(['{', '[']).unwrap_or(0);
            let block = &block[start..];
            let parsed = serde_json::from_str::<Value>(block).map_err(|e| format!("not JSON: {e}"));
            out.push((name.clone(), n + 1, parsed));
        }
    }
    out
}

fn type_for_md(file: &str, v: &Value) -> &'static str {
    let has = |k: &str| v.get(k).is_some() || v.get("data").and_then(|d| d.get(k)).is_some();
    match file {
        "mod_tariffs.md" => "Tariff",
        "mod_locations.md" if has("connectors") && !has("evses") => "Evse",
        "mod_locations.md" if has("standard") => "Connector",
        "mod_locations.md" => "Location",
        "mod_sessions.md" => "Session",
        "mod_cdrs.md" => "Cdr",
        "mod_tokens.md" => "Token",
        "credentials.md" => "Credentials",
        "version_information_endpoint.md" if has("endpoints") => "VersionDetails",
        "version_information_endpoint.md" => "Version",
        _ => "unknown",
    }
}

fn report(outcomes: Vec<Outcome>) {
    let mut unexpected = Vec::new();
    for o in &outcomes {
        let expected_fail = EXPECTED_FAILURES.iter().find(|(n, _)| *n == o.name);
        match (&o.result, expected_fail) {
            (Ok(_), None) | (Err(_), Some(_)) => {}
            (Ok(_), Some((_, why))) => {
                unexpected.push(format!("{}: listed as failing ({why}) but passes", o.name))
            }
            (Err(e), None) => unexpected.push(format!("{}: {e}", o.name)),
        }
    }
    assert!(
        unexpected.is_empty(),
        "{} of {} examples:\n{}",
        unexpected.len(),
        outcomes.len(),
        unexpected.join("\n")
    );
}

#[test]
fn v221_examples_round_trip() {
    let o = run_examples_dir(Version::V221, "v221");
    assert!(o.len() >= 55, "{} examples", o.len());
    report(o);
}

#[test]
fn v230_examples_round_trip() {
    let o = run_examples_dir(Version::V230, "v230");
    assert!(o.len() >= 55, "{} examples", o.len());
    report(o);
}

#[test]
fn v211_markdown_examples_round_trip() {
    let blocks = markdown_blocks();
    assert!(blocks.len() >= 25, "{} blocks", blocks.len());
    let base = |file: &str, key: &str| {
        blocks
            .iter()
            .filter(|(f, _, _)| f == file)
            .filter_map(|(_, _, v)| v.as_ref().ok())
            .find(|v| v.get(key).is_some())
            .cloned()
    };
    let base_tariff = base("mod_tariffs.md", "elements");
    let base_location = base("mod_locations.md", "evses");
    let base_session = base("mod_sessions.md", "location");
    let base_token = base("mod_tokens.md", "whitelist");
    let outcomes = blocks
        .iter()
        .map(|(file, line, v)| {
            let name = format!("v211/{file}:{line}");
            let v = match v {
                Ok(v) => v,
                Err(e) => {
                    return Outcome {
                        name,
                        result: Err(e.clone()),
                    }
                }
            };
            let ty = type_for_md(file, v);
            let base = match ty {
                "Tariff" => base_tariff.as_ref(),
                "Location" => base_location.as_ref(),
                "Session" => base_session.as_ref(),
                "Token" => base_token.as_ref(),
                _ => None,
            };
            Outcome {
                name,
                result: check(Version::V211, ty, v, base),
            }
        })
        .collect();
    report(outcomes);
}
