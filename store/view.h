/*
 * The view: the deterministic, conflict-resolved filesystem tree computed
 * from a set of entries (store/entry.h). The same set of entries gives the
 * same view on every peer, whatever the order they arrived in: view_dump()
 * is byte-identical and view_merkle_root() equal.
 *
 * The view takes entries that were already verified (signature, size
 * limits) once, on arrival; it never verifies a signature. It keeps a copy
 * of every entry it stores (view_entry() gives it back), so readers of a
 * version's content need nothing else. It is not thread-safe: one caller
 * at a time (queries included: some cache).
 *
 * Design (the contract; "counting" = an entry that takes part in the view).
 *
 * Resolution. An entry's references (parent, dir, target) must name stored
 * entries of the right kind (entry.h's table). If one is missing the entry
 * waits (VIEW_PENDING_REF) and is retried when it arrives; if one has the
 * wrong kind (a WRITE whose parent is a name version, a MKDIR inside a
 * file, a REVERT whose target is in another thread, a REVOKE of a
 * non-grant, a LINK to a directory, a RENAME of a directory into itself,
 * a second root) it is rejected with -BFS_EKIND, once the references are
 * known. Entries that wait and later turn out wrong are dropped then.
 *
 * Objects and threads. An object's id is the id of its creating entry
 * (MKDIR, WRITE without parent, SLINK). Its content thread holds WRITE
 * updates, MODE and content REVERTs; its name threads hold RENAME, DELETE
 * and name REVERTs, one rooted at the creating entry and one at every
 * LINK. A REVERT belongs to the thread holding both its parent and its
 * target (content first when both could); its state is its target's state.
 * The state of a version (content bytes, mode, binding) is a function of
 * its own chain, computed once.
 *
 * Permission domains use *creation ancestry*: an object's domain is the
 * directory it was created in, that directory's creation directory, and so
 * on up to "/" (a directory also belongs to its own domain). Creation
 * ancestry never changes, so permissions never depend on arrival order or
 * on renames. (Consequence: a subtree moved by rename keeps the grants of
 * where it was created; view_check_move() refuses moves that cross the
 * writer's domains, so a writer never moves something out of its reach.)
 *
 * Grants. The root key (author of the root MKDIR) holds "/" forever. A
 * GRANT on directory D counts if its author holds an active grant on D or
 * an ancestor of D. A REVOKE of a grant on D counts if its author is the
 * root key or holds an active grant strictly above D (on a proper
 * ancestor): so revocations are stratified by depth and the result is
 * unique. A grant is active if it counts and no counting REVOKE targets it.
 * Revocation cascades: grants made by a key hold only while that key holds
 * its own grant (GRANT entries are never rescued by ACKs).
 *
 * Counting. Any other entry counts if its author holds an active grant
 * covering it (creates and LINK: the containing directory; content
 * versions: the object; name versions (RENAME, DELETE, name REVERT): the
 * directory the object was created in, since a name belongs to its
 * directory; RENAME also the new directory; ACK: whatever its target
 * needs), or if a counting entry
 * acknowledges it: an ACK targeting it or an entry whose parent it is.
 * This is the least fixed point, unique for a set. A revoked key's old
 * entries therefore stay if the revoker ACKs its leaves
 * (view_leaves_by_key()), and its later entries, even with a back-dated
 * parent, do not count. An entry that resolves but does not count is
 * held (VIEW_PENDING_GRANT) and counts as soon as a grant or an
 * acknowledgement arrives. The pending set (both kinds) is bounded by
 * VIEW_PENDING_MAX entries and VIEW_PENDING_BYTES_MAX bytes of memory:
 * beyond either, view_apply() refuses new pending
 * entries with -ENOSPC (no eviction, so what is held never depends on
 * timing; a peer resends later by sync).
 *
 * Winners (BaseFS order). In a thread, the counting versions form a tree
 * under the thread root. Walk down from the root; where a version has
 * several counting children, the branch (the child's whole counting
 * subtree) with the best authority wins (the smallest depth of a covering
 * active grant of any author in it; the root key has depth 0, a key without
 * any covering grant the worst), then the one with more distinct authors,
 * then the higher id of the branch's first entry. The leaf reached is the
 * thread's head; every other leaf is a loser (conflict). Thread cost is
 * O(1) for the common append at the head, O(thread) at a fork.
 *
 * Names. Each name thread's head gives a binding (directory, name) or
 * none (DELETE). Two objects bound to the same (directory, name): the one
 * whose head author has the better authority wins, then the higher head
 * id; the other stays reachable under /.basefs/conflicts/. A deleted
 * directory disappears with its subtree from the tree (everything stays
 * reachable, read-only, under /.basefs/history/<object>/ and a REVERT of the
 * DELETE restores it). Crossing directory renames can form a cycle of
 * bindings; in each cycle the directory whose name head has the smallest
 * id is shown in "/" under its name instead, so no subtree is lost and the
 * result only depends on the set. A real binding named ".basefs" in "/" is
 * shadowed by the virtual directory (view_check_name() refuses it).
 *
 * Times (deterministic, from entries only). A file's or symlink's mtime
 * is its content head's mtime_ns. A directory's mtime is the largest
 * mtime_ns of the counting name entries (creates, links, renames in or out,
 * deletes) that bind or unbind a name in it, or its own content head's,
 * whichever is larger. ctime is the largest mtime_ns of every counting entry
 * of the object's own threads, and at least its mtime.
 *
 * Virtual, read-only tree (reachable by view_lookup(), never listed by "/"):
 *   /.basefs/                      "history" and "conflicts"
 *   /.basefs/history/<obj-hex>/    one file per counting content version of
 *                                  the object, named <version-hex>, holding
 *                                  that version; plus "tree" (the object
 *                                  itself, read-only: browse a deleted dir)
 *   /.basefs/conflicts/            one directory per object that has a
 *                                  losing content leaf or a losing binding
 *   /.basefs/conflicts/<obj-hex>/  <version-hex> for each losing leaf, and
 *                                  "tree" (the object, read-only)
 * history/<obj-hex> is reachable by lookup only (not listed); conflicts/
 * lists its directories.
 *
 * Merkle tree (store/merkle.h): a 16-ary trie over the ids (hex nibbles) of every counting
 * entry (losers and revoked grants included, pending excluded). A node
 * holding at most VIEW_MERKLE_LEAF ids hashes as SHA-256(0x00 || ids in
 * order); a larger one as SHA-256(0x01 || its 16 children's hashes, an
 * empty child as 32 zero bytes). The shape is a function of the set, so
 * equal roots mean equal sets. Applying marks at most the trie depth nodes
 * dirty; the root is rehashed on read only along dirty paths, and reading
 * it again without change is O(1).
 *
 * Cost. Applying a create, write or rename costs its path depth plus its
 * conflict set (hash tables throughout). A GRANT, REVOKE or a change that
 * makes a counted entry stop counting recomputes the derived state from all
 * stored entries (O(entries); administrative events are rare).
 *
 * Checkpoint: the stored entries (applied and pending) in resolution order
 * (so loading never waits), with a version, the caller's opaque u64 (the
 * log offset it covers) and an XXH64 checksum; loading re-derives the
 * state in one pass without verification (100k entries: about 0.4 s of
 * CPU here, see bench/bench_view.c). The file format is described in
 * view.c above view_checkpoint_save().
 */
#ifndef BASEFS_STORE_VIEW_H
#define BASEFS_STORE_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/entry.h"
#include "store/hash.h"

#define VIEW_PENDING_MAX 65536
#define VIEW_PENDING_BYTES_MAX (64u << 20) /* memory held by pending entries */
#define VIEW_MERKLE_LEAF 16
#define VIEW_CHECKPOINT_VERSION 1
#define VIEW_BASEFS_NAME ".basefs"

struct view;

/* ---- life cycle and input ---- */

/* A view of the filesystem whose root is ROOT: a MKDIR without dir or
 * name. Its author is the root key. -BFS_EKIND if ROOT is no root. */
int view_create(const struct entry *root, struct view **out);
void view_free(struct view *v);

/* The filesystem's identity: the root object's id. */
const hash_t *view_root(const struct view *v);
/* The root key's fingerprint. */
const hash_t *view_root_key(const struct view *v);

enum view_apply_status {
  VIEW_APPLIED = 0,       /* stored and counting (the view may have changed) */
  VIEW_PENDING_REF = 1,   /* stored, waits for a referenced entry */
  VIEW_PENDING_GRANT = 2, /* stored, waits for a grant or acknowledgement */
  VIEW_DUPLICATE = 3,     /* already stored: nothing happened */
};

/*
 * Applies one verified entry. Returns an enum view_apply_status, or a
 * negative error when the entry is rejected (nothing stored): -BFS_EKIND
 * (a reference of the wrong kind, see above), -ENOSPC (pending set full),
 * -ENOMEM. Applying may also make earlier pending entries count.
 */
int view_apply(struct view *v, const struct entry *e);

/*
 * Called for every stored entry that starts counting (COUNTING true: it
 * was pending, or was just applied) or stops counting (false: a revoke
 * left it unacknowledged), during view_apply()/view_recompute(), after the
 * view is consistent for a full recompute but possibly before the end of
 * an incremental apply: do not call into the view from it. For event
 * handlers and for re-announcing entries that became valid. Not called
 * while a checkpoint loads.
 */
typedef void (*view_listener_fn)(void *arg, const hash_t *id, bool counting);
void view_set_listener(struct view *v, view_listener_fn fn, void *arg);

/*
 * BaseFS's first rule, as local state: marks the entry ID (a WRITE whose
 * blocks are not all present yet) incomplete, or complete again. view_stat()
 * of its object then shows the nearest complete version below the head
 * (content, size), while st.version stays the real head (the parent for the
 * next write). Not part of the Merkle tree, the dump's ids or checkpoints:
 * the caller marks again after opening. -ENOENT if ID is not stored.
 */
int view_set_incomplete(struct view *v, const hash_t *id, bool incomplete);

/* Derives the whole state again from the stored entries, as a checkpoint
 * load does. The result equals the incremental one (the tests check it);
 * for tests and for repair after an allocation failure. */
void view_recompute(struct view *v);

/* A counter that moves whenever the state may have changed (every
 * view_apply() of a new entry, view_set_incomplete(), view_recompute()):
 * equal values mean every query answers as before, so callers may cache
 * what they derived from the view (server/nfs3.c's READDIR replies). */
uint64_t view_changes(const struct view *v);

/* Numbers of stored entries: counting, pending (both kinds). */
size_t view_count(const struct view *v);
size_t view_pending(const struct view *v);

/* Where a stored entry stands: VIEW_APPLIED, VIEW_PENDING_REF or
 * VIEW_PENDING_GRANT; -ENOENT if not stored. */
int view_entry_status(const struct view *v, const hash_t *id);
/* A copy of a stored entry (pending ones included); -ENOENT. */
int view_entry(const struct view *v, const hash_t *id, struct entry *out);

/* ---- nodes: what a handle names ---- */

enum view_node_kind {
  VIEW_NODE_OBJECT = 0,    /* a file, directory or symlink; id = object id */
  VIEW_NODE_VERSION = 1,   /* a read-only file: one content version; id = version id */
  VIEW_NODE_BASEFS = 2,    /* /.basefs */
  VIEW_NODE_HISTORY = 3,   /* /.basefs/history */
  VIEW_NODE_CONFLICTS = 4, /* /.basefs/conflicts */
  VIEW_NODE_HISTORY_OBJ = 5,  /* /.basefs/history/<obj>; id = object id */
  VIEW_NODE_CONFLICT_OBJ = 6, /* /.basefs/conflicts/<obj>; id = object id */
};

/* 34 bytes of handle material: kind, read-only flag, id. Everything under
 * /.basefs is read-only (an object reached there has readonly = 1). */
struct view_node {
  uint8_t kind;
  uint8_t readonly;
  hash_t id;
};

enum view_type { VIEW_DIR = 1, VIEW_FILE = 2, VIEW_SYMLINK = 3 };

struct view_stat {
  uint8_t type;             /* enum view_type */
  bool readonly;            /* under /.basefs */
  uint32_t mode, uid, gid;  /* permission bits only */
  uint64_t size;
  uint64_t mtime_ns, ctime_ns;
  uint32_t nlink;           /* files: live bindings; dirs: 2 + child dirs */
  hash_t object;            /* object id (zero for virtual directories) */
  hash_t version;           /* content head (or the version itself); the parent for the next WRITE/MODE */
  hash_t content;           /* the entry carrying the content bytes (WRITE or SLINK); zero for dirs */
  uint64_t fileid;          /* 64 bits of object/version id, for NFS fileid */
};

/* The root directory's node. */
void view_root_node(const struct view *v, struct view_node *out);

/*
 * NAME in directory DIR. -ENOENT, -ENOTDIR (DIR no directory), -ESTALE
 * (DIR no longer exists). "/.basefs" is found in "/" only. If NAME_HEAD is
 * not NULL it receives the head of the binding's name thread (the parent
 * for a RENAME or DELETE of that name; zero for virtual nodes).
 */
int view_lookup(struct view *v, const struct view_node *dir, const char *name,
                struct view_node *out, hash_t *name_head);

/* DIR's parent directory, for "..": "/" for "/" and for /.basefs; a
 * directory reached read-only whose binding is gone gives its
 * /.basefs/history/<obj> directory. -ENOTDIR, -ESTALE. */
int view_parent(struct view *v, const struct view_node *dir, struct view_node *out);

/* An absolute path ("/a/b"; empty components ignored; "." and ".." are
 * -EINVAL). Same errors as view_lookup. */
int view_resolve(struct view *v, const char *path, struct view_node *out, hash_t *name_head);

/* -ESTALE if the node's object or version does not exist (any more). A
 * node exists while its object's creating entry counts, whether or not it
 * is reachable from "/". */
int view_stat(struct view *v, const struct view_node *n, struct view_stat *st);

/*
 * Lists directory DIR in cookie order, starting after COOKIE (0 = from the
 * start). A name's cookie is a 63-bit hash of the name (XXH3, never 0), so a
 * cookie stays valid whatever changes in between. (Two names of one
 * directory with equal cookies, odds about n^2 / 2^64, could make a resumed
 * listing skip the second: accepted.) CB gets each name, its
 * node and its cookie; a non-zero return stops the listing and is
 * returned. "." and ".." are not listed. -ENOTDIR, -ESTALE.
 */
typedef int (*view_readdir_cb)(void *arg, const char *name, const struct view_node *node,
                               uint64_t cookie);
int view_readdir(struct view *v, const struct view_node *dir, uint64_t cookie, view_readdir_cb cb,
                 void *arg);

/* A directory's visible names sorted by strcmp, as a malloc'd array of
 * malloc'd strings (for `ls`); free with view_names_free(). */
int view_list(struct view *v, const struct view_node *dir, char ***names, size_t *count);
void view_names_free(char **names, size_t count);

/* For DELTA: the content entry whose bytes are the dictionary of content
 * entry ID (the content of its parent version); -ENOENT if none. */
int view_content_base(const struct view *v, const hash_t *id, hash_t *base);

/* ---- versions (log, revert) ---- */

#define VIEW_V_CONTENT 0x01 /* in the content thread (else a name thread) */
#define VIEW_V_HEAD 0x02    /* the head of its thread */
#define VIEW_V_LOSER 0x04   /* a leaf that lost */
#define VIEW_V_DELETED 0x08 /* a name version that deletes */

struct view_version {
  hash_t id;
  uint8_t action;
  uint8_t flags;
  uint64_t mtime_ns;
  hash_t author;     /* fingerprint */
  hash_t thread;     /* thread root: the object id, or the LINK for a link's name thread */
  hash_t parent;     /* zero for a thread root */
};

/* Every counting version of object OBJ (content and name threads), ordered
 * by (mtime_ns, id) — "oldest first" — as a malloc'd array. -ESTALE. */
int view_versions(const struct view *v, const hash_t *obj, struct view_version **out,
                  size_t *count);

/* Version ID's description and the current head of its thread (the
 * parent a REVERT to ID must name). -ENOENT if ID counts in no thread. */
int view_version(const struct view *v, const hash_t *id, struct view_version *out, hash_t *head);

/* ---- permissions ---- */

/*
 * Would an entry by key FP that writes in or on NODE count? (A create or
 * link in a directory, a WRITE/MODE/DELETE on an object.) 0, -BFS_ENOGRANT,
 * -EROFS (under /.basefs), -ESTALE.
 */
int view_check_write(const struct view *v, const hash_t *fp, const struct view_node *node);
/* Would a DELETE of OBJ's name (or a RENAME's source side) by FP count?
 * Names live in the directory that holds them: a key granted on /a may
 * change /a's content and mode, not remove /a. 0, -BFS_ENOGRANT, -EINVAL
 * for "/", -EROFS, -ESTALE. */
int view_check_unlink(const struct view *v, const hash_t *fp, const struct view_node *obj);
/* A new NAME in DIR: -EINVAL if invalid, -EEXIST if bound (to a live
 * object), -EPERM for ".basefs" in "/". */
int view_check_name(struct view *v, const struct view_node *dir, const char *name);
/*
 * Would moving (RENAME) or linking (LINK) OBJ into directory DIR by key FP
 * stay in one of the writer's permission domains? 0; -BFS_ENOGRANT if FP
 * may not write one side; -EXDEV if the grant covering the source's name
 * (the outermost grant of FP covering OBJ's creation directory) and the
 * one covering DIR differ; -EINVAL if DIR is OBJ or inside it;
 * -EROFS; -ESTALE.
 */
int view_check_move(struct view *v, const hash_t *fp, const struct view_node *obj,
                    const struct view_node *dir);

struct view_grant {
  hash_t id;            /* the GRANT entry */
  hash_t key;           /* grantee's fingerprint */
  uint8_t pubkey[KEY_PUBLIC_SIZE];
  char name[ENTRY_NAME_MAX + 1]; /* the key's label in the grant */
  hash_t dir;           /* granted directory object */
  hash_t author;        /* granter's fingerprint */
  uint32_t depth;       /* creation depth of dir ("/" = 0) */
  bool active;          /* counts and is not revoked */
};

/* Every counting grant, active or revoked, ordered by (dir depth, id). */
int view_grants(const struct view *v, struct view_grant **out, size_t *count);

/* The counting entries of key FP that nothing else acknowledges (no
 * counting child, no counting ACK), GRANT/REVOKE excluded, ordered by id:
 * what a revoker ACKs so the key's past writes stay. */
int view_leaves_by_key(const struct view *v, const hash_t *fp, hash_t **out, size_t *count);

/* ---- Merkle tree and state ---- */

/* O(1) when nothing changed since the last call. */
void view_merkle_root(struct view *v, hash_t *out);

struct view_merkle_node {
  uint32_t count;       /* ids at and under this node */
  bool leaf;            /* count <= VIEW_MERKLE_LEAF: ids[] holds them */
  hash_t hash;
  hash_t child[16];     /* if !leaf: children's hashes (zero = empty) */
  hash_t ids[VIEW_MERKLE_LEAF];
};

/* The node for the first DEPTH nibbles (high nibble first) of PREFIX;
 * count 0 and a zero hash if there is none. */
int view_merkle_node(struct view *v, const uint8_t *prefix, unsigned depth,
                     struct view_merkle_node *out);

/* Canonical text of the whole derived state (tree, objects, threads,
 * grants, conflicts, Merkle root), malloc'd, NUL-terminated. Equal entry
 * sets give byte-identical dumps. */
int view_dump(struct view *v, char **out, size_t *len);

/* Saves every stored entry with OPAQUE (e.g. the log offset covered),
 * atomically (temp file + rename). */
int view_checkpoint_save(struct view *v, const char *path, uint64_t opaque);
/* -ENOENT, -BFS_ECHECKSUM (corrupt), -BFS_EFORMAT (unknown version). */
int view_checkpoint_load(const char *path, struct view **out, uint64_t *opaque);
/* The same from LEN bytes in memory (the file's whole content). */
int view_checkpoint_parse(const uint8_t *buf, size_t len, struct view **out, uint64_t *opaque);

#endif
