//! Guest builders: config tree + root, written the way util-vserver's build would.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::TestDaemon;

/// Where Debian's busybox-static puts its binary.
pub const BUSYBOX: &str = "/bin/busybox";

pub fn busybox_available() -> bool {
    Path::new(BUSYBOX).exists()
}

pub struct GuestBuilder {
    name: String,
    context: Option<u32>,
    files: Vec<(String, String)>,
    busybox_root: bool,
}

impl GuestBuilder {
    /// A guest with a config tree only (context and plain init style).
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            context: None,
            files: Vec::new(),
            busybox_root: false,
        }
    }

    /// A guest whose root is a busybox-static system: busybox init as /sbin/init with an
    /// inittab that maps ctrl-alt-del (SIGINT to init, util-vserver's stop) to `poweroff -f`.
    pub fn busybox(name: &str) -> Self {
        let mut b = Self::new(name);
        b.busybox_root = true;
        b.file("apps/init/style", "plain\n")
    }

    pub fn context(mut self, ctx: u32) -> Self {
        self.context = Some(ctx);
        self
    }

    /// A file in the config tree, relative to the guest's config folder.
    pub fn file(mut self, rel: &str, content: &str) -> Self {
        self.files.push((rel.into(), content.into()));
        self
    }

    pub fn write(self, d: &TestDaemon) -> PathBuf {
        self.write_to(&d.config_root, &d.vdir_base)
    }

    pub fn write_to(self, config_root: &Path, vdir_base: &Path) -> PathBuf {
        let cfg = config_root.join(&self.name);
        std::fs::create_dir_all(&cfg).expect("mkdir cfg");
        if let Some(ctx) = self.context {
            std::fs::write(cfg.join("context"), format!("{ctx}\n")).expect("context");
        }
        for (rel, content) in &self.files {
            let p = cfg.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, content).expect("write");
        }
        let root = vdir_base.join(&self.name);
        std::fs::create_dir_all(&root).expect("mkdir root");
        if self.busybox_root {
            busybox_root(&root);
        }
        cfg
    }
}

/// Lays out a minimal busybox system in `root`.
pub fn busybox_root(root: &Path) {
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "dev/pts", "tmp",
        "root", "var/run", "run",
    ] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).expect("copy busybox");
    std::fs::set_permissions(
        root.join("bin/busybox"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    let out = std::process::Command::new(BUSYBOX)
        .arg("--list-full")
        .output()
        .expect("busybox --list-full");
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let link = root.join(applet);
        if applet == "bin/busybox" || link.exists() {
            continue;
        }
        if let Some(parent) = link.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = symlink("/bin/busybox", &link);
    }
    std::fs::write(
        root.join("etc/inittab"),
        "::sysinit:/bin/true\n\
         ::respawn:/bin/sleep 1000000\n\
         ::ctrlaltdel:/sbin/poweroff -f\n\
         ::shutdown:/bin/true\n",
    )
    .expect("inittab");
    std::fs::write(root.join("etc/hostname"), "busybox\n").expect("hostname");
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\n").expect("group");
}

/// Copies a host binary into a guest root at `dest` with the shared libraries `ldd` names,
/// so it runs in a busybox guest that has no libc of its own.
pub fn install_host_binary(root: &Path, src: &Path, dest: &str) {
    let target = root.join(dest.trim_start_matches('/'));
    std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
    std::fs::copy(src, &target).expect("copy binary");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = std::process::Command::new("ldd")
        .arg(src)
        .output()
        .expect("ldd");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
        let path = line
            .split("=>")
            .last()
            .and_then(|r| r.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(p) = path {
            let lib = root.join(p.trim_start_matches('/'));
            if !lib.exists() {
                std::fs::create_dir_all(lib.parent().expect("parent")).expect("mkdir lib");
                std::fs::copy(p, &lib).expect("copy lib");
            }
        }
    }
}

/// A binary of this workspace next to the running test (target/debug or target/release).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} missing: run cargo build --workspace",
        p.display()
    );
    p
}

/// The cached Debian 12 guest tree of scripts/debian-guest.sh (`args`: `--systemd` for the
/// systemd variant), built on first use; None (after printing why) when it cannot be built.
pub fn debian_tree(args: &[&str]) -> Option<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/debian-guest.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Replaces the (empty) guest root `root` by a copy of `tree` (cp -a: owners, modes, links).
pub fn install_tree(root: &std::path::Path, tree: &str) {
    std::fs::remove_dir(root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let st = std::process::Command::new("cp")
        .args(["-a", tree])
        .arg(root)
        .status()
        .expect("cp");
    assert!(st.success(), "cp -a {tree} {}", root.display());
}

/// Every process in the pid namespace of `init` (host pids, init included), from the host's
/// /proc: (pid, state letter, command line).
pub fn guest_processes(init: i32) -> Vec<(i32, char, String)> {
    let Ok(ns) = std::fs::read_link(format!("/proc/{init}/ns/pid")) else {
        return vec![];
    };
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(format!("/proc/{pid}/ns/pid"))
            .ok()
            .as_ref()
            != Some(&ns)
        {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The state follows the command name's closing parenthesis.
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].trim_start().chars().next())
            .unwrap_or('?');
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        out.push((pid, state, cmd.trim().to_string()));
    }
    out
}

/// The host pid of nginx's master process in the guest whose init is `init`.
pub fn nginx_master(init: i32) -> Option<i32> {
    guest_processes(init)
        .into_iter()
        .find(|(_, s, c)| *s != 'Z' && c.starts_with("nginx: master process"))
        .map(|(p, _, _)| p)
}

pub fn zombies(init: i32) -> Vec<(i32, char, String)> {
    guest_processes(init)
        .into_iter()
        .filter(|(_, s, _)| *s == 'Z')
        .collect()
}

/// An HTTP request to nginx from inside the guest (bash's /dev/tcp: the tree has no curl; the
/// guest has its own loopback-only network, so nothing reaches the host's).
pub fn http_get(d: &TestDaemon, name: &str) -> String {
    d.ctl_ok(&[
        "exec",
        name,
        "--",
        "bash",
        "-c",
        "exec 3<>/dev/tcp/127.0.0.1/80; printf 'GET / HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3; cat <&3",
    ])
}

/// `n` guests named `prefix000`… with context ids from `first_context`, each limited as a
/// hosting provider would (64 MiB, 64 pids), plain init, marked `mark`, all on the one busybox
/// `root` (their vdir a link to it): what the density benchmark and the scale test start.
pub fn limited_guests_on_one_root(
    d: &crate::TestDaemon,
    prefix: &str,
    n: usize,
    first_context: u32,
    mark: &str,
    root: &Path,
    extra: &[(&str, &str)],
) {
    for i in 0..n {
        let name = format!("{prefix}{i:03}");
        let mut g = GuestBuilder::new(&name)
            .context(first_context + i as u32)
            .file("apps/init/style", "plain\n")
            .file("apps/init/mark", &format!("{mark}\n"))
            .file("cgroup/memory.limit_in_bytes", "67108864\n")
            .file("cgroup/pids.max", "64\n");
        for (f, c) in extra {
            g = g.file(f, c);
        }
        let cfg = g.write(d);
        let _ = std::fs::remove_dir(d.vdir_base.join(&name));
        std::os::unix::fs::symlink(root, cfg.join("vdir")).unwrap();
    }
}

/// Runs the escape helper installed at /escape in running guest `guest` with `args` (its usage:
/// tests/src/bin/vserverd-escape.rs), requires it to exit 0, and returns its output and the
/// attempts it reported, one JSON object each.
pub fn run_escape(d: &TestDaemon, guest: &str, args: &[&str]) -> (String, Vec<serde_json::Value>) {
    let mut argv = vec!["exec", guest, "--", "/escape"];
    argv.extend_from_slice(args);
    let out = d.ctl(&argv);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{guest}: escape helper failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line from the escape helper"))
        .collect();
    (text, results)
}
