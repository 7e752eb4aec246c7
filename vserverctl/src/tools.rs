//! util-vserver's programs beside `vserver` (docs/compat.md): vps, vkill, vwait, vserver-info,
//! vlimit, vsched, vuname, start-vservers and the package-manager wrappers (vapt-get, vrpm,
//! vyum, vemerge, vurpm, vpkg). Installed as links to vserverctl, like `vserver`; each keeps
//! util-vserver's options, output and exit codes where a script could depend on them, and does
//! its work through the daemon's varlink calls.

use std::io::Write;
use std::path::PathBuf;

use futures_util::{pin_mut, StreamExt};
use proto::client::ManagerProxy;
use proto::{GuestList, GuestState, ManagerError};

use crate::exit::Failure;

type Conn = zlink::tokio::unix::Connection;

/// The programs served here, by the name vserverctl is called by.
pub const NAMES: &[&str] = &[
    "vps",
    "vkill",
    "vwait",
    "vserver-info",
    "vlimit",
    "vsched",
    "vuname",
    "start-vservers",
    "vapt-get",
    "vrpm",
    "vyum",
    "vemerge",
    "vurpm",
    "vpkg",
];

fn socket() -> PathBuf {
    std::env::var_os("VSERVERD_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(proto::DEFAULT_SOCKET))
}

async fn connect() -> Result<Conn, Failure> {
    let s = socket();
    zlink::tokio::unix::connect(&s)
        .await
        .map_err(|e| Failure::Unreachable(s, e.to_string()))
}

/// Runs program `prog` with `args`; returns its exit code.
pub async fn run(prog: &str, args: &[String]) -> u8 {
    let r = match prog {
        "vps" => vps(args).await,
        "vkill" => vkill(args).await,
        "vwait" => vwait(args).await,
        "vserver-info" => info(args).await,
        "vlimit" => vlimit(args).await,
        "vsched" => vsched(args).await,
        "vuname" => vuname(args).await,
        "start-vservers" => start_vservers(args).await,
        "vpkg" => vpkg(args).await,
        other => something(other, args).await,
    };
    match r {
        Ok(code) => code,
        Err((code, f)) => {
            eprintln!("{prog}: {f}");
            code
        }
    }
}

/// A failure and the exit code the program uses for it.
type Res = Result<u8, (u8, Failure)>;

fn usage(code: u8, text: impl Into<String>) -> Res {
    eprintln!("{}", text.into());
    Ok(code)
}

/// Tags a failure with the program's error exit code.
fn at(code: u8) -> impl Fn(Failure) -> (u8, Failure) {
    move |f| (code, f)
}

/// `zlink::Result<Result<T, ManagerError>>` → Result<T, Failure>.
fn flat<T>(r: zlink::Result<Result<T, ManagerError>>) -> Result<T, Failure> {
    Ok(r??)
}

/// A guest named by util-vserver's ways: its name, its config folder's path, or a context id
/// of a configured guest.
fn resolve(list: &GuestList, arg: &str) -> Option<String> {
    let arg = arg.trim_end_matches('/');
    let base = arg.rsplit('/').next().unwrap_or(arg);
    if let Some(g) = list.guests.iter().find(|g| g.name == base) {
        return Some(g.name.clone());
    }
    let ctx: u32 = arg.parse().ok()?;
    list.guests
        .iter()
        .find(|g| g.context == Some(ctx))
        .map(|g| g.name.clone())
}

// ----------------------------------------------------------------------------------------------
// vps

/// vps's context column: the id right-aligned in 5, a blank, the name; 20 wide in all.
fn context_cell(ctx: u32, name: &str) -> String {
    let cell = format!("{ctx:>5} {name}");
    if cell.len() < 20 {
        format!("{cell:<20}")
    } else {
        format!("{cell} ")
    }
}

/// Inserts vps's CONTEXT column after ps's PID column. `of(pid)` gives a guest process's
/// context and guest name; other processes are the host's (0, MAIN).
pub fn vps_table(ps: &[u8], of: &dyn Fn(u32) -> Option<(u32, String)>) -> Result<Vec<u8>, String> {
    let mut lines = ps.split(|b| *b == b'\n');
    let header = lines.next().unwrap_or_default();
    let pos = header
        .windows(3)
        .position(|w| w == b"PID")
        .ok_or("Failed to parse ps-output")?;
    let cut = (pos + 4).min(header.len());
    let mut out = Vec::with_capacity(ps.len() * 2);
    out.extend_from_slice(&header[..cut]);
    out.extend_from_slice(format!("{:<20}", "CONTEXT").as_bytes());
    out.extend_from_slice(&header[cut..]);
    out.push(b'\n');
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let c = cut.min(line.len());
        // The pid: the digits that end at the PID column (ps right-aligns it).
        let head = &line[..c];
        let end = head.iter().rposition(|b| b.is_ascii_digit()).map(|i| i + 1);
        let pid = end.and_then(|e| {
            let start = head[..e]
                .iter()
                .rposition(|b| !b.is_ascii_digit())
                .map_or(0, |i| i + 1);
            std::str::from_utf8(&head[start..e])
                .ok()?
                .parse::<u32>()
                .ok()
        });
        let (ctx, name) = match pid {
            Some(p) => of(p).unwrap_or((0, "MAIN".into())),
            None => (0, "MAIN".into()),
        };
        out.extend_from_slice(head);
        out.extend_from_slice(context_cell(ctx, &name).as_bytes());
        out.extend_from_slice(&line[c..]);
        out.push(b'\n');
    }
    Ok(out)
}

async fn vps(args: &[String]) -> Res {
    if args.first().map(String::as_str) == Some("--help") {
        println!("Usage:  vps <ps-opts>*");
        return Ok(0);
    }
    // ps runs here, as the caller, with the caller's own view of /proc.
    let out = tokio::process::Command::new("ps")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .map_err(|e| (254, Failure::Protocol(format!("running ps: {e}"))))?;
    let mut conn = connect().await.map_err(at(254))?;
    let procs = flat(conn.processes().await).map_err(at(254))?;
    let map: std::collections::HashMap<u32, (u32, String)> = procs
        .processes
        .into_iter()
        .map(|p| (p.pid, (p.context, p.name)))
        .collect();
    let table = vps_table(&out.stdout, &|pid| map.get(&pid).cloned())
        .map_err(|e| (254, Failure::Protocol(e)))?;
    let _ = std::io::stdout().write_all(&table);
    Ok(match out.status.code() {
        Some(c) => c.clamp(0, 255) as u8,
        None => 254,
    })
}

// ----------------------------------------------------------------------------------------------
// vkill

/// A signal by number, name or SIG-name (util-vserver's vkill table, and the rest by name).
pub fn signal_of(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return (0..=64).contains(&n).then_some(n);
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    nix::sys::signal::Signal::iterator()
        .find(|sig| sig.as_str().strip_prefix("SIG") == Some(name))
        .map(|sig| sig as i64)
}

async fn vkill(args: &[String]) -> Res {
    const USAGE: &str = "Usage:  vkill [--xid|-c <xid>] [-s <signal>] [--] <pid>*";
    let (mut xid, mut sig, mut pids) = (None::<String>, 15i64, Vec::new());
    let mut it = args.iter();
    let mut rest = false;
    while let Some(a) = it.next() {
        if rest || !a.starts_with('-') || a == "-" {
            pids.push(a.clone());
            continue;
        }
        match a.as_str() {
            "--help" => return usage(0, USAGE),
            "--" => rest = true,
            "-c" | "--xid" => xid = it.next().cloned(),
            "-s" => match it.next().and_then(|s| signal_of(s)) {
                Some(s) => sig = s,
                None => return usage(1, "Invalid signal specified"),
            },
            _ => {
                return usage(
                    1,
                    format!("Try 'vkill --help' for more information.\n{USAGE}"),
                )
            }
        }
    }
    if xid.is_none() && pids.is_empty() {
        return usage(1, "No pid specified");
    }
    let mut nums = Vec::new();
    for p in &pids {
        match p.parse::<i64>() {
            Ok(n) if n >= 0 => nums.push(n),
            _ => return usage(1, format!("vkill: '{p}' is not a number")),
        }
    }
    let mut conn = connect().await.map_err(at(1))?;
    // Which guest each pid is in: the --xid one, or where the daemon says it is.
    let mut by_guest: Vec<(String, Vec<i64>)> = Vec::new();
    if let Some(x) = xid {
        let list = flat(conn.list().await).map_err(at(1))?;
        let Some(name) = resolve(&list, &x) else {
            return usage(1, format!("vkill: no vserver with context or name '{x}'"));
        };
        // pid 0 (or none): every process of the guest, as util-vserver's vc_ctx_kill.
        let pids = nums.into_iter().filter(|p| *p != 0).collect();
        by_guest.push((name, pids));
    } else {
        let procs = flat(conn.processes().await).map_err(at(1))?;
        let mut fail = 0u8;
        for n in nums {
            match procs.processes.iter().find(|p| i64::from(p.pid) == n) {
                Some(p) => match by_guest.iter_mut().find(|(g, _)| *g == p.name) {
                    Some((_, v)) => v.push(n),
                    None => by_guest.push((p.name.clone(), vec![n])),
                },
                None => {
                    eprintln!("vkill: {n}: not a process of a running vserver");
                    fail = 1;
                }
            }
        }
        if fail != 0 && by_guest.is_empty() {
            return Ok(1);
        }
    }
    let mut code = 0;
    for (name, pids) in by_guest {
        if let Err(f) = flat(conn.kill(&name, &pids, sig).await) {
            eprintln!("vkill: {f}");
            code = 1;
        }
    }
    Ok(code)
}

// ----------------------------------------------------------------------------------------------
// vwait

/// Writes vwait's status line to the caller's fd, as util-vserver's --status-fd did.
fn write_status(fd: Option<i32>, line: &str) {
    let Some(fd) = fd else { return };
    // A dup, so closing ours leaves the caller's fd as it was.
    // SAFETY: fd is a number the caller gave; BorrowedFd lives only for this dup, which fails
    // cleanly (EBADF) if it is not open.
    let dup = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned();
    if let Ok(owned) = dup {
        let mut f = std::fs::File::from(owned);
        let _ = writeln!(f, "{line}");
    }
}

async fn vwait(args: &[String]) -> Res {
    const USAGE: &str =
        "Usage:  vwait [--timeout <timeout>] [--terminate] [--status-fd <fd>] [--] <xid>";
    let (mut timeout, mut terminate, mut status_fd) = (None::<u64>, false, None::<i32>);
    let mut targets = Vec::new();
    let mut it = args.iter();
    let mut rest = false;
    while let Some(a) = it.next() {
        if rest || !a.starts_with("--") {
            targets.push(a.clone());
            continue;
        }
        let (opt, inline) = match a.split_once('=') {
            Some((o, v)) => (o, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        let mut val = || inline.clone().or_else(|| it.next().cloned());
        match opt {
            "--help" => return usage(0, USAGE),
            "--" => rest = true,
            "--terminate" => terminate = true,
            // atoi: a bad number is 0, no timeout.
            "--timeout" => timeout = val().and_then(|v| v.parse().ok()).filter(|t| *t > 0),
            "--status-fd" => status_fd = val().and_then(|v| v.parse().ok()),
            _ => {
                return usage(
                    1,
                    format!("Try 'vwait --help' for more information.\n{USAGE}"),
                )
            }
        }
    }
    match targets.len() {
        0 => {
            return usage(
                1,
                "vwait: no context specified; try '--help' for more information",
            )
        }
        1 => {}
        _ => {
            return usage(
                1,
                "vwait: can not wait for more than one context; try '--help' for more information",
            )
        }
    }
    let mut conn = connect().await.map_err(at(1))?;
    let list = flat(conn.list().await).map_err(at(1))?;
    let Some(name) = resolve(&list, &targets[0]) else {
        return usage(
            1,
            "vwait: invalid context specified; try '--help' for more information",
        );
    };
    // Subscribe first, then look: a stop between the two is in the stream.
    let mut events_conn = connect().await.map_err(at(1))?;
    let events = events_conn.events().await.map_err(|e| (1, e.into()))?;
    pin_mut!(events);
    let st = flat(conn.status(&name).await).map_err(at(1))?;
    let stopped = |s: GuestState| matches!(s, GuestState::Stopped | GuestState::Failed);
    if stopped(st.state) {
        // As vc_wait_exit on a context that does not exist: ESRCH.
        eprintln!("vwait: vc_wait_exit(): No such process");
        write_status(status_fd, &format!("ERROR {}", libc::ESRCH));
        return Ok(127);
    }
    let wait = async {
        while let Some(ev) = events.next().await {
            let Ok(Ok(ev)) = ev else { return false };
            if ev.kind == "lost" {
                // Events were dropped: ask again.
                if let Ok(Ok(s)) = conn.status(&name).await {
                    if stopped(s.state) {
                        return true;
                    }
                }
            } else if ev.name == name && (ev.kind == "stopped" || ev.kind == "failed") {
                return true;
            }
        }
        false
    };
    let finished = match timeout {
        Some(t) => tokio::time::timeout(std::time::Duration::from_secs(t), wait)
            .await
            .ok(),
        None => Some(wait.await),
    };
    match finished {
        Some(true) => {
            write_status(status_fd, "FINISHED 0");
            Ok(0)
        }
        Some(false) => {
            eprintln!("vwait: the daemon closed the event stream");
            write_status(status_fd, &format!("ERROR {}", libc::EIO));
            Ok(127)
        }
        None if terminate => {
            // util-vserver killed every process of the context; the daemon's stop does that
            // (after the init style's own stop) and takes the guest down cleanly.
            let mut c = connect().await.map_err(at(1))?;
            let s = c.stop(&name, None).await.map_err(|e| (1, e.into()))?;
            pin_mut!(s);
            while let Some(r) = s.next().await {
                if let Err(e) = flat(r) {
                    // Not stopped (a read-group caller, a failed stop): no KILLED claimed.
                    eprintln!("vwait: stopping {name}: {e}");
                    write_status(status_fd, &format!("ERROR {}", libc::EPERM));
                    return Ok(127);
                }
            }
            write_status(status_fd, "KILLED");
            Ok(1)
        }
        None => {
            write_status(status_fd, "TIMEOUT");
            Ok(2)
        }
    }
}

// ----------------------------------------------------------------------------------------------
// vserver-info

const TAGS: &[&str] = &[
    "CONTEXT", "ID", "RUNNING", "VDIR", "NAME", "CFGDIR", "APPDIR", "INITPID", "XID", "XIDTYPE",
];

/// Tags of util-vserver's vserver-info that ask the Linux-VServer kernel for what a mainline
/// kernel does not have.
const NOT_APPLICABLE: &[&str] = &[
    "INITPID_PID",
    "APIVER",
    "UTS",
    "SYSINFO",
    "FEATURE",
    "PXID",
    "CANONIFY",
    "VERIFYCAP",
    "VERIFYPROC",
    "NID",
    "TAG",
];

fn str2bool(s: &str) -> bool {
    s.parse::<i64>().is_ok_and(|n| n != 0)
        || s.starts_with(['y', 'Y', 't', 'T'])
        || s.eq_ignore_ascii_case("true")
}

async fn info(args: &[String]) -> Res {
    const USAGE: &str = "Usage:  vserver-info [-ql] <vserver>|<pid>|<context> <tag>";
    let mut quiet = false;
    let mut rest: Vec<&str> = Vec::new();
    for a in args {
        match a.as_str() {
            "--help" => return usage(0, USAGE),
            "-l" => {
                println!("Valid tags are: {}", TAGS.join(", "));
                return Ok(0);
            }
            "-q" => quiet = true,
            "-ql" | "-lq" => {
                println!("Valid tags are: {}", TAGS.join(", "));
                return Ok(0);
            }
            s if s.starts_with('-') && rest.is_empty() => {
                return usage(1, "Try 'vserver-info --help' for more information.")
            }
            s => rest.push(s),
        }
    }
    if rest.len() < 2 {
        return usage(
            0,
            format!("{USAGE}\nAssumed 'SYSINFO' as no other option given; try '--help' for more information."),
        );
    }
    let (target, tag, extra) = (rest[0], rest[1], &rest[2..]);
    if NOT_APPLICABLE.contains(&tag) {
        return usage(
            1,
            format!("vserver-info: tag '{tag}' asks the Linux-VServer kernel; not applicable on a mainline kernel"),
        );
    }
    if !TAGS.contains(&tag) {
        return usage(1, "Unknown tag; use '-l' to get list of valid tags");
    }
    let mut conn = connect().await.map_err(at(1))?;
    let list = flat(conn.list().await).map_err(at(1))?;
    let answer: Option<String> = match tag {
        "XID" => {
            // The context of a pid: a guest's, or 0 (the host).
            let Ok(pid) = target.parse::<u32>() else {
                return Ok(1);
            };
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                eprintln!("vc_get_task_xid(): No such process");
                return Ok(1);
            }
            let procs = flat(conn.processes().await).map_err(at(1))?;
            Some(
                procs
                    .processes
                    .iter()
                    .find(|p| p.pid == pid)
                    .map_or(0, |p| p.context)
                    .to_string(),
            )
        }
        "XIDTYPE" => {
            let t = match target.parse::<u32>() {
                Ok(0) => "main",
                Ok(1) => "watch",
                _ => match resolve(&list, target) {
                    Some(_) => "static",
                    None => "invalid",
                },
            };
            (extra.is_empty() || extra.iter().any(|e| e.eq_ignore_ascii_case(t)))
                .then(|| t.to_string())
        }
        _ => match resolve(&list, target) {
            None => None,
            Some(name) => {
                let st = flat(conn.status(&name).await).map_err(at(1))?;
                let running = st.state == GuestState::Running;
                match tag {
                    "RUNNING" => running.then(|| "1".to_string()),
                    "VDIR" => (!st.vdir.is_empty()).then(|| st.vdir.clone()),
                    "CFGDIR" => Some(st.config_dir.clone()),
                    "APPDIR" => Some(match extra.first() {
                        Some(app) => format!("{}/apps/{app}", st.config_dir),
                        None => format!("{}/apps/", st.config_dir),
                    }),
                    "NAME" => {
                        let display = flat(conn.validate(&name).await)
                            .ok()
                            .and_then(|v| v.config.display_name);
                        Some(display.unwrap_or(name.clone()))
                    }
                    "ID" => Some(name.clone()),
                    "CONTEXT" => {
                        let assigned_too = extra.first().is_none_or(|a| str2bool(a));
                        if running || assigned_too {
                            st.context.map(|c| c.to_string())
                        } else {
                            None
                        }
                    }
                    "INITPID" => st.init_pid.map(|p| p.to_string()),
                    _ => None,
                }
            }
        },
    };
    match answer {
        Some(a) => {
            if !quiet {
                println!("{a}");
            }
            Ok(0)
        }
        None => Ok(1),
    }
}

// ----------------------------------------------------------------------------------------------
// vlimit, vsched

/// A limit value as util-vserver parsed it: a number, or inf.
fn limit_value(s: &str) -> Option<Option<u64>> {
    match s {
        "inf" | "INF" | "-1" => Some(None),
        _ => s.parse::<u64>().ok().map(Some),
    }
}

async fn set_limits(name: &str, limits: proto::Limits) -> Result<(), Failure> {
    let mut conn = connect().await?;
    flat(conn.set_limits(name, &limits, false).await).map(|_| ())
}

async fn name_of_xid(x: &str) -> Result<Option<String>, Failure> {
    let mut conn = connect().await?;
    let list = flat(conn.list().await)?;
    Ok(resolve(&list, x))
}

async fn vlimit(args: &[String]) -> Res {
    const USAGE: &str = "Usage:  vlimit [--xid|-c <xid>] [-H] [--nproc <value>] [--rss <pages>]";
    let mut xid = None::<String>;
    let mut limits = proto::Limits {
        memory: None,
        cpus: None,
        pids: None,
        ..Default::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--help" => return usage(0, USAGE),
            "-c" | "--xid" => xid = Some(val()),
            // The hard limit is what a cgroup knob holds; it is util-vserver's default too.
            "-H" => {}
            "-M" | "-S" => {
                return usage(
                    255,
                    format!("vlimit: {a}: minimum and soft limits have no cgroup knob; only hard (-H) limits are mapped"),
                )
            }
            "--nproc" | "--rss" => {
                let v = val();
                let Some(lim) = limit_value(&v) else {
                    return usage(255, format!("Can not parse limit '{v}'"));
                };
                let Some(n) = lim else {
                    return usage(
                        255,
                        format!("vlimit: {a} inf: lifting a limit live is not supported; remove it from the guest's config and restart"),
                    );
                };
                if a == "--nproc" {
                    // pids.max
                    limits.pids = Some(n);
                } else {
                    // memory.max (memory.limit_in_bytes on v1): rss is counted in pages.
                    // SAFETY: sysconf cannot fail for _SC_PAGESIZE.
                    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
                    limits.memory = Some(n.saturating_mul(page));
                }
            }
            "-a" | "--all" | "-n" | "-d" | "--dir" | "--missingok" => {
                return usage(
                    255,
                    format!("vlimit: {a} is not supported; the guest's limits are its cgroup files (vserverctl status, /sys/fs/cgroup)"),
                )
            }
            other if other.starts_with("--") => {
                return usage(
                    255,
                    format!("vlimit: {other}: no cgroup knob for this limit on a mainline kernel (mapped: --nproc → pids.max, --rss → memory.max)"),
                )
            }
            _ => {
                return usage(
                    255,
                    format!("vlimit: running a program under the limits is not supported\n{USAGE}"),
                )
            }
        }
    }
    let Some(x) = xid else {
        return usage(
            255,
            "vlimit: --xid is required (vserverd has no current context on the host)",
        );
    };
    let Some(name) = name_of_xid(&x).await.map_err(at(255))? else {
        return usage(
            255,
            format!("vlimit: no vserver with context or name '{x}'"),
        );
    };
    if limits.pids.is_none() && limits.memory.is_none() {
        return Ok(0);
    }
    set_limits(&name, limits).await.map_err(at(255))?;
    Ok(0)
}

async fn vsched(args: &[String]) -> Res {
    const USAGE: &str =
        "Usage:  vsched [--xid <xid>] --fill-rate <rate> --interval <interval> [--tokens* <n>]";
    let (mut xid, mut fill, mut interval) = (None::<String>, None::<u64>, None::<u64>);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (opt, inline) = match a.split_once('=') {
            Some((o, v)) => (o, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        let mut val = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .unwrap_or_default()
        };
        match opt {
            "--help" => return usage(0, USAGE),
            "--xid" | "-c" => xid = Some(val()),
            "--fill-rate" => fill = val().parse().ok(),
            "--interval" => interval = val().parse().ok(),
            // Token-bucket details without a CFS counterpart: cpu.max is quota/period alone.
            "--tokens" | "--tokens-min" | "--tokens-max" | "--prio-bias" | "--idle-time"
            | "--cpu-id" | "--bucket-id" => {
                let _ = val();
                eprintln!("vsched: {opt} has no cgroup knob on a mainline kernel; ignored");
            }
            "--force" | "--missingok" => {}
            _ => return usage(255, format!("vsched: {a} is not supported\n{USAGE}")),
        }
    }
    let Some(x) = xid else {
        return usage(255, "vsched: --xid is required");
    };
    let (Some(f), Some(i)) = (fill, interval.filter(|i| *i > 0)) else {
        return usage(
            255,
            "vsched: --fill-rate and --interval are both needed: cpu.max gets fill-rate/interval of a CPU",
        );
    };
    let Some(name) = name_of_xid(&x).await.map_err(at(255))? else {
        return usage(
            255,
            format!("vsched: no vserver with context or name '{x}'"),
        );
    };
    let limits = proto::Limits {
        memory: None,
        cpus: Some(f as f64 / i as f64),
        pids: None,
        ..Default::default()
    };
    set_limits(&name, limits).await.map_err(at(255))?;
    Ok(0)
}

// ----------------------------------------------------------------------------------------------
// vuname

async fn vuname(args: &[String]) -> Res {
    const USAGE: &str = "Usage:  vuname [-g] --xid <xid> <TAG>*\n    or  vuname -s --xid <xid> -t <TAG>=<VALUE>\n\n Possible values for TAG are:\n   context, sysname, nodename, release, version, machine, domainname";
    let (mut xid, mut set) = (None::<String>, false);
    let (mut dir, mut missingok) = (None::<String>, false);
    let (mut nodename, mut domainname) = (None::<String>, None::<String>);
    let mut get: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--help" => return usage(0, USAGE),
            "-x" | "--xid" => xid = it.next().cloned(),
            "-s" | "--set" => set = true,
            "-g" | "--get" => set = false,
            "-t" => {
                let t = it.next().cloned().unwrap_or_default();
                let (k, v) = t.split_once('=').unwrap_or((t.as_str(), ""));
                match k.to_ascii_lowercase().as_str() {
                    "nodename" => nodename = Some(v.to_string()),
                    "domainname" => domainname = Some(v.to_string()),
                    "context" | "sysname" | "release" | "version" | "machine" => {
                        return usage(
                            255,
                            format!("vuname: {k}: a mainline kernel keeps one value for every namespace; only nodename and domainname can be set"),
                        )
                    }
                    _ => return usage(255, format!("Tag '{k}' not recognized")),
                }
            }
            "--dir" => {
                dir = it.next().cloned();
                set = true;
            }
            "--missingok" => missingok = true,
            s if s.starts_with('-') => {
                return usage(255, "Try 'vuname --help' for more information.")
            }
            s => get.push(s.to_string()),
        }
    }
    let Some(x) = xid else {
        return usage(
            255,
            "No context specified; try '--help' for more information",
        );
    };
    let Some(name) = name_of_xid(&x).await.map_err(at(255))? else {
        return usage(
            255,
            format!("vuname: no vserver with context or name '{x}'"),
        );
    };
    if let Some(dir) = &dir {
        // A folder of TAG files, as a guest's uts/ (the admin's, read as the caller).
        let dir = std::path::Path::new(dir);
        if !dir.is_dir() {
            if missingok {
                return Ok(0);
            }
            return usage(
                255,
                format!(
                    "vuname: fstat('{}'): No such file or directory",
                    dir.display()
                ),
            );
        }
        let read = |tag: &str| {
            std::fs::read_to_string(dir.join(tag))
                .ok()
                .map(|v| v.trim_end_matches('\n').to_string())
        };
        nodename = read("nodename").or(nodename);
        domainname = read("domainname").or(domainname);
        for tag in ["context", "sysname", "release", "version", "machine"] {
            if dir.join(tag).exists() {
                eprintln!("vuname: {tag}: the kernel's on a mainline kernel; ignored");
            }
        }
        if nodename.is_none() && domainname.is_none() {
            return Ok(0);
        }
    }
    if set {
        if !get.is_empty() {
            return usage(
                255,
                "vuname: running a command after --set is not supported",
            );
        }
        let mut conn = connect().await.map_err(at(255))?;
        flat(
            conn.set_uts(&name, nodename.as_deref(), domainname.as_deref())
                .await,
        )
        .map_err(at(255))?;
        return Ok(0);
    }
    // Reading: the guest's own uname, from inside it.
    let fields = [
        ("context", "echo ???"),
        ("sysname", "uname -s"),
        ("nodename", "uname -n"),
        ("release", "uname -r"),
        ("version", "uname -v"),
        ("machine", "uname -m"),
        ("domainname", "cat /proc/sys/kernel/domainname"),
    ];
    let wanted: Vec<&str> = if get.is_empty() {
        fields.iter().map(|(k, _)| *k).collect()
    } else {
        let mut v = Vec::new();
        for g in &get {
            let g = g.to_ascii_lowercase();
            match fields.iter().find(|(k, _)| *k == g) {
                Some((k, _)) => v.push(*k),
                None => return usage(255, format!("Tag '{g}' not recognized")),
            }
        }
        v
    };
    let script: Vec<&str> = wanted
        .iter()
        .map(|w| {
            fields
                .iter()
                .find(|(k, _)| k == w)
                .map_or("echo ???", |(_, c)| *c)
        })
        .collect();
    // One line, the values separated by blanks, as util-vserver printed them.
    let cmd = format!("printf '%s\\n' \"$({})\"", script.join(") $("));
    let mut conn = connect().await.map_err(at(255))?;
    let argv = vec!["/bin/sh".to_string(), "-c".to_string(), cmd];
    let env = crate::guestenv::build(std::iter::empty(), &[]);
    let s = conn
        .exec(&name, &argv, &env, false, None)
        .await
        .map_err(|e| (255, e.into()))?;
    crate::session::run(s, false).await.map_err(at(255))
}

// ----------------------------------------------------------------------------------------------
// start-vservers

async fn start_vservers(args: &[String]) -> Res {
    const USAGE: &str = "Usage: start-vservers [-m <MARK>] [-j <NUM>] [--start|--stop] [--all|--marked|--unmarked|--running|--stopped] -- <name>+";
    let (mut marks, mut all, mut jobs, mut stop) = (Vec::<String>::new(), false, 99usize, false);
    let (mut running_only, mut stopped_only, mut unmarked) = (false, false, false);
    let mut names: Vec<String> = Vec::new();
    let mut it = args.iter();
    let mut rest = false;
    while let Some(a) = it.next() {
        if rest {
            names.push(a.clone());
            continue;
        }
        match a.as_str() {
            "--help" => return usage(0, USAGE),
            "--" => rest = true,
            "-m" | "--mark" => marks.extend(it.next().cloned()),
            "-j" => {
                jobs = it
                    .next()
                    .and_then(|j| j.parse().ok())
                    .filter(|j| *j > 0)
                    .unwrap_or(99)
            }
            "-c" => {
                let _ = it.next();
                return usage(
                    1,
                    "start-vservers: -c: the config root is the daemon's (vserverd --config-root)",
                );
            }
            "--start" => stop = false,
            "--stop" => stop = true,
            "--all" => all = true,
            "--marked" => {}
            "--unmarked" => unmarked = true,
            "--running" => running_only = true,
            "--stopped" => stopped_only = true,
            "--test" | "--debug" => {}
            s if !s.starts_with('-') => names.push(s.to_string()),
            _ => return usage(1, format!("start-vservers: unknown option '{a}'\n{USAGE}")),
        }
    }
    let mut conn = connect().await.map_err(at(1))?;
    let list = flat(conn.list().await).map_err(at(1))?;
    let mut chosen: Vec<String> = Vec::new();
    for g in list.guests.iter() {
        let by_flag = (all && !g.disabled)
            || (!marks.is_empty() && g.mark.iter().any(|m| marks.contains(m)) && !g.disabled)
            || (unmarked && g.mark.is_empty());
        let state_ok = (!running_only || g.state == GuestState::Running)
            && (!stopped_only || g.state != GuestState::Running);
        if by_flag && state_ok {
            chosen.push(g.name.clone());
        }
    }
    for n in names {
        if list.guests.iter().any(|g| g.name == n) {
            chosen.push(n);
        } else {
            eprintln!("Vserver '{n}' does not exist; skipping it...");
        }
    }
    chosen.sort();
    chosen.dedup();
    // util-vserver's result: 0 when nothing needed doing or all went well, 1 when every
    // attempt failed, 2 when some failed.
    let (mut attempted, mut ok) = (0usize, 0usize);
    let todo: Vec<String> = chosen
        .into_iter()
        .filter(|n| {
            let running = list
                .guests
                .iter()
                .any(|g| &g.name == n && g.state == GuestState::Running);
            running == stop
        })
        .collect();
    let results = futures_util::stream::iter(todo.into_iter().map(|name| async move {
        let mut c = connect().await?;
        let mut s = if stop {
            c.stop(&name, None).await?.boxed_local()
        } else {
            c.start(&name, None).await?.boxed_local()
        };
        let mut r: Result<(), Failure> = Ok(());
        while let Some(p) = s.next().await {
            match flat(p) {
                Ok(_) => {}
                // Started meanwhile as another one's dependency: done.
                Err(Failure::Daemon(ManagerError::AlreadyRunning { .. })) if !stop => {}
                Err(e) => r = Err(e),
            }
        }
        r.map_err(|e| {
            eprintln!("start-vservers: {name}: {e}");
            e
        })
    }))
    .buffer_unordered(jobs)
    .collect::<Vec<_>>()
    .await;
    for r in results {
        attempted += 1;
        if r.is_ok() {
            ok += 1;
        }
    }
    Ok(if attempted == 0 || ok == attempted {
        0
    } else if ok == 0 {
        1
    } else {
        2
    })
}

// ----------------------------------------------------------------------------------------------
// vapt-get, vrpm, vyum, vemerge, vurpm, vpkg

/// The package manager each wrapper runs inside the guest.
fn manager_of(prog: &str) -> Option<&'static str> {
    Some(match prog {
        "vapt-get" => "apt-get",
        "vrpm" => "rpm",
        "vyum" => "yum",
        "vemerge" => "emerge",
        "vurpm" => "urpmi",
        _ => return None,
    })
}

/// Runs `argv` in guest `name` (a pty when we run on a terminal); its exit code.
async fn exec_in(name: &str, argv: Vec<String>) -> Result<u8, Failure> {
    let tty = crate::compat::on_terminal();
    let env = crate::guestenv::build(std::env::vars(), &[]);
    let mut conn = connect().await?;
    let s = conn.exec(name, &argv, &env, tty, None).await?;
    crate::session::run(s, tty).await
}

/// util-vserver's vsomething: `PROG [-q] <vserver>* [--all] -- <params>+`, the command run
/// in each guest in turn; the exit code is the last guest's (255 with none).
async fn something(prog: &str, args: &[String]) -> Res {
    let Some(cmd) = manager_of(prog) else {
        return usage(1, format!("vserverctl: unknown program name '{prog}'"));
    };
    let usage_text = format!("Usage: {prog} [--quiet|-q] <vserver-name>* [--all] -- <params>+");
    let (mut quiet, mut all) = (false, false);
    let mut names: Vec<String> = Vec::new();
    let mut it = args.iter();
    let mut params: Vec<String> = Vec::new();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--help" => return usage(0, usage_text),
            "-q" | "--quiet" => quiet = true,
            "--debug" => {}
            "--all" => all = true,
            "--" => {
                params = it.cloned().collect();
                break;
            }
            s => names.push(s.to_string()),
        }
    }
    if all {
        let mut conn = connect().await.map_err(at(1))?;
        let list = flat(conn.list().await).map_err(at(1))?;
        names.extend(
            list.guests
                .iter()
                .filter(|g| g.state == GuestState::Running)
                .map(|g| g.name.clone()),
        );
    }
    if names.is_empty() {
        eprintln!("{prog}: No vservers specified");
        return Ok(255);
    }
    let quiet = quiet || names.len() == 1;
    let mut res = 255u8;
    for name in &names {
        if !quiet {
            println!("{cmd}: operating on vserver {name}");
        }
        let argv = std::iter::once(cmd.to_string())
            .chain(params.iter().cloned())
            .collect();
        res = match exec_in(name, argv).await {
            Ok(c) => c,
            Err(f) => {
                eprintln!("{prog}: {f}");
                f.code()
            }
        };
        if res != 0 && !quiet {
            println!("{cmd} failed on vserver '{name}' with errorcode {res}");
        }
        if !quiet {
            println!();
        }
    }
    Ok(res)
}

/// `vpkg <vserver> <tag>`: the guest's own package manager, whichever it has. Tags as
/// util-vserver's: install/remove/get-conffiles/is-installed pass to it; the rest run it with
/// the arguments as they are.
async fn vpkg(args: &[String]) -> Res {
    const USAGE: &str = "Usage: vpkg <vserver> <tag> [<args>*]";
    if args.len() < 2 || args[0] == "--help" {
        return usage(
            if args.first().is_some_and(|a| a == "--help") {
                0
            } else {
                1
            },
            USAGE,
        );
    }
    let name = &args[0];
    // Found by the guest's shell, inside the guest: the first package manager it has.
    let script = r#"
for m in apt-get dnf yum urpmi emerge; do
  if command -v "$m" >/dev/null 2>&1; then
    case "$1" in
      install) shift; case "$m" in apt-get|dnf|yum) exec "$m" -y install "$@";; urpmi) exec urpmi --auto "$@";; emerge) exec emerge "$@";; esac;;
      remove) shift; case "$m" in apt-get|dnf|yum) exec "$m" -y remove "$@";; urpmi) exec urpme --auto "$@";; emerge) exec emerge --unmerge "$@";; esac;;
      *) exec "$m" "$@";;
    esac
  fi
done
echo "vpkg: no package manager (apt-get, dnf, yum, urpmi, emerge) in this vserver" >&2
exit 1
"#;
    let argv = ["/bin/sh", "-c", script, "vpkg"]
        .iter()
        .map(|s| s.to_string())
        .chain(args[1..].iter().cloned())
        .collect();
    exec_in(name, argv).await.map_err(|f| (f.code(), f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vps_inserts_the_context_column_after_pid() {
        let ps = b"    PID TTY          TIME CMD\n      1 ?        00:00:01 init\n   4242 pts/0    00:00:00 sh\n";
        let t = vps_table(ps, &|p| (p == 4242).then(|| (40000, "web".to_string()))).unwrap();
        let t = String::from_utf8(t).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "    PID CONTEXT             TTY          TIME CMD"
        );
        assert_eq!(
            lines[1],
            "      1     0 MAIN          ?        00:00:01 init"
        );
        assert_eq!(lines[2], "   4242 40000 web           pts/0    00:00:00 sh");
        assert!(vps_table(b"garbage\n", &|_| None).is_err());
    }

    #[test]
    fn signals_by_number_and_name() {
        assert_eq!(signal_of("9"), Some(9));
        assert_eq!(signal_of("HUP"), Some(1));
        assert_eq!(signal_of("SIGCHLD"), Some(17));
        assert_eq!(signal_of("x"), None);
        assert_eq!(signal_of("1 0"), None);
    }

    #[test]
    fn guests_resolve_by_name_path_and_context() {
        let list = GuestList {
            guests: vec![proto::GuestSummary {
                name: "web".into(),
                context: Some(40000),
                state: GuestState::Stopped,
                mark: vec![],
                depends: vec![],
                disabled: false,
                config_error: None,
            }]
            .into(),
        };
        assert_eq!(resolve(&list, "web").as_deref(), Some("web"));
        assert_eq!(resolve(&list, "/etc/vservers/web/").as_deref(), Some("web"));
        assert_eq!(resolve(&list, "40000").as_deref(), Some("web"));
        assert_eq!(resolve(&list, "40001"), None);
    }
}
