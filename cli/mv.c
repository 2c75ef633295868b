/* basefs mv [--key FILE] NAME FROM TO */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>

#include "store/fs.h"
#include "store/key.h"

static int run_mv(int argc, char **argv)
{
  struct cli_args a;
  CLI_PARSE(argc, argv, "key", 3, 3, &a);
  if (cli_bad_path(a.pos[1]))
    return 1;
  if (cli_bad_path(a.pos[2]))
    return 1;

  struct key *key = cli_load_key(&a);
  if (!key)
    return 1;
  struct fs *fs = cli_open_fs(a.pos[0], true);
  if (!fs) {
    key_free(key);
    return 1;
  }
  const char *reason = NULL;
  int r = fs_mv(fs, key, a.pos[1], a.pos[2], &reason);
  key_free(key);
  int status = r < 0 ? cli_fail_reason(r, a.pos[1], reason) : 0;
  if (cli_close_fs(fs))
    status = 1;
  return status;
}

CLI_COMMAND(mv, "mv", "mv [--key FILE] NAME FROM TO", "rename or move a path", run_mv)
