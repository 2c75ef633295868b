/*
 * Fuzz target: the stored block format (store/blocks.h, blocks_decode), the
 * bytes of a block file or of a block received from a peer.
 */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "store/blocks.h"

static void check(const uint8_t *data, size_t size);

/*
 * Each input is tried as is and with its stored length and XXH64 fixed up,
 * so that mutations reach the zstd frame checks behind the checksum.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  check(data, size);
  if (size >= BLOCKS_HEADER_SIZE) {
    uint8_t *copy = malloc(size);
    memcpy(copy, data, size);
    size_t stored = size - BLOCKS_HEADER_SIZE;
    uint64_t x = XXH64(copy + BLOCKS_HEADER_SIZE, stored, 0);
    for (int i = 0; i < 4; i++)
      copy[12 + i] = (uint8_t)(stored >> (8 * i));
    for (int i = 0; i < 8; i++)
      copy[16 + i] = (uint8_t)(x >> (8 * i));
    check(copy, size);
    free(copy);
  }
  return 0;
}

static void check(const uint8_t *data, size_t size)
{
  uint8_t *out;
  size_t len;
  if (blocks_decode(data, size, NULL, &out, &len) == 0) {
    if (len > BLOCKS_MAX_SIZE)
      abort();
    /* What decodes must also pass its own hash check, and no other. */
    hash_t h;
    blocks_hash(out, len, &h);
    uint8_t *again;
    size_t alen;
    if (blocks_decode(data, size, &h, &again, &alen) != 0 || alen != len ||
        memcmp(again, out, len) != 0)
      abort();
    free(again);
    h.bytes[0] ^= 1;
    if (blocks_decode(data, size, &h, &again, &alen) == 0)
      abort();
    free(out);
  }
}
