//! The varlink service: accepting connections, checking callers and calls, method bodies.

pub mod auth;
pub mod conn;
pub mod idl;
pub mod schema;
pub mod service;

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
        tokio::task::spawn_local(conn::serve(stream, daemon.clone(), schema.clone()));
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
