/*
 * Write staging: NFS WRITEs land in a local file per object until they are
 * sealed into ONE new signed version (COMMIT, an idle timeout, a RENAME or
 * SETATTR of the file, shutdown). The sealing itself (content encoding,
 * signing, logging) is the NFS layer's; this module only keeps the files.
 *
 * A staged file holds the object's WHOLE new content: it starts as a copy of
 * the version it is based on (filled by the caller) and takes writes in
 * place, so reads of a staged object are plain preads (read-your-writes) and
 * sealing streams one file. After a seal the file is kept, clean, as a copy
 * of the new version (stage_rebase), so the next writes need no new copy.
 * (The first copy costs O(size); an index of written ranges over the base
 * version would avoid it for huge files and is left for later.)
 *
 * Incremental sealing: the file remembers which byte ranges were written
 * (and how short it ever got) since its base, and can hold the base's block
 * list (given at stage_rebase), so a seal re-cuts only around the changes
 * (store/content.h, content_base).
 *
 * Recycling: a dropped file (its bytes no longer matter: clean, sealed or
 * discarded) goes, still or again named .u, to a pool of up to 256 files;
 * the next stage_create takes one as it is (no syscall when it is open)
 * instead of creating an inode (ext4's inode allocation, slowed by the
 * deletions, was the costliest syscall of a small rewrite: ~0.5 ms). A
 * pooled .u is
 * junk like any .u, never read: it stays on disk at stage_free() and the
 * next start pools it again. Junk is bounded: pooled files larger than
 * 64 KiB are emptied. A full disk (ENOSPC on a write) deletes the pool.
 *
 * Files live in DIR (e.g. fs/NAME/stage) as <hex>.u while no byte of it
 * was written durably (a name of the file's own, 64 hex digits, not its
 * object's: a recycled file needs no rename), and <object-hex>.s after the
 * first FILE_SYNC or DATA_SYNC write (fdatasync'd, renamed, directory
 * synced); back to its .u name once sealed (stage_rebase). On start,
 * stage_open() discards the bytes of .u files (their writes were UNSTABLE:
 * the new write verifier makes clients resend them; the files themselves
 * are recycled as junk, see below, or deleted) and keeps .s files, which
 * the caller seals at once (stage_foreach()): data acknowledged as durable
 * is never lost.
 */
#ifndef BASEFS_SERVER_STAGE_H
#define BASEFS_SERVER_STAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store/blocks.h"
#include "store/content.h"
#include "store/hash.h"

struct stage;
struct stage_file;

/* Opens (creating) DIR and recovers its files; see above. */
int stage_open(const char *dir, struct stage **out);
/* Closes every file (keeps them on disk) and frees S. */
void stage_free(struct stage *s);

/* The staged file of object OBJ, or NULL. */
struct stage_file *stage_get(struct stage *s, const hash_t *obj);

/*
 * Small files in memory: a file expected to hold at most FILE_MAX bytes
 * (stage_create's SIZE_HINT) starts in memory (a memfd) while all files in
 * memory hold at most TOTAL_MAX bytes together. It moves to disk (a .u file,
 * as any) before a write or truncate makes it larger than that, and before
 * it must be durable (a SYNC write, stage_sync). Writes there touch no
 * filesystem: no block allocation, no inode to update, nothing for the
 * kernel to write back later (a staged copy is sealed into the store, so
 * writing it to disk too was wasted work). Only UNSTABLE data lives there,
 * which a crash may lose (the NFS layer's new write verifier makes clients
 * resend it), as it may lose a .u file's. 0 (the default): all on disk.
 */
void stage_set_memory(struct stage *s, uint64_t file_max, uint64_t total_max);
/* The bytes held in memory now. */
uint64_t stage_memory_bytes(const struct stage *s);
bool stage_in_memory(const struct stage_file *f);

/*
 * Starts staging OBJ on top of version BASE: takes a file (in memory when
 * SIZE_HINT, the most FILL will write, allows it: see stage_set_memory;
 * else a recycled one LEN bytes long holding junk, or a new empty one: LEN
 * 0) and lets FILL(ARG, fd, LEN, &size) write the base content (*SIZE
 * bytes) from offset 0. FILL may leave out one range R that the caller writes right after
 * (stage_write) and drops the file if that fails; otherwise, and once R is
 * written, the file must be exactly max(*SIZE, end of R) bytes long (FILL
 * truncates a longer recycled file). FILL may be NULL (an empty base).
 * -EEXIST if OBJ is staged already.
 */
int stage_create(struct stage *s, const hash_t *obj, const hash_t *base, uint64_t size_hint,
                 int (*fill)(void *arg, int fd, uint64_t len, uint64_t *size), void *arg,
                 uint64_t now_ns, struct stage_file **out);

/* Writes LEN bytes at OFF; with SYNC the file is durable before it returns.
 * NOW_NS becomes the staged mtime. Returns 0 or -errno. */
int stage_write(struct stage *s, struct stage_file *f, uint64_t off, const void *data, size_t len,
                bool sync, uint64_t now_ns);
/* Up to LEN bytes at OFF; returns the count (0 at EOF) or -errno. */
ssize_t stage_read(struct stage_file *f, uint64_t off, void *buf, size_t len);
int stage_truncate(struct stage *s, struct stage_file *f, uint64_t size, uint64_t now_ns);
/* Makes the file durable (as a SYNC write would). */
int stage_sync(struct stage *s, struct stage_file *f);

uint64_t stage_size(const struct stage_file *f);
uint64_t stage_mtime(const struct stage_file *f);
int stage_fd(const struct stage_file *f);
const hash_t *stage_object(const struct stage_file *f);
/* The version the staged content is based on (zero after recovery). */
const hash_t *stage_base(const struct stage_file *f);
/* The size of the content it started from (0 after recovery). */
uint64_t stage_base_size(const struct stage_file *f);
/* When the file was last written (ns, caller's clock). */
uint64_t stage_last_write(const struct stage_file *f);

/* Dirty: written since it was created or rebased (what a seal must turn
 * into a version). A clean file is a cached copy of its base version. */
bool stage_dirty(const struct stage_file *f);
/* After sealing: F now holds exactly version BASE (clean). Its data is in
 * the log, so it is no longer recovered at start (.s becomes .u). BLOCKS
 * (or NULL, or n = 0) is BASE's block list: F takes it over (and frees it). */
int stage_rebase(struct stage *s, struct stage_file *f, const hash_t *base,
                 struct blocks_list *blocks);

/* Right after stage_create: BLOCKS is the block list of the base content
 * FILL copied (ignored unless its total is that size); F takes it over. */
void stage_set_base_blocks(struct stage_file *f, struct blocks_list *blocks);

/*
 * What F still shares with its base, for content_encode_staged(): the
 * base's block list (NULL when unknown), the written ranges since the base
 * (sorted, disjoint; a superset of the changed bytes: close ranges get merged
 * past STAGE_RANGES_MAX) and the least size F had since (bytes from there on
 * may differ). The pointers stay valid until F's next change.
 */
#define STAGE_RANGES_MAX 1024
void stage_base_content(const struct stage_file *f, struct content_base *out);
/* The bytes of F that may differ from its base (the written ranges and
 * everything past its least size; all of F without the base's block list):
 * about what a seal must cut again. */
uint64_t stage_dirty_bytes(const struct stage_file *f);

/* Deletes the staged file of F (after sealing, or to discard it). */
void stage_drop(struct stage *s, struct stage_file *f);

/* The staged files, oldest write first: calls FN for each until it returns
 * non-zero (FN may drop the file it is given). */
int stage_foreach(struct stage *s, int (*fn)(void *arg, struct stage_file *f), void *arg);
size_t stage_count(const struct stage *s);
/* A counter that every stage_create, stage_write, stage_truncate,
 * stage_rebase and stage_drop moves: whatever a file's staged state shows
 * (its size, mtime, bytes) can only have changed when it moved. */
uint64_t stage_changes(const struct stage *s);

#endif
