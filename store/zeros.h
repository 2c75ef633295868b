/*
 * Zeros written ahead of the end of an append-only file (the log, a pack of
 * blocks). Appends then overwrite blocks the file already has inside its
 * size, so their fdatasync() has no metadata to commit (no size change, no
 * allocation) and only flushes data: measured here (ext4), a 4 KiB block and
 * a log record made durable one after the other took ~180 us with both
 * files zeroed ahead against ~310-370 us as true appends. The zeros are made
 * durable by the writer's next fdatasync with its records.
 *
 * The zeros lend space the filesystem may need for real data (another
 * file's write), so they are only kept while it has ZEROS_MIN_FREE free;
 * when zeros_ahead() fails the caller gives them back (truncates at its
 * end). What readers and recovery make of them is the caller's format's
 * business (store/log.h, store/blocks.h).
 */
#ifndef BASEFS_STORE_ZEROS_H
#define BASEFS_STORE_ZEROS_H

#include <stdbool.h>
#include <stdint.h>

#define ZEROS_MIN_FREE (16u << 20)

/* Whether the filesystem holding FD has ZEROS_MIN_FREE free to lend. */
bool zeros_room(int fd);

/*
 * Keeps zeros in FD from END to END + AHEAD (rounded down to a page),
 * refilled once less than AHEAD / 2 of them are left. *ZEROED (>= END) is
 * where the zeros already written end; it moves as more are written.
 * Returns 0, or -1 when the filesystem has less than ZEROS_MIN_FREE free or
 * a write failed (part of it may have landed past *ZEROED): the caller then
 * truncates the file at END.
 */
int zeros_ahead(int fd, uint64_t end, uint64_t ahead, uint64_t *zeroed);

#endif
