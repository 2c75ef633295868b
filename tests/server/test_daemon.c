/* server/daemon: daemon_run() itself — what `basefs serve` runs — on
 * 127.0.0.1 with an ephemeral port, driven by raw RPC from outside: its
 * wiring of the duplicate-request cache (a retransmitted CREATE/REMOVE over
 * UDP, same xid from the same socket), --no-udp (no UDP socket, TCP
 * still answers), and its log (protocol errors are rate-limited). */
#include <signal.h>

#include "server/daemon.h"
#include "tests/server/deploy_harness.h"

struct dmn {
  struct dep d; /* the filesystem (d.s.home, d.s.key), the log and, after dmn_mount, its root */
  struct daemon_config cfg;
  char key_path[600];
  pthread_t thread;
  int rc;
  const char *why, *what;
  int port;
};

static void dmn_log(void *ctx, int level, const char *line)
{
  (void)level;
  dep_log(&((struct dmn *)ctx)->d, line);
}

static void *dmn_thread(void *arg)
{
  struct dmn *m = arg;
  m->rc = daemon_run(&m->cfg, &m->why, &m->what);
  return NULL;
}

/* A filesystem "t" with its key on disk, served by daemon_run on
 * 127.0.0.1:<free port> (m->port once it serves). */
static void dmn_start(struct dmn *m, bool no_udp)
{
  memset(m, 0, sizeof *m);
  pthread_mutex_init(&m->d.log_lock, NULL);
  srv_init(&m->d.s);
  snprintf(m->key_path, sizeof m->key_path, "%s/key", test_tmpdir());
  CHECK_OK(key_save(m->d.s.key, m->key_path));
  m->cfg = (struct daemon_config){.home = m->d.s.home, .name = "t", .naddrs = 1,
                                  .key_path = m->key_path, .no_udp = no_udp, .log = dmn_log,
                                  .log_ctx = m};
  m->cfg.addrs[0] = "127.0.0.1:0";
  CHECK_OK(pthread_create(&m->thread, NULL, dmn_thread, m));
  const char *tag = "serving /basefs of t on 127.0.0.1:";
  for (int i = 0; i < 500 && !m->port; i++) {
    pthread_mutex_lock(&m->d.log_lock);
    const char *p = strstr(m->d.log, tag);
    if (p)
      m->port = atoi(p + strlen(tag));
    pthread_mutex_unlock(&m->d.log_lock);
    if (!m->port)
      usleep(10000);
  }
  CHECK_MSG(m->port > 0, "the daemon did not start: %s", m->d.log);
  m->d.s.port = m->port;
}

static void dmn_stop(struct dmn *m)
{
  kill(getpid(), SIGTERM); /* the daemon's own handler (uv_signal) stops it */
  pthread_join(m->thread, NULL);
  CHECK_MSG(m->rc == 0, "daemon_run: %d (%s)", m->rc, m->why ? m->why : "");
  CHECK_INT(dep_logged(&m->d, "stopped"), ==, 1);
  srv_free(&m->d.s);
}

/* One UDP call from fd; the reply datagram (malloc'd) or NULL after ms. */
static uint8_t *udp_call(int fd, int port, uint32_t xid, uint32_t prog, uint32_t proc,
                         const struct xdr_enc *args, size_t *len, int ms)
{
  struct xdr_enc e;
  call_encode(&e, xid, prog, 3, proc, &dep_root_cred, args);
  udp_send_to(fd, port, e.buf, e.len);
  xdr_enc_free(&e);
  for (;;) {
    uint8_t *rep = udp_recv(fd, len, ms);
    if (!rep || (*len >= 4 && ntohl(*(uint32_t *)rep) == xid))
      return rep;
    free(rep); /* an older reply */
  }
}

/* MOUNT MNT /basefs over UDP: the root handle into m->d.s.root. */
static void dmn_mount(struct dmn *m, int fd)
{
  struct xdr_enc a;
  xdr_enc_init(&a, 64);
  xdr_enc_str(&a, "/basefs");
  size_t len;
  uint8_t *rep = udp_call(fd, m->port, 1, 100005, 1, &a, &len, 5000);
  CHECK_MSG(rep != NULL, "no MNT reply over UDP");
  struct oncrpc_reply r;
  struct xdr_dec res;
  reply_decode(rep, len, 1, &r, &res);
  CHECK_INT(r.accept_stat, ==, ONCRPC_SUCCESS);
  CHECK_INT(res_status(&res), ==, 0);
  CHECK_OK(xdr_dec_bytes_copy(&res, 64, m->d.s.root, &m->d.s.root_len));
  free(rep);
  xdr_enc_free(&a);
}

/* The nfsstat3 of a reply datagram. */
static uint32_t status_of(uint8_t *rep, size_t len, uint32_t xid)
{
  struct oncrpc_reply r;
  struct xdr_dec res;
  reply_decode(rep, len, xid, &r, &res);
  CHECK_INT(r.accept_stat, ==, ONCRPC_SUCCESS);
  return res_status(&res);
}

TEST(serve_replays_retransmitted_create_and_remove_over_udp)
{
  struct dmn m;
  dmn_start(&m, false);
  int fd = udp_client();
  dmn_mount(&m, fd);
  struct xdr_enc a;
  size_t l1, l2;
  args_create(&a, &m.d, "f");
  uint8_t *r1 = udp_call(fd, m.port, 100, 100003, 8, &a, &l1, 5000);
  CHECK_MSG(r1 != NULL, "no CREATE reply");
  CHECK_INT(status_of(r1, l1, 100), ==, 0);
  /* The same datagram again, from the same socket (a lost reply). */
  uint8_t *r2 = udp_call(fd, m.port, 100, 100003, 8, &a, &l2, 5000);
  CHECK_MSG(r2 != NULL, "no reply to the retransmitted CREATE");
  CHECK_MSG(status_of(r2, l2, 100) == 0, "the retransmitted CREATE ran again (EXIST)");
  CHECK(l1 == l2 && memcmp(r1, r2, l1) == 0);
  free(r1);
  free(r2);
  xdr_enc_free(&a);

  args_remove(&a, &m.d, "f");
  r1 = udp_call(fd, m.port, 101, 100003, 12, &a, &l1, 5000);
  CHECK(r1 != NULL);
  CHECK_INT(status_of(r1, l1, 101), ==, 0);
  r2 = udp_call(fd, m.port, 101, 100003, 12, &a, &l2, 5000);
  CHECK(r2 != NULL);
  CHECK_MSG(status_of(r2, l2, 101) == 0, "the retransmitted REMOVE ran again (NOENT)");
  CHECK(l1 == l2 && memcmp(r1, r2, l1) == 0);
  free(r1);
  free(r2);
  /* A new REMOVE of the name (another xid) runs: NOENT. */
  r1 = udp_call(fd, m.port, 102, 100003, 12, &a, &l1, 5000);
  CHECK(r1 != NULL);
  CHECK_INT(status_of(r1, l1, 102), ==, 2);
  free(r1);
  xdr_enc_free(&a);
  close(fd);
  dmn_stop(&m);
}

/* NULL over UDP and over TCP: whether each answers. */
static void null_calls(struct dmn *m, bool *udp, bool *tcp)
{
  int fd = udp_client();
  size_t len;
  uint8_t *rep = udp_call(fd, m->port, 7, 100003, 0, NULL, &len, 500);
  *udp = rep != NULL;
  free(rep);
  close(fd);
  int t = raw_connect(m->port);
  struct oncrpc_reply r;
  struct xdr_dec res;
  rep = call_raw(t, 8, 100003, 3, 0, NULL, 0, &r, &res);
  *tcp = r.reply_stat == ONCRPC_MSG_ACCEPTED && r.accept_stat == ONCRPC_SUCCESS;
  free(rep);
  close(t);
}

TEST(serve_no_udp_serves_tcp_only)
{
  struct dmn m;
  bool udp, tcp;
  dmn_start(&m, true);
  null_calls(&m, &udp, &tcp);
  CHECK_MSG(!udp, "--no-udp: a NULL over UDP was answered");
  CHECK(tcp);
  CHECK_INT(dep_logged(&m.d, "TCP only;"), ==, 1);
  dmn_stop(&m);
}

TEST(serve_answers_udp_by_default)
{
  struct dmn m;
  bool udp, tcp;
  dmn_start(&m, false);
  null_calls(&m, &udp, &tcp);
  CHECK(udp && tcp);
  CHECK_INT(dep_logged(&m.d, "TCP and UDP;"), ==, 1);
  dmn_stop(&m);
}

TEST(serve_logs_a_garbage_flood_in_a_few_lines)
{
  struct dmn m;
  dmn_start(&m, false);
  int fd = udp_client();
  for (int i = 0; i < 300; i++)
    udp_send_to(fd, m.port, "xx", 2);
  close(fd);
  /* The tick sums up the held-back lines once their second is over,
   * without further traffic. */
  for (int i = 0; i < 300 && !dep_logged(&m.d, "more like this suppressed"); i++)
    usleep(10000);
  CHECK_MSG(dep_logged(&m.d, "more like this suppressed within a second; the last: 127.0.0.1: "
                             "a 2-byte record that is not an RPC call") == 1,
            "log:\n%s", m.d.log);
  /* RPCSRV_LOG_BURST lines, and the summary that quotes the last one. */
  CHECK_INT(dep_logged(&m.d, "not an RPC call"), ==, RPCSRV_LOG_BURST + 1);
  dmn_stop(&m);
}
