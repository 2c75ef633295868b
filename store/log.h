/*
 * The log: an append-only file of opaque, checksummed records.
 *
 * The log stores bytes; it never decodes them (the caller passes encoded
 * entries). A record is named by its offset in the file: offsets are stable
 * for the life of the file, so the view can checkpoint "replayed up to
 * offset X" and an index can point at a record.
 *
 * File format, version 1 (integers little-endian):
 *
 *   header, 32 bytes:
 *     8   magic "BASEFSLG"
 *     u32 format version (1)
 *     u32 header size (32); records start here
 *     u64 reserved, zero
 *     u64 XXH3-64 of the 24 bytes above
 *   then records, back to back, each:
 *     u32 payload length L (<= LOG_RECORD_MAX)
 *     u32 length check: low 32 bits of XXH3-64(the 4 length bytes, seed = offset)
 *     u64 checksum: XXH3-64(payload, seed = XXH3-64(the 8 bytes above, seed = offset))
 *     L   payload
 *
 * Both checks are seeded with the record's own offset, so a record is only
 * valid where it was written: stale bytes, a misplaced copy or a cursor
 * started off a record boundary never pass for a record. The length check
 * lets a reader reject a garbage length (a zero-filled or torn tail) before
 * trusting it. Per-record overhead is LOG_RECORD_OVERHEAD (16) bytes.
 *
 * A record is *bad* if its header is incomplete, its length check fails,
 * its length exceeds LOG_RECORD_MAX, its payload runs past the end of the
 * file, or its checksum fails. The valid log is the longest prefix of good
 * records; everything from the first bad record on is the *tail*.
 *
 * Durability. log_append() and log_append_batch() return 0 only once their
 * records are on stable storage (written, then fdatasync). Every append that
 * returned 0 survives a crash or power cut at any later point. Appends are
 * thread-safe and group-committed: concurrent callers queue up, the first
 * becomes the leader, writes every queued record with one pwrite and covers
 * them all with one fdatasync, then wakes the others (leader/follower, as in
 * LevelDB). A lone caller pays one fdatasync per call; a batch pays one for
 * all its records. If a write fails (ENOSPC, EIO) the file is cut back to
 * the last durable end and the affected appends fail; if fdatasync fails
 * the log is poisoned (the kernel may have dropped the pages) and every later
 * append returns that error until the log is reopened, which recovers.
 *
 * Zeros written ahead. A writer keeps zeros written past the end of the
 * log, so that appends overwrite blocks the file already has instead of
 * growing it: fdatasync() then has no metadata to commit, which makes a
 * small commit ~1/3 cheaper on ext4. A header position holding only zeros
 * is therefore the end of the log, for every reader, exactly like the end of
 * the file (a real header is never all zero). The promise on the file's
 * size, with end = the offset after the last good record:
 *   - while a writer has the log open, and after it died (crash, SIGKILL)
 *     between appends: the file may hold bytes past the end, all zeros, at
 *     most LOG_ZERO_TAIL_MAX of them. While an append is under way (so after
 *     a crash during one), the records being written come first, then at
 *     most LOG_ZERO_TAIL_MAX zeros.
 *   - after log_close() of a writer that saw no failed fdatasync, and after
 *     recovery found anything but such zeros: none, the size is the end.
 * Zeros are best effort: when writing them fails (ENOSPC) appends are plain
 * appends, never an error. They are only kept while the filesystem has
 * LOG_ZERO_MIN_FREE bytes free, and given back at the first commit that
 * finds less, so they do not take the last free space from real data; if an
 * append fails with ENOSPC or EDQUOT while zeros are kept, they are given
 * back and the append is tried once more.
 *
 * Recovery and corruption policy. Opening as LOG_WRITE scans the whole log
 * and truncates the tail at the first bad record (then fdatasyncs). After a
 * crash that tail is the torn last write, which held no acknowledged record.
 * A tail of only zeros, at most LOG_ZERO_TAIL_MAX of them, is no bad record
 * but zeros written ahead: recovery keeps it (log_info.zero_bytes). A torn
 * record written over zeros is a bad record like any other, and cut there.
 * A record after a bad one cannot be trusted to be framed right, so nothing
 * after a bad record is ever returned -- by writers or readers. The cost of
 * this policy: if the *disk* corrupts a record in the middle, the writer
 * drops it and every record after it. Those records are not lost silently:
 * before truncating, the writer copies the dropped bytes to
 * "<path>.tail-<offset>" whenever they contain anything that still looks like
 * a record (log_info.tail_saved), so an operator (or sync from peers, which
 * hold the same entries) can restore them. If that copy cannot be written,
 * log_open() fails rather than drop the bytes.
 *
 * Open modes.
 *   LOG_WRITE: exclusive. Takes flock(LOCK_EX | LOCK_NB) on the log file
 *     itself; a second writer (another process, or another log_open in the
 *     same process) gets -EBUSY at once. The lock lives as long as the log is
 *     open (or the process). With LOG_CREATE a missing file is created
 *     atomically (header written to a temporary file, fsynced, then linked
 *     into place and the directory fsynced), so a log file always has a whole
 *     header.
 *   LOG_READ: never writes, never truncates, takes no lock and so never
 *     waits for a writer. It sees records appended by a live writer; a record
 *     still being written looks like a bad record (cut short, or over zeros
 *     written ahead, failing its checksum) or, if its header is not written
 *     yet, like the end, so iteration stops there and may be resumed later. It may see a record a moment before its
 *     append returns (written, not yet durable); only a power cut at that
 *     moment takes such a record back. Opening is O(1): no scan.
 *
 * Threads. Appends may run concurrently with each other and with cursors on
 * the same log. log_close() must not race with anything on the log.
 */
#ifndef BASEFS_STORE_LOG_H
#define BASEFS_STORE_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "store/zeros.h"

#define LOG_FORMAT_VERSION 1
#define LOG_HEADER_SIZE 32
#define LOG_RECORD_OVERHEAD 16
#define LOG_RECORD_MAX (1u << 20)
/* A writer keeps at most this many zero bytes written past the end, and
 * only while the filesystem has LOG_ZERO_MIN_FREE bytes free. */
#define LOG_ZERO_TAIL_MAX (64u << 10)
#define LOG_ZERO_MIN_FREE ZEROS_MIN_FREE /* store/zeros.h */

enum log_flags {
  LOG_READ = 0,
  LOG_WRITE = 1 << 0,
  LOG_CREATE = 1 << 1, /* with LOG_WRITE: create the file if missing */
  /* With LOG_WRITE: one fdatasync per append call even when callers overlap.
   * Only for benchmarks that measure what group commit buys. */
  LOG_NO_GROUP_COMMIT = 1 << 2,
};

struct log;
struct log_cursor;

/* What log_open() found (all zero for LOG_READ except end). */
struct log_info {
  uint64_t end;         /* offset after the last good record */
  uint64_t records;     /* good records (LOG_WRITE only: it scans) */
  uint64_t tail_bytes;  /* bytes dropped from the tail by recovery */
  int tail_error;       /* why the tail was bad: 0, -BFS_ECHECKSUM or -BFS_EFORMAT */
  int tail_saved;       /* 1 if the dropped bytes were copied to <path>.tail-<offset> */
  uint64_t zero_bytes;  /* zeros past the end, written ahead, that recovery kept */
};

/* One record for log_append_batch(). */
struct log_rec {
  const void *data;
  size_t len;
};

/*
 * Opens PATH. Errors: -ENOENT (missing, no LOG_CREATE), -EBUSY (another
 * writer holds it), -BFS_EFORMAT (not a basefs log, or a newer format),
 * -BFS_ECHECKSUM (the header is corrupt), -errno. INFO may be NULL.
 */
int log_open(const char *path, int flags, struct log **out, struct log_info *info);
/* Closes the log and releases the writer's lock. NULL is fine. */
void log_close(struct log *log);

/*
 * Appends one record of LEN bytes (0 <= LEN <= LOG_RECORD_MAX) and returns 0
 * once it is durable, with its offset in *OFF (OFF may be NULL). -EBADF on a
 * log opened for reading, -BFS_ETOOBIG for an oversized record.
 */
int log_append(struct log *log, const void *data, size_t len, uint64_t *off);
/*
 * Appends N records in order, contiguously, written together (one pwrite
 * per 4 MiB) and made durable with one fdatasync, possibly shared with
 * concurrent appends; returns 0 once all are durable, their offsets in OFFS
 * (may be NULL). All or nothing as far as the caller can tell: on failure none of
 * them counts as appended (a crash may still leave a prefix of them).
 */
int log_append_batch(struct log *log, const struct log_rec *recs, size_t n, uint64_t *offs);

/*
 * log_append_batch() that also calls BEFORE_SYNC(ARG) once the records are
 * written and their write-out started, right before the fdatasync that
 * makes them durable: for a caller whose own writes that fdatasync's device
 * cache flush must cover (store/fs.c waits there for the pack writes it
 * started; both then go to the device at once). A negative return fails
 * the append as a failed write does: the records are cut off again and
 * the log stays usable. With group commit the leader calls the hook of
 * every caller in its group, in its own thread.
 */
int log_append_batch_ordered(struct log *log, const struct log_rec *recs, size_t n,
                             uint64_t *offs, int (*before_sync)(void *arg), void *arg);

/* Counters since log_open(), for benchmarks and the daemon's status. */
struct log_stats {
  uint64_t records; /* records appended */
  uint64_t commits; /* fdatasync calls that made appends durable */
  uint64_t bytes;   /* bytes written, framing included */
};
void log_stats(struct log *log, struct log_stats *st);

/*
 * The end offset: after the last durable record for a writer (what a cursor
 * of this log will reach), the file size for a reader (which may include a
 * record being written and zeros written ahead: a reader's cursor stops at
 * the real end). Records live in [LOG_HEADER_SIZE, end).
 */
uint64_t log_end(const struct log *log);

/*
 * Writer only, not concurrently with appends: drops every record from OFF
 * (a record boundary in [LOG_HEADER_SIZE, end]) on, for a caller that found
 * them not to hold (store/fs.c: records whose blocks did not survive a
 * crash). The dropped bytes are first copied to "<path>.tail-<OFF>"
 * (durably), as recovery copies a damaged tail; then the file is cut at OFF
 * and synced. Returns 0, -EBADF for a reader, -EINVAL if OFF is no record
 * boundary in range, or -errno.
 */
int log_truncate(struct log *log, uint64_t off);

/*
 * Reads the record at OFF into BUF (CAP bytes) and returns its length.
 * -ERANGE if CAP is too small (the length is still stored in *LEN if LEN is
 * not NULL), -BFS_ECHECKSUM or -BFS_EFORMAT if no good record starts at OFF
 * (includes offsets off a record boundary), -EINVAL if OFF is out of range.
 */
int log_read(struct log *log, uint64_t off, void *buf, size_t cap, size_t *len);

/*
 * Cursors iterate good records from an offset (LOG_HEADER_SIZE, or an
 * offset a previous iteration or append returned). -EINVAL if FROM lies
 * outside [LOG_HEADER_SIZE, end], or if no good record starts at FROM (not a
 * record boundary, or a damaged record) -- except that a reader accepts a
 * FROM whose record is incomplete, or whose header is good but body is not,
 * as a record still being written is (over zeros written ahead it has its
 * full length before its bytes).
 */
int log_cursor_open(struct log *log, uint64_t from, struct log_cursor **out);
/*
 * Next record: returns 1 with *DATA (valid until the next call or close),
 * *LEN and *OFF set; 0 at the end; -errno on an I/O error. The end is either
 * the clean end of the log or a bad record (see log_cursor_stop()); the
 * cursor stays there, so calling again after a writer appended more goes on.
 */
int log_cursor_next(struct log_cursor *c, const uint8_t **data, size_t *len, uint64_t *off);
/*
 * Why the last log_cursor_next() returned 0: 0 for a clean end of file,
 * -BFS_EFORMAT (bad length, or the file ends inside a record: a torn tail or
 * a record still being written) or -BFS_ECHECKSUM (checksum mismatch; also a
 * record a reader finds still being written over zeros written ahead).
 * Zeros where a header would start are a clean end (0).
 */
int log_cursor_stop(const struct log_cursor *c);
/* The offset the next record would start at. */
uint64_t log_cursor_offset(const struct log_cursor *c);
void log_cursor_close(struct log_cursor *c);

#endif
