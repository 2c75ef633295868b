/* The view: the tree, lookups, listings, stat, conflicts and objects. */
#include "tests/store/view_support.h"

static struct tw W0; /* the root key */
static struct entry *ROOT;

static struct view *fresh(void)
{
  tw_init(&W0);
  ROOT = e_root(&W0);
  struct view *v;
  CHECK_OK(view_create(ROOT, &v));
  return v;
}

struct names {
  char list[64][80];
  int n;
  uint64_t last;
};

static int collect(void *arg, const char *name, const struct view_node *node, uint64_t cookie)
{
  struct names *ns = arg;
  (void)node;
  CHECK(cookie > ns->last);
  ns->last = cookie;
  snprintf(ns->list[ns->n++], 80, "%s", name);
  return ns->n == 64;
}

static bool listed(struct view *v, const char *dir, const char *name)
{
  struct view_node d = tv_path(v, dir);
  struct names ns = {0};
  CHECK_OK(view_readdir(v, &d, 0, collect, &ns));
  for (int i = 0; i < ns.n; i++)
    if (strcmp(ns.list[i], name) == 0)
      return true;
  return false;
}

TEST(tree_basics)
{
  struct view *v = fresh();
  struct entry *etc = e_mkdir(&W0, &ROOT->id, "etc");
  CHECK_INT(tv_apply(v, etc), ==, VIEW_APPLIED);
  struct entry *f = e_create(&W0, &etc->id, "hosts", "127.0.0.1 localhost\n");
  CHECK_INT(tv_apply(v, f), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(v, f), ==, VIEW_DUPLICATE);
  char buf[256];
  CHECK(strcmp(tv_cat(v, "/etc/hosts", buf, sizeof buf), "127.0.0.1 localhost\n") == 0);
  struct view_node n = tv_path(v, "/etc/hosts");
  struct view_stat st;
  CHECK_OK(view_stat(v, &n, &st));
  CHECK_INT(st.type, ==, VIEW_FILE);
  CHECK_INT(st.size, ==, 20);
  CHECK_INT(st.mode, ==, 0644);
  CHECK_INT(st.nlink, ==, 1);
  CHECK(hash_eq(&st.object, &f->id));
  CHECK(hash_eq(&n.id, &f->id));
  CHECK_INT(st.mtime_ns, ==, f->mtime_ns);

  struct entry *u = e_write(&W0, &f->id, "::1 localhost\n");
  CHECK_INT(tv_apply(v, u), ==, VIEW_APPLIED);
  CHECK(strcmp(tv_cat(v, "/etc/hosts", buf, sizeof buf), "::1 localhost\n") == 0);
  CHECK_OK(view_stat(v, &n, &st));
  CHECK(hash_eq(&st.version, &u->id));
  CHECK(hash_eq(&st.object, &f->id)); /* identity kept */

  struct view_node root;
  view_root_node(v, &root);
  CHECK(listed(v, "/", "etc"));
  CHECK(!listed(v, "/", ".basefs"));
  CHECK(tv_exists(v, "/.basefs/history"));
  CHECK_INT(view_resolve(v, "/nope", &n, NULL), ==, -ENOENT);
  CHECK_INT(view_resolve(v, "/etc/hosts/x", &n, NULL), ==, -ENOTDIR);
  CHECK_INT(view_resolve(v, "/etc/../x", &n, NULL), ==, -EINVAL);
  CHECK_INT(view_count(v), ==, 4);
  /* ".." */
  struct view_node up, etcn = tv_path(v, "/etc");
  CHECK_OK(view_parent(v, &etcn, &up));
  CHECK(up.kind == VIEW_NODE_OBJECT && hash_eq(&up.id, &ROOT->id));
  CHECK_OK(view_parent(v, &root, &up));
  CHECK(hash_eq(&up.id, &ROOT->id));
  struct view_node bf = tv_path(v, "/.basefs/history");
  CHECK_OK(view_parent(v, &bf, &up));
  CHECK_INT(up.kind, ==, VIEW_NODE_BASEFS);
  CHECK_INT(view_parent(v, &n, &up), ==, -ENOTDIR);
  CHECK_INT(view_pending(v), ==, 0);
  free(etc), free(f), free(u);
  view_free(v);
}

struct one {
  char name[64];
  uint64_t cookie;
  int got;
};

static int take_one(void *arg, const char *name, const struct view_node *node, uint64_t cookie)
{
  struct one *o = arg;
  (void)node;
  snprintf(o->name, sizeof o->name, "%s", name);
  o->cookie = cookie;
  o->got = 1;
  return 1;
}

TEST(readdir_resume_after_changes)
{
  struct view *v = fresh();
  char name[32];
  struct entry *es[30];
  for (int i = 0; i < 30; i++) {
    snprintf(name, sizeof name, "n%02d", i);
    es[i] = e_create(&W0, &ROOT->id, name, "x");
    CHECK_INT(tv_apply(v, es[i]), ==, VIEW_APPLIED);
  }
  struct view_node root;
  view_root_node(v, &root);
  uint64_t cookie = 0;
  char seen[30][64];
  int nseen = 0;
  for (;;) {
    struct one o = {{0}, 0, 0};
    int rc = view_readdir(v, &root, cookie, take_one, &o);
    CHECK(rc == 0 || rc == 1);
    if (!o.got)
      break;
    CHECK(o.cookie > cookie);
    cookie = o.cookie;
    snprintf(seen[nseen++], 64, "%s", o.name);
    if (nseen == 10) {
      /* Delete a name already returned: the rest still comes once each. */
      /* Delete a name already returned: the rest still comes once each. */
      int k = atoi(seen[0] + 1);
      struct entry *d = e_delete(&W0, &es[k]->id);
      CHECK_INT(tv_apply(v, d), ==, VIEW_APPLIED);
      free(d);
    }
    CHECK(nseen <= 30);
  }
  CHECK_INT(nseen, ==, 30);
  CHECK(!tv_exists(v, "/n00") || atoi(seen[0] + 1) != 0);
  for (int i = 0; i < 30; i++)
    for (int j = i + 1; j < 30; j++)
      CHECK(strcmp(seen[i], seen[j]) != 0);
  for (int i = 0; i < 30; i++)
    free(es[i]);
  view_free(v);
}

TEST(rename_keeps_identity_and_links_share)
{
  struct view *v = fresh();
  struct entry *a = e_mkdir(&W0, &ROOT->id, "a");
  struct entry *b = e_mkdir(&W0, &ROOT->id, "b");
  struct entry *f = e_create(&W0, &a->id, "f", "data");
  CHECK_INT(tv_apply(v, a), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(v, b), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(v, f), ==, VIEW_APPLIED);
  hash_t head;
  struct view_node n;
  CHECK_OK(view_resolve(v, "/a/f", &n, &head));
  CHECK(hash_eq(&head, &f->id));
  struct entry *r = e_rename(&W0, &f->id, &b->id, "g");
  CHECK_INT(tv_apply(v, r), ==, VIEW_APPLIED);
  CHECK(!tv_exists(v, "/a/f"));
  struct view_node g = tv_path(v, "/b/g");
  CHECK(hash_eq(&g.id, &f->id));
  struct entry *l = e_link(&W0, &a->id, &f->id, "hard");
  CHECK_INT(tv_apply(v, l), ==, VIEW_APPLIED);
  struct view_node h = tv_path(v, "/a/hard");
  CHECK(hash_eq(&h.id, &f->id));
  struct view_stat st;
  CHECK_OK(view_stat(v, &h, &st));
  CHECK_INT(st.nlink, ==, 2);
  /* A write through either name is seen through both. */
  struct entry *u = e_write(&W0, &st.version, "new");
  CHECK_INT(tv_apply(v, u), ==, VIEW_APPLIED);
  char buf[64];
  CHECK(strcmp(tv_cat(v, "/b/g", buf, sizeof buf), "new") == 0);
  CHECK(strcmp(tv_cat(v, "/a/hard", buf, sizeof buf), "new") == 0);
  /* Delete one name: the object lives on with nlink 1. */
  struct entry *d = e_delete(&W0, &r->id);
  CHECK_INT(tv_apply(v, d), ==, VIEW_APPLIED);
  CHECK(!tv_exists(v, "/b/g"));
  CHECK_OK(view_stat(v, &h, &st));
  CHECK_INT(st.nlink, ==, 1);
  /* Delete the last: the handle goes stale, history still has it. */
  struct entry *d2 = e_delete(&W0, &l->id);
  CHECK_INT(tv_apply(v, d2), ==, VIEW_APPLIED);
  CHECK_INT(view_stat(v, &h, &st), ==, -ESTALE);
  char path[200], hexid[HASH_HEX_SIZE];
  hash_to_hex(&f->id, hexid);
  snprintf(path, sizeof path, "/.basefs/history/%s/tree", hexid);
  struct view_node ro = tv_path(v, path);
  CHECK_OK(view_stat(v, &ro, &st));
  CHECK(st.readonly);
  CHECK_INT(st.mode & 0222, ==, 0);
  free(a), free(b), free(f), free(r), free(l), free(u), free(d), free(d2);
  view_free(v);
}

TEST(concurrent_writes_pick_one_and_keep_the_loser)
{
  struct view *v = fresh();
  struct entry *f = e_create(&W0, &ROOT->id, "conf", "v0");
  CHECK_INT(tv_apply(v, f), ==, VIEW_APPLIED);
  struct entry *x = e_write(&W0, &f->id, "from x");
  struct entry *y = e_write(&W0, &f->id, "from y");
  CHECK_INT(tv_apply(v, x), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(v, y), ==, VIEW_APPLIED);
  /* Same key, same authority, same number of keys: the higher id wins. */
  struct entry *win = hash_cmp(&x->id, &y->id) > 0 ? x : y, *lose = win == x ? y : x;
  char buf[64];
  tv_cat(v, "/conf", buf, sizeof buf);
  CHECK(strlen(buf) == win->content_len && memcmp(buf, win->content, win->content_len) == 0);
  struct view_node n = tv_path(v, "/conf");
  struct view_stat st;
  CHECK_OK(view_stat(v, &n, &st));
  CHECK(hash_eq(&st.version, &win->id));
  char path[300], ho[HASH_HEX_SIZE], hv[HASH_HEX_SIZE];
  hash_to_hex(&f->id, ho);
  hash_to_hex(&lose->id, hv);
  snprintf(path, sizeof path, "/.basefs/conflicts/%s/%s", ho, hv);
  struct view_node ln = tv_path(v, path);
  CHECK_OK(view_stat(v, &ln, &st));
  CHECK(hash_eq(&st.content, &lose->id));
  CHECK(listed(v, "/.basefs/conflicts", ho));
  /* The winner is not under conflicts. */
  hash_to_hex(&win->id, hv);
  snprintf(path, sizeof path, "/.basefs/conflicts/%s/%s", ho, hv);
  CHECK_INT(view_resolve(v, path, &ln, NULL), ==, -ENOENT);
  /* versions: every one, winner HEAD, loser LOSER. */
  struct view_version *vs;
  size_t nv;
  CHECK_OK(view_versions(v, &f->id, &vs, &nv));
  CHECK_INT(nv, ==, 3);
  int heads = 0, losers = 0;
  for (size_t i = 0; i < nv; i++) {
    if ((vs[i].flags & VIEW_V_HEAD) && (vs[i].flags & VIEW_V_CONTENT))
      heads += hash_eq(&vs[i].id, &win->id);
    if (vs[i].flags & VIEW_V_LOSER)
      losers += hash_eq(&vs[i].id, &lose->id);
  }
  free(vs);
  CHECK_INT(heads, ==, 1);
  CHECK_INT(losers, ==, 1);
  free(f), free(x), free(y);
  view_free(v);
}

TEST(same_name_created_twice)
{
  struct view *v = fresh();
  struct entry *a = e_create(&W0, &ROOT->id, "same", "A");
  struct entry *b = e_create(&W0, &ROOT->id, "same", "B");
  CHECK_INT(tv_apply(v, b), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(v, a), ==, VIEW_APPLIED);
  struct entry *win = hash_cmp(&a->id, &b->id) > 0 ? a : b, *lose = win == a ? b : a;
  struct view_node n = tv_path(v, "/same");
  CHECK(hash_eq(&n.id, &win->id));
  char path[200], ho[HASH_HEX_SIZE];
  hash_to_hex(&lose->id, ho);
  snprintf(path, sizeof path, "/.basefs/conflicts/%s/tree", ho);
  struct view_node t = tv_path(v, path);
  CHECK(hash_eq(&t.id, &lose->id));
  CHECK_INT(view_check_name(v, &(struct view_node){0}, "x"), !=, 0);
  struct view_node root;
  view_root_node(v, &root);
  CHECK_INT(view_check_name(v, &root, "same"), ==, -EEXIST);
  CHECK_INT(view_check_name(v, &root, ".basefs"), ==, -EPERM);
  CHECK_INT(view_check_name(v, &root, "new"), ==, 0);
  free(a), free(b);
  view_free(v);
}

TEST(directory_times_follow_changes)
{
  struct view *v = fresh();
  struct entry *d = e_mkdir(&W0, &ROOT->id, "d");
  CHECK_INT(tv_apply(v, d), ==, VIEW_APPLIED);
  struct view_node dn = tv_path(v, "/d");
  struct view_stat s0, s1, s2;
  CHECK_OK(view_stat(v, &dn, &s0));
  struct entry *f = e_create(&W0, &d->id, "f", "x");
  CHECK_INT(tv_apply(v, f), ==, VIEW_APPLIED);
  CHECK_OK(view_stat(v, &dn, &s1));
  CHECK_INT(s1.mtime_ns, >, s0.mtime_ns);
  CHECK_INT(s1.mtime_ns, ==, f->mtime_ns);
  CHECK_INT(s1.ctime_ns, >=, s1.mtime_ns);
  /* A content write to the file does not touch the directory. */
  struct entry *u = e_write(&W0, &f->id, "y");
  CHECK_INT(tv_apply(v, u), ==, VIEW_APPLIED);
  CHECK_OK(view_stat(v, &dn, &s2));
  CHECK_INT(s2.mtime_ns, ==, s1.mtime_ns);
  /* Renaming it out does. */
  struct entry *r = e_rename(&W0, &f->id, &ROOT->id, "f2");
  CHECK_INT(tv_apply(v, r), ==, VIEW_APPLIED);
  CHECK_OK(view_stat(v, &dn, &s2));
  CHECK_INT(s2.mtime_ns, ==, r->mtime_ns);
  struct view_node root;
  view_root_node(v, &root);
  CHECK_OK(view_stat(v, &root, &s2));
  CHECK_INT(s2.mtime_ns, ==, r->mtime_ns);
  CHECK_INT(s2.nlink, ==, 3);
  free(d), free(f), free(u), free(r);
  view_free(v);
}

TEST(crossing_directory_renames_lose_nothing)
{
  struct view *v = fresh();
  struct entry *x = e_mkdir(&W0, &ROOT->id, "x");
  struct entry *y = e_mkdir(&W0, &ROOT->id, "y");
  struct entry *fx = e_create(&W0, &x->id, "in-x", "1");
  struct entry *fy = e_create(&W0, &y->id, "in-y", "2");
  struct entry *rx = e_rename(&W0, &x->id, &y->id, "x"); /* x into y */
  struct entry *ry = e_rename(&W0, &y->id, &x->id, "y"); /* y into x */
  struct entry *all[] = {x, y, fx, fy, rx, ry};
  char *dumps[2];
  for (int round = 0; round < 2; round++) {
    struct view *w;
    CHECK_OK(view_create(ROOT, &w));
    for (int i = 0; i < 6; i++)
      CHECK_INT(tv_apply(w, all[round ? 5 - (i + 2) % 6 : i]), >=, 0);
    /* Both files are still reachable from "/". */
    int found = 0;
    const char *paths[] = {"/x/y/in-y", "/x/in-x", "/y/x/in-x", "/y/in-y"};
    for (int i = 0; i < 4; i++)
      found += tv_exists(w, paths[i]);
    CHECK_INT(found, ==, 2);
    dumps[round] = tv_dump(w);
    view_free(w);
  }
  CHECK(strcmp(dumps[0], dumps[1]) == 0);
  free(dumps[0]), free(dumps[1]);
  for (int i = 0; i < 6; i++)
    free(all[i]);
  view_free(v);
}

TEST(checkpoint_round_trip)
{
  struct view *v = fresh();
  struct entry *d = e_mkdir(&W0, &ROOT->id, "d");
  struct entry *f = e_create(&W0, &d->id, "f", "abc");
  struct entry *u1 = e_write(&W0, &f->id, "u1");
  struct entry *u2 = e_write(&W0, &f->id, "u2");
  struct entry *orphan = e_write(&W0, &(hash_t){{1, 2, 3}}, "waits");
  CHECK_INT(tv_apply(v, d), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(v, f), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(v, u1), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(v, u2), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(v, orphan), ==, VIEW_PENDING_REF);
  char path[512];
  snprintf(path, sizeof path, "%s/view.ckpt", test_tmpdir());
  CHECK_OK(view_checkpoint_save(v, path, 12345));
  struct view *w;
  uint64_t off = 0;
  CHECK_OK(view_checkpoint_load(path, &w, &off));
  CHECK_INT(off, ==, 12345);
  char *a = tv_dump(v), *b = tv_dump(w);
  CHECK(strcmp(a, b) == 0);
  CHECK_INT(view_pending(w), ==, 1);
  CHECK_INT(view_entry_status(w, &orphan->id), ==, VIEW_PENDING_REF);
  struct entry *back = calloc(1, sizeof *back);
  CHECK_OK(view_entry(w, &u2->id, back));
  CHECK(hash_eq(&back->id, &u2->id));
  CHECK_MEM(back->signature, u2->signature, KEY_SIGNATURE_SIZE);
  CHECK_INT(entry_verify(back), ==, 0);
  free(back);
  /* A flipped byte is caught. */
  FILE *fp = fopen(path, "r+b");
  CHECK(fp != NULL);
  fseek(fp, 100, SEEK_SET);
  int c = fgetc(fp);
  fseek(fp, 100, SEEK_SET);
  fputc(c ^ 1, fp);
  fclose(fp);
  struct view *bad = NULL;
  CHECK_INT(view_checkpoint_load(path, &bad, &off), ==, -BFS_ECHECKSUM);
  CHECK(bad == NULL);
  free(a), free(b);
  free(d), free(f), free(u1), free(u2), free(orphan);
  view_free(w);
  view_free(v);
}

TEST(merkle_root_counts_losers_not_pending)
{
  struct view *v = fresh();
  hash_t r0, r1, r2;
  view_merkle_root(v, &r0);
  struct entry *f = e_create(&W0, &ROOT->id, "f", "x");
  CHECK_INT(tv_apply(v, f), ==, VIEW_APPLIED);
  view_merkle_root(v, &r1);
  CHECK(!hash_eq(&r0, &r1));
  struct entry *p = e_write(&W0, &(hash_t){{9}}, "pending");
  CHECK_INT(tv_apply(v, p), ==, VIEW_PENDING_REF);
  view_merkle_root(v, &r2);
  CHECK(hash_eq(&r1, &r2));
  struct view_merkle_node mn;
  CHECK_OK(view_merkle_node(v, NULL, 0, &mn));
  CHECK_INT(mn.count, ==, 2);
  CHECK(mn.leaf);
  CHECK(hash_eq(&mn.hash, &r2));
  free(f), free(p);
  view_free(v);
}

TEST(symlink_and_mode)
{
  struct view *v = fresh();
  struct entry *s = e_slink(&W0, &ROOT->id, "ln", "/etc/hosts");
  CHECK_INT(tv_apply(v, s), ==, VIEW_APPLIED);
  struct view_node n = tv_path(v, "/ln");
  struct view_stat st;
  CHECK_OK(view_stat(v, &n, &st));
  CHECK_INT(st.type, ==, VIEW_SYMLINK);
  CHECK_INT(st.size, ==, 10);
  struct entry *m = e_mode(&W0, &s->id, 0700);
  CHECK_INT(tv_apply(v, m), ==, VIEW_APPLIED);
  CHECK_OK(view_stat(v, &n, &st));
  CHECK_INT(st.mode, ==, 0700);
  CHECK(hash_eq(&st.content, &s->id)); /* MODE keeps the content */
  char buf[64];
  CHECK(strcmp(tv_cat(v, "/ln", buf, sizeof buf), "/etc/hosts") == 0);
  free(s), free(m);
  view_free(v);
}

/* Walks the Merkle trie as sync would and collects every id. */
static void walk_merkle(struct view *v, uint8_t *prefix, unsigned depth, hash_t *ids, size_t *n)
{
  struct view_merkle_node mn;
  CHECK_OK(view_merkle_node(v, prefix, depth, &mn));
  if (mn.leaf) {
    for (uint32_t i = 0; i < mn.count; i++)
      ids[(*n)++] = mn.ids[i];
    return;
  }
  for (unsigned k = 0; k < 16; k++) {
    if (hash_is_zero(&mn.child[k]))
      continue;
    uint8_t p[32];
    memcpy(p, prefix, 32);
    if (depth % 2)
      p[depth / 2] = (uint8_t)((p[depth / 2] & 0xf0) | k);
    else
      p[depth / 2] = (uint8_t)(k << 4);
    walk_merkle(v, p, depth + 1, ids, n);
  }
}

TEST(merkle_walk_finds_every_counting_entry)
{
  tv_fast = true;
  struct view *v = fresh();
  enum { N = 300 };
  struct entry *es[N];
  for (int i = 0; i < N; i++) {
    char name[16];
    snprintf(name, sizeof name, "f%d", i);
    es[i] = e_create(&W0, &ROOT->id, name, "x");
    CHECK_INT(tv_apply(v, es[i]), ==, VIEW_APPLIED);
  }
  hash_t *ids = calloc(N + 8, sizeof *ids);
  size_t n = 0;
  uint8_t prefix[32] = {0};
  walk_merkle(v, prefix, 0, ids, &n);
  CHECK_INT(n, ==, N + 1); /* and the root entry */
  for (int i = 0; i < N; i++) {
    bool found = false;
    for (size_t j = 0; j < n && !found; j++)
      found = hash_eq(&ids[j], &es[i]->id);
    CHECK(found);
    free(es[i]);
  }
  free(ids);
  view_free(v);
}
