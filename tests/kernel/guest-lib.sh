# guest-lib.sh — prepended to every guest script (busybox sh, cwd /mnt).
set -e
M=/mnt
fail() { echo "FAIL: $*"; exit 1; }
mark() { echo "@@ $*"; }
# await WORD: until the host wrote WORD into /knc/msg (tell WORD).
await() {
  i=0
  until [ "$(cat $M/knc/msg 2>/dev/null)" = "$1" ]; do
    i=$((i + 1))
    [ $i -lt 1200 ] || fail "await $1: /knc/msg is '$(cat $M/knc/msg 2>/dev/null)'"
    usleep 50000
  done
}
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
remount() {
  cd /
  umount $M || fail "umount"
  mount -t nfs -o "$KNC_OPTS" "$KNC_SERVER:/basefs" $M || fail "mount again"
  cd $M
}
# eq WHAT GOT WANT
eq() { [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
# manifest DIR PREFIX: "f SHA SIZE PATH" / "l TARGET PATH" / "d PATH" for
# everything below DIR, paths rewritten to PREFIX (sorted).
manifest() {
  (cd "$1" && find . | sort | while read -r p; do
    q="$2${p#.}"
    if [ -L "$p" ]; then echo "l $(readlink "$p") $q"
    elif [ -d "$p" ]; then echo "d $q"
    else echo "f $(sha "$p") $(stat -c %s "$p") $q"; fi
  done)
}
# attrs DIR: mode, links, size and mtime of everything below DIR (sorted);
# a directory's mode only: its mtime is the latest change in it, whatever
# utimes said (store/view.h, "Times"), so cp -a and tar cannot restore it.
attrs() {
  (cd "$1" && find . | sort | while read -r p; do
    if [ -L "$p" ]; then echo "$p link"
    elif [ -d "$p" ]; then stat -c '%n dir %a' "$p"
    else stat -c '%n %a %h %s %Y' "$p"; fi
  done)
}
ok() { echo "ok $* [at $(cut -d' ' -f1 /proc/uptime) s]"; }
