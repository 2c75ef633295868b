/*
 * MOUNT through libnfs's raw client (its own XDR) and raw sockets: MNT of
 * the export and of wrong paths, EXPORT, DUMP/UMNT/UMNTALL bookkeeping,
 * version 1's list procedures.
 */
#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-mount.h>

#include "tests/server/harness.h"
#include "xdr/mount3.h"

/* What a callback saw, copied out before libnfs frees it. */
struct got {
  bool done;
  int status;
  uint32_t mnt_status;
  uint8_t fh[64];
  uint32_t fh_len;
  uint32_t flavors[8];
  uint32_t nflavors;
  char lines[16][128]; /* "dir group,group" or "host dir" */
  int nlines;
};

static void on_mnt(struct rpc_context *rpc, int status, void *data, void *priv)
{
  (void)rpc;
  struct got *g = priv;
  g->done = true;
  g->status = status;
  if (status != RPC_STATUS_SUCCESS)
    return;
  mountres3 *r = data;
  g->mnt_status = r->fhs_status;
  if (r->fhs_status != MNT3_OK)
    return;
  mountres3_ok *ok = &r->mountres3_u.mountinfo;
  g->fh_len = ok->fhandle.fhandle3_len;
  CHECK(g->fh_len <= 64);
  memcpy(g->fh, ok->fhandle.fhandle3_val, g->fh_len);
  g->nflavors = ok->auth_flavors.auth_flavors_len;
  CHECK(g->nflavors <= 8);
  for (uint32_t i = 0; i < g->nflavors; i++)
    g->flavors[i] = (uint32_t)ok->auth_flavors.auth_flavors_val[i];
}

/* libnfs hands out list nodes at 4-byte alignment: copy each node out
 * before reading it (UBSan). */
static void on_export(struct rpc_context *rpc, int status, void *data, void *priv)
{
  (void)rpc;
  struct got *g = priv;
  g->done = true;
  g->status = status;
  if (status != RPC_STATUS_SUCCESS)
    return;
  exports list;
  memcpy(&list, data, sizeof list);
  for (struct exportnode *p = list; p && g->nlines < 16;) {
    struct exportnode ex;
    memcpy(&ex, p, sizeof ex);
    char *line = g->lines[g->nlines++];
    snprintf(line, 128, "%s ", ex.ex_dir);
    for (struct groupnode *q = ex.ex_groups; q;) {
      struct groupnode gr;
      memcpy(&gr, q, sizeof gr);
      size_t l = strlen(line);
      snprintf(line + l, 128 - l, "%s%s", gr.gr_name, gr.gr_next ? "," : "");
      q = gr.gr_next;
    }
    p = ex.ex_next;
  }
}

static void on_dump(struct rpc_context *rpc, int status, void *data, void *priv)
{
  (void)rpc;
  struct got *g = priv;
  g->done = true;
  g->status = status;
  if (status != RPC_STATUS_SUCCESS)
    return;
  mountlist list;
  memcpy(&list, data, sizeof list);
  for (struct mountbody *p = list; p && g->nlines < 16;) {
    struct mountbody mb;
    memcpy(&mb, p, sizeof mb);
    snprintf(g->lines[g->nlines++], 128, "%s %s", mb.ml_hostname, mb.ml_directory);
    p = mb.ml_next;
  }
}

static void on_plain(struct rpc_context *rpc, int status, void *data, void *priv)
{
  (void)rpc;
  (void)data;
  struct got *g = priv;
  g->done = true;
  g->status = status;
}

static void wait_for(struct rpc_context *rpc, struct got *g)
{
  for (int i = 0; i < 500 && !g->done; i++) {
    struct pollfd p = {.fd = rpc_get_fd(rpc), .events = (short)rpc_which_events(rpc)};
    if (poll(&p, 1, 10) < 0)
      break;
    CHECK_OK(rpc_service(rpc, p.revents));
  }
  CHECK_MSG(g->done, "libnfs call timed out: %s", rpc_get_error(rpc));
  CHECK_MSG(g->status == RPC_STATUS_SUCCESS, "libnfs: %s", rpc_get_error(rpc));
}

static struct rpc_context *client(int port)
{
  struct rpc_context *rpc = rpc_init_context();
  CHECK(rpc != NULL);
  struct got g = {0};
  CHECK_OK(rpc_connect_async(rpc, "127.0.0.1", port, on_plain, &g));
  wait_for(rpc, &g);
  return rpc;
}

static struct got mnt(struct rpc_context *rpc, const char *path)
{
  struct got g = {0};
  CHECK_OK(rpc_mount3_mnt_async(rpc, on_mnt, (char *)path, &g));
  wait_for(rpc, &g);
  return g;
}

static struct got dump(struct rpc_context *rpc)
{
  struct got g = {0};
  CHECK_OK(rpc_mount3_dump_async(rpc, on_dump, &g));
  wait_for(rpc, &g);
  return g;
}

TEST(mnt_export_and_wrong_paths)
{
  struct harness h;
  harness_start(&h);
  struct rpc_context *rpc = client(h.port);

  struct got g = {0};
  CHECK_OK(rpc_mount3_null_async(rpc, on_plain, &g));
  wait_for(rpc, &g);

  g = mnt(rpc, "/basefs");
  CHECK_INT(g.mnt_status, ==, MNT3_OK);
  CHECK_INT(g.fh_len, ==, sizeof harness_root_fh);
  CHECK_MEM(g.fh, harness_root_fh, sizeof harness_root_fh);
  CHECK_INT(g.nflavors, ==, 2);
  CHECK_INT(g.flavors[0], ==, ONCRPC_AUTH_SYS);
  CHECK_INT(g.flavors[1], ==, ONCRPC_AUTH_NONE);

  g = mnt(rpc, "/basefs/");
  CHECK_INT(g.mnt_status, ==, MNT3_OK);
  static const char *const wrong[] = {"/", "/basefs2", "/base", "/basefs//", "basefs", "", "/etc"};
  for (size_t i = 0; i < sizeof wrong / sizeof *wrong; i++) {
    g = mnt(rpc, wrong[i]);
    CHECK_MSG(g.mnt_status == MNT3ERR_NOENT, "MNT %s gave %u", wrong[i], g.mnt_status);
  }
  rpc_destroy_context(rpc);
  harness_stop(&h);
}

TEST(export_lists_basefs_with_groups)
{
  struct harness h;
  harness_start(&h);
  struct rpc_context *rpc = client(h.port);
  struct got g = {0};
  CHECK_OK(rpc_mount3_export_async(rpc, on_export, &g));
  wait_for(rpc, &g);
  CHECK_INT(g.nlines, ==, 1);
  CHECK_MSG(strcmp(g.lines[0], "/basefs 127.0.0.1/32,::1/128") == 0, "EXPORT: %s", g.lines[0]);
  rpc_destroy_context(rpc);
  harness_stop(&h);
}

TEST(dump_umnt_umntall)
{
  struct harness h;
  harness_start(&h);
  struct rpc_context *rpc = client(h.port);
  struct got g = dump(rpc);
  CHECK_INT(g.nlines, ==, 0);

  g = mnt(rpc, "/basefs");
  CHECK_INT(g.mnt_status, ==, MNT3_OK);
  g = mnt(rpc, "/basefs"); /* twice: still one entry */
  g = mnt(rpc, "/nope");   /* refused: no entry */
  g = dump(rpc);
  CHECK_INT(g.nlines, ==, 1);
  CHECK_MSG(strcmp(g.lines[0], "127.0.0.1 /basefs") == 0, "DUMP: %s", g.lines[0]);

  g = (struct got){0};
  CHECK_OK(rpc_mount3_umnt_async(rpc, on_plain, "/basefs", &g));
  wait_for(rpc, &g);
  CHECK_INT(dump(rpc).nlines, ==, 0);

  mnt(rpc, "/basefs");
  CHECK_INT(dump(rpc).nlines, ==, 1);
  g = (struct got){0};
  CHECK_OK(rpc_mount3_umntall_async(rpc, on_plain, &g));
  wait_for(rpc, &g);
  CHECK_INT(dump(rpc).nlines, ==, 0);
  rpc_destroy_context(rpc);
  harness_stop(&h);
}

TEST(mount_v1_lists_and_v2_mismatch)
{
  struct harness h;
  harness_start(&h);
  int fd = raw_connect(h.port);
  struct oncrpc_reply r;
  struct xdr_dec res;
  /* showmount speaks MOUNT v1: EXPORT has v3's layout. */
  uint8_t *rec = call_raw(fd, 1, MOUNT3_PROGRAM, 1, MOUNT3_PROC_EXPORT, NULL, 0, &r, &res);
  CHECK_INT(r.accept_stat, ==, ONCRPC_SUCCESS);
  bool more;
  struct xdr_bytes dir;
  CHECK_OK(xdr_dec_bool(&res, &more));
  CHECK(more);
  CHECK_OK(xdr_dec_bytes(&res, 1024, &dir));
  CHECK(dir.len == 7 && memcmp(dir.data, "/basefs", 7) == 0);
  free(rec);
  rec = call_raw(fd, 2, MOUNT3_PROGRAM, 1, MOUNT3_PROC_MNT, NULL, 0, &r, &res);
  CHECK_INT(r.accept_stat, ==, ONCRPC_PROC_UNAVAIL);
  free(rec);
  rec = call_raw(fd, 3, MOUNT3_PROGRAM, 2, MOUNT3_PROC_NULL, NULL, 0, &r, &res);
  CHECK(r.accept_stat == ONCRPC_PROG_MISMATCH && r.low == 1 && r.high == 3);
  free(rec);
  /* A dirpath over MNTPATHLEN is garbage. */
  struct xdr_enc e;
  xdr_enc_init(&e, 4096);
  char path[1100];
  memset(path, 'a', sizeof path);
  path[0] = '/';
  xdr_enc_bytes(&e, path, 1025);
  rec = call_raw(fd, 4, MOUNT3_PROGRAM, 3, MOUNT3_PROC_MNT, e.buf, e.len, &r, &res);
  CHECK_INT(r.accept_stat, ==, ONCRPC_GARBAGE_ARGS);
  free(rec);
  xdr_enc_free(&e);
  close(fd);
  harness_stop(&h);
}
