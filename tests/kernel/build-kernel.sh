#!/usr/bin/env bash
# build-kernel.sh — builds, once, the kernel that knc.sh boots with
# `--kernel udp`: Debian's linux-source-6.1 (the same sources as Debian's
# kernel) configured with `make tinyconfig` plus tests/kernel/kernel-udp.config,
# everything built in. Debian's own kernel has NFS over UDP compiled out
# (CONFIG_NFS_DISABLE_UDP_SUPPORT=y); this one has it, for test_udp.sh.
#
#   tests/kernel/build-kernel.sh     prints the path of the kernel (an ELF
#                                    vmlinux with a PVH entry for QEMU -kernel)
#
# The result is cached in ${KNC_CACHE:-$HOME/.cache/basefs-knc}/kernel-udp/KEY/
# (vmlinux, config, build.log), KEY = the linux-source package version, the
# gcc version, the fragment's sha256 and $recipe below: a rerun reuses it, a
# change of any of them rebuilds (and drops the other builds). The build
# runs under `nice -n 19` with `make -j$(nproc)`: ~1000 objects, about 7
# CPU-minutes, so 4 to 6 minutes on this project's 2-core machine,
# extraction of the 140 MB tarball included. Needs (installed if missing, as
# root): linux-source-6.1 bc flex bison libelf-dev and build-essential.
# Progress goes to stderr; exit status 125 with the reason (and the build
# log's tail) when the kernel cannot be built.
set -euo pipefail

die() { echo "build-kernel: $*" >&2; exit 125; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
frag=$here/kernel-udp.config
src_pkg=linux-source-6.1
recipe=1 # bump when the build steps below change what they make
tarball=/usr/src/$src_pkg.tar.xz
cache=${KNC_CACHE:-$HOME/.cache/basefs-knc}
[[ -r $frag ]] || die "cannot read $frag"

# ---- host packages ----------------------------------------------------------
need=()
dpkg -s "$src_pkg" >/dev/null 2>&1 && [[ -r $tarball ]] || need+=("$src_pkg")
for pair in bc:bc flex:flex bison:bison make:build-essential gcc:build-essential; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
dpkg -s libelf-dev >/dev/null 2>&1 || need+=(libelf-dev) # objtool
if ((${#need[@]})); then
  ((EUID == 0)) || die "missing packages (run as root to install them): ${need[*]}"
  echo "build-kernel: apt-get install ${need[*]}" >&2
  { apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
  } >/dev/null || die "apt-get install ${need[*]} failed"
  [[ -r $tarball ]] || die "$src_pkg is installed but $tarball is missing"
fi

version=$(dpkg-query -W -f='${Version}' "$src_pkg")
key=$(printf '%s\n' "$recipe" "$version" "$(gcc -dumpfullversion)" "$(sha256sum < "$frag")" |
      sha256sum | cut -c1-16)
dir=$cache/kernel-udp/$key

mkdir -p "$cache/kernel-udp"
exec 9>"$cache/kernel-udp/.lock"
flock 9 # one build at a time; a second caller waits and reuses it
if [[ ! -f $dir/ready ]]; then
  # Other keys, and an earlier build that failed half-way (we hold the lock).
  find "$cache/kernel-udp" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} +
  tmp=$(mktemp -d "$cache/kernel-udp/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  log=$tmp/build.log
  t0=$EPOCHREALTIME
  echo "build-kernel: building the NFS-over-UDP test kernel from $src_pkg $version into $dir (once, a few minutes)" >&2
  nice -n 19 tar -xJf "$tarball" -C "$tmp" || die "cannot extract $tarball"
  srcdir=$(echo "$tmp"/linux-source-*)
  [[ -f $srcdir/Makefile ]] || die "no kernel tree in $tarball"
  mk() { nice -n 19 make -C "$srcdir" O="$tmp/out" "$@" >>"$log" 2>&1; }
  fail() { tail -n 30 "$log" >&2; die "$*"; }
  mk tinyconfig || fail "make tinyconfig failed"
  cat "$frag" >> "$tmp/out/.config"
  mk olddefconfig || fail "make olddefconfig failed"
  # Every line of the fragment must have survived olddefconfig (a symbol
  # whose dependencies are off is dropped without a word).
  while IFS= read -r line; do
    [[ $line =~ ^CONFIG_[A-Za-z0-9_]+= || $line =~ ^#\ CONFIG_[A-Za-z0-9_]+\ is\ not\ set$ ]] || continue
    if [[ $line == "#"* ]]; then
      sym=${line#\# }; sym=${sym%% *}
      ! grep -q "^$sym=" "$tmp/out/.config" || die "$sym is set in the final configuration, ${frag##*/} says it is not"
    else
      grep -qxF "$line" "$tmp/out/.config" || die "${frag##*/}: '$line' did not survive make olddefconfig (dependencies?): $(grep "${line%%=*}[= ]" "$tmp/out/.config" || echo unset)"
    fi
  done < "$frag"
  mk -j"$(nproc)" vmlinux || fail "make vmlinux failed (log: the lines above)"
  mkdir -p "$tmp/result"
  cp "$tmp/out/vmlinux" "$tmp/out/.config" "$log" "$tmp/result/"
  mv "$tmp/result/.config" "$tmp/result/config"
  printf '%s %s\n' "$src_pkg" "$version" > "$tmp/result/package"
  mv "$tmp/result" "$dir"
  touch "$dir/ready"
  rm -rf "$tmp"
  trap - EXIT
  echo "build-kernel: built in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.0f", b - a}') s" >&2
fi
echo "$dir/vmlinux"
