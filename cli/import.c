/*
 * basefs import NAME HOSTDIR PATH: copies a host directory tree below the
 * existing directory PATH in one process and one commit (directories,
 * regular files with their permission bits, symbolic links; other kinds are
 * skipped and counted on stderr). All or nothing: if one object cannot be
 * written, the command stops with that error and changes nothing.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/fs.h"
#include "store/key.h"

static struct {
  struct fs *fs;
  struct key *key;
  size_t src_len;
  char dst[FS_PATH_MAX];
  unsigned long objects, skipped;
  int err;
  const char *reason;
  char where[FS_PATH_MAX + 64];
} im;

static int fail(int r, const char *reason, const char *host)
{
  im.err = r;
  im.reason = reason;
  snprintf(im.where, sizeof im.where, "%s", host);
  return 1; /* stops nftw */
}

static int import_one(const char *host, const struct stat *st, int flag, struct FTW *ftw)
{
  (void)ftw;
  const char *rel = host + im.src_len;
  char path[FS_PATH_MAX];
  if (!*rel)
    return 0; /* HOSTDIR itself is PATH */
  if (snprintf(path, sizeof path, "%s%s", strcmp(im.dst, "/") ? im.dst : "", rel) >=
      (int)sizeof path)
    return fail(-ENAMETOOLONG, NULL, host);
  const char *reason = NULL;
  int r = 0;
  uint32_t mode = st->st_mode & 07777, usual = 0644;
  if (flag == FTW_D) {
    usual = 0755;
    r = fs_mkdir(im.fs, im.key, path, &reason);
    struct fs_stat fst;
    if (r == -EEXIST && fs_stat(im.fs, path, &fst) == 0 && fst.type == FS_DIR)
      r = 0; /* merging into an existing directory */
  } else if (flag == FTW_SL) {
    char target[FS_PATH_MAX];
    ssize_t n = readlink(host, target, sizeof target - 1);
    if (n < 0)
      return fail(-errno, NULL, host);
    target[n] = '\0';
    r = fs_symlink(im.fs, im.key, target, path, &reason);
    mode = usual; /* links have no mode of their own */
  } else if (flag == FTW_F && S_ISREG(st->st_mode)) {
    int fd = open(host, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return fail(-errno, NULL, host);
    r = fs_put_fd(im.fs, im.key, path, fd, &reason);
    close(fd);
  } else if (flag == FTW_DNR || flag == FTW_NS) {
    return fail(-EACCES, "cannot read it", host);
  } else {
    im.skipped++;
    return 0;
  }
  if (r == 0 && mode != usual)
    r = fs_chmod(im.fs, im.key, path, mode, &reason);
  if (r < 0)
    return fail(r, reason, host);
  im.objects++;
  return 0;
}

static int run_import(int argc, char **argv)
{
  struct cli_args a;
  CLI_PARSE(argc, argv, "key", 3, 3, &a);
  if (cli_bad_path(a.pos[2]))
    return 1;
  struct stat st;
  if (stat(a.pos[1], &st) < 0)
    return cli_fail(-errno, a.pos[1]);
  if (!S_ISDIR(st.st_mode))
    return cli_error("%s: not a directory", a.pos[1]);
  char src[FS_PATH_MAX];
  snprintf(src, sizeof src, "%s", a.pos[1]);
  size_t n = strlen(src);
  while (n > 1 && src[n - 1] == '/')
    src[--n] = '\0';
  snprintf(im.dst, sizeof im.dst, "%s", a.pos[2]);
  n = strlen(im.dst);
  while (n > 1 && im.dst[n - 1] == '/')
    im.dst[--n] = '\0';
  im.src_len = strlen(src);

  if (!(im.key = cli_load_key(&a)))
    return 1;
  if (!(im.fs = cli_open_fs(a.pos[0], true))) {
    key_free(im.key);
    return 1;
  }
  struct fs_stat fst;
  int r = fs_stat(im.fs, im.dst, &fst);
  if (r == 0 && fst.type != FS_DIR)
    r = -ENOTDIR;
  if (r < 0) {
    fs_discard(im.fs);
    key_free(im.key);
    return cli_fail(r, im.dst);
  }
  if (nftw(src, import_one, 32, FTW_PHYS) != 0 || im.err) {
    fs_discard(im.fs);
    key_free(im.key);
    if (!im.err)
      return cli_fail(-errno, src);
    return cli_fail_reason(im.err, im.where, im.reason);
  }
  key_free(im.key);
  int status = cli_close_fs(im.fs);
  if (status == 0 && im.skipped)
    fprintf(stderr, "basefs import: skipped %lu objects that are neither files, directories nor links\n",
            im.skipped);
  return status;
}

CLI_COMMAND(import, "import", "import [--key FILE] NAME HOSTDIR PATH",
            "copy a host directory tree below directory PATH (one commit, all or nothing)",
            run_import)
