/* MOUNT v3 (and v1's list procedures); see mount.h. */
#include "server/mount.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xdr/mount3.h"

struct client {
  char host[64];
  char *path;
};

struct mountd {
  char *export_path;
  char **groups; /* NULL-terminated */
  mountd_root_fh_fn root_fh;
  void *ctx;
  struct client *clients; /* oldest first */
  size_t nclients;
};

static void free_groups(char **g)
{
  for (size_t i = 0; g && g[i]; i++)
    free(g[i]);
  free(g);
}

int mountd_new(const struct mountd_config *cfg, struct mountd **out)
{
  struct mountd *m = calloc(1, sizeof *m);
  if (!m)
    return -ENOMEM;
  size_t n = 0;
  while (cfg->groups && cfg->groups[n])
    n++;
  m->export_path = strdup(cfg->export_path ? cfg->export_path : "/basefs");
  m->groups = calloc(n + 1, sizeof *m->groups);
  bool ok = m->export_path && m->groups;
  for (size_t i = 0; ok && i < n; i++)
    ok = (m->groups[i] = strdup(cfg->groups[i])) != NULL;
  if (!ok) {
    mountd_free(m);
    return -ENOMEM;
  }
  m->root_fh = cfg->root_fh;
  m->ctx = cfg->ctx;
  *out = m;
  return 0;
}

void mountd_free(struct mountd *m)
{
  if (!m)
    return;
  for (size_t i = 0; i < m->nclients; i++)
    free(m->clients[i].path);
  free(m->clients);
  free_groups(m->groups);
  free(m->export_path);
  free(m);
}

size_t mountd_clients(const struct mountd *m)
{
  return m->nclients;
}

/* The export itself, optionally followed by one slash. */
static bool is_export(const struct mountd *m, const struct xdr_bytes *p)
{
  size_t n = strlen(m->export_path);
  if (p->len != n && !(p->len == n + 1 && p->data[n] == '/'))
    return false;
  return memcmp(p->data, m->export_path, n) == 0;
}

static void forget(struct mountd *m, size_t i)
{
  free(m->clients[i].path);
  memmove(&m->clients[i], &m->clients[i + 1], (m->nclients - i - 1) * sizeof *m->clients);
  m->nclients--;
}

static void remember(struct mountd *m, const char *host, const char *path)
{
  for (size_t i = 0; i < m->nclients; i++)
    if (strcmp(m->clients[i].host, host) == 0 && strcmp(m->clients[i].path, path) == 0)
      return;
  if (m->nclients == MOUNTD_CLIENTS_MAX)
    forget(m, 0);
  char *p = strdup(path);
  struct client *nc = realloc(m->clients, (m->nclients + 1) * sizeof *nc);
  if (!p || !nc) {
    /* DUMP is advisory (RFC 1813 says so): a missing line is no failure. */
    free(p);
    if (nc)
      m->clients = nc;
    return;
  }
  m->clients = nc;
  struct client *c = &m->clients[m->nclients++];
  snprintf(c->host, sizeof c->host, "%s", host);
  c->path = p;
}

static enum rpcsrv_status proc_null(struct rpcsrv_call *call)
{
  (void)call;
  return RPCSRV_OK;
}

static enum rpcsrv_status proc_mnt(struct rpcsrv_call *call)
{
  struct mountd *m = call->ctx;
  struct xdr_bytes path;
  if (mount3_dec_dirpath(&call->args, &path) < 0)
    return RPCSRV_GARBAGE_ARGS;
  struct mount3_mnt_res r = {.status = MOUNT3_SUCCESS};
  if (!is_export(m, &path)) {
    r.status = MOUNT3_ERR_NOENT;
  } else if (!m->root_fh || m->root_fh(m->ctx, r.fh, &r.fh_len) < 0 || r.fh_len > MOUNT3_FHSIZE) {
    r.status = MOUNT3_ERR_SERVERFAULT;
  } else {
    /* AUTH_SYS first: clients pick the first flavor they support. */
    r.nflavors = 2;
    r.flavors[0] = ONCRPC_AUTH_SYS;
    r.flavors[1] = ONCRPC_AUTH_NONE;
    remember(m, call->peer ? call->peer->name : "?", m->export_path);
  }
  mount3_enc_mnt_res(call->res, &r);
  return RPCSRV_OK;
}

static enum rpcsrv_status proc_dump(struct rpcsrv_call *call)
{
  struct mountd *m = call->ctx;
  for (size_t i = 0; i < m->nclients; i++)
    mount3_enc_mountbody(call->res, m->clients[i].host, m->clients[i].path);
  mount3_enc_list_end(call->res);
  return RPCSRV_OK;
}

static enum rpcsrv_status proc_umnt(struct rpcsrv_call *call)
{
  struct mountd *m = call->ctx;
  struct xdr_bytes path;
  if (mount3_dec_dirpath(&call->args, &path) < 0)
    return RPCSRV_GARBAGE_ARGS;
  const char *host = call->peer ? call->peer->name : "?";
  if (is_export(m, &path))
    for (size_t i = 0; i < m->nclients; i++)
      if (strcmp(m->clients[i].host, host) == 0 && strcmp(m->clients[i].path, m->export_path) == 0) {
        forget(m, i);
        break;
      }
  return RPCSRV_OK;
}

static enum rpcsrv_status proc_umntall(struct rpcsrv_call *call)
{
  struct mountd *m = call->ctx;
  const char *host = call->peer ? call->peer->name : "?";
  for (size_t i = m->nclients; i-- > 0;)
    if (strcmp(m->clients[i].host, host) == 0)
      forget(m, i);
  return RPCSRV_OK;
}

static enum rpcsrv_status proc_export(struct rpcsrv_call *call)
{
  struct mountd *m = call->ctx;
  mount3_enc_exportnode(call->res, m->export_path, (const char *const *)m->groups);
  mount3_enc_list_end(call->res);
  return RPCSRV_OK;
}

static const struct rpcsrv_proc mount3_procs[MOUNT3_NPROC] = {
    [MOUNT3_PROC_NULL] = {"NULL", proc_null, 0},
    [MOUNT3_PROC_MNT] = {"MNT", proc_mnt, 0},
    [MOUNT3_PROC_DUMP] = {"DUMP", proc_dump, 0},
    [MOUNT3_PROC_UMNT] = {"UMNT", proc_umnt, 0},
    [MOUNT3_PROC_UMNTALL] = {"UMNTALL", proc_umntall, 0},
    [MOUNT3_PROC_EXPORT] = {"EXPORT", proc_export, 0},
};

static const struct rpcsrv_proc mount1_procs[MOUNT3_NPROC] = {
    [MOUNT3_PROC_NULL] = {"NULL", proc_null, 0},
    [MOUNT3_PROC_MNT] = {"MNT", NULL, 0}, /* fhstatus carries a v2 handle */
    [MOUNT3_PROC_DUMP] = {"DUMP", proc_dump, 0},
    [MOUNT3_PROC_UMNT] = {"UMNT", proc_umnt, 0},
    [MOUNT3_PROC_UMNTALL] = {"UMNTALL", proc_umntall, 0},
    [MOUNT3_PROC_EXPORT] = {"EXPORT", proc_export, 0},
};

int mountd_register(struct mountd *m, struct rpcsrv *rpc)
{
  int rc = rpcsrv_register(rpc, MOUNT3_PROGRAM, 1, mount1_procs, MOUNT3_NPROC, m);
  if (rc == 0)
    rc = rpcsrv_register(rpc, MOUNT3_PROGRAM, MOUNT3_VERSION, mount3_procs, MOUNT3_NPROC, m);
  return rc;
}
