/* History: every version listed, revert to each restores it, losers and
 * past versions readable under /.basefs. */
#include "tests/store/view_support.h"

static struct tw R;
static struct entry *ROOT;

static struct view *fresh(void)
{
  tw_init(&R);
  ROOT = e_root(&R);
  struct view *v;
  CHECK_OK(view_create(ROOT, &v));
  return v;
}

static void done(struct view *v)
{
  view_free(v);
  key_free(R.key);
  free(ROOT);
}

static const char *version_text(struct view *v, const hash_t *obj, const hash_t *ver, char *buf,
                                size_t cap)
{
  char path[300], ho[HASH_HEX_SIZE], hv[HASH_HEX_SIZE];
  hash_to_hex(obj, ho);
  hash_to_hex(ver, hv);
  snprintf(path, sizeof path, "/.basefs/history/%s/%s", ho, hv);
  return tv_cat(v, path, buf, cap);
}

TEST(log_lists_every_version_and_revert_restores_each)
{
  struct view *v = fresh();
  struct entry *f = e_create(&R, &ROOT->id, "cfg", "v0");
  CHECK_INT(tv_apply(v, f), ==, VIEW_APPLIED);
  struct entry *ver[6];
  ver[0] = f;
  for (int i = 1; i < 6; i++) {
    char data[8];
    snprintf(data, sizeof data, "v%d", i);
    ver[i] = e_write(&R, &ver[i - 1]->id, data);
    CHECK_INT(tv_apply(v, ver[i]), ==, VIEW_APPLIED);
  }
  struct view_version *vs;
  size_t n;
  CHECK_OK(view_versions(v, &f->id, &vs, &n));
  CHECK_INT(n, ==, 6);
  for (size_t i = 0; i < n; i++) {
    CHECK(hash_eq(&vs[i].id, &ver[i]->id)); /* oldest first */
    CHECK(hash_eq(&vs[i].author, &R.fp));
    CHECK_INT(vs[i].action, ==, ENTRY_WRITE);
    CHECK_INT(!!(vs[i].flags & VIEW_V_LOSER), ==, 0);
  }
  CHECK(vs[5].flags & VIEW_V_HEAD);
  free(vs);
  char buf[32], want[8];
  /* Every past version is readable by id. */
  for (int i = 0; i < 6; i++) {
    snprintf(want, sizeof want, "v%d", i);
    CHECK(strcmp(version_text(v, &f->id, &ver[i]->id, buf, sizeof buf), want) == 0);
  }
  /* Revert to each in turn: the content follows. */
  for (int i = 0; i < 6; i++) {
    struct view_version info;
    hash_t head;
    CHECK_OK(view_version(v, &ver[i]->id, &info, &head));
    struct entry *r = e_revert(&R, &head, &ver[i]->id);
    CHECK_INT(tv_apply(v, r), ==, VIEW_APPLIED);
    snprintf(want, sizeof want, "v%d", i);
    CHECK(strcmp(tv_cat(v, "/cfg", buf, sizeof buf), want) == 0);
    struct view_node nd = tv_path(v, "/cfg");
    struct view_stat st;
    CHECK_OK(view_stat(v, &nd, &st));
    CHECK(hash_eq(&st.version, &r->id));
    CHECK(hash_eq(&st.content, &ver[i]->id));
    CHECK_INT(st.mtime_ns, ==, r->mtime_ns);
    free(r);
  }
  /* History listing: "tree" plus the 6 writes and 6 reverts. */
  char path[300], ho[HASH_HEX_SIZE];
  hash_to_hex(&f->id, ho);
  snprintf(path, sizeof path, "/.basefs/history/%s", ho);
  struct view_node hn = tv_path(v, path);
  char **names;
  size_t nn;
  CHECK_OK(view_list(v, &hn, &names, &nn));
  CHECK_INT(nn, ==, 13);
  view_names_free(names, nn);
  for (int i = 0; i < 6; i++)
    free(ver[i]);
  done(v);
}

TEST(revert_of_a_delete_brings_the_subtree_back)
{
  struct view *v = fresh();
  struct entry *d = e_mkdir(&R, &ROOT->id, "d");
  struct entry *f = e_create(&R, &d->id, "f", "x");
  struct entry *del = e_delete(&R, &d->id);
  CHECK_INT(tv_apply(v, d), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(v, f), ==, VIEW_APPLIED);
  struct view_node fn = tv_path(v, "/d/f");
  CHECK_INT(tv_apply(v, del), ==, VIEW_APPLIED);
  CHECK(!tv_exists(v, "/d"));
  struct view_stat st;
  CHECK_INT(view_stat(v, &fn, &st), ==, -ESTALE); /* the handle of a file in a deleted dir */
  /* Still readable through history. */
  char path[300], ho[HASH_HEX_SIZE];
  hash_to_hex(&d->id, ho);
  snprintf(path, sizeof path, "/.basefs/history/%s/tree/f", ho);
  CHECK(tv_exists(v, path));
  struct view_version info;
  hash_t head;
  CHECK_OK(view_version(v, &d->id, &info, &head)); /* content head of d */
  /* The name thread's head is the DELETE. */
  CHECK_OK(view_version(v, &del->id, &info, &head));
  CHECK(hash_eq(&head, &del->id));
  CHECK(info.flags & VIEW_V_DELETED);
  struct entry *undo = e_revert(&R, &del->id, &d->id);
  CHECK_INT(tv_apply(v, undo), ==, VIEW_APPLIED);
  CHECK(tv_exists(v, "/d/f"));
  CHECK_OK(view_stat(v, &fn, &st));
  free(d), free(f), free(del), free(undo);
  done(v);
}

TEST(losers_are_listed_and_revertible)
{
  struct view *v = fresh();
  struct entry *f = e_create(&R, &ROOT->id, "f", "base");
  struct entry *x = e_write(&R, &f->id, "x");
  struct entry *y = e_write(&R, &f->id, "y");
  struct entry *z = e_write(&R, &f->id, "z");
  struct entry *all[] = {f, x, y, z};
  for (int i = 0; i < 4; i++)
    CHECK_INT(tv_apply(v, all[i]), ==, VIEW_APPLIED);
  char ho[HASH_HEX_SIZE], path[300];
  hash_to_hex(&f->id, ho);
  snprintf(path, sizeof path, "/.basefs/conflicts/%s", ho);
  struct view_node cn = tv_path(v, path);
  char **names;
  size_t nn;
  CHECK_OK(view_list(v, &cn, &names, &nn));
  CHECK_INT(nn, ==, 3); /* tree + two losers */
  view_names_free(names, nn);
  struct view_node root;
  view_root_node(v, &root);
  CHECK_OK(view_list(v, &root, &names, &nn));
  for (size_t i = 0; i < nn; i++)
    CHECK(strcmp(names[i], ".basefs") != 0);
  view_names_free(names, nn);
  /* Revert to a loser: the content becomes it and the conflict is gone
   * once the revert descends from the winner. */
  struct view_node nd = tv_path(v, "/f");
  struct view_stat st;
  CHECK_OK(view_stat(v, &nd, &st));
  struct entry *loser = hash_eq(&st.version, &x->id) ? y : x;
  struct entry *rv = e_revert(&R, &st.version, &loser->id);
  CHECK_INT(tv_apply(v, rv), ==, VIEW_APPLIED);
  char buf[16];
  CHECK(strcmp(tv_cat(v, "/f", buf, sizeof buf), (const char *)loser->content) == 0 ||
        memcmp(buf, loser->content, loser->content_len) == 0);
  for (int i = 0; i < 4; i++)
    free(all[i]);
  free(rv);
  done(v);
}

TEST(content_base_for_delta_chains)
{
  struct view *v = fresh();
  struct entry *f = e_create(&R, &ROOT->id, "f", "one");
  struct entry *m = e_mode(&R, &f->id, 0600);
  struct entry *u = e_write(&R, &m->id, "two");
  CHECK_INT(tv_apply(v, f), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(v, m), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(v, u), ==, VIEW_APPLIED);
  hash_t base;
  /* u's dictionary is the content of its parent version m, carried by f. */
  CHECK_OK(view_content_base(v, &u->id, &base));
  CHECK(hash_eq(&base, &f->id));
  CHECK_INT(view_content_base(v, &f->id, &base), ==, -ENOENT);
  free(f), free(m), free(u);
  done(v);
}

TEST(incomplete_versions_are_not_shown)
{
  struct view *v = fresh();
  struct entry *f = e_create(&R, &ROOT->id, "f", "complete");
  struct entry *u = e_write(&R, &f->id, "blocks missing");
  CHECK_INT(tv_apply(v, f), ==, VIEW_APPLIED);
  CHECK_INT(tv_apply(v, u), ==, VIEW_APPLIED);
  CHECK_OK(view_set_incomplete(v, &u->id, true));
  char buf[32];
  CHECK(strcmp(tv_cat(v, "/f", buf, sizeof buf), "complete") == 0);
  struct view_node n = tv_path(v, "/f");
  struct view_stat st;
  CHECK_OK(view_stat(v, &n, &st));
  CHECK(hash_eq(&st.version, &u->id)); /* the next write still descends from the head */
  CHECK_INT(st.size, ==, 8);
  CHECK_INT(st.mtime_ns, ==, f->mtime_ns); /* completing it changes mtime: caches notice */
  CHECK_OK(view_set_incomplete(v, &u->id, false));
  CHECK_OK(view_stat(v, &n, &st));
  CHECK_INT(st.mtime_ns, ==, u->mtime_ns);
  CHECK(strcmp(tv_cat(v, "/f", buf, sizeof buf), "blocks missing") == 0);
  hash_t nowhere = {{7}};
  CHECK_INT(view_set_incomplete(v, &nowhere, true), ==, -ENOENT);
  free(f), free(u);
  done(v);
}
