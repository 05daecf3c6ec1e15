//! Actions: the link between an action name, its request and response types,
//! its schemas, its version and who may send it.

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::DecodeError;

/// Who sends an action's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Direction {
    /// The charging station sends it, the CSMS answers (`BootNotification`).
    ChargingStationToCsms,
    /// The CSMS sends it, the charging station answers (`Reset`).
    CsmsToChargingStation,
    /// Either side may send it (`DataTransfer`).
    Both,
}

impl Direction {
    /// Whether a charging station may send this action's request.
    pub fn from_charging_station(self) -> bool {
        matches!(self, Direction::ChargingStationToCsms | Direction::Both)
    }

    /// Whether a CSMS may send this action's request.
    pub fn from_csms(self) -> bool {
        matches!(self, Direction::CsmsToChargingStation | Direction::Both)
    }
}

/// An OCPP protocol version, as a type.
pub trait Version: Debug + Copy + Send + Sync + 'static {
    /// The version as people write it (`"1.6"`).
    const NAME: &'static str;
    /// The WebSocket subprotocol (`"ocpp1.6"`).
    const SUBPROTOCOL: &'static str;
}

macro_rules! version {
    ($(#[$m:meta])* $name:ident, $v:literal, $sub:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $name;
        impl Version for $name {
            const NAME: &'static str = $v;
            const SUBPROTOCOL: &'static str = $sub;
        }
    };
}

version!(
    /// OCPP 1.6J.
    V16, "1.6", "ocpp1.6"
);
version!(
    /// OCPP 2.0.1.
    V201, "2.0.1", "ocpp2.0.1"
);
version!(
    /// OCPP 2.1.
    V21, "2.1", "ocpp2.1"
);

/// A message payload type: serializable, and decodable with validation.
pub trait Message:
    Serialize + DeserializeOwned + Debug + Clone + PartialEq + Send + Sync + 'static
{
}
impl<T: Serialize + DeserializeOwned + Debug + Clone + PartialEq + Send + Sync + 'static> Message
    for T
{
}

/// An action of a CALL/CALLRESULT exchange.
///
/// Each version module has a marker per action, e.g.
/// `evproto_ocpp_types::v201::action::BootNotification`.
///
/// ```
/// use evproto_ocpp_types::{Action, Direction, v201::action::BootNotification};
/// assert_eq!(BootNotification::NAME, "BootNotification");
/// assert_eq!(BootNotification::DIRECTION, Direction::ChargingStationToCsms);
/// assert!(BootNotification::REQUEST_SCHEMA.contains("\"chargingStation\""));
/// ```
pub trait Action: Debug + Copy + Default + Send + Sync + 'static {
    /// The action name on the wire.
    const NAME: &'static str;
    /// Who sends the request.
    const DIRECTION: Direction;
    /// The official request JSON schema, unmodified.
    const REQUEST_SCHEMA: &'static str;
    /// The official response JSON schema, unmodified.
    const RESPONSE_SCHEMA: &'static str;
    /// The protocol version.
    type Version: Version;
    /// The CALL payload.
    type Request: Message;
    /// The CALLRESULT payload.
    type Response: Message;
}

/// A 2.1 SEND message: an unconfirmed payload (`[6, id, action, payload]`).
pub trait SendAction: Debug + Copy + Default + Send + Sync + 'static {
    /// The action name on the wire.
    const NAME: &'static str;
    /// Who sends it.
    const DIRECTION: Direction;
    /// The official JSON schema, unmodified.
    const SCHEMA: &'static str;
    /// The protocol version.
    type Version: Version;
    /// The payload.
    type Payload: Message;
}

/// Actions whose request a charging station may send (a CSMS handles them).
pub trait FromChargingStation {}

/// Actions whose request a CSMS may send (a charging station handles them).
pub trait FromCsms {}

/// Validates one payload (see [`validate`]).
pub type ValidateFn = fn(&str) -> Result<(), DecodeError>;

/// Validates one payload under a [`crate::lenient::Policy`] (see [`validate_with`]).
pub type ValidateWithFn =
    fn(&str, &crate::lenient::Policy) -> Result<Vec<crate::lenient::Warning>, DecodeError>;

/// Generates one random schema-valid payload (see [`arbitrary_json`]).
#[cfg(any(test, feature = "arbitrary"))]
pub type ArbitraryFn = fn(&mut arbitrary::Unstructured<'_>) -> arbitrary::Result<(String, bool)>;

/// Run-time facts about one action, for code that works by name (validators,
/// proxies, loggers). Each version module has a sorted `ACTIONS` table.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ActionInfo {
    /// The action name on the wire.
    pub name: &'static str,
    /// Who sends the request.
    pub direction: Direction,
    /// A 2.1 SEND message (no response).
    pub send: bool,
    /// The request schema's path under `schemas/` (`v16/Authorize.json`).
    pub request_schema: &'static str,
    /// The request's JSON schema itself (the text of [`request_schema`](Self::request_schema)),
    /// for tools that show or generate forms from it.
    pub request_schema_json: &'static str,
    /// The response schema's path under `schemas/`.
    pub response_schema: Option<&'static str>,
    /// Validates a request payload.
    pub validate_request: ValidateFn,
    /// Validates a response payload.
    pub validate_response: Option<ValidateFn>,
    /// Validates a request payload under a lenient policy.
    pub validate_request_with: ValidateWithFn,
    /// Validates a response payload under a lenient policy.
    pub validate_response_with: Option<ValidateWithFn>,
    /// A random schema-valid request payload as JSON, and whether it round-trips.
    #[cfg(any(test, feature = "arbitrary"))]
    pub arbitrary_request: ArbitraryFn,
    /// A random schema-valid response payload as JSON, and whether it round-trips.
    #[cfg(any(test, feature = "arbitrary"))]
    pub arbitrary_response: Option<ArbitraryFn>,
}

/// Finds an action in a sorted `ACTIONS` table.
pub fn find_action(table: &'static [ActionInfo], name: &str) -> Option<&'static ActionInfo> {
    table
        .binary_search_by(|a| a.name.cmp(name))
        .ok()
        .map(|i| &table[i])
}

/// Decodes `json` as `T` and drops it: schema validation.
///
/// # Errors
///
/// The [`DecodeError`] of [`crate::from_str`].
pub fn validate<T: DeserializeOwned>(json: &str) -> Result<(), DecodeError> {
    crate::from_str::<T>(json).map(drop)
}

/// Decodes `json` as `T` under `policy` and drops it, returning the repairs made.
///
/// # Errors
///
/// The [`DecodeError`] of [`crate::lenient::from_str_with`].
pub fn validate_with<T: DeserializeOwned>(
    json: &str,
    policy: &crate::lenient::Policy,
) -> Result<Vec<crate::lenient::Warning>, DecodeError> {
    crate::lenient::from_str_with::<T>(json, policy).map(|(_, w)| w)
}

/// Encodes a message as JSON text.
pub fn to_json<T: Serialize>(v: &T) -> String {
    // Our generated types serialize infallibly: no maps with non-string keys.
    serde_json::to_string(v).unwrap_or_default()
}

/// A random schema-valid value of `T` as JSON text, and whether decoding that
/// text gives back an equal value (`decode(encode(x)) == x`).
#[cfg(any(test, feature = "arbitrary"))]
pub fn arbitrary_json<T: Message + for<'a> arbitrary::Arbitrary<'a>>(
    u: &mut arbitrary::Unstructured<'_>,
) -> arbitrary::Result<(String, bool)> {
    let value = T::arbitrary(u)?;
    let json = to_json(&value);
    let same = crate::from_str::<T>(&json).is_ok_and(|back| back == value);
    Ok((json, same))
}
