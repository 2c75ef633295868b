/* server/udp: MOUNT and NFS over UDP against the real server, one call per
 * datagram; retransmissions answered from the duplicate-request cache. */
#include "tests/server/deploy_harness.h"
#include "xdr/mount3.h"

/* One UDP call; returns the reply buffer (caller frees) with *res at the
 * results. */
static uint8_t *udp_call(int fd, int port, uint32_t xid, uint32_t prog, uint32_t vers,
                         uint32_t proc, const struct oncrpc_auth_sys *cred,
                         const struct xdr_enc *args, struct oncrpc_reply *r, struct xdr_dec *res,
                         size_t *rawlen)
{
  struct xdr_enc e;
  call_encode(&e, xid, prog, vers, proc, cred, args);
  udp_send_to(fd, port, e.buf, e.len);
  xdr_enc_free(&e);
  size_t len;
  uint8_t *rep = udp_recv(fd, &len, 5000);
  CHECK_MSG(rep != NULL, "no UDP reply to %u/%u/%u xid %u", prog, vers, proc, xid);
  if (rawlen)
    *rawlen = len;
  return reply_decode(rep, len, xid, r, res);
}

TEST(mount_and_nfs_over_udp)
{
  struct dep d = {0};
  srv_init(&d.s);
  dep_start(&d, true, NULL);
  int fd = udp_client();
  struct oncrpc_reply r;
  struct xdr_dec res;

  /* NULL of both programs. */
  free(udp_call(fd, d.udp_port, 1, 100005, 3, 0, NULL, NULL, &r, &res, NULL));
  CHECK_INT(r.accept_stat, ==, ONCRPC_SUCCESS);
  free(udp_call(fd, d.udp_port, 2, 100003, 3, 0, NULL, NULL, &r, &res, NULL));
  CHECK_INT(r.accept_stat, ==, ONCRPC_SUCCESS);

  /* MNT /basefs gives the root handle (what mount.nfs does over UDP). */
  struct xdr_enc a;
  xdr_enc_init(&a, 1024);
  xdr_enc_str(&a, "/basefs");
  uint8_t *rep = udp_call(fd, d.udp_port, 3, 100005, 3, 1, &dep_root_cred, &a, &r, &res, NULL);
  xdr_enc_free(&a);
  CHECK_INT(r.accept_stat, ==, ONCRPC_SUCCESS);
  CHECK_INT(res_status(&res), ==, 0);
  struct xdr_bytes fh;
  CHECK_OK(xdr_dec_bytes(&res, 64, &fh));
  CHECK_INT(fh.len, ==, d.s.root_len);
  CHECK(memcmp(fh.data, d.s.root, fh.len) == 0);
  free(rep);

  /* GETATTR of the root: a directory. */
  xdr_enc_init(&a, 1024);
  xdr_enc_bytes(&a, d.s.root, d.s.root_len);
  rep = udp_call(fd, d.udp_port, 4, 100003, 3, 1, &dep_root_cred, &a, &r, &res, NULL);
  xdr_enc_free(&a);
  CHECK_INT(res_status(&res), ==, 0);
  uint32_t type;
  CHECK_OK(xdr_dec_u32(&res, &type));
  CHECK_INT(type, ==, 2); /* NF3DIR */
  free(rep);

  /* Wrong version: PROG_MISMATCH over UDP too. */
  free(udp_call(fd, d.udp_port, 5, 100003, 2, 0, NULL, NULL, &r, &res, NULL));
  CHECK_INT(r.accept_stat, ==, ONCRPC_PROG_MISMATCH);
  CHECK(r.low == 3 && r.high == 3);

  close(fd);
  dep_stop(&d);
  srv_free(&d.s);
}

TEST(udp_garbage_is_dropped_and_serving_goes_on)
{
  struct dep d = {0};
  srv_init(&d.s);
  dep_start(&d, true, NULL);
  int fd = udp_client();
  uint8_t junk[100];
  for (size_t i = 0; i < sizeof junk; i++)
    junk[i] = (uint8_t)(i * 37 + 5);
  junk[4] = junk[5] = junk[6] = 0, junk[7] = 1; /* msg_type REPLY: not a call */
  udp_send_to(fd, d.udp_port, junk, sizeof junk);
  udp_send_to(fd, d.udp_port, junk, 3); /* shorter than an xid */
  udp_send_to(fd, d.udp_port, junk, 0); /* empty */
  size_t len;
  uint8_t *nothing = udp_recv(fd, &len, 300);
  CHECK_MSG(nothing == NULL, "a reply to garbage (%zu bytes)", len);
  struct oncrpc_reply r;
  struct xdr_dec res;
  free(udp_call(fd, d.udp_port, 77, 100003, 3, 0, NULL, NULL, &r, &res, NULL));
  CHECK_INT(r.accept_stat, ==, ONCRPC_SUCCESS);
  close(fd);
  dep_stop(&d);
  CHECK(dep_logged(&d, "not an RPC call") >= 1);
  srv_free(&d.s);
}

TEST(udp_retransmitted_create_remove_get_their_first_reply)
{
  struct dep d = {0};
  srv_init(&d.s);
  dep_start(&d, true, NULL);
  int fd = udp_client();
  struct oncrpc_reply r;
  struct xdr_dec res;
  struct xdr_enc a;
  size_t l1, l2;

  args_create(&a, &d, "u");
  uint8_t *r1 = udp_call(fd, d.udp_port, 500, 100003, 3, 8, &dep_root_cred, &a, &r, &res, &l1);
  CHECK_INT(res_status(&res), ==, 0);
  uint8_t *r2 = udp_call(fd, d.udp_port, 500, 100003, 3, 8, &dep_root_cred, &a, &r, &res, &l2);
  CHECK_INT(res_status(&res), ==, 0); /* not EXIST */
  CHECK(l1 == l2 && memcmp(r1, r2, l1) == 0);
  free(r1);
  free(r2);
  /* The retransmission may come from another socket (port) of the host. */
  int fd2 = udp_client();
  r2 = udp_call(fd2, d.udp_port, 500, 100003, 3, 8, &dep_root_cred, &a, &r, &res, &l2);
  CHECK_INT(res_status(&res), ==, 0);
  free(r2);
  close(fd2);
  xdr_enc_free(&a);

  args_remove(&a, &d, "u");
  r1 = udp_call(fd, d.udp_port, 501, 100003, 3, 12, &dep_root_cred, &a, &r, &res, &l1);
  CHECK_INT(res_status(&res), ==, 0);
  r2 = udp_call(fd, d.udp_port, 501, 100003, 3, 12, &dep_root_cred, &a, &r, &res, &l2);
  CHECK_INT(res_status(&res), ==, 0); /* not NOENT */
  CHECK(l1 == l2 && memcmp(r1, r2, l1) == 0);
  free(r1);
  free(r2);
  /* A genuinely new REMOVE runs: NOENT. */
  free(udp_call(fd, d.udp_port, 502, 100003, 3, 12, &dep_root_cred, &a, &r, &res, NULL));
  xdr_enc_free(&a);
  close(fd);
  dep_stop(&d);
  srv_free(&d.s);
}

TEST(udp_many_clients_interleaved)
{
  struct dep d = {0};
  srv_init(&d.s);
  dep_start(&d, true, NULL);
  enum { N = 8, ROUNDS = 50 };
  int fds[N];
  for (int i = 0; i < N; i++)
    fds[i] = udp_client();
  /* Every client sends its calls before any reply is read: each reply
   * goes back to its own sender with its own xid. */
  for (int round = 0; round < ROUNDS; round++) {
    for (int i = 0; i < N; i++) {
      struct xdr_enc e;
      call_encode(&e, (uint32_t)(round * 100 + i), 100003, 3, 0, NULL, NULL);
      udp_send_to(fds[i], d.udp_port, e.buf, e.len);
      xdr_enc_free(&e);
    }
    for (int i = 0; i < N; i++) {
      size_t len;
      uint8_t *rep = udp_recv(fds[i], &len, 5000);
      struct oncrpc_reply r;
      struct xdr_dec res;
      reply_decode(rep, len, (uint32_t)(round * 100 + i), &r, &res);
      free(rep);
    }
  }
  for (int i = 0; i < N; i++)
    close(fds[i]);
  dep_stop(&d);
  srv_free(&d.s);
}

TEST(udp_bind_errors_and_ipv6)
{
  uv_loop_t loop;
  CHECK_OK(uv_loop_init(&loop));
  struct rpcsrv *rpc;
  CHECK_OK(rpcsrv_new(&rpc));
  CHECK_OK(nfsd_register(rpc, NULL));
  struct sockaddr_storage ss;
  CHECK_OK(tcpsrv_parse_addr("127.0.0.1:0", &ss));
  struct udpsrv *u1, *u2;
  CHECK_OK(udpsrv_start(&loop, rpc, (struct sockaddr *)&ss, &u1));
  char busy[64];
  snprintf(busy, sizeof busy, "127.0.0.1:%d", udpsrv_port(u1));
  CHECK_OK(tcpsrv_parse_addr(busy, &ss));
  CHECK_INT(udpsrv_start(&loop, rpc, (struct sockaddr *)&ss, &u2), ==, UV_EADDRINUSE);
  uv_run(&loop, UV_RUN_NOWAIT);
  /* IPv6 loopback, where the host has it. */
  CHECK_OK(tcpsrv_parse_addr("[::1]:0", &ss));
  int rc = udpsrv_start(&loop, rpc, (struct sockaddr *)&ss, &u2);
  if (rc == 0) {
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in6 to = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)udpsrv_port(u2))};
    to.sin6_addr = in6addr_loopback;
    struct xdr_enc e;
    call_encode(&e, 9, 100003, 3, 0, NULL, NULL);
    CHECK(sendto(fd, e.buf, e.len, 0, (struct sockaddr *)&to, sizeof to) == (ssize_t)e.len);
    xdr_enc_free(&e);
    /* Run the loop until the reply is there. */
    uint8_t *rep = NULL;
    size_t len = 0;
    for (int i = 0; i < 100 && !rep; i++) {
      uv_run(&loop, UV_RUN_NOWAIT);
      rep = udp_recv(fd, &len, 20);
    }
    struct oncrpc_reply r;
    struct xdr_dec res;
    reply_decode(rep, len, 9, &r, &res);
    CHECK_INT(r.accept_stat, ==, ONCRPC_SUCCESS);
    free(rep);
    close(fd);
    udpsrv_stop(u2, NULL, NULL);
  } else {
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  udpsrv_stop(u1, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK_OK(uv_loop_close(&loop));
  rpcsrv_free(rpc);
}

/* FSINFO's rtmax/wtmax over UDP fit a datagram (over TCP they are larger),
 * and a READ asking for more than that gets a short read, not a reply
 * too big to send. */
static uint32_t fsinfo_rtmax(uint8_t *rep, struct xdr_dec *res, uint32_t *wtmax)
{
  CHECK_INT(res_status(res), ==, 0);
  bool present;
  CHECK_OK(xdr_dec_bool(res, &present));
  if (present)
    res->pos += 84; /* fattr3 */
  uint32_t rtmax, rtpref, rtmult;
  CHECK_OK(xdr_dec_u32(res, &rtmax));
  CHECK_OK(xdr_dec_u32(res, &rtpref));
  CHECK_OK(xdr_dec_u32(res, &rtmult));
  CHECK_OK(xdr_dec_u32(res, wtmax));
  free(rep);
  return rtmax;
}

TEST(udp_sizes_fit_a_datagram)
{
  struct dep d = {0};
  srv_init(&d.s);
  dep_start(&d, true, NULL);
  int fd = udp_client();
  struct oncrpc_reply r;
  struct xdr_dec res;
  struct xdr_enc a;
  xdr_enc_init(&a, 256);
  xdr_enc_bytes(&a, d.s.root, d.s.root_len);
  uint32_t wtmax;
  uint8_t *rep = udp_call(fd, d.udp_port, 1, 100003, 3, 19, &dep_root_cred, &a, &r, &res, NULL);
  CHECK_INT(fsinfo_rtmax(rep, &res, &wtmax), ==, UDPSRV_IO_MAX);
  CHECK_INT(wtmax, ==, UDPSRV_IO_MAX);
  int tfd = raw_connect(d.s.port);
  struct xdr_enc e;
  call_encode(&e, 2, 100003, 3, 19, &dep_root_cred, &a);
  raw_send_record(tfd, e.buf, e.len, 1 << 30);
  xdr_enc_free(&e);
  size_t len = 0;
  uint8_t *trec = raw_recv_record(tfd, &len);
  rep = reply_decode(trec, len, 2, &r, &res);
  CHECK_INT(fsinfo_rtmax(rep, &res, &wtmax), >, UDPSRV_IO_MAX);
  close(tfd);
  xdr_enc_free(&a);

  /* A 100 000-byte file, written over UDP in 25 000-byte FILE_SYNC WRITEs. */
  args_create(&a, &d, "big");
  rep = udp_call(fd, d.udp_port, 3, 100003, 3, 8, &dep_root_cred, &a, &r, &res, NULL);
  xdr_enc_free(&a);
  CHECK_INT(res_status(&res), ==, 0);
  bool present;
  struct xdr_bytes fhb;
  CHECK_OK(xdr_dec_bool(&res, &present));
  CHECK(present);
  CHECK_OK(xdr_dec_bytes(&res, 64, &fhb));
  uint8_t fh[64];
  uint32_t fhlen = fhb.len;
  memcpy(fh, fhb.data, fhlen);
  free(rep);
  static uint8_t data[100000];
  for (size_t i = 0; i < sizeof data; i++)
    data[i] = (uint8_t)(i * 7 + i / 251);
  for (uint32_t off = 0; off < sizeof data; off += 25000) {
    xdr_enc_init(&a, 30000);
    xdr_enc_bytes(&a, fh, fhlen);
    xdr_enc_u64(&a, off);
    xdr_enc_u32(&a, 25000);
    xdr_enc_u32(&a, 2); /* FILE_SYNC */
    xdr_enc_bytes(&a, data + off, 25000);
    rep = udp_call(fd, d.udp_port, 10 + off, 100003, 3, 7, &dep_root_cred, &a, &r, &res, NULL);
    CHECK_INT(res_status(&res), ==, 0);
    free(rep);
    xdr_enc_free(&a);
  }
  /* READ 1 MiB at 0: a short read of at most rtmax bytes, the right ones. */
  xdr_enc_init(&a, 256);
  xdr_enc_bytes(&a, fh, fhlen);
  xdr_enc_u64(&a, 0);
  xdr_enc_u32(&a, 1u << 20);
  rep = udp_call(fd, d.udp_port, 99, 100003, 3, 6, &dep_root_cred, &a, &r, &res, NULL);
  xdr_enc_free(&a);
  CHECK_INT(r.accept_stat, ==, ONCRPC_SUCCESS);
  CHECK_INT(res_status(&res), ==, 0);
  CHECK_OK(xdr_dec_bool(&res, &present));
  if (present)
    res.pos += 84;
  uint32_t count;
  bool eof;
  struct xdr_bytes got;
  CHECK_OK(xdr_dec_u32(&res, &count));
  CHECK_OK(xdr_dec_bool(&res, &eof));
  CHECK_OK(xdr_dec_bytes(&res, 1u << 20, &got));
  CHECK(count > 0 && count <= UDPSRV_IO_MAX && got.len == count && !eof);
  CHECK(memcmp(got.data, data, count) == 0);
  free(rep);
  close(fd);
  dep_stop(&d);
  srv_free(&d.s);
}
