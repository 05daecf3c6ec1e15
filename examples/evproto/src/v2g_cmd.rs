//! `evproto v2g decode|encode`: ISO 15118 / DIN messages as hex EXI lines
//! and JSON lines.

use std::io::{BufRead, Write};

use evproto_iso15118::app_protocol::{self, Message};
use evproto_iso15118::lenient::{Policy, Warning};
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

/// The deviations a lenient decode accepted, as the output line's
/// `"warnings"` (absent when there are none).
fn add_warnings(out: &mut Value, warnings: &[Warning]) {
    if !warnings.is_empty() {
        out["warnings"] = warnings.iter().map(|w| json!(w.to_string())).collect();
    }
}

/// One output line of `decode` for one input line: raw EXI, or V2GTP-framed
/// (detected by the `01 fe` header). Under a lenient `policy` the deviations
/// it accepted are listed in `"warnings"`.
pub(crate) fn decode_line(schema: &str, line: &str, roundtrip: bool, policy: &Policy) -> Value {
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
            Err(e) => return json!({"error": e.to_string()}),
        };
        return match set.decode_with(&exi, policy) {
            Ok((doc, warnings)) => {
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
                add_warnings(&mut out, &warnings);
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
            Err(e) => return json!({"error": e.to_string()}),
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
pub(crate) fn decode_fragment_line(
    schema: &str,
    line: &str,
    roundtrip: bool,
    policy: &Policy,
) -> Value {
    let exi = match unhex(line) {
        Ok(b) => b,
        Err(e) => return json!({"error": e}),
    };
    let set = match evproto_iso15118::schema::by_name(schema) {
        Ok(s) => s,
        Err(e) => return json!({"error": e.to_string()}),
    };
    match set.decode_fragment_with(&exi, policy) {
        Ok((frag, warnings)) => {
            let (name, body) = frag
                .as_object()
                .and_then(|m| m.iter().next())
                .map(|(k, v)| (k.clone(), v.clone()))
                .unwrap_or_default();
            let mut out = json!({"message": name, "body": body});
            if roundtrip {
                out["roundtrip"] = json!(set.encode_fragment(&frag).is_ok_and(|b| b == exi));
            }
            add_warnings(&mut out, &warnings);
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
        Err(e) => return json!({"error": e.to_string()}),
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

/// Runs `decode` or `encode` over stdin. `lenient` (decode only) reads the
/// deviations of [`Policy::lenient`]: each is listed in the line's
/// `"warnings"` and printed on stderr as `evproto: warning: line N: ..`.
pub(crate) fn run(
    encode: bool,
    schema: &str,
    roundtrip: bool,
    fragment: bool,
    lenient: bool,
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
    if lenient && (encode || schema == "app") {
        return Err("--lenient is for decoding message schemas (not app)".into());
    }
    let policy = if lenient {
        Policy::lenient()
    } else {
        Policy::strict()
    };
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (n, line) in stdin.lock().lines().enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        let v = match (encode, fragment) {
            (true, true) => encode_fragment_line(schema, &line),
            (false, true) => decode_fragment_line(schema, &line, roundtrip, &policy),
            (true, false) => encode_line(schema, &line),
            (false, false) => decode_line(schema, &line, roundtrip, &policy),
        };
        for w in v["warnings"].as_array().into_iter().flatten() {
            eprintln!(
                "evproto: warning: line {}: {}",
                n + 1,
                w.as_str().unwrap_or_default()
            );
        }
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
        let v = decode_line("app", DIN_REQ, true, &Policy::strict());
        assert_eq!(v["message"], "supportedAppProtocolReq");
        assert_eq!(
            v["body"]["AppProtocol"][0]["ProtocolNamespace"],
            "urn:din:70121:2012:MsgDef"
        );
        assert_eq!(v["roundtrip"], true);
        let framed = format!("01fe8001{:08x}{DIN_REQ}", DIN_REQ.len() / 2);
        assert_eq!(
            decode_line("app", &framed, false, &Policy::strict())["message"],
            "supportedAppProtocolReq"
        );
        assert!(decode_line("app", "zz", false, &Policy::strict())["error"].is_string());
        assert!(
            decode_line("app", "01fe800100000010", false, &Policy::strict())["error"]
                .as_str()
                .unwrap()
                .starts_with("V2GTP")
        );
        let v = decode_line("din", "809a02004080c1014181c211f0", true, &Policy::strict());
        assert_eq!(
            (v["message"].as_str(), v["roundtrip"].as_bool()),
            (Some("SessionStopReq"), Some(true)),
            "{v}"
        );
        assert!(decode_line("iso20", "80", false, &Policy::strict())["error"].is_string());
        // a -20 DC frame (payload type 0x8004) is read with the DC set even
        // when the line says iso20 (libiso15118's DC_ChargeLoopReq)
        let dc = "8034041ea65fc99ba76c4d8cdbfe1b6062810012006464000a02002400ca";
        let framed = format!("01fe8004{:08x}{dc}", dc.len() / 2);
        let v = decode_line("iso20", &framed, true, &Policy::strict());
        assert_eq!(
            (v["message"].as_str(), v["roundtrip"].as_bool()),
            (Some("DC_ChargeLoopReq"), Some(true)),
            "{v}"
        );
        // unframed, the schema given is the one used
        assert!(decode_line("iso20", dc, false, &Policy::strict())["error"].is_string());
    }

    #[test]
    fn fragments() {
        // EXIficient's bytes for a -2 AuthorizationReq as signed
        let auth = "80040152510c408000081018202830384048505860687079e8";
        let v = decode_fragment_line("iso2", auth, true, &Policy::strict());
        assert_eq!(
            (v["message"].as_str(), v["roundtrip"].as_bool()),
            (Some("AuthorizationReq"), Some(true)),
            "{v}"
        );
        assert_eq!(encode_fragment_line("iso2", &v.to_string())["exi"], auth);
        // not a document, and a truncated fragment is an error
        assert!(decode_line("iso2", auth, false, &Policy::strict())["error"].is_string());
        assert!(
            decode_fragment_line("iso2", &auth[..20], false, &Policy::strict())["error"]
                .is_string()
        );
        assert!(
            encode_fragment_line("xmldsig", r#"{"AuthorizationReq": {}}"#)["error"].is_string()
        );
        assert!(run(false, "xmldsig", false, false, false).is_err());
        assert!(run(false, "app", false, false, true).is_err());
        assert!(run(true, "din", false, false, true).is_err());
    }

    #[test]
    fn lenient_decode() {
        // a real DIN frame (uhi22/pyPLC's DemoExiLog.txt) with a byte after the document
        let real = "809a022189cbf75b9625a95198";
        let line = format!("{real}00");
        let strict = decode_line("din", &line, false, &Policy::strict());
        assert_eq!(
            strict["error"], "1 bytes after the end of the EXI document",
            "{strict}"
        );
        let want = decode_line("din", real, false, &Policy::strict());
        assert!(want.get("warnings").is_none() && want.get("error").is_none());
        let v = decode_line("din", &line, true, &Policy::lenient());
        assert_eq!(
            (&v["message"], &v["body"]),
            (&want["message"], &want["body"])
        );
        assert_eq!(
            v["warnings"],
            json!(["byte 13: 1 byte after the end of the EXI document (ignored)"])
        );
        // the byte is not written again
        assert_eq!(v["roundtrip"], false);
        // V2GTP-framed, the header's length counting the byte
        let framed = format!("01fe8001{:08x}{line}", line.len() / 2);
        assert_eq!(
            decode_line("din", &framed, false, &Policy::lenient())["warnings"],
            v["warnings"]
        );
        // a frame as sent: no warnings
        assert!(decode_line("din", real, false, &Policy::lenient())
            .get("warnings")
            .is_none());
        // fragments too (EXIficient's -2 AuthorizationReq)
        let auth = "80040152510c408000081018202830384048505860687079e8";
        let f = decode_fragment_line("iso2", &format!("{auth}00"), false, &Policy::lenient());
        assert_eq!(f["message"], "AuthorizationReq", "{f}");
        assert_eq!(
            f["warnings"],
            json!(["byte 25: 1 byte after the end of the EXI document (ignored)"])
        );
        assert!(
            decode_fragment_line("iso2", &format!("{auth}00"), false, &Policy::strict())["error"]
                .is_string()
        );
    }

    #[test]
    fn encode_lines() {
        let v = decode_line("app", DIN_REQ, false, &Policy::strict());
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
        let v = decode_line(
            "din",
            "809a02004080c1014181c211f0",
            false,
            &Policy::strict(),
        );
        assert_eq!(
            encode_line("din", &v.to_string())["exi"],
            "809a02004080c1014181c211f0"
        );
    }
}
