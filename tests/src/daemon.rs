//! A vserverd on temporary config, vdir and run roots, torn down on drop even when the test
//! panics: the daemon is killed and everything it could have left behind is removed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::bins;

pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub config_root: PathBuf,
    pub vdir_base: PathBuf,
    pub run_dir: PathBuf,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// This daemon's guests' cgroups: OWN/PREFIX/NAME in every hierarchy, unique per daemon
    /// so parallel tests never share one.
    pub cgroup_prefix: String,
    child: Option<Child>,
    extra_args: Vec<String>,
    /// Files the daemon inherits as fds 9, 10, … without close-on-exec (as a careless parent
    /// would pass them).
    inherited: Vec<std::fs::File>,
    /// Extra environment for the daemon (VSERVERD_FAULT for the crash matrix).
    pub env: Vec<(String, String)>,
    /// Run the daemon in this network namespace (a test's stand-in for the host's network).
    pub netns: Option<PathBuf>,
}

impl TestDaemon {
    /// Prepares roots without starting the daemon (write guests first, then [`Self::spawn`]).
    pub fn prepare() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vserverd-test.")
            .tempdir()
            .expect("tempdir");
        let config_root = dir.path().join("etc");
        let vdir_base = dir.path().join("vservers");
        let run_dir = dir.path().join("run");
        let state_dir = dir.path().join("state");
        for d in [&config_root, &vdir_base, &run_dir, &state_dir] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        let socket = run_dir.join("control");
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let cgroup_prefix = format!(
            "vserverd-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        Self {
            dir,
            config_root,
            vdir_base,
            run_dir,
            state_dir,
            socket,
            cgroup_prefix,
            child: None,
            extra_args: Vec::new(),
            inherited: Vec::new(),
            env: Vec::new(),
            netns: None,
        }
    }

    /// Prepares and starts a daemon on empty roots.
    pub fn start() -> Self {
        let mut d = Self::prepare();
        d.spawn();
        d
    }

    pub fn arg(&mut self, a: &str) -> &mut Self {
        self.extra_args.push(a.to_string());
        self
    }

    /// The daemon's arguments: this test's roots, socket and cgroup prefix, and any added.
    pub fn daemon_args(&self) -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = Vec::new();
        for (flag, v) in [
            ("--config-root", self.config_root.as_os_str()),
            ("--vdir-base", self.vdir_base.as_os_str()),
            ("--run-dir", self.run_dir.as_os_str()),
            ("--state-dir", self.state_dir.as_os_str()),
            ("--socket", self.socket.as_os_str()),
            ("--cgroup-prefix", std::ffi::OsStr::new(&self.cgroup_prefix)),
        ] {
            a.push(flag.into());
            a.push(v.into());
        }
        a.extend(self.extra_args.iter().map(Into::into));
        a
    }

    /// The daemon will inherit `f` as fd 9 (the next as 10, …), not close-on-exec.
    pub fn inherit(&mut self, f: std::fs::File) -> &mut Self {
        self.inherited.push(f);
        self
    }

    /// Starts (or restarts) the daemon and waits until its socket answers.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let log = std::fs::File::create(self.dir.path().join("vserverd.log")).expect("log");
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display()))
                    .arg("--")
                    .arg(bins::vserverd());
                c
            }
            None => Command::new(bins::vserverd()),
        };
        let raw: Vec<i32> = self
            .inherited
            .iter()
            .map(std::os::fd::AsRawFd::as_raw_fd)
            .collect();
        // SAFETY: dup2 only, between fork and exec; each target fd is left inheritable.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                for (i, fd) in raw.iter().enumerate() {
                    let to = 9 + i as i32;
                    // dup2 onto itself keeps close-on-exec: clear it either way.
                    if libc::dup2(*fd, to) < 0 || libc::fcntl(to, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd
            .args(self.daemon_args())
            .env(
                "VSERVERD_LOG",
                std::env::var("VSERVERD_TEST_LOG").unwrap_or_else(|_| "debug".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn vserverd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            // Connecting succeeds once the socket listens, before the daemon serves (it
            // adopts guests and restores the vdir barrier first): wait for a real answer.
            if let Ok(s) = std::os::unix::net::UnixStream::connect(&self.socket) {
                if answers(s) {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("vserverd exited early ({status}); log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "vserverd did not open {} in time; log:\n{}",
            self.socket.display(),
            self.log()
        );
    }

    /// SIGTERM and wait; the daemon is expected to exit cleanly.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vserverd.log")).unwrap_or_default()
    }

    /// Runs `vserverctl --socket SOCKET ARGS...`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(bins::vserverctl())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run vserverctl")
    }

    /// Starts `vserverctl --socket SOCKET ARGS...` without waiting (stdout and stderr piped).
    pub fn ctl_spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(bins::vserverctl())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run vserverctl")
    }

    /// Runs vserverctl and panics (with both outputs and the daemon's log) unless it exits 0.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let o = self.ctl(args);
        assert!(
            o.status.success(),
            "vserverctl {args:?} failed ({}):\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `vserverctl status NAME --json`, parsed.
    pub fn status(&self, name: &str) -> serde_json::Value {
        let o = self.ctl(&["status", name, "--json"]);
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "status {name}: {e}: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
    }

    /// The host pid of a running guest's init.
    pub fn init_pid(&self, name: &str) -> i32 {
        let s = self.status(name);
        s["init_pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("{name} has no init pid: {s}")) as i32
    }

    /// Polls `f` until it holds (generous timeout: only to avoid hanging).
    pub fn wait_until(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("timed out waiting for {what}; daemon log:\n{}", self.log());
    }

    /// The guest's cgroup directories (they need not exist).
    pub fn cgroup_dirs(&self, name: &str) -> Vec<PathBuf> {
        // An empty answer would make every "nothing left" check pass vacuously.
        vserverd::isolate::cgroup::Layout::detect()
            .expect("cgroup layout of this host")
            .guest(&self.cgroup_prefix, name)
            .dirs
            .into_iter()
            .map(|d| d.path)
            .collect()
    }

    /// Makes a network namespace for this test (pinned below its directory, gone with it),
    /// with loopback up, and runs the daemon in it from the next spawn on: the "host"
    /// network of the test, so the real host's network is never touched.
    pub fn host_netns(&mut self) -> PathBuf {
        let ns = self.dir.path().join("hostnet");
        std::fs::File::create(&ns).expect("netns file");
        let ok = Command::new("unshare")
            .arg(format!("--net={}", ns.display()))
            .args(["ip", "link", "set", "lo", "up"])
            .status()
            .expect("unshare");
        assert!(ok.success(), "cannot make a network namespace");
        self.netns = Some(ns.clone());
        ns
    }

    /// Runs a command in the test's host network namespace.
    pub fn in_host_net(&self, args: &[&str]) -> Output {
        let ns = self.netns.as_ref().expect("host_netns first");
        Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .arg("--")
            .args(args)
            .output()
            .expect("nsenter")
    }

    /// `vserverctl console NAME`, typing `input` and keeping stdin open until the console has
    /// shown `expect` (or 30 s passed); then stdin ends and the client leaves. Its success and
    /// everything it printed.
    pub fn console(&self, name: &str, input: &str, expect: &str) -> (bool, String) {
        use std::io::{Read, Write};
        use std::sync::{Arc, Mutex};
        let mut child = Command::new(bins::vserverctl())
            .arg("--socket")
            .arg(&self.socket)
            .args(["console", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vserverctl");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        let seen = Arc::new(Mutex::new(String::new()));
        let mut out = child.stdout.take().unwrap();
        let reader = {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = out.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    seen.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !seen.lock().unwrap().contains(expect)
            && std::time::Instant::now() < deadline
            && child.try_wait().ok().flatten().is_none()
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        drop(stdin);
        let o = child.wait_with_output().unwrap();
        let _ = reader.join();
        let text = seen.lock().unwrap().clone() + &String::from_utf8_lossy(&o.stderr);
        (o.status.success(), text)
    }

    pub fn guest_config(&self, name: &str) -> PathBuf {
        self.config_root.join(name)
    }

    pub fn guest_root(&self, name: &str) -> PathBuf {
        self.vdir_base.join(name)
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.kill();
        cleanup_cgroups(&self.cgroup_prefix);
        // The /proc file server and the console keeper outlive daemons by design: end this
        // test's here.
        for pid_file in [
            vserverd::procfs::mount_dir(&self.run_dir).with_extension("pid"),
            vserverd::console::socket(&self.run_dir).with_extension("pid"),
        ] {
            if let Some(pid) = std::fs::read_to_string(pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        cleanup_under(self.dir.path());
    }
}

/// Kills every process in the cgroups below PREFIX (in every hierarchy) and removes them:
/// guests have pivoted roots, so this, not their root path, is how they are found.
pub fn cleanup_cgroups(prefix: &str) {
    let Ok(layout) = vserverd::isolate::cgroup::Layout::detect() else {
        return;
    };
    // Depth first: guests may sit in shared groups (PREFIX/GROUP/NAME).
    fn clean(dir: &Path) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    clean(&e.path());
                }
            }
        }
        for _ in 0..200 {
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
            let pids = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for p in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    for h in &layout.hierarchies {
        clean(&h.mount.join(&h.own).join(prefix));
    }
}

/// Removes what guests started from `root` could leave: processes whose root or cwd is below
/// it, and mounts below it (deepest first).
pub fn cleanup_under(root: &Path) {
    let root_s = root.to_string_lossy().to_string();
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let r = std::fs::read_link(p.path().join("root")).ok();
            let c = std::fs::read_link(p.path().join("cwd")).ok();
            let below = [r, c].into_iter().flatten().any(|l| l.starts_with(&root_s));
            if below && pid != std::process::id() as i32 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(unescape))
        .filter(|m| m.starts_with(&root_s))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Whether the daemon on `s` answers a varlink call (GetInfo) within 20 s.
fn answers(mut s: std::os::unix::net::UnixStream) -> bool {
    use std::io::{Read, Write};
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    if s.write_all(b"{\"method\":\"org.varlink.service.GetInfo\"}\0")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) if buf[..n].contains(&0) => return true,
            Ok(_) => {}
        }
    }
}
