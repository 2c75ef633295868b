#!/bin/bash
# basefs serve without --nfs, black-box, in a private network namespace
# (root + unshare; skipped otherwise) where port 2049 is free: it listens
# on 127.0.0.1:2049 and [::1]:2049, TCP and UDP, and both answer; with
# IPv6 disabled it warns about ::1 and still serves on 127.0.0.1:2049.
set -u
B=${BASEFS:?}
if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null || ! command -v od >/dev/null; then
  echo "# skipped: needs root and unshare"
  exit 77
fi
if [ -z "${BASEFS_DEFAULT_INNER:-}" ]; then
  BASEFS_DEFAULT_INNER=1 exec unshare --net bash "$0" "$@"
fi
ip link set lo up || { echo "# skipped: no loopback in the namespace"; exit 77; }
. "$(dirname "$0")/serve_lib.bash"
# null_ok tcp|udp HOST: an RPC NULL to NFS v3 on HOST port 2049 (bash's
# /dev/tcp and /dev/udp: rpcinfo -n still asks a port mapper) gets SUCCESS.
CALL='\x00\x00\x0b\xe9\x00\x00\x00\x00\x00\x00\x00\x02\x00\x01\x86\xa3\x00\x00\x00\x03'
CALL+='\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00'
REPLY=00000be900000001$(printf '0%.0s' {1..32}) # xid, REPLY, MSG_ACCEPTED, AUTH_NONE, SUCCESS
null_ok() {
  local got
  if [ "$1" = tcp ]; then
    got=$(exec 3<>"/dev/tcp/$2/2049" && printf "\x80\x00\x00\x28$CALL" >&3 &&
          timeout 2 head -c 28 <&3 | od -An -tx1 | tr -d ' \n')
    [ "$got" = "80000018$REPLY" ]
  else
    got=$(exec 3<>"/dev/udp/$2/2049" && printf "$CALL" >&3 &&
          timeout 2 head -c 24 <&3 | od -An -tx1 | tr -d ' \n')
    [ "$got" = "$REPLY" ]
  fi
}

"$B" genkey >/dev/null || fail genkey
"$B" bootstrap t || fail bootstrap

# 1. Both loopback addresses, TCP and UDP, port 2049.
serve_wait "$T/log1" || fail "serve did not start"
grep -q "^info: serving /basefs of t on 127.0.0.1:2049 and \[::1\]:2049 (read-write)$" "$T/log1" ||
  fail "no 'serving ... on 127.0.0.1:2049 and [::1]:2049' line"
grep -q "^info: TCP and UDP;" "$T/log1" || fail "not TCP and UDP"
null_ok tcp 127.0.0.1 || fail "NFS over TCP on 127.0.0.1:2049"
null_ok udp 127.0.0.1 || fail "NFS over UDP on 127.0.0.1:2049"
null_ok tcp ::1 || fail "NFS over TCP on [::1]:2049"
null_ok udp ::1 || fail "NFS over UDP on [::1]:2049"
grep -q "not listening" "$T/log1" && fail "a warning about an address"
stop || fail "serve exit status"

# 2. No IPv6 in the namespace: ::1 is optional.
sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.lo.disable_ipv6=1 ||
  { echo "# cannot disable IPv6 here: done"; exit 0; }
serve_wait "$T/log2" || fail "serve without IPv6 did not start"
grep -q "^warning: not listening on \[::1\]:2049: " "$T/log2" || fail "no warning about [::1]:2049"
grep -q "^info: serving /basefs of t on 127.0.0.1:2049 (read-write)$" "$T/log2" ||
  fail "no 'serving ... on 127.0.0.1:2049' line without IPv6"
null_ok tcp 127.0.0.1 || fail "NFS over TCP on 127.0.0.1:2049 without IPv6"
null_ok udp 127.0.0.1 || fail "NFS over UDP on 127.0.0.1:2049 without IPv6"
stop || fail "serve exit status without IPv6"
exit 0
