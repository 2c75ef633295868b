/*
 * The server through libnfs's high-level (POSIX-like) API, the way an
 * application or `nfs-cp` uses it: mount, open/write/fsync/close, stat,
 * directories, renames, links, symlinks, chmod, truncate — and the result
 * read back through the filesystem (store/fs.h) once the server stopped.
 */
#include <fcntl.h>
#include <sys/stat.h>

#include "tests/server/nfs3_harness.h"

static struct nfs_context *mount_it(struct srv *s)
{
  struct nfs_context *nfs = nfs_init_context();
  CHECK(nfs != NULL);
  char url[256];
  snprintf(url, sizeof url, "nfs://127.0.0.1/basefs?version=3&nfsport=%d&mountport=%d", s->port,
           s->port);
  struct nfs_url *u = nfs_parse_url_dir(nfs, url);
  CHECK_MSG(u != NULL, "url: %s", nfs_get_error(nfs));
  CHECK_MSG(nfs_mount(nfs, u->server, u->path) == 0, "mount: %s", nfs_get_error(nfs));
  nfs_destroy_url(u);
  return nfs;
}

static void write_file(struct nfs_context *nfs, const char *path, const void *data, size_t len)
{
  struct nfsfh *fh;
  CHECK_MSG(nfs_open(nfs, path, O_WRONLY | O_CREAT | O_TRUNC, &fh) == 0, "open %s: %s", path,
            nfs_get_error(nfs));
  const uint8_t *p = data;
  size_t done = 0;
  while (done < len) {
    size_t n = len - done < 300000 ? len - done : 300000;
    CHECK_INT(nfs_pwrite(nfs, fh, done, n, (const char *)p + done), ==, (int)n);
    done += n;
  }
  CHECK_OK(nfs_fsync(nfs, fh));
  CHECK_OK(nfs_close(nfs, fh));
}

static size_t read_file(struct nfs_context *nfs, const char *path, uint8_t *buf, size_t cap)
{
  struct nfsfh *fh;
  CHECK_MSG(nfs_open(nfs, path, O_RDONLY, &fh) == 0, "open %s: %s", path, nfs_get_error(nfs));
  size_t done = 0;
  for (;;) {
    int n = nfs_pread(nfs, fh, done, cap - done < 100000 ? cap - done : 100000, (char *)buf + done);
    CHECK(n >= 0);
    if (n == 0)
      break;
    done += (size_t)n;
  }
  nfs_close(nfs, fh);
  return done;
}

TEST(libnfs_posix_api_round_trip)
{
  struct srv s;
  srv_init(&s);
  /* Written offline by the CLI's code path before serving. */
  CHECK_OK(fs_open(s.home, "t", true, &s.fs));
  CHECK_OK(fs_mkdir(s.fs, s.key, "/etc", NULL));
  CHECK_OK(fs_put(s.fs, s.key, "/etc/hosts", "127.0.0.1 localhost\n", 20, NULL));
  CHECK_OK(fs_close(s.fs));
  srv_start(&s, false);
  struct nfs_context *nfs = mount_it(&s);

  uint8_t buf[1 << 20];
  CHECK_INT(read_file(nfs, "/etc/hosts", buf, sizeof buf), ==, 20);
  CHECK_MEM(buf, "127.0.0.1 localhost\n", 20);

  size_t big = 900000;
  uint8_t *data = malloc(big);
  for (size_t i = 0; i < big; i++)
    data[i] = (uint8_t)(i * 7 + (i >> 11));
  write_file(nfs, "/etc/blob", data, big);
  struct nfs_stat_64 st;
  CHECK_OK(nfs_stat64(nfs, "/etc/blob", &st));
  CHECK_INT(st.nfs_size, ==, big);
  CHECK(S_ISREG(st.nfs_mode));
  CHECK_INT(read_file(nfs, "/etc/blob", buf, sizeof buf), ==, big);
  CHECK_MEM(buf, data, big);

  CHECK_OK(nfs_mkdir(nfs, "/etc/sub"));
  CHECK_OK(nfs_rename(nfs, "/etc/blob", "/etc/sub/blob2"));
  CHECK(nfs_stat64(nfs, "/etc/blob", &st) < 0);
  CHECK_OK(nfs_link(nfs, "/etc/sub/blob2", "/etc/hard"));
  CHECK_OK(nfs_stat64(nfs, "/etc/hard", &st));
  CHECK_INT(st.nfs_nlink, ==, 2);
  CHECK_OK(nfs_symlink(nfs, "sub/blob2", "/etc/soft"));
  char target[64] = {0};
  CHECK_OK(nfs_readlink(nfs, "/etc/soft", target, sizeof target));
  CHECK(strcmp(target, "sub/blob2") == 0);
  CHECK_OK(nfs_chmod(nfs, "/etc/hosts", 0600));
  CHECK_OK(nfs_stat64(nfs, "/etc/hosts", &st));
  CHECK_INT(st.nfs_mode & 07777, ==, 0600);
  CHECK_OK(nfs_truncate(nfs, "/etc/hosts", 9));
  CHECK(nfs_rmdir(nfs, "/etc/sub") < 0); /* not empty */
  CHECK(nfs_mkdir(nfs, "/etc/sub") < 0); /* exists */

  struct nfsdir *dir;
  CHECK_OK(nfs_opendir(nfs, "/etc", &dir));
  int n = 0;
  bool hosts = false, soft = false;
  for (struct nfsdirent *e; (e = nfs_readdir(nfs, dir));) {
    n++;
    hosts |= strcmp(e->name, "hosts") == 0 && e->size == 9;
    soft |= strcmp(e->name, "soft") == 0 && e->type == NF3LNK;
  }
  nfs_closedir(nfs, dir);
  CHECK(hosts && soft);
  CHECK_INT(n, ==, 6); /* . .. hosts sub hard soft */

  nfs_destroy_context(nfs);
  srv_stop(&s, true);

  struct fs *fs;
  CHECK_OK(fs_open(s.home, "t", false, &fs));
  uint8_t *back = NULL;
  size_t len = 0;
  CHECK_OK(fs_read(fs, "/etc/hard", &back, &len));
  CHECK_INT(len, ==, big);
  CHECK_MEM(back, data, big);
  free(back);
  CHECK_OK(fs_read(fs, "/etc/hosts", &back, &len));
  CHECK_INT(len, ==, 9);
  CHECK_MEM(back, "127.0.0.1", 9);
  free(back);
  struct fs_stat fst;
  CHECK_OK(fs_stat(fs, "/etc/hosts", &fst));
  CHECK_INT(fst.mode, ==, 0600);
  CHECK_OK(fs_read(fs, "/etc/soft", &back, &len));
  CHECK(len == 9 && memcmp(back, "sub/blob2", 9) == 0);
  free(back);
  fs_close(fs);
  free(data);
  srv_free(&s);
}
