//! The IDL as the service generates it, for `vserverd --print-idl` and the drift test.

use std::sync::Arc;

use zlink::service::{MethodReply, Service};
use zlink::tokio::unix::Stream;
use zlink::{Call, Connection};

use super::auth::Peer;
use super::service::Manager;
use crate::daemon::{Daemon, Options};

/// Asks the generated service for its own interface description.
pub async fn generate() -> Result<String, String> {
    let (a, _b) = tokio::net::UnixStream::pair().map_err(|e| e.to_string())?;
    let peer = Peer::of(&a).map_err(|e| e.to_string())?;
    let mut conn = Connection::new(Stream::try_from(a).map_err(|e| e.to_string())?);
    let daemon = Arc::new(Daemon::new(Options {
        config_root: "/nonexistent".into(),
        vdir_base: None,
        run_dir: "/nonexistent".into(),
        state_dir: "/nonexistent".into(),
        id_window: Default::default(),
        socket: "/nonexistent".into(),
        read_gid: None,
        cgroup_prefix: "vserverd".into(),
    }));
    let mut svc = Manager::new(daemon, peer);
    let msg = serde_json::json!({
        "method": "org.varlink.service.GetInterfaceDescription",
        "parameters": { "interface": proto::INTERFACE }
    });
    let bytes = serde_json::to_vec(&msg).map_err(|e| e.to_string())?;
    let call: Call<<Manager as Service<Stream>>::MethodCall<'_>> =
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let (reply, _) = <Manager as Service<Stream>>::handle(&mut svc, &call, &mut conn, vec![]).await;
    match reply {
        MethodReply::Single(Some(params)) => {
            let v = serde_json::to_value(&params).map_err(|e| e.to_string())?;
            v.get("description")
                .and_then(|d| d.as_str())
                .map(|s| {
                    let mut s = s.to_string();
                    if !s.ends_with('\n') {
                        s.push('\n');
                    }
                    s
                })
                .ok_or_else(|| format!("unexpected reply: {v}"))
        }
        _ => Err("unexpected reply to GetInterfaceDescription".into()),
    }
}

#[cfg(test)]
mod tests {
    /// The committed IDL is the contract other programs read: it must be what the code serves.
    /// Regenerate with `cargo run -p vserverd -- --print-idl > proto/org.linux-vserver.Manager.varlink`.
    #[tokio::test]
    async fn committed_idl_matches_the_service() {
        let generated = super::generate().await.unwrap();
        assert_eq!(
            generated,
            proto::IDL,
            "proto/org.linux-vserver.Manager.varlink is stale: regenerate it with \
             `cargo run -p vserverd -- --print-idl > proto/org.linux-vserver.Manager.varlink`"
        );
    }
}
