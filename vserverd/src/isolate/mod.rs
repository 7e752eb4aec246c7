//! Kernel mechanics, each behind small functions taking typed values: cgroups, mounts,
//! capabilities, seccomp, per-process settings, pidfds. Only the daemon's stage process and
//! the guest supervisor call these.

pub mod capacity;
pub mod caps;
pub mod cgroup;
pub mod kfeatures;
pub mod limits;
pub mod mount;
pub mod net;
pub mod pidfd;
pub mod process;
pub mod rmtree;
pub mod seccomp;
pub mod sockbpf;
