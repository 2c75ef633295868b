/*
 * Staging through the NFS server: a large file updated by scattered writes
 * and COMMITs is sealed incrementally (only around the writes, from the kept
 * copy's block list or, after a restart, the stored version's); every
 * version must read back from the store exactly as written. Also the
 * recycled staging files of small rewrites.
 */
#include "tests/server/nfs3_harness.h"

#define ROOT s.root, s.root_len

TEST(nfs3_scattered_writes_seal_incrementally_and_read_back)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  uint8_t fh[64];
  uint32_t len;
  mkfile(&c, ROOT, "big", fh, &len);
  size_t cap = 12u << 20, size = 6u << 20;
  uint8_t *model = malloc(cap), *w = malloc(300000);
  CHECK(model && w);
  for (size_t i = 0; i < cap; i += 8) {
    uint64_t x = test_rand();
    memcpy(model + i, &x, 8);
  }
  write_all(&c, fh, len, 0, model, size);
  c3_commit(&c, fh, len, &r);
  CHECK_INT(r.status, ==, NFS3_OK);
  for (int round = 0; round < 8; round++) {
    int nw = 1 + (int)(test_rand() % 5);
    for (int k = 0; k < nw; k++) {
      size_t n = 1 + (size_t)(test_rand() % (round % 2 ? 300000 : 100));
      uint64_t off = test_rand() % (size + 1000);
      if (off + n > cap)
        off = cap - n;
      for (size_t i = 0; i < n; i++)
        w[i] = (uint8_t)test_rand();
      write_all(&c, fh, len, off, w, n);
      if (off > size)
        memset(model + size, 0, off - size); /* the gap reads as zeros */
      memcpy(model + off, w, n);
      if (off + n > size)
        size = off + n;
    }
    c3_commit(&c, fh, len, &r);
    CHECK_INT(r.status, ==, NFS3_OK);
    /* Reads of the kept copy. */
    c3_read(&c, fh, len, 0, 100000, &r);
    CHECK_INT(r.status, ==, NFS3_OK);
    CHECK_MEM(r.data, model, 100000);
    res_free(&r);
    if (round % 3 == 2) {
      /* From the store; the restart drops the kept copy, so the next
       * round's copy comes from the stored version (and its block list). */
      cl_close(&c);
      srv_stop(&s, true);
      check_stored(&s, "/big", model, size);
      srv_start(&s, false);
      cl_open(&c, s.port);
    }
  }
  cl_close(&c);
  srv_stop(&s, true);
  check_stored(&s, "/big", model, size);
  free(model);
  free(w);
  srv_free(&s);
}

TEST(nfs3_rewrites_through_recycled_staging_files)
{
  struct srv s;
  srv_init(&s);
  srv_start(&s, false);
  struct cl c;
  cl_open(&c, s.port);
  struct res r;
  /* More files than the staging cap (NFSD_STAGED_MAX): kept copies are
   * evicted and their files recycled for the next ones. */
  enum { N = NFSD_STAGED_MAX + 40 };
  static uint8_t fh[N][64];
  static uint32_t fl[N];
  char name[32], data[64];
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof name, "f%d", i);
    mkfile(&c, ROOT, name, fh[i], &fl[i]);
    int k = snprintf(data, sizeof data, "first %d, a longer content than the second", i);
    c3_write(&c, fh[i], fl[i], 0, data, (uint32_t)k, UNSTABLE, &r);
    CHECK_INT(r.status, ==, NFS3_OK);
    c3_commit(&c, fh[i], fl[i], &r);
    CHECK_INT(r.status, ==, NFS3_OK);
  }
  for (int i = 0; i < N; i++) {
    /* A partial rewrite (the rest of the old content must stay) and a
     * whole one, alternately. */
    int k = i % 2 ? snprintf(data, sizeof data, "SECOND %d", i) : snprintf(data, sizeof data, "x");
    c3_write(&c, fh[i], fl[i], i % 2 ? 0 : 3, data, (uint32_t)k, UNSTABLE, &r);
    CHECK_INT(r.status, ==, NFS3_OK);
    c3_commit(&c, fh[i], fl[i], &r);
    CHECK_INT(r.status, ==, NFS3_OK);
  }
  cl_close(&c);
  srv_stop(&s, true);
  for (int i = 0; i < N; i++) {
    char want[64];
    int k = snprintf(want, sizeof want, "first %d, a longer content than the second", i);
    if (i % 2) {
      char sec[32];
      int m = snprintf(sec, sizeof sec, "SECOND %d", i);
      memcpy(want, sec, (size_t)m);
    } else {
      want[3] = 'x';
    }
    snprintf(name, sizeof name, "/f%d", i);
    check_stored(&s, name, want, (size_t)k);
  }
  srv_free(&s);
}
