//! The corpus: config trees as util-vserver's own build and other public provisioning tools
//! wrote them (tests/corpus/NAME/tree, described in NAME/ABOUT), each installed unchanged into a
//! daemon's config root. `check` must give util-vserver 0.30.216's verdict on each (what its
//! `vserver NAME start` does with the tree): accepted, or refused naming the same files, with
//! the stable codes ABOUT lists. Accepted trees are then started for real on a busybox root
//! (in a network namespace standing in for the host's network): an accepted tree that cannot
//! start would be a wrong verdict.
//!
//! A case's `config-root/` holds what its writer keeps beside the guests (copied into the config
//! root); symlinks into /etc/vservers point into the test's config root. ABOUT fields read here: `verdict: accepted | refused FILE`, `also-refused: FILE…`,
//! `errors: FILE=CODE…` (every error vserverd reports, exactly), `warnings: FILE=CODE…` (among
//! the warnings), `empty-dirs: DIR…` (git keeps no empty folder), `host-paths: PATH…` (host
//! folders the tree's fstab mounts, made under the test's scratch folder), `guest-dirs: PATH…`
//! (folders the guest's distribution has, such as a mount point), `start: no (WHY)`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use harness::{require, TestDaemon};
use serde_json::Value;

struct Case {
    name: String,
    about: BTreeMap<String, String>,
}

impl Case {
    fn field(&self, k: &str) -> &str {
        self.about.get(k).map(String::as_str).unwrap_or("")
    }
    fn words(&self, k: &str) -> Vec<String> {
        self.field(k).split_whitespace().map(String::from).collect()
    }
    fn accepted(&self) -> bool {
        self.field("verdict") == "accepted"
    }
    /// (file, code) pairs of a `FILE=CODE …` field.
    fn pairs(&self, k: &str) -> Vec<(String, String)> {
        self.words(k)
            .iter()
            .map(|w| {
                let (f, c) = w
                    .split_once('=')
                    .unwrap_or_else(|| panic!("{}: {k}: {w} is not FILE=CODE", self.name));
                (f.to_string(), c.to_string())
            })
            .collect()
    }
    fn startable(&self) -> bool {
        self.accepted() && !self.field("start").starts_with("no")
    }
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn cases() -> Vec<Case> {
    let mut v: Vec<Case> = std::fs::read_dir(corpus_dir())
        .expect("tests/corpus")
        .flatten()
        .filter(|e| e.path().join("ABOUT").is_file())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(e.path().join("ABOUT")).unwrap();
            let about = text
                .lines()
                .filter_map(|l| l.split_once(": "))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect();
            Case { name, about }
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// The path under the scratch folder `host` that stands in for the host path `p`.
fn on_host(host: &Path, p: &str) -> PathBuf {
    host.join(p.trim_start_matches('/'))
}

fn copy_tree(src: &Path, dst: &Path, c: &Case, d: &TestDaemon, host: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    let host_paths = c.words("host-paths");
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let (s, t) = (e.path(), dst.join(e.file_name()));
        let m = std::fs::symlink_metadata(&s).unwrap();
        if m.file_type().is_symlink() {
            let target = std::fs::read_link(&s).unwrap();
            // vdir is the guest root; other host paths (run, cache) live under the scratch
            // folder, so the test never writes the real /var/run/vservers.
            let target = if e.file_name() == "vdir" && src.ends_with("tree") {
                d.guest_root(&c.name)
            } else if let Ok(rest) = target.strip_prefix("/etc/vservers") {
                // Into the config root (a shared interface folder beside the guests).
                d.config_root.join(rest)
            } else if target.is_absolute() {
                let p = on_host(host, &target.to_string_lossy());
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                p
            } else {
                target
            };
            std::os::unix::fs::symlink(target, &t).unwrap();
        } else if m.is_dir() {
            copy_tree(&s, &t, c, d, host);
        } else {
            let mut text = std::fs::read_to_string(&s).unwrap();
            // A host folder an fstab line mounts (its first field) is made under the scratch
            // folder; the mount point (second field) is in the guest.
            if e.file_name().to_string_lossy().starts_with("fstab") {
                text = text
                    .lines()
                    .map(|l| match l.split_once(char::is_whitespace) {
                        Some((src, rest)) if host_paths.iter().any(|p| p == src) => {
                            format!("{}\t{rest}\n", on_host(host, src).display())
                        }
                        _ => format!("{l}\n"),
                    })
                    .collect();
            }
            std::fs::write(&t, text).unwrap();
            let exec = m.permissions().mode() & 0o111 != 0;
            std::fs::set_permissions(
                &t,
                std::fs::Permissions::from_mode(if exec { 0o755 } else { 0o644 }),
            )
            .unwrap();
        }
    }
}

/// Installs a case's tree into the daemon's config root, with a busybox guest root that has
/// what the tree's init style runs.
fn install(c: &Case, d: &TestDaemon, host: &Path) {
    let cfg = d.guest_config(&c.name);
    copy_tree(&corpus_dir().join(&c.name).join("tree"), &cfg, c, d, host);
    // What the writer keeps beside the guests, under the config root.
    let beside = corpus_dir().join(&c.name).join("config-root");
    if beside.is_dir() {
        copy_tree(&beside, &d.config_root, c, d, host);
    }
    for e in c.words("empty-dirs") {
        std::fs::create_dir_all(cfg.join(e)).unwrap();
    }
    for p in c.words("host-paths") {
        std::fs::create_dir_all(on_host(host, &p)).unwrap();
    }
    // The root: busybox, plus the programs util-vserver's init styles start (sysv's rc, minit's
    // start and stop) and a tree's own cmd.start, as its distribution would have them.
    let root = d.guest_root(&c.name);
    std::fs::create_dir_all(&root).unwrap();
    harness::guest::busybox_root(&root);
    let script = |rel: &str, body: &str| {
        let p = root.join(rel.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    for p in c.words("guest-dirs") {
        std::fs::create_dir_all(root.join(p.trim_start_matches('/'))).unwrap();
    }
    script("etc/init.d/rc", "exit 0");
    script("sbin/minit-start", "exec /sbin/init");
    script("sbin/minit-stop", "exit 0");
    if let Ok(argv) = std::fs::read_to_string(cfg.join("apps/init/cmd.start")) {
        if let Some(prog) = argv.lines().next().filter(|p| p.starts_with('/')) {
            script(prog, "exec /sbin/init");
        }
    }
}

/// (file relative to the guest's config folder, code) of each problem in a JSON list.
fn problems(d: &TestDaemon, name: &str, list: &Value) -> Vec<(String, String)> {
    let cfg = d.guest_config(name);
    list.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let f = PathBuf::from(p["file"].as_str().unwrap());
            let rel = f
                .strip_prefix(&cfg)
                .map(|r| r.display().to_string())
                .unwrap_or_else(|_| f.display().to_string());
            (rel, p["code"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn every_tree_gets_util_vservers_verdict_and_accepted_ones_start() {
    if !(harness::require_busybox_guests()
        && require(
            Path::new("/usr/bin/nsenter").exists(),
            "nsenter (util-linux)",
        ))
    {
        return;
    }
    let cases = cases();
    assert!(cases.len() >= 20, "only {} trees", cases.len());
    let mut d = TestDaemon::prepare();
    let host = d.dir.path().join("host");
    d.host_netns();
    // The uplink the trees name (`dev eth0`), in the test's host network (a veth pair: the
    // dummy driver is not in every kernel).
    for args in [
        &[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer",
        ][..],
        &["ip", "link", "set", "eth0peer", "up"],
        &["ip", "link", "set", "eth0", "up"],
    ] {
        let o = d.in_host_net(args);
        assert!(o.status.success(), "{args:?}: {o:?}");
    }
    for c in &cases {
        install(c, &d, &host);
    }
    d.spawn();

    // Every guest at once, as a migrating admin runs it first.
    let out = d.ctl(&["check", "--all", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "some trees are refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("check --all --json");
    // A writer's folder beside the guests (the Puppet module's local-interfaces/) is no guest.
    assert!(
        !report["guests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "local-interfaces"),
        "{report}"
    );
    let by_name: BTreeMap<String, &Value> = report["guests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["name"].as_str().unwrap().to_string(), g))
        .collect();
    // The human form of --all: a line per guest on stdout, each error on stderr.
    let human = d.ctl(&["check", "--all"]);
    assert_eq!(human.status.code(), Some(1));
    let summary = String::from_utf8_lossy(&human.stdout).to_string();
    let mut wrong = Vec::new();
    for c in &cases {
        let n = summary
            .lines()
            .filter(|l| l.starts_with(&format!("{}: ", c.name)))
            .count();
        let ok = format!("{}: configuration ok", c.name);
        if n != 1 || summary.contains(&ok) != c.accepted() {
            wrong.push(format!("{}: check --all says {summary}", c.name));
        }
    }
    for c in &cases {
        let Some(g) = by_name.get(&c.name) else {
            wrong.push(format!("{}: not listed as a guest", c.name));
            continue;
        };
        let errors = problems(&d, &c.name, &g["errors"]);
        let warnings = problems(&d, &c.name, &g["warnings"]);
        if c.accepted() {
            if !errors.is_empty() {
                wrong.push(format!(
                    "{}: accepted by util-vserver, refused: {errors:?}",
                    c.name
                ));
            }
        } else {
            let mut files: Vec<String> = c.words("also-refused");
            files.push(
                c.field("verdict")
                    .strip_prefix("refused ")
                    .unwrap_or_else(|| panic!("{}: verdict {:?}", c.name, c.field("verdict")))
                    .to_string(),
            );
            for f in &files {
                if !errors.iter().any(|(ef, _)| ef == f) {
                    wrong.push(format!("{}: no error names {f}: {errors:?}", c.name));
                }
            }
            let mut want = c.pairs("errors");
            let mut got = errors.clone();
            want.sort();
            got.sort();
            if want != got {
                wrong.push(format!("{}: errors {got:?}, ABOUT says {want:?}", c.name));
            }
        }
        for w in c.pairs("warnings") {
            if !warnings.contains(&w) {
                wrong.push(format!(
                    "{}: warning {w:?} missing from {warnings:?}",
                    c.name
                ));
            }
        }
        // The human form agrees: exit 1 and FILE:LINE: MESSAGE lines for each error.
        let o = d.ctl(&["check", &c.name]);
        let said = String::from_utf8_lossy(&o.stderr).to_string();
        if o.status.code() != Some(if c.accepted() { 0 } else { 1 }) {
            wrong.push(format!("{}: check exited {:?}: {said}", c.name, o.status));
        }
        for (f, _) in &errors {
            let path = d.guest_config(&c.name).join(f);
            if !said
                .lines()
                .any(|l| l.starts_with(&format!("{}:", path.display())))
            {
                wrong.push(format!("{}: human check does not name {f}: {said}", c.name));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // One guest in JSON: its errors with their codes, no config; a start names the first error
    // and how many more there are.
    let bad = "bad-flag-and-cap-and-limit";
    let out = d.ctl(&["check", bad, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("check --json");
    assert_eq!(v["name"], bad);
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(4), "{v}");
    assert!(v.get("config").is_none(), "{v}");
    let o = d.ctl(&["start", bad]);
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        said.contains(&format!(
            "(and 3 more: `vserverctl check {bad}` lists them all)"
        )),
        "{said}"
    );
    assert_eq!(d.status(bad)["state"], "stopped");

    // Accepted trees start, run and stop.
    let mut started = 0;
    for c in cases.iter().filter(|c| c.startable()) {
        let o = d.ctl(&["start", &c.name]);
        if !o.status.success() {
            wrong.push(format!(
                "{}: accepted but does not start: {}",
                c.name,
                String::from_utf8_lossy(&o.stderr)
            ));
            continue;
        }
        let pid = d.init_pid(&c.name);
        assert!(Path::new(&format!("/proc/{pid}")).exists(), "{}", c.name);
        let o = d.ctl(&["stop", &c.name]);
        if !o.status.success() {
            wrong.push(format!(
                "{}: does not stop: {}",
                c.name,
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        started += 1;
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(started >= 15, "only {started} trees started");
}
