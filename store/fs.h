/*
 * An open filesystem: the glue between the log, the block store, the view
 * and the checkpoint, plus the write helpers that build and sign entries.
 *
 * On disk, one filesystem is the directory HOME/fs/NAME:
 *
 *   meta        "basefs-fs <format>\nroot <hex id>\n" (written once, atomically)
 *   log         the append-only entry log (store/log.h); besides the entries
 *               it holds flush notes, 40-byte records no entry decoder takes
 *               (see fs_commit())
 *   blocks/     the content-addressed block store (store/blocks.h)
 *   view.ckpt   the view checkpoint (store/view.h) and the log offset it covers
 *   lock        flock()ed by the one writer; holds its pid as text
 *   ctl         the serving daemon's control socket (see forwarding, below)
 *
 * Writer and readers. A writer holds an exclusive, non-blocking flock on
 * `lock` for as long as the filesystem is open; a second writer gets -EBUSY
 * at once (fs_lock_owner() says who holds it). Only the writer repairs the
 * log's torn tail and writes checkpoints. A reader takes no lock, never
 * writes a byte, never blocks: it reads the checkpoint and the log up to the
 * last complete record, whatever the writer is doing.
 *
 * Open = load the checkpoint if it is valid, then apply only the log records
 * after the offset it covers. Entries in the log were verified when they were
 * appended, so replay never re-verifies signatures. A checkpoint that does
 * not load (corrupt, of another filesystem, or covering more than the log
 * holds) is ignored: the whole log is replayed instead.
 *
 * Checkpoint policy: a writer saves one (atomically) on close once 1024 or
 * more records lie after the last one, and a long-lived writer also at a
 * commit once 65536 have accumulated; so an open replays at most about a
 * thousand records after a quiet close, whatever the history's length,
 * and a one-entry command does not rewrite a large checkpoint every time.
 * The block store is opened on first use (opening it indexes its packs).
 *
 * Writes. fs_submit() applies one entry to the view; if the view takes it
 * (applied, or held pending for an entry arriving from a peer) it is appended
 * to the log. Appends are buffered: fs_commit() makes everything submitted so
 * far durable with one sync (group commit), and fs_close() commits. On ext4
 * that is one device flush for the blocks and the entries together
 * (blocks_sync_deferred(), THE RULE in store/blocks.h): the commit's log
 * records start with a flush note naming the pack range they rely on, and
 * opening drops the log from the last note if a crash lost that range
 * (those records were never acknowledged; the bytes go to
 * log.tail-OFFSET). Pending
 * entries are persisted like any other (they are in the log and are held
 * pending again on replay), so the view's pending set survives restarts.
 *
 * Entries built here (put, mkdir, ...) are signed by the caller's key and
 * checked against the view before anything is written: a key without a
 * covering grant gets -BFS_ENOGRANT and nothing changes. A *local* entry
 * (built here, or handed over by a local client) either counts or is
 * refused; it is never kept pending. What a failed helper or commit had
 * applied is taken out of the view again (see fs_set_view_hook()).
 *
 * Paths are absolute, '/'-separated; empty components are ignored; "." and
 * ".." are refused (-EINVAL).
 */
#ifndef BASEFS_STORE_FS_H
#define BASEFS_STORE_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store/blocks.h"
#include "store/entry.h"
#include "store/hash.h"
#include "store/key.h"

#define FS_FORMAT_VERSION 1
#define FS_NAME_MAX 64
#define FS_PATH_MAX 4096

struct fs;
struct view;
struct blocks;

/* A filesystem name is 1..64 bytes of [A-Za-z0-9._-], not starting with '.'. */
bool fs_name_valid(const char *name);

/*
 * Creates HOME/fs/NAME (and HOME/fs), signs the root MKDIR with KEY (the
 * root key owns "/"), writes "/.cluster" with CLUSTER (LEN bytes) unless CLUSTER is NULL,
 * and returns it open for writing. -EEXIST if NAME already exists.
 */
int fs_create(const char *home, const char *name, const struct key *key, const void *cluster,
              size_t cluster_len, struct fs **out);

/* Opens HOME/fs/NAME. -ENOENT if there is no such filesystem, -EBUSY if
 * WRITER and another process holds the lock. */
int fs_open(const char *home, const char *name, bool writer, struct fs **out);

/* The pid written by the current lock holder, or 0 if unknown / not held. */
pid_t fs_lock_owner(const char *home, const char *name);

/* Commits, saves a checkpoint (writer), releases the lock and frees FS. */
int fs_close(struct fs *fs);

/* Closes FS without committing: what was submitted since the last commit is dropped. */
int fs_discard(struct fs *fs);

/* Makes every submitted entry durable (one sync). No-op for readers. */
int fs_commit(struct fs *fs);

/* Writes a checkpoint covering the whole log now (writer only). */
int fs_checkpoint(struct fs *fs);

/* Calls FN for every filesystem name under HOME, in sorted order. */
int fs_list(const char *home, int (*fn)(const char *name, void *arg), void *arg);

struct view *fs_view(struct fs *fs);
struct blocks *fs_blocks(struct fs *fs);
const char *fs_dir(const struct fs *fs);
const hash_t *fs_root(const struct fs *fs);
/* Records applied (or held pending) at open from the checkpoint / the log tail. */
void fs_open_stats(const struct fs *fs, uint64_t *from_checkpoint, uint64_t *replayed);

/*
 * Applies E (signed; verified by the caller if it came from outside) and
 * appends it to the log if the view applied it or holds it pending. With
 * LOCAL set, an entry the view would only hold pending (no grant, unknown
 * parent) is refused instead: local writes either count or change nothing.
 * On refusal returns a negative error and, if REASON, a short sentence.
 */
int fs_submit(struct fs *fs, const struct entry *e, bool local, const char **reason);

/*
 * When a local entry is refused, a commit fails, or a write helper fails
 * half-way, what was applied for it is taken out of the view again by
 * reloading the view from the checkpoint and the log (plus what is still
 * batched): the view then holds exactly what is durable or about to be. This
 * REPLACES the view object, so it is only done for a handle whose view was
 * never handed out by fs_view(), or whose owner registered FN: FN is called
 * with the new view after each replacement (refresh the pointer, re-install
 * listeners and marks there). Otherwise the handle keeps its view and only
 * stops writing checkpoints (the failed entries are dropped from the batch
 * either way, so they never reach the log).
 */
void fs_set_view_hook(struct fs *fs, void (*fn)(void *arg, struct view *v), void *arg);

/* Decodes, verifies (signature) and submits raw entry bytes from outside. */
int fs_submit_raw(struct fs *fs, const uint8_t *buf, size_t len, const char **reason);

/* ---- reading ---- */

enum fs_type { FS_DIR = 1, FS_FILE = 2, FS_SYMLINK = 3 };

struct fs_stat {
  hash_t object;
  enum fs_type type;
  uint32_t mode, uid, gid;
  uint64_t size;
  uint64_t mtime_ns;
};

int fs_resolve(struct fs *fs, const char *path, hash_t *object);
int fs_stat(struct fs *fs, const char *path, struct fs_stat *st);
/* A file's content (malloc'd; *DATA may be NULL when *LEN is 0), or a symlink's target. */
int fs_read(struct fs *fs, const char *path, uint8_t **data, size_t *len);
/* Like fs_read(), but hands the content to FN piece by piece (large files are
 * read block by block, never whole in memory); FN's non-zero return stops it. */
int fs_stream(struct fs *fs, const char *path, int (*fn)(void *arg, const uint8_t *p, size_t n),
              void *arg);
/* The content of one version (a WRITE/REVERT/MODE entry id) of a file. */
int fs_read_version(struct fs *fs, const hash_t *version, uint8_t **data, size_t *len);
/* The names in directory PATH, sorted bytewise; free with fs_names_free(). */
int fs_readdir(struct fs *fs, const char *path, char ***names, size_t *count);
void fs_names_free(char **names, size_t count);

struct fs_version {
  hash_t id;
  uint8_t action;
  uint64_t mtime_ns;
  hash_t author;  /* key fingerprint */
  char keyname[ENTRY_NAME_MAX + 1]; /* grant name of the author, "" if unknown */
  bool current;   /* the head of its thread */
  bool loser;     /* a leaf that lost a conflict */
};

/* Every version of PATH's object (both threads), oldest first; free() *OUT. */
int fs_versions(struct fs *fs, const char *path, struct fs_version **out, size_t *count);

struct fs_grant {
  hash_t id;          /* the GRANT entry */
  hash_t fingerprint; /* the grantee */
  char keyname[ENTRY_NAME_MAX + 1];
  char path[FS_PATH_MAX];
};

/* Every active grant (and the root key, with id = the root entry); free() *OUT. */
int fs_grants(struct fs *fs, struct fs_grant **out, size_t *count);

/* The grant name of FINGERPRINT, or "" if it has none. */
void fs_key_name(struct fs *fs, const hash_t *fingerprint, char out[ENTRY_NAME_MAX + 1]);

/* Calls FN for every entry in the log, in log order, up to what the view
 * applied (a reader does not meet records it hid, or that a writer appended
 * after it opened). */
int fs_foreach_entry(struct fs *fs, int (*fn)(const struct entry *e, void *arg), void *arg);

/* ---- writing (each builds, signs and submits; none writes if refused) ---- */

/* Creates or updates the file PATH (its parent must exist). */
int fs_put(struct fs *fs, const struct key *key, const char *path, const void *data, size_t len,
           const char **reason);
/* The same with the content of the regular file FD, offset 0 to EOF, streamed
 * into blocks (never whole in memory); -EINVAL if FD is no regular file. */
int fs_put_fd(struct fs *fs, const struct key *key, const char *path, int fd, const char **reason);
int fs_mkdir(struct fs *fs, const struct key *key, const char *path, const char **reason);
/* Removes PATH; a non-empty directory needs RECURSIVE (deleted bottom-up). */
int fs_rm(struct fs *fs, const struct key *key, const char *path, bool recursive,
          const char **reason);
int fs_mv(struct fs *fs, const struct key *key, const char *from, const char *to,
          const char **reason);
int fs_symlink(struct fs *fs, const struct key *key, const char *target, const char *linkpath,
               const char **reason);
int fs_chmod(struct fs *fs, const struct key *key, const char *path, uint32_t mode,
             const char **reason);
/* Grants the key PUB (named KEYNAME) write permission on directory PATH. */
int fs_grant(struct fs *fs, const struct key *key, const char *path,
             const uint8_t pub[KEY_PUBLIC_SIZE], const char *keyname, const char **reason);
/* Revokes the grants on PATH of the key named WHO (grant name, or a fingerprint
 * in hex, full or a unique prefix of >= 8 digits), then acks its current leaves. */
int fs_revoke(struct fs *fs, const struct key *key, const char *path, const char *who,
              const char **reason);
/* Makes the version HEX (full id or unique prefix >= 8 hex digits) of PATH current again. */
int fs_revert(struct fs *fs, const struct key *key, const char *path, const char *hex,
              const char **reason);

/* ---- forwarding: writing through the filesystem's owner ----
 *
 * While a daemon owns a filesystem (holds its lock), a command writes through
 * the daemon's control socket: it opens the filesystem read-only, calls
 * fs_set_forward(), and uses the write helpers as usual. Entries are built
 * against this handle's view, signed with the command's own key (private
 * keys never cross the socket), applied to this handle's in-memory view (so
 * a multi-entry command sees its own changes) and kept; blocks new contents
 * need go to a private temporary store. fs_commit() (and fs_close()) then
 * sends request frames through SEND: each block the owner lacks, then the
 * entries (one frame per 8192 entries, each frame one commit on the
 * owner's side). It returns 0 once the owner made them durable and applied;
 * otherwise fs_commit_reason() says why.
 *
 * Every command that finds a daemon first sends SYNC (fs_ctl_sync()): the
 * owner makes what it holds in memory durable, so a command then reading the
 * filesystem directly sees everything the daemon acknowledged.
 *
 * The owner feeds each request frame to fs_ctl_handle(), which always
 * writes a response frame: a block is checked against its hash and stored;
 * the entries are decoded and verified (all of them) before any is applied
 * and committed, and refused all together with a reason. The frames are
 * versioned; transport (length prefix, socket) is the caller's.
 */
#define FS_CTL_RESP_MAX 1100
/* The largest request frame (one stored block and its header). */
#define FS_CTL_FRAME_MAX (BLOCKS_MAX_SIZE + 4096)

/* Sends REQ and receives the response into RESP (CAP bytes): its length or an error. */
typedef int (*fs_forward_fn)(void *arg, const uint8_t *req, size_t len, uint8_t *resp, size_t cap);

/* Makes the write helpers of a read-only FS forward through SEND. */
int fs_set_forward(struct fs *fs, fs_forward_fn send, void *arg);
/* Why the last commit of a forwarding FS failed (the owner's reason), or NULL. */
const char *fs_commit_reason(const struct fs *fs);
/* Client side: asks the owner to make everything it holds durable and
 * visible to direct readers (staged writes included) before a command reads. */
int fs_ctl_sync(fs_forward_fn send, void *arg, char *reason, size_t cap);
/* The owner's hook for that request (e.g. seal staged NFS writes); it runs
 * before fs_ctl_handle() commits and answers. 0 or a negative error. */
void fs_set_ctl_sync(struct fs *fs, int (*fn)(void *arg), void *arg);
/* The owner's side: handles one request frame; writes the response frame
 * into OUT (at least FS_CTL_RESP_MAX bytes) and returns its length. */
int fs_ctl_handle(struct fs *fs, const uint8_t *req, size_t len, uint8_t *out, size_t cap);
/* Decodes a response frame: the status (0 or a negative error) and the reason. */
int fs_ctl_response(const uint8_t *frame, size_t len, int *status, char *reason, size_t cap);

#endif
