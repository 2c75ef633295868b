/* basefs ls NAME PATH: the names in a directory, one a line, sorted, nothing else. */
#include "cli/cli.h"

#include <stdio.h>

#include "store/fs.h"

static int run_ls(int argc, char **argv)
{
  struct cli_args a;
  CLI_PARSE(argc, argv, "", 1, 2, &a);
  const char *path = a.npos > 1 ? a.pos[1] : "/";
  if (cli_bad_path(path))
    return 1;
  struct fs *fs = cli_open_fs(a.pos[0], false);
  if (!fs)
    return 1;
  char **names = NULL;
  size_t n = 0;
  int r = fs_readdir(fs, path, &names, &n);
  int status = 0;
  if (r < 0)
    status = cli_fail(r, path);
  for (size_t i = 0; i < n; i++)
    printf("%s\n", names[i]);
  fs_names_free(names, n);
  if (cli_close_fs(fs))
    status = 1;
  return status;
}

CLI_COMMAND(ls, "ls", "ls NAME [PATH]", "list a directory (one name a line, sorted)", run_ls)
