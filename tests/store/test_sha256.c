/*
 * store/sha256: the fast path (SHA-NI, one buffer and several interleaved)
 * gives exactly mbedTLS's digests. How much faster it is, is measured by
 * bench/bench_hash (speed is never a test here).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/hash.h"
#include "store/sha256.h"
#include "tests/test.h"

#define BIG (300u << 10)

/* A length in 0..300 KiB, most small or near a 64-byte boundary. */
static size_t random_len(void)
{
  switch (test_rand() % 4) {
  case 0: return (size_t)(test_rand() % 300);
  case 1: return (size_t)(test_rand() % (BIG / 64 + 1)) * 64 + 55 + test_rand() % 3; /* one or two padding blocks */
  default: return (size_t)(test_rand() % (BIG - 64));
  }
}

static void check_many(const uint8_t *base, size_t n)
{
  const void *data[40];
  size_t len[40];
  hash_t out[40], want[40];
  for (size_t i = 0; i < n; i++) {
    len[i] = random_len();
    data[i] = base + test_rand() % (BIG + 64 - len[i]); /* any alignment; may overlap */
    sha256_mbedtls(data[i], len[i], &want[i]);
  }
  sha256_bufs(n, data, len, out);
  for (size_t i = 0; i < n; i++)
    CHECK_MSG(hash_eq(&out[i], &want[i]), "buffer %zu of %zu, length %zu", i, n, len[i]);
}

TEST(one_buffer_matches_mbedtls)
{
  uint8_t *b = test_random_bytes(BIG + 64);
  for (size_t len = 0; len < 300; len++) {
    hash_t a, c;
    sha256_buf(b + len % 7, len, &a);
    sha256_mbedtls(b + len % 7, len, &c);
    CHECK_MSG(hash_eq(&a, &c), "length %zu", len);
  }
  for (int i = 0; i < 200; i++) {
    size_t len = random_len(), off = (size_t)(test_rand() % 64);
    hash_t a, c;
    sha256_buf(b + off, len, &a);
    sha256_mbedtls(b + off, len, &c);
    CHECK_MSG(hash_eq(&a, &c), "length %zu at +%zu", len, off);
  }
  free(b);
}

TEST(known_answers)
{
  static const struct {
    const char *msg, *hex;
  } v[] = {
    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
  };
  const void *data[3];
  size_t len[3];
  hash_t many[3];
  for (int i = 0; i < 3; i++) {
    data[i] = v[i].msg;
    len[i] = strlen(v[i].msg);
  }
  sha256_bufs(3, data, len, many);
  for (int i = 0; i < 3; i++) {
    hash_t h;
    char hex[HASH_HEX_SIZE];
    sha256_buf(v[i].msg, len[i], &h);
    hash_to_hex(&h, hex);
    CHECK_MSG(strcmp(hex, v[i].hex) == 0, "vector %d: %s", i, hex);
    hash_to_hex(&many[i], hex);
    CHECK_MSG(strcmp(hex, v[i].hex) == 0, "vector %d together: %s", i, hex);
  }
  /* one million 'a' (FIPS 180-2), next to a short one */
  uint8_t *a = malloc(1000000);
  memset(a, 'a', 1000000);
  const void *d2[2] = {a, "abc"};
  size_t l2[2] = {1000000, 3};
  hash_t h2[2];
  char hex[HASH_HEX_SIZE];
  sha256_bufs(2, d2, l2, h2);
  hash_to_hex(&h2[0], hex);
  CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
  hash_to_hex(&h2[1], hex);
  CHECK(strcmp(hex, v[1].hex) == 0);
  free(a);
}

TEST(many_buffers_match_mbedtls)
{
  uint8_t *b = test_random_bytes(BIG + 64);
  sha256_bufs(0, NULL, NULL, NULL); /* nothing: no access */
  for (int round = 0; round < 40; round++)
    check_many(b, 1 + (size_t)(test_rand() % 10));
  check_many(b, 17); /* more than the on-stack order */
  check_many(b, 40);
  /* pairs of every small length against each other: lanes that finish in
   * every order, tails of one and two blocks */
  for (size_t x = 0; x < 140; x += 3)
    for (size_t y = 0; y < 140; y += 5) {
      const void *data[2] = {b + 1, b + 3};
      size_t len[2] = {x, y};
      hash_t out[2], w0, w1;
      sha256_bufs(2, data, len, out);
      sha256_mbedtls(b + 1, x, &w0);
      sha256_mbedtls(b + 3, y, &w1);
      CHECK_MSG(hash_eq(&out[0], &w0) && hash_eq(&out[1], &w1), "lengths %zu %zu", x, y);
    }
  /* empty buffers given as NULL, alone and among others */
  hash_t sw;
  const void *nul[3] = {NULL, b, NULL};
  size_t nlen[3] = {0, 100, 0};
  hash_t nout[3], e, w100;
  sha256_bufs(3, nul, nlen, nout);
  sha256_buf(NULL, 0, &e);
  sha256_mbedtls("", 0, &sw);
  sha256_mbedtls(b, 100, &w100);
  CHECK(hash_eq(&e, &sw) && hash_eq(&nout[0], &sw) && hash_eq(&nout[2], &sw));
  CHECK(hash_eq(&nout[1], &w100));
  /* the same buffer twice */
  const void *same[2] = {b, b};
  size_t slen[2] = {70000, 70000};
  hash_t sout[2];
  sha256_bufs(2, same, slen, sout);
  sha256_mbedtls(b, 70000, &sw);
  CHECK(hash_eq(&sout[0], &sw) && hash_eq(&sout[1], &sw));
  free(b);
}

TEST(without_shani_the_same)
{
  /* Every test runs in its own process: the switch is read at first use. */
  setenv("BASEFS_NO_SHANI", "1", 1);
  CHECK(!sha256_accelerated());
  uint8_t *b = test_random_bytes(BIG + 64);
  for (int round = 0; round < 10; round++)
    check_many(b, 1 + (size_t)(test_rand() % 5));
  hash_t a, c;
  sha256_buf(b + 5, 12345, &a);
  sha256_mbedtls(b + 5, 12345, &c);
  CHECK(hash_eq(&a, &c));
  free(b);
}
