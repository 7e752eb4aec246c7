//! Kernel mechanics, each behind small functions taking typed values: cgroups, mounts,
//! capabilities, seccomp, per-process settings, pidfds, network devices, socket programs,
//! tree removal. Each file keeps its pure part (the plan) apart from its effects (the
//! writes), so the plans are unit-tested without root: limits.rs `plan` and `lower` (a
//! guest's limits as cgroup files), seccomp.rs `policy` and `build` (the filter for both
//! ABIs), capacity.rs `warnings`, net.rs `vlans`.
//!
//! Callers: guest/ (the daemon's side of a lifecycle call: cgroups, limits, network,
//! pidfds), stage/ (inside the new guest: mounts, capabilities, seccomp, per-process
//! settings) and procfs/ (a guest's cgroup files for its /proc view). The raw system calls
//! they make are in sys/.

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
