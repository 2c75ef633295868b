/*
 * Fuzz target for the NFSv3 argument decoders (xdr/nfs3.h) and the MOUNT
 * and PMAP ones: the first input byte picks the procedure (0..21 NFSv3,
 * 22 MOUNT dirpath, 23 PMAP mapping), the rest is the argument body. A
 * decoder must stay inside the input, hand out zero-copy pointers only
 * into it, and honour every bound. Checks abort.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xdr/mount3.h"
#include "xdr/nfs3.h"
#include "xdr/pmap2.h"

static const uint8_t *lo, *hi;

static void must(int cond, const char *what)
{
  if (!cond) {
    fprintf(stderr, "fuzz_nfs_args: %s\n", what);
    abort();
  }
}

static void check_bytes(const struct xdr_bytes *b, uint32_t max)
{
  must(b->len <= max, "string over its bound");
  if (b->len)
    must(b->data >= lo && b->data + b->len <= hi, "pointer outside the input");
}

static void check_fh(const struct nfs3_fh *fh)
{
  must(fh->len <= NFS3_FHSIZE, "handle over 64 bytes");
}

static void check_dirop(const struct nfs3_dirop *o)
{
  check_fh(&o->dir);
  check_bytes(&o->name, NFS3_STRING_DECODE_MAX);
}

static void check_sattr(const struct nfs3_sattr *s)
{
  must(s->atime_how <= NFS3_SET_TO_CLIENT_TIME && s->mtime_how <= NFS3_SET_TO_CLIENT_TIME,
       "time_how out of range");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  uint32_t proc = data[0] % 24;
  lo = data + 1;
  hi = data + size;
  struct xdr_dec d;
  xdr_dec_init(&d, data + 1, size - 1);

  if (proc == 22) {
    struct xdr_bytes path;
    if (mount3_dec_dirpath(&d, &path) == 0)
      check_bytes(&path, MOUNT3_PATH_MAX);
    return 0;
  }
  if (proc == 23) {
    struct pmap2_mapping m;
    int rc = pmap2_dec_mapping(&d, &m);
    must(rc == 0 || size - 1 < 16, "mapping refused");
    return 0;
  }

  union nfs3_args a;
  memset(&a, 0xa5, sizeof a);
  int rc = nfs3_dec_args(proc, &d, &a);
  must(d.pos <= d.len, "decoder overran");
  if (rc < 0)
    return 0;
  switch (proc) {
  case NFS3_PROC_GETATTR:
  case NFS3_PROC_READLINK:
  case NFS3_PROC_FSSTAT:
  case NFS3_PROC_FSINFO:
  case NFS3_PROC_PATHCONF:
    check_fh(&a.fh.fh);
    break;
  case NFS3_PROC_SETATTR:
    check_fh(&a.setattr.fh);
    check_sattr(&a.setattr.attr);
    break;
  case NFS3_PROC_LOOKUP:
  case NFS3_PROC_REMOVE:
  case NFS3_PROC_RMDIR:
    check_dirop(&a.dirop.what);
    break;
  case NFS3_PROC_ACCESS:
    check_fh(&a.access.fh);
    break;
  case NFS3_PROC_READ:
    check_fh(&a.read.fh);
    break;
  case NFS3_PROC_WRITE:
    check_fh(&a.write.fh);
    check_bytes(&a.write.data, NFS3_IO_MAX);
    must(a.write.count == a.write.data.len, "WRITE count disagrees with its data");
    must(a.write.stable <= NFS3_FILE_SYNC, "stable_how out of range");
    break;
  case NFS3_PROC_CREATE:
    check_dirop(&a.create.where);
    must(a.create.mode <= NFS3_EXCLUSIVE, "createmode out of range");
    check_sattr(&a.create.attr);
    break;
  case NFS3_PROC_MKDIR:
    check_dirop(&a.mkdir.where);
    check_sattr(&a.mkdir.attr);
    break;
  case NFS3_PROC_SYMLINK:
    check_dirop(&a.symlink.where);
    check_sattr(&a.symlink.attr);
    check_bytes(&a.symlink.target, NFS3_STRING_DECODE_MAX);
    break;
  case NFS3_PROC_MKNOD:
    check_dirop(&a.mknod.where);
    must(a.mknod.type >= NFS3_REG && a.mknod.type <= NFS3_FIFO, "ftype out of range");
    check_sattr(&a.mknod.attr);
    break;
  case NFS3_PROC_RENAME:
    check_dirop(&a.rename.from);
    check_dirop(&a.rename.to);
    break;
  case NFS3_PROC_LINK:
    check_fh(&a.link.fh);
    check_dirop(&a.link.link);
    break;
  case NFS3_PROC_READDIR:
    check_fh(&a.readdir.dir);
    break;
  case NFS3_PROC_READDIRPLUS:
    check_fh(&a.readdirplus.dir);
    break;
  case NFS3_PROC_COMMIT:
    check_fh(&a.commit.fh);
    break;
  }
  return 0;
}
