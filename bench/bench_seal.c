/*
 * The seal of a large staged file: content_blocks_update() with the base's
 * block list (incremental: only the changed regions are cut again) against
 * the full cut of the same bytes (the anchor), as a ratio in one run.
 *
 *   bench_seal [-s MiB] [-w WRITES] [-b BYTES] [-r ROUNDS] [-p] [-d DIR]
 *
 * The file is written as bench_nfs writes its big file: -s MiB of 64 KiB
 * blocks (each the same random buffer, its first 16 bytes made unique), cut
 * into a base list; with -p, first also the bench's earlier phases
 * (sequential 4 KiB writes, then 7680 random 4 KiB ones, each cut again), so
 * that most base blocks change. Then WRITES random writes of BYTES (default
 * 960 x 64 KiB, the bench's "rand write 64K"), recorded as the staging area
 * records them (sorted, merged ranges). Each round times both cuts, each in
 * its own block store prepared identically (the same blocks already stored),
 * alternating which goes first; medians of the wall and CPU times (all
 * threads: the cuts run on every core) and their ratio. Which path the
 * incremental call takes (it falls back to the full cut when most of the
 * file changed) is content.c's business: the ratio is what a COMMIT sees.
 *
 * Profiling only the timed cuts (not the preparation): with BENCH_PERF_CTL
 * and BENCH_PERF_ACK naming perf's control and ack fifos, the bench enables
 * perf's events around each timed cut and disables them after:
 *   mkfifo /tmp/ctl /tmp/ack
 *   BENCH_PERF_CTL=/tmp/ctl BENCH_PERF_ACK=/tmp/ack perf record -D -1 \
 *     --control fifo:/tmp/ctl,/tmp/ack --call-graph dwarf bench_seal -r 3
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/blocks.h"
#include "store/content.h"
#include "store/error.h"
#include "bench/bench_util.h"

#define MAX_ROUNDS 15

/* Sends CMD ("enable"/"disable") to perf's control fifo and waits for its
 * ack, when the environment names them (see the top comment). */
static void perf_ctl(const char *cmd)
{
  static int ctl = -2, ack = -1;
  if (ctl == -2) {
    const char *c = getenv("BENCH_PERF_CTL"), *a = getenv("BENCH_PERF_ACK");
    ctl = c && a ? open(c, O_WRONLY) : -1;
    ack = ctl >= 0 ? open(a, O_RDONLY) : -1;
  }
  if (ctl < 0 || ack < 0)
    return;
  char buf[16];
  size_t n = strlen(cmd);
  if (write(ctl, cmd, n) != (ssize_t)n || write(ctl, "\n", 1) != 1 || read(ack, buf, sizeof buf) <= 0)
    fprintf(stderr, "bench_seal: perf control: %s\n", strerror(errno));
}

static uint64_t rng_state;
static uint64_t rng(void)
{
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static int cmp_range(const void *a, const void *b)
{
  const struct content_range *x = a, *y = b;
  return x->off < y->off ? -1 : x->off > y->off;
}

static void die(const char *what, int err)
{
  fprintf(stderr, "bench_seal: %s: %s\n", what, err < 0 ? bfs_strerror(err) : strerror(errno));
  exit(1);
}

/* Writes LEN bytes of the bench's pattern at OFF (write number J of phase K). */
static void put(int fd, uint8_t *buf, size_t len, uint64_t off, uint64_t j, uint64_t k)
{
  memcpy(buf, &j, sizeof j);
  memcpy(buf + 8, &k, sizeof k);
  if (pwrite(fd, buf, len, (off_t)off) != (ssize_t)len)
    die("pwrite", 0);
}

/* The staged file in DIR/f and its base list in BS (the state before the writes). */
static int prepare(const char *dir, struct blocks **bs, struct blocks_list *base, uint64_t size,
                   uint8_t *buf, int phases)
{
  char path[4096];
  snprintf(path, sizeof path, "rm -rf %s; mkdir -p %s", dir, dir);
  if (system(path) != 0)
    die("mkdir", 0);
  snprintf(path, sizeof path, "%s/blocks", dir);
  int err = blocks_open(path, BLOCKS_CREATE, bs);
  if (err)
    die("blocks_open", err);
  snprintf(path, sizeof path, "%s/f", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0)
    die("open", 0);
  for (uint64_t j = 0; j < size / 65536; j++)
    put(fd, buf, 65536, j * 65536, j, 0);
  struct blocks_list l;
  if ((err = content_blocks_update(*bs, fd, size, NULL, &l)))
    die("cut", err);
  if (phases) {
    for (uint64_t j = 0; j < size / 4096; j++)
      put(fd, buf, 4096, j * 4096, j, 2);
    blocks_list_free(&l);
    if ((err = content_blocks_update(*bs, fd, size, NULL, &l)))
      die("cut", err);
    rng_state = 0x1234567;
    for (uint64_t j = 0; j < 7680; j++)
      put(fd, buf, 4096, (rng() % (size / 4096)) * 4096, j, 4);
    blocks_list_free(&l);
    if ((err = content_blocks_update(*bs, fd, size, NULL, &l)))
      die("cut", err);
  }
  if ((err = blocks_sync(*bs)))
    die("sync", err);
  *base = l;
  return fd;
}

int main(int argc, char **argv)
{
  uint64_t mib = 120, writes = 960, bytes = 65536;
  int rounds = 3, phases = 0, opt;
  const char *top = "/var/tmp";
  while ((opt = getopt(argc, argv, "s:w:b:r:pd:")) != -1) {
    switch (opt) {
    case 's': mib = strtoull(optarg, NULL, 10); break;
    case 'w': writes = strtoull(optarg, NULL, 10); break;
    case 'b': bytes = strtoull(optarg, NULL, 10); break;
    case 'r': rounds = atoi(optarg); break;
    case 'p': phases = 1; break;
    case 'd': top = optarg; break;
    default:
      fprintf(stderr, "usage: bench_seal [-s MiB] [-w WRITES] [-b BYTES] [-r ROUNDS] [-p] [-d DIR]\n");
      return 2;
    }
  }
  uint64_t size = mib << 20;
  if (mib == 0 || bytes == 0 || bytes > 65536 || bytes > size || rounds < 1 || rounds > MAX_ROUNDS) {
    fprintf(stderr, "bench_seal: need -s >= 1, 1 <= -b <= 65536 and <= the file, 1 <= -r <= %d\n", MAX_ROUNDS);
    return 2;
  }
  uint8_t *buf = malloc(65536);
  struct content_range *ranges = calloc(writes ? writes : 1, sizeof *ranges);
  if (!buf || !ranges)
    die("malloc", -ENOMEM);
  uint64_t x = 99 * 0x9E3779B97F4A7C15ull + 1; /* bench_nfs's fill() */
  for (size_t i = 0; i < 65536; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    memcpy(buf + i, &x, 8);
  }
  printf("bench_seal: %llu MiB file, %llu random writes of %llu bytes%s, %d rounds\n",
         (unsigned long long)mib, (unsigned long long)writes, (unsigned long long)bytes,
         phases ? " after the bench's 4 KiB phases" : "", rounds);
  double wall[2][MAX_ROUNDS], cpus[2][MAX_ROUNDS];
  size_t nranges = 0, nblocks = 0, written[2] = {0, 0};
  for (int round = 0; round < rounds; round++) {
    struct blocks *bs[2];
    struct blocks_list base[2];
    int fd[2];
    char dir[2][4096];
    for (int side = 0; side < 2; side++) {
      snprintf(dir[side], sizeof dir[side], "%s/bench_seal.%d.%d", top, (int)getpid(), side);
      fd[side] = prepare(dir[side], &bs[side], &base[side], size, buf, phases);
      rng_state = 0x1234567 + (uint64_t)round;
      nranges = 0;
      for (uint64_t j = 0; j < writes; j++) {
        uint64_t off = (rng() % (size / bytes)) * bytes;
        put(fd[side], buf, (size_t)bytes, off, j, 6);
        ranges[nranges++] = (struct content_range){off, off + bytes};
      }
    }
    /* What server/stage.c keeps: sorted, touching ranges merged. */
    qsort(ranges, nranges, sizeof *ranges, cmp_range);
    size_t m = 0;
    for (size_t i = 0; i < nranges; i++) {
      if (m > 0 && ranges[i].off <= ranges[m - 1].end) {
        if (ranges[i].end > ranges[m - 1].end)
          ranges[m - 1].end = ranges[i].end;
      } else {
        ranges[m++] = ranges[i];
      }
    }
    nranges = m;
    for (int k = 0; k < 2; k++) {
      int side = (k + round) % 2; /* 0: incremental, 1: full cut; alternating first */
      struct content_base cb = {&base[side], ranges, nranges, size};
      struct blocks_list out;
      perf_ctl("enable");
      double c0 = bench_cpu(), t0 = bench_now();
      int err = content_blocks_update(bs[side], fd[side], size, side == 0 ? &cb : NULL, &out);
      if (!err)
        err = blocks_sync(bs[side]);
      wall[side][round] = bench_now() - t0;
      perf_ctl("disable");
      cpus[side][round] = bench_cpu() - c0;
      if (err)
        die("seal", err);
      nblocks = out.n;
      written[side] = out.written;
      blocks_list_free(&out);
    }
    for (int side = 0; side < 2; side++) {
      blocks_list_free(&base[side]);
      blocks_close(bs[side]);
      close(fd[side]);
      char cmd[4200];
      snprintf(cmd, sizeof cmd, "rm -rf %s", dir[side]);
      if (system(cmd) != 0)
        fprintf(stderr, "bench_seal: could not remove %s\n", dir[side]);
    }
    printf("round %d: incremental %.1f ms (cpu %.1f), full cut %.1f ms (cpu %.1f)\n", round,
           wall[0][round] * 1e3, cpus[0][round] * 1e3, wall[1][round] * 1e3, cpus[1][round] * 1e3);
  }
  printf("%zu written ranges, %zu blocks, new blocks stored: incremental %zu, full cut %zu\n", nranges,
         nblocks, written[0], written[1]);
  double wi = bench_median(wall[0], rounds), wf = bench_median(wall[1], rounds);
  double ci = bench_median(cpus[0], rounds), cf = bench_median(cpus[1], rounds);
  printf("seal incremental   %.1f ms wall, %.1f ms cpu (medians)\n", wi * 1e3, ci * 1e3);
  printf("full cut (anchor)  %.1f ms wall, %.1f ms cpu\n", wf * 1e3, cf * 1e3);
  printf("RATIO full / incremental = %.2f wall, %.2f cpu (above 1: the seal is faster)\n", wf / wi, cf / ci);
  free(buf);
  free(ranges);
  return 0;
}
