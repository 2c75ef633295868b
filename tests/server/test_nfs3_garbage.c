/*
 * Structured random calls straight into the dispatcher (no sockets): every
 * NFSv3 procedure with arguments mixed from valid handles and names, bad
 * handles, odd names, random attributes and data, sometimes cut short.
 * Every call must get a well-formed reply, nothing may crash or leak (run
 * it under ASan), and the filesystem must reopen consistent afterwards.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>

#include "server/nfs3.h"
#include "server/rpc.h"
#include "store/error.h"
#include "store/fs.h"
#include "store/key.h"
#include "store/view.h"
#include "tests/test.h"
#include "xdr/nfs3.h"
#include "xdr/oncrpc.h"

#define POOL 64

struct pool {
  uint8_t fh[POOL][64];
  uint32_t len[POOL];
  int n;
};

static void pool_add(struct pool *p, const uint8_t *fh, uint32_t len)
{
  if (len == 0 || len > 64)
    return;
  int i = p->n < POOL ? p->n++ : (int)(test_rand() % POOL);
  memcpy(p->fh[i], fh, len);
  p->len[i] = len;
}

static void enc_fh(struct xdr_enc *e, struct pool *p)
{
  uint64_t k = test_rand() % 10;
  if (k < 7) {
    int i = (int)(test_rand() % (uint64_t)p->n);
    xdr_enc_bytes(e, p->fh[i], p->len[i]);
  } else if (k < 9) {
    /* A pool handle with one byte flipped. */
    int i = (int)(test_rand() % (uint64_t)p->n);
    uint8_t fh[64];
    memcpy(fh, p->fh[i], p->len[i]);
    fh[test_rand() % p->len[i]] ^= (uint8_t)(1 + test_rand() % 255);
    xdr_enc_bytes(e, fh, p->len[i]);
  } else {
    uint8_t fh[64];
    uint32_t len = (uint32_t)(test_rand() % 65);
    for (uint32_t i = 0; i < len; i++)
      fh[i] = (uint8_t)test_rand();
    xdr_enc_bytes(e, fh, len);
  }
}

static void enc_name(struct xdr_enc *e)
{
  static const char *const names[] = {"a", "b", "c", "d", "e", ".", "..", ".basefs", "",
                                      "x/y", "nul\0z", "history", "conflicts"};
  uint64_t k = test_rand() % 20;
  if (k >= 16) {
    char buf[8];
    int n = snprintf(buf, sizeof buf, "n%d", (int)(test_rand() % 40));
    xdr_enc_bytes(e, buf, (uint32_t)n);
  } else if (k < 13) {
    const char *n = names[k];
    xdr_enc_bytes(e, n, k == 10 ? 5 : (uint32_t)strlen(n));
  } else {
    char buf[300];
    uint32_t len = (uint32_t)(k == 13 ? 256 : test_rand() % 300);
    for (uint32_t i = 0; i < len; i++)
      buf[i] = (char)('a' + test_rand() % 3);
    xdr_enc_bytes(e, buf, len);
  }
}

static void enc_sattr(struct xdr_enc *e)
{
  for (int i = 0; i < 4; i++) {
    bool set = test_rand() % 3 == 0;
    xdr_enc_u32(e, set);
    if (!set)
      continue;
    if (i == 0)
      xdr_enc_u32(e, (uint32_t)(test_rand() % 010000));
    else if (i < 3)
      xdr_enc_u32(e, (uint32_t)(test_rand() % 3) * 1000);
    else
      xdr_enc_u64(e, test_rand() % 5000);
  }
  for (int i = 0; i < 2; i++) {
    uint32_t how = (uint32_t)(test_rand() % 3);
    xdr_enc_u32(e, how);
    if (how == 2) {
      xdr_enc_u32(e, (uint32_t)test_rand());
      xdr_enc_u32(e, (uint32_t)(test_rand() % 1000000000u));
    }
  }
}

static void enc_dirop(struct xdr_enc *e, struct pool *p)
{
  enc_fh(e, p);
  enc_name(e);
}

static void enc_args(struct xdr_enc *e, uint32_t proc, struct pool *p)
{
  static uint8_t data[8192];
  switch (proc) {
  case NFS3_PROC_GETATTR:
  case NFS3_PROC_READLINK:
  case NFS3_PROC_FSSTAT:
  case NFS3_PROC_FSINFO:
  case NFS3_PROC_PATHCONF:
    enc_fh(e, p);
    break;
  case NFS3_PROC_SETATTR:
    enc_fh(e, p);
    enc_sattr(e);
    xdr_enc_u32(e, test_rand() % 4 == 0);
    if (e->len >= 4 && e->buf[e->len - 1] == 1) {
      xdr_enc_u32(e, (uint32_t)test_rand());
      xdr_enc_u32(e, 0);
    }
    break;
  case NFS3_PROC_LOOKUP:
  case NFS3_PROC_REMOVE:
  case NFS3_PROC_RMDIR:
    enc_dirop(e, p);
    break;
  case NFS3_PROC_ACCESS:
    enc_fh(e, p);
    xdr_enc_u32(e, (uint32_t)(test_rand() % 64));
    break;
  case NFS3_PROC_READ:
  case NFS3_PROC_COMMIT:
    enc_fh(e, p);
    xdr_enc_u64(e, test_rand() % 3 ? test_rand() % 10000 : test_rand());
    xdr_enc_u32(e, (uint32_t)(test_rand() % 3 ? test_rand() % 10000 : test_rand()));
    break;
  case NFS3_PROC_WRITE: {
    enc_fh(e, p);
    xdr_enc_u64(e, test_rand() % 20000);
    uint32_t len = (uint32_t)(test_rand() % sizeof data);
    for (uint32_t i = 0; i < len; i++)
      data[i] = (uint8_t)test_rand();
    xdr_enc_u32(e, len);
    xdr_enc_u32(e, (uint32_t)(test_rand() % 3));
    xdr_enc_bytes(e, data, len);
    break;
  }
  case NFS3_PROC_CREATE: {
    enc_dirop(e, p);
    uint32_t how = (uint32_t)(test_rand() % 3);
    xdr_enc_u32(e, how);
    if (how == 2) {
      uint8_t verf[8] = {(uint8_t)(test_rand() % 2)};
      xdr_enc_fixed(e, verf, 8);
    } else {
      enc_sattr(e);
    }
    break;
  }
  case NFS3_PROC_MKDIR:
    enc_dirop(e, p);
    enc_sattr(e);
    break;
  case NFS3_PROC_SYMLINK:
    enc_dirop(e, p);
    enc_sattr(e);
    enc_name(e);
    break;
  case NFS3_PROC_MKNOD: {
    enc_dirop(e, p);
    uint32_t type = (uint32_t)(1 + test_rand() % 7);
    xdr_enc_u32(e, type);
    if (type == 3 || type == 4) {
      enc_sattr(e);
      xdr_enc_u32(e, 1);
      xdr_enc_u32(e, 2);
    } else if (type == 6 || type == 7) {
      enc_sattr(e);
    }
    break;
  }
  case NFS3_PROC_RENAME:
    enc_dirop(e, p);
    enc_dirop(e, p);
    break;
  case NFS3_PROC_LINK:
    enc_fh(e, p);
    enc_dirop(e, p);
    break;
  case NFS3_PROC_READDIR:
  case NFS3_PROC_READDIRPLUS: {
    enc_fh(e, p);
    xdr_enc_u64(e, test_rand() % 3 ? 0 : test_rand());
    uint8_t verf[8] = {0};
    if (test_rand() % 5 == 0)
      verf[3] = 1;
    xdr_enc_fixed(e, verf, 8);
    xdr_enc_u32(e, (uint32_t)(test_rand() % 9000));
    if (proc == NFS3_PROC_READDIRPLUS)
      xdr_enc_u32(e, (uint32_t)(test_rand() % 70000));
    break;
  }
  default:
    break;
  }
}

/* Harvests the new handle of a successful LOOKUP/CREATE/MKDIR/SYMLINK. */
static void harvest(uint32_t proc, struct xdr_dec *d, struct pool *p)
{
  uint32_t status, follows = 1, len;
  if (proc != NFS3_PROC_LOOKUP && proc != NFS3_PROC_CREATE && proc != NFS3_PROC_MKDIR &&
      proc != NFS3_PROC_SYMLINK)
    return;
  if (xdr_dec_u32(d, &status) < 0 || status != 0)
    return;
  if (proc != NFS3_PROC_LOOKUP && xdr_dec_u32(d, &follows) < 0)
    return;
  if (follows != 1 || xdr_dec_u32(d, &len) < 0 || len > 64 || xdr_dec_left(d) < len)
    return;
  pool_add(p, d->buf + d->pos, len);
}

TEST(nfs3_structured_garbage_to_every_procedure)
{
  char home[512];
  snprintf(home, sizeof home, "%s/home", test_tmpdir());
  struct key *key;
  struct fs *fs;
  CHECK_OK(key_generate(&key));
  CHECK_OK(fs_create(home, "t", key, NULL, 0, &fs));
  struct nfsd *d;
  CHECK_OK(nfsd_new(fs, key, NULL, NULL, &d));
  struct rpcsrv *rpc;
  CHECK_OK(rpcsrv_new(&rpc));
  CHECK_OK(nfsd_register(rpc, d));
  struct pool pool = {.n = 1};
  CHECK_OK(nfsd_root_fh(d, pool.fh[0], &pool.len[0]));
  struct rpcsrv_peer peer = {.stream = true};
  struct sockaddr_in *sin = (struct sockaddr_in *)&peer.addr;
  sin->sin_family = AF_INET;
  sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  peer.addrlen = sizeof *sin;
  struct oncrpc_auth_sys cred = {.uid = 0, .gid = 0};
  struct oncrpc_auth_sys user = {.uid = 1000, .gid = 1000};
  time_t start = time(NULL);
  int calls = 0, answered[NFS3_NPROC] = {0};
  for (uint32_t xid = 1; xid <= 6000 && time(NULL) - start < 8; xid++) {
    uint32_t proc = (uint32_t)(test_rand() % NFS3_NPROC);
    struct xdr_enc call;
    xdr_enc_init(&call, 1 << 20);
    oncrpc_enc_call(&call, xid, NFS3_PROGRAM, 3, proc, test_rand() % 4 ? &cred : &user);
    size_t hdr = call.len;
    enc_args(&call, proc, &pool);
    CHECK_OK(xdr_enc_error(&call));
    size_t len = call.len;
    if (test_rand() % 8 == 0 && len > hdr)
      len = hdr + (size_t)(test_rand() % (len - hdr)); /* cut short */
    struct xdr_enc out;
    xdr_enc_init(&out, RPCSRV_REPLY_MAX + 1024);
    int r = rpcsrv_dispatch(rpc, call.buf, len, &peer, &out);
    CHECK_INT(r, ==, 1);
    struct xdr_dec dec;
    xdr_dec_init(&dec, out.buf, out.len);
    struct oncrpc_reply rep;
    CHECK_OK(oncrpc_dec_reply(&dec, &rep));
    CHECK_INT(rep.xid, ==, xid);
    CHECK(rep.accept_stat == ONCRPC_SUCCESS || rep.accept_stat == ONCRPC_GARBAGE_ARGS);
    if (rep.accept_stat == ONCRPC_SUCCESS) {
      answered[proc]++;
      harvest(proc, &dec, &pool);
    }
    xdr_enc_free(&out);
    xdr_enc_free(&call);
    calls++;
    if (xid % 500 == 0)
      nfsd_tick(d, UINT64_MAX / 2); /* seal whatever is staged */
  }
  for (uint32_t p = 1; p < NFS3_NPROC; p++)
    CHECK_MSG(answered[p] > 0, "procedure %u never answered", p);
  CHECK(pool.n > 5);
  CHECK(nfsd_seal_all(d) >= 0);
  nfsd_free(d);
  rpcsrv_free(rpc);
  CHECK_OK(fs_close(fs));
  /* The log replays into the same view. */
  CHECK_OK(fs_open(home, "t", false, &fs));
  char *dump;
  size_t dlen;
  CHECK_OK(view_dump(fs_view(fs), &dump, &dlen));
  CHECK(dlen > 0);
  free(dump);
  size_t entries = view_count(fs_view(fs));
  CHECK_MSG(entries > 100, "only %zu entries written", entries);
  fs_close(fs);
  key_free(key);
  fprintf(stderr, "# %d calls, %zu entries\n", calls, entries);
}
