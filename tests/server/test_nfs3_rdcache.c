/*
 * The READDIR/READDIRPLUS reply cache (server/nfs3.h): calls straight into
 * the dispatcher (no sockets). A repeated listing of an unchanged
 * directory is served from the cache, byte for byte what encoding gives;
 * after any change (NFS writes, staging, seals, entries submitted to the
 * filesystem behind the server's back) the next listing shows it. The
 * random test compares every cached answer with the same call encoded
 * afresh (cache bypassed).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>

#include "server/nfs3.h"
#include "server/rpc.h"
#include "store/error.h"
#include "store/fs.h"
#include "store/key.h"
#include "tests/test.h"
#include "xdr/nfs3.h"
#include "xdr/oncrpc.h"

struct env {
  char home[512];
  struct key *key;
  struct fs *fs;
  struct nfsd *d;
  struct rpcsrv *rpc;
  struct rpcsrv_peer peer;
  uint8_t root[64];
  uint32_t root_len;
  uint32_t xid;
};

static void env_open(struct env *e)
{
  memset(e, 0, sizeof *e);
  snprintf(e->home, sizeof e->home, "%s/home", test_tmpdir());
  CHECK_OK(key_generate(&e->key));
  CHECK_OK(fs_create(e->home, "t", e->key, NULL, 0, &e->fs));
  CHECK_OK(nfsd_new(e->fs, e->key, NULL, NULL, &e->d));
  CHECK_OK(rpcsrv_new(&e->rpc));
  CHECK_OK(nfsd_register(e->rpc, e->d));
  CHECK_OK(nfsd_root_fh(e->d, e->root, &e->root_len));
  e->peer.stream = true;
  struct sockaddr_in *sin = (struct sockaddr_in *)&e->peer.addr;
  sin->sin_family = AF_INET;
  sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  e->peer.addrlen = sizeof *sin;
  e->xid = 1;
}

static void env_close(struct env *e)
{
  CHECK(nfsd_seal_all(e->d) >= 0);
  nfsd_free(e->d);
  rpcsrv_free(e->rpc);
  CHECK_OK(fs_close(e->fs));
  key_free(e->key);
}

struct call {
  struct xdr_enc args;
  uint32_t proc;
};

static void call_begin(struct env *e, struct call *c, uint32_t proc, uint32_t xid)
{
  static const struct oncrpc_auth_sys root = {.uid = 0, .gid = 0};
  c->proc = proc;
  xdr_enc_init(&c->args, 1 << 20);
  oncrpc_enc_call(&c->args, xid ? xid : e->xid++, NFS3_PROGRAM, 3, proc, &root);
}

/* Sends the call; OUT receives the whole reply; returns the nfsstat3
 * (DEC is left after it). */
static uint32_t call_end(struct env *e, struct call *c, struct xdr_enc *out, struct xdr_dec *dec)
{
  CHECK_OK(xdr_enc_error(&c->args));
  xdr_enc_init(out, RPCSRV_REPLY_MAX + 1024);
  CHECK_INT(rpcsrv_dispatch(e->rpc, c->args.buf, c->args.len, &e->peer, out), ==, 1);
  xdr_enc_free(&c->args);
  xdr_dec_init(dec, out->buf, out->len);
  struct oncrpc_reply rep;
  CHECK_OK(oncrpc_dec_reply(dec, &rep));
  CHECK_INT(rep.accept_stat, ==, ONCRPC_SUCCESS);
  uint32_t st;
  CHECK_OK(xdr_dec_u32(dec, &st));
  return st;
}

/* The same without keeping the reply. */
static uint32_t call_done(struct env *e, struct call *c)
{
  struct xdr_enc out;
  struct xdr_dec dec;
  uint32_t st = call_end(e, c, &out, &dec);
  xdr_enc_free(&out);
  return st;
}

/* sattr3 with an optional mode and size. */
static void enc_sattr(struct xdr_enc *a, int mode, int64_t size)
{
  xdr_enc_bool(a, mode >= 0);
  if (mode >= 0)
    xdr_enc_u32(a, (uint32_t)mode);
  xdr_enc_bool(a, false); /* uid */
  xdr_enc_bool(a, false); /* gid */
  xdr_enc_bool(a, size >= 0);
  if (size >= 0)
    xdr_enc_u64(a, (uint64_t)size);
  xdr_enc_u32(a, 0); /* atime: don't change */
  xdr_enc_u32(a, 0); /* mtime */
}

/* LOOKUP: the handle of NAME in DIR; 0 or the nfsstat3. */
static uint32_t lookup(struct env *e, const uint8_t *dir, uint32_t dlen, const char *name,
                       uint8_t fh[64], uint32_t *len)
{
  struct call c;
  call_begin(e, &c, NFS3_PROC_LOOKUP, 0);
  xdr_enc_bytes(&c.args, dir, dlen);
  xdr_enc_str(&c.args, name);
  struct xdr_enc out;
  struct xdr_dec dec;
  uint32_t st = call_end(e, &c, &out, &dec);
  if (st == 0)
    CHECK_OK(xdr_dec_bytes_copy(&dec, 64, fh, len));
  xdr_enc_free(&out);
  return st;
}

static uint32_t create(struct env *e, const uint8_t *dir, uint32_t dlen, const char *name)
{
  struct call c;
  call_begin(e, &c, NFS3_PROC_CREATE, 0);
  xdr_enc_bytes(&c.args, dir, dlen);
  xdr_enc_str(&c.args, name);
  xdr_enc_u32(&c.args, 0); /* UNCHECKED */
  enc_sattr(&c.args, 0644, -1);
  return call_done(e, &c);
}

static uint32_t mkdir_(struct env *e, const uint8_t *dir, uint32_t dlen, const char *name)
{
  struct call c;
  call_begin(e, &c, NFS3_PROC_MKDIR, 0);
  xdr_enc_bytes(&c.args, dir, dlen);
  xdr_enc_str(&c.args, name);
  enc_sattr(&c.args, 0755, -1);
  return call_done(e, &c);
}

static uint32_t remove_(struct env *e, const uint8_t *dir, uint32_t dlen, const char *name)
{
  struct call c;
  call_begin(e, &c, NFS3_PROC_REMOVE, 0);
  xdr_enc_bytes(&c.args, dir, dlen);
  xdr_enc_str(&c.args, name);
  return call_done(e, &c);
}

static uint32_t rename_(struct env *e, const uint8_t *dir, uint32_t dlen, const char *from,
                        const char *to)
{
  struct call c;
  call_begin(e, &c, NFS3_PROC_RENAME, 0);
  xdr_enc_bytes(&c.args, dir, dlen);
  xdr_enc_str(&c.args, from);
  xdr_enc_bytes(&c.args, dir, dlen);
  xdr_enc_str(&c.args, to);
  return call_done(e, &c);
}

static uint32_t setattr(struct env *e, const uint8_t *fh, uint32_t len, int mode, int64_t size)
{
  struct call c;
  call_begin(e, &c, NFS3_PROC_SETATTR, 0);
  xdr_enc_bytes(&c.args, fh, len);
  enc_sattr(&c.args, mode, size);
  xdr_enc_bool(&c.args, false); /* no guard */
  return call_done(e, &c);
}

static uint32_t write_(struct env *e, const uint8_t *fh, uint32_t len, uint64_t off, uint32_t n,
                       bool stable)
{
  uint8_t buf[4096];
  for (uint32_t i = 0; i < n && i < sizeof buf; i++)
    buf[i] = (uint8_t)test_rand();
  if (n > sizeof buf)
    n = sizeof buf;
  struct call c;
  call_begin(e, &c, NFS3_PROC_WRITE, 0);
  xdr_enc_bytes(&c.args, fh, len);
  xdr_enc_u64(&c.args, off);
  xdr_enc_u32(&c.args, n);
  xdr_enc_u32(&c.args, stable ? 2 : 0);
  xdr_enc_bytes(&c.args, buf, n);
  return call_done(e, &c);
}

static uint32_t commit(struct env *e, const uint8_t *fh, uint32_t len)
{
  struct call c;
  call_begin(e, &c, NFS3_PROC_COMMIT, 0);
  xdr_enc_bytes(&c.args, fh, len);
  xdr_enc_u64(&c.args, 0);
  xdr_enc_u32(&c.args, 0);
  return call_done(e, &c);
}

/* READDIRPLUS (PLUS) or READDIR of DIR with a fixed xid: the whole reply
 * (malloc'd) in *OUT. */
static uint32_t listing(struct env *e, bool plus, const uint8_t *dir, uint32_t dlen,
                        uint64_t cookie, uint32_t dircount, uint32_t maxcount, uint8_t **out,
                        size_t *out_len)
{
  struct call c;
  call_begin(e, &c, plus ? NFS3_PROC_READDIRPLUS : NFS3_PROC_READDIR, 77);
  xdr_enc_bytes(&c.args, dir, dlen);
  xdr_enc_u64(&c.args, cookie);
  static const uint8_t verf[8] = {0};
  xdr_enc_fixed(&c.args, verf, sizeof verf);
  if (plus)
    xdr_enc_u32(&c.args, dircount);
  xdr_enc_u32(&c.args, maxcount);
  struct xdr_enc res;
  struct xdr_dec dec;
  uint32_t st = call_end(e, &c, &res, &dec);
  *out = xdr_enc_take(&res, out_len);
  xdr_enc_free(&res);
  return st;
}

/* The same listing through the cache and bypassing it: equal bytes.
 * Returns whether the cached call was a hit. */
static bool listing_checked(struct env *e, bool plus, const uint8_t *dir, uint32_t dlen,
                            uint64_t cookie, uint32_t dircount, uint32_t maxcount)
{
  struct nfsd_rdc_stats s0, s1;
  nfsd_rdc_stats(e->d, &s0);
  uint8_t *a, *b;
  size_t alen, blen;
  uint32_t sa = listing(e, plus, dir, dlen, cookie, dircount, maxcount, &a, &alen);
  nfsd_rdc_stats(e->d, &s1);
  nfsd_rdc_enable(e->d, false);
  uint32_t sb = listing(e, plus, dir, dlen, cookie, dircount, maxcount, &b, &blen);
  nfsd_rdc_enable(e->d, true);
  CHECK_INT(sa, ==, sb);
  CHECK_INT(alen, ==, blen);
  CHECK_MSG(memcmp(a, b, alen) == 0, "cached %s reply differs from a fresh one",
            plus ? "READDIRPLUS" : "READDIR");
  free(a);
  free(b);
  return s1.hits > s0.hits;
}

static uint64_t hits(struct env *e)
{
  struct nfsd_rdc_stats s;
  nfsd_rdc_stats(e->d, &s);
  return s.hits;
}

TEST(rdcache_repeat_is_served_from_cache_and_identical)
{
  struct env e;
  env_open(&e);
  CHECK_INT(mkdir_(&e, e.root, e.root_len, "d"), ==, 0);
  uint8_t d[64];
  uint32_t dl;
  CHECK_INT(lookup(&e, e.root, e.root_len, "d", d, &dl), ==, 0);
  char name[32];
  for (int i = 0; i < 30; i++) {
    snprintf(name, sizeof name, "f%02d", i);
    CHECK_INT(create(&e, d, dl, name), ==, 0);
  }
  uint8_t *a, *b;
  size_t alen, blen;
  CHECK_INT(listing(&e, true, d, dl, 0, 65536, 65536, &a, &alen), ==, 0);
  uint64_t h0 = hits(&e);
  CHECK_INT(listing(&e, true, d, dl, 0, 65536, 65536, &b, &blen), ==, 0);
  CHECK_INT(hits(&e), ==, h0 + 1);
  CHECK_INT(alen, ==, blen);
  CHECK(memcmp(a, b, alen) == 0);
  free(b);
  /* Another budget is another reply: no hit. */
  CHECK_INT(listing(&e, true, d, dl, 0, 65536, 4096, &b, &blen), ==, 0);
  CHECK_INT(hits(&e), ==, h0 + 1);
  CHECK(blen < alen);
  free(b);
  /* READDIR is cached apart from READDIRPLUS. */
  CHECK(!listing_checked(&e, false, d, dl, 0, 0, 65536));
  CHECK(listing_checked(&e, false, d, dl, 0, 0, 65536));
  /* The permission check still runs on a hit: nobody may not list a 0700
   * directory even though root's listing is cached. */
  CHECK_INT(setattr(&e, d, dl, 0700, -1), ==, 0);
  free(a);
  CHECK_INT(listing(&e, true, d, dl, 0, 65536, 65536, &a, &alen), ==, 0);
  free(a);
  {
    static const struct oncrpc_auth_sys nobody = {.uid = 1000, .gid = 1000};
    struct call c;
    c.proc = NFS3_PROC_READDIRPLUS;
    xdr_enc_init(&c.args, 4096);
    oncrpc_enc_call(&c.args, e.xid++, NFS3_PROGRAM, 3, NFS3_PROC_READDIRPLUS, &nobody);
    xdr_enc_bytes(&c.args, d, dl);
    xdr_enc_u64(&c.args, 0);
    static const uint8_t verf[8] = {0};
    xdr_enc_fixed(&c.args, verf, sizeof verf);
    xdr_enc_u32(&c.args, 65536);
    xdr_enc_u32(&c.args, 65536);
    CHECK_INT(call_done(&e, &c), ==, NFS3_ERR_ACCES);
  }
  struct nfsd_rdc_stats s;
  nfsd_rdc_stats(e.d, &s);
  CHECK(s.entries > 0 && s.bytes > 0);
  env_close(&e);
}

/* Each kind of change, then the next listing: not the old bytes, and what
 * a fresh encoding gives. */
TEST(rdcache_every_change_shows)
{
  struct env e;
  env_open(&e);
  CHECK_INT(mkdir_(&e, e.root, e.root_len, "d"), ==, 0);
  uint8_t d[64], f[64];
  uint32_t dl, fl;
  CHECK_INT(lookup(&e, e.root, e.root_len, "d", d, &dl), ==, 0);
  CHECK_INT(create(&e, d, dl, "a"), ==, 0);
  CHECK_INT(lookup(&e, d, dl, "a", f, &fl), ==, 0);
  uint8_t *prev;
  size_t prev_len;
  CHECK_INT(listing(&e, true, d, dl, 0, 65536, 65536, &prev, &prev_len), ==, 0);
  const char *reason;
  for (int step = 0; step < 11; step++) {
    switch (step) {
    case 0: CHECK_INT(create(&e, d, dl, "b"), ==, 0); break;
    case 1: CHECK_INT(rename_(&e, d, dl, "b", "c"), ==, 0); break;
    case 2: CHECK_INT(remove_(&e, d, dl, "c"), ==, 0); break;
    case 3: CHECK_INT(setattr(&e, f, fl, 0600, -1), ==, 0); break;
    case 4: CHECK_INT(write_(&e, f, fl, 0, 100, false), ==, 0); break; /* staged: size */
    case 5: CHECK_INT(write_(&e, f, fl, 100, 50, false), ==, 0); break;
    case 6: CHECK_INT(commit(&e, f, fl), ==, 0); break; /* sealed: a version, same attributes */
    case 7: CHECK_INT(setattr(&e, f, fl, -1, 10), ==, 0); break; /* truncate */
    case 8: CHECK_INT(write_(&e, f, fl, 0, 20, false), ==, 0); break;
    case 9: CHECK_INT(nfsd_tick(e.d, UINT64_MAX / 2), ==, 1); break; /* the idle seal */
    case 10: /* behind the server's back, as the control socket or a peer would */
      CHECK_OK(fs_put(e.fs, e.key, "/d/z", "zz", 2, &reason));
      break;
    }
    uint8_t *cur;
    size_t cur_len;
    uint64_t h = hits(&e);
    CHECK_INT(listing(&e, true, d, dl, 0, 65536, 65536, &cur, &cur_len), ==, 0);
    CHECK_MSG(hits(&e) == h, "step %d: served from the cache after a change", step);
    /* A seal of what the listing showed shows the same (its ctime is kept:
     * README, "What a client sees"); every other step shows a change. */
    bool same = cur_len == prev_len && memcmp(cur, prev, cur_len) == 0;
    if (step == 6 || step == 9)
      CHECK_MSG(same, "step %d: a seal changed what was shown", step);
    else
      CHECK_MSG(!same, "step %d: no change shown", step);
    free(prev);
    prev = cur;
    prev_len = cur_len;
    /* And the repeat is a hit, identical to a fresh encoding. */
    CHECK_MSG(listing_checked(&e, true, d, dl, 0, 65536, 65536), "step %d: repeat missed", step);
  }
  free(prev);
  env_close(&e);
}

/* Random changes interleaved with listings of a few shapes; every listing
 * through the cache equals the same call encoded afresh. */
TEST(rdcache_random_changes_match_fresh_encoding)
{
  struct env e;
  env_open(&e);
  uint8_t dirs[2][64];
  uint32_t dlen[2];
  CHECK_INT(mkdir_(&e, e.root, e.root_len, "d"), ==, 0);
  CHECK_INT(lookup(&e, e.root, e.root_len, "d", dirs[0], &dlen[0]), ==, 0);
  memcpy(dirs[1], e.root, e.root_len);
  dlen[1] = e.root_len;
  for (int di = 0; di < 2; di++)
    for (int i = 0; i < 12; i += 2) {
      char name[16];
      snprintf(name, sizeof name, "n%d", i);
      CHECK_INT(create(&e, dirs[di], dlen[di], name), ==, 0);
    }
  static const uint32_t maxes[] = {65536, 1024, 600};
  int listings = 0, hit = 0;
  const char *reason;
  for (int step = 0; step < 600; step++) {
    int di = (int)(test_rand() % 2);
    const uint8_t *dir = dirs[di];
    uint32_t dl = dlen[di];
    char name[16], name2[16];
    snprintf(name, sizeof name, "n%d", (int)(test_rand() % 12));
    snprintf(name2, sizeof name2, "n%d", (int)(test_rand() % 12));
    uint8_t fh[64];
    uint32_t fl = 0;
    bool have = lookup(&e, dir, dl, name, fh, &fl) == 0;
    unsigned k = (unsigned)(test_rand() % 24);
    if (test_rand() % 4 != 0) {
      /* A listing: from the start or resumed after a cookie from a
       * previous one; repeats are likely (few shapes). */
      bool plus = k < 18;
      uint32_t mc = maxes[test_rand() % 3];
      uint64_t cookie = test_rand() % 3 == 0 ? 2 : 0;
      if (listing_checked(&e, plus, dir, dl, cookie, mc, mc))
        hit++;
      listings++;
      continue;
    }
    switch (k % 13 + 11) {
    case 11: create(&e, dir, dl, name); break;
    case 12: remove_(&e, dir, dl, name); break;
    case 13: rename_(&e, dir, dl, name, name2); break;
    case 14: mkdir_(&e, dir, dl, name); break;
    case 15:
      if (have)
        setattr(&e, fh, fl, (int)(0600 | (test_rand() % 0100)), -1);
      break;
    case 16:
      if (have)
        setattr(&e, fh, fl, -1, (int64_t)(test_rand() % 5000));
      break;
    case 17:
    case 18:
      if (have)
        write_(&e, fh, fl, test_rand() % 8192, (uint32_t)(1 + test_rand() % 4096), k == 18);
      break;
    case 19:
      if (have)
        commit(&e, fh, fl);
      break;
    case 20: nfsd_tick(e.d, UINT64_MAX / 2); break;
    case 21: nfsd_flush(e.d); break;
    case 22: {
      char path[40];
      snprintf(path, sizeof path, "%s/%s", di == 0 ? "/d" : "", name);
      char data[16];
      int n = snprintf(data, sizeof data, "%u", (unsigned)test_rand());
      fs_put(e.fs, e.key, path, data, (size_t)n, &reason);
      break;
    }
    default: {
      char path[40];
      snprintf(path, sizeof path, "%s/%s", di == 0 ? "/d" : "", name);
      fs_chmod(e.fs, e.key, path, (uint32_t)(0640 | (test_rand() % 8)), &reason);
      break;
    }
    }
  }
  CHECK(listings > 100);
  CHECK_MSG(hit > 10, "only %d of %d listings served from the cache", hit, listings);
  env_close(&e);
}
