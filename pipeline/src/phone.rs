//! Phone normalization to E.164, exactly as the `phonenumber` crate (our
//! libphonenumber reference) would do it, but fast.
//!
//! # Contract
//!
//! A raw string is accepted when the `phonenumber` crate parses it **with no
//! default region** (so it must be international) and the parsed number is a
//! **possible** number for its country calling code; the result is the
//! crate's E.164 form (`+<code><national significant number>`, leading zeros
//! of the national number kept, any extension dropped).
//!
//! ## Input without a `+`
//!
//! With no default region the crate rejects everything that does not carry
//! an international prefix, so input without a `+` is first rewritten to its
//! `+` form ([`international_form`]):
//!
//! * find the first character that can start a number for the crate
//!   (`+`, fullwidth `＋`, or a `\p{Nd}` decimal digit);
//! * if it is a plus sign, or there is none, the input is used unchanged;
//! * if it is an ASCII `0` immediately followed by another ASCII `0`, those
//!   two characters (the `00` international call prefix) are replaced by `+`
//!   — `"0044 7700 900123"` → `"+44 7700 900123"`;
//! * otherwise a `+` is inserted right before it —
//!   `"15551234567"` → `"+15551234567"`, `"(555) 123-4567"` →
//!   `"(+555) 123-4567"` (which is then read as Brazil's `+55`: national
//!   formats have no meaning without a region).
//!
//! The answer for any input is, by definition, the crate's answer for that
//! rewritten string.
//!
//! ## Possible-number check
//!
//! The crate has no public `is_possible_number`, and its metadata leaves the
//! general descriptor's `possibleLengths` empty (libphonenumber derives it at
//! build time). We therefore rebuild it from the crate's own metadata the way
//! libphonenumber's metadata builder does — the union of the `national` and
//! `localOnly` possible lengths of every type descriptor except
//! `noInternationalDialling` — for the **main region of the calling code**
//! (the first region the crate lists for it), and accept the number when the
//! length of its national significant number is in either set. That is
//! libphonenumber's `isPossibleNumber` (IS_POSSIBLE or IS_POSSIBLE_LOCAL_ONLY).
//! `+15551234567` is possible (10 digits for `+1`), though not "valid".
//!
//! # Fast path, and why it is exact
//!
//! [`PhoneNormalizer::normalize`] first tries a lock-free, allocation-free
//! scan that handles ASCII input made of digits and the separators
//! `' ' '-' '.' '(' ')'`, starting (after optional separators) with `+`,
//! `00` or a digit. For that input language the crate's `parse` reduces to a
//! few decisions, which the scan replicates:
//!
//! 1. **Which parser runs.** The crate tries its RFC 3966 parser first. For
//!    our alphabet it succeeds exactly when the (rewritten) string has no
//!    space, starts with `+`, a digit follows the `+`, and there is at least
//!    one of `- . ( )`; the country code is then the digits *before the first
//!    separator*, taken verbatim (`"+4420-7946-0958"` is rejected because
//!    `4420` is not a calling code, while `"+44 20 7946 0958"` is fine).
//!    Otherwise the natural-language parser runs and the code is the shortest
//!    of the first 1, 2, 3 digits that is an assigned code.
//! 2. **Viability.** Both parsers need at least three digits in the number
//!    part (for RFC 3966: after the code); a leading `0` where the natural
//!    parser looks for a code is rejected; an unknown code is rejected.
//! 3. **National-prefix handling.** After the code, `parse` may strip or
//!    transform the start of the national number `N`: via the region's
//!    `national_prefix_for_parsing` (only when that regex matches at position
//!    0 of `N`) and via the literal `national_prefix` (when `N` starts with
//!    it). If neither can apply, `N` is kept verbatim — no matter which region
//!    of a shared code the crate picks. At start-up every such pattern of
//!    every region is compiled into an anchored DFA and analysed for all
//!    lengths: for each calling code and national length we record which
//!    two-digit prefixes of `N` *could* let a pattern match at position 0
//!    (with some completion of `N`). The analysis is exact about lengths
//!    (patterns ending in `$`, e.g. the Caribbean `([2-9]\d{6})$|1`, only
//!    bite at one length) and conservative about digits beyond the first two.
//!    Only when that table flags a number are the same DFAs walked over the
//!    whole of `N` (still lock-free) to decide whether a pattern really
//!    matches at position 0 of this very number.
//!    Empty matches are ignored only where the crate provably leaves `N`
//!    unchanged on them (no transform rule, or a last capture group that
//!    cannot be empty, e.g. Argentina's `0?(?:(11|…)15)?`).
//!    So: `"+44 7700 900123"` and `"+54 11 2345 6789"` are answered directly,
//!    while `"+44 07911 123456"`, `"+54 11 15 2345 6789"`, `"+1 1…"`,
//!    `"+7 8…"` go to the fallback.
//! 4. **Final checks**, as in the crate: 2–17 national digits, not all zeros,
//!    value below 2^56 — then the possible-length check above.
//!
//! Anything outside that language (letters, `tel:` URIs, extensions, other
//! Unicode, a `+` that is not the start, a code with a leading zero in the
//! RFC 3966 form, ...) and every "dangerous" national prefix goes to the
//! fallback. The only inputs rejected without the crate outside the language
//! are those with fewer than three ASCII digits, which no path of the crate's
//! parser can accept.
//!
//! # Quirks inherited from the crate (kept on purpose: the crate is the spec)
//!
//! * The literal national prefix is stripped even when it is part of the
//!   number: `"+7 800 555 35 35"` (Russian toll-free) loses its `8` and is
//!   rejected; `"+49 000 30 1234567"` keeps one `0` (`+490301234567`), which
//!   a second normalization strips (`+49301234567`) — the only way
//!   normalizing twice can change a number.
//! * No region is chosen for numbers that match no region's patterns, so
//!   nothing is stripped: `"+44 07700 900123"` (the UK drama range) keeps its
//!   `0` and is rejected as 11 digits long, while `"+44 07911 123456"` is
//!   accepted as `+447911123456`.
//! * With dashes/dots/parentheses and no space, the country code is whatever
//!   precedes the first separator: `"+4420-7946-0958"` is rejected, and
//!   `"+0044-7700-900123"` is read as `+44…`.
//!
//! # Fallback
//!
//! The fallback runs the crate itself ([`international_form`] + `parse` +
//! the possible check). Its results are kept in a bounded, sharded,
//! direct-mapped cache keyed by the raw input, so repeated odd inputs do not
//! keep hitting the crate's single regex-cache mutex. A panic inside the crate
//! is caught and reported as a reject.

mod cache;
mod tables;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use cache::FallbackCache;
use tables::{prefix_index, Tables, MAX_NSN};

/// A normalized E.164 number, held as its digits (country code first) in a `u64`.
///
/// `Display` gives the E.164 string, `"+<digits>"`. Every possible number of
/// the crate's metadata fits (at most 19 digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Phone(pub u64);

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.0)
    }
}

impl Phone {
    /// The country calling code: the leading 1–3 digits that form an assigned
    /// code (codes are prefix-free). `None` if no prefix is an assigned code.
    ///
    /// Loads the metadata tables on first use if no [`PhoneNormalizer`] has
    /// been created yet.
    pub fn country_code(self) -> Option<u16> {
        let t = tables::get();
        let digits = num_digits(self.0);
        (1..=3usize)
            .filter(|&len| len < digits)
            .map(|len| self.0 / POW10[digits - len])
            .find(|&code| t.lookup(code as u32).is_some())
            .map(|code| code as u16)
    }

    /// The national significant number as a digit string (leading zeros kept),
    /// or `None` if [`Phone::country_code`] is `None`.
    pub fn national_number(self) -> Option<String> {
        let code = self.country_code()?;
        let s = self.0.to_string();
        Some(s[num_digits(code as u64)..].to_owned())
    }
}

/// Normalizes raw phone strings to [`Phone`]s; cheap to clone (an `Arc`
/// inside) and shareable across threads.
///
/// See the [module docs](self) for the exact contract and why the fast path
/// agrees with the `phonenumber` crate.
#[derive(Clone)]
pub struct PhoneNormalizer {
    inner: Arc<Inner>,
}

struct Inner {
    tables: &'static Tables,
    cache: FallbackCache,
}

impl Default for PhoneNormalizer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for PhoneNormalizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhoneNormalizer")
            .field("calling_codes", &self.inner.tables.codes.len())
            .field("cached", &self.inner.cache.len())
            .finish()
    }
}

/// What the fast path decided.
enum Fast {
    Accept(Phone),
    Reject,
    Fallback,
}

impl PhoneNormalizer {
    /// Loads the `phonenumber` metadata (the crate does this lazily, ~100 ms,
    /// on its first call — call `new` at start-up, not on a request), warms the
    /// crate's parser, and builds the fast-path tables from the metadata
    /// (process-wide, once). Each normalizer gets its own fallback cache,
    /// shared by its clones.
    pub fn new() -> Self {
        let tables = tables::get();
        // Initialise the crate's lazily compiled parsing regexes now.
        let _ = phonenumber::parse(None, "+44 20 7946 0958");
        let _ = phonenumber::parse(None, "tel:+1-555-123-4567;ext=89");
        PhoneNormalizer {
            inner: Arc::new(Inner {
                tables,
                cache: FallbackCache::new(),
            }),
        }
    }

    /// Normalizes `raw` to E.164, or `None` when the `phonenumber` crate would
    /// not parse it (input without `+` mapped as in [`international_form`]) or
    /// the number is not possible for its calling code ("invalid phoneE164").
    ///
    /// Canonical and lightly formatted input is answered by a lock-free scan;
    /// the rest by the crate, through a bounded cache.
    #[inline]
    pub fn normalize(&self, raw: &str) -> Option<Phone> {
        match fast(self.inner.tables, raw) {
            Fast::Accept(p) => Some(p),
            Fast::Reject => None,
            Fast::Fallback => self.fallback(raw),
        }
    }

    /// The fast path alone: `Some(answer)` when `raw` is decided without the
    /// crate, `None` when [`normalize`](Self::normalize) would consult the
    /// fallback. For tests and diagnostics.
    pub fn fast_path(&self, raw: &str) -> Option<Option<Phone>> {
        match fast(self.inner.tables, raw) {
            Fast::Accept(p) => Some(Some(p)),
            Fast::Reject => Some(None),
            Fast::Fallback => None,
        }
    }

    /// The slow path alone, uncached: the crate's `parse` of
    /// [`international_form`]`(raw)` plus the possible-number check. This is
    /// the definition [`normalize`](Self::normalize) must agree with.
    pub fn normalize_with_crate(&self, raw: &str) -> Option<Phone> {
        crate_normalize(self.inner.tables, raw)
    }

    #[cold]
    fn fallback(&self, raw: &str) -> Option<Phone> {
        if let Some(answer) = self.inner.cache.get(raw) {
            return answer;
        }
        let answer = crate_normalize(self.inner.tables, raw);
        self.inner.cache.insert(raw, answer);
        answer
    }
}

/// Rewrites input without a leading plus to the `+` form the crate parses
/// with no default region (see the module docs): `"00…"` → `"+…"`, otherwise
/// `+` inserted before the first digit. Input whose first number-starting
/// character is already a plus sign, or that has none, is returned unchanged.
pub fn international_form(raw: &str) -> Cow<'_, str> {
    international_form_with(tables::get(), raw)
}

fn international_form_with<'a>(t: &Tables, raw: &'a str) -> Cow<'a, str> {
    for (i, ch) in raw.char_indices() {
        if ch == '+' || ch == '\u{FF0B}' {
            return Cow::Borrowed(raw);
        }
        if t.is_decimal_digit(ch) {
            let rest = if raw[i..].starts_with("00") {
                &raw[i + 2..]
            } else {
                &raw[i..]
            };
            let mut s = String::with_capacity(raw.len() + 1);
            s.push_str(&raw[..i]);
            s.push('+');
            s.push_str(rest);
            return Cow::Owned(s);
        }
    }
    Cow::Borrowed(raw)
}

/// The reference: crate parse (no region) of the `+` form + possible check.
fn crate_normalize(t: &Tables, raw: &str) -> Option<Phone> {
    let mapped = international_form_with(t, raw);
    let parsed = std::panic::catch_unwind(|| phonenumber::parse(None, mapped.as_ref()))
        .ok()?
        .ok()?;
    let code = parsed.code().value();
    let info = &t.codes[t.lookup(code as u32)?];
    let national = parsed.national();
    let value = national.value();
    let len = national.zeros() as usize + if value == 0 { 0 } else { num_digits(value) };
    if len > MAX_NSN || info.possible & (1 << len) == 0 {
        return None;
    }
    (code as u64)
        .checked_mul(POW10[len])
        .and_then(|c| c.checked_add(value))
        .map(Phone)
}

const POW10: [u64; 20] = {
    let mut p = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        p[i] = p[i - 1] * 10;
        i += 1;
    }
    p
};

fn num_digits(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 10 {
        v /= 10;
        n += 1;
    }
    n
}

#[inline(always)]
fn is_separator(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.' | b'(' | b')')
}

/// Inputs longer than this skip the fast path (they are not phone numbers
/// anyone formats by hand; the fallback still answers them exactly).
const MAX_FAST_LEN: usize = 64;
/// Digits kept by the scan: enough for a 3-digit code and 17+ national digits.
const DIGIT_BUF: usize = 24;

/// Outside the fast language: reject only when no parser path of the crate
/// could accept (fewer than 3 ASCII digits), otherwise ask the crate.
#[cold]
fn outside_language(bytes: &[u8]) -> Fast {
    if bytes.iter().filter(|b| b.is_ascii_digit()).take(3).count() < 3 {
        Fast::Reject
    } else {
        Fast::Fallback
    }
}

/// The fast path; see the module docs for the argument that each early
/// answer is the crate's answer.
#[inline]
fn fast(t: &Tables, raw: &str) -> Fast {
    let b = raw.as_bytes();
    let n = b.len();
    if n == 0 {
        return Fast::Reject;
    }
    if n > MAX_FAST_LEN {
        return outside_language(b);
    }

    // Leading separators (the crate's extraction skips them; they also rule
    // out the RFC 3966 parser, which would stop at the `+`).
    let mut i = 0;
    let mut has_space = false;
    while i < n && is_separator(b[i]) {
        has_space |= b[i] == b' ';
        i += 1;
    }
    if i == n {
        return Fast::Reject; // no digits at all
    }
    let no_leading_separators = i == 0;
    match b[i] {
        b'+' => i += 1,
        // "00" international prefix: rewritten to "+".
        b'0' if i + 1 < n && b[i + 1] == b'0' => i += 2,
        // A "+" is inserted before the first digit.
        b'0'..=b'9' => {}
        _ => return outside_language(b),
    }

    let mut digits = [0u8; DIGIT_BUF];
    let mut nd = 0usize;
    // Number of digits before the first separator after the start.
    let mut before_first_sep: Option<usize> = None;
    for &c in &b[i..] {
        if c.is_ascii_digit() {
            if nd < DIGIT_BUF {
                digits[nd] = c - b'0';
            }
            nd += 1;
        } else if is_separator(c) {
            has_space |= c == b' ';
            if before_first_sep.is_none() {
                before_first_sep = Some(nd);
            }
        } else {
            return outside_language(b);
        }
    }

    // 1. Parser selection and country code.
    let rfc3966 =
        !has_space && no_leading_separators && matches!(before_first_sep, Some(p) if p > 0);
    let (code_index, cc_len) = if rfc3966 {
        let p = before_first_sep.unwrap_or(0);
        if nd - p < 3 {
            return Fast::Reject; // national part not viable
        }
        if digits[0] == 0 {
            return Fast::Fallback; // "+0044-…": the crate reads 44
        }
        if p > 3 {
            return Fast::Reject; // ≥ 1000: never a calling code
        }
        let code = digits[..p].iter().fold(0u32, |a, &d| a * 10 + d as u32);
        match t.lookup(code) {
            Some(ci) => (ci, p),
            None => return Fast::Reject,
        }
    } else {
        if nd < 3 || digits[0] == 0 {
            return Fast::Reject;
        }
        let d = |k: usize| digits[k] as u32;
        if let Some(ci) = t.lookup(d(0)) {
            (ci, 1)
        } else if let Some(ci) = t.lookup(d(0) * 10 + d(1)) {
            (ci, 2)
        } else if let Some(ci) = t.lookup(d(0) * 100 + d(1) * 10 + d(2)) {
            (ci, 3)
        } else {
            return Fast::Reject;
        }
    };

    // 3. National-prefix handling would not touch N?
    let info = &t.codes[code_index];
    let len = nd - cc_len;
    let idx = prefix_index(len, digits[cc_len], digits[cc_len + 1]);
    if t.dangerous(info, len, idx) {
        // The two-digit table is conservative; check this exact number
        // (whole national number needed, so only when it was buffered).
        if nd > DIGIT_BUF || t.rewrites(info, &digits[cc_len..nd]) {
            return Fast::Fallback;
        }
    }

    // 4. Final checks on N as is.
    if !(2..=MAX_NSN).contains(&len) {
        return Fast::Reject;
    }
    let value = digits[cc_len..nd]
        .iter()
        .fold(0u64, |a, &d| a * 10 + d as u64);
    if value == 0 || value >= 1 << 56 {
        return Fast::Reject;
    }
    if info.possible & (1 << len) == 0 {
        return Fast::Reject;
    }
    match (info.code as u64)
        .checked_mul(POW10[len])
        .and_then(|c| c.checked_add(value))
    {
        Some(v) => Fast::Accept(Phone(v)),
        None => Fast::Fallback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_take_the_fast_path() {
        let n = PhoneNormalizer::new();
        assert_eq!(n.fast_path("+15551234567"), Some(Some(Phone(15551234567))));
        assert_eq!(
            n.fast_path("+447700900123"),
            Some(Some(Phone(447700900123)))
        );
        assert_eq!(Phone(447700900123).to_string(), "+447700900123");
    }

    #[test]
    fn country_code_helper() {
        let _ = PhoneNormalizer::new();
        assert_eq!(Phone(15551234567).country_code(), Some(1));
        assert_eq!(Phone(447700900123).country_code(), Some(44));
        assert_eq!(Phone(3545551234).country_code(), Some(354));
        assert_eq!(
            Phone(390612345678).national_number().as_deref(),
            Some("0612345678")
        );
    }

    #[test]
    fn mapping() {
        assert_eq!(international_form("15551234567"), "+15551234567");
        assert_eq!(international_form("0044 7700 900123"), "+44 7700 900123");
        assert_eq!(international_form("(0044) 7700"), "(+44) 7700");
        assert_eq!(international_form("+44 7700"), "+44 7700");
        assert_eq!(international_form("tel:1-555"), "tel:+1-555");
        assert_eq!(international_form("abc"), "abc");
    }

    #[test]
    fn cache_is_bounded() {
        let c = FallbackCache::new();
        for i in 0..(FallbackCache::capacity() * 2) {
            c.insert(&format!("key {i}"), Some(Phone(i as u64)));
        }
        assert!(c.len() <= FallbackCache::capacity());
        let last = FallbackCache::capacity() * 2 - 1;
        assert_eq!(
            c.get(&format!("key {last}")),
            Some(Some(Phone(last as u64)))
        );
        assert_eq!(c.get("never inserted"), None);
        c.insert("rejected", None);
        assert_eq!(c.get("rejected"), Some(None));
    }
}
