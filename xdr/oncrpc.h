/*
 * ONC RPC version 2 messages (RFC 5531 §9, §10, §14 and appendix A for
 * AUTH_SYS), both directions: the server decodes calls and encodes
 * replies; the client side (encode a call, decode a reply) serves the tests
 * and talking to a local rpcbind.
 *
 * Names carry ONCRPC_/oncrpc_: libtirpc and libnfs headers define the
 * RFC's bare names (SUCCESS, AUTH_ERROR, MSG_DENIED, ...) and must stay
 * includable next to this file.
 */
#ifndef BASEFS_XDR_ONCRPC_H
#define BASEFS_XDR_ONCRPC_H

#include "xdr/xdr.h"

#define ONCRPC_VERSION 2

enum oncrpc_msg_type { ONCRPC_CALL = 0, ONCRPC_REPLY = 1 };
enum oncrpc_reply_stat { ONCRPC_MSG_ACCEPTED = 0, ONCRPC_MSG_DENIED = 1 };

enum oncrpc_accept_stat {
  ONCRPC_SUCCESS = 0,
  ONCRPC_PROG_UNAVAIL = 1,
  ONCRPC_PROG_MISMATCH = 2,
  ONCRPC_PROC_UNAVAIL = 3,
  ONCRPC_GARBAGE_ARGS = 4,
  ONCRPC_SYSTEM_ERR = 5,
};

enum oncrpc_reject_stat { ONCRPC_RPC_MISMATCH = 0, ONCRPC_AUTH_ERROR = 1 };

enum oncrpc_auth_stat {
  ONCRPC_AUTH_OK = 0,
  ONCRPC_AUTH_BADCRED = 1,
  ONCRPC_AUTH_REJECTEDCRED = 2,
  ONCRPC_AUTH_BADVERF = 3,
  ONCRPC_AUTH_REJECTEDVERF = 4,
  ONCRPC_AUTH_TOOWEAK = 5,
  ONCRPC_AUTH_INVALIDRESP = 6,
  ONCRPC_AUTH_FAILED = 7,
};

enum oncrpc_auth_flavor {
  ONCRPC_AUTH_NONE = 0,
  ONCRPC_AUTH_SYS = 1,
  ONCRPC_AUTH_SHORT = 2,
  ONCRPC_AUTH_DH = 3,
  ONCRPC_RPCSEC_GSS = 6,
};

/* opaque_auth's body is opaque<400>. */
#define ONCRPC_AUTH_BODY_MAX 400
/* authsys_parms: machinename<255>, gids<16>. */
#define ONCRPC_AUTH_SYS_NAME_MAX 255
#define ONCRPC_AUTH_SYS_GIDS_MAX 16

struct oncrpc_auth_sys {
  uint32_t stamp;
  char machine[ONCRPC_AUTH_SYS_NAME_MAX + 1]; /* NUL-terminated copy */
  uint32_t machine_len;                       /* may hold NULs: use this */
  uint32_t uid;
  uint32_t gid;
  uint32_t ngids;
  uint32_t gids[ONCRPC_AUTH_SYS_GIDS_MAX];
};

/* A decoded call header. cred_flavor is the raw flavor; sys is valid only
 * when it is ONCRPC_AUTH_SYS (and was checked then). */
struct oncrpc_call {
  uint32_t xid;
  uint32_t rpcvers;
  uint32_t prog;
  uint32_t vers;
  uint32_t proc;
  uint32_t cred_flavor;
  struct xdr_bytes cred_body;
  struct oncrpc_auth_sys sys;
  uint32_t verf_flavor;
  struct xdr_bytes verf_body;
};

/* What the header decoder concluded. Everything but ONCRPC_CALL_OK and
 * ONCRPC_CALL_NOT_A_CALL has a valid xid and asks for the denied reply named
 * in its comment. */
enum oncrpc_call_verdict {
  ONCRPC_CALL_OK = 0,       /* d is at the procedure's arguments */
  ONCRPC_CALL_NOT_A_CALL,   /* no xid, a REPLY, or truncated before the
                               credential: there is nothing sane to answer */
  ONCRPC_CALL_BAD_RPCVERS,  /* MSG_DENIED RPC_MISMATCH low=high=2 */
  ONCRPC_CALL_BAD_CRED,     /* MSG_DENIED AUTH_ERROR AUTH_BADCRED: a body over
                               400 bytes, or malformed AUTH_SYS parameters */
  ONCRPC_CALL_BAD_VERF,     /* MSG_DENIED AUTH_ERROR AUTH_BADVERF */
};

/* Decodes a call header from a complete record. Unknown credential flavors
 * are not an error here (the dispatcher decides what it accepts). */
enum oncrpc_call_verdict oncrpc_dec_call(struct xdr_dec *d, struct oncrpc_call *c);

/* Reply headers. After oncrpc_enc_accepted(..., ONCRPC_SUCCESS) the caller
 * appends the procedure's results; the other encoders write a complete
 * reply. The reply verifier is always AUTH_NONE. */
void oncrpc_enc_accepted(struct xdr_enc *e, uint32_t xid, enum oncrpc_accept_stat stat);
void oncrpc_enc_prog_mismatch(struct xdr_enc *e, uint32_t xid, uint32_t low, uint32_t high);
void oncrpc_enc_rpc_mismatch(struct xdr_enc *e, uint32_t xid);
void oncrpc_enc_auth_error(struct xdr_enc *e, uint32_t xid, enum oncrpc_auth_stat why);

/* The client side. cred NULL means AUTH_NONE. */
void oncrpc_enc_call(struct xdr_enc *e, uint32_t xid, uint32_t prog, uint32_t vers,
                     uint32_t proc, const struct oncrpc_auth_sys *cred);
void oncrpc_enc_auth_sys(struct xdr_enc *e, const struct oncrpc_auth_sys *cred);

struct oncrpc_reply {
  uint32_t xid;
  uint32_t reply_stat;  /* ONCRPC_MSG_ACCEPTED or ONCRPC_MSG_DENIED */
  uint32_t accept_stat; /* when accepted */
  uint32_t reject_stat; /* when denied */
  uint32_t auth_stat;   /* when denied with ONCRPC_AUTH_ERROR */
  uint32_t low, high;   /* PROG_MISMATCH or RPC_MISMATCH */
};
/* Decodes a reply header; on SUCCESS d is left at the results. */
int oncrpc_dec_reply(struct xdr_dec *d, struct oncrpc_reply *r);

#endif
