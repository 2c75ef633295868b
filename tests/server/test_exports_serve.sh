#!/bin/bash
# basefs serve --exports, black-box, in a private network namespace (root +
# unshare; skipped otherwise) where 10.9.9.9 is a second, non-loopback
# address of this host: a client reaching the daemon at 10.9.9.9 comes from
# 10.9.9.9. Without --exports it is refused (auth error, one log line) while
# 127.0.0.1 is served; `10.9.9.0/24 ro` lets it read but not write;
# `10.9.9.0/24 rw` lets it write; a bad exports file stops serve at once.
set -u
B=${BASEFS:?}
if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null || ! command -v nfs-cat >/dev/null; then
  echo "# skipped: needs root, unshare and libnfs-utils"
  exit 77
fi
if [ -z "${BASEFS_EX_INNER:-}" ]; then
  BASEFS_EX_INNER=1 exec unshare --net "$0" "$@"
fi
ip link set lo up && ip addr add 10.9.9.9/32 dev lo || { echo "# skipped: no addresses"; exit 77; }
T=$(mktemp -d)
export BASEFS_HOME=$T/home
P=
trap '[ -n "$P" ] && kill -9 "$P" 2>/dev/null; rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; for f in "$T"/log*; do [ -f "$f" ] && sed "s|^|  $(basename "$f"): |" "$f" >&2; done; exit 1; }
serve_wait() {
  local log=$1; shift
  : > "$log" # exists before the loop below reads it
  "$B" serve t --nfs 0.0.0.0:2049 "$@" 2>"$log" &
  P=$!
  for _ in $(seq 100); do
    grep -q "^info: serving" "$log" 2>/dev/null && return 0
    kill -0 "$P" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
stop() { kill -TERM "$P"; wait "$P"; local rc=$?; P=; return $rc; }
U="?version=3&nfsport=2049&mountport=2049"

"$B" genkey >/dev/null || fail genkey
"$B" bootstrap t || fail bootstrap
printf 'hello\n' | "$B" put t /f || fail put
printf 'x\n' >"$T/x"

# No --exports: loopback only.
serve_wait "$T/log1" || fail "serve did not start"
[ "$(nfs-cat "nfs://127.0.0.1/basefs/f$U")" = hello ] || fail "loopback refused"
nfs-cat "nfs://10.9.9.9/basefs/f$U" >"$T/out" 2>&1 && fail "10.9.9.9 served without an exports line"
nfs-cat "nfs://10.9.9.9/basefs/f$U" >/dev/null 2>&1
stop || fail "serve exit status"
[ "$(grep -c '10.9.9.9: refused by the exports' "$T/log1")" = 1 ] || fail "want exactly one refusal line"

# ro: reads, no writes.
printf '10.9.9.0/24 ro\n' >"$T/exports"
serve_wait "$T/log2" --exports "$T/exports" || fail "serve --exports did not start"
[ "$(nfs-cat "nfs://10.9.9.9/basefs/f$U")" = hello ] || fail "ro line: read refused"
nfs-cp "$T/x" "nfs://10.9.9.9/basefs/new$U" >"$T/out" 2>&1 && fail "ro line: write accepted"
grep -q "ROFS\|Read-only" "$T/out" || fail "ro line: not a read-only error: $(cat "$T/out")"
stop || fail "serve exit status (ro)"

# rw, root squashed (the default): the client's root is nobody, so it may
# write where everyone may — and nowhere else.
printf '10.9.9.0/24 rw\n' >"$T/exports"
serve_wait "$T/log3" --exports "$T/exports" || fail "serve --exports rw did not start"
nfs-cp "$T/x" "nfs://10.9.9.9/basefs/new$U" >"$T/out" 2>&1 && fail "root was not squashed"
grep -q "ACCES\|ermission" "$T/out" || fail "squashed root: not a permission error: $(cat "$T/out")"
stop || fail "serve exit status (rw)"
"$B" chmod t 1777 / || fail "chmod /"
serve_wait "$T/log4" --exports "$T/exports" || fail "serve --exports rw did not start again"
nfs-cp "$T/x" "nfs://10.9.9.9/basefs/new$U" >"$T/out" 2>&1 || fail "rw line: write refused: $(cat "$T/out")"
stop || fail "serve exit status (rw 2)"
[ "$("$B" cat t /new)" = x ] || fail "the write did not land"

# A bad file: one line saying where and why, exit 1, nothing served.
printf '10.9.9.0/24 rw\n10.0.0.0/8 rw,bogus\n' >"$T/exports"
"$B" serve t --nfs 127.0.0.1:2049 --exports "$T/exports" 2>"$T/log5" && fail "bad exports accepted"
grep -q "exports: line 2: unknown option 'bogus'" "$T/log5" || fail "bad exports message: $(cat "$T/log5")"
exit 0
