//! The guest's seccomp filter. Root without CAP_SYS_ADMIN can still do a few host-wide things
//! the kernel does not namespace; the policy ([`policy`]) closes them:
//! - open_by_handle_at: the "shocker" escape (CAP_DAC_READ_SEARCH is in the secure default);
//! - kexec_load, kexec_file_load, init_module, finit_module, delete_module;
//! - unshare/clone with namespace flags the guest's `umask` does not allow (CLONE_NEWUSER
//!   needs no capability at all);
//! - clone3 answers ENOSYS, since its flags live in memory a filter cannot read; libc then
//!   falls back to clone, which is checked;
//! - the keyring calls answer ENOSYS: keyrings are per uid, and guest root is host uid 0;
//! - the ioctl FS_IOC_FSSETXATTR (EPERM) and file_setattr (ENOSYS, so tools fall back to the
//!   ioctl): the owner of a file may change its project id without any capability, so a guest
//!   could move its files out of its disk-limit project (docs/security.md). Other xflags go
//!   with it; chattr's +i, +a … (FS_IOC_SETFLAGS) stay.
//!
//! One policy, every ABI a guest's programs may use (docs/security.md): on x86-64 both the
//! native ABI and i386 (32-bit guests, `personality` linux32), each with its own syscall
//! numbers, and x32 refused outright. A rule names a syscall, not a number, so a rule added
//! later (an ioctl request, a user notification) holds for every ABI at once. No rule here
//! needs the arguments that i386 hides behind its multiplexers (socketcall, ipc): a rule that
//! does must take another form there (docs/security.md), never be skipped silently.
//!
//! The program is classic BPF built here (seccompiler knows one architecture per filter and no
//! i386); [`tests`] run it through an interpreter without root.
//!
//! For a guest whose /proc shows its own memory or load (virt_mem, virt_load), sysinfo(2)
//! is handed to the /proc server through a user notification (RET_USER_NOTIF), which answers
//! with the guest's figures (procfs/sysinfo.rs); the filter's listener goes to that server.
//!
//! Installed without no_new_privs (the stage still holds CAP_SYS_ADMIN): guests need setuid.

#[derive(Debug, thiserror::Error)]
#[error("seccomp: {0}")]
pub struct SeccompError(String);

/// The syscalls rules name. Each ABI maps them to its own numbers ([`Abi::nr`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sys {
    OpenByHandleAt,
    KexecLoad,
    KexecFileLoad,
    InitModule,
    FinitModule,
    DeleteModule,
    Unshare,
    Clone,
    Clone3,
    Keyctl,
    AddKey,
    RequestKey,
    Ioctl,
    FileSetattr,
    Sysinfo,
}

/// _IOW('X', 32, struct fsxattr): struct fsxattr is 28 bytes on every ABI (all fields fixed
/// width), so i386 uses the same request number.
pub const FS_IOC_FSSETXATTR: u32 = 0x401c_5820;
/// file_setattr(2) (Linux 6.17): one number on every architecture, as every call since 424.
const NR_FILE_SETATTR: u32 = 469;

/// What a matching call gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Errno(u16),
    /// Handed to the listener's holder (SECCOMP_RET_USER_NOTIF).
    Notify,
}

/// When a rule matches a call of its syscall. Arguments are compared on their low 32 bits
/// (every value a rule tests fits; i386 arguments are 32 bits wide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    /// Any of these bits set in argument N.
    AnyBit(u8, u32),
    /// Argument N equal to this value.
    Equals(u8, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub sys: Sys,
    pub when: When,
    pub action: Action,
}

/// Namespace clone flags a filter checks.
const NS_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWTIME) as u32;

/// The guest's rules; `umask` holds the CLONE_NEW* flags the guest may use; `sysinfo`: its
/// sysinfo(2) calls are answered by the listener's holder.
pub fn policy(umask: u64, sysinfo: bool) -> Vec<Rule> {
    let eperm = Action::Errno(libc::EPERM as u16);
    let enosys = Action::Errno(libc::ENOSYS as u16);
    let mut rules: Vec<Rule> = [
        Sys::OpenByHandleAt,
        Sys::KexecLoad,
        Sys::KexecFileLoad,
        Sys::InitModule,
        Sys::FinitModule,
        Sys::DeleteModule,
    ]
    .into_iter()
    .map(|sys| Rule {
        sys,
        when: When::Always,
        action: eperm,
    })
    .collect();
    let forbidden = NS_FLAGS & !(umask as u32);
    if forbidden != 0 {
        for sys in [Sys::Unshare, Sys::Clone] {
            rules.push(Rule {
                sys,
                when: When::AnyBit(0, forbidden),
                action: eperm,
            });
        }
    }
    rules.push(Rule {
        sys: Sys::Ioctl,
        when: When::Equals(1, FS_IOC_FSSETXATTR),
        action: eperm,
    });
    for sys in [
        Sys::Clone3,
        Sys::Keyctl,
        Sys::AddKey,
        Sys::RequestKey,
        Sys::FileSetattr,
    ] {
        rules.push(Rule {
            sys,
            when: When::Always,
            action: enosys,
        });
    }
    if sysinfo {
        rules.push(Rule {
            sys: Sys::Sysinfo,
            when: When::Always,
            action: Action::Notify,
        });
    }
    rules
}

/// One system-call ABI: its audit arch value and its numbers.
#[derive(Debug, Clone, Copy)]
pub struct Abi {
    pub arch: u32,
    /// x86-64: numbers with this bit are the x32 ABI, refused.
    x32_bit: Option<u32>,
    numbers: fn(Sys) -> Option<u32>,
}

impl Abi {
    pub fn nr(&self, s: Sys) -> Option<u32> {
        (self.numbers)(s)
    }
}

/// The native ABI's numbers, from libc.
fn native(s: Sys) -> Option<u32> {
    let n = match s {
        Sys::OpenByHandleAt => libc::SYS_open_by_handle_at,
        Sys::KexecLoad => libc::SYS_kexec_load,
        Sys::KexecFileLoad => libc::SYS_kexec_file_load,
        Sys::InitModule => libc::SYS_init_module,
        Sys::FinitModule => libc::SYS_finit_module,
        Sys::DeleteModule => libc::SYS_delete_module,
        Sys::Unshare => libc::SYS_unshare,
        Sys::Clone => libc::SYS_clone,
        Sys::Clone3 => libc::SYS_clone3,
        Sys::Keyctl => libc::SYS_keyctl,
        Sys::AddKey => libc::SYS_add_key,
        Sys::RequestKey => libc::SYS_request_key,
        Sys::Ioctl => libc::SYS_ioctl,
        Sys::FileSetattr => return Some(NR_FILE_SETATTR),
        Sys::Sysinfo => libc::SYS_sysinfo,
    };
    Some(n as u32)
}

/// i386's numbers (arch/x86/entry/syscalls/syscall_32.tbl); it has no kexec_file_load.
#[cfg(target_arch = "x86_64")]
fn i386(s: Sys) -> Option<u32> {
    Some(match s {
        Sys::OpenByHandleAt => 342,
        Sys::KexecLoad => 283,
        Sys::KexecFileLoad => return None,
        Sys::InitModule => 128,
        Sys::FinitModule => 350,
        Sys::DeleteModule => 129,
        Sys::Unshare => 310,
        Sys::Clone => 120,
        Sys::Clone3 => 435,
        Sys::Keyctl => 288,
        Sys::AddKey => 286,
        Sys::RequestKey => 287,
        Sys::Ioctl => 54,
        Sys::FileSetattr => NR_FILE_SETATTR,
        Sys::Sysinfo => 116,
    })
}

const AUDIT_ARCH_64BIT: u32 = 0x8000_0000;
const AUDIT_ARCH_LE: u32 = 0x4000_0000;

/// The ABIs a guest's programs can call the kernel through on this architecture.
pub fn abis() -> Vec<Abi> {
    #[cfg(target_arch = "x86_64")]
    return vec![
        Abi {
            arch: 62 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE,
            x32_bit: Some(0x4000_0000),
            numbers: native,
        },
        Abi {
            arch: 3 | AUDIT_ARCH_LE,
            x32_bit: None,
            numbers: i386,
        },
    ];
    #[cfg(target_arch = "aarch64")]
    return vec![Abi {
        arch: 183 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE,
        x32_bit: None,
        numbers: native,
    }];
    #[cfg(target_arch = "riscv64")]
    return vec![Abi {
        arch: 243 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE,
        x32_bit: None,
        numbers: native,
    }];
}

/// Classic BPF, as the kernel takes it.
pub type Program = Vec<libc::sock_filter>;

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// Offsets in struct seccomp_data.
const NR: u32 = 0;
const ARCH: u32 = 4;
fn arg_low(n: u8) -> u32 {
    16 + 8 * n as u32
}

pub const RET_ALLOW: u32 = 0x7fff_0000;
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;

fn ins(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn ret(a: Action) -> u32 {
    match a {
        Action::Errno(e) => RET_ERRNO | e as u32,
        Action::Notify => libc::SECCOMP_RET_USER_NOTIF,
    }
}

/// The instructions of one rule, given its syscall number: fall through when it does not
/// match, return its action when it does. Each rule loads what it compares.
fn rule_code(nr: u32, r: &Rule) -> Program {
    let action = ins(RET_K, 0, 0, ret(r.action));
    match r.when {
        When::Always => vec![ins(LD_W_ABS, 0, 0, NR), ins(JEQ_K, 0, 1, nr), action],
        When::AnyBit(arg, v) | When::Equals(arg, v) => {
            let test = if matches!(r.when, When::AnyBit(..)) {
                JSET_K
            } else {
                JEQ_K
            };
            vec![
                ins(LD_W_ABS, 0, 0, NR),
                ins(JEQ_K, 0, 3, nr),
                ins(LD_W_ABS, 0, 0, arg_low(arg)),
                ins(test, 0, 1, v),
                action,
            ]
        }
    }
}

/// The whole filter: dispatch on the arch, each ABI's rules, and death for any other arch (a
/// program of an ABI the policy was not written for would pass every rule unchecked).
pub fn build(rules: &[Rule], abis: &[Abi]) -> Result<Program, SeccompError> {
    let mut prog = vec![ins(LD_W_ABS, 0, 0, ARCH)];
    for abi in abis {
        let mut block = Vec::new();
        if let Some(bit) = abi.x32_bit {
            block.push(ins(LD_W_ABS, 0, 0, NR));
            block.push(ins(JGE_K, 0, 1, bit));
            block.push(ins(RET_K, 0, 0, RET_ERRNO | libc::ENOSYS as u32));
        }
        for r in rules {
            if let Some(nr) = abi.nr(r.sys) {
                block.extend(rule_code(nr, r));
            }
        }
        block.push(ins(RET_K, 0, 0, RET_ALLOW));
        // Not this arch: jump over the block (the accumulator still holds the arch).
        prog.push(ins(JEQ_K, 1, 0, abi.arch));
        prog.push(ins(JA, 0, 0, block.len() as u32));
        prog.extend(block);
    }
    prog.push(ins(RET_K, 0, 0, RET_KILL_PROCESS));
    if prog.len() > libc::BPF_MAXINSNS as usize {
        return Err(SeccompError(format!(
            "the filter has {} instructions, more than the kernel's {}",
            prog.len(),
            libc::BPF_MAXINSNS
        )));
    }
    Ok(prog)
}

/// The guest's filter for this architecture.
pub fn filter(umask: u64, sysinfo: bool) -> Result<Program, SeccompError> {
    build(&policy(umask, sysinfo), &abis())
}

/// Whether a filter hands calls to a listener.
pub fn notifies(prog: &Program) -> bool {
    prog.iter()
        .any(|i| i.code == RET_K && i.k == libc::SECCOMP_RET_USER_NOTIF)
}

/// Installs a filter on the calling thread (the stage is single-threaded); returns its
/// listener when it has user notifications.
pub fn install(prog: &Program) -> Result<Option<std::os::fd::OwnedFd>, SeccompError> {
    let err = |e: std::io::Error| SeccompError(e.to_string());
    if notifies(prog) {
        crate::sys::notify::install_with_listener(prog)
            .map(Some)
            .map_err(err)
    } else {
        crate::sys::process::seccomp_filter(prog)
            .map(|()| None)
            .map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `prog` on a seccomp_data of (nr, arch, args) as the kernel would.
    fn run(prog: &Program, nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        let word = |off: u32| -> u32 {
            match off {
                NR => nr,
                ARCH => arch,
                8 | 12 => 0,
                o => {
                    let i = ((o - 16) / 8) as usize;
                    let a = args[i];
                    if (o - 16) % 8 == 0 {
                        a as u32
                    } else {
                        (a >> 32) as u32
                    }
                }
            }
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => acc = word(i.k),
                RET_K => return i.k,
                JA => pc += i.k as usize,
                JEQ_K | JGE_K | JSET_K => {
                    let t = match i.code {
                        JEQ_K => acc == i.k,
                        JGE_K => acc >= i.k,
                        _ => acc & i.k != 0,
                    };
                    pc += if t { i.jt } else { i.jf } as usize;
                }
                c => panic!("unexpected instruction {c:#x}"),
            }
        }
    }

    const EPERM: u32 = RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;

    #[test]
    fn every_abi_gets_the_same_policy() {
        let prog = filter(0, false).unwrap();
        let newuser = libc::CLONE_NEWUSER as u64;
        for abi in abis() {
            let nr = |s| abi.nr(s).unwrap();
            let call = |s, a0| run(&prog, nr(s), abi.arch, [a0, 0, 0, 0, 0, 0]);
            assert_eq!(call(Sys::OpenByHandleAt, 0), EPERM);
            assert_eq!(call(Sys::InitModule, 0), EPERM);
            assert_eq!(call(Sys::Unshare, newuser), EPERM);
            assert_eq!(call(Sys::Unshare, libc::CLONE_FILES as u64), RET_ALLOW);
            assert_eq!(call(Sys::Clone, newuser | libc::SIGCHLD as u64), EPERM);
            assert_eq!(call(Sys::Clone, libc::SIGCHLD as u64), RET_ALLOW);
            assert_eq!(call(Sys::Clone3, 0), ENOSYS);
            assert_eq!(call(Sys::Keyctl, 0), ENOSYS);
            assert_eq!(call(Sys::FileSetattr, 0), ENOSYS);
            let ioctl = |req: u64| run(&prog, nr(Sys::Ioctl), abi.arch, [3, req, 0, 0, 0, 0]);
            assert_eq!(ioctl(FS_IOC_FSSETXATTR as u64), EPERM);
            // The kernel takes the request as 32 bits: high bits do not get past.
            assert_eq!(ioctl(FS_IOC_FSSETXATTR as u64 | 1 << 32), EPERM);
            // FS_IOC_FSGETXATTR, TCGETS: allowed.
            assert_eq!(ioctl(0x801c_581f), RET_ALLOW);
            assert_eq!(ioctl(0x5401), RET_ALLOW);
            // Unlisted calls pass: getpid is 39 on x86-64, 20 on i386.
            assert_eq!(run(&prog, 20, abi.arch, [0; 6]), RET_ALLOW);
            assert_eq!(run(&prog, 39, abi.arch, [0; 6]), RET_ALLOW);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_and_unknown_arches_are_refused() {
        let prog = filter(0, false).unwrap();
        let x86_64 = abis()[0].arch;
        assert_eq!(run(&prog, 39 | 0x4000_0000, x86_64, [0; 6]), ENOSYS);
        // ARM's EABI: not a guest ABI here.
        assert_eq!(run(&prog, 20, 40 | AUDIT_ARCH_LE, [0; 6]), RET_KILL_PROCESS);
        // i386 numbers are i386's: 304 (x86-64's open_by_handle_at) is something else there.
        let i386 = abis()[1].arch;
        assert_eq!(run(&prog, 342, i386, [0; 6]), EPERM);
        assert_eq!(run(&prog, 304, i386, [0; 6]), RET_ALLOW);
    }

    #[test]
    fn the_umask_allows_namespaces() {
        let all = filter(u64::MAX, false).unwrap();
        let abi = abis()[0];
        let unshare = abi.nr(Sys::Unshare).unwrap();
        assert_eq!(
            run(
                &all,
                unshare,
                abi.arch,
                [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]
            ),
            RET_ALLOW
        );
        assert!(all.len() < filter(0, false).unwrap().len());
    }

    #[test]
    fn sysinfo_goes_to_the_listener_on_every_abi_when_asked() {
        let with = filter(0, true).unwrap();
        let without = filter(0, false).unwrap();
        assert!(notifies(&with) && !notifies(&without));
        for abi in abis() {
            let nr = abi.nr(Sys::Sysinfo).unwrap();
            assert_eq!(
                run(&with, nr, abi.arch, [0; 6]),
                libc::SECCOMP_RET_USER_NOTIF
            );
            assert_eq!(run(&without, nr, abi.arch, [0; 6]), RET_ALLOW);
        }
    }

    #[test]
    fn an_equals_rule_matches_its_value_only() {
        let rules = [Rule {
            sys: Sys::Keyctl,
            when: When::Equals(1, 0x4020_5820),
            action: Action::Errno(libc::EPERM as u16),
        }];
        let prog = build(&rules, &abis()).unwrap();
        let abi = abis()[0];
        let nr = abi.nr(Sys::Keyctl).unwrap();
        assert_eq!(
            run(&prog, nr, abi.arch, [0, 0x4020_5820, 0, 0, 0, 0]),
            EPERM
        );
        assert_eq!(
            run(&prog, nr, abi.arch, [0, 0x4020_5821, 0, 0, 0, 0]),
            RET_ALLOW
        );
    }
}
