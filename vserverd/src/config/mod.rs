//! The /etc/vservers model: a guest's config tree plus `.defaults` parsed into typed values.
//!
//! Pure code: it reads files and nothing else. Every error names the file and, where there is
//! one, the line, and carries a stable code ([`Code`]). [`check_guest`] goes on past a wrong
//! part of the tree (its default stands in) so that one pass reports every wrong file;
//! [`load_guest`] gives the first. Things that parse but are ignored or cannot be applied on a
//! mainline kernel become warnings. Submodules each read one part of the tree.

mod error;
pub mod exposure;
pub mod fstab;
pub mod init;
pub mod interfaces;
pub mod limits;
pub mod names;
pub mod netmode;
pub mod owner;
pub mod read;
pub mod resources;
pub mod scripts;
pub mod spaces;
pub mod system;
mod wire;

use std::path::{Path, PathBuf};

use error::Result;
pub use error::{Code, ConfigError, Diagnostic, Errors};

/// Where guests are configured and where their roots live.
#[derive(Debug, Clone)]
pub struct Roots {
    pub config_root: PathBuf,
    /// A command-line override; else `.defaults/vdirbase`, else /vservers.
    pub vdir_base: Option<PathBuf>,
}

impl Roots {
    pub fn defaults(&self) -> PathBuf {
        self.config_root.join(".defaults")
    }

    pub fn vdir_base(&self) -> PathBuf {
        self.vdir_base
            .clone()
            .or_else(|| read::link_target(&self.defaults().join("vdirbase")))
            .unwrap_or_else(|| PathBuf::from("/vservers"))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vshelper {
    /// `action`: the method for events without their own handler (default restart).
    pub action: String,
    pub disabled: bool,
    pub debug: bool,
    pub sync_timeout: u32,
    /// Executable per-event handlers (restart, halt, poweroff, …).
    pub handlers: Vec<(String, PathBuf)>,
}

/// A guest's whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestConfig {
    pub name: String,
    pub cfg_dir: PathBuf,
    pub context: u32,
    pub ncontext: Option<u32>,
    pub noncontext: bool,
    pub tag: Option<u32>,
    pub display_name: Option<String>,
    pub vdir: PathBuf,
    /// Target of the `run` symlink (gets "CTX\n" while the guest runs).
    pub run_file: Option<PathBuf>,
    pub cache: Option<PathBuf>,
    pub nice: Option<i32>,
    pub ionice: Option<(u8, Option<u8>)>,
    pub bcaps: u64,
    pub ccaps: u64,
    pub cflags: u64,
    pub nflags: u64,
    pub ncaps: u64,
    /// Namespaces the guest may unshare (`umask`).
    pub umask: u64,
    pub personality: Option<u32>,
    pub badness: Option<i64>,
    pub shell: Option<Vec<String>>,
    pub fstab: Option<Vec<fstab::MountEntry>>,
    pub fstab_remote: Option<Vec<fstab::MountEntry>>,
    pub fstab_local: Option<Vec<fstab::MountEntry>>,
    pub namespace_cleanup: bool,
    pub namespace_cleanup_skip: Vec<String>,
    pub keepfds: bool,
    pub noisy: bool,
    pub disabled: bool,
    pub nocgroup: bool,
    pub nonetns: bool,
    /// apps/vserverd/netmode (netmode.rs).
    pub netmode: netmode::NetMode,
    pub interfaces: interfaces::Interfaces,
    pub ulimits: Vec<limits::Ulimit>,
    pub rlimits: Vec<limits::Rlimit>,
    pub uts: system::Uts,
    pub init: init::Init,
    pub vshelper: Vshelper,
    pub hooks: Vec<scripts::Hook>,
    pub cgroup: resources::Cgroup,
    pub sched: Vec<resources::Bucket>,
    pub cpuset: Option<resources::Cpuset>,
    pub dlimits: Vec<resources::Dlimit>,
    pub sysctl: Vec<resources::Sysctl>,
    pub spaces: spaces::Spaces,
    pub netns: spaces::Netns,
}

/// Whether a folder under the config root names a guest: not hidden (`.defaults`, a build in
/// progress) and not a backup (`NAME.~EPOCH~`, what `build --force` moves aside).
pub fn is_guest_name(n: &str) -> bool {
    !n.is_empty() && !n.starts_with('.') && !n.ends_with('~') && !n.contains('/')
}

/// Whether the folder `name` under the config root is a guest: a name [`is_guest_name`]
/// accepts, and a `vdir`, `context` or `apps/` in it. util-vserver's own guest list required
/// `vdir`; a tree without one is still accepted (its root is then VDIR_BASE/NAME). Other
/// folders (a provisioning tool's shared interface folders, say) are not guests.
pub fn is_guest(config_root: &Path, name: &str) -> bool {
    let d = config_root.join(name);
    is_guest_name(name)
        && d.is_dir()
        && (std::fs::symlink_metadata(d.join("vdir")).is_ok()
            || d.join("context").is_file()
            || d.join("apps").is_dir())
}

/// Every guest: the folders under the config root that [`is_guest`] accepts, sorted.
pub fn guest_names(config_root: &Path) -> std::io::Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(config_root)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_guest(config_root, n))
        .collect();
    v.sort();
    Ok(v)
}

/// Context ids used by more than one guest, with their users.
pub fn context_conflicts(guests: &[(String, u32)]) -> Vec<(u32, Vec<String>)> {
    let mut m: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    for (n, c) in guests {
        m.entry(*c).or_default().push(n.clone());
    }
    m.into_iter().filter(|(_, v)| v.len() > 1).collect()
}

/// Which of the guests sharing a context id keeps it: one that runs, else the one whose
/// `context` file changed longest ago (then by name), so that a clash refuses only the guest
/// whose change made it. `users`: (name, runs, mtime of its context file).
pub fn context_holder(users: &[(String, bool, std::time::SystemTime)]) -> Option<&str> {
    users
        .iter()
        .min_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0)))
        .map(|u| u.0.as_str())
}

#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: GuestConfig,
    pub warnings: Vec<Diagnostic>,
}

/// Files and folders of a guest's config tree we know (others are warned about).
const KNOWN: &[&str] = &[
    "vdir",
    "run",
    "cache",
    "context",
    "ncontext",
    "noncontext",
    "tag",
    "name",
    "nice",
    "ionice",
    "bcapabilities",
    "ccapabilities",
    "cflags",
    "flags",
    "nflags",
    "ncapabilities",
    "umask",
    "capabilities",
    "personality",
    "schedule",
    "badness",
    "shell",
    "fstab",
    "fstab.remote",
    "fstab.local",
    "namespace",
    "nonamespace",
    "namespace-cleanup",
    "nonamespace-cleanup",
    "namespace-cleanup-skip",
    "keepfds",
    "noisy",
    "disabled",
    "nocgroup",
    "nonetns",
    "hostname",
    "domainname",
    "legacy",
    "interfaces",
    "ulimits",
    "rlimits",
    "uts",
    "apps",
    "scripts",
    "sched",
    "dlimits",
    "sysctl",
    "cpuset",
    "cgroup",
    "spaces",
    "netns",
];

fn context_id(file: &Path, required: bool, cfg: &Path) -> Result<Option<u32>> {
    match read::scalar(file)? {
        None if required => Err(ConfigError::file(
            Code::ContextMissing,
            file,
            format!(
                "Dynamic Context IDs are not supported, you must set Context ID in {}/context",
                cfg.display()
            ),
        )),
        None => Ok(None),
        Some(s) => {
            let v = read::parse_int(&s).ok_or_else(|| {
                ConfigError::at(
                    Code::ContextInvalid,
                    file,
                    1,
                    format!("expected a context id, got {s:?}"),
                )
            })?;
            if !(2..=65535).contains(&v) {
                return Err(ConfigError::at(
                    Code::ContextRange,
                    file,
                    1,
                    format!("context id {v} is out of range (2-65535)"),
                ));
            }
            Ok(Some(v as u32))
        }
    }
}

fn mask(file: &Path, table: &names::Table, default: u64) -> Result<u64> {
    Ok(match read::list(file)? {
        None => default,
        Some(lines) => table.parse(file, &lines)?.apply(default),
    })
}

fn vshelper(cfg: &Path, def: &Path) -> Result<Vshelper> {
    let c = cfg.join("apps/vshelper");
    let d = def.join("apps/vshelper");
    let action = read::scalar(&c.join("action"))?
        .or(read::scalar(&d.join("action"))?)
        .unwrap_or_else(|| "restart".into());
    let timeout_file = if read::flag(&c.join("sync-timeout")) {
        c.join("sync-timeout")
    } else {
        d.join("sync-timeout")
    };
    let sync_timeout = match read::int(&timeout_file)? {
        None => 30,
        Some(t) if (0..=86400).contains(&t) => t as u32,
        Some(t) => {
            return Err(ConfigError::at(
                Code::VshelperTimeout,
                &timeout_file,
                1,
                format!("sync-timeout {t} is out of range"),
            ))
        }
    };
    let mut handlers = vec![];
    for ev in [
        "restart", "halt", "poweroff", "swsusp", "restart2", "shutdown",
    ] {
        for base in [&c, &d] {
            if let Ok(s) = std::fs::metadata(base.join(ev)) {
                use std::os::unix::fs::PermissionsExt;
                if s.is_file() && s.permissions().mode() & 0o111 != 0 {
                    handlers.push((ev.to_string(), base.join(ev)));
                    break;
                }
            }
        }
    }
    Ok(Vshelper {
        action,
        disabled: read::flag(&c.join("disabled")) || read::flag(&d.join("disabled")),
        debug: read::flag(&c.join("debug")) || read::flag(&d.join("debug")),
        sync_timeout,
        handlers,
    })
}

/// Only a guest's context id (for the cross-guest uniqueness check, which must not parse
/// every other guest's whole tree); None when it has no valid one.
pub fn context_of(roots: &Roots, name: &str) -> Option<u32> {
    let cfg = roots.config_root.join(name);
    context_id(&cfg.join("context"), true, &cfg).ok().flatten()
}

/// Loads one guest's tree (`roots.config_root/name`) with `.defaults`; the first error stops
/// it ([`check_guest`] has them all).
pub fn load_guest(roots: &Roots, name: &str) -> std::result::Result<Loaded, ConfigError> {
    let c = check_guest(roots, name);
    match (c.config, c.errors.into_iter().next()) {
        (Some(config), None) => Ok(Loaded {
            config,
            warnings: c.warnings,
        }),
        (_, Some(e)) => Err(e),
        // check_guest gives a config whenever it found no error.
        (None, None) => Err(ConfigError::file(
            Code::GuestMissing,
            &roots.config_root.join(name),
            "Can not find a vserver-setup here",
        )),
    }
}

/// A guest's tree checked whole: every error (one per file or part of the tree that is wrong)
/// and every warning; the config when there is no error.
#[derive(Debug, Clone)]
pub struct Checked {
    pub config: Option<GuestConfig>,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<Diagnostic>,
}

/// Checks one guest's tree (`roots.config_root/name`) with `.defaults`, going on past a part
/// that is wrong (its default stands in) so that every wrong file is reported at once.
pub fn check_guest(roots: &Roots, name: &str) -> Checked {
    let cfg = roots.config_root.join(name);
    let def = roots.defaults();
    let stop = |e: ConfigError| Checked {
        config: None,
        errors: vec![e],
        warnings: vec![],
    };
    if !cfg.is_dir() {
        return stop(ConfigError::file(
            Code::GuestMissing,
            &cfg,
            "Can not find a vserver-setup here",
        ));
    }
    // Only root may write what is applied and run as root (config/owner.rs): a tree someone
    // else can write is not read further.
    let me = nix::unistd::geteuid().as_raw();
    if let Err(e) = owner::check_tree(&cfg, me).and_then(|()| owner::check_tree(&def, me)) {
        return stop(e);
    }
    let mut w: Vec<Diagnostic> = Vec::new();
    let mut e = Errors::default();

    tree_warnings(&cfg, &mut w);

    let context = e
        .keep(context_id(&cfg.join("context"), true, &cfg))
        .unwrap_or_default();
    let vdir = read::link_target(&cfg.join("vdir")).unwrap_or_else(|| roots.vdir_base().join(name));
    if let Some(msg) = exposure::root_warning(&vdir) {
        let at = if cfg.join("vdir").exists() {
            cfg.join("vdir")
        } else {
            vdir.clone()
        };
        w.push(ConfigError::file(Code::RootExposed, &at, msg));
    }
    let cflags_file = if read::flag(&cfg.join("cflags")) {
        cfg.join("cflags")
    } else {
        cfg.join("flags")
    };
    let (bcaps, ccaps) = capabilities(&cfg, &mut e, &mut w);
    let uts = e.keep(system::uts(&cfg, &mut w));
    let shell = e
        .keep(read::scalar(&cfg.join("shell")))
        .or(e.keep(read::scalar(&def.join("shell"))))
        .map(|s| s.split_whitespace().map(String::from).collect());
    let dlimits = e.keep(resources::dlimits(&cfg, &mut w));
    if dlimits.is_empty() && cfg.join("dlimits").is_dir() && !read::flag(&cfg.join("cache")) {
        w.push(ConfigError::file(
            Code::DlimitsNoCache,
            &cfg.join("dlimits"),
            "dlimits/ without a cache symlink",
        ));
    }
    if let Ok(rd) = std::fs::read_dir(cfg.join("apps/vdevmap")) {
        if rd.count() > 0 {
            w.push(ConfigError::file(
                Code::NotApplicable,
                &cfg.join("apps/vdevmap"),
                "device maps need the vserver kernel; not applied",
            ));
        }
    }
    let init = e.keep(init::load(&cfg, &def));
    let vshelper = e.keep(vshelper(&cfg, &def));
    let config = GuestConfig {
        name: name.to_string(),
        cfg_dir: cfg.clone(),
        context,
        ncontext: e.keep(context_id(&cfg.join("ncontext"), false, &cfg)),
        noncontext: read::flag(&cfg.join("noncontext")),
        tag: e.keep(context_id(&cfg.join("tag"), false, &cfg)),
        display_name: e.keep(read::scalar(&cfg.join("name"))),
        vdir,
        run_file: std::fs::read_link(cfg.join("run")).ok(),
        cache: read::link_target(&cfg.join("cache")),
        nice: e.keep(system::nice(&cfg)),
        ionice: e.keep(system::ionice(&cfg)),
        bcaps,
        ccaps,
        cflags: e.keep(mask(&cflags_file, &names::CFLAGS, names::CFLAGS_DEFAULT)),
        nflags: e.keep(mask(
            &cfg.join("nflags"),
            &names::NFLAGS,
            names::NFLAGS_DEFAULT,
        )),
        ncaps: e.keep_or(
            mask(
                &cfg.join("ncapabilities"),
                &names::NCAPS,
                names::NCAPS_DEFAULT,
            ),
            names::NCAPS_DEFAULT,
        ),
        umask: e.keep(mask(&cfg.join("umask"), &names::UMASK, 0)),
        personality: e.keep(system::personality(&cfg)),
        badness: e.keep(read::int(&cfg.join("badness"))),
        shell,
        fstab: e.keep(fstab::parse(&cfg.join("fstab"))),
        fstab_remote: e.keep(fstab::parse(&cfg.join("fstab.remote"))),
        fstab_local: e.keep(fstab::parse(&cfg.join("fstab.local"))),
        namespace_cleanup: !read::flag(&cfg.join("nonamespace-cleanup"))
            && !read::flag(&def.join("nonamespace-cleanup")),
        namespace_cleanup_skip: e
            .keep(read::list(&cfg.join("namespace-cleanup-skip")))
            .or(e.keep(read::list(&def.join("namespace-cleanup-skip"))))
            .unwrap_or_default()
            .into_iter()
            .map(|l| l.text)
            .collect(),
        keepfds: read::flag(&cfg.join("keepfds")) || read::flag(&def.join("keepfds")),
        noisy: read::flag(&cfg.join("noisy")),
        disabled: read::flag(&cfg.join("disabled")),
        nocgroup: read::flag(&cfg.join("nocgroup")),
        nonetns: read::flag(&cfg.join("nonetns")),
        netmode: e.keep(netmode::load(&cfg, &def)),
        interfaces: interfaces::load_each(&cfg, &def, &mut w, &mut e),
        ulimits: limits::ulimits_each(&cfg.join("ulimits"), &mut w, &mut e),
        rlimits: limits::rlimits_each(&cfg.join("rlimits"), &mut w, &mut e),
        uts,
        init,
        vshelper,
        hooks: scripts::hooks(&cfg, &def),
        cgroup: e.keep(resources::cgroup(&cfg, &def)),
        sched: e.keep(resources::sched(&cfg)),
        cpuset: e.keep(resources::cpuset(&cfg)),
        dlimits,
        sysctl: e.keep(resources::sysctl(&cfg)),
        spaces: e.keep(spaces::spaces(&cfg, &def, &mut w)),
        netns: e.keep(spaces::netns(&cfg, &def)),
    };
    if let Err(err) = netmode::check(&config) {
        e.0.push(err);
    }
    if !e.0.is_empty() {
        // What is said about the whole guest (its limits, its network) would describe the
        // defaults standing in for the wrong parts, not the tree.
        return Checked {
            config: None,
            errors: e.0,
            warnings: w,
        };
    }
    w.extend(guest_warnings(&config));
    Checked {
        config: Some(config),
        errors: vec![],
        warnings: w,
    }
}

/// Files the tree holds that vserverd does not read: unknown names, and util-vserver's legacy
/// files (said, never silently ignored).
fn tree_warnings(cfg: &Path, w: &mut Vec<Diagnostic>) {
    if let Ok(rd) = std::fs::read_dir(cfg) {
        let mut unknown: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !KNOWN.contains(&n.as_str()) && !n.ends_with('~') && !n.starts_with('.'))
            .collect();
        unknown.sort();
        for n in unknown {
            w.push(ConfigError::file(
                Code::FileUnknown,
                &cfg.join(n),
                "unknown file, ignored",
            ));
        }
    }

    for (f, code, msg) in [
        (
            "fstab.local",
            Code::LegacyFile,
            "deprecated: merge it into fstab",
        ),
        (
            "nonamespace",
            Code::NonamespaceIgnored,
            "ignored: vserverd always gives a guest its own mount namespace",
        ),
        (
            "capabilities",
            Code::LegacyFile,
            "kernel 2.4 legacy, ignored: use bcapabilities",
        ),
        (
            "legacy",
            Code::LegacyFile,
            "the pre-0.30 legacy config is not supported",
        ),
    ] {
        if read::flag(&cfg.join(f)) {
            w.push(ConfigError::file(code, &cfg.join(f), msg));
        }
    }
}

/// bcapabilities and ccapabilities, with the warnings a grant deserves.
fn capabilities(cfg: &Path, e: &mut Errors, w: &mut Vec<Diagnostic>) -> (u64, u64) {
    let bcaps = e.keep_or(
        mask(
            &cfg.join("bcapabilities"),
            &names::BCAPS,
            names::BCAPS_SECURE,
        ),
        names::BCAPS_SECURE,
    );
    if bcaps & (1 << names::CAP_SYS_PTRACE) != 0 {
        w.push(ConfigError::file(
            Code::PtraceGranted,
            &cfg.join("bcapabilities"),
            "SYS_PTRACE lets guest root trace vserverd's helpers as they enter the guest \
             (docs/security.md); grant it only to guests you trust",
        ));
    }
    let ccaps = e.keep_or(
        mask(
            &cfg.join("ccapabilities"),
            &names::CCAPS,
            names::CCAPS_SECURE,
        ),
        names::CCAPS_SECURE,
    );
    let unsupported_ccaps = ccaps & !names::CCAPS_SECURE & !0x2;
    if unsupported_ccaps != 0 {
        w.push(ConfigError::file(
            Code::NotApplicable,
            &cfg.join("ccapabilities"),
            format!(
                "not applicable on mainline: {}",
                names::CCAPS.names(unsupported_ccaps).join(", ")
            ),
        ));
    }
    (bcaps, ccaps)
}

/// What is said about a whole guest once every part parsed: no limits, setuid binds, files
/// read by nothing, limits that override each other, no route out.
fn guest_warnings(config: &GuestConfig) -> Vec<Diagnostic> {
    let cfg = &config.cfg_dir;
    let mut w = Vec::new();
    if let Some(msg) = unbounded(config) {
        w.push(ConfigError::file(Code::Unbounded, &cfg.join("cgroup"), msg));
    }
    for (file, entries) in [
        ("fstab", &config.fstab),
        ("fstab.local", &config.fstab_local),
    ] {
        for m in entries.iter().flatten() {
            let has = |o: &str| m.options.iter().any(|x| x == o);
            if (has("bind") || has("rbind")) && has("suid") {
                w.push(ConfigError::at(
                    Code::SuidBind,
                    &cfg.join(file),
                    m.line,
                    "a `suid` bind: guest root can plant setuid files there that host users \
                     could run from the host side; binds are nosuid unless they say suid",
                ));
            }
        }
    }
    if cfg.join("cpuset/cpus_exclusive").exists() {
        w.push(ConfigError::file(
            Code::CpusExclusive,
            &cfg.join("cpuset/cpus_exclusive"),
            "read by nothing (util-vserver's build writes it; its start, and vserverd, read \
             cpuset/cpu_exclusive)",
        ));
    }
    let rss_hard = config
        .rlimits
        .iter()
        .any(|r| r.name == "rss" && r.limits.hard.is_some());
    if rss_hard
        && config
            .cgroup
            .settings
            .iter()
            .any(|(f, _)| f == "memory.limit_in_bytes")
    {
        w.push(ConfigError::file(
            Code::RssOverridesMemory,
            &cfg.join("rlimits/rss"),
            "rlimits/rss and cgroup/memory.limit_in_bytes both set the memory limit: rlimits/rss \
             wins (it is applied after cgroup/)",
        ));
    }
    if let Some((at, code, msg)) = no_route_out(config) {
        w.push(ConfigError::file(code, &cfg.join(at), msg));
    }
    w
}

/// What `check` says about a guest that cannot reach other machines (apt spends half a minute
/// on DNS timeouts in one): loopback only, or host-only addresses. None when it has an uplink
/// (`dev`), the host's stack, or a network namespace of another guest or of its own pairs.
pub fn no_route_out(c: &GuestConfig) -> Option<(&'static str, Code, String)> {
    if c.noncontext || c.nonetns || c.spaces.net.is_some() || !c.netns.interfaces.is_empty() {
        return None;
    }
    let ifs: Vec<_> = c.interfaces.list.iter().filter(|i| !i.down).collect();
    if ifs.is_empty() {
        return Some((
            "interfaces",
            Code::LoopbackOnly,
            "the guest has loopback only (no interfaces/): no route out, no DNS; give it an \
             address (docs/network.md has the recipes)"
                .into(),
        ));
    }
    if ifs.iter().all(|i| i.nodev || i.dev.is_none()) {
        return Some((
            "interfaces",
            Code::HostOnly,
            "every address of the guest is host-only (nodev): it reaches the host, not other \
             machines, unless the host routes or NATs for it (docs/network.md)"
                .into(),
        ));
    }
    None
}

/// What `check` says about a guest that runs without a pids or memory bound (util-vserver's
/// trees carry none unless the admin wrote one): a fork or memory bomb inside it reaches the
/// host. None when both are bounded.
pub fn unbounded(c: &GuestConfig) -> Option<String> {
    let knob = |prefixes: &[&str]| {
        c.cgroup
            .settings
            .iter()
            .any(|(f, v)| prefixes.iter().any(|p| f.starts_with(p)) && v != "max" && v != "-1")
    };
    let rlimit = |names: &[&str]| {
        c.rlimits.iter().any(|r| {
            names.contains(&r.name.as_str())
                && !matches!(
                    r.limits.hard.or(r.limits.soft),
                    Some(limits::Limit::Unlimited) | None
                )
        })
    };
    let pids = knob(&["pids.max"]) || rlimit(&["nproc"]);
    let memory =
        knob(&["memory.limit_in_bytes", "memory.max", "memory.high"]) || rlimit(&["rss", "as"]);
    let mut missing = Vec::new();
    if !pids {
        missing.push("no pids limit (cgroup/pids.max)");
    }
    if !memory {
        missing.push("no memory limit (cgroup/memory.limit_in_bytes)");
    }
    (!missing.is_empty()).then(|| {
        format!(
            "the guest runs unbounded: {}; .defaults/cgroup applies to guests without a \
             cgroup/ folder",
            missing.join(", ")
        )
    })
}

#[cfg(test)]
mod tests;

/// A temp folder with `(path, content)` files in it, for the parsers' unit tests.
#[cfg(test)]
pub fn test_tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (f, c) in files {
        let p = d.path().join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
    d
}

/// A guest `g` (context 42) written from `(file, content)` pairs into a temp tree and loaded;
/// a file named `vdir:PATH` goes into the guest's root instead. For unit tests elsewhere.
#[cfg(test)]
pub fn test_guest(files: &[(&str, &str)]) -> (tempfile::TempDir, GuestConfig) {
    let t = tempfile::tempdir().unwrap();
    let cfg = t.path().join("etc/g");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("context"), "42\n").unwrap();
    std::fs::create_dir_all(t.path().join("v/g")).unwrap();
    for (f, content) in files {
        let p = match f.strip_prefix("vdir:") {
            Some(v) => t.path().join("v/g").join(v),
            None => cfg.join(f),
        };
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    let roots = Roots {
        config_root: t.path().join("etc"),
        vdir_base: Some(t.path().join("v")),
    };
    let c = load_guest(&roots, "g").unwrap().config;
    (t, c)
}
