//! Across guests: the dependency graph, starting and stopping many guests in order and in
//! parallel, and watching the config tree.

pub mod catalog;
pub mod depends;
pub mod many;
pub mod watch;
