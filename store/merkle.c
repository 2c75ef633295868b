#include "store/merkle.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct mnode {
  uint32_t count;
  bool dirty;
  bool leaf;
  hash_t hash;
  union {
    struct mnode *child[16];
    hash_t *ids; /* leaf: MERKLE_LEAF slots, count used, sorted */
  } u;
};

struct merkle {
  struct mnode *root;
};

static unsigned nibble(const hash_t *id, unsigned depth)
{
  uint8_t b = id->bytes[depth / 2];
  return depth % 2 ? b & 0x0f : b >> 4;
}

static struct mnode *leaf_new(void);

/* The canonical node for IDS[0..N) (all sharing DEPTH nibbles). */
static struct mnode *build(const hash_t *ids, size_t n, unsigned depth);

static struct mnode *leaf_new(void)
{
  struct mnode *n = calloc(1, sizeof *n);
  if (!n)
    return NULL;
  n->leaf = true;
  n->dirty = true;
  n->u.ids = malloc(MERKLE_LEAF * sizeof(hash_t));
  if (!n->u.ids) {
    free(n);
    return NULL;
  }
  return n;
}

static void node_free(struct mnode *n)
{
  if (!n)
    return;
  if (n->leaf) {
    free(n->u.ids);
  } else {
    for (int i = 0; i < 16; i++)
      node_free(n->u.child[i]);
  }
  free(n);
}

int merkle_create(struct merkle **out)
{
  struct merkle *m = calloc(1, sizeof *m);
  if (!m)
    return -ENOMEM;
  m->root = leaf_new();
  if (!m->root) {
    free(m);
    return -ENOMEM;
  }
  *out = m;
  return 0;
}

void merkle_free(struct merkle *m)
{
  if (!m)
    return;
  node_free(m->root);
  free(m);
}

void merkle_clear(struct merkle *m)
{
  struct mnode *fresh = leaf_new();
  if (!fresh) {
    /* Keep the old root but empty it in place (no allocation needed). */
    if (!m->root->leaf) {
      for (int i = 0; i < 16; i++) {
        node_free(m->root->u.child[i]);
        m->root->u.child[i] = NULL;
      }
    }
    m->root->count = 0;
    m->root->dirty = true;
    return;
  }
  node_free(m->root);
  m->root = fresh;
}

static struct mnode *build(const hash_t *ids, size_t n, unsigned depth)
{
  struct mnode *node;
  if (n <= MERKLE_LEAF || depth >= 64) {
    node = leaf_new();
    if (!node)
      return NULL;
    memcpy(node->u.ids, ids, (n < MERKLE_LEAF ? n : MERKLE_LEAF) * sizeof(hash_t));
    node->count = (uint32_t)(n < MERKLE_LEAF ? n : MERKLE_LEAF);
    return node;
  }
  node = calloc(1, sizeof *node);
  if (!node)
    return NULL;
  node->dirty = true;
  node->count = (uint32_t)n;
  size_t lo = 0;
  for (unsigned k = 0; k < 16; k++) {
    size_t hi = lo;
    while (hi < n && nibble(&ids[hi], depth) == k)
      hi++;
    if (hi > lo) {
      node->u.child[k] = build(ids + lo, hi - lo, depth + 1);
      if (!node->u.child[k]) {
        node_free(node);
        return NULL;
      }
    }
    lo = hi;
  }
  return node;
}

int merkle_build(struct merkle *m, const hash_t *ids, size_t n)
{
  for (size_t i = 1; i < n; i++)
    if (hash_cmp(&ids[i - 1], &ids[i]) >= 0)
      return -EINVAL;
  struct mnode *root = build(ids, n, 0);
  if (!root)
    return -ENOMEM;
  node_free(m->root);
  m->root = root;
  return 0;
}

uint32_t merkle_count(const struct merkle *m) { return m->root->count; }

static bool leaf_has(const struct mnode *n, const hash_t *id, uint32_t *pos)
{
  uint32_t lo = 0, hi = n->count;
  while (lo < hi) {
    uint32_t mid = (lo + hi) / 2;
    int c = hash_cmp(&n->u.ids[mid], id);
    if (c == 0) {
      *pos = mid;
      return true;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *pos = lo;
  return false;
}

static bool contains(const struct mnode *n, const hash_t *id, unsigned depth)
{
  while (n && !n->leaf) {
    n = n->u.child[nibble(id, depth)];
    depth++;
  }
  uint32_t pos;
  return n && leaf_has(n, id, &pos);
}

/* Turns a full leaf at DEPTH into an inner node with leaf children. */
static int split(struct mnode *n, unsigned depth)
{
  struct mnode *kids[16] = {0};
  hash_t *ids = n->u.ids;
  for (uint32_t i = 0; i < n->count; i++) {
    unsigned k = nibble(&ids[i], depth);
    if (!kids[k] && !(kids[k] = leaf_new())) {
      for (int j = 0; j < 16; j++)
        node_free(kids[j]);
      return -ENOMEM;
    }
    kids[k]->u.ids[kids[k]->count++] = ids[i]; /* stays sorted */
  }
  free(ids);
  n->leaf = false;
  memcpy(n->u.child, kids, sizeof kids);
  return 0;
}

int merkle_add(struct merkle *m, const hash_t *id)
{
  if (contains(m->root, id, 0))
    return -EEXIST;
  struct mnode *n = m->root;
  unsigned depth = 0;
  for (;;) {
    if (n->leaf && n->count == MERKLE_LEAF && depth < 64) {
      int rc = split(n, depth);
      if (rc < 0)
        return rc;
    }
    n->dirty = true;
    if (n->leaf)
      break;
    unsigned k = nibble(id, depth);
    if (!n->u.child[k] && !(n->u.child[k] = leaf_new()))
      return -ENOMEM; /* counts on the path stay right: bumped below only */
    n = n->u.child[k];
    depth++;
  }
  uint32_t pos;
  leaf_has(n, id, &pos);
  memmove(&n->u.ids[pos + 1], &n->u.ids[pos], (n->count - pos) * sizeof(hash_t));
  n->u.ids[pos] = *id;
  n->count++;
  /* Bump the inner counts on the path now that the insert succeeded. */
  struct mnode *p = m->root;
  depth = 0;
  while (p != n) {
    p->count++;
    p = p->u.child[nibble(id, depth++)];
  }
  return 0;
}

/* Collects every id under N into OUT (sorted, since children are in order). */
static void gather(const struct mnode *n, hash_t *out, uint32_t *len)
{
  if (!n)
    return;
  if (n->leaf) {
    memcpy(out + *len, n->u.ids, n->count * sizeof(hash_t));
    *len += n->count;
    return;
  }
  for (int i = 0; i < 16; i++)
    gather(n->u.child[i], out, len);
}

static int collapse(struct mnode *n)
{
  hash_t *ids = malloc(MERKLE_LEAF * sizeof(hash_t));
  if (!ids)
    return -ENOMEM;
  uint32_t len = 0;
  gather(n, ids, &len);
  for (int i = 0; i < 16; i++)
    node_free(n->u.child[i]);
  n->leaf = true;
  n->u.ids = ids;
  return 0;
}

static int remove_rec(struct mnode *n, const hash_t *id, unsigned depth)
{
  n->dirty = true;
  if (n->leaf) {
    uint32_t pos;
    leaf_has(n, id, &pos);
    memmove(&n->u.ids[pos], &n->u.ids[pos + 1], (n->count - pos - 1) * sizeof(hash_t));
    n->count--;
    return 0;
  }
  unsigned k = nibble(id, depth);
  struct mnode *c = n->u.child[k];
  int rc = remove_rec(c, id, depth + 1);
  if (rc < 0)
    return rc;
  if (c->count == 0) {
    node_free(c);
    n->u.child[k] = NULL;
  }
  n->count--;
  if (n->count <= MERKLE_LEAF)
    return collapse(n);
  return 0;
}

int merkle_remove(struct merkle *m, const hash_t *id)
{
  if (!contains(m->root, id, 0))
    return -ENOENT;
  return remove_rec(m->root, id, 0);
}

static void rehash(struct mnode *n)
{
  if (!n->dirty)
    return;
  hash_ctx_t ctx;
  hash_init(&ctx);
  if (n->leaf) {
    uint8_t tag = 0;
    hash_update(&ctx, &tag, 1);
    hash_update(&ctx, n->u.ids, n->count * sizeof(hash_t));
  } else {
    uint8_t tag = 1;
    hash_t zero = {{0}};
    hash_update(&ctx, &tag, 1);
    for (int i = 0; i < 16; i++) {
      struct mnode *c = n->u.child[i];
      if (c) {
        rehash(c);
        hash_update(&ctx, &c->hash, sizeof c->hash);
      } else {
        hash_update(&ctx, &zero, sizeof zero);
      }
    }
  }
  hash_final(&ctx, &n->hash);
  n->dirty = false;
}

void merkle_root(struct merkle *m, hash_t *out)
{
  rehash(m->root);
  *out = m->root->hash;
}

int merkle_node(struct merkle *m, const uint8_t *prefix, unsigned depth, struct merkle_info *out)
{
  if (depth > 64)
    return -EINVAL;
  memset(out, 0, sizeof *out);
  rehash(m->root);
  struct mnode *n = m->root;
  unsigned d = 0;
  while (n && d < depth) {
    uint8_t b = prefix[d / 2];
    unsigned k = d % 2 ? b & 0x0f : b >> 4;
    if (n->leaf) {
      /* A leaf above DEPTH: the node asked for is the subset of its ids
       * under the prefix; report it as a leaf of those ids. */
      for (uint32_t i = 0; i < n->count; i++) {
        bool match = true;
        for (unsigned j = 0; j < depth && match; j++) {
          uint8_t pb = prefix[j / 2];
          match = nibble(&n->u.ids[i], j) == (j % 2 ? pb & 0x0fu : (unsigned)(pb >> 4));
        }
        if (match)
          out->ids[out->count++] = n->u.ids[i];
      }
      out->leaf = true;
      if (out->count) {
        hash_ctx_t ctx;
        uint8_t tag = 0;
        hash_init(&ctx);
        hash_update(&ctx, &tag, 1);
        hash_update(&ctx, out->ids, out->count * sizeof(hash_t));
        hash_final(&ctx, &out->hash);
      }
      return 0;
    }
    n = n->u.child[k];
    d++;
  }
  if (!n)
    return 0;
  out->count = n->count;
  out->leaf = n->leaf;
  out->hash = n->hash;
  if (n->leaf) {
    memcpy(out->ids, n->u.ids, n->count * sizeof(hash_t));
  } else {
    for (int i = 0; i < 16; i++)
      if (n->u.child[i])
        out->child[i] = n->u.child[i]->hash;
  }
  return 0;
}
