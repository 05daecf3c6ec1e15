//! The schema-informed grammar runtime shared by the XSD-driven engine
//! ([`crate::schema`]) and the generated typed codecs (`crate::messages`:
//! `din`, `iso2`, `iso20`…): a complex type's content is a list
//! of positions (particles) with their alternatives and occurrence bounds;
//! the event codes of a state follow from them (EXI 1.0 §8.5.4, as
//! EXIficient builds them: the current particle's alternatives while it may
//! repeat, then the following ones up to the first required one, then EE,
//! then CH for mixed content; attribute productions, sorted by name, before
//! the content in the start tag).
//!
//! [`Enc`] and [`Dec`] walk those states for generated code; the typed
//! value helpers (`string_elem`, `dec_int`…) code simple content the way
//! the engine does. The lenient policy ([`crate::lenient`]) lives here and
//! in the [`BitReader`], not in generated code: [`dec_int`] accepts an
//! integer outside its facet when the reader's policy allows it, and
//! [`Dec`] names each element it enters for the warnings' paths.

use crate::exi::{width, BitReader, BitWriter, ExiError, SECOND_LEVEL_START};
use crate::lenient::WarningKind;

/// What a state computation needs of a particle.
pub trait Counts {
    /// Number of alternatives (element names, substitution members, a
    /// wildcard), each one event code.
    fn alts(&self) -> u32;
    /// Minimum occurrences.
    fn min(&self) -> u32;
    /// Maximum occurrences (`u32::MAX` unbounded).
    fn max(&self) -> u32;
}

/// A particle of a generated grammar table.
#[derive(Debug, Clone, Copy)]
pub struct P {
    /// Alternatives.
    pub alts: u32,
    /// The alternatives' element names (local names, `*` for a wildcard),
    /// for the element paths of lenient warnings.
    pub names: &'static [&'static str],
    /// Minimum occurrences.
    pub min: u32,
    /// Maximum occurrences (`u32::MAX` unbounded).
    pub max: u32,
}

impl Counts for P {
    fn alts(&self) -> u32 {
        self.alts
    }
    fn min(&self) -> u32 {
        self.min
    }
    fn max(&self) -> u32 {
        self.max
    }
}

/// A complex type's grammar, as generated code declares it.
#[derive(Debug)]
pub struct Grammar {
    /// Whether each attribute is required, in EXI (name) order.
    pub attrs: &'static [bool],
    /// The attributes' names, in the same order.
    pub attr_names: &'static [&'static str],
    /// The content particles (empty for simple content).
    pub particles: &'static [P],
    /// Mixed content: a CH production after EE in every content state.
    pub mixed: bool,
    /// Simple content (one typed CH, then EE).
    pub simple: bool,
}

/// (first-level productions, code of EE) in the state "particle `i`,
/// `count` occurrences so far".
pub fn state_codes<C: Counts>(ps: &[C], i: usize, count: u32, mixed: bool) -> (u32, Option<u32>) {
    let ch = u32::from(mixed);
    let mut n = 0u32;
    if count < ps[i].max() {
        n += ps[i].alts();
    }
    if count < ps[i].min() {
        return (n + ch, None);
    }
    for p in &ps[i + 1..] {
        n += p.alts();
        if p.min() > 0 {
            return (n + ch, None);
        }
    }
    (n + 1 + ch, Some(n))
}

/// (code of EE, first-level productions) in the state (particle `i`,
/// `count` occurrences); an error when a required element is still due.
pub fn end_code<C: Counts>(
    ps: &[C],
    i: usize,
    count: u32,
    mixed: bool,
) -> Result<(u32, u32), ExiError> {
    let (n, ee) = if ps.is_empty() {
        (1 + u32::from(mixed), Some(0))
    } else {
        state_codes(ps, i, count, mixed)
    };
    let ee = ee.ok_or_else(|| ExiError::Value {
        what: "element",
        reason: "a required element is missing".into(),
    })?;
    Ok((ee, n))
}

/// Where particle `k`'s first alternative sits in the state (particle `i`,
/// `count` occurrences).
pub fn offset<C: Counts>(ps: &[C], i: usize, count: u32, k: usize) -> u32 {
    if k == i {
        return 0;
    }
    let mut o = 0;
    if count < ps[i].max() {
        o += ps[i].alts();
    }
    for p in &ps[i + 1..k] {
        o += p.alts();
    }
    o
}

/// First-level productions a content model starts with (EE included when
/// everything is optional, CH when mixed).
pub fn content_first<C: Counts>(ps: &[C], mixed: bool) -> u32 {
    let ch = u32::from(mixed);
    let mut n = 0;
    for p in ps {
        n += p.alts();
        if p.min() > 0 {
            return n + ch;
        }
    }
    n + 1 + ch
}

/// The start tag state before attribute `k0`: (attribute productions
/// listed — up to the first required one —, content productions listed —
/// `first`, when every listed attribute is optional).
pub fn attr_state(required: impl Iterator<Item = bool>, first: u32) -> (u32, u32) {
    let mut ats = 0;
    for r in required {
        ats += 1;
        if r {
            return (ats, 0);
        }
    }
    (ats, first)
}

/// Which particle and alternative a content code names in the state
/// (particle `i`, `count` occurrences); `None` when it names none.
pub fn locate<C: Counts>(ps: &[C], i: usize, count: u32, code: u32) -> Option<(usize, u32)> {
    let mut c = code;
    let mut j = i;
    let mut first = true;
    loop {
        let here = if first && count >= ps[i].max() {
            0
        } else {
            ps[j].alts()
        };
        if c < here {
            return Some((j, c));
        }
        c -= here;
        j += 1;
        first = false;
        if j >= ps.len() {
            return None;
        }
    }
}

/// Writes a complex type's events for generated code: attributes (in EXI
/// order), then elements (particle, alternative), then [`Enc::end`].
#[derive(Debug)]
pub struct Enc {
    g: &'static Grammar,
    /// Next attribute that can still be written.
    k0: usize,
    /// Content started (the start tag's attribute productions are gone).
    started: bool,
    si: usize,
    sc: u32,
}

impl Enc {
    /// Starts a complex type's content (after its SE event).
    pub fn new(g: &'static Grammar) -> Self {
        Enc {
            g,
            k0: 0,
            started: false,
            si: 0,
            sc: 0,
        }
    }

    fn first(&self) -> u32 {
        if self.g.simple {
            1
        } else {
            content_first(self.g.particles, self.g.mixed)
        }
    }

    /// Writes attribute `k`'s event (its value follows).
    pub fn attr(&mut self, w: &mut BitWriter, k: usize) {
        let (ats, content) = attr_state(self.g.attrs[self.k0..].iter().copied(), self.first());
        w.event((k - self.k0) as u32, ats + content + 1);
        self.k0 = k + 1;
    }

    /// An absent attribute: an error when it is required.
    pub fn skip_attr(&self, k: usize, name: &'static str) -> Result<(), ExiError> {
        if self.g.attrs[k] {
            return Err(ExiError::Value {
                what: "attribute",
                reason: format!("{name} is required"),
            });
        }
        Ok(())
    }

    /// The attribute productions still listed before the first content event.
    fn pre(&mut self) -> u32 {
        if self.started {
            return 0;
        }
        self.started = true;
        if self.k0 < self.g.attrs.len() {
            attr_state(self.g.attrs[self.k0..].iter().copied(), self.first()).0
        } else {
            0
        }
    }

    /// Writes the SE event of particle `k`'s alternative `alt`.
    pub fn elem(&mut self, w: &mut BitWriter, k: usize, alt: u32) {
        let pre = self.pre();
        let ps = self.g.particles;
        let (n, _) = state_codes(ps, self.si, self.sc, self.g.mixed);
        let code = offset(ps, self.si, self.sc, k) + alt;
        w.event(pre + code, pre + n + 1);
        if k == self.si {
            self.sc += 1;
        } else {
            self.si = k;
            self.sc = 1;
        }
    }

    /// Writes simple content's CH event (the value follows).
    pub fn chars(&mut self, w: &mut BitWriter) {
        let pre = self.pre();
        w.event(pre, pre + 2);
    }

    /// Writes EE; an error when a required element is missing.
    pub fn end(mut self, w: &mut BitWriter) -> Result<(), ExiError> {
        if self.g.simple {
            w.event(0, 2);
            return Ok(());
        }
        let pre = self.pre();
        let (ee, n) = end_code(self.g.particles, self.si, self.sc, self.g.mixed)?;
        w.event(pre + ee, pre + n + 1);
        Ok(())
    }
}

/// An event of a complex type's content, as [`Dec::next`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ev {
    /// Attribute `k` (EXI order); its value follows.
    Attr(usize),
    /// Simple content's value follows.
    Chars,
    /// Particle `k`, alternative `alt`; the element's content follows.
    Elem(usize, u32),
    /// The end of the element.
    End,
}

/// Reads a complex type's events for generated code.
#[derive(Debug)]
pub struct Dec {
    g: &'static Grammar,
    k0: usize,
    started: bool,
    chars_done: bool,
    i: usize,
    count: u32,
    /// The attribute or element last returned is open in the reader's path
    /// (until the next event is read).
    open: bool,
}

impl Dec {
    /// Starts reading a complex type's content (after its SE event).
    pub fn new(g: &'static Grammar) -> Self {
        Dec {
            g,
            k0: 0,
            started: false,
            chars_done: false,
            i: 0,
            count: 0,
            open: false,
        }
    }

    /// The next event. An attribute or element it returns is named in the
    /// reader's path (for lenient warnings) while its value is read.
    pub fn next(&mut self, r: &mut BitReader<'_>) -> Result<Ev, ExiError> {
        if std::mem::take(&mut self.open) {
            r.leave();
        }
        let ev = self.read(r)?;
        match ev {
            Ev::Attr(k) => {
                r.enter_attr(self.g.attr_names[k]);
                self.open = true;
            }
            Ev::Elem(j, alt) => {
                r.enter(self.g.particles[j].names[alt as usize]);
                self.open = true;
            }
            Ev::Chars | Ev::End => {}
        }
        Ok(ev)
    }

    fn read(&mut self, r: &mut BitReader<'_>) -> Result<Ev, ExiError> {
        let g = self.g;
        if !self.started && self.k0 < g.attrs.len() {
            let first = if g.simple {
                1
            } else {
                content_first(g.particles, g.mixed)
            };
            let (ats, content) = attr_state(g.attrs[self.k0..].iter().copied(), first);
            let code = r.event(ats + content + 1)?;
            if code < ats {
                let k = self.k0 + code as usize;
                self.k0 = k + 1;
                return Ok(Ev::Attr(k));
            }
            if code < ats + content {
                self.started = true;
                return self.content(code - ats);
            }
            return Err(ExiError::Event {
                at: "start tag",
                code,
                of: ats + content + 1,
            });
        }
        if g.simple {
            if !self.chars_done {
                if !self.started {
                    self.started = true;
                    expect(r, "simple content", 2, 0)?;
                }
                self.chars_done = true;
                return Ok(Ev::Chars);
            }
            expect(r, "element end", 2, 0)?;
            return Ok(Ev::End);
        }
        self.started = true;
        let ps = g.particles;
        let of = if self.i >= ps.len() {
            2 + u32::from(g.mixed)
        } else {
            state_codes(ps, self.i, self.count, g.mixed).0 + 1
        };
        let code = r.event(of)?;
        self.content(code)
    }

    fn content(&mut self, code: u32) -> Result<Ev, ExiError> {
        let g = self.g;
        if g.simple {
            // the start tag's one content production is CH
            self.chars_done = true;
            return Ok(Ev::Chars);
        }
        let ps = g.particles;
        if self.i >= ps.len() {
            if code != 0 {
                return Err(ExiError::Event {
                    at: "element end",
                    code,
                    of: 2 + u32::from(g.mixed),
                });
            }
            return Ok(Ev::End);
        }
        let (n, ee) = state_codes(ps, self.i, self.count, g.mixed);
        if Some(code) == ee {
            return Ok(Ev::End);
        }
        let Some((j, alt)) = locate(ps, self.i, self.count, code).filter(|_| code < n) else {
            return Err(ExiError::Event {
                at: "element content",
                code,
                of: n + 1,
            });
        };
        if j != self.i {
            self.i = j;
            self.count = 0;
        }
        self.count += 1;
        if self.count >= ps[j].max {
            self.i += 1;
            self.count = 0;
        }
        Ok(Ev::Elem(j, alt))
    }

    /// The error for an event generated code does not accept (a wildcard,
    /// an abstract element, a type this crate does not code).
    pub fn unexpected(&self, ev: Ev) -> ExiError {
        ExiError::Value {
            what: "element",
            reason: format!("event {ev:?} is not coded (wildcard or abstract content)"),
        }
    }
}

/// Reads an event code and checks it.
pub fn expect(r: &mut BitReader<'_>, at: &'static str, of: u32, want: u32) -> Result<(), ExiError> {
    let code = r.event(of)?;
    if code != want {
        return Err(ExiError::Event { at, code, of });
    }
    Ok(())
}

/// A required field that did not come.
pub fn missing(name: &'static str) -> ExiError {
    ExiError::Value {
        what: "element",
        reason: format!("{name} is missing"),
    }
}

/// Occurrences of a repeated field (or of a choice's alternatives together)
/// within the schema's bounds.
pub fn check_count(n: usize, min: u32, max: u32, name: &'static str) -> Result<(), ExiError> {
    if (n as u64) < u64::from(min) || (n as u64) > u64::from(max) {
        return Err(ExiError::Value {
            what: "occurrences",
            reason: format!("{name} has {n} occurrences, {min}..{max}"),
        });
    }
    Ok(())
}

/// The bits of a bounded integer (range below 4096), else `None`.
pub fn int_range(min: i128, max: i128) -> Option<u32> {
    let range = max.checked_sub(min)?;
    (range < 4096).then(|| width(range as u32 + 1))
}

/// An integer value (n-bit when bounded, unsigned or signed otherwise).
pub fn enc_int(w: &mut BitWriter, n: i128, min: i128, max: i128) -> Result<(), ExiError> {
    if n < min || n > max {
        return Err(ExiError::Value {
            what: "integer",
            reason: format!("{n} outside {min}..={max}"),
        });
    }
    match int_range(min, max) {
        Some(bits) => w.bits(bits, (n - min) as u32),
        None if min >= 0 => w.unsigned(n as u64),
        None => {
            w.bits(1, u32::from(n < 0));
            w.unsigned(if n < 0 { (-(n + 1)) as u64 } else { n as u64 });
        }
    }
    Ok(())
}

/// Reads an integer value and checks its bounds. A lenient reader
/// ([`crate::lenient::Policy::integer_outside_facet`]) accepts a value
/// outside them that fits the Rust type generated code holds the range in
/// ([`int_type`]), with a warning.
pub fn dec_int(r: &mut BitReader<'_>, min: i128, max: i128) -> Result<i128, ExiError> {
    let bit = r.position();
    let n: i128 = match int_range(min, max) {
        Some(bits) => min + i128::from(r.bits(bits)?),
        None if min >= 0 => i128::from(r.unsigned()?),
        None => {
            let neg = r.bits(1)? == 1;
            let m = i128::from(r.unsigned()?);
            if neg {
                -(m + 1)
            } else {
                m
            }
        }
    };
    if n < min || n > max {
        let (_, lo, hi) = int_type(min, max);
        let kind = WarningKind::IntegerOutsideFacet { value: n, min, max };
        if !(lo <= n && n <= hi && r.accept(|p| p.integer_outside_facet, bit, kind)) {
            return Err(ExiError::IntegerOutsideFacet {
                value: n,
                min,
                max,
                bit,
            });
        }
    }
    Ok(n)
}

/// The Rust integer type generated code holds an XSD range in (the
/// smallest standard one), with its bounds.
pub fn int_type(min: i128, max: i128) -> (&'static str, i128, i128) {
    let candidates: [(&'static str, i128, i128); 8] = [
        ("u8", 0, u8::MAX.into()),
        ("u16", 0, u16::MAX.into()),
        ("u32", 0, u32::MAX.into()),
        ("u64", 0, u64::MAX.into()),
        ("i8", i8::MIN.into(), i8::MAX.into()),
        ("i16", i16::MIN.into(), i16::MAX.into()),
        ("i32", i32::MIN.into(), i32::MAX.into()),
        ("i64", i64::MIN.into(), i64::MAX.into()),
    ];
    candidates
        .into_iter()
        .find(|(_, lo, hi)| *lo <= min && max <= *hi)
        .unwrap_or(if min >= 0 {
            candidates[3]
        } else {
            candidates[7]
        })
}

/// An integer into its Rust type.
pub fn int_into<T: TryFrom<i128>>(n: i128) -> Result<T, ExiError> {
    T::try_from(n).map_err(|_| ExiError::Value {
        what: "integer",
        reason: format!("{n} does not fit its type"),
    })
}

/// A length (characters of a string, bytes of a binary) within the
/// `minLength`/`maxLength`/`length` facets.
pub fn check_len(
    n: usize,
    min: usize,
    max: Option<usize>,
    what: &'static str,
) -> Result<(), ExiError> {
    if n < min || max.is_some_and(|m| n > m) {
        let bound = match max {
            Some(m) if m == min => format!("exactly {m}"),
            Some(m) => format!("{min}..={m}"),
            None => format!("at least {min}"),
        };
        return Err(ExiError::Value {
            what,
            reason: format!("length {n}, {bound}"),
        });
    }
    Ok(())
}

/// A string value within its length facets.
pub fn enc_string(
    w: &mut BitWriter,
    s: &str,
    min: usize,
    max: Option<usize>,
) -> Result<(), ExiError> {
    check_len(s.chars().count(), min, max, "string")?;
    w.string(s);
    Ok(())
}

/// Reads a string value within its length facets (at most 2^20
/// characters when unbounded).
pub fn dec_string(
    r: &mut BitReader<'_>,
    min: usize,
    max: Option<usize>,
) -> Result<String, ExiError> {
    let s = r.string("string", max.unwrap_or(1 << 20))?;
    check_len(s.chars().count(), min, max, "string")?;
    Ok(s)
}

/// A string element's content (an empty string is EE at the second level).
pub fn string_elem(
    w: &mut BitWriter,
    s: &str,
    min: usize,
    max: Option<usize>,
) -> Result<(), ExiError> {
    check_len(s.chars().count(), min, max, "string")?;
    elem_value(w, s.is_empty(), |w| {
        w.string(s);
        Ok(())
    })
}

/// A binary element's content (no bytes is EE at the second level).
pub fn binary_elem(
    w: &mut BitWriter,
    b: &[u8],
    min: usize,
    max: Option<usize>,
) -> Result<(), ExiError> {
    check_len(b.len(), min, max, "binary")?;
    elem_value(w, b.is_empty(), |w| enc_binary(w, b, min, max))
}

/// Reads a boolean value (one bit).
pub fn dec_bool(r: &mut BitReader<'_>) -> Result<bool, ExiError> {
    Ok(r.bits(1)? == 1)
}

/// A binary value (length, then the bytes) within its length facets.
pub fn enc_binary(
    w: &mut BitWriter,
    b: &[u8],
    min: usize,
    max: Option<usize>,
) -> Result<(), ExiError> {
    check_len(b.len(), min, max, "binary")?;
    w.unsigned(b.len() as u64);
    for x in b {
        w.bits(8, u32::from(*x));
    }
    Ok(())
}

/// Reads a binary value within its length facets; the length is also
/// checked against what is left.
pub fn dec_binary(
    r: &mut BitReader<'_>,
    min: usize,
    max: Option<usize>,
) -> Result<Vec<u8>, ExiError> {
    let len = r.unsigned()?;
    check_len(
        usize::try_from(len).unwrap_or(usize::MAX),
        min,
        max,
        "binary",
    )?;
    if len.saturating_mul(8) > r.remaining() as u64 {
        return Err(ExiError::Truncated {
            needed: (len as usize)
                .saturating_mul(8)
                .saturating_sub(r.remaining()),
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    for _ in 0..len {
        bytes.push(r.bits(8)? as u8);
    }
    Ok(bytes)
}

/// An enumeration value (its index among `count` values).
pub fn enc_enum(w: &mut BitWriter, index: u32, count: u32) {
    w.bits(width(count), index);
}

/// Reads an enumeration index.
pub fn dec_enum(r: &mut BitReader<'_>, count: u32) -> Result<u32, ExiError> {
    let i = r.bits(width(count))?;
    if i >= count {
        return Err(ExiError::Value {
            what: "enumeration",
            reason: format!("index {i} of {count}"),
        });
    }
    Ok(i)
}

/// A simple-typed element's content: CH, the value, EE; an empty string
/// or binary is EE at the second level (as EXIficient writes it).
pub fn elem_value(
    w: &mut BitWriter,
    empty: bool,
    value: impl FnOnce(&mut BitWriter) -> Result<(), ExiError>,
) -> Result<(), ExiError> {
    if empty {
        w.event(1, 2);
        w.event(0, SECOND_LEVEL_START);
        return Ok(());
    }
    w.event(0, 2);
    value(w)?;
    w.event(0, 2);
    Ok(())
}

/// Reads a simple-typed element's content; `None` for an empty element
/// (allowed only when `may_be_empty`: strings and binaries). A value the
/// encoder wrote untyped (the non-strict profile's second-level
/// `CH [untyped]`, as EXIficient does for a value outside its facets) is
/// read from its lexical form.
pub fn dec_elem_value<T: Lexical>(
    r: &mut BitReader<'_>,
    may_be_empty: bool,
    value: impl FnOnce(&mut BitReader<'_>) -> Result<T, ExiError>,
) -> Result<Option<T>, ExiError> {
    dec_elem_value_with(r, may_be_empty, value, T::lexical)
}

/// [`dec_elem_value`] with the lexical parser given.
pub fn dec_elem_value_with<T>(
    r: &mut BitReader<'_>,
    may_be_empty: bool,
    value: impl FnOnce(&mut BitReader<'_>) -> Result<T, ExiError>,
    lexical: impl FnOnce(&str) -> Result<T, ExiError>,
) -> Result<Option<T>, ExiError> {
    if r.event(2)? == 1 {
        // second level: EE 0, AT(xsi:type) 1, AT(xsi:nil) 2, AT(*) 3,
        // AT(*) untyped 4, SE(*) 5, CH untyped 6
        return match r.event(SECOND_LEVEL_START)? {
            0 if may_be_empty => Ok(None),
            0 => Err(ExiError::Value {
                what: "element",
                reason: "empty content for a type that cannot be empty".into(),
            }),
            6 => {
                let s = r.string("untyped value", 1 << 20)?;
                // then the (no longer first) start tag: CH typed at the
                // first level, and EE 0, SE(*) 1, CH untyped 2 at the second
                // (as EXIficient writes it)
                expect(r, "element end", 2, 1)?;
                expect(r, "element end (second level)", 3, 0)?;
                lexical(&s).map(Some)
            }
            code => Err(ExiError::Event {
                at: "element content (second level)",
                code,
                of: SECOND_LEVEL_START,
            }),
        };
    }
    let v = value(r)?;
    expect(r, "element end", 2, 0)?;
    Ok(Some(v))
}

/// A simple value from its lexical (XML Schema) form: what an untyped
/// `CH` carries. Facets are not checked (the encoder wrote the value
/// untyped because it did not fit them); the Rust type's range is.
pub trait Lexical: Sized {
    /// Parses the lexical form.
    fn lexical(s: &str) -> Result<Self, ExiError>;
}

fn bad_lexical(s: &str, what: &'static str) -> ExiError {
    ExiError::Value {
        what,
        reason: format!("untyped value {s:?} is not one"),
    }
}

impl Lexical for String {
    fn lexical(s: &str) -> Result<Self, ExiError> {
        Ok(s.to_string())
    }
}

impl Lexical for bool {
    fn lexical(s: &str) -> Result<Self, ExiError> {
        match s.trim() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(bad_lexical(s, "boolean")),
        }
    }
}

macro_rules! lexical_int {
    ($($t:ty),*) => {$(
        impl Lexical for $t {
            fn lexical(s: &str) -> Result<Self, ExiError> {
                s.trim().trim_start_matches('+').parse().map_err(|_| bad_lexical(s, "integer"))
            }
        }
    )*};
}
lexical_int!(u8, u16, u32, u64, i8, i16, i32, i64);

impl Lexical for HexBinary {
    fn lexical(s: &str) -> Result<Self, ExiError> {
        serde_json::from_value(serde_json::Value::String(s.trim().into()))
            .map_err(|_| bad_lexical(s, "hexBinary"))
    }
}

impl Lexical for Base64Binary {
    fn lexical(s: &str) -> Result<Self, ExiError> {
        serde_json::from_value(serde_json::Value::String(s.trim().into()))
            .map_err(|_| bad_lexical(s, "base64Binary"))
    }
}

impl<E: ExiEnum> Lexical for E {
    fn lexical(s: &str) -> Result<Self, ExiError> {
        E::NAMES
            .iter()
            .position(|n| *n == s.trim())
            .and_then(|i| E::from_index(i as u32))
            .ok_or_else(|| bad_lexical(s, "enumeration value"))
    }
}

/// A generated complex type: its content after the SE event.
pub trait ExiType: Sized {
    /// Writes the content (attributes, children, EE).
    fn encode(&self, w: &mut BitWriter) -> Result<(), ExiError>;
    /// Reads the content.
    fn decode(r: &mut BitReader<'_>) -> Result<Self, ExiError>;
}

/// A generated enumeration.
pub trait ExiEnum: Sized {
    /// Number of values.
    const COUNT: u32;
    /// The values as the schema spells them, in schema order.
    const NAMES: &'static [&'static str];
    /// The value's index in schema order.
    fn index(&self) -> u32;
    /// The value at an index.
    fn from_index(i: u32) -> Option<Self>;
}

/// An enumeration value from its index.
pub fn enum_from<E: ExiEnum>(i: u32) -> Result<E, ExiError> {
    E::from_index(i).ok_or_else(|| ExiError::Value {
        what: "enumeration",
        reason: format!("index {i} of {}", E::COUNT),
    })
}

/// `hexBinary` bytes: upper-case hex in the JSON view.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HexBinary(pub Vec<u8>);

/// `base64Binary` bytes: Base64 text in the JSON view.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Base64Binary(pub Vec<u8>);

impl serde::Serialize for HexBinary {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use std::fmt::Write;
        let mut out = String::with_capacity(self.0.len() * 2);
        for b in &self.0 {
            let _ = write!(out, "{b:02X}");
        }
        s.serialize_str(&out)
    }
}

impl<'de> serde::Deserialize<'de> for HexBinary {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if !s.len().is_multiple_of(2) {
            return Err(serde::de::Error::custom("odd number of hex digits"));
        }
        (0..s.len())
            .step_by(2)
            .map(|i| {
                s.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| serde::de::Error::custom(format!("not hex: {s}")))
            })
            .collect::<Result<Vec<u8>, _>>()
            .map(HexBinary)
    }
}

impl serde::Serialize for Base64Binary {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> serde::Deserialize<'de> for Base64Binary {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine;
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(&s)
            .map(Base64Binary)
            .map_err(|_| serde::de::Error::custom(format!("not Base64: {s}")))
    }
}
