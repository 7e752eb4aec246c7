#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine (as root): install what is needed, build, start
# vserverd, create the demo guest `test` (busybox) and start it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo build --release --locked -p vserverd -p vserverctl
install -m 0755 target/release/vserverd target/release/vserverd-stage target/release/vserverctl /usr/local/bin/
# util-vserver's command names, for existing scripts (docs/compat.md): `vserver NAME start`,
# `vserver-stat`, vps, vkill, … Each is a link to vserverctl, which acts by the name it is
# called by. vserverctl/links lists them (the Debian package reads it too).
for n in $(sed -e 's/#.*//' vserverctl/links); do
  ln -sfn vserverctl "/usr/local/bin/$n"
done

if [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ]; then
  install -m 0644 systemd/vserverd.socket systemd/vserverd.service \
    systemd/vserverd-autostart.service systemd/vserver@.service /etc/systemd/system/
  systemctl daemon-reload
  systemctl enable --now vserverd.socket
  # Guests marked `default` start at boot, after the network, and stop in reverse at shutdown.
  systemctl enable vserverd-autostart.service
  systemctl restart vserverd.service
else
  # No systemd as PID 1 (containers, CI sandboxes): run the daemon in the background.
  if ! vserverctl list >/dev/null 2>&1; then
    mkdir -p /run/vserverd /var/log
    nohup /usr/local/bin/vserverd >>/var/log/vserverd.log 2>&1 &
    for _ in $(seq 100); do vserverctl list >/dev/null 2>&1 && break; sleep 0.1; done
  fi
fi

# The demo guest: a busybox-static system, config tree as util-vserver's build writes it.
if [ ! -d /etc/vservers/test ]; then
  bash scripts/busybox-guest.sh test 40000 /etc/vservers /vservers
fi

vserverctl check test
vserverctl start test            # "already running" (exit 0) when it runs from an earlier demo
vserverctl status test
vserverctl exec test -- sh -c 'echo "inside $(hostname): $(ps | wc -l) lines of ps"'
vserverctl list
