#include "cli/cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pwd.h>

#define MAX_COMMANDS 64

static const struct cli_command *commands[MAX_COMMANDS];
static int command_count;
const char *cli_current = "basefs";
static const struct cli_command *current;

void cli_register(const struct cli_command *cmd)
{
  if (command_count < MAX_COMMANDS)
    commands[command_count++] = cmd;
}

int cli_error(const char *fmt, ...)
{
  va_list ap;
  fprintf(stderr, "basefs %s: ", cli_current);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return 1;
}

int cli_usage(int status)
{
  FILE *out = status ? stderr : stdout;
  if (current)
    fprintf(out, "usage: basefs %s\n%s\n", current->usage, current->summary);
  return status;
}

const char *cli_home(void)
{
  static char path[4096];
  if (path[0])
    return path;
  const char *env = getenv("BASEFS_HOME");
  if (env && *env) {
    snprintf(path, sizeof path, "%s", env);
  } else {
    const char *home = getenv("HOME");
    if (!home || !*home) {
      struct passwd *pw = getpwuid(getuid());
      home = pw ? pw->pw_dir : "/";
    }
    snprintf(path, sizeof path, "%s/.basefs", home);
  }
  return path;
}

const char *cli_default_key(void)
{
  static char path[4200];
  if (!path[0])
    snprintf(path, sizeof path, "%s/id_ec", cli_home());
  return path;
}

static int compare_commands(const void *a, const void *b)
{
  return strcmp((*(const struct cli_command *const *)a)->name,
                (*(const struct cli_command *const *)b)->name);
}

static int usage_all(FILE *out, int status)
{
  qsort(commands, (size_t)command_count, sizeof commands[0], compare_commands);
  fprintf(out, "usage: basefs COMMAND [ARGS]   (basefs COMMAND --help for details)\n\n");
  for (int i = 0; i < command_count; i++)
    fprintf(out, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
  return status;
}

int main(int argc, char **argv)
{
  if (argc < 2)
    return usage_all(stderr, 2);
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))
    return usage_all(stdout, 0);
  for (int i = 0; i < command_count; i++) {
    if (strcmp(commands[i]->name, argv[1]) == 0) {
      current = commands[i];
      cli_current = commands[i]->name;
      return commands[i]->run(argc - 1, argv + 1);
    }
  }
  fprintf(stderr, "basefs: unknown command '%s' (basefs --help lists them)\n", argv[1]);
  return 2;
}
