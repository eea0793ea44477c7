//! Lookup tables for the phone fast path, derived once from the `phonenumber`
//! crate's own metadata (see the module docs of [`crate::phone`] for why they
//! make the fast path exact).
//!
//! Everything here runs once per process (the tables live in a `OnceLock`);
//! the hot path only reads plain arrays.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use phonenumber::metadata::{Metadata, DATABASE};
use regex_automata::dfa::{dense, Automaton};
use regex_automata::util::primitives::StateID;
use regex_automata::util::{start, syntax};
use regex_automata::{Anchored, MatchKind};
use regex_syntax::hir::{Class, Hir, HirKind};

/// Longest national number the crate's parser keeps (`MAX_LENGTH_FOR_NSN`).
pub(crate) const MAX_NSN: usize = 17;

/// How many lengths the danger analysis follows before giving up on finding a
/// fixpoint (every real pattern stabilises after a handful).
const MAX_ANALYSED_REMAINDER: usize = 48;

/// Per calling code data used by the fast path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CodeInfo {
    /// The country calling code.
    pub(crate) code: u16,
    /// Bit `L` is set when a national significant number of `L` digits is a
    /// possible number (IS_POSSIBLE or IS_POSSIBLE_LOCAL_ONLY) for this code.
    pub(crate) possible: u32,
    /// Offset of this code's rows in [`Tables::danger`].
    rows_off: u32,
    /// Index of the last stored row: lengths beyond it reuse it (when
    /// `tail_known`) or are treated as dangerous.
    rows_last: u8,
    /// Whether the rows reached a fixpoint, so that the last row is valid for
    /// every longer national number.
    tail_known: bool,
    /// This code's patterns: `Tables::code_patterns[pat_off..pat_off + pat_len]`.
    pat_off: u16,
    pat_len: u8,
}

/// One rewrite pattern compiled for the exact check.
struct PatternDfa {
    /// `None`: the pattern could not be analysed; every number is dangerous.
    dfa: Option<(dense::DFA<Vec<u32>>, StateID)>,
    /// Whether an empty match at position 0 counts (see [`Mode`]).
    empty_counts: bool,
}

/// All tables the fast path and the fallback need.
pub(crate) struct Tables {
    /// `slot[c]` is `index + 1` into `codes` when `c` is an assigned calling
    /// code in the crate's metadata, `0` otherwise.
    slot: Box<[u16; 1000]>,
    pub(crate) codes: Vec<CodeInfo>,
    /// One `u128` per (code, national length): bit `p` is set when a national
    /// number of that length whose leading digits map to `p` (see
    /// [`prefix_index`]) might be rewritten by the crate's national-prefix
    /// handling, in which case the fast path must not answer.
    danger: Vec<u128>,
    /// Distinct rewrite patterns of all codes, for the exact check.
    patterns: Vec<PatternDfa>,
    /// Per code lists of indices into `patterns`.
    code_patterns: Vec<u32>,
    /// Ranges of `\p{Nd}` (the crate's notion of a digit that can start a
    /// number), for mapping input without a `+` in the fallback.
    decimal_digits: Vec<(char, char)>,
}

static TABLES: OnceLock<Tables> = OnceLock::new();

/// The process-wide tables, built on first use.
pub(crate) fn get() -> &'static Tables {
    TABLES.get_or_init(Tables::build)
}

/// The bit index used by the danger rows for the first digits of a national
/// number of length `len`: `0` for the empty number, `d0` for one digit,
/// `10 * d0 + d1` otherwise.
#[inline(always)]
pub(crate) fn prefix_index(len: usize, d0: u8, d1: u8) -> u32 {
    match len {
        0 => 0,
        1 => d0 as u32,
        _ => d0 as u32 * 10 + d1 as u32,
    }
}

impl Tables {
    /// Index into `codes` for calling code `code`, if it is assigned.
    #[inline(always)]
    pub(crate) fn lookup(&self, code: u32) -> Option<usize> {
        match self.slot.get(code as usize) {
            Some(&s) if s != 0 => Some(s as usize - 1),
            _ => None,
        }
    }

    /// Whether the crate might rewrite a national number of `len` digits
    /// (with prefix index `idx`) of calling code `info`. `true` means "ask
    /// the crate".
    #[inline(always)]
    pub(crate) fn dangerous(&self, info: &CodeInfo, len: usize, idx: u32) -> bool {
        let last = info.rows_last as usize;
        let row = if len > last {
            if !info.tail_known {
                return true;
            }
            last
        } else {
            len
        };
        (self.danger[info.rows_off as usize + row] >> idx) & 1 == 1
    }

    /// Exact version of [`dangerous`](Self::dangerous) for a national number
    /// given as digit values (0–9): whether one of the code's rewrite patterns
    /// matches at position 0 of exactly this number. Lock-free: a dense DFA
    /// walk per pattern (only reached when the table flags the prefix).
    pub(crate) fn rewrites(&self, info: &CodeInfo, national: &[u8]) -> bool {
        let start = info.pat_off as usize;
        let ids = &self.code_patterns[start..start + info.pat_len as usize];
        ids.iter().any(|&i| {
            let p = &self.patterns[i as usize];
            let Some((dfa, start)) = &p.dfa else {
                return true;
            };
            let mut s = *start;
            for (k, &d) in national.iter().enumerate() {
                s = dfa.next_state(s, b'0' + d);
                // Delayed by one byte: a match ending at k (empty when k == 0).
                if dfa.is_match_state(s) && (k > 0 || p.empty_counts) {
                    return true;
                }
                if dfa.is_dead_state(s) {
                    return false;
                }
            }
            dfa.is_match_state(dfa.next_eoi_state(s)) && (!national.is_empty() || p.empty_counts)
        })
    }

    /// Whether `ch` is a Unicode decimal digit (`\p{Nd}`).
    pub(crate) fn is_decimal_digit(&self, ch: char) -> bool {
        if ch.is_ascii() {
            return ch.is_ascii_digit();
        }
        self.decimal_digits
            .binary_search_by(|&(lo, hi)| {
                if hi < ch {
                    std::cmp::Ordering::Less
                } else if lo > ch {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
    }

    fn build() -> Tables {
        // Not `DATABASE.iter()`: it walks the by-region-id map, where all
        // non-geographic entities share the id "001" and all but one vanish.
        let codes_set: BTreeSet<u16> = (1..1000u16)
            .filter(|c| DATABASE.by_code(c).is_some_and(|m| !m.is_empty()))
            .collect();

        let mut slot = Box::new([0u16; 1000]);
        let mut codes = Vec::new();
        let mut danger = Vec::new();
        let mut analysed: HashMap<(String, Mode), (Rows, u32)> = HashMap::new();
        let mut patterns_dfa: Vec<PatternDfa> = Vec::new();
        let mut code_patterns: Vec<u32> = Vec::new();

        for &code in &codes_set {
            let Some(metas) = DATABASE.by_code(&code) else {
                continue;
            };
            if metas.is_empty() || code as usize >= slot.len() {
                continue;
            }

            // The patterns whose match at the start of the national number
            // makes the crate rewrite it, over every region sharing the code
            // (so we never need to know which region the crate would pick).
            let mut patterns: Vec<(String, Mode)> = Vec::new();
            for meta in &metas {
                patterns.extend(rewrite_patterns(meta));
            }
            patterns.sort();
            patterns.dedup();

            let pat_off = code_patterns.len() as u16;
            let rows: Vec<Rows> = patterns
                .into_iter()
                .map(|key| {
                    let (rows, index) = analysed.entry(key.clone()).or_insert_with(|| {
                        let (rows, dfa) = analyse(&key.0, key.1);
                        patterns_dfa.push(dfa);
                        (rows, patterns_dfa.len() as u32 - 1)
                    });
                    code_patterns.push(*index);
                    rows.clone()
                })
                .collect();
            let pat_len = (code_patterns.len() - pat_off as usize) as u8;
            let combined = Rows::union(&rows);

            let info = CodeInfo {
                code,
                possible: possible_mask(metas[0]),
                rows_off: danger.len() as u32,
                rows_last: (combined.rows.len() - 1) as u8,
                tail_known: combined.tail_known,
                pat_off,
                pat_len,
            };
            danger.extend_from_slice(&combined.rows);
            codes.push(info);
            slot[code as usize] = codes.len() as u16;
        }

        Tables {
            slot,
            codes,
            danger,
            patterns: patterns_dfa,
            code_patterns,
            decimal_digits: decimal_digit_ranges(),
        }
    }
}

/// How a pattern's empty matches are treated by the analysis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Mode {
    /// Any match at position 0, including an empty one, is dangerous.
    AnyMatch,
    /// Only non-empty matches at position 0 are dangerous: the pattern is a
    /// `national_prefix_for_parsing` whose empty match leaves the number
    /// untouched (no transform rule, or a last capture group that cannot
    /// take part in an empty match).
    NonEmptyMatch,
    /// Every national number is dangerous.
    Always,
}

/// Patterns (anchored at the start of the national number) under which the
/// crate's `parse` may change the national number for `meta`:
///
/// * `national_prefix_for_parsing` (it is stripped or transformed when it
///   matches at position 0), and
/// * the literal `national_prefix` (stripped when the number starts with it,
///   both inside `helper::national_number` and again in `parse`).
fn rewrite_patterns(meta: &Metadata) -> Vec<(String, Mode)> {
    let mut out = Vec::new();
    if let Some(np) = meta.national_prefix() {
        if np.is_empty() {
            // `starts_with("")` is always true: the crate "strips" nothing,
            // but be conservative anyway.
            out.push((String::new(), Mode::Always));
        } else {
            out.push((regex_syntax::escape(np), Mode::AnyMatch));
        }
    }
    if let Some(re) = meta.national_prefix_for_parsing() {
        let pattern = re.as_str().to_owned();
        let mode = if meta.national_prefix_transform_rule().is_some()
            && last_group_may_match_empty(&pattern)
        {
            // An empty match could still run the transform, so empty
            // matches count as dangerous too.
            Mode::AnyMatch
        } else {
            Mode::NonEmptyMatch
        };
        out.push((pattern, mode));
    }
    out
}

/// Whether the group the crate reads as "last" (`captures[len - 1]`, i.e. the
/// highest numbered group, or the whole match when there is none) can
/// participate in an empty overall match. Conservative on parse errors.
fn last_group_may_match_empty(pattern: &str) -> bool {
    let Ok(hir) = regex_syntax::ParserBuilder::new()
        .ignore_whitespace(true)
        .build()
        .parse(pattern)
    else {
        return true;
    };
    let last = hir.properties().explicit_captures_len();
    if last == 0 {
        return true;
    }
    fn find(hir: &Hir, index: u32) -> Option<&Hir> {
        match hir.kind() {
            HirKind::Capture(cap) if cap.index == index => Some(&cap.sub),
            HirKind::Capture(cap) => find(&cap.sub, index),
            HirKind::Repetition(rep) => find(&rep.sub, index),
            HirKind::Concat(subs) | HirKind::Alternation(subs) => {
                subs.iter().find_map(|s| find(s, index))
            }
            _ => None,
        }
    }
    match find(&hir, last as u32) {
        Some(sub) => sub.properties().minimum_len() == Some(0),
        None => true,
    }
}

/// Danger rows of one pattern (or of a union of patterns).
#[derive(Clone, Debug)]
struct Rows {
    /// `rows[L]`: bit `prefix_index` set when a national number of length `L`
    /// with that prefix may have a (relevant) match at position 0.
    rows: Vec<u128>,
    /// Whether `rows.last()` holds for every longer length.
    tail_known: bool,
}

const ALL_PREFIXES: u128 = (1u128 << 100) - 1;

impl Rows {
    fn always() -> Rows {
        Rows {
            rows: vec![ALL_PREFIXES],
            tail_known: true,
        }
    }

    fn never() -> Rows {
        Rows {
            rows: vec![0],
            tail_known: true,
        }
    }

    fn union(parts: &[Rows]) -> Rows {
        let len = parts.iter().map(|r| r.rows.len()).max().unwrap_or(1);
        let mut rows = vec![0u128; len];
        let mut tail_known = true;
        for part in parts {
            tail_known &= part.tail_known;
            for (l, row) in rows.iter_mut().enumerate() {
                // Past its own end a part repeats its last row (valid when its
                // tail is known; otherwise the union's tail is unknown too and
                // the extra rows are only used up to `len`, which for an
                // unknown-tail part is exactly its own length).
                *row |= part.rows[l.min(part.rows.len() - 1)];
            }
        }
        Rows { rows, tail_known }
    }
}

/// Computes the danger rows of `pattern`: which (length, leading digits)
/// national numbers could have a match starting at position 0, as the
/// crate's `Regex::find(..).start() == 0` test sees it.
///
/// The pattern is compiled (with the crate's flags: `ignore_whitespace`) to an
/// anchored DFA reporting all match ends. Only ASCII digits are ever fed to it,
/// so Unicode mode is irrelevant and turned off. `V_r[s]` = "from state `s`, some
/// `r`-digit continuation reaches a match ending after at least one more
/// digit or at the end". `V_r` is a function of `V_{r-1}` alone, so once
/// `V_r == V_{r-1}` it stays constant for every longer number.
fn analyse(pattern: &str, mode: Mode) -> (Rows, PatternDfa) {
    let always = || {
        let dfa = PatternDfa {
            dfa: None,
            empty_counts: true,
        };
        (Rows::always(), dfa)
    };
    if mode == Mode::Always {
        return always();
    }
    let dfa = match dense::Builder::new()
        .syntax(
            syntax::Config::new()
                .ignore_whitespace(true)
                .unicode(false)
                .utf8(false),
        )
        .configure(
            dense::Config::new()
                .match_kind(MatchKind::All)
                .start_kind(regex_automata::dfa::StartKind::Anchored),
        )
        .build(pattern)
    {
        Ok(dfa) => dfa,
        Err(_) => return always(),
    };
    let Ok(start) = dfa.start_state(&start::Config::new().anchored(Anchored::Yes)) else {
        return always();
    };

    // All states reachable from the start on ASCII digits.
    let mut ids = vec![start];
    let mut index = HashMap::new();
    index.insert(start, 0usize);
    let mut next: Vec<[usize; 10]> = Vec::new();
    let mut step_match: Vec<[bool; 10]> = Vec::new();
    let mut eoi_match: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let s = ids[i];
        let mut nx = [0usize; 10];
        let mut sm = [false; 10];
        for d in 0..10u8 {
            let t = dfa.next_state(s, b'0' + d);
            if dfa.is_quit_state(t) {
                return always();
            }
            let ti = *index.entry(t).or_insert_with(|| {
                ids.push(t);
                ids.len() - 1
            });
            nx[d as usize] = ti;
            // DFA matches are delayed by one byte: a match state after a
            // transition reports a match ending *before* that byte.
            sm[d as usize] = dfa.is_match_state(t);
        }
        next.push(nx);
        step_match.push(sm);
        eoi_match.push(dfa.is_match_state(dfa.next_eoi_state(s)));
        i += 1;
    }
    let n = ids.len();

    // V_0 .. V_r* (fixpoint) or until the cap.
    let mut vs: Vec<Vec<bool>> = vec![eoi_match.clone()];
    let mut tail_known = false;
    while vs.len() <= MAX_ANALYSED_REMAINDER {
        let prev = vs.last().expect("non-empty");
        let cur: Vec<bool> = (0..n)
            .map(|s| (0..10).any(|d| step_match[s][d] || prev[next[s][d]]))
            .collect();
        if &cur == prev {
            tail_known = true;
            break;
        }
        vs.push(cur);
    }

    let empty_counts = mode == Mode::AnyMatch;
    let s0 = 0usize;
    let mut rows = Vec::with_capacity(vs.len() + 2);
    // L = 0: only the empty match is possible.
    rows.push(if empty_counts && eoi_match[s0] { 1 } else { 0 });
    // L = 1.
    let mut row = 0u128;
    for d0 in 0..10 {
        let s1 = next[s0][d0];
        if (empty_counts && step_match[s0][d0]) || eoi_match[s1] {
            row |= 1 << prefix_index(1, d0 as u8, 0);
        }
    }
    rows.push(row);
    // L >= 2.
    for v in &vs {
        let mut row = 0u128;
        for d0 in 0..10 {
            let s1 = next[s0][d0];
            for d1 in 0..10 {
                let s2 = next[s1][d1];
                if (empty_counts && step_match[s0][d0]) || step_match[s1][d1] || v[s2] {
                    row |= 1 << prefix_index(2, d0 as u8, d1 as u8);
                }
            }
        }
        rows.push(row);
    }
    let rows = if rows.iter().all(|&r| r == 0) && tail_known {
        Rows::never()
    } else {
        Rows { rows, tail_known }
    };
    let dfa = PatternDfa {
        dfa: Some((dfa, start)),
        empty_counts,
    };
    (rows, dfa)
}

/// libphonenumber's possible lengths for the general descriptor of `meta`.
///
/// The crate never fills in the general descriptor's `possibleLengths` (in
/// the XML it is derived data), so this recomputes it exactly as
/// libphonenumber's metadata builder does (`setPossibleLengthsGeneralDesc`):
/// the union of the `national` and `localOnly` lengths of every type
/// descriptor except `noInternationalDialling`. `isPossibleNumber` accepts a
/// length in either set (IS_POSSIBLE or IS_POSSIBLE_LOCAL_ONLY); with no
/// national lengths at all it answers INVALID_LENGTH.
pub(crate) fn possible_mask(meta: &Metadata) -> u32 {
    let d = meta.descriptors();
    let typed = [
        d.fixed_line(),
        d.mobile(),
        d.toll_free(),
        d.premium_rate(),
        d.shared_cost(),
        d.personal_number(),
        d.voip(),
        d.pager(),
        d.uan(),
        d.emergency(),
        d.voicemail(),
        d.short_code(),
        d.standard_rate(),
        d.carrier(),
    ];
    let mut national = 0u32;
    let mut local = 0u32;
    for desc in typed.into_iter().flatten() {
        for &l in desc.possible_length() {
            if (l as usize) <= MAX_NSN {
                national |= 1 << l;
            }
        }
        for &l in desc.possible_local_length() {
            if (l as usize) <= MAX_NSN {
                local |= 1 << l;
            }
        }
    }
    if national == 0 {
        0
    } else {
        national | local
    }
}

fn decimal_digit_ranges() -> Vec<(char, char)> {
    let hir = regex_syntax::Parser::new()
        .parse(r"\p{Nd}")
        .expect(r"\p{Nd} parses");
    match hir.kind() {
        HirKind::Class(Class::Unicode(cls)) => cls.iter().map(|r| (r.start(), r.end())).collect(),
        _ => ('0'..='9').map(|c| (c, c)).collect(),
    }
}
