/* The view's permissions: grants, revokes, acknowledgements, pending. */
#include "tests/store/view_support.h"

static struct tw R, K, L;
static struct entry *ROOT;

static struct view *fresh(void)
{
  tw_init(&R);
  tw_init(&K);
  tw_init(&L);
  ROOT = e_root(&R);
  struct view *v;
  CHECK_OK(view_create(ROOT, &v));
  return v;
}

static void done(struct view *v)
{
  view_free(v);
  key_free(R.key);
  key_free(K.key);
  key_free(L.key);
  free(ROOT);
}

TEST(a_key_writes_only_below_its_grants)
{
  struct view *v = fresh();
  struct entry *a = e_mkdir(&R, &ROOT->id, "a");
  struct entry *b = e_mkdir(&R, &ROOT->id, "b");
  struct entry *g = e_grant(&R, &a->id, &K, "k");
  CHECK_INT(tv_apply(v, a), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(v, b), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(v, g), ==, VIEW_APPLIED);
  struct view_node an = tv_path(v, "/a"), bn = tv_path(v, "/b"), root;
  view_root_node(v, &root);
  CHECK_OK(view_check_write(v, &K.fp, &an));
  CHECK_INT(view_check_write(v, &K.fp, &bn), ==, -BFS_ENOGRANT);
  CHECK_INT(view_check_write(v, &K.fp, &root), ==, -BFS_ENOGRANT);
  CHECK_INT(view_check_write(v, &L.fp, &an), ==, -BFS_ENOGRANT);
  CHECK_OK(view_check_write(v, &R.fp, &bn));
  struct entry *ok = e_create(&K, &a->id, "mine", "x");
  struct entry *no = e_create(&K, &b->id, "theirs", "x");
  struct entry *no2 = e_mkdir(&K, &ROOT->id, "top");
  CHECK_INT(tv_apply(v, ok), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(v, no), ==, VIEW_PENDING_GRANT);
  CHECK_INT(tv_apply(v, no2), ==, VIEW_PENDING_GRANT);
  CHECK(tv_exists(v, "/a/mine"));
  CHECK(!tv_exists(v, "/b/theirs"));
  CHECK(!tv_exists(v, "/top"));
  CHECK_INT(view_pending(v), ==, 2);
  /* K may not change R's /a itself? It may: a grant on /a covers /a. */
  struct entry *m = e_mode(&K, &a->id, 0700);
  CHECK_INT(tv_apply(v, m), ==, VIEW_APPLIED);
  /* But not rename /a (its name lives in "/"). */
  struct entry *r = e_rename(&K, &a->id, &ROOT->id, "renamed");
  /* K covers the object /a, but the new directory "/" is not K's. */
  CHECK_INT(tv_apply(v, r), ==, VIEW_PENDING_GRANT);
  CHECK(tv_exists(v, "/a"));
  CHECK(!tv_exists(v, "/renamed"));
  CHECK_INT(view_entry_status(v, &r->id), ==, VIEW_PENDING_GRANT);
  /* Nor delete /a: the name "a" belongs to "/". It may delete its file. */
  CHECK_INT(view_check_unlink(v, &K.fp, &an), ==, -BFS_ENOGRANT);
  struct entry *del = e_delete(&K, &a->id);
  CHECK_INT(tv_apply(v, del), ==, VIEW_PENDING_GRANT);
  CHECK(tv_exists(v, "/a"));
  struct view_node mn = tv_path(v, "/a/mine");
  CHECK_OK(view_check_unlink(v, &K.fp, &mn));
  CHECK_OK(view_check_unlink(v, &R.fp, &an));
  CHECK_INT(view_check_unlink(v, &R.fp, &root), ==, -EINVAL);
  struct entry *del2 = e_delete(&K, &ok->id);
  CHECK_INT(tv_apply(v, del2), ==, VIEW_APPLIED);
  CHECK(!tv_exists(v, "/a/mine"));
  free(del), free(del2);
  /* The merkle root ignores pending entries. */
  struct view_grant *gs;
  size_t ng;
  CHECK_OK(view_grants(v, &gs, &ng));
  CHECK_INT(ng, ==, 1);
  CHECK(gs[0].active);
  CHECK(hash_eq(&gs[0].key, &K.fp));
  CHECK(hash_eq(&gs[0].dir, &a->id));
  CHECK(strcmp(gs[0].name, "k") == 0);
  free(gs);
  free(a), free(b), free(g), free(ok), free(no), free(no2), free(m), free(r);
  done(v);
}

TEST(an_entry_before_its_grant_counts_when_it_arrives)
{
  struct view *v = fresh();
  struct entry *a = e_mkdir(&R, &ROOT->id, "a");
  struct entry *g = e_grant(&R, &a->id, &K, "k");
  struct entry *f = e_create(&K, &a->id, "early", "x");
  struct entry *u = e_write(&K, &f->id, "y");
  CHECK_INT(tv_apply(v, a), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(v, u), ==, VIEW_PENDING_REF);
  CHECK_INT(tv_apply(v, f), ==, VIEW_PENDING_GRANT);
  CHECK(!tv_exists(v, "/a/early"));
  hash_t before;
  view_merkle_root(v, &before);
  CHECK_INT(tv_apply(v, g), ==, VIEW_APPLIED);
  CHECK(tv_exists(v, "/a/early"));
  char buf[16];
  CHECK(strcmp(tv_cat(v, "/a/early", buf, sizeof buf), "y") == 0);
  CHECK_INT(view_pending(v), ==, 0);
  CHECK_INT(view_entry_status(v, &u->id), ==, VIEW_APPLIED);
  hash_t after;
  view_merkle_root(v, &after);
  CHECK(!hash_eq(&before, &after));
  /* Same set in the natural order: the same view. */
  struct view *w;
  CHECK_OK(view_create(ROOT, &w));
  struct entry *order[] = {a, g, f, u};
  for (int i = 0; i < 4; i++)
    CHECK_INT(tv_apply(w, order[i]), ==, VIEW_APPLIED);
  char *d1 = tv_dump(v), *d2 = tv_dump(w);
  CHECK(strcmp(d1, d2) == 0);
  free(d1), free(d2);
  view_free(w);
  free(a), free(g), free(f), free(u);
  done(v);
}

/* The revoke protocol: the revoker ACKs the key's leaves, then revokes. */
TEST(revoke_keeps_old_writes_and_refuses_new_ones)
{
  struct view *v = fresh();
  struct entry *a = e_mkdir(&R, &ROOT->id, "a");
  struct entry *g = e_grant(&R, &a->id, &K, "k");
  CHECK_INT(tv_apply(v, a), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(v, g), ==, VIEW_APPLIED);
  struct entry *f = e_create(&K, &a->id, "f", "v1");
  struct entry *f2 = e_write(&K, &f->id, "v2");
  struct entry *d = e_mkdir(&K, &a->id, "sub");
  struct entry *h = e_create(&K, &d->id, "h", "in sub");
  struct entry *all[] = {f, f2, d, h};
  for (int i = 0; i < 4; i++)
    CHECK_INT(tv_apply(v, all[i]), ==, VIEW_APPLIED);
  hash_t *leaves;
  size_t nl;
  CHECK_OK(view_leaves_by_key(v, &K.fp, &leaves, &nl));
  /* f is acknowledged by f2, so the leaves are f2, sub and h. */
  CHECK_INT(nl, ==, 3);
  bool has_f = false, has_f2 = false;
  for (size_t i = 0; i < nl; i++) {
    has_f |= hash_eq(&leaves[i], &f->id);
    has_f2 |= hash_eq(&leaves[i], &f2->id);
  }
  CHECK(!has_f && has_f2);
  struct entry *acks[3];
  for (size_t i = 0; i < nl; i++) {
    acks[i] = e_ack(&R, &leaves[i]);
    CHECK_INT(tv_apply(v, acks[i]), ==, VIEW_APPLIED);
  }
  free(leaves);
  struct entry *rv = e_revoke(&R, &a->id, &g->id);
  CHECK_INT(tv_apply(v, rv), ==, VIEW_APPLIED);
  char buf[32];
  CHECK(strcmp(tv_cat(v, "/a/f", buf, sizeof buf), "v2") == 0);
  CHECK(strcmp(tv_cat(v, "/a/sub/h", buf, sizeof buf), "in sub") == 0);
  struct view_node an = tv_path(v, "/a");
  CHECK_INT(view_check_write(v, &K.fp, &an), ==, -BFS_ENOGRANT);
  /* A later write, back-dated, on an old parent: does not count. */
  struct entry *late = e_write(&K, &f->id, "sneaky");
  late->mtime_ns = 1; /* older than everything */
  tv_seal(late, &K);
  CHECK_INT(tv_apply(v, late), ==, VIEW_PENDING_GRANT);
  struct entry *late2 = e_create(&K, &a->id, "new", "x");
  CHECK_INT(tv_apply(v, late2), ==, VIEW_PENDING_GRANT);
  CHECK(strcmp(tv_cat(v, "/a/f", buf, sizeof buf), "v2") == 0);
  CHECK(!tv_exists(v, "/a/new"));
  struct view_grant *gs;
  size_t ng;
  CHECK_OK(view_grants(v, &gs, &ng));
  CHECK_INT(ng, ==, 1);
  CHECK(!gs[0].active);
  free(gs);
  /* Any order of the same set gives the same view. */
  struct entry *set[] = {a, g, f, f2, d, h, acks[0], acks[1], acks[2], rv, late, late2};
  char *ref = tv_dump(v);
  for (int round = 0; round < 20; round++) {
    struct view *w;
    CHECK_OK(view_create(ROOT, &w));
    int idx[12];
    for (int i = 0; i < 12; i++)
      idx[i] = i;
    for (int i = 11; i > 0; i--) {
      int j = (int)(test_rand() % (uint64_t)(i + 1)), t = idx[i];
      idx[i] = idx[j];
      idx[j] = t;
    }
    for (int i = 0; i < 12; i++)
      CHECK_INT(tv_apply(w, set[idx[i]]), >=, 0);
    char *dd = tv_dump(w);
    CHECK_MSG(strcmp(ref, dd) == 0, "order round %d differs", round);
    free(dd);
    view_free(w);
  }
  free(ref);
  for (int i = 0; i < 12; i++)
    free(set[i]);
  done(v);
}

TEST(revoke_without_acks_drops_the_keys_writes)
{
  struct view *v = fresh();
  struct entry *a = e_mkdir(&R, &ROOT->id, "a");
  struct entry *g = e_grant(&R, &a->id, &K, "k");
  struct entry *f = e_create(&K, &a->id, "f", "v1");
  struct entry *rv = e_revoke(&R, &a->id, &g->id);
  CHECK_INT(tv_apply(v, a), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(v, g), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(v, f), ==, VIEW_APPLIED);
  hash_t r1, r2;
  view_merkle_root(v, &r1);
  CHECK_INT(tv_apply(v, rv), ==, VIEW_APPLIED);
  CHECK(!tv_exists(v, "/a/f"));
  CHECK_INT(view_entry_status(v, &f->id), ==, VIEW_PENDING_GRANT);
  /* A late ACK by the root brings it back. */
  struct entry *ack = e_ack(&R, &f->id);
  CHECK_INT(tv_apply(v, ack), ==, VIEW_APPLIED);
  CHECK(tv_exists(v, "/a/f"));
  view_merkle_root(v, &r2);
  CHECK(!hash_eq(&r1, &r2));
  free(a), free(g), free(f), free(rv), free(ack);
  done(v);
}

TEST(grants_delegate_and_revocation_cascades)
{
  struct view *v = fresh();
  struct entry *a = e_mkdir(&R, &ROOT->id, "a");
  struct entry *b = e_mkdir(&R, &a->id, "b");
  struct entry *gk = e_grant(&R, &a->id, &K, "k");
  struct entry *gl = e_grant(&K, &b->id, &L, "l");
  struct entry *bad = e_grant(&L, &a->id, &L, "self"); /* L cannot grant above its grant */
  struct entry *f = e_create(&L, &b->id, "f", "x");
  struct entry *all[] = {a, b, gk, gl, bad, f};
  int want[] = {VIEW_APPLIED, VIEW_APPLIED, VIEW_APPLIED, VIEW_APPLIED, VIEW_PENDING_GRANT,
                VIEW_APPLIED};
  for (int i = 0; i < 6; i++)
    CHECK_INT(tv_apply(v, all[i]), ==, want[i]);
  CHECK(tv_exists(v, "/a/b/f"));
  /* K, granted on /a, cannot revoke another grant on /a (not strictly
   * above), but the root can, and it takes K's delegation with it. */
  struct entry *gm = e_grant(&R, &a->id, &L, "l2");
  CHECK_INT(tv_apply(v, gm), ==, VIEW_APPLIED);
  struct entry *kr = e_revoke(&K, &a->id, &gm->id);
  CHECK_INT(tv_apply(v, kr), ==, VIEW_PENDING_GRANT);
  struct entry *rr = e_revoke(&R, &a->id, &gm->id);
  CHECK_INT(tv_apply(v, rr), ==, VIEW_APPLIED);
  struct entry *rk = e_revoke(&R, &a->id, &gk->id);
  CHECK_INT(tv_apply(v, rk), ==, VIEW_APPLIED);
  CHECK(!tv_exists(v, "/a/b/f"));
  struct view_node bn = tv_path(v, "/a/b");
  CHECK_INT(view_check_write(v, &L.fp, &bn), ==, -BFS_ENOGRANT);
  free(gm), free(kr), free(rr), free(rk);
  for (int i = 0; i < 6; i++)
    free(all[i]);
  done(v);
}

TEST(authority_then_keys_then_hash)
{
  struct view *v = fresh();
  struct entry *a = e_mkdir(&R, &ROOT->id, "a");
  struct entry *gk = e_grant(&R, &a->id, &K, "k");
  struct entry *gl = e_grant(&R, &a->id, &L, "l");
  struct entry *f = e_create(&R, &a->id, "f", "base");
  struct entry *pre[] = {a, gk, gl, f};
  for (int i = 0; i < 4; i++)
    CHECK_INT(tv_apply(v, pre[i]), ==, VIEW_APPLIED);
  /* K (depth 1) vs the root (depth 0): the root's edit wins whatever the
   * hashes. Try many so both hash orders occur. */
  int root_won = 0;
  for (int i = 0; i < 8; i++) {
    char data[16];
    snprintf(data, sizeof data, "k%d", i);
    struct entry *ek = e_write(&K, &f->id, data);
    snprintf(data, sizeof data, "r%d", i);
    struct entry *er = e_write(&R, &f->id, data);
    struct view *w;
    CHECK_OK(view_create(ROOT, &w));
    for (int j = 0; j < 4; j++)
      tv_apply(w, pre[j]);
    tv_apply(w, ek);
    tv_apply(w, er);
    struct view_node n = tv_path(w, "/a/f");
    struct view_stat st;
    CHECK_OK(view_stat(w, &n, &st));
    root_won += hash_eq(&st.version, &er->id);
    view_free(w);
    free(ek), free(er);
  }
  CHECK_INT(root_won, ==, 8);
  /* Equal authority (K and L, both on /a): a branch of two keys beats a
   * branch of one. */
  int two_won = 0;
  for (int i = 0; i < 8; i++) {
    char data[16];
    snprintf(data, sizeof data, "k%d", i);
    struct entry *k1 = e_write(&K, &f->id, data);
    struct entry *k2 = e_write(&K, &k1->id, "k-more");
    snprintf(data, sizeof data, "l%d", i);
    struct entry *l1 = e_write(&L, &f->id, data);
    struct entry *k3 = e_write(&K, &l1->id, "k-after-l");
    struct view *w;
    CHECK_OK(view_create(ROOT, &w));
    for (int j = 0; j < 4; j++)
      tv_apply(w, pre[j]);
    tv_apply(w, k1), tv_apply(w, k2), tv_apply(w, l1), tv_apply(w, k3);
    struct view_node n = tv_path(w, "/a/f");
    struct view_stat st;
    CHECK_OK(view_stat(w, &n, &st));
    two_won += hash_eq(&st.version, &k3->id);
    view_free(w);
    free(k1), free(k2), free(l1), free(k3);
  }
  CHECK_INT(two_won, ==, 8);
  for (int i = 0; i < 4; i++)
    free(pre[i]);
  done(v);
}

TEST(moves_across_domains_are_refused)
{
  struct view *v = fresh();
  struct entry *a = e_mkdir(&R, &ROOT->id, "a");
  struct entry *b = e_mkdir(&R, &ROOT->id, "b");
  struct entry *ga = e_grant(&R, &a->id, &K, "k");
  struct entry *gb = e_grant(&R, &b->id, &K, "k");
  struct entry *x = e_create(&K, &a->id, "x", "1");
  struct entry *sub = e_mkdir(&K, &a->id, "sub");
  struct entry *all[] = {a, b, ga, gb, x, sub};
  for (int i = 0; i < 6; i++)
    CHECK_INT(tv_apply(v, all[i]), ==, VIEW_APPLIED);
  struct view_node xn = tv_path(v, "/a/x"), an = tv_path(v, "/a"), bn = tv_path(v, "/b"),
                   sn = tv_path(v, "/a/sub");
  CHECK_INT(view_check_move(v, &K.fp, &xn, &bn), ==, -EXDEV);
  CHECK_OK(view_check_move(v, &K.fp, &xn, &sn));
  CHECK_OK(view_check_move(v, &R.fp, &xn, &bn));
  CHECK_INT(view_check_move(v, &L.fp, &xn, &sn), ==, -BFS_ENOGRANT);
  CHECK_INT(view_check_move(v, &R.fp, &an, &sn), ==, -EINVAL); /* into itself */
  CHECK_INT(view_check_move(v, &R.fp, &an, &an), ==, -EINVAL);
  struct view_node ro;
  char path[200], hex[HASH_HEX_SIZE];
  hash_to_hex(&x->id, hex);
  snprintf(path, sizeof path, "/.basefs/history/%s/tree", hex);
  ro = tv_path(v, path);
  CHECK_INT(view_check_move(v, &R.fp, &ro, &bn), ==, -EROFS);
  CHECK_INT(view_check_write(v, &R.fp, &ro), ==, -EROFS);
  for (int i = 0; i < 6; i++)
    free(all[i]);
  done(v);
}

TEST(pending_set_is_bounded)
{
  tv_fast = true;
  struct view *v = fresh();
  struct entry *e = calloc(1, sizeof *e);
  int refused = 0, held = 0;
  for (int i = 0; i < VIEW_PENDING_MAX + 100; i++) {
    memset(e, 0, sizeof *e);
    e->action = ENTRY_WRITE;
    e->parent.bytes[0] = 1;
    memcpy(e->parent.bytes + 1, &i, sizeof i); /* unknown parents */
    e->content_kind = ENTRY_CONTENT_INLINE;
    e->content_len = e->size = 1;
    e->content[0] = 'x';
    e->mtime_ns = 1;
    tv_seal(e, &L);
    int rc = view_apply(v, e);
    if (rc == -ENOSPC)
      refused++;
    else if (rc == VIEW_PENDING_REF)
      held++;
    else
      CHECK_MSG(0, "unexpected %d", rc);
  }
  CHECK_INT(held, ==, VIEW_PENDING_MAX);
  CHECK_INT(refused, ==, 100);
  CHECK_INT(view_pending(v), ==, VIEW_PENDING_MAX);
  /* What counts at once is still taken. */
  struct entry *ok = e_create(&R, &ROOT->id, "still", "x");
  CHECK_INT(tv_apply(v, ok), ==, VIEW_APPLIED);
  struct entry *no = e_create(&L, &ROOT->id, "nope", "x");
  CHECK_INT(tv_apply(v, no), ==, -ENOSPC);
  free(e), free(ok), free(no);
  done(v);
}

struct events {
  hash_t id[16];
  bool on[16];
  int n;
};

static void on_event(void *arg, const hash_t *id, bool counting)
{
  struct events *ev = arg;
  if (ev->n < 16) {
    ev->id[ev->n] = *id;
    ev->on[ev->n++] = counting;
  }
}

static bool saw(const struct events *ev, const hash_t *id, bool on)
{
  for (int i = 0; i < ev->n; i++)
    if (hash_eq(&ev->id[i], id) && ev->on[i] == on)
      return true;
  return false;
}

TEST(listener_hears_entries_start_and_stop_counting)
{
  struct view *v = fresh();
  struct events ev = {0};
  view_set_listener(v, on_event, &ev);
  struct entry *a = e_mkdir(&R, &ROOT->id, "a");
  struct entry *g = e_grant(&R, &a->id, &K, "k");
  struct entry *f = e_create(&K, &a->id, "f", "x");
  struct entry *rv = e_revoke(&R, &a->id, &g->id);
  CHECK_INT(tv_apply(v, a), ==, VIEW_APPLIED);
  CHECK(saw(&ev, &a->id, true));
  CHECK_INT(tv_apply(v, f), ==, VIEW_PENDING_GRANT);
  CHECK(!saw(&ev, &f->id, true));
  CHECK_INT(tv_apply(v, g), ==, VIEW_APPLIED);
  CHECK(saw(&ev, &g->id, true));
  CHECK(saw(&ev, &f->id, true)); /* the held entry counts now */
  int before = ev.n;
  CHECK_INT(tv_apply(v, rv), ==, VIEW_APPLIED);
  CHECK(saw(&ev, &rv->id, true));
  CHECK(saw(&ev, &f->id, false)); /* unacknowledged after the revoke */
  CHECK(!saw(&ev, &a->id, false));
  CHECK_INT(ev.n, ==, before + 2);
  free(a), free(g), free(f), free(rv);
  done(v);
}

TEST(pending_bytes_are_bounded)
{
  tv_fast = true;
  struct view *v = fresh();
  struct entry *e = calloc(1, sizeof *e);
  int held = 0, refused = 0;
  for (int i = 0; i < VIEW_PENDING_MAX && refused < 10; i++) {
    memset(e, 0, sizeof *e);
    e->action = ENTRY_WRITE;
    e->parent.bytes[0] = 2;
    memcpy(e->parent.bytes + 1, &i, sizeof i);
    e->content_kind = ENTRY_CONTENT_INLINE;
    e->content_len = 1000;
    e->size = 1000;
    memset(e->content, 'y', 1000);
    e->mtime_ns = 1;
    tv_seal(e, &L);
    int rc = view_apply(v, e);
    if (rc == -ENOSPC)
      refused++;
    else
      held += rc == VIEW_PENDING_REF;
  }
  CHECK_INT(refused, ==, 10);
  CHECK_INT(held, <, VIEW_PENDING_MAX);
  CHECK_INT((long long)held * 1000, <=, VIEW_PENDING_BYTES_MAX);
  CHECK_INT((long long)held * 2000, >, VIEW_PENDING_BYTES_MAX); /* the bound is not far off */
  free(e);
  done(v);
}
