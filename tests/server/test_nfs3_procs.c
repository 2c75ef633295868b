/*
 * The NFSv3 procedures through libnfs's raw client against an in-process
 * server on a real filesystem: every procedure, its error paths, handles,
 * cookies, staging and sealing.
 */
#include "tests/server/nfs3_harness.h"

#include "server/fh.h"
#include "store/view.h"

#include <dirent.h>

#define ROOT s.root, s.root_len

static void sattr_none(sattr3 *sa) { memset(sa, 0, sizeof *sa); }

static void put(struct cl *c, const uint8_t *fh, uint32_t len, const char *data)
{
  struct res r;
  c3_write(c, fh, len, 0, data, (uint32_t)strlen(data), UNSTABLE, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_commit(c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
}

/* Counts the content versions (WRITE entries) of PATH in the stopped fs. */
static int writes_of(struct srv *s, const char *path)
{
  struct fs *fs;
  CHECK_OK(fs_open(s->home, "t", false, &fs));
  struct fs_version *v = NULL;
  size_t n = 0;
  CHECK_OK(fs_versions(fs, path, &v, &n));
  int w = 0;
  for (size_t i = 0; i < n; i++)
    w += v[i].action == ENTRY_WRITE;
  free(v);
  fs_close(fs);
  return w;
}

TEST(nfs3_handles_getattr_and_bad_handles)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  CHECK_INT(s.root_len, ==, FH_SIZE);
  c3_getattr(&c, ROOT, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.obj.type, ==, NF3DIR);
  CHECK_INT(r.obj.mode, ==, 0755);
  /* Malformed: short, wrong format, wrong kind, zero length. */
  uint8_t bad[FH_SIZE];
  memcpy(bad, s.root, FH_SIZE);
  c3_getattr(&c, bad, 10, &r);
  CHECK_INT(r.status, ==, NFS3ERR_BADHANDLE);
  c3_getattr(&c, bad, 0, &r);
  CHECK_INT(r.status, ==, NFS3ERR_BADHANDLE);
  bad[0] = 9;
  c3_getattr(&c, bad, FH_SIZE, &r);
  CHECK_INT(r.status, ==, NFS3ERR_BADHANDLE);
  memcpy(bad, s.root, FH_SIZE);
  bad[1] = 77;
  c3_getattr(&c, bad, FH_SIZE, &r);
  CHECK_INT(r.status, ==, NFS3ERR_BADHANDLE);
  /* Another filesystem's handle (tag differs): stale. */
  memcpy(bad, s.root, FH_SIZE);
  bad[5] ^= 0xff;
  c3_getattr(&c, bad, FH_SIZE, &r);
  CHECK_INT(r.status, ==, NFS3ERR_STALE);
  /* An object id nobody created: stale. */
  memcpy(bad, s.root, FH_SIZE);
  bad[30] ^= 0x55;
  c3_getattr(&c, bad, FH_SIZE, &r);
  CHECK_INT(r.status, ==, NFS3ERR_STALE);
  /* Every procedure taking a handle answers BADHANDLE, not a crash. */
  c3_access(&c, bad, 3, 0x3f, &r);
  CHECK_INT(r.status, ==, NFS3ERR_BADHANDLE);
  c3_read(&c, bad, 3, 0, 10, &r);
  CHECK_INT(r.status, ==, NFS3ERR_BADHANDLE);
  c3_lookup(&c, bad, 3, "x", &r);
  CHECK_INT(r.status, ==, NFS3ERR_BADHANDLE);
  c3_readdir(&c, bad, 3, 0, NULL, 4096, &r);
  CHECK_INT(r.status, ==, NFS3ERR_BADHANDLE);
  c3_commit(&c, bad, 3, &r);
  CHECK_INT(r.status, ==, NFS3ERR_BADHANDLE);
  /* A removed file's handle is stale; its name is gone. */
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, ROOT, "gone", fh, &len);
  c3_remove(&c, ROOT, "gone", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_lookup(&c, ROOT, "gone", &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOENT);
  c3_getattr(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3ERR_STALE);
  c3_write(&c, fh, len, 0, "x", 1, UNSTABLE, &r);
  CHECK_INT(r.status, ==, NFS3ERR_STALE);
  cl_close(&c);
  srv_stop(&s, true);
  srv_free(&s);
}

TEST(nfs3_lookup_names)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, ROOT, "f", fh, &len);
  c3_lookup(&c, ROOT, "f", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.fh_len, ==, len);
  CHECK_MEM(r.fh, fh, len);
  CHECK(r.has_obj && r.has_dir);
  CHECK_INT(r.obj.type, ==, NF3REG);
  c3_lookup(&c, ROOT, ".", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_MEM(r.fh, s.root, s.root_len);
  c3_lookup(&c, ROOT, "..", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_MEM(r.fh, s.root, s.root_len);
  c3_lookup(&c, ROOT, "nope", &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOENT);
  CHECK(r.has_dir);
  char longname[300];
  memset(longname, 'a', 256);
  longname[256] = '\0';
  c3_lookup(&c, ROOT, longname, &r);
  CHECK_INT(r.status, ==, NFS3ERR_NAMETOOLONG);
  longname[255] = '\0';
  c3_lookup(&c, ROOT, longname, &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOENT);
  c3_lookup(&c, ROOT, "a/b", &r);
  CHECK_INT(r.status, ==, NFS3ERR_INVAL);
  c3_lookup(&c, fh, len, "x", &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOTDIR);
  /* /.basefs: found, a read-only directory. */
  c3_lookup(&c, ROOT, ".basefs", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.obj.type, ==, NF3DIR);
  uint8_t bfs[64];
  uint32_t blen = r.fh_len;
  memcpy(bfs, r.fh, blen);
  c3_lookup(&c, bfs, blen, "history", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_lookup(&c, bfs, blen, "..", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_MEM(r.fh, s.root, s.root_len);
  c3_create(&c, bfs, blen, "x", UNCHECKED, NULL, NULL, &r);
  CHECK_INT(r.status, ==, NFS3ERR_ROFS);
  c3_mkdir(&c, bfs, blen, "x", &r);
  CHECK_INT(r.status, ==, NFS3ERR_ROFS);
  c3_mkdir(&c, ROOT, ".basefs", &r);
  CHECK_INT(r.status, ==, NFS3ERR_EXIST);
  c3_rmdir(&c, ROOT, ".basefs", &r);
  CHECK_INT(r.status, ==, NFS3ERR_ROFS);
  /* ".." of a subdirectory is its parent. */
  c3_mkdir(&c, ROOT, "sub", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  uint8_t sub[64];
  uint32_t slen = r.fh_len;
  memcpy(sub, r.fh, slen);
  c3_mkdir(&c, sub, slen, "deeper", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  uint8_t deeper[64];
  uint32_t dlen = r.fh_len;
  memcpy(deeper, r.fh, dlen);
  c3_lookup(&c, deeper, dlen, "..", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_MEM(r.fh, sub, slen);
  cl_close(&c);
  srv_stop(&s, true);
  srv_free(&s);
}

TEST(nfs3_write_stage_commit_one_version)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, ROOT, "f", fh, &len);
  /* Three UNSTABLE writes, out of order, with a hole filled later. */
  c3_write(&c, fh, len, 6, "world", 5, UNSTABLE, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.count, ==, 5);
  CHECK_INT(r.committed, ==, UNSTABLE);
  CHECK(r.has_pre && r.has_obj);
  CHECK_INT(r.pre.size, ==, 0);
  CHECK_INT(r.obj.size, ==, 11);
  uint8_t verf[8];
  memcpy(verf, r.verf, 8);
  c3_write(&c, fh, len, 0, "hello", 5, UNSTABLE, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_MEM(r.verf, verf, 8);
  c3_write(&c, fh, len, 5, " ", 1, UNSTABLE, &r);
  /* Read-your-writes before COMMIT. */
  c3_read(&c, fh, len, 0, 100, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.count, ==, 11);
  CHECK(r.eof);
  CHECK_MEM(r.data, "hello world", 11);
  res_free(&r);
  c3_read(&c, fh, len, 6, 3, &r);
  CHECK_INT(r.count, ==, 3);
  CHECK(!r.eof);
  CHECK_MEM(r.data, "wor", 3);
  res_free(&r);
  c3_read(&c, fh, len, 50, 3, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.count, ==, 0);
  CHECK(r.eof);
  res_free(&r);
  c3_getattr(&c, fh, len, &r);
  CHECK_INT(r.obj.size, ==, 11);
  c3_commit(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_MEM(r.verf, verf, 8);
  CHECK_INT(r.obj.size, ==, 11);
  CHECK_INT(r.obj.mode, ==, 0644); /* sealing keeps the attributes */
  /* A COMMIT with nothing staged is fine too. */
  c3_commit(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_read(&c, fh, len, 0, 100, &r);
  CHECK_MEM(r.data, "hello world", 11);
  res_free(&r);
  /* A FILE_SYNC write answers FILE_SYNC. */
  c3_write(&c, fh, len, 0, "J", 1, FILE_SYNC, &r);
  CHECK_INT(r.committed, ==, FILE_SYNC);
  c3_write(&c, fh, len, 0, "H", 1, DATA_SYNC, &r);
  CHECK_INT(r.committed, ==, FILE_SYNC);
  c3_commit(&c, fh, len, &r);
  /* WRITE/READ/COMMIT on a directory. */
  c3_write(&c, ROOT, 0, "x", 1, UNSTABLE, &r);
  CHECK_INT(r.status, ==, NFS3ERR_ISDIR);
  c3_read(&c, ROOT, 0, 10, &r);
  CHECK_INT(r.status, ==, NFS3ERR_ISDIR);
  c3_commit(&c, ROOT, &r);
  CHECK_INT(r.status, ==, NFS3ERR_ISDIR);
  cl_close(&c);
  srv_stop(&s, true);
  /* CREATE + one version per COMMIT (two commits with data). */
  CHECK_INT(writes_of(&s, "/f"), ==, 3);
  size_t n;
  char *text = srv_cat(&s, "/f", &n);
  CHECK(text && strcmp(text, "Hello world") == 0);
  free(text);
  srv_free(&s);
}

TEST(nfs3_large_file_blocks_and_reads)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, ROOT, "big", fh, &len);
  size_t total = 3u << 20;
  uint8_t *data = malloc(total);
  for (size_t i = 0; i < total; i++)
    data[i] = (uint8_t)(test_rand() >> 13);
  for (size_t off = 0; off < total; off += 1u << 20) {
    c3_write(&c, fh, len, off, data + off, 1u << 20, UNSTABLE, &r);
    CHECK_INT(r.status, ==, NFS3_OK);
  }
  c3_commit(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  for (size_t off = 0; off < total; off += 700000) {
    c3_read(&c, fh, len, off, 700000, &r);
    CHECK_INT(r.status, ==, NFS3_OK);
    size_t want = total - off < 700000 ? total - off : 700000;
    CHECK_INT(r.count, ==, want);
    CHECK_MEM(r.data, data + off, want);
    res_free(&r);
  }
  /* A partial overwrite stages a copy and seals a second version. */
  c3_write(&c, fh, len, 1000, "XYZ", 3, UNSTABLE, &r);
  memcpy(data + 1000, "XYZ", 3);
  c3_read(&c, fh, len, 990, 20, &r);
  CHECK_MEM(r.data, data + 990, 20);
  res_free(&r);
  cl_close(&c);
  srv_stop(&s, true); /* shutdown seals */
  check_stored(&s, "/big", data, total);
  free(data);
  CHECK_INT(writes_of(&s, "/big"), ==, 3);
  srv_free(&s);
}

TEST(nfs3_create_modes)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, ROOT, "u", fh, &len);
  put(&c, fh, len, "data");
  /* UNCHECKED on an existing file opens it; with size 0 it truncates. */
  c3_create(&c, ROOT, "u", UNCHECKED, NULL, NULL, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_MEM(r.fh, fh, len);
  CHECK_INT(r.obj.size, ==, 4);
  sattr3 sa;
  sattr_none(&sa);
  sa.size.set_it = 1;
  sa.size.set_size3_u.size = 0;
  c3_create(&c, ROOT, "u", UNCHECKED, &sa, NULL, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.obj.size, ==, 0);
  c3_create(&c, ROOT, "u", GUARDED, NULL, NULL, &r);
  CHECK_INT(r.status, ==, NFS3ERR_EXIST);
  CHECK(r.has_pre && r.has_dir);
  /* EXCLUSIVE: a retransmission with the same verifier succeeds. */
  c3_create(&c, ROOT, "x", EXCLUSIVE, NULL, "verf0001", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  uint8_t xfh[64];
  uint32_t xlen = r.fh_len;
  memcpy(xfh, r.fh, xlen);
  c3_create(&c, ROOT, "x", EXCLUSIVE, NULL, "verf0001", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_MEM(r.fh, xfh, xlen);
  c3_create(&c, ROOT, "x", EXCLUSIVE, NULL, "verf0002", &r);
  CHECK_INT(r.status, ==, NFS3ERR_EXIST);
  /* ... the verifier survives a restart (it is in the entry). */
  cl_close(&c);
  srv_stop(&s, true);
  srv_start(&s, false);
  cl_open(&c, s.port);
  c3_create(&c, ROOT, "x", EXCLUSIVE, NULL, "verf0001", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_MEM(r.fh, xfh, xlen);
  /* ... and once the client set the times, it is a different file. */
  sattr_none(&sa);
  sa.mtime.set_it = SET_TO_SERVER_TIME;
  c3_setattr(&c, xfh, xlen, &sa, NULL, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_create(&c, ROOT, "x", EXCLUSIVE, NULL, "verf0001", &r);
  CHECK_INT(r.status, ==, NFS3ERR_EXIST);
  /* Names. */
  c3_create(&c, ROOT, "a/b", UNCHECKED, NULL, NULL, &r);
  CHECK_INT(r.status, ==, NFS3ERR_INVAL);
  c3_create(&c, ROOT, ".", GUARDED, NULL, NULL, &r);
  CHECK_INT(r.status, ==, NFS3ERR_EXIST);
  c3_create(&c, ROOT, "..", GUARDED, NULL, NULL, &r);
  CHECK_INT(r.status, ==, NFS3ERR_EXIST);
  char longname[300];
  memset(longname, 'n', 256);
  longname[256] = '\0';
  c3_create(&c, ROOT, longname, GUARDED, NULL, NULL, &r);
  CHECK_INT(r.status, ==, NFS3ERR_NAMETOOLONG);
  longname[255] = '\0';
  c3_create(&c, ROOT, longname, GUARDED, NULL, NULL, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_create(&c, fh, len, "in-a-file", GUARDED, NULL, NULL, &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOTDIR);
  /* The new file's attributes and the directory's wcc. */
  sattr_none(&sa);
  sa.mode.set_it = 1;
  sa.mode.set_mode3_u.mode = 0640;
  c3_create(&c, ROOT, "m", GUARDED, &sa, NULL, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.obj.mode, ==, 0640);
  CHECK_INT(r.obj.size, ==, 0);
  CHECK(r.has_pre && r.has_dir);
  CHECK(r.dir.mtime.seconds > r.pre.mtime.seconds ||
        (r.dir.mtime.seconds == r.pre.mtime.seconds && r.dir.mtime.nseconds > r.pre.mtime.nseconds));
  cl_close(&c);
  srv_stop(&s, true);
  srv_free(&s);
}

TEST(nfs3_mkdir_rmdir_remove)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  c3_mkdir(&c, ROOT, "d", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.obj.type, ==, NF3DIR);
  CHECK_INT(r.obj.mode, ==, 0755);
  uint8_t d[64];
  uint32_t dlen = r.fh_len;
  memcpy(d, r.fh, dlen);
  c3_mkdir(&c, ROOT, "d", &r);
  CHECK_INT(r.status, ==, NFS3ERR_EXIST);
  c3_getattr(&c, ROOT, &r);
  CHECK_INT(r.obj.nlink, ==, 3);
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, d, dlen, "f", fh, &len);
  c3_rmdir(&c, ROOT, "d", &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOTEMPTY);
  c3_rmdir(&c, d, dlen, "f", &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOTDIR);
  c3_remove(&c, ROOT, "d", &r);
  CHECK_INT(r.status, ==, NFS3ERR_ISDIR);
  c3_remove(&c, d, dlen, "nope", &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOENT);
  c3_rmdir(&c, d, dlen, ".", &r);
  CHECK_INT(r.status, ==, NFS3ERR_INVAL);
  c3_rmdir(&c, d, dlen, "..", &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOTEMPTY);
  c3_remove(&c, fh, len, "x", &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOTDIR);
  c3_remove(&c, d, dlen, "f", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK(r.has_pre && r.has_dir);
  c3_rmdir(&c, ROOT, "d", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_getattr(&c, d, dlen, &r);
  CHECK_INT(r.status, ==, NFS3ERR_STALE);
  c3_lookup(&c, ROOT, "d", &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOENT);
  c3_mkdir(&c, d, dlen, "x", &r);
  CHECK_INT(r.status, ==, NFS3ERR_STALE);
  cl_close(&c);
  srv_stop(&s, true);
  srv_free(&s);
}

TEST(nfs3_rename)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t a[64], b[64], fh[64], g[64];
  uint32_t alen, blen, len, glen;
  c3_mkdir(&c, ROOT, "a", &r);
  alen = r.fh_len;
  memcpy(a, r.fh, alen);
  c3_mkdir(&c, ROOT, "b", &r);
  blen = r.fh_len;
  memcpy(b, r.fh, blen);
  mkfile(&c, a, alen, "f", fh, &len);
  put(&c, fh, len, "one");
  /* Staged data moves with the file (sealed by the RENAME). */
  c3_write(&c, fh, len, 0, "two", 3, UNSTABLE, &r);
  c3_rename(&c, a, alen, "f", b, blen, "f2", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK(r.has_pre && r.has_dir && r.has_pre2 && r.has_dir2);
  c3_getattr(&c, fh, len, &r); /* the handle survives */
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_lookup(&c, b, blen, "f2", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_MEM(r.fh, fh, len);
  c3_lookup(&c, a, alen, "f", &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOENT);
  /* Onto an existing file: replaced. */
  mkfile(&c, b, blen, "g", g, &glen);
  c3_rename(&c, b, blen, "f2", b, blen, "g", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_lookup(&c, b, blen, "g", &r);
  CHECK_MEM(r.fh, fh, len);
  /* Errors. */
  c3_rename(&c, b, blen, "nope", a, alen, "x", &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOENT);
  c3_rename(&c, ROOT, "a", b, blen, "g", &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOTDIR);
  c3_rename(&c, b, blen, "g", ROOT, "a", &r);
  CHECK_INT(r.status, ==, NFS3ERR_ISDIR);
  c3_rename(&c, ROOT, "a", ROOT, "b", &r); /* b is not empty */
  CHECK_INT(r.status, ==, NFS3ERR_NOTEMPTY);
  c3_rename(&c, ROOT, "a", a, alen, "inside", &r);
  CHECK_INT(r.status, ==, NFS3ERR_INVAL);
  c3_rename(&c, ROOT, ".basefs", ROOT, "x", &r);
  CHECK_INT(r.status, ==, NFS3ERR_ROFS);
  c3_rename(&c, ROOT, "a", ROOT, ".basefs", &r);
  CHECK_INT(r.status, ==, NFS3ERR_ROFS);
  c3_rename(&c, b, blen, ".", ROOT, "x", &r);
  CHECK_INT(r.status, ==, NFS3ERR_INVAL);
  c3_rename(&c, fh, len, "x", ROOT, "y", &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOTDIR);
  /* An empty directory may be replaced by a directory. */
  c3_mkdir(&c, ROOT, "empty", &r);
  c3_rename(&c, ROOT, "a", ROOT, "empty", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_lookup(&c, ROOT, "empty", &r);
  CHECK_MEM(r.fh, a, alen);
  /* ".." follows a directory's moves. */
  c3_mkdir(&c, b, blen, "sub", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  uint8_t sub[64];
  uint32_t sublen = r.fh_len;
  memcpy(sub, r.fh, sublen);
  c3_lookup(&c, sub, sublen, "..", &r);
  CHECK_MEM(r.fh, b, blen);
  c3_rename(&c, b, blen, "sub", a, alen, "sub2", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_lookup(&c, sub, sublen, "..", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_MEM(r.fh, a, alen);
  /* Same object under both names: nothing happens. */
  c3_link(&c, fh, len, b, blen, "h", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_rename(&c, b, blen, "g", b, blen, "h", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_lookup(&c, b, blen, "g", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  cl_close(&c);
  srv_stop(&s, true);
  size_t n;
  char *text = srv_cat(&s, "/b/g", &n);
  CHECK(text && strcmp(text, "two") == 0);
  free(text);
  srv_free(&s);
}

TEST(nfs3_link_symlink_readlink_mknod)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, ROOT, "f", fh, &len);
  put(&c, fh, len, "shared");
  c3_link(&c, fh, len, ROOT, "g", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK(r.has_obj);
  CHECK_INT(r.obj.nlink, ==, 2);
  CHECK(r.has_pre && r.has_dir);
  c3_lookup(&c, ROOT, "g", &r);
  CHECK_MEM(r.fh, fh, len);
  c3_link(&c, fh, len, ROOT, "g", &r);
  CHECK_INT(r.status, ==, NFS3ERR_EXIST);
  c3_link(&c, ROOT, ROOT, "dirlink", &r);
  CHECK_INT(r.status, ==, NFS3ERR_ISDIR);
  c3_link(&c, fh, len, fh, len, "x", &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOTDIR);
  /* Symlinks. */
  c3_symlink(&c, ROOT, "sl", "f", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.obj.type, ==, NF3LNK);
  CHECK_INT(r.obj.size, ==, 1);
  uint8_t sl[64];
  uint32_t sllen = r.fh_len;
  memcpy(sl, r.fh, sllen);
  c3_readlink(&c, sl, sllen, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK(r.data && strcmp((char *)r.data, "f") == 0);
  res_free(&r);
  c3_readlink(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3ERR_INVAL);
  c3_symlink(&c, ROOT, "sl", "f", &r);
  CHECK_INT(r.status, ==, NFS3ERR_EXIST);
  char target[1100];
  memset(target, 't', 1025);
  target[1025] = '\0';
  c3_symlink(&c, ROOT, "long", target, &r);
  CHECK_INT(r.status, ==, NFS3ERR_NAMETOOLONG);
  c3_read(&c, sl, sllen, 0, 10, &r);
  CHECK_INT(r.status, ==, NFS3ERR_INVAL);
  c3_write(&c, sl, sllen, 0, "x", 1, UNSTABLE, &r);
  CHECK_INT(r.status, ==, NFS3ERR_INVAL);
  /* MKNOD: no devices, sockets or FIFOs. */
  c3_mknod(&c, ROOT, "dev", NF3CHR, &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOTSUPP);
  c3_mknod(&c, ROOT, "fifo", NF3FIFO, &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOTSUPP);
  c3_mknod(&c, ROOT, "sock", NF3SOCK, &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOTSUPP);
  c3_mknod(&c, ROOT, "reg", NF3REG, &r);
  CHECK_INT(r.status, ==, NFS3ERR_BADTYPE);
  c3_lookup(&c, ROOT, "dev", &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOENT);
  cl_close(&c);
  srv_stop(&s, true);
  size_t n;
  char *text = srv_cat(&s, "/g", &n);
  CHECK(text && strcmp(text, "shared") == 0);
  free(text);
  srv_free(&s);
}

TEST(nfs3_setattr)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, ROOT, "f", fh, &len);
  put(&c, fh, len, "0123456789");
  sattr3 sa;
  sattr_none(&sa);
  sa.mode.set_it = 1;
  sa.mode.set_mode3_u.mode = 0600;
  c3_setattr(&c, fh, len, &sa, NULL, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK(r.has_pre && r.has_obj);
  CHECK_INT(r.obj.mode, ==, 0600);
  /* The guard: a stale ctime is refused, the current one accepted. */
  nfstime3 old = {r.pre.ctime.seconds, r.pre.ctime.nseconds};
  nfstime3 cur = {r.obj.ctime.seconds, r.obj.ctime.nseconds};
  sa.mode.set_mode3_u.mode = 0644;
  if (old.seconds != cur.seconds || old.nseconds != cur.nseconds) {
    c3_setattr(&c, fh, len, &sa, &old, &r);
    CHECK_INT(r.status, ==, NFS3ERR_NOT_SYNC);
    CHECK_INT(r.obj.mode, ==, 0600);
  }
  nfstime3 bogus = {1, 2};
  c3_setattr(&c, fh, len, &sa, &bogus, &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOT_SYNC);
  c3_setattr(&c, fh, len, &sa, &cur, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.obj.mode, ==, 0644);
  /* Truncate, then extend with zeros. */
  sattr_none(&sa);
  sa.size.set_it = 1;
  sa.size.set_size3_u.size = 4;
  c3_setattr(&c, fh, len, &sa, NULL, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.obj.size, ==, 4);
  sa.size.set_size3_u.size = 6;
  c3_setattr(&c, fh, len, &sa, NULL, &r);
  c3_read(&c, fh, len, 0, 100, &r);
  CHECK_INT(r.count, ==, 6);
  CHECK_MEM(r.data, "0123\0\0", 6);
  res_free(&r);
  /* Client mtime. */
  sattr_none(&sa);
  sa.mtime.set_it = SET_TO_CLIENT_TIME;
  sa.mtime.set_mtime_u.mtime.seconds = 1000000000;
  sa.mtime.set_mtime_u.mtime.nseconds = 5;
  c3_setattr(&c, fh, len, &sa, NULL, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.obj.mtime.seconds, ==, 1000000000);
  CHECK_INT(r.obj.mtime.nseconds, ==, 5);
  /* SETATTR of a staged file seals data and attributes as ONE version. */
  c3_write(&c, fh, len, 0, "AB", 2, UNSTABLE, &r);
  sattr_none(&sa);
  sa.mode.set_it = 1;
  sa.mode.set_mode3_u.mode = 0604;
  c3_setattr(&c, fh, len, &sa, NULL, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.obj.mode, ==, 0604);
  CHECK_INT(r.obj.size, ==, 6);
  /* Size on a directory; chown by a non-root user. */
  sattr_none(&sa);
  sa.size.set_it = 1;
  c3_setattr(&c, ROOT, &sa, NULL, &r);
  CHECK_INT(r.status, ==, NFS3ERR_ISDIR);
  struct cl u;
  cl_open_as(&u, s.port, 1000, 1000, 0, NULL);
  sattr_none(&sa);
  sa.uid.set_it = 1;
  sa.uid.set_uid3_u.uid = 1000;
  c3_setattr(&u, fh, len, &sa, NULL, &r);
  CHECK_INT(r.status, ==, NFS3ERR_PERM);
  sattr_none(&sa);
  sa.mode.set_it = 1;
  sa.mode.set_mode3_u.mode = 0777;
  c3_setattr(&u, fh, len, &sa, NULL, &r);
  CHECK_INT(r.status, ==, NFS3ERR_PERM);
  /* root may chown. */
  sattr_none(&sa);
  sa.uid.set_it = 1;
  sa.uid.set_uid3_u.uid = 1000;
  sa.gid.set_it = 1;
  sa.gid.set_gid3_u.gid = 1000;
  c3_setattr(&c, fh, len, &sa, NULL, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.obj.uid, ==, 1000);
  CHECK_INT(r.obj.gid, ==, 1000);
  /* ... and then the owner may chmod. */
  sattr_none(&sa);
  sa.mode.set_it = 1;
  sa.mode.set_mode3_u.mode = 0600;
  c3_setattr(&u, fh, len, &sa, NULL, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  cl_close(&u);
  cl_close(&c);
  srv_stop(&s, true);
  /* create, 10 bytes, truncate 4, extend 6, staged AB + mode: 5 writes. */
  CHECK_INT(writes_of(&s, "/f"), ==, 5);
  size_t n;
  char *text = srv_cat(&s, "/f", &n);
  CHECK(text && n == 6 && memcmp(text, "AB23\0\0", 6) == 0);
  free(text);
  srv_free(&s);
}

static bool listed(const struct res *r, const char *name)
{
  for (int i = 0; i < r->n; i++)
    if (strcmp(r->names[i], name) == 0)
      return true;
  return false;
}

TEST(nfs3_readdir_cookies)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  enum { N = 60 };
  for (int i = 0; i < N; i++) {
    char name[32];
    snprintf(name, sizeof name, "file-%02d", i);
    uint8_t fh[64];
    uint32_t len;
    mkfile(&c, ROOT, name, fh, &len);
  }
  /* Page through with a small count: every name exactly once, "." and
   * "..", never .basefs, verifier 0. */
  static char seen[N + 8][64];
  int nseen = 0;
  uint64_t cookie = 0;
  int pages = 0;
  for (;;) {
    c3_readdir(&c, ROOT, cookie, NULL, 600, &r);
    CHECK_INT(r.status, ==, NFS3_OK);
    CHECK_MEM(r.verf, "\0\0\0\0\0\0\0\0", 8);
    pages++;
    for (int i = 0; i < r.n; i++) {
      CHECK(strcmp(r.names[i], ".basefs") != 0);
      for (int j = 0; j < nseen; j++)
        CHECK_MSG(strcmp(seen[j], r.names[i]) != 0, "listed twice: %s", r.names[i]);
      CHECK(nseen < N + 8);
      snprintf(seen[nseen++], 64, "%s", r.names[i]);
      CHECK(r.cookies[i] != 0);
      cookie = r.cookies[i];
    }
    if (r.eof)
      break;
    CHECK(r.n > 0);
  }
  CHECK(pages > 3);
  CHECK_INT(nseen, ==, N + 2);
  /* A count too small for one entry. */
  c3_readdir(&c, ROOT, 0, NULL, 100, &r);
  CHECK_INT(r.status, ==, NFS3ERR_TOOSMALL);
  /* A non-zero verifier with a cookie is not ours. */
  c3_readdir(&c, ROOT, cookie, (const uint8_t *)"garbage!", 4096, &r);
  CHECK_INT(r.status, ==, NFS3ERR_BAD_COOKIE);
  /* Cookies stay valid while the directory changes: list the first page,
   * remove its last name, add names, continue after the removed one. */
  c3_readdir(&c, ROOT, 0, NULL, 800, &r);
  CHECK(!r.eof && r.n > 3);
  int first = r.n;
  char last[64];
  snprintf(last, sizeof last, "%s", r.names[r.n - 1]);
  uint64_t resume = r.cookies[r.n - 1];
  static char page1[N + 8][64];
  for (int i = 0; i < first; i++)
    snprintf(page1[i], 64, "%s", r.names[i]);
  struct res x;
  c3_remove(&c, ROOT, last, &x);
  CHECK_INT(x.status, ==, NFS3_OK);
  int total = first;
  for (;;) {
    c3_readdir(&c, ROOT, resume, NULL, 4096, &r);
    CHECK_INT(r.status, ==, NFS3_OK);
    for (int i = 0; i < r.n; i++) {
      for (int j = 0; j < first; j++)
        CHECK(strcmp(page1[j], r.names[i]) != 0);
      resume = r.cookies[i];
    }
    total += r.n;
    if (r.eof)
      break;
  }
  CHECK_INT(total, ==, N + 2); /* the removed one was listed on page 1 */
  /* READDIRPLUS: handles equal LOOKUP's, attributes present. */
  c3_readdirplus(&c, ROOT, 0, 65536, 1 << 20, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK(r.eof);
  CHECK_INT(r.n, ==, N + 1);
  CHECK(listed(&r, ".") && listed(&r, "..") && !listed(&r, ".basefs") && !listed(&r, last));
  for (int i = 0; i < r.n; i++) {
    CHECK(r.has_fhs[i]);
    if (strcmp(r.names[i], "file-07") == 0 || strcmp(r.names[i], "file-33") == 0) {
      struct res l;
      c3_lookup(&c, ROOT, r.names[i], &l);
      CHECK_INT(l.fh_len, ==, r.fh_lens[i]);
      CHECK_MEM(l.fh, r.fhs[i], l.fh_len);
      CHECK_INT(l.obj.fileid, ==, r.fileids[i]);
    }
  }
  /* READDIRPLUS paging by dircount. */
  struct res p;
  c3_readdirplus(&c, ROOT, 0, 200, 1 << 20, &p);
  CHECK_INT(p.status, ==, NFS3_OK);
  CHECK(!p.eof && p.n > 0 && p.n < N);
  /* READDIR of a file. */
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, ROOT, "plain", fh, &len);
  c3_readdir(&c, fh, len, 0, NULL, 4096, &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOTDIR);
  cl_close(&c);
  srv_stop(&s, true);
  srv_free(&s);
}

TEST(nfs3_fsinfo_fsstat_pathconf)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  c3_fsinfo(&c, ROOT, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.rtmax, ==, 1u << 20);
  CHECK_INT(r.wtmax, ==, 1u << 20);
  CHECK(r.maxfilesize >= (1ull << 32));
  CHECK(r.has_obj);
  c3_fsstat(&c, ROOT, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK(r.tbytes > 0);
  c3_pathconf(&c, ROOT, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.name_max, ==, 255);
  CHECK(r.case_preserving && r.no_trunc);
  uint8_t bad[3] = {1, 2, 3};
  c3_fsinfo(&c, bad, 3, &r);
  CHECK_INT(r.status, ==, NFS3ERR_BADHANDLE);
  c3_fsstat(&c, bad, 3, &r);
  CHECK_INT(r.status, ==, NFS3ERR_BADHANDLE);
  c3_pathconf(&c, bad, 3, &r);
  CHECK_INT(r.status, ==, NFS3ERR_BADHANDLE);
  cl_close(&c);
  srv_stop(&s, true);
  srv_free(&s);
}

TEST(nfs3_mode_bits_against_auth_sys)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl root, u;
  cl_open(&root, s.port);
  cl_open_as(&u, s.port, 1000, 1000, 0, NULL);
  struct res r;
  /* "/" is root's 0755: uid 1000 may read and look up, not create. */
  c3_access(&u, ROOT, 0x3f, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.access, ==, ACCESS3_READ | ACCESS3_LOOKUP);
  c3_access(&root, ROOT, 0x3f, &r);
  CHECK_INT(r.access, ==, ACCESS3_READ | ACCESS3_LOOKUP | ACCESS3_MODIFY | ACCESS3_EXTEND |
                              ACCESS3_DELETE);
  c3_create(&u, ROOT, "nope", GUARDED, NULL, NULL, &r);
  CHECK_INT(r.status, ==, NFS3ERR_ACCES);
  c3_mkdir(&u, ROOT, "nope", &r);
  CHECK_INT(r.status, ==, NFS3ERR_ACCES);
  /* A 0600 file of root's: no read for 1000, no write. */
  uint8_t fh[64];
  uint32_t len;
  mkfile(&root, ROOT, "secret", fh, &len);
  put(&root, fh, len, "s3cret");
  sattr3 sa;
  sattr_none(&sa);
  sa.mode.set_it = 1;
  sa.mode.set_mode3_u.mode = 0600;
  c3_setattr(&root, fh, len, &sa, NULL, &r);
  c3_read(&u, fh, len, 0, 10, &r);
  CHECK_INT(r.status, ==, NFS3ERR_ACCES);
  c3_write(&u, fh, len, 0, "x", 1, UNSTABLE, &r);
  CHECK_INT(r.status, ==, NFS3ERR_ACCES);
  c3_access(&u, fh, len, 0x3f, &r);
  CHECK_INT(r.access, ==, 0);
  c3_remove(&u, ROOT, "secret", &r);
  CHECK_INT(r.status, ==, NFS3ERR_ACCES);
  /* A group member reads a 0640 file; others don't. */
  sattr_none(&sa);
  sa.mode.set_it = 1;
  sa.mode.set_mode3_u.mode = 0640;
  sa.gid.set_it = 1;
  sa.gid.set_gid3_u.gid = 50;
  c3_setattr(&root, fh, len, &sa, NULL, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  uint32_t groups[2] = {7, 50};
  struct cl g;
  cl_open_as(&g, s.port, 1001, 1001, 2, groups);
  c3_read(&g, fh, len, 0, 10, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  res_free(&r);
  c3_read(&u, fh, len, 0, 10, &r);
  CHECK_INT(r.status, ==, NFS3ERR_ACCES);
  cl_close(&g);
  /* A 0777 directory: 1000 creates, owns what it creates. */
  c3_mkdir(&root, ROOT, "pub", &r);
  uint8_t pub[64];
  uint32_t plen = r.fh_len;
  memcpy(pub, r.fh, plen);
  sattr_none(&sa);
  sa.mode.set_it = 1;
  sa.mode.set_mode3_u.mode = 0777;
  c3_setattr(&root, pub, plen, &sa, NULL, &r);
  c3_create(&u, pub, plen, "mine", GUARDED, NULL, NULL, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.obj.uid, ==, 1000);
  CHECK_INT(r.obj.gid, ==, 1000);
  /* Sticky: 1001 may not remove 1000's file from a 01777 directory. */
  sa.mode.set_mode3_u.mode = 01777;
  c3_setattr(&root, pub, plen, &sa, NULL, &r);
  struct cl v;
  cl_open_as(&v, s.port, 1001, 1001, 0, NULL);
  c3_remove(&v, pub, plen, "mine", &r);
  CHECK_INT(r.status, ==, NFS3ERR_ACCES);
  c3_remove(&u, pub, plen, "mine", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  cl_close(&v);
  /* A 0700 directory cannot be looked into by 1000. */
  sa.mode.set_mode3_u.mode = 0700;
  c3_setattr(&root, pub, plen, &sa, NULL, &r);
  c3_lookup(&u, pub, plen, "x", &r);
  CHECK_INT(r.status, ==, NFS3ERR_ACCES);
  c3_readdir(&u, pub, plen, 0, NULL, 4096, &r);
  CHECK_INT(r.status, ==, NFS3ERR_ACCES);
  cl_close(&u);
  cl_close(&root);
  srv_stop(&s, true);
  srv_free(&s);
}

TEST(nfs3_readonly_peer_without_key)
{
  struct srv s;
  srv_init(&s);
  /* Content written by the root key, then served with no key at all. */
  CHECK_OK(fs_open(s.home, "t", true, &s.fs));
  CHECK_OK(fs_put(s.fs, s.key, "/f", "offline", 7, NULL));
  CHECK_OK(fs_close(s.fs));
  s.serving = NULL;
  srv_start(&s, false);
  CHECK(nfsd_readonly(s.nfsd));
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t fh[64];
  uint32_t len;
  c3_walk(&c, &s, "/f", fh, &len);
  c3_read(&c, fh, len, 0, 100, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_MEM(r.data, "offline", 7);
  res_free(&r);
  c3_access(&c, fh, len, 0x3f, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.access, ==, ACCESS3_READ);
  c3_access(&c, ROOT, 0x3f, &r);
  CHECK_INT(r.access, ==, ACCESS3_READ | ACCESS3_LOOKUP);
  c3_write(&c, fh, len, 0, "x", 1, UNSTABLE, &r);
  CHECK_INT(r.status, ==, NFS3ERR_ROFS);
  c3_create(&c, ROOT, "n", GUARDED, NULL, NULL, &r);
  CHECK_INT(r.status, ==, NFS3ERR_ROFS);
  c3_mkdir(&c, ROOT, "n", &r);
  CHECK_INT(r.status, ==, NFS3ERR_ROFS);
  c3_remove(&c, ROOT, "f", &r);
  CHECK_INT(r.status, ==, NFS3ERR_ROFS);
  c3_rename(&c, ROOT, "f", ROOT, "g", &r);
  CHECK_INT(r.status, ==, NFS3ERR_ROFS);
  sattr3 sa;
  sattr_none(&sa);
  sa.mode.set_it = 1;
  sa.mode.set_mode3_u.mode = 0600;
  c3_setattr(&c, fh, len, &sa, NULL, &r);
  CHECK_INT(r.status, ==, NFS3ERR_ROFS);
  cl_close(&c);
  srv_stop(&s, true);
  srv_free(&s);
}

TEST(nfs3_key_grants_acces_and_xdev)
{
  struct srv s;
  srv_init(&s);
  struct key *bob;
  CHECK_OK(key_generate(&bob));
  uint8_t pub[KEY_PUBLIC_SIZE];
  key_public(bob, pub);
  CHECK_OK(fs_open(s.home, "t", true, &s.fs));
  CHECK_OK(fs_mkdir(s.fs, s.key, "/a", NULL));
  CHECK_OK(fs_mkdir(s.fs, s.key, "/b", NULL));
  CHECK_OK(fs_put(s.fs, s.key, "/a/f", "f", 1, NULL));
  CHECK_OK(fs_put(s.fs, s.key, "/top", "t", 1, NULL));
  CHECK_OK(fs_grant(s.fs, s.key, "/a", pub, "bob", NULL));
  CHECK_OK(fs_grant(s.fs, s.key, "/b", pub, "bob", NULL));
  CHECK_OK(fs_close(s.fs));
  s.serving = bob;
  srv_start(&s, false);
  CHECK(!nfsd_readonly(s.nfsd));
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t a[64], b[64], top[64];
  uint32_t alen, blen, tlen;
  c3_walk(&c, &s, "/a", a, &alen);
  c3_walk(&c, &s, "/b", b, &blen);
  c3_walk(&c, &s, "/top", top, &tlen);
  /* Not granted on "/": ACCES (not ROFS: the key may write elsewhere). */
  c3_create(&c, ROOT, "x", GUARDED, NULL, NULL, &r);
  CHECK_INT(r.status, ==, NFS3ERR_ACCES);
  c3_write(&c, top, tlen, 0, "x", 1, UNSTABLE, &r);
  CHECK_INT(r.status, ==, NFS3ERR_ACCES);
  c3_access(&c, top, tlen, 0x3f, &r);
  CHECK_INT(r.access & (ACCESS3_MODIFY | ACCESS3_EXTEND), ==, 0);
  c3_access(&c, a, alen, 0x3f, &r);
  CHECK(r.access & ACCESS3_MODIFY);
  /* Granted on /a. */
  c3_create(&c, a, alen, "x", GUARDED, NULL, NULL, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  uint8_t fh[64];
  uint32_t len;
  c3_walk(&c, &s, "/a/f", fh, &len);
  put(&c, fh, len, "by bob");
  /* Two grants: moving between them crosses domains. */
  c3_rename(&c, a, alen, "f", b, blen, "f", &r);
  CHECK_INT(r.status, ==, NFS3ERR_XDEV);
  c3_link(&c, fh, len, b, blen, "f", &r);
  CHECK_INT(r.status, ==, NFS3ERR_XDEV);
  c3_rename(&c, a, alen, "f", ROOT, "f", &r);
  CHECK_INT(r.status, ==, NFS3ERR_ACCES);
  c3_rename(&c, a, alen, "f", a, alen, "g", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  /* A grant on /b lets the key change inside /b, not remove /b's name
   * (it belongs to "/"). */
  c3_rmdir(&c, ROOT, "b", &r);
  CHECK_INT(r.status, ==, NFS3ERR_ACCES);
  c3_rename(&c, ROOT, "b", ROOT, "b2", &r);
  CHECK_INT(r.status, ==, NFS3ERR_ACCES);
  c3_mkdir(&c, b, blen, "sub", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_rmdir(&c, b, blen, "sub", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  cl_close(&c);
  srv_stop(&s, true);
  size_t n;
  char *text = srv_cat(&s, "/a/g", &n);
  CHECK(text && strcmp(text, "by bob") == 0);
  free(text);
  srv_free(&s);
}

TEST(nfs3_granted_nowhere_is_readonly)
{
  struct srv s;
  srv_init(&s);
  struct key *eve;
  CHECK_OK(key_generate(&eve));
  s.serving = eve;
  srv_start(&s, false);
  CHECK(nfsd_readonly(s.nfsd));
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  c3_create(&c, ROOT, "x", GUARDED, NULL, NULL, &r);
  CHECK_INT(r.status, ==, NFS3ERR_ROFS);
  c3_access(&c, ROOT, 0x3f, &r);
  CHECK_INT(r.access, ==, ACCESS3_READ | ACCESS3_LOOKUP);
  cl_close(&c);
  srv_stop(&s, true);
  srv_free(&s);
}

TEST(nfs3_restart_handles_verifier_and_recovery)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t fh[64], durable[64], lost[64];
  uint32_t len, dlen, llen;
  c3_mkdir(&c, ROOT, "d", &r);
  uint8_t d[64];
  uint32_t dl = r.fh_len;
  memcpy(d, r.fh, dl);
  mkfile(&c, d, dl, "f", fh, &len);
  put(&c, fh, len, "kept");
  mkfile(&c, ROOT, "durable", durable, &dlen);
  mkfile(&c, ROOT, "lost", lost, &llen);
  c3_write(&c, durable, dlen, 0, "synced", 6, FILE_SYNC, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  uint8_t verf1[8];
  memcpy(verf1, r.verf, 8);
  c3_write(&c, lost, llen, 0, "unstable", 8, UNSTABLE, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  cl_close(&c);
  srv_stop(&s, false); /* a crash: nothing sealed */
  srv_start(&s, false);
  cl_open(&c, s.port);
  /* Handles from before the restart. */
  c3_getattr(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.obj.size, ==, 4);
  c3_lookup(&c, d, dl, "f", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_MEM(r.fh, fh, len);
  /* FILE_SYNC data survived (sealed at start); UNSTABLE data did not, and
   * the verifier changed so the client knows to resend it. */
  c3_read(&c, durable, dlen, 0, 100, &r);
  CHECK_INT(r.count, ==, 6);
  CHECK_MEM(r.data, "synced", 6);
  res_free(&r);
  c3_getattr(&c, lost, llen, &r);
  CHECK_INT(r.obj.size, ==, 0);
  c3_write(&c, lost, llen, 0, "unstable", 8, UNSTABLE, &r);
  CHECK(memcmp(r.verf, verf1, 8) != 0);
  c3_commit(&c, lost, llen, &r);
  CHECK(memcmp(r.verf, verf1, 8) != 0);
  /* Renamed and still the same handle across another restart. */
  c3_rename(&c, d, dl, "f", ROOT, "moved", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  cl_close(&c);
  srv_stop(&s, true);
  srv_start(&s, false);
  cl_open(&c, s.port);
  c3_read(&c, fh, len, 0, 100, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_MEM(r.data, "kept", 4);
  res_free(&r);
  cl_close(&c);
  srv_stop(&s, true);
  size_t n;
  char *text = srv_cat(&s, "/lost", &n);
  CHECK(text && strcmp(text, "unstable") == 0);
  free(text);
  srv_free(&s);
}

TEST(nfs3_idle_timeout_seals)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, true);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, ROOT, "f", fh, &len);
  c3_write(&c, fh, len, 0, "idle", 4, UNSTABLE, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  usleep(2600 * 1000);
  cl_close(&c);
  srv_stop(&s, false); /* no shutdown seal: the timer must have done it */
  size_t n;
  char *text = srv_cat(&s, "/f", &n);
  CHECK(text && strcmp(text, "idle") == 0);
  free(text);
  CHECK_INT(writes_of(&s, "/f"), ==, 2);
  srv_free(&s);
}

static void staged_count(struct srv *s, void *arg)
{
  *(unsigned *)arg = nfsd_staged(s->nfsd);
}

/* Linux writes a small file at close() as one FILE_SYNC WRITE and no
 * COMMIT: that WRITE seals the version at once. Any other stable write is
 * staged durably; a CLI command reaching the daemon flushes first and must
 * see it. */
TEST(nfs3_flush_seals_file_sync_writes_without_commit)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, ROOT, "small", fh, &len);
  c3_write(&c, fh, len, 0, "small\n", 6, FILE_SYNC, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.committed, ==, FILE_SYNC);
  unsigned staged;
  srv_on_loop(&s, staged_count, &staged);
  CHECK_INT(staged, ==, 1); /* the clean copy the seal keeps */
  c3_write(&c, fh, len, 2, "ALL", 3, FILE_SYNC, &r); /* not the whole file */
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.committed, ==, FILE_SYNC);
  cl_close(&c);
  /* Stop the loop thread but keep nfsd: what the control socket's SYNC does. */
  uv_async_send(&s.stop);
  pthread_join(s.thread, NULL);
  CHECK_INT(writes_of(&s, "/small"), ==, 2); /* the create, the whole write */
  CHECK_INT(nfsd_flush(s.nfsd), ==, 1);
  size_t n;
  char *text = srv_cat(&s, "/small", &n);
  CHECK(text && strcmp(text, "smALL\n") == 0);
  free(text);
  CHECK_INT(nfsd_flush(s.nfsd), ==, 0); /* nothing left to seal */
  CHECK_OK(uv_loop_close(&s.loop));
  nfsd_free(s.nfsd);
  mountd_free(s.mountd);
  rpcsrv_free(s.rpc);
  CHECK_OK(fs_close(s.fs));
  srv_free(&s);
}

TEST(nfs3_directory_times_follow_changes)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  c3_mkdir(&c, ROOT, "d", &r);
  uint8_t d[64];
  uint32_t dl = r.fh_len;
  memcpy(d, r.fh, dl);
  c3_getattr(&c, d, dl, &r);
  fattr3 before = r.obj;
  usleep(10000);
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, d, dl, "f", fh, &len);
  c3_getattr(&c, d, dl, &r);
  CHECK(r.obj.mtime.seconds != before.mtime.seconds || r.obj.mtime.nseconds != before.mtime.nseconds);
  CHECK(r.obj.ctime.seconds != before.ctime.seconds || r.obj.ctime.nseconds != before.ctime.nseconds);
  before = r.obj;
  usleep(10000);
  c3_remove(&c, d, dl, "f", &r);
  c3_getattr(&c, d, dl, &r);
  CHECK(r.obj.mtime.seconds != before.mtime.seconds || r.obj.mtime.nseconds != before.mtime.nseconds);
  cl_close(&c);
  srv_stop(&s, true);
  srv_free(&s);
}

TEST(nfs3_staged_files_are_capped)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  enum { N = NFSD_STAGED_MAX + 20 };
  for (int i = 0; i < N; i++) {
    char name[32], data[32];
    snprintf(name, sizeof name, "f%03d", i);
    snprintf(data, sizeof data, "data %d", i);
    uint8_t fh[64];
    uint32_t len;
    mkfile(&c, ROOT, name, fh, &len);
    struct res r;
    c3_write(&c, fh, len, 0, data, (uint32_t)strlen(data), UNSTABLE, &r);
    CHECK_INT(r.status, ==, NFS3_OK);
  }
  unsigned staged;
  srv_on_loop(&s, staged_count, &staged);
  CHECK_INT(staged, ==, NFSD_STAGED_MAX);
  cl_close(&c);
  srv_stop(&s, false); /* a crash: what was staged is lost (UNSTABLE) */
  /* Small files were staged in memory: not one file on disk. */
  char dir[700];
  snprintf(dir, sizeof dir, "%s/fs/t/stage", s.home);
  int on_disk = 0;
  DIR *dp = opendir(dir);
  CHECK(dp != NULL);
  for (struct dirent *de; (de = readdir(dp));)
    on_disk += de->d_name[0] != '.';
  closedir(dp);
  CHECK_INT(on_disk, ==, 0);
  /* The least recently written ones were sealed to make room. */
  for (int i = 0; i < N; i++) {
    char path[32], want[32];
    snprintf(path, sizeof path, "/f%03d", i);
    snprintf(want, sizeof want, "data %d", i);
    size_t n;
    char *text = srv_cat(&s, path, &n);
    CHECK(text != NULL);
    if (i < N - NFSD_STAGED_MAX)
      CHECK_MSG(strcmp(text, want) == 0, "%s: '%s'", path, text);
    else
      CHECK_INT(n, ==, 0);
    free(text);
  }
  srv_free(&s);
}

TEST(nfs3_small_updates_are_deltas_and_read_back)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, ROOT, "conf", fh, &len);
  char text[3000];
  for (size_t i = 0; i < sizeof text; i++)
    text[i] = (char)('a' + (test_rand() % 26));
  c3_write(&c, fh, len, 0, text, sizeof text, UNSTABLE, &r);
  c3_commit(&c, fh, len, &r);
  /* Three one-byte edits, each committed: small deltas on the chain. */
  for (int k = 0; k < 3; k++) {
    size_t at = (size_t)(test_rand() % sizeof text);
    text[at] = (char)('A' + k);
    c3_write(&c, fh, len, at, &text[at], 1, UNSTABLE, &r);
    CHECK_INT(r.status, ==, NFS3_OK);
    c3_commit(&c, fh, len, &r);
    CHECK_INT(r.status, ==, NFS3_OK);
    c3_read(&c, fh, len, 0, sizeof text, &r);
    CHECK_INT(r.count, ==, sizeof text);
    CHECK_MEM(r.data, text, sizeof text);
    res_free(&r);
  }
  cl_close(&c);
  srv_stop(&s, true);
  struct fs *fs;
  CHECK_OK(fs_open(s.home, "t", false, &fs));
  struct fs_stat st;
  CHECK_OK(fs_stat(fs, "/conf", &st));
  struct view_node n = {.kind = VIEW_NODE_OBJECT, .id = st.object};
  struct view_stat vs;
  CHECK_OK(view_stat(fs_view(fs), &n, &vs));
  struct entry *e = malloc(sizeof *e);
  CHECK_OK(view_entry(fs_view(fs), &vs.content, e));
  CHECK_INT(e->content_kind, ==, ENTRY_CONTENT_DELTA);
  CHECK(e->content_len < 200);
  free(e);
  fs_close(fs);
  srv_free(&s);
}

TEST(nfs3_history_is_readable_and_read_only)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, ROOT, "f", fh, &len);
  put(&c, fh, len, "version one");
  c3_write(&c, fh, len, 8, "two", 3, UNSTABLE, &r);
  c3_commit(&c, fh, len, &r);
  /* The object id is in the handle (fh.h): /.basefs/history/<hex>. */
  char hex[65];
  for (int i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", fh[12 + i]);
  uint8_t h[64];
  uint32_t hlen;
  c3_walk(&c, &s, "/.basefs/history", h, &hlen);
  c3_lookup(&c, h, hlen, hex, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.obj.type, ==, NF3DIR);
  uint8_t dir[64];
  uint32_t dlen = r.fh_len;
  memcpy(dir, r.fh, dlen);
  c3_readdirplus(&c, dir, dlen, 0, 65536, 1 << 20, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  /* ".", "..", "tree" and one file per content version (3: create, two writes). */
  int versions = 0;
  bool one = false, two = false;
  struct res list = r;
  for (int i = 0; i < list.n; i++) {
    if (strlen(list.names[i]) != 64)
      continue;
    versions++;
    struct res v;
    c3_read(&c, list.fhs[i], list.fh_lens[i], 0, 100, &v);
    CHECK_INT(v.status, ==, NFS3_OK);
    one |= v.count == 11 && memcmp(v.data, "version one", 11) == 0;
    two |= v.count == 11 && memcmp(v.data, "version two", 11) == 0;
    res_free(&v);
    c3_write(&c, list.fhs[i], list.fh_lens[i], 0, "x", 1, UNSTABLE, &v);
    CHECK_INT(v.status, ==, NFS3ERR_ROFS);
    sattr3 sa;
    sattr_none(&sa);
    sa.mode.set_it = 1;
    sa.mode.set_mode3_u.mode = 0777;
    c3_setattr(&c, list.fhs[i], list.fh_lens[i], &sa, NULL, &v);
    CHECK_INT(v.status, ==, NFS3ERR_ROFS);
    c3_access(&c, list.fhs[i], list.fh_lens[i], 0x3f, &v);
    CHECK_INT(v.access & (ACCESS3_MODIFY | ACCESS3_EXTEND), ==, 0);
  }
  CHECK_INT(versions, ==, 3);
  CHECK(one && two);
  c3_remove(&c, dir, dlen, list.names[list.n - 1], &r);
  CHECK_INT(r.status, ==, NFS3ERR_ROFS);
  c3_lookup(&c, h, hlen, "0000", &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOENT);
  cl_close(&c);
  srv_stop(&s, true);
  srv_free(&s);
}

TEST(nfs3_every_commit_of_a_large_write_is_a_version)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, true);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, ROOT, "big", fh, &len);
  size_t mb = 1u << 20, n = 9;
  uint8_t *data = malloc(n * mb);
  for (size_t i = 0; i < n * mb; i++)
    data[i] = (uint8_t)(test_rand() >> 17);
  /* 5 MiB, then a COMMIT after every further MiB, as Linux does under
   * writeback: each COMMIT is one durable, visible version. */
  for (size_t i = 0; i < n; i++) {
    c3_write(&c, fh, len, i * mb, data + i * mb, (uint32_t)mb, UNSTABLE, &r);
    CHECK_INT(r.status, ==, NFS3_OK);
    if (i >= 5) {
      c3_commit(&c, fh, len, &r);
      CHECK_INT(r.status, ==, NFS3_OK);
      CHECK_INT(r.obj.size, ==, (i + 1) * mb);
    }
  }
  cl_close(&c);
  /* The last COMMIT's version is logged in the background: a clean stop
   * waits for it, and seals nothing else (nothing was written since). */
  srv_stop(&s, true);
  CHECK_INT(writes_of(&s, "/big"), ==, 1 + 4);
  check_stored(&s, "/big", data, n * mb);
  free(data);
  srv_free(&s);
}

TEST(nfs3_committed_data_survives_a_crash)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, ROOT, "big", fh, &len);
  size_t mb = 1u << 20, n = 6;
  uint8_t *data = malloc(n * mb);
  for (size_t i = 0; i < n * mb; i++)
    data[i] = (uint8_t)(test_rand() >> 9);
  for (size_t i = 0; i < n; i++)
    c3_write(&c, fh, len, i * mb, data + i * mb, (uint32_t)mb, UNSTABLE, &r);
  c3_commit(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  cl_close(&c);
  srv_stop(&s, false); /* crash right after the COMMIT reply */
  /* The version may not be logged yet (a large file seals in the
   * background); the staged file is durable, and the next start seals it. */
  srv_start(&s, false);
  srv_stop(&s, false);
  check_stored(&s, "/big", data, n * mb);
  free(data);
  CHECK_INT(writes_of(&s, "/big"), ==, 2);
  srv_free(&s);
}

/* A COMMIT with NFSD_SEAL_BG_MIN bytes or more to seal answers once the
 * staged file is durable, and the version follows from a worker thread
 * (nfs3.h). */
static bool read_equals(struct cl *c, const uint8_t *fh, uint32_t len, const uint8_t *data,
                        size_t size)
{
  bool same = true;
  for (size_t off = 0; off < size && same; off += 1u << 20) {
    struct res r;
    size_t n = size - off < (1u << 20) ? size - off : 1u << 20;
    c3_read(c, fh, len, off, (uint32_t)n, &r);
    same = r.status == NFS3_OK && r.len == n && memcmp(r.data, data + off, n) == 0;
    free(r.data);
  }
  return same;
}

static void read_seal_stats(struct srv *s, void *st)
{
  nfsd_seal_stats(s->nfsd, st);
}

/* The server's seal counters, read on its loop thread. */
static void seal_stats(struct srv *s, struct nfsd_seal_stats *st)
{
  srv_on_loop(s, read_seal_stats, st);
}

/* Waits (up to 10 s: only a hang misses it) until a background seal has
 * ended, woken by the server's wake alone; ST: the counters then. */
static void wait_bg_seal(struct srv *s, struct nfsd_seal_stats *st)
{
  memset(st, 0, sizeof *st);
  for (int i = 0; i < 200 && st->bg_finished == 0; i++) {
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    seal_stats(s, st);
  }
}

/* A full disk under a small file's writes (staged in memory, so the WRITE
 * itself succeeds): the COMMIT says NFS3ERR_NOSPC, the written bytes stay
 * staged and readable, and the next COMMIT, once there is room, makes them
 * a version. Nothing is lost on the way. */
TEST(nfs3_commit_on_a_full_disk_keeps_the_staged_bytes)
{
  /* 2 MiB: too small for the zeros the store keeps ahead of its log and
   * packs (they would take the appends after the disk fills). */
  const char *mnt = test_small_tmpfs("2m");
  if (!mnt)
    return;
  struct srv s;
  srv_init_in(&s, mnt);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, ROOT, "s", fh, &len);
  uint8_t *data = test_random_bytes(3000);
  c3_write(&c, fh, len, 0, data, 3000, UNSTABLE, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_commit(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  char filler[4200];
  snprintf(filler, sizeof filler, "%s/filler", mnt);
  test_fill_disk(filler, 0);
  memcpy(data + 1000, test_random_bytes(2000), 2000);
  c3_write(&c, fh, len, 1000, data + 1000, 2000, UNSTABLE, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_commit(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3ERR_NOSPC);
  CHECK(read_equals(&c, fh, len, data, 3000));
  CHECK_OK(unlink(filler));
  c3_commit(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  cl_close(&c);
  srv_stop(&s, false); /* a crash: the COMMITted bytes are logged */
  check_stored(&s, "/s", data, 3000);
  free(data);
  srv_free(&s);
}

/* WRITE entries of SIZE bytes in the whole log (a removed file's too). */
struct count_writes {
  uint64_t size;
  int n;
};

static int count_write(const struct entry *e, void *arg)
{
  struct count_writes *w = arg;
  w->n += e->action == ENTRY_WRITE && e->size == w->size;
  return 0;
}

static int writes_of_size(struct srv *s, uint64_t size)
{
  struct fs *fs;
  CHECK_OK(fs_open(s->home, "t", false, &fs));
  struct count_writes w = {size, 0};
  CHECK_OK(fs_foreach_entry(fs, count_write, &w));
  fs_close(fs);
  return w.n;
}

TEST(nfs3_large_commit_seals_in_the_background)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false); /* no tick, no wake: only what the test does moves the seal on */
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, ROOT, "big", fh, &len);
  size_t size = NFSD_SEAL_BG_MIN + (3u << 19);
  uint8_t *data = test_random_bytes(size);
  write_all(&c, fh, len, 0, data, size);
  c3_commit(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.obj.size, ==, size);
  struct nfsd_seal_stats st;
  seal_stats(&s, &st);
  CHECK_INT(st.bg_started, ==, 1);
  /* Reads and a second COMMIT meanwhile: the staged bytes; the COMMIT
   * neither waits nor seals again. */
  CHECK(read_equals(&c, fh, len, data, size));
  c3_commit(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  seal_stats(&s, &st);
  CHECK_INT(st.bg_started, ==, 1);
  CHECK_INT(st.bg_finished, ==, 0);
  /* A write waits for the seal: the COMMITted bytes are one version, the
   * new ones the next -- sealed in the COMMIT, 5000 bytes being little. */
  memset(data + 100, 0xA5, 5000);
  c3_write(&c, fh, len, 100, data + 100, 5000, UNSTABLE, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  seal_stats(&s, &st);
  CHECK_INT(st.bg_finished, ==, 1);
  c3_commit(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  seal_stats(&s, &st);
  CHECK_INT(st.bg_started, ==, 1);
  CHECK(read_equals(&c, fh, len, data, size));
  cl_close(&c);
  srv_stop(&s, false); /* nothing staged is dirty: both COMMITs are versions */
  CHECK_INT(writes_of(&s, "/big"), ==, 1 + 2);
  check_stored(&s, "/big", data, size);
  free(data);
  srv_free(&s);
}

/* The one .s file (durable staged data) in S's stage directory: its name,
 * and its bytes copied to COPY. */
static void save_durable_stage(struct srv *s, char name[300], const char *copy)
{
  char dir[700], path[1100], cmd[2400];
  snprintf(dir, sizeof dir, "%s/fs/t/stage", s->home);
  DIR *dh = opendir(dir);
  CHECK(dh != NULL);
  int found = 0;
  struct dirent *de;
  while ((de = readdir(dh)))
    if (strlen(de->d_name) > 2 && strcmp(de->d_name + strlen(de->d_name) - 2, ".s") == 0) {
      snprintf(name, 300, "%s", de->d_name);
      found++;
    }
  closedir(dh);
  CHECK_INT(found, ==, 1);
  snprintf(path, sizeof path, "%s/%s", dir, name);
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, copy);
  CHECK_INT(system(cmd), ==, 0);
}

/* A crash after a version was logged and before its staged file was marked
 * sealed: the next start finds the file durable, with the bytes the head
 * has, and logs no second version. */
TEST(nfs3_recovered_staged_data_already_logged_is_not_logged_twice)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, ROOT, "r", fh, &len);
  size_t size = 300000;
  uint8_t *data = test_random_bytes(size);
  for (size_t off = 0; off < size; off += 65536) {
    size_t n = size - off < 65536 ? size - off : 65536;
    c3_write(&c, fh, len, off, data + off, (uint32_t)n, FILE_SYNC, &r);
    CHECK_INT(r.status, ==, NFS3_OK);
  }
  cl_close(&c);
  srv_stop(&s, false); /* crash: the data is staged, durable, not logged */
  char name[300], copy[600], back[1400], cmd[2400];
  snprintf(copy, sizeof copy, "%s/durable.s", test_tmpdir());
  save_durable_stage(&s, name, copy);
  srv_start(&s, false); /* recovery logs it */
  srv_stop(&s, false);
  CHECK_INT(writes_of(&s, "/r"), ==, 2);
  check_stored(&s, "/r", data, size);
  /* As if the crash had come between the log and the rename. */
  snprintf(back, sizeof back, "%s/fs/t/stage/%s", s.home, name);
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", copy, back);
  CHECK_INT(system(cmd), ==, 0);
  srv_start(&s, false);
  srv_stop(&s, false);
  CHECK_INT(writes_of(&s, "/r"), ==, 2);
  check_stored(&s, "/r", data, size);
  free(data);
  srv_free(&s);
}

/* The worker wakes the loop (as serve's uv_async does): the version is
 * logged with no tick and no client call. */
TEST(nfs3_background_seal_wakes_the_loop)
{
  struct srv s;
  srv_init(&s);
  s.wake = true;
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t fh[64];
  uint32_t len;
  size_t size = NFSD_SEAL_BG_MIN;
  uint8_t *data = test_random_bytes(size);
  mkfile(&c, ROOT, "w", fh, &len);
  write_all(&c, fh, len, 0, data, size);
  c3_commit(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  struct nfsd_seal_stats st;
  wait_bg_seal(&s, &st);
  CHECK_INT(st.bg_started, ==, 1);
  CHECK_INT(st.bg_finished, ==, 1);
  cl_close(&c);
  srv_stop(&s, false); /* a crash: what is logged is all there is */
  CHECK_INT(writes_of(&s, "/w"), ==, 2);
  check_stored(&s, "/w", data, size);
  free(data);
  srv_free(&s);
}

static void tick_far_ahead(struct srv *s, void *arg)
{
  (void)arg;
  nfsd_tick(s->nfsd, UINT64_MAX / 2);
}

static bool same_time(nfstime3 a, nfstime3 b)
{
  return a.seconds == b.seconds && a.nseconds == b.nseconds;
}

/* The version a seal makes of bytes a client wrote shows the ctime the
 * client saw of them (staged), inline or in the background, also once the
 * copy the seal kept is gone: a new ctime would make Linux drop the file's
 * cached pages after every COMMIT. A seal that carries new attributes
 * (chmod) shows a new ctime, as does the next write. */
TEST(nfs3_sealing_what_a_client_saw_keeps_its_ctime)
{
  struct srv s;
  srv_init(&s);
  s.wake = true;
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r, seen;
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, ROOT, "k", fh, &len);
  /* Inline: a small COMMIT. */
  uint8_t small[3000];
  memcpy(small, test_random_bytes(sizeof small), sizeof small);
  c3_write(&c, fh, len, 0, small, sizeof small, UNSTABLE, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_getattr(&c, fh, len, &seen);
  c3_commit(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_getattr(&c, fh, len, &r);
  CHECK(same_time(r.obj.ctime, seen.obj.ctime));
  CHECK(same_time(r.obj.mtime, seen.obj.mtime));
  CHECK_INT(r.obj.size, ==, sizeof small);
  /* Long idle: the clean copy the seal kept is dropped; the version still
   * shows that ctime. */
  srv_on_loop(&s, tick_far_ahead, NULL);
  unsigned staged;
  srv_on_loop(&s, staged_count, &staged);
  CHECK_INT(staged, ==, 0);
  c3_getattr(&c, fh, len, &r);
  CHECK(same_time(r.obj.ctime, seen.obj.ctime));
  /* The next write shows a new ctime at once. */
  c3_write(&c, fh, len, 0, small, 10, UNSTABLE, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_getattr(&c, fh, len, &r);
  CHECK(!same_time(r.obj.ctime, seen.obj.ctime));
  /* In the background: a large COMMIT, then the seal ends. */
  size_t size = NFSD_SEAL_BG_MIN;
  uint8_t *data = test_random_bytes(size);
  write_all(&c, fh, len, 0, data, size);
  c3_getattr(&c, fh, len, &seen);
  c3_commit(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  struct nfsd_seal_stats st;
  wait_bg_seal(&s, &st);
  CHECK_INT(st.bg_finished, ==, 1);
  c3_getattr(&c, fh, len, &r);
  CHECK(same_time(r.obj.ctime, seen.obj.ctime));
  CHECK(same_time(r.obj.mtime, seen.obj.mtime));
  CHECK_INT(r.obj.size, ==, size);
  /* A chmod sealed with staged bytes: a new ctime. */
  c3_write(&c, fh, len, 10, small, 100, UNSTABLE, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_getattr(&c, fh, len, &seen);
  sattr3 sa = {.mode = {.set_it = 1, .set_mode3_u.mode = 0600}};
  c3_setattr(&c, fh, len, &sa, NULL, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_getattr(&c, fh, len, &r);
  CHECK_INT(r.obj.mode & 07777, ==, 0600);
  CHECK(!same_time(r.obj.ctime, seen.obj.ctime));
  cl_close(&c);
  srv_stop(&s, false); /* a crash: the create and the three seals were versions */
  CHECK_INT(writes_of(&s, "/k"), ==, 4);
  free(data);
  srv_free(&s);
}

/* What else meets a seal under way: SETATTR (its attributes are a version
 * after it), the tick (logs it when done), a REMOVE and a RENAME over the
 * file (the COMMITted version is logged first, so it stays in the history
 * even if we crash right after), the cap on staged files (the file being
 * sealed is the one evicted), and BASEFS_NO_BG_SEAL. */
TEST(nfs3_background_seal_meets_setattr_remove_rename_and_eviction)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, true);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t fh[64], fh2[64];
  uint32_t len, len2;
  size_t size = NFSD_SEAL_BG_MIN;
  uint8_t *data = test_random_bytes(size);
  mkfile(&c, ROOT, "a", fh, &len);
  write_all(&c, fh, len, 0, data, size);
  c3_commit(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  sattr3 sa = {0};
  sa.mode.set_it = 1;
  sa.mode.set_mode3_u.mode = 0600;
  c3_setattr(&c, fh, len, &sa, NULL, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_getattr(&c, fh, len, &r);
  CHECK_INT(r.obj.mode, ==, 0600);
  CHECK_INT(r.obj.size, ==, size);
  /* The tick logs a finished seal. */
  mkfile(&c, ROOT, "b", fh2, &len2);
  write_all(&c, fh2, len2, 0, data, size);
  c3_commit(&c, fh2, len2, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  struct nfsd_seal_stats st = {0};
  for (int i = 0; i < 100 && st.bg_finished < 2; i++) { /* 10 s: only a hang misses it */
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    seal_stats(&s, &st);
  }
  CHECK_INT(st.bg_finished, ==, 2);
  /* Evicted while its seal runs: 256 more staged files. No tick from here
   * on, so that only the eviction can finish that seal. */
  cl_close(&c);
  srv_stop(&s, true);
  srv_start(&s, false);
  cl_open(&c, s.port);
  mkfile(&c, ROOT, "e", fh2, &len2);
  write_all(&c, fh2, len2, 0, data, size);
  c3_commit(&c, fh2, len2, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  unsigned staged = 0;
  srv_on_loop(&s, staged_count, &staged);
  CHECK_INT(staged, >=, 1);
  for (int i = 0; i < NFSD_STAGED_MAX; i++) {
    char name[32];
    uint8_t sfh[64];
    uint32_t slen;
    snprintf(name, sizeof name, "s%d", i);
    mkfile(&c, ROOT, name, sfh, &slen);
    c3_write(&c, sfh, slen, 0, name, (uint32_t)strlen(name), UNSTABLE, &r);
    CHECK_INT(r.status, ==, NFS3_OK);
  }
  srv_on_loop(&s, staged_count, &staged);
  CHECK_INT(staged, <=, NFSD_STAGED_MAX);
  cl_close(&c);
  srv_stop(&s, true);
  CHECK_INT(writes_of(&s, "/a"), ==, 2);
  CHECK_INT(writes_of(&s, "/b"), ==, 2);
  CHECK_INT(writes_of(&s, "/e"), ==, 2);
  check_stored(&s, "/b", data, size);
  check_stored(&s, "/e", data, size);
  check_stored(&s, "/s7", "s7", 2);
  /* REMOVE, and RENAME over it, then a crash: each version is logged. */
  srv_start(&s, false);
  cl_open(&c, s.port);
  size_t size2 = size + 4096, size3 = size + 8192;
  uint8_t *data2 = test_random_bytes(size3);
  mkfile(&c, ROOT, "c", fh, &len);
  write_all(&c, fh, len, 0, data2, size2);
  c3_commit(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  c3_remove(&c, ROOT, "c", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  cl_close(&c);
  srv_stop(&s, false);
  srv_start(&s, false);
  cl_open(&c, s.port);
  mkfile(&c, ROOT, "d", fh, &len);
  write_all(&c, fh, len, 0, data2, size3);
  c3_commit(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  mkfile(&c, ROOT, "d2", fh2, &len2);
  c3_rename(&c, ROOT, "d2", ROOT, "d", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  seal_stats(&s, &st);
  CHECK_INT(st.bg_started, ==, 1);
  cl_close(&c);
  srv_stop(&s, false);
  srv_start(&s, false); /* recovery: nothing staged is left to seal */
  srv_stop(&s, false);
  CHECK_INT(writes_of_size(&s, size2), ==, 1);
  CHECK_INT(writes_of_size(&s, size3), ==, 1);
  /* Turned off: the COMMIT seals at once. */
  setenv("BASEFS_NO_BG_SEAL", "1", 1);
  srv_start(&s, false);
  cl_open(&c, s.port);
  mkfile(&c, ROOT, "f", fh, &len);
  write_all(&c, fh, len, 0, data, size);
  c3_commit(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  seal_stats(&s, &st);
  CHECK_INT(st.bg_started, ==, 0);
  cl_close(&c);
  srv_stop(&s, false);
  CHECK_INT(writes_of(&s, "/f"), ==, 2);
  free(data);
  free(data2);
  srv_free(&s);
}

TEST(nfs3_exports_read_only_and_squash)
{
  struct srv s;
  srv_init(&s);
  s.exports = "127.0.0.1/32 ro\n";
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  c3_access(&c, ROOT, 0x3f, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.access, ==, ACCESS3_READ | ACCESS3_LOOKUP);
  c3_mkdir(&c, ROOT, "d", &r);
  CHECK_INT(r.status, ==, NFS3ERR_ROFS);
  c3_create(&c, ROOT, "f", GUARDED, NULL, NULL, &r);
  CHECK_INT(r.status, ==, NFS3ERR_ROFS);
  c3_lookup(&c, ROOT, ".basefs", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  cl_close(&c);
  srv_stop(&s, true);

  /* root_squash: root is nobody and may not create in root's 0755 "/". */
  s.exports = "127.0.0.1/32 rw,root_squash\n";
  srv_start(&s, false);
  cl_open(&c, s.port);
  c3_mkdir(&c, ROOT, "d", &r);
  CHECK_INT(r.status, ==, NFS3ERR_ACCES);
  cl_close(&c);
  srv_stop(&s, true);

  /* all_squash with an anonuid: what anyone creates belongs to it. */
  s.exports = "127.0.0.1/32 rw,no_root_squash\n";
  srv_start(&s, false);
  cl_open(&c, s.port);
  c3_mkdir(&c, ROOT, "pub", &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  uint8_t pub[64];
  uint32_t plen = r.fh_len;
  memcpy(pub, r.fh, plen);
  sattr3 sa;
  sattr_none(&sa);
  sa.mode.set_it = 1;
  sa.mode.set_mode3_u.mode = 0777;
  c3_setattr(&c, pub, plen, &sa, NULL, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  cl_close(&c);
  srv_stop(&s, true);
  s.exports = "127.0.0.1/32 rw,all_squash,anonuid=1234,anongid=4321\n";
  srv_start(&s, false);
  struct cl u;
  cl_open_as(&u, s.port, 1000, 1000, 0, NULL);
  c3_create(&u, pub, plen, "mine", GUARDED, NULL, NULL, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  CHECK_INT(r.obj.uid, ==, 1234);
  CHECK_INT(r.obj.gid, ==, 4321);
  cl_close(&u);
  srv_stop(&s, true);
  srv_free(&s);
}
