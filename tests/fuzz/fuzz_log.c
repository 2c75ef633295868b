/*
 * Fuzz target for the log. Raw mode (first byte even, as "BASEFSLG" is):
 * the input is the bytes of a log file. Structured mode (first byte odd):
 * the input lists records to append, and where to cut and damage the file
 * (see structured()).
 *
 * Either way the file is opened as a reader and iterated, every record found
 * is read again by offset, then the file is opened as a writer (recovery),
 * and the two must agree: the writer keeps exactly the records the reader
 * saw and cuts the file there -- unless all that follows is zeros, no more
 * than a writer keeps ahead (LOG_ZERO_TAIL_MAX), which it keeps; afterwards
 * the log takes an append, a clean close leaves the file ending at that
 * record, and a reader finds it at the end. Any crash or disagreement aborts.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "store/log.h"

#define MAX_SEEN 4096

struct seen {
  uint64_t off;
  size_t len;
  uint64_t sum;
};

static char dir[256];
static char path[300];

static void must(int cond, const char *what)
{
  if (!cond) {
    fprintf(stderr, "fuzz_log: %s\n", what);
    abort();
  }
}

static void cleanup(void)
{
  unlink(path);
  rmdir(dir);
}

static void setup(void)
{
  if (dir[0])
    return;
  atexit(cleanup);
  /* tmpfs when there is one: recovery fdatasyncs, and the side files for
   * saved tails need a real directory. */
  snprintf(dir, sizeof dir, "%s/fuzz_log-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
  must(mkdtemp(dir) != NULL, "mkdtemp");
  snprintf(path, sizeof path, "%s/log", dir);
}


static int all_zero(const uint8_t *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (p[i])
      return 0;
  return 1;
}

static void remove_side_files(uint64_t from)
{
  char name[400];
  snprintf(name, sizeof name, "%s.tail-%llu", path, (unsigned long long)from);
  unlink(name);
  for (int k = 1; k < 4; k++) {
    snprintf(name, sizeof name, "%s.tail-%llu.%d", path, (unsigned long long)from, k);
    unlink(name);
  }
}

/* Iterates LOG from the start; returns the record count and the end offset. */
static size_t scan(struct log *log, struct seen *seen, uint64_t *end)
{
  struct log_cursor *c;
  must(log_cursor_open(log, LOG_HEADER_SIZE, &c) == 0, "cursor open");
  const uint8_t *data;
  size_t len, n = 0;
  uint64_t off;
  int rc;
  while ((rc = log_cursor_next(c, &data, &len, &off)) == 1) {
    must(len <= LOG_RECORD_MAX, "record too long");
    must(off >= LOG_HEADER_SIZE, "offset inside header");
    if (n < MAX_SEEN && seen)
      seen[n] = (struct seen){off, len, XXH3_64bits(data, len)};
    n++;
  }
  must(rc == 0, "cursor I/O error");
  *end = log_cursor_offset(c);
  log_cursor_close(c);
  return n;
}

/* Checks the file of SIZE bytes at PATH; fills SEEN (the records a reader
 * finds) and returns their count, or -1 if the file is refused. */
static long check_file(const uint8_t *data, size_t size, struct seen *seen)
{
  static struct seen again[MAX_SEEN];
  static uint8_t buf[LOG_RECORD_MAX];

  struct log *log;
  struct log_info info;
  int rc = log_open(path, LOG_READ, &log, &info);
  if (rc < 0) {
    /* Whatever a reader refuses, a writer refuses too, and neither writes. */
    must(log_open(path, LOG_WRITE, &log, &info) < 0, "writer opened what the reader refused");
    struct stat st;
    must(stat(path, &st) == 0 && (size_t)st.st_size == size, "refused file changed");
    return -1;
  }
  uint64_t end;
  size_t n = scan(log, seen, &end);
  for (size_t i = 0; i < n && i < MAX_SEEN; i++) {
    size_t len;
    int got = log_read(log, seen[i].off, buf, sizeof buf, &len);
    must(got >= 0 && (size_t)got == seen[i].len, "log_read disagrees with the cursor");
    must(XXH3_64bits(buf, (size_t)got) == seen[i].sum, "log_read bytes differ");
  }
  /* Reads at arbitrary offsets only ever return checked records. */
  for (uint64_t off = 0; off < size && off < 512; off++)
    (void)log_read(log, off, buf, sizeof buf, NULL);
  log_close(log);
  struct stat st;
  must(stat(path, &st) == 0 && (size_t)st.st_size == size, "reader changed the file");

  /* The writer recovers to exactly what the reader saw. */
  rc = log_open(path, LOG_WRITE, &log, &info);
  must(rc == 0, "writer refused what the reader opened");
  must(info.records == n && info.end == end, "recovery disagrees with the reader");
  int zeros = size - end <= LOG_ZERO_TAIL_MAX && all_zero(data + end, size - end);
  must(info.tail_bytes == (zeros ? 0 : size - end), "tail size");
  must(info.zero_bytes == (zeros ? size - end : 0), "zero tail size");
  must(stat(path, &st) == 0 && (uint64_t)st.st_size == (zeros ? size : end),
       zeros ? "zeros ahead not kept" : "tail not cut");
  uint64_t end2;
  must(scan(log, again, &end2) == n && end2 == end, "writer's scan differs");
  for (size_t i = 0; i < n && i < MAX_SEEN; i++)
    must(again[i].off == seen[i].off && again[i].sum == seen[i].sum, "records differ");
  uint64_t off;
  must(log_append(log, data, size < 300 ? size : 300, &off) == 0 && off == end, "append");
  uint64_t end3 = log_end(log);
  log_close(log);
  must(stat(path, &st) == 0 && (uint64_t)st.st_size == end3, "zeros left after a clean close");
  remove_side_files(end);

  must(log_open(path, LOG_READ, &log, &info) == 0, "reopen");
  must(scan(log, NULL, &end2) == n + 1, "appended record missing");
  must(log_read(log, off, buf, sizeof buf, NULL) == (int)(size < 300 ? size : 300), "read back");
  log_close(log);
  return (long)n;
}

static void write_input(const uint8_t *data, size_t size)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  must(fd >= 0, "create");
  must(write(fd, data, size) == (ssize_t)size, "write");
  close(fd);
}

/*
 * Structured mode (first byte odd): the input describes records, which are
 * appended through the API (alternating single appends and batches); the
 * file as the open writer leaves it (records, then zeros written ahead: what
 * a crash leaves) is cut and one byte flipped where the input's last four
 * bytes say. Whatever the damage, the reader and the writer must return exactly
 * the appended records that lie wholly before the first damaged byte --
 * all of them, intact, and nothing else.
 *   input: u8 mode | { u8 len, len bytes }* | u16 cut | u8 flip position | u8 xor
 */
static void structured(const uint8_t *data, size_t size)
{
  static struct seen want[MAX_SEEN], got[MAX_SEEN];
  static uint8_t file[1 << 20];
  if (size < 5)
    return;
  const uint8_t *tail = data + size - 4;
  struct log_rec recs[256];
  size_t n = 0;
  for (const uint8_t *p = data + 1; p < tail && n < 256;) {
    size_t len = *p++;
    if (len > (size_t)(tail - p))
      len = (size_t)(tail - p);
    recs[n++] = (struct log_rec){p, len};
    p += len;
  }
  unlink(path);
  struct log *log;
  must(log_open(path, LOG_WRITE | LOG_CREATE, &log, NULL) == 0, "create log");
  uint64_t offs[257];
  for (size_t i = 0; i < n;) {
    size_t k = i % 3 == 2 ? (n - i < 4 ? n - i : 4) : 1;
    must(log_append_batch(log, recs + i, k, offs + i) == 0, "append");
    for (size_t j = i; j < i + k; j++)
      want[j] = (struct seen){offs[j], recs[j].len, XXH3_64bits(recs[j].data, recs[j].len)};
    i += k;
  }
  offs[n] = log_end(log);
  int fd = open(path, O_RDONLY);
  must(fd >= 0, "open");
  ssize_t fsize = read(fd, file, sizeof file);
  close(fd);
  must(fsize >= (ssize_t)offs[n] && fsize - (ssize_t)offs[n] <= (ssize_t)LOG_ZERO_TAIL_MAX &&
           all_zero(file + offs[n], (size_t)fsize - offs[n]),
       "bytes past the end are not (at most LOG_ZERO_TAIL_MAX) zeros");
  log_close(log);
  struct stat st;
  must(stat(path, &st) == 0 && (uint64_t)st.st_size == offs[n], "log size after a clean close");
  size_t cut = LOG_HEADER_SIZE + ((size_t)tail[0] | (size_t)tail[1] << 8) % ((size_t)fsize - LOG_HEADER_SIZE + 1);
  size_t flip = LOG_HEADER_SIZE + (size_t)tail[2] * ((size_t)fsize - LOG_HEADER_SIZE) / 256;
  size_t damaged = cut;
  if (tail[3] && flip < cut) {
    file[flip] ^= tail[3];
    damaged = flip;
  }
  size_t keep = 0;
  while (keep < n && offs[keep + 1] <= damaged)
    keep++;
  write_input(file, cut);
  long found = check_file(file, cut, got);
  must(found == (long)keep, "recovered a different number of records than survived");
  for (size_t i = 0; i < keep; i++)
    must(got[i].off == want[i].off && got[i].len == want[i].len && got[i].sum == want[i].sum,
         "a surviving record came back different");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static struct seen seen[MAX_SEEN];
  setup();
  if (size > 0 && (data[0] & 1)) {
    structured(data, size);
    return 0;
  }
  write_input(data, size);
  check_file(data, size, seen);
  return 0;
}
