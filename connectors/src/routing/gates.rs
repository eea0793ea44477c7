//! Which raw partitions this process stores HTTP parts for right now, and how many
//! such parts are being stored: a partition is given up only once they are durable.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Gate {
    open: bool,
    in_flight: usize,
}

/// The gates of the raw partitions: open from the end of a partition's warm-up to the
/// start of its revocation.
#[derive(Default)]
pub(crate) struct PartitionGates {
    gates: Mutex<HashMap<i32, Gate>>,
    changed: Condvar,
}

/// Parts of these partitions are being stored; dropping it lets a revocation go on.
pub(crate) struct Pass<'a> {
    gates: &'a PartitionGates,
    partitions: Vec<i32>,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let mut gates = self.gates.gates.lock().unwrap_or_else(|e| e.into_inner());
        for p in &self.partitions {
            if let Some(g) = gates.get_mut(p) {
                g.in_flight -= 1;
            }
        }
        drop(gates);
        self.gates.changed.notify_all();
    }
}

impl PartitionGates {
    /// Whether parts of `partition` are stored here now.
    pub fn is_open(&self, partition: i32) -> bool {
        let gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        gates.get(&partition).is_some_and(|g| g.open)
    }

    /// The open partitions, ascending.
    pub fn open_partitions(&self) -> Vec<i32> {
        let gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        let mut open: Vec<i32> = gates
            .iter()
            .filter(|(_, g)| g.open)
            .map(|(p, _)| *p)
            .collect();
        open.sort_unstable();
        open
    }

    /// Enters every one of `partitions` (sorted, distinct), or none: `Err` lists
    /// those that are closed.
    pub fn enter(&self, partitions: &[i32]) -> Result<Pass<'_>, Vec<i32>> {
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        let closed: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| !gates.get(p).is_some_and(|g| g.open))
            .collect();
        if !closed.is_empty() {
            return Err(closed);
        }
        for p in partitions {
            gates.entry(*p).or_default().in_flight += 1;
        }
        Ok(Pass {
            gates: self,
            partitions: partitions.to_vec(),
        })
    }

    /// Opens `partitions`: parts of them are stored here from now on.
    pub fn open(&self, partitions: &[i32]) {
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        for p in partitions {
            gates.entry(*p).or_default().open = true;
        }
    }

    /// Closes `partitions` and waits, at most `bound`, until no part of them is being
    /// stored. Returns how many parts were still in flight when it gave up (0: all
    /// durable). Blocks the calling thread: called from the rebalance callback, so
    /// the partitions move only after this returns.
    pub fn close(&self, partitions: &[i32], bound: Duration) -> usize {
        let deadline = Instant::now() + bound;
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        for p in partitions {
            gates.entry(*p).or_default().open = false;
        }
        loop {
            let busy: usize = partitions
                .iter()
                .filter_map(|p| gates.get(p))
                .map(|g| g.in_flight)
                .sum();
            let now = Instant::now();
            if busy == 0 || now >= deadline {
                return busy;
            }
            gates = self
                .changed
                .wait_timeout(gates, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_closed_partition_is_not_entered_and_entering_is_all_or_nothing() {
        let g = PartitionGates::default();
        g.open(&[1, 2]);
        assert_eq!(g.enter(&[1, 3]).err(), Some(vec![3]));
        {
            let _pass = g.enter(&[1, 2]).unwrap();
            assert_eq!(g.open_partitions(), vec![1, 2]);
        }
        assert_eq!(g.close(&[1], Duration::ZERO), 0);
        assert!(!g.is_open(1) && g.is_open(2));
    }

    #[test]
    fn closing_waits_for_the_parts_in_flight() {
        let g = Arc::new(PartitionGates::default());
        g.open(&[0]);
        let pass_held = Arc::new(std::sync::Barrier::new(2));
        let (g2, b2) = (g.clone(), pass_held.clone());
        let holder = std::thread::spawn(move || {
            let _pass = g2.enter(&[0]).unwrap();
            b2.wait();
            std::thread::sleep(Duration::from_millis(200));
        });
        pass_held.wait();
        let t = Instant::now();
        assert_eq!(g.close(&[0], Duration::from_secs(10)), 0);
        assert!(
            t.elapsed() >= Duration::from_millis(150),
            "{:?}",
            t.elapsed()
        );
        assert!(
            g.enter(&[0]).is_err(),
            "closed while the part was in flight"
        );
        holder.join().unwrap();
        // A part that never ends is given up on after the bound.
        g.open(&[0]);
        let _stuck = g.enter(&[0]).unwrap();
        assert_eq!(g.close(&[0], Duration::from_millis(50)), 1);
    }
}
