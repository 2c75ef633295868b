/*
 * The content-addressed block store.
 *
 * A block is a byte string of at most BLOCKS_MAX_SIZE bytes whose identity
 * is the SHA-256 of its (uncompressed) bytes. It is stored once, however many
 * files and versions share it, as a record appended to a pack file
 * DIR/pack-00000001, DIR/pack-00000002, ... (a new pack past 1 GiB), and
 * found through an in-memory index rebuilt at open by reading the record
 * headers (one small read per block).
 *
 * Why packs and not one file per block: measured here (bench/bench_blocks.c
 * and the closing note), creating one file per 64 KiB block cost 0.5-1 ms in
 * ext4's inode allocator on this busy machine -- a ceiling of 66-136 MB/s per
 * thread -- while appending the same data to a pack costs ~30 us per block;
 * and blocks_sync() then needs one fdatasync() per pack written instead of
 * one per block (or a syncfs() of everyone's data).
 *
 * Stored form of a block, format version 1 (little-endian) -- what a pack
 * record carries after the hash, and what sync ships between peers:
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
 * Pack file: a 16-byte header ("BFSP", format version 1, zeros), then
 * records: the block's 32-byte SHA-256, then its stored form.
 *
 * The XXH64 only detects torn or damaged records cheaply: a store that finds
 * a block already present checks it once before trusting it (records it
 * wrote itself are trusted), and a record that fails a read is rewritten by
 * the next store of that block. The identity check is always the SHA-256 of
 * the decoded bytes, on every read. Superseded and torn records are not
 * reclaimed yet (no garbage collection).
 *
 * Durability and ordering. Appends are serialized, so a pack is whole
 * records plus at most a torn tail, which the writer truncates when it opens
 * the store. A record is durable after blocks_sync() (fdatasync of the packs
 * written, fsync of DIR when a pack was created). THE RULE: an entry counts
 * as durable only once the blocks it references are, and no log record
 * whose blocks a crash lost outlives recovery. Store every block of a
 * version, then either
 *   - call blocks_sync(), and only then append the entry to the log (two
 *     device flushes: the packs', then the log's); or
 *   - call blocks_sync_deferred(): where it is safe (see there) it only
 *     starts writing the packs' new bytes out; the log append that follows
 *     writes its records, waits for those pack writes (blocks_sync_wait(),
 *     from log_append_batch_ordered()), and its fdatasync, which flushes
 *     the device cache over every write completed before it, makes both
 *     durable with one flush.
 *     Until that flush a crash may keep the log record and lose the block
 *     bytes, so the caller logs, with the entries, the pack range it relies
 *     on and its XXH3 sum (struct blocks_flush), and recovery drops the log
 *     from there when the range did not survive (store/fs.c).
 * Several threads may sync (a background seal's worker and the loop): a
 * blocks_sync() returns only once every fdatasync it or a concurrent one
 * owes is done. A writer's open takes every pack as dirty (a crashed writer
 * may have left appends in the page cache only, which a dedup would now
 * name), so its first blocks_sync() makes them all durable (one fdatasync
 * per pack, once per open). A failed fdatasync is sticky: the kernel
 * reports a write-back error once, so every later sync and append fails
 * until the store is reopened, and the failed pages are dropped from the
 * page cache so that the reopen reads what the disk holds.
 * A record that is
 * present but damaged (a crash before blocks_sync() on a file system that
 * keeps garbage) fails its XXH64 and is written again by the next store of
 * that block; blocks_get() reports it as -BFS_ECHECKSUM.
 *
 * Zeros written ahead. The writer keeps up to BLOCKS_ZERO_AHEAD zero bytes
 * written past the end of the pack it appends to (refilled at blocks_sync(),
 * only while the filesystem has 16 MiB free, given back below that), so a
 * small commit's fdatasync overwrites blocks the file has and commits no
 * metadata. Zeros where a record header would be are the end of a pack, for
 * every reader; the writer truncates them when it opens the store, when it
 * rolls to a new pack and when it closes (so a cleanly closed pack ends at
 * its last record). A failed append (ENOSPC) gives them back and is tried
 * once more.
 *
 * Processes and threads: one process writes a store (the filesystem's
 * owner, BLOCKS_WRITE); others open it read-only and see blocks appended
 * later (an index miss rescans the packs' new tails). A struct blocks may be
 * used from several threads at once. Memory: ~80 bytes of index per block.
 */
#ifndef BASEFS_STORE_BLOCKS_H
#define BASEFS_STORE_BLOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store/hash.h"

#define BLOCKS_FORMAT_VERSION 1
#define BLOCKS_HEADER_SIZE 24
/* Data blocks are at most CHUNK_MAX; block-list blocks may be larger. */
#define BLOCKS_MAX_SIZE (16u << 20)
/* The writer keeps at most this many zero bytes past its pack's end. */
#define BLOCKS_ZERO_AHEAD (256u << 10)

struct blocks;

/* blocks_open() flags. Without either, the store is opened read-only: no
 * write, no repair (another process owns it), new blocks seen on a miss. */
#define BLOCKS_CREATE 0x01 /* create DIR and its first pack if missing; implies BLOCKS_WRITE */
#define BLOCKS_WRITE 0x02  /* the owner: may append, repairs a torn tail at open */

/*
 * Opens the store in DIR: indexes every pack, and (a writer) truncates a
 * torn record at the end of the last pack. Returns 0 or -errno (-ENOENT if
 * DIR is missing, or holds no store and the caller would write;
 * -BFS_EFORMAT for a pack that is not one). A reader may open a directory
 * with no pack yet: it is an empty store.
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

/* Roll to a new pack beyond BYTES (default 1 GiB; for tests and tools). */
void blocks_set_pack_size(struct blocks *bs, uint64_t bytes);

/*
 * The identity of a block: SHA-256 of DATA. Uses the CPU's SHA extensions
 * when present (checked bit-for-bit against mbedTLS by the tests), else
 * mbedTLS.
 */
void blocks_hash(const void *data, size_t len, hash_t *out);

/*
 * Stores one block. Returns 1 if it was written, 0 if it was already present
 * (and intact), or a negative error (-BFS_ETOOBIG above BLOCKS_MAX_SIZE,
 * -EROFS on a read-only store). *OUT receives its hash.
 */
int blocks_put(struct blocks *bs, const void *data, size_t len, hash_t *out);

/*
 * Stores N blocks, DATA[i] of LEN[i] bytes, as N blocks_put() calls would
 * (OUT[i] receives the hash of block i), hashing them together
 * (store/sha256.h: two at a time cost well under twice one). Returns how
 * many were newly written, or the first error (the blocks before it are
 * stored).
 */
int blocks_put_many(struct blocks *bs, size_t n, const void *const *data, const size_t *len,
                    hash_t *out);

/* 1 if the block is present, 0 if not, or a negative error. */
int blocks_has(struct blocks *bs, const hash_t *h);

/*
 * Reads a block back: *DATA is malloc'd (free() it), *LEN its length. The
 * bytes are checked against H: -BFS_ECHECKSUM if the stored file is damaged
 * or its bytes do not hash to H, -ENOENT if absent.
 */
int blocks_get(struct blocks *bs, const hash_t *h, uint8_t **data, size_t *len);

/*
 * The block's length from the index (its record header), without reading or
 * checking the payload (blocks_get() checks). -ENOENT if absent.
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
 * Makes every block stored so far through BS durable (fdatasync() of each
 * pack written since the last call, fsync() of DIR if a pack was created).
 * Call it before logging an entry that references the blocks.
 */
int blocks_sync(struct blocks *bs);

/* A pack range written out but not yet flushed (blocks_sync_deferred()). */
struct blocks_flush {
  uint32_t pack;     /* the pack's number (DIR/pack-%08u), 0: nothing owed */
  uint64_t from, to; /* the byte range [from, to) of that pack */
  uint64_t sum;      /* XXH3-64 (seed 0) of those bytes */
};

/*
 * blocks_sync() with the device flush left to the caller where that is
 * safe: only the last pack was written since the last sync, every byte
 * written lies in zeros ahead (see below) that an earlier fdatasync made
 * durable and that were not cut since (so the overwrite has no metadata to
 * commit), no refill of those zeros is due, the store lives on ext4 (see
 * blocks.c's defer_allowed() for why no other) on device DEV, and no
 * earlier sync of this handle failed. Then the write-out of the range
 * written since the last durable point starts (sync_file_range), *OWED
 * describes it, and 1 is returned. It is durable once blocks_sync_wait()
 * has returned 0 and, after that, an fdatasync() of a file on DEV has
 * returned (before anything relies on the blocks), which the caller then
 * reports with blocks_flushed(). Otherwise it is blocks_sync(), 0 and
 * OWED->pack = 0. Negative error as blocks_sync().
 */
int blocks_sync_deferred(struct blocks *bs, dev_t dev, struct blocks_flush *owed);
/* Waits until OWED's writes are complete (in the device, maybe only its
 * cache). 0, or the write-back error: then the store refuses appends until
 * it is reopened (the kernel reports such an error once). */
int blocks_sync_wait(struct blocks *bs, const struct blocks_flush *owed);
/* The flush OWED waited for has happened (an unreported range is owed again,
 * with what follows, by the next blocks_sync_deferred()). */
void blocks_flushed(struct blocks *bs, const struct blocks_flush *owed);

/*
 * Whether the pack range F names holds the bytes it was written with (its
 * sum), in the block store at DIR (which need not be open: recovery asks
 * before opening it): 1, 0 (it does not, or the pack is gone: a crash lost
 * them), or -errno. Holding may mean only in the page cache (a process that
 * wrote them stopped before any flush covered them): with DURABLE (a
 * writer, about to append after them) a range that holds is made durable
 * first; if that fdatasync meets a write-back error, the cached pages are
 * dropped and the disk is asked again.
 */
int blocks_flush_held(const char *dir, const struct blocks_flush *f, bool durable);

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

/* For `basefs blocks`. */
struct blocks_stats {
  uint64_t count;        /* distinct blocks */
  uint64_t raw_bytes;    /* sum of their lengths */
  uint64_t stored_bytes; /* sum of their records' sizes (compressed, with headers) */
  uint64_t pack_bytes;   /* size of the pack files (also superseded records, and
                            the writer's zeros ahead while it has the store open) */
  uint64_t packs;
};
int blocks_stats(struct blocks *bs, struct blocks_stats *st);

/*
 * Where a block's stored form lives: the pack's path, the offset and length
 * of the stored form in it (for tests and tools). -ENOENT if absent.
 */
int blocks_locate(struct blocks *bs, const hash_t *h, char *path, size_t cap, uint64_t *off,
                  size_t *len);

#endif
