//! The VM tier (docs/vm-tier.md): a Debian system under qemu (software emulation) with systemd as
//! PID 1 on pure cgroup v2, for what this build machine cannot show (it is a cgroup v1 hybrid
//! host without systemd as PID 1).
//!
//! `scripts/vm.sh image SUITE` builds and caches the OS image (debootstrap, the suite's cloud
//! kernel and modules, packed as a cpio). Each [`Vm::run`] appends a second small cpio with
//! `/test/run.sh` (the script given), the project's binaries in `/test/bin` and whatever files
//! the test adds; boots it with `scripts/vm.sh qemu`; and reads the framed result the image's
//! `vsd-test.service` writes on the second serial port (`VSD-OUT: …` lines, `VSD-EXIT: N`).
//! qemu runs in its own process group, dies with the test process (PR_SET_PDEATHSIG) and is
//! killed (the whole group) on a hard timeout and on drop.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// The suites the image recipe builds: Debian 13 (kernel 6.12) and Debian 12 (kernel 6.1).
pub const SUITES: [&str; 2] = ["trixie", "bookworm"];

/// Time allowed from qemu's start to the runner's first line, on top of the script's timeout:
/// a boot takes ~20-40 s under TCG on a loaded 2-core machine.
const BOOT_ALLOWANCE: Duration = Duration::from_secs(240);

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// scripts/vm.sh of this checkout.
pub fn script() -> PathBuf {
    repo().join("scripts/vm.sh")
}

/// Whether qemu-system-x86_64 is on PATH (scripts/setup.sh installs it).
pub fn qemu_available() -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| d.join("qemu-system-x86_64").is_file())
    })
}

/// The prerequisites of a VM test (root, qemu, busybox-static, the suite's image), each through
/// [`crate::require`]: false (after a printed skip) outside CI, a failure under CI=true.
pub fn ready(suite: &str) -> bool {
    use crate::require;
    if !(require(crate::is_root(), "root")
        && require(qemu_available(), "qemu-system-x86_64 (scripts/setup.sh)")
        && require(
            crate::guest::busybox_available(),
            "busybox-static (/bin/busybox)",
        ))
    {
        return false;
    }
    let img = image(suite);
    require(img.is_ok(), &format!("the {suite} VM image: {img:?}"))
}

/// Builds (the first time; about a minute) or finds the cached image of `suite` and returns its
/// directory (vmlinuz, base.cpio). The error carries the script's output.
pub fn image(suite: &str) -> Result<PathBuf, String> {
    let out = Command::new("bash")
        .arg(script())
        .arg("image")
        .arg(suite)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", script().display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if !stderr.is_empty() {
        say(stderr.trim_end());
    }
    if !out.status.success() || stdout.is_empty() {
        return Err(format!(
            "scripts/vm.sh image {suite} failed ({}):\n{stderr}",
            out.status
        ));
    }
    Ok(PathBuf::from(stdout))
}

/// Writes straight to the test process's stderr, past libtest's capture, so the tier's timings
/// show in CI's log even when the test passes.
pub fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "vm: {msg}");
}

/// The target directory the running test belongs to (target/ from target/debug/deps/TEST).
fn target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .find(|a| {
            a.file_name()
                .is_some_and(|n| n == "debug" || n == "release")
        })
        .and_then(Path::parent)
        .map(Path::to_path_buf)
}

/// The project binary `name` for the VM: `$ENV` if set, else the newer of target/release and
/// target/debug.
pub fn project_binary(name: &str, env: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let target = target_dir()?;
    ["release", "debug"]
        .iter()
        .map(|p| target.join(p).join(name))
        .filter_map(|p| {
            let m = std::fs::metadata(&p).ok()?.modified().ok()?;
            Some((m, p))
        })
        .max_by_key(|(m, _)| *m)
        .map(|(_, p)| p)
}

/// What a boot reported.
#[derive(Debug, Clone)]
pub struct VmRun {
    pub suite: String,
    /// The script's exit code; None when the VM never reported one (crash, hang, timeout).
    pub exit: Option<i32>,
    /// The script's stdout and stderr, line by line.
    pub output: String,
    /// The serial console (kernel, systemd, the script's lines echoed).
    pub console: String,
    /// Where the console log was kept.
    pub console_path: PathBuf,
    /// Uptime in the VM when the runner began (boot to multi-user and then some).
    pub began_at: Option<f64>,
    /// qemu's start to the result.
    pub elapsed: Duration,
    /// The hard timeout killed qemu.
    pub timed_out: bool,
    /// qemu was SIGKILLed on the script's request ([`Vm::kill_on`]): a power cut.
    pub killed: bool,
}

impl VmRun {
    pub fn success(&self) -> bool {
        self.exit == Some(0)
    }

    /// Everything needed to see what went wrong: exit, output, the console's tail.
    pub fn report(&self) -> String {
        let lines: Vec<&str> = self.console.lines().collect();
        let tail = lines[lines.len().saturating_sub(200)..].join("\n");
        format!(
            "VM {} exit {:?}{} after {:.1} s\n--- output\n{}\n--- console (last 200 lines; all of it in {})\n{}",
            self.suite,
            self.exit,
            if self.timed_out { " (hard timeout: qemu killed)" } else { "" },
            self.elapsed.as_secs_f64(),
            self.output,
            self.console_path.display(),
            tail
        )
    }

    /// Panics with [`Self::report`] unless the script exited 0.
    pub fn assert_success(&self) {
        assert!(self.success(), "{}", self.report());
    }
}

/// What goes into the per-run cpio at a path.
#[derive(Debug, Clone)]
pub enum Entry {
    File { data: Vec<u8>, mode: u32 },
    Dir { mode: u32 },
    Symlink { target: String },
}

/// A boot to come: the suite, the files of the per-run cpio, the timeout.
pub struct Vm {
    suite: String,
    label: String,
    files: Vec<(String, Entry)>,
    timeout: Duration,
    boot_allowance: Duration,
    kernel_args: Vec<String>,
    kernel: Option<PathBuf>,
    disk: Option<PathBuf>,
    kill_on: Option<String>,
    /// The image's own kernel even where VSERVERD_VM_KERNEL names another.
    image_kernel: bool,
}

impl Vm {
    pub fn new(suite: &str) -> Self {
        Self {
            suite: suite.into(),
            label: suite.into(),
            files: Vec::new(),
            timeout: Duration::from_secs(300),
            boot_allowance: BOOT_ALLOWANCE,
            kernel_args: Vec::new(),
            kernel: None,
            disk: None,
            kill_on: None,
            image_kernel: false,
        }
    }

    /// A name for the console log kept in target/vm-tier/LABEL.console.log.
    pub fn label(mut self, label: &str) -> Self {
        self.label = label.into();
        self
    }

    /// A file in the VM at `dest` (absolute; directories are created).
    pub fn file(mut self, dest: &str, content: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.files.push((
            dest.into(),
            Entry::File {
                data: content.into(),
                mode,
            },
        ));
        self
    }

    /// The host directory `src`, recursively (files, directories, symlinks, with their
    /// permission bits; owned by root), at `dest` in the VM.
    pub fn tree(mut self, dest: &str, src: &Path) -> Self {
        fn walk(files: &mut Vec<(String, Entry)>, dest: &str, src: &Path) {
            use std::os::unix::fs::PermissionsExt;
            let md =
                std::fs::symlink_metadata(src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
            let mode = md.permissions().mode() & 0o7777;
            if md.file_type().is_symlink() {
                let target = std::fs::read_link(src).expect("readlink");
                files.push((
                    dest.into(),
                    Entry::Symlink {
                        target: target.to_string_lossy().into_owned(),
                    },
                ));
            } else if md.is_dir() {
                files.push((dest.into(), Entry::Dir { mode }));
                let mut names: Vec<_> = std::fs::read_dir(src)
                    .unwrap_or_else(|e| panic!("{}: {e}", src.display()))
                    .filter_map(|e| e.ok().map(|e| e.file_name()))
                    .collect();
                names.sort();
                for n in names {
                    let d = format!("{}/{}", dest.trim_end_matches('/'), n.to_string_lossy());
                    walk(files, &d, &src.join(&n));
                }
            } else {
                let data = std::fs::read(src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
                files.push((dest.into(), Entry::File { data, mode }));
            }
        }
        walk(&mut self.files, dest, src);
        self
    }

    /// A busybox guest NAME with context CTX, made on the host exactly as the host tests make
    /// theirs ([`crate::GuestBuilder::busybox`], plain init style, `uts/nodename` NAME): its
    /// config tree at /etc/vservers/NAME, its root at /vservers/NAME.
    pub fn busybox_guest(self, name: &str, ctx: u32) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cfg, vdir) = (dir.path().join("etc"), dir.path().join("vservers"));
        crate::GuestBuilder::busybox(name)
            .context(ctx)
            .file("uts/nodename", &format!("{name}\n"))
            .write_to(&cfg, &vdir);
        self.tree(&format!("/etc/vservers/{name}"), &cfg.join(name))
            .tree(&format!("/vservers/{name}"), &vdir.join(name))
    }

    /// A host file copied to `dest` in the VM.
    pub fn host_file(self, dest: &str, src: &Path, mode: u32) -> Self {
        let content =
            std::fs::read(src).unwrap_or_else(|e| panic!("reading {}: {e}", src.display()));
        self.file(dest, content, mode)
    }

    /// vserverd, vserverctl and vserverd-metrics in /test/bin (on the script's PATH; debug info stripped) and
    /// scripts/busybox-guest.sh as /test/busybox-guest.sh.
    pub fn project_binaries(mut self) -> Self {
        for (name, env) in [
            ("vserverd", "VSERVERD_BIN"),
            ("vserverd-stage", "VSERVERD_STAGE_BIN"),
            ("vserverctl", "VSERVERCTL_BIN"),
            ("vserverd-metrics", "VSERVERD_METRICS_BIN"),
        ] {
            let src = project_binary(name, env).unwrap_or_else(|| {
                panic!("{name} not built: run cargo build --workspace (or set {env})")
            });
            self.files.push((
                format!("/test/bin/{name}"),
                Entry::File {
                    data: stripped(&src),
                    mode: 0o755,
                },
            ));
        }
        self.host_file(
            "/test/busybox-guest.sh",
            &repo().join("scripts/busybox-guest.sh"),
            0o755,
        )
    }

    /// The script's own timeout in the VM (default 300 s); qemu is killed the boot allowance later.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// What qemu gets on top of the script's timeout before it is killed (default 240 s).
    pub fn boot_allowance(mut self, t: Duration) -> Self {
        self.boot_allowance = t;
        self
    }

    /// Boots `bzimage` instead of the image's own kernel (scripts/kernel.sh's patched one).
    pub fn kernel(mut self, bzimage: &Path) -> Self {
        self.kernel = Some(bzimage.to_path_buf());
        self
    }

    /// A raw disk image on the host as the VM's /dev/vda (virtio, the host's page cache as its
    /// write cache: what the VM wrote before qemu dies is on the image, what it had not yet
    /// written back is lost, as at a power cut). The same image given to two boots is one
    /// machine booting twice.
    pub fn disk(mut self, image: &Path) -> Self {
        self.disk = Some(image.to_path_buf());
        self
    }

    /// Pulls the plug: once the script prints the line `marker`, qemu is SIGKILLed (no
    /// shutdown, nothing flushed inside the VM) and the run reports `killed` with no exit.
    pub fn kill_on(mut self, marker: &str) -> Self {
        self.kill_on = Some(marker.into());
        self
    }

    /// The image's own (Debian's) kernel, whatever VSERVERD_VM_KERNEL says: for a test of
    /// what a kernel without kernel-patch/ does.
    pub fn image_kernel(mut self) -> Self {
        self.image_kernel = true;
        self
    }

    /// The kernel a boot uses: [`Self::kernel`]'s, else `$VSERVERD_VM_KERNEL` (a bzImage, e.g.
    /// `$(bash scripts/kernel.sh)`: every VM test on the patched kernel, a no-regression run;
    /// docs/vm-tier.md), else the image's.
    fn kernel_for(&self, image: &Path) -> PathBuf {
        if let Some(k) = &self.kernel {
            return k.clone();
        }
        match std::env::var_os("VSERVERD_VM_KERNEL") {
            Some(k) if !self.image_kernel && !k.is_empty() => PathBuf::from(k),
            _ => image.join("vmlinuz"),
        }
    }

    /// The label boots are logged under: a VSERVERD_VM_KERNEL run's gets `-patched`, so that a
    /// suite running the tier twice (scripts/test.sh) keeps both consoles and both timings.
    fn log_label(&self) -> String {
        match std::env::var_os("VSERVERD_VM_KERNEL") {
            Some(k) if self.kernel.is_none() && !self.image_kernel && !k.is_empty() => {
                format!("{}-patched", self.label)
            }
            _ => self.label.clone(),
        }
    }

    /// An extra kernel command-line argument.
    pub fn kernel_arg(mut self, a: &str) -> Self {
        self.kernel_args.push(a.into());
        self
    }

    /// Boots the image with `run_sh` as /test/run.sh and returns what it reported. Errors are
    /// the harness's own (no image, no qemu); a failing script is a VmRun with its exit code.
    pub fn run(&self, run_sh: &str) -> Result<VmRun, String> {
        let image = image(&self.suite)?;
        // One VM at a time in this process and across processes: two TCG guests on two cores
        // only slow each other down past their timeouts.
        static ONE: Mutex<()> = Mutex::new(());
        let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
        let _lock = FileLock::take(Path::new("/run/vserverd-vm-tier.lock"));
        // The emulator, not the code under test, can kill a boot before the runner starts (TCG
        // bugs the qemu arguments in scripts/vm.sh work around; none seen since): boot again,
        // and say so, rather than fail a test that never ran.
        let mut attempt = 1;
        loop {
            let run = self.boot(&image, run_sh)?;
            if attempt < 3 && run.began_at.is_none() && run.exit.is_none() && kernel_died(&run) {
                say(&format!(
                    "{}: the VM kernel died before the runner began (boot {attempt}): booting again; its console is in {}",
                    self.log_label(),
                    run.console_path.display()
                ));
                let kept = run
                    .console_path
                    .with_extension(format!("boot{attempt}.log"));
                let _ = std::fs::rename(&run.console_path, kept);
                attempt += 1;
                continue;
            }
            return Ok(run);
        }
    }

    /// One boot of [`Self::run`].
    fn boot(&self, image: &Path, run_sh: &str) -> Result<VmRun, String> {
        let work = tempfile::Builder::new()
            .prefix("vsd-vm.")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let mut files = self.files.clone();
        files.push((
            "/test/run.sh".into(),
            Entry::File {
                data: run_sh.as_bytes().to_vec(),
                mode: 0o755,
            },
        ));
        let initrd = work.path().join("initrd");
        let t = Instant::now();
        std::fs::copy(image.join("base.cpio"), &initrd)
            .map_err(|e| format!("copying {}/base.cpio: {e}", image.display()))?;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&initrd)
            .map_err(|e| format!("{}: {e}", initrd.display()))?;
        f.write_all(&newc(&files))
            .map_err(|e| format!("{}: {e}", initrd.display()))?;
        drop(f);
        let packed = t.elapsed();

        let console = work.path().join("console.log");
        let result = work.path().join("result.log");
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .arg("qemu")
            .arg(self.kernel_for(image))
            .arg(&initrd)
            .arg(&console)
            .arg(&result)
            .arg(format!("vsd.timeout={}", self.timeout.as_secs()))
            .args(&self.kernel_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(disk) = &self.disk {
            // scripts/vm.sh passes VSD_QEMU_ARGS on, split on spaces.
            cmd.env(
                "VSD_QEMU_ARGS",
                format!("-drive file={},format=raw,if=virtio", disk.display()),
            );
        }
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let start = Instant::now();
        let mut qemu = Qemu {
            child: cmd
                .spawn()
                .map_err(|e| format!("starting {} qemu: {e}", script().display()))?,
            reaped: false,
        };
        let hard = self.timeout + self.boot_allowance;
        let mut timed_out = false;
        let mut killed = false;
        let mut reported_at: Option<Instant> = None;
        let kill_line = self.kill_on.as_ref().map(|m| format!("VSD-OUT: {m}"));
        let status = loop {
            if let Some(st) = qemu.try_wait() {
                break Some(st);
            }
            if let Some(k) = &kill_line {
                if read_lossy(&result).lines().any(|l| l.trim_end() == k) {
                    killed = true;
                    qemu.kill();
                    break None;
                }
            }
            if start.elapsed() > hard {
                timed_out = true;
                qemu.kill();
                break None;
            }
            // The result is in but the VM does not power off: give it 30 s, then kill it.
            if reported_at.is_none() && read_lossy(&result).contains("VSD-EXIT:") {
                reported_at = Some(Instant::now());
            }
            if reported_at.is_some_and(|r| r.elapsed() > Duration::from_secs(30)) {
                qemu.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let elapsed = start.elapsed();
        let qemu_stderr = qemu.stderr();
        drop(qemu);

        let framed = read_lossy(&result).replace('\r', "");
        let mut output = String::new();
        let mut exit = None;
        let mut began_at = None;
        for line in framed.lines() {
            if let Some(l) = line.strip_prefix("VSD-OUT: ") {
                output.push_str(l);
                output.push('\n');
            } else if let Some(code) = line.strip_prefix("VSD-EXIT: ") {
                exit = code.trim().parse().ok();
            } else if let Some(up) = line.strip_prefix("VSD-BEGIN ") {
                began_at = up.trim().parse().ok();
            }
        }
        let mut console_text = read_lossy(&console).replace('\r', "");
        if !qemu_stderr.is_empty() {
            console_text.push_str(&format!(
                "\n--- qemu stderr (status {status:?})\n{qemu_stderr}"
            ));
        }
        let console_path = match target_dir() {
            Some(t) => {
                let dir = t.join("vm-tier");
                let _ = std::fs::create_dir_all(&dir);
                dir.join(format!("{}.console.log", self.log_label()))
            }
            None => work.path().join("console.log"),
        };
        let _ = std::fs::write(&console_path, &console_text);
        // One line per boot for scripts/test.sh's tier total: LABEL SECONDS EXIT.
        if let Some(dir) = console_path.parent() {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("runs.log"))
            {
                let _ = writeln!(
                    f,
                    "{} {:.1} {}",
                    self.log_label(),
                    elapsed.as_secs_f64(),
                    if killed {
                        "killed".to_string()
                    } else {
                        exit.map_or_else(|| "none".to_string(), |c: i32| c.to_string())
                    }
                );
            }
        }
        say(&format!(
            "{}: exit {:?} after {:.1} s (initrd {:.1} s, runner began at {} s of VM uptime){}{}",
            self.log_label(),
            exit,
            elapsed.as_secs_f64(),
            packed.as_secs_f64(),
            began_at.map_or("?".into(), |b: f64| format!("{b:.1}")),
            if timed_out { ", HARD TIMEOUT" } else { "" },
            if killed {
                ", qemu SIGKILLed as asked"
            } else {
                ""
            }
        ));
        Ok(VmRun {
            suite: self.suite.clone(),
            exit,
            output,
            console: console_text,
            console_path,
            began_at,
            elapsed,
            timed_out,
            killed,
        })
    }
}

/// Whether the console shows the VM's kernel dying (panic or oops).
fn kernel_died(run: &VmRun) -> bool {
    run.console.contains("Kernel panic") || run.console.contains("Oops:")
}

/// qemu (exec'd by vm.sh in a process group of its own): the group is killed and reaped on drop.
struct Qemu {
    child: Child,
    reaped: bool,
}

impl Qemu {
    fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        let st = self.child.try_wait().ok().flatten();
        self.reaped |= st.is_some();
        st
    }

    fn kill(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: plain syscall on the group we created (process_group(0): pgid == pid), not
        // yet reaped, so the id cannot have been reused.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
    }

    /// What qemu said on stderr (once it has exited).
    fn stderr(&mut self) -> String {
        use std::io::Read;
        let mut s = String::new();
        if self.reaped {
            if let Some(mut e) = self.child.stderr.take() {
                let _ = e.read_to_string(&mut s);
            }
        }
        s
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An exclusive flock held until drop (best effort: without the file, no lock).
struct FileLock(Option<std::fs::File>);

impl FileLock {
    fn take(path: &Path) -> Self {
        use std::os::fd::AsRawFd;
        let Ok(f) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
        else {
            return Self(None);
        };
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            say(&format!("waiting for another VM run ({})", path.display()));
            // SAFETY: as above.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        }
        Self(Some(f))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        self.0 = None; // closing the descriptor releases the lock
    }
}

fn read_lossy(p: &Path) -> String {
    std::fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// `src` without debug info (a debug vserverd is ~90 MB, ~10 MB stripped), or as is when
/// `strip` is missing.
fn stripped(src: &Path) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("bin");
    let ok = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&out)
        .arg(src)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let from = if ok { out.as_path() } else { src };
    std::fs::read(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()))
}

/// A newc cpio archive (what the kernel unpacks as an initramfs) holding `files` (absolute
/// destinations), owned by root. Parent directories not listed are added with mode 0755 (the
/// kernel applies a directory entry's mode to an existing directory too: list one to keep
/// another mode).
pub fn newc(files: &[(String, Entry)]) -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, nlink: u32, data: &[u8]) {
        let mtime = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{mtime:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            0,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    let mut out = Vec::new();
    let mut dirs: Vec<String> = Vec::new();
    let mut ino = 1u32;
    for (dest, e) in files {
        let rel = dest.trim_matches('/');
        let mut parent = String::new();
        for comp in Path::new(rel)
            .parent()
            .into_iter()
            .flat_map(Path::components)
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(&comp.as_os_str().to_string_lossy());
            if !dirs.contains(&parent) {
                dirs.push(parent.clone());
                entry(&mut out, ino, &parent, libc::S_IFDIR | 0o755, 2, &[]);
                ino += 1;
            }
        }
        match e {
            Entry::File { data, mode } => {
                entry(&mut out, ino, rel, libc::S_IFREG | (mode & 0o7777), 1, data)
            }
            Entry::Dir { mode } => {
                if !dirs.iter().any(|d| d == rel) {
                    dirs.push(rel.to_string());
                }
                entry(&mut out, ino, rel, libc::S_IFDIR | (mode & 0o7777), 2, &[])
            }
            Entry::Symlink { target } => entry(
                &mut out,
                ino,
                rel,
                libc::S_IFLNK | 0o777,
                1,
                target.as_bytes(),
            ),
        }
        ino += 1;
    }
    entry(&mut out, 0, "TRAILER!!!", 0, 1, &[]);
    out
}

/// The patched kernel's image, built by scripts/kernel.sh if its cache is cold (minutes with
/// a warm ccache; docs/vm-tier.md has the cold figure).
pub fn patched_kernel() -> Option<PathBuf> {
    let out = Command::new("bash")
        .arg(repo().join("scripts/kernel.sh"))
        .output()
        .expect("bash");
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let ok = out.status.success() && path.is_file();
    if !crate::require(
        ok,
        &format!(
            "the patched kernel (scripts/kernel.sh: {})",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ),
    ) {
        return None;
    }
    Some(path)
}

/// tests/fixtures/cowlink.c (the COWLINK mark, xattrs, project ids), built static for the VM.
pub fn cowlink_tool() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("cowlink");
    let o = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(repo().join("tests/fixtures/cowlink.c"))
        .output()
        .expect("gcc");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read(&bin).unwrap()
}
