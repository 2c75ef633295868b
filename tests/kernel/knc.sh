#!/usr/bin/env bash
# knc.sh — run a shell script against our NFS server through the real Linux
# kernel NFS client, in a throw-away QEMU VM (this machine's kernel has no
# NFS client).
#
#   tests/kernel/knc.sh --port P [--timeout S] [--no-mount] [--opts O] [--out FILE]
#                       [--bin FILE]... [--kernel debian|udp] SCRIPT [ARG...]
#   tests/kernel/knc.sh --no-mount --bin FILE... SCRIPT [ARG...]
#   tests/kernel/knc.sh --prepare
#
# The server listens on the host's 127.0.0.1:P (NFS and MOUNT on one port,
# TCP). The guest boots Debian's kernel with a busybox initramfs, reaches
# the host's loopback as 10.0.2.2 through QEMU's user-mode network, mounts
# 10.0.2.2:/basefs on /mnt with
#   vers=3,proto=tcp,nolock,port=P,mountport=P,mountproto=tcp[,O]
# and runs SCRIPT with busybox sh in /mnt (KNC_SERVER, KNC_PORT, KNC_OPTS
# are set for scripts that mount by themselves with --no-mount; PID 1 stays
# in /, so the script may umount and mount again). Then it syncs, unmounts
# and powers off.
#
# --bin FILE (repeatable) copies the executable FILE into the guest's /bin
# under its own name (on PATH; it replaces a busybox applet of that name),
# with the shared libraries `ldd FILE` lists and the dynamic loader at their
# host paths — to run a program (basefs itself, mount.nfs) inside the guest.
# With --no-mount and --bin, --port may be left out (no server on the
# host). Every guest has what such programs expect: HOME=/root on a tmpfs
# of its own, /tmp writable (the initramfs), /proc, /sys and /dev (urandom)
# mounted, lo up (127.0.0.1 and ::1), /etc/hosts naming localhost for both,
# /etc/nsswitch.conf ("files"), /etc/passwd and /etc/group with root,
# /etc/mtab linked to /proc/self/mounts, and the host's /etc/netconfig if
# it has one (libtirpc). tests/kernel/test_mount.sh runs basefs this way.
#
# --kernel udp (or KNC_KERNEL=udp) boots, instead of Debian's kernel, the
# one tests/kernel/build-kernel.sh builds from Debian's linux-source with
# NFS over UDP (Debian's kernel has it compiled out), everything built in
# (kernel-udp.config); the first run builds it (minutes, cached). The
# default, --kernel debian, is the kernel users run.
#
# --prepare only installs what is missing and fills the cache (below), then
# exits: what a caller runs before entering a network namespace, where
# apt-get cannot download (tests/kernel/lib.sh does).
#
# The suites built on it: tests/kernel/test_*.sh (ctest, label "slow"), with
# lib.sh (host side: serve, boot, markers, CLI checks) and guest-*.sh (the
# guest halves). tests/kernel/smoke.sh is the minimal example.
#
# Output: the script's stdout and stderr (merged) on stdout once the VM has
# stopped; with --out FILE, into FILE as the guest writes it (a test on the
# host can watch it for marker lines while the guest runs) and not on
# stdout. Exit status: the script's; 124 on timeout (default 120 s); 125
# when the harness itself failed (reason and the guest console's tail on
# stderr). KNC_VERBOSE=1 prints timings and the whole console.
#
# First run (as root): installs qemu-system-x86, kmod, xz-utils and cpio
# if missing, and fetches the kernel image package that linux-image-amd64
# depends on plus busybox-static with `apt-get download` into the cache
# (${KNC_CACHE:-$HOME/.cache/basefs-knc}); the host's kernel is untouched.
# The kernel's build configuration is kept there as kernel/config.
set -euo pipefail

die() { echo "knc: $*" >&2; exit 125; }
say() { [[ ${KNC_VERBOSE:-0} == 1 ]] && echo "knc: $*" >&2 || true; }

port="" timeout=120 mount=1 opts="" keep=0 outfile="" bins=() kind=${KNC_KERNEL:-debian} prepare_only=0
while (($#)); do
  case $1 in
    --port) port=${2:?}; shift 2 ;;
    --timeout) timeout=${2:?}; shift 2 ;;
    --no-mount) mount=0; shift ;;
    --opts) opts=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    --out) outfile=${2:?}; shift 2 ;;
    --bin) bins+=("${2:?}"); shift 2 ;;
    --kernel) kind=${2:?}; shift 2 ;;
    --prepare) prepare_only=1; shift ;;
    -h|--help) sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
done
if ((prepare_only)); then
  (($# == 0)) || die "--prepare takes no script"
else
  (($# >= 1)) || die "usage: knc.sh --port P SCRIPT [ARG...]"
  script=$1; shift
  [[ -r $script ]] || die "cannot read $script"
  ((mount == 0 && ${#bins[@]} > 0)) && [[ -z $port ]] && port=0
  [[ $port =~ ^[0-9]+$ ]] || die "--port P is required"
fi
for b in "${bins[@]}"; do
  [[ -f $b && -x $b ]] || die "--bin $b: not an executable file"
done
[[ $timeout =~ ^[0-9]+$ ]] || die "--timeout takes seconds"
[[ $kind == debian || $kind == udp ]] || die "--kernel takes debian or udp, not '$kind'"

cache=${KNC_CACHE:-$HOME/.cache/basefs-knc}

# ---- host packages --------------------------------------------------------
need=()
for pair in qemu-system-x86_64:qemu-system-x86 modinfo:kmod xz:xz-utils cpio:cpio; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  ((EUID == 0)) || die "missing packages (run as root to install): ${need[*]}"
  echo "knc: apt-get install ${need[*]}" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${need[@]}"; } >/dev/null || die "apt-get install failed"
fi

# ---- the cache: kernel, modules, busybox ------------------------------------
# fetch PACKAGE DIR: apt-get download PACKAGE and unpack it into DIR/x.
fetch() {
  local as_root=()
  ((EUID == 0)) && as_root=(-o APT::Sandbox::User=root)
  (cd "$2" && apt-get download -qq "${as_root[@]}" "$1" >/dev/null 2>&1) ||
    { apt-get update -qq >/dev/null 2>&1 || true
      (cd "$2" && apt-get download -qq "${as_root[@]}" "$1" >/dev/null) ; } ||
    die "apt-get download $1 failed"
  dpkg-deb -x "$2"/"$1"_*.deb "$2/x"
}

# The modules the guest needs, dependencies first, decompressed into $2.
modules() {
  local moddir order=() m dest=$2
  moddir=$(echo "$1"/lib/modules/*)
  declare -A file=() done=()
  while IFS= read -r f; do m=${f##*/}; m=${m%%.ko*}; file[${m//-/_}]=$f; done \
    < <(find "$moddir" -name '*.ko*')
  add() {
    local m=${1//-/_} dep
    [[ -n ${done[$m]:-} ]] && return
    done[$m]=1
    if [[ -z ${file[$m]:-} ]]; then
      grep -q "/${m}.ko\|/${m//_/-}.ko" "$moddir/modules.builtin" || die "no module $m"
      return
    fi
    case ${file[$m]} in
      *.xz) xz -dc "${file[$m]}" > "$dest/$m.ko" ;;
      *) cp "${file[$m]}" "$dest/$m.ko" ;;
    esac
    for dep in $(modinfo -F depends "$dest/$m.ko" | tr , ' '); do add "$dep"; done
    order+=("$m")
  }
  for m in virtio_pci virtio_net nfsv3; do add "$m"; done
  printf '%s\n' "${order[@]}" > "$dest/order"
}

prepare() {
  [[ -f $cache/ready ]] && return
  local tmp pkg
  rm -rf "$cache"/.tmp.*  # an earlier run that failed half-way (we hold the lock)
  tmp=$(mktemp -d "$cache/.tmp.XXXXXX")
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
  [[ -n $pkg ]] || { apt-get update -qq >/dev/null 2>&1 || true
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}'); }
  [[ $pkg == linux-image-6.1.0-*-amd64 ]] || die "cannot tell the kernel package (got '$pkg')"
  echo "knc: fetching $pkg and busybox-static into $cache (once)" >&2
  mkdir -p "$tmp/k" "$tmp/b" "$tmp/out/modules"
  fetch "$pkg" "$tmp/k"
  fetch busybox-static "$tmp/b"
  cp "$tmp"/k/x/boot/vmlinuz-* "$tmp/out/vmlinuz"
  cp "$tmp"/k/x/boot/config-* "$tmp/out/config" # what it was built with (NFS over UDP?)
  # Under TCG the bzImage spends seconds decompressing itself; a kernel
  # built with a PVH entry boots straight from its ELF image instead.
  if grep -q '^CONFIG_PVH=y' "$tmp"/k/x/boot/config-*; then
    local off
    off=$(LC_ALL=C grep -obUaP '\xFD7zXZ\x00' "$tmp/out/vmlinuz" | head -n 1 | cut -d: -f1) || true
    # xz complains about what follows the stream; the ELF check decides.
    [[ -n $off ]] && { tail -c "+$((off + 1))" "$tmp/out/vmlinuz" | xz -dc > "$tmp/out/vmlinux"; } 2>/dev/null || true
    [[ $(head -c 4 "$tmp/out/vmlinux" 2>/dev/null | od -An -c | tr -d ' ') == 177ELF ]] ||
      rm -f "$tmp/out/vmlinux"
  fi
  modules "$tmp/k/x" "$tmp/out/modules"
  cp "$tmp/b/x/bin/busybox" "$tmp/out/busybox"
  echo "$pkg" > "$tmp/out/package"
  rm -rf "$cache/kernel" && mv "$tmp/out" "$cache/kernel" && rm -rf "$tmp"
  touch "$cache/ready"
}

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
prepare
exec 9>&-
((prepare_only)) && exit 0
k=$cache/kernel
kernel=$k/vmlinuz
[[ -f $k/vmlinux ]] && kernel=$k/vmlinux
if [[ $kind == udp ]]; then
  kernel=$("$(dirname "${BASH_SOURCE[0]}")/build-kernel.sh") || die "no kernel with NFS over UDP (build-kernel.sh failed)"
fi

# ---- the initramfs --------------------------------------------------------
run=$(mktemp -d "${TMPDIR:-/tmp}/knc.XXXXXX")
qemu_pid=""
cleanup() {
  [[ -n $qemu_pid ]] && kill -9 "$qemu_pid" 2>/dev/null || true
  if ((keep)); then echo "knc: kept $run" >&2; else rm -rf "$run"; fi
}
trap cleanup EXIT
# A signal ends the run through the EXIT trap, so QEMU never outlives us.
trap 'exit 143' TERM INT HUP

root=$run/root
mkdir -p "$root"/{bin,dev,proc,sys,mnt,tmp,mods}
cp "$k/busybox" "$root/bin/busybox"
for a in $("$k/busybox" --list); do [[ $a == busybox ]] || ln -s busybox "$root/bin/$a"; done
if [[ $kind == debian ]]; then
  cp "$k"/modules/*.ko "$k/modules/order" "$root/mods/"
else
  : > "$root/mods/order" # everything is built in
fi
cp "$script" "$root/script"
# What programs other than busybox expect of a system (see the header).
mkdir -p "$root"/{etc,root}
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
printf 'passwd: files\ngroup: files\nhosts: files\n' > "$root/etc/nsswitch.conf"
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
ln -s /proc/self/mounts "$root/etc/mtab"
[[ -r /etc/netconfig ]] && cp /etc/netconfig "$root/etc/netconfig"
# --bin: the executable, then its libraries and loader at their host paths
# (the loader searches /lib/<triplet> and /usr/lib/<triplet> by itself).
for b in "${bins[@]}"; do
  rm -f "$root/bin/${b##*/}"
  cp -L "$b" "$root/bin/${b##*/}"
  libs=$(ldd "$b" 2>&1) || { [[ $libs == *"not a dynamic executable"* ]] || die "ldd $b: $libs"; libs=""; }
  [[ $libs != *"not found"* ]] || die "--bin $b: missing libraries: $(grep 'not found' <<< "$libs" | tr -s ' \t\n' ' ')"
  for lib in $(awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<< "$libs"); do
    [[ -e $root$lib ]] && continue
    mkdir -p "$root${lib%/*}"
    cp -L "$lib" "$root$lib"
  done
done
mount_opts="vers=3,proto=tcp,nolock,addr=10.0.2.2,port=$port,mountaddr=10.0.2.2,mountport=$port,mountproto=tcp${opts:+,$opts}"
{
  printf 'KNC_SERVER=10.0.2.2\nKNC_PORT=%s\nKNC_OPTS=%q\nKNC_MOUNT=%s\n' "$port" "$mount_opts" "$mount"
  printf 'set --'; for a in "$@"; do printf ' %q' "$a"; done; echo
} > "$root/env"
# PID 1. ttyS0: console; ttyS1: the script's output; ttyS2: "rc N" or "error ...".
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
export PATH=/bin HOME=/root
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs -o mode=700 home /root
exec >/dev/ttyS0 2>&1
. /env
stty -F /dev/ttyS1 raw -echo; stty -F /dev/ttyS2 raw -echo
up() { echo "knc: $* at $(cut -d' ' -f1 /proc/uptime)s"; }
# reboot, not poweroff: QEMU runs with -no-reboot, so it exits, and the
# --kernel udp kernel has no ACPI to power off with (it would halt).
end() { up "$1"; echo "$1" > /dev/ttyS2; reboot -f; }
up init
while read -r m; do insmod /mods/$m.ko || end "error insmod $m"; done < /mods/order
i=0; until ip link set eth0 up 2>/dev/null; do i=$((i+1)); [ $i -lt 200 ] || end "error no eth0"; usleep 20000; done
ip addr add 10.0.2.15/24 dev eth0
ip link set lo up
cd /
dir=/
if [ "$KNC_MOUNT" = 1 ]; then
  mount -t nfs -o "$KNC_OPTS" "$KNC_SERVER:/basefs" /mnt || end "error mount failed"
  dir=/mnt
fi
up "script starts"
export KNC_SERVER KNC_PORT KNC_OPTS
# In a subshell: PID 1 keeps / as its directory, so the script may umount.
(cd $dir && exec sh /script "$@") </dev/null >/dev/ttyS1 2>&1
rc=$?
up "script done"
sync
grep -q ' nfs ' /proc/mounts && umount -a -t nfs
end "rc $rc"
INIT
chmod 755 "$root/init"
(cd "$root" && find . | cpio -o -H newc -R 0:0 --quiet > "$run/initrd") || die "cpio failed"

# ---- the VM ----------------------------------------------------------------
# Hardware KVM only (a /dev/kvm of a nested sandbox may not run a stock
# kernel); TCG otherwise.
accel=tcg
[[ -w /dev/kvm && ( -d /sys/module/kvm_intel || -d /sys/module/kvm_amd ) ]] && accel=kvm
: > "$run/console"; : > "$run/status"
out=${outfile:-$run/out}
: > "$out"
t0=$EPOCHREALTIME
qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot \
  -machine pc -accel "$accel" -cpu max -m 384 -smp 1 \
  -kernel "$kernel" -initrd "$run/initrd" \
  -append "console=ttyS0 panic=-1 quiet loglevel=4 rdinit=/init" \
  -netdev user,id=n0,net=10.0.2.0/24,host=10.0.2.2,ipv6=off \
  -device virtio-net-pci,netdev=n0,romfile= \
  -serial "file:$run/console" -serial "file:$out" -serial "file:$run/status" \
  </dev/null >"$run/qemu.log" 2>&1 &
qemu_pid=$!
deadline=$((${EPOCHREALTIME%.*} + timeout))
while kill -0 "$qemu_pid" 2>/dev/null; do
  if ((${EPOCHREALTIME%.*} >= deadline)); then
    kill -9 "$qemu_pid"; wait "$qemu_pid" 2>/dev/null || true; qemu_pid=""
    [[ -n $outfile ]] || cat "$out"
    tail -n 30 "$run/console" >&2
    echo "knc: timeout after ${timeout}s" >&2
    exit 124
  fi
  sleep 0.1
done
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=""
[[ -n $outfile ]] || cat "$out"
status=$(tr -d '\r' < "$run/status")
say "accel=$accel wall=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')s;" \
    "$(grep -a '^knc:' "$run/console" | tr -d '\r' | tr '\n' ' ')"
[[ ${KNC_VERBOSE:-0} == 1 ]] && tr -d '\r' < "$run/console" >&2
case $status in
  "rc "*) exit "${status#rc }" ;;
  *) tail -n 30 "$run/console" | tr -d '\r' >&2
     sed 's/^/qemu: /' "$run/qemu.log" >&2
     die "${status:-the VM stopped without a status}" ;;
esac
