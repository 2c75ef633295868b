/* basefs mkdir [--key FILE] NAME PATH */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>

#include "store/fs.h"
#include "store/key.h"

static int write_mkdir(struct fs *fs, const struct key *key, const struct cli_args *a, void *ctx,
                       const char **reason)
{
  (void)ctx;
  return fs_mkdir(fs, key, a->pos[1], reason);
}

static int run_mkdir(int argc, char **argv)
{
  struct cli_args a;
  CLI_PARSE(argc, argv, "key", 2, 2, &a);
  if (cli_bad_path(a.pos[1]))
    return 1;

  return cli_write(&a, a.pos[1], write_mkdir, NULL);
}

CLI_COMMAND(mkdir, "mkdir", "mkdir [--key FILE] NAME PATH", "make a directory", run_mkdir)
