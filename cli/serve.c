/*
 * basefs serve NAME [--nfs ADDR:PORT]... [--key FILE]   (also: basefs run)
 *
 * Serves filesystem NAME over NFSv3 (+ MOUNT on the same port) in the
 * foreground until SIGTERM or SIGINT, which seal staged writes and exit 0.
 * --nfs may be repeated (not with the same address: an error, as is a
 * second --exports or --key); without it the peer listens on 127.0.0.1:2049 and,
 * if the host has IPv6, [::1]:2049; each address serves TCP and (unless
 * --no-udp) UDP on the same port. --exports FILE says which other clients
 * may mount and how (server/exports.h); without it only loopback clients
 * are served.
 * Log lines go to stderr as "LEVEL: message". --key signs NFS writes
 * (default $BASEFS_HOME/id_ec); without a key file the peer serves
 * read-only. --verbose adds debug lines (one per sealed version).
 * --spin-us N: after a reply, poll the connection N microseconds for the
 * next call before sleeping (default 50; 0 = never; see server/tcp.h):
 * cuts the latency of one-call-at-a-time clients, costs at most N us of CPU
 * per call of a slow client, nothing when idle.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "server/daemon.h"
#include "server/tcp.h"
#include "store/error.h"
#include "store/fs.h"

static const char *const level_names[] = {"error", "warning", "info", "debug"};

static void log_line(void *ctx, int level, const char *line)
{
  int max = *(int *)ctx;
  if (level > max)
    return;
  if (level < 0 || level > NFSD_LOG_DEBUG)
    level = NFSD_LOG_ERROR;
  fprintf(stderr, "%s: %s\n", level_names[level], line);
  fflush(stderr);
}

static int run_serve(int argc, char **argv)
{
  static const struct option options[] = {
      {"nfs", required_argument, NULL, 'n'},
      {"key", required_argument, NULL, 'k'},
      {"exports", required_argument, NULL, 'e'},
      {"no-udp", no_argument, NULL, 'U'},
      {"portmap", no_argument, NULL, 'P'},
      {"spin-us", required_argument, NULL, 's'},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *key = NULL;
  struct daemon_config cfg = {.spin_us = TCPSRV_SPIN_DEFAULT_NS / 1000};
  int max_level = NFSD_LOG_INFO;
  int c;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":n:k:e:Us:vh", options, NULL)) != -1) {
    switch (c) {
    case 'n':
      if (cfg.naddrs == DAEMON_ADDRS_MAX)
        return cli_error("at most %d --nfs addresses", DAEMON_ADDRS_MAX);
      cfg.addrs[cfg.naddrs++] = optarg;
      break;
    case 'k':
      if (key)
        return cli_error("--key given twice ('%s' and '%s')", key, optarg);
      key = optarg;
      break;
    case 'e':
      if (cfg.exports_path)
        return cli_error("--exports given twice ('%s' and '%s')", cfg.exports_path, optarg);
      cfg.exports_path = optarg;
      break;
    case 'U': cfg.no_udp = true; break;
    case 'P': cfg.portmap = true; break;
    case 's':
      if (daemon_parse_spin_us(optarg, &cfg.spin_us) < 0)
        return cli_error("--spin-us takes microseconds from 0 to %d, not '%s'", DAEMON_SPIN_US_MAX,
                         optarg);
      break;
    case 'v': max_level = NFSD_LOG_DEBUG; break;
    case 'h': return cli_usage(0);
    case ':': return cli_error("option '%s' needs a value", argv[optind - 1]);
    default: return cli_error("unknown option '%s' (see basefs %s --help)", argv[optind - 1], cli_current);
    }
  }
  if (optind != argc - 1)
    return cli_error("needs exactly one filesystem NAME (see basefs %s --help)", cli_current);
  const char *name = argv[optind];
  if (!fs_name_valid(name))
    return cli_error("'%s' is not a valid filesystem name", name);
  int rep = daemon_repeated_addr(cfg.addrs, cfg.naddrs);
  if (rep >= 0)
    return cli_error("--nfs %s given twice", cfg.addrs[rep]);
  if (cfg.naddrs == 0) {
    cfg.addrs[0] = "127.0.0.1:2049";
    cfg.addrs[1] = "[::1]:2049";
    cfg.optional[1] = true;
    cfg.naddrs = 2;
  }
  cfg.home = cli_home();
  cfg.name = name;
  cfg.key_path = key ? key : cli_default_key();
  cfg.log = log_line;
  cfg.log_ctx = &max_level;
  const char *why = NULL, *what = NULL;
  int r = daemon_run(&cfg, &why, &what);
  if (r == 0)
    return 0;
  if (r == -EBUSY) {
    pid_t pid = fs_lock_owner(cli_home(), name);
    if (pid > 0)
      return cli_error("filesystem %s is already in use by process %d (another serve, or a "
                       "command writing to it)", name, (int)pid);
    return cli_error("filesystem %s is already in use by another process", name);
  }
  if (r == -ENOENT && why && strcmp(why, "open") == 0)
    return cli_error("no filesystem named %s in %s", name, cli_home());
  if (why && strcmp(why, "address") == 0)
    return cli_error("bad --nfs address '%s' (want ADDR:PORT or [V6ADDR]:PORT)", what);
  if (why && strcmp(why, "listen") == 0)
    return cli_error("cannot listen on %s: %s", what, bfs_strerror(r));
  if (why && strcmp(why, "exports") == 0)
    return cli_error("%s", what);
  if (why && strcmp(why, "control socket") == 0)
    return cli_error("cannot create the control socket in %s: %s", what, bfs_strerror(r));
  if (why && strcmp(why, "portmap") == 0)
    return cli_error("--portmap: cannot answer port mapping on port 111: %s (is rpcbind running? "
                     "then leave --portmap out)", bfs_strerror(r));
  if (why && strcmp(why, "key") == 0)
    return cli_error("cannot load key %s: %s", cfg.key_path, bfs_strerror(r));
  return cli_error("%s%s%s", why ? why : "", why ? ": " : "", bfs_strerror(r));
}

CLI_COMMAND(serve, "serve", "serve NAME [--nfs ADDR:PORT]... [--key FILE] [--exports FILE] [--no-udp] [--portmap] [--spin-us N] [--verbose]",
            "serve a filesystem over NFSv3 in the foreground", run_serve)
CLI_COMMAND(run, "run", "run NAME [--nfs ADDR:PORT]... [--key FILE] [--exports FILE] [--no-udp] [--portmap] [--spin-us N] [--verbose]",
            "the same as serve (BaseFS's name)", run_serve)
