/*
 * MOUNT (program 100005), served on the NFS port: version 3 (RFC 1813 §5)
 * and version 1's list procedures (DUMP, UMNT, UMNTALL, EXPORT have the
 * same XDR), which `showmount` uses. MNT v1 would need a 32-byte NFSv2
 * handle, which we do not serve: it answers PROC_UNAVAIL.
 *
 * One export, by default "/basefs". MNT of it (with or without a trailing
 * slash) returns the root handle the NFS layer provides and the flavors
 * [AUTH_SYS, AUTH_NONE]; any other path gets MNT3ERR_NOENT. DUMP lists the
 * (client address, path) pairs mounted and not yet unmounted.
 */
#ifndef BASEFS_SERVER_MOUNT_H
#define BASEFS_SERVER_MOUNT_H

#include <stddef.h>
#include <stdint.h>

#include "server/rpc.h"

/* Clients remembered for DUMP; older ones are forgotten first. */
#define MOUNTD_CLIENTS_MAX 1024

/* Fills the export's root handle (at most 64 bytes); 0 or -errno. */
typedef int (*mountd_root_fh_fn)(void *ctx, uint8_t fh[64], uint32_t *len);

struct mountd_config {
  const char *export_path;   /* NULL: "/basefs" */
  const char *const *groups; /* EXPORT's groups, NULL-terminated; NULL: none */
  mountd_root_fh_fn root_fh; /* NULL: MNT answers MNT3ERR_SERVERFAULT */
  void *ctx;
};

struct mountd;

int mountd_new(const struct mountd_config *cfg, struct mountd **out);
void mountd_free(struct mountd *m);
/* Registers MOUNT v1 and v3 with rpc. */
int mountd_register(struct mountd *m, struct rpcsrv *rpc);
/* Mount entries currently listed by DUMP. */
size_t mountd_clients(const struct mountd *m);

#endif
