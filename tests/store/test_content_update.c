/* content_blocks_update(): the incremental block list of a staged file must
 * be exactly the list a full cut gives, whatever was written. */
#include "store/content.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "store/chunk.h"
#include "store/error.h"
#include "tests/test.h"

static struct blocks *open_store(void)
{
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/blocks", test_tmpdir());
  struct blocks *bs;
  CHECK_OK(blocks_open(dir, BLOCKS_CREATE, &bs));
  return bs;
}

/* Random bytes, or (KIND 1) long runs of one byte with random islands: cuts
 * then often fall at CHUNK_MAX, the case where resynchronising is hardest. */
static void fill_bytes(uint8_t *b, size_t len, int kind)
{
  if (kind == 1) {
    memset(b, 0, len);
    for (size_t i = 0; i < len / 50000; i++) {
      size_t at = (size_t)(test_rand() % len);
      for (size_t k = 0; k < 300 && at + k < len; k++)
        b[at + k] = (uint8_t)test_rand();
    }
    return;
  }
  for (size_t i = 0; i < len; i += 8) {
    uint64_t r = test_rand();
    memcpy(b + i, &r, len - i < 8 ? len - i : 8);
  }
}

/* The written ranges, sorted, disjoint and merged (what server/stage keeps). */
struct ranges {
  struct content_range r[4096];
  size_t n;
};

static void ranges_add(struct ranges *rs, uint64_t off, uint64_t end)
{
  struct content_range out[4096];
  size_t n = 0;
  bool placed = false;
  for (size_t i = 0; i < rs->n; i++) {
    struct content_range c = rs->r[i];
    if (c.end < off) {
      out[n++] = c;
    } else if (c.off > end) {
      if (!placed) {
        out[n++] = (struct content_range){off, end};
        placed = true;
      }
      out[n++] = c;
    } else {
      off = c.off < off ? c.off : off;
      end = c.end > end ? c.end : end;
    }
  }
  if (!placed)
    out[n++] = (struct content_range){off, end};
  CHECK(n <= 4096);
  memcpy(rs->r, out, n * sizeof *out);
  rs->n = n;
}

static void check_same(const struct blocks_list *a, const struct blocks_list *b)
{
  CHECK_INT(a->n, ==, b->n);
  CHECK_INT(a->total, ==, b->total);
  for (size_t i = 0; i < a->n; i++) {
    CHECK_INT(a->size[i], ==, b->size[i]);
    CHECK_MEM(a->hash[i].bytes, b->hash[i].bytes, HASH_SIZE);
  }
}

static void pwrite_all(int fd, const void *b, size_t len, uint64_t off)
{
  CHECK_INT(pwrite(fd, b, len, (off_t)off), ==, (ssize_t)len);
}

/* One base file, a set of writes (and maybe a truncation), and the check:
 * incremental == full. Returns how many blocks the update stored. */
static size_t one_case(struct blocks *bs, const char *path, size_t size, int data_kind, int nwrites,
                       size_t max_write, bool truncate)
{
  uint8_t *buf = malloc(2 * size + (1u << 20));
  CHECK(buf != NULL);
  fill_bytes(buf, size, data_kind);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  CHECK(fd >= 0);
  pwrite_all(fd, buf, size, 0);
  struct blocks_list base;
  CHECK_OK(content_blocks_update(bs, fd, size, NULL, &base));
  CHECK_INT(base.total, ==, size);

  static struct ranges rs;
  rs.n = 0;
  uint64_t cur = size, clean_end = size;
  if (truncate) {
    cur = size / 2 + test_rand() % (size / 2);
    CHECK_OK(ftruncate(fd, (off_t)cur));
    clean_end = cur;
  }
  for (int w = 0; w < nwrites; w++) {
    size_t len = 1 + (size_t)(test_rand() % max_write);
    /* Mostly inside, sometimes past the end (growing the file). */
    uint64_t off = test_rand() % (cur + (cur < 3 * size / 2 ? cur / 8 : 0) + 1);
    fill_bytes(buf, len, (int)(test_rand() % 2));
    pwrite_all(fd, buf, len, off);
    ranges_add(&rs, off, off + len);
    if (off + len > cur)
      cur = off + len;
  }
  struct content_base b = {&base, rs.r, rs.n, clean_end};
  struct blocks_list inc, full;
  CHECK_OK(content_blocks_update(bs, fd, cur, &b, &inc));
  CHECK_OK(content_blocks_update(bs, fd, cur, NULL, &full));
  check_same(&inc, &full);
  size_t written = inc.written;

  /* And the encoded content decodes to exactly the file's bytes. */
  uint8_t kind, out[ENTRY_CONTENT_MAX];
  size_t out_len;
  struct blocks_list l2;
  CHECK_OK(content_encode_staged(bs, fd, cur, NULL, 0, &b, 200, &kind, out, &out_len, &l2));
  CHECK(kind == ENTRY_CONTENT_BLOCKS || kind == ENTRY_CONTENT_BLOCKLIST);
  check_same(&l2, &full);
  uint8_t *dec;
  CHECK_OK(content_decode(bs, kind, out, out_len, cur, NULL, 0, SIZE_MAX, &dec));
  CHECK_INT(pread(fd, buf, (size_t)cur, 0), ==, (ssize_t)cur);
  CHECK(memcmp(dec, buf, (size_t)cur) == 0);
  free(dec);
  blocks_list_free(&l2);
  blocks_list_free(&inc);
  blocks_list_free(&full);
  blocks_list_free(&base);
  close(fd);
  free(buf);
  return written;
}

TEST(incremental_equals_full_random)
{
  struct blocks *bs = open_store();
  char path[4096];
  snprintf(path, sizeof path, "%s/staged", test_tmpdir());
  for (int round = 0; round < 24; round++) {
    size_t size = (1u << 20) + (size_t)(test_rand() % (5u << 20));
    int nw = (int)(test_rand() % 6);
    size_t maxw = round % 3 == 0 ? 300 : round % 3 == 1 ? 20000 : 300000;
    one_case(bs, path, size, round % 4 == 3, nw, maxw, round % 5 == 4);
  }
  blocks_close(bs);
}

TEST(incremental_many_writes_falls_back_equal)
{
  struct blocks *bs = open_store();
  char path[4096];
  snprintf(path, sizeof path, "%s/staged", test_tmpdir());
  one_case(bs, path, 3u << 20, 0, 400, 4096, false);
  one_case(bs, path, 3u << 20, 1, 400, 4096, true);
  blocks_close(bs);
}

TEST(incremental_stores_only_near_the_write)
{
  struct blocks *bs = open_store();
  char path[4096];
  snprintf(path, sizeof path, "%s/staged", test_tmpdir());
  /* 8 MiB (~128 blocks), one small write: a handful of new blocks. */
  size_t w = one_case(bs, path, 8u << 20, 0, 1, 100, false);
  CHECK_MSG(w >= 1 && w <= 6, "%zu blocks stored for one 100-byte write", w);
  blocks_close(bs);
}

TEST(incremental_unchanged_file_reuses_everything)
{
  struct blocks *bs = open_store();
  char path[4096];
  snprintf(path, sizeof path, "%s/staged", test_tmpdir());
  CHECK_INT(one_case(bs, path, 5u << 20, 0, 0, 1, false), ==, 0);
  blocks_close(bs);
}

/* A staged file of SIZE random bytes at test_tmpdir()/NAME, its bytes in
 * *BUF (malloc'd) and its full cut in *BASE; returns its descriptor. */
static int base_file(struct blocks *bs, const char *name, size_t size, uint8_t **buf,
                     struct blocks_list *base)
{
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
  *buf = malloc(size);
  CHECK(*buf != NULL);
  fill_bytes(*buf, size, 0);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  CHECK(fd >= 0);
  pwrite_all(fd, *buf, size, 0);
  CHECK_OK(content_blocks_update(bs, fd, size, NULL, base));
  return fd;
}

TEST(incremental_bad_base_is_not_trusted)
{
  struct blocks *bs = open_store();
  size_t size = 2u << 20;
  uint8_t *buf;
  struct blocks_list base, inc, full;
  int fd = base_file(bs, "staged", size, &buf, &base);
  memset(buf, 7, 1000);
  pwrite_all(fd, buf, 1000, 5000);
  CHECK_OK(content_blocks_update(bs, fd, size, NULL, &full));
  /* Unsorted ranges, and a clean end past the base: a full cut, same list. */
  struct content_range bad[2] = {{5000, 6000}, {0, 10}};
  struct content_base b = {&base, bad, 2, size};
  CHECK_OK(content_blocks_update(bs, fd, size, &b, &inc));
  check_same(&inc, &full);
  blocks_list_free(&inc);
  struct content_range ok[1] = {{5000, 6000}};
  struct content_base b2 = {&base, ok, 1, size + 1};
  CHECK_OK(content_blocks_update(bs, fd, size, &b2, &inc));
  check_same(&inc, &full);
  blocks_list_free(&inc);
  /* A file shorter than the size claimed: an error, not a short list. */
  CHECK_INT(content_blocks_update(bs, fd, size + 10, NULL, &inc), ==, -EIO);
  b2.clean_end = size;
  CHECK_INT(content_blocks_update(bs, fd, size + 10, &b2, &inc), ==, -EIO);
  blocks_list_free(&base);
  blocks_list_free(&full);
  close(fd);
  free(buf);
  blocks_close(bs);
}

TEST(incremental_large_changes_stored_in_parallel_equal_full)
{
  struct blocks *bs = open_store();
  char path[4096];
  snprintf(path, sizeof path, "%s/staged", test_tmpdir());
  /* A few hundred-kilobyte writes in 12 MiB: megabytes of new blocks (the
   * threaded store), well under half the file (no full cut). */
  for (int round = 0; round < 3; round++)
    one_case(bs, path, 12u << 20, round == 2, 4, 400000, round == 1);
  blocks_close(bs);
}

/* The changed regions are cut on several threads before the walk; a region
 * whose cut runs past the start of the next one (its last byte changed, so
 * its old end is no cut any more) makes that one useless. Flipping the last
 * byte of blocks 0 and 2 of every 6 forces such runs everywhere (block 0's
 * region runs through block 1 into block 2's), with a third of the file
 * changed (the full cut takes over past half): still exactly the full cut. */
TEST(incremental_regions_that_run_into_each_other_equal_full)
{
  struct blocks *bs = open_store();
  size_t size = 12u << 20;
  uint8_t *buf;
  struct blocks_list base;
  int fd = base_file(bs, "f", size, &buf, &base);
  CHECK(base.n > 20);
  static struct ranges rs;
  rs.n = 0;
  uint64_t end = 0;
  for (size_t i = 0; i + 1 < base.n; i++) {
    end += base.size[i];
    if (i % 6 != 0 && i % 6 != 2)
      continue;
    uint8_t b = (uint8_t)(buf[end - 1] ^ (1 + test_rand() % 255));
    pwrite_all(fd, &b, 1, end - 1);
    ranges_add(&rs, end - 1, end);
  }
  struct content_base cb = {&base, rs.r, rs.n, size};
  struct blocks_list inc, full;
  CHECK_OK(content_blocks_update(bs, fd, size, &cb, &inc));
  CHECK_OK(content_blocks_update(bs, fd, size, NULL, &full));
  check_same(&inc, &full);
  blocks_list_free(&inc);
  blocks_list_free(&full);
  blocks_list_free(&base);
  close(fd);
  free(buf);
  blocks_close(bs);
}
