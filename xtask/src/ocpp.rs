//! OCPP JSON schema → Rust generator for `ocpp-types`.
//!
//! One output file per version (`ocpp-types/src/<ver>/generated.rs`) holding
//! the datatypes, enumerations, messages, action markers, the per-version
//! request/response enums and the action table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::json::Json;

/// Version metadata the schemas do not carry.
struct VersionSpec {
    module: &'static str,
    marker: &'static str,
    /// Request file name for an action.
    request_file: fn(&str) -> String,
    /// Actions a charging station sends (the rest are sent by the CSMS, but
    /// `DataTransfer`, which both send).
    from_station: &'static [&'static str],
    /// 1.6 inlines its datatypes: spec names for them, keyed `Parent.property`.
    names: &'static [(&'static str, &'static str)],
}

const V16_FROM_STATION: &[&str] = &[
    "Authorize",
    "BootNotification",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StartTransaction",
    "StatusNotification",
    "StopTransaction",
    "LogStatusNotification",
    "SecurityEventNotification",
    "SignCertificate",
    "SignedFirmwareStatusNotification",
];

const V201_FROM_STATION: &[&str] = &[
    "Authorize",
    "BootNotification",
    "ClearedChargingLimit",
    "FirmwareStatusNotification",
    "Get15118EVCertificate",
    "GetCertificateStatus",
    "Heartbeat",
    "LogStatusNotification",
    "MeterValues",
    "NotifyChargingLimit",
    "NotifyCustomerInformation",
    "NotifyDisplayMessages",
    "NotifyEVChargingNeeds",
    "NotifyEVChargingSchedule",
    "NotifyEvent",
    "NotifyMonitoringReport",
    "NotifyReport",
    "PublishFirmwareStatusNotification",
    "ReportChargingProfiles",
    "ReservationStatusUpdate",
    "SecurityEventNotification",
    "SignCertificate",
    "StatusNotification",
    "TransactionEvent",
];

const V21_FROM_STATION: &[&str] = &[
    "Authorize",
    "BatterySwap",
    "BootNotification",
    "ClearedChargingLimit",
    "ClosePeriodicEventStream",
    "FirmwareStatusNotification",
    "Get15118EVCertificate",
    "GetCertificateChainStatus",
    "GetCertificateStatus",
    "Heartbeat",
    "LogStatusNotification",
    "MeterValues",
    "NotifyChargingLimit",
    "NotifyCustomerInformation",
    "NotifyDERAlarm",
    "NotifyDERStartStop",
    "NotifyDisplayMessages",
    "NotifyEVChargingNeeds",
    "NotifyEVChargingSchedule",
    "NotifyEvent",
    "NotifyMonitoringReport",
    "NotifyPeriodicEventStream",
    "NotifyPriorityCharging",
    "NotifyReport",
    "NotifySettlement",
    "OpenPeriodicEventStream",
    "PublishFirmwareStatusNotification",
    "PullDynamicScheduleUpdate",
    "ReportChargingProfiles",
    "ReportDERControl",
    "ReservationStatusUpdate",
    "SecurityEventNotification",
    "SignCertificate",
    "StatusNotification",
    "TransactionEvent",
    "VatNumberValidation",
];

/// OCPP 1.6 §7 type names for the schemas' inline definitions.
const V16_NAMES: &[(&str, &str)] = &[
    ("AuthorizeResponse.idTagInfo", "IdTagInfo"),
    ("StartTransactionResponse.idTagInfo", "IdTagInfo"),
    ("StopTransactionResponse.idTagInfo", "IdTagInfo"),
    ("AuthorizationData.idTagInfo", "IdTagInfo"),
    ("IdTagInfo.status", "AuthorizationStatus"),
    ("BootNotificationResponse.status", "RegistrationStatus"),
    (
        "CancelReservationResponse.status",
        "CancelReservationStatus",
    ),
    ("ChangeAvailabilityRequest.type", "AvailabilityType"),
    ("ChangeAvailabilityResponse.status", "AvailabilityStatus"),
    ("ChangeConfigurationResponse.status", "ConfigurationStatus"),
    ("ClearCacheResponse.status", "ClearCacheStatus"),
    (
        "ClearChargingProfileRequest.chargingProfilePurpose",
        "ChargingProfilePurposeType",
    ),
    (
        "ClearChargingProfileResponse.status",
        "ClearChargingProfileStatus",
    ),
    ("DataTransferResponse.status", "DataTransferStatus"),
    (
        "DiagnosticsStatusNotificationRequest.status",
        "DiagnosticsStatus",
    ),
    ("FirmwareStatusNotificationRequest.status", "FirmwareStatus"),
    (
        "GetCompositeScheduleRequest.chargingRateUnit",
        "ChargingRateUnitType",
    ),
    (
        "GetCompositeScheduleResponse.status",
        "GetCompositeScheduleStatus",
    ),
    (
        "GetCompositeScheduleResponse.chargingSchedule",
        "ChargingSchedule",
    ),
    ("GetConfigurationResponse.configurationKey", "KeyValue"),
    ("SampledValue.context", "ReadingContext"),
    ("SampledValue.format", "ValueFormat"),
    ("SampledValue.measurand", "Measurand"),
    ("SampledValue.phase", "Phase"),
    ("SampledValue.location", "Location"),
    ("SampledValue.unit", "UnitOfMeasure"),
    (
        "RemoteStartTransactionRequest.chargingProfile",
        "ChargingProfile",
    ),
    (
        "SetChargingProfileRequest.csChargingProfiles",
        "ChargingProfile",
    ),
    (
        "ChargingProfile.chargingProfilePurpose",
        "ChargingProfilePurposeType",
    ),
    (
        "ChargingProfile.chargingProfileKind",
        "ChargingProfileKindType",
    ),
    ("ChargingProfile.recurrencyKind", "RecurrencyKindType"),
    ("ChargingSchedule.chargingRateUnit", "ChargingRateUnitType"),
    (
        "RemoteStartTransactionResponse.status",
        "RemoteStartStopStatus",
    ),
    (
        "RemoteStopTransactionResponse.status",
        "RemoteStartStopStatus",
    ),
    ("ReserveNowResponse.status", "ReservationStatus"),
    ("ResetRequest.type", "ResetType"),
    ("ResetResponse.status", "ResetStatus"),
    (
        "SendLocalListRequest.localAuthorizationList",
        "AuthorizationData",
    ),
    ("SendLocalListRequest.updateType", "UpdateType"),
    ("SendLocalListResponse.status", "UpdateStatus"),
    ("SetChargingProfileResponse.status", "ChargingProfileStatus"),
    (
        "StatusNotificationRequest.errorCode",
        "ChargePointErrorCode",
    ),
    ("StatusNotificationRequest.status", "ChargePointStatus"),
    ("StopTransactionRequest.reason", "Reason"),
    // The official StopTransaction schema's unit list lacks `Hertz`, so its
    // meter values are a type of their own.
    ("StopTransactionRequest.transactionData", "TransactionData"),
    ("TransactionData.sampledValue", "TransactionSampledValue"),
    ("TransactionSampledValue.context", "ReadingContext"),
    ("TransactionSampledValue.format", "ValueFormat"),
    ("TransactionSampledValue.measurand", "Measurand"),
    ("TransactionSampledValue.phase", "Phase"),
    ("TransactionSampledValue.location", "Location"),
    ("TransactionSampledValue.unit", "TransactionUnitOfMeasure"),
    ("TriggerMessageRequest.requestedMessage", "MessageTrigger"),
    ("TriggerMessageResponse.status", "TriggerMessageStatus"),
    ("UnlockConnectorResponse.status", "UnlockStatus"),
    // Security Whitepaper edition 3: its schemas' own enum names.
    (
        "CertificateSignedResponse.status",
        "CertificateSignedStatusEnumType",
    ),
    (
        "DeleteCertificateResponse.status",
        "DeleteCertificateStatusEnumType",
    ),
    (
        "ExtendedTriggerMessageRequest.requestedMessage",
        "MessageTriggerEnumType",
    ),
    (
        "ExtendedTriggerMessageResponse.status",
        "TriggerMessageStatusEnumType",
    ),
    (
        "GetInstalledCertificateIdsRequest.certificateType",
        "CertificateUseEnumType",
    ),
    (
        "GetInstalledCertificateIdsResponse.status",
        "GetInstalledCertificateStatusEnumType",
    ),
    ("GetLogRequest.logType", "LogEnumType"),
    ("GetLogResponse.status", "LogStatusEnumType"),
    (
        "InstallCertificateRequest.certificateType",
        "CertificateUseEnumType",
    ),
    (
        "InstallCertificateResponse.status",
        "InstallCertificateStatusEnumType",
    ),
    (
        "LogStatusNotificationRequest.status",
        "UploadLogStatusEnumType",
    ),
    ("SignCertificateResponse.status", "GenericStatusEnumType"),
    (
        "SignedFirmwareStatusNotificationRequest.status",
        "FirmwareStatusEnumType",
    ),
    (
        "SignedUpdateFirmwareResponse.status",
        "UpdateFirmwareStatusEnumType",
    ),
];

fn v16_file(action: &str) -> String {
    format!("{action}.json")
}

fn v2_file(action: &str) -> String {
    format!("{action}Request.json")
}

const VERSIONS: &[VersionSpec] = &[
    VersionSpec {
        module: "v16",
        marker: "V16",
        request_file: v16_file,
        from_station: V16_FROM_STATION,
        names: V16_NAMES,
    },
    VersionSpec {
        module: "v201",
        marker: "V201",
        request_file: v2_file,
        from_station: V201_FROM_STATION,
        names: &[],
    },
    VersionSpec {
        module: "v21",
        marker: "V21",
        request_file: v2_file,
        from_station: V21_FROM_STATION,
        names: &[],
    },
];

/// SEND messages (2.1): no response schema.
const SEND_ACTIONS: &[&str] = &["NotifyPeriodicEventStream"];

#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Text(Option<u64>),
    Uri(Option<u64>),
    Int(Option<i64>, Option<i64>),
    Dec(Option<i64>, Option<i64>, u32),
    Bool,
    Time,
    Any,
    Named(String),
    List(Box<Ty>, u64, u64),
}

#[derive(Debug, Clone, PartialEq)]
struct Field {
    wire: String,
    doc: Option<String>,
    required: bool,
    ty: Ty,
    default: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Def {
    Struct { fields: Vec<Field>, extra: bool },
    Enum { variants: Vec<String> },
}

#[derive(Debug, Clone)]
struct TypeDef {
    name: String,
    doc: Option<String>,
    def: Def,
    /// Where it was first found, for error messages.
    origin: String,
}

struct ActionDef {
    name: String,
    from_station: bool,
    both: bool,
    send: bool,
    request_file: String,
    response_file: Option<String>,
}

struct Registry<'a> {
    spec: &'a VersionSpec,
    types: BTreeMap<String, TypeDef>,
    order: Vec<String>,
}

fn upper_camel(s: &str) -> String {
    let mut out = String::new();
    let mut up = true;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            if up {
                out.extend(c.to_uppercase());
                up = false;
            } else {
                out.push(c);
            }
        } else {
            up = true;
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'V');
    }
    out
}

fn snake(s: &str) -> String {
    // "fullSoC" -> full_soc, not full_so_c
    let s = s.replace("SoC", "Soc");
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = if i > 0 { Some(chars[i - 1]) } else { None };
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                Some(p) if p.is_ascii_lowercase() => true,
                // "V2X" stays one word
                Some(p) if p.is_ascii_digit() => false,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                _ => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    const KEYWORDS: &[&str] = &[
        "as", "async", "await", "box", "break", "const", "continue", "crate", "dyn", "else",
        "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop",
        "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return", "static",
        "struct", "super", "trait", "true", "try", "type", "typeof", "unsafe", "use", "virtual",
        "where", "while", "yield",
    ];
    if KEYWORDS.contains(&out.as_str()) {
        format!("r#{out}")
    } else {
        out
    }
}

fn int_bound(n: Option<f64>, what: &str, origin: &str) -> Result<Option<i64>, String> {
    match n {
        None => Ok(None),
        Some(v) if v.fract() == 0.0 => Ok(Some(v as i64)),
        Some(v) => Err(format!(
            "{origin}: non-integral {what} {v} is not supported"
        )),
    }
}

impl<'a> Registry<'a> {
    fn new(spec: &'a VersionSpec) -> Self {
        Registry {
            spec,
            types: BTreeMap::new(),
            order: Vec::new(),
        }
    }

    fn register(&mut self, t: TypeDef) -> Result<String, String> {
        if let Some(existing) = self.types.get(&t.name) {
            if existing.def != t.def {
                return Err(format!(
                    "{}: two different types named `{}` (first from {}); add a name to the map",
                    t.origin, t.name, existing.origin
                ));
            }
            return Ok(t.name);
        }
        let name = t.name.clone();
        self.order.push(name.clone());
        self.types.insert(name.clone(), t);
        Ok(name)
    }

    fn inline_name(&self, parent: &str, prop: &str, is_enum: bool) -> String {
        let key = format!("{parent}.{prop}");
        if let Some((_, n)) = self.spec.names.iter().find(|(k, _)| *k == key) {
            return (*n).to_owned();
        }
        if is_enum {
            let base = parent
                .trim_end_matches("Request")
                .trim_end_matches("Response");
            format!("{base}{}", upper_camel(prop))
        } else {
            upper_camel(prop)
        }
    }

    fn description(node: &Json) -> Option<String> {
        node.str("description").map(str::to_owned)
    }

    /// The type of a property's schema. `parent` and `prop` name inline types.
    fn ty_of(
        &mut self,
        node: &Json,
        defs: &Json,
        parent: &str,
        prop: &str,
        origin: &str,
    ) -> Result<Ty, String> {
        if let Some(r) = node.str("$ref") {
            let name = r.rsplit('/').next().unwrap_or(r).to_owned();
            let def = defs
                .get(&name)
                .ok_or_else(|| format!("{origin}: unresolved $ref {r}"))?;
            if !self.types.contains_key(&name) || self.types[&name].origin != origin {
                self.type_def(def, defs, &name, origin)?;
            }
            return Ok(Ty::Named(name));
        }
        let ty = node.str("type");
        Ok(match ty {
            Some("string") if node.get("enum").is_some() => {
                let name = self.inline_name(parent, prop, true);
                Ty::Named(self.type_def(node, defs, &name, origin)?)
            }
            Some("string") => {
                let max = node.num("maxLength").map(|v| v as u64);
                match node.str("format") {
                    Some("date-time") => Ty::Time,
                    Some("uri") => Ty::Uri(max),
                    Some(f) => return Err(format!("{origin}: unsupported format {f}")),
                    None => Ty::Text(max),
                }
            }
            Some("integer") => Ty::Int(
                int_bound(node.num("minimum"), "minimum", origin)?,
                int_bound(node.num("maximum"), "maximum", origin)?,
            ),
            Some("number") => {
                let scale = match node.num("multipleOf") {
                    None => 0,
                    Some(m) if (m - 0.1).abs() < 1e-12 => 1,
                    Some(m) => return Err(format!("{origin}: unsupported multipleOf {m}")),
                };
                Ty::Dec(
                    int_bound(node.num("minimum"), "minimum", origin)?,
                    int_bound(node.num("maximum"), "maximum", origin)?,
                    scale,
                )
            }
            Some("boolean") => Ty::Bool,
            Some("array") => {
                let items = node
                    .get("items")
                    .ok_or_else(|| format!("{origin}: array without items"))?;
                let inner = self.ty_of(items, defs, parent, prop, origin)?;
                Ty::List(
                    Box::new(inner),
                    node.num("minItems").map_or(0, |v| v as u64),
                    node.num("maxItems").map_or(0, |v| v as u64),
                )
            }
            Some("object") => {
                let name = self.inline_name(parent, prop, false);
                Ty::Named(self.type_def(node, defs, &name, origin)?)
            }
            None => Ty::Any,
            Some(t) => return Err(format!("{origin}: unsupported type {t}")),
        })
    }

    /// Registers the named type described by `node`.
    fn type_def(
        &mut self,
        node: &Json,
        defs: &Json,
        name: &str,
        origin: &str,
    ) -> Result<String, String> {
        let doc = Self::description(node);
        let def = if let Some(values) = node.get("enum") {
            let variants = values
                .items()
                .iter()
                .map(|v| match v {
                    Json::Str(s) => Ok(s.clone()),
                    _ => Err(format!("{origin}: non-string enum value in {name}")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Def::Enum { variants }
        } else {
            let required: Vec<&str> = node
                .get("required")
                .map(|r| {
                    r.items()
                        .iter()
                        .filter_map(|v| {
                            if let Json::Str(s) = v {
                                Some(s.as_str())
                            } else {
                                None
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut fields = Vec::new();
            for (wire, prop) in node.get("properties").map(Json::members).unwrap_or(&[]) {
                let ty = self.ty_of(prop, defs, name, wire, origin)?;
                let default = prop.get("default").map(|d| match d {
                    Json::Str(s) => s.clone(),
                    Json::Bool(b) => b.to_string(),
                    Json::Num(n) => n.to_string(),
                    other => format!("{other:?}"),
                });
                fields.push(Field {
                    wire: wire.clone(),
                    doc: Self::description(prop),
                    required: required.contains(&wire.as_str()),
                    ty,
                    default,
                });
            }
            let extra = node.get("additionalProperties") != Some(&Json::Bool(false));
            Def::Struct { fields, extra }
        };
        self.register(TypeDef {
            name: name.to_owned(),
            doc,
            def,
            origin: origin.to_owned(),
        })
    }
}

fn load(path: &Path) -> Result<Json, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = text.trim_start_matches('\u{feff}');
    serde_json::from_str(text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Rustdoc text from a schema description: CRLF to LF, no indentation (which
/// rustdoc would read as a code block and run as a doctest), brackets and
/// angle brackets escaped.
fn doc_attr(out: &mut String, indent: &str, text: &str) {
    let mut lines: Vec<String> = text
        .replace("\r\n", "\n")
        .replace('\r', "\n")
        .lines()
        .map(|l| {
            l.trim()
                .replace('\\', "\\\\")
                .replace('[', "\\[")
                .replace(']', "\\]")
                .replace('<', "\\<")
                .replace('>', "\\>")
                .replace('`', "'")
        })
        .collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    while lines.first().is_some_and(|l| l.is_empty()) {
        lines.remove(0);
    }
    if lines.is_empty() {
        return;
    }
    let joined = lines.join("\n");
    let _ = writeln!(out, "{indent}#[doc = {joined:?}]");
}

fn bound(v: Option<i64>) -> String {
    match v {
        Some(n) if n < 0 => format!("{{ {n} }}"),
        Some(n) => n.to_string(),
        None => "{ crate::codec::NONE }".to_owned(),
    }
}

/// The codec type and the Rust type of a field type.
fn codec(ty: &Ty) -> (String, String) {
    match ty {
        Ty::Text(None) => ("crate::codec::Text".into(), "String".into()),
        Ty::Text(Some(n)) => {
            let t = format!("crate::BoundedString<{n}>");
            (format!("crate::codec::Plain<{t}>"), t)
        }
        Ty::Uri(n) => (
            format!("crate::codec::Uri<{}>", n.unwrap_or(0)),
            "String".into(),
        ),
        Ty::Int(min, max) => (
            format!("crate::codec::Int<{}, {}>", bound(*min), bound(*max)),
            "i32".into(),
        ),
        Ty::Dec(min, max, s) => (
            format!("crate::codec::Dec<{}, {}, {s}>", bound(*min), bound(*max)),
            "rust_decimal::Decimal".into(),
        ),
        Ty::Bool => ("crate::codec::Plain<bool>".into(), "bool".into()),
        Ty::Time => (
            "crate::codec::Time".into(),
            "chrono::DateTime<chrono::Utc>".into(),
        ),
        Ty::Any => ("crate::codec::AnyJson".into(), "serde_json::Value".into()),
        Ty::Named(n) => (format!("crate::codec::Plain<{n}>"), n.clone()),
        Ty::List(inner, min, max) => {
            let (c, t) = codec(inner);
            (
                format!("crate::codec::List<{c}, {min}, {max}>"),
                format!("Vec<{t}>"),
            )
        }
    }
}

/// Whether serde's own `Serialize` differs from the wire form.
fn needs_ser_codec(ty: &Ty) -> bool {
    match ty {
        Ty::Dec(..) | Ty::Time => true,
        Ty::List(inner, ..) => needs_ser_codec(inner),
        _ => false,
    }
}

/// The type schemars should describe (decimals are JSON numbers).
fn schema_ty(ty: &Ty) -> Option<String> {
    match ty {
        Ty::Dec(..) => Some("f64".into()),
        Ty::List(inner, ..) => schema_ty(inner).map(|t| format!("Vec<{t}>")),
        _ => None,
    }
}

fn emit_enum(out: &mut String, t: &TypeDef, variants: &[String]) -> Result<(), String> {
    let mut idents: Vec<String> = Vec::new();
    for v in variants {
        let id = upper_camel(v);
        if id.is_empty() || idents.contains(&id) {
            return Err(format!(
                "{}: enum {} value {v:?} gives a clashing variant name",
                t.origin, t.name
            ));
        }
        idents.push(id);
    }
    let name = &t.name;
    match &t.doc {
        Some(d) => doc_attr(out, "", d),
        None => out.push_str("#[allow(missing_docs)] // no description in schema\n"),
    }
    out.push_str("#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, schemars::JsonSchema)]\n#[non_exhaustive]\n");
    let _ = writeln!(out, "pub enum {name} {{");
    for (v, id) in variants.iter().zip(&idents) {
        let _ = writeln!(out, "    #[doc = {:?}]", format!("`{v}`"));
        let _ = writeln!(out, "    #[serde(rename = {v:?})]\n    {id},");
    }
    out.push_str("}\n\n");
    let _ = writeln!(out, "impl crate::codec::WireEnum for {name} {{");
    let _ = writeln!(out, "    const NAME: &'static str = {name:?};");
    out.push_str("    const VARIANTS: &'static [&'static str] = &[");
    for v in variants {
        let _ = write!(out, "{v:?}, ");
    }
    out.push_str(
        "];\n    #[inline]\n    fn from_wire(s: &str) -> Option<Self> {\n        Some(match s {\n",
    );
    for (v, id) in variants.iter().zip(&idents) {
        let _ = writeln!(out, "            {v:?} => Self::{id},");
    }
    out.push_str("            _ => return None,\n        })\n    }\n    fn as_wire(&self) -> &'static str {\n        match self {\n");
    for (v, id) in variants.iter().zip(&idents) {
        let _ = writeln!(out, "            Self::{id} => {v:?},");
    }
    out.push_str("        }\n    }\n}\n\n");
    let _ = writeln!(
        out,
        "impl<'de> serde::Deserialize<'de> for {name} {{\n    #[inline]\n    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {{\n        crate::codec::de_enum(d)\n    }}\n}}\n"
    );
    let _ = writeln!(
        out,
        "impl {name} {{\n    /// The value as spelled on the wire.\n    pub fn as_str(&self) -> &'static str {{\n        crate::codec::WireEnum::as_wire(self)\n    }}\n}}\n"
    );
    let _ = writeln!(
        out,
        "impl std::fmt::Display for {name} {{\n    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {{\n        f.write_str(self.as_str())\n    }}\n}}\n"
    );
    let _ = writeln!(
        out,
        "impl std::str::FromStr for {name} {{\n    type Err = crate::UnknownEnumValue;\n    fn from_str(s: &str) -> Result<Self, Self::Err> {{\n        <Self as crate::codec::WireEnum>::from_wire(s).ok_or_else(|| crate::UnknownEnumValue::new::<Self>(s))\n    }}\n}}\n"
    );
    let _ = writeln!(out, "#[cfg(any(test, feature = \"arbitrary\"))]\nimpl<'a> arbitrary::Arbitrary<'a> for {name} {{\n    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {{\n        Ok(*u.choose(&[");
    for id in &idents {
        let _ = write!(out, "Self::{id}, ");
    }
    out.push_str("])?)\n    }\n}\n\n");
    Ok(())
}

fn emit_struct(out: &mut String, t: &TypeDef, fields: &[Field], extra: bool) {
    let name = &t.name;
    match &t.doc {
        Some(d) => doc_attr(out, "", d),
        None => out.push_str("#[allow(missing_docs)] // no description in schema\n"),
    }
    out.push_str("#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]\n");
    if !extra {
        out.push_str("#[schemars(deny_unknown_fields)]\n");
    }
    let all_optional = fields.iter().all(|f| !f.required);
    let _ = writeln!(out, "pub struct {name} {{");
    let idents: Vec<String> = fields.iter().map(|f| snake(&f.wire)).collect();
    for (f, id) in fields.iter().zip(&idents) {
        let (c, rt) = codec(&f.ty);
        let mut doc = f.doc.clone().unwrap_or_default();
        if let Some(d) = &f.default {
            doc.push_str(&format!("\n\nSchema default: `{d}`."));
        }
        if doc.trim().is_empty() {
            out.push_str("    #[allow(missing_docs)] // no description in schema\n");
        } else {
            doc_attr(out, "    ", &doc);
        }
        let mut attrs = vec![format!("rename = {:?}", f.wire)];
        if !f.required {
            attrs.push("skip_serializing_if = \"Option::is_none\"".into());
        }
        if needs_ser_codec(&f.ty) {
            let func = if f.required { "ser" } else { "ser_opt" };
            attrs.push(format!(
                "serialize_with = \"crate::codec::{func}::<{c}, _>\""
            ));
        }
        let _ = writeln!(out, "    #[serde({})]", attrs.join(", "));
        if let Some(st) = schema_ty(&f.ty) {
            let st = if f.required {
                st
            } else {
                format!("Option<{st}>")
            };
            let _ = writeln!(out, "    #[schemars(with = {st:?})]");
        }
        let rt = if f.required {
            rt
        } else {
            format!("Option<{rt}>")
        };
        let _ = writeln!(out, "    pub {id}: {rt},");
    }
    if extra {
        out.push_str("    /// Properties beyond the schema's (it allows them): kept and re-emitted.\n    #[serde(flatten)]\n    pub extra: serde_json::Map<String, serde_json::Value>,\n");
    }
    out.push_str("}\n\n");

    // Deserialize: strict objects, exact fields, codecs per field.
    let fields_list: Vec<String> = fields.iter().map(|f| format!("{:?}", f.wire)).collect();
    let _ = writeln!(out, "impl<'de> serde::Deserialize<'de> for {name} {{");
    out.push_str(
        "    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {\n",
    );
    out.push_str("        struct V;\n");
    if !extra {
        let _ = writeln!(
            out,
            "        const FIELDS: &[&str] = &[{}];",
            fields_list.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "        impl<'de> serde::de::Visitor<'de> for V {{\n            type Value = {name};"
    );
    let _ = writeln!(out, "            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {{\n                f.write_str(\"a {name} object\")\n            }}");
    out.push_str("            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {\n");
    for (f, id) in fields.iter().zip(&idents) {
        let (c, _) = codec(&f.ty);
        let _ = writeln!(out, "                let mut f_{}: Option<<{c} as crate::codec::FieldCodec>::Value> = None;", id.trim_start_matches("r#"));
    }
    if extra {
        out.push_str("                let mut extra = serde_json::Map::new();\n");
    }
    out.push_str("                while let Some(key) = map.next_key::<crate::codec::Key<'de>>()? {\n                    match key.as_str() {\n");
    for (f, id) in fields.iter().zip(&idents) {
        let (c, _) = codec(&f.ty);
        let _ = writeln!(
            out,
            "                        {:?} => crate::codec::take_field::<{c}, _>(&mut map, &mut f_{}, {:?})?,",
            f.wire,
            id.trim_start_matches("r#"),
            f.wire
        );
    }
    if extra {
        out.push_str("                        other => {\n                            let k = other.to_owned();\n                            if extra.contains_key(&k) {\n                                return Err(serde::de::Error::custom(format_args!(\"duplicate property `{k}`\")));\n                            }\n                            let v: serde_json::Value = map.next_value()?;\n                            extra.insert(k, v);\n                        }\n");
    } else {
        out.push_str("                        other => return Err(crate::codec::unknown_field(other, FIELDS)),\n");
    }
    out.push_str("                    }\n                }\n");
    let _ = writeln!(out, "                Ok({name} {{");
    for (f, id) in fields.iter().zip(&idents) {
        let var = format!("f_{}", id.trim_start_matches("r#"));
        if f.required {
            let _ = writeln!(out, "                    {id}: {var}.ok_or_else(|| crate::codec::missing_field({:?}))?,", f.wire);
        } else {
            let _ = writeln!(out, "                    {id}: {var},");
        }
    }
    if extra {
        out.push_str("                    extra,\n");
    }
    out.push_str(
        "                })\n            }\n        }\n        d.deserialize_map(V)\n    }\n}\n\n",
    );

    if all_optional && !fields.is_empty() || fields.is_empty() {
        let _ = writeln!(
            out,
            "impl Default for {name} {{\n    fn default() -> Self {{\n        Self {{"
        );
        for id in &idents {
            let _ = writeln!(out, "            {id}: None,");
        }
        if extra {
            out.push_str("            extra: serde_json::Map::new(),\n");
        }
        out.push_str("        }\n    }\n}\n\n");
    }

    let _ = writeln!(out, "#[cfg(any(test, feature = \"arbitrary\"))]\nimpl<'a> arbitrary::Arbitrary<'a> for {name} {{");
    if fields.is_empty() && !extra {
        out.push_str(
            "    fn arbitrary(_: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {\n",
        );
    } else {
        out.push_str("    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {\n        use crate::codec::FieldCodec as _;\n");
    }
    let _ = writeln!(out, "        Ok({name} {{");
    for (f, id) in fields.iter().zip(&idents) {
        let (c, _) = codec(&f.ty);
        if f.required {
            let _ = writeln!(out, "            {id}: <{c}>::arbitrary(u)?,");
        } else {
            let _ = writeln!(out, "            {id}: if u.arbitrary()? {{ Some(<{c}>::arbitrary(u)?) }} else {{ None }},");
        }
    }
    if extra {
        out.push_str("            extra: crate::codec::arbitrary_extra(u)?,\n");
    }
    out.push_str("        })\n    }\n}\n\n");
}

pub(crate) fn generate(root: &Path) -> Result<Vec<(PathBuf, String)>, String> {
    let mut outputs = Vec::new();
    let mut traits = String::from(
        "// @generated by `cargo xtask codegen` from ocpp-types/schemas/*/*.json. Do not edit.\n\n\
         use std::future::Future;\nuse std::sync::Arc;\n\nuse evproto_ocpp_proto::CallError;\nuse evproto_ocpp_types::{v16, v201, v21};\n\n\
         use crate::{Ctx, Router, Routes};\n\n\
         fn not_implemented(action: &str) -> CallError {\n    CallError::new(\"NotImplemented\", format!(\"`{action}` is not implemented\"))\n}\n\n",
    );
    for spec in VERSIONS {
        let dir = root.join("ocpp-types/schemas").join(spec.module);
        outputs.push((
            root.join("ocpp-types/src")
                .join(spec.module)
                .join("generated.rs"),
            generate_from(&dir, spec)?,
        ));
        let actions = list_actions(&dir, spec)?;
        emit_trait(&mut traits, spec, &actions, true);
        emit_trait(&mut traits, spec, &actions, false);
    }
    outputs.push((root.join("ocpp-rpc/src/handlers.rs"), traits));
    Ok(outputs)
}

/// One trait per version and side: an async method per action the peer
/// sends, each defaulting to `NotImplemented`, plus `into_routes`.
fn emit_trait(out: &mut String, spec: &VersionSpec, actions: &[ActionDef], csms: bool) {
    let m = spec.module;
    let digits = m.trim_start_matches('v');
    let (name, side, router, who) = if csms {
        (
            format!("Csms{digits}"),
            "CSMS",
            format!("csms_{m}"),
            "a charging station sends",
        )
    } else {
        (
            format!("ChargingStation{digits}"),
            "charging station",
            format!("station_{m}"),
            "the CSMS sends",
        )
    };
    let _ = writeln!(
        out,
        "/// The {side} side of OCPP {ver} as one trait: a method per action {who}, each\n\
         /// answering `NotImplemented` unless overridden. [`{name}::into_routes`] gives\n\
         /// the same dispatch table as a [`Router`] with every action registered.\n\
         pub trait {name}: Send + Sync + Sized + 'static {{",
        ver = match m {
            "v16" => "1.6",
            "v201" => "2.0.1",
            _ => "2.1",
        },
    );
    let handled: Vec<&ActionDef> = actions
        .iter()
        .filter(|a| {
            !a.send
                && (a.both
                    || if csms {
                        a.from_station
                    } else {
                        !a.from_station
                    })
        })
        .collect();
    for a in &handled {
        let n = &a.name;
        let _ = writeln!(
            out,
            "    /// Handles `{n}`.\n    fn {}(&self, ctx: Ctx<()>, request: {m}::{n}Request) -> impl Future<Output = Result<{m}::{n}Response, CallError>> + Send {{\n        let _ = (ctx, request);\n        async {{ Err(not_implemented({n:?})) }}\n    }}\n",
            snake(n).trim_start_matches("r#")
        );
    }
    let _ = writeln!(out, "    /// The dispatch table for this implementation.\n    fn into_routes(self) -> Routes {{\n        Router::{router}()");
    for a in &handled {
        let n = &a.name;
        let _ = writeln!(
            out,
            "            .on::<{m}::action::{n}>(|ctx: Ctx<Arc<Self>>, req: {m}::{n}Request| async move {{\n                let this = ctx.state.clone();\n                this.{}(Ctx {{ identity: ctx.identity, version: ctx.version, peer: ctx.peer, state: () }}, req).await\n            }})",
            snake(n).trim_start_matches("r#")
        );
    }
    out.push_str("            .with_state(Arc::new(self))\n    }\n}\n\n");
}

/// The actions of one version, from its schema file names.
fn list_actions(dir: &Path, spec: &VersionSpec) -> Result<Vec<ActionDef>, String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    let mut actions = Vec::new();
    for f in &files {
        let stem = f.trim_end_matches(".json");
        if stem.ends_with("Response") {
            continue;
        }
        let (name, send) = if SEND_ACTIONS.contains(&stem) {
            (stem.to_owned(), true)
        } else if spec.module == "v16" {
            (stem.to_owned(), false)
        } else {
            match stem.strip_suffix("Request") {
                Some(n) => (n.to_owned(), false),
                None => return Err(format!("{}: unexpected file {f}", spec.module)),
            }
        };
        let request_file = if send {
            f.clone()
        } else {
            (spec.request_file)(&name)
        };
        let response_file = format!("{name}Response.json");
        if !send && !files.contains(&response_file) {
            return Err(format!("{}: {name} has no response schema", spec.module));
        }
        actions.push(ActionDef {
            from_station: spec.from_station.contains(&name.as_str()),
            both: name == "DataTransfer",
            send,
            request_file,
            response_file: (!send).then_some(response_file),
            name,
        });
    }
    actions.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(actions)
}

/// Generates one version's module from the schemas in `dir`.
fn generate_from(dir: &Path, spec: &VersionSpec) -> Result<String, String> {
    let dir = dir.to_path_buf();
    let actions = list_actions(&dir, spec)?;

    let mut reg = Registry::new(spec);
    for a in &actions {
        let mut roots = vec![(a.request_file.clone(), format!("{}Request", a.name))];
        if let Some(r) = &a.response_file {
            roots.push((r.clone(), format!("{}Response", a.name)));
        }
        for (file, type_name) in roots {
            let schema = load(&dir.join(&file))?;
            let defs = schema
                .get("definitions")
                .cloned()
                .unwrap_or(Json::Obj(Vec::new()));
            let origin = format!("{}/{file}", spec.module);
            reg.type_def(&schema, &defs, &type_name, &origin)?;
        }
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "// @generated by `cargo xtask codegen` from ocpp-types/schemas/{}/*.json. Do not edit.\n",
        spec.module
    );
    for name in &reg.order {
        let t = &reg.types[name];
        match &t.def {
            Def::Enum { variants } => emit_enum(&mut out, t, variants)?,
            Def::Struct { fields, extra } => emit_struct(&mut out, t, fields, *extra),
        }
    }
    emit_actions(&mut out, spec, &actions);
    Ok(out)
}

fn emit_actions(out: &mut String, spec: &VersionSpec, actions: &[ActionDef]) {
    let m = spec.module;
    let ver = spec.marker;
    out.push_str("/// One marker type per action, implementing [`crate::Action`] (or [`crate::SendAction`]).\npub mod action {\n");
    for a in actions {
        let n = &a.name;
        let dir = if a.both {
            "Both"
        } else if a.from_station {
            "ChargingStationToCsms"
        } else {
            "CsmsToChargingStation"
        };
        let _ = writeln!(
            out,
            "    /// The `{n}` action ([`super::{n}Request`]{}).\n    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]\n    pub struct {n};\n",
            if a.send { ", a SEND message" } else { "" }
        );
        if a.send {
            let _ = writeln!(
                out,
                "    impl crate::SendAction for {n} {{\n        const NAME: &'static str = {n:?};\n        const DIRECTION: crate::Direction = crate::Direction::{dir};\n        const SCHEMA: &'static str = include_str!(\"../../schemas/{m}/{}\");\n        type Version = crate::{ver};\n        type Payload = super::{n}Request;\n    }}\n",
                a.request_file
            );
        } else {
            let _ = writeln!(
                out,
                "    impl crate::Action for {n} {{\n        const NAME: &'static str = {n:?};\n        const DIRECTION: crate::Direction = crate::Direction::{dir};\n        const REQUEST_SCHEMA: &'static str = include_str!(\"../../schemas/{m}/{}\");\n        const RESPONSE_SCHEMA: &'static str = include_str!(\"../../schemas/{m}/{}\");\n        type Version = crate::{ver};\n        type Request = super::{n}Request;\n        type Response = super::{n}Response;\n    }}\n",
                a.request_file,
                a.response_file.as_deref().unwrap_or_default()
            );
        }
        if a.from_station || a.both {
            let _ = writeln!(out, "    impl crate::FromChargingStation for {n} {{}}");
        }
        if !a.from_station || a.both {
            let _ = writeln!(out, "    impl crate::FromCsms for {n} {{}}");
        }
        out.push('\n');
    }
    out.push_str("}\n\n");

    for (enum_name, suffix, what) in [
        ("Request", "Request", "request"),
        ("Response", "Response", "response"),
    ] {
        let _ = writeln!(
            out,
            "/// Every {what} payload of this version, tagged by action (SEND payloads are in [`Request`] too).\n#[derive(Debug, Clone, PartialEq)]\n#[non_exhaustive]\n#[allow(clippy::large_enum_variant)]\npub enum {enum_name} {{"
        );
        for a in actions.iter().filter(|a| suffix == "Request" || !a.send) {
            let _ = writeln!(
                out,
                "    #[doc = {:?}]\n    {}({}{suffix}),",
                format!("`{}` {what}.", a.name),
                a.name,
                a.name
            );
        }
        out.push_str("}\n\n");
        let _ = writeln!(out, "impl {enum_name} {{");
        let _ = writeln!(out, "    /// Decodes and validates a {what} payload for `action`.\n    ///\n    /// # Errors\n    ///\n    /// [`crate::DecodeError`]: the payload breaks its schema, or the action is unknown\n    /// ([`crate::DecodeErrorKind::UnknownAction`]).\n    pub fn decode(action: &str, payload: &str) -> Result<Self, crate::DecodeError> {{\n        match action {{");
        for a in actions.iter().filter(|a| suffix == "Request" || !a.send) {
            let _ = writeln!(
                out,
                "            {:?} => crate::from_str(payload).map(Self::{}),",
                a.name, a.name
            );
        }
        out.push_str("            _ => Err(crate::DecodeError::unknown_action(action)),\n        }\n    }\n\n");
        out.push_str("    /// The action name.\n    pub fn action(&self) -> &'static str {\n        match self {\n");
        for a in actions.iter().filter(|a| suffix == "Request" || !a.send) {
            let _ = writeln!(out, "            Self::{}(_) => {:?},", a.name, a.name);
        }
        out.push_str("        }\n    }\n\n");
        out.push_str("    /// The payload as JSON text.\n    pub fn to_json(&self) -> String {\n        match self {\n");
        for a in actions.iter().filter(|a| suffix == "Request" || !a.send) {
            let _ = writeln!(out, "            Self::{}(p) => crate::to_json(p),", a.name);
        }
        out.push_str("        }\n    }\n}\n\n");
    }

    out.push_str("/// Every action of this version, sorted by name.\npub static ACTIONS: &[crate::ActionInfo] = &[\n");
    for a in actions {
        let n = &a.name;
        let dir = if a.both {
            "Both"
        } else if a.from_station {
            "ChargingStationToCsms"
        } else {
            "CsmsToChargingStation"
        };
        let _ = writeln!(out, "    crate::ActionInfo {{");
        let _ = writeln!(
            out,
            "        name: {n:?},\n        direction: crate::Direction::{dir},\n        send: {},",
            a.send
        );
        let _ = writeln!(
            out,
            "        request_schema: {:?},",
            format!("{m}/{}", a.request_file)
        );
        let (schema_trait, schema_const) = if a.send {
            ("SendAction", "SCHEMA")
        } else {
            ("Action", "REQUEST_SCHEMA")
        };
        let _ = writeln!(
            out,
            "        request_schema_json: <action::{n} as crate::{schema_trait}>::{schema_const},"
        );
        match &a.response_file {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "        response_schema: Some({:?}),",
                    format!("{m}/{r}")
                );
            }
            None => out.push_str("        response_schema: None,\n"),
        }
        let _ = writeln!(
            out,
            "        validate_request: crate::validate::<{n}Request>,"
        );
        let _ = writeln!(
            out,
            "        validate_request_with: crate::validate_with::<{n}Request>,"
        );
        if a.send {
            out.push_str(
                "        validate_response: None,\n        validate_response_with: None,\n",
            );
        } else {
            let _ = writeln!(
                out,
                "        validate_response: Some(crate::validate::<{n}Response>),"
            );
            let _ = writeln!(
                out,
                "        validate_response_with: Some(crate::validate_with::<{n}Response>),"
            );
        }
        let _ = writeln!(out, "        #[cfg(any(test, feature = \"arbitrary\"))]\n        arbitrary_request: crate::arbitrary_json::<{n}Request>,");
        if a.send {
            out.push_str("        #[cfg(any(test, feature = \"arbitrary\"))]\n        arbitrary_response: None,\n");
        } else {
            let _ = writeln!(out, "        #[cfg(any(test, feature = \"arbitrary\"))]\n        arbitrary_response: Some(crate::arbitrary_json::<{n}Response>),");
        }
        out.push_str("    },\n");
    }
    out.push_str("];\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden file: a small schema set exercising every construct the
    /// generator handles (enums, bounded strings, bounded integers and
    /// decimals, `multipleOf`, item counts, date-times, `customData`, a
    /// property without a type). `UPDATE_GOLDEN=1 cargo test -p xtask`
    /// rewrites the expected output after a deliberate generator change.
    #[test]
    fn golden_output() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ocpp");
        let spec = VersionSpec {
            module: "v201",
            marker: "V201",
            request_file: v2_file,
            from_station: &["Example"],
            names: &[],
        };
        let out = generate_from(&fixtures.join("schemas"), &spec).unwrap();
        let expected_path = fixtures.join("expected_generated.rs");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&expected_path, &out).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        assert!(
            out == expected,
            "generator output differs from {}; rerun with UPDATE_GOLDEN=1 if intended",
            expected_path.display()
        );
    }

    #[test]
    fn names() {
        assert_eq!(snake("chargingStation"), "charging_station");
        assert_eq!(snake("fullSoC"), "full_soc");
        assert_eq!(snake("evMinV2XEnergyRequest"), "ev_min_v2x_energy_request");
        assert_eq!(snake("EVSEId"), "evse_id");
        assert_eq!(snake("type"), "r#type");
        assert_eq!(
            upper_camel("Energy.Active.Import.Register"),
            "EnergyActiveImportRegister"
        );
        assert_eq!(upper_camel("L1-N"), "L1N");
        assert_eq!(upper_camel("kWh"), "KWh");
    }

    #[test]
    fn conflicting_types_are_an_error() {
        let spec = VersionSpec {
            module: "v16",
            marker: "V16",
            request_file: v16_file,
            from_station: &[],
            names: &[],
        };
        let mut reg = Registry::new(&spec);
        let defs = Json::Obj(Vec::new());
        let a: Json = serde_json::from_str(r#"{"type":"string","enum":["A"]}"#).unwrap();
        let b: Json = serde_json::from_str(r#"{"type":"string","enum":["B"]}"#).unwrap();
        reg.type_def(&a, &defs, "Status", "a.json").unwrap();
        assert!(
            reg.type_def(&a, &defs, "Status", "b.json").is_ok(),
            "identical types merge"
        );
        assert!(reg
            .type_def(&b, &defs, "Status", "c.json")
            .unwrap_err()
            .contains("two different types"));
    }
}
