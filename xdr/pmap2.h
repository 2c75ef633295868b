/*
 * Port mapper version 2 (RFC 1833 §3): what a server needs to register with
 * a local rpcbind (SET/UNSET as a client) and to answer GETPORT and DUMP
 * itself where no rpcbind runs. Names carry PMAP2_/pmap2_.
 */
#ifndef BASEFS_XDR_PMAP2_H
#define BASEFS_XDR_PMAP2_H

#include "xdr/xdr.h"

#define PMAP2_PROGRAM 100000
#define PMAP2_VERSION 2
#define PMAP2_PORT 111

enum pmap2_proc {
  PMAP2_PROC_NULL = 0,
  PMAP2_PROC_SET = 1,
  PMAP2_PROC_UNSET = 2,
  PMAP2_PROC_GETPORT = 3,
  PMAP2_PROC_DUMP = 4,
  PMAP2_PROC_CALLIT = 5,
};

#define PMAP2_IPPROTO_TCP 6
#define PMAP2_IPPROTO_UDP 17

/* mapping: the arguments of SET, UNSET and GETPORT. */
struct pmap2_mapping {
  uint32_t prog;
  uint32_t vers;
  uint32_t prot;
  uint32_t port;
};
int pmap2_dec_mapping(struct xdr_dec *d, struct pmap2_mapping *m);
void pmap2_enc_mapping(struct xdr_enc *e, const struct pmap2_mapping *m);
/* DUMP's pmaplist, streamed: one call per mapping, then the end. */
void pmap2_enc_list_entry(struct xdr_enc *e, const struct pmap2_mapping *m);
void pmap2_enc_list_end(struct xdr_enc *e);

#endif
