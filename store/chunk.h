/*
 * Content-defined chunking (FastCDC-style gear hash, normalized chunking).
 *
 * A cut point depends only on the bytes just before it, so inserting or
 * deleting bytes early in a file moves only the chunks near the edit; the
 * rest keep their bytes and therefore their block hashes. The gear table is a
 * fixed constant and the parameters below are part of the format: every peer
 * and every version must cut the same bytes at the same places, or dedup
 * across peers breaks (never change them without a format version bump).
 *
 * Normalized chunking: below CHUNK_MIN no cut is considered; between MIN and
 * AVG a harder mask (log2(AVG)+2 bits) is used, after AVG an easier one
 * (log2(AVG)-2 bits); at CHUNK_MAX the chunk is cut unconditionally. This
 * keeps sizes close to AVG.
 */
#ifndef BASEFS_STORE_CHUNK_H
#define BASEFS_STORE_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CHUNK_MIN (16u << 10)
#define CHUNK_AVG (64u << 10)
#define CHUNK_MAX (256u << 10)

struct chunker {
  uint64_t hash;
  size_t pos; /* bytes of the current chunk seen so far */
  size_t min, avg, max;
  uint64_t mask_s, mask_l;
};

/* The format's parameters (CHUNK_MIN/AVG/MAX). */
void chunker_init(struct chunker *c);

/*
 * Other parameters, for measurements only (blocks are always cut with the
 * format's). AVG must be a power of two, 256 <= MIN <= AVG <= MAX.
 * Returns 0 or -EINVAL.
 */
int chunker_init_params(struct chunker *c, size_t min, size_t avg, size_t max);

/*
 * Streaming: scans BUF for the end of the current chunk and returns how many
 * bytes of BUF belong to it. If *cut is set, the chunk ends after those bytes
 * and the chunker is ready for the next chunk (feed the rest of BUF again).
 * If not, all LEN bytes were consumed and the chunk continues in the next
 * buffer. At end of stream, a chunk with c->pos > 0 is the (short) last one.
 */
size_t chunker_feed(struct chunker *c, const void *buf, size_t len, bool *cut);

/*
 * One-shot: the end offsets of the chunks of BUF taken as a whole stream
 * (the last one is LEN; none for an empty buffer). *ends is malloc'd.
 * Returns the number of chunks or -ENOMEM.
 */
ssize_t chunk_split(const void *buf, size_t len, size_t **ends);

/* The gear table (exposed so a test can check it against its generator). */
extern const uint64_t chunk_gear[256];

#endif
