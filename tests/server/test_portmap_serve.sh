#!/bin/bash
# basefs serve and port mapping, black-box, in a private network namespace
# (root + unshare; skipped otherwise) where port 2049 and 111 are ours:
#  - with the host's rpcbind running, a daemon on 2049 registers NFS v3 and
#    MOUNT v1/v3 for tcp, udp, tcp6, udp6, and unregisters on SIGTERM;
#  - without rpcbind it warns once and serves anyway;
#  - `serve --portmap` answers GETPORT (PMAP v2, rpcinfo -u/-t) and rpcbind
#    v4 GETADDR for IPv6 itself, and refuses to start if rpcbind has port 111;
#  - both advertise each address family with its own port (IPv4 2049 and
#    IPv6 3049), and warn about an address they cannot advertise.
set -u
B=${BASEFS:?}
if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null || ! command -v rpcinfo >/dev/null; then
  echo "# skipped: needs root, unshare and rpcinfo"
  exit 77
fi
if [ -z "${BASEFS_PM_INNER:-}" ]; then
  BASEFS_PM_INNER=1 exec unshare --net --mount "$0" "$@"
fi
ip link set lo up || { echo "# skipped: no loopback in the namespace"; exit 77; }
. "$(dirname "$0")/serve_lib.bash"
RB=

"$B" genkey >/dev/null || fail genkey
"$B" bootstrap t || fail bootstrap

# 1. rpcbind present.
if command -v rpcbind >/dev/null; then
  mount -t tmpfs tmpfs /run || fail "tmpfs on /run"
  rpcbind -w -f &
  RB=$!
  KILL_AT_EXIT=$RB
  for _ in $(seq 50); do rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.05; done
  serve_wait "$T/log1" || fail "serve did not start"
  grep -q "registered NFS and MOUNT on port 2049 with rpcbind" "$T/log1" || fail "no registration line"
  rpcinfo 127.0.0.1 >"$T/rpcinfo" || fail rpcinfo
  for want in "100003 3 tcp 0.0.0.0.8.1" "100003 3 udp 0.0.0.0.8.1" "100005 1 udp 0.0.0.0.8.1" \
              "100005 3 tcp 0.0.0.0.8.1" "100003 3 tcp6 ::1.8.1" "100005 3 udp6 ::1.8.1"; do
    awk '{print $1, $2, $3, $4}' "$T/rpcinfo" | grep -qx "$want" || fail "rpcbind lacks '$want'"
  done
  rpcinfo -u 127.0.0.1 100003 3 >/dev/null || fail "NFS over UDP through rpcbind"
  rpcinfo -t 127.0.0.1 100005 3 >/dev/null || fail "MOUNT over TCP through rpcbind"
  rpcinfo -T tcp6 ::1 100003 3 >/dev/null || fail "NFS over tcp6 through rpcbind"
  stop || fail "serve exit status"
  [ "$(rpcinfo 127.0.0.1 | grep -cE ' (100003|100005) ')" = 0 ] || fail "still registered after exit"
  # Each family with its own port: IPv4 2049, IPv6 3049 (::1.11.233); a
  # second IPv4 address on another port cannot be registered: one warning.
  serve_wait "$T/log5" --nfs 127.0.0.1:2049 --nfs '[::1]:3049' --nfs 127.0.0.2:4049 ||
    fail "serve on mixed ports did not start"
  grep -q "registered NFS and MOUNT on port 2049 for IPv4 and port 3049 for IPv6 with rpcbind" "$T/log5" ||
    fail "no mixed-port registration line"
  grep -q "advertises IPv4 port 2049 only: clients of 127.0.0.2:4049 need -o port=4049,mountport=4049" \
    "$T/log5" || fail "no warning for the unadvertised 127.0.0.2:4049"
  rpcinfo 127.0.0.1 >"$T/rpcinfo" || fail rpcinfo
  for want in "100003 3 tcp 0.0.0.0.8.1" "100005 3 udp 0.0.0.0.8.1" "100003 3 tcp6 ::1.11.233" \
              "100005 3 udp6 ::1.11.233"; do
    awk '{print $1, $2, $3, $4}' "$T/rpcinfo" | grep -qx "$want" || fail "rpcbind lacks '$want' (mixed ports)"
  done
  rpcinfo -T tcp6 ::1 100003 3 >/dev/null || fail "NFS over tcp6 through rpcbind (port 3049)"
  stop || fail "serve exit status (mixed ports)"
  # --portmap while rpcbind holds port 111: a clear refusal, no hang.
  timeout 20 "$B" serve t --portmap 2>"$T/log2"
  rc=$?
  [ $rc = 1 ] || fail "serve --portmap with rpcbind running: status $rc"
  grep -q "cannot answer port mapping on port 111" "$T/log2" || fail "no --portmap error"
  kill "$RB"; wait "$RB" 2>/dev/null; RB= KILL_AT_EXIT=
fi

# 2. No rpcbind: one warning, serving goes on.
serve_wait "$T/log3" || fail "serve without rpcbind did not start"
[ "$(grep -c 'not registered with rpcbind' "$T/log3")" = 1 ] || fail "want one warning"
stop || fail "serve exit status (no rpcbind)"

# 3. --portmap: we answer port mapping ourselves.
serve_wait "$T/log4" --portmap || fail "serve --portmap did not start"
rpcinfo -p 127.0.0.1 >"$T/pmap" || fail "rpcinfo -p (DUMP)"
grep -qE '100003 +3 +tcp +2049 ' "$T/pmap" || fail "DUMP lacks NFS tcp"
grep -qE '100005 +3 +udp +2049 ' "$T/pmap" || fail "DUMP lacks MOUNT udp"
rpcinfo -u 127.0.0.1 100003 3 >/dev/null || fail "GETPORT NFS udp"
rpcinfo -t 127.0.0.1 100005 1 >/dev/null || fail "GETPORT MOUNT v1 tcp"
rpcinfo -T udp6 ::1 100005 3 >/dev/null || fail "GETADDR MOUNT udp6"
rpcinfo -u 127.0.0.1 100021 4 >/dev/null 2>&1 && fail "NLM claimed"
stop || fail "serve --portmap exit status"

# 4. --portmap on mixed ports: GETPORT (IPv4) says 2049, GETADDR tcp6/udp6 3049.
serve_wait "$T/log6" --portmap --nfs 127.0.0.1:2049 --nfs '[::1]:3049' ||
  fail "serve --portmap on mixed ports did not start"
rpcinfo -p 127.0.0.1 >"$T/pmap" || fail "rpcinfo -p (DUMP, mixed ports)"
grep -qE '100003 +3 +tcp +2049 ' "$T/pmap" || fail "DUMP lacks NFS tcp 2049 (mixed ports)"
rpcinfo -T tcp6 ::1 100003 3 >/dev/null || fail "GETADDR NFS tcp6 (port 3049)"
rpcinfo -T udp6 ::1 100005 3 >/dev/null || fail "GETADDR MOUNT udp6 (port 3049)"
rpcinfo -t 127.0.0.1 100003 3 >/dev/null || fail "GETPORT NFS tcp (port 2049)"
stop || fail "serve --portmap exit status (mixed ports)"
exit 0
