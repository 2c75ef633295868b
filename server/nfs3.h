/*
 * NFS version 3 (program 100003) on the dispatcher.
 *
 * The procedure table lives in nfs3.c: one slot per procedure number
 * (NFS3_PROC_* in xdr/nfs3.h). A procedure is a handler
 *
 *   static enum rpcsrv_status proc_getattr(struct rpcsrv_call *call)
 *   {
 *     struct nfs3_fh_args a;
 *     if (nfs3_dec_fh_args(&call->args, &a) < 0)
 *       return RPCSRV_GARBAGE_ARGS;
 *     struct nfs3_getattr_res r = {...};     // from the view
 *     nfs3_enc_getattr_res(call->res, &r);
 *     return RPCSRV_OK;
 *   }
 *
 * with call->ctx the server's state, call->hdr->sys the AUTH_SYS
 * credential (call->hdr->cred_flavor says whether there is one) and
 * call->peer the client. NFS errors (NFS3_ERR_*) are ordinary results
 * with RPCSRV_OK; only undecodable arguments are GARBAGE_ARGS. Until a
 * slot has a handler it answers PROC_UNAVAIL. An NFSv2 or v4 call gets
 * PROG_MISMATCH 3..3, which makes Linux fall back to v3.
 *
 * This header stays free of xdr/nfs3.h so tests may include it next to
 * libnfs's headers.
 */
#ifndef BASEFS_SERVER_NFS3_H
#define BASEFS_SERVER_NFS3_H

#include "server/rpc.h"

/* Registers NFS v3 with rpc; ctx is handed to every procedure. */
int nfsd_register(struct rpcsrv *rpc, void *ctx);

#endif
