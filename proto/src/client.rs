//! Client side: a typed proxy for `org.linux-vserver.Manager` on any zlink connection.

use futures_util::Stream;

use crate::{ExecReply, GuestList, GuestStatus, Limits, ManagerError, Progress, Validation};

#[zlink::proxy("org.linux-vserver.Manager")]
pub trait ManagerProxy {
    async fn list(&mut self) -> zlink::Result<Result<GuestList, ManagerError>>;
    async fn status(&mut self, name: &str) -> zlink::Result<Result<GuestStatus, ManagerError>>;
    async fn validate(&mut self, name: &str) -> zlink::Result<Result<Validation, ManagerError>>;
    #[zlink(more)]
    async fn start(
        &mut self,
        name: &str,
    ) -> zlink::Result<impl Stream<Item = zlink::Result<Result<Progress, ManagerError>>>>;
    #[zlink(more)]
    async fn stop(
        &mut self,
        name: &str,
    ) -> zlink::Result<impl Stream<Item = zlink::Result<Result<Progress, ManagerError>>>>;
    #[zlink(more)]
    async fn restart(
        &mut self,
        name: &str,
    ) -> zlink::Result<impl Stream<Item = zlink::Result<Result<Progress, ManagerError>>>>;
    #[zlink(more)]
    async fn exec(
        &mut self,
        name: &str,
        command: &[String],
        environment: &[String],
        tty: bool,
    ) -> zlink::Result<impl Stream<Item = zlink::Result<Result<ExecReply, ManagerError>>>>;
    #[zlink(more)]
    async fn enter(
        &mut self,
        name: &str,
        environment: &[String],
    ) -> zlink::Result<impl Stream<Item = zlink::Result<Result<ExecReply, ManagerError>>>>;
    async fn set_limits(
        &mut self,
        name: &str,
        limits: &Limits,
        persist: bool,
    ) -> zlink::Result<Result<Limits, ManagerError>>;
    async fn delete(&mut self, name: &str, stop: bool) -> zlink::Result<Result<(), ManagerError>>;
    #[zlink(more)]
    async fn events(
        &mut self,
    ) -> zlink::Result<impl Stream<Item = zlink::Result<Result<crate::Event, ManagerError>>>>;
}
