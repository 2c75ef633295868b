/*
 * How a file version's content is carried by its entry (store/entry.h,
 * ENTRY_CONTENT_*), and how it is read back.
 *
 * Encoding picks the smallest form that fits the room the entry has left
 * (AVAIL bytes):
 *   NONE       the empty file
 *   INLINE     the bytes themselves
 *   ZSTD       one zstd frame of the bytes
 *   DELTA      one zstd frame compressed with the previous version's content
 *              as a raw prefix (ZSTD_CCtx_refPrefix); reading it needs that
 *              content
 *   BLOCKS     the content cut into blocks (store/blocks.h), n * 32 bytes of
 *              block hashes
 *   BLOCKLIST  32 bytes: the hash of one block holding that hash list
 * Ties go to the form cheapest to read (INLINE, then ZSTD, then DELTA).
 *
 * Format rules (checked by the decoder; they bound memory for hostile
 * entries): an embedded form (INLINE, ZSTD, DELTA) carries at most
 * CONTENT_EMBED_MAX bytes of content, a frame must declare its content size,
 * that size must equal the entry's size, and exactly one frame fills the
 * content bytes. A DELTA frame carries zstd's content checksum (decoding
 * against the wrong base gives -BFS_ECHECKSUM, never wrong bytes) and its
 * base is at most CONTENT_EMBED_MAX bytes. Block forms
 * list at least one block, every block non-empty, and the block lengths sum
 * to the entry's size. A block list holds at most BLOCKS_MAX_SIZE / 32
 * hashes (files up to ~32 GiB at the average chunk size).
 *
 * Durability: encoding may store blocks. Call blocks_sync() before logging
 * the entry (blocks durable before the entry that references them).
 */
#ifndef BASEFS_STORE_CONTENT_H
#define BASEFS_STORE_CONTENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store/blocks.h"
#include "store/entry.h"
#include "store/hash.h"

#define CONTENT_EMBED_MAX (4u << 20)

/*
 * Encodes DATA (LEN bytes). PREV/PREV_LEN is the previous version's content
 * (NULL if none, or to forbid a delta). OUT has room for AVAIL bytes (at
 * most ENTRY_CONTENT_MAX are ever used). On success *KIND and *OUT_LEN are
 * set. BS may be NULL if the caller knows the content fits embedded; then a
 * content that does not fit gives -BFS_ETOOBIG. -BFS_ETOOBIG also when even a
 * BLOCKLIST (32 bytes) does not fit AVAIL.
 */
int content_encode(struct blocks *bs, const void *data, size_t len, const void *prev,
                   size_t prev_len, size_t avail, uint8_t *kind, uint8_t *out, size_t *out_len);

/*
 * The same for the content of FD read from offset 0 to EOF (a staged file):
 * small contents go through content_encode(), large ones stream into the
 * block store without being held in memory. *SIZE receives the length.
 */
int content_encode_fd(struct blocks *bs, int fd, const void *prev, size_t prev_len, size_t avail,
                      uint8_t *kind, uint8_t *out, size_t *out_len, uint64_t *size);

/*
 * What a staged file still shares with the version it is based on: LIST is
 * that version's block list as the block store cut it (blocks_write_*), and
 * every byte of the file below CLEAN_END that lies in none of the N sorted,
 * disjoint RANGES [off, end) equals the base's byte at the same offset.
 */
struct content_range {
  uint64_t off, end;
};
struct content_base {
  const struct blocks_list *list;
  const struct content_range *ranges;
  size_t n;
  uint64_t clean_end;
};

/*
 * content_encode_fd() for a staged file of known SIZE (read exactly: -EIO
 * if it is shorter). With BASE (or NULL), a content that takes a block form
 * reuses the base's blocks that lie wholly in clean bytes without reading
 * them; see content_blocks_update(). LIST (or NULL) receives the block list
 * of a block form (n = 0 for the other forms), the next call's base;
 * blocks_list_free() it.
 */
int content_encode_staged(struct blocks *bs, int fd, uint64_t size, const void *prev,
                          size_t prev_len, const struct content_base *base, size_t avail,
                          uint8_t *kind, uint8_t *out, size_t *out_len,
                          struct blocks_list *list);

/*
 * The block list of FD's SIZE bytes, stored in BS: exactly the list
 * blocks_write_fd() gives for the file (the same cuts, the same blocks),
 * computed incrementally from BASE (or NULL: a full cut). Content-defined
 * cuts depend only on the bytes of their own chunk, so a base block whose
 * bytes are all clean is cut the same way again once a cut falls on its
 * start: from each changed region, the file is cut again from the last
 * kept cut before it until a new cut falls on the start of a clean base
 * block (usually within a chunk or two), and only those bytes are read.
 * The changed regions are cut, then their new blocks hashed and stored, on
 * up to 4 threads at once when there are megabytes of them; when more than
 * three quarters of the file must be cut again, the full cut is used instead.
 * out->written counts the blocks newly stored. A base list
 * not cut by this chunker (a peer's bug) still gives a list that decodes
 * to exactly the file's bytes (a reused block holds exactly the clean bytes
 * at its offsets), only not the one a full cut gives.
 */
int content_blocks_update(struct blocks *bs, int fd, uint64_t size, const struct content_base *base,
                          struct blocks_list *out);

/*
 * Decodes a whole content: KIND and BYTES/LEN from the entry, SIZE the
 * entry's declared size (the hard cap: nothing decodes to more or less),
 * PREV/PREV_LEN the parent version's content for DELTA. Refuses SIZE > MAX
 * with -BFS_ETOOBIG (use a reader for large files). *OUT is malloc'd with
 * exactly SIZE bytes (free() it). Errors: -BFS_EFORMAT malformed or
 * inconsistent content, -BFS_ECHECKSUM a damaged block, -ENOENT a missing
 * block or a DELTA decoded against the wrong base, -EINVAL a DELTA without
 * its base, -ENOMEM.
 */
int content_decode(struct blocks *bs, uint8_t kind, const uint8_t *bytes, size_t len,
                   uint64_t size, const void *prev, size_t prev_len, size_t max, uint8_t **out);

/*
 * Random access for large files: opening loads the block list (and each
 * block's length from its header), a read fetches and checks only the blocks
 * it touches (the last one stays cached). Embedded kinds are decoded whole at
 * open (they are at most CONTENT_EMBED_MAX). A reader is used by one thread
 * at a time; BS must outlive it. Same errors as content_decode().
 */
struct content_reader;
int content_open(struct blocks *bs, uint8_t kind, const uint8_t *bytes, size_t len, uint64_t size,
                 const void *prev, size_t prev_len, struct content_reader **out);
/* Up to LEN bytes at OFF; returns the count (0 at or past the end) or an error. */
ssize_t content_read(struct content_reader *r, uint64_t off, void *buf, size_t len);
uint64_t content_reader_size(const struct content_reader *r);
/* A copy of the block list of a block-form content (n = 0 for the embedded
 * forms): a staged copy's base for content_blocks_update(). */
int content_reader_blocks(const struct content_reader *r, struct blocks_list *out);
void content_close(struct content_reader *r);

/*
 * The blocks a content references that BS lacks (for "an entry counts only
 * once its blocks are all present", and for sync). For BLOCKLIST with the
 * list block missing, only the list block is reported (the rest is unknown
 * until it arrives). *MISSING is malloc'd (NULL when none); returns the
 * count or an error (-BFS_EFORMAT, -BFS_ECHECKSUM for a damaged list block).
 * Embedded kinds need no block: 0.
 */
ssize_t content_missing(struct blocks *bs, uint8_t kind, const uint8_t *bytes, size_t len,
                        hash_t **missing);

#endif
