/* basefs cat NAME PATH: a file's content on standard output. */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "store/fs.h"

static int write_out(void *arg, const uint8_t *p, size_t n)
{
  (void)arg;
  while (n) {
    ssize_t w = write(1, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -errno;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int run_cat(int argc, char **argv)
{
  struct cli_args a;
  CLI_PARSE(argc, argv, "", 2, 2, &a);
  if (cli_bad_path(a.pos[1]))
    return 1;
  struct fs *fs = cli_open_fs(a.pos[0], false);
  if (!fs)
    return 1;
  int status = 0;
  int r = fs_stream(fs, a.pos[1], write_out, NULL);
  if (r < 0)
    status = cli_fail(r, a.pos[1]);
  if (cli_close_fs(fs))
    status = 1;
  return status;
}

CLI_COMMAND(cat, "cat", "cat NAME PATH", "print a file's content", run_cat)
