#!/usr/bin/env bash
# The kernel client over UDP (issue 5): `basefs serve` answers MOUNT and NFS
# on UDP on the same port as TCP; the guest mounts with proto=udp and
# mountproto=udp (a kernel without NFS over UDP — Debian's — mounts with
# mountproto=udp and NFS over TCP, and the test says so), reads what the host wrote, writes a 3000 KiB file and runs
# a burst of creates/renames/removes; the host then reads the guest's files
# through the CLI. One VM boot (guest half in guest-udp.sh).
#   BASEFS=build/basefs tests/kernel/test_udp.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

knc_init
"$B" mkdir t /udp
printf 'from the host' | "$B" put t /udp/host
serve_start
grep -q "TCP and UDP" "$T/serve.0.log" || fail "serve does not say it serves UDP"
guest_start "$here/guest-udp.sh"
wait_mark udp-done 180
if grep -qx "@@ nfs-udp-unsupported" "$T/out"; then
  note "the guest kernel has no NFS over UDP (CONFIG_NFS_DISABLE_UDP_SUPPORT): MOUNT was over UDP, NFS over TCP"
fi
sed -n 's/^M //p' "$T/out" > "$T/manifest"
check_manifest "$T/manifest"
[[ $("$B" ls t /udp) == $(printf '%s\n' big host small) ]] || fail "ls /udp: $("$B" ls t /udp | tr '\n' ' ')"
tell host-checked
guest_wait
grep '^ok ' "$T/out" | sed "s/^/$knc_name: guest: /"
serve_stop TERM
note "ok in $(elapsed) s"
