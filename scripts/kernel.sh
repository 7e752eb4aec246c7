#!/bin/bash
# Builds the VM tier's patched kernel: Debian 13's linux source package (the kernel the VM tier
# boots), the series in kernel-patch/ applied on top, a lean built-in config for the VM
# (kernel-patch/vm.config over x86_64 defconfig and kvm_guest.config), no modules, no debug
# info. Prints the bzImage's path. Cached under $CACHE/kernel-KEY, KEY the hash of the
# recipe (source version and checksums, every patch, the config fragment, this script's build
# function), so it is built once per change; object files are shared between builds through
# ccache ($CACHE/ccache), so a changed patch rebuilds what it touches, not the kernel.
#
#   bash scripts/kernel.sh           build if needed; print the image's path
#   bash scripts/kernel.sh --key     print the cache key only
#   bash scripts/kernel.sh --stock   the same source and config without the series (the VM
#                                    tier's "kernel without the series" case)
#
# docs/kernel-patch.md says what the series does; docs/vm-tier.md has the build times.
set -euo pipefail

CACHE=${VSERVERD_CACHE:-/var/cache/vserverd-test}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
REPO=$(cd "$(dirname "$0")/.." && pwd)
# Debian 13's kernel, as the VM tier's trixie image boots it (6.12.107+deb13).
PKG_VERSION=6.12.107-1
UPSTREAM=6.12.107
SOURCES=(
  "00f5874a383295a3237321cf59a0f172495084f16cb3dac24ee5aae6649d809a linux_6.12.107-1.dsc"
  "efc76d3c78a5d65f42724118c437d11db1c9f6309a5f024ee9a8b1978fdc6919 linux_6.12.107.orig.tar.xz"
  "d8c003ecac7c54f59c69dc61258f93d937dce90e70f53bb5a34dd58db13028ed linux_6.12.107-1.debian.tar.xz"
)

say() { echo "kernel: $*" >&2; }
die() { echo "kernel: $*" >&2; exit 1; }

stock=0
mode=build
for a in "$@"; do
  case $a in
    --stock) stock=1 ;;
    --key) mode=key ;;
    *) die "unknown argument $a" ;;
  esac
done

# The series, in the order of kernel-patch/series (empty with --stock).
series() {
  [ "$stock" = 1 ] && return 0
  grep -v '^\s*\(#\|$\)' "$REPO/kernel-patch/series"
}

# The config fragments: the VM's, and with the series the options it adds.
fragments() {
  echo "$REPO/kernel-patch/vm.config"
  [ "$stock" = 1 ] || echo "$REPO/kernel-patch/series.config"
}

# Configures and builds in $1 (the source tree) into $2 (the build tree).
build_kernel() {
  local src=$1 out=$2
  make -s -C "$src" O="$out" defconfig
  make -s -C "$src" O="$out" kvm_guest.config
  # shellcheck disable=SC2046 # one path a line, no spaces
  "$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" $(fragments) >/dev/null
  make -s -C "$src" O="$out" olddefconfig
  # Every option the fragment asks for must have survived olddefconfig (a dependency missing
  # drops it silently).
  local want got
  while read -r want; do
    got=$(grep -E "^(# )?${want%%=*}[= ]" "$out/.config" || true)
    case $want in
      *=n) [ -z "$got" ] || [ "$got" = "# ${want%%=*} is not set" ] ||
        die "config: $want wanted, $got got" ;;
      *) [ "$got" = "$want" ] || die "config: $want wanted, ${got:-nothing} got" ;;
    esac
  done < <(fragments | xargs grep -hE '^CONFIG_')
  make -C "$src" O="$out" -j"$(nproc)" CC="ccache gcc" KBUILD_BUILD_TIMESTAMP=vserverd \
    KBUILD_BUILD_USER=vserverd KBUILD_BUILD_HOST=vserverd bzImage >&2
}

key() {
  {
    echo "$PKG_VERSION"
    printf '%s\n' "${SOURCES[@]}"
    local p
    for p in $(series); do
      echo "patch $p"
      cat "$REPO/kernel-patch/$p"
    done
    fragments | xargs cat
    declare -f build_kernel fragments
  } | sha256sum | cut -c1-12
}

KEY=$(key)
if [ "$mode" = key ]; then
  echo "$KEY"
  exit 0
fi
DEST=$CACHE/kernel-$KEY
if [ -f "$DEST/bzImage" ]; then
  echo "$DEST/bzImage"
  exit 0
fi
# One build per key at a time (the suite and a test may both ask): the second waits and finds
# the first's image.
mkdir -p "$CACHE"
exec 9>"$CACHE/kernel-$KEY.lock"
flock 9
if [ -f "$DEST/bzImage" ]; then
  echo "$DEST/bzImage"
  exit 0
fi

# Build tools (a fresh Debian 12 has gcc and make from scripts/setup.sh).
need=()
for t in bison:bison flex:flex ccache:ccache bc:bc dpkg-source:dpkg-dev; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
[ -f /usr/include/libelf.h ] || need+=(libelf-dev)
[ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi

# The source package, fetched once and checked against the checksums above.
SRC=$CACHE/kernel-src
mkdir -p "$SRC"
for s in "${SOURCES[@]}"; do
  f=${s#* }
  if ! echo "$s" | (cd "$SRC" && sha256sum -c --status 2>/dev/null); then
    say "fetching $f"
    curl -fsS -m 1800 -o "$SRC/$f.part" "$MIRROR/pool/main/l/linux/$f"
    mv "$SRC/$f.part" "$SRC/$f"
    echo "$s" | (cd "$SRC" && sha256sum -c --status) || die "$f: checksum mismatch"
  fi
done

start=$(date +%s)
WORK=$CACHE/kernel-$KEY.tmp
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT
say "unpacking linux $PKG_VERSION (Debian's patches applied)"
dpkg-source --no-check -x "$SRC/linux_$PKG_VERSION.dsc" "$WORK/src" >/dev/null
for p in $(series); do
  say "applying $p"
  patch -s -p1 -d "$WORK/src" --fuzz=0 --no-backup-if-mismatch <"$REPO/kernel-patch/$p" ||
    die "$p does not apply to linux $PKG_VERSION"
done
export CCACHE_DIR=$CACHE/ccache
# The tree's path differs per build: hash relative paths so the cache still hits.
export CCACHE_BASEDIR=$WORK CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE=5G
say "building (cold: see docs/vm-tier.md; with a warm ccache a few minutes)"
build_kernel "$WORK/src" "$WORK/out"
mkdir -p "$WORK/dest"
cp "$WORK/out/arch/x86/boot/bzImage" "$WORK/dest/bzImage"
cp "$WORK/out/.config" "$WORK/dest/config"
series >"$WORK/dest/series" || true
echo "$(($(date +%s) - start))" >"$WORK/dest/build-seconds"
rm -rf "$DEST"
mv "$WORK/dest" "$DEST"
say "built in $(cat "$DEST/build-seconds") s: $DEST/bzImage"
echo "$DEST/bzImage"
