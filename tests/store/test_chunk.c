#include "store/chunk.h"

#include "store/hash.h"
#include "tests/test.h"

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
  uint8_t *b = test_random_bytes(len);
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

/*
 * Feeds B to C in pieces of 1..MAXPIECE bytes (and now and then of 1..3)
 * and returns the cuts it reports (malloc'd, *N of them).
 */
static size_t *feed_in_pieces(struct chunker *c, const uint8_t *b, size_t len, size_t maxpiece,
                              size_t *n)
{
  size_t *cuts = malloc((len / 256 + 2) * sizeof *cuts), off = 0, k = 0;
  CHECK(cuts != NULL);
  while (off < len) {
    size_t piece = 1 + test_rand() % maxpiece;
    if (test_rand() % 8 == 0)
      piece = 1 + test_rand() % 3;
    if (piece > len - off)
      piece = len - off;
    size_t used = 0;
    while (used < piece) {
      bool cut;
      used += chunker_feed(c, b + off + used, piece - used, &cut);
      if (cut)
        cuts[k++] = off + used; /* cuts are >= 256 bytes apart */
    }
    off += piece;
  }
  *n = k;
  return cuts;
}

/* Feeding the stream in arbitrary pieces gives the same cuts as one shot. */
TEST(streaming_equals_oneshot)
{
  size_t len = 5u << 20;
  uint8_t *b = test_random_bytes(len);
  size_t *ends;
  ssize_t n = chunk_split(b, len, &ends);
  CHECK_INT(n, >, 1);
  struct chunker c;
  chunker_init(&c);
  size_t k;
  size_t *cuts = feed_in_pieces(&c, b, len, 100000, &k);
  CHECK_INT(k, <=, (size_t)n);
  for (size_t i = 0; i < k; i++)
    CHECK_INT(cuts[i], ==, ends[i]);
  if (c.pos > 0) {
    CHECK_INT(k, ==, (size_t)n - 1);
    CHECK_INT(ends[k], ==, len);
    k++;
  }
  CHECK_INT(k, ==, (size_t)n);
  free(cuts);
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
  uint8_t *b = test_random_bytes(len);
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


/*
 * The definition, one byte at a time (what chunk.c's scan computes faster):
 * no hashing below MIN, the harder mask up to AVG, the easier one up to MAX,
 * a cut at MAX. Returns the next cut after START, or SIZE_MAX if the stream
 * ends first.
 */
static size_t reference_cut(const uint8_t *b, size_t start, size_t len, const struct chunker *p)
{
  uint64_t h = 0;
  size_t pos = p->min;
  if (len - start <= p->min)
    return SIZE_MAX;
  for (size_t i = start + p->min; i < len; i++) {
    if (pos >= p->max)
      return i;
    h = (h << 1) + chunk_gear[b[i]];
    pos++;
    if (!(h & (pos <= p->avg ? p->mask_s : p->mask_l)))
      return i + 1;
  }
  return pos >= p->max ? len : SIZE_MAX; /* MAX reached with the stream's last byte */
}

/* Feeds B in pieces of 1..MAXPIECE bytes and checks every cut against the
 * definition. */
static void check_against_reference(const uint8_t *b, size_t len, size_t min, size_t avg,
                                     size_t max, size_t maxpiece)
{
  struct chunker c;
  CHECK_OK(chunker_init_params(&c, min, avg, max));
  size_t n, start = 0;
  size_t *cuts = feed_in_pieces(&c, b, len, maxpiece, &n);
  for (size_t i = 0; i < n; i++) {
    size_t want = reference_cut(b, start, len, &c);
    CHECK_MSG(cuts[i] == want, "cut at %zu, the definition says %zu (chunk from %zu)", cuts[i],
              want, start);
    start = cuts[i];
  }
  CHECK(reference_cut(b, start, len, &c) == SIZE_MAX); /* no cut missed at the end */
  CHECK_INT(n, >, 0);
  free(cuts);
}

/* The scan's unrolled loop, its remainders and the mask switch at AVG cut
 * exactly where the byte-at-a-time definition does, whatever the pieces. */
TEST(cuts_match_the_definition)
{
  size_t len = 3u << 20;
  uint8_t *b = test_random_bytes(len);
  check_against_reference(b, len, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX, 3 * CHUNK_MAX);
  check_against_reference(b, 400000, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX, 7);
  /* small parameters: many cuts, in both masks' ranges and at MAX */
  check_against_reference(b, len, 256, 256, 300, 1000);
  check_against_reference(b, len, 256, 1024, 4096, 10000);
  check_against_reference(b, 200000, 300, 2048, 2500, 5);
  /* low-entropy bytes: long runs without a cut, forced cuts at MAX */
  memset(b, 7, len);
  check_against_reference(b, len, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX, 3 * CHUNK_MAX);
  for (size_t i = 0; i < len; i++)
    b[i] = (uint8_t)(i % 3);
  check_against_reference(b, len, 256, 1024, 4096, 10000);
  free(b);
}
