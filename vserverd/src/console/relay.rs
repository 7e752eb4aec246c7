//! A guest's console, relayed to a lifecycle call while the style's start or stop command
//! runs: util-vserver ran `rc 3` (and `rc 6`) on the caller's terminal, so `vserver NAME start`
//! showed "Starting nginx ...". Here those commands write to the guest's console (a pty the
//! keeper holds, so that daemons started by rc never hold the caller's terminal open); the
//! daemon attaches to it as any console client does before the command runs and passes what
//! it shows on as `console` steps of the call's reply stream.
//!
//! Nothing here waits on the caller or the guest: the keeper drops a client that cannot keep up
//! (it never blocks on one; a burst of output beyond a socket's buffer can do that, and the
//! caller is told so), the steps go to the call's own channel, and one relay passes at most
//! MAX bytes (a guest flooding its console fills no daemon memory beyond that). The
//! caller's terminal is the client's business: vserverctl filters what it prints
//! (proto::termfilter), as for `vserverctl console`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proto::GuestState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::guest::progress::Progress;

/// The step name of console output in a Progress reply.
pub const STEP: &str = "console";

/// What one relay passes at most; the console log has it all.
const MAX: usize = 1 << 20;

/// How long `finish` waits for the keeper to hand over what the pty still holds.
const FINISH_WAIT: Duration = Duration::from_secs(2);

pub struct Relay {
    write: Option<tokio::net::unix::OwnedWriteHalf>,
    task: tokio::task::JoinHandle<()>,
    /// Set by `finish`: the end of the stream after it is the end asked for; before it, the
    /// keeper dropped us (output came faster than we took it) and the caller is told.
    finishing: Arc<AtomicBool>,
}

/// Attaches to guest `name`'s console and relays what it shows to `p`, until `finish`. None
/// when `p` does not ask for it, or the guest has no console of the keeper's (apps/init/tty:
/// init's output goes to that file, as util-vserver's --defaulttty sent it).
pub async fn start(run_dir: &Path, name: &str, p: &Progress, state: GuestState) -> Option<Relay> {
    if !p.wants_console() {
        return None;
    }
    let (rd, n) = (run_dir.to_path_buf(), name.to_string());
    let fd = match tokio::task::spawn_blocking(move || super::attach(&rd, &n)).await {
        Ok(Ok(fd)) => fd,
        Ok(Err(e)) => {
            tracing::debug!(guest = name, "no console to relay: {e}");
            return None;
        }
        Err(_) => return None,
    };
    let std = std::os::unix::net::UnixStream::from(fd);
    std.set_nonblocking(true).ok()?;
    let stream = tokio::net::UnixStream::from_std(std).ok()?;
    let (mut read, write) = stream.into_split();
    let (p, name) = (p.clone(), name.to_string());
    let finishing = Arc::new(AtomicBool::new(false));
    let asked = finishing.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 16384];
        let mut text = Utf8Chunks::default();
        let mut total = 0usize;
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    total += n;
                    if total > MAX {
                        p.output(
                            &name,
                            STEP,
                            "\n[vserverd: console output cut at 1 MiB; the rest is in the console log]\n",
                            state,
                        );
                        return;
                    }
                    let s = text.push(&buf[..n]);
                    if !s.is_empty() {
                        p.output(&name, STEP, &s, state);
                    }
                }
            }
        }
        if text.incomplete() {
            p.output(&name, STEP, "\u{FFFD}", state);
        }
        if !asked.load(Ordering::SeqCst) {
            p.output(
                &name,
                STEP,
                "\n[vserverd: console output cut: it came faster than it was passed on; the rest is in the console log]\n",
                state,
            );
        }
    });
    Some(Relay {
        write: Some(write),
        task,
        finishing,
    })
}

impl Relay {
    /// Ends the relay once what the console holds now has been passed: our end is shut for
    /// writing, on which the keeper reads the pty dry to every client, then closes ours; the
    /// end of the stream is thus the end of what was written before (keeper.rs).
    pub async fn finish(mut self) {
        self.finishing.store(true, Ordering::SeqCst);
        if let Some(mut w) = self.write.take() {
            let _ = w.shutdown().await;
        }
        if tokio::time::timeout(FINISH_WAIT, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Console bytes to text, chunk by chunk: a character split between two reads is kept for
/// the next; bytes that are no UTF-8 become U+FFFD.
#[derive(Default)]
struct Utf8Chunks {
    tail: Vec<u8>,
}

impl Utf8Chunks {
    fn push(&mut self, data: &[u8]) -> String {
        let mut bytes = std::mem::take(&mut self.tail);
        bytes.extend_from_slice(data);
        let mut out = String::with_capacity(bytes.len());
        let mut rest = &bytes[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &bad[n..];
                        }
                        None => {
                            self.tail = bad.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    fn incomplete(&self) -> bool {
        !self.tail.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_split_between_reads_are_kept_whole() {
        let mut u = Utf8Chunks::default();
        let s = "Starting nginx … done\n".as_bytes();
        let cut = s.iter().position(|&b| b == 0xe2).unwrap() + 1;
        let a = u.push(&s[..cut]);
        assert!(u.incomplete());
        let b = u.push(&s[cut..]);
        assert_eq!(a + &b, "Starting nginx … done\n");
        assert!(!u.incomplete());
    }

    #[test]
    fn bytes_that_are_no_utf8_become_replacement_characters() {
        let mut u = Utf8Chunks::default();
        assert_eq!(u.push(b"a\xffb\xc3"), "a\u{FFFD}b");
        assert_eq!(u.push(b"("), "\u{FFFD}(");
    }
}
