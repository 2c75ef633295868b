/*
 * The content-addressed block store.
 *
 * A block is a byte string of at most BLOCKS_MAX_SIZE bytes whose identity
 * is the SHA-256 of its (uncompressed) bytes. It is stored once, however many
 * files and versions share it, as one file DIR/ab/<62 more hex digits> (the
 * first byte of the hash names the subdirectory). Why one file per block and
 * not pack files: blocks are large (16..256 KiB, 64 KiB on average), so the
 * per-file cost is small next to hashing and compressing them (see
 * bench/bench_blocks.c); readers in other processes need no index; a block
 * is written by exactly one rename, so no repair pass is ever needed; and a
 * later garbage collector deletes files instead of rewriting packs.
 *
 * Stored file format, version 1 (little-endian):
 *
 *   0   4  magic "BFSb"
 *   4   1  format version (1)
 *   5   1  codec: 0 = raw, 1 = one zstd frame
 *   6   2  zero
 *   8   4  raw length (the block's length, <= BLOCKS_MAX_SIZE)
 *   12  4  stored length (payload bytes that follow the header)
 *   16  8  XXH64 (seed 0) of the payload
 *   24  .. payload
 *
 * The XXH64 only detects torn or damaged files cheaply (a store that finds a
 * block already present checks it before trusting it); the identity check is
 * always the SHA-256 of the decoded bytes, on every read.
 *
 * Durability and ordering. Writes are atomic: a block file is written under
 * DIR/tmp/ and renamed into place, so a block file is either absent or
 * complete -- except after a crash before blocks_sync(), when the file system
 * may keep a renamed file without its data; such a file fails its XXH64 and
 * is rewritten by the next store of that block, and blocks_get() reports it
 * as -BFS_ECHECKSUM. THE RULE: blocks are durable before the entry that
 * references them. Store every block of a version, call blocks_sync(), and
 * only then append the entry to the log.
 *
 * Threads: a struct blocks may be used from several threads at once
 * (the store keeps no mutable state besides atomic counters).
 */
#ifndef BASEFS_STORE_BLOCKS_H
#define BASEFS_STORE_BLOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/hash.h"

#define BLOCKS_FORMAT_VERSION 1
#define BLOCKS_HEADER_SIZE 24
/* Data blocks are at most CHUNK_MAX; block-list blocks may be larger. */
#define BLOCKS_MAX_SIZE (16u << 20)

struct blocks;

/* blocks_open() flags */
#define BLOCKS_CREATE 0x01 /* create DIR (and its layout) if missing */

/*
 * Opens the store in DIR. Returns 0 or -errno (-ENOENT if DIR is not a store
 * and BLOCKS_CREATE is not given).
 */
int blocks_open(const char *dir, int flags, struct blocks **out);
void blocks_close(struct blocks *bs);

/*
 * The zstd level used for new blocks (default BLOCKS_DEFAULT_LEVEL, chosen by
 * measurement). A block is stored raw when compression does not save at
 * least 1/32 of it. Levels only change how new blocks are written; every
 * level reads back the same.
 */
#define BLOCKS_DEFAULT_LEVEL 1
void blocks_set_level(struct blocks *bs, int level);

/*
 * Worker threads for blocks_write_*() (default: one per online CPU, at most
 * 4; 1 means no worker thread: the caller's thread does everything).
 */
void blocks_set_threads(struct blocks *bs, int n);

/*
 * The identity of a block: SHA-256 of DATA. Uses the CPU's SHA extensions
 * when present (checked bit-for-bit against mbedTLS by the tests), else
 * mbedTLS.
 */
void blocks_hash(const void *data, size_t len, hash_t *out);

/*
 * Stores one block. Returns 1 if it was written, 0 if it was already present
 * (and intact), or a negative error (-BFS_ETOOBIG above BLOCKS_MAX_SIZE).
 * *OUT receives its hash.
 */
int blocks_put(struct blocks *bs, const void *data, size_t len, hash_t *out);

/* 1 if the block is present, 0 if not, or a negative error. */
int blocks_has(struct blocks *bs, const hash_t *h);

/*
 * Reads a block back: *DATA is malloc'd (free() it), *LEN its length. The
 * bytes are checked against H: -BFS_ECHECKSUM if the stored file is damaged
 * or its bytes do not hash to H, -ENOENT if absent.
 */
int blocks_get(struct blocks *bs, const hash_t *h, uint8_t **data, size_t *len);

/*
 * The block's length from its stored header, without reading or checking
 * the payload (blocks_get() checks). -ENOENT, -BFS_ECHECKSUM (bad header).
 */
int blocks_size(struct blocks *bs, const hash_t *h, uint32_t *len);

/*
 * Stored form, for sync (ship blocks compressed as they are stored).
 * blocks_get_stored: the stored file's bytes (malloc'd), not checked.
 * blocks_put_stored: checks FILE completely (blocks_decode() against EXPECT)
 * and stores it as is; returns 1 written, 0 already present, or an error.
 */
int blocks_get_stored(struct blocks *bs, const hash_t *h, uint8_t **file, size_t *len);
int blocks_put_stored(struct blocks *bs, const uint8_t *file, size_t len, const hash_t *expect);

/*
 * The one way stored bytes become a block: strict parse of a stored file
 * (header, lengths, XXH64, one zstd frame of exactly the declared size, no
 * trailing bytes) and, if EXPECT is not NULL, the SHA-256 check. *DATA is
 * malloc'd. -BFS_EFORMAT for malformed bytes, -BFS_ECHECKSUM for a checksum
 * or hash mismatch, -ENOMEM.
 */
int blocks_decode(const uint8_t *file, size_t len, const hash_t *expect, uint8_t **data,
                  size_t *data_len);

/*
 * Makes every block stored so far through BS durable (one syncfs() of the
 * store's file system, only if something was written since the last call).
 * Call it before logging an entry that references the blocks.
 */
int blocks_sync(struct blocks *bs);

/* The blocks of one file version, in order. */
struct blocks_list {
  size_t n;
  hash_t *hash;      /* n hashes */
  uint32_t *size;    /* n block lengths */
  uint64_t total;    /* sum of the lengths */
  size_t written;    /* blocks newly written (the others were already present) */
  uint64_t written_bytes; /* bytes those new blocks take on disk */
};
void blocks_list_free(struct blocks_list *l);

/*
 * The write path: cut DATA (or everything read from FD until EOF) into
 * content-defined chunks (store/chunk.h) and store each as a block, hashing
 * and compressing chunks in parallel on the worker threads. On error no list
 * is returned (blocks already written stay: they are harmless and shared).
 * Not durable until blocks_sync().
 */
int blocks_write_buf(struct blocks *bs, const void *data, size_t len, struct blocks_list *out);
int blocks_write_fd(struct blocks *bs, int fd, struct blocks_list *out);

/* For `basefs blocks`: walks the store. */
struct blocks_stats {
  uint64_t count;        /* block files */
  uint64_t raw_bytes;    /* sum of block lengths (from headers) */
  uint64_t stored_bytes; /* sum of file sizes on disk */
  uint64_t damaged;      /* files whose header is unreadable */
};
int blocks_stats(struct blocks *bs, struct blocks_stats *st);

/* The path of a block's file (for tests and tools); OUT needs PATH_MAX. */
void blocks_path(struct blocks *bs, const hash_t *h, char *out, size_t cap);

#endif
