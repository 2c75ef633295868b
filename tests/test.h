/*
 * The one test runner of basefs.
 *
 * A test file defines tests with TEST(name) { ... } and nothing else: each
 * test registers itself, and the shared main() in tests/test_main.c runs every
 * registered test in a child process of its own (a crash or a hang fails one
 * test, not the file) and prints TAP, then a "N passed, N failed" line.
 *
 *   ./test_log              run every test of the file
 *   ./test_log crash        run the tests whose name contains "crash"
 *   TEST_NOFORK=1 ./test_x  run in-process (for gdb)
 *   TEST_TIMEOUT=S          per-test deadline in seconds (default 300)
 *
 * Checks are real code, not assert(): NDEBUG never removes them.
 */
#ifndef BASEFS_TESTS_TEST_H
#define BASEFS_TESTS_TEST_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn);

#define TEST(name)                                                    \
  static void test_##name(void);                                      \
  __attribute__((constructor)) static void test_register_##name(void) \
  {                                                                   \
    test_register(#name, test_##name);                                \
  }                                                                   \
  static void test_##name(void)

void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

#define CHECK(cond)                                          \
  do {                                                       \
    if (!(cond))                                             \
      test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);     \
  } while (0)

#define CHECK_MSG(cond, ...)                                 \
  do {                                                       \
    if (!(cond))                                             \
      test_fail(__FILE__, __LINE__, __VA_ARGS__);            \
  } while (0)

#define CHECK_INT(a, op, b)                                                  \
  do {                                                                       \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);          \
    if (!(check_a_ op check_b_))                                             \
      test_fail(__FILE__, __LINE__, "CHECK_INT(%s %s %s): %lld vs %lld", #a, \
                #op, #b, check_a_, check_b_);                                \
  } while (0)

#define CHECK_OK(expr) CHECK_INT((expr), ==, 0)

#define CHECK_MEM(a, b, n) CHECK_MSG(memcmp((a), (b), (n)) == 0, "CHECK_MEM(%s, %s)", #a, #b)

/* A fresh empty directory, removed with its contents when the test ends. */
const char *test_tmpdir(void);

/* A private tmpfs of SIZE (mount's size=, e.g. "24m") at test_tmpdir()/small,
 * in a mount namespace of the test's own (needs root): its path, or NULL
 * after a "# skipped" line saying why where it cannot be made. */
const char *test_small_tmpfs(const char *size);

/* Fills the filesystem holding PATH (a file it creates and appends to) until
 * at most LEAVE bytes are free; LEAVE 0: until a write fails. */
void test_fill_disk(const char *path, uint64_t leave);

/* Deterministic per-test randomness: seeded from TEST_SEED or the name. */
uint64_t test_rand(void);
uint64_t test_seed(void);
/* LEN bytes from test_rand() in a malloc'd buffer (never NULL; free() it). */
uint8_t *test_random_bytes(size_t len);

#endif
