//! Attempts' effects on their endpoints' health, coalesced before they reach the
//! shared database.
//!
//! Every failed attempt (and every success while the copy still says the endpoint is
//! failing) has an effect on its endpoint's row. Written one by one, thousands a
//! second land on a handful of rows: each a transaction waiting for the row lock the
//! previous one holds (measured: 27,000 such statements, 28 s of statement time, in a
//! 13 s run of `bench deliver` on Postgres). So the effects are merged per endpoint
//! while a write is under way, and the next write records what they add up to: at most
//! four statements per endpoint, whatever the number of attempts.

use super::EndpointEffect;
use parking_lot::Mutex;
use std::collections::HashMap;

/// Effects waiting to be written, and whether a caller is writing them.
#[derive(Default)]
pub(super) struct HealthWrites {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    pending: HashMap<i64, Merged>,
    /// A caller is writing (it takes what is pending until nothing is).
    writing: bool,
}

/// What a run of one endpoint's effects adds up to, in arrival order.
#[derive(Debug, Default, PartialEq)]
struct Merged {
    /// A success came: the failing run (if any) ended.
    succeeded: bool,
    /// The failures after the last success: the first and the last instant.
    failed: Option<(i64, i64)>,
    /// The first request to disable it (a disable is never undone by health).
    disable: Option<(String, i64)>,
}

impl Merged {
    fn add(&mut self, effect: EndpointEffect) {
        match effect {
            EndpointEffect::Succeeded => {
                self.succeeded = true;
                self.failed = None;
            }
            EndpointEffect::Failed { at_ms } => {
                self.failed = Some(match self.failed {
                    Some((first, last)) => (first.min(at_ms), last.max(at_ms)),
                    None => (at_ms, at_ms),
                });
            }
            EndpointEffect::Disable { reason, at_ms } => {
                self.disable.get_or_insert((reason, at_ms));
            }
        }
    }

    /// Effects that, applied in order, leave the row as the merged ones would have one
    /// by one: the success clears a failing run, the first failure after it starts
    /// one, the last decides whether the run has lasted long enough to disable.
    fn effects(self) -> Vec<EndpointEffect> {
        let mut out = Vec::with_capacity(4);
        if self.succeeded {
            out.push(EndpointEffect::Succeeded);
        }
        if let Some((first, last)) = self.failed {
            out.push(EndpointEffect::Failed { at_ms: first });
            if last != first {
                out.push(EndpointEffect::Failed { at_ms: last });
            }
        }
        if let Some((reason, at_ms)) = self.disable {
            out.push(EndpointEffect::Disable { reason, at_ms });
        }
        out
    }
}

impl HealthWrites {
    /// Adds endpoint `id`'s effect; answers whether the caller is now the writer
    /// (nobody was writing): it must then call [`HealthWrites::next`] until `None`.
    pub(super) fn add(&self, id: i64, effect: EndpointEffect) -> bool {
        let mut state = self.state.lock();
        state.pending.entry(id).or_default().add(effect);
        !std::mem::replace(&mut state.writing, true)
    }

    /// The writer's next batch: every endpoint's merged effects, or `None` when nothing
    /// is pending (the caller is no longer the writer).
    pub(super) fn next(&self) -> Option<Vec<(i64, Vec<EndpointEffect>)>> {
        let mut state = self.state.lock();
        if state.pending.is_empty() {
            state.writing = false;
            return None;
        }
        Some(
            state
                .pending
                .drain()
                .map(|(id, merged)| (id, merged.effects()))
                .collect(),
        )
    }

    /// A writer that stops before [`HealthWrites::next`] answered `None` (its future
    /// was dropped): the next caller writes what is pending.
    pub(super) fn abandon(&self) {
        self.state.lock().writing = false;
    }
}

/// Makes the writer's role free again if its future is dropped mid-write.
pub(super) struct Writing<'a> {
    pub(super) writes: &'a HealthWrites,
    pub(super) done: bool,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.writes.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(at_ms: i64) -> EndpointEffect {
        EndpointEffect::Failed { at_ms }
    }

    #[test]
    fn a_run_of_effects_becomes_the_few_that_leave_the_same_row() {
        let w = HealthWrites::default();
        assert!(w.add(1, failed(10)), "the first caller writes");
        for effect in [
            failed(12),
            EndpointEffect::Succeeded,
            failed(30),
            failed(25),
            failed(40),
        ] {
            assert!(!w.add(1, effect), "while it writes, others only add");
        }
        assert!(!w.add(2, EndpointEffect::Succeeded));
        let mut batch = w.next().unwrap();
        batch.sort_by_key(|(id, _)| *id);
        assert_eq!(
            batch,
            vec![
                (1, vec![EndpointEffect::Succeeded, failed(25), failed(40)]),
                (2, vec![EndpointEffect::Succeeded]),
            ]
        );
        assert_eq!(w.next(), None);
        assert!(w.add(1, failed(50)), "a new caller writes once it stopped");
    }

    #[test]
    fn a_disable_is_kept_after_a_success_and_a_dropped_writer_frees_the_role() {
        let w = HealthWrites::default();
        assert!(w.add(
            3,
            EndpointEffect::Disable {
                reason: "410 Gone".into(),
                at_ms: 5
            }
        ));
        {
            let _writing = Writing {
                writes: &w,
                done: false,
            };
        }
        assert!(
            w.add(3, EndpointEffect::Succeeded),
            "a writer dropped mid-write leaves the role to the next caller"
        );
        assert_eq!(
            w.next().unwrap(),
            vec![(
                3,
                vec![
                    EndpointEffect::Succeeded,
                    EndpointEffect::Disable {
                        reason: "410 Gone".into(),
                        at_ms: 5
                    }
                ]
            )]
        );
    }
}
