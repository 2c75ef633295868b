/* Port mapper v2 codecs (RFC 1833); see pmap2.h. */
#include "xdr/pmap2.h"

int pmap2_dec_mapping(struct xdr_dec *d, struct pmap2_mapping *m)
{
  int rc;
  if ((rc = xdr_dec_u32(d, &m->prog)) < 0 || (rc = xdr_dec_u32(d, &m->vers)) < 0 ||
      (rc = xdr_dec_u32(d, &m->prot)) < 0 || (rc = xdr_dec_u32(d, &m->port)) < 0)
    return rc;
  return 0;
}

void pmap2_enc_mapping(struct xdr_enc *e, const struct pmap2_mapping *m)
{
  xdr_enc_u32(e, m->prog);
  xdr_enc_u32(e, m->vers);
  xdr_enc_u32(e, m->prot);
  xdr_enc_u32(e, m->port);
}

void pmap2_enc_list_entry(struct xdr_enc *e, const struct pmap2_mapping *m)
{
  xdr_enc_bool(e, true);
  pmap2_enc_mapping(e, m);
}

void pmap2_enc_list_end(struct xdr_enc *e)
{
  xdr_enc_bool(e, false);
}
