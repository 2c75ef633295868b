/*
 * NFS version 3 (RFC 1813 §2, §3): every argument decoder and every result
 * encoder of the 22 procedures, as plain structs.
 *
 * Conventions:
 *  - Names follow the RFC with an NFS3_/nfs3_ prefix everywhere (NFS3ERR_NOENT
 *    is NFS3_ERR_NOENT, NFS3_OK is NFS3_SUCCESS, NF3REG is NFS3_REG, procedure 1
 *    is NFS3_PROC_GETATTR): libnfs's headers define the RFC's bare names and
 *    the tests include both.
 *  - Decoders (nfs3_dec_*_args) read untrusted bytes into a caller's struct
 *    and return 0 or -BFS_EFORMAT, which the procedure answers with
 *    GARBAGE_ARGS. File handles are copied (64 bytes); names, symlink
 *    targets and WRITE data are zero-copy xdr_bytes pointing into the
 *    record, valid only while the handler runs. Trailing bytes after the
 *    arguments are ignored, as Linux's nfsd does.
 *  - Bounds: a handle longer than 64 bytes, an enum or bool out of range,
 *    WRITE data over NFS3_IO_MAX or not matching its count, and a string over
 *    NFS3_STRING_DECODE_MAX are malformed. filename3 and nfspath3 are
 *    unbounded in the RFC, so a 256-byte name is NOT malformed: it decodes,
 *    and the procedure answers NFS3_ERR_NAMETOOLONG (NFS3_NAME_MAX and
 *    NFS3_PATH_MAX are our limits); a name holding '/' or NUL decodes too
 *    and the procedure rejects it.
 *  - Encoders (nfs3_enc_*_res) write exactly the resok or resfail arm the
 *    status selects, into an xdr_enc positioned after the accepted-reply
 *    header. Errors are sticky in the encoder.
 */
#ifndef BASEFS_XDR_NFS3_H
#define BASEFS_XDR_NFS3_H

#include "xdr/xdr.h"

#define NFS3_PROGRAM 100003
#define NFS3_VERSION 3

#define NFS3_FHSIZE 64
#define NFS3_COOKIEVERFSIZE 8
#define NFS3_CREATEVERFSIZE 8
#define NFS3_WRITEVERFSIZE 8

/* Our limits (FSINFO/PATHCONF advertise them). */
#define NFS3_NAME_MAX 255
#define NFS3_PATH_MAX 1024
#define NFS3_IO_MAX (1u << 20) /* rtmax = wtmax */
/* Longer filename3/nfspath3 strings are garbage, not a name to refuse. */
#define NFS3_STRING_DECODE_MAX 4096

enum nfs3_proc {
  NFS3_PROC_NULL = 0,
  NFS3_PROC_GETATTR = 1,
  NFS3_PROC_SETATTR = 2,
  NFS3_PROC_LOOKUP = 3,
  NFS3_PROC_ACCESS = 4,
  NFS3_PROC_READLINK = 5,
  NFS3_PROC_READ = 6,
  NFS3_PROC_WRITE = 7,
  NFS3_PROC_CREATE = 8,
  NFS3_PROC_MKDIR = 9,
  NFS3_PROC_SYMLINK = 10,
  NFS3_PROC_MKNOD = 11,
  NFS3_PROC_REMOVE = 12,
  NFS3_PROC_RMDIR = 13,
  NFS3_PROC_RENAME = 14,
  NFS3_PROC_LINK = 15,
  NFS3_PROC_READDIR = 16,
  NFS3_PROC_READDIRPLUS = 17,
  NFS3_PROC_FSSTAT = 18,
  NFS3_PROC_FSINFO = 19,
  NFS3_PROC_PATHCONF = 20,
  NFS3_PROC_COMMIT = 21,
  NFS3_NPROC = 22,
};

/* nfsstat3 */
enum nfs3_stat {
  NFS3_SUCCESS = 0,
  NFS3_ERR_PERM = 1,
  NFS3_ERR_NOENT = 2,
  NFS3_ERR_IO = 5,
  NFS3_ERR_NXIO = 6,
  NFS3_ERR_ACCES = 13,
  NFS3_ERR_EXIST = 17,
  NFS3_ERR_XDEV = 18,
  NFS3_ERR_NODEV = 19,
  NFS3_ERR_NOTDIR = 20,
  NFS3_ERR_ISDIR = 21,
  NFS3_ERR_INVAL = 22,
  NFS3_ERR_FBIG = 27,
  NFS3_ERR_NOSPC = 28,
  NFS3_ERR_ROFS = 30,
  NFS3_ERR_MLINK = 31,
  NFS3_ERR_NAMETOOLONG = 63,
  NFS3_ERR_NOTEMPTY = 66,
  NFS3_ERR_DQUOT = 69,
  NFS3_ERR_STALE = 70,
  NFS3_ERR_REMOTE = 71,
  NFS3_ERR_BADHANDLE = 10001,
  NFS3_ERR_NOT_SYNC = 10002,
  NFS3_ERR_BAD_COOKIE = 10003,
  NFS3_ERR_NOTSUPP = 10004,
  NFS3_ERR_TOOSMALL = 10005,
  NFS3_ERR_SERVERFAULT = 10006,
  NFS3_ERR_BADTYPE = 10007,
  NFS3_ERR_JUKEBOX = 10008,
};

/* ftype3 */
enum nfs3_ftype {
  NFS3_REG = 1,
  NFS3_DIR = 2,
  NFS3_BLK = 3,
  NFS3_CHR = 4,
  NFS3_LNK = 5,
  NFS3_SOCK = 6,
  NFS3_FIFO = 7,
};

/* stable_how */
enum nfs3_stable { NFS3_UNSTABLE = 0, NFS3_DATA_SYNC = 1, NFS3_FILE_SYNC = 2 };
/* createmode3 */
enum nfs3_createmode { NFS3_UNCHECKED = 0, NFS3_GUARDED = 1, NFS3_EXCLUSIVE = 2 };
/* time_how */
enum nfs3_time_how { NFS3_DONT_CHANGE = 0, NFS3_SET_TO_SERVER_TIME = 1, NFS3_SET_TO_CLIENT_TIME = 2 };

/* ACCESS3_* bits */
#define NFS3_ACCESS_READ 0x0001
#define NFS3_ACCESS_LOOKUP 0x0002
#define NFS3_ACCESS_MODIFY 0x0004
#define NFS3_ACCESS_EXTEND 0x0008
#define NFS3_ACCESS_DELETE 0x0010
#define NFS3_ACCESS_EXECUTE 0x0020
/* FSF3_* bits of FSINFO's properties */
#define NFS3_FSF_LINK 0x0001
#define NFS3_FSF_SYMLINK 0x0002
#define NFS3_FSF_HOMOGENEOUS 0x0008
#define NFS3_FSF_CANSETTIME 0x0010

/* nfs_fh3 */
struct nfs3_fh {
  uint32_t len; /* 0..NFS3_FHSIZE */
  uint8_t data[NFS3_FHSIZE];
};

/* nfstime3 */
struct nfs3_time {
  uint32_t sec;
  uint32_t nsec;
};

/* fattr3; rdev is specdata3 */
struct nfs3_fattr {
  uint32_t type; /* enum nfs3_ftype */
  uint32_t mode;
  uint32_t nlink;
  uint32_t uid;
  uint32_t gid;
  uint64_t size;
  uint64_t used;
  uint32_t rdev_major;
  uint32_t rdev_minor;
  uint64_t fsid;
  uint64_t fileid;
  struct nfs3_time atime;
  struct nfs3_time mtime;
  struct nfs3_time ctime;
};

/* post_op_attr */
struct nfs3_post_attr {
  bool present;
  struct nfs3_fattr attr;
};

/* wcc_attr */
struct nfs3_wcc_attr {
  uint64_t size;
  struct nfs3_time mtime;
  struct nfs3_time ctime;
};

/* pre_op_attr */
struct nfs3_pre_attr {
  bool present;
  struct nfs3_wcc_attr attr;
};

/* wcc_data */
struct nfs3_wcc {
  struct nfs3_pre_attr before;
  struct nfs3_post_attr after;
};

/* post_op_fh3 */
struct nfs3_post_fh {
  bool present;
  struct nfs3_fh fh;
};

/* sattr3: each set_* flag says whether the value beside it is to be set. */
struct nfs3_sattr {
  bool set_mode;
  uint32_t mode;
  bool set_uid;
  uint32_t uid;
  bool set_gid;
  uint32_t gid;
  bool set_size;
  uint64_t size;
  uint32_t atime_how; /* enum nfs3_time_how; atime valid for CLIENT_TIME */
  struct nfs3_time atime;
  uint32_t mtime_how;
  struct nfs3_time mtime;
};

/* diropargs3 */
struct nfs3_dirop {
  struct nfs3_fh dir;
  struct xdr_bytes name; /* zero-copy; unchecked beyond NFS3_STRING_DECODE_MAX */
};

/* ---- arguments, one struct per distinct RFC shape ---- */

/* GETATTR, READLINK, FSSTAT, FSINFO, PATHCONF: a single nfs_fh3. */
struct nfs3_fh_args {
  struct nfs3_fh fh;
};

struct nfs3_setattr_args {
  struct nfs3_fh fh;
  struct nfs3_sattr attr;
  bool guard_check; /* sattrguard3 */
  struct nfs3_time guard_ctime;
};

/* LOOKUP, REMOVE, RMDIR: diropargs3 */
struct nfs3_dirop_args {
  struct nfs3_dirop what;
};

struct nfs3_access_args {
  struct nfs3_fh fh;
  uint32_t access;
};

struct nfs3_read_args {
  struct nfs3_fh fh;
  uint64_t offset;
  uint32_t count; /* any value: the procedure clamps to NFS3_IO_MAX */
};

struct nfs3_write_args {
  struct nfs3_fh fh;
  uint64_t offset;
  uint32_t count;  /* == data.len */
  uint32_t stable; /* enum nfs3_stable */
  struct xdr_bytes data; /* zero-copy, <= NFS3_IO_MAX */
};

struct nfs3_create_args {
  struct nfs3_dirop where;
  uint32_t mode;          /* enum nfs3_createmode */
  struct nfs3_sattr attr; /* UNCHECKED, GUARDED */
  uint8_t verf[NFS3_CREATEVERFSIZE]; /* EXCLUSIVE */
};

struct nfs3_mkdir_args {
  struct nfs3_dirop where;
  struct nfs3_sattr attr;
};

struct nfs3_symlink_args {
  struct nfs3_dirop where;
  struct nfs3_sattr attr;
  struct xdr_bytes target; /* nfspath3, zero-copy */
};

struct nfs3_mknod_args {
  struct nfs3_dirop where;
  uint32_t type;          /* enum nfs3_ftype */
  struct nfs3_sattr attr; /* CHR, BLK, SOCK, FIFO */
  uint32_t spec_major;    /* CHR, BLK */
  uint32_t spec_minor;
};

struct nfs3_rename_args {
  struct nfs3_dirop from;
  struct nfs3_dirop to;
};

struct nfs3_link_args {
  struct nfs3_fh fh;
  struct nfs3_dirop link;
};

struct nfs3_readdir_args {
  struct nfs3_fh dir;
  uint64_t cookie;
  uint8_t verf[NFS3_COOKIEVERFSIZE];
  uint32_t count;
};

struct nfs3_readdirplus_args {
  struct nfs3_fh dir;
  uint64_t cookie;
  uint8_t verf[NFS3_COOKIEVERFSIZE];
  uint32_t dircount;
  uint32_t maxcount;
};

struct nfs3_commit_args {
  struct nfs3_fh fh;
  uint64_t offset;
  uint32_t count;
};

int nfs3_dec_fh_args(struct xdr_dec *d, struct nfs3_fh_args *a);
int nfs3_dec_setattr_args(struct xdr_dec *d, struct nfs3_setattr_args *a);
int nfs3_dec_dirop_args(struct xdr_dec *d, struct nfs3_dirop_args *a);
int nfs3_dec_access_args(struct xdr_dec *d, struct nfs3_access_args *a);
int nfs3_dec_read_args(struct xdr_dec *d, struct nfs3_read_args *a);
int nfs3_dec_write_args(struct xdr_dec *d, struct nfs3_write_args *a);
int nfs3_dec_create_args(struct xdr_dec *d, struct nfs3_create_args *a);
int nfs3_dec_mkdir_args(struct xdr_dec *d, struct nfs3_mkdir_args *a);
int nfs3_dec_symlink_args(struct xdr_dec *d, struct nfs3_symlink_args *a);
int nfs3_dec_mknod_args(struct xdr_dec *d, struct nfs3_mknod_args *a);
int nfs3_dec_rename_args(struct xdr_dec *d, struct nfs3_rename_args *a);
int nfs3_dec_link_args(struct xdr_dec *d, struct nfs3_link_args *a);
int nfs3_dec_readdir_args(struct xdr_dec *d, struct nfs3_readdir_args *a);
int nfs3_dec_readdirplus_args(struct xdr_dec *d, struct nfs3_readdirplus_args *a);
int nfs3_dec_commit_args(struct xdr_dec *d, struct nfs3_commit_args *a);

/* Any procedure's arguments, by number (NULL takes none): what a fuzzer or a
 * table-driven dispatcher wants. -BFS_EFORMAT for a malformed body, -EINVAL
 * for a procedure number >= NFS3_NPROC. */
union nfs3_args {
  struct nfs3_fh_args fh;
  struct nfs3_setattr_args setattr;
  struct nfs3_dirop_args dirop;
  struct nfs3_access_args access;
  struct nfs3_read_args read;
  struct nfs3_write_args write;
  struct nfs3_create_args create;
  struct nfs3_mkdir_args mkdir;
  struct nfs3_symlink_args symlink;
  struct nfs3_mknod_args mknod;
  struct nfs3_rename_args rename;
  struct nfs3_link_args link;
  struct nfs3_readdir_args readdir;
  struct nfs3_readdirplus_args readdirplus;
  struct nfs3_commit_args commit;
};
int nfs3_dec_args(uint32_t proc, struct xdr_dec *d, union nfs3_args *a);

/* ---- results ---- */

void nfs3_enc_fattr(struct xdr_enc *e, const struct nfs3_fattr *a);
void nfs3_enc_post_attr(struct xdr_enc *e, const struct nfs3_post_attr *a);
void nfs3_enc_wcc(struct xdr_enc *e, const struct nfs3_wcc *w);
void nfs3_enc_fh(struct xdr_enc *e, const struct nfs3_fh *fh);
void nfs3_enc_post_fh(struct xdr_enc *e, const struct nfs3_post_fh *fh);

/* GETATTR */
struct nfs3_getattr_res {
  uint32_t status;
  struct nfs3_fattr attr; /* OK */
};
void nfs3_enc_getattr_res(struct xdr_enc *e, const struct nfs3_getattr_res *r);

/* SETATTR, REMOVE, RMDIR: wcc_data on both arms. */
struct nfs3_wcc_res {
  uint32_t status;
  struct nfs3_wcc wcc;
};
void nfs3_enc_wcc_res(struct xdr_enc *e, const struct nfs3_wcc_res *r);

/* LOOKUP */
struct nfs3_lookup_res {
  uint32_t status;
  struct nfs3_fh fh;              /* OK */
  struct nfs3_post_attr obj_attr; /* OK */
  struct nfs3_post_attr dir_attr; /* both arms */
};
void nfs3_enc_lookup_res(struct xdr_enc *e, const struct nfs3_lookup_res *r);

/* ACCESS */
struct nfs3_access_res {
  uint32_t status;
  struct nfs3_post_attr attr; /* both arms */
  uint32_t access;            /* OK */
};
void nfs3_enc_access_res(struct xdr_enc *e, const struct nfs3_access_res *r);

/* READLINK */
struct nfs3_readlink_res {
  uint32_t status;
  struct nfs3_post_attr attr; /* both arms */
  struct xdr_bytes target;    /* OK */
};
void nfs3_enc_readlink_res(struct xdr_enc *e, const struct nfs3_readlink_res *r);

/* READ. data may be NULL when count is 0. */
struct nfs3_read_res {
  uint32_t status;
  struct nfs3_post_attr attr; /* both arms */
  uint32_t count;             /* OK: bytes of data */
  bool eof;
  const uint8_t *data;
};
void nfs3_enc_read_res(struct xdr_enc *e, const struct nfs3_read_res *r);
/* READ's OK arm without a copy: writes everything up to the data and
 * returns where the count bytes of data go (padding already zeroed), or NULL
 * after an encoder error. */
uint8_t *nfs3_enc_read_ok(struct xdr_enc *e, const struct nfs3_post_attr *attr, uint32_t count,
                          bool eof);

/* WRITE */
struct nfs3_write_res {
  uint32_t status;
  struct nfs3_wcc wcc; /* both arms */
  uint32_t count;      /* OK */
  uint32_t committed;  /* OK: enum nfs3_stable */
  uint8_t verf[NFS3_WRITEVERFSIZE];
};
void nfs3_enc_write_res(struct xdr_enc *e, const struct nfs3_write_res *r);

/* CREATE, MKDIR, SYMLINK, MKNOD */
struct nfs3_create_res {
  uint32_t status;
  struct nfs3_post_fh fh;         /* OK */
  struct nfs3_post_attr obj_attr; /* OK */
  struct nfs3_wcc dir_wcc;        /* both arms */
};
void nfs3_enc_create_res(struct xdr_enc *e, const struct nfs3_create_res *r);

/* RENAME */
struct nfs3_rename_res {
  uint32_t status;
  struct nfs3_wcc from_wcc; /* both arms */
  struct nfs3_wcc to_wcc;
};
void nfs3_enc_rename_res(struct xdr_enc *e, const struct nfs3_rename_res *r);

/* LINK */
struct nfs3_link_res {
  uint32_t status;
  struct nfs3_post_attr file_attr; /* both arms */
  struct nfs3_wcc dir_wcc;
};
void nfs3_enc_link_res(struct xdr_enc *e, const struct nfs3_link_res *r);

/*
 * READDIR and READDIRPLUS are streamed, so a procedure walks the view once
 * and stops when the client's byte budget is spent, without building a list:
 *
 *   nfs3_enc_readdir_begin(e, &dir_attr, verf);
 *   while (... && used + nfs3_readdir_entry_size(len) <= budget)
 *     nfs3_enc_readdir_entry(e, fileid, name, len, cookie);
 *   nfs3_enc_readdir_end(e, eof);
 *
 * (nfs3_enc_readdirplus_entry for READDIRPLUS). A failure is an ordinary
 * nfs3_enc_readdir_fail(). The *_size functions give an entry's exact XDR
 * size; READDIRPLUS's dircount counts only nfs3_readdir_entry_size().
 */
void nfs3_enc_readdir_begin(struct xdr_enc *e, const struct nfs3_post_attr *dir_attr,
                            const uint8_t verf[NFS3_COOKIEVERFSIZE]);
void nfs3_enc_readdir_entry(struct xdr_enc *e, uint64_t fileid, const void *name, uint32_t len,
                            uint64_t cookie);
void nfs3_enc_readdirplus_entry(struct xdr_enc *e, uint64_t fileid, const void *name, uint32_t len,
                                uint64_t cookie, const struct nfs3_post_attr *attr,
                                const struct nfs3_post_fh *fh);
void nfs3_enc_readdir_end(struct xdr_enc *e, bool eof);
void nfs3_enc_readdir_fail(struct xdr_enc *e, uint32_t status, const struct nfs3_post_attr *dir_attr);
size_t nfs3_readdir_entry_size(uint32_t namelen);
size_t nfs3_readdirplus_entry_size(uint32_t namelen, const struct nfs3_post_attr *attr,
                                   const struct nfs3_post_fh *fh);
/* Bytes of a READDIR/READDIRPLUS OK reply besides its entries (status,
 * dir attributes, verifier, list end, eof). */
size_t nfs3_readdir_overhead(const struct nfs3_post_attr *dir_attr);

/* FSSTAT */
struct nfs3_fsstat_res {
  uint32_t status;
  struct nfs3_post_attr attr; /* both arms */
  uint64_t tbytes, fbytes, abytes;
  uint64_t tfiles, ffiles, afiles;
  uint32_t invarsec;
};
void nfs3_enc_fsstat_res(struct xdr_enc *e, const struct nfs3_fsstat_res *r);

/* FSINFO */
struct nfs3_fsinfo_res {
  uint32_t status;
  struct nfs3_post_attr attr; /* both arms */
  uint32_t rtmax, rtpref, rtmult;
  uint32_t wtmax, wtpref, wtmult;
  uint32_t dtpref;
  uint64_t maxfilesize;
  struct nfs3_time time_delta;
  uint32_t properties; /* NFS3_FSF_* */
};
void nfs3_enc_fsinfo_res(struct xdr_enc *e, const struct nfs3_fsinfo_res *r);

/* PATHCONF */
struct nfs3_pathconf_res {
  uint32_t status;
  struct nfs3_post_attr attr; /* both arms */
  uint32_t linkmax;
  uint32_t name_max;
  bool no_trunc;
  bool chown_restricted;
  bool case_insensitive;
  bool case_preserving;
};
void nfs3_enc_pathconf_res(struct xdr_enc *e, const struct nfs3_pathconf_res *r);

/* COMMIT */
struct nfs3_commit_res {
  uint32_t status;
  struct nfs3_wcc wcc; /* both arms */
  uint8_t verf[NFS3_WRITEVERFSIZE];
};
void nfs3_enc_commit_res(struct xdr_enc *e, const struct nfs3_commit_res *r);

#endif
