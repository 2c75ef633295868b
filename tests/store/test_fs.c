/* The fs layer: layout, lock, checkpoint + tail replay, readers, write helpers. */
#include "tests/test.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/error.h"
#include "store/fs.h"
#include "store/key.h"
#include "store/log.h"
#include "store/view.h"

#define CTL_TEST_MAX 2048

static struct key *new_key(void)
{
  struct key *k = NULL;
  CHECK_OK(key_generate(&k));
  return k;
}

static char *dump(struct fs *fs)
{
  char *d = NULL;
  size_t len = 0;
  CHECK_OK(view_dump(fs_view(fs), &d, &len));
  return d;
}

static void path_of(const char *file, char *out, size_t cap)
{
  snprintf(out, cap, "%s/fs/t/%s", test_tmpdir(), file);
}

static off_t file_size(const char *file)
{
  char p[4096];
  struct stat st;
  path_of(file, p, sizeof p);
  CHECK_OK(stat(p, &st));
  return st.st_size;
}

/*
 * Where the log's records end, as a reader finds it. While a writer has the
 * log open its file may also hold zeros written ahead past that (log.h), so
 * the file's size says nothing about what was committed; this does.
 */
static off_t log_records_end(void)
{
  char p[4096];
  path_of("log", p, sizeof p);
  struct log *log = NULL;
  CHECK_OK(log_open(p, LOG_READ, &log, NULL));
  struct log_cursor *c = NULL;
  CHECK_OK(log_cursor_open(log, LOG_HEADER_SIZE, &c));
  int r;
  while ((r = log_cursor_next(c, NULL, NULL, NULL)) == 1)
    ;
  CHECK_INT(r, ==, 0);
  CHECK_INT(log_cursor_stop(c), ==, 0); /* a clean end, never a bad record */
  off_t end = (off_t)log_cursor_offset(c);
  log_cursor_close(c);
  log_close(log);
  return end;
}

static void put_str(struct fs *fs, struct key *k, const char *path, const char *s)
{
  const char *reason = NULL;
  int r = fs_put(fs, k, path, s, strlen(s), &reason);
  CHECK_MSG(r == 0, "put %s: %d %s", path, r, reason ? reason : "");
}

static void check_content(struct fs *fs, const char *path, const void *want, size_t len)
{
  uint8_t *data = NULL;
  size_t got = 0;
  int r = fs_read(fs, path, &data, &got);
  CHECK_MSG(r == 0, "read %s: %d", path, r);
  CHECK_INT(got, ==, len);
  if (len)
    CHECK_MEM(data, want, len);
  free(data);
}

/* A filesystem with some history: files, dirs, updates, a rename, a delete. */
static void populate(struct fs *fs, struct key *k, int from, int to)
{
  for (int i = from; i < to; i++) {
    char path[64], text[64];
    snprintf(path, sizeof path, "/d%d", i % 5);
    if (i < 5)
      CHECK_OK(fs_mkdir(fs, k, path, NULL));
    snprintf(path, sizeof path, "/d%d/f%d", i % 5, i);
    snprintf(text, sizeof text, "file %d\n", i);
    put_str(fs, k, path, text);
    if (i % 3 == 0) {
      snprintf(text, sizeof text, "file %d, second version\n", i);
      put_str(fs, k, path, text);
    }
    if (i % 7 == 6) {
      char to_path[64];
      snprintf(to_path, sizeof to_path, "/d%d/moved%d", (i + 1) % 5, i);
      CHECK_OK(fs_mv(fs, k, path, to_path, NULL));
    }
    if (i % 11 == 10) {
      int r = fs_rm(fs, k, path, false, NULL);
      CHECK(r == 0 || r == -ENOENT); /* it may have been moved just above */
    }
  }
}

TEST(create_open_round_trip)
{
  struct key *k = new_key();
  struct fs *fs = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", k, "a:1\n", 4, &fs));
  check_content(fs, "/.cluster", "a:1\n", 4);
  CHECK_INT(fs_create(test_tmpdir(), "t", k, NULL, 0, &(struct fs *){NULL}), ==, -EEXIST);
  put_str(fs, k, "/hello", "hello world\n");
  char *before = dump(fs);
  CHECK_OK(fs_close(fs));

  CHECK_OK(fs_open(test_tmpdir(), "t", false, &fs));
  check_content(fs, "/hello", "hello world\n", 12);
  char *after = dump(fs);
  CHECK(strcmp(before, after) == 0);
  CHECK_OK(fs_close(fs));
  CHECK_INT(fs_open(test_tmpdir(), "nope", false, &fs), ==, -ENOENT);
  CHECK_INT(fs_open(test_tmpdir(), "../t", false, &fs), ==, -EINVAL);
  free(before);
  free(after);
  key_free(k);
}

TEST(checkpoint_plus_tail_equals_full_replay)
{
  struct key *k = new_key();
  struct fs *fs = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", k, NULL, 0, &fs));
  populate(fs, k, 0, 60);
  CHECK_OK(fs_checkpoint(fs));
  populate(fs, k, 60, 90);
  char *live = dump(fs);
  CHECK_OK(fs_close(fs));

  /* With the checkpoint: only the tail is replayed. */
  uint64_t ckpt = 0, tail = 0;
  CHECK_OK(fs_open(test_tmpdir(), "t", false, &fs));
  fs_open_stats(fs, &ckpt, &tail);
  CHECK_INT(ckpt, >, 60);
  uint64_t ckpt_tail = tail;
  CHECK_INT(tail, >, 0);
  CHECK_INT(tail, <, 100);
  char *with_ckpt = dump(fs);
  CHECK_OK(fs_close(fs));

  /* Without it: everything. */
  char p[4096];
  path_of("view.ckpt", p, sizeof p);
  CHECK_OK(unlink(p));
  CHECK_OK(fs_open(test_tmpdir(), "t", false, &fs));
  fs_open_stats(fs, &ckpt, &tail);
  uint64_t full_tail = tail;
  CHECK_INT(ckpt, ==, 0);
  char *full = dump(fs);
  CHECK_OK(fs_close(fs));

  CHECK_INT(full_tail, >, ckpt_tail + 60);
  CHECK_MSG(strcmp(live, with_ckpt) == 0, "checkpoint + tail differs from the live view");
  CHECK_MSG(strcmp(full, with_ckpt) == 0, "checkpoint + tail differs from a full replay");
  free(live);
  free(with_ckpt);
  free(full);
  key_free(k);
}

TEST(corrupt_or_stale_checkpoint_falls_back_to_full_replay)
{
  struct key *k = new_key();
  struct fs *fs = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", k, NULL, 0, &fs));
  populate(fs, k, 0, 30);
  CHECK_OK(fs_checkpoint(fs));
  char *want = dump(fs);
  CHECK_OK(fs_close(fs));

  char p[4096];
  path_of("view.ckpt", p, sizeof p);
  int fd = open(p, O_RDWR);
  CHECK(fd >= 0);
  struct stat st;
  CHECK_OK(fstat(fd, &st));
  uint8_t byte;
  CHECK_INT(pread(fd, &byte, 1, st.st_size / 2), ==, 1);
  byte ^= 0x40;
  CHECK_INT(pwrite(fd, &byte, 1, st.st_size / 2), ==, 1);
  close(fd);

  uint64_t ckpt = 1, tail = 0;
  CHECK_OK(fs_open(test_tmpdir(), "t", false, &fs));
  fs_open_stats(fs, &ckpt, &tail);
  CHECK_INT(ckpt, ==, 0);
  char *got = dump(fs);
  CHECK(strcmp(want, got) == 0);
  free(got);
  CHECK_OK(fs_close(fs));

  /* A checkpoint of another filesystem is not trusted either. */
  struct fs *other = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "u", k, NULL, 0, &other));
  CHECK_OK(fs_checkpoint(other));
  CHECK_OK(fs_close(other));
  char q[4096];
  snprintf(q, sizeof q, "%s/fs/u/view.ckpt", test_tmpdir());
  CHECK_OK(rename(q, p));
  CHECK_OK(fs_open(test_tmpdir(), "t", false, &fs));
  got = dump(fs);
  CHECK(strcmp(want, got) == 0);
  free(got);
  CHECK_OK(fs_close(fs));
  free(want);
  key_free(k);
}

TEST(reader_never_truncates_writer_repairs)
{
  struct key *k = new_key();
  struct fs *fs = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", k, NULL, 0, &fs));
  put_str(fs, k, "/a", "alpha");
  CHECK_OK(fs_close(fs));
  off_t good = file_size("log");

  /* A torn tail: half a record of garbage. */
  char p[4096];
  path_of("log", p, sizeof p);
  int fd = open(p, O_WRONLY | O_APPEND);
  CHECK(fd >= 0);
  CHECK_INT(write(fd, "\x30\x00\x00\x00garbage", 11), ==, 11);
  close(fd);
  off_t torn = file_size("log");
  CHECK_INT(torn, >, good);

  CHECK_OK(fs_open(test_tmpdir(), "t", false, &fs));
  check_content(fs, "/a", "alpha", 5);
  /* A reader cannot write. */
  CHECK_INT(fs_put(fs, k, "/b", "x", 1, NULL), ==, -EBADF);
  CHECK_OK(fs_close(fs));
  CHECK_INT(file_size("log"), ==, torn);
  path_of("view.ckpt", p, sizeof p);
  CHECK(access(p, F_OK) != 0); /* readers never write checkpoints */

  CHECK_OK(fs_open(test_tmpdir(), "t", true, &fs));
  check_content(fs, "/a", "alpha", 5);
  CHECK_OK(fs_close(fs));
  CHECK_INT(file_size("log"), ==, good);
  key_free(k);
}

TEST(one_writer_many_readers)
{
  struct key *k = new_key();
  struct fs *w = NULL, *w2 = NULL, *r = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", k, NULL, 0, &w));
  CHECK_INT(fs_open(test_tmpdir(), "t", true, &w2), ==, -EBUSY);
  CHECK_INT(fs_lock_owner(test_tmpdir(), "t"), ==, getpid());
  put_str(w, k, "/a", "one");
  CHECK_OK(fs_commit(w));
  CHECK_OK(fs_open(test_tmpdir(), "t", false, &r));
  check_content(r, "/a", "one", 3);
  CHECK_OK(fs_close(r));
  CHECK_OK(fs_close(w));
  CHECK_OK(fs_open(test_tmpdir(), "t", true, &w2));
  CHECK_OK(fs_close(w2));
  key_free(k);
}

TEST(uncommitted_entries_are_not_in_the_log)
{
  struct key *k = new_key();
  struct fs *w = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", k, NULL, 0, &w));
  off_t before = log_records_end();
  put_str(w, k, "/a", "one");
  put_str(w, k, "/b", "two");
  CHECK_INT(log_records_end(), ==, before); /* batched */
  CHECK_OK(fs_commit(w));
  CHECK_INT(log_records_end(), >, before);
  CHECK_OK(fs_close(w));
  key_free(k);
}

struct collected {
  uint8_t *data;
  size_t len;
};

static int collect_bytes(void *arg, const uint8_t *p, size_t n)
{
  struct collected *c = arg;
  c->data = realloc(c->data, c->len + n);
  memcpy(c->data + c->len, p, n);
  c->len += n;
  return 0;
}

TEST(contents_small_delta_and_blocks)
{
  struct key *k = new_key();
  struct fs *fs = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", k, NULL, 0, &fs));
  CHECK_OK(fs_put(fs, k, "/empty", "", 0, NULL));
  check_content(fs, "/empty", "", 0);

  /* A config-like file edited many times: deltas, chains cut, every version readable. */
  size_t len = 6000;
  char *text = malloc(len);
  for (size_t i = 0; i < len; i++)
    text[i] = (char)('a' + (test_rand() % 26));
  for (int v = 0; v < 40; v++) {
    text[(size_t)v * 97 % len] = (char)('0' + v % 10);
    CHECK_OK(fs_put(fs, k, "/conf", text, len, NULL));
    check_content(fs, "/conf", text, len);
  }
  /* 1 MiB of noise goes to blocks. */
  size_t big = 1 << 20;
  uint8_t *data = malloc(big);
  for (size_t i = 0; i < big; i += 8) {
    uint64_t x = test_rand();
    memcpy(data + i, &x, 8);
  }
  CHECK_OK(fs_put(fs, k, "/big", data, big, NULL));
  check_content(fs, "/big", data, big);
  struct collected got = {0};
  CHECK_OK(fs_stream(fs, "/big", collect_bytes, &got));
  CHECK_INT(got.len, ==, big);
  CHECK_MEM(got.data, data, big);
  free(got.data);
  memset(&got, 0, sizeof got);
  CHECK_OK(fs_stream(fs, "/conf", collect_bytes, &got));
  CHECK_INT(got.len, ==, len);
  CHECK_MEM(got.data, text, len);
  free(got.data);
  CHECK_INT(fs_stream(fs, "/", collect_bytes, &got), ==, -EISDIR);
  CHECK_OK(fs_close(fs));
  CHECK_OK(fs_open(test_tmpdir(), "t", false, &fs));
  check_content(fs, "/big", data, big);
  check_content(fs, "/conf", text, len);
  struct fs_version *v = NULL;
  size_t n = 0;
  CHECK_OK(fs_versions(fs, "/conf", &v, &n));
  CHECK_INT(n, >=, 40);
  free(v);
  CHECK_OK(fs_close(fs));
  free(data);
  free(text);
  key_free(k);
}

TEST(no_grant_changes_nothing)
{
  struct key *root = new_key(), *bob = new_key();
  struct fs *fs = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", root, NULL, 0, &fs));
  CHECK_OK(fs_mkdir(fs, root, "/team", NULL));
  put_str(fs, root, "/top", "root's");
  CHECK_OK(fs_commit(fs));
  char *before = dump(fs);
  off_t size = log_records_end();
  const char *reason = NULL;
  CHECK_INT(fs_put(fs, bob, "/team/x", "x", 1, &reason), ==, -BFS_ENOGRANT);
  CHECK(reason != NULL);
  CHECK_INT(fs_put(fs, bob, "/top", "x", 1, NULL), ==, -BFS_ENOGRANT);
  CHECK_INT(fs_mkdir(fs, bob, "/d", NULL), ==, -BFS_ENOGRANT);
  CHECK_INT(fs_rm(fs, bob, "/top", false, NULL), ==, -BFS_ENOGRANT);
  CHECK_INT(fs_chmod(fs, bob, "/top", 0600, NULL), ==, -BFS_ENOGRANT);
  CHECK_OK(fs_commit(fs));
  char *after = dump(fs);
  CHECK(strcmp(before, after) == 0);
  CHECK_INT(log_records_end(), ==, size);

  uint8_t pub[KEY_PUBLIC_SIZE];
  key_public(bob, pub);
  CHECK_OK(fs_grant(fs, root, "/team", pub, "bob", NULL));
  struct fs_grant *g = NULL;
  size_t ng = 0;
  CHECK_OK(fs_grants(fs, &g, &ng));
  CHECK_INT(ng, ==, 2);
  CHECK(strcmp(g[1].keyname, "bob") == 0 && strcmp(g[1].path, "/team") == 0);
  free(g);
  put_str(fs, bob, "/team/x", "bob's");
  CHECK_INT(fs_put(fs, bob, "/top", "x", 1, NULL), ==, -BFS_ENOGRANT);
  CHECK_OK(fs_revoke(fs, root, "/team", "bob", NULL));
  CHECK_INT(fs_put(fs, bob, "/team/y", "y", 1, NULL), ==, -BFS_ENOGRANT);
  check_content(fs, "/team/x", "bob's", 5);
  CHECK_OK(fs_close(fs));
  CHECK_OK(fs_open(test_tmpdir(), "t", false, &fs));
  check_content(fs, "/team/x", "bob's", 5);
  CHECK_OK(fs_close(fs));
  free(before);
  free(after);
  key_free(root);
  key_free(bob);
}

TEST(revert_restores_each_version)
{
  struct key *k = new_key();
  struct fs *fs = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", k, NULL, 0, &fs));
  const char *texts[] = {"one", "two two", "three three three"};
  for (int i = 0; i < 3; i++)
    put_str(fs, k, "/f", texts[i]);
  struct fs_version *v = NULL;
  size_t n = 0;
  CHECK_OK(fs_versions(fs, "/f", &v, &n));
  int writes = 0;
  for (size_t i = 0; i < n; i++) {
    if (v[i].action != ENTRY_WRITE)
      continue;
    char hex[HASH_HEX_SIZE];
    hash_to_hex(&v[i].id, hex);
    hex[writes == 1 ? 8 : 64] = '\0'; /* a prefix works too */
    const char *reason = NULL;
    int r = fs_revert(fs, k, "/f", hex, &reason);
    CHECK_MSG(r == 0, "revert: %d %s", r, reason ? reason : "");
    check_content(fs, "/f", texts[writes], strlen(texts[writes]));
    writes++;
  }
  CHECK_INT(writes, ==, 3);
  free(v);
  CHECK_INT(fs_revert(fs, k, "/f", "0123", NULL), ==, -EINVAL);
  CHECK_INT(fs_revert(fs, k, "/f", "ffffffffffff", NULL), ==, -ENOENT);
  CHECK_OK(fs_close(fs));
  key_free(k);
}

TEST(submit_raw_verifies)
{
  struct key *k = new_key();
  struct fs *fs = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", k, NULL, 0, &fs));
  struct entry e;
  memset(&e, 0, sizeof e);
  e.action = ENTRY_MKDIR;
  e.dir = *fs_root(fs);
  strcpy(e.name, "d");
  e.name_len = 1;
  e.mode = 0755;
  CHECK_OK(entry_sign(&e, k));
  uint8_t buf[ENTRY_MAX_SIZE];
  int n = entry_encode(&e, buf, sizeof buf);
  CHECK_INT(n, >, 0);
  const char *reason = NULL;
  buf[n - 1] ^= 1; /* the signature */
  CHECK(fs_submit_raw(fs, buf, (size_t)n, &reason) < 0);
  CHECK(reason != NULL);
  CHECK_INT(fs_submit_raw(fs, buf, 10, &reason), <, 0);
  buf[n - 1] ^= 1;
  CHECK_OK(fs_submit_raw(fs, buf, (size_t)n, &reason));
  struct fs_stat st;
  CHECK_OK(fs_stat(fs, "/d", &st));
  CHECK_INT(st.type, ==, FS_DIR);
  CHECK_OK(fs_close(fs));
  key_free(k);
}

static int collect(const char *name, void *arg)
{
  char *out = arg;
  strcat(out, name);
  strcat(out, ",");
  return 0;
}

TEST(list_names)
{
  struct key *k = new_key();
  struct fs *fs = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "b", k, NULL, 0, &fs));
  CHECK_OK(fs_close(fs));
  CHECK_OK(fs_create(test_tmpdir(), "a", k, NULL, 0, &fs));
  CHECK_OK(fs_close(fs));
  char names[256] = "";
  CHECK_OK(fs_list(test_tmpdir(), collect, names));
  CHECK(strcmp(names, "a,b,") == 0);
  CHECK(!fs_name_valid(".x"));
  CHECK(!fs_name_valid("a/b"));
  CHECK(!fs_name_valid(""));
  CHECK(fs_name_valid("a-b_c.1"));
  key_free(k);
}

TEST(half_made_bootstrap_is_redone)
{
  struct key *k = new_key();
  char p[4096];
  snprintf(p, sizeof p, "%s/fs", test_tmpdir());
  CHECK_OK(mkdir(p, 0700));
  path_of("", p, sizeof p);
  CHECK_OK(mkdir(p, 0700));
  path_of("log", p, sizeof p);
  int fd = open(p, O_WRONLY | O_CREAT, 0644);
  CHECK(fd >= 0);
  CHECK_INT(write(fd, "junk", 4), ==, 4);
  close(fd);
  struct fs *fs = NULL;
  /* No meta: not a filesystem yet, for readers and writers. */
  CHECK_INT(fs_open(test_tmpdir(), "t", false, &fs), ==, -ENOENT);
  CHECK_INT(fs_open(test_tmpdir(), "t", true, &fs), ==, -ENOENT);
  CHECK_OK(fs_create(test_tmpdir(), "t", k, "x:1\n", 4, &fs));
  CHECK_OK(fs_close(fs));
  CHECK_OK(fs_open(test_tmpdir(), "t", false, &fs));
  check_content(fs, "/.cluster", "x:1\n", 4);
  CHECK_OK(fs_close(fs));
  key_free(k);
}

TEST(many_entries_checkpoint_on_close)
{
  /* Past FS_CHECKPOINT_EVERY records a writer leaves a checkpoint, so the
   * next open replays only what came after it. */
  struct key *k = new_key();
  struct fs *fs = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", k, NULL, 0, &fs));
  CHECK_OK(fs_mkdir(fs, k, "/d", NULL));
  for (int i = 0; i < 1100; i++) {
    char path[32];
    snprintf(path, sizeof path, "/d/f%d", i);
    put_str(fs, k, path, "x");
  }
  CHECK_OK(fs_close(fs));
  uint64_t ckpt = 0, tail = 0;
  CHECK_OK(fs_open(test_tmpdir(), "t", true, &fs));
  fs_open_stats(fs, &ckpt, &tail);
  CHECK_INT(ckpt, >=, 1100);
  CHECK_INT(tail, ==, 0);
  put_str(fs, k, "/d/last", "y");
  CHECK_OK(fs_close(fs));
  CHECK_OK(fs_open(test_tmpdir(), "t", false, &fs));
  fs_open_stats(fs, &ckpt, &tail);
  CHECK_INT(tail, ==, 1);
  check_content(fs, "/d/last", "y", 1);
  check_content(fs, "/d/f1099", "x", 1);
  CHECK_OK(fs_close(fs));
  key_free(k);
}

#include <signal.h>
#include <sys/wait.h>

/*
 * A writer killed at random points (during puts, commits and checkpoint
 * saves): the filesystem reopens, for a writer and a reader, and every file
 * whose commit returned is there with its content.
 */
TEST(killed_writer_loses_nothing_acknowledged)
{
  struct key *k = new_key();
  struct fs *fs = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", k, NULL, 0, &fs));
  CHECK_OK(fs_close(fs));
  int acked_total = 0;
  for (int round = 0; round < 30; round++) {
    int pfd[2];
    CHECK_OK(pipe(pfd));
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
      close(pfd[0]);
      struct fs *w = NULL;
      if (fs_open(test_tmpdir(), "t", true, &w) < 0)
        _exit(2);
      for (int i = 0;; i++) {
        char path[64], text[64];
        snprintf(path, sizeof path, "/r%d-%d", round, i);
        snprintf(text, sizeof text, "round %d file %d", round, i);
        if (fs_put(w, k, path, text, strlen(text), NULL) < 0 || fs_commit(w) < 0)
          _exit(3);
        if (write(pfd[1], &i, sizeof i) != sizeof i)
          _exit(4);
        if (i % 16 == 15 && fs_checkpoint(w) < 0)
          _exit(5);
      }
    }
    close(pfd[1]);
    usleep((useconds_t)(20000 + test_rand() % 150000));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK_MSG(WIFSIGNALED(status), "the writer exited early: %d", WEXITSTATUS(status));
    int last = -1, i;
    while (read(pfd[0], &i, sizeof i) == sizeof i)
      last = i;
    close(pfd[0]);
    acked_total += last + 1;

    for (int mode = 0; mode < 2; mode++) {
      CHECK_OK(fs_open(test_tmpdir(), "t", mode == 1, &fs));
      for (int j = 0; j <= last; j++) {
        char path[64], text[64];
        snprintf(path, sizeof path, "/r%d-%d", round, j);
        snprintf(text, sizeof text, "round %d file %d", round, j);
        check_content(fs, path, text, strlen(text));
      }
      CHECK_OK(fs_close(fs));
    }
  }
  fprintf(stderr, "# %d acknowledged files over 30 kills\n", acked_total);
  CHECK_INT(acked_total, >, 0);
  key_free(k);
}

/* Hostile bytes through fs_submit_raw: every mutation of a valid entry is
 * refused with a reason, and neither the view nor the log changes. */
TEST(hostile_raw_entries_change_nothing)
{
  struct key *k = new_key();
  struct fs *fs = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", k, NULL, 0, &fs));
  CHECK_OK(fs_mkdir(fs, k, "/d", NULL));
  CHECK_OK(fs_commit(fs));
  struct entry e;
  memset(&e, 0, sizeof e);
  e.action = ENTRY_WRITE;
  e.dir = *fs_root(fs);
  strcpy(e.name, "f");
  e.name_len = 1;
  e.mode = 0644;
  e.content_kind = ENTRY_CONTENT_INLINE;
  memcpy(e.content, "hello", 5);
  e.content_len = 5;
  e.size = 5;
  CHECK_OK(entry_sign(&e, k));
  uint8_t good[ENTRY_MAX_SIZE];
  int n = entry_encode(&e, good, sizeof good);
  CHECK_INT(n, >, 0);
  char *before = dump(fs);
  off_t size = log_records_end();
  for (int i = 0; i < 2000; i++) {
    uint8_t buf[ENTRY_MAX_SIZE + 16];
    size_t len = (size_t)n;
    memcpy(buf, good, len);
    int flips = 1 + (int)(test_rand() % 4);
    for (int f = 0; f < flips; f++)
      buf[test_rand() % len] ^= (uint8_t)(1u << (test_rand() % 8));
    if (test_rand() % 8 == 0)
      len = test_rand() % (len + 16);
    if (len == (size_t)n && memcmp(buf, good, len) == 0)
      continue;
    const char *reason = NULL;
    int r = fs_submit_raw(fs, buf, len, &reason);
    CHECK_MSG(r < 0, "mutation %d accepted", i);
    CHECK(reason != NULL);
  }
  CHECK_OK(fs_commit(fs));
  char *after = dump(fs);
  CHECK(strcmp(before, after) == 0);
  CHECK_INT(log_records_end(), ==, size);
  /* The untouched entry still goes in. */
  CHECK_OK(fs_submit_raw(fs, good, (size_t)n, NULL));
  CHECK_OK(fs_close(fs));
  free(before);
  free(after);
  key_free(k);
}

/* A checkpoint whose offset is no record boundary is not trusted by a writer. */
TEST(checkpoint_off_a_record_boundary)
{
  struct key *k = new_key();
  struct fs *fs = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", k, NULL, 0, &fs));
  put_str(fs, k, "/a", "one");
  CHECK_OK(fs_commit(fs));
  /* A checkpoint of the current view, claiming to cover 3 bytes less than it does. */
  char p[4096];
  path_of("view.ckpt", p, sizeof p);
  uint64_t end = (uint64_t)log_records_end();
  CHECK_OK(view_checkpoint_save(fs_view(fs), p, end - 3));
  put_str(fs, k, "/b", "two");
  char *want = dump(fs);
  CHECK_OK(fs_close(fs));
  CHECK_OK(fs_open(test_tmpdir(), "t", true, &fs));
  uint64_t ckpt = 1, tail = 0;
  fs_open_stats(fs, &ckpt, &tail);
  CHECK_INT(ckpt, ==, 0); /* fell back to a full replay */
  char *got = dump(fs);
  CHECK(strcmp(want, got) == 0);
  check_content(fs, "/b", "two", 3);
  CHECK_OK(fs_close(fs));
  free(want);
  free(got);
  key_free(k);
}

/* ---- forwarding through the owner (the control socket's two ends) ---- */

static int direct_send(void *arg, const uint8_t *req, size_t len, uint8_t *resp, size_t cap)
{
  return fs_ctl_handle(arg, req, len, resp, cap);
}

static int sync_calls;
static int count_sync(void *arg)
{
  (void)arg;
  sync_calls++;
  return sync_calls > 1 ? -EIO : 0;
}

TEST(sync_request_runs_the_owners_hook)
{
  struct key *k = new_key();
  struct fs *owner = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", k, NULL, 0, &owner));
  char reason[256];
  CHECK_OK(fs_ctl_sync(direct_send, owner, reason, sizeof reason)); /* no hook: just commits */
  fs_set_ctl_sync(owner, count_sync, NULL);
  put_str(owner, k, "/held", "in memory"); /* submitted, not yet committed */
  off_t before = log_records_end();
  CHECK_OK(fs_ctl_sync(direct_send, owner, reason, sizeof reason));
  CHECK_INT(sync_calls, ==, 1);
  CHECK_INT(log_records_end(), >, before); /* the answer came after the commit */
  CHECK_INT(fs_ctl_sync(direct_send, owner, reason, sizeof reason), ==, -EIO);
  CHECK(reason[0] != '\0');
  CHECK_OK(fs_close(owner));
  key_free(k);
}

TEST(forwarded_writes_land_in_the_owner)
{
  struct key *k = new_key();
  struct fs *owner = NULL, *client = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", k, NULL, 0, &owner));
  CHECK_OK(fs_commit(owner));
  CHECK_OK(fs_open(test_tmpdir(), "t", false, &client));
  CHECK_INT(fs_set_forward(owner, direct_send, owner), ==, -EINVAL);
  CHECK_OK(fs_set_forward(client, direct_send, owner));

  size_t big = 1 << 20, huge = 5 << 20; /* blocks, and a block list */
  uint8_t *b1 = test_random_bytes(big), *b2 = test_random_bytes(huge);
  CHECK_OK(fs_mkdir(client, k, "/d", NULL));
  put_str(client, k, "/d/small", "small");
  CHECK_OK(fs_put(client, k, "/d/big", b1, big, NULL));
  CHECK_OK(fs_put(client, k, "/d/huge", b2, huge, NULL));
  CHECK_OK(fs_mv(client, k, "/d/small", "/d/moved", NULL));
  CHECK_OK(fs_commit(client));
  CHECK(fs_commit_reason(client) == NULL);

  /* The owner has it all, applied and durable. */
  check_content(owner, "/d/moved", "small", 5);
  check_content(owner, "/d/big", b1, big);
  check_content(owner, "/d/huge", b2, huge);
  CHECK_OK(fs_close(client));
  CHECK_OK(fs_close(owner));
  CHECK_OK(fs_open(test_tmpdir(), "t", false, &client));
  check_content(client, "/d/huge", b2, huge);
  CHECK_OK(fs_close(client));
  free(b1);
  free(b2);
  key_free(k);
}

static int hook_calls;
static void count_hook(void *arg, struct view *v)
{
  (void)arg;
  CHECK(v != NULL);
  hook_calls++;
}

TEST(forwarded_refusals_change_nothing)
{
  struct key *root = new_key(), *bob = new_key();
  struct fs *owner = NULL, *client = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", root, NULL, 0, &owner));
  CHECK_OK(fs_mkdir(owner, root, "/team", NULL));
  CHECK_OK(fs_commit(owner));
  char *before = dump(owner);

  /* A key without grant fails before anything is sent. */
  CHECK_OK(fs_open(test_tmpdir(), "t", false, &client));
  CHECK_OK(fs_set_forward(client, direct_send, owner));
  CHECK_INT(fs_put(client, bob, "/team/x", "x", 1, NULL), ==, -BFS_ENOGRANT);
  CHECK_OK(fs_commit(client));
  CHECK_OK(fs_close(client));

  /* Hostile frames: each gets a negative answer, nothing changes. */
  uint8_t resp[FS_CTL_RESP_MAX];
  char reason[256];
  int status = 0;
  for (int i = 0; i < 500; i++) {
    uint8_t req[300];
    size_t len = test_rand() % sizeof req;
    for (size_t j = 0; j < len; j++)
      req[j] = (uint8_t)test_rand();
    if (len >= 6 && i % 2) {
      memcpy(req, "BFSC\x01", 5);
      req[5] = (uint8_t)(1 + test_rand() % 3);
    }
    int n = fs_ctl_handle(owner, req, len, resp, sizeof resp);
    CHECK_INT(n, >, 0);
    CHECK_OK(fs_ctl_response(resp, (size_t)n, &status, reason, sizeof reason));
    CHECK_INT(status, <, 0);
  }
  /* A well-formed frame carrying a forged entry. */
  struct entry e;
  memset(&e, 0, sizeof e);
  e.action = ENTRY_MKDIR;
  e.dir = *fs_root(owner);
  strcpy(e.name, "evil");
  e.name_len = 4;
  CHECK_OK(entry_sign(&e, root));
  uint8_t req[CTL_TEST_MAX];
  memcpy(req, "BFSC\x01\x02\x01\x00\x00\x00", 10);
  int el = entry_encode(&e, req + 12, sizeof req - 12);
  CHECK_INT(el, >, 0);
  req[10] = (uint8_t)el;
  req[11] = (uint8_t)(el >> 8);
  req[12 + el - 1] ^= 1;
  int n = fs_ctl_handle(owner, req, 12 + (size_t)el, resp, sizeof resp);
  CHECK_OK(fs_ctl_response(resp, (size_t)n, &status, reason, sizeof reason));
  CHECK_INT(status, <, 0);
  CHECK(strstr(reason, "signature") != NULL);
  /* The same frame, intact, goes in. */
  req[12 + el - 1] ^= 1;
  n = fs_ctl_handle(owner, req, 12 + (size_t)el, resp, sizeof resp);
  CHECK_OK(fs_ctl_response(resp, (size_t)n, &status, reason, sizeof reason));
  CHECK_INT(status, ==, 0);
  struct fs_stat st;
  CHECK_OK(fs_stat(owner, "/evil", &st));

  /* bob's entry, signed and well-formed, is refused by the owner (no grant). */
  memset(&e, 0, sizeof e);
  e.action = ENTRY_MKDIR;
  e.dir = *fs_root(owner);
  strcpy(e.name, "bobs");
  e.name_len = 4;
  CHECK_OK(entry_sign(&e, bob));
  el = entry_encode(&e, req + 12, sizeof req - 12);
  req[10] = (uint8_t)el;
  req[11] = (uint8_t)(el >> 8);
  n = fs_ctl_handle(owner, req, 12 + (size_t)el, resp, sizeof resp);
  CHECK_OK(fs_ctl_response(resp, (size_t)n, &status, reason, sizeof reason));
  CHECK_INT(status, ==, -BFS_ENOGRANT);
  CHECK_INT(fs_stat(owner, "/bobs", &st), ==, -ENOENT);
  /* The refused entry left the owner's view again: it equals the log's. */
  CHECK_INT(hook_calls, ==, 0);
  fs_set_view_hook(owner, count_hook, NULL);
  CHECK_INT(fs_submit(owner, &e, true, NULL), ==, -BFS_ENOGRANT);
  CHECK_INT(hook_calls, ==, 1);
  CHECK_INT(view_entry_status(fs_view(owner), &e.id), ==, -ENOENT);
  char *live = dump(owner);
  struct fs *fresh = NULL;
  CHECK_OK(fs_open(test_tmpdir(), "t", false, &fresh));
  char *logged = dump(fresh);
  CHECK_OK(fs_close(fresh));
  CHECK(strcmp(live, logged) == 0);
  free(live);
  free(logged);
  CHECK_OK(fs_checkpoint(owner)); /* not tainted */
  CHECK_OK(fs_close(owner));
  free(before);
  key_free(root);
  key_free(bob);
}

#include <sys/socket.h>
#include <sys/un.h>

static int read_full(int fd, void *buf, size_t len)
{
  uint8_t *p = buf;
  while (len) {
    ssize_t n = read(fd, p, len);
    if (n <= 0)
      return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* A minimal owner: holds the filesystem and answers frames on DIR/ctl, one
 * connection at a time, as the daemon's control socket does. */
static void fake_daemon(int ready_fd)
{
  struct fs *fs = NULL;
  if (fs_open(test_tmpdir(), "t", true, &fs) < 0)
    _exit(2);
  char dir[4096];
  path_of("", dir, sizeof dir);
  if (chdir(dir) < 0)
    _exit(3);
  int ls = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  strcpy(sa.sun_path, "ctl");
  unlink("ctl");
  if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 4) < 0)
    _exit(4);
  if (write(ready_fd, "x", 1) != 1)
    _exit(5);
  uint8_t *req = malloc(FS_CTL_FRAME_MAX);
  for (;;) {
    int c = accept(ls, NULL, NULL);
    if (c < 0)
      continue;
    uint8_t hdr[4];
    while (read_full(c, hdr, 4) == 0) {
      size_t len = (size_t)hdr[0] | (size_t)hdr[1] << 8 | (size_t)hdr[2] << 16 | (size_t)hdr[3] << 24;
      if (len > FS_CTL_FRAME_MAX || read_full(c, req, len) < 0)
        break;
      uint8_t resp[FS_CTL_RESP_MAX + 4];
      int n = fs_ctl_handle(fs, req, len, resp + 4, FS_CTL_RESP_MAX);
      if (n < 0)
        break;
      resp[0] = (uint8_t)n;
      resp[1] = (uint8_t)(n >> 8);
      resp[2] = resp[3] = 0;
      if (write(c, resp, 4 + (size_t)n) != 4 + n)
        break;
    }
    close(c);
  }
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
  char cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  int r = system(cmd);
  return r == -1 ? -1 : WEXITSTATUS(r);
}

TEST(cli_writes_through_the_control_socket)
{
  const char *basefs = getenv("BASEFS");
  if (!basefs || access(basefs, X_OK) != 0) {
    fprintf(stderr, "# skipped: BASEFS is not set to the basefs binary\n");
    return;
  }
  const char *home = test_tmpdir();
  CHECK_INT(sh("BASEFS_HOME=%s %s bootstrap t 2>/dev/null", home, basefs), ==, 0);
  CHECK_INT(sh("BASEFS_HOME=%s %s genkey --key %s/bob >/dev/null 2>&1", home, basefs, home), ==, 0);
  int pfd[2];
  CHECK_OK(pipe(pfd));
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    close(pfd[0]);
    fake_daemon(pfd[1]);
    _exit(0);
  }
  close(pfd[1]);
  char c;
  CHECK_INT(read(pfd[0], &c, 1), ==, 1);
  close(pfd[0]);

  /* Every write command works while the owner holds the lock. */
  int rc = sh("cd %s && head -c 3000000 /dev/urandom > big && echo hello > small && "
              "BASEFS_HOME=%s %s mkdir t /d && BASEFS_HOME=%s %s put t /d/small < small && "
              "BASEFS_HOME=%s %s put t /d/big < big && BASEFS_HOME=%s %s mv t /d/small /d/s2 && "
              "BASEFS_HOME=%s %s grant t /d bob.pub && "
              "BASEFS_HOME=%s %s put --key bob t /d/bobs < small && "
              "BASEFS_HOME=%s %s cat t /d/big | cmp - big && "
              "BASEFS_HOME=%s %s cat t /d/s2 | cmp - small && "
              "mkdir -p tree/sub && cp big tree/sub/big2 && echo x > tree/x && "
              "BASEFS_HOME=%s %s import t tree /d",
              home, home, basefs, home, basefs, home, basefs, home, basefs, home, basefs, home, basefs,
              home, basefs, home, basefs, home, basefs);
  CHECK_INT(rc, ==, 0);
  /* A refused write: one line, non-zero, nothing changes. */
  rc = sh("cd %s && BASEFS_HOME=%s %s put --key bob t /outside < small 2> err; test $? -ne 0 && "
          "test $(wc -l < err) -eq 1 && grep -q grant err",
          home, home, basefs);
  CHECK_INT(rc, ==, 0);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);

  /* What the commands were told is durable is there after the owner died. */
  struct fs *fs = NULL;
  struct fs_stat st;
  CHECK_OK(fs_open(home, "t", true, &fs));
  check_content(fs, "/d/s2", "hello\n", 6);
  check_content(fs, "/d/bobs", "hello\n", 6);
  check_content(fs, "/d/x", "x\n", 2);
  CHECK_OK(fs_stat(fs, "/d/sub/big2", &st));
  CHECK_INT(st.size, ==, 3000000);
  CHECK_INT(fs_stat(fs, "/outside", &st), ==, -ENOENT);
  CHECK_OK(fs_stat(fs, "/d/big", &st));
  CHECK_INT(st.size, ==, 3000000);
  CHECK_OK(fs_close(fs));
}

/* Two versions with the same parent (as two peers make them): one wins, the
 * other is kept, marked a loser, and readable. */
TEST(conflicting_versions_are_marked_and_kept)
{
  struct key *k = new_key();
  struct fs *fs = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", k, NULL, 0, &fs));
  put_str(fs, k, "/f", "base");
  struct fs_version *v = NULL;
  size_t n = 0;
  CHECK_OK(fs_versions(fs, "/f", &v, &n));
  CHECK_INT(n, ==, 1);
  hash_t base = v[0].id;
  free(v);
  hash_t ids[2];
  const char *texts[2] = {"left", "right"};
  for (int i = 0; i < 2; i++) {
    struct entry e;
    memset(&e, 0, sizeof e);
    e.action = ENTRY_WRITE;
    e.parent = base;
    e.mode = 0644;
    e.mtime_ns = 1000 + (uint64_t)i;
    e.content_kind = ENTRY_CONTENT_INLINE;
    e.content_len = (uint16_t)strlen(texts[i]);
    e.size = e.content_len;
    memcpy(e.content, texts[i], e.content_len);
    CHECK_OK(entry_sign(&e, k));
    ids[i] = e.id;
    CHECK_OK(fs_submit(fs, &e, true, NULL));
  }
  CHECK_OK(fs_versions(fs, "/f", &v, &n));
  CHECK_INT(n, ==, 3);
  int current = 0, losers = 0;
  hash_t loser = {{0}};
  for (size_t i = 0; i < n; i++) {
    current += v[i].current;
    if (v[i].loser) {
      losers++;
      loser = v[i].id;
    }
  }
  free(v);
  CHECK_INT(current, ==, 1);
  CHECK_INT(losers, ==, 1);
  int li = hash_eq(&loser, &ids[0]) ? 0 : 1;
  CHECK(hash_eq(&loser, &ids[li]));
  check_content(fs, "/f", texts[1 - li], strlen(texts[1 - li]));
  uint8_t *data = NULL;
  size_t len = 0;
  CHECK_OK(fs_read_version(fs, &loser, &data, &len));
  CHECK_INT(len, ==, strlen(texts[li]));
  CHECK_MEM(data, texts[li], len);
  free(data);
  /* Listed under /.basefs/conflicts, and revertible. */
  char **names = NULL;
  size_t count = 0;
  CHECK_OK(fs_readdir(fs, "/.basefs/conflicts", &names, &count));
  CHECK_INT(count, ==, 1);
  fs_names_free(names, count);
  char hex[HASH_HEX_SIZE];
  hash_to_hex(&loser, hex);
  CHECK_OK(fs_revert(fs, k, "/f", hex, NULL));
  check_content(fs, "/f", texts[li], strlen(texts[li]));
  CHECK_OK(fs_close(fs));
  key_free(k);
}

TEST(put_from_a_file_descriptor)
{
  struct key *k = new_key();
  struct fs *fs = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", k, NULL, 0, &fs));
  size_t sizes[] = {0, 10, 3000, 3 << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char p[4096];
    snprintf(p, sizeof p, "%s/src%zu", test_tmpdir(), i);
    uint8_t *d = test_random_bytes(sizes[i] ? sizes[i] : 1);
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK_INT(write(fd, d, sizes[i]), ==, (ssize_t)sizes[i]);
    const char *reason = NULL;
    int r = fs_put_fd(fs, k, "/f", fd, &reason);
    CHECK_MSG(r == 0, "put_fd %zu: %d %s", sizes[i], r, reason ? reason : "");
    close(fd);
    check_content(fs, "/f", d, sizes[i]);
    free(d);
  }
  int pfd[2];
  CHECK_OK(pipe(pfd));
  CHECK_INT(fs_put_fd(fs, k, "/g", pfd[0], NULL), ==, -EINVAL);
  close(pfd[0]);
  close(pfd[1]);
  CHECK_OK(fs_close(fs));
  key_free(k);
}

#include <sys/mount.h>

/* A full disk: the failed commit's entries leave the view, a later commit
 * does not write them, and what was acknowledged stays. */
TEST(full_disk_commit_changes_nothing)
{
  const char *mnt = test_small_tmpfs("1m");
  if (!mnt)
    return;
  struct key *k = new_key();
  struct fs *fs = NULL;
  CHECK_OK(fs_create(mnt, "t", k, NULL, 0, &fs));
  put_str(fs, k, "/kept", "acknowledged");
  CHECK_OK(fs_commit(fs));
  /* Fill the disk to the last byte, then a batch of small (inline) files. */
  char spare[4200];
  snprintf(spare, sizeof spare, "%s/spare", mnt);
  int fd = open(spare, O_WRONLY | O_CREAT, 0644);
  CHECK(fd >= 0);
  uint8_t zeros[4096] = {0};
  while (write(fd, zeros, sizeof zeros) > 0)
    ;
  while (write(fd, zeros, 1) > 0)
    ;
  close(fd);
  for (int i = 0; i < 50; i++) {
    char p[32];
    snprintf(p, sizeof p, "/f%d", i);
    put_str(fs, k, p, "a small file that fits its entry");
  }
  CHECK_INT(fs_commit(fs), ==, -ENOSPC);
  const char *path = "/f7";
  struct fs_stat st;
  CHECK_INT(fs_stat(fs, path, &st), ==, -ENOENT); /* gone from the view */
  CHECK_OK(unlink(spare));
  put_str(fs, k, "/after", "space again");
  CHECK_OK(fs_commit(fs));
  CHECK_INT(fs_stat(fs, path, &st), ==, -ENOENT); /* and never written later */
  CHECK_OK(fs_close(fs));
  CHECK_OK(fs_open(mnt, "t", false, &fs));
  check_content(fs, "/kept", "acknowledged", 12);
  check_content(fs, "/after", "space again", 11);
  CHECK_INT(fs_stat(fs, path, &st), ==, -ENOENT);
  CHECK_OK(fs_close(fs));
  umount(mnt);
  key_free(k);
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLOW_SIGNING 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SLOW_SIGNING 1
#endif

/* N small puts, committed every 1000, with a directory where the
 * checkpoint's temporary file goes (so every checkpoint fails); then the
 * last one reads back after a reopen. */
static void puts_with_checkpoints_failing(int n)
{
  struct key *k = new_key();
  struct fs *fs = NULL;
  CHECK_OK(fs_create(test_tmpdir(), "t", k, NULL, 0, &fs));
  char p[4096];
  path_of("view.ckpt.tmp", p, sizeof p);
  CHECK_OK(mkdir(p, 0700));
  const char *reason;
  for (int i = 0; i < n; i++) {
    char path[64];
    snprintf(path, sizeof path, "/f%d", i % 4);
    CHECK_OK(fs_put(fs, k, path, &i, sizeof i, &reason));
    if (i % 1000 == 999)
      CHECK_OK(fs_commit(fs));
  }
  CHECK_OK(fs_close(fs));
  CHECK_OK(fs_open(test_tmpdir(), "t", false, &fs));
  uint8_t *data;
  size_t len;
  char path[64];
  int last = n - 1;
  snprintf(path, sizeof path, "/f%d", last % 4);
  CHECK_OK(fs_read(fs, path, &data, &len));
  CHECK_INT(len, ==, sizeof last);
  CHECK_MEM(data, &last, sizeof last);
  free(data);
  CHECK_OK(fs_close(fs));
  key_free(k);
}

/* A checkpoint that cannot be written fails no close: the entries are
 * durable by then (the close checkpoints past 1024 records). */
TEST(failed_checkpoint_fails_no_close)
{
  puts_with_checkpoints_failing(1500);
}

/* Nor a commit, nor the commits after it (a long-lived writer checkpoints
 * every 65536 records). Minutes of signing under ASan: skipped there. */
TEST(failed_live_checkpoint_fails_no_commit)
{
#ifdef SLOW_SIGNING
  printf("# skipped under the sanitizer (70000 signatures)\n");
#else
  puts_with_checkpoints_failing(70000);
#endif
}
