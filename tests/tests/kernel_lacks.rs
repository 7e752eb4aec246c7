//! check and status say what the running kernel lacks of kernel-patch/ where a guest would use
//! it (docs/kernel-patch.md): per-cgroup load averages for a virt_load guest, copy-on-write
//! links for a guest on ext4 that asks for unification. This machine's kernel has neither
//! (the VM tier's vm_kernel.rs boots one that has both and sees no warning).

use harness::loopfs::mount_loop;
use harness::{GuestBuilder, TestDaemon};

fn check_json(d: &TestDaemon, name: &str) -> serde_json::Value {
    let o = d.ctl(&["check", name, "--json"]);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "check --json: {e}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn codes(v: &serde_json::Value) -> Vec<String> {
    v["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| w["code"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn a_virt_load_guest_hears_that_the_kernel_keeps_no_per_cgroup_load_averages() {
    if !harness::require_busybox_guests() {
        return;
    }
    let d = TestDaemon::start();
    GuestBuilder::busybox("vl")
        .context(47500)
        .file("cflags", "virt_load\n")
        .write(&d);
    GuestBuilder::busybox("plain").context(47501).write(&d);
    d.ctl_ok(&["start", "vl"]);
    let v = check_json(&d, "vl");
    assert!(codes(&v).contains(&"kernel-no-loadavg".to_string()), "{v}");
    let st = d.status("vl");
    let lacks = st["kernel_lacks"].as_str().unwrap_or_default();
    assert!(lacks.contains("CONFIG_CGROUP_LOADAVG"), "{st}");
    // On stderr of the human form.
    let o = d.ctl(&["status", "vl"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("per-cgroup load averages"),
        "{o:?}"
    );
    // A guest that does not ask for it hears nothing.
    assert!(!codes(&check_json(&d, "plain")).contains(&"kernel-no-loadavg".to_string()));
    assert!(d.status("plain")["kernel_lacks"].is_null());
    d.ctl_ok(&["stop", "vl"]);
}

#[test]
fn a_guest_on_ext4_that_asks_for_unification_hears_that_the_kernel_has_no_cowlinks() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let Some(_mnt) = mount_loop(&d, "ext4", 64) else {
        return;
    };
    d.spawn();
    GuestBuilder::busybox("ue")
        .context(47502)
        .file("apps/vunify/exclude", "/var/log\n")
        .write(&d);
    GuestBuilder::busybox("ne").context(47503).write(&d);
    let v = check_json(&d, "ue");
    assert!(codes(&v).contains(&"kernel-no-cowlink".to_string()), "{v}");
    let w = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["code"] == "kernel-no-cowlink")
        .unwrap();
    assert!(
        w["file"].as_str().unwrap().ends_with("ue/apps/vunify"),
        "{w}"
    );
    assert!(d.status("ue")["kernel_lacks"]
        .as_str()
        .is_some_and(|s| s.contains("CONFIG_COWLINK")));
    // No unification asked for: nothing said.
    assert!(!codes(&check_json(&d, "ne")).contains(&"kernel-no-cowlink".to_string()));
    // The probe left nothing in the state directory.
    let left: Vec<_> = std::fs::read_dir(&d.state_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("cowlink"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
