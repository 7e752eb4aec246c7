//! systemd's own varlink client, `varlinkctl` (systemd >= 255), from a cached Debian 13 tree,
//! run in a chroot against our socket.

use std::process::Command;

use harness::{is_root, require, GuestBuilder, TestDaemon};

fn trixie_tree() -> Option<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/trixie-tree.sh");
    let out = Command::new("bash").arg(script).output().ok()?;
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs varlinkctl ARGS in the trixie chroot, with the daemon's run dir bound at /run/vsd
/// and a /proc (varlinkctl connects through /proc/self/fd) inside a private mount namespace, so
/// nothing is left mounted whatever happens.
fn varlinkctl(tree: &str, d: &TestDaemon, args: &[&str]) -> std::process::Output {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    let script = format!(
        "set -e; mkdir -p '{tree}/run/vsd'; mount --make-rprivate /; mount --bind '{run}' '{tree}/run/vsd'; mount -t proc proc '{tree}/proc'; \
         exec chroot '{tree}' /usr/bin/varlinkctl {args}",
        run = d.run_dir.display(),
        args = quoted.join(" ")
    );
    Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .expect("unshare")
}

#[test]
fn varlinkctl_info_introspect_and_call() {
    if !require(is_root(), "root (chroot and bind mounts)") {
        return;
    }
    let tree = trixie_tree();
    if !require(
        tree.is_some(),
        "the trixie tree with varlinkctl (scripts/trixie-tree.sh)",
    ) {
        return;
    }
    let tree = tree.unwrap();
    let mut d = TestDaemon::prepare();
    GuestBuilder::new("web").context(40200).write(&d);
    d.spawn();
    let sock = "/run/vsd/control";

    let ok = |o: &std::process::Output| {
        assert!(
            o.status.success(),
            "varlinkctl failed\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };

    let info = ok(&varlinkctl(&tree, &d, &["info", sock]));
    assert!(info.contains("org.linux-vserver.Manager"), "{info}");
    assert!(info.contains("vserverd"), "{info}");

    let idl = ok(&varlinkctl(
        &tree,
        &d,
        &["introspect", sock, "org.linux-vserver.Manager"],
    ));
    assert!(idl.contains("interface org.linux-vserver.Manager"), "{idl}");
    assert!(idl.contains("method List()"), "{idl}");

    let list = ok(&varlinkctl(
        &tree,
        &d,
        &["call", sock, "org.linux-vserver.Manager.List", "{}"],
    ));
    let v: serde_json::Value = serde_json::from_str(&list).expect("JSON from varlinkctl call");
    assert_eq!(v["guests"][0]["name"], "web");
    assert_eq!(v["guests"][0]["context"], 40200);

    let st = ok(&varlinkctl(
        &tree,
        &d,
        &[
            "call",
            sock,
            "org.linux-vserver.Manager.Status",
            r#"{"name":"web"}"#,
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&st).expect("JSON");
    assert_eq!(v["state"], "stopped");

    // An error comes back typed, and varlinkctl exits non-zero with its name.
    let o = varlinkctl(
        &tree,
        &d,
        &[
            "call",
            sock,
            "org.linux-vserver.Manager.Status",
            r#"{"name":"nosuch"}"#,
        ],
    );
    assert!(!o.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(all.contains("NoSuchGuest"), "{all}");
}
