/* ONC RPC v2 message headers; see oncrpc.h. */
#include "xdr/oncrpc.h"

#include <string.h>

#include "store/error.h"

/* authsys_parms (RFC 5531 appendix A), from the credential's body only:
 * the whole body must be consumed, so a body that lies about its contents
 * is a bad credential, not something we half-trust. */
static int dec_auth_sys(const struct xdr_bytes *body, struct oncrpc_auth_sys *s)
{
  struct xdr_dec d;
  struct xdr_bytes name;
  xdr_dec_init(&d, body->data, body->len);
  memset(s, 0, sizeof *s);
  if (xdr_dec_u32(&d, &s->stamp) < 0 ||
      xdr_dec_bytes(&d, ONCRPC_AUTH_SYS_NAME_MAX, &name) < 0 ||
      xdr_dec_u32(&d, &s->uid) < 0 || xdr_dec_u32(&d, &s->gid) < 0 ||
      xdr_dec_u32(&d, &s->ngids) < 0 || s->ngids > ONCRPC_AUTH_SYS_GIDS_MAX)
    return -BFS_EFORMAT;
  for (uint32_t i = 0; i < s->ngids; i++)
    if (xdr_dec_u32(&d, &s->gids[i]) < 0)
      return -BFS_EFORMAT;
  if (xdr_dec_done(&d) < 0)
    return -BFS_EFORMAT;
  memcpy(s->machine, name.data, name.len);
  s->machine[name.len] = 0;
  s->machine_len = name.len;
  return 0;
}

enum oncrpc_call_verdict oncrpc_dec_call(struct xdr_dec *d, struct oncrpc_call *c)
{
  uint32_t mtype;
  memset(c, 0, sizeof *c);
  if (xdr_dec_u32(d, &c->xid) < 0 || xdr_dec_u32(d, &mtype) < 0 || mtype != ONCRPC_CALL)
    return ONCRPC_CALL_NOT_A_CALL;
  if (xdr_dec_u32(d, &c->rpcvers) < 0)
    return ONCRPC_CALL_NOT_A_CALL;
  /* RFC 5531 §9: a server that does not speak the version says so before
   * looking at anything else, since the rest may be laid out differently. */
  if (c->rpcvers != ONCRPC_VERSION)
    return ONCRPC_CALL_BAD_RPCVERS;
  if (xdr_dec_u32(d, &c->prog) < 0 || xdr_dec_u32(d, &c->vers) < 0 ||
      xdr_dec_u32(d, &c->proc) < 0 || xdr_dec_u32(d, &c->cred_flavor) < 0)
    return ONCRPC_CALL_NOT_A_CALL;
  if (xdr_dec_bytes(d, ONCRPC_AUTH_BODY_MAX, &c->cred_body) < 0)
    return ONCRPC_CALL_BAD_CRED;
  if (c->cred_flavor == ONCRPC_AUTH_SYS && dec_auth_sys(&c->cred_body, &c->sys) < 0)
    return ONCRPC_CALL_BAD_CRED;
  if (xdr_dec_u32(d, &c->verf_flavor) < 0 ||
      xdr_dec_bytes(d, ONCRPC_AUTH_BODY_MAX, &c->verf_body) < 0)
    return ONCRPC_CALL_BAD_VERF;
  return ONCRPC_CALL_OK;
}

static void enc_reply_head(struct xdr_enc *e, uint32_t xid, uint32_t reply_stat)
{
  xdr_enc_u32(e, xid);
  xdr_enc_u32(e, ONCRPC_REPLY);
  xdr_enc_u32(e, reply_stat);
}

static void enc_null_verf(struct xdr_enc *e)
{
  xdr_enc_u32(e, ONCRPC_AUTH_NONE);
  xdr_enc_u32(e, 0);
}

void oncrpc_enc_accepted(struct xdr_enc *e, uint32_t xid, enum oncrpc_accept_stat stat)
{
  enc_reply_head(e, xid, ONCRPC_MSG_ACCEPTED);
  enc_null_verf(e);
  xdr_enc_u32(e, stat);
}

void oncrpc_enc_prog_mismatch(struct xdr_enc *e, uint32_t xid, uint32_t low, uint32_t high)
{
  oncrpc_enc_accepted(e, xid, ONCRPC_PROG_MISMATCH);
  xdr_enc_u32(e, low);
  xdr_enc_u32(e, high);
}

void oncrpc_enc_rpc_mismatch(struct xdr_enc *e, uint32_t xid)
{
  enc_reply_head(e, xid, ONCRPC_MSG_DENIED);
  xdr_enc_u32(e, ONCRPC_RPC_MISMATCH);
  xdr_enc_u32(e, ONCRPC_VERSION);
  xdr_enc_u32(e, ONCRPC_VERSION);
}

void oncrpc_enc_auth_error(struct xdr_enc *e, uint32_t xid, enum oncrpc_auth_stat why)
{
  enc_reply_head(e, xid, ONCRPC_MSG_DENIED);
  xdr_enc_u32(e, ONCRPC_AUTH_ERROR);
  xdr_enc_u32(e, why);
}

void oncrpc_enc_auth_sys(struct xdr_enc *e, const struct oncrpc_auth_sys *s)
{
  xdr_enc_u32(e, s->stamp);
  xdr_enc_bytes(e, s->machine, s->machine_len);
  xdr_enc_u32(e, s->uid);
  xdr_enc_u32(e, s->gid);
  xdr_enc_u32(e, s->ngids);
  for (uint32_t i = 0; i < s->ngids && i < ONCRPC_AUTH_SYS_GIDS_MAX; i++)
    xdr_enc_u32(e, s->gids[i]);
}

void oncrpc_enc_call(struct xdr_enc *e, uint32_t xid, uint32_t prog, uint32_t vers,
                     uint32_t proc, const struct oncrpc_auth_sys *cred)
{
  xdr_enc_u32(e, xid);
  xdr_enc_u32(e, ONCRPC_CALL);
  xdr_enc_u32(e, ONCRPC_VERSION);
  xdr_enc_u32(e, prog);
  xdr_enc_u32(e, vers);
  xdr_enc_u32(e, proc);
  if (cred) {
    xdr_enc_u32(e, ONCRPC_AUTH_SYS);
    size_t at = e->len;
    xdr_enc_u32(e, 0); /* body length, patched below */
    size_t start = e->len;
    oncrpc_enc_auth_sys(e, cred);
    xdr_enc_patch_u32(e, at, (uint32_t)(e->len - start));
  } else {
    enc_null_verf(e);
  }
  enc_null_verf(e);
}

int oncrpc_dec_reply(struct xdr_dec *d, struct oncrpc_reply *r)
{
  uint32_t mtype, flavor;
  struct xdr_bytes body;
  memset(r, 0, sizeof *r);
  if (xdr_dec_u32(d, &r->xid) < 0 || xdr_dec_u32(d, &mtype) < 0 || mtype != ONCRPC_REPLY ||
      xdr_dec_u32(d, &r->reply_stat) < 0)
    return -BFS_EFORMAT;
  if (r->reply_stat == ONCRPC_MSG_ACCEPTED) {
    if (xdr_dec_u32(d, &flavor) < 0 || xdr_dec_bytes(d, ONCRPC_AUTH_BODY_MAX, &body) < 0 ||
        xdr_dec_u32(d, &r->accept_stat) < 0)
      return -BFS_EFORMAT;
    if (r->accept_stat == ONCRPC_PROG_MISMATCH &&
        (xdr_dec_u32(d, &r->low) < 0 || xdr_dec_u32(d, &r->high) < 0))
      return -BFS_EFORMAT;
    return 0;
  }
  if (r->reply_stat != ONCRPC_MSG_DENIED || xdr_dec_u32(d, &r->reject_stat) < 0)
    return -BFS_EFORMAT;
  if (r->reject_stat == ONCRPC_RPC_MISMATCH)
    return xdr_dec_u32(d, &r->low) < 0 || xdr_dec_u32(d, &r->high) < 0 ? -BFS_EFORMAT : 0;
  if (r->reject_stat == ONCRPC_AUTH_ERROR)
    return xdr_dec_u32(d, &r->auth_stat) < 0 ? -BFS_EFORMAT : 0;
  return -BFS_EFORMAT;
}
