/* server/exports: the file format, its errors, and the matching rules. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "server/exports.h"
#include "store/error.h"
#include "tests/test.h"

static struct sockaddr_storage addr(const char *s)
{
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, s, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(812);
  } else {
    CHECK_MSG(inet_pton(AF_INET6, s, &a6->sin6_addr) == 1, "bad test address %s", s);
    a6->sin6_family = AF_INET6;
  }
  return ss;
}

static struct exports_access check(const struct exports *ex, const char *a)
{
  struct sockaddr_storage ss = addr(a);
  struct exports_access acc;
  exports_check(ex, (struct sockaddr *)&ss, &acc);
  return acc;
}

static struct exports *parse_ok(const char *text)
{
  struct exports *ex = NULL;
  char err[256];
  int rc = exports_parse(text, strlen(text), &ex, err, sizeof err);
  CHECK_MSG(rc == 0, "parse failed: %s (%s)", err, bfs_strerror(rc));
  return ex;
}

/* Parsing TEXT fails and the message contains WANT. */
static void parse_bad(const char *text, const char *want)
{
  struct exports *ex = (struct exports *)1;
  char err[256] = "";
  int rc = exports_parse(text, strlen(text), &ex, err, sizeof err);
  CHECK_MSG(rc < 0, "'%s' parsed", text);
  CHECK(ex == NULL);
  CHECK_MSG(strstr(err, want) != NULL, "'%s': message '%s' lacks '%s'", text, err, want);
}

TEST(empty_file_trusts_loopback_only)
{
  struct exports *ex = parse_ok("# nothing exported\n\n   \n");
  CHECK_INT(exports_rules(ex), ==, 0);
  struct exports_access a = check(ex, "127.0.0.1");
  CHECK(!a.refused && !a.readonly && a.squash == EXPORTS_SQUASH_NONE && a.line == 0);
  a = check(ex, "127.9.8.7");
  CHECK(!a.refused);
  a = check(ex, "::1");
  CHECK(!a.refused && a.squash == EXPORTS_SQUASH_NONE);
  a = check(ex, "::ffff:127.0.0.1");
  CHECK(!a.refused);
  CHECK(check(ex, "10.0.0.1").refused);
  CHECK(check(ex, "192.168.1.1").refused);
  CHECK(check(ex, "::2").refused);
  CHECK(check(ex, "fe80::1").refused);
  CHECK(check(ex, "128.0.0.1").refused);
  exports_free(ex);
}

TEST(no_exports_is_the_old_behaviour)
{
  struct exports_access a = check(NULL, "127.0.0.1");
  CHECK(!a.refused && !a.readonly && a.squash == EXPORTS_SQUASH_NONE);
  a = check(NULL, "10.1.1.1");
  CHECK(!a.refused && !a.readonly && a.squash == EXPORTS_SQUASH_ROOT);
  exports_check(NULL, NULL, &a);
  CHECK(!a.refused && a.squash == EXPORTS_SQUASH_ROOT);
}

TEST(defaults_of_a_line)
{
  struct exports *ex = parse_ok("10.0.0.0/8\n");
  struct exports_access a = check(ex, "10.200.3.4");
  CHECK(!a.refused);
  CHECK(a.readonly);
  CHECK_INT(a.squash, ==, EXPORTS_SQUASH_ROOT);
  CHECK_INT(a.anonuid, ==, 65534);
  CHECK_INT(a.anongid, ==, 65534);
  CHECK_INT(a.line, ==, 1);
  CHECK(check(ex, "11.0.0.1").refused);
  exports_free(ex);
}

TEST(options_and_longest_prefix)
{
  struct exports *ex = parse_ok("# lab\n"
                                "10.0.0.0/8      ro\n"
                                "10.1.0.0/16     rw,no_root_squash   # admins\n"
                                "10.1.2.3        rw all_squash, anonuid=1000,anongid=100\n"
                                "fd00::/8        rw\n"
                                "fd00:1::/32     deny\n"
                                "\t192.168.0.0/24 rw,root_squash,ro\n");
  CHECK_INT(exports_rules(ex), ==, 6);
  struct exports_access a = check(ex, "10.9.9.9");
  CHECK(a.readonly && a.squash == EXPORTS_SQUASH_ROOT && a.line == 2);
  a = check(ex, "10.1.9.9");
  CHECK(!a.readonly && a.squash == EXPORTS_SQUASH_NONE && a.line == 3);
  a = check(ex, "10.1.2.3");
  CHECK(!a.readonly && a.squash == EXPORTS_SQUASH_ALL && a.anonuid == 1000 && a.anongid == 100);
  CHECK_INT(a.line, ==, 4);
  a = check(ex, "::ffff:10.1.2.3"); /* IPv4-mapped matches IPv4 lines */
  CHECK_INT(a.line, ==, 4);
  a = check(ex, "fd00:2::1");
  CHECK(!a.refused && !a.readonly && a.line == 5);
  a = check(ex, "fd00:1::5");
  CHECK(a.refused && a.line == 6);
  a = check(ex, "192.168.0.77"); /* later options win: ro */
  CHECK(a.readonly && a.squash == EXPORTS_SQUASH_ROOT);
  CHECK(check(ex, "192.168.1.1").refused);
  CHECK(!check(ex, "127.0.0.1").refused); /* loopback still trusted */
  exports_free(ex);
}

static void groups_are(const char *text, const char *want);

TEST(star_covers_both_families)
{
  struct exports *ex = parse_ok("* ro\n10.0.0.0/8 rw\n");
  struct exports_access a = check(ex, "8.8.8.8");
  CHECK(!a.refused && a.readonly && a.line == 1);
  a = check(ex, "2001:db8::1");
  CHECK(!a.refused && a.readonly && a.line == 1);
  a = check(ex, "10.0.0.1");
  CHECK(!a.refused && !a.readonly && a.line == 2);
  /* '*' covers loopback too: a line overrides the loopback default. */
  a = check(ex, "127.0.0.1");
  CHECK(a.readonly && a.line == 1);
  exports_free(ex);
}

TEST(a_network_named_twice_is_an_error)
{
  /* The second line could never apply (the longest prefix wins, and
   * these are equal). */
  parse_bad("10.0.0.0/8 rw\n10.0.0.0/8 deny\n",
            "line 2: '10.0.0.0/8' is the network of line 1 already");
  parse_bad("fd00::/8 rw\n\nfd00:0::/8 ro\n", "line 3: 'fd00:0::/8' is the network of line 1");
  parse_bad("* ro\n0.0.0.0/0 rw\n", "line 2: '0.0.0.0/0' is the network of line 1");
  parse_bad("::/0 ro\n*\n", "line 2: '*' is the network of line 1");
  parse_bad("10.9.9.0/24 ro\n::ffff:10.9.9.0/120 rw\n",
            "line 2: '::ffff:10.9.9.0/120' is the network of line 1");
  /* The same address in both families, or two prefix lengths, are two networks. */
  struct exports *ex = parse_ok("0.0.0.0/0 ro\n::/0 rw\n10.0.0.0/8 rw\n10.0.0.0/16 ro\n");
  CHECK_INT(exports_rules(ex), ==, 4);
  exports_free(ex);
}

TEST(an_ipv4_mapped_line_is_its_ipv4_network)
{
  struct exports *ex = parse_ok("::ffff:10.9.9.0/120 rw\n::ffff:192.168.1.7 rw,no_root_squash\n");
  struct exports_access a = check(ex, "10.9.9.9"); /* matched as IPv4 */
  CHECK(!a.refused && !a.readonly && a.line == 1);
  a = check(ex, "::ffff:10.9.9.200");
  CHECK(!a.refused && !a.readonly && a.line == 1);
  CHECK(check(ex, "10.9.8.1").refused);
  a = check(ex, "192.168.1.7"); /* /128 is /32 */
  CHECK(!a.refused && a.squash == EXPORTS_SQUASH_NONE && a.line == 2);
  CHECK(check(ex, "192.168.1.8").refused);
  exports_free(ex);
  groups_are("::ffff:10.9.9.0/120 rw\n", "10.9.9.0/24 127.0.0.0/8 ::1/128");
  /* Below /96 it is an IPv6 network like any other. */
  ex = parse_ok("::fffe:0:0/95 rw\n"); /* contains ::ffff:0:0/96 */
  CHECK(check(ex, "10.9.9.9").refused);
  exports_free(ex);
}

TEST(deny_stands_alone)
{
  parse_bad("10.0.0.0/8 deny,rw\n", "line 1: 'deny' cannot be combined with other options");
  parse_bad("10.0.0.0/8 rw,deny\n", "'deny' cannot be combined");
  parse_bad("10.0.0.0/8 deny no_root_squash\n", "'deny' cannot be combined");
  struct exports *ex = parse_ok("10.0.0.0/8 deny\n10.1.0.0/16 , deny ,\n");
  CHECK(check(ex, "10.2.0.1").refused);
  CHECK(check(ex, "10.1.0.1").refused);
  exports_free(ex);
}

TEST(loopback_lines_override_the_default)
{
  struct exports *ex = parse_ok("127.0.0.1/32 ro\n::1 deny\n");
  struct exports_access a = check(ex, "127.0.0.1");
  CHECK(!a.refused && a.readonly && a.squash == EXPORTS_SQUASH_ROOT);
  a = check(ex, "127.0.0.2"); /* not covered by the /32: the trusted default */
  CHECK(!a.refused && !a.readonly && a.squash == EXPORTS_SQUASH_NONE);
  CHECK(check(ex, "::1").refused);
  exports_free(ex);
}

TEST(prefix_bits)
{
  struct exports *ex = parse_ok("192.168.4.0/22 rw\n2001:db8:8000::/33 rw\n0.0.0.0/0 ro\n");
  CHECK(!check(ex, "192.168.7.255").readonly);
  CHECK(check(ex, "192.168.8.0").readonly);
  CHECK(check(ex, "192.168.3.255").readonly);
  CHECK(!check(ex, "2001:db8:ffff::1").refused);
  CHECK(check(ex, "2001:db8:7fff::1").refused);
  CHECK(check(ex, "8.8.8.8").readonly);
  exports_free(ex);
}

TEST(squash_cred)
{
  struct exports_access a = {.squash = EXPORTS_SQUASH_ROOT, .anonuid = 7, .anongid = 8};
  uint32_t uid = 0, gid = 0;
  CHECK(exports_squash_cred(&a, &uid, &gid));
  CHECK(uid == 7 && gid == 8);
  uid = 1000, gid = 1000;
  CHECK(!exports_squash_cred(&a, &uid, &gid));
  CHECK(uid == 1000 && gid == 1000);
  uid = 1000, gid = 0;
  CHECK(exports_squash_cred(&a, &uid, &gid));
  CHECK(uid == 1000 && gid == 8);
  a.squash = EXPORTS_SQUASH_ALL;
  uid = 1000, gid = 1000;
  CHECK(exports_squash_cred(&a, &uid, &gid));
  CHECK(uid == 7 && gid == 8);
  a.squash = EXPORTS_SQUASH_NONE;
  uid = 0, gid = 0;
  CHECK(!exports_squash_cred(&a, &uid, &gid));
  CHECK(uid == 0 && gid == 0);
}

TEST(errors_name_the_line_and_reason)
{
  parse_bad("10.0.0.0/8 rw\n\n10.0.0.0/33 rw\n", "line 3: '10.0.0.0/33': prefix length 33 is over 32");
  parse_bad("::/129\n", "line 1: '::/129': prefix length 129 is over 128");
  parse_bad("10.0.0.1/8\n", "line 1: '10.0.0.1/8': address bits set past the /8 prefix");
  parse_bad("localhost rw\n", "line 1: 'localhost' is not an IPv4 or IPv6 address");
  parse_bad("10.0.0.0/x\n", "the prefix length is not a number");
  parse_bad("10.0.0.0/\n", "the prefix length is not a number");
  parse_bad("# ok\n10.0.0.0/8 rw,sync\n", "line 2: unknown option 'sync'");
  parse_bad("10.0.0.0/8 anonuid=-1\n", "line 1: 'anonuid=-1': anonuid wants a number");
  parse_bad("10.0.0.0/8 anongid=4294967296\n", "anongid wants a number");
  parse_bad("10.0.0.0/8 anonuid=\n", "unknown option 'anonuid='");
  parse_bad("1.2.3.4.5\n", "not an IPv4 or IPv6 address");
  parse_bad("/8\n", "not an IPv4 or IPv6 address");
  char nul[] = "10.0.0.0/8 rw\n\0\n";
  struct exports *ex = NULL;
  char err[128];
  CHECK(exports_parse(nul, sizeof nul - 1, &ex, err, sizeof err) < 0);
  CHECK_MSG(strstr(err, "line 2: a NUL byte") != NULL, "%s", err);
  char longline[EXPORTS_LINE_MAX + 10];
  memset(longline, ' ', sizeof longline);
  memcpy(longline, "10.0.0.0/8", 10);
  CHECK(exports_parse(longline, sizeof longline, &ex, err, sizeof err) < 0);
  CHECK_MSG(strstr(err, "line 1: longer than") != NULL, "%s", err);
  /* A tiny error buffer is not overrun. */
  char tiny[8];
  CHECK(exports_parse("x\n", 2, &ex, tiny, sizeof tiny) < 0);
  CHECK_INT(strlen(tiny), <, sizeof tiny);
}

static void groups_are(const char *text, const char *want)
{
  struct exports *ex = parse_ok(text);
  const char *const *g = exports_groups(ex);
  CHECK(g != NULL);
  char got[512] = "";
  for (; *g; g++) {
    size_t l = strlen(got);
    snprintf(got + l, sizeof got - l, "%s%s", l ? " " : "", *g);
  }
  CHECK_MSG(strcmp(got, want) == 0, "groups of '%s': '%s', want '%s'", text, got, want);
  CHECK(exports_groups(ex) == exports_groups(ex)); /* built once */
  exports_free(ex);
}

TEST(groups_for_showmount)
{
  groups_are("", "127.0.0.0/8 ::1/128");
  groups_are("10.0.0.0/8 ro\n10.9.9.9 deny\nfd00::/8 rw\n",
             "10.0.0.0/8 fd00::/8 127.0.0.0/8 ::1/128");
  groups_are("127.0.0.0/8 deny\n::1 ro\n", "::1/128");
  groups_are("* ro\n", "*");
}

TEST(load_from_a_file)
{
  char path[512];
  snprintf(path, sizeof path, "%s/exports", test_tmpdir());
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  fputs("10.0.0.0/8 rw\n10.0.0.0/99\n", f);
  fclose(f);
  struct exports *ex = NULL;
  char err[512];
  CHECK(exports_load(path, &ex, err, sizeof err) == -EINVAL);
  CHECK_MSG(strstr(err, path) && strstr(err, "line 2:"), "%s", err);
  f = fopen(path, "w");
  fputs("10.0.0.0/8 rw", f); /* no final newline */
  fclose(f);
  CHECK_OK(exports_load(path, &ex, err, sizeof err));
  CHECK(!check(ex, "10.3.3.3").readonly);
  exports_free(ex);
  char missing[600];
  snprintf(missing, sizeof missing, "%s/nope", test_tmpdir());
  CHECK(exports_load(missing, &ex, err, sizeof err) == -ENOENT);
  CHECK_MSG(strstr(err, "cannot read") != NULL, "%s", err);
}

/* ---- over the wire: the real server with an exports file ---- */

#include "tests/server/deploy_harness.h"

/* A TCP (or UDP) connection from SRC (e.g. "127.0.0.2") to the server. */
static int connect_from(const char *src, int port, bool udp)
{
  int fd = socket(AF_INET, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
  CHECK(fd >= 0);
  struct sockaddr_in from = {.sin_family = AF_INET};
  CHECK(inet_pton(AF_INET, src, &from.sin_addr) == 1);
  CHECK_OK(bind(fd, (struct sockaddr *)&from, sizeof from));
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK_OK(connect(fd, (struct sockaddr *)&to, sizeof to));
  return fd;
}

/* One call over fd; returns the reply (caller frees), *r decoded. */
static uint8_t *wire_call(int fd, bool udp, uint32_t xid, uint32_t prog, uint32_t proc,
                          const struct xdr_enc *args, struct oncrpc_reply *r,
                          struct xdr_dec *res)
{
  struct xdr_enc e;
  call_encode(&e, xid, prog, 3, proc, &dep_root_cred, args);
  size_t len = 0;
  uint8_t *rep;
  if (udp) {
    CHECK(send(fd, e.buf, e.len, 0) == (ssize_t)e.len);
    rep = udp_recv(fd, &len, 5000);
  } else {
    raw_send_record(fd, e.buf, e.len, 1 << 30);
    rep = raw_recv_record(fd, &len);
  }
  xdr_enc_free(&e);
  CHECK_MSG(rep != NULL, "no reply to xid %u", xid);
  return reply_decode(rep, len, xid, r, res);
}

TEST(refused_network_gets_auth_error_on_mount_and_nfs)
{
  struct dep d = {0};
  srv_init(&d.s);
  dep_start(&d, true, "127.0.0.1/32 deny\n127.0.0.3 rw\n");
  struct oncrpc_reply r;
  struct xdr_dec res;
  struct xdr_enc mnt;
  xdr_enc_init(&mnt, 256);
  xdr_enc_str(&mnt, "/basefs");
  for (int udp = 0; udp < 2; udp++) {
    int fd = connect_from("127.0.0.1", udp ? d.udp_port : d.s.port, udp);
    /* MOUNT MNT, NFS NULL and GETATTR: all denied. */
    free(wire_call(fd, udp, 10, 100005, 1, &mnt, &r, &res));
    CHECK_INT(r.reply_stat, ==, ONCRPC_MSG_DENIED);
    CHECK_INT(r.reject_stat, ==, ONCRPC_AUTH_ERROR);
    CHECK_INT(r.auth_stat, ==, ONCRPC_AUTH_TOOWEAK);
    free(wire_call(fd, udp, 11, 100003, 0, NULL, &r, &res));
    CHECK_INT(r.reply_stat, ==, ONCRPC_MSG_DENIED);
    CHECK_INT(r.auth_stat, ==, ONCRPC_AUTH_TOOWEAK);
    close(fd);
    /* 127.0.0.2 has no line: loopback, trusted. 127.0.0.3 has a rw line. */
    const char *others[2] = {"127.0.0.2", "127.0.0.3"};
    for (int i = 0; i < 2; i++) {
      fd = connect_from(others[i], udp ? d.udp_port : d.s.port, udp);
      uint8_t *rep = wire_call(fd, udp, 12, 100005, 1, &mnt, &r, &res);
      CHECK_INT(r.reply_stat, ==, ONCRPC_MSG_ACCEPTED);
      CHECK_INT(res_status(&res), ==, 0);
      free(rep);
      close(fd);
    }
  }
  xdr_enc_free(&mnt);
  dep_stop(&d);
  /* One log line for the refused address, however many calls. */
  CHECK_INT(dep_logged(&d, "refused by the exports"), ==, 1);
  CHECK_INT(dep_logged(&d, "127.0.0.1"), >=, 1);
  srv_free(&d.s);
}

/* CREATE "name" as root over TCP from 127.0.0.1: the status, and the new
 * file's uid/gid from the reply's attributes. */
static uint32_t create_as_root(struct dep *d, const char *name, uint32_t *uid, uint32_t *gid)
{
  int fd = connect_from("127.0.0.1", d->s.port, false);
  struct xdr_enc a;
  args_create(&a, d, name);
  struct oncrpc_reply r;
  struct xdr_dec res;
  uint8_t *rep = wire_call(fd, false, 20, 100003, 8, &a, &r, &res);
  CHECK_INT(r.accept_stat, ==, ONCRPC_SUCCESS);
  uint32_t st = res_status(&res);
  if (st == 0) {
    bool present;
    struct xdr_bytes fh;
    uint32_t type, mode, nlink;
    CHECK_OK(xdr_dec_bool(&res, &present));
    if (present)
      CHECK_OK(xdr_dec_bytes(&res, 64, &fh));
    CHECK_OK(xdr_dec_bool(&res, &present));
    CHECK(present);
    CHECK_OK(xdr_dec_u32(&res, &type));
    CHECK_OK(xdr_dec_u32(&res, &mode));
    CHECK_OK(xdr_dec_u32(&res, &nlink));
    CHECK_OK(xdr_dec_u32(&res, uid));
    CHECK_OK(xdr_dec_u32(&res, gid));
  }
  free(rep);
  xdr_enc_free(&a);
  close(fd);
  return st;
}

TEST(read_only_and_squashing_lines_are_enforced)
{
  struct dep d = {0};
  srv_init(&d.s);
  uint32_t uid = 99, gid = 99;
  /* Trusted loopback: root stays root. */
  dep_start(&d, false, "");
  CHECK_INT(create_as_root(&d, "a", &uid, &gid), ==, 0);
  CHECK(uid == 0 && gid == 0);
  /* chmod 1777 / as root, so squashed users may create there. */
  struct xdr_enc a;
  xdr_enc_init(&a, 256);
  xdr_enc_bytes(&a, d.s.root, d.s.root_len);
  xdr_enc_bool(&a, true);
  xdr_enc_u32(&a, 01777);
  for (int i = 0; i < 5; i++)
    xdr_enc_bool(&a, false);
  xdr_enc_bool(&a, false); /* no guard */
  int fd = connect_from("127.0.0.1", d.s.port, false);
  struct oncrpc_reply r;
  struct xdr_dec res;
  uint8_t *rep = wire_call(fd, false, 30, 100003, 2, &a, &r, &res);
  CHECK_INT(res_status(&res), ==, 0);
  free(rep);
  close(fd);
  xdr_enc_free(&a);
  dep_stop(&d);
  /* root_squash: a root client may not chmod it back. */
  dep_start(&d, false, "127.0.0.1/32 rw,root_squash\n");
  xdr_enc_init(&a, 256);
  xdr_enc_bytes(&a, d.s.root, d.s.root_len);
  xdr_enc_bool(&a, true);
  xdr_enc_u32(&a, 0755);
  for (int i = 0; i < 6; i++)
    xdr_enc_bool(&a, false);
  fd = connect_from("127.0.0.1", d.s.port, false);
  rep = wire_call(fd, false, 31, 100003, 2, &a, &r, &res);
  CHECK_INT(res_status(&res), ==, 1); /* NFS3ERR_PERM */
  free(rep);
  close(fd);
  xdr_enc_free(&a);
  dep_stop(&d);
  /* ro: writes get NFS3ERR_ROFS (30). */
  dep_start(&d, false, "127.0.0.1/32 ro,no_root_squash\n");
  CHECK_INT(create_as_root(&d, "b", &uid, &gid), ==, 30);
  dep_stop(&d);
  /* rw with the default root_squash: the file belongs to nobody. */
  dep_start(&d, false, "127.0.0.1/32 rw\n");
  CHECK_INT(create_as_root(&d, "c", &uid, &gid), ==, 0);
  CHECK(uid == 65534 && gid == 65534);
  dep_stop(&d);
  /* all_squash with anonuid/anongid. */
  dep_start(&d, false, "127.0.0.0/8 rw,all_squash,anonuid=1234,anongid=4321\n");
  CHECK_INT(create_as_root(&d, "e", &uid, &gid), ==, 0);
  CHECK(uid == 1234 && gid == 4321);
  dep_stop(&d);
  srv_free(&d.s);
}
