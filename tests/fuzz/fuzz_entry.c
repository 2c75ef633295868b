/*
 * Fuzz target for the entry decoder: any bytes either are refused or decode
 * into an entry whose encoding is exactly those bytes (the codec is
 * canonical), and decoding never reads outside the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/entry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  /* A copy of exactly SIZE bytes, so ASan sees any read past the end. */
  uint8_t *copy = malloc(size ? size : 1);
  if (!copy)
    abort();
  memcpy(copy, data, size);
  struct entry e;
  int rc = entry_decode(copy, size, &e);
  if (rc == 0) {
    uint8_t out[ENTRY_MAX_SIZE];
    int n = entry_encode(&e, out, sizeof out);
    if (n < 0 || (size_t)n != size || memcmp(out, copy, size) != 0)
      abort();
    if (e.name[e.name_len] != '\0' || (e.name_len && !entry_name_valid(e.name, e.name_len)))
      abort();
    struct entry again;
    if (entry_decode(out, (size_t)n, &again) != 0 || memcmp(&again.id, &e.id, sizeof e.id) != 0)
      abort();
  } else if (rc > 0) {
    abort();
  }
  free(copy);
  return 0;
}
