//! The `org.linux-vserver.Manager` varlink interface.
//!
//! Types here are the wire contract: the daemon serves them, `vserverctl` and any other varlink
//! program (`varlinkctl`, python `varlink`) read them. The IDL in `org.linux-vserver.Manager.varlink`
//! is generated from the daemon's service and committed; a test in `vserverd` fails when the two
//! drift apart.

pub mod client;
pub mod config;
pub mod exposition;
mod metrics;
pub mod termfilter;
mod types;

pub use config::*;
pub use metrics::*;
pub use types::*;

/// The interface name.
pub const INTERFACE: &str = "org.linux-vserver.Manager";

/// The committed IDL of [`INTERFACE`].
pub const IDL: &str = include_str!("../org.linux-vserver.Manager.varlink");

/// The default control socket.
pub const DEFAULT_SOCKET: &str = "/run/vserverd/control";
