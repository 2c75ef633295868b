#!/usr/bin/env bash
# The CLI and the kernel client agree while `serve` runs (one VM boot, guest
# half in guest-agree.sh): what put/mkdir/mv/rm/ln/chmod write through the
# daemon's control socket, the client reads at once (close-to-open); what
# the client wrote and COMMITted (close, fsync), the CLI reads at once —
# small files and one of 12 MiB (COMMITted several times as it streams).
#   BASEFS=build/basefs tests/kernel/test_agree.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

knc_init
"$B" mkdir t /agree
printf 'v1\n' | "$B" put t /agree/old
printf 'to be removed\n' | "$B" put t /agree/gone
printf 'to move\n' | "$B" put t /agree/tomove
printf 'mode\n' | "$B" put t /agree/mode
serve_start
guest_start "$here/guest-agree.sh"

wait_mark cli-now
printf 'v2\n' | "$B" put t /agree/old || fail "put through the daemon"
printf 'brand new\n' | "$B" put t /agree/new || fail "put through the daemon"
"$B" mkdir t /agree/dir || fail "mkdir through the daemon"
printf 'inside\n' | "$B" put t /agree/dir/f || fail "put through the daemon"
"$B" mv t /agree/tomove /agree/moved || fail "mv through the daemon"
"$B" ln -s t dir/f /agree/link || fail "ln -s through the daemon"
"$B" rm t /agree/gone || fail "rm through the daemon"
"$B" chmod t 600 /agree/mode || fail "chmod through the daemon"
tell cli-done

wait_mark nfs-small
[[ $("$B" cat t /agree/nfs-small) == small ]] ||
  fail "/agree/nfs-small right after the guest's close: '$("$B" cat t /agree/nfs-small)'"
tell small-checked
wait_mark nfs-big
want=$(sed -n 's|^M f \([0-9a-f]*\) [0-9]* /agree/nfs-big$|\1|p' "$T/out")
[[ $(cli_sha /agree/nfs-big) == "$want" ]] || fail "/agree/nfs-big right after the guest's fsync"
tell big-checked
wait_mark nfs-done
[[ $("$B" cat t /agree/nfs-small | tr '\n' ' ') == "small more " ]] ||
  fail "/agree/nfs-small right after the guest's append: '$("$B" cat t /agree/nfs-small)'"
want=$(printf '%s\n' dir link mode moved nfs-big nfs-dir nfs-link nfs-small)
got=$("$B" ls t /agree) || fail "ls /agree"
[[ $got == "$want" ]] || fail "ls /agree right after the guest's changes: $(echo $got), want $(echo $want)"
[[ $("$B" cat t /agree/nfs-link) == nfs-small ]] || fail "the guest's symlink through the CLI"
[[ $("$B" cat t /agree/nfs-dir/old) == v2 ]] || fail "the guest's rename through the CLI"
tell host-checked
guest_wait
grep '^ok ' "$T/out" | sed "s/^/$knc_name: guest: /"
serve_stop TERM
sed -n 's/^M //p' "$T/out" | grep -v ' /agree/nfs-small$' > "$T/manifest"
check_manifest "$T/manifest"
note "ok in $(elapsed) s"
