/*
 * The nonce pool of store/key.h (key_presign_*): pooled signatures verify,
 * are randomized, never reuse a nonce (also across threads and fork()), and
 * without the pool key_sign() is RFC 6979 again.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/hash.h"
#include "store/key.h"
#include "tests/test.h"

static void random_digest(hash_t *d)
{
  for (int i = 0; i < HASH_SIZE; i += 8) {
    uint64_t x = test_rand();
    memcpy(d->bytes + i, &x, 8);
  }
}

static void nth_digest(int i, hash_t *d)
{
  char msg[32];
  snprintf(msg, sizeof msg, "digest %d", i);
  hash_buf(msg, strlen(msg), d);
}

static struct key_presign_stats stats(void)
{
  struct key_presign_stats st;
  key_presign_stats(&st);
  return st;
}

/* Waits (up to 120 s: sanitizer builds are slow) until the pool is full. */
static void wait_full(void)
{
  for (int i = 0; i < 120000; i++) {
    struct key_presign_stats st = stats();
    CHECK_MSG(st.size > 0, "the pool does not run");
    if (st.ready == st.size)
      return;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  CHECK_MSG(0, "the pool did not fill in 120 s");
}

static void check_verifies(const struct key *k, const hash_t *d, const uint8_t sig[KEY_SIGNATURE_SIZE])
{
  uint8_t pub[KEY_PUBLIC_SIZE];
  key_public(k, pub);
  CHECK_OK(key_verify(pub, d, sig));
  CHECK_OK(key_verify_plain(pub, d, sig));
}

TEST(start_rejects_bad_sizes)
{
  CHECK_INT(key_presign_start(0), ==, -EINVAL);
  CHECK_INT(key_presign_start(65537), ==, -EINVAL);
  CHECK_INT(stats().size, ==, 0);
  key_presign_stop(); /* not running: a no-op */
}

TEST(pooled_signatures_verify)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  CHECK_OK(key_presign_start(256));
  wait_full();
  uint64_t taken0 = stats().taken;
  uint8_t pub[KEY_PUBLIC_SIZE];
  key_public(k, pub);
  int pooled = 0;
  for (int i = 0; i < 1000; i++) {
    hash_t d;
    random_digest(&d);
    uint64_t before = stats().taken;
    uint8_t sig[KEY_SIGNATURE_SIZE];
    CHECK_OK(key_sign(k, &d, sig));
    pooled += stats().taken > before;
    CHECK_MSG(key_verify(pub, &d, sig) == 0, "signature %d does not verify", i);
    CHECK_MSG(key_verify_plain(pub, &d, sig) == 0, "signature %d does not verify with mbedTLS", i);
    /* A flipped bit of the digest must not verify (the check can fail). */
    d.bytes[i % HASH_SIZE] ^= 1;
    CHECK_MSG(key_verify_plain(pub, &d, sig) != 0, "signature %d verifies another digest", i);
  }
  /* The first 256 at least came from the full pool. */
  CHECK_INT(pooled, >=, 256);
  CHECK_INT(stats().taken - taken0, ==, (uint64_t)pooled);
  key_presign_stop();
  key_free(k);
}

/* The pool serves any key; each signature verifies under its own key only. */
TEST(pool_serves_several_keys)
{
  struct key *a, *b;
  CHECK_OK(key_generate(&a));
  CHECK_OK(key_generate(&b));
  CHECK_OK(key_presign_start(32));
  wait_full();
  uint8_t pa[KEY_PUBLIC_SIZE], pb[KEY_PUBLIC_SIZE];
  key_public(a, pa);
  key_public(b, pb);
  for (int i = 0; i < 16; i++) {
    hash_t d;
    random_digest(&d);
    uint8_t sa[KEY_SIGNATURE_SIZE], sb[KEY_SIGNATURE_SIZE];
    CHECK_OK(key_sign(a, &d, sa));
    CHECK_OK(key_sign(b, &d, sb));
    CHECK_OK(key_verify_plain(pa, &d, sa));
    CHECK_OK(key_verify_plain(pb, &d, sb));
    CHECK(key_verify_plain(pb, &d, sa) != 0);
    CHECK(key_verify_plain(pa, &d, sb) != 0);
  }
  CHECK_INT(stats().taken, ==, 32);
  key_presign_stop();
  key_free(a);
  key_free(b);
}

TEST(pooled_signatures_are_randomized)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  hash_t d;
  nth_digest(7, &d);
  uint8_t det[KEY_SIGNATURE_SIZE], a[KEY_SIGNATURE_SIZE], b[KEY_SIGNATURE_SIZE];
  CHECK_OK(key_sign(k, &d, det));
  CHECK_OK(key_presign_start(8));
  wait_full();
  CHECK_OK(key_sign(k, &d, a));
  CHECK_OK(key_sign(k, &d, b));
  CHECK_INT(stats().taken, ==, 2);
  check_verifies(k, &d, a);
  check_verifies(k, &d, b);
  CHECK(memcmp(a, b, 32) != 0); /* different r: different nonces */
  CHECK(memcmp(a, det, 32) != 0);
  CHECK(memcmp(b, det, 32) != 0);
  key_presign_stop();
  key_free(k);
}

/* Without the pool (never started, or stopped) key_sign() is RFC 6979:
 * the same signature as before the pool ran, and the appendix's vector. */
TEST(no_pool_signs_deterministically)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  hash_t d;
  nth_digest(1, &d);
  uint8_t before[KEY_SIGNATURE_SIZE], again[KEY_SIGNATURE_SIZE], pooled[KEY_SIGNATURE_SIZE];
  CHECK_OK(key_sign(k, &d, before));
  CHECK_OK(key_sign(k, &d, again));
  CHECK_MEM(before, again, sizeof before);
  CHECK_INT(stats().size, ==, 0);

  CHECK_OK(key_presign_start(4));
  wait_full();
  CHECK_OK(key_sign(k, &d, pooled));
  CHECK(memcmp(pooled, before, sizeof before) != 0);
  key_presign_stop();
  struct key_presign_stats st = stats();
  CHECK_INT(st.size, ==, 0);
  CHECK_INT(st.ready, ==, 0);
  CHECK_OK(key_sign(k, &d, again));
  CHECK_MEM(before, again, sizeof before);
  key_free(k);
}

TEST(start_stop_start)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  hash_t d;
  nth_digest(2, &d);
  uint8_t det[KEY_SIGNATURE_SIZE], sig[KEY_SIGNATURE_SIZE], prev[KEY_SIGNATURE_SIZE];
  CHECK_OK(key_sign(k, &d, det));
  memcpy(prev, det, sizeof prev);
  for (unsigned round = 0; round < 4; round++) {
    unsigned size = 4 + 4 * round;
    CHECK_OK(key_presign_start(size));
    CHECK_OK(key_presign_start(size * 10)); /* idempotent: keeps the size */
    wait_full();
    struct key_presign_stats st = stats();
    CHECK_INT(st.size, ==, size);
    CHECK_INT(st.made, >=, size);
    CHECK_INT(st.taken, ==, 0); /* counters restart */
    CHECK_OK(key_sign(k, &d, sig));
    CHECK_INT(stats().taken, ==, 1);
    check_verifies(k, &d, sig);
    CHECK(memcmp(sig, prev, sizeof sig) != 0);
    CHECK(memcmp(sig, det, sizeof sig) != 0);
    memcpy(prev, sig, sizeof prev);
    key_presign_stop();
    key_presign_stop();
    CHECK_OK(key_sign(k, &d, sig));
    CHECK_MEM(sig, det, sizeof sig);
  }
  key_free(k);
}

/* An empty running pool never blocks: the signature is RFC 6979's. */
TEST(empty_pool_falls_back)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  hash_t d;
  nth_digest(3, &d);
  uint8_t det[KEY_SIGNATURE_SIZE], sig[KEY_SIGNATURE_SIZE];
  CHECK_OK(key_sign(k, &d, det));
  CHECK_OK(key_presign_start(1));
  wait_full();
  CHECK_OK(key_sign(k, &d, sig)); /* the one nonce */
  CHECK(memcmp(sig, det, sizeof sig) != 0);
  /* Sign back to back until one finds the pool empty (the refill thread
   * may keep up for a while on a loaded machine: no fixed count is sure
   * to outrun it): those are RFC 6979's, the others verify. */
  static uint8_t sigs[5000][KEY_SIGNATURE_SIZE];
  int n = 0;
  while (n < 5000 && (n < 50 || stats().fallbacks == 0))
    CHECK_OK(key_sign(k, &d, sigs[n++]));
  struct key_presign_stats st = stats();
  int deterministic = 0;
  for (int i = 0; i < n; i++) {
    check_verifies(k, &d, sigs[i]);
    deterministic += memcmp(sigs[i], det, sizeof det) == 0;
  }
  CHECK_INT(deterministic, >, 0);
  CHECK_INT(st.fallbacks, ==, (uint64_t)deterministic);
  CHECK_INT(st.taken, ==, (uint64_t)(n + 1 - deterministic));
  key_presign_stop();
  key_free(k);
}

static int child_signs_deterministically(const struct key *k, const hash_t *d, const uint8_t det[KEY_SIGNATURE_SIZE],
                                         bool check_stats)
{
  if (check_stats) {
    struct key_presign_stats st;
    key_presign_stats(&st);
    if (st.size != 0 || st.ready != 0)
      return 2;
  }
  for (int i = 0; i < 4; i++) {
    uint8_t sig[KEY_SIGNATURE_SIZE];
    if (key_sign(k, d, sig) != 0)
      return 3;
    if (memcmp(sig, det, KEY_SIGNATURE_SIZE) != 0)
      return 4; /* used a nonce: maybe one of the parent's */
  }
  return 0;
}

static void check_child(pid_t pid)
{
  CHECK(pid >= 0);
  int status;
  CHECK_INT(waitpid(pid, &status, 0), ==, pid);
  CHECK_MSG(WIFEXITED(status), "child died (status %d)", status);
  CHECK_MSG(WEXITSTATUS(status) == 0, "child failed with %d", WEXITSTATUS(status));
}

/* The parent's pool, still usable after its children are gone. */
static void check_parent_pool(const struct key *k, const hash_t *d, const uint8_t det[KEY_SIGNATURE_SIZE])
{
  uint64_t taken = stats().taken;
  uint8_t a[KEY_SIGNATURE_SIZE], b[KEY_SIGNATURE_SIZE];
  CHECK_OK(key_sign(k, d, a));
  CHECK_OK(key_sign(k, d, b));
  CHECK_INT(stats().taken, ==, taken + 2);
  check_verifies(k, d, a);
  check_verifies(k, d, b);
  CHECK(memcmp(a, b, 32) != 0);
  CHECK(memcmp(a, det, KEY_SIGNATURE_SIZE) != 0);
}

TEST(forked_child_never_uses_the_parents_nonces)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  hash_t d;
  nth_digest(4, &d);
  uint8_t det[KEY_SIGNATURE_SIZE];
  CHECK_OK(key_sign(k, &d, det));
  CHECK_OK(key_presign_start(16));
  wait_full();
  pid_t pid = fork();
  if (pid == 0)
    _exit(child_signs_deterministically(k, &d, det, true));
  check_child(pid);
  check_parent_pool(k, &d, det);

  /* A child may start a pool of its own, which then works. */
  pid = fork();
  if (pid == 0) {
    if (key_presign_start(4) != 0)
      _exit(5);
    uint8_t sig[KEY_SIGNATURE_SIZE];
    for (int i = 0; i < 20000; i++) {
      struct key_presign_stats st;
      key_presign_stats(&st);
      if (st.ready == 4)
        break;
      usleep(1000);
    }
    if (key_sign(k, &d, sig) != 0 || memcmp(sig, det, KEY_SIGNATURE_SIZE) == 0)
      _exit(6);
    uint8_t pub[KEY_PUBLIC_SIZE];
    key_public(k, pub);
    if (key_verify_plain(pub, &d, sig) != 0)
      _exit(7);
    key_presign_stop();
    _exit(0);
  }
  check_child(pid);
  check_parent_pool(k, &d, det);
  key_presign_stop();
  key_free(k);
}

/* A child made without fork() (no atfork handlers run) still refuses the
 * parent's nonces: the pid check. The pool is full first, so the refill
 * thread sleeps and holds no lock while the process is copied. */
TEST(raw_clone_child_never_uses_the_parents_nonces)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  hash_t d;
  nth_digest(5, &d);
  uint8_t det[KEY_SIGNATURE_SIZE];
  CHECK_OK(key_sign(k, &d, det));
  CHECK_OK(key_presign_start(16));
  wait_full();
  pid_t pid = (pid_t)syscall(SYS_fork);
  if (pid == 0) {
    alarm(60);
    _exit(child_signs_deterministically(k, &d, det, false));
  }
  check_child(pid);
  check_parent_pool(k, &d, det);
  key_presign_stop();
  key_free(k);
}

#define PER_THREAD 200

struct job {
  const struct key *key;
  int first;
  uint8_t sig[PER_THREAD][KEY_SIGNATURE_SIZE];
  int failures;
};

static void *sign_many(void *arg)
{
  struct job *j = arg;
  for (int i = 0; i < PER_THREAD; i++) {
    hash_t d;
    nth_digest(j->first + i, &d);
    if (key_sign(j->key, &d, j->sig[i]) != 0)
      j->failures++;
  }
  return NULL;
}

static int cmp_r(const void *a, const void *b) { return memcmp(a, b, 32); }

TEST(two_threads_never_share_a_nonce)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  uint8_t pub[KEY_PUBLIC_SIZE];
  key_public(k, pub);
  CHECK_OK(key_presign_start(2 * PER_THREAD + 16));
  wait_full();
  static struct job jobs[2];
  pthread_t t[2];
  for (int i = 0; i < 2; i++) {
    jobs[i].key = k;
    jobs[i].first = i * PER_THREAD;
    CHECK_OK(pthread_create(&t[i], NULL, sign_many, &jobs[i]));
  }
  for (int i = 0; i < 2; i++) {
    pthread_join(t[i], NULL);
    CHECK_INT(jobs[i].failures, ==, 0);
  }
  /* The pool held enough for all: every signature used a nonce. */
  CHECK_INT(stats().taken, ==, 2 * PER_THREAD);
  static uint8_t rs[2 * PER_THREAD][32];
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < PER_THREAD; j++) {
      hash_t d;
      nth_digest(jobs[i].first + j, &d);
      CHECK_MSG(key_verify(pub, &d, jobs[i].sig[j]) == 0, "thread %d signature %d does not verify", i, j);
      memcpy(rs[i * PER_THREAD + j], jobs[i].sig[j], 32);
    }
  qsort(rs, 2 * PER_THREAD, 32, cmp_r);
  for (int i = 1; i < 2 * PER_THREAD; i++)
    CHECK_MSG(memcmp(rs[i - 1], rs[i], 32) != 0, "two signatures share r: a nonce was used twice");
  key_presign_stop();
  key_free(k);
}
