/*
 * Signature checks when memory runs out (store/key.h): this program
 * replaces calloc() (mbedTLS allocates its bignums with it) with one that
 * can fail the Nth call, then fails each allocation of a check in turn.
 * A valid signature must come back valid or -ENOMEM, never -BFS_ESIGNATURE
 * or -BFS_EKEY: a peer short of memory would otherwise reject a genuine
 * entry as forged. A forged one must never come back valid. Hence a program
 * of its own. (Under ASan the sanitizer owns calloc: skipped there.)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/error.h"
#include "store/hash.h"
#include "store/key.h"
#include "tests/test.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NO_CALLOC_HOOK 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define NO_CALLOC_HOOK 1
#endif

#ifndef NO_CALLOC_HOOK
extern void *__libc_calloc(size_t n, size_t size);

static __thread long fail_in = -1; /* the call that fails: 0 = the next; -1 = none */
static __thread long failed;       /* calls failed so far */

void *calloc(size_t n, size_t size)
{
  if (fail_in >= 0 && fail_in-- == 0) {
    failed++;
    errno = ENOMEM;
    return NULL;
  }
  return __libc_calloc(n, size);
}

typedef int (*check_fn)(const uint8_t pub[KEY_PUBLIC_SIZE], const hash_t *digest,
                        const uint8_t sig[KEY_SIGNATURE_SIZE]);

static int check_public(const uint8_t pub[KEY_PUBLIC_SIZE], const hash_t *digest,
                        const uint8_t sig[KEY_SIGNATURE_SIZE])
{
  (void)digest;
  (void)sig;
  return key_check_public(pub);
}

/* Runs CHECK with its 1st, 2nd, ... allocation failing until one run
 * allocates no more than that; every result must be WANT or -ENOMEM.
 * Returns how many runs met a failed allocation. */
static int fail_each(check_fn check, const uint8_t pub[KEY_PUBLIC_SIZE], const hash_t *digest,
                     const uint8_t sig[KEY_SIGNATURE_SIZE], int want)
{
  int hit = 0;
  for (long n = 0; n < 10000; n++) {
    failed = 0;
    fail_in = n;
    int rc = check(pub, digest, sig);
    fail_in = -1;
    if (failed == 0) {
      CHECK_INT(rc, ==, want); /* nothing failed: the plain answer */
      return hit;
    }
    hit++;
    CHECK_MSG(rc == want || rc == -ENOMEM, "allocation %ld failed: %d (%s), want %d or -ENOMEM", n, rc,
              bfs_strerror(rc), want);
  }
  CHECK_MSG(false, "more than 10000 allocations in one check");
  return hit;
}

static void fail_each_check(check_fn check)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  uint8_t pub[KEY_PUBLIC_SIZE], sig[KEY_SIGNATURE_SIZE];
  key_public(k, pub);
  hash_t digest;
  hash_buf("an entry", 8, &digest);
  CHECK_OK(key_sign(k, &digest, sig));
  /* Once without failures: per-thread state and tables are built. */
  CHECK_OK(check(pub, &digest, sig));
  int hit = fail_each(check, pub, &digest, sig, 0);
  printf("# %d allocations failed in turn\n", hit);
  if (check != check_public) {
    CHECK(hit > 0); /* the check allocates: the failures were met */
    uint8_t forged[KEY_SIGNATURE_SIZE];
    memcpy(forged, sig, sizeof forged);
    forged[40] ^= 1;
    fail_each(check, pub, &digest, forged, -BFS_ESIGNATURE);
  }
  key_free(k);
}

TEST(verify_out_of_memory_is_not_a_bad_signature)
{
  fail_each_check(key_verify);
}

TEST(plain_verify_out_of_memory_is_not_a_bad_signature)
{
  fail_each_check(key_verify_plain);
}

TEST(public_key_check_out_of_memory_is_not_a_bad_key)
{
  fail_each_check(check_public);
}
#else
TEST(skipped_under_asan)
{
  printf("# calloc belongs to the sanitizer here\n");
}
#endif
