/*
 * basefs show NAME [PATH]: the log as a tree. Each path of the tree (from
 * PATH, default "/") with its versions below it, oldest first; "*" marks the
 * current version of each thread, "!" a leaf that lost a conflict. For "/",
 * the objects with losers follow, as /.basefs/conflicts lists them.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/entry.h"
#include "store/fs.h"

static int show_path(struct fs *fs, const char *path, const char *name, int depth)
{
  struct fs_stat st;
  int r = fs_stat(fs, path, &st);
  if (r < 0)
    return r;
  printf("%*s%s%s\n", depth * 2, "", name, st.type == FS_DIR && depth ? "/" : "");
  struct fs_version *v = NULL;
  size_t n = 0;
  if (fs_versions(fs, path, &v, &n) == 0) {
    for (size_t i = 0; i < n; i++) {
      char hex[HASH_HEX_SIZE], fp[HASH_HEX_SIZE], when[32];
      hash_to_hex(&v[i].id, hex);
      hash_to_hex(&v[i].author, fp);
      fp[16] = '\0';
      cli_format_time(v[i].mtime_ns, when);
      printf("%*s%c %.16s %-7s %s %s\n", depth * 2 + 2, "",
             v[i].current ? '*' : v[i].loser ? '!' : ' ', hex, entry_action_name(v[i].action),
             when, v[i].keyname[0] ? v[i].keyname : fp);
    }
    free(v);
  }
  if (st.type != FS_DIR)
    return 0;
  char **names = NULL;
  size_t count = 0;
  r = fs_readdir(fs, path, &names, &count);
  if (r < 0)
    return r;
  for (size_t i = 0; i < count && r == 0; i++) {
    char child[FS_PATH_MAX];
    size_t plen = strlen(path);
    if (snprintf(child, sizeof child, "%s%s%s", path, plen && path[plen - 1] == '/' ? "" : "/",
                 names[i]) >= (int)sizeof child)
      continue;
    r = show_path(fs, child, names[i], depth + 1);
  }
  fs_names_free(names, count);
  return r;
}

/* Objects with losing versions or bindings, under /.basefs/conflicts. */
static void show_conflicts(struct fs *fs)
{
  char **objs = NULL;
  size_t n = 0;
  if (fs_readdir(fs, "/.basefs/conflicts", &objs, &n) < 0 || n == 0) {
    fs_names_free(objs, n);
    return;
  }
  printf("/.basefs/conflicts/\n");
  for (size_t i = 0; i < n; i++) {
    char dir[FS_PATH_MAX];
    snprintf(dir, sizeof dir, "/.basefs/conflicts/%s", objs[i]);
    printf("  %s/\n", objs[i]);
    char **names = NULL;
    size_t count = 0;
    if (fs_readdir(fs, dir, &names, &count) == 0)
      for (size_t j = 0; j < count; j++)
        printf("    %c %s\n", strcmp(names[j], "tree") ? '!' : ' ', names[j]);
    fs_names_free(names, count);
  }
  fs_names_free(objs, n);
}

static int run_show(int argc, char **argv)
{
  struct cli_args a;
  CLI_PARSE(argc, argv, "", 1, 2, &a);
  const char *path = a.npos > 1 ? a.pos[1] : "/";
  if (cli_bad_path(path))
    return 1;
  struct fs *fs = cli_open_fs(a.pos[0], false);
  if (!fs)
    return 1;
  int status = 0;
  int r = show_path(fs, path, path, 0);
  if (r < 0)
    status = cli_fail(r, path);
  else if (strcmp(path, "/") == 0)
    show_conflicts(fs);
  if (cli_close_fs(fs))
    status = 1;
  return status;
}

CLI_COMMAND(show, "show", "show NAME [PATH]",
            "the log as a tree: every path with its versions (* current, ! conflict loser)",
            run_show)
