/*
 * basefs log NAME PATH: every version of PATH, oldest first, one a line:
 *   <full hex id> <UTC time> <key name or fingerprint prefix> <action> [current|loser]
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>

#include "store/entry.h"
#include "store/fs.h"

static int run_log(int argc, char **argv)
{
  struct cli_args a;
  CLI_PARSE(argc, argv, "", 2, 2, &a);
  if (cli_bad_path(a.pos[1]))
    return 1;
  struct fs *fs = cli_open_fs(a.pos[0], false);
  if (!fs)
    return 1;
  struct fs_version *v = NULL;
  size_t n = 0;
  int status = 0;
  int r = fs_versions(fs, a.pos[1], &v, &n);
  if (r < 0) {
    status = cli_fail(r, a.pos[1]);
    n = 0;
  }
  for (size_t i = 0; i < n; i++) {
    char hex[HASH_HEX_SIZE], fp[HASH_HEX_SIZE], when[32];
    hash_to_hex(&v[i].id, hex);
    hash_to_hex(&v[i].author, fp);
    fp[16] = '\0';
    cli_format_time(v[i].mtime_ns, when);
    printf("%s %s %s %s%s\n", hex, when, v[i].keyname[0] ? v[i].keyname : fp,
           entry_action_name(v[i].action),
           v[i].current ? " current" : v[i].loser ? " loser" : "");
  }
  free(v);
  if (cli_close_fs(fs))
    status = 1;
  return status;
}

CLI_COMMAND(log, "log", "log NAME PATH",
            "every version of a path, oldest first (hash, time, key, action, mark)", run_log)
