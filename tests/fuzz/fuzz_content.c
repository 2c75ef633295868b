/*
 * Fuzz target: content decoding (store/content.h) of arbitrary entry
 * content, as a hostile peer could send it.
 *
 * Input: u8 kind, u32 LE declared size, u16 LE base length, the base (the
 * "previous version" for DELTA), then the content bytes. A small block store
 * holds three known blocks (and a list of them) so that block forms can
 * succeed too; see the seeds in corpus/fuzz_content/.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/content.h"

static struct blocks *bs;
static char dir[] = "/tmp/fuzz_content.XXXXXX";

static void cleanup(void)
{
  char path[sizeof dir + 32];
  blocks_close(bs);
  snprintf(path, sizeof path, "%s/pack-00000001", dir);
  unlink(path);
  rmdir(dir);
}

static struct blocks *store(void)
{
  if (bs)
    return bs;
  if (!mkdtemp(dir) || blocks_open(dir, BLOCKS_CREATE, &bs) != 0)
    abort();
  atexit(cleanup);
  /* Blocks the seeds refer to: 3 x 20000 bytes of a pattern, and their list. */
  uint8_t *b = malloc(20000), list[3 * HASH_SIZE];
  for (int k = 0; k < 3; k++) {
    for (int i = 0; i < 20000; i++)
      b[i] = (uint8_t)(i * (k + 3) + (i >> 7));
    hash_t h;
    if (blocks_put(bs, b, 20000, &h) < 0)
      abort();
    memcpy(list + k * HASH_SIZE, h.bytes, HASH_SIZE);
  }
  hash_t h;
  if (blocks_put(bs, list, sizeof list, &h) < 0)
    abort();
  free(b);
  return bs;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 7)
    return 0;
  uint8_t kind = data[0];
  uint64_t declared = (uint64_t)data[1] | (uint64_t)data[2] << 8 | (uint64_t)data[3] << 16 |
                      (uint64_t)data[4] << 24;
  size_t base_len = (size_t)data[5] | (size_t)data[6] << 8;
  data += 7;
  size -= 7;
  if (base_len > size)
    base_len = size;
  const uint8_t *base = data;
  const uint8_t *bytes = data + base_len;
  size_t len = size - base_len;
  if (len > ENTRY_CONTENT_MAX)
    len = ENTRY_CONTENT_MAX;

  struct blocks *bs = store();
  uint8_t *out = NULL;
  int r = content_decode(bs, kind, bytes, len, declared, base, base_len, 1u << 22, &out);
  if (r == 0) {
    /* The cap holds: exactly the declared size came out. Touch every byte. */
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < declared; i++)
      sink ^= out[i];
    (void)sink;
    free(out);
  }
  struct content_reader *rd;
  if (content_open(bs, kind, bytes, len, declared, base, base_len, &rd) == 0) {
    uint8_t buf[4096];
    uint64_t sz = content_reader_size(rd);
    uint64_t offs[3] = {0, sz / 2, sz ? sz - 1 : 0};
    for (int i = 0; i < 3; i++) {
      ssize_t n = content_read(rd, offs[i], buf, sizeof buf);
      if (n > (ssize_t)sizeof buf)
        abort();
    }
    content_close(rd);
  }
  hash_t *missing;
  ssize_t m = content_missing(bs, kind, bytes, len, &missing);
  if (m > 0)
    free(missing);
  return 0;
}
