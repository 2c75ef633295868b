/* basefs chmod [--key FILE] NAME MODE PATH */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>

#include "store/fs.h"
#include "store/key.h"

static int write_chmod(struct fs *fs, const struct key *key, const struct cli_args *a, void *mode,
                       const char **reason)
{
  return fs_chmod(fs, key, a->pos[2], *(uint32_t *)mode, reason);
}

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
  uint32_t mode32 = (uint32_t)mode;
  return cli_write(&a, a.pos[2], write_chmod, &mode32);
}

CLI_COMMAND(chmod, "chmod", "chmod [--key FILE] NAME MODE PATH", "change the permission bits of a path", run_chmod)
