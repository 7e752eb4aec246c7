//! Guests at run time: which run, their init's pidfd, the per-guest lock, and the event bus.
//! The lifecycle steps are in start.rs and stop.rs, exit handling in supervise.rs.

pub mod adopt;
pub mod barrier;
pub mod build;
pub mod delete;
pub mod disk;
pub mod exec;
pub mod hooks;
pub mod hostwild;
pub mod idrange;
pub mod intree;
pub mod limits;
pub mod load;
pub mod network;
pub mod pending;
pub mod plan;
pub mod procs;
pub mod progress;
pub mod rootpath;
pub mod runstate;
pub mod sharednet;
pub mod start;
pub mod stat;
pub mod stop;
pub mod supervise;
pub mod virtmem;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use proto::{Event, GuestState};
use tokio::sync::{broadcast, watch};

use crate::isolate::pidfd::Exit;
use runstate::RunState;

/// A running guest.
pub struct Running {
    pub state: RunState,
    /// The config it was started with (None for an adopted guest whose config did not load),
    /// to tell a changed config ("restart needed") from an unchanged one.
    pub config: Option<Arc<crate::config::GuestConfig>>,
    pub pidfd: OwnedFd,
    /// Set once init has exited (by the supervisor, the only one that waits for it).
    pub exited: watch::Receiver<Option<Exit>>,
    /// A stop (or a rollback) is in progress: init's exit is expected, the reboot helper is
    /// disarmed.
    stopping: AtomicBool,
    /// Taken over from an earlier daemon: init is not our child.
    pub adopted: bool,
    /// The disk limits set now (the run state's, and what `set --disk` changed since).
    pub disk: std::sync::Mutex<Vec<crate::disk::Applied>>,
}

impl Running {
    pub fn new(
        state: RunState,
        config: Option<Arc<crate::config::GuestConfig>>,
        pidfd: OwnedFd,
        adopted: bool,
    ) -> (Arc<Running>, watch::Sender<Option<Exit>>) {
        let (tx, rx) = watch::channel(None);
        (
            Arc::new(Running {
                disk: std::sync::Mutex::new(state.disk.clone()),
                state,
                config,
                pidfd,
                exited: rx,
                stopping: AtomicBool::new(false),
                adopted,
            }),
            tx,
        )
    }

    pub fn disarm(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub fn has_exited(&self) -> bool {
        self.exited.borrow().is_some()
    }

    /// Waits for init's exit up to `timeout`; true if it exited.
    pub async fn wait_exit(&self, timeout: std::time::Duration) -> bool {
        let mut rx = self.exited.clone();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|e| e.is_some())).await;
        waited.is_ok()
    }
}

#[derive(Default)]
struct Slot {
    running: Option<Arc<Running>>,
    /// Starting or Stopping while a lifecycle call holds the lock.
    transition: Option<GuestState>,
    /// Why the guest last stopped or failed, for Status.
    last: Option<String>,
    /// Its config changed while it runs in a way only a restart applies.
    restart_needed: bool,
}

pub struct Guests {
    slots: Mutex<HashMap<String, Slot>>,
    /// Counts changes of any guest's state, so that List can be cached.
    version: std::sync::atomic::AtomicU64,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    events: broadcast::Sender<Event>,
    /// Starts, stops, failures and exits by guest, for the Metrics call.
    pub counters: crate::metrics::Counters,
}

impl Default for Guests {
    fn default() -> Self {
        Self {
            slots: Mutex::default(),
            version: Default::default(),
            locks: Mutex::default(),
            events: broadcast::channel(1024).0,
            counters: Default::default(),
        }
    }
}

impl Guests {
    /// The per-guest lock every lifecycle change holds (start, stop, exit handling).
    pub fn lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .expect("not poisoned")
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    fn with<R>(&self, name: &str, f: impl FnOnce(&mut Slot) -> R) -> R {
        f(self
            .slots
            .lock()
            .expect("not poisoned")
            .entry(name.to_string())
            .or_default())
    }

    pub fn running(&self, name: &str) -> Option<Arc<Running>> {
        self.with(name, |s| s.running.clone())
    }

    /// Changes whenever [`Self::state`] may answer differently for some guest.
    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn changed(&self) {
        self.version
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    // The version moves after the change: a List that saw the new version sees the new state.
    pub fn set_running(&self, name: &str, r: Option<Arc<Running>>) {
        self.with(name, |s| {
            s.running = r;
            s.restart_needed = false;
        });
        self.changed();
    }

    pub fn set_restart_needed(&self, name: &str, on: bool) {
        self.with(name, |s| s.restart_needed = on)
    }

    pub fn restart_needed(&self, name: &str) -> bool {
        self.with(name, |s| s.restart_needed)
    }

    pub fn running_names(&self) -> Vec<String> {
        self.slots
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|(_, s)| s.running.is_some())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Whether `r` is still this guest's current run (not replaced by a restart).
    pub fn is_current(&self, name: &str, r: &Arc<Running>) -> bool {
        self.with(name, |s| {
            s.running.as_ref().is_some_and(|c| Arc::ptr_eq(c, r))
        })
    }

    pub fn set_transition(&self, name: &str, t: Option<GuestState>) {
        self.with(name, |s| s.transition = t);
        self.changed();
    }

    pub fn set_last(&self, name: &str, msg: Option<String>) {
        self.with(name, |s| s.last = msg)
    }

    pub fn last(&self, name: &str) -> Option<String> {
        self.with(name, |s| s.last.clone())
    }

    pub fn state(&self, name: &str) -> GuestState {
        self.with(name, |s| match (&s.transition, &s.running) {
            (Some(t), _) => *t,
            (None, Some(_)) => GuestState::Running,
            (None, None) => GuestState::Stopped,
        })
    }

    pub fn emit(&self, name: &str, kind: &str, message: Option<String>) {
        self.counters.note(name, kind);
        let _ = self.events.send(Event {
            name: name.to_string(),
            kind: kind.to_string(),
            message,
        });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}
