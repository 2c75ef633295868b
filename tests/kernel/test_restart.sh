#!/usr/bin/env bash
# A server restart under a mounted Linux kernel client (one VM boot, guest
# half in guest-restart.sh):
#  1. SIGTERM while the guest holds open files and a working directory on
#     the mount: after the restart the same descriptors, the cwd and renames
#     work (handles survive restarts).
#  2. SIGKILL while the guest streams UNSTABLE writes: the new server's
#     write verifier makes the client resend what was not committed; the
#     file reads back whole (sha256) in the guest and through the CLI.
# While the server is down the host writes /knc/msg offline with the CLI;
# the guest waits for it, which also shows offline changes reach a mounted
# client after a restart.
#   BASEFS=build/basefs tests/kernel/test_restart.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

knc_init
serve_start
guest_start "$here/guest-restart.sh"

wait_mark restart-term
serve_stop TERM
tell restarted-1
serve_start "$port"
note "SIGTERM restart done at $(elapsed) s"

wait_mark kill-now
# Kill once WRITEs stream in: the staged file has grown past 8 MiB.
deadline=$((${EPOCHREALTIME%.*} + 60))
staged=0
until ((staged >= 8 << 20)); do
  staged=$(find "$FSDIR/stage" -type f -printf '%s\n' 2>/dev/null | sort -n | tail -n 1)
  staged=${staged:-0}
  ((${EPOCHREALTIME%.*} < deadline)) || fail "no staged writes from the guest's stream"
  sleep 0.01
done
# Kill at once: a COMMIT (fast now that seals are incremental) may follow
# any moment and leave nothing unstable to resend.
serve_stop KILL
ls -l "$FSDIR/stage" | sed "s/^/$knc_name: staged at the kill: /"
tell restarted-2
serve_start "$port"
note "SIGKILL restart done at $(elapsed) s"

guest_wait
grep '^ok \|^resent ' "$T/out" | sed "s/^/$knc_name: guest: /"
serve_stop TERM
sed -n 's/^M //p' "$T/out" > "$T/manifest"
check_manifest "$T/manifest"
[[ $("$B" cat t /d/keep | tr '\n' ' ') == "before dirty-at-restart after " ]] || fail "/d/keep through the CLI"
note "ok in $(elapsed) s"
