/*
 * The XDR codecs against an independent implementation: libnfs's zdr (its
 * own rpcgen output) encodes NFSv3/MOUNT arguments that our decoders must
 * read back field for field, and decodes the results our encoders write.
 * Plus the bounds: every strict prefix of a valid argument body is
 * malformed, and every length field is capped.
 */
#include <errno.h>
#include <nfsc/libnfs-zdr.h>
#include <nfsc/libnfs-raw-mount.h>
#include <nfsc/libnfs-raw-nfs.h>

#include "store/error.h"
#include "tests/test.h"
#include "xdr/mount3.h"
#include "xdr/nfs3.h"
#include "xdr/oncrpc.h"
#include "xdr/xdr.h"

static char wire[1 << 16];

/* Encodes obj with libnfs's zdr function fn into wire; returns the size. */
#define ZENC(fn, obj)                                               \
  ({                                                                \
    ZDR z_;                                                         \
    libnfs_zdrmem_create(&z_, wire, sizeof wire, ZDR_ENCODE);       \
    CHECK_MSG(fn(&z_, (obj)), "%s failed", #fn);                    \
    size_t n_ = libnfs_zdr_getpos(&z_);                             \
    libnfs_zdr_destroy(&z_);                                        \
    n_;                                                             \
  })

/* Our decoder must accept all n bytes and refuse every strict prefix. */
#define DEC_ALL(decoder, out, n)                                      \
  do {                                                                \
    struct xdr_dec d_;                                                \
    for (size_t cut_ = 0; cut_ < (n); cut_++) {                       \
      xdr_dec_init(&d_, wire, cut_);                                  \
      CHECK_MSG(decoder(&d_, (out)) == -BFS_EFORMAT,                  \
                "%s accepted a %zu-byte prefix of %zu", #decoder, cut_, (size_t)(n)); \
    }                                                                 \
    xdr_dec_init(&d_, wire, (n));                                     \
    CHECK_OK(decoder(&d_, (out)));                                    \
    CHECK_INT(d_.pos, ==, (n));                                       \
  } while (0)

static char fh_bytes[64];

static nfs_fh3 zfh(unsigned len, char fill)
{
  memset(fh_bytes, fill, sizeof fh_bytes);
  return (nfs_fh3){.data = {.data_len = len, .data_val = fh_bytes}};
}

static void check_fh(const struct nfs3_fh *fh, unsigned len, char fill)
{
  CHECK_INT(fh->len, ==, len);
  for (unsigned i = 0; i < len; i++)
    CHECK_INT(fh->data[i], ==, (uint8_t)fill);
}

static void check_str(const struct xdr_bytes *b, const char *s)
{
  CHECK_INT(b->len, ==, strlen(s));
  CHECK_MEM(b->data, s, b->len);
}

TEST(primitives_bounds)
{
  static const uint8_t buf[] = {0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o', 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
  struct xdr_dec d;
  struct xdr_bytes b;
  xdr_dec_init(&d, buf, sizeof buf);
  CHECK_INT(xdr_dec_bytes(&d, 4, &b), ==, -BFS_EFORMAT); /* over its bound */
  CHECK_INT(d.pos, ==, 0);
  CHECK_OK(xdr_dec_bytes(&d, 5, &b));
  CHECK_INT(b.len, ==, 5);
  CHECK_INT(d.pos, ==, 12);
  /* A 4 GiB length must not wrap around the bounds check. */
  CHECK_INT(xdr_dec_bytes(&d, UINT32_MAX, &b), ==, -BFS_EFORMAT);
  bool v;
  uint32_t u;
  CHECK_INT(xdr_dec_bool(&d, &v), ==, -BFS_EFORMAT);
  xdr_dec_init(&d, buf, 3);
  CHECK_INT(xdr_dec_u32(&d, &u), ==, -BFS_EFORMAT);
  xdr_dec_init(&d, buf, 4);
  CHECK_INT(xdr_dec_enum(&d, 4, &u), ==, -BFS_EFORMAT);
  xdr_dec_init(&d, buf, 4);
  CHECK_OK(xdr_dec_enum(&d, 5, &u));
  CHECK_INT(u, ==, 5);
  /* Missing padding is truncation. */
  xdr_dec_init(&d, buf, 11);
  CHECK_INT(xdr_dec_bytes(&d, 100, &b), ==, -BFS_EFORMAT);
}

TEST(encoder_cap_is_sticky)
{
  struct xdr_enc e;
  xdr_enc_init(&e, 10);
  xdr_enc_u32(&e, 1);
  xdr_enc_bytes(&e, "abc", 3); /* 4 + 4 = 8 more: over 10 */
  CHECK_INT(xdr_enc_error(&e), ==, -BFS_ETOOBIG);
  xdr_enc_u32(&e, 2);
  CHECK_INT(e.len, ==, 4);
  xdr_enc_free(&e);

  xdr_enc_init(&e, 1 << 20);
  xdr_enc_bytes(&e, "abcde", 5);
  CHECK_INT(e.len, ==, 12);
  static const uint8_t want[] = {0, 0, 0, 5, 'a', 'b', 'c', 'd', 'e', 0, 0, 0};
  CHECK_MEM(e.buf, want, sizeof want);
  xdr_enc_patch_u32(&e, 0, 0x01020304);
  CHECK_INT(e.buf[0], ==, 1);
  CHECK_INT(e.buf[3], ==, 4);
  size_t len;
  uint8_t *p = xdr_enc_take(&e, &len);
  CHECK_INT(len, ==, 12);
  free(p);
  CHECK_OK(xdr_enc_error(&e));
}

TEST(call_header_roundtrip_and_limits)
{
  struct oncrpc_auth_sys cred = {.stamp = 7, .uid = 1000, .gid = 100, .ngids = 3, .gids = {1, 2, 3}};
  strcpy(cred.machine, "client.example");
  cred.machine_len = strlen(cred.machine);
  struct xdr_enc e;
  xdr_enc_init(&e, 4096);
  oncrpc_enc_call(&e, 0xabcd, NFS3_PROGRAM, 3, NFS3_PROC_GETATTR, &cred);
  xdr_enc_u32(&e, 0x11223344); /* the "arguments" */
  CHECK_OK(xdr_enc_error(&e));
  struct xdr_dec d;
  struct oncrpc_call c;
  xdr_dec_init(&d, e.buf, e.len);
  CHECK_INT(oncrpc_dec_call(&d, &c), ==, ONCRPC_CALL_OK);
  CHECK_INT(c.xid, ==, 0xabcd);
  CHECK_INT(c.prog, ==, NFS3_PROGRAM);
  CHECK_INT(c.vers, ==, 3);
  CHECK_INT(c.proc, ==, 1);
  CHECK_INT(c.cred_flavor, ==, ONCRPC_AUTH_SYS);
  CHECK_INT(c.sys.uid, ==, 1000);
  CHECK_INT(c.sys.gid, ==, 100);
  CHECK_INT(c.sys.ngids, ==, 3);
  CHECK_INT(c.sys.gids[2], ==, 3);
  CHECK(strcmp(c.sys.machine, "client.example") == 0);
  uint32_t arg;
  CHECK_OK(xdr_dec_u32(&d, &arg));
  CHECK_INT(arg, ==, 0x11223344);

  /* Truncated anywhere before the credential: not a call we can answer. */
  for (size_t cut = 0; cut < 28; cut++) {
    xdr_dec_init(&d, e.buf, cut);
    enum oncrpc_call_verdict v = oncrpc_dec_call(&d, &c);
    CHECK_MSG(v == ONCRPC_CALL_NOT_A_CALL, "cut %zu gave %d", cut, v);
  }
  /* Truncated inside the credential or the verifier: an auth error. */
  for (size_t cut = 28; cut < e.len - 4; cut++) {
    xdr_dec_init(&d, e.buf, cut);
    enum oncrpc_call_verdict v = oncrpc_dec_call(&d, &c);
    CHECK_MSG(v == ONCRPC_CALL_BAD_CRED || v == ONCRPC_CALL_BAD_VERF, "cut %zu gave %d", cut, v);
  }
  xdr_enc_free(&e);

  /* 17 gids, a 256-byte machine name, a 401-byte body: bad credentials. */
  for (int which = 0; which < 3; which++) {
    xdr_enc_init(&e, 4096);
    xdr_enc_u32(&e, 1);
    xdr_enc_u32(&e, ONCRPC_CALL);
    xdr_enc_u32(&e, 2);
    xdr_enc_u32(&e, MOUNT3_PROGRAM);
    xdr_enc_u32(&e, 3);
    xdr_enc_u32(&e, 0);
    xdr_enc_u32(&e, ONCRPC_AUTH_SYS);
    size_t at = e.len;
    xdr_enc_u32(&e, 0);
    size_t start = e.len;
    char name[300];
    memset(name, 'm', sizeof name);
    if (which == 2) {
      uint8_t *p = xdr_enc_reserve(&e, 404);
      memset(p, 0, 404);
    } else {
      xdr_enc_u32(&e, 0);
      xdr_enc_bytes(&e, name, which == 1 ? 256 : 10);
      xdr_enc_u32(&e, 0);
      xdr_enc_u32(&e, 0);
      xdr_enc_u32(&e, which == 0 ? 17 : 0);
      for (int i = 0; i < (which == 0 ? 17 : 0); i++)
        xdr_enc_u32(&e, i);
    }
    xdr_enc_patch_u32(&e, at, which == 2 ? 401 : (uint32_t)(e.len - start));
    xdr_enc_u32(&e, 0);
    xdr_enc_u32(&e, 0);
    xdr_dec_init(&d, e.buf, e.len);
    CHECK_INT(oncrpc_dec_call(&d, &c), ==, ONCRPC_CALL_BAD_CRED);
    xdr_enc_free(&e);
  }

  /* rpcvers 3: refused before anything else is looked at. */
  static const uint8_t v3[] = {0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 3};
  xdr_dec_init(&d, v3, sizeof v3);
  CHECK_INT(oncrpc_dec_call(&d, &c), ==, ONCRPC_CALL_BAD_RPCVERS);
  CHECK_INT(c.xid, ==, 9);
  /* A REPLY is not a call. */
  static const uint8_t rep[] = {0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 2};
  xdr_dec_init(&d, rep, sizeof rep);
  CHECK_INT(oncrpc_dec_call(&d, &c), ==, ONCRPC_CALL_NOT_A_CALL);
}

TEST(reply_headers)
{
  struct xdr_enc e;
  struct xdr_dec d;
  struct oncrpc_reply r;
  xdr_enc_init(&e, 4096);
  oncrpc_enc_prog_mismatch(&e, 5, 3, 3);
  xdr_dec_init(&d, e.buf, e.len);
  CHECK_OK(oncrpc_dec_reply(&d, &r));
  CHECK_INT(r.xid, ==, 5);
  CHECK_INT(r.reply_stat, ==, ONCRPC_MSG_ACCEPTED);
  CHECK_INT(r.accept_stat, ==, ONCRPC_PROG_MISMATCH);
  CHECK_INT(r.low, ==, 3);
  CHECK_INT(r.high, ==, 3);
  CHECK_OK(xdr_dec_done(&d));
  xdr_enc_truncate(&e, 0);
  oncrpc_enc_rpc_mismatch(&e, 6);
  xdr_dec_init(&d, e.buf, e.len);
  CHECK_OK(oncrpc_dec_reply(&d, &r));
  CHECK_INT(r.reply_stat, ==, ONCRPC_MSG_DENIED);
  CHECK_INT(r.reject_stat, ==, ONCRPC_RPC_MISMATCH);
  CHECK_INT(r.low, ==, 2);
  CHECK_INT(r.high, ==, 2);
  CHECK_INT(e.len, ==, 24);
  xdr_enc_truncate(&e, 0);
  oncrpc_enc_auth_error(&e, 7, ONCRPC_AUTH_TOOWEAK);
  xdr_dec_init(&d, e.buf, e.len);
  CHECK_OK(oncrpc_dec_reply(&d, &r));
  CHECK_INT(r.reject_stat, ==, ONCRPC_AUTH_ERROR);
  CHECK_INT(r.auth_stat, ==, ONCRPC_AUTH_TOOWEAK);
  CHECK_INT(e.len, ==, 20);
  xdr_enc_free(&e);
}

static sattr3 zsattr(void)
{
  sattr3 s;
  memset(&s, 0, sizeof s);
  s.mode.set_it = 1;
  s.mode.set_mode3_u.mode = 0640;
  s.gid.set_it = 1;
  s.gid.set_gid3_u.gid = 44;
  s.size.set_it = 1;
  s.size.set_size3_u.size = 1ull << 40;
  s.atime.set_it = SET_TO_SERVER_TIME;
  s.mtime.set_it = SET_TO_CLIENT_TIME;
  s.mtime.set_mtime_u.mtime = (nfstime3){.seconds = 12, .nseconds = 34};
  return s;
}

static void check_sattr(const struct nfs3_sattr *s)
{
  CHECK(s->set_mode && s->mode == 0640);
  CHECK(!s->set_uid);
  CHECK(s->set_gid && s->gid == 44);
  CHECK(s->set_size && s->size == 1ull << 40);
  CHECK_INT(s->atime_how, ==, NFS3_SET_TO_SERVER_TIME);
  CHECK_INT(s->mtime_how, ==, NFS3_SET_TO_CLIENT_TIME);
  CHECK_INT(s->mtime.sec, ==, 12);
  CHECK_INT(s->mtime.nsec, ==, 34);
}

TEST(nfs3_args_against_libnfs)
{
  size_t n;
  union nfs3_args a;

  GETATTR3args ga = {.object = zfh(64, 'g')};
  n = ZENC(zdr_GETATTR3args, &ga);
  DEC_ALL(nfs3_dec_fh_args, &a.fh, n);
  check_fh(&a.fh.fh, 64, 'g');

  SETATTR3args sa = {.object = zfh(12, 's'), .new_attributes = zsattr()};
  sa.guard.check = 1;
  sa.guard.sattrguard3_u.obj_ctime = (nfstime3){.seconds = 99, .nseconds = 1};
  n = ZENC(zdr_SETATTR3args, &sa);
  DEC_ALL(nfs3_dec_setattr_args, &a.setattr, n);
  check_fh(&a.setattr.fh, 12, 's');
  check_sattr(&a.setattr.attr);
  CHECK(a.setattr.guard_check && a.setattr.guard_ctime.sec == 99 && a.setattr.guard_ctime.nsec == 1);

  LOOKUP3args la = {.what = {.dir = zfh(8, 'l'), .name = "hello.txt"}};
  n = ZENC(zdr_LOOKUP3args, &la);
  DEC_ALL(nfs3_dec_dirop_args, &a.dirop, n);
  check_fh(&a.dirop.what.dir, 8, 'l');
  check_str(&a.dirop.what.name, "hello.txt");

  ACCESS3args aa = {.object = zfh(1, 'a'), .access = 0x3f};
  n = ZENC(zdr_ACCESS3args, &aa);
  DEC_ALL(nfs3_dec_access_args, &a.access, n);
  CHECK_INT(a.access.access, ==, 0x3f);

  READ3args ra = {.file = zfh(32, 'r'), .offset = 0x123456789ull, .count = 1 << 20};
  n = ZENC(zdr_READ3args, &ra);
  DEC_ALL(nfs3_dec_read_args, &a.read, n);
  CHECK(a.read.offset == 0x123456789ull && a.read.count == 1 << 20);

  static char data[1000];
  for (size_t i = 0; i < sizeof data; i++)
    data[i] = (char)i;
  WRITE3args wa = {.file = zfh(16, 'w'), .offset = 77, .count = 999, .stable = FILE_SYNC,
                   .data = {.data_len = 999, .data_val = data}};
  n = ZENC(zdr_WRITE3args, &wa);
  DEC_ALL(nfs3_dec_write_args, &a.write, n);
  CHECK(a.write.offset == 77 && a.write.count == 999 && a.write.stable == NFS3_FILE_SYNC);
  CHECK_INT(a.write.data.len, ==, 999);
  CHECK_MEM(a.write.data.data, data, 999);
  /* Zero-copy: the data points into the record. */
  CHECK((const char *)a.write.data.data > wire && (const char *)a.write.data.data < wire + n);
  wa.count = 998; /* disagrees with the data's length */
  n = ZENC(zdr_WRITE3args, &wa);
  struct xdr_dec d;
  xdr_dec_init(&d, wire, n);
  CHECK_INT(nfs3_dec_write_args(&d, &a.write), ==, -BFS_EFORMAT);

  CREATE3args ca = {.where = {.dir = zfh(4, 'c'), .name = "new"}};
  ca.how.mode = GUARDED;
  ca.how.createhow3_u.obj_attributes = zsattr();
  n = ZENC(zdr_CREATE3args, &ca);
  DEC_ALL(nfs3_dec_create_args, &a.create, n);
  CHECK_INT(a.create.mode, ==, NFS3_GUARDED);
  check_sattr(&a.create.attr);
  check_str(&a.create.where.name, "new");
  ca.how.mode = EXCLUSIVE;
  memcpy(ca.how.createhow3_u.verf, "VERIFIER", 8);
  n = ZENC(zdr_CREATE3args, &ca);
  DEC_ALL(nfs3_dec_create_args, &a.create, n);
  CHECK_INT(a.create.mode, ==, NFS3_EXCLUSIVE);
  CHECK_MEM(a.create.verf, "VERIFIER", 8);

  MKDIR3args ma = {.where = {.dir = zfh(4, 'm'), .name = "dir"}, .attributes = zsattr()};
  n = ZENC(zdr_MKDIR3args, &ma);
  DEC_ALL(nfs3_dec_mkdir_args, &a.mkdir, n);
  check_sattr(&a.mkdir.attr);

  SYMLINK3args sla = {.where = {.dir = zfh(4, 'y'), .name = "link"}};
  sla.symlink.symlink_attributes = zsattr();
  sla.symlink.symlink_data = "../target/path";
  n = ZENC(zdr_SYMLINK3args, &sla);
  DEC_ALL(nfs3_dec_symlink_args, &a.symlink, n);
  check_str(&a.symlink.target, "../target/path");
  check_str(&a.symlink.where.name, "link");

  MKNOD3args mna = {.where = {.dir = zfh(4, 'n'), .name = "dev"}};
  mna.what.type = NF3CHR;
  mna.what.mknoddata3_u.chr_device.dev_attributes = zsattr();
  mna.what.mknoddata3_u.chr_device.spec = (specdata3){.specdata1 = 1, .specdata2 = 3};
  n = ZENC(zdr_MKNOD3args, &mna);
  DEC_ALL(nfs3_dec_mknod_args, &a.mknod, n);
  CHECK(a.mknod.type == NFS3_CHR && a.mknod.spec_major == 1 && a.mknod.spec_minor == 3);
  check_sattr(&a.mknod.attr);
  mna.what.type = NF3FIFO;
  mna.what.mknoddata3_u.pipe_attributes = zsattr();
  n = ZENC(zdr_MKNOD3args, &mna);
  DEC_ALL(nfs3_dec_mknod_args, &a.mknod, n);
  CHECK_INT(a.mknod.type, ==, NFS3_FIFO);
  check_sattr(&a.mknod.attr);

  REMOVE3args rma = {.object = {.dir = zfh(4, 'x'), .name = "gone"}};
  n = ZENC(zdr_REMOVE3args, &rma);
  DEC_ALL(nfs3_dec_dirop_args, &a.dirop, n);
  check_str(&a.dirop.what.name, "gone");

  RENAME3args rna = {.from = {.dir = zfh(4, 'f'), .name = "a"}, .to = {.dir = zfh(4, 'f'), .name = "bb"}};
  n = ZENC(zdr_RENAME3args, &rna);
  DEC_ALL(nfs3_dec_rename_args, &a.rename, n);
  check_str(&a.rename.from.name, "a");
  check_str(&a.rename.to.name, "bb");

  LINK3args lka = {.file = zfh(5, 'k'), .link = {.dir = zfh(5, 'k'), .name = "hard"}};
  n = ZENC(zdr_LINK3args, &lka);
  DEC_ALL(nfs3_dec_link_args, &a.link, n);
  check_fh(&a.link.fh, 5, 'k');
  check_str(&a.link.link.name, "hard");

  READDIR3args rda = {.dir = zfh(4, 'd'), .cookie = 42, .count = 4096};
  memcpy(rda.cookieverf, "cookieVF", 8);
  n = ZENC(zdr_READDIR3args, &rda);
  DEC_ALL(nfs3_dec_readdir_args, &a.readdir, n);
  CHECK(a.readdir.cookie == 42 && a.readdir.count == 4096);
  CHECK_MEM(a.readdir.verf, "cookieVF", 8);

  READDIRPLUS3args rpa = {.dir = zfh(4, 'p'), .cookie = 43, .dircount = 512, .maxcount = 8192};
  n = ZENC(zdr_READDIRPLUS3args, &rpa);
  DEC_ALL(nfs3_dec_readdirplus_args, &a.readdirplus, n);
  CHECK(a.readdirplus.cookie == 43 && a.readdirplus.dircount == 512 && a.readdirplus.maxcount == 8192);

  COMMIT3args cma = {.file = zfh(4, 'o'), .offset = 5, .count = 6};
  n = ZENC(zdr_COMMIT3args, &cma);
  DEC_ALL(nfs3_dec_commit_args, &a.commit, n);
  CHECK(a.commit.offset == 5 && a.commit.count == 6);
}

TEST(nfs3_args_limits)
{
  struct xdr_enc e;
  struct xdr_dec d;
  union nfs3_args a;
  /* A 65-byte handle is malformed. */
  xdr_enc_init(&e, 1 << 21);
  uint8_t big[65] = {0};
  xdr_enc_bytes(&e, big, 65);
  xdr_dec_init(&d, e.buf, e.len);
  CHECK_INT(nfs3_dec_args(NFS3_PROC_GETATTR, &d, &a), ==, -BFS_EFORMAT);
  /* A 256-byte name is NOT malformed (the procedure says NAMETOOLONG);
   * one over NFS3_STRING_DECODE_MAX is. */
  char name[NFS3_STRING_DECODE_MAX + 1];
  memset(name, 'n', sizeof name);
  xdr_enc_truncate(&e, 0);
  xdr_enc_bytes(&e, big, 8);
  xdr_enc_bytes(&e, name, 256);
  xdr_dec_init(&d, e.buf, e.len);
  CHECK_OK(nfs3_dec_args(NFS3_PROC_LOOKUP, &d, &a));
  CHECK_INT(a.dirop.what.name.len, ==, 256);
  xdr_enc_truncate(&e, 0);
  xdr_enc_bytes(&e, big, 8);
  xdr_enc_bytes(&e, name, NFS3_STRING_DECODE_MAX + 1);
  xdr_dec_init(&d, e.buf, e.len);
  CHECK_INT(nfs3_dec_args(NFS3_PROC_LOOKUP, &d, &a), ==, -BFS_EFORMAT);
  /* WRITE data over 1 MiB. */
  xdr_enc_truncate(&e, 0);
  xdr_enc_bytes(&e, big, 8);
  xdr_enc_u64(&e, 0);
  xdr_enc_u32(&e, NFS3_IO_MAX + 4);
  xdr_enc_u32(&e, NFS3_UNSTABLE);
  uint8_t *p = xdr_enc_bytes_reserve(&e, NFS3_IO_MAX + 4);
  CHECK(p != NULL);
  memset(p, 0, NFS3_IO_MAX + 4);
  xdr_dec_init(&d, e.buf, e.len);
  CHECK_INT(nfs3_dec_args(NFS3_PROC_WRITE, &d, &a), ==, -BFS_EFORMAT);
  /* Enums and bools out of range. */
  xdr_enc_truncate(&e, 0);
  xdr_enc_bytes(&e, big, 8);
  xdr_enc_bytes(&e, "f", 1);
  xdr_enc_u32(&e, 3); /* createmode 3 */
  xdr_dec_init(&d, e.buf, e.len);
  CHECK_INT(nfs3_dec_args(NFS3_PROC_CREATE, &d, &a), ==, -BFS_EFORMAT);
  xdr_enc_truncate(&e, 0);
  xdr_enc_bytes(&e, big, 8);
  xdr_enc_u32(&e, 2); /* set_mode bool = 2 */
  xdr_dec_init(&d, e.buf, e.len);
  CHECK_INT(nfs3_dec_args(NFS3_PROC_SETATTR, &d, &a), ==, -BFS_EFORMAT);
  xdr_dec_init(&d, e.buf, e.len);
  CHECK_INT(nfs3_dec_args(NFS3_NPROC, &d, &a), ==, -EINVAL);
  xdr_enc_free(&e);
}

static struct nfs3_fattr sample_attr(uint64_t id)
{
  return (struct nfs3_fattr){.type = NFS3_REG, .mode = 0644, .nlink = 2, .uid = 1000, .gid = 100,
                             .size = 1ull << 33, .used = 4096, .rdev_major = 0, .rdev_minor = 0,
                             .fsid = 0xf5, .fileid = id, .atime = {1, 2}, .mtime = {3, 4},
                             .ctime = {5, 6}};
}

static void check_zattr(const fattr3 *z, uint64_t id)
{
  CHECK_INT(z->type, ==, NF3REG);
  CHECK_INT(z->mode, ==, 0644);
  CHECK_INT(z->nlink, ==, 2);
  CHECK_INT(z->uid, ==, 1000);
  CHECK(z->size == 1ull << 33);
  CHECK_INT(z->fsid, ==, 0xf5);
  CHECK(z->fileid == id);
  CHECK_INT(z->ctime.seconds, ==, 5);
  CHECK_INT(z->ctime.nseconds, ==, 6);
}

/* Decodes e's bytes with libnfs's fn into obj; all bytes must be used.
 * What libnfs allocated lives until the next ZDEC (or zdec_done()). */
static ZDR zdec;
static bool zdec_live;

static void zdec_done(void)
{
  if (zdec_live)
    libnfs_zdr_destroy(&zdec);
  zdec_live = false;
}

#define ZDEC(fn, e, obj)                                                  \
  do {                                                                    \
    zdec_done();                                                          \
    CHECK_OK(xdr_enc_error(e));                                           \
    memcpy(wire, (e)->buf, (e)->len);                                     \
    libnfs_zdrmem_create(&zdec, wire, (e)->len, ZDR_DECODE);              \
    zdec_live = true;                                                     \
    memset((obj), 0, sizeof *(obj));                                      \
    CHECK_MSG(fn(&zdec, (obj)), "%s failed", #fn);                        \
    CHECK_INT(libnfs_zdr_getpos(&zdec), ==, (e)->len);                    \
  } while (0)

TEST(nfs3_results_against_libnfs)
{
  struct xdr_enc e;
  xdr_enc_init(&e, 1 << 21);

  struct nfs3_getattr_res gr = {.status = NFS3_SUCCESS, .attr = sample_attr(9)};
  nfs3_enc_getattr_res(&e, &gr);
  GETATTR3res zg;
  ZDEC(zdr_GETATTR3res, &e, &zg);
  CHECK_INT(zg.status, ==, NFS3_OK);
  check_zattr(&zg.GETATTR3res_u.resok.obj_attributes, 9);

  xdr_enc_truncate(&e, 0);
  struct nfs3_lookup_res lr = {.status = NFS3_SUCCESS, .fh = {.len = 3, .data = {1, 2, 3}},
                               .obj_attr = {true, sample_attr(10)}, .dir_attr = {false, {0}}};
  nfs3_enc_lookup_res(&e, &lr);
  LOOKUP3res zl;
  ZDEC(zdr_LOOKUP3res, &e, &zl);
  CHECK_INT(zl.LOOKUP3res_u.resok.object.data.data_len, ==, 3);
  CHECK_INT(zl.LOOKUP3res_u.resok.object.data.data_val[2], ==, 3);
  check_zattr(&zl.LOOKUP3res_u.resok.obj_attributes.post_op_attr_u.attributes, 10);
  CHECK_INT(zl.LOOKUP3res_u.resok.dir_attributes.attributes_follow, ==, 0);

  xdr_enc_truncate(&e, 0);
  lr.status = NFS3_ERR_NOENT;
  lr.dir_attr = (struct nfs3_post_attr){true, sample_attr(11)};
  nfs3_enc_lookup_res(&e, &lr);
  ZDEC(zdr_LOOKUP3res, &e, &zl);
  CHECK_INT(zl.status, ==, NFS3ERR_NOENT);
  check_zattr(&zl.LOOKUP3res_u.resfail.dir_attributes.post_op_attr_u.attributes, 11);

  xdr_enc_truncate(&e, 0);
  static uint8_t data[5000];
  for (size_t i = 0; i < sizeof data; i++)
    data[i] = (uint8_t)(i * 7);
  struct nfs3_read_res rr = {.status = NFS3_SUCCESS, .attr = {true, sample_attr(12)},
                             .count = 4999, .eof = true, .data = data};
  nfs3_enc_read_res(&e, &rr);
  READ3res zr;
  ZDEC(zdr_READ3res, &e, &zr);
  CHECK_INT(zr.READ3res_u.resok.count, ==, 4999);
  CHECK_INT(zr.READ3res_u.resok.eof, ==, 1);
  CHECK_INT(zr.READ3res_u.resok.data.data_len, ==, 4999);
  CHECK_MEM(zr.READ3res_u.resok.data.data_val, data, 4999);

  xdr_enc_truncate(&e, 0);
  struct nfs3_write_res wr = {.status = NFS3_SUCCESS, .count = 7, .committed = NFS3_FILE_SYNC};
  wr.wcc.before = (struct nfs3_pre_attr){true, {.size = 5, .mtime = {1, 1}, .ctime = {2, 2}}};
  wr.wcc.after = (struct nfs3_post_attr){true, sample_attr(13)};
  memcpy(wr.verf, "WRITEVRF", 8);
  nfs3_enc_write_res(&e, &wr);
  WRITE3res zw;
  ZDEC(zdr_WRITE3res, &e, &zw);
  CHECK_INT(zw.WRITE3res_u.resok.count, ==, 7);
  CHECK_INT(zw.WRITE3res_u.resok.committed, ==, FILE_SYNC);
  CHECK_MEM(zw.WRITE3res_u.resok.verf, "WRITEVRF", 8);
  CHECK_INT(zw.WRITE3res_u.resok.file_wcc.before.pre_op_attr_u.attributes.size, ==, 5);

  xdr_enc_truncate(&e, 0);
  struct nfs3_create_res cr = {.status = NFS3_SUCCESS, .fh = {true, {.len = 2, .data = {9, 9}}},
                               .obj_attr = {true, sample_attr(14)}};
  nfs3_enc_create_res(&e, &cr);
  CREATE3res zc;
  ZDEC(zdr_CREATE3res, &e, &zc);
  CHECK_INT(zc.CREATE3res_u.resok.obj.handle_follows, ==, 1);
  check_zattr(&zc.CREATE3res_u.resok.obj_attributes.post_op_attr_u.attributes, 14);

  xdr_enc_truncate(&e, 0);
  struct nfs3_fsinfo_res fr = {.status = NFS3_SUCCESS, .rtmax = NFS3_IO_MAX, .rtpref = 65536,
                               .rtmult = 4096, .wtmax = NFS3_IO_MAX, .wtpref = 65536, .wtmult = 4096,
                               .dtpref = 8192, .maxfilesize = ~0ull, .time_delta = {0, 1},
                               .properties = NFS3_FSF_LINK | NFS3_FSF_SYMLINK | NFS3_FSF_CANSETTIME};
  nfs3_enc_fsinfo_res(&e, &fr);
  FSINFO3res zf;
  ZDEC(zdr_FSINFO3res, &e, &zf);
  CHECK_INT(zf.FSINFO3res_u.resok.rtmax, ==, NFS3_IO_MAX);
  CHECK_INT(zf.FSINFO3res_u.resok.dtpref, ==, 8192);
  CHECK_INT(zf.FSINFO3res_u.resok.properties, ==, FSF3_LINK | FSF3_SYMLINK | FSF3_CANSETTIME);

  xdr_enc_truncate(&e, 0);
  struct nfs3_pathconf_res pr = {.status = NFS3_SUCCESS, .linkmax = 32000, .name_max = 255,
                                 .no_trunc = true, .case_preserving = true};
  nfs3_enc_pathconf_res(&e, &pr);
  PATHCONF3res zp;
  ZDEC(zdr_PATHCONF3res, &e, &zp);
  CHECK_INT(zp.PATHCONF3res_u.resok.name_max, ==, 255);
  CHECK_INT(zp.PATHCONF3res_u.resok.case_preserving, ==, 1);
  CHECK_INT(zp.PATHCONF3res_u.resok.case_insensitive, ==, 0);

  /* A streamed READDIRPLUS with three entries. */
  xdr_enc_truncate(&e, 0);
  struct nfs3_post_attr dir = {true, sample_attr(1)};
  nfs3_enc_readdir_begin(&e, &dir, (const uint8_t *)"VERF0001");
  size_t before = e.len;
  static const char *names[] = {".", "..", "file-with-a-long-name"};
  size_t sizes = 0;
  for (int i = 0; i < 3; i++) {
    struct nfs3_post_attr at = {true, sample_attr(100 + i)};
    struct nfs3_post_fh fh = {true, {.len = 8 + i, .data = {(uint8_t)i}}};
    nfs3_enc_readdirplus_entry(&e, 100 + i, names[i], strlen(names[i]), 1000 + i, &at, &fh);
    sizes += nfs3_readdirplus_entry_size(strlen(names[i]), &at, &fh);
  }
  CHECK_INT(e.len - before, ==, sizes);
  nfs3_enc_readdir_end(&e, true);
  CHECK_INT(e.len, ==, sizes + nfs3_readdir_overhead(&dir));
  READDIRPLUS3res zrp;
  ZDEC(zdr_READDIRPLUS3res, &e, &zrp);
  CHECK_MEM(zrp.READDIRPLUS3res_u.resok.cookieverf, "VERF0001", 8);
  CHECK_INT(zrp.READDIRPLUS3res_u.resok.reply.eof, ==, 1);
  /* libnfs's decoder hands out list nodes at 4-byte alignment (UBSan
   * objects to reading them in place): copy each node out first. */
  entryplus3 *next = zrp.READDIRPLUS3res_u.resok.reply.entries, ent;
  for (int i = 0; i < 3; i++) {
    CHECK(next != NULL);
    memcpy(&ent, next, sizeof ent);
    CHECK(strcmp(ent.name, names[i]) == 0);
    CHECK_INT(ent.cookie, ==, 1000 + i);
    CHECK_INT(ent.fileid, ==, 100 + i);
    CHECK_INT(ent.name_handle.post_op_fh3_u.handle.data.data_len, ==, 8 + i);
    check_zattr(&ent.name_attributes.post_op_attr_u.attributes, 100 + i);
    next = ent.nextentry;
  }
  CHECK(next == NULL);
  zdec_done();
  xdr_enc_free(&e);
}

TEST(mount3_results_against_libnfs)
{
  struct xdr_enc e;
  xdr_enc_init(&e, 1 << 16);
  struct mount3_mnt_res r = {.status = MOUNT3_SUCCESS, .fh_len = 4, .fh = {1, 2, 3, 4},
                             .nflavors = 2, .flavors = {ONCRPC_AUTH_SYS, ONCRPC_AUTH_NONE}};
  mount3_enc_mnt_res(&e, &r);
  mountres3 zm;
  ZDEC(zdr_mountres3, &e, &zm);
  CHECK_INT(zm.fhs_status, ==, MNT3_OK);
  CHECK_INT(zm.mountres3_u.mountinfo.fhandle.fhandle3_len, ==, 4);
  CHECK_INT(zm.mountres3_u.mountinfo.auth_flavors.auth_flavors_len, ==, 2);
  CHECK_INT(zm.mountres3_u.mountinfo.auth_flavors.auth_flavors_val[0], ==, 1);

  xdr_enc_truncate(&e, 0);
  static const char *const groups[] = {"127.0.0.1", "::1", NULL};
  mount3_enc_exportnode(&e, "/basefs", groups);
  mount3_enc_exportnode(&e, "/other", NULL);
  mount3_enc_list_end(&e);
  exports ze;
  ZDEC(zdr_exports, &e, &ze);
  struct exportnode ex, ex2;
  struct groupnode g1, g2;
  CHECK(ze != NULL);
  memcpy(&ex, ze, sizeof ex); /* misaligned by libnfs, see above */
  CHECK(strcmp(ex.ex_dir, "/basefs") == 0);
  CHECK(ex.ex_groups != NULL);
  memcpy(&g1, ex.ex_groups, sizeof g1);
  CHECK(strcmp(g1.gr_name, "127.0.0.1") == 0 && g1.gr_next != NULL);
  memcpy(&g2, g1.gr_next, sizeof g2);
  CHECK(strcmp(g2.gr_name, "::1") == 0 && g2.gr_next == NULL);
  CHECK(ex.ex_next != NULL);
  memcpy(&ex2, ex.ex_next, sizeof ex2);
  CHECK(strcmp(ex2.ex_dir, "/other") == 0 && ex2.ex_groups == NULL && ex2.ex_next == NULL);

  xdr_enc_truncate(&e, 0);
  mount3_enc_mountbody(&e, "10.0.0.1", "/basefs");
  mount3_enc_list_end(&e);
  mountlist zd;
  ZDEC(zdr_mountlist, &e, &zd);
  struct mountbody mb;
  CHECK(zd != NULL);
  memcpy(&mb, zd, sizeof mb);
  CHECK(strcmp(mb.ml_hostname, "10.0.0.1") == 0 && strcmp(mb.ml_directory, "/basefs") == 0);
  CHECK(mb.ml_next == NULL);
  zdec_done();
  xdr_enc_free(&e);
}
