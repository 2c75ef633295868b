# tests/kernel/lib.sh — sourced by tests/kernel/test_*.sh (bash, set -euo pipefail).
#
# Each test: a fresh $BASEFS_HOME with a key and filesystem "t", `basefs
# serve` in the background, one VM boot through knc.sh running a guest
# script (guest-lib.sh + the test's guest-*.sh), then checks from the host
# through the CLI.
#
# When we may (root), the test re-runs itself in a network namespace of its
# own: its server's port cannot collide with another test's, and a restarted
# server gets the same port back. QEMU runs in that namespace too; its
# user-mode network reaches the namespace's 127.0.0.1 as 10.0.2.2.
#
# Guest -> host: the guest prints "@@ WORD" lines (mark WORD); the host waits
# for them with wait_mark (knc.sh --out writes the guest's output as it comes).
# Host -> guest: the host writes /knc/msg with the CLI (tell WORD); the guest
# polls it (await WORD) — close-to-open makes every open revalidate.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
knc_name=$(basename "$0" .sh)

if [[ -z ${KNC_NETNS:-} ]]; then
  if ((EUID == 0)) && unshare --net true 2>/dev/null; then
    # The namespace has no network: fetch the guest kernel first (once).
    bash "$here/knc.sh" --prepare || { echo "$knc_name: cannot prepare the guest kernel" >&2; exit 1; }
    KNC_NETNS=1 exec unshare --net -- bash "$0" "$@"
  fi
  KNC_NETNS=0
fi
if [[ $KNC_NETNS == 1 ]]; then
  ip link set lo up
fi

B=${BASEFS:-$here/../../build/basefs}
[[ -x $B ]] || { echo "$knc_name: no basefs binary at $B (set BASEFS)" >&2; exit 2; }
T=$(mktemp -d "${TMPDIR:-/tmp}/$knc_name.XXXXXX")
export BASEFS_HOME=$T/home
FSDIR=$BASEFS_HOME/fs/t
spid="" kpid="" port="" nserve=0 t_start=$EPOCHREALTIME

knc_cleanup() {
  # TERM, not KILL, for knc.sh: its EXIT trap stops QEMU.
  { [[ -n $kpid ]] && kill "$kpid" && wait "$kpid"; } 2>/dev/null || true
  { [[ -n $spid ]] && kill -9 "$spid" && wait "$spid"; } 2>/dev/null || true
  if [[ -n ${KNC_KEEP:-} ]]; then echo "$knc_name: kept $T" >&2; else rm -rf "$T"; fi
}
trap knc_cleanup EXIT

note() { echo "$knc_name: $*"; }
elapsed() { awk -v a="$t_start" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}'; }
fail() {
  echo "$knc_name: FAIL: $*" >&2
  local f
  for f in "$T"/serve.*.log; do
    [[ -s $f ]] && sed "s|^|  ${f##*/}: |" "$f" | tail -n 20 >&2
  done
  if [[ -s $T/out ]]; then echo "  guest output (tail):" >&2; tail -n 40 "$T/out" | sed 's/^/  | /' >&2; fi
  exit 1
}

# A key and filesystem t.
knc_init() {
  "$B" genkey >/dev/null
  "$B" bootstrap t >/dev/null
  "$B" mkdir t /knc
  printf 'start' | "$B" put t /knc/msg
}

# serve_start [PORT]: serves t on 127.0.0.1:PORT (0: any); sets $port, $spid.
serve_start() {
  local want=${1:-0} log=$T/serve.$nserve.log i
  nserve=$((nserve + 1))
  : > "$log" # before the child opens it: the sed below must find it (set -e)
  "$B" serve t --nfs "127.0.0.1:$want" 2>"$log" &
  spid=$!
  for ((i = 0; i < 200; i++)); do
    port=$(sed -n 's/.*serving \/basefs of t on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
    [[ -n $port ]] && return 0
    kill -0 "$spid" 2>/dev/null || break
    sleep 0.05
  done
  fail "serve did not start (log $log)"
}

# serve_stop [SIGNAL]: stops the server; a TERM must end in exit 0.
serve_stop() {
  local sig=${1:-TERM} rc=0
  kill -"$sig" "$spid"
  { wait "$spid"; } 2>/dev/null || rc=$?  # (no "Killed" line from bash)
  spid=""
  if [[ $sig == TERM && $rc != 0 ]]; then fail "serve exited with $rc after SIGTERM"; fi
  # Sanitizer builds (BASEFS=build-asan/basefs): any report fails the test.
  if grep -q 'runtime error\|Sanitizer' "$T/serve.$((nserve - 1)).log"; then
    fail "sanitizer report in serve.$((nserve - 1)).log"
  fi
  return 0
}

# guest_start GUEST_SCRIPT [ARG...]: boots the VM in the background
# (timeout $KNC_TIMEOUT, default 240 s).
guest_start() {
  local script=$1; shift
  cat "$here/guest-lib.sh" "$script" > "$T/guest.sh"
  : > "$T/out"
  "$here/knc.sh" --port "$port" --timeout "${KNC_TIMEOUT:-240}" --out "$T/out" "$T/guest.sh" "$@" \
    2>"$T/knc.err" &
  kpid=$!
}

# guest_wait: waits for the VM; fails unless the guest script passed.
guest_wait() {
  local rc=0
  wait "$kpid" || rc=$?
  kpid=""
  if ((rc != 0)); then
    cat "$T/knc.err" >&2
    fail "guest script exited with $rc"
  fi
}

# wait_mark WORD [TIMEOUT]: until the guest printed "@@ WORD".
wait_mark() {
  local deadline=$((${EPOCHREALTIME%.*} + ${2:-120}))
  until grep -qx "@@ $1" "$T/out" 2>/dev/null; do
    if [[ -z $kpid ]] || ! kill -0 "$kpid" 2>/dev/null; then
      guest_wait
      fail "the guest ended before @@ $1"
    fi
    ((${EPOCHREALTIME%.*} < deadline)) || fail "no @@ $1 from the guest"
    sleep 0.02
  done
}

# tell WORD: the guest's `await WORD` returns.
tell() { printf '%s' "$1" | "$B" put t /knc/msg || fail "put /knc/msg"; }

# sha256 of a file of t, read through the CLI.
cli_sha() { "$B" cat t "$1" | sha256sum | cut -d' ' -f1; }

# check_manifest FILE: every line "f SHA SIZE PATH", "l TARGET PATH" or
# "d PATH" the guest printed must match what the CLI reads.
check_manifest() {
  local kind a b p n=0 got line
  while IFS= read -r line; do
    read -r kind a b p <<< "$line"
    [[ $kind == d ]] && a=${line#d }
    case $kind in
      f) got=$(cli_sha "$p") || fail "cli cat $p"
         [[ $got == "$a" ]] || fail "$p: sha256 through the CLI $got, guest $a" ;;
      l) b+=${p:+ $p}
         got=$("$B" cat t "$b") || fail "cli cat $b"
         [[ $got == "$a" ]] || fail "$b: symlink target through the CLI '$got', guest '$a'" ;;
      d) "$B" ls t "$a" >/dev/null || fail "cli ls $a" ;;
      *) fail "bad manifest line: $kind $a $b $p" ;;
    esac
    n=$((n + 1))
  done < "$1"
  ((n > 0)) || fail "empty manifest $1"
  note "$n manifest entries agree through the CLI"
}

# make_many DIR N: DIR with files f00001..fN (content: the name), made on
# the host in one `basefs import` (one process, one commit).
make_many() {
  local dir=$1 n=$2 src=$T/many-src
  mkdir -p "$src/${dir##*/}"
  awk -v n="$n" -v d="$src/${dir##*/}" 'BEGIN {
    for (i = 1; i <= n; i++) { f = sprintf("%s/f%05d", d, i); printf "f%05d\n", i > f; close(f) } }'
  "$B" import t "$src" "${dir%/*}/" || fail "import of $n files into $dir"
  rm -rf "$src"
}

# guest_start_local GUEST_SCRIPT [ARG...]: like guest_start, but with no
# server on the host and nothing mounted: the guest gets $B (as `basefs`)
# and the host's mount.nfs (knc.sh --no-mount --bin) and runs basefs itself.
guest_start_local() {
  local script=$1 m; shift
  mkdir -p "$T/bin" && ln -sf "$(realpath "$B")" "$T/bin/basefs" # knc.sh keeps the name
  m=$(command -v mount.nfs || PATH=/usr/sbin:/sbin command -v mount.nfs) ||
    fail "no mount.nfs to copy into the guest (Debian: nfs-common)"
  local bins=(--bin "$T/bin/basefs" --bin "$m")
  cat "$here/guest-lib.sh" "$script" > "$T/guest.sh"
  : > "$T/out"
  "$here/knc.sh" --no-mount "${bins[@]}" --timeout "${KNC_TIMEOUT:-240}" --out "$T/out" \
    "$T/guest.sh" "$@" 2>"$T/knc.err" &
  kpid=$!
}
