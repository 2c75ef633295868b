/* Helpers shared by the filesystem commands: options, opening, keys, errors. */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/error.h"
#include "store/fs.h"
#include "store/key.h"

static bool allowed_has(const char *allowed, const char *name)
{
  size_t n = strlen(name);
  for (const char *p = allowed; p && *p;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    if (len == n && memcmp(p, name, n) == 0)
      return true;
    p = comma ? comma + 1 : NULL;
  }
  return false;
}

int cli_parse(int argc, char **argv, const char *allowed, int min_pos, int max_pos,
              struct cli_args *args)
{
  static const struct option options[] = {
      {"help", no_argument, NULL, 'h'},     {"key", required_argument, NULL, 'k'},
      {"name", required_argument, NULL, 'n'}, {"addr", required_argument, NULL, 'a'},
      {"recursive", no_argument, NULL, 'r'}, {"symbolic", no_argument, NULL, 's'},
      {NULL, 0, NULL, 0}};
  static const struct {
    int c;
    const char *name;
  } names[] = {{'k', "key"}, {'n', "name"}, {'a', "addr"}, {'r', "recursive"}, {'s', "symbolic"}};

  memset(args, 0, sizeof *args);
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, "+:hrs", options, NULL)) != -1 || optind < argc) {
    if (c == -1) {
      /* A positional argument: collect it and go on parsing after it. */
      if (args->npos == CLI_MAX_POSITIONAL || args->npos >= max_pos) {
        return cli_error("too many arguments (near '%s'; see basefs %s --help)", argv[optind],
                         cli_current);
      }
      args->pos[args->npos++] = argv[optind++];
      continue;
    }
    if (c == 'h')
      return cli_usage(0) ? 1 : -1;
    if (c == '?') {
      if (optopt)
        return cli_error("unknown option '-%c' (see basefs %s --help)", optopt, cli_current);
      return cli_error("unknown option '%s' (see basefs %s --help)", argv[optind - 1], cli_current);
    }
    if (c == ':') {
      return cli_error("option '%s' needs an argument", argv[optind - 1]);
    }
    const char *name = NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
      if (names[i].c == c)
        name = names[i].name;
    if (!name || !allowed_has(allowed, name)) {
      return cli_error("option '%s' does not apply to %s (see basefs %s --help)", argv[optind - 1],
                       cli_current, cli_current);
    }
    switch (c) {
    case 'k': args->key = optarg; break;
    case 'n': args->name = optarg; break;
    case 'a':
      if (args->naddrs == CLI_MAX_ADDRS)
        return cli_error("too many --addr options (at most %d)", CLI_MAX_ADDRS);
      args->addrs[args->naddrs++] = optarg;
      break;
    case 'r': args->recursive = true; break;
    case 's': args->symbolic = true; break;
    }
  }
  if (args->npos < min_pos) {
    return cli_error("missing arguments (see basefs %s --help)", cli_current);
  }
  if (!args->key)
    args->key = cli_default_key();
  return 0;
}

int cli_fail(int err, const char *what)
{
  const char *text = err <= -BFS_EFIRST ? bfs_strerror(err) : strerror(-err);
  if (what && *what)
    return cli_error("%s: %s", what, text);
  return cli_error("%s", text);
}

/*
 * The control socket's client end: DIR/ctl, reached through a path relative
 * to DIR (sun_path holds 108 bytes; BASEFS_HOME may be deeper). Frames are
 * a u32 little-endian length and the payload, both ways.
 */
struct ctl_conn {
  int fd;
};

#define CTL_TIMEOUT_S 300

static int io_all(int fd, void *buf, size_t len, bool out)
{
  uint8_t *p = buf;
  while (len) {
    ssize_t n = out ? send(fd, p, len, MSG_NOSIGNAL) : read(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    if (n == 0)
      return -ECONNRESET;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int ctl_send(void *arg, const uint8_t *req, size_t len, uint8_t *resp, size_t cap)
{
  struct ctl_conn *c = arg;
  uint8_t hdr[4] = {(uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16), (uint8_t)(len >> 24)};
  int r = io_all(c->fd, hdr, 4, true);
  if (r == 0)
    r = io_all(c->fd, (void *)req, len, true);
  if (r == 0)
    r = io_all(c->fd, hdr, 4, false);
  if (r < 0)
    return r;
  size_t n = (size_t)hdr[0] | (size_t)hdr[1] << 8 | (size_t)hdr[2] << 16 | (size_t)hdr[3] << 24;
  if (n > cap)
    return -EPROTO;
  r = io_all(c->fd, resp, n, false);
  return r < 0 ? r : (int)n;
}

static struct ctl_conn ctl;

/* Connects to the daemon serving NAME; -ENOENT if none listens. */
static int ctl_connect(const char *name)
{
  char dir[4200];
  snprintf(dir, sizeof dir, "%s/fs/%s", cli_home(), name);
  int here = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (here < 0)
    return -errno;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int r = fd < 0 ? -errno : 0;
  if (r == 0 && chdir(dir) < 0)
    r = -errno;
  if (r == 0) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, "ctl");
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
      r = errno == ECONNREFUSED ? -ENOENT : -errno;
  }
  if (fchdir(here) < 0 && r == 0)
    r = -errno;
  close(here);
  if (r < 0) {
    if (fd >= 0)
      close(fd);
    return r;
  }
  /* A stuck daemon must not hang a command forever (verifying and committing
   * the largest frame takes seconds, so the bound is generous). */
  struct timeval tv = {.tv_sec = CTL_TIMEOUT_S};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ctl.fd = fd;
  return 0;
}

/* Asks the daemon to make what it holds durable, so direct reads see it. */
static bool ctl_sync(const char *name)
{
  char reason[256];
  int r = fs_ctl_sync(ctl_send, &ctl, reason, sizeof reason);
  if (r < 0) {
    if (reason[0])
      cli_error("filesystem %s: the daemon could not sync: %s", name, reason);
    else
      cli_fail(r, "the daemon serving this filesystem did not answer");
    return false;
  }
  return true;
}

struct fs *cli_open_fs(const char *name, bool writer)
{
  struct fs *fs = NULL;
  if (!fs_name_valid(name)) {
    cli_error("'%s' is not a valid filesystem name", name);
    return NULL;
  }
  /* A reader of a served filesystem lets the daemon flush first, then reads directly. */
  if (!writer && ctl_connect(name) == 0) {
    bool synced = ctl_sync(name);
    close(ctl.fd);
    if (!synced)
      return NULL;
  }
  int r = fs_open(cli_home(), name, writer, &fs);
  if (r == -ENOENT) {
    cli_error("no filesystem named '%s' in %s (basefs list shows them)", name, cli_home());
    return NULL;
  }
  if (r == -EBUSY && ctl_connect(name) == 0) {
    /* A daemon owns it: build and sign here, write through its control socket. */
    if (!ctl_sync(name))
      return NULL;
    if ((r = fs_open(cli_home(), name, false, &fs)) == 0 &&
        (r = fs_set_forward(fs, ctl_send, &ctl)) == 0)
      return fs;
    fs_close(fs);
    fs = NULL;
  }
  if (r == -EBUSY) {
    pid_t pid = fs_lock_owner(cli_home(), name);
    if (pid > 0)
      cli_error("filesystem %s is busy: another basefs process is writing it (pid %d)", name,
                (int)pid);
    else
      cli_error("filesystem %s is busy: another basefs process is writing it", name);
    return NULL;
  }
  if (r < 0) {
    char what[256];
    snprintf(what, sizeof what, "cannot open filesystem %s", name);
    cli_fail(r, what);
    return NULL;
  }
  return fs;
}

int cli_close_fs(struct fs *fs)
{
  int r = fs_commit(fs);
  const char *reason = r < 0 ? fs_commit_reason(fs) : NULL;
  if (r < 0 && reason) {
    cli_error("%s", reason);
    fs_close(fs);
    return 1;
  }
  int c = fs_close(fs);
  if (r == 0)
    r = c;
  if (r < 0)
    return cli_fail(r, "cannot save the filesystem");
  return 0;
}

struct key *cli_load_key(const struct cli_args *args)
{
  struct key *key = NULL;
  const char *path = args->key ? args->key : cli_default_key();
  int r = key_load(path, &key);
  if (r < 0) {
    if (r == -ENOENT)
      cli_error("no key at %s (make one with: basefs genkey --key %s)", path, path);
    else {
      char what[4200];
      snprintf(what, sizeof what, "cannot load key %s", path);
      cli_fail(r, what);
    }
    return NULL;
  }
  return key;
}

int cli_write(const struct cli_args *args, const char *what, cli_write_fn write, void *ctx)
{
  struct key *key = cli_load_key(args);
  if (!key)
    return 1;
  struct fs *fs = cli_open_fs(args->pos[0], true);
  if (!fs) {
    key_free(key);
    return 1;
  }
  const char *reason = NULL;
  int r = write(fs, key, args, ctx, &reason);
  key_free(key);
  int status = r < 0 ? cli_fail_reason(r, what, reason) : 0;
  if (cli_close_fs(fs))
    status = 1;
  return status;
}

int cli_fail_reason(int err, const char *what, const char *reason)
{
  if (!reason || !*reason)
    return cli_fail(err, what);
  if (what && *what)
    return cli_error("%s: %s", what, reason);
  return cli_error("%s", reason);
}

void cli_format_time(uint64_t ns, char out[32])
{
  time_t t = (time_t)(ns / 1000000000u);
  struct tm tm;
  if (!gmtime_r(&t, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
    snprintf(out, 32, "%llu", (unsigned long long)(ns / 1000000000u));
}

bool cli_bad_path(const char *path)
{
  if (path && path[0] == '/')
    return false;
  cli_error("'%s' is not a path in the filesystem (paths start with /)", path ? path : "");
  return true;
}
