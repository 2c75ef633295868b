/* basefs revoke [--key FILE] NAME PATH KEYNAME|FINGERPRINT */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>

#include "store/fs.h"
#include "store/key.h"

static int write_revoke(struct fs *fs, const struct key *key, const struct cli_args *a, void *ctx,
                        const char **reason)
{
  (void)ctx;
  return fs_revoke(fs, key, a->pos[1], a->pos[2], reason);
}

static int run_revoke(int argc, char **argv)
{
  struct cli_args a;
  CLI_PARSE(argc, argv, "key", 3, 3, &a);
  if (cli_bad_path(a.pos[1]))
    return 1;

  return cli_write(&a, a.pos[1], write_revoke, NULL);
}

CLI_COMMAND(revoke, "revoke", "revoke [--key FILE] NAME PATH KEYNAME|FINGERPRINT", "take back a key's write permission on PATH (where it was granted)", run_revoke)
