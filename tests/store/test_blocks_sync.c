/*
 * blocks_sync() and the single-flush commit (THE RULE, store/blocks.h)
 * against what fdatasync() does: this program replaces fdatasync() with
 * one that counts the calls on pack files, can hold them (as a slow disk
 * would) and can fail one (a write-back error). Hence a program of its
 * own.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "store/blocks.h"
#include "store/fs.h"
#include "store/key.h"
#include "store/log.h"
#include "tests/test.h"

static atomic_int hold_packs; /* fdatasync of a pack sleeps 0.3 s first */
static atomic_int in_flight;  /* pack fdatasyncs under way */
static atomic_int pack_syncs; /* pack fdatasyncs so far */
static atomic_int fail_next;  /* the next pack fdatasync fails with EIO */

static bool is_pack(int fd)
{
  char link[64], target[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n <= 0)
    return false;
  target[n] = '\0';
  return strstr(target, "/pack-") != NULL;
}

int fdatasync(int fd)
{
  if (!is_pack(fd))
    return (int)syscall(SYS_fdatasync, fd);
  atomic_fetch_add(&pack_syncs, 1);
  atomic_fetch_add(&in_flight, 1);
  if (atomic_load(&hold_packs))
    usleep(300 * 1000);
  int r;
  if (atomic_exchange(&fail_next, 0)) {
    errno = EIO;
    r = -1;
  } else {
    r = (int)syscall(SYS_fdatasync, fd);
  }
  atomic_fetch_sub(&in_flight, 1);
  return r;
}

static struct blocks *open_store(dev_t *dev)
{
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/blocks", test_tmpdir());
  struct blocks *bs = NULL;
  CHECK_OK(blocks_open(dir, BLOCKS_CREATE, &bs));
  struct stat st;
  CHECK_OK(stat(dir, &st));
  if (dev)
    *dev = st.st_dev;
  return bs;
}

static void *sync_thread(void *arg)
{
  blocks_sync(arg);
  return NULL;
}

/* A background seal's blocks_sync() has cleared the pack's dirty flag and
 * sits in its fdatasync; the loop's commit (deferred, or its fallback) must
 * not return before that fdatasync did: its entry may name those blocks. */
TEST(a_sync_waits_for_another_threads_fdatasync)
{
  dev_t dev;
  struct blocks *bs = open_store(&dev);
  uint8_t *d1 = test_random_bytes(4096), *d2 = test_random_bytes(4096);
  hash_t h;
  CHECK_INT(blocks_put(bs, d1, 4096, &h), ==, 1);
  CHECK_OK(blocks_sync(bs));
  CHECK_INT(blocks_put(bs, d2, 4096, &h), ==, 1); /* the worker's block */
  atomic_store(&hold_packs, 1);
  pthread_t t;
  CHECK_INT(pthread_create(&t, NULL, sync_thread, bs), ==, 0);
  while (atomic_load(&in_flight) == 0)
    usleep(1000);
  CHECK_INT(blocks_put(bs, d2, 4096, &h), ==, 0); /* the loop's: stored already */
  struct blocks_flush owed;
  int r = blocks_sync_deferred(bs, dev, &owed);
  int still = atomic_load(&in_flight);
  pthread_join(t, NULL);
  atomic_store(&hold_packs, 0);
  CHECK_INT(r, >=, 0);
  CHECK_INT(still, ==, 0);
  blocks_close(bs);
  free(d1);
  free(d2);
}

/* A write-back error is reported once; afterwards nothing may be taken as
 * durable (a retried fdatasync would say 0 with the pages gone): every
 * later sync and append fails until the store is reopened. */
TEST(a_write_back_error_sticks_until_reopened)
{
  dev_t dev;
  struct blocks *bs = open_store(&dev);
  uint8_t *d1 = test_random_bytes(4096), *d2 = test_random_bytes(4096), *d3 = test_random_bytes(4096);
  hash_t h;
  CHECK_INT(blocks_put(bs, d1, 4096, &h), ==, 1);
  CHECK_OK(blocks_sync(bs));
  CHECK_INT(blocks_put(bs, d2, 4096, &h), ==, 1);
  struct blocks_flush owed;
  int deferred = blocks_sync_deferred(bs, dev, &owed); /* 0 off ext4: synced */
  if (deferred == 1)
    CHECK_OK(blocks_sync_wait(bs, &owed));
  uint8_t *d4 = test_random_bytes(4096);
  CHECK_INT(blocks_put(bs, d4, 4096, &h), ==, 1); /* something to sync, anywhere */
  atomic_store(&fail_next, 1);
  CHECK_INT(blocks_sync(bs), ==, -EIO); /* a background seal's sync meets it */
  atomic_store(&fail_next, 0);
  free(d4);
  if (deferred == 1) {
    blocks_flushed(bs, &owed); /* the loop's log fdatasync returned */
    CHECK_INT(blocks_sync_wait(bs, &owed), ==, -EIO);
  }
  CHECK_INT(blocks_sync(bs), ==, -EIO);
  CHECK(blocks_put(bs, d3, 4096, &h) < 0);
  blocks_close(bs);
  bs = open_store(NULL);
  CHECK_INT(blocks_put(bs, d3, 4096, &h), ==, 1);
  CHECK_OK(blocks_sync(bs));
  blocks_close(bs);
  free(d1);
  free(d2);
  free(d3);
}

/* A writer stopped with blocks only in the page cache (no sync); the next
 * writer finds them stored (a dedup): its first sync makes them durable,
 * whichever packs they are in -- more than 64 here. */
TEST(a_writer_makes_what_it_finds_durable)
{
  struct blocks *bs = open_store(NULL);
  blocks_set_pack_size(bs, 1u << 20);
  size_t blk = 200u << 10;
  uint8_t *d = test_random_bytes(blk);
  hash_t h, last;
  for (int i = 0; i < 5 * 70; i++) {
    memcpy(d, &i, sizeof i);
    CHECK_INT(blocks_put(bs, d, blk, &h), ==, 1);
    last = h;
  }
  struct blocks_stats st;
  CHECK_OK(blocks_stats(bs, &st));
  blocks_close(bs); /* no sync: as a crashed process leaves it */
  bs = open_store(NULL);
  CHECK_INT(blocks_has(bs, &last), ==, 1);
  atomic_store(&pack_syncs, 0);
  CHECK_OK(blocks_sync(bs));
  CHECK_INT(atomic_load(&pack_syncs), >, 64);
  blocks_close(bs);
  free(d);
}

/* Whether the log at home "t" holds a flush note (store/fs.c). */
static bool last_note(void)
{
  static const uint8_t magic[8] = {0, 'B', 'F', 'S', 'f', 'l', 'u', 0};
  char path[4096];
  snprintf(path, sizeof path, "%s/fs/t/log", test_tmpdir());
  struct log *log = NULL;
  CHECK_OK(log_open(path, LOG_READ, &log, NULL));
  struct log_cursor *c = NULL;
  CHECK_OK(log_cursor_open(log, LOG_HEADER_SIZE, &c));
  const uint8_t *p;
  size_t len;
  uint64_t at;
  bool found = false;
  while (log_cursor_next(c, &p, &len, &at) == 1)
    found |= len == 40 && memcmp(p, magic, 8) == 0;
  log_cursor_close(c);
  log_close(log);
  return found;
}

/*
 * Process 1 commits /b the single-flush way. Had it died before its log's
 * fdatasync, the pack range would be in the page cache only (a test cannot
 * make it so: this one checks what process 2 does about it). Process 2
 * opens and commits mkdir /d, which stores no block. Were the range not
 * made durable first, a power cut could keep /d's record and lose the
 * range, and the next open would drop the log from /b's note -- /d with
 * it, though its commit had returned. So process 2 fdatasyncs the pack
 * before it appends; and when that fdatasync meets a write-back error, it
 * asks the disk instead of failing (or trusting the cache).
 */
TEST(a_second_writer_flushes_the_last_note_before_appending)
{
  struct key *k = NULL;
  CHECK_OK(key_generate(&k));
  size_t len = 16384;
  uint8_t *a = test_random_bytes(len), *b = test_random_bytes(len);
  struct fs *fs = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", k, NULL, 0, &fs));
  CHECK_OK(fs_put(fs, k, "/a", a, len, NULL));
  CHECK_OK(fs_commit(fs));
  CHECK_OK(fs_put(fs, k, "/b", b, len, NULL));
  CHECK_OK(fs_commit(fs));
  fs_discard(fs);
  if (!last_note()) {
    printf("# skipped: no flush note (the store is not on ext4)\n");
  } else {
    atomic_store(&pack_syncs, 0);
    CHECK_OK(fs_open(test_tmpdir(), "t", true, &fs));
    CHECK_INT(atomic_load(&pack_syncs), >=, 1); /* at the open: before any append */
    CHECK_OK(fs_mkdir(fs, k, "/d", NULL));
    CHECK_OK(fs_commit(fs));
    CHECK_OK(fs_close(fs));
    /* A write-back error at that fdatasync: the disk has the range (process
     * 1's commit returned), so the open goes on and keeps /b. */
    atomic_store(&fail_next, 1);
    atomic_store(&pack_syncs, 0);
    CHECK_OK(fs_open(test_tmpdir(), "t", true, &fs));
    CHECK_INT(atomic_load(&pack_syncs), >=, 2);
    CHECK_OK(fs_close(fs));
    CHECK_OK(fs_open(test_tmpdir(), "t", false, &fs));
    struct fs_stat st;
    CHECK_OK(fs_stat(fs, "/b", &st));
    CHECK_OK(fs_stat(fs, "/d", &st));
    CHECK_OK(fs_close(fs));
  }
  free(a);
  free(b);
  key_free(k);
}
