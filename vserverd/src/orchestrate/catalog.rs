//! The parsed config of every guest, kept current by the watcher so that List does not parse
//! every tree on every call. Lifecycle calls still parse afresh: they must act on what is on
//! disk this instant.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::{self, ConfigError, Loaded, Roots};

pub type Entry = Arc<Result<Loaded, ConfigError>>;

#[derive(Default)]
pub struct Catalog {
    entries: RwLock<BTreeMap<String, Entry>>,
    /// Set while a watcher keeps the entries current; otherwise callers parse themselves.
    live: AtomicBool,
    /// Counts changes, so that what is derived from the entries can be cached (List).
    version: AtomicU64,
}

impl Catalog {
    pub fn live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    pub fn set_live(&self, on: bool) {
        self.live.store(on, Ordering::SeqCst);
        self.version.fetch_add(1, Ordering::SeqCst);
    }

    /// Changes with every change of the entries.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// A snapshot of every entry.
    pub fn all(&self) -> BTreeMap<String, Entry> {
        self.entries.read().expect("not poisoned").clone()
    }

    /// One guest's entry while the watcher keeps the entries current.
    pub fn get(&self, name: &str) -> Option<Entry> {
        if !self.live() {
            return None;
        }
        self.entries
            .read()
            .expect("not poisoned")
            .get(name)
            .cloned()
    }

    /// Every guest's context id but `except`'s, from the entries (no file read) while the
    /// watcher keeps them current; None otherwise. A guest whose tree does not parse is asked
    /// its `context` file alone, as a context clash check would read it.
    pub fn contexts(&self, roots: &Roots, except: &str) -> Option<Vec<(String, u32)>> {
        if !self.live() {
            return None;
        }
        let e = self.entries.read().expect("not poisoned");
        Some(
            e.iter()
                .filter(|(n, _)| n.as_str() != except)
                .filter_map(|(n, l)| match &**l {
                    Ok(l) => Some((n.clone(), l.config.context)),
                    Err(_) => config::context_of(roots, n).map(|c| (n.clone(), c)),
                })
                .collect(),
        )
    }

    /// (Re)reads one guest; gone from disk means gone from the catalog. Returns the new entry.
    pub fn reload(&self, roots: &Roots, name: &str) -> Option<Entry> {
        let mut e = self.entries.write().expect("not poisoned");
        self.version.fetch_add(1, Ordering::SeqCst);
        if !config::is_guest(&roots.config_root, name) {
            e.remove(name);
            return None;
        }
        let entry: Entry = Arc::new(config::load_guest(roots, name));
        e.insert(name.to_string(), entry.clone());
        Some(entry)
    }

    /// Re-reads everything: at start, after a queue overflow, when .defaults changed.
    pub fn reload_all(&self, roots: &Roots) -> Vec<String> {
        let names = config::guest_names(&roots.config_root).unwrap_or_default();
        let fresh: BTreeMap<String, Entry> = names
            .iter()
            .map(|n| (n.clone(), Arc::new(config::load_guest(roots, n))))
            .collect();
        *self.entries.write().expect("not poisoned") = fresh;
        self.version.fetch_add(1, Ordering::SeqCst);
        names
    }
}
