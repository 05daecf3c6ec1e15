//! The SupportedAppProtocol handshake (ISO 15118-2 §8.2, schema
//! `V2G_CI_AppProtocol.xsd`, namespace `urn:iso:15118:2:2010:AppProtocol`):
//! the messages, their EXI codec (checked byte for byte against EXIficient in
//! `iso15118/tests/`), and the SECC's choice of protocol.
//!
//! ```
//! use evproto_iso15118::app_protocol::{self, AppProtocol, Message, SupportedAppProtocolReq, Offer};
//!
//! // A Tesla's request: its own namespace first, then DIN.
//! let req = SupportedAppProtocolReq { app_protocols: vec![
//!     AppProtocol { protocol_namespace: "urn:tesla:din:2018:MsgDef".into(), version_number_major: 2, version_number_minor: 0, schema_id: 1, priority: 1 },
//!     AppProtocol { protocol_namespace: "urn:din:70121:2012:MsgDef".into(), version_number_major: 2, version_number_minor: 0, schema_id: 2, priority: 2 },
//! ]};
//! let mut bytes = Vec::new();
//! app_protocol::encode(&Message::Req(req.clone()), &mut bytes);
//! assert_eq!(app_protocol::decode(&bytes).unwrap(), Message::Req(req.clone()));
//!
//! // The SECC speaks DIN and -2: the unknown namespace is skipped.
//! let res = app_protocol::negotiate(&req, &[Offer::DIN, Offer::ISO2]);
//! assert_eq!(res.schema_id, Some(2));
//! ```

use serde::{Deserialize, Serialize};

use crate::exi::{BitReader, BitWriter, ExiError, SECOND_LEVEL_START};
use crate::grammar::expect;

/// One protocol the EV offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AppProtocol {
    /// `protocolNamespaceType`: anyURI, at most 100 characters.
    pub protocol_namespace: String,
    /// `xs:unsignedInt`.
    pub version_number_major: u32,
    /// `xs:unsignedInt`.
    pub version_number_minor: u32,
    /// `idType`: unsignedByte.
    #[serde(rename = "SchemaID")]
    pub schema_id: u8,
    /// `priorityType`: 1 (highest) to 20.
    pub priority: u8,
}

/// `supportedAppProtocolReq`: 1 to 20 protocols.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportedAppProtocolReq {
    /// The offered protocols.
    #[serde(rename = "AppProtocol")]
    pub app_protocols: Vec<AppProtocol>,
}

/// `responseCodeType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseCode {
    /// The EV's version is supported as is.
    #[serde(rename = "OK_SuccessfulNegotiation")]
    OkSuccessfulNegotiation,
    /// Same major version, other minor version.
    #[serde(rename = "OK_SuccessfulNegotiationWithMinorDeviation")]
    OkSuccessfulNegotiationWithMinorDeviation,
    /// Nothing in common.
    #[serde(rename = "Failed_NoNegotiation")]
    FailedNoNegotiation,
}

impl ResponseCode {
    const ALL: [ResponseCode; 3] = [
        ResponseCode::OkSuccessfulNegotiation,
        ResponseCode::OkSuccessfulNegotiationWithMinorDeviation,
        ResponseCode::FailedNoNegotiation,
    ];
}

/// `supportedAppProtocolRes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportedAppProtocolRes {
    /// The outcome.
    #[serde(rename = "ResponseCode")]
    pub response_code: ResponseCode,
    /// The chosen protocol's SchemaID (absent on failure).
    #[serde(rename = "SchemaID", default, skip_serializing_if = "Option::is_none")]
    pub schema_id: Option<u8>,
}

/// A message of the handshake (the document's root element).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// EVCC → SECC.
    #[serde(rename = "supportedAppProtocolReq")]
    Req(SupportedAppProtocolReq),
    /// SECC → EVCC.
    #[serde(rename = "supportedAppProtocolRes")]
    Res(SupportedAppProtocolRes),
}

impl Message {
    /// The root element's name.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Req(_) => "supportedAppProtocolReq",
            Message::Res(_) => "supportedAppProtocolRes",
        }
    }
}

/// Most protocols a request may carry (`maxOccurs="20"`).
pub const MAX_PROTOCOLS: usize = 20;
/// Longest namespace (`protocolNamespaceType` maxLength).
pub const MAX_NAMESPACE: usize = 100;

/// Encodes a message as an EXI document (header `0x80` included).
///
/// Values outside the schema's facets (more than 20 protocols, a
/// namespace over 100 characters, a priority outside 1..=20) are written as
/// they are clamped by the codec's widths would corrupt them, so they are
/// refused by [`check`]; call it first when the values come from outside.
pub fn encode(m: &Message, out: &mut Vec<u8>) {
    let mut w = BitWriter::with_header();
    // DocContent: SE(supportedAppProtocolReq) 0, SE(supportedAppProtocolRes) 1, SE(*) 2
    match m {
        Message::Req(req) => {
            w.event(0, 3);
            for (i, p) in req.app_protocols.iter().enumerate() {
                // after the first: SE(AppProtocol) 0, EE 1 (+ second level)
                if i == 0 {
                    w.event(0, 2);
                } else {
                    w.event(0, 3);
                }
                encode_protocol(&mut w, p);
            }
            if req.app_protocols.len() < MAX_PROTOCOLS {
                w.event(1, 3); // EE
            } else {
                w.event(0, 2); // EE, the only declared production after the 20th
            }
        }
        Message::Res(res) => {
            w.event(1, 3);
            w.event(0, 2); // SE(ResponseCode)
            w.event(0, 2); // CH
            let idx = ResponseCode::ALL
                .iter()
                .position(|c| *c == res.response_code)
                .unwrap_or(0);
            w.bits(2, idx as u32);
            w.event(0, 2); // EE
            match res.schema_id {
                Some(id) => {
                    w.event(0, 3); // SE(SchemaID)
                    w.event(0, 2); // CH
                    w.bits(8, u32::from(id));
                    w.event(0, 2); // EE(SchemaID)
                    w.event(0, 2); // EE
                }
                None => w.event(1, 3), // EE
            }
        }
    }
    // EE of the root leaves DocEnd, whose only production ED has no code
    out.extend_from_slice(&w.finish());
}

fn encode_protocol(w: &mut BitWriter, p: &AppProtocol) {
    w.event(0, 2); // SE(ProtocolNamespace)
    if p.protocol_namespace.is_empty() {
        // an empty string is no CH at all: the second-level EE (as EXIficient writes it)
        w.event(1, 2);
        w.event(0, SECOND_LEVEL_START);
    } else {
        w.event(0, 2); // CH
        w.string(&p.protocol_namespace);
        w.event(0, 2); // EE
    }
    for v in [p.version_number_major, p.version_number_minor] {
        w.event(0, 2); // SE
        w.event(0, 2); // CH
        w.unsigned(u64::from(v));
        w.event(0, 2); // EE
    }
    w.event(0, 2); // SE(SchemaID)
    w.event(0, 2);
    w.bits(8, u32::from(p.schema_id));
    w.event(0, 2);
    w.event(0, 2); // SE(Priority)
    w.event(0, 2);
    w.bits(5, u32::from(p.priority.saturating_sub(1)));
    w.event(0, 2);
    w.event(0, 2); // EE(AppProtocol)
}

/// Checks the schema's facets.
pub fn check(m: &Message) -> Result<(), ExiError> {
    if let Message::Req(req) = m {
        if req.app_protocols.is_empty() || req.app_protocols.len() > MAX_PROTOCOLS {
            return Err(ExiError::Value {
                what: "AppProtocol",
                reason: format!(
                    "{} protocols, 1 to {MAX_PROTOCOLS} allowed",
                    req.app_protocols.len()
                ),
            });
        }
        for p in &req.app_protocols {
            if p.protocol_namespace.chars().count() > MAX_NAMESPACE {
                return Err(ExiError::Value {
                    what: "ProtocolNamespace",
                    reason: format!("longer than {MAX_NAMESPACE} characters"),
                });
            }
            if !(1..=20).contains(&p.priority) {
                return Err(ExiError::Value {
                    what: "Priority",
                    reason: format!("{} is outside 1..=20", p.priority),
                });
            }
        }
    }
    Ok(())
}

/// A simple-typed element's content after its SE: CH, value, EE.
fn simple<T>(
    r: &mut BitReader<'_>,
    at: &'static str,
    value: impl FnOnce(&mut BitReader<'_>) -> Result<T, ExiError>,
) -> Result<T, ExiError> {
    expect(r, at, 2, 0)?;
    let v = value(r)?;
    expect(r, at, 2, 0)?;
    Ok(v)
}

/// Decodes an EXI document of the AppProtocol schema.
///
/// # Errors
///
/// [`ExiError`]: truncated input, a header other than `0x80`, an event this
/// codec does not take (second-level deviations are refused), a value
/// outside its facet, or bytes after the document.
pub fn decode(bytes: &[u8]) -> Result<Message, ExiError> {
    let mut r = BitReader::with_header(bytes)?;
    let root = r.event(3)?;
    let m = match root {
        0 => {
            let mut protocols = Vec::new();
            expect(&mut r, "supportedAppProtocolReq", 2, 0)?;
            loop {
                protocols.push(decode_protocol(&mut r)?);
                if protocols.len() == MAX_PROTOCOLS {
                    expect(&mut r, "supportedAppProtocolReq (after 20)", 2, 0)?;
                    break;
                }
                match r.event(3)? {
                    0 => continue,
                    1 => break,
                    code => {
                        return Err(ExiError::Event {
                            at: "supportedAppProtocolReq",
                            code,
                            of: 3,
                        })
                    }
                }
            }
            Message::Req(SupportedAppProtocolReq {
                app_protocols: protocols,
            })
        }
        1 => {
            expect(&mut r, "supportedAppProtocolRes", 2, 0)?;
            let code = simple(&mut r, "ResponseCode", |r| r.bits(2))?;
            let response_code =
                *ResponseCode::ALL
                    .get(code as usize)
                    .ok_or_else(|| ExiError::Value {
                        what: "ResponseCode",
                        reason: format!("enumeration index {code} of 3"),
                    })?;
            let schema_id = match r.event(3)? {
                0 => {
                    let id = simple(&mut r, "SchemaID", |r| r.bits(8))? as u8;
                    expect(&mut r, "supportedAppProtocolRes", 2, 0)?;
                    Some(id)
                }
                1 => None,
                code => {
                    return Err(ExiError::Event {
                        at: "supportedAppProtocolRes",
                        code,
                        of: 3,
                    })
                }
            };
            Message::Res(SupportedAppProtocolRes {
                response_code,
                schema_id,
            })
        }
        code => {
            return Err(ExiError::Event {
                at: "document",
                code,
                of: 3,
            })
        }
    };
    r.finish()?;
    Ok(m)
}

fn decode_protocol(r: &mut BitReader<'_>) -> Result<AppProtocol, ExiError> {
    expect(r, "AppProtocol", 2, 0)?;
    let protocol_namespace = match r.event(2)? {
        0 => {
            let s = r.string("ProtocolNamespace", MAX_NAMESPACE)?;
            expect(r, "ProtocolNamespace", 2, 0)?;
            s
        }
        _ => {
            // second level: only EE (an empty value) is taken
            expect(r, "ProtocolNamespace (second level)", SECOND_LEVEL_START, 0)?;
            String::new()
        }
    };
    let mut nums = [0u32; 2];
    for (i, n) in nums.iter_mut().enumerate() {
        expect(
            r,
            if i == 0 {
                "VersionNumberMajor"
            } else {
                "VersionNumberMinor"
            },
            2,
            0,
        )?;
        let v = simple(r, "VersionNumber", |r| r.unsigned())?;
        *n = u32::try_from(v).map_err(|_| ExiError::Value {
            what: "VersionNumber",
            reason: format!("{v} is over unsignedInt"),
        })?;
    }
    expect(r, "SchemaID", 2, 0)?;
    let schema_id = simple(r, "SchemaID", |r| r.bits(8))? as u8;
    expect(r, "Priority", 2, 0)?;
    let p = simple(r, "Priority", |r| r.bits(5))?;
    if p > 19 {
        return Err(ExiError::Value {
            what: "Priority",
            reason: format!("{} is outside 1..=20", p + 1),
        });
    }
    expect(r, "AppProtocol", 2, 0)?;
    Ok(AppProtocol {
        protocol_namespace,
        version_number_major: nums[0],
        version_number_minor: nums[1],
        schema_id,
        priority: p as u8 + 1,
    })
}

/// A protocol version the SECC implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// Namespace.
    pub namespace: &'static str,
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl Offer {
    /// DIN SPEC 70121:2012.
    pub const DIN: Offer = Offer {
        namespace: "urn:din:70121:2012:MsgDef",
        major: 2,
        minor: 0,
    };
    /// ISO 15118-2:2013.
    pub const ISO2: Offer = Offer {
        namespace: "urn:iso:15118:2:2013:MsgDef",
        major: 2,
        minor: 0,
    };
    /// ISO 15118-20 DC.
    pub const ISO20_DC: Offer = Offer {
        namespace: "urn:iso:std:iso:15118:-20:DC",
        major: 1,
        minor: 0,
    };
    /// ISO 15118-20 AC.
    pub const ISO20_AC: Offer = Offer {
        namespace: "urn:iso:std:iso:15118:-20:AC",
        major: 1,
        minor: 0,
    };
}

/// The SECC's answer (ISO 15118-2 [V2G2-173..176]): among the EV's
/// protocols whose namespace and major version the SECC implements, the one
/// with the best (lowest) priority; `OK_SuccessfulNegotiation` when the
/// minor versions match too, `...WithMinorDeviation` otherwise;
/// `Failed_NoNegotiation` when nothing matches. Unknown namespaces (a
/// Tesla's `urn:tesla:din:2018:MsgDef`) are skipped, not fatal.
pub fn negotiate(req: &SupportedAppProtocolReq, supported: &[Offer]) -> SupportedAppProtocolRes {
    let best = req
        .app_protocols
        .iter()
        .filter_map(|p| {
            supported
                .iter()
                .find(|o| o.namespace == p.protocol_namespace && o.major == p.version_number_major)
                .map(|o| (p, o))
        })
        .min_by_key(|(p, _)| p.priority);
    match best {
        Some((p, o)) => SupportedAppProtocolRes {
            response_code: if o.minor == p.version_number_minor {
                ResponseCode::OkSuccessfulNegotiation
            } else {
                ResponseCode::OkSuccessfulNegotiationWithMinorDeviation
            },
            schema_id: Some(p.schema_id),
        },
        None => SupportedAppProtocolRes {
            response_code: ResponseCode::FailedNoNegotiation,
            schema_id: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The DIN-only request EXIficient writes (also the libcbv2g
    /// app_handshake vector): `80 00 db ab 93 71 d3 23 ...`.
    #[test]
    fn din_request_vector() {
        let bytes = hex("8000dbab9371d3234b71d1b981899189d191818991d26b9b3a232b30020000040040");
        let m = decode(&bytes).unwrap();
        let Message::Req(req) = &m else { panic!() };
        assert_eq!(req.app_protocols.len(), 1);
        let p = &req.app_protocols[0];
        assert_eq!(
            (
                p.protocol_namespace.as_str(),
                p.version_number_major,
                p.version_number_minor,
                p.schema_id,
                p.priority
            ),
            ("urn:din:70121:2012:MsgDef", 2, 0, 1, 1)
        );
        let mut out = Vec::new();
        encode(&m, &mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn negotiation_skips_unknown_namespaces_and_prefers_priority() {
        let p = |ns: &str, major, minor, id, prio| AppProtocol {
            protocol_namespace: ns.into(),
            version_number_major: major,
            version_number_minor: minor,
            schema_id: id,
            priority: prio,
        };
        let req = SupportedAppProtocolReq {
            app_protocols: vec![
                p("urn:tesla:din:2018:MsgDef", 2, 0, 1, 1),
                p("urn:din:70121:2012:MsgDef", 2, 0, 2, 3),
                p("urn:iso:15118:2:2013:MsgDef", 2, 1, 3, 2),
            ],
        };
        let res = negotiate(&req, &[Offer::DIN, Offer::ISO2]);
        assert_eq!(
            res,
            SupportedAppProtocolRes {
                response_code: ResponseCode::OkSuccessfulNegotiationWithMinorDeviation,
                schema_id: Some(3)
            }
        );
        let res = negotiate(&req, &[Offer::DIN]);
        assert_eq!(res.schema_id, Some(2));
        assert_eq!(
            negotiate(&req, &[Offer::ISO20_DC]).response_code,
            ResponseCode::FailedNoNegotiation
        );
    }

    #[test]
    fn malformed_input_fails_cleanly() {
        assert_eq!(decode(&[]), Err(ExiError::Truncated { needed: 8 }));
        assert_eq!(decode(&[0x81, 0x00]), Err(ExiError::Header(0x81)));
        // SE(*) at the document level: a deviation this codec refuses
        assert!(matches!(decode(&[0x80, 0x80]), Err(ExiError::Event { .. })));
        let mut ok = Vec::new();
        encode(
            &Message::Res(SupportedAppProtocolRes {
                response_code: ResponseCode::OkSuccessfulNegotiation,
                schema_id: Some(1),
            }),
            &mut ok,
        );
        let mut trailing = ok.clone();
        trailing.push(0);
        assert_eq!(decode(&trailing), Err(ExiError::Trailing(1)));
    }

    fn protocol() -> impl Strategy<Value = AppProtocol> {
        (
            "[ -~]{0,100}",
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
            1u8..=20,
        )
            .prop_map(|(ns, major, minor, id, prio)| AppProtocol {
                protocol_namespace: ns,
                version_number_major: major,
                version_number_minor: minor,
                schema_id: id,
                priority: prio,
            })
    }

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            proptest::collection::vec(protocol(), 1..=20)
                .prop_map(|p| Message::Req(SupportedAppProtocolReq { app_protocols: p })),
            (0usize..3, proptest::option::of(any::<u8>())).prop_map(|(c, id)| Message::Res(
                SupportedAppProtocolRes {
                    response_code: ResponseCode::ALL[c],
                    schema_id: id
                }
            )),
        ]
    }

    proptest! {
        #[test]
        fn decode_encode_round_trip(m in message()) {
            prop_assert!(check(&m).is_ok());
            let mut bytes = Vec::new();
            encode(&m, &mut bytes);
            prop_assert_eq!(decode(&bytes).unwrap(), m);
        }

        #[test]
        fn every_prefix_fails_cleanly(m in message()) {
            let mut bytes = Vec::new();
            encode(&m, &mut bytes);
            for n in 0..bytes.len() {
                prop_assert!(decode(&bytes[..n]).is_err());
            }
        }
    }
}
