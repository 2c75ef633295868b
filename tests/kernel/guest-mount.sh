# guest-mount.sh — test_mount's guest half (after guest-lib.sh). Booted with
# knc.sh --no-mount --bin basefs --bin mount.nfs: basefs runs IN the guest,
# whose kernel has the NFS client, against a filesystem in the guest's
# tmpfs HOME.
#  1. `basefs mount t /mnt/x` (serves in a child, mounts with the kernel
#     client): writes through the mount read back with the CLI (through the
#     daemon's control socket), CLI writes read back through the mount;
#     SIGINT unmounts, stops the server, exits 0; what was written is in the
#     store (offline CLI).
#  2. `basefs serve t --portmap`: mounts that give no port at all — the
#     kernel (addr=127.0.0.1, no helper) and mount.nfs (the plain
#     `mount -t nfs -o vers=3,nolock localhost:/basefs DIR`) ask PMAP
#     GETPORT on port 111.
# A basefs log with a sanitizer report fails the test.
X=/mnt/x
Y=/mnt/y
mkdir -p $X $Y
up() { cut -d' ' -f1 /proc/uptime; }
mounted() { grep -q " $1 nfs " /proc/mounts; }
clean_log() {
  ! grep -q 'runtime error\|Sanitizer' "$1" || { cat "$1"; fail "sanitizer report in $1"; }
}
# cli_sha PATH: sha256 of a file of t read with `basefs cat`.
cli_sha() { basefs cat t "$1" > /tmp/cli.out || fail "basefs cat t $1"; sha /tmp/cli.out; }
# serving: the pids of `basefs serve` processes.
serving() {
  for p in /proc/[0-9]*; do
    case "$(tr '\0' ' ' < $p/cmdline 2>/dev/null)" in "basefs serve "*) echo ${p#/proc/} ;; esac
  done
}

basefs genkey >/dev/null
basefs bootstrap t >/dev/null
basefs mkdir t /pre
printf 'offline before the mount\n' | basefs put t /pre/offline
ok "key and filesystem t in $HOME"

# ---- 1: basefs mount --------------------------------------------------------
t0=$(up)
basefs mount t $X 2>/tmp/mount.log &
mpid=$!
i=0
until mounted $X; do
  kill -0 $mpid 2>/dev/null || { cat /tmp/mount.log; fail "basefs mount exited before mounting"; }
  i=$((i + 1)); [ $i -lt 600 ] || { cat /tmp/mount.log; fail "$X not mounted after 30 s"; }
  usleep 50000
done
grep " $X nfs " /proc/mounts | sed 's/^/mounts: /'
grep -q "^info: t mounted on $X" /tmp/mount.log || { cat /tmp/mount.log; fail "no 'mounted' line"; }
[ -n "$(serving)" ] || fail "no basefs serve process while mounted"
ok "basefs mount: mounted in $(awk -v a=$t0 -v b=$(up) 'BEGIN {printf "%.2f", b - a}') s"

# Kernel -> CLI.
eq "an offline write read through the mount" "$(cat $X/pre/offline)" "offline before the mount"
mkdir -p $X/k/sub/deeper
printf 'through the kernel\n' > $X/k/small
dd if=/dev/urandom of=/tmp/big bs=64k count=40 2>/dev/null # 2.5 MiB
cp /tmp/big $X/k/sub/big
i=1; while [ $i -le 50 ]; do echo "file $i" > $X/k/sub/deeper/f$i; i=$((i + 1)); done
ln -s sub/big $X/k/link
echo first > $X/k/renamed-from
mv $X/k/renamed-from $X/k/renamed-to
echo doomed > $X/k/doomed
rm $X/k/doomed
sync
eq "CLI cat of a file written through the mount" "$(basefs cat t /k/small)" "through the kernel"
eq "CLI sha256 of a 2.5 MiB file written through the mount" "$(cli_sha /k/sub/big)" "$(sha /tmp/big)"
eq "CLI ls of a directory made through the mount" "$(basefs ls t /k | tr '\n' ' ')" "link renamed-to small sub "
eq "CLI ls of 50 files" "$(basefs ls t /k/sub/deeper | sort | tr '\n' ' ')" \
  "$(i=1; while [ $i -le 50 ]; do echo f$i; i=$((i + 1)); done | sort | tr '\n' ' ')"
eq "CLI cat of one of them" "$(basefs cat t /k/sub/deeper/f37)" "file 37"
eq "CLI cat of a renamed file" "$(basefs cat t /k/renamed-to)" first
eq "CLI cat of a symlink made through the mount" "$(basefs cat t /k/link)" sub/big
ok "writes through the kernel mount read back with the CLI"

# CLI -> kernel: a new directory and file, and a file the client has read.
cat $X/k/small >/dev/null
basefs mkdir t /c
printf 'from the cli\n' | basefs put t /c/new
dd if=/dev/urandom of=/tmp/cbig bs=64k count=24 2>/dev/null
basefs put t /c/big < /tmp/cbig
printf 'rewritten by the cli\n' | basefs put t /k/small
eq "a new file the CLI wrote, read through the mount" "$(cat $X/c/new)" "from the cli"
eq "a 1.5 MiB file the CLI wrote, read through the mount" "$(sha $X/c/big)" "$(sha /tmp/cbig)"
eq "a file the client had read, rewritten by the CLI" "$(cat $X/k/small)" "rewritten by the cli"
eq "ls through the mount" "$(ls $X/c | tr '\n' ' ')" "big new "
ok "writes with the CLI read back through the mount"

# SIGINT: unmounts, stops the server, exits 0.
spids=$(serving)
t0=$(up)
kill -INT $mpid
rc=0; wait $mpid || rc=$?
cat /tmp/mount.log | sed 's/^/mount.log: /'
clean_log /tmp/mount.log
eq "basefs mount's exit status after SIGINT" $rc 0
! mounted $X || fail "$X still mounted after SIGINT: $(grep " $X " /proc/mounts)"
[ -z "$(serving)" ] || fail "basefs serve still runs after SIGINT: $(serving)"
for p in $spids; do [ ! -e /proc/$p ] || fail "server $p still exists"; done
grep -q '^info: stopped' /tmp/mount.log || fail "the server did not log 'stopped'"
[ -z "$(ls $X)" ] || fail "$X is not empty after the unmount: $(ls $X)"
ok "SIGINT: unmounted and stopped in $(awk -v a=$t0 -v b=$(up) 'BEGIN {printf "%.2f", b - a}') s"
# Offline now (the CLI opens the store itself): everything is there.
eq "offline: a 2.5 MiB file written through the mount" "$(cli_sha /k/sub/big)" "$(sha /tmp/big)"
eq "offline: the CLI's rewrite" "$(basefs cat t /k/small)" "rewritten by the cli"
eq "offline: ls (dot names aside)" "$(basefs ls t / | grep -v "^\\." | tr "\\n" " ")" "c k pre "
ok "after the stop the store has every write"

# ---- 2: serve --portmap, mounts without a port --------------------------------
# Nothing answers on 111 yet: the same mount must fail (it is the port
# mapper that makes it work below).
basefs serve t 2>/tmp/serve0.log &
spid=$!
i=0; until grep -q '^info: serving' /tmp/serve0.log; do
  kill -0 $spid 2>/dev/null || { cat /tmp/serve0.log; fail "serve exited"; }
  i=$((i + 1)); [ $i -lt 600 ] || fail "serve did not start"; usleep 50000
done
if timeout 60 mount -i -t nfs -o vers=3,nolock,addr=127.0.0.1 localhost:/basefs $Y 2>/tmp/m.err; then
  fail "mounted without a port and without a port mapper"
fi
echo "without a port mapper: $(cat /tmp/m.err)"
kill -TERM $spid; rc=0; wait $spid || rc=$?
eq "serve's exit status after SIGTERM" $rc 0
clean_log /tmp/serve0.log

basefs serve t --portmap 2>/tmp/serve.log &
spid=$!
i=0; until grep -q '^info: serving' /tmp/serve.log; do
  kill -0 $spid 2>/dev/null || { cat /tmp/serve.log; fail "serve --portmap exited"; }
  i=$((i + 1)); [ $i -lt 600 ] || fail "serve --portmap did not start"; usleep 50000
done
grep -q 'port mapping.*port 111' /tmp/serve.log || { cat /tmp/serve.log; fail "serve --portmap does not say it answers on 111"; }

# The kernel alone (-i: no mount helper): it asks 127.0.0.1:111 for the NFS
# and MOUNT ports itself.
timeout 60 mount -i -t nfs -o vers=3,nolock,addr=127.0.0.1 localhost:/basefs $Y ||
  fail "mount -i -t nfs -o vers=3,nolock,addr=127.0.0.1 localhost:/basefs (kernel, port mapper)"
grep " $Y nfs " /proc/mounts | sed 's/^/mounts: /'
eq "read through the port-mapped mount" "$(sha $Y/k/sub/big)" "$(sha /tmp/big)"
printf 'via the kernel and the port mapper\n' > $Y/pm-kernel
sync
eq "CLI cat of a file written through it" "$(basefs cat t /pm-kernel)" "via the kernel and the port mapper"
umount $Y || fail "umount $Y"
ok "kernel mount with no port options (PMAP GETPORT on 111)"

# The plain command line, through mount.nfs (busybox mount runs the helper
# once the kernel refused options without addr=).
timeout 60 mount -t nfs -o vers=3,nolock localhost:/basefs $Y ||
  fail "mount -t nfs -o vers=3,nolock localhost:/basefs (mount.nfs, port mapper)"
grep " $Y nfs " /proc/mounts | sed 's/^/mounts: /'
eq "read through mount.nfs's mount" "$(cat $Y/pm-kernel)" "via the kernel and the port mapper"
dd if=/dev/urandom of=/tmp/pm bs=64k count=16 2>/dev/null
cp /tmp/pm $Y/pm-helper
sync
eq "CLI sha256 of a 1 MiB file written through it" "$(cli_sha /pm-helper)" "$(sha /tmp/pm)"
umount $Y || fail "umount $Y"
ok "mount -t nfs -o vers=3,nolock localhost:/basefs (mount.nfs, port mapper)"

kill -INT $spid
rc=0; wait $spid || rc=$?
cat /tmp/serve.log | sed 's/^/serve.log: /'
clean_log /tmp/serve.log
eq "serve --portmap's exit status after SIGINT" $rc 0
eq "offline after serve --portmap" "$(basefs cat t /pm-kernel)" "via the kernel and the port mapper"
ok "serve --portmap stopped"
mark mount-done
