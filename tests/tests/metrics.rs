//! Metrics as monitoring sees them: `vserverctl metrics` passes `promtool check metrics`;
//! vserverd-metrics, socket-activated (systemd-socket-activate passes it the listening socket
//! as systemd does), is scraped by a real Prometheus server from Debian's package, and a
//! guest's memory queried through Prometheus's HTTP API is what its cgroup says. The shipped
//! alert rules pass `promtool check rules` and load into that server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::{GuestBuilder, TestDaemon};

/// A process killed (and reaped) when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A port nobody listens on now (the kernel's pick, released for the child to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` from 127.0.0.1:`port`: (status line, body).
fn http_get(port: u16, path: &str) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    // Prometheus answers in chunks; the exporter with a length. Only the former needs undoing.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Prometheus's instant query `q`: the results' (labels, value).
fn query(port: u16, q: &str) -> Vec<(serde_json::Value, f64)> {
    let enc: String = q
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let Ok((status, body)) = http_get(port, &format!("/api/v1/query?query={enc}")) else {
        return vec![];
    };
    if !status.contains(" 200 ") {
        return vec![];
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    let val = r["value"][1]
                        .as_str()
                        .unwrap_or("nan")
                        .parse()
                        .unwrap_or(f64::NAN);
                    (r["metric"].clone(), val)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The metric names (families) of an exposition.
fn families(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(String::from)
        .collect()
}

/// The guest's memory as its cgroup counts it (v2 memory.current, v1 memory.usage_in_bytes).
fn cgroup_memory(d: &TestDaemon, name: &str) -> u64 {
    d.cgroup_dirs(name)
        .iter()
        .find_map(|p| {
            std::fs::read_to_string(p.join("memory.current"))
                .or_else(|_| std::fs::read_to_string(p.join("memory.usage_in_bytes")))
                .ok()
        })
        .expect("a memory cgroup file")
        .trim()
        .parse()
        .unwrap()
}

fn promtool(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut c = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    if let Some(s) = stdin {
        c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(c.stdin.take());
    c.wait_with_output().unwrap()
}

#[test]
fn prometheus_scrapes_the_exporter_and_finds_the_guests_memory() {
    if !harness::require_busybox_guests()
        || !harness::require(
            have("prometheus") && have("promtool"),
            "prometheus and promtool (Debian's prometheus package)",
        )
        || !harness::require(
            have("systemd-socket-activate"),
            "systemd-socket-activate (systemd)",
        )
    {
        return;
    }
    let mut d = TestDaemon::prepare();
    // 64 MiB: the memory controller counts, and the limit is a figure to compare too.
    GuestBuilder::busybox("web")
        .context(44501)
        .file("rlimits/rss", "16384\n")
        .file("rlimits/nproc", "40\n")
        .write(&d);
    GuestBuilder::busybox("idle").context(44502).write(&d);
    d.spawn();
    d.ctl_ok(&["start", "web"]);

    // The command-line exposition is what promtool calls well-formed and conventional.
    let text = d.ctl_ok(&["metrics"]);
    let lint = promtool(&["check", "metrics"], Some(&text));
    assert!(
        lint.status.success() && lint.stdout.is_empty() && lint.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    for needed in [
        "vserverd_guest_memory_bytes{guest=\"web\"}",
        "vserverd_guest_up{guest=\"idle\"} 0",
        "vserverd_guest_up{guest=\"web\"} 1",
        "vserverd_guest_starts_total{guest=\"web\"} 1",
        "vserverd_rpc_call_duration_seconds_count{method=\"org.linux-vserver.Manager.Start\"} 1",
    ] {
        assert!(text.contains(needed), "no {needed} in\n{text}");
    }

    // The exporter, started by the first connection as systemd's socket unit would.
    let port = free_port();
    let exporter = Killed(
        Command::new("systemd-socket-activate")
            .arg("-l")
            .arg(format!("127.0.0.1:{port}"))
            .arg(harness::guest::workspace_binary("vserverd-metrics"))
            .arg("--socket")
            .arg(&d.socket)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    let (status, body) = loop {
        match http_get(port, "/metrics") {
            Ok(r) => break r,
            Err(_) if t.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("the exporter does not answer on {port}: {e}"),
        }
    };
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(
        families(&body),
        families(&text),
        "HTTP and vserverctl differ"
    );
    let (status, _) = http_get(port, "/nothing").unwrap();
    assert!(status.contains(" 404 "), "{status}");

    // The shipped alert rules are valid, and load into the server below.
    let rules = repo().join("docs/prometheus/vserverd-alerts.yml");
    let check = promtool(&["check", "rules", rules.to_str().unwrap()], None);
    assert!(
        check.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // The example scrape config is one Prometheus takes (its rule file put where it says).
    let example = std::fs::read_to_string(repo().join("docs/prometheus/prometheus-scrape.yml"))
        .unwrap()
        .replace(
            "/etc/prometheus/vserverd-alerts.yml",
            rules.to_str().unwrap(),
        );
    let example_path = d.dir.path().join("prometheus-scrape.yml");
    std::fs::write(&example_path, example).unwrap();
    let check = promtool(&["check", "config", example_path.to_str().unwrap()], None);
    assert!(
        check.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // A real Prometheus, scraping every second, its storage in the test's temp dir.
    let prom_dir = d.dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let config = prom_dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: vserverd\n    static_configs:\n      \
             - targets: ['127.0.0.1:{port}']\n",
            rules.display()
        ),
    )
    .unwrap();
    let prom_port = free_port();
    let prom_log = std::fs::File::create(prom_dir.join("log")).unwrap();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(prom_log)
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    let found = loop {
        let r = query(prom_port, "vserverd_guest_memory_bytes{guest=\"web\"}");
        if let Some((labels, v)) = r.into_iter().next() {
            break (labels, v);
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "Prometheus has no sample of web's memory after 60 s: {}",
            std::fs::read_to_string(prom_dir.join("log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (labels, through_prometheus) = found;
    assert_eq!(labels["job"], "vserverd", "{labels}");
    // An idle busybox guest's memory moves by a few pages between the scrape and this read.
    let in_cgroup = cgroup_memory(&d, "web") as f64;
    let diff = (through_prometheus - in_cgroup).abs();
    eprintln!(
        "web's memory: {through_prometheus} bytes through Prometheus, {in_cgroup} in its cgroup"
    );
    assert!(
        through_prometheus > 0.0 && diff <= (1 << 20) as f64 + in_cgroup * 0.05,
        "Prometheus says {through_prometheus}, the cgroup {in_cgroup}"
    );
    let limit = query(
        prom_port,
        "vserverd_guest_memory_limit_bytes{guest=\"web\"}",
    );
    assert_eq!(limit.first().map(|r| r.1), Some(64.0 * 1024.0 * 1024.0));
    let down = query(prom_port, "vserverd_guest_up{guest=\"idle\"}");
    assert_eq!(down.first().map(|r| r.1), Some(0.0));

    // Every rule evaluated without error.
    let t = Instant::now();
    loop {
        let (_, body) = http_get(prom_port, "/api/v1/rules").unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let rules: Vec<&serde_json::Value> = v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        if !rules.is_empty() && rules.iter().all(|r| r["health"] == "ok") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "rules not all healthy: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(exporter);
    d.ctl_ok(&["stop", "web"]);
}

/// A guest in its own namespace with a veth pair: its traffic, counted on the host end, is in
/// the metrics from the guest's side (the host end's transmit is the guest's receive).
#[test]
fn a_namespaced_guests_veth_traffic_is_counted() {
    if !harness::require_busybox_guests()
        || !harness::require(
            Path::new("/usr/bin/nsenter").exists(),
            "nsenter (util-linux)",
        )
    {
        return;
    }
    let mut d = TestDaemon::prepare();
    // The daemon in a namespace standing in for the host's network.
    d.host_netns();
    // The host's own address: its source address towards the guest.
    let o = d.in_host_net(&["ip", "addr", "add", "10.78.255.1/32", "dev", "lo"]);
    assert!(o.status.success(), "{o:?}");
    GuestBuilder::busybox("net")
        .context(44510)
        // Its own namespace and veth pair, whose counters are the metric (the shared stack,
        // the default for interfaces/, has no per-guest device).
        .file("apps/vserverd/netmode", "netns\n")
        .file("interfaces/0/ip", "10.78.0.2\n")
        .file("interfaces/0/prefix", "24\n")
        .file("interfaces/0/nodev", "")
        .write(&d);
    d.spawn();
    d.ctl_ok(&["start", "net"]);
    std::fs::create_dir_all(d.guest_root("net").join("www")).unwrap();
    std::fs::write(d.guest_root("net").join("www/big"), vec![b'x'; 300_000]).unwrap();
    d.ctl_ok(&["exec", "net", "--", "httpd", "-p", "80", "-h", "/www"]);
    let o = d.in_host_net(&[
        "/bin/busybox",
        "timeout",
        "10",
        "/bin/busybox",
        "wget",
        "-q",
        "-O",
        "/dev/null",
        "http://10.78.0.2/big",
    ]);
    assert!(o.status.success(), "{o:?}");
    let text = d.ctl_ok(&["metrics"]);
    let sample = |name: &str| -> (String, f64) {
        let l = text
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{guest=\"net\",")))
            .unwrap_or_else(|| panic!("no {name} of net in\n{text}"));
        let device = l
            .split("device=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        (
            device.to_string(),
            l.rsplit(' ').next().unwrap().parse().unwrap(),
        )
    };
    let (device, sent) = sample("vserverd_guest_network_transmit_bytes_total");
    // The kernel's own count on the host end, read in the daemon's namespace.
    let dev =
        String::from_utf8_lossy(&d.in_host_net(&["cat", "/proc/net/dev"]).stdout).into_owned();
    let line = dev
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{device}:")))
        .unwrap_or_else(|| panic!("no {device} in\n{dev}"));
    let f: Vec<f64> = line
        .split_once(':')
        .unwrap()
        .1
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    // The guest sent the 300 kB file: its transmit is the host end's receive, nearly exactly
    // (a stray neighbour probe between the two reads at most).
    assert!(
        sent >= 300_000.0,
        "the guest sent {sent} bytes by the metrics"
    );
    assert!(
        (f[0] - sent).abs() < 2000.0,
        "host end received {}, metrics say {sent}",
        f[0]
    );
    let (_, received) = sample("vserverd_guest_network_receive_bytes_total");
    assert!(
        (f[8] - received).abs() < 2000.0,
        "host end sent {}, metrics say {received}",
        f[8]
    );
    d.ctl_ok(&["stop", "net"]);
}

/// A guest on the shared stack has no device of its own: its programs count what its sockets
/// receive and send, and the metrics carry that as `device="shared"`. The guest serves 300 kB
/// to the host and fetches 200 kB from it; the counters say so, give or take the TCP/IP
/// headers, the requests and the acknowledgements.
#[test]
fn a_shared_stack_guests_traffic_is_counted() {
    if !harness::require_busybox_guests()
        || !harness::require(
            Path::new("/usr/bin/nsenter").exists(),
            "nsenter (util-linux)",
        )
        || !harness::require(
            vserverd::isolate::sockbpf::available().is_ok(),
            "the shared stack's programs",
        )
    {
        return;
    }
    let mut d = TestDaemon::prepare();
    let ns = d.host_netns();
    for a in [
        "ip link add vh0 type veth peer name vh1",
        "ip link set vh0 up",
        "ip link set vh1 up",
        "ip addr add 10.78.255.1/32 dev lo",
    ] {
        let o = d.in_host_net(&a.split(' ').collect::<Vec<_>>());
        assert!(o.status.success(), "{a}: {o:?}");
    }
    GuestBuilder::busybox("snet")
        .context(44511)
        .file("apps/vserverd/netmode", "shared\n")
        .file("interfaces/0/ip", "10.78.1.2\n")
        .file("interfaces/0/prefix", "24\n")
        .file("interfaces/0/dev", "vh0\n")
        .write(&d);
    d.spawn();
    d.ctl_ok(&["start", "snet"]);
    std::fs::create_dir_all(d.guest_root("snet").join("www")).unwrap();
    std::fs::write(d.guest_root("snet").join("www/big"), vec![b'x'; 300_000]).unwrap();
    d.ctl_ok(&["exec", "snet", "--", "httpd", "-p", "80", "-h", "/www"]);
    // The host's own web server, for the guest to fetch from.
    let hostwww = tempfile::tempdir().unwrap();
    std::fs::write(hostwww.path().join("big"), vec![b'y'; 200_000]).unwrap();
    let _server = Killed(
        Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .args([
                "--",
                "/bin/busybox",
                "httpd",
                "-f",
                "-p",
                "10.78.255.1:8080",
                "-h",
            ])
            .arg(hostwww.path())
            .spawn()
            .unwrap(),
    );
    let before = d.ctl_ok(&["metrics"]);
    let o = d.in_host_net(&[
        "/bin/busybox",
        "timeout",
        "10",
        "/bin/busybox",
        "wget",
        "-q",
        "-O",
        "/dev/null",
        "http://10.78.1.2/big",
    ]);
    assert!(o.status.success(), "{o:?}");
    // (the host's server may need a moment to listen)
    let fetched = (0..50).any(|_| {
        let o = d.ctl(&[
            "exec",
            "snet",
            "--",
            "wget",
            "-q",
            "-O",
            "/dev/null",
            "http://10.78.255.1:8080/big",
        ]);
        o.status.success() || {
            std::thread::sleep(Duration::from_millis(100));
            false
        }
    });
    assert!(fetched, "the guest could not fetch from the host");
    let after = d.ctl_ok(&["metrics"]);
    let sample = |text: &str, name: &str| -> f64 {
        let key = format!("{name}{{guest=\"snet\",device=\"shared\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .unwrap_or_else(|| panic!("no {key} in\n{text}"))
            .parse()
            .unwrap()
    };
    let delta = |name: &str| sample(&after, name) - sample(&before, name);
    let sent = delta("vserverd_guest_network_transmit_bytes_total");
    let received = delta("vserverd_guest_network_receive_bytes_total");
    eprintln!("shared-stack counters: sent {sent}, received {received}");
    // Both transfers' payload, plus headers (40-60 bytes a packet), requests and replies'
    // heads, acknowledgements: a few percent at most.
    assert!(
        (300_000.0..330_000.0).contains(&sent),
        "the guest sent {sent} bytes by the metrics (300000 of payload)"
    );
    assert!(
        (200_000.0..220_000.0).contains(&received),
        "the guest received {received} bytes by the metrics (200000 of payload)"
    );
    assert!(delta("vserverd_guest_network_transmit_packets_total") >= 5.0);
    assert!(delta("vserverd_guest_network_receive_packets_total") >= 4.0);
    d.ctl_ok(&["stop", "snet"]);
}

/// Whoever reaches the exporter's port is a stranger: connections that send nothing, a head
/// too large, other methods and paths are answered or dropped, and a scrape still gets through
/// at once. With no daemon behind it, the exporter says `vserverd_up 0`.
#[test]
fn the_exporter_holds_up_to_strangers() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let _exporter = Killed(
        Command::new(harness::guest::workspace_binary("vserverd-metrics"))
            .arg("--socket")
            .arg(dir.path().join("no-daemon-here"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the exporter does not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Twenty silent connections, held open.
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let t = Instant::now();
    let (status, body) = http_get(port, "/metrics").unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "a scrape waited {:?} behind idle connections",
        t.elapsed()
    );
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        ["vserverd_up 0"],
        "{body}"
    );
    // A head over 8 KiB is refused, not buffered.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let big = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    let _ = s.write_all(big.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    // Other methods and paths.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"POST /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 405 "), "{out}");
    let (status, _) = http_get(port, "/../../etc/passwd").unwrap();
    assert!(status.contains(" 404 "), "{status}");
    // The silent ones are dropped after the client timeout (5 s).
    let mut first = idle.into_iter().next().unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = String::new();
    let _ = first.read_to_string(&mut out);
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 400 "), "{out}");
}

#[test]
fn a_disk_limited_guest_has_its_disk_figures_in_the_exposition() {
    if !harness::require_busybox_guests()
        || !harness::require(have("promtool"), "promtool (Debian's prometheus package)")
    {
        return;
    }
    let mut d = TestDaemon::prepare();
    let Some(_mnt) = harness::loopfs::btrfs_with_quota(&d, &["dl"]) else {
        return;
    };
    let root = d.vdir_base.join("dl");
    GuestBuilder::busybox("dl")
        .context(44520)
        .file("dlimits/0/directory", &format!("{}\n", root.display()))
        .file("dlimits/0/space_total", "32768\n")
        .file("dlimits/0/inodes_total", "-1\n")
        .file("dlimits/0/reserved", "0\n")
        .write(&d);
    GuestBuilder::busybox("free").context(44521).write(&d);
    d.spawn();
    d.ctl_ok(&["start", "dl"]);
    d.ctl_ok(&["start", "free"]);
    d.ctl_ok(&[
        "exec",
        "dl",
        "--",
        "/bin/sh",
        "-c",
        "dd if=/dev/zero of=/f bs=1M count=4 && sync",
    ]);
    let text = d.ctl_ok(&["metrics"]);
    let lint = promtool(&["check", "metrics"], Some(&text));
    assert!(
        lint.status.success() && lint.stdout.is_empty() && lint.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    let sample = |name: &str, guest: &str| -> Option<f64> {
        let key = format!("{name}{{guest=\"{guest}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .map(|v| v.parse().unwrap())
    };
    // The limit is the qgroup's (the kernel's view: btrfs qgroup show), the use what stat says.
    let limit = harness::loopfs::qgroup_limit(&d.vdir_base, "dl").expect("a qgroup limit");
    assert_eq!(limit, 32 << 20);
    assert_eq!(
        sample("vserverd_guest_disk_limit_bytes", "dl"),
        Some(limit as f64),
        "{text}"
    );
    let used = sample("vserverd_guest_disk_used_bytes", "dl").expect("disk used");
    let st: serde_json::Value = serde_json::from_str(&d.ctl_ok(&["stat", "--json"])).unwrap();
    let stat_used = st["guests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "dl")
        .unwrap()["disk_used_bytes"]
        .as_f64()
        .unwrap();
    assert!(used >= (4 << 20) as f64, "4 MiB written, {used} counted");
    assert!(
        (used - stat_used).abs() <= (1 << 20) as f64,
        "metrics {used}, stat {stat_used}"
    );
    // btrfs counts no inodes; a guest without a limit has no disk samples.
    assert_eq!(sample("vserverd_guest_disk_limit_inodes", "dl"), None);
    assert_eq!(sample("vserverd_guest_disk_used_bytes", "free"), None);
    assert_eq!(sample("vserverd_guest_disk_limit_bytes", "free"), None);
    // The shipped alert rule over them is valid.
    let rules = promtool(
        &[
            "check",
            "rules",
            repo()
                .join("docs/prometheus/vserverd-alerts.yml")
                .to_str()
                .unwrap(),
        ],
        None,
    );
    assert!(
        rules.status.success(),
        "{}",
        String::from_utf8_lossy(&rules.stderr)
    );
    d.ctl_ok(&["stop", "dl"]);
    d.ctl_ok(&["stop", "free"]);
}
