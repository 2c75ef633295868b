/* The exports file; see exports.h. */
#include "server/exports.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/error.h"

struct rule {
  uint8_t addr[16]; /* IPv4 rules keep their 4 bytes first */
  bool v4;
  unsigned prefix;  /* 0..32 or 0..128 */
  struct exports_access access;
};

struct exports {
  struct rule *rules;
  size_t n;
  char **groups; /* exports_groups(), built on first use */
};

static int fail(char *err, size_t errlen, int line, int rc, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(char *err, size_t errlen, int line, int rc, const char *fmt, ...)
{
  if (err && errlen) {
    int k = line > 0 ? snprintf(err, errlen, "line %d: ", line) : 0;
    if (k < 0)
      k = 0;
    if ((size_t)k < errlen) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
      va_end(ap);
    }
  }
  return rc;
}

/* A token for messages: printable, clipped. */
static void clip(const char *s, size_t n, char *out, size_t cap)
{
  size_t k = 0;
  for (size_t i = 0; i < n && k + 4 < cap; i++)
    out[k++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
  if (n > 0 && k < n && k + 4 <= cap) {
    memcpy(out + k, "...", 3);
    k += 3;
  }
  out[k] = 0;
}

static bool parse_uint32(const char *s, size_t n, uint32_t *v)
{
  if (n == 0 || n > 10)
    return false;
  uint64_t x = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    x = x * 10 + (uint64_t)(s[i] - '0');
  }
  if (x > UINT32_MAX)
    return false;
  *v = (uint32_t)x;
  return true;
}

static int parse_network(const char *s, size_t n, struct rule *r, char *err, size_t errlen,
                         int line)
{
  char tok[80];
  clip(s, n, tok, sizeof tok);
  if (n == 1 && s[0] == '*') {
    memset(r->addr, 0, sizeof r->addr);
    r->v4 = false; /* handled by the matcher: prefix 0 of either family */
    r->prefix = 0;
    return 1; /* '*' */
  }
  const char *slash = memchr(s, '/', n);
  size_t alen = slash ? (size_t)(slash - s) : n;
  char a[INET6_ADDRSTRLEN + 1];
  if (alen == 0 || alen >= sizeof a)
    return fail(err, errlen, line, -EINVAL, "'%s' is not an IPv4 or IPv6 address", tok);
  memcpy(a, s, alen);
  a[alen] = 0;
  unsigned max;
  memset(r->addr, 0, sizeof r->addr);
  if (inet_pton(AF_INET, a, r->addr) == 1) {
    r->v4 = true;
    max = 32;
  } else if (inet_pton(AF_INET6, a, r->addr) == 1) {
    r->v4 = false;
    max = 128;
  } else {
    return fail(err, errlen, line, -EINVAL, "'%s' is not an IPv4 or IPv6 address", tok);
  }
  r->prefix = max;
  if (slash) {
    uint32_t p;
    if (!parse_uint32(slash + 1, n - alen - 1, &p))
      return fail(err, errlen, line, -EINVAL, "'%s': the prefix length is not a number", tok);
    if (p > max)
      return fail(err, errlen, line, -EINVAL, "'%s': prefix length %u is over %u", tok, p, max);
    r->prefix = p;
  }
  /* Host bits set (10.1.2.3/8) are a typo more often than not: refuse. */
  for (unsigned bit = r->prefix; bit < max; bit++)
    if (r->addr[bit / 8] & (0x80 >> (bit % 8)))
      return fail(err, errlen, line, -EINVAL, "'%s': address bits set past the /%u prefix", tok,
                  r->prefix);
  /* An IPv4-mapped network (::ffff:10.9.9.0/120) is the IPv4 network it
   * maps: clients are matched as IPv4 (exports_check), so as an IPv6 rule
   * it could never match. */
  static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};
  if (!r->v4 && r->prefix >= 96 && memcmp(r->addr, mapped, 12) == 0) {
    memmove(r->addr, r->addr + 12, 4);
    memset(r->addr + 4, 0, 12);
    r->v4 = true;
    r->prefix -= 96;
  }
  return 0;
}

static int parse_option(const char *s, size_t n, struct exports_access *a, char *err,
                        size_t errlen, int line)
{
  char tok[80];
  clip(s, n, tok, sizeof tok);
#define IS(lit) (n == sizeof(lit) - 1 && memcmp(s, lit, n) == 0)
  if (IS("ro"))
    a->readonly = true;
  else if (IS("rw"))
    a->readonly = false;
  else if (IS("root_squash"))
    a->squash = EXPORTS_SQUASH_ROOT;
  else if (IS("no_root_squash"))
    a->squash = EXPORTS_SQUASH_NONE;
  else if (IS("all_squash"))
    a->squash = EXPORTS_SQUASH_ALL;
  else if (IS("deny"))
    a->refused = true;
  else if (n > 8 && memcmp(s, "anonuid=", 8) == 0) {
    if (!parse_uint32(s + 8, n - 8, &a->anonuid))
      return fail(err, errlen, line, -EINVAL, "'%s': anonuid wants a number up to 4294967295",
                  tok);
  } else if (n > 8 && memcmp(s, "anongid=", 8) == 0) {
    if (!parse_uint32(s + 8, n - 8, &a->anongid))
      return fail(err, errlen, line, -EINVAL, "'%s': anongid wants a number up to 4294967295",
                  tok);
  } else {
    return fail(err, errlen, line, -EINVAL,
                "unknown option '%s' (want ro, rw, root_squash, no_root_squash, all_squash, "
                "anonuid=N, anongid=N, deny)",
                tok);
  }
#undef IS
  return 0;
}

static bool blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

static int parse_line(const char *s, size_t n, int line, struct exports *ex, char *err,
                      size_t errlen)
{
  const char *hash = memchr(s, '#', n);
  if (hash)
    n = (size_t)(hash - s);
  size_t i = 0;
  while (i < n && blank(s[i]))
    i++;
  if (i == n)
    return 0;
  size_t start = i;
  while (i < n && !blank(s[i]))
    i++;
  struct rule r = {.access = {.squash = EXPORTS_SQUASH_ROOT,
                              .readonly = true,
                              .anonuid = EXPORTS_ANON_DEFAULT,
                              .anongid = EXPORTS_ANON_DEFAULT,
                              .line = line}};
  int star = parse_network(s + start, i - start, &r, err, errlen, line);
  if (star < 0)
    return star;
  char net[80];
  clip(s + start, i - start, net, sizeof net);
  /* Options: tokens split by commas and blanks. */
  int nopts = 0;
  for (;; nopts++) {
    while (i < n && (blank(s[i]) || s[i] == ','))
      i++;
    if (i == n)
      break;
    start = i;
    while (i < n && !blank(s[i]) && s[i] != ',')
      i++;
    int rc = parse_option(s + start, i - start, &r.access, err, errlen, line);
    if (rc < 0)
      return rc;
  }
  if (r.access.refused && nopts > 1)
    return fail(err, errlen, line, -EINVAL,
                "'deny' cannot be combined with other options (a denied network gets nothing)");
  /* The same network twice: the later line could never apply. */
  for (size_t k = 0; k < ex->n; k++) {
    const struct rule *o = &ex->rules[k];
    bool same = o->prefix == r.prefix && (star ? o->prefix == 0
                                               : o->v4 == r.v4 && memcmp(o->addr, r.addr, 16) == 0);
    if (same)
      return fail(err, errlen, line, -EINVAL,
                  "'%s' is the network of line %d already (only one line may name it)", net,
                  o->access.line);
  }
  size_t need = star ? 2 : 1;
  if (ex->n + need > EXPORTS_RULES_MAX)
    return fail(err, errlen, line, -BFS_ETOOBIG, "more than %u rules", EXPORTS_RULES_MAX);
  struct rule *nr = realloc(ex->rules, (ex->n + need) * sizeof *nr);
  if (!nr)
    return fail(err, errlen, line, -ENOMEM, "out of memory");
  ex->rules = nr;
  if (star) {
    r.v4 = true;
    ex->rules[ex->n++] = r;
    r.v4 = false;
  }
  ex->rules[ex->n++] = r;
  return 0;
}

int exports_parse(const char *text, size_t len, struct exports **out, char *err, size_t errlen)
{
  *out = NULL;
  if (err && errlen)
    err[0] = 0;
  if (len > EXPORTS_FILE_MAX)
    return fail(err, errlen, 0, -BFS_ETOOBIG, "over %u bytes", EXPORTS_FILE_MAX);
  struct exports *ex = calloc(1, sizeof *ex);
  if (!ex)
    return -ENOMEM;
  size_t pos = 0;
  int line = 0;
  while (pos < len) {
    line++;
    const char *nl = memchr(text + pos, '\n', len - pos);
    size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
    int rc = 0;
    if (memchr(text + pos, 0, n))
      rc = fail(err, errlen, line, -EINVAL, "a NUL byte (not a text file?)");
    else if (n > EXPORTS_LINE_MAX)
      rc = fail(err, errlen, line, -EINVAL, "longer than %u bytes", EXPORTS_LINE_MAX);
    else
      rc = parse_line(text + pos, n, line, ex, err, errlen);
    if (rc < 0) {
      exports_free(ex);
      return rc;
    }
    pos += n + (nl ? 1 : 0);
  }
  *out = ex;
  return 0;
}

int exports_load(const char *path, struct exports **out, char *err, size_t errlen)
{
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return fail(err, errlen, 0, -e, "cannot read %s: %s", path, strerror(e));
  }
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  int rc = buf ? 0 : -ENOMEM;
  while (rc == 0) {
    if (len == cap) {
      if (cap > EXPORTS_FILE_MAX) {
        rc = fail(err, errlen, 0, -BFS_ETOOBIG, "%s: over %u bytes", path, EXPORTS_FILE_MAX);
        break;
      }
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        rc = -ENOMEM;
        break;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t k = read(fd, buf + len, cap - len);
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0) {
      int e = errno;
      rc = fail(err, errlen, 0, -e, "cannot read %s: %s", path, strerror(e));
    } else if (k == 0) {
      break;
    } else {
      len += (size_t)k;
    }
  }
  close(fd);
  if (rc == 0) {
    char msg[256] = "";
    rc = exports_parse(buf, len, out, msg, sizeof msg);
    if (rc < 0)
      fail(err, errlen, 0, rc, "%s: %s", path, msg);
  }
  free(buf);
  return rc;
}

void exports_free(struct exports *ex)
{
  if (!ex)
    return;
  for (char **g = ex->groups; g && *g; g++)
    free(*g);
  free(ex->groups);
  free(ex->rules);
  free(ex);
}

size_t exports_rules(const struct exports *ex) { return ex ? ex->n : 0; }

const char *const *exports_groups(struct exports *ex)
{
  if (ex->groups)
    return (const char *const *)ex->groups;
  char **g = calloc(ex->n + 3, sizeof *g);
  if (!g)
    return NULL;
  size_t k = 0;
  bool lo4 = false, lo6 = false, fail = false;
  for (size_t i = 0; i < ex->n && !fail; i++) {
    const struct rule *r = &ex->rules[i];
    if (r->prefix == 0 && i + 1 < ex->n && ex->rules[i + 1].prefix == 0 && r->v4 &&
        !ex->rules[i + 1].v4 && r->access.line == ex->rules[i + 1].access.line) {
      if (!r->access.refused && !(g[k++] = strdup("*")))
        fail = true;
      lo4 = lo6 = true;
      i++; /* '*' is two rules */
      continue;
    }
    char a[INET6_ADDRSTRLEN], one[INET6_ADDRSTRLEN + 8];
    inet_ntop(r->v4 ? AF_INET : AF_INET6, r->addr, a, sizeof a);
    snprintf(one, sizeof one, "%s/%u", a, r->prefix);
    if (strcmp(one, "127.0.0.0/8") == 0)
      lo4 = true;
    if (strcmp(one, "::1/128") == 0)
      lo6 = true;
    if (!r->access.refused && !(g[k++] = strdup(one)))
      fail = true;
  }
  if (!fail && !lo4 && !(g[k++] = strdup("127.0.0.0/8")))
    fail = true;
  if (!fail && !lo6 && !(g[k++] = strdup("::1/128")))
    fail = true;
  if (fail) {
    for (size_t i = 0; i < k; i++)
      free(g[i]);
    free(g);
    return NULL;
  }
  ex->groups = g;
  return (const char *const *)g;
}

/* ADDR as 16 bytes (IPv4: 4 bytes first) and its family; false for other
 * families. IPv4-mapped IPv6 addresses become IPv4. */
static bool addr_bytes(const struct sockaddr *sa, uint8_t b[16], bool *v4)
{
  memset(b, 0, 16);
  if (!sa)
    return false;
  if (sa->sa_family == AF_INET) {
    memcpy(b, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    *v4 = true;
    return true;
  }
  if (sa->sa_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a)) {
      memcpy(b, a->s6_addr + 12, 4);
      *v4 = true;
    } else {
      memcpy(b, a->s6_addr, 16);
      *v4 = false;
    }
    return true;
  }
  return false;
}

static bool bytes_loopback(const uint8_t b[16], bool v4)
{
  if (v4)
    return b[0] == 127;
  static const uint8_t one[16] = {[15] = 1};
  return memcmp(b, one, 16) == 0;
}

bool exports_loopback(const struct sockaddr *addr)
{
  uint8_t b[16];
  bool v4;
  return addr_bytes(addr, b, &v4) && bytes_loopback(b, v4);
}

static bool prefix_match(const uint8_t *a, const uint8_t *net, unsigned prefix)
{
  unsigned full = prefix / 8, rest = prefix % 8;
  if (memcmp(a, net, full) != 0)
    return false;
  if (rest == 0)
    return true;
  uint8_t mask = (uint8_t)(0xff << (8 - rest));
  return (a[full] & mask) == (net[full] & mask);
}

void exports_check(const struct exports *ex, const struct sockaddr *addr,
                   struct exports_access *out)
{
  uint8_t b[16];
  bool v4 = false;
  bool known = addr_bytes(addr, b, &v4);
  bool loop = known && bytes_loopback(b, v4);
  memset(out, 0, sizeof *out);
  out->anonuid = out->anongid = EXPORTS_ANON_DEFAULT;
  if (!ex) {
    out->squash = loop ? EXPORTS_SQUASH_NONE : EXPORTS_SQUASH_ROOT;
    return;
  }
  const struct rule *best = NULL;
  if (known)
    for (size_t i = 0; i < ex->n; i++) {
      const struct rule *r = &ex->rules[i];
      if (r->v4 != v4 || !prefix_match(b, r->addr, r->prefix))
        continue;
      if (!best || r->prefix > best->prefix)
        best = r;
    }
  if (best) {
    *out = best->access;
    return;
  }
  if (loop)
    return; /* trusted as itself: allowed, read-write, no squash */
  out->refused = true;
}

bool exports_squash_cred(const struct exports_access *a, uint32_t *uid, uint32_t *gid)
{
  if (a->squash == EXPORTS_SQUASH_ALL) {
    *uid = a->anonuid;
    *gid = a->anongid;
    return true;
  }
  if (a->squash != EXPORTS_SQUASH_ROOT)
    return false;
  /* As Linux's nfsd: uid 0 and gid 0 are mapped independently. */
  bool squashed = false;
  if (*uid == 0) {
    *uid = a->anonuid;
    squashed = true;
  }
  if (*gid == 0) {
    *gid = a->anongid;
    squashed = true;
  }
  return squashed;
}
