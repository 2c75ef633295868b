/*
 * The transport-independent half of the ONC RPC server (RFC 5531), sans-I/O:
 *
 *  - rpcsrv_records: record marking (§11) for stream transports. Bytes go
 *    in (straight into its buffer: no copy), complete records come out,
 *    fragments reassembled in place, every record capped.
 *  - rpcsrv: the dispatcher. A table of (program, version) -> procedures;
 *    one call record in, at most one reply record out, every denial and
 *    accept status exactly as §9 says.
 *
 * tcp.c drives both with libuv; a UDP transport (one call per datagram)
 * calls rpcsrv_dispatch() directly; tests and fuzzers call them with bytes.
 *
 * Names carry rpcsrv_ because libnfs (linked into the tests) exports
 * hundreds of rpc_* symbols.
 */
#ifndef BASEFS_SERVER_RPC_H
#define BASEFS_SERVER_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "server/exports.h"
#include "xdr/oncrpc.h"
#include "xdr/xdr.h"

/* The largest call record we accept: a 1 MiB WRITE plus its headers. A
 * longer record (e.g. a 2 GiB length) is a protocol violation. */
#define RPCSRV_RECORD_MAX ((1u << 20) + 64 * 1024)
/* The largest reply record: a 1 MiB READ plus its headers. */
#define RPCSRV_REPLY_MAX ((1u << 20) + 64 * 1024)

/* ---- record marking ---- */

struct rpcsrv_records {
  uint8_t *buf;
  size_t alloc;     /* bytes allocated */
  size_t start;     /* first data byte of the record being assembled */
  size_t end;       /* end of its reassembled data */
  size_t raw;       /* next received byte not yet parsed (>= end) */
  size_t fill;      /* end of received bytes */
  uint32_t frag_left; /* data bytes still due in the current fragment */
  bool in_frag;     /* a fragment header has been read */
  bool last_frag;   /* ... and it was the record's last fragment */
  size_t max;       /* record size cap */
};

void rpcsrv_records_init(struct rpcsrv_records *r, size_t max_record);
void rpcsrv_records_free(struct rpcsrv_records *r);
/* Where the next received bytes go (at least 1 byte, usually much more):
 * read(2) into *p up to *n bytes, then rpcsrv_records_commit(). Call it
 * only after rpcsrv_records_next() returned 0 (every complete record
 * taken). May move buffered bytes: records returned earlier are invalid
 * afterwards. */
int rpcsrv_records_space(struct rpcsrv_records *r, uint8_t **p, size_t *n);
void rpcsrv_records_commit(struct rpcsrv_records *r, size_t n);
/* Copies n bytes in (for callers that already hold the bytes elsewhere);
 * the same rule as rpcsrv_records_space() applies. */
int rpcsrv_records_feed(struct rpcsrv_records *r, const uint8_t *p, size_t n);
/* The next complete record: 1 with *rec and *len set (valid until the next call
 * on r), 0 when more bytes are needed, -BFS_ETOOBIG when a record exceeds
 * the cap (the connection must be closed: the stream cannot be resynced). */
int rpcsrv_records_next(struct rpcsrv_records *r, uint8_t **rec, size_t *len);
/* True when bytes of an unfinished record are buffered (EOF now means a
 * truncated record). */
bool rpcsrv_records_partial(const struct rpcsrv_records *r);

/* ---- dispatcher ---- */

/* Who sent a call; transports fill it once per connection or datagram. */
struct rpcsrv_peer {
  struct sockaddr_storage addr;
  socklen_t addrlen;
  char name[64]; /* numeric address, for logs and MOUNT's DUMP */
  bool stream;   /* TCP (true) or UDP */
  /* What the exports grant this client (server/exports.h). The dispatcher
   * fills it for every call from the address (see rpcsrv_set_exports);
   * transports leave it alone. */
  struct exports_access access;
};

/* One call, as a procedure handler sees it. The argument bytes (and any
 * zero-copy pointers decoded from them) are valid only during the call. */
struct rpcsrv_call {
  const struct oncrpc_call *hdr; /* xid, prog, vers, proc, credential */
  struct xdr_dec args;           /* positioned at the procedure's arguments */
  struct xdr_enc *res;           /* append the results here, nothing else */
  const struct rpcsrv_peer *peer;
  void *ctx;                     /* the program's ctx from rpcsrv_register */
};

/* What a handler asks the dispatcher to send. */
enum rpcsrv_status {
  RPCSRV_OK = 0,       /* SUCCESS with the results the handler encoded */
  RPCSRV_GARBAGE_ARGS, /* the arguments did not decode: results dropped */
  RPCSRV_SYSTEM_ERR,   /* the server failed (e.g. out of memory) */
  RPCSRV_AUTH_TOOWEAK, /* MSG_DENIED AUTH_ERROR AUTH_TOOWEAK */
  RPCSRV_DROP,         /* send nothing (e.g. a retransmission in progress) */
};

typedef enum rpcsrv_status (*rpcsrv_handler)(struct rpcsrv_call *call);

/* Procedure flags. */
#define RPCSRV_NEED_AUTH_SYS 0x1  /* AUTH_NONE gets AUTH_TOOWEAK */
#define RPCSRV_NONIDEMPOTENT 0x2  /* a retransmission must get the first reply
                                     (for the duplicate-request cache) */

/* One entry per procedure number; handler NULL means PROC_UNAVAIL. */
struct rpcsrv_proc {
  const char *name;
  rpcsrv_handler handler;
  unsigned flags;
};

struct rpcsrv;

/* Optional log sink: one line per protocol error worth an admin's eye. */
typedef void (*rpcsrv_log_fn)(void *ctx, const char *line);

/* Lines of one kind (one rpcsrv_logf format) written per second at most:
 * a flood of garbage (1000 datagrams, perhaps from forged UDP sources)
 * makes RPCSRV_LOG_BURST lines and one "(N more like this suppressed
 * within a second; the last: ...)" line, not 1000. */
#define RPCSRV_LOG_BURST 10

int rpcsrv_new(struct rpcsrv **out);
/* Writes one line to the log sink, if any (transports use it too), unless
 * RPCSRV_LOG_BURST lines of the same FMT (compared as a pointer: a call
 * site) were written within the last second; those are counted, and the
 * count is written with the next line of that kind after the second, or
 * by rpcsrv_log_flush(). */
void rpcsrv_logf(struct rpcsrv *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes the counts of lines held back in windows that are over (a timer
 * calls it, so a flood that stops is still summed up). */
void rpcsrv_log_flush(struct rpcsrv *s);
void rpcsrv_free(struct rpcsrv *s);
void rpcsrv_set_log(struct rpcsrv *s, rpcsrv_log_fn fn, void *ctx);
/* Registers procs[0..nprocs) as (prog, vers). The table is not copied and
 * must outlive s. -EEXIST if registered already, -ENOMEM. */
int rpcsrv_register(struct rpcsrv *s, uint32_t prog, uint32_t vers, const struct rpcsrv_proc *procs,
                    size_t nprocs, void *ctx);

struct drc;
/* Decides who may call (server/exports.h; not copied, must outlive s).
 * A client the exports refuse gets MSG_DENIED AUTH_ERROR AUTH_TOOWEAK for
 * every call, and one log line the first time (per address, among the
 * last RPCSRV_REFUSED_SEEN); its malformed calls get their usual replies
 * but no log lines. Without exports every client is allowed, and
 * peer->access is exports_check(NULL, addr). */
void rpcsrv_set_exports(struct rpcsrv *s, const struct exports *ex);
#define RPCSRV_REFUSED_SEEN 64
/* Consults the duplicate-request cache (server/drc.h; not copied) for
 * every procedure flagged RPCSRV_NONIDEMPOTENT: a retransmission of a call
 * in progress is dropped, one of a finished call gets its first reply. */
void rpcsrv_set_drc(struct rpcsrv *s, struct drc *drc);

/* Handles one call record: appends the whole reply message to out (no
 * record mark) and returns 1, returns 0 when nothing is to be sent, or
 * -BFS_EFORMAT when the record is not an RPC call at all (a stream
 * transport closes the connection), -ENOMEM. */
int rpcsrv_dispatch(struct rpcsrv *s, const uint8_t *rec, size_t len,
                    const struct rpcsrv_peer *peer, struct xdr_enc *out);
/* The same for stream transports: the reply is appended with its record
 * mark (a single last fragment). */
int rpcsrv_dispatch_record(struct rpcsrv *s, const uint8_t *rec, size_t len,
                           const struct rpcsrv_peer *peer, struct xdr_enc *out);

#endif
