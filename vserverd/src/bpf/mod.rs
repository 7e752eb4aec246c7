//! eBPF programs vserverd builds itself (no compiler or object files): the assembler and the
//! shared-stack guests' socket programs. Loading and attaching them is isolate/sockbpf.rs's.

pub mod asm;
pub mod lookup;
pub mod progs;
