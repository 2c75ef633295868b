/*
 * Port mapping (PMAP v2, RFC 1833 §3), both sides:
 *
 *  - portmap_register()/portmap_unregister(): as a client, tell the host's
 *    rpcbind (127.0.0.1:111) where NFS (100003 v3) and MOUNT (100005 v1 and
 *    v3) listen, over TCP and UDP — so `mount -t nfs localhost:/basefs`
 *    needs no port options. Blocking (a few loopback datagrams, at most
 *    PORTMAP_TIMEOUT_MS each), meant for start-up and exit; a failure is
 *    for the caller to log as one warning, never fatal.
 *  - pmapsrv: basefs answers PMAP v2 itself (`serve --portmap`) on hosts
 *    without rpcbind: NULL, GETPORT, DUMP, and SET/UNSET from loopback
 *    addresses only (others get `false`, as rpcbind answers). CALLIT is
 *    PROC_UNAVAIL (it is an amplification vector and nothing needs it).
 *    The table starts with NFS, MOUNT and itself (100000 v2); a SET from a
 *    local service adds to it. For IPv6 clients it also answers rpcbind
 *    v3/v4 GETADDR (and v4 GETVERSADDR) for netids tcp, udp, tcp6, udp6
 *    from the same table (NFS and MOUNT from their IPv6 ports for tcp6/udp6,
 *    see struct portmap_ports), with the universal address of the served host
 *    (pmapsrv_set_hosts; for a wildcard host, the local address that
 *    reaches the caller, as rpcbind answers with the address the call
 *    arrived on); v3/v4 SET/UNSET answer false, DUMP is v2 only. portmap_serve() runs it on TCP and UDP on the given addresses.
 */
#ifndef BASEFS_SERVER_PORTMAP_H
#define BASEFS_SERVER_PORTMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "server/rpc.h"
#include "xdr/pmap2.h"

#define PORTMAP_TIMEOUT_MS 1000
/* The table's bound (SETs beyond it answer false). */
#define PMAPSRV_MAPPINGS_MAX 256

#define PORTMAP_NFS_PROGRAM 100003u
#define PORTMAP_MOUNT_PROGRAM 100005u

/* The mappings basefs serves: NFS v3, MOUNT v1 and v3, on TCP port tcp
 * and UDP port udp (0: that transport is not served). Fills up to cap,
 * returns the count (at most PORTMAP_OURS_MAX). */
#define PORTMAP_OURS_MAX 6
size_t portmap_our_mappings(int tcp, int udp, struct pmap2_mapping *out, size_t cap);

/* Registers our mappings with the port mapper at PMAP (NULL: 127.0.0.1:111):
 * for each (program, version) an UNSET, then a SET per transport.
 * Returns 0 or a negative error with a reason in err ("no port mapper
 * at 127.0.0.1:111 (connection refused)", "the port mapper refused SET
 * of 100003 v3 tcp port 2049 (another server has it?)", ...). */
int portmap_register(const struct sockaddr *pmap, int tcp, int udp, char *err, size_t errlen);
/* PMAP v2 speaks IPv4 only; an IPv6 client (mount.nfs with `localhost`
 * resolving to ::1) asks rpcbind v4 GETADDR for netid tcp6/udp6. This
 * registers our mappings for tcp6/udp6 at universal address HOST6.port
 * (e.g. "::1.8.1") with rpcbind v4 SET at PMAP. Same conventions. */
int portmap_register6(const struct sockaddr *pmap, const char *host6, int tcp, int udp, char *err,
                      size_t errlen);
/* UNSETs NFS v3 and MOUNT v1/v3 (whatever port; v2, then v4 for every
 * netid — a v4 failure is ignored, a portmapper-only host has no v4).
 * Same conventions. */
int portmap_unregister(const struct sockaddr *pmap, char *err, size_t errlen);
/* One GETPORT call (for tests and `basefs mount`): the port, 0 when not
 * registered, or a negative error. */
int portmap_getport(const struct sockaddr *pmap, uint32_t prog, uint32_t vers, uint32_t prot,
                    char *err, size_t errlen);

/* ---- the server ---- */

struct pmapsrv;

int pmapsrv_new(struct pmapsrv **out);
void pmapsrv_free(struct pmapsrv *p);
/* Adds (or replaces the port of) a mapping; -ENOSPC when full. */
int pmapsrv_set(struct pmapsrv *p, const struct pmap2_mapping *m);
/* The same for the IPv6 table, which GETADDR consults first for netids
 * tcp6/udp6 (a program not in it is looked up in the PMAP v2 table). */
int pmapsrv_set6(struct pmapsrv *p, const struct pmap2_mapping *m);
size_t pmapsrv_count(const struct pmapsrv *p);
/* The hosts GETADDR puts in universal addresses ("127.0.0.1", "::1";
 * NULL: that family is answered ""), copied. */
int pmapsrv_set_hosts(struct pmapsrv *p, const char *v4, const char *v6);
/* Registers PMAP v2 and rpcbind v3/v4 (GETADDR) with rpc (ctx = p). */
int pmapsrv_register(struct pmapsrv *p, struct rpcsrv *rpc);

/* Where our NFS and MOUNT listen, per address family (0: not served).
 * PMAP v2 (GETPORT, DUMP) and rpcbind GETADDR for netids tcp/udp answer
 * tcp/udp; GETADDR for tcp6/udp6 answers tcp6/udp6 (when both are 0, the
 * IPv4 ports: a daemon on IPv6 only puts its ports in tcp/udp too). */
struct portmap_ports {
  int tcp, udp;   /* IPv4 */
  int tcp6, udp6; /* IPv6 */
};

/* A complete port mapper on a loop: its own dispatcher with PMAP v2,
 * TCP and UDP on each of addrs (port as given, normally 111), our
 * mappings at PORTS, its protocol-error lines to LOG (rate-limited, a
 * timer sums up what was held back: server/rpc.h). Addresses that cannot be bound are skipped with a
 * log line; -EADDRNOTAVAIL (or the first bind error) when none could be.
 * *bound (may be NULL) gets the port bound on the first address. */
struct portmap_server;
int portmap_serve(uv_loop_t *loop, const struct sockaddr *const *addrs, size_t naddrs,
                  const struct portmap_ports *ports, rpcsrv_log_fn log, void *log_ctx,
                  struct portmap_server **out, int *bound);
/* Stops and frees; done(arg) runs on the loop when every handle is closed. */
void portmap_serve_stop(struct portmap_server *s, void (*done)(void *arg), void *arg);

#endif
