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
 * Files live in DIR (e.g. fs/NAME/stage) as <object-hex>.u while no byte of
 * it was written durably, and <object-hex>.s after the first FILE_SYNC or
 * DATA_SYNC write (fdatasync'd, renamed, directory synced). On start,
 * stage_open() deletes .u files (their writes were UNSTABLE: the new write
 * verifier makes clients resend them) and keeps .s files, which the caller
 * seals at once (stage_foreach()): data acknowledged as durable is never
 * lost.
 */
#ifndef BASEFS_SERVER_STAGE_H
#define BASEFS_SERVER_STAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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
 * Starts staging OBJ on top of version BASE: creates the file, lets
 * FILL(ARG, fd) write the base content from offset 0, then publishes it.
 * -EEXIST if OBJ is staged already.
 */
int stage_create(struct stage *s, const hash_t *obj, const hash_t *base,
                 int (*fill)(void *arg, int fd), void *arg, uint64_t now_ns,
                 struct stage_file **out);

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
 * the log, so it is no longer recovered at start (.s becomes .u). */
int stage_rebase(struct stage *s, struct stage_file *f, const hash_t *base);

/* Deletes the staged file of F (after sealing, or to discard it). */
void stage_drop(struct stage *s, struct stage_file *f);

/* The staged files, oldest write first: calls FN for each until it returns
 * non-zero (FN may drop the file it is given). */
int stage_foreach(struct stage *s, int (*fn)(void *arg, struct stage_file *f), void *arg);
size_t stage_count(const struct stage *s);

#endif
