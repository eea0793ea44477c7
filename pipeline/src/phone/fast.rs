//! The fast path: canonical and lightly formatted input answered without
//! rlibphonenumber, from tables derived from it once per process.
//!
//! The [module docs](super) give the argument that every answer here is
//! rlibphonenumber's. In short: for `+` followed by ASCII digits and
//! `' ' '-' '.' '(' ')'`, libphonenumber's parse is the calling code, then the
//! national number `N` untouched unless the main region's
//! `national_prefix_for_parsing` has a non-empty match at the start of `N`
//! (then we fall back), then a length check.

use std::sync::OnceLock;

use regex_automata::dfa::{dense, Automaton, OverlappingState, StartKind};
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind};
use rlibphonenumber::{PhoneNumber, PHONE_NUMBER_UTIL};

use super::{is_leading_space, prefixes, Phone};

/// libphonenumber's `MAX_LENGTH_FOR_NSN`.
pub(crate) const MAX_NSN: usize = 17;
/// libphonenumber's `MIN_LENGTH_FOR_NSN`.
const MIN_NSN: usize = 2;
/// Longer input goes to the fallback (nobody formats a phone that long by
/// hand; it also keeps the digit buffer on the stack).
pub(crate) const MAX_FAST_LEN: usize = 64;

/// What the fast path decided.
pub(crate) enum Fast {
    Accept(Phone),
    Reject,
    Fallback,
}

/// One calling code.
pub(crate) struct Code {
    pub(crate) code: u16,
    /// Bit `L` set iff a national significant number of `L` digits is
    /// possible (`is_possible_number`) for this code.
    possible: u32,
    prefix: Prefix,
}

/// The main region's `national_prefix_for_parsing`, as far as the fast path
/// needs it.
enum Prefix {
    /// No pattern (or an empty one): the national number is never changed.
    None,
    /// Anchored DFA of the pattern, reporting every match end.
    Dfa(Box<dense::DFA<Vec<u32>>>),
    /// Not known or not compilable here: always ask rlibphonenumber.
    Unknown,
}

pub(crate) struct Tables {
    /// Calling code (0..1000) → index into `codes` + 1, or 0.
    index: Box<[u16; 1000]>,
    codes: Vec<Code>,
}

/// The process-wide tables (built on first use, from rlibphonenumber).
pub(crate) fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(Tables::build)
}

impl Tables {
    fn build() -> Tables {
        let util = &*PHONE_NUMBER_UTIL;
        let mut index = Box::new([0u16; 1000]);
        let mut codes = Vec::new();
        let mut supported: Vec<i32> = util.get_supported_calling_codes().collect();
        supported.sort_unstable();
        for cc in supported {
            let Ok(code) = u16::try_from(cc) else {
                continue;
            };
            if code == 0 || code >= 1000 {
                continue;
            }
            // isPossibleNumber depends on the length of the national
            // significant number only; ask for each length.
            let possible = (1..=MAX_NSN).fold(0u32, |mask, len| {
                let number = PhoneNumber {
                    country_code: cc,
                    national_number: 10u64.pow(len as u32 - 1),
                    ..Default::default()
                };
                if util.is_possible_number(&number) {
                    mask | (1 << len)
                } else {
                    mask
                }
            });
            let region = util
                .get_region_for_country_code(cc)
                .map(|r| r.as_region_str().to_string());
            let prefix = match prefixes::PREFIXES.binary_search_by_key(&code, |p| p.0) {
                // Only when the table names the region rlibphonenumber uses.
                Ok(i) if region.as_deref() == Some(prefixes::PREFIXES[i].1) => {
                    Prefix::compile(prefixes::PREFIXES[i].2)
                }
                _ => Prefix::Unknown,
            };
            codes.push(Code {
                code,
                possible,
                prefix,
            });
            index[code as usize] = codes.len() as u16;
        }
        Tables { index, codes }
    }

    /// Number of calling codes.
    pub(crate) fn len(&self) -> usize {
        self.codes.len()
    }

    /// All calling codes, ascending.
    pub(crate) fn codes(&self) -> impl Iterator<Item = u16> + '_ {
        self.codes.iter().map(|c| c.code)
    }

    /// libphonenumber's `extractCountryCode` on ASCII digits: the first 1–3
    /// digits that are a calling code, and how many digits that is. `None`
    /// for a leading `0` or no such prefix.
    #[inline]
    pub(crate) fn country(&self, digits: &[u8]) -> Option<(&Code, usize)> {
        if digits.first() == Some(&b'0') {
            return None;
        }
        let mut code = 0usize;
        for (len, &d) in digits.iter().take(3).enumerate() {
            code = code * 10 + usize::from(d - b'0');
            let i = self.index[code];
            if i != 0 {
                return Some((&self.codes[usize::from(i) - 1], len + 1));
            }
        }
        None
    }

    /// libphonenumber's `isPossibleNumber` for a national significant number
    /// of `len` digits under calling code `code`.
    pub(crate) fn is_possible(&self, code: i32, len: usize) -> bool {
        let Some(&i) = usize::try_from(code).ok().and_then(|c| self.index.get(c)) else {
            return false;
        };
        i != 0 && len <= MAX_NSN && self.codes[usize::from(i) - 1].possible & (1 << len) != 0
    }
}

impl Prefix {
    fn compile(pattern: &str) -> Prefix {
        if pattern.is_empty() {
            return Prefix::None;
        }
        // The string rlibphonenumber compiles (`anchor_start`). ASCII mode:
        // the haystack is ASCII digits, on which `\d` and friends mean the same
        // with or without Unicode, and the DFA stays small.
        let regex = format!("^(?:{pattern})");
        dense::Builder::new()
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .configure(
                dense::Config::new()
                    .match_kind(MatchKind::All)
                    .start_kind(StartKind::Anchored),
            )
            .build(&regex)
            .map_or(Prefix::Unknown, |dfa| Prefix::Dfa(Box::new(dfa)))
    }

    /// Could `maybeStripNationalPrefixAndCarrierCode` change `national`?
    /// Only through a non-empty match of the pattern at position 0.
    /// Errs on the side of `true`.
    #[inline]
    fn may_change(&self, national: &[u8]) -> bool {
        match self {
            Prefix::None => false,
            Prefix::Unknown => true,
            Prefix::Dfa(dfa) => {
                let input = Input::new(national).anchored(Anchored::Yes);
                let mut state = OverlappingState::start();
                loop {
                    if dfa.try_search_overlapping_fwd(&input, &mut state).is_err() {
                        return true;
                    }
                    match state.get_match() {
                        None => return false,
                        Some(m) if m.offset() > 0 => return true,
                        Some(_) => {}
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn is_separator(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.' | b'(' | b')')
}

/// The fast path. `Fallback` for anything it cannot prove.
#[inline]
pub(crate) fn classify(t: &Tables, raw: &str) -> Fast {
    let b = raw.as_bytes();
    if b.len() > MAX_FAST_LEN {
        return Fast::Fallback;
    }
    // Step 1 of the contract: the part after the `+` of the parsed string.
    let start = b
        .iter()
        .position(|&c| !is_leading_space(c))
        .unwrap_or(b.len());
    let s = match &b[start..] {
        [b'+', rest @ ..] => rest,
        [b'0', b'0', rest @ ..] => rest,
        rest => rest,
    };
    let mut digits = [0u8; MAX_FAST_LEN];
    let mut nd = 0;
    for &c in s {
        if c.is_ascii_digit() {
            digits[nd] = c;
            nd += 1;
        } else if !is_separator(c) {
            return Fast::Fallback;
        }
    }
    let digits = &digits[..nd];
    // Not viable (under 3 digits), TOO_SHORT_AFTER_IDD (under 3 after the
    // `+`), or INVALID_COUNTRY_CODE.
    if nd < 3 {
        return Fast::Reject;
    }
    let Some((code, cc_len)) = t.country(digits) else {
        return Fast::Reject;
    };
    let national = &digits[cc_len..];
    if national.len() < MIN_NSN {
        return Fast::Reject; // TOO_SHORT_NSN, before any prefix stripping
    }
    if code.prefix.may_change(national) {
        return Fast::Fallback;
    }
    let len = national.len();
    if len > MAX_NSN || code.possible & (1 << len) == 0 {
        return Fast::Reject; // TOO_LONG_NSN, or not a possible length
    }
    let value = digits.iter().try_fold(0u64, |v, &d| {
        v.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    match value {
        Some(v) => Fast::Accept(Phone(v)),
        None => Fast::Reject, // the reference refuses what does not fit, too
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strips(pattern: &str, national: &str) -> bool {
        Prefix::compile(pattern).may_change(national.as_bytes())
    }

    #[test]
    fn only_non_empty_matches_at_the_start_count() {
        assert!(strips("0", "0123"));
        assert!(!strips("0", "1230"));
        // Empty matches strip nothing.
        assert!(!strips("0?", "123"));
        assert!(strips("0?", "0123"));
        // Every match end is seen, not only the leftmost-first one.
        assert!(strips("|1", "123"));
        // `$` is the end of the whole national number.
        assert!(strips("([2-9]\\d{6})$|1", "2345678"));
        assert!(!strips("([2-9]\\d{6})$|1", "23456789"));
        assert!(strips("([2-9]\\d{6})$|1", "123"));
        assert!(!strips("", "0123"));
    }

    #[test]
    fn tables_cover_every_code() {
        let t = tables();
        assert!(t.len() > 200, "{}", t.len());
        assert!(t.codes.iter().all(|c| !matches!(c.prefix, Prefix::Unknown)));
        assert!(t.is_possible(1, 10));
        assert!(!t.is_possible(1, 9));
        assert!(t.is_possible(44, 10));
        assert!(t.is_possible(7, 14));
        assert!(!t.is_possible(7, 18));
        assert!(!t.is_possible(999, 10));
        assert!(!t.is_possible(-1, 10));
        assert_eq!(t.country(b"4477").map(|(c, l)| (c.code, l)), Some((44, 2)));
        assert_eq!(t.country(b"3545").map(|(c, l)| (c.code, l)), Some((354, 3)));
        assert!(t.country(b"0441").is_none());
        assert!(t.country(b"999").is_none());
    }
}
