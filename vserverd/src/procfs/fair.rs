//! Fair service for the /proc server: one queue per guest folder, served in turn, each with a
//! token bucket. A guest that opens /proc/meminfo in a loop gets at most `rate` requests a
//! second (after a burst) and waits for the rest, blocked in its own syscalls: the flood costs
//! the guest its time, not the server the host's, and every other guest's requests are served
//! in their turn instead of behind the flood. Pure (the clock is a parameter), so the policy is
//! unit-tested.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens a second, at most `burst` kept.
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            at: now,
        }
    }

    /// Takes a token; or says how long until the next one.
    pub fn take(&mut self, now: Instant, rate: f64, burst: f64) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
    }
}

struct Lane<T> {
    jobs: VecDeque<T>,
    bucket: Bucket,
}

/// What a worker should do next.
pub enum Pop<T> {
    Job(T),
    /// Jobs wait, but no lane has a token before this long.
    Wait(Duration),
    Empty,
}

pub struct Fair<T> {
    /// Lanes keep their bucket while empty: a reader with one request at a time (the common
    /// flood) would otherwise get a fresh burst with every request.
    lanes: HashMap<u64, Lane<T>>,
    /// Lanes with jobs, in turn order.
    ring: VecDeque<u64>,
    rate: f64,
    burst: f64,
    cap: usize,
}

impl<T> Fair<T> {
    /// `rate` requests a second per lane after a burst of `burst`; at most `cap` waiting per lane.
    pub fn new(rate: f64, burst: f64, cap: usize) -> Self {
        Self {
            lanes: HashMap::new(),
            ring: VecDeque::new(),
            rate,
            burst,
            cap,
        }
    }

    /// Queues `job` in lane `key`; gives it back when that lane already holds `cap` jobs.
    pub fn push(&mut self, key: u64, job: T, now: Instant) -> Result<(), T> {
        let burst = self.burst;
        let lane = self.lanes.entry(key).or_insert_with(|| Lane {
            jobs: VecDeque::new(),
            bucket: Bucket::new(burst, now),
        });
        if lane.jobs.len() >= self.cap {
            return Err(job);
        }
        if lane.jobs.is_empty() {
            self.ring.push_back(key);
        }
        lane.jobs.push_back(job);
        Ok(())
    }

    /// The next job: from the first lane in turn that has a token; that lane goes to the back.
    pub fn pop(&mut self, now: Instant) -> Pop<T> {
        if self.ring.is_empty() {
            return Pop::Empty;
        }
        let mut soonest = Duration::MAX;
        for _ in 0..self.ring.len() {
            let Some(key) = self.ring.pop_front() else {
                break;
            };
            let Some(lane) = self.lanes.get_mut(&key) else {
                continue;
            };
            match lane.bucket.take(now, self.rate, self.burst) {
                Ok(()) => {
                    let job = lane.jobs.pop_front();
                    if !lane.jobs.is_empty() {
                        self.ring.push_back(key);
                    }
                    if let Some(job) = job {
                        return Pop::Job(job);
                    }
                    continue;
                }
                Err(wait) => soonest = soonest.min(wait),
            }
            self.ring.push_back(key);
        }
        Pop::Wait(soonest.max(Duration::from_micros(100)))
    }

    /// Jobs waiting in all lanes.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lanes.values().map(|l| l.jobs.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job<T>(p: Pop<T>) -> Option<T> {
        match p {
            Pop::Job(j) => Some(j),
            _ => None,
        }
    }

    #[test]
    fn lanes_are_served_in_turn_whatever_their_length() {
        let t = Instant::now();
        let mut f = Fair::new(1000.0, 1000.0, 10_000);
        for i in 0..100 {
            f.push(1, ("flood", i), t).unwrap();
        }
        f.push(2, ("quiet", 0), t).unwrap();
        let first: Vec<_> = (0..3).filter_map(|_| job(f.pop(t))).collect();
        assert_eq!(first, [("flood", 0), ("quiet", 0), ("flood", 1)]);
    }

    #[test]
    fn a_lane_past_its_burst_waits_for_tokens_while_others_go_on() {
        let t = Instant::now();
        let mut f = Fair::new(100.0, 5.0, 10_000);
        for i in 0..50 {
            f.push(1, i, t).unwrap();
        }
        let served = std::iter::from_fn(|| job(f.pop(t))).count();
        assert_eq!(served, 5, "the burst, then nothing without time");
        match f.pop(t) {
            Pop::Wait(d) => assert!(d <= Duration::from_millis(10), "{d:?}"),
            _ => panic!("expected a wait"),
        }
        // Another lane still has its own burst.
        f.push(2, 1000, t).unwrap();
        assert_eq!(job(f.pop(t)), Some(1000));
        // A second later, rate more (capped by the burst).
        let later = t + Duration::from_secs(1);
        let served = std::iter::from_fn(|| job(f.pop(later))).count();
        assert_eq!(served, 5);
        assert_eq!(f.waiting(), 40);
    }

    #[test]
    fn an_emptied_lane_keeps_its_bucket() {
        // One request at a time (a shell loop) must not get a fresh burst per request.
        let t = Instant::now();
        let mut f = Fair::new(10.0, 3.0, 10);
        let mut served = 0;
        for i in 0..10 {
            f.push(7, i, t).unwrap();
            if job(f.pop(t)).is_some() {
                served += 1;
            }
        }
        assert_eq!(served, 3);
    }

    #[test]
    fn a_full_lane_gives_the_job_back() {
        let t = Instant::now();
        let mut f = Fair::new(1.0, 1.0, 2);
        f.push(1, 'a', t).unwrap();
        f.push(1, 'b', t).unwrap();
        assert_eq!(f.push(1, 'c', t), Err('c'));
        assert!(f.push(2, 'd', t).is_ok());
    }
}
