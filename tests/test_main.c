#include "tests/test.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_TESTS 512

static struct {
  const char *name;
  test_fn fn;
} tests[MAX_TESTS];
static int test_count;
static char tmpdir[4096];
static uint64_t rng_state;
static uint64_t seed;

void test_register(const char *name, test_fn fn)
{
  if (test_count == MAX_TESTS) {
    fprintf(stderr, "too many tests\n");
    exit(2);
  }
  tests[test_count].name = name;
  tests[test_count].fn = fn;
  test_count++;
}

void test_fail(const char *file, int line, const char *fmt, ...)
{
  va_list ap;
  fprintf(stderr, "# FAIL %s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, " (seed %" PRIu64 ")\n", seed);
  fflush(stderr);
  exit(1);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

const char *test_tmpdir(void)
{
  if (tmpdir[0] == '\0') {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/basefs-test-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(tmpdir))
      test_fail(__FILE__, __LINE__, "mkdtemp: %m");
  }
  return tmpdir;
}

const char *test_small_tmpfs(const char *size)
{
  static char mnt[4200];
  char opts[64];
  snprintf(mnt, sizeof mnt, "%s/small", test_tmpdir());
  snprintf(opts, sizeof opts, "size=%s", size);
  if (mkdir(mnt, 0700) < 0)
    test_fail(__FILE__, __LINE__, "mkdir %s: %m", mnt);
  if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
      mount("tmpfs", mnt, "tmpfs", 0, opts) < 0) {
    printf("# skipped: cannot mount a small tmpfs here (%s)\n", strerror(errno));
    return NULL;
  }
  return mnt;
}

void test_fill_disk(const char *path, uint64_t leave)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0)
    test_fail(__FILE__, __LINE__, "open %s: %m", path);
  static uint8_t chunk[1 << 16];
  memset(chunk, 0x5a, sizeof chunk);
  for (;;) {
    struct statvfs sv;
    if (fstatvfs(fd, &sv) < 0)
      test_fail(__FILE__, __LINE__, "fstatvfs %s: %m", path);
    uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
    if (avail <= leave)
      break;
    size_t n = avail - leave < sizeof chunk ? (size_t)(avail - leave) : sizeof chunk;
    if (write(fd, chunk, n) <= 0)
      break;
  }
  if (leave == 0)
    while (write(fd, chunk, 1) > 0)
      ;
  close(fd);
}

static void tmpdir_cleanup(void)
{
  if (tmpdir[0] != '\0' && !getenv("TEST_KEEP"))
    nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

uint64_t test_rand(void)
{
  /* splitmix64: tiny, good enough, and identical everywhere. */
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t test_seed(void)
{
  return seed;
}

uint8_t *test_random_bytes(size_t len)
{
  uint8_t *b = malloc(len ? len : 1);
  CHECK(b != NULL);
  for (size_t i = 0; i < len; i += 8) {
    uint64_t r = test_rand();
    memcpy(b + i, &r, len - i < 8 ? len - i : 8);
  }
  return b;
}

static void run_one(int i)
{
  const char *env_seed = getenv("TEST_SEED");
  seed = 1469598103934665603ULL;
  for (const char *p = tests[i].name; *p; p++)
    seed = (seed ^ (uint8_t)*p) * 1099511628211ULL;
  if (env_seed)
    seed = strtoull(env_seed, NULL, 0);
  rng_state = seed;
  tests[i].fn();
  tmpdir_cleanup();
}

int main(int argc, char **argv)
{
  const char *filter = argc > 1 ? argv[1] : NULL;
  int nofork = getenv("TEST_NOFORK") != NULL;
  int timeout = getenv("TEST_TIMEOUT") ? atoi(getenv("TEST_TIMEOUT")) : 300;
  int selected = 0, passed = 0, failed = 0;

  for (int i = 0; i < test_count; i++)
    if (!filter || strstr(tests[i].name, filter))
      selected++;
  printf("1..%d\n", selected);
  fflush(stdout);

  int n = 0;
  for (int i = 0; i < test_count; i++) {
    if (filter && !strstr(tests[i].name, filter))
      continue;
    n++;
    int ok;
    if (nofork) {
      run_one(i);
      ok = 1;
    } else {
      pid_t pid = fork();
      if (pid < 0) {
        perror("fork");
        return 2;
      }
      if (pid == 0) {
        alarm((unsigned)timeout);
        run_one(i);
        fflush(NULL);
        _exit(0);
      }
      int status;
      while (waitpid(pid, &status, 0) < 0)
        ;
      ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      if (WIFSIGNALED(status))
        printf("# killed by signal %d%s\n", WTERMSIG(status),
               WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
    }
    printf("%s %d - %s\n", ok ? "ok" : "not ok", n, tests[i].name);
    fflush(stdout);
    if (ok)
      passed++;
    else
      failed++;
  }
  printf("# %d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
