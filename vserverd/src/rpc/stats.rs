//! Call counts and latencies by method, for the Metrics call (docs/operations.md).
//!
//! One table for the process: connection tasks note each call as it arrives and when its last
//! reply is sent. Method names are recorded only once the IDL check passed (a bounded set: the
//! interface's methods and varlink's own); refused calls count as `invalid`, so a client cannot
//! grow the table with names of its choosing.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds: List and Status take well under a
/// millisecond, a start tens of milliseconds, a build or unify minutes.
pub const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    120.0,
];

/// The label of calls the IDL check refused.
pub const INVALID: &str = "invalid";

#[derive(Default, Clone)]
struct Entry {
    calls: u64,
    errors: u64,
    completed: u64,
    /// Per bucket, not cumulative (made cumulative in the reply).
    buckets: [u64; BUCKETS.len()],
    sum: f64,
}

static TABLE: Mutex<BTreeMap<String, Entry>> = Mutex::new(BTreeMap::new());

fn with(method: &str, f: impl FnOnce(&mut Entry)) {
    let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    match t.get_mut(method) {
        Some(e) => f(e),
        None => f(t.entry(method.to_string()).or_default()),
    }
}

/// A call arrived.
pub fn called(method: &str) {
    with(method, |e| e.calls += 1);
}

/// A call's last reply went out after `took`; `error`: it was an error reply.
pub fn answered(method: &str, took: Duration, error: bool) {
    let s = took.as_secs_f64();
    with(method, |e| {
        e.completed += 1;
        e.sum += s;
        if error {
            e.errors += 1;
        }
        if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
            e.buckets[i] += 1;
        }
    });
}

/// The table as the Metrics reply carries it.
pub fn snapshot() -> Vec<proto::RpcMetrics> {
    let t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    t.iter()
        .map(|(m, e)| proto::RpcMetrics {
            method: m.clone(),
            calls: e.calls,
            errors: e.errors,
            completed: e.completed,
            buckets: e
                .buckets
                .iter()
                .scan(0, |acc, n| {
                    *acc += n;
                    Some(*acc)
                })
                .collect(),
            sum_seconds: e.sum,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_slow_ones_only_in_inf() {
        let m = "test.stats.Method";
        called(m);
        called(m);
        called(m);
        answered(m, Duration::from_micros(300), false);
        answered(m, Duration::from_millis(20), true);
        answered(m, Duration::from_secs(1000), false);
        let s = snapshot();
        let e = s.iter().find(|e| e.method == m).unwrap();
        assert_eq!((e.calls, e.errors, e.completed), (3, 1, 3));
        assert_eq!(e.buckets[0], 1);
        assert_eq!(e.buckets[5], 2); // 0.025
        assert_eq!(*e.buckets.last().unwrap(), 2); // 1000 s is past the last bound
        assert!(e.buckets.windows(2).all(|w| w[0] <= w[1]));
        assert!((e.sum_seconds - 1000.0203).abs() < 1e-6);
    }
}
