//! The daemon's shared state: where things live and what it knows about each guest.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use proto::{ConfigProblem, GuestList, GuestStatus, GuestSummary, ManagerError, Validation};

use crate::config::{self, ConfigError, Loaded, Roots};
use crate::guest::load::{self, Loader};
use crate::guest::Guests;
use crate::isolate::cgroup::{GuestCgroup, Layout};
use crate::orchestrate::catalog::{Catalog, Entry};
use crate::stage::spawn::StageImage;

/// Paths and policy, fixed at start-up.
#[derive(Debug, Clone)]
pub struct Options {
    pub config_root: PathBuf,
    pub vdir_base: Option<PathBuf>,
    pub run_dir: PathBuf,
    /// State kept across reboots (unify's hash store).
    pub state_dir: PathBuf,
    /// Where user-namespace guests' id ranges come from (guest/idrange.rs).
    pub id_window: crate::guest::idrange::Window,
    pub socket: PathBuf,
    /// Group whose members may make read-only calls.
    pub read_gid: Option<u32>,
    /// Guests' cgroups are OWN/PREFIX/NAME in every hierarchy (OWN: the daemon's cgroup).
    pub cgroup_prefix: String,
}

pub struct Daemon {
    pub opts: Options,
    roots: Roots,
    pub guests: Guests,
    /// Parsed configs, current while the watcher runs.
    pub catalog: Catalog,
    image: OnceLock<Result<Arc<StageImage>, String>>,
    layout: OnceLock<Result<Layout, String>>,
    /// The /proc file server's supervisor runs (guest::virtmem).
    pub procfs_supervised: std::sync::atomic::AtomicBool,
    /// The last List reply, with the catalog and state versions it was built from.
    list_cache: std::sync::Mutex<Option<ListCache>>,
}

struct ListCache {
    versions: (u64, u64),
    list: GuestList,
}

impl Daemon {
    pub fn new(opts: Options) -> Self {
        let roots = Roots {
            config_root: opts.config_root.clone(),
            vdir_base: opts.vdir_base.clone(),
        };
        Self {
            opts,
            roots,
            guests: Guests::default(),
            catalog: Catalog::default(),
            list_cache: Default::default(),
            image: OnceLock::new(),
            layout: OnceLock::new(),
            procfs_supervised: Default::default(),
        }
    }

    /// The sealed copy of our binary that stages run from, made on first use.
    pub fn image(&self) -> Result<Arc<StageImage>, String> {
        self.image
            .get_or_init(|| StageImage::new().map(Arc::new).map_err(|e| e.to_string()))
            .clone()
    }

    pub fn layout(&self) -> Result<&Layout, String> {
        self.layout
            .get_or_init(|| Layout::detect().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// On a pure cgroup v2 host, a daemon alone in its cgroup (as under systemd with
    /// Delegate=yes) moves into a leaf of it, OWN/vserverd-daemon: v2 lets a cgroup hand
    /// controllers to its children only when it has no processes of its own. Guests go to
    /// OWN/PREFIX/NAME, computed from OWN as it was before the move.
    pub fn settle_cgroup(&self) {
        let Ok(layout) = self.layout() else {
            return;
        };
        if layout.kind() != "v2" {
            return;
        }
        let Some(h) = layout.v2() else {
            return;
        };
        let own = h.mount.join(&h.own);
        let procs = std::fs::read_to_string(own.join("cgroup.procs")).unwrap_or_default();
        let me = std::process::id().to_string();
        if procs.lines().any(|p| p.trim() != me) {
            tracing::info!(
                "{} has other processes: guests get no cgroup v2 controllers (run vserverd as \
                 its own systemd service with Delegate=yes)",
                own.display()
            );
            return;
        }
        let leaf = own.join(crate::isolate::cgroup::DAEMON_LEAF);
        let moved = std::fs::create_dir_all(&leaf)
            .and_then(|()| std::fs::write(leaf.join("cgroup.procs"), &me));
        match moved {
            Ok(()) => tracing::info!("moved into {}", leaf.display()),
            Err(e) => tracing::warn!("cannot move into {}: {e}", leaf.display()),
        }
    }

    /// Gives the helpers (the /proc server, the console keeper) cgroups of their own beside the
    /// guests', and moves those an earlier daemon started into them. `placed_in_leaf`: systemd
    /// started us in our v2 leaf (see detached::set_home).
    pub fn confine_helpers(&self, placed_in_leaf: bool) {
        let Ok(layout) = self.layout() else {
            return;
        };
        crate::detached::set_home(
            layout.clone(),
            self.opts.cgroup_prefix.clone(),
            placed_in_leaf,
        );
        let run = &self.opts.run_dir;
        for (name, pid) in [
            (crate::procfs::NAME, crate::procfs::server_pid(run)),
            (crate::console::NAME, crate::console::keeper_pid(run)),
        ] {
            if let Some(pid) = pid {
                if let Err(e) = crate::detached::confine(name, pid) {
                    tracing::warn!("{name} runs without limits of its own: {e}");
                }
            }
        }
    }

    /// A guest's cgroups, in its shared group (`cgroup/name`) when it has one.
    pub fn cgroup_in(&self, name: &str, group: Option<&str>) -> Result<GuestCgroup, String> {
        Ok(self
            .layout()?
            .guest_in(&self.opts.cgroup_prefix, group, name))
    }

    pub fn cgroup(&self, name: &str) -> Result<GuestCgroup, String> {
        Ok(self.layout()?.guest(&self.opts.cgroup_prefix, name))
    }

    /// The per-guest loader (guest/load.rs) over this daemon's roots, catalog and guests.
    pub fn loader(&self) -> Loader<'_> {
        Loader {
            roots: &self.roots,
            catalog: &self.catalog,
            guests: &self.guests,
        }
    }

    pub fn check_name(&self, name: &str) -> Result<(), ManagerError> {
        self.loader().check_name(name)
    }

    /// A guest's config for a lifecycle call (guest/load.rs).
    pub fn load(&self, name: &str) -> Result<Loaded, ManagerError> {
        self.loader().load(name)
    }

    /// A guest's config for a call that only reads (guest/load.rs).
    pub fn load_for_read(&self, name: &str) -> Result<Loaded, ManagerError> {
        self.loader().load_for_read(name)
    }

    pub fn roots(&self) -> Roots {
        self.roots.clone()
    }

    pub fn guest_names(&self) -> Vec<String> {
        self.loader().names()
    }

    /// Check: every error and warning of guest `name`'s tree (the context clash among them), or
    /// of every guest's without a name. Fresh parses, not the catalog's: an admin checks what
    /// is on disk now.
    ///
    /// `deep` also walks each guest's root (O(files), so never part of a plain check) for ids a
    /// user namespace cannot map.
    pub fn check(
        &self,
        name: Option<&str>,
        deep: bool,
    ) -> Result<proto::CheckReport, ManagerError> {
        let names = match name {
            Some(n) => {
                self.check_name(n)?;
                if !self.loader().exists(n) {
                    return Err(ManagerError::NoSuchGuest { name: n.into() });
                }
                vec![n.to_string()]
            }
            None => self.loader().names(),
        };
        let guests = names
            .into_iter()
            .map(|n| {
                let c = config::check_guest(&self.roots, &n);
                let mut errors: Vec<ConfigProblem> = c.errors.iter().map(load::problem).collect();
                if let Some(cfg) = &c.config {
                    if let Err(ManagerError::InvalidConfig {
                        file,
                        line,
                        message,
                        code,
                    }) = self.loader().refuse_clash(&n, cfg.context)
                    {
                        errors.push(ConfigProblem {
                            file,
                            line,
                            message,
                            code: code.unwrap_or_default(),
                        });
                    }
                }
                let mut warnings: Vec<ConfigProblem> =
                    c.warnings.iter().map(load::problem).collect();
                if let Some(cfg) = &c.config {
                    warnings.extend(self.host_warnings(cfg));
                    if deep {
                        warnings.extend(crate::guest::idrange::unmappable_warning(&cfg.vdir));
                    }
                }
                proto::GuestCheck {
                    name: n,
                    errors,
                    warnings,
                }
            })
            .collect();
        Ok(proto::CheckReport { guests })
    }

    /// Every guest, as List answers. Built again only when a config or a state changed since
    /// the last call (while the watcher keeps the catalog current): polling clients cost
    /// little however many guests there are.
    pub fn list(&self) -> GuestList {
        // The versions before the build: a change during it makes the next call build again.
        let versions = (self.catalog.version(), self.guests.version());
        let live = self.catalog.live();
        if live {
            if let Some(c) = &*self.list_cache.lock().expect("not poisoned") {
                if c.versions == versions {
                    return c.list.clone();
                }
            }
        }
        let list = self.build_list();
        if live {
            *self.list_cache.lock().expect("not poisoned") = Some(ListCache {
                versions,
                list: list.clone(),
            });
        }
        list
    }

    fn build_list(&self) -> GuestList {
        let mut loaded: BTreeMap<String, Entry> = if self.catalog.live() {
            self.catalog.all()
        } else {
            self.loader()
                .names()
                .into_iter()
                .map(|n| {
                    let l = config::load_guest(&self.roots, &n);
                    (n, Arc::new(l))
                })
                .collect()
        };
        // A running guest whose config tree was deleted is still listed, flagged.
        for n in self.guests.running_names() {
            loaded.entry(n.clone()).or_insert_with(|| {
                Arc::new(Err(ConfigError::file(
                    config::Code::ConfigGone,
                    &self.roots.config_root.join(&n),
                    "the config tree is gone; the guest still runs",
                )))
            });
        }
        let contexts: Vec<(String, u32)> = loaded
            .iter()
            .filter_map(|(n, l)| {
                l.as_ref()
                    .as_ref()
                    .ok()
                    .map(|l| (n.clone(), l.config.context))
            })
            .collect();
        let conflicts = config::context_conflicts(&contexts);
        let guests = loaded
            .into_iter()
            .map(|(name, l)| match l.as_ref() {
                Ok(l) => {
                    let c = &l.config;
                    let conflict = conflicts
                        .iter()
                        .find(|(ctx, _)| *ctx == c.context)
                        .and_then(|(ctx, users)| self.loader().context_clash(&name, *ctx, users));
                    GuestSummary {
                        state: self.guests.state(&name),
                        name,
                        context: Some(c.context),
                        mark: c.init.mark.clone(),
                        depends: c.init.depends.clone(),
                        disabled: c.disabled,
                        config_error: conflict,
                    }
                }
                Err(e) => GuestSummary {
                    state: self.guests.state(&name),
                    name,
                    context: None,
                    mark: vec![],
                    depends: vec![],
                    disabled: false,
                    config_error: Some(load::problem(e)),
                },
            })
            .collect();
        // Kept and sent again while nothing changes only when the watcher keeps the catalog.
        GuestList {
            guests: if self.catalog.live() {
                proto::Guests::serialized(guests)
            } else {
                guests.into()
            },
        }
    }

    pub fn status(&self, name: &str) -> Result<GuestStatus, ManagerError> {
        self.check_name(name)?;
        let (mut unbounded, mut no_route_out, mut network_fallback) = (None, None, None);
        let mut kernel_lacks = None;
        let (context, vdir, config_error) = match self.load_for_read(name) {
            Ok(l) => {
                let lacks: Vec<String> = self
                    .kernel_warnings(&l.config)
                    .into_iter()
                    .map(|w| w.message)
                    .collect();
                kernel_lacks = (!lacks.is_empty()).then(|| lacks.join("; "));
                unbounded = config::unbounded(&l.config);
                no_route_out = config::no_route_out(&l.config).map(|(_, _, m)| m);
                if config::netmode::shared_stack(&l.config) {
                    let asked = l.config.netmode == config::netmode::NetMode::Shared;
                    network_fallback = crate::guest::sharednet::unusable(self, asked)
                        .map(|why| crate::guest::sharednet::fallback_warning(&why, asked));
                }
                (
                    Some(l.config.context),
                    l.config.vdir.display().to_string(),
                    None,
                )
            }
            Err(ManagerError::InvalidConfig {
                file,
                line,
                message,
                code,
            }) => (
                None,
                String::new(),
                Some(ConfigProblem {
                    file,
                    line,
                    message,
                    code: code.unwrap_or_default(),
                }),
            ),
            Err(ManagerError::NoSuchGuest { .. }) if self.guests.running(name).is_some() => (
                None,
                String::new(),
                Some(ConfigProblem {
                    file: self.roots.config_root.join(name).display().to_string(),
                    line: None,
                    message: "the config tree is gone; the guest still runs".into(),
                    code: config::Code::ConfigGone.as_str().into(),
                }),
            ),
            Err(e) => return Err(e),
        };
        let run = self.guests.running(name);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Ok(GuestStatus {
            name: name.into(),
            context: run.as_ref().map(|r| r.state.context).or(context),
            state: self.guests.state(name),
            vdir,
            config_dir: self.roots.config_root.join(name).display().to_string(),
            init_pid: run.as_ref().map(|r| r.state.init_pid as u32),
            processes: run.as_ref().map(|r| r.state.cgroup.pids().len() as u32),
            uptime_seconds: run.as_ref().map(|r| (now - r.state.started).max(0.0)),
            restart_needed: self.guests.restart_needed(name),
            config_error,
            message: self.guests.last(name),
            unbounded,
            no_route_out,
            network_fallback,
            kernel_lacks,
        })
    }

    /// vserver-stat: every running guest, by context id.
    pub fn stat(&self) -> proto::StatList {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let mut guests: Vec<proto::GuestStat> = self
            .guests
            .running_names()
            .iter()
            .filter_map(|n| self.guests.running(n))
            .map(|r| crate::guest::stat::of(&r, now))
            .collect();
        guests.sort_by_key(|g| g.context);
        proto::StatList { guests }
    }

    /// What the host can give, which the pure config load cannot know: a shared-stack guest's
    /// nodev addresses the host lacks, and a fallback to a namespace where the host lacks
    /// cgroup BPF. Said by check, validate and the start alike.
    fn host_warnings(&self, config: &config::GuestConfig) -> Vec<ConfigProblem> {
        let mut warnings = self.kernel_warnings(config);
        if !crate::config::netmode::shared_stack(config) {
            return warnings;
        }
        let planned = crate::guest::sharednet::plan(config, 0).ok();
        let listing = crate::guest::sharednet::host_addresses().unwrap_or_default();
        for (rel, message) in planned
            .iter()
            .flat_map(|s| crate::guest::sharednet::nodev_warnings(s, &listing))
        {
            warnings.push(ConfigProblem {
                file: config.cfg_dir.join(rel).display().to_string(),
                line: None,
                message,
                code: crate::config::Code::NodevNotLocal.as_str().into(),
            });
        }
        let asked = config.netmode == crate::config::netmode::NetMode::Shared;
        let unusable = crate::guest::sharednet::unusable(self, asked);
        if unusable.is_none() {
            let own = config.cfg_dir.join("apps/vserverd/netmode");
            let file = if own.exists() {
                own
            } else {
                self.roots().defaults().join("apps/vserverd/netmode")
            };
            warnings.push(ConfigProblem {
                file: file.display().to_string(),
                line: None,
                message: crate::guest::sharednet::asked_gap_warning(),
                code: crate::config::Code::AbstractUnconfined.as_str().into(),
            });
            if let Some(message) = crate::guest::hostwild::current(self) {
                warnings.push(ConfigProblem {
                    file: config.cfg_dir.join("interfaces").display().to_string(),
                    line: None,
                    message,
                    code: crate::config::Code::HostWildcard.as_str().into(),
                });
            }
        }
        if let Some(why) = unusable {
            let own = config.cfg_dir.join("apps/vserverd/netmode");
            let file = if !asked {
                config.cfg_dir.join("interfaces")
            } else if own.exists() {
                own
            } else {
                self.roots().defaults().join("apps/vserverd/netmode")
            };
            warnings.push(ConfigProblem {
                file: file.display().to_string(),
                line: None,
                message: crate::guest::sharednet::fallback_warning(&why, asked),
                code: crate::config::Code::NetworkFallback.as_str().into(),
            });
        }
        warnings
    }

    /// What the running kernel lacks of kernel-patch/ that `config` would use (probed, never
    /// read off the version): per-cgroup load averages for a virt_load guest, copy-on-write
    /// links for a guest on ext4 that asks for unification (apps/vunify/).
    fn kernel_warnings(&self, config: &config::GuestConfig) -> Vec<ConfigProblem> {
        use crate::isolate::kfeatures;
        let mut out = Vec::new();
        if config.cflags & config::names::FLAG_VIRT_LOAD != 0 {
            let parent = self
                .cgroup_in(&config.name, config.cgroup.name.as_deref())
                .ok()
                .and_then(|cg| {
                    cg.controller_dir("cpu")
                        .and_then(|d| d.parent())
                        .map(Into::into)
                });
            let parent: Option<std::path::PathBuf> = parent;
            if kfeatures::cgroup_loadavg(parent.as_deref()) == Some(false) {
                out.push(ConfigProblem {
                    file: config.cfg_dir.join("cflags").display().to_string(),
                    line: None,
                    message: kfeatures::lacks_loadavg().into(),
                    code: config::Code::KernelNoLoadavg.as_str().into(),
                });
            }
        }
        out.extend(quota_overrun(config));
        let vunify = [
            config.cfg_dir.join("apps/vunify"),
            self.roots().defaults().join("apps/vunify"),
        ]
        .into_iter()
        .find(|p| p.is_dir());
        if let Some(v) = vunify {
            // f_type's width differs between architectures.
            #[allow(clippy::unnecessary_cast)]
            let ext4 = rustix::fs::statfs(&config.vdir)
                .is_ok_and(|s| s.f_type as i64 == crate::sys::fs::EXT4_SUPER_MAGIC);
            if ext4 && !kfeatures::cowlink(&self.opts.state_dir) {
                out.push(ConfigProblem {
                    file: v.display().to_string(),
                    line: None,
                    message: kfeatures::lacks_cowlink().into(),
                    code: config::Code::KernelNoCowlink.as_str().into(),
                });
            }
        }
        out
    }

    pub fn validate(&self, name: &str) -> Result<Validation, ManagerError> {
        let loaded = self.load(name)?;
        let mut warnings: Vec<ConfigProblem> = loaded.warnings.iter().map(load::problem).collect();
        warnings.extend(self.host_warnings(&loaded.config));
        Ok(Validation {
            config: proto::GuestConfig::from(&loaded.config),
            warnings,
        })
    }
}

/// A guest whose disk limit is on ext4 and that keeps CAP_SYS_RESOURCE in its bounding set,
/// without a user namespace (where the capability is not the host's): ext4 lets such a
/// process write past a quota (its reserve for root), so the limit does not hold. One statfs
/// per dlimits/ entry: check and a start's load stay O(1) per guest.
fn quota_overrun(c: &config::GuestConfig) -> Vec<ConfigProblem> {
    if c.bcaps & (1 << config::names::CAP_SYS_RESOURCE) == 0 || c.spaces.user {
        return Vec::new();
    }
    c.dlimits
        .iter()
        .filter(|d| !(d.space_total == u64::MAX && d.inodes_total == u64::MAX))
        // f_type's width differs between architectures.
        .filter(|d| {
            #[allow(clippy::unnecessary_cast)]
            let ext4 = rustix::fs::statfs(d.directory.as_str())
                .is_ok_and(|s| s.f_type as i64 == crate::sys::fs::EXT4_SUPER_MAGIC);
            ext4
        })
        .map(|d| ConfigProblem {
            file: c.cfg_dir.join("bcapabilities").display().to_string(),
            line: None,
            message: format!(
                "SYS_RESOURCE lets guest root write past its disk limit on {} (ext4 lets \
                 CAP_SYS_RESOURCE overrun quotas); drop it from bcapabilities, or give the \
                 guest a user namespace (spaces/user)",
                d.directory
            ),
            code: config::Code::QuotaOverrun.as_str().into(),
        })
        .collect()
}
