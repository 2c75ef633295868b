/*
 * Who may mount and how: the exports file (`basefs serve --exports FILE`).
 * A pure module: text in, rules out, (address) -> access decision.
 *
 * Format (one rule per line; '#' starts a comment; blank lines ignored):
 *
 *     NETWORK [OPTION[,OPTION]...]
 *
 *   NETWORK  an IPv4 or IPv6 address with an optional /PREFIX (CIDR):
 *            10.0.0.0/8, 192.168.1.7 (= /32), fd00::/8, ::1 (= /128),
 *            or '*' for every address (0.0.0.0/0 and ::/0). An
 *            IPv4-mapped network (::ffff:10.9.9.0/120) is the IPv4
 *            network it maps (10.9.9.0/24). A network may be named by one
 *            line only (another line for it could never apply: an error).
 *   OPTION   (separated by commas and/or blanks; later ones win)
 *            ro | rw                     read-only (the default) or read-write
 *            root_squash                 uid 0 becomes anonuid/anongid (default)
 *            no_root_squash              uid 0 stays root
 *            all_squash                  every uid becomes anonuid/anongid
 *            anonuid=N, anongid=N        default 65534 (nobody/nogroup)
 *            deny                        refuse this network (alone: with
 *                                        any other option it is an error)
 *
 * A client gets the rule of the most specific network that contains its
 * address (the longest prefix). An IPv4 client connecting over IPv6 as
 * ::ffff:a.b.c.d matches IPv4 rules.
 * Loopback clients (127.0.0.0/8, ::1) that no line matches are trusted as
 * themselves: read-write, no squashing. Any other client no line matches is
 * refused: every MOUNT and NFS call gets MSG_DENIED AUTH_ERROR
 * AUTH_TOOWEAK (what Linux's nfsd answers an unexported client: the
 * client reports "access denied"/EACCES rather than retrying another
 * flavor), with one log line per address. A line for a loopback network
 * overrides the default, so `127.0.0.1/32 ro` makes local mounts
 * read-only and `127.0.0.0/8 deny` refuses them.
 *
 * Without --exports the server behaves as if the file were empty.
 * A parse error gives "line N: reason" and the daemon refuses to start.
 */
#ifndef BASEFS_SERVER_EXPORTS_H
#define BASEFS_SERVER_EXPORTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Limits: a longer file or line, or more rules, is a parse error. */
#define EXPORTS_FILE_MAX (1u << 20)
#define EXPORTS_LINE_MAX 1024
#define EXPORTS_RULES_MAX 4096
#define EXPORTS_ANON_DEFAULT 65534u

enum exports_squash {
  EXPORTS_SQUASH_NONE = 0, /* credentials as sent */
  EXPORTS_SQUASH_ROOT,     /* uid 0 -> anonuid/anongid */
  EXPORTS_SQUASH_ALL,      /* every uid -> anonuid/anongid */
};

/* The decision for one client. The zero value is "allowed, read-write,
 * credentials as sent". */
struct exports_access {
  bool refused;
  bool readonly;
  uint8_t squash; /* enum exports_squash */
  uint32_t anonuid, anongid;
  int line; /* the rule's line number; 0 = a default (loopback or none) */
};

struct exports;

/* Parses TEXT (LEN bytes; NULs are an error). On error returns -EINVAL
 * (or -BFS_ETOOBIG, -ENOMEM) and writes "line N: reason" into err. */
int exports_parse(const char *text, size_t len, struct exports **out, char *err, size_t errlen);
/* Reads and parses PATH; err says "cannot read PATH: ..." or "PATH:
 * line N: reason". */
int exports_load(const char *path, struct exports **out, char *err, size_t errlen);
void exports_free(struct exports *ex);
size_t exports_rules(const struct exports *ex);

/* The networks allowed to mount, for MOUNT's EXPORT (`showmount -e`):
 * "NET/PREFIX" of every line that is not `deny` (and "*" for '*'), then
 * the loopback defaults "127.0.0.0/8" and "::1/128" unless a line covers
 * them exactly. NULL-terminated, owned by EX (valid until exports_free);
 * NULL on allocation failure. */
const char *const *exports_groups(struct exports *ex);

/* True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
bool exports_loopback(const struct sockaddr *addr);

/* The decision for a client at ADDR (port ignored). EX NULL means "no
 * exports configured at all" (unit tests, fuzzers): nobody is refused,
 * loopback is trusted, root from anywhere else is squashed — the
 * server's behaviour before exports existed. An unknown address family
 * is refused (with EX) or squashed (without). */
void exports_check(const struct exports *ex, const struct sockaddr *addr,
                   struct exports_access *out);

/* Applies A's squashing to an AUTH_SYS identity: all_squash maps both to
 * anonuid/anongid; root_squash maps uid 0 to anonuid and gid 0 to
 * anongid, independently (as Linux's nfsd). Returns true when anything
 * was mapped: the caller then drops the supplementary groups. */
bool exports_squash_cred(const struct exports_access *a, uint32_t *uid, uint32_t *gid);

#endif
