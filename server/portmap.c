/* PMAP v2 client and server; see portmap.h. */
#include "server/portmap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/exports.h"
#include "server/tcp.h"
#include "server/udp.h"
#include "store/error.h"
#include "xdr/oncrpc.h"

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return rc;
}

size_t portmap_our_mappings(int tcp, int udp, struct pmap2_mapping *out, size_t cap)
{
  static const uint32_t pv[3][2] = {
      {PORTMAP_NFS_PROGRAM, 3}, {PORTMAP_MOUNT_PROGRAM, 1}, {PORTMAP_MOUNT_PROGRAM, 3}};
  size_t n = 0;
  for (int i = 0; i < 3; i++) {
    if (tcp > 0 && n < cap)
      out[n++] = (struct pmap2_mapping){pv[i][0], pv[i][1], PMAP2_IPPROTO_TCP, (uint32_t)tcp};
    if (udp > 0 && n < cap)
      out[n++] = (struct pmap2_mapping){pv[i][0], pv[i][1], PMAP2_IPPROTO_UDP, (uint32_t)udp};
  }
  return n;
}

/* ---- the client ---- */

static const char *proto_name(uint32_t p)
{
  return p == PMAP2_IPPROTO_TCP ? "tcp" : p == PMAP2_IPPROTO_UDP ? "udp" : "?";
}

struct pclient {
  int fd;
  char where[80];
  uint32_t xid;
};

static int pclient_open(struct pclient *c, const struct sockaddr *pmap, char *err, size_t errlen)
{
  struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons(PMAP2_PORT)};
  local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (!pmap)
    pmap = (const struct sockaddr *)&local;
  socklen_t len = pmap->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (pmap->sa_family == AF_INET) {
    inet_ntop(AF_INET, &((const struct sockaddr_in *)pmap)->sin_addr, host, sizeof host);
    port = ntohs(((const struct sockaddr_in *)pmap)->sin_port);
  } else if (pmap->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)pmap)->sin6_addr, host, sizeof host);
    port = ntohs(((const struct sockaddr_in6 *)pmap)->sin6_port);
  }
  snprintf(c->where, sizeof c->where, pmap->sa_family == AF_INET6 ? "[%s]:%d" : "%s:%d", host,
           port);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  c->xid = (uint32_t)ts.tv_nsec ^ (uint32_t)getpid() << 16;
  c->fd = socket(pmap->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    int e = errno;
    return fail(err, errlen, -e, "port mapper at %s: socket: %s", c->where, strerror(e));
  }
  /* Connected: an ICMP port unreachable (no rpcbind) becomes ECONNREFUSED
   * at once instead of a timeout. */
  if (connect(c->fd, pmap, len) < 0) {
    int e = errno;
    close(c->fd);
    return fail(err, errlen, -e, "port mapper at %s: %s", c->where, strerror(e));
  }
  return 0;
}

/* rpcbind v3/v4's rpcb (RFC 1833 §2.2). */
static void enc_rpcb(struct xdr_enc *e, uint32_t prog, uint32_t vers, const char *netid,
                     const char *addr)
{
  xdr_enc_u32(e, prog);
  xdr_enc_u32(e, vers);
  xdr_enc_str(e, netid);
  xdr_enc_str(e, addr);
  xdr_enc_str(e, "basefs");
}

static int pclient_call_v(struct pclient *c, uint32_t vers, uint32_t proc,
                          const struct pmap2_mapping *m, const char *netid, const char *addr,
                          uint32_t *result, char *err, size_t errlen);

/* One PMAP v2 call; on success *result is the u32 result (bool or port). */
static int pclient_call(struct pclient *c, uint32_t proc, const struct pmap2_mapping *m,
                        uint32_t *result, char *err, size_t errlen)
{
  return pclient_call_v(c, PMAP2_VERSION, proc, m, NULL, NULL, result, err, errlen);
}

/* vers 2: the mapping M; vers 3/4: an rpcb of M's prog/vers, NETID, ADDR. */
static int pclient_call_v(struct pclient *c, uint32_t vers, uint32_t proc,
                          const struct pmap2_mapping *m, const char *netid, const char *addr,
                          uint32_t *result, char *err, size_t errlen)
{
  uint32_t xid = ++c->xid;
  struct xdr_enc e;
  xdr_enc_init(&e, 512);
  /* rpcbind wants a credential it can check for SET/UNSET: AUTH_SYS, uid
   * as we are (it only accepts the owner's unset, and root's for all). */
  struct oncrpc_auth_sys cred = {.uid = (uint32_t)geteuid(), .gid = (uint32_t)getegid()};
  gethostname(cred.machine, sizeof cred.machine - 1);
  cred.machine_len = (uint32_t)strlen(cred.machine);
  oncrpc_enc_call(&e, xid, PMAP2_PROGRAM, vers, proc, &cred);
  if (vers == PMAP2_VERSION)
    pmap2_enc_mapping(&e, m);
  else
    enc_rpcb(&e, m->prog, m->vers, netid, addr);
  int rc = xdr_enc_error(&e);
  if (rc == 0 && send(c->fd, e.buf, e.len, 0) != (ssize_t)e.len)
    rc = -errno;
  xdr_enc_free(&e);
  if (rc < 0)
    return fail(err, errlen, rc, "no port mapper at %s (%s)", c->where, bfs_strerror(rc));
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    long waited = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
    if (waited >= PORTMAP_TIMEOUT_MS)
      return fail(err, errlen, -ETIMEDOUT, "no answer from the port mapper at %s", c->where);
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int pr = poll(&pfd, 1, (int)(PORTMAP_TIMEOUT_MS - waited));
    if (pr < 0 && errno == EINTR)
      continue;
    if (pr <= 0)
      continue;
    uint8_t buf[512];
    ssize_t k = recv(c->fd, buf, sizeof buf, 0);
    if (k < 0) {
      int ee = errno;
      return fail(err, errlen, -ee, "no port mapper at %s (%s)", c->where, strerror(ee));
    }
    struct xdr_dec d;
    struct oncrpc_reply r;
    xdr_dec_init(&d, buf, (size_t)k);
    if (oncrpc_dec_reply(&d, &r) < 0 || r.xid != xid)
      continue; /* a stale or foreign datagram */
    if (r.reply_stat != ONCRPC_MSG_ACCEPTED || r.accept_stat != ONCRPC_SUCCESS)
      return fail(err, errlen, -EPROTO, "the port mapper at %s rejected the call (%s %u)",
                  c->where, r.reply_stat != ONCRPC_MSG_ACCEPTED ? "denied" : "accept status",
                  r.reply_stat != ONCRPC_MSG_ACCEPTED ? r.auth_stat : r.accept_stat);
    if (xdr_dec_u32(&d, result) < 0)
      return fail(err, errlen, -EPROTO, "a short reply from the port mapper at %s", c->where);
    return 0;
  }
}

int portmap_register(const struct sockaddr *pmap, int tcp, int udp, char *err, size_t errlen)
{
  struct pclient c;
  int rc = pclient_open(&c, pmap, err, errlen);
  if (rc < 0)
    return rc;
  struct pmap2_mapping maps[PORTMAP_OURS_MAX];
  size_t n = portmap_our_mappings(tcp, udp, maps, PORTMAP_OURS_MAX);
  uint32_t ok;
  for (size_t i = 0; i < n && rc == 0; i++) {
    /* A stale registration (a previous run killed hard) would make SET
     * fail: clear (prog, vers) before its first SET. */
    if (i == 0 || maps[i].prog != maps[i - 1].prog || maps[i].vers != maps[i - 1].vers) {
      struct pmap2_mapping u = {maps[i].prog, maps[i].vers, 0, 0};
      rc = pclient_call(&c, PMAP2_PROC_UNSET, &u, &ok, err, errlen);
    }
    if (rc == 0)
      rc = pclient_call(&c, PMAP2_PROC_SET, &maps[i], &ok, err, errlen);
    if (rc == 0 && !ok)
      rc = fail(err, errlen, -EEXIST,
                "the port mapper at %s refused SET of %u v%u %s port %u (another server has it?)",
                c.where, maps[i].prog, maps[i].vers, proto_name(maps[i].prot), maps[i].port);
  }
  close(c.fd);
  return rc;
}

int portmap_register6(const struct sockaddr *pmap, const char *host6, int tcp, int udp, char *err,
                      size_t errlen)
{
  struct pclient c;
  int rc = pclient_open(&c, pmap, err, errlen);
  if (rc < 0)
    return rc;
  struct pmap2_mapping maps[PORTMAP_OURS_MAX];
  size_t n = portmap_our_mappings(tcp, udp, maps, PORTMAP_OURS_MAX);
  uint32_t ok;
  for (size_t i = 0; i < n && rc == 0; i++) {
    const char *netid = maps[i].prot == PMAP2_IPPROTO_TCP ? "tcp6" : "udp6";
    char uaddr[INET6_ADDRSTRLEN + 16];
    snprintf(uaddr, sizeof uaddr, "%s.%u.%u", host6, maps[i].port >> 8, maps[i].port & 255);
    /* Clear a stale registration of this netid first. */
    rc = pclient_call_v(&c, 4, PMAP2_PROC_UNSET, &maps[i], netid, "", &ok, err, errlen);
    if (rc == 0)
      rc = pclient_call_v(&c, 4, PMAP2_PROC_SET, &maps[i], netid, uaddr, &ok, err, errlen);
    if (rc == 0 && !ok)
      rc = fail(err, errlen, -EEXIST,
                "the port mapper at %s refused SET of %u v%u %s at %s (another server has it?)",
                c.where, maps[i].prog, maps[i].vers, netid, uaddr);
  }
  close(c.fd);
  return rc;
}

int portmap_unregister(const struct sockaddr *pmap, char *err, size_t errlen)
{
  struct pclient c;
  int rc = pclient_open(&c, pmap, err, errlen);
  if (rc < 0)
    return rc;
  static const uint32_t pv[3][2] = {
      {PORTMAP_NFS_PROGRAM, 3}, {PORTMAP_MOUNT_PROGRAM, 1}, {PORTMAP_MOUNT_PROGRAM, 3}};
  uint32_t ok;
  for (int i = 0; i < 3 && rc == 0; i++) {
    struct pmap2_mapping u = {pv[i][0], pv[i][1], 0, 0};
    rc = pclient_call(&c, PMAP2_PROC_UNSET, &u, &ok, err, errlen);
    /* The IPv6 netids (portmap_register6): rpcbind v4, if there is one. */
    char ignored[64];
    if (rc == 0)
      pclient_call_v(&c, 4, PMAP2_PROC_UNSET, &u, "", "", &ok, ignored, sizeof ignored);
  }
  close(c.fd);
  return rc;
}

int portmap_getport(const struct sockaddr *pmap, uint32_t prog, uint32_t vers, uint32_t prot,
                    char *err, size_t errlen)
{
  struct pclient c;
  int rc = pclient_open(&c, pmap, err, errlen);
  if (rc < 0)
    return rc;
  struct pmap2_mapping m = {prog, vers, prot, 0};
  uint32_t port = 0;
  rc = pclient_call(&c, PMAP2_PROC_GETPORT, &m, &port, err, errlen);
  close(c.fd);
  if (rc < 0)
    return rc;
  return port > 65535 ? -EPROTO : (int)port;
}

/* ---- the server ---- */

struct pmapsrv {
  struct pmap2_mapping maps[PMAPSRV_MAPPINGS_MAX];
  size_t n;
  /* Our own mappings for IPv6 (pmapsrv_set6): a daemon may listen on
   * other ports there. */
  struct pmap2_mapping maps6[PORTMAP_OURS_MAX];
  size_t n6;
  char host4[INET_ADDRSTRLEN], host6[INET6_ADDRSTRLEN];
};

int pmapsrv_set_hosts(struct pmapsrv *p, const char *v4, const char *v6)
{
  if ((v4 && strlen(v4) >= sizeof p->host4) || (v6 && strlen(v6) >= sizeof p->host6))
    return -EINVAL;
  snprintf(p->host4, sizeof p->host4, "%s", v4 ? v4 : "");
  snprintf(p->host6, sizeof p->host6, "%s", v6 ? v6 : "");
  return 0;
}

int pmapsrv_new(struct pmapsrv **out)
{
  *out = calloc(1, sizeof **out);
  return *out ? 0 : -ENOMEM;
}

void pmapsrv_free(struct pmapsrv *p) { free(p); }

size_t pmapsrv_count(const struct pmapsrv *p) { return p->n; }

static int table_set(struct pmap2_mapping *maps, size_t *n, size_t cap,
                     const struct pmap2_mapping *m)
{
  for (size_t i = 0; i < *n; i++)
    if (maps[i].prog == m->prog && maps[i].vers == m->vers && maps[i].prot == m->prot) {
      maps[i].port = m->port;
      return 0;
    }
  if (*n == cap)
    return -ENOSPC;
  maps[(*n)++] = *m;
  return 0;
}

/* The port of (prog, vers, prot) in a table, 0 if absent. */
static uint32_t table_port(const struct pmap2_mapping *maps, size_t n, uint32_t prog,
                           uint32_t vers, uint32_t prot)
{
  for (size_t i = 0; i < n; i++)
    if (maps[i].prog == prog && maps[i].vers == vers && maps[i].prot == prot)
      return maps[i].port;
  return 0;
}

int pmapsrv_set(struct pmapsrv *p, const struct pmap2_mapping *m)
{
  return table_set(p->maps, &p->n, PMAPSRV_MAPPINGS_MAX, m);
}

int pmapsrv_set6(struct pmapsrv *p, const struct pmap2_mapping *m)
{
  return table_set(p->maps6, &p->n6, sizeof p->maps6 / sizeof p->maps6[0], m);
}

static enum rpcsrv_status pm_null(struct rpcsrv_call *call)
{
  (void)call;
  return RPCSRV_OK;
}

/* SET and UNSET change the table: only local services may (rpcbind's
 * rule); everyone else gets false. */
static bool local_caller(const struct rpcsrv_call *call)
{
  return call->peer && exports_loopback((const struct sockaddr *)&call->peer->addr);
}

static enum rpcsrv_status pm_set(struct rpcsrv_call *call)
{
  struct pmapsrv *p = call->ctx;
  struct pmap2_mapping m;
  if (pmap2_dec_mapping(&call->args, &m) < 0 || xdr_dec_done(&call->args) < 0)
    return RPCSRV_GARBAGE_ARGS;
  bool ok = false;
  if (local_caller(call) && m.port > 0 && m.port <= 65535 &&
      (m.prot == PMAP2_IPPROTO_TCP || m.prot == PMAP2_IPPROTO_UDP)) {
    /* As rpcbind: SET does not replace an existing (prog, vers, prot). */
    bool exists = false;
    for (size_t i = 0; i < p->n; i++)
      exists |= p->maps[i].prog == m.prog && p->maps[i].vers == m.vers && p->maps[i].prot == m.prot;
    ok = !exists && pmapsrv_set(p, &m) == 0;
  }
  xdr_enc_bool(call->res, ok);
  return RPCSRV_OK;
}

static enum rpcsrv_status pm_unset(struct rpcsrv_call *call)
{
  struct pmapsrv *p = call->ctx;
  struct pmap2_mapping m;
  if (pmap2_dec_mapping(&call->args, &m) < 0 || xdr_dec_done(&call->args) < 0)
    return RPCSRV_GARBAGE_ARGS;
  bool ok = false;
  if (local_caller(call)) {
    size_t k = 0;
    for (size_t i = 0; i < p->n; i++) {
      if (p->maps[i].prog == m.prog && p->maps[i].vers == m.vers)
        ok = true; /* UNSET ignores prot and port (RFC 1833) */
      else
        p->maps[k++] = p->maps[i];
    }
    p->n = k;
  }
  xdr_enc_bool(call->res, ok);
  return RPCSRV_OK;
}

static enum rpcsrv_status pm_getport(struct rpcsrv_call *call)
{
  struct pmapsrv *p = call->ctx;
  struct pmap2_mapping m;
  if (pmap2_dec_mapping(&call->args, &m) < 0 || xdr_dec_done(&call->args) < 0)
    return RPCSRV_GARBAGE_ARGS;
  xdr_enc_u32(call->res, table_port(p->maps, p->n, m.prog, m.vers, m.prot));
  return RPCSRV_OK;
}

static enum rpcsrv_status pm_dump(struct rpcsrv_call *call)
{
  struct pmapsrv *p = call->ctx;
  if (xdr_dec_done(&call->args) < 0)
    return RPCSRV_GARBAGE_ARGS;
  for (size_t i = 0; i < p->n; i++)
    pmap2_enc_list_entry(call->res, &p->maps[i]);
  pmap2_enc_list_end(call->res);
  return RPCSRV_OK;
}

/* For a port mapper bound to a wildcard (--nfs 0.0.0.0:2049 / [::]:2049):
 * the local address a reply to the caller leaves from (the routing
 * table's choice: connect a UDP socket to it and ask). That is the address
 * the call arrived on for every ordinary setup, which is what rpcbind
 * answers, and never the useless wildcard. False when it cannot tell. */
static bool local_address_to(const struct rpcsrv_peer *peer, int family, char *out, size_t cap)
{
  if (!peer || peer->addr.ss_family != family)
    return false;
  int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return false;
  struct sockaddr_storage to = peer->addr, me;
  socklen_t len = sizeof me;
  if (family == AF_INET6 && ((struct sockaddr_in6 *)&to)->sin6_port == 0)
    ((struct sockaddr_in6 *)&to)->sin6_port = htons(PMAP2_PORT);
  else if (family == AF_INET && ((struct sockaddr_in *)&to)->sin_port == 0)
    ((struct sockaddr_in *)&to)->sin_port = htons(PMAP2_PORT);
  bool ok = connect(fd, (struct sockaddr *)&to, peer->addrlen ? peer->addrlen : sizeof to) == 0 &&
            getsockname(fd, (struct sockaddr *)&me, &len) == 0 && me.ss_family == family;
  close(fd);
  const void *a = family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&me)->sin6_addr
                                     : (const void *)&((struct sockaddr_in *)&me)->sin_addr;
  return ok && inet_ntop(family, a, out, (socklen_t)cap) != NULL;
}

/* rpcbind v3/v4 GETADDR: rpcb in, universal address out ("" = none). */
static enum rpcsrv_status rb_getaddr(struct rpcsrv_call *call)
{
  struct pmapsrv *p = call->ctx;
  uint32_t prog, vers;
  struct xdr_bytes netid, addr, owner;
  if (xdr_dec_u32(&call->args, &prog) < 0 || xdr_dec_u32(&call->args, &vers) < 0 ||
      xdr_dec_bytes(&call->args, 64, &netid) < 0 || xdr_dec_bytes(&call->args, 256, &addr) < 0 ||
      xdr_dec_bytes(&call->args, 256, &owner) < 0 || xdr_dec_done(&call->args) < 0)
    return RPCSRV_GARBAGE_ARGS;
  uint32_t prot = 0;
  const char *host = NULL;
  bool v6 = false;
#define NETID(lit) (netid.len == sizeof(lit) - 1 && memcmp(netid.data, lit, netid.len) == 0)
  if (NETID("tcp") || NETID("tcp6"))
    prot = PMAP2_IPPROTO_TCP;
  else if (NETID("udp") || NETID("udp6"))
    prot = PMAP2_IPPROTO_UDP;
  if (prot) {
    v6 = netid.data[netid.len - 1] == '6';
    host = v6 ? p->host6 : p->host4;
  }
#undef NETID
  uint32_t port = 0;
  /* Our programs, once given IPv6 ports, are answered from that table
   * alone (no UDP there is no UDP, not the IPv4 port); anything else
   * (a local service's SET) from the PMAP v2 table. */
  bool ours6 = v6 && p->n6 > 0 && (prog == PORTMAP_NFS_PROGRAM || prog == PORTMAP_MOUNT_PROGRAM);
  if (prot)
    port = ours6 ? table_port(p->maps6, p->n6, prog, vers, prot)
                 : table_port(p->maps, p->n, prog, vers, prot);
  char local[INET6_ADDRSTRLEN];
  if (host && (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) &&
      local_address_to(call->peer, v6 ? AF_INET6 : AF_INET, local, sizeof local))
    host = local;
  char uaddr[INET6_ADDRSTRLEN + 16] = "";
  if (port && host && host[0])
    snprintf(uaddr, sizeof uaddr, "%s.%u.%u", host, port >> 8, port & 255);
  xdr_enc_str(call->res, uaddr);
  return RPCSRV_OK;
}

static enum rpcsrv_status rb_false(struct rpcsrv_call *call)
{
  xdr_enc_bool(call->res, false);
  return RPCSRV_OK;
}

/* RPCBPROC_NULL, SET, UNSET, GETADDR (v3 and v4); v4's GETVERSADDR (9)
 * answers like GETADDR. */
static const struct rpcsrv_proc rpcb3_procs[4] = {
    {"NULL", pm_null, 0}, {"SET", rb_false, 0}, {"UNSET", rb_false, 0}, {"GETADDR", rb_getaddr, 0}};
static const struct rpcsrv_proc rpcb4_procs[10] = {
    [0] = {"NULL", pm_null, 0},       [1] = {"SET", rb_false, 0},
    [2] = {"UNSET", rb_false, 0},     [3] = {"GETADDR", rb_getaddr, 0},
    [9] = {"GETVERSADDR", rb_getaddr, 0},
};

static const struct rpcsrv_proc pmap_procs[5] = {
    [PMAP2_PROC_NULL] = {"NULL", pm_null, 0},
    [PMAP2_PROC_SET] = {"SET", pm_set, 0},
    [PMAP2_PROC_UNSET] = {"UNSET", pm_unset, 0},
    [PMAP2_PROC_GETPORT] = {"GETPORT", pm_getport, 0},
    [PMAP2_PROC_DUMP] = {"DUMP", pm_dump, 0},
};

int pmapsrv_register(struct pmapsrv *p, struct rpcsrv *rpc)
{
  int r = rpcsrv_register(rpc, PMAP2_PROGRAM, PMAP2_VERSION, pmap_procs, 5, p);
  if (r == 0)
    r = rpcsrv_register(rpc, PMAP2_PROGRAM, 3, rpcb3_procs, 4, p);
  if (r == 0)
    r = rpcsrv_register(rpc, PMAP2_PROGRAM, 4, rpcb4_procs, 10, p);
  return r;
}

/* ---- a complete server on a loop ---- */

#define SERVE_MAX 8

struct portmap_server {
  struct rpcsrv *rpc;
  struct pmapsrv *pm;
  struct tcpsrv *tcp[SERVE_MAX];
  struct udpsrv *udp[SERVE_MAX];
  int ntcp, nudp;
  int open;
  uv_timer_t flush; /* sums up held-back log lines (rpcsrv_log_flush) */
  bool flushing;
  void (*done)(void *);
  void *done_arg;
};

static void on_flush(uv_timer_t *t)
{
  struct portmap_server *s = t->data;
  rpcsrv_log_flush(s->rpc);
}

static void one_stopped(void *arg);
static void flush_closed(uv_handle_t *h) { one_stopped(h->data); }

static void one_stopped(void *arg)
{
  struct portmap_server *s = arg;
  if (--s->open > 0)
    return;
  void (*done)(void *) = s->done;
  void *done_arg = s->done_arg;
  rpcsrv_free(s->rpc);
  pmapsrv_free(s->pm);
  free(s);
  if (done)
    done(done_arg);
}

void portmap_serve_stop(struct portmap_server *s, void (*done)(void *arg), void *arg)
{
  s->done = done;
  s->done_arg = arg;
  s->open = s->ntcp + s->nudp + s->flushing + 1;
  if (s->flushing)
    uv_close((uv_handle_t *)&s->flush, flush_closed);
  for (int i = 0; i < s->ntcp; i++)
    tcpsrv_stop(s->tcp[i], one_stopped, s);
  for (int i = 0; i < s->nudp; i++)
    udpsrv_stop(s->udp[i], one_stopped, s);
  one_stopped(s); /* the +1: frees s now if nothing was open */
}

int portmap_serve(uv_loop_t *loop, const struct sockaddr *const *addrs, size_t naddrs,
                  const struct portmap_ports *ports, rpcsrv_log_fn log, void *log_ctx,
                  struct portmap_server **out, int *bound)
{
  struct portmap_server *s = calloc(1, sizeof *s);
  if (!s)
    return -ENOMEM;
  int rc = rpcsrv_new(&s->rpc);
  if (rc == 0)
    rc = pmapsrv_new(&s->pm);
  if (rc < 0) {
    rpcsrv_free(s->rpc);
    free(s);
    return rc;
  }
  if (log)
    rpcsrv_set_log(s->rpc, log, log_ctx);
  struct pmap2_mapping maps[PORTMAP_OURS_MAX];
  size_t n = portmap_our_mappings(ports->tcp, ports->udp, maps, PORTMAP_OURS_MAX);
  for (size_t i = 0; i < n; i++)
    pmapsrv_set(s->pm, &maps[i]);
  n = portmap_our_mappings(ports->tcp6, ports->udp6, maps, PORTMAP_OURS_MAX);
  for (size_t i = 0; i < n; i++)
    pmapsrv_set6(s->pm, &maps[i]);
  rc = pmapsrv_register(s->pm, s->rpc);
  char h4[INET_ADDRSTRLEN] = "", h6[INET6_ADDRSTRLEN] = "";
  for (size_t i = 0; i < naddrs; i++) {
    if (addrs[i]->sa_family == AF_INET && !h4[0])
      inet_ntop(AF_INET, &((const struct sockaddr_in *)addrs[i])->sin_addr, h4, sizeof h4);
    if (addrs[i]->sa_family == AF_INET6 && !h6[0])
      inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)addrs[i])->sin6_addr, h6, sizeof h6);
  }
  pmapsrv_set_hosts(s->pm, h4, h6);
  int first_err = 0;
  if (bound)
    *bound = 0;
  for (size_t i = 0; rc == 0 && i < naddrs && i < SERVE_MAX; i++) {
    struct tcpsrv *t = NULL;
    struct udpsrv *u = NULL;
    int tr = tcpsrv_start(loop, s->rpc, addrs[i], &t);
    if (tr < 0) {
      uv_run(loop, UV_RUN_NOWAIT); /* releases the failed handle */
      if (!first_err)
        first_err = tr;
      rpcsrv_logf(s->rpc, "port mapper: cannot listen on address %zu: %s", i + 1,
                  bfs_strerror(tr));
      continue;
    }
    s->tcp[s->ntcp++] = t;
    struct sockaddr_storage ss;
    memcpy(&ss, addrs[i], addrs[i]->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                           : sizeof(struct sockaddr_in));
    uint16_t port = htons((uint16_t)tcpsrv_port(t));
    if (ss.ss_family == AF_INET6)
      ((struct sockaddr_in6 *)&ss)->sin6_port = port;
    else
      ((struct sockaddr_in *)&ss)->sin_port = port;
    int ur = udpsrv_start(loop, s->rpc, (struct sockaddr *)&ss, &u);
    if (ur < 0) {
      uv_run(loop, UV_RUN_NOWAIT);
      rpcsrv_logf(s->rpc, "port mapper: no UDP on port %d: %s", tcpsrv_port(t), bfs_strerror(ur));
    } else {
      s->udp[s->nudp++] = u;
    }
    if (bound && !*bound)
      *bound = tcpsrv_port(t);
    if (s->ntcp == 1) {
      /* The port mapper lists itself (rpcinfo -p finds it that way). */
      struct pmap2_mapping self = {PMAP2_PROGRAM, PMAP2_VERSION, PMAP2_IPPROTO_TCP,
                                   (uint32_t)tcpsrv_port(t)};
      pmapsrv_set(s->pm, &self);
      if (u) {
        self.prot = PMAP2_IPPROTO_UDP;
        pmapsrv_set(s->pm, &self);
      }
    }
  }
  if (rc == 0 && s->ntcp == 0)
    rc = first_err ? first_err : -EADDRNOTAVAIL;
  if (rc < 0) {
    portmap_serve_stop(s, NULL, NULL);
    return rc;
  }
  /* Unreferenced: it does not keep the loop alive. */
  if (log && uv_timer_init(loop, &s->flush) == 0) {
    s->flush.data = s;
    s->flushing = true;
    uv_timer_start(&s->flush, on_flush, 250, 250);
    uv_unref((uv_handle_t *)&s->flush);
  }
  *out = s;
  return 0;
}
