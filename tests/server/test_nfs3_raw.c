/*
 * Bad input to the NFSv3 procedures over raw sockets, where libnfs cannot
 * go: names with NUL or '/', over-long names and handles, truncated
 * arguments, AUTH_NONE. Every one gets a correct reply and the connection
 * (and the server) stays up.
 */
#include "tests/server/harness.h"
#include "tests/server/nfs3_harness.h"
#include "xdr/nfs3.h"

/* Sends NFS procedure PROC with ARGS (AUTH_NONE); returns the accept status
 * and, on SUCCESS, the NFS status in *nfs_status. */
static uint32_t raw_nfs(int fd, uint32_t xid, uint32_t proc, const struct xdr_enc *args,
                        uint32_t *nfs_status)
{
  struct oncrpc_reply r;
  struct xdr_dec res;
  uint8_t *rec = call_raw(fd, xid, NFS3_PROGRAM, 3, proc, args->buf, args->len, &r, &res);
  *nfs_status = 0xffffffff;
  if (r.reply_stat == 0 && r.accept_stat == ONCRPC_SUCCESS)
    CHECK_OK(xdr_dec_u32(&res, nfs_status));
  uint32_t a = r.accept_stat;
  free(rec);
  return a;
}

static void enc_dirop(struct xdr_enc *e, const uint8_t *fh, uint32_t fhlen, const void *name,
                      uint32_t len)
{
  xdr_enc_init(e, 1 << 16);
  xdr_enc_bytes(e, fh, fhlen);
  xdr_enc_bytes(e, name, len);
}

TEST(nfs3_raw_bad_names_handles_and_args)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  int fd = raw_connect(s.port);
  struct xdr_enc e;
  uint32_t st;
  /* A name with NUL and one with '/'. */
  enc_dirop(&e, s.root, s.root_len, "a\0b", 3);
  CHECK_INT(raw_nfs(fd, 1, NFS3_PROC_LOOKUP, &e, &st), ==, ONCRPC_SUCCESS);
  CHECK_INT(st, ==, NFS3_ERR_INVAL);
  CHECK_INT(raw_nfs(fd, 2, NFS3_PROC_REMOVE, &e, &st), ==, ONCRPC_SUCCESS);
  CHECK_INT(st, ==, NFS3_ERR_INVAL);
  xdr_enc_free(&e);
  enc_dirop(&e, s.root, s.root_len, "../x", 4);
  CHECK_INT(raw_nfs(fd, 3, NFS3_PROC_LOOKUP, &e, &st), ==, ONCRPC_SUCCESS);
  CHECK_INT(st, ==, NFS3_ERR_INVAL);
  xdr_enc_free(&e);
  /* An empty name. */
  enc_dirop(&e, s.root, s.root_len, "", 0);
  CHECK_INT(raw_nfs(fd, 4, NFS3_PROC_LOOKUP, &e, &st), ==, ONCRPC_SUCCESS);
  CHECK_INT(st, ==, NFS3_ERR_NOENT);
  xdr_enc_free(&e);
  /* 256 and 4000 bytes: NAMETOOLONG; beyond the decode bound: garbage. */
  static uint8_t longname[5000];
  memset(longname, 'x', sizeof longname);
  enc_dirop(&e, s.root, s.root_len, longname, 256);
  CHECK_INT(raw_nfs(fd, 5, NFS3_PROC_LOOKUP, &e, &st), ==, ONCRPC_SUCCESS);
  CHECK_INT(st, ==, NFS3_ERR_NAMETOOLONG);
  xdr_enc_free(&e);
  enc_dirop(&e, s.root, s.root_len, longname, 4000);
  CHECK_INT(raw_nfs(fd, 6, NFS3_PROC_LOOKUP, &e, &st), ==, ONCRPC_SUCCESS);
  CHECK_INT(st, ==, NFS3_ERR_NAMETOOLONG);
  xdr_enc_free(&e);
  enc_dirop(&e, s.root, s.root_len, longname, 4100);
  CHECK_INT(raw_nfs(fd, 7, NFS3_PROC_LOOKUP, &e, &st), ==, ONCRPC_GARBAGE_ARGS);
  xdr_enc_free(&e);
  /* A 65-byte handle is malformed XDR; a 64-byte one of ours is not. */
  uint8_t fh[65] = {0};
  xdr_enc_init(&e, 256);
  xdr_enc_bytes(&e, fh, 65);
  CHECK_INT(raw_nfs(fd, 8, NFS3_PROC_GETATTR, &e, &st), ==, ONCRPC_GARBAGE_ARGS);
  xdr_enc_free(&e);
  xdr_enc_init(&e, 256);
  xdr_enc_bytes(&e, fh, 64);
  CHECK_INT(raw_nfs(fd, 9, NFS3_PROC_GETATTR, &e, &st), ==, ONCRPC_SUCCESS);
  CHECK_INT(st, ==, NFS3_ERR_BADHANDLE);
  xdr_enc_free(&e);
  /* Truncated arguments for every procedure: garbage, never a crash. */
  for (uint32_t proc = 1; proc < NFS3_NPROC; proc++) {
    xdr_enc_init(&e, 256);
    xdr_enc_u32(&e, s.root_len);
    xdr_enc_fixed(&e, s.root, 20);
    CHECK_INT(raw_nfs(fd, 100 + proc, proc, &e, &st), ==, ONCRPC_GARBAGE_ARGS);
    xdr_enc_free(&e);
  }
  /* AUTH_NONE is nobody: may read "/", may not create in it. */
  xdr_enc_init(&e, 256);
  xdr_enc_bytes(&e, s.root, s.root_len);
  CHECK_INT(raw_nfs(fd, 200, NFS3_PROC_GETATTR, &e, &st), ==, ONCRPC_SUCCESS);
  CHECK_INT(st, ==, NFS3_SUCCESS);
  xdr_enc_free(&e);
  enc_dirop(&e, s.root, s.root_len, "new", 3);
  xdr_enc_u32(&e, NFS3_GUARDED);
  for (int i = 0; i < 6; i++)
    xdr_enc_u32(&e, 0); /* sattr3: nothing set */
  CHECK_INT(raw_nfs(fd, 201, NFS3_PROC_CREATE, &e, &st), ==, ONCRPC_SUCCESS);
  CHECK_INT(st, ==, NFS3_ERR_ACCES);
  xdr_enc_free(&e);
  /* The connection is still good. */
  xdr_enc_init(&e, 256);
  xdr_enc_bytes(&e, s.root, s.root_len);
  CHECK_INT(raw_nfs(fd, 300, NFS3_PROC_FSINFO, &e, &st), ==, ONCRPC_SUCCESS);
  CHECK_INT(st, ==, NFS3_SUCCESS);
  xdr_enc_free(&e);
  close(fd);
  srv_stop(&s, true);
  srv_free(&s);
}
