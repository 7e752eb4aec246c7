//! The client half of Exec and Enter: relays our stdio to the fds the daemon handed over
//! (pipes, or a pty master in raw mode with window-size changes passed on) and returns the
//! command's exit code. The command never sees one of our fds.

use std::os::fd::{AsFd, OwnedFd};

use futures_util::{pin_mut, Stream, StreamExt};
use proto::{ExecReply, ManagerError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::exit::Failure;

type Item = zlink::Result<(Result<ExecReply, ManagerError>, Vec<OwnedFd>)>;

/// Puts our terminal in raw mode while it lives.
pub(crate) struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    pub(crate) fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(orig) = nix::sys::termios::tcgetattr(stdin.as_fd()) else {
            return RawMode(None);
        };
        let mut raw = orig.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        let _ =
            nix::sys::termios::tcsetattr(stdin.as_fd(), nix::sys::termios::SetArg::TCSANOW, &raw);
        RawMode(Some(orig))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

fn copy_winsize(master: &OwnedFd) {
    if let Ok(ws) = rustix::termios::tcgetwinsize(std::io::stdin()) {
        let _ = rustix::termios::tcsetwinsize(master, ws);
    }
}

fn file(fd: OwnedFd) -> tokio::fs::File {
    tokio::fs::File::from_std(std::fs::File::from(fd))
}

/// Copies `from` to `to` until EOF; closing `to` at the end.
async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
) {
    let mut buf = vec![0u8; 16384];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                let _ = to.flush().await;
            }
        }
    }
    let _ = to.shutdown().await;
}

/// Drives a session to its end; returns the exit code to exit with.
pub async fn run(replies: impl Stream<Item = Item>, tty: bool) -> Result<u8, Failure> {
    pin_mut!(replies);
    let (first, fds) = match replies.next().await {
        Some(r) => r?,
        None => return Err(Failure::Protocol("the daemon sent no reply".into())),
    };
    first?;
    let mut fds = fds.into_iter();
    let mut outputs = Vec::new();
    let _raw;
    if tty {
        let master = fds
            .next()
            .ok_or_else(|| Failure::Protocol("no pty master in the reply".into()))?;
        let is_tty = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
        _raw = is_tty.then(RawMode::enter);
        if is_tty {
            copy_winsize(&master);
            let m = master
                .try_clone()
                .map_err(|e| Failure::Protocol(e.to_string()))?;
            tokio::spawn(async move {
                let Ok(mut winch) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
                else {
                    return;
                };
                while winch.recv().await.is_some() {
                    copy_winsize(&m);
                }
            });
        }
        let w = file(
            master
                .try_clone()
                .map_err(|e| Failure::Protocol(e.to_string()))?,
        );
        tokio::spawn(pump(tokio::io::stdin(), w));
        // A pty master reads EIO once the last slave holder is gone: that is its EOF.
        outputs.push(tokio::spawn(pump(file(master), tokio::io::stdout())));
    } else {
        let (Some(i), Some(o), Some(e)) = (fds.next(), fds.next(), fds.next()) else {
            return Err(Failure::Protocol(
                "expected stdin, stdout and stderr fds".into(),
            ));
        };
        tokio::spawn(pump(tokio::io::stdin(), file(i)));
        outputs.push(tokio::spawn(pump(file(o), tokio::io::stdout())));
        outputs.push(tokio::spawn(pump(file(e), tokio::io::stderr())));
    }
    let mut code = None;
    while let Some(r) = replies.next().await {
        let (r, _) = r?;
        if let Some(c) = r?.exit_code {
            code = Some(c);
        }
    }
    // Output written just before the exit is still in the pipes: drain it, but do not wait
    // forever on a background process that inherited them.
    let drain = futures_util::future::join_all(outputs);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
    let code = code.ok_or_else(|| Failure::Protocol("the daemon sent no exit status".into()))?;
    Ok(code.clamp(0, 255) as u8)
}
