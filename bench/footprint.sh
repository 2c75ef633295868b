#!/bin/bash
# footprint.sh: what a serving basefs peer costs while idle.
#   bench/footprint.sh [--build DIR] [--idle SECONDS] [--files N]
# Prints the stripped size of the basefs binary, and the RSS (VmRSS, VmHWM)
# and CPU (utime+stime from /proc/PID/stat) of `basefs serve` over SECONDS of
# idleness (default 30), after N small files were written through the CLI
# (default 100) and one NFS listing (nfs-ls of the root) touched the daemon.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${BASEFS_BUILD:-$(dirname "$HERE")/build}
IDLE=30
FILES=100
while (($#)); do
    case $1 in
        --build) BUILD=$2; shift 2 ;;
        --idle) IDLE=$2; shift 2 ;;
        --files) FILES=$2; shift 2 ;;
        *) echo "usage: footprint.sh [--build DIR] [--idle SECONDS] [--files N]" >&2; exit 2 ;;
    esac
done
B=$BUILD/basefs
[[ -x $B ]] || { echo "no $B (build first)" >&2; exit 2; }
T=$(mktemp -d)
PID=
cleanup() {
    [[ -n $PID ]] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

cp "$B" "$T/basefs.stripped" && strip "$T/basefs.stripped"
printf '%-34s %10s\n' "basefs binary (as built)" "$(stat -c %s "$B") B"
printf '%-34s %10s\n' "basefs binary (stripped)" "$(stat -c %s "$T/basefs.stripped") B"
printf '%-34s %s\n' "shared libraries" "$(ldd "$B" | awk '{print $1}' | grep -v -E '^(linux-vdso|/lib64)' | sed 's/\.so.*//' | tr '\n' ' ')"

export BASEFS_HOME=$T/home
"$B" genkey >/dev/null && "$B" bootstrap fp >/dev/null || { echo "bootstrap failed" >&2; exit 1; }
"$B" mkdir fp /d >/dev/null || exit 1
for i in $(seq "$FILES"); do printf 'file %d\n' "$i" | "$B" put fp "/d/f$i" >/dev/null || exit 1; done
"$B" serve fp --nfs 127.0.0.1:0 2>"$T/log" &
PID=$!
PORT=
for _ in $(seq 100); do
    PORT=$(sed -n 's/^info: serving \/basefs of .* on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$T/log")
    [[ -n $PORT ]] && break
    sleep 0.05
done
[[ -n $PORT ]] || { cat "$T/log"; echo "serve did not start" >&2; exit 1; }
if command -v nfs-ls >/dev/null; then
    nfs-ls "nfs://127.0.0.1/basefs?version=3&nfsport=$PORT&mountport=$PORT" >/dev/null ||
        echo "warning: nfs-ls failed" >&2
fi
sleep 1
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
HZ=$(getconf CLK_TCK)
c0=$(ticks)
t0=$(date +%s.%N)
sleep "$IDLE"
c1=$(ticks)
t1=$(date +%s.%N)
rss=$(awk '/^VmRSS/ {print $2 " " $3}' "/proc/$PID/status")
hwm=$(awk '/^VmHWM/ {print $2 " " $3}' "/proc/$PID/status")
thr=$(awk '/^Threads/ {print $2}' "/proc/$PID/status")
fds=$(ls "/proc/$PID/fd" | wc -l)
printf '%-34s %10s\n' "serve: idle RSS (VmRSS)" "$rss"
printf '%-34s %10s\n' "serve: peak RSS (VmHWM)" "$hwm"
printf '%-34s %10s\n' "serve: threads / open fds" "$thr / $fds"
awk -v c0="$c0" -v c1="$c1" -v hz="$HZ" -v t0="$t0" -v t1="$t1" 'BEGIN {
    cpu = (c1 - c0) / hz; wall = t1 - t0;
    printf "%-34s %10s\n", "serve: idle CPU over " int(wall + 0.5) " s", sprintf("%.2f s (%.3f%%)", cpu, 100 * cpu / wall) }'
printf '%-34s %10s\n' "store on disk ($FILES files)" "$(du -sh "$BASEFS_HOME" | cut -f1)"
