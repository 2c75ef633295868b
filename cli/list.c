/* basefs list: the filesystems in $BASEFS_HOME, one a line. */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>

#include "store/fs.h"

static int print_name(const char *name, void *arg)
{
  (void)arg;
  printf("%s\n", name);
  return 0;
}

static int run_list(int argc, char **argv)
{
  struct cli_args a;
  CLI_PARSE(argc, argv, "", 0, 0, &a);
  int r = fs_list(cli_home(), print_name, NULL);
  if (r < 0 && r != -ENOENT)
    return cli_fail(r, cli_home());
  return 0;
}

CLI_COMMAND(list, "list", "list", "list the filesystems in $BASEFS_HOME", run_list)
