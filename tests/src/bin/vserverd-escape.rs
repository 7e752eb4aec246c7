//! Runs inside a guest (copied there by the escape test) and tries, as guest root, what a
//! guest must not be able to do. Prints one JSON object per attempt:
//! `{"name": …, "escaped": bool, "detail": …}`; the test fails on any `escaped: true`.
//!
//! Usage: vserverd-escape HOST_ONLY_PATH DAEMON_PID SOCKET [DEVICE_NODE [PORT ABSTRACT]]
//! HOST_ONLY_PATH exists on the host and never inside the guest; DEVICE_NODE is a char
//! device node the host planted in the guest tree; PORT a TCP port the host listens on at
//! 127.0.0.1 and ABSTRACT the name of an abstract unix socket the host listens on.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;

fn errno() -> String {
    std::io::Error::last_os_error().to_string()
}

fn report(name: &str, escaped: bool, detail: impl Into<String>) {
    println!(
        "{}",
        serde_json::json!({"name": name, "escaped": escaped, "detail": detail.into()})
    );
}

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

/// A syscall that must fail: escaped when it returns >= 0.
fn must_fail(name: &str, rc: libc::c_long) {
    if rc >= 0 {
        report(name, true, format!("succeeded (returned {rc})"));
    } else {
        report(name, false, errno());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let host_only = args.get(1).cloned().unwrap_or_default();
    let daemon_pid: i32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(0);
    let socket = args.get(3).cloned().unwrap_or_default();
    let device = args.get(4).cloned();
    let port: Option<u16> = args.get(5).and_then(|a| a.parse().ok());
    let abstract_name = args.get(6).cloned();

    // SAFETY: plain syscalls with valid, NUL-terminated arguments (all the blocks below).
    unsafe {
        let _ = std::fs::create_dir_all("/tmp/m");
        must_fail(
            "mount a tmpfs",
            libc::mount(
                c("none").as_ptr(),
                c("/tmp/m").as_ptr(),
                c("tmpfs").as_ptr(),
                0,
                std::ptr::null(),
            ) as _,
        );
        must_fail(
            "mknod a block device",
            libc::mknod(
                c("/tmp/sda").as_ptr(),
                libc::S_IFBLK | 0o600,
                libc::makedev(8, 0),
            ) as _,
        );
        let null = libc::open(c("/dev/null").as_ptr(), libc::O_RDONLY);
        must_fail(
            "finit_module",
            libc::syscall(libc::SYS_finit_module, null, c("").as_ptr(), 0),
        );
        must_fail(
            "init_module",
            libc::syscall(
                libc::SYS_init_module,
                std::ptr::null::<u8>(),
                0usize,
                c("").as_ptr(),
            ),
        );
        must_fail(
            "kexec_load",
            libc::syscall(libc::SYS_kexec_load, 0, 0, 0, 0),
        );
        let fd = libc::open(c("/proc/sysrq-trigger").as_ptr(), libc::O_WRONLY);
        if fd < 0 {
            report(
                "write /proc/sysrq-trigger",
                false,
                format!("open: {}", errno()),
            );
        } else {
            must_fail(
                "write /proc/sysrq-trigger",
                libc::write(fd, c("h").as_ptr().cast(), 1) as _,
            );
        }
        let fd = libc::open(c("/proc/sys/vm/drop_caches").as_ptr(), libc::O_WRONLY);
        if fd < 0 {
            report("write /proc/sys", false, format!("open: {}", errno()));
        } else {
            must_fail(
                "write /proc/sys",
                libc::write(fd, c("1").as_ptr().cast(), 1) as _,
            );
        }

        // Host processes: the daemon's pid means nothing here, or names a guest process.
        let visible: Vec<i32> = std::fs::read_dir("/proc")
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let cmd = std::fs::read(format!("/proc/{daemon_pid}/cmdline")).unwrap_or_default();
        let sees_daemon = String::from_utf8_lossy(&cmd).contains("vserverd");
        report(
            "see host processes",
            sees_daemon || visible.len() > 50,
            format!("{} pids visible: {visible:?}", visible.len()),
        );
        let rc = libc::kill(daemon_pid, 0);
        report(
            "signal a host process",
            rc == 0 && sees_daemon,
            if rc == 0 {
                "pid exists in the guest (a guest process)".into()
            } else {
                errno()
            },
        );
        // Take file descriptors of vserverd's processes the guest sees (PID 1 of a reaper
        // style; helpers entering the guest): a report channel among them would let guest
        // root forge what the daemon learns (a pid it then signals or joins).
        let mut taken = Vec::new();
        let mut refused = 0;
        for &pid in &visible {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if !comm.starts_with("vserverd") {
                continue;
            }
            let pfd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
            if pfd < 0 {
                continue;
            }
            for fd in 0..64 {
                let got = libc::syscall(libc::SYS_pidfd_getfd, pfd as i32, fd, 0);
                if got >= 0 {
                    taken.push(format!("{pid}:{fd}"));
                    libc::close(got as i32);
                } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
                    refused += 1;
                }
            }
            libc::close(pfd as i32);
        }
        report(
            "pidfd_getfd from vserverd's processes",
            !taken.is_empty(),
            format!("taken {taken:?}, {refused} refused"),
        );
        let conn = std::os::unix::net::UnixStream::connect(&socket);
        report(
            "reach the control socket",
            conn.is_ok(),
            format!("{conn:?}"),
        );

        // The host's network stack: a guest without interfaces/ has loopback of its own.
        if let Some(port) = port {
            let c = std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                std::time::Duration::from_secs(2),
            );
            report(
                "reach a host-only 127.0.0.1 service",
                c.is_ok(),
                format!("{c:?}"),
            );
        }
        if let Some(name) = &abstract_name {
            use std::os::linux::net::SocketAddrExt;
            let c = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|a| std::os::unix::net::UnixStream::connect_addr(&a));
            report(
                "reach a host abstract unix socket",
                c.is_ok(),
                format!("{c:?}"),
            );
        }
        // Packet sockets see and forge every frame of the devices of the guest's network
        // namespace, past every socket program: in the host's (a shared-stack guest) they
        // would be the host's. Guest root lacks CAP_NET_RAW for the host's namespace.
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        must_fail("make an AF_PACKET socket", fd as _);
        if fd >= 0 {
            libc::close(fd);
        }
        if let Some(name) = &abstract_name {
            // The datagram form of the abstract escape: a send to the name, no connect.
            use std::os::linux::net::SocketAddrExt;
            let r = std::os::unix::net::UnixDatagram::unbound().and_then(|s| {
                let a = std::os::unix::net::SocketAddr::from_abstract_name(
                    format!("{name}-dgram").as_bytes(),
                )?;
                s.send_to_addr(b"x", &a)
            });
            report(
                "send to a host abstract datagram socket",
                r.is_ok(),
                format!("{r:?}"),
            );
        }
        bpf_attempts();
        // The guest's root must be the end of every path upwards.
        let root = std::fs::metadata("/").expect("stat /");
        let _ = libc::chdir(c("/").as_ptr());
        let _ = libc::chdir(c("..").as_ptr());
        let here = std::fs::metadata(".").expect("stat .");
        report(
            ".. at the root",
            (here.dev(), here.ino()) != (root.dev(), root.ino()),
            format!("/.. is dev {} ino {}", here.dev(), here.ino()),
        );
        report(
            "/proc/1/root to the host",
            std::path::Path::new(&format!("/proc/1/root{host_only}")).exists(),
            "host-only path looked up through /proc/1/root".to_string(),
        );
        // The shocker escape: open_by_handle_at with a handle of the host's root inode.
        let mut buf = [0u8; 128 + 8];
        // struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[]; }
        buf[..4].copy_from_slice(&8u32.to_ne_bytes());
        buf[4..8].copy_from_slice(&1i32.to_ne_bytes());
        buf[8..12].copy_from_slice(&2u32.to_ne_bytes());
        let rootfd = libc::open(c("/").as_ptr(), libc::O_RDONLY);
        must_fail(
            "open_by_handle_at",
            libc::syscall(
                libc::SYS_open_by_handle_at,
                rootfd,
                buf.as_ptr(),
                libc::O_RDONLY,
            ),
        );
        must_fail(
            "unshare a user namespace",
            libc::unshare(libc::CLONE_NEWUSER) as _,
        );
        must_fail(
            "unshare a mount namespace",
            libc::unshare(libc::CLONE_NEWNS) as _,
        );
        must_fail(
            "keyctl (host uid 0's keyrings)",
            libc::syscall(
                libc::SYS_keyctl,
                0,  /* GET_KEYRING_ID */
                -4, /* USER */
                0,
            ),
        );
        // Disk limits by project quota hold only if a guest cannot re-tag its own files'
        // project id, which the owner may do without any capability: set a file's attributes
        // to the values it has (no change, so it would succeed on any file system that has
        // them) through the ioctl and through file_setattr(2).
        let f = libc::open(
            c("/escape.attr").as_ptr(),
            libc::O_CREAT | libc::O_RDWR,
            0o600,
        );
        let mut fsx = [0u8; 28];
        let got = libc::ioctl(
            f,
            0x801c_581f, /* FS_IOC_FSGETXATTR */
            fsx.as_mut_ptr(),
        );
        if got < 0 {
            report(
                "FS_IOC_FSSETXATTR (re-tag the project id)",
                false,
                format!("FS_IOC_FSGETXATTR: {}", errno()),
            );
        } else {
            must_fail(
                "FS_IOC_FSSETXATTR (re-tag the project id)",
                libc::ioctl(
                    f,
                    0x401c_5820, /* FS_IOC_FSSETXATTR */
                    fsx.as_mut_ptr(),
                ) as _,
            );
        }
        let fa = [0u8; 24];
        must_fail(
            "file_setattr (re-tag the project id)",
            libc::syscall(
                469, /* file_setattr */
                f,
                c("").as_ptr(),
                fa.as_ptr(),
                fa.len(),
                libc::AT_EMPTY_PATH,
            ),
        );
        if let Some(dev) = &device {
            let fd = libc::open(c(dev).as_ptr(), libc::O_RDONLY);
            must_fail("open a device node in the guest tree", fd as _);
        }
        // PID 1 of a reaper-style guest runs vserverd's own code: its binary must not be
        // writable through /proc/1/exe.
        let exe = std::fs::read_link("/proc/1/exe")
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let comm1 = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
        if exe.contains("memfd") || comm1.starts_with("vserverd") {
            let fd = libc::open(c("/proc/1/exe").as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                report(
                    "overwrite the stage binary via /proc/1/exe",
                    false,
                    format!("open: {}", errno()),
                );
            } else {
                must_fail(
                    "overwrite the stage binary via /proc/1/exe",
                    libc::write(fd, c("x").as_ptr().cast(), 1) as _,
                );
            }
        }
        // The sysinfo listener (virt_mem guests): whoever holds it answers the guest's
        // sysinfo calls and reads their arguments. It must be in no process guest root sees.
        let mut held = Vec::new();
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
                    continue;
                };
                for f in fds.flatten() {
                    if std::fs::read_link(f.path())
                        .is_ok_and(|t| t.to_string_lossy().contains("seccomp notify"))
                    {
                        held.push(f.path().display().to_string());
                    }
                }
            }
        }
        report(
            "a sysinfo listener in a guest process",
            !held.is_empty(),
            format!("held: {held:?}"),
        );
        // Last, since it changes our root: the chroot-and-climb escape.
        let _ = std::fs::create_dir_all("/tmp/jail");
        let _ = libc::chdir(c("/").as_ptr());
        let rc = libc::chroot(c("/tmp/jail").as_ptr());
        if rc != 0 {
            report("chroot escape", false, format!("chroot: {}", errno()));
        } else {
            for _ in 0..64 {
                libc::chdir(c("..").as_ptr());
            }
            libc::chroot(c(".").as_ptr());
            let out = std::path::Path::new(&host_only).exists();
            report(
                "chroot escape",
                out,
                "climbed out of a chroot with a cwd outside it".to_string(),
            );
        }
    }
}

/// bpf(2) with a zeroed 144-byte `union bpf_attr` whose leading words are `words`.
fn bpf(cmd: i64, words: &[u32]) -> libc::c_long {
    let mut attr = [0u32; 36];
    attr[..words.len()].copy_from_slice(words);
    // SAFETY: attr is a live 144-byte buffer for the whole call; no pointers in it.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), 144usize) }
}

/// The socket programs of a shared-stack guest (and any cgroup program): guest root must not
/// detach, replace, list or reach them, nor load programs of its own.
fn bpf_attempts() {
    // The cgroup attach types of a shared-stack guest's programs: skb ingress and egress (the
    // UDP filter and the traffic counters), sock_create, sock_ops, the sock_addr ones
    // (bind4 … getsockname6) and the unix ones (connect_unix, sendmsg_unix).
    const TYPES: [u32; 18] = [
        0, 1, 2, 3, 8, 9, 10, 11, 14, 15, 19, 20, 29, 30, 31, 32, 49, 50,
    ];
    let mut dirs = 0;
    for dir in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let Ok(f) = std::fs::File::open(dir) else {
            continue;
        };
        dirs += 1;
        use std::os::fd::AsRawFd;
        let fd = f.as_raw_fd() as u32;
        for t in TYPES {
            // BPF_PROG_DETACH without a program: what detached a flag-0 attachment.
            must_fail(
                &format!("detach cgroup program {t} at {dir}"),
                bpf(9, &[fd, 0, t, 0]),
            );
            // BPF_PROG_QUERY.
            must_fail(
                &format!("list cgroup programs {t} at {dir}"),
                bpf(16, &[fd, t, 0, 0]),
            );
        }
    }
    if dirs == 0 {
        report(
            "detach cgroup programs",
            false,
            "no cgroup directory visible",
        );
    }
    // BPF_LINK_GET_FD_BY_ID: the links by number, as their pins are out of reach.
    let got = (1..=512u32).filter(|id| bpf(30, &[*id]) >= 0).count();
    report(
        "open bpf links by id",
        got > 0,
        format!("{got} of ids 1-512 opened; last error {}", errno()),
    );
    // BPF_MAP_GET_FD_BY_ID: the maps (socket hashes, the host-wide address map, the traffic
    // counters) by number.
    let got = (1..=512u32).filter(|id| bpf(14, &[*id]) >= 0).count();
    report(
        "open bpf maps by id",
        got > 0,
        format!("{got} of ids 1-512 opened; last error {}", errno()),
    );
    // BPF_PROG_LOAD of a one-instruction cgroup sock_addr program ("r0 = 1; exit").
    let insns: [u64; 2] = [0x0000_0001_0000_00b7, 0x95];
    let license = b"GPL\0";
    let mut w = [0u32; 18];
    w[0] = 18;
    w[1] = 2;
    let p = insns.as_ptr() as u64;
    w[2] = p as u32;
    w[3] = (p >> 32) as u32;
    let l = license.as_ptr() as u64;
    w[4] = l as u32;
    w[5] = (l >> 32) as u32;
    w[17] = 8;
    must_fail("load a cgroup socket program", bpf(5, &w));
}
