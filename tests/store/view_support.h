/*
 * Builders of entries for the view tests. Entries are really signed
 * (entry_sign) unless tv_fast is set: then they are sealed without a
 * signature (encode + decode gives the id), which is all the view looks at
 * (it never verifies) and 100x cheaper, for the tests that need many.
 */
#ifndef BASEFS_TESTS_VIEW_SUPPORT_H
#define BASEFS_TESTS_VIEW_SUPPORT_H

#include "tests/test.h"

#include <errno.h>

#include "store/entry.h"
#include "store/error.h"
#include "store/key.h"
#include "store/view.h"

static bool tv_fast;
static uint64_t tv_clock = 1000000000;

struct tw {
  struct key *key;
  uint8_t pub[KEY_PUBLIC_SIZE];
  hash_t fp;
};

static inline void tw_init(struct tw *w)
{
  CHECK_OK(key_generate(&w->key));
  key_public(w->key, w->pub);
  key_fingerprint(w->pub, &w->fp);
}

static inline void tv_seal(struct entry *e, const struct tw *w)
{
  if (!e->mtime_ns)
    e->mtime_ns = tv_clock += 1000;
  if (!tv_fast) {
    int rc = entry_sign(e, w->key);
    CHECK_MSG(rc == 0, "entry_sign: %s", bfs_strerror(rc));
    return;
  }
  memcpy(e->pubkey, w->pub, KEY_PUBLIC_SIZE);
  uint8_t buf[ENTRY_MAX_SIZE];
  int n = entry_encode(e, buf, sizeof buf);
  CHECK_MSG(n > 0, "entry_encode: %s", bfs_strerror(n));
  CHECK_OK(entry_decode(buf, (size_t)n, e));
}

static inline void tv_name(struct entry *e, const char *name)
{
  e->name_len = (uint8_t)strlen(name);
  memcpy(e->name, name, e->name_len);
  e->name[e->name_len] = 0;
}

static inline struct entry *tv_new(uint8_t action)
{
  struct entry *e = calloc(1, sizeof *e);
  CHECK(e != NULL);
  e->action = action;
  return e;
}

static inline void tv_content(struct entry *e, const char *data)
{
  size_t n = strlen(data);
  e->content_kind = n ? ENTRY_CONTENT_INLINE : ENTRY_CONTENT_NONE;
  e->content_len = (uint16_t)n;
  e->size = n;
  memcpy(e->content, data, n);
}

static inline struct entry *e_root(const struct tw *w)
{
  struct entry *e = tv_new(ENTRY_MKDIR);
  e->mode = 0755;
  tv_seal(e, w);
  return e;
}

static inline struct entry *e_mkdir(const struct tw *w, const hash_t *dir, const char *name)
{
  struct entry *e = tv_new(ENTRY_MKDIR);
  e->dir = *dir;
  e->mode = 0755;
  tv_name(e, name);
  tv_seal(e, w);
  return e;
}

static inline struct entry *e_create(const struct tw *w, const hash_t *dir, const char *name,
                              const char *data)
{
  struct entry *e = tv_new(ENTRY_WRITE);
  e->dir = *dir;
  e->mode = 0644;
  tv_name(e, name);
  tv_content(e, data);
  tv_seal(e, w);
  return e;
}

static inline struct entry *e_write(const struct tw *w, const hash_t *parent, const char *data)
{
  struct entry *e = tv_new(ENTRY_WRITE);
  e->parent = *parent;
  e->mode = 0644;
  tv_content(e, data);
  tv_seal(e, w);
  return e;
}

static inline struct entry *e_slink(const struct tw *w, const hash_t *dir, const char *name,
                             const char *target)
{
  struct entry *e = tv_new(ENTRY_SLINK);
  e->dir = *dir;
  e->mode = 0777;
  tv_name(e, name);
  tv_content(e, target);
  tv_seal(e, w);
  return e;
}

static inline struct entry *e_mode(const struct tw *w, const hash_t *parent, uint32_t mode)
{
  struct entry *e = tv_new(ENTRY_MODE);
  e->parent = *parent;
  e->mode = mode;
  tv_seal(e, w);
  return e;
}

static inline struct entry *e_rename(const struct tw *w, const hash_t *parent, const hash_t *dir,
                              const char *name)
{
  struct entry *e = tv_new(ENTRY_RENAME);
  e->parent = *parent;
  e->dir = *dir;
  tv_name(e, name);
  tv_seal(e, w);
  return e;
}

static inline struct entry *e_delete(const struct tw *w, const hash_t *parent)
{
  struct entry *e = tv_new(ENTRY_DELETE);
  e->parent = *parent;
  tv_seal(e, w);
  return e;
}

static inline struct entry *e_revert(const struct tw *w, const hash_t *parent, const hash_t *target)
{
  struct entry *e = tv_new(ENTRY_REVERT);
  e->parent = *parent;
  e->target = *target;
  tv_seal(e, w);
  return e;
}

static inline struct entry *e_link(const struct tw *w, const hash_t *dir, const hash_t *obj,
                            const char *name)
{
  struct entry *e = tv_new(ENTRY_LINK);
  e->dir = *dir;
  e->target = *obj;
  tv_name(e, name);
  tv_seal(e, w);
  return e;
}

static inline struct entry *e_grant(const struct tw *w, const hash_t *dir, const struct tw *grantee,
                             const char *label)
{
  struct entry *e = tv_new(ENTRY_GRANT);
  e->dir = *dir;
  tv_name(e, label);
  e->content_kind = ENTRY_CONTENT_INLINE;
  e->content_len = KEY_PUBLIC_SIZE;
  memcpy(e->content, grantee->pub, KEY_PUBLIC_SIZE);
  tv_seal(e, w);
  return e;
}

static inline struct entry *e_revoke(const struct tw *w, const hash_t *dir, const hash_t *grant)
{
  struct entry *e = tv_new(ENTRY_REVOKE);
  e->dir = *dir;
  e->target = *grant;
  tv_seal(e, w);
  return e;
}

static inline struct entry *e_ack(const struct tw *w, const hash_t *target)
{
  struct entry *e = tv_new(ENTRY_ACK);
  e->target = *target;
  tv_seal(e, w);
  return e;
}

/* Applies E and frees it; returns view_apply's result. */
static inline int tv_apply(struct view *v, struct entry *e)
{
  int rc = view_apply(v, e);
  return rc;
}

static inline struct view_node tv_path(struct view *v, const char *path)
{
  struct view_node n;
  int rc = view_resolve(v, path, &n, NULL);
  CHECK_MSG(rc == 0, "resolve %s: %s", path, bfs_strerror(rc));
  return n;
}

static inline bool tv_exists(struct view *v, const char *path)
{
  struct view_node n;
  return view_resolve(v, path, &n, NULL) == 0;
}

/* The content of PATH's head version (INLINE only, which the tests use). */
static inline const char *tv_cat(struct view *v, const char *path, char *buf, size_t cap)
{
  struct view_node n = tv_path(v, path);
  struct view_stat st;
  CHECK_OK(view_stat(v, &n, &st));
  struct entry *e = calloc(1, sizeof *e);
  CHECK(e != NULL);
  CHECK_OK(view_entry(v, &st.content, e));
  size_t len = e->content_len < cap - 1 ? e->content_len : cap - 1;
  memcpy(buf, e->content, len);
  buf[len] = 0;
  free(e);
  return buf;
}

static inline char *tv_dump(struct view *v)
{
  char *d;
  size_t len;
  CHECK_OK(view_dump(v, &d, &len));
  return d;
}

#endif
