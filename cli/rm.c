/* basefs rm [-r] [--key FILE] NAME PATH */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>

#include "store/fs.h"
#include "store/key.h"

static int write_rm(struct fs *fs, const struct key *key, const struct cli_args *a, void *ctx,
                    const char **reason)
{
  (void)ctx;
  return fs_rm(fs, key, a->pos[1], a->recursive, reason);
}

static int run_rm(int argc, char **argv)
{
  struct cli_args a;
  CLI_PARSE(argc, argv, "key,recursive", 2, 2, &a);
  if (cli_bad_path(a.pos[1]))
    return 1;

  return cli_write(&a, a.pos[1], write_rm, NULL);
}

CLI_COMMAND(rm, "rm", "rm [-r] [--key FILE] NAME PATH", "remove a file, a link or (with -r) a directory tree", run_rm)
