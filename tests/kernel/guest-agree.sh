# guest-agree.sh — test_agree's guest half (after guest-lib.sh).
A=$M/agree

# ---- CLI -> NFS: what `put` (through the daemon) wrote, the client reads at once ----
eq "before" "$(cat $A/old)" v1 # now in the guest's caches
eq "before" "$(cat $A/gone)" "to be removed"
stat $A/mode >/dev/null
mark cli-now
await cli-done
eq "put over a file the guest has read" "$(cat $A/old)" v2
eq "put of a new file" "$(cat $A/new)" "brand new"
eq "mkdir + put" "$(cat $A/dir/f)" inside
eq "mv" "$(cat $A/moved)" "to move"
eq "ln -s" "$(readlink $A/link)" dir/f
! cat $A/gone 2>/dev/null || fail "rm: /agree/gone still opens"
cat $A/mode >/dev/null # open revalidates the attributes
eq "chmod" "$(stat -c %a $A/mode)" 600
ok "CLI -> NFS at once"

# ---- NFS -> CLI: once close/fsync returned, the CLI reads it at once (the server still runs) ----
# One step at a time, each checked by the host before the next: no later
# write may hide a late seal of an earlier one.
echo small > $A/nfs-small # one WRITE (FILE_SYNC, no COMMIT) at close
echo "M f $(sha $A/nfs-small) $(stat -c %s $A/nfs-small) /agree/nfs-small"
mark nfs-small
await small-checked
dd if=/dev/urandom of=/tmp/big bs=1M count=12 2>/dev/null # several COMMITs while it streams
dd if=/tmp/big of=$A/nfs-big bs=1M conv=fsync 2>/dev/null
echo "M f $(sha /tmp/big) $(stat -c %s /tmp/big) /agree/nfs-big"
mark nfs-big
await big-checked
echo "more" >> $A/nfs-small # an append to a file the server has sealed
mkdir $A/nfs-dir
ln -s nfs-small $A/nfs-link
mv $A/old $A/nfs-dir/old
rm $A/new
mark nfs-done
await host-checked
ok "NFS -> CLI at once"
