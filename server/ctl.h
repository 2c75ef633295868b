/*
 * The daemon's end of the control socket (DESIGN.md, "Control socket"):
 * while `serve` owns a filesystem, every CLI write command on it connects
 * to $fsdir/ctl and sends request frames (u32 little-endian length, then
 * the payload; at most FS_CTL_FRAME_MAX bytes); each gets one response
 * frame from fs_ctl_handle() (store/fs.h), which verifies, applies and
 * commits before answering. The socket is bound through the relative path
 * "ctl" from the filesystem's directory, so the 108-byte sun_path limit
 * never bites whatever the depth of $BASEFS_HOME; it is mode 0600.
 *
 * Before each request the BEFORE callback runs (the daemon seals staged
 * NFS writes a COMMIT asked for, so a command sees what NFS committed).
 */
#ifndef BASEFS_SERVER_CTL_H
#define BASEFS_SERVER_CTL_H

#include <uv.h>

struct fs;
struct ctlsrv;

/* Binds DIR/ctl (replacing a stale socket: the caller holds the fs lock)
 * and serves FS on LOOP. -errno on failure. */
int ctlsrv_start(uv_loop_t *loop, struct fs *fs, const char *dir, void (*before)(void *arg),
                 void *arg, struct ctlsrv **out);
/* Number of requests handled. */
unsigned long ctlsrv_requests(const struct ctlsrv *s);
/* Closes every connection and the socket, removes DIR/ctl; done(arg) runs
 * on the loop once every handle is closed and s is freed. */
void ctlsrv_stop(struct ctlsrv *s, void (*done)(void *arg), void *arg);

#endif
