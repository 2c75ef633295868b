/* basefs grant NAME PATH PUBKEY_FILE [--name KEYNAME]: let another key write below PATH. */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store/entry.h"
#include "store/fs.h"
#include "store/key.h"

/* The default key name: the public key file's base name without ".pub". */
static void default_name(const char *file, char *out, size_t cap)
{
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;
  snprintf(out, cap, "%s", base);
  size_t n = strlen(out);
  if (n > 4 && strcmp(out + n - 4, ".pub") == 0)
    out[n - 4] = '\0';
}

struct grantee {
  const uint8_t *pub;
  const char *name;
};

static int write_grant(struct fs *fs, const struct key *key, const struct cli_args *a, void *ctx,
                       const char **reason)
{
  const struct grantee *g = ctx;
  return fs_grant(fs, key, a->pos[1], g->pub, g->name, reason);
}

static int run_grant(int argc, char **argv)
{
  struct cli_args a;
  CLI_PARSE(argc, argv, "key,name", 3, 3, &a);
  if (cli_bad_path(a.pos[1]))
    return 1;
  uint8_t pub[KEY_PUBLIC_SIZE];
  int r = key_load_public(a.pos[2], pub);
  if (r < 0) {
    char what[4200];
    snprintf(what, sizeof what, "cannot read public key %s", a.pos[2]);
    return cli_fail(r, what);
  }
  char name[ENTRY_NAME_MAX + 1];
  if (a.name)
    snprintf(name, sizeof name, "%s", a.name);
  else
    default_name(a.pos[2], name, sizeof name);
  if (!entry_name_valid(name, strlen(name)))
    return cli_error("'%s' is not a valid key name (1..255 bytes, no '/')", name);
struct grantee g = {pub, name};
  return cli_write(&a, a.pos[1], write_grant, &g);
}

CLI_COMMAND(grant, "grant",
            "grant [--key FILE] [--name KEYNAME] NAME PATH PUBKEY_FILE",
            "let another key write below directory PATH", run_grant)
