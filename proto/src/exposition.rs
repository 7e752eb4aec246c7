//! The Prometheus text exposition format (version 0.0.4) of a Metrics reply: what
//! `vserverd-metrics` serves over HTTP and `vserverctl metrics` prints. Names and units follow
//! Prometheus's conventions (docs/operations.md lists them); `promtool check metrics` passes.

use std::fmt::Write;

use crate::{GuestMetrics, GuestState, MetricsReply};

/// The Content-Type of this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const STATES: [GuestState; 5] = [
    GuestState::Stopped,
    GuestState::Starting,
    GuestState::Running,
    GuestState::Stopping,
    GuestState::Failed,
];

/// A label value as the format wants it: backslash, double quote and newline escaped. Guest
/// names come from directory names and device names from the kernel: never trusted as-is.
pub fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// A sample value: integers without a fraction, +Inf/-Inf/NaN spelled as the format wants.
fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// One metric family: HELP, TYPE, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", num(v));
    }
}

fn family<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out }
}

/// A per-guest gauge or counter over the guests that have a value.
fn per_guest(
    out: &mut String,
    guests: &[GuestMetrics],
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&GuestMetrics) -> Option<f64>,
) {
    let mut f = family(out, name, kind, help);
    for g in guests {
        if let Some(v) = value(g) {
            f.sample(name, &[("guest", &g.name)], v);
        }
    }
}

/// The exposition of `m`; `None` (the daemon did not answer) gives `vserverd_up 0` alone, so
/// that an alert can tell a dead daemon from a dead exporter.
pub fn render(m: Option<&MetricsReply>) -> String {
    let mut out = String::with_capacity(4096);
    family(
        &mut out,
        "vserverd_up",
        "gauge",
        "Whether the daemon answered the Metrics call (1) or not (0).",
    )
    .sample("vserverd_up", &[], if m.is_some() { 1.0 } else { 0.0 });
    let Some(m) = m else {
        return out;
    };
    family(
        &mut out,
        "vserverd_build_info",
        "gauge",
        "The daemon's version, as a label; always 1.",
    )
    .sample("vserverd_build_info", &[("version", &m.version)], 1.0);
    family(
        &mut out,
        "vserverd_start_time_seconds",
        "gauge",
        "When the daemon started, in seconds since the epoch; the counters count from then.",
    )
    .sample("vserverd_start_time_seconds", &[], m.start_time_seconds);

    let g = &m.guests;
    let mut f = family(
        &mut out,
        "vserverd_guest_info",
        "gauge",
        "A configured guest: its context id and whether it is disabled, as labels; always 1.",
    );
    for x in g {
        let ctx = x.context.map(|c| c.to_string()).unwrap_or_default();
        let disabled = if x.disabled { "true" } else { "false" };
        f.sample(
            "vserverd_guest_info",
            &[
                ("guest", &x.name),
                ("context", &ctx),
                ("disabled", disabled),
            ],
            1.0,
        );
    }
    let mut f = family(
        &mut out,
        "vserverd_guest_marked",
        "gauge",
        "The guest carries this mark (apps/init/mark; `default` is started at boot); always 1.",
    );
    for x in g {
        for mark in &x.mark {
            f.sample(
                "vserverd_guest_marked",
                &[("guest", &x.name), ("mark", mark)],
                1.0,
            );
        }
    }
    per_guest(
        &mut out,
        g,
        "vserverd_guest_up",
        "gauge",
        "Whether the guest runs (1) or not (0).",
        |x| {
            Some(if x.state == GuestState::Running {
                1.0
            } else {
                0.0
            })
        },
    );
    let mut f = family(
        &mut out,
        "vserverd_guest_state",
        "gauge",
        "The guest's lifecycle state: 1 for the state it is in, 0 for the others.",
    );
    for x in g {
        for s in STATES {
            f.sample(
                "vserverd_guest_state",
                &[("guest", &x.name), ("state", s.as_str())],
                if x.state == s { 1.0 } else { 0.0 },
            );
        }
    }
    per_guest(
        &mut out,
        g,
        "vserverd_guest_start_time_seconds",
        "gauge",
        "When the running guest started, in seconds since the epoch.",
        |x| x.start_time_seconds,
    );
    per_guest(
        &mut out,
        g,
        "vserverd_guest_uptime_seconds",
        "gauge",
        "Seconds since the running guest started.",
        |x| x.uptime_seconds,
    );
    let mut f = family(
        &mut out,
        "vserverd_guest_cpu_seconds_total",
        "counter",
        "CPU time of the guest's processes, by mode (its cgroup's cpu.stat).",
    );
    for x in g {
        for (mode, v) in [
            ("user", x.cpu_user_seconds),
            ("system", x.cpu_system_seconds),
        ] {
            if let Some(v) = v {
                f.sample(
                    "vserverd_guest_cpu_seconds_total",
                    &[("guest", &x.name), ("mode", mode)],
                    v,
                );
            }
        }
    }
    per_guest(
        &mut out,
        g,
        "vserverd_guest_memory_bytes",
        "gauge",
        "Memory charged to the guest's cgroup (memory.current): anonymous, page cache, kernel.",
        |x| x.memory_bytes.map(|v| v as f64),
    );
    per_guest(
        &mut out,
        g,
        "vserverd_guest_memory_working_set_bytes",
        "gauge",
        "The guest's memory less its inactive page cache (reclaimed before the limit bites).",
        |x| x.memory_working_set_bytes.map(|v| v as f64),
    );
    per_guest(
        &mut out,
        g,
        "vserverd_guest_memory_limit_bytes",
        "gauge",
        "The guest's memory limit (memory.max); absent when unlimited.",
        |x| x.memory_limit_bytes.map(|v| v as f64),
    );
    per_guest(
        &mut out,
        g,
        "vserverd_guest_processes",
        "gauge",
        "Processes in the guest.",
        |x| x.processes.map(f64::from),
    );
    per_guest(
        &mut out,
        g,
        "vserverd_guest_pids",
        "gauge",
        "Tasks (threads included) in the guest, as its pids limit counts them (pids.current).",
        |x| x.pids.map(|v| v as f64),
    );
    per_guest(
        &mut out,
        g,
        "vserverd_guest_pids_limit",
        "gauge",
        "The guest's task limit (pids.max); absent when unlimited.",
        |x| x.pids_limit.map(|v| v as f64),
    );
    type Figure = fn(&GuestMetrics) -> Option<u64>;
    let disk: [(&str, &str, Figure); 4] = [
        (
            "vserverd_guest_disk_used_bytes",
            "Bytes its disk limit counts (project quota, or btrfs qgroup referenced bytes).",
            |x| x.disk_used_bytes,
        ),
        (
            "vserverd_guest_disk_limit_bytes",
            "The guest's disk limit (dlimits/, set --disk); absent when none.",
            |x| x.disk_limit_bytes,
        ),
        (
            "vserverd_guest_disk_used_inodes",
            "Inodes its disk limit counts (project quotas).",
            |x| x.disk_used_inodes,
        ),
        (
            "vserverd_guest_disk_limit_inodes",
            "The guest's inode limit (dlimits/ inodes_total); absent when none.",
            |x| x.disk_limit_inodes,
        ),
    ];
    for (name, help, f) in disk {
        per_guest(&mut out, g, name, "gauge", help, |x| f(x).map(|v| v as f64));
    }
    type Counter = fn(&crate::InterfaceCounters) -> u64;
    let net: [(&str, &str, Counter); 4] = [
        (
            "vserverd_guest_network_receive_bytes_total",
            "Bytes the guest received on a veth pair the daemon made for it.",
            |c| c.receive_bytes,
        ),
        (
            "vserverd_guest_network_transmit_bytes_total",
            "Bytes the guest sent on a veth pair the daemon made for it.",
            |c| c.transmit_bytes,
        ),
        (
            "vserverd_guest_network_receive_packets_total",
            "Packets the guest received on a veth pair the daemon made for it.",
            |c| c.receive_packets,
        ),
        (
            "vserverd_guest_network_transmit_packets_total",
            "Packets the guest sent on a veth pair the daemon made for it.",
            |c| c.transmit_packets,
        ),
    ];
    for (name, help, value) in net {
        let mut f = family(&mut out, name, "counter", help);
        for x in g {
            for c in &x.network {
                f.sample(
                    name,
                    &[("guest", &x.name), ("device", &c.device)],
                    value(c) as f64,
                );
            }
        }
    }
    per_guest(
        &mut out,
        g,
        "vserverd_guest_starts_total",
        "counter",
        "Starts of the guest that completed, since the daemon started.",
        |x| Some(x.starts as f64),
    );
    per_guest(
        &mut out,
        g,
        "vserverd_guest_stops_total",
        "counter",
        "Stops of the guest (asked for, or after init ended), since the daemon started.",
        |x| Some(x.stops as f64),
    );
    per_guest(
        &mut out,
        g,
        "vserverd_guest_start_failures_total",
        "counter",
        "Starts of the guest that failed, since the daemon started.",
        |x| Some(x.start_failures as f64),
    );
    per_guest(
        &mut out,
        g,
        "vserverd_guest_exits_total",
        "counter",
        "Times the guest's init ended without a stop asked for (halt, reboot, death).",
        |x| Some(x.exits as f64),
    );

    let mut f = family(
        &mut out,
        "vserverd_rpc_calls_total",
        "counter",
        "Varlink calls received, by method.",
    );
    for r in &m.rpc {
        f.sample(
            "vserverd_rpc_calls_total",
            &[("method", &r.method)],
            r.calls as f64,
        );
    }
    let mut f = family(
        &mut out,
        "vserverd_rpc_call_errors_total",
        "counter",
        "Varlink calls answered with an error, by method.",
    );
    for r in &m.rpc {
        f.sample(
            "vserverd_rpc_call_errors_total",
            &[("method", &r.method)],
            r.errors as f64,
        );
    }
    let name = "vserverd_rpc_call_duration_seconds";
    let mut f = family(
        &mut out,
        name,
        "histogram",
        "Time from a varlink call to its last reply, by method (streams: until they end).",
    );
    for r in &m.rpc {
        for (le, n) in m.latency_buckets.iter().zip(&r.buckets) {
            let le = num(*le);
            f.sample(
                &format!("{name}_bucket"),
                &[("method", &r.method), ("le", &le)],
                *n as f64,
            );
        }
        f.sample(
            &format!("{name}_bucket"),
            &[("method", &r.method), ("le", "+Inf")],
            r.completed as f64,
        );
        f.sample(
            &format!("{name}_sum"),
            &[("method", &r.method)],
            r.sum_seconds,
        );
        f.sample(
            &format!("{name}_count"),
            &[("method", &r.method)],
            r.completed as f64,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InterfaceCounters, RpcMetrics};

    fn guest(name: &str, state: GuestState) -> GuestMetrics {
        GuestMetrics::listed(
            name.into(),
            Some(40001),
            state,
            false,
            vec!["default".into()],
        )
    }

    fn reply() -> MetricsReply {
        let mut web = guest("web", GuestState::Running);
        web.memory_bytes = Some(4096);
        web.memory_limit_bytes = Some(67108864);
        web.cpu_user_seconds = Some(1.5);
        web.cpu_system_seconds = Some(0.25);
        web.starts = 2;
        web.disk_used_bytes = Some(1 << 20);
        web.disk_limit_bytes = Some(16 << 20);
        web.network = vec![InterfaceCounters {
            device: "vsd40001".into(),
            receive_bytes: 10,
            transmit_bytes: 20,
            receive_packets: 1,
            transmit_packets: 2,
        }];
        MetricsReply {
            version: "0.1.0".into(),
            start_time_seconds: 1700000000.5,
            guests: vec![web, guest("we\"ird\\na\nme", GuestState::Stopped)],
            latency_buckets: vec![0.001, 0.5],
            rpc: vec![RpcMetrics {
                method: "org.linux-vserver.Manager.List".into(),
                calls: 3,
                errors: 1,
                completed: 3,
                buckets: vec![1, 3],
                sum_seconds: 0.0125,
            }],
        }
    }

    #[test]
    fn samples_labels_and_families() {
        let t = render(Some(&reply()));
        assert!(t.contains("vserverd_up 1\n"));
        assert!(t.contains("vserverd_guest_memory_bytes{guest=\"web\"} 4096\n"));
        assert!(t.contains("vserverd_guest_memory_limit_bytes{guest=\"web\"} 67108864\n"));
        assert!(t.contains("vserverd_guest_cpu_seconds_total{guest=\"web\",mode=\"user\"} 1.5\n"));
        assert!(t.contains("vserverd_guest_state{guest=\"web\",state=\"running\"} 1\n"));
        assert!(t.contains("vserverd_guest_state{guest=\"web\",state=\"stopped\"} 0\n"));
        assert!(t.contains(
            "vserverd_guest_network_receive_bytes_total{guest=\"web\",device=\"vsd40001\"} 10\n"
        ));
        assert!(t.contains("vserverd_start_time_seconds 1700000000.5\n"));
        assert!(t.contains("vserverd_guest_disk_used_bytes{guest=\"web\"} 1048576\n"));
        assert!(t.contains("vserverd_guest_disk_limit_bytes{guest=\"web\"} 16777216\n"));
        // btrfs: no inode figures, no samples (the family is still declared).
        assert!(!t.contains("vserverd_guest_disk_limit_inodes{"));
        // The stopped guest has no resource samples, but its state and counters.
        assert!(!t.contains("vserverd_guest_memory_bytes{guest=\"we\\\""));
        assert!(t.contains("vserverd_guest_up{guest=\"we\\\"ird\\\\na\\nme\"} 0\n"));
        // Histogram: cumulative buckets, +Inf equal to the count.
        assert!(t.contains(
            "vserverd_rpc_call_duration_seconds_bucket{method=\"org.linux-vserver.Manager.List\",le=\"0.001\"} 1\n"
        ));
        assert!(t.contains(
            "vserverd_rpc_call_duration_seconds_bucket{method=\"org.linux-vserver.Manager.List\",le=\"+Inf\"} 3\n"
        ));
        assert!(t.contains(
            "vserverd_rpc_call_duration_seconds_count{method=\"org.linux-vserver.Manager.List\"} 3\n"
        ));
        // Every family is declared once, before its samples.
        let mut seen = std::collections::HashSet::new();
        for l in t.lines().filter(|l| l.starts_with("# TYPE ")) {
            assert!(seen.insert(l.split(' ').nth(2).unwrap().to_string()), "{l}");
        }
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| seen.contains(*b)))
                .unwrap_or(name);
            assert!(seen.contains(base), "{l}: no TYPE line");
        }
    }

    #[test]
    fn an_absent_daemon_is_up_0_alone() {
        let t = render(None);
        assert_eq!(t.lines().filter(|l| !l.starts_with('#')).count(), 1);
        assert!(t.contains("vserverd_up 0\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(num(f64::INFINITY), "+Inf");
        assert_eq!(num(3.0), "3");
        assert_eq!(num(0.25), "0.25");
    }
}
