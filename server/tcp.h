/*
 * ONC RPC over TCP on libuv: accept, reassemble records (rpc.h), dispatch,
 * write the replies in call order.
 *
 * Per connection: replies of one read are batched into one write; when more
 * than TCPSRV_QUEUE_MAX bytes of replies wait for the socket, the connection
 * stops reading and dispatching until the client drains them (a client that
 * pipelines READs but never reads replies cannot make us buffer without
 * bound). A record over RPCSRV_RECORD_MAX, a record that is not an RPC call,
 * or a truncated record at EOF closes the connection. Client ports need not
 * be privileged.
 */
#ifndef BASEFS_SERVER_TCP_H
#define BASEFS_SERVER_TCP_H

#include <sys/socket.h>
#include <uv.h>

#include "server/rpc.h"

#define TCPSRV_QUEUE_MAX (8u << 20)
/* Connections served at once; more are accepted and closed (each may hold
 * a record buffer of up to RPCSRV_RECORD_MAX). */
#define TCPSRV_CONNS_MAX 1024u

struct tcpsrv;

/* Parses "ADDR:PORT" or "[V6ADDR]:PORT" (numeric addresses, port
 * mandatory); -EINVAL otherwise. */
int tcpsrv_parse_addr(const char *s, struct sockaddr_storage *ss);

/* Listens on addr (an IPv6 address listens on IPv6 only) and serves rpc on
 * loop. Port 0 picks a free port (see tcpsrv_port). On failure (-errno,
 * e.g. -EADDRINUSE) the loop must still run once to release a handle. */
int tcpsrv_start(uv_loop_t *loop, struct rpcsrv *rpc, const struct sockaddr *addr,
                 struct tcpsrv **out);
/* Default of tcpsrv_set_spin(). */
#define TCPSRV_SPIN_DEFAULT_NS 50000u
/*
 * After replying, poll a connection for its next call for up to NS
 * nanoseconds (yielding the CPU between tries) instead of sleeping at once:
 * a client with one call in flight then does not pay a wake-up of this
 * thread per call. 0 (the default of tcpsrv_start) turns it off. A spin
 * that catches nothing stops spinning on that connection until the client
 * again calls within NS of a reply, so idle or slow clients cost ~nothing.
 * A client whose packets come in on this thread's CPU is never spun for.
 */
void tcpsrv_set_spin(struct tcpsrv *s, uint64_t ns);
/* Reads (of a call or part of one) made by spinning rather than by the loop. */
uint64_t tcpsrv_spin_served(const struct tcpsrv *s);
/* Spins that caught nothing within the budget. */
uint64_t tcpsrv_spin_missed(const struct tcpsrv *s);
/* The bound port. */
int tcpsrv_port(const struct tcpsrv *s);
/* Connections currently open. */
size_t tcpsrv_connections(const struct tcpsrv *s);
/* Stops listening and closes every connection (replies not yet written
 * are dropped: the clients retransmit). done(arg) runs on the loop once
 * every handle is closed and s is freed. */
void tcpsrv_stop(struct tcpsrv *s, void (*done)(void *arg), void *arg);

#endif
