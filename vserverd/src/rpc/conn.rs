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
use super::stats;
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
    let mut service = Manager::new(daemon, peer.clone());
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
        if let Err(e) = handle(&mut conn, &mut service, &schema, call, fds, &peer).await {
            tracing::debug!("connection {} ends: {e}", conn.id());
            return;
        }
    }
}

/// The methods that change something: each call is logged once, with who asked and how it
/// ended (the audit trail admins read; structured fields the journal keeps as they are).
const AUDITED: &[&str] = &[
    "Start",
    "Stop",
    "Restart",
    "CondRestart",
    "StartMarked",
    "StopMarked",
    "Exec",
    "Enter",
    "Console",
    "SetLimits",
    "Build",
    "Delete",
    "Kill",
    "SetUts",
    "Unify",
];

/// One audited call: logged when dropped, with the outcome set last (a connection that goes
/// away mid-call is logged too).
struct Audit<'a> {
    peer: &'a Peer,
    method: String,
    target: String,
    /// The guest or the mark the call names (one of them, or neither): separate journal fields.
    guest: String,
    mark: String,
    detail: String,
    outcome: Option<String>,
}

impl<'a> Audit<'a> {
    fn of(peer: &'a Peer, raw: &RawMethod) -> Option<Audit<'a>> {
        let m = raw.method.rsplit('.').next()?;
        if !AUDITED.contains(&m) || !raw.method.starts_with("org.linux-vserver.Manager.") {
            return None;
        }
        let p = raw.parameters.as_ref();
        let s = |k: &str| p.and_then(|p| p.get(k)).and_then(Value::as_str);
        let guest = s("name").unwrap_or_default().to_string();
        let mark = s("mark").unwrap_or_default().to_string();
        let target = if !guest.is_empty() {
            guest.clone()
        } else if !mark.is_empty() {
            format!("mark {mark}")
        } else {
            String::new()
        };
        let detail = match m {
            "Exec" => {
                let cmd = p
                    .and_then(|p| p.get("command"))
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                // Who the command runs as is part of what was asked.
                match s("user") {
                    Some(u) => format!("as {u}: {cmd}"),
                    None => cmd,
                }
            }
            "Build" => s("method").unwrap_or_default().to_string(),
            "Unify" => p
                .map(|p| {
                    format!(
                        "names {} all {} dry_run {} excludes {}",
                        p.get("names").map(|v| v.to_string()).unwrap_or_default(),
                        p.get("all").map(|v| v.to_string()).unwrap_or_default(),
                        p.get("dry_run").map(|v| v.to_string()).unwrap_or_default(),
                        p.get("excludes").map(|v| v.to_string()).unwrap_or_default()
                    )
                })
                .unwrap_or_default(),
            "Kill" => p
                .map(|p| {
                    format!(
                        "signal {} pids {}",
                        p.get("signal").map(|v| v.to_string()).unwrap_or_default(),
                        p.get("pids").map(|v| v.to_string()).unwrap_or_default()
                    )
                })
                .unwrap_or_default(),
            "SetUts" => p
                .map(|p| {
                    format!(
                        "nodename {} domainname {}",
                        p.get("nodename").map(|v| v.to_string()).unwrap_or_default(),
                        p.get("domainname")
                            .map(|v| v.to_string())
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_default(),
            "SetLimits" => p
                .and_then(|p| p.get("limits"))
                .map(|l| l.to_string())
                .unwrap_or_default(),
            _ => String::new(),
        };
        Some(Audit {
            peer,
            method: m.to_string(),
            target,
            guest: super::super::stage::report::clean(&guest),
            mark: super::super::stage::report::clean(&mark),
            detail: super::super::stage::report::clean(&detail),
            outcome: None,
        })
    }
}

impl Drop for Audit<'_> {
    fn drop(&mut self) {
        let outcome = self.outcome.as_deref().unwrap_or("the caller went away");
        tracing::info!(
            target: "vserverd::audit",
            caller_uid = self.peer.uid,
            caller_pid = self.peer.pid,
            method = %self.method,
            guest = %self.guest,
            mark = %self.mark,
            detail = %self.detail,
            outcome = %outcome,
            "{} {} by uid {}: {outcome}",
            self.method,
            self.target,
            self.peer.uid
        );
    }
}

/// An error reply as the audit line says it: the varlink error and its parameters.
fn error_text(e: &impl serde::Serialize) -> String {
    format!(
        "failed: {}",
        super::super::stage::report::clean(&serde_json::to_string(e).unwrap_or_default())
    )
}

async fn handle(
    conn: &mut Connection<Stream>,
    service: &mut Manager,
    schema: &Schema,
    call: Call<RawMethod>,
    fds: Vec<OwnedFd>,
    peer: &Peer,
) -> zlink::Result<()> {
    let raw = call.method();
    let mut audit = Audit::of(peer, raw);
    let t0 = std::time::Instant::now();
    if let Err(problem) = schema.check(&raw.method, raw.parameters.as_ref()) {
        stats::called(stats::INVALID);
        stats::answered(stats::INVALID, t0.elapsed(), true);
        if let Some(a) = &mut audit {
            a.outcome = Some(format!("refused: not a valid call ({problem:?})"));
        }
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

    // Valid by the IDL: its name is one of a bounded set, fit for the metrics' label.
    let method = raw.method.clone();
    stats::called(&method);
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
    let done = |audit: &mut Option<Audit>, what: String| {
        if let Some(a) = audit {
            a.outcome = Some(what);
        }
    };
    if call.oneway() {
        done(&mut audit, "done (oneway)".into());
        stats::answered(&method, t0.elapsed(), false);
        return Ok(());
    }
    match reply {
        MethodReply::Single(params) => {
            done(&mut audit, "ok".into());
            let reply = Reply::new(params).set_continues(Some(false));
            let r = conn.send_reply(&reply, reply_fds).await;
            stats::answered(&method, t0.elapsed(), false);
            r
        }
        MethodReply::Error(err) => {
            done(&mut audit, error_text(&err));
            let r = conn.send_error(&err, reply_fds).await;
            stats::answered(&method, t0.elapsed(), true);
            r
        }
        MethodReply::Multi(mut stream) => {
            let mut failed = false;
            while let Some((item, fds)) = stream.next().await {
                match item {
                    Ok(reply) => {
                        done(&mut audit, "ok".into());
                        conn.send_reply(&reply, fds).await?
                    }
                    Err(err) => {
                        done(&mut audit, error_text(&err));
                        failed = true;
                        conn.send_error(&err, fds).await?
                    }
                }
            }
            stats::answered(&method, t0.elapsed(), failed);
            Ok(())
        }
        MethodReply::Upgrade(..) => {
            // No method of ours upgrades; zlink refuses upgrade requests before we get here.
            Ok(())
        }
        _ => Ok(()),
    }
}
