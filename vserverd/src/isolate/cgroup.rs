//! The guest's cgroups: one directory per mounted hierarchy (v1 controllers and the v2 tree,
//! which hybrid hosts also mount), created before the stage joins them, killed and removed at
//! stop. Limits belong to the resources code; this module owns existence and membership.
//!
//! Parsing /proc/self/mountinfo and /proc/self/cgroup is pure, so the layout logic is tested
//! without root; the rest writes files under a root that tests can point at a temp tree.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::limits::{Flavor, Knob};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no cgroup hierarchy is mounted (neither cgroup v1 nor v2 found in /proc/self/mountinfo)"
    )]
    NoHierarchy,
    #[error("cgroup {0} still has processes after the kill")]
    Busy(PathBuf),
    /// A limit from the guest's config that could not be written (the errno kept).
    #[error("{origin}: writing {value:?} to {}: {source}", path.display())]
    Knob {
        origin: String,
        value: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A limit no cgroup of the guest can take, or controllers that could not be enabled.
    #[error("{0}")]
    Refused(String),
}

type Result<T> = std::result::Result<T, CgroupError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One mounted hierarchy and where this daemon sits in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    /// v1 controllers (`cpu`, `memory`, `name=systemd`…); empty for v2.
    pub controllers: Vec<String>,
    pub v2: bool,
    /// The daemon's own cgroup in this hierarchy, relative to the mount (no leading '/').
    pub own: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub hierarchies: Vec<Hierarchy>,
}

impl Layout {
    /// Pure v2: one unified hierarchy with controllers; hybrid/v1 otherwise.
    pub fn kind(&self) -> &'static str {
        let v1 = self.hierarchies.iter().any(|h| !h.v2);
        let v2 = self.hierarchies.iter().any(|h| h.v2);
        match (v1, v2) {
            (true, true) => "hybrid",
            (true, false) => "v1",
            (false, true) => "v2",
            (false, false) => "none",
        }
    }

    pub fn v2(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.v2)
    }

    /// Reads this process's view.
    pub fn detect() -> Result<Layout> {
        let mi = Path::new("/proc/self/mountinfo");
        let cg = Path::new("/proc/self/cgroup");
        let mountinfo = std::fs::read_to_string(mi).map_err(io(mi))?;
        let cgroup = std::fs::read_to_string(cg).map_err(io(cg))?;
        let l = Self::parse(&mountinfo, &cgroup);
        if l.hierarchies.is_empty() {
            return Err(CgroupError::NoHierarchy);
        }
        Ok(l)
    }

    pub fn parse(mountinfo: &str, proc_cgroup: &str) -> Layout {
        // /proc/self/cgroup: "ID:CONTROLLERS:PATH"; v2 is "0::PATH".
        let own: Vec<(Vec<String>, PathBuf)> = proc_cgroup
            .lines()
            .filter_map(|l| {
                let mut p = l.splitn(3, ':');
                let _id = p.next()?;
                let ctrl = p.next()?;
                let path = p.next()?;
                let ctrls = ctrl
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect();
                Some((ctrls, PathBuf::from(path.trim_start_matches('/'))))
            })
            .collect();
        let mut hierarchies = Vec::new();
        for line in mountinfo.lines() {
            // Fields: id parent maj:min root mountpoint opts [optional…] - fstype source superopts
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if pre.len() < 5 || post.len() < 3 {
                continue;
            }
            // A bind mount of a sub-cgroup (root != "/") is not a hierarchy root.
            if pre[3] != "/" {
                continue;
            }
            let mount = PathBuf::from(unescape(pre[4]));
            match post[0] {
                "cgroup2" => {
                    let mut own = own
                        .iter()
                        .find(|(c, _)| c.is_empty())
                        .map(|(_, p)| p.clone())
                        .unwrap_or_default();
                    // A daemon in its own leaf (moved there, or placed there by systemd's
                    // DelegateSubgroup=) counts from the leaf's parent: guests stay where
                    // every earlier daemon put them.
                    if own.file_name().is_some_and(|n| n == DAEMON_LEAF) {
                        own.pop();
                    }
                    if !hierarchies.iter().any(|h: &Hierarchy| h.v2) {
                        hierarchies.push(Hierarchy {
                            mount,
                            controllers: vec![],
                            v2: true,
                            own,
                        });
                    }
                }
                "cgroup" => {
                    let ctrls: Vec<String> = post[2]
                        .split(',')
                        .filter(|o| {
                            !matches!(*o, "rw" | "ro" | "relatime" | "noatime")
                                && !o.starts_with("release_agent")
                                && *o != "clone_children"
                                && *o != "xattr"
                                && *o != "noprefix"
                                && *o != "cpuset_v2_mode"
                        })
                        .map(String::from)
                        .collect();
                    if ctrls.is_empty()
                        || hierarchies
                            .iter()
                            .any(|h: &Hierarchy| !h.v2 && h.controllers == ctrls)
                    {
                        continue;
                    }
                    let own = own
                        .iter()
                        .find(|(c, _)| {
                            let mut a = c.clone();
                            let mut b = ctrls.clone();
                            a.sort();
                            b.sort();
                            a == b
                        })
                        .map(|(_, p)| p.clone())
                        .unwrap_or_default();
                    hierarchies.push(Hierarchy {
                        mount,
                        controllers: ctrls,
                        v2: false,
                        own,
                    });
                }
                _ => {}
            }
        }
        Layout { hierarchies }
    }

    /// Where guest NAME's cgroups go: `OWN/PREFIX/NAME` in every hierarchy.
    pub fn guest(&self, prefix: &str, name: &str) -> GuestCgroup {
        self.guest_in(prefix, None, name)
    }

    /// With `cgroup/name` (a cgroup several guests share): OWN/PREFIX/.groups/GROUP/NAME; the
    /// limits go on OWN/PREFIX/.groups/GROUP, each guest is a leaf below it, so one guest's kill never
    /// touches another's processes.
    pub fn guest_in(&self, prefix: &str, group: Option<&str>, name: &str) -> GuestCgroup {
        // Groups live apart from guests (no guest name starts with a dot): a group named like
        // a guest must not put this guest, and its limits, inside that guest's cgroup.
        let prefix = match group {
            Some(g) => format!("{prefix}/{GROUPS}/{g}"),
            None => prefix.to_string(),
        };
        let prefix = prefix.as_str();
        GuestCgroup {
            shared: group.is_some(),
            dirs: self
                .hierarchies
                .iter()
                .map(|h| CgroupDir {
                    path: h.mount.join(&h.own).join(prefix).join(name),
                    v2: h.v2,
                    controllers: if h.v2 {
                        std::fs::read_to_string(h.mount.join(&h.own).join("cgroup.controllers"))
                            .unwrap_or_default()
                            .split_whitespace()
                            .map(String::from)
                            .collect()
                    } else {
                        h.controllers.clone()
                    },
                    cpuset: h.controllers.iter().any(|c| c == "cpuset"),
                    devices: h.controllers.iter().any(|c| c == "devices"),
                    freezer: h.controllers.iter().any(|c| c == "freezer"),
                })
                .collect(),
        }
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CgroupDir {
    pub path: PathBuf,
    pub v2: bool,
    /// v1: the hierarchy's controllers; v2: those the tree offers at the daemon's cgroup.
    #[serde(default)]
    pub controllers: Vec<String>,
    pub cpuset: bool,
    pub devices: bool,
    pub freezer: bool,
}

/// One cgroup directory a guest's process goes into.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CgroupJoin {
    pub dir: PathBuf,
    /// In the unified (v2) hierarchy.
    pub v2: bool,
}

/// A guest's cgroup directories, one per hierarchy.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GuestCgroup {
    pub dirs: Vec<CgroupDir>,
    /// In a shared group (cgroup/name): limits belong to the parent of each dir.
    #[serde(default)]
    pub shared: bool,
}

/// Device numbers a guest may use (v1 devices controller): the safe nodes of its /dev and ptys.
const DEVICES_ALLOWED: &[&str] = &[
    "c 1:3 rwm",   // null
    "c 1:5 rwm",   // zero
    "c 1:7 rwm",   // full
    "c 1:8 rwm",   // random
    "c 1:9 rwm",   // urandom
    "c 5:0 rwm",   // tty
    "c 5:1 rwm",   // console
    "c 5:2 rwm",   // ptmx
    "c 136:* rwm", // pty slaves
];

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(io(path))
}

impl GuestCgroup {
    /// Creates every directory (and missing parents). A v1 cpuset dir inherits cpus and mems
    /// from its parent, since an empty cpuset refuses tasks; a v1 devices dir gets the
    /// allow-list. Returns whether the guest's directories were new.
    pub fn create(&self) -> Result<bool> {
        let mut fresh = false;
        for d in &self.dirs {
            if d.cpuset {
                create_cpuset(&d.path)?;
            }
            match std::fs::create_dir(&d.path) {
                Ok(()) => fresh = true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(&d.path).map_err(io(&d.path))?;
                    fresh = true;
                }
                Err(e) => return Err(io(&d.path)(e)),
            }
            if d.cpuset {
                inherit_cpuset(&d.path)?;
            }
            if d.devices {
                write(&d.path.join("devices.deny"), "a")?;
                for a in DEVICES_ALLOWED {
                    write(&d.path.join("devices.allow"), a)?;
                }
            }
        }
        Ok(fresh)
    }

    /// The directories a guest's process goes into.
    pub fn joins(&self) -> Vec<CgroupJoin> {
        self.join_dirs(None)
    }

    /// What a process joining the running guest goes into: [`Self::joins`], except in the
    /// unified tree when the guest's init has moved below the guest's cgroup (`init_v2`: its
    /// "0::" path from /proc/PID/cgroup). A systemd guest's init sits in init.scope, and once
    /// systemd enables controllers for its children the guest's own cgroup takes no process
    /// (EBUSY): the joiner goes where init is.
    pub fn join_dirs(&self, init_v2: Option<&str>) -> Vec<CgroupJoin> {
        self.dirs
            .iter()
            .map(|d| {
                let dir = match init_v2 {
                    Some(p) if d.v2 => below(&d.path, p).unwrap_or_else(|| d.path.clone()),
                    _ => d.path.clone(),
                };
                CgroupJoin { dir, v2: d.v2 }
            })
            .collect()
    }

    /// Where a controller lives for this guest: a v1 hierarchy wins (hybrid hosts bind every
    /// controller to v1), else the v2 tree if it offers it.
    pub fn flavor_of(&self, controller: &str) -> Option<Flavor> {
        if self
            .dirs
            .iter()
            .any(|d| !d.v2 && d.controllers.iter().any(|c| c == controller))
        {
            Some(Flavor::V1)
        } else if self
            .dirs
            .iter()
            .any(|d| d.v2 && d.controllers.iter().any(|c| c == controller))
        {
            Some(Flavor::V2)
        } else {
            None
        }
    }

    fn dir_for(&self, k: &Knob) -> Option<&CgroupDir> {
        match self.flavor_of(&k.controller)? {
            Flavor::V1 => self
                .dirs
                .iter()
                .find(|d| !d.v2 && d.controllers.contains(&k.controller)),
            Flavor::V2 => self.dirs.iter().find(|d| d.v2),
        }
    }

    /// On v2, a controller works in a cgroup only when every ancestor below the daemon's own
    /// cgroup enables it in cgroup.subtree_control.
    fn enable_v2(&self, knobs: &[Knob]) -> Result<()> {
        let needed: Vec<&str> = knobs
            .iter()
            .filter(|k| self.flavor_of(&k.controller) == Some(Flavor::V2))
            .map(|k| k.controller.as_str())
            .collect();
        self.enable_controllers(needed)
    }

    /// The guest's own cgroup directory for `controller` (v1 hierarchy or the v2 one).
    pub fn controller_dir(&self, controller: &str) -> Option<&Path> {
        match self.flavor_of(controller)? {
            Flavor::V1 => self
                .dirs
                .iter()
                .find(|d| !d.v2 && d.controllers.iter().any(|c| c == controller)),
            Flavor::V2 => self.dirs.iter().find(|d| d.v2),
        }
        .map(|d| d.path.as_path())
    }

    /// Enables the v2 `controllers` for the guest's cgroup (every parent below the daemon's
    /// own), whether or not a limit of theirs is set: virt_load reads the cpu controller's
    /// cpu.loadavg, which only a cgroup with the controller has.
    pub fn enable_controllers(&self, mut needed: Vec<&str>) -> Result<()> {
        let Some(d) = self.dirs.iter().find(|d| d.v2) else {
            return Ok(());
        };
        needed.retain(|c| self.flavor_of(c) == Some(Flavor::V2));
        needed.sort_unstable();
        needed.dedup();
        if needed.is_empty() {
            return Ok(());
        }
        // Every parent of the guest's cgroup from the daemon's own down: OWN, OWN/PREFIX and,
        // for a shared group, OWN/PREFIX/GROUP.
        let levels = if self.shared { 3 } else { 2 };
        let mut parents: Vec<&Path> = d.path.ancestors().skip(1).take(levels).collect();
        parents.reverse();
        for dir in parents {
            let f = dir.join("cgroup.subtree_control");
            let line: Vec<String> = needed.iter().map(|c| format!("+{c}")).collect();
            write(&f, &line.join(" "))?;
        }
        Ok(())
    }

    /// Writes the guest's limits (see limits::plan) into its cgroups.
    pub fn apply(&self, knobs: &[Knob]) -> Result<()> {
        self.enable_v2(knobs).map_err(|e| match e {
            CgroupError::Io { path, source } => CgroupError::Knob {
                origin: "enabling cgroup v2 controllers".into(),
                value: String::new(),
                path,
                source,
            },
            e => CgroupError::Refused(format!("enabling cgroup v2 controllers: {e}")),
        })?;
        for k in knobs {
            let Some(d) = self.dir_for(k) else {
                return Err(CgroupError::Refused(format!(
                    "{}: no cgroup has the {} controller",
                    k.origin, k.controller
                )));
            };
            let dir = if self.shared {
                d.path.parent().unwrap_or(&d.path)
            } else {
                &d.path
            };
            let path = dir.join(&k.file);
            std::fs::write(&path, &k.value).map_err(|source| CgroupError::Knob {
                origin: k.origin.clone(),
                value: k.value.clone(),
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// A value of one of the guest's cgroup files (for stat and tests): the first hierarchy
    /// that has it.
    pub fn read(&self, file: &str) -> Option<String> {
        self.dirs
            .iter()
            .find_map(|d| std::fs::read_to_string(d.path.join(file)).ok())
    }

    pub fn v2_dir(&self) -> Option<&Path> {
        self.dirs.iter().find(|d| d.v2).map(|d| d.path.as_path())
    }

    /// Every pid in the guest, in its cgroups and in any a systemd guest made below them.
    pub fn pids(&self) -> Vec<i32> {
        fn collect(dir: &Path, out: &mut Vec<i32>) {
            if let Ok(s) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
            for sub in subdirs(dir) {
                collect(&sub, out);
            }
        }
        let mut out: Vec<i32> = Vec::new();
        for d in &self.dirs {
            collect(&d.path, &mut out);
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    pub fn exists(&self) -> bool {
        self.dirs.iter().any(|d| d.path.is_dir())
    }

    /// Sends `signal` to every process of the guest.
    pub fn signal(&self, signal: i32) {
        for pid in self.pids() {
            let _ = crate::sys::process::kill(pid, signal);
        }
    }

    /// Kills every process and waits until the cgroups are empty. Uses `cgroup.kill` where the
    /// kernel has it (v2, also in the unified tree of hybrid hosts: no process can escape by
    /// forking), else freezes the v1 freezer, SIGKILLs and thaws.
    pub fn kill(&self) -> Result<()> {
        for attempt in 0..200 {
            if self.pids().is_empty() {
                return Ok(());
            }
            let mut killed = false;
            if let Some(d) = self.dirs.iter().find(|d| d.v2) {
                let f = d.path.join("cgroup.kill");
                if f.exists() {
                    killed = std::fs::write(&f, "1").is_ok();
                }
            }
            if !killed {
                let freezer = self.dirs.iter().find(|d| d.freezer && !d.v2);
                if let Some(f) = freezer {
                    let _ = std::fs::write(f.path.join("freezer.state"), "FROZEN");
                }
                self.signal(libc::SIGKILL);
                if let Some(f) = freezer {
                    let _ = std::fs::write(f.path.join("freezer.state"), "THAWED");
                }
            }
            std::thread::sleep(Duration::from_millis(if attempt < 20 { 1 } else { 10 }));
        }
        let busy = self
            .dirs
            .first()
            .map(|d| d.path.clone())
            .unwrap_or_default();
        Err(CgroupError::Busy(busy))
    }

    /// Removes the directories (after `kill`). Missing ones are fine: remove is idempotent.
    pub fn remove(&self) -> Result<()> {
        for d in &self.dirs {
            remove_tree(&d.path)?;
            // The shared group goes with its last guest (busy while others are in it).
            if self.shared {
                if let Some(group) = d.path.parent() {
                    // And the .groups folder with the last group.
                    if std::fs::remove_dir(group).is_ok() {
                        if let Some(groups) = group.parent().filter(|g| g.ends_with(GROUPS)) {
                            let _ = std::fs::remove_dir(groups);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// `dir` (a guest's cgroup directory) extended by the part of `cgroup` (a cgroup path as
/// /proc/PID/cgroup shows it, relative to the hierarchy's root) that lies below it; None when
/// `cgroup` is not at or below `dir`.
fn below(dir: &Path, cgroup: &str) -> Option<PathBuf> {
    let parts: Vec<&str> = cgroup.split('/').filter(|p| !p.is_empty()).collect();
    let comps: Vec<String> = dir
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    // The longest tail of `dir` that `cgroup` starts with: `dir` is MOUNT + that tail.
    (0..comps.len()).find_map(|i| {
        let tail = &comps[i..];
        (tail.len() <= parts.len() && tail.iter().zip(&parts).all(|(a, b)| a == b)).then(|| {
            parts[tail.len()..]
                .iter()
                .fold(dir.to_path_buf(), |p, c| p.join(c))
        })
    })
}

/// The cgroup directories right below `dir`.
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes a cgroup and, deepest first, those a systemd guest made below it.
fn remove_tree(dir: &Path) -> Result<()> {
    for sub in subdirs(dir) {
        remove_tree(&sub)?;
    }
    for attempt in 0..100 {
        match std::fs::remove_dir(dir) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            // Exiting tasks leave the cgroup a moment after they are reaped.
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 99 => {
                std::thread::sleep(Duration::from_millis(if attempt < 10 { 1 } else { 10 }))
            }
            Err(e) => return Err(io(dir)(e)),
        }
    }
    Ok(())
}

/// Makes the parents of a cpuset dir exist with cpus and mems filled in, so the leaf can copy
/// them. Every ancestor up to one that has cpus is (re)checked, not only those this call
/// creates: a guest started at the same time may have just created a parent and not filled
/// it yet.
fn create_cpuset(leaf: &Path) -> Result<()> {
    let filled = |d: &Path| {
        std::fs::read_to_string(d.join("cpuset.cpus"))
            .map(|c| !c.trim().is_empty())
            .unwrap_or(false)
    };
    let mut chain = Vec::new();
    let mut p = leaf.parent();
    while let Some(d) = p {
        if d.is_dir() && filled(d) {
            break;
        }
        chain.push(d.to_path_buf());
        p = d.parent();
    }
    for d in chain.into_iter().rev() {
        match std::fs::create_dir(&d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(&d)(e)),
        }
        inherit_cpuset(&d)?;
    }
    Ok(())
}

fn inherit_cpuset(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let mine = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        if mine.trim().is_empty() {
            let theirs = std::fs::read_to_string(parent.join(f)).map_err(io(&parent.join(f)))?;
            write(&dir.join(f), theirs.trim())?;
        }
    }
    Ok(())
}

/// The leaf of the delegated v2 cgroup the daemon itself runs in: v2 lets a cgroup give
/// controllers to its children only while it holds no process, and systemd must be able to
/// start the next daemon somewhere (systemd/vserverd.service, DelegateSubgroup=).
pub const DAEMON_LEAF: &str = "vserverd-daemon";

/// Whether this process runs in its v2 leaf already (systemd placed it there with
/// DelegateSubgroup=): then the delegated cgroup never holds a process, and enabling
/// controllers in it cannot stop systemd from starting the next daemon.
pub fn in_daemon_leaf() -> bool {
    std::fs::read_to_string("/proc/self/cgroup").is_ok_and(|s| {
        s.lines().filter_map(|l| l.strip_prefix("0::")).any(|p| {
            Path::new(p.trim())
                .file_name()
                .is_some_and(|n| n == DAEMON_LEAF)
        })
    })
}

/// The folder below the prefix that holds `cgroup/name` groups: OWN/PREFIX/.groups/GROUP/NAME.
pub const GROUPS: &str = ".groups";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joiner_goes_where_init_is_below_the_guest() {
        let dir = Path::new("/sys/fs/cgroup/system.slice/vserverd.service/vserverd/web");
        assert_eq!(
            below(
                dir,
                "/system.slice/vserverd.service/vserverd/web/init.scope"
            ),
            Some(dir.join("init.scope"))
        );
        assert_eq!(
            below(dir, "/system.slice/vserverd.service/vserverd/web"),
            Some(dir.to_path_buf())
        );
        assert_eq!(below(dir, "/user.slice/other"), None);
    }

    const HYBRID_MI: &str = "\
25 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 / /sys/fs/cgroup/memory rw,nosuid shared:13 - cgroup cgroup rw,memory
30 25 0:27 / /sys/fs/cgroup/cpuset rw,nosuid shared:14 - cgroup cgroup rw,cpuset,clone_children
31 40 0:26 /x /mnt/bound rw - cgroup cgroup rw,memory
";
    const HYBRID_CG: &str = "\
5:cpuset:/
4:memory:/process_api/abc
3:cpu,cpuacct:/system.slice/vserverd.service
2:name=systemd:/system.slice/vserverd.service
0::/system.slice/vserverd.service
";

    #[test]
    fn parses_a_hybrid_host() {
        let l = Layout::parse(HYBRID_MI, HYBRID_CG);
        assert_eq!(l.kind(), "hybrid");
        assert_eq!(l.hierarchies.len(), 5, "{l:#?}");
        let v2 = l.v2().unwrap();
        assert_eq!(v2.mount, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(v2.own, Path::new("system.slice/vserverd.service"));
        let mem = l
            .hierarchies
            .iter()
            .find(|h| h.controllers == ["memory"])
            .unwrap();
        assert_eq!(mem.own, Path::new("process_api/abc"));
        let cpu = l
            .hierarchies
            .iter()
            .find(|h| h.controllers.contains(&"cpu".to_string()))
            .unwrap();
        assert_eq!(cpu.controllers, ["cpu", "cpuacct"]);
        let g = l.guest("vserverd", "web");
        assert!(g
            .dirs
            .iter()
            .any(|d| d.path == Path::new("/sys/fs/cgroup/memory/process_api/abc/vserverd/web")));
        assert!(g.dirs.iter().any(|d| d.cpuset));
        assert_eq!(
            g.v2_dir(),
            Some(Path::new(
                "/sys/fs/cgroup/unified/system.slice/vserverd.service/vserverd/web"
            ))
        );
    }

    #[test]
    fn parses_a_pure_v2_host() {
        let mi = "30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        let l = Layout::parse(mi, "0::/init.scope\n");
        assert_eq!(l.kind(), "v2");
        assert_eq!(
            l.guest("g", "a").v2_dir(),
            Some(Path::new("/sys/fs/cgroup/init.scope/g/a"))
        );
    }

    #[test]
    fn a_daemon_in_its_leaf_counts_from_the_delegated_cgroup() {
        let mi = "30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let l = Layout::parse(mi, "0::/system.slice/vserverd.service/vserverd-daemon\n");
        assert_eq!(
            l.guest("vserverd", "a").v2_dir(),
            Some(Path::new(
                "/sys/fs/cgroup/system.slice/vserverd.service/vserverd/a"
            ))
        );
    }

    #[test]
    fn creates_and_removes_in_a_temp_tree() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("cpuset.cpus"), "0-1\n").unwrap();
        std::fs::write(t.path().join("cpuset.mems"), "0\n").unwrap();
        let g = GuestCgroup {
            dirs: vec![CgroupDir {
                path: t.path().join("vserverd/web"),
                v2: false,
                controllers: vec!["cpuset".into()],
                cpuset: true,
                devices: false,
                freezer: false,
            }],
            shared: false,
        };
        // A plain directory tree does not create cpuset files by itself: the copy writes them.
        assert!(g.create().unwrap());
        assert_eq!(
            std::fs::read_to_string(t.path().join("vserverd/web/cpuset.cpus")).unwrap(),
            "0-1"
        );
        assert!(!g.create().unwrap());
        assert!(g.pids().is_empty());
    }
}
