/* The NFSv3 procedures on an open filesystem; see nfs3.h. */
#include "server/nfs3.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "server/exports.h"
#include "server/fh.h"
#include "server/stage.h"
#include "store/blocks.h"
#include "store/content.h"
#include "store/entry.h"
#include "store/error.h"
#include "store/fs.h"
#include "store/key.h"
#include "store/view.h"
#include "xdr/nfs3.h"
#include "xdr/oncrpc.h"

#define NOBODY 65534u
/* Content readers kept open between READs (a large file's block list is
 * loaded once, not per READ). */
#define RCACHE_N 8
/* Deltas are tried only between small versions, and chains stay short. */
#define DELTA_MAX (64u << 10)
#define DELTA_CHAIN_MAX 16
#define MAX_FILE_SIZE (32ull << 30)
/* READ/WRITE/READDIR sizes for UDP clients: a reply must fit one datagram
 * (server/udp.h's UDPSRV_IO_MAX; Linux's nfsd uses 32 KiB too). */
#define UDP_IO_MAX 32768u
/* Encoded READDIR/READDIRPLUS replies kept for repeats on an unchanged
 * filesystem (a client polling a directory, `ls -l` in a loop): at most
 * RDC_N of them and RDC_BYTES_MAX bytes in all, least recently used
 * evicted first. Memory is bounded by RDC_BYTES_MAX (plus the slots).
 * The count must exceed the directories a client lists in turn: LRU serves
 * a round-robin over more directories than slots with no hit at all (64
 * slots never hit bench_nfs's 100 directories). */
#define RDC_N 256
#define RDC_BYTES_MAX (8u << 20)

struct rcache {
  hash_t content;          /* the content entry read */
  struct content_reader *r;
  uint64_t used;           /* LRU clock; 0 = empty slot */
};

/* One cached reply body (from the directory attributes to eof), valid
 * while the view's change counter and the server's own (server_gen:
 * staging, a replaced view) are what they were when it was encoded. Keyed on everything the
 * encoding reads from the call: the handle bytes, the cookie, the budgets
 * (dircount, and maxcount capped by the transport) and plus. The cookie
 * verifier and the credential change nothing in a successful reply (both
 * are checked before the cache is consulted, on every call). */
struct rdc {
  uint64_t used; /* LRU clock; 0 = empty slot */
  bool plus;
  uint32_t fh_len;
  uint8_t fh[NFS3_FHSIZE];
  uint64_t cookie;
  uint32_t dircount;
  size_t max;
  uint8_t *buf;
  size_t len;
};

/* One seal under way (see seal_begin). */
struct sealing {
  struct stage_file *f;
  struct view_node n;
  struct entry *e;
  uint8_t *prev; /* the parent's bytes, for a delta (or NULL) */
  size_t prev_len;
  struct content_base cb;
  size_t out_len;
  struct blocks_list list;
  bool keep;
  uint64_t shown_ctime; /* the staged bytes' ctime, for the version (0: its own) */
  int r; /* seal_encode's result */
  char hex[17];
};

/* The one background seal (see bg_start). */
struct bg_seal {
  pthread_t tid;
  bool running; /* started and not yet joined */
  atomic_bool done;
  struct sealing s;
};

/* The ctime a version this peer sealed from staged bytes shows: the one the
 * staged bytes showed (nothing changed for the client that wrote them; a
 * new ctime would make Linux drop the file's cached pages). By object, the
 * slot's last seal; a version not found here (another peer's, or after a
 * restart) shows its own. */
#define SHOWN_N 256
struct shown {
  hash_t version; /* a version belongs to one object: no need to keep it */
  uint64_t ctime_ns;
};

struct nfsd {
  struct fs *fs;
  struct view *view;
  struct blocks *blocks;
  const struct key *key;
  hash_t fp; /* the key's fingerprint */
  hash_t root;
  uint64_t fsid;
  struct stage *stage;
  uint8_t verf[NFS3_WRITEVERFSIZE];
  struct rcache cache[RCACHE_N];
  uint64_t clock;
  uint64_t gen; /* bumped when store/fs replaces the view (see server_gen) */
  struct rdc rdc[RDC_N];
  size_t rdc_bytes;
  uint64_t rdc_clock;
  uint64_t rdc_vchanges, rdc_gen; /* what every cached reply was encoded at */
  bool rdc_off;
  struct nfsd_rdc_stats rdc_stats;
  struct bg_seal bg;
  bool bg_off;        /* BASEFS_NO_BG_SEAL=1: every COMMIT seals at once */
  struct shown shown[SHOWN_N];
  struct nfsd_seal_stats seal_stats;
  void (*wake)(void *ctx);
  void *wake_ctx;
  nfsd_log_fn log;
  void *log_ctx;
};

/* ---- small helpers ---- */

static struct shown *shown_slot(struct nfsd *d, const hash_t *object)
{
  uint64_t h;
  memcpy(&h, object->bytes, sizeof h); /* object ids are SHA-256 digests */
  return &d->shown[h & (SHOWN_N - 1)];
}

/* What nfs shows besides the view's entries moved: staged data
 * (stage_changes) or the view itself was replaced (d->gen). The sum of
 * two counters that only grow changes whenever either does. Entries are
 * counted by the view (view_changes). */
static uint64_t server_gen(const struct nfsd *d) { return d->gen + stage_changes(d->stage); }

static void rdc_free_all(struct nfsd *d);

static uint64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void logf_(struct nfsd *d, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logf_(struct nfsd *d, int level, const char *fmt, ...)
{
  if (!d->log)
    return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  d->log(d->log_ctx, level, line);
}

static void short_hex(const hash_t *h, char out[17])
{
  char hex[HASH_HEX_SIZE];
  hash_to_hex(h, hex);
  memcpy(out, hex, 16);
  out[16] = '\0';
}

static uint32_t status_of(int err)
{
  switch (err) {
  case 0: return NFS3_SUCCESS;
  case -EPERM: return NFS3_ERR_PERM;
  case -ENOENT: return NFS3_ERR_NOENT;
  case -EACCES: return NFS3_ERR_ACCES;
  case -BFS_ENOGRANT: return NFS3_ERR_ACCES;
  case -EEXIST: return NFS3_ERR_EXIST;
  case -EXDEV: return NFS3_ERR_XDEV;
  case -ENOTDIR: return NFS3_ERR_NOTDIR;
  case -EISDIR: return NFS3_ERR_ISDIR;
  case -EINVAL: return NFS3_ERR_INVAL;
  case -EFBIG: return NFS3_ERR_FBIG;
  case -BFS_ETOOBIG: return NFS3_ERR_FBIG;
  case -ENOSPC: return NFS3_ERR_NOSPC;
  case -EDQUOT: return NFS3_ERR_DQUOT;
  case -EROFS: return NFS3_ERR_ROFS;
  case -EMLINK: return NFS3_ERR_MLINK;
  case -ENAMETOOLONG: return NFS3_ERR_NAMETOOLONG;
  case -ENOTEMPTY: return NFS3_ERR_NOTEMPTY;
  case -ESTALE: return NFS3_ERR_STALE;
  case -EBADMSG: return NFS3_ERR_BADHANDLE;
  case -ENOTSUP: return NFS3_ERR_NOTSUPP;
  case -BFS_EKIND: return NFS3_ERR_INVAL;
  default: return NFS3_ERR_IO;
  }
}

static struct nfs3_time ts_of(uint64_t ns)
{
  struct nfs3_time t = {(uint32_t)(ns / 1000000000u), (uint32_t)(ns % 1000000000u)};
  return t;
}

/* ---- objects: a node, its attributes, its staged data ---- */

struct obj {
  struct view_node node;
  struct view_stat st;
  struct stage_file *sf; /* staged changes (a dirty staged file), or NULL */
  struct stage_file *cf; /* a clean staged copy of the current version, or NULL */
};

static bool writable_node(const struct view_node *n)
{
  return n->kind == VIEW_NODE_OBJECT && !n->readonly;
}

/* Refreshes O's attributes (after a change). */
static int obj_stat(struct nfsd *d, struct obj *o)
{
  int r = view_stat(d->view, &o->node, &o->st);
  if (r < 0)
    return r;
  /* Linux's v3 client takes ctime as the change attribute: it must differ
   * whenever the version shown differs, even when a replicated version
   * carries an older timestamp (an author's clock behind, a conflict won
   * by an older version, a revert). The version id fills ctime's low 20
   * bits (it moves by < 1.05 ms). (helper-9, issue 5) */
  if (o->st.type != VIEW_DIR && !hash_is_zero(&o->st.version)) {
    uint64_t h;
    memcpy(&h, o->st.version.bytes, sizeof h);
    o->st.ctime_ns = (o->st.ctime_ns & ~0xFFFFFull) | (h & 0xFFFFFull);
    const struct shown *sh = shown_slot(d, &o->st.object);
    if (sh->ctime_ns && hash_cmp(&sh->version, &o->st.version) == 0)
      o->st.ctime_ns = sh->ctime_ns;
  }
  /* A file or symlink whose last name was removed is gone for NFS (its
   * versions stay readable under /.basefs/history). */
  if (writable_node(&o->node) && o->st.type != VIEW_DIR && o->st.nlink == 0)
    return -ESTALE;
  o->sf = o->cf = NULL;
  struct stage_file *f = writable_node(&o->node) && o->st.type == VIEW_FILE
                             ? stage_get(d->stage, &o->st.object)
                             : NULL;
  if (f && !stage_dirty(f)) {
    /* A copy kept after a seal: valid while its version is the head. */
    if (hash_cmp(stage_base(f), &o->st.version) == 0) {
      o->cf = f;
    } else {
      stage_drop(d->stage, f);
    }
  } else if (f) {
    o->sf = f;
  }
  if (o->sf) {
    o->st.size = stage_size(o->sf);
    o->st.mtime_ns = stage_mtime(o->sf);
    if (o->st.ctime_ns < o->st.mtime_ns)
      o->st.ctime_ns = o->st.mtime_ns;
  }
  return 0;
}

static int obj_load_node(struct nfsd *d, const struct view_node *n, struct obj *o)
{
  memset(o, 0, sizeof *o);
  o->node = *n;
  return obj_stat(d, o);
}

static int obj_load(struct nfsd *d, const struct nfs3_fh *fh, struct obj *o)
{
  struct view_node n;
  int r = fh_decode(&d->root, fh->data, fh->len, &n);
  if (r < 0)
    return r;
  return obj_load_node(d, &n, o);
}

static void fattr_of(struct nfsd *d, const struct obj *o, struct nfs3_fattr *a)
{
  memset(a, 0, sizeof *a);
  const struct view_stat *st = &o->st;
  a->type = st->type == VIEW_DIR ? NFS3_DIR : st->type == VIEW_SYMLINK ? NFS3_LNK : NFS3_REG;
  a->mode = st->mode & 07777;
  a->nlink = st->nlink ? st->nlink : 1;
  a->uid = st->uid;
  a->gid = st->gid;
  a->size = st->size;
  a->used = (st->size + 4095) & ~4095ull;
  a->fsid = d->fsid;
  a->fileid = st->fileid;
  a->mtime = ts_of(st->mtime_ns);
  a->atime = a->mtime;
  a->ctime = ts_of(st->ctime_ns);
}

static struct nfs3_post_attr post_of(struct nfsd *d, const struct obj *o)
{
  struct nfs3_post_attr p = {.present = true};
  fattr_of(d, o, &p.attr);
  return p;
}

/* Post-op attributes of O reloaded now (absent if it is gone). */
static struct nfs3_post_attr post_now(struct nfsd *d, struct obj *o)
{
  struct nfs3_post_attr p = {.present = false};
  if (obj_stat(d, o) == 0)
    p = post_of(d, o);
  return p;
}

static struct nfs3_pre_attr pre_of(const struct obj *o)
{
  struct nfs3_pre_attr p = {.present = true};
  p.attr.size = o->st.size;
  p.attr.mtime = ts_of(o->st.mtime_ns);
  p.attr.ctime = ts_of(o->st.ctime_ns);
  return p;
}

static void fh_of(struct nfsd *d, const struct view_node *n, struct nfs3_fh *fh)
{
  fh->len = fh_encode(&d->root, n, fh->data);
}

/* ---- credentials and mode bits ---- */

struct cred {
  uint32_t uid, gid;
  uint32_t ngids;
  uint32_t gids[ONCRPC_AUTH_SYS_GIDS_MAX];
  bool root;
  bool ro; /* the client's export is read-only */
};

/* The caller's identity after the exports' squashing (server/exports.h:
 * by default uid 0 is root from loopback and nobody from elsewhere), and
 * whether its export is read-only. AUTH_NONE is nobody. */
static void cred_of(const struct rpcsrv_call *call, struct cred *c)
{
  memset(c, 0, sizeof *c);
  struct exports_access acc = {0};
  if (call->peer)
    acc = call->peer->access;
  c->ro = acc.readonly;
  c->uid = c->gid = acc.anonuid ? acc.anonuid : NOBODY;
  if (acc.anongid)
    c->gid = acc.anongid;
  if (call->hdr->cred_flavor != ONCRPC_AUTH_SYS)
    return;
  const struct oncrpc_auth_sys *s = &call->hdr->sys;
  uint32_t uid = s->uid, gid = s->gid;
  if (!call->peer) {
    /* No transport (unit tests): trust nothing but the credential. */
    acc.squash = EXPORTS_SQUASH_NONE;
  }
  bool mapped = exports_squash_cred(&acc, &uid, &gid);
  c->uid = uid;
  c->gid = gid;
  if (!mapped) {
    c->ngids = s->ngids < ONCRPC_AUTH_SYS_GIDS_MAX ? s->ngids : ONCRPC_AUTH_SYS_GIDS_MAX;
    memcpy(c->gids, s->gids, c->ngids * sizeof c->gids[0]);
  }
  c->root = uid == 0;
}

static bool in_group(const struct cred *c, uint32_t gid)
{
  if (c->gid == gid)
    return true;
  for (uint32_t i = 0; i < c->ngids; i++)
    if (c->gids[i] == gid)
      return true;
  return false;
}

#define MAY_R 4
#define MAY_W 2
#define MAY_X 1

/* The rwx bits C has on O by its mode (without the key's grants). */
static unsigned mode_bits(const struct cred *c, const struct view_stat *st)
{
  if (c->root) {
    unsigned b = MAY_R | MAY_W;
    if (st->type == VIEW_DIR || (st->mode & 0111))
      b |= MAY_X;
    return b;
  }
  if (c->uid == st->uid)
    return (st->mode >> 6) & 7;
  if (in_group(c, st->gid))
    return (st->mode >> 3) & 7;
  return st->mode & 7;
}

static bool may(const struct cred *c, const struct view_stat *st, unsigned want)
{
  return (mode_bits(c, st) & want) == want;
}

/* ---- the serving key ---- */

/* Does the key hold any write permission at all? */
static bool key_granted_somewhere(struct nfsd *d)
{
  if (!d->key)
    return false;
  if (hash_cmp(&d->fp, view_root_key(d->view)) == 0)
    return true;
  struct view_grant *g = NULL;
  size_t n = 0;
  bool found = false;
  if (view_grants(d->view, &g, &n) == 0)
    for (size_t i = 0; i < n && !found; i++)
      found = g[i].active && hash_cmp(&g[i].key, &d->fp) == 0;
  free(g);
  return found;
}

bool nfsd_readonly(struct nfsd *d) { return !key_granted_somewhere(d); }

/* May the serving key write in or on node N? 0, -EROFS (read-only peer or
 * node), -EACCES (no grant covering N), -ESTALE. */
static int key_check(struct nfsd *d, const struct view_node *n)
{
  if (!writable_node(n) || !d->key)
    return -EROFS;
  int r = view_check_write(d->view, &d->fp, n);
  if (r == -BFS_ENOGRANT)
    return key_granted_somewhere(d) ? -EACCES : -EROFS;
  return r;
}

/* May the serving key remove node N's name (DELETE, a RENAME's source)?
 * Names belong to the directory holding them (view_check_unlink). */
static int key_check_unlink(struct nfsd *d, const struct view_node *n)
{
  if (!writable_node(n) || !d->key)
    return -EROFS;
  int r = view_check_unlink(d->view, &d->fp, n);
  if (r == -BFS_ENOGRANT)
    return key_granted_somewhere(d) ? -EACCES : -EROFS;
  return r == -EINVAL ? -EBUSY : r; /* "/" has no name to remove */
}

/* key_check() and key_check_unlink() for a caller whose export may be
 * read-only. */
static int write_check(struct nfsd *d, const struct cred *c, const struct view_node *n)
{
  return c->ro ? -EROFS : key_check(d, n);
}

static int unlink_check(struct nfsd *d, const struct cred *c, const struct view_node *n)
{
  return c->ro ? -EROFS : key_check_unlink(d, n);
}

/* ---- names ---- */

enum name_class { NAME_OK, NAME_DOT, NAME_DOTDOT };

/* Checks a name from the wire and copies it into OUT. Returns 0 and sets
 * *CLS, or -ENAMETOOLONG, -EINVAL ('/', NUL), -ENOENT (empty). */
static int name_of(const struct xdr_bytes *b, char out[NFS3_NAME_MAX + 1], enum name_class *cls)
{
  if (b->len > NFS3_NAME_MAX)
    return -ENAMETOOLONG;
  if (b->len == 0)
    return -ENOENT;
  if (memchr(b->data, '/', b->len) || memchr(b->data, '\0', b->len))
    return -EINVAL;
  memcpy(out, b->data, b->len);
  out[b->len] = '\0';
  *cls = strcmp(out, ".") == 0 ? NAME_DOT : strcmp(out, "..") == 0 ? NAME_DOTDOT : NAME_OK;
  return 0;
}

/* The directory N is bound in, for "..": the view follows the effective
 * binding (renames, reverts, the cycle-breaking rule). */
static int parent_of(struct nfsd *d, const struct view_node *n, struct view_node *out)
{
  return view_parent(d->view, n, out);
}

/* ---- reading content ---- */

static struct content_reader *reader_get(struct nfsd *d, const hash_t *content, int *err)
{
  struct rcache *slot = &d->cache[0];
  for (int i = 0; i < RCACHE_N; i++) {
    struct rcache *c = &d->cache[i];
    if (c->used && hash_cmp(&c->content, content) == 0) {
      c->used = ++d->clock;
      return c->r;
    }
    if (c->used < slot->used)
      slot = c;
  }
  struct entry *e = malloc(sizeof *e);
  uint8_t *prev = NULL;
  size_t prev_len = 0;
  int r = e ? view_entry(d->view, content, e) : -ENOMEM;
  if (r == 0 && e->content_kind == ENTRY_CONTENT_DELTA) {
    /* The base is the parent version's content, itself maybe a delta:
     * fs_read_version() decodes the chain. */
    hash_t base;
    if ((r = view_content_base(d->view, content, &base)) == 0)
      r = fs_read_version(d->fs, &base, &prev, &prev_len);
  }
  struct content_reader *rd = NULL;
  if (r == 0)
    r = content_open(d->blocks, e->content_kind, e->content, e->content_len, e->size, prev,
                     prev_len, &rd);
  free(prev);
  free(e);
  if (r < 0) {
    *err = r;
    return NULL;
  }
  if (slot->used)
    content_close(slot->r);
  slot->content = *content;
  slot->r = rd;
  slot->used = ++d->clock;
  return rd;
}

/* Reads LEN bytes at OFF of O's current content (staged or stored). */
static ssize_t obj_read(struct nfsd *d, const struct obj *o, uint64_t off, void *buf, size_t len)
{
  if (o->sf)
    return stage_read(o->sf, off, buf, len);
  if (o->cf)
    return stage_read(o->cf, off, buf, len);
  if (off >= o->st.size || len == 0 || hash_is_zero(&o->st.content))
    return 0;
  int err = 0;
  struct content_reader *r = reader_get(d, &o->st.content, &err);
  if (!r)
    return err;
  return content_read(r, off, buf, len);
}

/* ---- writing entries ---- */

static size_t varint_len(uint64_t v)
{
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

/* Content bytes left in E once everything else is encoded. */
static size_t content_room(const struct entry *e)
{
  size_t fixed = 4 + 2 + KEY_PUBLIC_SIZE + KEY_SIGNATURE_SIZE + 1 + e->name_len;
  fixed += HASH_SIZE * (!hash_is_zero(&e->parent) + !hash_is_zero(&e->dir) +
                        !hash_is_zero(&e->target));
  fixed += varint_len(e->mtime_ns) + varint_len(e->size) + varint_len(e->mode) +
           varint_len(e->uid) + varint_len(e->gid);
  size_t room = fixed < ENTRY_MAX_SIZE ? ENTRY_MAX_SIZE - fixed : 0;
  return room < ENTRY_CONTENT_MAX ? room : ENTRY_CONTENT_MAX;
}

static struct entry *entry_new(uint8_t action)
{
  struct entry *e = calloc(1, sizeof *e);
  if (e) {
    e->action = action;
    e->mtime_ns = now_ns();
  }
  return e;
}

static void entry_set_name(struct entry *e, const char *name)
{
  size_t n = strlen(name);
  memcpy(e->name, name, n + 1);
  e->name_len = (uint8_t)n;
}

/* Signs E with the serving key and submits it (not yet durable). */
static int submit(struct nfsd *d, struct entry *e)
{
  int r = entry_sign(e, d->key);
  const char *reason = NULL;
  if (r == 0)
    r = fs_submit(d->fs, e, true, &reason);
  if (r < 0)
    logf_(d, NFSD_LOG_WARN, "nfs: %s entry refused: %s", entry_action_name(e->action),
          reason ? reason : bfs_strerror(r));
  return r;
}

/* Makes everything submitted durable. */
static int commit(struct nfsd *d)
{
  int r = fs_commit(d->fs);
  if (r < 0)
    logf_(d, NFSD_LOG_ERROR, "nfs: log commit failed: %s", bfs_strerror(r));
  return r;
}

/* One entry, durable when this returns. */
static int submit_commit(struct nfsd *d, struct entry *e)
{
  int r = submit(d, e);
  return r == 0 ? commit(d) : r;
}

/* ---- staging and sealing ---- */

struct fill_arg {
  struct nfsd *d;
  const struct obj *o;
  uint64_t limit;              /* copy no more than this */
  uint64_t skip_off, skip_end; /* nor this range: the caller writes it next */
  struct blocks_list blocks;   /* the copied content's block list, if known */
};

/* Copies [OFF, END) of the object's stored content to FD. */
static int copy_from_store(struct fill_arg *a, int fd, uint64_t off, uint64_t end)
{
  if (off >= end)
    return 0;
  size_t chunk = 1u << 20;
  uint8_t *buf = malloc(end - off < chunk ? (size_t)(end - off) : chunk);
  if (!buf)
    return -ENOMEM;
  int r = 0;
  while (off < end) {
    ssize_t n = obj_read(a->d, a->o, off, buf, end - off < chunk ? (size_t)(end - off) : chunk);
    if (n <= 0) {
      r = n < 0 ? (int)n : -EIO;
      break;
    }
    for (ssize_t done = 0; done < n;) {
      ssize_t k = pwrite(fd, buf + done, (size_t)(n - done), (off_t)(off + (uint64_t)done));
      if (k < 0) {
        r = -errno;
        break;
      }
      done += k;
    }
    if (r < 0)
      break;
    off += (uint64_t)n;
  }
  free(buf);
  return r;
}

/* Copies the object's stored content into a new (or recycled, LEN bytes of
 * junk) staging file, leaving out the range the caller overwrites: a whole
 * rewrite reads nothing from the store, and a recycled file keeps its
 * allocated blocks where the write lands (see stage_create). */
static int fill_from_store(void *arg, int fd, uint64_t len, uint64_t *size)
{
  struct fill_arg *a = arg;
  uint64_t end = a->o->st.size < a->limit ? a->o->st.size : a->limit;
  uint64_t s0 = a->skip_off < end ? a->skip_off : end;
  uint64_t s1 = a->skip_end < end ? a->skip_end : end;
  if (s1 < s0)
    s1 = s0;
  int r = copy_from_store(a, fd, 0, s0);
  if (r == 0)
    r = copy_from_store(a, fd, s1, end);
  /* No junk may stay where the file shows bytes: past the content, only
   * the skipped range (written next) when it joins the content. */
  uint64_t keep = a->skip_off <= end && a->skip_end > end ? a->skip_end : end;
  if (r == 0 && len > keep && ftruncate(fd, (off_t)keep) < 0)
    r = -errno;
  /* A large stored file's block list: the first seal of this copy then
   * re-cuts only around the writes (content_blocks_update). */
  if (r == 0 && end > CONTENT_EMBED_MAX && end == a->o->st.size && !hash_is_zero(&a->o->st.content)) {
    int err = 0;
    struct content_reader *rd = reader_get(a->d, &a->o->st.content, &err);
    if (rd && content_reader_size(rd) == end)
      content_reader_blocks(rd, &a->blocks);
  }
  *size = end;
  return r;
}

/* Attributes SETATTR folds into the version a seal writes. */
struct meta {
  bool set_mode, set_uid, set_gid, set_mtime;
  uint32_t mode, uid, gid;
  uint64_t mtime_ns;
};

static int seal(struct nfsd *d, struct stage_file *f, const struct meta *m, bool keep);

static int seal_first(void *arg, struct stage_file *f)
{
  struct nfsd *d = arg;
  if (stage_dirty(f))
    seal(d, f, NULL, false);
  else
    stage_drop(d->stage, f);
  return 1;
}

/* Starts staging O (a file) unless it is staged already, copying at most
 * LIMIT bytes of its content (a truncate needs no more) and none of
 * [SKIP_OFF, SKIP_END), which the caller writes next (or drops the file
 * when that fails, as proc_write does). *FRESH tells whether it was created. */
static int obj_settle(struct nfsd *d, struct obj *o);

static int obj_stage_skip(struct nfsd *d, struct obj *o, uint64_t limit, uint64_t skip_off,
                          uint64_t skip_end, bool *fresh)
{
  *fresh = false;
  int r = obj_settle(d, o);
  if (r < 0 || o->sf)
    return r;
  if (o->cf) {
    /* The copy kept after the last seal: the next write dirties it. */
    o->sf = o->cf;
    o->cf = NULL;
    return 0;
  }
  /* Every staged file holds a descriptor: past the cap, the file written
   * least recently is sealed first. */
  if (stage_count(d->stage) >= NFSD_STAGED_MAX)
    stage_foreach(d->stage, seal_first, d);
  struct fill_arg a = {d, o, limit, skip_off, skip_end, {0}};
  uint64_t fills = o->st.size < limit ? o->st.size : limit;
  r = stage_create(d->stage, &o->st.object, &o->st.version, fills, fill_from_store, &a,
                   o->st.mtime_ns, &o->sf);
  *fresh = r == 0;
  if (r == 0 && a.blocks.n > 0)
    stage_set_base_blocks(o->sf, &a.blocks);
  blocks_list_free(&a.blocks);
  return r;
}

static int obj_stage_upto(struct nfsd *d, struct obj *o, uint64_t limit)
{
  bool fresh;
  return obj_stage_skip(d, o, limit, 0, 0, &fresh);
}

/* How many DELTA links lead from content entry ID to a full version. */
static int delta_depth(struct nfsd *d, const hash_t *id)
{
  struct entry *e = malloc(sizeof *e);
  if (!e)
    return DELTA_CHAIN_MAX;
  hash_t cur = *id;
  int depth = 0;
  while (depth < DELTA_CHAIN_MAX && view_entry(d->view, &cur, e) == 0 &&
         e->content_kind == ENTRY_CONTENT_DELTA && view_content_base(d->view, &cur, &cur) == 0)
    depth++;
  free(e);
  return depth;
}


/*
 * Turning F's staged content into one new version of its object (a WRITE
 * signed by the serving key), durable in the log, takes three steps:
 * seal_begin (on the loop: the entry's fields from the view), seal_encode
 * (the content: chunking, hashing, storing; it touches no view, so it may
 * run on a worker thread) and seal_end (on the loop: sign, log, then keep
 * F as a clean copy of the version or drop it). An object that no longer
 * exists (or is no file) just loses its staged data. A clean F has nothing
 * to seal.
 */

/* What a sealing holds (its entry, the parent's bytes, the block list). */
static void sealing_free(struct sealing *s)
{
  blocks_list_free(&s->list);
  free(s->e);
  free(s->prev);
  s->e = NULL;
  s->prev = NULL;
}

/* A file recovered at start (no base) that holds its head's bytes: the
 * crash came after its version was logged, before the file was marked
 * sealed (stage_rebase's rename). It needs no second version. */
static bool recovered_and_logged(struct nfsd *d, struct stage_file *f, const struct obj *o)
{
  if (!hash_is_zero(stage_base(f)) || stage_size(f) != o->st.size)
    return false;
  struct obj stored = *o;
  stored.sf = stored.cf = NULL;
  size_t cap = 256u << 10;
  uint8_t *a = malloc(cap), *b = malloc(cap);
  bool same = a && b;
  for (uint64_t off = 0; same && off < o->st.size;) {
    size_t n = o->st.size - off < cap ? (size_t)(o->st.size - off) : cap;
    same = obj_read(d, &stored, off, a, n) == (ssize_t)n && stage_read(f, off, b, n) == (ssize_t)n &&
           memcmp(a, b, n) == 0;
    off += n;
  }
  free(a);
  free(b);
  return same;
}

/* 1: S is ready for seal_encode; 0: nothing to seal (F is clean, or gone
 * and dropped); or an error. */
static int seal_begin(struct nfsd *d, struct stage_file *f, const struct meta *m, bool keep,
                      struct sealing *s)
{
  memset(s, 0, sizeof *s);
  if (!stage_dirty(f)) {
    if (!keep)
      stage_drop(d->stage, f);
    return 0;
  }
  s->f = f;
  s->keep = keep;
  s->n = (struct view_node){.kind = VIEW_NODE_OBJECT, .readonly = 0, .id = *stage_object(f)};
  short_hex(stage_object(f), s->hex);
  struct obj o;
  int r = obj_load_node(d, &s->n, &o);
  if (r == -ESTALE || (r == 0 && o.st.type != VIEW_FILE)) {
    logf_(d, NFSD_LOG_INFO, "nfs: staged data of %s dropped: the file is gone", s->hex);
    stage_drop(d->stage, f);
    return 0;
  }
  if (r < 0)
    return r;
  if (recovered_and_logged(d, f, &o)) {
    logf_(d, NFSD_LOG_INFO, "nfs: staged data of %s was logged already", s->hex);
    if (!keep || stage_rebase(d->stage, f, &o.st.version, NULL) < 0)
      stage_drop(d->stage, f);
    return 0;
  }
  if ((r = key_check(d, &s->n)) < 0) {
    logf_(d, NFSD_LOG_WARN, "nfs: cannot seal staged data of %s: %s", s->hex, bfs_strerror(r));
    return r;
  }
  struct entry *e = s->e = entry_new(ENTRY_WRITE);
  if (!e)
    return -ENOMEM;
  /* The parent is the version the staging started from: if another update
   * landed meanwhile, ours becomes a concurrent version (a conflict the view
   * resolves and keeps), never a silent overwrite. */
  e->parent = o.st.version;
  const hash_t *base = stage_base(f);
  struct view_version bv;
  hash_t head;
  if (!hash_is_zero(base) && view_version(d->view, base, &bv, &head) == 0 &&
      (bv.flags & VIEW_V_CONTENT) && hash_cmp(&bv.thread, &o.st.object) == 0)
    e->parent = *base;
  struct view_node pn = {.kind = VIEW_NODE_VERSION, .readonly = 1, .id = e->parent};
  struct view_stat ps;
  if (view_stat(d->view, &pn, &ps) < 0)
    ps = o.st;
  /* Attributes are the object's current ones (a version node reads as
   * read-only: its mode bits are not the file's). */
  e->mode = m && m->set_mode ? m->mode : o.st.mode;
  e->uid = m && m->set_uid ? m->uid : o.st.uid;
  e->gid = m && m->set_gid ? m->gid : o.st.gid;
  e->mtime_ns = m && m->set_mtime ? m->mtime_ns : stage_mtime(f);
  e->size = stage_size(f);
  /* Without new attributes the version shows what the staged file showed:
   * keep its ctime too (struct shown). A chmod or a utimes must
   * show a new ctime: clients drop cached permissions on it. */
  if (!m || !(m->set_mode || m->set_uid || m->set_gid || m->set_mtime))
    s->shown_ctime = o.st.ctime_ns;
  if (e->size <= DELTA_MAX && ps.size <= DELTA_MAX && ps.size > 0 && !hash_is_zero(&ps.content) &&
      delta_depth(d, &ps.content) < DELTA_CHAIN_MAX &&
      fs_read_version(d->fs, &ps.version, &s->prev, &s->prev_len) < 0) {
    free(s->prev);
    s->prev = NULL;
    s->prev_len = 0;
  }
  /* Only the regions written since the base are cut and stored again. */
  stage_base_content(f, &s->cb);
  return 1;
}

static void seal_encode(struct blocks *bs, struct sealing *s)
{
  s->r = content_encode_staged(bs, stage_fd(s->f), s->e->size, s->prev, s->prev_len, &s->cb,
                               content_room(s->e), &s->e->content_kind, s->e->content, &s->out_len,
                               &s->list);
  free(s->prev);
  s->prev = NULL;
}

static int seal_end(struct nfsd *d, struct sealing *s)
{
  struct entry *e = s->e;
  int r = s->r;
  if (r == 0) {
    e->content_len = (uint16_t)s->out_len;
    r = submit_commit(d, e);
  }
  if (r == 0) {
    char vhex[17];
    short_hex(&e->id, vhex);
    logf_(d, NFSD_LOG_DEBUG, "nfs: sealed %s: version %s, %llu bytes", s->hex, vhex,
          (unsigned long long)e->size);
    if (s->shown_ctime)
      *shown_slot(d, stage_object(s->f)) = (struct shown){e->id, s->shown_ctime};
    struct view_stat now;
    if (s->keep && view_stat(d->view, &s->n, &now) == 0 && hash_cmp(&now.version, &e->id) == 0 &&
        stage_rebase(d->stage, s->f, &e->id, &s->list) == 0)
      ;
    else
      stage_drop(d->stage, s->f);
  } else {
    logf_(d, NFSD_LOG_ERROR, "nfs: sealing %s failed: %s", s->hex, bfs_strerror(r));
  }
  sealing_free(s); /* the list, unless stage_rebase took it */
  return r;
}

/* ---- sealing in the background ----
 *
 * A COMMIT of a large file (NFSD_SEAL_BG_MIN) makes the staged file
 * durable (stage_sync: recovered and sealed at the next start if we stop
 * before the version is logged) and answers; a worker thread encodes the
 * content and makes its blocks durable, and the loop logs the version when
 * the worker is done (nfsd_poll, woken by the function nfsd_set_wake gave).
 * One such seal runs at a time. The file is not changed while it runs:
 * anything that would change or seal it (a WRITE, a truncate, SETATTR,
 * RENAME, a flush, shutdown, another large COMMIT) first waits for it and
 * logs its version (bg_settle). Reads are served from the staged file
 * meanwhile, as before the COMMIT. */


static void *bg_main(void *arg)
{
  struct nfsd *d = arg;
  struct bg_seal *bg = &d->bg;
  seal_encode(d->blocks, &bg->s);
  /* The loop's commit of this version then finds its blocks durable and
   * syncs only the log. (Other commits of the loop meanwhile wait for this
   * fdatasync: store/blocks.h says why.) */
  if (bg->s.r == 0)
    bg->s.r = blocks_sync(d->blocks);
  atomic_store(&bg->done, true);
  if (d->wake)
    d->wake(d->wake_ctx);
  return NULL;
}

static bool bg_sealing(const struct nfsd *d, const struct stage_file *f)
{
  return d->bg.running && (!f || d->bg.s.f == f);
}

/* Waits for the background seal of F (any file: NULL), if one runs, and
 * logs its version. Returns its result (0 when none ran). */
static int bg_settle(struct nfsd *d, const struct stage_file *f)
{
  if (!bg_sealing(d, f))
    return 0;
  pthread_join(d->bg.tid, NULL);
  d->bg.running = false;
  d->seal_stats.bg_finished++;
  return seal_end(d, &d->bg.s);
}

/* Seals F in the background (see above), or here when it cannot (the
 * staged file could not be made durable, no thread). A seal refused at
 * once (no grant) is refused before anything is made durable. */
static int bg_start(struct nfsd *d, struct stage_file *f)
{
  bg_settle(d, NULL); /* another file's: its outcome is logged, and its own */
  struct sealing *s = &d->bg.s;
  int r = seal_begin(d, f, NULL, true, s);
  if (r <= 0) {
    sealing_free(s);
    return r;
  }
  atomic_store(&d->bg.done, false);
  if (stage_sync(d->stage, f) < 0 || pthread_create(&d->bg.tid, NULL, bg_main, d) != 0) {
    seal_encode(d->blocks, s);
    return seal_end(d, s);
  }
  d->bg.running = true;
  d->seal_stats.bg_started++;
  return 0;
}

/* Does F's COMMIT go to the background? A large file, and room on the
 * disk for its blocks: a seal that may run out of space runs here, so the
 * COMMIT itself reports NFS3ERR_NOSPC. */
/* (A file staged in memory is never that large: fstatvfs below then asks
 * the disk the stage directory is on.) */
_Static_assert(NFSD_STAGE_MEM_FILE < NFSD_SEAL_BG_MIN, "memory-staged files never seal in the background");
static bool bg_worth(struct nfsd *d, struct stage_file *f)
{
  if (d->bg_off || stage_dirty_bytes(f) < NFSD_SEAL_BG_MIN)
    return false;
  struct statvfs sv;
  if (fstatvfs(stage_fd(f), &sv) < 0)
    return false;
  uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
  return avail / 2 > stage_size(f) + (64u << 20);
}

int nfsd_poll(struct nfsd *d)
{
  if (!d->bg.running || !atomic_load(&d->bg.done))
    return 0;
  return bg_settle(d, NULL);
}

void nfsd_set_wake(struct nfsd *d, void (*fn)(void *ctx), void *ctx)
{
  d->wake = fn;
  d->wake_ctx = ctx;
}

/* Seals F now. A background seal of F is finished instead: nothing was
 * written since it started, so its version is this seal (and F is rebased
 * or dropped: invalid after a success). Callers with attributes to fold
 * in (M) settle the file first (obj_settle), so that never happens to them;
 * a failed background seal stays dirty and is tried again here. */
static int seal(struct nfsd *d, struct stage_file *f, const struct meta *m, bool keep)
{
  if (bg_sealing(d, f)) {
    d->bg.s.keep = keep; /* it started as a COMMIT's, which keeps the copy */
    if (bg_settle(d, f) == 0)
      return 0;
  }
  struct sealing s;
  int r = seal_begin(d, f, m, keep, &s);
  if (r <= 0) {
    sealing_free(&s);
    return r;
  }
  seal_encode(d->blocks, &s);
  return seal_end(d, &s);
}

enum tick_mode { TICK_TIMERS, TICK_ALL, TICK_DIRTY };

struct tick_arg {
  struct nfsd *d;
  uint64_t now;
  enum tick_mode mode;
  int sealed;
  int err;
};

static int tick_one(void *arg, struct stage_file *f)
{
  struct tick_arg *a = arg;
  if (a->mode == TICK_TIMERS && bg_sealing(a->d, f))
    return 0; /* its seal is under way */
  uint64_t last = stage_last_write(f);
  if (a->mode == TICK_TIMERS && last + NFSD_QUIET_NS > a->now)
    return 1; /* oldest first: the rest are younger */
  if (!stage_dirty(f)) {
    /* A kept copy: closed when idle, and at shutdown. */
    if (a->mode == TICK_ALL || (a->mode == TICK_TIMERS && last + NFSD_IDLE_NS <= a->now))
      stage_drop(a->d->stage, f);
    return 0;
  }
  if (a->mode == TICK_TIMERS && last + NFSD_IDLE_NS > a->now)
    return 0;
  int r = seal(a->d, f, NULL, a->mode != TICK_ALL);
  if (r < 0 && a->err == 0)
    a->err = r;
  if (r == 0)
    a->sealed++;
  return 0;
}

int nfsd_tick(struct nfsd *d, uint64_t now)
{
  nfsd_poll(d);
  struct tick_arg a = {d, now, TICK_TIMERS, 0, 0};
  stage_foreach(d->stage, tick_one, &a);
  return a.err ? a.err : a.sealed;
}

int nfsd_flush(struct nfsd *d)
{
  bg_settle(d, NULL);
  struct tick_arg a = {d, 0, TICK_DIRTY, 0, 0};
  stage_foreach(d->stage, tick_one, &a);
  return a.err ? a.err : a.sealed;
}

int nfsd_seal_all(struct nfsd *d)
{
  bg_settle(d, NULL);
  struct tick_arg a = {d, 0, TICK_ALL, 0, 0};
  stage_foreach(d->stage, tick_one, &a);
  return a.err ? a.err : a.sealed;
}

unsigned nfsd_staged(const struct nfsd *d) { return (unsigned)stage_count(d->stage); }

void nfsd_seal_stats(const struct nfsd *d, struct nfsd_seal_stats *out) { *out = d->seal_stats; }

/* Finishes a background seal of O's file, and reloads O: what anything
 * about to change or seal the file must do first. */
static int obj_settle(struct nfsd *d, struct obj *o)
{
  if (!o->sf || !bg_sealing(d, o->sf))
    return 0;
  bg_settle(d, o->sf);
  return obj_stat(d, o);
}

/* Seals O's staged data, if any (RENAME, SETATTR, COMMIT). */
static int obj_seal(struct nfsd *d, struct obj *o, const struct meta *m)
{
  int r = obj_settle(d, o);
  if (r < 0 || !o->sf)
    return r;
  r = seal(d, o->sf, m, true);
  o->sf = NULL;
  if (r == 0)
    r = obj_stat(d, o);
  return r;
}

/* ---- life cycle ---- */

/* store/fs replaces its view after a failed commit (a full disk): follow it,
 * so what NFS shows is what is durable. (helper-9, issue 5) */
static void on_new_view(void *arg, struct view *v)
{
  struct nfsd *d = arg;
  d->view = v;
  d->gen++;
}

int nfsd_new(struct fs *fs, const struct key *key, nfsd_log_fn log, void *log_ctx,
             struct nfsd **out)
{
  struct nfsd *d = calloc(1, sizeof *d);
  if (!d)
    return -ENOMEM;
  d->fs = fs;
  d->view = fs_view(fs);
  fs_set_view_hook(fs, on_new_view, d);
  d->blocks = fs_blocks(fs);
  d->key = key;
  d->log = log;
  d->log_ctx = log_ctx;
  d->root = *fs_root(fs);
  memcpy(&d->fsid, &d->root, sizeof d->fsid);
  const char *nobg = getenv("BASEFS_NO_BG_SEAL");
  d->bg_off = nobg && *nobg && strcmp(nobg, "0") != 0;
  if (key) {
    uint8_t pub[KEY_PUBLIC_SIZE];
    key_public(key, pub);
    key_fingerprint(pub, &d->fp);
  }
  /* A fresh verifier per start: UNSTABLE staged writes may have been lost. */
  if (getrandom(d->verf, sizeof d->verf, 0) != (ssize_t)sizeof d->verf) {
    uint64_t t = now_ns() ^ ((uint64_t)getpid() << 32);
    memcpy(d->verf, &t, sizeof d->verf);
  }
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/stage", fs_dir(fs));
  int r = stage_open(dir, &d->stage);
  if (r < 0) {
    free(d);
    return r;
  }
  const char *nomem = getenv("BASEFS_NO_MEM_STAGE");
  if (!(nomem && *nomem && strcmp(nomem, "0") != 0))
    stage_set_memory(d->stage, NFSD_STAGE_MEM_FILE, NFSD_STAGE_MEM_TOTAL);
  unsigned n = nfsd_staged(d);
  if (n > 0) {
    if (!key) {
      logf_(d, NFSD_LOG_WARN, "nfs: %u staged file(s) from a previous run kept: no key to seal them", n);
    } else {
      r = nfsd_seal_all(d);
      logf_(d, r < 0 ? NFSD_LOG_WARN : NFSD_LOG_INFO,
            "nfs: recovered %u staged file(s) from a previous run%s", n,
            r < 0 ? ", some could not be sealed (kept)" : "");
    }
  }
  *out = d;
  return 0;
}

void nfsd_free(struct nfsd *d)
{
  if (!d)
    return;
  /* A seal still running is abandoned: its file is durable (stage_sync)
   * and sealed at the next start. */
  if (d->bg.running) {
    pthread_join(d->bg.tid, NULL);
    sealing_free(&d->bg.s);
  }
  fs_set_view_hook(d->fs, NULL, NULL);
  rdc_free_all(d);
  for (int i = 0; i < RCACHE_N; i++)
    if (d->cache[i].used)
      content_close(d->cache[i].r);
  stage_free(d->stage);
  free(d);
}

int nfsd_root_fh(void *ctx, uint8_t fh[64], uint32_t *len)
{
  struct nfsd *d = ctx;
  if (!d)
    return -EINVAL;
  struct view_node n;
  view_root_node(d->view, &n);
  *len = fh_encode(&d->root, &n, fh);
  return 0;
}

/* ---- procedures ---- */

#define DEC(fn, a)                                                  \
  do {                                                              \
    if (fn(&call->args, &(a)) < 0)                                  \
      return RPCSRV_GARBAGE_ARGS;                                   \
  } while (0)

static enum rpcsrv_status proc_null(struct rpcsrv_call *call)
{
  (void)call;
  return RPCSRV_OK;
}

static enum rpcsrv_status proc_getattr(struct rpcsrv_call *call)
{
  struct nfsd *d = call->ctx;
  struct nfs3_fh_args a;
  DEC(nfs3_dec_fh_args, a);
  struct obj o;
  struct nfs3_getattr_res res = {0};
  int r = obj_load(d, &a.fh, &o);
  res.status = status_of(r);
  if (r == 0)
    fattr_of(d, &o, &res.attr);
  nfs3_enc_getattr_res(call->res, &res);
  return RPCSRV_OK;
}

static bool time_eq(struct nfs3_time a, struct nfs3_time b)
{
  return a.sec == b.sec && a.nsec == b.nsec;
}

static enum rpcsrv_status proc_setattr(struct rpcsrv_call *call)
{
  struct nfsd *d = call->ctx;
  struct nfs3_setattr_args a;
  DEC(nfs3_dec_setattr_args, a);
  struct cred c;
  cred_of(call, &c);
  struct nfs3_wcc_res res = {0};
  struct obj o;
  int r = obj_load(d, &a.fh, &o);
  if (r < 0)
    goto out;
  res.wcc.before = pre_of(&o);
  const struct nfs3_sattr *s = &a.attr;
  if (a.guard_check && !time_eq(a.guard_ctime, ts_of(o.st.ctime_ns))) {
    res.status = NFS3_ERR_NOT_SYNC;
    res.wcc.after = post_of(d, &o);
    nfs3_enc_wcc_res(call->res, &res);
    return RPCSRV_OK;
  }
  /* After the checks against what the client saw: its attributes may join
   * the staged data, which a background seal must not be sealing. */
  if ((r = obj_settle(d, &o)) < 0)
    goto out;
  bool owner = c.root || c.uid == o.st.uid;
  struct meta m = {0};
  uint64_t now = now_ns();
  bool change = false;
  if (s->set_mode && (s->mode & 07777) != o.st.mode) {
    m.set_mode = true;
    m.mode = s->mode & 07777;
    change = true;
  }
  if (s->set_uid && s->uid != o.st.uid) {
    m.set_uid = true;
    m.uid = s->uid;
    change = true;
  }
  if (s->set_gid && s->gid != o.st.gid) {
    m.set_gid = true;
    m.gid = s->gid;
    change = true;
  }
  if (s->mtime_how != NFS3_DONT_CHANGE) {
    m.set_mtime = true;
    m.mtime_ns = s->mtime_how == NFS3_SET_TO_SERVER_TIME
                     ? now
                     : (uint64_t)s->mtime.sec * 1000000000ull + s->mtime.nsec;
    change = true;
  }
  bool set_size = s->set_size && (o.st.type != VIEW_FILE || s->size != o.st.size || o.sf);
  /* Checks, in the order a local filesystem makes them. */
  if (set_size && o.st.type == VIEW_DIR)
    r = -EISDIR;
  else if (set_size && o.st.type != VIEW_FILE)
    r = -EINVAL;
  else if (set_size && s->size > MAX_FILE_SIZE)
    r = -EFBIG;
  else if (!change && !set_size)
    goto done; /* atime only, or nothing: nothing is stored */
  else if ((r = write_check(d, &c, &o.node)) < 0)
    ;
  else if ((m.set_mode || m.set_gid) && !owner)
    r = -EPERM;
  else if (m.set_uid && !c.root)
    r = -EPERM;
  else if (m.set_gid && !c.root && !in_group(&c, m.gid))
    r = -EPERM;
  else if (m.set_mtime && s->mtime_how == NFS3_SET_TO_CLIENT_TIME && !owner)
    r = -EPERM;
  else if (m.set_mtime && !owner && !may(&c, &o.st, MAY_W))
    r = -EACCES;
  else if (set_size && !owner && !may(&c, &o.st, MAY_W))
    r = -EACCES;
  if (r < 0)
    goto out;
  /* chmod by a non-root member-less owner drops setgid, like Linux. */
  if (m.set_mode && !c.root && !in_group(&c, m.set_gid ? m.gid : o.st.gid))
    m.mode &= ~02000u;
  if (set_size) {
    /* A truncate is a new content: stage, cut, seal with the attributes. */
    if ((r = obj_stage_upto(d, &o, s->size)) == 0 &&
        (r = stage_truncate(d->stage, o.sf, s->size, now)) == 0) {
      if (!m.set_mtime) {
        m.set_mtime = true;
        m.mtime_ns = now;
      }
      r = obj_seal(d, &o, &m);
    }
    goto out;
  }
  if (o.st.type == VIEW_FILE && o.sf) {
    /* Staged data and new attributes become one version. */
    r = obj_seal(d, &o, &m);
    goto out;
  }
  struct entry *e = entry_new(ENTRY_MODE);
  if (!e) {
    r = -ENOMEM;
    goto out;
  }
  e->parent = o.st.version;
  e->mode = m.set_mode ? m.mode : o.st.mode;
  e->uid = m.set_uid ? m.uid : o.st.uid;
  e->gid = m.set_gid ? m.gid : o.st.gid;
  /* A MODE entry's mtime is the object's mtime: keep it unless asked. */
  e->mtime_ns = m.set_mtime ? m.mtime_ns : o.st.mtime_ns;
  if (e->mtime_ns == 0)
    e->mtime_ns = now;
  r = submit_commit(d, e);
  free(e);
done:
out:
  res.status = status_of(r);
  if (res.wcc.before.present)
    res.wcc.after = post_now(d, &o);
  nfs3_enc_wcc_res(call->res, &res);
  return RPCSRV_OK;
}

static enum rpcsrv_status proc_lookup(struct rpcsrv_call *call)
{
  struct nfsd *d = call->ctx;
  struct nfs3_dirop_args a;
  DEC(nfs3_dec_dirop_args, a);
  struct cred c;
  cred_of(call, &c);
  struct nfs3_lookup_res res = {0};
  struct obj dir, o;
  char name[NFS3_NAME_MAX + 1];
  enum name_class cls;
  struct view_node n;
  int r = obj_load(d, &a.what.dir, &dir);
  if (r == 0) {
    res.dir_attr = post_of(d, &dir);
    if (dir.st.type != VIEW_DIR)
      r = -ENOTDIR;
    else if (!may(&c, &dir.st, MAY_X))
      r = -EACCES;
    else
      r = name_of(&a.what.name, name, &cls);
  }
  if (r == 0) {
    if (cls == NAME_DOT)
      n = dir.node;
    else if (cls == NAME_DOTDOT)
      r = parent_of(d, &dir.node, &n);
    else
      r = view_lookup(d->view, &dir.node, name, &n, NULL);
  }
  if (r == 0)
    r = obj_load_node(d, &n, &o);
  if (r == -ESTALE && res.dir_attr.present)
    r = -ENOENT; /* a name bound to something gone: not there */
  res.status = status_of(r);
  if (r == 0) {
    fh_of(d, &n, &res.fh);
    res.obj_attr = post_of(d, &o);
  }
  nfs3_enc_lookup_res(call->res, &res);
  return RPCSRV_OK;
}

static enum rpcsrv_status proc_access(struct rpcsrv_call *call)
{
  struct nfsd *d = call->ctx;
  struct nfs3_access_args a;
  DEC(nfs3_dec_access_args, a);
  struct cred c;
  cred_of(call, &c);
  struct nfs3_access_res res = {0};
  struct obj o;
  int r = obj_load(d, &a.fh, &o);
  res.status = status_of(r);
  if (r == 0) {
    res.attr = post_of(d, &o);
    unsigned b = mode_bits(&c, &o.st);
    uint32_t ok = 0;
    if (b & MAY_R)
      ok |= NFS3_ACCESS_READ;
    if (o.st.type == VIEW_DIR) {
      if (b & MAY_X)
        ok |= NFS3_ACCESS_LOOKUP;
      if ((b & (MAY_W | MAY_X)) == (MAY_W | MAY_X))
        ok |= NFS3_ACCESS_MODIFY | NFS3_ACCESS_EXTEND | NFS3_ACCESS_DELETE;
    } else {
      if (b & MAY_W)
        ok |= NFS3_ACCESS_MODIFY | NFS3_ACCESS_EXTEND;
      if (b & MAY_X)
        ok |= NFS3_ACCESS_EXECUTE;
    }
    /* The key decides too: no grant, no write bits. */
    if ((ok & (NFS3_ACCESS_MODIFY | NFS3_ACCESS_EXTEND | NFS3_ACCESS_DELETE)) &&
        write_check(d, &c, &o.node) < 0)
      ok &= ~(uint32_t)(NFS3_ACCESS_MODIFY | NFS3_ACCESS_EXTEND | NFS3_ACCESS_DELETE);
    res.access = ok & a.access;
  }
  nfs3_enc_access_res(call->res, &res);
  return RPCSRV_OK;
}

static enum rpcsrv_status proc_readlink(struct rpcsrv_call *call)
{
  struct nfsd *d = call->ctx;
  struct nfs3_fh_args a;
  DEC(nfs3_dec_fh_args, a);
  struct nfs3_readlink_res res = {0};
  struct obj o;
  struct entry *e = NULL;
  int r = obj_load(d, &a.fh, &o);
  if (r == 0) {
    res.attr = post_of(d, &o);
    if (o.st.type != VIEW_SYMLINK)
      r = -EINVAL;
    else if (!(e = malloc(sizeof *e)))
      r = -ENOMEM;
    else if ((r = view_entry(d->view, &o.st.content, e)) == 0 &&
             e->content_kind != ENTRY_CONTENT_INLINE)
      r = -EIO;
  }
  res.status = status_of(r);
  if (r == 0) {
    res.target.data = e->content;
    res.target.len = e->content_len;
  }
  nfs3_enc_readlink_res(call->res, &res);
  free(e);
  return RPCSRV_OK;
}

static enum rpcsrv_status proc_read(struct rpcsrv_call *call)
{
  struct nfsd *d = call->ctx;
  struct nfs3_read_args a;
  DEC(nfs3_dec_read_args, a);
  struct cred c;
  cred_of(call, &c);
  struct obj o;
  int r = obj_load(d, &a.fh, &o);
  if (r == 0 && o.st.type == VIEW_DIR)
    r = -EISDIR;
  else if (r == 0 && o.st.type != VIEW_FILE)
    r = -EINVAL;
  else if (r == 0 && !may(&c, &o.st, MAY_R) && c.uid != o.st.uid)
    r = -EACCES;
  if (r < 0) {
    struct nfs3_read_res res = {.status = status_of(r)};
    if (r != -EBADMSG && r != -ESTALE)
      res.attr = post_of(d, &o);
    nfs3_enc_read_res(call->res, &res);
    return RPCSRV_OK;
  }
  uint32_t io = call->peer && !call->peer->stream ? UDP_IO_MAX : NFS3_IO_MAX;
  uint32_t count = a.count > io ? io : a.count;
  uint64_t size = o.st.size;
  if (a.offset >= size)
    count = 0;
  else if (count > size - a.offset)
    count = (uint32_t)(size - a.offset);
  struct nfs3_post_attr attr = post_of(d, &o);
  size_t start = call->res->len;
  uint8_t *buf = nfs3_enc_read_ok(call->res, &attr, count, a.offset + count >= size);
  if (!buf)
    return RPCSRV_SYSTEM_ERR;
  ssize_t n = count ? obj_read(d, &o, a.offset, buf, count) : 0;
  if (n != (ssize_t)count) {
    /* A damaged or missing block: an I/O error, not a short read. */
    xdr_enc_truncate(call->res, start);
    struct nfs3_read_res res = {.status = NFS3_ERR_IO, .attr = attr};
    nfs3_enc_read_res(call->res, &res);
    char hex[17];
    short_hex(&o.st.object, hex);
    logf_(d, NFSD_LOG_ERROR, "nfs: READ of %s at %llu: %s", hex, (unsigned long long)a.offset,
          n < 0 ? bfs_strerror((int)n) : "short read");
  }
  return RPCSRV_OK;
}

static enum rpcsrv_status proc_write(struct rpcsrv_call *call)
{
  struct nfsd *d = call->ctx;
  struct nfs3_write_args a;
  DEC(nfs3_dec_write_args, a);
  struct cred c;
  cred_of(call, &c);
  struct nfs3_write_res res = {0};
  struct obj o;
  int r = obj_load(d, &a.fh, &o);
  if (r == 0) {
    res.wcc.before = pre_of(&o);
    if (o.st.type == VIEW_DIR)
      r = -EISDIR;
    else if (o.st.type != VIEW_FILE)
      r = -EINVAL;
    else if ((r = write_check(d, &c, &o.node)) < 0)
      ;
    else if (!may(&c, &o.st, MAY_W) && c.uid != o.st.uid)
      r = -EACCES;
    else if (a.offset > MAX_FILE_SIZE || a.data.len > MAX_FILE_SIZE - a.offset)
      r = -EFBIG;
    else {
      bool fresh;
      uint64_t base_size = o.st.size;
      bool stable = a.stable != NFS3_UNSTABLE;
      r = obj_stage_skip(d, &o, UINT64_MAX, a.offset, a.offset + a.data.len, &fresh);
      /* A stable write of a whole small file (Linux flushes a small file
       * so at close(): one FILE_SYNC WRITE, no COMMIT) is sealed at once:
       * one flush of the store instead of a durable staged copy now and a
       * seal later, and the version is visible at once, as after a COMMIT.
       * Under 64 KiB: a stream of stable writes (O_SYNC, a sync mount) of
       * larger pieces stages them as before; one of small pieces makes its
       * first piece a version of its own. If the seal fails, the staged
       * copy is made durable instead (a failed seal leaves it staged). */
      bool whole = stable && r == 0 && a.offset == 0 && a.data.len > 0 &&
                   a.data.len >= stage_size(o.sf) && a.data.len < NFSD_STAGE_MEM_FILE;
      if (r == 0)
        r = stage_write(d->stage, o.sf, a.offset, a.data.data, a.data.len, stable && !whole, now_ns());
      if (r == 0 && whole) {
        struct stage_file *sf = o.sf;
        o.sf = NULL;
        if (seal(d, sf, NULL, true) < 0)
          r = stage_sync(d->stage, sf);
      }
      if (r < 0 && fresh && o.sf && a.offset < base_size && a.data.len > 0) {
        /* Its copy left out what this write should have put there. */
        stage_drop(d->stage, o.sf);
        o.sf = NULL;
      }
    }
  }
  res.status = status_of(r);
  if (res.wcc.before.present)
    res.wcc.after = post_now(d, &o);
  if (r == 0) {
    res.count = a.data.len;
    res.committed = a.stable == NFS3_UNSTABLE ? NFS3_UNSTABLE : NFS3_FILE_SYNC;
    memcpy(res.verf, d->verf, sizeof res.verf);
  }
  nfs3_enc_write_res(call->res, &res);
  return RPCSRV_OK;
}

/* The checks every create in DIR makes. */
static int create_check(struct nfsd *d, const struct cred *c, struct obj *dir,
                        const struct xdr_bytes *wire, char name[NFS3_NAME_MAX + 1])
{
  enum name_class cls;
  if (dir->st.type != VIEW_DIR)
    return -ENOTDIR;
  int r = name_of(wire, name, &cls);
  if (r == -ENOENT)
    return -EINVAL;
  if (r < 0)
    return r;
  if (cls != NAME_OK)
    return -EEXIST;
  r = view_check_name(d->view, &dir->node, name);
  if (r == -EPERM)
    return -EEXIST; /* "/.basefs" */
  if (r < 0)
    return r;
  if ((r = write_check(d, c, &dir->node)) < 0)
    return r;
  if (!may(c, &dir->st, MAY_W | MAY_X))
    return -EACCES;
  return 0;
}

/* A new entry of ACTION for NAME in DIR; NULL when memory is short. */
static struct entry *entry_in(uint8_t action, const struct obj *dir, const char *name)
{
  struct entry *e = entry_new(action);
  if (e) {
    e->dir = dir->node.id;
    entry_set_name(e, name);
  }
  return e;
}

/* Every create's opening: loads the directory of WHERE (its pre-op
 * attributes into *BEFORE, for the reply) and checks the new name. */
static int create_open(struct nfsd *d, const struct cred *c, const struct nfs3_dirop *where,
                       struct obj *dir, struct nfs3_pre_attr *before, char name[NFS3_NAME_MAX + 1])
{
  int r = obj_load(d, &where->dir, dir);
  if (r < 0)
    return r;
  *before = pre_of(dir);
  return create_check(d, c, dir, &where->name, name);
}

/* Owner, group and mode of something new created by C. */
static void new_attrs(const struct cred *c, const struct obj *dir, const struct nfs3_sattr *s,
                      uint32_t dflt_mode, struct entry *e)
{
  e->mode = s && s->set_mode ? (s->mode & 07777) : dflt_mode;
  e->uid = c->uid;
  /* A setgid directory hands its group down, as on Linux. */
  e->gid = (dir->st.mode & 02000) ? dir->st.gid : c->gid;
  if (s && s->set_uid && c->root)
    e->uid = s->uid;
  if (s && s->set_gid && (c->root || in_group(c, s->gid)))
    e->gid = s->gid;
  if (s && s->mtime_how == NFS3_SET_TO_CLIENT_TIME)
    e->mtime_ns = (uint64_t)s->mtime.sec * 1000000000ull + s->mtime.nsec;
}

/* The exclusive-create verifier as the low 20 bits of the mtime (see
 * nfs3.h). */
#define VERF_BITS 20
#define VERF_MASK ((1ull << VERF_BITS) - 1)
static uint64_t verf_digest(const uint8_t verf[NFS3_CREATEVERFSIZE])
{
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < NFS3_CREATEVERFSIZE; i++)
    h = (h ^ verf[i]) * 1099511628211ull;
  return (h ^ (h >> 32)) & VERF_MASK;
}

/* NOW with its low bits replaced by the digest, never after NOW (a future
 * mtime would freeze the directory's mtime, which is a maximum). */
static uint64_t verf_mtime(uint64_t now, const uint8_t verf[NFS3_CREATEVERFSIZE])
{
  uint64_t t = (now & ~VERF_MASK) | verf_digest(verf);
  return t > now ? t - (VERF_MASK + 1) : t;
}

/* Encodes a CREATE/MKDIR/SYMLINK/MKNOD result for node N (when r == 0). */
static void create_reply(struct rpcsrv_call *call, struct nfsd *d, int r, struct obj *dir,
                         const struct nfs3_pre_attr *before, const struct view_node *n)
{
  struct nfs3_create_res res = {0};
  res.status = status_of(r);
  res.dir_wcc.before = *before;
  if (before->present)
    res.dir_wcc.after = post_now(d, dir);
  if (r == 0) {
    struct obj o;
    res.fh.present = true;
    fh_of(d, n, &res.fh.fh);
    if (obj_load_node(d, n, &o) == 0)
      res.obj_attr = post_of(d, &o);
  }
  nfs3_enc_create_res(call->res, &res);
}

static enum rpcsrv_status proc_create(struct rpcsrv_call *call)
{
  struct nfsd *d = call->ctx;
  struct nfs3_create_args a;
  DEC(nfs3_dec_create_args, a);
  struct cred c;
  cred_of(call, &c);
  struct obj dir;
  struct nfs3_pre_attr before = {0};
  struct view_node n;
  char name[NFS3_NAME_MAX + 1];
  int r = create_open(d, &c, &a.where, &dir, &before, name);
  if (r == -EEXIST && a.mode != NFS3_GUARDED && dir.st.type == VIEW_DIR &&
      view_lookup(d->view, &dir.node, name, &n, NULL) == 0) {
    /* The name exists: UNCHECKED opens it (truncating if asked), EXCLUSIVE
     * succeeds if it is our own earlier create with this verifier. */
    struct obj o;
    r = obj_load_node(d, &n, &o);
    if (r == 0 && o.st.type != VIEW_FILE)
      r = -EEXIST;
    else if (r == 0 && a.mode == NFS3_EXCLUSIVE) {
      struct entry *e = malloc(sizeof *e);
      bool same = e && hash_cmp(&o.st.version, &o.st.object) == 0 && !o.sf &&
                  view_entry(d->view, &o.st.object, e) == 0 &&
                  (e->mtime_ns & VERF_MASK) == verf_digest(a.verf) && e->size == 0;
      free(e);
      r = same ? 0 : -EEXIST;
    } else if (r == 0 && a.attr.set_size) {
      if ((r = write_check(d, &c, &o.node)) == 0 && !may(&c, &o.st, MAY_W) && c.uid != o.st.uid)
        r = -EACCES;
      if (r == 0)
        r = obj_settle(d, &o); /* o.sf below is then what is staged */
      if (r == 0 && (a.attr.size != o.st.size || o.sf) &&
          (r = obj_stage_upto(d, &o, a.attr.size)) == 0 &&
          (r = stage_truncate(d->stage, o.sf, a.attr.size, now_ns())) == 0)
        r = obj_seal(d, &o, NULL);
    }
    create_reply(call, d, r, &dir, &before, &n);
    return RPCSRV_OK;
  }
  if (r == 0) {
    struct entry *e = entry_in(ENTRY_WRITE, &dir, name);
    if (!e) {
      r = -ENOMEM;
    } else {
      if (a.mode == NFS3_EXCLUSIVE) {
        new_attrs(&c, &dir, NULL, 0644, e);
        e->mtime_ns = verf_mtime(e->mtime_ns, a.verf);
      } else {
        new_attrs(&c, &dir, &a.attr, 0644, e);
        /* A size in a create's attributes can only make the file sparse
         * zeros; only 0 (the common O_TRUNC) is honoured. */
      }
      r = submit_commit(d, e);
      if (r == 0) {
        n.kind = VIEW_NODE_OBJECT;
        n.readonly = 0;
        n.id = e->id;
      }
      free(e);
    }
  }
  create_reply(call, d, r, &dir, &before, &n);
  return RPCSRV_OK;
}

static enum rpcsrv_status proc_mkdir(struct rpcsrv_call *call)
{
  struct nfsd *d = call->ctx;
  struct nfs3_mkdir_args a;
  DEC(nfs3_dec_mkdir_args, a);
  struct cred c;
  cred_of(call, &c);
  struct obj dir;
  struct nfs3_pre_attr before = {0};
  struct view_node n;
  char name[NFS3_NAME_MAX + 1];
  int r = create_open(d, &c, &a.where, &dir, &before, name);
  if (r == 0) {
    struct entry *e = entry_in(ENTRY_MKDIR, &dir, name);
    if (!e) {
      r = -ENOMEM;
    } else {
      new_attrs(&c, &dir, &a.attr, 0755, e);
      if (dir.st.mode & 02000)
        e->mode |= 02000;
      r = submit_commit(d, e);
      n.kind = VIEW_NODE_OBJECT;
      n.readonly = 0;
      n.id = e->id;
      free(e);
    }
  }
  create_reply(call, d, r, &dir, &before, &n);
  return RPCSRV_OK;
}

static enum rpcsrv_status proc_symlink(struct rpcsrv_call *call)
{
  struct nfsd *d = call->ctx;
  struct nfs3_symlink_args a;
  DEC(nfs3_dec_symlink_args, a);
  struct cred c;
  cred_of(call, &c);
  struct obj dir;
  struct nfs3_pre_attr before = {0};
  struct view_node n;
  char name[NFS3_NAME_MAX + 1];
  int r = create_open(d, &c, &a.where, &dir, &before, name);
  if (r == 0 && a.target.len > NFS3_PATH_MAX)
    r = -ENAMETOOLONG;
  else if (r == 0 && (a.target.len == 0 || memchr(a.target.data, '\0', a.target.len)))
    r = -EINVAL;
  if (r == 0) {
    struct entry *e = entry_in(ENTRY_SLINK, &dir, name);
    if (!e) {
      r = -ENOMEM;
    } else {
      new_attrs(&c, &dir, NULL, 0777, e);
      e->size = a.target.len;
      if (a.target.len > content_room(e)) {
        r = -ENAMETOOLONG;
      } else {
        e->content_kind = ENTRY_CONTENT_INLINE;
        memcpy(e->content, a.target.data, a.target.len);
        e->content_len = (uint16_t)a.target.len;
        r = submit_commit(d, e);
      }
      n.kind = VIEW_NODE_OBJECT;
      n.readonly = 0;
      n.id = e->id;
      free(e);
    }
  }
  create_reply(call, d, r, &dir, &before, &n);
  return RPCSRV_OK;
}

static enum rpcsrv_status proc_mknod(struct rpcsrv_call *call)
{
  struct nfsd *d = call->ctx;
  struct nfs3_mknod_args a;
  DEC(nfs3_dec_mknod_args, a);
  struct obj dir;
  struct nfs3_pre_attr before = {0};
  int r = obj_load(d, &a.where.dir, &dir);
  if (r == 0) {
    before = pre_of(&dir);
    if (dir.st.type != VIEW_DIR)
      r = -ENOTDIR;
    else if (a.type == NFS3_CHR || a.type == NFS3_BLK || a.type == NFS3_SOCK ||
             a.type == NFS3_FIFO)
      r = -ENOTSUP;
  }
  struct nfs3_create_res res = {0};
  res.status = r == 0 ? NFS3_ERR_BADTYPE : status_of(r);
  res.dir_wcc.before = before;
  if (before.present)
    res.dir_wcc.after = post_of(d, &dir);
  nfs3_enc_create_res(call->res, &res);
  return RPCSRV_OK;
}

/* Is directory N empty? */
static int stop_cb(void *arg, const char *name, const struct view_node *node, uint64_t cookie)
{
  (void)arg;
  (void)name;
  (void)node;
  (void)cookie;
  return 1;
}

static int dir_empty(struct nfsd *d, const struct view_node *n)
{
  int r = view_readdir(d->view, n, 0, stop_cb, NULL);
  return r < 0 ? r : r == 0;
}

/* May C remove or rename away entry O of DIR (write + search, sticky bit)? */
static int may_unlink(const struct cred *c, const struct obj *dir, const struct obj *o)
{
  if (!may(c, &dir->st, MAY_W | MAY_X))
    return -EACCES;
  if ((dir->st.mode & 01000) && !c->root && c->uid != dir->st.uid && c->uid != o->st.uid)
    return -EACCES;
  return 0;
}

/* REMOVE and RMDIR. */
static enum rpcsrv_status remove_common(struct rpcsrv_call *call, bool rmdir)
{
  struct nfsd *d = call->ctx;
  struct nfs3_dirop_args a;
  DEC(nfs3_dec_dirop_args, a);
  struct cred c;
  cred_of(call, &c);
  struct nfs3_wcc_res res = {0};
  struct obj dir, o;
  char name[NFS3_NAME_MAX + 1];
  enum name_class cls;
  struct view_node n;
  hash_t head;
  int r = obj_load(d, &a.what.dir, &dir);
  if (r == 0) {
    res.wcc.before = pre_of(&dir);
    if (dir.st.type != VIEW_DIR)
      r = -ENOTDIR;
    else if ((r = name_of(&a.what.name, name, &cls)) == 0 && cls != NAME_OK)
      r = rmdir ? (cls == NAME_DOT ? -EINVAL : -ENOTEMPTY) : -EISDIR;
  }
  if (r == 0)
    r = view_lookup(d->view, &dir.node, name, &n, &head);
  if (r == -ESTALE)
    r = -ENOENT;
  if (r == 0)
    r = obj_load_node(d, &n, &o);
  if (r == 0) {
    if (rmdir && o.st.type != VIEW_DIR)
      r = -ENOTDIR;
    else if (!rmdir && o.st.type == VIEW_DIR)
      r = -EISDIR;
    else if (!writable_node(&n) || hash_is_zero(&head))
      r = -EROFS; /* /.basefs */
    else if ((r = unlink_check(d, &c, &n)) < 0)
      ;
    else if ((r = may_unlink(&c, &dir, &o)) < 0)
      ;
    else if (rmdir && (r = dir_empty(d, &n)) >= 0)
      r = r ? 0 : -ENOTEMPTY;
  }
  /* A COMMITted version still being sealed is logged before the name goes
   * (it stays in the history, as it would have without the background). */
  if (r == 0)
    r = obj_settle(d, &o);
  if (r == 0) {
    struct entry *e = entry_new(ENTRY_DELETE);
    if (!e) {
      r = -ENOMEM;
    } else {
      e->parent = head;
      r = submit_commit(d, e);
      free(e);
    }
  }
  res.status = status_of(r);
  if (res.wcc.before.present)
    res.wcc.after = post_now(d, &dir);
  nfs3_enc_wcc_res(call->res, &res);
  return RPCSRV_OK;
}

static enum rpcsrv_status proc_remove(struct rpcsrv_call *call) { return remove_common(call, false); }
static enum rpcsrv_status proc_rmdir(struct rpcsrv_call *call) { return remove_common(call, true); }

static int move_status(int r)
{
  /* view_check_move: -BFS_ENOGRANT one side unwritable, -EXDEV two grants,
   * -EINVAL a directory into itself. */
  return r == -BFS_ENOGRANT ? -EACCES : r;
}

static enum rpcsrv_status proc_rename(struct rpcsrv_call *call)
{
  struct nfsd *d = call->ctx;
  struct nfs3_rename_args a;
  DEC(nfs3_dec_rename_args, a);
  struct cred c;
  cred_of(call, &c);
  struct nfs3_rename_res res = {0};
  struct obj from, to, o, old;
  char fname[NFS3_NAME_MAX + 1], tname[NFS3_NAME_MAX + 1];
  enum name_class fcls = NAME_OK, tcls = NAME_OK;
  struct view_node n, on;
  hash_t head, old_head;
  bool have_old = false;
  int r = obj_load(d, &a.from.dir, &from);
  if (r == 0)
    res.from_wcc.before = pre_of(&from);
  int r2 = obj_load(d, &a.to.dir, &to);
  if (r2 == 0)
    res.to_wcc.before = pre_of(&to);
  if (r == 0)
    r = r2;
  if (r == 0 && (from.st.type != VIEW_DIR || to.st.type != VIEW_DIR))
    r = -ENOTDIR;
  if (r == 0 && (r = name_of(&a.from.name, fname, &fcls)) == 0 &&
      (r = name_of(&a.to.name, tname, &tcls)) == 0 && (fcls != NAME_OK || tcls != NAME_OK))
    r = -EINVAL;
  if (r == -ENOENT)
    r = -EINVAL; /* an empty name */
  if (r == 0 && (r = view_lookup(d->view, &from.node, fname, &n, &head)) == -ESTALE)
    r = -ENOENT;
  if (r == 0)
    r = obj_load_node(d, &n, &o);
  if (r == 0 && (!writable_node(&n) || hash_is_zero(&head) || !writable_node(&to.node)))
    r = -EROFS;
  /* A directory moved into itself is EINVAL before anything about the
   * target (as on Linux). */
  if (r == 0 && o.st.type == VIEW_DIR &&
      view_check_move(d->view, &d->fp, &n, &to.node) == -EINVAL)
    r = -EINVAL;
  if (r == 0) {
    int lr = view_lookup(d->view, &to.node, tname, &on, &old_head);
    if (lr == 0 && hash_cmp(&on.id, &n.id) == 0) {
      /* Two names of one object: nothing to do (POSIX). */
      goto reply;
    }
    if (lr == 0 && (r = obj_load_node(d, &on, &old)) == 0) {
      have_old = true;
      if (!writable_node(&on) || hash_is_zero(&old_head))
        r = -EROFS; /* "/.basefs" itself */
      else if (old.st.type == VIEW_DIR &&
               view_check_move(d->view, &d->fp, &on, &from.node) == -EINVAL)
        r = -ENOTEMPTY; /* the target is an ancestor of the source (Linux) */
      else if (o.st.type == VIEW_DIR && old.st.type != VIEW_DIR)
        r = -ENOTDIR;
      else if (o.st.type != VIEW_DIR && old.st.type == VIEW_DIR)
        r = -EISDIR;
      else if (old.st.type == VIEW_DIR && (r = dir_empty(d, &on)) >= 0)
        r = r ? 0 : -ENOTEMPTY;
    } else if (lr == -ENOENT || lr == -ESTALE) {
      r = view_check_name(d->view, &to.node, tname);
      if (r == -EPERM)
        r = -EROFS;
    } else {
      r = lr;
    }
  }
  /* The source's name and a replaced target's are removed from their
   * directories; view_check_move() says whether the key may take the
   * object there. */
  if (r == 0 && ((r = unlink_check(d, &c, &n)) < 0 ||
                 (have_old && (r = unlink_check(d, &c, &on)) < 0)))
    ;
  else if (r == 0)
    r = move_status(view_check_move(d->view, &d->fp, &n, &to.node));
  if (r == 0 && (r = may_unlink(&c, &from, &o)) == 0 && have_old)
    r = may_unlink(&c, &to, &old);
  if (r == 0 && !may(&c, &to.st, MAY_W | MAY_X))
    r = -EACCES;
  /* Moving a directory to another parent rewrites its "..": Linux asks for
   * write permission on it. */
  if (r == 0 && o.st.type == VIEW_DIR && hash_cmp(&from.node.id, &to.node.id) != 0 &&
      !may(&c, &o.st, MAY_W))
    r = -EACCES;
  /* Staged data of the file moves with it as a sealed version; a replaced
   * file's version still being sealed is logged first (see REMOVE). */
  if (r == 0)
    r = obj_seal(d, &o, NULL);
  if (r == 0 && have_old)
    r = obj_settle(d, &old);
  if (r == 0 && have_old) {
    struct entry *e = entry_new(ENTRY_DELETE);
    if (!e)
      r = -ENOMEM;
    else {
      e->parent = old_head;
      r = submit(d, e);
      free(e);
    }
  }
  if (r == 0) {
    struct entry *e = entry_in(ENTRY_RENAME, &to, tname);
    if (!e)
      r = -ENOMEM;
    else {
      e->parent = head;
      r = submit(d, e);
      free(e);
    }
  }
  if (r == 0)
    r = commit(d);
reply:
  res.status = status_of(r);
  if (res.from_wcc.before.present)
    res.from_wcc.after = post_now(d, &from);
  if (res.to_wcc.before.present)
    res.to_wcc.after = post_now(d, &to);
  nfs3_enc_rename_res(call->res, &res);
  return RPCSRV_OK;
}

static enum rpcsrv_status proc_link(struct rpcsrv_call *call)
{
  struct nfsd *d = call->ctx;
  struct nfs3_link_args a;
  DEC(nfs3_dec_link_args, a);
  struct cred c;
  cred_of(call, &c);
  struct nfs3_link_res res = {0};
  struct obj o, dir;
  char name[NFS3_NAME_MAX + 1];
  int r = obj_load(d, &a.fh, &o);
  if (r == 0)
    res.file_attr = post_of(d, &o);
  int r2 = obj_load(d, &a.link.dir, &dir);
  if (r2 == 0)
    res.dir_wcc.before = pre_of(&dir);
  if (r == 0)
    r = r2;
  if (r == 0 && o.st.type == VIEW_DIR)
    r = -EISDIR;
  if (r == 0 && !writable_node(&o.node))
    r = -EROFS;
  if (r == 0)
    r = create_check(d, &c, &dir, &a.link.name, name);
  if (r == 0)
    r = move_status(view_check_move(d->view, &d->fp, &o.node, &dir.node));
  if (r == 0) {
    struct entry *e = entry_in(ENTRY_LINK, &dir, name);
    if (!e)
      r = -ENOMEM;
    else {
      e->target = o.node.id;
      r = submit_commit(d, e);
      free(e);
    }
  }
  res.status = status_of(r);
  if (res.file_attr.present)
    res.file_attr = post_now(d, &o);
  if (res.dir_wcc.before.present)
    res.dir_wcc.after = post_now(d, &dir);
  nfs3_enc_link_res(call->res, &res);
  return RPCSRV_OK;
}

/* ---- READDIR / READDIRPLUS ---- */

#define COOKIE_DOT 1
#define COOKIE_DOTDOT 2

struct rd {
  struct nfsd *d;
  struct xdr_enc *res;
  bool plus;
  size_t used;     /* bytes of the reply so far (maxcount / count budget) */
  size_t max;
  size_t dirused;  /* READDIRPLUS: bytes of the entry3 part (dircount) */
  size_t dirmax;
  unsigned count;  /* entries emitted */
  bool full;       /* stopped for room */
};

static int rd_emit(struct rd *s, const char *name, const struct view_node *node, uint64_t cookie)
{
  uint32_t len = (uint32_t)strlen(name);
  struct obj o;
  uint64_t fileid = 0;
  struct nfs3_post_attr attr = {.present = false};
  struct nfs3_post_fh fh = {.present = false};
  if (obj_load_node(s->d, node, &o) == 0) {
    fileid = o.st.fileid;
    if (s->plus) {
      attr = post_of(s->d, &o);
      fh.present = true;
      fh_of(s->d, node, &fh.fh);
    }
  } else {
    /* Listed but gone: skip it. */
    return 0;
  }
  size_t sz = s->plus ? nfs3_readdirplus_entry_size(len, &attr, &fh)
                      : nfs3_readdir_entry_size(len);
  size_t dsz = nfs3_readdir_entry_size(len);
  if (s->used + sz > s->max || (s->plus && s->dirused + dsz > s->dirmax)) {
    s->full = true;
    return 1;
  }
  if (s->plus)
    nfs3_enc_readdirplus_entry(s->res, fileid, name, len, cookie, &attr, &fh);
  else
    nfs3_enc_readdir_entry(s->res, fileid, name, len, cookie);
  s->used += sz;
  s->dirused += dsz;
  s->count++;
  return 0;
}

static int rd_cb(void *arg, const char *name, const struct view_node *node, uint64_t cookie)
{
  return rd_emit(arg, name, node, cookie);
}

static bool rdc_match(const struct rdc *c, bool plus, const struct nfs3_readdirplus_args *a,
                      size_t max)
{
  return c->used && c->plus == plus && c->cookie == a->cookie && c->dircount == a->dircount &&
         c->max == max && c->fh_len == a->dir.len && memcmp(c->fh, a->dir.data, a->dir.len) == 0;
}

static void rdc_clear(struct nfsd *d, struct rdc *c)
{
  if (!c->used)
    return;
  d->rdc_bytes -= c->len;
  free(c->buf);
  memset(c, 0, sizeof *c);
}

/* Empties the cache once the view or the server's own state has moved
 * since its replies were encoded: a stale reply is never served. */
static void rdc_current(struct nfsd *d)
{
  uint64_t vchanges = view_changes(d->view);
  if (vchanges != d->rdc_vchanges || server_gen(d) != d->rdc_gen) {
    rdc_free_all(d);
    d->rdc_vchanges = vchanges;
    d->rdc_gen = server_gen(d);
  }
}

/* The cached reply for this call, or NULL. */
static struct rdc *rdc_find(struct nfsd *d, bool plus, const struct nfs3_readdirplus_args *a,
                            size_t max)
{
  if (d->rdc_off)
    return NULL;
  rdc_current(d);
  for (int i = 0; i < RDC_N; i++) {
    struct rdc *c = &d->rdc[i];
    if (rdc_match(c, plus, a, max)) {
      c->used = ++d->rdc_clock;
      return c;
    }
  }
  return NULL;
}

/* Keeps a copy of a reply encoded at (VCHANGES, GEN), if that is still
 * now; nothing when it does not fit or memory is short (the cache is only
 * an accelerator). */
static void rdc_store(struct nfsd *d, bool plus, const struct nfs3_readdirplus_args *a, size_t max,
                      uint64_t vchanges, uint64_t gen, const uint8_t *p, size_t len)
{
  if (d->rdc_off || len > RDC_BYTES_MAX || vchanges != view_changes(d->view) || gen != server_gen(d))
    return;
  rdc_current(d);
  struct rdc *slot = NULL; /* an empty slot, else the least recently used */
  for (int i = 0; i < RDC_N; i++)
    if (!slot || d->rdc[i].used < slot->used)
      slot = &d->rdc[i];
  rdc_clear(d, slot);
  while (d->rdc_bytes + len > RDC_BYTES_MAX) {
    struct rdc *old = NULL;
    for (int i = 0; i < RDC_N; i++)
      if (d->rdc[i].used && (!old || d->rdc[i].used < old->used))
        old = &d->rdc[i];
    if (!old)
      return;
    rdc_clear(d, old);
  }
  uint8_t *buf = malloc(len ? len : 1);
  if (!buf)
    return;
  memcpy(buf, p, len);
  slot->buf = buf;
  slot->len = len;
  slot->plus = plus;
  slot->cookie = a->cookie;
  slot->dircount = a->dircount;
  slot->max = max;
  slot->fh_len = a->dir.len;
  memcpy(slot->fh, a->dir.data, a->dir.len);
  slot->used = ++d->rdc_clock;
  d->rdc_bytes += len;
  d->rdc_stats.stored++;
}

static void rdc_free_all(struct nfsd *d)
{
  for (int i = 0; i < RDC_N; i++)
    rdc_clear(d, &d->rdc[i]);
}

void nfsd_rdc_enable(struct nfsd *d, bool on) { d->rdc_off = !on; }

void nfsd_rdc_stats(const struct nfsd *d, struct nfsd_rdc_stats *out)
{
  *out = d->rdc_stats;
  out->entries = 0;
  for (int i = 0; i < RDC_N; i++)
    out->entries += d->rdc[i].used != 0;
  out->bytes = d->rdc_bytes;
}

static enum rpcsrv_status readdir_common(struct rpcsrv_call *call, bool plus)
{
  struct nfsd *d = call->ctx;
  struct nfs3_readdirplus_args a;
  if (plus) {
    DEC(nfs3_dec_readdirplus_args, a);
  } else {
    struct nfs3_readdir_args b;
    DEC(nfs3_dec_readdir_args, b);
    a.dir = b.dir;
    a.cookie = b.cookie;
    memcpy(a.verf, b.verf, sizeof a.verf);
    a.dircount = b.count;
    a.maxcount = b.count;
  }
  struct cred c;
  cred_of(call, &c);
  struct obj dir;
  struct nfs3_post_attr dattr = {.present = false};
  static const uint8_t zero_verf[NFS3_COOKIEVERFSIZE] = {0};
  int r = obj_load(d, &a.dir, &dir);
  if (r == 0) {
    dattr = post_of(d, &dir);
    if (dir.st.type != VIEW_DIR)
      r = -ENOTDIR;
    else if (!may(&c, &dir.st, MAY_R))
      r = -EACCES;
    else if (a.cookie != 0 && memcmp(a.verf, zero_verf, sizeof zero_verf) != 0)
      r = 1; /* BAD_COOKIE */
  }
  if (r != 0) {
    nfs3_enc_readdir_fail(call->res, r == 1 ? NFS3_ERR_BAD_COOKIE : status_of(r), &dattr);
    return RPCSRV_OK;
  }
  uint32_t io = call->peer && !call->peer->stream ? UDP_IO_MAX : NFS3_IO_MAX;
  size_t max = a.maxcount > io ? io : a.maxcount;
  size_t start = call->res->len;
  struct rdc *hit = rdc_find(d, plus, &a, max);
  if (hit) {
    uint8_t *p = xdr_enc_reserve(call->res, hit->len);
    if (p)
      memcpy(p, hit->buf, hit->len);
    d->rdc_stats.hits++;
    return RPCSRV_OK;
  }
  if (!d->rdc_off)
    d->rdc_stats.misses++;
  uint64_t vchanges = view_changes(d->view), gen = server_gen(d);
  struct rd s = {.d = d, .res = call->res, .plus = plus, .max = max,
                 .dirmax = a.dircount ? a.dircount : max};
  s.used = nfs3_readdir_overhead(&dattr);
  nfs3_enc_readdir_begin(call->res, &dattr, zero_verf);
  int rc = 0;
  if (a.cookie < COOKIE_DOT)
    rc = rd_emit(&s, ".", &dir.node, COOKIE_DOT);
  if (rc == 0 && a.cookie < COOKIE_DOTDOT) {
    struct view_node p;
    if (parent_of(d, &dir.node, &p) == 0)
      rc = rd_emit(&s, "..", &p, COOKIE_DOTDOT);
  }
  if (rc == 0)
    rc = view_readdir(d->view, &dir.node, a.cookie <= COOKIE_DOTDOT ? 0 : a.cookie, rd_cb, &s);
  if (rc < 0 || (s.full && s.count == 0)) {
    xdr_enc_truncate(call->res, start);
    nfs3_enc_readdir_fail(call->res, rc < 0 ? status_of(rc) : NFS3_ERR_TOOSMALL, &dattr);
    return RPCSRV_OK;
  }
  nfs3_enc_readdir_end(call->res, !s.full);
  if (xdr_enc_error(call->res) == 0)
    rdc_store(d, plus, &a, max, vchanges, gen, call->res->buf + start, call->res->len - start);
  return RPCSRV_OK;
}

static enum rpcsrv_status proc_readdir(struct rpcsrv_call *call) { return readdir_common(call, false); }
static enum rpcsrv_status proc_readdirplus(struct rpcsrv_call *call) { return readdir_common(call, true); }

/* ---- file system information ---- */

static enum rpcsrv_status proc_fsstat(struct rpcsrv_call *call)
{
  struct nfsd *d = call->ctx;
  struct nfs3_fh_args a;
  DEC(nfs3_dec_fh_args, a);
  struct nfs3_fsstat_res res = {0};
  struct obj o;
  int r = obj_load(d, &a.fh, &o);
  struct statvfs sv;
  if (r == 0 && statvfs(fs_dir(d->fs), &sv) < 0)
    r = -errno;
  res.status = status_of(r);
  if (r == 0) {
    res.attr = post_of(d, &o);
    uint64_t bs = sv.f_frsize ? sv.f_frsize : sv.f_bsize;
    res.tbytes = (uint64_t)sv.f_blocks * bs;
    res.fbytes = (uint64_t)sv.f_bfree * bs;
    res.abytes = nfsd_readonly(d) ? 0 : (uint64_t)sv.f_bavail * bs;
    /* Objects cost log entries, not inodes: report the view's size. */
    res.tfiles = view_count(d->view) + (1u << 30);
    res.ffiles = res.afiles = 1u << 30;
    res.invarsec = 0;
  }
  nfs3_enc_fsstat_res(call->res, &res);
  return RPCSRV_OK;
}

static enum rpcsrv_status proc_fsinfo(struct rpcsrv_call *call)
{
  struct nfsd *d = call->ctx;
  struct nfs3_fh_args a;
  DEC(nfs3_dec_fh_args, a);
  struct nfs3_fsinfo_res res = {0};
  struct obj o;
  int r = obj_load(d, &a.fh, &o);
  res.status = status_of(r);
  if (r == 0) {
    res.attr = post_of(d, &o);
    uint32_t io = call->peer && !call->peer->stream ? UDP_IO_MAX : NFS3_IO_MAX;
    res.rtmax = res.rtpref = io;
    res.wtmax = res.wtpref = io;
    res.rtmult = res.wtmult = 4096;
    res.dtpref = 64 * 1024;
    res.maxfilesize = MAX_FILE_SIZE;
    res.time_delta.sec = 0;
    res.time_delta.nsec = 1;
    res.properties = NFS3_FSF_LINK | NFS3_FSF_SYMLINK | NFS3_FSF_HOMOGENEOUS | NFS3_FSF_CANSETTIME;
  }
  nfs3_enc_fsinfo_res(call->res, &res);
  return RPCSRV_OK;
}

static enum rpcsrv_status proc_pathconf(struct rpcsrv_call *call)
{
  struct nfsd *d = call->ctx;
  struct nfs3_fh_args a;
  DEC(nfs3_dec_fh_args, a);
  struct nfs3_pathconf_res res = {0};
  struct obj o;
  int r = obj_load(d, &a.fh, &o);
  res.status = status_of(r);
  if (r == 0) {
    res.attr = post_of(d, &o);
    res.linkmax = 32000;
    res.name_max = NFS3_NAME_MAX;
    res.no_trunc = true;
    res.chown_restricted = true;
    res.case_insensitive = false;
    res.case_preserving = true;
  }
  nfs3_enc_pathconf_res(call->res, &res);
  return RPCSRV_OK;
}

static enum rpcsrv_status proc_commit(struct rpcsrv_call *call)
{
  struct nfsd *d = call->ctx;
  struct nfs3_commit_args a;
  DEC(nfs3_dec_commit_args, a);
  struct nfs3_commit_res res = {0};
  struct obj o;
  int r = obj_load(d, &a.fh, &o);
  if (r == 0) {
    res.wcc.before = pre_of(&o);
    if (o.st.type == VIEW_DIR)
      r = -EISDIR;
    else if (o.st.type != VIEW_FILE)
      r = -EINVAL;
    else if (o.sf && bg_sealing(d, o.sf))
      r = 0; /* durable since its seal started, unwritten since */
    else if (o.sf && bg_worth(d, o.sf))
      r = bg_start(d, o.sf);
    else
      /* A seal that cannot happen (the key lost its grant) must not look
       * like success: the client keeps its data and reports the error. */
      r = obj_seal(d, &o, NULL);
  }
  res.status = status_of(r);
  if (res.wcc.before.present)
    res.wcc.after = post_now(d, &o);
  memcpy(res.verf, d->verf, sizeof res.verf);
  nfs3_enc_commit_res(call->res, &res);
  return RPCSRV_OK;
}

/* Non-idempotent procedures carry RPCSRV_NONIDEMPOTENT, so a duplicate
 * request cache can key on the table alone. */
static const struct rpcsrv_proc nfs3_procs[NFS3_NPROC] = {
    [NFS3_PROC_NULL] = {"NULL", proc_null, 0},
    [NFS3_PROC_GETATTR] = {"GETATTR", proc_getattr, 0},
    [NFS3_PROC_SETATTR] = {"SETATTR", proc_setattr, RPCSRV_NONIDEMPOTENT},
    [NFS3_PROC_LOOKUP] = {"LOOKUP", proc_lookup, 0},
    [NFS3_PROC_ACCESS] = {"ACCESS", proc_access, 0},
    [NFS3_PROC_READLINK] = {"READLINK", proc_readlink, 0},
    [NFS3_PROC_READ] = {"READ", proc_read, 0},
    [NFS3_PROC_WRITE] = {"WRITE", proc_write, 0},
    [NFS3_PROC_CREATE] = {"CREATE", proc_create, RPCSRV_NONIDEMPOTENT},
    [NFS3_PROC_MKDIR] = {"MKDIR", proc_mkdir, RPCSRV_NONIDEMPOTENT},
    [NFS3_PROC_SYMLINK] = {"SYMLINK", proc_symlink, RPCSRV_NONIDEMPOTENT},
    [NFS3_PROC_MKNOD] = {"MKNOD", proc_mknod, RPCSRV_NONIDEMPOTENT},
    [NFS3_PROC_REMOVE] = {"REMOVE", proc_remove, RPCSRV_NONIDEMPOTENT},
    [NFS3_PROC_RMDIR] = {"RMDIR", proc_rmdir, RPCSRV_NONIDEMPOTENT},
    [NFS3_PROC_RENAME] = {"RENAME", proc_rename, RPCSRV_NONIDEMPOTENT},
    [NFS3_PROC_LINK] = {"LINK", proc_link, RPCSRV_NONIDEMPOTENT},
    [NFS3_PROC_READDIR] = {"READDIR", proc_readdir, 0},
    [NFS3_PROC_READDIRPLUS] = {"READDIRPLUS", proc_readdirplus, 0},
    [NFS3_PROC_FSSTAT] = {"FSSTAT", proc_fsstat, 0},
    [NFS3_PROC_FSINFO] = {"FSINFO", proc_fsinfo, 0},
    [NFS3_PROC_PATHCONF] = {"PATHCONF", proc_pathconf, 0},
    [NFS3_PROC_COMMIT] = {"COMMIT", proc_commit, 0},
};

/* Without a filesystem there is nothing to serve but NULL. */
static const struct rpcsrv_proc nfs3_null_only[1] = {
    [NFS3_PROC_NULL] = {"NULL", proc_null, 0},
};

int nfsd_register(struct rpcsrv *rpc, void *ctx)
{
  if (!ctx)
    return rpcsrv_register(rpc, NFS3_PROGRAM, NFS3_VERSION, nfs3_null_only, 1, NULL);
  return rpcsrv_register(rpc, NFS3_PROGRAM, NFS3_VERSION, nfs3_procs, NFS3_NPROC, ctx);
}
