//! Benchmarks (not tests): `cargo run --release -p vserverd-tests --bin vserverd-bench -- list`.
//!
//! `list [--guests N] [--calls N]`: a daemon on temporary roots with N configured guests, then
//! N sequential List calls on one connection; prints p50/p99 latency and calls per second.

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
    let mut lat = Vec::with_capacity(calls);
    let t0 = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        let r = c.call("org.linux-vserver.Manager.List", json!({}));
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(
            r["parameters"]["guests"].as_array().map(|a| a.len()),
            Some(guests)
        );
    }
    let total = t0.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "List with {guests} guests, {calls} calls: p50 {:.0} µs, p99 {:.0} µs, {:.0} calls/s",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        calls as f64 / total
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("list") => bench_list(&args[1..]),
        _ => {
            eprintln!("usage: vserverd-bench list [--guests N] [--calls N]");
            std::process::exit(2);
        }
    }
}
