# guest-udp.sh — test_udp's guest half (after guest-lib.sh): the kernel
# client over UDP (proto=udp, mountproto=udp: MOUNT and NFS both on UDP).
# Kernels built with CONFIG_NFS_DISABLE_UDP_SUPPORT (Debian's since 5.6)
# refuse proto=udp with EINVAL ("NFS: Unsupported transport protocol udp");
# then MOUNT
# still goes over UDP (mountproto=udp) and NFS over TCP, and the guest
# prints "@@ nfs-udp-unsupported" so the host can say so.
cd /
umount $M || fail "umount of the TCP mount"
A="vers=3,nolock,addr=$KNC_SERVER,port=$KNC_PORT,mountaddr=$KNC_SERVER,mountport=$KNC_PORT,mountproto=udp"
if mount -t nfs -o "proto=udp,$A" "$KNC_SERVER:/basefs" $M 2>/tmp/mount.err; then
  line=$(grep " $M nfs" /proc/mounts)
  case "$line" in *proto=udp*) ;; *) fail "not over UDP: $line" ;; esac
  rsize=$(echo "$line" | sed -n 's/.*rsize=\([0-9]*\).*/\1/p')
  wsize=$(echo "$line" | sed -n 's/.*wsize=\([0-9]*\).*/\1/p')
  [ "$rsize" -le 32768 ] && [ "$wsize" -le 32768 ] || fail "UDP sizes rsize=$rsize wsize=$wsize"
  ok "mounted over UDP (rsize=$rsize wsize=$wsize)"
  via=UDP
else
  # EINVAL is what a kernel without NFS over UDP answers; anything else fails.
  grep -q "Invalid argument" /tmp/mount.err || fail "mount over UDP: $(cat /tmp/mount.err)"
  dmesg 2>/dev/null | grep -i "udp" | tail -2
  mark nfs-udp-unsupported
  mount -t nfs -o "proto=tcp,$A" "$KNC_SERVER:/basefs" $M || fail "mount with mountproto=udp"
  grep " $M nfs" /proc/mounts | grep -q "mountproto=udp" || fail "MOUNT not over UDP: $(grep " $M nfs" /proc/mounts)"
  ok "this kernel has no NFS over UDP: MOUNT over UDP, NFS over TCP"
  via="TCP (mounted over UDP)"
fi
cd $M

eq "a file the host wrote" "$(cat $M/udp/host)" "from the host"
dd if=/dev/urandom of=/tmp/b bs=1k count=3000 2>/dev/null
cp /tmp/b $M/udp/big
sync
drop_caches
eq "3000 KiB written and read back" "$(sha $M/udp/big)" "$(sha /tmp/b)"
echo "M f $(sha /tmp/b) $(stat -c %s /tmp/b) /udp/big"
ok "a 3000 KiB file over $via"

# Many non-idempotent calls in a row (CREATE, REMOVE, MKDIR, RMDIR, RENAME):
# every one must answer as executed once.
mkdir $M/udp/d
i=1; while [ $i -le 300 ]; do echo $i > $M/udp/d/f$i; i=$((i + 1)); done
eq "300 files created" "$(ls $M/udp/d | wc -l)" 300
mv $M/udp/d/f1 $M/udp/d/renamed
rm $M/udp/d/f*
eq "after rm" "$(ls $M/udp/d)" renamed
rm $M/udp/d/renamed
rmdir $M/udp/d
[ ! -e $M/udp/d ] || fail "rmdir"
echo small > $M/udp/small
drop_caches
eq "a small file read back" "$(cat $M/udp/small)" small
ok "create/rename/remove/rmdir over $via"
mark udp-done
await host-checked
