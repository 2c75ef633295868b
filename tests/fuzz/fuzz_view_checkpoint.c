/*
 * Fuzzes the checkpoint parser. With the first input byte odd, the input
 * gets a valid magic, version and trailing checksum, so the parser goes past
 * its integrity checks into the records (a checkpoint file is local, but a
 * corrupt or crafted one must still only be refused, never crash the open).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "store/view.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct view *v = NULL;
  uint64_t opaque;
  if (size == 0)
    return 0;
  if (!(data[0] & 1)) {
    if (view_checkpoint_parse(data + 1, size - 1, &v, &opaque) == 0)
      view_free(v);
    return 0;
  }
  size_t n = size - 1 + 8 + 8;
  uint8_t *buf = malloc(n);
  if (!buf)
    return 0;
  memcpy(buf, "BFSVIEW\n", 8);
  memcpy(buf + 8, data + 1, size - 1);
  if (size - 1 >= 4)
    memcpy(buf + 8, "\x01\x00\x00\x00", 4);
  uint64_t sum = XXH64(buf, n - 8, 0);
  for (int i = 0; i < 8; i++)
    buf[n - 8 + i] = (uint8_t)(sum >> (8 * i));
  if (view_checkpoint_parse(buf, n, &v, &opaque) == 0) {
    hash_t root;
    view_merkle_root(v, &root);
    char *d;
    size_t len;
    if (view_dump(v, &d, &len) == 0)
      free(d);
    view_free(v);
  }
  free(buf);
  return 0;
}
