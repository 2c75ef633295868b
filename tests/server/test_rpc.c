/*
 * The RPC layer: record marking and the dispatcher as pure functions, then
 * the same over a real TCP server with raw sockets (garbage, truncation,
 * fragments, huge lengths, pipelining, backpressure) and libnfs.
 */
#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>

#include <netinet/in.h>
#include <sched.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <time.h>

#include "server/rpc.h"
#include "store/error.h"
#include "tests/server/harness.h"
#include "xdr/mount3.h"
#include "xdr/nfs3.h"

/* ---- record marking, sans-I/O ---- */

static void put_mark(uint8_t *p, uint32_t len, bool last)
{
  uint32_t m = len | (last ? 0x80000000u : 0);
  p[0] = m >> 24;
  p[1] = m >> 16;
  p[2] = m >> 8;
  p[3] = m;
}

TEST(records_fragments_and_pipelining)
{
  struct rpcsrv_records r;
  rpcsrv_records_init(&r, 1000);
  /* Record A in three fragments (2, 0, 3 bytes), record B in one. */
  uint8_t in[64];
  size_t n = 0;
  put_mark(in + n, 2, false), n += 4;
  memcpy(in + n, "ab", 2), n += 2;
  put_mark(in + n, 0, false), n += 4;
  put_mark(in + n, 3, true), n += 4;
  memcpy(in + n, "cde", 3), n += 3;
  put_mark(in + n, 4, true), n += 4;
  memcpy(in + n, "WXYZ", 4), n += 4;
  /* Fed byte by byte: records appear exactly when complete. */
  uint8_t *rec;
  size_t len;
  int got = 0;
  for (size_t i = 0; i < n; i++) {
    CHECK_OK(rpcsrv_records_feed(&r, in + i, 1));
    int rc;
    while ((rc = rpcsrv_records_next(&r, &rec, &len)) == 1) {
      if (got == 0) {
        CHECK_INT(i, ==, 16);
        CHECK_INT(len, ==, 5);
        CHECK_MEM(rec, "abcde", 5);
      } else {
        CHECK_INT(i, ==, n - 1);
        CHECK_INT(len, ==, 4);
        CHECK_MEM(rec, "WXYZ", 4);
      }
      got++;
    }
    CHECK_INT(rc, ==, 0);
  }
  CHECK_INT(got, ==, 2);
  CHECK(!rpcsrv_records_partial(&r));
  /* All at once. */
  CHECK_OK(rpcsrv_records_feed(&r, in, n));
  CHECK_INT(rpcsrv_records_next(&r, &rec, &len), ==, 1);
  CHECK_MEM(rec, "abcde", 5);
  CHECK_INT(rpcsrv_records_next(&r, &rec, &len), ==, 1);
  CHECK_MEM(rec, "WXYZ", 4);
  CHECK_INT(rpcsrv_records_next(&r, &rec, &len), ==, 0);
  /* A truncated record is visible as partial. */
  CHECK_OK(rpcsrv_records_feed(&r, in, 7));
  CHECK_INT(rpcsrv_records_next(&r, &rec, &len), ==, 0);
  CHECK(rpcsrv_records_partial(&r));
  rpcsrv_records_free(&r);
}

TEST(records_cap)
{
  struct rpcsrv_records r;
  uint8_t mark[4], *rec;
  size_t len;
  /* 2 GiB - 1: refused at the header, before any byte of it arrives. */
  rpcsrv_records_init(&r, RPCSRV_RECORD_MAX);
  put_mark(mark, 0x7fffffff, true);
  CHECK_OK(rpcsrv_records_feed(&r, mark, 4));
  CHECK_INT(rpcsrv_records_next(&r, &rec, &len), ==, -BFS_ETOOBIG);
  rpcsrv_records_free(&r);
  /* Fragments that each fit but add up to more than the cap. */
  rpcsrv_records_init(&r, 100);
  uint8_t body[60] = {0};
  put_mark(mark, 60, false);
  CHECK_OK(rpcsrv_records_feed(&r, mark, 4));
  CHECK_OK(rpcsrv_records_feed(&r, body, 60));
  CHECK_INT(rpcsrv_records_next(&r, &rec, &len), ==, 0);
  put_mark(mark, 41, true);
  CHECK_OK(rpcsrv_records_feed(&r, mark, 4));
  CHECK_INT(rpcsrv_records_next(&r, &rec, &len), ==, -BFS_ETOOBIG);
  rpcsrv_records_free(&r);
  /* Exactly the cap is fine. */
  rpcsrv_records_init(&r, 100);
  put_mark(mark, 60, false);
  CHECK_OK(rpcsrv_records_feed(&r, mark, 4));
  CHECK_OK(rpcsrv_records_feed(&r, body, 60));
  put_mark(mark, 40, true);
  CHECK_OK(rpcsrv_records_feed(&r, mark, 4));
  CHECK_OK(rpcsrv_records_feed(&r, body, 40));
  CHECK_INT(rpcsrv_records_next(&r, &rec, &len), ==, 1);
  CHECK_INT(len, ==, 100);
  rpcsrv_records_free(&r);
}

/* Random records, random fragmentation, random read sizes: what comes out
 * is what went in, in order. */
TEST(records_random_reassembly)
{
  enum { NREC = 300 };
  struct rpcsrv_records r;
  rpcsrv_records_init(&r, RPCSRV_RECORD_MAX);
  size_t cap = 16 << 20, n = 0;
  uint8_t *stream = malloc(cap);
  size_t lens[NREC];
  uint8_t seeds[NREC];
  for (int i = 0; i < NREC; i++) {
    size_t len = test_rand() % 10 == 0 ? test_rand() % 100000 : test_rand() % 300;
    lens[i] = len;
    seeds[i] = (uint8_t)test_rand();
    size_t done = 0;
    do {
      size_t frag = len - done;
      if (test_rand() % 2 && frag > 0)
        frag = test_rand() % (frag + 1);
      CHECK(n + 4 + frag <= cap);
      put_mark(stream + n, (uint32_t)frag, done + frag == len);
      n += 4;
      for (size_t k = 0; k < frag; k++)
        stream[n + k] = (uint8_t)(seeds[i] + done + k);
      n += frag;
      done += frag;
    } while (done < len);
  }
  int next = 0;
  for (size_t pos = 0; pos < n;) {
    uint8_t *dst;
    size_t room;
    CHECK_OK(rpcsrv_records_space(&r, &dst, &room));
    size_t k = 1 + test_rand() % 70000;
    if (k > room)
      k = room;
    if (k > n - pos)
      k = n - pos;
    memcpy(dst, stream + pos, k);
    rpcsrv_records_commit(&r, k);
    pos += k;
    uint8_t *rec;
    size_t len;
    int rc;
    while ((rc = rpcsrv_records_next(&r, &rec, &len)) == 1) {
      CHECK(next < NREC);
      CHECK_INT(len, ==, lens[next]);
      for (size_t b = 0; b < len; b++)
        if (rec[b] != (uint8_t)(seeds[next] + b))
          CHECK_MSG(0, "record %d byte %zu", next, b);
      next++;
    }
    CHECK_INT(rc, ==, 0);
  }
  CHECK_INT(next, ==, NREC);
  free(stream);
  rpcsrv_records_free(&r);
}

/* ---- dispatcher, sans-I/O ---- */

static enum rpcsrv_status echo_u32(struct rpcsrv_call *call)
{
  uint32_t v;
  if (xdr_dec_u32(&call->args, &v) < 0)
    return RPCSRV_GARBAGE_ARGS;
  xdr_enc_u32(call->res, v + 1);
  return RPCSRV_OK;
}

static enum rpcsrv_status fail_sys(struct rpcsrv_call *call)
{
  xdr_enc_u32(call->res, 123); /* must not reach the wire */
  return RPCSRV_SYSTEM_ERR;
}

static enum rpcsrv_status drop(struct rpcsrv_call *call)
{
  (void)call;
  return RPCSRV_DROP;
}

static enum rpcsrv_status too_big(struct rpcsrv_call *call)
{
  uint8_t *p = xdr_enc_reserve(call->res, RPCSRV_REPLY_MAX);
  if (p)
    memset(p, 0, RPCSRV_REPLY_MAX);
  return RPCSRV_OK;
}

/* Replies with as many bytes as the argument asks (for backpressure). */
static enum rpcsrv_status blob(struct rpcsrv_call *call)
{
  uint32_t n;
  if (xdr_dec_u32(&call->args, &n) < 0 || n > (1u << 20))
    return RPCSRV_GARBAGE_ARGS;
  uint8_t *p = xdr_enc_bytes_reserve(call->res, n);
  if (p)
    memset(p, (int)(call->hdr->xid & 0xff), n);
  return RPCSRV_OK;
}

static enum rpcsrv_status whoami(struct rpcsrv_call *call)
{
  xdr_enc_u32(call->res, call->hdr->cred_flavor);
  xdr_enc_u32(call->res, call->hdr->sys.uid);
  xdr_enc_u32(call->res, call->hdr->sys.ngids);
  return RPCSRV_OK;
}

#define TESTPROG 0x20000099u
static const struct rpcsrv_proc test_procs[] = {
    {"NULL", NULL, 0},
    {"ECHO", echo_u32, 0},
    {"FAIL", fail_sys, 0},
    {"DROP", drop, 0},
    {"BIG", too_big, 0},
    {"SECURE", whoami, RPCSRV_NEED_AUTH_SYS},
    {"BLOB", blob, 0},
};

static void register_test_prog(struct rpcsrv *rpc)
{
  CHECK_OK(rpcsrv_register(rpc, TESTPROG, 7, test_procs, sizeof test_procs / sizeof *test_procs, NULL));
  CHECK_INT(rpcsrv_register(rpc, TESTPROG, 7, test_procs, 1, NULL), ==, -EEXIST);
}

struct disp {
  struct rpcsrv *rpc;
  struct mountd *mountd;
  struct rpcsrv_peer peer;
  struct xdr_enc out;
  struct oncrpc_reply r;
  struct xdr_dec res;
  int rc;
  int logged;
  char last[600]; /* the last line logged */
};

static void count_log(void *ctx, const char *line)
{
  struct disp *d = ctx;
  CHECK(strlen(line) > 0);
  d->logged++;
  snprintf(d->last, sizeof d->last, "%s", line);
}

static void disp_init(struct disp *d)
{
  memset(d, 0, sizeof *d);
  CHECK_OK(rpcsrv_new(&d->rpc));
  rpcsrv_set_log(d->rpc, count_log, d);
  struct mountd_config mc = {.root_fh = harness_root};
  CHECK_OK(mountd_new(&mc, &d->mountd));
  CHECK_OK(mountd_register(d->mountd, d->rpc));
  CHECK_OK(nfsd_register(d->rpc, NULL));
  register_test_prog(d->rpc);
  strcpy(d->peer.name, "192.0.2.1");
  xdr_enc_init(&d->out, 4 << 20);
}

static void disp_free(struct disp *d)
{
  xdr_enc_free(&d->out);
  mountd_free(d->mountd);
  rpcsrv_free(d->rpc);
}

/* Dispatches bytes; when a reply comes, decodes its header into d->r. */
static void disp_bytes(struct disp *d, const uint8_t *rec, size_t len)
{
  xdr_enc_truncate(&d->out, 0);
  d->rc = rpcsrv_dispatch(d->rpc, rec, len, &d->peer, &d->out);
  if (d->rc == 1) {
    xdr_dec_init(&d->res, d->out.buf, d->out.len);
    CHECK_OK(oncrpc_dec_reply(&d->res, &d->r));
  }
}

static void disp_call(struct disp *d, uint32_t xid, uint32_t prog, uint32_t vers, uint32_t proc,
                      const struct oncrpc_auth_sys *cred, const void *args, size_t args_len)
{
  struct xdr_enc e;
  call_build(&e, xid, prog, vers, proc, cred, args, args_len);
  disp_bytes(d, e.buf, e.len);
  xdr_enc_free(&e);
  if (d->rc == 1)
    CHECK_INT(d->r.xid, ==, xid);
}

static void expect_accepted(struct disp *d, uint32_t stat)
{
  CHECK_INT(d->rc, ==, 1);
  CHECK_INT(d->r.reply_stat, ==, ONCRPC_MSG_ACCEPTED);
  CHECK_INT(d->r.accept_stat, ==, stat);
}

static void expect_auth_error(struct disp *d, uint32_t why)
{
  CHECK_INT(d->rc, ==, 1);
  CHECK_INT(d->r.reply_stat, ==, ONCRPC_MSG_DENIED);
  CHECK_INT(d->r.reject_stat, ==, ONCRPC_AUTH_ERROR);
  CHECK_INT(d->r.auth_stat, ==, why);
  CHECK_OK(xdr_dec_done(&d->res));
}

TEST(dispatch_accept_statuses)
{
  struct disp d;
  disp_init(&d);
  uint8_t arg[4] = {0, 0, 0, 41};

  disp_call(&d, 1, NFS3_PROGRAM, 3, NFS3_PROC_NULL, NULL, NULL, 0);
  expect_accepted(&d, ONCRPC_SUCCESS);
  CHECK_OK(xdr_dec_done(&d.res));

  disp_call(&d, 2, TESTPROG, 7, 1, NULL, arg, 4);
  expect_accepted(&d, ONCRPC_SUCCESS);
  uint32_t v;
  CHECK_OK(xdr_dec_u32(&d.res, &v));
  CHECK_INT(v, ==, 42);

  /* Unknown program; NFS v4 and v2 probes; MOUNT v2 between v1 and v3. */
  disp_call(&d, 3, 100099, 1, 0, NULL, NULL, 0);
  expect_accepted(&d, ONCRPC_PROG_UNAVAIL);
  CHECK_OK(xdr_dec_done(&d.res));
  disp_call(&d, 4, NFS3_PROGRAM, 4, 0, NULL, NULL, 0);
  expect_accepted(&d, ONCRPC_PROG_MISMATCH);
  CHECK_INT(d.r.low, ==, 3);
  CHECK_INT(d.r.high, ==, 3);
  CHECK_OK(xdr_dec_done(&d.res));
  disp_call(&d, 5, NFS3_PROGRAM, 2, 0, NULL, NULL, 0);
  expect_accepted(&d, ONCRPC_PROG_MISMATCH);
  CHECK_INT(d.r.low, ==, 3);
  disp_call(&d, 6, MOUNT3_PROGRAM, 2, 0, NULL, NULL, 0);
  expect_accepted(&d, ONCRPC_PROG_MISMATCH);
  CHECK_INT(d.r.low, ==, 1);
  CHECK_INT(d.r.high, ==, 3);

  /* A procedure without a handler, past the table, MNT v1. */
  disp_call(&d, 7, NFS3_PROGRAM, 3, NFS3_PROC_GETATTR, NULL, NULL, 0);
  expect_accepted(&d, ONCRPC_PROC_UNAVAIL);
  CHECK_OK(xdr_dec_done(&d.res));
  disp_call(&d, 8, NFS3_PROGRAM, 3, 22, NULL, NULL, 0);
  expect_accepted(&d, ONCRPC_PROC_UNAVAIL);
  disp_call(&d, 9, TESTPROG, 7, 0, NULL, NULL, 0);
  expect_accepted(&d, ONCRPC_PROC_UNAVAIL);
  disp_call(&d, 10, MOUNT3_PROGRAM, 1, MOUNT3_PROC_MNT, NULL, NULL, 0);
  expect_accepted(&d, ONCRPC_PROC_UNAVAIL);

  /* Garbage arguments: no u32; a MNT path of 4 GiB. */
  disp_call(&d, 11, TESTPROG, 7, 1, NULL, arg, 2);
  expect_accepted(&d, ONCRPC_GARBAGE_ARGS);
  CHECK_OK(xdr_dec_done(&d.res));
  uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
  disp_call(&d, 12, MOUNT3_PROGRAM, 3, MOUNT3_PROC_MNT, NULL, huge, 4);
  expect_accepted(&d, ONCRPC_GARBAGE_ARGS);

  /* SYSTEM_ERR replaces whatever the handler wrote; so does a reply over
   * the cap. */
  disp_call(&d, 13, TESTPROG, 7, 2, NULL, NULL, 0);
  expect_accepted(&d, ONCRPC_SYSTEM_ERR);
  CHECK_OK(xdr_dec_done(&d.res));
  disp_call(&d, 14, TESTPROG, 7, 4, NULL, NULL, 0);
  expect_accepted(&d, ONCRPC_SYSTEM_ERR);
  CHECK_OK(xdr_dec_done(&d.res));

  /* DROP sends nothing. */
  disp_call(&d, 15, TESTPROG, 7, 3, NULL, NULL, 0);
  CHECK_INT(d.rc, ==, 0);
  CHECK_INT(d.out.len, ==, 0);
  CHECK(d.logged > 0);
  disp_free(&d);
}

TEST(dispatch_denials)
{
  struct disp d;
  disp_init(&d);
  struct oncrpc_auth_sys cred = {.uid = 1000, .gid = 1000, .ngids = 2, .gids = {4, 24}};
  strcpy(cred.machine, "host");
  cred.machine_len = 4;

  /* AUTH_SYS decoded for the handler; AUTH_NONE too weak for it. */
  disp_call(&d, 1, TESTPROG, 7, 5, &cred, NULL, 0);
  expect_accepted(&d, ONCRPC_SUCCESS);
  uint32_t flavor, uid, ngids;
  CHECK_OK(xdr_dec_u32(&d.res, &flavor));
  CHECK_OK(xdr_dec_u32(&d.res, &uid));
  CHECK_OK(xdr_dec_u32(&d.res, &ngids));
  CHECK(flavor == ONCRPC_AUTH_SYS && uid == 1000 && ngids == 2);
  disp_call(&d, 2, TESTPROG, 7, 5, NULL, NULL, 0);
  expect_auth_error(&d, ONCRPC_AUTH_TOOWEAK);

  /* rpcvers 3 */
  struct xdr_enc e;
  call_build(&e, 3, NFS3_PROGRAM, 3, 0, NULL, NULL, 0);
  xdr_enc_patch_u32(&e, 8, 3);
  disp_bytes(&d, e.buf, e.len);
  CHECK_INT(d.rc, ==, 1);
  CHECK_INT(d.r.reply_stat, ==, ONCRPC_MSG_DENIED);
  CHECK_INT(d.r.reject_stat, ==, ONCRPC_RPC_MISMATCH);
  CHECK(d.r.low == 2 && d.r.high == 2);
  CHECK_OK(xdr_dec_done(&d.res));
  xdr_enc_free(&e);

  /* AUTH_DH and RPCSEC_GSS: bad credentials, before the program is looked
   * at (even an unknown program gets the auth error). */
  uint32_t flavors[] = {ONCRPC_AUTH_DH, ONCRPC_RPCSEC_GSS, 12345};
  for (int i = 0; i < 3; i++) {
    call_build(&e, 4, 100099, 1, 0, NULL, NULL, 0);
    xdr_enc_patch_u32(&e, 24, flavors[i]);
    disp_bytes(&d, e.buf, e.len);
    expect_auth_error(&d, ONCRPC_AUTH_BADCRED);
    xdr_enc_free(&e);
  }

  /* A malformed AUTH_SYS body (17 gids). */
  cred.ngids = 16;
  call_build(&e, 5, NFS3_PROGRAM, 3, 0, &cred, NULL, 0);
  /* Body at 32: stamp, name length, "host", uid, gid, then the count. */
  xdr_enc_patch_u32(&e, 52, 17);
  disp_bytes(&d, e.buf, e.len);
  expect_auth_error(&d, ONCRPC_AUTH_BADCRED);
  xdr_enc_free(&e);

  /* Not a call: a REPLY, or 7 bytes. */
  xdr_enc_init(&e, 100);
  oncrpc_enc_accepted(&e, 6, ONCRPC_SUCCESS);
  disp_bytes(&d, e.buf, e.len);
  CHECK_INT(d.rc, ==, -BFS_EFORMAT);
  disp_bytes(&d, e.buf, 7);
  CHECK_INT(d.rc, ==, -BFS_EFORMAT);
  xdr_enc_free(&e);
  disp_free(&d);
}

TEST(protocol_error_lines_are_rate_limited_per_kind)
{
  struct disp d;
  disp_init(&d);
  static const uint8_t junk[7] = "garbage";
  for (int i = 0; i < 1000; i++) {
    disp_bytes(&d, junk, sizeof junk);
    CHECK_INT(d.rc, ==, -BFS_EFORMAT);
  }
  CHECK_INT(d.logged, ==, RPCSRV_LOG_BURST);
  /* Another kind has its own allowance. */
  struct xdr_enc e;
  call_build(&e, 4, 100099, 1, 0, NULL, NULL, 0);
  xdr_enc_patch_u32(&e, 24, ONCRPC_RPCSEC_GSS);
  disp_bytes(&d, e.buf, e.len);
  expect_auth_error(&d, ONCRPC_AUTH_BADCRED);
  CHECK_INT(d.logged, ==, RPCSRV_LOG_BURST + 1);
  /* The count is said once the second is over. */
  rpcsrv_log_flush(d.rpc);
  CHECK_INT(d.logged, ==, RPCSRV_LOG_BURST + 1);
  usleep(1050000);
  rpcsrv_log_flush(d.rpc);
  CHECK_INT(d.logged, ==, RPCSRV_LOG_BURST + 2);
  char want[200];
  snprintf(want, sizeof want,
           "(%d more like this suppressed within a second; the last: 192.0.2.1: a 7-byte record "
           "that is not an RPC call)",
           1000 - RPCSRV_LOG_BURST);
  CHECK_MSG(strcmp(d.last, want) == 0, "got '%s'", d.last);
  rpcsrv_log_flush(d.rpc);
  CHECK_INT(d.logged, ==, RPCSRV_LOG_BURST + 2);
  /* A new second, a new allowance. */
  disp_bytes(&d, junk, sizeof junk);
  CHECK_INT(d.logged, ==, RPCSRV_LOG_BURST + 3);
  xdr_enc_free(&e);
  disp_free(&d);
}

TEST(a_refused_client_gets_one_line_not_one_per_malformed_call)
{
  struct disp d;
  disp_init(&d);
  struct exports *ex;
  char err[128];
  CHECK_OK(exports_parse("", 0, &ex, err, sizeof err)); /* loopback only */
  rpcsrv_set_exports(d.rpc, ex);
  struct sockaddr_in *sin = (struct sockaddr_in *)&d.peer.addr;
  sin->sin_family = AF_INET;
  CHECK(inet_pton(AF_INET, "192.0.2.1", &sin->sin_addr) == 1);
  /* A malformed AUTH_SYS body (17 gids), as in dispatch_denials. */
  struct oncrpc_auth_sys cred = {.ngids = 16, .machine = "host", .machine_len = 4};
  struct xdr_enc e;
  call_build(&e, 5, NFS3_PROGRAM, 3, 0, &cred, NULL, 0);
  xdr_enc_patch_u32(&e, 52, 17);
  for (int i = 0; i < 5; i++) {
    disp_bytes(&d, e.buf, e.len);
    expect_auth_error(&d, ONCRPC_AUTH_BADCRED); /* the same answer as to anyone */
    disp_bytes(&d, e.buf, 7);
    CHECK_INT(d.rc, ==, -BFS_EFORMAT);
  }
  CHECK_INT(d.logged, ==, 1);
  CHECK_MSG(strstr(d.last, "192.0.2.1: refused by the exports") != NULL, "%s", d.last);
  xdr_enc_free(&e);
  disp_free(&d);
  exports_free(ex);
}

/* ---- over TCP ---- */

static void null_ok(int fd, uint32_t xid)
{
  struct oncrpc_reply r;
  struct xdr_dec res;
  free(call_raw(fd, xid, NFS3_PROGRAM, 3, 0, NULL, 0, &r, &res));
  CHECK_INT(r.accept_stat, ==, ONCRPC_SUCCESS);
}

TEST(tcp_statuses_on_the_wire)
{
  struct harness h;
  harness_start_with(&h, register_test_prog);
  int fd = raw_connect(h.port);
  struct oncrpc_reply r;
  struct xdr_dec res;
  null_ok(fd, 1);
  free(call_raw(fd, 2, NFS3_PROGRAM, 4, 0, NULL, 0, &r, &res));
  CHECK(r.accept_stat == ONCRPC_PROG_MISMATCH && r.low == 3 && r.high == 3);
  free(call_raw(fd, 3, 100099, 1, 0, NULL, 0, &r, &res));
  CHECK_INT(r.accept_stat, ==, ONCRPC_PROG_UNAVAIL);
  free(call_raw(fd, 4, NFS3_PROGRAM, 3, 7, NULL, 0, &r, &res));
  CHECK_INT(r.accept_stat, ==, ONCRPC_PROC_UNAVAIL);
  uint8_t two[2] = {0};
  free(call_raw(fd, 5, TESTPROG, 7, 1, two, 2, &r, &res));
  CHECK_INT(r.accept_stat, ==, ONCRPC_GARBAGE_ARGS);
  /* Denials: rpcvers 3, an AUTH_DH credential. */
  for (int which = 0; which < 2; which++) {
    struct xdr_enc e;
    call_build(&e, 10 + which, NFS3_PROGRAM, 3, 0, NULL, NULL, 0);
    xdr_enc_patch_u32(&e, which == 0 ? 8 : 24, which == 0 ? 3 : ONCRPC_AUTH_DH);
    raw_send_record(fd, e.buf, e.len, 1 << 20);
    xdr_enc_free(&e);
    size_t len;
    uint8_t *rec = raw_recv_record(fd, &len);
    CHECK(rec != NULL);
    xdr_dec_init(&res, rec, len);
    CHECK_OK(oncrpc_dec_reply(&res, &r));
    CHECK_INT(r.xid, ==, 10 + which);
    CHECK_INT(r.reply_stat, ==, ONCRPC_MSG_DENIED);
    if (which == 0)
      CHECK(r.reject_stat == ONCRPC_RPC_MISMATCH && r.low == 2 && r.high == 2);
    else
      CHECK(r.reject_stat == ONCRPC_AUTH_ERROR && r.auth_stat == ONCRPC_AUTH_BADCRED);
    free(rec);
  }
  /* The connection survives every one of those. */
  null_ok(fd, 6);
  close(fd);
  harness_stop(&h);
}

static void sleep_ms(int ms)
{
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static bool pin_to_cpu(int cpu)
{
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set) == 0;
}

TEST(tcp_spin_catches_the_next_call_and_backs_off)
{
  /* The server never spins for a client on its own CPU: put the loop
   * thread (it inherits this thread's mask) and this client on two. */
  if (!pin_to_cpu(1)) {
    printf("# skipped: needs 2 CPUs\n");
    return;
  }
  struct harness h;
  harness_start_with(&h, register_test_prog);
  CHECK(pin_to_cpu(0));
  /* Off: every call goes through the loop. */
  tcpsrv_set_spin(h.tcp, 0);
  int fd = raw_connect(h.port);
  for (uint32_t i = 0; i < 5; i++)
    null_ok(fd, i);
  CHECK_INT(tcpsrv_spin_served(h.tcp), ==, 0);
  close(fd);

  /* A long spin catches a call sent well after the reply. */
  tcpsrv_set_spin(h.tcp, 5000000000ull);
  fd = raw_connect(h.port);
  null_ok(fd, 10);
  uint64_t served = tcpsrv_spin_served(h.tcp);
  sleep_ms(30);
  null_ok(fd, 11);
  CHECK_INT(tcpsrv_spin_served(h.tcp), >, served);
  close(fd); /* the spinning thread sees EOF and closes */
  sleep_ms(30);

  /* A short one misses a slow client, then stays off for it... */
  tcpsrv_set_spin(h.tcp, 10000000);
  fd = raw_connect(h.port);
  /* raw_send_record writes the record mark and the body apart: without
   * this, Nagle holds the body for the mark's delayed ACK (40 ms). */
  int one = 1;
  CHECK_OK(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
  uint64_t missed = tcpsrv_spin_missed(h.tcp);
  null_ok(fd, 20);
  sleep_ms(50);
  null_ok(fd, 21);
  uint64_t before = tcpsrv_spin_served(h.tcp);
  sleep_ms(50);
  null_ok(fd, 22);
  sleep_ms(50);
  CHECK_INT(tcpsrv_spin_served(h.tcp), ==, before);
  /* At most one wasted spin, not one per call. (It may be none: the spin
   * is skipped when the last packet in, an ACK, came in on the server's CPU.) */
  CHECK_INT(tcpsrv_spin_missed(h.tcp), <=, missed + 1);
  /* ...until it calls again within the budget of a reply. */
  for (uint32_t i = 0; i < 20; i++)
    null_ok(fd, 30 + i);
  CHECK_INT(tcpsrv_spin_served(h.tcp), >, before);
  close(fd);

  /* On the server's CPU, a client is never spun for. */
  CHECK(pin_to_cpu(1));
  served = tcpsrv_spin_served(h.tcp);
  missed = tcpsrv_spin_missed(h.tcp);
  fd = raw_connect(h.port);
  CHECK_OK(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
  for (uint32_t i = 0; i < 20; i++)
    null_ok(fd, 60 + i);
  CHECK_INT(tcpsrv_spin_served(h.tcp), ==, served);
  CHECK_INT(tcpsrv_spin_missed(h.tcp), ==, missed);
  close(fd);
  harness_stop(&h);
}

TEST(tcp_fragments_and_pipelining)
{
  struct harness h;
  harness_start_with(&h, register_test_prog);
  int fd = raw_connect(h.port);
  /* One call in 1-byte fragments. */
  struct xdr_enc e;
  uint8_t arg[4] = {0, 0, 1, 0};
  call_build(&e, 77, TESTPROG, 7, 1, NULL, arg, 4);
  raw_send_record(fd, e.buf, e.len, 1);
  size_t len;
  uint8_t *rec = raw_recv_record(fd, &len);
  CHECK(rec != NULL);
  struct xdr_dec d;
  struct oncrpc_reply r;
  uint32_t v;
  xdr_dec_init(&d, rec, len);
  CHECK_OK(oncrpc_dec_reply(&d, &r));
  CHECK_OK(xdr_dec_u32(&d, &v));
  CHECK(r.xid == 77 && v == 257);
  free(rec);
  xdr_enc_free(&e);

  /* 200 calls in one send: 200 replies, in order. */
  struct xdr_enc all;
  xdr_enc_init(&all, 1 << 20);
  for (uint32_t i = 0; i < 200; i++) {
    uint8_t a[4] = {0, 0, 0, (uint8_t)i};
    call_build(&e, 1000 + i, TESTPROG, 7, 1, NULL, a, 4);
    xdr_enc_u32(&all, 0x80000000u | (uint32_t)e.len);
    xdr_enc_fixed(&all, e.buf, e.len);
    xdr_enc_free(&e);
  }
  raw_send(fd, all.buf, all.len);
  xdr_enc_free(&all);
  for (uint32_t i = 0; i < 200; i++) {
    rec = raw_recv_record(fd, &len);
    CHECK(rec != NULL);
    xdr_dec_init(&d, rec, len);
    CHECK_OK(oncrpc_dec_reply(&d, &r));
    CHECK_OK(xdr_dec_u32(&d, &v));
    CHECK_INT(r.xid, ==, 1000 + i);
    CHECK_INT(v, ==, (i & 0xff) + 1);
    free(rec);
  }
  close(fd);
  harness_stop(&h);
}

TEST(tcp_protocol_violations_close_the_connection)
{
  struct harness h;
  harness_start(&h);
  uint8_t mark[4];

  /* 2 GiB record length. */
  int fd = raw_connect(h.port);
  put_mark(mark, 0x7fffffff, true);
  raw_send(fd, mark, 4);
  CHECK(raw_closed(fd));
  close(fd);

  /* Just over the cap, in fragments that are each small. */
  fd = raw_connect(h.port);
  static uint8_t chunk[65536];
  size_t sent = 0;
  while (sent <= RPCSRV_RECORD_MAX) {
    put_mark(mark, sizeof chunk, false);
    /* The server may close while we are still sending. */
    if (send(fd, mark, 4, MSG_NOSIGNAL) < 0 || send(fd, chunk, sizeof chunk, MSG_NOSIGNAL) < 0)
      break;
    sent += sizeof chunk;
  }
  CHECK(raw_closed(fd));
  close(fd);

  /* Garbage that is not an RPC call. */
  fd = raw_connect(h.port);
  static const uint8_t garbage[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  raw_send_record(fd, garbage, sizeof garbage, 1 << 20);
  CHECK(raw_closed(fd));
  close(fd);

  /* An HTTP request read as a record mark: a huge length. */
  fd = raw_connect(h.port);
  raw_send(fd, garbage, sizeof garbage);
  CHECK(raw_closed(fd));
  close(fd);

  /* A truncated record, then EOF from the client. */
  fd = raw_connect(h.port);
  put_mark(mark, 100, true);
  raw_send(fd, mark, 4);
  raw_send(fd, chunk, 50);
  shutdown(fd, SHUT_WR);
  CHECK(raw_closed(fd));
  close(fd);

  /* After all that, the server still serves. */
  fd = raw_connect(h.port);
  null_ok(fd, 9);
  close(fd);
  harness_stop(&h);
  /* And it said why it closed each connection. */
  CHECK_MSG(harness_logged(&h, "127.0.0.1: closing: a record over"), "log:\n%s", h.log);
  CHECK_MSG(harness_logged(&h, "127.0.0.1: a 28-byte record that is not an RPC call"), "log:\n%s", h.log);
  CHECK_MSG(harness_logged(&h, "127.0.0.1: closed in the middle of a record"), "log:\n%s", h.log);
}

TEST(tcp_big_record_and_backpressure)
{
  struct harness h;
  harness_start_with(&h, register_test_prog);
  int fd = raw_connect(h.port);
  /* A 1 MiB argument body (NULL ignores it) in 3 fragments. */
  size_t big = 1 << 20;
  uint8_t *args = calloc(1, big);
  struct xdr_enc e;
  call_build(&e, 5, NFS3_PROGRAM, 3, 0, NULL, args, big);
  raw_send_record(fd, e.buf, e.len, e.len / 3 + 1);
  xdr_enc_free(&e);
  free(args);
  size_t len;
  uint8_t *rec = raw_recv_record(fd, &len);
  CHECK(rec != NULL && len >= 4 && rec[3] == 5);
  free(rec);
  null_ok(fd, 6);

  /* 40 calls asking for 1 MiB each, replies not read for a while: the
   * server must stop reading rather than buffer 40 MiB, keep serving other
   * connections, and deliver everything in order once we read. */
  enum { N = 40 };
  for (uint32_t i = 0; i < N; i++) {
    uint8_t a[4] = {0, 0x10, 0, 0};
    call_build(&e, 100 + i, TESTPROG, 7, 6, NULL, a, 4);
    raw_send_record(fd, e.buf, e.len, 1 << 30);
    xdr_enc_free(&e);
  }
  usleep(200 * 1000);
  int other = raw_connect(h.port);
  null_ok(other, 1);
  close(other);
  for (uint32_t i = 0; i < N; i++) {
    rec = raw_recv_record(fd, &len);
    CHECK_MSG(rec != NULL, "reply %u missing", i);
    struct xdr_dec d;
    struct oncrpc_reply r;
    struct xdr_bytes b;
    xdr_dec_init(&d, rec, len);
    CHECK_OK(oncrpc_dec_reply(&d, &r));
    CHECK_INT(r.xid, ==, 100 + i);
    CHECK_OK(xdr_dec_bytes(&d, 1 << 20, &b));
    CHECK_INT(b.len, ==, 1 << 20);
    CHECK_INT(b.data[b.len - 1], ==, (100 + i) & 0xff);
    free(rec);
  }
  close(fd);
  harness_stop(&h);
}

TEST(tcp_connection_cap)
{
  /* Client and server ends live in this process: room for both. */
  struct rlimit rl;
  CHECK_OK(getrlimit(RLIMIT_NOFILE, &rl));
  if (rl.rlim_max < 2 * TCPSRV_CONNS_MAX + 100) {
    printf("# skipped: RLIMIT_NOFILE hard limit %llu\n", (unsigned long long)rl.rlim_max);
    return;
  }
  rl.rlim_cur = 2 * TCPSRV_CONNS_MAX + 100;
  CHECK_OK(setrlimit(RLIMIT_NOFILE, &rl));
  struct harness h;
  harness_start(&h);
  static int fds[TCPSRV_CONNS_MAX];
  for (unsigned i = 0; i < TCPSRV_CONNS_MAX; i++)
    fds[i] = raw_connect(h.port);
  null_ok(fds[TCPSRV_CONNS_MAX - 1], 1); /* all of them are being served */
  int extra = raw_connect(h.port);
  CHECK(raw_closed(extra));
  close(extra);
  close(fds[0]);
  /* A slot frees up once the server has seen the close. */
  bool served = false;
  for (int tries = 0; tries < 50 && !served; tries++) {
    usleep(20 * 1000);
    extra = raw_connect(h.port);
    uint8_t probe[64];
    struct xdr_enc e;
    call_build(&e, 2, NFS3_PROGRAM, 3, 0, NULL, NULL, 0);
    uint32_t mark = htonl(0x80000000u | (uint32_t)e.len);
    send(extra, &mark, 4, MSG_NOSIGNAL);
    send(extra, e.buf, e.len, MSG_NOSIGNAL);
    xdr_enc_free(&e);
    struct pollfd p = {.fd = extra, .events = POLLIN};
    served = poll(&p, 1, 2000) == 1 && recv(extra, probe, sizeof probe, 0) > 0;
    close(extra);
  }
  CHECK(served);
  for (unsigned i = 1; i < TCPSRV_CONNS_MAX; i++)
    close(fds[i]);
  harness_stop(&h);
}

TEST(tcp_addresses)
{
  struct sockaddr_storage ss;
  CHECK_OK(tcpsrv_parse_addr("127.0.0.1:2049", &ss));
  CHECK_INT(ss.ss_family, ==, AF_INET);
  CHECK_INT(ntohs(((struct sockaddr_in *)&ss)->sin_port), ==, 2049);
  CHECK_OK(tcpsrv_parse_addr("[::1]:0", &ss));
  CHECK_INT(ss.ss_family, ==, AF_INET6);
  static const char *const bad[] = {"127.0.0.1", "127.0.0.1:", ":2049", "127.0.0.1:65536",
                                    "127.0.0.1:-1", "::1:2049", "[::1]2049", "localhost:2049",
                                    "127.0.0.1:20x9", "[::1]:", ""};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    CHECK_MSG(tcpsrv_parse_addr(bad[i], &ss) == -EINVAL, "accepted '%s'", bad[i]);
}

static void count_done(void *arg) { ++*(int *)arg; }

TEST(tcp_ipv6_busy_port_and_shutdown_with_clients)
{
  uv_loop_t loop;
  CHECK_OK(uv_loop_init(&loop));
  struct rpcsrv *rpc;
  CHECK_OK(rpcsrv_new(&rpc));
  CHECK_OK(nfsd_register(rpc, NULL));
  struct sockaddr_storage ss;
  struct tcpsrv *a, *b;
  CHECK_OK(tcpsrv_parse_addr("127.0.0.1:0", &ss));
  CHECK_OK(tcpsrv_start(&loop, rpc, (struct sockaddr *)&ss, &a));
  /* The same port again: refused, and the half-made server is released
   * by the loop (ASan would see a leak otherwise). */
  char again[32];
  snprintf(again, sizeof again, "127.0.0.1:%d", tcpsrv_port(a));
  CHECK_OK(tcpsrv_parse_addr(again, &ss));
  CHECK_INT(tcpsrv_start(&loop, rpc, (struct sockaddr *)&ss, &b), ==, UV_EADDRINUSE);
  uv_run(&loop, UV_RUN_NOWAIT);

  /* Clients connected (one idle, one mid-record) when the server stops. */
  int idle = raw_connect(tcpsrv_port(a));
  int mid = raw_connect(tcpsrv_port(a));
  uint8_t mark[4];
  put_mark(mark, 100, true);
  raw_send(mid, mark, 4);
  for (int i = 0; i < 50 && tcpsrv_connections(a) < 2; i++)
    uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
  CHECK_INT(tcpsrv_connections(a), ==, 2);
  int done = 0;
  tcpsrv_stop(a, count_done, &done);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_INT(done, ==, 1);
  CHECK(raw_closed(idle));
  CHECK(raw_closed(mid));
  close(idle);
  close(mid);

  /* IPv6 loopback, where the host has it. */
  CHECK_OK(tcpsrv_parse_addr("[::1]:0", &ss));
  if (tcpsrv_start(&loop, rpc, (struct sockaddr *)&ss, &b) == 0) {
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)tcpsrv_port(b)),
                                .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    CHECK_OK(connect(fd, (struct sockaddr *)&sin6, sizeof sin6));
    struct xdr_enc e;
    call_build(&e, 5, NFS3_PROGRAM, 3, 0, NULL, NULL, 0);
    raw_send_record(fd, e.buf, e.len, 1 << 20);
    xdr_enc_free(&e);
    /* One thread: turn the loop until the reply is readable. */
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    for (int i = 0; i < 5000 && poll(&pfd, 1, 0) == 0; i++) {
      uv_run(&loop, UV_RUN_NOWAIT);
      usleep(1000);
    }
    size_t len;
    uint8_t *rec = raw_recv_record(fd, &len);
    CHECK(rec != NULL && len == 24);
    free(rec);
    close(fd);
    tcpsrv_stop(b, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
  } else {
    printf("# no IPv6 loopback here\n");
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  CHECK_OK(uv_loop_close(&loop));
  rpcsrv_free(rpc);
}

/* ---- libnfs ---- */

struct wait {
  bool done;
  int status;
};

static void on_done(struct rpc_context *rpc, int status, void *data, void *priv)
{
  (void)rpc;
  (void)data;
  struct wait *w = priv;
  w->status = status;
  w->done = true;
}

static void run_until(struct rpc_context *rpc, struct wait *w)
{
  for (int i = 0; i < 500 && !w->done; i++) {
    struct pollfd p = {.fd = rpc_get_fd(rpc), .events = (short)rpc_which_events(rpc)};
    if (poll(&p, 1, 10) < 0)
      break;
    CHECK_OK(rpc_service(rpc, p.revents));
  }
  CHECK_MSG(w->done, "libnfs call timed out: %s", rpc_get_error(rpc));
}

TEST(libnfs_nfs3_null)
{
  struct harness h;
  harness_start(&h);
  struct rpc_context *rpc = rpc_init_context();
  CHECK(rpc != NULL);
  struct wait w = {0};
  CHECK_OK(rpc_connect_async(rpc, "127.0.0.1", h.port, on_done, &w));
  run_until(rpc, &w);
  CHECK_INT(w.status, ==, RPC_STATUS_SUCCESS);
  for (int i = 0; i < 3; i++) {
    w = (struct wait){0};
    CHECK_OK(rpc_nfs3_null_async(rpc, on_done, &w));
    run_until(rpc, &w);
    CHECK_INT(w.status, ==, RPC_STATUS_SUCCESS);
  }
  rpc_destroy_context(rpc);
  harness_stop(&h);
}
