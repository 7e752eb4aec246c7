//! Benchmarks (not tests): `cargo run --release -p vserverd-tests --bin vserverd-bench -- list`.
//!
//! `list [--guests N] [--calls N]`: a daemon on temporary roots with N configured guests, then
//! N sequential List calls on one connection; prints p50/p99 latency and calls per second.
//!
//! `lifecycle [--iterations N]` (root): start + stop of one busybox-init guest, side by side
//! in one run with LXC (`lxc-start -d` + `lxc-wait -s RUNNING` + `lxc-stop -k`) on a copy of
//! the same root and `systemd-nspawn` running /bin/true; prints medians and the ratios, for
//! runs back to back and for runs 200 ms apart.
//!
//! `userns [--iterations N]` (root): start alone (and stop) of the same busybox-init guest as
//! the default guest (host root, narrowed) and in a user namespace of its own (`spaces/user`:
//! idmapped root, locked mounts), interleaved in one run, back to back and spaced; prints the
//! medians and the ratio (goal: ≤ 1.2). `--netns`: both with an address in a network namespace
//! the daemon makes (netmode netns; the user-namespace guest's owned by its user namespace),
//! the daemon in a network namespace the benchmark makes.
//!
//! `calls [--calls N]`: Status and Validate of one guest, each N times on one connection, with
//! 10 and with 1000 configured guests side by side (interleaved daemons): a per-guest call
//! must cost the same whatever the guest count.
//!
//! `density [--guests N] [--host-net]` (root): N busybox guests (one shared root, each with a memory and a
//! pids limit, the default network: loopback only) started and stopped all at once with the
//! default parallelism; prints one table: start and stop times, host memory per guest beyond
//! the guests' own (the drop in MemAvailable less the guests' proportional set size, over N),
//! host processes per guest beyond the guest's own, the daemon's RSS and the idle wake-ups of
//! the daemon and its helpers with all running, the kernel limits a host of that many guests
//! meets (pids, ptys, memory cgroups, network namespaces, inotify) with their use, and what is
//! left after the stop.
//!
//! `net [--rounds N] [--conns N] [--mbytes N] [--starts N]` (root): a server in a shared-stack
//! guest, in a netns+veth guest, on the host itself, and in a guest on the host's whole stack
//! (`nonetns`: the guest's confinement — seccomp, cgroups — without the shared mode's
//! addresses and programs), all in a network namespace the benchmark makes; from the host: TCP connect + request + close rate and bulk throughput,
//! rounds interleaved over the three, medians and ratios; then start time of the shared and
//! the netns guest (interleaved) and the socket programs' attach time per start.
//!
//! `many [--guests N] [--depth D] [--configured M]` (root): N busybox guests (one shared root)
//! in a depends graph D layers deep, all marked `default`: start and stop all via --mark,
//! parallel and serial; then the daemon's RSS and idle wake-ups with M configured guests, and
//! List latency.
//!
//! `metrics [--guests N] [--scrapes N]` (root): N running busybox guests (limited, loopback
//! only, one shared root) and one stopped; then the Metrics call N times on one connection
//! (p50/p99, the daemon's CPU time per call), its rendering to Prometheus's format, and whole
//! HTTP scrapes of vserverd-metrics; prints the exposition's size and sample count.
//!
//! `unify [--guests N]` (root): N copies (`cp -a --reflink=never`) of the cached Debian 12 tree
//! (scripts/debian-guest.sh) on a fresh XFS loop image, three times over: (A) `vserverctl
//! unify` with the default exclude lists, cold caches, then again with nothing changed (caches
//! warm), then `--no-excludes` on top; (B) `duperemove -dr --hashfile` on fresh copies; (C)
//! `unify --no-excludes` on fresh copies, cold. Prints df's Used minus the empty file
//! system's after each, against one guest, and the wall times.
//!
//! `dlimits [--iterations N]` (root): two busybox guests on subvolumes of a btrfs loop image
//! with quotas on, one with a disk limit (dlimits/: a qgroup limit set at start, taken away at
//! stop) and one without; start and stop of each, interleaved; prints the medians and what the
//! limit adds, and the cost of `stat` with the limit's figures.

use std::time::Instant;

use harness::varlink::Raw;
use harness::{GuestBuilder, TestDaemon};
use serde_json::json;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn bench_list(args: &[String]) {
    let guests = arg(args, "--guests", 3);
    let calls = arg(args, "--calls", 10_000);
    let mut d = TestDaemon::prepare();
    for i in 0..guests {
        GuestBuilder::new(&format!("g{i:04}"))
            .context(40000 + i as u32)
            .file("apps/init/mark", "default\n")
            .write(&d);
    }
    d.spawn();
    let mut c = Raw::connect(&d.socket);
    println!(
        "List with {guests} guests, {calls} calls on one connection: {}",
        list_latency(&mut c, calls, guests)
    );
}

/// `calls` List calls on `c`, each reply checked to hold `guests` guests. Two times per call:
/// the whole reply received, and decoded into the typed reply as a client (vserverctl) does.
fn list_latency(c: &mut Raw, calls: usize, guests: usize) -> String {
    let call = {
        let mut b =
            serde_json::to_vec(&json!({"method": "org.linux-vserver.Manager.List"})).expect("json");
        b.push(0);
        b
    };
    #[derive(serde::Deserialize)]
    struct Reply {
        parameters: proto::GuestList,
    }
    let (mut received, mut decoded) = (Vec::with_capacity(calls), Vec::with_capacity(calls));
    let mut size = 0;
    let t0 = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        c.send_bytes(&call);
        let bytes = c.recv_bytes().expect("a reply");
        received.push(t.elapsed().as_secs_f64() * 1e6);
        size = bytes.len();
        let r: Reply = serde_json::from_slice(&bytes).expect("a GuestList");
        decoded.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(r.parameters.guests.len(), guests);
    }
    let total = t0.elapsed().as_secs_f64();
    received.sort_by(|a, b| a.total_cmp(b));
    decoded.sort_by(|a, b| a.total_cmp(b));
    format!(
        "reply received p50 {:.0} µs, p99 {:.0} µs; decoded p50 {:.0} µs, p99 {:.0} µs; \
         {:.0} calls/s ({size} bytes a reply)",
        percentile(&received, 0.5),
        percentile(&received, 0.99),
        percentile(&decoded, 0.5),
        percentile(&decoded, 0.99),
        calls as f64 / total,
    )
}

fn bench_calls(args: &[String]) {
    let calls = arg(args, "--calls", 3000);
    let daemons: Vec<(u32, TestDaemon)> = [10u32, 1000]
        .into_iter()
        .map(|n| {
            let mut d = TestDaemon::prepare();
            for i in 0..n {
                GuestBuilder::new(&format!("g{i:04}"))
                    .context(40000 + i)
                    .write(&d);
            }
            d.spawn();
            // The watcher's catalog is live once List shows every guest.
            let mut c = Raw::connect(&d.socket);
            let _ = list_latency(&mut c, 1, n as usize);
            (n, d)
        })
        .collect();
    for method in ["Status", "Validate"] {
        let call = {
            let mut b = serde_json::to_vec(&json!({
                "method": format!("org.linux-vserver.Manager.{method}"),
                "parameters": {"name": "g0000"},
            }))
            .expect("json");
            b.push(0);
            b
        };
        // Interleaved rounds of 100 calls, so that the machine's noise falls on both alike.
        let mut conns: Vec<(u32, Raw, Vec<f64>)> = daemons
            .iter()
            .map(|(n, d)| (*n, Raw::connect(&d.socket), Vec::with_capacity(calls)))
            .collect();
        for _ in 0..calls.div_ceil(100) {
            for (_, c, times) in conns.iter_mut() {
                for _ in 0..100 {
                    let t = Instant::now();
                    c.send_bytes(&call);
                    let bytes = c.recv_bytes().expect("a reply");
                    times.push(t.elapsed().as_secs_f64() * 1e6);
                    assert!(!bytes.starts_with(b"{\"error\""), "{method} failed");
                }
            }
        }
        let p50: Vec<(u32, f64, f64)> = conns
            .into_iter()
            .map(|(n, _, mut t)| {
                t.sort_by(|a, b| a.total_cmp(b));
                (n, percentile(&t, 0.5), percentile(&t, 0.99))
            })
            .collect();
        println!(
            "{method} of one guest, {calls} calls on one connection: {} — 1000/10 = {:.2}x",
            p50.iter()
                .map(|(n, a, b)| format!("{n} guests p50 {a:.0} µs, p99 {b:.0} µs"))
                .collect::<Vec<_>>()
                .join("; "),
            p50[1].1 / p50[0].1
        );
    }
}

/// Runs a command, panicking with its output when it fails.
fn run(cmd: &mut std::process::Command) {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}): {}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    percentile(&v, 0.5)
}

/// Times `f` `n` times (after one warm-up run), in milliseconds.
fn time_n(n: usize, f: impl FnMut()) -> Vec<f64> {
    time_spaced(n, std::time::Duration::ZERO, f)
}

/// As [`time_n`], each run `pause` after the last.
fn time_spaced(n: usize, pause: std::time::Duration, mut f: impl FnMut()) -> Vec<f64> {
    f();
    (0..n)
        .map(|_| {
            std::thread::sleep(pause);
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn bench_lifecycle(args: &[String]) {
    use std::process::Command;
    let n = arg(args, "--iterations", 20);
    // The daemon as it runs in production: info-level logging.
    std::env::set_var("VSERVERD_TEST_LOG", "info");
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("bench").context(49000).write(&d);
    // The same guest on the host's network stack, for the cost of the default guest's own
    // loopback-only network namespace.
    GuestBuilder::busybox("benchhost")
        .context(49001)
        .file("noncontext", "")
        .write(&d);
    d.spawn();
    let ctl = harness::bins::vserverctl();
    let sock = d.socket.clone();
    let vsd_start = std::cell::RefCell::new(Vec::new());
    let ours = modes(n, || {
        let t = Instant::now();
        run(Command::new(&ctl)
            .arg("--socket")
            .arg(&sock)
            .args(["start", "bench"]));
        vsd_start.borrow_mut().push(t.elapsed().as_secs_f64() * 1e3);
        run(Command::new(&ctl)
            .arg("--socket")
            .arg(&sock)
            .args(["stop", "bench"]));
    });
    let vsd_start = vsd_start.into_inner();
    // Interleaved, back to back: start alone of each network mode, then its stop.
    let (mut own_net, mut host_net) = (Vec::new(), Vec::new());
    for _ in 0..n {
        for (g, v) in [("bench", &mut own_net), ("benchhost", &mut host_net)] {
            let t = Instant::now();
            run(Command::new(&ctl)
                .arg("--socket")
                .arg(&sock)
                .args(["start", g]));
            v.push(t.elapsed().as_secs_f64() * 1e3);
            run(Command::new(&ctl)
                .arg("--socket")
                .arg(&sock)
                .args(["stop", g]));
        }
    }

    // LXC on a copy of the same root, its own lxcpath, no network.
    let lxc_dir = d.dir.path().join("lxc");
    let rootfs = lxc_dir.join("rootfs");
    std::fs::create_dir_all(&lxc_dir).unwrap();
    run(Command::new("cp")
        .arg("-a")
        .arg(d.guest_root("bench"))
        .arg(&rootfs));
    let conf = lxc_dir.join("config");
    std::fs::write(
        &conf,
        format!(
            "lxc.uts.name = bench\nlxc.rootfs.path = dir:{}\nlxc.init.cmd = /sbin/init\n\
             lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n\
             lxc.mount.auto = proc:mixed sys:ro\nlxc.autodev = 1\nlxc.tty.max = 0\n\
             lxc.pty.max = 8\nlxc.signal.halt = SIGINT\nlxc.log.level = ERROR\n",
            rootfs.display()
        ),
    )
    .unwrap();
    let lxc_path = lxc_dir.display().to_string();
    let conf_s = conf.display().to_string();
    let lxc = |args: &[&str]| {
        let mut c = Command::new(args[0]);
        c.args(["-P", &lxc_path, "-n", "vsdbench"]).args(&args[1..]);
        c
    };
    let lxc_ok = lxc(&["lxc-start", "-d", "-f", &conf_s])
        .status()
        .is_ok_and(|s| s.success());
    let lxc_times = if lxc_ok {
        run(&mut lxc(&["lxc-wait", "-s", "RUNNING", "-t", "10"]));
        run(&mut lxc(&["lxc-stop", "-k"]));
        Some(modes(n, || {
            run(&mut lxc(&["lxc-start", "-d", "-f", &conf_s]));
            run(&mut lxc(&["lxc-wait", "-s", "RUNNING", "-t", "10"]));
            run(&mut lxc(&["lxc-stop", "-k"]));
        }))
    } else {
        eprintln!("lxc-start failed here: LXC left out (install lxc; see scripts/setup.sh)");
        None
    };

    let nspawn_root = d.guest_root("bench");
    let nspawn = |c: &mut Command| {
        c.args(["-q", "--register=no", "--keep-unit", "-D"])
            .arg(&nspawn_root)
            .arg("/bin/true");
    };
    let nspawn_ok = {
        let mut c = Command::new("systemd-nspawn");
        nspawn(&mut c);
        c.output().is_ok_and(|o| o.status.success())
    };
    let nspawn_times = nspawn_ok.then(|| {
        modes(n, || {
            let mut c = Command::new("systemd-nspawn");
            nspawn(&mut c);
            run(&mut c);
        })
    });

    println!("lifecycle, {n} iterations each, median wall time:");
    let (own, host) = (median(own_net), median(host_net));
    println!(
        "  network, start alone, interleaved: own loopback namespace (the default) {own:.2} ms, \
         the host's stack (noncontext) {host:.2} ms: {:+.2} ms",
        own - host
    );
    // Start alone: the spaced runs come second.
    let (b2b_start, spaced_start) = vsd_start.split_at(vsd_start.len() / 2);
    for (i, mode) in ["back to back", "spaced"].iter().enumerate() {
        let ours_m = median(ours[i].clone());
        let start = median(if i == 0 { b2b_start } else { spaced_start }.to_vec());
        println!(
            "  {mode}{}:",
            if i == 0 {
                ""
            } else {
                " (200 ms idle before each run)"
            }
        );
        println!("    vserverd   start + stop   {ours_m:7.2} ms   (start alone {start:.2} ms)");
        if let Some(t) = &lxc_times {
            let m = median(t[i].clone());
            println!(
                "    lxc        start -d + wait RUNNING + stop -k   {m:7.2} ms   vserverd/lxc = {:.2}",
                ours_m / m
            );
        }
        if let Some(t) = &nspawn_times {
            let m = median(t[i].clone());
            println!(
                "    nspawn     /bin/true      {m:7.2} ms   vserverd/nspawn = {:.2}",
                ours_m / m
            );
        }
    }
}

fn bench_userns(args: &[String]) {
    use std::process::Command;
    let n = arg(args, "--iterations", 20);
    std::env::set_var("VSERVERD_TEST_LOG", "info");
    let netns = args.iter().any(|a| a == "--netns");
    let mut d = TestDaemon::prepare();
    if netns {
        d.host_netns();
    }
    for (g, ctx, user) in [("plain", 49010, false), ("userns", 49011, true)] {
        let mut b = GuestBuilder::busybox(g).context(ctx);
        if user {
            b = b.file("spaces/user", "");
        }
        if netns {
            b = b
                .file("apps/vserverd/netmode", "netns\n")
                .file("interfaces/0/ip", &format!("10.79.9.{}\n", ctx - 49000))
                .file("interfaces/0/prefix", "24\n")
                .file("interfaces/0/nodev", "");
        }
        b.write(&d);
    }
    d.spawn();
    let ctl = harness::bins::vserverctl();
    let sock = d.socket.clone();
    let call = |what: &str, g: &str| {
        let t = Instant::now();
        run(Command::new(&ctl)
            .arg("--socket")
            .arg(&sock)
            .args([what, g]));
        t.elapsed().as_secs_f64() * 1e3
    };
    // Warm-up (and the range allocated: the first start writes the state file).
    for g in ["plain", "userns"] {
        call("start", g);
        call("stop", g);
    }
    println!(
        "userns{}, {n} iterations each, interleaved, median wall time:",
        if netns { " --netns" } else { "" }
    );
    for (mode, pause) in [
        ("back to back", std::time::Duration::ZERO),
        (
            "spaced (200 ms idle before each start)",
            std::time::Duration::from_millis(200),
        ),
    ] {
        let mut t: [[Vec<f64>; 2]; 2] = Default::default();
        for _ in 0..n {
            for (i, g) in ["plain", "userns"].iter().enumerate() {
                std::thread::sleep(pause);
                t[i][0].push(call("start", g));
                t[i][1].push(call("stop", g));
            }
        }
        let m = |v: &Vec<f64>| median(v.clone());
        println!("  {mode}:");
        for (i, g) in ["default (host root)", "spaces/user"].iter().enumerate() {
            println!(
                "    {g:20} start {:7.2} ms   stop {:7.2} ms",
                m(&t[i][0]),
                m(&t[i][1])
            );
        }
        println!(
            "    start: spaces/user / default = {:.2} (goal <= 1.2)",
            m(&t[1][0]) / m(&t[0][0])
        );
    }
}

/// Times `f` both ways: back to back, where whatever the kernel warmed up for the last run
/// is still warm (the RCU sync state of the cgroup threadgroup lock above all), and spaced,
/// each run 200 ms after the last, as starts come on a host in practice.
fn modes(n: usize, mut f: impl FnMut()) -> [Vec<f64>; 2] {
    [
        time_n(n, &mut f),
        time_spaced(n, std::time::Duration::from_millis(200), &mut f),
    ]
}

fn proc_field(pid: u32, key: &str) -> u64 {
    let mut total = 0;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten();
    for t in tasks {
        let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        for l in s.lines() {
            if let Some(v) = l.strip_prefix(&format!("{key}:")) {
                total += v
                    .split_whitespace()
                    .next()
                    .and_then(|x| x.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        if key == "VmRSS" {
            break; // per process, not per thread
        }
    }
    total
}

/// Runs vserverctl on daemon `d`; returns the seconds it took.
fn timed_ctl(d: &TestDaemon, args: &[&str]) -> f64 {
    let t = Instant::now();
    run(std::process::Command::new(harness::bins::vserverctl())
        .arg("--socket")
        .arg(&d.socket)
        .args(args));
    t.elapsed().as_secs_f64()
}

/// Writes guest `g` (named `name`) with its vdir a link to the one busybox `root`.
fn on_shared_root(d: &TestDaemon, g: GuestBuilder, name: &str, root: &std::path::Path) {
    let cfg = g.write(d);
    let _ = std::fs::remove_dir(d.vdir_base.join(name));
    std::os::unix::fs::symlink(root, cfg.join("vdir")).unwrap();
}

fn bench_many(args: &[String]) {
    let n = arg(args, "--guests", 200);
    let depth = arg(args, "--depth", 5).max(1);
    let configured = arg(args, "--configured", 1000);
    std::env::set_var("VSERVERD_TEST_LOG", "warn");
    let mut d = TestDaemon::prepare();
    let root = d.vdir_base.join("shared");
    harness::guest::busybox_root(&root);
    let per_layer = n.div_ceil(depth);
    for i in 0..n {
        let layer = i / per_layer;
        let mut g = GuestBuilder::new(&format!("g{i:04}"))
            .context(10000 + i as u32)
            .file("apps/init/style", "plain\n")
            .file("apps/init/mark", "default\n");
        if layer > 0 {
            // Each guest depends on one guest of the layer below.
            let dep = (layer - 1) * per_layer + (i % per_layer);
            g = g.file("apps/init/depends", &format!("g{dep:04}\n"));
        }
        on_shared_root(&d, g, &format!("g{i:04}"), &root);
    }
    d.spawn();
    let run_ctl = |a: &[&str]| timed_ctl(&d, a);
    println!("{n} busybox guests, depends graph {depth} layers deep, all marked default:");
    for par in ["6", "16", "1"] {
        // List keeps answering while guests start: its worst latency during the mass start.
        let stop_probe = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probe = {
            let stop = stop_probe.clone();
            let sock = d.socket.clone();
            std::thread::spawn(move || {
                let mut c = Raw::connect(&sock);
                let mut times = vec![];
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let t = Instant::now();
                    c.send(&json!({"method": "org.linux-vserver.Manager.List"}));
                    c.recv_bytes().expect("a reply");
                    times.push(t.elapsed().as_secs_f64() * 1e3);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                times.sort_by(|a, b| a.total_cmp(b));
                times
            })
        };
        let up = run_ctl(&["start", "--mark", "default", "--parallel", par]);
        stop_probe.store(true, std::sync::atomic::Ordering::SeqCst);
        let times = probe.join().unwrap();
        println!(
            "  (List during that start, {} calls: p50 {:.2} ms, p99 {:.1} ms, worst {:.1} ms)",
            times.len(),
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times.last().copied().unwrap_or(0.0)
        );
        let pid = d.pid().unwrap();
        let rss = proc_field(pid, "VmRSS");
        let down = run_ctl(&["stop", "--mark", "default", "--parallel", par]);
        println!("  --parallel {par:>2}: start all {up:6.2} s, stop all {down:6.2} s (daemon RSS with all running: {:.1} MB)", rss as f64 / 1024.0);
    }
    drop(d);

    // Configured-only guests: memory and idle cost of the daemon.
    let mut d = TestDaemon::prepare();
    for i in 0..configured {
        GuestBuilder::new(&format!("c{i:05}"))
            .context(2 + i as u32)
            .file("apps/init/mark", "default\n")
            .write(&d);
    }
    d.spawn();
    let pid = d.pid().unwrap();
    let mut c = Raw::connect(&d.socket);
    let list = list_latency(&mut c, 500, configured);
    let before =
        proc_field(pid, "voluntary_ctxt_switches") + proc_field(pid, "nonvoluntary_ctxt_switches");
    std::thread::sleep(std::time::Duration::from_secs(10));
    let after =
        proc_field(pid, "voluntary_ctxt_switches") + proc_field(pid, "nonvoluntary_ctxt_switches");
    println!(
        "{configured} configured guests: daemon RSS {:.1} MB, idle wake-ups {:.1}/s, List: {list}",
        proc_field(pid, "VmRSS") as f64 / 1024.0,
        (after - before) as f64 / 10.0,
    );
}

fn mem_available_kb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn read_num(p: &str) -> u64 {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Every pid on the host, with its cgroup (v1 `pids` line or the v2 line).
fn host_processes() -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
            Some((pid, cg))
        })
        .collect()
}

/// Proportional set size of `pid` in kB (smaps_rollup).
fn pss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Voluntary + involuntary context switches of every thread of `pids`.
fn wakeups(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|pid| {
            proc_field(*pid, "voluntary_ctxt_switches")
                + proc_field(*pid, "nonvoluntary_ctxt_switches")
        })
        .sum()
}

fn bench_density(args: &[String]) {
    let n = arg(args, "--guests", 1000);
    // --host-net: the guests on the host's network stack (nonetns), to see what the default
    // loopback-only namespace costs.
    let host_net = args.iter().any(|a| a == "--host-net");
    std::env::set_var("VSERVERD_TEST_LOG", "warn");
    let mut d = TestDaemon::prepare();
    let root = d.vdir_base.join("shared");
    harness::guest::busybox_root(&root);
    let extra: &[(&str, &str)] = if host_net { &[("nonetns", "")] } else { &[] };
    harness::guest::limited_guests_on_one_root(&d, "d", n, 20000, "dense", &root, extra);
    d.spawn();
    let run_ctl = |a: &[&str]| timed_ctl(&d, a);
    let ours = |cg: &str| cg.contains(&format!("/{}/", d.cgroup_prefix));
    // Settle, then the baseline.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let procs_before = host_processes().len();
    let avail_before = mem_available_kb();
    let ptys_before = read_num("/proc/sys/kernel/pty/nr");
    let up = run_ctl(&["start", "--mark", "dense"]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let all = host_processes();
    let guest_pids: Vec<u32> = all
        .iter()
        .filter(|(_, cg)| ours(cg) && !cg.contains("/.vserverd-"))
        .map(|(p, _)| *p)
        .collect();
    let guests_pss: u64 = guest_pids.iter().map(|p| pss_kb(*p)).sum();
    let avail_after = mem_available_kb();
    let extra_procs = all.len() as i64 - procs_before as i64 - guest_pids.len() as i64;
    let per_guest_kb =
        (avail_before.saturating_sub(avail_after)).saturating_sub(guests_pss) as f64 / n as f64;
    let daemon_rss = proc_field(d.pid().unwrap(), "VmRSS") as f64 / 1024.0;
    // The daemon and its helpers (in the prefix's .vserverd-* cgroups).
    let mut helpers: Vec<u32> = all
        .iter()
        .filter(|(_, cg)| ours(cg) && cg.contains("/.vserverd-"))
        .map(|(p, _)| *p)
        .collect();
    helpers.push(d.pid().unwrap());
    let w0 = wakeups(&helpers);
    std::thread::sleep(std::time::Duration::from_secs(10));
    let idle = wakeups(&helpers).saturating_sub(w0) as f64 / 10.0;
    let limits = [
        (
            "pids in use / kernel.pid_max",
            all.len() as u64,
            read_num("/proc/sys/kernel/pid_max"),
        ),
        (
            "ptys / kernel.pty.max",
            read_num("/proc/sys/kernel/pty/nr"),
            read_num("/proc/sys/kernel/pty/max"),
        ),
        (
            "memory cgroups / 65535 ids",
            std::fs::read_to_string("/proc/cgroups")
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with("memory"))
                .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
                .unwrap_or(0),
            65535,
        ),
        (
            "network namespaces / user.max_net_namespaces",
            {
                let mut seen = std::collections::HashSet::new();
                for (pid, _) in &all {
                    if let Ok(l) = std::fs::read_link(format!("/proc/{pid}/ns/net")) {
                        seen.insert(l);
                    }
                }
                seen.len() as u64
            },
            read_num("/proc/sys/user/max_net_namespaces"),
        ),
        (
            "inotify instances (all users) / fs.inotify.max_user_instances",
            all.iter()
                .map(|(pid, _)| {
                    std::fs::read_dir(format!("/proc/{pid}/fd"))
                        .into_iter()
                        .flatten()
                        .flatten()
                        .filter(|e| {
                            std::fs::read_link(e.path())
                                .is_ok_and(|l| l.to_string_lossy() == "anon_inode:inotify")
                        })
                        .count() as u64
                })
                .sum(),
            read_num("/proc/sys/fs/inotify/max_user_instances"),
        ),
    ];
    let down = run_ctl(&["stop", "--mark", "dense"]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let left_procs = host_processes()
        .iter()
        .filter(|(_, cg)| ours(cg) && !cg.contains("/.vserverd-"))
        .count();
    let left_cgroups = (0..n)
        .filter(|i| {
            d.cgroup_dirs(&format!("d{i:04}"))
                .iter()
                .any(|p| p.exists())
        })
        .count();
    let left_ptys = read_num("/proc/sys/kernel/pty/nr").saturating_sub(ptys_before);
    println!(
        "density: {n} busybox guests (64 MiB, 64 pids each; {}), default parallelism",
        if host_net {
            "the host's network stack"
        } else {
            "loopback-only network"
        }
    );
    println!("  start all                         {up:8.2} s");
    println!("  stop all                          {down:8.2} s");
    println!("  host memory per guest (beyond its own PSS) {per_guest_kb:8.0} kB   (MemAvailable drop {} MB, guests' PSS {} MB)",
        avail_before.saturating_sub(avail_after) / 1024, guests_pss / 1024);
    println!("  host processes beyond the guests' {extra_procs:8}");
    println!("  daemon RSS, all running           {daemon_rss:8.1} MB");
    println!("  idle wake-ups of daemon + helpers {idle:8.1} /s");
    for (what, used, max) in limits {
        println!("  {what:<62} {used:>7} / {max}");
    }
    // Open files of the daemon and each helper against its own soft RLIMIT_NOFILE (what a
    // systemd unit gets by default is 1024), and uid 0's keys (every guest without a user
    // namespace is uid 0 on the host: one quota for all).
    for pid in &helpers {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|r| r.count())
            .unwrap_or(0);
        let soft = std::fs::read_to_string(format!("/proc/{pid}/limits"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
            .unwrap_or_default();
        let what = format!("open files of {} / its soft RLIMIT_NOFILE", comm.trim());
        println!("  {what:<62} {open:>7} / {soft}");
    }
    let keys = std::fs::read_to_string("/proc/key-users").unwrap_or_default();
    if let Some(l) = keys.lines().find(|l| l.trim_start().starts_with("0:")) {
        let q = l.split_whitespace().nth(3).unwrap_or("?/?");
        let (used, max) = q.split_once('/').unwrap_or(("?", "?"));
        let what = "keys of uid 0 / kernel.keys.root_maxkeys";
        println!("  {what:<62} {used:>7} / {max}");
    }
    println!(
        "  left after stop: {left_procs} processes, {left_cgroups} guest cgroups, {left_ptys} ptys"
    );
}

/// How long a new guest folder takes to show in List (the watcher's latency).
fn bench_watch(args: &[String]) {
    let n = arg(args, "--guests", 50);
    std::env::set_var("VSERVERD_TEST_LOG", "warn");
    let d = TestDaemon::start();
    let mut c = Raw::connect(&d.socket);
    let mut lat = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        GuestBuilder::new(&format!("w{i:04}"))
            .context(20000 + i as u32)
            .write(&d);
        loop {
            let r = c.call("org.linux-vserver.Manager.List", json!({}));
            if r["parameters"]["guests"].as_array().map(|a| a.len()) == Some(i + 1) {
                break;
            }
            assert!(t.elapsed().as_secs() < 10, "guest w{i:04} never appeared");
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "a new guest folder shows in List after: p50 {:.1} ms, max {:.1} ms ({n} guests)",
        percentile(&lat, 0.5),
        lat[lat.len() - 1]
    );
}

/// df's Used of the file system at `p`, after a sync.
fn used(p: &std::path::Path) -> u64 {
    nix::unistd::sync();
    let s = nix::sys::statvfs::statvfs(p).expect("statvfs");
    (s.blocks() - s.blocks_free()) as u64 * s.fragment_size() as u64
}

fn drop_caches() {
    nix::unistd::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").expect("drop caches");
}

/// A daemon whose vdir base is a fresh XFS loop image holding `n` guests, each a full copy
/// of `tree`; returns it with df's Used of the empty file system and with one guest.
fn unify_set(tree: &str, n: usize) -> (TestDaemon, u64, u64) {
    use std::process::Command;
    let d = TestDaemon::prepare();
    let img = d.dir.path().join("xfs.img");
    std::fs::File::create(&img)
        .expect("image")
        .set_len(6 << 30)
        .expect("size");
    run(Command::new("mkfs.xfs")
        .args(["-q", "-f", "-m", "reflink=1"])
        .arg(&img));
    run(Command::new("mount")
        .args(["-o", "loop"])
        .arg(&img)
        .arg(&d.vdir_base));
    let empty = used(&d.vdir_base);
    let mut one = 0;
    for i in 0..n {
        let name = format!("u{i}");
        GuestBuilder::new(&name).context(49100 + i as u32).write(&d);
        let root = d.guest_root(&name);
        std::fs::remove_dir(&root).expect("rmdir");
        run(Command::new("cp")
            .args(["-a", "--reflink=never", tree])
            .arg(&root));
        if i == 0 {
            one = used(&d.vdir_base) - empty;
        }
    }
    (d, empty, one)
}

fn unmount_set(d: &mut TestDaemon) {
    d.kill();
    run(std::process::Command::new("umount").arg(&d.vdir_base));
}

fn bench_unify(args: &[String]) {
    use std::process::Command;
    let n = arg(args, "--guests", 10);
    let Some(tree) = harness::guest::debian_tree(&[]) else {
        eprintln!("the Debian tree cannot be built (scripts/debian-guest.sh)");
        std::process::exit(1);
    };
    std::env::set_var("VSERVERD_TEST_LOG", "info");
    let ctl = harness::bins::vserverctl();
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let unify = |d: &TestDaemon, extra: &[&str]| -> (f64, serde_json::Value) {
        let t = Instant::now();
        let o = Command::new(&ctl)
            .arg("--socket")
            .arg(&d.socket)
            .args(["unify", "--all", "--json"])
            .args(extra)
            .output()
            .expect("vserverctl");
        let secs = t.elapsed().as_secs_f64();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        if let Some(l) = d.log().lines().rev().find(|l| l.contains("unify: phases")) {
            eprintln!("{}", l.trim());
        }
        (secs, serde_json::from_slice(&o.stdout).expect("report"))
    };
    let line = |what: &str, secs: Option<f64>, u: u64, one: u64| {
        println!(
            "{what:<44} {:>8} used {:>8.1} MiB = {:.2}x one guest",
            secs.map_or(String::new(), |s| format!("{s:.1} s")),
            mib(u),
            u as f64 / one as f64
        );
    };

    // A: default excludes, then a re-run, then no excludes.
    let (mut d, empty, one) = unify_set(&tree, n);
    d.spawn();
    println!(
        "one guest: {:.1} MiB (df Used minus the empty file system's)",
        mib(one)
    );
    line(
        &format!("{n} copies"),
        None,
        used(&d.vdir_base) - empty,
        one,
    );
    drop_caches();
    let (t_a, r) = unify(&d, &[]);
    line(
        "unify, default excludes (cold)",
        Some(t_a),
        used(&d.vdir_base) - empty,
        one,
    );
    eprintln!("report: {r}");
    let (t_a2, r) = unify(&d, &[]);
    println!(
        "{:<44} {:>6.2} s = {:.1}% of the first (hashed {} files, {} from the store)",
        "unify again, nothing changed (warm)",
        t_a2,
        100.0 * t_a2 / t_a,
        r["hashed_files"],
        r["cached_files"]
    );
    let (t, _) = unify(&d, &["--no-excludes"]);
    line(
        "then unify --no-excludes",
        Some(t),
        used(&d.vdir_base) - empty,
        one,
    );
    unmount_set(&mut d);
    drop(d);

    // B: duperemove on fresh copies, cold.
    let (mut d, empty, one) = unify_set(&tree, n);
    let roots: Vec<_> = (0..n).map(|i| d.guest_root(&format!("u{i}"))).collect();
    drop_caches();
    let t = Instant::now();
    let o = Command::new("duperemove")
        .args(["-dr", "-q", "--hashfile"])
        .arg(d.dir.path().join("duperemove.hash"))
        .args(&roots)
        .output()
        .expect("duperemove (apt-get install duperemove)");
    let t_dup = t.elapsed().as_secs_f64();
    if !o.status.success() {
        eprintln!("duperemove: {}", String::from_utf8_lossy(&o.stderr));
    }
    line(
        "duperemove -dr --hashfile (cold)",
        Some(t_dup),
        used(&d.vdir_base) - empty,
        one,
    );
    unmount_set(&mut d);
    drop(d);

    // C: unify --no-excludes on fresh copies, cold: the same scope as duperemove's.
    let (mut d, empty, one) = unify_set(&tree, n);
    d.spawn();
    drop_caches();
    let (t_c, r) = unify(&d, &["--no-excludes"]);
    line(
        "unify --no-excludes (cold)",
        Some(t_c),
        used(&d.vdir_base) - empty,
        one,
    );
    eprintln!("report: {r}");
    println!("unify / duperemove wall time: {:.2}", t_c / t_dup);
    unmount_set(&mut d);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("list") => bench_list(&args[1..]),
        Some("lifecycle") => bench_lifecycle(&args[1..]),
        Some("userns") => bench_userns(&args[1..]),
        Some("many") => bench_many(&args[1..]),
        Some("calls") => bench_calls(&args[1..]),
        Some("watch") => bench_watch(&args[1..]),
        Some("density") => bench_density(&args[1..]),
        Some("net") => bench_net(&args[1..]),
        Some("serve") => serve(&args[1..]),
        Some("unify") => bench_unify(&args[1..]),
        Some("metrics") => bench_metrics(&args[1..]),
        Some("dlimits") => bench_dlimits(&args[1..]),
        Some("procview") => bench_procview(&args[1..]),
        Some("breakdown") => bench_breakdown(&args[1..]),
        Some("procview-read") => procview_read(&args[1..]),
        Some("sysinfo-loop") => sysinfo_loop(&args[1..]),
        _ => {
            eprintln!(
                "usage: vserverd-bench list [--guests N] [--calls N] | calls [--calls N] | \
                 lifecycle [--iterations N] | userns [--iterations N] [--netns] | many … | watch … | \
                 net … | density [--guests N] | unify [--guests N] | \
                 metrics [--guests N] [--scrapes N] | procview [--reads N] | breakdown [--n N] | \
                 dlimits [--iterations N]"
            );
            std::process::exit(2);
        }
    }
}

/// The process's user plus system CPU time, in seconds (/proc/PID/stat fields 14 and 15).
fn cpu_seconds(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    f.iter().sum::<u64>() as f64 / 100.0
}

fn bench_metrics(args: &[String]) {
    let n = arg(args, "--guests", 100);
    let scrapes = arg(args, "--scrapes", 200);
    std::env::set_var("VSERVERD_TEST_LOG", "warn");
    let mut d = TestDaemon::prepare();
    let root = d.vdir_base.join("shared");
    harness::guest::busybox_root(&root);
    harness::guest::limited_guests_on_one_root(&d, "m", n, 21000, "scraped", &root, &[]);
    GuestBuilder::busybox("stopped").context(20999).write(&d);
    d.spawn();
    let up = timed_ctl(&d, &["start", "--mark", "scraped"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let pid = d.pid().unwrap();
    let mut c = Raw::connect(&d.socket);
    let call = json!({"method": "org.linux-vserver.Manager.Metrics"});
    // Warm: the List cache and the page cache.
    c.send(&call);
    let first = c.recv_bytes().expect("a reply");
    let cpu0 = cpu_seconds(pid);
    let mut times = vec![];
    let mut bytes = first.len();
    for _ in 0..scrapes {
        let t = Instant::now();
        c.send(&call);
        bytes = c.recv_bytes().expect("a reply").len();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let cpu = (cpu_seconds(pid) - cpu0) / scrapes as f64 * 1e3;
    times.sort_by(|a, b| a.total_cmp(b));
    let v: serde_json::Value = serde_json::from_slice(&first).unwrap();
    let reply: proto::MetricsReply = serde_json::from_value(v["parameters"].clone()).unwrap();
    let t = Instant::now();
    let mut text = String::new();
    for _ in 0..scrapes {
        text = proto::exposition::render(Some(&reply));
    }
    let render_ms = t.elapsed().as_secs_f64() * 1e3 / scrapes as f64;
    let samples = text.lines().filter(|l| !l.starts_with('#')).count();
    println!(
        "{n} running guests (+1 stopped), started in {up:.1} s; {scrapes} Metrics calls on one connection:"
    );
    println!(
        "  Metrics call: p50 {:.2} ms, p99 {:.2} ms; daemon CPU {cpu:.2} ms per call (clock ticks: 10 ms resolution, averaged); reply {:.1} KiB",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        bytes as f64 / 1024.0
    );
    println!(
        "  rendering: {render_ms:.3} ms; exposition {:.1} KiB, {samples} samples",
        text.len() as f64 / 1024.0
    );
    // Whole scrapes over HTTP, through the exporter (a connection to the daemon per scrape).
    let exporter = harness::guest::workspace_binary("vserverd-metrics");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(exporter)
        .arg("--socket")
        .arg(&d.socket)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .spawn()
        .unwrap();
    let get = || -> Option<usize> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: b\r\n\r\n")
            .ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).ok()?;
        Some(out.len())
    };
    let t0 = Instant::now();
    while get().is_none() && t0.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let ecpu0 = cpu_seconds(child.id());
    let mut http = vec![];
    for _ in 0..scrapes {
        let t = Instant::now();
        get().expect("a scrape");
        http.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let ecpu = (cpu_seconds(child.id()) - ecpu0) / scrapes as f64 * 1e3;
    http.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  HTTP scrape of vserverd-metrics: p50 {:.2} ms, p99 {:.2} ms; exporter CPU {ecpu:.2} ms per scrape; exporter RSS {:.1} MB",
        percentile(&http, 0.5),
        percentile(&http, 0.99),
        proc_field(child.id(), "VmRSS") as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
    timed_ctl(&d, &["stop", "--mark", "scraped"]);
}

/// Start, stop and stat of a guest with a btrfs qgroup limit against one without.
fn bench_dlimits(args: &[String]) {
    let n = arg(args, "--iterations", 20);
    std::env::set_var("VSERVERD_TEST_LOG", "info");
    let mut d = TestDaemon::prepare();
    let _mnt = harness::loopfs::btrfs_with_quota(&d, &["limited", "free"])
        .expect("btrfs-progs and mkfs.btrfs");
    let root = d.vdir_base.join("limited");
    GuestBuilder::busybox("limited")
        .context(49100)
        .file("dlimits/0/directory", &format!("{}\n", root.display()))
        .file("dlimits/0/space_total", "1048576\n")
        .file("dlimits/0/inodes_total", "-1\n")
        .file("dlimits/0/reserved", "0\n")
        .write(&d);
    GuestBuilder::busybox("free").context(49101).write(&d);
    d.spawn();
    let (mut start, mut stop) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for _ in 0..n {
        for (i, g) in ["limited", "free"].iter().enumerate() {
            start[i].push(timed_ctl(&d, &["start", g]) * 1e3);
            stop[i].push(timed_ctl(&d, &["stop", g]) * 1e3);
        }
    }
    d.ctl_ok(&["start", "limited"]);
    d.ctl_ok(&["start", "free"]);
    let stat: Vec<f64> = (0..n)
        .map(|_| timed_ctl(&d, &["stat", "--json"]) * 1e3)
        .collect();
    d.ctl_ok(&["stop", "limited"]);
    d.ctl_ok(&["stop", "free"]);
    let [sl, sf] = start.map(median);
    let [tl, tf] = stop.map(median);
    println!("dlimits: {n} rounds, btrfs qgroup limit, medians");
    println!(
        "  start with a limit   {sl:7.1} ms   without {sf:7.1} ms   (+{:.1} ms)",
        sl - sf
    );
    println!(
        "  stop  with a limit   {tl:7.1} ms   without {tf:7.1} ms   (+{:.1} ms)",
        tl - tf
    );
    println!(
        "  stat --json (two guests, one limited)  {:.1} ms",
        median(stat)
    );
}

/// `serve ADDR PORT`: the benchmark's TCP server. Each connection sends "N\n" and gets N bytes
/// (N = 0: "ok\n"), then the server closes it. Sequential: the client is.
fn serve(args: &[String]) {
    use std::io::{BufRead, Write};
    let l = std::net::TcpListener::bind((args[0].as_str(), args[1].parse::<u16>().unwrap()))
        .expect("bind");
    let chunk = vec![0x5au8; 1 << 16];
    for c in l.incoming() {
        let Ok(c) = c else { continue };
        let mut r = std::io::BufReader::new(&c);
        let mut line = String::new();
        if r.read_line(&mut line).is_err() {
            continue;
        }
        let mut n: u64 = line.trim().parse().unwrap_or(0);
        let mut w = &c;
        if n == 0 {
            let _ = w.write_all(b"ok\n");
            continue;
        }
        while n > 0 {
            let k = n.min(chunk.len() as u64) as usize;
            if w.write_all(&chunk[..k]).is_err() {
                break;
            }
            n -= k as u64;
        }
    }
}

/// Connections per second: `n` times connect, ask for the short answer, read to EOF, close.
fn conn_rate(addr: std::net::SocketAddr, n: usize) -> f64 {
    use std::io::{Read, Write};
    let t = Instant::now();
    let mut buf = [0u8; 16];
    for _ in 0..n {
        let mut c = std::net::TcpStream::connect(addr).expect("connect");
        c.write_all(b"0\n").unwrap();
        while c.read(&mut buf).unwrap() > 0 {}
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// MB/s of one connection reading `mbytes` MB.
fn bulk(addr: std::net::SocketAddr, mbytes: u64) -> f64 {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    let t = Instant::now();
    c.write_all(format!("{}\n", mbytes << 20).as_bytes())
        .unwrap();
    let mut buf = vec![0u8; 1 << 17];
    let mut got = 0u64;
    loop {
        let k = c.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        got += k as u64;
    }
    assert_eq!(got, mbytes << 20);
    mbytes as f64 / t.elapsed().as_secs_f64()
}

fn bench_net(args: &[String]) {
    use std::os::fd::AsFd;
    use std::process::Command;
    let rounds = arg(args, "--rounds", 9);
    let conns = arg(args, "--conns", 2000);
    let mbytes = arg(args, "--mbytes", 512) as u64;
    let starts = arg(args, "--starts", 10);
    std::env::set_var("VSERVERD_TEST_LOG", "info");
    let mut d = TestDaemon::prepare();
    let ns = d.host_netns();
    for a in [
        "ip link add vh0 type veth peer name vh1",
        "ip link set vh0 up",
        "ip link set vh1 up",
        "ip addr add 10.80.255.1/32 dev lo",
    ] {
        run(Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .args(a.split(' ')));
    }
    let me = std::env::current_exe().unwrap();
    GuestBuilder::busybox("shared")
        .context(49100)
        .file("apps/vserverd/netmode", "shared\n")
        .file("interfaces/0/ip", "10.80.0.2\n")
        .file("interfaces/0/prefix", "24\n")
        .file("interfaces/0/dev", "vh0\n")
        .write(&d);
    GuestBuilder::busybox("veth")
        .context(49101)
        .file("apps/vserverd/netmode", "netns\n")
        .file("interfaces/0/ip", "10.80.1.2\n")
        .file("interfaces/0/prefix", "24\n")
        .file("interfaces/0/nodev", "")
        .write(&d);
    GuestBuilder::busybox("whole")
        .context(49102)
        .file("nonetns", "")
        .write(&d);
    for g in ["shared", "veth", "whole"] {
        harness::guest::install_host_binary(&d.guest_root(g), &me, "/bench");
    }
    d.spawn();
    let ctl = |a: &[&str]| -> String {
        let o = Command::new(harness::bins::vserverctl())
            .arg("--socket")
            .arg(&d.socket)
            .args(a)
            .output()
            .unwrap();
        assert!(o.status.success(), "{a:?}: {o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // Start and attach cost first, interleaved (each start followed by its stop).
    let (mut t_shared, mut t_veth, mut attach) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..starts {
        for g in ["shared", "veth"] {
            let t = Instant::now();
            let out = ctl(&["start", g]);
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if g == "shared" {
                t_shared.push(ms);
                let a: f64 = out
                    .split("linked to its cgroup in ")
                    .nth(1)
                    .and_then(|r| r.split(" ms").next())
                    .and_then(|x| x.parse().ok())
                    .expect("the attach time in the start's progress");
                attach.push(a);
            } else {
                t_veth.push(ms);
            }
            ctl(&["stop", g]);
        }
    }
    for (g, port) in [("shared", "8080"), ("veth", "8080"), ("whole", "8081")] {
        ctl(&["start", g]);
        // The wildcard: narrowed to the guest's address in the shared stack.
        let cmd = format!("/bench serve 0.0.0.0 {port} >/dev/null 2>&1 &");
        ctl(&["exec", g, "--", "sh", "-c", &cmd]);
    }
    let mut host = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .arg(&me)
        .args(["serve", "10.80.255.1", "8080"])
        .spawn()
        .unwrap();
    // The client: this process, in the benchmark's host network.
    let f = std::fs::File::open(&ns).unwrap();
    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    let targets: [(&str, std::net::SocketAddr); 4] = [
        ("host", "10.80.255.1:8080".parse().unwrap()),
        (
            "guest on the host's stack (nonetns)",
            "10.80.255.1:8081".parse().unwrap(),
        ),
        ("shared stack guest", "10.80.0.2:8080".parse().unwrap()),
        ("netns+veth guest", "10.80.1.2:8080".parse().unwrap()),
    ];
    // Warm up, and wait for the servers.
    for (_, a) in targets {
        for _ in 0..100 {
            if std::net::TcpStream::connect(a).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        conn_rate(a, 200);
    }
    let mut rate = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    let mut mbs = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (i, (_, a)) in targets.iter().enumerate() {
            rate[i].push(conn_rate(*a, conns));
            mbs[i].push(bulk(*a, mbytes));
        }
    }
    let _ = host.kill();
    let _ = host.wait();
    let rate: Vec<f64> = rate.into_iter().map(median).collect();
    let mbs: Vec<f64> = mbs.into_iter().map(median).collect();
    println!(
        "TCP from the host, {rounds} interleaved rounds, medians ({conns} connections, {mbytes} MB per round):"
    );
    println!(
        "| server | connect+request+close /s | × host | × nonetns guest | bulk MB/s | × host | × nonetns guest |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, (name, _)) in targets.iter().enumerate() {
        println!(
            "| {name} | {:.0} | {:.3} | {:.3} | {:.0} | {:.3} | {:.3} |",
            rate[i],
            rate[i] / rate[0],
            rate[i] / rate[1],
            mbs[i],
            mbs[i] / mbs[0],
            mbs[i] / mbs[1]
        );
    }
    println!(
        "start ({starts} each, interleaved, medians): shared stack {:.1} ms, netns+veth {:.1} ms; \
         socket programs' load+link per start {:.2} ms",
        median(t_shared),
        median(t_veth),
        median(attach)
    );
}

/// The files both lxcfs and vserverd's /proc server give a guest, side by side with the
/// kernel's own (docs/resources.md has the table).
const PROCVIEW_FILES: [&str; 6] = [
    "meminfo",
    "cpuinfo",
    "stat",
    "loadavg",
    "swaps",
    "diskstats",
];

/// Per-guest /proc files, read by a process in a limited guest's cgroups: the kernel's own,
/// lxcfs's (Debian's package, its own mount) and vserverd's server's, interleaved in one run;
/// and sysinfo(2)'s cost in a guest whose calls the server answers and in one whose go to the
/// kernel.
fn bench_procview(args: &[String]) {
    let n = arg(args, "--reads", 2000);
    let Some(lxcfs) = ["/usr/bin/lxcfs", "/bin/lxcfs"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        eprintln!("lxcfs is not installed (apt-get install lxcfs)");
        std::process::exit(1);
    };
    std::env::set_var("VSERVERD_TEST_LOG", "info");
    let mut d = TestDaemon::prepare();
    GuestBuilder::busybox("pv")
        .context(49100)
        .file("cflags", "virt_mem\nvirt_cpu\nvirt_load\n")
        .file("rlimits/rss", "65536\n")
        .write(&d);
    GuestBuilder::busybox("pvplain").context(49101).write(&d);
    for g in ["pv", "pvplain"] {
        harness::guest::install_host_binary(
            &d.guest_root(g),
            &std::env::current_exe().expect("current_exe"),
            "/vb",
        );
    }
    d.spawn();
    d.ctl_ok(&["start", "pv"]);
    d.ctl_ok(&["start", "pvplain"]);
    // lxcfs on a mount of its own, with its load averages on (-l).
    let lx = tempfile::tempdir().expect("tempdir");
    let mut lxcfs_proc = std::process::Command::new(lxcfs)
        .arg("-f")
        .arg("-l")
        .arg(lx.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("lxcfs");
    let t0 = Instant::now();
    while !lx.path().join("proc/meminfo").exists() && t0.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The reader, moved into every cgroup of the guest before it begins.
    let ours = vserverd::procfs::mount_dir(&d.run_dir).join("pv");
    let mut reader = std::process::Command::new(std::env::current_exe().expect("current_exe"))
        .arg("procview-read")
        .arg(&ours)
        .arg(lx.path())
        .arg(n.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("reader");
    for dir in d.cgroup_dirs("pv") {
        let _ = std::fs::write(dir.join("cgroup.procs"), reader.id().to_string());
    }
    {
        use std::io::Write;
        let _ = reader.stdin.take().expect("stdin").write_all(b"go\n");
    }
    let out = reader.wait_with_output().expect("reader");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    // sysinfo(2): answered by the server (pv: virt_mem) and by the kernel (pvplain), from
    // inside each guest.
    // Spaced 10 ms apart: the server answers a listener 200 calls a second after a burst
    // (procfs/sysinfo.rs), and it is the cost of one call that is measured here, not that rate.
    let calls = (n * 5).to_string();
    let spaced = n.min(200).to_string();
    for (g, n, gap) in [("pv", &spaced, "10"), ("pvplain", &calls, "0")] {
        let o = d.ctl_ok(&["exec", g, "--", "/vb", "sysinfo-loop", n, gap]);
        print!("sysinfo in {g}: {o}");
    }
    let host = std::process::Command::new(std::env::current_exe().expect("current_exe"))
        .args(["sysinfo-loop", &calls])
        .output()
        .expect("sysinfo-loop");
    print!(
        "sysinfo on the host: {}",
        String::from_utf8_lossy(&host.stdout)
    );
    let _ = lxcfs_proc.kill();
    let _ = lxcfs_proc.wait();
    let _ = nix::mount::umount2(lx.path(), nix::mount::MntFlags::MNT_DETACH);
    d.ctl_ok(&["stop", "pv"]);
    d.ctl_ok(&["stop", "pvplain"]);
}

/// `procview-read OURS LXCFS N`: waits for a line on stdin (its cgroups are set by then), then
/// reads each file N times from the kernel, lxcfs and vserverd in turn (open, read all,
/// close: what `cat` does) and prints the median time of each.
fn procview_read(args: &[String]) {
    let (ours, lx, n) = (
        std::path::PathBuf::from(&args[0]),
        std::path::PathBuf::from(&args[1]),
        args[2].parse::<usize>().unwrap_or(1000),
    );
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    println!(
        "{:<10} {:>12} {:>12} {:>12} {:>14}",
        "file", "kernel µs", "lxcfs µs", "vserverd µs", "vserverd/lxcfs"
    );
    for f in PROCVIEW_FILES {
        let paths = [
            std::path::PathBuf::from("/proc").join(f),
            lx.join("proc").join(f),
            ours.join(f),
        ];
        let mut t: [Vec<f64>; 3] = Default::default();
        for _ in 0..n {
            // Spaced: each source serves at most a few hundred reads a second here, below
            // the server's per-guest rate (1000 requests/s, a read being three or four), so
            // this is each read's own latency, not the flood limit's.
            std::thread::sleep(std::time::Duration::from_millis(5));
            for (i, p) in paths.iter().enumerate() {
                let s = Instant::now();
                let _ = std::fs::read(p);
                t[i].push(s.elapsed().as_secs_f64() * 1e6);
            }
        }
        let [k, l, o] = t.map(median);
        println!("{f:<10} {k:>12.1} {l:>12.1} {o:>12.1} {:>14.2}", o / l);
    }
}

/// `sysinfo-loop N [GAP_MS]`: N sysinfo(2) calls, GAP_MS apart; prints the median cost of one
/// and the total RAM seen.
fn sysinfo_loop(args: &[String]) {
    let n = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000usize)
        .max(1);
    let gap =
        std::time::Duration::from_millis(args.get(1).and_then(|a| a.parse().ok()).unwrap_or(0));
    let mut total = 0u64;
    let mut each = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let s = vserverd::sys::notify::sysinfo().expect("sysinfo");
        each.push(t.elapsed());
        total = s.totalram * s.mem_unit as u64;
        std::thread::sleep(gap);
    }
    each.sort();
    println!(
        "{:.2} µs per call (median of {n}), totalram {} MiB",
        each[n / 2].as_secs_f64() * 1e6,
        total >> 20
    );
}

/// The kernel's memory counters that grow with the objects a guest is made of (kB).
fn kernel_kb() -> [(String, i64); 6] {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let get = |k: &str| -> i64 {
        text.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    [
        "Percpu",
        "SUnreclaim",
        "SReclaimable",
        "KernelStack",
        "PageTables",
        "MemAvailable",
    ]
    .map(|k| (k.to_string(), get(k)))
}

/// Where a guest's host memory goes: N of each part a guest is made of, made by hand, and the
/// kernel's counters before and after (per part, kB): its cgroups in every hierarchy, its
/// memory cgroup alone, its namespaces (held by a sleeping process, against plain sleeping
/// processes), a network namespace with its loopback, a console pty. The rest of a guest's
/// cost (density's figure) is its mounts, its init and the daemon's bookkeeping.
fn bench_breakdown(args: &[String]) {
    let n = arg(args, "--n", 300);
    let settle = || {
        let _ = std::fs::write("/proc/sys/vm/drop_caches", "2");
        std::thread::sleep(std::time::Duration::from_millis(1500));
    };
    // Made, counted; the caller takes them away before the next part.
    let measure = |what: &str, make: &mut dyn FnMut(usize)| {
        settle();
        let before = kernel_kb();
        for i in 0..n {
            make(i);
        }
        settle();
        let after = kernel_kb();
        let per: Vec<String> = before
            .iter()
            .zip(after.iter())
            .map(|((k, b), (_, a))| {
                let d = if k == "MemAvailable" { b - a } else { a - b };
                format!("{k} {:.1}", d as f64 / n as f64)
            })
            .collect();
        println!("{what:<44} {}", per.join("  "));
    };
    println!(
        "kB per instance, {n} instances each (the kernel's counters; MemAvailable: its drop, \
         which other work on the host moves too)"
    );
    let hierarchies: Vec<std::path::PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    measure(
        &format!("a cgroup in each of {} hierarchies", hierarchies.len()),
        &mut |i| {
            for h in &hierarchies {
                let d = h.join(format!("vsbench-{i}"));
                if std::fs::create_dir(&d).is_ok() {
                    dirs.push(d);
                }
            }
        },
    );
    for d in dirs.drain(..) {
        let _ = std::fs::remove_dir(&d);
    }
    for h in [
        "memory", "cpu", "pids", "cpuset", "blkio", "devices", "freezer",
    ] {
        let base = std::path::Path::new("/sys/fs/cgroup").join(h);
        if !base.exists() {
            continue;
        }
        let mut dirs: Vec<std::path::PathBuf> = Vec::new();
        measure(&format!("a {h} cgroup"), &mut |i| {
            let d = base.join(format!("vsbench-{i}"));
            if std::fs::create_dir(&d).is_ok() {
                dirs.push(d);
            }
        });
        for d in dirs.drain(..) {
            let _ = std::fs::remove_dir(&d);
        }
    }
    let sleepers = |extra: &'static [&'static str]| {
        move |kids: &mut Vec<std::process::Child>| {
            let mut c = std::process::Command::new("unshare");
            c.args(extra).args(["sleep", "3600"]);
            if extra.is_empty() {
                c = std::process::Command::new("sleep");
                c.arg("3600");
            }
            kids.push(c.spawn().expect("spawn"));
        }
    };
    for (what, flags) in [
        ("a plain sleeping process (the baseline)", &[][..]),
        (
            "the same in new mount, uts, ipc and pid namespaces",
            &[
                "--fork",
                "--kill-child",
                "--pid",
                "--mount",
                "--uts",
                "--ipc",
            ][..],
        ),
        (
            "the same with its own /proc (--mount-proc)",
            &[
                "--fork",
                "--kill-child",
                "--pid",
                "--mount",
                "--uts",
                "--ipc",
                "--mount-proc",
            ][..],
        ),
        (
            "the same with a network namespace (loopback)",
            &[
                "--fork",
                "--kill-child",
                "--pid",
                "--mount",
                "--uts",
                "--ipc",
                "--net",
            ][..],
        ),
    ] {
        let mut kids = Vec::new();
        let spawn = sleepers(flags);
        measure(what, &mut |_| spawn(&mut kids));
        for mut k in kids.drain(..) {
            let _ = k.kill();
            let _ = k.wait();
        }
        // A pid namespace's init ignores SIGTERM from outside, and --kill-child does not
        // always reach it: SIGKILL whatever is left.
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-f", "^sleep 3600$"])
            .status();
    }
    let mut ptys = Vec::new();
    measure("a console pty pair", &mut |_| {
        if let Ok(p) = nix::pty::openpty(None, None) {
            ptys.push(p);
        }
    });
    ptys.clear();
}
