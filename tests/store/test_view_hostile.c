/*
 * Hostile input: every bad entry is rejected or held with a reason, and
 * none changes the view (the dump before and after is the same) or
 * crashes. Bytes that are no entry never reach the view: the edge
 * (entry_decode, entry_verify) refuses them first.
 */
#include "tests/store/view_support.h"

static struct tw R, X;
static struct entry *ROOT, *DIR_A, *FILE_F, *REN;
static struct view *V;

static void setup(void)
{
  tw_init(&R);
  tw_init(&X);
  ROOT = e_root(&R);
  CHECK_OK(view_create(ROOT, &V));
  DIR_A = e_mkdir(&R, &ROOT->id, "a");
  FILE_F = e_create(&R, &DIR_A->id, "f", "data");
  REN = e_rename(&R, &FILE_F->id, &DIR_A->id, "g");
  CHECK_INT(tv_apply(V, DIR_A), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(V, FILE_F), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(V, REN), ==, VIEW_APPLIED);
}

static void teardown(void)
{
  view_free(V);
  key_free(R.key);
  key_free(X.key);
  free(ROOT), free(DIR_A), free(FILE_F), free(REN);
}

/* Applies E, expects WANT, and that the view did not change. */
static void unchanged(struct entry *e, int want, const char *what)
{
  char *before = tv_dump(V);
  int rc = view_apply(V, e);
  CHECK_MSG(rc == want, "%s: got %d, want %d", what, rc, want);
  char *after = tv_dump(V);
  CHECK_MSG(strcmp(before, after) == 0, "%s changed the view", what);
  free(before), free(after), free(e);
}

TEST(wrong_kinds_are_rejected)
{
  setup();
  /* A content write whose parent is a name version (the RENAME). */
  unchanged(e_write(&R, &REN->id, "x"), -BFS_EKIND, "write on a name version");
  /* A rename whose parent is a content version of another thread. */
  struct entry *u = e_write(&R, &FILE_F->id, "v2");
  CHECK_INT(tv_apply(V, u), ==, VIEW_APPLIED);
  unchanged(e_rename(&R, &u->id, &DIR_A->id, "h"), -BFS_EKIND, "rename of a content version");
  unchanged(e_mkdir(&R, &FILE_F->id, "sub"), -BFS_EKIND, "mkdir inside a file");
  unchanged(e_create(&R, &FILE_F->id, "sub", "x"), -BFS_EKIND, "create inside a file");
  unchanged(e_link(&R, &ROOT->id, &DIR_A->id, "alias"), -BFS_EKIND, "hard link to a directory");
  unchanged(e_link(&R, &ROOT->id, &u->id, "alias"), -BFS_EKIND, "link to a version, not an object");
  unchanged(e_revert(&R, &u->id, &REN->id), -BFS_EKIND, "revert across threads");
  unchanged(e_revert(&R, &u->id, &DIR_A->id), -BFS_EKIND, "revert to another object");
  unchanged(e_revoke(&R, &DIR_A->id, &FILE_F->id), -BFS_EKIND, "revoke of a non-grant");
  unchanged(e_rename(&R, &DIR_A->id, &DIR_A->id, "self"), -BFS_EKIND, "directory into itself");
  unchanged(e_rename(&R, &ROOT->id, &DIR_A->id, "root"), -BFS_EKIND, "rename of the root");
  unchanged(e_delete(&R, &ROOT->id), -BFS_EKIND, "delete of the root");
  struct entry *g = e_grant(&R, &DIR_A->id, &X, "x");
  CHECK_INT(tv_apply(V, g), ==, VIEW_APPLIED);
  unchanged(e_revoke(&R, &ROOT->id, &g->id), -BFS_EKIND, "revoke where it was not granted");
  struct entry *root2 = e_root(&X);
  unchanged(root2, -BFS_EKIND, "a second root");
  free(u), free(g);
  teardown();
}

TEST(unknown_references_wait_and_wrong_ones_are_dropped_later)
{
  setup();
  hash_t nowhere;
  memset(&nowhere, 0x5a, sizeof nowhere);
  struct entry *e = e_write(&R, &nowhere, "x");
  hash_t id = e->id;
  unchanged(e, VIEW_PENDING_REF, "unknown parent");
  CHECK_INT(view_entry_status(V, &id), ==, VIEW_PENDING_REF);
  unchanged(e_mkdir(&R, &nowhere, "x"), VIEW_PENDING_REF, "unknown directory");
  unchanged(e_ack(&R, &nowhere), VIEW_PENDING_REF, "ack of nothing");
  unchanged(e_link(&R, &ROOT->id, &nowhere, "l"), VIEW_PENDING_REF, "link to nothing");
  CHECK_INT(view_pending(V), ==, 4);
  /* An entry waiting on a parent that turns out to be a directory's
   * creation (a WRITE update of a directory) is dropped when it arrives. */
  struct entry *d = e_mkdir(&R, &ROOT->id, "later");
  struct entry *w = e_write(&R, &d->id, "x");
  CHECK_INT(tv_apply(V, w), ==, VIEW_PENDING_REF);
  CHECK_INT(tv_apply(V, d), ==, VIEW_APPLIED);
  CHECK_INT(view_entry_status(V, &w->id), ==, -ENOENT);
  CHECK_INT(view_pending(V), ==, 4);
  free(d), free(w);
  teardown();
}

TEST(unknown_keys_and_replays_change_nothing)
{
  setup();
  unchanged(e_create(&X, &DIR_A->id, "intruder", "x"), VIEW_PENDING_GRANT, "unknown key");
  unchanged(e_write(&X, &FILE_F->id, "overwrite"), VIEW_PENDING_GRANT, "unknown key's write");
  unchanged(e_grant(&X, &ROOT->id, &X, "me"), VIEW_PENDING_GRANT, "self-grant");
  struct entry *again = calloc(1, sizeof *again);
  *again = *FILE_F;
  unchanged(again, VIEW_DUPLICATE, "replay");
  /* A replay with a changed field is another entry (another id): here a
   * second create of the same name, which must not replace the first. */
  struct entry *twin = e_create(&R, &DIR_A->id, "g", "other");
  hash_t twin_id = twin->id;
  CHECK_INT(tv_apply(V, twin), ==, VIEW_APPLIED);
  struct view_node n = tv_path(V, "/a/g");
  CHECK(hash_eq(&n.id, &FILE_F->id) || hash_eq(&n.id, &twin_id));
  char path[300], hex[HASH_HEX_SIZE];
  hash_to_hex(hash_eq(&n.id, &twin_id) ? &FILE_F->id : &twin_id, hex);
  snprintf(path, sizeof path, "/.basefs/conflicts/%s/tree", hex);
  CHECK(tv_exists(V, path));
  free(twin);
  teardown();
}

TEST(bytes_that_are_no_entry_never_reach_the_view)
{
  setup();
  struct entry *good = e_create(&R, &DIR_A->id, "ok", "fine");
  uint8_t buf[ENTRY_MAX_SIZE + 64];
  int n = entry_encode(good, buf, sizeof buf);
  CHECK_INT(n, >, 0);
  struct entry *e = calloc(1, sizeof *e);
  /* Truncated. */
  for (int cut = 0; cut < n; cut += 7)
    CHECK_INT(entry_decode(buf, (size_t)cut, e), <, 0);
  /* Oversized. */
  CHECK_INT(entry_decode(buf, ENTRY_MAX_SIZE + 1, e), <, 0);
  /* Trailing garbage. */
  buf[n] = 0;
  CHECK_INT(entry_decode(buf, (size_t)n + 1, e), <, 0);
  /* Forged: a flipped signature bit decodes but does not verify. */
  buf[n - 1] ^= 1;
  CHECK_OK(entry_decode(buf, (size_t)n, e));
  CHECK_INT(entry_verify(e), <, 0);
  /* Garbage. */
  for (int i = 0; i < 200; i++) {
    uint8_t junk[300];
    size_t len = test_rand() % sizeof junk;
    for (size_t j = 0; j < len; j++)
      junk[j] = (uint8_t)test_rand();
    if (entry_decode(junk, len, e) == 0)
      CHECK_INT(entry_verify(e), <, 0);
  }
  buf[n - 1] ^= 1;
  CHECK_OK(entry_decode(buf, (size_t)n, e));
  CHECK_OK(entry_verify(e));
  CHECK_INT(view_apply(V, e), ==, VIEW_APPLIED);
  free(e), free(good);
  teardown();
}

TEST(colliding_names_and_cycles_stay_consistent)
{
  setup();
  struct entry *b = e_mkdir(&R, &ROOT->id, "b");
  struct entry *c = e_mkdir(&R, &b->id, "c");
  CHECK_INT(tv_apply(V, b), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(V, c), ==, VIEW_APPLIED);
  /* /a into /b/c and /b into /a: a three-link cycle a -> c -> b -> a. */
  struct entry *ra = e_rename(&R, &DIR_A->id, &c->id, "a");
  struct entry *rb = e_rename(&R, &b->id, &DIR_A->id, "b");
  CHECK_INT(tv_apply(V, ra), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(V, rb), ==, VIEW_APPLIED);
  /* Nothing is lost: the file and all three directories are reachable. */
  char *d = tv_dump(V);
  CHECK(strstr(d, "/g ") != NULL);
  CHECK(strstr(d, "breaker 1") != NULL);
  int dirs = 0;
  for (const char *p = d; (p = strstr(p, "\n/")) != NULL; p++)
    dirs++;
  CHECK_INT(dirs, ==, 5); /* "/", three directories and the file, once each */
  free(d);
  /* Moving one out of the cycle dissolves it: no breaker left. */
  hash_t head;
  struct view_node n;
  CHECK_OK(view_resolve(V, "/", &n, NULL));
  struct view_version info;
  CHECK_OK(view_version(V, &c->id, &info, &head));
  struct entry *out = e_rename(&R, &c->id, &ROOT->id, "c");
  CHECK_INT(tv_apply(V, out), ==, VIEW_APPLIED);
  d = tv_dump(V);
  CHECK(strstr(d, "breaker 1") == NULL);
  CHECK(tv_exists(V, "/c/a/b"));
  CHECK(tv_exists(V, "/c/a/g"));
  free(d);
  free(b), free(c), free(ra), free(rb), free(out);
  teardown();
}

TEST(a_very_deep_tree_does_not_crash)
{
  tv_fast = true;
  setup();
  hash_t dir = ROOT->id;
  struct entry *last = NULL;
  for (int i = 0; i < 5000; i++) {
    struct entry *d = e_mkdir(&R, &dir, "d");
    CHECK_INT(tv_apply(V, d), ==, VIEW_APPLIED);
    dir = d->id;
    free(last);
    last = d;
  }
  struct view_node n = {VIEW_NODE_OBJECT, 0, dir};
  struct view_stat st;
  CHECK_OK(view_stat(V, &n, &st));
  struct view_node up;
  CHECK_OK(view_parent(V, &n, &up));
  char *d;
  size_t len;
  int rc = view_dump(V, &d, &len);
  CHECK(rc == 0 || rc == -ELOOP);
  if (rc == 0)
    free(d);
  free(last);
  teardown();
}
