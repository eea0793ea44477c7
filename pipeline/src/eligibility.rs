//! Which leads of a campaign's audience are eligible for a send at its instant T.
//!
//! The steps, in order, each dropping leads (the [`Summary`] counts each):
//! 1. opt-outs of the organization;
//! 2. the send's audience filter, when it uses one and one was received: `include`
//!    keeps only the listed leads, `exclude` drops them (a lead is listed when its
//!    externalId, case-sensitive, or its normalized phone is in the list);
//! 3. the event filter: a lead "has the event" when one of its events of that type
//!    has `T - minutes <= occurredAt <= T` (no window: any `occurredAt <= T`);
//!    `include` keeps the leads that have it, `exclude` those that do not.
//!
//! Pure: the audience, the opt-outs and the filters come in, the eligible leads'
//! positions come out. The event filter asks the [`EventIndex`] for the whole
//! audience at once ([`EventIndex::have_event`]), shard by shard.

use crate::event::OrgId;
pub use crate::index::window_start;
use crate::index::EventIndex;
use crate::phone::Phone;
use std::collections::HashSet;

/// Include or exclude the matching leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Include,
    Exclude,
}

impl Mode {
    /// `"include"` or `"exclude"`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "include" => Some(Mode::Include),
            "exclude" => Some(Mode::Exclude),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Include => "include",
            Mode::Exclude => "exclude",
        }
    }

    /// Whether a lead that matches (or not) stays.
    #[inline]
    fn keeps(self, matches: bool) -> bool {
        match self {
            Mode::Include => matches,
            Mode::Exclude => !matches,
        }
    }
}

/// A send's event filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFilter {
    pub mode: Mode,
    /// Case-sensitive, as posted with the events.
    pub event_type: String,
    /// The window before T; `None`: any event at or before T.
    pub within_minutes: Option<u64>,
}

/// The latest audience filter received for a send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AudienceFilter {
    pub mode: Option<Mode>,
    pub external_ids: HashSet<String>,
    pub phones: HashSet<u64>,
}

impl AudienceFilter {
    fn lists(&self, lead: &Lead) -> bool {
        self.phones.contains(&lead.phone.0)
            || lead
                .external_id
                .as_ref()
                .is_some_and(|e| self.external_ids.contains(e))
    }
}

/// One lead of an audience.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lead {
    pub phone: Phone,
    pub external_id: Option<String>,
}

/// Where the event filter's answer comes from.
pub enum Events<'a> {
    /// The in-process event index, asked for the whole audience.
    Index(&'a EventIndex),
    /// The phones that have an event of the filter's type in its window at T, already
    /// looked up elsewhere (ClickHouse).
    Having(&'a HashSet<u64>),
}

/// The question: a send of `org` at `at_us` (UTC microseconds).
pub struct Question<'a> {
    pub org: OrgId,
    pub at_us: i64,
    pub opted_out: &'a HashSet<u64>,
    /// `None` when the send does not use one or none was received.
    pub audience_filter: Option<&'a AudienceFilter>,
    pub event_filter: Option<&'a EventFilter>,
}

/// How many leads each step dropped, and how many are left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Leads in.
    pub audience: u64,
    #[serde(rename = "optedOut")]
    pub opted_out: u64,
    #[serde(rename = "audienceFilter")]
    pub audience_filter: u64,
    #[serde(rename = "eventFilter")]
    pub event_filter: u64,
    /// Leads out.
    pub eligible: u64,
}

/// The positions in `leads` of the eligible leads, in order, and the summary.
pub fn evaluate(q: &Question<'_>, leads: &[Lead], events: Events<'_>) -> (Vec<usize>, Summary) {
    let mut s = Summary {
        audience: leads.len() as u64,
        ..Summary::default()
    };
    let mut kept: Vec<usize> = Vec::with_capacity(leads.len());
    for (i, lead) in leads.iter().enumerate() {
        if q.opted_out.contains(&lead.phone.0) {
            s.opted_out += 1;
            continue;
        }
        if let Some(f) = q.audience_filter {
            if let Some(mode) = f.mode {
                if !mode.keeps(f.lists(lead)) {
                    s.audience_filter += 1;
                    continue;
                }
            }
        }
        kept.push(i);
    }
    if let Some(f) = q.event_filter {
        let has: Vec<bool> = match events {
            Events::Index(index) => {
                let phones: Vec<Phone> = kept.iter().map(|&i| leads[i].phone).collect();
                index.have_event(q.org, &f.event_type, &phones, q.at_us, f.within_minutes)
            }
            Events::Having(set) => kept
                .iter()
                .map(|&i| set.contains(&leads[i].phone.0))
                .collect(),
        };
        let before = kept.len();
        let mut it = has.into_iter();
        kept.retain(|_| f.mode.keeps(it.next().unwrap_or(false)));
        s.event_filter = (before - kept.len()) as u64;
    }
    s.eligible = kept.len() as u64;
    (kept, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;
    const T: i64 = 1_000 * MIN;

    fn lead(p: u64, ext: Option<&str>) -> Lead {
        Lead {
            phone: Phone(p),
            external_id: ext.map(str::to_owned),
        }
    }

    fn audience() -> Vec<Lead> {
        vec![
            lead(15550000001, Some("a")),
            lead(15550000002, Some("b")),
            lead(15550000003, None),
            lead(15550000004, Some("d")),
        ]
    }

    fn index() -> EventIndex {
        let idx = EventIndex::new(8);
        // Lead 1 bought 2 hours before T, lead 2 exactly 120 minutes before, lead 3 at
        // T, lead 4 a minute after T (and never before).
        idx.record(42, "purchase", [(Phone(15550000001), T - 121 * MIN)]);
        idx.record(42, "purchase", [(Phone(15550000002), T - 120 * MIN)]);
        idx.record(42, "purchase", [(Phone(15550000003), T)]);
        idx.record(42, "purchase", [(Phone(15550000004), T + MIN)]);
        idx
    }

    fn run(
        opted_out: &[u64],
        af: Option<&AudienceFilter>,
        ef: Option<&EventFilter>,
    ) -> (Vec<u64>, Summary) {
        let leads = audience();
        let out: HashSet<u64> = opted_out.iter().copied().collect();
        let q = Question {
            org: 42,
            at_us: T,
            opted_out: &out,
            audience_filter: af,
            event_filter: ef,
        };
        let idx = index();
        let (kept, s) = evaluate(&q, &leads, Events::Index(&idx));
        // The same question answered from a looked-up set gives the same answer.
        if let Some(f) = ef {
            let lo = f.within_minutes.map_or(i64::MIN, |m| T - m as i64 * MIN);
            let having: HashSet<u64> = leads
                .iter()
                .filter(|l| {
                    idx.occurrences(42, &f.event_type, l.phone)
                        .iter()
                        .any(|&at| lo <= at && at <= T)
                })
                .map(|l| l.phone.0)
                .collect();
            assert_eq!(
                evaluate(&q, &leads, Events::Having(&having)),
                (kept.clone(), s)
            );
        }
        (kept.iter().map(|&i| leads[i].phone.0 % 10).collect(), s)
    }

    fn filter(mode: Mode, event_type: &str, within: Option<u64>) -> EventFilter {
        EventFilter {
            mode,
            event_type: event_type.into(),
            within_minutes: within,
        }
    }

    #[test]
    fn window_edges_are_inside_and_after_t_is_outside() {
        let f = filter(Mode::Include, "purchase", Some(120));
        let (kept, s) = run(&[], None, Some(&f));
        assert_eq!(kept, [2, 3], "120 min before T and at T are inside");
        assert_eq!(s.event_filter, 2);
        assert_eq!(s.eligible, 2);
    }

    #[test]
    fn no_window_means_any_event_at_or_before_t() {
        let (kept, _) = run(&[], None, Some(&filter(Mode::Include, "purchase", None)));
        assert_eq!(kept, [1, 2, 3]);
        let (kept, _) = run(&[], None, Some(&filter(Mode::Exclude, "purchase", None)));
        assert_eq!(kept, [4], "an event after T does not count");
    }

    #[test]
    fn event_types_are_case_sensitive_and_no_events_follow_the_mode() {
        let (kept, _) = run(&[], None, Some(&filter(Mode::Include, "Purchase", None)));
        assert!(
            kept.is_empty(),
            "include: leads without the event are dropped"
        );
        let (kept, _) = run(&[], None, Some(&filter(Mode::Exclude, "Purchase", None)));
        assert_eq!(kept, [1, 2, 3, 4], "exclude: leads without the event stay");
    }

    #[test]
    fn opt_outs_first_then_audience_filter_and_event_filter() {
        let af = AudienceFilter {
            mode: Some(Mode::Include),
            external_ids: ["a".to_owned(), "B".to_owned()].into(),
            phones: [15550000003].into(),
        };
        let ef = filter(Mode::Include, "purchase", None);
        let (kept, s) = run(&[15550000001], Some(&af), Some(&ef));
        // 1 opted out (even though listed); 2's "b" is not "B"; 4 is not listed; 3
        // is listed by phone and has the event.
        assert_eq!(kept, [3]);
        assert_eq!(
            s,
            Summary {
                audience: 4,
                opted_out: 1,
                audience_filter: 2,
                event_filter: 0,
                eligible: 1
            }
        );
    }

    #[test]
    fn exclude_audience_filter_drops_the_listed() {
        let af = AudienceFilter {
            mode: Some(Mode::Exclude),
            external_ids: ["d".to_owned()].into(),
            phones: HashSet::new(),
        };
        let (kept, s) = run(&[], Some(&af), None);
        assert_eq!(kept, [1, 2, 3]);
        assert_eq!(s.audience_filter, 1);
    }
}
