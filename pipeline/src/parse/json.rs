//! A validating, zero-copy, iterative JSON reader over UTF-8 text.
//!
//! It accepts exactly RFC 8259 JSON and never recurses: containers are tracked with a
//! bit stack, so a body of 13,000 nested arrays costs one pass and no stack. Nesting is
//! limited to [`MAX_DEPTH`] levels over the whole document. Strings and numbers are
//! returned as the text the client sent (a number is never converted, so `1e400` or a
//! 21-digit integer are as valid as `7`); a string's escapes are validated on the way
//! and decoded only when asked.
//!
//! A `\u` escape that names half of a UTF-16 surrogate pair without its other half is
//! grammatical JSON but no Unicode text: the reader marks such a string
//! ([`Escapes::Invalid`]) instead of failing, so the caller decides whether that is a
//! refused request or a rejected row, and [`JStr::decode`] refuses it rather than
//! inventing a character.

use std::borrow::Cow;

/// Deepest nesting of arrays and objects accepted anywhere in a document.
pub const MAX_DEPTH: usize = 128;

/// Why a document is not acceptable JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("malformed JSON at byte {at}: {what}")]
    Syntax { at: usize, what: &'static str },
    #[error("JSON nested deeper than {MAX_DEPTH} levels at byte {at}; at most {MAX_DEPTH} arrays and objects may be inside each other")]
    TooDeep { at: usize },
}

/// What the escapes of a string were.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escapes {
    /// No backslash: the raw text is the value.
    None,
    /// Valid escapes: [`JStr::decode`] builds the value.
    Valid,
    /// A lone UTF-16 surrogate (`"\ud800"`): no Unicode string has this value.
    Invalid,
}

/// A string as it appears between its quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JStr<'a> {
    /// The text between the quotes, escapes undecoded.
    pub raw: &'a str,
    pub escapes: Escapes,
}

impl<'a> JStr<'a> {
    /// The string's value, borrowed when it has no escapes; `None` when it holds a
    /// lone surrogate.
    pub fn decode(&self) -> Option<Cow<'a, str>> {
        match self.escapes {
            Escapes::None => Some(Cow::Borrowed(self.raw)),
            Escapes::Invalid => None,
            Escapes::Valid => Some(Cow::Owned(unescape(self.raw))),
        }
    }
}

/// Decodes the escapes of text [`Reader::string`] validated (no lone surrogates).
fn unescape(raw: &str) -> String {
    let b = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < b.len() {
        let Some(off) = memchr::memchr(b'\\', &b[i..]) else {
            out.push_str(&raw[i..]);
            break;
        };
        out.push_str(&raw[i..i + off]);
        i += off;
        let c = match b[i + 1] {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            _ => {
                let hi = hex4(&b[i + 2..i + 6]).unwrap_or(0xFFFD);
                if (0xD800..0xDC00).contains(&hi) {
                    let lo = hex4(&b[i + 8..i + 12]).unwrap_or(0xDC00);
                    i += 6;
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                        .unwrap_or('\u{FFFD}')
                } else {
                    char::from_u32(hi).unwrap_or('\u{FFFD}')
                }
            }
        };
        i += if b[i + 1] == b'u' { 6 } else { 2 };
        out.push(c);
    }
    out
}

fn hex4(b: &[u8]) -> Option<u32> {
    if b.len() < 4 {
        return None;
    }
    b[..4]
        .iter()
        .try_fold(0u32, |acc, &c| Some(acc * 16 + (c as char).to_digit(16)?))
}

/// A value read by [`Reader::value`]: scalars as sent, containers skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// The number's text, as sent.
    Number(&'a str),
    Str(JStr<'a>),
    Array,
    Object,
}

impl Value<'_> {
    /// The JSON type name, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::Str(_) => "a string",
            Value::Array => "an array",
            Value::Object => "an object",
        }
    }
}

/// What [`Reader::skip`] saw of the value it skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    /// Byte range of the value in the document.
    pub start: usize,
    pub end: usize,
    /// Nesting levels inside the value: 0 for a scalar, 1 for `{}` or `[1]`.
    pub depth: usize,
    /// Whether a string in it (a key or a value) holds a lone surrogate.
    pub invalid_escape: bool,
    /// Whether it has whitespace between tokens (so minifying changes it).
    pub whitespace: bool,
}

/// A cursor over a JSON document. Containers are entered with
/// [`Reader::begin_object`] / [`Reader::begin_array`] and walked with
/// [`Reader::next_key`] / [`Reader::next_element`]; anything else is read with
/// [`Reader::value`] or passed over with [`Reader::skip`].
pub struct Reader<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

#[inline(always)]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

impl<'a> Reader<'a> {
    pub fn new(text: &'a str) -> Self {
        Self {
            text,
            pos: 0,
            depth: 0,
        }
    }

    /// The byte offset of the cursor.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The document's text in `start..end` (offsets from [`Skipped`]).
    pub fn slice(&self, start: usize, end: usize) -> &'a str {
        &self.text[start..end]
    }

    #[inline(always)]
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn err(&self, what: &'static str) -> JsonError {
        JsonError::Syntax { at: self.pos, what }
    }

    /// Skips whitespace; returns whether there was any.
    #[inline(always)]
    fn ws(&mut self) -> bool {
        let b = self.bytes();
        let start = self.pos;
        while self.pos < b.len() && is_ws(b[self.pos]) {
            self.pos += 1;
        }
        self.pos != start
    }

    /// The next byte after whitespace, not consumed.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.bytes().get(self.pos).copied()
    }

    fn enter(&mut self) -> Result<(), JsonError> {
        if self.depth == MAX_DEPTH {
            return Err(JsonError::TooDeep { at: self.pos });
        }
        self.depth += 1;
        self.pos += 1;
        Ok(())
    }

    /// Enters an object: the next token must be `{`.
    pub fn begin_object(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'{') => self.enter(),
            _ => Err(self.err("expected an object")),
        }
    }

    /// Enters an array: the next token must be `[`.
    pub fn begin_array(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'[') => self.enter(),
            _ => Err(self.err("expected an array")),
        }
    }

    /// The next key of the object being walked (its value follows), or `None` at its
    /// end. `first` is true until the first call for this object returns.
    pub fn next_key(&mut self, first: &mut bool) -> Result<Option<JStr<'a>>, JsonError> {
        match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                self.depth -= 1;
                return Ok(None);
            }
            Some(b',') if !*first => {
                self.pos += 1;
                self.ws();
            }
            _ if *first => {}
            _ => return Err(self.err("expected , or } in an object")),
        }
        *first = false;
        if self.bytes().get(self.pos) != Some(&b'"') {
            return Err(self.err("expected a string key"));
        }
        let key = self.string()?;
        if self.peek() != Some(b':') {
            return Err(self.err("expected : after an object key"));
        }
        self.pos += 1;
        Ok(Some(key))
    }

    /// Whether the array being walked has another element (then read it next).
    /// `first` is true until the first call for this array returns.
    pub fn next_element(&mut self, first: &mut bool) -> Result<bool, JsonError> {
        match self.peek() {
            Some(b']') => {
                self.pos += 1;
                self.depth -= 1;
                Ok(false)
            }
            Some(b',') if !*first => {
                self.pos += 1;
                Ok(true)
            }
            _ if *first => {
                *first = false;
                Ok(true)
            }
            _ => Err(self.err("expected , or ] in an array")),
        }
    }

    /// Checks that nothing but whitespace follows the document.
    pub fn finish(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.err("unexpected text after the JSON value")),
        }
    }

    /// Reads a string; the cursor is at its opening quote.
    pub fn string(&mut self) -> Result<JStr<'a>, JsonError> {
        let b = self.bytes();
        let start = self.pos + 1;
        let mut i = start;
        let mut escapes = Escapes::None;
        loop {
            let Some(off) = memchr::memchr2(b'"', b'\\', &b[i..]) else {
                self.pos = b.len();
                return Err(self.err("unterminated string"));
            };
            if b[i..i + off].iter().any(|&c| c < 0x20) {
                self.pos = i + b[i..i + off].iter().position(|&c| c < 0x20).unwrap_or(0);
                return Err(self.err("control character in a string (escape it)"));
            }
            i += off;
            if b[i] == b'"' {
                self.pos = i + 1;
                return Ok(JStr {
                    raw: &self.text[start..i],
                    escapes,
                });
            }
            // A backslash.
            match b.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                    i += 2;
                    if escapes == Escapes::None {
                        escapes = Escapes::Valid;
                    }
                }
                Some(b'u') => {
                    let Some(cp) = b.get(i + 2..).and_then(hex4) else {
                        self.pos = i;
                        return Err(self.err("\\u must be followed by 4 hex digits"));
                    };
                    i += 6;
                    let lone = if (0xD800..0xDC00).contains(&cp) {
                        let low = (b.get(i) == Some(&b'\\') && b.get(i + 1) == Some(&b'u'))
                            .then(|| b.get(i + 2..).and_then(hex4))
                            .flatten()
                            .filter(|lo| (0xDC00..0xE000).contains(lo));
                        if low.is_some() {
                            i += 6;
                        }
                        low.is_none()
                    } else {
                        (0xDC00..0xE000).contains(&cp)
                    };
                    if lone {
                        escapes = Escapes::Invalid;
                    } else if escapes == Escapes::None {
                        escapes = Escapes::Valid;
                    }
                }
                _ => {
                    self.pos = i;
                    return Err(self.err("invalid escape in a string"));
                }
            }
        }
    }

    /// Reads a number's text; the cursor is at its first character.
    fn number(&mut self) -> Result<&'a str, JsonError> {
        let b = self.bytes();
        let start = self.pos;
        let mut i = start;
        let digits = |i: &mut usize| {
            let s = *i;
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            *i - s
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => {
                self.pos = i;
                return Err(self.err("invalid number"));
            }
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                self.pos = i;
                return Err(self.err("invalid number: digits must follow the decimal point"));
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                self.pos = i;
                return Err(self.err("invalid number: digits must follow the exponent"));
            }
        }
        self.pos = i;
        Ok(&self.text[start..i])
    }

    fn literal(&mut self, word: &'static str) -> Result<(), JsonError> {
        if self.bytes()[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.err("invalid literal (expected true, false or null)"))
        }
    }

    /// Reads the next value: a scalar as sent, or a container skipped over.
    pub fn value(&mut self) -> Result<Value<'a>, JsonError> {
        match self.peek() {
            Some(b'"') => self.string().map(Value::Str),
            Some(b'-' | b'0'..=b'9') => self.number().map(Value::Number),
            Some(b't') => self.literal("true").map(|()| Value::Bool(true)),
            Some(b'f') => self.literal("false").map(|()| Value::Bool(false)),
            Some(b'n') => self.literal("null").map(|()| Value::Null),
            Some(b'{') => self.skip().map(|_| Value::Object),
            Some(b'[') => self.skip().map(|_| Value::Array),
            Some(_) => Err(self.err("expected a JSON value")),
            None => Err(self.err("the document ends before the JSON does")),
        }
    }

    /// Passes over the next value, validating it, without recursion or allocation.
    pub fn skip(&mut self) -> Result<Skipped, JsonError> {
        self.ws();
        let start = self.pos;
        let base = self.depth;
        // Bit `k` of `objects` is set when the container at relative level `k + 1` is
        // an object. MAX_DEPTH fits: u128.
        let mut objects: u128 = 0;
        let mut level = 0usize;
        let mut seen = Skipped {
            start,
            end: start,
            depth: 0,
            invalid_escape: false,
            whitespace: false,
        };
        let b = self.bytes();
        'value: loop {
            // Expecting a value.
            seen.whitespace |= self.ws();
            match b.get(self.pos) {
                Some(&open @ (b'{' | b'[')) => {
                    self.enter()?;
                    let is_object = open == b'{';
                    if is_object {
                        objects |= 1 << level;
                    } else {
                        objects &= !(1 << level);
                    }
                    level += 1;
                    seen.depth = seen.depth.max(level);
                    seen.whitespace |= self.ws();
                    let close = if is_object { b'}' } else { b']' };
                    if b.get(self.pos) == Some(&close) {
                        self.pos += 1;
                        self.depth -= 1;
                        level -= 1;
                    } else {
                        if is_object {
                            self.key_in_skip(&mut seen)?;
                        }
                        continue 'value;
                    }
                }
                Some(b'"') => {
                    let s = self.string()?;
                    seen.invalid_escape |= s.escapes == Escapes::Invalid;
                }
                Some(b'-' | b'0'..=b'9') => {
                    self.number()?;
                }
                Some(b't') => self.literal("true")?,
                Some(b'f') => self.literal("false")?,
                Some(b'n') => self.literal("null")?,
                Some(_) => return Err(self.err("expected a JSON value")),
                None => return Err(self.err("the document ends before the JSON does")),
            }
            // After a value: close containers until one continues.
            loop {
                if level == 0 {
                    debug_assert_eq!(self.depth, base);
                    seen.end = self.pos;
                    return Ok(seen);
                }
                seen.whitespace |= self.ws();
                let in_object = objects & (1 << (level - 1)) != 0;
                match (b.get(self.pos), in_object) {
                    (Some(b','), _) => {
                        self.pos += 1;
                        if in_object {
                            seen.whitespace |= self.ws();
                            self.key_in_skip(&mut seen)?;
                        }
                        continue 'value;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        self.pos += 1;
                        self.depth -= 1;
                        level -= 1;
                    }
                    (_, true) => return Err(self.err("expected , or } in an object")),
                    (_, false) => return Err(self.err("expected , or ] in an array")),
                }
            }
        }
    }

    /// Inside [`Reader::skip`]: a key and its colon.
    fn key_in_skip(&mut self, seen: &mut Skipped) -> Result<(), JsonError> {
        if self.bytes().get(self.pos) != Some(&b'"') {
            return Err(self.err("expected a string key"));
        }
        let k = self.string()?;
        seen.invalid_escape |= k.escapes == Escapes::Invalid;
        seen.whitespace |= self.ws();
        if self.bytes().get(self.pos) != Some(&b':') {
            return Err(self.err("expected : after an object key"));
        }
        self.pos += 1;
        Ok(())
    }
}

/// `text` (valid JSON) without whitespace between tokens; strings untouched.
pub fn minify(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            // Copy the whole string, escapes included.
            let mut j = i + 1;
            loop {
                match memchr::memchr2(b'"', b'\\', &b[j..]) {
                    Some(off) if b[j + off] == b'\\' => j += off + 2,
                    Some(off) => {
                        j += off + 1;
                        break;
                    }
                    None => {
                        j = b.len();
                        break;
                    }
                }
            }
            out.push_str(&text[i..j]);
            i = j;
        } else {
            let run = b[i..]
                .iter()
                .position(|&c| c == b'"')
                .map_or(b.len(), |p| i + p);
            out.extend(
                text[i..run]
                    .chars()
                    .filter(|&c| !matches!(c, ' ' | '\n' | '\r' | '\t')),
            );
            i = run;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip_all(s: &str) -> Result<Skipped, JsonError> {
        let mut r = Reader::new(s);
        let sk = r.skip()?;
        r.finish()?;
        Ok(sk)
    }

    #[test]
    fn accepts_json_and_reports_what_it_skipped() {
        for ok in [
            "0",
            "-0.5e+10",
            "1e400",
            "123456789012345678901",
            "\"\"",
            "[]",
            "{}",
            " [1, {\"a\": [null, true, false]}] ",
            r#"{"a":{"b":{"c":"\u00e9\ud83d\ude00"}}}"#,
        ] {
            assert!(skip_all(ok).is_ok(), "{ok}");
        }
        let s = skip_all(r#"[[{"a":[1]}]]"#).unwrap();
        assert_eq!((s.depth, s.whitespace, s.invalid_escape), (4, false, false));
        assert!(skip_all("[1, 2]").unwrap().whitespace);
        assert!(skip_all(r#"["x\ud800"]"#).unwrap().invalid_escape);
        assert!(skip_all(r#"{"\udc00":1}"#).unwrap().invalid_escape);
        assert!(!skip_all(r#""\u0000""#).unwrap().invalid_escape);
    }

    #[test]
    fn refuses_what_is_not_json() {
        for bad in [
            "",
            "[",
            "]",
            "[1,]",
            "[,1]",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{1:2}",
            "01",
            "1.",
            ".5",
            "1e",
            "-",
            "+1",
            "tru",
            "nul",
            "\"abc",
            "\"a\\x\"",
            "\"\\u12\"",
            "\"a\u{1}b\"",
            "[1 2]",
            "{\"a\":1 \"b\":2}",
            "NaN",
            "[1]]",
            "{}}",
        ] {
            assert!(skip_all(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn nesting_is_limited_without_recursion() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(skip_all(&ok).unwrap().depth, MAX_DEPTH);
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(matches!(
            skip_all(&deep),
            Err(JsonError::TooDeep { at: 128 })
        ));
        // Far deeper than any stack would allow by recursion: one pass, an error.
        let huge = "[".repeat(1_000_000);
        assert!(matches!(skip_all(&huge), Err(JsonError::TooDeep { .. })));
        let objects = "{\"a\":".repeat(200_000);
        assert!(matches!(skip_all(&objects), Err(JsonError::TooDeep { .. })));
    }

    #[test]
    fn strings_decode_exactly_or_not_at_all() {
        let mut r = Reader::new(r#""plain""#);
        assert_eq!(r.string().unwrap().decode().as_deref(), Some("plain"));
        let mut r = Reader::new(r#""a\"b\\c\/\n\u00e9\ud83d\ude00""#);
        assert_eq!(
            r.string().unwrap().decode().as_deref(),
            Some("a\"b\\c/\né😀")
        );
        for lone in [
            r#""x\ud800""#,
            r#""x\udbff""#,
            r#""\udc00x""#,
            r#""\ud800\u0041""#,
        ] {
            let s = Reader::new(lone).string().unwrap();
            assert_eq!((s.escapes, s.decode()), (Escapes::Invalid, None), "{lone}");
        }
        let nul = Reader::new(r#""x\u0000""#).string().unwrap();
        assert_eq!(nul.decode().as_deref(), Some("x\0"));
    }

    /// JSON-ish text: serde_json's output of a random value, then random edits with
    /// characters that matter to JSON.
    fn jsonish() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(Into::into),
            any::<i64>().prop_map(Into::into),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Into::into),
            "[a-z\\\"\\u{0}-\\u{1f}é😀]{0,8}".prop_map(serde_json::Value::String),
        ];
        let value = leaf.prop_recursive(6, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[a-z]{0,3}", inner, 0..5)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        });
        let edit = (
            any::<prop::sample::Index>(),
            0..3u8,
            prop::sample::select(vec![
                "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "d800", "e", "-", ".", "0", " ",
                "\u{1}", "1e400", "tru", "null",
            ]),
        );
        (value, prop::collection::vec(edit, 0..3)).prop_map(|(v, edits)| {
            let mut s = serde_json::to_string(&v).unwrap();
            for (at, op, text) in edits {
                let mut i = at.index(s.len() + 1);
                while !s.is_char_boundary(i) {
                    i -= 1;
                }
                match op {
                    0 => s.insert_str(i, text),
                    1 => {
                        let end = (i + text.len()).min(s.len());
                        let end = (end..=s.len())
                            .find(|&e| s.is_char_boundary(e))
                            .unwrap_or(s.len());
                        s.replace_range(i..end, "");
                    }
                    _ => s.replace_range(i..i, text),
                }
            }
            s
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]
        /// The reader accepts exactly the documents serde_json accepts (both stop at
        /// 128 levels; neither judges lone surrogates in strings it only validates).
        #[test]
        fn accepts_what_serde_json_accepts(text in jsonish()) {
            let mut r = Reader::new(&text);
            let ours = r.skip().and_then(|_| r.finish());
            let theirs = serde_json::from_str::<serde::de::IgnoredAny>(&text);
            proptest::prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "{:?}: ours {:?}, serde_json {:?}", text, ours, theirs);
            if ours.is_ok() {
                // Minifying keeps it valid and changes nothing but whitespace.
                let min = minify(&text);
                proptest::prop_assert!(serde_json::from_str::<serde::de::IgnoredAny>(&min).is_ok());
                let no_ws: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                proptest::prop_assert!(min.len() <= text.len() && min.len() >= no_ws.len());
            }
        }
    }

    #[test]
    fn minify_keeps_strings_and_numbers_verbatim() {
        assert_eq!(
            minify(r#"{ "a b" : [ 1E2 , 0.1e-400, "x \" y" ] ,"c":{ } }"#),
            r#"{"a b":[1E2,0.1e-400,"x \" y"],"c":{}}"#
        );
        assert_eq!(minify(r#"{"k":"\\"}"#), r#"{"k":"\\"}"#);
    }
}
