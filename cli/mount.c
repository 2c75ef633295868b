/*
 * basefs mount NAME DIR [serve options]
 *
 * Serves filesystem NAME (as `basefs serve NAME [serve options]`, in a
 * child process) and mounts it on DIR with the host's kernel NFS client:
 *
 *     mount -t nfs -o vers=3,nolock,proto=tcp,port=P,mountport=P,mountproto=tcp ADDR:/basefs DIR
 *
 * with ADDR:P the first --nfs address (default 127.0.0.1:2049; a wildcard
 * address, 0.0.0.0 or ::, is reached at 127.0.0.1 or ::1). It stays in
 * the foreground; SIGINT/SIGTERM unmount DIR (lazily if it is busy), then
 * stop the server (which seals staged writes). If the server stops on its
 * own, DIR is unmounted lazily and its exit status returned.
 *
 * Where the host has no kernel NFS client (no "nfs" in /proc/filesystems and
 * no nfs module for the running kernel), nothing is started: it says why,
 * prints the lines to use elsewhere (the short `mount -t nfs -o
 * vers=3,nolock` form only where it can work: port 2049 with rpcbind, or
 * --portmap), and exits 1. Options are checked as serve checks them before
 * anything is printed or started. If mount(8) fails, its
 * message is repeated, the server is stopped, and it exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "server/daemon.h"
#include "server/exports.h"
#include "server/tcp.h"
#include "store/fs.h"

#define READY_TIMEOUT_MS 30000

/* Does the kernel have an NFS client (built in, loaded, or loadable)? */
static bool nfs_client(char *why, size_t cap)
{
  FILE *f = fopen("/proc/filesystems", "r");
  if (f) {
    char line[128];
    while (fgets(line, sizeof line, f)) {
      char *t = strrchr(line, '\t');
      t = t ? t + 1 : line;
      t[strcspn(t, "\n")] = 0;
      if (strcmp(t, "nfs") == 0) {
        fclose(f);
        return true;
      }
    }
    fclose(f);
  }
  struct utsname u;
  char path[400] = "";
  if (uname(&u) == 0) {
    snprintf(path, sizeof path, "/lib/modules/%s/kernel/fs/nfs", u.release);
    struct stat st;
    if (stat(path, &st) == 0)
      return true; /* mount(8) makes the kernel load it */
  }
  snprintf(why, cap,
           "this host has no kernel NFS client: /proc/filesystems lists no 'nfs' and there is "
           "no %s",
           path[0] ? path : "nfs module");
  return false;
}

static bool mount_helper(void)
{
  return access("/sbin/mount.nfs", X_OK) == 0 || access("/usr/sbin/mount.nfs", X_OK) == 0;
}

/* Splits "ADDR:PORT" / "[V6]:PORT" into host (no brackets) and port. */
static int split_addr(const char *a, char *host, size_t cap, int *port)
{
  struct sockaddr_storage ss;
  if (tcpsrv_parse_addr(a, &ss) < 0)
    return -EINVAL;
  const char *colon = strrchr(a, ':');
  const char *h = a;
  size_t n = (size_t)(colon - a);
  if (a[0] == '[') {
    h = a + 1;
    n -= 2;
  }
  if (n >= cap)
    return -EINVAL;
  memcpy(host, h, n);
  host[n] = 0;
  *port = atoi(colon + 1);
  return 0;
}

/* A wildcard listen address (0.0.0.0, ::) is reached at loopback. */
static void reachable_host(char *host, size_t cap)
{
  struct in6_addr a6;
  struct in_addr a4;
  if (inet_pton(AF_INET, host, &a4) == 1 && a4.s_addr == htonl(INADDR_ANY))
    snprintf(host, cap, "127.0.0.1");
  else if (inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_UNSPECIFIED(&a6))
    snprintf(host, cap, "::1");
}

/* The short mount line works where a port mapper tells the client our
 * port: rpcbind knows it only for port 2049 (server/daemon.h), --portmap
 * answers for any port. */
static void print_lines(const char *name, char **opts, int nopts, const char *host, int port,
                        bool portmap, const char *dir)
{
  bool v6 = strchr(host, ':') != NULL;
  char serve[1024] = "", src[80];
  for (int i = 0; i < nopts; i++) {
    size_t l = strlen(serve);
    snprintf(serve + l, sizeof serve - l, " %s", opts[i]);
  }
  snprintf(src, sizeof src, "%s%s%s:/basefs", v6 ? "[" : "", host, v6 ? "]" : "");
  fprintf(stderr,
          "basefs mount: serve it with:   basefs serve %s%s\n"
          "basefs mount: and mount it from a host with an NFS client (as root) with:\n"
          "    mount -t nfs -o vers=3,nolock,proto=tcp,port=%d,mountport=%d,mountproto=tcp "
          "%s %s\n",
          name, serve, port, port, src, dir);
  if (portmap)
    fprintf(stderr, "basefs mount: (with --portmap this is enough: mount -t nfs -o vers=3,nolock %s %s)\n",
            src, dir);
  else if (port == 2049)
    fprintf(stderr,
            "basefs mount: (a host running rpcbind needs only: mount -t nfs -o vers=3,nolock %s %s)\n",
            src, dir);
  else
    fprintf(stderr,
            "basefs mount: (the short form, mount -t nfs -o vers=3,nolock %s %s, needs port 2049 "
            "with rpcbind, or --portmap)\n",
            src, dir);
}

/* True once ADDR accepts TCP connections. */
static bool answers(const char *addr)
{
  struct sockaddr_storage ss;
  if (tcpsrv_parse_addr(addr, &ss) < 0)
    return false;
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return false;
  socklen_t len = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  bool ok = connect(fd, (struct sockaddr *)&ss, len) == 0;
  close(fd);
  return ok;
}

/* Runs argv, its stderr into err (one line kept). Returns the exit status
 * or -errno. */
static int run(char *const argv[], char *err, size_t cap)
{
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) < 0)
    return -errno;
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(pfd[0]);
    close(pfd[1]);
    return -e;
  }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    dup2(pfd[1], 2);
    dup2(pfd[1], 1);
    execvp(argv[0], argv);
    fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  close(pfd[1]);
  size_t n = 0;
  char buf[512];
  ssize_t k;
  err[0] = 0;
  while ((k = read(pfd[0], buf, sizeof buf)) > 0 || (k < 0 && errno == EINTR))
    for (ssize_t i = 0; i < k; i++)
      if (n + 1 < cap && buf[i] != '\n')
        err[n++] = buf[i];
      else if (buf[i] == '\n' && n + 2 < cap && n > 0)
        err[n++] = ' ';
  while (n > 0 && err[n - 1] == ' ')
    n--;
  if (cap)
    err[n < cap ? n : cap - 1] = 0;
  close(pfd[0]);
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      return -errno;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void unmount(const char *dir)
{
  char err[512];
  char *um[] = {"umount", (char *)dir, NULL};
  if (run(um, err, sizeof err) == 0)
    return;
  char *lazy[] = {"umount", "-l", (char *)dir, NULL};
  if (run(lazy, err, sizeof err) != 0)
    fprintf(stderr, "warning: could not unmount %s: %s\n", dir, err);
}

static int stop_server(pid_t pid)
{
  kill(pid, SIGTERM);
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      return 1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

static int run_mount(int argc, char **argv)
{
  static const struct option options[] = {
      {"nfs", required_argument, NULL, 'n'},  {"key", required_argument, NULL, 'k'},
      {"exports", required_argument, NULL, 'e'}, {"portmap", no_argument, NULL, 'p'},
      {"no-udp", no_argument, NULL, 'U'},    {"spin-us", required_argument, NULL, 's'},
      {"verbose", no_argument, NULL, 'v'},    {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  /* The serve command line: serve NAME + every serve option as given. */
  char **sargv = calloc((size_t)argc + 4, sizeof *sargv);
  if (!sargv)
    return cli_error("out of memory");
  int sargc = 0;
  const char *first_nfs = NULL, *exports = NULL, *key = NULL;
  const char *nfs[DAEMON_ADDRS_MAX]; /* every --nfs */
  int nnfs = 0;
  bool portmap = false;
  int c;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":n:k:e:s:pvh", options, NULL)) != -1) {
    /* Checked here as serve checks them: a line printed for another host
     * must not carry a value serve would refuse. */
    struct sockaddr_storage ss;
    unsigned us;
    if (c == 'n' && tcpsrv_parse_addr(optarg, &ss) < 0) {
      free(sargv);
      return cli_error("bad --nfs address '%s' (want ADDR:PORT or [V6ADDR]:PORT)", optarg);
    }
    if (c == 'n' && nnfs == DAEMON_ADDRS_MAX) {
      free(sargv);
      return cli_error("at most %d --nfs addresses", DAEMON_ADDRS_MAX);
    }
    if (c == 's' && daemon_parse_spin_us(optarg, &us) < 0) {
      free(sargv);
      return cli_error("--spin-us takes microseconds from 0 to %d, not '%s'", DAEMON_SPIN_US_MAX,
                       optarg);
    }
    switch (c) {
    case 'n':
      if (!first_nfs)
        first_nfs = optarg;
      /* fall through */
    case 'k':
    case 'e':
    case 's':
      if ((c == 'e' && exports) || (c == 'k' && key)) {
        free(sargv);
        return cli_error("--%s given twice ('%s' and '%s')", c == 'e' ? "exports" : "key",
                         c == 'e' ? exports : key, optarg);
      }
      if (c == 'e')
        exports = optarg;
      if (c == 'k')
        key = optarg;
      if (c == 'n')
        nfs[nnfs++] = optarg;
      sargv[sargc++] = c == 'n' ? "--nfs" : c == 'k' ? "--key" : c == 'e' ? "--exports" : "--spin-us";
      sargv[sargc++] = optarg;
      break;
    case 'p':
      portmap = true;
      sargv[sargc++] = "--portmap";
      break;
    case 'U': sargv[sargc++] = "--no-udp"; break;
    case 'v': sargv[sargc++] = "--verbose"; break;
    case 'h': free(sargv); return cli_usage(0);
    case ':': free(sargv); return cli_error("option '%s' needs a value", argv[optind - 1]);
    default:
      free(sargv);
      return cli_error("unknown option '%s' (see basefs %s --help)", argv[optind - 1], cli_current);
    }
  }
  if (optind != argc - 2) {
    free(sargv);
    return cli_error("needs a filesystem NAME and a directory DIR (see basefs %s --help)",
                     cli_current);
  }
  int rep = daemon_repeated_addr(nfs, nnfs);
  if (rep >= 0) {
    free(sargv);
    return cli_error("--nfs %s given twice", nfs[rep]);
  }
  const char *name = argv[optind], *dir = argv[optind + 1];
  if (!fs_name_valid(name)) {
    free(sargv);
    return cli_error("'%s' is not a valid filesystem name", name);
  }
  const char *addr = first_nfs ? first_nfs : "127.0.0.1:2049";
  char host[64];
  int port;
  if (split_addr(addr, host, sizeof host, &port) < 0) {
    free(sargv);
    return cli_error("bad --nfs address '%s' (want ADDR:PORT or [V6ADDR]:PORT)", addr);
  }
  if (port == 0) {
    free(sargv);
    return cli_error("--nfs %s: mount needs a fixed port, not 0", addr);
  }
  if (exports) {
    struct exports *ex = NULL;
    char eerr[512];
    int er = exports_load(exports, &ex, eerr, sizeof eerr);
    exports_free(ex);
    if (er < 0) {
      free(sargv);
      return cli_error("%s", eerr);
    }
  }
  reachable_host(host, sizeof host);
  bool v6 = strchr(host, ':') != NULL;
  char reach[96]; /* where this host reaches the server */
  snprintf(reach, sizeof reach, "%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", port);
  char why[512];
  if (!nfs_client(why, sizeof why)) {
    fprintf(stderr, "basefs mount: cannot mount here: %s\n", why);
    print_lines(name, sargv, sargc, host, port, portmap, dir);
    free(sargv);
    return 1;
  }
  struct stat st;
  if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
    free(sargv);
    return cli_error("%s is not a directory", dir);
  }

  /* Signals are taken synchronously below; the server child restores them. */
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set, &old);

  /* serve NAME OPTIONS... (argv[0] first) */
  memmove(sargv + 3, sargv, (size_t)sargc * sizeof *sargv);
  sargv[0] = "basefs";
  sargv[1] = "serve";
  sargv[2] = (char *)name;
  sargv[sargc + 3] = NULL;
  pid_t server = fork();
  if (server < 0) {
    free(sargv);
    return cli_error("fork: %s", strerror(errno));
  }
  if (server == 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    execv("/proc/self/exe", sargv);
    fprintf(stderr, "basefs mount: cannot start the server: %s\n", strerror(errno));
    _exit(127);
  }
  free(sargv);

  /* Wait until it answers (or dies). */
  bool ready = false;
  for (int waited = 0; waited < READY_TIMEOUT_MS && !ready; waited += 50) {
    int wst;
    if (waitpid(server, &wst, WNOHANG) == server)
      return cli_error("the server exited before mounting (status %d)",
                       WIFEXITED(wst) ? WEXITSTATUS(wst) : 128 + WTERMSIG(wst));
    ready = answers(reach);
    if (!ready)
      poll(NULL, 0, 50);
  }
  if (!ready) {
    stop_server(server);
    return cli_error("the server did not answer on %s within %d s", reach, READY_TIMEOUT_MS / 1000);
  }

  char opts[256], src[128], err[512];
  int k = snprintf(opts, sizeof opts, "vers=3,nolock,proto=tcp,port=%d,mountport=%d,mountproto=tcp",
                   port, port);
  if (!mount_helper() && k > 0 && (size_t)k < sizeof opts) /* the kernel parses them itself */
    snprintf(opts + k, sizeof opts - (size_t)k, ",addr=%s,mountaddr=%s", host, host);
  snprintf(src, sizeof src, "%s%s%s:/basefs", v6 ? "[" : "", host, v6 ? "]" : "");
  char *mnt[] = {"mount", "-t", "nfs", "-o", opts, src, (char *)dir, NULL};
  int mr = run(mnt, err, sizeof err);
  if (mr != 0) {
    stop_server(server);
    if (mr < 0)
      return cli_error("cannot run mount(8): %s", strerror(-mr));
    return cli_error("mount -t nfs -o %s %s %s failed: %s", opts, src, dir,
                     err[0] ? err : "(no message)");
  }
  fprintf(stderr, "info: %s mounted on %s (Ctrl-C or SIGTERM unmounts and stops)\n", name, dir);

  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&set, &si);
    if (sig < 0)
      continue;
    if (sig == SIGCHLD) {
      int wst;
      if (waitpid(server, &wst, WNOHANG) != server)
        continue;
      fprintf(stderr, "warning: the server stopped; unmounting %s\n", dir);
      char *lazy[] = {"umount", "-l", (char *)dir, NULL};
      run(lazy, err, sizeof err);
      return WIFEXITED(wst) && WEXITSTATUS(wst) != 0 ? WEXITSTATUS(wst) : 1;
    }
    unmount(dir);
    return stop_server(server);
  }
}

CLI_COMMAND(mount, "mount",
            "mount NAME DIR [--nfs ADDR:PORT]... [--key FILE] [--exports FILE] [--portmap] [--no-udp] [--spin-us N] "
            "[--verbose]",
            "serve a filesystem and mount it on DIR with the kernel NFS client", run_mount)
