//! A guest's network (docs/network.md): a network namespace of its own, pinned
//! at RUN_DIR/netns/NAME, holding a loopback and the guest end (eth0) of a veth pair whose host
//! end (vsdCTX) carries a /32 (/128) host route per address; with `dev` set, proxy ARP on
//! that uplink and forwarding let outside hosts reach the guest. Built with iproute2 and
//! util-linux, as util-vserver did; the command lists are pure and tested without root.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::config::interfaces::{label_fits, Interface};
use crate::config::spaces::VethPair;

/// The host end's IPv6 link-local address: the guest's IPv6 next hop.
pub const HOST_LL: &str = "fe80::1";

/// The guest-side interface.
pub use crate::config::interfaces::GUEST_IF;

/// The host end of a guest's veth pair (IFNAMSIZ allows 15 bytes).
/// Sets `lo` up in the calling thread's network namespace (a fresh one has it down): two
/// ioctls, no `ip` process, so a guest's own loopback-only namespace costs microseconds.
pub fn loopback_up() -> std::io::Result<()> {
    crate::sys::ns::interface_up(c"lo")
}

pub fn host_veth(context: u32) -> String {
    format!("vsd{context}")
}

pub fn netns_path(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join("netns").join(name)
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn in_ns(ns: &Path, cmd: &[&str]) -> Vec<String> {
    let mut v = vec![
        "nsenter".to_string(),
        format!("--net={}", ns.display()),
        "--".to_string(),
    ];
    v.extend(s(cmd));
    v
}

/// 802.1q uplinks to make: `(DEV, PARENT, ID)` for each interface whose `dev` is PARENT.ID with
/// vlandev on (on the interface, else on the interfaces/ folder).
pub fn vlans(ifs: &[Interface], folder: Option<bool>) -> Vec<(String, String, u16)> {
    let mut v: Vec<(String, String, u16)> = ifs
        .iter()
        .filter(|i| !i.nodev && i.vlandev.or(folder).unwrap_or(false))
        .filter_map(|i| {
            let dev = i.dev.as_deref()?;
            let (parent, id) = dev.rsplit_once('.')?;
            Some((dev.to_string(), parent.to_string(), id.parse().ok()?))
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The explicit veth pairs of netns/interfaces/N (spaces/net): GUEST inside, HOST outside,
/// up, on BRIDGE when our extension file names one.
pub fn pair_commands(ns: &Path, daemon_pid: u32, pairs: &[VethPair]) -> Vec<Vec<String>> {
    let pid = daemon_pid.to_string();
    let mut c = Vec::new();
    for p in pairs {
        c.push(in_ns(
            ns,
            &[
                "ip", "link", "add", &p.guest, "type", "veth", "peer", "name", &p.host, "netns",
                &pid,
            ],
        ));
        c.push(in_ns(ns, &["ip", "link", "set", &p.guest, "up"]));
        if let Some(br) = &p.bridge {
            c.push(s(&["ip", "link", "set", &p.host, "master", br]));
        }
        c.push(s(&["ip", "link", "set", &p.host, "up"]));
    }
    c
}

/// Everything after the namespace exists, in order. (sysctl names use '/': interface names
/// such as eth0.12 have dots of their own.)
pub fn setup_commands(
    ns: &Path,
    veth: &str,
    daemon_pid: u32,
    ifs: &[Interface],
) -> Vec<Vec<String>> {
    let pid = daemon_pid.to_string();
    let mut c = vec![in_ns(ns, &["ip", "link", "set", "lo", "up"])];
    if ifs.is_empty() {
        return c;
    }
    // Made inside the guest's namespace, with the peer sent to ours (the daemon's).
    c.push(in_ns(
        ns,
        &[
            "ip", "link", "add", GUEST_IF, "type", "veth", "peer", "name", veth, "netns", &pid,
        ],
    ));
    for i in ifs {
        let addr = format!("{}/{}", i.ip, i.prefix);
        let mut add = s(&["ip", "addr", "add", &addr]);
        // A label the kernel cannot hold is left off (check warns); the address still counts.
        if let (IpAddr::V4(_), Some(label)) = (i.ip, i.name.as_ref().filter(|n| label_fits(n))) {
            // Labels must start with the device name.
            add.extend(s(&["label", &format!("{GUEST_IF}:{label}")]));
        }
        add.extend(s(&["dev", GUEST_IF]));
        if i.ip.is_ipv6() {
            // Only the host end is on this link: duplicate address detection would just make
            // the address unusable for a second or two.
            add.push("nodad".into());
        }
        let refs: Vec<&str> = add.iter().map(String::as_str).collect();
        c.push(in_ns(ns, &refs));
    }
    c.push(in_ns(ns, &["ip", "link", "set", GUEST_IF, "up"]));
    // Off-link destinations are ARPed for on eth0; the host end answers (proxy ARP).
    if ifs.iter().any(|i| i.ip.is_ipv4()) {
        c.push(in_ns(
            ns,
            &["ip", "route", "add", "default", "dev", GUEST_IF],
        ));
    }
    let v6 = ifs.iter().any(|i| i.ip.is_ipv6());
    if v6 {
        // IPv6 routes need a next hop: the host end's fixed link-local address.
        c.push(in_ns(
            ns,
            &[
                "ip", "-6", "route", "add", "default", "via", HOST_LL, "dev", GUEST_IF,
            ],
        ));
        c.push(s(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{HOST_LL}/64"),
            "dev",
            veth,
            "nodad",
        ]));
    }
    c.push(s(&["ip", "link", "set", veth, "up"]));
    c.push(s(&[
        "sysctl",
        "-q",
        "-w",
        &format!("net/ipv4/conf/{veth}/proxy_arp=1"),
    ]));
    for i in ifs {
        let (fam, host) = match i.ip {
            IpAddr::V4(_) => ("-4", format!("{}/32", i.ip)),
            IpAddr::V6(_) => ("-6", format!("{}/128", i.ip)),
        };
        c.push(s(&["ip", fam, "route", "add", &host, "dev", veth]));
    }
    let mut uplinks: Vec<&str> = ifs
        .iter()
        .filter(|i| !i.nodev)
        .filter_map(|i| i.dev.as_deref())
        .collect();
    uplinks.sort_unstable();
    uplinks.dedup();
    // Outside hosts on an uplink find an IPv6 guest through a proxy neighbour entry.
    for i in ifs.iter().filter(|i| i.ip.is_ipv6() && !i.nodev) {
        if let Some(dev) = &i.dev {
            c.push(s(&[
                "sysctl",
                "-q",
                "-w",
                &format!("net/ipv6/conf/{dev}/proxy_ndp=1"),
            ]));
            c.push(s(&["sysctl", "-q", "-w", "net/ipv6/conf/all/forwarding=1"]));
            c.push(s(&[
                "ip",
                "-6",
                "neigh",
                "add",
                "proxy",
                &i.ip.to_string(),
                "dev",
                dev,
            ]));
        }
    }
    for dev in uplinks {
        c.push(s(&[
            "sysctl",
            "-q",
            "-w",
            &format!("net/ipv4/conf/{dev}/proxy_arp=1"),
        ]));
        c.push(s(&["sysctl", "-q", "-w", "net/ipv4/ip_forward=1"]));
    }
    c
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NetError(pub String);

fn run(cmd: &[String]) -> Result<(), NetError> {
    let o = std::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .output()
        .map_err(|e| NetError(format!("{}: {e}", cmd[0])))?;
    if !o.status.success() {
        return Err(NetError(format!(
            "`{}` failed: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(())
}

/// Addresses of the guest already on this host (ours, the daemon's namespace): an error
/// before anything changes, since removing them at stop would take them from their owner.
pub fn check_free(ifs: &[Interface]) -> Result<(), NetError> {
    let o = std::process::Command::new("ip")
        .args(["-o", "addr", "show"])
        .output()
        .map_err(|e| NetError(format!("ip: {e}")))?;
    let text = String::from_utf8_lossy(&o.stdout);
    for i in ifs {
        let needle = format!(" {}/", i.ip);
        if let Some(line) = text.lines().find(|l| l.contains(&needle)) {
            let dev = line.split_whitespace().nth(1).unwrap_or("?");
            return Err(NetError(format!(
                "interfaces/{}: {} is already an address of this host (on {dev})",
                i.id, i.ip
            )));
        }
    }
    Ok(())
}

/// Makes a network namespace owned by the host's user namespace and pins it at `ns` (an
/// existing empty file).
pub fn make_netns(ns: &Path) -> Result<(), NetError> {
    run(&s(&["unshare", &format!("--net={}", ns.display()), "true"]))
}

/// Creates the guest's namespace, pinned at `ns` by `make` (such as [`make_netns`]), and sets
/// it up.
pub fn create(
    ns: &Path,
    veth: &str,
    ifs: &[Interface],
    pairs: &[VethPair],
    vlan_devs: &[(String, String, u16)],
    make: impl FnOnce(&Path) -> Result<(), NetError>,
) -> Result<Vec<String>, NetError> {
    // VLAN uplinks first (util-vserver made them too); only those we make are ours to remove.
    let mut made = Vec::new();
    for (dev, parent, id) in vlan_devs {
        if run(&s(&["ip", "link", "show", dev])).is_ok() {
            continue;
        }
        let r = run(&s(&[
            "ip",
            "link",
            "add",
            "link",
            parent,
            "name",
            dev,
            "type",
            "vlan",
            "id",
            &id.to_string(),
        ]))
        .and_then(|()| run(&s(&["ip", "link", "set", dev, "up"])));
        if let Err(e) = r {
            remove_links(&made);
            return Err(e);
        }
        made.push(dev.clone());
    }
    let r = (|| {
        if let Some(d) = ns.parent() {
            std::fs::create_dir_all(d).map_err(|e| NetError(format!("{}: {e}", d.display())))?;
        }
        std::fs::File::create(ns).map_err(|e| NetError(format!("{}: {e}", ns.display())))?;
        make(ns)?;
        let me = std::process::id();
        for c in setup_commands(ns, veth, me, ifs)
            .into_iter()
            .chain(pair_commands(ns, me, pairs))
        {
            run(&c)?;
        }
        Ok(())
    })();
    if let Err(e) = r {
        remove_links(&made);
        return Err(e);
    }
    Ok(made)
}

fn remove_links(links: &[String]) {
    for l in links {
        let _ = run(&s(&["ip", "link", "del", l]));
    }
}

/// Removes what `create` made; every step is tried, whatever failed before.
pub fn remove(ns: &Path, veths: &[String]) {
    // Deleting one end of a veth pair deletes both, and its host routes with it.
    for v in veths {
        let _ = run(&s(&["ip", "link", "del", v]));
    }
    let _ = nix::mount::umount2(ns, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(ns);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(id: &str, ip: &str, prefix: u8, dev: Option<&str>) -> Interface {
        Interface {
            id: id.into(),
            ip: ip.parse().unwrap(),
            prefix,
            dev: dev.map(String::from),
            name: Some("web".into()),
            bcast: None,
            scope: None,
            peer: None,
            mac: None,
            extip: None,
            nodev: false,
            down: false,
            vlandev: None,
            tun: false,
            tap: false,
        }
    }

    #[test]
    fn vlan_uplinks() {
        let mut a = iface("0", "192.0.2.1", 24, Some("eth0.12"));
        a.vlandev = Some(true);
        let b = iface("1", "192.0.2.2", 24, Some("eth0.13"));
        assert_eq!(
            vlans(&[a.clone(), b.clone()], None),
            vec![("eth0.12".into(), "eth0".into(), 12)]
        );
        assert_eq!(
            vlans(&[b], Some(true)),
            vec![("eth0.13".into(), "eth0".into(), 13)]
        );
        a.vlandev = Some(false);
        assert!(vlans(&[a], Some(true)).is_empty(), "novlandev wins");
    }

    #[test]
    fn commands_for_two_addresses_and_an_uplink() {
        let ns = Path::new("/run/vsd/netns/web");
        let c = setup_commands(
            ns,
            "vsd42",
            7,
            &[
                iface("0", "192.0.2.10", 24, Some("eth1")),
                iface("1", "2001:db8::10", 64, None),
            ],
        );
        let lines: Vec<String> = c.iter().map(|v| v.join(" ")).collect();
        let has = |l: &str| lines.iter().any(|x| x == l);
        assert!(has("nsenter --net=/run/vsd/netns/web -- ip link add eth0 type veth peer name vsd42 netns 7"));
        assert!(has(
            "nsenter --net=/run/vsd/netns/web -- ip addr add 192.0.2.10/24 label eth0:web dev eth0"
        ));
        assert!(has(
            "nsenter --net=/run/vsd/netns/web -- ip addr add 2001:db8::10/64 dev eth0 nodad"
        ));
        assert!(has("ip -4 route add 192.0.2.10/32 dev vsd42"));
        assert!(has("ip -6 route add 2001:db8::10/128 dev vsd42"));
        assert!(has("sysctl -q -w net/ipv4/conf/eth1/proxy_arp=1"));
        assert!(has(
            "nsenter --net=/run/vsd/netns/web -- ip -6 route add default via fe80::1 dev eth0"
        ));
        assert!(has("ip -6 addr add fe80::1/64 dev vsd42 nodad"));
        assert_eq!(host_veth(40000), "vsd40000");
    }
}
