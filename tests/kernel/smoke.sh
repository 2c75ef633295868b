#!/usr/bin/env bash
# The kernel-client harness end to end (not in ctest yet: it boots a VM):
# serve a fresh filesystem, let Debian's kernel read what the CLI wrote and
# write a file and a directory, then check through the CLI that they landed.
#   BASEFS=build/basefs tests/kernel/smoke.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
B=${BASEFS:-$here/../../build/basefs}
[[ -x $B ]] || { echo "smoke: no basefs binary at $B (set BASEFS)" >&2; exit 2; }
T=$(mktemp -d)
export BASEFS_HOME=$T/home
pid=""
trap '[[ -n $pid ]] && kill -9 "$pid" 2>/dev/null; rm -rf "$T"' EXIT
fail() { echo "smoke: FAIL: $*" >&2; sed 's/^/  serve: /' "$T/log" >&2; exit 1; }

"$B" genkey >/dev/null
"$B" bootstrap t >/dev/null
printf 'from the cli\n' | "$B" put t /cli.txt
"$B" serve t --nfs 127.0.0.1:0 2>"$T/log" &
pid=$!
port=""
for _ in $(seq 100); do
  port=$(sed -n 's/.*serving \/basefs of .* on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$T/log")
  [[ -n $port ]] && break
  sleep 0.05
done
[[ -n $port ]] || fail "serve did not start"

cat > "$T/guest.sh" <<'GUEST'
set -e
test "$(cat cli.txt)" = "from the cli"
echo "from the kernel" > kernel.txt
mkdir -p sub/dir
echo nested > sub/dir/f
ls -lR
GUEST
t0=$EPOCHREALTIME
"$here/knc.sh" --port "$port" "$T/guest.sh" > "$T/out" || { cat "$T/out"; fail "guest script failed"; }
echo "smoke: guest ran in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}') s"
kill -TERM "$pid"
wait "$pid" || fail "serve exited with $?"
pid=""
[[ $("$B" cat t /kernel.txt) == "from the kernel" ]] || fail "kernel.txt: $("$B" cat t /kernel.txt)"
[[ $("$B" cat t /sub/dir/f) == nested ]] || fail "sub/dir/f"
echo "smoke: ok"
