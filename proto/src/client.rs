//! Client side: a typed proxy for `org.linux-vserver.Manager` on any zlink connection.

use std::os::fd::OwnedFd;

use futures_util::Stream;

use crate::{
    ConsoleReply, ExecReply, GuestList, GuestStatus, Limits, ManagerError, Progress, Validation,
};

#[zlink::proxy("org.linux-vserver.Manager")]
pub trait ManagerProxy {
    async fn list(&mut self) -> zlink::Result<Result<GuestList, ManagerError>>;
    async fn status(&mut self, name: &str) -> zlink::Result<Result<GuestStatus, ManagerError>>;
    async fn validate(&mut self, name: &str) -> zlink::Result<Result<Validation, ManagerError>>;
    /// Every error and warning of one guest's tree, or of every guest's without `name`.
    /// `deep`: walk each guest's root too (ids a user namespace cannot map).
    async fn check(
        &mut self,
        name: Option<&str>,
        deep: Option<bool>,
    ) -> zlink::Result<Result<crate::CheckReport, ManagerError>>;
    async fn stat(&mut self) -> zlink::Result<Result<crate::StatList, ManagerError>>;
    /// Every guest's and the daemon's figures for monitoring (`exposition::render`).
    async fn metrics(&mut self) -> zlink::Result<Result<crate::MetricsReply, ManagerError>>;
    /// `console`: the guest's console output while its start command runs, as steps named
    /// `console` (so Stop, Restart and CondRestart).
    #[zlink(more)]
    async fn start(
        &mut self,
        name: &str,
        console: Option<bool>,
    ) -> zlink::Result<impl Stream<Item = zlink::Result<Result<Progress, ManagerError>>>>;
    #[zlink(more)]
    async fn stop(
        &mut self,
        name: &str,
        console: Option<bool>,
    ) -> zlink::Result<impl Stream<Item = zlink::Result<Result<Progress, ManagerError>>>>;
    #[zlink(more)]
    async fn restart(
        &mut self,
        name: &str,
        console: Option<bool>,
    ) -> zlink::Result<impl Stream<Item = zlink::Result<Result<Progress, ManagerError>>>>;
    #[zlink(more)]
    async fn start_marked(
        &mut self,
        mark: &str,
        parallel: Option<i64>,
    ) -> zlink::Result<impl Stream<Item = zlink::Result<Result<Progress, ManagerError>>>>;
    #[zlink(more)]
    async fn stop_marked(
        &mut self,
        mark: &str,
        parallel: Option<i64>,
    ) -> zlink::Result<impl Stream<Item = zlink::Result<Result<Progress, ManagerError>>>>;
    #[zlink(more)]
    async fn cond_restart(
        &mut self,
        name: &str,
        console: Option<bool>,
    ) -> zlink::Result<impl Stream<Item = zlink::Result<Result<Progress, ManagerError>>>>;
    /// The reply carries one fd: the console's byte stream.
    #[zlink(return_fds)]
    async fn console(
        &mut self,
        name: &str,
    ) -> zlink::Result<(Result<ConsoleReply, ManagerError>, Vec<OwnedFd>)>;
    /// The first reply carries the fds (stdin, stdout, stderr; or a pty master).
    #[zlink(more, return_fds)]
    async fn exec(
        &mut self,
        name: &str,
        command: &[String],
        environment: &[String],
        tty: bool,
        user: Option<&str>,
    ) -> zlink::Result<
        impl Stream<Item = zlink::Result<(Result<ExecReply, ManagerError>, Vec<OwnedFd>)>>,
    >;
    #[zlink(more, return_fds)]
    async fn enter(
        &mut self,
        name: &str,
        environment: &[String],
    ) -> zlink::Result<
        impl Stream<Item = zlink::Result<(Result<ExecReply, ManagerError>, Vec<OwnedFd>)>>,
    >;
    async fn set_limits(
        &mut self,
        name: &str,
        limits: &Limits,
        persist: bool,
    ) -> zlink::Result<Result<Limits, ManagerError>>;
    #[zlink(more)]
    async fn build(
        &mut self,
        name: &str,
        method: &str,
        options: &crate::BuildOptions,
    ) -> zlink::Result<impl Stream<Item = zlink::Result<Result<Progress, ManagerError>>>>;
    async fn delete(&mut self, name: &str, stop: bool) -> zlink::Result<Result<(), ManagerError>>;
    #[zlink(more)]
    async fn events(
        &mut self,
    ) -> zlink::Result<impl Stream<Item = zlink::Result<Result<crate::Event, ManagerError>>>>;
    async fn processes(&mut self) -> zlink::Result<Result<crate::ProcessList, ManagerError>>;
    async fn kill(
        &mut self,
        name: &str,
        pids: &[i64],
        signal: i64,
    ) -> zlink::Result<Result<crate::KillReply, ManagerError>>;
    /// Progress steps, then `done` with the report.
    #[zlink(more)]
    async fn unify(
        &mut self,
        names: &[String],
        all: bool,
        dry_run: bool,
        excludes: Option<bool>,
        ignore_mtime: Option<bool>,
    ) -> zlink::Result<impl Stream<Item = zlink::Result<Result<crate::UnifyReply, ManagerError>>>>;
    async fn du(
        &mut self,
        names: &[String],
    ) -> zlink::Result<Result<crate::DiskUsageList, ManagerError>>;
    async fn set_uts(
        &mut self,
        name: &str,
        nodename: Option<&str>,
        domainname: Option<&str>,
    ) -> zlink::Result<Result<(), ManagerError>>;
}
