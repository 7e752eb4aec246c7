//! Guest consoles: each guest's /dev/console (and init's stdio) is the slave of a pty whose
//! master a small process of its own keeps (`vserverd __console`, process name
//! vserverd-tty): it copies what the guest writes to RUN_DIR/guests/NAME.log and to any
//! attached `vserverctl console`, and passes their keystrokes in.
//!
//! Why not the daemon: a pty master lives as long as its holder. Held by the daemon, a daemon
//! restart would hang up every guest's console (getty on it dies, output is lost). The keeper
//! holds nothing but the masters and outlives daemons, as the /proc server does (crate::procfs).
//!
//! The daemon speaks to it over RUN_DIR/console.sock (root only), one JSON line a connection:
//! `{"op":"watch","name":N,"log":PATH}` with the master passed along (SCM_RIGHTS), or
//! `{"op":"attach","name":N}`, after which the connection is the console's byte stream, or
//! `{"op":"close","name":N}` when the guest has stopped. The keeper holds a slave open too:
//! a guest's init may close every console fd it has and open /dev/console again for each
//! message (systemd does), and a pty whose slaves are all closed reads EIO on the master and
//! fails the next open of the slave with EIO once the master goes — so the guest's end is
//! told, not guessed.

pub mod handover;
mod keeper;
pub mod relay;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

pub use keeper::main;

/// Opens a guest's console log for a new run: the last run's log becomes NAME.log.1 (its
/// shutdown messages stay readable), and the new one is written O_APPEND, so cutting it back
/// to empty (keeper.rs) restarts it at offset 0.
pub fn open_log(log: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if std::fs::metadata(log).is_ok_and(|m| m.len() > 0) {
        let _ = std::fs::rename(log, previous_log(log));
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NOFOLLOW)
        .open(log)?;
    f.set_len(0)?;
    Ok(f)
}

/// Opens a guest's console log to go on with it (a console taken over from an earlier keeper).
pub fn append_log(log: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NOFOLLOW)
        .open(log)
}

fn previous_log(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

/// RUN_DIR/guests/NAME.log, where a guest's console is logged.
pub fn log_path(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join("guests").join(format!("{name}.log"))
}

/// Removes a guest's console logs (this run's and the last): `delete` leaves none.
pub fn remove_logs(run_dir: &Path, name: &str) {
    let log = log_path(run_dir, name);
    for p in [previous_log(&log), log] {
        let _ = std::fs::remove_file(p);
    }
}

/// The keeper's process name (what ps shows).
pub const NAME: &str = "vserverd-tty";

/// The keeper's pid, if its pid file names a live keeper.
pub fn keeper_pid(run_dir: &Path) -> Option<i32> {
    crate::detached::pid_of(NAME, &socket(run_dir))
}

/// argv[1] of the keeper process.
pub const ARG: &str = "__console";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Request {
    /// Which protocol the keeper speaks (crate::detached::PROTOCOL): it answers with one line,
    /// `vserverd-tty N`. Keepers from before versions answer nothing.
    Hello,
    /// A console to keep, its master and slave passed along. `resume`: a console taken over
    /// from an earlier keeper, whose log goes on (appended to) instead of starting anew.
    Watch {
        name: String,
        log: PathBuf,
        #[serde(default)]
        resume: bool,
    },
    Attach {
        name: String,
    },
    Close {
        name: String,
    },
}

/// The keeper's control socket.
pub fn socket(run_dir: &Path) -> PathBuf {
    run_dir.join("console.sock")
}

fn connect(run_dir: &Path) -> std::io::Result<UnixStream> {
    let s = UnixStream::connect(socket(run_dir))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

/// A connection to the keeper, starting one if none answers. Blocking: call it off the async
/// runtime.
fn keeper(run_dir: &Path) -> Result<UnixStream, String> {
    if let Ok(s) = connect(run_dir) {
        return Ok(s);
    }
    static ONE: Mutex<()> = Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    if let Ok(s) = connect(run_dir) {
        return Ok(s);
    }
    crate::detached::start(NAME, ARG, &socket(run_dir), "console keeper")?;
    let s = connect(run_dir).map_err(|e| format!("the console keeper does not answer: {e}"))?;
    tracing::info!("console keeper serving {}", socket(run_dir).display());
    Ok(s)
}

/// Reads the keeper's one-line answer ("ok" or why not), byte by byte: on an attach, the
/// console's bytes follow it.
fn answer(s: &mut UnixStream) -> Result<(), String> {
    let mut line = Vec::new();
    let mut b = [0u8];
    while line.len() < 512 {
        match s.read(&mut b) {
            Ok(1) if b[0] == b'\n' => break,
            Ok(1) => line.push(b[0]),
            Ok(_) => break,
            Err(e) => return Err(format!("console keeper: {e}")),
        }
    }
    match String::from_utf8_lossy(&line).as_ref() {
        "ok" => Ok(()),
        why => Err(format!("console keeper: {why}")),
    }
}

/// A new console for guest `name`, logged to `log` (emptied): the pty slave (init's stdio),
/// and its path (/dev/pts/N, bound on the guest's /dev/console).
pub fn open(run_dir: &Path, name: &str, log: &Path) -> Result<(OwnedFd, PathBuf), String> {
    let (master, slave) = crate::sys::fd::open_ptmx()
        .and_then(crate::sys::fd::new_pty)
        .map_err(|e| format!("a pty for the console: {e}"))?;
    let path = std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd()))
        .map_err(|e| format!("the console pty's name: {e}"))?;
    let mut s = keeper(run_dir)?;
    watch(&mut s, name, log, false, &master, &slave)?;
    Ok((slave, path))
}

/// Hands the keeper on `s` guest `name`'s console (its pty master and a slave), logged to
/// `log`: emptied first, or appended to when `resume` (a console taken over, handover.rs).
fn watch(
    s: &mut UnixStream,
    name: &str,
    log: &Path,
    resume: bool,
    master: &OwnedFd,
    slave: &OwnedFd,
) -> Result<(), String> {
    let mut req = serde_json::to_vec(&Request::Watch {
        name: name.into(),
        log: log.into(),
        resume,
    })
    .map_err(|e| e.to_string())?;
    req.push(b'\n');
    let fds = [master.as_raw_fd(), slave.as_raw_fd()];
    nix::sys::socket::sendmsg::<()>(
        s.as_raw_fd(),
        &[std::io::IoSlice::new(&req)],
        &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .map_err(|e| format!("console keeper: {e}"))?;
    answer(s)
}

/// The protocol version of the keeper answering at RUN_DIR/console.sock: None when it answers
/// no hello (a keeper from before versions) or none answers.
pub fn keeper_protocol(run_dir: &Path) -> Option<u32> {
    let mut s = connect(run_dir).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut req = serde_json::to_vec(&Request::Hello).ok()?;
    req.push(b'\n');
    s.write_all(&req).ok()?;
    let mut line = String::new();
    let _ = (&mut s).take(128).read_to_string(&mut line);
    parse_hello(&line)
}

/// `vserverd-tty N` -> N.
fn parse_hello(line: &str) -> Option<u32> {
    line.trim_end()
        .strip_prefix(NAME)?
        .strip_prefix(' ')?
        .parse()
        .ok()
}

/// Starts a new keeper (the old one is gone) and gives it the consoles taken over from the
/// old one, each a (guest name, master, slave); their logs go on. Returns how many it took.
pub fn resume(run_dir: &Path, consoles: &[(String, OwnedFd, OwnedFd)]) -> Result<usize, String> {
    let mut n = 0;
    if consoles.is_empty() {
        keeper(run_dir)?;
    }
    for (name, master, slave) in consoles {
        let mut s = keeper(run_dir)?;
        watch(&mut s, name, &log_path(run_dir, name), true, master, slave)?;
        n += 1;
    }
    Ok(n)
}

/// Tells the keeper that guest `name` has stopped: its console goes. Best effort and not
/// waited for (no keeper, no console: nothing to do; a new start replaces it anyway).
pub fn close(run_dir: &Path, name: &str) {
    let Ok(mut s) = connect(run_dir) else { return };
    if let Ok(mut req) = serde_json::to_vec(&Request::Close { name: name.into() }) {
        req.push(b'\n');
        let _ = s.write_all(&req);
    }
}

/// A connection to guest `name`'s console: what it writes comes out, what is written goes in.
pub fn attach(run_dir: &Path, name: &str) -> Result<OwnedFd, String> {
    let mut s = connect(run_dir).map_err(|_| format!("{name} has no console (no keeper runs)"))?;
    let mut req =
        serde_json::to_vec(&Request::Attach { name: name.into() }).map_err(|e| e.to_string())?;
    req.push(b'\n');
    s.write_all(&req)
        .map_err(|e| format!("console keeper: {e}"))?;
    answer(&mut s)?;
    s.set_read_timeout(None).map_err(|e| e.to_string())?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_names_the_keeper_and_its_protocol() {
        assert_eq!(parse_hello("vserverd-tty 1\n"), Some(1));
        assert_eq!(parse_hello("vserverd-tty 12"), Some(12));
        assert_eq!(
            parse_hello(""),
            None,
            "a keeper from before versions says nothing"
        );
        assert_eq!(parse_hello("vserverd-ttyx 1"), None);
        assert_eq!(parse_hello("vserverd-tty one"), None);
    }

    #[test]
    fn a_watch_from_before_resume_reads_as_a_new_console() {
        let r: Request = serde_json::from_str(r#"{"op":"watch","name":"a","log":"/l"}"#).unwrap();
        assert!(matches!(r, Request::Watch { resume: false, .. }));
        assert!(serde_json::from_str::<Request>(r#"{"op":"hello"}"#).is_ok());
    }
}
