#include "store/content.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include "store/chunk.h"
#include "store/error.h"
#include "tests/test.h"

/* A config-file-like text: compresses well. */
static uint8_t *text_buf(size_t len)
{
  uint8_t *b = malloc(len ? len : 1);
  CHECK(b != NULL);
  size_t off = 0;
  for (unsigned line = 0; off < len; line++) {
    char tmp[128];
    int n = snprintf(tmp, sizeof tmp, "option.%u = value-%" PRIu64 "\n", line,
                     test_rand() % 1000);
    size_t k = (size_t)n < len - off ? (size_t)n : len - off;
    memcpy(b + off, tmp, k);
    off += k;
  }
  return b;
}

static struct blocks *open_store(void)
{
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/blocks", test_tmpdir());
  struct blocks *bs;
  CHECK_OK(blocks_open(dir, BLOCKS_CREATE, &bs));
  return bs;
}

struct enc {
  uint8_t kind;
  size_t len;
  uint8_t bytes[ENTRY_CONTENT_MAX];
};

/* Encodes, decodes (whole and by the reader), and checks the round trip. */
static struct enc roundtrip(struct blocks *bs, const uint8_t *data, size_t len, const uint8_t *prev,
                            size_t prev_len, size_t avail)
{
  struct enc e;
  CHECK_OK(content_encode(bs, data, len, prev, prev_len, avail, &e.kind, e.bytes, &e.len));
  CHECK_INT(e.len, <=, avail);
  CHECK_INT(e.kind, <=, ENTRY_CONTENT_MAX_KIND);
  uint8_t *out;
  CHECK_OK(content_decode(bs, e.kind, e.bytes, e.len, len, prev, prev_len, SIZE_MAX, &out));
  CHECK(len == 0 || memcmp(out, data, len) == 0);
  free(out);
  struct content_reader *r;
  CHECK_OK(content_open(bs, e.kind, e.bytes, e.len, len, prev, prev_len, &r));
  CHECK_INT(content_reader_size(r), ==, len);
  uint8_t tmp[1];
  CHECK_INT(content_read(r, len, tmp, 1), ==, 0);
  content_close(r);
  hash_t *missing;
  CHECK_INT(content_missing(bs, e.kind, e.bytes, e.len, &missing), ==, 0);
  return e;
}

TEST(empty_and_tiny)
{
  struct blocks *bs = open_store();
  struct enc e = roundtrip(bs, (const uint8_t *)"", 0, NULL, 0, 500);
  CHECK_INT(e.kind, ==, ENTRY_CONTENT_NONE);
  CHECK_INT(e.len, ==, 0);
  e = roundtrip(bs, (const uint8_t *)"x", 1, NULL, 0, 500);
  CHECK_INT(e.kind, ==, ENTRY_CONTENT_INLINE);
  CHECK_INT(e.len, ==, 1);
  /* no room at all for a non-empty file: too big, not a crash */
  uint8_t k, out[8];
  size_t ol;
  CHECK_INT(content_encode(bs, "x", 1, NULL, 0, 0, &k, out, &ol), ==, -BFS_ETOOBIG);
  blocks_close(bs);
}

TEST(inline_exactly_at_budget)
{
  struct blocks *bs = open_store();
  size_t avail = 700;
  uint8_t *r = test_random_bytes(avail + 1);
  struct enc e = roundtrip(bs, r, avail, NULL, 0, avail);
  CHECK_INT(e.kind, ==, ENTRY_CONTENT_INLINE);
  CHECK_INT(e.len, ==, avail);
  /* one byte more of random data fits no embedded form: one block */
  e = roundtrip(bs, r, avail + 1, NULL, 0, avail);
  CHECK_INT(e.kind, ==, ENTRY_CONTENT_BLOCKS);
  CHECK_INT(e.len, ==, HASH_SIZE);
  free(r);
  blocks_close(bs);
}

TEST(zstd_for_compressible)
{
  struct blocks *bs = open_store();
  uint8_t *t = text_buf(6000);
  struct enc e = roundtrip(bs, t, 6000, NULL, 0, ENTRY_CONTENT_MAX);
  CHECK_INT(e.kind, ==, ENTRY_CONTENT_ZSTD);
  printf("# 6000 bytes of config text -> %zu bytes of zstd\n", e.len);
  CHECK_INT(e.len, <, 6000 / 3);
  /* a big but very compressible file still travels in the entry */
  uint8_t *z = calloc(1, 1u << 20);
  e = roundtrip(bs, z, 1u << 20, NULL, 0, ENTRY_CONTENT_MAX);
  CHECK_INT(e.kind, ==, ENTRY_CONTENT_ZSTD);
  /* short text: inline beats a frame with its header */
  e = roundtrip(bs, (const uint8_t *)"a=1\n", 4, NULL, 0, ENTRY_CONTENT_MAX);
  CHECK_INT(e.kind, ==, ENTRY_CONTENT_INLINE);
  free(z);
  free(t);
  blocks_close(bs);
}

TEST(delta_against_previous_version)
{
  struct blocks *bs = open_store();
  size_t len = 100000;
  /* incompressible on its own, so only a delta can fit an entry */
  uint8_t *prev = test_random_bytes(len);
  uint8_t *next = malloc(len + 10);
  memcpy(next, prev, 50000);
  memcpy(next + 50000, "CHANGED!!!", 10);
  memcpy(next + 50010, prev + 50000, len - 50000);
  struct enc e = roundtrip(bs, next, len + 10, prev, len, ENTRY_CONTENT_MAX);
  CHECK_INT(e.kind, ==, ENTRY_CONTENT_DELTA);
  printf("# 100 KB random file, 10 bytes inserted: delta %zu bytes\n", e.len);
  CHECK_INT(e.len, <, 100);
  /* without the base, or with the wrong base length: clean errors */
  uint8_t *out;
  CHECK_INT(content_decode(bs, e.kind, e.bytes, e.len, len + 10, NULL, 0, SIZE_MAX, &out), ==,
            -EINVAL);
  int r = content_decode(bs, e.kind, e.bytes, e.len, len + 10, prev, 1000, SIZE_MAX, &out);
  CHECK_INT(r, <, 0);
  /* the wrong base of the right length: the frame checksum catches it */
  uint8_t *wrong = test_random_bytes(len);
  CHECK_INT(content_decode(bs, e.kind, e.bytes, e.len, len + 10, wrong, len, SIZE_MAX, &out), ==,
            -BFS_ECHECKSUM);
  prev[60000] ^= 1; /* one byte differs, in a region the delta copies */
  CHECK_INT(content_decode(bs, e.kind, e.bytes, e.len, len + 10, prev, len, SIZE_MAX, &out), ==,
            -BFS_ECHECKSUM);
  prev[60000] ^= 1;
  free(wrong);
  /* for a small text file the delta wins only when it is smaller than zstd */
  uint8_t *t1 = text_buf(8000), *t2 = malloc(8000);
  memcpy(t2, t1, 8000);
  memcpy(t2 + 4000, "option.x = 1\n", 13);
  e = roundtrip(bs, t2, 8000, t1, 8000, ENTRY_CONTENT_MAX);
  struct enc plain = roundtrip(bs, t2, 8000, NULL, 0, ENTRY_CONTENT_MAX);
  printf("# 8000-byte text, one line changed: delta %zu, zstd %zu bytes\n", e.len, plain.len);
  CHECK_INT(e.kind, ==, ENTRY_CONTENT_DELTA);
  CHECK_INT(plain.kind, ==, ENTRY_CONTENT_ZSTD);
  CHECK_INT(e.len, <, plain.len);
  /* an unrelated previous version: no delta */
  uint8_t *other = test_random_bytes(8000);
  e = roundtrip(bs, t2, 8000, other, 8000, ENTRY_CONTENT_MAX);
  CHECK_INT(e.kind, ==, ENTRY_CONTENT_ZSTD);
  free(other);
  free(t1);
  free(t2);
  free(prev);
  free(next);
  blocks_close(bs);
}

TEST(blocks_vs_blocklist_threshold)
{
  struct blocks *bs = open_store();
  size_t len = 2u << 20;
  uint8_t *r = test_random_bytes(len);
  size_t *ends;
  ssize_t n = chunk_split(r, len, &ends);
  free(ends);
  CHECK_INT(n, >, 4);
  struct enc e = roundtrip(bs, r, len, NULL, 0, (size_t)n * HASH_SIZE);
  CHECK_INT(e.kind, ==, ENTRY_CONTENT_BLOCKS);
  CHECK_INT(e.len, ==, (size_t)n * HASH_SIZE);
  e = roundtrip(bs, r, len, NULL, 0, (size_t)n * HASH_SIZE - 1);
  CHECK_INT(e.kind, ==, ENTRY_CONTENT_BLOCKLIST);
  CHECK_INT(e.len, ==, HASH_SIZE);
  e = roundtrip(bs, r, len, NULL, 0, HASH_SIZE);
  CHECK_INT(e.kind, ==, ENTRY_CONTENT_BLOCKLIST);
  uint8_t k, out[64];
  size_t ol;
  CHECK_INT(content_encode(bs, r, len, NULL, 0, HASH_SIZE - 1, &k, out, &ol), ==, -BFS_ETOOBIG);
  CHECK_INT(content_encode(NULL, r, len, NULL, 0, 1000, &k, out, &ol), ==, -BFS_ETOOBIG);
  free(r);
  blocks_close(bs);
}

TEST(reader_random_ranges)
{
  struct blocks *bs = open_store();
  size_t len = (3u << 20) + 777;
  uint8_t *r = test_random_bytes(len);
  struct enc e = roundtrip(bs, r, len, NULL, 0, 64);
  CHECK_INT(e.kind, ==, ENTRY_CONTENT_BLOCKLIST);
  struct content_reader *rd;
  CHECK_OK(content_open(bs, e.kind, e.bytes, e.len, len, NULL, 0, &rd));
  uint8_t *buf = malloc(300000);
  for (int i = 0; i < 200; i++) {
    uint64_t off = test_rand() % (len + 100);
    size_t want = (size_t)(test_rand() % 300000);
    ssize_t got = content_read(rd, off, buf, want);
    size_t expect = off >= len ? 0 : (want < len - off ? want : (size_t)(len - off));
    CHECK_INT(got, ==, (ssize_t)expect);
    CHECK(expect == 0 || memcmp(buf, r + off, expect) == 0);
  }
  content_close(rd);
  free(buf);
  free(r);
  blocks_close(bs);
}

TEST(encode_fd_small_and_large)
{
  struct blocks *bs = open_store();
  char path[4096];
  snprintf(path, sizeof path, "%s/staged", test_tmpdir());
  size_t sizes[] = {0, 3000, CONTENT_EMBED_MAX, CONTENT_EMBED_MAX + 1, 6u << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    size_t len = sizes[i];
    uint8_t *d = i == 1 ? text_buf(len) : test_random_bytes(len);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK_INT(write(fd, d, len), ==, (ssize_t)len);
    struct enc e;
    uint64_t size = 12345;
    CHECK_OK(content_encode_fd(bs, fd, NULL, 0, 200, &e.kind, e.bytes, &e.len, &size));
    CHECK_INT(size, ==, len);
    uint8_t *out;
    CHECK_OK(content_decode(bs, e.kind, e.bytes, e.len, size, NULL, 0, SIZE_MAX, &out));
    CHECK(len == 0 || memcmp(out, d, len) == 0);
    free(out);
    close(fd);
    free(d);
  }
  blocks_close(bs);
}

/* Copies every block of L's content from A to B except those in SKIP. */
static void copy_blocks(struct blocks *a, struct blocks *b, const hash_t *hashes, size_t n,
                        const hash_t *skip)
{
  for (size_t i = 0; i < n; i++) {
    if (skip && hash_eq(&hashes[i], skip))
      continue;
    uint8_t *f;
    size_t fl;
    CHECK_OK(blocks_get_stored(a, &hashes[i], &f, &fl));
    CHECK_INT(blocks_put_stored(b, f, fl, &hashes[i]), >=, 0);
    free(f);
  }
}

TEST(missing_and_damaged_blocks)
{
  struct blocks *bs = open_store();
  size_t len = 1u << 20;
  uint8_t *r = test_random_bytes(len);
  struct enc e = roundtrip(bs, r, len, NULL, 0, ENTRY_CONTENT_MAX);
  CHECK_INT(e.kind, ==, ENTRY_CONTENT_BLOCKS);
  hash_t second;
  memcpy(second.bytes, e.bytes + HASH_SIZE, HASH_SIZE);
  /* damaged: the reader fails on the block it touches, not before */
  struct content_reader *rd;
  CHECK_OK(content_open(bs, e.kind, e.bytes, e.len, len, NULL, 0, &rd));
  char p[4096];
  uint64_t off;
  size_t slen;
  CHECK_OK(blocks_locate(bs, &second, p, sizeof p, &off, &slen));
  int fd = open(p, O_RDWR);
  CHECK(fd >= 0);
  CHECK_INT(pwrite(fd, "X", 1, (off_t)off + 100), ==, 1);
  close(fd);
  uint8_t buf[100];
  CHECK_INT(content_read(rd, 0, buf, sizeof buf), ==, sizeof buf);
  CHECK_INT(content_read(rd, len - 1, buf, 1), ==, 1);
  CHECK_INT(content_read(rd, 0, buf, 0), ==, 0);
  content_close(rd);
  uint8_t *out;
  CHECK_INT(content_decode(bs, e.kind, e.bytes, e.len, len, NULL, 0, SIZE_MAX, &out), ==,
            -BFS_ECHECKSUM);
  CHECK_INT(content_missing(bs, e.kind, e.bytes, e.len, &(hash_t *){NULL}), ==, 0);

  /* missing: a peer that received every block but one */
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/peer", test_tmpdir());
  struct blocks *peer;
  CHECK_OK(blocks_open(dir, BLOCKS_CREATE, &peer));
  uint8_t *good = test_random_bytes(len);
  e = roundtrip(bs, good, len, NULL, 0, ENTRY_CONTENT_MAX);
  CHECK_INT(e.kind, ==, ENTRY_CONTENT_BLOCKS);
  memcpy(second.bytes, e.bytes + HASH_SIZE, HASH_SIZE);
  copy_blocks(bs, peer, (const hash_t *)e.bytes, e.len / HASH_SIZE, &second);
  hash_t *missing;
  CHECK_INT(content_missing(peer, e.kind, e.bytes, e.len, &missing), ==, 1);
  CHECK(hash_eq(&missing[0], &second));
  free(missing);
  CHECK_INT(content_open(peer, e.kind, e.bytes, e.len, len, NULL, 0, &rd), ==, -ENOENT);
  copy_blocks(bs, peer, &second, 1, NULL);
  CHECK_INT(content_missing(peer, e.kind, e.bytes, e.len, &missing), ==, 0);

  /* a missing list block is the one thing reported */
  e = roundtrip(bs, good + 100, len - 100, NULL, 0, 40);
  CHECK_INT(e.kind, ==, ENTRY_CONTENT_BLOCKLIST);
  hash_t list;
  memcpy(list.bytes, e.bytes, HASH_SIZE);
  CHECK_INT(content_missing(peer, e.kind, e.bytes, e.len, &missing), ==, 1);
  CHECK(hash_eq(&missing[0], &list));
  free(missing);
  /* with the list present, the data blocks it names that are absent */
  copy_blocks(bs, peer, &list, 1, NULL);
  ssize_t n = content_missing(peer, e.kind, e.bytes, e.len, &missing);
  CHECK_INT(n, >=, 1);
  for (ssize_t i = 0; i < n; i++)
    CHECK_INT(blocks_has(peer, &missing[i]), ==, 0);
  free(missing);
  blocks_close(peer);
  free(good);
  free(r);
  blocks_close(bs);
}

TEST(hostile_content)
{
  struct blocks *bs = open_store();
  uint8_t *out;
  uint8_t junk[ENTRY_CONTENT_MAX];
  for (size_t i = 0; i < sizeof junk; i++)
    junk[i] = (uint8_t)test_rand();
  /* declared size above the caller's cap */
  CHECK_INT(content_decode(bs, ENTRY_CONTENT_INLINE, junk, 10, 10, NULL, 0, 9, &out), ==,
            -BFS_ETOOBIG);
  /* sizes that disagree with the bytes */
  CHECK_INT(content_decode(bs, ENTRY_CONTENT_INLINE, junk, 10, 11, NULL, 0, SIZE_MAX, &out), ==,
            -BFS_EFORMAT);
  CHECK_INT(content_decode(bs, ENTRY_CONTENT_NONE, junk, 1, 0, NULL, 0, SIZE_MAX, &out), ==,
            -BFS_EFORMAT);
  CHECK_INT(content_decode(bs, ENTRY_CONTENT_NONE, junk, 0, 5, NULL, 0, SIZE_MAX, &out), ==,
            -BFS_EFORMAT);
  CHECK_INT(content_decode(bs, 77, junk, 10, 10, NULL, 0, SIZE_MAX, &out), ==, -BFS_EFORMAT);
  /* a frame whose declared size differs from the entry's; a truncated frame */
  const char text[] = "hello hello hello hello hello hello hello hello";
  uint8_t frame[256];
  size_t fl = ZSTD_compress(frame, sizeof frame, text, sizeof text, 3);
  CHECK_OK(content_decode(bs, ENTRY_CONTENT_ZSTD, frame, fl, sizeof text, NULL, 0, SIZE_MAX, &out));
  CHECK_MEM(out, text, sizeof text);
  free(out);
  CHECK_INT(content_decode(bs, ENTRY_CONTENT_ZSTD, frame, fl, sizeof text - 1, NULL, 0, SIZE_MAX,
                           &out), ==, -BFS_EFORMAT);
  for (size_t cut = 0; cut < fl; cut++)
    CHECK_INT(content_decode(bs, ENTRY_CONTENT_ZSTD, frame, cut, sizeof text, NULL, 0, SIZE_MAX,
                             &out), <, 0);
  /* a bomb: a complete 600-byte frame of 16 MiB of zeros, with an entry
   * claiming that size (beyond the embedded limit) or a small one (which
   * disagrees with the frame) */
  ZSTD_CCtx *c = ZSTD_createCCtx();
  uint8_t *zeros = calloc(1, 1u << 20), bomb[ENTRY_CONTENT_MAX];
  size_t bl = 0;
  CHECK_OK(ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(c, 16u << 20)));
  ZSTD_outBuffer ob = {bomb, sizeof bomb, 0};
  for (int i = 0; i < 16; i++) {
    ZSTD_inBuffer ib = {zeros, 1u << 20, 0};
    size_t rem = ZSTD_compressStream2(c, &ob, &ib, i == 15 ? ZSTD_e_end : ZSTD_e_continue);
    CHECK(!ZSTD_isError(rem));
    if (i == 15)
      CHECK_INT(rem, ==, 0); /* the whole frame fit */
  }
  bl = ob.pos;
  CHECK_INT(ZSTD_getFrameContentSize(bomb, bl), ==, 16u << 20);
  CHECK_INT(content_decode(bs, ENTRY_CONTENT_ZSTD, bomb, bl, 16u << 20, NULL, 0, SIZE_MAX, &out),
            ==, -BFS_EFORMAT);
  CHECK_INT(content_decode(bs, ENTRY_CONTENT_ZSTD, bomb, bl, 1000, NULL, 0, SIZE_MAX, &out), ==,
            -BFS_EFORMAT);
  CHECK_INT(content_decode(bs, ENTRY_CONTENT_DELTA, bomb, bl, 1000, "x", 1, SIZE_MAX, &out), ==,
            -BFS_EFORMAT);
  /* a delta without the checksum the format requires */
  CHECK_INT(content_decode(bs, ENTRY_CONTENT_DELTA, frame, fl, sizeof text, "x", 1, SIZE_MAX, &out),
            ==, -BFS_EFORMAT);
  /* a frame that does not declare its size */
  ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
  ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 0);
  ob.pos = 0;
  ZSTD_inBuffer ib = {text, sizeof text, 0};
  CHECK_INT(ZSTD_compressStream2(c, &ob, &ib, ZSTD_e_end), ==, 0);
  CHECK_INT(ZSTD_getFrameContentSize(bomb, ob.pos), ==, ZSTD_CONTENTSIZE_UNKNOWN);
  CHECK_INT(content_decode(bs, ENTRY_CONTENT_ZSTD, bomb, ob.pos, sizeof text, NULL, 0, SIZE_MAX,
                           &out), ==, -BFS_EFORMAT);
  ZSTD_freeCCtx(c);
  free(zeros);
  /* garbage in every kind */
  for (int kind = 0; kind <= ENTRY_CONTENT_MAX_KIND + 1; kind++)
    for (size_t len = 0; len < 200; len += 13) {
      int r = content_decode(bs, (uint8_t)kind, junk, len, len + 1, "base", 4, SIZE_MAX, &out);
      CHECK_INT(r, <, 0);
    }
  /* block forms with bad lengths, unknown blocks, a lying size */
  CHECK_INT(content_decode(bs, ENTRY_CONTENT_BLOCKS, junk, 31, 5, NULL, 0, SIZE_MAX, &out), ==,
            -BFS_EFORMAT);
  CHECK_INT(content_decode(bs, ENTRY_CONTENT_BLOCKS, junk, 0, 5, NULL, 0, SIZE_MAX, &out), ==,
            -BFS_EFORMAT);
  CHECK_INT(content_decode(bs, ENTRY_CONTENT_BLOCKLIST, junk, 33, 5, NULL, 0, SIZE_MAX, &out), ==,
            -BFS_EFORMAT);
  CHECK_INT(content_decode(bs, ENTRY_CONTENT_BLOCKS, junk, 64, 5, NULL, 0, SIZE_MAX, &out), ==,
            -ENOENT);
  uint8_t *r = test_random_bytes(5000);
  struct enc e;
  CHECK_OK(content_encode(bs, r, 5000, NULL, 0, 100, &e.kind, e.bytes, &e.len));
  CHECK_INT(e.kind, ==, ENTRY_CONTENT_BLOCKS);
  CHECK_INT(content_decode(bs, e.kind, e.bytes, e.len, 4999, NULL, 0, SIZE_MAX, &out), ==,
            -BFS_EFORMAT);
  CHECK_INT(content_decode(bs, e.kind, e.bytes, e.len, 5001, NULL, 0, SIZE_MAX, &out), ==,
            -BFS_EFORMAT);
  /* a "block list" that is a data block of the wrong length */
  hash_t h;
  CHECK_INT(blocks_put(bs, "not a multiple of 32", 20, &h), ==, 1);
  CHECK_INT(content_decode(bs, ENTRY_CONTENT_BLOCKLIST, h.bytes, 32, 20, NULL, 0, SIZE_MAX, &out),
            ==, -BFS_EFORMAT);
  free(r);
  blocks_close(bs);
}
