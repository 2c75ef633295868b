/*
 * The CPU parts of sealing a file, each alone on one core, in MB/s:
 *   - SHA-256 of the chunks the store cuts: mbedTLS (the anchor), the fast
 *     path one chunk at a time, and 8 at a time (sha256_bufs(), as the
 *     write path hashes);
 *   - the chunker (chunker_feed) over random bytes, and bytes per cycle
 *     from the TSC-free figure GHZ given with -g;
 *   - zstd at the block store's levels on random data (incompressible),
 *     on the NFS bench's pattern and on text (/usr/share/doc), with the
 *     compression ratio and what a block stored raw costs instead.
 *
 *   bench_hash [-s MiB] [-r ROUNDS] [-g GHZ] [-t TEXTDIR]
 *
 * Each figure is the best of ROUNDS passes (default 5) over -s MiB (default
 * 64): on a shared machine the best pass is the one least disturbed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "store/chunk.h"
#include "store/hash.h"
#include "store/sha256.h"
#include "bench/bench_util.h"

#define BLK (64u << 10)

static uint64_t rng = 0x1234567;
static uint64_t next_rand(void)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static int rounds = 5;
static volatile uint8_t sink;

static void report(const char *what, size_t bytes, double best)
{
  printf("%-34s %8.0f MB/s\n", what, (double)bytes / best / 1e6);
}

/* The chunks of the random buffer, as the store cuts it. */
static size_t *ends, nchunks;

/* One chunk at a time with FN. */
static double sha_each(void (*fn)(const void *, size_t, hash_t *), const uint8_t *b)
{
  hash_t h;
  double t = bench_now();
  for (size_t i = 0, off = 0; i < nchunks; off = ends[i++]) {
    fn(b + off, ends[i] - off, &h);
    sink ^= h.bytes[0];
  }
  return bench_now() - t;
}

static double sha_mbedtls(const uint8_t *b, size_t len)
{
  (void)len;
  return sha_each(sha256_mbedtls, b);
}

static double sha_one(const uint8_t *b, size_t len)
{
  (void)len;
  return sha_each(sha256_buf, b);
}

/* As the write path hashes: up to 8 chunks at a time. */
static double sha_many(const uint8_t *b, size_t len)
{
  (void)len;
  double t = bench_now();
  for (size_t i = 0; i < nchunks; i += 8) {
    const void *d[8];
    size_t l[8], n = nchunks - i < 8 ? nchunks - i : 8;
    hash_t h[8];
    for (size_t k = 0; k < n; k++) {
      size_t off = i + k ? ends[i + k - 1] : 0;
      d[k] = b + off;
      l[k] = ends[i + k] - off;
    }
    sha256_bufs(n, d, l, h);
    sink ^= h[0].bytes[0];
  }
  return bench_now() - t;
}

static size_t chunks_seen;
static double chunk_all(const uint8_t *b, size_t len)
{
  struct chunker c;
  chunker_init(&c);
  size_t off = 0, n = 0;
  double t = bench_now();
  while (off < len) {
    bool cut;
    off += chunker_feed(&c, b + off, len - off, &cut);
    n += cut;
  }
  t = bench_now() - t;
  chunks_seen = n;
  return t;
}

static double best_of(double (*fn)(const uint8_t *, size_t), const uint8_t *b, size_t len)
{
  double best = 1e9;
  for (int r = 0; r < rounds; r++) {
    double t = fn(b, len);
    if (t < best)
      best = t;
  }
  return best;
}

/* zstd on 64 KiB blocks of B at LEVEL: MB/s of input and the ratio. */
static void zstd_run(const char *name, const uint8_t *b, size_t len, int level)
{
  ZSTD_CCtx *c = ZSTD_createCCtx();
  size_t cap = ZSTD_compressBound(BLK);
  uint8_t *z = malloc(cap);
  if (!c || !z) {
    fprintf(stderr, "bench_hash: out of memory\n");
    exit(1);
  }
  double best = 1e9;
  size_t out = 0, raw = 0;
  for (int r = 0; r < rounds; r++) {
    out = raw = 0;
    double t = bench_now();
    for (size_t off = 0; off + BLK <= len; off += BLK) {
      size_t zn = ZSTD_compressCCtx(c, z, cap, b + off, BLK, level);
      if (ZSTD_isError(zn) || zn >= BLK - BLK / 32)
        raw++, zn = BLK; /* stored raw */
      out += zn;
    }
    t = bench_now() - t;
    if (t < best)
      best = t;
  }
  char what[96];
  snprintf(what, sizeof what, "zstd %d, %s", level, name);
  printf("%-34s %8.0f MB/s  ratio %.2f  raw blocks %zu of %zu\n", what,
         (double)(len / BLK * BLK) / best / 1e6, (double)(len / BLK * BLK) / (double)out, raw,
         len / BLK);
  free(z);
  ZSTD_freeCCtx(c);
}

/* Up to LEN bytes of the regular files under DIR (text from the docs). */
static size_t load_text(const char *dir, uint8_t *b, size_t len, size_t have, int depth)
{
  DIR *d = opendir(dir);
  if (!d || depth > 6) {
    if (d)
      closedir(d);
    return have;
  }
  struct dirent *e;
  while (have < len && (e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(path, &st) < 0)
      continue;
    if (S_ISDIR(st.st_mode)) {
      have = load_text(path, b, len, have, depth + 1);
    } else if (S_ISREG(st.st_mode) && !strstr(e->d_name, ".gz")) {
      int fd = open(path, O_RDONLY);
      if (fd < 0)
        continue;
      ssize_t r;
      while (have < len && (r = read(fd, b + have, len - have)) > 0)
        have += (size_t)r;
      close(fd);
    }
  }
  closedir(d);
  return have;
}

int main(int argc, char **argv)
{
  size_t mib = 64;
  double ghz = 0;
  const char *text = "/usr/share/doc";
  int opt;
  while ((opt = getopt(argc, argv, "s:r:g:t:")) != -1) {
    switch (opt) {
    case 's': mib = strtoull(optarg, NULL, 10); break;
    case 'r': rounds = atoi(optarg); break;
    case 'g': ghz = atof(optarg); break;
    case 't': text = optarg; break;
    default:
      fprintf(stderr, "usage: bench_hash [-s MiB] [-r ROUNDS] [-g GHZ] [-t TEXTDIR]\n");
      return 2;
    }
  }
  if (mib < 1 || rounds < 1) {
    fprintf(stderr, "bench_hash: need -s >= 1 and -r >= 1\n");
    return 2;
  }
  size_t len = mib << 20;
  uint8_t *b = malloc(len), *t = malloc(len), *pat = malloc(len);
  if (!b || !t || !pat) {
    fprintf(stderr, "bench_hash: out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < len; i += 8) {
    uint64_t x = next_rand();
    memcpy(b + i, &x, 8);
  }
  /* The NFS bench's file after its 4 KiB phases: one 4 KiB random buffer
   * again and again, its first 16 bytes unique. */
  for (size_t i = 0; i < len; i += 4096) {
    memcpy(pat + i, b, 4096);
    memcpy(pat + i, &i, sizeof i);
  }
  size_t tlen = load_text(text, t, len, 0, 0);
  printf("bench_hash: %zu MiB, best of %d, SHA-NI %s\n", mib, rounds,
         sha256_accelerated() ? "on" : "off");

  ssize_t nc = chunk_split(b, len, &ends);
  if (nc < 0) {
    fprintf(stderr, "bench_hash: out of memory\n");
    return 1;
  }
  nchunks = (size_t)nc;
  double m = best_of(sha_mbedtls, b, len), one = best_of(sha_one, b, len),
         many = best_of(sha_many, b, len);
  printf("SHA-256 of the store's chunks of random bytes (%zu, %.0f KiB on average):\n", nchunks,
         (double)len / (double)nchunks / 1024);
  report("sha256 mbedTLS (anchor)", len, m);
  report("sha256 fast path, one at a time", len, one);
  report("sha256 fast path, 8 at a time", len, many);
  printf("RATIO 8 at a time / one at a time = %.2f, one / mbedTLS = %.2f\n", one / many, m / one);

  double c = best_of(chunk_all, b, len);
  report("chunker, random bytes", len, c);
  if (ghz > 0)
    printf("  %.2f bytes per cycle at %.2f GHz, %zu cuts\n", (double)len / c / (ghz * 1e9), ghz,
           chunks_seen);

  zstd_run("random", b, len, 1);
  zstd_run("bench pattern", pat, len, 1);
  if (tlen >= BLK) {
    char name[64];
    snprintf(name, sizeof name, "text (%zu MiB)", tlen >> 20);
    zstd_run(name, t, tlen, 1);
    zstd_run(name, t, tlen, 3);
    zstd_run(name, t, tlen, -1);
  }
  free(b);
  free(t);
  free(pat);
  free(ends);
  return sink == 0x5a ? 0 : 0;
}
