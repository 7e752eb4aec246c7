//! Loading one guest's config for a call: the tree parsed (or the catalog's parse, for calls
//! that only read) plus the one check that needs the other guests — a context id two guests
//! claim is an error of the one whose change made the clash. The config parsing itself is
//! config/ (pure); this adds the host's view: which guests exist, which run.

use proto::{ConfigProblem, ManagerError};

use super::Guests;
use crate::config::{self, ConfigError, Loaded, Roots};
use crate::orchestrate::catalog::Catalog;

/// What loading needs of the daemon's state: where the trees are, the watcher's catalog, and
/// which guests run (the running one keeps a clashing context).
pub struct Loader<'a> {
    pub roots: &'a Roots,
    pub catalog: &'a Catalog,
    pub guests: &'a Guests,
}

pub fn problem(e: &ConfigError) -> ConfigProblem {
    ConfigProblem {
        file: e.file.display().to_string(),
        line: e.line,
        message: e.message.clone(),
        code: e.code.as_str().into(),
    }
}

pub fn invalid(e: &ConfigError) -> ManagerError {
    ManagerError::InvalidConfig {
        file: e.file.display().to_string(),
        line: e.line,
        message: e.message.clone(),
        code: Some(e.code.as_str().into()),
    }
}

/// The first of a tree's errors, saying how many more there are and where to see them all.
fn refused(name: &str, errors: &[ConfigError]) -> ManagerError {
    let mut e = invalid(&errors[0]);
    if let (ManagerError::InvalidConfig { message, .. }, more @ 1..) = (&mut e, errors.len() - 1) {
        message.push_str(&format!(
            " (and {more} more: `vserverctl check {name}` lists them all)"
        ));
    }
    e
}

impl Loader<'_> {
    /// NoSuchGuest unless `name` has a config tree or runs.
    pub fn check_name(&self, name: &str) -> Result<(), ManagerError> {
        if self.exists(name) || self.guests.running(name).is_some() {
            Ok(())
        } else {
            Err(ManagerError::NoSuchGuest { name: name.into() })
        }
    }

    pub fn names(&self) -> Vec<String> {
        config::guest_names(&self.roots.config_root).unwrap_or_else(|e| {
            tracing::warn!("cannot read {}: {e}", self.roots.config_root.display());
            Vec::new()
        })
    }

    pub fn exists(&self, name: &str) -> bool {
        config::is_guest(&self.roots.config_root, name)
    }

    /// Loads a guest, adding the cross-guest check (a context id used twice is an error for the
    /// guest whose change made the clash).
    pub fn load(&self, name: &str) -> Result<Loaded, ManagerError> {
        if !self.exists(name) {
            return Err(ManagerError::NoSuchGuest { name: name.into() });
        }
        let c = config::check_guest(self.roots, name);
        let Some(config) = c.config.filter(|_| c.errors.is_empty()) else {
            return Err(if c.errors.is_empty() {
                ManagerError::NoSuchGuest { name: name.into() }
            } else {
                refused(name, &c.errors)
            });
        };
        self.refuse_clash(name, config.context)?;
        Ok(Loaded {
            config,
            warnings: c.warnings,
        })
    }

    /// [`Self::load`] for calls that only read (Status): the catalog's parse while the watcher
    /// keeps it current, so the call's cost does not depend on the tree's size or the number
    /// of guests; a fresh parse otherwise. Lifecycle calls use `load`: they act on what is on
    /// disk this instant.
    pub fn load_for_read(&self, name: &str) -> Result<Loaded, ManagerError> {
        let Some(entry) = self.catalog.get(name) else {
            return self.load(name);
        };
        let loaded = (*entry).clone().map_err(|e| invalid(&e))?;
        self.refuse_clash(name, loaded.config.context)?;
        Ok(loaded)
    }

    /// InvalidConfig when `name` shares context `ctx` with another guest and is not the one
    /// that keeps it.
    pub fn refuse_clash(&self, name: &str, ctx: u32) -> Result<(), ManagerError> {
        // The guests that share the id, from the catalog's index while the watcher keeps it
        // current: a per-guest call must not read every guest's tree (docs/orchestration.md).
        let users: Vec<String> = match self.catalog.context_users(self.roots, ctx) {
            Some(mut u) => {
                u.retain(|n| n != name);
                u.push(name.to_string());
                u
            }
            None => {
                let all: Vec<(String, u32)> = self
                    .names()
                    .into_iter()
                    .filter(|n| n != name)
                    .filter_map(|n| config::context_of(self.roots, &n).map(|c| (n, c)))
                    .chain(std::iter::once((name.to_string(), ctx)))
                    .collect();
                config::context_conflicts(&all)
                    .into_iter()
                    .find(|(c, _)| *c == ctx)
                    .map(|(_, u)| u)
                    .unwrap_or_default()
            }
        };
        if users.len() > 1 {
            if let Some(p) = self.context_clash(name, ctx, &users) {
                return Err(ManagerError::InvalidConfig {
                    file: p.file,
                    line: p.line,
                    message: p.message,
                    code: Some(p.code),
                });
            }
        }
        Ok(())
    }

    /// The problem of guest `name` when it shares context `ctx` with `users` (itself among
    /// them): None for the guest that keeps it ([`config::context_holder`]).
    pub fn context_clash(&self, name: &str, ctx: u32, users: &[String]) -> Option<ConfigProblem> {
        let file = |n: &str| self.roots.config_root.join(n).join("context");
        let ranked: Vec<(String, bool, std::time::SystemTime)> = users
            .iter()
            .map(|n| {
                let mtime = std::fs::metadata(file(n))
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (n.clone(), self.guests.running(n).is_some(), mtime)
            })
            .collect();
        let holder = config::context_holder(&ranked)?;
        (holder != name).then(|| ConfigProblem {
            file: file(name).display().to_string(),
            line: Some(1),
            message: format!(
                "context id {ctx} is already used by {holder}: this guest is refused until its \
                 context changes"
            ),
            code: config::Code::ContextClash.as_str().into(),
        })
    }
}
