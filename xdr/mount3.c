/* MOUNT v3 codecs (RFC 1813 §5); see mount3.h. */
#include "xdr/mount3.h"

int mount3_dec_dirpath(struct xdr_dec *d, struct xdr_bytes *path)
{
  return xdr_dec_bytes(d, MOUNT3_PATH_MAX, path);
}

void mount3_enc_mnt_res(struct xdr_enc *e, const struct mount3_mnt_res *r)
{
  xdr_enc_u32(e, r->status);
  if (r->status != MOUNT3_SUCCESS)
    return;
  uint32_t fh_len = r->fh_len <= MOUNT3_FHSIZE ? r->fh_len : MOUNT3_FHSIZE;
  uint32_t n = r->nflavors <= MOUNT3_AUTH_FLAVORS_MAX ? r->nflavors : MOUNT3_AUTH_FLAVORS_MAX;
  xdr_enc_bytes(e, r->fh, fh_len);
  xdr_enc_u32(e, n);
  for (uint32_t i = 0; i < n; i++)
    xdr_enc_u32(e, r->flavors[i]);
}

void mount3_enc_mountbody(struct xdr_enc *e, const char *host, const char *dir)
{
  xdr_enc_bool(e, true);
  xdr_enc_str(e, host);
  xdr_enc_str(e, dir);
}

void mount3_enc_exportnode(struct xdr_enc *e, const char *dir, const char *const *groups)
{
  xdr_enc_bool(e, true);
  xdr_enc_str(e, dir);
  for (size_t i = 0; groups && groups[i]; i++) {
    xdr_enc_bool(e, true);
    xdr_enc_str(e, groups[i]);
  }
  xdr_enc_bool(e, false);
}

void mount3_enc_list_end(struct xdr_enc *e)
{
  xdr_enc_bool(e, false);
}
