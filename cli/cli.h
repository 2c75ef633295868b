/*
 * The basefs command: one file per subcommand (cli/genkey.c, cli/put.c, ...).
 * A subcommand registers itself with CLI_COMMAND and is a main() of its own:
 * it parses its options with getopt_long (GNU order, so options may stand
 * before or after positional arguments), answers --help, and on failure
 * prints one line on stderr through cli_error() and returns non-zero.
 */
#ifndef BASEFS_CLI_CLI_H
#define BASEFS_CLI_CLI_H

#include <stddef.h>

struct cli_command {
  const char *name;
  const char *usage;   /* "genkey [--key FILE]" */
  const char *summary; /* one line for `basefs --help` */
  int (*run)(int argc, char **argv);
};

void cli_register(const struct cli_command *cmd);

#define CLI_COMMAND(id, ...)                                              \
  static const struct cli_command cli_command_##id = {__VA_ARGS__};       \
  __attribute__((constructor)) static void cli_register_##id(void)       \
  {                                                                       \
    cli_register(&cli_command_##id);                                      \
  }

/* The command being run ("put"), for messages. */
extern const char *cli_current;

/* Prints "basefs CMD: MESSAGE" on stderr; returns 1 (the exit status). */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the usage line of the current command on OUT-or-stderr; returns STATUS. */
int cli_usage(int status);

/* $BASEFS_HOME, default ~/.basefs (never NULL; not created here). */
const char *cli_home(void);
/* The default key path: $BASEFS_HOME/id_ec. */
const char *cli_default_key(void);

#endif
