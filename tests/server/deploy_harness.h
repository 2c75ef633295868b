/*
 * The deployment pieces around the NFSv3 server, in-process: a real
 * filesystem (nfs3_harness.h's srv_init) served over TCP AND UDP on
 * 127.0.0.1 with an optional duplicate-request cache and exports, plus raw
 * UDP/TCP clients that build NFS calls by hand (exact xids, so a test can
 * retransmit).
 */
#ifndef BASEFS_TESTS_SERVER_DEPLOY_HARNESS_H
#define BASEFS_TESTS_SERVER_DEPLOY_HARNESS_H

#include "server/drc.h"
#include "server/exports.h"
#include "server/udp.h"
#include "tests/server/harness.h"
#include "tests/server/nfs3_harness.h"

struct dep {
  struct srv s;
  struct udpsrv *udp;
  int udp_port;
  struct drc *drc;
  struct exports *ex;
  int pending;
  pthread_mutex_t log_lock;
  char log[8192];
  size_t log_len;
};

static inline void dep_log(void *ctx, const char *line)
{
  struct dep *d = ctx;
  pthread_mutex_lock(&d->log_lock);
  size_t n = strlen(line);
  if (d->log_len + n + 2 < sizeof d->log) {
    memcpy(d->log + d->log_len, line, n);
    d->log_len += n;
    d->log[d->log_len++] = '\n';
    d->log[d->log_len] = 0;
  }
  pthread_mutex_unlock(&d->log_lock);
}

/* How many logged lines contain s. */
static inline int dep_logged(struct dep *d, const char *s)
{
  pthread_mutex_lock(&d->log_lock);
  int n = 0;
  for (const char *p = d->log; (p = strstr(p, s)) != NULL; p += strlen(s))
    n++;
  pthread_mutex_unlock(&d->log_lock);
  return n;
}

static inline void dep_stopped(void *arg)
{
  struct dep *d = arg;
  if (--d->pending > 0)
    return;
  uv_close((uv_handle_t *)&d->s.stop, NULL);
}

static inline void dep_on_stop(uv_async_t *a)
{
  struct dep *d = a->data;
  d->pending = 2;
  tcpsrv_stop(d->s.tcp, dep_stopped, d);
  udpsrv_stop(d->udp, dep_stopped, d);
}

/* Serves filesystem "t" (srv_init first) on TCP and UDP; with DRC a
 * duplicate-request cache; EXPORTS (text, may be NULL) as the exports. */
static inline void dep_start(struct dep *d, bool drc, const char *exports)
{
  struct srv *s = &d->s;
  pthread_mutex_init(&d->log_lock, NULL);
  CHECK_OK(fs_open(s->home, "t", true, &s->fs));
  CHECK_OK(nfsd_new(s->fs, s->serving, NULL, NULL, &s->nfsd));
  CHECK_OK(nfsd_root_fh(s->nfsd, s->root, &s->root_len));
  CHECK_OK(uv_loop_init(&s->loop));
  CHECK_OK(rpcsrv_new(&s->rpc));
  rpcsrv_set_log(s->rpc, dep_log, d);
  struct mountd_config mc = {.export_path = "/basefs", .root_fh = nfsd_root_fh, .ctx = s->nfsd};
  CHECK_OK(mountd_new(&mc, &s->mountd));
  CHECK_OK(mountd_register(s->mountd, s->rpc));
  CHECK_OK(nfsd_register(s->rpc, s->nfsd));
  if (drc) {
    CHECK_OK(drc_new(0, 0, &d->drc));
    rpcsrv_set_drc(s->rpc, d->drc);
  }
  if (exports) {
    char err[256];
    CHECK_MSG(exports_parse(exports, strlen(exports), &d->ex, err, sizeof err) == 0, "%s", err);
    rpcsrv_set_exports(s->rpc, d->ex);
  }
  struct sockaddr_storage ss;
  CHECK_OK(tcpsrv_parse_addr("127.0.0.1:0", &ss));
  CHECK_OK(tcpsrv_start(&s->loop, s->rpc, (struct sockaddr *)&ss, &s->tcp));
  s->port = tcpsrv_port(s->tcp);
  CHECK_OK(udpsrv_start(&s->loop, s->rpc, (struct sockaddr *)&ss, &d->udp));
  d->udp_port = udpsrv_port(d->udp);
  CHECK(d->udp_port > 0);
  CHECK_OK(uv_async_init(&s->loop, &s->stop, dep_on_stop));
  s->stop.data = d;
  CHECK_OK(pthread_create(&s->thread, NULL, srv_run, s));
}

static inline void dep_stop(struct dep *d)
{
  struct srv *s = &d->s;
  uv_async_send(&s->stop);
  pthread_join(s->thread, NULL);
  CHECK_OK(uv_loop_close(&s->loop));
  CHECK(nfsd_seal_all(s->nfsd) >= 0);
  nfsd_free(s->nfsd);
  mountd_free(s->mountd);
  rpcsrv_free(s->rpc);
  CHECK_OK(fs_close(s->fs));
  s->fs = NULL;
  s->nfsd = NULL;
  drc_free(d->drc);
  d->drc = NULL;
  exports_free(d->ex);
  d->ex = NULL;
}

/* ---- raw clients ---- */

static const struct oncrpc_auth_sys dep_root_cred = {.machine = "t", .machine_len = 1};

static inline int udp_client(void)
{
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  CHECK(fd >= 0);
  return fd;
}

static inline void udp_send_to(int fd, int port, const void *p, size_t n)
{
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ssize_t k = sendto(fd, p, n, 0, (struct sockaddr *)&sin, sizeof sin);
  CHECK_MSG(k == (ssize_t)n, "sendto: %s", strerror(errno));
}

/* One datagram (malloc'd, *len set) within ms milliseconds, or NULL. */
static inline uint8_t *udp_recv(int fd, size_t *len, int ms)
{
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  if (poll(&pfd, 1, ms) <= 0)
    return NULL;
  uint8_t *b = malloc(70000);
  CHECK(b != NULL);
  ssize_t k = recv(fd, b, 70000, 0);
  if (k < 0) {
    free(b);
    return NULL;
  }
  *len = (size_t)k;
  return b;
}

/* Encodes a complete call into e (the caller frees it). */
static inline void call_encode(struct xdr_enc *e, uint32_t xid, uint32_t prog, uint32_t vers,
                               uint32_t proc, const struct oncrpc_auth_sys *cred,
                               const struct xdr_enc *args)
{
  call_build(e, xid, prog, vers, proc, cred, args ? args->buf : NULL, args ? args->len : 0);
}

/* A reply decoded: header in *r, results at *res (inside the returned
 * buffer, which the caller frees). */
static inline uint8_t *reply_decode(uint8_t *rec, size_t len, uint32_t xid,
                                    struct oncrpc_reply *r, struct xdr_dec *res)
{
  CHECK(rec != NULL);
  xdr_dec_init(res, rec, len);
  CHECK_OK(oncrpc_dec_reply(res, r));
  CHECK_INT(r->xid, ==, xid);
  return rec;
}

/* diropargs3: the root directory handle and NAME. */
static inline void args_dirop(struct xdr_enc *a, struct dep *d, const char *name)
{
  xdr_enc_bytes(a, d->s.root, d->s.root_len);
  xdr_enc_str(a, name);
}

/* CREATE3args: GUARDED, mode 0644. */
static inline void args_create(struct xdr_enc *a, struct dep *d, const char *name)
{
  xdr_enc_init(a, 4096);
  args_dirop(a, d, name);
  xdr_enc_u32(a, 1); /* GUARDED */
  xdr_enc_bool(a, true);
  xdr_enc_u32(a, 0644); /* mode */
  for (int i = 0; i < 5; i++)
    xdr_enc_bool(a, false); /* uid gid size atime mtime */
}

static inline void args_remove(struct xdr_enc *a, struct dep *d, const char *name)
{
  xdr_enc_init(a, 4096);
  args_dirop(a, d, name);
}

/* The nfsstat3 at the front of results. */
static inline uint32_t res_status(struct xdr_dec *res)
{
  uint32_t st = 99999;
  CHECK_OK(xdr_dec_u32(res, &st));
  return st;
}

#endif
