//! Typed ISO 15118 / DIN 70121 messages and their EXI codecs, generated from
//! the grammar model `evproto_iso15118::schema` builds from the vendored XSDs (the
//! same model the JSON engine codes with, checked against EXIficient):
//! one module per schema set under `iso15118/src/messages/`.
//!
//! Per complex type: a struct (fields in schema order, spec names in serde
//! renames so the JSON is the engine's view), a static grammar table, and an
//! `ExiType` impl that walks the table with `evproto_iso15118::grammar::{Enc, Dec}`.
//! Per set: a `Message` enum of the global elements with `encode`/`decode`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use evproto_iso15118::schema::{ComplexType, Content, Particle, QName, SchemaSet, Simple, Ty};

/// (set name, module name, the namespace whose types the module holds for
/// the modules after it). The xmldsig types live once in `xmldsig`, the
/// -20 CommonTypes once in `iso20`; the other modules use them from there.
const SETS: &[(&str, &str, Option<&str>)] = &[
    (
        "xmldsig",
        "xmldsig",
        Some("http://www.w3.org/2000/09/xmldsig#"),
    ),
    (
        "iso20",
        "iso20",
        Some("urn:iso:std:iso:15118:-20:CommonTypes"),
    ),
    ("din", "din", None),
    ("iso2", "iso2", None),
    ("iso20-ac", "iso20_ac", None),
    ("iso20-dc", "iso20_dc", None),
    ("iso20-wpt", "iso20_wpt", None),
    ("iso20-acdp", "iso20_acdp", None),
];

/// Types and enums a module holds for the others.
struct Shared {
    module: &'static str,
    ns: &'static str,
    /// XSD type name → Rust name
    types: HashMap<String, String>,
    /// (XSD enum name, values) → Rust name
    enums: HashMap<(String, Vec<String>), String>,
}

pub(crate) fn generate(root: &Path) -> Result<Vec<(PathBuf, String)>, String> {
    let dir = root.join("iso15118/src/messages");
    let mut out = Vec::new();
    let mut shared: Vec<Shared> = Vec::new();
    for (set, module, holds) in SETS {
        let schema = evproto_iso15118::schema::by_name(set).map_err(|e| e.to_string())?;
        let ns = evproto_iso15118::schema::SETS
            .iter()
            .chain([&evproto_iso15118::schema::XMLDSIG])
            .find(|(n, _)| n == set)
            .map(|(_, ns)| *ns)
            .unwrap_or("");
        let mut g = Gen::new(schema, module, &shared);
        let code = g.run(set, ns)?;
        if let Some(holds) = holds {
            let mut types = HashMap::new();
            for i in &g.order {
                let ct = &schema.complex_types()[*i];
                if ct.ns == *holds && !ct.name.is_empty() {
                    types.insert(ct.name.clone(), g.names[i].clone());
                }
            }
            let enums = g
                .enums
                .iter()
                .filter(|(k, _)| g.enum_ns.get(*k).is_some_and(|n| n == holds))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            shared.push(Shared {
                module,
                ns: holds,
                types,
                enums,
            });
        }
        out.push((dir.join(format!("{module}.rs")), rustfmt(&code)?));
    }
    Ok(out)
}

fn rustfmt(code: &str) -> Result<String, String> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("rustfmt")
        .args(["--edition", "2021", "--emit", "stdout"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("rustfmt: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("rustfmt stdin")?;
    let text = code.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    writer
        .join()
        .map_err(|_| "rustfmt writer".to_string())?
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!(
            "rustfmt failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8(output.stdout).map_err(|e| e.to_string())
}

/// `AC_EVChargeParameterType` → `AcEVChargeParameterType`, `V2G_Message`
/// → `V2gMessage`: parts joined, an all-capitals part title-cased when
/// another part follows it.
fn type_name(xsd: &str) -> String {
    let parts: Vec<&str> = xsd
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|p| !p.is_empty())
        .collect();
    let mut out = String::new();
    for (i, p) in parts.iter().enumerate() {
        let caps = p.chars().all(|c| !c.is_ascii_lowercase());
        let mut cs = p.chars();
        if let Some(f) = cs.next() {
            out.push(f.to_ascii_uppercase());
            if caps && i + 1 < parts.len() {
                out.extend(cs.map(|c| c.to_ascii_lowercase()));
            } else {
                out.extend(cs);
            }
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'V');
    }
    out
}

/// `EVSEMaximumCurrentLimit` → `evse_maximum_current_limit`.
fn field_name(xsd: &str) -> String {
    let chars: Vec<char> = xsd.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            if !out.ends_with('_') && !out.is_empty() {
                out.push('_');
            }
            continue;
        }
        if c.is_ascii_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if (prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower))
                && !out.ends_with('_')
            {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    let out = out.trim_end_matches('_').to_string();
    match out.as_str() {
        "type" | "ref" | "match" | "mod" | "use" | "impl" | "fn" | "struct" | "enum" | "self"
        | "crate" | "super" | "as" | "in" | "for" | "loop" | "move" | "static" | "const"
        | "where" | "box" | "final" | "override" | "priv" | "abstract" | "macro" | "virtual"
        | "yield" | "async" | "await" | "dyn" | "try" => format!("r#{out}"),
        _ if out.starts_with(|c: char| c.is_ascii_digit()) => format!("f_{out}"),
        _ => out,
    }
}

fn lit(n: i128) -> String {
    match n {
        i128::MIN => "i128::MIN".into(),
        i128::MAX => "i128::MAX".into(),
        _ => n.to_string(),
    }
}

/// The Rust type of an integer range (shared with the engine's lexical
/// reading of untyped values).
fn int_type(min: i128, max: i128) -> &'static str {
    evproto_iso15118::grammar::int_type(min, max).0
}

struct Gen<'s> {
    schema: &'s SchemaSet,
    module: &'static str,
    shared: &'s [Shared],
    /// complex index → path of a type another module holds
    external: HashMap<usize, String>,
    /// enum key → path of an enum another module holds
    external_enums: HashMap<(String, Vec<String>), String>,
    /// enum key → its namespace
    enum_ns: HashMap<(String, Vec<String>), String>,
    /// complex index → Rust name
    names: HashMap<usize, String>,
    order: Vec<usize>,
    used: HashSet<String>,
    /// (xsd name or context, values) → Rust enum name
    enums: BTreeMap<(String, Vec<String>), String>,
    /// anonymous types by the element naming them (one struct per element)
    anon: HashMap<QName, usize>,
    /// complex index → the index whose struct it uses (anonymous duplicates)
    alias: HashMap<usize, usize>,
}

impl<'s> Gen<'s> {
    fn new(schema: &'s SchemaSet, module: &'static str, shared: &'s [Shared]) -> Self {
        Gen {
            schema,
            module,
            shared,
            external: HashMap::new(),
            external_enums: HashMap::new(),
            enum_ns: HashMap::new(),
            names: HashMap::new(),
            order: Vec::new(),
            used: ["Message".to_string()].into_iter().collect(),
            enums: BTreeMap::new(),
            anon: HashMap::new(),
            alias: HashMap::new(),
        }
    }

    fn ct(&self, i: usize) -> &'s ComplexType {
        &self.schema.complex_types()[i]
    }

    fn canon(&self, i: usize) -> usize {
        *self.alias.get(&i).unwrap_or(&i)
    }

    /// The Rust path of complex type `i` (its own struct, or another
    /// module's).
    fn type_path(&self, i: usize) -> String {
        let i = self.canon(i);
        self.external
            .get(&i)
            .or_else(|| self.names.get(&i))
            .cloned()
            .unwrap_or_default()
    }

    fn unique(&mut self, base: String) -> String {
        let mut name = base.clone();
        let mut k = 2;
        while self.used.contains(&name) {
            name = format!("{base}{k}");
            k += 1;
        }
        self.used.insert(name.clone());
        name
    }

    /// Names every complex type reachable from `ty` (element `q`).
    fn visit(&mut self, q: &QName, ty: &Ty) {
        let Ty::Complex(i) = ty else {
            if let Ty::Simple(s) = ty {
                self.visit_simple(&q.1, s);
            }
            return;
        };
        let i = *i;
        if self.names.contains_key(&i)
            || self.alias.contains_key(&i)
            || self.external.contains_key(&i)
        {
            return;
        }
        let ct = self.ct(i);
        if let Some(sh) = self
            .shared
            .iter()
            .find(|sh| sh.ns == ct.ns && sh.module != self.module)
        {
            if let Some(rust) = sh.types.get(&ct.name) {
                self.external
                    .insert(i, format!("super::{}::{rust}", sh.module));
                return;
            }
        }
        if ct.name.is_empty() {
            if let Some(&first) = self.anon.get(q) {
                self.alias.insert(i, first);
                return;
            }
            self.anon.insert(q.clone(), i);
        }
        let base = if ct.name.is_empty() {
            type_name(&q.1)
        } else {
            type_name(&ct.name)
        };
        let name = self.unique(base);
        self.names.insert(i, name);
        self.order.push(i);
        for a in &ct.attrs {
            self.visit_simple(&a.name, &a.ty);
        }
        match &ct.content {
            Content::Simple(s) => self.visit_simple(&q.1, s),
            Content::Elements(ps) => {
                for p in ps {
                    for (aq, aty) in &p.alts {
                        if usable(p, aq, aty) {
                            self.visit(aq, aty);
                        }
                    }
                }
            }
        }
    }

    fn visit_simple(&mut self, context: &str, s: &Simple) {
        if let Simple::Enum { ns, .. } = s {
            let key = enum_key(context, s);
            if let Some(sh) = self
                .shared
                .iter()
                .find(|sh| sh.ns == ns && sh.module != self.module)
            {
                if let Some(rust) = sh.enums.get(&key) {
                    self.external_enums
                        .insert(key, format!("super::{}::{rust}", sh.module));
                    return;
                }
            }
            self.enum_ns.insert(key.clone(), ns.clone());
            if !self.enums.contains_key(&key) {
                let rust = self.unique(type_name(&key.0));
                self.enums.insert(key, rust);
            }
        }
    }

    fn enum_name(&self, context: &str, s: &Simple) -> String {
        if !matches!(s, Simple::Enum { .. }) {
            return String::new();
        }
        let key = enum_key(context, s);
        self.external_enums
            .get(&key)
            .or_else(|| self.enums.get(&key))
            .cloned()
            .unwrap_or_default()
    }

    /// The Rust type of a simple value.
    fn simple_type(&self, context: &str, s: &Simple) -> String {
        match s {
            Simple::String { .. } => "String".into(),
            Simple::Boolean => "bool".into(),
            Simple::Binary { base64: true, .. } => "Base64Binary".into(),
            Simple::Binary { base64: false, .. } => "HexBinary".into(),
            Simple::Int { min, max } => int_type(*min, *max).into(),
            Simple::Enum { .. } => self.enum_name(context, s),
        }
    }

    /// Code writing a simple value `v` (a reference) to `w`.
    fn enc_value(&self, context: &str, s: &Simple, v: &str) -> String {
        match s {
            Simple::String { min, max } => format!("enc_string(w, {v}, {min}, {})?;", opt(*max)),
            Simple::Boolean => format!("w.bits(1, u32::from(*{v}));"),
            Simple::Binary { min, max, .. } => {
                format!("enc_binary(w, &{v}.0, {min}, {})?;", opt(*max))
            }
            Simple::Int { min, max } => {
                format!(
                    "enc_int(w, i128::from(*{v}), {}, {})?;",
                    lit(*min),
                    lit(*max)
                )
            }
            Simple::Enum { .. } => {
                let e = self.enum_name(context, s);
                format!("enc_enum(w, {v}.index(), {e}::COUNT);")
            }
        }
    }

    /// An expression reading a simple value from `r`.
    fn dec_value(&self, context: &str, s: &Simple) -> String {
        match s {
            Simple::String { min, max } => format!("dec_string(r, {min}, {})?", opt(*max)),
            Simple::Boolean => "dec_bool(r)?".into(),
            Simple::Binary {
                base64: true,
                min,
                max,
            } => {
                format!("Base64Binary(dec_binary(r, {min}, {})?)", opt(*max))
            }
            Simple::Binary {
                base64: false,
                min,
                max,
            } => {
                format!("HexBinary(dec_binary(r, {min}, {})?)", opt(*max))
            }
            Simple::Int { min, max } => format!(
                "int_into::<{}>(dec_int(r, {}, {})?)?",
                int_type(*min, *max),
                lit(*min),
                lit(*max)
            ),
            Simple::Enum { .. } => {
                let e = self.enum_name(context, s);
                format!("enum_from::<{e}>(dec_enum(r, {e}::COUNT)?)?")
            }
        }
    }

    /// Code writing an element of type `ty` whose value is `v` (a reference).
    fn enc_elem(&self, q: &QName, ty: &Ty, v: &str) -> String {
        match ty {
            Ty::Complex(_) => format!("{v}.encode(w)?;"),
            Ty::Simple(Simple::String { min, max }) => {
                format!("string_elem(w, {v}, {min}, {})?;", opt(*max))
            }
            Ty::Simple(Simple::Binary { min, max, .. }) => {
                format!("binary_elem(w, &{v}.0, {min}, {})?;", opt(*max))
            }
            Ty::Simple(s) => format!(
                "elem_value(w, false, |w| {{ {} Ok(()) }})?;",
                self.enc_value(&q.1, s, v)
            ),
            Ty::Unsupported(_) => String::new(),
        }
    }

    /// An expression reading an element of type `ty`.
    fn dec_elem(&self, q: &QName, ty: &Ty) -> String {
        match ty {
            Ty::Complex(i) => {
                let name = self.type_path(*i);
                format!("{name}::decode(r)?")
            }
            Ty::Simple(s) => {
                let may_be_empty = matches!(
                    s,
                    Simple::String { min: 0, .. } | Simple::Binary { min: 0, .. }
                );
                let read = format!(
                    "dec_elem_value(r, {may_be_empty}, |r| Ok({}))?",
                    self.dec_value(&q.1, s)
                );
                if may_be_empty {
                    format!("{read}.unwrap_or_default()")
                } else {
                    format!("{read}.ok_or_else(|| missing({:?}))?", q.1)
                }
            }
            Ty::Unsupported(_) => String::new(),
        }
    }

    fn elem_type(&self, q: &QName, ty: &Ty, boxed: bool) -> String {
        match ty {
            Ty::Complex(i) => {
                let n = self.type_path(*i);
                if boxed {
                    format!("Box<{n}>")
                } else {
                    n
                }
            }
            Ty::Simple(s) => self.simple_type(&q.1, s),
            Ty::Unsupported(_) => String::new(),
        }
    }

    /// Complex types reachable from `i` through fields that hold their value
    /// inline (not in a Vec): recursion through them needs a Box.
    fn reaches(&self, from: usize, to: usize) -> bool {
        let mut seen = HashSet::new();
        let mut stack = vec![from];
        while let Some(i) = stack.pop() {
            if !seen.insert(i) {
                continue;
            }
            if let Content::Elements(ps) = &self.ct(i).content {
                for p in ps {
                    if p.max > 1 {
                        continue;
                    }
                    for (aq, aty) in &p.alts {
                        if let (true, Ty::Complex(j)) = (usable(p, aq, aty), aty) {
                            let j = self.canon(*j);
                            if self.external.contains_key(&j) {
                                continue;
                            }
                            if j == to {
                                return true;
                            }
                            stack.push(j);
                        }
                    }
                }
            }
        }
        false
    }

    fn run(&mut self, set: &str, ns: &str) -> Result<String, String> {
        let globals = self.schema.global_elements();
        for (q, ty) in globals {
            self.visit(q, ty);
        }
        // elements that start a fragment: every declaration with one type
        let fragments: Vec<(usize, &QName, &Ty)> = self
            .schema
            .fragment_model()
            .iter()
            .enumerate()
            .filter_map(|(k, (q, ty))| match ty {
                Some(ty) if !matches!(ty, Ty::Unsupported(_)) => Some((k, q, ty)),
                _ => None,
            })
            .collect();
        for (_, q, ty) in &fragments {
            self.visit(q, ty);
        }
        let mut o = String::new();
        let _ = writeln!(
            o,
            "// @generated by `cargo xtask codegen` (xtask/src/v2g.rs) from iso15118/schemas/. Do not edit.\n\
             \n\
             //! Typed messages of the `{set}` schema set (`{ns}`) and their EXI codec.\n\
             //!\n\
             //! Generated by `cargo xtask codegen` (`xtask/src/v2g.rs`) from the vendored XSDs\n\
             //! under `iso15118/schemas/`; do not edit. Each struct is an XSD complex type\n\
             //! (fields in schema order, spec names in the serde renames: the JSON is the view\n\
             //! `evproto_iso15118::schema` and EXIficient use); [`Message`] holds the global elements.\n\
             #![allow(clippy::all, clippy::pedantic, missing_docs, unused_mut, unused_variables)]\n\
             use crate::exi::{{BitReader, BitWriter, ExiError}};\n\
             use crate::grammar::*;\n\
             use crate::lenient::{{Policy, Warning}};\n"
        );
        // enums
        for ((xsd, values), rust) in &self.enums {
            let _ = writeln!(o, "/// XSD enumeration `{xsd}`.");
            let _ = writeln!(
                o,
                "#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]\npub enum {rust} {{"
            );
            let mut seen = HashSet::new();
            let variants: Vec<String> = values
                .iter()
                .map(|v| {
                    let mut n = type_name(v);
                    while !seen.insert(n.clone()) {
                        n.push('_');
                    }
                    n
                })
                .collect();
            for (v, n) in values.iter().zip(&variants) {
                let _ = writeln!(o, "    #[serde(rename = {v:?})]\n    {n},");
            }
            let _ = writeln!(o, "}}\n");
            let _ = writeln!(
                o,
                "impl ExiEnum for {rust} {{\n    const COUNT: u32 = {};",
                values.len()
            );
            let names: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
            let _ = writeln!(
                o,
                "    const NAMES: &'static [&'static str] = &[{}];",
                names.join(", ")
            );
            let _ = writeln!(o, "    fn index(&self) -> u32 {{ *self as u32 }}");
            let _ = writeln!(
                o,
                "    fn from_index(i: u32) -> Option<Self> {{\n        match i {{"
            );
            for (k, n) in variants.iter().enumerate() {
                let _ = writeln!(o, "            {k} => Some(Self::{n}),");
            }
            let _ = writeln!(o, "            _ => None,\n        }}\n    }}\n}}\n");
        }
        // structs
        let order = self.order.clone();
        for i in order {
            self.gen_type(&mut o, i);
        }
        // the message enum
        let _ = writeln!(
            o,
            "/// A document of this schema set: one of its global elements.\n\
             #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]\n\
             pub enum Message {{"
        );
        let mut variants = Vec::new();
        let mut seen = HashSet::new();
        for (k, (q, ty)) in globals.iter().enumerate() {
            if matches!(ty, Ty::Unsupported(_)) {
                continue;
            }
            let mut v = type_name(&q.1);
            while !seen.insert(v.clone()) {
                v.push('_');
            }
            let t = self.elem_type(q, ty, matches!(ty, Ty::Complex(_)));
            let _ = writeln!(
                o,
                "    /// `{}`\n    #[serde(rename = {:?})]\n    {v}({t}),",
                q.1, q.1
            );
            variants.push((k, v, q, ty));
        }
        let _ = writeln!(o, "}}\n");
        let n = globals.len() + 1;
        let _ = writeln!(o, "impl Message {{");
        let _ = writeln!(o, "    /// The element name (`V2G_Message`, `SessionSetupReq`…).\n    pub fn name(&self) -> &'static str {{\n        match self {{");
        for (_, v, q, _) in &variants {
            let _ = writeln!(o, "            Message::{v}(_) => {:?},", q.1);
        }
        let _ = writeln!(o, "        }}\n    }}\n");
        self.gen_codec(&mut o, "Message", &variants, n, false);
        let _ = writeln!(o, "}}");
        self.gen_fragments(&mut o, &fragments);
        Ok(o)
    }

    /// The `Fragment` enum: one element as an EXI fragment (SD, SE of the
    /// element among every declaration of the set, its content, ED).
    fn gen_fragments(&self, o: &mut String, fragments: &[(usize, &QName, &Ty)]) {
        let of = self.schema.fragment_model().len() + 2;
        let _ = writeln!(
            o,
            "\n/// One element as an EXI fragment, the form XML signatures digest (ISO 15118-2\n\
             /// §7.9.2.4, -20 §8.3.4): any element declared in the set, global or local,\n\
             /// with a single type.\n\
             #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]\n\
             pub enum Fragment {{"
        );
        let mut seen = HashSet::new();
        let mut names = HashSet::new();
        let mut variants = Vec::new();
        for (k, q, ty) in fragments {
            let mut v = type_name(&q.1);
            while !seen.insert(v.clone()) {
                v.push('_');
            }
            let t = self.elem_type(q, ty, matches!(ty, Ty::Complex(_)));
            // a local name declared in two namespaces: the later one is
            // named with its namespace in the JSON view
            let json = if names.insert(q.1.clone()) {
                q.1.clone()
            } else {
                format!("{{{}}}{}", q.0, q.1)
            };
            let _ = writeln!(
                o,
                "    /// `{{{}}}{}`\n    #[serde(rename = {json:?})]\n    {v}({t}),",
                q.0, q.1
            );
            variants.push((*k, v, *q, *ty));
        }
        let _ = writeln!(o, "}}\n\nimpl Fragment {{");
        self.gen_codec(o, "Fragment", &variants, of, true);
        let _ = writeln!(o, "}}");
    }

    /// `encode` and `decode` of the `Message` (a document: SD, SE of a
    /// global element among `of` codes, its content, ED) or `Fragment`
    /// enum (a fragment: the SE among every declaration, then ED coded as
    /// the last of `of`).
    fn gen_codec(
        &self,
        o: &mut String,
        name: &str,
        variants: &[(usize, String, &QName, &Ty)],
        of: usize,
        fragment: bool,
    ) {
        let what = if fragment { "fragment" } else { "document" };
        let _ = writeln!(
            o,
            "    /// Encodes the {what} (header `0x80`, the element{}) onto `out`.\n\
             pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), ExiError> {{\n\
             let mut bw = BitWriter::with_header();\n\
             let w = &mut bw;\n\
             match self {{",
            if fragment { ", ED" } else { "" }
        );
        for (k, v, q, ty) in variants {
            let _ = writeln!(
                o,
                "            {name}::{v}(x) => {{ w.event({k}, {of}); {} }}",
                self.enc_elem(q, ty, "x")
            );
        }
        let _ = writeln!(o, "        }}");
        if fragment {
            let _ = writeln!(o, "        w.event({}, {of});", of - 1);
        }
        let _ = writeln!(
            o,
            "        out.extend_from_slice(&bw.finish());\n        Ok(())\n    }}\n"
        );
        let _ = writeln!(
            o,
            "    /// Decodes a {what} of one element (strict: every deviation from the schema,\n\
             /// trailing bytes other than padding too, is an error).\n\
             pub fn decode(bytes: &[u8]) -> Result<{name}, ExiError> {{\n\
             Self::decode_with(bytes, &Policy::strict()).map(|(m, _)| m)\n\
             }}\n\
             \n\
             /// Decodes a {what} under `policy`, with the warnings of the deviations it\n\
             /// accepted (see [`crate::lenient`]; none when strict).\n\
             pub fn decode_with(bytes: &[u8], policy: &Policy) -> Result<({name}, Vec<Warning>), ExiError> {{\n\
             let mut rd = BitReader::with_header(bytes)?.with_policy(policy);\n\
             let r = &mut rd;\n\
             let code = r.event({of})?;\n\
             let m = match code {{"
        );
        for (k, v, q, ty) in variants {
            let val = self.dec_elem(q, ty);
            let val = if matches!(ty, Ty::Complex(_)) {
                format!("Box::new({val})")
            } else {
                val
            };
            let _ = writeln!(
                o,
                "            {k} => {{ r.enter({:?}); {name}::{v}({val}) }}",
                q.1
            );
        }
        let _ = writeln!(
            o,
            "            _ => return Err(ExiError::Event {{ at: {what:?}, code, of: {of} }}),\n        }};"
        );
        let _ = writeln!(o, "        r.leave();");
        if fragment {
            let _ = writeln!(o, "        expect(r, \"fragment end\", {of}, {})?;", of - 1);
        }
        let _ = writeln!(
            o,
            "        let warnings = rd.finish()?;\n        Ok((m, warnings))\n    }}"
        );
    }

    fn gen_type(&self, o: &mut String, i: usize) {
        let ct = self.ct(i);
        let name = &self.names[&i];
        // fields: (rust field, xsd name, rust type, kind)
        struct Field {
            rust: String,
            xsd: String,
            ty: String,
            /// 0 plain, 1 Option, 2 Vec
            card: u8,
        }
        let mut fields: Vec<Field> = Vec::new();
        let mut taken = HashSet::new();
        let mut fname = |xsd: &str| {
            let mut f = field_name(xsd);
            while !taken.insert(f.clone()) {
                f.push('_');
            }
            f
        };
        let attr_fields: Vec<String> = ct.attrs.iter().map(|a| fname(&a.name)).collect();
        for (a, f) in ct.attrs.iter().zip(&attr_fields) {
            fields.push(Field {
                rust: f.clone(),
                xsd: a.name.clone(),
                ty: self.simple_type(&a.name, &a.ty),
                card: if a.required { 0 } else { 1 },
            });
        }
        let mut value_field = None;
        // per particle, per alternative: the field (None when not coded)
        let mut elem_fields: Vec<Vec<Option<usize>>> = Vec::new();
        match &ct.content {
            Content::Simple(s) => {
                let f = fname("value");
                fields.push(Field {
                    rust: f.clone(),
                    xsd: "value".into(),
                    ty: self.simple_type(name, s),
                    card: 0,
                });
                value_field = Some((f, s));
            }
            Content::Elements(ps) => {
                for p in ps {
                    let mut row = Vec::new();
                    for (aq, aty) in &p.alts {
                        if !usable(p, aq, aty) {
                            row.push(None);
                            continue;
                        }
                        let boxed = matches!(aty, Ty::Complex(j) if p.max <= 1 && self.reaches(self.canon(*j), i));
                        let card = if p.max > 1 {
                            2
                        } else if p.alts.len() > 1 || p.min == 0 {
                            1
                        } else {
                            0
                        };
                        row.push(Some(fields.len()));
                        fields.push(Field {
                            rust: fname(&aq.1),
                            xsd: aq.1.clone(),
                            ty: self.elem_type(aq, aty, boxed),
                            card,
                        });
                    }
                    elem_fields.push(row);
                }
            }
        }
        let what = if ct.name.is_empty() {
            "the anonymous type of an element".to_string()
        } else {
            format!("XSD complex type `{}`", ct.name)
        };
        let _ = writeln!(o, "/// {what}.");
        // a struct of optional and repeated fields only (a choice, like a
        // message body) starts from Default
        let default = if fields.iter().all(|f| f.card != 0) {
            ", Default"
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "#[derive(Debug, Clone, PartialEq{default}, serde::Serialize, serde::Deserialize)]\npub struct {name} {{"
        );
        for f in &fields {
            let (ty, extra) = match f.card {
                0 => (f.ty.clone(), String::new()),
                1 => (
                    format!("Option<{}>", f.ty),
                    ", default, skip_serializing_if = \"Option::is_none\"".to_string(),
                ),
                _ => (
                    format!("Vec<{}>", f.ty),
                    ", default, skip_serializing_if = \"Vec::is_empty\"".to_string(),
                ),
            };
            let _ = writeln!(
                o,
                "    #[serde(rename = {:?}{extra})]\n    pub {}: {ty},",
                f.xsd, f.rust
            );
        }
        let _ = writeln!(o, "}}\n");
        // grammar table
        let gname = format!("G_{}", name.to_ascii_uppercase());
        let attrs: Vec<String> = ct.attrs.iter().map(|a| a.required.to_string()).collect();
        let attr_names: Vec<String> = ct.attrs.iter().map(|a| format!("{:?}", a.name)).collect();
        let ps: Vec<String> = match &ct.content {
            Content::Elements(ps) => ps
                .iter()
                .map(|p| {
                    let names: Vec<String> =
                        p.alts.iter().map(|(q, _)| format!("{:?}", q.1)).collect();
                    format!(
                        "P {{ alts: {}, names: &[{}], min: {}, max: {} }}",
                        p.alts.len(),
                        names.join(", "),
                        p.min,
                        if p.max == u32::MAX {
                            "u32::MAX".to_string()
                        } else {
                            p.max.to_string()
                        }
                    )
                })
                .collect(),
            Content::Simple(_) => Vec::new(),
        };
        let _ = writeln!(
            o,
            "static {gname}: Grammar = Grammar {{ attrs: &[{}], attr_names: &[{}], particles: &[{}], mixed: {}, simple: {} }};\n",
            attrs.join(", "),
            attr_names.join(", "),
            ps.join(", "),
            ct.mixed,
            matches!(ct.content, Content::Simple(_))
        );
        // encode
        let _ = writeln!(o, "impl ExiType for {name} {{");
        let _ = writeln!(o, "    fn encode(&self, w: &mut BitWriter) -> Result<(), ExiError> {{\n        let mut e = Enc::new(&{gname});");
        for (k, a) in ct.attrs.iter().enumerate() {
            let f = &attr_fields[k];
            let enc = self.enc_value(&a.name, &a.ty, "v");
            if a.required {
                let _ = writeln!(o, "        {{ let v = &self.{f}; e.attr(w, {k}); {enc} }}");
            } else {
                let _ = writeln!(
                    o,
                    "        if let Some(v) = &self.{f} {{ e.attr(w, {k}); {enc} }} else {{ e.skip_attr({k}, {:?})?; }}",
                    a.name
                );
            }
        }
        if let Some((f, s)) = &value_field {
            let _ = writeln!(
                o,
                "        e.chars(w);\n        {{ let v = &self.{f}; {} }}",
                self.enc_value(name, s, "v")
            );
        }
        let mut impossible = false;
        if let Content::Elements(ps) = &ct.content {
            for (k, p) in ps.iter().enumerate() {
                let row = &elem_fields[k];
                let coded: Vec<(usize, usize)> = row
                    .iter()
                    .enumerate()
                    .filter_map(|(a, f)| f.map(|f| (a, f)))
                    .collect();
                let label = p.alts.first().map(|(q, _)| q.1.as_str()).unwrap_or("");
                if coded.is_empty() {
                    if p.min > 0 {
                        // a required wildcard (xmldsig's SignatureProperty): no instance can be written
                        let _ = writeln!(
                            o,
                            "        Err(ExiError::Value {{ what: \"element\", reason: \"{label} (wildcard content) cannot be coded\".into() }})"
                        );
                        impossible = true;
                        break;
                    }
                    continue;
                }
                // occurrences of the particle (all alternatives together)
                let counts: Vec<String> = coded
                    .iter()
                    .map(|(_, f)| match fields[*f].card {
                        0 => "1".to_string(),
                        1 => format!("usize::from(self.{}.is_some())", fields[*f].rust),
                        _ => format!("self.{}.len()", fields[*f].rust),
                    })
                    .collect();
                if !(coded.len() == 1 && fields[coded[0].1].card == 0) {
                    let _ = writeln!(
                        o,
                        "        check_count({}, {}, {}, {label:?})?;",
                        counts.join(" + "),
                        p.min,
                        if p.max == u32::MAX {
                            "u32::MAX".to_string()
                        } else {
                            p.max.to_string()
                        }
                    );
                }
                for (a, f) in coded {
                    let (aq, aty) = &p.alts[a];
                    let fl = &fields[f];
                    let enc = self.enc_elem(aq, aty, "v");
                    match fl.card {
                        0 => {
                            let _ = writeln!(
                                o,
                                "        {{ let v = &self.{}; e.elem(w, {k}, {a}); {enc} }}",
                                fl.rust
                            );
                        }
                        1 => {
                            let _ = writeln!(o, "        if let Some(v) = &self.{} {{ e.elem(w, {k}, {a}); {enc} }}", fl.rust);
                        }
                        _ => {
                            let _ = writeln!(
                                o,
                                "        for v in &self.{} {{ e.elem(w, {k}, {a}); {enc} }}",
                                fl.rust
                            );
                        }
                    }
                }
            }
        }
        if !impossible {
            let _ = writeln!(o, "        e.end(w)");
        }
        let _ = writeln!(o, "    }}\n");
        // decode
        let _ = writeln!(o, "    fn decode(r: &mut BitReader<'_>) -> Result<Self, ExiError> {{\n        let mut d = Dec::new(&{gname});");
        for f in &fields {
            match f.card {
                2 => {
                    let _ = writeln!(
                        o,
                        "        let mut {}: Vec<{}> = Vec::new();",
                        local(&f.rust),
                        f.ty
                    );
                }
                _ => {
                    let _ = writeln!(
                        o,
                        "        let mut {}: Option<{}> = None;",
                        local(&f.rust),
                        f.ty
                    );
                }
            }
        }
        let _ = writeln!(o, "        loop {{\n            match d.next(r)? {{");
        for (k, a) in ct.attrs.iter().enumerate() {
            let _ = writeln!(
                o,
                "                Ev::Attr({k}) => {} = Some({}),",
                local(&attr_fields[k]),
                self.dec_value(&a.name, &a.ty)
            );
        }
        if let Some((f, s)) = &value_field {
            let _ = writeln!(
                o,
                "                Ev::Chars => {} = Some({}),",
                local(f),
                self.dec_value(name, s)
            );
        }
        if let Content::Elements(ps) = &ct.content {
            for (k, p) in ps.iter().enumerate() {
                for (a, f) in elem_fields[k].iter().enumerate() {
                    let Some(f) = f else { continue };
                    let (aq, aty) = &p.alts[a];
                    let fl = &fields[*f];
                    let mut val = self.dec_elem(aq, aty);
                    if fl.ty.starts_with("Box<") {
                        val = format!("Box::new({val})");
                    }
                    let stmt = if fl.card == 2 {
                        format!("{}.push({val})", local(&fl.rust))
                    } else {
                        format!("{} = Some({val})", local(&fl.rust))
                    };
                    let _ = writeln!(o, "                Ev::Elem({k}, {a}) => {stmt},");
                }
            }
        }
        let _ = writeln!(o, "                Ev::End => break,\n                ev => return Err(d.unexpected(ev)),\n            }}\n        }}");
        let _ = writeln!(o, "        Ok({name} {{");
        for f in &fields {
            let l = local(&f.rust);
            match f.card {
                0 => {
                    let _ = writeln!(
                        o,
                        "            {}: {l}.ok_or_else(|| missing({:?}))?,",
                        f.rust, f.xsd
                    );
                }
                _ => {
                    let _ = writeln!(o, "            {}: {l},", f.rust);
                }
            }
        }
        let _ = writeln!(o, "        }})\n    }}\n}}\n");
    }
}

/// An enumeration's identity: its XSD name (`<context>Enum` when
/// anonymous) and its values.
fn enum_key(context: &str, s: &Simple) -> (String, Vec<String>) {
    match s {
        Simple::Enum { name, values, .. } => (
            if name.is_empty() {
                format!("{context}Enum")
            } else {
                name.clone()
            },
            values.clone(),
        ),
        _ => (String::new(), Vec::new()),
    }
}

/// A local variable for a field (`r#type` → `f_type`).
fn local(field: &str) -> String {
    format!("f_{}", field.trim_start_matches("r#"))
}

fn opt(max: Option<usize>) -> String {
    match max {
        Some(m) => format!("Some({m})"),
        None => "None".into(),
    }
}

/// Whether an alternative gets a field: not a wildcard, not an abstract
/// head, a type this crate codes.
fn usable(p: &Particle, q: &QName, ty: &Ty) -> bool {
    q.1 != "*" && !p.abstract_alts.contains(q) && !matches!(ty, Ty::Unsupported(_))
}
