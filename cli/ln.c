/* basefs ln -s [--key FILE] NAME TARGET LINKPATH */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>

#include "store/fs.h"
#include "store/key.h"

static int write_ln(struct fs *fs, const struct key *key, const struct cli_args *a, void *ctx,
                    const char **reason)
{
  (void)ctx;
  return fs_symlink(fs, key, a->pos[1], a->pos[2], reason);
}

static int run_ln(int argc, char **argv)
{
  struct cli_args a;
  CLI_PARSE(argc, argv, "key,symbolic", 3, 3, &a);
  if (cli_bad_path(a.pos[2]))
    return 1;
  if (!a.symbolic)
    return cli_error("only symbolic links are supported: use ln -s");
  return cli_write(&a, a.pos[2], write_ln, NULL);
}

CLI_COMMAND(ln, "ln", "ln -s [--key FILE] NAME TARGET LINKPATH", "make a symbolic link", run_ln)
