# guest-posix.sh — test_posix's guest half (after guest-lib.sh). Ordinary
# file work through the kernel client; everything it leaves on the mount is
# listed as "M ..." manifest lines the host checks through the CLI.
# Args: $1 = the number of files the host put in /many.
MANY=$1

# ---- a source tree in the guest's RAM ----------------------------------------
S=/tmp/src
mkdir -p $S/a/b/c/d/e $S/empty $S/x "$S/with space" $S/modes
: > $S/zero
printf 1 > $S/one
dd if=/dev/urandom of=$S/a/r4095 bs=4095 count=1 2>/dev/null
dd if=/dev/urandom of=$S/a/r4096 bs=4096 count=1 2>/dev/null
dd if=/dev/urandom of=$S/a/b/r4097 bs=4097 count=1 2>/dev/null
dd if=/dev/urandom of=$S/a/b/c/r65537 bs=65537 count=1 2>/dev/null
dd if=/dev/urandom of=$S/a/b/c/d/e/big bs=1048579 count=1 2>/dev/null
cp -a /mods $S/mods
cp /bin/busybox $S/x/busybox
seq 1 20000 > "$S/with space/seq file"
echo deep > $S/a/b/c/d/e/deep.txt
long=$(printf 'n%.0s' $(seq 1 250)).txt
echo long > "$S/x/$long"
echo "hard link" > $S/a/h1
ln $S/a/h1 $S/x/h2
ln $S/a/h1 $S/a/h3
ln -s ../a/b/r4097 $S/x/rel
ln -s /etc/nowhere $S/x/dangling
ln -s a/b $S/dirlink
for m in 600 644 640 755 700 444 4755 2755; do echo $m > $S/modes/f$m; chmod $m $S/modes/f$m; done
mkdir $S/modes/d700 $S/modes/d1777 $S/modes/d2775
chmod 700 $S/modes/d700; chmod 1777 $S/modes/d1777; chmod 2775 $S/modes/d2775
touch -d '2001-02-03 04:05:06' $S/one $S/a/b
manifest $S /tree > /tmp/src.manifest
attrs $S > /tmp/src.attrs

# ---- cp -a --------------------------------------------------------------------
cp -a $S $M/tree
mark copied
drop_caches
manifest $M/tree /tree > /tmp/tree.manifest
diff /tmp/src.manifest /tmp/tree.manifest || fail "cp -a: contents differ"
attrs $M/tree > /tmp/tree.attrs
diff /tmp/src.attrs /tmp/tree.attrs || fail "cp -a: attributes differ"
eq "hard link count" "$(stat -c %h $M/tree/x/h2)" 3
[ "$(stat -c %i $M/tree/a/h1)" = "$(stat -c %i $M/tree/x/h2)" ] || fail "hard links: two inodes"
eq "through a dir symlink" "$(cat $M/tree/dirlink/c/d/e/deep.txt)" deep
cat /tmp/tree.manifest | sed 's/^/M /'
ok "cp -a ($(wc -l < /tmp/tree.manifest) paths)"

# ---- tar ------------------------------------------------------------------------
(cd $S && tar cf $M/src.tar .)
mkdir $M/untar
tar xf $M/src.tar -C $M/untar
(cd $M/tree && tar cf /tmp/back.tar .)
mkdir /tmp/back && tar xf /tmp/back.tar -C /tmp/back
drop_caches
manifest $M/untar /untar > /tmp/untar.manifest
[ "$(sed 's| /tree| /untar|' /tmp/src.manifest)" = "$(cat /tmp/untar.manifest)" ] ||
  fail "tar x onto the mount: contents differ"
manifest /tmp/back /tree | diff /tmp/src.manifest - || fail "tar c from the mount: contents differ"
attrs /tmp/back | diff /tmp/src.attrs - || fail "tar c from the mount: attributes differ"
eq "tar of the tar" "$(sha $M/src.tar)" "$(cd $S && tar cf - . | sha256sum | cut -d' ' -f1)"
echo "M f $(sha $M/src.tar) $(stat -c %s $M/src.tar) /src.tar"
ok "tar"
rm -r $M/untar
[ ! -e $M/untar ] || fail "rm -r untar"
ok "rm -r of the extracted tree"

# ---- rename across directories while files are open ------------------------------
mkdir -p $M/r1/sub $M/r2
exec 3> $M/r1/open.txt
echo part1 >&3
mv $M/r1/open.txt $M/r2/moved.txt
echo part2 >&3
exec 3>&-
eq "written across a rename" "$(cat $M/r2/moved.txt)" "part1
part2"
[ ! -e $M/r1/open.txt ] || fail "r1/open.txt still there"
seq 1 5000 > $M/r1/sub/reader
exec 4< $M/r1/sub/reader
read -r first <&4
mv $M/r1/sub $M/r2/sub
read -r second <&4
exec 4<&-
eq "read across a directory rename" "$first $second" "1 2"
echo old > $M/r2/victim
exec 5< $M/r2/victim
echo new > $M/r1/repl
mv $M/r1/repl $M/r2/victim
eq "replaced target read through its open fd" "$(cat <&5)" old
exec 5<&-
eq "replaced target" "$(cat $M/r2/victim)" new
drop_caches
eq "after drop_caches" "$(cat $M/r2/moved.txt | tr '\n' ' ')" "part1 part2 "
echo "still readable" > $M/r1/unlinked
exec 7< $M/r1/unlinked
rm $M/r1/unlinked
eq "read after rm while open" "$(cat <&7)" "still readable"
exec 7<&-
ok "rename while open"

# ---- symlinks ----------------------------------------------------------------------
mkdir $M/s
echo target > $M/s/t
ln -s t $M/s/rel
ln -s /mnt/s/t $M/s/abs
ln -s ../r2 $M/s/dir
ln -s no/such $M/s/dangling
eq readlink "$(readlink $M/s/rel)" t
eq "cat via link" "$(cat $M/s/rel)" target
eq "cat via absolute link" "$(cat $M/s/abs)" target
eq "dir via link" "$(cat $M/s/dir/victim)" new
[ -L $M/s/dangling ] && [ ! -e $M/s/dangling ] || fail "dangling link"
ok "symlinks"

# ---- hard links -----------------------------------------------------------------
mkdir $M/h $M/h2
echo one > $M/h/a
ln $M/h/a $M/h/b
ln $M/h/a $M/h2/c
eq nlink "$(stat -c %h $M/h/a)" 3
echo two >> $M/h/b
drop_caches
eq "write via one link, read via another" "$(cat $M/h2/c | tr '\n' ' ')" "one two "
rm $M/h/a
eq "nlink after rm" "$(stat -c %h $M/h/b)" 2
eq "content after rm" "$(cat $M/h/b | tr '\n' ' ')" "one two "
ok "hard links"

# ---- chmod -------------------------------------------------------------------
mkdir $M/c
for m in 600 755 444 4755 2711 1777; do echo $m > $M/c/f$m; chmod $m $M/c/f$m; done
mkdir $M/c/d
chmod 750 $M/c/d
echo x > $M/c/later; chmod 640 $M/c/later; echo y >> $M/c/later
drop_caches
for m in 600 755 444 4755 2711 1777; do eq "mode of f$m" "$(stat -c %a $M/c/f$m)" $m; done
eq "mode of dir" "$(stat -c %a $M/c/d)" 750
eq "mode after a write" "$(stat -c %a $M/c/later)" 640
ok "chmod"

# ---- truncate ----------------------------------------------------------------
mkdir $M/tr
dd if=/dev/urandom of=/tmp/t100k bs=1000 count=100 2>/dev/null
cp /tmp/t100k $M/tr/shrink; truncate -s 5000 $M/tr/shrink
cp /tmp/t100k $M/tr/grow; truncate -s 150000 $M/tr/grow
cp /tmp/t100k $M/tr/zero; truncate -s 0 $M/tr/zero
cp /tmp/t100k $M/tr/otrunc; echo short > $M/tr/otrunc
cp /tmp/t100k $M/tr/open
exec 6>> $M/tr/open
truncate -s 10 $M/tr/open
echo "+tail" >&6
exec 6>&-
drop_caches
eq "shrink" "$(sha $M/tr/shrink)" "$(head -c 5000 /tmp/t100k | sha256sum | cut -d' ' -f1)"
eq "grow" "$(sha $M/tr/grow)" "$( (cat /tmp/t100k; head -c 50000 /dev/zero) | sha256sum | cut -d' ' -f1)"
eq "grow size" "$(stat -c %s $M/tr/grow)" 150000
eq "zero" "$(stat -c %s $M/tr/zero)" 0
eq "O_TRUNC" "$(cat $M/tr/otrunc)" short
eq "truncated while open" "$(sha $M/tr/open)" "$( (head -c 10 /tmp/t100k; echo +tail) | sha256sum | cut -d' ' -f1)"
cp /tmp/t100k $M/tr/patch; cp /tmp/t100k /tmp/patch
dd if=/dev/urandom of=/tmp/p8k bs=4096 count=2 2>/dev/null
dd if=/tmp/p8k of=$M/tr/patch bs=4096 seek=3 conv=notrunc 2>/dev/null
dd if=/tmp/p8k of=/tmp/patch bs=4096 seek=3 conv=notrunc 2>/dev/null
dd if=/tmp/p8k of=$M/tr/sparse bs=4096 seek=300 2>/dev/null
dd if=/tmp/p8k of=/tmp/sparse bs=4096 seek=300 2>/dev/null
drop_caches
eq "written in the middle" "$(sha $M/tr/patch)" "$(sha /tmp/patch)"
eq "written past a hole" "$(sha $M/tr/sparse)" "$(sha /tmp/sparse)"
ok "truncate"

# ---- a large dd, read back after dropping the caches -----------------------------
dd if=/dev/urandom of=/tmp/big bs=1M count=${KNC_BIG_MB:-48} 2>/dev/null
want=$(sha /tmp/big)
t0=$(cut -d' ' -f1 /proc/uptime)
dd if=/tmp/big of=$M/big bs=1M conv=fsync 2>/dev/null
t1=$(cut -d' ' -f1 /proc/uptime)
echo "M f $want $(stat -c %s /tmp/big) /big"
rm /tmp/big
drop_caches
eq "sha256 of big after drop_caches" "$(sha $M/big)" "$want"
t2=$(cut -d' ' -f1 /proc/uptime)
ok "dd ${KNC_BIG_MB:-48} MiB (write+fsync ${t0}->${t1} s, read ${t1}->${t2} s)"

# ---- the host's big directory --------------------------------------------------
n=$(ls $M/many | wc -l)
eq "entries in /many" "$n" "$MANY"
awk -v n="$MANY" 'BEGIN { for (i = 1; i <= n; i++) printf "f%05d\n", i }' > /tmp/many.want
ls $M/many | diff /tmp/many.want - >/dev/null || fail "/many: names differ"
eq "ls -l /many" "$(ls -l $M/many | grep -c '^-')" "$MANY"
eq "a file in /many" "$(cat $M/many/f$(printf %05d $MANY))" "f$(printf %05d $MANY)"
ok "$MANY-entry directory"

# ---- after a remount, everything reads the same -----------------------------------
snap() { for d in tree r1 r2 h h2 s c tr; do attrs $M/$d; manifest $M/$d /$d; done; }
snap > /tmp/before.snap
remount
snap | diff /tmp/before.snap - || fail "attributes or contents changed across a remount"
for p in r2/moved.txt r2/sub/reader r2/victim h/b h2/c s/t tr/shrink tr/grow tr/zero tr/otrunc tr/open tr/patch tr/sparse c/later; do
  echo "M f $(sha $M/$p) $(stat -c %s $M/$p) /$p"
done
for p in s/rel s/abs s/dir s/dangling; do echo "M l $(readlink $M/$p) /$p"; done
ok "remount"
