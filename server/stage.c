/* Write staging files; see stage.h. */
#include "server/stage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define INDEX_SIZE 1024 /* a power of two */
/* Recycled files: up to SPARE_MAX (as many as files may be staged, so a
 * steady state of evictions never creates nor deletes an inode), the first
 * SPARE_OPEN of them kept open. A pooled file keeps its blocks (a rewrite
 * lands on allocated blocks) up to SPARE_KEEP_SIZE; a larger one is
 * emptied. The pool is at most SPARE_MAX * SPARE_KEEP_SIZE of junk. */
#define SPARE_MAX 256
#define SPARE_OPEN 16
#define SPARE_KEEP_SIZE (64u << 10)
#define SIZE_UNKNOWN UINT64_MAX
/* Memory files kept for reuse (stage_set_memory), pages and all: a new one
 * would cost a memfd_create and a fresh page per write. Each is pooled with
 * its real length (fstat: it may hold more than its file showed), which
 * the next FILL is given as junk to cut; at most MEM_SPARE_MAX * the file
 * limit of it. */
#define MEM_SPARE_MAX 32

struct stage_file {
  struct stage_file *next, *prev; /* the write-order list */
  struct stage_file *hnext;       /* the object index's chain */
  hash_t obj;
  hash_t base;
  hash_t uname; /* the file's own name while not durable (<uname>.u) */
  int fd;
  bool in_memory; /* fd is a memfd: no name, no disk (stage_set_memory) */
  bool durable;   /* renamed to .s */
  bool dirty;
  uint64_t size;
  uint64_t base_size;
  uint64_t mtime_ns;
  uint64_t last_write;
  /* Since the base: written ranges, the least size, the base's blocks. */
  struct content_range *ranges;
  size_t nranges, cranges;
  uint64_t clean_end;
  struct blocks_list blocks;
  bool junk_tail; /* a failed write may have left bytes past size */
};

struct stage {
  char dir[PATH_MAX];
  int dirfd;
  struct stage_file *files; /* most recently written last */
  struct stage_file *last;
  size_t count;
  /* Object index: stage_get() runs on every file attribute load (each
   * READDIRPLUS entry), the list order changes on every write; both stay
   * O(1) with hundreds of staged files. */
  struct stage_file *index[INDEX_SIZE];
  struct stage_file *spare[SPARE_MAX]; /* recycled files, <uname>.u */
  size_t nspare, nspare_open;
  uint64_t salt, seq; /* for new unames */
  uint64_t changes;   /* see stage_changes() */
  uint64_t mem_file_max, mem_total_max; /* stage_set_memory */
  uint64_t mem_bytes;                   /* the sizes of the files in memory */
  struct mem_spare {
    int fd;
    uint64_t len;
  } mem_spare[MEM_SPARE_MAX];
  size_t nmem_spare;
};

/* Forgets what F shared with a base. */
static void base_reset(struct stage_file *f)
{
  free(f->ranges);
  f->ranges = NULL;
  f->nranges = f->cranges = 0;
  blocks_list_free(&f->blocks);
}

static void file_free(struct stage_file *f)
{
  base_reset(f);
  if (f->fd >= 0)
    close(f->fd);
  free(f);
}

/* Pools F (a .u, out of the list); false if the pool is full. */
static bool spare_put(struct stage *s, struct stage_file *f)
{
  if (s->nspare == SPARE_MAX)
    return false;
  base_reset(f);
  if (f->fd >= 0 && f->size != 0 && f->size > SPARE_KEEP_SIZE) {
    f->size = ftruncate(f->fd, 0) == 0 ? 0 : SIZE_UNKNOWN;
  }
  if (f->fd >= 0 && s->nspare_open >= SPARE_OPEN) {
    close(f->fd);
    f->fd = -1;
  }
  if (f->fd >= 0)
    s->nspare_open++;
  s->spare[s->nspare++] = f;
  return true;
}

/* Removes pool entry K. */
static struct stage_file *spare_remove(struct stage *s, size_t k)
{
  struct stage_file *f = s->spare[k];
  s->spare[k] = s->spare[--s->nspare];
  if (f->fd >= 0)
    s->nspare_open--;
  return f;
}

/* A fresh name for a new file: unique in DIR (a per-start salt and a
 * sequence; object ids are SHA-256 digests and never look like it). */
static hash_t new_uname(struct stage *s)
{
  hash_t h;
  memset(&h, 0, sizeof h);
  memcpy(h.bytes + 16, &s->salt, sizeof s->salt);
  uint64_t n = ++s->seq;
  memcpy(h.bytes + 24, &n, sizeof n);
  return h;
}

static void file_name(const hash_t *obj, const char *suffix, char out[80])
{
  char hex[HASH_HEX_SIZE];
  hash_to_hex(obj, hex);
  snprintf(out, 80, "%s.%s", hex, suffix);
}

static size_t index_slot(const hash_t *obj)
{
  uint64_t h;
  memcpy(&h, obj->bytes, sizeof h); /* object ids are SHA-256 digests */
  return (size_t)(h & (INDEX_SIZE - 1));
}

/* Appends F (the most recently written) and indexes it. */
static void list_add(struct stage *s, struct stage_file *f)
{
  f->next = NULL;
  f->prev = s->last;
  if (s->last)
    s->last->next = f;
  else
    s->files = f;
  s->last = f;
  size_t i = index_slot(&f->obj);
  f->hnext = s->index[i];
  s->index[i] = f;
  s->count++;
}

static void list_remove(struct stage *s, struct stage_file *f)
{
  if (f->prev)
    f->prev->next = f->next;
  else
    s->files = f->next;
  if (f->next)
    f->next->prev = f->prev;
  else
    s->last = f->prev;
  for (struct stage_file **p = &s->index[index_slot(&f->obj)]; *p; p = &(*p)->hnext)
    if (*p == f) {
      *p = f->hnext;
      break;
    }
  s->count--;
}

/* Moves F to the end (the most recently written). */
static void list_touch(struct stage *s, struct stage_file *f)
{
  if (s->last == f)
    return;
  list_remove(s, f);
  list_add(s, f);
}

static int recover(struct stage *s)
{
  DIR *d = fdopendir(dup(s->dirfd));
  if (!d)
    return -errno;
  struct dirent *de;
  int r = 0;
  while (r == 0 && (de = readdir(d))) {
    size_t n = strlen(de->d_name);
    if (n != 2 * HASH_SIZE + 2 || de->d_name[2 * HASH_SIZE] != '.')
      continue;
    char hex[HASH_HEX_SIZE];
    memcpy(hex, de->d_name, 2 * HASH_SIZE);
    hex[2 * HASH_SIZE] = '\0';
    hash_t obj;
    if (hash_from_hex(hex, &obj) < 0)
      continue;
    char kind = de->d_name[n - 1];
    if (kind != 's') {
      /* .u (never acknowledged as durable: its bytes are junk; the inode
       * is recycled, unopened, of unknown length) and .t (a copy in
       * progress, from older versions). */
      struct stage_file *f = kind == 'u' ? calloc(1, sizeof *f) : NULL;
      if (f) {
        f->obj = obj;
        f->uname = obj;
        f->fd = -1;
        f->size = SIZE_UNKNOWN;
        if (spare_put(s, f))
          continue;
        free(f);
      }
      unlinkat(s->dirfd, de->d_name, 0);
      continue;
    }
    int fd = openat(s->dirfd, de->d_name, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
      r = -errno;
      if (fd >= 0)
        close(fd);
      break;
    }
    struct stage_file *f = calloc(1, sizeof *f);
    if (!f) {
      close(fd);
      r = -ENOMEM;
      break;
    }
    f->obj = obj;
    f->uname = new_uname(s);
    f->fd = fd;
    f->durable = true;
    f->dirty = true;
    f->size = (uint64_t)st.st_size;
    f->mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
    list_add(s, f);
  }
  closedir(d);
  return r;
}

int stage_open(const char *dir, struct stage **out)
{
  struct stage *s = calloc(1, sizeof *s);
  if (!s)
    return -ENOMEM;
  if (snprintf(s->dir, sizeof s->dir, "%s", dir) >= (int)sizeof s->dir) {
    free(s);
    return -ENAMETOOLONG;
  }
  if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
    free(s);
    return -errno;
  }
  s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (s->dirfd < 0) {
    int r = -errno;
    free(s);
    return r;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  s->salt = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^ ((uint64_t)getpid() << 40);
  int r = recover(s);
  if (r < 0) {
    stage_free(s);
    return r;
  }
  *out = s;
  return 0;
}

/* Deletes the recycled files (a full disk: they hold blocks). */
static void spare_release(struct stage *s)
{
  for (size_t i = 0; i < s->nspare; i++) {
    char name[80];
    file_name(&s->spare[i]->uname, "u", name);
    unlinkat(s->dirfd, name, 0);
    file_free(s->spare[i]);
  }
  s->nspare = s->nspare_open = 0;
}

void stage_free(struct stage *s)
{
  if (!s)
    return;
  while (s->files) {
    struct stage_file *f = s->files;
    s->files = f->next;
    file_free(f);
  }
  /* Pooled files stay (junk .u): the next start recycles them. */
  for (size_t i = 0; i < s->nspare; i++)
    file_free(s->spare[i]);
  for (size_t i = 0; i < s->nmem_spare; i++)
    close(s->mem_spare[i].fd);
  close(s->dirfd);
  free(s);
}

struct stage_file *stage_get(struct stage *s, const hash_t *obj)
{
  for (struct stage_file *f = s->index[index_slot(obj)]; f; f = f->hnext)
    if (memcmp(&f->obj, obj, sizeof *obj) == 0)
      return f;
  return NULL;
}

/* A recycled file (an open one if any), or NULL. */
static struct stage_file *spare_take(struct stage *s)
{
  if (s->nspare == 0)
    return NULL;
  size_t k = s->nspare - 1;
  for (size_t i = s->nspare; i-- > 0 && s->spare[k]->fd < 0;)
    if (s->spare[i]->fd >= 0)
      k = i;
  struct stage_file *f = spare_remove(s, k);
  if (f->fd < 0) {
    char name[80];
    file_name(&f->uname, "u", name);
    if ((f->fd = openat(s->dirfd, name, O_RDWR | O_CLOEXEC)) < 0) {
      unlinkat(s->dirfd, name, 0);
      free(f);
      return NULL;
    }
  }
  return f;
}

/* Writes all LEN bytes of P at OFF: 0 or -errno. */
static int pwrite_full(int fd, const void *p, size_t len, uint64_t off)
{
  for (size_t done = 0; done < len;) {
    ssize_t k = pwrite(fd, (const uint8_t *)p + done, len - done, (off_t)(off + done));
    if (k < 0 && errno != EINTR)
      return -errno;
    if (k > 0)
      done += (size_t)k;
  }
  return 0;
}

/* A file on disk for F (a recycled one, LEN bytes of junk, or a new empty
 * one): its descriptor and name. */
static int disk_take(struct stage *s, int *fd, hash_t *uname, uint64_t *len)
{
  struct stage_file *spare = spare_take(s);
  if (spare) {
    *fd = spare->fd;
    *uname = spare->uname;
    *len = spare->size;
    free(spare); /* pooled: no ranges, no blocks (spare_put) */
    return 0;
  }
  char name[80];
  *uname = new_uname(s);
  *len = 0;
  file_name(uname, "u", name);
  *fd = openat(s->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  return *fd < 0 ? -errno : 0;
}

/* Whether a file in memory may grow from FROM to TO bytes. */
static bool mem_fits(const struct stage *s, uint64_t from, uint64_t to)
{
  return s->mem_file_max > 0 && to <= s->mem_file_max && s->mem_bytes - from + to <= s->mem_total_max;
}

/* Pools memory file FD (or closes it). */
static void mem_spare_put(struct stage *s, int fd)
{
  struct stat st;
  if (s->nmem_spare < MEM_SPARE_MAX && fstat(fd, &st) == 0 && (uint64_t)st.st_size <= s->mem_file_max)
    s->mem_spare[s->nmem_spare++] = (struct mem_spare){fd, (uint64_t)st.st_size};
  else
    close(fd);
}

/* Moves F's bytes from memory to a file on disk (before it grows past what
 * memory may hold, or must be durable). */
static int spill(struct stage *s, struct stage_file *f)
{
  if (!f->in_memory)
    return 0;
  int fd;
  hash_t uname;
  uint64_t len;
  int r = disk_take(s, &fd, &uname, &len);
  if (r < 0)
    return r;
  /* (Right after stage_create the range FILL left out is not written
   * yet: stage_read gives zeros there, the caller's write follows.) */
  uint8_t *buf = malloc(f->size ? (size_t)f->size : 1);
  ssize_t got = buf ? stage_read(f, 0, buf, (size_t)f->size) : -ENOMEM;
  r = got < 0 ? (int)got : pwrite_full(fd, buf, (size_t)got, 0);
  free(buf);
  if (r == 0 && len > f->size && ftruncate(fd, (off_t)f->size) < 0)
    r = -errno;
  if (r < 0) {
    char name[80];
    file_name(&uname, "u", name);
    unlinkat(s->dirfd, name, 0);
    close(fd);
    if (r == -ENOSPC)
      spare_release(s);
    return r;
  }
  mem_spare_put(s, f->fd);
  s->mem_bytes -= f->size;
  f->fd = fd;
  f->uname = uname;
  f->in_memory = false;
  f->junk_tail = false; /* only the file's bytes were copied */
  return 0;
}

/* Frees F, gone from the list: its file, unless pooled, is deleted. */
static void discard(struct stage *s, struct stage_file *f)
{
  if (f->in_memory) {
    s->mem_bytes -= f->size;
    mem_spare_put(s, f->fd);
    f->fd = -1;
  } else {
    char name[80];
    file_name(f->durable ? &f->obj : &f->uname, f->durable ? "s" : "u", name);
    unlinkat(s->dirfd, name, 0);
  }
  file_free(f);
}

void stage_set_memory(struct stage *s, uint64_t file_max, uint64_t total_max)
{
  s->mem_file_max = file_max;
  s->mem_total_max = total_max;
}

uint64_t stage_memory_bytes(const struct stage *s) { return s->mem_bytes; }
bool stage_in_memory(const struct stage_file *f) { return f->in_memory; }

int stage_create(struct stage *s, const hash_t *obj, const hash_t *base, uint64_t size_hint,
                 int (*fill)(void *arg, int fd, uint64_t len, uint64_t *size), void *arg,
                 uint64_t now_ns, struct stage_file **out)
{
  if (stage_get(s, obj))
    return -EEXIST;
  struct stage_file *f = calloc(1, sizeof *f);
  if (!f)
    return -ENOMEM;
  uint64_t len = 0;
  int r = 0;
  f->fd = -1;
  if (mem_fits(s, 0, size_hint)) {
    if (s->nmem_spare > 0) {
      struct mem_spare m = s->mem_spare[--s->nmem_spare];
      f->fd = m.fd;
      len = m.len;
    } else {
      f->fd = memfd_create("basefs-stage", MFD_CLOEXEC);
    }
    f->in_memory = f->fd >= 0; /* else (no memfd, too many files): disk */
  }
  /* No temporary name, and no rename for a recycled file: a .u is junk at
   * start whatever it holds, so its name need not say whose it is. */
  if (f->fd < 0 && (r = disk_take(s, &f->fd, &f->uname, &len)) < 0) {
    free(f);
    return r;
  }
  uint64_t size = 0;
  if (fill)
    r = fill(arg, f->fd, len, &size);
  else if (len > 0 && ftruncate(f->fd, 0) < 0)
    r = -errno;
  if (r < 0) {
    discard(s, f); /* (f->size is 0: nothing of it was counted) */
    if (r == -ENOSPC)
      spare_release(s); /* as stage_write does: the pool holds blocks */
    return r;
  }
  s->changes++;
  if (f->in_memory)
    s->mem_bytes += size;
  f->obj = *obj;
  f->base = *base;
  f->size = size;
  f->base_size = size;
  f->clean_end = size;
  f->mtime_ns = now_ns;
  f->last_write = now_ns;
  list_add(s, f);
  *out = f;
  return 0;
}

int stage_sync(struct stage *s, struct stage_file *f)
{
  int r = spill(s, f);
  if (r < 0)
    return r;
  if (fdatasync(f->fd) < 0)
    return -errno;
  if (f->durable)
    return 0;
  char from[80], to[80];
  file_name(&f->uname, "u", from);
  file_name(&f->obj, "s", to);
  if (renameat(s->dirfd, from, s->dirfd, to) < 0)
    return -errno;
  /* Named .s from here on, whether the directory's fsync works or not:
   * stage_rebase and stage_drop go by this flag to find the file. */
  f->durable = true;
  return fsync(s->dirfd) < 0 ? -errno : 0;
}

/* Merges the two closest ranges (keeps the list bounded; a superset). */
static void ranges_squeeze(struct stage_file *f)
{
  size_t best = 0;
  uint64_t gap = UINT64_MAX;
  for (size_t i = 0; i + 1 < f->nranges; i++)
    if (f->ranges[i + 1].off - f->ranges[i].end < gap) {
      gap = f->ranges[i + 1].off - f->ranges[i].end;
      best = i;
    }
  f->ranges[best].end = f->ranges[best + 1].end;
  memmove(f->ranges + best + 1, f->ranges + best + 2,
          (f->nranges - best - 2) * sizeof *f->ranges);
  f->nranges--;
}

/* Notes [OFF, END) as written since the base. */
static int ranges_add(struct stage_file *f, uint64_t off, uint64_t end)
{
  if (off >= end || off >= f->clean_end)
    return 0; /* nothing, or past what is compared with the base anyway */
  struct content_range *r = f->ranges;
  size_t n = f->nranges;
  /* The first range that ends at or after OFF (touching ones merge). */
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (r[mid].end < off)
      lo = mid + 1;
    else
      hi = mid;
  }
  size_t last = lo;
  while (last < n && r[last].off <= end)
    last++;
  if (last > lo) {
    /* Overlaps ranges lo..last-1: one range covers them all. */
    if (r[lo].off > off)
      r[lo].off = off;
    r[lo].end = r[last - 1].end > end ? r[last - 1].end : end;
    memmove(r + lo + 1, r + last, (n - last) * sizeof *r);
    f->nranges = n - (last - lo - 1);
    return 0;
  }
  if (n == f->cranges) {
    size_t ncap = f->cranges ? 2 * f->cranges : 16;
    struct content_range *nr = realloc(r, (ncap + 1) * sizeof *nr);
    if (!nr)
      return -ENOMEM;
    f->ranges = r = nr;
    f->cranges = ncap;
  }
  memmove(r + lo + 1, r + lo, (n - lo) * sizeof *r);
  r[lo].off = off;
  r[lo].end = end;
  f->nranges = n + 1;
  if (f->nranges > STAGE_RANGES_MAX)
    ranges_squeeze(f);
  return 0;
}

int stage_write(struct stage *s, struct stage_file *f, uint64_t off, const void *data, size_t len,
                bool sync, uint64_t now_ns)
{
  s->changes++;
  if (off > (uint64_t)INT64_MAX - len)
    return -EFBIG;
  uint64_t end = off + len > f->size ? off + len : f->size;
  if (f->in_memory && (sync || !mem_fits(s, f->size, end))) {
    int r = spill(s, f);
    if (r < 0) {
      f->junk_tail = true; /* a fill's left-out range may hold junk */
      return r;
    }
  }
  /* Bytes a failed write left past the end must not show through a gap. */
  if (f->junk_tail && off > f->size) {
    if (ftruncate(f->fd, (off_t)f->size) < 0)
      return -errno;
    f->junk_tail = false;
  }
  /* Noted first: if the write fails half-way, its bytes may still differ. */
  if (ranges_add(f, off, off + len) < 0) {
    /* Cannot track: compare nothing with the base. */
    f->nranges = 0;
    f->clean_end = 0;
  }
  int r = pwrite_full(f->fd, data, len, off);
  if (r < 0) {
    f->junk_tail = true;
    f->dirty = true;
    if (r == -ENOSPC)
      spare_release(s);
    return r;
  }
  if (f->in_memory)
    s->mem_bytes += end - f->size;
  f->size = end;
  f->mtime_ns = now_ns;
  f->last_write = now_ns;
  f->dirty = true;
  list_touch(s, f);
  return sync ? stage_sync(s, f) : 0;
}

ssize_t stage_read(struct stage_file *f, uint64_t off, void *buf, size_t len)
{
  if (off >= f->size)
    return 0;
  if (len > f->size - off)
    len = (size_t)(f->size - off);
  size_t done = 0;
  while (done < len) {
    ssize_t k = pread(f->fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0)
      return -errno;
    if (k == 0) {
      /* Past the file's end (a range a FILL left out, written next): zeros. */
      memset((uint8_t *)buf + done, 0, len - done);
      break;
    }
    done += (size_t)k;
  }
  return (ssize_t)len;
}

int stage_truncate(struct stage *s, struct stage_file *f, uint64_t size, uint64_t now_ns)
{
  s->changes++;
  if (size > (uint64_t)INT64_MAX)
    return -EFBIG;
  if (f->in_memory && !mem_fits(s, f->size, size)) {
    int r = spill(s, f);
    if (r < 0) {
      f->junk_tail = true;
      return r;
    }
  }
  if (ftruncate(f->fd, (off_t)size) < 0)
    return -errno;
  if (f->in_memory)
    s->mem_bytes = s->mem_bytes - f->size + size;
  f->size = size;
  f->junk_tail = false;
  if (size < f->clean_end)
    f->clean_end = size;
  f->mtime_ns = now_ns;
  f->last_write = now_ns;
  f->dirty = true;
  list_touch(s, f);
  return 0;
}

bool stage_dirty(const struct stage_file *f) { return f->dirty; }

int stage_rebase(struct stage *s, struct stage_file *f, const hash_t *base,
                 struct blocks_list *blocks)
{
  s->changes++;
  base_reset(f);
  if (blocks)
    stage_set_base_blocks(f, blocks);
  f->base = *base;
  f->base_size = f->size;
  f->clean_end = f->size;
  f->dirty = false;
  if (!f->durable)
    return 0;
  char from[80], to[80];
  file_name(&f->obj, "s", from);
  file_name(&f->uname, "u", to);
  if (renameat(s->dirfd, from, s->dirfd, to) < 0)
    return -errno;
  f->durable = false;
  return 0;
}

uint64_t stage_size(const struct stage_file *f) { return f->size; }
uint64_t stage_base_size(const struct stage_file *f) { return f->base_size; }
uint64_t stage_mtime(const struct stage_file *f) { return f->mtime_ns; }
int stage_fd(const struct stage_file *f) { return f->fd; }
const hash_t *stage_object(const struct stage_file *f) { return &f->obj; }
const hash_t *stage_base(const struct stage_file *f) { return &f->base; }
uint64_t stage_last_write(const struct stage_file *f) { return f->last_write; }
size_t stage_count(const struct stage *s) { return s->count; }
uint64_t stage_changes(const struct stage *s) { return s->changes; }

void stage_set_base_blocks(struct stage_file *f, struct blocks_list *blocks)
{
  blocks_list_free(&f->blocks);
  f->blocks = *blocks;
  memset(blocks, 0, sizeof *blocks);
}

void stage_base_content(const struct stage_file *f, struct content_base *out)
{
  out->list = f->blocks.n > 0 && f->blocks.total == f->base_size ? &f->blocks : NULL;
  out->ranges = f->ranges;
  out->n = f->nranges;
  out->clean_end = f->clean_end;
}

uint64_t stage_dirty_bytes(const struct stage_file *f)
{
  struct content_base cb;
  stage_base_content(f, &cb);
  if (!cb.list)
    return f->size;
  uint64_t clean = cb.clean_end < f->size ? cb.clean_end : f->size, dirty = f->size - clean;
  for (size_t i = 0; i < cb.n && cb.ranges[i].off < clean; i++)
    dirty += (cb.ranges[i].end < clean ? cb.ranges[i].end : clean) - cb.ranges[i].off;
  return dirty;
}

void stage_drop(struct stage *s, struct stage_file *f)
{
  s->changes++;
  list_remove(s, f);
  if (f->in_memory) {
    discard(s, f);
    return;
  }
  char name[80];
  file_name(f->durable ? &f->obj : &f->uname, f->durable ? "s" : "u", name);
  /* Recycle the inode (see stage.h): a durable one must first lose its .s
   * name, or the next start would seal its junk. */
  bool keep = s->nspare < SPARE_MAX && !f->junk_tail;
  if (keep && f->durable) {
    char to[80];
    file_name(&f->uname, "u", to);
    keep = renameat(s->dirfd, name, s->dirfd, to) == 0;
    if (keep)
      f->durable = false;
  }
  if (keep && spare_put(s, f))
    return;
  discard(s, f);
}

int stage_foreach(struct stage *s, int (*fn)(void *arg, struct stage_file *f), void *arg)
{
  struct stage_file *f = s->files;
  while (f) {
    struct stage_file *next = f->next;
    int r = fn(arg, f);
    if (r)
      return r;
    f = next;
  }
  return 0;
}
