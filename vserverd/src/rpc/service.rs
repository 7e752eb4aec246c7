//! The `org.linux-vserver.Manager` service: method bodies.
//!
//! zlink generates the dispatcher and the IDL from this impl block and its doc comments. Method
//! bodies must return quickly: long work (start, stop, build) runs in spawned tasks that report
//! through channel-fed `more` streams, so no call ever waits on another.

use std::sync::Arc;

use futures_util::stream::{self, BoxStream, StreamExt};
use proto::{
    BuildOptions, ExecReply, GuestConfig, GuestList, GuestStatus, Limits, ManagerError, Progress,
    Validation,
};
use zlink::Reply;

use super::auth::{Access, Peer};
use crate::daemon::Daemon;

/// One connection's view of the daemon: the shared state plus who is calling.
pub struct Manager {
    daemon: Arc<Daemon>,
    peer: Peer,
}

/// The boxed reply stream of a `more` method.
type Stream<T> = BoxStream<'static, Result<Reply<T>, ManagerError>>;

impl Manager {
    pub fn new(daemon: Arc<Daemon>, peer: Peer) -> Self {
        Self { daemon, peer }
    }

    fn check(&self, access: Access) -> Result<(), ManagerError> {
        self.peer
            .allows(access, self.daemon.opts.read_gid)
            .map_err(|reason| ManagerError::PermissionDenied { reason })
    }

    fn refuse<T: Send + 'static>(e: ManagerError) -> Stream<T> {
        stream::iter([Err(e)]).boxed()
    }

    fn not_yet<T: Send + 'static>(&self, access: Access, method: &str) -> Stream<T> {
        match self.check(access) {
            Err(e) => Self::refuse(e),
            Ok(()) => Self::refuse(ManagerError::NotImplemented {
                method: method.into(),
            }),
        }
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
        Progress, proto::Event, Limits, ExecReply, BuildOptions, proto::AddressConfig,
        proto::MountConfig, proto::LimitConfig, proto::Setting
    ]
)]
impl Manager {
    /// List every configured guest with its state.
    async fn list(&self) -> Result<GuestList, ManagerError> {
        self.check(Access::Read)?;
        Ok(self.daemon.list())
    }

    /// The state of one guest.
    async fn status(&self, name: String) -> Result<GuestStatus, ManagerError> {
        self.check(Access::Read)?;
        self.daemon.status(&name)
    }

    /// Parse a guest's config tree: the typed config and its warnings, or InvalidConfig naming the
    /// file and line.
    async fn validate(&self, name: String) -> Result<Validation, ManagerError> {
        self.check(Access::Read)?;
        self.daemon.validate(&name)
    }

    /// Start a guest (and the dependencies that are not running); with `more`, report progress.
    #[zlink(more)]
    async fn start(
        &self,
        more: bool,
        name: String,
    ) -> impl futures_util::Stream<Item = Result<Reply<Progress>, ManagerError>> + Unpin {
        let _ = (more, name);
        self.not_yet(Access::Write, "Start")
    }

    /// Stop a guest; with `more`, report progress.
    #[zlink(more)]
    async fn stop(
        &self,
        more: bool,
        name: String,
    ) -> impl futures_util::Stream<Item = Result<Reply<Progress>, ManagerError>> + Unpin {
        let _ = (more, name);
        self.not_yet(Access::Write, "Stop")
    }

    /// Stop, then start a guest; with `more`, report progress.
    #[zlink(more)]
    async fn restart(
        &self,
        more: bool,
        name: String,
    ) -> impl futures_util::Stream<Item = Result<Reply<Progress>, ManagerError>> + Unpin {
        let _ = (more, name);
        self.not_yet(Access::Write, "Restart")
    }

    /// Run a command inside a running guest. The first reply carries the command's stdin, stdout
    /// and stderr (or one pty master when `tty` is set) as file descriptors; the last one its exit
    /// status.
    #[zlink(more)]
    async fn exec(
        &self,
        more: bool,
        name: String,
        command: Vec<String>,
        environment: Vec<String>,
        tty: bool,
    ) -> impl futures_util::Stream<Item = Result<Reply<ExecReply>, ManagerError>> + Unpin {
        let _ = (more, name, command, environment, tty);
        self.not_yet(Access::Write, "Exec")
    }

    /// An interactive login shell on a pty inside a running guest; replies as Exec does.
    #[zlink(more)]
    async fn enter(
        &self,
        more: bool,
        name: String,
        environment: Vec<String>,
    ) -> impl futures_util::Stream<Item = Result<Reply<ExecReply>, ManagerError>> + Unpin {
        let _ = (more, name, environment);
        self.not_yet(Access::Write, "Enter")
    }

    /// Change the resource limits of a running guest; `persist` also writes the config tree.
    async fn set_limits(
        &self,
        name: String,
        limits: Limits,
        persist: bool,
    ) -> Result<Limits, ManagerError> {
        let _ = (name, limits, persist);
        self.check(Access::Write)?;
        Err(ManagerError::NotImplemented {
            method: "SetLimits".into(),
        })
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
        let _ = (more, name, method, options);
        self.not_yet(Access::Write, "Build")
    }

    /// Delete a guest's root and config tree; a running guest is refused unless `stop` is set.
    async fn delete(&self, name: String, stop: bool) -> Result<(), ManagerError> {
        let _ = (name, stop);
        self.check(Access::Write)?;
        Err(ManagerError::NotImplemented {
            method: "Delete".into(),
        })
    }

    /// Stream guest state changes: starting, running, stopping, stopped, failed, config-changed.
    #[zlink(more)]
    async fn events(
        &self,
        more: bool,
    ) -> impl futures_util::Stream<Item = Result<Reply<proto::Event>, ManagerError>> + Unpin {
        let _ = more;
        self.not_yet(Access::Read, "Events")
    }
}
