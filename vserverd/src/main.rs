//! vserverd: the host daemon.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use vserverd::daemon::{Daemon, Options};

/// Runs Linux-VServer guests on a mainline kernel and serves org.linux-vserver.Manager over varlink.
#[derive(Debug, Parser)]
#[command(name = "vserverd", version)]
struct Args {
    /// The guests' config trees.
    #[arg(long, default_value = "/etc/vservers", env = "VSERVERD_CONFIG_ROOT")]
    config_root: PathBuf,
    /// Parent of guest roots without a `vdir` symlink [default: .defaults/vdirbase, else /vservers].
    #[arg(long)]
    vdir_base: Option<PathBuf>,
    /// Runtime state.
    #[arg(long, default_value = "/run/vserverd")]
    run_dir: PathBuf,
    /// State kept across reboots (unify's content-hash store, user-namespace id ranges).
    #[arg(long, default_value = "/var/lib/vserverd")]
    state_dir: PathBuf,
    /// Host ids that guests in a user namespace (spaces/user) get their ranges of 65536 from,
    /// START-END inclusive [default: systemd's container range 524288-1879048191].
    #[arg(long)]
    id_window: Option<vserverd::guest::idrange::Window>,
    /// The control socket [default: RUN_DIR/control].
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Group whose members may make read-only calls (List, Status, Validate, Events).
    #[arg(long)]
    read_group: Option<String>,
    /// Guests' cgroups are created as OWN/PREFIX/NAME in every cgroup hierarchy, OWN being
    /// vserverd's own cgroup there.
    #[arg(long, default_value = "vserverd")]
    cgroup_prefix: String,
    /// Print the varlink IDL the service implements and exit.
    #[arg(long)]
    print_idl: bool,
    /// Print this manual page (roff, section 8) and exit.
    #[arg(long, hide = true)]
    print_man: bool,
}

/// The daemon's manual page, generated from its options so it never drifts (docs/man/vserverd.8).
fn man_page() -> std::io::Result<Vec<u8>> {
    use clap::CommandFactory;
    let mut out = Vec::new();
    clap_mangen::Man::new(Args::command().long_about(
        "Runs Linux-VServer guests (/etc/vservers/NAME config trees, /vservers/NAME roots) on a \
         mainline kernel and serves org.linux-vserver.Manager over varlink on its control \
         socket. Under systemd it is socket-activated (vserverd.socket) and stopping it leaves \
         the guests running: the next daemon adopts them. vserverctl(1) is its client.",
    ))
    .section("8")
    .render(&mut out)?;
    Ok(out)
}

fn main() -> std::process::ExitCode {
    // The stage runs before anything else exists: no runtime, no threads, no logging.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == vserverd::stage::ARG)
    {
        return vserverd::stage::main();
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == vserverd::procfs::ARG)
    {
        return vserverd::procfs::main();
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == vserverd::procfs::sysinfo::HOLD_ARG)
    {
        return vserverd::procfs::sysinfo::hold_main();
    }
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == vserverd::console::ARG)
    {
        return vserverd::console::main();
    }
    let args = Args::parse();
    // Before any thread exists: the environment is read and cleaned here.
    let activated = activated_fd();
    // Whatever fds the daemon was started with (a shell's, a supervisor's) reach no hook or
    // helper it runs: close-on-exec from here on (the activated socket is kept open).
    let _ = vserverd::sys::fd::cloexec_from(3);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vserverd: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match rt.block_on(local.run_until(run(args, activated))) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vserverd: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::EnvFilter;
    let filter =
        || EnvFilter::try_from_env("VSERVERD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Under systemd: entries with structured fields to the journal (GUEST, CONTEXT, STEP,
    // CALLER_UID…, docs/operations.md), when its socket answers.
    let journal = vserverd::journal::stderr_is_journal();
    let mut fallback = None;
    if journal {
        match vserverd::journal::Layer::new("vserverd") {
            Ok(j) => {
                tracing_subscriber::registry().with(filter()).with(j).init();
                return;
            }
            Err(e) => fallback = Some(e),
        }
    }
    // Plain text on stderr, as before: spans (the journal's fields) are not shown in it.
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal() && !journal)
        .with_writer(std::io::stderr);
    let events_only = tracing_subscriber::filter::filter_fn(|m| m.is_event());
    if journal {
        // The journal adds its own timestamps.
        tracing_subscriber::registry()
            .with(filter())
            .with(fmt.without_time().with_filter(events_only))
            .init();
    } else {
        tracing_subscriber::registry()
            .with(filter())
            .with(fmt.with_filter(events_only))
            .init();
    }
    if let Some(e) = fallback {
        tracing::warn!(
            "journal socket {}: {e}; logging as text",
            vserverd::journal::SOCKET
        );
    }
}

async fn run(args: Args, activated_fd: Option<OwnedFd>) -> Result<(), String> {
    if args.print_man {
        use std::io::Write;
        let man = man_page().map_err(|e| e.to_string())?;
        return std::io::stdout().write_all(&man).map_err(|e| e.to_string());
    }
    if args.print_idl {
        print!("{}", vserverd::rpc::idl::generate().await?);
        return Ok(());
    }
    init_logging();
    vserverd::metrics::mark_start();
    // Handlers first: a SIGTERM while the daemon sets up (adoption can take a while) must end
    // it cleanly, not by the signal's default action with the socket left behind.
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    raise_fd_limit();
    let read_gid = match &args.read_group {
        None => None,
        Some(g) => Some(
            nix::unistd::Group::from_name(g)
                .map_err(|e| format!("group {g}: {e}"))?
                .ok_or_else(|| format!("no such group: {g}"))?
                .gid
                .as_raw(),
        ),
    };
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| args.run_dir.join("control"));
    std::fs::create_dir_all(&args.run_dir)
        .map_err(|e| format!("cannot create {}: {e}", args.run_dir.display()))?;
    // Before anything is touched (the socket included): one daemon per host state.
    let prefix_dir = vserverd::isolate::cgroup::Layout::detect()
        .ok()
        .and_then(|l| vserverd::instance::prefix_dir(&l, &args.cgroup_prefix));
    let _instance =
        vserverd::instance::acquire(&args.run_dir, &args.config_root, prefix_dir.as_deref())?;

    let (listener, activated) = match activated_fd {
        Some(fd) => (listener_from(fd)?, true),
        None => (bind(&socket, read_gid).await?, false),
    };
    let opts = Options {
        config_root: args.config_root,
        vdir_base: args.vdir_base,
        run_dir: args.run_dir,
        state_dir: args.state_dir,
        id_window: args.id_window.unwrap_or_default(),
        socket: socket.clone(),
        read_gid,
        cgroup_prefix: args.cgroup_prefix,
    };
    let daemon = Arc::new(Daemon::new(opts));
    vserverd::guest::barrier::ensure_logged(&daemon.roots().vdir_base());
    let placed_in_leaf = vserverd::isolate::cgroup::in_daemon_leaf();
    daemon.settle_cgroup();
    daemon.confine_helpers(placed_in_leaf);
    vserverd::guest::build::clean_leftovers(&daemon);
    // Guests of an earlier daemon keep running; take them over before answering anyone.
    vserverd::guest::adopt::adopt_all(&daemon).await;
    // Helpers an older (or newer) package started, speaking another protocol: replaced
    // before any guest starts (a start would hand its console to the old keeper).
    vserverd::handover::helpers(&daemon).await;
    vserverd::guest::supervise::restart_owed(&daemon);
    // Adopted virt_mem guests: make sure their /proc server lives (restarting it and binding
    // its files again if it died while no daemon ran).
    if daemon.guests.running_names().iter().any(|n| {
        daemon
            .guests
            .running(n)
            .is_some_and(|r| !r.state.proc_files.is_empty())
    }) {
        vserverd::guest::virtmem::supervise(&daemon);
    }
    vserverd::orchestrate::watch::spawn(daemon.clone());
    tracing::info!(
        "vserverd {} serving {} (config root {})",
        env!("CARGO_PKG_VERSION"),
        if activated {
            "an activated socket".to_string()
        } else {
            socket.display().to_string()
        },
        daemon.opts.config_root.display()
    );
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    let result = tokio::select! {
        r = vserverd::rpc::serve(listener, daemon.clone()) => r.map_err(|e| format!("serving: {e}")),
        _ = term.recv() => Ok(()),
        _ = int.recv() => Ok(()),
    };
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    if !activated {
        let _ = std::fs::remove_file(&socket);
    }
    tracing::info!("vserverd exits");
    result
}

/// Connections, pidfds and console fds take one fd each: the soft limit goes up to the hard
/// one (at most 65536), so 1024 fds inherited from a shell are not the daemon's bound. Stages
/// put the kernel's default 1024 back for guests (stage/mod.rs).
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let want = hard.min(65536);
        if want > soft {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, want, hard);
        }
    }
}

/// The socket systemd passed us (LISTEN_FDS/LISTEN_PID), if any.
fn activated_fd() -> Option<OwnedFd> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let nfds = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    // Our children (guests, hooks) must not think they were activated.
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    if !pid_ok || nfds < 1 {
        return None;
    }
    // SAFETY: systemd hands us fd 3 (SD_LISTEN_FDS_START) and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(3) };
    let _ = nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    Some(fd)
}

fn listener_from(fd: OwnedFd) -> Result<UnixListener, String> {
    let std_listener = std::os::unix::net::UnixListener::from(fd);
    std_listener
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    UnixListener::from_std(std_listener).map_err(|e| format!("activated socket: {e}"))
}

async fn bind(path: &Path, read_gid: Option<u32>) -> Result<UnixListener, String> {
    if path.exists() {
        // A live daemon answers; a stale socket file is left over from a crash.
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(format!("another vserverd is serving {}", path.display()));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove stale {}: {e}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let listener =
        UnixListener::bind(path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    let mode = if read_gid.is_some() { 0o660 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    if let Some(gid) = read_gid {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
            .map_err(|e| format!("chown {}: {e}", path.display()))?;
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    /// docs/man/vserverd.8 is committed; it must be what the options generate.
    /// Regenerate with `cargo run -p vserverd -- --print-man > docs/man/vserverd.8`.
    #[test]
    fn committed_man_page_matches_the_options() {
        let committed = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/man/vserverd.8"
        ));
        assert!(
            committed.ok() == Some(super::man_page().unwrap()),
            "docs/man/vserverd.8 is stale: run `cargo run -p vserverd -- --print-man > docs/man/vserverd.8`"
        );
    }
}
