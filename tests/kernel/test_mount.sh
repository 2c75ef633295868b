#!/usr/bin/env bash
# basefs inside the guest, whose kernel has the NFS client (one VM boot, no
# server on the host; guest half in guest-mount.sh, which has the details):
#  1. `basefs mount t DIR`: writes through the kernel mount are read back
#     with the CLI and the other way round; SIGINT unmounts DIR, stops the
#     server and exits 0.
#  2. `basefs serve t --portmap`: the kernel, and mount.nfs (copied from the
#     host if it has one) with the plain `mount -t nfs -o vers=3,nolock
#     localhost:/basefs DIR`, mount with no port options (PMAP on port 111);
#     without the port mapper the same mount fails.
#   BASEFS=build/basefs tests/kernel/test_mount.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

guest_start_local "$here/guest-mount.sh"
wait_mark mount-done 220
guest_wait
grep '^ok \|^without a port mapper' "$T/out" | sed "s/^/$knc_name: guest: /"
note "ok in $(elapsed) s"
