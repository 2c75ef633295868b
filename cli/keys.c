/* basefs keys NAME: every key with a grant: name, fingerprint, the directories it may write. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/fs.h"

static int by_key_then_path(const void *pa, const void *pb)
{
  const struct fs_grant *a = pa, *b = pb;
  int c = strcmp(a->keyname, b->keyname);
  if (!c)
    c = hash_cmp(&a->fingerprint, &b->fingerprint);
  if (!c)
    c = strcmp(a->path, b->path);
  return c;
}

static int run_keys(int argc, char **argv)
{
  struct cli_args a;
  CLI_PARSE(argc, argv, "", 1, 1, &a);
  struct fs *fs = cli_open_fs(a.pos[0], false);
  if (!fs)
    return 1;
  struct fs_grant *g = NULL;
  size_t n = 0;
  int status = 0;
  int r = fs_grants(fs, &g, &n);
  if (r < 0) {
    status = cli_fail(r, "cannot list grants");
    n = 0;
  }
  qsort(g, n, sizeof *g, by_key_then_path);
  /* One line per key: name, fingerprint, then every directory it may write. */
  for (size_t i = 0; i < n;) {
    char hex[HASH_HEX_SIZE];
    hash_to_hex(&g[i].fingerprint, hex);
    printf("%s %s", g[i].keyname[0] ? g[i].keyname : "-", hex);
    size_t j = i;
    for (; j < n && hash_eq(&g[j].fingerprint, &g[i].fingerprint) &&
           strcmp(g[j].keyname, g[i].keyname) == 0;
         j++)
      printf(" %s", g[j].path);
    printf("\n");
    i = j;
  }
  free(g);
  if (cli_close_fs(fs))
    status = 1;
  return status;
}

CLI_COMMAND(keys, "keys", "keys NAME",
            "list the keys that may write: name, fingerprint, directories", run_keys)
