#!/bin/bash
# basefs serve / run, black-box: start on a free port, read what the CLI
# wrote before, write through NFS (libnfs's nfs-cp), stop with SIGTERM, and
# check through the CLI that the data became one version per file; a second
# daemon is refused; a peer without a key serves read-only.
set -u
B=${BASEFS:?}
T=$(mktemp -d)
export BASEFS_HOME=$T/home
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$T/log" ] && sed 's/^/  log: /' "$T/log" >&2; exit 1; }

# start_serve LOG ARGS...: starts the daemon, waits for its "serving" line, sets PORT and PID.
start_serve() {
  local log=$1; shift
  : > "$log" # exists before the loop below reads it
  "$B" "$@" >"$log.out" 2>"$log" &
  PID=$!
  pids+=("$PID")
  for _ in $(seq 100); do
    PORT=$(sed -n 's/^info: serving \/basefs of .* on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$log" 2>/dev/null)
    [ -n "$PORT" ] && return 0
    kill -0 "$PID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
stop_serve() {
  kill -TERM "$PID"
  wait "$PID"
}

"$B" genkey >/dev/null || fail genkey
"$B" bootstrap t || fail bootstrap
printf 'written before serve\n' | "$B" put t /pre || fail put
"$B" mkdir t /dir || fail mkdir

# Argument errors are clear and non-zero.
"$B" serve 2>"$T/err" && fail "serve without NAME succeeded"
grep -q "NAME" "$T/err" || fail "no NAME message: $(cat "$T/err")"
"$B" serve t --nfs nonsense 2>"$T/err" && fail "bad --nfs accepted"
grep -q "bad --nfs address" "$T/err" || fail "bad --nfs message: $(cat "$T/err")"
"$B" serve nosuch --nfs 127.0.0.1:0 2>"$T/err" && fail "unknown filesystem served"
grep -q "no filesystem named nosuch" "$T/err" || fail "unknown fs message: $(cat "$T/err")"

for bad in abc -1 100001 ""; do
  "$B" serve t --nfs 127.0.0.1:0 --spin-us "$bad" 2>"$T/err" && fail "--spin-us '$bad' accepted"
  grep -q -- "--spin-us takes microseconds" "$T/err" || fail "--spin-us '$bad' message: $(cat "$T/err")"
done
# The same address twice (however spelled), or a second --exports / --key,
# is an error, not a bind failure or a silent last-one-wins.
timeout 10 "$B" serve t --nfs 127.0.0.1:4049 --nfs 127.0.0.1:04049 2>"$T/err" && fail "--nfs twice accepted"
grep -q -- "--nfs 127.0.0.1:04049 given twice" "$T/err" || fail "--nfs twice message: $(cat "$T/err")"
# (timeout: a serve that took one of them would run until stopped)
timeout 10 "$B" serve t --nfs 127.0.0.1:0 --exports "$T/a" --exports "$T/b" 2>"$T/err" && fail "--exports twice accepted"
grep -q -- "--exports given twice ('$T/a' and '$T/b')" "$T/err" || fail "--exports twice message: $(cat "$T/err")"
timeout 10 "$B" serve t --nfs 127.0.0.1:0 --key "$T/a" --key "$T/b" 2>"$T/err" && fail "--key twice accepted"
grep -q -- "--key given twice" "$T/err" || fail "--key twice message: $(cat "$T/err")"
# --spin-us reaches the TCP server (default 50 us).
start_serve "$T/log" serve t --nfs 127.0.0.1:0 --verbose --spin-us 7 || fail "serve --spin-us did not start"
grep -q "polling 7 us for the next call" "$T/log" || fail "--spin-us 7 not applied: $(cat "$T/log")"
stop_serve
start_serve "$T/log" serve t --nfs 127.0.0.1:0 --verbose || fail "serve --verbose did not start"
grep -q "polling 50 us for the next call" "$T/log" || fail "default spin not applied: $(cat "$T/log")"
stop_serve
# A low soft limit on descriptors (1024 is common) is raised to what serve
# needs, as far as the hard limit allows.
hard=$(ulimit -Hn)
want=65536
[ "$hard" != unlimited ] && [ "$hard" -lt $want ] && want=$hard
if [ "$want" -gt 256 ]; then
  (ulimit -Sn 256 && exec "$B" serve t --nfs 127.0.0.1:0 --verbose) 2>"$T/log" &
  PID=$!
  pids+=("$PID")
  for _ in $(seq 100); do grep -q "^info: serving" "$T/log" && break; sleep 0.05; done
  soft=$(awk '/^Max open files/ {print $4}' "/proc/$PID/limits")
  [ "$soft" = "$want" ] || fail "soft descriptor limit $soft, want $want"
  grep -q "file descriptors: $want (was 256)" "$T/log" || fail "no descriptor line: $(cat "$T/log")"
  stop_serve
fi

start_serve "$T/log" serve t --nfs 127.0.0.1:0 || fail "serve did not start"
grep -q "^info: serving /basefs of t on 127.0.0.1:$PORT (read-write)" "$T/log" || fail "no serving line"
U="?version=3&nfsport=$PORT&mountport=$PORT"

# What the CLI wrote before serve started is read by NFS.
got=$(nfs-cat "nfs://127.0.0.1/basefs/pre$U") || fail nfs-cat
[ "$got" = "written before serve" ] || fail "nfs-cat gave '$got'"
nfs-ls "nfs://127.0.0.1/basefs$U" >"$T/ls" || fail nfs-ls
grep -q " pre$" "$T/ls" && grep -q " dir$" "$T/ls" || fail "nfs-ls: $(cat "$T/ls")"
grep -q "\.basefs" "$T/ls" && fail ".basefs listed"

# While serving, the CLI writes through the control socket and NFS reads
# it at once; what NFS COMMITted the CLI reads at once.
[ -S "$BASEFS_HOME/fs/t/ctl" ] || fail "no control socket"
printf 'put while serving\n' | "$B" put t /live || fail "put through the control socket"
"$B" mkdir t /livedir || fail "mkdir through the control socket"
[ "$(nfs-cat "nfs://127.0.0.1/basefs/live$U")" = "put while serving" ] || fail "NFS does not see the put"
nfs-ls "nfs://127.0.0.1/basefs$U" | grep -q " livedir$" || fail "NFS does not see the mkdir"
printf 'through nfs\n' >"$T/viaf"
nfs-cp "$T/viaf" "nfs://127.0.0.1/basefs/vianfs$U" >/dev/null || fail "nfs-cp vianfs"
[ "$("$B" cat t /vianfs)" = "through nfs" ] || fail "the CLI does not see the committed NFS write"
# The server keeps a copy of what NFS wrote; a CLI update must replace it.
printf 'cli update\n' | "$B" put t /vianfs || fail "CLI update of an NFS-written file"
[ "$(nfs-cat "nfs://127.0.0.1/basefs/vianfs$U")" = "cli update" ] || fail "NFS still shows the old copy"
printf 'second\n' | "$B" put t /live || fail "update through the control socket"
[ "$(nfs-cat "nfs://127.0.0.1/basefs/live$U")" = "second" ] || fail "NFS does not see the update"

# A second filesystem on a busy port: a clear error.
"$B" bootstrap t2 || fail "bootstrap t2"
"$B" serve t2 --nfs "127.0.0.1:$PORT" 2>"$T/err3" && fail "served on a busy port"
grep -q "cannot listen on 127.0.0.1:$PORT" "$T/err3" || fail "busy port message: $(cat "$T/err3")"

# A second daemon on the same filesystem is refused, clearly.
"$B" serve t --nfs 127.0.0.1:0 2>"$T/err2" && fail "second daemon started"
grep -q "already in use by process $PID" "$T/err2" || fail "second daemon message: $(cat "$T/err2")"

# Writes through NFS.
head -c 2500000 /dev/urandom >"$T/big"
printf 'small file\n' >"$T/small"
nfs-cp "$T/big" "nfs://127.0.0.1/basefs/big$U" >/dev/null || fail "nfs-cp big"
nfs-cp "$T/small" "nfs://127.0.0.1/basefs/small$U" >/dev/null || fail "nfs-cp small"
nfs-cp "nfs://127.0.0.1/basefs/big$U" "$T/big.back" >/dev/null || fail "nfs-cp back"
cmp -s "$T/big" "$T/big.back" || fail "big read back differs"

stop_serve || fail "serve did not exit 0 on SIGTERM"
grep -q "^info: stopped" "$T/log" || fail "no stopped line"
[ -e "$BASEFS_HOME/fs/t/ctl" ] && fail "control socket left behind"

# After serve: the CLI sees the NFS writes, one version per file write.
"$B" cat t /big | cmp -s - "$T/big" || fail "basefs cat /big differs"
[ "$("$B" cat t /small)" = "small file" ] || fail "basefs cat /small"
n=$("$B" log t /big | grep -c " write")
[ "$n" -le 2 ] || fail "/big has $n write versions (want create + one per COMMIT)"

# Two addresses (IPv6 loopback when the host has it).
if ip -6 addr show lo 2>/dev/null | grep -q "::1"; then
  start_serve "$T/log3" serve t --nfs 127.0.0.1:0 --nfs "[::1]:0" || fail "serve on two addresses"
  grep -q "on 127.0.0.1:$PORT and \[::1\]:[0-9]* (read-write)" "$T/log3" || fail "two addresses: $(cat "$T/log3")"
  stop_serve || fail "stop (two addresses)"
fi

# Exports: a bad file refuses to start; a read-only one refuses writes.
printf '127.0.0.1/33 rw\n' >"$T/bad.exports"
"$B" serve t --nfs 127.0.0.1:0 --exports "$T/bad.exports" 2>"$T/err4" && fail "bad exports accepted"
grep -q "line 1" "$T/err4" || fail "bad exports message: $(cat "$T/err4")"
printf '127.0.0.1/32 ro,no_root_squash\n' >"$T/ro.exports"
start_serve "$T/log4" serve t --nfs 127.0.0.1:0 --exports "$T/ro.exports" || fail "serve with exports"
grep -q "^info: TCP and UDP; exports: $T/ro.exports" "$T/log4" || fail "no exports line: $(cat "$T/log4")"
U="?version=3&nfsport=$PORT&mountport=$PORT"
nfs-cp "$T/small" "nfs://127.0.0.1/basefs/ro$U" >/dev/null 2>&1 && fail "read-only export accepted a write"
[ "$(nfs-cat "nfs://127.0.0.1/basefs/small$U")" = "small file" ] || fail "read through a read-only export"
stop_serve || fail "stop (exports)"

# `run` is the same command; a missing key means read-only.
start_serve "$T/log2" run t --nfs 127.0.0.1:0 --key "$T/nokey" || fail "run did not start"
grep -q "^warning: no key at $T/nokey: serving read-only" "$T/log2" || fail "no read-only warning"
grep -q "(read-only)" "$T/log2" || fail "not read-only"
U="?version=3&nfsport=$PORT&mountport=$PORT"
nfs-cp "$T/small" "nfs://127.0.0.1/basefs/ro$U" >/dev/null 2>&1 && fail "read-only peer accepted a write"
got=$(nfs-cat "nfs://127.0.0.1/basefs/small$U") || fail "nfs-cat on read-only peer"
[ "$got" = "small file" ] || fail "read-only nfs-cat gave '$got'"
kill -INT "$PID"
wait "$PID" || fail "run did not exit 0 on SIGINT"
"$B" cat t /ro >/dev/null 2>&1 && fail "/ro exists"
echo "ok"
