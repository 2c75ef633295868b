/* basefs bootstrap NAME [--addr HOST:PORT]...: a new filesystem owned by the local key. */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/fs.h"
#include "store/key.h"

/* Loads the key, or makes one (saying so) when the file does not exist yet. */
static struct key *load_or_make_key(const struct cli_args *a)
{
  struct stat st;
  if (stat(a->key, &st) == 0 || errno != ENOENT)
    return cli_load_key(a);
  struct key *key = NULL;
  int r = key_generate(&key);
  if (r < 0) {
    cli_fail(r, "cannot make a key");
    return NULL;
  }
  /* The default key lives in $BASEFS_HOME, which may not exist yet. */
  mkdir(cli_home(), 0700);
  r = key_save(key, a->key);
  if (r < 0) {
    key_free(key);
    char what[4200];
    snprintf(what, sizeof what, "cannot save a new key to %s", a->key);
    cli_fail(r, what);
    return NULL;
  }
  fprintf(stderr, "basefs bootstrap: no key at %s, made a new one (public key in %s.pub)\n",
          a->key, a->key);
  return key;
}

static int run_bootstrap(int argc, char **argv)
{
  struct cli_args a;
  CLI_PARSE(argc, argv, "key,addr", 1, 1, &a);
  const char *name = a.pos[0];
  if (!fs_name_valid(name))
    return cli_error("'%s' is not a valid filesystem name (1..64 of A-Z a-z 0-9 . _ -)", name);
  size_t len = 0;
  for (int i = 0; i < a.naddrs; i++) {
    if (!*a.addrs[i] || strchr(a.addrs[i], '\n') || !strchr(a.addrs[i], ':'))
      return cli_error("'%s' is not a HOST:PORT address", a.addrs[i]);
    len += strlen(a.addrs[i]) + 1;
  }
  char *cluster = malloc(len + 1);
  if (!cluster)
    return cli_fail(-ENOMEM, NULL);
  cluster[0] = '\0';
  for (int i = 0; i < a.naddrs; i++) {
    strcat(cluster, a.addrs[i]);
    strcat(cluster, "\n");
  }
  struct key *key = load_or_make_key(&a);
  if (!key) {
    free(cluster);
    return 1;
  }
  struct fs *fs = NULL;
  int r = fs_create(cli_home(), name, key, cluster, len, &fs);
  free(cluster);
  key_free(key);
  if (r == -EEXIST)
    return cli_error("filesystem %s already exists in %s", name, cli_home());
  if (r < 0) {
    char what[256];
    snprintf(what, sizeof what, "cannot create filesystem %s", name);
    return cli_fail(r, what);
  }
  return cli_close_fs(fs);
}

CLI_COMMAND(bootstrap, "bootstrap", "bootstrap [--key FILE] NAME [--addr HOST:PORT]...",
            "create a filesystem owned by the local key", run_bootstrap)
