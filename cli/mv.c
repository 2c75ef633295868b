/* basefs mv [--key FILE] NAME FROM TO */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>

#include "store/fs.h"
#include "store/key.h"

static int write_mv(struct fs *fs, const struct key *key, const struct cli_args *a, void *ctx,
                    const char **reason)
{
  (void)ctx;
  return fs_mv(fs, key, a->pos[1], a->pos[2], reason);
}

static int run_mv(int argc, char **argv)
{
  struct cli_args a;
  CLI_PARSE(argc, argv, "key", 3, 3, &a);
  if (cli_bad_path(a.pos[1]))
    return 1;
  if (cli_bad_path(a.pos[2]))
    return 1;

  return cli_write(&a, a.pos[1], write_mv, NULL);
}

CLI_COMMAND(mv, "mv", "mv [--key FILE] NAME FROM TO", "rename or move a path", run_mv)
