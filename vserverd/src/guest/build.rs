//! Building a guest (util-vserver's `vserver NAME build -m METHOD`, docs/build.md): a complete
//! config tree and a root, made under temporary names and renamed into place at the end, so a
//! failed or interrupted build leaves nothing a guest listing would show (leftovers of a
//! killed daemon are removed at the next start).
//!
//! Methods: skeleton (config tree, empty root), template (`-- -t TARBALL`), clone
//! (`-- --source GUEST`: its root copied with reflinks where the file system can, never hard
//! links), debootstrap (`-- -d SUITE [-m MIRROR]`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proto::{BuildOptions, GuestState, ManagerError};

use crate::config;
use crate::daemon::Daemon;
use crate::error::{StepError, StepResult};
use crate::guest::progress::Progress;

/// The steps a build's errors name: writing the config tree, making the root.
const CONFIG: &str = "build.config";
const ROOT: &str = "build.root";

/// util-vserver hands out context ids from here up.
const FIRST_CONTEXT: u32 = 40000;

/// One `--interface` argument: `[NAME=][DEV:]IP[/PREFIX]`.
#[derive(Debug, PartialEq, Eq)]
pub struct IfaceArg {
    pub name: Option<String>,
    pub dev: Option<String>,
    pub ip: IpAddr,
    pub prefix: u8,
}

pub fn parse_interface(s: &str) -> Result<IfaceArg, String> {
    let (name, rest) = match s.split_once('=') {
        Some((n, r)) => (Some(n.to_string()), r),
        None => (None, s),
    };
    // An IPv6 address has colons too: a device comes first and has no dots or colons of its own.
    let whole_is_ip = rest
        .split('/')
        .next()
        .is_some_and(|a| a.parse::<IpAddr>().is_ok());
    let (dev, addr) = match rest.split_once(':').filter(|_| !whole_is_ip) {
        Some((d, a))
            if !d.is_empty()
                && d.parse::<IpAddr>().is_err()
                && !d.contains('.')
                && a.contains(['.', ':']) =>
        {
            (Some(d.to_string()), a)
        }
        _ => (None, rest),
    };
    let (ip, prefix) = match addr.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (addr, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("--interface {s:?}: {ip:?} is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("--interface {s:?}: bad prefix {p:?}"))?,
        None => max,
    };
    Ok(IfaceArg {
        name,
        dev,
        ip,
        prefix,
    })
}

/// The next context id no guest uses, from 40000 up.
fn free_context(d: &Daemon) -> u32 {
    let used: std::collections::BTreeSet<u32> = d
        .guest_names()
        .iter()
        .filter_map(|n| config::context_of(&d.roots(), n))
        .collect();
    (FIRST_CONTEXT..=65535)
        .find(|c| !used.contains(c))
        .unwrap_or(FIRST_CONTEXT)
}

/// `PATH: ERROR` for step `step`, the errno and the path kept.
fn io<'a>(step: &'a str, what: &'a Path) -> impl FnOnce(std::io::Error) -> StepError + 'a {
    move |e| {
        crate::error::Cause::from(e)
            .at(step)
            .doing(what.display().to_string())
            .on(what)
    }
}

fn write(p: &Path, content: &str) -> Result<(), StepError> {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(io(CONFIG, d))?;
    }
    std::fs::write(p, content).map_err(io(CONFIG, p))
}

/// Runs a tool that makes the root (tar, cp, debootstrap, ssh-keygen); its last lines of
/// stderr say why it failed.
async fn run(cmd: &mut tokio::process::Command, what: &str) -> Result<(), StepError> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .step_doing(ROOT, || what.to_string())?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        return Err(StepError::refused(
            ROOT,
            format!(
                "{what} failed ({}): {}",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ),
        ));
    }
    Ok(())
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none())
}

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone())
}

/// Removes what a daemon that died during a build or a delete left (docs/crash.md): a build
/// is `.build-NAME` in the config root (and a root of that name in the vdir base) until its
/// config is renamed into place, last; a delete renames the config to `.delete-NAME` first.
/// Either way the guest is absent, and its parts go.
pub fn clean_leftovers(d: &Daemon) {
    let Ok(rd) = std::fs::read_dir(&d.opts.config_root) else {
        return;
    };
    let base = d.roots().vdir_base();
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let mut parts = Vec::new();
        if let Some(name) = n.strip_prefix(".build-") {
            parts.push(base.join(&n));
            // Killed between the two renames: the root is in place, the config is not. A
            // root there is the build's when it is not empty (a build refuses a non-empty one).
            let root = base.join(name);
            if !d.opts.config_root.join(name).exists() && !is_empty_dir(&root) {
                parts.push(root);
            }
        } else if let Some(name) = n.strip_prefix(".delete-") {
            parts.extend(super::delete::parts(&e.path(), &base.join(name)));
        } else {
            continue;
        }
        parts.push(e.path());
        for p in &parts {
            if let Err(err) = crate::isolate::rmtree::remove_tree(p) {
                tracing::warn!("{n}: an interrupted build or delete: {err}");
            }
        }
        tracing::info!("removed what an interrupted build or delete left: {n}");
    }
}

pub async fn build(
    d: &Arc<Daemon>,
    name: &str,
    method: &str,
    o: BuildOptions,
    progress: &Progress,
) -> Result<(), ManagerError> {
    let p = progress;
    if name.is_empty() || name.starts_with('.') || name.contains('/') {
        return Err(ManagerError::failed(
            name,
            "a guest name must not be empty, start with '.' or contain '/'",
        ));
    }
    let cfg = d.opts.config_root.join(name);
    let root = d.roots().vdir_base().join(name);
    let lock = d.guests.lock(name);
    let _held = lock.lock().await;
    // An empty root is fine (util-vserver: "VDIR must be empty"); the build renames onto it.
    let taken: Vec<&Path> = [&cfg, &root]
        .into_iter()
        .filter(|p| p.symlink_metadata().is_ok() && !is_empty_dir(p))
        .map(PathBuf::as_path)
        .collect();
    if !taken.is_empty() {
        if o.force != Some(true) {
            return Err(ManagerError::failed(
                name,
                format!(
                    "vserver-topdirectory '{}' and/or configuration at '{}' exist already; \
                     please try to use '--force', or remove them manually",
                    root.display(),
                    cfg.display()
                ),
            ));
        }
        if d.guests.running(name).is_some() {
            return Err(ManagerError::failed(
                name,
                "the guest is running; stop it before --force",
            ));
        }
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.as_secs());
        for p in taken {
            let aside = PathBuf::from(format!("{}.~{epoch}~", p.display()));
            std::fs::rename(p, &aside).map_err(|e| io("build.force", p)(e).into_manager(name))?;
            progress.send(
                name,
                "force",
                &format!("moved {} aside to {}", p.display(), aside.display()),
                GuestState::Stopped,
            );
        }
    }
    let tmp_cfg = d.opts.config_root.join(format!(".build-{name}"));
    let tmp_root = d.roots().vdir_base().join(format!(".build-{name}"));
    let target = Target {
        cfg: &tmp_cfg,
        root: &tmp_root,
        final_root: &root,
    };
    let r = steps(d, name, method, &o, &target, p).await;
    // The config last: until it is in place the guest does not exist, and a daemon killed
    // in between leaves a `.build-` config that clean_leftovers takes back with the root.
    let r = r.and_then(|()| {
        crate::fault::point("build.steps")?;
        std::fs::rename(&tmp_root, &root).map_err(io("build.steps", &root))?;
        crate::fault::point("build.root")?;
        std::fs::rename(&tmp_cfg, &cfg).map_err(io("build.root", &cfg))
    });
    match r {
        Ok(()) => {
            d.catalog.reload(&d.roots(), name);
            // The vdir link was written with the final root's name.
            p.send(
                name,
                "done",
                &format!("built with {method}: {}", root.display()),
                GuestState::Stopped,
            );
            Ok(())
        }
        Err(e) => {
            // Renamed already (the config rename failed): take the root back too.
            let renamed = root.exists() && !tmp_root.exists();
            let mut undo = vec![tmp_cfg, tmp_root, cfg];
            if renamed {
                undo.push(root);
            }
            // Off the async threads, without recursion: a template shaped this tree.
            let left = tokio::task::spawn_blocking(move || {
                undo.iter()
                    .filter_map(|p| crate::isolate::rmtree::remove_tree(p).err())
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            if left.is_empty() {
                Err(e.into_manager(name))
            } else {
                Err(StepError {
                    cause: format!("{}; rolling back also failed: {}", e.cause, left.join("; ")),
                    ..e
                }
                .into_manager(name))
            }
        }
    }
}

/// The limits a new guest gets: 4096 processes, and half the host's memory (so that one
/// guest alone cannot take the host down).
fn default_limits() -> (u32, u64) {
    let total_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(2 << 20);
    (4096, (total_kb * 1024 / 2).max(256 << 20))
}

/// Where a build's work goes: the temporary config and root it fills, the root's final name.
struct Target<'a> {
    cfg: &'a Path,
    root: &'a Path,
    final_root: &'a Path,
}

/// The build's steps: its arguments checked, the config tree written, the root made by the
/// method, and the result checked to be a guest that starts.
async fn steps(
    d: &Arc<Daemon>,
    name: &str,
    method: &str,
    o: &BuildOptions,
    t: &Target<'_>,
    p: &Progress,
) -> Result<(), StepError> {
    let (ifaces, context) = arguments(d, o)?;
    // A clone is its source's config with exactly the asked changes: name, context,
    // hostname, addresses (never the source's: they would clash), the vdir, run and cache
    // links re-pointed. Copied first; what follows writes only those changes over it.
    let source = if method == "clone" {
        Some(clone_source(d, o, t.cfg, name)?)
    } else {
        None
    };
    let style = match (&o.initstyle, &source) {
        (Some(s), _) => s.clone(),
        (None, Some(c)) => c.init.style.as_str().to_string(),
        (None, None) if method == "debootstrap" => "sysv".into(),
        (None, None) => "plain".into(),
    };
    p.send(
        name,
        "config",
        &format!("context {context}, init style {style}"),
        GuestState::Stopped,
    );
    write_config(name, o, t, context, &style, &ifaces, source.is_some(), p)?;
    make_root(name, method, o, t.root, source.as_ref(), &style, p).await?;
    verify(d, method, t, name, p)
}

/// The arguments a build is given: its interfaces parsed and its context free and in range.
fn arguments(d: &Daemon, o: &BuildOptions) -> Result<(Vec<IfaceArg>, u32), StepError> {
    let ifaces: Vec<IfaceArg> = o
        .interfaces
        .iter()
        .map(|s| parse_interface(s))
        .collect::<Result<_, _>>()
        .step(CONFIG)?;
    let context = o.context.unwrap_or_else(|| free_context(d));
    if !(2..=65535).contains(&context) {
        return Err(StepError::refused(
            CONFIG,
            format!("context {context} is out of range (2–65535)"),
        ));
    }
    if let Some(user) = d
        .guest_names()
        .iter()
        .find(|n| config::context_of(&d.roots(), n) == Some(context))
    {
        return Err(StepError::refused(
            CONFIG,
            format!("Context '{context}' is already in use by {user}"),
        ));
    }
    Ok((ifaces, context))
}

/// A clone's source: loaded, stopped, its config copied into `cfg` with the links re-pointed.
fn clone_source(
    d: &Daemon,
    o: &BuildOptions,
    cfg: &Path,
    name: &str,
) -> Result<config::GuestConfig, StepError> {
    let src = arg(&o.arguments, "--source").ok_or_else(|| {
        StepError::refused(
            CONFIG,
            "clone: give the source guest with `-- --source GUEST`",
        )
    })?;
    let l = d
        .load(&src)
        .map_err(|e| StepError::refused(CONFIG, format!("clone source: {e}")))?;
    if d.guests.running(&src).is_some() {
        return Err(StepError::refused(
            CONFIG,
            format!("clone source {src} runs: stop it first"),
        ));
    }
    copy_config(&l.config.cfg_dir, cfg)?;
    repoint_links(&l.config.cfg_dir, cfg, &src, name)?;
    Ok(l.config)
}

/// The config tree, as util-vserver's build writes it.
#[allow(clippy::too_many_arguments)]
fn write_config(
    name: &str,
    o: &BuildOptions,
    t: &Target<'_>,
    context: u32,
    style: &str,
    ifaces: &[IfaceArg],
    cloned: bool,
    p: &Progress,
) -> Result<(), StepError> {
    let cfg = t.cfg;
    write(&cfg.join("context"), &format!("{context}\n"))?;
    write(
        &cfg.join("uts/nodename"),
        &format!("{}\n", o.hostname.as_deref().unwrap_or(name)),
    )?;
    if !cloned || o.initstyle.is_some() {
        write(&cfg.join("apps/init/style"), &format!("{style}\n"))?;
    }
    if !cloned {
        write(&cfg.join("fstab"), "none /proc proc defaults 0 0\nnone /tmp tmpfs size=16m,mode=1777 0 0\nnone /dev/pts devpts gid=5,mode=620 0 0\n")?;
    }
    for (i, f) in ifaces.iter().enumerate() {
        let dir = cfg.join(format!("interfaces/{i}"));
        write(&dir.join("ip"), &format!("{}\n", f.ip))?;
        write(&dir.join("prefix"), &format!("{}\n", f.prefix))?;
        match &f.dev {
            Some(dev) => write(&dir.join("dev"), &format!("{dev}\n"))?,
            None => write(&dir.join("nodev"), "")?,
        }
        if let Some(n) = &f.name {
            write(&dir.join("name"), &format!("{n}\n"))?;
        }
    }
    // Bounds a hosting admin would set (the trees util-vserver wrote had none: check warns
    // about those); edit or remove the files, or `vserverctl set --persist`, to change them.
    // A clone keeps its source's.
    if !cloned {
        let (pids, memory) = default_limits();
        write(&cfg.join("cgroup/pids.max"), &format!("{pids}\n"))?;
        write(
            &cfg.join("cgroup/memory.limit_in_bytes"),
            &format!("{memory}\n"),
        )?;
        p.send(
            name,
            "limits",
            &format!(
                "cgroup/pids.max {pids}, cgroup/memory.limit_in_bytes {}M (half this host's \
                 memory)",
                memory >> 20
            ),
            GuestState::Stopped,
        );
    }
    if ifaces.is_empty() {
        p.send(
            name,
            "network",
            "no --interface: loopback only (give --interface for an address; noncontext \
             shares the host's network stack)",
            GuestState::Stopped,
        );
    }
    let vdir = cfg.join("vdir");
    std::os::unix::fs::symlink(t.final_root, &vdir).map_err(io(CONFIG, &vdir))
}

/// The root, made by the build method.
async fn make_root(
    name: &str,
    method: &str,
    o: &BuildOptions,
    root: &Path,
    source: Option<&config::GuestConfig>,
    style: &str,
    p: &Progress,
) -> Result<(), StepError> {
    let args = &o.arguments;
    // On btrfs the root is a subvolume of its own, so that a disk limit (dlimits/, a qgroup
    // limit) can be set on it; every method below fills an existing empty root.
    if crate::disk::subvol::create_root(root).map_err(io(ROOT, root))? {
        p.send(
            name,
            "root",
            &format!("{}: a btrfs subvolume", root.display()),
            GuestState::Stopped,
        );
    }
    match method {
        "skeleton" => {
            for dir in [
                "bin", "dev", "etc", "proc", "root", "sbin", "sys", "tmp", "usr", "var",
            ] {
                std::fs::create_dir_all(root.join(dir)).map_err(io(ROOT, root))?;
            }
            Ok(())
        }
        "template" => template(name, args, root, p).await,
        "clone" => {
            let src = source.ok_or_else(|| StepError::refused(CONFIG, "clone: no source"))?;
            clone_root(name, o, src, root, p).await
        }
        "debootstrap" => debootstrap(name, o, root, style, p).await,
        m @ ("yum" | "rpm" | "poldek" | "apt-rpm" | "urpmi" | "rsync" | "fai") => {
            let tool = if m == "apt-rpm" { "apt-get" } else { m };
            let found = std::env::var_os("PATH")
                .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()));
            Err(StepError::refused(
                CONFIG,
                format!(
                    "build method {m} is not supported by vserverd ({tool} is {} on this host); \
                     use skeleton, template, clone or debootstrap, or make the root elsewhere \
                     and build with -m template -- -t ARCHIVE",
                    if found {
                        "installed but not driven"
                    } else {
                        "not installed"
                    }
                ),
            ))
        }
        m => Err(StepError::refused(
            CONFIG,
            format!("unknown build method {m:?}; known: skeleton, template, clone, debootstrap"),
        )),
    }
}

/// `-m template -- -t ARCHIVE`: the archive unpacked, its device nodes removed.
async fn template(name: &str, args: &[String], root: &Path, p: &Progress) -> Result<(), StepError> {
    let t = arg(args, "-t").ok_or_else(|| {
        StepError::refused(CONFIG, "template: give the tarball with `-- -t FILE`")
    })?;
    std::fs::create_dir_all(root).map_err(io(ROOT, root))?;
    p.send(
        name,
        "template",
        &format!("unpacking {t}"),
        GuestState::Stopped,
    );
    // --no-overwrite-dir: the root keeps the mode and owner the build gave it (an
    // archive's "./" entry of mode 0777 would open the guest's / to host users).
    run(
        tokio::process::Command::new("tar")
            .args([
                "-x",
                "--numeric-owner",
                "-p",
                "--no-overwrite-dir",
                "-f",
                &t,
                "-C",
            ])
            .arg(root),
        "tar",
    )
    .await?;
    let r = root.to_path_buf();
    let stripped = tokio::task::spawn_blocking(move || strip_devices(&r))
        .await
        .step(ROOT)?
        .step_doing(ROOT, || "checking the unpacked template".into())?;
    if !stripped.is_empty() {
        p.send(
            name,
            "template",
            &format!(
                "removed {} device node(s) the archive held (the guest's /dev is made at \
                 each start): {}",
                stripped.len(),
                stripped
                    .iter()
                    .take(5)
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            GuestState::Stopped,
        );
    }
    Ok(())
}

/// `-m clone -- --source GUEST`: the source's root copied (reflinks where the file system has
/// them), its identity reset.
async fn clone_root(
    name: &str,
    o: &BuildOptions,
    src: &config::GuestConfig,
    root: &Path,
    p: &Progress,
) -> Result<(), StepError> {
    p.send(
        name,
        "clone",
        &format!("copying {} (reflinks where possible)", src.vdir.display()),
        GuestState::Stopped,
    );
    run(
        tokio::process::Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(format!("{}/.", src.vdir.display()))
            .arg(root),
        "cp",
    )
    .await?;
    let hostname = o.hostname.as_deref().unwrap_or(name);
    for said in reset_identity(root, hostname).await? {
        p.send(name, "clone", &said, GuestState::Stopped);
    }
    Ok(())
}

/// `-m debootstrap -- -d SUITE [-m MIRROR]`: what the init style needs included.
async fn debootstrap(
    name: &str,
    o: &BuildOptions,
    root: &Path,
    style: &str,
    p: &Progress,
) -> Result<(), StepError> {
    let a = parse_debootstrap(&o.arguments).step(CONFIG)?;
    if which("debootstrap").is_none() {
        return Err(StepError::refused(
            CONFIG,
            "debootstrap is not installed on this host (apt-get install debootstrap)",
        ));
    }
    let mut cmd = tokio::process::Command::new("debootstrap");
    if !a.options.iter().any(|o| o.starts_with("--variant")) {
        cmd.arg("--variant=minbase");
    }
    // What the init style needs, and the admin's --include: one option (debootstrap
    // takes only the last --include it is given).
    let mut include: Vec<String> = vec!["iproute2".into()];
    match style {
        "sysv" => include.push("sysvinit-core".into()),
        "systemd" => include.extend(["systemd".into(), "systemd-sysv".into()]),
        _ => {}
    }
    let (mut options, mut it) = (Vec::new(), a.options.iter());
    while let Some(opt) = it.next() {
        match opt.strip_prefix("--include") {
            Some("") => include.extend(it.next().cloned()),
            Some(v) if v.starts_with('=') => include.push(v[1..].to_string()),
            _ => options.push(opt.clone()),
        }
    }
    cmd.arg(format!("--include={}", include.join(",")));
    cmd.args(&options);
    cmd.arg(&a.suite).arg(root).arg(&a.mirror);
    if let Some(script) = &a.script {
        cmd.arg(script);
    }
    p.send(
        name,
        "debootstrap",
        &format!(
            "{} from {}{}",
            a.suite,
            a.mirror,
            if a.options.is_empty() {
                String::new()
            } else {
                format!(" ({})", a.options.join(" "))
            }
        ),
        GuestState::Stopped,
    );
    run(&mut cmd, "debootstrap").await?;
    super::intree::write(
        root,
        "etc/hostname",
        format!("{}\n", o.hostname.as_deref().unwrap_or(name)).as_bytes(),
        0o644,
    )
    .step_doing(ROOT, || "etc/hostname in the new root".into())
}

/// What was written must be a valid guest, and one that can start (looked for where the root
/// is until the build is renamed into place).
fn verify(
    d: &Daemon,
    method: &str,
    t: &Target<'_>,
    name: &str,
    p: &Progress,
) -> Result<(), StepError> {
    const STEP: &str = "build.verify";
    let (cfg, root) = (t.cfg, t.root);
    let roots = config::Roots {
        config_root: cfg.parent().unwrap_or(cfg).to_path_buf(),
        vdir_base: d.opts.vdir_base.clone(),
    };
    let tmp_name = cfg
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let built = config::load_guest(&roots, &tmp_name)
        .map_err(|e| StepError::refused(STEP, format!("the built config does not load: {e}")))?;
    let mut c = built.config;
    c.vdir = root.to_path_buf();
    if let Some(w) = missing_init(&c, root) {
        // A skeleton is filled in later; a clone is as startable as its source.
        if matches!(method, "skeleton" | "clone") {
            p.send(name, "init", &format!("warning: {w}"), GuestState::Stopped);
        } else {
            return Err(StepError::refused(STEP, w));
        }
    }
    Ok(())
}

/// Why the built guest could not start: its start command is not in its root (looked up
/// as the guest will, through its symlinks and fstab binds). `root` is where the build made it.
fn missing_init(c: &config::GuestConfig, root: &Path) -> Option<String> {
    let cmds = match super::plan::init_commands(c) {
        Ok(c) => c,
        Err(e) => return Some(format!("{e}: the guest cannot start")),
    };
    let prog = cmds.start.first()?;
    if !prog.starts_with('/') {
        return None;
    }
    let binds = super::rootpath::binds(&super::plan::mounts(c));
    let found = super::rootpath::resolve(root, &binds, prog)
        .map(|g| super::rootpath::host_path(root, &binds, &g))
        .is_some_and(|p| p.is_file());
    (!found).then(|| {
        format!(
            "init style {}: {prog} is not in the guest root, so the guest cannot start (a \
             debootstrap minbase has no init: build with --initstyle sysv, or --initstyle \
             systemd for a systemd guest)",
            c.init.style.as_str()
        )
    })
}

/// util-vserver's debootstrap method arguments: `-d SUITE [-m MIRROR] [-s SCRIPT]
/// [-- DEBOOTSTRAP-OPTIONS]`; debootstrap's own long options (`--include=…`, `--arch …`) are
/// also taken before the `--`. Anything else is refused, never dropped.
#[derive(Debug, PartialEq, Eq)]
struct Debootstrap {
    suite: String,
    mirror: String,
    script: Option<String>,
    options: Vec<String>,
}

fn parse_debootstrap(args: &[String]) -> Result<Debootstrap, String> {
    /// debootstrap options that take a value as the next argument.
    const VALUED: &[&str] = &[
        "--include",
        "--exclude",
        "--variant",
        "--arch",
        "--components",
        "--keyring",
        "--extra-suites",
        "--cache-dir",
        "--extractor",
        "--private-key",
        "--certificate",
    ];
    let usage = "util-vserver's form: -d SUITE [-m MIRROR] [-s SCRIPT] [-- DEBOOTSTRAP-OPTIONS]";
    let (mut suite, mut mirror, mut script, mut options) = (None, None, None, Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("debootstrap: {a} needs {what}; {usage}"))
        };
        match a.as_str() {
            "-d" => suite = Some(value("a suite")?),
            "-m" => mirror = Some(value("a mirror")?),
            "-s" => script = Some(value("a script")?),
            "--" => {
                options.extend(it.by_ref().cloned());
            }
            o if o.starts_with("--") => {
                options.push(o.to_string());
                if !o.contains('=') && VALUED.contains(&o) {
                    options.push(value("a value")?);
                }
            }
            o => return Err(format!("debootstrap: unknown argument {o:?}; {usage}")),
        }
    }
    Ok(Debootstrap {
        suite: suite.ok_or(format!(
            "debootstrap: give the distribution with -d SUITE; {usage}"
        ))?,
        mirror: mirror.unwrap_or_else(|| "http://deb.debian.org/debian".into()),
        script,
        options,
    })
}

fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(prog))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .chain(
            ["/usr/sbin", "/sbin"]
                .iter()
                .map(|d| Path::new(d).join(prog)),
        )
        .find(|p| p.is_file())
}

/// Copies a source guest's config tree, leaving out its identity (context, name, vdir, run,
/// cache, uts/nodename) which the new guest has its own of.
/// Removes the block and character device nodes below `root` (never following a symlink, never
/// leaving its file system): a template's nodes would give guest root raw devices, and host
/// users mode-0666 ones. Returns the paths removed, relative to `root`.
fn strip_devices(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let dev = std::fs::symlink_metadata(root)?.dev();
    let mut removed = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let m = std::fs::symlink_metadata(e.path())?;
            let t = m.file_type();
            if t.is_block_device() || t.is_char_device() {
                std::fs::remove_file(e.path())?;
                removed.push(
                    e.path()
                        .strip_prefix(root)
                        .unwrap_or(&e.path())
                        .to_path_buf(),
                );
            } else if t.is_dir() && m.dev() == dev {
                todo.push(e.path());
            }
        }
    }
    Ok(removed)
}

/// The clone's `run` and `cache` links: the source's, re-pointed from its name to the clone's
/// (util-vserver's are RUNDIR/NAME and CACHEBASE/NAME); a link that does not end in the
/// source's name is left out, as it would be shared.
fn repoint_links(src_cfg: &Path, dst: &Path, src: &str, name: &str) -> Result<(), StepError> {
    for l in ["run", "cache"] {
        let Ok(target) = std::fs::read_link(src_cfg.join(l)) else {
            continue;
        };
        if target.file_name().is_some_and(|f| f == src) {
            let new = target.with_file_name(name);
            std::os::unix::fs::symlink(&new, dst.join(l)).map_err(io(CONFIG, &dst.join(l)))?;
        }
    }
    Ok(())
}

/// What makes a copied root the source's, reset inside the clone (through intree.rs: the
/// copied tree is the source guest's, so its symlinks are hostile): /etc/hostname; the
/// machine ids (emptied: systemd and dbus make new ones); the ssh host keys (new ones when
/// ssh-keygen is on the host, else removed, and said). Returns what it did, for the progress.
async fn reset_identity(root: &Path, hostname: &str) -> Result<Vec<String>, StepError> {
    let w = |rel: &str, c: &[u8], mode: u32| {
        super::intree::write(root, rel, c, mode).step_doing(ROOT, || format!("{rel} in the clone"))
    };
    let mut said = Vec::new();
    w("etc/hostname", format!("{hostname}\n").as_bytes(), 0o644)?;
    if super::intree::exists(root, "etc/machine-id") {
        w("etc/machine-id", b"", 0o444)?;
    }
    let _ = super::intree::remove(root, "var/lib/dbus/machine-id");
    let keys: Vec<String> = super::intree::list(root, "etc/ssh")
        .step_doing(ROOT, || "etc/ssh in the clone".into())?
        .into_iter()
        .filter(|n| n.starts_with("ssh_host_") && n.ends_with("_key"))
        .collect();
    if keys.is_empty() {
        return Ok(said);
    }
    for k in &keys {
        for f in [k.clone(), format!("{k}.pub")] {
            super::intree::remove(root, &format!("etc/ssh/{f}"))
                .step_doing(ROOT, || format!("etc/ssh/{f} in the clone"))?;
        }
    }
    let Some(keygen) = which("ssh-keygen") else {
        said.push(format!(
            "removed the source's ssh host keys ({}): run `ssh-keygen -A` in the guest",
            keys.join(", ")
        ));
        return Ok(said);
    };
    let tmp = private_tempdir().step_doing(ROOT, || "ssh host keys".into())?;
    for k in &keys {
        let ty = k
            .trim_start_matches("ssh_host_")
            .trim_end_matches("_key")
            .to_string();
        let out = tmp.join(k);
        run(
            tokio::process::Command::new(&keygen)
                .args([
                    "-q",
                    "-N",
                    "",
                    "-t",
                    &ty,
                    "-C",
                    &format!("root@{hostname}"),
                    "-f",
                ])
                .arg(&out),
            "ssh-keygen",
        )
        .await?;
        for (f, mode) in [(k.clone(), 0o600), (format!("{k}.pub"), 0o644)] {
            let c = std::fs::read(tmp.join(&f)).map_err(io(ROOT, &tmp.join(&f)))?;
            w(&format!("etc/ssh/{f}"), &c, mode)?;
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    said.push(format!("new ssh host keys: {}", keys.join(", ")));
    Ok(said)
}

/// A private folder for generated secrets (mode 0700, removed by the caller).
fn private_tempdir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let p = std::env::temp_dir().join(format!(
        "vserverd-keys-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&p)?;
    Ok(p)
}

/// The source guest's config folder merged into the clone's: a folder the build already
/// made (apps/, cgroup/) gets the source's files in it, never a copy of the folder inside.
fn copy_config(src: &Path, dst: &Path) -> Result<(), StepError> {
    const OWN: &[&str] = &["context", "name", "vdir", "run", "cache", "interfaces"];
    std::fs::create_dir_all(dst).map_err(io(CONFIG, dst))?;
    for e in std::fs::read_dir(src).map_err(io(CONFIG, src))?.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if OWN.contains(&n.as_str()) {
            continue;
        }
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        let (from, to) = if is_dir && dst.join(&n).is_dir() {
            // `cp -a A/. B` copies A's contents into B.
            (e.path().join("."), dst.join(&n))
        } else {
            (e.path(), dst.join(&n))
        };
        let out = std::process::Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .output()
            .step_doing(CONFIG, || "cp".into())?;
        if !out.status.success() {
            return Err(StepError::refused(
                CONFIG,
                format!(
                    "copying {}: {}",
                    e.path().display(),
                    String::from_utf8_lossy(&out.stderr)
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debootstrap_arguments_pass_through_or_are_refused() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let a = parse_debootstrap(&v(&[
            "-d",
            "bookworm",
            "--include",
            "nginx",
            "--",
            "--arch=amd64",
        ]))
        .unwrap();
        assert_eq!(a.suite, "bookworm");
        assert_eq!(a.options, v(&["--include", "nginx", "--arch=amd64"]));
        let a = parse_debootstrap(&v(&["-d", "sid", "-m", "http://m/debian", "-s", "/s"])).unwrap();
        assert_eq!(a.mirror, "http://m/debian");
        assert_eq!(a.script.as_deref(), Some("/s"));
        assert!(parse_debootstrap(&v(&["-d", "x", "nginx"]))
            .unwrap_err()
            .contains("unknown argument \"nginx\""));
        assert!(parse_debootstrap(&v(&["-m", "x"]))
            .unwrap_err()
            .contains("-d SUITE"));
        assert!(parse_debootstrap(&v(&["-d"])).is_err());
    }

    #[test]
    fn interface_arguments() {
        let a = parse_interface("web=eth0:192.0.2.5/24").unwrap();
        assert_eq!(a.name.as_deref(), Some("web"));
        assert_eq!(a.dev.as_deref(), Some("eth0"));
        assert_eq!(a.prefix, 24);
        let a = parse_interface("10.0.0.1").unwrap();
        assert_eq!((a.dev, a.prefix), (None, 32));
        let a = parse_interface("eth1:2001:db8::5/64").unwrap();
        assert_eq!(a.dev.as_deref(), Some("eth1"));
        assert_eq!(a.ip, "2001:db8::5".parse::<IpAddr>().unwrap());
        let a = parse_interface("2001:db8::5").unwrap();
        assert_eq!(a.dev, None);
        assert!(parse_interface("eth0:nonsense").is_err());
        assert!(parse_interface("10.0.0.1/40").is_err());
    }
}
