//! Guests in a user namespace of their own (spaces/user), as root: real busybox guests over
//! unchanged trees, checked from the kernel's side (/proc/PID/uid_map, status, ns links,
//! mountinfo, stat of what the guest made).

use std::os::unix::fs::MetadataExt;

use harness::{GuestBuilder, TestDaemon};

fn prerequisites() -> bool {
    harness::require_busybox_guests()
}

fn proc_status(pid: i32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

fn ns(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/{kind}: {e}"))
}

/// The inode of `pid`'s namespace `kind` (or of its user namespace: "user").
fn ns_ino(pid: &str, kind: &str) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/{kind}"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/{kind}: {e}"))
        .ino()
}

/// The inode of the user namespace that owns `pid`'s namespace `kind`: the kernel's own
/// answer (ioctl NS_GET_USERNS on its nsfs file).
fn owner(pid: &str, kind: &str) -> u64 {
    let f = std::fs::File::open(format!("/proc/{pid}/ns/{kind}")).unwrap();
    let u = vserverd::sys::ns::owner_userns(&f)
        .unwrap_or_else(|e| panic!("NS_GET_USERNS on /proc/{pid}/ns/{kind}: {e}"));
    std::fs::File::from(u).metadata().unwrap().ino()
}

/// The base of the range the daemon recorded for `name`.
fn base_of(d: &TestDaemon, name: &str) -> u32 {
    let t = std::fs::read_to_string(d.state_dir.join("userns/ranges")).expect("ranges file");
    t.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|b| b.trim().parse().ok())
        .unwrap_or_else(|| panic!("no range for {name} in\n{t}"))
}

fn userns_guest(d: &TestDaemon, name: &str, ctx: u32) -> std::path::PathBuf {
    GuestBuilder::busybox(name)
        .context(ctx)
        .file("spaces/user", "")
        .write(d)
}

#[test]
fn a_user_namespace_guest_is_root_inside_and_a_range_of_host_ids_outside() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    userns_guest(&d, "un", 42001);
    GuestBuilder::busybox("plain").context(42002).write(&d);
    let root = d.guest_root("un");
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000::/home/web:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nweb:x:1000:\n").unwrap();
    std::fs::create_dir_all(root.join("home/web")).unwrap();
    std::os::unix::fs::chown(root.join("home/web"), Some(1000), Some(1000)).unwrap();
    let before = std::fs::metadata(root.join("bin/busybox")).unwrap();
    d.spawn();
    d.ctl_ok(&["start", "un"]);
    d.ctl_ok(&["start", "plain"]);
    let base = base_of(&d, "un");
    assert!((524288..1879048191).contains(&base), "{base}");
    let init = d.init_pid("un");
    // The kernel's view: its map is exactly its range; its ids on the host are BASE.
    let map = std::fs::read_to_string(format!("/proc/{init}/uid_map")).unwrap();
    let f: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(f, ["0", &base.to_string(), "65536"], "{map}");
    let gmap = std::fs::read_to_string(format!("/proc/{init}/gid_map")).unwrap();
    assert_eq!(
        gmap.split_whitespace().nth(1),
        Some(base.to_string().as_str())
    );
    assert!(proc_status(init, "Uid").starts_with(&format!("{base}\t")));
    assert!(proc_status(init, "Gid").starts_with(&format!("{base}\t")));
    // Every namespace but the user namespace is owned by the guest's: each differs from the
    // host's and from the other guest's, and the user namespace is not the host's.
    let (plain, un) = (d.init_pid("plain").to_string(), init.to_string());
    for k in ["user", "mnt", "pid", "uts", "ipc", "cgroup", "net"] {
        assert_ne!(ns(&un, k), ns("self", k), "{k} is the host's");
        assert_ne!(ns(&un, k), ns(&plain, k), "{k} is the other guest's");
    }
    assert_eq!(ns(&plain, "user"), ns("self", "user"));
    // And the kernel says who owns each: the guest's user namespace (the time namespace of
    // virt_uptime, a default flag, included).
    for k in ["mnt", "pid", "uts", "ipc", "cgroup", "net", "time"] {
        assert_eq!(owner(&un, k), ns_ino(&un, "user"), "{k}'s owner");
        assert_eq!(
            owner(&plain, k),
            ns_ino("self", "user"),
            "the plain guest's {k}"
        );
    }
    // Inside: root, and the tree looks as it always did (idmapped: on-disk 0 is its 0).
    let id = d.ctl_ok(&["exec", "un", "--", "id"]);
    assert!(id.starts_with("uid=0(root) gid=0(root)"), "{id}");
    let ls = d.ctl_ok(&[
        "exec",
        "un",
        "--",
        "stat",
        "-c",
        "%u:%g",
        "/bin/busybox",
        "/etc",
    ]);
    assert_eq!(
        ls.split_whitespace().collect::<Vec<_>>(),
        ["0:0", "0:0"],
        "{ls}"
    );
    // A file the guest makes is its root's on disk too: the tree never changes hands.
    d.ctl_ok(&[
        "exec",
        "un",
        "--",
        "sh",
        "-c",
        "echo x > /root/made; mkdir /root/d",
    ]);
    let made = std::fs::metadata(root.join("root/made")).unwrap();
    assert_eq!((made.uid(), made.gid()), (0, 0));
    let after = std::fs::metadata(root.join("bin/busybox")).unwrap();
    assert_eq!(
        (after.uid(), after.gid(), after.ctime()),
        (before.uid(), before.gid(), before.ctime())
    );
    // A process of the guest, seen from the host: an unprivileged id.
    let cmd = d.ctl_ok(&["exec", "un", "--", "sh", "-c", "cat /proc/self/status"]);
    assert!(cmd.contains("Uid:\t0\t0\t0\t0"), "{cmd}");
    // Its tmpfs (/tmp, /dev) is its root's; its own files on /tmp are BASE on the host.
    let t = d.ctl_ok(&["exec", "un", "--", "stat", "-c", "%u:%g", "/tmp", "/dev"]);
    assert_eq!(
        t.split_whitespace().collect::<Vec<_>>(),
        ["0:0", "0:0"],
        "{t}"
    );
    // As another guest user: its id inside, BASE+1000 on the host, 1000 on disk.
    let web = d.ctl_ok(&[
        "exec",
        "un",
        "--user",
        "web",
        "--",
        "sh",
        "-c",
        "id -u; touch /home/web/f /tmp/w; stat -c %u /home/web/f",
    ]);
    assert_eq!(
        web.split_whitespace().collect::<Vec<_>>(),
        ["1000", "1000"],
        "{web}"
    );
    assert_eq!(
        std::fs::metadata(root.join("home/web/f")).unwrap().uid(),
        1000
    );
    let tmp = std::fs::metadata(format!("/proc/{init}/root/tmp/w")).unwrap();
    assert_eq!((tmp.uid(), tmp.gid()), (base + 1000, base + 1000));
    // It cannot write what its root owns, nor its root what the host's root owns.
    let o = d.ctl(&["exec", "un", "--user", "web", "--", "touch", "/etc/x"]);
    assert!(!o.status.success());
    d.ctl_ok(&["stop", "un"]);
    d.ctl_ok(&["stop", "plain"]);
    // The range is the guest's for good: the next start gets it again.
    d.ctl_ok(&["start", "un"]);
    assert_eq!(base_of(&d, "un"), base);
    let init = d.init_pid("un");
    assert!(proc_status(init, "Uid").starts_with(&format!("{base}\t")));
    d.ctl_ok(&["stop", "un"]);
}

/// What the host mounted over the guest's /proc (masks, read-only parts) is locked: the
/// guest's root, though it holds CAP_SYS_ADMIN in its own user namespace, can neither unmount
/// nor remount any of it.
#[test]
fn the_proc_masks_are_locked() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let cfg = userns_guest(&d, "lk", 42003);
    // The guest's root holds CAP_SYS_ADMIN in its user namespace: the lock must hold even
    // then (and it can unmount what it mounted itself, so the refusals below are the lock's).
    std::fs::write(cfg.join("bcapabilities"), "SYS_ADMIN\n").unwrap();
    d.spawn();
    d.ctl_ok(&["start", "lk"]);
    let own = d.ctl(&[
        "exec",
        "lk",
        "--",
        "sh",
        "-c",
        "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && umount /mnt/t",
    ]);
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    let targets = [
        "/proc/kcore",
        "/proc/sysrq-trigger",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sys",
        "/proc/irq",
        "/proc/bus",
        "/proc/fs",
        "/proc/acpi",
        "/proc/scsi",
        "/proc/driver",
    ];
    let mounts = d.ctl_ok(&["exec", "lk", "--", "cat", "/proc/self/mountinfo"]);
    for t in targets {
        if !mounts.lines().any(|l| l.split(' ').nth(4) == Some(t)) {
            continue;
        }
        let o = d.ctl(&["exec", "lk", "--", "umount", t]);
        assert!(!o.status.success(), "guest root unmounted {t}");
        let o = d.ctl(&["exec", "lk", "--", "umount", "-l", t]);
        assert!(!o.status.success(), "guest root lazily unmounted {t}");
        let o = d.ctl(&["exec", "lk", "--", "mount", "-o", "remount,rw", t]);
        assert!(!o.status.success(), "guest root remounted {t} rw");
    }
    let after = d.ctl_ok(&["exec", "lk", "--", "cat", "/proc/self/mountinfo"]);
    assert_eq!(mounts.lines().count(), after.lines().count(), "{after}");
    let w = d.ctl(&[
        "exec",
        "lk",
        "--",
        "sh",
        "-c",
        "echo 1 > /proc/sys/kernel/sysrq",
    ]);
    assert!(!w.status.success());
    d.ctl_ok(&["stop", "lk"]);
}

/// virt_mem's /proc/meminfo is the host's bind, locked like the masks; the console, the daemon
/// dying and a new one adopting the guest, and stop all work as for any guest.
#[test]
fn meminfo_console_and_adoption() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let cfg = userns_guest(&d, "vm", 42004);
    std::fs::write(cfg.join("cflags"), "virt_mem\n").unwrap();
    std::fs::write(cfg.join("bcapabilities"), "SYS_ADMIN\n").unwrap();
    std::fs::create_dir_all(cfg.join("rlimits")).unwrap();
    std::fs::write(cfg.join("rlimits/rss"), "32768\n").unwrap();
    // A shell on the console, as a getty would be.
    std::fs::write(
        d.guest_root("vm").join("etc/inittab"),
        "::sysinit:/bin/true\n::respawn:/bin/sh\n::ctrlaltdel:/sbin/poweroff -f\n",
    )
    .unwrap();
    d.spawn();
    d.ctl_ok(&["start", "vm"]);
    let limit_kb = 32768 * harness::page_size() / 1024;
    let total = |d: &TestDaemon| {
        let m = d.ctl_ok(&["exec", "vm", "--", "cat", "/proc/meminfo"]);
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(total(&d), limit_kb);
    for cmd in ["umount /proc/meminfo", "umount -l /proc/meminfo"] {
        let o = d.ctl(&["exec", "vm", "--", "sh", "-c", cmd]);
        assert!(!o.status.success(), "guest root could {cmd}");
    }
    assert_eq!(total(&d), limit_kb);
    let (ok, out) = d.console("vm", "echo me-$(id -u) hi-$((6*7))\n", "hi-42");
    assert!(ok && out.contains("me-0 hi-42"), "{out}");
    let init = d.init_pid("vm");
    // The daemon is killed; a new one takes the guest over.
    d.kill();
    d.spawn();
    assert_eq!(d.init_pid("vm"), init);
    assert_eq!(d.ctl_ok(&["exec", "vm", "--", "id", "-u"]).trim(), "0");
    assert_eq!(total(&d), limit_kb);
    let stat = d.ctl_ok(&["stat"]);
    assert!(stat.contains("vm"), "{stat}");
    d.ctl_ok(&["stop", "vm"]);
    assert!(
        !std::path::Path::new(&format!("/proc/{init}")).exists() || {
            let s = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap_or_default();
            s.contains(") Z ")
        }
    );
}

/// The guest's root may be on any file system with idmapped mounts (here a tmpfs); a bind
/// from one without them is refused by name, and nothing is left behind.
#[test]
fn file_systems_with_and_without_idmapped_mounts() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let root = d.vdir_base.join("tm");
    std::fs::create_dir_all(&root).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &root,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=755"),
    )
    .unwrap();
    userns_guest(&d, "tm", 42005);
    let cfg = userns_guest(&d, "sysbind", 42006);
    std::fs::write(
        cfg.join("fstab"),
        "none /proc proc defaults 0 0\n/sys/kernel /root/k none bind,ro 0 0\n",
    )
    .unwrap();
    d.spawn();
    d.ctl_ok(&["start", "tm"]);
    let o = d.ctl_ok(&["exec", "tm", "--", "stat", "-c", "%u", "/bin/busybox"]);
    assert_eq!(o.trim(), "0");
    d.ctl_ok(&["stop", "tm"]);
    let o = d.ctl(&["start", "sysbind"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("idmapped mount of /sys/kernel is refused (sysfs)"),
        "{err}"
    );
    assert_eq!(d.status("sysbind")["state"], "stopped");
    let _ = nix::mount::umount2(&root, nix::mount::MntFlags::MNT_DETACH);
}

/// The escape suite in a user-namespace guest, and what a user namespace adds: its processes
/// are an unprivileged host id, host root's files outside its idmapped tree are nobody's to
/// it, it cannot map ids outside its range, and /proc/sys and /sys stay the host's.
#[test]
fn escapes_from_a_user_namespace_guest_fail() {
    if !prerequisites() || !harness::require(std::path::Path::new("/usr/bin/ldd").exists(), "ldd") {
        return;
    }
    use harness::guest::{install_host_binary, workspace_binary};
    let mut d = TestDaemon::prepare();
    userns_guest(&d, "ujail", 42007);
    // This one may make user namespaces of its own (to try mapping ids past its range).
    let cfg = userns_guest(&d, "umap", 42008);
    std::fs::write(cfg.join("umask"), "newuser\n").unwrap();
    let root = d.guest_root("ujail");
    install_host_binary(&root, &workspace_binary("vserverd-escape"), "/escape");
    nix::sys::stat::mknod(
        &root.join("root/mem"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(1, 1),
    )
    .unwrap();
    let host_only = d.dir.path().join("host-only-marker");
    std::fs::write(&host_only, "host").unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port().to_string();
    let abstract_name = format!("vserverd-userns-escape-{}", std::process::id());
    let _abstract = {
        use std::os::linux::net::SocketAddrExt;
        let a =
            std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
        std::os::unix::net::UnixListener::bind_addr(&a).unwrap()
    };
    d.spawn();
    d.ctl_ok(&["start", "ujail"]);
    d.ctl_ok(&["start", "umap"]);
    let base = base_of(&d, "ujail");
    let (text, results) = harness::guest::run_escape(
        &d,
        "ujail",
        &[
            &host_only.display().to_string(),
            &d.pid().unwrap().to_string(),
            &d.socket.display().to_string(),
            "/root/mem",
            &port,
            &abstract_name,
        ],
    );
    assert!(results.len() >= 23, "too few attempts ran:\n{text}");
    let escaped: Vec<&serde_json::Value> =
        results.iter().filter(|r| r["escaped"] != false).collect();
    assert!(escaped.is_empty(), "escapes: {escaped:#?}");
    assert_eq!(std::fs::read_to_string(&host_only).unwrap(), "host");

    // A guest process as the host sees it: uid BASE, no capability in the host's namespace
    // (an escape from its root would be this unprivileged id).
    let status = d.ctl_ok(&[
        "exec",
        "ujail",
        "--",
        "sh",
        "-c",
        "sleep 1000 & echo $!; cat /proc/$!/status",
    ]);
    let inner: i32 = status.lines().next().unwrap().trim().parse().unwrap();
    let host_pid = std::fs::read_dir(format!("/proc/{}/task", d.init_pid("ujail")))
        .ok()
        .and(
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .find(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/status")).is_ok_and(|s| {
                        s.lines()
                            .any(|l| l.starts_with("NSpid:") && l.ends_with(&format!("\t{inner}")))
                            && s.contains("Name:\tsleep")
                    })
                }),
        )
        .expect("the guest's sleep on the host");
    assert!(proc_status(host_pid, "Uid").starts_with(&format!("{base}\t")));
    // Host root's files outside the idmapped tree are nobody's to guest root: /proc/sys
    // (read-only too), /sys, the host's ptys in a console-less guest.
    for cmd in [
        "echo x > /proc/sys/kernel/hostname",
        "echo 1 > /proc/sys/vm/drop_caches",
        "echo 1 > /sys/kernel/mm/ksm/run",
        "mount -o remount,rw /proc/sys",
    ] {
        let o = d.ctl(&["exec", "ujail", "--", "sh", "-c", cmd]);
        assert!(!o.status.success(), "guest root could: {cmd}");
    }
    let stat = d.ctl_ok(&[
        "exec",
        "ujail",
        "--",
        "stat",
        "-c",
        "%u",
        "/proc/sys/kernel/hostname",
    ]);
    assert_eq!(stat.trim(), "65534", "host root shows as nobody");
    // Ids outside its range cannot be mapped in a user namespace it makes: 70000 is no id of
    // its own; 1000 is.
    let map = |ids: &str| {
        d.ctl(&[
            "exec",
            "umap",
            "--",
            "sh",
            "-c",
            &format!(
                "unshare -U sleep 30 & p=$!; sleep 0.3; echo '0 {ids} 1' > /proc/$p/uid_map; \
                 r=$?; kill $p; exit $r"
            ),
        ])
        .status
        .success()
    };
    assert!(map("1000"), "mapping its own id 1000 failed");
    assert!(!map("70000"), "mapped id 70000, outside its range");
    assert!(
        !map(&base_of(&d, "umap").to_string()),
        "mapped its base as an id of its own"
    );
    assert!(!map(&base.to_string()), "mapped another guest's id");
    d.ctl_ok(&["stop", "ujail"]);
    d.ctl_ok(&["stop", "umap"]);
}

/// interfaces/ (a network namespace the daemon makes): the guest's root serves port 80 on its
/// address, reached from the host; reboot(2) inside restarts it, poweroff stops it.
#[test]
fn network_namespace_and_reboot() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    d.host_netns();
    // The host's own address (its source address towards guests), as a real host has one.
    let o = d.in_host_net(&["ip", "addr", "add", "10.79.255.1/32", "dev", "lo"]);
    assert!(o.status.success());
    GuestBuilder::busybox("unet")
        .context(42009)
        .file("spaces/user", "")
        // The network namespace form (the shared stack is the default for interfaces/): the
        // one whose namespace the guest's user namespace may own.
        .file("apps/vserverd/netmode", "netns\n")
        .file("interfaces/0/ip", "10.79.0.2\n")
        .file("interfaces/0/prefix", "24\n")
        .file("interfaces/0/nodev", "")
        .write(&d);
    let www = d.guest_root("unet").join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "this is unet\n").unwrap();
    d.spawn();
    d.ctl_ok(&["start", "unet"]);
    d.ctl_ok(&["exec", "unet", "--", "httpd", "-p", "80", "-h", "/www"]);
    let o = d.in_host_net(&[
        "/bin/busybox",
        "timeout",
        "10",
        "/bin/busybox",
        "wget",
        "-q",
        "-O",
        "-",
        "http://10.79.0.2/",
    ]);
    let ps = d.ctl_ok(&[
        "exec",
        "unet",
        "--",
        "sh",
        "-c",
        "ps; ip addr; netstat -ltn",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "this is unet\n", "{ps}");
    let first = d.init_pid("unet");
    let _ = d.ctl(&["exec", "unet", "--", "/sbin/reboot", "-f"]);
    d.wait_until("the guest to come back with a new init", || {
        let s = d.status("unet");
        s["state"] == "running" && s["init_pid"].as_i64().is_some_and(|p| p as i32 != first)
    });
    let second = d.init_pid("unet");
    assert!(proc_status(second, "Uid").starts_with(&format!("{}\t", base_of(&d, "unet"))));
    let _ = d.ctl(&["exec", "unet", "--", "/sbin/poweroff", "-f"]);
    d.wait_until("the guest to stop", || {
        d.status("unet")["state"] == "stopped"
    });
    assert!(
        d.status("unet")["message"]
            .as_str()
            .unwrap_or("")
            .contains("halted"),
        "{}",
        d.status("unet")
    );
}

/// virt_uptime (a default flag): the guest's time namespace is made in its user namespace,
/// its clocks set to start at zero before any process is in it; the guest's processes and
/// those `exec` adds see its uptime, and its root cannot move the clocks.
#[test]
fn its_time_namespace_is_its_own_and_counts_from_its_start() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    let cfg = userns_guest(&d, "ut", 42011);
    // Even holding CAP_SYS_TIME in its user namespace (the one owning the time namespace).
    std::fs::write(cfg.join("bcapabilities"), "SYS_TIME\n").unwrap();
    GuestBuilder::busybox("utoff")
        .context(42012)
        .file("spaces/user", "")
        .file("cflags", "~virt_uptime\n")
        .write(&d);
    d.spawn();
    let host_up = |_: ()| -> f64 {
        let t = std::fs::read_to_string("/proc/uptime").unwrap();
        t.split_whitespace().next().unwrap().parse().unwrap()
    };
    let before = host_up(());
    let t = std::time::Instant::now();
    d.ctl_ok(&["start", "ut"]);
    d.ctl_ok(&["start", "utoff"]);
    let init = d.init_pid("ut").to_string();
    assert_ne!(ns(&init, "time"), ns("self", "time"));
    assert_eq!(owner(&init, "time"), ns_ino(&init, "user"));
    assert_ne!(ns_ino(&init, "user"), ns_ino("self", "user"));
    // Its offsets: the host's boot and monotonic clocks at its start, taken away.
    let offsets = std::fs::read_to_string(format!("/proc/{init}/timens_offsets")).unwrap();
    let boot: f64 = offsets
        .lines()
        .find_map(|l| l.strip_prefix("boottime "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{offsets}"));
    let slack = t.elapsed().as_secs_f64() + 2.0;
    assert!(
        (boot + before).abs() <= slack,
        "{offsets} (host up {before})"
    );
    // Inside: its uptime, from its start; a joined process is in the same time namespace.
    let out = d.ctl_ok(&[
        "exec",
        "ut",
        "--",
        "sh",
        "-c",
        "cut -d' ' -f1 /proc/uptime; readlink /proc/self/ns/time",
    ]);
    let mut lines = out.lines();
    let up: f64 = lines.next().unwrap().parse().unwrap();
    assert!(up <= t.elapsed().as_secs_f64() + 1.0, "guest uptime {up}");
    assert!(up < host_up(()), "guest uptime {up}");
    assert_eq!(lines.next(), Some(ns(&init, "time").as_str()), "{out}");
    // Frozen once a process is in it: not even its owner's root may set the clocks again.
    let o = d.ctl(&[
        "exec",
        "ut",
        "--",
        "sh",
        "-c",
        "echo 'boottime 100000 0' > /proc/self/timens_offsets",
    ]);
    assert!(!o.status.success());
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{init}/timens_offsets")).unwrap(),
        offsets
    );
    // Without virt_uptime: the host's time namespace, as for any guest.
    let off = d.init_pid("utoff").to_string();
    assert_eq!(ns(&off, "time"), ns("self", "time"));
    d.ctl_ok(&["stop", "ut"]);
    d.ctl_ok(&["stop", "utoff"]);
}

/// A netns-mode guest (interfaces/, apps/vserverd/netmode = netns): the daemon makes its
/// network namespace owned by the guest's user namespace, so its root (holding NET_ADMIN and
/// SYS_ADMIN in its bounding set) administers its interfaces and mounts a sysfs of its own,
/// never touching the host's; a default guest's stays the host's. The namespace outlives a
/// daemon SIGKILL and is adopted with the guest.
#[test]
fn a_netns_guest_administers_its_own_network_namespace() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    d.host_netns();
    let o = d.in_host_net(&["ip", "addr", "add", "10.79.255.1/32", "dev", "lo"]);
    assert!(o.status.success());
    for (name, ctx, ip, user) in [
        ("uadm", 42013, "10.79.0.5", true),
        ("padm", 42014, "10.79.0.6", false),
    ] {
        let mut g = GuestBuilder::busybox(name)
            .context(ctx)
            .file("apps/vserverd/netmode", "netns\n")
            .file("interfaces/0/ip", &format!("{ip}\n"))
            .file("interfaces/0/prefix", "24\n")
            .file("interfaces/0/nodev", "")
            .file(
                "fstab",
                "none /proc proc defaults 0 0\nnone /sys sysfs ro 0 0\n",
            );
        if user {
            g = g
                .file("spaces/user", "")
                .file("bcapabilities", "NET_ADMIN\nSYS_ADMIN\n");
        }
        g.write(&d);
    }
    let www = d.guest_root("uadm").join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "this is uadm\n").unwrap();
    d.spawn();
    d.ctl_ok(&["start", "uadm"]);
    d.ctl_ok(&["start", "padm"]);
    let init = d.init_pid("uadm").to_string();
    let pin = d.run_dir.join("netns/uadm");
    // The kernel's view: the pinned namespace is the guest's, and its user namespace owns it.
    assert_eq!(ns_ino(&init, "net"), std::fs::metadata(&pin).unwrap().ino());
    assert_eq!(owner(&init, "net"), ns_ino(&init, "user"));
    let plain = d.init_pid("padm").to_string();
    assert_eq!(owner(&plain, "net"), ns_ino("self", "user"));
    let host_before = text_of(&d.in_host_net(&["ip", "-o", "addr"]));
    let host_links = text_of(&d.in_host_net(&["ip", "-o", "link"]));
    // Its root administers its interfaces: loopback's MTU, a second address on eth0.
    d.ctl_ok(&[
        "exec",
        "uadm",
        "--",
        "sh",
        "-c",
        "ip link set lo mtu 1400 && ip addr add 10.79.1.5/24 dev eth0",
    ]);
    let seen = d.ctl_ok(&["exec", "uadm", "--", "sh", "-c", "ip -o link; ip -o addr"]);
    assert!(
        seen.contains("lo: <LOOPBACK,UP,LOWER_UP> mtu 1400"),
        "{seen}"
    );
    assert!(seen.contains("10.79.1.5/24"), "{seen}");
    // A sysfs of its own (read-only, as the /sys it was given: that one is locked so), whose
    // net class is its namespace's interfaces, not the host's.
    let sys = d.ctl_ok(&[
        "exec",
        "uadm",
        "--",
        "sh",
        "-c",
        "mkdir -p /mnt/sys && mount -t sysfs -o ro sysfs /mnt/sys && ls /mnt/sys/class/net \
         && cat /mnt/sys/class/net/lo/mtu && umount /mnt/sys",
    ]);
    assert_eq!(
        sys.split_whitespace().collect::<Vec<_>>(),
        ["eth0", "lo", "1400"],
        "{sys}"
    );
    let rw = d.ctl(&[
        "exec",
        "uadm",
        "--",
        "sh",
        "-c",
        "mount -t sysfs sysfs /mnt/sys",
    ]);
    assert!(
        !rw.status.success(),
        "a read-write sysfs over the locked read-only /sys"
    );
    // The same tries in the default guest: no such capabilities, refused.
    for cmd in [
        "ip link set lo mtu 1400",
        "mkdir -p /mnt/s && mount -t sysfs -o ro sysfs /mnt/s",
    ] {
        let o = d.ctl(&["exec", "padm", "--", "sh", "-c", cmd]);
        assert!(!o.status.success(), "the default guest could {cmd}");
    }
    // The host's network is as it was.
    assert_eq!(text_of(&d.in_host_net(&["ip", "-o", "addr"])), host_before);
    assert_eq!(text_of(&d.in_host_net(&["ip", "-o", "link"])), host_links);
    // Its root still serves port 80 on its address (CAP_NET_BIND_SERVICE, its bounding set's,
    // over its own namespace).
    d.ctl_ok(&["exec", "uadm", "--", "httpd", "-p", "80", "-h", "/www"]);
    let get = |d: &TestDaemon| {
        text_of(&d.in_host_net(&[
            "/bin/busybox",
            "timeout",
            "10",
            "/bin/busybox",
            "wget",
            "-q",
            "-O",
            "-",
            "http://10.79.0.5/",
        ]))
    };
    assert_eq!(get(&d), "this is uadm\n");
    // The daemon dies; a new one adopts the guest and its namespace as they were.
    d.kill();
    d.spawn();
    assert_eq!(d.init_pid("uadm").to_string(), init);
    assert_eq!(ns_ino(&init, "net"), std::fs::metadata(&pin).unwrap().ino());
    assert_eq!(owner(&init, "net"), ns_ino(&init, "user"));
    assert_eq!(get(&d), "this is uadm\n");
    let joined = d.ctl_ok(&["exec", "uadm", "--", "readlink", "/proc/self/ns/net"]);
    assert_eq!(joined.trim(), ns(&init, "net"));
    d.ctl_ok(&["stop", "uadm"]);
    d.ctl_ok(&["stop", "padm"]);
    assert!(!pin.exists(), "the pin outlived the guest");
    let links = text_of(&d.in_host_net(&["ip", "-o", "link"]));
    assert!(links.lines().all(|l| l.contains(": lo:")), "{links}");
}

fn text_of(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A guest root on xfs and on btrfs (loop images): idmapped, the tree's ids unchanged.
#[test]
fn roots_on_xfs_and_btrfs() {
    if !prerequisites() {
        return;
    }
    for (fs, mkfs, size) in [
        ("xfs", "mkfs.xfs", 320u64 << 20),
        ("btrfs", "mkfs.btrfs", 128 << 20),
    ] {
        let have = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {mkfs} && command -v losetup")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !harness::require(have, &format!("{mkfs} and losetup")) {
            return;
        }
        let mut d = TestDaemon::prepare();
        let img = d.dir.path().join(format!("{fs}.img"));
        std::fs::File::create(&img).unwrap().set_len(size).unwrap();
        let ok = |c: &mut std::process::Command| {
            let o = c.output().unwrap();
            assert!(
                o.status.success(),
                "{c:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        };
        ok(std::process::Command::new(mkfs).arg("-q").arg(&img));
        let dev = ok(std::process::Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&img));
        let root = d.vdir_base.join("ondisk");
        std::fs::create_dir_all(&root).unwrap();
        ok(std::process::Command::new("mount").arg(&dev).arg(&root));
        let cfg = userns_guest(&d, "ondisk", 42010);
        // Written by the host: on-disk ids as util-vserver's build left them.
        std::os::unix::fs::chown(root.join("root"), Some(1000), Some(1000)).unwrap();
        let _ = cfg;
        d.spawn();
        d.ctl_ok(&["start", "ondisk"]);
        let o = d.ctl_ok(&[
            "exec",
            "ondisk",
            "--",
            "stat",
            "-c",
            "%u:%g",
            "/bin/busybox",
            "/root",
        ]);
        assert_eq!(
            o.split_whitespace().collect::<Vec<_>>(),
            ["0:0", "1000:1000"],
            "{fs}: {o}"
        );
        d.ctl_ok(&["exec", "ondisk", "--", "touch", "/etc/made"]);
        assert_eq!(
            std::fs::metadata(root.join("etc/made")).unwrap().uid(),
            0,
            "{fs}"
        );
        d.ctl_ok(&["stop", "ondisk"]);
        d.stop();
        ok(std::process::Command::new("umount").arg(&root));
        ok(std::process::Command::new("losetup").arg("-d").arg(&dev));
        std::fs::remove_file(&img).unwrap();
    }
}

/// `check --deep` names files a user namespace cannot map; a plain check never reads the tree.
#[test]
fn check_deep_finds_unmappable_ids() {
    if !prerequisites() {
        return;
    }
    let mut d = TestDaemon::prepare();
    userns_guest(&d, "deep", 42011);
    let root = d.guest_root("deep");
    std::fs::write(root.join("root/far"), "").unwrap();
    std::os::unix::fs::chown(root.join("root/far"), Some(70000), Some(0)).unwrap();
    std::os::unix::fs::chown(root.join("etc"), Some(0), Some(100000)).unwrap();
    d.spawn();
    let codes = |args: &[&str]| {
        let o = d.ctl(args);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["code"] == "id-unmappable")
            .map(|w| w["message"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(codes(&["check", "deep", "--json"]).is_empty());
    let w = codes(&["check", "deep", "--deep", "--json"]);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("2 entries"), "{}", w[0]);
    assert!(
        w[0].contains("/root/far (70000:0)") && w[0].contains("/etc (0:100000)"),
        "{}",
        w[0]
    );
    // Inside, such a file is nobody's.
    std::os::unix::fs::chown(root.join("etc"), Some(0), Some(0)).unwrap();
    d.ctl_ok(&["start", "deep"]);
    let o = d.ctl_ok(&["exec", "deep", "--", "stat", "-c", "%u", "/root/far"]);
    assert_eq!(o.trim(), "65534");
    let o = d.ctl(&["exec", "deep", "--", "sh", "-c", "echo x > /root/far"]);
    assert!(!o.status.success());
    d.ctl_ok(&["stop", "deep"]);
}

/// A systemd guest in a user namespace: CAP_SYS_ADMIN in it, so units that ask for namespaces
/// (logind: ProtectSystem=, PrivateTmp=-like mounts, ProtectKernelLogs=) get them, and it
/// boots to `running` with no failed unit; the same tree as a default guest runs those units
/// without their namespaces (CAP_SYS_ADMIN is not given).
#[test]
fn a_systemd_guest_boots_with_no_failed_unit_and_its_units_namespaced() {
    if !harness::require(harness::is_root(), "root") {
        return;
    }
    let mut trees = vec![];
    if let Some(t) = harness::guest::debian_tree(&["--systemd"]) {
        trees.push(("debian12", t));
    }
    let trixie = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/trixie-systemd-tree.sh"
        ))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(t) = trixie {
        trees.push(("trixie", t));
    }
    if !harness::require(!trees.is_empty(), "a Debian systemd guest tree") {
        return;
    }
    for (label, tree) in trees {
        let mut d = TestDaemon::prepare();
        for (g, ctx, user) in [("sdu", 42020, true), ("sdd", 42021, false)] {
            let mut b = GuestBuilder::new(g)
                .context(ctx)
                .file("uts/nodename", &format!("{g}\n"))
                .file("apps/init/style", "plain\n");
            if user {
                b = b.file("spaces/user", "");
            }
            b.write(&d);
            harness::guest::install_tree(&d.guest_root(g), &tree);
        }
        d.spawn();
        let mut logind_ns = vec![];
        for g in ["sdu", "sdd"] {
            d.ctl_ok(&["start", g]);
            let bus = format!("/proc/{}/root/run/systemd/private", d.init_pid(g));
            d.wait_until("systemd's private bus", || {
                std::path::Path::new(&bus).exists()
            });
            let state = d.ctl(&["exec", g, "--", "systemctl", "is-system-running", "--wait"]);
            let failed = d.ctl_ok(&[
                "exec",
                g,
                "--",
                "systemctl",
                "--failed",
                "--plain",
                "--no-legend",
            ]);
            eprintln!(
                "{label} {g}: {} failed: [{}]",
                String::from_utf8_lossy(&state.stdout).trim(),
                failed.trim()
            );
            if g == "sdu" {
                assert_eq!(
                    String::from_utf8_lossy(&state.stdout).trim(),
                    "running",
                    "{label}: {failed}"
                );
                assert!(failed.trim().is_empty(), "{label}: {failed}");
                let init = d.init_pid(g);
                let bnd = u64::from_str_radix(&proc_status(init, "CapBnd"), 16).unwrap();
                assert_ne!(bnd & (1 << 21), 0, "CAP_SYS_ADMIN in the user namespace");
                let base = base_of(&d, g);
                assert!(proc_status(init, "Uid").starts_with(&format!("{base}\t")));
            }
            // logind asks for a mount namespace of its own (ProtectSystem= and friends).
            let o = d.ctl_ok(&[
                "exec", g, "--", "sh", "-c",
                "p=$(systemctl show -P MainPID systemd-logind); \
                 [ $(readlink /proc/$p/ns/mnt) != $(readlink /proc/1/ns/mnt) ] && echo own || echo shared",
            ]);
            logind_ns.push(o.trim().to_string());
            d.ctl_ok(&["stop", g]);
        }
        assert_eq!(logind_ns, ["own", "shared"], "{label}");
    }
}
