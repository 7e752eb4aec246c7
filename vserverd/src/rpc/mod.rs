//! The varlink service: accepting connections, checking callers and calls, method bodies.

pub mod auth;
pub mod conn;
pub mod idl;
pub mod schema;
pub mod service;
pub mod stats;

use std::sync::Arc;

use tokio::net::UnixListener;

use crate::daemon::Daemon;

/// Accepts connections until the listener fails; each one is served by its own task.
///
/// zlink's generated service boxes reply streams without `Send`, so connection tasks are local
/// tasks: call this inside a `tokio::task::LocalSet`. They interleave on one thread, which is
/// fine because method bodies only read state or hand work to tasks on the worker threads.
pub async fn serve(listener: UnixListener, daemon: Arc<Daemon>) -> std::io::Result<()> {
    let schema = Arc::new(schema::Schema::manager().map_err(std::io::Error::other)?);
    let limits = Limits::default();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) if is_transient(&e) => {
                // Out of fds or similar: back off instead of spinning.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some(slot) = limits.admit(&stream) else {
            continue;
        };
        let (daemon, schema) = (daemon.clone(), schema.clone());
        tokio::task::spawn_local(async move {
            conn::serve(stream, daemon, schema).await;
            drop(slot);
        });
    }
}

/// Connections one non-root uid may hold at once, and all non-root uids together: with
/// conn::MAX_REQUEST they bound what read-group members can make the daemon buffer (32 MiB),
/// and they can never take the fds root's own calls need. Root is not counted.
pub const PER_UID: usize = 64;
pub const NON_ROOT: usize = 512;

/// Open connections per non-root uid (connection tasks run on one thread: Rc, RefCell).
#[derive(Default, Clone)]
struct Limits(std::rc::Rc<std::cell::RefCell<std::collections::HashMap<u32, usize>>>);

/// A connection's place in [`Limits`], given back when dropped.
struct Slot(Limits, Option<u32>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(uid) = self.1 {
            let mut m = self.0 .0.borrow_mut();
            if let Some(n) = m.get_mut(&uid) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&uid);
                }
            }
        }
    }
}

impl Limits {
    /// A slot for the connection, or None (the connection is closed at once, and logged).
    fn admit(&self, stream: &tokio::net::UnixStream) -> Option<Slot> {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        let uid = getsockopt(stream, PeerCredentials).map_or(u32::MAX, |c| c.uid());
        if uid == 0 {
            return Some(Slot(self.clone(), None));
        }
        let mut m = self.0.borrow_mut();
        let total: usize = m.values().sum();
        let mine = m.get(&uid).copied().unwrap_or(0);
        if mine >= PER_UID || total >= NON_ROOT {
            tracing::warn!(
                "refused a connection of uid {uid}: it holds {mine} (at most {PER_UID}), \
                 non-root callers {total} (at most {NON_ROOT})"
            );
            return None;
        }
        m.insert(uid, mine + 1);
        drop(m);
        Some(Slot(self.clone(), Some(uid)))
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::ECONNABORTED
                | libc::EINTR
        )
    )
}
