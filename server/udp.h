/*
 * ONC RPC over UDP on libuv: one call per datagram, the reply (if any) sent
 * back to the datagram's source address from the same socket. No record
 * marking (RFC 5531 §10 applies to streams only).
 *
 * Sizes: a reply must fit one datagram (UDPSRV_DATAGRAM_MAX); a reply that
 * would not is answered SYSTEM_ERR (the dispatcher logs it). NFS advertises
 * UDPSRV_IO_MAX as rtmax/wtmax to UDP clients (FSINFO, server/nfs3.c), as
 * Linux's nfsd does, so READ/WRITE/READDIR replies fit.
 *
 * Replies the socket cannot take at once are queued up to UDPSRV_QUEUE_MAX
 * bytes and dropped beyond that: a UDP client retransmits. A datagram that
 * is not an RPC call is dropped (the dispatcher logs it).
 * The duplicate-request cache and the exports are the dispatcher's
 * (rpcsrv_set_drc, rpcsrv_set_exports): with UDP, retransmissions are the
 * normal way a lost reply is recovered, so serve UDP with a DRC.
 */
#ifndef BASEFS_SERVER_UDP_H
#define BASEFS_SERVER_UDP_H

#include <sys/socket.h>
#include <uv.h>

#include "server/rpc.h"

/* The largest UDP payload over IPv4. */
#define UDPSRV_DATAGRAM_MAX 65507u
/* rtmax/wtmax advertised to UDP clients (Linux's nfsd uses 32 KiB too). */
#define UDPSRV_IO_MAX 32768u
#define UDPSRV_QUEUE_MAX (4u << 20)
/* The socket's receive buffer is raised to this (a burst of 32 KiB
 * WRITEs must not be dropped by the kernel before we read it). */
#define UDPSRV_RCVBUF (4 << 20)

struct udpsrv;

/* Binds addr (an IPv6 address binds IPv6 only; port 0 picks a free port)
 * and serves rpc on loop. On failure (-errno) the loop must still run once
 * to release the handle. */
int udpsrv_start(uv_loop_t *loop, struct rpcsrv *rpc, const struct sockaddr *addr,
                 struct udpsrv **out);
int udpsrv_port(const struct udpsrv *s);
/* Stops; queued replies are dropped. done(arg) runs on the loop once the
 * handle is closed and s freed. */
void udpsrv_stop(struct udpsrv *s, void (*done)(void *arg), void *arg);

#endif
