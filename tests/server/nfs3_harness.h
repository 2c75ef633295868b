/*
 * The NFSv3 server on a real filesystem, in-process: a fresh $BASEFS_HOME
 * with a key and a filesystem "t", nfsd + MOUNT + NFS on a libuv loop
 * thread at 127.0.0.1:<free port>, and a synchronous raw client on
 * libnfs's rpc_nfs3_*_async calls (exact statuses, handles, cookies).
 *
 * While the server runs, only its thread touches the filesystem; tests
 * check the store after srv_stop() (or through a restarted server).
 */
#ifndef BASEFS_TESTS_SERVER_NFS3_HARNESS_H
#define BASEFS_TESTS_SERVER_NFS3_HARNESS_H

#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-nfs.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "server/exports.h"
#include "server/mount.h"
#include "server/nfs3.h"
#include "server/rpc.h"
#include "server/tcp.h"
#include "store/error.h"
#include "store/fs.h"
#include "store/key.h"
#include "tests/test.h"

struct srv {
  char home[512];
  struct key *key;     /* the filesystem's root key */
  struct key *serving; /* the key nfsd signs with (NULL: none) */
  struct fs *fs;
  struct nfsd *nfsd;
  uv_loop_t loop;
  uv_async_t stop;
  uv_timer_t tick;
  bool ticking;
  pthread_t thread;
  struct rpcsrv *rpc;
  struct tcpsrv *tcp;
  struct mountd *mountd;
  int port;
  uint8_t root[64];
  uint32_t root_len;
  const char *exports; /* exports file text (NULL: none) */
  struct exports *ex;
  bool wake;             /* set before srv_start: background seals wake the loop */
  uv_async_t sealed;     /* ... through this (as serve does) */
  pthread_mutex_t mu;    /* wake_open; srv_on_loop's call */
  pthread_cond_t cv;
  bool wake_open;
  uv_async_t call;       /* srv_on_loop */
  void (*call_fn)(struct srv *s, void *arg);
  void *call_arg;
  bool call_done;
};

/* Runs FN(S, ARG) on the server's loop thread and waits for it: reads of
 * the server's state from a test then do not race with the loop. */
static inline void srv_on_loop(struct srv *s, void (*fn)(struct srv *s, void *arg), void *arg)
{
  pthread_mutex_lock(&s->mu);
  s->call_fn = fn;
  s->call_arg = arg;
  s->call_done = false;
  pthread_mutex_unlock(&s->mu);
  uv_async_send(&s->call);
  pthread_mutex_lock(&s->mu);
  while (!s->call_done)
    pthread_cond_wait(&s->cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
}

static inline void srv_on_call(uv_async_t *a)
{
  struct srv *s = a->data;
  pthread_mutex_lock(&s->mu);
  void (*fn)(struct srv *, void *) = s->call_fn;
  s->call_fn = NULL;
  pthread_mutex_unlock(&s->mu);
  if (!fn)
    return;
  fn(s, s->call_arg);
  pthread_mutex_lock(&s->mu);
  s->call_done = true;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* nfsd_set_wake's function: on a seal's worker thread. */
static inline void srv_wake(void *arg)
{
  struct srv *s = arg;
  pthread_mutex_lock(&s->mu);
  if (s->wake_open)
    uv_async_send(&s->sealed);
  pthread_mutex_unlock(&s->mu);
}

static inline void srv_on_sealed(uv_async_t *a)
{
  struct srv *s = a->data;
  nfsd_poll(s->nfsd);
}

static inline void srv_stopped(void *arg)
{
  struct srv *s = arg;
  uv_close((uv_handle_t *)&s->stop, NULL);
  uv_close((uv_handle_t *)&s->call, NULL);
  pthread_mutex_lock(&s->mu);
  bool wake = s->wake_open;
  s->wake_open = false;
  pthread_mutex_unlock(&s->mu);
  if (wake)
    uv_close((uv_handle_t *)&s->sealed, NULL);
  if (s->ticking)
    uv_close((uv_handle_t *)&s->tick, NULL);
}

static inline void srv_on_stop(uv_async_t *a)
{
  struct srv *s = a->data;
  tcpsrv_stop(s->tcp, srv_stopped, s);
}

static inline void srv_on_tick(uv_timer_t *t)
{
  struct srv *s = t->data;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  nfsd_tick(s->nfsd, (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
}

static inline void *srv_run(void *arg)
{
  struct srv *s = arg;
  uv_run(&s->loop, UV_RUN_DEFAULT);
  return NULL;
}

/* Creates the home, the root key and filesystem "t" (closed again). */
/* A fresh home in DIR/home with a filesystem "t" (not served yet). */
static inline void srv_init_in(struct srv *s, const char *dir)
{
  memset(s, 0, sizeof *s);
  snprintf(s->home, sizeof s->home, "%s/home", dir);
  CHECK_OK(key_generate(&s->key));
  CHECK_OK(fs_create(s->home, "t", s->key, NULL, 0, &s->fs));
  CHECK_OK(fs_close(s->fs));
  s->fs = NULL;
  s->serving = s->key;
}

static inline void srv_init(struct srv *s)
{
  srv_init_in(s, test_tmpdir());
}

/* Opens "t" and serves it (with the idle timer when TICK). */
static inline void srv_start(struct srv *s, bool tick)
{
  CHECK_OK(fs_open(s->home, "t", true, &s->fs));
  CHECK_OK(nfsd_new(s->fs, s->serving, NULL, NULL, &s->nfsd));
  CHECK_OK(nfsd_root_fh(s->nfsd, s->root, &s->root_len));
  CHECK_OK(uv_loop_init(&s->loop));
  CHECK_OK(rpcsrv_new(&s->rpc));
  struct mountd_config mc = {.export_path = "/basefs", .root_fh = nfsd_root_fh, .ctx = s->nfsd};
  CHECK_OK(mountd_new(&mc, &s->mountd));
  CHECK_OK(mountd_register(s->mountd, s->rpc));
  CHECK_OK(nfsd_register(s->rpc, s->nfsd));
  if (s->exports) {
    char err[256];
    CHECK_MSG(exports_parse(s->exports, strlen(s->exports), &s->ex, err, sizeof err) == 0, "%s",
              err);
    rpcsrv_set_exports(s->rpc, s->ex);
  }
  struct sockaddr_storage ss;
  CHECK_OK(tcpsrv_parse_addr("127.0.0.1:0", &ss));
  CHECK_OK(tcpsrv_start(&s->loop, s->rpc, (struct sockaddr *)&ss, &s->tcp));
  s->port = tcpsrv_port(s->tcp);
  CHECK_OK(uv_async_init(&s->loop, &s->stop, srv_on_stop));
  s->stop.data = s;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  CHECK_OK(uv_async_init(&s->loop, &s->call, srv_on_call));
  s->call.data = s;
  if (s->wake) {
    CHECK_OK(uv_async_init(&s->loop, &s->sealed, srv_on_sealed));
    s->sealed.data = s;
    s->wake_open = true;
    nfsd_set_wake(s->nfsd, srv_wake, s);
  }
  s->ticking = tick;
  if (tick) {
    CHECK_OK(uv_timer_init(&s->loop, &s->tick));
    s->tick.data = s;
    CHECK_OK(uv_timer_start(&s->tick, srv_on_tick, 100, 100));
  }
  CHECK_OK(pthread_create(&s->thread, NULL, srv_run, s));
}

/* Stops serving; with SEAL staged data is sealed (a clean shutdown),
 * without it the staging files stay as a crash would leave them. */
static inline void srv_stop(struct srv *s, bool seal)
{
  uv_async_send(&s->stop);
  pthread_join(s->thread, NULL);
  CHECK_OK(uv_loop_close(&s->loop));
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  if (seal)
    CHECK(nfsd_seal_all(s->nfsd) >= 0);
  nfsd_free(s->nfsd);
  mountd_free(s->mountd);
  rpcsrv_free(s->rpc);
  exports_free(s->ex);
  s->ex = NULL;
  CHECK_OK(fs_close(s->fs));
  s->fs = NULL;
  s->nfsd = NULL;
}

/* The stored content of PATH, NUL-terminated (server stopped), or NULL
 * when it cannot be read. */
static inline char *srv_cat(struct srv *s, const char *path, size_t *len)
{
  struct fs *fs;
  CHECK_OK(fs_open(s->home, "t", false, &fs));
  uint8_t *data = NULL;
  int r = fs_read(fs, path, &data, len);
  fs_close(fs);
  if (r < 0)
    return NULL;
  char *out = malloc(*len + 1);
  CHECK(out != NULL);
  if (*len)
    memcpy(out, data, *len);
  out[*len] = '\0';
  free(data);
  return out;
}

/* The stored content of PATH is exactly DATA (SIZE bytes; server stopped). */
static inline void check_stored(struct srv *s, const char *path, const void *data, size_t size)
{
  size_t got;
  char *back = srv_cat(s, path, &got);
  CHECK_MSG(back != NULL, "%s is not stored", path);
  CHECK_INT(got, ==, size);
  CHECK_MEM(back, data, size);
  free(back);
}

static inline void srv_free(struct srv *s)
{
  if (s->serving && s->serving != s->key)
    key_free(s->serving);
  key_free(s->key);
}

/* ---- the raw client ---- */

struct cl {
  struct rpc_context *rpc;
  bool done;
  int rpc_status;
};

/* What a reply said, copied out of libnfs's buffers. */
struct res {
  int status;              /* nfsstat3 */
  bool has_obj;            /* obj_attr */
  fattr3 obj;
  bool has_dir;            /* dir attributes / wcc after */
  fattr3 dir;
  bool has_pre;            /* wcc before */
  wcc_attr pre;
  bool has_pre2, has_dir2; /* RENAME's to-dir wcc */
  wcc_attr pre2;
  fattr3 dir2;
  uint8_t fh[64];
  uint32_t fh_len;
  uint32_t access;
  uint32_t count;
  uint32_t committed;
  bool eof;
  uint8_t verf[8];
  uint8_t *data; /* READ data / READLINK target (NUL-terminated), malloc'd */
  size_t len;
  /* READDIR(PLUS) */
  int n;
  char names[256][80];
  uint64_t cookies[256];
  uint64_t fileids[256];
  bool has_fhs[256];
  uint8_t fhs[256][64];
  uint32_t fh_lens[256];
  /* FSINFO, FSSTAT, PATHCONF */
  uint32_t rtmax, wtmax, name_max, linkmax;
  bool case_preserving, no_trunc;
  uint64_t tbytes, maxfilesize;
};

static inline void res_free(struct res *r)
{
  free(r->data);
  r->data = NULL;
}

static inline void cl_connected(struct rpc_context *rpc, int status, void *data, void *priv)
{
  (void)rpc;
  (void)data;
  struct cl *c = priv;
  c->done = true;
  c->rpc_status = status;
}

static inline void cl_wait(struct cl *c)
{
  time_t start = time(NULL);
  while (!c->done) {
    struct pollfd pfd = {.fd = rpc_get_fd(c->rpc), .events = (short)rpc_which_events(c->rpc)};
    int k = poll(&pfd, 1, 100);
    CHECK(k >= 0);
    CHECK_OK(rpc_service(c->rpc, pfd.revents));
    CHECK_MSG(time(NULL) - start < 20, "no reply within 20 s");
  }
}

/* A client with AUTH_SYS uid/gid (plus supplementary gids). */
static inline void cl_open_as(struct cl *c, int port, uint32_t uid, uint32_t gid, uint32_t ngids,
                              uint32_t *gids)
{
  memset(c, 0, sizeof *c);
  c->rpc = rpc_init_context();
  CHECK(c->rpc != NULL);
  rpc_set_auth(c->rpc, libnfs_authunix_create("test", uid, gid, ngids, gids));
  CHECK_OK(rpc_connect_port_async(c->rpc, "127.0.0.1", port, NFS_PROGRAM, NFS_V3, cl_connected, c));
  cl_wait(c);
  CHECK_INT(c->rpc_status, ==, RPC_STATUS_SUCCESS);
}

static inline void cl_open(struct cl *c, int port) { cl_open_as(c, port, 0, 0, 0, NULL); }

static inline void cl_close(struct cl *c) { rpc_destroy_context(c->rpc); }

/* A handle argument over bytes (the bytes must outlive the call). */
static inline nfs_fh3 fh3(const uint8_t *fh, uint32_t len)
{
  nfs_fh3 h;
  h.data.data_len = len;
  h.data.data_val = (char *)fh;
  return h;
}

static inline void copy_post(const post_op_attr *p, bool *has, fattr3 *out)
{
  *has = p->attributes_follow;
  if (*has)
    memcpy(out, &p->post_op_attr_u.attributes, sizeof *out);
}

static inline void copy_wcc(const wcc_data *w, bool *has_pre, wcc_attr *pre, bool *has_post,
                            fattr3 *post)
{
  *has_pre = w->before.attributes_follow;
  if (*has_pre)
    memcpy(pre, &w->before.pre_op_attr_u.attributes, sizeof *pre);
  copy_post(&w->after, has_post, post);
}

static inline void copy_fh(const nfs_fh3 *h, uint8_t *out, uint32_t *len)
{
  CHECK(h->data.data_len <= 64);
  *len = h->data.data_len;
  memcpy(out, h->data.data_val, *len);
}

struct pending {
  struct cl *c;
  struct res *r;
  void (*copy)(void *data, struct res *r);
};

static inline void cl_reply(struct rpc_context *rpc, int status, void *data, void *priv)
{
  (void)rpc;
  struct pending *p = priv;
  p->c->done = true;
  p->c->rpc_status = status;
  if (status != RPC_STATUS_SUCCESS)
    return;
  memcpy(&p->r->status, data, sizeof p->r->status); /* every *3res starts with it */
  p->copy(data, p->r);
}

/* Runs one call: ISSUE starts it with cl_reply; COPY fills R from the result. */
#define CL_CALL(c, r, fn, args, copyfn)                                       \
  do {                                                                        \
    memset((r), 0, sizeof *(r));                                              \
    struct pending p_ = {(c), (r), copyfn};                                   \
    (c)->done = false;                                                        \
    CHECK_OK(fn((c)->rpc, cl_reply, (args), &p_));                            \
    cl_wait(c);                                                               \
    CHECK_INT((c)->rpc_status, ==, RPC_STATUS_SUCCESS);                       \
  } while (0)

static inline void cp_getattr(void *d, struct res *r)
{
  GETATTR3res *x = d;
  if (x->status == NFS3_OK) {
    r->has_obj = true;
    memcpy(&r->obj, &x->GETATTR3res_u.resok.obj_attributes, sizeof r->obj);
  }
}

static inline void cp_lookup(void *d, struct res *r)
{
  LOOKUP3res *x = d;
  if (x->status == NFS3_OK) {
    copy_fh(&x->LOOKUP3res_u.resok.object, r->fh, &r->fh_len);
    copy_post(&x->LOOKUP3res_u.resok.obj_attributes, &r->has_obj, &r->obj);
    copy_post(&x->LOOKUP3res_u.resok.dir_attributes, &r->has_dir, &r->dir);
  } else {
    copy_post(&x->LOOKUP3res_u.resfail.dir_attributes, &r->has_dir, &r->dir);
  }
}

static inline void cp_access(void *d, struct res *r)
{
  ACCESS3res *x = d;
  if (x->status == NFS3_OK) {
    copy_post(&x->ACCESS3res_u.resok.obj_attributes, &r->has_obj, &r->obj);
    r->access = x->ACCESS3res_u.resok.access;
  } else {
    copy_post(&x->ACCESS3res_u.resfail.obj_attributes, &r->has_obj, &r->obj);
  }
}

static inline void cp_readlink(void *d, struct res *r)
{
  READLINK3res *x = d;
  if (x->status == NFS3_OK) {
    const char *t = x->READLINK3res_u.resok.data;
    r->len = strlen(t);
    r->data = (uint8_t *)strdup(t);
  }
}

static inline void cp_read(void *d, struct res *r)
{
  READ3res *x = d;
  if (x->status == NFS3_OK) {
    READ3resok *ok = &x->READ3res_u.resok;
    copy_post(&ok->file_attributes, &r->has_obj, &r->obj);
    r->count = ok->count;
    r->eof = ok->eof;
    r->len = ok->data.data_len;
    r->data = malloc(r->len + 1);
    memcpy(r->data, ok->data.data_val, r->len);
  } else {
    copy_post(&x->READ3res_u.resfail.file_attributes, &r->has_obj, &r->obj);
  }
}

static inline void cp_write(void *d, struct res *r)
{
  WRITE3res *x = d;
  /* resok and resfail both start with the wcc_data. */
  copy_wcc(&x->WRITE3res_u.resok.file_wcc, &r->has_pre, &r->pre, &r->has_obj, &r->obj);
  if (x->status == NFS3_OK) {
    r->count = x->WRITE3res_u.resok.count;
    r->committed = x->WRITE3res_u.resok.committed;
    memcpy(r->verf, x->WRITE3res_u.resok.verf, 8);
  }
}

static inline void cp_commit(void *d, struct res *r)
{
  COMMIT3res *x = d;
  copy_wcc(&x->COMMIT3res_u.resok.file_wcc, &r->has_pre, &r->pre, &r->has_obj, &r->obj);
  if (x->status == NFS3_OK)
    memcpy(r->verf, x->COMMIT3res_u.resok.verf, 8);
}

static inline void cp_wcc(void *d, struct res *r)
{
  /* SETATTR, REMOVE, RMDIR: status then wcc_data on both arms. */
  SETATTR3res *x = d;
  copy_wcc(&x->SETATTR3res_u.resok.obj_wcc, &r->has_pre, &r->pre, &r->has_dir, &r->dir);
  if (r->has_dir) {
    r->has_obj = true;
    r->obj = r->dir;
  }
}

/* CREATE, MKDIR, SYMLINK, MKNOD share one shape. */
static inline void cp_create(void *d, struct res *r)
{
  CREATE3res *x = d;
  if (x->status == NFS3_OK) {
    CREATE3resok *ok = &x->CREATE3res_u.resok;
    if (ok->obj.handle_follows)
      copy_fh(&ok->obj.post_op_fh3_u.handle, r->fh, &r->fh_len);
    copy_post(&ok->obj_attributes, &r->has_obj, &r->obj);
    copy_wcc(&ok->dir_wcc, &r->has_pre, &r->pre, &r->has_dir, &r->dir);
  } else {
    copy_wcc(&x->CREATE3res_u.resfail.dir_wcc, &r->has_pre, &r->pre, &r->has_dir, &r->dir);
  }
}

static inline void cp_rename(void *d, struct res *r)
{
  RENAME3res *x = d;
  copy_wcc(&x->RENAME3res_u.resok.fromdir_wcc, &r->has_pre, &r->pre, &r->has_dir, &r->dir);
  copy_wcc(&x->RENAME3res_u.resok.todir_wcc, &r->has_pre2, &r->pre2, &r->has_dir2, &r->dir2);
}

static inline void cp_link(void *d, struct res *r)
{
  LINK3res *x = d;
  copy_post(&x->LINK3res_u.resok.file_attributes, &r->has_obj, &r->obj);
  copy_wcc(&x->LINK3res_u.resok.linkdir_wcc, &r->has_pre, &r->pre, &r->has_dir, &r->dir);
}

static inline void cp_readdir(void *d, struct res *r)
{
  READDIR3res *x = d;
  if (x->status != NFS3_OK)
    return;
  READDIR3resok *ok = &x->READDIR3res_u.resok;
  copy_post(&ok->dir_attributes, &r->has_dir, &r->dir);
  memcpy(r->verf, ok->cookieverf, 8);
  r->eof = ok->reply.eof;
  /* libnfs hands out list nodes at 4-byte alignment: copy each out. */
  for (entry3 *p = ok->reply.entries; p;) {
    entry3 node;
    memcpy(&node, p, sizeof node);
    entry3 *e = &node;
    p = node.nextentry;
    CHECK(r->n < 256);
    snprintf(r->names[r->n], sizeof r->names[0], "%s", e->name);
    r->cookies[r->n] = e->cookie;
    r->fileids[r->n] = e->fileid;
    r->n++;
  }
}

static inline void cp_readdirplus(void *d, struct res *r)
{
  READDIRPLUS3res *x = d;
  if (x->status != NFS3_OK)
    return;
  READDIRPLUS3resok *ok = &x->READDIRPLUS3res_u.resok;
  copy_post(&ok->dir_attributes, &r->has_dir, &r->dir);
  memcpy(r->verf, ok->cookieverf, 8);
  r->eof = ok->reply.eof;
  for (entryplus3 *p = ok->reply.entries; p;) {
    entryplus3 node;
    memcpy(&node, p, sizeof node);
    entryplus3 *e = &node;
    p = node.nextentry;
    CHECK(r->n < 256);
    snprintf(r->names[r->n], sizeof r->names[0], "%s", e->name);
    r->cookies[r->n] = e->cookie;
    r->fileids[r->n] = e->fileid;
    r->has_fhs[r->n] = e->name_handle.handle_follows;
    if (e->name_handle.handle_follows)
      copy_fh(&e->name_handle.post_op_fh3_u.handle, r->fhs[r->n], &r->fh_lens[r->n]);
    r->n++;
  }
}

static inline void cp_fsinfo(void *d, struct res *r)
{
  FSINFO3res *x = d;
  if (x->status == NFS3_OK) {
    FSINFO3resok *ok = &x->FSINFO3res_u.resok;
    copy_post(&ok->obj_attributes, &r->has_obj, &r->obj);
    r->rtmax = ok->rtmax;
    r->wtmax = ok->wtmax;
    r->maxfilesize = ok->maxfilesize;
  }
}

static inline void cp_fsstat(void *d, struct res *r)
{
  FSSTAT3res *x = d;
  if (x->status == NFS3_OK) {
    copy_post(&x->FSSTAT3res_u.resok.obj_attributes, &r->has_obj, &r->obj);
    r->tbytes = x->FSSTAT3res_u.resok.tbytes;
  }
}

static inline void cp_pathconf(void *d, struct res *r)
{
  PATHCONF3res *x = d;
  if (x->status == NFS3_OK) {
    PATHCONF3resok *ok = &x->PATHCONF3res_u.resok;
    copy_post(&ok->obj_attributes, &r->has_obj, &r->obj);
    r->name_max = ok->name_max;
    r->linkmax = ok->linkmax;
    r->case_preserving = ok->case_preserving;
    r->no_trunc = ok->no_trunc;
  }
}

/* ---- one-line calls ---- */

static inline void c3_getattr(struct cl *c, const uint8_t *fh, uint32_t len, struct res *r)
{
  GETATTR3args a = {.object = fh3(fh, len)};
  CL_CALL(c, r, rpc_nfs3_getattr_async, &a, cp_getattr);
}

static inline void c3_lookup(struct cl *c, const uint8_t *dir, uint32_t len, const char *name,
                              struct res *r)
{
  LOOKUP3args a = {.what = {.dir = fh3(dir, len), .name = (char *)name}};
  CL_CALL(c, r, rpc_nfs3_lookup_async, &a, cp_lookup);
}

static inline void c3_access(struct cl *c, const uint8_t *fh, uint32_t len, uint32_t want,
                              struct res *r)
{
  ACCESS3args a = {.object = fh3(fh, len), .access = want};
  CL_CALL(c, r, rpc_nfs3_access_async, &a, cp_access);
}

static inline void c3_readlink(struct cl *c, const uint8_t *fh, uint32_t len, struct res *r)
{
  READLINK3args a = {.symlink = fh3(fh, len)};
  CL_CALL(c, r, rpc_nfs3_readlink_async, &a, cp_readlink);
}

static inline void c3_read(struct cl *c, const uint8_t *fh, uint32_t len, uint64_t off,
                            uint32_t count, struct res *r)
{
  READ3args a = {.file = fh3(fh, len), .offset = off, .count = count};
  CL_CALL(c, r, rpc_nfs3_read_async, &a, cp_read);
}

static inline void c3_write(struct cl *c, const uint8_t *fh, uint32_t len, uint64_t off,
                             const void *data, uint32_t count, int stable, struct res *r)
{
  WRITE3args a = {.file = fh3(fh, len), .offset = off, .count = count, .stable = stable};
  a.data.data_len = count;
  a.data.data_val = (char *)data;
  CL_CALL(c, r, rpc_nfs3_write_async, &a, cp_write);
}

static inline void c3_commit(struct cl *c, const uint8_t *fh, uint32_t len, struct res *r)
{
  COMMIT3args a = {.file = fh3(fh, len)};
  CL_CALL(c, r, rpc_nfs3_commit_async, &a, cp_commit);
}

static inline void c3_setattr(struct cl *c, const uint8_t *fh, uint32_t len, const sattr3 *sa,
                               const nfstime3 *guard, struct res *r)
{
  SETATTR3args a = {.object = fh3(fh, len), .new_attributes = *sa};
  if (guard) {
    a.guard.check = 1;
    a.guard.sattrguard3_u.obj_ctime = *guard;
  }
  CL_CALL(c, r, rpc_nfs3_setattr_async, &a, cp_wcc);
}

static inline void c3_create(struct cl *c, const uint8_t *dir, uint32_t len, const char *name,
                              int mode, const sattr3 *sa, const char *verf, struct res *r)
{
  CREATE3args a = {.where = {.dir = fh3(dir, len), .name = (char *)name}};
  a.how.mode = mode;
  if (mode == EXCLUSIVE)
    memcpy(a.how.createhow3_u.verf, verf, 8);
  else if (sa)
    a.how.createhow3_u.obj_attributes = *sa;
  CL_CALL(c, r, rpc_nfs3_create_async, &a, cp_create);
}

/* Creates file NAME in DIR with mode 0644 (the test fails otherwise); its
 * handle goes to FH. */
static inline void mkfile(struct cl *c, const uint8_t *dir, uint32_t dlen, const char *name, uint8_t *fh,
                          uint32_t *len)
{
  sattr3 sa;
  memset(&sa, 0, sizeof sa);
  sa.mode.set_it = 1;
  sa.mode.set_mode3_u.mode = 0644;
  struct res r;
  c3_create(c, dir, dlen, name, UNCHECKED, &sa, NULL, &r);
  CHECK_MSG(r.status == NFS3_OK, "create %s: %d", name, r.status);
  memcpy(fh, r.fh, r.fh_len);
  *len = r.fh_len;
}

/* Writes N bytes of DATA at OFF, UNSTABLE, 1 MiB per WRITE. */
static inline void write_all(struct cl *c, const uint8_t *fh, uint32_t len, uint64_t off,
                             const uint8_t *data, size_t n)
{
  struct res r;
  for (size_t done = 0; done < n;) {
    uint32_t k = n - done < (1u << 20) ? (uint32_t)(n - done) : 1u << 20;
    c3_write(c, fh, len, off + done, data + done, k, UNSTABLE, &r);
    CHECK_INT(r.status, ==, NFS3_OK);
    done += k;
  }
}

static inline void c3_mkdir(struct cl *c, const uint8_t *dir, uint32_t len, const char *name,
                             struct res *r)
{
  MKDIR3args a = {.where = {.dir = fh3(dir, len), .name = (char *)name}};
  a.attributes.mode.set_it = 1;
  a.attributes.mode.set_mode3_u.mode = 0755;
  CL_CALL(c, r, rpc_nfs3_mkdir_async, &a, cp_create);
}

static inline void c3_symlink(struct cl *c, const uint8_t *dir, uint32_t len, const char *name,
                               const char *target, struct res *r)
{
  SYMLINK3args a = {.where = {.dir = fh3(dir, len), .name = (char *)name}};
  a.symlink.symlink_data = (char *)target;
  CL_CALL(c, r, rpc_nfs3_symlink_async, &a, cp_create);
}

static inline void c3_mknod(struct cl *c, const uint8_t *dir, uint32_t len, const char *name,
                             int type, struct res *r)
{
  MKNOD3args a = {.where = {.dir = fh3(dir, len), .name = (char *)name}};
  a.what.type = type;
  CL_CALL(c, r, rpc_nfs3_mknod_async, &a, cp_create);
}

static inline void c3_remove(struct cl *c, const uint8_t *dir, uint32_t len, const char *name,
                              struct res *r)
{
  REMOVE3args a = {.object = {.dir = fh3(dir, len), .name = (char *)name}};
  CL_CALL(c, r, rpc_nfs3_remove_async, &a, cp_wcc);
}

static inline void c3_rmdir(struct cl *c, const uint8_t *dir, uint32_t len, const char *name,
                             struct res *r)
{
  RMDIR3args a = {.object = {.dir = fh3(dir, len), .name = (char *)name}};
  CL_CALL(c, r, rpc_nfs3_rmdir_async, &a, cp_wcc);
}

static inline void c3_rename(struct cl *c, const uint8_t *from, uint32_t flen, const char *fname,
                              const uint8_t *to, uint32_t tlen, const char *tname, struct res *r)
{
  RENAME3args a = {.from = {.dir = fh3(from, flen), .name = (char *)fname},
                   .to = {.dir = fh3(to, tlen), .name = (char *)tname}};
  CL_CALL(c, r, rpc_nfs3_rename_async, &a, cp_rename);
}

static inline void c3_link(struct cl *c, const uint8_t *fh, uint32_t len, const uint8_t *dir,
                            uint32_t dlen, const char *name, struct res *r)
{
  LINK3args a = {.file = fh3(fh, len), .link = {.dir = fh3(dir, dlen), .name = (char *)name}};
  CL_CALL(c, r, rpc_nfs3_link_async, &a, cp_link);
}

static inline void c3_readdir(struct cl *c, const uint8_t *dir, uint32_t len, uint64_t cookie,
                               const uint8_t *verf, uint32_t count, struct res *r)
{
  READDIR3args a = {.dir = fh3(dir, len), .cookie = cookie, .count = count};
  if (verf)
    memcpy(a.cookieverf, verf, 8);
  CL_CALL(c, r, rpc_nfs3_readdir_async, &a, cp_readdir);
}

static inline void c3_readdirplus(struct cl *c, const uint8_t *dir, uint32_t len, uint64_t cookie,
                                   uint32_t dircount, uint32_t maxcount, struct res *r)
{
  READDIRPLUS3args a = {.dir = fh3(dir, len), .cookie = cookie, .dircount = dircount,
                        .maxcount = maxcount};
  CL_CALL(c, r, rpc_nfs3_readdirplus_async, &a, cp_readdirplus);
}

static inline void c3_fsinfo(struct cl *c, const uint8_t *fh, uint32_t len, struct res *r)
{
  FSINFO3args a = {.fsroot = fh3(fh, len)};
  CL_CALL(c, r, rpc_nfs3_fsinfo_async, &a, cp_fsinfo);
}

static inline void c3_fsstat(struct cl *c, const uint8_t *fh, uint32_t len, struct res *r)
{
  FSSTAT3args a = {.fsroot = fh3(fh, len)};
  CL_CALL(c, r, rpc_nfs3_fsstat_async, &a, cp_fsstat);
}

static inline void c3_pathconf(struct cl *c, const uint8_t *fh, uint32_t len, struct res *r)
{
  PATHCONF3args a = {.object = fh3(fh, len)};
  CL_CALL(c, r, rpc_nfs3_pathconf_async, &a, cp_pathconf);
}

/* Handle of PATH's last name under the root ("/a/b"), via LOOKUPs. */
static inline void c3_walk(struct cl *c, struct srv *s, const char *path, uint8_t *fh,
                            uint32_t *len)
{
  memcpy(fh, s->root, s->root_len);
  *len = s->root_len;
  char buf[256];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *save = NULL, *p = strtok_r(buf, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
    struct res r;
    c3_lookup(c, fh, *len, p, &r);
    CHECK_MSG(r.status == NFS3_OK, "lookup %s: %d", p, r.status);
    memcpy(fh, r.fh, r.fh_len);
    *len = r.fh_len;
  }
}

#endif
