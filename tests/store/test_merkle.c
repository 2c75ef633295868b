/* The Merkle trie: its root is the canonical function of the id set,
 * whatever the add/remove history, checked against a direct definition. */
#include "tests/test.h"

#include <errno.h>

#include "store/merkle.h"

static unsigned nib(const hash_t *h, unsigned d)
{
  return d % 2 ? h->bytes[d / 2] & 0x0f : h->bytes[d / 2] >> 4;
}

/* The definition in merkle.h, written out plainly over a sorted array. */
static void canon(const hash_t *ids, size_t n, unsigned depth, hash_t *out)
{
  hash_ctx_t ctx;
  hash_init(&ctx);
  if (n <= MERKLE_LEAF) {
    uint8_t tag = 0;
    hash_update(&ctx, &tag, 1);
    hash_update(&ctx, ids, n * sizeof *ids);
  } else {
    uint8_t tag = 1;
    hash_update(&ctx, &tag, 1);
    size_t lo = 0;
    for (unsigned k = 0; k < 16; k++) {
      size_t hi = lo;
      while (hi < n && nib(&ids[hi], depth) == k)
        hi++;
      hash_t c = {{0}};
      if (hi > lo)
        canon(ids + lo, hi - lo, depth + 1, &c);
      hash_update(&ctx, &c, sizeof c);
      lo = hi;
    }
  }
  hash_final(&ctx, out);
}

static int cmp(const void *a, const void *b) { return hash_cmp(a, b); }

static void rand_id(hash_t *h)
{
  for (int i = 0; i < HASH_SIZE; i++)
    h->bytes[i] = (uint8_t)test_rand();
  if (test_rand() % 4 == 0) /* shared prefixes make deep paths */
    memset(h->bytes, 0xab, 3);
}

TEST(root_is_the_canonical_function_of_the_set)
{
  struct merkle *m, *b;
  CHECK_OK(merkle_create(&m));
  CHECK_OK(merkle_create(&b));
  enum { N = 3000 };
  hash_t *ids = malloc(N * sizeof *ids), *sorted = malloc(N * sizeof *ids);
  bool *in = calloc(N, sizeof *in);
  for (int i = 0; i < N; i++)
    rand_id(&ids[i]);
  for (int step = 0; step < 12000; step++) {
    int i = (int)(test_rand() % N);
    if (in[i]) {
      CHECK_OK(merkle_remove(m, &ids[i]));
      CHECK_INT(merkle_remove(m, &ids[i]), ==, -ENOENT);
    } else {
      CHECK_OK(merkle_add(m, &ids[i]));
      CHECK_INT(merkle_add(m, &ids[i]), ==, -EEXIST);
    }
    in[i] = !in[i];
    if (step % 997 == 0 || step < 40) {
      size_t n = 0;
      for (int j = 0; j < N; j++)
        if (in[j])
          sorted[n++] = ids[j];
      qsort(sorted, n, sizeof *sorted, cmp);
      hash_t want, got, built;
      canon(sorted, n, 0, &want);
      merkle_root(m, &got);
      CHECK_MSG(hash_eq(&want, &got), "step %d: incremental root differs", step);
      CHECK_OK(merkle_build(b, sorted, n));
      merkle_root(b, &built);
      CHECK(hash_eq(&want, &built));
      CHECK_INT(merkle_count(m), ==, n);
    }
  }
  /* A node below the root matches the definition of its subset. */
  struct merkle_info mi;
  uint8_t prefix[1] = {0xa0};
  CHECK_OK(merkle_node(m, prefix, 1, &mi));
  size_t n = 0;
  for (int j = 0; j < N; j++)
    if (in[j] && nib(&ids[j], 0) == 0xa)
      sorted[n++] = ids[j];
  qsort(sorted, n, sizeof *sorted, cmp);
  CHECK_INT(mi.count, ==, n);
  if (n) {
    hash_t want;
    canon(sorted, n, 1, &want);
    CHECK(hash_eq(&want, &mi.hash));
  }
  CHECK_INT(merkle_build(b, (hash_t[2]){{{2}}, {{1}}}, 2), ==, -EINVAL);
  free(ids), free(sorted), free(in);
  merkle_free(m);
  merkle_free(b);
}
