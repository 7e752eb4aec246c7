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
