#include "tests/test.h"

#include <errno.h>

#include "store/entry.h"
#include "store/error.h"
#include "store/key.h"
#include "store/sign.h"

#define N 60

static struct entry want[N], got[N];
static struct entry *ptrs[N];

/*
 * A batch shaped like an import: a directory, then entries whose dir is an
 * earlier entry's id. Built with entry_prepare() first (ids do not cover the
 * signature), so the references are set before anything is signed.
 */
static void build(struct entry *es, struct key *k, bool serial)
{
  uint8_t pub[KEY_PUBLIC_SIZE];
  key_public(k, pub);
  for (int i = 0; i < N; i++) {
    struct entry *e = &es[i];
    memset(e, 0, sizeof *e);
    e->mtime_ns = 5000 + (uint64_t)i;
    if (i % 7 == 0) {
      e->action = ENTRY_MKDIR;
      e->mode = 0755;
    } else {
      e->action = ENTRY_WRITE;
      e->mode = 0644;
      e->content_kind = ENTRY_CONTENT_INLINE;
      e->content_len = (uint16_t)snprintf((char *)e->content, 64, "content %d\n", i);
      e->size = e->content_len;
    }
    if (i > 0) {
      e->dir = es[i / 7 * 7].id; /* the latest MKDIR (or the first entry) */
      if (i % 7 == 0)
        e->dir = es[i - 7].id;
      e->name_len = (uint8_t)snprintf(e->name, sizeof e->name, "n%d", i);
    }
    if (serial)
      CHECK_OK(entry_sign(e, k));
    else
      CHECK_OK(entry_prepare(e, pub));
  }
}

TEST(parallel_matches_serial)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  build(want, k, true);
  for (int i = 0; i < N; i++)
    CHECK_OK(entry_verify(&want[i]));
  int threads[] = {0, 1, 2, 3, 8, -1, 1000};
  size_t sizes[] = {N, 1, 2, 17};
  for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
      build(got, k, false);
      for (int i = 0; i < N; i++) {
        CHECK_MEM(&got[i].id, &want[i].id, sizeof(hash_t));
        memset(got[i].signature, 0, KEY_SIGNATURE_SIZE);
        memset(got[i].pubkey, 0, KEY_PUBLIC_SIZE); /* sign_entries sets it again */
        ptrs[i] = &got[i];
      }
      size_t n = sizes[s];
      CHECK_INT(sign_entries(ptrs, n, k, threads[t]), ==, 0);
      for (size_t i = 0; i < N; i++) {
        if (i < n) {
          CHECK_MSG(memcmp(&got[i], &want[i], sizeof got[i]) == 0, "threads %d n %zu entry %zu differs", threads[t],
                    n, i);
          CHECK_OK(entry_verify(&got[i]));
        } else {
          uint8_t zero[KEY_SIGNATURE_SIZE] = {0};
          CHECK_MEM(got[i].signature, zero, sizeof zero); /* nothing signed past n */
        }
      }
    }
  }
  key_free(k);
}

TEST(lowest_failing_entry_reported)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  build(got, k, false);
  for (int i = 0; i < N; i++)
    ptrs[i] = &got[i];
  got[40].action = ENTRY_DELETE; /* DELETE needs a parent: -BFS_EFORMAT */
  got[50].name_len = 0;
  got[50].action = ENTRY_ACTION_MAX + 1;
  CHECK_INT(sign_entries(ptrs, N, k, 2), ==, -BFS_EFORMAT);
  for (int i = 0; i < 40; i++)
    CHECK_OK(entry_verify(&got[i])); /* the others are signed all the same */
  key_free(k);
}

TEST(empty_and_bad_arguments)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  CHECK_INT(sign_entries(NULL, 0, k, 2), ==, 0);
  CHECK_INT(sign_entries(NULL, 1, k, 2), ==, -EINVAL);
  struct entry *one[1] = {&got[0]};
  CHECK_INT(sign_entries(one, 1, NULL, 2), ==, -EINVAL);
  struct entry *none[1] = {NULL};
  CHECK_INT(sign_entries(none, 1, k, 1), ==, -EINVAL);
  key_free(k);
}

/* ---- fs: local writes past a batch's first records are signed at commit ---- */

#include "store/fs.h"
#include "store/view.h"

struct walk {
  struct view *view; /* also check the view's copy of each entry, if set */
  int entries, bad;
};

static int check_entry(const struct entry *e, void *arg)
{
  struct walk *w = arg;
  w->entries++;
  if (entry_verify(e) != 0)
    w->bad++;
  if (w->view) {
    static struct entry v;
    if (view_entry(w->view, &e->id, &v) != 0 || memcmp(v.signature, e->signature, KEY_SIGNATURE_SIZE) != 0 ||
        entry_verify(&v) != 0)
      w->bad++;
  }
  return 0;
}

/* A tree like an import's: directories, files in them, modes. */
static void write_tree(struct fs *fs, struct key *k, int dirs, int files)
{
  char path[64];
  for (int d = 0; d < dirs; d++) {
    snprintf(path, sizeof path, "/d%d", d);
    CHECK_OK(fs_mkdir(fs, k, path, NULL));
    for (int f = 0; f < files; f++) {
      char data[32];
      int n = snprintf(data, sizeof data, "file %d %d\n", d, f);
      snprintf(path, sizeof path, "/d%d/f%d", d, f);
      CHECK_OK(fs_put(fs, k, path, data, (size_t)n, NULL));
      if (f % 5 == 0)
        CHECK_OK(fs_chmod(fs, k, path, 0600, NULL));
    }
  }
}

TEST(fs_bulk_writes_are_signed)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  struct fs *fs;
  CHECK_OK(fs_create(test_tmpdir(), "s", k, NULL, 0, &fs));
  write_tree(fs, k, 6, 20);
  CHECK_OK(fs_commit(fs));
  struct walk w = {fs_view(fs), 0, 0};
  CHECK_OK(fs_foreach_entry(fs, check_entry, &w));
  CHECK_INT(w.entries, >=, 6 * 25);
  CHECK_INT(w.bad, ==, 0);
  /* More writes on a handle whose view is out: signed at once, still all good. */
  CHECK_OK(fs_mkdir(fs, k, "/later", NULL));
  CHECK_OK(fs_close(fs));

  CHECK_OK(fs_open(test_tmpdir(), "s", false, &fs));
  uint8_t *data;
  size_t len;
  CHECK_OK(fs_read(fs, "/d5/f19", &data, &len));
  CHECK_INT(len, ==, strlen("file 5 19\n"));
  CHECK_MEM(data, "file 5 19\n", len);
  free(data);
  struct walk w2 = {fs_view(fs), 0, 0};
  CHECK_OK(fs_foreach_entry(fs, check_entry, &w2));
  CHECK_INT(w2.entries, ==, w.entries + 1);
  CHECK_INT(w2.bad, ==, 0);
  fs_close(fs);
  key_free(k);
}

/* Handing the view out mid-batch signs what is pending first; a discard drops it all. */
TEST(fs_view_mid_batch_and_discard)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  struct fs *fs;
  CHECK_OK(fs_create(test_tmpdir(), "s", k, NULL, 0, &fs));
  CHECK_OK(fs_close(fs));
  CHECK_OK(fs_open(test_tmpdir(), "s", true, &fs));
  write_tree(fs, k, 2, 40);
  struct view *v = fs_view(fs);
  struct fs_stat st;
  CHECK_OK(fs_stat(fs, "/d1/f39", &st));
  hash_t id;
  CHECK_OK(fs_resolve(fs, "/d1/f39", &id));
  static struct entry e;
  CHECK_OK(view_entry(v, &id, &e));
  CHECK_OK(entry_verify(&e));
  CHECK_OK(fs_discard(fs));
  CHECK_OK(fs_open(test_tmpdir(), "s", true, &fs));
  CHECK_INT(fs_stat(fs, "/d0", &st), ==, -ENOENT);
  write_tree(fs, k, 1, 50);
  CHECK_OK(fs_close(fs));
  CHECK_OK(fs_open(test_tmpdir(), "s", false, &fs));
  struct walk w = {fs_view(fs), 0, 0};
  CHECK_OK(fs_foreach_entry(fs, check_entry, &w));
  CHECK_INT(w.entries, >=, 60);
  CHECK_INT(w.bad, ==, 0);
  fs_close(fs);
  key_free(k);
}
