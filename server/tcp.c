/* ONC RPC over TCP on libuv; see tcp.h. */
#include "server/tcp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "store/error.h"

/* Replies are flushed in writes of about this size. */
#define FLUSH_AT (256 * 1024)
/* The out encoder holds a batch plus one maximal reply. */
#define OUT_CAP (FLUSH_AT + RPCSRV_REPLY_MAX + 64)
/* A connection keeps its reply buffer between batches up to this size. */
#define OUT_KEEP (256 * 1024)
/* Requests one conn_spin() may serve before it returns to the loop. */
#define SPIN_REQUESTS_MAX 64

struct conn {
  uv_tcp_t tcp;
  struct tcpsrv *srv;
  struct conn *prev, *next;
  struct rpcsrv_records in;
  struct xdr_enc out;
  struct rpcsrv_peer peer;
  size_t queued;  /* bytes handed to uv_write and not yet completed */
  bool reading;
  bool closing;
  bool spin_off;       /* its last spin caught nothing: sleep until it sends */
  uint64_t replied_at; /* uv_hrtime() of the last reply batch */
};

struct write_req {
  uv_write_t req;
  uint8_t *buf; /* owned: the batch, whose first bytes may be sent already */
  size_t len;   /* bytes queued */
};

struct tcpsrv {
  uv_tcp_t listener;
  uv_loop_t *loop;
  struct rpcsrv *rpc;
  struct conn *conns;
  size_t nconns;
  size_t open_handles; /* listener + connections not yet closed */
  bool stopping;
  void (*done)(void *);
  void *done_arg;
  int port;
  uint64_t spin_ns;    /* see tcpsrv_set_spin() */
  uint64_t spin_served;
  uint64_t spin_missed;
};

int tcpsrv_parse_addr(const char *s, struct sockaddr_storage *ss)
{
  char host[INET6_ADDRSTRLEN + 2];
  const char *colon;
  const char *h = s;
  size_t hlen;
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close || close[1] != ':')
      return -EINVAL;
    h = s + 1;
    hlen = (size_t)(close - h);
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon || strchr(s, ':') != colon)
      return -EINVAL;
    hlen = (size_t)(colon - s);
  }
  if (hlen == 0 || hlen >= sizeof host)
    return -EINVAL;
  memcpy(host, h, hlen);
  host[hlen] = 0;
  char *endp;
  errno = 0;
  long port = strtol(colon + 1, &endp, 10);
  if (colon[1] == 0 || *endp || errno || port < 0 || port > 65535)
    return -EINVAL;
  memset(ss, 0, sizeof *ss);
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
    return 0;
  if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
    return 0;
  return -EINVAL;
}

static void handle_closed(struct tcpsrv *s)
{
  if (--s->open_handles == 0 && s->stopping) {
    void (*done)(void *) = s->done;
    void *arg = s->done_arg;
    free(s);
    if (done)
      done(arg);
  }
}

static void conn_closed(uv_handle_t *h)
{
  struct conn *c = h->data;
  struct tcpsrv *s = c->srv;
  rpcsrv_records_free(&c->in);
  xdr_enc_free(&c->out);
  free(c);
  handle_closed(s);
}

static void conn_close(struct conn *c)
{
  if (c->closing)
    return;
  c->closing = true;
  struct tcpsrv *s = c->srv;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  s->nconns--;
  uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void conn_pump(struct conn *c);
static void conn_spin(struct conn *c);

static void write_done(uv_write_t *req, int status)
{
  struct write_req *w = (struct write_req *)req;
  struct conn *c = req->handle->data;
  c->queued -= w->len;
  free(w->buf);
  free(w);
  if (c->closing)
    return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  if (!c->reading)
    conn_pump(c);
}

/* Writes the batched replies. While nothing is queued in libuv they go out
 * with one write(2) right here (uv_try_write): uv_write would also write at
 * once, but its completion path re-arms the socket's watcher, one
 * epoll_ctl per reply. Only what the socket did not take is queued, and
 * once anything is queued everything goes through the queue, in order. */
static int conn_flush(struct conn *c)
{
  if (c->out.len == 0)
    return 0;
  size_t off = 0;
  if (c->queued == 0) {
    uv_buf_t b = uv_buf_init((char *)c->out.buf, (unsigned)c->out.len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n < 0 && n != UV_EAGAIN)
      return n;
    if (n > 0)
      off = (size_t)n;
    if (off == c->out.len) {
      /* Keep the buffer for the next replies, unless a big batch grew it. */
      if (c->out.alloc > OUT_KEEP)
        xdr_enc_free(&c->out);
      else
        xdr_enc_truncate(&c->out, 0);
      return 0;
    }
  }
  struct write_req *w = malloc(sizeof *w);
  if (!w)
    return -ENOMEM;
  size_t total;
  w->buf = xdr_enc_take(&c->out, &total);
  w->len = total - off;
  uv_buf_t b = uv_buf_init((char *)w->buf + off, (unsigned)w->len);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_done);
  if (rc < 0) {
    free(w->buf);
    free(w);
    return rc;
  }
  c->queued += w->len;
  return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  struct conn *c = h->data;
  uint8_t *p;
  size_t n;
  (void)suggested;
  if (rpcsrv_records_space(&c->in, &p, &n) < 0) {
    *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
    return;
  }
  *buf = uv_buf_init((char *)p, n > UINT32_MAX ? UINT32_MAX : (unsigned)n);
}

/* The client closed (EOF) or the read failed: close. EOF in the middle of
 * a record is a truncated record: nothing to answer, nothing to keep. */
static void conn_read_end(struct conn *c, bool eof)
{
  if (eof && rpcsrv_records_partial(&c->in))
    rpcsrv_logf(c->srv->rpc, "%s: closed in the middle of a record", c->peer.name);
  conn_close(c);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
  struct conn *c = st->data;
  (void)buf;
  if (nread < 0) {
    if (nread == UV_ENOBUFS) {
      rpcsrv_logf(c->srv->rpc, "%s: closing: no memory for the record", c->peer.name);
      conn_close(c);
    } else {
      conn_read_end(c, nread == UV_EOF);
    }
    return;
  }
  rpcsrv_records_commit(&c->in, (size_t)nread);
  /* A client that answers a reply within the spin budget is in a call
   * loop: spin for it again (see conn_spin). */
  if (c->spin_off && uv_hrtime() - c->replied_at <= __atomic_load_n(&c->srv->spin_ns, __ATOMIC_RELAXED))
    c->spin_off = false;
  conn_pump(c);
  conn_spin(c);
}

static void set_reading(struct conn *c, bool on)
{
  if (on == c->reading)
    return;
  if (on) {
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
      conn_close(c);
      return;
    }
  } else {
    uv_read_stop((uv_stream_t *)&c->tcp);
  }
  c->reading = on;
}

/* Dispatches buffered records while the client keeps up with the replies,
 * then reads again (or waits for writes to drain). */
static void conn_pump(struct conn *c)
{
  while (!c->closing && c->queued + c->out.len < TCPSRV_QUEUE_MAX) {
    uint8_t *rec;
    size_t len;
    int rc = rpcsrv_records_next(&c->in, &rec, &len);
    if (rc == 0)
      break;
    if (rc == -BFS_ETOOBIG)
      rpcsrv_logf(c->srv->rpc, "%s: closing: a record over %u bytes", c->peer.name,
                  (unsigned)RPCSRV_RECORD_MAX);
    if (rc > 0)
      rc = rpcsrv_dispatch_record(c->srv->rpc, rec, len, &c->peer, &c->out);
    if (rc >= 0 && c->out.len >= FLUSH_AT)
      rc = conn_flush(c);
    if (rc < 0) {
      conn_close(c);
      return;
    }
  }
  if (c->closing)
    return;
  if (conn_flush(c) < 0) {
    conn_close(c);
    return;
  }
  set_reading(c, c->queued < TCPSRV_QUEUE_MAX);
}

/*
 * After a reply to a client with one call in flight, the next call comes a
 * round trip later. If this thread sleeps in epoll meanwhile, the call has
 * to wake it, and on this VM waking an idle vCPU costs 40-60 us of the
 * 70-80 us round trip (bench_nfs's floor rows). So for up to spin_ns the
 * thread polls the socket itself, yielding the CPU on every miss (a client
 * on the same CPU runs at once). A spin that catches nothing turns spinning
 * off for the connection until a call again arrives within spin_ns of its
 * reply, so a slow client costs one wasted spin, not one per call. Bounded
 * by SPIN_REQUESTS_MAX calls so other connections and timers get their turn.
 * No spin at all while the client runs on our CPU (SO_INCOMING_CPU: over
 * loopback the sender's CPU): it needs that CPU to send its call, and there
 * the wake-up is cheap anyway (measured: spinning then halved GETATTR x1).
 */
static void conn_spin(struct conn *c)
{
  uint64_t budget = __atomic_load_n(&c->srv->spin_ns, __ATOMIC_RELAXED);
  int fd;
  if (budget == 0 || uv_fileno((uv_handle_t *)&c->tcp, &fd) < 0)
    return;
  if (c->spin_off) { /* backed off (below): not even the getsockopt */
    c->replied_at = uv_hrtime();
    return;
  }
  /* A client on this very CPU (loopback runs the sender's softirq on the
   * sender's CPU) needs the CPU we would spin on: sleep instead. Asked once
   * per spin, not per call: where the client runs does not change within
   * a burst of SPIN_REQUESTS_MAX calls. */
  int cpu_in = -1;
  socklen_t cpu_len = sizeof cpu_in;
  if (getsockopt(fd, SOL_SOCKET, SO_INCOMING_CPU, &cpu_in, &cpu_len) == 0 && cpu_in == sched_getcpu()) {
    c->replied_at = uv_hrtime();
    return;
  }
  for (int served = 0; served < SPIN_REQUESTS_MAX; served++) {
    uint64_t start = uv_hrtime();
    c->replied_at = start;
    if (c->closing || !c->reading || c->queued || c->spin_off)
      return;
    ssize_t n;
    for (;;) {
      uint8_t *p;
      size_t cap;
      if (rpcsrv_records_space(&c->in, &p, &cap) < 0)
        return; /* the loop's read reports it */
      n = recv(fd, p, cap, MSG_DONTWAIT);
      if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        break;
      if (uv_hrtime() - start >= budget) {
        __atomic_fetch_add(&c->srv->spin_missed, 1, __ATOMIC_RELAXED);
        c->spin_off = true;
        return;
      }
      sched_yield();
    }
    if (n <= 0) {
      conn_read_end(c, n == 0); /* what the loop's read would have done */
      return;
    }
    __atomic_fetch_add(&c->srv->spin_served, 1, __ATOMIC_RELAXED);
    rpcsrv_records_commit(&c->in, (size_t)n);
    conn_pump(c);
  }
}

static void peer_fill(struct conn *c)
{
  struct rpcsrv_peer *p = &c->peer;
  int len = sizeof p->addr;
  p->stream = true;
  snprintf(p->name, sizeof p->name, "?");
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&p->addr, &len) < 0)
    return;
  p->addrlen = (socklen_t)len;
  if (p->addr.ss_family == AF_INET)
    uv_ip4_name((struct sockaddr_in *)&p->addr, p->name, sizeof p->name);
  else if (p->addr.ss_family == AF_INET6)
    uv_ip6_name((struct sockaddr_in6 *)&p->addr, p->name, sizeof p->name);
}

static void on_connection(uv_stream_t *listener, int status)
{
  struct tcpsrv *s = listener->data;
  if (status < 0 || s->stopping)
    return;
  struct conn *c = calloc(1, sizeof *c);
  if (!c)
    return;
  bool full = s->nconns >= TCPSRV_CONNS_MAX;
  c->srv = s;
  rpcsrv_records_init(&c->in, RPCSRV_RECORD_MAX);
  xdr_enc_init(&c->out, OUT_CAP);
  if (uv_tcp_init(s->loop, &c->tcp) < 0) {
    free(c);
    return;
  }
  c->tcp.data = c;
  s->open_handles++;
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) < 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  peer_fill(c);
  if (full) {
    /* Accepted and closed at once: the client sees a reset, not a hang. */
    rpcsrv_logf(s->rpc, "%s: refused: %u connections open", c->peer.name, TCPSRV_CONNS_MAX);
    conn_close(c);
    return;
  }
  set_reading(c, true);
}

static void listener_closed(uv_handle_t *h)
{
  handle_closed(h->data);
}

int tcpsrv_start(uv_loop_t *loop, struct rpcsrv *rpc, const struct sockaddr *addr,
                 struct tcpsrv **out)
{
  struct tcpsrv *s = calloc(1, sizeof *s);
  if (!s)
    return -ENOMEM;
  s->loop = loop;
  s->rpc = rpc;
  int rc = uv_tcp_init(loop, &s->listener);
  if (rc < 0) {
    free(s);
    return rc;
  }
  s->listener.data = s;
  s->open_handles = 1;
  unsigned flags = addr->sa_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0;
  rc = uv_tcp_bind(&s->listener, addr, flags);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
  if (rc == 0) {
    struct sockaddr_storage ss;
    int len = sizeof ss;
    rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
    if (rc == 0)
      s->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                              : ((struct sockaddr_in6 *)&ss)->sin6_port);
  }
  if (rc < 0) {
    /* Closing is asynchronous: the struct is freed by the close callback
     * when the loop next runs. */
    s->stopping = true;
    uv_close((uv_handle_t *)&s->listener, listener_closed);
    return rc;
  }
  *out = s;
  return 0;
}

void tcpsrv_set_spin(struct tcpsrv *s, uint64_t ns)
{
  __atomic_store_n(&s->spin_ns, ns, __ATOMIC_RELAXED);
}

uint64_t tcpsrv_spin_served(const struct tcpsrv *s)
{
  return __atomic_load_n(&s->spin_served, __ATOMIC_RELAXED);
}

uint64_t tcpsrv_spin_missed(const struct tcpsrv *s)
{
  return __atomic_load_n(&s->spin_missed, __ATOMIC_RELAXED);
}

int tcpsrv_port(const struct tcpsrv *s)
{
  return s->port;
}

size_t tcpsrv_connections(const struct tcpsrv *s)
{
  return s->nconns;
}

void tcpsrv_stop(struct tcpsrv *s, void (*done)(void *arg), void *arg)
{
  if (s->stopping)
    return;
  s->stopping = true;
  s->done = done;
  s->done_arg = arg;
  while (s->conns)
    conn_close(s->conns);
  uv_close((uv_handle_t *)&s->listener, listener_closed);
}
