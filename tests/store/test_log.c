#include "tests/test.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/error.h"
#include "store/log.h"

/* ---- deterministic record contents ------------------------------------- */

/* Records of this thread number in an id are 20-100 KB (see the crash test). */
#define CRASH_BIG_THREAD 7

static uint64_t mix(uint64_t z)
{
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* Record ID's length: mostly entry-sized, sometimes large (never for ids
 * below 1000, which the byte-by-byte damage tests use). */
static size_t rec_len(uint64_t id)
{
  uint64_t m = mix(id ^ 0x5eed);
  if (((id >> 32) & 0xff) == CRASH_BIG_THREAD) /* the crash test's big batches */
    return 8 + 20000 + (size_t)(m >> 8) % 80000;
  if (id >= 1000 && m % 100 < 3)
    return 8 + (size_t)(m >> 8) % 100000;
  return 8 + (size_t)(m >> 8) % 1500;
}

/* Record ID's bytes: ID itself (8 bytes, little-endian) then a stream from ID. */
static void rec_fill(uint64_t id, uint8_t *buf, size_t len)
{
  uint64_t word = id;
  for (size_t i = 0; i < len; i++) {
    if (i % 8 == 0 && i > 0)
      word = mix(id * 131 + i);
    buf[i] = (uint8_t)(word >> (8 * (i % 8)));
  }
}

static uint64_t rec_id(const uint8_t *buf)
{
  uint64_t id = 0;
  for (int i = 0; i < 8; i++)
    id |= (uint64_t)buf[i] << (8 * i);
  return id;
}

/* Whether BUF is exactly record ID's contents. */
static int rec_ok(const uint8_t *buf, size_t len, uint64_t *id_out)
{
  static uint8_t want[8 + 100000];
  if (len < 8)
    return 0;
  uint64_t id = rec_id(buf);
  if (id_out)
    *id_out = id;
  if (len != rec_len(id))
    return 0;
  rec_fill(id, want, len);
  return memcmp(want, buf, len) == 0;
}

static char *path_in_tmp(const char *name)
{
  static char path[4096];
  snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
  return path;
}

/*
 * Tests of recovery logic open and recover a log thousands of times, and
 * recovery fdatasyncs: on a busy disk that alone takes minutes. They test
 * what recovery does with bytes, not the disk, so they run on tmpfs when
 * there is one (fsync is free there). The directory goes away when the test
 * ends, pass (fast_path_done) or fail (atexit: the runner's failure path
 * calls exit()).
 */
static char fast_dir[256];

static void fast_dir_remove(void)
{
  if (!fast_dir[0])
    return;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", fast_dir);
  if (system(cmd) != 0)
    fprintf(stderr, "# could not remove %s\n", fast_dir);
  fast_dir[0] = '\0';
}

static char *fast_path(const char *name)
{
  static char path[4096];
  if (access("/dev/shm", W_OK) != 0)
    return path_in_tmp(name);
  if (!fast_dir[0]) {
    snprintf(fast_dir, sizeof fast_dir, "/dev/shm/basefs-test-log-XXXXXX");
    CHECK(mkdtemp(fast_dir) != NULL);
    atexit(fast_dir_remove);
  }
  snprintf(path, sizeof path, "%s/%s", fast_dir, name);
  return path;
}

static void fast_path_done(void)
{
  fast_dir_remove();
}

static uint64_t file_size(const char *path)
{
  struct stat st;
  CHECK(stat(path, &st) == 0);
  return (uint64_t)st.st_size;
}

static uint8_t *read_file(const char *path, size_t *len)
{
  int fd = open(path, O_RDONLY);
  CHECK(fd >= 0);
  struct stat st;
  CHECK(fstat(fd, &st) == 0);
  uint8_t *buf = malloc((size_t)st.st_size + 1);
  CHECK(buf);
  CHECK_INT(pread(fd, buf, (size_t)st.st_size, 0), ==, st.st_size);
  close(fd);
  *len = (size_t)st.st_size;
  return buf;
}

static void write_file(const char *path, const uint8_t *buf, size_t len)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  CHECK(fd >= 0);
  CHECK_INT(write(fd, buf, len), ==, (long long)len);
  close(fd);
}

/*
 * The promise on a log file's size (log.h): past END, zeros only, at most
 * LOG_ZERO_TAIL_MAX of them. Returns how many there are.
 */
static uint64_t expect_zero_tail(const char *path, uint64_t end)
{
  uint64_t size = file_size(path);
  CHECK_INT(size, >=, end);
  CHECK_MSG(size - end <= LOG_ZERO_TAIL_MAX, "%" PRIu64 " bytes past the end %" PRIu64,
            size - end, end);
  int fd = open(path, O_RDONLY);
  CHECK(fd >= 0);
  uint8_t buf[4096];
  for (uint64_t at = end; at < size;) {
    size_t want = size - at < sizeof buf ? (size_t)(size - at) : sizeof buf;
    CHECK_INT(pread(fd, buf, want, (off_t)at), ==, (long long)want);
    for (size_t i = 0; i < want; i++)
      CHECK_MSG(buf[i] == 0, "byte %" PRIu64 " past the end %" PRIu64 " is %u", at + i, end,
                buf[i]);
    at += want;
  }
  close(fd);
  return size - end;
}

/* After recovery: the file is the end plus the zeros recovery says it kept. */
static void expect_recovered_size(const char *path, const struct log_info *info)
{
  CHECK(info->zero_bytes == 0 || info->tail_bytes == 0);
  CHECK_INT(expect_zero_tail(path, info->end), ==, info->zero_bytes);
}

/* Whether a writer on PATH's filesystem keeps zeros ahead (log.h). */
static int zeros_expected(const char *path)
{
  struct statvfs sv;
  CHECK_OK(statvfs(path, &sv));
  return (uint64_t)sv.f_bavail * sv.f_frsize >= LOG_ZERO_MIN_FREE + (8u << 20);
}

/* Appends records with ids FIRST.. FIRST+N-1, storing their offsets. */
static void append_ids(struct log *log, uint64_t first, int n, uint64_t *offs)
{
  uint8_t *buf = malloc(8 + 100000);
  CHECK(buf);
  for (int i = 0; i < n; i++) {
    size_t len = rec_len(first + (uint64_t)i);
    rec_fill(first + (uint64_t)i, buf, len);
    CHECK_OK(log_append(log, buf, len, offs ? &offs[i] : NULL));
  }
  free(buf);
}

/* Iterates the whole log and checks it holds exactly ids FIRST..FIRST+N-1 in order. */
static void expect_ids(struct log *log, uint64_t first, int n, const uint64_t *offs)
{
  struct log_cursor *c;
  CHECK_OK(log_cursor_open(log, LOG_HEADER_SIZE, &c));
  const uint8_t *data;
  size_t len;
  uint64_t off, id;
  for (int i = 0; i < n; i++) {
    CHECK_INT(log_cursor_next(c, &data, &len, &off), ==, 1);
    CHECK_MSG(rec_ok(data, len, &id), "record %d at %" PRIu64 " is garbage", i, off);
    CHECK_INT(id, ==, first + (uint64_t)i);
    if (offs)
      CHECK_INT(off, ==, offs[i]);
  }
  CHECK_INT(log_cursor_next(c, &data, &len, &off), ==, 0);
  CHECK_INT(log_cursor_stop(c), ==, 0);
  /* A writer's end is exact; a reader's is the file's size, which may hold
   * zeros a live writer wrote ahead (the callers check they are zeros). */
  uint64_t end = log_cursor_offset(c);
  CHECK_INT(end, <=, log_end(log));
  CHECK_INT(log_end(log) - end, <=, LOG_ZERO_TAIL_MAX);
  if (log_append_batch(log, NULL, 0, NULL) == 0) /* a writer */
    CHECK_INT(end, ==, log_end(log));
  log_cursor_close(c);
}

/* ---- basic behaviour ---------------------------------------------------- */

TEST(append_reopen_iterate)
{
  const char *path = path_in_tmp("log");
  struct log *log;
  struct log_info info;
  CHECK_INT(log_open(path, LOG_WRITE, &log, NULL), ==, -ENOENT);
  CHECK_INT(log_open(path, LOG_READ, &log, NULL), ==, -ENOENT);
  CHECK_OK(log_open(path, LOG_WRITE | LOG_CREATE, &log, &info));
  CHECK_INT(info.end, ==, LOG_HEADER_SIZE);
  CHECK_INT(info.records, ==, 0);
  CHECK_INT(log_end(log), ==, LOG_HEADER_SIZE);
  CHECK_INT(file_size(path), ==, LOG_HEADER_SIZE);

  enum { N = 200 };
  uint64_t offs[N];
  append_ids(log, 1000, N, offs);
  CHECK_INT(offs[0], ==, LOG_HEADER_SIZE);
  for (int i = 1; i < N; i++)
    CHECK_INT(offs[i], ==, offs[i - 1] + LOG_RECORD_OVERHEAD + rec_len(1000 + (uint64_t)i - 1));
  CHECK_INT(log_end(log), ==, offs[N - 1] + LOG_RECORD_OVERHEAD + rec_len(1000 + N - 1));
  expect_ids(log, 1000, N, offs);
  uint64_t end = log_end(log);
  /* While the writer is open: zeros written ahead, nothing else. */
  uint64_t zeros = expect_zero_tail(path, end);
  if (zeros_expected(path))
    CHECK_INT(zeros, >, 0);
  log_close(log);

  /* A clean close gives them back. */
  CHECK_INT(file_size(path), ==, end);
  CHECK_OK(log_open(path, LOG_WRITE, &log, &info));
  CHECK_INT(info.records, ==, N);
  CHECK_INT(info.end, ==, end);
  CHECK_INT(info.tail_bytes, ==, 0);
  CHECK_INT(info.zero_bytes, ==, 0);
  expect_ids(log, 1000, N, offs);

  /* Offsets are identifiers: a cursor or a read can start at any of them. */
  struct log_cursor *c;
  CHECK_OK(log_cursor_open(log, offs[150], &c));
  const uint8_t *data;
  size_t len;
  uint64_t off, id;
  CHECK_INT(log_cursor_next(c, &data, &len, &off), ==, 1);
  CHECK_INT(off, ==, offs[150]);
  CHECK(rec_ok(data, len, &id));
  CHECK_INT(id, ==, 1150);
  log_cursor_close(c);
  CHECK_INT(log_cursor_open(log, end + 1, &c), ==, -EINVAL);
  CHECK_INT(log_cursor_open(log, 3, &c), ==, -EINVAL);
  /* The end is a valid place to start: nothing yet. */
  CHECK_OK(log_cursor_open(log, end, &c));
  CHECK_INT(log_cursor_next(c, &data, &len, &off), ==, 0);
  CHECK_INT(log_cursor_stop(c), ==, 0);
  log_cursor_close(c);

  uint8_t buf[8 + 100000];
  for (int i = 0; i < N; i += 17) {
    int n = log_read(log, offs[i], buf, sizeof buf, &len);
    CHECK_INT(n, ==, rec_len(1000 + (uint64_t)i));
    CHECK(rec_ok(buf, (size_t)n, &id));
    CHECK_INT(id, ==, 1000 + (uint64_t)i);
  }
  CHECK_INT(log_read(log, offs[5], buf, 7, &len), ==, -ERANGE);
  CHECK_INT(len, ==, rec_len(1005));
  /* Off a record boundary there is no record, whatever the bytes say. */
  int rc = log_read(log, offs[5] + 1, buf, sizeof buf, NULL);
  CHECK(rc == -BFS_EFORMAT || rc == -BFS_ECHECKSUM);
  for (uint64_t o = offs[5] + 1; o < offs[6]; o++)
    CHECK_INT(log_cursor_open(log, o, &c), ==, -EINVAL);
  CHECK_INT(log_read(log, end, buf, sizeof buf, NULL), ==, -EINVAL);

  /* Appending continues after a reopen. */
  append_ids(log, 1000 + N, 10, NULL);
  expect_ids(log, 1000, N + 10, NULL);
  log_close(log);

  /* A reader sees the same. */
  CHECK_OK(log_open(path, LOG_READ, &log, &info));
  CHECK_INT(info.end, ==, file_size(path));
  expect_ids(log, 1000, N + 10, NULL);
  CHECK_INT(log_append(log, "x", 1, NULL), ==, -EBADF);
  log_close(log);
}

TEST(record_sizes_and_batches)
{
  const char *path = path_in_tmp("log");
  struct log *log;
  CHECK_OK(log_open(path, LOG_WRITE | LOG_CREATE, &log, NULL));
  uint8_t *big = malloc(LOG_RECORD_MAX + 1);
  CHECK(big);
  for (size_t i = 0; i <= LOG_RECORD_MAX; i++)
    big[i] = (uint8_t)mix(i);
  uint64_t o_empty, o_one, o_max;
  CHECK_OK(log_append(log, NULL, 0, &o_empty));
  CHECK_OK(log_append(log, big, 1, &o_one));
  CHECK_OK(log_append(log, big, LOG_RECORD_MAX, &o_max));
  CHECK_INT(log_append(log, big, LOG_RECORD_MAX + 1, NULL), ==, -BFS_ETOOBIG);
  CHECK_INT(log_append(log, NULL, 5, NULL), ==, -EINVAL);

  /* A batch: contiguous offsets, one call. */
  enum { B = 64 };
  struct log_rec recs[B];
  uint8_t *bufs[B];
  uint64_t offs[B];
  for (int i = 0; i < B; i++) {
    size_t len = rec_len(5000 + (uint64_t)i);
    bufs[i] = malloc(len);
    CHECK(bufs[i]);
    rec_fill(5000 + (uint64_t)i, bufs[i], len);
    recs[i].data = bufs[i];
    recs[i].len = len;
  }
  struct log_stats st0, st1;
  log_stats(log, &st0);
  CHECK_INT(st0.records, ==, 3);
  CHECK_INT(st0.commits, ==, 3);
  CHECK_OK(log_append_batch(log, recs, B, offs));
  CHECK_OK(log_append_batch(log, recs, 0, NULL));
  log_stats(log, &st1);
  CHECK_INT(st1.records, ==, 3 + B);
  CHECK_INT(st1.commits, ==, 4); /* one fdatasync for the whole batch */
  CHECK_INT(st1.bytes, ==, log_end(log) - LOG_HEADER_SIZE);
  for (int i = 1; i < B; i++)
    CHECK_INT(offs[i], ==, offs[i - 1] + LOG_RECORD_OVERHEAD + recs[i - 1].len);
  /* A batch with one oversized record appends nothing. */
  uint64_t end = log_end(log);
  struct log_rec bad[2] = {{big, 10}, {big, LOG_RECORD_MAX + 1}};
  CHECK_INT(log_append_batch(log, bad, 2, NULL), ==, -BFS_ETOOBIG);
  CHECK_INT(log_end(log), ==, end);
  log_close(log);

  struct log_info info;
  CHECK_OK(log_open(path, LOG_READ, &log, &info));
  struct log_cursor *c;
  const uint8_t *data;
  size_t len;
  uint64_t off, id;
  CHECK_OK(log_cursor_open(log, LOG_HEADER_SIZE, &c));
  CHECK_INT(log_cursor_next(c, &data, &len, &off), ==, 1);
  CHECK_INT(len, ==, 0);
  CHECK_INT(off, ==, o_empty);
  CHECK_INT(log_cursor_next(c, &data, &len, &off), ==, 1);
  CHECK_INT(len, ==, 1);
  CHECK_INT(data[0], ==, big[0]);
  CHECK_INT(off, ==, o_one);
  CHECK_INT(log_cursor_next(c, &data, &len, &off), ==, 1);
  CHECK_INT(len, ==, LOG_RECORD_MAX);
  CHECK_INT(off, ==, o_max);
  CHECK_MEM(data, big, LOG_RECORD_MAX);
  for (int i = 0; i < B; i++) {
    CHECK_INT(log_cursor_next(c, &data, &len, &off), ==, 1);
    CHECK(rec_ok(data, len, &id));
    CHECK_INT(id, ==, 5000 + (uint64_t)i);
    CHECK_INT(off, ==, offs[i]);
  }
  CHECK_INT(log_cursor_next(c, &data, &len, &off), ==, 0);
  CHECK_INT(log_cursor_stop(c), ==, 0);
  log_cursor_close(c);
  log_close(log);
  for (int i = 0; i < B; i++)
    free(bufs[i]);
  free(big);

  /* Bytes on disk: header + records + 16 bytes each, nothing else. */
  size_t total = LOG_HEADER_SIZE + 3 * LOG_RECORD_OVERHEAD + 1 + LOG_RECORD_MAX;
  for (int i = 0; i < B; i++)
    total += LOG_RECORD_OVERHEAD + rec_len(5000 + (uint64_t)i);
  CHECK_INT(file_size(path), ==, total);
}

TEST(bad_files_refused)
{
  const char *path = path_in_tmp("log");
  struct log *log;
  /* Not a log: refused, and never overwritten. */
  write_file(path, (const uint8_t *)"hello, this is not a basefs log at all", 38);
  CHECK_INT(log_open(path, LOG_WRITE | LOG_CREATE, &log, NULL), ==, -BFS_EFORMAT);
  CHECK_INT(log_open(path, LOG_READ, &log, NULL), ==, -BFS_EFORMAT);
  CHECK_INT(file_size(path), ==, 38);
  /* Too short for a header. */
  write_file(path, (const uint8_t *)"BASEFSLG", 8);
  CHECK_INT(log_open(path, LOG_WRITE, &log, NULL), ==, -BFS_EFORMAT);
  /* An empty file is an empty log only when asked to create. */
  write_file(path, (const uint8_t *)"", 0);
  CHECK_INT(log_open(path, LOG_READ, &log, NULL), ==, -BFS_EFORMAT);
  CHECK_INT(log_open(path, LOG_WRITE, &log, NULL), ==, -BFS_EFORMAT);
  CHECK_OK(log_open(path, LOG_WRITE | LOG_CREATE, &log, NULL));
  append_ids(log, 1, 3, NULL);
  log_close(log);

  size_t len;
  uint8_t *good = read_file(path, &len);
  uint8_t *copy = malloc(len);
  CHECK(copy);
  /* A flipped header byte: checksum error; a future version: format error. */
  for (int i = 0; i < LOG_HEADER_SIZE; i++) {
    memcpy(copy, good, len);
    copy[i] ^= 0x10;
    write_file(path, copy, len);
    int rc = log_open(path, LOG_WRITE, &log, NULL);
    CHECK_MSG(rc == -BFS_EFORMAT || rc == -BFS_ECHECKSUM, "header byte %d: %d", i, rc);
    CHECK_INT(log_open(path, LOG_READ, &log, NULL), ==, rc);
    CHECK_INT(file_size(path), ==, len);
  }
  write_file(path, good, len);
  CHECK_OK(log_open(path, LOG_READ, &log, NULL));
  expect_ids(log, 1, 3, NULL);
  log_close(log);
  free(copy);
  free(good);
  /* A directory is no log. */
  CHECK(log_open(test_tmpdir(), LOG_READ, &log, NULL) < 0);
}

TEST(second_writer_refused_reader_not_blocked)
{
  const char *path = path_in_tmp("log");
  struct log *w, *w2, *r;
  CHECK_OK(log_open(path, LOG_WRITE | LOG_CREATE, &w, NULL));
  append_ids(w, 1, 5, NULL);
  CHECK_INT(log_open(path, LOG_WRITE, &w2, NULL), ==, -EBUSY);
  CHECK_INT(log_open(path, LOG_WRITE | LOG_CREATE, &w2, NULL), ==, -EBUSY);

  /* Another process is refused too, at once. */
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    struct log *l;
    _exit(log_open(path, LOG_WRITE, &l, NULL) == -EBUSY ? 0 : 1);
  }
  int status;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  /* A reader opens without waiting and sees what the writer made durable. */
  CHECK_OK(log_open(path, LOG_READ, &r, NULL));
  expect_ids(r, 1, 5, NULL);
  append_ids(w, 6, 5, NULL);
  expect_ids(r, 1, 10, NULL);
  expect_zero_tail(path, log_end(w));
  log_close(r);

  log_close(w);
  CHECK_OK(log_open(path, LOG_WRITE, &w2, NULL));
  expect_ids(w2, 1, 10, NULL);
  log_close(w2);
}

/* ---- damaged tails ------------------------------------------------------ */

/* A log of N records with ids 1..N in PATH; returns its bytes and offsets. */
static uint8_t *make_log(const char *path, int n, uint64_t *offs, size_t *len)
{
  struct log *log;
  unlink(path);
  CHECK_OK(log_open(path, LOG_WRITE | LOG_CREATE, &log, NULL));
  append_ids(log, 1, n, offs);
  offs[n] = log_end(log);
  log_close(log);
  return read_file(path, len);
}

/* Opens PATH as reader, then as writer, and checks both see ids 1..KEEP and
 * that only the writer cut the file to offs[KEEP]. */
static void expect_recovery(const char *path, int keep, int total, const uint64_t *offs,
                            uint64_t size, int expect_saved)
{
  struct log *log;
  struct log_info info;
  CHECK_OK(log_open(path, LOG_READ, &log, &info));
  struct log_cursor *c;
  CHECK_OK(log_cursor_open(log, LOG_HEADER_SIZE, &c));
  const uint8_t *data;
  size_t len;
  uint64_t off, id;
  for (int i = 0; i < keep; i++) {
    CHECK_INT(log_cursor_next(c, &data, &len, &off), ==, 1);
    CHECK(rec_ok(data, len, &id));
    CHECK_INT(id, ==, (uint64_t)i + 1);
  }
  CHECK_INT(log_cursor_next(c, &data, &len, &off), ==, 0);
  CHECK_INT(log_cursor_offset(c), ==, offs[keep]);
  /* A clean end: the end of the file, or zeros where the next header would
   * be (space zeroed ahead). Recovery keeps a tail that is all zeros and no
   * longer than a writer zeroes ahead; any other tail is cut. */
  size_t flen;
  uint8_t *bytes = read_file(path, &flen);
  CHECK_INT(flen, ==, size);
  size_t head = size - offs[keep] < LOG_RECORD_OVERHEAD ? (size_t)(size - offs[keep])
                                                         : LOG_RECORD_OVERHEAD;
  int zero_head = 1, zero_tail = 1;
  for (uint64_t i = offs[keep]; i < size; i++)
    if (bytes[i]) {
      zero_tail = 0;
      if (i < offs[keep] + head)
        zero_head = 0;
    }
  free(bytes);
  int kept = zero_tail && size - offs[keep] <= LOG_ZERO_TAIL_MAX;
  CHECK_MSG((log_cursor_stop(c) == 0) == zero_head, "stop %d, size %" PRIu64,
            log_cursor_stop(c), size);
  log_cursor_close(c);
  /* A cursor may start at the damaged record only if it is incomplete (it
   * may be being written); at a good record, always. */
  if (offs[keep] < size) {
    int rc = log_cursor_open(log, offs[keep], &c);
    if (keep < total && offs[keep + 1] > size)
      CHECK_OK(rc);
    if (rc == 0)
      log_cursor_close(c);
  }
  if (keep > 0) {
    CHECK_OK(log_cursor_open(log, offs[keep - 1], &c));
    log_cursor_close(c);
  }
  log_close(log);
  CHECK_INT(file_size(path), ==, size); /* the reader never repairs */

  CHECK_OK(log_open(path, LOG_WRITE, &log, &info));
  CHECK_INT(info.records, ==, keep);
  CHECK_INT(info.end, ==, offs[keep]);
  CHECK_INT(info.tail_bytes, ==, kept ? 0 : size - offs[keep]);
  CHECK_INT(info.zero_bytes, ==, kept ? size - offs[keep] : 0);
  CHECK_INT(info.tail_saved, ==, expect_saved);
  CHECK_INT(file_size(path), ==, kept ? size : offs[keep]);
  expect_ids(log, 1, keep, offs);
  log_close(log);
  CHECK_INT(file_size(path), ==, offs[keep]); /* a clean close: no zeros left */
}

/* Removes every <path>.tail-* side file; returns how many there were. */
static int remove_tails(const char *path, uint64_t from, const uint8_t *want, size_t want_len)
{
  char name[4200];
  snprintf(name, sizeof name, "%s.tail-%" PRIu64, path, from);
  struct stat st;
  if (stat(name, &st) < 0)
    return 0;
  if (want) {
    size_t len;
    uint8_t *got = read_file(name, &len);
    CHECK_INT(len, ==, want_len);
    CHECK_MEM(got, want, len);
    free(got);
  }
  unlink(name);
  return 1;
}

TEST(torn_tail_cut_by_writer_left_by_reader)
{
  const char *path = fast_path("log");
  enum { N = 12 };
  uint64_t offs[N + 1];
  size_t len;
  uint8_t *good = make_log(path, N, offs, &len);
  CHECK_INT(len, ==, offs[N]);

  /* A power cut may persist any prefix of the last writes: cut at every
   * byte of the last four records, and every 13th byte before. */
  for (uint64_t cut = LOG_HEADER_SIZE; cut <= offs[N]; cut++) {
    if (cut < offs[N - 4] && cut % 13 != 0)
      continue;
    write_file(path, good, (size_t)cut);
    int keep = 0;
    while (keep < N && offs[keep + 1] <= cut)
      keep++;
    expect_recovery(path, keep, N, offs, cut, 0);
  }

  /* Delayed allocation may leave the size extended but the data zero: that
   * is no record (and looks like zeros written ahead, so it is kept)... */
  uint8_t *zeros = calloc(1, len + 2 * LOG_ZERO_TAIL_MAX);
  CHECK(zeros);
  memcpy(zeros, good, (size_t)offs[N - 1]);
  write_file(path, zeros, (size_t)offs[N - 1] + 5000);
  expect_recovery(path, N - 1, N, offs, offs[N - 1] + 5000, 0);
  /* ... unless there are more zeros than a writer keeps ahead: cut. */
  write_file(path, zeros, (size_t)offs[N - 1] + LOG_ZERO_TAIL_MAX + 1);
  expect_recovery(path, N - 1, N, offs, offs[N - 1] + LOG_ZERO_TAIL_MAX + 1, 0);
  write_file(path, zeros, (size_t)offs[N - 1] + LOG_ZERO_TAIL_MAX);
  expect_recovery(path, N - 1, N, offs, offs[N - 1] + LOG_ZERO_TAIL_MAX, 0);
  free(zeros);

  /* Random garbage after the last record. */
  uint8_t *junk = malloc(len + 3000);
  CHECK(junk);
  memcpy(junk, good, len);
  for (int i = 0; i < 3000; i++)
    junk[len + (size_t)i] = (uint8_t)test_rand();
  write_file(path, junk, len + 3000);
  expect_recovery(path, N, N, offs, len + 3000, 0);
  free(junk);

  /* After recovery, the log takes appends where the good records end. */
  write_file(path, good, (size_t)offs[N - 2] + 7);
  struct log *log;
  CHECK_OK(log_open(path, LOG_WRITE, &log, NULL));
  uint64_t off;
  uint8_t rec[2000];
  rec_fill(N - 1, rec, rec_len(N - 1));
  CHECK_OK(log_append(log, rec, rec_len(N - 1), &off));
  CHECK_INT(off, ==, offs[N - 2]);
  expect_ids(log, 1, N - 1, offs);
  log_close(log);
  free(good);
  fast_path_done();
}

TEST(corrupt_byte_stops_there_and_tail_is_saved)
{
  const char *path = fast_path("log");
  enum { N = 12 };
  uint64_t offs[N + 1];
  size_t len;
  uint8_t *good = make_log(path, N, offs, &len);
  uint8_t *bad = malloc(len);
  CHECK(bad);

  /* Flip a bit in every byte of the last three records (and a few earlier
   * ones): iteration stops at the damaged record, the writer cuts there, and
   * when good records follow, the dropped bytes are kept in a side file. */
  int saved = 0;
  for (uint64_t pos = LOG_HEADER_SIZE; pos < offs[N]; pos++) {
    if (pos < offs[N - 3] && pos % 29 != 0)
      continue;
    int k = 0;
    while (offs[k + 1] <= pos)
      k++;
    memcpy(bad, good, len);
    bad[pos] ^= (uint8_t)(1u << (pos % 8));
    write_file(path, bad, len);
    expect_recovery(path, k, N, offs, len, k < N - 1);
    saved += remove_tails(path, offs[k], bad + offs[k], len - (size_t)offs[k]);
  }
  CHECK(saved > 0);

  /* log_read of a damaged record says so. */
  memcpy(bad, good, len);
  bad[offs[3] + LOG_RECORD_OVERHEAD + 2] ^= 1;
  write_file(path, bad, len);
  struct log *log;
  CHECK_OK(log_open(path, LOG_READ, &log, NULL));
  uint8_t buf[8 + 100000];
  CHECK_INT(log_read(log, offs[3], buf, sizeof buf, NULL), ==, -BFS_ECHECKSUM);
  CHECK_INT(log_read(log, offs[4], buf, sizeof buf, NULL), ==, rec_len(5));
  struct log_cursor *c;
  /* A reader cannot tell a damaged body from one still being written over
   * zeros (whole in length, not yet in bytes): a good header is enough to
   * start there, and the cursor stops at it with the reason. */
  CHECK_OK(log_cursor_open(log, offs[3], &c));
  CHECK_INT(log_cursor_next(c, NULL, NULL, NULL), ==, 0);
  CHECK_INT(log_cursor_stop(c), ==, -BFS_ECHECKSUM);
  log_cursor_close(c);
  /* A damaged header is no record: refused. */
  bad[offs[3] + 1] ^= 1;
  write_file(path, bad, len);
  CHECK_INT(log_cursor_open(log, offs[3], &c), ==, -EINVAL);
  bad[offs[3] + 1] ^= 1;
  write_file(path, bad, len);
  CHECK_OK(log_cursor_open(log, offs[2], &c));
  const uint8_t *data;
  size_t l;
  CHECK_INT(log_cursor_next(c, &data, &l, NULL), ==, 1);
  CHECK_INT(log_cursor_next(c, &data, &l, NULL), ==, 0);
  CHECK_INT(log_cursor_stop(c), ==, -BFS_ECHECKSUM);
  CHECK_INT(log_cursor_offset(c), ==, offs[3]);
  /* What looked bad may have been a record still being written: once the
   * bytes are whole, the same cursor goes on from there. */
  int fd = open(path, O_WRONLY);
  CHECK(fd >= 0);
  CHECK_INT(pwrite(fd, good + offs[3], LOG_RECORD_OVERHEAD + rec_len(4), (off_t)offs[3]), ==,
            LOG_RECORD_OVERHEAD + rec_len(4));
  close(fd);
  uint64_t id;
  CHECK_INT(log_cursor_next(c, &data, &l, NULL), ==, 1);
  CHECK(rec_ok(data, l, &id) && id == 4);
  log_cursor_close(c);
  log_close(log);
  free(bad);
  free(good);
  fast_path_done();
}

TEST(power_cut_loses_unsynced_sectors)
{
  /* A power cut keeps what was synced and any subset of the sectors written
   * since; the file size may or may not have reached the disk; a sector
   * being written may hold garbage. Whatever survives, recovery must keep
   * every synced record and return only intact records, in order. */
  const char *path = fast_path("log");
  enum { A = 20, M = 30, TRIALS = 300, SECTOR = 512 };
  uint64_t offs[A + M + 1];
  size_t la, lb;
  uint8_t *synced = make_log(path, A, offs, &la);
  struct log *log;
  CHECK_OK(log_open(path, LOG_WRITE, &log, NULL));
  for (int i = 0; i < M;) {
    /* Unsynced tail: a mix of single appends and batches. */
    int k = 1 + (int)(test_rand() % 5);
    if (k > M - i)
      k = M - i;
    struct log_rec recs[5];
    uint8_t bufs[5][1600];
    for (int j = 0; j < k; j++) {
      uint64_t id = (uint64_t)(A + 1 + i + j);
      recs[j].len = rec_len(id);
      recs[j].data = bufs[j];
      rec_fill(id, bufs[j], recs[j].len);
    }
    CHECK_OK(log_append_batch(log, recs, (size_t)k, &offs[A + i]));
    i += k;
  }
  /* The image a power cut starts from: taken while the writer is open, so
   * with the zeros it keeps ahead. */
  uint8_t *later = read_file(path, &lb);
  offs[A + M] = log_end(log);
  CHECK_INT(expect_zero_tail(path, offs[A + M]), ==, lb - offs[A + M]);
  log_close(log);
  CHECK(lb > la);
  uint8_t *img = malloc(lb);
  CHECK(img);
  int kept_all = 0, kept_none = 0, saved = 0;
  for (int trial = 0; trial < TRIALS; trial++) {
    size_t size = la + (size_t)(test_rand() % (lb - la + 1));
    if (trial % 4 == 0)
      size = lb;
    memcpy(img, synced, la);
    int keep_pct = (int)(test_rand() % 101);
    /* Every other trial, writeback got through a prefix in order first. */
    size_t prefix = trial % 2 ? la + (size_t)(test_rand() % (lb - la + 1)) : 0;
    for (size_t sec = la / SECTOR * SECTOR; sec < size; sec += SECTOR) {
      size_t from = sec < la ? la : sec, to = sec + SECTOR < size ? sec + SECTOR : size;
      uint64_t r = test_rand();
      int keep = sec + SECTOR <= prefix || (int)(r % 100) < keep_pct;
      for (size_t b = from; b < to; b++)
        img[b] = keep ? later[b] : r % 100 == 99 ? (uint8_t)mix(b + r) : 0;
    }
    write_file(path, img, size);
    struct log_info info;
    CHECK_OK(log_open(path, LOG_WRITE, &log, &info));
    expect_recovered_size(path, &info);
    CHECK(info.records >= A && info.records <= A + M);
    expect_ids(log, 1, (int)info.records, offs);
    saved += info.tail_saved;
    uint64_t off;
    CHECK_OK(log_append(log, "after", 5, &off));
    CHECK_INT(off, ==, info.end);
    log_close(log);
    remove_tails(path, info.end, img + info.end, size - (size_t)info.end);
    kept_all += info.records == A + M;
    kept_none += info.records == A;
  }
  printf("# %d trials: all unsynced records survived in %d, none in %d, tail saved in %d\n",
         TRIALS, kept_all, kept_none, saved);
  CHECK(kept_all > 0 && kept_none > 0);
  free(img);
  free(later);
  free(synced);
  fast_path_done();
}

TEST(torn_record_over_zeros_is_cut)
{
  /* What a writer leaves when it dies with zeros ahead: records, then
   * zeros. A power cut during the next append persists some of its pages
   * over those zeros, in any order. Whatever survives, the records before
   * it are intact, a torn record is cut (with the zeros), and only zeros
   * are kept. */
  const char *path = fast_path("log");
  enum { N = 8 };
  uint64_t offs[N + 2];
  unlink(path);
  struct log *log;
  CHECK_OK(log_open(path, LOG_WRITE | LOG_CREATE, &log, NULL));
  append_ids(log, 1, N, offs);
  offs[N] = log_end(log);
  /* The next record, a big one (it spans pages), framed by the log itself. */
  uint64_t id = 1000;
  while (rec_len(id) < 12000 || rec_len(id) > 40000)
    id++;
  uint8_t *rec = malloc(rec_len(id));
  CHECK(rec);
  rec_fill(id, rec, rec_len(id));
  uint64_t off;
  CHECK_OK(log_append(log, rec, rec_len(id), &off));
  CHECK_INT(off, ==, offs[N]);
  offs[N + 1] = log_end(log);
  size_t len;
  uint8_t *full = read_file(path, &len);
  log_close(log);
  free(rec);

  size_t size = (size_t)offs[N] + LOG_ZERO_TAIL_MAX;
  CHECK_INT(size, >, offs[N + 1]);
  uint8_t *img = calloc(1, size);
  CHECK(img);
  int cuts = 0;
  for (int trial = 0; trial < 40; trial++) {
    memset(img, 0, size);
    memcpy(img, full, (size_t)offs[N]);
    /* Trial 0: none of it; 1: all of it; then a prefix, or random pages. */
    uint64_t rlen = offs[N + 1] - offs[N];
    for (uint64_t p = 0; p < rlen; p += 4096) {
      size_t n = rlen - p < 4096 ? (size_t)(rlen - p) : 4096;
      int keep = trial == 1 || (trial >= 2 && trial % 2 == 0 && p < rlen / 2) ||
                 (trial >= 2 && trial % 2 == 1 && test_rand() % 2);
      if (keep)
        memcpy(img + offs[N] + p, full + offs[N] + p, n);
    }
    if (trial >= 2 && trial % 4 == 0) /* a prefix cut inside a page */
      memset(img + offs[N] + rlen / 2 - 100, 0, 100);
    write_file(path, img, size);
    if (trial == 1) {
      /* The whole record made it: it is there, and the zeros after it stay. */
      struct log_info info;
      CHECK_OK(log_open(path, LOG_WRITE, &log, &info));
      CHECK_INT(info.records, ==, N + 1);
      CHECK_INT(info.end, ==, offs[N + 1]);
      CHECK_INT(info.zero_bytes, ==, size - offs[N + 1]);
      expect_recovered_size(path, &info);
      log_close(log);
      continue;
    }
    int torn = memcmp(img + offs[N], full + offs[N], (size_t)rlen) != 0 &&
               !(trial == 0);
    cuts += torn;
    expect_recovery(path, N, N + 1, offs, size, 0);
  }
  CHECK(cuts > 20);
  /* After a cut, appends go where the torn record was. */
  struct log_info info;
  CHECK_OK(log_open(path, LOG_WRITE, &log, &info));
  CHECK_OK(log_append(log, "again", 5, &off));
  CHECK_INT(off, ==, offs[N]);
  log_close(log);
  free(img);
  free(full);
  fast_path_done();
}

/* ---- concurrency -------------------------------------------------------- */

struct thread_arg {
  struct log *log;
  int thread, n, batch;
};

static void *append_thread(void *p)
{
  struct thread_arg *a = p;
  uint8_t *bufs[8];
  struct log_rec recs[8];
  for (int i = 0; i < 8; i++)
    bufs[i] = malloc(8 + 100000);
  for (int s = 0; s < a->n;) {
    int k = a->batch ? 1 + (int)(mix((uint64_t)s) % 8) : 1;
    if (k > a->n - s)
      k = a->n - s;
    for (int i = 0; i < k; i++) {
      uint64_t id = (uint64_t)a->thread << 32 | (uint64_t)(s + i);
      recs[i].len = rec_len(id);
      recs[i].data = bufs[i];
      rec_fill(id, bufs[i], recs[i].len);
    }
    if (log_append_batch(a->log, recs, (size_t)k, NULL) != 0)
      return (void *)1;
    s += k;
  }
  for (int i = 0; i < 8; i++)
    free(bufs[i]);
  return NULL;
}

/* Checks the log holds, per thread t < T, exactly ids (t, 0..N-1) in order. */
static void expect_threads(struct log *log, int threads, int n)
{
  int next[16] = {0};
  struct log_cursor *c;
  CHECK_OK(log_cursor_open(log, LOG_HEADER_SIZE, &c));
  const uint8_t *data;
  size_t len;
  uint64_t id;
  int rc;
  while ((rc = log_cursor_next(c, &data, &len, NULL)) == 1) {
    CHECK(rec_ok(data, len, &id));
    int t = (int)(id >> 32);
    CHECK(t < threads);
    CHECK_INT(id & 0xffffffff, ==, next[t]);
    next[t]++;
  }
  CHECK_INT(rc, ==, 0);
  CHECK_INT(log_cursor_stop(c), ==, 0);
  log_cursor_close(c);
  for (int t = 0; t < threads; t++)
    CHECK_INT(next[t], ==, n);
}

TEST(group_commit_threads)
{
  const char *path = path_in_tmp("log");
  enum { T = 6, N = 300 };
  for (int batch = 0; batch < 2; batch++) {
    unlink(path);
    struct log *log;
    CHECK_OK(log_open(path, LOG_WRITE | LOG_CREATE, &log, NULL));
    pthread_t th[T];
    struct thread_arg args[T];
    for (int t = 0; t < T; t++) {
      args[t] = (struct thread_arg){log, t, N, batch};
      CHECK_OK(pthread_create(&th[t], NULL, append_thread, &args[t]));
    }
    /* Meanwhile a cursor on the writer's log sees only durable, whole
     * records: it never reads past log_end(). */
    struct log_cursor *c;
    CHECK_OK(log_cursor_open(log, LOG_HEADER_SIZE, &c));
    int seen = 0;
    while (seen < T * N) {
      const uint8_t *data;
      size_t len;
      int rc = log_cursor_next(c, &data, &len, NULL);
      CHECK(rc >= 0);
      if (rc == 0) {
        CHECK_INT(log_cursor_stop(c), ==, 0);
        usleep(100);
        continue;
      }
      CHECK(rec_ok(data, len, NULL));
      seen++;
    }
    log_cursor_close(c);
    for (int t = 0; t < T; t++) {
      void *ret;
      CHECK_OK(pthread_join(th[t], &ret));
      CHECK(ret == NULL);
    }
    expect_threads(log, T, N);
    struct log_stats st;
    log_stats(log, &st);
    CHECK_INT(st.records, ==, T * N);
    CHECK(st.commits <= st.records);
    printf("# %s: %d records in %" PRIu64 " commits\n", batch ? "batches" : "single", T * N,
           st.commits);
    log_close(log);
    struct log_info info;
    CHECK_OK(log_open(path, LOG_WRITE, &log, &info));
    CHECK_INT(info.tail_bytes, ==, 0);
    expect_threads(log, T, N);
    log_close(log);
  }
}

TEST(reader_follows_live_writer)
{
  const char *path = fast_path("log");
  enum { N = 3000 };
  struct log *w;
  CHECK_OK(log_open(path, LOG_WRITE | LOG_CREATE, &w, NULL));
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    /* The writer, in its own process, appends as fast as it can, in
     * batches of random sizes so reads often race a write. */
    uint8_t *bufs[16];
    struct log_rec recs[16];
    for (int i = 0; i < 16; i++)
      bufs[i] = malloc(8 + 100000);
    for (int s = 0; s < N;) {
      int k = 1 + (int)(mix((uint64_t)s + 7) % 16);
      if (k > N - s)
        k = N - s;
      for (int i = 0; i < k; i++) {
        recs[i].len = rec_len((uint64_t)(s + i));
        recs[i].data = bufs[i];
        rec_fill((uint64_t)(s + i), bufs[i], recs[i].len);
      }
      if (log_append_batch(w, recs, (size_t)k, NULL) != 0)
        _exit(1);
      s += k;
    }
    _exit(0);
  }
  /* The reader never takes the lock, never waits, never changes the file;
   * a record being written looks like the end, and it resumes later. */
  struct log *r;
  CHECK_OK(log_open(path, LOG_READ, &r, NULL));
  struct log_cursor *c;
  CHECK_OK(log_cursor_open(r, LOG_HEADER_SIZE, &c));
  int seen = 0, ends = 0;
  time_t deadline = time(NULL) + 60;
  while (seen < N) {
    const uint8_t *data;
    size_t len;
    uint64_t id;
    int rc = log_cursor_next(c, &data, &len, NULL);
    CHECK(rc >= 0);
    if (rc == 0) {
      ends++;
      CHECK(time(NULL) < deadline);
      usleep(20);
      continue;
    }
    CHECK(rec_ok(data, len, &id));
    CHECK_INT(id, ==, seen);
    seen++;
  }
  int status;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const uint8_t *data;
  size_t len;
  CHECK_INT(log_cursor_next(c, &data, &len, NULL), ==, 0);
  CHECK_INT(log_cursor_stop(c), ==, 0);
  log_cursor_close(c);
  log_close(r);
  log_close(w);
  printf("# reader hit the moving end %d times\n", ends);
  fast_path_done();
}

TEST(write_failure_leaves_log_usable)
{
  /* RLIMIT_FSIZE makes writes past a size fail with EFBIG, like a full
   * disk: the failed append must not count, leave nothing behind, and the
   * log must go on working. */
  const char *path = path_in_tmp("log");
  struct log *log;
  CHECK_OK(log_open(path, LOG_WRITE | LOG_CREATE, &log, NULL));
  append_ids(log, 1, 4, NULL);
  uint64_t end = log_end(log);
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit rl = {.rlim_cur = end + 3000, .rlim_max = RLIM_INFINITY};
  CHECK_OK(setrlimit(RLIMIT_FSIZE, &rl));
  static uint8_t big[10000];
  uint64_t off;
  CHECK(rec_len(5) < 2000);
  CHECK_INT(log_append(log, big, sizeof big, &off), ==, -EFBIG);
  CHECK_INT(log_end(log), ==, end);
  CHECK_INT(file_size(path), ==, end);
  uint8_t rec[2000];
  rec_fill(5, rec, rec_len(5));
  CHECK_OK(log_append(log, rec, rec_len(5), &off));
  CHECK_INT(off, ==, end);
  rl.rlim_cur = RLIM_INFINITY;
  CHECK_OK(setrlimit(RLIMIT_FSIZE, &rl));
  append_ids(log, 6, 3, NULL);
  expect_ids(log, 1, 8, NULL);
  log_close(log);
  struct log_info info;
  CHECK_OK(log_open(path, LOG_WRITE, &log, &info));
  CHECK_INT(info.tail_bytes, ==, 0);
  expect_ids(log, 1, 8, NULL);
  log_close(log);
}

TEST(full_disk_zeros_given_back)
{
  char path[4200], spare[4200];
  const char *mnt = test_small_tmpfs("24m");
  if (!mnt)
    return;
  snprintf(path, sizeof path, "%s/log", mnt);
  snprintf(spare, sizeof spare, "%s/spare", mnt);
  struct log *log;
  CHECK_OK(log_open(path, LOG_WRITE | LOG_CREATE, &log, NULL));
  append_ids(log, 1, 4, NULL);
  CHECK_INT(expect_zero_tail(path, log_end(log)), >, 0); /* 24 MiB free: zeros ahead */

  /* Another file fills the disk while the zeros are there. An append that
   * needs more than they hold fails with ENOSPC, leaves nothing behind, and
   * the zeros are given back (so that other file could have had them). */
  test_fill_disk(spare, 0);
  uint64_t end = log_end(log);
  uint8_t *big = malloc(8 + 100000);
  CHECK(big);
  uint64_t bid = 1000;
  while (rec_len(bid) <= LOG_ZERO_TAIL_MAX + 4096)
    bid++;
  rec_fill(bid, big, rec_len(bid));
  CHECK_INT(log_append(log, big, rec_len(bid), NULL), ==, -ENOSPC);
  CHECK_INT(log_end(log), ==, end);
  CHECK_INT(file_size(path), ==, end);
  expect_ids(log, 1, 4, NULL);

  /* Room, but less than LOG_ZERO_MIN_FREE: appends work, no zeros kept. */
  CHECK_OK(unlink(spare));
  test_fill_disk(spare, LOG_ZERO_MIN_FREE / 2);
  append_ids(log, 5, 3, NULL);
  CHECK_INT(file_size(path), ==, log_end(log));

  /* Plenty of room again: zeros come back; and once the disk goes below
   * LOG_ZERO_MIN_FREE, the next commit gives them back. */
  CHECK_OK(unlink(spare));
  append_ids(log, 8, 2, NULL);
  CHECK_INT(expect_zero_tail(path, log_end(log)), >, 0);
  test_fill_disk(spare, LOG_ZERO_MIN_FREE / 2);
  append_ids(log, 10, 1, NULL);
  CHECK_INT(file_size(path), ==, log_end(log));
  expect_ids(log, 1, 10, NULL);
  log_close(log);

  struct log_info info;
  CHECK_OK(log_open(path, LOG_WRITE, &log, &info));
  CHECK_INT(info.records, ==, 10);
  CHECK_INT(info.tail_bytes, ==, 0);
  expect_ids(log, 1, 10, NULL);
  log_close(log);
  free(big);
  umount(mnt);
}

/* ---- the crash test ----------------------------------------------------- */

/*
 * A child process appends records and reports each append that returned
 * through a pipe (the parent's only knowledge of what was acknowledged);
 * the parent SIGKILLs it at a random moment, recovers the log as writer and
 * checks: every acknowledged record is present, intact and in its thread's
 * order; every record present is one the child wrote (no garbage, no
 * duplicate, no gap in a thread's sequence); the log takes appends after.
 * Rounds rotate through: one thread appending singly, four threads sharing
 * group commits, one thread appending batches, three threads appending
 * batches, one thread appending batches of up to 24 records of 20-100 KB
 * (megabytes per write, so kills land inside a write and leave torn tails). The same file goes through many crashes before it is renewed, so
 * recovery of a recovered log (and a kill during recovery) are exercised.
 *
 * Record ids: round << 40 | thread << 32 | sequence number in the thread.
 */
enum { CRASH_ROUNDS = 250, CRASH_EPOCH = 25, CRASH_MAX_THREADS = 8 };
#define MARKER_THREAD 0xffu

struct crash_child {
  struct log *log;
  int pipe_fd;
  uint64_t round;
  int thread;
  int batch;
};

static void *crash_appender(void *p)
{
  struct crash_child *a = p;
  uint8_t *bufs[48];
  struct log_rec recs[48];
  uint64_t ids[48];
  for (int i = 0; i < 48; i++)
    if (!(bufs[i] = malloc(8 + 100000)))
      _exit(4);
  uint64_t seq = 0, r = mix(a->round * 31 + (uint64_t)a->thread);
  for (;;) {
    int k = a->batch ? 1 + (int)((r = mix(r)) % (a->thread == CRASH_BIG_THREAD ? 24 : 16)) : 1;
    for (int i = 0; i < k; i++) {
      ids[i] = a->round << 40 | (uint64_t)a->thread << 32 | (seq + (uint64_t)i);
      recs[i].len = rec_len(ids[i]);
      recs[i].data = bufs[i];
      rec_fill(ids[i], bufs[i], recs[i].len);
    }
    int rc = a->batch ? log_append_batch(a->log, recs, (size_t)k, NULL)
                      : log_append(a->log, recs[0].data, recs[0].len, NULL);
    if (rc != 0)
      _exit(5);
    /* Only now is the append acknowledged. One write per id: atomic. */
    for (int i = 0; i < k; i++)
      if (write(a->pipe_fd, &ids[i], sizeof ids[i]) != sizeof ids[i])
        _exit(6);
    seq += (uint64_t)k;
  }
  return NULL;
}

static void crash_child_main(const char *path, int pipe_fd, uint64_t round, int threads, int batch,
                             int big)
{
  struct log *log;
  if (log_open(path, LOG_WRITE | LOG_CREATE, &log, NULL) != 0)
    _exit(3);
  struct crash_child args[CRASH_MAX_THREADS];
  pthread_t th[CRASH_MAX_THREADS];
  for (int t = 0; t < threads; t++) {
    args[t] = (struct crash_child){log, pipe_fd, round, big ? CRASH_BIG_THREAD : t, batch};
    if (t > 0 && pthread_create(&th[t], NULL, crash_appender, &args[t]) != 0)
      _exit(7);
  }
  crash_appender(&args[0]);
  _exit(8);
}

/* Per (round, thread) of the current file: records present, records acked. */
static uint32_t present[CRASH_EPOCH][CRASH_MAX_THREADS];
static uint32_t acked[CRASH_EPOCH][CRASH_MAX_THREADS];

static void crash_verify(const char *path, uint64_t epoch_start, uint64_t round, uint64_t *records,
                         uint64_t *torn)
{
  struct log *log;
  struct log_info info;
  CHECK_OK(log_open(path, LOG_WRITE | LOG_CREATE, &log, &info));
  /* A SIGKILL leaves at most a partial last write: no record behind it. */
  CHECK_INT(info.tail_saved, ==, 0);
  CHECK_INT(info.end, ==, log_end(log));
  expect_recovered_size(path, &info);
  *torn += info.tail_bytes > 0;
  memset(present, 0, sizeof present);
  struct log_cursor *c;
  CHECK_OK(log_cursor_open(log, LOG_HEADER_SIZE, &c));
  const uint8_t *data;
  size_t len;
  uint64_t id, off, last_round = epoch_start, n = 0;
  int rc;
  while ((rc = log_cursor_next(c, &data, &len, &off)) == 1) {
    n++;
    CHECK_MSG(rec_ok(data, len, &id), "garbage record at %" PRIu64, off);
    uint64_t r = id >> 40;
    unsigned t = (unsigned)(id >> 32) & 0xff;
    uint32_t s = (uint32_t)id;
    CHECK_MSG(r >= last_round && r <= round, "record of round %" PRIu64 " after %" PRIu64, r,
              last_round);
    last_round = r;
    if (t == MARKER_THREAD)
      continue;
    CHECK(t < CRASH_MAX_THREADS);
    uint32_t *p = &present[r - epoch_start][t];
    CHECK_MSG(s == *p, "round %" PRIu64 " thread %u: seq %u where %u was due", r, t, s, *p);
    (*p)++;
  }
  CHECK_INT(rc, ==, 0);
  CHECK_INT(log_cursor_stop(c), ==, 0);
  CHECK_INT(log_cursor_offset(c), ==, log_end(log));
  log_cursor_close(c);
  for (uint64_t r = epoch_start; r <= round; r++)
    for (int t = 0; t < CRASH_MAX_THREADS; t++)
      CHECK_MSG(acked[r - epoch_start][t] <= present[r - epoch_start][t],
                "round %" PRIu64 " thread %d: %u acknowledged, %u present", r, t,
                acked[r - epoch_start][t], present[r - epoch_start][t]);

  /* Appendable afterwards: a marker record, read back. */
  uint64_t mid = round << 40 | (uint64_t)MARKER_THREAD << 32;
  uint8_t buf[8 + 100000];
  size_t mlen = rec_len(mid);
  rec_fill(mid, buf, mlen);
  CHECK_OK(log_append(log, buf, mlen, &off));
  memset(buf, 0, mlen);
  CHECK_INT(log_read(log, off, buf, sizeof buf, NULL), ==, mlen);
  CHECK(rec_ok(buf, mlen, &id) && id == mid);
  log_close(log);
  *records = n;
}

TEST(crash_sigkill_at_random_points)
{
  const char *path = path_in_tmp("log");
  uint64_t epoch_start = 0, total_acked = 0, max_records = 0, early = 0, torn = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (uint64_t round = 0; round < CRASH_ROUNDS; round++) {
    if (round % CRASH_EPOCH == 0) {
      unlink(path);
      epoch_start = round;
      memset(acked, 0, sizeof acked);
    }
    int mode = (int)(round % 5);
    int threads = mode == 1 ? 4 : mode == 3 ? 3 : 1;
    int batch = mode >= 2, big = mode == 4;
    int fds[2];
    CHECK_OK(pipe(fds));
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
      close(fds[0]);
      crash_child_main(path, fds[1], round, threads, batch, big);
    }
    close(fds[1]);
    /* One round in four kills within 1.5 ms of the fork, while the child
     * opens (and maybe recovers) the log. The others wait for the first
     * acknowledged append, so a slow machine still kills mid-stream, then
     * kill after a random 0-8 ms more. */
    uint64_t r = test_rand(), acks = 0, id;
    ssize_t got;
    if (r % 4 == 0) {
      usleep((useconds_t)((r >> 8) % 1500));
    } else {
      struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
      CHECK_INT(poll(&pfd, 1, 20000), ==, 1);
      usleep((useconds_t)((r >> 8) % 8000));
    }
    CHECK_OK(kill(pid, SIGKILL));
    /* Every id in the pipe is an append that returned before the kill. */
    while ((got = read(fds[0], &id, sizeof id)) == sizeof id) {
      uint64_t ar = id >> 40;
      unsigned t = (unsigned)(id >> 32) & 0xff;
      CHECK(ar == round && (big ? t == CRASH_BIG_THREAD : t < (unsigned)threads));
      uint32_t *a = &acked[round - epoch_start][t];
      if ((uint32_t)id + 1 > *a)
        *a = (uint32_t)id + 1;
      acks++;
    }
    CHECK_INT(got, ==, 0);
    close(fds[0]);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child exited by itself: %d",
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    if (acks == 0)
      early++;
    total_acked += acks;
    /* One round in five leaves the crashed log to the next child, which
     * then recovers it itself (and may be killed while doing so). */
    if ((round + 1) % CRASH_EPOCH != 0 && test_rand() % 5 == 0)
      continue;
    uint64_t n;
    crash_verify(path, epoch_start, round, &n, &torn);
    if (n > max_records)
      max_records = n;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("# %d kills, %" PRIu64 " acknowledged appends checked, %" PRIu64
         " kills before any ack, %" PRIu64 " torn tails cut, largest log %" PRIu64 " records, %.1f s\n",
         CRASH_ROUNDS, total_acked, early, torn, max_records,
         (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
  /* The test means little if the kills mostly came before any append. */
  CHECK(total_acked >= CRASH_ROUNDS);
  CHECK(early <= CRASH_ROUNDS / 3);
}

/* A reader handed the offset of a record a writer is still writing over its
 * zeros (header in place, body still zeros) starts there, as it does at a
 * record cut short: it is no damage, only not yet written. Once the bytes
 * are there, the same cursor reads the record. */
TEST(reader_starts_at_a_record_written_over_zeros)
{
  char path[4096];
  snprintf(path, sizeof path, "%s/z.log", test_tmpdir());
  struct log *w;
  CHECK_OK(log_open(path, LOG_WRITE | LOG_CREATE, &w, NULL));
  uint8_t rec[200];
  memset(rec, 'x', sizeof rec);
  uint64_t third = 0;
  CHECK_OK(log_append(w, rec, 100, NULL));
  CHECK_OK(log_append(w, rec, 100, NULL));
  CHECK_OK(log_append(w, rec, 200, &third));
  log_close(w);
  int fd = open(path, O_RDWR);
  CHECK(fd >= 0);
  uint8_t body[LOG_RECORD_OVERHEAD + 200], zeros[4096] = {0};
  CHECK_INT(pread(fd, body, sizeof body, (off_t)third), ==, (ssize_t)sizeof body);
  CHECK_INT(pwrite(fd, zeros, 200, (off_t)(third + LOG_RECORD_OVERHEAD)), ==, 200);
  CHECK_INT(pwrite(fd, zeros, sizeof zeros, (off_t)(third + sizeof body)), ==, (ssize_t)sizeof zeros);
  struct log *r;
  CHECK_OK(log_open(path, LOG_READ, &r, NULL));
  struct log_cursor *c;
  CHECK_OK(log_cursor_open(r, third, &c));
  const uint8_t *data;
  size_t len;
  CHECK_INT(log_cursor_next(c, &data, &len, NULL), ==, 0);
  CHECK_INT(pwrite(fd, body, sizeof body, (off_t)third), ==, (ssize_t)sizeof body);
  CHECK_INT(log_cursor_next(c, &data, &len, NULL), ==, 1);
  CHECK_INT(len, ==, 200);
  log_cursor_close(c);
  log_close(r);
  close(fd);
}

/* A header zeroed in the middle of the log (a zeroed sector), records after
 * it: recovery stops there, keeps the dropped bytes (records follow) and
 * says why -- a format error, not the clean end a zero header also is. */
TEST(zeroed_header_in_the_middle_is_a_format_error)
{
  char path[4096];
  snprintf(path, sizeof path, "%s/m.log", test_tmpdir());
  struct log *w;
  CHECK_OK(log_open(path, LOG_WRITE | LOG_CREATE, &w, NULL));
  uint8_t rec[300];
  memset(rec, 'y', sizeof rec);
  uint64_t offs[6];
  for (int i = 0; i < 6; i++)
    CHECK_OK(log_append(w, rec, 100 + 30 * i, &offs[i]));
  log_close(w);
  int fd = open(path, O_RDWR);
  CHECK(fd >= 0);
  uint8_t zeros[LOG_RECORD_OVERHEAD] = {0};
  CHECK_INT(pwrite(fd, zeros, sizeof zeros, (off_t)offs[2]), ==, (ssize_t)sizeof zeros);
  close(fd);
  struct log_info info;
  CHECK_OK(log_open(path, LOG_WRITE, &w, &info));
  CHECK_INT(info.records, ==, 2);
  CHECK_INT(info.end, ==, offs[2]);
  CHECK_INT(info.tail_error, ==, -BFS_EFORMAT);
  CHECK(info.tail_saved);
  CHECK_INT(info.zero_bytes, ==, 0);
  log_close(w);
}

/* ---- log_truncate ------------------------------------------------------- */

/* A new log at PATH holding ids 1..N at OFFS. */
static struct log *new_log(const char *path, int n, uint64_t *offs)
{
  struct log *log;
  CHECK_OK(log_open(path, LOG_WRITE | LOG_CREATE, &log, NULL));
  append_ids(log, 1, n, offs);
  return log;
}

TEST(truncate_drops_records_from_a_boundary_and_saves_them)
{
  char *path = path_in_tmp("trunc.log");
  uint64_t offs[10];
  struct log *log = new_log(path, 10, offs);
  uint64_t end = log_end(log);
  size_t flen;
  uint8_t *file = read_file(path, &flen);
  CHECK_INT(flen, >=, end);

  CHECK_INT(log_truncate(log, offs[6] + 1), ==, -EINVAL); /* no record boundary */
  CHECK_INT(log_truncate(log, end + 1), ==, -EINVAL);
  CHECK_INT(log_truncate(log, LOG_HEADER_SIZE - 1), ==, -EINVAL);
  CHECK_OK(log_truncate(log, end)); /* nothing to drop */
  CHECK_INT(remove_tails(path, end, NULL, 0), ==, 0);
  expect_ids(log, 1, 10, offs);

  CHECK_OK(log_truncate(log, offs[6]));
  CHECK_INT(log_end(log), ==, offs[6]);
  CHECK_INT(file_size(path), ==, offs[6]);
  expect_ids(log, 1, 6, offs);
  CHECK_INT(remove_tails(path, offs[6], file + offs[6], (size_t)(end - offs[6])), ==, 1);
  /* Appends go on from there. */
  uint64_t more[3];
  append_ids(log, 7, 3, more);
  CHECK_INT(more[0], ==, offs[6]);
  log_close(log);

  struct log_info info;
  CHECK_OK(log_open(path, LOG_WRITE, &log, &info));
  CHECK_INT(info.tail_bytes, ==, 0);
  expect_ids(log, 1, 9, NULL);
  log_close(log);

  CHECK_OK(log_open(path, LOG_READ, &log, NULL));
  CHECK_INT(log_truncate(log, LOG_HEADER_SIZE), ==, -EBADF);
  log_close(log);
  free(file);
  unlink(path);
}

/* ---- log_append_batch_ordered ------------------------------------------- */

struct hook_state {
  const char *path;
  uint64_t want_end; /* the records end here */
  uint64_t last;     /* and the last one, id 4, starts here */
  int calls;
  int ret;
};

/* Called with the records written: a reader finds them already. */
static int hook(void *arg)
{
  struct hook_state *h = arg;
  h->calls++;
  struct log *r;
  CHECK_OK(log_open(h->path, LOG_READ, &r, NULL));
  uint8_t *buf = malloc(LOG_RECORD_MAX);
  size_t len;
  uint64_t id;
  CHECK_INT(log_read(r, h->last, buf, LOG_RECORD_MAX, &len), ==, h->want_end - h->last - LOG_RECORD_OVERHEAD);
  CHECK(rec_ok(buf, len, &id));
  CHECK_INT(id, ==, 4);
  free(buf);
  log_close(r);
  return h->ret;
}

TEST(ordered_append_calls_its_hook_before_the_sync)
{
  char *path = path_in_tmp("ordered.log");
  uint64_t offs[4];
  struct log *log = new_log(path, 2, offs);
  size_t la = rec_len(3), lb = rec_len(4), both = 2 * LOG_RECORD_OVERHEAD + la + lb;
  uint8_t *a = malloc(la), *b = malloc(lb);
  rec_fill(3, a, la);
  rec_fill(4, b, lb);
  struct log_rec recs[2] = {{a, la}, {b, lb}};
  uint64_t start = log_end(log);
  struct hook_state h = {path, start + both, start + LOG_RECORD_OVERHEAD + la, 0, 0};
  CHECK_OK(log_append_batch_ordered(log, recs, 2, offs + 2, hook, &h));
  CHECK_INT(h.calls, ==, 1);
  CHECK_INT(offs[2], ==, start);
  expect_ids(log, 1, 4, offs);

  /* A failing hook fails the append like a failed write: nothing of it
   * stays, and the log goes on. */
  h = (struct hook_state){path, log_end(log) + both, log_end(log) + LOG_RECORD_OVERHEAD + la, 0, -EIO};
  CHECK_INT(log_append_batch_ordered(log, recs, 2, NULL, hook, &h), ==, -EIO);
  CHECK_INT(h.calls, ==, 1);
  expect_ids(log, 1, 4, offs);
  uint64_t more;
  append_ids(log, 5, 1, &more);
  CHECK_INT(more, ==, h.want_end - both);
  log_close(log);

  CHECK_OK(log_open(path, LOG_WRITE, &log, NULL));
  expect_ids(log, 1, 5, NULL);
  log_close(log);
  free(a);
  free(b);
  unlink(path);
}
