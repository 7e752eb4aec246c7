//! Disk limits (dlimits/, docs/resources.md): on a btrfs loop image with quotas on, a guest
//! root that is a subvolume gets its qgroup limited at start (the kernel's view: `btrfs qgroup
//! show`), the guest gets EDQUOT at the limit while the host writes on, `set --disk` changes it
//! live, stat and du show use and limit, stop takes the limit away. A file system that cannot
//! keep a limit fails the start saying why and leaves nothing behind; bad values fail `check`
//! with file and line. Project quotas (XFS, ext4) are tested in the VM tier (vm_dlimits.rs):
//! this host's kernel has no XFS or ext4 quota support.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use harness::loopfs::{btrfs_with_quota as btrfs, mount_loop, qgroup_limit};
use harness::{GuestBuilder, TestDaemon};

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn dlimit(space_kib: &str, inodes: &str, reserved: &str, dir: &Path) -> Vec<(String, String)> {
    vec![
        ("dlimits/0/directory".into(), format!("{}\n", dir.display())),
        ("dlimits/0/space_total".into(), format!("{space_kib}\n")),
        ("dlimits/0/inodes_total".into(), format!("{inodes}\n")),
        ("dlimits/0/reserved".into(), format!("{reserved}\n")),
    ]
}

fn guest(d: &TestDaemon, name: &str, ctx: u32, files: Vec<(String, String)>) {
    let mut b = GuestBuilder::busybox(name).context(ctx);
    for (f, c) in &files {
        b = b.file(f, c);
    }
    b.write(d);
}

/// dd of `mib` MiB into the guest; its exit status and what it said.
fn write_in(d: &TestDaemon, name: &str, file: &str, mib: u32) -> (bool, String) {
    let o = d.ctl(&[
        "exec",
        name,
        "--",
        "/bin/sh",
        "-c",
        &format!("dd if=/dev/zero of={file} bs=1M count={mib} && sync"),
    ]);
    (o.status.success(), text(&o))
}

#[test]
fn btrfs_qgroup_limit_at_start_edquot_live_change_stat_du_and_stop() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let Some(_mnt) = btrfs(&d, &["dq"]) else {
        return;
    };
    d.spawn();
    let root = d.vdir_base.join("dq");
    // 24 MiB, an inode limit btrfs cannot keep (a warning), no reserve.
    guest(&d, "dq", 47400, dlimit("24576", "1000", "0", &root));
    assert_eq!(qgroup_limit(&d.vdir_base, "dq"), None);
    let out = d.ctl_ok(&["start", "dq"]);
    assert!(out.contains("inodes_total is not applied"), "{out}");
    assert_eq!(qgroup_limit(&d.vdir_base, "dq"), Some(24 << 20));

    // The guest hits the limit; the host (outside its subvolume) writes on.
    let (ok, said) = write_in(&d, "dq", "/big", 40);
    assert!(!ok, "40 MiB under a 24 MiB limit: {said}");
    assert!(said.contains("quota"), "EDQUOT: {said}");
    std::fs::write(d.vdir_base.join("host.bin"), vec![1u8; 40 << 20]).unwrap();

    // stat and du show use and limit.
    let st: serde_json::Value = serde_json::from_str(&d.ctl_ok(&["stat", "--json"])).unwrap();
    let g = st["guests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "dq")
        .unwrap()
        .clone();
    assert_eq!(g["disk_limit_bytes"], 24 << 20, "{g}");
    assert!(g["disk_used_bytes"].as_u64().unwrap() > 16 << 20, "{g}");
    let table = d.ctl_ok(&["stat"]);
    assert!(table.contains("DISK") && table.contains("24.0M"), "{table}");
    let du: serde_json::Value = serde_json::from_str(&d.ctl_ok(&["du", "dq", "--json"])).unwrap();
    assert_eq!(du["guests"][0]["quota_limit_bytes"], 24 << 20, "{du}");

    // Live: a larger limit lets the write through.
    d.ctl_ok(&["exec", "dq", "--", "/bin/sh", "-c", "rm -f /big; sync"]);
    d.ctl_ok(&["set", "dq", "--disk", "64M"]);
    assert_eq!(qgroup_limit(&d.vdir_base, "dq"), Some(64 << 20));
    let (ok, said) = write_in(&d, "dq", "/big", 40);
    assert!(ok, "40 MiB under 64 MiB: {said}");
    // A smaller one bites at once.
    d.ctl_ok(&["set", "dq", "--disk", "48M"]);
    let (ok, said) = write_in(&d, "dq", "/big2", 20);
    assert!(!ok && said.contains("quota"), "{said}");

    // --persist writes util-vserver's files (KiB).
    d.ctl_ok(&["set", "dq", "--disk", "50M", "--persist"]);
    let cfg = d.guest_config("dq");
    assert_eq!(
        std::fs::read_to_string(cfg.join("dlimits/0/space_total")).unwrap(),
        "51200\n"
    );
    assert_eq!(qgroup_limit(&d.vdir_base, "dq"), Some(50 << 20));
    d.ctl_ok(&["check", "dq"]);

    // Stop takes it away, as util-vserver's did; the next start sets it again.
    d.ctl_ok(&["stop", "dq"]);
    assert_eq!(qgroup_limit(&d.vdir_base, "dq"), None);
    d.ctl_ok(&["start", "dq"]);
    assert_eq!(qgroup_limit(&d.vdir_base, "dq"), Some(50 << 20));
    d.ctl_ok(&["stop", "dq"]);
    assert_eq!(qgroup_limit(&d.vdir_base, "dq"), None);
}

#[test]
fn set_disk_on_a_guest_without_dlimits_limits_its_root_until_stop() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let Some(_mnt) = btrfs(&d, &["dn"]) else {
        return;
    };
    d.spawn();
    guest(&d, "dn", 47401, vec![]);
    d.ctl_ok(&["start", "dn"]);
    d.ctl_ok(&["set", "dn", "--disk", "16M"]);
    assert_eq!(qgroup_limit(&d.vdir_base, "dn"), Some(16 << 20));
    let (ok, said) = write_in(&d, "dn", "/big", 30);
    assert!(!ok && said.contains("quota"), "{said}");
    d.ctl_ok(&["stop", "dn"]);
    assert_eq!(qgroup_limit(&d.vdir_base, "dn"), None);
}

/// Nothing of a refused start is left: no run state, journal or cgroup, no limit.
fn refused(d: &TestDaemon, name: &str, why: &str) {
    let o = d.ctl(&["start", name]);
    let said = text(&o);
    assert!(!o.status.success(), "{said}");
    assert!(said.contains(why), "expected {why:?} in: {said}");
    for f in [format!("{name}.json"), format!("{name}.pending")] {
        assert!(!d.run_dir.join("guests").join(f).exists());
    }
    for dir in d.cgroup_dirs(name) {
        assert!(!dir.exists(), "cgroup {} left", dir.display());
    }
}

#[test]
fn a_file_system_that_cannot_keep_the_limit_fails_the_start_saying_why() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let Some(_mnt) = btrfs(&d, &["sv"]) else {
        return;
    };
    d.spawn();
    // A plain folder on btrfs: no qgroup of its own.
    let plain = d.vdir_base.join("np");
    guest(&d, "np", 47402, dlimit("1024", "-1", "0", &plain));
    refused(&d, "np", "not a btrfs subvolume");
    // A folder on tmpfs.
    let tmp = d.dir.path().join("tmpfs");
    std::fs::create_dir_all(&tmp).unwrap();
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&tmp)
        .status()
        .unwrap()
        .success());
    guest(&d, "tf", 47403, dlimit("1024", "-1", "0", &tmp));
    refused(&d, "tf", "this is tmpfs");
    let _ = Command::new("umount").arg(&tmp).status();
    // Quotas off on the file system.
    assert!(Command::new("btrfs")
        .args(["quota", "disable"])
        .arg(&d.vdir_base)
        .status()
        .unwrap()
        .success());
    guest(
        &d,
        "qo",
        47404,
        dlimit("1024", "-1", "0", &d.vdir_base.join("sv")),
    );
    refused(&d, "qo", "btrfs quota enable");
    // Each starts once the limit is gone.
    std::fs::remove_dir_all(d.guest_config("qo").join("dlimits")).unwrap();
    d.ctl_ok(&["start", "qo"]);
    d.ctl_ok(&["stop", "qo"]);
}

#[test]
fn project_quotas_on_a_kernel_without_them_fail_the_start_and_mark_nothing() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let Some(_mnt) = mount_loop(&d, "xfs", 300) else {
        return;
    };
    d.spawn();
    let root = d.vdir_base.join("xq");
    guest(&d, "xq", 47405, dlimit("1024", "100", "5", &root));
    let o = d.ctl(&["start", "xq"]);
    if o.status.success() {
        // This kernel keeps XFS project quotas: the VM tier's test covers them.
        d.ctl_ok(&["stop", "xq"]);
        return;
    }
    let said = text(&o);
    assert!(
        said.contains("quota") && said.contains(&root.display().to_string()),
        "{said}"
    );
    refused(&d, "xq", "quota");
    // Nothing marked: the quota is asked for before the tree is touched.
    let o = Command::new("lsattr")
        .arg("-dp")
        .arg(&root)
        .output()
        .unwrap();
    let projid = String::from_utf8_lossy(&o.stdout);
    assert!(projid.trim_start().starts_with("0 "), "{projid}");
}

#[test]
fn check_names_file_and_line_of_bad_dlimits() {
    let mut d = TestDaemon::prepare();
    d.spawn();
    let root = d.vdir_base.join("bd");
    guest(&d, "bd", 47406, dlimit("1024", "-1", "150", &root));
    let o = d.ctl(&["check", "bd"]);
    let said = text(&o);
    assert!(!o.status.success(), "{said}");
    assert!(said.contains("dlimits/0/reserved:1"), "{said}");
    assert!(
        said.contains("dlimit-invalid") || said.contains("over 100"),
        "{said}"
    );
    std::fs::write(d.guest_config("bd").join("dlimits/0/reserved"), "0\n").unwrap();
    std::fs::write(d.guest_config("bd").join("dlimits/0/space_total"), "lots\n").unwrap();
    let said = text(&d.ctl(&["check", "bd"]));
    assert!(said.contains("dlimits/0/space_total:1"), "{said}");
    std::fs::write(d.guest_config("bd").join("dlimits/0/space_total"), "-1\n").unwrap();
    std::fs::write(
        d.guest_config("bd").join("dlimits/0/directory"),
        "relative/path\n",
    )
    .unwrap();
    let said = text(&d.ctl(&["check", "bd"]));
    assert!(said.contains("dlimits/0/directory:1"), "{said}");
}

#[test]
fn build_on_btrfs_makes_the_root_a_subvolume_that_a_limit_then_holds() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    // Quotas on, no subvolume made by hand.
    let Some(mnt) = btrfs(&d, &[]) else {
        return;
    };
    d.spawn();
    // The clone's source: a plain folder (made before this change, say).
    guest(&d, "plain", 47410, vec![]);
    let src = d.vdir_base.join("plain");
    assert_ne!(std::fs::metadata(&src).unwrap().ino(), 256);
    // An empty root in place already (util-vserver allows one): the build renames onto it.
    std::fs::create_dir(d.vdir_base.join("bs2")).unwrap();
    for n in ["bs", "bs2"] {
        let o = d.ctl(&["build", n, "-m", "clone", "--", "--source", "plain"]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("a btrfs subvolume"), "{}", text(&o));
        let root = d.vdir_base.join(n);
        // The kernel's view: a subvolume's root folder is inode 256, and btrfs lists it.
        assert_eq!(std::fs::metadata(&root).unwrap().ino(), 256, "{n}");
        let list = Command::new("btrfs")
            .args(["subvolume", "list"])
            .arg(&d.vdir_base)
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&list.stdout).into_owned();
        assert!(
            list.lines().any(|l| l.ends_with(&format!("path {n}"))),
            "{n} not a subvolume: {list}"
        );
    }
    // A limit on the built root works; the plain folder's is refused, naming the conversion.
    let root = d.vdir_base.join("bs");
    for (f, c) in dlimit("16384", "-1", "0", &root) {
        let p = d.guest_config("bs").join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
    d.ctl_ok(&["start", "bs"]);
    assert_eq!(qgroup_limit(&mnt.at, "bs"), Some(16 << 20));
    let (ok, said) = write_in(&d, "bs", "/big", 32);
    assert!(!ok && said.contains("quota"), "{said}");
    d.ctl_ok(&["stop", "bs"]);
    for (f, c) in dlimit("16384", "-1", "0", &src) {
        let p = d.guest_config("plain").join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
    refused(&d, "plain", "btrfs subvolume create");
    refused(&d, "plain", "cp -a --reflink=always");
    // Deleting a subvolume guest removes the subvolume.
    d.ctl_ok(&["delete", "bs2", "--yes"]);
    assert!(!d.vdir_base.join("bs2").exists());
    let list = Command::new("btrfs")
        .args(["subvolume", "list"])
        .arg(&d.vdir_base)
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains("path bs2"),
        "bs2's subvolume left"
    );
}

#[test]
fn editing_dlimits_of_a_running_guest_applies_the_new_totals_live_or_asks_for_a_restart() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let Some(_mnt) = btrfs(&d, &["ed"]) else {
        return;
    };
    d.spawn();
    let root = d.vdir_base.join("ed");
    guest(&d, "ed", 47420, dlimit("16384", "-1", "0", &root));
    d.ctl_ok(&["start", "ed"]);
    assert_eq!(qgroup_limit(&d.vdir_base, "ed"), Some(16 << 20));
    // The total edited by hand: the watcher applies it, as `set --disk` would; no restart.
    let cfg = d.guest_config("ed");
    std::fs::write(cfg.join("dlimits/0/space_total"), "40960\n").unwrap();
    d.wait_until("the edited limit on the qgroup", || {
        qgroup_limit(&d.vdir_base, "ed") == Some(40 << 20)
    });
    assert_eq!(d.status("ed")["restart_needed"], false);
    let (ok, said) = write_in(&d, "ed", "/big", 24);
    assert!(ok, "24 MiB under the edited 40 MiB: {said}");
    let st: serde_json::Value = serde_json::from_str(&d.ctl_ok(&["stat", "--json"])).unwrap();
    let g = st["guests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "ed")
        .unwrap()
        .clone();
    assert_eq!(g["disk_limit_bytes"], 40 << 20, "{g}");
    // Pointed at another directory: that needs a restart, and the limit stays as it was.
    std::fs::write(
        cfg.join("dlimits/0/directory"),
        format!("{}\n", root.join("usr").display()),
    )
    .unwrap();
    d.wait_until("restart needed", || {
        d.status("ed")["restart_needed"] == true
    });
    assert_eq!(qgroup_limit(&d.vdir_base, "ed"), Some(40 << 20));
    d.ctl_ok(&["stop", "ed"]);
}

#[test]
fn check_warns_of_cap_sys_resource_with_an_ext4_disk_limit() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let Some(_mnt) = mount_loop(&d, "ext4", 64) else {
        return;
    };
    d.spawn();
    let with = |name: &str, ctx: u32, extra: Vec<(String, String)>| {
        let mut files = dlimit("1024", "100", "0", &d.vdir_base.join(name));
        files.extend(extra);
        guest(&d, name, ctx, files);
    };
    let cap = || ("bcapabilities".to_string(), "SYS_RESOURCE\n".to_string());
    with("rs", 47430, vec![cap()]);
    with("nr", 47431, vec![]);
    with(
        "un",
        47432,
        vec![cap(), ("spaces/user".into(), String::new())],
    );
    let warned = |name: &str| {
        let o = d.ctl(&["check", name, "--json"]);
        text(&o).contains("quota-overrun")
    };
    assert!(warned("rs"), "{}", text(&d.ctl(&["check", "rs"])));
    assert!(text(&d.ctl(&["check", "rs"])).contains("bcapabilities"));
    assert!(!warned("nr"), "no CAP_SYS_RESOURCE: no warning");
    assert!(
        !warned("un"),
        "in a user namespace the capability is not the host's"
    );
}
