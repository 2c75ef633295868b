#!/usr/bin/env bash
# The CLI end to end, as a script uses it: keys, bootstrap, files, grants,
# revoke, history, revert, the writer lock, errors and --help.
set -uo pipefail

BASEFS=${BASEFS:?set BASEFS to the basefs binary}
export BASEFS_HOME=$(mktemp -d)
work=$(mktemp -d)
holder=
# The lock holder: flock -o keeps the lock in flock itself, not in its child.
release() {
  [ -n "$holder" ] || return 0
  pkill -P "$holder" 2>/dev/null
  kill "$holder" 2>/dev/null
  wait "$holder" 2>/dev/null
  holder=
}
# Waits until someone holds the lock (under load a background start is slow).
wait_held() {
  for i in $(seq 200); do
    flock -n "$lock" true 2>/dev/null || return 0
    sleep 0.05
  done
}
cleanup() {
  release
  rm -rf "$BASEFS_HOME" "$work"
}
trap cleanup EXIT

failures=0
step=0
ok() { step=$((step + 1)); echo "ok $step - $*"; }
fail() { step=$((step + 1)); echo "not ok $step - $*"; failures=$((failures + 1)); }
check() { # check DESCRIPTION COMMAND...: the command must succeed
  local what=$1; shift
  if "$@" >"$work/out" 2>"$work/err"; then ok "$what"; else fail "$what: $(head -c 300 "$work/err")"; fi
}
# must_fail DESCRIPTION PATTERN COMMAND...: non-zero exit, exactly one stderr line matching PATTERN
must_fail() {
  local what=$1 pattern=$2; shift 2
  if "$@" >"$work/out" 2>"$work/err"; then
    fail "$what: succeeded"
  elif [ "$(wc -l <"$work/err")" != 1 ]; then
    fail "$what: stderr is not one line: $(head -c 300 "$work/err")"
  elif ! grep -qE -- "$pattern" "$work/err"; then
    fail "$what: unexpected message: $(cat "$work/err")"
  else
    ok "$what"
  fi
}
same() { # same DESCRIPTION EXPECTED-FILE ACTUAL-FILE
  if cmp -s "$2" "$3"; then ok "$1"; else fail "$1: contents differ"; fi
}
b() { "$BASEFS" "$@"; }

# --- keys and bootstrap ---
check "genkey" b genkey
check "second key" b genkey --key "$work/bob"
check "bootstrap" b bootstrap fs1 --addr 10.0.0.1:7946 --addr 10.0.0.2:7946
must_fail "bootstrap twice" "already exists" b bootstrap fs1
check "list" b list
grep -qx fs1 "$work/out" && ok "list shows fs1" || fail "list shows fs1"
check "cat /.cluster" b cat fs1 /.cluster
printf '10.0.0.1:7946\n10.0.0.2:7946\n' >"$work/cluster"
same "/.cluster has the addresses" "$work/cluster" "$work/out"

# A bootstrap with no key makes one and says so.
(export BASEFS_HOME=$(mktemp -d)
 if "$BASEFS" bootstrap auto 2>"$work/err2" && grep -q "made a new one" "$work/err2" &&
    [ -f "$BASEFS_HOME/id_ec" ]; then echo ok; else echo no; fi
 rm -rf "$BASEFS_HOME") >"$work/auto"
grep -qx ok "$work/auto" && ok "bootstrap makes a key when none exists" || fail "bootstrap makes a key"

# --- put / cat: empty, small, ~1 KiB, 1 MiB (blocks) ---
check "put empty" b put fs1 /empty </dev/null
check "cat empty" b cat fs1 /empty
[ ! -s "$work/out" ] && ok "empty file is empty" || fail "empty file is empty"
echo "hello world" >"$work/small"
check "put small" b put fs1 /small <"$work/small"
check "cat small" b cat fs1 /small
same "small round trip" "$work/small" "$work/out"
head -c 1024 /dev/urandom | base64 >"$work/kib"
check "put 1KiB" b put fs1 /kib <"$work/kib"
check "cat 1KiB" b cat fs1 /kib
same "1KiB round trip" "$work/kib" "$work/out"
head -c 1048576 /dev/urandom >"$work/mib"
check "put 1MiB" b put fs1 /mib <"$work/mib"
check "cat 1MiB" b cat fs1 /mib
same "1MiB round trip" "$work/mib" "$work/out"
check "blocks" b blocks fs1
grep -qE '[1-9]' "$work/out" && ok "blocks reports counts" || fail "blocks reports counts"
# Options after the positional arguments work too.
check "put with --key after positionals" b put fs1 /small2 --key "$BASEFS_HOME/id_ec" <"$work/small"

# --- mkdir, ls sorted, mv, ln -s, chmod, rm -r ---
check "mkdir /etc" b mkdir fs1 /etc
must_fail "mkdir existing" "exist" b mkdir fs1 /etc
must_fail "put without parent" "no such|not exist|No such" b put fs1 /nodir/x <"$work/small"
for n in zeta alpha Mid 10 beta; do echo "$n" | b put fs1 "/etc/$n" || fail "put /etc/$n"; done
check "ls /etc" b ls fs1 /etc
printf '10\nMid\nalpha\nbeta\nzeta\n' >"$work/expect"
same "ls is sorted, one a line" "$work/expect" "$work/out"
check "ls /" b ls fs1 /
grep -qx etc "$work/out" && ! grep -q basefs "$work/out" && ok "ls / shows etc, hides .basefs" ||
  fail "ls / content: $(tr '\n' ' ' <"$work/out")"
check "mv" b mv fs1 /etc/alpha /etc/omega
check "ls after mv" b ls fs1 /etc
grep -qx omega "$work/out" && ! grep -qx alpha "$work/out" && ok "mv renamed" || fail "mv renamed"
check "cat moved" b cat fs1 /etc/omega
[ "$(cat "$work/out")" = alpha ] && ok "moved file keeps content" || fail "moved file keeps content"
check "mv into a directory" b mv fs1 /small2 /etc
b ls fs1 /etc | grep -qx small2 && ! b ls fs1 / | grep -qx small2 && ok "moved into /etc" || fail "moved into /etc"
check "mv over a file" b mv fs1 /etc/small2 /etc/Mid
b cat fs1 /etc/Mid >"$work/out"; same "mv replaced the target" "$work/small" "$work/out"
! b ls fs1 /etc | grep -qx small2 && ok "source name gone" || fail "source name gone"
must_fail "mv a directory into itself" "itself|Invalid" b mv fs1 /etc /etc/sub0
check "ln -s" b ln -s fs1 /etc/omega /link
check "cat symlink" b cat fs1 /link
[ "$(cat "$work/out")" = /etc/omega ] && ok "symlink holds its target" || fail "symlink target"
check "chmod" b chmod fs1 600 /etc/beta
must_fail "chmod bad mode" "octal" b chmod fs1 9z9 /etc/beta
check "mkdir nested" b mkdir fs1 /etc/sub
echo deep | b put fs1 /etc/sub/deep
must_fail "rm dir without -r" "directory|not empty" b rm fs1 /etc/sub
check "rm -r" b rm -r fs1 /etc/sub
check "ls after rm" b ls fs1 /etc
! grep -qx sub "$work/out" && ok "rm -r removed the tree" || fail "rm -r removed the tree"
must_fail "cat removed" "no such|not exist|No such" b cat fs1 /etc/sub/deep
check "rm file" b rm fs1 /etc/zeta
must_fail "rm missing" "no such|not exist|No such" b rm fs1 /etc/zeta

# --- grant, writes below the grant only, revoke ---
check "mkdir /team" b mkdir fs1 /team
check "grant bob /team" b grant fs1 /team "$work/bob.pub" --name bob
check "keys" b keys fs1
grep -q '^bob .* /team' "$work/out" && ok "keys lists bob on /team" || fail "keys: $(cat "$work/out")"
echo "by bob" >"$work/bobfile"
check "bob writes below his grant" b put --key "$work/bob" fs1 /team/b1 <"$work/bobfile"
check "bob mkdir below his grant" b mkdir --key "$work/bob" fs1 /team/d
must_fail "bob cannot remove the directory he was granted" "grant" b rm -r --key "$work/bob" fs1 /team
must_fail "bob cannot rename it either" "grant" b mv --key "$work/bob" fs1 /team /team2
check "bob removes inside his grant" b rm --key "$work/bob" fs1 /team/d
b ls fs1 / >"$work/before"
must_fail "bob outside his grant" "grant" b put --key "$work/bob" fs1 /outside <"$work/bobfile"
must_fail "bob overwrites outside" "grant" b put --key "$work/bob" fs1 /small <"$work/bobfile"
b ls fs1 / >"$work/after"
same "a refused write changes nothing" "$work/before" "$work/after"
b cat fs1 /small >"$work/out"; same "refused overwrite left content" "$work/small" "$work/out"
check "revoke bob" b revoke fs1 /team bob
must_fail "bob after revoke" "grant" b put --key "$work/bob" fs1 /team/b2 <"$work/bobfile"
check "bob's old file stays" b cat fs1 /team/b1
same "bob's old content" "$work/bobfile" "$work/out"
must_fail "revoke unknown key" "no active grant" b revoke fs1 /team nobody

# --- log and revert ---
for i in 1 2 3; do echo "version $i" >"$work/v$i"; b put fs1 /hist <"$work/v$i" || fail "put v$i"; done
check "log" b log fs1 /hist
cp "$work/out" "$work/log"
n=$(grep -c . "$work/log")
[ "$n" -ge 3 ] && ok "log lists every version ($n lines)" || fail "log lines: $n"
grep -qE '^[0-9a-f]{64} ' "$work/log" && ok "log lines start with the full hash" || fail "log format"
[ "$(grep -c ' current$' "$work/log")" -ge 1 ] && ok "log marks the current version" || fail "no current mark"
# Revert to each write version (oldest first) and check its content.
i=0
while read -r hash rest; do
  case "$rest" in *" write"*) ;; *) continue ;; esac
  i=$((i + 1))
  [ $i -le 3 ] || break
  check "revert to v$i" b revert fs1 /hist "$hash"
  b cat fs1 /hist >"$work/out"
  same "revert restores v$i" "$work/v$i" "$work/out"
  check "revert by 8-digit prefix to v$i" b revert fs1 /hist "${hash:0:8}"
done <"$work/log"
[ $i -eq 3 ] && ok "found 3 write versions" || fail "found $i write versions"
must_fail "revert to unknown hash" "version|unknown|no" b revert fs1 /hist deadbeefdeadbeef
must_fail "revert to short prefix" "8|prefix|hex" b revert fs1 /hist abc
# Undo a delete and a rename: revert the object to its creating entry.
echo keep >"$work/keep"
b put fs1 /undo <"$work/keep"
obj=$(b log fs1 /undo | head -1 | cut -d' ' -f1)
check "rm /undo" b rm fs1 /undo
check "log through /.basefs/history" b log fs1 "/.basefs/history/$obj/tree"
grep -q ' delete current$' "$work/out" && ok "history shows the delete" || fail "history: $(cat "$work/out")"
check "revert the delete" b revert fs1 "/.basefs/history/$obj/tree" "$obj"
b cat fs1 /undo >"$work/out"; same "deleted file is back" "$work/keep" "$work/out"
check "mv /undo /undone" b mv fs1 /undo /undone
check "revert the rename" b revert fs1 /undone "${obj:0:12}"
b ls fs1 / | grep -qx undo && ! b ls fs1 / | grep -qx undone && ok "rename undone" || fail "rename undone"
check "show" b show fs1
grep -q hist "$work/out" && ok "show lists paths" || fail "show lists paths"

# --- import: a host tree in one commit ---
mkdir -p "$work/tree/a/b" "$work/tree/empty"
echo one >"$work/tree/one"
echo secret >"$work/tree/a/secret"; chmod 600 "$work/tree/a/secret"
head -c 300000 /dev/urandom >"$work/tree/a/b/big"
ln -s ../one "$work/tree/a/link"
mkfifo "$work/tree/fifo"
check "mkdir /imp" b mkdir fs1 /imp
check "import" b import fs1 "$work/tree" /imp
grep -q "skipped 1" "$work/err" && ok "import counts what it skips" || fail "import skip count: $(cat "$work/err")"
b ls fs1 /imp >"$work/out"; printf 'a\nempty\none\n' >"$work/expect"
same "imported names" "$work/expect" "$work/out"
b cat fs1 /imp/a/b/big >"$work/out"; same "imported big file" "$work/tree/a/b/big" "$work/out"
b cat fs1 /imp/a/link >"$work/out"; [ "$(cat "$work/out")" = ../one ] && ok "imported link" || fail "imported link"
b log fs1 /imp/a/secret | grep -q ' mode current$' && ok "imported mode bits" || fail "imported mode bits"
b ls fs1 / >"$work/before"
must_fail "import where the key has no grant" "grant" b import --key "$work/bob" fs1 "$work/tree" /
b ls fs1 / >"$work/after"
same "a refused import changes nothing" "$work/before" "$work/after"

# --- the writer lock ---
lock="$BASEFS_HOME/fs/fs1/lock"
flock -o "$lock" sleep 30 &
holder=$!
wait_held
must_fail "second writer refused" "busy: another basefs process is writing it" b put fs1 /x <"$work/small"
check "reader works while a writer holds the lock" b cat fs1 /small
same "reader content under lock" "$work/small" "$work/out"
check "ls under lock" b ls fs1 /etc
release
check "writer works after release" b put fs1 /x <"$work/small"
# A holder that also writes its pid, as a basefs writer does: the message names it.
: >"$lock" # forget the last writer's pid, so we wait for the holder's
flock -o "$lock" sh -c 'echo $$ >"$1"; exec sleep 30' sh "$lock" &
holder=$!
wait_held
for i in $(seq 100); do grep -q . "$lock" && break; sleep 0.05; done
must_fail "second writer names the holder's pid" "busy.*pid [0-9]+" b mkdir fs1 /y
release

# --- errors and --help ---
must_fail "unknown fs" "no filesystem" b ls nope /
must_fail "missing args" "missing" b put fs1
must_fail "relative path" "start with /" b cat fs1 etc/beta
must_fail "too many args" "too many" b cat fs1 /a /b
must_fail "option not for this command" "does not apply" b ls -r fs1 /
must_fail "unknown option" "unknown option" b ls --bogus fs1 /
must_fail "cat a directory" "directory" b cat fs1 /etc
must_fail "bad key file" "key" b put --key "$work/nokey" fs1 /z <"$work/small"
for c in genkey bootstrap list keys grant revoke show log revert blocks ls cat put mkdir rm mv ln chmod import; do
  if b $c --help >"$work/out" 2>"$work/err" && grep -q "usage: basefs $c" "$work/out"; then
    ok "$c --help"
  else
    fail "$c --help"
  fi
done

echo "1..$step"
[ $failures -eq 0 ] || { echo "$failures failed"; exit 1; }
