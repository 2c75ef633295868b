/* NFSv3 argument decoders and result encoders (RFC 1813); see nfs3.h. */
#include "xdr/nfs3.h"

#include <errno.h>
#include <string.h>

#include "store/error.h"

/* Every decoder below is a chain of steps that each return 0 or
 * -BFS_EFORMAT; TRY keeps that chain readable. */
#define TRY(expr)        \
  do {                   \
    int try_rc_ = (expr); \
    if (try_rc_ < 0)     \
      return try_rc_;    \
  } while (0)

static int dec_fh(struct xdr_dec *d, struct nfs3_fh *fh)
{
  return xdr_dec_bytes_copy(d, NFS3_FHSIZE, fh->data, &fh->len);
}

static int dec_time(struct xdr_dec *d, struct nfs3_time *t)
{
  TRY(xdr_dec_u32(d, &t->sec));
  return xdr_dec_u32(d, &t->nsec);
}

static int dec_name(struct xdr_dec *d, struct xdr_bytes *s)
{
  return xdr_dec_bytes(d, NFS3_STRING_DECODE_MAX, s);
}

static int dec_dirop(struct xdr_dec *d, struct nfs3_dirop *o)
{
  TRY(dec_fh(d, &o->dir));
  return dec_name(d, &o->name);
}

static int dec_set_time(struct xdr_dec *d, uint32_t *how, struct nfs3_time *t)
{
  TRY(xdr_dec_enum(d, NFS3_SET_TO_CLIENT_TIME, how));
  if (*how == NFS3_SET_TO_CLIENT_TIME)
    return dec_time(d, t);
  return 0;
}

static int dec_sattr(struct xdr_dec *d, struct nfs3_sattr *s)
{
  memset(s, 0, sizeof *s);
  TRY(xdr_dec_bool(d, &s->set_mode));
  if (s->set_mode)
    TRY(xdr_dec_u32(d, &s->mode));
  TRY(xdr_dec_bool(d, &s->set_uid));
  if (s->set_uid)
    TRY(xdr_dec_u32(d, &s->uid));
  TRY(xdr_dec_bool(d, &s->set_gid));
  if (s->set_gid)
    TRY(xdr_dec_u32(d, &s->gid));
  TRY(xdr_dec_bool(d, &s->set_size));
  if (s->set_size)
    TRY(xdr_dec_u64(d, &s->size));
  TRY(dec_set_time(d, &s->atime_how, &s->atime));
  return dec_set_time(d, &s->mtime_how, &s->mtime);
}

int nfs3_dec_fh_args(struct xdr_dec *d, struct nfs3_fh_args *a)
{
  return dec_fh(d, &a->fh);
}

int nfs3_dec_setattr_args(struct xdr_dec *d, struct nfs3_setattr_args *a)
{
  TRY(dec_fh(d, &a->fh));
  TRY(dec_sattr(d, &a->attr));
  TRY(xdr_dec_bool(d, &a->guard_check));
  a->guard_ctime = (struct nfs3_time){0, 0};
  if (a->guard_check)
    TRY(dec_time(d, &a->guard_ctime));
  return 0;
}

int nfs3_dec_dirop_args(struct xdr_dec *d, struct nfs3_dirop_args *a)
{
  return dec_dirop(d, &a->what);
}

int nfs3_dec_access_args(struct xdr_dec *d, struct nfs3_access_args *a)
{
  TRY(dec_fh(d, &a->fh));
  return xdr_dec_u32(d, &a->access);
}

int nfs3_dec_read_args(struct xdr_dec *d, struct nfs3_read_args *a)
{
  TRY(dec_fh(d, &a->fh));
  TRY(xdr_dec_u64(d, &a->offset));
  return xdr_dec_u32(d, &a->count);
}

int nfs3_dec_write_args(struct xdr_dec *d, struct nfs3_write_args *a)
{
  TRY(dec_fh(d, &a->fh));
  TRY(xdr_dec_u64(d, &a->offset));
  TRY(xdr_dec_u32(d, &a->count));
  TRY(xdr_dec_enum(d, NFS3_FILE_SYNC, &a->stable));
  TRY(xdr_dec_bytes(d, NFS3_IO_MAX, &a->data));
  /* RFC 1813 leaves count and the data's length redundant; a client whose
   * two lengths disagree is broken and we would have to guess which one
   * it meant (Linux's nfsd refuses such a call too). */
  if (a->data.len != a->count)
    return -BFS_EFORMAT;
  return 0;
}

int nfs3_dec_create_args(struct xdr_dec *d, struct nfs3_create_args *a)
{
  TRY(dec_dirop(d, &a->where));
  TRY(xdr_dec_enum(d, NFS3_EXCLUSIVE, &a->mode));
  memset(&a->attr, 0, sizeof a->attr);
  memset(a->verf, 0, sizeof a->verf);
  if (a->mode == NFS3_EXCLUSIVE)
    return xdr_dec_fixed(d, a->verf, NFS3_CREATEVERFSIZE);
  return dec_sattr(d, &a->attr);
}

int nfs3_dec_mkdir_args(struct xdr_dec *d, struct nfs3_mkdir_args *a)
{
  TRY(dec_dirop(d, &a->where));
  return dec_sattr(d, &a->attr);
}

int nfs3_dec_symlink_args(struct xdr_dec *d, struct nfs3_symlink_args *a)
{
  TRY(dec_dirop(d, &a->where));
  TRY(dec_sattr(d, &a->attr));
  return xdr_dec_bytes(d, NFS3_STRING_DECODE_MAX, &a->target);
}

int nfs3_dec_mknod_args(struct xdr_dec *d, struct nfs3_mknod_args *a)
{
  TRY(dec_dirop(d, &a->where));
  TRY(xdr_dec_u32(d, &a->type));
  memset(&a->attr, 0, sizeof a->attr);
  a->spec_major = a->spec_minor = 0;
  switch (a->type) {
  case NFS3_CHR:
  case NFS3_BLK:
    TRY(dec_sattr(d, &a->attr));
    TRY(xdr_dec_u32(d, &a->spec_major));
    return xdr_dec_u32(d, &a->spec_minor);
  case NFS3_SOCK:
  case NFS3_FIFO:
    return dec_sattr(d, &a->attr);
  case NFS3_REG:
  case NFS3_DIR:
  case NFS3_LNK:
    /* mknoddata3's default arm is void: legal, answered NFS3ERR_BADTYPE. */
    return 0;
  default:
    return -BFS_EFORMAT;
  }
}

int nfs3_dec_rename_args(struct xdr_dec *d, struct nfs3_rename_args *a)
{
  TRY(dec_dirop(d, &a->from));
  return dec_dirop(d, &a->to);
}

int nfs3_dec_link_args(struct xdr_dec *d, struct nfs3_link_args *a)
{
  TRY(dec_fh(d, &a->fh));
  return dec_dirop(d, &a->link);
}

int nfs3_dec_readdir_args(struct xdr_dec *d, struct nfs3_readdir_args *a)
{
  TRY(dec_fh(d, &a->dir));
  TRY(xdr_dec_u64(d, &a->cookie));
  TRY(xdr_dec_fixed(d, a->verf, NFS3_COOKIEVERFSIZE));
  return xdr_dec_u32(d, &a->count);
}

int nfs3_dec_readdirplus_args(struct xdr_dec *d, struct nfs3_readdirplus_args *a)
{
  TRY(dec_fh(d, &a->dir));
  TRY(xdr_dec_u64(d, &a->cookie));
  TRY(xdr_dec_fixed(d, a->verf, NFS3_COOKIEVERFSIZE));
  TRY(xdr_dec_u32(d, &a->dircount));
  return xdr_dec_u32(d, &a->maxcount);
}

int nfs3_dec_commit_args(struct xdr_dec *d, struct nfs3_commit_args *a)
{
  TRY(dec_fh(d, &a->fh));
  TRY(xdr_dec_u64(d, &a->offset));
  return xdr_dec_u32(d, &a->count);
}

int nfs3_dec_args(uint32_t proc, struct xdr_dec *d, union nfs3_args *a)
{
  switch (proc) {
  case NFS3_PROC_NULL:
    return 0;
  case NFS3_PROC_GETATTR:
  case NFS3_PROC_READLINK:
  case NFS3_PROC_FSSTAT:
  case NFS3_PROC_FSINFO:
  case NFS3_PROC_PATHCONF:
    return nfs3_dec_fh_args(d, &a->fh);
  case NFS3_PROC_SETATTR:
    return nfs3_dec_setattr_args(d, &a->setattr);
  case NFS3_PROC_LOOKUP:
  case NFS3_PROC_REMOVE:
  case NFS3_PROC_RMDIR:
    return nfs3_dec_dirop_args(d, &a->dirop);
  case NFS3_PROC_ACCESS:
    return nfs3_dec_access_args(d, &a->access);
  case NFS3_PROC_READ:
    return nfs3_dec_read_args(d, &a->read);
  case NFS3_PROC_WRITE:
    return nfs3_dec_write_args(d, &a->write);
  case NFS3_PROC_CREATE:
    return nfs3_dec_create_args(d, &a->create);
  case NFS3_PROC_MKDIR:
    return nfs3_dec_mkdir_args(d, &a->mkdir);
  case NFS3_PROC_SYMLINK:
    return nfs3_dec_symlink_args(d, &a->symlink);
  case NFS3_PROC_MKNOD:
    return nfs3_dec_mknod_args(d, &a->mknod);
  case NFS3_PROC_RENAME:
    return nfs3_dec_rename_args(d, &a->rename);
  case NFS3_PROC_LINK:
    return nfs3_dec_link_args(d, &a->link);
  case NFS3_PROC_READDIR:
    return nfs3_dec_readdir_args(d, &a->readdir);
  case NFS3_PROC_READDIRPLUS:
    return nfs3_dec_readdirplus_args(d, &a->readdirplus);
  case NFS3_PROC_COMMIT:
    return nfs3_dec_commit_args(d, &a->commit);
  default:
    return -EINVAL;
  }
}

/* ---- encoders ---- */

static void enc_time(struct xdr_enc *e, const struct nfs3_time *t)
{
  xdr_enc_u32(e, t->sec);
  xdr_enc_u32(e, t->nsec);
}

void nfs3_enc_fh(struct xdr_enc *e, const struct nfs3_fh *fh)
{
  /* A handle is ours, never over 64 bytes; refuse rather than emit it. */
  if (fh->len > NFS3_FHSIZE) {
    if (!e->err)
      e->err = -BFS_ETOOBIG;
    return;
  }
  xdr_enc_bytes(e, fh->data, fh->len);
}

void nfs3_enc_fattr(struct xdr_enc *e, const struct nfs3_fattr *a)
{
  xdr_enc_u32(e, a->type);
  xdr_enc_u32(e, a->mode);
  xdr_enc_u32(e, a->nlink);
  xdr_enc_u32(e, a->uid);
  xdr_enc_u32(e, a->gid);
  xdr_enc_u64(e, a->size);
  xdr_enc_u64(e, a->used);
  xdr_enc_u32(e, a->rdev_major);
  xdr_enc_u32(e, a->rdev_minor);
  xdr_enc_u64(e, a->fsid);
  xdr_enc_u64(e, a->fileid);
  enc_time(e, &a->atime);
  enc_time(e, &a->mtime);
  enc_time(e, &a->ctime);
}

void nfs3_enc_post_attr(struct xdr_enc *e, const struct nfs3_post_attr *a)
{
  xdr_enc_bool(e, a->present);
  if (a->present)
    nfs3_enc_fattr(e, &a->attr);
}

void nfs3_enc_wcc(struct xdr_enc *e, const struct nfs3_wcc *w)
{
  xdr_enc_bool(e, w->before.present);
  if (w->before.present) {
    xdr_enc_u64(e, w->before.attr.size);
    enc_time(e, &w->before.attr.mtime);
    enc_time(e, &w->before.attr.ctime);
  }
  nfs3_enc_post_attr(e, &w->after);
}

void nfs3_enc_post_fh(struct xdr_enc *e, const struct nfs3_post_fh *fh)
{
  xdr_enc_bool(e, fh->present);
  if (fh->present)
    nfs3_enc_fh(e, &fh->fh);
}

void nfs3_enc_getattr_res(struct xdr_enc *e, const struct nfs3_getattr_res *r)
{
  xdr_enc_u32(e, r->status);
  if (r->status == NFS3_SUCCESS)
    nfs3_enc_fattr(e, &r->attr);
}

void nfs3_enc_wcc_res(struct xdr_enc *e, const struct nfs3_wcc_res *r)
{
  xdr_enc_u32(e, r->status);
  nfs3_enc_wcc(e, &r->wcc);
}

void nfs3_enc_lookup_res(struct xdr_enc *e, const struct nfs3_lookup_res *r)
{
  xdr_enc_u32(e, r->status);
  if (r->status == NFS3_SUCCESS) {
    nfs3_enc_fh(e, &r->fh);
    nfs3_enc_post_attr(e, &r->obj_attr);
  }
  nfs3_enc_post_attr(e, &r->dir_attr);
}

void nfs3_enc_access_res(struct xdr_enc *e, const struct nfs3_access_res *r)
{
  xdr_enc_u32(e, r->status);
  nfs3_enc_post_attr(e, &r->attr);
  if (r->status == NFS3_SUCCESS)
    xdr_enc_u32(e, r->access);
}

void nfs3_enc_readlink_res(struct xdr_enc *e, const struct nfs3_readlink_res *r)
{
  xdr_enc_u32(e, r->status);
  nfs3_enc_post_attr(e, &r->attr);
  if (r->status == NFS3_SUCCESS)
    xdr_enc_bytes(e, r->target.data, r->target.len);
}

uint8_t *nfs3_enc_read_ok(struct xdr_enc *e, const struct nfs3_post_attr *attr, uint32_t count,
                          bool eof)
{
  xdr_enc_u32(e, NFS3_SUCCESS);
  nfs3_enc_post_attr(e, attr);
  xdr_enc_u32(e, count);
  xdr_enc_bool(e, eof);
  return xdr_enc_bytes_reserve(e, count);
}

void nfs3_enc_read_res(struct xdr_enc *e, const struct nfs3_read_res *r)
{
  if (r->status != NFS3_SUCCESS) {
    xdr_enc_u32(e, r->status);
    nfs3_enc_post_attr(e, &r->attr);
    return;
  }
  uint8_t *p = nfs3_enc_read_ok(e, &r->attr, r->count, r->eof);
  if (p && r->count)
    memcpy(p, r->data, r->count);
}

void nfs3_enc_write_res(struct xdr_enc *e, const struct nfs3_write_res *r)
{
  xdr_enc_u32(e, r->status);
  nfs3_enc_wcc(e, &r->wcc);
  if (r->status == NFS3_SUCCESS) {
    xdr_enc_u32(e, r->count);
    xdr_enc_u32(e, r->committed);
    xdr_enc_fixed(e, r->verf, NFS3_WRITEVERFSIZE);
  }
}

void nfs3_enc_create_res(struct xdr_enc *e, const struct nfs3_create_res *r)
{
  xdr_enc_u32(e, r->status);
  if (r->status == NFS3_SUCCESS) {
    nfs3_enc_post_fh(e, &r->fh);
    nfs3_enc_post_attr(e, &r->obj_attr);
  }
  nfs3_enc_wcc(e, &r->dir_wcc);
}

void nfs3_enc_rename_res(struct xdr_enc *e, const struct nfs3_rename_res *r)
{
  xdr_enc_u32(e, r->status);
  nfs3_enc_wcc(e, &r->from_wcc);
  nfs3_enc_wcc(e, &r->to_wcc);
}

void nfs3_enc_link_res(struct xdr_enc *e, const struct nfs3_link_res *r)
{
  xdr_enc_u32(e, r->status);
  nfs3_enc_post_attr(e, &r->file_attr);
  nfs3_enc_wcc(e, &r->dir_wcc);
}

void nfs3_enc_readdir_begin(struct xdr_enc *e, const struct nfs3_post_attr *dir_attr,
                            const uint8_t verf[NFS3_COOKIEVERFSIZE])
{
  xdr_enc_u32(e, NFS3_SUCCESS);
  nfs3_enc_post_attr(e, dir_attr);
  xdr_enc_fixed(e, verf, NFS3_COOKIEVERFSIZE);
}

void nfs3_enc_readdir_entry(struct xdr_enc *e, uint64_t fileid, const void *name, uint32_t len,
                            uint64_t cookie)
{
  xdr_enc_bool(e, true); /* the list's "next entry follows" */
  xdr_enc_u64(e, fileid);
  xdr_enc_bytes(e, name, len);
  xdr_enc_u64(e, cookie);
}

void nfs3_enc_readdirplus_entry(struct xdr_enc *e, uint64_t fileid, const void *name, uint32_t len,
                                uint64_t cookie, const struct nfs3_post_attr *attr,
                                const struct nfs3_post_fh *fh)
{
  nfs3_enc_readdir_entry(e, fileid, name, len, cookie);
  nfs3_enc_post_attr(e, attr);
  nfs3_enc_post_fh(e, fh);
}

void nfs3_enc_readdir_end(struct xdr_enc *e, bool eof)
{
  xdr_enc_bool(e, false);
  xdr_enc_bool(e, eof);
}

void nfs3_enc_readdir_fail(struct xdr_enc *e, uint32_t status, const struct nfs3_post_attr *dir_attr)
{
  xdr_enc_u32(e, status);
  nfs3_enc_post_attr(e, dir_attr);
}

static size_t bytes_size(uint32_t len) { return 4 + (size_t)len + ((4 - (len & 3)) & 3); }

#define FATTR_SIZE 84

static size_t post_attr_size(const struct nfs3_post_attr *a)
{
  return 4 + (a && a->present ? FATTR_SIZE : 0);
}

size_t nfs3_readdir_entry_size(uint32_t namelen)
{
  return 4 + 8 + bytes_size(namelen) + 8;
}

size_t nfs3_readdirplus_entry_size(uint32_t namelen, const struct nfs3_post_attr *attr,
                                   const struct nfs3_post_fh *fh)
{
  size_t fh_size = 4 + (fh && fh->present ? bytes_size(fh->fh.len) : 0);
  return nfs3_readdir_entry_size(namelen) + post_attr_size(attr) + fh_size;
}

size_t nfs3_readdir_overhead(const struct nfs3_post_attr *dir_attr)
{
  return 4 + post_attr_size(dir_attr) + NFS3_COOKIEVERFSIZE + 4 + 4;
}

void nfs3_enc_fsstat_res(struct xdr_enc *e, const struct nfs3_fsstat_res *r)
{
  xdr_enc_u32(e, r->status);
  nfs3_enc_post_attr(e, &r->attr);
  if (r->status != NFS3_SUCCESS)
    return;
  xdr_enc_u64(e, r->tbytes);
  xdr_enc_u64(e, r->fbytes);
  xdr_enc_u64(e, r->abytes);
  xdr_enc_u64(e, r->tfiles);
  xdr_enc_u64(e, r->ffiles);
  xdr_enc_u64(e, r->afiles);
  xdr_enc_u32(e, r->invarsec);
}

void nfs3_enc_fsinfo_res(struct xdr_enc *e, const struct nfs3_fsinfo_res *r)
{
  xdr_enc_u32(e, r->status);
  nfs3_enc_post_attr(e, &r->attr);
  if (r->status != NFS3_SUCCESS)
    return;
  xdr_enc_u32(e, r->rtmax);
  xdr_enc_u32(e, r->rtpref);
  xdr_enc_u32(e, r->rtmult);
  xdr_enc_u32(e, r->wtmax);
  xdr_enc_u32(e, r->wtpref);
  xdr_enc_u32(e, r->wtmult);
  xdr_enc_u32(e, r->dtpref);
  xdr_enc_u64(e, r->maxfilesize);
  enc_time(e, &r->time_delta);
  xdr_enc_u32(e, r->properties);
}

void nfs3_enc_pathconf_res(struct xdr_enc *e, const struct nfs3_pathconf_res *r)
{
  xdr_enc_u32(e, r->status);
  nfs3_enc_post_attr(e, &r->attr);
  if (r->status != NFS3_SUCCESS)
    return;
  xdr_enc_u32(e, r->linkmax);
  xdr_enc_u32(e, r->name_max);
  xdr_enc_bool(e, r->no_trunc);
  xdr_enc_bool(e, r->chown_restricted);
  xdr_enc_bool(e, r->case_insensitive);
  xdr_enc_bool(e, r->case_preserving);
}

void nfs3_enc_commit_res(struct xdr_enc *e, const struct nfs3_commit_res *r)
{
  xdr_enc_u32(e, r->status);
  nfs3_enc_wcc(e, &r->wcc);
  if (r->status == NFS3_SUCCESS)
    xdr_enc_fixed(e, r->verf, NFS3_WRITEVERFSIZE);
}
