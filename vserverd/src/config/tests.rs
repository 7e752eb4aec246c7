//! Whole-tree loading: defaults, vdir resolution, context rules, warnings, first error wins.

use super::*;
use proptest::prelude::*;

struct Tree(tempfile::TempDir);

impl Tree {
    fn new() -> Self {
        let t = Tree(tempfile::tempdir().unwrap());
        std::fs::create_dir_all(t.0.path().join("etc/.defaults")).unwrap();
        t
    }
    fn put(&self, rel: &str, content: &str) -> &Self {
        let p = self.0.path().join("etc").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }
    fn roots(&self) -> Roots {
        Roots {
            config_root: self.0.path().join("etc"),
            vdir_base: Some(self.0.path().join("vservers")),
        }
    }
    fn load(&self, name: &str) -> std::result::Result<Loaded, ConfigError> {
        load_guest(&self.roots(), name)
    }
}

#[test]
fn a_minimal_guest_gets_util_vservers_defaults() {
    let t = Tree::new();
    t.put("web/context", "40000\n");
    let l = t.load("web").unwrap();
    let c = &l.config;
    assert_eq!(c.context, 40000);
    assert_eq!(c.vdir, t.0.path().join("vservers/web"));
    assert_eq!(c.bcaps, names::BCAPS_SECURE);
    assert_eq!(c.ccaps, names::CCAPS_SECURE);
    assert_eq!(c.cflags, names::CFLAGS_DEFAULT);
    assert_eq!(c.nflags, names::NFLAGS_DEFAULT);
    assert_eq!(c.init.style, init::Style::Sysv);
    assert_eq!(c.vshelper.sync_timeout, 30);
    assert_eq!(c.vshelper.action, "restart");
    // A tree without limits or addresses: unbounded, and no route out; nothing else.
    let said: Vec<&str> = l.warnings.iter().map(|w| w.message.as_str()).collect();
    assert!(
        said.len() == 2 && said[0].contains("unbounded") && said[1].contains("loopback only"),
        "{said:?}"
    );
}

#[test]
fn missing_context_is_the_pld_message() {
    let t = Tree::new();
    t.put("web/apps/init/style", "plain\n");
    let e = t.load("web").unwrap_err();
    let cfg = t.0.path().join("etc/web");
    assert_eq!(
        e.message,
        format!(
            "Dynamic Context IDs are not supported, you must set Context ID in {}/context",
            cfg.display()
        )
    );
}

#[test]
fn context_range() {
    let t = Tree::new();
    for (v, ok) in [
        ("1", false),
        ("2", true),
        ("65535", true),
        ("65536", false),
        ("0", false),
        ("x", false),
    ] {
        t.put("g/context", &format!("{v}\n"));
        let r = t.load("g");
        assert_eq!(r.is_ok(), ok, "{v}: {r:?}", r = r.as_ref().err());
        if let Err(e) = r {
            assert_eq!(e.line, Some(1));
        }
    }
}

#[test]
fn vdir_symlink_wins_over_vdir_base_and_vdirbase_is_read() {
    let t = Tree::new();
    t.put("web/context", "40000\n");
    std::os::unix::fs::symlink("/srv/webroot", t.0.path().join("etc/web/vdir")).unwrap();
    assert_eq!(
        t.load("web").unwrap().config.vdir,
        PathBuf::from("/srv/webroot")
    );
    t.put("db/context", "40001\n");
    std::os::unix::fs::symlink("/data/vs", t.0.path().join("etc/.defaults/vdirbase")).unwrap();
    let roots = Roots {
        config_root: t.0.path().join("etc"),
        vdir_base: None,
    };
    assert_eq!(
        load_guest(&roots, "db").unwrap().config.vdir,
        PathBuf::from("/data/vs/db")
    );
}

#[test]
fn cflags_falls_back_to_flags() {
    let t = Tree::new();
    t.put("web/context", "40000\n")
        .put("web/flags", "~virt_uptime\n");
    assert_eq!(
        t.load("web").unwrap().config.cflags & names::FLAG_VIRT_UPTIME,
        0
    );
    t.put("web/cflags", "virt_mem\n");
    let c = t.load("web").unwrap().config;
    assert_ne!(
        c.cflags & names::FLAG_VIRT_UPTIME,
        0,
        "cflags replaces flags"
    );
    assert_ne!(c.cflags & names::FLAG_VIRT_MEM, 0);
}

#[test]
fn unknown_files_are_warnings_and_errors_name_file_and_line() {
    let t = Tree::new();
    t.put("web/context", "40000\n")
        .put("web/frobnicate", "x\n")
        .put("web/cgroup/pids.max", "100\n")
        .put("web/cgroup/memory.limit_in_bytes", "1G\n")
        .put("web/noncontext", "");
    let l = t.load("web").unwrap();
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert!(l.warnings[0].file.ends_with("web/frobnicate"));
    t.put("web/rlimits/nproc", "lots\n");
    let e = t.load("web").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:1: expected a number or 'inf', got \"lots\"",
            t.0.path().join("etc/web/rlimits/nproc").display()
        )
    );
    t.put("web/rlimits/nproc", "100\n")
        .put("web/bcapabilities", "CAP_NET_ADMIN\nCAP_FROB\n");
    let e = t.load("web").unwrap_err();
    assert_eq!(e.line, Some(2));
    assert_eq!(e.message, "Unknown bcap 'CAP_FROB'");
}

#[test]
fn a_full_tree_loads() {
    let t = Tree::new();
    t.put("web/context", "40000\n")
        .put("web/name", "Web server\n")
        .put("web/nice", "5\n")
        .put("web/bcapabilities", "NET_ADMIN\n~SYS_BOOT\n")
        .put("web/ccapabilities", "set_rlimit\n")
        .put("web/nflags", "single_ip\n")
        .put("web/umask", "newnet\n")
        .put("web/personality", "LINUX32\n")
        .put("web/fstab", "none /proc proc defaults 0 0\n")
        .put("web/interfaces/00/ip", "192.0.2.10/24\n")
        .put("web/interfaces/00/dev", "eth0\n")
        .put("web/ulimits/nofile", "1024\n")
        .put("web/rlimits/rss", "1000\n")
        .put("web/uts/nodename", "web\n")
        .put("web/apps/init/style", "plain\n")
        .put("web/apps/init/mark", "default\n")
        .put("web/apps/vshelper/sync-timeout", "10\n")
        .put("web/cgroup/cpu.shares", "512\n")
        .put("web/sched/fill-rate", "1\n")
        .put("web/spaces/net", "")
        .put("web/scripts/pre-start", "x=1\n");
    let l = t.load("web").unwrap();
    let c = &l.config;
    assert_eq!(c.display_name.as_deref(), Some("Web server"));
    assert_ne!(c.bcaps & (1 << 12), 0);
    assert_eq!(c.bcaps & (1 << 22), 0);
    assert_eq!(c.interfaces.list.len(), 1);
    assert_eq!(c.vshelper.sync_timeout, 10);
    assert_eq!(c.hooks.len(), 1);
    assert_eq!(c.spaces.net, Some(spaces::Space::New));
    let w = proto::GuestConfig::from(c);
    assert_eq!(w.init_style, "plain");
    assert!(w.bcapabilities.contains(&"net_admin".to_string()));
    assert_eq!(w.interfaces[0].address, "192.0.2.10/24");
    assert_eq!(w.rlimits[0].resource, "rss");
    assert!(w.rlimits[0].in_pages);
}

#[test]
fn guest_names_skip_dot_folders_and_files() {
    let t = Tree::new();
    t.put("b/context", "2\n")
        .put("a/context", "3\n")
        .put(".distributions/x", "")
        .put("README", "");
    assert_eq!(guest_names(&t.0.path().join("etc")).unwrap(), ["a", "b"]);
}

#[test]
fn context_conflicts_name_every_user() {
    let c = context_conflicts(&[("a".into(), 5), ("b".into(), 5), ("c".into(), 6)]);
    assert_eq!(c, [(5, vec!["a".to_string(), "b".to_string()])]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Any bytes in any file: an error or a config, never a panic.
    #[test]
    fn loading_never_panics(
        files in proptest::collection::vec(
            (prop::sample::select(vec![
                "context", "bcapabilities", "ccapabilities", "cflags", "nflags", "umask", "nice",
                "personality", "fstab", "rlimits/nproc", "ulimits/nofile", "interfaces/00/ip",
                "interfaces/00/mask", "apps/init/style", "apps/init/killseq", "apps/init/environment",
                "sched/fill-rate", "schedule", "spaces/pid", "uts/nodename", "apps/vshelper/sync-timeout",
                "cgroup/cpu.shares", "netns/interfaces/0/host", "sysctl/0/setting", "ionice/class",
            ]), proptest::collection::vec(any::<u8>(), 0..64)),
            0..8,
        )
    ) {
        let t = Tree::new();
        t.put("g/context", "40000\n");
        for (f, bytes) in &files {
            let p = t.0.path().join("etc/g").join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let _ = t.load("g");
    }

    /// check reports, in one pass, every error each file would give alone (one per part of the
    /// tree: an interface folder, apps/init/, sched/ with schedule), and agrees with load_guest.
    #[test]
    fn check_reports_every_wrong_file_in_one_pass(
        files in proptest::collection::btree_map(
            prop::sample::select(vec![
                "bcapabilities", "ccapabilities", "cflags", "nflags", "umask", "nice",
                "personality", "fstab", "rlimits/nproc", "ulimits/nofile", "interfaces/00/ip",
                "interfaces/01/ip", "apps/init/style", "apps/init/killseq", "sched/fill-rate",
                "schedule", "spaces/pid", "uts/nodename", "ionice/class", "sysctl/0/setting",
            ]),
            prop::sample::select(vec![
                "", "1\n", "frob\n", "-7\n", "#x\n", "0x10\n", "a b c\n", "none\n", "300\n",
            ]),
            0..8,
        )
    ) {
        let unit = |f: &str| -> String {
            match f {
                "schedule" => "sched".into(),
                f if f.starts_with("apps/init/") => "apps/init".into(),
                f => f.rsplit_once('/').filter(|(d, _)| d.starts_with("interfaces/"))
                    .map(|(d, _)| d.to_string())
                    .unwrap_or_else(|| f.split('/').next().unwrap().to_string()),
            }
        };
        let write = |t: &Tree, only: Option<&str>| {
            t.put("g/context", "40000\n");
            for (f, c) in &files {
                if only.is_none_or(|o| o == *f) {
                    t.put(&format!("g/{f}"), c);
                }
            }
        };
        let whole = Tree::new();
        write(&whole, None);
        let c = check_guest(&whole.roots(), "g");
        match whole.load("g") {
            Ok(_) => prop_assert!(c.errors.is_empty(), "{:?}", c.errors),
            Err(e) => prop_assert_eq!(&c.errors[0], &e),
        }
        prop_assert_eq!(c.config.is_some(), c.errors.is_empty());
        let cfg = whole.0.path().join("etc/g");
        let got: Vec<(Code, std::path::PathBuf)> = c
            .errors
            .iter()
            .filter_map(|e| Some((e.code, e.file.strip_prefix(&cfg).ok()?.to_path_buf())))
            .collect();
        for f in files.keys() {
            if files.keys().filter(|g| unit(g) == unit(f)).count() > 1 {
                continue;
            }
            let alone = Tree::new();
            write(&alone, Some(f));
            if let Err(e) = alone.load("g") {
                let rel = e.file.strip_prefix(alone.0.path().join("etc/g")).unwrap().to_path_buf();
                prop_assert!(
                    got.contains(&(e.code, rel.clone())),
                    "{f}: alone {:?} {:?}; together {:?}", e.code, rel, got
                );
            }
        }
    }
}

#[test]
fn sys_ptrace_is_not_a_default_capability_and_granting_it_is_warned() {
    assert_eq!(names::BCAPS_SECURE & (1 << names::CAP_SYS_PTRACE), 0);
    let t = Tree::new();
    t.put("web/context", "42\n")
        .put("web/bcapabilities", "SYS_PTRACE\n");
    let l = t.load("web").unwrap();
    assert_ne!(l.config.bcaps & (1 << names::CAP_SYS_PTRACE), 0);
    assert!(
        l.warnings.iter().any(|w| w.message.contains("SYS_PTRACE")),
        "{:?}",
        l.warnings
    );
}

#[test]
fn a_guest_without_pids_or_memory_limit_is_called_unbounded() {
    let t = Tree::new();
    t.put("a/context", "42\n");
    let w = |n: &str| {
        t.load(n)
            .unwrap()
            .warnings
            .iter()
            .map(|w| w.message.clone())
            .find(|m| m.contains("unbounded"))
    };
    let a = w("a").unwrap();
    assert!(
        a.contains("no pids limit") && a.contains("no memory limit"),
        "{a}"
    );
    t.put("b/context", "43\n")
        .put("b/cgroup/pids.max", "100\n")
        .put("b/rlimits/rss", "100000\n");
    assert_eq!(w("b"), None);
    t.put("c/context", "44\n").put("c/cgroup/pids.max", "max\n");
    assert!(w("c").unwrap().contains("no pids limit"));
    // .defaults/cgroup stands in for a guest without cgroup/.
    t.put(".defaults/cgroup/pids.max", "200\n")
        .put(".defaults/cgroup/memory.limit_in_bytes", "1G\n");
    assert_eq!(w("a"), None);
}

#[test]
fn a_guest_without_a_way_out_is_told_so() {
    let t = Tree::new();
    let route = |n: &str| {
        t.load(n)
            .unwrap()
            .warnings
            .iter()
            .map(|w| w.message.clone())
            .find(|m| m.contains("loopback only") || m.contains("host-only"))
    };
    t.put("lo/context", "42\n");
    assert!(route("lo").unwrap().contains("loopback only"));
    t.put("ho/context", "43\n")
        .put("ho/interfaces/0/ip", "10.1.0.2\n")
        .put("ho/interfaces/0/prefix", "24\n")
        .put("ho/interfaces/0/nodev", "");
    assert!(route("ho").unwrap().contains("host-only"));
    t.put("up/context", "44\n")
        .put("up/interfaces/0/ip", "192.0.2.9\n")
        .put("up/interfaces/0/prefix", "24\n")
        .put("up/interfaces/0/dev", "eth0\n");
    assert_eq!(route("up"), None);
    t.put("hs/context", "45\n").put("hs/noncontext", "");
    assert_eq!(route("hs"), None);
}

#[test]
fn a_suid_bind_is_warned_about() {
    let t = Tree::new();
    t.put("g/context", "42\n").put(
        "g/fstab",
        "/srv/a /a none bind 0 0\n/srv/b /b none bind,suid 0 0\n",
    );
    let l = t.load("g").unwrap();
    let w: Vec<&ConfigError> = l
        .warnings
        .iter()
        .filter(|w| w.message.contains("suid"))
        .collect();
    assert_eq!(w.len(), 1, "{:?}", l.warnings);
    assert_eq!(w[0].line, Some(2));
}

#[test]
fn trees_util_vserver_wrote_load_as_it_read_them() {
    let t = Tree::new();
    // build's empty cpuset/ (name only with --cpuset), -1 as unlimited disk limits, the
    // cpus_exclusive file its builder writes.
    t.put("b/context", "42\n")
        .put("b/cpuset/cpus_exclusive", "0\n")
        .put("b/dlimits/0/directory", "/vservers/b\n")
        .put("b/dlimits/0/space_total", "-1\n")
        .put("b/dlimits/0/inodes_total", "-1\n")
        .put("b/dlimits/0/reserved", "5\n");
    std::fs::create_dir_all(t.0.path().join("etc/b/cpuset")).unwrap();
    let l = t.load("b").unwrap();
    assert_eq!(l.config.cpuset, None);
    assert_eq!(l.config.dlimits[0].space_total, u64::MAX);
    assert!(l
        .warnings
        .iter()
        .any(|w| w.message.contains("read by nothing")));
    // The `sched` flag of util-vserver's 2.4 table: refused, as 0.30.216's start refuses it.
    t.put("s/context", "43\n").put("s/flags", "sched\n");
    assert!(t.load("s").unwrap_err().to_string().contains("sched"));
    // rlimits/rss over cgroup/memory.limit_in_bytes: said.
    t.put("m/context", "44\n")
        .put("m/rlimits/rss", "1000\n")
        .put("m/cgroup/memory.limit_in_bytes", "100M\n");
    assert!(t
        .load("m")
        .unwrap()
        .warnings
        .iter()
        .any(|w| w.message.contains("rlimits/rss wins")));
}

#[test]
fn a_folder_without_vdir_context_or_apps_is_not_a_guest() {
    let t = Tree::new();
    // A provisioning tool's shared interface folder under the config root.
    t.put("shared-if/0/ip", "10.0.0.1\n");
    t.put("g/context", "42\n");
    t.put("h/apps/init/style", "plain\n");
    let names = guest_names(&t.roots().config_root).unwrap();
    assert_eq!(names, ["g", "h"]);
}

#[test]
fn check_reports_every_wrong_file_with_its_code() {
    let t = Tree::new();
    t.put("web/cflags", "virt_memory\n")
        .put("web/bcapabilities", "CAP_NET_RAWIO\n")
        .put("web/rlimits/nproc", "lots\n")
        .put("web/apps/init/style", "upstart\n")
        .put("web/interfaces/0/ip", "10.0.0.1\n")
        .put("web/interfaces/1/ip", "10.0.0.300\n")
        .put("web/interfaces/1/dev", "eth0\n")
        .put("web/frobnicate", "1\n");
    let c = check_guest(&t.roots(), "web");
    assert!(c.config.is_none());
    let got: Vec<(Code, String)> = c
        .errors
        .iter()
        .map(|e| {
            let f = e.file.strip_prefix(t.0.path().join("etc/web")).unwrap();
            (e.code, f.display().to_string())
        })
        .collect();
    for want in [
        (Code::ContextMissing, "context"),
        (Code::NameUnknown, "cflags"),
        (Code::NameUnknown, "bcapabilities"),
        (Code::LimitInvalid, "rlimits/nproc"),
        (Code::InitStyleUnknown, "apps/init/style"),
        (Code::InterfaceDevMissing, "interfaces/0"),
        (Code::InterfaceIpInvalid, "interfaces/1/ip"),
    ] {
        assert!(
            got.contains(&(want.0, want.1.to_string())),
            "{want:?} missing from {got:?}"
        );
    }
    assert_eq!(got.len(), 7, "{got:?}");
    // Warnings about the tree's own files stay; those about the whole guest (which would
    // describe the stand-in defaults) do not.
    let codes: Vec<Code> = c.warnings.iter().map(|w| w.code).collect();
    assert!(codes.contains(&Code::FileUnknown), "{codes:?}");
    assert!(!codes.contains(&Code::Unbounded), "{codes:?}");
    // load_guest stops at the first of them.
    assert_eq!(t.load("web").unwrap_err(), c.errors[0]);
}

#[test]
fn codes_are_unique_kebab_case_and_documented() {
    let doc = include_str!("../../../docs/config.md");
    let mut seen = std::collections::HashSet::new();
    for c in Code::ALL {
        let s = c.as_str();
        assert!(seen.insert(s), "code {s} used twice");
        assert!(
            !s.is_empty()
                && s.split('-')
                    .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase())),
            "{s} is not kebab-case"
        );
        assert!(!c.meaning().is_empty());
        let row = format!("| `{s}` |");
        assert!(doc.contains(&row), "docs/config.md lacks a row for {s}");
    }
    // And the docs list no code that is not one.
    for l in doc.lines().filter(|l| l.starts_with("| `")) {
        let Some(code) = l.split('`').nth(1) else {
            continue;
        };
        if l.contains("| error |") || l.contains("| warning |") {
            assert!(
                Code::ALL.iter().any(|c| c.as_str() == code),
                "docs/config.md lists {code}, which is no code"
            );
        }
    }
}

#[test]
fn a_label_the_kernel_cannot_hold_is_warned_and_left_off() {
    let t = Tree::new();
    t.put("web/context", "40000\n")
        .put("web/interfaces/0/ip", "10.0.0.2\n")
        .put("web/interfaces/0/nodev", "")
        .put("web/interfaces/0/name", "a-long-label-name\n")
        .put("web/interfaces/1/ip", "10.0.0.3\n")
        .put("web/interfaces/1/nodev", "")
        .put("web/interfaces/1/name", "webfront01\n");
    let l = t.load("web").unwrap();
    let long: Vec<_> = l
        .warnings
        .iter()
        .filter(|w| w.code == Code::LabelTooLong)
        .collect();
    assert_eq!(long.len(), 1, "{:?}", l.warnings);
    assert!(long[0].file.ends_with("interfaces/0/name"));
    assert!(!interfaces::label_fits("a-long-label-name"));
    assert!(
        interfaces::label_fits("webfront01"),
        "eth0:webfront01 is 15 bytes"
    );
}

#[test]
fn check_reports_every_unknown_name_of_a_list_file() {
    let t = Tree::new();
    t.put("web/context", "40001\n")
        .put("web/cflags", "virt_memory\nlock,frob\n~bogus\n")
        .put("web/bcapabilities", "NET_RAWIO\nCAP_NET_RAW\nSYS_NOPE\n");
    let c = check_guest(&t.roots(), "web");
    let got: Vec<(String, Option<u32>)> = c
        .errors
        .iter()
        .map(|e| {
            (
                e.file.file_name().unwrap().to_string_lossy().into_owned(),
                e.line,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("bcapabilities".to_string(), Some(1)),
            ("bcapabilities".to_string(), Some(3)),
            ("cflags".to_string(), Some(1)),
            ("cflags".to_string(), Some(2)),
            ("cflags".to_string(), Some(3)),
        ],
        "{:?}",
        c.errors
    );
    assert!(c.errors.iter().all(|e| e.code == Code::NameUnknown));
}

#[test]
fn shared_netmode_plans_addresses_and_refuses_host_network_caps() {
    let t = Tree::new();
    t.put("web/context", "40000\n")
        .put(".defaults/apps/vserverd/netmode", "shared\n")
        .put("web/interfaces/0/ip", "10.0.0.2/24\n")
        .put("web/interfaces/0/dev", "eth0\n")
        .put("web/interfaces/0/name", "web\n")
        .put("web/interfaces/1/ip", "10.9.0.2\n")
        .put("web/interfaces/1/prefix", "32\n")
        .put("web/interfaces/1/nodev", "");
    let c = t.load("web").unwrap().config;
    assert!(netmode::shared_stack(&c));
    let s = crate::guest::sharednet::plan(&c, 7).unwrap();
    assert_eq!(s.lback, crate::bpf::progs::default_lback(40000));
    assert_eq!(s.addrs[0].dev.as_deref(), Some("eth0"));
    assert_eq!(s.addrs[1].dev, None);
    // lback of its own; a bad one named with its file.
    t.put("web/interfaces/lback", "127.0.9.1\n");
    let c = t.load("web").unwrap().config;
    assert_eq!(
        crate::guest::sharednet::plan(&c, 7)
            .unwrap()
            .lback
            .to_string(),
        "127.0.9.1"
    );
    t.put("web/interfaces/lback", "127.0.0.1\n");
    let c = t.load("web").unwrap().config;
    let e = crate::guest::sharednet::plan(&c, 7).unwrap_err();
    assert!(e.contains("interfaces/lback:1"), "{e}");
    std::fs::remove_file(t.0.path().join("etc/web/interfaces/lback")).unwrap();
    // An address with neither dev nor nodev: the config loader's error already.
    std::fs::remove_file(t.0.path().join("etc/web/interfaces/0/dev")).unwrap();
    let e = t.load("web").unwrap_err().to_string();
    assert!(e.contains("interfaces/0") && e.contains("dev"), "{e}");
    // NET_RAW over the host's stack: refused at load (check and start).
    t.put("web/interfaces/0/dev", "eth0\n")
        .put("web/bcapabilities", "NET_RAW\n");
    let e = t.load("web").unwrap_err().to_string();
    assert!(e.contains("bcapabilities") && e.contains("NET_RAW"), "{e}");
    // The same guest in a namespace may have it.
    t.put("web/apps/vserverd/netmode", "netns\n");
    let c = t.load("web").unwrap().config;
    assert!(!netmode::shared_stack(&c));
}

#[test]
fn the_shared_stack_is_the_default_for_guests_with_interfaces() {
    let t = Tree::new();
    t.put("web/context", "40000\n")
        .put("web/interfaces/0/ip", "10.0.0.2/24\n")
        .put("web/interfaces/0/dev", "eth0\n");
    let c = t.load("web").unwrap().config;
    assert_eq!(c.netmode, netmode::NetMode::Auto);
    assert!(netmode::shared_stack(&c));
    // spaces/net, netns/interfaces or nonetns keep their meaning.
    t.put("web/spaces/net", "");
    assert!(!netmode::shared_stack(&t.load("web").unwrap().config));
    std::fs::remove_file(t.0.path().join("etc/web/spaces/net")).unwrap();
    t.put("web/nonetns", "");
    assert!(!netmode::shared_stack(&t.load("web").unwrap().config));
    std::fs::remove_file(t.0.path().join("etc/web/nonetns")).unwrap();
    // netns by name, here or in .defaults.
    t.put(".defaults/apps/vserverd/netmode", "netns\n");
    assert!(!netmode::shared_stack(&t.load("web").unwrap().config));
    std::fs::remove_file(t.0.path().join("etc/.defaults/apps/vserverd/netmode")).unwrap();
    // NET_RAW without a netmode file: the namespace, no error.
    t.put("web/bcapabilities", "NET_RAW\n");
    let c = t.load("web").unwrap().config;
    assert!(!netmode::shared_stack(&c));
    // util-vserver's "no IP" guests (0.0.0.0): the namespace.
    std::fs::remove_file(t.0.path().join("etc/web/bcapabilities")).unwrap();
    t.put("web/interfaces/1/ip", "0.0.0.0\n")
        .put("web/interfaces/1/nodev", "");
    assert!(!netmode::shared_stack(&t.load("web").unwrap().config));
    // No interfaces: no shared stack.
    std::fs::remove_dir_all(t.0.path().join("etc/web/interfaces")).unwrap();
    assert!(!netmode::shared_stack(&t.load("web").unwrap().config));
}
