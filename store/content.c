#include "store/content.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "store/chunk.h"
#include "store/error.h"

/*
 * Level 3 first; level 19 only to squeeze in a frame that missed the room by
 * less than 2x, for inputs up to 64 KiB (measured here on config text: 64 KiB at -19 takes ~80 ms against
 * 0.3 ms at -3, and saves ~20%; 4 KiB takes 2.5 ms).
 */
#define LEVEL_FAST 3
#define LEVEL_TIGHT 19
#define TIGHT_MAX_INPUT (64u << 10)
/* The prefix compressed to decide whether a large input can fit at all. */
#define SAMPLE (128u << 10)
/* Decoder memory bound for hostile frames: base + content fit in 2^24. */
#define WINDOW_LOG_MAX 24

/* ---- compression helpers ---- */

static unsigned ceil_log2(size_t v)
{
  unsigned b = 0;
  while (b < 63 && ((size_t)1 << b) < v)
    b++;
  return b;
}

/* One compression context per thread, reset for each frame: creating one
 * costs more than compressing a 4 KiB file (a seal tries up to four frames).
 * Not blocks.c's per-thread context: sharing it corrupted memory in the
 * tests (a seal's frame and a block store on one thread), so each module
 * keeps its own. */
static pthread_key_t cctx_key;
static pthread_once_t cctx_once = PTHREAD_ONCE_INIT;

static void free_cctx(void *c) { ZSTD_freeCCtx(c); }
static void cctx_key_init(void) { pthread_key_create(&cctx_key, free_cctx); }

static ZSTD_CCtx *thread_cctx(void)
{
  pthread_once(&cctx_once, cctx_key_init);
  ZSTD_CCtx *c = pthread_getspecific(cctx_key);
  if (!c) {
    c = ZSTD_createCCtx();
    if (c && pthread_setspecific(cctx_key, c) != 0) {
      ZSTD_freeCCtx(c);
      c = NULL;
    }
  }
  if (c)
    ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
  return c;
}

/*
 * One frame of DATA (with PREFIX as a raw dictionary when not NULL) into a
 * malloc'd *OUT. Returns the frame size or a negative error.
 */
static ssize_t zframe(const void *data, size_t len, const void *prefix, size_t prefix_len,
                      int level, uint8_t **out)
{
  ZSTD_CCtx *c = thread_cctx();
  size_t cap = ZSTD_compressBound(len);
  uint8_t *buf = malloc(cap);
  ssize_t ret = -ENOMEM;
  if (!c || !buf)
    goto out;
  size_t r = ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
  if (!ZSTD_isError(r))
    r = ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
  /* A delta carries zstd's content checksum: decoding it against the wrong
   * base must fail, not produce plausible bytes. */
  if (!ZSTD_isError(r))
    r = ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, prefix ? 1 : 0);
  if (!ZSTD_isError(r))
    r = ZSTD_CCtx_setParameter(c, ZSTD_c_dictIDFlag, 0);
  if (prefix) {
    /* The window must span the whole base, or matches against its start
     * are lost. */
    unsigned wlog = ceil_log2(prefix_len + len);
    if (wlog < 10)
      wlog = 10;
    if (!ZSTD_isError(r))
      r = ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, (int)wlog);
    if (!ZSTD_isError(r))
      r = ZSTD_CCtx_refPrefix(c, prefix, prefix_len);
  }
  if (!ZSTD_isError(r))
    r = ZSTD_compress2(c, buf, cap, data, len);
  if (ZSTD_isError(r)) {
    ret = -BFS_EFORMAT;
    goto out;
  }
  *out = buf;
  buf = NULL;
  ret = (ssize_t)r;
out:
  free(buf);
  return ret;
}

/* Decodes one frame that must declare and produce exactly SIZE bytes. */
static int zdecode(const uint8_t *bytes, size_t len, uint64_t size, const void *prefix,
                   size_t prefix_len, uint8_t **out)
{
  if (size == 0 || size > CONTENT_EMBED_MAX)
    return -BFS_EFORMAT;
  unsigned long long fcs = ZSTD_getFrameContentSize(bytes, len);
  size_t fsize = ZSTD_findFrameCompressedSize(bytes, len);
  if (fcs != size || ZSTD_isError(fsize) || fsize != len)
    return -BFS_EFORMAT;
  /* RFC 8878: magic 0xFD2FB528 (a regular frame, not a skippable one), then
   * the frame header descriptor, whose bit 2 is the content checksum flag. */
  if (len < 5 || bytes[0] != 0x28 || bytes[1] != 0xB5 || bytes[2] != 0x2F || bytes[3] != 0xFD)
    return -BFS_EFORMAT;
  if (prefix && !(bytes[4] & 0x04))
    return -BFS_EFORMAT; /* the format requires it of deltas */
  uint8_t *buf = malloc((size_t)size);
  ZSTD_DCtx *d = ZSTD_createDCtx();
  int err = -ENOMEM;
  if (!buf || !d)
    goto out;
  size_t r = ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, WINDOW_LOG_MAX);
  if (!ZSTD_isError(r) && prefix)
    r = ZSTD_DCtx_refPrefix(d, prefix, prefix_len);
  if (!ZSTD_isError(r))
    r = ZSTD_decompressDCtx(d, buf, (size_t)size, bytes, len);
  if (ZSTD_isError(r) || r != size) {
    err = ZSTD_isError(r) && ZSTD_getErrorCode(r) == ZSTD_error_checksum_wrong ? -BFS_ECHECKSUM
                                                                               : -BFS_EFORMAT;
    goto out;
  }
  *out = buf;
  buf = NULL;
  err = 0;
out:
  free(buf);
  ZSTD_freeDCtx(d);
  return err;
}

/* ---- encoding ---- */

static int encode_blocks(struct blocks *bs, struct blocks_list *l, size_t avail, uint8_t *kind,
                         uint8_t *out, size_t *out_len)
{
  if (l->n == 0)
    return -EINVAL;
  if (l->n <= avail / HASH_SIZE) {
    for (size_t i = 0; i < l->n; i++)
      memcpy(out + i * HASH_SIZE, l->hash[i].bytes, HASH_SIZE);
    *kind = ENTRY_CONTENT_BLOCKS;
    *out_len = l->n * HASH_SIZE;
    return 0;
  }
  if (l->n > BLOCKS_MAX_SIZE / HASH_SIZE)
    return -BFS_ETOOBIG;
  uint8_t *list = malloc(l->n * HASH_SIZE);
  if (!list)
    return -ENOMEM;
  for (size_t i = 0; i < l->n; i++)
    memcpy(list + i * HASH_SIZE, l->hash[i].bytes, HASH_SIZE);
  hash_t h;
  int err = blocks_put(bs, list, l->n * HASH_SIZE, &h);
  free(list);
  if (err < 0)
    return err;
  memcpy(out, h.bytes, HASH_SIZE);
  *kind = ENTRY_CONTENT_BLOCKLIST;
  *out_len = HASH_SIZE;
  return 0;
}

/* A frame at the fast level, retried at the tight one when it almost fits. */
static ssize_t zframe_fit(const void *data, size_t len, const void *prefix, size_t prefix_len,
                          size_t avail, uint8_t **out)
{
  ssize_t n = zframe(data, len, prefix, prefix_len, LEVEL_FAST, out);
  if (n < 0 || (size_t)n <= avail || (size_t)n > 2 * avail || len > TIGHT_MAX_INPUT)
    return n;
  uint8_t *t;
  ssize_t m = zframe(data, len, prefix, prefix_len, LEVEL_TIGHT, &t);
  if (m < 0 || m >= n) {
    if (m >= 0)
      free(t);
    return n;
  }
  free(*out);
  *out = t;
  return m;
}

/* The embedded forms; 1 if one fits, 0 if none does. */
static int encode_embedded(const void *data, size_t len, const void *prev, size_t prev_len,
                           size_t avail, uint8_t *kind, uint8_t *out, size_t *out_len)
{
  size_t best = SIZE_MAX;
  if (len <= avail) {
    best = len;
    *kind = ENTRY_CONTENT_INLINE;
    memcpy(out, data, len);
  }
  if (len > CONTENT_EMBED_MAX)
    return best != SIZE_MAX;
  uint8_t *z = NULL;
  ssize_t zn;
  if (len > 2 * SAMPLE) {
    /* Compressing megabytes to learn they do not fit is waste: a prefix
     * that already does not fit says so (a heuristic; a miss only means
     * blocks instead of an embedded form). */
    zn = zframe(data, SAMPLE, NULL, 0, LEVEL_FAST, &z);
    free(z);
    z = NULL;
    if (zn < 0)
      return (int)zn;
    if ((size_t)zn > avail)
      goto delta;
  }
  zn = zframe_fit(data, len, NULL, 0, avail, &z);
  if (zn < 0)
    return (int)zn;
  if ((size_t)zn <= avail && (size_t)zn < best) {
    best = (size_t)zn;
    *kind = ENTRY_CONTENT_ZSTD;
    memcpy(out, z, best);
  }
  free(z);
delta:
  if (prev && prev_len > 0 && prev_len <= CONTENT_EMBED_MAX) {
    zn = zframe_fit(data, len, prev, prev_len, avail, &z);
    if (zn < 0)
      return (int)zn;
    if ((size_t)zn <= avail && (size_t)zn < best) {
      best = (size_t)zn;
      *kind = ENTRY_CONTENT_DELTA;
      memcpy(out, z, best);
    }
    free(z);
  }
  if (best == SIZE_MAX)
    return 0;
  *out_len = best;
  return 1;
}

/* content_encode(); LIST (or NULL) receives the block list of a block form. */
static int encode_buf(struct blocks *bs, const void *data, size_t len, const void *prev,
                      size_t prev_len, size_t avail, uint8_t *kind, uint8_t *out, size_t *out_len,
                      struct blocks_list *list)
{
  if (avail > ENTRY_CONTENT_MAX)
    avail = ENTRY_CONTENT_MAX;
  if (len == 0) {
    *kind = ENTRY_CONTENT_NONE;
    *out_len = 0;
    return 0;
  }
  int r = encode_embedded(data, len, prev, prev_len, avail, kind, out, out_len);
  if (r != 0)
    return r < 0 ? r : 0;
  if (!bs || avail < HASH_SIZE)
    return -BFS_ETOOBIG;
  struct blocks_list l;
  int err = blocks_write_buf(bs, data, len, &l);
  if (err)
    return err;
  err = encode_blocks(bs, &l, avail, kind, out, out_len);
  if (!err && list)
    *list = l;
  else
    blocks_list_free(&l);
  return err;
}

int content_encode(struct blocks *bs, const void *data, size_t len, const void *prev,
                   size_t prev_len, size_t avail, uint8_t *kind, uint8_t *out, size_t *out_len)
{
  return encode_buf(bs, data, len, prev, prev_len, avail, kind, out, out_len, NULL);
}

int content_encode_fd(struct blocks *bs, int fd, const void *prev, size_t prev_len, size_t avail,
                      uint8_t *kind, uint8_t *out, size_t *out_len, uint64_t *size)
{
  if (avail > ENTRY_CONTENT_MAX)
    avail = ENTRY_CONTENT_MAX;
  /* Read up to one byte past the embedded limit to learn which side we are on. */
  size_t cap = CONTENT_EMBED_MAX + 1, got = 0;
  uint8_t *buf = malloc(cap);
  if (!buf)
    return -ENOMEM;
  int err = 0;
  while (got < cap) {
    ssize_t r = pread(fd, buf + got, cap - got, (off_t)got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      err = -errno;
      break;
    }
    if (r == 0)
      break;
    got += (size_t)r;
  }
  if (!err && got <= CONTENT_EMBED_MAX) {
    err = content_encode(bs, buf, got, prev, prev_len, avail, kind, out, out_len);
    if (!err)
      *size = got;
    free(buf);
    return err;
  }
  free(buf);
  if (err)
    return err;
  if (!bs || avail < HASH_SIZE)
    return -BFS_ETOOBIG;
  if (lseek(fd, 0, SEEK_SET) < 0)
    return -errno;
  struct blocks_list l;
  err = blocks_write_fd(bs, fd, &l);
  if (err)
    return err;
  err = encode_blocks(bs, &l, avail, kind, out, out_len);
  if (!err)
    *size = l.total;
  blocks_list_free(&l);
  return err;
}

/* Exactly LEN bytes of FD at OFF; -EIO if the file ends before. */
static int read_exact(int fd, uint8_t *buf, size_t len, uint64_t off)
{
  size_t got = 0;
  while (got < len) {
    ssize_t r = pread(fd, buf + got, len - got, (off_t)(off + got));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -errno;
    if (r == 0)
      return -EIO;
    got += (size_t)r;
  }
  return 0;
}

/* ---- incremental block lists ---- */

struct update {
  struct blocks *bs;
  const uint8_t *map; /* the file, mapped */
  uint64_t size;
  const struct content_base *base;
  uint64_t *o; /* n + 1 offsets of the base's blocks */
  size_t n;
  bool *keep; /* per base block: reusable (block_reusable(), asked once) */
  struct blocks_list *out;
  /* Where update_list() cuts regions again, ascending (none: NULL, 0). */
  const uint64_t *starts;
  size_t nstarts;
};

/* Whether every byte of [A, E) is still the base's (and exists). */
static bool range_clean(const struct update *u, uint64_t a, uint64_t e)
{
  const struct content_base *b = u->base;
  if (e > b->clean_end || e > u->size)
    return false;
  /* The first written range ending after A. */
  size_t lo = 0, hi = b->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (b->ranges[mid].end <= a)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo == b->n || b->ranges[lo].off >= e;
}

/*
 * Whether base block I can stand for the bytes at its offsets: they are
 * unchanged, so a chunker started at its start (a cut) cuts at its end again
 * (a cut depends only on the chunk's own bytes), unless its end was the
 * base's end of file and the file now goes on.
 */
static bool block_reusable(const struct update *u, size_t i)
{
  return range_clean(u, u->o[i], u->o[i + 1]) && (i + 1 < u->n || u->size == u->o[u->n]);
}

static bool reusable(const struct update *u, size_t i) { return u->keep[i]; }

/* One block of the new list: a base block kept (BASE >= 0) or new bytes. */
struct piece {
  uint64_t off;
  uint32_t len;
  int64_t base;
};

static int add_piece(struct piece **p, size_t *n, size_t *cap, uint64_t off, uint64_t len,
                     int64_t base)
{
  if (*n == *cap) {
    size_t ncap = *cap ? 2 * *cap : 64;
    struct piece *np = realloc(*p, ncap * sizeof *np);
    if (!np)
      return -ENOMEM;
    *p = np;
    *cap = ncap;
  }
  (*p)[(*n)++] = (struct piece){off, (uint32_t)len, base};
  return 0;
}

/*
 * Cuts the file again from *POS (a cut of the new list) until a cut falls
 * on the start of a reusable base block (from there on both lists agree),
 * on the start of a later region of update_list() (a chunker starts afresh
 * after every cut, so from there on the cuts are that region's, cut from
 * its start) or the file ends; *POS becomes that cut. *I is the first base
 * block not before *POS. Only cuts: the new blocks are stored afterwards,
 * in parallel. Gives up (returns 1) as soon as STOP (or NULL) is set.
 */
static int recut(struct update *u, uint64_t *pos, size_t *i, struct piece **p, size_t *n,
                 size_t *cap, atomic_bool *stop)
{
  struct chunker c;
  chunker_init(&c);
  uint64_t start = *pos, at = *pos;
  size_t lo = 0, hi = u->nstarts; /* the first region start after *POS */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (u->starts[mid] <= start)
      lo = mid + 1;
    else
      hi = mid;
  }
  size_t next = lo;
  while (at < u->size) {
    bool cut;
    size_t left = u->size - at > SIZE_MAX ? SIZE_MAX : (size_t)(u->size - at);
    at += chunker_feed(&c, u->map + at, left, &cut);
    if (!cut && at < u->size)
      continue;
    int err = add_piece(p, n, cap, start, at - start, -1);
    if (err)
      return err;
    start = at;
    while (*i < u->n && u->o[*i] < at)
      (*i)++;
    if (at == u->size || (*i < u->n && u->o[*i] == at && reusable(u, *i)))
      break;
    while (next < u->nstarts && u->starts[next] < at)
      next++;
    if (next < u->nstarts && u->starts[next] == at)
      break;
    if (stop && atomic_load_explicit(stop, memory_order_relaxed))
      return 1;
  }
  *pos = at;
  return 0;
}

/*
 * A stretch of the file cut again from START, where the walk of
 * update_list() may have to cut again, until recut() stops (END).
 */
struct region {
  uint64_t start, end;
  size_t first; /* the first base block not before START */
  struct piece *p;
  size_t n, cap;
  int err;
  bool done;          /* cut (not abandoned) */
  atomic_bool unused; /* an earlier region ran past START: never needed */
};

struct region_job {
  struct update *u;
  struct region *r;
  size_t nr;
  atomic_size_t next;
};

/* Every thread takes the next region nobody has taken and cuts it. A
 * region that ends past the starts of later ones marks them unused: the
 * walk jumps over them, so whoever cuts them gives up. */
static void *cut_regions(void *arg)
{
  struct region_job *j = arg;
  for (;;) {
    size_t k = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
    if (k >= j->nr)
      return NULL;
    struct region *r = &j->r[k];
    uint64_t pos = r->start;
    size_t i = r->first;
    int rc = recut(j->u, &pos, &i, &r->p, &r->n, &r->cap, &r->unused);
    r->end = pos;
    r->err = rc < 0 ? rc : 0;
    r->done = rc == 0;
    for (size_t m = k + 1; r->done && m < j->nr && j->r[m].start < r->end; m++)
      atomic_store_explicit(&j->r[m].unused, true, memory_order_relaxed);
  }
}

/* Storing the new blocks: every thread takes the next few new pieces
 * (blocks hash faster together than one after the other: store/sha256.h). */
#define PIECES_TAKE 8

struct store_job {
  struct update *u;
  struct piece *p;
  const size_t *fresh; /* indexes of the new pieces */
  size_t n;            /* of them */
  hash_t *hash;        /* per piece */
  atomic_size_t next;
  atomic_size_t written;
  atomic_int err;
};

static void *store_pieces(void *arg)
{
  struct store_job *j = arg;
  for (;;) {
    size_t k = atomic_fetch_add_explicit(&j->next, PIECES_TAKE, memory_order_relaxed);
    if (k >= j->n || atomic_load_explicit(&j->err, memory_order_relaxed))
      return NULL;
    size_t m = j->n - k < PIECES_TAKE ? j->n - k : PIECES_TAKE;
    const void *data[PIECES_TAKE];
    size_t len[PIECES_TAKE];
    hash_t h[PIECES_TAKE];
    for (size_t q = 0; q < m; q++) {
      const struct piece *pc = &j->p[j->fresh[k + q]];
      data[q] = j->u->map + pc->off;
      len[q] = pc->len;
    }
    int r = blocks_put_many(j->u->bs, m, data, len, h);
    if (r < 0) {
      atomic_store_explicit(&j->err, r, memory_order_relaxed);
      continue;
    }
    atomic_fetch_add_explicit(&j->written, (size_t)r, memory_order_relaxed);
    for (size_t q = 0; q < m; q++)
      j->hash[j->fresh[k + q]] = h[q];
  }
}

/* The threads worth using for NEW_BYTES of new blocks (hashing and
 * compressing run at ~100-300 MB/s per core). */
static int store_threads(uint64_t new_bytes)
{
  if (new_bytes < 4 * (uint64_t)CHUNK_MAX)
    return 1;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int t = cpus < 1 ? 1 : cpus > 4 ? 4 : (int)cpus;
  uint64_t by_size = new_bytes / (2 * (uint64_t)CHUNK_MAX);
  return by_size < (uint64_t)t ? (int)by_size : t;
}

/* Runs FN(ARG) on NTH threads, the caller's one of them. */
static void run_threads(int nth, void *(*fn)(void *), void *arg)
{
  pthread_t tid[4];
  int started = 0;
  for (int t = 1; t < nth && t < 4; t++)
    if (pthread_create(&tid[started], NULL, fn, arg) == 0)
      started++; /* a thread that cannot start leaves its share to the others */
  fn(arg);
  for (int t = 0; t < started; t++)
    pthread_join(tid[t], NULL);
}

/*
 * The incremental list (see content_blocks_update), in three steps.
 *  1. Cut. The walk below keeps each reusable base block that begins at a
 *     cut and cuts again from there on otherwise, until a cut lands on a
 *     reusable block's start. Every place where it cuts again is known
 *     beforehand: the start of each run of non-reusable base blocks (the
 *     block before it was kept, so its start is a cut; a file that grew
 *     has a last block that is not reusable, so its new end is in a run).
 *     So those regions are cut on every thread at once, each with a fresh
 *     chunker as the walk would start it; a region's cut that lands on the
 *     start of another region stops there (recut()), where that one goes on.
 *  2. Walk: serial and cheap, it assembles the pieces; a region it never
 *     reaches (an earlier one ran past it) is dropped, one it reaches that
 *     was abandoned is cut again here. The list is exactly the serial one.
 *  3. Store only the new pieces the list uses, on every thread at once: no
 *     block is written for a region that was cut in vain.
 */
/* Whether base block I starts a region to cut again. */
static bool region_start(const struct update *u, size_t i)
{
  return !reusable(u, i) && (i == 0 || reusable(u, i - 1));
}

static int update_list(struct update *u, const struct blocks_list *bl, uint64_t redo)
{
  size_t nr = 0;
  for (size_t i = 0; i < u->n; i++)
    nr += region_start(u, i);
  struct region *r = nr ? calloc(nr, sizeof *r) : NULL;
  if (nr && !r)
    return -ENOMEM;
  size_t k = 0;
  for (size_t i = 0; i < u->n; i++)
    if (region_start(u, i))
      r[k++] = (struct region){.start = u->o[i], .first = i};
  uint64_t *starts = nr ? malloc(nr * sizeof *starts) : NULL;
  if (nr && !starts) {
    free(r);
    return -ENOMEM;
  }
  for (k = 0; k < nr; k++) {
    atomic_init(&r[k].unused, false);
    starts[k] = r[k].start;
  }
  u->starts = starts;
  u->nstarts = nr;
  int nth = store_threads(redo);
  struct region_job rj = {.u = u, .r = r, .nr = nr};
  atomic_init(&rj.next, 0);
  if (nr)
    run_threads((size_t)nth > nr ? (int)nr : nth, cut_regions, &rj);

  struct piece *p = NULL;
  size_t n = 0, cap = 0;
  uint64_t pos = 0, new_bytes = 0;
  size_t i = 0;
  int err = 0;
  k = 0;
  while (!err && pos < u->size) {
    while (i < u->n && u->o[i] < pos)
      i++;
    if (i < u->n && u->o[i] == pos && reusable(u, i)) {
      err = add_piece(&p, &n, &cap, pos, bl->size[i], (int64_t)i);
      pos = u->o[i + 1];
      i++;
      continue;
    }
    while (k < nr && r[k].start < pos)
      k++;
    if (k < nr && r[k].start == pos && (r[k].done || r[k].err)) {
      err = r[k].err;
      for (size_t q = 0; q < r[k].n && !err; q++)
        err = add_piece(&p, &n, &cap, r[k].p[q].off, r[k].p[q].len, -1);
      pos = r[k].end;
    } else {
      err = recut(u, &pos, &i, &p, &n, &cap, NULL); /* abandoned, or not foreseen */
    }
  }
  for (k = 0; k < nr; k++)
    free(r[k].p);
  free(r);
  free(starts);
  u->starts = NULL;
  u->nstarts = 0;

  hash_t *hash = NULL;
  size_t *fresh = NULL, nfresh = 0;
  if (!err && n > 0 && (!(hash = malloc(n * sizeof *hash)) || !(fresh = malloc(n * sizeof *fresh))))
    err = -ENOMEM;
  for (size_t q = 0; q < n && !err; q++)
    if (p[q].base < 0) {
      new_bytes += p[q].len;
      fresh[nfresh++] = q;
    }
  if (!err) {
    struct store_job sj = {.u = u, .p = p, .fresh = fresh, .n = nfresh, .hash = hash};
    atomic_init(&sj.next, 0);
    atomic_init(&sj.written, 0);
    atomic_init(&sj.err, 0);
    run_threads(store_threads(new_bytes), store_pieces, &sj);
    err = atomic_load(&sj.err);
    u->out->written += atomic_load(&sj.written);
  }
  struct blocks_list *l = u->out;
  if (!err && n > 0) {
    l->hash = malloc(n * sizeof *l->hash);
    l->size = malloc(n * sizeof *l->size);
    if (!l->hash || !l->size)
      err = -ENOMEM;
  }
  for (size_t q = 0; q < n && !err; q++) {
    l->hash[q] = p[q].base >= 0 ? bl->hash[p[q].base] : hash[q];
    l->size[q] = p[q].len;
    l->total += p[q].len;
  }
  if (!err)
    l->n = n;
  free(hash);
  free(fresh);
  free(p);
  return err;
}

/* The file mapped read-only, SIZE bytes (checked: a shorter file would
 * fault on access). */
static int map_file(int fd, uint64_t size, const uint8_t **out)
{
  struct stat st;
  if (fstat(fd, &st) < 0)
    return -errno;
  if ((uint64_t)st.st_size < size)
    return -EIO; /* the file changed under us */
  if (size > SIZE_MAX)
    return -EFBIG;
  void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED)
    return -errno;
  *out = p;
  return 0;
}

int content_blocks_update(struct blocks *bs, int fd, uint64_t size, const struct content_base *base,
                          struct blocks_list *out)
{
  memset(out, 0, sizeof *out);
  const struct blocks_list *bl = base ? base->list : NULL;
  bool full = !bl || bl->n == 0;
  struct update u = {.bs = bs, .size = size, .base = base, .out = out};
  if (!full) {
    u.n = bl->n;
    u.o = malloc((u.n + 1) * sizeof *u.o);
    if (!u.o)
      return -ENOMEM;
    u.o[0] = 0;
    for (size_t i = 0; i < u.n; i++)
      u.o[i + 1] = u.o[i] + bl->size[i];
    for (size_t i = 1; i < base->n; i++)
      if (base->ranges[i].off < base->ranges[i - 1].end)
        full = true; /* not sorted and disjoint: trust nothing */
    if (u.o[u.n] != bl->total || base->clean_end > u.o[u.n])
      full = true;
  }
  uint64_t redo = 0;
  if (!full) {
    /* When most of the file must be cut again, the full cut (its chunking
     * overlaps the hashing) is as fast or faster: the regions then run into
     * each other. bench/bench_seal (120 MiB, the NFS bench's random 64 KiB
     * writes, 2 cores): 960 writes, half the file to cut again, 1.58x
     * faster than the full cut; 1500 writes (64%) 1.26x; after the bench's
     * random 4 KiB phase (90%) an incremental cut measured 0.8-1.0x. */
    if (!(u.keep = malloc(u.n * sizeof *u.keep))) {
      free(u.o);
      return -ENOMEM;
    }
    redo = size > u.o[u.n] ? size - u.o[u.n] : 0;
    for (size_t i = 0; i < u.n; i++)
      if (!(u.keep[i] = block_reusable(&u, i)))
        redo += bl->size[i];
    full = redo > size / 4 * 3;
  }
  /* Mapped, the bytes are hashed where the page cache holds them: no copy
   * of the file through read buffers. */
  int err = 0;
  if (size > 0 && (err = map_file(fd, size, &u.map)) < 0 && err != -EIO) {
    /* Cannot map (an odd filesystem): the read path, a full cut. */
    free(u.o);
    free(u.keep);
    if (lseek(fd, 0, SEEK_SET) < 0)
      return -errno;
    err = blocks_write_fd(bs, fd, out);
    if (!err && out->total != size) {
      blocks_list_free(out);
      err = -EIO; /* the file changed under us */
    }
    return err;
  }
  if (err == 0 && size == 0)
    full = true; /* blocks_write_buf of nothing: the empty list */
  if (err == 0 && full) {
    err = blocks_write_buf(bs, u.map, (size_t)size, out);
  } else if (err == 0) {
    err = update_list(&u, bl, redo);
    if (err)
      blocks_list_free(out);
  }
  if (u.map)
    munmap((void *)u.map, (size_t)size);
  free(u.o);
  free(u.keep);
  return err;
}

int content_encode_staged(struct blocks *bs, int fd, uint64_t size, const void *prev,
                          size_t prev_len, const struct content_base *base, size_t avail,
                          uint8_t *kind, uint8_t *out, size_t *out_len, struct blocks_list *list)
{
  if (list)
    memset(list, 0, sizeof *list);
  if (size <= CONTENT_EMBED_MAX) {
    uint8_t *buf = malloc(size ? (size_t)size : 1);
    if (!buf)
      return -ENOMEM;
    int err = read_exact(fd, buf, (size_t)size, 0);
    if (!err)
      err = encode_buf(bs, buf, (size_t)size, prev, prev_len, avail, kind, out, out_len, list);
    free(buf);
    return err;
  }
  if (avail > ENTRY_CONTENT_MAX)
    avail = ENTRY_CONTENT_MAX;
  if (!bs || avail < HASH_SIZE)
    return -BFS_ETOOBIG;
  struct blocks_list l;
  int err = content_blocks_update(bs, fd, size, base, &l);
  if (err)
    return err;
  err = encode_blocks(bs, &l, avail, kind, out, out_len);
  if (!err && list)
    *list = l;
  else
    blocks_list_free(&l);
  return err;
}

/* ---- reading ---- */

struct content_reader {
  struct blocks *bs;
  uint64_t size;
  uint8_t *flat; /* embedded kinds: the whole content */
  size_t n;
  hash_t *hash;
  uint64_t *off; /* n + 1 offsets: block i is [off[i], off[i+1]) */
  size_t cached; /* index of the block in cbuf, or SIZE_MAX */
  uint8_t *cbuf;
};

/* The hash list of a block form, malloc'd. */
static int load_list(struct blocks *bs, uint8_t kind, const uint8_t *bytes, size_t len,
                     hash_t **hashes, size_t *n)
{
  uint8_t *list = NULL;
  size_t llen = 0;
  if (kind == ENTRY_CONTENT_BLOCKS) {
    if (len == 0 || len % HASH_SIZE != 0)
      return -BFS_EFORMAT;
    list = malloc(len);
    if (!list)
      return -ENOMEM;
    memcpy(list, bytes, len);
    llen = len;
  } else {
    if (len != HASH_SIZE)
      return -BFS_EFORMAT;
    hash_t h;
    memcpy(h.bytes, bytes, HASH_SIZE);
    if (!bs)
      return -ENOENT;
    int err = blocks_get(bs, &h, &list, &llen);
    if (err)
      return err;
    if (llen == 0 || llen % HASH_SIZE != 0) {
      free(list);
      return -BFS_EFORMAT;
    }
  }
  /* hash_t is a plain 32-byte struct: the list is an array of them. */
  _Static_assert(sizeof(hash_t) == HASH_SIZE, "hash_t must be packed");
  *hashes = (hash_t *)list;
  *n = llen / HASH_SIZE;
  return 0;
}

int content_open(struct blocks *bs, uint8_t kind, const uint8_t *bytes, size_t len, uint64_t size,
                 const void *prev, size_t prev_len, struct content_reader **out)
{
  struct content_reader *r = calloc(1, sizeof *r);
  if (!r)
    return -ENOMEM;
  r->bs = bs;
  r->size = size;
  r->cached = SIZE_MAX;
  int err = 0;
  switch (kind) {
  case ENTRY_CONTENT_NONE:
    if (len != 0 || size != 0)
      err = -BFS_EFORMAT;
    break;
  case ENTRY_CONTENT_INLINE:
    if (len != size || size > CONTENT_EMBED_MAX) {
      err = -BFS_EFORMAT;
      break;
    }
    r->flat = malloc(len ? len : 1);
    if (!r->flat)
      err = -ENOMEM;
    else
      memcpy(r->flat, bytes, len);
    break;
  case ENTRY_CONTENT_ZSTD:
    err = zdecode(bytes, len, size, NULL, 0, &r->flat);
    break;
  case ENTRY_CONTENT_DELTA:
    if (!prev || prev_len > CONTENT_EMBED_MAX)
      err = -EINVAL;
    else
      err = zdecode(bytes, len, size, prev_len ? prev : "", prev_len, &r->flat);
    break;
  case ENTRY_CONTENT_BLOCKS:
  case ENTRY_CONTENT_BLOCKLIST:
    if (!bs) {
      err = -EINVAL;
      break;
    }
    err = load_list(bs, kind, bytes, len, &r->hash, &r->n);
    if (err)
      break;
    r->off = malloc((r->n + 1) * sizeof *r->off);
    if (!r->off) {
      err = -ENOMEM;
      break;
    }
    r->off[0] = 0;
    for (size_t i = 0; i < r->n && !err; i++) {
      uint32_t bl;
      err = blocks_size(bs, &r->hash[i], &bl);
      if (!err && bl == 0)
        err = -BFS_EFORMAT;
      r->off[i + 1] = r->off[i] + bl;
    }
    if (!err && r->off[r->n] != size)
      err = -BFS_EFORMAT;
    break;
  default:
    err = -BFS_EFORMAT;
  }
  if (err) {
    content_close(r);
    return err;
  }
  *out = r;
  return 0;
}

uint64_t content_reader_size(const struct content_reader *r)
{
  return r->size;
}

int content_reader_blocks(const struct content_reader *r, struct blocks_list *out)
{
  memset(out, 0, sizeof *out);
  if (r->flat || r->n == 0)
    return 0;
  out->hash = malloc(r->n * sizeof *out->hash);
  out->size = malloc(r->n * sizeof *out->size);
  if (!out->hash || !out->size) {
    blocks_list_free(out);
    return -ENOMEM;
  }
  memcpy(out->hash, r->hash, r->n * sizeof *out->hash);
  for (size_t i = 0; i < r->n; i++)
    out->size[i] = (uint32_t)(r->off[i + 1] - r->off[i]);
  out->n = r->n;
  out->total = r->off[r->n];
  return 0;
}

ssize_t content_read(struct content_reader *r, uint64_t off, void *buf, size_t len)
{
  if (off >= r->size)
    return 0;
  if (len > r->size - off)
    len = (size_t)(r->size - off);
  if (len > SSIZE_MAX)
    len = SSIZE_MAX;
  if (r->flat) {
    memcpy(buf, r->flat + off, len);
    return (ssize_t)len;
  }
  /* The block holding OFF: the last i with off[i] <= OFF. */
  size_t lo = 0, hi = r->n;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (r->off[mid] <= off)
      lo = mid;
    else
      hi = mid;
  }
  size_t done = 0;
  for (size_t i = lo; done < len && i < r->n; i++) {
    if (r->cached != i) {
      uint8_t *data;
      size_t dlen;
      int err = blocks_get(r->bs, &r->hash[i], &data, &dlen);
      if (err)
        return err;
      if (dlen != r->off[i + 1] - r->off[i]) {
        free(data);
        return -BFS_ECHECKSUM;
      }
      free(r->cbuf);
      r->cbuf = data;
      r->cached = i;
    }
    uint64_t pos = off + done;
    size_t in = (size_t)(pos - r->off[i]);
    size_t k = (size_t)(r->off[i + 1] - pos);
    if (k > len - done)
      k = len - done;
    memcpy((uint8_t *)buf + done, r->cbuf + in, k);
    done += k;
  }
  return (ssize_t)done;
}

void content_close(struct content_reader *r)
{
  if (!r)
    return;
  free(r->flat);
  free(r->hash);
  free(r->off);
  free(r->cbuf);
  free(r);
}

int content_decode(struct blocks *bs, uint8_t kind, const uint8_t *bytes, size_t len,
                   uint64_t size, const void *prev, size_t prev_len, size_t max, uint8_t **out)
{
  if (size > max)
    return -BFS_ETOOBIG;
  struct content_reader *r;
  int err = content_open(bs, kind, bytes, len, size, prev, prev_len, &r);
  if (err)
    return err;
  if (r->flat || size == 0) {
    *out = r->flat ? r->flat : malloc(1);
    r->flat = NULL;
    content_close(r);
    return *out ? 0 : -ENOMEM;
  }
  uint8_t *buf = malloc((size_t)size);
  if (!buf) {
    content_close(r);
    return -ENOMEM;
  }
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = content_read(r, done, buf + done, (size_t)(size - done));
    if (n <= 0) {
      err = n < 0 ? (int)n : -BFS_EFORMAT;
      break;
    }
    done += (uint64_t)n;
  }
  content_close(r);
  if (err) {
    free(buf);
    return err;
  }
  *out = buf;
  return 0;
}

ssize_t content_missing(struct blocks *bs, uint8_t kind, const uint8_t *bytes, size_t len,
                        hash_t **missing)
{
  *missing = NULL;
  if (kind != ENTRY_CONTENT_BLOCKS && kind != ENTRY_CONTENT_BLOCKLIST)
    return kind <= ENTRY_CONTENT_MAX_KIND ? 0 : -BFS_EFORMAT;
  if (kind == ENTRY_CONTENT_BLOCKLIST) {
    if (len != HASH_SIZE)
      return -BFS_EFORMAT;
    hash_t h;
    memcpy(h.bytes, bytes, HASH_SIZE);
    int has = blocks_has(bs, &h);
    if (has < 0)
      return has;
    if (!has) {
      *missing = malloc(sizeof **missing);
      if (!*missing)
        return -ENOMEM;
      **missing = h;
      return 1;
    }
  }
  hash_t *list;
  size_t n;
  int err = load_list(bs, kind, bytes, len, &list, &n);
  if (err)
    return err;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    int has = blocks_has(bs, &list[i]);
    if (has < 0) {
      free(list);
      return has;
    }
    if (!has)
      list[k++] = list[i]; /* compact in place: k <= i */
  }
  if (k == 0) {
    free(list);
    return 0;
  }
  *missing = list;
  return (ssize_t)k;
}
