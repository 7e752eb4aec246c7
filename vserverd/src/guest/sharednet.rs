//! A shared-stack guest's network (docs/network.md, "The shared stack"): its addresses on the
//! host's devices, and its socket programs (isolate/sockbpf.rs) on its cgroup. Planning and
//! the `ip` command lists are pure; `add`, `attach` and `remove` act.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use crate::bpf::progs::{default_lback, Policy};
use crate::config::GuestConfig;
use crate::isolate::sockbpf;

/// ncaps `raw_icmp` (config/names.rs NCAPS).
const RAW_ICMP: u64 = 0x100;

/// One of the guest's addresses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostAddr {
    /// interfaces/ID, for messages.
    pub id: String,
    pub ip: IpAddr,
    pub prefix: u8,
    /// The host device it is added to; None for `nodev` (the guest's, on no device).
    pub dev: Option<String>,
    /// The IPv4 label's suffix (`dev:NAME`).
    pub label: Option<String>,
}

/// What a shared-stack guest was started with: the run state and the start journal keep it,
/// so a restarted daemon (or the rollback of a cut-short start) knows what to take back, and
/// an adopted guest keeps its mode and rules until it stops.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SharedNet {
    pub addrs: Vec<HostAddr>,
    pub lback: Ipv4Addr,
    pub netns_cookie: u64,
    /// ncaps `raw_icmp`: ICMP ping sockets allowed.
    #[serde(default)]
    pub raw_icmp: bool,
    /// A user-namespace guest whose bounding set grants NET_BIND_SERVICE: its root's host uid,
    /// whose binds may take ports below 1024 (bpf/progs.rs `Policy::bind_low_uid`).
    #[serde(default)]
    pub bind_low_uid: Option<u32>,
}

impl SharedNet {
    pub fn policy(&self) -> Policy {
        let mut p = Policy {
            netns_cookie: self.netns_cookie,
            v4: vec![],
            v6: vec![],
            lback: self.lback,
            raw_icmp: self.raw_icmp,
            bind_low_uid: self.bind_low_uid,
            maps: None,
        };
        for a in &self.addrs {
            match a.ip {
                IpAddr::V4(v) => p.v4.push(v),
                IpAddr::V6(v) => p.v6.push(v),
            }
        }
        p
    }
}

/// The guest's shared network from its config: every (non-`down`) address; lback from
/// `interfaces/lback` (an IPv4 loopback address other than 127.0.0.1), else from the context.
pub fn plan(c: &GuestConfig, netns_cookie: u64) -> Result<SharedNet, String> {
    let ifdir = c.cfg_dir.join("interfaces");
    let lback = match &c.interfaces.lback {
        None => default_lback(c.context),
        Some(s) => {
            let ip: Ipv4Addr = s.parse().map_err(|_| {
                format!(
                    "{}:1: expected an IPv4 address, got {s:?}",
                    ifdir.join("lback").display()
                )
            })?;
            if !ip.is_loopback() || ip == Ipv4Addr::LOCALHOST {
                return Err(format!(
                    "{}:1: {ip} is not a loopback address of its own (127.0.0.0/8 but \
                     127.0.0.1)",
                    ifdir.join("lback").display()
                ));
            }
            ip
        }
    };
    let mut addrs = Vec::new();
    for i in c.interfaces.list.iter().filter(|i| !i.down) {
        let dev = if i.nodev {
            None
        } else {
            Some(i.dev.clone().ok_or_else(|| {
                format!(
                    "{}: no dev to put {} on in the shared network stack (write dev, or nodev \
                     for an address on no device)",
                    ifdir.join(&i.id).display(),
                    i.ip
                )
            })?)
        };
        if i.ip.is_loopback() || i.ip.is_unspecified() || i.ip.is_multicast() {
            return Err(format!(
                "{}/ip: {} cannot be a guest's address",
                ifdir.join(&i.id).display(),
                i.ip
            ));
        }
        addrs.push(HostAddr {
            id: i.id.clone(),
            ip: i.ip,
            prefix: i.prefix,
            dev,
            label: i.name.clone(),
        });
    }
    Ok(SharedNet {
        addrs,
        lback,
        netns_cookie,
        raw_icmp: c.ncaps & RAW_ICMP != 0,
        bind_low_uid: None,
    })
}

/// CAP_NET_BIND_SERVICE's bit in `bcapabilities`' mask.
const NET_BIND_SERVICE: u64 = 1 << 10;

/// Whether the guest's root may bind ports below 1024 through its programs: a user-namespace
/// guest (whose capabilities do not reach the host's namespace) whose bounding set grants
/// NET_BIND_SERVICE. A guest without user namespace holds the capability itself when granted;
/// one whose bounding set drops it gets nothing more here.
pub fn binds_low_ports(c: &GuestConfig) -> bool {
    c.spaces.user && c.bcaps & NET_BIND_SERVICE != 0
}

/// An address another running guest holds: refused, the same address twice would be removed
/// by whichever stops first.
pub fn clash<'a>(
    s: &SharedNet,
    others: impl IntoIterator<Item = (&'a str, &'a SharedNet)>,
) -> Option<String> {
    for (name, o) in others {
        for a in &s.addrs {
            if o.addrs.iter().any(|b| b.ip == a.ip) {
                return Some(format!(
                    "interfaces/{}: {} is an address of the running guest {name}",
                    a.id, a.ip
                ));
            }
        }
        if o.lback == s.lback {
            return Some(format!(
                "interfaces/lback: {} is the loopback address of the running guest {name}",
                s.lback
            ));
        }
    }
    None
}

fn addr_args(a: &HostAddr, dev: &str) -> Vec<String> {
    let mut v = vec![
        "ip".to_string(),
        "addr".into(),
        "add".into(),
        format!("{}/{}", a.ip, a.prefix),
        "dev".into(),
        dev.to_string(),
    ];
    if let (IpAddr::V4(_), Some(l)) = (a.ip, &a.label) {
        // Labels must start with the device name.
        v.extend(["label".into(), format!("{dev}:{l}")]);
    }
    if a.ip.is_ipv6() {
        // Duplicate address detection would make binds fail for a second or two after start.
        v.push("nodad".into());
    }
    v
}

/// `ip addr add` for each address that goes on a device, after turning on
/// promote_secondaries on each device that gets an IPv4 address: without it, removing the
/// first address of a subnet (the primary) removes every other address of that subnet on the
/// device with it — another guest's, or the host's own. (systemd's default sysctl.d sets it
/// for every device.)
pub fn add_commands(s: &SharedNet) -> Vec<Vec<String>> {
    let mut devs: Vec<&str> = s
        .addrs
        .iter()
        .filter(|a| a.ip.is_ipv4())
        .filter_map(|a| a.dev.as_deref())
        .collect();
    devs.dedup();
    let mut c: Vec<Vec<String>> = devs
        .iter()
        .map(|d| {
            vec![
                "sysctl".into(),
                "-q".into(),
                "-w".into(),
                format!("net/ipv4/conf/{d}/promote_secondaries=1"),
            ]
        })
        .collect();
    c.extend(
        s.addrs
            .iter()
            .filter_map(|a| Some(addr_args(a, a.dev.as_deref()?))),
    );
    c
}

/// `ip addr del` for each such address.
pub fn del_commands(s: &SharedNet) -> Vec<Vec<String>> {
    s.addrs
        .iter()
        .filter_map(|a| {
            let dev = a.dev.as_deref()?;
            Some(vec![
                "ip".into(),
                "addr".into(),
                "del".into(),
                format!("{}/{}", a.ip, a.prefix),
                "dev".into(),
                dev.into(),
            ])
        })
        .collect()
}

fn run(cmd: &[String]) -> Result<(), String> {
    let o = std::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .output()
        .map_err(|e| format!("{}: {e}", cmd[0]))?;
    if !o.status.success() {
        return Err(format!(
            "`{}` failed: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(())
}

/// Addresses already on the host (its own, or left by someone else): refused before anything
/// changes, since the guest's stop would take them from their owner.
pub fn check_free(s: &SharedNet) -> Result<(), String> {
    let o = std::process::Command::new("ip")
        .args(["-o", "addr", "show"])
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    let text = String::from_utf8_lossy(&o.stdout);
    for a in &s.addrs {
        let needle = format!(" {}/", a.ip);
        if let Some(line) = text.lines().find(|l| l.contains(&needle)) {
            let dev = line.split_whitespace().nth(1).unwrap_or("?");
            return Err(format!(
                "interfaces/{}: {} is already an address of this host (on {dev})",
                a.id, a.ip
            ));
        }
    }
    Ok(())
}

/// The host's addresses as `ip -o addr show` lists them.
pub fn host_addresses() -> Result<String, String> {
    let o = std::process::Command::new("ip")
        .args(["-o", "addr", "show"])
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// `check`'s warnings for `nodev` addresses the host does not have (`ip_listing`: `ip -o addr
/// show`): the guest may bind them, but the kernel refuses a bind to an address that is not
/// local until someone adds or routes it.
pub fn nodev_warnings(s: &SharedNet, ip_listing: &str) -> Vec<(String, String)> {
    s.addrs
        .iter()
        .filter(|a| a.dev.is_none())
        .filter(|a| !ip_listing.contains(&format!(" {}/", a.ip)))
        .map(|a| {
            (
                format!("interfaces/{}/nodev", a.id),
                format!(
                    "{} is on no device (nodev) and not an address of this host: binds to it fail                      until it is added or routed locally",
                    a.ip
                ),
            )
        })
        .collect()
}

/// Adds the addresses to their devices; a failure removes those added.
pub fn add(s: &SharedNet) -> Result<(), String> {
    let adds = add_commands(s);
    let dels = del_commands(s);
    let settings = adds.len() - dels.len();
    for (i, c) in adds.iter().enumerate() {
        if let Err(e) = run(c) {
            for d in &dels[..i.saturating_sub(settings)] {
                let _ = run(d);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// What the shared stack does not fence off yet: in the host's network namespace, abstract
/// unix socket names are one namespace for the host and every shared-stack guest. The cgroup
/// unix hooks keep a guest from connecting or sending to a name the host (or another guest)
/// bound, but nothing but BPF LSM sees a bind (there is no cgroup bind hook for unix sockets),
/// so a guest can bind a name first — one a host client trusts (a D-Bus or X11 abstract
/// socket, a container shim's) — and have the host's processes connect to it. vserverd does not
/// load BPF LSM programs yet (and this development host's kernel refuses every trampoline
/// program: docs/network.md). Until it does, a guest gets the shared stack only when its admin
/// asks for it by name (`apps/vserverd/netmode` = `shared`), warned of this.
pub const ABSTRACT_GAP: &str = "the guest could bind abstract unix socket names that the \
    host's programs would connect to (fencing binds needs BPF LSM programs, which vserverd \
    does not load yet)";

/// Why the shared stack cannot be had on this host, if it cannot: no unified cgroup hierarchy,
/// or no cgroup BPF; and for a guest that did not ask for it by name (`asked` false), the
/// abstract-socket gap above. The guest then gets a network namespace (with a warning).
pub fn unusable(d: &crate::daemon::Daemon, asked: bool) -> Option<String> {
    if let Some(why) = unusable_kernel(d) {
        return Some(why);
    }
    (!asked).then(|| ABSTRACT_GAP.to_string())
}

/// The warning for a guest that asked for the shared stack by name and gets it, gap and all.
pub fn asked_gap_warning() -> String {
    format!("apps/vserverd/netmode is shared: {ABSTRACT_GAP}")
}

fn unusable_kernel(d: &crate::daemon::Daemon) -> Option<String> {
    match d.layout() {
        Err(e) => return Some(e),
        Ok(l) if l.v2().is_none() => {
            return Some("no unified (v2) cgroup hierarchy is mounted".into())
        }
        Ok(_) => {}
    }
    sockbpf::available().err()
}

/// The warning `check`, the start and the log give when the shared stack falls back
/// (`asked`: netmode `shared` written, rather than the default).
pub fn fallback_warning(why: &str, asked: bool) -> String {
    let what = if asked {
        "apps/vserverd/netmode is shared"
    } else {
        "a guest with interfaces/ shares the host's network stack by default"
    };
    let anyway = if asked {
        ""
    } else {
        " (`shared` in apps/vserverd/netmode asks for the shared stack all the same)"
    };
    format!("{what}, but {why}: the guest gets a network namespace and a veth pair instead{anyway}")
}

/// Links the socket programs to the guest's cgroup in the unified hierarchy.
pub fn attach(
    run_dir: &Path,
    name: &str,
    cgroup_v2: Option<&Path>,
    s: &SharedNet,
) -> Result<std::time::Duration, String> {
    let cg = cgroup_v2.ok_or(
        "the shared network stack needs the unified (v2) cgroup hierarchy, which is not \
         mounted: use netmode netns",
    )?;
    sockbpf::attach(run_dir, name, cg, &s.policy()).map_err(|e| e.to_string())
}

/// Links a running guest's programs again (adoption found a pin gone): its recorded
/// listeners are kept (isolate/sockbpf.rs `relink`).
pub fn relink(
    run_dir: &Path,
    name: &str,
    cgroup_v2: Option<&Path>,
    s: &SharedNet,
) -> Result<std::time::Duration, String> {
    let cg = cgroup_v2.ok_or("the shared network stack needs the unified (v2) cgroup hierarchy")?;
    sockbpf::relink(run_dir, name, cg, &s.policy()).map_err(|e| e.to_string())
}

/// Takes everything back: the programs, then the addresses. Every step is tried; call it only
/// once the guest's processes are gone (the programs keep them narrowed until then).
pub fn remove(run_dir: &Path, name: &str, s: &SharedNet) {
    if let Err(e) = sockbpf::forget(run_dir, &s.policy()) {
        tracing::warn!(guest = name, "{e}");
    }
    if let Err(e) = sockbpf::detach(run_dir, name) {
        tracing::warn!(guest = name, "{e}");
    }
    for d in del_commands(s) {
        let _ = run(&d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> SharedNet {
        SharedNet {
            addrs: vec![
                HostAddr {
                    id: "0".into(),
                    ip: "10.0.0.2".parse().unwrap(),
                    prefix: 24,
                    dev: Some("eth0".into()),
                    label: Some("web".into()),
                },
                HostAddr {
                    id: "1".into(),
                    ip: "fd00::2".parse().unwrap(),
                    prefix: 64,
                    dev: Some("eth0".into()),
                    label: None,
                },
                HostAddr {
                    id: "2".into(),
                    ip: "10.9.0.2".parse().unwrap(),
                    prefix: 32,
                    dev: None,
                    label: None,
                },
            ],
            lback: "127.0.2.1".parse().unwrap(),
            netns_cookie: 1,
            raw_icmp: false,
            bind_low_uid: None,
        }
    }

    #[test]
    fn commands_label_v4_nodad_v6_and_skip_nodev() {
        let a: Vec<String> = add_commands(&net()).iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            a,
            [
                "sysctl -q -w net/ipv4/conf/eth0/promote_secondaries=1",
                "ip addr add 10.0.0.2/24 dev eth0 label eth0:web",
                "ip addr add fd00::2/64 dev eth0 nodad"
            ]
        );
        let d: Vec<String> = del_commands(&net()).iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            d,
            [
                "ip addr del 10.0.0.2/24 dev eth0",
                "ip addr del fd00::2/64 dev eth0"
            ]
        );
    }

    #[test]
    fn nodev_addresses_not_on_the_host_are_warned() {
        let listing = "1: lo    inet 127.0.0.1/8 scope host lo\n";
        let w = nodev_warnings(&net(), listing);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].0, "interfaces/2/nodev");
        assert!(w[0].1.contains("10.9.0.2"));
        let listing = "1: lo    inet 10.9.0.2/32 scope global lo\n";
        assert!(nodev_warnings(&net(), listing).is_empty());
    }

    #[test]
    fn policy_splits_families_in_order() {
        let p = net().policy();
        assert_eq!(p.v4.len(), 2);
        assert_eq!(p.v4[0].to_string(), "10.0.0.2");
        assert_eq!(p.v6[0].to_string(), "fd00::2");
    }

    #[test]
    fn clashes_with_running_guests() {
        let mut other = net();
        other.addrs.truncate(1);
        other.lback = "127.0.3.1".parse().unwrap();
        let e = clash(&net(), [("b", &other)]).unwrap();
        assert!(e.contains("10.0.0.2") && e.contains("guest b"), "{e}");
        other.addrs[0].ip = "10.0.0.7".parse().unwrap();
        assert_eq!(clash(&net(), [("b", &other)]), None);
        other.lback = "127.0.2.1".parse().unwrap();
        assert!(clash(&net(), [("b", &other)]).unwrap().contains("lback"));
    }
}
