/*
 * The block write path against the anchor: cp + sync of the same data.
 *
 *   bench_blocks [-s MiB] [-d DIR] [-l LEVEL] [-t THREADS] [-r ROUNDS]
 *
 * Builds a file of mixed data (1 MiB runs: random, config-like text, random,
 * zeros-with-noise), then measures in one run:
 *   - the parts: chunking, SHA-256 (fast path and mbedTLS), zstd -1/-3;
 *   - chunk+hash+compress+store (blocks_write_fd + blocks_sync) MB/s;
 *   - cp + sync: read the file, write() a copy, fsync + syncfs, MB/s;
 *   - the ratio of the two (medians of ROUNDS interleaved rounds, default 3);
 *   - dedup: an edited copy (bytes inserted in 3 places) stored in the same
 *     store: blocks and bytes newly written;
 *   - chunking parameters: mean chunk size and blocks changed by an edit
 *     for a few MIN/AVG/MAX choices.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "store/blocks.h"
#include "store/chunk.h"
#include "store/error.h"
#include "store/hash.h"
#include "bench/bench_util.h"

/* CPU seconds used by this process so far (every thread). */
static double cpu_now(void)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds of the last cp_sync() / store_run(). */
static double last_cpu;

static uint64_t rng = 0x1234567;
static uint64_t next_rand(void)
{
  rng += 0x9E3779B97F4A7C15ULL;
  uint64_t z = rng;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static void fill_mixed(uint8_t *b, size_t len)
{
  for (size_t off = 0; off < len; off += 1u << 20) {
    size_t n = len - off < (1u << 20) ? len - off : 1u << 20;
    int kind = (int)((off >> 20) % 4);
    if (kind == 0 || kind == 2) {
      for (size_t i = 0; i < n; i += 8) {
        uint64_t r = next_rand();
        memcpy(b + off + i, &r, n - i < 8 ? n - i : 8);
      }
    } else if (kind == 1) {
      size_t i = 0;
      while (i < n) {
        char line[96];
        int k = snprintf(line, sizeof line, "node%03" PRIu64 ".option_%" PRIu64 " = %" PRIu64 "\n",
                         next_rand() % 200, next_rand() % 50, next_rand() % 100000);
        size_t c = (size_t)k < n - i ? (size_t)k : n - i;
        memcpy(b + off + i, line, c);
        i += c;
      }
    } else {
      memset(b + off, 0, n);
      for (int j = 0; j < 64; j++)
        b[off + next_rand() % n] = (uint8_t)next_rand();
    }
  }
}

static int write_all(int fd, const uint8_t *b, size_t len)
{
  while (len > 0) {
    ssize_t r = write(fd, b, len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -errno;
    b += r;
    len -= (size_t)r;
  }
  return 0;
}

/* cp + sync: read SRC in 1 MiB pieces, write DST, fsync it and sync its file system. */
static double cp_sync(const char *src, const char *dst, size_t len)
{
  double t = bench_now(), c0 = cpu_now();
  int in = open(src, O_RDONLY), out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (in < 0 || out < 0)
    return -1;
  uint8_t *buf = malloc(1u << 20);
  for (;;) {
    ssize_t r = read(in, buf, 1u << 20);
    if (r <= 0)
      break;
    if (write_all(out, buf, (size_t)r) < 0)
      return -1;
  }
  fsync(out);
  syncfs(out);
  close(in);
  close(out);
  free(buf);
  last_cpu = cpu_now() - c0;
  return (double)len / (bench_now() - t) / 1e6;
}

static void rm_rf(const char *dir)
{
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "warning: could not remove %s\n", dir);
}

static double last_sync_share;

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
  double t[16];
  memcpy(t, v, (size_t)n * sizeof *t);
  qsort(t, (size_t)n, sizeof *t, cmp_double);
  return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

/* Stores the file at SRC in a fresh store; returns MB/s (blocks_write_fd + blocks_sync). */
static double store_run(const char *dir, const char *src, int level, int threads,
                        struct blocks_list *l, uint64_t *on_disk)
{
  /* A fresh directory each run, removed only at the end: deleting a store
   * right before writing the next one makes ext4's inode allocator crawl
   * (recently_deleted), which is not what a store normally sees. */
  struct blocks *bs;
  if (blocks_open(dir, BLOCKS_CREATE, &bs) != 0)
    return -1;
  blocks_set_level(bs, level);
  if (threads > 0)
    blocks_set_threads(bs, threads);
  sync();
  int fd = open(src, O_RDONLY);
  double t = bench_now(), c0 = cpu_now();
  int err = blocks_write_fd(bs, fd, l);
  double t_sync = bench_now();
  if (!err)
    err = blocks_sync(bs);
  double dt = bench_now() - t;
  last_sync_share = (bench_now() - t_sync) / dt;
  last_cpu = cpu_now() - c0;
  close(fd);
  if (err) {
    fprintf(stderr, "store: %s\n", bfs_strerror(err));
    blocks_close(bs);
    return -1;
  }
  struct blocks_stats st;
  blocks_stats(bs, &st);
  *on_disk = st.stored_bytes;
  blocks_close(bs);
  return (double)l->total / dt / 1e6;
}

/* Chunks changed by inserting 7 bytes at 100 KiB of a random buffer. */
static void param_run(const uint8_t *b, size_t len, size_t min, size_t avg, size_t max)
{
  size_t *ea = malloc((len / min + 2) * sizeof *ea), *eb = malloc((len / min + 2) * sizeof *eb);
  uint8_t *e = malloc(len + 7);
  memcpy(e, b, 100 << 10);
  memcpy(e + (100 << 10), "INSERTD", 7);
  memcpy(e + (100 << 10) + 7, b + (100 << 10), len - (100 << 10));
  size_t na = 0, nb = 0;
  for (int pass = 0; pass < 2; pass++) {
    const uint8_t *p = pass ? e : b;
    size_t plen = pass ? len + 7 : len, off = 0, *ends = pass ? eb : ea, *n = pass ? &nb : &na;
    struct chunker c;
    chunker_init_params(&c, min, avg, max);
    while (off < plen) {
      bool cut;
      off += chunker_feed(&c, p + off, plen - off, &cut);
      if (cut || off == plen)
        ends[(*n)++] = off;
    }
  }
  /* a chunk of the edited file is shared if a chunk of the original has the same bytes */
  size_t shared = 0, i = 0, j = 0, sa = 0, sb = 0;
  while (i < na && j < nb) {
    size_t la = ea[i] - sa, lb = eb[j] - sb;
    if (la == lb && memcmp(b + sa, e + sb, la) == 0) {
      shared++;
      sa = ea[i++];
      sb = eb[j++];
    } else if (ea[i] + 7 * (ea[i] > (100 << 10)) <= eb[j]) {
      sa = ea[i++];
    } else {
      sb = eb[j++];
    }
  }
  printf("  min %3zu KiB avg %3zu KiB max %4zu KiB: mean chunk %6.1f KiB, %zu chunks, %zu changed by a 7-byte insert (%.0f KiB to send)\n",
         min >> 10, avg >> 10, max >> 10, (double)len / (double)na / 1024, na, nb - shared,
         (double)(len - 0) / (double)na * (double)(nb - shared) / 1024);
  free(ea);
  free(eb);
  free(e);
}

int main(int argc, char **argv)
{
  size_t mib = 64;
  int level = BLOCKS_DEFAULT_LEVEL, threads = 0, rounds = 3, opt;
  const char *base = NULL;
  while ((opt = getopt(argc, argv, "s:d:l:t:r:h")) != -1) {
    switch (opt) {
    case 'r': rounds = atoi(optarg); break;
    case 's': mib = strtoul(optarg, NULL, 10); break;
    case 'd': base = optarg; break;
    case 'l': level = atoi(optarg); break;
    case 't': threads = atoi(optarg); break;
    default:
      fprintf(stderr, "usage: bench_blocks [-s MiB] [-d DIR] [-l LEVEL] [-t THREADS] [-r ROUNDS]\n");
      return opt == 'h' ? 0 : 2;
    }
  }
  if (mib == 0)
    mib = 1;
  if (rounds < 1)
    rounds = 1;
  if (rounds > 16)
    rounds = 16;
  char root[4096];
  if (base)
    snprintf(root, sizeof root, "%s/bench_blocks.%d", base, (int)getpid());
  else
    snprintf(root, sizeof root, "/var/tmp/bench_blocks.%d", (int)getpid());
  if (mkdir(root, 0755) < 0) {
    perror(root);
    return 1;
  }
  size_t len = mib << 20;
  uint8_t *data = malloc(len + 64);
  if (!data)
    return 1;
  fill_mixed(data, len);
  char src[4200], dst[4200], store[4200];
  snprintf(src, sizeof src, "%s/src", root);
  snprintf(dst, sizeof dst, "%s/cp", root);
  snprintf(store, sizeof store, "%s/blocks", root);
  int fd = open(src, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || write_all(fd, data, len) < 0 || fsync(fd) < 0) {
    perror(src);
    return 1;
  }
  close(fd);
  printf("bench_blocks: %zu MiB of mixed data (random / text / random / sparse, 1 MiB runs) in %s\n",
         mib, root);
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  printf("cpus online: %ld\n\n", ncpu);

  /* the parts, one core each */
  printf("parts (one core):\n");
  size_t *ends;
  double t = bench_now();
  ssize_t n = chunk_split(data, len, &ends);
  double chunk_mbs = (double)len / (bench_now() - t) / 1e6;
  printf("  chunking (gear hash)      %8.0f MB/s  (%zd chunks, mean %.1f KiB)\n", chunk_mbs, n,
         (double)len / (double)n / 1024);
  hash_t h;
  t = bench_now();
  blocks_hash(data, len, &h);
  printf("  SHA-256 blocks_hash       %8.0f MB/s\n", (double)len / (bench_now() - t) / 1e6);
  t = bench_now();
  hash_buf(data, len, &h);
  printf("  SHA-256 mbedTLS           %8.0f MB/s\n", (double)len / (bench_now() - t) / 1e6);
  size_t zcap = ZSTD_compressBound(CHUNK_MAX);
  uint8_t *z = malloc(zcap);
  ZSTD_CCtx *cc = ZSTD_createCCtx();
  for (int lv = 1; lv <= 3; lv += 2) {
    size_t zs = 0, prev = 0;
    t = bench_now();
    for (ssize_t i = 0; i < n; i++) {
      size_t r = ZSTD_compressCCtx(cc, z, zcap, data + prev, ends[i] - prev, lv);
      size_t raw = ends[i] - prev;
      zs += ZSTD_isError(r) || r >= raw - raw / 32 ? raw : r;
      prev = ends[i];
    }
    printf("  zstd -%d per chunk         %8.0f MB/s  (stored %.1f%% of raw)\n", lv,
           (double)len / (bench_now() - t) / 1e6, 100.0 * (double)zs / (double)len);
  }
  ZSTD_freeCCtx(cc);
  free(z);
  free(ends);

  /* The anchor and the block path, interleaved in rounds (the machine is
   * shared: medians of interleaved runs, not one lucky or unlucky run). */
  printf("\nwrite paths (durable at the end), median of %d interleaved rounds:\n", rounds);
  int nthr = threads ? threads : (int)(ncpu > 4 ? 4 : ncpu);
  int alt = level == 1 ? 3 : 1;
  double cp[16], one[16], par[16], par3[16], sync_share[16], cpu_cp[16], cpu_par[16];
  uint64_t disk = 0, disk3 = 0;
  struct blocks_list l;
  for (int r = 0; r < rounds; r++) {
    cp[r] = cp_sync(src, dst, len);
    cpu_cp[r] = last_cpu;
    snprintf(store, sizeof store, "%s/blocks1.%d", root, r);
    one[r] = store_run(store, src, level, 1, &l, &disk);
    blocks_list_free(&l);
    snprintf(store, sizeof store, "%s/blocks2.%d", root, r);
    par[r] = store_run(store, src, level, threads, &l, &disk);
    sync_share[r] = last_sync_share;
    cpu_par[r] = last_cpu;
    blocks_list_free(&l);
    snprintf(store, sizeof store, "%s/blocks3.%d", root, r);
    par3[r] = store_run(store, src, alt, threads, &l, &disk3);
    blocks_list_free(&l);
    printf("  round %d: cp+sync %4.0f, blocks 1 thread %4.0f, %d threads %4.0f, %d threads zstd -%d %4.0f MB/s\n",
           r + 1, cp[r], one[r], nthr, par[r], nthr, alt, par3[r]);
  }
  double mcp = median(cp, rounds), mone = median(one, rounds), mpar = median(par, rounds),
         mpar3 = median(par3, rounds);
  printf("  cp + sync                          %6.0f MB/s\n", mcp);
  printf("  blocks, 1 thread, zstd -%d          %6.0f MB/s  (%.1f%% of raw on disk)\n", level, mone,
         100.0 * (double)disk / (double)len);
  printf("  blocks, %d threads, zstd -%d         %6.0f MB/s  (%.1f%% of raw on disk; sync ~%.0f%% of the time)\n",
         nthr, level, mpar, 100.0 * (double)disk / (double)len, 100 * median(sync_share, rounds));
  printf("  blocks, %d threads, zstd -%d         %6.0f MB/s  (%.1f%% of raw on disk)\n", nthr, alt, mpar3,
         100.0 * (double)disk3 / (double)len);
  double mb = (double)len / 1e6;
  printf("  CPU cost: cp + sync %.2f ms/MB, block path %.2f ms/MB (all threads)\n",
         1e3 * median(cpu_cp, rounds) / mb, 1e3 * median(cpu_par, rounds) / mb);
  printf("\nRATIO block path / (cp + sync) = %.2f  (%.0f / %.0f MB/s, medians)\n", mpar / mcp, mpar, mcp);

  /* dedup: an edited copy in the store that holds the file at LEVEL */
  snprintf(store, sizeof store, "%s/blocks2.0", root);
  struct blocks *bs;
  if (blocks_open(store, BLOCKS_WRITE, &bs) != 0)
    return 1;
  if (threads > 0)
    blocks_set_threads(bs, threads);
  uint8_t *ed = malloc(len + 300);
  size_t at[3] = {len / 7, len / 2, len - len / 5}, o = 0, s = 0;
  for (int i = 0; i < 3; i++) {
    memcpy(ed + o, data + s, at[i] - s);
    o += at[i] - s;
    s = at[i];
    memset(ed + o, 'E', 100);
    o += 100;
  }
  memcpy(ed + o, data + s, len - s);
  o += len - s;
  struct blocks_list le;
  t = bench_now();
  int err = blocks_write_buf(bs, ed, o, &le);
  if (!err)
    err = blocks_sync(bs);
  double dt = bench_now() - t;
  if (err) {
    fprintf(stderr, "dedup run: %s\n", bfs_strerror(err));
    return 1;
  }
  printf("\ndedup: copy with 100 bytes inserted at 3 places: %zu of %zu blocks new (%.1f%%), %.1f KiB new on disk\n"
         "       (second write %.0f MB/s); 2 versions of %.2f MiB take %.2f MiB on disk (%.2fx, dedup and zstd)\n",
         le.written, le.n, 100.0 * (double)le.written / (double)le.n,
         (double)le.written_bytes / 1024, (double)o / dt / 1e6, (double)len / 1048576.0,
         (double)(disk + le.written_bytes) / 1048576.0,
         (double)(2 * len) / (double)(disk + le.written_bytes));
  blocks_list_free(&le);
  blocks_close(bs);
  free(ed);

  /* chunking parameters, on 8 MiB of random data */
  printf("\nchunking parameters (8 MiB random, 7 bytes inserted at 100 KiB):\n");
  size_t plen = 8u << 20;
  uint8_t *r = malloc(plen);
  for (size_t i = 0; i < plen; i += 8) {
    uint64_t v = next_rand();
    memcpy(r + i, &v, 8);
  }
  param_run(r, plen, 4 << 10, 16 << 10, 64 << 10);
  param_run(r, plen, 8 << 10, 32 << 10, 128 << 10);
  param_run(r, plen, 16 << 10, 64 << 10, 256 << 10);
  param_run(r, plen, 32 << 10, 128 << 10, 512 << 10);
  printf("  (an entry lists up to %d block hashes inline: files up to ~%d MiB at the format's mean)\n",
         (int)(1059 / HASH_SIZE), (int)(1059 / HASH_SIZE * 75 / 1024));
  free(r);
  free(data);
  rm_rf(root);
  return 0;
}
