/* The serving loop; see daemon.h. */
#include "server/daemon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <uv.h>

#include "server/ctl.h"
#include "server/drc.h"
#include "server/exports.h"
#include "server/mount.h"
#include "server/portmap.h"
#include "server/rpc.h"
#include "server/tcp.h"
#include "server/udp.h"
#include "store/error.h"
#include "store/fs.h"
#include "store/key.h"
#include "store/view.h"

#define TICK_MS 100
/* Precomputed ECDSA nonces (store/key.h): each CREATE, REMOVE and COMMIT
 * signs an entry on the loop; from the pool that costs microseconds instead
 * of ~0.35 ms, and a background thread refills it while the loop waits on
 * fsync or idles. 96 bytes each: 24 KiB. */
#define PRESIGN_NONCES 256

struct daemon {
  const struct daemon_config *cfg;
  struct fs *fs;
  uv_loop_t loop;
  uv_signal_t sigterm, sigint;
  uv_timer_t timer;
  uv_async_t sealed; /* a background seal finished (nfsd_set_wake) */
  bool sealed_init;
  struct tcpsrv *tcp[DAEMON_ADDRS_MAX];
  struct sockaddr_storage tcp_addr[DAEMON_ADDRS_MAX]; /* tcp[i]'s address, port as bound */
  bool tcp_udp[DAEMON_ADDRS_MAX];                     /* UDP serves tcp[i]'s port too */
  int ntcp;
  struct udpsrv *udp[DAEMON_ADDRS_MAX];
  int nudp;
  struct ctlsrv *ctl;
  int stopped; /* transports fully stopped */
  struct portmap_server *pmap; /* --portmap */
  struct nfsd *nfsd;
  struct rpcsrv *rpc;
  bool stopping;
  uint64_t last_ckpt_ns;
  hash_t ckpt_root; /* the view's Merkle root at the last checkpoint */
};

static uint64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void dlog(struct daemon *dm, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void dlog(struct daemon *dm, int level, const char *fmt, ...)
{
  if (!dm->cfg->log)
    return;
  char line[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  dm->cfg->log(dm->cfg->log_ctx, level, line);
}

static void rpc_log(void *ctx, const char *line)
{
  dlog(ctx, NFSD_LOG_WARN, "rpc: %s", line);
}

static void on_stopped(void *arg)
{
  struct daemon *dm = arg;
  if (++dm->stopped < dm->ntcp + dm->nudp + (dm->pmap != NULL) + (dm->ctl != NULL))
    return;
  uv_close((uv_handle_t *)&dm->sigterm, NULL);
  uv_close((uv_handle_t *)&dm->sigint, NULL);
  uv_close((uv_handle_t *)&dm->timer, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
  struct daemon *dm = s->data;
  if (dm->stopping)
    return;
  dm->stopping = true;
  dlog(dm, NFSD_LOG_INFO, "%s: stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
  for (int i = 0; i < dm->ntcp; i++)
    tcpsrv_stop(dm->tcp[i], on_stopped, dm);
  for (int i = 0; i < dm->nudp; i++)
    udpsrv_stop(dm->udp[i], on_stopped, dm);
  if (dm->pmap)
    portmap_serve_stop(dm->pmap, on_stopped, dm);
  if (dm->ctl)
    ctlsrv_stop(dm->ctl, on_stopped, dm);
}

/* Before a CLI command is answered: what NFS COMMITted becomes visible. */
static void before_ctl(void *arg)
{
  struct daemon *dm = arg;
  nfsd_flush(dm->nfsd);
}

static int ss_port(const struct sockaddr_storage *ss)
{
  return ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
                                         : ((const struct sockaddr_in *)ss)->sin_port);
}

static void ss_set_port(struct sockaddr_storage *ss, int port)
{
  if (ss->ss_family == AF_INET6)
    ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
  else
    ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
}

static void ss_host(const struct sockaddr_storage *ss, char *out, size_t cap)
{
  if (ss->ss_family == AF_INET6)
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, out, (socklen_t)cap);
  else
    inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, (socklen_t)cap);
}

/* What port mapping advertises for FAMILY: the ports of the first address
 * of that family we listen on (*tcp 0: none). A port mapper keeps one port
 * per (program, version, netid), so another address of the same family
 * on another port cannot be advertised: one warning says so. Returns the
 * index in dm->tcp, or -1. */
static int advertised(struct daemon *dm, int family, int *tcp, int *udp)
{
  int first = -1;
  *tcp = *udp = 0;
  for (int i = 0; i < dm->ntcp; i++) {
    if (dm->tcp_addr[i].ss_family != family)
      continue;
    int port = ss_port(&dm->tcp_addr[i]);
    if (first < 0) {
      first = i;
      *tcp = port;
      *udp = dm->tcp_udp[i] ? port : 0;
    } else if (port != *tcp) {
      char h[INET6_ADDRSTRLEN];
      ss_host(&dm->tcp_addr[i], h, sizeof h);
      dlog(dm, NFSD_LOG_WARN,
           "port mapping advertises %s port %d only: clients of %s%s%s:%d need -o "
           "port=%d,mountport=%d",
           family == AF_INET6 ? "IPv6" : "IPv4", *tcp, family == AF_INET6 ? "[" : "", h,
           family == AF_INET6 ? "]" : "", port, port, port);
    }
  }
  return first;
}

/* Port mapping (server/portmap.h): with --portmap we answer PMAP on port
 * 111 of every NFS address; otherwise a daemon listening on port 2049
 * registers with the host's rpcbind. Each family is advertised with its
 * own port (advertised()). Returns 0 or an error that stops the start-up
 * (only --portmap's: registering is never fatal). Sets *registered. */
static int portmap_start(struct daemon *dm, bool *registered)
{
  *registered = false;
  struct portmap_ports pp;
  int i4 = advertised(dm, AF_INET, &pp.tcp, &pp.udp);
  int i6 = advertised(dm, AF_INET6, &pp.tcp6, &pp.udp6);
  char h6[INET6_ADDRSTRLEN] = "";
  if (i6 >= 0)
    ss_host(&dm->tcp_addr[i6], h6, sizeof h6);
  char err[300];
  if (!dm->cfg->portmap) {
    if (pp.tcp != 2049 && pp.tcp6 != 2049)
      return 0;
    /* PMAP v2 registers IPv4 (netids tcp, udp); IPv6 clients ("localhost"
     * is ::1 first on most hosts) ask rpcbind v4 for tcp6/udp6. */
    if (i4 >= 0 && portmap_register(NULL, pp.tcp, pp.udp, err, sizeof err) < 0) {
      dlog(dm, NFSD_LOG_WARN,
           "not registered with rpcbind: %s (clients need -o port=%d,mountport=%d, or serve "
           "--portmap)",
           err, pp.tcp, pp.tcp);
      return 0;
    }
    *registered = i4 >= 0;
    bool reg6 = false;
    if (i6 >= 0) {
      if (portmap_register6(NULL, h6, pp.tcp6, pp.udp6, err, sizeof err) < 0)
        dlog(dm, NFSD_LOG_WARN, "not registered for IPv6 with rpcbind: %s", err);
      else
        *registered = reg6 = true;
    }
    if (*registered && reg6 && i4 >= 0 && pp.tcp != pp.tcp6)
      dlog(dm, NFSD_LOG_INFO,
           "registered NFS and MOUNT on port %d for IPv4 and port %d for IPv6 with rpcbind",
           pp.tcp, pp.tcp6);
    else if (*registered)
      dlog(dm, NFSD_LOG_INFO, "registered NFS and MOUNT on port %d with rpcbind",
           i4 >= 0 ? pp.tcp : pp.tcp6);
    return 0;
  }
  if (i4 < 0) { /* PMAP v2 GETPORT has no family: answer the IPv6 ports */
    pp.tcp = pp.tcp6;
    pp.udp = pp.udp6;
  }
  struct sockaddr_storage pa[DAEMON_ADDRS_MAX];
  const struct sockaddr *pv[DAEMON_ADDRS_MAX];
  for (int i = 0; i < dm->ntcp; i++) {
    pa[i] = dm->tcp_addr[i];
    ss_set_port(&pa[i], PMAP2_PORT);
    pv[i] = (const struct sockaddr *)&pa[i];
  }
  int r = portmap_serve(&dm->loop, pv, (size_t)dm->ntcp, &pp, rpc_log, dm, &dm->pmap, NULL);
  if (r < 0) {
    uv_run(&dm->loop, UV_RUN_NOWAIT); /* releases the failed handles */
    dm->pmap = NULL;
    return r;
  }
  dlog(dm, NFSD_LOG_INFO, "answering port mapping (PMAP v2) on port %d", PMAP2_PORT);
  return 0;
}

static void checkpoint(struct daemon *dm, uint64_t now)
{
  hash_t root;
  view_merkle_root(fs_view(dm->fs), &root);
  dm->last_ckpt_ns = now;
  if (hash_cmp(&root, &dm->ckpt_root) == 0)
    return;
  int r = fs_checkpoint(dm->fs);
  if (r < 0) {
    dlog(dm, NFSD_LOG_WARN, "checkpoint failed: %s", bfs_strerror(r));
    return;
  }
  dm->ckpt_root = root;
  dlog(dm, NFSD_LOG_DEBUG, "checkpoint written");
}

/* On a seal's worker thread: wakes the loop, which logs the version. */
static void wake_loop(void *ctx)
{
  uv_async_send(ctx);
}

static void on_sealed(uv_async_t *a)
{
  struct daemon *dm = a->data;
  nfsd_poll(dm->nfsd);
}

static void on_tick(uv_timer_t *t)
{
  struct daemon *dm = t->data;
  uint64_t now = now_ns();
  nfsd_tick(dm->nfsd, now);
  rpcsrv_log_flush(dm->rpc); /* sums up a protocol-error flood that stopped */
  if (now - dm->last_ckpt_ns >= DAEMON_CHECKPOINT_S * 1000000000ull)
    checkpoint(dm, now);
}

/* "127.0.0.1:2049" for the log, with the bound port. */
static void addr_name(const char *addr, int port, char *out, size_t cap)
{
  const char *colon = strrchr(addr, ':');
  snprintf(out, cap, "%.*s:%d", colon ? (int)(colon - addr) : 0, addr, port);
}

int daemon_parse_spin_us(const char *s, unsigned *out)
{
  if (!s || s[0] < '0' || s[0] > '9')
    return -EINVAL;
  char *end;
  errno = 0;
  unsigned long us = strtoul(s, &end, 10);
  if (*end || errno || us > DAEMON_SPIN_US_MAX)
    return -EINVAL;
  *out = (unsigned)us;
  return 0;
}

int daemon_repeated_addr(const char *const *addrs, int n)
{
  struct sockaddr_storage a, b;
  for (int i = 0; i < n; i++) {
    if (tcpsrv_parse_addr(addrs[i], &a) < 0)
      return -EINVAL;
    if (ss_port(&a) == 0)
      continue;
    for (int j = 0; j < i; j++) {
      if (tcpsrv_parse_addr(addrs[j], &b) < 0 || a.ss_family != b.ss_family ||
          ss_port(&a) != ss_port(&b))
        continue;
      bool same = a.ss_family == AF_INET6
                      ? memcmp(&((struct sockaddr_in6 *)&a)->sin6_addr,
                               &((struct sockaddr_in6 *)&b)->sin6_addr, 16) == 0
                      : ((struct sockaddr_in *)&a)->sin_addr.s_addr ==
                            ((struct sockaddr_in *)&b)->sin_addr.s_addr;
      if (same)
        return i;
    }
  }
  return -1;
}

/* Descriptors: up to TCPSRV_CONNS_MAX connections, NFSD_STAGED_MAX staged
 * files and their pools, the store's. A common soft limit is 1024 (the hard
 * one far above): raise the soft limit to DAEMON_FDS (or the hard limit),
 * or the 1025th descriptor would fail a WRITE or an accept. */
#define DAEMON_FDS 65536
static void raise_fd_limit(struct daemon *dm)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
    return;
  rlim_t want = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < DAEMON_FDS ? rl.rlim_max : DAEMON_FDS;
  if (rl.rlim_cur >= want)
    return;
  rlim_t was = rl.rlim_cur;
  rl.rlim_cur = want;
  if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
    rl.rlim_cur = was;
  if (rl.rlim_cur < TCPSRV_CONNS_MAX + NFSD_STAGED_MAX + 128)
    dlog(dm, NFSD_LOG_WARN, "only %llu file descriptors (ulimit -n): fewer connections or staged files fit",
         (unsigned long long)rl.rlim_cur);
  else
    dlog(dm, NFSD_LOG_DEBUG, "file descriptors: %llu (was %llu)", (unsigned long long)rl.rlim_cur,
         (unsigned long long)was);
}

int daemon_run(const struct daemon_config *cfg, const char **why, const char **what)
{
  const char *dummy, *dummy2;
  if (!why)
    why = &dummy;
  if (!what)
    what = &dummy2;
  *why = *what = NULL;
  struct daemon dm = {.cfg = cfg};
  struct key *key = NULL;
  struct rpcsrv *rpc = NULL;
  struct mountd *mountd = NULL;
  struct exports *ex = NULL;
  struct drc *drc = NULL;
  static char exports_err[512];
  bool loop_init = false;
  struct sockaddr_storage ss[DAEMON_ADDRS_MAX];
  int r = 0;
  if (cfg->naddrs < 1 || cfg->naddrs > DAEMON_ADDRS_MAX)
    return -EINVAL;
  for (int i = 0; i < cfg->naddrs; i++)
    if ((r = tcpsrv_parse_addr(cfg->addrs[i], &ss[i])) < 0) {
      *why = "address";
      *what = cfg->addrs[i];
      return r;
    }
  /* No exports file is an empty one: loopback clients only. */
  r = cfg->exports_path ? exports_load(cfg->exports_path, &ex, exports_err, sizeof exports_err)
                        : exports_parse("", 0, &ex, exports_err, sizeof exports_err);
  if (r < 0) {
    *why = "exports";
    *what = exports_err;
    return r;
  }
  signal(SIGPIPE, SIG_IGN);
  raise_fd_limit(&dm);
  if ((r = fs_open(cfg->home, cfg->name, true, &dm.fs)) < 0) {
    *why = "open";
    return r;
  }
  if (cfg->key_path) {
    r = key_load(cfg->key_path, &key);
    if (r == -ENOENT) {
      dlog(&dm, NFSD_LOG_WARN, "no key at %s: serving read-only", cfg->key_path);
      r = 0;
    } else if (r < 0) {
      *why = "key";
      goto out;
    }
  }
  if ((r = nfsd_new(dm.fs, key, cfg->log, cfg->log_ctx, &dm.nfsd)) < 0) {
    *why = "staging";
    goto out;
  }
  if (key && nfsd_readonly(dm.nfsd))
    dlog(&dm, NFSD_LOG_WARN, "the key %s holds no grant in %s: serving read-only",
         cfg->key_path, cfg->name);
  /* Also when read-only for now: a grant may arrive. Without the pool every
   * signature is simply computed in place. */
  int pr = key ? key_presign_start(PRESIGN_NONCES) : 0;
  if (pr < 0)
    dlog(&dm, NFSD_LOG_WARN, "no precomputed signatures: %s", bfs_strerror(pr));
  if ((r = rpcsrv_new(&rpc)) < 0)
    goto out;
  rpcsrv_set_log(rpc, rpc_log, &dm);
  dm.rpc = rpc;
  rpcsrv_set_exports(rpc, ex);
  if ((r = drc_new(DRC_ENTRIES_DEFAULT, DRC_BYTES_DEFAULT, &drc)) < 0)
    goto out;
  rpcsrv_set_drc(rpc, drc);
  struct mountd_config mc = {.export_path = "/basefs", .root_fh = nfsd_root_fh, .ctx = dm.nfsd,
                             .groups = exports_groups(ex)}; /* showmount -e */
  if ((r = mountd_new(&mc, &mountd)) < 0 || (r = mountd_register(mountd, rpc)) < 0 ||
      (r = nfsd_register(rpc, dm.nfsd)) < 0)
    goto out;
  if ((r = uv_loop_init(&dm.loop)) < 0)
    goto out;
  loop_init = true;
  /* The control socket is up before NFS answers (a script may use the CLI
   * as soon as the NFS port accepts connections). */
  if ((r = ctlsrv_start(&dm.loop, dm.fs, fs_dir(dm.fs), before_ctl, &dm, &dm.ctl)) < 0) {
    *why = "control socket";
    *what = fs_dir(dm.fs);
    dm.ctl = NULL;
    uv_run(&dm.loop, UV_RUN_DEFAULT);
    goto out;
  }
  char names[DAEMON_ADDRS_MAX * 64] = "";
  for (int i = 0; i < cfg->naddrs; i++) {
    struct tcpsrv *t = NULL;
    int lr = tcpsrv_start(&dm.loop, rpc, (struct sockaddr *)&ss[i], &t);
    if (lr == 0) {
      tcpsrv_set_spin(t, (uint64_t)cfg->spin_us * 1000);
      if (i == 0)
        dlog(&dm, NFSD_LOG_DEBUG, "tcp: after a reply, polling %u us for the next call", cfg->spin_us);
    }
    if (lr < 0) {
      uv_run(&dm.loop, UV_RUN_NOWAIT); /* releases the failed handle (tcp.h) */
      if (cfg->optional[i]) {
        dlog(&dm, NFSD_LOG_WARN, "not listening on %s: %s", cfg->addrs[i], bfs_strerror(lr));
        continue;
      }
      r = lr;
      *why = "listen";
      *what = cfg->addrs[i];
      break;
    }
    /* The address with the port bound (the one bound, when 0 was asked):
     * UDP listens there too, and port mapping advertises it. */
    struct sockaddr_storage *bound = &dm.tcp_addr[dm.ntcp];
    *bound = ss[i];
    ss_set_port(bound, tcpsrv_port(t));
    dm.tcp_udp[dm.ntcp] = false;
    dm.tcp[dm.ntcp++] = t;
    char one[64];
    addr_name(cfg->addrs[i], tcpsrv_port(t), one, sizeof one);
    if (!cfg->no_udp) {
      struct udpsrv *u = NULL;
      int ur = udpsrv_start(&dm.loop, rpc, (struct sockaddr *)bound, &u);
      if (ur < 0) {
        uv_run(&dm.loop, UV_RUN_NOWAIT);
        dlog(&dm, NFSD_LOG_WARN, "no UDP on %s: %s", one, bfs_strerror(ur));
      } else {
        dm.udp[dm.nudp++] = u;
        dm.tcp_udp[dm.ntcp - 1] = true;
      }
    }
    size_t l = strlen(names);
    snprintf(names + l, sizeof names - l, "%s%s", l ? " and " : "", one);
  }
  if (r == 0 && dm.ntcp == 0) {
    r = -EADDRNOTAVAIL;
    *why = "listen";
    *what = cfg->addrs[0];
  }
  bool registered = false;
  if (r == 0 && (r = portmap_start(&dm, &registered)) < 0) {
    *why = "portmap";
    *what = "port 111";
  }
  if (r < 0) {
    for (int i = 0; i < dm.ntcp; i++)
      tcpsrv_stop(dm.tcp[i], NULL, NULL);
    for (int i = 0; i < dm.nudp; i++)
      udpsrv_stop(dm.udp[i], NULL, NULL);
    ctlsrv_stop(dm.ctl, NULL, NULL);
    uv_run(&dm.loop, UV_RUN_DEFAULT);
    goto out;
  }
  uv_signal_init(&dm.loop, &dm.sigterm);
  uv_signal_init(&dm.loop, &dm.sigint);
  uv_timer_init(&dm.loop, &dm.timer);
  dm.sigterm.data = dm.sigint.data = dm.timer.data = &dm;
  uv_signal_start(&dm.sigterm, on_signal, SIGTERM);
  uv_signal_start(&dm.sigint, on_signal, SIGINT);
  uv_timer_start(&dm.timer, on_tick, TICK_MS, TICK_MS);
  /* Unreferenced: it stays open (a worker may still send) until the last
   * seal below, without keeping the loop running at shutdown. */
  if (uv_async_init(&dm.loop, &dm.sealed, on_sealed) == 0) {
    dm.sealed.data = &dm;
    dm.sealed_init = true;
    uv_unref((uv_handle_t *)&dm.sealed);
    nfsd_set_wake(dm.nfsd, wake_loop, &dm.sealed);
  }
  dm.last_ckpt_ns = now_ns();
  view_merkle_root(fs_view(dm.fs), &dm.ckpt_root);
  dlog(&dm, NFSD_LOG_INFO, "serving /basefs of %s on %s (%s)", cfg->name, names,
       nfsd_readonly(dm.nfsd) ? "read-only" : "read-write");
  dlog(&dm, NFSD_LOG_INFO, "TCP%s; exports: %s", dm.nudp ? " and UDP" : " only",
       cfg->exports_path ? cfg->exports_path : "none (loopback clients only)");
  dlog(&dm, NFSD_LOG_DEBUG, "control socket %s/ctl", fs_dir(dm.fs));
  uv_run(&dm.loop, UV_RUN_DEFAULT);
  if (registered) {
    char perr[300];
    if (portmap_unregister(NULL, perr, sizeof perr) < 0)
      dlog(&dm, NFSD_LOG_WARN, "could not unregister from rpcbind: %s", perr);
  }
  int sealed = nfsd_seal_all(dm.nfsd);
  if (sealed < 0)
    dlog(&dm, NFSD_LOG_ERROR, "some staged data could not be sealed (kept in %s/stage): %s",
         fs_dir(dm.fs), bfs_strerror(sealed));
  else if (sealed > 0)
    dlog(&dm, NFSD_LOG_INFO, "sealed %d staged file(s)", sealed);
  nfsd_set_wake(dm.nfsd, NULL, NULL); /* no worker runs after nfsd_seal_all */
  if (dm.sealed_init) {
    uv_close((uv_handle_t *)&dm.sealed, NULL);
    uv_run(&dm.loop, UV_RUN_NOWAIT);
  }
  r = 0;
out:
  if (loop_init)
    uv_loop_close(&dm.loop);
  nfsd_free(dm.nfsd);
  mountd_free(mountd);
  rpcsrv_free(rpc);
  drc_free(drc);
  exports_free(ex);
  int cr = fs_close(dm.fs);
  if (r == 0 && cr < 0) {
    *why = "close";
    r = cr;
  }
  if (key) {
    struct key_presign_stats ps;
    key_presign_stats(&ps);
    dlog(&dm, NFSD_LOG_DEBUG, "signatures: %llu from precomputed nonces, %llu computed in place (pool empty)",
         (unsigned long long)ps.taken, (unsigned long long)ps.fallbacks);
  }
  key_presign_stop();
  key_free(key);
  if (r == 0)
    dlog(&dm, NFSD_LOG_INFO, "stopped");
  return r;
}
