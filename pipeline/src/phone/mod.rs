//! Phone normalization to E.164, exactly as libphonenumber does it, through
//! [`rlibphonenumber`] — with a fast path for canonical input that gives the
//! same answers without calling it.
//!
//! # Contract
//!
//! [`PhoneNormalizer::normalize`]`(raw)` is, by definition:
//!
//! 1. **Add the missing `+`** ([`international_form`]). Skip leading ASCII
//!    whitespace (space, `\t`, `\n`, `\r`, `\x0c`) to get `t`. If `t` starts
//!    with `+` or the fullwidth `＋`, parse `raw` as is; else if `t` starts with
//!    ASCII `00` (the international call prefix), parse `"+" + t[2..]`; else
//!    parse `"+" + t`. So `"0044 7700 900123"` → `"+44 7700 900123"`,
//!    `"(555) 123-4567"` → `"+(555) 123-4567"` (read as Brazil's `+55`: a
//!    national format means nothing without a region), and
//!    `"not-a-phone-4988"` → `"+not-a-phone-4988"`, which is refused.
//! 2. **Parse with no default region**, as libphonenumber's
//!    `parse(number, null)`, and accept iff `isPossibleNumber` holds
//!    (IS_POSSIBLE or IS_POSSIBLE_LOCAL_ONLY: the length of the national
//!    significant number is possible for the calling code's main region —
//!    possible, not "valid": `+15551234567` is accepted). Everything
//!    libphonenumber does while parsing applies: punctuation dropped, vanity
//!    letters converted (`+1 800 FLOWERS` → `+18003569377`), extensions
//!    dropped (`… ext. 89`), `(0)` and national prefixes stripped where the
//!    region's metadata says so, Unicode digits read.
//! 3. **Answer** the E.164 form (`+<code><national significant number>`,
//!    leading zeros of the national number kept) as a [`Phone`]. Any error is
//!    `None`, never a panic.
//!
//! Three places where rlibphonenumber alone would not give libphonenumber's
//! answer are handled here:
//!
//! * libphonenumber refuses input longer than 250 characters before parsing;
//!   rlibphonenumber has no such limit, so it is applied to the string of
//!   step 1, counted in Unicode scalar values as the Python port
//!   `phonenumbers` (our test oracle) counts them;
//! * rlibphonenumber builds the national significant number with at most 10
//!   leading zeros; libphonenumber keeps them all (`+700000000000006` is
//!   possible: 14 national digits). The number is built here, and its length
//!   looked up in the possible lengths (see the fast path);
//! * RFC 3966 input whose first `tel:` follows `;phone-context=` makes
//!   rlibphonenumber panic; the string is rewritten so that it reads what
//!   `phonenumbers` reads (the phone context alone).
//!
//! # Why rlibphonenumber
//!
//! The seed says phones are "parsed via libphonenumber", and the Python port
//! `phonenumbers` is the oracle (`tests/phone_oracle`). The `phonenumber`
//! crate, named in an earlier design card and used before, is a partial port
//! that diverges: `+7 800 555 35 35` lost its `8`, `not-a-phone-4988` was
//! accepted as `+4988`, `44016247890` became `+4416247890` (libphonenumber
//! keeps `+44016247890`), `+9-7150-1234-56-7` was refused. rlibphonenumber
//! (pinned `=2.2.15`, metadata 9.0.42, the same as `phonenumbers==9.0.42`)
//! is a faithful port: with the three adjustments above, over the oracle's
//! 120,000 generated inputs the two disagree nowhere.
//!
//! # Fast path, and why it is exact
//!
//! rlibphonenumber takes 1–3 µs a number; the fast path (`fast.rs`) answers
//! the input language `ws* ( "+" | "00" | ε ) [0-9 ()-.]*` (after the
//! rewrite of step 1: `+`, then ASCII digits and the separators
//! `' ' '-' '.' '(' ')'`) in tens of nanoseconds. For that language every step
//! of libphonenumber's `parseHelper` is decided by the digits alone (see
//! rlibphonenumber's `parse_helper`, which the steps below follow):
//!
//! * no `tel:`/`;phone-context=`/`;isub=`, no second number (`/`, `\`), no
//!   extension (every extension pattern needs a label character: a letter,
//!   `#`, `~`, `,` or `;`), fewer than three letters (so no vanity mapping);
//!   trailing separators are trimmed and the rest is a viable number iff it
//!   has at least three digits; normalizing keeps exactly the digits;
//! * the country code is the first 1–3 digits that are an assigned calling
//!   code (a leading `0`, or no such prefix, is refused: the retry without the
//!   `+` finds no code either), taken from rlibphonenumber's own list;
//! * the only digit-dependent step left is `maybeStripNationalPrefixAndCarrierCode`
//!   with the main region's `national_prefix_for_parsing`, which can change
//!   the national number `N` only if that pattern has a **non-empty** match at
//!   position 0 of `N` (an empty match strips nothing and transforms nothing).
//!   Each pattern (generated from rlibphonenumber's bundled metadata into
//!   `prefixes.rs`, checked against it by a test) is compiled at start-up into
//!   an anchored DFA that reports every match end; if any is past position 0,
//!   the number goes to rlibphonenumber. `+1 1…`, `+44 0…`, `+7 8…` go there,
//!   `+44 7700 900123` does not;
//! * then `N` is final: 2–17 digits, and possible iff its length is possible
//!   for the calling code — a bit set derived at start-up by asking
//!   rlibphonenumber's `is_possible_number` for every code and length (the
//!   check depends on nothing but the length).
//!
//! A property test (`pipeline/tests/phone.rs`) compares the fast path with
//! rlibphonenumber over millions of generated inputs covering every calling
//! code, every length and every national prefix.
//!
//! # Normalizing twice
//!
//! Normalizing an output again gives it back, except where libphonenumber
//! strips a second national prefix: `+49 000 30 1234567` → `+4900301234567`
//! (one `0` stripped) → `+490301234567` → `+49301234567`. We keep its answers.
//! Such an output is always one the fast path hands to rlibphonenumber (its
//! national number starts with a match of the prefix pattern): every output
//! the fast path answers normalizes to itself, which the property tests and
//! the fuzz target check.
//!
//! # Fallback
//!
//! Everything else goes to rlibphonenumber through a bounded, sharded,
//! direct-mapped cache keyed by the raw input (`cache.rs`), so repeated odd
//! inputs cost one lookup.
//!
//! `Phone(u64)` holds the E.164 digits: the longest possible number in the
//! metadata is 19 digits (`+62`/`+81` with 17 national digits), below
//! `u64::MAX`; a longer one would be refused (tested never to happen).

mod cache;
pub(crate) mod fast;
mod prefixes;

use std::borrow::Cow;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::str::FromStr;
use std::sync::Arc;

use cache::FallbackCache;
use fast::{Fast, Tables};
use rlibphonenumber::{PhoneNumber, PHONE_NUMBER_UTIL};

/// libphonenumber's `MAX_INPUT_STRING_LENGTH`: longer input is refused.
pub const MAX_INPUT_CHARS: usize = 250;

/// A normalized E.164 number, held as its digits (country code first) in a `u64`.
///
/// `Display` gives the E.164 string, `"+<digits>"`; [`FromStr`] reads exactly
/// that form back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Phone(pub u64);

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.0)
    }
}

/// Why a stored phone string is not the canonical `+<digits>` form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneParseError {
    /// No leading `+`.
    #[error("stored phone {0:?} does not start with '+'")]
    NoPlus(String),
    /// Nothing but ASCII digits may follow the `+`, and at least one must.
    #[error("stored phone {0:?} is not '+' followed by ASCII digits")]
    NotDigits(String),
    /// E.164 numbers never start with `0` (a calling code has no leading zero).
    #[error("stored phone {0:?} has a leading zero")]
    LeadingZero(String),
    /// More than 19 digits: no normalized number is that long.
    #[error("stored phone {0:?} has {1} digits, at most 19")]
    TooLong(String, usize),
}

impl FromStr for Phone {
    type Err = PhoneParseError;

    /// Parses the canonical stored form, `+` and 1–19 ASCII digits with no
    /// leading zero — what `Display` prints. For reading stored values back,
    /// not for user input (that is [`PhoneNormalizer::normalize`]).
    ///
    /// # Errors
    ///
    /// Any other string, with the value in the error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s
            .strip_prefix('+')
            .ok_or_else(|| PhoneParseError::NoPlus(s.to_owned()))?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PhoneParseError::NotDigits(s.to_owned()));
        }
        if digits.starts_with('0') {
            return Err(PhoneParseError::LeadingZero(s.to_owned()));
        }
        if digits.len() > 19 {
            return Err(PhoneParseError::TooLong(s.to_owned(), digits.len()));
        }
        // 19 digits always fit in a u64.
        Ok(Phone(
            digits
                .bytes()
                .fold(0u64, |v, b| v * 10 + u64::from(b - b'0')),
        ))
    }
}

impl Phone {
    /// The country calling code: the leading 1–3 digits that form an assigned
    /// code (codes are prefix-free). `None` if no prefix is an assigned code.
    ///
    /// Loads the metadata tables on first use if no [`PhoneNormalizer`] has
    /// been created yet.
    pub fn country_code(self) -> Option<u16> {
        let digits = self.0.to_string();
        fast::tables()
            .country(digits.as_bytes())
            .map(|(code, _)| code.code)
    }

    /// The national significant number as a digit string (leading zeros kept),
    /// or `None` if [`Phone::country_code`] is `None`.
    pub fn national_number(self) -> Option<String> {
        let digits = self.0.to_string();
        let (_, len) = fast::tables().country(digits.as_bytes())?;
        Some(digits[len..].to_owned())
    }
}

/// Normalizes raw phone strings to [`Phone`]s; cheap to clone (an `Arc`
/// inside) and shareable across threads.
///
/// See the [module docs](self) for the exact contract and why the fast path
/// agrees with rlibphonenumber.
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
            .field("calling_codes", &self.inner.tables.len())
            .field("cached", &self.inner.cache.len())
            .finish()
    }
}

impl PhoneNormalizer {
    /// Loads rlibphonenumber's metadata, builds the fast-path tables
    /// (process-wide, once; tens of milliseconds — call `new` at start-up, not
    /// on a request) and warms rlibphonenumber's lazily compiled per-region
    /// patterns. Each normalizer gets its own fallback cache, shared by its
    /// clones.
    pub fn new() -> Self {
        let tables = fast::tables();
        let mut warm = String::new();
        for code in tables.codes() {
            // Compiles the main region's national-prefix and general patterns.
            warm.clear();
            warm.push_str(&format!("+{code} 0123 456 789"));
            let _ = reference(&warm);
        }
        let _ = reference("tel:+1-800-FLOWERS;ext=89");
        PhoneNormalizer {
            inner: Arc::new(Inner {
                tables,
                cache: FallbackCache::new(),
            }),
        }
    }

    /// Normalizes `raw` to E.164, or `None` when libphonenumber would not
    /// accept it ("invalid phoneE164"); see the module docs for the contract.
    ///
    /// Canonical and lightly formatted input is answered by a lock-free scan;
    /// the rest by rlibphonenumber, through a bounded cache.
    #[inline]
    pub fn normalize(&self, raw: &str) -> Option<Phone> {
        match fast::classify(self.inner.tables, raw) {
            Fast::Accept(p) => Some(p),
            Fast::Reject => None,
            Fast::Fallback => self.fallback(raw),
        }
    }

    /// The fast path alone: `Some(answer)` when `raw` is decided without
    /// rlibphonenumber, `None` when [`normalize`](Self::normalize) would ask
    /// it. For tests and diagnostics.
    pub fn fast_path(&self, raw: &str) -> Option<Option<Phone>> {
        match fast::classify(self.inner.tables, raw) {
            Fast::Accept(p) => Some(Some(p)),
            Fast::Reject => Some(None),
            Fast::Fallback => None,
        }
    }

    /// The contract itself, uncached and without the fast path:
    /// [`international_form`], the 250-character limit, rlibphonenumber's
    /// `parse(s, None)`, the possible-length check (with the adjustments the
    /// module docs list). This is the definition [`normalize`](Self::normalize)
    /// must agree with.
    pub fn normalize_reference(&self, raw: &str) -> Option<Phone> {
        reference(raw)
    }

    #[cold]
    fn fallback(&self, raw: &str) -> Option<Phone> {
        if let Some(answer) = self.inner.cache.get(raw) {
            return answer;
        }
        let answer = reference(raw);
        self.inner.cache.insert(raw, answer);
        answer
    }
}

/// The ASCII whitespace skipped before looking for `+` or `00`.
#[inline]
pub(crate) fn is_leading_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

/// Step 1 of the contract: the string handed to libphonenumber. `raw` as is
/// when its first non-whitespace character is `+` or `＋`; otherwise `+`
/// replaces a leading `00`, or is put in front (leading ASCII whitespace
/// dropped).
pub fn international_form(raw: &str) -> Cow<'_, str> {
    let t = raw.trim_start_matches(|c: char| c.is_ascii() && is_leading_space(c as u8));
    if t.starts_with('+') || t.starts_with('\u{FF0B}') {
        return Cow::Borrowed(raw);
    }
    let rest = t.strip_prefix("00").unwrap_or(t);
    let mut s = String::with_capacity(rest.len() + 1);
    s.push('+');
    s.push_str(rest);
    Cow::Owned(s)
}

/// The contract, by rlibphonenumber.
fn reference(raw: &str) -> Option<Phone> {
    let s = international_form(raw);
    // Bytes ≥ chars, so the count is only needed for long input.
    if s.len() > MAX_INPUT_CHARS && s.chars().count() > MAX_INPUT_CHARS {
        return None;
    }
    let rewritten = tel_after_phone_context(&s);
    let s = rewritten.as_deref().unwrap_or(&s);
    let util = &*PHONE_NUMBER_UTIL;
    // Should rlibphonenumber panic on some other input, that input is refused
    // rather than taking the caller down.
    let number = catch_unwind(AssertUnwindSafe(|| util.parse(s, None).ok()))
        .ok()
        .flatten()?;
    // isPossibleNumber, by the length of the national significant number.
    let national = national_significant_number(&number);
    if !fast::tables().is_possible(number.country_code, national.len()) {
        return None;
    }
    e164(number.country_code, &national)
}

/// libphonenumber's `getNationalSignificantNumber`: the leading zeros, then
/// the national number. rlibphonenumber's own caps the zeros at 10 (so
/// `+700000000000006`, 13 zeros, would look 11 digits long and be refused),
/// libphonenumber has no cap.
fn national_significant_number(number: &PhoneNumber) -> String {
    let zeros = if number.italian_leading_zero() {
        usize::try_from(number.number_of_leading_zeros()).unwrap_or(0)
    } else {
        0
    };
    let mut s = "0".repeat(zeros);
    s.push_str(&number.national_number.to_string());
    s
}

const PHONE_CONTEXT: &str = ";phone-context=";

/// RFC 3966 input whose first `tel:` comes after `;phone-context=`:
/// rlibphonenumber panics there (it slices from after the `tel:` to the
/// `;phone-context=`), while libphonenumber's Python port (the oracle) takes
/// an empty slice, so its national number is the phone context alone (when it
/// starts with `+`). This returns `;phone-context=<context>`, which
/// rlibphonenumber reads exactly so (a valid context never holds `tel:`; an
/// invalid one is refused either way). `None` for all other input.
fn tel_after_phone_context(s: &str) -> Option<String> {
    let at = s.find(PHONE_CONTEXT)?;
    if s.find("tel:")? < at {
        return None;
    }
    let context = &s[at + PHONE_CONTEXT.len()..];
    let context = context.split(';').next().unwrap_or_default();
    Some(format!("{PHONE_CONTEXT}{context}"))
}

/// The E.164 digits of a parsed number; `None` if they do not fit a `u64`
/// (no possible number of the metadata comes close).
fn e164(country_code: i32, national: &str) -> Option<Phone> {
    let code = u64::try_from(country_code).ok()?;
    national
        .bytes()
        .try_fold(code, |v, b| {
            if !b.is_ascii_digit() {
                return None;
            }
            v.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        })
        .map(Phone)
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
        assert_eq!(Phone(15551234567).country_code(), Some(1));
        assert_eq!(Phone(447700900123).country_code(), Some(44));
        assert_eq!(Phone(3545551234).country_code(), Some(354));
        assert_eq!(
            Phone(390612345678).national_number().as_deref(),
            Some("0612345678")
        );
        assert_eq!(Phone(0).country_code(), None);
    }

    #[test]
    fn international_form_is_step_one() {
        assert_eq!(international_form("15551234567"), "+15551234567");
        assert_eq!(international_form("0044 7700 900123"), "+44 7700 900123");
        assert_eq!(international_form(" \t0044 7700"), "+44 7700");
        assert_eq!(international_form("  +44 7700"), "  +44 7700");
        assert_eq!(international_form("\u{FF0B}44 7700"), "\u{FF0B}44 7700");
        assert_eq!(international_form("(0044) 7700"), "+(0044) 7700");
        assert_eq!(international_form("tel:1-555"), "+tel:1-555");
        assert_eq!(international_form("not-a-phone-4988"), "+not-a-phone-4988");
        assert_eq!(international_form(""), "+");
        // Only ASCII whitespace is skipped.
        assert_eq!(international_form("\u{A0}+1 555"), "+\u{A0}+1 555");
    }

    #[test]
    fn every_leading_zero_counts() {
        let n = PhoneNormalizer::new();
        // 13 zeros: rlibphonenumber's own formatting would keep 10.
        assert_eq!(
            n.normalize("+700000000000006"),
            Some(Phone(700000000000006))
        );
        assert_eq!(
            n.normalize_reference("+700000000000006"),
            Some(Phone(700000000000006))
        );
        assert_eq!(
            n.normalize_reference("+7 (000) 000-000-00006"),
            Some(Phone(700000000000006))
        );
        assert_eq!(n.normalize_reference("+7000000000006"), None); // 12 digits
    }

    #[test]
    fn tel_after_the_phone_context_reads_the_context() {
        // As libphonenumber's Python port; rlibphonenumber alone panics here.
        let n = PhoneNormalizer::new();
        assert_eq!(
            n.normalize("+1;phone-context=+442079460958;tel:"),
            Some(Phone(442079460958))
        );
        assert_eq!(
            n.normalize("1 tel:;phone-context=+442079460958"),
            Some(Phone(442079460958))
        );
        assert_eq!(
            n.normalize("+;phone-context=+1;ext=\u{FF0B}/68623tel:1260"),
            None
        );
        assert_eq!(n.normalize("+;phone-context=;tel:"), None);
        assert_eq!(n.normalize("tel:+1-555-123-4567;phone-context=+1"), None);
        assert_eq!(n.normalize("+1-555-123-4567;phone-context=+1"), None);
        assert_eq!(tel_after_phone_context("tel:1;phone-context=+1"), None);
        assert_eq!(
            tel_after_phone_context("+1;phone-context=+44 20;tel:9"),
            Some(";phone-context=+44 20".into())
        );
    }

    #[test]
    fn input_over_250_chars_is_refused() {
        let n = PhoneNormalizer::new();
        let ok = format!("+15551234567{}", " ".repeat(MAX_INPUT_CHARS - 12));
        assert_eq!(ok.chars().count(), MAX_INPUT_CHARS);
        assert_eq!(n.normalize(&ok), Some(Phone(15551234567)));
        assert_eq!(n.normalize(&format!("{ok} ")), None);
        // Counted in chars, not bytes: 250 fullwidth spaces are 750 bytes.
        let wide = format!("+15551234567{}", "\u{3000}".repeat(MAX_INPUT_CHARS - 12));
        assert_eq!(n.normalize(&wide), Some(Phone(15551234567)));
    }

    #[test]
    fn stored_form_round_trips() {
        for p in [
            Phone(1),
            Phone(15551234567),
            Phone(9_999_999_999_999_999_999),
        ] {
            assert_eq!(p.to_string().parse::<Phone>(), Ok(p));
        }
        let bad = [
            ("15551234567", PhoneParseError::NoPlus("15551234567".into())),
            ("+", PhoneParseError::NotDigits("+".into())),
            ("", PhoneParseError::NoPlus(String::new())),
            ("+1 555", PhoneParseError::NotDigits("+1 555".into())),
            ("+1555x", PhoneParseError::NotDigits("+1555x".into())),
            ("++1555", PhoneParseError::NotDigits("++1555".into())),
            ("+0", PhoneParseError::LeadingZero("+0".into())),
            ("+044", PhoneParseError::LeadingZero("+044".into())),
            (
                "+12345678901234567890",
                PhoneParseError::TooLong("+12345678901234567890".into(), 20),
            ),
            ("+\u{FF11}", PhoneParseError::NotDigits("+\u{FF11}".into())),
        ];
        for (s, e) in bad {
            assert_eq!(s.parse::<Phone>(), Err(e), "{s:?}");
        }
        assert_eq!(
            "+0".parse::<Phone>().unwrap_err().to_string(),
            "stored phone \"+0\" has a leading zero"
        );
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
        let long = "9".repeat(cache::MAX_KEY_LEN + 1);
        c.insert(&long, None);
        assert_eq!(c.get(&long), None, "long keys are not cached");
    }
}
