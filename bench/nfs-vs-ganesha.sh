#!/bin/bash
# nfs-vs-ganesha.sh: basefs serve vs nfs-ganesha (VFS FSAL) vs the local disk,
# same workload (bench_nfs), same run, inside a private network + mount
# namespace (only lo; a private tmpfs on /run for rpcbind), so the ports and the
# rpcbind meet nobody else's.
#
#   sudo bench/nfs-vs-ganesha.sh [--build DIR] [--perf FILE] [bench_nfs options...]
#     --build DIR   build directory holding basefs and bench/bench_nfs
#                   (default: $BASEFS_BUILD or ./build)
#     --perf FILE   record `perf record -g` of the basefs daemon during the run
#                   into FILE (perf.data); report with `perf report -i FILE`;
#                   PERF_RECORD_ARGS="--call-graph dwarf -F 499" for better stacks
#     --compare BIN also serve the same workload from another basefs binary
#                   (e.g. a copy built before a change), target "before", placed
#                   second so the ratio column reads basefs/before
#     --no-ganesha, --no-local   leave those targets out
#   e.g. bench/nfs-vs-ganesha.sh --build build --small --rounds 3
#
# Needs root, nfs-ganesha nfs-ganesha-vfs rpcbind (Debian), unshare, ss.
# Data lives under ${TMPDIR:-/tmp} (same disk for all three).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(dirname "$HERE")

if [[ ${1:-} != --inside-namespace ]]; then
    ((EUID == 0)) || { echo "run as root (unshare, ganesha)" >&2; exit 2; }
    for c in ganesha.nfsd rpcbind rpcinfo unshare ss; do
        command -v "$c" >/dev/null || { echo "missing $c (apt-get install nfs-ganesha nfs-ganesha-vfs rpcbind)" >&2; exit 2; }
    done
    exec unshare --net --mount --fork "$0" --inside-namespace "$@"
fi
shift

BUILD=${BASEFS_BUILD:-$SRC/build}
PERF_OUT=
COMPARE=
GANESHA=1
LOCAL=1
ARGS=()
while (($#)); do
    case $1 in
        --build) BUILD=$2; shift 2 ;;
        --perf) PERF_OUT=$2; shift 2 ;;
        --compare) COMPARE=$2; shift 2 ;;
        --no-ganesha) GANESHA=; shift ;;
        --no-local) LOCAL=; shift ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
B=$BUILD/basefs
BENCH=$BUILD/bench/bench_nfs
[[ -x $B && -x $BENCH ]] || { echo "no $B or $BENCH (build first)" >&2; exit 2; }
[[ -z $COMPARE || -x $COMPARE ]] || { echo "no $COMPARE" >&2; exit 2; }

ip link set lo up
mount -t tmpfs tmpfs /run
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nfs-vs-ganesha.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

GPORT=12049 GMNT=12050
mkdir -p "$WORK/local"
if [[ -n $GANESHA ]]; then
    rpcbind -f & PIDS+=($!)
    for _ in $(seq 50); do rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.1; done
    mkdir -p "$WORK/ganesha-export"
    CONF=${GANESHA_CONF:-$SRC/../shared/tools/ganesha-example.conf}
    sed -e '/Bind_addr/d' -e "s#@EXPORT_DIR@#$WORK/ganesha-export#" \
        -e "s#@NFS_PORT@#$GPORT#" -e "s#@MNT_PORT@#$GMNT#" "$CONF" > "$WORK/ganesha.conf" || exit 1
    ganesha.nfsd -F -f "$WORK/ganesha.conf" -L "$WORK/ganesha.log" -p "$WORK/ganesha.pid" &
    GPID=$!
    PIDS=("$GPID" "${PIDS[@]}")
    for _ in $(seq 100); do ss -ltn | grep -q ":$GMNT " && break; sleep 0.1; done
    ss -ltn | grep -q ":$GMNT " || { tail -20 "$WORK/ganesha.log"; echo "ganesha did not start" >&2; exit 1; }
fi

# start_basefs BIN HOME LOG: bootstraps HOME, serves it, sets SPID and BPORT.
start_basefs() {
    BASEFS_HOME=$2 "$1" genkey >/dev/null && BASEFS_HOME=$2 "$1" bootstrap bench >/dev/null ||
        { echo "basefs bootstrap failed" >&2; exit 1; }
    BASEFS_HOME=$2 "$1" serve bench --nfs 127.0.0.1:0 2>"$3" &
    SPID=$!
    PIDS=("$SPID" "${PIDS[@]}")
    BPORT=
    for _ in $(seq 100); do
        BPORT=$(sed -n 's/^info: serving \/basefs of .* on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$3")
        [[ -n $BPORT ]] && return 0
        sleep 0.05
    done
    cat "$3"; echo "basefs serve did not start" >&2; exit 1
}
TARGETS=()
PIDARGS=()
if [[ -n $COMPARE ]]; then
    start_basefs "$COMPARE" "$WORK/home-before" "$WORK/serve-before.log"
    TARGETS+=(--nfs before=127.0.0.1:"$BPORT")
    PIDARGS+=(--pid before="$SPID")
fi
export BASEFS_HOME=$WORK/home
start_basefs "$B" "$BASEFS_HOME" "$WORK/serve.log"
TARGETS=(--nfs basefs=127.0.0.1:"$BPORT" "${TARGETS[@]}")
PIDARGS+=(--pid basefs="$SPID")
if [[ -n $GANESHA ]]; then
    TARGETS+=(--nfs ganesha=127.0.0.1:$GPORT:$GMNT)
    PIDARGS+=(--pid ganesha="$GPID")
fi
[[ -n $LOCAL ]] && TARGETS+=(--local "$WORK/local")

PERFPID=
if [[ -n $PERF_OUT ]]; then
    perf record ${PERF_RECORD_ARGS:--g} -p "$SPID" -o "$PERF_OUT" >/dev/null 2>"$WORK/perf.log" &
    PERFPID=$!
fi
echo "basefs $(git -C "$SRC" rev-parse --short HEAD 2>/dev/null) on :$BPORT, ${GANESHA:+ganesha $(ganesha.nfsd -v 2>&1 | grep -o 'Release = [^ ]*' | head -1) on :$GPORT/:$GMNT, }local $WORK/local ($(df --output=fstype "$WORK" | tail -1)), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$BENCH" "${TARGETS[@]}" "${PIDARGS[@]}" "${ARGS[@]}"
rc=$?
if [[ -n $PERFPID ]]; then
    kill -INT "$PERFPID"
    wait "$PERFPID"
fi
du -sh "$BASEFS_HOME" | sed 's/^/basefs store after the run: /'
grep -E "^(error|warn)" "$WORK/serve.log" | head -5
exit $rc
