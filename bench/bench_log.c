/*
 * The log's append rate under its three durability paths, and what signing
 * real entries costs on top.
 *
 *   bench_log [--dir DIR] [--seconds S] [--threads N]
 *
 * Anchor for raw records: write(600 bytes) + fdatasync on a plain file in
 * the same directory, one thread -- what the disk gives without the log.
 * Anchor for entries: signing and encoding alone, one thread. Then, for
 * 600-byte records: one thread (one fdatasync per append); N threads with
 * group commit; N threads with group commit turned off (LOG_NO_GROUP_COMMIT);
 * batches of 64. Then real entries (a WRITE of a 400-byte config file,
 * ~560 bytes encoded): signed only; signed+appended on one thread (no group
 * commit possible); on N threads with group commit (each thread its own key:
 * key_sign serializes per key); signed then appended in batches. Bytes on disk
 * per record come from the file size.
 *
 * DIR defaults to $TMPDIR or /tmp; the bench's files are removed at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/entry.h"
#include "store/error.h"
#include "store/key.h"
#include "store/log.h"

#define REC_SIZE 600
#define BATCH 64

static double seconds = 1.5;
static char dir[4096];
static char path[4200];

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
  fprintf(stderr, "bench_log: %s: %s\n", what, bfs_strerror(rc));
  exit(1);
}

static struct log *fresh_log(int flags)
{
  unlink(path);
  struct log *log;
  int rc = log_open(path, LOG_WRITE | LOG_CREATE | flags, &log, NULL);
  if (rc < 0)
    die("log_open", rc);
  return log;
}

static uint64_t file_size(void)
{
  struct stat st;
  return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* ---- the anchor --------------------------------------------------------- */

static double anchor_rate(void)
{
  unlink(path);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
  if (fd < 0)
    die("open", -errno);
  char buf[REC_SIZE];
  memset(buf, 'a', sizeof buf);
  uint64_t n = 0;
  double t0 = now(), t;
  do {
    if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || fdatasync(fd) < 0)
      die("write", -errno);
    n++;
  } while ((t = now()) - t0 < seconds);
  close(fd);
  return (double)n / (t - t0);
}

/* ---- raw records and entries from threads -------------------------------- */

struct worker {
  pthread_t th;
  struct log *log;
  struct key *key; /* NULL: raw 600-byte records */
  int batch;       /* records per append call */
  volatile int *stop;
  uint64_t done;
  int id;
};

/* A WRITE entry of a 400-byte inline file, unique per (thread, n). */
static size_t make_entry(struct key *key, int id, uint64_t n, uint8_t *out)
{
  static const char text[] =
      "# /etc/hosts: static table lookup for hostnames\n127.0.0.1 localhost\n";
  struct entry e;
  memset(&e, 0, sizeof e);
  e.action = ENTRY_WRITE;
  e.content_kind = ENTRY_CONTENT_INLINE;
  memset(e.dir.bytes, 0x11, HASH_SIZE);
  e.name_len = (uint8_t)snprintf(e.name, sizeof e.name, "file-%d-%" PRIu64 ".conf", id, n);
  e.content_len = 400;
  for (int i = 0; i < 400; i++)
    e.content[i] = (uint8_t)text[(i + n) % (sizeof text - 1)];
  e.size = 400;
  e.mode = 0644;
  e.mtime_ns = 1700000000000000000ull + n;
  int rc = entry_sign(&e, key);
  if (rc < 0)
    die("entry_sign", rc);
  rc = entry_encode(&e, out, ENTRY_MAX_SIZE);
  if (rc < 0)
    die("entry_encode", rc);
  return (size_t)rc;
}

static size_t entry_bytes;

static void *worker_main(void *p)
{
  struct worker *w = p;
  static const uint8_t zero[REC_SIZE];
  uint8_t (*bufs)[ENTRY_MAX_SIZE] = malloc(sizeof *bufs * BATCH);
  struct log_rec recs[BATCH];
  if (!bufs)
    die("malloc", -ENOMEM);
  while (!*w->stop) {
    for (int i = 0; i < w->batch; i++) {
      if (w->key) {
        recs[i].len = make_entry(w->key, w->id, w->done + (uint64_t)i, bufs[i]);
        recs[i].data = bufs[i];
        entry_bytes = recs[i].len;
      } else {
        recs[i].data = zero;
        recs[i].len = REC_SIZE;
      }
    }
    if (w->log) {
      int rc = log_append_batch(w->log, recs, (size_t)w->batch, NULL);
      if (rc < 0)
        die("log_append_batch", rc);
    }
    w->done += (uint64_t)w->batch;
  }
  free(bufs);
  return NULL;
}

struct result {
  double rate;
  double per_commit;
  double bytes_per_record;
};

/* Runs THREADS workers for the bench time; KEYS non-NULL signs entries. */
static struct result run(int threads, int flags, int batch, struct key **keys, int use_log)
{
  struct log *log = use_log ? fresh_log(flags) : NULL;
  volatile int stop = 0;
  struct worker *w = calloc((size_t)threads, sizeof *w);
  if (!w)
    die("calloc", -ENOMEM);
  double t0 = now();
  for (int i = 0; i < threads; i++) {
    w[i] = (struct worker){.log = log, .key = keys ? keys[i] : NULL, .batch = batch, .stop = &stop, .id = i};
    if (pthread_create(&w[i].th, NULL, worker_main, &w[i]) != 0)
      die("pthread_create", -EAGAIN);
  }
  while (now() - t0 < seconds)
    usleep(10000);
  stop = 1;
  uint64_t total = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(w[i].th, NULL);
    total += w[i].done;
  }
  double t = now() - t0;
  free(w);
  struct result r = {.rate = (double)total / t};
  if (log) {
    struct log_stats st;
    log_stats(log, &st);
    r.per_commit = st.commits ? (double)st.records / (double)st.commits : 0;
    log_close(log);
    r.bytes_per_record = st.records ? (double)(file_size() - LOG_HEADER_SIZE) / (double)st.records : 0;
  }
  return r;
}

static void print(const char *what, struct result r, double anchor)
{
  printf("%-52s %9.0f /s  x%5.2f", what, r.rate, r.rate / anchor);
  if (r.per_commit > 0)
    printf("  %6.1f per fdatasync  %6.1f B/record", r.per_commit, r.bytes_per_record);
  printf("\n");
}

int main(int argc, char **argv)
{
  int threads = 4;
  const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
                                       {"seconds", required_argument, NULL, 's'},
                                       {"threads", required_argument, NULL, 't'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "d:s:t:h", opts, NULL)) != -1) {
    switch (c) {
    case 'd':
      base = optarg;
      break;
    case 's':
      seconds = atof(optarg);
      break;
    case 't':
      threads = atoi(optarg);
      break;
    default:
      fprintf(stderr, "usage: bench_log [--dir DIR] [--seconds S] [--threads N]\n");
      return c == 'h' ? 0 : 2;
    }
  }
  if (threads < 1 || threads > 256 || seconds <= 0) {
    fprintf(stderr, "bench_log: bad --threads or --seconds\n");
    return 2;
  }
  snprintf(dir, sizeof dir, "%s/bench_log-XXXXXX", base);
  if (!mkdtemp(dir))
    die("mkdtemp", -errno);
  snprintf(path, sizeof path, "%s/log", dir);

  printf("bench_log: %s, %.1f s per figure, %ld CPUs\n", dir, seconds, sysconf(_SC_NPROCESSORS_ONLN));
  double anchor = anchor_rate();
  printf("%-52s %9.0f /s  (anchor, x1.00)\n", "write(600 B)+fdatasync, plain file, 1 thread", anchor);
  char what[128];

  printf("-- 600-byte records\n");
  print("log_append, 1 thread (fdatasync per append)", run(1, 0, 1, NULL, 1), anchor);
  snprintf(what, sizeof what, "log_append, %d threads, group commit", threads);
  print(what, run(threads, 0, 1, NULL, 1), anchor);
  snprintf(what, sizeof what, "log_append, %d threads, group commit off", threads);
  print(what, run(threads, LOG_NO_GROUP_COMMIT, 1, NULL, 1), anchor);
  snprintf(what, sizeof what, "log_append_batch(%d), 1 thread", BATCH);
  print(what, run(1, 0, BATCH, NULL, 1), anchor);

  printf("-- signed entries (P-256, WRITE of a 400-byte file)\n");
  struct key **keys = calloc((size_t)threads, sizeof *keys);
  if (!keys)
    die("calloc", -ENOMEM);
  for (int i = 0; i < threads; i++) {
    int rc = key_generate(&keys[i]);
    if (rc < 0)
      die("key_generate", rc);
  }
  /* The anchor of this part: signing alone, no log. */
  struct result sign = run(1, 0, 1, keys, 0);
  printf("%-52s %9.0f /s  (anchor, x1.00)\n", "entry_sign+encode only, 1 thread", sign.rate);
  anchor = sign.rate;
  snprintf(what, sizeof what, "entry_sign+encode only, %d threads", threads);
  print(what, run(threads, 0, 1, keys, 0), anchor);
  print("signed+appended, 1 thread (no group commit)", run(1, 0, 1, keys, 1), anchor);
  snprintf(what, sizeof what, "signed+appended, %d threads, group commit", threads);
  print(what, run(threads, 0, 1, keys, 1), anchor);
  snprintf(what, sizeof what, "signed+appended, %d threads, group commit off", threads);
  print(what, run(threads, LOG_NO_GROUP_COMMIT, 1, keys, 1), anchor);
  snprintf(what, sizeof what, "signed+appended, batches of %d, 1 thread", BATCH);
  print(what, run(1, 0, BATCH, keys, 1), anchor);
  printf("entry: %zu bytes encoded, %zu bytes on disk (%d bytes log framing, %.1f%%)\n", entry_bytes,
         entry_bytes + LOG_RECORD_OVERHEAD, LOG_RECORD_OVERHEAD,
         100.0 * LOG_RECORD_OVERHEAD / (double)(entry_bytes + LOG_RECORD_OVERHEAD));
  for (int i = 0; i < threads; i++)
    key_free(keys[i]);
  free(keys);
  unlink(path);
  rmdir(dir);
  return 0;
}
