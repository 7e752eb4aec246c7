//! Serving one connection.
//!
//! zlink's `Server` runs one method call at a time across all connections, so a slow call or a
//! client that sends half a message would hold up everyone. Instead every connection gets its own
//! task; zlink still does the framing, fd passing and (de)serialisation, and the generated
//! service still dispatches. Calls are checked against the IDL first (see `schema`).

use std::os::fd::OwnedFd;
use std::sync::Arc;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use tokio::net::UnixStream;
use zlink::service::{MethodReply, Service};
use zlink::tokio::unix::Stream;
use zlink::varlink_service::Error as VarlinkError;
use zlink::{Call, Connection, Reply};

use super::auth::Peer;
use super::schema::{CallProblem, Schema};
use super::service::Manager;
use crate::daemon::Daemon;

/// The largest request a client may send (varlink requests here are a few hundred bytes; an
/// exec's argv and environment a few KiB). With the connection limits (rpc/mod.rs) this bounds
/// what all clients together can make the daemon buffer.
pub const MAX_REQUEST: usize = 64 * 1024;

/// A call as it arrives, before validation.
#[derive(Debug, Deserialize)]
struct RawMethod {
    method: String,
    #[serde(default)]
    parameters: Option<Value>,
}

/// Serves `stream` until the client hangs up or breaks the protocol.
pub async fn serve(stream: UnixStream, daemon: Arc<Daemon>, schema: Arc<Schema>) {
    let peer = match Peer::of(&stream) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!("no peer credentials: {e}");
            return;
        }
    };
    let stream = match Stream::try_from(stream) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("cannot wrap connection: {e}");
            return;
        }
    };
    let mut conn = Connection::new(stream);
    conn.read_mut().set_max_message_size(MAX_REQUEST);
    let mut service = Manager::new(daemon, peer);
    loop {
        let (call, fds): (Call<RawMethod>, Vec<OwnedFd>) = match conn.receive_call().await {
            Ok(x) => x,
            Err(zlink::Error::BufferOverflow) => {
                tracing::info!(
                    "connection {} ends: a request over {} KiB",
                    conn.id(),
                    MAX_REQUEST / 1024
                );
                let err = VarlinkError::InvalidParameter {
                    parameter: format!("request: larger than {} KiB", MAX_REQUEST / 1024).into(),
                };
                let _ = conn.send_error(&err, vec![]).await;
                return;
            }
            Err(e) => {
                // End of stream, or bytes that are not a varlink call (non-JSON): this
                // connection ends, nobody else notices.
                tracing::debug!("connection {} ends: {e}", conn.id());
                return;
            }
        };
        if let Err(e) = handle(&mut conn, &mut service, &schema, call, fds).await {
            tracing::debug!("connection {} ends: {e}", conn.id());
            return;
        }
    }
}

async fn handle(
    conn: &mut Connection<Stream>,
    service: &mut Manager,
    schema: &Schema,
    call: Call<RawMethod>,
    fds: Vec<OwnedFd>,
) -> zlink::Result<()> {
    let raw = call.method();
    if let Err(problem) = schema.check(&raw.method, raw.parameters.as_ref()) {
        if call.oneway() {
            return Ok(());
        }
        let err = match problem {
            CallProblem::InterfaceNotFound(interface) => VarlinkError::InterfaceNotFound {
                interface: interface.into(),
            },
            CallProblem::MethodNotFound(method) => VarlinkError::MethodNotFound {
                method: method.into(),
            },
            CallProblem::InvalidParameter(parameter) => VarlinkError::InvalidParameter {
                parameter: parameter.into(),
            },
        };
        return conn.send_error(&err, vec![]).await;
    }

    // Valid by the IDL: hand it to the generated dispatcher in the shape it deserialises.
    let mut msg = serde_json::Map::new();
    msg.insert("method".into(), Value::String(raw.method.clone()));
    if let Some(p) = &raw.parameters {
        msg.insert("parameters".into(), p.clone());
    }
    if call.more() {
        msg.insert("more".into(), Value::Bool(true));
    }
    let bytes = serde_json::to_vec(&msg).map_err(zlink::Error::from)?;
    let typed: Call<<Manager as Service<Stream>>::MethodCall<'_>> =
        match serde_json::from_slice(&bytes) {
            Ok(c) => c,
            Err(e) => {
                // The IDL check should make this unreachable; answer rather than hang up.
                tracing::warn!("call passed the IDL check but not the dispatcher: {e}");
                let err = VarlinkError::InvalidParameter {
                    parameter: "parameters".into(),
                };
                return conn.send_error(&err, vec![]).await;
            }
        };

    let (reply, reply_fds) = <Manager as Service<Stream>>::handle(service, &typed, conn, fds).await;
    if call.oneway() {
        return Ok(());
    }
    match reply {
        MethodReply::Single(params) => {
            let reply = Reply::new(params).set_continues(Some(false));
            conn.send_reply(&reply, reply_fds).await
        }
        MethodReply::Error(err) => conn.send_error(&err, reply_fds).await,
        MethodReply::Multi(mut stream) => {
            while let Some((item, fds)) = stream.next().await {
                match item {
                    Ok(reply) => conn.send_reply(&reply, fds).await?,
                    Err(err) => conn.send_error(&err, fds).await?,
                }
            }
            Ok(())
        }
        MethodReply::Upgrade(..) => {
            // No method of ours upgrades; zlink refuses upgrade requests before we get here.
            Ok(())
        }
        _ => Ok(()),
    }
}
