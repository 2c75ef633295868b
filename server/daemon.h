/*
 * The serving loop: one filesystem (store/fs.h, held open for writing, so
 * its lock keeps a second daemon out) served over NFSv3 + MOUNT on one TCP
 * address, on a libuv loop, until SIGTERM or SIGINT. On the way out every
 * staged write is sealed into a version and the filesystem is closed
 * cleanly (checkpoint). Prints nothing: log lines go to the caller's sink.
 */
#ifndef BASEFS_SERVER_DAEMON_H
#define BASEFS_SERVER_DAEMON_H

#include "server/nfs3.h"

struct daemon_config {
  const char *home;     /* $BASEFS_HOME */
  const char *name;     /* the filesystem */
  const char *addr;     /* "ADDR:PORT" for NFS and MOUNT */
  const char *key_path; /* the key that signs NFS writes; a missing file = read-only */
  nfsd_log_fn log;      /* level + line */
  void *log_ctx;
};

/* Runs until a signal stops it. 0 after a clean stop; a negative error if
 * it could not start (*WHY, if given, says what failed: "open", "key",
 * "listen", ...). -EBUSY: another process holds the filesystem. */
int daemon_run(const struct daemon_config *cfg, const char **why);

#endif
