#!/usr/bin/env bash
# The Linux kernel NFS client on our server, ordinary file work (one VM boot,
# guest half in guest-posix.sh): cp -a of a tree, tar create/extract, rename
# across directories while files are open, symlinks, hard links, chmod,
# truncate, a large dd read back after dropping the guest's caches, listing
# a directory of $KNC_MANY (10000) entries the host created, and a remount.
# Then every file the guest reports is compared through the CLI (sha256).
#   BASEFS=build/basefs tests/kernel/test_posix.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

many=${KNC_MANY:-10000}
knc_init
make_many /many "$many"
note "$many files in /many made through the CLI at $(elapsed) s"
serve_start
guest_start "$here/guest-posix.sh" "$many"

guest_wait
grep '^ok ' "$T/out" | sed "s/^/$knc_name: guest: /"
serve_stop TERM
sed -n 's/^M //p' "$T/out" > "$T/manifest"
check_manifest "$T/manifest"
"$B" ls t /r1 | grep -q '^\.nfs' && fail "silly-renamed .nfs files left in /r1: $("$B" ls t /r1)"
"$B" ls t /r2 | grep -q '^\.nfs' && fail "silly-renamed .nfs files left in /r2: $("$B" ls t /r2)"
"$B" ls t / | grep -qx 'untar' && fail "/untar still there after rm -r"
"$B" ls t / | grep -qx '.basefs' && fail "/.basefs listed"
note "ok in $(elapsed) s"
