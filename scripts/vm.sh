#!/usr/bin/env bash
# The VM tier (docs/vm-tier.md): a Debian system under qemu (software emulation, no KVM) with
# systemd as PID 1 on pure cgroup v2, booted from an initramfs, that runs one test script and
# reports its output and exit code on a second serial port.
#
#   scripts/vm.sh image [SUITE]     build once (cached), print the image directory
#   scripts/vm.sh run [--suite SUITE] [--timeout SECS] [--console] [--keep] -- COMMAND [ARG...]
#                                   boot, run COMMAND as root in the VM (the project's binaries
#                                   in /test/bin, on PATH), print its output, exit with its code
#   scripts/vm.sh qemu KERNEL INITRD CONSOLE_LOG RESULT_LOG [KERNEL_ARG...]
#                                   exec qemu the way the tier boots (the Rust harness uses it)
#
# SUITE is trixie (Debian 13, kernel 6.12; the default) or bookworm (Debian 12, kernel 6.1).
#
# The image (cached, keyed by its recipe): debootstrap --variant=minbase of SUITE with systemd,
# udev, kmod, busybox-static, iproute2 and procps; Debian's cloud kernel of that suite, fetched
# with `apt-get download` from inside the tree and unpacked with its /lib/modules (depmod run);
# customise() below (rdinit, the test runner unit, masked gettys and timers). The tree is packed
# as an uncompressed newc cpio (base.cpio) next to the kernel (vmlinuz). Directory:
# $VSERVERD_CACHE/vm-SUITE-KEY/{vmlinuz,base.cpio,kernel-version,recipe,tree/}. The project's
# binaries are never in it: each run appends a second small cpio (/test: run.sh, bin/vserverd,
# bin/vserverctl, fixtures); the kernel unpacks concatenated archives one after the other.
#
# Boot: -kernel vmlinuz -initrd base.cpio+run.cpio, rdinit=/init-copy: the tree is copied into a
# tmpfs and switch_root'ed into (pivot_root(2) refuses to move away from the initramfs, which
# guests need), then systemd runs. vsd-test.service (after multi-user.target) runs
# /test/run.sh under `timeout` and writes, on ttyS1 only:
#   VSD-BEGIN <uptime>        the runner started
#   VSD-OUT: <line>           every line of the script's stdout+stderr
#   VSD-EXIT: <code>          the script's exit code (124: its in-VM timeout)
# then powers off (qemu runs with -no-reboot, so it exits). ttyS0 is the console (kernel and
# systemd, the script's lines echoed too). No network device at all (-nodefaults).
#
# Environment: VSERVERD_CACHE (/var/cache/vserverd-test), DEBIAN_MIRROR, VSERVERD_BIN,
# VSERVERCTL_BIN (binaries for `run`; default: the newer of target/release and target/debug).
set -euo pipefail

CACHE=${VSERVERD_CACHE:-/var/cache/vserverd-test}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
INCLUDE=systemd,udev,kmod,busybox-static,iproute2,procps
KERNEL_META=linux-image-cloud-amd64
RECIPE_VERSION=1
REPO=$(cd "$(dirname "$0")/.." && pwd)

say() { echo "vm: $*" >&2; }
die() { echo "vm: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# The recipe. Everything below down to the RECIPE line counts for the cache key (as bash prints
# the functions: comments and layout do not count).

# Fetches and unpacks the suite's cloud kernel into the tree $1, with its modules; prints its
# version. Runs apt inside the tree (debootstrap leaves the suite's package lists there).
fetch_kernel() {
  local root=$1 pkg deb kver
  pkg=$(chroot "$root" apt-cache depends --important "$KERNEL_META" |
    awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$pkg" ] || { echo "no kernel package behind $KERNEL_META" >&2; return 1; }
  mkdir -p "$root/tmp/kernel"
  chroot "$root" sh -c "cd /tmp/kernel && apt-get -q -o APT::Sandbox::User=root download $pkg" >&2 ||
    return 1
  deb=$(ls "$root"/tmp/kernel/*.deb) || return 1
  # Not dpkg-deb -x: its tar replaces the /lib -> usr/lib symlink of a merged-/usr tree with a
  # directory when the package ships /lib/modules (Debian 12's kernel does).
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$root" --keep-directory-symlink || return 1
  rm -rf "$root/tmp/kernel"
  kver=$(ls "$root/usr/lib/modules") || return 1
  [ -f "$root/boot/vmlinuz-$kver" ] || { echo "no /boot/vmlinuz-$kver in $pkg" >&2; return 1; }
  # Debian 12 ships its modules uncompressed (90 MB): xz them as Debian 13 does, for a smaller
  # initramfs (kmod reads them either way).
  find "$root/usr/lib/modules/$kver" -name '*.ko' -print0 |
    xargs -0 -r -n 64 -P 2 xz --check=crc32 || return 1
  chroot "$root" depmod -a "$kver" >&2 || return 1
  echo "$kver"
}

# Runs against the debootstrapped tree $1 (nothing mounted in it).
customise() {
  local root=$1 u
  echo vsd-vm >"$root/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\tvsd-vm\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
    >"$root/etc/hosts"
  : >"$root/etc/fstab"
  # Not a first boot (no systemd-firstboot prompts on the console).
  printf '%s\n' 5d1f3c0a8e7b4c2a9f6e1d0c3b2a4957 >"$root/etc/machine-id"

  # rdinit: the kernel runs it from the initramfs (rootfs). pivot_root(2) refuses to move away
  # from rootfs, so copy the tree into a tmpfs and switch_root into it (which also empties
  # rootfs, giving its memory back), then systemd.
  cat >"$root/init-copy" <<'EOF'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p /newroot
mount -t tmpfs -o mode=0755,size=75% tmpfs /newroot
for f in /* /.[!.]*; do
  case $f in /newroot | /proc | /sys | /dev | '/.[!.]*') continue ;; esac
  cp -a "$f" /newroot/
done
mkdir -p /newroot/proc /newroot/sys /newroot/dev
exec switch_root /newroot /lib/systemd/systemd
EOF
  chmod 0755 "$root/init-copy"

  # The runner: /test/run.sh once the system is up, framed output on ttyS1, then power off.
  mkdir -p "$root/usr/local/sbin"
  cat >"$root/usr/local/sbin/vsd-test-runner" <<'EOF'
#!/bin/bash
set -u
export PATH=/test/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
stty -F /dev/ttyS1 raw -echo 2>/dev/null
exec 3>/dev/ttyS1
t=$(sed -n 's/.*vsd\.timeout=\([0-9]*\).*/\1/p' /proc/cmdline)
printf 'VSD-BEGIN %s\n' "$(cut -d' ' -f1 /proc/uptime)" >&3
cd /test
timeout -k 5 "${t:-600}" /test/run.sh </dev/null 2>&1 |
  while IFS= read -r l || [ -n "$l" ]; do
    printf 'VSD-OUT: %s\n' "$l" >&3
    printf 'vsd-test: %s\n' "$l"
  done
rc=${PIPESTATUS[0]}
printf 'VSD-EXIT: %d\n' "$rc" >&3
printf 'vsd-test: exit %d after %s s of uptime\n' "$rc" "$(cut -d' ' -f1 /proc/uptime)"
exec 3>&-
systemctl poweroff -ff || echo o >/proc/sysrq-trigger
EOF
  chmod 0755 "$root/usr/local/sbin/vsd-test-runner"
  cat >"$root/etc/systemd/system/vsd-test.service" <<'EOF'
[Unit]
Description=vserverd VM tier: run /test/run.sh, report on ttyS1, power off
ConditionPathExists=/test/run.sh
After=multi-user.target

[Service]
Type=simple
ExecStart=/usr/local/sbin/vsd-test-runner
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
EOF
  mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
  ln -sfn ../vsd-test.service "$root/etc/systemd/system/multi-user.target.wants/vsd-test.service"

  # Nothing on the consoles but the boot log; no timers doing maintenance during a test.
  for u in serial-getty@ttyS0.service getty@tty1.service console-getty.service \
    getty-static.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
    fstrim.timer systemd-tmpfiles-clean.timer systemd-firstboot.service \
    systemd-random-seed.service; do
    ln -sfn /dev/null "$root/etc/systemd/system/$u"
  done
  # /etc and /var are up to date with /usr: no ldconfig or catalog rebuild at every boot.
  touch "$root/etc/.updated" "$root/var/.updated"

  # Smaller image, faster boot: no docs, manuals, locales, apt caches, kernel image.
  rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/lib/apt/lists/*_Packages "$root"/var/log/*.log "$root"/boot/*
}

# The tree $1 boots (the rdinit's shell, cp and switch_root, systemd) and has kernel $2's modules.
check() {
  local root=$1 kver=$2 m
  [ -L "$root/lib" ] || { echo "/lib is not the merged-/usr symlink" >&2; return 1; }
  chroot "$root" /bin/sh -c 'command -v cp && command -v switch_root' || return 1
  chroot "$root" /lib/systemd/systemd --version || return 1
  for m in veth bridge 8021q macvlan ipvlan dummy; do
    chroot "$root" modprobe -S "$kver" -n -q "$m" || { echo "no module $m" >&2; return 1; }
  done
}

# The tree $1 as an uncompressed newc cpio on stdout.
pack() {
  (cd "$1" && find . -mindepth 1 | cpio -o -H newc --quiet)
}

recipe() {
  local suite=$1
  printf '%s\n' "debootstrap --variant=minbase --include=$INCLUDE $suite $MIRROR" \
    "kernel $KERNEL_META v$RECIPE_VERSION"
  declare -f fetch_kernel customise check pack
}
# ---------------------------------------------------------------------------------------------

# Removes a directory left by an interrupted build; never crosses into a mount inside it.
discard() {
  [ -e "$1" ] || return 0
  findmnt -rn -o TARGET | grep -F "$1/" | sort -r | xargs -r -d '\n' umount -l || true
  rm -rf --one-file-system "$1"
}

check_suite() {
  case $1 in trixie | bookworm) ;; *) die "unknown suite $1 (trixie or bookworm)" ;; esac
}

# Builds (once) and prints the image directory of suite $1.
image() {
  local suite=${1:-trixie} key dir tmp log start kver
  check_suite "$suite"
  key=$(recipe "$suite" | sha256sum | cut -c1-12)
  dir=$CACHE/vm-$suite-$key
  if [ -f "$dir/.complete" ]; then
    echo "$dir"
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "building the image needs root"
  command -v debootstrap >/dev/null || die "debootstrap missing (scripts/setup.sh)"
  command -v cpio >/dev/null || die "cpio missing (scripts/setup.sh)"
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.vm-$suite-$key.lock"
  if ! flock -n 9; then
    say "waiting for another caller building $dir"
    flock 9
  fi
  if [ -f "$dir/.complete" ]; then # built while we waited
    echo "$dir"
    return 0
  fi
  start=$(date +%s)
  tmp=$dir.tmp
  discard "$tmp"
  discard "$dir"
  log=$CACHE/vm-$suite-$key.log
  mkdir -p "$tmp"
  say "building $dir (debootstrap $suite + kernel, about 1-3 min; log $log)"
  trap 'say "image build failed, see $log"; tail -n 20 "$log" >&2' EXIT
  debootstrap --variant=minbase --include="$INCLUDE" "$suite" "$tmp/tree" "$MIRROR" >"$log" 2>&1
  say "fetching the $suite cloud kernel"
  kver=$(fetch_kernel "$tmp/tree" 2>>"$log")
  cp "$tmp/tree/boot/vmlinuz-$kver" "$tmp/vmlinuz"
  echo "$kver" >"$tmp/kernel-version"
  customise "$tmp/tree" >>"$log" 2>&1
  check "$tmp/tree" "$kver" >>"$log" 2>&1
  say "packing the initramfs"
  pack "$tmp/tree" >"$tmp/base.cpio"
  recipe "$suite" >"$tmp/recipe"
  touch "$tmp/.complete"
  mv -T "$tmp" "$dir"
  trap - EXIT
  say "image $suite ready in $(($(date +%s) - start)) s: kernel $kver, $(du -sh "$dir/base.cpio" | cut -f1) initramfs"
  echo "$dir"
}

# Exec's qemu: kernel $1, initrd $2, console log $3, result log $4 (ttyS1), extra kernel args.
qemu() {
  [ $# -ge 4 ] || die "usage: vm.sh qemu KERNEL INITRD CONSOLE_LOG RESULT_LOG [KERNEL_ARG...]"
  local kernel=$1 initrd=$2 console=$3 result=$4
  shift 4
  command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing (scripts/setup.sh)"
  # No -enable-kvm: /dev/kvm on these machines does not work (docs/vm-tier.md).
  # -cx16: Debian 12's qemu (7.2) mistranslates the kernel's per-cpu `cmpxchg16b %gs:(…)` (SLUB's
  # fast path) now and then under TCG: garbage EFLAGS, then "double fault" in
  # __kmalloc_noprof, in about 1 boot of 3 (measured). Without CX16 the kernel takes the
  # emulated path: no crash in N boots.
  # thread=single: with one host thread per vCPU (MTTCG), a vCPU can run a stale translation
  # of code another vCPU just patched; the kernel's boot-time text patching (int3, then the
  # new bytes) then dies with "Oops: int3" in a static branch (seen in CI: sched_clock_cpu,
  # 1 boot in 4). Round-robin vCPUs in one thread make cross-modified code coherent again.
  # no_timer_check: the kernel's early check that the 8254 timer reaches the IO-APIC counts
  # ticks over a busy-wait; a TCG vCPU starved by a loaded host sees too few and the kernel
  # panics ("IO-APIC + timer doesn't work!", seen on the patched kernel with a kernel build
  # beside it). The timer works; the check is what virtual machines skip.
  # shellcheck disable=SC2086 # VSD_QEMU_ARGS: extra qemu arguments, split on spaces
  exec qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot \
    -machine pc -accel tcg,thread=single -cpu qemu64,-cx16 -m 2048 -smp 2 ${VSD_QEMU_ARGS:-} \
    -serial "file:$console" -serial "file:$result" \
    -kernel "$kernel" -initrd "$initrd" \
    -append "rdinit=/init-copy console=ttyS0,115200 loglevel=4 panic=-1 no_timer_check systemd.unified_cgroup_hierarchy=1 systemd.show_status=1 systemd.log_color=0 $*"
}

# The newer of target/release/$1 and target/debug/$1.
project_binary() {
  local r=$REPO/target/release/$1 d=$REPO/target/debug/$1
  if [ -x "$r" ] && { [ ! -x "$d" ] || [ "$r" -nt "$d" ]; }; then
    echo "$r"
  elif [ -x "$d" ]; then
    echo "$d"
  fi
}

# Globals of `run`, for its EXIT trap.
work='' qpid='' tailpid='' keep=no
cleanup() {
  [ -z "$qpid" ] || kill "$qpid" 2>/dev/null || true # timeout(1) passes it on to qemu
  [ -z "$tailpid" ] || kill "$tailpid" 2>/dev/null || true
  [ -z "$work" ] || [ $keep = yes ] || rm -rf "$work"
}

run() {
  local suite=trixie timeout=600 show_console=no
  while [ $# -gt 0 ]; do
    case $1 in
      --suite) suite=$2; shift 2 ;;
      --timeout) timeout=$2; shift 2 ;;
      --console) show_console=yes; shift ;;
      --keep) keep=yes; shift ;;
      --) shift; break ;;
      *) break ;;
    esac
  done
  [ $# -gt 0 ] || die "usage: vm.sh run [--suite S] [--timeout SECS] [--console] [--keep] -- COMMAND..."
  local img start rc b src code ms
  img=$(image "$suite")
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  work=$(mktemp -d /tmp/vsd-vm.XXXXXX)
  mkdir -p "$work/cpio/test/bin"
  # printf %q quotes for bash.
  printf '#!/bin/bash\nexec %s\n' "$(printf '%q ' "$@")" >"$work/cpio/test/run.sh"
  chmod 0755 "$work/cpio/test/run.sh"
  for b in vserverd vserverctl; do
    if [ $b = vserverd ]; then src=${VSERVERD_BIN:-$(project_binary $b)}; else src=${VSERVERCTL_BIN:-$(project_binary $b)}; fi
    [ -n "$src" ] || { say "no $b built (cargo build --workspace): not in /test/bin"; continue; }
    strip --strip-debug -o "$work/cpio/test/bin/$b" "$src" 2>/dev/null || cp "$src" "$work/cpio/test/bin/$b"
  done
  cp "$REPO/scripts/busybox-guest.sh" "$work/cpio/test/"
  (cd "$work/cpio" && find . -mindepth 1 | cpio -o -H newc --quiet -R 0:0) >"$work/run.cpio"
  cat "$img/base.cpio" "$work/run.cpio" >"$work/initrd"
  : >"$work/console.log"
  : >"$work/result.log"
  start=$(date +%s%N)
  if [ $show_console = yes ]; then
    tail -F -n +1 "$work/console.log" 2>/dev/null >&2 &
    tailpid=$!
  fi
  # Hard timeout for qemu itself: the script's own, plus time to boot.
  timeout -k 5 $((timeout + 180)) bash "$0" qemu "$img/vmlinuz" "$work/initrd" \
    "$work/console.log" "$work/result.log" "vsd.timeout=$timeout" &
  qpid=$!
  rc=0
  wait $qpid || rc=$?
  qpid=''
  tr -d '\r' <"$work/result.log" | sed -n 's/^VSD-OUT: //p'
  code=$(tr -d '\r' <"$work/result.log" | sed -n 's/^VSD-EXIT: \([0-9]*\)$/\1/p')
  ms=$((($(date +%s%N) - start) / 1000000))
  say "$suite: $((ms / 1000)).$((ms % 1000 / 100)) s, qemu exit $rc, console log $work/console.log$([ $keep = yes ] || echo ' (removed; --keep keeps it)')"
  if [ -z "$code" ]; then
    say "no result from the VM (qemu exit $rc); console log tail:"
    tail -n 40 "$work/console.log" >&2
    return 125
  fi
  return "$code"
}

case ${1:-} in
  image) shift; image "$@" ;;
  run) shift; run "$@" ;;
  qemu) shift; qemu "$@" ;;
  recipe) shift; recipe "${1:-trixie}" ;;
  *) die "usage: vm.sh image [SUITE] | run [--suite SUITE] ... -- COMMAND | qemu ... (see the header)" ;;
esac
