/*
 * The Merkle trie over entry ids: a 16-ary trie keyed by the ids' hex
 * nibbles (high nibble first). Its shape and hashes are a function of the
 * set of ids alone, so two peers with equal sets have equal roots, and a
 * peer syncing descends only the nodes whose hashes differ.
 *
 * A node holding at most MERKLE_LEAF ids hashes as
 *   SHA-256(0x00 || the ids in increasing order),
 * a larger one as
 *   SHA-256(0x01 || its 16 children's hashes, an empty child as 32 zeros).
 * The empty trie's root is SHA-256(0x00).
 *
 * Adding or removing an id costs the trie depth (about log16 n) and marks
 * that path dirty; merkle_root() rehashes dirty nodes only, so reading the
 * root again without change is O(1).
 */
#ifndef BASEFS_STORE_MERKLE_H
#define BASEFS_STORE_MERKLE_H

#include <stdbool.h>
#include <stdint.h>

#include "store/hash.h"

#define MERKLE_LEAF 16

struct merkle;

int merkle_create(struct merkle **out);
void merkle_free(struct merkle *m);
/* Removes every id. */
void merkle_clear(struct merkle *m);

/* 0, or -EEXIST if ID is already there, -ENOMEM. */
int merkle_add(struct merkle *m, const hash_t *id);
/* Replaces the content with the N distinct IDS, given in increasing order
 * (one pass; for loading). -EINVAL if not sorted, -ENOMEM (then empty). */
int merkle_build(struct merkle *m, const hash_t *ids, size_t n);
/* 0, or -ENOENT if ID is not there. */
int merkle_remove(struct merkle *m, const hash_t *id);
uint32_t merkle_count(const struct merkle *m);

void merkle_root(struct merkle *m, hash_t *out);

struct merkle_info {
  uint32_t count;
  bool leaf;
  hash_t hash;
  hash_t child[16];          /* if !leaf; zero for an empty child */
  hash_t ids[MERKLE_LEAF];   /* if leaf: the count ids, increasing */
};

/* The node at the first DEPTH nibbles of PREFIX (count 0, zero hash if
 * none). -EINVAL if DEPTH > 64. */
int merkle_node(struct merkle *m, const uint8_t *prefix, unsigned depth, struct merkle_info *out);

#endif
