# guest-restart.sh — test_restart's guest half (after guest-lib.sh): the
# server restarts twice under the mounted client (TERM, then KILL in the
# middle of a stream of UNSTABLE writes); the host changes /knc/msg while
# its server is down, so `await` returns once the new server answers.

# Bytes the server acknowledged in WRITE replies so far (resends included).
server_written() { awk '$1 == "bytes:" { print $7; exit }' /proc/self/mountstats; }

# ---- 1: SIGTERM restart; open files, the working directory, a renamed file ----
mkdir -p $M/d/sub
seq 1 3000 > $M/d/ro
echo moving > $M/d/mv-before
cd $M/d/sub
exec 3> $M/d/keep
echo before >&3
exec 4< $M/d/ro
read -r l1 <&4
echo dirty-at-restart >&3 # in the guest's page cache only: written after the restart
mark restart-term
await restarted-1
echo after >&3
exec 3>&-
read -r l2 <&4
exec 4<&-
eq "read through an fd opened before the restart" "$l1 $l2" "1 2"
eq "written through an fd opened before the restart" "$(cat $M/d/keep | tr '\n' ' ')" "before dirty-at-restart after "
echo here > ./rel # the working directory's handle, from before the restart
eq "cwd across the restart" "$(cat $M/d/sub/rel)" here
mv $M/d/mv-before $M/d/sub/mv-after
eq "rename across the restart" "$(cat ../sub/mv-after)" moving
cd $M
for p in d/keep d/sub/rel d/sub/mv-after; do echo "M f $(sha $M/$p) $(stat -c %s $M/$p) /$p"; done
ok "SIGTERM restart: handles, fds and cwd keep working"

# ---- 2: SIGKILL while UNSTABLE writes stream in: the client resends them -----
dd if=/dev/urandom of=/tmp/s bs=1M count=${KNC_STREAM_MB:-64} 2>/dev/null
want=$(sha /tmp/s)
size=$(stat -c %s /tmp/s)
# WRITEs go out while dd runs, in batches of a few MiB with a COMMIT after
# each: the kill lands inside a batch (acknowledged, not yet committed).
echo 4194304 > /proc/sys/vm/dirty_background_bytes
w0=$(server_written)
exec 3> $M/stream
mark kill-now
dd if=/tmp/s bs=1M >&3 2>/dev/null
await restarted-2
exec 3>&-   # close: flush + COMMIT, which sees the new write verifier
w1=$(server_written)
rm /tmp/s
drop_caches
eq "sha256 of the stream after the kill" "$(sha $M/stream)" "$want"
resent=$((w1 - w0 - size))
echo "M f $want $size /stream"
echo "resent $resent bytes"
[ "$resent" -gt 0 ] || fail "the client resent nothing after the server was killed (acknowledged $((w1 - w0)) of $size bytes)"
ok "SIGKILL under a stream of unstable writes: $resent bytes resent, content complete"
