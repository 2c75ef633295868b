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

/* ---- Shared helpers for the filesystem commands (cli/common.c) ---- */

#include <stdbool.h>
#include <stdint.h>

struct fs;
struct key;

/*
 * The options every filesystem command understands, parsed by cli_parse().
 * Only the options named in ALLOWED ("key,name,addr,recursive,symbolic")
 * are accepted; --help always is.
 */
#define CLI_MAX_POSITIONAL 8
#define CLI_MAX_ADDRS 32
struct cli_args {
  const char *key;  /* --key FILE (default cli_default_key()) */
  const char *name; /* --name KEYNAME */
  const char *addrs[CLI_MAX_ADDRS];
  int naddrs;       /* --addr HOST:PORT, repeatable */
  bool recursive;   /* -r, --recursive */
  bool symbolic;    /* -s, --symbolic */
  const char *pos[CLI_MAX_POSITIONAL];
  int npos;
};

/*
 * Parses ARGV (options before or after positional arguments). Needs between
 * MIN_POS and MAX_POS positional arguments. Returns 0 to go on, -1 after
 * printing --help (exit 0), or 1 after printing an error. Use CLI_PARSE().
 */
int cli_parse(int argc, char **argv, const char *allowed, int min_pos, int max_pos,
              struct cli_args *args);
#define CLI_PARSE(argc, argv, allowed, min_pos, max_pos, args)                      \
  do {                                                                              \
    int cli_parse_r_ = cli_parse((argc), (argv), (allowed), (min_pos), (max_pos), (args)); \
    if (cli_parse_r_)                                                               \
      return cli_parse_r_ < 0 ? 0 : cli_parse_r_;                                   \
  } while (0)

/* Opens filesystem NAME for reading or writing; prints the error itself. NULL on failure. */
struct fs *cli_open_fs(const char *name, bool writer);
/* Closes FS; prints an error and returns 1 if saving failed, else 0. */
int cli_close_fs(struct fs *fs);
/* Loads the signing key (ARGS->key or the default); prints the error itself. */
struct key *cli_load_key(const struct cli_args *args);
/* Prints "basefs CMD: [WHAT: ]<error text>" for a negative error code; returns 1. */
int cli_fail(int err, const char *what);
/* Like cli_fail(), but prints REASON (when set) instead of the error's text. */
int cli_fail_reason(int err, const char *what, const char *reason);
/*
 * The shape of every command that signs one change: loads the key
 * (ARGS->key), opens filesystem ARGS->pos[0] for writing, runs
 * WRITE(fs, key, ARGS, CTX, &reason), reports its failure against WHAT (with
 * the filesystem's reason) and closes. Returns the exit status.
 */
typedef int (*cli_write_fn)(struct fs *fs, const struct key *key, const struct cli_args *args,
                            void *ctx, const char **reason);
int cli_write(const struct cli_args *args, const char *what, cli_write_fn write, void *ctx);
/* Formats a time in ns since the epoch as UTC "YYYY-MM-DDTHH:MM:SSZ". */
void cli_format_time(uint64_t ns, char out[32]);
/* Prints an error and returns true unless PATH is absolute (paths in a filesystem start with /). */
bool cli_bad_path(const char *path);
