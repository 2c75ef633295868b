/*
 * Fuzz target for the RPC call path (xdr/oncrpc.h, server/rpc.h): the input
 * is one call record, dispatched to MOUNT (v1, v3) and the NFSv3 table as a
 * real server registers them. Whatever comes back must be a well-formed
 * reply to the same xid, and a record refused as "not a call" must really
 * fail the header decoder. Checks abort.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/mount.h"
#include "server/nfs3.h"
#include "server/rpc.h"
#include "store/error.h"

static void must(int cond, const char *what)
{
  if (!cond) {
    fprintf(stderr, "fuzz_rpc: %s\n", what);
    abort();
  }
}

static int root_fh(void *ctx, uint8_t fh[64], uint32_t *len)
{
  (void)ctx;
  memset(fh, 0x42, 16);
  *len = 16;
  return 0;
}

static struct rpcsrv *rpc;
static struct mountd *mountd;

static void setup(void)
{
  if (rpc)
    return;
  static const char *const groups[] = {"127.0.0.1/32", NULL};
  struct mountd_config mc = {.groups = groups, .root_fh = root_fh};
  must(rpcsrv_new(&rpc) == 0, "rpcsrv_new");
  must(mountd_new(&mc, &mountd) == 0, "mountd_new");
  must(mountd_register(mountd, rpc) == 0, "mountd_register");
  must(nfsd_register(rpc, NULL) == 0, "nfsd_register");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  setup();
  struct oncrpc_call c;
  struct xdr_dec d;
  xdr_dec_init(&d, data, size);
  enum oncrpc_call_verdict v = oncrpc_dec_call(&d, &c);
  must(d.pos <= size, "decoder overran");
  if (v == ONCRPC_CALL_OK && c.cred_flavor == ONCRPC_AUTH_SYS) {
    must(c.sys.ngids <= ONCRPC_AUTH_SYS_GIDS_MAX, "too many gids");
    must(c.sys.machine_len <= ONCRPC_AUTH_SYS_NAME_MAX, "machine name too long");
  }

  struct rpcsrv_peer peer = {.stream = true};
  strcpy(peer.name, "192.0.2.7");
  struct xdr_enc out;
  xdr_enc_init(&out, 2 * RPCSRV_REPLY_MAX);
  int rc = rpcsrv_dispatch(rpc, data, size, &peer, &out);
  must(rc == 1 || rc == 0 || rc == -BFS_EFORMAT, "unexpected dispatch result");
  must((rc == -BFS_EFORMAT) == (v == ONCRPC_CALL_NOT_A_CALL), "not-a-call verdicts differ");
  if (rc == 1) {
    struct oncrpc_reply r;
    xdr_dec_init(&d, out.buf, out.len);
    must(oncrpc_dec_reply(&d, &r) == 0, "reply does not decode");
    must(r.xid == c.xid, "reply to another xid");
    if (r.reply_stat == ONCRPC_MSG_ACCEPTED && r.accept_stat != ONCRPC_SUCCESS)
      must(xdr_dec_done(&d) == 0, "trailing bytes after an error reply");
  } else {
    must(out.len == 0, "bytes written without a reply");
  }
  xdr_enc_free(&out);

  /* The same record through the stream wrapper: marked, same length. */
  xdr_enc_init(&out, 2 * RPCSRV_REPLY_MAX);
  int rc2 = rpcsrv_dispatch_record(rpc, data, size, &peer, &out);
  /* MNT/UMNT change DUMP's list, never whether a reply is sent. */
  must(rc2 == rc, "record wrapper disagrees");
  if (rc2 == 1) {
    must(out.len >= 4, "no record mark");
    uint32_t mark = (uint32_t)out.buf[0] << 24 | (uint32_t)out.buf[1] << 16 |
                    (uint32_t)out.buf[2] << 8 | out.buf[3];
    must(mark == (0x80000000u | (uint32_t)(out.len - 4)), "bad record mark");
  }
  xdr_enc_free(&out);
  return 0;
}
