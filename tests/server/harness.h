/*
 * An RPC server on a libuv loop in a thread of the test process, plus raw
 * socket and libnfs helpers to talk to it. Included by the tests of this
 * directory (each test runs in its own forked child, so a test starts and
 * stops its own server).
 */
#ifndef BASEFS_TESTS_SERVER_HARNESS_H
#define BASEFS_TESTS_SERVER_HARNESS_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "server/mount.h"
#include "server/nfs3.h"
#include "server/rpc.h"
#include "server/tcp.h"
#include "tests/test.h"
#include "xdr/oncrpc.h"

struct harness {
  uv_loop_t loop;
  uv_async_t stop;
  pthread_t thread;
  struct rpcsrv *rpc;
  struct tcpsrv *tcp;
  struct mountd *mountd;
  int port;
  pthread_mutex_t log_lock;
  char log[16384]; /* the server's log lines, newline-separated */
  size_t log_len;
};

static inline void harness_log(void *ctx, const char *line)
{
  struct harness *h = ctx;
  pthread_mutex_lock(&h->log_lock);
  size_t n = strlen(line);
  if (h->log_len + n + 2 < sizeof h->log) {
    memcpy(h->log + h->log_len, line, n);
    h->log_len += n;
    h->log[h->log_len++] = '\n';
    h->log[h->log_len] = 0;
  }
  pthread_mutex_unlock(&h->log_lock);
}

/* True when a logged line contains s. */
static inline bool harness_logged(struct harness *h, const char *s)
{
  pthread_mutex_lock(&h->log_lock);
  bool found = strstr(h->log, s) != NULL;
  pthread_mutex_unlock(&h->log_lock);
  return found;
}

/* The root handle MOUNT hands out in these tests. */
static const uint8_t harness_root_fh[12] = {'b', 'f', 's', 1, 2, 3, 4, 5, 6, 7, 8, 9};

static inline int harness_root(void *ctx, uint8_t fh[64], uint32_t *len)
{
  (void)ctx;
  memcpy(fh, harness_root_fh, sizeof harness_root_fh);
  *len = sizeof harness_root_fh;
  return 0;
}

static inline void harness_stopped(void *arg)
{
  struct harness *h = arg;
  uv_close((uv_handle_t *)&h->stop, NULL);
}

static inline void harness_on_stop(uv_async_t *a)
{
  struct harness *h = a->data;
  tcpsrv_stop(h->tcp, harness_stopped, h);
}

static inline void *harness_run(void *arg)
{
  struct harness *h = arg;
  uv_run(&h->loop, UV_RUN_DEFAULT);
  return NULL;
}

/* Starts MOUNT + NFS on 127.0.0.1:<free port>; more programs may be
 * registered on h->rpc by `extra` before the loop starts. */
static inline void harness_start_with(struct harness *h, void (*extra)(struct rpcsrv *rpc))
{
  memset(h, 0, sizeof *h);
  CHECK_OK(uv_loop_init(&h->loop));
  CHECK_OK(rpcsrv_new(&h->rpc));
  pthread_mutex_init(&h->log_lock, NULL);
  rpcsrv_set_log(h->rpc, harness_log, h);
  static const char *const groups[] = {"127.0.0.1/32", "::1/128", NULL};
  struct mountd_config mc = {.export_path = "/basefs", .groups = groups, .root_fh = harness_root};
  CHECK_OK(mountd_new(&mc, &h->mountd));
  CHECK_OK(mountd_register(h->mountd, h->rpc));
  CHECK_OK(nfsd_register(h->rpc, NULL));
  if (extra)
    extra(h->rpc);
  struct sockaddr_storage ss;
  CHECK_OK(tcpsrv_parse_addr("127.0.0.1:0", &ss));
  CHECK_OK(tcpsrv_start(&h->loop, h->rpc, (struct sockaddr *)&ss, &h->tcp));
  h->port = tcpsrv_port(h->tcp);
  CHECK(h->port > 0);
  CHECK_OK(uv_async_init(&h->loop, &h->stop, harness_on_stop));
  h->stop.data = h;
  CHECK_OK(pthread_create(&h->thread, NULL, harness_run, h));
}

static inline void harness_start(struct harness *h) { harness_start_with(h, NULL); }

static inline void harness_stop(struct harness *h)
{
  uv_async_send(&h->stop);
  pthread_join(h->thread, NULL);
  CHECK_OK(uv_loop_close(&h->loop));
  mountd_free(h->mountd);
  rpcsrv_free(h->rpc);
}

/* ---- raw sockets ---- */

static inline int raw_connect(int port)
{
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK_OK(connect(fd, (struct sockaddr *)&sin, sizeof sin));
  return fd;
}

static inline void raw_send(int fd, const void *p, size_t n)
{
  const uint8_t *b = p;
  while (n > 0) {
    ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
    CHECK_MSG(k > 0, "send: %s", strerror(errno));
    b += k;
    n -= (size_t)k;
  }
}

/* Sends body as one record split into fragments of at most frag bytes. */
static inline void raw_send_record(int fd, const void *body, size_t n, size_t frag)
{
  const uint8_t *b = body;
  do {
    size_t k = n < frag ? n : frag;
    uint32_t mark = htonl((uint32_t)k | (k == n ? 0x80000000u : 0));
    raw_send(fd, &mark, 4);
    raw_send(fd, b, k);
    b += k;
    n -= k;
  } while (n > 0);
}

/* Reads exactly n bytes; false on EOF, error or 5 s of silence. */
static inline bool raw_read_full(int fd, void *p, size_t n)
{
  uint8_t *b = p;
  while (n > 0) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 5000) <= 0)
      return false;
    ssize_t k = recv(fd, b, n, 0);
    if (k <= 0)
      return false;
    b += k;
    n -= (size_t)k;
  }
  return true;
}

/* One reply record (all fragments), malloc'd; NULL if the connection
 * closed or stayed silent. */
static inline uint8_t *raw_recv_record(int fd, size_t *len)
{
  uint8_t *rec = NULL;
  size_t n = 0;
  for (;;) {
    uint32_t mark;
    if (!raw_read_full(fd, &mark, 4)) {
      free(rec);
      return NULL;
    }
    mark = ntohl(mark);
    size_t k = mark & 0x7fffffff;
    rec = realloc(rec, n + k + 1);
    CHECK(rec != NULL);
    if (!raw_read_full(fd, rec + n, k)) {
      free(rec);
      return NULL;
    }
    n += k;
    if (mark & 0x80000000u)
      break;
  }
  *len = n;
  return rec;
}

/* True when the server closed the connection (EOF or reset) within 5 s. */
static inline bool raw_closed(int fd)
{
  uint8_t b[4096];
  for (;;) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 5000) <= 0)
      return false;
    ssize_t k = recv(fd, b, sizeof b, 0);
    if (k == 0 || (k < 0 && errno == ECONNRESET))
      return true;
    if (k < 0)
      return false;
  }
}

/* Builds a call: header (AUTH_NONE unless cred) then args. */
static inline void call_build(struct xdr_enc *e, uint32_t xid, uint32_t prog, uint32_t vers, uint32_t proc,
                       const struct oncrpc_auth_sys *cred, const void *args, size_t args_len)
{
  xdr_enc_init(e, 1 << 22);
  oncrpc_enc_call(e, xid, prog, vers, proc, cred);
  if (args_len)
    memcpy(xdr_enc_reserve(e, args_len), args, args_len);
  CHECK_OK(xdr_enc_error(e));
}

/* Sends one call and decodes the reply header; *res is left at the
 * results, inside the returned buffer (the caller frees it). */
static inline uint8_t *call_raw(int fd, uint32_t xid, uint32_t prog, uint32_t vers, uint32_t proc,
                         const void *args, size_t args_len, struct oncrpc_reply *r,
                         struct xdr_dec *res)
{
  struct xdr_enc e;
  call_build(&e, xid, prog, vers, proc, NULL, args, args_len);
  raw_send_record(fd, e.buf, e.len, 1 << 30);
  xdr_enc_free(&e);
  size_t len;
  uint8_t *rec = raw_recv_record(fd, &len);
  CHECK_MSG(rec != NULL, "no reply to %u/%u/%u", prog, vers, proc);
  xdr_dec_init(res, rec, len);
  CHECK_OK(oncrpc_dec_reply(res, r));
  CHECK_INT(r->xid, ==, xid);
  return rec;
}

#endif
