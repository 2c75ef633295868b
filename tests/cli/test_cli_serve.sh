#!/usr/bin/env bash
# The CLI while `basefs serve` owns the filesystem: every command works
# through the daemon's control socket (writes signed by the command's own
# key), behaves as offline, and what it wrote survives the daemon.
set -uo pipefail

BASEFS=${BASEFS:?set BASEFS to the basefs binary}
export BASEFS_HOME=$(mktemp -d)
work=$(mktemp -d)
serve_pid=
cleanup() {
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  rm -rf "$BASEFS_HOME" "$work"
}
trap cleanup EXIT

failures=0
step=0
ok() { step=$((step + 1)); echo "ok $step - $*"; }
fail() { step=$((step + 1)); echo "not ok $step - $*"; failures=$((failures + 1)); }
check() {
  local what=$1; shift
  if "$@" >"$work/out" 2>"$work/err"; then ok "$what"; else fail "$what: $(head -c 300 "$work/err")"; fi
}
must_fail() {
  local what=$1 pattern=$2; shift 2
  if "$@" >"$work/out" 2>"$work/err"; then
    fail "$what: succeeded"
  elif [ "$(wc -l <"$work/err")" != 1 ] || ! grep -qE -- "$pattern" "$work/err"; then
    fail "$what: $(cat "$work/err")"
  else
    ok "$what"
  fi
}
same() { if cmp -s "$2" "$3"; then ok "$1"; else fail "$1: contents differ"; fi; }
b() { "$BASEFS" "$@"; }

check "bootstrap" b bootstrap srv
check "genkey bob" b genkey --key "$work/bob"
check "mkdir /team (offline)" b mkdir srv /team

"$BASEFS" serve srv --nfs 127.0.0.1:0 --no-udp >"$work/serve.log" 2>&1 &
serve_pid=$!
for i in $(seq 200); do grep -q "serving" "$work/serve.log" && break; sleep 0.05; done
grep -q "serving" "$work/serve.log" && ok "serve started" || { fail "serve: $(cat "$work/serve.log")"; exit 1; }

echo hello >"$work/small"
head -c 2000000 /dev/urandom >"$work/big"
check "put through the daemon" b put srv /small <"$work/small"
check "cat while served" b cat srv /small
same "content" "$work/small" "$work/out"
check "put a large file (blocks shipped)" b put srv /big <"$work/big"
b cat srv /big >"$work/out"; same "large content" "$work/big" "$work/out"
echo piped | b put srv /piped && ok "put from a pipe" || fail "put from a pipe"
check "mkdir" b mkdir srv /d
check "mv" b mv srv /small /d/small
check "ls" b ls srv /d
grep -qx small "$work/out" && ok "ls sees the move" || fail "ls: $(cat "$work/out")"
check "chmod" b chmod srv 600 /d/small
check "ln -s" b ln -s srv /d/small /link
mkdir -p "$work/tree/sub"; echo x >"$work/tree/sub/x"
check "import" b import srv "$work/tree" /d
b cat srv /d/sub/x | grep -qx x && ok "imported through the daemon" || fail "imported"
check "grant bob" b grant srv /team "$work/bob.pub" --name bob
check "bob writes with his own key" b put --key "$work/bob" srv /team/b <"$work/small"
must_fail "bob outside his grant" "grant" b put --key "$work/bob" srv /nope <"$work/small"
b ls srv / | grep -qx nope && fail "refused write is visible" || ok "refused write changed nothing"
check "log" b log srv /d/small
[ "$(grep -c . "$work/out")" -ge 3 ] && ok "log has the versions" || fail "log: $(cat "$work/out")"
hash=$(head -1 "$work/out" | cut -d' ' -f1)
check "rm -r" b rm -r srv /d/sub
check "keys" b keys srv
grep -q "^bob " "$work/out" && ok "keys lists bob" || fail "keys"
check "revoke bob" b revoke srv /team bob
must_fail "bob after revoke" "grant" b put --key "$work/bob" srv /team/c <"$work/small"

kill -TERM "$serve_pid"; wait "$serve_pid"; rc=$?; serve_pid=
[ $rc -eq 0 ] && ok "serve stopped cleanly" || fail "serve exit $rc: $(tail -3 "$work/serve.log")"

# Offline again: everything acknowledged is there.
b cat srv /big >"$work/out"; same "large file after the daemon" "$work/big" "$work/out"
b cat srv /d/small >"$work/out"; same "moved file after the daemon" "$work/small" "$work/out"
b cat srv /team/b >"$work/out"; same "bob's file after the daemon" "$work/small" "$work/out"
b ls srv /d | grep -qx sub && fail "rm -r undone" || ok "rm -r stayed"
check "put offline again" b put srv /offline <"$work/small"

echo "1..$step"
[ $failures -eq 0 ] || { echo "$failures failed"; exit 1; }
