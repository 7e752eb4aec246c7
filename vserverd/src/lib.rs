//! vserverd: Linux-VServer guests on a mainline kernel.
//!
//! `config` parses /etc/vservers trees (pure), `rpc` serves the varlink interface, `daemon`
//! holds the shared state, `error` the typed error of a failed lifecycle step.

pub mod bpf;
pub mod config;
pub mod console;
pub mod daemon;
pub mod detached;
pub mod disk;
pub mod error;
pub mod fault;
pub mod guest;
pub mod handover;
pub mod instance;
pub mod isolate;
pub mod journal;
pub mod metrics;
pub mod orchestrate;
pub mod procfs;
pub mod rpc;
pub mod stage;
pub mod sys;
pub mod unify;
