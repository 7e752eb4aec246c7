//! The crash matrix (docs/crash.md): the daemon killed (SIGKILL) or a step failing at every
//! named point of a start, then a fresh daemon; the guest must be fully running and adopted
//! (exec and stop work) or fully absent (no process, cgroup, mount, netns, veth, run state or
//! journal left), and a next start must succeed. Faults are injected through the daemon's
//! debug-build hook (vserverd/src/fault.rs, VSERVERD_FAULT=STEP=ACTION).

use harness::{GuestBuilder, TestDaemon};

/// The points of a start, in order (vserverd/src/guest/start.rs).
const START_STEPS: &[&str] = &[
    "start.journal",
    "start.network",
    "start.cgroup",
    "start.limits",
    "start.pre-start",
    "start.console",
    "start.spawned",
    "start.state",
    "start.post-start",
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
        .filter(|l| l.contains(&root) && !l.contains("/procfs ") && !l.contains("/hostnet "))
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
        "stopped" => "rolled back",
        other => panic!("{cell}: the guest is {other:?} after a fresh daemon"),
    };
    nothing_left(d, name, cell);
    d.ctl_ok(&["start", name]);
    d.ctl_ok(&["exec", name, "--", "true"]);
    d.ctl_ok(&["stop", name]);
    nothing_left(d, name, cell);
    outcome
}

fn matrix(with_net: bool) {
    if !prerequisites() {
        return;
    }
    let mut table = Vec::new();
    for step in START_STEPS {
        for action in ["kill", "fail"] {
            let cell = format!("{step} × {action}{}", if with_net { " (net)" } else { "" });
            let mut d = TestDaemon::prepare();
            if with_net {
                d.host_netns();
            }
            let g = GuestBuilder::busybox("c")
                .context(47001)
                .file("cflags", "virt_mem\n");
            let g = if with_net {
                g.file("interfaces/0/ip", "10.78.0.2\n")
                    .file("interfaces/0/prefix", "24\n")
                    .file("interfaces/0/nodev", "")
            } else {
                g
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
    matrix(false);
}

#[test]
fn a_networked_start_cut_short_at_any_step_leaves_no_address_link_or_namespace() {
    matrix(true);
}
