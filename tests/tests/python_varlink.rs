//! A real varlink peer: python's `varlink` (PyPI) talks to the daemon.

use harness::{require, GuestBuilder};

#[test]
fn python_varlink_client_reads_info_description_list_status_events_and_typed_errors() {
    let have = std::process::Command::new("python3")
        .args(["-c", "import varlink"])
        .status()
        .is_ok_and(|s| s.success());
    if !require(have, "python3 module varlink (pip install varlink)") {
        return;
    }
    let mut d = harness::TestDaemon::prepare();
    let web = GuestBuilder::new("web")
        .context(40100)
        .file("apps/init/mark", "default\n")
        .write(&d);
    // A guest whose start fails in the stage, on a system call: its fstab mounts on a mount
    // point its root lacks (ENOENT). The error must arrive typed, with the step and the errno.
    GuestBuilder::busybox("zbroken")
        .context(40101)
        .file("fstab", "/nonexistent-source /mnt none bind 0 0\n")
        .write(&d);
    d.spawn();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python_varlink.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(format!("unix:{}", d.socket.display()))
        .arg(proto::IDL.trim_end())
        .arg(&web)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python varlink test failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
