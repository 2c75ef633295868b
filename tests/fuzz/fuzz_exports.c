/*
 * Fuzz target for the exports file parser (server/exports.h): the input is
 * the file. A parse either fails with a "line N: reason" message naming a
 * line that exists, or succeeds; then addresses derived from the input are
 * checked against the rules: the decision names a real line (or 0 for a
 * default), an unmatched loopback address is trusted, an unmatched other
 * one refused, and the same input always gives the same decisions.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/exports.h"

static void must(int cond, const char *what)
{
  if (!cond) {
    fprintf(stderr, "fuzz_exports: %s\n", what);
    abort();
  }
}

static size_t count_lines(const uint8_t *d, size_t n)
{
  size_t lines = n > 0;
  for (size_t i = 0; i + 1 < n; i++)
    lines += d[i] == '\n';
  return lines;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct exports *ex = NULL, *again = NULL;
  char err[128];
  memset(err, 'x', sizeof err);
  int rc = exports_parse((const char *)data, size, &ex, err, sizeof err);
  must(memchr(err, 0, sizeof err) != NULL, "error message not terminated");
  size_t lines = count_lines(data, size);
  if (rc < 0) {
    must(ex == NULL, "failed parse returned rules");
    if (rc == -EINVAL) {
      unsigned line = 0;
      must(sscanf(err, "line %u: ", &line) == 1, "error without a line number");
      must(line >= 1 && line <= lines, "error names a line that does not exist");
    }
    return 0;
  }
  must(ex != NULL, "no rules object");
  must(exports_rules(ex) <= 2 * lines, "more rules than lines");
  must(exports_parse((const char *)data, size, &again, err, sizeof err) == 0, "not deterministic");
  /* Addresses: the loopbacks, and 16-byte windows of the input. */
  for (size_t i = 0; i < 8 + size / 16 && i < 64; i++) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    uint8_t b[16] = {0};
    if (i >= 4 && size >= 16)
      memcpy(b, data + ((i - 4) * 16) % (size - 15), 16);
    else if (i >= 4)
      memcpy(b, data, size);
    bool v4 = i % 2 == 0;
    if (i == 0)
      b[0] = 127, b[3] = 1;
    if (i == 1)
      memset(b, 0, 16), b[15] = 1;
    if (v4) {
      struct sockaddr_in *s = (struct sockaddr_in *)&ss;
      s->sin_family = AF_INET;
      memcpy(&s->sin_addr, b, 4);
    } else {
      struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
      s->sin6_family = AF_INET6;
      memcpy(&s->sin6_addr, b, 16);
    }
    struct exports_access a, a2;
    exports_check(ex, (struct sockaddr *)&ss, &a);
    exports_check(again, (struct sockaddr *)&ss, &a2);
    must(memcmp(&a, &a2, sizeof a) == 0, "same rules, different decisions");
    must(a.line >= 0 && (size_t)a.line <= lines, "decision names a line that does not exist");
    must(a.squash <= EXPORTS_SQUASH_ALL, "bad squash");
    if (a.line == 0)
      must(a.refused != exports_loopback((struct sockaddr *)&ss),
           "unmatched: loopback must be trusted, others refused");
  }
  const char *const *g = exports_groups(ex);
  if (g) {
    size_t k = 0;
    for (; g[k]; k++)
      must(strlen(g[k]) > 0 && strlen(g[k]) < 64, "bad group string");
    must(k <= exports_rules(ex) + 2, "more groups than rules");
  }
  exports_free(ex);
  exports_free(again);
  return 0;
}
