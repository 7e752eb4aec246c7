//! Networking that needs the VM tier's kernel (Debian 13, with 8021q and dummy): a guest whose
//! uplink is an 802.1q device (`dev eth0.12` + `vlandev`) gets that VLAN device made, used for
//! proxy ARP, and removed at stop.

use harness::vm::{self, Vm};

const SCRIPT: &str = r#"#!/bin/bash
set -euo pipefail
step() { echo "== $*"; }
fail() { echo "FAILED: $*"; journalctl -b --no-pager -o cat -u vserverd.service | tail -30; exit 1; }
wait_for() { local t=$1 what=$2 i; shift 2
  for ((i = 0; i < t * 5; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  fail "$what: not after $t s"; }

ip link add up0 type dummy && ip link set up0 up
ip addr add 10.88.255.1/32 dev lo
systemd-run --quiet --unit=vserverd --property=Delegate=yes --property=KillMode=process \
  /test/bin/vserverd --config-root /etc/vservers --vdir-base /vservers --run-dir /run/vserverd
wait_for 30 "the daemon" vserverctl list
vserverctl start vl
ip -d link show up0.12 | grep -q 'vlan protocol 802.1Q id 12' || fail "no VLAN device up0.12: $(ip -d link show up0.12 2>&1)"
[ "$(sysctl -n net.ipv4.conf.up0/12.proxy_arp)" = 1 ] || fail "no proxy ARP on up0.12"
[ "$(sysctl -n net.ipv4.ip_forward)" = 1 ] || fail "forwarding off"
ip route get 10.88.0.2 | grep -q vsd4401 || fail "no host route: $(ip route get 10.88.0.2)"
mkdir -p /vservers/vl/www && echo "this is vl" > /vservers/vl/www/index.html
vserverctl exec vl -- httpd -p 80 -h /www
[ "$(busybox wget -q -O - http://10.88.0.2/)" = "this is vl" ] || fail "the host cannot reach the guest"
step "vlandev: up0.12 made (802.1Q id 12), proxy ARP and forwarding on it, guest reached"
vserverctl stop vl
! ip link show up0.12 >/dev/null 2>&1 || fail "up0.12 left behind"
! ip link show vsd4401 >/dev/null 2>&1 || fail "vsd4401 left behind"
step "stop removed the VLAN device and the veth"
step "NETWORK OK"
"#;

#[test]
fn vlandev_uplink_in_the_vm() {
    if !vm::ready("trixie") {
        return;
    }
    let run = Vm::new("trixie")
        .label("network-trixie")
        .project_binaries()
        .busybox_guest("vl", 4401)
        .file("/etc/vservers/vl/apps/vserverd/netmode", "netns\n", 0o644)
        .file("/etc/vservers/vl/interfaces/0/ip", "10.88.0.2\n", 0o644)
        .file("/etc/vservers/vl/interfaces/0/prefix", "24\n", 0o644)
        .file("/etc/vservers/vl/interfaces/0/dev", "up0.12\n", 0o644)
        .file("/etc/vservers/vl/interfaces/0/vlandev", "", 0o644)
        .timeout(std::time::Duration::from_secs(240))
        .run(SCRIPT)
        .unwrap_or_else(|e| panic!("{e}"));
    run.assert_success();
    assert!(run.output.contains("NETWORK OK"), "{}", run.report());
    vm::say(&format!(
        "network (trixie): passed in {:.1} s\n{}",
        run.elapsed.as_secs_f64(),
        run.output.trim_end()
    ));
}
