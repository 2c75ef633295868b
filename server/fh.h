/*
 * NFSv3 file handles: the view's stable node identity (store/view.h,
 * struct view_node) plus a tag of the filesystem, never a path.
 *
 * Layout, FH_SIZE = 44 bytes:
 *
 *   u8   format (FH_FORMAT)
 *   u8   node kind (enum view_node_kind)
 *   u8   read-only flag (0/1)
 *   u8   0
 *   8    the first 8 bytes of the filesystem's root object id
 *   32   the node's id (object or version id; zero for the virtual dirs)
 *
 * A handle is a pure function of (filesystem, node): identical on every
 * peer serving the same filesystem, valid across restarts and renames, and
 * it stays decodable after the object is gone (the view then says -ESTALE).
 * The filesystem tag makes a handle of another basefs filesystem stale
 * rather than aliasing an object of this one.
 */
#ifndef BASEFS_SERVER_FH_H
#define BASEFS_SERVER_FH_H

#include <stdint.h>

#include "store/hash.h"
#include "store/view.h"

#define FH_FORMAT 1
#define FH_SIZE 44
#define FH_TAG_SIZE 8

/* Writes the handle of NODE in the filesystem whose root id is ROOT into
 * OUT (FH_SIZE bytes); returns FH_SIZE. */
uint32_t fh_encode(const hash_t *root, const struct view_node *node, uint8_t *out);

/* Parses a handle. 0; -EBADMSG for a malformed handle (wrong length,
 * format, kind, flag); -ESTALE for a well-formed handle of another
 * filesystem. */
int fh_decode(const hash_t *root, const uint8_t *fh, uint32_t len, struct view_node *out);

#endif
