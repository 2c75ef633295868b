/*
 * The append-only log: framing, recovery, group commit, cursors.
 * The promises are in log.h; this file explains how they are kept.
 */
#include "store/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "store/error.h"
#include "store/zeros.h"

static const uint8_t log_magic[8] = {'B', 'A', 'S', 'E', 'F', 'S', 'L', 'G'};

/* The leader frames records into an I/O buffer of about this size and
 * writes it out in pieces, so a huge batch does not need a huge buffer. */
#define LOG_IOBUF_SIZE (4u << 20)
/* A group stops taking followers beyond this many bytes (the leader's own
 * records always go in whole). */
#define LOG_GROUP_MAX (4u << 20)
#define LOG_CURSOR_WINDOW (64u << 10)
/* Recovery looks for surviving records in a dropped tail up to this size;
 * a larger tail is saved without looking. */
#define LOG_RESYNC_MAX (64u << 20)

/* One caller of log_append()/log_append_batch(), queued on its own stack. */
struct log_waiter {
  const struct log_rec *recs;
  size_t n;
  uint64_t *offs;
  size_t bytes; /* framed size of all its records */
  int (*before_sync)(void *arg); /* see log_append_batch_ordered() */
  void *before_sync_arg;
  int err;
  bool done;
  struct log_waiter *next;
};

struct log {
  int fd;
  int flags;
  char *path;
  /* Writer: offset after the last durable record. Written by the leader
   * under mu, read lock-free by cursors and log_end(). */
  uint64_t end;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int err; /* non-zero once an fdatasync failed: the log is poisoned */
  struct log_stats stats;
  struct log_waiter *head, *tail;
  uint8_t *iobuf; /* only the current leader touches it */
  size_t iocap;
  /* Writer: the file's size as this writer made it. [end, zeroed) holds
   * zeros written ahead (see prezero()). Only the leader, open and close
   * touch it. */
  uint64_t zeroed;
};

struct log_cursor {
  struct log *log;
  uint64_t off;
  int stop;
  bool incomplete; /* the stop was at a record running past the end */
  bool body_bad;   /* the stop was at a good header whose body fails its check */
  uint8_t *buf;
  size_t cap;
  uint64_t buf_off; /* file offset of buf[0] */
  size_t buf_len;
};

static void put32(uint8_t *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
  return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static bool is_writer(const struct log *log)
{
  return (log->flags & LOG_WRITE) != 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (p[i])
      return false;
  return true;
}

/* ---- framing ---------------------------------------------------------- */

static uint32_t len_check(const uint8_t len_bytes[4], uint64_t off)
{
  return (uint32_t)XXH3_64bits_withSeed(len_bytes, 4, off);
}

static uint64_t body_sum(const uint8_t hdr8[8], const void *payload, size_t len, uint64_t off)
{
  return XXH3_64bits_withSeed(payload, len, XXH3_64bits_withSeed(hdr8, 8, off));
}

static void frame(uint8_t *out, const void *payload, size_t len, uint64_t off)
{
  put32(out, (uint32_t)len);
  put32(out + 4, len_check(out, off));
  put64(out + 8, body_sum(out, payload, len, off));
  if (len)
    memcpy(out + LOG_RECORD_OVERHEAD, payload, len);
}

/* Checks a record header found at OFF; on success stores the payload length. */
static int check_header(const uint8_t hdr[LOG_RECORD_OVERHEAD], uint64_t off, uint32_t *len)
{
  uint32_t l = get32(hdr);
  if (get32(hdr + 4) != len_check(hdr, off) || l > LOG_RECORD_MAX)
    return -BFS_EFORMAT;
  *len = l;
  return 0;
}

static int check_body(const uint8_t hdr[LOG_RECORD_OVERHEAD], const uint8_t *payload, size_t len,
                      uint64_t off)
{
  return body_sum(hdr, payload, len, off) == get64(hdr + 8) ? 0 : -BFS_ECHECKSUM;
}

static void make_header(uint8_t h[LOG_HEADER_SIZE])
{
  memset(h, 0, LOG_HEADER_SIZE);
  memcpy(h, log_magic, sizeof log_magic);
  put32(h + 8, LOG_FORMAT_VERSION);
  put32(h + 12, LOG_HEADER_SIZE);
  put64(h + 24, XXH3_64bits(h, 24));
}

static int check_file_header(const uint8_t h[LOG_HEADER_SIZE])
{
  if (memcmp(h, log_magic, sizeof log_magic) != 0)
    return -BFS_EFORMAT;
  if (get64(h + 24) != XXH3_64bits(h, 24))
    return -BFS_ECHECKSUM;
  if (get32(h + 8) != LOG_FORMAT_VERSION || get32(h + 12) != LOG_HEADER_SIZE)
    return -BFS_EFORMAT;
  return 0;
}

/* ---- small I/O helpers -------------------------------------------------- */

/* Reads up to LEN bytes at OFF; returns how many (short only at end of file). */
static ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off)
{
  size_t done = 0;
  while (done < len) {
    ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    if (n == 0)
      break;
    done += (size_t)n;
  }
  return (ssize_t)done;
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
  size_t done = 0;
  while (done < len) {
    ssize_t n = pwrite(fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    done += (size_t)n;
  }
  return 0;
}

static int fsync_dir_of(const char *path)
{
  char *copy = strdup(path);
  if (!copy)
    return -ENOMEM;
  int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  free(copy);
  if (fd < 0)
    return -errno;
  int rc = fsync(fd) < 0 ? -errno : 0;
  close(fd);
  return rc;
}

/*
 * Creates PATH holding just a header, atomically: a crash never leaves a
 * log file without a whole header. link() rather than rename() so that two
 * racing creators cannot replace a file the other already opened.
 */
static int create_file(const char *path)
{
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 16);
  if (!tmp)
    return -ENOMEM;
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".new-XXXXXX", 12);
  int rc = 0;
  int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    rc = -errno;
    goto out;
  }
  uint8_t h[LOG_HEADER_SIZE];
  make_header(h);
  rc = pwrite_full(fd, h, sizeof h, 0);
  if (rc == 0 && fsync(fd) < 0)
    rc = -errno;
  close(fd);
  if (rc == 0 && link(tmp, path) < 0 && errno != EEXIST)
    rc = -errno;
  unlink(tmp);
  if (rc == 0)
    rc = fsync_dir_of(path);
out:
  free(tmp);
  return rc;
}

/* ---- cursors ------------------------------------------------------------ */

static uint64_t load_end(const struct log *log)
{
  return __atomic_load_n(&log->end, __ATOMIC_ACQUIRE);
}

int log_cursor_open(struct log *log, uint64_t from, struct log_cursor **out)
{
  if (!log || !out)
    return -EINVAL;
  if (from < LOG_HEADER_SIZE || from > log_end(log))
    return -EINVAL;
  struct log_cursor *c = calloc(1, sizeof *c);
  if (!c)
    return -ENOMEM;
  c->log = log;
  c->off = from;
  /* An offset from a checkpoint or an index must name a record: look at it
   * now, so a caller with a wrong offset hears so instead of iterating
   * nothing. (The header's end is always a boundary; recovery starts there
   * whatever follows.) A reader may be handed the offset of a record still
   * being written: incomplete is fine, damaged is not. Over the zeros a
   * writer keeps ahead of its end, a record being written is whole in
   * length but not yet in its bytes: a good header is enough there. */
  if (from > LOG_HEADER_SIZE && from < log_end(log)) {
    int rc = log_cursor_next(c, NULL, NULL, NULL);
    if (rc < 0 || (rc == 0 && (is_writer(log) || !(c->incomplete || c->body_bad)))) {
      log_cursor_close(c);
      return rc < 0 ? rc : -EINVAL;
    }
    c->off = from;
    c->stop = 0;
  }
  *out = c;
  return 0;
}

/*
 * Makes the window hold as much as possible of [c->off, c->off + want) and
 * returns how many bytes from c->off are available. A writer's cursor never
 * reads past the durable end, so it never returns a record whose append has
 * not returned yet.
 */
static ssize_t cursor_fill(struct log_cursor *c, size_t want)
{
  if (c->off >= c->buf_off && c->off + want <= c->buf_off + c->buf_len)
    return (ssize_t)want;
  size_t size = want > LOG_CURSOR_WINDOW ? want : LOG_CURSOR_WINDOW;
  if (size > c->cap) {
    uint8_t *nb = realloc(c->buf, size);
    if (!nb)
      return -ENOMEM;
    c->buf = nb;
    c->cap = size;
  }
  size = c->cap;
  if (is_writer(c->log)) {
    uint64_t end = load_end(c->log);
    size_t room = end > c->off ? (size_t)(end - c->off < size ? end - c->off : size) : 0;
    size = room;
  }
  c->buf_off = c->off;
  c->buf_len = 0;
  ssize_t n = pread_full(c->log->fd, c->buf, size, c->off);
  if (n < 0)
    return n;
  c->buf_len = (size_t)n;
  return (size_t)n < want ? n : (ssize_t)want;
}

/*
 * Stops at a bad record. The window is dropped: what it holds may be a
 * record a live writer was still writing (or a file a new writer has since
 * repaired), so the next call must read the file again, not the window.
 */
static int cursor_stop(struct log_cursor *c, int why, bool incomplete)
{
  c->stop = why;
  c->incomplete = incomplete;
  c->body_bad = false;
  c->buf_len = 0;
  return 0;
}

int log_cursor_next(struct log_cursor *c, const uint8_t **data, size_t *len, uint64_t *off)
{
  ssize_t n = cursor_fill(c, LOG_RECORD_OVERHEAD);
  if (n < 0)
    return (int)n;
  /* Zeros where a header would be are space a writer zeroed ahead (or a
   * page it extended the file by that never got its data): nothing was
   * written here yet, which is the clean end, as the end of the file is. A
   * real header is never all zero (its length check would have to be 0 and
   * its checksum too). */
  if (all_zero(c->buf + (c->off - c->buf_off), (size_t)n))
    return cursor_stop(c, 0, true);
  if (n < LOG_RECORD_OVERHEAD)
    return cursor_stop(c, -BFS_EFORMAT, true);
  uint8_t hdr[LOG_RECORD_OVERHEAD];
  memcpy(hdr, c->buf + (c->off - c->buf_off), sizeof hdr);
  uint32_t l;
  int rc = check_header(hdr, c->off, &l);
  if (rc < 0)
    return cursor_stop(c, rc, false);
  size_t total = LOG_RECORD_OVERHEAD + (size_t)l;
  n = cursor_fill(c, total);
  if (n < 0)
    return (int)n;
  if ((size_t)n < total)
    return cursor_stop(c, -BFS_EFORMAT, true);
  const uint8_t *payload = c->buf + (c->off - c->buf_off) + LOG_RECORD_OVERHEAD;
  rc = check_body(hdr, payload, l, c->off);
  if (rc < 0) {
    cursor_stop(c, rc, false);
    c->body_bad = true;
    return 0;
  }
  c->stop = 0;
  if (data)
    *data = payload;
  if (len)
    *len = l;
  if (off)
    *off = c->off;
  c->off += total;
  return 1;
}

int log_cursor_stop(const struct log_cursor *c)
{
  return c->stop;
}

uint64_t log_cursor_offset(const struct log_cursor *c)
{
  return c->off;
}

void log_cursor_close(struct log_cursor *c)
{
  if (!c)
    return;
  free(c->buf);
  free(c);
}

/* ---- open and recovery -------------------------------------------------- */

/* Whether BUF (the dropped tail, starting at file offset BASE) holds a good
 * record at any offset after its first byte. */
static bool tail_has_record(const uint8_t *buf, size_t len, uint64_t base)
{
  for (size_t i = 1; i + LOG_RECORD_OVERHEAD <= len; i++) {
    uint32_t l;
    if (check_header(buf + i, base + i, &l) < 0)
      continue;
    if (i + LOG_RECORD_OVERHEAD + l > len)
      continue;
    if (check_body(buf + i, buf + i + LOG_RECORD_OVERHEAD, l, base + i) == 0)
      return true;
  }
  return false;
}

/* Copies [from, from + len) of the log to "<path>.tail-<from>[.k]", durably. */
static int save_tail(struct log *log, uint64_t from, const uint8_t *buf, uint64_t len)
{
  size_t plen = strlen(log->path);
  char *name = malloc(plen + 64);
  if (!name)
    return -ENOMEM;
  int fd = -1;
  for (int k = 0; k < 100 && fd < 0; k++) {
    if (k == 0)
      snprintf(name, plen + 64, "%s.tail-%" PRIu64, log->path, from);
    else
      snprintf(name, plen + 64, "%s.tail-%" PRIu64 ".%d", log->path, from, k);
    fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST)
      break;
  }
  int rc = 0;
  if (fd < 0) {
    rc = -errno;
    goto out;
  }
  uint8_t *tmp = NULL;
  for (uint64_t done = 0; done < len && rc == 0;) {
    size_t chunk = len - done > LOG_IOBUF_SIZE ? LOG_IOBUF_SIZE : (size_t)(len - done);
    const uint8_t *src = buf ? buf + done : NULL;
    if (!src) {
      if (!tmp && !(tmp = malloc(LOG_IOBUF_SIZE))) {
        rc = -ENOMEM;
        break;
      }
      ssize_t n = pread_full(log->fd, tmp, chunk, from + done);
      if (n < 0) {
        rc = (int)n;
        break;
      }
      if ((size_t)n < chunk)
        chunk = (size_t)n;
      if (chunk == 0)
        break;
      src = tmp;
    }
    rc = pwrite_full(fd, src, chunk, done);
    done += chunk;
  }
  free(tmp);
  if (rc == 0 && fsync(fd) < 0)
    rc = -errno;
  close(fd);
  if (rc == 0)
    rc = fsync_dir_of(log->path);
out:
  free(name);
  return rc;
}

/* 1 if bytes [FROM, TO) of the file are all zero, 0 if not, or -errno. */
static int zero_range(struct log *log, uint64_t from, uint64_t to)
{
  uint8_t buf[4096];
  while (from < to) {
    size_t want = to - from < sizeof buf ? (size_t)(to - from) : sizeof buf;
    ssize_t n = pread_full(log->fd, buf, want, from);
    if (n < 0)
      return (int)n;
    if ((size_t)n < want || !all_zero(buf, want))
      return 0;
    from += want;
  }
  return 1;
}

/*
 * Scans the whole log, and cuts the tail at the first bad record -- unless
 * everything after the last good record is zeros, at most LOG_ZERO_TAIL_MAX
 * of them: that is what a writer zeroed ahead, no record, so it is kept for
 * the appends to fill.
 */
static int recover(struct log *log, uint64_t size, struct log_info *info)
{
  struct log_cursor *c;
  __atomic_store_n(&log->end, size, __ATOMIC_RELEASE);
  int rc = log_cursor_open(log, LOG_HEADER_SIZE, &c);
  if (rc < 0)
    return rc;
  uint64_t records = 0;
  while ((rc = log_cursor_next(c, NULL, NULL, NULL)) == 1)
    records++;
  uint64_t end = c->off;
  int stop = c->stop;
  log_cursor_close(c);
  if (rc < 0)
    return rc;
  info->records = records;
  info->end = end;
  /* Zeros, no more than a writer keeps ahead: a writer that did not close
   * cleanly zeroed them ahead, no record was there. They stay. */
  int zeros = 0;
  if (size - end <= LOG_ZERO_TAIL_MAX && (zeros = zero_range(log, end, size)) < 0)
    return zeros;
  if (end == size || zeros) {
    info->zero_bytes = size - end;
    log->zeroed = size;
    __atomic_store_n(&log->end, end, __ATOMIC_RELEASE);
    return 0;
  }
  info->tail_bytes = size - end;
  /* Zeros where a header would be, then more than zeros: no torn append
   * leaves that (a zeroed sector, a truncated copy), so it is a format
   * error, not the clean end the cursor took it for. */
  info->tail_error = stop ? stop : -BFS_EFORMAT;

  /* Before throwing bytes away, look for records that survived behind the
   * bad one: then this is corruption, not a torn write, and the bytes are
   * kept in a side file. */
  uint64_t tail = size - end;
  bool save = true;
  if (tail <= LOG_RESYNC_MAX) {
    uint8_t *buf = malloc(tail ? (size_t)tail : 1);
    if (!buf)
      return -ENOMEM;
    ssize_t n = pread_full(log->fd, buf, (size_t)tail, end);
    if (n < 0) {
      free(buf);
      return (int)n;
    }
    save = tail_has_record(buf, (size_t)n, end);
    if (save)
      rc = save_tail(log, end, buf, (uint64_t)n);
    free(buf);
  } else {
    rc = save_tail(log, end, NULL, tail);
  }
  if (rc < 0)
    return rc;
  info->tail_saved = save;

  if (ftruncate(log->fd, (off_t)end) < 0 || fdatasync(log->fd) < 0)
    return -errno;
  log->zeroed = end;
  __atomic_store_n(&log->end, end, __ATOMIC_RELEASE);
  return 0;
}

int log_open(const char *path, int flags, struct log **out, struct log_info *info)
{
  struct log_info dummy;
  if (!info)
    info = &dummy;
  memset(info, 0, sizeof *info);
  if (!path || !out)
    return -EINVAL;
  *out = NULL;
  bool writer = (flags & LOG_WRITE) != 0;

  struct log *log = calloc(1, sizeof *log);
  if (!log)
    return -ENOMEM;
  log->fd = -1;
  log->flags = flags;
  log->path = strdup(path);
  int rc = 0;
  if (!log->path) {
    free(log);
    return -ENOMEM;
  }
  pthread_mutex_init(&log->mu, NULL);
  pthread_cond_init(&log->cv, NULL);

  if (writer && (flags & LOG_CREATE) && access(path, F_OK) < 0 && errno == ENOENT) {
    rc = create_file(path);
    if (rc < 0)
      goto fail;
  }
  log->fd = open(path, (writer ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (log->fd < 0) {
    rc = -errno;
    goto fail;
  }
  if (writer && flock(log->fd, LOCK_EX | LOCK_NB) < 0) {
    rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
    goto fail;
  }
  struct stat st;
  if (fstat(log->fd, &st) < 0) {
    rc = -errno;
    goto fail;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = -BFS_EFORMAT;
    goto fail;
  }
  uint8_t h[LOG_HEADER_SIZE];
  if (st.st_size == 0 && writer && (flags & LOG_CREATE)) {
    /* An empty file handed to us (say, from mktemp) becomes an empty log. */
    make_header(h);
    rc = pwrite_full(log->fd, h, sizeof h, 0);
    if (rc == 0 && fdatasync(log->fd) < 0)
      rc = -errno;
    /* Whoever made the file may not have made its name durable. */
    if (rc == 0)
      rc = fsync_dir_of(path);
    if (rc < 0)
      goto fail;
    st.st_size = LOG_HEADER_SIZE;
  }
  ssize_t n = pread_full(log->fd, h, sizeof h, 0);
  if (n < 0) {
    rc = (int)n;
    goto fail;
  }
  if (n < LOG_HEADER_SIZE) {
    rc = -BFS_EFORMAT;
    goto fail;
  }
  rc = check_file_header(h);
  if (rc < 0)
    goto fail;

  if (writer) {
    rc = recover(log, (uint64_t)st.st_size, info);
    if (rc < 0)
      goto fail;
  } else {
    info->end = (uint64_t)st.st_size;
  }
  *out = log;
  return 0;
fail:
  log_close(log);
  return rc;
}

void log_close(struct log *log)
{
  if (!log)
    return;
  /* A clean close leaves no zeros ahead: the file's size is its end again.
   * (Not after a failed fdatasync: what is past the end is then for
   * recovery to look at.) */
  if (log->fd >= 0 && is_writer(log) && !log->err && log->zeroed > log->end &&
      ftruncate(log->fd, (off_t)log->end) == 0)
    log->zeroed = log->end;
  if (log->fd >= 0)
    close(log->fd); /* releases the flock */
  pthread_mutex_destroy(&log->mu);
  pthread_cond_destroy(&log->cv);
  free(log->iobuf);
  free(log->path);
  free(log);
}

int log_truncate(struct log *log, uint64_t off)
{
  if (!log)
    return -EINVAL;
  if (!is_writer(log))
    return -EBADF;
  uint64_t end = load_end(log);
  if (off < LOG_HEADER_SIZE || off > end)
    return -EINVAL;
  if (off == end)
    return 0;
  /* A record boundary: a writer's cursor refuses anything else. */
  struct log_cursor *c;
  int rc = log_cursor_open(log, off, &c);
  if (rc < 0)
    return rc;
  log_cursor_close(c);
  /* The bytes go to a side file first, as recovery's do: whoever drops
   * them may be wrong about why. */
  if ((rc = save_tail(log, off, NULL, end - off)) < 0)
    return rc;
  if (ftruncate(log->fd, (off_t)off) < 0)
    return -errno;
  log->zeroed = off;
  __atomic_store_n(&log->end, off, __ATOMIC_RELEASE);
  if (fdatasync(log->fd) < 0) {
    log->err = -errno; /* as a failed append's: poisoned until reopened */
    return log->err;
  }
  return 0;
}

uint64_t log_end(const struct log *log)
{
  if (is_writer(log))
    return load_end(log);
  struct stat st;
  if (fstat(log->fd, &st) < 0 || st.st_size < LOG_HEADER_SIZE)
    return LOG_HEADER_SIZE;
  return (uint64_t)st.st_size;
}

void log_stats(struct log *log, struct log_stats *st)
{
  pthread_mutex_lock(&log->mu);
  *st = log->stats;
  pthread_mutex_unlock(&log->mu);
}

int log_read(struct log *log, uint64_t off, void *buf, size_t cap, size_t *len)
{
  if (!log || (cap && !buf))
    return -EINVAL;
  uint64_t end = log_end(log);
  if (off < LOG_HEADER_SIZE || off >= end)
    return -EINVAL;
  uint8_t hdr[LOG_RECORD_OVERHEAD];
  if (end - off < LOG_RECORD_OVERHEAD)
    return -BFS_EFORMAT;
  ssize_t n = pread_full(log->fd, hdr, sizeof hdr, off);
  if (n < 0)
    return (int)n;
  if (n < LOG_RECORD_OVERHEAD)
    return -BFS_EFORMAT;
  uint32_t l;
  int rc = check_header(hdr, off, &l);
  if (rc < 0)
    return rc;
  if (len)
    *len = l;
  if (end - off - LOG_RECORD_OVERHEAD < l)
    return -BFS_EFORMAT;
  if (l > cap)
    return -ERANGE;
  n = pread_full(log->fd, buf, l, off + LOG_RECORD_OVERHEAD);
  if (n < 0)
    return (int)n;
  if ((size_t)n < l)
    return -BFS_EFORMAT;
  rc = check_body(hdr, buf, l, off);
  return rc < 0 ? rc : (int)l;
}

/* ---- appends: leader/follower group commit ------------------------------ */

/* Gives the zeros past END back to the filesystem. */
static void drop_zeros(struct log *log, uint64_t end)
{
  if (ftruncate(log->fd, (off_t)end) == 0) {
    log->zeroed = end;
    return;
  }
  struct stat st; /* whatever size the file has, past END it holds zeros */
  if (fstat(log->fd, &st) == 0 && (uint64_t)st.st_size >= end)
    log->zeroed = (uint64_t)st.st_size;
}

/*
 * Called by the leader once a group's records are written up to END, before
 * the fdatasync (write_group() has moved zeroed up to END already): keeps
 * LOG_ZERO_TAIL_MAX zeros written ahead (store/zeros.h), or gives them back
 * when the disk is short. Best effort: appends then stay true appends.
 */
static void prezero(struct log *log, uint64_t end)
{
  if (zeros_ahead(log->fd, end, LOG_ZERO_TAIL_MAX, &log->zeroed) < 0)
    drop_zeros(log, end);
}

/*
 * Writes the records of waiters FIRST..LAST (in queue order) at START and
 * makes them durable; with ZEROS, also keeps zeros ahead (prezero()).
 * Returns 0 and the new end, or an error with *SYNC_FAILED telling whether
 * the data was written but fdatasync failed.
 */
static int write_group(struct log *log, struct log_waiter *first, struct log_waiter *last,
                       uint64_t start, bool zeros, uint64_t *new_end, bool *sync_failed)
{
  *sync_failed = false;
  uint64_t off = start, flushed = start;
  size_t used = 0;
  for (struct log_waiter *w = first;; w = w->next) {
    for (size_t i = 0; i < w->n; i++) {
      size_t rec = LOG_RECORD_OVERHEAD + w->recs[i].len;
      if (used + rec > log->iocap) {
        if (used) {
          int rc = pwrite_full(log->fd, log->iobuf, used, flushed);
          if (rc < 0)
            return rc;
          flushed += used;
          used = 0;
        }
        if (rec > log->iocap) {
          size_t cap = rec > LOG_IOBUF_SIZE ? rec : LOG_IOBUF_SIZE;
          uint8_t *nb = realloc(log->iobuf, cap);
          if (!nb)
            return -ENOMEM;
          log->iobuf = nb;
          log->iocap = cap;
        }
      }
      frame(log->iobuf + used, w->recs[i].data, w->recs[i].len, off);
      if (w->offs)
        w->offs[i] = off;
      used += rec;
      off += rec;
    }
    if (w == last)
      break;
  }
  if (used) {
    int rc = pwrite_full(log->fd, log->iobuf, used, flushed);
    if (rc < 0)
      return rc;
  }
  /* The records first, then the zeros: real data gets the space first. */
  if (log->zeroed < off)
    log->zeroed = off;
  if (zeros)
    prezero(log, off);
  /* What the callers' fdatasync must cover besides (log_append_batch_ordered):
   * the records' write-out starts first, so both go to the device at once. */
  bool started = false;
  for (struct log_waiter *w = first;; w = w->next) {
    if (w->before_sync) {
      if (!started && sync_file_range(log->fd, (off_t)start, (off_t)(off - start),
                                      SYNC_FILE_RANGE_WRITE) < 0)
        return -errno;
      started = true;
      int rc = w->before_sync(w->before_sync_arg);
      if (rc < 0)
        return rc;
    }
    if (w == last)
      break;
  }
  if (fdatasync(log->fd) < 0) {
    *sync_failed = true;
    return -errno;
  }
  *new_end = off;
  return 0;
}

static int append_wait(struct log *log, struct log_waiter *w)
{
  pthread_mutex_lock(&log->mu);
  if (log->err) {
    int err = log->err;
    pthread_mutex_unlock(&log->mu);
    return err;
  }
  if (log->tail)
    log->tail->next = w;
  else
    log->head = w;
  log->tail = w;
  while (!w->done && log->head != w)
    pthread_cond_wait(&log->cv, &log->mu);
  if (w->done) {
    pthread_mutex_unlock(&log->mu);
    return w->err;
  }

  /* This caller leads: it takes the queue (up to a size bound) with it. The
   * nodes from w to last are not touched by anyone else until we mark them
   * done; only last->next may change under us, so we never read it outside
   * the lock. */
  struct log_waiter *last = w;
  size_t bytes = w->bytes;
  if (!(log->flags & LOG_NO_GROUP_COMMIT))
    while (last->next && bytes + last->next->bytes <= LOG_GROUP_MAX) {
      last = last->next;
      bytes += last->bytes;
    }
  uint64_t start = log->end;
  int err = log->err;
  pthread_mutex_unlock(&log->mu);

  uint64_t new_end = start;
  bool sync_failed = false;
  if (!err)
    err = write_group(log, w, last, start, true, &new_end, &sync_failed);
  if ((err == -ENOSPC || err == -EDQUOT) && !sync_failed && log->zeroed > start &&
      ftruncate(log->fd, (off_t)start) == 0) {
    /* Zeros ahead held space (overwriting them needs new space on a
     * copy-on-write filesystem): give them back and try once more, as
     * plain appends. */
    log->zeroed = start;
    err = write_group(log, w, last, start, false, &new_end, &sync_failed);
  }

  pthread_mutex_lock(&log->mu);
  if (err && !log->err) {
    /* A failed write leaves partial records past the durable end: cut them
     * off (and any zeros with them) so later appends continue from a clean
     * end. A failed fdatasync cannot be retried (the kernel may have dropped
     * the dirty pages), so the log is poisoned until it is reopened and
     * recovered. */
    if (sync_failed || ftruncate(log->fd, (off_t)start) < 0)
      log->err = err;
    else
      log->zeroed = start;
  }
  if (!err) {
    __atomic_store_n(&log->end, new_end, __ATOMIC_RELEASE);
    log->stats.commits++;
    log->stats.bytes += new_end - start;
  }
  struct log_waiter *next = last->next;
  for (struct log_waiter *x = w;; x = x->next) {
    if (!err)
      log->stats.records += x->n;
    x->err = err;
    x->done = true;
    if (x == last)
      break;
  }
  log->head = next;
  if (!next)
    log->tail = NULL;
  pthread_cond_broadcast(&log->cv);
  pthread_mutex_unlock(&log->mu);
  return err;
}

int log_append_batch(struct log *log, const struct log_rec *recs, size_t n, uint64_t *offs)
{
  return log_append_batch_ordered(log, recs, n, offs, NULL, NULL);
}

int log_append_batch_ordered(struct log *log, const struct log_rec *recs, size_t n,
                             uint64_t *offs, int (*before_sync)(void *arg), void *arg)
{
  if (!log || (n && !recs))
    return -EINVAL;
  if (!is_writer(log))
    return -EBADF;
  size_t bytes = 0;
  for (size_t i = 0; i < n; i++) {
    if (recs[i].len > LOG_RECORD_MAX)
      return -BFS_ETOOBIG;
    if (recs[i].len && !recs[i].data)
      return -EINVAL;
    bytes += LOG_RECORD_OVERHEAD + recs[i].len;
  }
  if (n == 0)
    return 0;
  struct log_waiter w = {.recs = recs, .n = n, .offs = offs, .bytes = bytes,
                        .before_sync = before_sync, .before_sync_arg = arg};
  return append_wait(log, &w);
}

int log_append(struct log *log, const void *data, size_t len, uint64_t *off)
{
  struct log_rec rec = {.data = data, .len = len};
  return log_append_batch(log, &rec, 1, off);
}
