/* ONC RPC over UDP on libuv; see udp.h. */
#include "server/udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/error.h"

struct udpsrv {
  uv_udp_t udp;
  uv_loop_t *loop;
  struct rpcsrv *rpc;
  struct xdr_enc out;
  size_t queued;
  bool stopping;
  void (*done)(void *);
  void *done_arg;
  int port;
  uint8_t buf[UDPSRV_DATAGRAM_MAX + 1]; /* one more byte tells an oversized datagram */
};

struct send_req {
  uv_udp_send_t req;
  struct udpsrv *srv;
  size_t len;
  uint8_t data[];
};

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  struct udpsrv *s = h->data;
  (void)suggested;
  *buf = uv_buf_init((char *)s->buf, sizeof s->buf);
}

static void send_done(uv_udp_send_t *req, int status)
{
  struct send_req *r = (struct send_req *)req;
  (void)status; /* a lost reply is retransmitted by the client */
  r->srv->queued -= r->len;
  free(r);
}

static void peer_fill(struct rpcsrv_peer *p, const struct sockaddr *addr)
{
  memset(p, 0, sizeof *p);
  p->stream = false;
  snprintf(p->name, sizeof p->name, "?");
  if (addr->sa_family == AF_INET) {
    memcpy(&p->addr, addr, sizeof(struct sockaddr_in));
    p->addrlen = sizeof(struct sockaddr_in);
    uv_ip4_name((const struct sockaddr_in *)addr, p->name, sizeof p->name);
  } else if (addr->sa_family == AF_INET6) {
    memcpy(&p->addr, addr, sizeof(struct sockaddr_in6));
    p->addrlen = sizeof(struct sockaddr_in6);
    uv_ip6_name((const struct sockaddr_in6 *)addr, p->name, sizeof p->name);
  }
}

static void send_reply(struct udpsrv *s, const struct sockaddr *to)
{
  uv_buf_t b = uv_buf_init((char *)s->out.buf, (unsigned)s->out.len);
  int rc = uv_udp_try_send(&s->udp, &b, 1, to);
  if (rc >= 0 || (rc != UV_EAGAIN && rc != UV_ENOSYS))
    return; /* sent, or failed for good (the client retransmits) */
  if (s->queued + s->out.len > UDPSRV_QUEUE_MAX)
    return;
  struct send_req *r = malloc(sizeof *r + s->out.len);
  if (!r)
    return;
  r->srv = s;
  r->len = s->out.len;
  memcpy(r->data, s->out.buf, s->out.len);
  b = uv_buf_init((char *)r->data, (unsigned)r->len);
  if (uv_udp_send(&r->req, &s->udp, &b, 1, to, send_done) < 0) {
    free(r);
    return;
  }
  s->queued += r->len;
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                    unsigned flags)
{
  struct udpsrv *s = h->data;
  (void)buf;
  if (nread <= 0 || !addr || s->stopping)
    return; /* nothing, or a socket error (e.g. ICMP unreachable): ignore */
  struct rpcsrv_peer peer;
  peer_fill(&peer, addr);
  if ((flags & UV_UDP_PARTIAL) || (size_t)nread > UDPSRV_DATAGRAM_MAX) {
    rpcsrv_logf(s->rpc, "%s: a datagram over %u bytes dropped", peer.name, UDPSRV_DATAGRAM_MAX);
    return;
  }
  xdr_enc_truncate(&s->out, 0);
  s->out.err = 0;
  int rc = rpcsrv_dispatch(s->rpc, s->buf, (size_t)nread, &peer, &s->out);
  if (rc == -BFS_EFORMAT) {
    /* The dispatcher logged it (at most RPCSRV_LOG_BURST lines a second
     * of a kind, so a flood of garbage is a few lines); nothing to answer. */
    return;
  }
  if (rc <= 0 || s->out.len == 0)
    return;
  send_reply(s, addr);
}

int udpsrv_start(uv_loop_t *loop, struct rpcsrv *rpc, const struct sockaddr *addr,
                 struct udpsrv **out)
{
  struct udpsrv *s = calloc(1, sizeof *s);
  if (!s)
    return -ENOMEM;
  s->loop = loop;
  s->rpc = rpc;
  xdr_enc_init(&s->out, UDPSRV_DATAGRAM_MAX);
  int rc = uv_udp_init(loop, &s->udp);
  if (rc < 0) {
    xdr_enc_free(&s->out);
    free(s);
    return rc;
  }
  s->udp.data = s;
  unsigned flags = addr->sa_family == AF_INET6 ? UV_UDP_IPV6ONLY : 0;
  rc = uv_udp_bind(&s->udp, addr, flags);
  if (rc == 0) {
    int size = UDPSRV_RCVBUF;
    uv_recv_buffer_size((uv_handle_t *)&s->udp, &size); /* best effort */
    rc = uv_udp_recv_start(&s->udp, on_alloc, on_recv);
  }
  if (rc == 0) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    rc = uv_udp_getsockname(&s->udp, (struct sockaddr *)&ss, &len);
    if (rc == 0)
      s->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                              : ((struct sockaddr_in6 *)&ss)->sin6_port);
  }
  if (rc < 0) {
    udpsrv_stop(s, NULL, NULL);
    return rc;
  }
  *out = s;
  return 0;
}

int udpsrv_port(const struct udpsrv *s) { return s->port; }

static void closed(uv_handle_t *h)
{
  struct udpsrv *s = h->data;
  void (*done)(void *) = s->done;
  void *arg = s->done_arg;
  xdr_enc_free(&s->out);
  free(s);
  if (done)
    done(arg);
}

void udpsrv_stop(struct udpsrv *s, void (*done)(void *arg), void *arg)
{
  if (s->stopping && uv_is_closing((uv_handle_t *)&s->udp))
    return;
  s->stopping = true;
  s->done = done;
  s->done_arg = arg;
  uv_close((uv_handle_t *)&s->udp, closed);
}
