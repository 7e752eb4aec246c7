//! Name tables (bcaps, ccaps, cflags, nflags, ncaps, umask) and util-vserver's list syntax.
//!
//! A config line may hold several comma-separated elements. Each element may be negated by
//! leading `~` or `!` (each one toggles), names match case-insensitively with an optional
//! prefix (`CAP_`, `VXC_`, …), `all`/`any`/`none` match by prefix (`a`, `n` …), a number is a
//! raw mask (strtoll base 0) and `^N` is bit N. A negated element still marks its bits, so it
//! overrides a default: the result is `(default & !mask) | (value & mask)`.

use super::error::{Code, ConfigError, Result};
use super::read::{parse_int, Line};

/// One table: names and their bit values, the optional prefix, and the word used in errors.
pub struct Table {
    pub entries: &'static [(&'static str, u64)],
    /// Aliases accepted on input, never printed.
    pub aliases: &'static [(&'static str, u64)],
    pub prefix: &'static str,
    /// "bcap", "ccap", "flag", … as util-vserver's messages say.
    pub what: &'static str,
}

const fn b(n: u32) -> u64 {
    1u64 << n
}

/// Linux capability numbers: bcapabilities bound the guest's capability bounding set.
pub static BCAPS: Table = Table {
    entries: &[
        ("chown", b(0)),
        ("dac_override", b(1)),
        ("dac_read_search", b(2)),
        ("fowner", b(3)),
        ("fsetid", b(4)),
        ("kill", b(5)),
        ("setgid", b(6)),
        ("setuid", b(7)),
        ("setpcap", b(8)),
        ("linux_immutable", b(9)),
        ("net_bind_service", b(10)),
        ("net_broadcast", b(11)),
        ("net_admin", b(12)),
        ("net_raw", b(13)),
        ("ipc_lock", b(14)),
        ("ipc_owner", b(15)),
        ("sys_module", b(16)),
        ("sys_rawio", b(17)),
        ("sys_chroot", b(18)),
        ("sys_ptrace", b(19)),
        ("sys_pacct", b(20)),
        ("sys_admin", b(21)),
        ("sys_boot", b(22)),
        ("sys_nice", b(23)),
        ("sys_resource", b(24)),
        ("sys_time", b(25)),
        ("sys_tty_config", b(26)),
        ("mknod", b(27)),
        ("lease", b(28)),
        ("audit_write", b(29)),
        ("audit_control", b(30)),
        ("setfcap", b(31)),
        ("mac_override", b(32)),
        ("mac_admin", b(33)),
        // Newer than util-vserver, but real capabilities a bounding set can hold.
        ("syslog", b(34)),
        ("wake_alarm", b(35)),
        ("block_suspend", b(36)),
        ("audit_read", b(37)),
        ("perfmon", b(38)),
        ("bpf", b(39)),
        ("checkpoint_restore", b(40)),
    ],
    aliases: &[],
    prefix: "cap_",
    what: "bcap",
};

/// util-vserver's secure default: what a guest keeps with no bcapabilities file (SYS_BOOT for
/// the reboot helper, AUDIT_WRITE as on every 2.6+ vserver kernel) — less SYS_PTRACE
/// (docs/security.md): with it, guest root could trace the privileged helpers that enter its
/// pid namespace and take their file descriptors (pidfd_getfd).
pub const BCAPS_SECURE: u64 = b(0)
    | b(1)
    | b(2)
    | b(3)
    | b(4)
    | b(5)
    | b(6)
    | b(7)
    | b(10)
    | b(18)
    | b(22)
    | b(26)
    | b(28)
    | b(29)
    | b(31);

pub static CCAPS: Table = Table {
    entries: &[
        ("set_utsname", 0x1),
        ("set_rlimit", 0x2),
        ("fs_security", 0x4),
        ("fs_trusted", 0x8),
        ("tiocsti", 0x10),
        ("raw_icmp", 0x100),
        ("syslog", 0x1000),
        ("oom_adjust", 0x2000),
        ("audit_control", 0x4000),
        ("secure_mount", 0x10000),
        ("secure_remount", 0x20000),
        ("binary_mount", 0x40000),
        ("dev_mount", 0x80000),
        ("quota_ctl", 0x100000),
        ("admin_mapper", 0x200000),
        ("admin_cloop", 0x400000),
        ("kthread", 0x1000000),
        ("namespace", 0x2000000),
    ],
    aliases: &[
        ("mount", 0x10000),
        ("remount", 0x20000),
        ("icmp", 0x100),
        ("ping", 0x100),
        ("utsname", 0x1),
        ("rlimit", 0x2),
    ],
    prefix: "vxc_",
    what: "ccap",
};

/// CAP_SYS_RESOURCE's number: ext4 lets its holder write past a quota.
pub const CAP_SYS_RESOURCE: u32 = 24;
/// CAP_SYS_PTRACE's number: left out of BCAPS_SECURE, warned about when a tree grants it.
pub const CAP_SYS_PTRACE: u32 = 19;
pub const CCAPS_SECURE: u64 = 0x1 | 0x100 | 0x4000;

pub const FLAG_FAKEINIT: u64 = 0x10;
pub const FLAG_VIRT_MEM: u64 = 0x10000;
pub const FLAG_VIRT_UPTIME: u64 = 0x20000;
pub const FLAG_VIRT_CPU: u64 = 0x40000;
pub const FLAG_VIRT_LOAD: u64 = 0x80000;
pub const FLAG_HIDE_NETIF: u64 = 0x200_0000;
pub const FLAG_SC_HELPER: u64 = 1 << 36;

pub static CFLAGS: Table = Table {
    entries: &[
        ("lock", 0x1),
        ("nproc", 0x4),
        ("private", 0x8),
        ("fakeinit", FLAG_FAKEINIT),
        ("hideinfo", 0x20),
        ("ulimit", 0x40),
        ("namespace", 0x80),
        ("sched_hard", 0x100),
        ("sched_prio", 0x200),
        ("sched_pause", 0x400),
        ("virt_mem", FLAG_VIRT_MEM),
        ("virt_uptime", FLAG_VIRT_UPTIME),
        ("virt_cpu", FLAG_VIRT_CPU),
        ("virt_load", FLAG_VIRT_LOAD),
        ("virt_time", 0x100000),
        ("hide_mount", 0x100_0000),
        ("hide_netif", FLAG_HIDE_NETIF),
        ("hide_vinfo", 0x400_0000),
        ("state_setup", 1 << 32),
        ("state_init", 1 << 33),
        ("state_admin", 1 << 34),
        ("sc_helper", FLAG_SC_HELPER),
        ("reboot_kill", 1 << 37),
        ("persistent", 1 << 38),
        ("fork_rss", 1 << 48),
        ("prolific", 1 << 49),
        ("igneg_nice", 1 << 52),
        ("igneg_ionice", 1 << 53),
    ],
    aliases: &[
        ("secure", FLAG_HIDE_NETIF),
        ("default", FLAG_VIRT_UPTIME | FLAG_SC_HELPER),
        ("info_lock", 0x1),
        ("info_nproc", 0x4),
        ("info_private", 0x8),
        ("info_init", FLAG_FAKEINIT),
        ("info_hideinfo", 0x20),
        ("info_ulimit", 0x40),
        ("info_namespace", 0x80),
        ("info_nspace", 0x80),
    ],
    prefix: "vxf_",
    what: "flag",
};

/// The flags a started guest has unless negated: `--secure --flag default --flag fakeinit`.
pub const CFLAGS_DEFAULT: u64 = FLAG_HIDE_NETIF | FLAG_VIRT_UPTIME | FLAG_SC_HELPER | FLAG_FAKEINIT;

pub static NFLAGS: Table = Table {
    entries: &[
        ("lock", 0x1),
        ("private", 0x8),
        ("single_ip", 0x100),
        ("lback_remap", 0x200),
        ("lback_allow", 0x400),
        ("hide_netif", 0x200_0000),
        ("hide_lback", 0x400_0000),
        ("state_setup", 1 << 32),
        ("state_admin", 1 << 34),
        ("sc_helper", 1 << 36),
        ("persistent", 1 << 38),
    ],
    aliases: &[
        ("remap_lback", 0x200),
        ("info_lock", 0x1),
        ("info_private", 0x8),
    ],
    prefix: "nxf_",
    what: "nflag",
};

pub const NFLAGS_DEFAULT: u64 = 0x200_0000;

pub static NCAPS: Table = Table {
    entries: &[("tun_create", 0x1), ("raw_icmp", 0x100)],
    aliases: &[],
    prefix: "nxc_",
    what: "ncap",
};

pub const NCAPS_DEFAULT: u64 = 0x100;

/// `umask`: the namespaces a guest may unshare.
pub static UMASK: Table = Table {
    entries: &[
        ("fs", 0x200),
        ("newns", 0x2_0000),
        ("newuts", 0x400_0000),
        ("newipc", 0x800_0000),
        ("newuser", 0x1000_0000),
        ("newpid", 0x2000_0000),
        ("newnet", 0x4000_0000),
    ],
    aliases: &[],
    prefix: "",
    what: "namespace",
};

/// Explicit settings from a list file: `value` holds set bits, `mask` every bit mentioned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mask {
    pub value: u64,
    pub mask: u64,
}

impl Mask {
    /// The default with this file's settings applied.
    pub fn apply(self, default: u64) -> u64 {
        (default & !self.mask) | (self.value & self.mask)
    }
}

impl Table {
    pub fn lookup(&self, name: &str) -> Option<u64> {
        let lower = name.to_ascii_lowercase();
        let bare = lower
            .strip_prefix(self.prefix)
            .filter(|_| !self.prefix.is_empty())
            .unwrap_or(&lower);
        self.entries
            .iter()
            .chain(self.aliases.iter())
            .find(|(n, _)| *n == bare)
            .map(|(_, v)| *v)
    }

    pub fn all(&self) -> u64 {
        self.entries.iter().fold(0, |a, (_, v)| a | v)
    }

    /// Canonical names of the bits in `mask`, in table order; unnamed bits as `^N`.
    pub fn names(&self, mask: u64) -> Vec<String> {
        let mut out = Vec::new();
        let mut left = mask;
        for (n, v) in self.entries {
            if v.count_ones() == 1 && mask & v != 0 {
                out.push((*n).to_string());
                left &= !v;
            }
        }
        for bit in 0..64 {
            if left & (1 << bit) != 0 {
                out.push(format!("^{bit}"));
            }
        }
        out
    }

    /// Parses one element (no commas) into (bits, negated).
    fn element(&self, raw: &str) -> Option<(u64, bool)> {
        let mut s = raw.trim();
        let mut neg = false;
        while let Some(rest) = s.strip_prefix('~').or_else(|| s.strip_prefix('!')) {
            neg = !neg;
            s = rest;
        }
        if s.is_empty() {
            return None;
        }
        let lower = s.to_ascii_lowercase();
        if "all".starts_with(&lower) || "any".starts_with(&lower) {
            return Some((u64::MAX, neg));
        }
        if "none".starts_with(&lower) {
            // "none" is "all" cleared: every bit marked, none set; "~none" is all.
            return Some((u64::MAX, !neg));
        }
        if let Some(n) = s.strip_prefix('^') {
            let bit: u32 = n.parse().ok().filter(|b| *b < 64)?;
            return Some((1u64 << bit, neg));
        }
        if s.as_bytes()[0].is_ascii_digit() {
            return parse_int(s).map(|v| (v as u64, neg));
        }
        self.lookup(s).map(|v| (v, neg))
    }

    /// Parses the lines of a list file.
    pub fn parse(&self, file: &std::path::Path, lines: &[Line]) -> Result<Mask> {
        let mut m = Mask::default();
        let mut bad = Vec::new();
        for l in lines {
            for el in l.text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let Some((bits, neg)) = self.element(el) else {
                    // Every unknown name of the file, not only the first.
                    bad.push(ConfigError::at(
                        Code::NameUnknown,
                        file,
                        l.no,
                        format!("Unknown {} '{el}'", self.what),
                    ));
                    continue;
                };
                m.mask |= bits;
                if neg {
                    m.value &= !bits;
                } else {
                    m.value |= bits;
                }
            }
        }
        match ConfigError::first_of(bad) {
            Some(e) => Err(e),
            None => Ok(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;

    fn lines(s: &[&str]) -> Vec<Line> {
        s.iter()
            .enumerate()
            .map(|(i, t)| Line {
                no: i as u32 + 1,
                text: t.to_string(),
            })
            .collect()
    }

    fn parse(t: &Table, s: &[&str]) -> Result<Mask> {
        t.parse(Path::new("/cfg/bcapabilities"), &lines(s))
    }

    #[test]
    fn names_match_with_or_without_prefix_in_any_case() {
        for n in ["CAP_NET_ADMIN", "net_admin", "Cap_Net_Admin", "NET_ADMIN"] {
            assert_eq!(parse(&BCAPS, &[n]).unwrap().apply(0), 1 << 12, "{n}");
        }
    }

    #[test]
    fn negation_removes_from_the_default_and_toggles() {
        let m = parse(&BCAPS, &["~SYS_BOOT"]).unwrap();
        assert_eq!(m.apply(BCAPS_SECURE) & (1 << 22), 0);
        let m = parse(&BCAPS, &["!~SYS_BOOT"]).unwrap();
        assert_ne!(m.apply(BCAPS_SECURE) & (1 << 22), 0);
        let m = parse(&BCAPS, &["~~NET_ADMIN"]).unwrap();
        assert_ne!(m.apply(0) & (1 << 12), 0);
    }

    #[test]
    fn commas_numbers_and_bit_syntax() {
        let m = parse(&BCAPS, &["net_admin, sys_admin", "^27", "0x1"]).unwrap();
        assert_eq!(m.apply(0), (1 << 12) | (1 << 21) | (1 << 27) | 1);
        let m = parse(&BCAPS, &["010"]).unwrap();
        assert_eq!(m.apply(0), 8);
    }

    #[test]
    fn all_and_none_match_by_prefix() {
        assert_eq!(parse(&BCAPS, &["a"]).unwrap().apply(0), u64::MAX);
        assert_eq!(parse(&BCAPS, &["all"]).unwrap().apply(0), u64::MAX);
        assert_eq!(parse(&BCAPS, &["none"]).unwrap().apply(BCAPS_SECURE), 0);
        assert_eq!(parse(&BCAPS, &["n"]).unwrap().apply(BCAPS_SECURE), 0);
        assert_eq!(parse(&BCAPS, &["~all"]).unwrap().apply(BCAPS_SECURE), 0);
    }

    #[test]
    fn unknown_names_are_errors_with_file_and_line() {
        let e = parse(&BCAPS, &["chown", "frob"]).unwrap_err();
        assert_eq!(e.to_string(), "/cfg/bcapabilities:2: Unknown bcap 'frob'");
        let e = CFLAGS
            .parse(Path::new("/cfg/cflags"), &lines(&["virt_nonsense"]))
            .unwrap_err();
        assert_eq!(e.message, "Unknown flag 'virt_nonsense'");
    }

    #[test]
    fn aliases_and_pseudo_flags() {
        assert_eq!(
            CCAPS
                .parse(Path::new("f"), &lines(&["mount"]))
                .unwrap()
                .apply(0),
            0x10000
        );
        assert_eq!(
            CCAPS
                .parse(Path::new("f"), &lines(&["VXC_PING"]))
                .unwrap()
                .apply(0),
            0x100
        );
        let d = CFLAGS
            .parse(Path::new("f"), &lines(&["default"]))
            .unwrap()
            .apply(0);
        assert_eq!(d, FLAG_VIRT_UPTIME | FLAG_SC_HELPER);
        let s = CFLAGS
            .parse(Path::new("f"), &lines(&["~virt_uptime"]))
            .unwrap();
        assert_eq!(s.apply(CFLAGS_DEFAULT) & FLAG_VIRT_UPTIME, 0);
        assert_eq!(NFLAGS.lookup("remap_lback"), Some(0x200));
        assert_eq!(UMASK.lookup("newnet"), Some(0x4000_0000));
    }

    #[test]
    fn the_secure_default_is_util_vservers_less_sys_ptrace() {
        let names = BCAPS.names(BCAPS_SECURE | b(CAP_SYS_PTRACE));
        assert_eq!(
            names,
            [
                "chown",
                "dac_override",
                "dac_read_search",
                "fowner",
                "fsetid",
                "kill",
                "setgid",
                "setuid",
                "net_bind_service",
                "sys_chroot",
                "sys_ptrace",
                "sys_boot",
                "sys_tty_config",
                "lease",
                "audit_write",
                "setfcap"
            ]
        );
        assert_eq!(
            CCAPS.names(CCAPS_SECURE),
            ["set_utsname", "raw_icmp", "audit_control"]
        );
    }

    proptest! {
        #[test]
        fn names_round_trip(mask in any::<u64>()) {
            for t in [&BCAPS, &CCAPS, &CFLAGS, &NFLAGS, &NCAPS, &UMASK] {
                let names = t.names(mask);
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let m = t.parse(Path::new("f"), &lines(&[&refs.join(",")])).unwrap();
                prop_assert_eq!(m.apply(0), mask);
            }
        }

        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = BCAPS.parse(Path::new("f"), &lines(&[&s]));
        }
    }
}
