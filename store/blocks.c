#include "store/blocks.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include "store/chunk.h"
#include "store/error.h"
#include "store/sha256.h"
#include "store/zeros.h"

static const uint8_t block_magic[4] = {'B', 'F', 'S', 'b'};
static const uint8_t pack_magic[4] = {'B', 'F', 'S', 'P'};

enum { CODEC_RAW = 0, CODEC_ZSTD = 1 };

#define PACK_HEADER_SIZE 16
#define RECORD_HEADER_SIZE (HASH_SIZE + BLOCKS_HEADER_SIZE)
#define PACK_MAX_SIZE (1ull << 30) /* roll to a new pack beyond this */
#define MAX_PACKS 4096             /* fixed, so pack fds never move under readers */
/* Zeros written ahead of the current pack's end (see prezero()): how far,
 * and the free space the filesystem must have for them. */
#define PACK_ZERO_AHEAD BLOCKS_ZERO_AHEAD

/* The index: open addressing, keyed by the block hash. */
enum { VERIFY_UNKNOWN = 0, VERIFY_OK = 1, VERIFY_BAD = 2 };
struct slot {
  hash_t h;
  uint64_t off; /* of the record (its hash field) in the pack */
  uint32_t pack; /* index into bs->packs */
  uint32_t raw;
  uint32_t stored; /* payload bytes */
  uint8_t used;
  uint8_t verified; /* VERIFY_*: is the record known intact? */
};

struct pack {
  int fd;
  uint64_t end; /* end of the last whole record */
  bool dirty;   /* written since the last blocks_sync() */
  /* The writer: if above end, [end, zeroed) holds zeros it wrote ahead and
   * zeroed is the file's size; else no zeros of ours (0). Under wmu. */
  uint64_t zeroed;
  /* For blocks_sync_deferred(), under wmu: everything below flushed is
   * durable (an fdatasync, or a flush the caller confirmed); while cuts ==
   * durable_cuts (no ftruncate since), [flushed, durable_zeroed) lies in
   * blocks the file had, inside its size, when an fdatasync returned. */
  uint64_t flushed, durable_zeroed;
  uint32_t cuts, durable_cuts;
};

struct blocks {
  char *dir;
  int dirfd;
  bool rdonly;
  int level;
  int threads;
  pthread_mutex_t mu;  /* the index, npacks, pack ends (for readers) */
  pthread_mutex_t wmu; /* appends: held across the write, so records never interleave */
  /* blocks_sync, held across its fdatasyncs: a second caller must not find
   * a pack clean whose fdatasync the first has not finished. */
  pthread_mutex_t smu;
  int write_err;       /* sticky: an append failed and could not be undone */
  bool dir_dirty;      /* a pack was created since the last blocks_sync() */
  int defer;           /* blocks_sync_deferred(): 0 unknown, 1 allowed, -1 never */
  dev_t dev;           /* the store's device, once defer is known */
  struct pack packs[MAX_PACKS];
  uint32_t npacks;
  struct slot *tab;
  size_t tab_cap, tab_n;
  uint64_t seed; /* slot positions are unpredictable to whoever chooses blocks */
  uint64_t raw_bytes, record_bytes;
  uint64_t pack_max;
};

/* ---- small helpers ---- */

static void put_le32(uint8_t *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
  return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
  size_t got = 0;
  while (got < len) {
    ssize_t r = pread(fd, (uint8_t *)buf + got, len - got, (off_t)(off + got));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -errno;
    if (r == 0)
      return -BFS_ECHECKSUM; /* shorter than the index says */
    got += (size_t)r;
  }
  return 0;
}

static int pwrite_all(int fd, const struct iovec *iov_in, int n, uint64_t off)
{
  struct iovec iov[4];
  memcpy(iov, iov_in, (size_t)n * sizeof *iov);
  size_t want = 0, done = 0;
  for (int i = 0; i < n; i++)
    want += iov[i].iov_len;
  while (done < want) {
    ssize_t r = pwritev(fd, iov, n, (off_t)(off + done));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -errno;
    done += (size_t)r;
    size_t adv = (size_t)r;
    for (int i = 0; i < n; i++) {
      size_t k = adv < iov[i].iov_len ? adv : iov[i].iov_len;
      iov[i].iov_base = (uint8_t *)iov[i].iov_base + k;
      iov[i].iov_len -= k;
      adv -= k;
    }
  }
  return 0;
}

/* Per-thread zstd contexts, freed when the thread exits. */
static pthread_key_t cctx_key, dctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;

static void free_cctx(void *p) { ZSTD_freeCCtx(p); }
static void free_dctx(void *p) { ZSTD_freeDCtx(p); }

static void ctx_keys_init(void)
{
  pthread_key_create(&cctx_key, free_cctx);
  pthread_key_create(&dctx_key, free_dctx);
}

static ZSTD_CCtx *thread_cctx(void)
{
  pthread_once(&ctx_once, ctx_keys_init);
  ZSTD_CCtx *c = pthread_getspecific(cctx_key);
  if (!c) {
    c = ZSTD_createCCtx();
    if (c && pthread_setspecific(cctx_key, c) != 0) {
      ZSTD_freeCCtx(c);
      c = NULL;
    }
  }
  return c;
}

static ZSTD_DCtx *thread_dctx(void)
{
  pthread_once(&ctx_once, ctx_keys_init);
  ZSTD_DCtx *d = pthread_getspecific(dctx_key);
  if (!d) {
    d = ZSTD_createDCtx();
    if (d && pthread_setspecific(dctx_key, d) != 0) {
      ZSTD_freeDCtx(d);
      d = NULL;
    }
  }
  return d;
}

/* ---- hashing: store/sha256.c (SHA-NI, several buffers at once) ---- */

void blocks_hash(const void *data, size_t len, hash_t *out)
{
  sha256_buf(data, len, out);
}

/* ---- the stored format ---- */

/* Checks the header and the XXH64; fills the codec and lengths. */
static int parse_header(const uint8_t *file, size_t len, int *codec, uint32_t *raw_len)
{
  if (len < BLOCKS_HEADER_SIZE || memcmp(file, block_magic, 4) != 0)
    return -BFS_EFORMAT;
  if (file[4] != BLOCKS_FORMAT_VERSION || file[5] > CODEC_ZSTD || file[6] || file[7])
    return -BFS_EFORMAT;
  uint32_t raw = get_le32(file + 8), stored = get_le32(file + 12);
  if (raw > BLOCKS_MAX_SIZE || stored != len - BLOCKS_HEADER_SIZE)
    return -BFS_EFORMAT;
  if (file[5] == CODEC_RAW && stored != raw)
    return -BFS_EFORMAT;
  if (XXH64(file + BLOCKS_HEADER_SIZE, stored, 0) != get_le64(file + 16))
    return -BFS_ECHECKSUM;
  *codec = file[5];
  *raw_len = raw;
  return 0;
}

int blocks_decode(const uint8_t *file, size_t len, const hash_t *expect, uint8_t **data,
                  size_t *data_len)
{
  int codec;
  uint32_t raw;
  int err = parse_header(file, len, &codec, &raw);
  if (err)
    return err;
  const uint8_t *payload = file + BLOCKS_HEADER_SIZE;
  size_t stored = len - BLOCKS_HEADER_SIZE;
  uint8_t *out = malloc(raw ? raw : 1);
  if (!out)
    return -ENOMEM;
  if (codec == CODEC_RAW) {
    memcpy(out, payload, raw);
  } else {
    /* Exactly one frame, declaring exactly RAW bytes, and nothing after it:
     * the output buffer is RAW bytes, so no frame can make us write more. */
    unsigned long long fcs = ZSTD_getFrameContentSize(payload, stored);
    size_t fsize = ZSTD_findFrameCompressedSize(payload, stored);
    ZSTD_DCtx *d = thread_dctx();
    if (fcs != raw || ZSTD_isError(fsize) || fsize != stored) {
      err = -BFS_EFORMAT;
      goto fail;
    }
    if (!d) {
      err = -ENOMEM;
      goto fail;
    }
    size_t r = ZSTD_decompressDCtx(d, out, raw, payload, stored);
    if (ZSTD_isError(r) || r != raw) {
      err = -BFS_EFORMAT;
      goto fail;
    }
  }
  if (expect) {
    hash_t h;
    blocks_hash(out, raw, &h);
    if (!hash_eq(&h, expect)) {
      err = -BFS_ECHECKSUM;
      goto fail;
    }
  }
  *data = out;
  *data_len = raw;
  return 0;
fail:
  free(out);
  return err;
}

/* ---- the index ---- */

static size_t slot_pos(const struct blocks *bs, const hash_t *h)
{
  return (size_t)XXH3_64bits_withSeed(h->bytes, HASH_SIZE, bs->seed) & (bs->tab_cap - 1);
}

/* Caller holds bs->mu. */
static struct slot *idx_find(struct blocks *bs, const hash_t *h)
{
  if (bs->tab_n == 0)
    return NULL;
  for (size_t i = slot_pos(bs, h);; i = (i + 1) & (bs->tab_cap - 1)) {
    struct slot *s = &bs->tab[i];
    if (!s->used)
      return NULL;
    if (hash_eq(&s->h, h))
      return s;
  }
}

/* Caller holds bs->mu. A later record of the same block replaces the earlier. */
static int idx_insert(struct blocks *bs, const hash_t *h, uint32_t pack, uint64_t off, uint32_t raw,
                      uint32_t stored, uint8_t verified)
{
  if ((bs->tab_n + 1) * 10 > bs->tab_cap * 7) {
    size_t ncap = bs->tab_cap ? 2 * bs->tab_cap : 1024;
    struct slot *nt = calloc(ncap, sizeof *nt), *old = bs->tab;
    if (!nt)
      return -ENOMEM;
    size_t ocap = bs->tab_cap;
    bs->tab = nt;
    bs->tab_cap = ncap;
    for (size_t i = 0; i < ocap; i++) {
      if (!old[i].used)
        continue;
      size_t j = slot_pos(bs, &old[i].h);
      while (nt[j].used)
        j = (j + 1) & (ncap - 1);
      nt[j] = old[i];
    }
    free(old);
  }
  size_t i = slot_pos(bs, h);
  while (bs->tab[i].used && !hash_eq(&bs->tab[i].h, h))
    i = (i + 1) & (bs->tab_cap - 1);
  struct slot *s = &bs->tab[i];
  if (s->used) {
    bs->raw_bytes -= s->raw;
    bs->record_bytes -= RECORD_HEADER_SIZE + (uint64_t)s->stored;
  } else {
    bs->tab_n++;
  }
  *s = (struct slot){*h, off, pack, raw, stored, 1, verified};
  bs->raw_bytes += raw;
  bs->record_bytes += RECORD_HEADER_SIZE + (uint64_t)stored;
  return 0;
}

/* ---- packs ---- */

static void pack_name(uint32_t i, char out[32])
{
  snprintf(out, 32, "pack-%08u", i + 1);
}

static bool all_zero(const uint8_t *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (p[i])
      return false;
  return true;
}

/*
 * Checks a record's stored-form header (not its payload checksum): 1 if it
 * makes sense, 0 if not, 2 if it does but its XXH64 field is zero. A header
 * whose hash is all zero is none (no block hashes to zero): that is the
 * writer's zeros ahead of its end (see prezero()). A zero XXH64 field is
 * most likely a header a reader caught half-written over them (the field
 * comes last) -- a boundary must not be taken from it -- but a payload can
 * hash to zero (XXH64 is no cryptographic hash: one can be made to), so the
 * caller then checks the payload (record_payload_hashes_to_zero).
 */
static int record_header_ok(const uint8_t *rec, uint32_t *raw, uint32_t *stored)
{
  const uint8_t *f = rec + HASH_SIZE;
  if (all_zero(rec, HASH_SIZE))
    return 0;
  if (memcmp(f, block_magic, 4) != 0 || f[4] != BLOCKS_FORMAT_VERSION || f[5] > CODEC_ZSTD ||
      f[6] || f[7])
    return 0;
  *raw = get_le32(f + 8);
  *stored = get_le32(f + 12);
  if (*raw > BLOCKS_MAX_SIZE || *stored > ZSTD_compressBound(BLOCKS_MAX_SIZE))
    return 0;
  if (f[5] == CODEC_RAW && *stored != *raw)
    return 0;
  return all_zero(f + 16, 8) ? 2 : 1;
}

/* Whether the STORED payload bytes at OFF of FD hash to zero (XXH64). */
static bool record_payload_hashes_to_zero(int fd, uint64_t off, uint32_t stored)
{
  uint8_t *buf = malloc(stored ? stored : 1);
  bool zero = buf && pread_all(fd, buf, stored, off) == 0 && XXH64(buf, stored, 0) == 0;
  free(buf);
  return zero;
}

/*
 * Indexes the records of pack I from its known end. A record that runs past
 * the end of the file (or a header that makes no sense, or zeros) is a torn
 * tail or zeros a writer wrote ahead: the owner truncates it away; a reader
 * only stops there. A record written over zeros and torn looks whole here;
 * its XXH64 fails when it is first read or stored again (see blocks.h).
 */
static int scan_pack(struct blocks *bs, uint32_t i)
{
  struct pack *p = &bs->packs[i];
  struct stat st;
  if (fstat(p->fd, &st) < 0)
    return -errno;
  uint64_t size = (uint64_t)st.st_size, off = p->end;
  uint8_t rec[RECORD_HEADER_SIZE];
  while (off + RECORD_HEADER_SIZE <= size) {
    int err = pread_all(p->fd, rec, sizeof rec, off);
    if (err)
      return err == -BFS_ECHECKSUM ? 0 : err;
    uint32_t raw, stored;
    int ok = record_header_ok(rec, &raw, &stored);
    if (!ok || off + RECORD_HEADER_SIZE + stored > size)
      break;
    if (ok == 2 && !record_payload_hashes_to_zero(p->fd, off + RECORD_HEADER_SIZE, stored))
      break;
    hash_t h;
    memcpy(h.bytes, rec, HASH_SIZE);
    err = idx_insert(bs, &h, i, off, raw, stored, VERIFY_UNKNOWN);
    if (err)
      return err;
    off += RECORD_HEADER_SIZE + (uint64_t)stored;
  }
  p->end = off;
  if (off < size && !bs->rdonly && i + 1 == bs->npacks) {
    if (ftruncate(p->fd, (off_t)off) < 0)
      return -errno;
  }
  return 0;
}

static int open_pack(struct blocks *bs, uint32_t i, bool create)
{
  char name[32];
  pack_name(i, name);
  int flags = (bs->rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0);
  int fd = openat(bs->dirfd, name, flags, 0644);
  if (fd < 0)
    return -errno;
  uint8_t hdr[PACK_HEADER_SIZE] = {0};
  int err = 0;
  if (create) {
    memcpy(hdr, pack_magic, 4);
    hdr[4] = BLOCKS_FORMAT_VERSION;
    struct iovec iov = {hdr, sizeof hdr};
    err = pwrite_all(fd, &iov, 1, 0);
  } else {
    err = pread_all(fd, hdr, sizeof hdr, 0);
    if (err == -BFS_ECHECKSUM && !bs->rdonly) {
      /* created but its header never made it to disk: start it again */
      memcpy(hdr, pack_magic, 4);
      hdr[4] = BLOCKS_FORMAT_VERSION;
      struct iovec iov = {hdr, sizeof hdr};
      err = ftruncate(fd, 0) < 0 ? -errno : pwrite_all(fd, &iov, 1, 0);
    } else if (err == -BFS_ECHECKSUM) {
      err = -ENOENT; /* a reader: the writer is creating it right now */
    } else if (!err && (memcmp(hdr, pack_magic, 4) != 0 || hdr[4] != BLOCKS_FORMAT_VERSION)) {
      err = -BFS_EFORMAT;
    }
  }
  if (err) {
    close(fd);
    return err;
  }
  bs->packs[i] = (struct pack){.fd = fd, .end = PACK_HEADER_SIZE, .dirty = create};
  return 0;
}

/* ---- zeros written ahead ---- */

/* Gives back the zeros past the pack's end. Under wmu. */
static void drop_zeros(struct pack *p)
{
  p->cuts++;
  if (p->zeroed > p->end && ftruncate(p->fd, (off_t)p->end) == 0)
    p->zeroed = 0;
}

/*
 * Keeps PACK_ZERO_AHEAD zeros written ahead of the pack's end
 * (store/zeros.h), refilled about every 30 commits of one 4 KiB block, or
 * gives them back when the disk is short (at the first blocks_sync() that
 * finds less than ZEROS_MIN_FREE). Called by blocks_sync() under wmu for the
 * pack appends go to, before its fdatasync (which makes the zeros durable
 * with the records). Best effort: appends then stay true appends.
 */
static void prezero(struct pack *p)
{
  uint64_t at = p->zeroed > p->end ? p->zeroed : p->end;
  if (zeros_ahead(p->fd, p->end, PACK_ZERO_AHEAD, &at) == 0) {
    p->zeroed = at;
    return;
  }
  /* Part of a failed write may have landed past what zeroed says: cut at
   * the end whatever it says. */
  p->cuts++;
  if (ftruncate(p->fd, (off_t)p->end) == 0)
    p->zeroed = 0;
}

/* Readers in other processes: pick up records and packs written since. */
static int refresh_locked(struct blocks *bs)
{
  if (!bs->rdonly)
    return 0; /* the writer's own index is always complete */
  int err = bs->npacks ? scan_pack(bs, bs->npacks - 1) : 0;
  while (!err && bs->npacks < MAX_PACKS) {
    err = open_pack(bs, bs->npacks, false);
    if (err == -ENOENT)
      return 0;
    if (err)
      return err;
    bs->npacks++;
    err = scan_pack(bs, bs->npacks - 1);
  }
  return err;
}

/* Looks H up; copies its slot. 1 found, 0 not, or an error. */
static int lookup(struct blocks *bs, const hash_t *h, struct slot *out, int *fd)
{
  pthread_mutex_lock(&bs->mu);
  struct slot *s = idx_find(bs, h);
  int err = 0;
  if (!s && bs->rdonly) {
    err = refresh_locked(bs);
    s = err ? NULL : idx_find(bs, h);
  }
  if (s) {
    *out = *s;
    *fd = bs->packs[s->pack].fd;
  }
  pthread_mutex_unlock(&bs->mu);
  return err ? err : s != NULL;
}

/* ---- open / close ---- */

static int mkdir_p(const char *path)
{
  char buf[PATH_MAX];
  if (strlen(path) >= sizeof buf)
    return -ENAMETOOLONG;
  strcpy(buf, path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(buf, 0755) < 0 && errno != EEXIST)
      return -errno;
    *p = '/';
  }
  if (mkdir(buf, 0755) < 0 && errno != EEXIST)
    return -errno;
  return 0;
}

int blocks_open(const char *dir, int flags, struct blocks **out)
{
  int err;
  if (flags & BLOCKS_CREATE) {
    err = mkdir_p(dir);
    if (err)
      return err;
  }
  struct blocks *bs = calloc(1, sizeof *bs);
  if (!bs)
    return -ENOMEM;
  bs->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (bs->dirfd < 0) {
    err = -errno;
    free(bs);
    return err;
  }
  bs->dir = strdup(dir);
  bs->rdonly = !(flags & (BLOCKS_CREATE | BLOCKS_WRITE));
  bs->level = BLOCKS_DEFAULT_LEVEL;
  bs->pack_max = PACK_MAX_SIZE;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  bs->threads = ncpu < 1 ? 1 : ncpu > 4 ? 4 : (int)ncpu;
  pthread_mutex_init(&bs->mu, NULL);
  pthread_mutex_init(&bs->wmu, NULL);
  pthread_mutex_init(&bs->smu, NULL);
  if (getrandom(&bs->seed, sizeof bs->seed, 0) != sizeof bs->seed)
    bs->seed = (uint64_t)getpid() * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)bs;
  err = bs->dir ? 0 : -ENOMEM;
  while (!err && bs->npacks < MAX_PACKS) {
    err = open_pack(bs, bs->npacks, false);
    if (err == -ENOENT) {
      err = 0;
      break;
    }
    if (!err)
      bs->npacks++;
  }
  for (uint32_t i = 0; !err && i < bs->npacks; i++)
    err = scan_pack(bs, i);
  if (!err && !bs->rdonly) {
    /* A writer before us may have stopped (crashed) with appends only in
     * the page cache, which we would now take as stored: the first
     * blocks_sync() makes every pack and the directory durable before
     * anything logged can name what we found. */
    for (uint32_t i = 0; i < bs->npacks; i++)
      bs->packs[i].dirty = true;
    bs->dir_dirty = bs->npacks > 0;
  }
  if (!err && bs->npacks == 0 && !bs->rdonly) {
    /* A writer needs a pack; only BLOCKS_CREATE makes a store where there
     * was none. (A reader sees an empty store that a writer may fill.) */
    if (!(flags & BLOCKS_CREATE)) {
      err = -ENOENT;
    } else {
      err = open_pack(bs, 0, true);
      if (!err) {
        bs->npacks = 1;
        bs->dir_dirty = true;
      }
    }
  }
  if (err) {
    blocks_close(bs);
    return err;
  }
  *out = bs;
  return 0;
}

void blocks_close(struct blocks *bs)
{
  if (!bs)
    return;
  for (uint32_t i = 0; i < bs->npacks; i++) {
    drop_zeros(&bs->packs[i]); /* a clean close leaves packs that end at their end */
    close(bs->packs[i].fd);
  }
  if (bs->dirfd >= 0)
    close(bs->dirfd);
  pthread_mutex_destroy(&bs->mu);
  pthread_mutex_destroy(&bs->wmu);
  pthread_mutex_destroy(&bs->smu);
  free(bs->tab);
  free(bs->dir);
  free(bs);
}

void blocks_set_level(struct blocks *bs, int level)
{
  if (level < ZSTD_minCLevel())
    level = ZSTD_minCLevel();
  if (level > ZSTD_maxCLevel())
    level = ZSTD_maxCLevel();
  bs->level = level;
}

void blocks_set_pack_size(struct blocks *bs, uint64_t bytes)
{
  bs->pack_max = bytes < (1u << 20) ? (1u << 20) : bytes;
}

void blocks_set_threads(struct blocks *bs, int n)
{
  bs->threads = n < 1 ? 1 : n > 64 ? 64 : n;
}

/* ---- reading ---- */

int blocks_get_stored(struct blocks *bs, const hash_t *h, uint8_t **file, size_t *len)
{
  struct slot s;
  int fd;
  int r = lookup(bs, h, &s, &fd);
  if (r <= 0)
    return r < 0 ? r : -ENOENT;
  size_t n = RECORD_HEADER_SIZE + (size_t)s.stored;
  uint8_t *rec = malloc(n);
  if (!rec)
    return -ENOMEM;
  int err = pread_all(fd, rec, n, s.off);
  if (!err && memcmp(rec, h->bytes, HASH_SIZE) != 0)
    err = -BFS_ECHECKSUM;
  if (err) {
    free(rec);
    return err;
  }
  memmove(rec, rec + HASH_SIZE, n - HASH_SIZE);
  *file = rec;
  *len = n - HASH_SIZE;
  return 0;
}

int blocks_get(struct blocks *bs, const hash_t *h, uint8_t **data, size_t *len)
{
  uint8_t *file;
  size_t flen;
  int err = blocks_get_stored(bs, h, &file, &flen);
  if (!err) {
    err = blocks_decode(file, flen, h, data, len);
    free(file);
  }
  /* A malformed record in our own store is damage, whatever the cause. */
  if (err == -BFS_EFORMAT)
    err = -BFS_ECHECKSUM;
  if (err == -BFS_ECHECKSUM) {
    /* The next store of this block writes a good copy. */
    pthread_mutex_lock(&bs->mu);
    struct slot *s = idx_find(bs, h);
    if (s)
      s->verified = VERIFY_BAD;
    pthread_mutex_unlock(&bs->mu);
  }
  return err;
}

int blocks_has(struct blocks *bs, const hash_t *h)
{
  struct slot s;
  int fd;
  return lookup(bs, h, &s, &fd);
}

int blocks_size(struct blocks *bs, const hash_t *h, uint32_t *len)
{
  struct slot s;
  int fd;
  int r = lookup(bs, h, &s, &fd);
  if (r <= 0)
    return r < 0 ? r : -ENOENT;
  *len = s.raw;
  return 0;
}

int blocks_locate(struct blocks *bs, const hash_t *h, char *path, size_t cap, uint64_t *off,
                  size_t *len)
{
  struct slot s;
  int fd;
  int r = lookup(bs, h, &s, &fd);
  if (r <= 0)
    return r < 0 ? r : -ENOENT;
  char name[32];
  pack_name(s.pack, name);
  snprintf(path, cap, "%s/%s", bs->dir, name);
  *off = s.off + HASH_SIZE;
  *len = BLOCKS_HEADER_SIZE + (size_t)s.stored;
  return 0;
}

/* ---- writing ---- */

/*
 * 1 if the store holds an intact record of H, else 0. A record found at open
 * is checked (header and XXH64) the first time a store finds it, once;
 * records written by this process are intact by construction.
 */
static int present_intact(struct blocks *bs, const hash_t *h)
{
  pthread_mutex_lock(&bs->mu);
  struct slot *s = idx_find(bs, h);
  int state = s ? s->verified : VERIFY_BAD;
  uint64_t off = s ? s->off : 0;
  pthread_mutex_unlock(&bs->mu);
  if (state != VERIFY_UNKNOWN)
    return state == VERIFY_OK;
  uint8_t *file;
  size_t len;
  if (blocks_get_stored(bs, h, &file, &len) < 0)
    return 0;
  int codec;
  uint32_t raw;
  int ok = parse_header(file, len, &codec, &raw) == 0;
  free(file);
  if (ok) {
    pthread_mutex_lock(&bs->mu);
    s = idx_find(bs, h);
    if (s && s->off == off && s->verified == VERIFY_UNKNOWN)
      s->verified = VERIFY_OK;
    pthread_mutex_unlock(&bs->mu);
  }
  return ok;
}

/*
 * Appends one record. Appends are serialized (the write is a copy into the
 * page cache), so a pack is always a sequence of whole records followed by
 * at most one torn one, and blocks_sync() never makes a record durable
 * behind a hole.
 */
static int append_record(struct blocks *bs, const hash_t *h, const uint8_t *hdr,
                         const uint8_t *payload, size_t plen)
{
  if (bs->rdonly)
    return -EROFS;
  uint64_t len = RECORD_HEADER_SIZE + (uint64_t)plen;
  pthread_mutex_lock(&bs->wmu);
  int err = bs->write_err;
  if (err)
    goto out;
  struct pack *p = &bs->packs[bs->npacks - 1];
  if (p->end + len > bs->pack_max && p->end > PACK_HEADER_SIZE) {
    if (bs->npacks == MAX_PACKS) {
      err = -ENOSPC;
      goto out;
    }
    drop_zeros(p); /* no more appends there */
    err = open_pack(bs, bs->npacks, true);
    if (err)
      goto out;
    pthread_mutex_lock(&bs->mu);
    bs->npacks++;
    bs->dir_dirty = true;
    pthread_mutex_unlock(&bs->mu);
    p = &bs->packs[bs->npacks - 1];
  }
  struct iovec iov[3] = {{(void *)h->bytes, HASH_SIZE},
                         {(void *)hdr, BLOCKS_HEADER_SIZE},
                         {(void *)payload, plen}};
  uint64_t off = p->end;
  err = pwrite_all(p->fd, iov, 3, off);
  if ((err == -ENOSPC || err == -EDQUOT) && p->zeroed > off) {
    /* Zeros ahead held space (overwriting them takes new space on a
     * copy-on-write filesystem): give them back, try once more. */
    drop_zeros(p);
    if (p->zeroed == 0)
      err = pwrite_all(p->fd, iov, 3, off);
  }
  if (err) {
    /* Undo the partial record (and any zeros ahead); if even that fails,
     * refuse further appends: a later record behind garbage would be
     * dropped by recovery. */
    p->cuts++;
    if (ftruncate(p->fd, (off_t)off) < 0)
      bs->write_err = err;
    else
      p->zeroed = 0;
    goto out;
  }
  p->end = off + len;
  if (p->zeroed <= p->end)
    p->zeroed = 0; /* the record used them all up */
  p->dirty = true;
  pthread_mutex_lock(&bs->mu);
  err = idx_insert(bs, h, bs->npacks - 1, off, get_le32(hdr + 8), (uint32_t)plen, VERIFY_OK);
  pthread_mutex_unlock(&bs->mu);
out:
  pthread_mutex_unlock(&bs->wmu);
  return err;
}

/*
 * Stores DATA under its known hash H. Returns 1 written (*stored = bytes the
 * record takes), 0 already present, or an error.
 */
static int store_hashed(struct blocks *bs, const hash_t *h, const void *data, size_t len,
                        uint64_t *stored)
{
  if (len > BLOCKS_MAX_SIZE)
    return -BFS_ETOOBIG;
  if (bs->rdonly)
    return -EROFS;
  if (present_intact(bs, h))
    return 0;

  uint8_t hdr[BLOCKS_HEADER_SIZE] = {0};
  memcpy(hdr, block_magic, 4);
  hdr[4] = BLOCKS_FORMAT_VERSION;
  put_le32(hdr + 8, (uint32_t)len);

  size_t cap = ZSTD_compressBound(len);
  uint8_t *z = malloc(cap);
  ZSTD_CCtx *c = thread_cctx();
  if (!z || !c) {
    free(z);
    return -ENOMEM;
  }
  const uint8_t *payload = data;
  size_t plen = len;
  size_t zn = ZSTD_compressCCtx(c, z, cap, data, len, bs->level);
  /* Keep the compressed form only if it saves at least 1/32. */
  if (!ZSTD_isError(zn) && zn < len - len / 32) {
    hdr[5] = CODEC_ZSTD;
    payload = z;
    plen = zn;
  }
  put_le32(hdr + 12, (uint32_t)plen);
  put_le64(hdr + 16, XXH64(payload, plen, 0));
  int err = append_record(bs, h, hdr, payload, plen);
  free(z);
  if (err)
    return err;
  if (stored)
    *stored = RECORD_HEADER_SIZE + plen;
  return 1;
}

int blocks_put(struct blocks *bs, const void *data, size_t len, hash_t *out)
{
  if (len > BLOCKS_MAX_SIZE)
    return -BFS_ETOOBIG;
  blocks_hash(data, len, out);
  return store_hashed(bs, out, data, len, NULL);
}

int blocks_put_many(struct blocks *bs, size_t n, const void *const *data, const size_t *len,
                    hash_t *out)
{
  for (size_t i = 0; i < n; i++)
    if (len[i] > BLOCKS_MAX_SIZE)
      return -BFS_ETOOBIG;
  sha256_bufs(n, data, len, out);
  int written = 0;
  for (size_t i = 0; i < n; i++) {
    int r = store_hashed(bs, &out[i], data[i], len[i], NULL);
    if (r < 0)
      return r;
    written += r;
  }
  return written;
}

int blocks_put_stored(struct blocks *bs, const uint8_t *file, size_t len, const hash_t *expect)
{
  if (bs->rdonly)
    return -EROFS;
  uint8_t *data;
  size_t dlen;
  int err = blocks_decode(file, len, expect, &data, &dlen);
  if (err)
    return err;
  free(data);
  if (present_intact(bs, expect))
    return 0;
  err = append_record(bs, expect, file, file + BLOCKS_HEADER_SIZE, len - BLOCKS_HEADER_SIZE);
  return err ? err : 1;
}

/* After a write-back error the failed pages stay cached, clean and looking
 * stored: drop them, so that a reopen (scan_pack) reads what the disk has. */
static void forget_cached(int fd)
{
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
}

int blocks_sync(struct blocks *bs)
{
  if (bs->rdonly)
    return 0;
  int n = 0;
  pthread_mutex_lock(&bs->smu);
  /* Appends are serialized under wmu: every record written before this
   * point is complete once we hold it. */
  pthread_mutex_lock(&bs->wmu);
  int err = bs->write_err;
  /* Every pack may be dirty (right after a writer's open): a slot each,
   * on the stack for the usual few packs (no allocation per commit). */
  int fds_few[64];
  int *fds = fds_few;
  if (bs->npacks > 64 && !(fds = malloc(bs->npacks * sizeof *fds))) {
    pthread_mutex_unlock(&bs->wmu);
    pthread_mutex_unlock(&bs->smu);
    return -ENOMEM;
  }
  bool dir = bs->dir_dirty;
  bs->dir_dirty = false;
  /* What the fdatasync of the last pack will have made durable, for
   * blocks_sync_deferred(): its records up to end, its zeros ahead. */
  struct pack *last = NULL;
  uint64_t last_end = 0, last_zeroed = 0;
  uint32_t last_cuts = 0;
  for (uint32_t i = 0; i < bs->npacks && !err; i++)
    if (bs->packs[i].dirty) {
      bs->packs[i].dirty = false;
      fds[n++] = bs->packs[i].fd;
      if (i + 1 == bs->npacks) {
        last = &bs->packs[i];
        prezero(last); /* made durable by the fdatasync below */
        last_end = last->end;
        last_zeroed = last->zeroed;
        last_cuts = last->cuts;
      }
    }
  /* No append since the last sync: still give the zeros back if the disk
   * has filled up meanwhile. */
  struct pack *cur = bs->npacks ? &bs->packs[bs->npacks - 1] : NULL;
  if (cur && !last && cur->zeroed > cur->end && !zeros_room(cur->fd))
    drop_zeros(cur);
  pthread_mutex_unlock(&bs->wmu);
  for (int i = 0; i < n && !err; i++)
    if (fdatasync(fds[i]) < 0) {
      err = -errno;
      forget_cached(fds[i]);
    }
  if (!err && dir && fsync(bs->dirfd) < 0)
    err = -errno;
  if (err) {
    /* A write-back error is reported once (to one caller, on one open
     * file): a retried fdatasync() may return 0 with the pages dropped.
     * So nothing is taken as durable again until the store is reopened,
     * which checks what the packs hold: every later sync and append gets
     * the error (sticky, as after an append that could not be undone).
     * Even ENOSPC: ext4 reserves blocks at write(), so one that reaches
     * fdatasync is a write-back that failed and dropped its data. (A full
     * disk shows at write(), which append_record() undoes.) */
    pthread_mutex_lock(&bs->wmu);
    if (!bs->write_err)
      bs->write_err = err;
    pthread_mutex_unlock(&bs->wmu);
  } else if (last) {
    pthread_mutex_lock(&bs->wmu);
    if (last->flushed < last_end)
      last->flushed = last_end;
    if (last->cuts == last_cuts && last_zeroed > last_end) {
      last->durable_zeroed = last_zeroed;
      last->durable_cuts = last_cuts;
    }
    pthread_mutex_unlock(&bs->wmu);
  }
  pthread_mutex_unlock(&bs->smu);
  if (fds != fds_few)
    free(fds);
  return err;
}

/*
 * Whether the fdatasync() of a file on device DEV flushes the device cache
 * over the store's completed writes, and the packs' overwrites of zeros
 * they made durable need no metadata: ext4 (any journal mode: its fdatasync
 * ends in a cache flush, or a journal commit that starts with one; no
 * shared extents, so an overwrite in place stays in place), on the same
 * device. Not XFS or btrfs: an overwrite of a shared (reflinked, e.g. by
 * cp --reflink=auto) or copy-on-write extent allocates and remaps, which
 * only the file's own fdatasync commits. Under wmu.
 */
static bool defer_allowed(struct blocks *bs, dev_t dev)
{
  if (bs->defer == 0) {
    struct statfs sf;
    struct stat st;
    bs->defer = fstatfs(bs->dirfd, &sf) == 0 && sf.f_type == EXT4_SUPER_MAGIC &&
                        fstat(bs->dirfd, &st) == 0
                    ? 1
                    : -1;
    if (bs->defer == 1)
      bs->dev = st.st_dev;
  }
  return bs->defer == 1 && bs->dev == dev;
}

int blocks_sync_deferred(struct blocks *bs, dev_t dev, struct blocks_flush *owed)
{
  memset(owed, 0, sizeof *owed);
  if (bs->rdonly)
    return 0;
  pthread_mutex_lock(&bs->wmu);
  struct pack *p = bs->npacks ? &bs->packs[bs->npacks - 1] : NULL;
  /* Only the last pack written, inside zeros made durable (so no metadata
   * to commit), with no refill due (which grows the file) and room for the
   * zeros (else blocks_sync() gives them back). */
  bool ok = p && p->dirty && !bs->write_err && !bs->dir_dirty && defer_allowed(bs, dev) &&
            p->cuts == p->durable_cuts && p->flushed <= p->end &&
            p->durable_zeroed >= p->end + PACK_ZERO_AHEAD / 2 && zeros_room(p->fd);
  for (uint32_t i = 0; ok && i + 1 < bs->npacks; i++)
    ok = !bs->packs[i].dirty;
  uint64_t from = 0, to = 0;
  uint32_t pack = bs->npacks;
  if (ok) {
    /* dirty stays set: until the flush is reported, a blocks_sync() (say,
     * of another thread) must still fdatasync this pack. */
    from = p->flushed;
    to = p->end;
  }
  pthread_mutex_unlock(&bs->wmu);
  if (!ok)
    return blocks_sync(bs);
  int err = 0;
  uint8_t *buf = malloc(to - from ? (size_t)(to - from) : 1);
  if (!buf)
    err = -ENOMEM;
  /* The write-out starts now, blocks_sync_wait() waits for it; the sum
   * lets recovery tell whether the bytes got to the disk. */
  else if (sync_file_range(p->fd, (off_t)from, (off_t)(to - from), SYNC_FILE_RANGE_WRITE) < 0)
    err = -errno;
  else
    err = pread_all(p->fd, buf, (size_t)(to - from), from);
  if (err == 0) {
    owed->pack = pack;
    owed->from = from;
    owed->to = to;
    owed->sum = XXH3_64bits(buf, (size_t)(to - from));
  }
  free(buf);
  if (err) {
    pthread_mutex_lock(&bs->wmu);
    bs->defer = -1; /* see blocks_sync() */
    pthread_mutex_unlock(&bs->wmu);
    return err;
  }
  return 1;
}

int blocks_sync_wait(struct blocks *bs, const struct blocks_flush *owed)
{
  if (bs->rdonly || owed->pack == 0)
    return 0;
  /* Under smu: a blocks_sync() of another thread (a background seal)
   * whose fdatasync() took a write-back error of these pages -- reported
   * once, to it -- has made the error sticky before we look. */
  pthread_mutex_lock(&bs->smu);
  pthread_mutex_lock(&bs->wmu);
  int sticky = bs->write_err;
  struct pack *p = owed->pack <= bs->npacks ? &bs->packs[owed->pack - 1] : NULL;
  pthread_mutex_unlock(&bs->wmu);
  /* Asked again after a failure (a retried append): the error stands. */
  if (sticky || !p) {
    pthread_mutex_unlock(&bs->smu);
    return sticky;
  }
  if (sync_file_range(p->fd, (off_t)owed->from, (off_t)(owed->to - owed->from),
                      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                          SYNC_FILE_RANGE_WAIT_AFTER) == 0) {
    pthread_mutex_unlock(&bs->smu);
    return 0;
  }
  /* The write-back failed: the kernel reports that once, and may have
   * dropped the pages, so no later sync could tell. Refuse further appends
   * (as after an append that could not be undone) until the store is
   * reopened, which checks what the packs hold. */
  int err = -errno;
  forget_cached(p->fd);
  pthread_mutex_lock(&bs->wmu);
  if (!bs->write_err)
    bs->write_err = err;
  pthread_mutex_unlock(&bs->wmu);
  pthread_mutex_unlock(&bs->smu);
  return err;
}

void blocks_flushed(struct blocks *bs, const struct blocks_flush *owed)
{
  if (bs->rdonly || owed->pack == 0)
    return;
  pthread_mutex_lock(&bs->wmu);
  if (owed->pack <= bs->npacks) {
    struct pack *p = &bs->packs[owed->pack - 1];
    if (p->flushed >= owed->from && p->flushed < owed->to)
      p->flushed = owed->to;
    if (p->end == p->flushed)
      p->dirty = false; /* nothing appended since */
  }
  pthread_mutex_unlock(&bs->wmu);
}

/* 1 if FD holds F's range (its sum), 0 if not (a pack cut short too), or -errno. */
static int range_holds(int fd, const struct blocks_flush *f, uint8_t *buf)
{
  size_t n = (size_t)(f->to - f->from);
  int r = pread_all(fd, buf, n, f->from);
  if (r == -BFS_ECHECKSUM)
    return 0;
  return r < 0 ? r : XXH3_64bits(buf, n) == f->sum;
}

int blocks_flush_held(const char *dir, const struct blocks_flush *f, bool durable)
{
  if (f->pack == 0 || f->to < f->from || f->to - f->from > (64u << 20))
    return 0;
  char name[32], path[PATH_MAX + 40];
  pack_name(f->pack - 1, name);
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT ? 0 : -errno;
  size_t n = (size_t)(f->to - f->from);
  uint8_t *buf = malloc(n ? n : 1);
  int held = buf ? range_holds(fd, f, buf) : -ENOMEM;
  /* Made durable before the writer appends anything a later check would no
   * longer look past (a newer note, a checkpoint). After a write-back
   * error the cached pages say nothing: those records were never
   * acknowledged if the disk lacks them. */
  if (held == 1 && durable && fdatasync(fd) < 0) {
    posix_fadvise(fd, (off_t)f->from, (off_t)n, POSIX_FADV_DONTNEED);
    held = range_holds(fd, f, buf);
    if (held == 1 && fdatasync(fd) < 0)
      held = -errno;
  }
  free(buf);
  close(fd);
  return held;
}

int blocks_stats(struct blocks *bs, struct blocks_stats *st)
{
  memset(st, 0, sizeof *st);
  pthread_mutex_lock(&bs->mu);
  int err = refresh_locked(bs);
  st->count = bs->tab_n;
  st->raw_bytes = bs->raw_bytes;
  st->stored_bytes = bs->record_bytes;
  st->packs = bs->npacks;
  for (uint32_t i = 0; i < bs->npacks; i++) {
    struct stat sb;
    if (fstat(bs->packs[i].fd, &sb) == 0)
      st->pack_bytes += (uint64_t)sb.st_size;
  }
  pthread_mutex_unlock(&bs->mu);
  return err;
}

/* ---- the parallel write path ---- */

#define SEG_SIZE (4u << 20) /* bytes read per segment */
#define SEG_LIVE 3          /* segments in memory at once */
#define QUEUE_CAP 256
/* A worker takes up to this many jobs at once: they are hashed together
 * (store/sha256.h: three lanes, each taking the next job when done). */
#define JOBS_TAKE 8

struct seg {
  uint8_t *buf;
  int refs;
};

struct job {
  const uint8_t *data;
  size_t len, idx;
  struct seg *seg;
};

struct pipeline {
  struct blocks *bs;
  pthread_mutex_t mu;
  pthread_cond_t cv_work, cv_main;
  struct job q[QUEUE_CAP];
  size_t qhead, qlen;
  bool closing;
  int err;
  int live_segs;
  size_t cap;
  struct blocks_list *out;
  pthread_t tid[64];
  int nthreads;
  bool hungry; /* the reader waits for a segment: take single jobs */
  /* No worker: the jobs waiting to be hashed together (JOBS_TAKE at once). */
  struct job held[JOBS_TAKE];
  int nheld;
};

static void seg_release_locked(struct pipeline *p, struct seg *s)
{
  if (s && --s->refs == 0) {
    free(s->buf);
    free(s);
    p->live_segs--;
    pthread_cond_broadcast(&p->cv_main);
  }
}

static void job_done_locked(struct pipeline *p, const struct job *j, const hash_t *h, int r,
                            uint64_t stored)
{
  if (r < 0) {
    if (!p->err)
      p->err = r;
  } else {
    p->out->hash[j->idx] = *h;
    if (r == 1) {
      p->out->written++;
      p->out->written_bytes += stored;
    }
  }
  seg_release_locked(p, j->seg);
}

/*
 * Hashes and stores N jobs, then records them under p->mu (held on entry
 * and on return; released meanwhile).
 */
static void run_jobs_locked(struct pipeline *p, const struct job *j, int n)
{
  bool skip = p->err != 0;
  pthread_mutex_unlock(&p->mu);
  hash_t h[JOBS_TAKE];
  uint64_t stored[JOBS_TAKE] = {0};
  int r[JOBS_TAKE] = {0};
  if (!skip) {
    const void *data[JOBS_TAKE];
    size_t len[JOBS_TAKE];
    for (int i = 0; i < n; i++) {
      data[i] = j[i].data;
      len[i] = j[i].len;
    }
    sha256_bufs((size_t)n, data, len, h);
    for (int i = 0; i < n; i++)
      r[i] = store_hashed(p->bs, &h[i], j[i].data, j[i].len, &stored[i]);
  }
  pthread_mutex_lock(&p->mu);
  for (int i = 0; i < n; i++) {
    if (skip)
      seg_release_locked(p, j[i].seg);
    else
      job_done_locked(p, &j[i], &h[i], r[i], stored[i]);
  }
}

/* No worker: runs the jobs held back to be hashed together. */
static void run_held_locked(struct pipeline *p)
{
  struct job j[JOBS_TAKE];
  int n = p->nheld;
  memcpy(j, p->held, (size_t)n * sizeof *j);
  p->nheld = 0;
  if (n)
    run_jobs_locked(p, j, n);
}

/* Takes the queued jobs, up to JOBS_TAKE, at least two unless no second is
 * coming soon (the input ended, or the reader waits for memory that queued
 * jobs hold): one job alone is hashed on one lane. */
static void *worker(void *arg)
{
  struct pipeline *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (p->qlen == 0 ? !p->closing : p->qlen == 1 && !p->closing && !p->hungry)
      pthread_cond_wait(&p->cv_work, &p->mu);
    if (p->qlen == 0)
      break;
    struct job j[JOBS_TAKE];
    int n = p->qlen < JOBS_TAKE ? (int)p->qlen : JOBS_TAKE;
    for (int i = 0; i < n; i++) {
      j[i] = p->q[p->qhead];
      p->qhead = (p->qhead + 1) % QUEUE_CAP;
      p->qlen--;
    }
    pthread_cond_broadcast(&p->cv_main);
    run_jobs_locked(p, j, n);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

static int pipeline_start(struct pipeline *p, struct blocks *bs, struct blocks_list *out,
                          bool small)
{
  memset(p, 0, sizeof *p);
  memset(out, 0, sizeof *out);
  p->bs = bs;
  p->out = out;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv_work, NULL);
  pthread_cond_init(&p->cv_main, NULL);
  /* With one thread the caller does the work inline (no worker). */
  /* A small input (a chunk or two) is not worth starting threads for. */
  int want = bs->threads > 1 && !small ? bs->threads : 0;
  for (int i = 0; i < want; i++) {
    if (pthread_create(&p->tid[i], NULL, worker, p) != 0)
      break;
    p->nthreads++;
  }
  return 0;
}

/* Waits for the workers and returns the first error. */
static int pipeline_finish(struct pipeline *p)
{
  pthread_mutex_lock(&p->mu);
  run_held_locked(p);
  p->closing = true;
  pthread_cond_broadcast(&p->cv_work);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->nthreads; i++)
    pthread_join(p->tid[i], NULL);
  int err = p->err;
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv_work);
  pthread_cond_destroy(&p->cv_main);
  if (err)
    blocks_list_free(p->out);
  return err;
}

static int pipeline_submit(struct pipeline *p, const uint8_t *data, size_t len, struct seg *s)
{
  pthread_mutex_lock(&p->mu);
  if (p->err) {
    int err = p->err;
    pthread_mutex_unlock(&p->mu);
    return err;
  }
  struct blocks_list *o = p->out;
  if (o->n == p->cap) {
    size_t ncap = p->cap ? 2 * p->cap : 64;
    hash_t *nh = realloc(o->hash, ncap * sizeof *nh);
    if (nh)
      o->hash = nh;
    uint32_t *ns = nh ? realloc(o->size, ncap * sizeof *ns) : NULL;
    if (ns)
      o->size = ns;
    if (!nh || !ns) {
      p->err = -ENOMEM;
      pthread_mutex_unlock(&p->mu);
      return -ENOMEM;
    }
    p->cap = ncap;
  }
  struct job j = {data, len, o->n, s};
  o->size[o->n] = (uint32_t)len;
  o->total += len;
  o->n++;
  if (s)
    s->refs++;
  if (p->nthreads == 0) {
    /* Inline, JOBS_TAKE at a time (the rest at the end). */
    p->held[p->nheld++] = j;
    if (p->nheld == JOBS_TAKE)
      run_held_locked(p);
    int err = p->err;
    pthread_mutex_unlock(&p->mu);
    return err;
  }
  while (p->qlen == QUEUE_CAP)
    pthread_cond_wait(&p->cv_main, &p->mu);
  p->q[(p->qhead + p->qlen) % QUEUE_CAP] = j;
  p->qlen++;
  pthread_cond_signal(&p->cv_work);
  pthread_mutex_unlock(&p->mu);
  return 0;
}

int blocks_write_buf(struct blocks *bs, const void *data, size_t len, struct blocks_list *out)
{
  struct pipeline p;
  pipeline_start(&p, bs, out, len <= 2 * CHUNK_MIN);
  const uint8_t *b = data;
  struct chunker c;
  chunker_init(&c);
  size_t off = 0, start = 0;
  int err = 0;
  while (off < len && !err) {
    bool cut;
    off += chunker_feed(&c, b + off, len - off, &cut);
    if (cut || off == len) {
      err = pipeline_submit(&p, b + start, off - start, NULL);
      start = off;
    }
  }
  int ferr = pipeline_finish(&p);
  if (err && !ferr)
    blocks_list_free(out);
  return err ? err : ferr;
}

static struct seg *seg_new(struct pipeline *p)
{
  pthread_mutex_lock(&p->mu);
  while (p->live_segs >= SEG_LIVE && !p->err) {
    if (p->nheld) { /* no worker: nobody else will run them */
      run_held_locked(p);
      continue;
    }
    if (!p->hungry) {
      p->hungry = true; /* a job alone in the queue must not wait for a second */
      pthread_cond_broadcast(&p->cv_work);
    }
    pthread_cond_wait(&p->cv_main, &p->mu);
  }
  p->hungry = false;
  struct seg *s = NULL;
  if (!p->err) {
    s = malloc(sizeof *s);
    if (s && !(s->buf = malloc(SEG_SIZE + CHUNK_MAX))) {
      free(s);
      s = NULL;
    }
    if (s) {
      s->refs = 1; /* the reader's */
      p->live_segs++;
    }
  }
  pthread_mutex_unlock(&p->mu);
  return s;
}

static void seg_drop(struct pipeline *p, struct seg *s)
{
  pthread_mutex_lock(&p->mu);
  seg_release_locked(p, s);
  pthread_mutex_unlock(&p->mu);
}

int blocks_write_fd(struct blocks *bs, int fd, struct blocks_list *out)
{
  struct pipeline p;
  pipeline_start(&p, bs, out, false);
  struct chunker c;
  chunker_init(&c);
  struct seg *s = NULL, *prev = NULL;
  size_t carry = 0, prev_start = 0;
  int err = 0;
  bool eof = false;
  while (!eof && !err) {
    s = seg_new(&p);
    if (!s) {
      err = p.err ? p.err : -ENOMEM;
      break;
    }
    /* The incomplete chunk at the end of the previous segment moves here:
     * the chunker's state already covers those bytes. It is < CHUNK_MAX. */
    if (prev) {
      memcpy(s->buf, prev->buf + prev_start, carry);
      seg_drop(&p, prev);
      prev = NULL;
    }
    size_t len = carry;
    while (len < SEG_SIZE + carry) {
      ssize_t r = read(fd, s->buf + len, SEG_SIZE + carry - len);
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0) {
        err = -errno;
        break;
      }
      if (r == 0) {
        eof = true;
        break;
      }
      len += (size_t)r;
    }
    if (err)
      break;
    size_t off = carry, start = 0;
    while (off < len && !err) {
      bool cut;
      off += chunker_feed(&c, s->buf + off, len - off, &cut);
      if (cut) {
        err = pipeline_submit(&p, s->buf + start, off - start, s);
        start = off;
      }
    }
    if (!err && eof && start < len)
      err = pipeline_submit(&p, s->buf + start, len - start, s);
    carry = len - start;
    prev = s;
    prev_start = start;
    s = NULL;
  }
  if (prev)
    seg_drop(&p, prev);
  if (s)
    seg_drop(&p, s);
  int ferr = pipeline_finish(&p);
  if (err && !ferr)
    blocks_list_free(out);
  return err ? err : ferr;
}

void blocks_list_free(struct blocks_list *l)
{
  free(l->hash);
  free(l->size);
  memset(l, 0, sizeof *l);
}
