#include "store/hash.h"

#include <errno.h>
#include <mbedtls/sha256.h>
#include <string.h>

#include "store/sha256.h"

_Static_assert(sizeof(mbedtls_sha256_context) <= sizeof(hash_ctx_t), "hash_ctx_t too small");

void hash_init(hash_ctx_t *ctx)
{
  mbedtls_sha256_context *c = (mbedtls_sha256_context *)ctx->opaque;
  mbedtls_sha256_init(c);
  mbedtls_sha256_starts_ret(c, 0);
}

void hash_update(hash_ctx_t *ctx, const void *data, size_t len)
{
  mbedtls_sha256_update_ret((mbedtls_sha256_context *)ctx->opaque, data, len);
}

void hash_final(hash_ctx_t *ctx, hash_t *out)
{
  mbedtls_sha256_context *c = (mbedtls_sha256_context *)ctx->opaque;
  mbedtls_sha256_finish_ret(c, out->bytes);
  mbedtls_sha256_free(c);
}

/* One-shot hashes (entries, blocks, Merkle nodes) take the fast path
 * (store/sha256.c: the CPU's SHA extensions, several times mbedTLS). */
void hash_buf(const void *data, size_t len, hash_t *out)
{
  sha256_buf(data, len, out);
}

bool hash_is_zero(const hash_t *h)
{
  static const hash_t zero;
  return memcmp(h, &zero, sizeof zero) == 0;
}

int hash_cmp(const hash_t *a, const hash_t *b)
{
  return memcmp(a->bytes, b->bytes, HASH_SIZE);
}

void hash_to_hex(const hash_t *h, char out[HASH_HEX_SIZE])
{
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < HASH_SIZE; i++) {
    out[2 * i] = digits[h->bytes[i] >> 4];
    out[2 * i + 1] = digits[h->bytes[i] & 15];
  }
  out[2 * HASH_SIZE] = '\0';
}

static int hex_value(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int hash_from_hex(const char *hex, hash_t *out)
{
  if (strlen(hex) != 2 * HASH_SIZE)
    return -EINVAL;
  for (int i = 0; i < HASH_SIZE; i++) {
    int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return -EINVAL;
    out->bytes[i] = (uint8_t)(hi << 4 | lo);
  }
  return 0;
}
