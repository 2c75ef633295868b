/*
 * basefs genkey [--key FILE]: makes an ECDSA P-256 signing key. The private
 * key goes to FILE (mode 0600), the public key to FILE.pub; the default FILE
 * is $BASEFS_HOME/id_ec, and $BASEFS_HOME is created (0700) when missing.
 * An existing key is never overwritten.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "store/error.h"
#include "store/key.h"

/* mkdir -p with mode 0700 for every directory it creates. */
static int make_home(const char *path)
{
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
    return -ENAMETOOLONG;
  for (char *p = buf + 1;; p++) {
    if (*p == '/' || *p == '\0') {
      char c = *p;
      *p = '\0';
      if (mkdir(buf, 0700) < 0 && errno != EEXIST)
        return -errno;
      *p = c;
      if (c == '\0')
        break;
    }
  }
  struct stat st;
  if (stat(path, &st) < 0)
    return -errno;
  return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static int run_genkey(int argc, char **argv)
{
  static const struct option options[] = {
      {"key", required_argument, NULL, 'k'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *path = NULL;
  int c;
  while ((c = getopt_long(argc, argv, "k:h", options, NULL)) != -1) {
    switch (c) {
    case 'k':
      path = optarg;
      break;
    case 'h':
      return cli_usage(0);
    default:
      return cli_usage(2);
    }
  }
  if (optind < argc)
    return cli_error("unexpected argument '%s' (usage: basefs genkey [--key FILE])", argv[optind]);
  if (!path) {
    int rc = make_home(cli_home());
    if (rc < 0)
      return cli_error("cannot create %s: %s", cli_home(), bfs_strerror(rc));
    path = cli_default_key();
  }
  if (!*path)
    return cli_error("--key needs a file name");

  char pub_path[4200];
  snprintf(pub_path, sizeof pub_path, "%s.pub", path);
  if (access(path, F_OK) == 0 || access(pub_path, F_OK) == 0)
    return cli_error("%s already exists; refusing to overwrite a key", access(path, F_OK) == 0 ? path : pub_path);

  struct key *key;
  int rc = key_generate(&key);
  if (rc < 0)
    return cli_error("cannot generate a key: %s", bfs_strerror(rc));
  rc = key_save(key, path);
  if (rc == -EEXIST) {
    key_free(key);
    return cli_error("%s already exists; refusing to overwrite a key", path);
  }
  if (rc < 0) {
    key_free(key);
    return cli_error("cannot write %s: %s", path, bfs_strerror(rc));
  }
  uint8_t pub[KEY_PUBLIC_SIZE];
  hash_t fp;
  char hex[HASH_HEX_SIZE];
  key_public(key, pub);
  key_free(key);
  key_fingerprint(pub, &fp);
  hash_to_hex(&fp, hex);
  printf("fingerprint %s\nprivate key %s\npublic key  %s\n", hex, path, pub_path);
  return 0;
}

CLI_COMMAND(genkey, "genkey", "genkey [--key FILE]", "make an ECDSA P-256 signing key (FILE, FILE.pub)", run_genkey)
