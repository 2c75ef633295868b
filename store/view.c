/*
 * The view (see store/view.h for the contract). Layout of this file:
 * containers; entries and their resolution; grants and counting; threads
 * and heads; names, directory slots and cycle breaking; the apply loop and
 * the full recompute; queries; virtual /.basefs; dump; checkpoint.
 */
#include "store/view.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "store/error.h"
#include "store/merkle.h"

/* ---------------------------------------------------------------- containers */

struct vec {
  void **v;
  uint32_t n, cap;
};

static int vec_push(struct vec *a, void *p)
{
  if (a->n == a->cap) {
    uint32_t cap = a->cap ? a->cap * 2 : 4;
    void **nv = realloc(a->v, cap * sizeof *nv);
    if (!nv)
      return -ENOMEM;
    a->v = nv;
    a->cap = cap;
  }
  a->v[a->n++] = p;
  return 0;
}

static void vec_del(struct vec *a, const void *p)
{
  for (uint32_t i = 0; i < a->n; i++) {
    if (a->v[i] == p) {
      a->v[i] = a->v[--a->n];
      return;
    }
  }
}

static void vec_free(struct vec *a)
{
  free(a->v);
  a->v = NULL;
  a->n = a->cap = 0;
}

/* Open addressing, linear probing, backward-shift deletion; duplicate keys
 * allowed (callers compare the real key). Empty slot = NULL value. */
struct hmap {
  uint64_t *k;
  void **v;
  size_t cap, n;
};

static int hmap_grow(struct hmap *m)
{
  size_t cap = m->cap ? m->cap * 2 : 16;
  uint64_t *k = calloc(cap, sizeof *k);
  void **v = calloc(cap, sizeof *v);
  if (!k || !v) {
    free(k);
    free(v);
    return -ENOMEM;
  }
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->v[i])
      continue;
    size_t j = m->k[i] & (cap - 1);
    while (v[j])
      j = (j + 1) & (cap - 1);
    k[j] = m->k[i];
    v[j] = m->v[i];
  }
  free(m->k);
  free(m->v);
  m->k = k;
  m->v = v;
  m->cap = cap;
  return 0;
}

static int hmap_put(struct hmap *m, uint64_t key, void *val)
{
  if ((m->n + 1) * 2 > m->cap) {
    int rc = hmap_grow(m);
    if (rc < 0)
      return rc;
  }
  size_t j = key & (m->cap - 1);
  while (m->v[j])
    j = (j + 1) & (m->cap - 1);
  m->k[j] = key;
  m->v[j] = val;
  m->n++;
  return 0;
}

/* Iterates the values stored under KEY: *IT = 0 first. */
static void *hmap_next(const struct hmap *m, uint64_t key, size_t *it)
{
  if (!m->cap)
    return NULL;
  size_t mask = m->cap - 1;
  size_t j = *it ? *it - 1 : (key & mask);
  while (m->v[j]) {
    size_t cur = j;
    j = (j + 1) & mask;
    if (m->k[cur] == key) {
      *it = j + 1;
      return m->v[cur];
    }
  }
  *it = 0;
  return NULL;
}

static void hmap_del(struct hmap *m, uint64_t key, const void *val)
{
  if (!m->cap)
    return;
  size_t mask = m->cap - 1;
  size_t i = key & mask;
  while (m->v[i] && m->v[i] != val)
    i = (i + 1) & mask;
  if (!m->v[i])
    return;
  size_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (!m->v[j])
      break;
    size_t home = m->k[j] & mask;
    bool move = (j > i) ? (home <= i || home > j) : (home <= i && home > j);
    if (move) {
      m->k[i] = m->k[j];
      m->v[i] = m->v[j];
      i = j;
    }
  }
  m->v[i] = NULL;
  m->n--;
}

static void hmap_free(struct hmap *m)
{
  free(m->k);
  free(m->v);
  memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------- model */

struct vkey {
  hash_t fp;
  uint8_t pub[KEY_PUBLIC_SIZE];
  uint32_t idx;
};

enum { ST_WAITING = 0, ST_RESOLVED = 1 };
enum { TH_NONE = 0, TH_CONTENT = 1, TH_NAME = 2, TH_BOTH = 3 };

struct vobj;
struct nthread;

struct ventry {
  /* The entry itself. */
  hash_t id, parent, dir, target;
  uint64_t mtime_ns, size;
  uint32_t mode, uid, gid;
  uint8_t action, content_kind, name_len;
  uint16_t content_len;
  char *name;
  uint8_t *content;
  uint8_t sig[KEY_SIGNATURE_SIZE];
  struct vkey *key;
  /* Where it stands. */
  uint8_t state, thread;
  bool counting;
  bool was_counting; /* before a recompute, to tell the listener */
  bool incomplete;   /* local: its blocks are not all here (view_set_incomplete) */
  bool revoked;     /* GRANT: a counting REVOKE targets it */
  bool active;      /* GRANT: counts and not revoked */
  uint32_t index;   /* in view->all */
  uint64_t rseq;    /* resolution order (checkpoint order) */
  hash_t wait_on;   /* WAITING: the missing reference */
  struct ventry *pe, *te; /* resolved parent and target */
  struct vobj *obj;       /* thread object; GRANT/REVOKE: the directory */
  struct ventry *nroot;   /* name-thread root (creating entry or LINK) */
  struct vec children;    /* resolved entries whose parent this is */
  struct vec ackers;      /* resolved ACKs targeting this */
  /* Content state (content-thread versions). */
  struct ventry *csrc;
  uint32_t c_mode, c_uid, c_gid;
  uint64_t c_size, c_mtime;
  /* Name state (name-thread versions). */
  struct vobj *b_dir;
  const char *b_name;
  bool b_deleted;
};

struct dslot {
  char *name;
  uint64_t h;
  struct vec cands; /* struct nthread * bound here */
  struct nthread *win;
};

struct nthread {
  struct ventry *root, *head;
  struct vobj *obj;
  bool stale;        /* head must be recomputed by descent */
  struct dslot *slot;
  struct vobj *bdir; /* effective binding (NULL = unbound) */
};

struct vobj {
  hash_t id;
  struct ventry *create;
  uint8_t type;
  struct vobj *cdir; /* creation directory */
  uint32_t depth;
  struct vec versions; /* resolved entries of this object's threads (create, LINKs included) */
  struct vec nts;      /* struct nthread * */
  struct ventry *chead;
  bool cstale;
  uint32_t closers; /* losing content leaves */
  bool dirty;
  bool breaker;
  uint64_t ctime;
  /* Directories. */
  struct hmap slots; /* name hash -> struct dslot * */
  uint32_t nsubdirs;
  uint64_t dmtime;
  struct vobj *pdir; /* effective parent directory */
  struct vobj *hdir; /* head-binding parent last seen by the cycle rule */
  struct ventry *hhead; /* and the name head then (the rule ranks by it) */
  struct vec grants; /* GRANT entries on this directory */
  struct vec active; /* active GRANT entries on this directory */
  bool listing_stale;
  struct listing *listing;
};

struct listing_item {
  uint64_t cookie;
  const char *name;
  struct view_node node;
};

struct listing {
  size_t n;
  struct listing_item items[];
};

struct view {
  struct ventry *rootent;
  struct vobj *root;
  struct vkey *rootkey;
  struct hmap entries; /* id -> ventry */
  struct hmap objects; /* id -> vobj */
  struct hmap keys;    /* fp -> vkey */
  struct hmap waiting; /* wait_on -> ventry */
  struct vec all;      /* every stored ventry */
  struct vec keylist;
  struct vec grants;   /* resolved GRANT and REVOKE entries */
  struct vec breakers; /* cycle breakers */
  struct vec dirty;    /* objects to update */
  struct vec moved;    /* directories whose binding changed */
  struct vec work;     /* entries to (re)try */
  struct merkle *merkle;
  size_t ncounting, npending;
  size_t pending_bytes; /* memory held by pending entries (entry_cost) */
  uint64_t rseq;
  uint64_t changes; /* view_changes(): bumped by everything that may change the state */
  uint32_t gen;
  bool need_full;
  bool bulk; /* checkpoint load: derive everything once at the end */
  bool merkle_defer; /* full recompute: build the trie once at the end */
  view_listener_fn listener;
  void *listener_arg;
};

static const hash_t zero_hash;

/* qsort that accepts an empty (NULL) array. */
static void sort_(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
  if (n > 1)
    qsort(base, n, size, cmp);
}

static uint64_t name_hash(const char *name, size_t len) { return XXH3_64bits(name, len); }

static uint64_t cookie_of(const char *name)
{
  uint64_t c = name_hash(name, strlen(name)) >> 1;
  return c ? c : 1;
}

static struct ventry *find_entry(const struct view *v, const hash_t *id)
{
  size_t it = 0;
  struct ventry *e;
  while ((e = hmap_next(&v->entries, hash_key64(id), &it)))
    if (hash_eq(&e->id, id))
      return e;
  return NULL;
}

static struct vobj *find_obj(const struct view *v, const hash_t *id)
{
  size_t it = 0;
  struct vobj *o;
  while ((o = hmap_next(&v->objects, hash_key64(id), &it)))
    if (hash_eq(&o->id, id))
      return o;
  return NULL;
}

static struct vkey *find_key(const struct view *v, const hash_t *fp)
{
  size_t it = 0;
  struct vkey *k;
  while ((k = hmap_next(&v->keys, hash_key64(fp), &it)))
    if (hash_eq(&k->fp, fp))
      return k;
  return NULL;
}

static struct vkey *intern_key(struct view *v, const uint8_t pub[KEY_PUBLIC_SIZE])
{
  hash_t fp;
  key_fingerprint(pub, &fp);
  struct vkey *k = find_key(v, &fp);
  if (k)
    return k;
  k = calloc(1, sizeof *k);
  if (!k)
    return NULL;
  k->fp = fp;
  memcpy(k->pub, pub, KEY_PUBLIC_SIZE);
  k->idx = v->keylist.n;
  if (vec_push(&v->keylist, k) < 0 || hmap_put(&v->keys, hash_key64(&fp), k) < 0) {
    vec_del(&v->keylist, k);
    free(k);
    return NULL;
  }
  return k;
}

static struct dslot *find_slot(const struct vobj *d, const char *name)
{
  size_t it = 0;
  struct dslot *s;
  uint64_t h = name_hash(name, strlen(name));
  while ((s = hmap_next(&d->slots, h, &it)))
    if (strcmp(s->name, name) == 0)
      return s;
  return NULL;
}

static bool in_content(const struct ventry *e) { return e->thread == TH_CONTENT || e->thread == TH_BOTH; }
static bool in_name(const struct ventry *e) { return e->thread == TH_NAME || e->thread == TH_BOTH; }

/* What a stored entry costs in memory, for the pending bound. */
static size_t entry_cost(size_t name_len, size_t content_len)
{
  return sizeof(struct ventry) + name_len + 1 + content_len;
}

static void pending_add(struct view *v, const struct ventry *e, int sign)
{
  size_t c = entry_cost(e->name_len, e->content_len);
  if (sign > 0) {
    v->npending++;
    v->pending_bytes += c;
  } else {
    v->npending--;
    v->pending_bytes -= c;
  }
}

static void mark_dirty(struct view *v, struct vobj *o)
{
  if (o && !o->dirty) {
    o->dirty = true;
    vec_push(&v->dirty, o); /* on ENOMEM the object updates at the next change */
  }
}

/* ---------------------------------------------------------------- permissions */

/* The directories whose grants cover object O: O itself if a directory,
 * then its creation ancestry. */
static struct vobj *domain_start(struct vobj *o) { return o->type == VIEW_DIR ? o : o->cdir; }

static struct ventry *grant_of(const struct vobj *d, const struct vkey *k)
{
  for (uint32_t i = 0; i < d->active.n; i++) {
    struct ventry *g = d->active.v[i];
    if (memcmp(g->content, k->pub, KEY_PUBLIC_SIZE) == 0)
      return g;
  }
  return NULL;
}

/* The outermost active grant of K covering O (NULL if none); the root key
 * is covered by the root. */
static struct vobj *cover_dir(const struct view *v, const struct vkey *k, struct vobj *o, bool strict)
{
  if (k == v->rootkey)
    return v->root;
  struct vobj *best = NULL;
  struct vobj *d = o ? (strict ? o->cdir : domain_start(o)) : NULL;
  for (; d; d = d->cdir)
    if (grant_of(d, k))
      best = d;
  return best;
}

#define AUTH_NONE 0xffffffffu

static uint32_t authority(const struct view *v, const struct vkey *k, struct vobj *o)
{
  struct vobj *d = cover_dir(v, k, o, false);
  return d ? d->depth : AUTH_NONE;
}

/*
 * The object whose coverage entry E needs (NULL: nothing to check), and
 * whether it is strict: a name change (RENAME, DELETE, a name REVERT)
 * needs the directory holding the name, not the object: a key granted on
 * /a may change /a's content and mode but not remove or move /a itself.
 */
static struct vobj *loc_of(const struct view *v, const struct ventry *e, bool *strict)
{
  *strict = false;
  for (int guard = 0; e && guard < 1 << 16; guard++) {
    switch (e->action) {
    case ENTRY_MKDIR:
      if (e == v->rootent)
        return v->root;
      /* fall through */
    case ENTRY_SLINK:
    case ENTRY_LINK:
      return find_obj(v, &e->dir);
    case ENTRY_WRITE:
      if (hash_is_zero(&e->parent))
        return find_obj(v, &e->dir);
      return e->obj;
    case ENTRY_ACK:
      e = e->te;
      continue;
    default:
      *strict = e->thread == TH_NAME;
      return e->obj;
    }
  }
  return NULL;
}

static bool perm_ok(const struct view *v, const struct ventry *e)
{
  bool strict;
  struct vobj *o = loc_of(v, e, &strict);
  if (!o)
    return false;
  if (!cover_dir(v, e->key, o, strict))
    return false;
  if (e->action == ENTRY_RENAME) {
    struct vobj *nd = find_obj(v, &e->dir);
    if (!nd || !cover_dir(v, e->key, nd, false))
      return false;
  }
  return true;
}

/* ---------------------------------------------------------------- counting */

static void bump(uint64_t *t, uint64_t x)
{
  if (x > *t)
    *t = x;
}

/* Marks E counting, and everything it acknowledges. */
static void make_counting(struct view *v, struct ventry *e)
{
  struct vec stack = {0};
  for (;;) {
    while (e && !e->counting && e->state == ST_RESOLVED) {
      if (e->action == ENTRY_GRANT || e->action == ENTRY_REVOKE)
        break; /* never rescued by acknowledgement */
      e->counting = true;
      v->ncounting++;
      pending_add(v, e, -1);
      if (!v->merkle_defer)
        merkle_add(v->merkle, &e->id);
      if (v->listener && !v->merkle_defer && !v->bulk)
        v->listener(v->listener_arg, &e->id, true);
      struct vobj *o = e->obj;
      if (e->thread != TH_NONE && o) {
        bump(&o->ctime, e->mtime_ns);
        mark_dirty(v, o);
        if (in_content(e)) {
          if (o->chead && !o->cstale && e->pe == o->chead && e->thread == TH_CONTENT)
            o->chead = e;
          else if (e->thread == TH_CONTENT || !o->chead)
            o->cstale = true;
        }
        if (in_name(e)) {
          if (e->b_dir)
            bump(&e->b_dir->dmtime, e->mtime_ns);
          if (e->pe && in_name(e->pe) && e->pe->b_dir)
            bump(&e->pe->b_dir->dmtime, e->mtime_ns);
          for (uint32_t i = 0; i < o->nts.n; i++) {
            struct nthread *nt = o->nts.v[i];
            if (nt->root != e->nroot)
              continue;
            if (nt->head && !nt->stale && e->pe == nt->head && e->thread == TH_NAME)
              nt->head = e;
            else
              nt->stale = true;
          }
        }
      }
      if (e->action == ENTRY_ACK && e->te)
        vec_push(&stack, e->te);
      e = e->pe;
    }
    if (!stack.n)
      break;
    e = stack.v[--stack.n];
  }
  vec_free(&stack);
}

/* Grants and revokes, stratified by directory depth (see view.h). */
static void compute_grants(struct view *v)
{
  struct vec *g = &v->grants;
  uint32_t maxdepth = 0;
  for (uint32_t i = 0; i < g->n; i++) {
    struct ventry *e = g->v[i];
    e->revoked = e->active = false;
    vec_free(&e->obj->active);
    if (e->obj->depth > maxdepth)
      maxdepth = e->obj->depth;
  }
  for (uint32_t d = 0; d <= maxdepth; d++) {
    /* Revokes of grants at depth d: authors decided by depths < d. */
    for (uint32_t i = 0; i < g->n; i++) {
      struct ventry *r = g->v[i];
      if (r->action != ENTRY_REVOKE || r->obj->depth != d)
        continue;
      if (r->key == v->rootkey || cover_dir(v, r->key, r->obj, true)) {
        r->counting = true;
        r->te->revoked = true;
      }
    }
    /* Grants at depth d: least fixed point (a grant at D may rest on
     * another grant at D). */
    bool changed = true;
    while (changed) {
      changed = false;
      for (uint32_t i = 0; i < g->n; i++) {
        struct ventry *e = g->v[i];
        if (e->action != ENTRY_GRANT || e->obj->depth != d || e->counting)
          continue;
        if (!cover_dir(v, e->key, e->obj, false))
          continue;
        e->counting = true;
        if (!e->revoked) {
          e->active = true;
          vec_push(&e->obj->active, e);
        }
        changed = true;
      }
    }
  }
  for (uint32_t i = 0; i < g->n; i++) {
    struct ventry *e = g->v[i];
    if (e->counting) {
      v->ncounting++;
      pending_add(v, e, -1);
      if (!v->merkle_defer)
        merkle_add(v->merkle, &e->id);
    }
  }
}

/* ---------------------------------------------------------------- threads */

static bool in_thread(const struct ventry *c, int kind)
{
  return kind == TH_CONTENT ? c->thread == TH_CONTENT : c->thread == TH_NAME;
}

struct agg {
  uint32_t auth;
  struct vec keys;
  uint32_t leaves;
};

static void agg_walk(const struct view *v, struct ventry *e, int kind, struct vobj *o, struct agg *a)
{
  struct vec stack = {0};
  vec_push(&stack, e);
  while (stack.n) {
    struct ventry *x = stack.v[--stack.n];
    uint32_t au = authority(v, x->key, o);
    if (au < a->auth)
      a->auth = au;
    bool seen = false;
    for (uint32_t i = 0; i < a->keys.n && !seen; i++)
      seen = a->keys.v[i] == x->key;
    if (!seen)
      vec_push(&a->keys, x->key);
    bool leaf = true;
    for (uint32_t i = 0; i < x->children.n; i++) {
      struct ventry *c = x->children.v[i];
      if (c->counting && in_thread(c, kind)) {
        vec_push(&stack, c);
        leaf = false;
      }
    }
    if (leaf)
      a->leaves++;
  }
  vec_free(&stack);
}

/* BaseFS order: better authority, then more keys, then higher id. */
static bool agg_better(const struct agg *a, const struct ventry *ea, const struct agg *b,
                       const struct ventry *eb)
{
  if (a->auth != b->auth)
    return a->auth < b->auth;
  if (a->keys.n != b->keys.n)
    return a->keys.n > b->keys.n;
  return hash_cmp(&ea->id, &eb->id) > 0;
}

/* Walks down from ROOT to the winning leaf; *LOSERS gets the other leaves. */
static struct ventry *descend(const struct view *v, struct ventry *root, int kind, struct vobj *o,
                              uint32_t *losers)
{
  struct ventry *cur = root;
  *losers = 0;
  for (;;) {
    struct ventry *best = NULL, *only = NULL;
    uint32_t n = 0;
    for (uint32_t i = 0; i < cur->children.n; i++) {
      struct ventry *c = cur->children.v[i];
      if (c->counting && in_thread(c, kind)) {
        only = c;
        n++;
      }
    }
    if (n == 0)
      return cur;
    if (n == 1) {
      cur = only;
      continue;
    }
    struct agg ba = {0};
    uint32_t total = 0;
    for (uint32_t i = 0; i < cur->children.n; i++) {
      struct ventry *c = cur->children.v[i];
      if (!c->counting || !in_thread(c, kind))
        continue;
      struct agg a = {AUTH_NONE, {0}, 0};
      agg_walk(v, c, kind, o, &a);
      total += a.leaves;
      if (!best || agg_better(&a, c, &ba, best)) {
        vec_free(&ba.keys);
        ba = a;
        best = c;
      } else {
        vec_free(&a.keys);
      }
    }
    *losers += total - ba.leaves;
    vec_free(&ba.keys);
    cur = best;
  }
}

/* ---------------------------------------------------------------- names */

static bool slot_better(const struct view *v, const struct nthread *a, const struct nthread *b)
{
  uint32_t aa = authority(v, a->head->key, a->obj), ab = authority(v, b->head->key, b->obj);
  if (aa != ab)
    return aa < ab;
  return hash_cmp(&a->head->id, &b->head->id) > 0;
}

static void slot_elect(const struct view *v, struct vobj *d, struct dslot *s)
{
  struct nthread *w = NULL;
  for (uint32_t i = 0; i < s->cands.n; i++) {
    struct nthread *c = s->cands.v[i];
    if (!w || slot_better(v, c, w))
      w = c;
  }
  if (w != s->win) {
    if (s->win && s->win->obj->type == VIEW_DIR)
      d->nsubdirs--;
    if (w && w->obj->type == VIEW_DIR)
      d->nsubdirs++;
    s->win = w;
  }
  d->listing_stale = true;
}

static void unbind(const struct view *v, struct nthread *nt)
{
  struct dslot *s = nt->slot;
  if (!s)
    return;
  struct vobj *d = nt->bdir;
  vec_del(&s->cands, nt);
  nt->slot = NULL;
  nt->bdir = NULL;
  if (nt->obj->type == VIEW_DIR)
    nt->obj->pdir = NULL;
  slot_elect(v, d, s);
  if (!s->cands.n) {
    hmap_del(&d->slots, s->h, s);
    vec_free(&s->cands);
    free(s->name);
    free(s);
  }
}

static int bind(const struct view *v, struct nthread *nt, struct vobj *d, const char *name)
{
  struct dslot *s = find_slot(d, name);
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s || !(s->name = strdup(name))) {
      free(s);
      return -ENOMEM;
    }
    s->h = name_hash(name, strlen(name));
    if (hmap_put(&d->slots, s->h, s) < 0) {
      free(s->name);
      free(s);
      return -ENOMEM;
    }
  }
  if (vec_push(&s->cands, nt) < 0)
    return -ENOMEM;
  nt->slot = s;
  nt->bdir = d;
  if (nt->obj->type == VIEW_DIR)
    nt->obj->pdir = d;
  slot_elect(v, d, s);
  return 0;
}

/* The directory a directory's head binding names (H in view.h), or NULL. */
static struct vobj *hparent(const struct vobj *o)
{
  if (o->type != VIEW_DIR || !o->nts.n)
    return NULL;
  struct nthread *nt = o->nts.v[0];
  if (!nt->head || !nt->root->counting || nt->head->b_deleted)
    return NULL;
  return nt->head->b_dir;
}

/* Sets NT's binding to what its head (and the cycle rule) say. */
static int rebind(struct view *v, struct nthread *nt)
{
  struct vobj *o = nt->obj;
  struct vobj *want = NULL;
  const char *name = NULL;
  if (o->create->counting && nt->root->counting && nt->head && !nt->head->b_deleted) {
    want = o->breaker ? v->root : nt->head->b_dir;
    name = nt->head->b_name;
  }
  if (nt->slot && nt->bdir == want && want && strcmp(nt->slot->name, name) == 0) {
    slot_elect(v, want, nt->slot); /* the head may have changed */
    return 0;
  }
  unbind(v, nt);
  if (!want)
    return 0;
  return bind(v, nt, want, name);
}

static void update_object(struct view *v, struct vobj *o)
{
  o->dirty = false;
  bool exists = o->create->counting;
  if (exists && (o->cstale || !o->chead)) {
    o->chead = descend(v, o->create, TH_CONTENT, o, &o->closers);
    o->cstale = false;
  } else if (!exists) {
    o->chead = NULL;
    o->closers = 0;
  }
  for (uint32_t i = 0; i < o->nts.n; i++) {
    struct nthread *nt = o->nts.v[i];
    if (!nt->root->counting) {
      nt->head = NULL;
    } else if (nt->stale || !nt->head) {
      uint32_t losers;
      nt->head = descend(v, nt->root, TH_NAME, o, &losers);
      nt->stale = false;
    }
    rebind(v, nt);
  }
  if (o->type == VIEW_DIR && o->nts.n) {
    struct ventry *hh = ((struct nthread *)o->nts.v[0])->head;
    if (hparent(o) != o->hdir || hh != o->hhead) {
      o->hdir = hparent(o);
      o->hhead = hh;
      vec_push(&v->moved, o);
    }
  }
}

/* If O lies on a cycle of head bindings, the member whose name head has
 * the smallest id; else NULL. */
static struct vobj *cycle_min(struct view *v, struct vobj *o)
{
  struct vobj *p = hparent(o);
  size_t steps = 0, limit = v->objects.n + 1;
  while (p && p != o && steps++ < limit)
    p = hparent(p);
  if (p != o)
    return NULL;
  struct vobj *min = o;
  for (p = hparent(o); p != o; p = hparent(p)) {
    struct nthread *a = p->nts.v[0], *b = min->nts.v[0];
    if (hash_cmp(&a->head->id, &b->head->id) < 0)
      min = p;
  }
  return min;
}

static void set_breaker(struct view *v, struct vobj *o, bool on)
{
  if (o->breaker == on)
    return;
  o->breaker = on;
  if (on)
    vec_push(&v->breakers, o);
  else
    vec_del(&v->breakers, o);
  rebind(v, o->nts.v[0]);
}

static void fix_cycles(struct view *v)
{
  if (!v->moved.n)
    return;
  /* Old cycles may have opened or changed their smallest member. */
  for (uint32_t i = 0; i < v->breakers.n;) {
    struct vobj *b = v->breakers.v[i];
    struct vobj *m = cycle_min(v, b);
    if (m == b) {
      i++;
      continue;
    }
    set_breaker(v, b, false); /* removes b from the vector */
    if (m)
      set_breaker(v, m, true);
  }
  for (uint32_t i = 0; i < v->moved.n; i++) {
    struct vobj *m = cycle_min(v, v->moved.v[i]);
    if (m)
      set_breaker(v, m, true);
  }
  v->moved.n = 0;
}

static void process_dirty(struct view *v)
{
  while (v->dirty.n) {
    struct vobj *o = v->dirty.v[--v->dirty.n];
    update_object(v, o);
  }
  fix_cycles(v);
}

/* ---------------------------------------------------------------- resolution */

static struct vobj *obj_new(struct view *v, struct ventry *e, uint8_t type, struct vobj *cdir)
{
  struct vobj *o = calloc(1, sizeof *o);
  if (!o)
    return NULL;
  o->id = e->id;
  o->create = e;
  o->type = type;
  o->cdir = cdir;
  o->depth = cdir ? cdir->depth + 1 : 0;
  o->listing_stale = true;
  if (hmap_put(&v->objects, hash_key64(&o->id), o) < 0) {
    free(o);
    return NULL;
  }
  return o;
}

static int nthread_new(struct vobj *o, struct ventry *root)
{
  struct nthread *nt = calloc(1, sizeof *nt);
  if (!nt)
    return -ENOMEM;
  nt->root = root;
  nt->obj = o;
  nt->stale = true;
  if (vec_push(&o->nts, nt) < 0) {
    free(nt);
    return -ENOMEM;
  }
  return 0;
}

/* A reference that must be resolved: returns it, or NULL after setting
 * *MISSING. */
static struct ventry *ref(const struct view *v, const hash_t *id, const hash_t **missing)
{
  struct ventry *r = find_entry(v, id);
  if (r && r->state == ST_RESOLVED)
    return r;
  if (!*missing)
    *missing = id;
  return NULL;
}

static struct vobj *dir_obj(const struct view *v, const struct ventry *r)
{
  if (!r || r->action != ENTRY_MKDIR)
    return NULL;
  return find_obj(v, &r->id);
}

/*
 * Checks E's references: 0 = all there and of the right kind (the derived
 * fields are set and E is linked in), 1 = one is missing (e->wait_on),
 * -BFS_EKIND = wrong.
 */
static int resolve(struct view *v, struct ventry *e)
{
  const hash_t *missing = NULL;
  struct ventry *p = NULL, *d = NULL, *t = NULL;
  if (!hash_is_zero(&e->parent))
    p = ref(v, &e->parent, &missing);
  if (!hash_is_zero(&e->dir))
    d = ref(v, &e->dir, &missing);
  if (!hash_is_zero(&e->target))
    t = ref(v, &e->target, &missing);
  if (missing) {
    e->wait_on = *missing;
    return 1;
  }
  struct vobj *dobj = d ? dir_obj(v, d) : NULL;
  if (d && !dobj && e->action != ENTRY_ACK)
    return -BFS_EKIND;
  struct vobj *o = NULL;
  switch (e->action) {
  case ENTRY_MKDIR:
  case ENTRY_SLINK:
    if (!dobj || e->name_len == 0)
      return -BFS_EKIND;
    e->thread = TH_BOTH;
    break;
  case ENTRY_WRITE:
    if (p) {
      if (!in_content(p) || p->obj->type != VIEW_FILE || dobj)
        return -BFS_EKIND;
      o = p->obj;
      e->thread = TH_CONTENT;
    } else {
      if (!dobj || e->name_len == 0)
        return -BFS_EKIND;
      e->thread = TH_BOTH;
    }
    break;
  case ENTRY_LINK:
    if (!dobj || !t || t->thread != TH_BOTH || t->obj->type == VIEW_DIR || e->name_len == 0)
      return -BFS_EKIND;
    o = t->obj;
    e->thread = TH_NAME;
    e->nroot = e;
    break;
  case ENTRY_MODE:
    if (!p || !in_content(p))
      return -BFS_EKIND;
    o = p->obj;
    e->thread = TH_CONTENT;
    break;
  case ENTRY_RENAME:
    if (!p || !in_name(p) || p->action == ENTRY_DELETE || p->obj == v->root || !dobj ||
        dobj == p->obj || e->name_len == 0)
      return -BFS_EKIND;
    o = p->obj;
    e->thread = TH_NAME;
    e->nroot = p->nroot;
    break;
  case ENTRY_DELETE:
    if (!p || !in_name(p) || p->action == ENTRY_DELETE || p->obj == v->root)
      return -BFS_EKIND;
    o = p->obj;
    e->thread = TH_NAME;
    e->nroot = p->nroot;
    break;
  case ENTRY_REVERT:
    if (!p || !t || p->obj != t->obj || !p->obj)
      return -BFS_EKIND;
    o = p->obj;
    if (in_content(p) && in_content(t)) {
      e->thread = TH_CONTENT;
    } else if (in_name(p) && in_name(t) && p->nroot == t->nroot) {
      e->thread = TH_NAME;
      e->nroot = p->nroot;
    } else {
      return -BFS_EKIND;
    }
    break;
  case ENTRY_GRANT:
    if (!dobj || e->content_len != KEY_PUBLIC_SIZE)
      return -BFS_EKIND;
    /* Know the grantee by fingerprint before it writes (view_check_*). */
    if (!intern_key(v, e->content))
      return -ENOMEM;
    o = dobj;
    break;
  case ENTRY_REVOKE:
    if (!t || t->action != ENTRY_GRANT || !dobj || t->obj != dobj)
      return -BFS_EKIND;
    o = dobj;
    break;
  case ENTRY_ACK:
    if (!t || p || d)
      return -BFS_EKIND;
    break;
  default:
    return -BFS_EKIND;
  }
  /* Accepted: derive the state and link it in. */
  e->pe = p;
  e->te = t;
  if (e->thread == TH_BOTH) {
    uint8_t type = e->action == ENTRY_MKDIR ? VIEW_DIR : e->action == ENTRY_WRITE ? VIEW_FILE : VIEW_SYMLINK;
    o = obj_new(v, e, type, dobj);
    if (!o)
      return -ENOMEM;
    e->nroot = e;
  }
  e->obj = o;
  if (in_content(e)) {
    if (e->action == ENTRY_REVERT) {
      e->csrc = t->csrc;
      e->c_size = t->c_size;
      e->c_mode = t->c_mode;
      e->c_uid = t->c_uid;
      e->c_gid = t->c_gid;
    } else {
      e->csrc = e->action == ENTRY_MODE ? p->csrc : e;
      e->c_size = e->action == ENTRY_MODE ? p->c_size : e->size;
      e->c_mode = e->mode;
      e->c_uid = e->uid;
      e->c_gid = e->gid;
    }
    e->c_mtime = e->mtime_ns;
  }
  if (in_name(e)) {
    if (e->action == ENTRY_DELETE) {
      e->b_deleted = true;
      e->b_dir = p->b_dir;
      e->b_name = p->b_name;
    } else if (e->action == ENTRY_REVERT) {
      e->b_deleted = t->b_deleted;
      e->b_dir = t->b_dir;
      e->b_name = t->b_name;
    } else {
      e->b_dir = dobj;
      e->b_name = e->name;
    }
  }
  if (p && vec_push(&p->children, e) < 0)
    return -ENOMEM;
  if (e->action == ENTRY_ACK && vec_push(&t->ackers, e) < 0)
    return -ENOMEM;
  if (o && e->thread != TH_NONE && vec_push(&o->versions, e) < 0)
    return -ENOMEM;
  if (e->thread == TH_BOTH || e->action == ENTRY_LINK) {
    int rc = nthread_new(o, e);
    if (rc < 0)
      return rc;
  }
  if (e->action == ENTRY_GRANT || e->action == ENTRY_REVOKE) {
    if (vec_push(&v->grants, e) < 0)
      return -ENOMEM;
    if (e->action == ENTRY_GRANT && vec_push(&o->grants, e) < 0)
      return -ENOMEM;
  }
  e->state = ST_RESOLVED;
  e->rseq = ++v->rseq;
  return 0;
}

static void entry_free_mem(struct ventry *e)
{
  vec_free(&e->children);
  vec_free(&e->ackers);
  free(e);
}

/* Forgets a waiting entry that turned out wrong. */
static void drop(struct view *v, struct ventry *e)
{
  hmap_del(&v->entries, hash_key64(&e->id), e);
  struct ventry *last = v->all.v[--v->all.n];
  if (last != e) {
    v->all.v[e->index] = last;
    last->index = e->index;
  }
  pending_add(v, e, -1);
  entry_free_mem(e);
}

static struct ventry *ventry_new(struct view *v, const struct entry *in)
{
  uint16_t clen = in->content_len > ENTRY_CONTENT_MAX ? ENTRY_CONTENT_MAX : in->content_len;
  /* One allocation: the name and the content follow the struct. */
  struct ventry *e = malloc(sizeof *e + (size_t)in->name_len + 1 + clen);
  if (!e)
    return NULL;
  memset(e, 0, sizeof *e);
  e->key = intern_key(v, in->pubkey);
  if (!e->key) {
    free(e);
    return NULL;
  }
  e->id = in->id;
  e->parent = in->parent;
  e->dir = in->dir;
  e->target = in->target;
  e->mtime_ns = in->mtime_ns;
  e->size = in->size;
  e->mode = in->mode;
  e->uid = in->uid;
  e->gid = in->gid;
  e->action = in->action;
  e->content_kind = in->content_kind;
  e->name_len = in->name_len;
  e->content_len = clen;
  memcpy(e->sig, in->signature, sizeof e->sig);
  e->name = (char *)(e + 1);
  e->content = (uint8_t *)e->name + e->name_len + 1;
  memcpy(e->name, in->name, e->name_len);
  e->name[e->name_len] = 0;
  memcpy(e->content, in->content, clen);
  return e;
}

/* Stores E (not yet resolved). */
static int store(struct view *v, struct ventry *e)
{
  e->index = v->all.n;
  if (vec_push(&v->all, e) < 0)
    return -ENOMEM;
  if (hmap_put(&v->entries, hash_key64(&e->id), e) < 0) {
    v->all.n--;
    return -ENOMEM;
  }
  pending_add(v, e, 1);
  return 0;
}

/* After E resolved: decide its counting, wake its waiters. */
static void settle(struct view *v, struct ventry *e)
{
  if (e->action == ENTRY_GRANT || e->action == ENTRY_REVOKE) {
    /* Only a grant or revoke that could count now changes anything; one
     * that cannot will be looked at again by the next recompute. */
    if (!v->bulk && cover_dir(v, e->key, e->obj, e->action == ENTRY_REVOKE))
      v->need_full = true;
  } else if (!v->bulk) {
    bool ok = perm_ok(v, e);
    for (uint32_t i = 0; !ok && i < e->children.n; i++)
      ok = ((struct ventry *)e->children.v[i])->counting;
    if (ok)
      make_counting(v, e);
  }
  size_t it = 0;
  struct ventry *w;
  struct vec woken = {0};
  while ((w = hmap_next(&v->waiting, hash_key64(&e->id), &it)))
    if (hash_eq(&w->wait_on, &e->id))
      vec_push(&woken, w);
  for (uint32_t i = 0; i < woken.n; i++) {
    hmap_del(&v->waiting, hash_key64(&e->id), woken.v[i]);
    vec_push(&v->work, woken.v[i]);
  }
  vec_free(&woken);
}

/* Resolves everything on the work list. */
static void run_work(struct view *v)
{
  while (v->work.n) {
    struct ventry *e = v->work.v[--v->work.n];
    int rc = resolve(v, e);
    if (rc == 1) {
      if (hmap_put(&v->waiting, hash_key64(&e->wait_on), e) < 0)
        drop(v, e);
    } else if (rc < 0) {
      drop(v, e);
    } else {
      settle(v, e);
    }
  }
}

/* Derives everything again from the stored entries. */
static int hash_qcmp(const void *a, const void *b);

static void recompute_all(struct view *v)
{
  v->changes++;
  merkle_clear(v->merkle);
  v->merkle_defer = true;
  v->ncounting = 0;
  v->npending = v->all.n;
  v->pending_bytes = 0;
  for (uint32_t i = 0; i < v->all.n; i++) {
    const struct ventry *e = v->all.v[i];
    v->pending_bytes += entry_cost(e->name_len, e->content_len);
  }
  for (uint32_t i = 0; i < v->all.n; i++) {
    struct ventry *e = v->all.v[i];
    e->was_counting = e->counting;
    e->counting = false;
  }
  for (uint32_t i = 0; i < v->breakers.n; i++)
    ((struct vobj *)v->breakers.v[i])->breaker = false;
  v->breakers.n = 0;
  v->moved.n = 0;
  /* The root entry always counts: it defines the filesystem. */
  v->rootent->counting = true;
  v->ncounting++;
  pending_add(v, v->rootent, -1);
  compute_grants(v);
  for (size_t i = 0; i < v->objects.cap; i++) {
    struct vobj *o = v->objects.v[i];
    if (!o)
      continue;
    o->ctime = o->dmtime = 0;
    o->hdir = NULL;
    o->hhead = NULL;
    o->cstale = true;
    for (uint32_t j = 0; j < o->nts.n; j++)
      ((struct nthread *)o->nts.v[j])->stale = true;
    mark_dirty(v, o);
  }
  bump(&v->root->ctime, v->rootent->mtime_ns);
  for (uint32_t i = 0; i < v->all.n; i++) {
    struct ventry *e = v->all.v[i];
    if (e->state != ST_RESOLVED || e->counting || e->action == ENTRY_GRANT ||
        e->action == ENTRY_REVOKE)
      continue;
    if (perm_ok(v, e))
      make_counting(v, e);
  }
  /* Every directory with a head binding is "moved" (hdir was reset), so
   * the breakers are chosen from scratch. */
  process_dirty(v);
  v->need_full = false;
  /* The trie in one pass from the sorted ids (much cheaper than n adds). */
  v->merkle_defer = false;
  hash_t *ids = malloc((v->ncounting ? v->ncounting : 1) * sizeof *ids);
  size_t n = 0;
  for (uint32_t i = 0; ids && i < v->all.n; i++) {
    struct ventry *e = v->all.v[i];
    if (e->counting)
      ids[n++] = e->id;
  }
  if (ids) {
    sort_(ids, n, sizeof *ids, hash_qcmp);
    if (merkle_build(v->merkle, ids, n) < 0)
      ids = (free(ids), NULL);
  }
  if (!ids) /* out of memory: fall back to one add at a time */
    for (uint32_t i = 0; i < v->all.n; i++)
      if (((struct ventry *)v->all.v[i])->counting)
        merkle_add(v->merkle, &((struct ventry *)v->all.v[i])->id);
  free(ids);
  for (uint32_t i = 0; v->listener && !v->bulk && i < v->all.n; i++) {
    struct ventry *e = v->all.v[i];
    if (e->counting != e->was_counting)
      v->listener(v->listener_arg, &e->id, e->counting);
  }
}

void view_recompute(struct view *v) { recompute_all(v); }

int view_set_incomplete(struct view *v, const hash_t *id, bool incomplete)
{
  struct ventry *e = find_entry(v, id);
  if (!e)
    return -ENOENT;
  v->changes++;
  e->incomplete = incomplete;
  if (e->obj && e->obj->type != VIEW_DIR)
    e->obj->listing_stale = true; /* nothing cached depends on it otherwise */
  return 0;
}

uint64_t view_changes(const struct view *v) { return v->changes; }

void view_set_listener(struct view *v, view_listener_fn fn, void *arg)
{
  v->listener = fn;
  v->listener_arg = arg;
}

/* ---------------------------------------------------------------- life cycle */

int view_create(const struct entry *root, struct view **out)
{
  if (root->action != ENTRY_MKDIR || !hash_is_zero(&root->dir) || !hash_is_zero(&root->parent) ||
      root->name_len != 0)
    return -BFS_EKIND;
  struct view *v = calloc(1, sizeof *v);
  if (!v)
    return -ENOMEM;
  int rc = merkle_create(&v->merkle);
  if (rc < 0) {
    free(v);
    return rc;
  }
  struct ventry *e = ventry_new(v, root);
  if (!e || store(v, e) < 0) {
    view_free(v);
    return -ENOMEM;
  }
  v->rootent = e;
  v->rootkey = e->key;
  e->thread = TH_BOTH;
  e->nroot = e;
  e->csrc = e;
  e->c_mode = e->mode;
  e->c_uid = e->uid;
  e->c_gid = e->gid;
  e->c_mtime = e->mtime_ns;
  e->state = ST_RESOLVED;
  e->rseq = ++v->rseq;
  v->root = obj_new(v, e, VIEW_DIR, NULL);
  if (!v->root || vec_push(&v->root->versions, e) < 0) {
    view_free(v);
    return -ENOMEM;
  }
  e->obj = v->root;
  e->counting = true;
  v->ncounting = 1;
  v->npending = 0;
  v->pending_bytes = 0;
  merkle_add(v->merkle, &e->id);
  v->root->ctime = e->mtime_ns;
  v->root->chead = e;
  *out = v;
  return 0;
}

static void obj_free(struct vobj *o)
{
  for (size_t i = 0; i < o->slots.cap; i++) {
    struct dslot *s = o->slots.v[i];
    if (s) {
      vec_free(&s->cands);
      free(s->name);
      free(s);
    }
  }
  hmap_free(&o->slots);
  for (uint32_t i = 0; i < o->nts.n; i++)
    free(o->nts.v[i]);
  vec_free(&o->nts);
  vec_free(&o->versions);
  vec_free(&o->grants);
  vec_free(&o->active);
  free(o->listing);
  free(o);
}

void view_free(struct view *v)
{
  if (!v)
    return;
  for (uint32_t i = 0; i < v->all.n; i++)
    entry_free_mem(v->all.v[i]);
  for (size_t i = 0; i < v->objects.cap; i++)
    if (v->objects.v[i])
      obj_free(v->objects.v[i]);
  for (uint32_t i = 0; i < v->keylist.n; i++)
    free(v->keylist.v[i]);
  hmap_free(&v->entries);
  hmap_free(&v->objects);
  hmap_free(&v->keys);
  hmap_free(&v->waiting);
  vec_free(&v->all);
  vec_free(&v->keylist);
  vec_free(&v->grants);
  vec_free(&v->breakers);
  vec_free(&v->dirty);
  vec_free(&v->moved);
  vec_free(&v->work);
  merkle_free(v->merkle);
  free(v);
}

const hash_t *view_root(const struct view *v) { return &v->rootent->id; }
const hash_t *view_root_key(const struct view *v) { return &v->rootkey->fp; }
size_t view_count(const struct view *v) { return v->ncounting; }
size_t view_pending(const struct view *v) { return v->npending; }

static int status_of(const struct ventry *e)
{
  if (e->counting)
    return VIEW_APPLIED;
  return e->state == ST_RESOLVED ? VIEW_PENDING_GRANT : VIEW_PENDING_REF;
}

/* Which references an action has (entry.h's table): 2 = required,
 * 1 = optional (WRITE: parent xor dir), 0 = absent. */
static bool shape_ok(const struct entry *e)
{
  static const uint8_t want[ENTRY_ACTION_MAX + 1][3] = {
      /*             parent dir target */
      [ENTRY_MKDIR] = {0, 2, 0},  [ENTRY_WRITE] = {1, 1, 0},  [ENTRY_DELETE] = {2, 0, 0},
      [ENTRY_REVERT] = {2, 0, 2}, [ENTRY_GRANT] = {0, 2, 0},  [ENTRY_REVOKE] = {0, 2, 2},
      [ENTRY_ACK] = {0, 0, 2},    [ENTRY_LINK] = {0, 2, 2},   [ENTRY_SLINK] = {0, 2, 0},
      [ENTRY_MODE] = {2, 0, 0},   [ENTRY_RENAME] = {2, 2, 0},
  };
  if (e->action < ENTRY_MKDIR || e->action > ENTRY_ACTION_MAX)
    return false;
  bool has[3] = {!hash_is_zero(&e->parent), !hash_is_zero(&e->dir), !hash_is_zero(&e->target)};
  for (int i = 0; i < 3; i++) {
    uint8_t w = want[e->action][i];
    if ((w == 0 && has[i]) || (w == 2 && !has[i]))
      return false;
  }
  if (e->action == ENTRY_WRITE && has[0] == has[1])
    return false;
  return true;
}

/* With the pending set full: would IN count at once? (Read-only; entries
 * that would wait are refused, so the set stays bounded.) */
static bool would_count(const struct view *v, const struct entry *in)
{
  hash_t fp;
  key_fingerprint(in->pubkey, &fp);
  const struct vkey *key = find_key(v, &fp);
  if (!key)
    return false; /* an unknown key holds no grant */
  const hash_t *ref = !hash_is_zero(&in->parent) ? &in->parent : NULL;
  struct ventry *p = ref ? find_entry(v, ref) : NULL;
  struct ventry *t = !hash_is_zero(&in->target) ? find_entry(v, &in->target) : NULL;
  struct vobj *d = !hash_is_zero(&in->dir) ? find_obj(v, &in->dir) : NULL;
  if ((ref && (!p || p->state != ST_RESOLVED)) || (!hash_is_zero(&in->target) && (!t || t->state != ST_RESOLVED)) ||
      (!hash_is_zero(&in->dir) && !d))
    return false;
  struct vobj *o;
  bool strict = false;
  switch (in->action) {
  case ENTRY_ACK:
    o = loc_of(v, t, &strict);
    break;
  case ENTRY_RENAME:
    if (!d || !cover_dir(v, key, d, false))
      return false;
    o = p->obj;
    strict = true;
    break;
  case ENTRY_GRANT:
  case ENTRY_MKDIR:
  case ENTRY_SLINK:
  case ENTRY_LINK:
    o = d;
    break;
  case ENTRY_REVOKE:
    return d && cover_dir(v, key, d, true);
  case ENTRY_WRITE:
    o = p ? p->obj : d;
    break;
  default:
    o = p ? p->obj : NULL;
    strict = p && p->thread == TH_NAME;
  }
  return o && cover_dir(v, key, o, strict);
}

int view_apply(struct view *v, const struct entry *in)
{
  struct ventry *old = find_entry(v, &in->id);
  if (old)
    return VIEW_DUPLICATE;
  v->changes++;
  if (in->action == ENTRY_MKDIR && hash_is_zero(&in->dir))
    return -BFS_EKIND; /* a second root */
  if (!shape_ok(in))
    return -BFS_EKIND;
  if ((v->npending >= VIEW_PENDING_MAX ||
       v->pending_bytes + entry_cost(in->name_len, in->content_len) > VIEW_PENDING_BYTES_MAX) &&
      !would_count(v, in))
    return -ENOSPC;
  struct ventry *e = ventry_new(v, in);
  if (!e)
    return -ENOMEM;
  int rc = store(v, e);
  if (rc < 0) {
    entry_free_mem(e);
    return rc;
  }
  rc = resolve(v, e);
  if (rc < 0) {
    drop(v, e);
    return rc;
  }
  if (rc == 1) {
    if (hmap_put(&v->waiting, hash_key64(&e->wait_on), e) < 0) {
      drop(v, e);
      return -ENOMEM;
    }
    return VIEW_PENDING_REF;
  }
  settle(v, e);
  run_work(v);
  if (v->need_full)
    recompute_all(v);
  else
    process_dirty(v);
  /* A resolved entry that does not count and that nothing waits on: bound
   * the pending set. (It is linked in already, so keep it unless over.) */
  return status_of(e);
}

int view_entry_status(const struct view *v, const hash_t *id)
{
  struct ventry *e = find_entry(v, id);
  return e ? status_of(e) : -ENOENT;
}

int view_entry(const struct view *v, const hash_t *id, struct entry *out)
{
  const struct ventry *e = find_entry(v, id);
  if (!e)
    return -ENOENT;
  memset(out, 0, sizeof *out);
  out->id = e->id;
  out->action = e->action;
  out->content_kind = e->content_kind;
  out->parent = e->parent;
  out->dir = e->dir;
  out->target = e->target;
  out->mtime_ns = e->mtime_ns;
  out->size = e->size;
  out->mode = e->mode;
  out->uid = e->uid;
  out->gid = e->gid;
  out->name_len = e->name_len;
  memcpy(out->name, e->name, e->name_len);
  out->content_len = e->content_len;
  memcpy(out->content, e->content, e->content_len);
  memcpy(out->pubkey, e->key->pub, KEY_PUBLIC_SIZE);
  memcpy(out->signature, e->sig, KEY_SIGNATURE_SIZE);
  return 0;
}

/* ---------------------------------------------------------------- queries */

static bool exists(const struct vobj *o) { return o && o->create->counting; }

#define WALK_LIMIT (1u << 20)

static bool dir_live(const struct view *v, const struct vobj *d)
{
  for (uint32_t steps = 0; d && steps < WALK_LIMIT; steps++) {
    if (!exists(d))
      return false;
    if (d == v->root)
      return true;
    d = d->pdir;
  }
  return false;
}

static bool obj_live(const struct view *v, const struct vobj *o)
{
  if (!exists(o))
    return false;
  if (o->type == VIEW_DIR)
    return dir_live(v, o);
  for (uint32_t i = 0; i < o->nts.n; i++) {
    const struct nthread *nt = o->nts.v[i];
    if (nt->bdir && dir_live(v, nt->bdir))
      return true;
  }
  return false;
}

static bool has_conflict(const struct vobj *o)
{
  if (o->closers)
    return true;
  for (uint32_t i = 0; i < o->nts.n; i++) {
    const struct nthread *nt = o->nts.v[i];
    if (nt->slot && nt->slot->win != nt)
      return true;
  }
  return false;
}

static bool content_leaf(const struct ventry *e)
{
  for (uint32_t i = 0; i < e->children.n; i++) {
    const struct ventry *c = e->children.v[i];
    if (c->counting && c->thread == TH_CONTENT)
      return false;
  }
  return true;
}

static bool name_leaf(const struct ventry *e)
{
  for (uint32_t i = 0; i < e->children.n; i++) {
    const struct ventry *c = e->children.v[i];
    if (c->counting && c->thread == TH_NAME)
      return false;
  }
  return true;
}

static bool is_content_loser(const struct vobj *o, const struct ventry *e)
{
  return e->counting && in_content(e) && e != o->chead && content_leaf(e);
}

static struct nthread *nthread_of(const struct vobj *o, const struct ventry *root)
{
  for (uint32_t i = 0; i < o->nts.n; i++) {
    struct nthread *nt = o->nts.v[i];
    if (nt->root == root)
      return nt;
  }
  return NULL;
}

/* The object a node names, if it is a live (or, read-only, existing) one. */
static int node_obj(const struct view *v, const struct view_node *n, struct vobj **out)
{
  struct vobj *o = find_obj(v, &n->id);
  if (!exists(o) || (!n->readonly && !obj_live(v, o)))
    return -ESTALE;
  *out = o;
  return 0;
}

void view_root_node(const struct view *v, struct view_node *out)
{
  memset(out, 0, sizeof *out);
  out->kind = VIEW_NODE_OBJECT;
  out->id = v->root->id;
}

static void mknode(struct view_node *n, uint8_t kind, bool ro, const hash_t *id)
{
  memset(n, 0, sizeof *n);
  n->kind = kind;
  n->readonly = ro;
  if (id)
    n->id = *id;
}

int view_lookup(struct view *v, const struct view_node *dir, const char *name,
                struct view_node *out, hash_t *name_head)
{
  if (name_head)
    *name_head = zero_hash;
  size_t len = strlen(name);
  hash_t id;
  struct vobj *o;
  int rc;
  switch (dir->kind) {
  case VIEW_NODE_OBJECT: {
    if ((rc = node_obj(v, dir, &o)) < 0)
      return rc;
    if (o->type != VIEW_DIR)
      return -ENOTDIR;
    if (o == v->root && !dir->readonly && strcmp(name, VIEW_BASEFS_NAME) == 0) {
      mknode(out, VIEW_NODE_BASEFS, true, NULL);
      return 0;
    }
    struct dslot *s = find_slot(o, name);
    if (!s || !s->win)
      return -ENOENT;
    mknode(out, VIEW_NODE_OBJECT, dir->readonly, &s->win->obj->id);
    if (name_head)
      *name_head = s->win->head->id;
    return 0;
  }
  case VIEW_NODE_BASEFS:
    if (strcmp(name, "history") == 0)
      mknode(out, VIEW_NODE_HISTORY, true, NULL);
    else if (strcmp(name, "conflicts") == 0)
      mknode(out, VIEW_NODE_CONFLICTS, true, NULL);
    else
      return -ENOENT;
    return 0;
  case VIEW_NODE_HISTORY:
  case VIEW_NODE_CONFLICTS:
    if (len != 64 || hash_from_hex(name, &id) < 0)
      return -ENOENT;
    o = find_obj(v, &id);
    if (!exists(o) || (dir->kind == VIEW_NODE_CONFLICTS && !has_conflict(o)))
      return -ENOENT;
    mknode(out, dir->kind == VIEW_NODE_HISTORY ? VIEW_NODE_HISTORY_OBJ : VIEW_NODE_CONFLICT_OBJ,
           true, &id);
    return 0;
  case VIEW_NODE_HISTORY_OBJ:
  case VIEW_NODE_CONFLICT_OBJ: {
    o = find_obj(v, &dir->id);
    if (!exists(o))
      return -ESTALE;
    if (strcmp(name, "tree") == 0) {
      mknode(out, VIEW_NODE_OBJECT, true, &o->id);
      return 0;
    }
    if (len != 64 || hash_from_hex(name, &id) < 0)
      return -ENOENT;
    struct ventry *e = find_entry(v, &id);
    if (!e || e->obj != o || !e->counting || !in_content(e))
      return -ENOENT;
    if (dir->kind == VIEW_NODE_CONFLICT_OBJ && !is_content_loser(o, e))
      return -ENOENT;
    mknode(out, VIEW_NODE_VERSION, true, &id);
    return 0;
  }
  default:
    return -ENOTDIR;
  }
}

int view_resolve(struct view *v, const char *path, struct view_node *out, hash_t *name_head)
{
  struct view_node cur;
  view_root_node(v, &cur);
  if (name_head)
    *name_head = zero_hash;
  if (!path || path[0] != '/')
    return -EINVAL;
  const char *p = path;
  char comp[ENTRY_NAME_MAX + 1];
  while (*p) {
    while (*p == '/')
      p++;
    if (!*p)
      break;
    const char *end = strchr(p, '/');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len > ENTRY_NAME_MAX)
      return -ENAMETOOLONG;
    memcpy(comp, p, len);
    comp[len] = 0;
    if (strcmp(comp, ".") == 0 || strcmp(comp, "..") == 0)
      return -EINVAL;
    struct view_node next;
    int rc = view_lookup(v, &cur, comp, &next, name_head);
    if (rc < 0)
      return rc;
    cur = next;
    p += len;
  }
  *out = cur;
  return 0;
}

static uint64_t fileid_of(const struct view_node *n)
{
  uint64_t id = hash_key64(&n->id);
  if (n->kind != VIEW_NODE_OBJECT)
    id ^= 0x9e3779b97f4a7c15ull * (n->kind + 1);
  return id ? id : 1;
}

static uint64_t obj_mtime(const struct vobj *o)
{
  uint64_t m = o->chead ? o->chead->c_mtime : 0;
  if (o->type == VIEW_DIR && o->dmtime > m)
    m = o->dmtime;
  return m;
}

int view_stat(struct view *v, const struct view_node *n, struct view_stat *st)
{
  memset(st, 0, sizeof *st);
  st->fileid = fileid_of(n);
  st->readonly = n->readonly || n->kind != VIEW_NODE_OBJECT;
  struct vobj *o;
  int rc;
  switch (n->kind) {
  case VIEW_NODE_OBJECT: {
    if ((rc = node_obj(v, n, &o)) < 0)
      return rc;
    const struct ventry *h = o->chead, *shown = h;
    /* BaseFS's first rule: a version whose blocks are missing is not
     * shown; readers see the nearest complete version below it. */
    while (shown->csrc->incomplete && shown->pe && in_content(shown->pe))
      shown = shown->pe;
    st->type = o->type;
    st->mode = h->c_mode;
    st->uid = h->c_uid;
    st->gid = h->c_gid;
    st->size = o->type == VIEW_DIR ? 4096 : shown->c_size;
    st->mtime_ns = o->type == VIEW_DIR ? obj_mtime(o) : shown->c_mtime;
    st->ctime_ns = o->ctime > st->mtime_ns ? o->ctime : st->mtime_ns;
    if (o->type == VIEW_DIR) {
      st->nlink = 2 + o->nsubdirs;
    } else {
      for (uint32_t i = 0; i < o->nts.n; i++)
        st->nlink += ((struct nthread *)o->nts.v[i])->slot != NULL;
    }
    st->object = o->id;
    st->version = h->id;
    if (o->type != VIEW_DIR)
      st->content = shown->csrc->id;
    break;
  }
  case VIEW_NODE_VERSION: {
    struct ventry *e = find_entry(v, &n->id);
    if (!e || !e->counting || !in_content(e) || !exists(e->obj))
      return -ESTALE;
    st->type = e->obj->type == VIEW_SYMLINK ? VIEW_SYMLINK : VIEW_FILE;
    st->mode = e->c_mode;
    st->uid = e->c_uid;
    st->gid = e->c_gid;
    st->size = e->obj->type == VIEW_DIR ? 0 : e->c_size;
    st->mtime_ns = e->c_mtime;
    st->ctime_ns = e->mtime_ns;
    st->nlink = 1;
    st->object = e->obj->id;
    st->version = e->id;
    if (e->obj->type != VIEW_DIR)
      st->content = e->csrc->id;
    break;
  }
  case VIEW_NODE_HISTORY_OBJ:
  case VIEW_NODE_CONFLICT_OBJ:
    o = find_obj(v, &n->id);
    if (!exists(o))
      return -ESTALE;
    /* fall through */
  case VIEW_NODE_BASEFS:
  case VIEW_NODE_HISTORY:
  case VIEW_NODE_CONFLICTS:
    st->type = VIEW_DIR;
    st->mode = 0555;
    st->uid = v->root->chead->c_uid;
    st->gid = v->root->chead->c_gid;
    st->size = 4096;
    st->mtime_ns = st->ctime_ns = obj_mtime(v->root);
    st->nlink = 2;
    break;
  default:
    return -ESTALE;
  }
  if (st->readonly)
    st->mode &= ~0222u;
  return 0;
}

/* ---- directory listings ---- */

struct lbuild {
  struct listing_item *items;
  size_t n, cap;
  int err;
};

static void lb_add(struct lbuild *b, const char *name, const struct view_node *node)
{
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 16;
    struct listing_item *ni = realloc(b->items, cap * sizeof *ni);
    if (!ni) {
      b->err = -ENOMEM;
      return;
    }
    b->items = ni;
    b->cap = cap;
  }
  b->items[b->n].cookie = cookie_of(name);
  b->items[b->n].name = name;
  b->items[b->n].node = *node;
  b->n++;
}

static int item_cmp(const void *a, const void *b)
{
  const struct listing_item *x = a, *y = b;
  if (x->cookie != y->cookie)
    return x->cookie < y->cookie ? -1 : 1;
  return strcmp(x->name, y->name);
}

/* Names of a virtual listing (hex ids) live here until the call ends. */
struct vnames {
  struct vec strs;
};

static const char *vn_add(struct vnames *vn, const hash_t *id)
{
  char *s = malloc(HASH_HEX_SIZE);
  if (!s || vec_push(&vn->strs, s) < 0) {
    free(s);
    return NULL;
  }
  hash_to_hex(id, s);
  return s;
}

static void vn_free(struct vnames *vn)
{
  for (uint32_t i = 0; i < vn->strs.n; i++)
    free(vn->strs.v[i]);
  vec_free(&vn->strs);
}

/* Builds the sorted listing of DIR into *ITEMS (malloc'd; names point into
 * the view or into VN). */
static int build_listing(struct view *v, const struct view_node *dir, struct vnames *vn,
                         struct listing_item **items, size_t *count)
{
  struct lbuild b = {0};
  struct view_node node;
  struct vobj *o;
  int rc;
  switch (dir->kind) {
  case VIEW_NODE_OBJECT:
    if ((rc = node_obj(v, dir, &o)) < 0)
      return rc;
    if (o->type != VIEW_DIR)
      return -ENOTDIR;
    if (o->listing_stale || !o->listing) {
      for (size_t i = 0; i < o->slots.cap; i++) {
        struct dslot *s = o->slots.v[i];
        if (!s || !s->win)
          continue;
        if (o == v->root && strcmp(s->name, VIEW_BASEFS_NAME) == 0)
          continue;
        mknode(&node, VIEW_NODE_OBJECT, false, &s->win->obj->id);
        lb_add(&b, s->name, &node);
      }
      if (b.err) {
        free(b.items);
        return b.err;
      }
      sort_(b.items, b.n, sizeof *b.items, item_cmp);
      struct listing *l = malloc(sizeof *l + b.n * sizeof(struct listing_item));
      if (!l) {
        free(b.items);
        return -ENOMEM;
      }
      l->n = b.n;
      if (b.n)
        memcpy(l->items, b.items, b.n * sizeof *b.items);
      free(b.items);
      free(o->listing);
      o->listing = l;
      o->listing_stale = false;
    }
    *items = malloc((o->listing->n ? o->listing->n : 1) * sizeof **items);
    if (!*items)
      return -ENOMEM;
    memcpy(*items, o->listing->items, o->listing->n * sizeof **items);
    *count = o->listing->n;
    for (size_t i = 0; i < *count; i++)
      (*items)[i].node.readonly = dir->readonly;
    return 0;
  case VIEW_NODE_BASEFS:
    mknode(&node, VIEW_NODE_HISTORY, true, NULL);
    lb_add(&b, "history", &node);
    mknode(&node, VIEW_NODE_CONFLICTS, true, NULL);
    lb_add(&b, "conflicts", &node);
    break;
  case VIEW_NODE_HISTORY:
    break; /* reachable by lookup only */
  case VIEW_NODE_CONFLICTS:
    for (size_t i = 0; i < v->objects.cap; i++) {
      o = v->objects.v[i];
      if (!exists(o) || !has_conflict(o))
        continue;
      mknode(&node, VIEW_NODE_CONFLICT_OBJ, true, &o->id);
      const char *nm = vn_add(vn, &o->id);
      if (!nm)
        b.err = -ENOMEM;
      else
        lb_add(&b, nm, &node);
    }
    break;
  case VIEW_NODE_HISTORY_OBJ:
  case VIEW_NODE_CONFLICT_OBJ:
    o = find_obj(v, &dir->id);
    if (!exists(o))
      return -ESTALE;
    mknode(&node, VIEW_NODE_OBJECT, true, &o->id);
    lb_add(&b, "tree", &node);
    for (uint32_t i = 0; i < o->versions.n; i++) {
      struct ventry *e = o->versions.v[i];
      if (!e->counting || !in_content(e))
        continue;
      if (dir->kind == VIEW_NODE_CONFLICT_OBJ && !is_content_loser(o, e))
        continue;
      mknode(&node, VIEW_NODE_VERSION, true, &e->id);
      const char *nm = vn_add(vn, &e->id);
      if (!nm)
        b.err = -ENOMEM;
      else
        lb_add(&b, nm, &node);
    }
    break;
  default:
    return -ENOTDIR;
  }
  if (b.err) {
    free(b.items);
    return b.err;
  }
  sort_(b.items, b.n, sizeof *b.items, item_cmp);
  *items = b.items;
  *count = b.n;
  return 0;
}

int view_readdir(struct view *v, const struct view_node *dir, uint64_t cookie, view_readdir_cb cb,
                 void *arg)
{
  struct listing_item *items = NULL;
  size_t n = 0;
  struct vnames vn = {{0}};
  int rc = build_listing(v, dir, &vn, &items, &n);
  if (rc < 0) {
    vn_free(&vn);
    return rc;
  }
  /* Names of object listings point into the view's slots, which a callback
   * must not change (the view is not re-entrant). */
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (items[mid].cookie <= cookie)
      lo = mid + 1;
    else
      hi = mid;
  }
  rc = 0;
  for (size_t i = lo; i < n && rc == 0; i++)
    rc = cb(arg, items[i].name, &items[i].node, items[i].cookie);
  free(items);
  vn_free(&vn);
  return rc;
}

static int str_cmp(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int view_list(struct view *v, const struct view_node *dir, char ***names, size_t *count)
{
  struct listing_item *items = NULL;
  size_t n = 0;
  struct vnames vn = {{0}};
  int rc = build_listing(v, dir, &vn, &items, &n);
  if (rc < 0) {
    vn_free(&vn);
    return rc;
  }
  char **out = calloc(n ? n : 1, sizeof *out);
  if (!out)
    rc = -ENOMEM;
  for (size_t i = 0; rc == 0 && i < n; i++)
    if (!(out[i] = strdup(items[i].name)))
      rc = -ENOMEM;
  free(items);
  vn_free(&vn);
  if (rc < 0) {
    view_names_free(out, n);
    return rc;
  }
  sort_(out, n, sizeof *out, str_cmp);
  *names = out;
  *count = n;
  return 0;
}

void view_names_free(char **names, size_t count)
{
  if (!names)
    return;
  for (size_t i = 0; i < count; i++)
    free(names[i]);
  free(names);
}

int view_content_base(const struct view *v, const hash_t *id, hash_t *base)
{
  const struct ventry *e = find_entry(v, id);
  if (!e || e->state != ST_RESOLVED || !e->pe || !in_content(e->pe) || !e->pe->csrc)
    return -ENOENT;
  *base = e->pe->csrc->id;
  return 0;
}

/* ---- versions ---- */

static void describe(const struct vobj *o, const struct ventry *e, struct view_version *out)
{
  memset(out, 0, sizeof *out);
  out->id = e->id;
  out->action = e->action;
  out->mtime_ns = e->mtime_ns;
  out->author = e->key->fp;
  out->parent = e->parent;
  out->thread = in_content(e) ? o->id : e->nroot->id;
  if (in_content(e))
    out->flags |= VIEW_V_CONTENT;
  bool head = false, leaf = false;
  if (in_content(e)) {
    head |= e == o->chead;
    leaf |= content_leaf(e) && e != o->chead;
  }
  if (in_name(e)) {
    const struct nthread *nt = nthread_of(o, e->nroot);
    bool nh = nt && nt->head == e;
    head |= nh;
    leaf |= name_leaf(e) && !nh;
    if (e->b_deleted)
      out->flags |= VIEW_V_DELETED;
  }
  if (head)
    out->flags |= VIEW_V_HEAD;
  if (leaf && !head)
    out->flags |= VIEW_V_LOSER;
}

static int version_cmp(const void *a, const void *b)
{
  const struct view_version *x = a, *y = b;
  if (x->mtime_ns != y->mtime_ns)
    return x->mtime_ns < y->mtime_ns ? -1 : 1;
  return hash_cmp(&x->id, &y->id);
}

int view_versions(const struct view *v, const hash_t *obj, struct view_version **out, size_t *count)
{
  const struct vobj *o = find_obj(v, obj);
  if (!exists(o))
    return -ESTALE;
  struct view_version *vs = calloc(o->versions.n ? o->versions.n : 1, sizeof *vs);
  if (!vs)
    return -ENOMEM;
  size_t n = 0;
  for (uint32_t i = 0; i < o->versions.n; i++) {
    const struct ventry *e = o->versions.v[i];
    if (e->counting)
      describe(o, e, &vs[n++]);
  }
  sort_(vs, n, sizeof *vs, version_cmp);
  *out = vs;
  *count = n;
  return 0;
}

int view_version(const struct view *v, const hash_t *id, struct view_version *out, hash_t *head)
{
  const struct ventry *e = find_entry(v, id);
  if (!e || !e->counting || e->thread == TH_NONE || !e->obj)
    return -ENOENT;
  const struct vobj *o = e->obj;
  describe(o, e, out);
  if (head) {
    const struct ventry *h = NULL;
    if (in_content(e)) {
      h = o->chead;
    } else {
      const struct nthread *nt = nthread_of(o, e->nroot);
      h = nt ? nt->head : NULL;
    }
    *head = h ? h->id : zero_hash;
  }
  return 0;
}

/* ---- permissions ---- */

int view_check_write(const struct view *v, const hash_t *fp, const struct view_node *node)
{
  if (node->readonly || node->kind != VIEW_NODE_OBJECT)
    return -EROFS;
  struct vobj *o;
  int rc = node_obj(v, node, &o);
  if (rc < 0)
    return rc;
  const struct vkey *k = find_key(v, fp);
  if (!k || !cover_dir(v, k, o, false))
    return -BFS_ENOGRANT;
  return 0;
}

int view_check_name(struct view *v, const struct view_node *dir, const char *name)
{
  if (!entry_name_valid(name, strlen(name)))
    return -EINVAL;
  if (dir->readonly || dir->kind != VIEW_NODE_OBJECT)
    return -EROFS;
  struct vobj *o;
  int rc = node_obj(v, dir, &o);
  if (rc < 0)
    return rc;
  if (o->type != VIEW_DIR)
    return -ENOTDIR;
  if (o == v->root && strcmp(name, VIEW_BASEFS_NAME) == 0)
    return -EPERM;
  struct dslot *s = find_slot(o, name);
  return s && s->win ? -EEXIST : 0;
}

int view_check_move(struct view *v, const hash_t *fp, const struct view_node *obj,
                    const struct view_node *dir)
{
  if (obj->readonly || dir->readonly || obj->kind != VIEW_NODE_OBJECT ||
      dir->kind != VIEW_NODE_OBJECT)
    return -EROFS;
  struct vobj *o, *d;
  int rc = node_obj(v, obj, &o);
  if (rc < 0 || (rc = node_obj(v, dir, &d)) < 0)
    return rc;
  if (d->type != VIEW_DIR)
    return -ENOTDIR;
  if (o == v->root)
    return -EINVAL;
  uint32_t steps = 0;
  for (const struct vobj *p = d; p && steps < WALK_LIMIT; p = p->pdir, steps++)
    if (p == o)
      return -EINVAL;
  const struct vkey *k = find_key(v, fp);
  if (!k)
    return -BFS_ENOGRANT;
  struct vobj *src = cover_dir(v, k, o, true), *dst = cover_dir(v, k, d, false);
  if (!src || !dst)
    return -BFS_ENOGRANT;
  return src == dst ? 0 : -EXDEV;
}

int view_check_unlink(const struct view *v, const hash_t *fp, const struct view_node *obj)
{
  if (obj->readonly || obj->kind != VIEW_NODE_OBJECT)
    return -EROFS;
  struct vobj *o;
  int rc = node_obj(v, obj, &o);
  if (rc < 0)
    return rc;
  if (o == v->root)
    return -EINVAL;
  const struct vkey *k = find_key(v, fp);
  if (!k || !cover_dir(v, k, o, true))
    return -BFS_ENOGRANT;
  return 0;
}

int view_parent(struct view *v, const struct view_node *dir, struct view_node *out)
{
  struct vobj *o;
  int rc;
  switch (dir->kind) {
  case VIEW_NODE_OBJECT:
    if ((rc = node_obj(v, dir, &o)) < 0)
      return rc;
    if (o->type != VIEW_DIR)
      return -ENOTDIR;
    if (o == v->root || !o->pdir) {
      /* "/" is its own parent; a directory reached read-only whose
       * binding is gone answers its history directory. */
      if (o == v->root)
        view_root_node(v, out);
      else
        mknode(out, VIEW_NODE_HISTORY_OBJ, true, &o->id);
      return 0;
    }
    mknode(out, VIEW_NODE_OBJECT, dir->readonly, &o->pdir->id);
    return 0;
  case VIEW_NODE_BASEFS:
    view_root_node(v, out);
    return 0;
  case VIEW_NODE_HISTORY:
  case VIEW_NODE_CONFLICTS:
    mknode(out, VIEW_NODE_BASEFS, true, NULL);
    return 0;
  case VIEW_NODE_HISTORY_OBJ:
    mknode(out, VIEW_NODE_HISTORY, true, NULL);
    return 0;
  case VIEW_NODE_CONFLICT_OBJ:
    mknode(out, VIEW_NODE_CONFLICTS, true, NULL);
    return 0;
  default:
    return -ENOTDIR;
  }
}

static int grant_cmp(const void *a, const void *b)
{
  const struct view_grant *x = a, *y = b;
  if (x->depth != y->depth)
    return x->depth < y->depth ? -1 : 1;
  return hash_cmp(&x->id, &y->id);
}

int view_grants(const struct view *v, struct view_grant **out, size_t *count)
{
  struct view_grant *gs = calloc(v->grants.n ? v->grants.n : 1, sizeof *gs);
  if (!gs)
    return -ENOMEM;
  size_t n = 0;
  for (uint32_t i = 0; i < v->grants.n; i++) {
    const struct ventry *e = v->grants.v[i];
    if (e->action != ENTRY_GRANT || !e->counting)
      continue;
    struct view_grant *g = &gs[n++];
    g->id = e->id;
    memcpy(g->pubkey, e->content, KEY_PUBLIC_SIZE);
    key_fingerprint(g->pubkey, &g->key);
    memcpy(g->name, e->name, e->name_len);
    g->name[e->name_len] = 0;
    g->dir = e->obj->id;
    g->author = e->key->fp;
    g->depth = e->obj->depth;
    g->active = e->active;
  }
  sort_(gs, n, sizeof *gs, grant_cmp);
  *out = gs;
  *count = n;
  return 0;
}

static int hash_qcmp(const void *a, const void *b) { return hash_cmp(a, b); }

int view_leaves_by_key(const struct view *v, const hash_t *fp, hash_t **out, size_t *count)
{
  const struct vkey *k = find_key(v, fp);
  size_t n = 0, cap = 16;
  hash_t *ids = malloc(cap * sizeof *ids);
  if (!ids)
    return -ENOMEM;
  for (uint32_t i = 0; k && i < v->all.n; i++) {
    const struct ventry *e = v->all.v[i];
    if (e->key != k || !e->counting || e->action == ENTRY_GRANT || e->action == ENTRY_REVOKE)
      continue;
    bool acked = false;
    for (uint32_t j = 0; j < e->children.n && !acked; j++)
      acked = ((struct ventry *)e->children.v[j])->counting;
    for (uint32_t j = 0; j < e->ackers.n && !acked; j++)
      acked = ((struct ventry *)e->ackers.v[j])->counting;
    if (acked)
      continue;
    if (n == cap) {
      hash_t *ni = realloc(ids, (cap *= 2) * sizeof *ids);
      if (!ni) {
        free(ids);
        return -ENOMEM;
      }
      ids = ni;
    }
    ids[n++] = e->id;
  }
  sort_(ids, n, sizeof *ids, hash_qcmp);
  *out = ids;
  *count = n;
  return 0;
}

/* ---- Merkle ---- */

void view_merkle_root(struct view *v, hash_t *out) { merkle_root(v->merkle, out); }

int view_merkle_node(struct view *v, const uint8_t *prefix, unsigned depth,
                     struct view_merkle_node *out)
{
  struct merkle_info mi;
  int rc = merkle_node(v->merkle, prefix, depth, &mi);
  if (rc < 0)
    return rc;
  memset(out, 0, sizeof *out);
  out->count = mi.count;
  out->leaf = mi.leaf;
  out->hash = mi.hash;
  memcpy(out->child, mi.child, sizeof out->child);
  memcpy(out->ids, mi.ids, sizeof out->ids);
  return 0;
}

/* ---------------------------------------------------------------- dump */

static int obj_cmp(const void *a, const void *b)
{
  return hash_cmp(&(*(struct vobj *const *)a)->id, &(*(struct vobj *const *)b)->id);
}

static void hex(const hash_t *h, char out[HASH_HEX_SIZE]) { hash_to_hex(h, out); }

struct pathbuf {
  char *p;
  size_t len, cap;
};

/* Kept out of dump_tree() so the recursive frame stays small. */
static __attribute__((noinline)) void dump_line(FILE *f, const char *path,
                                                const struct view_stat *st)
{
  char ho[HASH_HEX_SIZE], hv[HASH_HEX_SIZE], hc[HASH_HEX_SIZE];
  hex(&st->object, ho);
  hex(&st->version, hv);
  hex(&st->content, hc);
  fprintf(f, "%s %d %s %o %u %u %" PRIu64 " %" PRIu64 " %" PRIu64 " %u %s %s\n", path, st->type,
          ho, st->mode, st->uid, st->gid, st->size, st->mtime_ns, st->ctime_ns, st->nlink, hv, hc);
}

static int dump_tree(struct view *v, FILE *f, struct vobj *d, struct pathbuf *pb, unsigned depth)
{
  /* One stack frame per level: bound it. A path is at most 4096 bytes, so
   * no client reaches deeper than 2048 levels anyway, and the bound keeps
   * the recursion within a default stack even with sanitizer redzones. */
  if (depth > 2048)
    return -ELOOP;
  struct view_node dn;
  mknode(&dn, VIEW_NODE_OBJECT, false, &d->id);
  char **names;
  size_t n;
  int rc = view_list(v, &dn, &names, &n);
  if (rc < 0)
    return rc;
  for (size_t i = 0; i < n && rc == 0; i++) {
    struct view_node cn;
    if ((rc = view_lookup(v, &dn, names[i], &cn, NULL)) < 0)
      break;
    struct view_stat st;
    if ((rc = view_stat(v, &cn, &st)) < 0)
      break;
    size_t nl = strlen(names[i]), old = pb->len;
    if (pb->len + nl + 2 > pb->cap) {
      size_t cap = (pb->len + nl + 2) * 2;
      char *np = realloc(pb->p, cap);
      if (!np) {
        rc = -ENOMEM;
        break;
      }
      pb->p = np;
      pb->cap = cap;
    }
    pb->p[pb->len++] = '/';
    memcpy(pb->p + pb->len, names[i], nl + 1);
    pb->len += nl;
    dump_line(f, pb->p, &st);
    if (st.type == VIEW_DIR)
      rc = dump_tree(v, f, find_obj(v, &st.object), pb, depth + 1);
    pb->len = old;
    pb->p[old] = 0;
  }
  view_names_free(names, n);
  return rc;
}

int view_dump(struct view *v, char **out, size_t *len)
{
  char *buf = NULL;
  size_t blen = 0;
  FILE *f = open_memstream(&buf, &blen);
  if (!f)
    return -errno;
  char h1[HASH_HEX_SIZE], h2[HASH_HEX_SIZE], h3[HASH_HEX_SIZE];
  hash_t root;
  view_merkle_root(v, &root);
  hex(&v->rootent->id, h1);
  hex(&root, h2);
  fprintf(f, "basefs-view 1\nroot %s\nmerkle %s\ncounting %zu\ntree\n", h1, h2, v->ncounting);
  struct pathbuf pb = {calloc(1, 256), 0, 256};
  int rc = pb.p ? 0 : -ENOMEM;
  if (rc == 0) {
    struct view_stat st;
    struct view_node rn;
    view_root_node(v, &rn);
    view_stat(v, &rn, &st);
    fprintf(f, "/ %o %u %u %" PRIu64 " %" PRIu64 " %u\n", st.mode, st.uid, st.gid, st.mtime_ns,
            st.ctime_ns, st.nlink);
    rc = dump_tree(v, f, v->root, &pb, 0);
  }
  free(pb.p);
  /* Every object, in id order, with its threads. */
  struct vobj **objs = calloc(v->objects.n ? v->objects.n : 1, sizeof *objs);
  size_t no = 0;
  if (!objs && rc == 0)
    rc = -ENOMEM;
  for (size_t i = 0; objs && i < v->objects.cap; i++)
    if (v->objects.v[i] && exists(v->objects.v[i]))
      objs[no++] = v->objects.v[i];
  if (objs)
    sort_(objs, no, sizeof *objs, obj_cmp);
  fprintf(f, "objects\n");
  for (size_t i = 0; rc == 0 && i < no; i++) {
    struct vobj *o = objs[i];
    hex(&o->id, h1);
    hex(&o->chead->id, h2);
    fprintf(f, "obj %s %d head %s losers %u ctime %" PRIu64 " mtime %" PRIu64 " breaker %d\n", h1,
            o->type, h2, o->closers, o->ctime, obj_mtime(o), o->breaker);
    struct nthread **nts = calloc(o->nts.n ? o->nts.n : 1, sizeof *nts);
    if (!nts) {
      rc = -ENOMEM;
      break;
    }
    if (o->nts.n)
      memcpy(nts, o->nts.v, o->nts.n * sizeof *nts);
    /* Sort by root id (insertion sort: few links). */
    for (uint32_t a = 1; a < o->nts.n; a++)
      for (uint32_t b = a; b > 0 && hash_cmp(&nts[b]->root->id, &nts[b - 1]->root->id) < 0; b--) {
        struct nthread *t = nts[b];
        nts[b] = nts[b - 1];
        nts[b - 1] = t;
      }
    for (uint32_t j = 0; j < o->nts.n; j++) {
      struct nthread *nt = nts[j];
      if (!nt->head)
        continue;
      hex(&nt->root->id, h1);
      hex(&nt->head->id, h2);
      if (nt->bdir)
        hex(&nt->bdir->id, h3);
      fprintf(f, "  name %s head %s at %s %s %s\n", h1, h2, nt->bdir ? h3 : "-",
              nt->slot ? nt->slot->name : "-",
              !nt->slot ? "unbound" : nt->slot->win == nt ? "wins" : "loses");
    }
    free(nts);
  }
  free(objs);
  struct view_grant *gs;
  size_t ng;
  if (rc == 0 && (rc = view_grants(v, &gs, &ng)) == 0) {
    fprintf(f, "grants\n");
    for (size_t i = 0; i < ng; i++) {
      hex(&gs[i].id, h1);
      hex(&gs[i].key, h2);
      hex(&gs[i].dir, h3);
      fprintf(f, "grant %s key %s dir %s depth %u %s\n", h1, h2, h3, gs[i].depth,
              gs[i].active ? "active" : "revoked");
    }
    free(gs);
  }
  if (fclose(f) != 0 && rc == 0)
    rc = -EIO;
  if (rc < 0) {
    free(buf);
    return rc;
  }
  *out = buf;
  *len = blen;
  return 0;
}

/* ---------------------------------------------------------------- checkpoint */

/*
 * File format (version 1, little-endian):
 *   8   magic "BFSVIEW\n"
 *   u32 version, u32 number of keys, u64 opaque, u64 number of entries
 *   keys: 65 bytes each
 *   entries, the root first, then in resolution order (so a load resolves
 *   each at once), then those still waiting:
 *     u8 action, u8 content kind, u8 present (1 parent, 2 dir, 4 target),
 *     u8 name length, u16 content length, u32 key index, u64 mtime,
 *     u64 size, u32 mode, u32 uid, u32 gid, 32 id, [32 parent], [32 dir],
 *     [32 target], name, content, 64 signature
 *   u64 XXH64 (seed 0) of everything before it
 */
static const char ckpt_magic[8] = {'B', 'F', 'S', 'V', 'I', 'E', 'W', '\n'};

struct wbuf {
  uint8_t *p;
  size_t len, cap;
  int err;
};

static void wput(struct wbuf *b, const void *data, size_t n)
{
  if (b->err)
    return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->len + n)
      cap *= 2;
    uint8_t *np = realloc(b->p, cap);
    if (!np) {
      b->err = -ENOMEM;
      return;
    }
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
}

static void wu16(struct wbuf *b, uint16_t x)
{
  uint8_t t[2] = {(uint8_t)x, (uint8_t)(x >> 8)};
  wput(b, t, 2);
}

static void wu32(struct wbuf *b, uint32_t x)
{
  uint8_t t[4];
  for (int i = 0; i < 4; i++)
    t[i] = (uint8_t)(x >> (8 * i));
  wput(b, t, 4);
}

static void wu64(struct wbuf *b, uint64_t x)
{
  uint8_t t[8];
  for (int i = 0; i < 8; i++)
    t[i] = (uint8_t)(x >> (8 * i));
  wput(b, t, 8);
}

static uint64_t ru(const uint8_t *p, int n)
{
  uint64_t x = 0;
  for (int i = 0; i < n; i++)
    x |= (uint64_t)p[i] << (8 * i);
  return x;
}

static void put_entry(struct wbuf *b, const struct ventry *e)
{
  uint8_t hdr[4] = {e->action, e->content_kind,
                    (uint8_t)((hash_is_zero(&e->parent) ? 0 : 1) | (hash_is_zero(&e->dir) ? 0 : 2) |
                              (hash_is_zero(&e->target) ? 0 : 4)),
                    e->name_len};
  wput(b, hdr, 4);
  wu16(b, e->content_len);
  wu32(b, e->key->idx);
  wu64(b, e->mtime_ns);
  wu64(b, e->size);
  wu32(b, e->mode);
  wu32(b, e->uid);
  wu32(b, e->gid);
  wput(b, &e->id, 32);
  if (hdr[2] & 1)
    wput(b, &e->parent, 32);
  if (hdr[2] & 2)
    wput(b, &e->dir, 32);
  if (hdr[2] & 4)
    wput(b, &e->target, 32);
  wput(b, e->name, e->name_len);
  wput(b, e->content, e->content_len);
  wput(b, e->sig, KEY_SIGNATURE_SIZE);
}

static int rseq_cmp(const void *a, const void *b)
{
  const struct ventry *x = *(struct ventry *const *)a, *y = *(struct ventry *const *)b;
  if (x->state != y->state)
    return x->state == ST_RESOLVED ? -1 : 1;
  if (x->rseq != y->rseq)
    return x->rseq < y->rseq ? -1 : 1;
  return hash_cmp(&x->id, &y->id);
}

int view_checkpoint_save(struct view *v, const char *path, uint64_t opaque)
{
  struct ventry **order = malloc((v->all.n ? v->all.n : 1) * sizeof *order);
  if (!order)
    return -ENOMEM;
  memcpy(order, v->all.v, v->all.n * sizeof *order);
  sort_(order, v->all.n, sizeof *order, rseq_cmp);
  struct wbuf b = {0};
  wput(&b, ckpt_magic, 8);
  wu32(&b, VIEW_CHECKPOINT_VERSION);
  wu32(&b, v->keylist.n);
  wu64(&b, opaque);
  wu64(&b, v->all.n);
  for (uint32_t i = 0; i < v->keylist.n; i++)
    wput(&b, ((struct vkey *)v->keylist.v[i])->pub, KEY_PUBLIC_SIZE);
  for (uint32_t i = 0; i < v->all.n; i++)
    put_entry(&b, order[i]);
  free(order);
  if (!b.err)
    wu64(&b, XXH64(b.p, b.len, 0));
  if (b.err) {
    free(b.p);
    return b.err;
  }
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 8);
  if (!tmp) {
    free(b.p);
    return -ENOMEM;
  }
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp", 5);
  int rc = 0;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    rc = -errno;
  } else {
    for (size_t off = 0; off < b.len && rc == 0;) {
      ssize_t w = write(fd, b.p + off, b.len - off);
      if (w < 0 && errno != EINTR)
        rc = -errno;
      else if (w > 0)
        off += (size_t)w;
    }
    if (rc == 0 && fsync(fd) < 0)
      rc = -errno;
    if (close(fd) < 0 && rc == 0)
      rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
      rc = -errno;
    if (rc < 0)
      unlink(tmp);
  }
  free(tmp);
  free(b.p);
  return rc;
}

static int read_file(const char *path, uint8_t **out, size_t *len)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  struct stat st;
  if (fstat(fd, &st) < 0) {
    int rc = -errno;
    close(fd);
    return rc;
  }
  size_t n = (size_t)st.st_size;
  uint8_t *p = malloc(n ? n : 1);
  if (!p) {
    close(fd);
    return -ENOMEM;
  }
  size_t off = 0;
  while (off < n) {
    ssize_t r = read(fd, p + off, n - off);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    off += (size_t)r;
  }
  close(fd);
  *out = p;
  *len = off;
  return 0;
}

/* Parses one record at *OFF into IN (pubkey from KEYS). */
static int get_entry(const uint8_t *p, size_t end, size_t *off, const uint8_t (*keys)[KEY_PUBLIC_SIZE],
                     uint32_t nkeys, struct entry *in, uint32_t *kidx)
{
  size_t o = *off;
  if (end - o < 4 + 2 + 4 + 8 + 8 + 12 + 32)
    return -BFS_EFORMAT;
  uint8_t action = p[o], ckind = p[o + 1], present = p[o + 2], nlen = p[o + 3];
  uint16_t clen = (uint16_t)ru(p + o + 4, 2);
  *kidx = (uint32_t)ru(p + o + 6, 4);
  if (*kidx >= nkeys || clen > ENTRY_CONTENT_MAX || present > 7)
    return -BFS_EFORMAT;
  memset(in, 0, offsetof(struct entry, content));
  in->action = action;
  in->content_kind = ckind;
  in->name_len = nlen;
  in->content_len = clen;
  in->mtime_ns = ru(p + o + 10, 8);
  in->size = ru(p + o + 18, 8);
  in->mode = (uint32_t)ru(p + o + 26, 4);
  in->uid = (uint32_t)ru(p + o + 30, 4);
  in->gid = (uint32_t)ru(p + o + 34, 4);
  o += 38;
  memcpy(&in->id, p + o, 32);
  o += 32;
  size_t need = (size_t)__builtin_popcount(present) * 32 + nlen + clen + KEY_SIGNATURE_SIZE;
  if (end - o < need)
    return -BFS_EFORMAT;
  if (present & 1) {
    memcpy(&in->parent, p + o, 32);
    o += 32;
  }
  if (present & 2) {
    memcpy(&in->dir, p + o, 32);
    o += 32;
  }
  if (present & 4) {
    memcpy(&in->target, p + o, 32);
    o += 32;
  }
  memcpy(in->name, p + o, nlen);
  in->name[nlen] = 0;
  o += nlen;
  memcpy(in->content, p + o, clen);
  o += clen;
  memcpy(in->signature, p + o, KEY_SIGNATURE_SIZE);
  o += KEY_SIGNATURE_SIZE;
  memcpy(in->pubkey, keys[*kidx], KEY_PUBLIC_SIZE);
  *off = o;
  return 0;
}

int view_checkpoint_load(const char *path, struct view **out, uint64_t *opaque)
{
  uint8_t *p = NULL;
  size_t len = 0;
  int rc = read_file(path, &p, &len);
  if (rc < 0)
    return rc;
  rc = view_checkpoint_parse(p, len, out, opaque);
  free(p);
  return rc;
}

int view_checkpoint_parse(const uint8_t *p, size_t len, struct view **out, uint64_t *opaque)
{
  int rc = 0;
  struct view *v = NULL;
  struct entry *in = malloc(sizeof *in);
  const size_t hdr = 8 + 4 + 4 + 8 + 8;
  if (!in) {
    rc = -ENOMEM;
    goto out;
  }
  if (len < hdr + 8 || memcmp(p, ckpt_magic, 8) != 0) {
    rc = -BFS_EFORMAT;
    goto out;
  }
  if (ru(p + len - 8, 8) != XXH64(p, len - 8, 0)) {
    rc = -BFS_ECHECKSUM;
    goto out;
  }
  if (ru(p + 8, 4) != VIEW_CHECKPOINT_VERSION) {
    rc = -BFS_EFORMAT;
    goto out;
  }
  uint32_t nkeys = (uint32_t)ru(p + 12, 4);
  uint64_t nent = ru(p + 24, 8);
  size_t end = len - 8, off = hdr;
  if (nkeys == 0 || nent == 0 || (end - off) / KEY_PUBLIC_SIZE < nkeys) {
    rc = -BFS_EFORMAT;
    goto out;
  }
  const uint8_t (*keys)[KEY_PUBLIC_SIZE] = (const void *)(p + off);
  off += (size_t)nkeys * KEY_PUBLIC_SIZE;
  uint32_t kidx;
  if ((rc = get_entry(p, end, &off, keys, nkeys, in, &kidx)) < 0)
    goto out;
  if ((rc = view_create(in, &v)) < 0)
    goto out;
  /* Intern every key once, in file order, so indexes match. */
  struct vkey **kmap = calloc(nkeys, sizeof *kmap);
  if (!kmap) {
    rc = -ENOMEM;
    goto out;
  }
  for (uint32_t i = 0; i < nkeys; i++)
    if (!(kmap[i] = intern_key(v, keys[i])))
      rc = -ENOMEM;
  v->bulk = true;
  for (uint64_t i = 1; rc == 0 && i < nent; i++) {
    if ((rc = get_entry(p, end, &off, keys, nkeys, in, &kidx)) < 0)
      break;
    if (find_entry(v, &in->id) || !shape_ok(in)) {
      rc = -BFS_EFORMAT;
      break;
    }
    struct ventry *e = ventry_new(v, in);
    if (!e || (rc = store(v, e)) < 0) {
      if (e)
        entry_free_mem(e);
      rc = -ENOMEM;
      break;
    }
    vec_push(&v->work, e);
    run_work(v);
  }
  free(kmap);
  if (rc == 0 && off != end)
    rc = -BFS_EFORMAT;
  if (rc == 0) {
    v->bulk = false;
    recompute_all(v);
    *out = v;
    v = NULL;
    *opaque = ru(p + 16, 8);
  }
out:
  view_free(v);
  free(in);
  return rc;
}
