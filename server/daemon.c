/* The serving loop; see daemon.h. */
#include "server/daemon.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "server/mount.h"
#include "server/rpc.h"
#include "server/tcp.h"
#include "store/error.h"
#include "store/fs.h"
#include "store/key.h"

#define TICK_MS 500

struct daemon {
  const struct daemon_config *cfg;
  uv_loop_t loop;
  uv_signal_t sigterm, sigint;
  uv_timer_t timer;
  struct tcpsrv *tcp;
  struct nfsd *nfsd;
  bool stopping;
};

static void dlog(struct daemon *dm, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void dlog(struct daemon *dm, int level, const char *fmt, ...)
{
  if (!dm->cfg->log)
    return;
  char line[512];
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
  tcpsrv_stop(dm->tcp, on_stopped, dm);
}

static void on_tick(uv_timer_t *t)
{
  struct daemon *dm = t->data;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  nfsd_tick(dm->nfsd, (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
}

int daemon_run(const struct daemon_config *cfg, const char **why)
{
  const char *dummy;
  if (!why)
    why = &dummy;
  *why = NULL;
  struct daemon dm = {.cfg = cfg};
  struct fs *fs = NULL;
  struct key *key = NULL;
  struct rpcsrv *rpc = NULL;
  struct mountd *mountd = NULL;
  bool loop_init = false;
  struct sockaddr_storage ss;
  int r = tcpsrv_parse_addr(cfg->addr, &ss);
  if (r < 0) {
    *why = "address";
    return r;
  }
  signal(SIGPIPE, SIG_IGN);
  if ((r = fs_open(cfg->home, cfg->name, true, &fs)) < 0) {
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
  if ((r = nfsd_new(fs, key, cfg->log, cfg->log_ctx, &dm.nfsd)) < 0) {
    *why = "staging";
    goto out;
  }
  if (key && nfsd_readonly(dm.nfsd))
    dlog(&dm, NFSD_LOG_WARN, "the key %s holds no grant in %s: serving read-only",
         cfg->key_path, cfg->name);
  if ((r = rpcsrv_new(&rpc)) < 0)
    goto out;
  rpcsrv_set_log(rpc, rpc_log, &dm);
  struct mountd_config mc = {.export_path = "/basefs", .root_fh = nfsd_root_fh, .ctx = dm.nfsd};
  if ((r = mountd_new(&mc, &mountd)) < 0 || (r = mountd_register(mountd, rpc)) < 0 ||
      (r = nfsd_register(rpc, dm.nfsd)) < 0)
    goto out;
  if ((r = uv_loop_init(&dm.loop)) < 0)
    goto out;
  loop_init = true;
  if ((r = tcpsrv_start(&dm.loop, rpc, (struct sockaddr *)&ss, &dm.tcp)) < 0) {
    *why = "listen";
    uv_run(&dm.loop, UV_RUN_DEFAULT); /* releases the handle (tcp.h) */
    goto out;
  }
  uv_signal_init(&dm.loop, &dm.sigterm);
  uv_signal_init(&dm.loop, &dm.sigint);
  uv_timer_init(&dm.loop, &dm.timer);
  dm.sigterm.data = dm.sigint.data = dm.timer.data = &dm;
  uv_signal_start(&dm.sigterm, on_signal, SIGTERM);
  uv_signal_start(&dm.sigint, on_signal, SIGINT);
  uv_timer_start(&dm.timer, on_tick, TICK_MS, TICK_MS);
  char host[64] = "?";
  const char *colon = strrchr(cfg->addr, ':');
  snprintf(host, sizeof host, "%.*s", colon ? (int)(colon - cfg->addr) : 0, cfg->addr);
  dlog(&dm, NFSD_LOG_INFO, "serving /basefs of %s on %s:%d (%s)", cfg->name, host,
       tcpsrv_port(dm.tcp), nfsd_readonly(dm.nfsd) ? "read-only" : "read-write");
  uv_run(&dm.loop, UV_RUN_DEFAULT);
  int sealed = nfsd_seal_all(dm.nfsd);
  if (sealed < 0)
    dlog(&dm, NFSD_LOG_ERROR, "some staged data could not be sealed (kept in %s/stage): %s",
         fs_dir(fs), bfs_strerror(sealed));
  else if (sealed > 0)
    dlog(&dm, NFSD_LOG_INFO, "sealed %d staged file(s)", sealed);
  r = 0;
out:
  if (loop_init)
    uv_loop_close(&dm.loop);
  nfsd_free(dm.nfsd);
  mountd_free(mountd);
  rpcsrv_free(rpc);
  int cr = fs_close(fs);
  if (r == 0 && cr < 0) {
    *why = "close";
    r = cr;
  }
  key_free(key);
  if (r == 0)
    dlog(&dm, NFSD_LOG_INFO, "stopped");
  return r;
}
