/* The duplicate-request cache; see drc.h. */
#include "server/drc.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct entry {
  struct drc_key key;
  uint64_t hash;
  struct entry *chain;           /* bucket list */
  struct entry *newer, *older;   /* LRU list */
  uint8_t *reply;                /* NULL while in progress */
  size_t len;
};

struct drc {
  struct entry **buckets;
  size_t nbuckets; /* power of two */
  struct entry *newest, *oldest;
  size_t max_entries, max_bytes;
  struct drc_stats st;
};

int drc_new(size_t max_entries, size_t max_bytes, struct drc **out)
{
  struct drc *c = calloc(1, sizeof *c);
  if (!c)
    return -ENOMEM;
  c->max_entries = max_entries ? max_entries : DRC_ENTRIES_DEFAULT;
  c->max_bytes = max_bytes ? max_bytes : DRC_BYTES_DEFAULT;
  c->nbuckets = 64;
  while (c->nbuckets < c->max_entries && c->nbuckets < (1u << 20))
    c->nbuckets *= 2;
  c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
  if (!c->buckets) {
    free(c);
    return -ENOMEM;
  }
  *out = c;
  return 0;
}

void drc_free(struct drc *c)
{
  if (!c)
    return;
  for (struct entry *e = c->newest, *next; e; e = next) {
    next = e->older;
    free(e->reply);
    free(e);
  }
  free(c->buckets);
  free(c);
}

void drc_key_make(struct drc_key *k, const struct sockaddr *addr, const struct oncrpc_call *c,
                  const uint8_t *args, size_t args_len)
{
  memset(k, 0, sizeof *k); /* the struct is hashed and compared whole */
  if (addr && addr->sa_family == AF_INET) {
    memcpy(k->addr, &((const struct sockaddr_in *)addr)->sin_addr, 4);
    k->family = AF_INET;
  } else if (addr && addr->sa_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)addr)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a)) {
      memcpy(k->addr, a->s6_addr + 12, 4);
      k->family = AF_INET;
    } else {
      memcpy(k->addr, a->s6_addr, 16);
      k->family = AF_INET6;
    }
  }
  k->xid = c->xid;
  k->prog = c->prog;
  k->vers = c->vers;
  k->proc = c->proc;
  k->sum = XXH3_64bits(args_len ? (const void *)args : (const void *)"", args_len);
}

static struct entry **slot(struct drc *c, const struct drc_key *k, uint64_t h)
{
  struct entry **p = &c->buckets[h & (c->nbuckets - 1)];
  while (*p && ((*p)->hash != h || memcmp(&(*p)->key, k, sizeof *k) != 0))
    p = &(*p)->chain;
  return p;
}

static void lru_unlink(struct drc *c, struct entry *e)
{
  if (e->newer)
    e->newer->older = e->older;
  else
    c->newest = e->older;
  if (e->older)
    e->older->newer = e->newer;
  else
    c->oldest = e->newer;
  e->newer = e->older = NULL;
}

static void lru_push(struct drc *c, struct entry *e)
{
  e->older = c->newest;
  e->newer = NULL;
  if (c->newest)
    c->newest->newer = e;
  c->newest = e;
  if (!c->oldest)
    c->oldest = e;
}

static void remove_entry(struct drc *c, struct entry *e)
{
  struct entry **p = slot(c, &e->key, e->hash);
  if (*p == e)
    *p = e->chain;
  lru_unlink(c, e);
  c->st.entries--;
  c->st.bytes -= e->len;
  free(e->reply);
  free(e);
}

static void shrink(struct drc *c)
{
  while (c->oldest && (c->st.entries > c->max_entries || c->st.bytes > c->max_bytes)) {
    remove_entry(c, c->oldest);
    c->st.evictions++;
  }
}

enum drc_verdict drc_begin(struct drc *c, const struct drc_key *k, const uint8_t **reply,
                           size_t *len)
{
  uint64_t h = XXH3_64bits(k, sizeof *k);
  struct entry **p = slot(c, k, h);
  if (*p) {
    struct entry *e = *p;
    lru_unlink(c, e);
    lru_push(c, e);
    if (!e->reply) {
      c->st.dropped++;
      return DRC_IN_PROGRESS;
    }
    c->st.hits++;
    *reply = e->reply;
    *len = e->len;
    return DRC_REPLAY;
  }
  c->st.misses++;
  struct entry *e = calloc(1, sizeof *e);
  if (!e)
    return DRC_NEW; /* runs uncached */
  e->key = *k;
  e->hash = h;
  *p = e;
  lru_push(c, e);
  c->st.entries++;
  shrink(c);
  return DRC_NEW;
}

void drc_done(struct drc *c, const struct drc_key *k, const uint8_t *reply, size_t len)
{
  uint64_t h = XXH3_64bits(k, sizeof *k);
  struct entry *e = *slot(c, k, h);
  if (!e || e->reply)
    return;
  if (!reply || len == 0 || len > DRC_REPLY_MAX) {
    remove_entry(c, e);
    return;
  }
  e->reply = malloc(len);
  if (!e->reply) {
    remove_entry(c, e);
    return;
  }
  memcpy(e->reply, reply, len);
  e->len = len;
  c->st.bytes += len;
  shrink(c);
}

void drc_get_stats(const struct drc *c, struct drc_stats *out) { *out = c->st; }
