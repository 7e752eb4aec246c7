//! The `org.linux-vserver.Manager` service: method bodies.
//!
//! zlink generates the dispatcher and the IDL from this impl block and its doc comments. Method
//! bodies must return quickly: long work (start, stop, build) runs in spawned tasks that report
//! through channel-fed `more` streams, so no call ever waits on another.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use futures_util::stream::{self, BoxStream, StreamExt};
use proto::{
    BuildOptions, ExecReply, GuestConfig, GuestList, GuestStatus, Limits, ManagerError, Progress,
    Validation,
};
use zlink::Reply;

use super::auth::{Access, Peer};
use crate::daemon::Daemon;
use crate::guest;
use crate::guest::progress::Progress as Steps;
use crate::orchestrate::many::{self, Selection};

/// Guests started or stopped at once by the marked calls, unless the caller says otherwise.
const DEFAULT_PARALLEL: usize = 6;

/// A caller's `parallel`, kept within reason.
fn parallel_of(p: Option<i64>) -> usize {
    p.map_or(DEFAULT_PARALLEL, |p| p.clamp(1, 1024) as usize)
}

/// Runs a call's work as a task of its own, so that it completes even when the caller goes
/// away mid-call (a half-done delete or limit change is worse than a late one).
async fn in_task<T: Send + 'static>(
    f: impl std::future::Future<Output = Result<T, ManagerError>> + Send + 'static,
) -> Result<T, ManagerError> {
    tokio::spawn(f).await.unwrap_or_else(|e| {
        Err(ManagerError::failed(
            String::new(),
            format!("internal error: {e}"),
        ))
    })
}

/// One connection's view of the daemon: the shared state plus who is calling.
pub struct Manager {
    daemon: Arc<Daemon>,
    peer: Peer,
}

/// The boxed reply stream of a `more` method.
/// `f` on a blocking thread once `limit` lets it: a read that walks every guest's /proc or
/// cgroup files never stalls the thread that serves every connection, however often it is
/// called.
async fn bounded_blocking<T: Send + 'static>(
    limit: &'static tokio::sync::Semaphore,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ManagerError> {
    let _permit = limit
        .acquire()
        .await
        .map_err(|e| ManagerError::failed(String::new(), e.to_string()))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ManagerError::failed(String::new(), format!("{what}: {e}")))
}

type Stream<T> = BoxStream<'static, Result<Reply<T>, ManagerError>>;
/// The same, each reply with file descriptors.
type FdStream<T> = BoxStream<'static, (Result<Reply<T>, ManagerError>, Vec<OwnedFd>)>;

impl Manager {
    pub fn new(daemon: Arc<Daemon>, peer: Peer) -> Self {
        Self { daemon, peer }
    }

    fn allow(&self, access: Access) -> Result<(), ManagerError> {
        self.peer
            .allows(access, self.daemon.opts.read_gid)
            .map_err(|reason| ManagerError::PermissionDenied { reason })
    }

    fn refuse<T: Send + 'static>(e: ManagerError) -> Stream<T> {
        stream::iter([Err(e)]).boxed()
    }

    /// Runs a lifecycle call as its own task (it finishes even if the caller goes away) and
    /// streams its steps: every step with `more`, else only the last.
    fn lifecycle<F, Fut>(&self, more: bool, name: String, f: F) -> Stream<Progress>
    where
        F: FnOnce(Arc<Daemon>, String, Steps) -> Fut,
        Fut: std::future::Future<Output = Result<(), ManagerError>> + Send + 'static,
    {
        self.lifecycle_with(more, false, name, f)
    }

    /// As `lifecycle`; with `console` (and `more`), the guest's console output while its
    /// start or stop command runs comes as `console` steps (crate::console::relay).
    fn lifecycle_with<F, Fut>(
        &self,
        more: bool,
        console: bool,
        name: String,
        f: F,
    ) -> Stream<Progress>
    where
        F: FnOnce(Arc<Daemon>, String, Steps) -> Fut,
        Fut: std::future::Future<Output = Result<(), ManagerError>> + Send + 'static,
    {
        if let Err(e) = self.allow(Access::Write) {
            return Self::refuse(e);
        }
        let (steps, rx) = Steps::channel();
        let steps = steps.with_console(console && more);
        let task = tokio::spawn(f(self.daemon.clone(), name.clone(), steps));
        type St = Option<(
            tokio::sync::mpsc::UnboundedReceiver<Progress>,
            tokio::task::JoinHandle<Result<(), ManagerError>>,
            Option<Progress>,
        )>;
        let init: St = Some((rx, task, None));
        stream::unfold(init, move |st| {
            let name = name.clone();
            async move {
                let (mut rx, task, mut pending) = st?;
                loop {
                    match rx.recv().await {
                        Some(p) => {
                            if let Some(prev) = pending.replace(p) {
                                if more {
                                    let r = Reply::new(Some(prev)).set_continues(Some(true));
                                    return Some((Ok(r), Some((rx, task, pending))));
                                }
                            }
                        }
                        None => {
                            let done = task.await.unwrap_or_else(|e| {
                                Err(ManagerError::failed(
                                    name.clone(),
                                    format!("internal error: {e}"),
                                ))
                            });
                            let item = done.map(|()| {
                                let last = pending.unwrap_or(Progress {
                                    name: name.clone(),
                                    step: "done".into(),
                                    message: String::new(),
                                    state: proto::GuestState::Stopped,
                                });
                                Reply::new(Some(last)).set_continues(Some(false))
                            });
                            return Some((item, None));
                        }
                    }
                }
            }
        })
        .boxed()
    }

    /// Unify's reply stream: progress steps (with `more`), then the step `done` with the
    /// report. The run is a task of its own: it finishes (and saves its hash store) even if
    /// the caller goes away.
    fn unify_stream(
        &self,
        more: bool,
        names: Vec<String>,
        all: bool,
        dry_run: bool,
        excludes: bool,
        ignore_mtime: bool,
    ) -> Stream<proto::UnifyReply> {
        if let Err(e) = self.allow(Access::Write) {
            return Self::refuse(e);
        }
        let d = self.daemon.clone();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            crate::unify::unify(&d, names, all, dry_run, excludes, ignore_mtime, tx).await
        });
        type St = Option<(
            tokio::sync::mpsc::UnboundedReceiver<proto::UnifyReply>,
            tokio::task::JoinHandle<Result<proto::UnifyReport, ManagerError>>,
        )>;
        let init: St = Some((rx, task));
        stream::unfold(init, move |st| async move {
            let (mut rx, task) = st?;
            loop {
                match rx.recv().await {
                    Some(p) if more => {
                        let r = Reply::new(Some(p)).set_continues(Some(true));
                        return Some((Ok(r), Some((rx, task))));
                    }
                    Some(_) => continue,
                    None => {
                        let done = task.await.unwrap_or_else(|e| {
                            Err(ManagerError::failed(
                                String::new(),
                                format!("internal error: {e}"),
                            ))
                        });
                        let item = done.map(|report| {
                            let msg = if report.dry_run {
                                format!(
                                    "would share {} files, {} bytes",
                                    report.unified_files, report.unified_bytes
                                )
                            } else {
                                format!(
                                    "shared {} files, {} bytes",
                                    report.unified_files, report.unified_bytes
                                )
                            };
                            Reply::new(Some(proto::UnifyReply {
                                step: "done".into(),
                                message: msg,
                                report: Some(report),
                            }))
                            .set_continues(Some(false))
                        });
                        return Some((item, None));
                    }
                }
            }
        })
        .boxed()
    }

    /// Exec and Enter: start the process, reply with its pid and the client's fds, then with
    /// how it ended. `command` None is Enter (the guest's shell).
    fn session(
        &self,
        more: bool,
        name: String,
        command: Option<Vec<String>>,
        environment: Vec<String>,
        tty: bool,
        user: Option<String>,
    ) -> FdStream<ExecReply> {
        let refuse =
            |e: ManagerError| -> FdStream<ExecReply> { stream::iter([(Err(e), vec![])]).boxed() };
        if let Err(e) = self.allow(Access::Write) {
            return refuse(e);
        }
        if !more {
            return refuse(ManagerError::failed(
                name,
                "Exec and Enter reply twice (the fds, then the exit status): call \
                          them with more",
            ));
        }
        let d = self.daemon.clone();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let argv = match command {
                Some(c) => c,
                None => match d.load(&name) {
                    Ok(l) => guest::exec::enter_shell(&l.config),
                    Err(e) => {
                        let _ = tx.send((Err(e), vec![]));
                        return;
                    }
                },
            };
            match guest::exec::open_session(&d, &name, argv, environment, tty, user).await {
                Err(e) => {
                    let _ = tx.send((Err(e), vec![]));
                }
                Ok(s) => {
                    let first = ExecReply {
                        pid: Some(s.pid as u32),
                        exit_code: None,
                        signal: None,
                    };
                    let _ = tx.send((
                        Ok(Reply::new(Some(first)).set_continues(Some(true))),
                        s.client_fds,
                    ));
                    let last = match guest::exec::wait_child(&s.pidfd).await {
                        Ok(crate::isolate::pidfd::Exit::Code(c)) => ExecReply {
                            pid: Some(s.pid as u32),
                            exit_code: Some(c as i64),
                            signal: None,
                        },
                        Ok(crate::isolate::pidfd::Exit::Signal(sig)) => ExecReply {
                            pid: Some(s.pid as u32),
                            exit_code: Some(128 + sig as i64),
                            signal: Some(sig as i64),
                        },
                        Err(e) => {
                            let _ = tx.send((
                                Err(ManagerError::failed(
                                    name.clone(),
                                    format!("waiting for the command: {e}"),
                                )),
                                vec![],
                            ));
                            return;
                        }
                    };
                    let _ = tx.send((
                        Ok(Reply::new(Some(last)).set_continues(Some(false))),
                        vec![],
                    ));
                }
            }
        });
        stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) }).boxed()
    }
}

/// Manage Linux-VServer guests: the config trees under /etc/vservers and their running contexts.
#[zlink::service(
    interface = "org.linux-vserver.Manager",
    vendor = "vserverd",
    product = "vserverd",
    version = env!("CARGO_PKG_VERSION"),
    url = "https://github.com/vserverd/vserverd",
    types = [
        GuestList, proto::GuestSummary, proto::ConfigProblem, GuestStatus, Validation, GuestConfig,
        Progress, proto::Event, Limits, proto::StatList, proto::GuestStat, ExecReply, BuildOptions, proto::AddressConfig,
        proto::MountConfig, proto::LimitConfig, proto::Setting, proto::ConsoleReply,
        proto::GuestProcess, proto::ProcessList, proto::KillReply, proto::GuestCheck,
        proto::CheckReport, proto::UnifyReply, proto::UnifyReport, proto::GuestDiskUsage,
        proto::DiskUsageList, proto::MetricsReply, proto::GuestMetrics,
        proto::InterfaceCounters, proto::RpcMetrics
    ]
)]
impl Manager {
    /// List every configured guest with its state.
    async fn list(&self) -> Result<GuestList, ManagerError> {
        self.allow(Access::Read)?;
        Ok(self.daemon.list())
    }

    /// The state of one guest.
    async fn status(&self, name: String) -> Result<GuestStatus, ManagerError> {
        self.allow(Access::Read)?;
        self.daemon.status(&name)
    }

    /// Resource use of every running guest (what vserver-stat shows).
    async fn stat(&self) -> Result<proto::StatList, ManagerError> {
        self.allow(Access::Read)?;
        // It reads /proc for every guest process: on a blocking thread, two at a time, so a
        // caller spamming it never stalls the thread that serves every connection.
        static STATS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
        let d = self.daemon.clone();
        bounded_blocking(&STATS, "stat", move || d.stat()).await
    }

    /// Every guest's state, resource use (CPU, memory, processes, network) and lifecycle
    /// counters, and the daemon's call counts and latencies: what monitoring scrapes
    /// (`vserverd-metrics`, `vserverctl metrics`).
    async fn metrics(&self) -> Result<proto::MetricsReply, ManagerError> {
        self.allow(Access::Read)?;
        // A few cgroup and sysfs reads per running guest: on a blocking thread, two calls at a
        // time, as Stat.
        static METRICS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
        let d = self.daemon.clone();
        bounded_blocking(&METRICS, "metrics", move || crate::metrics::collect(&d)).await
    }

    /// Parse a guest's config tree: the typed config and its warnings, or InvalidConfig naming the
    /// file and line.
    async fn validate(&self, name: String) -> Result<Validation, ManagerError> {
        self.allow(Access::Read)?;
        let mut v = self.daemon.validate(&name)?;
        // init's environment holds what admins put there (passwords, tokens): root's alone.
        if self.peer.uid != 0 {
            for e in &mut v.config.environment {
                if let Some((k, _)) = e.split_once('=') {
                    *e = format!("{k}=(redacted: root only)");
                }
            }
        }
        Ok(v)
    }

    /// Every error and warning of a guest's tree (with a stable code each), or of every guest's
    /// when `name` is absent: what `vserverctl check [--all]` shows.
    /// With `deep`, each guest's root is walked too, for ids a user namespace cannot map (root
    /// only: the walk reads every guest's tree).
    async fn check(
        &self,
        name: Option<String>,
        deep: Option<bool>,
    ) -> Result<proto::CheckReport, ManagerError> {
        let deep = deep.unwrap_or(false);
        self.allow(if deep { Access::Write } else { Access::Read })?;
        let d = self.daemon.clone();
        // Every guest's tree is read: on a blocking thread, not the one serving connections.
        tokio::task::spawn_blocking(move || d.check(name.as_deref(), deep))
            .await
            .map_err(|e| ManagerError::failed(String::new(), format!("check: {e}")))?
    }

    /// Start a guest (and the dependencies that are not running); with `more`, report progress;
    /// with `console` too, the console's output while the start command (sysv `rc 3`) runs, as
    /// steps named `console` (util-vserver's `vserver NAME start` showed it).
    #[zlink(more)]
    async fn start(
        &self,
        more: bool,
        name: String,
        console: Option<bool>,
    ) -> impl futures_util::Stream<Item = Result<Reply<Progress>, ManagerError>> + Unpin {
        let console = console.unwrap_or(false);
        self.lifecycle_with(more, console, name, |d, n, p| async move {
            many::start(&d, Selection::One(n), DEFAULT_PARALLEL, &p).await
        })
    }

    /// Stop a guest; with `more`, report progress; with `console` too, the console's output while
    /// the stop command (sysv `rc 6`) runs, as steps named `console`.
    #[zlink(more)]
    async fn stop(
        &self,
        more: bool,
        name: String,
        console: Option<bool>,
    ) -> impl futures_util::Stream<Item = Result<Reply<Progress>, ManagerError>> + Unpin {
        let console = console.unwrap_or(false);
        self.lifecycle_with(more, console, name, |d, n, p| async move {
            guest::stop::stop(&d, &n, &p).await
        })
    }

    /// Stop, then start a guest; with `more`, report progress (and with `console`, the console's
    /// output as Stop and Start give it).
    #[zlink(more)]
    async fn restart(
        &self,
        more: bool,
        name: String,
        console: Option<bool>,
    ) -> impl futures_util::Stream<Item = Result<Reply<Progress>, ManagerError>> + Unpin {
        let console = console.unwrap_or(false);
        self.lifecycle_with(more, console, name, |d, n, p| async move {
            guest::stop::stop(&d, &n, &p).await?;
            many::start(&d, Selection::One(n), DEFAULT_PARALLEL, &p).await
        })
    }

    /// Start every guest with this mark (apps/init/mark; disabled guests are skipped) and their
    /// dependencies, in dependency order, at most `parallel` at a time (default 6, as
    /// util-vserver's vservers-default). A failed guest's dependents are skipped.
    #[zlink(more)]
    async fn start_marked(
        &self,
        more: bool,
        mark: String,
        parallel: Option<i64>,
    ) -> impl futures_util::Stream<Item = Result<Reply<Progress>, ManagerError>> + Unpin {
        let n = parallel_of(parallel);
        self.lifecycle(more, mark, move |d, m, p| async move {
            many::start(&d, Selection::Mark(m), n, &p).await
        })
    }

    /// Stop every running guest with this mark, dependents before their dependencies.
    #[zlink(more)]
    async fn stop_marked(
        &self,
        more: bool,
        mark: String,
        parallel: Option<i64>,
    ) -> impl futures_util::Stream<Item = Result<Reply<Progress>, ManagerError>> + Unpin {
        let n = parallel_of(parallel);
        self.lifecycle(more, mark, move |d, m, p| async move {
            many::stop_mark(&d, &m, n, &p).await
        })
    }

    /// Restart a guest only if it runs (util-vserver's condrestart); a stopped guest stays
    /// stopped and the call succeeds. `console` as for Restart.
    #[zlink(more)]
    async fn cond_restart(
        &self,
        more: bool,
        name: String,
        console: Option<bool>,
    ) -> impl futures_util::Stream<Item = Result<Reply<Progress>, ManagerError>> + Unpin {
        let console = console.unwrap_or(false);
        self.lifecycle_with(more, console, name, |d, n, p| async move {
            d.check_name(&n)?;
            if d.guests.running(&n).is_none() {
                p.send(
                    &n,
                    "condrestart",
                    "not running: nothing to do",
                    proto::GuestState::Stopped,
                );
                return Ok(());
            }
            guest::stop::stop(&d, &n, &p).await?;
            many::start(&d, Selection::One(n), DEFAULT_PARALLEL, &p).await
        })
    }

    /// Run a command inside a running guest. The first reply carries the command's pid and its
    /// stdin, stdout and stderr (or one pty master when `tty` is set) as file descriptors; the
    /// last one its exit status. Needs `more`. With `user` (a name or uid of the guest, looked
    /// up in the guest's own /etc/passwd from inside it) the command runs as that user.
    #[zlink(more, return_fds)]
    async fn exec(
        &self,
        more: bool,
        name: String,
        command: Vec<String>,
        environment: Vec<String>,
        tty: bool,
        user: Option<String>,
    ) -> impl futures_util::Stream<Item = (Result<Reply<ExecReply>, ManagerError>, Vec<OwnedFd>)> + Unpin
    {
        self.session(more, name, Some(command), environment, tty, user)
    }

    /// Attach to a running guest's console (its /dev/console, a pty): the reply's one fd is a
    /// connection on which the console's output arrives and keystrokes are sent. Several
    /// clients may attach at once; closing the fd detaches.
    #[zlink(return_fds)]
    async fn console(
        &self,
        name: String,
    ) -> (Result<proto::ConsoleReply, ManagerError>, Vec<OwnedFd>) {
        if let Err(e) = self.allow(Access::Write) {
            return (Err(e), vec![]);
        }
        let d = self.daemon.clone();
        let r = in_task(async move {
            if d.guests.running(&name).is_none() {
                return Err(ManagerError::NotRunning { name });
            }
            let run_dir = d.opts.run_dir.clone();
            let n = name.clone();
            let fd = tokio::task::spawn_blocking(move || crate::console::attach(&run_dir, &n))
                .await
                .map_err(|e| ManagerError::failed(name.clone(), e.to_string()))?
                .map_err(|message| ManagerError::failed(name.clone(), message))?;
            let log = crate::console::log_path(&d.opts.run_dir, &name);
            Ok((
                proto::ConsoleReply {
                    log: log.display().to_string(),
                },
                fd,
            ))
        })
        .await;
        match r {
            Ok((reply, fd)) => (Ok(reply), vec![fd]),
            Err(e) => (Err(e), vec![]),
        }
    }

    /// An interactive shell on a pty inside a running guest (the guest's `shell` file, else
    /// /bin/bash, else /bin/sh); replies as Exec does.
    #[zlink(more, return_fds)]
    async fn enter(
        &self,
        more: bool,
        name: String,
        environment: Vec<String>,
    ) -> impl futures_util::Stream<Item = (Result<Reply<ExecReply>, ManagerError>, Vec<OwnedFd>)> + Unpin
    {
        self.session(more, name, None, environment, true, None)
    }

    /// Change the resource limits of a running guest; `persist` also writes the config tree.
    async fn set_limits(
        &self,
        name: String,
        limits: Limits,
        persist: bool,
    ) -> Result<Limits, ManagerError> {
        self.allow(Access::Write)?;
        let d = self.daemon.clone();
        in_task(async move { guest::limits::set(&d, &name, limits, persist).await }).await
    }

    /// Every process of every running guest, by host pid (what vps shows).
    async fn processes(&self) -> Result<proto::ProcessList, ManagerError> {
        self.allow(Access::Read)?;
        // Reads every guest's cgroup.procs: like Stat, two at a time on blocking threads.
        static PROCS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
        let d = self.daemon.clone();
        bounded_blocking(&PROCS, "processes", move || proto::ProcessList {
            processes: guest::procs::processes(&d),
        })
        .await
    }

    /// Send `signal` to host pids of a running guest, each checked to be the guest's (vkill);
    /// no pids: every process of the guest.
    async fn kill(
        &self,
        name: String,
        pids: Vec<i64>,
        signal: i64,
    ) -> Result<proto::KillReply, ManagerError> {
        self.allow(Access::Write)?;
        let d = self.daemon.clone();
        in_task(async move {
            tokio::task::spawn_blocking(move || guest::procs::kill(&d, &name, &pids, signal))
                .await
                .map_err(|e| ManagerError::failed(String::new(), format!("kill: {e}")))?
                .map(|signalled| proto::KillReply { signalled })
        })
        .await
    }

    /// Set a running guest's nodename and/or domainname live, in its UTS namespace (vuname).
    async fn set_uts(
        &self,
        name: String,
        nodename: Option<String>,
        domainname: Option<String>,
    ) -> Result<(), ManagerError> {
        self.allow(Access::Write)?;
        let d = self.daemon.clone();
        in_task(async move { guest::procs::set_uts(&d, &name, nodename, domainname).await }).await
    }

    /// Build a new guest with a build method (skeleton, debootstrap, template, clone); with
    /// `more`, report progress.
    #[zlink(more)]
    async fn build(
        &self,
        more: bool,
        name: String,
        method: String,
        options: BuildOptions,
    ) -> impl futures_util::Stream<Item = Result<Reply<Progress>, ManagerError>> + Unpin {
        self.lifecycle(more, name, move |d, n, p| async move {
            guest::build::build(&d, &n, &method, options, &p).await
        })
    }

    /// Delete a guest's root and config tree; a running guest is refused unless `stop` is set.
    async fn delete(&self, name: String, stop: bool) -> Result<(), ManagerError> {
        self.allow(Access::Write)?;
        let d = self.daemon.clone();
        in_task(async move { guest::delete::delete(&d, &name, stop).await }).await
    }

    /// Share the blocks of identical regular files of the named guests (or all of them) copy
    /// on write, through the kernel's dedupe ioctl (util-vserver's vunify/vhashify): XFS with
    /// reflinks and btrfs; on ext4 where the kernel breaks copy-on-write links (kernel-patch/,
    /// CONFIG_COWLINK), by hard links marked as such, stopped guests only; other file systems
    /// are refused, saying why. `excludes` false ignores the exclude lists (default: each
    /// guest's apps/vunify/exclude, else the one in .defaults, else util-vserver's built-in
    /// list). `ignore_mtime` lets hard-link mode link files whose mtimes differ. With `more`,
    /// progress steps; the last reply carries the report. `dry_run` reads and hashes but
    /// shares nothing.
    #[zlink(more)]
    async fn unify(
        &self,
        more: bool,
        names: Vec<String>,
        all: bool,
        dry_run: bool,
        excludes: Option<bool>,
        ignore_mtime: Option<bool>,
    ) -> impl futures_util::Stream<Item = Result<Reply<proto::UnifyReply>, ManagerError>> + Unpin
    {
        self.unify_stream(
            more,
            names,
            all,
            dry_run,
            excludes.unwrap_or(true),
            ignore_mtime.unwrap_or(false),
        )
    }

    /// Each guest's disk use, split into its own blocks and blocks it shares (FIEMAP's shared
    /// flag): what unification saved shows as shared (util-vserver's vdu).
    async fn du(&self, names: Vec<String>) -> Result<proto::DiskUsageList, ManagerError> {
        self.allow(Access::Write)?;
        let d = self.daemon.clone();
        in_task(async move { crate::unify::du(&d, names).await }).await
    }

    /// Stream guest state changes: starting, running, stopping, stopped, failed, config-changed.
    #[zlink(more)]
    async fn events(
        &self,
        more: bool,
    ) -> impl futures_util::Stream<Item = Result<Reply<proto::Event>, ManagerError>> + Unpin {
        if let Err(e) = self.allow(Access::Read) {
            return Self::refuse(e);
        }
        if !more {
            // A stream of events has no last reply: without `more` there is nothing to say.
            return Self::refuse(ManagerError::failed(
                String::new(),
                "Events needs a call with more",
            ));
        }
        let rx = self.daemon.guests.subscribe();
        stream::unfold(rx, |mut rx| async move {
            let ev = match rx.recv().await {
                Ok(ev) => ev,
                // The client read too slowly and the oldest events were dropped: say so (as
                // inotify's queue overflow does), so it can re-read List.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => proto::Event {
                    name: String::new(),
                    kind: "lost".into(),
                    message: Some(format!(
                        "{n} events were dropped because this client read too slowly; \
                         call List to see the current state"
                    )),
                },
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok(Reply::new(Some(ev)).set_continues(Some(true))), rx))
        })
        .boxed()
    }
}
