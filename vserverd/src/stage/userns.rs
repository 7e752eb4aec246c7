//! A guest's user namespace (`spaces/user`): its root is host id BASE, its ids BASE..BASE+65535.
//!
//! Who owns what, and why in this order:
//!
//! 1. The stage makes the guest's mount namespace A (owned by the host's user namespace).
//! 2. A helper (the daemon's child) makes the user namespace U — or, for a guest whose
//!    network namespace the daemon made (interfaces/), joins the U that owns it (Plan::Netns
//!    made both, the maps left unwritten) — and, with virt_uptime, makes U's time namespace and
//!    sets its clocks to zero (CAP_SYS_TIME in U, before any process is in it). The stage,
//!    host root, writes U's id maps (only a process outside U with CAP_SETUID there may) and
//!    keeps U's fd for the idmapped mounts.
//! 3. The helper clones PID 1 into a new pid namespace, which U owns (the owner of a
//!    namespace is its maker's user namespace, fixed at birth): the guest's root may reboot
//!    it and mount its /proc. PID 1 is born in the time namespace. PID 1 waits.
//! 4. The stage enters that pid namespace (for its children) and forks the mounter, host root
//!    in A and in the guest's pid namespace: it makes every mount — the idmapped root and
//!    binds, /dev, /proc for the guest's pids with its masks, the meminfo binds — and
//!    pivot_root, which moves PID 1's root along (pivot_root moves every process of the
//!    mount namespace whose root was the old one).
//! 5. PID 1, told to go, becomes root inside U (uid and gid 0 there: BASE on the host) and
//!    makes its mount, cgroup, uts, ipc (and loopback-only network) namespaces, owned by U.
//!    A mount namespace made in a less privileged user namespace than its parent's gets every
//!    copied mount *locked* (MNT_LOCKED): guest root, even holding CAP_SYS_ADMIN in U, cannot
//!    unmount the /proc masks or the meminfo bind to see what is beneath, nor remount them.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use super::plan::{Report, StartPlan};
use super::Channels;
use crate::error::{StepError, StepResult};
use crate::sys;

type Result<T> = std::result::Result<T, StepError>;

const STEP: &str = "stage.userns";

/// The id map of every user-namespace guest: its 0..65535 at BASE on the host.
pub fn map_line(base: u32) -> String {
    format!("0 {base} {}\n", crate::guest::idrange::RANGE)
}

fn read_exact(fd: OwnedFd, n: usize) -> Option<Vec<u8>> {
    let mut b = vec![0u8; n];
    std::fs::File::from(fd).read_exact(&mut b).ok().map(|()| b)
}

fn write_all(fd: &OwnedFd, b: &[u8]) -> std::io::Result<()> {
    std::fs::File::from(fd.try_clone()?).write_all(b)
}

/// Steps 2–5 for the stage, in the guest's fresh mount namespace with its cgroups joined
/// (`v2`: the v2 cgroup PID 1 is born in). Reports PID 1 (and the helpers, for the daemon to
/// reap).
pub(super) fn launch(
    p: &StartPlan,
    ch: &mut Channels,
    v2: Option<OwnedFd>,
    base: u32,
) -> Result<()> {
    let (ready_r, ready_w) = sys::fd::pipe().step(STEP)?;
    let (go_r, go_w) = sys::fd::pipe().step(STEP)?;
    let (pid_r, pid_w) = sys::fd::pipe().step(STEP)?;
    let (run_r, run_w) = sys::fd::pipe().step(STEP)?;
    // SAFETY: the stage is single-threaded; the child runs ordinary code and exits.
    let helper =
        unsafe { sys::process::clone_parent() }.map_err(|e| super::clone_error("clone", e))?;
    if helper == 0 {
        drop((ready_r, go_w, pid_r, run_w));
        helper_main(p, ch, v2, ready_w, go_r, pid_w, run_r)
    }
    drop((ready_w, go_r, pid_w, run_r, v2));
    ch.trusted.send(&Report::Helper(helper));
    let said = read_exact(ready_r, 5).unwrap_or_else(|| vec![Entered::Gone as u8, 0, 0, 0, 0]);
    let errno = i32::from_le_bytes([said[1], said[2], said[3], said[4]]);
    if let Some(e) = Entered::refusal(said[0], errno) {
        return Err(e);
    }
    let proc = format!("/proc/{helper}");
    for f in ["uid_map", "gid_map"] {
        let path = format!("{proc}/{f}");
        std::fs::write(&path, map_line(base)).step_doing(STEP, || format!("writing {path}"))?;
    }
    let user = std::fs::File::open(format!("{proc}/ns/user"))
        .map(OwnedFd::from)
        .step_doing(STEP, || format!("{proc}/ns/user"))?;
    write_all(&go_w, &[1]).step(STEP)?;
    let init = read_exact(pid_r, 4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    if init <= 0 {
        let e = std::io::Error::from_raw_os_error(-init);
        return Err(super::clone_error(
            "clone3 of the guest's init in its pid namespace",
            e,
        ));
    }
    ch.trusted.mark("user namespace made");
    let r = mount_from_outside(p, ch, init, &user);
    if let Err(e) = r {
        // PID 1 waits for a go that never comes; it is the daemon's child, to be reaped.
        let _ = sys::process::kill(init, libc::SIGKILL);
        ch.trusted.send(&Report::Helper(init));
        return Err(e);
    }
    ch.trusted.send(&Report::Pid(init));
    write_all(&run_w, &[1]).step(STEP)?;
    Ok(())
}

/// Step 4: the mounter, in PID 1's pid namespace.
fn mount_from_outside(p: &StartPlan, ch: &mut Channels, init: i32, user: &OwnedFd) -> Result<()> {
    let fd = crate::isolate::pidfd::open(init).step(STEP)?;
    sys::ns::setns_pidfd(&fd, libc::CLONE_NEWPID)
        .step_doing(STEP, || "entering the guest's pid namespace".into())?;
    crate::fault::point("stage.userns")?;
    // SAFETY: the stage is single-threaded.
    let mounter = unsafe { sys::process::fork() }.step_doing(STEP, || "fork".into())?;
    if mounter == 0 {
        let code = match super::mount_guest(p, &mut ch.trusted, Some(user.as_fd())) {
            Ok(()) => 0,
            Err(e) => {
                ch.trusted.send(&Report::Error(e));
                1
            }
        };
        sys::process::exit_now(code)
    }
    let status = sys::process::waitpid(mounter).step(STEP)?;
    if status != 0 {
        return Err(StepError::refused(
            "stage.mounts",
            "the guest's mounts were not made",
        ));
    }
    Ok(())
}

/// What the helper says once it is (or is not) in U: a step (this, as a byte) and its errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entered {
    Done = 1,
    /// unshare(CLONE_NEWUSER) refused.
    User = 2,
    /// The user namespace owning the guest's network namespace could not be joined.
    Owner = 3,
    /// The time namespace, or its offsets, refused.
    Time = 4,
    /// The helper died before it said anything.
    Gone = 5,
}

impl Entered {
    /// The error a helper's word means (None: it is in U, with its time namespace if asked).
    fn refusal(code: u8, errno: i32) -> Option<StepError> {
        let text = match code {
            c if c == Entered::Done as u8 => return None,
            c if c == Entered::User as u8 => {
                "the kernel refused a user namespace (user.max_user_namespaces, or a kernel \
                 without user namespaces)"
            }
            c if c == Entered::Owner as u8 => {
                "joining the user namespace that owns the guest's network namespace"
            }
            c if c == Entered::Time as u8 => {
                "the guest's time namespace (virt_uptime) in its user namespace"
            }
            _ => "the user namespace's helper ended before it was in one",
        };
        Some(StepError {
            errno: (errno > 0).then_some(errno),
            ..StepError::refused(STEP, text)
        })
    }
}

/// The helper's steps into U: made here, or (`p.netns_userns`) the one owning the network
/// namespace the stage joined, which the daemon made for it (Plan::Netns); then, with
/// virt_uptime, U's time namespace. The helper holds every capability in U, so it may write
/// the offsets (CAP_SYS_TIME in the time namespace's owner), and no process is in that
/// namespace before PID 1 is cloned into it.
fn into_user(p: &StartPlan) -> std::result::Result<(), (Entered, std::io::Error)> {
    if p.netns_userns {
        std::fs::File::open("/proc/self/ns/net")
            .and_then(sys::ns::owner_userns)
            .and_then(|u| {
                nix::sched::setns(u, nix::sched::CloneFlags::CLONE_NEWUSER).map_err(Into::into)
            })
            .map_err(|e| (Entered::Owner, e))?;
    } else {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
            .map_err(|e| (Entered::User, e.into()))?;
    }
    if p.time_ns {
        crate::isolate::process::unshare_time().map_err(|e| (Entered::Time, e))?;
    }
    Ok(())
}

/// Steps 2 and 3 in the helper: U (and its time namespace), then PID 1 in a pid namespace U
/// owns.
fn helper_main(
    p: &StartPlan,
    ch: &mut Channels,
    v2: Option<OwnedFd>,
    ready: OwnedFd,
    go: OwnedFd,
    pid_out: OwnedFd,
    run: OwnedFd,
) -> ! {
    ch.trusted.close();
    let (code, errno) = match into_user(p) {
        Ok(()) => (Entered::Done, 0),
        Err((step, e)) => (step, e.raw_os_error().unwrap_or(0)),
    };
    let mut said = vec![code as u8];
    said.extend_from_slice(&errno.to_le_bytes());
    let _ = write_all(&ready, &said);
    if code != Entered::Done || read_exact(go, 1).as_deref() != Some(&[1]) {
        sys::process::exit_now(1)
    }
    // SAFETY: the helper is single-threaded (a fork of the stage).
    match unsafe { sys::process::clone_parent_newpid(v2.as_ref().map(|f| f.as_fd())) } {
        Ok(0) => {
            drop(pid_out);
            drop(v2);
            init(p, ch, run)
        }
        Ok(pid) => {
            let _ = write_all(&pid_out, &pid.to_le_bytes());
            sys::process::exit_now(0)
        }
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(libc::EINVAL);
            let _ = write_all(&pid_out, &(-errno).to_le_bytes());
            sys::process::exit_now(1)
        }
    }
}

/// Plan::Netns: a network namespace owned by a new user namespace, pinned at `pin` (the
/// daemon sets it up from the host's side, as any guest's, and the start joins its owner).
/// A child makes both; the stage, host root in the host's mount namespace, binds the network
/// namespace over `pin` (the child, in U, may no longer mount there). U's id maps are left
/// unwritten: the start's helper, once in U, is the process they are written through.
pub(super) fn make_netns(pin: &std::path::Path) -> Result<()> {
    const STEP: &str = "stage.netns";
    let (ready_r, ready_w) = sys::fd::pipe().step(STEP)?;
    let (done_r, done_w) = sys::fd::pipe().step(STEP)?;
    // SAFETY: the stage is single-threaded; the child runs ordinary code and exits.
    let child = unsafe { sys::process::fork() }.step_doing(STEP, || "fork".into())?;
    if child == 0 {
        drop((ready_r, done_w));
        let ok = nix::sched::unshare(
            nix::sched::CloneFlags::CLONE_NEWUSER | nix::sched::CloneFlags::CLONE_NEWNET,
        )
        .map_or_else(|e| e as i32, |()| 0);
        let _ = write_all(&ready_w, &ok.to_le_bytes());
        // Until the stage has pinned the namespace (it closes its end).
        let _ = read_exact(done_r, 1);
        sys::process::exit_now(0)
    }
    drop((ready_w, done_r));
    let said = read_exact(ready_r, 4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let r = match said {
        Some(0) => {
            let src = format!("/proc/{child}/ns/net");
            nix::mount::mount(
                Some(src.as_str()),
                pin,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .step_doing(STEP, || format!("pinning {src} at {}", pin.display()))
        }
        errno => Err(StepError {
            errno: errno.filter(|e| *e > 0),
            ..StepError::refused(
                STEP,
                "the kernel refused a user namespace with a network namespace \
                 (user.max_user_namespaces, or a kernel without user namespaces)",
            )
        }),
    };
    drop(done_w);
    let _ = sys::process::waitpid(child);
    r
}

/// Step 5, PID 1: waits for its mounts, then becomes the guest's root in U and runs init.
fn init(p: &StartPlan, ch: &mut Channels, run: OwnedFd) -> ! {
    let out = ch.guest_side();
    let _ = sys::process::set_name(super::GUEST_INIT_NAME);
    // The way to the /proc server while the host's paths are in view (before the mounter
    // pivots); a guest that cannot reach it gets the kernel's sysinfo.
    let sysinfo = super::sysinfo_channel(&p.confinement).ok().flatten();
    if read_exact(run, 1).as_deref() != Some(&[1]) {
        sys::process::exit_now(1)
    }
    let loopback = p.netns.is_none() && p.loopback_netns;
    let e = match enter(loopback) {
        Ok(()) => {
            out.mark("user namespace entered");
            super::run_guest(p, out, sysinfo).unwrap_err()
        }
        Err(e) => e,
    };
    out.send(&Report::Error(e));
    sys::process::exit_now(1)
}

/// PID 1 in U: its root there (no supplementary groups), then its own mount (every mount now
/// locked), cgroup, uts and ipc namespaces, and with `loopback` a network namespace with
/// loopback up, all owned by U.
fn enter(loopback: bool) -> Result<()> {
    let _ = std::env::set_current_dir("/");
    sys::process::setgroups(&[]).step_doing(STEP, || "setgroups".into())?;
    sys::process::setresgid(0).step_doing(STEP, || "setresgid 0".into())?;
    sys::process::setresuid(0).step_doing(STEP, || "setresuid 0".into())?;
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWCGROUP | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    if loopback {
        flags |= libc::CLONE_NEWNET;
    }
    nix::sched::unshare(nix::sched::CloneFlags::from_bits_retain(flags))
        .step_doing(STEP, || "namespaces in the user namespace".into())?;
    if loopback {
        crate::isolate::net::loopback_up()
            .step_doing(STEP, || "loopback in the guest's network namespace".into())?;
    }
    Ok(())
}

/// Whether the process `pid` is in another user namespace than ours (a joiner follows it
/// there).
pub fn differs(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    match (
        ino("/proc/self/ns/user"),
        ino(&format!("/proc/{pid}/ns/user")),
    ) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_helpers_word_names_the_step_that_failed() {
        use super::Entered;
        assert!(Entered::refusal(Entered::Done as u8, 0).is_none());
        let e = Entered::refusal(Entered::Time as u8, libc::EPERM).unwrap();
        assert_eq!(
            (e.step.as_str(), e.errno),
            ("stage.userns", Some(libc::EPERM))
        );
        assert!(e.to_string().contains("time namespace"), "{e}");
        let e = Entered::refusal(Entered::Owner as u8, libc::EINVAL).unwrap();
        assert!(
            e.to_string().contains("owns the guest's network namespace"),
            "{e}"
        );
        let e = Entered::refusal(Entered::Gone as u8, 0).unwrap();
        assert_eq!(e.errno, None);
        assert!(Entered::refusal(Entered::User as u8, libc::ENOSPC).is_some());
    }

    #[test]
    fn the_map_is_the_guests_whole_range_at_its_base() {
        assert_eq!(super::map_line(524288), "0 524288 65536\n");
    }
}
