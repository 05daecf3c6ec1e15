//! `evproto v2g decode|encode`: ISO 15118 / DIN messages as hex EXI lines
//! and JSON lines.

use std::io::{BufRead, Write};

use evproto_iso15118::app_protocol::{self, Message};
use evproto_iso15118::v2gtp;
use serde_json::{json, Value};

/// The schema sets the command knows.
pub(crate) const SCHEMAS: &[&str] = &[
    "app",
    "din",
    "iso2",
    "iso20",
    "iso20-ac",
    "iso20-dc",
    "iso20-wpt",
    "iso20-acdp",
    "xmldsig",
];

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !s.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| format!("not hex: {:?}", &s[i..i + 2]))
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The message name of a decoded document: for DIN/-2 `V2G_Message`
/// documents, the body element (`CurrentDemandReq`); otherwise the root.
fn message_name(root: &str, content: &Value) -> String {
    if root == "V2G_Message" {
        if let Some(name) = content["Body"].as_object().and_then(|b| b.keys().next()) {
            return name.clone();
        }
    }
    root.to_string()
}

/// One output line of `decode` for one input line: raw EXI, or V2GTP-framed
/// (detected by the `01 fe` header).
pub(crate) fn decode_line(schema: &str, line: &str, roundtrip: bool) -> Value {
    let bytes = match unhex(line) {
        Ok(b) => b,
        Err(e) => return json!({"error": e}),
    };
    let mut schema = schema;
    let exi = if bytes.len() >= 2 && bytes[0] == 0x01 && bytes[1] == 0xfe {
        // a V2G message is far below 64 KiB; the header's length is checked against it
        match v2gtp::decode(&bytes, 65_536) {
            Ok(packet) => {
                // a -20 frame names its schema set (0x8002 CommonMessages,
                // 0x8003 AC, 0x8004 DC, 0x8005 ACDP, 0x8006 WPT)
                if let (true, Some(set)) = (
                    schema.starts_with("iso20"),
                    packet.payload_type.iso20_schema(),
                ) {
                    schema = set;
                }
                packet.payload
            }
            Err(e) => return json!({"error": format!("V2GTP: {e}")}),
        }
    } else {
        bytes
    };
    if schema != "app" {
        let set = match evproto_iso15118::schema::by_name(schema) {
            Ok(s) => s,
            Err(e) => return json!({"error": e}),
        };
        return match set.decode(&exi) {
            Ok(doc) => {
                let (root, content) = doc
                    .as_object()
                    .and_then(|m| m.iter().next())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .unwrap_or_default();
                let mut out = json!({"message": message_name(&root, &content), "body": content});
                if root == "V2G_Message" {
                    out["root"] = json!(root);
                }
                if roundtrip {
                    out["roundtrip"] = json!(set.encode(&doc).is_ok_and(|b| b == exi));
                }
                out
            }
            Err(e) => json!({"error": e.to_string()}),
        };
    }
    match app_protocol::decode(&exi) {
        Ok(m) => {
            let body = serde_json::to_value(&m).unwrap_or(Value::Null)[m.name()].clone();
            let mut out = json!({"message": m.name(), "body": body});
            if roundtrip {
                let mut again = Vec::new();
                app_protocol::encode(&m, &mut again);
                out["roundtrip"] = json!(again == exi);
            }
            out
        }
        Err(e) => json!({"error": e.to_string()}),
    }
}

/// One output line of `encode`: `{"message": .., "body": ..}` (or the
/// message as `{"<name>": body}`) to hex EXI.
pub(crate) fn encode_line(schema: &str, line: &str) -> Value {
    let v: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return json!({"error": format!("not JSON: {e}")}),
    };
    if schema != "app" {
        let set = match evproto_iso15118::schema::by_name(schema) {
            Ok(s) => s,
            Err(e) => return json!({"error": e}),
        };
        // {"message": .., "body": ..} as decode prints it, or the document itself
        // the root is `root` when given (decode prints it for V2G_Message),
        // else the message name when that is a document root, else V2G_Message
        let doc = match (v.get("message").and_then(Value::as_str), v.get("body")) {
            (Some(name), Some(body)) => {
                let root =
                    v.get("root")
                        .and_then(Value::as_str)
                        .unwrap_or(if set.has_global(name) {
                            name
                        } else {
                            "V2G_Message"
                        });
                json!({ root: body })
            }
            _ => v,
        };
        let name = doc
            .as_object()
            .and_then(|m| m.keys().next().cloned())
            .unwrap_or_default();
        return match set.encode(&doc) {
            Ok(bytes) => json!({"message": message_name(&name, &doc[&name]), "exi": hex(&bytes)}),
            Err(e) => json!({"error": e.to_string()}),
        };
    }
    let wrapped = match (v.get("message").and_then(Value::as_str), v.get("body")) {
        (Some(name), Some(body)) => json!({ name: body }),
        _ => v,
    };
    let m: Message = match serde_json::from_value(wrapped) {
        Ok(m) => m,
        Err(e) => return json!({"error": e.to_string()}),
    };
    if let Err(e) = app_protocol::check(&m) {
        return json!({"error": e.to_string()});
    }
    let mut out = Vec::new();
    app_protocol::encode(&m, &mut out);
    json!({"message": m.name(), "exi": hex(&out)})
}

/// One output line of `decode --fragment`: `{"message": "<element>",
/// "body": {..}}` (raw EXI only: fragments travel inside messages, not in
/// V2GTP frames).
pub(crate) fn decode_fragment_line(schema: &str, line: &str, roundtrip: bool) -> Value {
    let exi = match unhex(line) {
        Ok(b) => b,
        Err(e) => return json!({"error": e}),
    };
    let set = match evproto_iso15118::schema::by_name(schema) {
        Ok(s) => s,
        Err(e) => return json!({"error": e}),
    };
    match set.decode_fragment(&exi) {
        Ok(frag) => {
            let (name, body) = frag
                .as_object()
                .and_then(|m| m.iter().next())
                .map(|(k, v)| (k.clone(), v.clone()))
                .unwrap_or_default();
            let mut out = json!({"message": name, "body": body});
            if roundtrip {
                out["roundtrip"] = json!(set.encode_fragment(&frag).is_ok_and(|b| b == exi));
            }
            out
        }
        Err(e) => json!({"error": e.to_string()}),
    }
}

/// One output line of `encode --fragment`: `{"message": .., "body": ..}` or
/// `{"<element>": {..}}` to `{"message": .., "exi": "<hex>"}`.
pub(crate) fn encode_fragment_line(schema: &str, line: &str) -> Value {
    let v: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return json!({"error": format!("not JSON: {e}")}),
    };
    let set = match evproto_iso15118::schema::by_name(schema) {
        Ok(s) => s,
        Err(e) => return json!({"error": e}),
    };
    let frag = match (v.get("message").and_then(Value::as_str), v.get("body")) {
        (Some(name), Some(body)) => json!({ name: body }),
        _ => v,
    };
    let name = frag
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .unwrap_or_default();
    match set.encode_fragment(&frag) {
        Ok(bytes) => json!({"message": name, "exi": hex(&bytes)}),
        Err(e) => json!({"error": e.to_string()}),
    }
}

/// Runs `decode` or `encode` over stdin.
pub(crate) fn run(
    encode: bool,
    schema: &str,
    roundtrip: bool,
    fragment: bool,
) -> Result<(), String> {
    if !SCHEMAS.contains(&schema) {
        return Err(format!(
            "unknown schema {schema:?}; one of {}",
            SCHEMAS.join(", ")
        ));
    }
    if schema == "app" && fragment {
        return Err("--fragment needs a message schema (not app)".into());
    }
    if schema == "xmldsig" && !fragment {
        return Err("the xmldsig schema codes fragments: add --fragment".into());
    }
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        let v = match (encode, fragment) {
            (true, true) => encode_fragment_line(schema, &line),
            (false, true) => decode_fragment_line(schema, &line, roundtrip),
            (true, false) => encode_line(schema, &line),
            (false, false) => decode_line(schema, &line, roundtrip),
        };
        writeln!(out, "{v}").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIN_REQ: &str = "8000dbab9371d3234b71d1b981899189d191818991d26b9b3a232b30020000040040";

    #[test]
    fn decode_raw_and_framed() {
        let v = decode_line("app", DIN_REQ, true);
        assert_eq!(v["message"], "supportedAppProtocolReq");
        assert_eq!(
            v["body"]["AppProtocol"][0]["ProtocolNamespace"],
            "urn:din:70121:2012:MsgDef"
        );
        assert_eq!(v["roundtrip"], true);
        let framed = format!("01fe8001{:08x}{DIN_REQ}", DIN_REQ.len() / 2);
        assert_eq!(
            decode_line("app", &framed, false)["message"],
            "supportedAppProtocolReq"
        );
        assert!(decode_line("app", "zz", false)["error"].is_string());
        assert!(decode_line("app", "01fe800100000010", false)["error"]
            .as_str()
            .unwrap()
            .starts_with("V2GTP"));
        let v = decode_line("din", "809a02004080c1014181c211f0", true);
        assert_eq!(
            (v["message"].as_str(), v["roundtrip"].as_bool()),
            (Some("SessionStopReq"), Some(true)),
            "{v}"
        );
        assert!(decode_line("iso20", "80", false)["error"].is_string());
        // a -20 DC frame (payload type 0x8004) is read with the DC set even
        // when the line says iso20 (libiso15118's DC_ChargeLoopReq)
        let dc = "8034041ea65fc99ba76c4d8cdbfe1b6062810012006464000a02002400ca";
        let framed = format!("01fe8004{:08x}{dc}", dc.len() / 2);
        let v = decode_line("iso20", &framed, true);
        assert_eq!(
            (v["message"].as_str(), v["roundtrip"].as_bool()),
            (Some("DC_ChargeLoopReq"), Some(true)),
            "{v}"
        );
        // unframed, the schema given is the one used
        assert!(decode_line("iso20", dc, false)["error"].is_string());
    }

    #[test]
    fn fragments() {
        // EXIficient's bytes for a -2 AuthorizationReq as signed
        let auth = "80040152510c408000081018202830384048505860687079e8";
        let v = decode_fragment_line("iso2", auth, true);
        assert_eq!(
            (v["message"].as_str(), v["roundtrip"].as_bool()),
            (Some("AuthorizationReq"), Some(true)),
            "{v}"
        );
        assert_eq!(encode_fragment_line("iso2", &v.to_string())["exi"], auth);
        // not a document, and a truncated fragment is an error
        assert!(decode_line("iso2", auth, false)["error"].is_string());
        assert!(decode_fragment_line("iso2", &auth[..20], false)["error"].is_string());
        assert!(
            encode_fragment_line("xmldsig", r#"{"AuthorizationReq": {}}"#)["error"].is_string()
        );
        assert!(run(false, "xmldsig", false, false).is_err());
    }

    #[test]
    fn encode_lines() {
        let v = decode_line("app", DIN_REQ, false);
        let back = encode_line("app", &v.to_string());
        assert_eq!(back["exi"], DIN_REQ);
        let res = encode_line(
            "app",
            r#"{"supportedAppProtocolRes": {"ResponseCode": "OK_SuccessfulNegotiation", "SchemaID": 1}}"#,
        );
        assert_eq!(res["message"], "supportedAppProtocolRes");
        assert!(
            encode_line("app", r#"{"supportedAppProtocolReq": {"AppProtocol": []}}"#)["error"]
                .is_string()
        );
        assert!(encode_line("app", "{").get("error").is_some());
        // DIN: what decode printed encodes back to the same bytes
        let v = decode_line("din", "809a02004080c1014181c211f0", false);
        assert_eq!(
            encode_line("din", &v.to_string())["exi"],
            "809a02004080c1014181c211f0"
        );
    }
}
