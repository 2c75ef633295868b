#include "store/chunk.h"

#include "store/hash.h"
#include "tests/test.h"

static uint8_t *random_buf(size_t len)
{
  uint8_t *b = malloc(len);
  CHECK(b != NULL);
  for (size_t i = 0; i < len; i += 8) {
    uint64_t r = test_rand();
    memcpy(b + i, &r, len - i < 8 ? len - i : 8);
  }
  return b;
}

/* The table is the published generator's output, not whatever is in chunk.c. */
TEST(gear_table_matches_generator)
{
  uint64_t s = 0x6261736566732d31ULL;
  for (int i = 0; i < 256; i++) {
    s += 0x9E3779B97F4A7C15ULL;
    uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    CHECK_MSG(chunk_gear[i] == z, "gear[%d] differs from the generator", i);
  }
}

TEST(sizes_within_bounds)
{
  size_t len = 8u << 20;
  uint8_t *b = random_buf(len);
  size_t *ends;
  ssize_t n = chunk_split(b, len, &ends);
  CHECK_INT(n, >, 0);
  CHECK_INT(ends[n - 1], ==, len);
  size_t prev = 0;
  for (ssize_t i = 0; i < n; i++) {
    size_t sz = ends[i] - prev;
    CHECK_INT(sz, <=, CHUNK_MAX);
    if (i < n - 1)
      CHECK_INT(sz, >=, CHUNK_MIN);
    CHECK_INT(sz, >, 0);
    prev = ends[i];
  }
  /* Normalized chunking keeps the mean near AVG on random data. */
  size_t mean = len / (size_t)n;
  printf("# %zd chunks, mean %zu bytes\n", n, mean);
  CHECK_INT(mean, >, CHUNK_AVG / 2);
  CHECK_INT(mean, <, CHUNK_AVG * 2);
  free(ends);
  free(b);
}

TEST(degenerate_inputs)
{
  /* All zeros, a repeating byte pattern: still within bounds, never empty. */
  size_t len = 3u << 20;
  uint8_t *b = calloc(1, len);
  CHECK(b != NULL);
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1)
      for (size_t i = 0; i < len; i++)
        b[i] = (uint8_t)(i % 7);
    size_t *ends;
    ssize_t n = chunk_split(b, len, &ends);
    CHECK_INT(n, >, 0);
    size_t prev = 0;
    for (ssize_t i = 0; i < n; i++) {
      CHECK_INT(ends[i] - prev, <=, CHUNK_MAX);
      CHECK_INT(ends[i] - prev, >, 0);
      prev = ends[i];
    }
    CHECK_INT(prev, ==, len);
    free(ends);
  }
  size_t *ends = NULL;
  CHECK_INT(chunk_split(b, 0, &ends), ==, 0);
  free(ends);
  CHECK_INT(chunk_split(b, 1, &ends), ==, 1);
  CHECK_INT(ends[0], ==, 1);
  free(ends);
  free(b);
}

/* Feeding the stream in arbitrary pieces gives the same cuts as one shot. */
TEST(streaming_equals_oneshot)
{
  size_t len = 5u << 20;
  uint8_t *b = random_buf(len);
  size_t *ends;
  ssize_t n = chunk_split(b, len, &ends);
  CHECK_INT(n, >, 1);
  struct chunker c;
  chunker_init(&c);
  size_t off = 0, k = 0;
  while (off < len) {
    size_t piece = 1 + test_rand() % 100000;
    if (test_rand() % 8 == 0)
      piece = 1 + test_rand() % 3;
    if (piece > len - off)
      piece = len - off;
    size_t used = 0;
    while (used < piece) {
      bool cut;
      used += chunker_feed(&c, b + off + used, piece - used, &cut);
      if (cut) {
        CHECK_INT(k, <, (size_t)n);
        CHECK_INT(off + used, ==, ends[k]);
        k++;
      }
    }
    off += piece;
  }
  if (c.pos > 0) {
    CHECK_INT(k, ==, (size_t)n - 1);
    CHECK_INT(ends[k], ==, len);
    k++;
  }
  CHECK_INT(k, ==, (size_t)n);
  free(ends);
  free(b);
}

struct chunkset {
  size_t n;
  hash_t *h;
};

static struct chunkset chunk_hashes(const uint8_t *b, size_t len)
{
  size_t *ends;
  ssize_t n = chunk_split(b, len, &ends);
  CHECK_INT(n, >=, 0);
  struct chunkset s = {(size_t)n, malloc((size_t)(n + 1) * sizeof(hash_t))};
  size_t prev = 0;
  for (ssize_t i = 0; i < n; i++) {
    hash_buf(b + prev, ends[i] - prev, &s.h[i]);
    prev = ends[i];
  }
  free(ends);
  return s;
}

/* How many chunks of B also appear in A. */
static size_t shared(const struct chunkset *a, const struct chunkset *b)
{
  size_t k = 0;
  for (size_t i = 0; i < b->n; i++)
    for (size_t j = 0; j < a->n; j++)
      if (hash_eq(&a->h[j], &b->h[i])) {
        k++;
        break;
      }
  return k;
}

/*
 * The point of content-defined chunking: an insertion, deletion or overwrite
 * early in an 8 MiB file changes only the chunks around it.
 */
TEST(edits_change_only_nearby_chunks)
{
  size_t len = 8u << 20;
  uint8_t *b = random_buf(len);
  uint8_t *e = malloc(len + 64);
  CHECK(e != NULL);
  struct chunkset base = chunk_hashes(b, len);
  const char *what[] = {"insert 7 bytes at 100 KiB", "delete 5 bytes at 300 KiB",
                        "overwrite 1 byte at 4 MiB", "insert 1 byte at 0"};
  for (int kind = 0; kind < 4; kind++) {
    size_t elen = len;
    if (kind == 0) {
      size_t at = 100 << 10;
      memcpy(e, b, at);
      memcpy(e + at, "INSERTD", 7);
      memcpy(e + at + 7, b + at, len - at);
      elen = len + 7;
    } else if (kind == 1) {
      size_t at = 300 << 10;
      memcpy(e, b, at);
      memcpy(e + at, b + at + 5, len - at - 5);
      elen = len - 5;
    } else if (kind == 2) {
      memcpy(e, b, len);
      e[4 << 20] ^= 0x5a;
    } else {
      e[0] = 'x';
      memcpy(e + 1, b, len);
      elen = len + 1;
    }
    struct chunkset ed = chunk_hashes(e, elen);
    size_t k = shared(&base, &ed);
    double frac = (double)k / (double)ed.n;
    printf("# %s: %zu of %zu chunks shared (%.1f%%), %zu changed\n", what[kind], k, ed.n,
           100 * frac, ed.n - k);
    CHECK_MSG(frac >= 0.90, "%s: only %.1f%% of chunks shared", what[kind], 100 * frac);
    CHECK_INT(ed.n - k, <=, 3); /* the edited chunk and at most its neighbours */
    free(ed.h);
  }
  free(base.h);
  free(e);
  free(b);
}

/*
 * Cut points are part of the format: peers on different versions must agree.
 * This pins them for a fixed pseudo-random stream (splitmix64, seed 42).
 */
#define PINNED_N 61
#define PINNED_DIGEST 0x911844cad10efd3dULL

TEST(cut_points_are_pinned)
{
  size_t len = 4u << 20;
  uint8_t *b = malloc(len);
  CHECK(b != NULL);
  uint64_t s = 42;
  for (size_t i = 0; i < len; i += 8) {
    s += 0x9E3779B97F4A7C15ULL;
    uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    memcpy(b + i, &z, 8);
  }
  size_t *ends;
  ssize_t n = chunk_split(b, len, &ends);
  CHECK_INT(n, >, 0);
  uint64_t acc = 0;
  for (ssize_t i = 0; i < n; i++)
    acc = acc * 1000003 + ends[i];
  printf("# %zd chunks, first ends %zu %zu %zu, digest %016" PRIx64 "\n", n, ends[0], ends[1],
         ends[2], acc);
  CHECK_INT(n, ==, PINNED_N);
  CHECK_MSG(acc == PINNED_DIGEST, "cut points changed: digest %016" PRIx64, acc);
  free(ends);
  free(b);
}

