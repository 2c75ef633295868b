# guest-udp.sh — test_udp's guest half (after guest-lib.sh), booted with
# knc.sh --kernel udp (built from Debian's linux-source with NFS over UDP,
# which Debian's own kernel has compiled out): the kernel client with
# proto=udp,mountproto=udp, MOUNT and NFS both on UDP, must work — there is
# no fallback. Then the form such UDP-less kernels use for mountproto=udp
# (MOUNT over UDP, NFS over TCP) is mounted too.
cd /
umount $M || fail "umount of the TCP mount"
A="vers=3,nolock,addr=$KNC_SERVER,port=$KNC_PORT,mountaddr=$KNC_SERVER,mountport=$KNC_PORT"
mount -t nfs -o "proto=udp,mountproto=udp,$A" "$KNC_SERVER:/basefs" $M 2>/tmp/mount.err ||
  fail "mount -o proto=udp,mountproto=udp: $(cat /tmp/mount.err; dmesg | tail -n 5)"
line=$(grep " $M nfs" /proc/mounts)
echo "mounts: $line"
# ",proto=" and ",mountproto=": "mountproto=udp" alone must not pass for NFS over UDP.
case "$line" in *,proto=udp,*) ;; *) fail "NFS not over UDP: $line" ;; esac
case "$line" in *,mountproto=udp,*|*,mountproto=udp\ *) ;; *) fail "MOUNT not over UDP: $line" ;; esac
rsize=$(echo "$line" | sed -n 's/.*,rsize=\([0-9]*\).*/\1/p')
wsize=$(echo "$line" | sed -n 's/.*,wsize=\([0-9]*\).*/\1/p')
[ -n "$rsize" ] && [ -n "$wsize" ] || fail "no rsize/wsize in $line"
[ "$rsize" -le 32768 ] && [ "$wsize" -le 32768 ] || fail "UDP sizes rsize=$rsize wsize=$wsize (> 32 KiB)"
ok "mounted over UDP (rsize=$rsize wsize=$wsize)"
cd $M

eq "a file the host wrote" "$(cat $M/udp/host)" "from the host"
dd if=/dev/urandom of=/tmp/b bs=1k count=3000 2>/dev/null
cp /tmp/b $M/udp/big
sync
drop_caches
eq "3000 KiB written and read back" "$(sha $M/udp/big)" "$(sha /tmp/b)"
echo "M f $(sha /tmp/b) $(stat -c %s /tmp/b) /udp/big"
ok "a 3000 KiB file over UDP"

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
ok "create/rename/remove/rmdir over UDP"

# What a kernel without NFS over UDP does with mountproto=udp: MOUNT over
# UDP, NFS over TCP (on a second mount point; the UDP mount stays for await).
mkdir -p /tmp/mixed
mount -t nfs -o "proto=tcp,mountproto=udp,$A" "$KNC_SERVER:/basefs" /tmp/mixed ||
  fail "mount -o proto=tcp,mountproto=udp"
line=$(grep " /tmp/mixed nfs" /proc/mounts)
case "$line" in *,proto=tcp,*mountproto=udp*) ;; *) fail "not NFS over TCP with MOUNT over UDP: $line" ;; esac
eq "read through the TCP mount" "$(cat /tmp/mixed/udp/small)" small
umount /tmp/mixed || fail "umount /tmp/mixed"
ok "proto=tcp,mountproto=udp (MOUNT over UDP, NFS over TCP)"
mark udp-done
await host-checked
