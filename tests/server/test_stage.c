/* server/stage: recycling of dropped files, written ranges, recovery names. */
#include "server/stage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/test.h"

static hash_t obj_of(unsigned i)
{
  hash_t h;
  memset(&h, 0, sizeof h);
  memcpy(h.bytes, &i, sizeof i);
  h.bytes[31] = 1;
  return h;
}

struct fill {
  const uint8_t *data;
  size_t len;
  uint64_t got_len; /* the recycled file's length FILL was given */
};

static int fill_fn(void *arg, int fd, uint64_t len, uint64_t *size)
{
  struct fill *f = arg;
  f->got_len = len;
  if (f->len && pwrite(fd, f->data, f->len, 0) != (ssize_t)f->len)
    return -EIO;
  if (len > f->len && ftruncate(fd, (off_t)f->len) < 0)
    return -errno;
  *size = f->len;
  return 0;
}

static int count_files(const char *dir, char kind)
{
  DIR *d = opendir(dir);
  CHECK(d != NULL);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    size_t l = strlen(de->d_name);
    if (l > 2 && de->d_name[l - 2] == '.' && de->d_name[l - 1] == kind)
      n++;
  }
  closedir(d);
  return n;
}

static const char *stage_dir(void)
{
  static char dir[4096];
  snprintf(dir, sizeof dir, "%s/stage", test_tmpdir());
  return dir;
}

TEST(recycled_file_holds_only_the_new_content)
{
  struct stage *s;
  CHECK_OK(stage_open(stage_dir(), &s));
  uint8_t big[8192], small[100];
  memset(big, 'A', sizeof big);
  memset(small, 'b', sizeof small);
  hash_t a = obj_of(1), b = obj_of(2), zero;
  memset(&zero, 0, sizeof zero);
  struct fill fa = {big, sizeof big, 99};
  struct stage_file *f;
  CHECK_OK(stage_create(s, &a, &zero, 0, fill_fn, &fa, 1, &f));
  CHECK_INT(fa.got_len, ==, 0);
  CHECK_INT(stage_size(f), ==, sizeof big);
  struct stat st;
  CHECK_OK(fstat(stage_fd(f), &st));
  ino_t ino = st.st_ino;
  stage_drop(s, f);
  CHECK(stage_get(s, &a) == NULL);
  CHECK_INT(stage_count(s), ==, 0);
  /* The next object gets the same inode, renamed, with only its bytes. */
  struct fill fb = {small, sizeof small, 99};
  CHECK_OK(stage_create(s, &b, &zero, 0, fill_fn, &fb, 2, &f));
  CHECK_INT(fb.got_len, ==, sizeof big);
  CHECK_OK(fstat(stage_fd(f), &st));
  CHECK_INT(st.st_ino, ==, ino);
  CHECK_INT(st.st_size, ==, sizeof small);
  CHECK(stage_get(s, &b) == f);
  uint8_t buf[200];
  CHECK_INT(stage_read(f, 0, buf, sizeof buf), ==, (ssize_t)sizeof small);
  CHECK_MEM(buf, small, sizeof small);
  CHECK_INT(count_files(stage_dir(), 'u'), ==, 1);
  /* A durable file dropped (sealed) is recycled under a .u name. */
  CHECK_OK(stage_write(s, f, 0, "xyz", 3, true, 3));
  CHECK_INT(count_files(stage_dir(), 's'), ==, 1);
  stage_drop(s, f);
  CHECK_INT(count_files(stage_dir(), 's'), ==, 0);
  CHECK_INT(count_files(stage_dir(), 'u'), ==, 1);
  /* A NULL fill on a recycled file empties it. */
  CHECK_OK(stage_create(s, &a, &zero, 0, NULL, NULL, 4, &f));
  CHECK_INT(stage_size(f), ==, 0);
  CHECK_OK(fstat(stage_fd(f), &st));
  CHECK_INT(st.st_size, ==, 0);
  CHECK_OK(stage_write(s, f, 0, "unstable junk", 13, false, 5));
  stage_free(s);
  /* A restart stages nothing from a .u; its file is recycled, its bytes
   * never shown. */
  CHECK_OK(stage_open(stage_dir(), &s));
  CHECK_INT(stage_count(s), ==, 0);
  CHECK(stage_get(s, &a) == NULL);
  CHECK_INT(count_files(stage_dir(), 'u'), ==, 1);
  struct fill fc = {small, 10, 99};
  CHECK_OK(stage_create(s, &b, &zero, 0, fill_fn, &fc, 6, &f));
  CHECK_INT(count_files(stage_dir(), 'u'), ==, 1);
  CHECK_OK(fstat(stage_fd(f), &st));
  CHECK_INT(st.st_size, ==, 10);
  CHECK_INT(stage_read(f, 0, buf, sizeof buf), ==, 10);
  CHECK_MEM(buf, small, 10);
  stage_free(s);
}

TEST(pool_survives_restart_and_durable_files_are_recovered)
{
  struct stage *s;
  CHECK_OK(stage_open(stage_dir(), &s));
  hash_t zero;
  memset(&zero, 0, sizeof zero);
  struct stage_file *f[5];
  for (unsigned i = 0; i < 5; i++) {
    hash_t o = obj_of(10 + i);
    CHECK_OK(stage_create(s, &o, &zero, 0, NULL, NULL, 1, &f[i]));
  }
  CHECK_OK(stage_write(s, f[4], 0, "durable", 7, true, 2));
  for (unsigned i = 0; i < 4; i++)
    stage_drop(s, f[i]);
  CHECK_INT(count_files(stage_dir(), 'u'), ==, 4); /* pooled */
  stage_free(s);
  CHECK_INT(count_files(stage_dir(), 'u'), ==, 4);
  CHECK_INT(count_files(stage_dir(), 's'), ==, 1);
  CHECK_OK(stage_open(stage_dir(), &s));
  CHECK_INT(stage_count(s), ==, 1);
  /* The pooled files serve new objects: no file is created. */
  struct stage_file *n[4];
  for (unsigned i = 0; i < 4; i++) {
    hash_t o = obj_of(100 + i);
    uint8_t junk[5] = {1, 2, 3, 4, 5};
    struct fill fl = {junk, i, 0};
    CHECK_OK(stage_create(s, &o, &zero, 0, fill_fn, &fl, 1, &n[i]));
    uint8_t back[8];
    CHECK_INT(stage_read(n[i], 0, back, sizeof back), ==, (ssize_t)i);
    struct stat st;
    CHECK_OK(fstat(stage_fd(n[i]), &st));
    CHECK_INT(st.st_size, ==, i);
  }
  CHECK_INT(count_files(stage_dir(), 'u'), ==, 4);
  hash_t o4 = obj_of(14);
  struct stage_file *g = stage_get(s, &o4);
  CHECK(g != NULL && stage_dirty(g));
  uint8_t buf[16];
  CHECK_INT(stage_read(g, 0, buf, sizeof buf), ==, 7);
  CHECK_MEM(buf, "durable", 7);
  stage_free(s);
}

TEST(written_ranges_merge_and_stay_bounded)
{
  struct stage *s;
  CHECK_OK(stage_open(stage_dir(), &s));
  hash_t o = obj_of(1), zero;
  memset(&zero, 0, sizeof zero);
  static uint8_t base[1 << 20];
  struct fill fl = {base, sizeof base, 0};
  struct stage_file *f;
  CHECK_OK(stage_create(s, &o, &zero, 0, fill_fn, &fl, 1, &f));
  struct content_base cb;
  stage_base_content(f, &cb);
  CHECK_INT(cb.n, ==, 0);
  CHECK_INT(cb.clean_end, ==, sizeof base);
  CHECK(cb.list == NULL);
  uint8_t x[64] = {0};
  CHECK_OK(stage_write(s, f, 100, x, 10, false, 2));
  CHECK_OK(stage_write(s, f, 50, x, 10, false, 3));
  CHECK_OK(stage_write(s, f, 110, x, 5, false, 4)); /* touches [100,110) */
  CHECK_OK(stage_write(s, f, 55, x, 10, false, 5));  /* overlaps [50,60) */
  stage_base_content(f, &cb);
  CHECK_INT(cb.n, ==, 2);
  CHECK_INT(cb.ranges[0].off, ==, 50);
  CHECK_INT(cb.ranges[0].end, ==, 65);
  CHECK_INT(cb.ranges[1].off, ==, 100);
  CHECK_INT(cb.ranges[1].end, ==, 115);
  CHECK_OK(stage_write(s, f, 40, x, 10, false, 6)); /* touches [50,65): merged */
  CHECK_OK(stage_write(s, f, 60, x, 10, false, 7)); /* [60,70) */
  CHECK_OK(stage_write(s, f, 64, x, 40, false, 8)); /* [64,104): joins both */
  stage_base_content(f, &cb);
  CHECK_INT(cb.n, ==, 1);
  CHECK_INT(cb.ranges[0].off, ==, 40);
  CHECK_INT(cb.ranges[0].end, ==, 115);
  /* Many scattered writes: bounded, sorted, disjoint, covering every write. */
  uint64_t offs[3000];
  for (int i = 0; i < 3000; i++) {
    offs[i] = test_rand() % (sizeof base - 10);
    CHECK_OK(stage_write(s, f, offs[i], x, 3, false, 9));
  }
  stage_base_content(f, &cb);
  CHECK(cb.n <= STAGE_RANGES_MAX);
  for (size_t i = 1; i < cb.n; i++)
    CHECK(cb.ranges[i - 1].end < cb.ranges[i].off);
  for (int i = 0; i < 3000; i++) {
    bool in = false;
    for (size_t k = 0; k < cb.n && !in; k++)
      in = cb.ranges[k].off <= offs[i] && offs[i] + 3 <= cb.ranges[k].end;
    CHECK_MSG(in, "write at %llu not covered", (unsigned long long)offs[i]);
  }
  /* A truncation lowers the clean end; a rebase forgets everything. */
  CHECK_OK(stage_truncate(s, f, 1000, 10));
  stage_base_content(f, &cb);
  CHECK_INT(cb.clean_end, ==, 1000);
  CHECK_OK(stage_truncate(s, f, 5000, 11));
  stage_base_content(f, &cb);
  CHECK_INT(cb.clean_end, ==, 1000);
  struct blocks_list l = {0};
  l.n = 1;
  l.hash = calloc(1, sizeof *l.hash);
  l.size = calloc(1, sizeof *l.size);
  l.size[0] = 5000;
  l.total = 5000;
  hash_t v = obj_of(77);
  CHECK_OK(stage_rebase(s, f, &v, &l));
  CHECK(l.hash == NULL); /* taken over */
  CHECK(!stage_dirty(f));
  stage_base_content(f, &cb);
  CHECK_INT(cb.n, ==, 0);
  CHECK_INT(cb.clean_end, ==, 5000);
  CHECK(cb.list != NULL && cb.list->total == 5000);
  stage_free(s);
}

TEST(sealed_durable_file_is_not_recovered)
{
  struct stage *s;
  CHECK_OK(stage_open(stage_dir(), &s));
  hash_t o = obj_of(5), zero, v = obj_of(6);
  memset(&zero, 0, sizeof zero);
  struct stage_file *f;
  CHECK_OK(stage_create(s, &o, &zero, 0, NULL, NULL, 1, &f));
  CHECK_OK(stage_write(s, f, 0, "acked", 5, true, 2));
  CHECK_INT(count_files(stage_dir(), 's'), ==, 1);
  CHECK_INT(count_files(stage_dir(), 'u'), ==, 0);
  /* Sealed: the data is in the log, the file goes back to its .u name. */
  CHECK_OK(stage_rebase(s, f, &v, NULL));
  CHECK_INT(count_files(stage_dir(), 's'), ==, 0);
  CHECK_INT(count_files(stage_dir(), 'u'), ==, 1);
  /* Written durably again, then a crash: recovered under its object. */
  CHECK_OK(stage_write(s, f, 5, "+more", 5, true, 3));
  CHECK_INT(count_files(stage_dir(), 's'), ==, 1);
  stage_free(s);
  CHECK_OK(stage_open(stage_dir(), &s));
  CHECK_INT(stage_count(s), ==, 1);
  struct stage_file *g = stage_get(s, &o);
  CHECK(g != NULL && stage_dirty(g));
  uint8_t buf[16];
  CHECK_INT(stage_read(g, 0, buf, sizeof buf), ==, 10);
  CHECK_MEM(buf, "acked+more", 10);
  CHECK_OK(stage_rebase(s, g, &v, NULL));
  stage_free(s);
  CHECK_OK(stage_open(stage_dir(), &s));
  CHECK_INT(stage_count(s), ==, 0);
  stage_free(s);
}

/* A FILL that leaves all of its content out (the caller writes it next). */
static int fill_none(void *arg, int fd, uint64_t len, uint64_t *size)
{
  (void)fd;
  (void)len;
  *size = *(const uint64_t *)arg;
  return 0;
}

/* The stage with files of up to 1000 bytes in memory, 2500 together; ZERO
 * the zero hash (a base). */
static struct stage *open_small_memory(hash_t *zero)
{
  struct stage *s;
  CHECK_OK(stage_open(stage_dir(), &s));
  stage_set_memory(s, 1000, 2500);
  memset(zero, 0, sizeof *zero);
  return s;
}

/* What FILE holds, read back whole. */
static void check_holds(struct stage_file *f, const uint8_t *want, size_t len)
{
  uint8_t *buf = malloc(len + 16);
  CHECK(buf != NULL);
  CHECK_INT(stage_size(f), ==, len);
  CHECK_INT(stage_read(f, 0, buf, len + 16), ==, (ssize_t)len);
  CHECK_MEM(buf, want, len);
  free(buf);
}

/* Small files in memory (stage_set_memory): nothing on disk until a file
 * outgrows its limit, the total would pass its own, or it must be durable;
 * then it moves to a .u (or .s) file with its bytes. A restart finds none
 * of what was only in memory. */
TEST(small_files_stage_in_memory_until_they_grow_or_must_be_durable)
{
  hash_t zero;
  struct stage *s = open_small_memory(&zero);
  uint8_t want[2000];
  memcpy(want, test_random_bytes(sizeof want), sizeof want);
  /* In memory: a fill and writes up to the file limit. */
  hash_t a = obj_of(20);
  struct fill fa = {want, 100, 99};
  struct stage_file *f;
  CHECK_OK(stage_create(s, &a, &zero, 100, fill_fn, &fa, 1, &f));
  CHECK(stage_in_memory(f));
  CHECK_INT(fa.got_len, ==, 0);
  CHECK_INT(stage_memory_bytes(s), ==, 100);
  CHECK_OK(stage_write(s, f, 100, want + 100, 900, false, 2));
  CHECK(stage_in_memory(f));
  CHECK_INT(stage_memory_bytes(s), ==, 1000);
  CHECK_INT(count_files(stage_dir(), 'u'), ==, 0);
  check_holds(f, want, 1000);
  /* One byte more: to disk, bytes and all. */
  CHECK_OK(stage_write(s, f, 1000, want + 1000, 1, false, 3));
  CHECK(!stage_in_memory(f));
  CHECK_INT(stage_memory_bytes(s), ==, 0);
  CHECK_INT(count_files(stage_dir(), 'u'), ==, 1);
  check_holds(f, want, 1001);
  /* The total: two files of 1000 fit in 2500, a third goes to disk. */
  hash_t b = obj_of(21), c = obj_of(22), d = obj_of(23);
  struct fill fb = {want, 1000, 99}, fc = {want + 500, 1000, 99}, fd = {want, 10, 99};
  struct stage_file *fbp, *fcp, *fdp;
  CHECK_OK(stage_create(s, &b, &zero, 1000, fill_fn, &fb, 4, &fbp));
  CHECK_OK(stage_create(s, &c, &zero, 1000, fill_fn, &fc, 4, &fcp));
  CHECK_OK(stage_create(s, &d, &zero, 1000, fill_fn, &fd, 4, &fdp));
  CHECK(stage_in_memory(fbp) && stage_in_memory(fcp) && !stage_in_memory(fdp));
  CHECK_INT(stage_memory_bytes(s), ==, 2000);
  /* A truncate past the file limit moves it too (the bytes past the old
   * end read as zeros). */
  CHECK_OK(stage_truncate(s, fbp, 1200, 5));
  CHECK(!stage_in_memory(fbp));
  CHECK_INT(stage_memory_bytes(s), ==, 1000);
  uint8_t grown[1200];
  memcpy(grown, want, 1000);
  memset(grown + 1000, 0, 200);
  check_holds(fbp, grown, 1200);
  /* A SYNC write: durable on disk (.s), recovered after a restart. */
  CHECK_OK(stage_write(s, fcp, 0, "acked", 5, true, 6));
  CHECK(!stage_in_memory(fcp));
  CHECK_INT(count_files(stage_dir(), 's'), ==, 1);
  memcpy(grown, want + 500, 1000);
  memcpy(grown, "acked", 5);
  check_holds(fcp, grown, 1000);
  CHECK_INT(stage_memory_bytes(s), ==, 0);
  /* A dropped memory file leaves nothing behind. */
  hash_t e = obj_of(24);
  struct stage_file *fep;
  CHECK_OK(stage_create(s, &e, &zero, 0, NULL, NULL, 7, &fep));
  CHECK(stage_in_memory(fep));
  CHECK_OK(stage_write(s, fep, 0, "gone", 4, false, 8));
  CHECK_INT(stage_memory_bytes(s), ==, 4);
  int on_disk = count_files(stage_dir(), 'u');
  stage_drop(s, fep);
  CHECK_INT(stage_memory_bytes(s), ==, 0);
  CHECK_INT(count_files(stage_dir(), 'u'), ==, on_disk);
  /* stage_sync of a file in memory. */
  CHECK_OK(stage_create(s, &e, &zero, 0, NULL, NULL, 9, &fep));
  CHECK_OK(stage_write(s, fep, 0, "synced", 6, false, 10));
  CHECK(stage_in_memory(fep));
  CHECK_OK(stage_sync(s, fep));
  CHECK(!stage_in_memory(fep));
  CHECK_INT(count_files(stage_dir(), 's'), ==, 2);
  /* A SYNC write of the very range the fill left out (a client rewriting a
   * whole small file): the file moves to disk before those bytes exist. */
  hash_t h = obj_of(26);
  uint64_t left_out = 30;
  struct stage_file *fhp;
  CHECK_OK(stage_create(s, &h, &zero, 30, fill_none, &left_out, 13, &fhp));
  CHECK(stage_in_memory(fhp));
  CHECK_OK(stage_write(s, fhp, 0, want, 30, true, 14));
  CHECK(!stage_in_memory(fhp));
  check_holds(fhp, want, 30);
  stage_drop(s, fhp);
  /* One more in memory, then a restart: only the durable two come back. */
  hash_t g = obj_of(25);
  struct stage_file *fgp;
  CHECK_OK(stage_create(s, &g, &zero, 0, NULL, NULL, 11, &fgp));
  CHECK_OK(stage_write(s, fgp, 0, "unstable", 8, false, 12));
  CHECK(stage_in_memory(fgp));
  stage_free(s);
  CHECK_OK(stage_open(stage_dir(), &s));
  CHECK_INT(stage_count(s), ==, 2);
  CHECK(stage_get(s, &c) != NULL && stage_get(s, &e) != NULL && stage_get(s, &g) == NULL);
  check_holds(stage_get(s, &e), (const uint8_t *)"synced", 6);
  stage_free(s);
}

/* A FILL that writes bytes, then fails (as fill_from_store does on a
 * damaged block: its size is set, its error returned). */
static int fill_then_fail(void *arg, int fd, uint64_t len, uint64_t *size)
{
  (void)len;
  if (pwrite(fd, arg, 500, 0) != 500)
    return -EIO;
  *size = 500;
  return -EIO;
}

/* A memory file whose fill failed counts for nothing, and its bytes never
 * show in the next file that reuses it (pooled with its real length, which
 * the next FILL is told to cut). */
TEST(failed_fill_in_memory_leaves_no_count_and_no_junk)
{
  hash_t zero;
  struct stage *s = open_small_memory(&zero);
  uint8_t secret[500];
  memset(secret, 0xAB, sizeof secret);
  hash_t a = obj_of(40), b = obj_of(41);
  struct stage_file *f;
  CHECK_INT(stage_create(s, &a, &zero, 500, fill_then_fail, secret, 1, &f), ==, -EIO);
  CHECK_INT(stage_memory_bytes(s), ==, 0);
  CHECK(stage_get(s, &a) == NULL);
  struct fill fb = {(const uint8_t *)"0123456789", 10, 99};
  CHECK_OK(stage_create(s, &b, &zero, 10, fill_fn, &fb, 2, &f));
  CHECK(stage_in_memory(f));
  CHECK_INT(fb.got_len, ==, 500); /* the junk FILL must cut */
  CHECK_INT(stage_memory_bytes(s), ==, 10);
  CHECK_OK(stage_truncate(s, f, 400, 3));
  uint8_t want[400], got[400];
  memset(want, 0, sizeof want);
  memcpy(want, "0123456789", 10);
  CHECK_INT(stage_read(f, 0, got, sizeof got), ==, 400);
  CHECK_MEM(got, want, 400);
  stage_drop(s, f);
  CHECK_INT(stage_memory_bytes(s), ==, 0);
  stage_free(s);
}
