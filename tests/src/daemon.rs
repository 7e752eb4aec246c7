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
    pub socket: PathBuf,
    child: Option<Child>,
    extra_args: Vec<String>,
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
        for d in [&config_root, &vdir_base, &run_dir] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        let socket = run_dir.join("control");
        Self {
            dir,
            config_root,
            vdir_base,
            run_dir,
            socket,
            child: None,
            extra_args: Vec::new(),
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

    /// Starts (or restarts) the daemon and waits until its socket answers.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let log = std::fs::File::create(self.dir.path().join("vserverd.log")).expect("log");
        let child = Command::new(bins::vserverd())
            .arg("--config-root")
            .arg(&self.config_root)
            .arg("--vdir-base")
            .arg(&self.vdir_base)
            .arg("--run-dir")
            .arg(&self.run_dir)
            .arg("--socket")
            .arg(&self.socket)
            .args(&self.extra_args)
            .env("VSERVERD_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn vserverd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
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
        cleanup_under(self.dir.path());
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
