/*
 * NFS version 3 (program 100003, RFC 1813) on the dispatcher: the 22
 * procedures served from an open filesystem (store/fs.h) — its view for
 * reads, write staging (server/stage.h) and signed entries for writes.
 *
 * The procedure table lives in nfs3.c, one handler per procedure number.
 * NFS errors (NFS3ERR_*) are ordinary results; only undecodable arguments
 * are GARBAGE_ARGS. An NFSv2 or v4 call gets PROG_MISMATCH 3..3 from the
 * dispatcher, which makes Linux fall back to v3. nfsd_register(rpc, NULL)
 * (no filesystem) serves NULL only; every other procedure is PROC_UNAVAIL.
 *
 * Behaviours chosen (the RFC leaves them to the server):
 *
 *  - Handles: server/fh.h (44 bytes, view node identity + filesystem tag).
 *    Malformed -> NFS3ERR_BADHANDLE; another filesystem's, or an object
 *    that no longer exists (a removed directory, a file or symlink whose
 *    last name was removed) -> NFS3ERR_STALE. Staged data of a file that
 *    is gone is dropped, never sealed.
 *  - READDIR/READDIRPLUS: the cookie verifier is always 0 and cookies are
 *    the view's 63-bit name hashes, "." is cookie 1 and ".." is
 *    cookie 2. A cookie stays valid whatever changes in the directory: a
 *    listing resumed after a name that has vanished continues with the
 *    names hashing after it. A call with a non-zero cookie and a non-zero
 *    verifier gets NFS3ERR_BAD_COOKIE (it was not ours). "/.basefs" is
 *    found by LOOKUP and never listed.
 *  - Writes are staged per object and sealed into ONE new version (a WRITE
 *    entry signed with the serving key, logged durably) at COMMIT, after
 *    NFSD_IDLE_NS without writes (nfsd_tick), on RENAME or SETATTR of the
 *    file, and at nfsd_seal_all() (shutdown). The new version's parent is
 *    the version the staging started from, so a concurrent replicated
 *    update becomes a visible conflict instead of a lost update.
 *    UNSTABLE writes are acknowledged once in the staging file; FILE_SYNC
 *    and DATA_SYNC ones after fdatasync (and are answered FILE_SYNC; no
 *    COMMIT follows them, so they become a version after NFSD_IDLE_NS).
 *    After a seal the staged file stays as a clean copy of the new
 *    version (reads, and the next writes, need no copy from the blocks)
 *    until the head moves or it is idle.
 *  - The write verifier (writeverf3) is 8 random bytes drawn at every
 *    nfsd_new(): it changes on every start, since UNSTABLE staged data may
 *    have been lost. Durable staged data (FILE_SYNC) is recovered and
 *    sealed at start, so it is never lost.
 *  - CREATE EXCLUSIVE: the verifier is kept in the new file's mtime (its low
 *    20 bits hold a digest of it; the rest is the creation time, at most
 *    1 ms early), so a retransmitted create of the same name with the same
 *    verifier succeeds as long as the file has not changed since. The
 *    client sets the real times with SETATTR afterwards, as RFC 1813 says.
 *  - Permissions: mode bits against the AUTH_SYS credential (owner, group
 *    and supplementary groups, other), on every operation and in ACCESS;
 *    the identity is squashed as the exports say (server/exports.h: by
 *    default uid 0 from a loopback address is root, from elsewhere
 *    nobody); AUTH_NONE is nobody (65534). A read-only export gets
 *    NFS3ERR_ROFS for every write and no write bits in ACCESS. As Linux's
 *    nfsd does, the owner of a file may READ and WRITE it whatever its
 *    mode (open-then-chmod).
 *  - The serving key: a write needs a grant of the key covering the target
 *    (view_check_write); where it has none, NFS3ERR_ACCES. A peer without a
 *    key, or whose key holds no grant anywhere (and is not the root key),
 *    is read-only: ACCESS reports no MODIFY/EXTEND/DELETE bits and every
 *    write gets NFS3ERR_ROFS. /.basefs is read-only: NFS3ERR_ROFS.
 *  - MKNOD: NFS3ERR_NOTSUPP for devices, sockets and FIFOs; BADTYPE for
 *    the other types. atime is not stored: it reads as mtime; SETATTR of
 *    atime alone succeeds and changes nothing. A chmod/chown is a MODE
 *    entry carrying the file's mtime (an entry has one time), so it does
 *    not move mtime.
 *  - UDP clients get 32 KiB rtmax/wtmax (a reply fits one datagram).
 *  - READDIR/READDIRPLUS replies are cached (256 replies, 8 MiB at most,
 *    least recently used out first): a repeat of a call (same handle,
 *    cookie, dircount, maxcount) while nothing changed — the view's
 *    change counter (view_changes) and the server's own, which every
 *    write, staging change, seal and new view moves — is answered with
 *    the bytes encoded the first time, after the same per-call checks
 *    (handle, type, permission, cookie verifier). Byte for byte what
 *    encoding now would give (tests/server/test_nfs3_rdcache.c).
 *
 * This header stays free of xdr/nfs3.h so tests may include it next to
 * libnfs's headers.
 */
#ifndef BASEFS_SERVER_NFS3_H
#define BASEFS_SERVER_NFS3_H

#include <stdbool.h>
#include <stdint.h>

#include "server/rpc.h"

/* Staged writes older than this are sealed by nfsd_tick(). */
#define NFSD_IDLE_NS (2ull * 1000000000ull)
/* A COMMIT seals at once: when it returns, the new version is durable
 * and visible to everything reading the filesystem (the CLI included) --
 * except when the seal has NFSD_SEAL_BG_MIN bytes or more to cut (written
 * since the last seal; the whole file without one): that COMMIT makes the
 * staged file durable (fdatasync; recovered and sealed at the next start)
 * and answers, and the version is encoded on a worker thread and logged
 * right after (nfsd_poll). The client's data is as safe either way; what
 * it waits for is the disk, not the chunking, hashing and compressing of
 * tens of megabytes. Smaller seals stay in the COMMIT: a client streaming
 * a file COMMITs every few MiB and writes on at once, so a seal in the
 * background would only add an fdatasync of the staged bytes. Until the
 * version is logged, NFS reads and attributes show the staged bytes (as
 * they did before the COMMIT; the version keeps the ctime they showed), and
 * whatever would change, seal or remove the file (WRITE, SETATTR, RENAME,
 * REMOVE, a COMMIT of another such file) or look past NFS (nfsd_flush, the
 * CLI) waits for it. One such seal runs at a time. If it fails (the disk
 * filled up meanwhile, the key lost its grant) the error is logged and the
 * staged file stays durable and is sealed again when idle, as data written
 * FILE_SYNC is; a COMMIT refused at once (no grant) is refused before
 * answering. When the disk has less than twice the file's size plus 128
 * MiB free, the COMMIT seals at once, so that it can report NFS3ERR_NOSPC.
 * BASEFS_NO_BG_SEAL=1 in the environment turns it off (for comparisons).
 * Linux COMMITs every few MiB while streaming a large file; each seal
 * re-cuts only around the ranges written since the last one (store/content.h,
 * content_blocks_update), until most of the file changed. nfsd_tick()
 * looks no further than files quiet for NFSD_QUIET_NS (the list is oldest
 * first). */
#define NFSD_QUIET_NS (300ull * 1000000ull)
#define NFSD_SEAL_BG_MIN (16u << 20)
/* At most this many files are staged at once (each holds a descriptor);
 * staging one more seals the least recently written first. */
#define NFSD_STAGED_MAX 256
/* Files of up to NFSD_STAGE_MEM_FILE bytes are staged in memory, up to
 * NFSD_STAGE_MEM_TOTAL bytes together (server/stage.h, stage_set_memory):
 * the small-file writes of a configuration tree touch no filesystem until
 * their seal. Larger files, and data written FILE_SYNC, are staged on disk.
 * BASEFS_NO_MEM_STAGE=1 in the environment stages everything on disk (for
 * comparisons). */
#define NFSD_STAGE_MEM_FILE (64u << 10)
#define NFSD_STAGE_MEM_TOTAL (8u << 20)

struct fs;
struct key;
struct nfsd;

enum nfsd_log_level { NFSD_LOG_ERROR = 0, NFSD_LOG_WARN, NFSD_LOG_INFO, NFSD_LOG_DEBUG };
typedef void (*nfsd_log_fn)(void *ctx, int level, const char *line);

/*
 * Serves FS (open for writing; it must outlive the server). KEY signs the
 * writes (NULL: read-only peer); it is not copied. Opens the staging
 * directory (fs dir/stage) and seals the durable staged data a previous
 * run left (see stage.h). LOG (may be NULL) receives a line per notable
 * event. Writes one log line per recovered file.
 */
int nfsd_new(struct fs *fs, const struct key *key, nfsd_log_fn log, void *log_ctx,
             struct nfsd **out);
/* Frees the server; staged data stays on disk (call nfsd_seal_all first). */
void nfsd_free(struct nfsd *d);

/* Registers NFS v3 with rpc; ctx is a struct nfsd * (or NULL: NULL only). */
int nfsd_register(struct rpcsrv *rpc, void *ctx);

/* The root handle, for MOUNT (mountd_root_fh_fn; ctx is the struct nfsd *). */
int nfsd_root_fh(void *ctx, uint8_t fh[64], uint32_t *len);

/* Seals every staged file idle for NFSD_IDLE_NS at NOW_NS (CLOCK_REALTIME),
 * and every COMMITted one quiet for NFSD_QUIET_NS. Call it every ~100 ms.
 * Returns the number sealed or the first error. */
int nfsd_tick(struct nfsd *d, uint64_t now_ns);
/* Seals every file with staged data, now, keeping clean copies (for
 * readers outside NFS, e.g. the control socket, before they look at the
 * view). Linux writes a small file at close() as one FILE_SYNC WRITE and
 * no COMMIT: without this, the CLI would not see it until the idle seal. */
int nfsd_flush(struct nfsd *d);
/* Seals every staged file (shutdown). Returns the number sealed or the
 * first error (the others are still tried). */
int nfsd_seal_all(struct nfsd *d);
/* Logs the version of a background seal that has finished (nfsd_tick does
 * too, every call). Returns its result: 0, or the error it logged (its
 * file then stays staged and durable, and is sealed again when idle). */
int nfsd_poll(struct nfsd *d);
/* FN(CTX) is called on the worker thread when a background seal finishes:
 * it must only wake the loop (uv_async_send), which then calls nfsd_poll. */
void nfsd_set_wake(struct nfsd *d, void (*fn)(void *ctx), void *ctx);
struct nfsd_seal_stats {
  uint64_t bg_started, bg_finished; /* background seals since nfsd_new */
};
void nfsd_seal_stats(const struct nfsd *d, struct nfsd_seal_stats *out);
/* Files currently staged. */
unsigned nfsd_staged(const struct nfsd *d);
/* The READDIR(PLUS) reply cache (see above): counters since nfsd_new,
 * and what it holds now. */
struct nfsd_rdc_stats {
  uint64_t hits, misses, stored;
  unsigned entries;
  size_t bytes;
};
void nfsd_rdc_stats(const struct nfsd *d, struct nfsd_rdc_stats *out);
/* Bypasses the cache (OFF: neither consulted nor filled; what it holds
 * stays) or uses it again; on by default. For tests comparing cached
 * replies with freshly encoded ones. */
void nfsd_rdc_enable(struct nfsd *d, bool on);
/* True when the serving key may write nowhere (no key, or no grant). */
bool nfsd_readonly(struct nfsd *d);

#endif
