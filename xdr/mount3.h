/*
 * MOUNT version 3 (RFC 1813 §5). Names carry MOUNT3_/mount3_ (libnfs
 * defines the RFC's bare ones). Version 1's DUMP, UMNT, UMNTALL and EXPORT
 * have the same XDR as version 3's, so these codecs serve both.
 */
#ifndef BASEFS_XDR_MOUNT3_H
#define BASEFS_XDR_MOUNT3_H

#include "xdr/xdr.h"

#define MOUNT3_PROGRAM 100005
#define MOUNT3_VERSION 3
#define MOUNT3_PATH_MAX 1024 /* MNTPATHLEN */
#define MOUNT3_NAME_MAX 255  /* MNTNAMLEN */
#define MOUNT3_FHSIZE 64     /* FHSIZE3 */

enum mount3_proc {
  MOUNT3_PROC_NULL = 0,
  MOUNT3_PROC_MNT = 1,
  MOUNT3_PROC_DUMP = 2,
  MOUNT3_PROC_UMNT = 3,
  MOUNT3_PROC_UMNTALL = 4,
  MOUNT3_PROC_EXPORT = 5,
  MOUNT3_NPROC = 6,
};

/* mountstat3 (RFC: MNT3_OK, MNT3ERR_*) */
enum mount3_stat {
  MOUNT3_SUCCESS = 0,
  MOUNT3_ERR_PERM = 1,
  MOUNT3_ERR_NOENT = 2,
  MOUNT3_ERR_IO = 5,
  MOUNT3_ERR_ACCES = 13,
  MOUNT3_ERR_NOTDIR = 20,
  MOUNT3_ERR_INVAL = 22,
  MOUNT3_ERR_NAMETOOLONG = 63,
  MOUNT3_ERR_NOTSUPP = 10004,
  MOUNT3_ERR_SERVERFAULT = 10006,
};

/* MNT and UMNT take a dirpath (string<1024>), zero-copy. */
int mount3_dec_dirpath(struct xdr_dec *d, struct xdr_bytes *path);

#define MOUNT3_AUTH_FLAVORS_MAX 8

/* mountres3 */
struct mount3_mnt_res {
  uint32_t status;
  uint32_t fh_len; /* OK arm */
  uint8_t fh[MOUNT3_FHSIZE];
  uint32_t nflavors;
  uint32_t flavors[MOUNT3_AUTH_FLAVORS_MAX];
};
void mount3_enc_mnt_res(struct xdr_enc *e, const struct mount3_mnt_res *r);

/* The list replies are streamed like READDIR: begin nothing, one call per
 * element, one call to end the list. */
/* mountlist: DUMP */
void mount3_enc_mountbody(struct xdr_enc *e, const char *host, const char *dir);
/* exports: EXPORT. groups is a NULL-terminated array (may be empty). */
void mount3_enc_exportnode(struct xdr_enc *e, const char *dir, const char *const *groups);
/* Ends a mountlist or exports list. */
void mount3_enc_list_end(struct xdr_enc *e);

#endif
