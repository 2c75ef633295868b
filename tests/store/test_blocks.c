#include "store/blocks.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include "store/chunk.h"
#include "store/error.h"
#include "store/sha256.h"
#include "tests/test.h"

/* Half random, half text-like: some chunks compress, some do not. */
static uint8_t *mixed_buf(size_t len)
{
  uint8_t *b = test_random_bytes(len);
  for (size_t i = 0; i < len; i++)
    if ((i / 100000) % 2)
      b[i] = "basefs config line\n"[i % 19];
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

static off_t file_size(const char *path)
{
  struct stat st;
  CHECK_OK(stat(path, &st));
  return st.st_size;
}

static void flip_byte(const char *path, off_t at)
{
  int fd = open(path, O_RDWR);
  CHECK(fd >= 0);
  uint8_t c;
  CHECK_INT(pread(fd, &c, 1, at), ==, 1);
  c ^= 0x20;
  CHECK_INT(pwrite(fd, &c, 1, at), ==, 1);
  close(fd);
}

TEST(open_missing_store)
{
  struct blocks *bs;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/nope", test_tmpdir());
  CHECK_INT(blocks_open(dir, 0, &bs), ==, -ENOENT);
  CHECK_INT(blocks_open(dir, BLOCKS_WRITE, &bs), ==, -ENOENT);
  /* a directory, but no store: a writer refuses, a reader sees it empty */
  CHECK_INT(blocks_open(test_tmpdir(), BLOCKS_WRITE, &bs), ==, -ENOENT);
  CHECK_OK(blocks_open(test_tmpdir(), 0, &bs));
  hash_t h;
  CHECK_INT(blocks_put(bs, "x", 1, &h), ==, -EROFS);
  CHECK_INT(blocks_has(bs, &h), ==, 0);
  blocks_close(bs);
}

TEST(hash_matches_mbedtls)
{
  uint8_t *b = test_random_bytes(70000);
  for (size_t len = 0; len < 300; len++) {
    hash_t a, c;
    blocks_hash(b, len, &a);
    sha256_mbedtls(b, len, &c);
    CHECK_MSG(hash_eq(&a, &c), "length %zu", len);
  }
  size_t lens[] = {1000, 4095, 4096, 65535, 65536, 69999, 70000};
  for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
    hash_t a, c;
    blocks_hash(b + 1, lens[i] - 1, &a); /* unaligned too */
    sha256_mbedtls(b + 1, lens[i] - 1, &c);
    CHECK(hash_eq(&a, &c));
  }
  /* the FIPS 180-2 "abc" vector */
  hash_t h;
  char hex[HASH_HEX_SIZE];
  blocks_hash("abc", 3, &h);
  hash_to_hex(&h, hex);
  CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
  free(b);
}

TEST(put_get_roundtrip)
{
  struct blocks *bs = open_store();
  size_t lens[] = {0, 1, 100, 65536, 200000};
  for (size_t i = 0; i < 5; i++) {
    uint8_t *b = i % 2 ? test_random_bytes(lens[i]) : mixed_buf(lens[i]);
    hash_t h, h2;
    CHECK_INT(blocks_has(bs, &h2), >=, 0);
    CHECK_INT(blocks_put(bs, b, lens[i], &h), ==, 1);
    hash_buf(b, lens[i], &h2);
    CHECK(hash_eq(&h, &h2));
    CHECK_INT(blocks_has(bs, &h), ==, 1);
    CHECK_INT(blocks_put(bs, b, lens[i], &h2), ==, 0); /* stored once */
    uint8_t *back;
    size_t blen;
    CHECK_OK(blocks_get(bs, &h, &back, &blen));
    CHECK_INT(blen, ==, lens[i]);
    CHECK_MEM(back, b, blen);
    uint32_t sz;
    CHECK_OK(blocks_size(bs, &h, &sz));
    CHECK_INT(sz, ==, lens[i]);
    free(back);
    free(b);
  }
  struct blocks_stats st;
  CHECK_OK(blocks_stats(bs, &st));
  CHECK_INT(st.count, ==, 5);
  CHECK_INT(st.raw_bytes, ==, 0 + 1 + 100 + 65536 + 200000);
  CHECK_INT(st.packs, ==, 1);
  CHECK_INT(st.stored_bytes, <=, st.pack_bytes);
  CHECK_OK(blocks_sync(bs));
  hash_t absent = {{1, 2, 3}};
  CHECK_INT(blocks_has(bs, &absent), ==, 0);
  uint8_t *d;
  size_t dl;
  CHECK_INT(blocks_get(bs, &absent, &d, &dl), ==, -ENOENT);
  blocks_close(bs);
}

TEST(compresses_only_when_it_helps)
{
  struct blocks *bs = open_store();
  char path[4096];
  uint64_t off;
  size_t slen;
  hash_t h;
  uint8_t *r = test_random_bytes(65536);
  CHECK_INT(blocks_put(bs, r, 65536, &h), ==, 1);
  CHECK_OK(blocks_locate(bs, &h, path, sizeof path, &off, &slen));
  CHECK_INT(slen, ==, 65536 + BLOCKS_HEADER_SIZE); /* stored raw */
  uint8_t *t = calloc(1, 65536);
  memcpy(t, "hello", 5);
  CHECK_INT(blocks_put(bs, t, 65536, &h), ==, 1);
  CHECK_OK(blocks_locate(bs, &h, path, sizeof path, &off, &slen));
  CHECK_INT(slen, <, 1000); /* zstd */
  free(r);
  free(t);
  blocks_close(bs);
}

TEST(corrupt_block_detected)
{
  struct blocks *bs = open_store();
  char path[4096];
  uint8_t *payloads[2] = {test_random_bytes(50000), mixed_buf(150000)};
  size_t lens[2] = {50000, 150000};
  for (int k = 0; k < 2; k++) {
    hash_t h;
    uint64_t off;
    size_t size;
    CHECK_INT(blocks_put(bs, payloads[k], lens[k], &h), ==, 1);
    CHECK_OK(blocks_locate(bs, &h, path, sizeof path, &off, &size));
    /* a byte anywhere: the hash field, header fields, checksum, payload */
    off_t spots[] = {-32, -1, 0, 4, 5, 8, 12, 16, 24, (off_t)size / 2, (off_t)size - 1};
    for (size_t i = 0; i < sizeof spots / sizeof *spots; i++) {
      flip_byte(path, (off_t)off + spots[i]);
      uint8_t *d;
      size_t dl;
      CHECK_MSG(blocks_get(bs, &h, &d, &dl) == -BFS_ECHECKSUM, "flip at %ld not detected",
                (long)spots[i]);
      flip_byte(path, (off_t)off + spots[i]);
      CHECK_OK(blocks_get(bs, &h, &d, &dl));
      free(d);
    }
    /* damaged, then stored again: the store notices and writes a good copy */
    flip_byte(path, (off_t)off + (off_t)size - 1);
    uint8_t *d;
    size_t dl;
    CHECK_INT(blocks_get(bs, &h, &d, &dl), ==, -BFS_ECHECKSUM);
    CHECK_INT(blocks_put(bs, payloads[k], lens[k], &h), ==, 1);
    CHECK_OK(blocks_get(bs, &h, &d, &dl));
    CHECK_MEM(d, payloads[k], lens[k]);
    free(d);
  }
  /* a well-formed block in the wrong record: the SHA-256 check catches it */
  hash_t a, b;
  CHECK_INT(blocks_put(bs, "one", 3, &a), ==, 1);
  CHECK_INT(blocks_put(bs, "two", 3, &b), ==, 1);
  uint64_t oa, ob;
  size_t la, lb;
  CHECK_OK(blocks_locate(bs, &a, path, sizeof path, &oa, &la));
  CHECK_OK(blocks_locate(bs, &b, path, sizeof path, &ob, &lb));
  CHECK_INT(la, ==, lb);
  int fd = open(path, O_RDWR);
  uint8_t rec[64];
  CHECK_INT(pread(fd, rec, lb, (off_t)ob), ==, (ssize_t)lb);
  CHECK_INT(pwrite(fd, rec, lb, (off_t)oa), ==, (ssize_t)lb);
  close(fd);
  uint8_t *d;
  size_t dl;
  CHECK_INT(blocks_get(bs, &a, &d, &dl), ==, -BFS_ECHECKSUM);
  free(payloads[0]);
  free(payloads[1]);
  blocks_close(bs);
}

/* What was stored is there after reopening; a torn tail is dropped. */
TEST(reopen_and_torn_tail)
{
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/blocks", test_tmpdir());
  struct blocks *bs;
  CHECK_OK(blocks_open(dir, BLOCKS_CREATE, &bs));
  uint8_t *d[3];
  hash_t h[3];
  for (int i = 0; i < 3; i++) {
    d[i] = mixed_buf(30000 + 1000 * (size_t)i);
    CHECK_INT(blocks_put(bs, d[i], 30000 + 1000 * (size_t)i, &h[i]), ==, 1);
  }
  CHECK_OK(blocks_sync(bs));
  char path[4096];
  uint64_t off;
  size_t len;
  CHECK_OK(blocks_locate(bs, &h[2], path, sizeof path, &off, &len));
  blocks_close(bs);
  CHECK_OK(blocks_open(dir, BLOCKS_WRITE, &bs));
  for (int i = 0; i < 3; i++) {
    uint8_t *back;
    size_t bl;
    CHECK_OK(blocks_get(bs, &h[i], &back, &bl));
    CHECK_MEM(back, d[i], bl);
    free(back);
  }
  blocks_close(bs);
  /* a crash in the middle of the last record */
  CHECK_OK(truncate(path, (off_t)(off + len / 2)));
  struct blocks *ro;
  CHECK_OK(blocks_open(dir, 0, &ro));
  CHECK_INT(blocks_has(ro, &h[2]), ==, 0);
  CHECK_INT(file_size(path), ==, (off_t)(off + len / 2)); /* a reader never repairs */
  CHECK_OK(blocks_open(dir, BLOCKS_WRITE, &bs));
  CHECK_INT(file_size(path), ==, (off_t)(off - HASH_SIZE)); /* the owner does */
  CHECK_INT(blocks_has(bs, &h[0]), ==, 1);
  CHECK_INT(blocks_has(bs, &h[1]), ==, 1);
  CHECK_INT(blocks_has(bs, &h[2]), ==, 0);
  CHECK_INT(blocks_put(bs, d[2], 32000, &h[2]), ==, 1);
  CHECK_OK(blocks_sync(bs));
  /* the reader opened before sees the new record (its index refreshes on a miss) */
  CHECK_INT(blocks_has(ro, &h[2]), ==, 1);
  uint8_t *back;
  size_t bl;
  CHECK_OK(blocks_get(ro, &h[2], &back, &bl));
  CHECK_MEM(back, d[2], bl);
  free(back);
  CHECK_INT(blocks_put(ro, "x", 1, &h[0]), ==, -EROFS);
  CHECK_OK(blocks_sync(ro));
  blocks_close(ro);
  blocks_close(bs);
  for (int i = 0; i < 3; i++)
    free(d[i]);
  /* not a pack */
  char bad[4200];
  snprintf(bad, sizeof bad, "%s/pack-00000001", dir);
  FILE *f = fopen(bad, "r+");
  CHECK(f != NULL);
  fputs("JUNK", f);
  fclose(f);
  CHECK_INT(blocks_open(dir, BLOCKS_WRITE, &bs), ==, -BFS_EFORMAT);
  CHECK_INT(blocks_open(dir, 0, &bs), ==, -BFS_EFORMAT);
}

TEST(packs_roll_over)
{
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/blocks", test_tmpdir());
  struct blocks *bs;
  CHECK_OK(blocks_open(dir, BLOCKS_CREATE, &bs));
  blocks_set_pack_size(bs, 1u << 20);
  size_t len = 5u << 20;
  uint8_t *a = test_random_bytes(len);
  struct blocks_list l;
  CHECK_OK(blocks_write_buf(bs, a, len, &l));
  CHECK_OK(blocks_sync(bs));
  struct blocks_stats st;
  CHECK_OK(blocks_stats(bs, &st));
  CHECK_INT(st.packs, >=, 4);
  CHECK_INT(st.count, ==, l.n);
  blocks_close(bs);
  CHECK_OK(blocks_open(dir, 0, &bs));
  size_t off = 0;
  for (size_t i = 0; i < l.n; i++) {
    uint8_t *d;
    size_t dl;
    CHECK_OK(blocks_get(bs, &l.hash[i], &d, &dl));
    CHECK_INT(dl, ==, l.size[i]);
    CHECK_MEM(d, a + off, dl);
    off += dl;
    free(d);
  }
  CHECK_OK(blocks_stats(bs, &st));
  CHECK_INT(st.count, ==, l.n);
  CHECK_INT(st.raw_bytes, ==, len);
  blocks_list_free(&l);
  blocks_close(bs);
  free(a);
}

/* Two files sharing most of their content share blocks on disk. */
TEST(dedup_between_files)
{
  struct blocks *bs = open_store();
  size_t len = 4u << 20;
  uint8_t *a = test_random_bytes(len);
  uint8_t *b = malloc(len + 1000);
  /* B: a different 1000-byte head, then A from 1 MiB on, then A's start */
  memcpy(b, a + len - 1000, 1000);
  memcpy(b + 1000, a + (1 << 20), len - (1 << 20));
  memcpy(b + 1000 + len - (1 << 20), a, 1 << 20);
  struct blocks_list la, lb;
  CHECK_OK(blocks_write_buf(bs, a, len, &la));
  CHECK_OK(blocks_write_buf(bs, b, len + 1000, &lb));
  CHECK_INT(la.total, ==, len);
  CHECK_INT(lb.total, ==, len + 1000);
  CHECK_INT(la.written, ==, la.n);
  struct blocks_stats st;
  CHECK_OK(blocks_stats(bs, &st));
  printf("# A: %zu blocks, B: %zu blocks, %zu new; %" PRIu64 " on disk\n", la.n, lb.n, lb.written,
         st.count);
  CHECK_INT(st.count, ==, la.n + lb.written);
  /* new blocks only around the head, the seam (A's end, then A's start) and the tail:
   * a chunk or two each until the cut points fall in step again */
  CHECK_INT(lb.written, <=, 8);
  CHECK_INT(st.count, <, la.n + lb.n);
  /* the same file again stores nothing */
  struct blocks_list lc;
  CHECK_OK(blocks_write_buf(bs, a, len, &lc));
  CHECK_INT(lc.written, ==, 0);
  CHECK_INT(lc.n, ==, la.n);
  CHECK_MEM(lc.hash, la.hash, la.n * sizeof(hash_t));
  blocks_list_free(&la);
  blocks_list_free(&lb);
  blocks_list_free(&lc);
  free(a);
  free(b);
  blocks_close(bs);
}

/* The fd pipeline (segments, carries, threads) cuts exactly like the buffer path. */
TEST(write_fd_matches_write_buf)
{
  size_t len = (9u << 20) + 12345;
  uint8_t *a = mixed_buf(len);
  char path[4096];
  snprintf(path, sizeof path, "%s/file", test_tmpdir());
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  CHECK(fd >= 0);
  CHECK_INT(write(fd, a, len), ==, (ssize_t)len);
  size_t *ends;
  ssize_t n = chunk_split(a, len, &ends);
  for (int threads = 1; threads <= 3; threads++) {
    struct blocks *bs = open_store();
    blocks_set_threads(bs, threads);
    struct blocks_list lf, lb;
    CHECK_OK(lseek(fd, 0, SEEK_SET));
    CHECK_OK(blocks_write_fd(bs, fd, &lf));
    CHECK_OK(blocks_write_buf(bs, a, len, &lb));
    CHECK_INT(lf.n, ==, (size_t)n);
    CHECK_INT(lb.n, ==, (size_t)n);
    CHECK_INT(lf.total, ==, len);
    CHECK_INT(lb.written, ==, 0);
    size_t off = 0;
    for (size_t i = 0; i < lf.n; i++) {
      hash_t h;
      hash_buf(a + off, lf.size[i], &h);
      CHECK(hash_eq(&h, &lf.hash[i]));
      CHECK(hash_eq(&h, &lb.hash[i]));
      CHECK_INT(off + lf.size[i], ==, ends[i]);
      off += lf.size[i];
    }
    blocks_list_free(&lf);
    blocks_list_free(&lb);
    blocks_close(bs);
  }
  /* empty input: no blocks */
  struct blocks *bs = open_store();
  struct blocks_list l;
  CHECK_OK(ftruncate(fd, 0));
  CHECK_OK(lseek(fd, 0, SEEK_SET));
  CHECK_OK(blocks_write_fd(bs, fd, &l));
  CHECK_INT(l.n, ==, 0);
  blocks_list_free(&l);
  blocks_close(bs);
  close(fd);
  free(ends);
  free(a);
}

TEST(write_fd_read_error)
{
  struct blocks *bs = open_store();
  struct blocks_list l;
  int fd = open(test_tmpdir(), O_RDONLY | O_DIRECTORY);
  CHECK_INT(blocks_write_fd(bs, fd, &l), ==, -EISDIR);
  CHECK(l.hash == NULL);
  close(fd);
  blocks_close(bs);
}

/* A stored file built by hand: header + payload. */
static size_t make_file(uint8_t *out, int codec, uint32_t raw, const uint8_t *payload, size_t plen)
{
  memcpy(out, "BFSb", 4);
  out[4] = 1;
  out[5] = (uint8_t)codec;
  out[6] = out[7] = 0;
  for (int i = 0; i < 4; i++) {
    out[8 + i] = (uint8_t)(raw >> (8 * i));
    out[12 + i] = (uint8_t)(plen >> (8 * i));
  }
  uint64_t x = XXH64(payload, plen, 0);
  for (int i = 0; i < 8; i++)
    out[16 + i] = (uint8_t)(x >> (8 * i));
  memcpy(out + 24, payload, plen);
  return 24 + plen;
}

TEST(hostile_stored_bytes)
{
  uint8_t *data, file[4096], frame[2048];
  size_t dl;
  const uint8_t text[] = "some text some text some text some text";
  /* well-formed, both codecs */
  size_t n = make_file(file, 0, sizeof text, text, sizeof text);
  CHECK_OK(blocks_decode(file, n, NULL, &data, &dl));
  free(data);
  size_t fl = ZSTD_compress(frame, sizeof frame, text, sizeof text, 3);
  CHECK(!ZSTD_isError(fl));
  n = make_file(file, 1, sizeof text, frame, fl);
  CHECK_OK(blocks_decode(file, n, NULL, &data, &dl));
  CHECK_INT(dl, ==, sizeof text);
  free(data);
  /* the raw length lies (frame declares another size) */
  n = make_file(file, 1, sizeof text - 1, frame, fl);
  CHECK_INT(blocks_decode(file, n, NULL, &data, &dl), ==, -BFS_EFORMAT);
  n = make_file(file, 1, 1u << 30, frame, fl);
  CHECK_INT(blocks_decode(file, n, NULL, &data, &dl), ==, -BFS_EFORMAT);
  /* a truncated frame, a frame with trailing bytes */
  n = make_file(file, 1, sizeof text, frame, fl - 3);
  CHECK_INT(blocks_decode(file, n, NULL, &data, &dl), ==, -BFS_EFORMAT);
  uint8_t padded[2048];
  memcpy(padded, frame, fl);
  memset(padded + fl, 0, 8);
  n = make_file(file, 1, sizeof text, padded, fl + 8);
  CHECK_INT(blocks_decode(file, n, NULL, &data, &dl), ==, -BFS_EFORMAT);
  /* a frame claiming a huge size: a zstd frame of 64 MiB zeros is tiny */
  size_t big = 64u << 20;
  uint8_t *zeros = calloc(1, big);
  size_t bcap = ZSTD_compressBound(big);
  uint8_t *bomb = malloc(bcap);
  size_t bl = ZSTD_compress(bomb, bcap, zeros, big, 1);
  CHECK(!ZSTD_isError(bl) && bl < 4000);
  n = make_file(file, 1, 1000, bomb, bl);
  CHECK_INT(blocks_decode(file, n, NULL, &data, &dl), ==, -BFS_EFORMAT);
  n = make_file(file, 1, BLOCKS_MAX_SIZE + 1, bomb, bl);
  CHECK_INT(blocks_decode(file, n, NULL, &data, &dl), ==, -BFS_EFORMAT);
  free(bomb);
  free(zeros);
  /* garbage and short files */
  uint8_t garbage[300];
  for (size_t i = 0; i < sizeof garbage; i++)
    garbage[i] = (uint8_t)test_rand();
  for (size_t len = 0; len < sizeof garbage; len += 7)
    CHECK_INT(blocks_decode(garbage, len, NULL, &data, &dl), <, 0);
  /* bad version, codec, reserved bytes, raw codec with a length mismatch */
  n = make_file(file, 0, sizeof text, text, sizeof text);
  for (int field = 4; field < 8; field++) {
    uint8_t copy[4096];
    memcpy(copy, file, n);
    copy[field] = 7;
    CHECK_INT(blocks_decode(copy, n, NULL, &data, &dl), ==, -BFS_EFORMAT);
  }
  n = make_file(file, 0, sizeof text + 1, text, sizeof text);
  CHECK_INT(blocks_decode(file, n, NULL, &data, &dl), ==, -BFS_EFORMAT);
  /* the wrong expected hash */
  n = make_file(file, 0, sizeof text, text, sizeof text);
  hash_t wrong = {{0}};
  CHECK_INT(blocks_decode(file, n, &wrong, &data, &dl), ==, -BFS_ECHECKSUM);
}

TEST(stored_form_for_sync)
{
  struct blocks *a = open_store();
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/other", test_tmpdir());
  struct blocks *b;
  CHECK_OK(blocks_open(dir, BLOCKS_CREATE, &b));
  uint8_t *m = mixed_buf(120000);
  hash_t h;
  CHECK_INT(blocks_put(a, m, 120000, &h), ==, 1);
  uint8_t *file;
  size_t fl;
  CHECK_OK(blocks_get_stored(a, &h, &file, &fl));
  hash_t wrong = h;
  wrong.bytes[0] ^= 1;
  CHECK_INT(blocks_put_stored(b, file, fl, &wrong), ==, -BFS_ECHECKSUM);
  CHECK_INT(blocks_has(b, &wrong), ==, 0);
  CHECK_INT(blocks_put_stored(b, file, fl, &h), ==, 1);
  CHECK_INT(blocks_put_stored(b, file, fl, &h), ==, 0);
  uint8_t *d;
  size_t dl;
  CHECK_OK(blocks_get(b, &h, &d, &dl));
  CHECK_INT(dl, ==, 120000);
  CHECK_MEM(d, m, dl);
  free(d);
  free(file);
  free(m);
  blocks_close(a);
  blocks_close(b);
}

/* A pack of garbage after a valid header: an owner keeps the whole records
 * before it and cuts the rest; a reader opens it without touching it. */
TEST(garbage_in_pack)
{
  char dir[4096], pack[4200];
  snprintf(dir, sizeof dir, "%s/blocks", test_tmpdir());
  snprintf(pack, sizeof pack, "%s/pack-00000001", dir);
  struct blocks *bs;
  CHECK_OK(blocks_open(dir, BLOCKS_CREATE, &bs));
  hash_t h;
  CHECK_INT(blocks_put(bs, "kept", 4, &h), ==, 1);
  CHECK_OK(blocks_sync(bs));
  blocks_close(bs);
  off_t good = file_size(pack);
  for (int round = 0; round < 20; round++) {
    CHECK_OK(truncate(pack, good));
    int fd = open(pack, O_WRONLY | O_APPEND);
    CHECK(fd >= 0);
    uint8_t junk[4096];
    size_t n = 1 + test_rand() % sizeof junk;
    for (size_t i = 0; i < n; i++)
      junk[i] = (uint8_t)test_rand();
    if (round % 2 && n > 60) {
      /* a plausible record header with a huge stored length */
      memcpy(junk + 32, "BFSb\x01\x01\x00\x00", 8);
      memset(junk + 40, 0xff, 8);
    }
    CHECK_INT(write(fd, junk, n), ==, (ssize_t)n);
    close(fd);
    CHECK_OK(blocks_open(dir, 0, &bs));
    CHECK_INT(blocks_has(bs, &h), ==, 1);
    blocks_close(bs);
    CHECK_INT(file_size(pack), ==, good + (off_t)n);
    CHECK_OK(blocks_open(dir, BLOCKS_WRITE, &bs));
    uint8_t *d;
    size_t dl;
    CHECK_OK(blocks_get(bs, &h, &d, &dl));
    CHECK_INT(dl, ==, 4);
    free(d);
    blocks_close(bs);
    CHECK_INT(file_size(pack), ==, good);
  }
}

/* Bytes [FROM, TO) of PATH are all zero. */
static int zeros_in(const char *path, off_t from, off_t to)
{
  int fd = open(path, O_RDONLY);
  CHECK(fd >= 0);
  int ok = 1;
  uint8_t buf[4096];
  for (off_t at = from; at < to && ok;) {
    size_t want = to - at < (off_t)sizeof buf ? (size_t)(to - at) : sizeof buf;
    CHECK_INT(pread(fd, buf, want, at), ==, (ssize_t)want);
    for (size_t i = 0; i < want; i++)
      ok &= buf[i] == 0;
    at += (off_t)want;
  }
  close(fd);
  return ok;
}

static void copy_file(const char *from, const char *to)
{
  int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CHECK(in >= 0 && out >= 0);
  uint8_t buf[65536];
  ssize_t n;
  while ((n = read(in, buf, sizeof buf)) > 0)
    CHECK_INT(write(out, buf, (size_t)n), ==, n);
  CHECK_INT(n, ==, 0);
  close(in);
  close(out);
}

/*
 * The writer keeps zeros past its pack's end (blocks.h): at most
 * BLOCKS_ZERO_AHEAD, nothing but zeros, none after a clean close. A reader
 * stops at them; a crash image (the pack as the live writer leaves it) opens
 * with every synced block; a record torn over them is cut if its header is
 * torn, and rewritten by the next store if its payload is.
 */
TEST(zeros_ahead_of_the_pack)
{
  char dir[4096], pack[4200], img[4200];
  snprintf(dir, sizeof dir, "%s/blocks", test_tmpdir());
  snprintf(pack, sizeof pack, "%s/pack-00000001", dir);
  snprintf(img, sizeof img, "%s/image", test_tmpdir());
  struct blocks *bs;
  CHECK_OK(blocks_open(dir, BLOCKS_CREATE, &bs));
  blocks_set_threads(bs, 1);
  enum { N = 6 };
  uint8_t *d[N + 1];
  hash_t h[N + 1];
  for (int i = 0; i <= N; i++)
    d[i] = test_random_bytes(4096);
  char where[4200];
  uint64_t off;
  size_t len;
  for (int i = 0; i < N; i++) {
    CHECK_INT(blocks_put(bs, d[i], 4096, &h[i]), ==, 1);
    CHECK_OK(blocks_sync(bs));
    CHECK_OK(blocks_locate(bs, &h[i], where, sizeof where, &off, &len));
    off_t end = (off_t)(off + len), size = file_size(pack);
    CHECK_INT(size, >=, end);
    CHECK_INT(size - end, <=, BLOCKS_ZERO_AHEAD);
    CHECK(zeros_in(pack, end, size));
    struct statvfs sv;
    CHECK_OK(statvfs(dir, &sv));
    if ((uint64_t)sv.f_bavail * sv.f_frsize > (64u << 20))
      CHECK_INT(size - end, >=, BLOCKS_ZERO_AHEAD / 2); /* refilled at each sync */
  }
  off_t end = (off_t)(off + len);
  /* A reader in the meantime sees every block and stops at the zeros. */
  struct blocks *ro;
  CHECK_OK(blocks_open(dir, 0, &ro));
  for (int i = 0; i < N; i++)
    CHECK_INT(blocks_has(ro, &h[i]), ==, 1);
  struct blocks_stats st;
  CHECK_OK(blocks_stats(ro, &st));
  CHECK_INT(st.count, ==, N);
  blocks_close(ro);
  copy_file(pack, img); /* what a crash now leaves */
  blocks_close(bs);
  CHECK_INT(file_size(pack), ==, end); /* a clean close gives them back */

  /* The crash image: every block, zeros cut by the owner at open. */
  off_t isize = file_size(img);
  copy_file(img, pack);
  CHECK_OK(blocks_open(dir, BLOCKS_WRITE, &bs));
  CHECK_INT(file_size(pack), <=, isize);
  for (int i = 0; i < N; i++) {
    uint8_t *back;
    size_t bl;
    CHECK_OK(blocks_get(bs, &h[i], &back, &bl));
    CHECK_MEM(back, d[i], 4096);
    free(back);
  }
  /* The next record as written, to tear it over the zeros. */
  CHECK_INT(blocks_put(bs, d[N], 4096, &h[N]), ==, 1);
  CHECK_OK(blocks_sync(bs));
  blocks_close(bs);
  size_t plen;
  int fd = open(pack, O_RDONLY);
  CHECK(fd >= 0);
  uint8_t *rec = malloc(4096 + 256);
  CHECK(rec);
  plen = (size_t)(file_size(pack) - end);
  CHECK_INT(plen, <=, 4096 + 256);
  CHECK_INT(pread(fd, rec, plen, end), ==, (ssize_t)plen);
  close(fd);

  for (int torn = 0; torn < 3; torn++) {
    copy_file(img, pack);
    fd = open(pack, O_WRONLY);
    CHECK(fd >= 0);
    /* 0: the header cut in its hash, 1: after its lengths (the XXH64 field
     * still zero), 2: the header whole, half the payload. */
    size_t keep = torn == 0 ? 20 : torn == 1 ? HASH_SIZE + 16 : plen / 2;
    CHECK_INT(pwrite(fd, rec, keep, end), ==, (ssize_t)keep);
    close(fd);
    CHECK_OK(blocks_open(dir, 0, &ro));
    CHECK_INT(blocks_has(ro, &h[N - 1]), ==, 1);
    if (torn < 2)
      CHECK_INT(blocks_has(ro, &h[N]), ==, 0);
    blocks_close(ro);
    CHECK_OK(blocks_open(dir, BLOCKS_WRITE, &bs));
    if (torn < 2) {
      CHECK_INT(file_size(pack), ==, end); /* cut at the torn header */
      CHECK_INT(blocks_has(bs, &h[N]), ==, 0);
    } else {
      /* Looks whole, is not: a read says so, a store writes it again. */
      uint8_t *back;
      size_t bl;
      CHECK_INT(blocks_get(bs, &h[N], &back, &bl), ==, -BFS_ECHECKSUM);
    }
    CHECK_INT(blocks_put(bs, d[N], 4096, &h[N]), ==, 1);
    CHECK_OK(blocks_sync(bs));
    uint8_t *back;
    size_t bl;
    CHECK_OK(blocks_get(bs, &h[N], &back, &bl));
    CHECK_MEM(back, d[N], 4096);
    free(back);
    for (int i = 0; i < N; i++)
      CHECK_INT(blocks_has(bs, &h[i]), ==, 1);
    blocks_close(bs);
  }

  /* Rolling to a new pack gives the old one's zeros back at once. */
  CHECK_OK(blocks_open(dir, BLOCKS_WRITE, &bs));
  blocks_set_pack_size(bs, 1u << 20);
  char pack2[4200];
  snprintf(pack2, sizeof pack2, "%s/pack-00000002", dir);
  for (int i = 0; access(pack2, F_OK) != 0; i++) {
    CHECK(i < 100);
    uint8_t *b = test_random_bytes(65536);
    hash_t hh;
    CHECK_INT(blocks_put(bs, b, 65536, &hh), ==, 1);
    CHECK_OK(blocks_sync(bs));
    free(b);
  }
  off_t s1 = file_size(pack);
  CHECK(!zeros_in(pack, s1 - 64, s1)); /* it ends with its last record */
  blocks_close(bs);
  free(rec);
  for (int i = 0; i <= N; i++)
    free(d[i]);
}

/* Where the pack's last record ends (H is its block). */
static off_t record_end(struct blocks *bs, const hash_t *h)
{
  char where[4200];
  uint64_t off;
  size_t len;
  CHECK_OK(blocks_locate(bs, h, where, sizeof where, &off, &len));
  return (off_t)(off + len);
}

/* A disk filling up: the zeros ahead are given back (at a sync, even with
 * nothing appended), a store that does not fit fails with ENOSPC and leaves
 * nothing, and the store works again once there is room. */
TEST(full_disk_zeros_given_back)
{
  char dir[4200], pack[4300], spare[4200];
  const char *mnt = test_small_tmpfs("24m");
  if (!mnt)
    return;
  snprintf(dir, sizeof dir, "%s/blocks", mnt);
  snprintf(pack, sizeof pack, "%s/pack-00000001", dir);
  snprintf(spare, sizeof spare, "%s/spare", mnt);
  struct blocks *bs;
  CHECK_OK(blocks_open(dir, BLOCKS_CREATE, &bs));
  uint8_t *a = test_random_bytes(4096), *big = test_random_bytes(BLOCKS_ZERO_AHEAD * 2);
  hash_t ha, hb;
  CHECK_INT(blocks_put(bs, a, 4096, &ha), ==, 1);
  CHECK_OK(blocks_sync(bs));
  off_t end = record_end(bs, &ha);
  CHECK_INT(file_size(pack), >, end); /* 24 MiB free: zeros ahead */

  /* Below 16 MiB free: the next sync gives them back, appends or not. */
  test_fill_disk(spare, 8u << 20);
  CHECK_OK(blocks_sync(bs));
  CHECK_INT(file_size(pack), ==, end);
  /* ... and appends there write none. */
  uint8_t *c = test_random_bytes(4096);
  hash_t hc;
  CHECK_INT(blocks_put(bs, c, 4096, &hc), ==, 1);
  CHECK_OK(blocks_sync(bs));
  end = record_end(bs, &hc);
  CHECK_INT(file_size(pack), ==, end);
  free(c);

  /* Full: a block that does not fit fails and leaves nothing. */
  test_fill_disk(spare, 0);
  CHECK_INT(blocks_put(bs, big, BLOCKS_ZERO_AHEAD * 2, &hb), ==, -ENOSPC);
  CHECK_INT(blocks_has(bs, &hb), ==, 0);
  CHECK_INT(file_size(pack), ==, end);

  /* Room again: it goes in, zeros come back; the block before is intact. */
  CHECK_OK(unlink(spare));
  CHECK_INT(blocks_put(bs, big, BLOCKS_ZERO_AHEAD * 2, &hb), ==, 1);
  CHECK_OK(blocks_sync(bs));
  CHECK_INT(file_size(pack), >, record_end(bs, &hb));
  uint8_t *back;
  size_t bl;
  CHECK_OK(blocks_get(bs, &ha, &back, &bl));
  CHECK_MEM(back, a, 4096);
  free(back);
  blocks_close(bs);
  CHECK_OK(blocks_open(dir, 0, &bs));
  CHECK_OK(blocks_get(bs, &hb, &back, &bl));
  CHECK_MEM(back, big, BLOCKS_ZERO_AHEAD * 2);
  free(back);
  blocks_close(bs);
  free(a);
  free(big);
  umount(mnt);
}

struct writer_arg {
  struct blocks *bs;
  const uint8_t *data;
  size_t len;
  struct blocks_list l;
  int err;
};

static void *writer_thread(void *p)
{
  struct writer_arg *a = p;
  a->err = blocks_write_buf(a->bs, a->data, a->len, &a->l);
  return NULL;
}

/* Several threads writing (overlapping) files into one store at once. */
TEST(concurrent_writers)
{
  struct blocks *bs = open_store();
  size_t len = 3u << 20;
  uint8_t *a = mixed_buf(len), *b = test_random_bytes(len);
  struct writer_arg w[4];
  pthread_t t[4];
  for (int i = 0; i < 4; i++) {
    w[i] = (struct writer_arg){bs, i % 2 ? a : b, len, {0}, 0};
    CHECK_OK(pthread_create(&t[i], NULL, writer_thread, &w[i]));
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    CHECK_OK(w[i].err);
  }
  CHECK_OK(blocks_sync(bs));
  for (int i = 2; i < 4; i++) {
    CHECK_INT(w[i].l.n, ==, w[i - 2].l.n);
    CHECK_MEM(w[i].l.hash, w[i - 2].l.hash, w[i].l.n * sizeof(hash_t));
  }
  struct blocks_stats st;
  CHECK_OK(blocks_stats(bs, &st));
  size_t distinct = 0;
  for (int i = 0; i < 2; i++)
    for (size_t k = 0; k < w[i].l.n; k++) {
      bool seen = false;
      for (int j = 0; j <= i && !seen; j++)
        for (size_t m = 0; m < (j < i ? w[j].l.n : k) && !seen; m++)
          seen = hash_eq(&w[j].l.hash[m], &w[i].l.hash[k]);
      distinct += !seen;
    }
  CHECK_INT(st.count, ==, distinct);
  for (int i = 0; i < 2; i++) {
    size_t off = 0;
    for (size_t k = 0; k < w[i].l.n; k++) {
      uint8_t *d;
      size_t dl;
      CHECK_OK(blocks_get(bs, &w[i].l.hash[k], &d, &dl));
      CHECK_MEM(d, w[i].data + off, dl);
      off += dl;
      free(d);
    }
  }
  for (int i = 0; i < 4; i++)
    blocks_list_free(&w[i].l);
  free(a);
  free(b);
  blocks_close(bs);
}

/*
 * XXH64 is no cryptographic hash: anyone whose bytes get stored can make a
 * block whose checksum is 0 (every step of XXH64 inverts). Its record header
 * then has a zero XXH64 field, as a header half-written over the writer's
 * zeros does; it must still count as a record, and the blocks after it in
 * its pack must survive a reopen (the writer once cut them away).
 */
#define XXH_P1 11400714785074694791ULL
#define XXH_P2 14029467366897019727ULL
#define XXH_P4 9650029242287828579ULL
static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static uint64_t rotr64(uint64_t x, int r) { return (x >> r) | (x << (64 - r)); }
static uint64_t inverse64(uint64_t a)
{
  uint64_t x = a; /* Newton: odd A, 6 steps give 64 bits */
  for (int i = 0; i < 6; i++)
    x *= 2 - a * x;
  return x;
}
static uint64_t xxh_round(uint64_t acc, uint64_t in) { return rotl64(acc + in * XXH_P2, 31) * XXH_P1; }

/* Sets the last 8 bytes of B (LEN % 32 == 8, LEN >= 40) so that XXH64(B, LEN, 0) == 0. */
static void make_xxh64_zero(uint8_t *b, size_t len)
{
  uint64_t v[4] = {XXH_P1 + XXH_P2, XXH_P2, 0, 0 - XXH_P1};
  size_t i = 0;
  for (; i + 32 <= len - 8; i += 32)
    for (int k = 0; k < 4; k++) {
      uint64_t lane;
      memcpy(&lane, b + i + 8 * k, 8);
      v[k] = xxh_round(v[k], lane);
    }
  uint64_t h = rotl64(v[0], 1) + rotl64(v[1], 7) + rotl64(v[2], 12) + rotl64(v[3], 18);
  for (int k = 0; k < 4; k++)
    h = (h ^ xxh_round(0, v[k])) * XXH_P1 + XXH_P4;
  h += len;
  /* The last lane: h ^= round(0, lane); h = rotl(h, 27) * P1 + P4; then the
   * avalanche, which maps 0 to 0. Solve for rotl(h ^ k1, 27) * P1 + P4 == 0. */
  uint64_t want = rotr64((0 - XXH_P4) * inverse64(XXH_P1), 27);
  uint64_t k1 = h ^ want;
  uint64_t lane = rotr64(k1 * inverse64(XXH_P1), 31) * inverse64(XXH_P2);
  memcpy(b + len - 8, &lane, 8);
}

TEST(block_whose_checksum_is_zero)
{
  size_t len = 32 * 128 + 8; /* random: stored raw, the payload is these bytes */
  uint8_t *crafted = test_random_bytes(len);
  make_xxh64_zero(crafted, len);
  CHECK(XXH64(crafted, len, 0) == 0);
  uint8_t *before = test_random_bytes(1000), *after = test_random_bytes(4000);
  struct blocks *bs = open_store();
  hash_t ha, hb, hc;
  CHECK_INT(blocks_put(bs, before, 1000, &ha), ==, 1);
  CHECK_INT(blocks_put(bs, crafted, len, &hb), ==, 1);
  CHECK_INT(blocks_put(bs, after, 4000, &hc), ==, 1);
  CHECK_OK(blocks_sync(bs));
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/blocks", test_tmpdir());
  /* A reader in another process sees all three. */
  struct blocks *rd;
  CHECK_OK(blocks_open(dir, 0, &rd));
  uint8_t *out;
  size_t out_len;
  CHECK_OK(blocks_get(rd, &hb, &out, &out_len));
  CHECK(out_len == len && memcmp(out, crafted, len) == 0);
  free(out);
  CHECK_OK(blocks_get(rd, &hc, &out, &out_len));
  free(out);
  blocks_close(rd);
  blocks_close(bs);
  /* The writer reopens: nothing cut. */
  CHECK_OK(blocks_open(dir, BLOCKS_CREATE, &bs));
  const hash_t *all[] = {&ha, &hb, &hc};
  for (int k = 0; k < 3; k++) {
    CHECK_OK(blocks_get(bs, all[k], &out, &out_len));
    free(out);
  }
  blocks_close(bs);
  free(crafted);
  free(before);
  free(after);
}
