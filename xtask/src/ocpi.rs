//! OCPI object types from the vendored specification text.
//!
//! OCPI publishes no machine-readable schema: every object, class and enum
//! is a table in the specification's AsciiDoc (2.2.1, 2.3.0) or Markdown
//! (2.1.1) files. This generator reads those tables from `ocpi/spec/<ver>/`
//! (vendored unmodified) and writes `ocpi/src/<ver>/generated.rs`:
//!
//! - an `Object`/`class` table (`Property | Type | Card. | Description`)
//!   becomes a struct with the spec's field names, the description as doc
//!   text, and `extra` keeping unknown fields;
//! - an `enum` table (`Value | Description`) becomes an enum (2.3.0
//!   `OpenEnum`s get an `Custom(String)` variant);
//! - cardinality `1` is a plain field, `?` an `Option`, `*` a `Vec` (absent
//!   and `null` read as empty), `+` a `Vec` that must not be empty;
//! - `CiString(n)`, `string(n)`, `URL`, `DateTime`, `number`, `int`,
//!   `boolean` map to the crate's bounded strings, `chrono`, `Decimal`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One OCPI version's vendored specification.
struct VersionSpec {
    dir: &'static str,
    markdown: bool,
    label: &'static str,
}

const VERSIONS: &[VersionSpec] = &[
    VersionSpec {
        dir: "v211",
        markdown: true,
        label: "2.1.1",
    },
    VersionSpec {
        dir: "v221",
        markdown: false,
        label: "2.2.1",
    },
    VersionSpec {
        dir: "v230",
        markdown: false,
        label: "2.3.0",
    },
];

#[derive(Debug, Clone)]
enum Ty {
    CiString(Option<usize>),
    Str(Option<usize>),
    Url,
    DateTime,
    Number,
    Int,
    Bool,
    Named(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Card {
    One,
    Opt,
    Many,
    AtLeastOne,
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    ty: Ty,
    card: Card,
    doc: String,
}

#[derive(Debug, Clone)]
enum Def {
    Struct {
        name: String,
        doc: String,
        source: String,
        fields: Vec<Field>,
    },
    Enum {
        name: String,
        doc: String,
        source: String,
        open: bool,
        values: Vec<(String, String)>,
    },
}

impl Def {
    /// `#[cfg(...)]` for definitions behind a feature: 2.3.0 payments.
    fn cfg(&self) -> &'static str {
        let source = match self {
            Def::Struct { source, .. } | Def::Enum { source, .. } => source,
        };
        if source.starts_with("mod_payments.") {
            "#[cfg(feature = \"payments\")]\n"
        } else {
            ""
        }
    }

    fn name(&self) -> &str {
        match self {
            Def::Struct { name, .. } | Def::Enum { name, .. } => name,
        }
    }
}

/// Generates every OCPI version's file: `(path, contents)`.
pub(crate) fn generate(root: &Path) -> Result<Vec<(PathBuf, String)>, String> {
    let mut out = Vec::new();
    for v in VERSIONS {
        let dir = root.join("ocpi/spec").join(v.dir);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
                let stem = p.file_stem().and_then(|e| e.to_str()).unwrap_or("");
                (ext == "asciidoc" || ext == "md") && stem != "copyright"
            })
            .collect();
        files.sort();
        let mut defs: Vec<Def> = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
            let file = f
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string();
            let sections = if v.markdown {
                markdown_sections(&text)
            } else {
                asciidoc_sections(&text)
            };
            for s in sections {
                if let Some(d) = to_def(&s, &file)? {
                    if defs.iter().any(|e| e.name() == d.name()) {
                        continue;
                    }
                    defs.push(d);
                }
            }
        }
        check_refs(&defs, v.label)?;
        let text = render(v, &defs);
        out.push((root.join("ocpi/src").join(v.dir).join("generated.rs"), text));
    }
    Ok(out)
}

/// A heading with the first table under it.
struct Section {
    title: String,
    intro: Vec<String>,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn asciidoc_sections(text: &str) -> Vec<Section> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if !is_adoc_heading(line) {
            i += 1;
            continue;
        }
        let title = line.trim_start_matches('=').trim().to_string();
        i += 1;
        let mut intro = Vec::new();
        let mut in_intro = true;
        let mut table: Option<(usize, Vec<String>)> = None;
        while i < lines.len() && !is_adoc_heading(lines[i]) {
            let l = lines[i];
            if l.trim() == "|===" {
                // Read the table body up to the closing delimiter.
                let cols = lines[..i]
                    .iter()
                    .rev()
                    .take(2)
                    .find_map(|c| c.trim().strip_prefix("[cols=\""))
                    .and_then(|c| c.split('"').next())
                    .map(|c| c.split(',').count());
                let mut body = String::new();
                i += 1;
                while i < lines.len() && lines[i].trim() != "|===" {
                    body.push_str(lines[i]);
                    body.push('\n');
                    i += 1;
                }
                if table.is_none() {
                    let cells = split_cells(&body);
                    let ncols = cols.unwrap_or_else(|| {
                        body.lines()
                            .find(|l| l.trim_start().starts_with('|'))
                            .map(|l| split_cells(l).len())
                            .unwrap_or(1)
                    });
                    table = Some((ncols.max(1), cells));
                }
                in_intro = false;
                i += 1;
                continue;
            }
            if in_intro && table.is_none() {
                let t = l.trim();
                if t.starts_with("[[") || t.starts_with("[cols") || t.starts_with("image::") {
                } else if t.is_empty() {
                    if !intro.is_empty() {
                        in_intro = false;
                    }
                } else {
                    intro.push(t.to_string());
                }
            }
            i += 1;
        }
        if let Some((n, cells)) = table {
            let mut rows: Vec<Vec<String>> = cells.chunks(n).map(|c| c.to_vec()).collect();
            if rows.is_empty() {
                continue;
            }
            let header = rows.remove(0);
            out.push(Section {
                title,
                intro,
                header,
                rows,
            });
        }
    }
    out
}

fn is_adoc_heading(line: &str) -> bool {
    let t = line.trim_start_matches('=');
    t.len() < line.len() && t.starts_with(' ') && line.starts_with("==")
}

/// Splits an AsciiDoc table body into cells (`|` starts a cell; `\|` is a
/// literal bar).
fn split_cells(body: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&'|') {
            chars.next();
            if let Some(s) = cur.as_mut() {
                s.push('|');
            }
            continue;
        }
        if c == '|' {
            if let Some(s) = cur.take() {
                cells.push(strip_cell_style(s.trim()).to_string());
            }
            cur = Some(String::new());
            continue;
        }
        if let Some(s) = cur.as_mut() {
            s.push(c);
        }
    }
    if let Some(s) = cur.take() {
        cells.push(s.trim().to_string());
    }
    cells
}

/// Drops the next cell's style operator (`a|`, `l|`, ...) from the end of
/// the text before it.
fn strip_cell_style(s: &str) -> &str {
    for op in [" a", " l", " m", " e", " s", " h", " d", " v"] {
        if let Some(rest) = s.strip_suffix(op) {
            return rest.trim_end();
        }
    }
    if matches!(s, "a" | "l" | "m" | "e" | "s" | "h" | "d" | "v") {
        return "";
    }
    s
}

fn markdown_sections(text: &str) -> Vec<Section> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if !line.starts_with('#') {
            i += 1;
            continue;
        }
        let title = line.trim_start_matches('#').trim().to_string();
        i += 1;
        let mut intro = Vec::new();
        let mut in_intro = true;
        let mut table: Option<(Vec<String>, Vec<Vec<String>>)> = None;
        while i < lines.len() && !lines[i].starts_with('#') {
            let l = lines[i].trim();
            if l.starts_with('|') {
                let mut rows = Vec::new();
                while i < lines.len() && lines[i].trim().starts_with('|') {
                    let r = lines[i].trim();
                    let inner = r.trim_start_matches('|').trim_end_matches('|');
                    let cells: Vec<String> =
                        inner.split('|').map(|c| c.trim().to_string()).collect();
                    if !cells
                        .iter()
                        .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
                    {
                        rows.push(cells);
                    }
                    i += 1;
                }
                if table.is_none() && !rows.is_empty() {
                    let header = rows.remove(0);
                    table = Some((header, rows));
                }
                in_intro = false;
                continue;
            }
            if in_intro && table.is_none() {
                if l.is_empty() || l.starts_with('<') {
                    if !intro.is_empty() {
                        in_intro = false;
                    }
                } else {
                    intro.push(l.to_string());
                }
            }
            i += 1;
        }
        if let Some((header, rows)) = table {
            out.push(Section {
                title,
                intro,
                header,
                rows,
            });
        }
    }
    out
}

/// `Title` → (name, kind) where kind is `object`, `enum` or `openenum`.
fn classify(title: &str) -> Option<(String, &'static str)> {
    // Markdown titles carry a section number: "3.1 _Session_ Object".
    let t = title.trim();
    let t = match t.split_once(' ') {
        Some((num, rest)) if num.chars().all(|c| c.is_ascii_digit() || c == '.') => rest,
        _ => t,
    };
    let words: Vec<&str> = t.split_whitespace().collect();
    let (last, name_words) = words.split_last()?;
    let kind = match last
        .trim_matches(|c| c == '_' || c == '*')
        .to_ascii_lowercase()
        .as_str()
    {
        "object" | "class" => "object",
        "enum" => "enum",
        "openenum" => "openenum",
        _ => return None,
    };
    if name_words.is_empty() || name_words.iter().any(|w| w.contains(':')) {
        return None;
    }
    let raw: String = name_words
        .iter()
        .map(|w| w.trim_matches(|c| c == '_' || c == '*'))
        .collect::<Vec<_>>()
        .join(" ");
    if raw == "Object description" || raw.is_empty() {
        return None;
    }
    if !raw.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ') {
        return None;
    }
    Some((rust_type_name(&raw), kind))
}

/// Rust-cases a spec name: `EVSE` → `Evse`, `CDR` → `Cdr`,
/// `Financial Advice Confirmation` → `FinancialAdviceConfirmation`.
fn rust_type_name(raw: &str) -> String {
    raw.split(' ')
        .map(|w| {
            if w.len() > 1
                && w.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            {
                let mut s = w[..1].to_string();
                s.push_str(&w[1..].to_ascii_lowercase());
                s
            } else {
                let mut c = w.chars();
                match c.next() {
                    Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                    None => String::new(),
                }
            }
        })
        .collect()
}

fn to_def(s: &Section, file: &str) -> Result<Option<Def>, String> {
    let Some((name, kind)) = classify(&s.title) else {
        return Ok(None);
    };
    // Headings whose spelling differs from every reference to them.
    let name = match name.as_str() {
        "ChargingprofilePeriod" => "ChargingProfilePeriod".to_string(),
        _ => name,
    };
    let header: Vec<String> = s
        .header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let doc = clean_doc(&s.intro.join("\n"));
    let source = format!("{file}, \"{}\"", s.title.replace('"', "'"));
    if kind == "object" {
        let names_ok = matches!(
            header.first().map(String::as_str),
            Some("property" | "field name")
        );
        let types_ok = matches!(
            header.get(1).map(String::as_str),
            Some("type" | "field type")
        );
        if header.len() < 4 || !names_ok || !types_ok {
            return Ok(None);
        }
        let mut fields = Vec::new();
        for r in &s.rows {
            if r.len() < 4 {
                continue;
            }
            // `> name`: one member of a "Choice: one of two" group, so optional.
            let raw_name = strip_markup(&r[0]);
            let choice = raw_name.trim_start().starts_with('>');
            let fname = raw_name
                .trim_start_matches([' ', '>'])
                .trim_matches('*')
                .trim()
                .to_string();
            if fname.is_empty() || !fname.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let card = match r[2].trim() {
                "1" if choice => Card::Opt,
                "1" => Card::One,
                "?" => Card::Opt,
                "*" => Card::Many,
                "+" => Card::AtLeastOne,
                other => return Err(format!("{source}: field {fname}: cardinality {other:?}")),
            };
            let ty = parse_type(&r[1]).map_err(|e| format!("{source}: field {fname}: {e}"))?;
            fields.push(Field {
                name: fname,
                ty,
                card,
                doc: clean_doc(&r[3..].join(" | ")),
            });
        }
        if fields.is_empty() {
            return Ok(None);
        }
        return Ok(Some(Def::Struct {
            name,
            doc,
            source,
            fields,
        }));
    }
    // Enum: the value column is "Value", or "ModuleID" in the ModuleID table.
    let col = header
        .iter()
        .position(|h| h == "value" || h == "moduleid" || h == "property")
        .ok_or_else(|| format!("{source}: enum table without a value column: {header:?}"))?;
    let desc_col = header
        .iter()
        .position(|h| h == "description" || h == "remark");
    let mut values = Vec::new();
    for r in &s.rows {
        let Some(v) = r.get(col) else { continue };
        let v = strip_markup(v).trim().to_string();
        if v.is_empty() || v.contains(' ') {
            continue;
        }
        let d = desc_col
            .and_then(|c| r.get(c))
            .map(|d| clean_doc(d))
            .unwrap_or_default();
        values.push((v, d));
    }
    if values.is_empty() {
        return Ok(None);
    }
    Ok(Some(Def::Enum {
        name,
        doc,
        source,
        open: kind == "openenum",
        values,
    }))
}

/// Reads a type cell: `<<types.asciidoc#types_cistring_type,CiString>>(36)`,
/// `[string](types.md#15-string-type)(36)`, `int`, ...
fn parse_type(cell: &str) -> Result<Ty, String> {
    let plain = strip_markup(cell);
    // 2.3.0 writes one length as `String[50]`.
    let plain = plain.trim().replace('[', "(").replace(']', ")");
    let plain = plain.as_str();
    let (label, len) = match plain.split_once('(') {
        Some((l, rest)) => {
            let n = rest.trim_end_matches(')').trim();
            // `[1..255]`: a range; the bound is its upper end.
            let n = n.rsplit("..").next().unwrap_or(n);
            (
                l.trim(),
                Some(
                    n.parse::<usize>()
                        .map_err(|_| format!("bad length in {cell:?}"))?,
                ),
            )
        }
        None => (plain, None),
    };
    Ok(match label {
        "CiString" => Ty::CiString(len),
        "string" | "String" => Ty::Str(len),
        "URL" => Ty::Url,
        "DateTime" => Ty::DateTime,
        "number" | "decimal" => Ty::Number,
        "int" => Ty::Int,
        "boolean" => Ty::Bool,
        other
            if !other.is_empty()
                && other.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ') =>
        {
            Ty::Named(rust_type_name(other))
        }
        other => return Err(format!("unknown type {other:?} in {cell:?}")),
    })
}

/// Replaces AsciiDoc cross references and Markdown links by their labels.
fn strip_markup(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    loop {
        let a = rest.find("<<");
        let m = rest.find('[');
        match (a, m) {
            (Some(ai), mi) if mi.is_none_or(|mi| ai < mi) => {
                out.push_str(&rest[..ai]);
                let after = &rest[ai + 2..];
                match after.find(">>") {
                    Some(end) => {
                        let inner = &after[..end];
                        let label = inner.split_once(',').map(|(_, l)| l).unwrap_or(inner);
                        out.push_str(label.trim());
                        rest = &after[end + 2..];
                    }
                    None => {
                        out.push_str("<<");
                        rest = after;
                    }
                }
            }
            (_, Some(mi)) => {
                out.push_str(&rest[..mi]);
                let after = &rest[mi + 1..];
                match after.find("](") {
                    Some(close) if !after[..close].contains('[') => {
                        let label = &after[..close];
                        let tail = &after[close + 2..];
                        match tail.find(')') {
                            Some(p) => {
                                out.push_str(label);
                                rest = &tail[p + 1..];
                            }
                            None => {
                                out.push('[');
                                rest = after;
                            }
                        }
                    }
                    _ => {
                        out.push('[');
                        rest = after;
                    }
                }
            }
            _ => {
                out.push_str(rest);
                break;
            }
        }
    }
    out
}

/// Makes spec prose safe as rustdoc: links reduced to labels, AsciiDoc
/// line-break markers removed, no indentation (which would start a code
/// block), brackets and angle brackets escaped.
fn clean_doc(s: &str) -> String {
    let s = strip_markup(s).replace("&amp;", "&");
    let mut lines = Vec::new();
    for l in s.lines() {
        let l = l.trim();
        let l = l
            .strip_suffix(" +")
            .or_else(|| {
                l.strip_suffix('+')
                    .filter(|_| l.ends_with(" +") || l == "+")
            })
            .unwrap_or(l);
        let l = l.trim();
        if !l.is_empty() {
            lines.push(l.to_string());
        }
    }
    lines
        .join("\n")
        .replace('\\', "\\\\")
        .replace('[', "\\[")
        .replace(']', "\\]")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace("```", "'''")
}

fn check_refs(defs: &[Def], label: &str) -> Result<(), String> {
    let known: BTreeSet<&str> = defs.iter().map(Def::name).collect();
    let mut missing = BTreeMap::new();
    for d in defs {
        if let Def::Struct { name, fields, .. } = d {
            for f in fields {
                if let Ty::Named(n) = &f.ty {
                    if !known.contains(n.as_str()) && !hand_written(n) {
                        missing.insert(n.clone(), format!("{name}.{}", f.name));
                    }
                }
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "OCPI {label}: types referenced but not defined: {missing:?}"
        ))
    }
}

/// Types the version modules write by hand (not tables in the spec).
fn hand_written(name: &str) -> bool {
    matches!(name, "Json")
}

const KEYWORDS: &[&str] = &["type", "ref", "match", "self", "mod", "use", "fn", "loop"];

fn rust_field(name: &str) -> String {
    if KEYWORDS.contains(&name) {
        format!("r#{name}")
    } else {
        name.to_string()
    }
}

fn variant_name(value: &str) -> String {
    if value.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        return format!("V{}", value.replace(['.', '-'], "_"));
    }
    let mut out = String::new();
    for part in value.split(|c: char| !c.is_ascii_alphanumeric()) {
        if part.is_empty() {
            continue;
        }
        let mut c = part.chars();
        if let Some(f) = c.next() {
            out.push(f.to_ascii_uppercase());
            out.push_str(&c.as_str().to_ascii_lowercase());
        }
    }
    out
}

fn base_type(ty: &Ty) -> String {
    match ty {
        Ty::CiString(Some(n)) => format!("crate::types::CiString<{n}>"),
        Ty::CiString(None) => "crate::types::CiString".to_string(),
        Ty::Str(Some(n)) => format!("crate::types::Str<{n}>"),
        Ty::Str(None) => "String".to_string(),
        Ty::Url => "crate::types::Url".to_string(),
        Ty::DateTime => "crate::types::DateTime".to_string(),
        Ty::Number => "rust_decimal::Decimal".to_string(),
        Ty::Int => "i64".to_string(),
        Ty::Bool => "bool".to_string(),
        Ty::Named(n) => n.clone(),
    }
}

fn doc_lines(out: &mut String, indent: &str, doc: &str) {
    for l in doc.lines() {
        if l.is_empty() {
            let _ = writeln!(out, "{indent}///");
        } else {
            let _ = writeln!(out, "{indent}/// {l}");
        }
    }
}

fn render(v: &VersionSpec, defs: &[Def]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// @generated by `cargo xtask codegen` from ocpi/spec/{}/ (OCPI {}). Do not edit.",
        v.dir, v.label
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "#![allow(missing_docs, clippy::all)]");
    let _ = writeln!(out);
    let _ = writeln!(out, "use serde::{{Deserialize, Serialize}};");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "/// Every object, class and enum of this version, by its Rust name."
    );
    let names: Vec<String> = defs
        .iter()
        .filter(|d| d.cfg().is_empty())
        .map(|d| format!("{:?}", d.name()))
        .collect();
    let _ = writeln!(out, "pub const TYPES: &[&str] = &[{}];", names.join(", "));
    let gated: Vec<String> = defs
        .iter()
        .filter(|d| !d.cfg().is_empty())
        .map(|d| format!("{:?}", d.name()))
        .collect();
    if !gated.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "/// The Payments module's types (feature `payments`).");
        let _ = writeln!(out, "#[cfg(feature = \"payments\")]");
        let _ = writeln!(
            out,
            "pub const PAYMENT_TYPES: &[&str] = &[{}];",
            gated.join(", ")
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "/// Every object and class: its fields as `(name, type, cardinality)`, where the"
    );
    let _ = writeln!(
        out,
        "/// type is another entry's name, an enum's name, or a primitive (`CiString`,"
    );
    let _ = writeln!(
        out,
        "/// `string`, `URL`, `DateTime`, `number`, `int`, `boolean`) and the cardinality"
    );
    let _ = writeln!(out, "/// is `1`, `?`, `*` or `+` as in the spec's tables.");
    let _ = writeln!(out, "#[rustfmt::skip]");
    let _ = writeln!(
        out,
        "pub const FIELDS: &[(&str, &[(&str, &str, char)])] = &["
    );
    for d in defs {
        if let Def::Struct { name, fields, .. } = d {
            if !d.cfg().is_empty() {
                continue;
            }
            let list: Vec<String> = fields
                .iter()
                .map(|f| {
                    let ty = match &f.ty {
                        Ty::CiString(Some(n)) => format!("CiString({n})"),
                        Ty::CiString(None) => "CiString".to_string(),
                        Ty::Str(Some(n)) => format!("string({n})"),
                        Ty::Str(None) => "string".to_string(),
                        Ty::Url => "URL".to_string(),
                        Ty::DateTime => "DateTime".to_string(),
                        Ty::Number => "number".to_string(),
                        Ty::Int => "int".to_string(),
                        Ty::Bool => "boolean".to_string(),
                        Ty::Named(n) => n.clone(),
                    };
                    let card = match f.card {
                        Card::One => '1',
                        Card::Opt => '?',
                        Card::Many => '*',
                        Card::AtLeastOne => '+',
                    };
                    format!("({:?}, {:?}, {:?})", f.name, ty, card)
                })
                .collect();
            let _ = writeln!(out, "    ({:?}, &[{}]),", name, list.join(", "));
        }
    }
    let _ = writeln!(out, "];");
    let _ = writeln!(out);
    let _ = writeln!(out, "/// Every enum's values, by the enum's name.");
    let _ = writeln!(out, "#[rustfmt::skip]");
    let _ = writeln!(out, "pub const ENUMS: &[(&str, &[&str])] = &[");
    for d in defs {
        if let Def::Enum { name, values, .. } = d {
            if !d.cfg().is_empty() {
                continue;
            }
            let list: Vec<String> = values.iter().map(|(v, _)| format!("{v:?}")).collect();
            let _ = writeln!(out, "    ({:?}, &[{}]),", name, list.join(", "));
        }
    }
    let _ = writeln!(out, "];");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "/// Decodes `json` as the type named `name` (one of [`TYPES`]) and encodes it again;"
    );
    let _ = writeln!(out, "/// `None` if there is no such type.");
    let _ = writeln!(out, "#[rustfmt::skip]");
    let _ = writeln!(out, "pub fn decode_named(name: &str, json: &str) -> Option<Result<serde_json::Value, crate::validate::Invalid>> {{");
    let _ = writeln!(out, "    Some(match name {{");
    for d in defs {
        let cfg = d.cfg().trim_end();
        let _ = writeln!(
            out,
            "        {}{:?} => crate::validate::decode::<{}>(json),",
            if cfg.is_empty() {
                String::new()
            } else {
                format!("{cfg} ")
            },
            d.name(),
            d.name()
        );
    }
    let _ = writeln!(out, "        _ => return None,");
    let _ = writeln!(out, "    }})");
    let _ = writeln!(out, "}}");
    for d in defs {
        let _ = writeln!(out);
        match d {
            Def::Struct {
                name,
                doc,
                source,
                fields,
            } => {
                doc_lines(&mut out, "", doc);
                if !doc.is_empty() {
                    let _ = writeln!(out, "///");
                }
                let _ = writeln!(out, "/// Spec: {source}.");
                let _ = write!(out, "{}", d.cfg());
                let _ = writeln!(out, "#[rustfmt::skip]");
                let _ = writeln!(
                    out,
                    "#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]"
                );
                let _ = writeln!(out, "pub struct {name} {{");
                for f in fields {
                    doc_lines(&mut out, "    ", &f.doc);
                    let base = base_type(&f.ty);
                    let rname = rust_field(&f.name);
                    let (ty, attrs) = match (f.card, &f.ty) {
                        (Card::One, Ty::Number) => (base, vec!["with = \"crate::types::decimal\"".to_string()]),
                        (Card::Opt, Ty::Number) => (
                            format!("Option<{base}>"),
                            vec!["default, skip_serializing_if = \"Option::is_none\", with = \"crate::types::decimal_opt\"".to_string()],
                        ),
                        (Card::Many | Card::AtLeastOne, Ty::Number) => (
                            format!("Vec<{base}>"),
                            vec!["with = \"crate::types::decimal_vec\"".to_string()],
                        ),
                        (Card::One, _) => (base, vec![]),
                        (Card::Opt, _) => (
                            format!("Option<{base}>"),
                            vec!["default, skip_serializing_if = \"Option::is_none\"".to_string()],
                        ),
                        (Card::Many, _) => (
                            format!("Vec<{base}>"),
                            vec!["default, skip_serializing_if = \"Vec::is_empty\", deserialize_with = \"crate::types::vec_or_null\"".to_string()],
                        ),
                        (Card::AtLeastOne, _) => (
                            format!("Vec<{base}>"),
                            vec!["deserialize_with = \"crate::types::non_empty\"".to_string()],
                        ),
                    };
                    for a in attrs {
                        let _ = writeln!(out, "    #[serde({a})]");
                    }
                    let _ = writeln!(out, "    pub {rname}: {ty},");
                }
                let _ = writeln!(
                    out,
                    "    /// Fields this version does not define, kept and sent back unchanged."
                );
                let _ = writeln!(out, "    #[serde(flatten)]");
                let _ = writeln!(out, "    pub extra: crate::types::Extra,");
                let _ = writeln!(out, "}}");
            }
            Def::Enum {
                name,
                doc,
                source,
                open,
                values,
            } => {
                doc_lines(&mut out, "", doc);
                if !doc.is_empty() {
                    let _ = writeln!(out, "///");
                }
                let _ = writeln!(out, "/// Spec: {source}.");
                if *open {
                    let _ = writeln!(out, "///");
                    let _ = writeln!(
                        out,
                        "/// An OpenEnum: values this version does not list are kept in `Custom`."
                    );
                }
                let _ = write!(out, "{}", d.cfg());
                let _ = writeln!(out, "#[rustfmt::skip]");
                let _ = writeln!(out, "#[derive(Debug, Clone, PartialEq, Eq, Hash)]");
                let _ = writeln!(out, "pub enum {name} {{");
                for (value, d) in values {
                    doc_lines(&mut out, "    ", d);
                    if d.is_empty() {
                        let _ = writeln!(out, "    /// `{value}`");
                    }
                    let _ = writeln!(out, "    {},", variant_name(value));
                }
                if *open {
                    let _ = writeln!(out, "    /// A value this version does not list.");
                    let _ = writeln!(out, "    Custom(String),");
                }
                let _ = writeln!(out, "}}");
                let _ = writeln!(out);
                let _ = write!(out, "{}", d.cfg());
                let _ = writeln!(out, "#[rustfmt::skip]");
                let _ = writeln!(out, "impl {name} {{");
                let _ = writeln!(
                    out,
                    "    /// Every value this version lists, in the spec's order."
                );
                let list: Vec<String> = values.iter().map(|(v, _)| format!("{:?}", v)).collect();
                let _ = writeln!(
                    out,
                    "    pub const VALUES: &'static [&'static str] = &[{}];",
                    list.join(", ")
                );
                let _ = writeln!(out);
                let _ = writeln!(out, "    /// The value as written on the wire.");
                let _ = writeln!(out, "    pub fn as_str(&self) -> &str {{");
                let _ = writeln!(out, "        match self {{");
                for (value, _) in values {
                    let _ = writeln!(
                        out,
                        "            Self::{} => {:?},",
                        variant_name(value),
                        value
                    );
                }
                if *open {
                    let _ = writeln!(out, "            Self::Custom(s) => s,");
                }
                let _ = writeln!(out, "        }}");
                let _ = writeln!(out, "    }}");
                let _ = writeln!(out);
                let _ = writeln!(
                    out,
                    "    /// Reads a value; `None` if this version does not list it{}.",
                    if *open {
                        " (never, for an OpenEnum)"
                    } else {
                        ""
                    }
                );
                let _ = writeln!(out, "    pub fn from_wire(s: &str) -> Option<Self> {{");
                let _ = writeln!(out, "        Some(match s {{");
                for (value, _) in values {
                    let _ = writeln!(
                        out,
                        "            {:?} => Self::{},",
                        value,
                        variant_name(value)
                    );
                }
                if *open {
                    let _ = writeln!(out, "            other => Self::Custom(other.to_string()),");
                } else {
                    let _ = writeln!(out, "            _ => return None,");
                }
                let _ = writeln!(out, "        }})");
                let _ = writeln!(out, "    }}");
                let _ = writeln!(out, "}}");
                let _ = writeln!(out);
                let _ = write!(out, "{}", d.cfg());
                let _ = writeln!(out, "crate::types::wire_enum!({name});");
            }
        }
    }
    out
}
