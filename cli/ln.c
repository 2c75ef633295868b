/* basefs ln -s [--key FILE] NAME TARGET LINKPATH */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>

#include "store/fs.h"
#include "store/key.h"

static int run_ln(int argc, char **argv)
{
  struct cli_args a;
  CLI_PARSE(argc, argv, "key,symbolic", 3, 3, &a);
  if (cli_bad_path(a.pos[2]))
    return 1;
  if (!a.symbolic)
    return cli_error("only symbolic links are supported: use ln -s");
  struct key *key = cli_load_key(&a);
  if (!key)
    return 1;
  struct fs *fs = cli_open_fs(a.pos[0], true);
  if (!fs) {
    key_free(key);
    return 1;
  }
  const char *reason = NULL;
  int r = fs_symlink(fs, key, a.pos[1], a.pos[2], &reason);
  key_free(key);
  int status = r < 0 ? cli_fail_reason(r, a.pos[2], reason) : 0;
  if (cli_close_fs(fs))
    status = 1;
  return status;
}

CLI_COMMAND(ln, "ln", "ln -s [--key FILE] NAME TARGET LINKPATH", "make a symbolic link", run_ln)
