//! The cost of a per-guest call must not grow with the number of guests (docs/orchestration.md,
//! "Every call's cost"). Guarded without timing: the files the daemon opens while it answers
//! one call about one guest, counted by strace(1) attached to every daemon thread, at 10 and
//! at 1000 configured guests.

use harness::{GuestBuilder, TestDaemon};

/// Every file the daemon opens while `args` runs (vserverctl against it), by path.
fn opened_during(d: &TestDaemon, args: &[&str]) -> Vec<String> {
    let log = d.dir.path().join("strace.log");
    let _ = std::fs::remove_file(&log);
    let mut st = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=open,openat,openat2", "-o"])
        .arg(&log)
        .arg("-p")
        .arg(d.pid().unwrap().to_string())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // strace attaches before it writes its first line; a call it has not attached to yet would
    // count nothing. Make one and wait for it to show.
    d.wait_until("strace attached", || {
        d.ctl(&["list"]);
        std::fs::read_to_string(&log).is_ok_and(|s| !s.is_empty())
    });
    // Settle, then count only the call.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let before = std::fs::read_to_string(&log).unwrap().lines().count();
    d.ctl(args);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(st.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let _ = st.wait();
    std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .skip(before)
        .filter(|l| l.contains("open"))
        .filter_map(|l| l.split('"').nth(1).map(String::from))
        .collect()
}

fn daemon_with(n: u32) -> TestDaemon {
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("g").context(48000).write(&d);
    for i in 1..n {
        GuestBuilder::new(&format!("o{i:04}"))
            .context(48000 + i)
            .write(&d);
    }
    d.spawn();
    d.wait_until("every guest listed", || {
        d.ctl_ok(&["list", "--json"]).matches("\"name\"").count() >= n as usize
    });
    d
}

#[test]
fn a_per_guest_call_opens_as_many_files_with_1000_guests_as_with_10() {
    if !harness::require_busybox_guests()
        || !harness::require(
            std::path::Path::new("/usr/bin/strace").exists(),
            "strace (set up with scripts/setup.sh)",
        )
    {
        return;
    }
    let calls: [&[&str]; 3] = [
        &["status", "g"],
        &["check", "g"],
        &["status", "g", "--json"],
    ];
    let mut seen = Vec::new();
    for n in [10u32, 1000] {
        let d = daemon_with(n);
        let counts: Vec<(usize, Vec<String>)> = calls
            .iter()
            .map(|c| {
                let files = opened_during(&d, c);
                (files.len(), files)
            })
            .collect();
        seen.push(counts);
    }
    for (i, c) in calls.iter().enumerate() {
        let (small, large) = (&seen[0][i], &seen[1][i]);
        eprintln!("{c:?}: {} files at 10 guests, {} at 1000", small.0, large.0);
        assert!(
            large.0 <= small.0,
            "{c:?} opens {} files with 1000 guests, {} with 10; with 1000: {:?}",
            large.0,
            small.0,
            &large.1[..large.1.len().min(40)]
        );
    }
}

/// Net namespaces, by inode, that some process on the host holds.
fn net_namespaces() -> std::collections::HashSet<std::path::PathBuf> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path().join("ns/net")).ok())
        .collect()
}

fn read_num(p: &str) -> u64 {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The reduced density run (vserverd-bench density is the full one): 200 limited busybox
/// guests running at once, one guest's status costing what it costs with one running, and
/// after stopping all of them nothing per guest is left: no process, cgroup, network
/// namespace, pty, mount or run-state file.
#[test]
fn two_hundred_running_guests_cost_nothing_per_call_and_leave_nothing_behind() {
    if !harness::require_busybox_guests()
        || !harness::require(
            std::path::Path::new("/usr/bin/strace").exists(),
            "strace (set up with scripts/setup.sh)",
        )
    {
        return;
    }
    const N: usize = 200;
    let mut d = TestDaemon::prepare();
    let root = d.vdir_base.join("shared");
    harness::guest::busybox_root(&root);
    harness::guest::limited_guests_on_one_root(&d, "r", N, 49000, "dense", &root, &[]);
    d.spawn();
    let netns_before = net_namespaces().len();
    let ptys_before = read_num("/proc/sys/kernel/pty/nr");
    d.ctl_ok(&["start", "r000"]);
    let one = opened_during(&d, &["status", "r000"]).len();
    d.ctl_ok(&["start", "--mark", "dense"]);
    let running = d.ctl_ok(&["list", "--json"]).matches("\"running\"").count();
    assert_eq!(running, N, "guests running");
    assert!(
        net_namespaces().len() >= netns_before + N,
        "a network namespace each"
    );
    let all = opened_during(&d, &["status", "r000"]);
    eprintln!(
        "status of one guest: {one} files with 1 running, {} with {N}",
        all.len()
    );
    assert!(
        all.len() <= one,
        "status opens {} files with {N} running, {one} with one: {all:?}",
        all.len()
    );

    d.ctl_ok(&["stop", "--mark", "dense"]);
    d.wait_until("every guest's cgroups gone", || {
        (0..N).all(|i| {
            d.cgroup_dirs(&format!("r{i:03}"))
                .iter()
                .all(|p| !p.exists())
        })
    });
    let stray: Vec<_> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("cgroup"))
                .is_ok_and(|c| c.contains(&format!("/{}/r", d.cgroup_prefix)))
        })
        .map(|e| e.file_name())
        .collect();
    assert!(
        stray.is_empty(),
        "processes left in guest cgroups: {stray:?}"
    );
    d.wait_until("the guests' network namespaces gone", || {
        net_namespaces().len() <= netns_before
    });
    // Ptys: the host's count is shared with whatever else runs; the daemon's processes (it
    // and its helpers, in the prefix's .vserverd-* cgroups) must hold none of the guests'.
    let ours: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cg = std::fs::read_to_string(e.path().join("cgroup")).ok()?;
            (pid == d.pid().unwrap() || cg.contains(&format!("/{}/.vserverd-", d.cgroup_prefix)))
                .then_some(pid)
        })
        .collect();
    let ptys_held = || -> usize {
        ours.iter()
            .flat_map(|pid| {
                std::fs::read_dir(format!("/proc/{pid}/fd"))
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .filter(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|l| l.starts_with("/dev/pts") || l.as_os_str() == "/dev/ptmx")
            })
            .count()
    };
    d.wait_until("the daemon and its helpers hold no guest pty", || {
        ptys_held() == 0
    });
    eprintln!(
        "ptys on the host: {ptys_before} before, {} after (shared with everything else)",
        read_num("/proc/sys/kernel/pty/nr")
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(root.to_str().unwrap()),
        "a mount of the guests' root left in the host's namespace"
    );
    // (The console logs stay, as util-vserver's did, for the admin to read.)
    let states: Vec<_> = std::fs::read_dir(d.run_dir.join("guests"))
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".log") && !n.ends_with(".log.1"))
                .collect()
        })
        .unwrap_or_default();
    assert!(states.is_empty(), "run-state files left: {states:?}");
}
