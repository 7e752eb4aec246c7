//! vserverd: Linux-VServer guests on a mainline kernel.
//!
//! `config` parses /etc/vservers trees (pure), `rpc` serves the varlink interface, `daemon`
//! holds the shared state.

pub mod bpf;
pub mod config;
pub mod console;
pub mod daemon;
pub mod detached;
pub mod disk;
pub mod fault;
pub mod guest;
pub mod instance;
pub mod isolate;
pub mod orchestrate;
pub mod procfs;
pub mod rpc;
pub mod stage;
pub mod sys;
pub mod unify;
