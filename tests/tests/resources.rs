//! Limits on this host's cgroups (v1 controllers on a hybrid host; the v2 path runs in the VM
//! tier): memory enforced, a fork bomb contained, a CPU quota measured, live changes.

use harness::{GuestBuilder, TestDaemon};

fn prerequisites() -> bool {
    harness::require_busybox_guests()
}

fn cg_read(d: &TestDaemon, name: &str, file: &str) -> String {
    d.cgroup_dirs(name)
        .iter()
        .find_map(|p| std::fs::read_to_string(p.join(file)).ok())
        .unwrap_or_else(|| panic!("no cgroup of {name} has {file}"))
        .trim()
        .to_string()
}

/// `vserverctl exec NAME -- dd` of one block (`bs=SIZE`) from /dev/zero: that much memory at
/// once.
fn dd<'a>(name: &'a str, bs: &'a str) -> [&'a str; 8] {
    [
        "exec",
        name,
        "--",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        bs,
        "count=1",
    ]
}

#[test]
fn memory_limit_is_enforced_inside_the_guest() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    // rlimits/rss in pages: 16384 × 4 KiB = 64 MiB.
    GuestBuilder::busybox("mem")
        .context(44001)
        .file("rlimits/rss", "16384\n")
        .write(&d);
    d.spawn();
    d.ctl_ok(&["start", "mem"]);
    let page = harness::page_size();
    let limit = cg_read(&d, "mem", "memory.limit_in_bytes");
    assert_eq!(limit, (16384 * page).to_string());
    // 32 MiB fits; a 200 MiB buffer does not: dd is OOM-killed, the guest lives on.
    d.ctl_ok(&dd("mem", "bs=32M"));
    let o = d.ctl(&dd("mem", "bs=200M"));
    assert_eq!(
        o.status.code(),
        Some(137),
        "dd past the limit must be killed (SIGKILL): {o:?}"
    );
    let oom = cg_read(&d, "mem", "memory.oom_control");
    assert!(
        oom.contains("oom_kill 1") || !oom.contains("oom_kill 0"),
        "{oom}"
    );
    assert_eq!(d.status("mem")["state"], "running");
    // Raised live: the same dd now fits.
    d.ctl_ok(&["set", "mem", "--memory", "512M"]);
    assert_eq!(
        cg_read(&d, "mem", "memory.limit_in_bytes"),
        (512u64 << 20).to_string()
    );
    d.ctl_ok(&dd("mem", "bs=200M"));
    d.ctl_ok(&["stop", "mem"]);
}

#[test]
fn a_fork_bomb_stays_inside_pids_max() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    // A full guest cannot fork its own poweroff: stop's timeout and kill sequence end it.
    GuestBuilder::busybox("bomb")
        .context(44002)
        .file("rlimits/nproc", "30\n")
        .file("apps/vshelper/sync-timeout", "1\n")
        .file("apps/init/killseq", "9\n")
        .write(&d);
    d.spawn();
    d.ctl_ok(&["start", "bomb"]);
    assert_eq!(cg_read(&d, "bomb", "pids.max"), "30");
    // Forks until refused; the shell reports the failures and we count what got through.
    let o = d.ctl(&[
        "exec",
        "bomb",
        "--",
        "sh",
        "-c",
        "n=0; while [ $n -lt 200 ]; do sleep 100 & n=$((n+1)); done 2>/dev/null; true",
    ]);
    let _ = o;
    let current: u64 = cg_read(&d, "bomb", "pids.current").parse().unwrap();
    assert!(current <= 30, "pids.current {current}");
    let events = cg_read(&d, "bomb", "pids.events");
    assert!(
        !events.contains("max 0"),
        "the limit was never hit: {events}"
    );
    assert_eq!(d.status("bomb")["state"], "running");
    d.ctl_ok(&["stop", "bomb"]);
}

#[test]
fn a_cpu_quota_holds_a_busy_loop() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    // sched/: 1 token per 4 jiffies = a quarter of one CPU.
    GuestBuilder::busybox("cpu")
        .context(44003)
        .file("sched/fill-rate", "1\n")
        .file("sched/interval", "4\n")
        .write(&d);
    d.spawn();
    d.ctl_ok(&["start", "cpu"]);
    assert_eq!(cg_read(&d, "cpu", "cpu.cfs_quota_us"), "25000");
    let usage = |d: &TestDaemon| -> f64 {
        cg_read(d, "cpu", "cpuacct.usage").parse::<f64>().unwrap() / 1e9
    };
    let before = usage(&d);
    let t = std::time::Instant::now();
    // Two busy loops for 3 s (two cores here): the quota, not the cores, must bind.
    d.ctl_ok(&[
        "exec",
        "cpu",
        "--",
        "sh",
        "-c",
        "timeout 3 sh -c 'while :; do :; done' & timeout 3 sh -c 'while :; do :; done'; wait",
    ]);
    let share = (usage(&d) - before) / t.elapsed().as_secs_f64();
    eprintln!("measured CPU share: {share:.3} of one CPU (quota 0.25)");
    assert!(
        (0.15..=0.32).contains(&share),
        "share {share:.3} for a quota of 0.25"
    );
    // Live: half a CPU.
    d.ctl_ok(&["set", "cpu", "--cpus", "0.5"]);
    assert_eq!(cg_read(&d, "cpu", "cpu.cfs_quota_us"), "50000");
    d.ctl_ok(&["stop", "cpu"]);
}

#[test]
fn limits_persist_and_edits_apply_live() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let cfg = GuestBuilder::busybox("edit").context(44004).write(&d);
    d.spawn();
    // A stopped guest: only --persist makes sense.
    assert_eq!(
        d.ctl(&["set", "edit", "--pids", "40"]).status.code(),
        Some(1)
    );
    d.ctl_ok(&["set", "edit", "--pids", "40", "--persist"]);
    assert_eq!(
        std::fs::read_to_string(cfg.join("cgroup/pids.max")).unwrap(),
        "40\n"
    );
    d.ctl_ok(&["start", "edit"]);
    assert_eq!(cg_read(&d, "edit", "pids.max"), "40");
    // Editing the tree of a running guest: applied live, no restart needed.
    std::fs::write(cfg.join("cgroup/pids.max"), "45\n").unwrap();
    d.wait_until("the edited limit applied", || {
        cg_read(&d, "edit", "pids.max") == "45"
    });
    assert_eq!(d.status("edit")["restart_needed"], false);
    d.ctl_ok(&["stop", "edit"]);
}

#[test]
fn a_bad_cgroup_setting_fails_the_start_cleanly() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("badcg")
        .context(44005)
        .file("cgroup/memory.no_such_knob", "1\n")
        .write(&d);
    d.spawn();
    let o = d.ctl(&["start", "badcg"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cgroup/memory.no_such_knob"), "{err}");
    for dir in d.cgroup_dirs("badcg") {
        assert!(!dir.exists(), "{} left", dir.display());
    }
}

#[test]
fn stat_agrees_with_the_kernel() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("sa").context(44011).write(&d);
    GuestBuilder::busybox("sb").context(44010).write(&d);
    d.spawn();
    d.ctl_ok(&["start", "sa"]);
    d.ctl_ok(&["start", "sb"]);
    let v: serde_json::Value = serde_json::from_str(&d.ctl_ok(&["stat", "--json"])).unwrap();
    let g = v["guests"].as_array().unwrap();
    assert_eq!(g.len(), 2);
    assert_eq!(g[0]["name"], "sb", "sorted by context");
    for row in g {
        let name = row["name"].as_str().unwrap();
        let pids: Vec<i32> = cg_read(&d, name, "cgroup.procs")
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(row["processes"].as_u64().unwrap() as usize, pids.len());
        let vsz: u64 = pids
            .iter()
            .map(|p| {
                let s = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap();
                s[s.rfind(')').unwrap() + 2..]
                    .split_whitespace()
                    .nth(20)
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum();
        let got = row["vsz_bytes"].as_u64().unwrap();
        assert!(
            got.abs_diff(vsz) * 10 <= vsz,
            "vsz {got} vs /proc {vsz} (10%)"
        );
        let usage: u64 = cg_read(&d, name, "memory.usage_in_bytes").parse().unwrap();
        let rss = row["rss_bytes"].as_u64().unwrap();
        assert!(
            rss > 0 && rss <= usage,
            "rss {rss}, memory.usage_in_bytes {usage}"
        );
        assert!(row["uptime_seconds"].as_f64().unwrap() < 600.0);
    }
    let text = d.ctl_ok(&["vserver-stat"]);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("CTX   PROC    VSZ    RSS  userTIME   sysTIME    UPTIME NAME")
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with("44010") && row.ends_with(" sb"), "{row}");
    d.ctl_ok(&["stop", "sa"]);
    d.ctl_ok(&["stop", "sb"]);
}

#[test]
fn a_group_named_like_a_guest_stays_out_of_that_guests_cgroup() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("victim").context(44031).write(&d);
    GuestBuilder::busybox("bad")
        .context(44032)
        .file("cgroup/name", "victim\n")
        .file("cgroup/memory.limit_in_bytes", "8M\n")
        .write(&d);
    d.spawn();
    d.ctl_ok(&["start", "victim"]);
    d.ctl_ok(&["start", "bad"]);
    let victim = d.init_pid("victim");
    let bad = d.init_pid("bad");
    let cg = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let inside_victim = format!("{}/victim", d.cgroup_prefix);
    for line in cg(bad).lines() {
        assert!(!line.contains(&inside_victim), "{line}");
    }
    // The victim's own cgroup has no limit from bad's tree.
    for dir in d.cgroup_dirs("victim") {
        for f in ["memory.limit_in_bytes", "memory.max"] {
            if let Ok(v) = std::fs::read_to_string(dir.join(f)) {
                assert!(!v.trim().starts_with("8388608"), "{}: {v}", dir.display());
            }
        }
    }
    assert!(cg(victim).lines().all(|l| !l.contains(".groups")));
    d.ctl_ok(&["stop", "bad"]);
    d.ctl_ok(&["stop", "victim"]);
}

#[test]
fn guests_sharing_a_cgroup_share_its_limits_not_their_fate() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    for (n, ctx) in [("t1", 44021), ("t2", 44022)] {
        GuestBuilder::busybox(n)
            .context(ctx)
            .file("cgroup/name", "team\n")
            .file("cgroup/pids.max", "50\n")
            .write(&d);
    }
    d.spawn();
    d.ctl_ok(&["start", "t1"]);
    d.ctl_ok(&["start", "t2"]);
    // The limit is on the shared group; each guest is a leaf below it.
    let group: Vec<std::path::PathBuf> = d
        .cgroup_dirs("t1")
        .iter()
        .filter(|p| p.to_string_lossy().contains("/pids/"))
        .map(|p| p.parent().unwrap().join(".groups/team"))
        .collect();
    assert_eq!(group.len(), 1);
    assert_eq!(
        std::fs::read_to_string(group[0].join("pids.max"))
            .unwrap()
            .trim(),
        "50"
    );
    assert!(group[0].join("t1").is_dir() && group[0].join("t2").is_dir());
    let t2 = d.init_pid("t2");
    d.ctl_ok(&["stop", "t1"]);
    assert!(
        std::fs::read_to_string(format!("/proc/{t2}/stat")).is_ok(),
        "stopping t1 killed t2"
    );
    assert_eq!(d.status("t2")["state"], "running");
    assert!(group[0].is_dir() && !group[0].join("t1").exists());
    d.ctl_ok(&["stop", "t2"]);
    assert!(
        !group[0].exists(),
        "the shared group outlived its last guest"
    );
}

/// The MemTotal and MemFree lines of a meminfo text, in kB.
fn meminfo(text: &str) -> (u64, u64) {
    let kb = |key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {text}"))
    };
    (kb("MemTotal:"), kb("MemFree:"))
}

#[test]
fn each_virt_mem_guest_reads_its_own_meminfo_through_any_path_and_its_fields_fit() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    for (n, ctx, pages) in [("m1", 44041, "32768"), ("m2", 44042, "16384")] {
        GuestBuilder::busybox(n)
            .context(ctx)
            .file("cflags", "virt_mem\n")
            .file("rlimits/rss", &format!("{pages}\n"))
            .write(&d);
    }
    d.spawn();
    d.ctl_ok(&["start", "m1"]);
    d.ctl_ok(&["start", "m2"]);
    let page = harness::page_size();
    // Each guest's meminfo is a file of its own (no page cache shared between guests).
    for n in ["m1", "m2"] {
        let mi = std::fs::read_to_string(format!("/proc/{}/mountinfo", d.init_pid(n))).unwrap();
        let line = mi
            .lines()
            .find(|l| l.split(' ').nth(4) == Some("/proc/meminfo"))
            .unwrap();
        assert_eq!(
            line.split(' ').nth(3),
            Some(format!("/{n}/meminfo").as_str()),
            "{line}"
        );
    }
    // Interleaved reads through read(2), sendfile (busybox cat) and a held-open fd: each
    // guest sees its own limit every time.
    for _ in 0..10 {
        for (n, pages) in [("m1", 32768u64), ("m2", 16384)] {
            let want = pages * page / 1024;
            for cmd in [
                "cat /proc/meminfo",
                "exec 3</proc/meminfo; sleep 0.05; cat <&3",
                "dd if=/proc/meminfo bs=64 2>/dev/null",
            ] {
                let seen = d.ctl_ok(&["exec", n, "--", "sh", "-c", cmd]);
                assert_eq!(meminfo(&seen).0, want, "{n} via {cmd:?}:\n{seen}");
            }
        }
    }
    // Every amount fits the guest's total (the host's slab no longer shows), and free's
    // buff/cache stays within what is used.
    let seen = d.ctl_ok(&["exec", "m1", "--", "cat", "/proc/meminfo"]);
    let kb = |k: &str| -> u64 {
        seen.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap())
            .unwrap_or(0)
    };
    let total = kb("MemTotal");
    for l in seen.lines().filter(|l| l.ends_with(" kB")) {
        let (k, v) = l.split_once(':').unwrap();
        let v: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap();
        if ![
            "VmallocTotal",
            "VmallocChunk",
            "Hugepagesize",
            "CommitLimit",
            "SwapTotal",
            "SwapFree",
        ]
        .contains(&k)
        {
            assert!(v <= total, "{l} in a guest of {total} kB");
        }
    }
    assert!(
        kb("Buffers") + kb("Cached") + kb("SReclaimable") <= total - kb("MemFree"),
        "{seen}"
    );
    d.ctl_ok(&["stop", "m1"]);
    d.ctl_ok(&["stop", "m2"]);
}

#[test]
fn virt_mem_shows_the_guests_limit_in_proc_meminfo_and_survives_the_daemon() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("vm")
        .context(44011)
        .file("cflags", "virt_mem\n")
        .file("rlimits/rss", "32768\n")
        .write(&d);
    // A guest without the flag sees the host's meminfo.
    GuestBuilder::busybox("plainmem")
        .context(44012)
        .file("rlimits/rss", "32768\n")
        .write(&d);
    d.spawn();
    d.ctl_ok(&["start", "vm"]);
    d.ctl_ok(&["start", "plainmem"]);
    let page = harness::page_size();
    let limit_kb = 32768 * page / 1024;
    let host = std::fs::read_to_string("/proc/meminfo").unwrap();
    let (host_total, _) = meminfo(&host);
    let seen = d.ctl_ok(&["exec", "vm", "--", "cat", "/proc/meminfo"]);
    let (total, free) = meminfo(&seen);
    assert_eq!(total, limit_kb, "{seen}");
    assert!(free < total, "{seen}");
    // Its usage is the cgroup's: MemTotal - MemFree within 2 MiB of memory.usage_in_bytes.
    let usage_kb: u64 = cg_read(&d, "vm", "memory.usage_in_bytes")
        .parse::<u64>()
        .unwrap()
        / 1024;
    let used = total - free;
    assert!(
        used.abs_diff(usage_kb) < 2048,
        "used {used} kB, cgroup {usage_kb} kB"
    );
    // Allocating 48 MiB in a tmpfs file shows up as used memory inside the guest.
    d.ctl_ok(&[
        "exec",
        "vm",
        "--",
        "dd",
        "if=/dev/zero",
        "of=/dev/shm/fill",
        "bs=1M",
        "count=48",
    ]);
    let (_, free_after) = meminfo(&d.ctl_ok(&["exec", "vm", "--", "cat", "/proc/meminfo"]));
    assert!(
        free_after + 40 * 1024 < free,
        "free {free} kB, after 48 MiB {free_after} kB"
    );
    let other = d.ctl_ok(&["exec", "plainmem", "--", "cat", "/proc/meminfo"]);
    assert_eq!(meminfo(&other).0, host_total, "{other}");
    // The kernel's view: the guest's /proc/meminfo is a read-only bind of the server's file.
    let init = d.init_pid("vm");
    let mi = std::fs::read_to_string(format!("/proc/{init}/mountinfo")).unwrap();
    let line = mi
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/proc/meminfo"))
        .unwrap_or_else(|| panic!("no mount on /proc/meminfo:\n{mi}"));
    assert!(line.contains(" ro,") && line.contains("fuse"), "{line}");
    let o = d.ctl(&["exec", "vm", "--", "sh", "-c", "echo x > /proc/meminfo"]);
    assert!(!o.status.success());

    // The daemon dies: the server lives on, the guest's view still answers, a new daemon adopts
    // the guest and uses the same server for the next start.
    let server_pid =
        std::fs::read_to_string(vserverd::procfs::mount_dir(&d.run_dir).with_extension("pid"))
            .unwrap();
    d.kill();
    // (Read from the host, the file answers with the reader's figures: the host's.)
    let direct = std::fs::read_to_string(format!("/proc/{init}/root/proc/meminfo"))
        .expect("the guest's /proc/meminfo answers while no daemon runs");
    assert_eq!(meminfo(&direct).0, host_total, "{direct}");
    d.spawn();
    assert_eq!(
        meminfo(&d.ctl_ok(&["exec", "vm", "--", "cat", "/proc/meminfo"])).0,
        limit_kb
    );
    d.ctl_ok(&["restart", "vm"]);
    assert_eq!(
        meminfo(&d.ctl_ok(&["exec", "vm", "--", "cat", "/proc/meminfo"])).0,
        limit_kb
    );
    assert_eq!(
        std::fs::read_to_string(vserverd::procfs::mount_dir(&d.run_dir).with_extension("pid"))
            .unwrap(),
        server_pid,
        "one server across daemon restarts"
    );

    // The server dies: the daemon mounts a new one and binds it again inside the guest.
    let guest_total = |d: &TestDaemon| -> Option<u64> {
        let o = d.ctl(&["exec", "vm", "--", "cat", "/proc/meminfo"]);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        (o.status.success() && text.contains("MemTotal:")).then(|| meminfo(&text).0)
    };
    let old = kill_server(&d);
    d.wait_until("the guest's meminfo served again", || {
        guest_total(&d) == Some(limit_kb)
    });
    // And while no daemon runs: the next daemon repairs it at start.
    d.kill();
    let dead = kill_server(&d);
    assert_ne!(dead, old);
    d.spawn();
    d.wait_until("the guest's meminfo repaired by the new daemon", || {
        guest_total(&d) == Some(limit_kb)
    });
    d.ctl_ok(&["stop", "vm"]);
    d.ctl_ok(&["stop", "plainmem"]);
}

/// The helper `name` (vserverd-procfs, vserverd-tty) of daemon `d`: its pid, and that it sits
/// in its own cgroup beside the guests' with the helpers' CPU, memory and pids limits.
fn helper_is_confined(d: &TestDaemon, name: &str, pid_file: &std::path::Path) -> i32 {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let want = format!("/{}/.{name}", d.cgroup_prefix);
    for c in ["memory", "cpu", "pids"] {
        let line = cg
            .lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|cs| cs.split(',').any(|x| x == c))
            })
            .unwrap_or_else(|| panic!("no {c} line in {cg}"));
        assert!(line.ends_with(&want), "{name} {c}: {line}, want …{want}");
    }
    let layout = vserverd::isolate::cgroup::Layout::detect().unwrap();
    let dirs = layout.guest(&d.cgroup_prefix, &format!(".{name}"));
    let read = |f: &str| dirs.read(f).unwrap_or_default().trim().to_string();
    assert_eq!(read("memory.limit_in_bytes"), (256u64 << 20).to_string());
    assert_eq!(read("cpu.cfs_quota_us"), "100000");
    assert_eq!(read("pids.max"), "64");
    pid
}

/// The count a flood loop in `guest` wrote to its files /tmp/n*, summed.
fn flood_count(d: &TestDaemon, guest: &str) -> u64 {
    d.ctl_ok(&[
        "exec",
        guest,
        "--",
        "sh",
        "-c",
        "cat /tmp/n* 2>/dev/null; true",
    ])
    .split_whitespace()
    .filter_map(|n| n.parse::<u64>().ok())
    .sum()
}

/// Second review, item 4: a guest reading its /proc/meminfo in a loop is served at the
/// server's per-guest rate (1000 requests a second after a burst; each read takes at least
/// three: lookup, open, read), while another guest's reads go on in their turn and see their
/// own limit; the server and the console keeper run in cgroups of their own, with limits.
/// Before: the flood was served as fast as four shell loops could ask (tens of thousands of
/// requests a second on one unbounded thread).
#[test]
fn a_proc_flood_is_paid_by_the_flooding_guest_and_the_helpers_have_limits_of_their_own() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    for (n, ctx) in [("flood", 44061), ("quiet", 44062)] {
        GuestBuilder::busybox(n)
            .context(ctx)
            .file("cflags", "virt_mem\n")
            .file("rlimits/rss", "16384\n")
            .write(&d);
    }
    d.spawn();
    d.ctl_ok(&["start", "flood"]);
    d.ctl_ok(&["start", "quiet"]);
    // Four loops of shell builtins (no fork per read): open, read, close as fast as they can.
    d.ctl_ok(&[
        "exec",
        "flood",
        "--",
        "sh",
        "-c",
        "for k in 1 2 3 4; do (i=0; while :; do read x </proc/meminfo; i=$((i+1)); \
         [ $((i % 5)) = 0 ] && echo $i >/tmp/n$k; done) >/dev/null 2>&1 & done",
    ]);
    // Past the burst first.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let server = vserverd::procfs::server_pid(&d.run_dir).expect("the /proc server runs");
    let cpu = || -> u64 {
        let st = std::fs::read_to_string(format!("/proc/{server}/stat")).unwrap();
        let f: Vec<&str> = st.rsplit_once(") ").unwrap().1.split(' ').collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    let (n0, c0, t0) = (flood_count(&d, "flood"), cpu(), std::time::Instant::now());
    let page = harness::page_size();
    let mut quiet = Vec::new();
    while quiet.len() < 20 || t0.elapsed() < std::time::Duration::from_secs(3) {
        let at = std::time::Instant::now();
        let seen = d.ctl_ok(&["exec", "quiet", "--", "cat", "/proc/meminfo"]);
        quiet.push(at.elapsed());
        assert_eq!(meminfo(&seen).0, 16384 * page / 1024, "{seen}");
    }
    let (n1, c1, dt) = (flood_count(&d, "flood"), cpu(), t0.elapsed().as_secs_f64());
    let rate = (n1 - n0) as f64 / dt;
    quiet.sort();
    // clock ticks are 1/100 s here (USER_HZ).
    eprintln!(
        "flood: {rate:.0} reads/s over {dt:.1} s, the server at {:.0} % of a CPU; quiet \
         guest's exec+cat p50 {:?}, worst {:?}",
        (c1 - c0) as f64 / dt,
        quiet[quiet.len() / 2],
        quiet[quiet.len() - 1]
    );
    assert!(n1 > n0, "the flood is still served");
    // The bucket's bound (5 reads of slack for the counting granularity of each loop).
    assert!(
        rate <= 1000.0 / 3.0 + 4.0 * 5.0 / dt,
        "{rate:.0} reads/s: more than the per-guest rate allows"
    );
    helper_is_confined(
        &d,
        "vserverd-procfs",
        &vserverd::procfs::mount_dir(&d.run_dir).with_extension("pid"),
    );
    helper_is_confined(
        &d,
        "vserverd-tty",
        &vserverd::console::socket(&d.run_dir).with_extension("pid"),
    );
    d.ctl_ok(&["stop", "flood"]);
    d.ctl_ok(&["stop", "quiet"]);
}

/// A guest writing its console as fast as it can passes at the keeper's per-console rate
/// (1 MiB/s after a 1 MiB burst): its own write(2) blocks, the keeper does not spin.
#[test]
fn a_console_flood_blocks_the_flooding_guest_at_the_keepers_rate() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("loud").context(44063).write(&d);
    d.spawn();
    d.ctl_ok(&["start", "loud"]);
    // 3 MiB of text: 1 MiB at once, the rest at 1 MiB/s, so at least 2 s; a keeper without
    // the budget takes it at memory speed (0.1 s here).
    let t = std::time::Instant::now();
    d.ctl_ok(&[
        "exec",
        "loud",
        "--",
        "sh",
        "-c",
        "yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456 \
         | head -c 3145728 >/dev/console",
    ]);
    let took = t.elapsed().as_secs_f64();
    eprintln!("3 MiB through the console in {took:.1} s");
    assert!(
        took >= 1.9,
        "3 MiB passed in {took:.1} s: faster than the console budget allows"
    );
    let log = std::fs::read_to_string(vserverd::console::log_path(&d.run_dir, "loud")).unwrap();
    assert!(
        log.contains("0123456789abcdef"),
        "the flood reached the log"
    );
    d.ctl_ok(&["stop", "loud"]);
}

/// SIGKILLs daemon `d`'s /proc server; returns its pid.
fn kill_server(d: &TestDaemon) -> i32 {
    let pid: i32 =
        std::fs::read_to_string(vserverd::procfs::mount_dir(&d.run_dir).with_extension("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    pid
}

/// `processor` blocks of a cpuinfo text.
fn processors(text: &str) -> usize {
    text.lines().filter(|l| l.starts_with("processor")).count()
}

#[test]
fn virt_cpu_and_virt_load_show_the_guests_cpus_and_its_own_load() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let fstab = "none /proc proc defaults 0 0\nnone /sys sysfs ro 0 0\n\
                 none /dev/pts devpts gid=5,mode=620 0 0\n";
    // A quarter of one CPU: the guest sees one CPU (its quota rounded up).
    GuestBuilder::busybox("vc")
        .context(44021)
        .file("cflags", "virt_cpu\nvirt_load\n")
        .file("sched/fill-rate", "1\n")
        .file("sched/interval", "4\n")
        .file("fstab", fstab)
        .write(&d);
    // Same flags, no quota: every host CPU; idle, so no load.
    GuestBuilder::busybox("idle")
        .context(44022)
        .file("cflags", "virt_cpu\nvirt_load\n")
        .file("fstab", fstab)
        .write(&d);
    // No flags: the host's files.
    GuestBuilder::busybox("plaincpu")
        .context(44023)
        .file("fstab", fstab)
        .write(&d);
    d.spawn();
    for g in ["vc", "idle", "plaincpu"] {
        d.ctl_ok(&["start", g]);
    }
    let host_cpus = processors(&std::fs::read_to_string("/proc/cpuinfo").unwrap());
    let cat = |g: &str, f: &str| d.ctl_ok(&["exec", g, "--", "cat", f]);
    let info = cat("vc", "/proc/cpuinfo");
    assert_eq!(processors(&info), 1, "{info}");
    assert!(info.contains("processor\t: 0\n"), "{info}");
    assert_eq!(cat("vc", "/sys/devices/system/cpu/online"), "0\n");
    assert_eq!(processors(&cat("idle", "/proc/cpuinfo")), host_cpus);
    assert_eq!(processors(&cat("plaincpu", "/proc/cpuinfo")), host_cpus);
    assert_eq!(
        cat("plaincpu", "/sys/devices/system/cpu/online"),
        std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap()
    );

    // Work in the guest, then /proc/stat's time is the guest's (cpuacct), on its one CPU.
    let sh = |g: &str, script: &str| d.ctl_ok(&["exec", g, "--", "sh", "-c", script]);
    sh("vc", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done");
    let stat = cat("vc", "/proc/stat");
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        stat.contains("\ncpu0 ") && !stat.contains("\ncpu1 "),
        "{stat}"
    );
    let hz = 100.0;
    let used_s = (cpu[0] + cpu[2]) as f64 / hz;
    let cgroup_s = cg_read(&d, "vc", "cpuacct.usage").parse::<f64>().unwrap() / 1e9;
    assert!(
        used_s > 0.0 && (used_s - cgroup_s).abs() < 0.2 + cgroup_s * 0.1,
        "/proc/stat says {used_s} s, cpuacct.usage {cgroup_s} s\n{stat}"
    );

    // Load: a busy loop makes the guest's load 1 or more; the idle guest's stays 0.
    sh(
        "vc",
        "(while :; do :; done) >/dev/null 2>&1 & echo $! > /tmp/busy",
    );
    let load = |g: &str| -> (f64, String) {
        let t = cat(g, "/proc/loadavg");
        (t.split_whitespace().next().unwrap().parse().unwrap(), t)
    };
    // The averages move as the kernel's do (a minute's decay): after 3 s of one runnable
    // task, 1 - e^(-3/60) ≈ 0.05 from the 0 seen when the file was bound at start.
    let (first, _) = load("vc");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (busy, text) = load("vc");
    assert!(busy > first && busy >= 0.03, "{first} then {text}");
    let (quiet, text) = load("idle");
    assert_eq!(quiet, 0.0, "{text}");
    // Without the flag, the kernel's own file (its host-wide fields: a pid counter, threads).
    let plain = cat("plaincpu", "/proc/loadavg");
    assert_eq!(plain.split_whitespace().count(), 5, "{plain}");
    sh("vc", "kill $(cat /tmp/busy)");

    // The server dies: every file answers again, /sys's included.
    kill_server(&d);
    d.wait_until("virt_cpu's files served again", || {
        let o = d.ctl(&["exec", "vc", "--", "cat", "/sys/devices/system/cpu/online"]);
        let o2 = d.ctl(&["exec", "vc", "--", "cat", "/proc/cpuinfo"]);
        o.status.success()
            && o.stdout == b"0\n"
            && o2.status.success()
            && processors(&String::from_utf8_lossy(&o2.stdout)) == 1
    });
    for g in ["vc", "idle", "plaincpu"] {
        d.ctl_ok(&["stop", g]);
    }
}

/// busybox `free`'s total (KiB) on its `Mem:` line.
fn free_total(text: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with("Mem:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no Mem: line in {text:?}"))
}

/// The seccomp listeners process `pid` holds (fds on `anon_inode:seccomp notify`).
fn listeners_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|t| t.to_string_lossy().contains("seccomp notify"))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn sysinfo_swaps_and_diskstats_show_the_guests_own_and_outlive_the_proc_server() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("si")
        .context(44031)
        .file("cflags", "virt_mem\nvirt_uptime\n")
        .file("rlimits/rss", "32768\n")
        // 64 MiB of swap past the memory limit.
        .file(
            "cgroup/memory.memsw.limit_in_bytes",
            &format!("{}\n", 32768 * harness::page_size() + (64 << 20)),
        )
        .write(&d);
    GuestBuilder::busybox("siplain")
        .context(44032)
        .file("rlimits/rss", "32768\n")
        .write(&d);
    d.spawn();
    d.ctl_ok(&["start", "si"]);
    d.ctl_ok(&["start", "siplain"]);
    let limit_kb = 32768 * harness::page_size() / 1024;
    let (host_kb, _) = meminfo(&std::fs::read_to_string("/proc/meminfo").unwrap());

    // busybox free and uptime ask sysinfo(2): the guest's limit, the guest's uptime.
    let seen = d.ctl_ok(&["exec", "si", "--", "free"]);
    assert_eq!(free_total(&seen), limit_kb, "{seen}");
    let up = d.ctl_ok(&["exec", "si", "--", "uptime"]);
    assert!(up.contains(" up 0 min") || up.contains(" up 1 min"), "{up}");
    // top's header (busybox: `Mem: NK used, NK free, …` from /proc/meminfo): used + free is
    // the guest's limit.
    let top = d.ctl_ok(&["exec", "si", "--", "top", "-b", "-n", "1"]);
    let mem: Vec<u64> = top
        .lines()
        .find(|l| l.starts_with("Mem:"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|w| w.strip_suffix('K')?.parse().ok())
        .collect();
    assert!(mem.len() >= 2, "{top}");
    assert_eq!(mem[0] + mem[1], limit_kb, "{top}");
    // A guest without the flags: the host's, through the real call.
    let seen = d.ctl_ok(&["exec", "siplain", "--", "free"]);
    assert_eq!(free_total(&seen), host_kb, "{seen}");
    // Its uptime is its own all the same: the kernel counts it in the time namespace.
    let up = d.ctl_ok(&["exec", "siplain", "--", "uptime"]);
    assert!(up.contains(" up 0 min") || up.contains(" up 1 min"), "{up}");
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", d.init_pid("siplain"))).unwrap();
    assert!(status.contains("Seccomp:\t2"), "{status}");
    // The kernel's view: the guest's init, its children and the joined processes are under a
    // filter with a listener, held by the /proc server and by the holder.
    let init = d.init_pid("si");
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    assert!(status.contains("Seccomp:\t2"), "{status}");
    let dir = vserverd::procfs::mount_dir(&d.run_dir);
    let holder: i32 =
        std::fs::read_to_string(vserverd::procfs::sysinfo::hold_base(&dir).with_extension("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    assert!(listeners_of(holder) >= 1, "the holder keeps the listeners");
    // It keeps one per guest process tree: its soft limit of open files is its hard one
    // (a unit's default soft limit, 1024, would bite at ~1000 guests).
    let limits = std::fs::read_to_string(format!("/proc/{holder}/limits")).unwrap();
    let nofile: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(nofile[3], nofile[4], "{limits}");

    // The server dies while a guest process is about to call sysinfo: the call waits and is
    // answered by the repaired server, which took the listeners back from the holder.
    let late = d.ctl_spawn(&["exec", "si", "--", "sh", "-c", "sleep 2; free"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    kill_server(&d);
    let out = late.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(free_total(&text), limit_kb, "{text}");
    assert_eq!(
        free_total(&d.ctl_ok(&["exec", "si", "--", "free"])),
        limit_kb
    );

    // A process calling sysinfo in a loop gets its calls answered at the server's rate per
    // listener (200 a second after a burst of 50: procfs/sysinfo.rs), waiting in its own call,
    // so 1000 calls cannot take less than (1000 - 50) / 200 s; another process's calls are
    // answered in between, with the guest's figures. (A lower bound: a slow machine only
    // makes the loop slower.)
    let started = std::time::Instant::now();
    let flood = d.ctl_spawn(&[
        "exec",
        "si",
        "--",
        "sh",
        "-c",
        "i=0; while [ $i -lt 1000 ]; do free >/dev/null || exit 1; i=$((i+1)); done",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(
        free_total(&d.ctl_ok(&["exec", "si", "--", "free"])),
        limit_kb,
        "answered while another process floods"
    );
    let out = flood.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(4750),
        "1000 sysinfo calls in {took:?}: the per-listener rate was not applied"
    );

    // /proc/swaps: its swap limit as one virtual device; /proc/slabinfo hidden; /proc/diskstats
    // its own I/O, checked against its cgroup's counts.
    let swaps = d.ctl_ok(&["exec", "si", "--", "cat", "/proc/swaps"]);
    let line: Vec<&str> = swaps
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    // At most the host's swap: none on a host without swap.
    let host_swap_kb: u64 = std::fs::read_to_string("/proc/swaps")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum();
    if host_swap_kb == 0 {
        assert!(line.is_empty(), "{swaps}");
    } else {
        assert_eq!(line.get(..2), Some(&["none", "virtual"][..]), "{swaps}");
        assert_eq!(
            line[2].parse::<u64>().unwrap(),
            host_swap_kb.min(64 * 1024),
            "{swaps}"
        );
    }
    // Read whole through sendfile (cat) and read (dd) alike.
    assert_eq!(
        d.ctl_ok(&["exec", "si", "--", "dd", "if=/proc/swaps", "bs=64"]),
        swaps
    );
    let slab = d.ctl(&["exec", "si", "--", "cat", "/proc/slabinfo"]);
    assert!(
        slab.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&slab.stdout)
    );
    d.ctl_ok(&[
        "exec",
        "si",
        "--",
        "dd",
        "if=/dev/zero",
        "of=/root/io",
        "bs=1M",
        "count=8",
        "oflag=direct",
    ]);
    let stats = d.ctl_ok(&["exec", "si", "--", "cat", "/proc/diskstats"]);
    let written: u64 = stats
        .lines()
        .filter_map(|l| l.split_whitespace().nth(9)?.parse::<u64>().ok())
        .sum();
    let cg = cg_read(&d, "si", "blkio.throttle.io_service_bytes_recursive");
    let cg_written: u64 = cg
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("Write"))
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum();
    // Its sectors are its cgroup's bytes. (A v1 blkio hierarchy counts only what passes its
    // throttle layer, which on some kernels is nothing: then the guest sees no device rather
    // than the host's.)
    assert_eq!(
        written * 512,
        cg_written / 512 * 512,
        "{stats}\ncgroup: {cg}"
    );
    if cg_written > 0 {
        assert!(written * 512 >= 8 << 20, "{stats}\ncgroup: {cg}");
    } else {
        assert!(stats.is_empty(), "{stats}");
    }
    let host_stats = std::fs::read_to_string("/proc/diskstats").unwrap();
    assert!(
        stats.lines().count() < host_stats.lines().count(),
        "{stats}"
    );

    // Stopped, its listeners are gone from both holders.
    d.ctl_ok(&["stop", "si"]);
    d.ctl_ok(&["stop", "siplain"]);
    let server: i32 = std::fs::read_to_string(dir.with_extension("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    d.wait_until("the listeners dropped", || {
        listeners_of(server) == 0 && listeners_of(holder) == 0
    });
}
