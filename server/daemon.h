/*
 * The serving loop: one filesystem (store/fs.h, held open for writing, so
 * its lock keeps a second daemon out) served over NFSv3 + MOUNT on one or
 * more addresses, TCP and UDP on the same port, with the exports deciding
 * who may call and a duplicate-request cache for retransmissions, on a
 * libuv loop, until SIGTERM or SIGINT. Every
 * DAEMON_CHECKPOINT_S seconds (when something changed) the view is
 * checkpointed, so a restart replays little of the log. On the way out
 * every staged write is sealed into a version and the filesystem is closed
 * cleanly. Prints nothing: log lines go to the caller's sink.
 */
#ifndef BASEFS_SERVER_DAEMON_H
#define BASEFS_SERVER_DAEMON_H

#include "server/nfs3.h"

#define DAEMON_ADDRS_MAX 8
#define DAEMON_CHECKPOINT_S 600

struct daemon_config {
  const char *home;     /* $BASEFS_HOME */
  const char *name;     /* the filesystem */
  /* "ADDR:PORT" / "[V6ADDR]:PORT" for NFS and MOUNT. Addresses marked
   * optional may fail to bind (e.g. ::1 without IPv6) with a warning. */
  const char *addrs[DAEMON_ADDRS_MAX];
  bool optional[DAEMON_ADDRS_MAX];
  int naddrs;
  const char *key_path; /* the key that signs NFS writes; a missing file = read-only */
  const char *exports_path; /* exports file (server/exports.h); NULL: loopback only */
  bool no_udp;          /* TCP only */
  /* Answer PMAP v2 (GETPORT, DUMP) on port 111 of every NFS address
   * ourselves, for hosts without rpcbind (server/portmap.h). Without it, a
   * daemon listening on port 2049 (on some address) registers NFS and
   * MOUNT with the host's rpcbind (a failure is one warning) and
   * unregisters at exit. Either way each address family is advertised with
   * the port of its first address (IPv4 for PMAP v2 and netids tcp/udp,
   * IPv6 for tcp6/udp6); a port mapper holds one port per program and
   * netid, so another address of the same family on another port is not
   * advertised (one warning names it). */
  bool portmap;
  /* After a reply, poll the connection this long for its next call before
   * sleeping (tcpsrv_set_spin); 0: never. */
  unsigned spin_us;
  nfsd_log_fn log;      /* level + line */
  void *log_ctx;
};

/* --spin-us's bound (a slow client costs at most this much CPU per call). */
#define DAEMON_SPIN_US_MAX 100000
/* Parses a spin time: decimal microseconds, 0 to DAEMON_SPIN_US_MAX; 0 or
 * -EINVAL (empty, sign, junk, out of range). */
int daemon_parse_spin_us(const char *s, unsigned *out);

/* The index of the first of ADDRS[0..n) ("ADDR:PORT") that names the same
 * address and port as an earlier one (port 0, "any free port", never
 * repeats), -1 if none does, -EINVAL if one does not parse. */
int daemon_repeated_addr(const char *const *addrs, int n);

/* Runs until a signal stops it. 0 after a clean stop; a negative error if
 * it could not start (*WHY, if given, says what failed: "address", "open",
 * "key", "exports", "listen", ...; *WHAT the address, or the exports
 * error text). -EBUSY: another
 * process holds the filesystem. */
int daemon_run(const struct daemon_config *cfg, const char **why, const char **what);

#endif
