/* basefs chmod [--key FILE] NAME MODE PATH */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>

#include "store/fs.h"
#include "store/key.h"

static int run_chmod(int argc, char **argv)
{
  struct cli_args a;
  CLI_PARSE(argc, argv, "key", 3, 3, &a);
  if (cli_bad_path(a.pos[2]))
    return 1;
  char *end = NULL;
  unsigned long mode = strtoul(a.pos[1], &end, 8);
  if (!*a.pos[1] || *end || mode > 07777)
    return cli_error("'%s' is not an octal mode (0..7777)", a.pos[1]);
  struct key *key = cli_load_key(&a);
  if (!key)
    return 1;
  struct fs *fs = cli_open_fs(a.pos[0], true);
  if (!fs) {
    key_free(key);
    return 1;
  }
  const char *reason = NULL;
  int r = fs_chmod(fs, key, a.pos[2], (uint32_t)mode, &reason);
  key_free(key);
  int status = r < 0 ? cli_fail_reason(r, a.pos[2], reason) : 0;
  if (cli_close_fs(fs))
    status = 1;
  return status;
}

CLI_COMMAND(chmod, "chmod", "chmod [--key FILE] NAME MODE PATH", "change the permission bits of a path", run_chmod)
