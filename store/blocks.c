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
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include "store/chunk.h"
#include "store/error.h"

static const uint8_t block_magic[4] = {'B', 'F', 'S', 'b'};

enum { CODEC_RAW = 0, CODEC_ZSTD = 1 };

struct blocks {
  int dirfd;
  char *dir;
  int level;
  int threads;
  atomic_ulong unsynced; /* blocks written since the last blocks_sync() */
  atomic_ulong tmp_seq;
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

/* "ab/cdef..." relative to the store directory. */
static void block_name(const hash_t *h, char out[HASH_HEX_SIZE + 1])
{
  char hex[HASH_HEX_SIZE];
  hash_to_hex(h, hex);
  out[0] = hex[0];
  out[1] = hex[1];
  out[2] = '/';
  memcpy(out + 3, hex + 2, HASH_HEX_SIZE - 2);
}

void blocks_path(struct blocks *bs, const hash_t *h, char *out, size_t cap)
{
  char name[HASH_HEX_SIZE + 1];
  block_name(h, name);
  snprintf(out, cap, "%s/%s", bs->dir, name);
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

/* Reads a whole file below DIRFD, refusing anything larger than MAX. */
static int read_file_at(int dirfd, const char *name, size_t max, uint8_t **buf, size_t *len)
{
  int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  struct stat st;
  int err = 0;
  uint8_t *b = NULL;
  if (fstat(fd, &st) < 0) {
    err = -errno;
    goto out;
  }
  if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
    err = -BFS_ECHECKSUM;
    goto out;
  }
  size_t n = (size_t)st.st_size, got = 0;
  b = malloc(n ? n : 1);
  if (!b) {
    err = -ENOMEM;
    goto out;
  }
  while (got < n) {
    ssize_t r = read(fd, b + got, n - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      err = -errno;
      goto out;
    }
    if (r == 0)
      break; /* shrank under us: the parse will reject it */
    got += (size_t)r;
  }
  *buf = b;
  *len = got;
  b = NULL;
out:
  free(b);
  close(fd);
  return err;
}

/* The largest stored file a valid block can have. */
static size_t stored_max(void)
{
  return BLOCKS_HEADER_SIZE + ZSTD_compressBound(BLOCKS_MAX_SIZE);
}

/* ---- hashing ---- */

void blocks_hash(const void *data, size_t len, hash_t *out)
{
  hash_buf(data, len, out);
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
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  if (flags & BLOCKS_CREATE) {
    char sub[4];
    for (int i = 0; i < 256; i++) {
      snprintf(sub, sizeof sub, "%02x", i);
      if (mkdirat(fd, sub, 0755) < 0 && errno != EEXIST) {
        err = -errno;
        close(fd);
        return err;
      }
    }
    if (mkdirat(fd, "tmp", 0755) < 0 && errno != EEXIST) {
      err = -errno;
      close(fd);
      return err;
    }
  }
  struct blocks *bs = calloc(1, sizeof *bs);
  if (!bs || !(bs->dir = strdup(dir))) {
    free(bs);
    close(fd);
    return -ENOMEM;
  }
  bs->dirfd = fd;
  bs->level = BLOCKS_DEFAULT_LEVEL;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  bs->threads = ncpu < 1 ? 1 : ncpu > 4 ? 4 : (int)ncpu;
  atomic_init(&bs->unsynced, 0);
  atomic_init(&bs->tmp_seq, 0);
  *out = bs;
  return 0;
}

void blocks_close(struct blocks *bs)
{
  if (!bs)
    return;
  close(bs->dirfd);
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

void blocks_set_threads(struct blocks *bs, int n)
{
  bs->threads = n < 1 ? 1 : n > 64 ? 64 : n;
}

/* ---- writing ---- */

/* 1 if NAME holds an intact stored block (header + XXH64), else 0. */
static int present_intact(struct blocks *bs, const char *name)
{
  uint8_t *file;
  size_t len;
  if (read_file_at(bs->dirfd, name, stored_max(), &file, &len) < 0)
    return 0;
  int codec;
  uint32_t raw;
  int ok = parse_header(file, len, &codec, &raw) == 0;
  free(file);
  return ok;
}

/* Writes a complete stored file under NAME: temp file, then rename. */
static int write_stored(struct blocks *bs, const char *name, const uint8_t *hdr,
                        const uint8_t *payload, size_t plen)
{
  char tmp[HASH_HEX_SIZE + 64];
  unsigned long seq = atomic_fetch_add(&bs->tmp_seq, 1);
  snprintf(tmp, sizeof tmp, "tmp/%.8s.%ld.%lu", name + 3, (long)getpid(), seq);
  int fd = openat(bs->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0 && errno == ENOENT && mkdirat(bs->dirfd, "tmp", 0755) == 0)
    fd = openat(bs->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    return -errno;
  struct iovec iov[2] = {{(void *)hdr, BLOCKS_HEADER_SIZE}, {(void *)payload, plen}};
  size_t want = BLOCKS_HEADER_SIZE + plen, done = 0;
  int err = 0;
  while (done < want) {
    ssize_t r = writev(fd, iov, 2);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      err = -errno;
      break;
    }
    done += (size_t)r;
    /* advance the iovecs past what was written */
    size_t adv = (size_t)r;
    for (int i = 0; i < 2; i++) {
      size_t k = adv < iov[i].iov_len ? adv : iov[i].iov_len;
      iov[i].iov_base = (uint8_t *)iov[i].iov_base + k;
      iov[i].iov_len -= k;
      adv -= k;
    }
  }
  if (close(fd) < 0 && !err)
    err = -errno;
  if (!err && renameat(bs->dirfd, tmp, bs->dirfd, name) < 0) {
    err = -errno;
    if (err == -ENOENT) { /* the fan-out directory is missing: make it */
      char sub[3] = {name[0], name[1], 0};
      if (mkdirat(bs->dirfd, sub, 0755) == 0 || errno == EEXIST)
        err = renameat(bs->dirfd, tmp, bs->dirfd, name) < 0 ? -errno : 0;
    }
  }
  if (err)
    unlinkat(bs->dirfd, tmp, 0);
  else
    atomic_fetch_add(&bs->unsynced, 1);
  return err;
}

/*
 * Stores DATA under its known hash H. Returns 1 written (*stored = bytes on
 * disk), 0 already present, or an error.
 */
static int store_hashed(struct blocks *bs, const hash_t *h, const void *data, size_t len,
                        uint64_t *stored)
{
  if (len > BLOCKS_MAX_SIZE)
    return -BFS_ETOOBIG;
  char name[HASH_HEX_SIZE + 1];
  block_name(h, name);
  if (present_intact(bs, name))
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
  int err = write_stored(bs, name, hdr, payload, plen);
  free(z);
  if (err)
    return err;
  if (stored)
    *stored = BLOCKS_HEADER_SIZE + plen;
  return 1;
}

int blocks_put(struct blocks *bs, const void *data, size_t len, hash_t *out)
{
  if (len > BLOCKS_MAX_SIZE)
    return -BFS_ETOOBIG;
  blocks_hash(data, len, out);
  return store_hashed(bs, out, data, len, NULL);
}

int blocks_put_stored(struct blocks *bs, const uint8_t *file, size_t len, const hash_t *expect)
{
  uint8_t *data;
  size_t dlen;
  int err = blocks_decode(file, len, expect, &data, &dlen);
  if (err)
    return err;
  free(data);
  char name[HASH_HEX_SIZE + 1];
  block_name(expect, name);
  if (present_intact(bs, name))
    return 0;
  err = write_stored(bs, name, file, file + BLOCKS_HEADER_SIZE, len - BLOCKS_HEADER_SIZE);
  return err ? err : 1;
}

int blocks_has(struct blocks *bs, const hash_t *h)
{
  char name[HASH_HEX_SIZE + 1];
  block_name(h, name);
  struct stat st;
  if (fstatat(bs->dirfd, name, &st, 0) == 0)
    return S_ISREG(st.st_mode) ? 1 : 0;
  return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
}

int blocks_get_stored(struct blocks *bs, const hash_t *h, uint8_t **file, size_t *len)
{
  char name[HASH_HEX_SIZE + 1];
  block_name(h, name);
  return read_file_at(bs->dirfd, name, stored_max(), file, len);
}

int blocks_get(struct blocks *bs, const hash_t *h, uint8_t **data, size_t *len)
{
  uint8_t *file;
  size_t flen;
  int err = blocks_get_stored(bs, h, &file, &flen);
  if (err)
    return err;
  err = blocks_decode(file, flen, h, data, len);
  free(file);
  /* A malformed file in our own store is damage, whatever the cause. */
  return err == -BFS_EFORMAT ? -BFS_ECHECKSUM : err;
}

int blocks_size(struct blocks *bs, const hash_t *h, uint32_t *len)
{
  char name[HASH_HEX_SIZE + 1];
  block_name(h, name);
  int fd = openat(bs->dirfd, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  uint8_t hdr[BLOCKS_HEADER_SIZE];
  ssize_t r = pread(fd, hdr, sizeof hdr, 0);
  int err = r < 0 ? -errno : 0;
  close(fd);
  if (err)
    return err;
  if (r != (ssize_t)sizeof hdr || memcmp(hdr, block_magic, 4) != 0 ||
      hdr[4] != BLOCKS_FORMAT_VERSION || get_le32(hdr + 8) > BLOCKS_MAX_SIZE)
    return -BFS_ECHECKSUM;
  *len = get_le32(hdr + 8);
  return 0;
}

int blocks_sync(struct blocks *bs)
{
  unsigned long n = atomic_exchange(&bs->unsynced, 0);
  if (n == 0)
    return 0;
  if (syncfs(bs->dirfd) < 0) {
    int err = -errno;
    atomic_fetch_add(&bs->unsynced, n);
    return err;
  }
  return 0;
}

int blocks_stats(struct blocks *bs, struct blocks_stats *st)
{
  memset(st, 0, sizeof *st);
  for (int i = 0; i < 256; i++) {
    char sub[3];
    snprintf(sub, sizeof sub, "%02x", i);
    int fd = openat(bs->dirfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT)
        continue;
      return -errno;
    }
    DIR *d = fdopendir(fd);
    if (!d) {
      int err = -errno;
      close(fd);
      return err;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
      if (strlen(de->d_name) != 2 * HASH_SIZE - 2)
        continue;
      int bfd = openat(fd, de->d_name, O_RDONLY | O_CLOEXEC);
      if (bfd < 0)
        continue;
      struct stat sb;
      uint8_t hdr[BLOCKS_HEADER_SIZE];
      if (fstat(bfd, &sb) == 0) {
        st->count++;
        st->stored_bytes += (uint64_t)sb.st_size;
        if (pread(bfd, hdr, sizeof hdr, 0) == (ssize_t)sizeof hdr && memcmp(hdr, block_magic, 4) == 0)
          st->raw_bytes += get_le32(hdr + 8);
        else
          st->damaged++;
      }
      close(bfd);
    }
    closedir(d);
  }
  return 0;
}

/* ---- the parallel write path ---- */

#define SEG_SIZE (4u << 20) /* bytes read per segment */
#define SEG_LIVE 3          /* segments in memory at once */
#define QUEUE_CAP 256

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

static int run_job(struct blocks *bs, const struct job *j, hash_t *h, uint64_t *stored)
{
  blocks_hash(j->data, j->len, h);
  return store_hashed(bs, h, j->data, j->len, stored);
}

static void *worker(void *arg)
{
  struct pipeline *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (p->qlen == 0 && !p->closing)
      pthread_cond_wait(&p->cv_work, &p->mu);
    if (p->qlen == 0)
      break;
    struct job j = p->q[p->qhead];
    p->qhead = (p->qhead + 1) % QUEUE_CAP;
    p->qlen--;
    pthread_cond_broadcast(&p->cv_main);
    bool skip = p->err != 0;
    pthread_mutex_unlock(&p->mu);
    hash_t h;
    uint64_t stored = 0;
    int r = skip ? 0 : run_job(p->bs, &j, &h, &stored);
    pthread_mutex_lock(&p->mu);
    if (skip)
      seg_release_locked(p, j.seg);
    else
      job_done_locked(p, &j, &h, r, stored);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

static int pipeline_start(struct pipeline *p, struct blocks *bs, struct blocks_list *out)
{
  memset(p, 0, sizeof *p);
  memset(out, 0, sizeof *out);
  p->bs = bs;
  p->out = out;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv_work, NULL);
  pthread_cond_init(&p->cv_main, NULL);
  /* With one thread the caller does the work inline (no worker). */
  int want = bs->threads > 1 ? bs->threads : 0;
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
    pthread_mutex_unlock(&p->mu);
    hash_t h;
    uint64_t stored = 0;
    int r = run_job(p->bs, &j, &h, &stored);
    pthread_mutex_lock(&p->mu);
    job_done_locked(p, &j, &h, r, stored);
    pthread_mutex_unlock(&p->mu);
    return r < 0 ? r : 0;
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
  pipeline_start(&p, bs, out);
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
  while (p->live_segs >= SEG_LIVE && !p->err)
    pthread_cond_wait(&p->cv_main, &p->mu);
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
  pipeline_start(&p, bs, out);
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
