//! vserverd-metrics: serves vserverd's metrics in Prometheus's text format over HTTP.
//!
//! A varlink client like vserverctl: each scrape makes one Metrics call on the control socket
//! and renders the reply (proto::exposition). It holds no privilege of its own and widens no
//! access to the control socket: it must be allowed to call read-only methods (root, or a member
//! of the daemon's --read-group), and systemd runs it as root without capabilities
//! (systemd/vserverd-metrics.service). It listens on the socket systemd passes
//! (vserverd-metrics.socket), or on `--listen ADDRESS:PORT`.

mod http;

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use clap::Parser;
use proto::client::ManagerProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use http::Request;

/// Serves vserverd's guest and daemon metrics to Prometheus (GET /metrics).
#[derive(Debug, Parser)]
#[command(name = "vserverd-metrics", version)]
struct Args {
    /// The daemon's control socket.
    #[arg(long, default_value = proto::DEFAULT_SOCKET, env = "VSERVERD_SOCKET")]
    socket: PathBuf,
    /// Listen on ADDRESS:PORT (e.g. 127.0.0.1:19720) instead of a socket systemd passes.
    #[arg(long)]
    listen: Option<String>,
}

/// How long a client may take to send its request, and the daemon to answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
const DAEMON_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the listen backlog. Scrapers are few, but anyone
/// who reaches the port may hold connections open without sending: each costs a task and at
/// most MAX_HEAD bytes for CLIENT_TIMEOUT, and so many idle ones still leave room for scrapes.
/// The daemon runs two Metrics calls at a time whatever this says.
const CONCURRENT: usize = 64;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let activated = activated_fd();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vserverd-metrics: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match rt.block_on(local.run_until(run(args, activated))) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vserverd-metrics: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The listening socket systemd passed (LISTEN_FDS/LISTEN_PID), if any.
fn activated_fd() -> Option<OwnedFd> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let nfds = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    if !pid_ok || nfds < 1 {
        return None;
    }
    // SAFETY: with LISTEN_PID ours, systemd passed its first socket as fd 3
    // (SD_LISTEN_FDS_START), open and owned by nothing else in this process.
    let fd = unsafe { OwnedFd::from_raw_fd(3) };
    Some(fd)
}

async fn run(args: Args, activated: Option<OwnedFd>) -> Result<(), String> {
    let listener = match (activated, &args.listen) {
        (Some(fd), _) => {
            let l = std::net::TcpListener::from(fd);
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            TcpListener::from_std(l).map_err(|e| format!("the activated socket: {e}"))?
        }
        (None, Some(addr)) => TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?,
        (None, None) => {
            return Err("no socket from systemd (vserverd-metrics.socket) and no --listen".into())
        }
    };
    let socket = Rc::new(args.socket);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENT));
    loop {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of fds or an aborted connection: note it, back off, go on.
                eprintln!("vserverd-metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let socket = socket.clone();
        tokio::task::spawn_local(async move {
            serve(stream, &socket).await;
            drop(permit);
        });
    }
}

/// Reads a request head, within CLIENT_TIMEOUT and http::MAX_HEAD bytes.
async fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            if let Some(end) = http::head_end(&buf) {
                buf.truncate(end);
                return Some(buf);
            }
            if buf.len() >= http::MAX_HEAD {
                return None;
            }
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(CLIENT_TIMEOUT, read).await.ok()?
}

async fn serve(mut stream: TcpStream, socket: &Path) {
    let reply = match read_head(&mut stream).await.map(|h| http::parse(&h)) {
        None | Some(Request::Malformed) => {
            http::response("400 Bad Request", "text/plain", "bad request\n", false)
        }
        Some(Request::MethodNotAllowed) => http::response(
            "405 Method Not Allowed",
            "text/plain",
            "GET or HEAD only\n",
            false,
        ),
        Some(Request::NotFound { head }) => {
            http::response("404 Not Found", "text/plain", "see /metrics\n", head)
        }
        Some(Request::Index { head }) => http::response(
            "200 OK",
            "text/html; charset=utf-8",
            "<html><head><title>vserverd metrics</title></head><body>\
             <a href=\"/metrics\">/metrics</a></body></html>\n",
            head,
        ),
        Some(Request::Metrics { head }) => {
            let body = scrape(socket).await;
            http::response("200 OK", proto::exposition::CONTENT_TYPE, &body, head)
        }
    };
    let _ = tokio::time::timeout(CLIENT_TIMEOUT, stream.write_all(&reply)).await;
    let _ = stream.shutdown().await;
}

/// One Metrics call on a fresh connection (a restarted daemon is simply called again), rendered;
/// a daemon that does not answer gives `vserverd_up 0` and why, on stderr (the journal).
async fn scrape(socket: &Path) -> String {
    let call = async {
        let mut conn = zlink::tokio::unix::connect(socket)
            .await
            .map_err(|e| format!("connecting to {}: {e}", socket.display()))?;
        conn.metrics()
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    };
    let reply = match tokio::time::timeout(DAEMON_TIMEOUT, call).await {
        Ok(Ok(m)) => Some(m),
        Ok(Err(e)) => {
            eprintln!("vserverd-metrics: the Metrics call failed: {e}");
            None
        }
        Err(_) => {
            eprintln!(
                "vserverd-metrics: the daemon did not answer within {} s",
                DAEMON_TIMEOUT.as_secs()
            );
            None
        }
    };
    proto::exposition::render(reply.as_ref())
}
