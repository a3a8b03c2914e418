//! InfluxDB line protocol: encoding [`Point`]s and parsing text back into them.
//!
//! ```text
//! measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] [timestamp]
//! ```
//!
//! # Escaping, as InfluxDB's own (Go) parser reads it
//!
//! * measurement: `,` and space are escaped with a backslash;
//! * tag keys, tag values and field keys: `,`, `=` and space;
//! * string field values are double-quoted, with `"` and `\` escaped.
//!
//! InfluxDB does not unescape `\\` in names (it only collapses the three sequences
//! above), while InfluxData's Rust parser (`influxdb-line-protocol`) does. A name in
//! which a backslash comes right before another backslash, before a character that
//! must be escaped in that position, or at the very end therefore cannot be written
//! so that every server reads it back the same; [`encode`] refuses such names instead
//! of storing something else. Any other backslash (`C:\Users`) is written as is.
//! Line breaks, tabs and NUL cannot occur in names at all (InfluxDB's parsers treat
//! the last two as whitespace), nor can any other control character (`\x01`–`\x1f`,
//! DEL), which InfluxDB 2 refuses.
//!
//! The parser applies the same rules ([`validate`]) to every line it reads, so a body
//! it accepts is one every store accepts; and it applies [`Limits`] (fields and tags
//! per line, name and tag value lengths), so hostile input cannot cost more than
//! linear time and bounded memory per line.
//!
//! Floats are written in their shortest round-tripping form (`ryu`), so `encode` then
//! [`parse`] gives back the same bits; NaN and infinities are refused because InfluxDB
//! cannot store them. Integers carry the `i` suffix, unsigned integers `u`.
//!
//! # Why our own code and not the `influxdb-line-protocol` crate
//!
//! The crate (InfluxData, part of IOx) was evaluated: its parser is good but reports
//! errors without a line or column, does not apply a precision, borrows from the input
//! (every caller would convert its `ParsedLine` into a [`Point`] anyway), unescapes `\\`
//! in names differently from the InfluxDB servers we write to, and its builder does not
//! refuse NaN or names that cannot be represented. Writing the format once here, to
//! the Go server's rules, costs about 400 lines and is faster than the crate (see
//! `benches/lineproto.rs` and `docs/benchmarks.md`). The crate stays a dev-dependency:
//! the property tests check that it reads everything we write the same way we do.

use std::fmt;

use crate::model::{now_ns, FieldValue, Point};

/// Timestamp precision of a line protocol body, as in the `precision=` query
/// parameter of InfluxDB's write endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    S,
    Ms,
    Us,
    #[default]
    Ns,
}

impl Precision {
    /// Nanoseconds per unit.
    pub fn ns_per_unit(self) -> i64 {
        match self {
            Precision::S => 1_000_000_000,
            Precision::Ms => 1_000_000,
            Precision::Us => 1_000,
            Precision::Ns => 1,
        }
    }

    /// The query-parameter spelling: `s`, `ms`, `us`, `ns`.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::S => "s",
            Precision::Ms => "ms",
            Precision::Us => "us",
            Precision::Ns => "ns",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    /// Accepts InfluxDB's spellings, including v1's `u` and `n`, and `""` for ns.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "s" => Ok(Precision::S),
            "ms" => Ok(Precision::Ms),
            "us" | "u" | "µ" => Ok(Precision::Us),
            "ns" | "n" | "" => Ok(Precision::Ns),
            other => Err(format!("unknown precision `{other}` (use s, ms, us or ns)")),
        }
    }
}

/// Why a point cannot be written as line protocol.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("point has an empty measurement name")]
    EmptyMeasurement,
    #[error("point `{measurement}` has no fields; InfluxDB needs at least one")]
    NoFields { measurement: String },
    #[error("field `{field}` of `{measurement}` is {value}; InfluxDB cannot store NaN or infinities")]
    NonFinite { measurement: String, field: String, value: f64 },
    #[error("{what} {name:?} of `{measurement}` {reason}")]
    BadName { measurement: String, what: &'static str, name: String, reason: &'static str },
}

/// A line that is not valid line protocol. `line` and `column` are 1-based; the
/// column counts characters, not bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Per-line limits the parser enforces. InfluxDB has no per-line limits of its own
/// but a 64 KiB series key; these keep one line from costing unbounded time or memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fields in one line.
    pub max_fields_per_line: usize,
    /// Tags in one line.
    pub max_tags_per_line: usize,
    /// Bytes of a measurement name, tag key or field key.
    pub max_key_bytes: usize,
    /// Bytes of one tag value.
    pub max_tag_value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_fields_per_line: 1000, max_tags_per_line: 256, max_key_bytes: 256, max_tag_value_bytes: 1024 }
    }
}

const MEASUREMENT_SPECIAL: &[u8] = b", ";
const KEY_SPECIAL: &[u8] = b",= ";

/// Appends one line (ending in `\n`) for `point`, timestamp in nanoseconds. On error
/// nothing is appended.
pub fn encode(point: &Point, out: &mut String) -> Result<(), EncodeError> {
    let start = out.len();
    let result = encode_inner(point, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Encodes every point, one line each; the first point that cannot be encoded fails
/// the whole batch (so nothing is half-written).
pub fn encode_batch(points: &[Point]) -> Result<String, EncodeError> {
    let mut out = String::with_capacity(points.len() * 256);
    for p in points {
        encode_inner(p, &mut out)?;
    }
    Ok(out)
}

/// Checks that `point` can be written as line protocol, by the same rules as
/// [`encode`]; the embedded store uses it so that both stores accept the same points.
pub fn validate(p: &Point) -> Result<(), EncodeError> {
    if p.measurement.is_empty() {
        return Err(EncodeError::EmptyMeasurement);
    }
    if p.fields.is_empty() {
        return Err(EncodeError::NoFields { measurement: p.measurement.clone() });
    }
    let bad = |what: &'static str, name: &str, reason: &'static str| EncodeError::BadName {
        measurement: p.measurement.clone(),
        what,
        name: name.to_owned(),
        reason,
    };
    if p.measurement.starts_with('#') {
        return Err(bad("measurement", &p.measurement, "starts with `#`, which makes the line a comment"));
    }
    check_name(&p.measurement, MEASUREMENT_SPECIAL).map_err(|r| bad("measurement", &p.measurement, r))?;
    if !p.tags.windows(2).all(|w| w[0].0 < w[1].0) {
        for (i, (k, _)) in p.tags.iter().enumerate() {
            if p.tags[..i].iter().any(|(e, _)| e == k) {
                return Err(bad("tag key", k, "appears twice"));
            }
        }
    }
    for (k, v) in &p.tags {
        if k.is_empty() {
            return Err(bad("tag key", k, "is empty"));
        }
        if v.is_empty() {
            return Err(bad("value of tag", k, "is empty; leave the tag out instead"));
        }
        check_name(k, KEY_SPECIAL).map_err(|r| bad("tag key", k, r))?;
        check_name(v, KEY_SPECIAL).map_err(|r| bad("tag value", v, r))?;
    }
    for (k, v) in &p.fields {
        if k.is_empty() {
            return Err(bad("field key", k, "is empty"));
        }
        check_name(k, KEY_SPECIAL).map_err(|r| bad("field key", k, r))?;
        if let FieldValue::Float(f) = v {
            if !f.is_finite() {
                return Err(EncodeError::NonFinite { measurement: p.measurement.clone(), field: k.clone(), value: *f });
            }
        }
    }
    Ok(())
}

fn encode_inner(p: &Point, out: &mut String) -> Result<(), EncodeError> {
    validate(p)?;
    push_escaped(out, &p.measurement, MEASUREMENT_SPECIAL);
    for (k, v) in &p.tags {
        out.push(',');
        push_escaped(out, k, KEY_SPECIAL);
        out.push('=');
        push_escaped(out, v, KEY_SPECIAL);
    }
    let mut sep = ' ';
    for (k, v) in &p.fields {
        out.push(sep);
        sep = ',';
        push_escaped(out, k, KEY_SPECIAL);
        out.push('=');
        match v {
            FieldValue::Float(f) => out.push_str(ryu::Buffer::new().format_finite(*f)),
            FieldValue::Int(i) => {
                out.push_str(itoa::Buffer::new().format(*i));
                out.push('i');
            }
            FieldValue::UInt(u) => {
                out.push_str(itoa::Buffer::new().format(*u));
                out.push('u');
            }
            FieldValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            FieldValue::Str(s) => {
                out.push('"');
                push_string_field(out, s);
                out.push('"');
            }
        }
    }
    out.push(' ');
    out.push_str(itoa::Buffer::new().format(p.time_ns));
    out.push('\n');
    Ok(())
}

/// Refuses the names described in the module doc.
fn check_name(s: &str, special: &[u8]) -> Result<(), &'static str> {
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\n' | b'\r' => return Err("contains a line break, which line protocol cannot carry in names"),
            b'\t' | 0 => return Err("contains a tab or NUL, which InfluxDB's parsers treat as whitespace"),
            0x01..=0x1f | 0x7f => return Err("contains a control character, which InfluxDB 2 refuses in names"),
            b'\\' => {
                match bytes.get(i + 1) {
                    None => return Err("ends with a backslash, which InfluxDB would read as an escape"),
                    Some(n) if *n == b'\\' || special.contains(n) => return Err(
                        "has a backslash before a backslash or a separator, which InfluxDB servers read differently",
                    ),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Writes a name (already checked) with `special` bytes backslash-escaped.
fn push_escaped(out: &mut String, s: &str, special: &[u8]) {
    let mut last = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if special.contains(&b) {
            out.push_str(&s[last..i]);
            out.push('\\');
            last = i;
        }
    }
    out.push_str(&s[last..]);
}

fn push_string_field(out: &mut String, s: &str) {
    let mut last = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if b == b'"' || b == b'\\' {
            out.push_str(&s[last..i]);
            out.push('\\');
            last = i;
        }
    }
    out.push_str(&s[last..]);
}

/// Parses a body of line protocol. Lines without a timestamp get the current system
/// time, as an InfluxDB server would give them; use [`parse_with_default_time`] to
/// supply "now" from a [`crate::model::Clock`].
pub fn parse(text: &str, precision: Precision) -> Result<Vec<Point>, ParseError> {
    parse_with_default_time(text, precision, now_ns())
}

/// Parses a body of line protocol; a line without a timestamp gets `default_time_ns`.
/// Blank lines and `#` comment lines are skipped. The first invalid line fails the
/// whole body, so a caller can refuse a batch without writing part of it.
pub fn parse_with_default_time(
    text: &str,
    precision: Precision,
    default_time_ns: i64,
) -> Result<Vec<Point>, ParseError> {
    parse_limited(text, precision, default_time_ns, &Limits::default())
}

/// [`parse_with_default_time`] with explicit per-line [`Limits`] (the ingest's are
/// configurable).
pub fn parse_limited(
    text: &str,
    precision: Precision,
    default_time_ns: i64,
    limits: &Limits,
) -> Result<Vec<Point>, ParseError> {
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        precision,
        default_time_ns,
        tags_hint: 0,
        fields_hint: 1,
        limits: *limits,
    };
    let mut points = Vec::new();
    while let Some(p) = parser.next_point().map_err(|(pos, message)| error_at(text, pos, message))? {
        points.push(p);
    }
    Ok(points)
}

/// Splits a body into its lines without parsing them, keeping newlines inside
/// quoted string fields; blank lines are dropped. Writers use it to halve a batch the
/// server found too large (413). Follows the Go server's line scanner: a `"` opens a
/// string only in the field section, after an unescaped `=`.
pub fn split_lines(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut lines = Vec::new();
    let mut start = 0;
    let (mut in_fields, mut quoted, mut escaped) = (false, false, false);
    let (mut equals, mut commas) = (0usize, 0usize);
    for (i, &b) in bytes.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' => escaped = true,
            b' ' if !quoted => in_fields = true,
            b'=' if in_fields && !quoted => equals += 1,
            b',' if in_fields && !quoted => commas += 1,
            b'"' if in_fields && equals > commas => quoted = !quoted,
            b'\n' if !quoted => {
                let line = &text[start..i];
                if !line.trim().is_empty() {
                    lines.push(line);
                }
                start = i + 1;
                (in_fields, equals, commas) = (false, 0, 0);
            }
            _ => {}
        }
    }
    let line = &text[start..];
    if !line.trim().is_empty() {
        lines.push(line);
    }
    lines
}

fn error_at(text: &str, pos: usize, message: String) -> ParseError {
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    let before = &text[..pos];
    let line = 1 + before.bytes().filter(|b| *b == b'\n').count();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = 1 + text[line_start..pos].chars().count();
    ParseError { line, column, message }
}

type PResult<T> = Result<T, (usize, String)>;

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    precision: Precision,
    default_time_ns: i64,
    /// Tag and field counts of the previous line: lines of one body are alike, so
    /// they size the next line's vectors without regrowing.
    tags_hint: usize,
    fields_hint: usize,
    limits: Limits,
}

/// A cheap key for spotting a repeated field name: its length and first bytes.
fn fingerprint(s: &str) -> (usize, u64) {
    let b = s.as_bytes();
    let mut head = [0u8; 8];
    let n = b.len().min(8);
    head[..n].copy_from_slice(&b[..n]);
    (b.len(), u64::from_le_bytes(head))
}

/// What ends a name token, by position in the line.
#[derive(Clone, Copy, PartialEq)]
enum Token {
    Measurement,
    TagKey,
    TagValue,
    FieldKey,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn fail<T>(&self, pos: usize, msg: impl Into<String>) -> PResult<T> {
        Err((pos, msg.into()))
    }

    /// Skips blank lines and comments; `None` at the end of the text.
    fn next_point(&mut self) -> PResult<Option<Point>> {
        loop {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
                self.pos += 1;
            }
            match self.peek() {
                None => return Ok(None),
                Some(b'#') => {
                    while !matches!(self.peek(), None | Some(b'\n')) {
                        self.pos += 1;
                    }
                }
                Some(_) => {
                    let start = self.pos;
                    let point = self.line()?;
                    // What the stores refuse (a tab or `\\` in a name, a control
                    // character) is refused here too, naming the line.
                    validate(&point).map_err(|e| (start, e.to_string()))?;
                    return Ok(Some(point));
                }
            }
        }
    }

    fn line(&mut self) -> PResult<Point> {
        let measurement = self.name(Token::Measurement)?;
        let mut tags: Vec<(String, String)> = Vec::with_capacity(self.tags_hint);
        while self.peek() == Some(b',') {
            self.pos += 1;
            let key_pos = self.pos;
            let key = self.name(Token::TagKey)?;
            if self.peek() != Some(b'=') {
                return self.fail(self.pos, format!("expected `=` after tag key `{key}`"));
            }
            self.pos += 1;
            let value = self.name(Token::TagValue)?;
            if tags.len() >= self.limits.max_tags_per_line {
                return self.fail(key_pos, format!("more than {} tags in one line", self.limits.max_tags_per_line));
            }
            // Writers usually send tags sorted; check and insert in one step then.
            match tags.last() {
                Some((last, _)) if *last < key => tags.push((key, value)),
                _ => match tags.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
                    Ok(_) => return self.fail(key_pos, format!("duplicate tag key `{key}`")),
                    Err(i) => tags.insert(i, (key, value)),
                },
            }
        }
        if self.peek() != Some(b' ') {
            return self.fail(self.pos, "expected a space before the fields");
        }
        self.skip_spaces();
        let mut fields: Vec<(String, FieldValue)> = Vec::with_capacity(self.fields_hint);
        let mut prints = [(0usize, 0u64); 16];
        // Past 16 fields, a hash index keeps duplicate detection linear.
        let mut index: Option<std::collections::HashMap<String, usize>> = None;
        loop {
            let key_pos = self.pos;
            let key = self.name(Token::FieldKey)?;
            if self.peek() != Some(b'=') {
                return self.fail(self.pos, format!("expected `=` after field key `{key}`"));
            }
            self.pos += 1;
            let value = self.field_value(&key)?;
            // A repeated field keeps its first place and its last value, as in
            // InfluxDB; fingerprints keep the check cheap for the usual line.
            let print = fingerprint(&key);
            let n = fields.len();
            let earlier = if let Some(index) = &index {
                index.get(&key).copied()
            } else {
                (0..n).filter(|&i| prints[i] == print).find(|&i| fields[i].0 == key)
            };
            match earlier {
                Some(i) => fields[i].1 = value,
                None => {
                    if n >= self.limits.max_fields_per_line {
                        return self.fail(
                            key_pos,
                            format!("more than {} fields in one line", self.limits.max_fields_per_line),
                        );
                    }
                    if n < prints.len() {
                        prints[n] = print;
                    } else {
                        let index = index.get_or_insert_with(|| {
                            fields.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect()
                        });
                        index.insert(key.clone(), n);
                    }
                    fields.push((key, value));
                }
            }
            if self.peek() == Some(b',') {
                self.pos += 1;
            } else {
                break;
            }
        }
        let time_ns = match self.peek() {
            None | Some(b'\n') => self.default_time_ns,
            Some(b'\r') if matches!(self.bytes.get(self.pos + 1), None | Some(b'\n')) => {
                self.pos += 1;
                self.default_time_ns
            }
            Some(b' ') => {
                self.skip_spaces();
                if matches!(self.peek(), None | Some(b'\n' | b'\r')) {
                    self.default_time_ns
                } else {
                    let t = self.timestamp()?;
                    self.skip_spaces();
                    t
                }
            }
            Some(_) => return self.fail(self.pos, "expected `,`, a space or the end of the line after a field value"),
        };
        if self.peek() == Some(b'\r') {
            self.pos += 1;
        }
        match self.peek() {
            None => {}
            Some(b'\n') => self.pos += 1,
            Some(_) => return self.fail(self.pos, "unexpected text after the timestamp"),
        }
        self.tags_hint = tags.len();
        self.fields_hint = fields.len();
        Ok(Point { measurement, tags, fields, time_ns })
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// Reads a measurement, tag key/value or field key, unescaping the characters
    /// that InfluxDB unescapes there; other backslashes stay literal.
    fn name(&mut self, token: Token) -> PResult<String> {
        let start = self.pos;
        let mut escaped = false;
        loop {
            match self.peek() {
                None | Some(b'\n') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 1;
                    match self.peek() {
                        None | Some(b'\n') => return self.fail(self.pos - 1, "a name ends with a backslash"),
                        // Step over the whole escaped character, which may be multi-byte.
                        Some(_) => self.pos += utf8_len(self.bytes[self.pos]),
                    }
                }
                Some(b' ' | b',') => break,
                Some(b'=') if token != Token::Measurement => break,
                Some(_) => self.pos += 1,
            }
        }
        let raw = &self.text[start..self.pos];
        let (max, what) = match token {
            Token::TagValue => (self.limits.max_tag_value_bytes, "tag value"),
            Token::Measurement => (self.limits.max_key_bytes, "measurement name"),
            Token::TagKey => (self.limits.max_key_bytes, "tag key"),
            Token::FieldKey => (self.limits.max_key_bytes, "field key"),
        };
        if raw.len() > max {
            return self.fail(start, format!("{what} is {} bytes, more than the limit of {max}", raw.len()));
        }
        if raw.is_empty() {
            let what = match token {
                Token::Measurement => "missing measurement name",
                Token::TagKey => "missing tag key",
                Token::TagValue => "missing tag value",
                Token::FieldKey => "missing field key",
            };
            return self.fail(start, what);
        }
        if !escaped {
            return Ok(raw.to_owned());
        }
        let special: &[u8] = if token == Token::Measurement { MEASUREMENT_SPECIAL } else { KEY_SPECIAL };
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                let n = chars.next().expect("a backslash inside a name is always followed by a character");
                if !(n.is_ascii() && special.contains(&(n as u8))) {
                    out.push('\\');
                }
                out.push(n);
            } else {
                out.push(c);
            }
        }
        Ok(out)
    }

    fn field_value(&mut self, key: &str) -> PResult<FieldValue> {
        let start = self.pos;
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                let body_start = self.pos;
                let mut escaped = false;
                loop {
                    match self.peek() {
                        None => return self.fail(start, format!("unterminated string in field `{key}`")),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            escaped = true;
                            self.pos += 1;
                            if self.peek().is_some() {
                                self.pos += utf8_len(self.bytes[self.pos]);
                            }
                        }
                        Some(_) => self.pos += 1,
                    }
                }
                let raw = &self.text[body_start..self.pos];
                self.pos += 1;
                if !escaped {
                    return Ok(FieldValue::Str(raw.to_owned()));
                }
                let mut out = String::with_capacity(raw.len());
                let mut chars = raw.chars().peekable();
                while let Some(c) = chars.next() {
                    if c == '\\' && matches!(chars.peek(), Some('"' | '\\')) {
                        out.push(chars.next().expect("peeked"));
                    } else {
                        out.push(c);
                    }
                }
                Ok(FieldValue::Str(out))
            }
            None | Some(b' ' | b',' | b'\n' | b'\r') => self.fail(start, format!("missing value for field `{key}`")),
            Some(_) => {
                while !matches!(self.peek(), None | Some(b' ' | b',' | b'\n' | b'\r')) {
                    self.pos += 1;
                }
                let raw = &self.text[start..self.pos];
                parse_scalar(raw).map_err(|m| (start, format!("field `{key}`: {m}")))
            }
        }
    }

    fn timestamp(&mut self) -> PResult<i64> {
        let start = self.pos;
        while !matches!(self.peek(), None | Some(b' ' | b'\n' | b'\r')) {
            self.pos += 1;
        }
        let raw = &self.text[start..self.pos];
        let digits = raw.strip_prefix('-').unwrap_or(raw);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return self.fail(start, format!("invalid timestamp `{raw}`: expected an integer"));
        }
        let t: i64 = raw.parse().map_err(|_| (start, format!("timestamp `{raw}` is out of range")))?;
        t.checked_mul(self.precision.ns_per_unit()).ok_or_else(|| {
            (start, format!("timestamp `{raw}` in {} is out of range in nanoseconds", self.precision.as_str()))
        })
    }
}

fn utf8_len(first_byte: u8) -> usize {
    match first_byte {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// A number (`1.5`, `-2e10`, `3i`, `4u`) or a boolean (`t`, `true`, `F`, ...).
fn parse_scalar(raw: &str) -> Result<FieldValue, String> {
    let bytes = raw.as_bytes();
    if !matches!(bytes.first(), Some(b'0'..=b'9' | b'-' | b'.')) {
        return match raw {
            "t" | "T" | "true" | "True" | "TRUE" => Ok(FieldValue::Bool(true)),
            "f" | "F" | "false" | "False" | "FALSE" => Ok(FieldValue::Bool(false)),
            _ => Err(format!("invalid value `{raw}`: expected a number, `i`/`u` integer, \"string\" or boolean")),
        };
    }
    match bytes.last().copied().unwrap_or(b' ') {
        b'i' => {
            let body = &raw[..raw.len() - 1];
            let digits = body.strip_prefix('-').unwrap_or(body);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("invalid integer `{raw}`"));
            }
            body.parse().map(FieldValue::Int).map_err(|_| format!("integer `{raw}` is out of range"))
        }
        b'u' => {
            let body = &raw[..raw.len() - 1];
            if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("invalid unsigned integer `{raw}`"));
            }
            body.parse().map(FieldValue::UInt).map_err(|_| format!("unsigned integer `{raw}` is out of range"))
        }
        _ => {
            if !is_float_syntax(bytes) {
                return Err(format!(
                    "invalid value `{raw}`: expected a number, `i`/`u` integer, \"string\" or boolean"
                ));
            }
            let f: f64 = raw.parse().map_err(|_| format!("invalid float `{raw}`"))?;
            if f.is_finite() {
                Ok(FieldValue::Float(f))
            } else {
                Err(format!("float `{raw}` is out of range"))
            }
        }
    }
}

/// `-?(digits(.digits?)?|.digits)([eE][+-]?digits)?`: what InfluxDB accepts as a
/// float. Rust's own float parser also accepts `inf`, `NaN` and `+1`, which InfluxDB
/// does not.
fn is_float_syntax(b: &[u8]) -> bool {
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - frac_start;
    }
    if digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == b.len()
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
