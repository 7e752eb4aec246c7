//! `vserverd __console SOCKET`: binds the socket, forks, and the child (vserverd-tty)
//! keeps every guest's console master in one poll loop: output to the guest's log (cut back to
//! empty past LOG_MAX) and to attached clients, clients' input to the guest. Nothing in it
//! blocks: masters and clients are non-blocking, and a client that cannot keep up is dropped.
//!
//! Who pays for a flood: each console may pass RATE bytes a second after a burst of BURST
//! (Budget). A console past its budget is not read until it has earned READ_MIN again; the
//! pty's buffer fills and the guest's writer blocks in its own write(2). So a guest running
//! `yes >/dev/console` slows itself, not the keeper, which serves every guest's console. (A
//! serial console at 115200 baud passes 11.5 KB/s; RATE is ninety times that, and the log
//! keeps 1 MiB anyway.) The keeper runs in a cgroup of its own besides (crate::detached).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::Request;

/// A console log is emptied (and says so) when it would grow past this; with the previous
/// run's log (NAME.log.1) a guest's console takes at most twice this in the run dir.
pub const LOG_MAX: u64 = 1 << 20;

/// Bytes a second a console passes, after a burst of BURST.
const RATE: f64 = 1024.0 * 1024.0;
const BURST: f64 = 1024.0 * 1024.0;
/// A console past its budget is read again once it has earned this much.
const READ_MIN: f64 = 4096.0;

/// A token bucket of bytes.
struct Budget {
    bytes: f64,
    at: Instant,
}

impl Budget {
    fn new(now: Instant) -> Self {
        Self {
            bytes: BURST,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.bytes = (self.bytes + dt * RATE).min(BURST);
        self.at = now;
    }

    /// How many bytes may be read now: 0 while below READ_MIN once spent.
    fn allowed(&self) -> usize {
        if self.bytes >= READ_MIN {
            self.bytes as usize
        } else {
            0
        }
    }

    /// How long until `allowed` is not 0 again.
    fn wait(&self) -> Duration {
        Duration::from_secs_f64(((READ_MIN - self.bytes) / RATE).max(0.001))
    }

    fn spend(&mut self, n: usize) {
        self.bytes -= n as f64;
    }
}

struct Console {
    master: File,
    budget: Budget,
    /// Held so the pty lives while the guest has no console fd open (see the module docs).
    _slave: Option<OwnedFd>,
    log: File,
    written: u64,
    /// A 0xC2 at the end of the last chunk (escape_for_log).
    pending_c2: bool,
    clients: Vec<UnixStream>,
}

impl Console {
    /// Logs what the master still holds, and sends it to the attached clients (it is
    /// non-blocking: until it would block).
    fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        for _ in 0..256 {
            match self.master.read(&mut buf) {
                Ok(n) if n > 0 => {
                    let data = buf[..n].to_vec();
                    self.log(&data);
                    self.clients
                        .retain_mut(|cl| matches!(cl.write(&data), Ok(w) if w == data.len()));
                }
                _ => break,
            }
        }
    }

    fn log(&mut self, data: &[u8]) {
        // Controls made visible: `cat` of a log must not obey what the guest wrote.
        let data = &proto::termfilter::escape_for_log(data, &mut self.pending_c2);
        if self.written + data.len() as u64 > LOG_MAX {
            // The log is opened O_APPEND: after the cut, writes start again at 0 (a plain
            // write would go on at the old offset, leaving a sparse file of the old size).
            let _ = self.log.set_len(0);
            let _ = self
                .log
                .write_all(b"[vserverd: console log cut at 1 MiB]\n");
            self.written = 0;
        }
        if self.log.write_all(data).is_ok() {
            self.written += data.len() as u64;
        }
    }
}

pub fn main() -> ExitCode {
    let Some(sock) = std::env::args_os().nth(2).map(PathBuf::from) else {
        eprintln!("usage: vserverd {} SOCKET", super::ARG);
        return ExitCode::from(2);
    };
    let _ = std::fs::remove_file(&sock);
    let listener = match UnixListener::bind(&sock) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("binding {}: {e}", sock.display());
            return ExitCode::FAILURE;
        }
    };
    let _ = std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600));
    crate::detached::serve(c"vserverd-tty", &sock.with_extension("pid"), || {
        serve(listener)
    })
}

/// What one poll round found to do.
enum Event {
    Accept,
    Master(String),
    Client(String, usize),
}

fn serve(listener: UnixListener) {
    let mut consoles: HashMap<String, Console> = HashMap::new();
    let mut buf = vec![0u8; 16384];
    loop {
        let mut events = Vec::new();
        {
            let now = Instant::now();
            let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
            let mut what = vec![Event::Accept];
            // Consoles past their budget sit out until the soonest has earned READ_MIN.
            let mut wait: Option<Duration> = None;
            for (name, c) in consoles.iter_mut() {
                c.budget.refill(now);
                if c.budget.allowed() == 0 {
                    wait = Some(wait.map_or(c.budget.wait(), |w| w.min(c.budget.wait())));
                } else {
                    fds.push(PollFd::new(c.master.as_fd(), PollFlags::POLLIN));
                    what.push(Event::Master(name.clone()));
                }
                for (i, cl) in c.clients.iter().enumerate() {
                    fds.push(PollFd::new(cl.as_fd(), PollFlags::POLLIN));
                    what.push(Event::Client(name.clone(), i));
                }
            }
            let timeout = wait.map_or(PollTimeout::NONE, |w| {
                PollTimeout::from(w.as_millis().clamp(1, 1000) as u16)
            });
            if poll(&mut fds, timeout).is_err() {
                continue;
            }
            for (fd, w) in fds.iter().zip(what) {
                if fd.revents().is_some_and(|r| !r.is_empty()) {
                    events.push(w);
                }
            }
        }
        // By fd, not index: a drain may drop clients that cannot keep up, shifting indexes.
        let mut gone_clients: Vec<(String, RawFd)> = Vec::new();
        for ev in events {
            match ev {
                Event::Accept => {
                    if let Ok((s, _)) = listener.accept() {
                        request(s, &mut consoles);
                    }
                }
                Event::Master(name) => {
                    let Some(c) = consoles.get_mut(&name) else {
                        continue;
                    };
                    let room = c.budget.allowed().min(buf.len());
                    if room == 0 {
                        continue;
                    }
                    match c.master.read(&mut buf[..room]) {
                        Ok(n) if n > 0 => {
                            c.budget.spend(n);
                            let data = &buf[..n];
                            c.log(data);
                            // A client that cannot take it now is dropped, not waited for.
                            c.clients.retain_mut(
                                |cl| matches!(cl.write(data), Ok(w) if w == data.len()),
                            );
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        // Cannot happen while we hold a slave; should it, stop watching.
                        _ => {
                            consoles.remove(&name);
                        }
                    }
                }
                Event::Client(name, i) => {
                    let Some(c) = consoles.get_mut(&name) else {
                        continue;
                    };
                    let Some(cl) = c.clients.get_mut(i) else {
                        continue;
                    };
                    let fd = cl.as_raw_fd();
                    match cl.read(&mut buf) {
                        Ok(n) if n > 0 => {
                            // Keystrokes the guest's tty cannot take now are dropped.
                            let _ = c.master.write(&buf[..n]);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Ok(_) => {
                            // A client that shuts its end for writing (the daemon relaying a
                            // start command's output, console/relay.rs) first gets what the
                            // pty still holds: the end of its stream then means "all that was
                            // written so far".
                            c.drain();
                            gone_clients.push((name, fd));
                        }
                        Err(_) => gone_clients.push((name, fd)),
                    }
                }
            }
        }
        for (name, fd) in gone_clients {
            if let Some(c) = consoles.get_mut(&name) {
                c.clients.retain(|cl| cl.as_raw_fd() != fd);
            }
        }
    }
}

/// One request on a fresh connection: its JSON line, and for a watch the master's fd.
fn request(s: UnixStream, consoles: &mut HashMap<String, Console>) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut data = vec![0u8; 4096];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 2]);
    let mut iov = [std::io::IoSliceMut::new(&mut data)];
    let Ok(msg) = nix::sys::socket::recvmsg::<()>(
        std::os::fd::AsRawFd::as_raw_fd(&s),
        &mut iov,
        Some(&mut cmsg),
        nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
    ) else {
        return;
    };
    let mut fds: Vec<OwnedFd> = Vec::new();
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: fds just received, ours alone.
                fds.extend(raw.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
            }
        }
    }
    let n = msg.bytes;
    let line = &data[..n];
    let reply = |mut s: &UnixStream, text: &str| {
        let _ = s.write_all(format!("{text}\n").as_bytes());
    };
    match serde_json::from_slice::<Request>(line.strip_suffix(b"\n").unwrap_or(line)) {
        // A keeper started as one from before versions (tests only) answers nothing.
        Ok(Request::Hello) if crate::detached::protocol() == 0 => {}
        Ok(Request::Hello) => reply(
            &s,
            &format!("{} {}", super::NAME, crate::detached::protocol()),
        ),
        Ok(Request::Watch { name, log, resume }) => {
            let mut fds = fds.into_iter();
            let (Some(master), slave) = (fds.next(), fds.next()) else {
                return reply(&s, "watch needs the pty master");
            };
            let master = File::from(master);
            let log = if resume {
                super::append_log(&log)
            } else {
                super::open_log(&log)
            };
            match (nonblocking(&master), log) {
                (Ok(()), Ok(log)) => {
                    let written = log.metadata().map_or(0, |m| m.len());
                    consoles.insert(
                        name,
                        Console {
                            master,
                            budget: Budget::new(Instant::now()),
                            _slave: slave,
                            log,
                            written,
                            pending_c2: false,
                            clients: Vec::new(),
                        },
                    );
                    reply(&s, "ok");
                }
                (Err(e), _) | (_, Err(e)) => reply(&s, &e.to_string()),
            }
        }
        Ok(Request::Close { name }) => {
            // What the guest wrote last (a sysv `rc 6`'s messages) may still sit in the pty:
            // into the log (and to attached clients) before the master goes.
            if let Some(mut c) = consoles.remove(&name) {
                c.drain();
            }
            reply(&s, "ok");
        }
        Ok(Request::Attach { name }) => match consoles.get_mut(&name) {
            Some(c) => {
                reply(&s, "ok");
                if s.set_nonblocking(true).is_ok() {
                    c.clients.push(s);
                }
            }
            None => reply(&s, &format!("{name} has no console")),
        },
        Err(_) => {}
    }
}

fn nonblocking(f: &File) -> std::io::Result<()> {
    crate::sys::fd::set_nonblocking(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_past_its_budget_waits_then_earns_its_rate() {
        let t = Instant::now();
        let mut b = Budget::new(t);
        assert_eq!(b.allowed(), BURST as usize);
        b.spend(BURST as usize - 100);
        assert_eq!(b.allowed(), 0, "below READ_MIN: not read");
        let w = b.wait();
        assert!(w > Duration::ZERO && w < Duration::from_millis(10), "{w:?}");
        b.refill(t + w);
        assert!(b.allowed() >= READ_MIN as usize - 1);
        // A second later: RATE more, never more than BURST.
        b.refill(t + Duration::from_secs(10));
        assert_eq!(b.allowed(), BURST as usize);
    }
}
