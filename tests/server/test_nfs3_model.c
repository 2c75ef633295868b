/*
 * Differential test: the same random sequence of file operations runs
 * through NFS against basefs and through POSIX system calls against a
 * local directory (the model). Every operation must succeed or fail alike
 * (NFS3ERR_X against errno X), and the two trees must be equal — names,
 * types, sizes, contents, link targets — through NFS while the server runs
 * (staged data included) and through the filesystem (fs_read) after it
 * stopped and sealed.
 */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "tests/server/nfs3_harness.h"

static const char *const NAMES[] = {"a", "b", "c", "d"};
#define NNAMES 4

/* A random path of depth 1..3 from NAMES. */
static void rand_path(char *out, size_t cap)
{
  /* Shallow paths mostly, so that parents exist often. */
  int k = (int)(test_rand() % 20);
  int depth = k < 9 ? 1 : k < 16 ? 2 : 3;
  out[0] = '\0';
  for (int i = 0; i < depth; i++) {
    size_t l = strlen(out);
    snprintf(out + l, cap - l, "/%s", NAMES[test_rand() % NNAMES]);
  }
}

static void split(const char *path, char *dir, char *name)
{
  const char *slash = strrchr(path, '/');
  size_t n = (size_t)(slash - path);
  memcpy(dir, path, n);
  dir[n] = '\0';
  strcpy(name, slash + 1);
}

/* errno of an NFS status (what Linux's client would report). */
static int err_of(int st)
{
  switch (st) {
  case NFS3_OK: return 0;
  case NFS3ERR_NOENT: return ENOENT;
  case NFS3ERR_EXIST: return EEXIST;
  case NFS3ERR_NOTDIR: return ENOTDIR;
  case NFS3ERR_ISDIR: return EISDIR;
  case NFS3ERR_NOTEMPTY: return ENOTEMPTY;
  case NFS3ERR_INVAL: return EINVAL;
  default: return 1000 + st;
  }
}

struct ctx {
  struct srv *s;
  struct cl *c;
  char local[512];
  int ops, ok; /* operations compared, and those that succeeded */
};

/* NFS handle of PATH ("" = root); the NFS status of the walk. */
static int walk(struct ctx *x, const char *path, uint8_t *fh, uint32_t *len)
{
  memcpy(fh, x->s->root, x->s->root_len);
  *len = x->s->root_len;
  char buf[256];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *save = NULL, *p = strtok_r(buf, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
    struct res r;
    c3_lookup(x->c, fh, *len, p, &r);
    if (r.status != NFS3_OK)
      return r.status;
    memcpy(fh, r.fh, r.fh_len);
    *len = r.fh_len;
  }
  return NFS3_OK;
}

/* The same for a path used as a parent directory: like the kernel's
 * resolution, a non-directory there is ENOTDIR before anything else. */
static int walk_dir(struct ctx *x, const char *path, uint8_t *fh, uint32_t *len)
{
  int st = walk(x, path, fh, len);
  if (st != NFS3_OK)
    return st;
  struct res r;
  c3_getattr(x->c, fh, *len, &r);
  return r.status != NFS3_OK ? r.status : r.obj.type == NF3DIR ? NFS3_OK : NFS3ERR_NOTDIR;
}

static void lpath(struct ctx *x, const char *path, char *out)
{
  snprintf(out, 700, "%s%s", x->local, path);
}

/* Does a directory component of PATH (not the last) name a symlink
 * locally? The kernel follows it; NFS's LOOKUP does not (the client
 * resolves links itself): such operations are not comparable. */
static bool through_symlink(struct ctx *x, const char *path)
{
  char buf[700];
  snprintf(buf, sizeof buf, "%s%s", x->local, path);
  size_t base = strlen(x->local);
  for (char *p = buf + base + 1; (p = strchr(p, '/')); p++) {
    *p = '\0';
    struct stat st;
    bool link = lstat(buf, &st) == 0 && S_ISLNK(st.st_mode);
    *p = '/';
    if (link)
      return true;
  }
  return false;
}

/* One random operation on both sides; returns after comparing outcomes. */
static void step(struct ctx *x, int i)
{
  char p[64], q[64], dir[64], name[16], lp[700], lq[700];
  rand_path(p, sizeof p);
  rand_path(q, sizeof q);
  if (through_symlink(x, p) || through_symlink(x, q))
    return;
  lpath(x, p, lp);
  lpath(x, q, lq);
  split(p, dir, name);
  uint8_t dfh[64], fh[64];
  uint32_t dlen, flen;
  struct res r;
  int want = 0, got = 0;
  int op = (int)(test_rand() % 9);
  switch (op) {
  case 0: { /* create exclusive */
    int fd = open(lp, O_CREAT | O_EXCL | O_WRONLY, 0644);
    want = fd < 0 ? errno : 0;
    if (fd >= 0)
      close(fd);
    int st = walk_dir(x, dir, dfh, &dlen);
    if (st == NFS3_OK) {
      sattr3 sa = {0};
      sa.mode.set_it = 1;
      sa.mode.set_mode3_u.mode = 0644;
      c3_create(x->c, dfh, dlen, name, GUARDED, &sa, NULL, &r);
      st = r.status;
    }
    got = err_of(st);
    break;
  }
  case 1: { /* write at an offset (existing files only) */
    struct stat lst;
    if (lstat(lp, &lst) == 0 && S_ISLNK(lst.st_mode))
      return; /* open(2) follows it, WRITE does not */
    char data[64];
    int n = snprintf(data, sizeof data, "w%d-", i);
    uint64_t off = test_rand() % 40;
    int fd = open(lp, O_WRONLY);
    want = fd < 0 ? errno : 0;
    if (fd >= 0) {
      if (pwrite(fd, data, (size_t)n, (off_t)off) < 0)
        want = errno;
      close(fd);
    }
    int st = walk(x, p, fh, &flen);
    if (st == NFS3_OK) {
      c3_write(x->c, fh, flen, off, data, (uint32_t)n, test_rand() % 4 ? UNSTABLE : FILE_SYNC, &r);
      st = r.status;
      if (st == NFS3_OK && test_rand() % 3 == 0)
        c3_commit(x->c, fh, flen, &r);
    }
    got = err_of(st);
    break;
  }
  case 2: { /* truncate */
    struct stat lst;
    if (lstat(lp, &lst) == 0 && S_ISLNK(lst.st_mode))
      return;
    uint64_t size = test_rand() % 30;
    want = truncate(lp, (off_t)size) < 0 ? errno : 0;
    int st = walk(x, p, fh, &flen);
    if (st == NFS3_OK) {
      sattr3 sa = {0};
      sa.size.set_it = 1;
      sa.size.set_size3_u.size = size;
      c3_setattr(x->c, fh, flen, &sa, NULL, &r);
      st = r.status;
    }
    got = err_of(st);
    break;
  }
  case 3: /* mkdir */
    want = mkdir(lp, 0755) < 0 ? errno : 0;
    got = walk_dir(x, dir, dfh, &dlen);
    if (got == NFS3_OK) {
      c3_mkdir(x->c, dfh, dlen, name, &r);
      got = r.status;
    }
    got = err_of(got);
    break;
  case 4: /* rmdir */
    want = rmdir(lp) < 0 ? errno : 0;
    got = walk_dir(x, dir, dfh, &dlen);
    if (got == NFS3_OK) {
      c3_rmdir(x->c, dfh, dlen, name, &r);
      got = r.status;
    }
    got = err_of(got);
    break;
  case 5: /* unlink */
    want = unlink(lp) < 0 ? errno : 0;
    got = walk_dir(x, dir, dfh, &dlen);
    if (got == NFS3_OK) {
      c3_remove(x->c, dfh, dlen, name, &r);
      got = r.status;
    }
    got = err_of(got);
    break;
  case 6: { /* rename */
    char qdir[64], qname[16];
    split(q, qdir, qname);
    want = rename(lp, lq) < 0 ? errno : 0;
    uint8_t tfh[64];
    uint32_t tlen;
    got = walk_dir(x, dir, dfh, &dlen);
    if (got == NFS3_OK)
      got = walk_dir(x, qdir, tfh, &tlen);
    if (got == NFS3_OK) {
      c3_rename(x->c, dfh, dlen, name, tfh, tlen, qname, &r);
      got = r.status;
    }
    got = err_of(got);
    /* Linux says EEXIST or ENOTEMPTY for a non-empty target directory. */
    if (want == EEXIST && got == ENOTEMPTY)
      want = ENOTEMPTY;
    break;
  }
  case 7: { /* hard link to a file */
    struct stat st;
    if (lstat(lp, &st) == 0 && !S_ISREG(st.st_mode))
      return; /* links to directories and symlinks differ by design */
    char qdir[64], qname[16];
    split(q, qdir, qname);
    want = link(lp, lq) < 0 ? errno : 0;
    uint8_t tfh[64];
    uint32_t tlen;
    got = walk(x, p, fh, &flen);
    if (got == NFS3_OK)
      got = walk_dir(x, qdir, tfh, &tlen);
    if (got == NFS3_OK) {
      c3_link(x->c, fh, flen, tfh, tlen, qname, &r);
      got = r.status;
    }
    got = err_of(got);
    break;
  }
  case 8: { /* symlink */
    char target[32];
    snprintf(target, sizeof target, "t%d", i);
    want = symlink(target, lp) < 0 ? errno : 0;
    got = walk_dir(x, dir, dfh, &dlen);
    if (got == NFS3_OK) {
      c3_symlink(x->c, dfh, dlen, name, target, &r);
      got = r.status;
    }
    got = err_of(got);
    break;
  }
  }
  x->ops++;
  x->ok += want == 0;
  CHECK_MSG(want == got, "step %d op %d on %s (%s): local %s, nfs %s (%d)", i, op, p, q,
            strerror(want), got < 1000 ? strerror(got) : "?", got);
}

/* Compares the local tree under LDIR with the NFS directory DFH. */
static void compare_nfs(struct ctx *x, const char *ldir, const uint8_t *dfh, uint32_t dlen)
{
  struct res *r = malloc(sizeof *r);
  c3_readdirplus(x->c, dfh, dlen, 0, 65536, 1 << 20, r);
  CHECK_INT(r->status, ==, NFS3_OK);
  CHECK(r->eof);
  int nfs_names = 0;
  for (int i = 0; i < r->n; i++) {
    if (strcmp(r->names[i], ".") == 0 || strcmp(r->names[i], "..") == 0)
      continue;
    nfs_names++;
    char lp[800];
    snprintf(lp, sizeof lp, "%s/%s", ldir, r->names[i]);
    struct stat st;
    CHECK_MSG(lstat(lp, &st) == 0, "only in NFS: %s", lp);
    struct res a;
    c3_getattr(x->c, r->fhs[i], r->fh_lens[i], &a);
    CHECK_INT(a.status, ==, NFS3_OK);
    if (S_ISDIR(st.st_mode)) {
      CHECK_INT(a.obj.type, ==, NF3DIR);
      compare_nfs(x, lp, r->fhs[i], r->fh_lens[i]);
    } else if (S_ISLNK(st.st_mode)) {
      CHECK_INT(a.obj.type, ==, NF3LNK);
      char t[64] = {0};
      CHECK(readlink(lp, t, sizeof t - 1) > 0);
      c3_readlink(x->c, r->fhs[i], r->fh_lens[i], &a);
      CHECK_MSG(a.data && strcmp((char *)a.data, t) == 0, "link %s", lp);
      res_free(&a);
    } else {
      CHECK_INT(a.obj.type, ==, NF3REG);
      CHECK_MSG(a.obj.size == (uint64_t)st.st_size, "size of %s: nfs %llu, local %lld", lp,
                (unsigned long long)a.obj.size, (long long)st.st_size);
      CHECK_INT(a.obj.nlink, ==, st.st_nlink);
      uint8_t buf[256];
      int fd = open(lp, O_RDONLY);
      ssize_t n = read(fd, buf, sizeof buf);
      close(fd);
      c3_read(x->c, r->fhs[i], r->fh_lens[i], 0, 256, &a);
      CHECK_INT(a.count, ==, n);
      CHECK_MSG(memcmp(a.data, buf, (size_t)n) == 0, "content of %s", lp);
      res_free(&a);
    }
  }
  int local_names = 0;
  DIR *d = opendir(ldir);
  for (struct dirent *e; (e = readdir(d));)
    local_names += e->d_name[0] != '.';
  closedir(d);
  CHECK_MSG(local_names == nfs_names, "%s: %d names locally, %d through NFS", ldir, local_names,
            nfs_names);
  free(r);
}

/* Compares the local tree with the stopped filesystem (fs_read). */
static void compare_fs(struct fs *fs, const char *ldir, const char *path)
{
  DIR *d = opendir(ldir);
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.')
      continue;
    char lp[800], fp[300];
    snprintf(lp, sizeof lp, "%s/%s", ldir, e->d_name);
    snprintf(fp, sizeof fp, "%s/%s", path, e->d_name);
    struct stat st;
    CHECK_OK(lstat(lp, &st));
    struct fs_stat fst;
    CHECK_MSG(fs_stat(fs, fp, &fst) == 0, "missing in the store: %s", fp);
    if (S_ISDIR(st.st_mode)) {
      CHECK_INT(fst.type, ==, FS_DIR);
      compare_fs(fs, lp, fp);
    } else if (S_ISREG(st.st_mode)) {
      uint8_t *data = NULL;
      size_t len = 0;
      CHECK_OK(fs_read(fs, fp, &data, &len));
      CHECK_INT(len, ==, st.st_size);
      uint8_t buf[256];
      int fd = open(lp, O_RDONLY);
      ssize_t n = read(fd, buf, sizeof buf);
      close(fd);
      CHECK_MSG(n == (ssize_t)len && (len == 0 || memcmp(data, buf, len) == 0), "content of %s",
                fp);
      free(data);
    }
  }
  closedir(d);
}

TEST(nfs3_model_differential)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, true);
  struct cl c;
  cl_open(&c, s.port);
  struct ctx x = {.s = &s, .c = &c};
  snprintf(x.local, sizeof x.local, "%s/model", test_tmpdir());
  CHECK_OK(mkdir(x.local, 0755));
  for (int i = 0; i < 1500; i++) {
    step(&x, i);
    if (i % 250 == 249)
      compare_nfs(&x, x.local, s.root, s.root_len);
  }
  compare_nfs(&x, x.local, s.root, s.root_len);
  fprintf(stderr, "# %d operations compared, %d succeeded\n", x.ops, x.ok);
  CHECK(x.ops > 800 && x.ok > 100);
  cl_close(&c);
  srv_stop(&s, true);
  struct fs *fs;
  CHECK_OK(fs_open(s.home, "t", false, &fs));
  compare_fs(fs, x.local, "");
  fs_close(fs);
  srv_free(&s);
}
