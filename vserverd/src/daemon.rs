//! The daemon's shared state: where things live and what it knows about each guest.

use std::collections::BTreeMap;
use std::path::PathBuf;

use proto::{
    ConfigProblem, GuestList, GuestState, GuestStatus, GuestSummary, ManagerError, Validation,
};

use crate::config::{self, ConfigError, Loaded, Roots};

/// Paths and policy, fixed at start-up.
#[derive(Debug, Clone)]
pub struct Options {
    pub config_root: PathBuf,
    pub vdir_base: Option<PathBuf>,
    pub run_dir: PathBuf,
    pub socket: PathBuf,
    /// Group whose members may make read-only calls.
    pub read_gid: Option<u32>,
}

pub struct Daemon {
    pub opts: Options,
    roots: Roots,
}

fn problem(e: &ConfigError) -> ConfigProblem {
    ConfigProblem {
        file: e.file.display().to_string(),
        line: e.line,
        message: e.message.clone(),
    }
}

fn invalid(e: &ConfigError) -> ManagerError {
    ManagerError::InvalidConfig {
        file: e.file.display().to_string(),
        line: e.line,
        message: e.message.clone(),
    }
}

impl Daemon {
    pub fn new(opts: Options) -> Self {
        let roots = Roots {
            config_root: opts.config_root.clone(),
            vdir_base: opts.vdir_base.clone(),
        };
        Self { opts, roots }
    }

    fn names(&self) -> Vec<String> {
        config::guest_names(&self.roots.config_root).unwrap_or_else(|e| {
            tracing::warn!("cannot read {}: {e}", self.roots.config_root.display());
            Vec::new()
        })
    }

    fn exists(&self, name: &str) -> bool {
        !name.is_empty()
            && !name.starts_with('.')
            && !name.contains('/')
            && self.roots.config_root.join(name).is_dir()
    }

    /// Loads a guest, adding the cross-guest check (a context id used twice is an error for both).
    fn load(&self, name: &str) -> Result<Loaded, ManagerError> {
        if !self.exists(name) {
            return Err(ManagerError::NoSuchGuest { name: name.into() });
        }
        let loaded = config::load_guest(&self.roots, name).map_err(|e| invalid(&e))?;
        let ctx = loaded.config.context;
        let others: Vec<(String, u32)> = self
            .names()
            .into_iter()
            .filter(|n| n != name)
            .filter_map(|n| {
                config::load_guest(&self.roots, &n)
                    .ok()
                    .map(|l| (n, l.config.context))
            })
            .chain(std::iter::once((name.to_string(), ctx)))
            .collect();
        if let Some((_, users)) = config::context_conflicts(&others)
            .into_iter()
            .find(|(c, _)| *c == ctx)
        {
            let file = self.roots.config_root.join(name).join("context");
            return Err(ManagerError::InvalidConfig {
                file: file.display().to_string(),
                line: Some(1),
                message: format!(
                    "context id {ctx} is used by several guests: {}",
                    users.join(", ")
                ),
            });
        }
        Ok(loaded)
    }

    pub fn list(&self) -> GuestList {
        let loaded: BTreeMap<String, Result<Loaded, ConfigError>> = self
            .names()
            .into_iter()
            .map(|n| {
                let l = config::load_guest(&self.roots, &n);
                (n, l)
            })
            .collect();
        let contexts: Vec<(String, u32)> = loaded
            .iter()
            .filter_map(|(n, l)| l.as_ref().ok().map(|l| (n.clone(), l.config.context)))
            .collect();
        let conflicts = config::context_conflicts(&contexts);
        let guests =
            loaded
                .into_iter()
                .map(|(name, l)| match l {
                    Ok(l) => {
                        let c = &l.config;
                        let conflict = conflicts.iter().find(|(ctx, _)| *ctx == c.context).map(
                            |(ctx, users)| ConfigProblem {
                                file: self
                                    .roots
                                    .config_root
                                    .join(&name)
                                    .join("context")
                                    .display()
                                    .to_string(),
                                line: Some(1),
                                message: format!(
                                    "context id {ctx} is used by several guests: {}",
                                    users.join(", ")
                                ),
                            },
                        );
                        GuestSummary {
                            name,
                            context: Some(c.context),
                            state: GuestState::Stopped,
                            mark: c.init.mark.clone(),
                            depends: c.init.depends.clone(),
                            disabled: c.disabled,
                            config_error: conflict,
                        }
                    }
                    Err(e) => GuestSummary {
                        name,
                        context: None,
                        state: GuestState::Stopped,
                        mark: vec![],
                        depends: vec![],
                        disabled: false,
                        config_error: Some(problem(&e)),
                    },
                })
                .collect();
        GuestList { guests }
    }

    pub fn status(&self, name: &str) -> Result<GuestStatus, ManagerError> {
        if !self.exists(name) {
            return Err(ManagerError::NoSuchGuest { name: name.into() });
        }
        let (context, vdir, config_error) = match self.load(name) {
            Ok(l) => (
                Some(l.config.context),
                l.config.vdir.display().to_string(),
                None,
            ),
            Err(ManagerError::InvalidConfig {
                file,
                line,
                message,
            }) => (
                None,
                String::new(),
                Some(ConfigProblem {
                    file,
                    line,
                    message,
                }),
            ),
            Err(e) => return Err(e),
        };
        Ok(GuestStatus {
            name: name.into(),
            context,
            state: GuestState::Stopped,
            vdir,
            init_pid: None,
            processes: None,
            uptime_seconds: None,
            restart_needed: false,
            config_error,
        })
    }

    pub fn validate(&self, name: &str) -> Result<Validation, ManagerError> {
        let loaded = self.load(name)?;
        Ok(Validation {
            config: proto::GuestConfig::from(&loaded.config),
            warnings: loaded
                .warnings
                .iter()
                .map(|w| ConfigProblem {
                    file: w.file.display().to_string(),
                    line: w.line,
                    message: w.message.clone(),
                })
                .collect(),
        })
    }
}
