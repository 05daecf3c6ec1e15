//! Checks a JSON object against an OCPI version's types: `evproto ocpi
//! validate` and the server's request parsing both come here.
//!
//! ```
//! use evproto_ocpi::validate::{validate, Invalid};
//! use evproto_ocpi::Version;
//!
//! let token = r#"{"country_code": "DE", "party_id": "TNM", "uid": "012345678",
//!   "type": "RFID", "contract_id": "DE8ACC12E46L89", "issuer": "TheNewMotion",
//!   "valid": true, "whitelist": "ALLOWED", "last_updated": "2018-12-10T12:00:00Z"}"#;
//! assert!(validate(Version::V221, "tokens", token).is_ok());
//!
//! let bad = token.replace("\"RFID\"", "\"CARD\"");
//! let err = validate(Version::V221, "tokens", &bad).unwrap_err();
//! assert_eq!(err.to_string(), "type: unknown variant `CARD`, expected one of `AD_HOC_USER`, `APP_USER`, `OTHER`, `RFID` at line 2 column 16");
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::Version;

/// Why an object is not valid: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Invalid {
    /// The text is not JSON, or the object does not fit the type.
    #[error("{}{message}", if path.is_empty() || path == "." { String::new() } else { format!("{path}: ") })]
    Object {
        /// The JSON path of the offending value (`elements[0].price_components`).
        path: String,
        /// What is wrong there.
        message: String,
    },
    /// No module or type of that name in that version.
    #[error("OCPI {version} has no module or type {name:?}; modules: {modules}")]
    UnknownName {
        /// The version asked for.
        version: Version,
        /// The name asked for.
        name: String,
        /// The module names this version knows.
        modules: String,
    },
}

/// Decodes `json` as `T` and encodes it again.
pub(crate) fn decode<T: DeserializeOwned + Serialize>(json: &str) -> Result<Value, Invalid> {
    let mut de = serde_json::Deserializer::from_str(json);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| Invalid::Object {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })?;
    de.end().map_err(|e| Invalid::Object {
        path: String::new(),
        message: e.to_string(),
    })?;
    serde_json::to_value(&value).map_err(|e| Invalid::Object {
        path: String::new(),
        message: e.to_string(),
    })
}

/// The objects a module exchanges, main object first. `commands` carries
/// several request objects; an object is valid for the module if it is
/// valid as one of them.
pub fn module_types(version: Version, module: &str) -> Option<&'static [&'static str]> {
    Some(match (module, version) {
        ("versions", _) => &["Version"],
        ("version_details", _) => &["VersionDetails"],
        ("credentials", _) => &["Credentials"],
        ("locations", _) => &["Location", "Evse", "Connector"],
        ("sessions", _) => &["Session"],
        ("cdrs", _) => &["Cdr"],
        ("tariffs", _) => &["Tariff"],
        ("tokens", _) => &["Token", "AuthorizationInfo"],
        ("commands", Version::V211) => &[
            "StartSession",
            "StopSession",
            "ReserveNow",
            "UnlockConnector",
            "CommandResponse",
        ],
        ("commands", _) => &[
            "StartSession",
            "StopSession",
            "ReserveNow",
            "CancelReservation",
            "UnlockConnector",
            "CommandResponse",
            "CommandResult",
        ],
        ("chargingprofiles", Version::V221 | Version::V230) => &[
            "SetChargingProfile",
            "ActiveChargingProfile",
            "ChargingProfileResponse",
            "ActiveChargingProfileResult",
            "ChargingProfileResult",
            "ClearProfileResult",
        ],
        ("hubclientinfo", Version::V221 | Version::V230) => &["ClientInfo"],
        #[cfg(feature = "payments")]
        ("payments", Version::V230) => &["Terminal", "FinancialAdviceConfirmation"],
        _ => return None,
    })
}

/// The module names [`module_types`] knows for `version`.
pub fn modules(version: Version) -> Vec<&'static str> {
    [
        "versions",
        "version_details",
        "credentials",
        "locations",
        "sessions",
        "cdrs",
        "tariffs",
        "tokens",
        "commands",
        "chargingprofiles",
        "hubclientinfo",
        "payments",
    ]
    .into_iter()
    .filter(|m| module_types(version, m).is_some())
    .collect()
}

fn decode_type(version: Version, name: &str, json: &str) -> Option<Result<Value, Invalid>> {
    if name == "VersionDetails" {
        return Some(match version {
            Version::V211 => decode::<crate::v211::VersionDetails>(json),
            Version::V221 => decode::<crate::v221::VersionDetails>(json),
            Version::V230 => decode::<crate::v230::VersionDetails>(json),
        });
    }
    match version {
        Version::V211 => crate::v211::decode_named(name, json),
        Version::V221 => crate::v221::decode_named(name, json),
        Version::V230 => crate::v230::decode_named(name, json),
    }
}

/// Validates `json` as an object of `module` (a module id such as
/// `tariffs`, see [`modules`]) or of a type named by its Rust name
/// (`TariffRestrictions`), in `version`. Returns the object as this crate
/// writes it back.
pub fn validate(version: Version, module: &str, json: &str) -> Result<Value, Invalid> {
    let names: Vec<&str> = match module_types(version, module) {
        Some(names) => names.to_vec(),
        None => vec![module],
    };
    let mut first_err = None;
    for name in names {
        match decode_type(version, name, json) {
            Some(Ok(v)) => return Ok(v),
            Some(Err(e)) => {
                first_err.get_or_insert(e);
            }
            None => {}
        }
    }
    Err(first_err.unwrap_or_else(|| Invalid::UnknownName {
        version,
        name: module.to_string(),
        modules: modules(version).join(", "),
    }))
}
