//! The parsed config of every guest, kept current by the watcher so that List does not parse
//! every tree on every call. Lifecycle calls still parse afresh: they must act on what is on
//! disk this instant.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::config::{self, ConfigError, Loaded, Roots};

pub type Entry = Arc<Result<Loaded, ConfigError>>;

/// Guest names by context id.
type ByContext = HashMap<u32, Vec<String>>;

#[derive(Default)]
pub struct Catalog {
    entries: RwLock<BTreeMap<String, Entry>>,
    /// Set while a watcher keeps the entries current; otherwise callers parse themselves.
    live: AtomicBool,
    /// Counts changes, so that what is derived from the entries can be cached (List).
    version: AtomicU64,
    /// Guests by context id, as of a version (context_users).
    by_context: Mutex<Option<(u64, ByContext)>>,
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

    /// The guests whose context id is `ctx`, while the watcher keeps the entries current;
    /// None otherwise. From an index built once per change of the entries (a guest whose tree
    /// does not parse is asked its `context` file alone, as the clash check would read it), so
    /// a per-guest call costs the same whatever the number of guests.
    pub fn context_users(&self, roots: &Roots, ctx: u32) -> Option<Vec<String>> {
        if !self.live() {
            return None;
        }
        let version = self.version();
        let mut idx = self.by_context.lock().expect("not poisoned");
        if idx.as_ref().is_none_or(|(v, _)| *v != version) {
            let e = self.entries.read().expect("not poisoned");
            let mut m = ByContext::new();
            for (n, l) in e.iter() {
                let c = match &**l {
                    Ok(l) => Some(l.config.context),
                    Err(_) => config::context_of(roots, n),
                };
                if let Some(c) = c {
                    m.entry(c).or_default().push(n.clone());
                }
            }
            *idx = Some((version, m));
        }
        Some(
            idx.as_ref()
                .and_then(|(_, m)| m.get(&ctx).cloned())
                .unwrap_or_default(),
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
