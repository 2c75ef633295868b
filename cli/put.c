/* basefs put NAME PATH: standard input becomes the file PATH (created or updated). */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/fs.h"
#include "store/key.h"

static int read_all(int fd, uint8_t **out, size_t *len)
{
  size_t cap = 1 << 16, n = 0;
  uint8_t *buf = malloc(cap);
  if (!buf)
    return -ENOMEM;
  for (;;) {
    if (n == cap) {
      uint8_t *bigger = realloc(buf, cap * 2);
      if (!bigger) {
        free(buf);
        return -ENOMEM;
      }
      buf = bigger;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      int err = -errno;
      free(buf);
      return err;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  *out = buf;
  *len = n;
  return 0;
}

struct input {
  bool from_file; /* stream standard input itself */
  const uint8_t *data;
  size_t len;
};

static int write_put(struct fs *fs, const struct key *key, const struct cli_args *a, void *ctx,
                     const char **reason)
{
  const struct input *in = ctx;
  return in->from_file ? fs_put_fd(fs, key, a->pos[1], 0, reason)
                       : fs_put(fs, key, a->pos[1], in->data, in->len, reason);
}

static int run_put(int argc, char **argv)
{
  struct cli_args a;
  CLI_PARSE(argc, argv, "key", 2, 2, &a);
  if (cli_bad_path(a.pos[1]))
    return 1;
  /* A regular file on standard input streams into blocks; anything else is read first. */
  struct stat st;
  bool from_file = fstat(0, &st) == 0 && S_ISREG(st.st_mode) && lseek(0, 0, SEEK_CUR) == 0;
  uint8_t *data = NULL;
  size_t len = 0;
  int r = from_file ? 0 : read_all(0, &data, &len);
  if (r < 0)
    return cli_fail(r, "cannot read standard input");
  struct input in = {from_file, data, len};
  int status = cli_write(&a, a.pos[1], write_put, &in);
  free(data);
  return status;
}

CLI_COMMAND(put, "put", "put [--key FILE] NAME PATH   (standard input becomes file PATH)",
            "write a file from standard input", run_put)
