#!/bin/bash
# basefs mount, black-box. On a host without a kernel NFS client (this CI
# host) it must start nothing, say why, print the mount lines to use, and
# exit 1. Bad arguments get a one-line error. Where the host HAS a client,
# mounting needs root and a kernel: tests/kernel covers it; here only the
# argument checks run.
set -u
B=${BASEFS:?}
T=$(mktemp -d)
export BASEFS_HOME=$T/home
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$T/err" ] && sed 's/^/  err: /' "$T/err" >&2; exit 1; }

"$B" genkey >/dev/null || fail genkey
"$B" bootstrap t || fail bootstrap
mkdir "$T/mnt"

# Argument errors.
"$B" mount t 2>"$T/err" && fail "mount without DIR succeeded"
grep -q "needs a filesystem NAME and a directory DIR" "$T/err" || fail "no usage error"
"$B" mount t "$T/mnt" --nfs nonsense 2>"$T/err" && fail "bad --nfs accepted"
grep -q "bad --nfs address 'nonsense'" "$T/err" || fail "bad --nfs not reported"
"$B" mount t "$T/mnt" --nfs 127.0.0.1:0 2>"$T/err" && fail "port 0 accepted"
grep -q "needs a fixed port" "$T/err" || fail "port 0 not reported"
"$B" mount t "$T/mnt" --bogus 2>"$T/err" && fail "unknown option accepted"
grep -q "unknown option '--bogus'" "$T/err" || fail "unknown option not reported"
"$B" mount --help | grep -q "mount NAME DIR" || fail "--help"
"$B" mount t "$T/mnt" --nfs '[::1]:3049' --nfs '[0::1]:3049' 2>"$T/err" && fail "--nfs twice accepted"
grep -q -- "--nfs \[0::1\]:3049 given twice" "$T/err" || fail "--nfs twice not reported"
"$B" mount t "$T/mnt" --exports a --exports b 2>"$T/err" && fail "--exports twice accepted"
grep -q -- "--exports given twice ('a' and 'b')" "$T/err" || fail "--exports twice not reported"
"$B" mount t "$T/mnt" --key a --key b 2>"$T/err" && fail "--key twice accepted"
grep -q -- "--key given twice ('a' and 'b')" "$T/err" || fail "--key twice not reported"

has_client=0
grep -qw nfs /proc/filesystems && has_client=1
[ -d "/lib/modules/$(uname -r)/kernel/fs/nfs" ] && has_client=1
if [ $has_client = 1 ]; then
  echo "# this host has a kernel NFS client: the 'says why' path is not reachable here"
  exit 0
fi

# No client: says why, prints the lines, starts nothing, exits 1 — quickly.
start=$(date +%s)
"$B" mount t "$T/mnt" --nfs 127.0.0.1:3049 --verbose >"$T/out" 2>"$T/err"
rc=$?
[ $rc = 1 ] || fail "exit status $rc, want 1"
[ $(( $(date +%s) - start )) -le 5 ] || fail "took too long"
grep -q "cannot mount here: this host has no kernel NFS client" "$T/err" || fail "no reason given"
grep -q "/proc/filesystems" "$T/err" || fail "reason does not say what was checked"
grep -q "basefs serve t --nfs 127.0.0.1:3049 --verbose" "$T/err" || fail "no serve line"
grep -q "mount -t nfs -o vers=3,nolock,proto=tcp,port=3049,mountport=3049,mountproto=tcp 127.0.0.1:/basefs $T/mnt" "$T/err" \
  || fail "no explicit mount line"
# Port 3049 without --portmap: rpcbind would not know it, so no short line.
grep -q "a host running rpcbind needs only" "$T/err" && fail "short mount line for port 3049"
grep -q "(the short form, mount -t nfs -o vers=3,nolock 127.0.0.1:/basefs $T/mnt, needs port 2049 with rpcbind, or --portmap)" \
  "$T/err" || fail "no note on the short form"
# Nothing was started: the filesystem is not locked, the port is free.
"$B" mkdir t /after || fail "the filesystem is held by something"
if command -v ss >/dev/null; then
  ss -ltn | grep -q ':3049 ' && fail "something listens on 3049"
fi
# IPv6 form.
"$B" mount t "$T/mnt" --nfs '[::1]:3049' 2>"$T/err"
grep -q "mountproto=tcp \[::1\]:/basefs" "$T/err" || fail "IPv6 mount line"
# The short line where it works: port 2049 (rpcbind), any port with --portmap.
"$B" mount t "$T/mnt" 2>"$T/err"
grep -q "(a host running rpcbind needs only: mount -t nfs -o vers=3,nolock 127.0.0.1:/basefs $T/mnt)" \
  "$T/err" || fail "no short mount line for port 2049"
"$B" mount t "$T/mnt" --nfs 127.0.0.1:3049 --portmap 2>"$T/err"
grep -q "(with --portmap this is enough: mount -t nfs -o vers=3,nolock 127.0.0.1:/basefs $T/mnt)" \
  "$T/err" || fail "no short mount line with --portmap"
# A wildcard listen address is mounted at loopback.
"$B" mount t "$T/mnt" --nfs 0.0.0.0:2049 2>"$T/err"
grep -q "mountproto=tcp 127.0.0.1:/basefs $T/mnt" "$T/err" || fail "0.0.0.0 not mounted at 127.0.0.1"
"$B" mount t "$T/mnt" --nfs '[::]:2049' 2>"$T/err"
grep -q "mountproto=tcp \[::1\]:/basefs $T/mnt" "$T/err" || fail ":: not mounted at ::1"
# Options serve would refuse are refused before any line is printed.
for bad in "--spin-us bogus" "--nfs 127.0.0.1:2049 --nfs nonsense" "--exports $T/nonexistent"; do
  # shellcheck disable=SC2086
  "$B" mount t "$T/mnt" $bad 2>"$T/err" && fail "mount $bad succeeded"
  [ "$(wc -l <"$T/err")" = 1 ] || fail "mount $bad: want one error line"
  grep -q "serve it with" "$T/err" && fail "mount $bad printed a serve line"
done
grep -q "nonexistent" "$T/err" || fail "the exports error does not name the file"
exit 0
