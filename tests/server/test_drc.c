/* server/drc: the cache itself, the dispatcher's use of it, and retransmitted
 * CREATE, REMOVE, MKDIR, RMDIR, RENAME, LINK and SETATTR over TCP against
 * the real NFS server (each also without the cache, to show that its
 * second run would answer otherwise). */
#include "tests/server/deploy_harness.h"

static void key_of(struct drc_key *k, const char *ip, uint32_t xid, uint32_t proc,
                   const char *args)
{
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(700)};
  CHECK(inet_pton(AF_INET, ip, &sin.sin_addr) == 1);
  struct oncrpc_call c = {.xid = xid, .prog = 100003, .vers = 3, .proc = proc};
  drc_key_make(k, (struct sockaddr *)&sin, &c, (const uint8_t *)args, strlen(args));
}

TEST(new_in_progress_replay)
{
  struct drc *c;
  CHECK_OK(drc_new(0, 0, &c));
  struct drc_key k;
  key_of(&k, "10.0.0.1", 42, 12, "args");
  const uint8_t *rep = NULL;
  size_t len = 0;
  CHECK_INT(drc_begin(c, &k, &rep, &len), ==, DRC_NEW);
  CHECK_INT(drc_begin(c, &k, &rep, &len), ==, DRC_IN_PROGRESS);
  drc_done(c, &k, (const uint8_t *)"reply-1", 7);
  CHECK_INT(drc_begin(c, &k, &rep, &len), ==, DRC_REPLAY);
  CHECK_INT(len, ==, 7);
  CHECK(memcmp(rep, "reply-1", 7) == 0);
  /* A second drc_done does not replace the first reply. */
  drc_done(c, &k, (const uint8_t *)"other", 5);
  CHECK_INT(drc_begin(c, &k, &rep, &len), ==, DRC_REPLAY);
  CHECK(len == 7 && memcmp(rep, "reply-1", 7) == 0);
  struct drc_stats st;
  drc_get_stats(c, &st);
  CHECK_INT(st.misses, ==, 1);
  CHECK_INT(st.dropped, ==, 1);
  CHECK_INT(st.hits, ==, 2);
  CHECK_INT(st.entries, ==, 1);
  CHECK_INT(st.bytes, ==, 7);
  drc_free(c);
}

TEST(key_parts_all_count_but_the_port)
{
  struct drc *c;
  CHECK_OK(drc_new(0, 0, &c));
  struct drc_key k;
  const uint8_t *rep;
  size_t len;
  key_of(&k, "10.0.0.1", 42, 12, "args");
  CHECK_INT(drc_begin(c, &k, &rep, &len), ==, DRC_NEW);
  drc_done(c, &k, (const uint8_t *)"r", 1);
  struct drc_key other;
  key_of(&other, "10.0.0.2", 42, 12, "args"); /* another client */
  CHECK_INT(drc_begin(c, &other, &rep, &len), ==, DRC_NEW);
  key_of(&other, "10.0.0.1", 43, 12, "args"); /* another xid */
  CHECK_INT(drc_begin(c, &other, &rep, &len), ==, DRC_NEW);
  key_of(&other, "10.0.0.1", 42, 13, "args"); /* another procedure */
  CHECK_INT(drc_begin(c, &other, &rep, &len), ==, DRC_NEW);
  key_of(&other, "10.0.0.1", 42, 12, "argz"); /* an xid reused for other arguments */
  CHECK_INT(drc_begin(c, &other, &rep, &len), ==, DRC_NEW);
  /* Another source port (a reconnected TCP client) and the IPv4-mapped
   * form of the address are the same client. */
  struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(999)};
  CHECK(inet_pton(AF_INET6, "::ffff:10.0.0.1", &s6.sin6_addr) == 1);
  struct oncrpc_call call = {.xid = 42, .prog = 100003, .vers = 3, .proc = 12};
  drc_key_make(&other, (struct sockaddr *)&s6, &call, (const uint8_t *)"args", 4);
  CHECK_INT(drc_begin(c, &other, &rep, &len), ==, DRC_REPLAY);
  drc_free(c);
}

TEST(forgotten_when_nothing_was_sent_or_too_big)
{
  struct drc *c;
  CHECK_OK(drc_new(0, 0, &c));
  struct drc_key k;
  const uint8_t *rep;
  size_t len;
  key_of(&k, "10.0.0.1", 1, 12, "a");
  CHECK_INT(drc_begin(c, &k, &rep, &len), ==, DRC_NEW);
  drc_done(c, &k, NULL, 0);
  CHECK_INT(drc_begin(c, &k, &rep, &len), ==, DRC_NEW);
  static uint8_t big[DRC_REPLY_MAX + 1];
  drc_done(c, &k, big, sizeof big);
  CHECK_INT(drc_begin(c, &k, &rep, &len), ==, DRC_NEW);
  drc_done(c, &k, big, DRC_REPLY_MAX);
  CHECK_INT(drc_begin(c, &k, &rep, &len), ==, DRC_REPLAY);
  CHECK_INT(len, ==, DRC_REPLY_MAX);
  drc_free(c);
}

TEST(bounded_least_recent_first)
{
  struct drc *c;
  CHECK_OK(drc_new(100, 1000, &c));
  struct drc_key k;
  const uint8_t *rep;
  size_t len;
  uint8_t r[8] = {0};
  for (uint32_t x = 0; x < 1000; x++) {
    key_of(&k, "10.0.0.1", x, 12, "a");
    CHECK_INT(drc_begin(c, &k, &rep, &len), ==, DRC_NEW);
    memcpy(r, &x, sizeof x);
    drc_done(c, &k, r, sizeof r);
    if (x == 500) { /* a recent hit is kept longer than its neighbours */
      key_of(&k, "10.0.0.1", 450, 12, "a");
      CHECK_INT(drc_begin(c, &k, &rep, &len), ==, DRC_REPLAY);
    }
  }
  struct drc_stats st;
  drc_get_stats(c, &st);
  CHECK_INT(st.entries, <=, 100);
  CHECK_INT(st.bytes, <=, 1000);
  CHECK_INT(st.evictions, >=, 875);
  /* The newest are there with their own replies, the oldest are gone. */
  key_of(&k, "10.0.0.1", 999, 12, "a");
  CHECK_INT(drc_begin(c, &k, &rep, &len), ==, DRC_REPLAY);
  uint32_t got;
  memcpy(&got, rep, 4);
  CHECK_INT(got, ==, 999);
  key_of(&k, "10.0.0.1", 3, 12, "a");
  CHECK_INT(drc_begin(c, &k, &rep, &len), ==, DRC_NEW);
  drc_free(c);
}

/* ---- through the dispatcher, with a procedure that counts its runs ---- */

static int runs;
static enum rpcsrv_status proc_count(struct rpcsrv_call *call)
{
  runs++;
  xdr_enc_u32(call->res, (uint32_t)runs);
  return RPCSRV_OK;
}
static enum rpcsrv_status proc_fail(struct rpcsrv_call *call)
{
  (void)call;
  runs++;
  return RPCSRV_SYSTEM_ERR;
}
static const struct rpcsrv_proc counting[3] = {
    {"NULL", proc_count, 0},
    {"ONCE", proc_count, RPCSRV_NONIDEMPOTENT},
    {"FAILS", proc_fail, RPCSRV_NONIDEMPOTENT},
};

static int dispatch(struct rpcsrv *rpc, const struct rpcsrv_peer *peer, uint32_t xid,
                    uint32_t proc, const char *args, struct xdr_enc *out)
{
  struct xdr_enc a, e;
  xdr_enc_init(&a, 4096);
  xdr_enc_str(&a, args);
  call_build(&e, xid, 400001, 1, proc, NULL, a.buf, a.len);
  xdr_enc_truncate(out, 0);
  int rc = rpcsrv_dispatch(rpc, e.buf, e.len, peer, out);
  xdr_enc_free(&a);
  xdr_enc_free(&e);
  return rc;
}

TEST(dispatcher_replays_only_flagged_procedures)
{
  struct rpcsrv *rpc;
  struct drc *c;
  CHECK_OK(rpcsrv_new(&rpc));
  CHECK_OK(drc_new(0, 0, &c));
  CHECK_OK(rpcsrv_register(rpc, 400001, 1, counting, 3, NULL));
  struct rpcsrv_peer peer = {.stream = false};
  struct sockaddr_in *sin = (struct sockaddr_in *)&peer.addr;
  sin->sin_family = AF_INET;
  sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct xdr_enc out, first;
  xdr_enc_init(&out, 1 << 16);
  xdr_enc_init(&first, 1 << 16);
  runs = 0;

  /* Without a DRC a retransmission runs again. */
  CHECK_INT(dispatch(rpc, &peer, 7, 1, "x", &out), ==, 1);
  CHECK_INT(dispatch(rpc, &peer, 7, 1, "x", &out), ==, 1);
  CHECK_INT(runs, ==, 2);

  rpcsrv_set_drc(rpc, c);
  runs = 0;
  CHECK_INT(dispatch(rpc, &peer, 8, 1, "x", &first), ==, 1);
  CHECK_INT(dispatch(rpc, &peer, 8, 1, "x", &out), ==, 1);
  CHECK_INT(runs, ==, 1);
  CHECK_INT(out.len, ==, first.len);
  CHECK(memcmp(out.buf, first.buf, out.len) == 0);
  /* Same xid, other arguments: a new call. */
  CHECK_INT(dispatch(rpc, &peer, 8, 1, "y", &out), ==, 1);
  CHECK_INT(runs, ==, 2);
  /* Idempotent procedures are never cached. */
  CHECK_INT(dispatch(rpc, &peer, 9, 0, "x", &out), ==, 1);
  CHECK_INT(dispatch(rpc, &peer, 9, 0, "x", &out), ==, 1);
  CHECK_INT(runs, ==, 4);
  /* A failed call (SYSTEM_ERR) is not remembered: it runs again. */
  CHECK_INT(dispatch(rpc, &peer, 10, 2, "x", &out), ==, 1);
  CHECK_INT(dispatch(rpc, &peer, 10, 2, "x", &out), ==, 1);
  CHECK_INT(runs, ==, 6);
  /* A call marked in progress (as a concurrent executor would leave it)
   * makes the retransmission silent. */
  struct drc_key k;
  struct xdr_enc a;
  xdr_enc_init(&a, 64);
  xdr_enc_str(&a, "z");
  struct oncrpc_call hdr = {.xid = 11, .prog = 400001, .vers = 1, .proc = 1};
  drc_key_make(&k, (struct sockaddr *)&peer.addr, &hdr, a.buf, a.len);
  const uint8_t *rep;
  size_t len;
  CHECK_INT(drc_begin(c, &k, &rep, &len), ==, DRC_NEW);
  CHECK_INT(dispatch(rpc, &peer, 11, 1, "z", &out), ==, 0);
  CHECK_INT(out.len, ==, 0);
  CHECK_INT(runs, ==, 6);
  xdr_enc_free(&a);
  xdr_enc_free(&out);
  xdr_enc_free(&first);
  rpcsrv_free(rpc);
  drc_free(c);
}

/* ---- the real NFS server over TCP ---- */

/* Sends the call with XID on fd (TCP) and returns the reply's nfsstat3. */
static uint32_t tcp_nfs(int fd, uint32_t xid, uint32_t proc, struct xdr_enc *args,
                        uint8_t **raw, size_t *rawlen)
{
  struct xdr_enc e;
  call_encode(&e, xid, 100003, 3, proc, &dep_root_cred, args);
  raw_send_record(fd, e.buf, e.len, 1 << 30);
  xdr_enc_free(&e);
  size_t len;
  uint8_t *rec = raw_recv_record(fd, &len);
  CHECK_MSG(rec != NULL, "no reply to xid %u", xid);
  struct oncrpc_reply r;
  struct xdr_dec res;
  reply_decode(rec, len, xid, &r, &res);
  CHECK_INT(r.reply_stat, ==, ONCRPC_MSG_ACCEPTED);
  CHECK_INT(r.accept_stat, ==, ONCRPC_SUCCESS);
  uint32_t st = res_status(&res);
  if (raw) {
    *raw = rec;
    *rawlen = len;
  } else {
    free(rec);
  }
  return st;
}

/* ---- CREATE, REMOVE, MKDIR, RMDIR, RENAME, LINK, SETATTR: each retransmitted ---- */

/* sattr3 that sets only the mode (or nothing, mode < 0). */
static void enc_sattr_mode(struct xdr_enc *a, int mode)
{
  xdr_enc_bool(a, mode >= 0);
  if (mode >= 0)
    xdr_enc_u32(a, (uint32_t)mode);
  for (int i = 0; i < 5; i++)
    xdr_enc_bool(a, false); /* uid gid size; atime mtime DONT_CHANGE */
}

/* The handle CREATE answered (post_op_fh3), copied into fh. */
static void created_fh(uint8_t *rec, size_t len, uint32_t xid, uint8_t *fh, uint32_t *fh_len)
{
  struct oncrpc_reply r;
  struct xdr_dec res;
  reply_decode(rec, len, xid, &r, &res);
  CHECK_INT(res_status(&res), ==, 0);
  uint32_t follows = 0;
  CHECK_OK(xdr_dec_u32(&res, &follows));
  CHECK_INT(follows, ==, 1);
  CHECK_OK(xdr_dec_bytes_copy(&res, 64, fh, fh_len));
}

/* GETATTR's ctime of fh (fattr3 words 19-20). */
static void getattr_ctime(int fd, uint32_t xid, const uint8_t *fh, uint32_t fh_len, uint32_t *sec,
                          uint32_t *nsec)
{
  struct xdr_enc a;
  xdr_enc_init(&a, 256);
  xdr_enc_bytes(&a, fh, fh_len);
  uint8_t *rec;
  size_t len;
  CHECK_INT(tcp_nfs(fd, xid, 1, &a, &rec, &len), ==, 0);
  struct oncrpc_reply r;
  struct xdr_dec res;
  reply_decode(rec, len, xid, &r, &res);
  CHECK_INT(res_status(&res), ==, 0);
  uint32_t w = 0;
  for (int i = 0; i < 19; i++)
    CHECK_OK(xdr_dec_u32(&res, &w));
  CHECK_OK(xdr_dec_u32(&res, sec));
  CHECK_OK(xdr_dec_u32(&res, nsec));
  free(rec);
  xdr_enc_free(&a);
}

/* Sends call (XID, PROC, A) on fd, expecting NFS3_OK, then the same call
 * again on a new connection (as a client whose reply was lost): with the
 * DRC it gets the very same reply bytes, without one it runs again and
 * answers WITHOUT (which proves the replay would differ). */
static void call_then_retransmit(struct dep *d, int fd, bool with_drc, uint32_t xid, uint32_t proc,
                                 struct xdr_enc *a, uint32_t without)
{
  uint8_t *r1, *r2;
  size_t l1, l2;
  CHECK_MSG(tcp_nfs(fd, xid, proc, a, &r1, &l1) == 0, "proc %u failed the first time", proc);
  int fd2 = raw_connect(d->s.port);
  uint32_t st = tcp_nfs(fd2, xid, proc, a, &r2, &l2);
  close(fd2);
  if (with_drc) {
    CHECK_MSG(st == 0, "proc %u retransmitted: status %u, not its first reply", proc, st);
    CHECK_INT(l2, ==, l1);
    CHECK(memcmp(r1, r2, l1) == 0);
  } else {
    CHECK_MSG(st == without, "proc %u run twice: status %u, want %u", proc, st, without);
  }
  free(r1);
  free(r2);
  xdr_enc_free(a);
}

static void retransmit_each(bool with_drc)
{
  struct dep d = {0};
  srv_init(&d.s);
  dep_start(&d, with_drc, NULL);
  int fd = raw_connect(d.s.port);
  struct xdr_enc a;

  /* CREATE (GUARDED) twice would say EXIST; REMOVE twice NOENT. */
  args_create(&a, &d, "e");
  call_then_retransmit(&d, fd, with_drc, 1000, 8, &a, 17);
  args_remove(&a, &d, "e");
  call_then_retransmit(&d, fd, with_drc, 1001, 12, &a, 2);
  /* A NEW remove of the same name (another xid) does run: NOENT. */
  args_remove(&a, &d, "e");
  CHECK_INT(tcp_nfs(fd, 1002, 12, &a, NULL, NULL), ==, 2);
  xdr_enc_free(&a);

  /* MKDIR twice would say EXIST; RMDIR twice NOENT. */
  args_remove(&a, &d, "d");
  enc_sattr_mode(&a, 0755);
  call_then_retransmit(&d, fd, with_drc, 2000, 9, &a, 17);
  args_remove(&a, &d, "d");
  call_then_retransmit(&d, fd, with_drc, 2001, 13, &a, 2);

  /* RENAME f -> g twice would say NOENT. */
  uint8_t *rec;
  size_t len;
  args_create(&a, &d, "f");
  CHECK_INT(tcp_nfs(fd, 2002, 8, &a, &rec, &len), ==, 0);
  xdr_enc_free(&a);
  uint8_t fh[64];
  uint32_t fh_len = 0;
  created_fh(rec, len, 2002, fh, &fh_len);
  free(rec);
  args_remove(&a, &d, "f");
  args_dirop(&a, &d, "g");
  call_then_retransmit(&d, fd, with_drc, 2003, 14, &a, 2);

  /* LINK g as h twice would say EXIST. */
  xdr_enc_init(&a, 4096);
  xdr_enc_bytes(&a, fh, fh_len);
  args_dirop(&a, &d, "h");
  call_then_retransmit(&d, fd, with_drc, 2004, 15, &a, 17);

  /* SETATTR guarded by the ctime it changes: twice would say NOT_SYNC. */
  uint32_t sec, nsec;
  getattr_ctime(fd, 2005, fh, fh_len, &sec, &nsec);
  xdr_enc_init(&a, 4096);
  xdr_enc_bytes(&a, fh, fh_len);
  enc_sattr_mode(&a, 0600);
  xdr_enc_bool(&a, true);
  xdr_enc_u32(&a, sec);
  xdr_enc_u32(&a, nsec);
  call_then_retransmit(&d, fd, with_drc, 2006, 2, &a, 10002);
  uint32_t sec2, nsec2;
  getattr_ctime(fd, 2007, fh, fh_len, &sec2, &nsec2);
  CHECK_MSG(sec2 != sec || nsec2 != nsec, "SETATTR left the ctime alone");

  close(fd);
  dep_stop(&d);
  srv_free(&d.s);
}

TEST(tcp_retransmitted_calls_get_their_first_reply)
{
  retransmit_each(true);
}

TEST(tcp_without_drc_a_retransmission_runs_twice)
{
  retransmit_each(false);
}
