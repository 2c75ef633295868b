/*
 * The open filesystem: layout, locking, meta, checkpoint + tail replay, group
 * commit, and the entry-building write helpers. See store/fs.h.
 */
#include "store/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/blocks.h"
#include "store/error.h"
#include "store/log.h"
#include "store/sign.h"
#include "store/verify.h"
#include "store/view.h"
#include "store/content.h"

#define META_MAGIC "basefs-fs"

struct pending_rec {
  uint8_t *data;
  size_t len;
  bool unsigned_; /* a local entry whose signature (the last 64 bytes) is not made yet */
};

/*
 * Deferred signing. ECDSA signing is ~95% of the cost of a bulk write such as
 * an import, and an entry's id does not cover its signature, so once a batch
 * holds DEFER_AFTER records, further local entries of the same key go into
 * the view and the batch with their id but no signature; flush_deferred()
 * signs them all on every core (store/sign.h) before the batch is committed,
 * then rebuilds the view from the log and the signed batch (heal()), since
 * the view keeps each entry's signature. Only for a private view (nobody
 * else sees the unsigned entries) of a writer that is not forwarding; small
 * batches (one CLI write) never defer, so they never pay for the rebuild.
 */
#define DEFER_AFTER 32
#define DEFER_CHUNK 512

struct fs {
  char dir[PATH_MAX];
  bool writer;
  int lock_fd;
  hash_t root;
  struct log *log;
  struct blocks *blocks;
  struct view *view;
  uint64_t applied_end; /* log offset up to which the view has applied records */
  uint64_t ckpt_end;    /* log offset the saved checkpoint covers */
  uint64_t from_checkpoint, replayed, appended;
  uint64_t since_ckpt; /* records in the log (or batch) after the checkpoint */
  uint64_t ckpt_wait;  /* a live checkpoint failed: records to wait before the next try */
  dev_t log_dev;       /* the log's device (blocks_sync_deferred()) */
  /* The view holds something the log does not (a refused local entry, a
   * failed commit): it must not be checkpointed. */
  bool tainted;
  /* Forwarding (fs_set_forward): entries go to the owner at commit. */
  fs_forward_fn forward;
  void *forward_arg;
  int (*ctl_sync)(void *arg); /* the owner's: make what it holds durable (fs_set_ctl_sync) */
  void (*view_hook)(void *arg, struct view *v); /* told when heal() replaces the view */
  bool view_private; /* fs_view() was never handed out: heal() may replace it freely */
  void *view_hook_arg;
  void *ctl_sync_arg;
  struct blocks *fwd_blocks; /* private store for the blocks of forwarded contents */
  char fwd_dir[PATH_MAX];
  char reason[256]; /* why the last commit failed, from the owner */
  /* Entries submitted but not yet appended (group commit). */
  struct pending_rec *batch;
  size_t nbatch, capbatch;
  size_t ndeferred;       /* records of the batch with unsigned_ set */
  struct key *defer_key;  /* a copy of the key that signs them */
};

/* ---- names, paths, files ---- */

bool fs_name_valid(const char *name)
{
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n > FS_NAME_MAX || name[0] == '.')
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '.' || c == '_' || c == '-'))
      return false;
  }
  return true;
}

static int fs_path(char *out, size_t cap, const char *home, const char *name, const char *file)
{
  int n = file ? snprintf(out, cap, "%s/fs/%s/%s", home, name, file)
               : snprintf(out, cap, "%s/fs/%s", home, name);
  return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static int sub_path(const struct fs *fs, const char *file, char *out, size_t cap)
{
  int n = snprintf(out, cap, "%s/%s", fs->dir, file);
  return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static int fsync_dir(const char *dir)
{
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  int r = fsync(fd) < 0 ? -errno : 0;
  close(fd);
  return r;
}

static int write_all(int fd, const void *buf, size_t len)
{
  const uint8_t *p = buf;
  while (len) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -errno;
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

/* Writes DIR/FILE atomically: a temporary file, fsync, rename, fsync of DIR. */
static int write_file_atomic(const char *dir, const char *file, const void *data, size_t len)
{
  char path[PATH_MAX], tmp[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/%s", dir, file) >= (int)sizeof path ||
      snprintf(tmp, sizeof tmp, "%s/.%s.tmp.%d", dir, file, (int)getpid()) >= (int)sizeof tmp)
    return -ENAMETOOLONG;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return -errno;
  int r = write_all(fd, data, len);
  if (r == 0 && fsync(fd) < 0)
    r = -errno;
  close(fd);
  if (r == 0 && rename(tmp, path) < 0)
    r = -errno;
  if (r < 0) {
    unlink(tmp);
    return r;
  }
  return fsync_dir(dir);
}

static int read_file(const char *path, char *buf, size_t cap, size_t *len)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  size_t n = 0;
  while (n < cap) {
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      int err = -errno;
      close(fd);
      return err;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  close(fd);
  *len = n;
  return 0;
}

/* ---- meta ---- */

static int meta_write(const struct fs *fs)
{
  char hex[HASH_HEX_SIZE], buf[256];
  hash_to_hex(&fs->root, hex);
  int n = snprintf(buf, sizeof buf, "%s %d\nroot %s\n", META_MAGIC, FS_FORMAT_VERSION, hex);
  return write_file_atomic(fs->dir, "meta", buf, (size_t)n);
}

static int meta_read(struct fs *fs)
{
  char path[PATH_MAX], buf[512];
  size_t len = 0;
  int r = sub_path(fs, "meta", path, sizeof path);
  if (r < 0 || (r = read_file(path, buf, sizeof buf - 1, &len)) < 0)
    return r;
  buf[len] = '\0';
  int version = 0;
  char hex[HASH_HEX_SIZE + 1] = "";
  if (sscanf(buf, META_MAGIC " %d\nroot %65s\n", &version, hex) != 2)
    return -BFS_EFORMAT;
  if (version != FS_FORMAT_VERSION)
    return -BFS_EFORMAT;
  if (hash_from_hex(hex, &fs->root) < 0)
    return -BFS_EFORMAT;
  return 0;
}

/* ---- lock ---- */

static int lock_take(struct fs *fs)
{
  char path[PATH_MAX];
  int r = sub_path(fs, "lock", path, sizeof path);
  if (r < 0)
    return r;
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return -errno;
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    r = errno == EWOULDBLOCK ? -EBUSY : -errno;
    close(fd);
    return r;
  }
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
  if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
    r = -errno;
    close(fd);
    return r;
  }
  fs->lock_fd = fd;
  return 0;
}

pid_t fs_lock_owner(const char *home, const char *name)
{
  char path[PATH_MAX], buf[32];
  size_t len = 0;
  if (fs_path(path, sizeof path, home, name, "lock") < 0 ||
      read_file(path, buf, sizeof buf - 1, &len) < 0)
    return 0;
  buf[len] = '\0';
  long pid = strtol(buf, NULL, 10);
  /* The file keeps the last writer's pid; only report a live process. */
  if (pid <= 0 || pid > INT_MAX || (kill((pid_t)pid, 0) < 0 && errno == ESRCH))
    return 0;
  return (pid_t)pid;
}

/* ---- list ---- */

static int cmp_str(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int fs_list(const char *home, int (*fn)(const char *name, void *arg), void *arg)
{
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/fs", home) >= (int)sizeof path)
    return -ENAMETOOLONG;
  DIR *d = opendir(path);
  if (!d)
    return -errno;
  char **names = NULL;
  size_t n = 0, cap = 0;
  int r = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    char meta[PATH_MAX];
    struct stat st;
    if (!fs_name_valid(de->d_name) || fs_path(meta, sizeof meta, home, de->d_name, "meta") < 0 ||
        stat(meta, &st) < 0)
      continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      char **bigger = realloc(names, cap * sizeof *names);
      if (!bigger) {
        r = -ENOMEM;
        break;
      }
      names = bigger;
    }
    if (!(names[n] = strdup(de->d_name))) {
      r = -ENOMEM;
      break;
    }
    n++;
  }
  closedir(d);
  if (r == 0)
    qsort(names, n, sizeof *names, cmp_str);
  for (size_t i = 0; i < n; i++) {
    if (r == 0)
      r = fn(names[i], arg);
    free(names[i]);
  }
  free(names);
  return r;
}

/* ---- open, create, close ---- */

/* A checkpoint is written on close once this many records lie after the last one. */
#define FS_CHECKPOINT_EVERY 1024
/* ... and by a writer that stays open, at a commit once this many have accumulated. */
#define FS_CHECKPOINT_LIVE 65536

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)st;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

static void remove_tree(const char *dir) { nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS); }

static void fs_free(struct fs *fs)
{
  if (!fs)
    return;
  for (size_t i = 0; i < fs->nbatch; i++)
    free(fs->batch[i].data);
  free(fs->batch);
  key_free(fs->defer_key);
  view_free(fs->view);
  blocks_close(fs->blocks);
  blocks_close(fs->fwd_blocks);
  if (fs->fwd_dir[0])
    remove_tree(fs->fwd_dir);
  log_close(fs->log);
  if (fs->lock_fd >= 0)
    close(fs->lock_fd); /* releases the flock */
  free(fs);
}

static struct fs *fs_alloc(const char *home, const char *name, bool writer)
{
  struct fs *fs = calloc(1, sizeof *fs);
  if (!fs)
    return NULL;
  fs->writer = writer;
  fs->lock_fd = -1;
  fs->view_private = true;
  if (fs_path(fs->dir, sizeof fs->dir, home, name, NULL) < 0) {
    free(fs);
    return NULL;
  }
  return fs;
}

/* ---- flush notes ----
 *
 * A commit whose blocks were only written out, their device flush left to
 * the log's fdatasync (blocks_sync_deferred(), THE RULE in store/blocks.h),
 * logs first a note: the pack range its entries rely on and its XXH3 sum.
 * Until that fdatasync returns, a power cut may keep the records and lose
 * the range (a volatile disk cache writes back in any order). So opening
 * checks the last note it replays and, if its range is not on disk, drops
 * the log from there: those records were never acknowledged. Only the last
 * note can fail: the log writes a group only once the one before it is
 * flushed, and a group holds at most one note (one commit: fs_commit() is
 * not concurrent on a handle, and the log has one writer); the checkpoint
 * covers only commits that returned. That holds across processes too: a
 * writer that finds the last note's range held (maybe only in the page
 * cache, after a crash of the process, not of the machine) fdatasyncs it
 * before it appends, and blocks_open() has a writer's first blocks_sync()
 * make every pack durable (store/blocks.c). A note is no entry: entry_decode()
 * refuses it (too short, and no entry format version is 0), so everything
 * else that reads the log skips it.
 *
 *   0  8  magic "\0BFSflu\0"
 *   8  4  pack number (blocks/pack-%08u), little-endian
 *   12 4  zero
 *   16 8  from
 *   24 8  to
 *   32 8  XXH3-64 of the pack's bytes [from, to)
 */
#define FLUSH_NOTE_SIZE 40
static const uint8_t flush_magic[8] = {0, 'B', 'F', 'S', 'f', 'l', 'u', 0};

static void put_le(uint8_t *p, uint64_t v, int n)
{
  for (int i = 0; i < n; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static void flush_note(const struct blocks_flush *f, uint8_t out[FLUSH_NOTE_SIZE])
{
  memset(out, 0, FLUSH_NOTE_SIZE);
  memcpy(out, flush_magic, sizeof flush_magic);
  put_le(out + 8, f->pack, 4);
  put_le(out + 16, f->from, 8);
  put_le(out + 24, f->to, 8);
  put_le(out + 32, f->sum, 8);
}

/* log_append_batch_ordered()'s hook: the pack writes are complete before
 * the log's fdatasync flushes the device cache. */
struct flush_wait {
  struct blocks *bs;
  const struct blocks_flush *owed;
};

static int flush_wait(void *arg)
{
  struct flush_wait *w = arg;
  return blocks_sync_wait(w->bs, w->owed);
}

static bool flush_note_parse(const uint8_t *p, size_t len, struct blocks_flush *f)
{
  if (len != FLUSH_NOTE_SIZE || memcmp(p, flush_magic, sizeof flush_magic) != 0)
    return false;
  f->pack = (uint32_t)get_le(p + 8, 4);
  f->from = get_le(p + 16, 8);
  f->to = get_le(p + 24, 8);
  f->sum = get_le(p + 32, 8);
  return true;
}

/* The offset of the last flush note from OFF on if its range is not on
 * disk (the records from there on may not hold), else UINT64_MAX. */
static int flush_check(struct fs *fs, uint64_t off, uint64_t *stop)
{
  *stop = UINT64_MAX;
  struct log_cursor *c = NULL;
  int r = log_cursor_open(fs->log, off, &c);
  if (r < 0)
    return r;
  const uint8_t *data;
  size_t len;
  uint64_t at, last = UINT64_MAX;
  struct blocks_flush f, lastf;
  while ((r = log_cursor_next(c, &data, &len, &at)) == 1)
    if (flush_note_parse(data, len, &f)) {
      lastf = f;
      last = at;
    }
  log_cursor_close(c);
  if (r < 0 || last == UINT64_MAX)
    return r < 0 ? r : 0;
  char store[PATH_MAX];
  if ((r = sub_path(fs, "blocks", store, sizeof store)) == 0)
    r = blocks_flush_held(store, &lastf, fs->writer);
  if (r == 0)
    *stop = last;
  return r < 0 ? r : 0;
}

/* Applies the log's records from OFF on (already verified when appended).
 * With CHECK (fs_open, not heal) the flush notes met are checked: not those
 * from a note whose range did not survive a crash on (flush_check(); a
 * writer drops them from the log). */
static int replay(struct fs *fs, uint64_t off, bool check)
{
  uint64_t stop = UINT64_MAX;
  int r = check ? flush_check(fs, off, &stop) : 0;
  if (r == 0 && stop != UINT64_MAX && fs->writer && (r = log_truncate(fs->log, stop)) == 0)
    stop = UINT64_MAX;
  if (r < 0)
    return r;
  struct log_cursor *c = NULL;
  r = log_cursor_open(fs->log, off, &c);
  if (r < 0)
    return r;
  const uint8_t *data;
  size_t len;
  uint64_t at;
  struct entry *e = malloc(sizeof *e);
  if (!e) {
    log_cursor_close(c);
    return -ENOMEM;
  }
  while ((r = log_cursor_next(c, &data, &len, &at)) == 1 && at < stop) {
    /* A record that does not decode or that the view rejects was refused
     * before it was logged, or comes from a newer format (or is a flush
     * note): skip it. */
    if (entry_decode(data, len, e) < 0)
      continue;
    int s = view_apply(fs->view, e);
    if (s == -ENOMEM) {
      r = s;
      break;
    }
    fs->replayed++;
    fs->since_ckpt++;
  }
  /* (Records are contiguous: one stopped at STOP ends there.) */
  fs->applied_end = stop == UINT64_MAX ? log_cursor_offset(c) : stop;
  free(e);
  log_cursor_close(c);
  return r < 0 ? r : 0;
}

/* The first record of the log is the root MKDIR: the view's starting point. */
static int view_from_log(struct fs *fs)
{
  uint8_t buf[ENTRY_MAX_SIZE];
  size_t len = 0;
  int n = log_read(fs->log, LOG_HEADER_SIZE, buf, sizeof buf, &len);
  if (n < 0)
    return n == -EINVAL ? -BFS_EFORMAT : n;
  struct entry *root = malloc(sizeof *root);
  if (!root)
    return -ENOMEM;
  int r = entry_decode(buf, (size_t)n, root);
  if (r == 0 && !hash_eq(&root->id, &fs->root))
    r = -BFS_EFORMAT;
  if (r == 0)
    r = view_create(root, &fs->view);
  free(root);
  return r;
}

static int load_view(struct fs *fs, bool check)
{
  char path[PATH_MAX];
  int r = sub_path(fs, "view.ckpt", path, sizeof path);
  if (r < 0)
    return r;
  uint64_t off = 0;
  struct view *v = NULL;
  /* A checkpoint is only trusted if it is of this filesystem and covers no
   * more than the log holds; otherwise replay everything. */
  if (view_checkpoint_load(path, &v, &off) == 0 && hash_eq(view_root(v), &fs->root) &&
      off >= LOG_HEADER_SIZE && off <= log_end(fs->log)) {
    fs->view = v;
    fs->from_checkpoint = view_count(v) + view_pending(v);
    fs->ckpt_end = off;
    r = replay(fs, off, check);
    /* A writer's log ends cleanly (recovery cut any torn tail), so a replay
     * that stops short means the offset was no record boundary. */
    if (r == 0 && fs->writer && fs->applied_end != log_end(fs->log))
      r = -EINVAL;
    if (r != -EINVAL)
      return r;
    /* The offset is no record boundary: fall back to a full replay. */
    view_free(fs->view);
    fs->view = NULL;
    fs->from_checkpoint = fs->replayed = fs->since_ckpt = 0;
    fs->ckpt_end = 0;
  } else {
    view_free(v);
  }
  if ((r = view_from_log(fs)) < 0)
    return r;
  return replay(fs, LOG_HEADER_SIZE, check);
}

/*
 * Brings the view back to what the log holds, plus what is still batched:
 * after a refused local entry (the view stored it, the log never will) or a
 * failed commit (the batch is dropped). The view has no "unapply", so this
 * reloads it from the checkpoint and the log -- a rare path whose cost is one
 * open. The view object changes: owners holding view state re-install it
 * from the fs_set_view_hook() callback. If the reload fails, the old view
 * stays and is never checkpointed (tainted).
 */
static int heal(struct fs *fs)
{
  /* Someone may hold the view pointer: replace it only for a handle whose
   * owner said it copes (fs_set_view_hook), or that nobody else uses. */
  if (!fs->view_hook && !fs->view_private) {
    fs->tainted = true;
    return -EBUSY;
  }
  struct view *old = fs->view;
  uint64_t stats[3] = {fs->from_checkpoint, fs->replayed, fs->since_ckpt};
  uint64_t applied_end = fs->applied_end, ckpt_end = fs->ckpt_end;
  fs->view = NULL;
  fs->from_checkpoint = fs->replayed = fs->since_ckpt = 0;
  int r = load_view(fs, false);
  struct entry *e = r == 0 ? malloc(sizeof *e) : NULL;
  if (r == 0 && !e)
    r = -ENOMEM;
  for (size_t i = 0; i < fs->nbatch && r == 0; i++) {
    if (entry_decode(fs->batch[i].data, fs->batch[i].len, e) == 0 &&
        view_apply(fs->view, e) == -ENOMEM)
      r = -ENOMEM;
  }
  free(e);
  if (r < 0) {
    view_free(fs->view);
    fs->view = old;
    fs->from_checkpoint = stats[0];
    fs->replayed = stats[1];
    fs->since_ckpt = stats[2];
    fs->applied_end = applied_end;
    fs->ckpt_end = ckpt_end;
    fs->tainted = true;
    return r;
  }
  view_free(old);
  fs->from_checkpoint = stats[0];
  fs->replayed = stats[1];
  fs->since_ckpt += fs->nbatch;
  fs->tainted = false;
  if (fs->view_hook)
    fs->view_hook(fs->view_hook_arg, fs->view);
  return 0;
}

void fs_set_view_hook(struct fs *fs, void (*fn)(void *arg, struct view *v), void *arg)
{
  fs->view_hook = fn;
  fs->view_hook_arg = arg;
}

static void drop_batch_from(struct fs *fs, size_t start)
{
  for (size_t i = start; i < fs->nbatch; i++) {
    fs->ndeferred -= fs->batch[i].unsigned_;
    free(fs->batch[i].data);
  }
  fs->appended -= fs->nbatch - start;
  fs->since_ckpt -= fs->nbatch - start;
  fs->nbatch = start;
}

static int open_parts(struct fs *fs, bool create)
{
  char path[PATH_MAX];
  int r = sub_path(fs, "log", path, sizeof path);
  if (r < 0)
    return r;
  int flags = fs->writer ? LOG_WRITE | (create ? LOG_CREATE : 0) : LOG_READ;
  if ((r = log_open(path, flags, &fs->log, NULL)) < 0)
    return r;
  struct stat st;
  if (stat(path, &st) == 0)
    fs->log_dev = st.st_dev;
  if (fs->writer && create) {
    /* Make the store now; later opens open it on first use (blocks_of). */
    struct blocks *bs = NULL;
    if ((r = sub_path(fs, "blocks", path, sizeof path)) < 0 ||
        (r = blocks_open(path, BLOCKS_CREATE, &bs)) < 0)
      return r;
    fs->blocks = bs;
  }
  return 0;
}

/*
 * The block store, opened on first use: opening indexes every pack, which
 * commands that never touch file contents (ls, mkdir, keys) need not pay.
 * NULL if it cannot be opened (*ERR says why).
 */
static struct blocks *blocks_of(struct fs *fs, int *err)
{
  if (fs->blocks)
    return fs->blocks;
  char path[PATH_MAX];
  int r = sub_path(fs, "blocks", path, sizeof path);
  if (r == 0)
    r = blocks_open(path, fs->writer ? BLOCKS_CREATE : 0, &fs->blocks);
  if (r < 0) {
    fs->blocks = NULL;
    if (err)
      *err = r;
  }
  return fs->blocks;
}

int fs_open(const char *home, const char *name, bool writer, struct fs **out)
{
  *out = NULL;
  if (!fs_name_valid(name))
    return -EINVAL;
  struct fs *fs = fs_alloc(home, name, writer);
  if (!fs)
    return -ENOMEM;
  char meta[PATH_MAX];
  struct stat st;
  int r = sub_path(fs, "meta", meta, sizeof meta);
  if (r == 0 && stat(meta, &st) < 0)
    r = -errno;
  if (r == 0 && writer)
    r = lock_take(fs);
  if (r == 0)
    r = meta_read(fs);
  if (r == 0)
    r = open_parts(fs, false);
  if (r == 0)
    r = load_view(fs, true);
  if (r < 0) {
    fs_free(fs);
    return r;
  }
  *out = fs;
  return 0;
}

static uint64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int fs_create(const char *home, const char *name, const struct key *key, const void *cluster,
              size_t cluster_len, struct fs **out)
{
  *out = NULL;
  if (!fs_name_valid(name))
    return -EINVAL;
  char path[PATH_MAX];
  if (mkdir(home, 0700) < 0 && errno != EEXIST)
    return -errno;
  if (snprintf(path, sizeof path, "%s/fs", home) >= (int)sizeof path)
    return -ENAMETOOLONG;
  if (mkdir(path, 0700) < 0 && errno != EEXIST)
    return -errno;
  struct fs *fs = fs_alloc(home, name, true);
  if (!fs)
    return -ENOMEM;
  int r = 0;
  if (mkdir(fs->dir, 0700) < 0) {
    r = -errno;
    if (r == -EEXIST) {
      /* A directory without meta is a bootstrap that died half-way: redo it. */
      char meta[PATH_MAX];
      struct stat st;
      if (sub_path(fs, "meta", meta, sizeof meta) == 0 && stat(meta, &st) < 0 && errno == ENOENT)
        r = 0;
    }
  }
  if (r == 0)
    r = lock_take(fs);
  if (r == 0 && sub_path(fs, "log", path, sizeof path) == 0)
    unlink(path); /* only a half-made one can be here */
  if (r == 0)
    r = open_parts(fs, true);

  struct entry *root = calloc(1, sizeof *root);
  if (!root)
    r = r ? r : -ENOMEM;
  uint8_t buf[ENTRY_MAX_SIZE];
  if (r == 0) {
    root->action = ENTRY_MKDIR;
    root->mtime_ns = now_ns();
    root->mode = 0755;
    root->uid = (uint32_t)getuid();
    root->gid = (uint32_t)getgid();
    r = entry_sign(root, key);
  }
  int n = r == 0 ? entry_encode(root, buf, sizeof buf) : r;
  if (n < 0)
    r = n;
  if (r == 0)
    r = log_append(fs->log, buf, (size_t)n, NULL);
  if (r == 0) {
    fs->root = root->id;
    r = view_create(root, &fs->view);
  }
  free(root);
  if (r == 0) {
    fs->applied_end = log_end(fs->log);
    r = meta_write(fs); /* the filesystem exists from here on */
  }
  if (r == 0 && cluster) {
    const char *reason = NULL;
    r = fs_put(fs, key, "/.cluster", cluster, cluster_len, &reason);
    if (r == 0)
      r = fs_commit(fs);
  }
  if (r < 0) {
    fs_free(fs);
    return r;
  }
  *out = fs;
  return 0;
}

static int forward_commit(struct fs *fs);

/* Signs the batch's unsigned records (see DEFER_AFTER) in parallel, writes
 * the signatures into the records and rebuilds the view with them. On
 * failure the batch is dropped and the view healed: nothing of it counts. */
static int flush_deferred(struct fs *fs)
{
  if (fs->ndeferred == 0)
    return 0;
  int r = 0;
  struct entry *es = malloc(DEFER_CHUNK * sizeof *es);
  struct entry **ptrs = malloc(DEFER_CHUNK * sizeof *ptrs);
  size_t *at = malloc(DEFER_CHUNK * sizeof *at);
  if (!es || !ptrs || !at)
    r = -ENOMEM;
  for (size_t i = 0; i < fs->nbatch && r == 0;) {
    size_t n = 0;
    for (; i < fs->nbatch && n < DEFER_CHUNK && r == 0; i++) {
      if (!fs->batch[i].unsigned_)
        continue;
      r = entry_decode(fs->batch[i].data, fs->batch[i].len, &es[n]);
      ptrs[n] = &es[n];
      at[n++] = i;
    }
    if (r == 0)
      r = sign_entries(ptrs, n, fs->defer_key, 0);
    for (size_t j = 0; j < n && r == 0; j++) {
      struct pending_rec *rec = &fs->batch[at[j]];
      memcpy(rec->data + rec->len - KEY_SIGNATURE_SIZE, es[j].signature, KEY_SIGNATURE_SIZE);
    }
  }
  free(es);
  free(ptrs);
  free(at);
  if (r == 0) {
    for (size_t i = 0; i < fs->nbatch; i++)
      fs->batch[i].unsigned_ = false;
    fs->ndeferred = 0;
    /* The view still holds the entries without signatures. */
    r = heal(fs);
  }
  if (r < 0) {
    drop_batch_from(fs, 0);
    heal(fs);
  }
  return r;
}

int fs_commit(struct fs *fs)
{
  if (fs->forward && fs->nbatch)
    return forward_commit(fs);
  if (!fs->writer || fs->nbatch == 0)
    return 0;
  int r = flush_deferred(fs);
  if (r < 0)
    return r;
  /* THE RULE (store/blocks.h): the entries' blocks are durable first, or
   * their device flush is the log's fdatasync and the batch starts with a
   * note of what it relies on (see flush notes above). Never the log's
   * first record: that is the root. */
  struct blocks_flush owed = {0};
  r = 0;
  if (fs->blocks)
    r = log_end(fs->log) > LOG_HEADER_SIZE ? blocks_sync_deferred(fs->blocks, fs->log_dev, &owed)
                                            : blocks_sync(fs->blocks);
  uint8_t note[FLUSH_NOTE_SIZE];
  size_t k = r == 1 ? 1 : 0;
  if (r == 1) {
    flush_note(&owed, note);
    r = 0;
  }
  struct log_rec *recs = NULL;
  if (r == 0 && !(recs = malloc((fs->nbatch + k) * sizeof *recs)))
    r = -ENOMEM;
  if (r == 0) {
    if (k)
      recs[0] = (struct log_rec){note, sizeof note};
    for (size_t i = 0; i < fs->nbatch; i++) {
      recs[k + i].data = fs->batch[i].data;
      recs[k + i].len = fs->batch[i].len;
    }
    struct flush_wait w = {fs->blocks, &owed};
    r = log_append_batch_ordered(fs->log, recs, fs->nbatch + k, NULL, k ? flush_wait : NULL, &w);
  }
  free(recs);
  if (r == 0 && k)
    blocks_flushed(fs->blocks, &owed);
  if (r < 0) {
    /* Nothing of the batch is acknowledged: drop it, and the view with it,
     * so no one sees (and no later commit writes) what failed here. */
    drop_batch_from(fs, 0);
    heal(fs);
    return r;
  }
  for (size_t i = 0; i < fs->nbatch; i++)
    free(fs->batch[i].data);
  fs->nbatch = 0;
  fs->ndeferred = 0;
  fs->applied_end = log_end(fs->log);
  /* A long-lived writer (the daemon) checkpoints as it goes, too. The
   * batch is durable by now: a checkpoint that fails (a full disk) fails
   * no commit (the log is the truth, the checkpoint only saves replay
   * time) and is tried again FS_CHECKPOINT_LIVE records later, not at
   * every commit. */
  if (!fs->tainted && fs->since_ckpt >= FS_CHECKPOINT_LIVE + fs->ckpt_wait && fs_checkpoint(fs) < 0)
    fs->ckpt_wait = fs->since_ckpt;
  return 0;
}

int fs_checkpoint(struct fs *fs)
{
  if (!fs->writer)
    return -EBADF;
  if (fs->tainted)
    return -EIO;
  int r = fs_commit(fs);
  char path[PATH_MAX];
  if (r == 0)
    r = sub_path(fs, "view.ckpt", path, sizeof path);
  if (r == 0)
    r = view_checkpoint_save(fs->view, path, fs->applied_end);
  if (r == 0) {
    fs->ckpt_end = fs->applied_end;
    fs->since_ckpt = 0;
    fs->ckpt_wait = 0;
  }
  return r;
}

int fs_close(struct fs *fs)
{
  if (!fs)
    return 0;
  int r = 0;
  if (fs->writer) {
    r = fs_commit(fs);
    /* Records after the checkpoint are replayed at every open: keep them
     * few. Only that: a checkpoint that fails fails no close. */
    if (r == 0 && !fs->tainted && fs->since_ckpt >= FS_CHECKPOINT_EVERY)
      fs_checkpoint(fs);
  }
  fs_free(fs);
  return r;
}

int fs_discard(struct fs *fs)
{
  if (!fs)
    return 0;
  /* Nothing of the batch reaches the log or the owner; the view that
   * applied it dies with the handle (never checkpointed). */
  for (size_t i = 0; i < fs->nbatch; i++)
    free(fs->batch[i].data);
  fs->nbatch = 0;
  fs->ndeferred = 0;
  fs_free(fs);
  return 0;
}

struct view *fs_view(struct fs *fs)
{
  /* Others will see the view: no unsigned entry may be in it. On failure
   * the batch is gone and the error shows at the next write or commit. */
  flush_deferred(fs);
  fs->view_private = false;
  return fs->view;
}
struct blocks *fs_blocks(struct fs *fs) { return blocks_of(fs, NULL); }

/* Where new blocks go: the filesystem's store, or a forwarder's private one. */
static struct blocks *write_store(struct fs *fs, int *err)
{
  if (!fs->forward)
    return blocks_of(fs, err);
  if (fs->fwd_blocks)
    return fs->fwd_blocks;
  const char *tmp = getenv("TMPDIR");
  char dir[PATH_MAX];
  if (snprintf(dir, sizeof dir, "%s/basefs-fwd-XXXXXX", tmp && *tmp ? tmp : "/tmp") >=
      (int)sizeof dir) {
    *err = -ENAMETOOLONG;
    return NULL;
  }
  if (!mkdtemp(dir)) {
    *err = -errno;
    return NULL;
  }
  snprintf(fs->fwd_dir, sizeof fs->fwd_dir, "%s", dir);
  char store[PATH_MAX + 8];
  snprintf(store, sizeof store, "%s/blocks", dir);
  int r = blocks_open(store, BLOCKS_CREATE, &fs->fwd_blocks);
  if (r < 0) {
    *err = r;
    fs->fwd_blocks = NULL;
  }
  return fs->fwd_blocks;
}
const char *fs_dir(const struct fs *fs) { return fs->dir; }
const hash_t *fs_root(const struct fs *fs) { return &fs->root; }

void fs_open_stats(const struct fs *fs, uint64_t *from_checkpoint, uint64_t *replayed)
{
  if (from_checkpoint)
    *from_checkpoint = fs->from_checkpoint;
  if (replayed)
    *replayed = fs->replayed;
}

/* ---- submitting ---- */

static int batch_add(struct fs *fs, const struct entry *e)
{
  uint8_t buf[ENTRY_MAX_SIZE];
  int n = entry_encode(e, buf, sizeof buf);
  if (n < 0)
    return n;
  if (fs->nbatch == fs->capbatch) {
    size_t cap = fs->capbatch ? 2 * fs->capbatch : 64;
    struct pending_rec *bigger = realloc(fs->batch, cap * sizeof *bigger);
    if (!bigger)
      return -ENOMEM;
    fs->batch = bigger;
    fs->capbatch = cap;
  }
  uint8_t *copy = malloc((size_t)n);
  if (!copy)
    return -ENOMEM;
  memcpy(copy, buf, (size_t)n);
  fs->batch[fs->nbatch].data = copy;
  fs->batch[fs->nbatch].len = (size_t)n;
  fs->batch[fs->nbatch].unsigned_ = false;
  fs->nbatch++;
  fs->appended++;
  fs->since_ckpt++;
  return 0;
}

int fs_submit(struct fs *fs, const struct entry *e, bool local, const char **reason)
{
  const char *dummy;
  if (!reason)
    reason = &dummy;
  *reason = NULL;
  if (!fs->writer && !fs->forward)
    return -EBADF;
  int s = view_apply(fs->view, e);
  if (s < 0) {
    *reason = s == -BFS_EKIND   ? "the entry refers to an entry of the wrong kind"
              : s == -ENOSPC    ? "the pending set is full"
                                : NULL;
    return s;
  }
  if (s == VIEW_DUPLICATE) {
    /* Stored already; a local entry must also count (a refused one that a
     * tainted view still holds is refused again). */
    int st = view_entry_status(fs->view, &e->id);
    if (!local || st == VIEW_APPLIED)
      return 0;
    s = st < 0 ? VIEW_PENDING_REF : st;
  }
  if (local && s != VIEW_APPLIED) {
    /* Stored in memory but not counting: keep it out of the log, and out of
     * the view again. */
    heal(fs);
    *reason = s == VIEW_PENDING_GRANT ? "the key holds no grant covering this path"
                                      : "the entry refers to an unknown entry";
    return s == VIEW_PENDING_GRANT ? -BFS_ENOGRANT : -BFS_ENOPARENT;
  }
  int r = batch_add(fs, e);
  if (r < 0)
    heal(fs);
  return r;
}

int fs_submit_raw(struct fs *fs, const uint8_t *buf, size_t len, const char **reason)
{
  const char *dummy;
  if (!reason)
    reason = &dummy;
  *reason = NULL;
  struct entry *e = malloc(sizeof *e);
  if (!e)
    return -ENOMEM;
  int r = entry_decode(buf, len, e);
  if (r < 0)
    *reason = "malformed entry";
  else if ((r = entry_verify(e)) < 0)
    *reason = r == -ENOMEM ? "no memory to check the signature" : "bad signature";
  else
    r = fs_submit(fs, e, false, reason);
  free(e);
  return r;
}

/* Calls FN for every entry in the log, in log order, up to where the view
 * applied them: a reader stops where replay stopped (records after a lost
 * flush note are hidden, and what a writer appended since is not in its
 * view). */
int fs_foreach_entry(struct fs *fs, int (*fn)(const struct entry *e, void *arg), void *arg)
{
  struct log_cursor *c = NULL;
  int r = log_cursor_open(fs->log, LOG_HEADER_SIZE, &c);
  if (r < 0)
    return r;
  struct entry *e = malloc(sizeof *e);
  if (!e) {
    log_cursor_close(c);
    return -ENOMEM;
  }
  const uint8_t *data;
  size_t len;
  uint64_t at;
  while ((r = log_cursor_next(c, &data, &len, &at)) == 1 && at < fs->applied_end) {
    if (entry_decode(data, len, e) < 0)
      continue;
    if ((r = fn(e, arg)) != 0)
      break;
  }
  free(e);
  log_cursor_close(c);
  return r < 0 ? r : 0;
}

/* ---- paths ---- */

/* Splits PATH into its parent's path (PARENT) and its last name (NAME). */
static int split_path(const char *path, char parent[FS_PATH_MAX], char name[ENTRY_NAME_MAX + 1])
{
  size_t n = path ? strlen(path) : 0;
  if (n == 0 || n >= FS_PATH_MAX || path[0] != '/')
    return -EINVAL;
  memcpy(parent, path, n + 1);
  while (n > 1 && parent[n - 1] == '/')
    parent[--n] = '\0';
  char *slash = strrchr(parent, '/');
  size_t name_len = strlen(slash + 1);
  if (name_len == 0)
    return -EINVAL; /* "/" itself has no parent */
  if (!entry_name_valid(slash + 1, name_len))
    return -EINVAL;
  memcpy(name, slash + 1, name_len + 1);
  if (slash == parent)
    slash[1] = '\0';
  else
    *slash = '\0';
  return 0;
}

static int resolve(struct fs *fs, const char *path, struct view_node *node, hash_t *name_head)
{
  if (!path || path[0] != '/')
    return -EINVAL;
  return view_resolve(fs->view, path, node, name_head);
}

int fs_resolve(struct fs *fs, const char *path, hash_t *object)
{
  struct view_node n;
  int r = resolve(fs, path, &n, NULL);
  if (r == 0)
    *object = n.id;
  return r;
}

static void to_fs_stat(const struct view_node *n, const struct view_stat *vs, struct fs_stat *st)
{
  memset(st, 0, sizeof *st);
  st->object = vs->object;
  if (hash_is_zero(&st->object))
    st->object = n->id;
  st->type = vs->type == VIEW_DIR ? FS_DIR : vs->type == VIEW_SYMLINK ? FS_SYMLINK : FS_FILE;
  st->mode = vs->mode;
  st->uid = vs->uid;
  st->gid = vs->gid;
  st->size = vs->size;
  st->mtime_ns = vs->mtime_ns;
}

int fs_stat(struct fs *fs, const char *path, struct fs_stat *st)
{
  struct view_node n;
  struct view_stat vs;
  int r = resolve(fs, path, &n, NULL);
  if (r == 0)
    r = view_stat(fs->view, &n, &vs);
  if (r == 0)
    to_fs_stat(&n, &vs, st);
  return r;
}

/* ---- content ---- */

/* The largest file fs_read() returns in one piece. */
#define FS_READ_MAX ((size_t)1 << 34)
/* DELTA chains longer than this are cut by writing a full version. */
#define FS_DELTA_CHAIN_MAX 16

/* The content carried by content entry ID (a WRITE or SLINK), DELTA bases included. */
static int decode_content(struct fs *fs, const hash_t *id, int depth, uint8_t **out, size_t *len)
{
  struct entry *e = malloc(sizeof *e);
  if (!e)
    return -ENOMEM;
  int r = view_entry(fs->view, id, e);
  uint8_t *prev = NULL;
  size_t prev_len = 0;
  if (r == 0 && e->content_kind == ENTRY_CONTENT_DELTA) {
    hash_t base;
    if (depth > 4 * FS_DELTA_CHAIN_MAX)
      r = -BFS_EFORMAT;
    else if ((r = view_content_base(fs->view, id, &base)) == 0)
      r = decode_content(fs, &base, depth + 1, &prev, &prev_len);
  }
  if (r == 0 && e->size > FS_READ_MAX)
    r = -EFBIG;
  if (r == 0 && e->size == 0) {
    *out = NULL;
    *len = 0;
  } else if (r == 0) {
    struct blocks *bs = NULL;
    if (e->content_kind == ENTRY_CONTENT_BLOCKS || e->content_kind == ENTRY_CONTENT_BLOCKLIST) {
      r = -ENOENT;
      bs = blocks_of(fs, &r);
    }
    if (bs || (e->content_kind != ENTRY_CONTENT_BLOCKS &&
               e->content_kind != ENTRY_CONTENT_BLOCKLIST))
      r = content_decode(bs, e->content_kind, e->content, e->content_len, e->size, prev,
                         prev_len, FS_READ_MAX, out);
    if (r == 0)
      *len = (size_t)e->size;
  }
  free(prev);
  free(e);
  return r;
}

/* How many DELTA links lead from content entry ID to a full version. */
static int delta_depth(struct fs *fs, const hash_t *id)
{
  struct entry *e = malloc(sizeof *e);
  if (!e)
    return FS_DELTA_CHAIN_MAX;
  hash_t cur = *id;
  int depth = 0;
  while (depth < FS_DELTA_CHAIN_MAX && view_entry(fs->view, &cur, e) == 0 &&
         e->content_kind == ENTRY_CONTENT_DELTA && view_content_base(fs->view, &cur, &cur) == 0)
    depth++;
  free(e);
  return depth;
}

int fs_read(struct fs *fs, const char *path, uint8_t **data, size_t *len)
{
  *data = NULL;
  *len = 0;
  struct view_node n;
  struct view_stat vs;
  int r = resolve(fs, path, &n, NULL);
  if (r == 0)
    r = view_stat(fs->view, &n, &vs);
  if (r < 0)
    return r;
  if (vs.type == VIEW_DIR)
    return -EISDIR;
  if (hash_is_zero(&vs.content))
    return 0; /* an empty file */
  return decode_content(fs, &vs.content, 0, data, len);
}

int fs_stream(struct fs *fs, const char *path, int (*fn)(void *arg, const uint8_t *p, size_t n),
              void *arg)
{
  struct view_node n;
  struct view_stat vs;
  int r = resolve(fs, path, &n, NULL);
  if (r == 0)
    r = view_stat(fs->view, &n, &vs);
  if (r < 0)
    return r;
  if (vs.type == VIEW_DIR)
    return -EISDIR;
  if (hash_is_zero(&vs.content))
    return 0;
  struct entry *e = malloc(sizeof *e);
  if (!e)
    return -ENOMEM;
  if ((r = view_entry(fs->view, &vs.content, e)) == 0 &&
      (e->content_kind == ENTRY_CONTENT_BLOCKS || e->content_kind == ENTRY_CONTENT_BLOCKLIST)) {
    /* Block by block: a large file never sits in memory whole. */
    struct blocks *bs = blocks_of(fs, &r);
    struct content_reader *cr = NULL;
    if (bs)
      r = content_open(bs, e->content_kind, e->content, e->content_len, e->size, NULL, 0, &cr);
    uint8_t *buf = r == 0 ? malloc(1 << 20) : NULL;
    if (r == 0 && !buf)
      r = -ENOMEM;
    for (uint64_t off = 0; r == 0 && off < e->size;) {
      ssize_t got = content_read(cr, off, buf, 1 << 20);
      if (got <= 0) {
        r = got < 0 ? (int)got : -BFS_EFORMAT;
        break;
      }
      r = fn(arg, buf, (size_t)got);
      off += (uint64_t)got;
    }
    free(buf);
    if (cr)
      content_close(cr);
    free(e);
    return r;
  }
  free(e);
  if (r < 0)
    return r;
  uint8_t *data = NULL;
  size_t len = 0;
  if ((r = decode_content(fs, &vs.content, 0, &data, &len)) == 0 && len)
    r = fn(arg, data, len);
  free(data);
  return r;
}

int fs_read_version(struct fs *fs, const hash_t *version, uint8_t **data, size_t *len)
{
  *data = NULL;
  *len = 0;
  struct view_node n = {.kind = VIEW_NODE_VERSION, .readonly = 1, .id = *version};
  struct view_stat vs;
  int r = view_stat(fs->view, &n, &vs);
  if (r < 0)
    return r;
  if (vs.type == VIEW_DIR)
    return -EISDIR;
  if (hash_is_zero(&vs.content))
    return 0;
  return decode_content(fs, &vs.content, 0, data, len);
}

int fs_readdir(struct fs *fs, const char *path, char ***names, size_t *count)
{
  *names = NULL;
  *count = 0;
  struct view_node n;
  int r = resolve(fs, path, &n, NULL);
  if (r < 0)
    return r;
  return view_list(fs->view, &n, names, count);
}

void fs_names_free(char **names, size_t count) { view_names_free(names, count); }

/* ---- keys and versions ---- */

/* The label of FP among grants G: the root key is "root"; else the latest
 * active grant's label, else any label the key was given. */
static void name_in(struct fs *fs, const struct view_grant *g, size_t n, const hash_t *fp,
                    char out[ENTRY_NAME_MAX + 1])
{
  out[0] = '\0';
  if (hash_eq(fp, view_root_key(fs->view))) {
    strcpy(out, "root");
    return;
  }
  for (size_t i = 0; i < n; i++)
    if (hash_eq(&g[i].key, fp) && (g[i].active || !out[0]))
      snprintf(out, ENTRY_NAME_MAX + 1, "%s", g[i].name);
}

void fs_key_name(struct fs *fs, const hash_t *fp, char out[ENTRY_NAME_MAX + 1])
{
  struct view_grant *g = NULL;
  size_t n = 0;
  if (view_grants(fs->view, &g, &n) < 0)
    n = 0;
  name_in(fs, g, n, fp, out);
  free(g);
}

int fs_versions(struct fs *fs, const char *path, struct fs_version **out, size_t *count)
{
  *out = NULL;
  *count = 0;
  struct view_node n;
  int r = resolve(fs, path, &n, NULL);
  if (r < 0)
    return r;
  if (n.kind != VIEW_NODE_OBJECT && n.kind != VIEW_NODE_HISTORY_OBJ &&
      n.kind != VIEW_NODE_CONFLICT_OBJ)
    return -EINVAL;
  struct view_version *v = NULL;
  size_t nv = 0;
  if ((r = view_versions(fs->view, &n.id, &v, &nv)) < 0)
    return r;
  struct view_stat vs;
  struct view_node live = {.kind = VIEW_NODE_OBJECT, .id = n.id};
  bool have_head = view_stat(fs->view, &live, &vs) == 0;
  struct fs_version *fv = calloc(nv ? nv : 1, sizeof *fv);
  struct view_grant *g = NULL;
  size_t ng = 0;
  if (!fv || view_grants(fs->view, &g, &ng) < 0) {
    free(fv);
    free(v);
    return -ENOMEM;
  }
  for (size_t i = 0; i < nv; i++) {
    fv[i].id = v[i].id;
    fv[i].action = v[i].action;
    fv[i].mtime_ns = v[i].mtime_ns;
    fv[i].author = v[i].author;
    name_in(fs, g, ng, &v[i].author, fv[i].keyname);
    /* The creating entry roots both threads: it is "current" only as the
     * content head, not merely for never having been renamed. */
    fv[i].current = (v[i].flags & VIEW_V_HEAD) &&
                    (have_head ? (hash_eq(&v[i].id, &vs.version) ||
                                  (!(v[i].flags & VIEW_V_CONTENT) && !hash_eq(&v[i].id, &n.id)))
                               : true);
    fv[i].loser = v[i].flags & VIEW_V_LOSER;
  }
  free(v);
  free(g);
  *out = fv;
  *count = nv;
  return 0;
}

/* Finds the path of directory object OBJ by walking the tree (for `keys`). */
struct path_search {
  struct fs *fs;
  const hash_t *obj;
  char *path;
  size_t cap;
  int depth;
  bool found;
};

static int search_dir(struct path_search *s, const struct view_node *dir, size_t len);

static int search_cb(void *arg, const char *name, const struct view_node *node, uint64_t cookie)
{
  (void)cookie;
  struct path_search *s = arg;
  struct view_stat vs;
  if (node->kind != VIEW_NODE_OBJECT || view_stat(s->fs->view, node, &vs) < 0 ||
      vs.type != VIEW_DIR)
    return 0;
  size_t len = strlen(s->path);
  int n = snprintf(s->path + len, s->cap - len, "%s%s", len > 1 ? "/" : "", name);
  if (n < 0 || (size_t)n >= s->cap - len) {
    s->path[len] = '\0';
    return 0;
  }
  if (hash_eq(&node->id, s->obj)) {
    s->found = true;
    return 1;
  }
  if (s->depth < 64) {
    s->depth++;
    int r = search_dir(s, node, len);
    s->depth--;
    if (r)
      return r;
  }
  s->path[len] = '\0';
  return 0;
}

static int search_dir(struct path_search *s, const struct view_node *dir, size_t len)
{
  (void)len;
  return view_readdir(s->fs->view, dir, 0, search_cb, s);
}

static void object_path(struct fs *fs, const hash_t *obj, char *out, size_t cap)
{
  struct view_node root;
  view_root_node(fs->view, &root);
  snprintf(out, cap, "/");
  if (hash_eq(&root.id, obj))
    return;
  struct path_search s = {.fs = fs, .obj = obj, .path = out, .cap = cap};
  if (search_dir(&s, &root, 1) <= 0 || !s.found) {
    char hex[HASH_HEX_SIZE];
    hash_to_hex(obj, hex);
    snprintf(out, cap, "/.basefs/history/%s/tree", hex);
  }
}

int fs_grants(struct fs *fs, struct fs_grant **out, size_t *count)
{
  *out = NULL;
  *count = 0;
  struct view_grant *g = NULL;
  size_t n = 0;
  int r = view_grants(fs->view, &g, &n);
  if (r < 0)
    return r;
  struct fs_grant *fg = calloc(n + 1, sizeof *fg);
  if (!fg) {
    free(g);
    return -ENOMEM;
  }
  size_t k = 0;
  fg[k].id = fs->root;
  fg[k].fingerprint = *view_root_key(fs->view);
  strcpy(fg[k].keyname, "root");
  strcpy(fg[k].path, "/");
  k++;
  for (size_t i = 0; i < n; i++) {
    if (!g[i].active)
      continue;
    fg[k].id = g[i].id;
    fg[k].fingerprint = g[i].key;
    snprintf(fg[k].keyname, sizeof fg[k].keyname, "%s", g[i].name);
    object_path(fs, &g[i].dir, fg[k].path, sizeof fg[k].path);
    k++;
  }
  free(g);
  *out = fg;
  *count = k;
  return 0;
}

/* ---- writing ---- */

static size_t varint_len(uint64_t v)
{
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

/* The content bytes still free in E once everything else is encoded. */
static size_t content_room(const struct entry *e)
{
  size_t fixed = 4 + 2 /* content length varint, up to 16383 */ + KEY_PUBLIC_SIZE +
                 KEY_SIGNATURE_SIZE + 1 + e->name_len;
  fixed += HASH_SIZE * (!hash_is_zero(&e->parent) + !hash_is_zero(&e->dir) + !hash_is_zero(&e->target));
  fixed += varint_len(e->mtime_ns) + varint_len(e->size) + varint_len(e->mode) +
           varint_len(e->uid) + varint_len(e->gid);
  size_t room = fixed < ENTRY_MAX_SIZE ? ENTRY_MAX_SIZE - fixed : 0;
  return room < ENTRY_CONTENT_MAX ? room : ENTRY_CONTENT_MAX;
}

static void set_name(struct entry *e, const char *name)
{
  size_t n = strlen(name);
  memcpy(e->name, name, n + 1);
  e->name_len = (uint8_t)n;
}

static void key_fp(const struct key *key, hash_t *fp)
{
  uint8_t pub[KEY_PUBLIC_SIZE];
  key_public(key, pub);
  key_fingerprint(pub, fp);
}

/* A write helper's scope: entries it submitted are dropped again if it fails. */
struct op {
  struct fs *fs;
  size_t start;
  const char **reason;
  const char *dummy;
  hash_t fp;
  struct entry *e;
};

static int op_begin(struct op *op, struct fs *fs, const struct key *key, const char **reason)
{
  memset(op, 0, sizeof *op);
  op->fs = fs;
  op->start = fs->nbatch;
  op->reason = reason ? reason : &op->dummy;
  *op->reason = NULL;
  if (!fs->writer && !fs->forward)
    return -EBADF;
  key_fp(key, &op->fp);
  if (!(op->e = malloc(sizeof *op->e)))
    return -ENOMEM;
  return 0;
}

static struct entry *op_entry(struct op *op, uint8_t action)
{
  memset(op->e, 0, sizeof *op->e);
  op->e->action = action;
  op->e->mtime_ns = now_ns();
  return op->e;
}

static int op_end(struct op *op, int r)
{
  struct fs *fs = op->fs;
  if (r < 0 && fs->nbatch > op->start) {
    /* Part of this change is applied: drop it from the batch and the view. */
    drop_batch_from(fs, op->start);
    heal(fs);
  }
  if (r < 0 && !*op->reason) {
    if (r == -BFS_ENOGRANT)
      *op->reason = "the key holds no grant covering this path";
    else if (r == -ENOENT)
      *op->reason = "no such file or directory";
  }
  free(op->e);
  return r < 0 ? r : 0;
}

/* May this local entry of KEY go into the batch unsigned (see DEFER_AFTER)? */
static bool can_defer(struct fs *fs, const struct key *key)
{
  if (!fs->writer || fs->forward || !fs->view_private || fs->view_hook || fs->nbatch < DEFER_AFTER)
    return false;
  uint8_t pub[KEY_PUBLIC_SIZE], have[KEY_PUBLIC_SIZE];
  key_public(key, pub);
  if (fs->defer_key) {
    key_public(fs->defer_key, have);
    /* One signing key for all deferred records: another key signs at once. */
    if (memcmp(pub, have, KEY_PUBLIC_SIZE) == 0)
      return true;
    if (fs->ndeferred > 0)
      return false;
    key_free(fs->defer_key);
    fs->defer_key = NULL;
  }
  return key_dup(key, &fs->defer_key) == 0;
}

static int op_submit(struct op *op, const struct key *key)
{
  struct fs *fs = op->fs;
  if (!can_defer(fs, key)) {
    int r = entry_sign(op->e, key);
    if (r < 0)
      return r;
    return fs_submit(fs, op->e, true, op->reason);
  }
  uint8_t pub[KEY_PUBLIC_SIZE];
  key_public(key, pub);
  memset(op->e->signature, 0, KEY_SIGNATURE_SIZE);
  int r = entry_prepare(op->e, pub);
  if (r < 0)
    return r;
  size_t before = fs->nbatch;
  r = fs_submit(fs, op->e, true, op->reason);
  if (r == 0 && fs->nbatch > before) {
    fs->batch[before].unsigned_ = true;
    fs->ndeferred++;
  }
  return r;
}

static int check_write(struct op *op, const struct view_node *n)
{
  int r = view_check_write(op->fs->view, &op->fp, n);
  if (r == -EROFS)
    *op->reason = "read-only (history and conflicts cannot be changed)";
  return r;
}

/* May the key remove or move away OBJ's name? (Needs the directory holding it.) */
static int check_unlink(struct op *op, const struct view_node *n)
{
  int r = view_check_unlink(op->fs->view, &op->fp, n);
  if (r == -EROFS)
    *op->reason = "read-only (history and conflicts cannot be changed)";
  else if (r == -BFS_ENOGRANT)
    *op->reason = "the key holds no grant on the directory holding this name";
  return r;
}

/* Resolves the directory that will hold PATH's last name. */
static int parent_dir(struct op *op, const char *path, struct view_node *dir,
                      char name[ENTRY_NAME_MAX + 1])
{
  char parent[FS_PATH_MAX];
  int r = split_path(path, parent, name);
  if (r < 0) {
    *op->reason = "not a valid path (absolute, no . or .. components, not /)";
    return r;
  }
  struct view_stat vs;
  r = resolve(op->fs, parent, dir, NULL);
  if (r == -ENOENT)
    *op->reason = "the parent directory does not exist";
  if (r == 0 && (r = view_stat(op->fs->view, dir, &vs)) == 0 && vs.type != VIEW_DIR) {
    *op->reason = "the parent is not a directory";
    r = -ENOTDIR;
  }
  return r;
}

static int check_new_name(struct op *op, const struct view_node *dir, const char *name)
{
  int r = view_check_name(op->fs->view, dir, name);
  if (r == -EEXIST)
    *op->reason = "already exists";
  else if (r == -EPERM)
    *op->reason = "the name .basefs is reserved in /";
  return r;
}

/* A new object NAME in DIR: checks the name and the key's grant, then fills
 * E's creating fields (owned by the calling user). */
static int init_create(struct op *op, const struct view_node *dir, const char *name,
                       struct entry *e, uint32_t mode)
{
  int r = check_new_name(op, dir, name);
  if (r == 0)
    r = check_write(op, dir);
  if (r < 0)
    return r;
  e->dir = dir->id;
  set_name(e, name);
  e->mode = mode;
  e->uid = (uint32_t)getuid();
  e->gid = (uint32_t)getgid();
  return 0;
}

/* The previous content for a delta, when a delta is worth trying. */
static void delta_base(struct fs *fs, const struct view_stat *vs, size_t len, uint8_t **prev,
                       size_t *prev_len)
{
  *prev = NULL;
  *prev_len = 0;
  if (len > (64u << 10) || vs->size > (64u << 10) || vs->size == 0 || hash_is_zero(&vs->content) ||
      delta_depth(fs, &vs->content) >= FS_DELTA_CHAIN_MAX)
    return;
  if (decode_content(fs, &vs->content, 0, prev, prev_len) < 0) {
    free(*prev);
    *prev = NULL;
    *prev_len = 0;
  }
}

/* fs_put() and fs_put_fd(): the content is DATA/LEN, or FD (>= 0) from offset 0 to EOF. */
static int put_common(struct fs *fs, const struct key *key, const char *path, const void *data,
                      size_t len, int fd, const char **reason)
{
  struct op op;
  int r = op_begin(&op, fs, key, reason);
  if (r == 0 && fd >= 0) {
    struct stat st;
    if (fstat(fd, &st) < 0)
      r = -errno;
    else if (!S_ISREG(st.st_mode))
      r = -EINVAL; /* read at offsets: a regular file only */
    else
      len = (size_t)st.st_size;
  }
  struct view_node dir, obj;
  struct view_stat vs;
  char name[ENTRY_NAME_MAX + 1];
  hash_t head;
  uint8_t *prev = NULL;
  size_t prev_len = 0;
  if (r == 0)
    r = parent_dir(&op, path, &dir, name);
  if (r < 0)
    return op_end(&op, r);
  struct entry *e = op_entry(&op, ENTRY_WRITE);
  r = view_lookup(fs->view, &dir, name, &obj, &head);
  if (r == 0) {
    /* An update: the next version of the content thread. */
    if ((r = view_stat(fs->view, &obj, &vs)) == 0 && vs.type == VIEW_DIR) {
      *op.reason = "is a directory";
      r = -EISDIR;
    } else if (r == 0 && vs.type == VIEW_SYMLINK) {
      *op.reason = "is a symbolic link";
      r = -EEXIST;
    }
    if (r == 0)
      r = check_write(&op, &obj);
    if (r < 0)
      return op_end(&op, r);
    e->parent = vs.version;
    e->mode = vs.mode;
    e->uid = vs.uid;
    e->gid = vs.gid;
    delta_base(fs, &vs, len, &prev, &prev_len);
  } else if (r == -ENOENT) {
    if ((r = init_create(&op, &dir, name, e, 0644)) < 0)
      return op_end(&op, r);
  } else {
    return op_end(&op, r);
  }
  e->size = len;
  size_t out_len = 0;
  /* Small contents fit the entry and never need the block store. */
  struct blocks *bs = len > ENTRY_CONTENT_MAX ? write_store(fs, &r) : NULL;
  if (fd >= 0 && (len <= ENTRY_CONTENT_MAX || bs)) {
    uint64_t size = 0;
    r = content_encode_fd(bs, fd, prev, prev_len, content_room(e), &e->content_kind, e->content,
                          &out_len, &size);
    if (r == -BFS_ETOOBIG && !bs && (bs = write_store(fs, &r)))
      r = content_encode_fd(bs, fd, prev, prev_len, content_room(e), &e->content_kind, e->content,
                            &out_len, &size);
    if (r == 0 && size != len) {
      *op.reason = "the file changed while it was read";
      r = -EAGAIN;
    }
  } else if (len <= ENTRY_CONTENT_MAX || bs) {
    r = content_encode(bs, data, len, prev, prev_len, content_room(e), &e->content_kind,
                       e->content, &out_len);
    if (r == -BFS_ETOOBIG && !bs && (bs = write_store(fs, &r)))
      r = content_encode(bs, data, len, prev, prev_len, content_room(e), &e->content_kind,
                         e->content, &out_len);
  }
  free(prev);
  if (r == 0) {
    e->content_len = (uint16_t)out_len;
    r = op_submit(&op, key);
  }
  return op_end(&op, r);
}

int fs_put(struct fs *fs, const struct key *key, const char *path, const void *data, size_t len,
           const char **reason)
{
  return put_common(fs, key, path, data, len, -1, reason);
}

int fs_put_fd(struct fs *fs, const struct key *key, const char *path, int fd, const char **reason)
{
  return put_common(fs, key, path, NULL, 0, fd, reason);
}

int fs_mkdir(struct fs *fs, const struct key *key, const char *path, const char **reason)
{
  struct op op;
  struct view_node dir;
  char name[ENTRY_NAME_MAX + 1];
  int r = op_begin(&op, fs, key, reason);
  if (r == 0)
    r = parent_dir(&op, path, &dir, name);
  if (r == 0) {
    struct entry *e = op_entry(&op, ENTRY_MKDIR);
    if ((r = init_create(&op, &dir, name, e, 0755)) == 0)
      r = op_submit(&op, key);
  }
  return op_end(&op, r);
}

/* Deletes NODE (bound with name thread head HEAD), children first. With
 * CHECK only checks that every delete would be allowed. */
static int rm_node(struct op *op, const struct key *key, const struct view_node *node,
                   const hash_t *head, bool recursive, bool check, int depth)
{
  struct fs *fs = op->fs;
  struct view_stat vs;
  int r = view_stat(fs->view, node, &vs);
  if (r < 0)
    return r;
  if (vs.type == VIEW_DIR) {
    char **names = NULL;
    size_t count = 0;
    if ((r = view_list(fs->view, node, &names, &count)) < 0)
      return r;
    if (count && !recursive) {
      *op->reason = "is a directory and not empty (use rm -r)";
      r = -ENOTEMPTY;
    }
    if (depth > 4096)
      r = -ELOOP;
    for (size_t i = 0; i < count && r == 0; i++) {
      struct view_node child;
      hash_t child_head;
      r = view_lookup(fs->view, node, names[i], &child, &child_head);
      if (r == 0)
        r = rm_node(op, key, &child, &child_head, recursive, check, depth + 1);
    }
    view_names_free(names, count);
    if (r < 0)
      return r;
  }
  if ((r = check_unlink(op, node)) < 0 || check)
    return r;
  struct entry *e = op_entry(op, ENTRY_DELETE);
  e->parent = *head;
  return op_submit(op, key);
}

int fs_rm(struct fs *fs, const struct key *key, const char *path, bool recursive,
          const char **reason)
{
  struct op op;
  struct view_node node;
  hash_t head;
  int r = op_begin(&op, fs, key, reason);
  if (r == 0)
    r = resolve(fs, path, &node, &head);
  if (r == 0 && (node.kind != VIEW_NODE_OBJECT || node.readonly || hash_is_zero(&head))) {
    *op.reason = hash_eq(&node.id, &fs->root) ? "the root directory cannot be removed"
                                              : "read-only (history and conflicts cannot be changed)";
    r = hash_eq(&node.id, &fs->root) ? -EBUSY : -EROFS;
  }
  /* Check the whole tree first, so a refused delete deletes nothing. */
  if (r == 0)
    r = rm_node(&op, key, &node, &head, recursive, true, 0);
  if (r == 0)
    r = rm_node(&op, key, &node, &head, recursive, false, 0);
  return op_end(&op, r);
}

int fs_mv(struct fs *fs, const struct key *key, const char *from, const char *to,
          const char **reason)
{
  struct op op;
  struct view_node node, dir, existing;
  struct view_stat vs;
  hash_t head, existing_head;
  char name[ENTRY_NAME_MAX + 1];
  int r = op_begin(&op, fs, key, reason);
  if (r == 0)
    r = resolve(fs, from, &node, &head);
  if (r == 0 && (node.kind != VIEW_NODE_OBJECT || node.readonly || hash_is_zero(&head))) {
    *op.reason = "cannot be moved";
    r = -EBUSY;
  }
  if (r < 0)
    return op_end(&op, r);
  /* Into an existing directory TO under FROM's name, else to TO itself. */
  if (resolve(fs, to, &dir, NULL) == 0 && view_stat(fs->view, &dir, &vs) == 0 &&
      vs.type == VIEW_DIR) {
    char ignored[FS_PATH_MAX];
    if ((r = split_path(from, ignored, name)) < 0)
      return op_end(&op, r);
  } else if ((r = parent_dir(&op, to, &dir, name)) < 0) {
    return op_end(&op, r);
  }
  r = view_lookup(fs->view, &dir, name, &existing, &existing_head);
  if (r == 0 && hash_eq(&existing.id, &node.id))
    return op_end(&op, 0); /* already there */
  bool replace = r == 0;
  if (r == 0) {
    /* Replace a file or link like mv(1) does; never a directory. */
    if ((r = view_stat(fs->view, &existing, &vs)) == 0 && vs.type == VIEW_DIR) {
      *op.reason = "the target exists and is a directory";
      r = -EEXIST;
    }
    if (r == 0)
      r = check_unlink(&op, &existing);
  } else if (r == -ENOENT) {
    r = check_new_name(&op, &dir, name);
  }
  if (r == 0) {
    r = view_check_move(fs->view, &op.fp, &node, &dir);
    if (r == -EXDEV)
      *op.reason = "source and target lie under different grants of the key";
    else if (r == -EINVAL)
      *op.reason = "cannot move a directory into itself";
  }
  if (r == 0 && replace) {
    struct entry *e = op_entry(&op, ENTRY_DELETE);
    e->parent = existing_head;
    r = op_submit(&op, key);
  }
  if (r == 0) {
    struct entry *e = op_entry(&op, ENTRY_RENAME);
    e->parent = head;
    e->dir = dir.id;
    set_name(e, name);
    r = op_submit(&op, key);
  }
  return op_end(&op, r);
}

int fs_symlink(struct fs *fs, const struct key *key, const char *target, const char *linkpath,
               const char **reason)
{
  struct op op;
  struct view_node dir;
  char name[ENTRY_NAME_MAX + 1];
  int r = op_begin(&op, fs, key, reason);
  size_t len = strlen(target);
  if (r == 0 && len == 0) {
    *op.reason = "empty link target";
    r = -EINVAL;
  }
  if (r == 0)
    r = parent_dir(&op, linkpath, &dir, name);
  if (r == 0) {
    struct entry *e = op_entry(&op, ENTRY_SLINK);
    if ((r = init_create(&op, &dir, name, e, 0777)) < 0)
      return op_end(&op, r);
    e->size = len;
    if (len > content_room(e)) {
      *op.reason = "link target too long";
      r = -ENAMETOOLONG;
    } else {
      e->content_kind = ENTRY_CONTENT_INLINE;
      memcpy(e->content, target, len);
      e->content_len = (uint16_t)len;
      r = op_submit(&op, key);
    }
  }
  return op_end(&op, r);
}

int fs_chmod(struct fs *fs, const struct key *key, const char *path, uint32_t mode,
             const char **reason)
{
  struct op op;
  struct view_node node;
  struct view_stat vs;
  int r = op_begin(&op, fs, key, reason);
  if (r == 0 && mode > 07777)
    r = -EINVAL;
  if (r == 0)
    r = resolve(fs, path, &node, NULL);
  if (r == 0)
    r = view_stat(fs->view, &node, &vs);
  if (r == 0)
    r = check_write(&op, &node);
  if (r == 0) {
    struct entry *e = op_entry(&op, ENTRY_MODE);
    e->parent = vs.version;
    e->mode = mode;
    e->uid = vs.uid;
    e->gid = vs.gid;
    r = op_submit(&op, key);
  }
  return op_end(&op, r);
}

int fs_grant(struct fs *fs, const struct key *key, const char *path,
             const uint8_t pub[KEY_PUBLIC_SIZE], const char *keyname, const char **reason)
{
  struct op op;
  struct view_node node;
  struct view_stat vs;
  int r = op_begin(&op, fs, key, reason);
  if (r == 0 && !entry_name_valid(keyname, strlen(keyname))) {
    *op.reason = "not a valid key name";
    r = -EINVAL;
  }
  if (r == 0)
    r = resolve(fs, path, &node, NULL);
  if (r == 0 && (r = view_stat(fs->view, &node, &vs)) == 0 && vs.type != VIEW_DIR) {
    *op.reason = "grants are given on directories";
    r = -ENOTDIR;
  }
  if (r == 0)
    r = check_write(&op, &node);
  if (r == 0) {
    struct entry *e = op_entry(&op, ENTRY_GRANT);
    e->dir = node.id;
    set_name(e, keyname);
    e->content_kind = ENTRY_CONTENT_INLINE;
    memcpy(e->content, pub, KEY_PUBLIC_SIZE);
    e->content_len = KEY_PUBLIC_SIZE;
    r = op_submit(&op, key);
  }
  return op_end(&op, r);
}

/* Does WHO (a key name, or >= 8 hex digits of a fingerprint) name grant G? */
static bool grant_matches(const struct view_grant *g, const char *who)
{
  if (strcmp(g->name, who) == 0)
    return true;
  size_t n = strlen(who);
  if (n < 8 || n > 64 || strspn(who, "0123456789abcdefABCDEF") != n)
    return false;
  char hex[HASH_HEX_SIZE];
  hash_to_hex(&g->key, hex);
  return strncasecmp(hex, who, n) == 0;
}

int fs_revoke(struct fs *fs, const struct key *key, const char *path, const char *who,
              const char **reason)
{
  struct op op;
  struct view_node node;
  struct view_grant *g = NULL;
  size_t ng = 0;
  int r = op_begin(&op, fs, key, reason);
  if (r == 0)
    r = resolve(fs, path, &node, NULL);
  if (r == 0)
    r = view_grants(fs->view, &g, &ng);
  if (r < 0)
    return op_end(&op, r);
  /* The matching active grants on exactly this directory, all of one key. */
  size_t matches = 0;
  const hash_t *grantee = NULL;
  for (size_t i = 0; i < ng; i++) {
    if (!g[i].active || !hash_eq(&g[i].dir, &node.id) || !grant_matches(&g[i], who))
      continue;
    if (grantee && !hash_eq(grantee, &g[i].key)) {
      *op.reason = "that name matches several keys: give a fingerprint";
      r = -EINVAL;
      break;
    }
    grantee = &g[i].key;
    matches++;
  }
  if (r == 0 && !matches) {
    *op.reason = "no active grant for that key on this path (revoke where it was granted)";
    r = -ENOENT;
  }
  /* Only the root key or a key granted strictly above PATH may revoke. */
  if (r == 0 && !hash_eq(&op.fp, view_root_key(fs->view))) {
    char parent[FS_PATH_MAX], name[ENTRY_NAME_MAX + 1];
    struct view_node above;
    r = split_path(path, parent, name);
    if (r == 0)
      r = resolve(fs, parent, &above, NULL);
    if (r == 0)
      r = check_write(&op, &above);
    if (r < 0) {
      *op.reason = "only the root key or a key granted above this path may revoke here";
      r = -BFS_ENOGRANT;
    }
  }
  /* Acknowledge the key's current leaves first, so what it wrote stays. */
  hash_t *leaves = NULL;
  size_t nleaves = 0;
  if (r == 0)
    r = view_leaves_by_key(fs->view, grantee, &leaves, &nleaves);
  for (size_t i = 0; i < nleaves && r == 0; i++) {
    struct entry *e = op_entry(&op, ENTRY_ACK);
    e->target = leaves[i];
    r = op_submit(&op, key);
  }
  free(leaves);
  for (size_t i = 0; i < ng && r == 0; i++) {
    if (!g[i].active || !hash_eq(&g[i].dir, &node.id) || !hash_eq(&g[i].key, grantee))
      continue;
    struct entry *e = op_entry(&op, ENTRY_REVOKE);
    e->dir = node.id;
    e->target = g[i].id;
    r = op_submit(&op, key);
  }
  free(g);
  return op_end(&op, r);
}

int fs_revert(struct fs *fs, const struct key *key, const char *path, const char *hex,
              const char **reason)
{
  struct op op;
  struct view_node node;
  struct view_version *v = NULL;
  size_t nv = 0;
  int r = op_begin(&op, fs, key, reason);
  size_t n = strlen(hex);
  if (r == 0 && (n < 8 || n > 64 || strspn(hex, "0123456789abcdefABCDEF") != n)) {
    *op.reason = "a version is a full hash or a prefix of at least 8 hex digits";
    r = -EINVAL;
  }
  if (r == 0)
    r = resolve(fs, path, &node, NULL);
  if (r == 0 && node.kind != VIEW_NODE_OBJECT && node.kind != VIEW_NODE_HISTORY_OBJ &&
      node.kind != VIEW_NODE_CONFLICT_OBJ)
    r = -EINVAL;
  if (r == 0)
    r = view_versions(fs->view, &node.id, &v, &nv);
  const hash_t *found = NULL;
  for (size_t i = 0; i < nv && r == 0; i++) {
    char vh[HASH_HEX_SIZE];
    hash_to_hex(&v[i].id, vh);
    if (strncasecmp(vh, hex, n) != 0)
      continue;
    if (found) {
      *op.reason = "that prefix matches several versions: give more digits";
      r = -EINVAL;
    }
    found = &v[i].id;
  }
  if (r == 0 && !found) {
    *op.reason = "no such version of this path (see basefs log)";
    r = -ENOENT;
  }
  struct view_version ver;
  hash_t head;
  if (r == 0)
    r = view_version(fs->view, found, &ver, &head);
  if (r == 0 && hash_eq(&head, found) && hash_eq(found, &node.id)) {
    /* The creating entry roots both threads and is still the content head:
     * reverting to it means undoing what its name thread did since (a
     * delete or a rename), so the REVERT follows the name thread's head. */
    for (size_t i = 0; i < nv; i++)
      if ((v[i].flags & VIEW_V_HEAD) && !(v[i].flags & VIEW_V_CONTENT) &&
          hash_eq(&v[i].thread, &node.id) && !hash_eq(&v[i].id, found))
        head = v[i].id;
  }
  if (r == 0 && !hash_eq(&head, found)) {
    /* Under /.basefs the object itself is read-only; check the live one. */
    struct view_node live = {.kind = VIEW_NODE_OBJECT, .id = node.id};
    r = check_write(&op, &live);
    /* A deleted object has no live node to check: the view decides at submit. */
    if (r == -ESTALE)
      r = 0;
    if (r == 0) {
      struct entry *e = op_entry(&op, ENTRY_REVERT);
      e->parent = head;
      e->target = *found;
      r = op_submit(&op, key);
    }
  }
  free(v);
  return op_end(&op, r);
}

/* ---- forwarding to the owner (the control socket's two ends) ---- */

#define CTL_MAGIC_REQ "BFSC"
#define CTL_MAGIC_RESP "BFSR"
#define CTL_VERSION 1
#define CTL_OP_BLOCK 1
#define CTL_OP_ENTRIES 2
#define CTL_OP_SYNC 3
#define CTL_HEADER 6
/* Entries per ENTRIES frame: one frame is one commit on the owner's side. */
#define CTL_ENTRIES_MAX 8192

static void put_u32(uint8_t *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int fs_set_forward(struct fs *fs, fs_forward_fn send, void *arg)
{
  if (fs->writer)
    return -EINVAL; /* an owner writes itself */
  fs->forward = send;
  fs->forward_arg = arg;
  return 0;
}

const char *fs_commit_reason(const struct fs *fs) { return fs->reason[0] ? fs->reason : NULL; }

void fs_set_ctl_sync(struct fs *fs, int (*fn)(void *arg), void *arg)
{
  fs->ctl_sync = fn;
  fs->ctl_sync_arg = arg;
}

int fs_ctl_sync(fs_forward_fn send, void *arg, char *reason, size_t cap)
{
  uint8_t req[CTL_HEADER], resp[FS_CTL_RESP_MAX];
  memcpy(req, CTL_MAGIC_REQ, 4);
  req[4] = CTL_VERSION;
  req[5] = CTL_OP_SYNC;
  if (cap)
    reason[0] = '\0';
  int n = send(arg, req, sizeof req, resp, sizeof resp);
  if (n < 0)
    return n;
  int status = 0;
  int r = fs_ctl_response(resp, (size_t)n, &status, reason, cap);
  return r < 0 ? r : status;
}

/* Sends one request frame and decodes the owner's answer. */
static int forward_send(struct fs *fs, const uint8_t *req, size_t len)
{
  uint8_t resp[FS_CTL_RESP_MAX];
  int n = fs->forward(fs->forward_arg, req, len, resp, sizeof resp);
  if (n < 0) {
    snprintf(fs->reason, sizeof fs->reason, "the daemon did not answer (%s)", bfs_strerror(n));
    return n;
  }
  int status = 0;
  int r = fs_ctl_response(resp, (size_t)n, &status, fs->reason, sizeof fs->reason);
  if (r < 0) {
    snprintf(fs->reason, sizeof fs->reason, "the daemon's answer is malformed");
    return r;
  }
  return status;
}

/* Ships block H (if the owner's store lacks it) from the private store. */
static int forward_block(struct fs *fs, const hash_t *h)
{
  struct blocks *main = blocks_of(fs, NULL);
  if (main && blocks_has(main, h) == 1)
    return 0;
  uint8_t *file = NULL;
  size_t len = 0;
  int r = fs->fwd_blocks ? blocks_get_stored(fs->fwd_blocks, h, &file, &len) : -ENOENT;
  if (r < 0)
    return r;
  uint8_t *req = malloc(CTL_HEADER + HASH_SIZE + len);
  if (!req) {
    free(file);
    return -ENOMEM;
  }
  memcpy(req, CTL_MAGIC_REQ, 4);
  req[4] = CTL_VERSION;
  req[5] = CTL_OP_BLOCK;
  memcpy(req + CTL_HEADER, h->bytes, HASH_SIZE);
  memcpy(req + CTL_HEADER + HASH_SIZE, file, len);
  r = forward_send(fs, req, CTL_HEADER + HASH_SIZE + len);
  free(req);
  free(file);
  return r;
}

/* Ships every block a content needs (the list block first, then its blocks). */
static int forward_content_blocks(struct fs *fs, const struct entry *e)
{
  const uint8_t *hashes = e->content;
  size_t n = e->content_len / HASH_SIZE;
  uint8_t *list = NULL;
  int r = 0;
  if (e->content_kind == ENTRY_CONTENT_BLOCKLIST) {
    hash_t lh;
    memcpy(lh.bytes, e->content, HASH_SIZE);
    size_t len = 0;
    if ((r = forward_block(fs, &lh)) < 0)
      return r;
    /* Known to the owner already, so in our view of its store too. */
    struct blocks *bs = fs->fwd_blocks && blocks_has(fs->fwd_blocks, &lh) == 1 ? fs->fwd_blocks
                                                                               : blocks_of(fs, NULL);
    if (!bs || (r = blocks_get(bs, &lh, &list, &len)) < 0)
      return r < 0 ? r : -ENOENT;
    hashes = list;
    n = len / HASH_SIZE;
  }
  for (size_t i = 0; i < n && r == 0; i++) {
    hash_t h;
    memcpy(h.bytes, hashes + i * HASH_SIZE, HASH_SIZE);
    r = forward_block(fs, &h);
  }
  free(list);
  return r;
}

static int forward_commit(struct fs *fs)
{
  int r = flush_deferred(fs); /* none unless forwarding began after deferred writes */
  if (r < 0)
    return r;
  fs->reason[0] = '\0';
  struct entry *e = malloc(sizeof *e);
  if (!e)
    return -ENOMEM;
  for (size_t i = 0; i < fs->nbatch && r == 0; i++) {
    if ((r = entry_decode(fs->batch[i].data, fs->batch[i].len, e)) < 0)
      break;
    if (e->content_kind == ENTRY_CONTENT_BLOCKS || e->content_kind == ENTRY_CONTENT_BLOCKLIST)
      r = forward_content_blocks(fs, e);
  }
  free(e);
  for (size_t at = 0; at < fs->nbatch && r == 0;) {
    size_t n = fs->nbatch - at < CTL_ENTRIES_MAX ? fs->nbatch - at : CTL_ENTRIES_MAX;
    size_t len = CTL_HEADER + 4;
    for (size_t i = 0; i < n; i++)
      len += 2 + fs->batch[at + i].len;
    uint8_t *req = malloc(len);
    if (!req) {
      r = -ENOMEM;
      break;
    }
    memcpy(req, CTL_MAGIC_REQ, 4);
    req[4] = CTL_VERSION;
    req[5] = CTL_OP_ENTRIES;
    put_u32(req + CTL_HEADER, (uint32_t)n);
    size_t o = CTL_HEADER + 4;
    for (size_t i = 0; i < n; i++) {
      const struct pending_rec *rec = &fs->batch[at + i];
      req[o] = (uint8_t)rec->len;
      req[o + 1] = (uint8_t)(rec->len >> 8);
      memcpy(req + o + 2, rec->data, rec->len);
      o += 2 + rec->len;
    }
    r = forward_send(fs, req, len);
    free(req);
    at += n;
  }
  /* Sent or refused, these entries are done with: never send them twice. */
  for (size_t i = 0; i < fs->nbatch; i++)
    free(fs->batch[i].data);
  fs->nbatch = 0;
  if (r < 0)
    fs->tainted = true;
  return r;
}

static int ctl_answer(uint8_t *out, size_t cap, int status, const char *reason)
{
  size_t rl = reason ? strlen(reason) : 0;
  if (rl > 1024)
    rl = 1024;
  if (cap < CTL_HEADER - 1 + 4 + 2 + rl)
    return -ERANGE;
  memcpy(out, CTL_MAGIC_RESP, 4);
  out[4] = CTL_VERSION;
  put_u32(out + 5, (uint32_t)status);
  out[9] = (uint8_t)rl;
  out[10] = (uint8_t)(rl >> 8);
  if (rl)
    memcpy(out + 11, reason, rl);
  return (int)(11 + rl);
}

int fs_ctl_response(const uint8_t *frame, size_t len, int *status, char *reason, size_t cap)
{
  if (len < 11 || memcmp(frame, CTL_MAGIC_RESP, 4) != 0 || frame[4] != CTL_VERSION)
    return -BFS_EFORMAT;
  size_t rl = (size_t)frame[9] | (size_t)frame[10] << 8;
  if (len != 11 + rl)
    return -BFS_EFORMAT;
  *status = (int)get_u32(frame + 5);
  if (*status > 0)
    return -BFS_EFORMAT;
  if (cap) {
    size_t n = rl < cap - 1 ? rl : cap - 1;
    memcpy(reason, frame + 11, n);
    reason[n] = '\0';
    for (size_t i = 0; i < n; i++)
      if (reason[i] == '\n' || reason[i] == '\0')
        reason[i] = ' ';
  }
  return 0;
}

/* The owner's side of an ENTRIES frame: all verified first, then applied and committed. */
static int ctl_entries(struct fs *fs, const uint8_t *p, size_t len, const char **reason)
{
  if (len < 4)
    return -BFS_EFORMAT;
  uint32_t n = get_u32(p);
  if (n == 0 || n > CTL_ENTRIES_MAX)
    return -BFS_EFORMAT;
  struct entry *es = malloc((size_t)n * sizeof *es);
  if (!es)
    return -ENOMEM;
  size_t o = 4;
  int r = 0;
  for (uint32_t i = 0; i < n && r == 0; i++) {
    if (len - o < 2) {
      r = -BFS_EFORMAT;
      break;
    }
    size_t el = (size_t)p[o] | (size_t)p[o + 1] << 8;
    o += 2;
    if (el > len - o) {
      r = -BFS_EFORMAT;
      break;
    }
    if ((r = entry_decode(p + o, el, &es[i])) < 0)
      *reason = "malformed entry";
    o += el;
  }
  if (r == 0 && o != len)
    r = -BFS_EFORMAT;
  /* Signatures, on every core: the one expensive step of a large frame. */
  struct entry **ptrs = r == 0 ? malloc((size_t)n * sizeof *ptrs) : NULL;
  int *results = r == 0 ? malloc((size_t)n * sizeof *results) : NULL;
  if (r == 0 && (!ptrs || !results))
    r = -ENOMEM;
  if (r == 0) {
    for (uint32_t i = 0; i < n; i++)
      ptrs[i] = &es[i];
    if (verify_entries(ptrs, n, results, 0) < 0)
      r = -ENOMEM;
    for (uint32_t i = 0; i < n && r == 0; i++)
      if (results[i] < 0) {
        r = results[i];
        *reason = r == -ENOMEM ? "no memory to check the signature" : "bad signature";
      }
  }
  free(ptrs);
  free(results);
  size_t start = fs->nbatch;
  for (uint32_t i = 0; i < n && r == 0; i++)
    r = fs_submit(fs, &es[i], true, reason);
  if (r < 0 && fs->nbatch > start) {
    /* All or nothing: drop the frame's applied entries from the batch and the view. */
    drop_batch_from(fs, start);
    heal(fs);
  }
  free(es);
  if (r == 0 && (r = fs_commit(fs)) < 0)
    *reason = "the log could not be written";
  return r;
}

int fs_ctl_handle(struct fs *fs, const uint8_t *req, size_t len, uint8_t *out, size_t cap)
{
  const char *reason = NULL;
  int r;
  if (len < CTL_HEADER || memcmp(req, CTL_MAGIC_REQ, 4) != 0) {
    r = -BFS_EFORMAT;
    reason = "not a basefs control request";
  } else if (req[4] != CTL_VERSION) {
    r = -BFS_EFORMAT;
    reason = "unknown control protocol version";
  } else if (!fs->writer) {
    r = -EBADF;
  } else if (req[5] == CTL_OP_BLOCK && len >= CTL_HEADER + HASH_SIZE) {
    hash_t h;
    memcpy(h.bytes, req + CTL_HEADER, HASH_SIZE);
    struct blocks *bs = blocks_of(fs, &r);
    r = bs ? blocks_put_stored(bs, req + CTL_HEADER + HASH_SIZE, len - CTL_HEADER - HASH_SIZE, &h)
           : r;
    if (r > 0)
      r = 0;
    if (r < 0)
      reason = "block refused";
  } else if (req[5] == CTL_OP_SYNC && len == CTL_HEADER) {
    /* What the owner holds in memory (staged NFS writes) becomes durable first. */
    r = fs->ctl_sync ? fs->ctl_sync(fs->ctl_sync_arg) : 0;
    if (r == 0 && (r = fs_commit(fs)) < 0)
      reason = "the log could not be written";
    else if (r < 0)
      reason = "the daemon could not make its staged writes durable";
  } else if (req[5] == CTL_OP_ENTRIES) {
    r = ctl_entries(fs, req + CTL_HEADER, len - CTL_HEADER, &reason);
  } else {
    r = -BFS_EFORMAT;
    reason = "unknown control request";
  }
  return ctl_answer(out, cap, r < 0 ? r : 0, reason);
}
