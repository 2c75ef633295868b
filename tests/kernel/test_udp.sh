#!/usr/bin/env bash
# The kernel client over UDP (issue 5): `basefs serve` answers MOUNT and NFS
# on UDP on the same port as TCP; the guest mounts with proto=udp and
# mountproto=udp and must get a UDP mount (in /proc/mounts, rsize/wsize at
# most 32 KiB), reads what the host wrote, writes a 3000 KiB file and runs
# a burst of creates/renames/removes; then mounts with proto=tcp,
# mountproto=udp (what kernels without NFS over UDP do); the host reads the
# guest's files through the CLI. One VM boot (guest half in guest-udp.sh).
#
# Debian's kernel has NFS over UDP compiled out, so this test boots the
# kernel tests/kernel/build-kernel.sh builds from Debian's linux-source
# (knc.sh --kernel udp); the first run builds it (a few minutes, cached in
# ${KNC_CACHE:-~/.cache/basefs-knc}). When it cannot be built, the test
# fails.
#   BASEFS=build/basefs tests/kernel/test_udp.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# Built before anything starts: the guest's timeouts do not include it.
kernel=$("$here/build-kernel.sh") || fail "cannot build the kernel with NFS over UDP (build-kernel.sh above)"
note "kernel: $kernel"
export KNC_KERNEL=udp

knc_init
"$B" mkdir t /udp
printf 'from the host' | "$B" put t /udp/host
serve_start
grep -q "TCP and UDP" "$T/serve.0.log" || fail "serve does not say it serves UDP"
guest_start "$here/guest-udp.sh"
wait_mark udp-done 180
sed -n 's/^M //p' "$T/out" > "$T/manifest"
check_manifest "$T/manifest"
[[ $("$B" ls t /udp) == $(printf '%s\n' big host small) ]] || fail "ls /udp: $("$B" ls t /udp | tr '\n' ' ')"
tell host-checked
guest_wait
grep '^ok \|^mounts: ' "$T/out" | sed "s/^/$knc_name: guest: /"
serve_stop TERM
note "ok in $(elapsed) s"
