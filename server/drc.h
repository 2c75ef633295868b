/*
 * The duplicate-request cache (DRC): a retransmitted non-idempotent call
 * (a client that lost our reply and sends the same call again) must get
 * the reply of the first execution, not a second execution: a REMOVE run
 * twice answers NOENT, a CREATE GUARDED EXIST, a RENAME NOENT.
 *
 * Sans-I/O and transport-independent. The dispatcher (server/rpc.c,
 * rpcsrv_set_drc) consults it for every procedure flagged
 * RPCSRV_NONIDEMPOTENT — for NFSv3: SETATTR, CREATE, MKDIR, SYMLINK,
 * MKNOD, REMOVE, RMDIR, RENAME, LINK. WRITE is not cached: rewriting the
 * same bytes at the same offset is harmless, its replies are big, and the
 * write verifier already covers lost data.
 *
 * A call is identified by (client address without the port, xid, program,
 * version, procedure, XXH3-64 of the argument bytes). The port is left
 * out because a TCP client that reconnects after losing a reply usually
 * comes back from another port; the checksum keeps two different calls
 * that reuse an xid from being confused.
 *
 * States: a call being executed is IN_PROGRESS — a retransmission that
 * arrives meanwhile is dropped (the client retransmits again later); once
 * done, the reply bytes are kept and a retransmission gets exactly them.
 * Bounded: at most max_entries entries and max_bytes of replies; the least
 * recently used are forgotten first. A reply over DRC_REPLY_MAX is not
 * kept (the entry is forgotten).
 */
#ifndef BASEFS_SERVER_DRC_H
#define BASEFS_SERVER_DRC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "xdr/oncrpc.h"

#define DRC_ENTRIES_DEFAULT 4096
#define DRC_BYTES_DEFAULT (4u << 20)
#define DRC_REPLY_MAX 4096

struct drc_key {
  uint8_t addr[16]; /* IPv4: the 4 bytes first (IPv4-mapped IPv6 too) */
  uint32_t family;  /* AF_INET, AF_INET6 or 0 (unknown peer) */
  uint32_t xid, prog, vers, proc;
  uint64_t sum;     /* XXH3-64 of the argument bytes */
};

enum drc_verdict {
  DRC_NEW = 0,     /* not seen: execute it, then drc_done() */
  DRC_IN_PROGRESS, /* being executed: drop the retransmission */
  DRC_REPLAY,      /* done: send the cached reply */
};

struct drc_stats {
  uint64_t hits;        /* replies replayed */
  uint64_t dropped;     /* retransmissions of calls in progress */
  uint64_t misses;      /* new calls */
  uint64_t evictions;   /* entries forgotten to stay in bounds */
  size_t entries;
  size_t bytes;
};

struct drc;

/* 0 for a limit means its default. */
int drc_new(size_t max_entries, size_t max_bytes, struct drc **out);
void drc_free(struct drc *c);

/* Builds the key of call C from ADDR (may be NULL) and its argument bytes. */
void drc_key_make(struct drc_key *k, const struct sockaddr *addr, const struct oncrpc_call *c,
                  const uint8_t *args, size_t args_len);

/* Looks K up. DRC_NEW inserts it IN_PROGRESS (or, out of memory, inserts
 * nothing: the call runs uncached). DRC_REPLAY sets *reply and *len to the
 * cached bytes, valid until the next call on c.  */
enum drc_verdict drc_begin(struct drc *c, const struct drc_key *k, const uint8_t **reply,
                           size_t *len);
/* The call K finished with REPLY (len bytes, copied); reply NULL means
 * nothing was sent (forget K, so a retransmission runs again). A K that
 * is not in progress (evicted meanwhile) is ignored. */
void drc_done(struct drc *c, const struct drc_key *k, const uint8_t *reply, size_t len);

void drc_get_stats(const struct drc *c, struct drc_stats *out);

#endif
