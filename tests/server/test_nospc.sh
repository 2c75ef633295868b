#!/bin/bash
# Out of space (issue 5): a filesystem on a small tmpfs (in a private mount
# namespace: needs root and unshare; skipped otherwise), served over NFS,
# written through NFS with incompressible files until the disk is full.
# Twice: on 2 MiB, where the store never writes zeros ahead of its log and
# packs (they need 16 MiB free: store/log.h, store/blocks.h), and on 24 MiB,
# where it does until the disk fills and must give them back in time.
#  - the first failure is NFS3ERR_NOSPC (not an I/O error, not a hang);
#  - the daemon keeps serving reads: every file copied before reads back;
#  - nothing half-written: what NFS lists while full is what a reopened
#    filesystem lists after a restart, every file whose copy succeeded is
#    intact after the restart, and the filesystem opens (log consistent).
set -u
B=${BASEFS:?}
if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null || ! command -v nfs-cp >/dev/null; then
  echo "# skipped: needs root, unshare and libnfs-utils"
  exit 77
fi
if [ -z "${BASEFS_NOSPC_INNER:-}" ]; then
  BASEFS_NOSPC_INNER=1 exec unshare --mount "$0" "$@"
fi
mount --make-rprivate / 2>/dev/null
T=
W=
PID=
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null
  [ -n "$T" ] && umount "$T" 2>/dev/null
  rm -rf "$T" "$W"
  T= W= PID=
}
trap cleanup EXIT
fail() { echo "FAIL ($MB MiB): $*" >&2; sed 's/^/  log: /' "$W/log" >&2 2>/dev/null; exit 1; }

# The last 16 bytes of FILE are not all zero: it ends with its last record.
ends_with_data() {
  [ "$(tail -c 16 "$1" | od -An -v -tx1 | tr -d ' \n' | tr -d 0)" != "" ]
}

start_serve() {
  "$B" serve t --nfs 127.0.0.1:0 2>>"$W/log" &
  PID=$!
  PORT=
  for _ in $(seq 100); do
    PORT=$(sed -n 's/^info: serving \/basefs of .* on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$W/log" | tail -1)
    [ -n "$PORT" ] && return 0
    kill -0 "$PID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

run_case() {
  MB=$1
  T=$(mktemp -d)
  mount -t tmpfs -o size=${MB}m tmpfs "$T" || { echo "# skipped: cannot mount a tmpfs"; exit 77; }
  W=$(mktemp -d) # scratch outside the small disk
  export BASEFS_HOME=$T/home

  "$B" genkey >/dev/null || fail genkey
  "$B" bootstrap t || fail bootstrap

  start_serve || fail "serve did not start"
  U="?version=3&nfsport=$PORT&mountport=$PORT"

  # Fill it: 300 KB files of random bytes (no dedup, no compression).
  ok=()
  failed=()
  nospc=0
  for i in $(seq 1 $((MB * 4 + 10))); do
    head -c 300000 /dev/urandom >"$W/f$i"
    if nfs-cp "$W/f$i" "nfs://127.0.0.1/basefs/f$i$U" >"$W/cp.out" 2>&1; then
      ok+=("$i")
    else
      failed+=("$i")
      grep -q "NOSPC" "$W/cp.out" && nospc=1
      # The daemon has not crashed.
      kill -0 "$PID" 2>/dev/null || fail "the daemon died on a full disk"
      [ $nospc = 1 ] && break
    fi
  done
  [ $nospc = 1 ] || fail "no NFS3ERR_NOSPC after ${#ok[@]} files: $(cat "$W/cp.out")"
  [ ${#ok[@]} -ge 2 ] || fail "only ${#ok[@]} files fitted: the test disk is too small"
  echo "# $MB MiB: ${#ok[@]} files written before NFS3ERR_NOSPC"
  # A small file (staged in memory, where a WRITE cannot fail for want of
  # disk) fails too, with NOSPC, and leaves nothing (checked after the
  # restart).
  head -c 4000 /dev/urandom >"$W/small"
  if nfs-cp "$W/small" "nfs://127.0.0.1/basefs/small$U" >"$W/cp.out" 2>&1; then
    fail "a small file was copied onto the full disk"
  fi
  grep -q "NOSPC" "$W/cp.out" || fail "small copy on a full disk: $(cat "$W/cp.out")"
  kill -0 "$PID" 2>/dev/null || fail "the daemon died on a small write to a full disk"

  # Reads go on while the disk is full.
  for i in "${ok[@]}"; do
    nfs-cp "nfs://127.0.0.1/basefs/f$i$U" "$W/back$i" >/dev/null 2>&1 || fail "read of f$i failed while full"
    cmp -s "$W/f$i" "$W/back$i" || fail "f$i reads back different while full"
  done
  nfs-ls "nfs://127.0.0.1/basefs$U" | awk '{print $NF}' | grep '^f' | sort >"$W/ls.nfs" || fail nfs-ls

  kill -TERM "$PID"
  wait "$PID"
  PID=
  # Restart on the same (still full) disk: it opens, and shows the same tree.
  "$B" ls t / | grep '^f' | sort >"$W/ls.cli" || fail "the filesystem does not open after ENOSPC"
  diff "$W/ls.nfs" "$W/ls.cli" >"$W/diff" || fail "NFS showed names a reopen does not have (a failed create was visible): $(cat "$W/diff")"
  for i in "${ok[@]}"; do
    "$B" cat t "/f$i" >"$W/cat$i" || fail "cat f$i after restart"
    cmp -s "$W/f$i" "$W/cat$i" || fail "f$i changed after restart"
  done
  # A copy that failed left no partial content: the file is absent or empty.
  [ "$("$B" cat t /small 2>/dev/null | wc -c)" = 0 ] || fail "the small file's failed copy left bytes"
  for i in "${failed[@]}"; do
    size=$("$B" cat t "/f$i" 2>/dev/null | wc -c)
    [ "$size" = 0 ] || fail "f$i (copy failed) has $size bytes after restart: half-written"
  done
  # Room again (the disk grows): writing works again and earlier files are still intact.
  mount -o remount,size=$((MB * 4))m "$T" || fail "remount"
  printf 'after\n' | "$B" put t /after || fail "put after ENOSPC"
  [ "$("$B" cat t /after)" = after ] || fail "cat after"
  "$B" cat t "/f${ok[0]}" | cmp -s - "$W/f${ok[0]}" || fail "f${ok[0]} changed"
  # With room to spare (the 24 MiB case: 96 MiB now), a writer keeps zeros
  # ahead of its log and pack while open; a clean close gives them back, so
  # both end with their last record.
  head -c 100000 /dev/urandom >"$W/g"
  "$B" put t /g <"$W/g" || fail "put g"
  "$B" cat t /g | cmp -s - "$W/g" || fail "g reads back different"
  ends_with_data "$T/home/fs/t/log" || fail "the log ends with zeros after a clean close"
  for p in "$T"/home/fs/t/blocks/pack-*; do
    ends_with_data "$p" || fail "$(basename "$p") ends with zeros after a clean close"
  done
  cleanup
}

run_case 2
run_case 24
exit 0
