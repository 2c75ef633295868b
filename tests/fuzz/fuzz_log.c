/*
 * Fuzz target for the log: the input is the bytes of a log file.
 *
 * It opens the file as a reader and iterates, reads every record found by
 * offset, then opens it as a writer (recovery), and checks the two agree:
 * the writer keeps exactly the records the reader saw and cuts the file
 * there; afterwards the log takes an append and a reader finds it at the end.
 * Any crash or disagreement aborts.
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static struct seen seen[MAX_SEEN], again[MAX_SEEN];
  static uint8_t buf[LOG_RECORD_MAX];
  setup();
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  must(fd >= 0, "create");
  must(write(fd, data, size) == (ssize_t)size, "write");
  close(fd);

  struct log *log;
  struct log_info info;
  int rc = log_open(path, LOG_READ, &log, &info);
  if (rc < 0) {
    /* Whatever a reader refuses, a writer refuses too, and neither writes. */
    must(log_open(path, LOG_WRITE, &log, &info) < 0, "writer opened what the reader refused");
    struct stat st;
    must(stat(path, &st) == 0 && (size_t)st.st_size == size, "refused file changed");
    return 0;
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
  must(info.tail_bytes == size - end, "tail size");
  must(stat(path, &st) == 0 && (uint64_t)st.st_size == end, "tail not cut");
  uint64_t end2;
  must(scan(log, again, &end2) == n && end2 == end, "writer's scan differs");
  for (size_t i = 0; i < n && i < MAX_SEEN; i++)
    must(again[i].off == seen[i].off && again[i].sum == seen[i].sum, "records differ");
  uint64_t off;
  must(log_append(log, data, size < 300 ? size : 300, &off) == 0 && off == end, "append");
  log_close(log);
  remove_side_files(end);

  must(log_open(path, LOG_READ, &log, &info) == 0, "reopen");
  must(scan(log, NULL, &end2) == n + 1, "appended record missing");
  must(log_read(log, off, buf, sizeof buf, NULL) == (int)(size < 300 ? size : 300), "read back");
  log_close(log);
  return 0;
}
