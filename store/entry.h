/*
 * Entries: the signed, self-verifying records of the Merkle DAG.
 *
 * An entry is one change. Its identity (entry->id) is SHA-256 of its encoded
 * body: every byte of the encoding except the trailing signature. The
 * signature is the author's ECDSA P-256 signature of that id, and the author's
 * public key travels in the body, so an entry verifies on its own. (Identity
 * excludes the signature because ECDSA signatures are malleable: one change
 * must have one identity.)
 *
 * Encoding, format version 1 (all multi-byte integers are unsigned LEB128
 * varints, minimal-length; anything else is rejected):
 *
 *   u8      format version (1)
 *   u8      action               enum entry_action
 *   u8      content kind         enum entry_content
 *   u8      field flags          ENTRY_HAS_PARENT | ENTRY_HAS_DIR | ENTRY_HAS_TARGET
 *   32      parent               if ENTRY_HAS_PARENT
 *   32      dir                  if ENTRY_HAS_DIR
 *   32      target               if ENTRY_HAS_TARGET
 *   varint  mtime (ns since the epoch; informative, also the file's mtime)
 *   varint  size (the file's size in bytes)
 *   varint  mode (permission bits, <= 07777), uid, gid
 *   u8      name length (<= 255), then the name bytes
 *   varint  content length, then the content bytes
 *   65      author's public key
 *   64      signature (r || s) of the id
 *
 * The whole encoding is at most ENTRY_MAX_SIZE bytes, so an entry always fits
 * one gossip packet with its headers.
 *
 * Objects and threads. Every file, directory and symlink is an *object*
 * whose identity is the id of the entry that created it (MKDIR, WRITE without
 * parent, SLINK). An object has two version threads, both rooted at its
 * creating entry: its *content* thread (WRITE, MODE, REVERT of content) and
 * its *name* thread (RENAME, DELETE, REVERT of a name). A LINK entry roots a
 * further name thread for an existing object. `parent` always names the
 * previous version in the same thread; two entries with the same parent are
 * concurrent versions, and the view's conflict rules pick the winner.
 *
 *   action   parent            dir            target          name  content
 *   MKDIR    -                 containing dir -               yes   -          (root: no dir, empty name)
 *   WRITE    - | prev content  containing dir | -  -          yes|- file data (kind != NONE unless empty)
 *   SLINK    -                 containing dir -               yes   link target path (INLINE)
 *   LINK     -                 containing dir object          yes   -
 *   RENAME   prev name version new dir        -               yes   -
 *   DELETE   prev name version -              -               -     -
 *   MODE     prev content      -              -               -     -          (mode, uid, gid, mtime)
 *   REVERT   thread head       -              old version     -     -
 *   GRANT    -                 granted dir    -               key name  grantee public key (INLINE, 65 bytes)
 *   REVOKE   -                 granted dir    grant entry     -     -
 *   ACK      -                 -              acked entry     -     -
 *
 * ("-" = must be absent/empty; the decoder enforces this table.) A WRITE with a
 * parent is an update: it has no dir and no name. The view, not the codec,
 * checks that parents and targets exist and have the right kind.
 *
 * The codec's further rules (entry_sign, entry_encode and entry_decode share
 * one validator, so all three accept exactly the same entries):
 *   - A hash field is present iff it is non-zero (the flags are derived from
 *     that; a flag over 32 zero bytes is rejected). A name is present iff
 *     name_len > 0, and then entry_name_valid(). GRANT's name (a label for the
 *     key) is optional.
 *   - mode <= 07777 for every action; uid, gid, mtime are free.
 *   - size is the file's size for WRITE and the target's length for SLINK, and
 *     0 for every other action (GRANT included).
 *   - WRITE content: NONE => no bytes and size 0; INLINE => size == content_len;
 *     ZSTD => at least one byte; DELTA => at least one byte and a parent;
 *     BLOCKS => a non-empty multiple of 32 bytes; BLOCKLIST => exactly 32.
 *   - SLINK: INLINE, 1.. bytes without NUL, size == content_len.
 *   - GRANT: INLINE, exactly 65 bytes starting with 0x04 (entry_verify also
 *     checks that they are a point of P-256).
 *   - Every other action: content kind NONE and no content bytes.
 *   - The author's public key starts with 0x04 (entry_verify checks the curve).
 */
#ifndef BASEFS_STORE_ENTRY_H
#define BASEFS_STORE_ENTRY_H

#include <stdbool.h>
#include <stdint.h>

#include "store/hash.h"
#include "store/key.h"

#define ENTRY_FORMAT_VERSION 1
#define ENTRY_MAX_SIZE 1200
#define ENTRY_NAME_MAX 255
/* Upper bound for content: the size limit minus the smallest fixed part. */
#define ENTRY_CONTENT_MAX (ENTRY_MAX_SIZE - 4 - 5 * 1 - 1 - 2 - KEY_PUBLIC_SIZE - KEY_SIGNATURE_SIZE)

enum entry_action {
  ENTRY_MKDIR = 1,
  ENTRY_WRITE = 2,
  ENTRY_DELETE = 3,
  ENTRY_REVERT = 4,
  ENTRY_GRANT = 5,
  ENTRY_REVOKE = 6,
  ENTRY_ACK = 7,
  ENTRY_LINK = 8,
  ENTRY_SLINK = 9,
  ENTRY_MODE = 10,
  ENTRY_RENAME = 11,
  ENTRY_ACTION_MAX = ENTRY_RENAME
};

enum entry_content {
  ENTRY_CONTENT_NONE = 0,      /* no content bytes */
  ENTRY_CONTENT_INLINE = 1,    /* the bytes are the file content */
  ENTRY_CONTENT_ZSTD = 2,      /* a zstd frame of the file content */
  ENTRY_CONTENT_DELTA = 3,     /* a zstd frame whose dictionary is the parent version's content */
  ENTRY_CONTENT_BLOCKS = 4,    /* n * 32 bytes: the hashes of the content's blocks, in order */
  ENTRY_CONTENT_BLOCKLIST = 5, /* 32 bytes: the hash of a block holding that hash list */
  ENTRY_CONTENT_MAX_KIND = ENTRY_CONTENT_BLOCKLIST
};

#define ENTRY_HAS_PARENT 0x01
#define ENTRY_HAS_DIR 0x02
#define ENTRY_HAS_TARGET 0x04

struct entry {
  hash_t id; /* filled by entry_decode() and entry_sign() */
  uint8_t action;
  uint8_t content_kind;
  hash_t parent; /* all-zero when absent */
  hash_t dir;
  hash_t target;
  uint64_t mtime_ns;
  uint64_t size;
  uint32_t mode, uid, gid;
  uint8_t name_len;
  char name[ENTRY_NAME_MAX + 1]; /* NUL-terminated for convenience */
  uint16_t content_len;
  uint8_t content[ENTRY_CONTENT_MAX];
  uint8_t pubkey[KEY_PUBLIC_SIZE];
  uint8_t signature[KEY_SIGNATURE_SIZE];
};

/*
 * Sets the author's public key, computes the id and signs it. Fails with
 * -BFS_EFORMAT if the entry breaks the table above, -BFS_ETOOBIG if its
 * encoding would exceed ENTRY_MAX_SIZE.
 */
int entry_sign(struct entry *e, const struct key *key);

/*
 * entry_sign() without the signature: sets the author's public key PUBKEY
 * and computes the id (the id never covers the signature), with the same
 * checks and errors. A batch whose entries refer to each other's ids can so
 * be built first and signed afterwards, in parallel (store/sign.h).
 */
int entry_prepare(struct entry *e, const uint8_t pubkey[KEY_PUBLIC_SIZE]);

/* Encodes a signed entry into OUT; returns the length, -BFS_EFORMAT/-BFS_ETOOBIG
 * for an entry that breaks the rules, or -ENOSPC if CAP is too small
 * (ENTRY_MAX_SIZE is always enough). */
int entry_encode(const struct entry *e, uint8_t *out, size_t cap);

/*
 * The one way bytes become an entry. Strict: every length, enum, flag and the
 * action table are checked, and no trailing byte is allowed. Fills e->id. It
 * does not check the signature: call entry_verify() once, on arrival.
 */
int entry_decode(const uint8_t *buf, size_t len, struct entry *e);
/* (-BFS_ETOOBIG if LEN > ENTRY_MAX_SIZE, -BFS_EFORMAT for anything else.) */

/* 0 if the signature verifies, -BFS_ESIGNATURE or -BFS_EKEY if not. It
 * recomputes the id from the fields (an entry changed after decoding fails)
 * and, for GRANT, checks that the granted key is a point of P-256 (-BFS_EKEY).
 * Thread-safe: see store/verify.h to verify many entries on every core. */
int entry_verify(const struct entry *e);

/* The author's fingerprint (SHA-256 of the public key). */
void entry_author(const struct entry *e, hash_t *fingerprint);

/* "mkdir", "write", ...; "?" for an unknown action. */
const char *entry_action_name(int action);

/* A name is valid if 1..255 bytes, without '/' or NUL, and not "." or "..". */
bool entry_name_valid(const char *name, size_t len);

#endif
