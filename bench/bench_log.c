/*
 * The log's append rate under its three durability paths, and what signing
 * real entries costs on top.
 *
 *   bench_log [--dir DIR] [--seconds S] [--threads N] [--scan-records N] [--rounds R]
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
 * per record come from the file size. Last, the start-up cost: a writer's
 * log_open() of a log of N records (default 200000 x 600 bytes), which scans
 * and checks every record.
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
#include "bench/bench_util.h"

#define REC_SIZE 600
#define BATCH 64
#define MAX_ROUNDS 15

static double seconds = 1;
static int rounds = 3;
static char dir[4096];
static char path[4200];

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
  double t0 = bench_now(), t;
  do {
    if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || fdatasync(fd) < 0)
      die("write", -errno);
    n++;
  } while ((t = bench_now()) - t0 < seconds);
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
  double t0 = bench_now();
  for (int i = 0; i < threads; i++) {
    w[i] = (struct worker){.log = log, .key = keys ? keys[i] : NULL, .batch = batch, .stop = &stop, .id = i};
    if (pthread_create(&w[i].th, NULL, worker_main, &w[i]) != 0)
      die("pthread_create", -EAGAIN);
  }
  while (bench_now() - t0 < seconds)
    usleep(10000);
  stop = 1;
  uint64_t total = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(w[i].th, NULL);
    total += w[i].done;
  }
  double t = bench_now() - t0;
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

static int by_rate(const void *a, const void *b)
{
  double x = ((const struct result *)a)->rate, y = ((const struct result *)b)->rate;
  return x < y ? -1 : x > y;
}

static struct result median(const struct result *r, int n)
{
  struct result tmp[MAX_ROUNDS];
  memcpy(tmp, r, sizeof *r * (size_t)n);
  qsort(tmp, (size_t)n, sizeof *tmp, by_rate);
  return tmp[n / 2];
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
  long scan_records = 200000;
  const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
                                       {"seconds", required_argument, NULL, 's'},
                                       {"threads", required_argument, NULL, 't'},
                                       {"scan-records", required_argument, NULL, 'n'},
                                       {"rounds", required_argument, NULL, 'r'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "d:s:t:n:r:h", opts, NULL)) != -1) {
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
    case 'n':
      scan_records = atol(optarg);
      break;
    case 'r':
      rounds = atoi(optarg);
      break;
    default:
      fprintf(stderr, "usage: bench_log [--dir DIR] [--seconds S] [--threads N] [--scan-records N] [--rounds R]\n");
      return c == 'h' ? 0 : 2;
    }
  }
  if (threads < 1 || threads > 256 || seconds <= 0 || rounds < 1 || rounds > MAX_ROUNDS) {
    fprintf(stderr, "bench_log: bad --threads, --seconds or --rounds\n");
    return 2;
  }
  snprintf(dir, sizeof dir, "%s/bench_log-XXXXXX", base);
  if (!mkdtemp(dir))
    die("mkdtemp", -errno);
  snprintf(path, sizeof path, "%s/log", dir);

  printf("bench_log: %s, %.1f s per figure, median of %d interleaved rounds, %ld CPUs\n", dir,
         seconds, rounds, sysconf(_SC_NPROCESSORS_ONLN));
  struct key **keys = calloc((size_t)threads, sizeof *keys);
  if (!keys)
    die("calloc", -ENOMEM);
  for (int i = 0; i < threads; i++) {
    int rc = key_generate(&keys[i]);
    if (rc < 0)
      die("key_generate", rc);
  }

  /* Figures on a shared machine drift with the load, so every configuration
   * runs once per round, rounds interleave, and each figure is the median:
   * ratios within a round are fair. */
  struct config {
    char what[96];
    int threads, flags, batch, sign, use_log, anchor;
    struct result r[MAX_ROUNDS];
  } cfg[] = {
      {.what = "write(600 B)+fdatasync, plain file, 1 thread", .threads = 1, .flags = 0, .batch = 1, .sign = 0, .use_log = -1, .anchor = 1},
      {.what = "log_append 600 B, 1 thread (fdatasync each)", .threads = 1, .flags = 0, .batch = 1, .sign = 0, .use_log = 1, .anchor = 0},
      {.what = "", .threads = threads, .flags = 0, .batch = 1, .sign = 0, .use_log = 1, .anchor = 0},
      {.what = "", .threads = threads, .flags = LOG_NO_GROUP_COMMIT, .batch = 1, .sign = 0, .use_log = 1, .anchor = 0},
      {.what = "", .threads = 1, .flags = 0, .batch = BATCH, .sign = 0, .use_log = 1, .anchor = 0},
      {.what = "entry_sign+encode only, 1 thread", .threads = 1, .flags = 0, .batch = 1, .sign = 1, .use_log = 0, .anchor = 1},
      {.what = "", .threads = threads, .flags = 0, .batch = 1, .sign = 1, .use_log = 0, .anchor = 0},
      {.what = "signed+appended, 1 thread (no group commit)", .threads = 1, .flags = 0, .batch = 1, .sign = 1, .use_log = 1, .anchor = 0},
      {.what = "", .threads = threads, .flags = 0, .batch = 1, .sign = 1, .use_log = 1, .anchor = 0},
      {.what = "", .threads = threads, .flags = LOG_NO_GROUP_COMMIT, .batch = 1, .sign = 1, .use_log = 1, .anchor = 0},
      {.what = "", .threads = 1, .flags = 0, .batch = BATCH, .sign = 1, .use_log = 1, .anchor = 0},
  };
  enum { NCFG = sizeof cfg / sizeof cfg[0] };
  snprintf(cfg[2].what, sizeof cfg[2].what, "log_append 600 B, %d threads, group commit", threads);
  snprintf(cfg[3].what, sizeof cfg[3].what, "log_append 600 B, %d threads, group commit off", threads);
  snprintf(cfg[4].what, sizeof cfg[4].what, "log_append_batch(%d x 600 B), 1 thread", BATCH);
  snprintf(cfg[6].what, sizeof cfg[6].what, "entry_sign+encode only, %d threads", threads);
  snprintf(cfg[8].what, sizeof cfg[8].what, "signed+appended, %d threads, group commit", threads);
  snprintf(cfg[9].what, sizeof cfg[9].what, "signed+appended, %d threads, group commit off", threads);
  snprintf(cfg[10].what, sizeof cfg[10].what, "signed+appended, batches of %d, 1 thread", BATCH);
  for (int round = 0; round < rounds; round++)
    for (int i = 0; i < NCFG; i++) {
      struct config *k = &cfg[i];
      if (k->use_log < 0)
        k->r[round] = (struct result){.rate = anchor_rate()};
      else
        k->r[round] = run(k->threads, k->flags, k->batch, k->sign ? keys : NULL, k->use_log);
    }
  double anchor = 1;
  for (int i = 0; i < NCFG; i++) {
    struct config *k = &cfg[i];
    if (i == 0)
      printf("-- 600-byte records\n");
    if (i == 5)
      printf("-- signed entries (P-256, WRITE of a 400-byte file; one key per thread)\n");
    struct result m = median(k->r, rounds);
    if (k->anchor) {
      anchor = m.rate;
      printf("%-52s %9.0f /s  (anchor)\n", k->what, m.rate);
    } else {
      print(k->what, m, anchor);
    }
  }
  printf("entry: %zu bytes encoded, %zu bytes on disk (%d bytes log framing, %.1f%%)\n", entry_bytes,
         entry_bytes + LOG_RECORD_OVERHEAD, LOG_RECORD_OVERHEAD,
         100.0 * LOG_RECORD_OVERHEAD / (double)(entry_bytes + LOG_RECORD_OVERHEAD));

  /* Start-up cost: a writer's open scans and checks every record. */
  printf("-- recovery scan (file in the page cache)\n");
  struct log *log = fresh_log(0);
  static uint8_t rec[REC_SIZE];
  struct log_rec recs[BATCH];
  for (int i = 0; i < BATCH; i++)
    recs[i] = (struct log_rec){rec, sizeof rec};
  for (long i = 0; i < scan_records; i += BATCH) {
    int rc = log_append_batch(log, recs, BATCH, NULL);
    if (rc < 0)
      die("log_append_batch", rc);
  }
  log_close(log);
  struct log_info info;
  double t0 = bench_now();
  int rc = log_open(path, LOG_WRITE, &log, &info);
  double t = bench_now() - t0;
  if (rc < 0)
    die("log_open", rc);
  log_close(log);
  printf("log_open(LOG_WRITE) of %" PRIu64 " records (%.0f MB): %.0f ms, %.0f MB/s, %.0f records/s\n",
         info.records, (double)info.end / 1e6, t * 1e3, (double)info.end / 1e6 / t,
         (double)info.records / t);

  for (int i = 0; i < threads; i++)
    key_free(keys[i]);
  free(keys);
  unlink(path);
  rmdir(dir);
  return 0;
}
