#include "tests/test.h"

#include <errno.h>

#include "store/entry.h"
#include "store/error.h"
#include "store/key.h"
#include "store/verify.h"

#define N 40

static struct entry entries[N];
static struct entry *ptrs[N];

/* N signed entries; about every third one is broken in one of five ways. */
static void make_batch(struct key *k)
{
  struct key *grantee;
  CHECK_OK(key_generate(&grantee));
  for (int i = 0; i < N; i++) {
    struct entry *e = &entries[i];
    memset(e, 0, sizeof *e);
    e->mtime_ns = 1000 + (uint64_t)i;
    e->mode = 0644;
    if (i % 5 == 4) {
      e->action = ENTRY_GRANT;
      e->dir.bytes[0] = 1;
      e->content_kind = ENTRY_CONTENT_INLINE;
      e->content_len = KEY_PUBLIC_SIZE;
      key_public(grantee, e->content);
    } else {
      e->action = ENTRY_WRITE;
      e->dir.bytes[0] = (uint8_t)(i + 1);
      e->name_len = (uint8_t)snprintf(e->name, sizeof e->name, "file%d", i);
      e->content_kind = ENTRY_CONTENT_INLINE;
      e->content_len = (uint16_t)snprintf((char *)e->content, 64, "content %d\n", i);
      e->size = e->content_len;
    }
    if (i % 10 == 9)
      e->content[20] ^= 1; /* signed, but the granted key is no point */
    CHECK_OK(entry_sign(e, k));
    if (i % 3 == 2 && e->action != ENTRY_GRANT) {
      switch (i % 4) {
      case 0:
        e->signature[7] ^= 0x40;
        break;
      case 1:
        e->mtime_ns++;
        break;
      case 2:
        e->pubkey[30] ^= 1;
        break;
      case 3:
        e->id.bytes[0] ^= 1;
        break;
      }
    }
    ptrs[i] = e;
  }
  key_free(grantee);
}

TEST(pool_matches_serial)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  make_batch(k);
  int serial[N], good = 0, bad = 0;
  for (int i = 0; i < N; i++) {
    serial[i] = entry_verify(ptrs[i]);
    if (serial[i] == 0)
      good++;
    else
      bad++;
  }
  /* The batch really mixes good and bad, with both error kinds. */
  CHECK_INT(good, >, N / 2);
  CHECK_INT(bad, >=, N / 4);
  bool esig = false, ekey = false;
  for (int i = 0; i < N; i++) {
    esig |= serial[i] == -BFS_ESIGNATURE;
    ekey |= serial[i] == -BFS_EKEY;
  }
  CHECK(esig && ekey);

  int threads[] = {0, 1, 2, 3, 8, -1, 1000};
  size_t sizes[] = {N, 1, 2, 3, 7};
  for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
      size_t n = sizes[s];
      int results[N];
      for (size_t i = 0; i < N; i++)
        results[i] = 12345;
      int ok = verify_entries(ptrs, n, results, threads[t]);
      int want = 0;
      for (size_t i = 0; i < n; i++) {
        CHECK_MSG(results[i] == serial[i], "threads %d n %zu entry %zu: %d vs serial %d", threads[t], n, i,
                  results[i], serial[i]);
        want += serial[i] == 0;
      }
      for (size_t i = n; i < N; i++)
        CHECK_INT(results[i], ==, 12345); /* nothing written past N */
      CHECK_INT(ok, ==, want);
    }
  }
  key_free(k);
}

TEST(empty_and_bad_arguments)
{
  int r;
  CHECK_INT(verify_entries(NULL, 0, NULL, 2), ==, 0);
  CHECK_INT(verify_entries(NULL, 1, &r, 2), ==, -EINVAL);
  struct entry *one[1] = {&entries[0]};
  CHECK_INT(verify_entries(one, 1, NULL, 2), ==, -EINVAL);
}
