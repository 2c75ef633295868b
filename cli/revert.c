/* basefs revert [--key FILE] NAME PATH HASH */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>

#include "store/fs.h"
#include "store/key.h"

static int write_revert(struct fs *fs, const struct key *key, const struct cli_args *a, void *ctx,
                        const char **reason)
{
  (void)ctx;
  return fs_revert(fs, key, a->pos[1], a->pos[2], reason);
}

static int run_revert(int argc, char **argv)
{
  struct cli_args a;
  CLI_PARSE(argc, argv, "key", 3, 3, &a);
  if (cli_bad_path(a.pos[1]))
    return 1;

  return cli_write(&a, a.pos[1], write_revert, NULL);
}

CLI_COMMAND(revert, "revert", "revert [--key FILE] NAME PATH HASH", "make an old version of a path current again (HASH: full or >= 8 hex digits)", run_revert)
