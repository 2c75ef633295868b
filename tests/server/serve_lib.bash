# Sourced by the black-box serve scripts (tests/server/test_*.sh) once they
# run in their own network namespace: a scratch $T with BASEFS_HOME in it,
# fail() (prints every $T/log* file), serve_wait/stop for one daemon at a
# time in $P, and cleanup at exit (also of the pids in $KILL_AT_EXIT).
T=$(mktemp -d)
export BASEFS_HOME=$T/home
P=
KILL_AT_EXIT=
serve_lib_cleanup() {
  [ -n "$P" ] && kill -9 "$P" 2>/dev/null
  for k in $KILL_AT_EXIT; do kill -9 "$k" 2>/dev/null; done
  rm -rf "$T"
}
trap serve_lib_cleanup EXIT
fail() { echo "FAIL: $*" >&2; for f in "$T"/log*; do [ -f "$f" ] && sed "s|^|  $(basename "$f"): |" "$f" >&2; done; exit 1; }
# serve_wait LOG ARGS...: starts `basefs serve t ARGS...` with its log in
# LOG, waits for the serving line; fails (1) if it exits first.
serve_wait() {
  local log=$1; shift
  : > "$log" # exists before the loop below reads it
  "$B" serve t "$@" 2>"$log" &
  P=$!
  for _ in $(seq 100); do
    grep -q "^info: serving" "$log" && return 0
    kill -0 "$P" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
# stop: SIGTERM, and the daemon's exit status.
stop() { kill -TERM "$P"; wait "$P"; local rc=$?; P=; return $rc; }
