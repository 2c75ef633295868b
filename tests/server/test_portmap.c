/* server/portmap: the PMAP v2 server (GETPORT, DUMP, SET/UNSET rules) and
 * the registering client, against each other and through the dispatcher. */
#include <pthread.h>

#include "server/portmap.h"
#include "tests/server/harness.h"

struct pm {
  uv_loop_t loop;
  uv_async_t stop;
  pthread_t thread;
  struct portmap_server *srv;
  int port;
  struct sockaddr_in addr; /* where it answers */
};

static void pm_stopped(void *arg)
{
  struct pm *p = arg;
  uv_close((uv_handle_t *)&p->stop, NULL);
}

static void pm_on_stop(uv_async_t *a)
{
  struct pm *p = a->data;
  portmap_serve_stop(p->srv, pm_stopped, p);
}

static void *pm_run(void *arg)
{
  struct pm *p = arg;
  uv_run(&p->loop, UV_RUN_DEFAULT);
  return NULL;
}

/* A port mapper on 127.0.0.1:<free> announcing NFS on tcp 2049, udp 2050,
 * its log lines to LOG (may be NULL). */
static void pm_start_log(struct pm *p, rpcsrv_log_fn log, void *log_ctx)
{
  memset(p, 0, sizeof *p);
  CHECK_OK(uv_loop_init(&p->loop));
  struct sockaddr_in sin = {.sin_family = AF_INET};
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const struct sockaddr *addrs[1] = {(struct sockaddr *)&sin};
  struct portmap_ports ports = {.tcp = 2049, .udp = 2050};
  CHECK_OK(portmap_serve(&p->loop, addrs, 1, &ports, log, log_ctx, &p->srv, &p->port));
  CHECK(p->port > 0);
  p->addr = sin;
  p->addr.sin_port = htons((uint16_t)p->port);
  CHECK_OK(uv_async_init(&p->loop, &p->stop, pm_on_stop));
  p->stop.data = p;
  CHECK_OK(pthread_create(&p->thread, NULL, pm_run, p));
}

static void pm_start(struct pm *p) { pm_start_log(p, NULL, NULL); }

static void pm_stop(struct pm *p)
{
  uv_async_send(&p->stop);
  pthread_join(p->thread, NULL);
  CHECK_OK(uv_loop_close(&p->loop));
}

static int getport(struct pm *p, uint32_t prog, uint32_t vers, uint32_t prot)
{
  char err[256];
  int port = portmap_getport((struct sockaddr *)&p->addr, prog, vers, prot, err, sizeof err);
  CHECK_MSG(port >= 0, "GETPORT: %s", err);
  return port;
}

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int garbage_lines, summaries;

static void pm_log(void *ctx, const char *line)
{
  (void)ctx;
  pthread_mutex_lock(&log_lock);
  garbage_lines += strstr(line, "2-byte record that is not an RPC call") != NULL;
  summaries += strstr(line, "more like this suppressed within a second") != NULL;
  pthread_mutex_unlock(&log_lock);
}

TEST(a_garbage_flood_is_a_few_lines_and_a_count)
{
  struct pm p;
  pm_start_log(&p, pm_log, NULL);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  CHECK(fd >= 0);
  for (int i = 0; i < 100; i++)
    CHECK(sendto(fd, "xx", 2, 0, (struct sockaddr *)&p.addr, sizeof p.addr) == 2);
  close(fd);
  /* The server's timer says what it held back once the second is over. */
  int got = 0;
  for (int i = 0; i < 300 && !got; i++) {
    usleep(10000);
    pthread_mutex_lock(&log_lock);
    got = summaries;
    pthread_mutex_unlock(&log_lock);
  }
  CHECK_INT(got, ==, 1);
  CHECK_INT(garbage_lines, ==, RPCSRV_LOG_BURST + 1); /* the summary quotes the last */
  pm_stop(&p);
}

TEST(getport_answers_our_mappings)
{
  struct pm p;
  pm_start(&p);
  CHECK_INT(getport(&p, 100003, 3, PMAP2_IPPROTO_TCP), ==, 2049);
  CHECK_INT(getport(&p, 100003, 3, PMAP2_IPPROTO_UDP), ==, 2050);
  CHECK_INT(getport(&p, 100005, 3, PMAP2_IPPROTO_TCP), ==, 2049);
  CHECK_INT(getport(&p, 100005, 1, PMAP2_IPPROTO_UDP), ==, 2050);
  CHECK_INT(getport(&p, 100003, 2, PMAP2_IPPROTO_TCP), ==, 0); /* NFSv2: not served */
  CHECK_INT(getport(&p, 100021, 4, PMAP2_IPPROTO_TCP), ==, 0); /* NLM: not served */
  CHECK_INT(getport(&p, 100000, 2, PMAP2_IPPROTO_TCP), ==, p.port); /* itself */
  pm_stop(&p);
}

TEST(dump_over_tcp_lists_every_mapping)
{
  struct pm p;
  pm_start(&p);
  int fd = raw_connect(p.port);
  struct oncrpc_reply r;
  struct xdr_dec res;
  uint8_t *rec = call_raw(fd, 5, PMAP2_PROGRAM, 2, PMAP2_PROC_DUMP, NULL, 0, &r, &res);
  CHECK_INT(r.accept_stat, ==, ONCRPC_SUCCESS);
  int n = 0, nfs_tcp = 0;
  for (;;) {
    bool more;
    CHECK_OK(xdr_dec_bool(&res, &more));
    if (!more)
      break;
    struct pmap2_mapping m;
    CHECK_OK(pmap2_dec_mapping(&res, &m));
    n++;
    nfs_tcp += m.prog == 100003 && m.vers == 3 && m.prot == 6 && m.port == 2049;
  }
  CHECK_INT(n, ==, 8); /* NFS v3, MOUNT v1+v3, PMAP v2 itself: tcp and udp */
  CHECK_INT(nfs_tcp, ==, 1);
  free(rec);
  /* CALLIT is not served. */
  uint8_t args[16] = {0};
  rec = call_raw(fd, 6, PMAP2_PROGRAM, 2, PMAP2_PROC_CALLIT, args, sizeof args, &r, &res);
  CHECK_INT(r.accept_stat, ==, ONCRPC_PROC_UNAVAIL);
  free(rec);
  /* GETPORT with missing arguments: GARBAGE_ARGS. */
  rec = call_raw(fd, 7, PMAP2_PROGRAM, 2, PMAP2_PROC_GETPORT, args, 8, &r, &res);
  CHECK_INT(r.accept_stat, ==, ONCRPC_GARBAGE_ARGS);
  free(rec);
  close(fd);
  pm_stop(&p);
}

TEST(register_and_unregister_with_a_port_mapper)
{
  struct pm p;
  pm_start(&p);
  char err[256];
  /* Another service registered itself meanwhile; a stale NFS entry too. */
  CHECK_OK(portmap_register((struct sockaddr *)&p.addr, 3049, 3050, err, sizeof err));
  CHECK_INT(getport(&p, 100003, 3, PMAP2_IPPROTO_TCP), ==, 3049);
  CHECK_INT(getport(&p, 100003, 3, PMAP2_IPPROTO_UDP), ==, 3050);
  CHECK_INT(getport(&p, 100005, 1, PMAP2_IPPROTO_TCP), ==, 3049);
  CHECK_INT(getport(&p, 100005, 3, PMAP2_IPPROTO_UDP), ==, 3050);
  /* TCP only. */
  CHECK_OK(portmap_register((struct sockaddr *)&p.addr, 4049, 0, err, sizeof err));
  CHECK_INT(getport(&p, 100003, 3, PMAP2_IPPROTO_TCP), ==, 4049);
  CHECK_INT(getport(&p, 100003, 3, PMAP2_IPPROTO_UDP), ==, 0);
  CHECK_OK(portmap_unregister((struct sockaddr *)&p.addr, err, sizeof err));
  CHECK_INT(getport(&p, 100003, 3, PMAP2_IPPROTO_TCP), ==, 0);
  CHECK_INT(getport(&p, 100005, 3, PMAP2_IPPROTO_TCP), ==, 0);
  pm_stop(&p);
}

TEST(no_port_mapper_is_a_clear_error)
{
  /* A port nobody listens on: refused at once, not after a timeout. */
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in sin = {.sin_family = AF_INET};
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK_OK(bind(fd, (struct sockaddr *)&sin, sizeof sin));
  socklen_t len = sizeof sin;
  CHECK_OK(getsockname(fd, (struct sockaddr *)&sin, &len));
  close(fd); /* now free */
  char err[256] = "";
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int rc = portmap_register((struct sockaddr *)&sin, 2049, 2049, err, sizeof err);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  CHECK_INT(rc, <, 0);
  CHECK_MSG(strstr(err, "port mapper") != NULL, "%s", err);
  CHECK_MSG(strstr(err, "refused") != NULL, "%s", err);
  CHECK_INT(t1.tv_sec - t0.tv_sec, <, PORTMAP_TIMEOUT_MS / 1000 + 1);
}

/* SET/UNSET from a non-loopback address answer false and change nothing. */
TEST(set_and_unset_only_from_loopback)
{
  struct pmapsrv *pm;
  struct rpcsrv *rpc;
  CHECK_OK(pmapsrv_new(&pm));
  CHECK_OK(rpcsrv_new(&rpc));
  CHECK_OK(pmapsrv_register(pm, rpc));
  struct rpcsrv_peer far = {0}, near = {0};
  struct sockaddr_in *a = (struct sockaddr_in *)&far.addr;
  a->sin_family = AF_INET;
  inet_pton(AF_INET, "192.0.2.7", &a->sin_addr);
  a = (struct sockaddr_in *)&near.addr;
  a->sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &a->sin_addr);
  const struct rpcsrv_peer *peers[2] = {&far, &near};
  for (int who = 0; who < 2; who++) {
    for (uint32_t proc = PMAP2_PROC_SET; proc <= PMAP2_PROC_UNSET; proc++) {
      struct xdr_enc args, call, out;
      xdr_enc_init(&args, 64);
      struct pmap2_mapping m = {200000, 1, PMAP2_IPPROTO_TCP, 999};
      pmap2_enc_mapping(&args, &m);
      call_build(&call, 1, PMAP2_PROGRAM, 2, proc, NULL, args.buf, args.len);
      xdr_enc_init(&out, 4096);
      CHECK_INT(rpcsrv_dispatch(rpc, call.buf, call.len, peers[who], &out), ==, 1);
      struct xdr_dec d;
      struct oncrpc_reply r;
      xdr_dec_init(&d, out.buf, out.len);
      CHECK_OK(oncrpc_dec_reply(&d, &r));
      CHECK_INT(r.accept_stat, ==, ONCRPC_SUCCESS);
      bool ok;
      CHECK_OK(xdr_dec_bool(&d, &ok));
      CHECK_INT(ok, ==, who == 1);
      CHECK_INT(pmapsrv_count(pm), ==, who == 1 && proc == PMAP2_PROC_SET ? 1 : 0);
      xdr_enc_free(&args);
      xdr_enc_free(&call);
      xdr_enc_free(&out);
    }
  }
  /* The table is bounded. */
  for (uint32_t i = 0; i < PMAPSRV_MAPPINGS_MAX; i++) {
    struct pmap2_mapping m = {300000 + i, 1, PMAP2_IPPROTO_UDP, 1000};
    CHECK_OK(pmapsrv_set(pm, &m));
  }
  struct pmap2_mapping m = {400000, 1, PMAP2_IPPROTO_UDP, 1000};
  CHECK_INT(pmapsrv_set(pm, &m), ==, -ENOSPC);
  rpcsrv_free(rpc);
  pmapsrv_free(pm);
}

/* rpcbind v4 GETADDR (what mount.nfs asks for an IPv6 server) from the same
 * table; v3 too; unknown netids and programs get "". */
static void getaddr_from(struct rpcsrv *rpc, const struct rpcsrv_peer *peer, uint32_t vers,
                         uint32_t proc, uint32_t prog, uint32_t pvers, const char *netid,
                         const char *want)
{
  struct xdr_enc args, call, out;
  xdr_enc_init(&args, 256);
  xdr_enc_u32(&args, prog);
  xdr_enc_u32(&args, pvers);
  xdr_enc_str(&args, netid);
  xdr_enc_str(&args, "");
  xdr_enc_str(&args, "test");
  call_build(&call, 3, PMAP2_PROGRAM, vers, proc, NULL, args.buf, args.len);
  xdr_enc_init(&out, 4096);
  CHECK_INT(rpcsrv_dispatch(rpc, call.buf, call.len, peer, &out), ==, 1);
  struct xdr_dec d;
  struct oncrpc_reply r;
  xdr_dec_init(&d, out.buf, out.len);
  CHECK_OK(oncrpc_dec_reply(&d, &r));
  CHECK_INT(r.accept_stat, ==, ONCRPC_SUCCESS);
  struct xdr_bytes got;
  CHECK_OK(xdr_dec_bytes(&d, 200, &got));
  CHECK_MSG(got.len == strlen(want) && memcmp(got.data, want, got.len) == 0,
            "v%u GETADDR %u/%u %s: '%.*s', want '%s'", vers, prog, pvers, netid, (int)got.len,
            (const char *)got.data, want);
  xdr_enc_free(&args);
  xdr_enc_free(&call);
  xdr_enc_free(&out);
}

static void getaddr(struct rpcsrv *rpc, uint32_t vers, uint32_t proc, uint32_t prog,
                    uint32_t pvers, const char *netid, const char *want)
{
  getaddr_from(rpc, NULL, vers, proc, prog, pvers, netid, want);
}

/* A caller at ADDR (numeric), port 700. */
static struct rpcsrv_peer peer_at(const char *addr)
{
  struct rpcsrv_peer p = {.stream = true};
  snprintf(p.name, sizeof p.name, "%s", addr);
  struct sockaddr_in *sin = (struct sockaddr_in *)&p.addr;
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&p.addr;
  if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons(700);
    p.addrlen = sizeof *sin;
  } else {
    CHECK(inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(700);
    p.addrlen = sizeof *sin6;
  }
  return p;
}

/* A PMAP server on a dispatcher (*rpc), with our mappings on port 2049. */
static struct pmapsrv *pm_table(struct rpcsrv **rpc)
{
  struct pmapsrv *pm;
  CHECK_OK(pmapsrv_new(&pm));
  CHECK_OK(rpcsrv_new(rpc));
  CHECK_OK(pmapsrv_register(pm, *rpc));
  struct pmap2_mapping maps[6];
  size_t n = portmap_our_mappings(2049, 2049, maps, 6);
  CHECK_INT(n, ==, 6);
  for (size_t i = 0; i < n; i++)
    CHECK_OK(pmapsrv_set(pm, &maps[i]));
  return pm;
}

TEST(rpcbind_getaddr_of_a_wildcard_names_the_address_called)
{
  struct rpcsrv *rpc;
  struct pmapsrv *pm = pm_table(&rpc);
  CHECK_OK(pmapsrv_set_hosts(pm, "0.0.0.0", "::")); /* --nfs 0.0.0.0:2049 --nfs [::]:2049 */
  struct rpcsrv_peer v4 = peer_at("127.0.0.1");
  getaddr_from(rpc, &v4, 4, 3, 100003, 3, "tcp", "127.0.0.1.8.1");
  getaddr_from(rpc, &v4, 3, 3, 100005, 3, "udp", "127.0.0.1.8.1");
  int fd6 = socket(AF_INET6, SOCK_DGRAM, 0);
  struct sockaddr_in6 lo6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT,
                             .sin6_port = htons(9)};
  if (fd6 >= 0 && connect(fd6, (struct sockaddr *)&lo6, sizeof lo6) == 0) { /* IPv6 here */
    struct rpcsrv_peer v6 = peer_at("::1");
    getaddr_from(rpc, &v6, 4, 3, 100003, 3, "tcp6", "::1.8.1");
  }
  if (fd6 >= 0)
    close(fd6);
  /* Who cannot be told (no peer, or an IPv4 caller asking for tcp6) gets
   * the wildcard, as before. */
  getaddr(rpc, 4, 3, 100003, 3, "tcp", "0.0.0.0.8.1");
  getaddr_from(rpc, &v4, 4, 3, 100003, 3, "tcp6", "::.8.1");
  /* A named host is answered as it is, whoever asks. */
  CHECK_OK(pmapsrv_set_hosts(pm, "192.0.2.7", "::1"));
  getaddr_from(rpc, &v4, 4, 3, 100003, 3, "tcp", "192.0.2.7.8.1");
  rpcsrv_free(rpc);
  pmapsrv_free(pm);
}

TEST(rpcbind_getaddr_for_ipv6_clients)
{
  struct rpcsrv *rpc;
  struct pmapsrv *pm = pm_table(&rpc);
  getaddr(rpc, 4, 3, 100003, 3, "tcp6", ""); /* no IPv6 host yet */
  CHECK_OK(pmapsrv_set_hosts(pm, "127.0.0.1", "::1"));
  getaddr(rpc, 4, 3, 100003, 3, "tcp6", "::1.8.1");
  getaddr(rpc, 4, 3, 100005, 3, "udp6", "::1.8.1");
  getaddr(rpc, 4, 9, 100005, 1, "tcp", "127.0.0.1.8.1"); /* GETVERSADDR */
  getaddr(rpc, 3, 3, 100005, 1, "udp", "127.0.0.1.8.1");
  getaddr(rpc, 4, 3, 100003, 4, "tcp6", "");  /* NFSv4: not served */
  getaddr(rpc, 4, 3, 100003, 3, "rdma", "");  /* unknown netid */
  getaddr(rpc, 4, 3, 100003, 3, "", "");
  CHECK_INT(pmapsrv_set_hosts(pm, "127.0.0.1", "0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000"), ==,
           -EINVAL);
  rpcsrv_free(rpc);
  pmapsrv_free(pm);
}
