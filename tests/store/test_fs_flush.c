/*
 * Single-flush commits (THE RULE in store/blocks.h): blocks_sync_deferred()
 * writes a commit's pack bytes out and leaves their device flush to the
 * log's fdatasync; the commit logs a flush note first, and opening drops the
 * log from a note whose pack range did not survive (store/fs.c).
 *
 * The deferred path runs only on ext4; elsewhere these tests check the
 * fallback (no note) and say so.
 */
#include "tests/test.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <xxhash.h>

#include "store/blocks.h"
#include "store/fs.h"
#include "store/key.h"
#include "store/log.h"

/* Where the filesystems go: test_tmpdir(), or another filesystem. */
static const char *home_dir;

static const char *home(void)
{
  return home_dir ? home_dir : test_tmpdir();
}

static bool on_ext4(void)
{
  struct statfs sf;
  return statfs(home(), &sf) == 0 && sf.f_type == EXT4_SUPER_MAGIC;
}

static struct key *new_key(void)
{
  struct key *k = NULL;
  CHECK_OK(key_generate(&k));
  return k;
}

static void path_of(const char *file, char *out, size_t cap)
{
  snprintf(out, cap, "%s/fs/t/%s", home(), file);
}

/* The flush notes in the log, as store/fs.c documents them. */
struct note {
  uint64_t off; /* of the note's record in the log */
  uint32_t pack;
  uint64_t from, to, sum;
};

static uint64_t le(const uint8_t *p, int n)
{
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static size_t notes(struct note *out, size_t cap, uint64_t *log_end)
{
  static const uint8_t magic[8] = {0, 'B', 'F', 'S', 'f', 'l', 'u', 0};
  char path[4096];
  path_of("log", path, sizeof path);
  struct log *log = NULL;
  CHECK_OK(log_open(path, LOG_READ, &log, NULL));
  struct log_cursor *c = NULL;
  CHECK_OK(log_cursor_open(log, LOG_HEADER_SIZE, &c));
  const uint8_t *d;
  size_t len, n = 0;
  uint64_t at;
  while (log_cursor_next(c, &d, &len, &at) == 1)
    if (len == 40 && memcmp(d, magic, 8) == 0 && n < cap)
      out[n++] = (struct note){at, (uint32_t)le(d + 8, 4), le(d + 16, 8), le(d + 24, 8),
                               le(d + 32, 8)};
  if (log_end)
    *log_end = log_cursor_offset(c);
  log_cursor_close(c);
  log_close(log);
  return n;
}

static void pack_path(uint32_t pack, char *out, size_t cap)
{
  snprintf(out, cap, "%s/fs/t/blocks/pack-%08u", home(), (unsigned)pack);
}

static void check_content(struct fs *fs, const char *path, const uint8_t *want, size_t len)
{
  uint8_t *got = NULL;
  size_t n = 0;
  CHECK_OK(fs_read(fs, path, &got, &n));
  CHECK_INT(n, ==, len);
  CHECK_MEM(got, want, len);
  free(got);
}

/* /a, then N files /c0.. with contents C[i], then /b, each its own
 * commit; all but the first go through the deferred path (the first made
 * the pack's zeros ahead durable). */
#define EXTRA 3
static void commits(struct key *k, uint8_t *a, uint8_t *b, uint8_t **c, int n, size_t len)
{
  struct fs *fs = NULL;
  CHECK_OK(fs_create(home(), "t", k, NULL, 0, &fs));
  CHECK_OK(fs_put(fs, k, "/a", a, len, NULL));
  CHECK_OK(fs_commit(fs));
  for (int i = 0; i < n; i++) {
    char name[16];
    snprintf(name, sizeof name, "/c%d", i);
    CHECK_OK(fs_put(fs, k, name, c[i], len, NULL));
    CHECK_OK(fs_commit(fs));
  }
  CHECK_OK(fs_put(fs, k, "/b", b, len, NULL));
  CHECK_OK(fs_commit(fs));
  CHECK_OK(fs_close(fs));
}

TEST(blocks_deferred_sync_owes_exactly_the_new_range)
{
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/blocks", home());
  struct blocks *bs = NULL;
  CHECK_OK(blocks_open(dir, BLOCKS_CREATE, &bs));
  struct stat st;
  CHECK_OK(stat(dir, &st));
  uint8_t *d1 = test_random_bytes(4096), *d2 = test_random_bytes(4096);
  hash_t h;
  CHECK_INT(blocks_put(bs, d1, 4096, &h), ==, 1);
  struct blocks_flush owed;
  /* Nothing durable ahead yet: a plain sync. */
  CHECK_INT(blocks_sync_deferred(bs, st.st_dev, &owed), ==, 0);
  CHECK_INT(owed.pack, ==, 0);
  CHECK_INT(blocks_sync_deferred(bs, st.st_dev, &owed), ==, 0); /* nothing new */
  CHECK_INT(blocks_put(bs, d2, 4096, &h), ==, 1);
  char path[4096];
  uint64_t off;
  size_t slen;
  CHECK_OK(blocks_locate(bs, &h, path, sizeof path, &off, &slen));
  /* Another device's flush covers nothing here. */
  struct blocks_flush other;
  if (on_ext4()) {
    CHECK_INT(blocks_sync_deferred(bs, st.st_dev, &owed), ==, 1);
    CHECK_OK(blocks_sync_wait(bs, &owed));
    CHECK_INT(owed.pack, ==, 1);
    /* The record: its 32-byte hash field, then the stored form at off. */
    CHECK_INT(owed.from, ==, off - HASH_SIZE);
    CHECK_INT(owed.to, ==, off + slen);
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    uint8_t *buf = malloc(owed.to - owed.from);
    CHECK_INT(pread(fd, buf, owed.to - owed.from, (off_t)owed.from), ==, owed.to - owed.from);
    CHECK_INT(XXH3_64bits(buf, owed.to - owed.from), ==, owed.sum);
    free(buf);
    close(fd);
    /* Not reported flushed: owed again (with what follows). */
    uint8_t *d3 = test_random_bytes(4096);
    CHECK_INT(blocks_put(bs, d3, 4096, &h), ==, 1);
    struct blocks_flush again;
    CHECK_INT(blocks_sync_deferred(bs, st.st_dev, &again), ==, 1);
    CHECK_OK(blocks_sync_wait(bs, &again));
    CHECK_INT(again.from, ==, owed.from);
    CHECK_INT(again.to, >, owed.to);
    blocks_flushed(bs, &again);
    CHECK_INT(blocks_sync_deferred(bs, st.st_dev, &owed), ==, 0); /* nothing owed now */
    CHECK_INT(blocks_put(bs, d1 + 1, 4000, &h), ==, 1);
    CHECK_INT(blocks_sync_deferred(bs, st.st_dev + 1, &other), ==, 0);
    CHECK_INT(other.pack, ==, 0);
    free(d3);
  } else {
    printf("# not ext4: only the fallback is checked\n");
    CHECK_INT(blocks_sync_deferred(bs, st.st_dev, &other), ==, 0);
    CHECK_INT(other.pack, ==, 0);
  }
  blocks_close(bs);
  free(d1);
  free(d2);
}

TEST(deferred_commit_logs_a_note_and_reopens_whole)
{
  struct key *k = new_key();
  size_t len = 16384;
  uint8_t *a = test_random_bytes(len), *b = test_random_bytes(len);
  commits(k, a, b, NULL, 0, len);
  struct note n[8];
  size_t count = notes(n, 8, NULL);
  if (on_ext4()) {
    CHECK_INT(count, ==, 1);
    CHECK_INT(n[0].off, >, LOG_HEADER_SIZE);
    CHECK_INT(n[0].to, >, n[0].from + len / 2);
  } else {
    printf("# not ext4: no deferred flush\n");
    CHECK_INT(count, ==, 0);
  }
  struct fs *fs = NULL;
  CHECK_OK(fs_open(home(), "t", true, &fs));
  check_content(fs, "/a", a, len);
  check_content(fs, "/b", b, len);
  CHECK_OK(fs_close(fs));
  uint64_t end;
  CHECK_INT(notes(n, 8, &end), ==, count); /* nothing dropped */
  free(a);
  free(b);
  key_free(k);
}

/* Two commits whose second went the deferred way: its note and pack. */
struct lost {
  struct key *k;
  uint8_t *a, *b, *c[EXTRA];
  size_t len;
  struct note note;
  uint64_t log_end;
  char pack[4096];
  int reader_entries; /* what a reader's fs_foreach_entry met (-1: no reader) */
};

static int count_entry(const struct entry *e, void *arg)
{
  (void)e;
  ++*(int *)arg;
  return 0;
}

static int entries_of(struct fs *fs)
{
  int n = 0;
  CHECK_OK(fs_foreach_entry(fs, count_entry, &n));
  return n;
}

static bool lost_setup(struct lost *l)
{
  if (!on_ext4()) {
    printf("# not ext4: no deferred flush to lose\n");
    return false;
  }
  l->k = new_key();
  l->len = 16384;
  l->reader_entries = -1;
  l->a = test_random_bytes(l->len);
  l->b = test_random_bytes(l->len);
  for (int i = 0; i < EXTRA; i++)
    l->c[i] = test_random_bytes(l->len);
  commits(l->k, l->a, l->b, l->c, EXTRA, l->len);
  /* Only the last note can fail (store/fs.c), and only /b relies on it. */
  struct note n[EXTRA + 1];
  CHECK_INT(notes(n, EXTRA + 1, &l->log_end), ==, EXTRA + 1);
  l->note = n[EXTRA];
  pack_path(l->note.pack, l->pack, sizeof l->pack);
  return true;
}

static void check_kept(struct fs *fs, struct lost *l)
{
  check_content(fs, "/a", l->a, l->len);
  for (int i = 0; i < EXTRA; i++) {
    char name[16];
    snprintf(name, sizeof name, "/c%d", i);
    check_content(fs, name, l->c[i], l->len);
  }
}

/* After the loss, a writer's open: /b gone, the rest whole, and it goes on. */
static void lost_reopen(struct lost *l)
{
  struct fs *fs = NULL;
  struct fs_stat st;
  CHECK_OK(fs_open(home(), "t", true, &fs));
  CHECK_INT(fs_stat(fs, "/b", &st), ==, -ENOENT);
  check_kept(fs, l);
  /* The reader walked the entries the writer kept, not those it hid. */
  if (l->reader_entries >= 0)
    CHECK_INT(l->reader_entries, ==, entries_of(fs));
  CHECK_OK(fs_put(fs, l->k, "/b", l->b, l->len, NULL));
  CHECK_OK(fs_commit(fs));
  CHECK_OK(fs_close(fs));
  CHECK_OK(fs_open(home(), "t", false, &fs));
  check_kept(fs, l);
  check_content(fs, "/b", l->b, l->len);
  CHECK_OK(fs_close(fs));
  /* The dropped records were kept aside. */
  char side[4096], name[64];
  snprintf(name, sizeof name, "log.tail-%llu", (unsigned long long)l->note.off);
  path_of(name, side, sizeof side);
  struct stat sst;
  CHECK_OK(stat(side, &sst));
  CHECK_INT(sst.st_size, ==, l->log_end - l->note.off);
  free(l->a);
  free(l->b);
  for (int i = 0; i < EXTRA; i++)
    free(l->c[i]);
  key_free(l->k);
}

/*
 * A power cut before the log's fdatasync returned: the disk kept the log
 * record but not the pack bytes it names (zeros, where the writer had
 * zeroed ahead). Opening must drop the note and what follows it, never
 * show /b, keep /a, and keep the dropped bytes aside.
 */
static void lost_range(bool reader_first)
{
  struct lost l;
  if (!lost_setup(&l))
    return;
  int fd = open(l.pack, O_RDWR);
  CHECK(fd >= 0);
  size_t n = (size_t)(l.note.to - l.note.from);
  uint8_t *z = calloc(1, n);
  CHECK_INT(pwrite(fd, z, n, (off_t)l.note.from), ==, n);
  free(z);
  close(fd);
  if (reader_first) {
    /* A reader leaves the log alone but does not show what it cannot trust. */
    struct fs *fs = NULL;
    struct fs_stat st;
    CHECK_OK(fs_open(home(), "t", false, &fs));
    CHECK_INT(fs_stat(fs, "/b", &st), ==, -ENOENT);
    check_kept(fs, &l);
    l.reader_entries = entries_of(fs);
    CHECK_OK(fs_close(fs));
    struct note again[EXTRA + 1];
    uint64_t end;
    CHECK_INT(notes(again, EXTRA + 1, &end), ==, EXTRA + 1);
    CHECK_INT(end, ==, l.log_end);
  }
  lost_reopen(&l);
}

TEST(lost_pack_range_drops_the_log_tail)
{
  lost_range(false);
}

TEST(lost_pack_range_hidden_from_a_reader_kept_in_the_log)
{
  lost_range(true);
}

/* The pack cut short (recovery truncated a torn record there) fails the same way. */
TEST(truncated_pack_drops_the_log_tail)
{
  struct lost l;
  if (!lost_setup(&l))
    return;
  CHECK_OK(truncate(l.pack, (off_t)(l.note.to - 1)));
  lost_reopen(&l);
}

/* Elsewhere than ext4 (here tmpfs) the blocks are synced on their own: no
 * note, and everything reopens. */
TEST(no_deferred_flush_off_ext4)
{
  home_dir = test_small_tmpfs("24m");
  if (!home_dir)
    return;
  CHECK(!on_ext4());
  struct key *k = new_key();
  size_t len = 16384;
  uint8_t *a = test_random_bytes(len), *b = test_random_bytes(len);
  commits(k, a, b, NULL, 0, len);
  struct note n[4];
  CHECK_INT(notes(n, 4, NULL), ==, 0);
  struct fs *fs = NULL;
  CHECK_OK(fs_open(home(), "t", true, &fs));
  check_content(fs, "/a", a, len);
  check_content(fs, "/b", b, len);
  CHECK_OK(fs_close(fs));
  free(a);
  free(b);
  key_free(k);
}
