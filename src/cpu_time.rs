//! This thread's CPU time, the clock of the benchmarks on shared machines.
//!
//! Read from `se.sum_exec_runtime` in `/proc/thread-self/sched` (nanosecond resolution,
//! user and kernel time), so time other processes take on a noisy machine is not
//! counted. On kernels that do not report it, [`now`] falls back to wall time.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The thread's CPU time in milliseconds and how often it was preempted, if the
/// kernel reports them.
pub fn thread_sched() -> Option<(f64, u64)> {
    let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
    let field = |name: &str| {
        sched.lines().find_map(|l| {
            l.strip_prefix(name)?
                .trim_start()
                .strip_prefix(':')
                .map(str::trim)
        })
    };
    Some((
        field("se.sum_exec_runtime")?.parse().ok()?,
        field("nr_involuntary_switches")?.parse().ok()?,
    ))
}

/// A monotonic reading of this thread's CPU time (or of wall time, see the module docs).
/// Only differences between two readings on the same thread mean anything.
pub fn now() -> Duration {
    static WALL: OnceLock<Instant> = OnceLock::new();
    match thread_sched() {
        Some((ms, _)) => Duration::from_nanos((ms * 1e6) as u64),
        None => WALL.get_or_init(Instant::now).elapsed(),
    }
}
