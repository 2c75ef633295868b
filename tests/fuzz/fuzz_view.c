/*
 * Fuzzes the view with sequences of entries built from the input. Each
 * record of the input is either raw bytes for entry_decode (a chunk: u8
 * length, bytes), or one entry built field by field whose references
 * (parent, dir, target) point at earlier entries, the root or garbage, so
 * the fuzzer reaches deep trees, forks, renames, grants and revokes.
 * Signatures are not made: the view never verifies.
 *
 * Oracles: nothing crashes (ASan/UBSan), every query works on the result,
 * and the same entries applied in reverse order give a byte-identical dump.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/entry.h"
#include "store/view.h"

#define MAXE 64

struct in {
  const uint8_t *p;
  size_t n;
};

static uint8_t next(struct in *in)
{
  if (!in->n)
    return 0;
  in->n--;
  return *in->p++;
}

static void pub_for(uint8_t who, uint8_t pub[KEY_PUBLIC_SIZE])
{
  memset(pub, 0x11 * (who % 3 + 1), KEY_PUBLIC_SIZE);
  pub[0] = 0x04;
}

/* Gives E an id: through the codec when it accepts E, else a hash of the
 * fields (the view must survive entries the codec would refuse too). */
static void seal(struct entry *e, uint8_t who)
{
  pub_for(who, e->pubkey);
  uint8_t buf[ENTRY_MAX_SIZE];
  int n = entry_encode(e, buf, sizeof buf);
  if (n > 0 && entry_decode(buf, (size_t)n, e) == 0)
    return;
  hash_buf(e, sizeof *e - sizeof e->id, &e->id);
}

static const hash_t *pick_ref(struct in *in, struct entry **made, int nmade, const struct entry *root,
                              hash_t *junk)
{
  uint8_t r = next(in);
  if (r == 0)
    return NULL;
  if (r == 1 || nmade == 0)
    return &root->id;
  if (r == 2) {
    memset(junk, next(in), sizeof *junk);
    return junk;
  }
  return &made[r % nmade]->id;
}

static void query_all(struct view *v)
{
  hash_t root;
  view_merkle_root(v, &root);
  char *d;
  size_t len;
  if (view_dump(v, &d, &len) == 0)
    free(d);
  struct view_node n;
  char **names;
  size_t nn;
  const char *paths[] = {"/", "/.basefs", "/.basefs/conflicts", "/a", "/a/b"};
  for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
    if (view_resolve(v, paths[i], &n, NULL) == 0 && view_list(v, &n, &names, &nn) == 0)
      view_names_free(names, nn);
  }
}

static void run(struct entry *root, struct entry **es, int n, const int *order, char **dump)
{
  struct view *v;
  if (view_create(root, &v) < 0)
    abort();
  for (int i = 0; i < n; i++)
    view_apply(v, es[order[i]]);
  query_all(v);
  size_t len;
  if (view_dump(v, dump, &len) < 0)
    abort();
  view_free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct in in = {data, size};
  struct entry *root = calloc(1, sizeof *root);
  struct entry *made[MAXE];
  int nmade = 0;
  if (!root)
    return 0;
  root->action = ENTRY_MKDIR;
  root->mode = 0755;
  seal(root, 0);
  static const char *names[] = {"a", "b", "c", ".basefs"};
  while (in.n && nmade < MAXE) {
    struct entry *e = calloc(1, sizeof *e);
    if (!e)
      break;
    uint8_t op = next(&in);
    if (op >= 0xf0) {
      /* Raw bytes through the decoder. */
      size_t len = next(&in) * 5u;
      if (len > in.n)
        len = in.n;
      int rc = entry_decode(in.p, len, e);
      in.p += len;
      in.n -= len;
      if (rc < 0) {
        free(e);
        continue;
      }
      made[nmade++] = e;
      continue;
    }
    e->action = (uint8_t)(op % 12);
    uint8_t who = next(&in);
    hash_t junk;
    const hash_t *r;
    if ((r = pick_ref(&in, made, nmade, root, &junk)))
      e->parent = *r;
    if ((r = pick_ref(&in, made, nmade, root, &junk)))
      e->dir = *r;
    if ((r = pick_ref(&in, made, nmade, root, &junk)))
      e->target = *r;
    uint8_t nm = next(&in);
    if (nm & 4) {
      const char *s = names[nm & 3];
      e->name_len = (uint8_t)strlen(s);
      memcpy(e->name, s, e->name_len);
    }
    e->mode = next(&in) & 0777;
    e->mtime_ns = next(&in);
    uint8_t ck = next(&in);
    if (e->action == ENTRY_GRANT) {
      e->content_kind = ENTRY_CONTENT_INLINE;
      e->content_len = KEY_PUBLIC_SIZE;
      pub_for(ck, e->content);
    } else if (ck & 1) {
      e->content_kind = ENTRY_CONTENT_INLINE;
      e->content_len = ck >> 4;
      e->size = e->content_len;
      memset(e->content, 'x', e->content_len);
    }
    seal(e, who);
    made[nmade++] = e;
  }
  int order[MAXE];
  for (int i = 0; i < nmade; i++)
    order[i] = i;
  char *d1, *d2;
  run(root, made, nmade, order, &d1);
  for (int i = 0; i < nmade; i++)
    order[i] = nmade - 1 - i;
  run(root, made, nmade, order, &d2);
  if (strcmp(d1, d2) != 0) {
    fprintf(stderr, "order changes the view:\n%s\n----\n%s\n", d1, d2);
    abort();
  }
  free(d1);
  free(d2);
  for (int i = 0; i < nmade; i++)
    free(made[i]);
  free(root);
  return 0;
}
