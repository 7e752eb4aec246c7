//! The client half of Console: relays our terminal to the connection the daemon handed over
//! (the guest's console, kept by the console keeper) until Ctrl-] — or, when stdin is not a
//! terminal, until stdin ends and the console has then been quiet for a second (scripts).

use std::os::fd::OwnedFd;
use std::time::Duration;

use proto::{ConsoleReply, ManagerError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::exit::Failure;
use crate::session::RawMode;

/// Ctrl-]: detach, as telnet and virsh console do.
const DETACH: u8 = 0x1d;

pub async fn run(
    name: &str,
    reply: (Result<ConsoleReply, ManagerError>, Vec<OwnedFd>),
    raw: bool,
) -> Result<u8, Failure> {
    let (r, fds) = reply;
    let r = r?;
    let fd = fds
        .into_iter()
        .next()
        .ok_or_else(|| Failure::Protocol("no console connection in the reply".into()))?;
    let std = std::os::unix::net::UnixStream::from(fd);
    std.set_nonblocking(true)
        .map_err(|e| Failure::Protocol(e.to_string()))?;
    let stream =
        tokio::net::UnixStream::from_std(std).map_err(|e| Failure::Protocol(e.to_string()))?;
    let (mut from_guest, mut to_guest) = stream.into_split();
    let is_tty = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    if is_tty {
        eprintln!(
            "vserverctl: the console of {name} (log {}); Ctrl-] detaches",
            r.log
        );
    }
    let _raw = is_tty.then(RawMode::enter);
    // Output, with a tick per chunk so the non-terminal case can wait for quiet.
    let (tick, mut ticks) = tokio::sync::mpsc::unbounded_channel::<()>();
    let output = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        let mut buf = vec![0u8; 16384];
        let mut filter = proto::termfilter::Filter::new();
        while let Ok(n) = from_guest.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let shown = if raw {
                buf[..n].to_vec()
            } else {
                filter.apply(&buf[..n])
            };
            if out.write_all(&shown).await.is_err() {
                break;
            }
            let _ = out.flush().await;
            let _ = tick.send(());
        }
    });
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = stdin.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            if !is_tty {
                while let Ok(Some(())) =
                    tokio::time::timeout(Duration::from_secs(1), ticks.recv()).await
                {
                }
            }
            break;
        }
        let (data, detach) = match buf[..n].iter().position(|&b| b == DETACH) {
            Some(i) => (&buf[..i], true),
            None => (&buf[..n], false),
        };
        if to_guest.write_all(data).await.is_err() || detach {
            break;
        }
    }
    output.abort();
    if is_tty {
        // Whatever the guest left set (with --raw, or what the filter lets through).
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = out.write_all(proto::termfilter::RESET);
        let _ = out.flush();
        eprintln!("\r\nvserverctl: detached from the console of {name}\r");
    }
    Ok(0)
}
