//! The crash matrix (docs/crash.md): the daemon killed (SIGKILL) or a step failing at every
//! named point of a start, then a fresh daemon; the guest must be fully running and adopted
//! (exec and stop work) or fully absent (no process, cgroup, mount, netns, veth, run state or
//! journal left), and a next start must succeed. Faults are injected through the daemon's
//! debug-build hook (vserverd/src/fault.rs, VSERVERD_FAULT=STEP=ACTION).

use harness::{GuestBuilder, TestDaemon};

/// The points of a start, in order (vserverd/src/guest/start.rs).
const START_STEPS: &[&str] = &[
    "start.journal",
    "start.addresses",
    "start.network",
    "start.cgroup",
    "start.bpf",
    "start.limits",
    "start.pre-start",
    "start.console",
    // In the stage: `kill` there is SIGKILL of the stage (or of the guest's PID 1 it made,
    // before it execs init), not of the daemon.
    "stage.cgroups",
    "stage.namespaces",
    "stage.mounts",
    "stage.pivoted",
    "stage.confined",
    "start.spawned",
    "start.state",
    "start.post-start",
];

/// The full matrix (`VSERVERD_CRASH_FULL=1`, docs/crash.md): every point of a networked start
/// and every point of a restart. CI runs the reduced form: the points where the networked
/// start and the restart make or hand over something of their own.
fn full() -> bool {
    std::env::var_os("VSERVERD_CRASH_FULL").is_some_and(|v| v != "0" && !v.is_empty())
}

/// The points of a networked start the reduced matrix tries: before and after the network,
/// the cgroups, the spawn and the run state.
const NET_STEPS_REDUCED: &[&str] = &[
    "start.journal",
    "start.network",
    "start.cgroup",
    "start.spawned",
    "start.state",
];

fn prerequisites() -> bool {
    harness::require_busybox_guests()
        && harness::require(
            std::path::Path::new("/usr/bin/nsenter").exists(),
            "nsenter (util-linux)",
        )
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Nothing of `name` is left on the host.
fn nothing_left(d: &TestDaemon, name: &str, cell: &str) {
    for dir in d.cgroup_dirs(name) {
        assert!(!dir.exists(), "{cell}: cgroup {} left", dir.display());
    }
    for f in [format!("{name}.json"), format!("{name}.pending")] {
        let p = d.run_dir.join("guests").join(f);
        assert!(!p.exists(), "{cell}: {} left", p.display());
    }
    let root = d.dir.path().to_string_lossy().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    // The /proc server's mount (RUN_DIR/procfs) is shared by every guest; hostnet pins the
    // test's stand-in for the host's network.
    let left: Vec<&str> = mounts
        .lines()
        .filter(|l| {
            l.contains(&root)
                && !l.contains("/procfs ")
                && !l.contains("/hostnet ")
                && !l.contains("/run/bpf ")
                // A test's own loop file system on the vdir base.
                && l.split_whitespace().nth(4) != Some(&*d.vdir_base.to_string_lossy())
        })
        .collect();
    assert!(left.is_empty(), "{cell}: mounts left:\n{}", left.join("\n"));
    if d.netns.is_some() {
        let links = text(&d.in_host_net(&["ip", "-o", "link"]));
        assert!(
            links.lines().all(|l| l.contains(": lo:")),
            "{cell}: links left in the host's network:\n{links}"
        );
        let netns_dir = d.run_dir.join("netns");
        let pinned: Vec<_> = std::fs::read_dir(&netns_dir)
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(pinned.is_empty(), "{cell}: netns pins left: {pinned:?}");
        // A shared-stack guest's addresses and socket programs.
        let addrs = text(&d.in_host_net(&["ip", "-o", "addr"]));
        assert!(
            !addrs.contains("10.78.0.2"),
            "{cell}: address left:\n{addrs}"
        );
        let bpf = d.run_dir.join("bpf").join(name);
        assert!(
            !bpf.exists(),
            "{cell}: program pins left in {}",
            bpf.display()
        );
        // Nor its address in the host-wide lookup map (connections to it would be refused).
        let guests = vserverd::isolate::sockbpf::host_dir(&d.run_dir).join("vs_guests");
        if guests.exists() {
            let m = vserverd::sys::bpf::obj_get(&guests).unwrap();
            let key = "10.78.0.2"
                .parse::<std::net::Ipv4Addr>()
                .unwrap()
                .to_ipv6_mapped()
                .octets();
            let mut v = [0u8; 4];
            assert!(
                !vserverd::sys::bpf::map_lookup(&m, &key, &mut v).unwrap(),
                "{cell}: the address is left in {}",
                guests.display()
            );
        }
    }
}

/// The invariant after a fault and a fresh daemon, then a clean start and stop.
fn holds(d: &TestDaemon, name: &str, cell: &str) -> &'static str {
    let state = d.status(name)["state"].as_str().unwrap_or("").to_string();
    let outcome = match state.as_str() {
        "running" => {
            d.ctl_ok(&["exec", name, "--", "true"]);
            d.ctl_ok(&["stop", name]);
            "running, adopted"
        }
        "stopped" => "absent",
        other => panic!("{cell}: the guest is {other:?} after a fresh daemon"),
    };
    nothing_left(d, name, cell);
    d.ctl_ok(&["start", name]);
    d.ctl_ok(&["exec", name, "--", "true"]);
    d.ctl_ok(&["stop", name]);
    nothing_left(d, name, cell);
    outcome
}

#[derive(Clone, Copy, PartialEq)]
enum Net {
    None,
    Netns,
    Shared,
    /// No network of its own, in a user namespace (spaces/user): its extra point too.
    UserNs,
    /// interfaces/ in a network namespace its user namespace owns (spaces/user, netmode
    /// netns): the networked points and the user namespace's.
    UserNsNetns,
}

fn matrix(net: Net) {
    if !prerequisites() {
        return;
    }
    let with_net = !matches!(net, Net::None | Net::UserNs);
    let mut table = Vec::new();
    let mut steps = if with_net && !full() {
        NET_STEPS_REDUCED.to_vec()
    } else {
        START_STEPS.to_vec()
    };
    if matches!(net, Net::UserNs | Net::UserNsNetns) {
        // In the stage: the user namespace made and mapped, PID 1 cloned into its pid
        // namespace and waiting, the mounts not yet made.
        let at = steps
            .iter()
            .position(|s| *s == "stage.mounts" || *s == "start.spawned")
            .unwrap();
        steps.insert(at, "stage.userns");
    }
    for step in &steps {
        for action in ["kill", "fail"] {
            let cell = format!(
                "{step} × {action}{}",
                match net {
                    Net::None => "",
                    Net::Netns => " (net)",
                    Net::Shared => " (shared)",
                    Net::UserNs => " (userns)",
                    Net::UserNsNetns => " (userns, net)",
                }
            );
            let mut d = TestDaemon::prepare();
            if with_net {
                d.host_netns();
            }
            let g = GuestBuilder::busybox("c")
                .context(47001)
                .file("cflags", "virt_mem\n");
            let g = match net {
                Net::None => g,
                Net::UserNs => g.file("spaces/user", ""),
                Net::UserNsNetns => g
                    .file("spaces/user", "")
                    .file("apps/vserverd/netmode", "netns\n")
                    .file("interfaces/0/ip", "10.78.0.2\n")
                    .file("interfaces/0/prefix", "24\n")
                    .file("interfaces/0/nodev", ""),
                Net::Netns => g
                    .file("apps/vserverd/netmode", "netns\n")
                    .file("interfaces/0/ip", "10.78.0.2\n")
                    .file("interfaces/0/prefix", "24\n")
                    .file("interfaces/0/nodev", ""),
                // The address on the test host's lo: no device to make.
                Net::Shared => g
                    .file("apps/vserverd/netmode", "shared\n")
                    .file("interfaces/0/ip", "10.78.0.2\n")
                    .file("interfaces/0/prefix", "32\n")
                    .file("interfaces/0/dev", "lo\n"),
            };
            g.write(&d);
            d.env = vec![("VSERVERD_FAULT".into(), format!("{step}={action}"))];
            d.spawn();
            let o = d.ctl(&["start", "c"]);
            match action {
                "kill" => {
                    assert!(!o.status.success(), "{cell}: the start succeeded");
                    d.kill();
                }
                _ => {
                    assert!(
                        !o.status.success() && text(&o).contains("injected fault"),
                        "{cell}: {}",
                        text(&o)
                    );
                    // A failed start rolled back by itself, before any restart.
                    nothing_left(&d, "c", &cell);
                    d.stop();
                }
            }
            d.env.clear();
            d.spawn();
            let outcome = holds(&d, "c", &cell);
            table.push(format!("| {step} | {action} | {outcome} |"));
        }
    }
    eprintln!("{}", table.join("\n"));
}

#[test]
fn a_start_cut_short_at_any_step_leaves_the_guest_whole_or_absent() {
    matrix(Net::None);
}

#[test]
fn a_user_namespace_start_cut_short_at_any_step_leaves_the_guest_whole_or_absent() {
    matrix(Net::UserNs);
}

#[test]
fn a_user_namespace_networked_start_cut_short_leaves_no_link_or_namespace() {
    matrix(Net::UserNsNetns);
}

#[test]
fn a_networked_start_cut_short_at_any_step_leaves_no_address_link_or_namespace() {
    matrix(Net::Netns);
}

#[test]
fn a_shared_stack_start_cut_short_at_any_step_leaves_no_address_or_program() {
    matrix(Net::Shared);
}

/// Everything in the config root and vdir base besides the named guests: what a cut-short
/// build or delete could leave.
fn strays(d: &TestDaemon, keep: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for dir in [&d.config_root, &d.vdir_base] {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&n.as_str()) && n != ".defaults" {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

/// A clone (build -m clone) and a delete cut short at each point: after a fresh daemon the
/// guest is complete (starts, stops) or absent with nothing of it left on disk — never a
/// config whose root is half there — and the same name can be built again.
#[test]
fn a_build_or_delete_cut_short_leaves_the_guest_complete_or_absent() {
    if !prerequisites() {
        return;
    }
    let mut table = Vec::new();
    for (op, step) in [
        ("clone", "build.steps"),
        ("clone", "build.root"),
        ("delete", "delete.renamed"),
        ("delete", "delete.part"),
    ] {
        for action in ["kill", "fail"] {
            let cell = format!("{op} at {step} × {action}");
            let mut d = TestDaemon::prepare();
            GuestBuilder::busybox("src").context(47011).write(&d);
            d.env = vec![("VSERVERD_FAULT".into(), format!("{step}={action}"))];
            if op == "delete" {
                // Built without the fault, deleted with it.
                d.spawn();
                d.ctl_ok(&["build", "cl", "-m", "clone", "--", "--source", "src"]);
                d.stop();
                d.spawn();
                let o = d.ctl(&["delete", "cl", "--yes"]);
                assert!(!o.status.success(), "{cell}: {}", text(&o));
            } else {
                d.spawn();
                let o = d.ctl(&["build", "cl", "-m", "clone", "--", "--source", "src"]);
                assert!(!o.status.success(), "{cell}: {}", text(&o));
            }
            if action == "kill" {
                d.kill();
            } else {
                d.stop();
            }
            d.env.clear();
            d.spawn();
            // Answering means the daemon's recovery ran (the socket accepts before that).
            d.ctl_ok(&["list"]);
            let exists = d.guest_config("cl").exists();
            let outcome = if exists {
                d.ctl_ok(&["start", "cl"]);
                d.ctl_ok(&["exec", "cl", "--", "true"]);
                d.ctl_ok(&["stop", "cl"]);
                assert!(
                    strays(&d, &["src", "cl"]).is_empty(),
                    "{cell}: {:?}",
                    strays(&d, &["src", "cl"])
                );
                d.ctl_ok(&["delete", "cl", "--yes"]);
                "complete"
            } else {
                "absent"
            };
            let left = strays(&d, &["src"]);
            assert!(left.is_empty(), "{cell}: left {left:?}");
            // The name is free again.
            d.ctl_ok(&["build", "cl", "-m", "clone", "--", "--source", "src"]);
            d.ctl_ok(&["start", "cl"]);
            d.ctl_ok(&["stop", "cl"]);
            table.push(format!("| {op} | {step} | {action} | {outcome} |"));
        }
    }
    eprintln!("{}", table.join("\n"));
}

/// A stop cut short at each point (the daemon SIGKILLed, or the cgroup refusing to go): after
/// a fresh daemon the guest runs and is adopted, or is gone with nothing left.
#[test]
fn a_stop_cut_short_leaves_the_guest_running_or_absent() {
    if !prerequisites() {
        return;
    }
    let mut table = Vec::new();
    for (step, action) in [
        ("stop.signalled", "kill"),
        ("stop.ended", "kill"),
        ("stop.cgroup", "kill"),
        ("stop.cgroup", "fail"),
        ("stop.network", "kill"),
    ] {
        let cell = format!("{step} × {action}");
        let outcome = cut_while_adopted(47021, "10.78.0.3", "stop", step, action, &cell);
        table.push(format!("| {step} | {action} | {outcome} |"));
    }
    eprintln!("{}", table.join("\n"));
}

/// A restart (a stop, then a start) cut short at each point of both, the daemon SIGKILLed or
/// the step failing: after a fresh daemon the guest runs and is adopted, or is gone with
/// nothing left, and starts again. Reduced in CI to a point of the stop, one before and one
/// after the start's run state; all of them with VSERVERD_CRASH_FULL=1.
#[test]
fn a_restart_cut_short_leaves_the_guest_running_or_absent() {
    if !prerequisites() {
        return;
    }
    let mut cells: Vec<(&str, &str)> = Vec::new();
    if full() {
        // Of the stop's points only the cgroup's removal can fail (the others are past
        // the point of no return and are only ever cut short).
        for step in [
            "stop.signalled",
            "stop.ended",
            "stop.cgroup",
            "stop.network",
        ] {
            cells.push((step, "kill"));
        }
        cells.push(("stop.cgroup", "fail"));
        for step in START_STEPS {
            cells.push((step, "kill"));
            cells.push((step, "fail"));
        }
    } else {
        cells.extend([
            ("stop.ended", "kill"),
            ("start.network", "kill"),
            ("start.network", "fail"),
            ("start.state", "kill"),
        ]);
    }
    let mut table = Vec::new();
    for (step, action) in cells {
        let cell = format!("restart at {step} × {action}");
        // A step that fails may still leave the restart done: a stop whose cgroup would not
        // go stopped the guest all the same, and the start that follows runs it.
        let outcome = cut_while_adopted(47031, "10.78.0.4", "restart", step, action, &cell);
        table.push(format!("| restart | {step} | {action} | {outcome} |"));
    }
    eprintln!("{}", table.join("\n"));
}

/// A networked virt_mem guest `c` started by one daemon and adopted by the next, which runs
/// with the fault `step=action` and is asked to `call` (stop, restart) it; a killed call must
/// fail. Returns what a fresh daemon then finds (`holds`).
fn cut_while_adopted(
    context: u32,
    ip: &str,
    call: &str,
    step: &str,
    action: &str,
    cell: &str,
) -> &'static str {
    let mut d = TestDaemon::prepare();
    d.host_netns();
    GuestBuilder::busybox("c")
        .context(context)
        .file("cflags", "virt_mem\n")
        .file("interfaces/0/ip", &format!("{ip}\n"))
        .file("interfaces/0/prefix", "24\n")
        .file("interfaces/0/nodev", "")
        .write(&d);
    d.spawn();
    d.ctl_ok(&["start", "c"]);
    // Guests outlive a daemon's SIGTERM; the next one (with the fault) adopts it.
    d.stop();
    d.env = vec![("VSERVERD_FAULT".into(), format!("{step}={action}"))];
    d.spawn();
    let o = d.ctl(&[call, "c"]);
    if action == "kill" {
        assert!(
            !o.status.success(),
            "{cell}: the {call} returned {}",
            text(&o)
        );
        d.kill();
    } else {
        d.stop();
    }
    d.env.clear();
    d.spawn();
    holds(&d, "c", cell)
}

/// Mounts `fs` (a tmpfs of `opts`, or a read-only bind of `dir` onto itself) over `dir`.
fn mount_over(dir: &std::path::Path, how: &str) {
    let args: Vec<String> = match how {
        "full" => vec![
            "-t".into(),
            "tmpfs".into(),
            "-o".into(),
            "size=64k".into(),
            "tmpfs".into(),
            dir.display().to_string(),
        ],
        _ => vec![
            "--bind".into(),
            "-o".into(),
            "ro".into(),
            dir.display().to_string(),
            dir.display().to_string(),
        ],
    };
    let o = std::process::Command::new("mount")
        .args(&args)
        .output()
        .unwrap();
    assert!(o.status.success(), "mount {args:?}: {}", text(&o));
    if how == "full" {
        // Fill it: the next write of any size fails with ENOSPC.
        let _ = std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=4k", "count=100"])
            .arg(format!("of={}/fill", dir.display()))
            .output();
    }
}

fn unmount(dir: &std::path::Path) {
    let o = std::process::Command::new("umount")
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "umount {}: {}", dir.display(), text(&o));
}

/// A run directory that is full or read-only: a start fails before it makes anything, saying
/// why and where; a stop still stops the guest (what was asked), and what it could not remove
/// from the run directory is taken back by the next daemon.
#[test]
fn a_full_or_read_only_run_directory_fails_a_start_cleanly() {
    if !prerequisites() {
        return;
    }
    for (how, errno) in [
        ("full", "No space left on device"),
        ("ro", "Read-only file system"),
    ] {
        let cell = format!("run dir {how}");
        let mut d = TestDaemon::prepare();
        GuestBuilder::busybox("c").context(47031).write(&d);
        d.spawn();
        let guests = d.run_dir.join("guests");
        std::fs::create_dir_all(&guests).unwrap();
        mount_over(&guests, how);
        let o = d.ctl(&["start", "c"]);
        let said = text(&o);
        assert!(!o.status.success(), "{cell}: started");
        assert!(
            said.contains("start journal") && said.contains(errno),
            "{cell}: {said}"
        );
        for dir in d.cgroup_dirs("c") {
            assert!(!dir.exists(), "{cell}: cgroup {} made", dir.display());
        }
        assert_eq!(d.status("c")["state"], "stopped", "{cell}");
        unmount(&guests);
        d.ctl_ok(&["start", "c"]);
        // A stop on a read-only or full run directory: stopped all the same.
        mount_over(&guests, how);
        d.ctl_ok(&["stop", "c"]);
        assert_eq!(d.status("c")["state"], "stopped", "{cell}");
        unmount(&guests);
        d.stop();
        d.spawn();
        holds(&d, "c", &cell);
    }
}

/// After a power cut on a host whose run directory survives reboots, the records left say
/// guests run whose pids now belong to anyone. A record from an earlier boot is never adopted:
/// the daemon cleans it up as a guest that ended, and the guest starts again.
#[test]
fn a_run_state_from_an_earlier_boot_is_never_adopted() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("c").context(47041).write(&d);
    d.spawn();
    d.ctl_ok(&["start", "c"]);
    d.stop();
    // The same record, as if written before the host last booted: the pid, its start time
    // and namespaces still match a live process, only the boot differs.
    let f = d.run_dir.join("guests/c.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
    assert!(v["boot_id"].as_str().is_some_and(|b| !b.is_empty()), "{v}");
    v["boot_id"] = "00000000-0000-0000-0000-000000000000".into();
    std::fs::write(&f, serde_json::to_vec(&v).unwrap()).unwrap();
    d.spawn();
    assert_eq!(d.status("c")["state"], "stopped");
    assert!(
        d.log().contains("before the host last booted"),
        "{}",
        d.log()
    );
    holds(&d, "c", "earlier boot");
}

/// A live `set --persist` cut short between the live write and the config file, or whose
/// config write fails (a read-only config tree): the guest runs on, adopted; a failed set puts
/// the live limit back, so the guest is as it was; the config file is whole either way.
#[test]
fn a_set_cut_short_or_failing_leaves_the_guest_as_it_was_or_as_asked() {
    if !prerequisites() {
        return;
    }
    for action in ["kill", "fail", "ro"] {
        let cell = format!("set.applied × {action}");
        let mut d = TestDaemon::prepare();
        GuestBuilder::busybox("c")
            .context(47051)
            .file("cgroup/pids.max", "100\n")
            .write(&d);
        d.spawn();
        d.ctl_ok(&["start", "c"]);
        let pids = |d: &TestDaemon| -> String {
            d.cgroup_dirs("c")
                .iter()
                .find_map(|p| std::fs::read_to_string(p.join("pids.max")).ok())
                .unwrap()
                .trim()
                .to_string()
        };
        let cgroup_dir = d.guest_config("c").join("cgroup");
        if action == "ro" {
            mount_over(&cgroup_dir, "ro");
        } else {
            d.stop();
            d.env = vec![("VSERVERD_FAULT".into(), format!("set.applied={action}"))];
            d.spawn();
        }
        let o = d.ctl(&["set", "c", "--pids", "77", "--persist"]);
        assert!(!o.status.success(), "{cell}: {}", text(&o));
        match action {
            "kill" => {
                d.kill();
                d.env.clear();
                d.spawn();
                // As asked live; the file is the old one, whole.
                assert_eq!(pids(&d), "77", "{cell}");
            }
            _ => {
                assert!(text(&o).contains("put back"), "{cell}: {}", text(&o));
                assert_eq!(pids(&d), "100", "{cell}: the live limit was not put back");
                if action == "ro" {
                    unmount(&cgroup_dir);
                }
            }
        }
        assert_eq!(
            std::fs::read_to_string(cgroup_dir.join("pids.max")).unwrap(),
            "100\n",
            "{cell}"
        );
        d.ctl_ok(&["check", "c"]);
        assert_eq!(d.status("c")["state"], "running", "{cell}");
        holds(&d, "c", &cell);
    }
}

/// A disk limit set at start (start.dlimits: a btrfs qgroup limit, named in the journal
/// before it is set), then the daemon killed or the step failing: the limit is taken away
/// with the rest of the start, and the next start sets it again.
#[test]
fn a_start_cut_short_after_its_disk_limit_takes_the_limit_back() {
    if !prerequisites() {
        return;
    }
    for action in ["kill", "fail"] {
        let cell = format!("start.dlimits × {action}");
        let mut d = TestDaemon::prepare();
        let Some(_mnt) = harness::loopfs::btrfs_with_quota(&d, &["dl"]) else {
            return;
        };
        let root = d.vdir_base.join("dl");
        GuestBuilder::busybox("dl")
            .context(47052)
            .file("dlimits/0/directory", &format!("{}\n", root.display()))
            .file("dlimits/0/space_total", "10240\n")
            .file("dlimits/0/inodes_total", "-1\n")
            .file("dlimits/0/reserved", "0\n")
            .write(&d);
        d.env = vec![("VSERVERD_FAULT".into(), format!("start.dlimits={action}"))];
        d.spawn();
        let o = d.ctl(&["start", "dl"]);
        assert!(!o.status.success(), "{cell}: {}", text(&o));
        if action == "kill" {
            d.kill();
            // The daemon died with the limit set and named in the journal.
            assert_eq!(
                harness::loopfs::qgroup_limit(&d.vdir_base, "dl"),
                Some(10 << 20),
                "{cell}"
            );
        }
        d.stop();
        d.env.clear();
        d.spawn();
        assert_eq!(
            harness::loopfs::qgroup_limit(&d.vdir_base, "dl"),
            None,
            "{cell}: the limit was left"
        );
        assert_eq!(holds(&d, "dl", &cell), "absent");
        assert_eq!(harness::loopfs::qgroup_limit(&d.vdir_base, "dl"), None);
    }
}

/// A host whose PID 1 reaps orphans (systemd does; this machine's does not): a daemon killed
/// leaves its guests' inits to that reaper, so once adopted, their exit is no zombie to read.
/// A subreaper that reaps everything stands in for such a PID 1 above the first daemon. What
/// the daemon learns of the adopted init's end: on Linux 6.15+ the status the kernel keeps for
/// pidfds, which for a guest's reboot(2) is the SIGKILL that ended its init (the SIGHUP that
/// tells a reboot from a halt goes only to a waiting parent); before, nothing. Either way the
/// guest is seen to end, is cleaned up, and starts again (docs/crash.md).
#[test]
fn an_adopted_guest_reboots_on_a_host_whose_pid1_reaps() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("r").context(47061).write(&d);
    // The stand-in: PR_SET_CHILD_SUBREAPER, start the daemon as its child, reap whatever
    // comes to it.
    let reaper = "import ctypes,os,sys\n\
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)\n\
        if os.fork() == 0:\n    os.execv(sys.argv[1], sys.argv[1:])\n\
        while True:\n    try:\n        os.wait()\n    except ChildProcessError:\n        import time; time.sleep(0.05)\n";
    let mut w = std::process::Command::new("python3")
        .args(["-c", reaper])
        .arg(harness::bins::vserverd())
        .args(d.daemon_args())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    d.wait_until("the daemon under the reaper answers", || {
        d.ctl(&["list"]).status.success()
    });
    d.ctl_ok(&["start", "r"]);
    let init = d.init_pid("r");
    // The reaper's children are the daemon and, detached to it, the helpers.
    let daemon: i32 = std::fs::read_to_string(format!("/proc/{}/task/{}/children", w.id(), w.id()))
        .unwrap()
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "vserverd")
        })
        .expect("the daemon under the reaper");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Gone (reaped by the stand-in) before the next daemon: its socket must not answer.
    d.wait_until("the killed daemon gone", || {
        !std::path::Path::new(&format!("/proc/{daemon}")).exists()
    });
    d.wait_until("the guest's init handed to the reaper", || {
        std::fs::read_to_string(format!("/proc/{init}/stat")).is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, r)| r.split(' ').nth(1) == Some(&w.id().to_string()))
        })
    });
    d.spawn();
    assert_eq!(d.status("r")["init_pid"].as_i64(), Some(init as i64));
    let _ = d.ctl(&["exec", "r", "--", "/sbin/reboot", "-f"]);
    let pidfd_exit = {
        // Linux 6.15 keeps the exit status for pidfds.
        let (maj, min) = nix::sys::utsname::uname()
            .ok()
            .and_then(|u| {
                let r = u.release().to_string_lossy().to_string();
                let mut p = r.split(['.', '-']);
                Some((
                    p.next()?.parse::<u32>().ok()?,
                    p.next()?.parse::<u32>().ok()?,
                ))
            })
            .unwrap_or((0, 0));
        (maj, min) >= (6, 15)
    };
    // The daemon races the reaper: a zombie read in time tells a reboot (restarted); once
    // reaped, the pidfd's status (6.15+) or nothing.
    d.wait_until("the adopted guest's end seen", || {
        let s = d.status("r");
        let m = s["message"].as_str().unwrap_or("").to_string();
        m == "the guest rebooted" || (s["state"] == "stopped" && m.starts_with("init ended"))
    });
    let s = d.status("r");
    let said = s["message"].as_str().unwrap_or("").to_string();
    if said == "the guest rebooted" {
        d.wait_until("the rebooted guest running again", || {
            let s = d.status("r");
            s["state"] == "running" && s["init_pid"].as_i64().is_some_and(|p| p as i32 != init)
        });
        d.ctl_ok(&["stop", "r"]);
    } else {
        let want = if pidfd_exit {
            "init ended (signal 9 (SIGKILL))"
        } else {
            "init ended (exit status -1)"
        };
        assert_eq!(said, want, "{s}");
    }
    eprintln!("a reboot of an adopted guest on a reaping host: {said}");
    let _ = w.kill();
    let _ = w.wait();
    holds(&d, "r", "reaping host");
}

/// The reboot helper cut short: the daemon dies after tearing a rebooting guest down and before
/// starting it again. The reboot owed was on disk first, so the next daemon starts the guest.
#[test]
fn a_reboot_cut_short_is_finished_by_the_next_daemon() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("rb").context(47071).write(&d);
    d.env = vec![("VSERVERD_FAULT".into(), "reboot.torn-down=kill".into())];
    d.spawn();
    d.ctl_ok(&["start", "rb"]);
    let init = d.init_pid("rb");
    let _ = d.ctl(&["exec", "rb", "--", "/sbin/reboot", "-f"]);
    let pid = d.pid().unwrap() as i32;
    d.wait_until("the daemon killed at reboot.torn-down", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
    });
    d.kill();
    assert!(
        d.run_dir.join("guests/rb.reboot").exists(),
        "no reboot owed on disk"
    );
    d.env.clear();
    d.spawn();
    d.wait_until("the rebooted guest running again", || {
        let s = d.status("rb");
        s["state"] == "running" && s["init_pid"].as_i64().is_some_and(|p| p as i32 != init)
    });
    assert!(
        !d.run_dir.join("guests/rb.reboot").exists(),
        "the marker stayed"
    );
    d.ctl_ok(&["exec", "rb", "--", "true"]);
    d.ctl_ok(&["stop", "rb"]);
    nothing_left(&d, "rb", "reboot.torn-down × kill");
}
