//! From a guest's config to a stage plan: which command, which mounts, which limits. Pure
//! apart from looking at which files exist in the guest root (rc paths, systemd as init).

use std::path::Path;

use crate::config::init::Style;
use crate::config::limits::Limit;
use crate::config::{fstab, names, GuestConfig};
use crate::isolate::cgroup::GuestCgroup;
use crate::isolate::mount::MountSpec;
use crate::stage::plan::{Confinement, JoinPlan, Prepare, StartPlan, SystemdCgroup, Ulimit};

/// util-vserver's fake mtab, written when apps/init/mtab names none.
pub const DEFAULT_MTAB: &str = "/dev/hdv1 / ufs defaults 0 0\n";

/// How a guest starts and stops, by init style (docs/lifecycle.md, init styles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitCommands {
    pub start: Vec<String>,
    /// None: signal init (`stop_signal`) instead of running a command.
    pub stop: Option<Vec<String>>,
    pub stop_signal: i32,
    /// Environment added for the start command / the stop command.
    pub start_env: Vec<String>,
    pub stop_env: Vec<String>,
    /// The start command returns, so the stage stays PID 1 as a reaper.
    pub reaper: bool,
    pub prepare: Prepare,
    /// Init is systemd: it gets a /run tmpfs, /sys and a writable cgroup tree of its own.
    pub systemd: bool,
}

fn exists_in(vdir: &Path, p: &str) -> bool {
    std::fs::symlink_metadata(vdir.join(p.trim_start_matches('/'))).is_ok()
}

/// Whether the guest's /sbin/init is systemd (it wants SIGRTMIN+4, not SIGINT, to halt), looked
/// up as the guest will see it (its fstab's binds included).
pub fn init_is_systemd(c: &GuestConfig) -> bool {
    let binds = super::rootpath::binds(&mounts(c));
    super::rootpath::resolve(&c.vdir, &binds, "/sbin/init").is_some_and(|p| {
        p.rsplit('/').next() == Some("systemd")
            && super::rootpath::host_path(&c.vdir, &binds, &p).is_file()
    })
}

/// How the guest's init style starts and stops it (util-vserver's vserver.functions), with
/// apps/init/cmd.start and cmd.stop in place of the style's own where given.
pub fn init_commands(c: &GuestConfig) -> Result<InitCommands, String> {
    let i = &c.init;
    let mut cmds = match i.style {
        Style::Plain | Style::Minit => plain_or_minit(c),
        Style::Sysv => sysv(c)?,
        Style::Gentoo | Style::Openrc => openrc(c)?,
        Style::Arch => reaper_style(
            vec!["/etc/rc.multi".into()],
            vec!["/etc/rc.shutdown".into()],
        ),
        Style::Rescue => reaper_style(
            vec!["/bin/sleep".into(), "900".into()],
            vec!["/sbin/killall5".into()],
        ),
        Style::Empty => InitCommands {
            stop: None,
            ..reaper_style(vec![], vec![])
        },
    };
    if i.style != Style::Rescue {
        if let Some(s) = &i.cmd_start {
            cmds.start = s.clone();
        }
        if let Some(s) = &i.cmd_stop {
            cmds.stop = Some(s.clone());
        }
    }
    if cmds.start.is_empty() || cmds.start[0].is_empty() {
        return Err(format!(
            "init style {:?} has no start command: set {}/apps/init/cmd.start",
            i.style.as_str(),
            c.cfg_dir.display()
        ));
    }
    Ok(cmds)
}

/// A style whose start command runs under the reaper and whose stop is a command, with no
/// environment of its own (arch, rescue, and empty's base).
fn reaper_style(start: Vec<String>, stop: Vec<String>) -> InitCommands {
    InitCommands {
        start,
        stop: Some(stop),
        stop_signal: libc::SIGTERM,
        start_env: vec![],
        stop_env: vec![],
        reaper: true,
        prepare: Prepare::None,
        systemd: false,
    }
}

/// plain: /sbin/init as PID 1 (halted with SIGINT, or SIGRTMIN+4 when it is systemd); minit:
/// minit-start and minit-stop.
fn plain_or_minit(c: &GuestConfig) -> InitCommands {
    let i = &c.init;
    let (start, stop) = if i.style == Style::Plain {
        ("/sbin/init", None)
    } else {
        ("/sbin/minit-start", Some("/sbin/minit-stop"))
    };
    let mut argv = vec![start.to_string()];
    argv.extend(i.runlevel_start.clone());
    let systemd = i.style == Style::Plain && init_is_systemd(c);
    InitCommands {
        start: argv,
        stop: stop.map(|s| {
            let mut v = vec![s.to_string()];
            v.extend(i.runlevel_stop.clone());
            v
        }),
        stop_signal: if systemd {
            libc::SIGRTMIN() + 4
        } else {
            libc::SIGINT
        },
        start_env: if systemd {
            vec!["container=vserverd".into()]
        } else {
            vec![]
        },
        stop_env: vec![],
        reaper: false,
        prepare: if i.style == Style::Plain {
            Prepare::Plain
        } else {
            Prepare::None
        },
        systemd,
    }
}

/// sysv: the guest's rc script for the start runlevel (3) under the reaper, and for the stop
/// runlevel (6) to stop.
fn sysv(c: &GuestConfig) -> Result<InitCommands, String> {
    let i = &c.init;
    // The last existing one wins, as in util-vserver.
    let rc = ["/etc/rc.d/rc", "/etc/init.d/rc"]
        .into_iter()
        .find(|p| exists_in(&c.vdir, p));
    let start_rl = i.runlevel_start.clone().unwrap_or_else(|| "3".into());
    let stop_rl = i.runlevel_stop.clone().unwrap_or_else(|| "6".into());
    let rc = match (rc, &i.cmd_start) {
        (Some(rc), _) => rc.to_string(),
        (None, Some(_)) => String::new(),
        (None, None) => {
            return Err(format!(
                "init style sysv: neither /etc/init.d/rc nor /etc/rc.d/rc exists in {}{}",
                c.vdir.display(),
                if init_is_systemd(c) {
                    format!(
                        "; its /sbin/init is systemd: write plain to {}/apps/init/style",
                        c.cfg_dir.display()
                    )
                } else {
                    String::new()
                }
            ))
        }
    };
    Ok(InitCommands {
        start: vec![rc.clone(), start_rl.clone()],
        stop: Some(vec![rc, stop_rl.clone()]),
        stop_signal: libc::SIGTERM,
        start_env: vec!["PREVLEVEL=N".into(), format!("RUNLEVEL={start_rl}")],
        stop_env: vec![
            format!("PREVLEVEL={start_rl}"),
            format!("RUNLEVEL={stop_rl}"),
        ],
        reaper: true,
        prepare: Prepare::Sysv,
        systemd: false,
    })
}

/// gentoo and openrc: init-vserver.sh with the start runlevel, `rc shutdown` to stop.
fn openrc(c: &GuestConfig) -> Result<InitCommands, String> {
    let i = &c.init;
    let script = [
        "/lib/rcscripts/sh/init-vserver.sh",
        "/lib/rc/sh/init-vserver.sh",
    ]
    .into_iter()
    .find(|p| exists_in(&c.vdir, p));
    let script = match (script, &i.cmd_start) {
        (Some(s), _) => s.to_string(),
        (None, Some(_)) => String::new(),
        (None, None) => return Err("init-vserver.sh not found; aborting".into()),
    };
    Ok(InitCommands {
        start: vec![
            script,
            i.runlevel_start.clone().unwrap_or_else(|| "default".into()),
        ],
        stop: Some(vec!["/sbin/rc".into(), "shutdown".into()]),
        stop_signal: libc::SIGTERM,
        start_env: vec!["TERM=linux".into()],
        stop_env: vec![
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin".into(),
            "TERM=linux".into(),
            "RUNLEVEL=0".into(),
        ],
        reaper: true,
        prepare: Prepare::None,
        systemd: false,
    })
}

/// PER_LINUX32: uname reports a 32-bit machine (i686 on x86_64).
const PER_LINUX32: u32 = 0x0008;

/// The personality of init: `personality`, plus PER_LINUX32 when uts/machine names a 32-bit
/// x86, the one machine name mainline can fake.
pub fn personality(c: &GuestConfig) -> Option<u32> {
    let m32 = c
        .uts
        .machine
        .as_deref()
        .is_some_and(|m| matches!(m, "i386" | "i486" | "i586" | "i686"));
    match (c.personality, m32) {
        (p, false) => p,
        (p, true) => Some(p.unwrap_or(0) | PER_LINUX32),
    }
}

pub fn confinement(c: &GuestConfig) -> Confinement {
    let v = |l: Limit| l.as_option();
    Confinement {
        bcaps: c.bcaps,
        umask: c.umask,
        ulimits: c
            .ulimits
            .iter()
            .map(|u| Ulimit {
                name: u.name.clone(),
                soft: v(u.soft),
                hard: v(u.hard),
            })
            .collect(),
        nice: c.nice,
        ionice: c.ionice,
        personality: personality(c),
        // Filled in by the caller, which knows where the /proc server is (virtmem.rs).
        sysinfo: None,
    }
}

/// The mounts of a guest: fstab (util-vserver's default set when there is none), then
/// fstab.local and fstab.remote. The `/` entry is the guest root itself and is skipped.
pub fn mounts(c: &GuestConfig) -> Vec<MountSpec> {
    let origin = |file: &str, line: u32| {
        if line == 0 {
            format!("default mount (no {}/fstab)", c.cfg_dir.display())
        } else {
            format!("{}/{file}:{line}", c.cfg_dir.display())
        }
    };
    let main = c.fstab.clone().unwrap_or_else(fstab::default_entries);
    let sets = [
        ("fstab", Some(main)),
        ("fstab.local", c.fstab_local.clone()),
        ("fstab.remote", c.fstab_remote.clone()),
    ];
    sets.into_iter()
        .flat_map(|(file, entries)| {
            entries
                .unwrap_or_default()
                .into_iter()
                .map(move |e| (file, e))
        })
        .filter(|(_, e)| e.target != "/")
        .map(|(file, e)| MountSpec {
            origin: origin(file, e.line),
            source: e.source,
            target: e.target,
            fstype: e.fstype,
            options: e.options,
        })
        .collect()
}

/// A user-namespace guest's file systems made fresh for it (tmpfs, devpts, …) belong to its
/// ids: `uid=N`/`gid=N` options are the guest's ids, so they move to BASE+N on the host; a
/// tmpfs without them gets the guest root's (BASE), as it would if the guest mounted it.
/// Ids at or past 65536 are left as written (the mount then shows them as nobody).
pub fn shift_mount_ids(mounts: &mut [MountSpec], base: u32) {
    const OWNED: &[&str] = &["tmpfs", "devpts", "ramfs", "mqueue"];
    for m in mounts
        .iter_mut()
        .filter(|m| OWNED.contains(&m.fstype.as_str()))
    {
        let mut seen = (false, false);
        for o in m.options.iter_mut() {
            for (key, flag) in [("uid=", &mut seen.0), ("gid=", &mut seen.1)] {
                if let Some(n) = o.strip_prefix(key).and_then(|v| v.parse::<u32>().ok()) {
                    *flag = true;
                    if n < crate::guest::idrange::RANGE {
                        *o = format!("{key}{}", base + n);
                    }
                }
            }
        }
        if m.fstype == "tmpfs" || m.fstype == "ramfs" {
            if !seen.0 {
                m.options.push(format!("uid={base}"));
            }
            if !seen.1 {
                m.options.push(format!("gid={base}"));
            }
        }
    }
}

/// systemd as init in a user namespace of its own: CAP_SYS_ADMIN there and every namespace
/// its units ask for (PrivateTmp=, ProtectSystem=, PrivateDevices=, PrivateNetwork=, …). The
/// capability reaches the guest's own namespaces only; the host's mounts are locked to it.
pub fn userns_systemd(p: &mut StartPlan) {
    p.confinement.bcaps |= 1 << caps::Capability::CAP_SYS_ADMIN.index();
    for ns in ["newns", "newuts", "newipc", "newuser", "newpid", "newnet"] {
        p.confinement.umask |= names::UMASK.lookup(ns).unwrap_or(0);
    }
}

pub fn start_plan(c: &GuestConfig, cg: &GuestCgroup) -> Result<StartPlan, String> {
    let cmds = init_commands(c)?;
    let mtab = match &c.init.mtab {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => Some(DEFAULT_MTAB.to_string()),
    };
    let mut env = c.init.environment.clone();
    env.extend(cmds.start_env.iter().cloned());
    Ok(StartPlan {
        name: c.name.clone(),
        cfg_dir: c.cfg_dir.clone(),
        vdir: c.vdir.clone(),
        cgroups: cg.joins(),
        time_ns: c.cflags & names::FLAG_VIRT_UPTIME != 0,
        netns: None,
        loopback_netns: false,
        mounts: mounts(c),
        userns: None,
        netns_userns: false,
        proc_files: Vec::new(),
        console: None,
        marks: false,
        fault: crate::fault::spec(),
        systemd_cgroup: cmds.systemd.then(|| {
            if cg.v2_dir().is_some() {
                SystemdCgroup::Unified
            } else {
                SystemdCgroup::NamedV1
            }
        }),
        mtab,
        prepare: cmds.prepare,
        // sysv: the runlevel rc starts, recorded in the guest's utmp for `runlevel` (and so
        // invoke-rc.d), as util-vserver's fakerunlevel did.
        runlevel: (cmds.prepare == Prepare::Sysv)
            .then(|| {
                cmds.start_env
                    .iter()
                    .find_map(|e| e.strip_prefix("RUNLEVEL="))
                    .map(String::from)
            })
            .flatten(),
        // Without uts/nodename the guest is named after itself, not after the host.
        nodename: Some(c.uts.nodename.clone().unwrap_or_else(|| c.name.clone())),
        domainname: c.uts.domainname.clone(),
        confinement: Confinement {
            // systemd narrows each service's bounding set, which takes CAP_SETPCAP; without it
            // journald and logind fail (218/CAPABILITIES). It grants nothing past the set.
            bcaps: c.bcaps
                | if cmds.systemd {
                    1 << caps::Capability::CAP_SETPCAP.index()
                } else {
                    0
                },
            ..confinement(c)
        },
        argv: cmds.start,
        env,
        reaper: cmds.reaper,
    })
}

/// A process to run inside a running guest.
pub fn join_plan(
    c: &GuestConfig,
    cg: &GuestCgroup,
    init: (i32, u64),
    argv: Vec<String>,
    env: Vec<String>,
    tty: bool,
    user: Option<String>,
) -> JoinPlan {
    JoinPlan {
        name: c.name.clone(),
        init_pid: init.0,
        init_start_time: init.1,
        cgroups: cg.joins(),
        confinement: confinement(c),
        argv,
        env,
        tty,
        user,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(files: &[(&str, &str)]) -> (tempfile::TempDir, GuestConfig) {
        crate::config::test_guest(files)
    }

    #[test]
    fn sysv_runs_the_last_rc_under_a_reaper() {
        let (_t, c) = guest(&[("vdir:etc/init.d/rc", ""), ("vdir:etc/rc.d/rc", "")]);
        let i = init_commands(&c).unwrap();
        assert_eq!(i.start, ["/etc/rc.d/rc", "3"]);
        assert_eq!(i.stop.unwrap(), ["/etc/rc.d/rc", "6"]);
        assert!(i.reaper);
        assert_eq!(i.start_env, ["PREVLEVEL=N", "RUNLEVEL=3"]);
        assert_eq!(i.stop_env, ["PREVLEVEL=3", "RUNLEVEL=6"]);
    }

    #[test]
    fn sysv_without_rc_is_an_error() {
        let (_t, c) = guest(&[]);
        assert!(init_commands(&c).unwrap_err().contains("/etc/init.d/rc"));
    }

    #[test]
    fn plain_execs_init_and_stops_with_sigint() {
        let (_t, c) = guest(&[("apps/init/style", "plain\n")]);
        let i = init_commands(&c).unwrap();
        assert_eq!(i.start, ["/sbin/init"]);
        assert!(!i.reaper);
        assert_eq!(i.stop, None);
        assert_eq!(i.stop_signal, libc::SIGINT);
        assert_eq!(i.prepare, Prepare::Plain);
    }

    #[test]
    fn cmd_files_override_the_style() {
        let (_t, c) = guest(&[
            ("apps/init/style", "plain\n"),
            ("apps/init/cmd.start", "/bin/sh\n-c\nsleep 1\n"),
        ]);
        assert_eq!(
            init_commands(&c).unwrap().start,
            ["/bin/sh", "-c", "sleep 1"]
        );
    }

    #[test]
    fn default_mounts_and_plan() {
        let (_t, c) = guest(&[("apps/init/style", "plain\n")]);
        let m = mounts(&c);
        let targets: Vec<&str> = m.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, ["/proc", "/tmp", "/dev/pts"]);
        let p = start_plan(&c, &GuestCgroup::default()).unwrap();
        assert!(p.time_ns, "virt_uptime is a default flag");
        assert_eq!(p.nodename.as_deref(), Some("g"));
        assert_eq!(p.env, ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"]);
        assert_eq!(p.confinement.bcaps, names::BCAPS_SECURE);
        assert_eq!(p.mtab.as_deref(), Some(DEFAULT_MTAB));
    }

    #[test]
    fn a_32bit_machine_is_a_personality() {
        let (_t, c) = guest(&[("uts/machine", "i686\n")]);
        assert_eq!(personality(&c), Some(PER_LINUX32));
        let (_t, c) = guest(&[]);
        assert_eq!(personality(&c), None);
    }

    #[test]
    fn fstab_lines_keep_their_origin_and_skip_root() {
        let (_t, c) = guest(&[(
            "fstab",
            "/dev/x / ext4 defaults 0 0\nnone /proc proc defaults 0 0\n",
        )]);
        let m = mounts(&c);
        assert_eq!(m.len(), 1);
        assert!(m[0].origin.ends_with("/g/fstab:2"), "{}", m[0].origin);
    }

    #[test]
    fn a_user_namespace_guests_own_mounts_get_its_ids() {
        let spec = |fstype: &str, opts: &[&str]| MountSpec {
            source: "none".into(),
            target: "/x".into(),
            fstype: fstype.into(),
            options: opts.iter().map(|s| s.to_string()).collect(),
            origin: "t".into(),
        };
        let mut m = vec![
            spec("devpts", &["gid=5", "mode=620"]),
            spec("tmpfs", &["size=16m", "mode=1777"]),
            spec("tmpfs", &["uid=1000", "gid=70000"]),
            spec("proc", &["defaults"]),
            spec("none", &["bind", "uid=3"]),
        ];
        shift_mount_ids(&mut m, 524288);
        assert_eq!(m[0].options, ["gid=524293", "mode=620"]);
        assert_eq!(
            m[1].options,
            ["size=16m", "mode=1777", "uid=524288", "gid=524288"]
        );
        assert_eq!(m[2].options, ["uid=525288", "gid=70000"]);
        assert_eq!(m[3].options, ["defaults"]);
        assert_eq!(m[4].options, ["bind", "uid=3"]);
    }

    #[test]
    fn systemd_in_a_user_namespace_gets_sys_admin_and_its_namespaces() {
        let (_t, c) = crate::config::test_guest(&[("apps/init/style", "plain\n")]);
        let layout = crate::isolate::cgroup::Layout::parse(
            "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            "0::/\n",
        );
        let mut p = start_plan(&c, &layout.guest("vservers", "g")).unwrap();
        assert_eq!(p.confinement.bcaps & (1 << 21), 0);
        userns_systemd(&mut p);
        assert_ne!(p.confinement.bcaps & (1 << 21), 0);
        assert_eq!(p.confinement.umask, 0x7c02_0000);
    }
}
