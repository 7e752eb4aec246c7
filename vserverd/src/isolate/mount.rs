//! Mounts inside the guest's fresh mount namespace, run by the guest's PID 1 before it execs
//! init: the root bind (nodev), a minimal /dev, the fstab entries, hardened /proc and /sys, and
//! pivot_root. Mount targets are resolved inside the guest root (openat2 RESOLVE_IN_ROOT), so a
//! symlink in the guest tree can never redirect a mount onto the host.
//!
//! Option parsing is pure and tested without root.

use crate::sys::ns as sys;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use rustix::fs::{Mode, OFlags, ResolveFlags};

#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct MountError {
    pub what: String,
    pub source: std::io::Error,
}

type Result<T> = std::result::Result<T, MountError>;

fn err<E: Into<std::io::Error>>(what: impl Into<String>) -> impl FnOnce(E) -> MountError {
    let what = what.into();
    move |e| MountError {
        what,
        source: e.into(),
    }
}

fn nix_io(e: nix::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

fn rustix_io(e: rustix::io::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error())
}

/// An fstab line's options split into mount(2) flags and the file system's data string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub flags: u64,
    pub data: Vec<String>,
    pub bind: bool,
    pub recursive: bool,
}

pub fn parse_options(opts: &[String]) -> Options {
    let mut o = Options::default();
    let set = |f: MsFlags, on: bool, o: &mut Options| {
        if on {
            o.flags |= f.bits();
        } else {
            o.flags &= !f.bits();
        }
    };
    for opt in opts.iter().map(String::as_str) {
        match opt {
            "" | "defaults" | "auto" | "noauto" | "user" | "nouser" | "users" | "_netdev"
            | "nofail" | "owner" | "group" => {}
            "ro" => set(MsFlags::MS_RDONLY, true, &mut o),
            "rw" => set(MsFlags::MS_RDONLY, false, &mut o),
            "nosuid" => set(MsFlags::MS_NOSUID, true, &mut o),
            "suid" => set(MsFlags::MS_NOSUID, false, &mut o),
            "nodev" => set(MsFlags::MS_NODEV, true, &mut o),
            "dev" => set(MsFlags::MS_NODEV, false, &mut o),
            "noexec" => set(MsFlags::MS_NOEXEC, true, &mut o),
            "exec" => set(MsFlags::MS_NOEXEC, false, &mut o),
            "sync" => set(MsFlags::MS_SYNCHRONOUS, true, &mut o),
            "async" => set(MsFlags::MS_SYNCHRONOUS, false, &mut o),
            "dirsync" => set(MsFlags::MS_DIRSYNC, true, &mut o),
            "noatime" => set(MsFlags::MS_NOATIME, true, &mut o),
            "atime" => set(MsFlags::MS_NOATIME, false, &mut o),
            "nodiratime" => set(MsFlags::MS_NODIRATIME, true, &mut o),
            "diratime" => set(MsFlags::MS_NODIRATIME, false, &mut o),
            "relatime" => set(MsFlags::MS_RELATIME, true, &mut o),
            "norelatime" => set(MsFlags::MS_RELATIME, false, &mut o),
            "strictatime" => set(MsFlags::MS_STRICTATIME, true, &mut o),
            "mand" => set(MsFlags::MS_MANDLOCK, true, &mut o),
            "nomand" => set(MsFlags::MS_MANDLOCK, false, &mut o),
            "bind" => o.bind = true,
            "rbind" => {
                o.bind = true;
                o.recursive = true;
            }
            other => o.data.push(other.to_string()),
        }
    }
    // A bind is nosuid unless the line says `suid`: guest root can plant setuid files in a
    // read-write bind of a host directory, and must not run the host's through one.
    if o.bind && !opts.iter().any(|x| x == "suid") {
        o.flags |= MsFlags::MS_NOSUID.bits();
    }
    o
}

/// What to mount where; `target` is a path inside the guest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MountSpec {
    pub source: String,
    pub target: String,
    pub fstype: String,
    pub options: Vec<String>,
    /// Where the line came from, for errors ("/etc/vservers/x/fstab:3").
    pub origin: String,
}

/// The guest root's directory fd, for resolving paths inside it.
pub struct Root {
    pub path: PathBuf,
    fd: OwnedFd,
    /// A user-namespace guest's base host id: its root is an idmapped mount on which host
    /// root owns nothing (creating a file there fails with EOVERFLOW), so missing mount points
    /// are made as the guest's root (fs ids = base): on disk they belong to 0, as a guest made
    /// them.
    owner: Option<u32>,
}

impl Root {
    pub fn open(path: &Path) -> Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(rustix_io)
        .map_err(err(format!("guest root {}", path.display())))?;
        Ok(Root {
            path: path.to_path_buf(),
            fd,
            owner: None,
        })
    }

    /// See [`Root::owner`].
    pub fn owned_by(mut self, base: Option<u32>) -> Root {
        self.owner = base;
        self
    }

    /// Opens `inner` (a guest path) as O_PATH, resolved as if the guest root were `/`.
    pub fn resolve(&self, inner: &str) -> std::io::Result<OwnedFd> {
        rustix::fs::openat2(
            self.fd.as_fd(),
            inner.trim_start_matches('/'),
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(rustix_io)
    }

    /// Makes `inner` exist: a directory, or an empty file when `file` (for a file bind mount).
    fn ensure(&self, inner: &str, file: bool) -> std::io::Result<OwnedFd> {
        if let Ok(fd) = self.resolve(inner) {
            return Ok(fd);
        }
        let inner = inner.trim_end_matches('/');
        let (parent, leaf) = inner.rsplit_once('/').unwrap_or(("", inner));
        if leaf.is_empty() || leaf == ".." || leaf == "." {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        let parent = if parent.is_empty() { "/" } else { parent };
        // A real directory fd (not O_PATH) is needed for mkdirat/openat.
        let pfd = rustix::fs::openat2(
            self.fd.as_fd(),
            parent.trim_start_matches('/'),
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(rustix_io)?;
        let old = self.owner.map(|b| crate::sys::process::set_fs_ids(b, b));
        let made = self.create(&pfd, leaf, file);
        if let Some((u, g)) = old {
            crate::sys::process::set_fs_ids(u, g);
        }
        made?;
        self.resolve(inner)
    }

    fn create(&self, pfd: &OwnedFd, leaf: &str, file: bool) -> std::io::Result<()> {
        if file {
            rustix::fs::openat(
                pfd,
                leaf,
                OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .map_err(rustix_io)?;
        } else {
            match rustix::fs::mkdirat(pfd, leaf, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(rustix_io(e)),
            }
        }
        Ok(())
    }
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn do_mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> std::io::Result<()> {
    mount(source, target, fstype, flags, data).map_err(nix_io)
}

/// Our mounts must not propagate back to the host.
pub fn make_private() -> Result<()> {
    do_mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )
    .map_err(err("making / private in the guest's mount namespace"))
}

/// Binds the guest root onto itself (pivot_root needs a mount point) and marks the whole tree
/// nodev: device nodes in the guest's own files are dead; only our /dev has live ones.
pub fn bind_root(vdir: &Path, idmap: Option<std::os::fd::BorrowedFd<'_>>) -> Result<()> {
    let what = || format!("binding the guest root {}", vdir.display());
    if let Some(userns) = idmap {
        let at = rustix::fs::open(
            vdir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(rustix_io)
        .map_err(err(what()))?;
        return idmapped_bind(vdir, &at, true, userns, sys::MOUNT_ATTR_NODEV).map_err(err(what()));
    }
    do_mount(
        Some(&vdir.to_string_lossy()),
        vdir,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(err(what()))?;
    let path = CString::new(vdir.as_os_str().as_encoded_bytes()).expect("no NUL in a path");
    sys::mount_setattr(
        rustix::fs::CWD,
        &path,
        sys::AT_RECURSIVE,
        sys::MOUNT_ATTR_NODEV,
    )
    .map_err(err(format!("{}: nodev", what())))
}

/// A bind of `source` onto `target` whose files show their ids through `userns`'s mapping
/// (on-disk 0 is the guest's root, host id BASE), with `attrs` set. The copy is made detached
/// (open_tree), mapped, then attached: the kernel idmaps only a mount not yet attached.
/// A file system without idmapped-mount support is refused by name.
pub fn idmapped_bind(
    source: &Path,
    target: &OwnedFd,
    recursive: bool,
    userns: std::os::fd::BorrowedFd<'_>,
    attrs: u64,
) -> std::io::Result<()> {
    let tree = sys::open_tree_clone_tree(source, recursive)?;
    let flags = libc::AT_EMPTY_PATH as libc::c_uint | if recursive { sys::AT_RECURSIVE } else { 0 };
    if let Err(e) = sys::mount_setattr_userns(
        &tree,
        c"",
        flags,
        sys::MOUNT_ATTR_IDMAP | attrs,
        Some(userns),
    ) {
        let fs = nix::sys::statfs::statfs(source)
            .map(|s| fs_name(s.filesystem_type().0))
            .unwrap_or_else(|_| "unknown".into());
        return Err(std::io::Error::new(
            e.kind(),
            format!(
                "an idmapped mount of {} is refused ({fs}): a user-namespace guest needs a file                  system with idmapped mounts (ext4, xfs, btrfs, tmpfs, …; see docs/lifecycle.md):                  {e}",
                source.display()
            ),
        ));
    }
    sys::move_mount_onto_fd(&tree, target)
}

/// A file system's name from its magic number (statfs f_type), for errors.
pub fn fs_name(magic: i64) -> String {
    match magic {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794c_7630 => "overlayfs".into(),
        0x6969 => "nfs".into(),
        0x6573_5546 => "fuse".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0x4d44 => "vfat".into(),
        0xF2F5_2010 => "f2fs".into(),
        0x6265_6572 => "sysfs".into(),
        0x9fa0 => "proc".into(),
        m => format!("file system type {m:#x}"),
    }
}

/// Character devices of a guest's /dev: the safe ones only.
const DEV_NODES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const DEV_LINKS: &[(&str, &str)] = &[
    ("ptmx", "pts/ptmx"),
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// A tmpfs on the guest's /dev holding null zero full random urandom tty, console (a bind of
/// `console`, or of null), the ptmx link and empty pts/ and shm/ (a tmpfs).
pub fn setup_dev(root: &Root, console: Option<&Path>) -> Result<()> {
    let dev = root
        .ensure("/dev", false)
        .map_err(err("creating the guest's /dev"))?;
    // A user-namespace guest's root owns its /dev (the device nodes stay host root's).
    let owner = root
        .owner
        .map_or(String::new(), |b| format!(",uid={b},gid={b}"));
    do_mount(
        Some("vserverd-dev"),
        &fd_path(&dev),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(&format!("mode=755,size=256k,nr_inodes=512{owner}")),
    )
    .map_err(err("mounting a tmpfs on the guest's /dev"))?;
    drop(dev);
    let dev = rustix::fs::openat2(
        root.fd.as_fd(),
        "dev",
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS,
    )
    .map_err(rustix_io)
    .map_err(err("opening the guest's new /dev"))?;
    // mknod honours the umask; these nodes must be 0666.
    let old = rustix::process::umask(Mode::empty());
    let made = (|| -> std::io::Result<()> {
        for (name, major, minor) in DEV_NODES {
            rustix::fs::mknodat(
                &dev,
                *name,
                rustix::fs::FileType::CharacterDevice,
                Mode::from_raw_mode(0o666),
                rustix::fs::makedev(*major, *minor),
            )
            .map_err(rustix_io)?;
        }
        for (name, to) in DEV_LINKS {
            rustix::fs::symlinkat(*to, &dev, *name).map_err(rustix_io)?;
        }
        for d in ["pts", "shm"] {
            rustix::fs::mkdirat(&dev, d, Mode::from_raw_mode(0o755)).map_err(rustix_io)?;
        }
        rustix::fs::openat(
            &dev,
            "console",
            OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(rustix_io)?;
        Ok(())
    })();
    rustix::process::umask(old);
    made.map_err(err("filling the guest's /dev"))?;
    let dev_path = root.path.join("dev");
    let console_src = console.unwrap_or(Path::new("/dev/null"));
    do_mount(
        Some(&console_src.to_string_lossy()),
        &dev_path.join("console"),
        None,
        MsFlags::MS_BIND,
        None,
    )
    .map_err(err("binding the guest's /dev/console"))?;
    // A user-namespace guest's root must open its console: the pty, made for this guest
    // alone, becomes its root's (a host root's inode is nobody's inside, and closed to it).
    if let Some(b) = root.owner {
        use std::os::unix::fs::FileTypeExt;
        if std::fs::metadata(console_src).is_ok_and(|m| m.file_type().is_char_device()) {
            std::os::unix::fs::chown(console_src, Some(b), Some(b))
                .map_err(err("giving the guest's root its console"))?;
        }
    }
    do_mount(
        Some("shm"),
        &dev_path.join("shm"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&format!("mode=1777,size=65536k{owner}")),
    )
    .map_err(err("mounting the guest's /dev/shm"))?;
    Ok(())
}

/// Files and folders of /proc a guest must not write or read: host-wide knobs and leaks.
const PROC_MASKED_FILES: &[&str] = &[
    "sysrq-trigger",
    "kcore",
    "kmsg",
    "timer_list",
    "keys",
    "key-users",
    "latency_stats",
    "sched_debug",
    "kpagecount",
    "kpageflags",
    "kpagecgroup",
    "config.gz",
    // Every kernel cache of the host, by size (lxcfs hides it too).
    "slabinfo",
];
const PROC_MASKED_DIRS: &[&str] = &["acpi", "scsi", "driver"];
const PROC_READONLY: &[&str] = &["sys", "irq", "bus", "fs", "sysvipc"];

fn mount_proc(root: &Root, inner: &str, target: &Path, flags: MsFlags) -> std::io::Result<()> {
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    do_mount(Some("proc"), target, Some("proc"), flags | base, None)?;
    // `target` names the directory under the new mount: look the path up again.
    let fresh = root.resolve(inner)?;
    let target = &fd_path(&fresh);
    for d in PROC_READONLY {
        let p = target.join(d);
        if !p.exists() {
            continue;
        }
        do_mount(
            Some(&p.to_string_lossy()),
            &p,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?;
        do_mount(
            None,
            &p,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base,
            None,
        )?;
    }
    // Masked files get a bind of one empty, read-only regular file: reads are empty, opening
    // for write fails (EROFS). (/dev/null would silently take the writes.) Binding a read-only
    // mount clones its flags, so each file costs one mount.
    let masked: Vec<PathBuf> = PROC_MASKED_FILES
        .iter()
        .map(|f| target.join(f))
        .filter(|p| p.exists())
        .collect();
    if !masked.is_empty() {
        let blank = root.path.join("dev/.vserverd-masked");
        std::fs::File::create(&blank)?;
        let b = Some(blank.to_string_lossy().into_owned());
        do_mount(b.as_deref(), &blank, None, MsFlags::MS_BIND, None)?;
        do_mount(
            None,
            &blank,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base,
            None,
        )?;
        for p in &masked {
            do_mount(b.as_deref(), p, None, MsFlags::MS_BIND, None)?;
        }
        // A user-namespace guest's systemd mounts over the masked files in its units' own
        // namespaces (ProtectKernelLogs=: /proc/kmsg), and the kernel mounts on nothing
        // unlinked: its blank file stays (read-only, locked, in its /dev).
        if root.owner.is_none() {
            umount2(&blank, MntFlags::MNT_DETACH).map_err(nix_io)?;
            std::fs::remove_file(&blank)?;
        }
    }
    for d in PROC_MASKED_DIRS {
        let p = target.join(d);
        if p.is_dir() {
            do_mount(
                Some("vserverd-masked"),
                &p,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | base,
                Some("size=0,nr_inodes=1"),
            )?;
        }
    }
    Ok(())
}

/// Where a served file named `name` goes in a guest: a name with a leading `/` is a path
/// (virt_cpu's /sys/devices/system/cpu/online), any other a file of /proc.
pub fn served_target(name: &str) -> String {
    if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/proc/{name}")
    }
}

/// Binds host files (read-only) over files of the guest's /proc (and /sys), once its fstab has
/// mounted them: virt_mem's meminfo, virt_cpu's and virt_load's files. A guest without /proc
/// (or /sys) gets nothing bound there.
pub fn bind_proc_files(root: &Root, files: &[(String, PathBuf)]) -> Result<()> {
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    const SYSFS_MAGIC: i64 = 0x6265_6572;
    let on_kernel_fs = |p: &Path| {
        nix::sys::statfs::statfs(p).is_ok_and(|s| {
            let t = s.filesystem_type().0;
            t == PROC_SUPER_MAGIC || t == SYSFS_MAGIC
        })
    };
    for (name, source) in files {
        let at = served_target(name);
        let what = || format!("binding {} over the guest's {at}", source.display());
        let Ok(target) = root.resolve(&at) else {
            continue;
        };
        let target = fd_path(&target);
        if !on_kernel_fs(&target) {
            continue;
        }
        let src = source.to_string_lossy();
        do_mount(Some(&src), &target, None, MsFlags::MS_BIND, None).map_err(err(what()))?;
        // The fd names the file under the new mount; a remount needs the mount itself.
        let top = root.resolve(&at).map_err(err(what()))?;
        do_mount(
            None,
            &fd_path(&top),
            None,
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            None,
        )
        .map_err(err(what()))?;
    }
    Ok(())
}

/// What systemd as the guest's init expects to find mounted (as systemd-nspawn provides it): a
/// /run tmpfs, /sys (read-only) unless the fstab mounted it, and at /sys/fs/cgroup a writable
/// cgroup tree whose root is the guest's own cgroup (the mount is made inside the guest's
/// cgroup namespace): cgroup2 when `unified`, else a tmpfs holding the named v1 hierarchy
/// name=systemd. Everything below the guest's cgroup is systemd's to manage.
pub fn systemd_api(root: &Root, unified: bool) -> Result<()> {
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let magic = |p: &Path| {
        nix::sys::statfs::statfs(p)
            .map(|s| s.filesystem_type().0)
            .ok()
    };
    const SYSFS_MAGIC: i64 = 0x6265_6572;
    // The fds must live while their /proc/self/fd paths are used.
    let at = |inner: &str| -> Result<OwnedFd> {
        root.ensure(inner, false)
            .map_err(err(format!("the guest's {inner}")))
    };
    let run_fd = at("/run")?;
    let run = fd_path(&run_fd);
    do_mount(
        Some("tmpfs"),
        &run,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&format!(
            "mode=755,size=20%{}",
            root.owner
                .map_or(String::new(), |b| format!(",uid={b},gid={b}"))
        )),
    )
    .map_err(err("mounting the guest's /run"))?;
    // systemd mounts this one itself and dies if it cannot (no CAP_SYS_ADMIN in the secure
    // set); one already there it leaves alone.
    let lock_fd = at("/run/lock")?;
    do_mount(
        Some("tmpfs"),
        &fd_path(&lock_fd),
        Some("tmpfs"),
        base,
        Some(&format!(
            "mode=1777,size=5m{}",
            root.owner
                .map_or(String::new(), |b| format!(",uid={b},gid={b}"))
        )),
    )
    .map_err(err("mounting the guest's /run/lock"))?;
    let sys_fd = at("/sys")?;
    let sys = fd_path(&sys_fd);
    if magic(&sys) != Some(SYSFS_MAGIC) {
        do_mount(
            Some("sysfs"),
            &sys,
            Some("sysfs"),
            base | MsFlags::MS_RDONLY,
            None,
        )
        .map_err(err("mounting the guest's /sys"))?;
    }
    // Looked up again: below the sysfs just mounted.
    let cg_fd = root
        .resolve("/sys/fs/cgroup")
        .map_err(err("the guest's /sys/fs/cgroup"))?;
    let cg = fd_path(&cg_fd);
    if unified {
        do_mount(Some("cgroup2"), &cg, Some("cgroup2"), base, None)
            .map_err(err("mounting cgroup2 on the guest's /sys/fs/cgroup"))?;
    } else {
        do_mount(
            Some("tmpfs"),
            &cg,
            Some("tmpfs"),
            base,
            Some("mode=755,size=1m"),
        )
        .map_err(err("mounting a tmpfs on the guest's /sys/fs/cgroup"))?;
        let named_fd = at("/sys/fs/cgroup/systemd")?;
        let named = fd_path(&named_fd);
        do_mount(
            Some("cgroup"),
            &named,
            Some("cgroup"),
            base,
            Some("none,name=systemd"),
        )
        .map_err(err(
            "mounting name=systemd on the guest's /sys/fs/cgroup/systemd",
        ))?;
    }
    Ok(())
}

/// A read-only copy of the mount of `source` (a file), not attached anywhere yet: what
/// [`attach_detached`] puts into a running guest's mount namespace (open_tree(2), so it can be
/// made here, in the host's namespace, and placed there).
pub fn detached_bind(source: &Path) -> Result<OwnedFd> {
    let what = || format!("a detached bind of {}", source.display());
    let fd = sys::open_tree_clone(source).map_err(err(what()))?;
    sys::mount_setattr(
        &fd,
        c"",
        libc::AT_EMPTY_PATH as libc::c_uint,
        sys::MOUNT_ATTR_RDONLY
            | sys::MOUNT_ATTR_NOSUID
            | sys::MOUNT_ATTR_NODEV
            | sys::MOUNT_ATTR_NOEXEC,
    )
    .map_err(err(format!("{}: read-only", what())))?;
    Ok(fd)
}

/// Puts a detached mount on `target` of the current mount namespace (after setns into a
/// guest's), first taking away whatever is mounted there (a dead FUSE mount answers ENOTCONN).
pub fn attach_detached(tree: &OwnedFd, target: &str) -> Result<()> {
    let what = || format!("mounting over {target}");
    let t = CString::new(target).expect("no NUL in a path");
    // Not mounted (EINVAL) is fine: nothing to take away.
    let _ = umount2(t.as_c_str(), MntFlags::MNT_DETACH);
    sys::move_mount_onto(tree, &t).map_err(err(what()))
}

/// Mounts one fstab entry inside the guest root.
/// With `idmap` (a user-namespace guest), a bind shows the source's ids through the guest's
/// mapping, as its root does.
pub fn mount_entry(
    root: &Root,
    m: &MountSpec,
    idmap: Option<std::os::fd::BorrowedFd<'_>>,
) -> Result<()> {
    let what = || format!("{}: mounting {} on {}", m.origin, m.source, m.target);
    let o = parse_options(&m.options);
    let flags = MsFlags::from_bits_truncate(o.flags);
    let file_source = o.bind && Path::new(&m.source).is_file();
    let target_fd = root.ensure(&m.target, file_source).map_err(err(format!(
        "{}: mount point {} in the guest",
        m.origin, m.target
    )))?;
    let target = fd_path(&target_fd);
    let data = o.data.join(",");
    let data = (!data.is_empty()).then_some(data.as_str());
    let r = if o.bind {
        let mut f = MsFlags::MS_BIND;
        if o.recursive {
            f |= MsFlags::MS_REC;
        }
        let bound = match idmap {
            Some(userns) => idmapped_bind(Path::new(&m.source), &target_fd, o.recursive, userns, 0),
            None => do_mount(Some(&m.source), &target, None, f, None),
        };
        bound.and_then(|()| {
            // Bind mounts take their flags only on a remount, of the new mount: the fd we
            // hold names what it covers, so look the path up again.
            if flags.is_empty() {
                Ok(())
            } else {
                let top = root.resolve(&m.target)?;
                do_mount(
                    None,
                    &fd_path(&top),
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
                    None,
                )
            }
        })
    } else {
        match m.fstype.as_str() {
            "proc" => mount_proc(root, &m.target, &target, flags),
            "sysfs" => do_mount(
                Some("sysfs"),
                &target,
                Some("sysfs"),
                flags
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC,
                None,
            ),
            "devpts" => {
                let mut d: Vec<String> = o
                    .data
                    .iter()
                    .filter(|x| !x.starts_with("ptmxmode=") && *x != "newinstance")
                    .cloned()
                    .collect();
                d.push("newinstance".into());
                d.push("ptmxmode=0666".into());
                do_mount(
                    Some("devpts"),
                    &target,
                    Some("devpts"),
                    flags | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                    Some(&d.join(",")),
                )
            }
            fstype => do_mount(Some(&m.source), &target, Some(fstype), flags, data),
        }
    };
    r.map_err(err(what()))
}

/// Makes the guest root `/`; the host's tree is detached and unreachable afterwards.
pub fn pivot(vdir: &Path) -> Result<()> {
    let what = || format!("pivot_root into {}", vdir.display());
    nix::unistd::chdir(vdir)
        .map_err(nix_io)
        .map_err(err(what()))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves
    // only the guest's tree, with no directory to put the old root in.
    nix::unistd::pivot_root(".", ".")
        .map_err(nix_io)
        .map_err(err(what()))?;
    umount2(".", MntFlags::MNT_DETACH)
        .map_err(nix_io)
        .map_err(err(format!("{}: detaching the host root", what())))?;
    nix::unistd::chdir("/")
        .map_err(nix_io)
        .map_err(err(what()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let o = parse_options(&s(&["defaults", "ro", "nosuid", "size=16m", "mode=1777"]));
        assert_eq!(o.flags, (MsFlags::MS_RDONLY | MsFlags::MS_NOSUID).bits());
        assert_eq!(o.data, ["size=16m", "mode=1777"]);
        assert!(!o.bind);
        let o = parse_options(&s(&["rbind", "ro", "rw"]));
        assert!(o.bind && o.recursive);
        assert_eq!(o.flags, MsFlags::MS_NOSUID.bits(), "rw after ro clears it");
        let o = parse_options(&s(&["gid=5", "mode=620", "noexec"]));
        assert_eq!(o.flags, MsFlags::MS_NOEXEC.bits());
        assert_eq!(o.data, ["gid=5", "mode=620"]);
    }

    #[test]
    fn binds_are_nosuid_unless_the_line_says_suid() {
        assert_eq!(
            parse_options(&s(&["bind"])).flags,
            MsFlags::MS_NOSUID.bits()
        );
        assert_eq!(parse_options(&s(&["bind", "suid"])).flags, 0);
        assert_eq!(parse_options(&s(&["defaults"])).flags, 0);
    }
}
