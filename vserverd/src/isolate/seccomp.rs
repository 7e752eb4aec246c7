//! The guest's seccomp filters. Root without CAP_SYS_ADMIN can still do a few host-wide things
//! the kernel does not namespace; these filters close them:
//! - open_by_handle_at: the "shocker" escape (CAP_DAC_READ_SEARCH is in the secure default);
//! - kexec_load, kexec_file_load, init_module, finit_module, delete_module;
//! - unshare/clone with namespace flags the guest's `umask` does not allow (CLONE_NEWUSER
//!   needs no capability at all);
//! - clone3 answers ENOSYS, since its flags live in memory a filter cannot read; libc then
//!   falls back to clone, which is checked;
//! - the keyring calls answer ENOSYS: keyrings are per uid, and guest root is host uid 0.
//!
//! Installed without no_new_privs (the stage still holds CAP_SYS_ADMIN): guests need setuid.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

#[derive(Debug, thiserror::Error)]
#[error("seccomp: {0}")]
pub struct SeccompError(String);

fn e(x: impl std::fmt::Display) -> SeccompError {
    SeccompError(x.to_string())
}

/// Namespace clone flags a filter checks.
const NS_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWTIME as u64,
];

fn arch() -> TargetArch {
    #[cfg(target_arch = "aarch64")]
    return TargetArch::aarch64;
    #[cfg(target_arch = "riscv64")]
    return TargetArch::riscv64;
    #[cfg(not(any(target_arch = "aarch64", target_arch = "riscv64")))]
    TargetArch::x86_64
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    action: SeccompAction,
) -> Result<BpfProgram, SeccompError> {
    let f = SeccompFilter::new(rules, SeccompAction::Allow, action, arch()).map_err(e)?;
    f.try_into().map_err(e)
}

/// The two filters: denied with EPERM, and absent (ENOSYS). `umask` holds the CLONE_NEW*
/// flags the guest may use.
pub fn filters(umask: u64) -> Result<Vec<BpfProgram>, SeccompError> {
    let mut deny: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in [
        libc::SYS_open_by_handle_at,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
    ] {
        deny.insert(nr, vec![]);
    }
    let forbidden: Vec<u64> = NS_FLAGS
        .iter()
        .copied()
        .filter(|f| umask & f == 0)
        .collect();
    for (nr, arg) in [(libc::SYS_unshare, 0u8), (libc::SYS_clone, 0u8)] {
        let rules = forbidden
            .iter()
            .map(|&bit| {
                SeccompRule::new(vec![SeccompCondition::new(
                    arg,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::MaskedEq(bit),
                    bit,
                )
                .map_err(e)?])
                .map_err(e)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !rules.is_empty() {
            deny.insert(nr, rules);
        }
    }
    let mut absent: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in [
        libc::SYS_clone3,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
    ] {
        absent.insert(nr, vec![]);
    }
    Ok(vec![
        compile(deny, SeccompAction::Errno(libc::EPERM as u32))?,
        compile(absent, SeccompAction::Errno(libc::ENOSYS as u32))?,
    ])
}

/// Installs a filter on the calling thread (the stage is single-threaded).
pub fn install(prog: &BpfProgram) -> Result<(), SeccompError> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: a valid sock_fprog pointing at `prog`, which outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(e(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile_for_every_umask() {
        for umask in [0, libc::CLONE_NEWUSER as u64, u64::MAX] {
            let f = filters(umask).unwrap();
            assert_eq!(f.len(), 2);
            assert!(f.iter().all(|p| !p.is_empty()));
        }
        // Allowing every namespace leaves unshare and clone unfiltered.
        assert!(filters(u64::MAX).unwrap()[0].len() < filters(0).unwrap()[0].len());
    }
}
