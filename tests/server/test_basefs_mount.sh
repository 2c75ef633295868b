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
grep -q "mount -t nfs -o vers=3,nolock 127.0.0.1:/basefs $T/mnt" "$T/err" || fail "no short mount line"
# Nothing was started: the filesystem is not locked, the port is free.
"$B" mkdir t /after || fail "the filesystem is held by something"
if command -v ss >/dev/null; then
  ss -ltn | grep -q ':3049 ' && fail "something listens on 3049"
fi
# IPv6 form.
"$B" mount t "$T/mnt" --nfs '[::1]:3049' 2>"$T/err"
grep -q "mountproto=tcp \[::1\]:/basefs" "$T/err" || fail "IPv6 mount line"
exit 0
