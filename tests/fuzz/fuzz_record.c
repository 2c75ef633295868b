/*
 * Fuzz target for RPC record marking (server/rpc.h): the input is a TCP
 * byte stream, preceded by two bytes that pick the record cap and the read
 * sizes. The reassembler is fed in reads of those sizes and compared with a
 * naive reference parser over the whole stream: same records, same order,
 * same bytes, and the same verdict (more bytes needed, or a record over the
 * cap). Any disagreement aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/rpc.h"
#include "store/error.h"

static void must(int cond, const char *what)
{
  if (!cond) {
    fprintf(stderr, "fuzz_record: %s\n", what);
    abort();
  }
}

struct ref {
  uint8_t *rec; /* reassembled records, back to back */
  size_t *lens;
  size_t n;
  bool too_big;
};

/* The obvious parser: all bytes at hand, fragments copied out one by one. */
static void ref_parse(const uint8_t *p, size_t n, size_t max, struct ref *r)
{
  memset(r, 0, sizeof r[0]);
  r->rec = malloc(n + 1);
  r->lens = malloc((n / 4 + 1) * sizeof *r->lens);
  must(r->rec && r->lens, "oom");
  size_t pos = 0, out = 0, cur = 0;
  while (n - pos >= 4) {
    uint32_t mark = (uint32_t)p[pos] << 24 | (uint32_t)p[pos + 1] << 16 | (uint32_t)p[pos + 2] << 8 |
                    p[pos + 3];
    size_t len = mark & 0x7fffffff;
    if (cur + len > max) {
      r->too_big = true;
      return;
    }
    if (n - pos - 4 < len)
      return;
    memcpy(r->rec + out + cur, p + pos + 4, len);
    cur += len;
    pos += 4 + len;
    if (mark & 0x80000000u) {
      r->lens[r->n++] = cur;
      out += cur;
      cur = 0;
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 2)
    return 0;
  size_t max = 1 + data[0] * 64;     /* caps from 1 byte to ~16 KiB */
  size_t step = 1 + data[1] % 97;    /* odd read sizes cross every boundary */
  data += 2;
  size -= 2;

  struct ref ref;
  ref_parse(data, size, max, &ref);

  struct rpcsrv_records r;
  rpcsrv_records_init(&r, max);
  size_t pos = 0, got = 0, off = 0;
  int rc = 0;
  while (pos < size && rc >= 0) {
    uint8_t *dst;
    size_t room;
    rc = rpcsrv_records_space(&r, &dst, &room);
    must(rc == 0 || rc == -BFS_ETOOBIG, "space failed");
    if (rc < 0)
      break;
    must(room > 0, "no room");
    size_t k = step < room ? step : room;
    if (k > size - pos)
      k = size - pos;
    memcpy(dst, data + pos, k);
    rpcsrv_records_commit(&r, k);
    pos += k;
    uint8_t *rec;
    size_t len;
    while ((rc = rpcsrv_records_next(&r, &rec, &len)) == 1) {
      must(len <= max, "record over the cap");
      must(got < ref.n, "a record the reference did not see");
      must(len == ref.lens[got], "record length differs");
      must(memcmp(rec, ref.rec + off, len) == 0, "record bytes differ");
      off += len;
      got++;
    }
  }
  must(got == ref.n, "records missing");
  must((rc == -BFS_ETOOBIG) == ref.too_big, "cap verdicts differ");
  rpcsrv_records_free(&r);
  free(ref.rec);
  free(ref.lens);
  return 0;
}
