//! Unification (docs/unify.md): guests on XFS and btrfs loop images share identical files'
//! blocks copy-on-write; a guest's write changes nothing in the others (checksums); guests
//! still start and run; exclude lists are honoured; a second run reads only what changed;
//! ext4 is refused saying why; SIGKILL of the daemon mid-way loses nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use harness::loopfs::mount_loop;
use harness::{GuestBuilder, TestDaemon};

/// Pseudo-random bytes, the same for the same seed.
fn data(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Every regular file under `root` with a checksum of its content.
fn checksums(root: &Path) -> BTreeMap<PathBuf, u64> {
    use std::hash::{Hash, Hasher};
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(e.path()).unwrap().hash(&mut h);
                out.insert(e.path(), h.finish());
            }
        }
    }
    out
}

/// Whether every extent of the file is shared (filefrag's `shared` flag, from FIEMAP).
fn shared(p: &Path) -> bool {
    let o = Command::new("filefrag").arg("-v").arg(p).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
        .filter(|l| l.contains(':'))
        .collect();
    !rows.is_empty() && rows.iter().all(|l| l.contains("shared"))
}

fn used_bytes(p: &Path) -> u64 {
    nix::unistd::sync();
    let s = nix::sys::statvfs::statvfs(p).unwrap();
    (s.blocks() - s.blocks_free()) as u64 * s.fragment_size() as u64
}

fn report(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

const BIG: usize = 8 << 20;

/// Three busybox guests with the same 8 MiB file, a hard link to it, the same file under
/// /etc (excluded by the built-in list) and one file of their own.
fn three_guests(d: &TestDaemon) {
    for (i, n) in ["ua", "ub", "uc"].iter().enumerate() {
        GuestBuilder::busybox(n).context(47300 + i as u32).write(d);
        let root = d.guest_root(n);
        std::fs::create_dir_all(root.join("opt")).unwrap();
        std::fs::write(root.join("opt/data.bin"), data(1, BIG)).unwrap();
        std::fs::hard_link(root.join("opt/data.bin"), root.join("opt/link.bin")).unwrap();
        std::fs::write(root.join("etc/big.conf"), data(2, 1 << 20)).unwrap();
        std::fs::write(root.join("opt/own.bin"), data(10 + i as u32, 1 << 20)).unwrap();
    }
}

fn unify_on(fs: &str) {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let Some(_mnt) = mount_loop(&d, fs, 400) else {
        return;
    };
    three_guests(&d);
    d.spawn();
    let guests = ["ua", "ub", "uc"];
    let before: Vec<_> = guests.iter().map(|n| checksums(&d.guest_root(n))).collect();
    let used_before = used_bytes(&d.vdir_base);

    // A dry run reads and hashes, and shares nothing.
    let r = report(&d.ctl_ok(&["unify", "--dry-run", "--json", "ua", "ub", "uc"]));
    assert_eq!(r["dry_run"], true);
    assert!(r["unified_files"].as_u64().unwrap() >= 2, "{r}");
    assert!(
        !shared(&d.guest_root("ub").join("opt/data.bin")),
        "dry run shared"
    );

    // One guest runs while it is unified.
    d.ctl_ok(&["start", "ua"]);
    let r = report(&d.ctl_ok(&["unify", "--json", "ua", "ub", "uc"]));
    eprintln!("{fs}: {r}");
    assert_eq!(r["dry_run"], false);
    assert!(r["unified_files"].as_u64().unwrap() >= 2, "{r}");
    assert!(
        r["unified_bytes"].as_u64().unwrap() >= 2 * BIG as u64,
        "{r}"
    );
    // Everything came from the store the dry run filled.
    assert_eq!(r["hashed_files"], 0, "{r}");
    for n in guests {
        let root = d.guest_root(n);
        assert!(
            shared(&root.join("opt/data.bin")),
            "{n}: data.bin not shared"
        );
        // Excluded by util-vserver's built-in list (/etc/*): left alone.
        assert!(!shared(&root.join("etc/big.conf")), "{n}: /etc was unified");
        assert!(
            !shared(&root.join("opt/own.bin")),
            "{n}: a unique file shared"
        );
    }
    let used_after = used_bytes(&d.vdir_base);
    eprintln!(
        "{fs}: used {:.1} MiB before, {:.1} MiB after",
        used_before as f64 / 1048576.0,
        used_after as f64 / 1048576.0
    );
    assert!(
        used_after + BIG as u64 <= used_before,
        "{fs}: unify freed less than one copy ({used_before} -> {used_after})"
    );
    // Content unchanged everywhere (a started guest adds files of its own: /etc/mtab …).
    for (n, b) in guests.iter().zip(&before) {
        let now = checksums(&d.guest_root(n));
        for (p, sum) in b {
            assert_eq!(now.get(p), Some(sum), "{n}: {} changed", p.display());
        }
    }
    // du sees the shared blocks.
    let du = report(&d.ctl_ok(&["du", "--json", "ua", "ub"]));
    for g in du["guests"].as_array().unwrap() {
        assert!(g["shared_bytes"].as_u64().unwrap() >= BIG as u64, "{g}");
        assert_eq!(
            g["own_bytes"].as_u64().unwrap() + g["shared_bytes"].as_u64().unwrap(),
            g["allocated_bytes"].as_u64().unwrap()
        );
    }

    // Copy-on-write: a write in the running guest changes nothing in the others.
    d.ctl_ok(&[
        "exec",
        "ua",
        "--",
        "sh",
        "-c",
        "echo changed | dd of=/opt/data.bin conv=notrunc 2>/dev/null",
    ]);
    d.ctl_ok(&["start", "ub"]);
    d.ctl_ok(&[
        "exec",
        "ub",
        "--",
        "sh",
        "-c",
        "echo appended >> /opt/link.bin",
    ]);
    let a = checksums(&d.guest_root("ua"));
    let b = checksums(&d.guest_root("ub"));
    let data_bin = |n: &str| d.guest_root(n).join("opt/data.bin");
    assert_ne!(
        a[&data_bin("ua")],
        before[0][&data_bin("ua")],
        "ua's write did not land"
    );
    assert_ne!(
        b[&data_bin("ub")],
        before[1][&data_bin("ub")],
        "ub's write did not land"
    );
    assert_eq!(checksums(&d.guest_root("uc")), before[2], "uc changed");
    assert_eq!(
        std::fs::read(d.guest_root("uc").join("opt/data.bin")).unwrap(),
        data(1, BIG)
    );
    // Both guests run on (their init still answers).
    d.ctl_ok(&["exec", "ua", "--", "true"]);
    d.ctl_ok(&["exec", "ub", "--", "true"]);

    // A second run reads only what changed and could have a twin: ua's rewritten file (ub's
    // grew to a size no other file has, so it is not even read).
    let r = report(&d.ctl_ok(&["unify", "--json", "ua", "ub", "uc"]));
    assert_eq!(r["hashed_files"], 1, "{r}");
    assert_eq!(r["hashed_bytes"], BIG as u64, "{r}");
    assert!(r["cached_files"].as_u64().unwrap() >= 1, "{r}");
    d.ctl_ok(&["stop", "ua"]);
    d.ctl_ok(&["stop", "ub"]);
    d.kill();
}

#[test]
fn unify_shares_blocks_copy_on_write_on_xfs() {
    unify_on("xfs");
}

#[test]
fn unify_shares_blocks_copy_on_write_on_btrfs() {
    unify_on("btrfs");
}

#[test]
fn unify_refuses_ext4_saying_why() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let Some(_mnt) = mount_loop(&d, "ext4", 200) else {
        return;
    };
    three_guests(&d);
    d.spawn();
    let before = checksums(&d.guest_root("ua"));
    let o = d.ctl(&["unify", "ua", "ub"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("ext4") && err.contains("reflink") && err.contains("XFS"),
        "{err}"
    );
    assert_eq!(checksums(&d.guest_root("ua")), before);
    d.kill();
}

#[test]
fn exclude_lists_are_honoured_and_a_bad_one_names_file_and_line() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let Some(_mnt) = mount_loop(&d, "xfs", 300) else {
        return;
    };
    three_guests(&d);
    // A guest's own list replaces the built-in one: uc keeps /opt and /etc to itself; ub's
    // and ua's lists share /etc/big.conf (ua's shares all of /etc).
    let ex = d.guest_config("uc").join("apps/vunify");
    std::fs::create_dir_all(&ex).unwrap();
    std::fs::write(ex.join("exclude"), "# mine\n/opt\n/etc/*\n").unwrap();
    let exb = d.guest_config("ub").join("apps/vunify");
    std::fs::create_dir_all(&exb).unwrap();
    std::fs::write(exb.join("exclude"), "+/etc/big.conf\n/etc/*\n").unwrap();
    let exa = d.guest_config("ua").join("apps/vunify");
    std::fs::create_dir_all(&exa).unwrap();
    std::fs::write(exa.join("exclude"), "+/etc/big.conf\n").unwrap();
    d.spawn();
    let r = report(&d.ctl_ok(&["unify", "--json", "ua", "ub", "uc"]));
    assert!(
        r["excludes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().ends_with("uc/apps/vunify/exclude")),
        "{r}"
    );
    assert!(shared(&d.guest_root("ua").join("opt/data.bin")));
    assert!(shared(&d.guest_root("ub").join("opt/data.bin")));
    assert!(
        !shared(&d.guest_root("uc").join("opt/data.bin")),
        "uc's /opt"
    );
    assert!(shared(&d.guest_root("ua").join("etc/big.conf")));
    assert!(shared(&d.guest_root("ub").join("etc/big.conf")));
    assert!(!shared(&d.guest_root("uc").join("etc/big.conf")));

    // A bad list: the call fails naming the file and line, and nothing is shared.
    std::fs::write(d.guest_root("ua").join("opt/new.bin"), data(5, 1 << 20)).unwrap();
    std::fs::write(d.guest_root("ub").join("opt/new.bin"), data(5, 1 << 20)).unwrap();
    std::fs::write(exa.join("exclude"), "/usr\nvar/log\n").unwrap();
    let o = d.ctl(&["unify", "ua", "ub"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("ua/apps/vunify/exclude") && err.contains(":2"),
        "{err}"
    );
    assert!(!shared(&d.guest_root("ub").join("opt/new.bin")));
    d.kill();
}

#[test]
fn sigkill_of_the_daemon_mid_unify_loses_nothing() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let Some(_mnt) = mount_loop(&d, "xfs", 400) else {
        return;
    };
    three_guests(&d);
    // Many groups, so the kill comes with work before and after it.
    for n in ["ua", "ub", "uc"] {
        let dir = d.guest_root(n).join("opt/many");
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..200u32 {
            std::fs::write(dir.join(format!("f{i}")), data(100 + i, 64 << 10)).unwrap();
        }
    }
    let sums: Vec<_> = ["ua", "ub", "uc"]
        .iter()
        .map(|n| checksums(&d.guest_root(n)))
        .collect();
    for point in ["unify.hashed", "unify.share"] {
        d.env = vec![("VSERVERD_FAULT".into(), format!("{point}=kill"))];
        d.spawn();
        let o = d.ctl(&["unify", "ua", "ub", "uc"]);
        assert!(!o.status.success(), "{point}: the run survived its kill");
        d.kill();
        for (n, s) in ["ua", "ub", "uc"].iter().zip(&sums) {
            assert_eq!(&checksums(&d.guest_root(n)), s, "{point}: {n} changed");
        }
    }
    // A fresh daemon finishes the job from the store the killed one left.
    d.env.clear();
    d.spawn();
    let r = report(&d.ctl_ok(&["unify", "--json", "ua", "ub", "uc"]));
    assert!(r["cached_files"].as_u64().unwrap() > 0, "{r}");
    for n in ["ua", "ub", "uc"] {
        assert!(shared(&d.guest_root(n).join("opt/many/f7")), "{n}");
    }
    for (n, s) in ["ua", "ub", "uc"].iter().zip(&sums) {
        assert_eq!(&checksums(&d.guest_root(n)), s, "{n} changed");
    }
    d.kill();
}

#[test]
fn util_vserver_names_unify_and_say_what_they_did() {
    if !harness::require_busybox_guests() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let Some(_mnt) = mount_loop(&d, "xfs", 300) else {
        return;
    };
    three_guests(&d);
    d.spawn();
    let bin = d.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let run = |name: &str, args: &[&str]| {
        let p = bin.join(name);
        if std::fs::symlink_metadata(&p).is_err() {
            std::os::unix::fs::symlink(harness::bins::vserverctl(), &p).unwrap();
        }
        let o = Command::new(&p)
            .args(args)
            .env("VSERVERD_SOCKET", &d.socket)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, _, err) = run("vhashify", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("No directory/vserver given"), "{err}");
    let (code, out, err) = run("vhashify", &["-n", "-v", "ua", "ub"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("would share") && out.contains("dry run"),
        "{out}"
    );
    assert!(!shared(&d.guest_root("ua").join("opt/data.bin")));
    let (code, out, err) = run("vunify", &["ua", "ub"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("shared"), "{out}");
    assert!(shared(&d.guest_root("ub").join("opt/data.bin")));
    // `vserver NAME hashify`: the guest alone (its own duplicates; here none new).
    let (code, out, err) = run("vserver", &["uc", "hashify"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("unify: 1 guests"), "{out}");
    let (code, _, err) = run("vserver", &["uc", "unify", "--bogus"]);
    assert_eq!(code, 2, "{err}");
    d.kill();
}
