/*
 * Identities: SHA-256 of entries, blocks and Merkle nodes (one-shot: the
 * CPU's SHA extensions when it has them, store/sha256.h; else mbedTLS).
 * xxHash is for checksums and in-memory tables only, never for identities a
 * hostile peer could forge.
 */
#ifndef BASEFS_STORE_HASH_H
#define BASEFS_STORE_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HASH_SIZE 32
#define HASH_HEX_SIZE (2 * HASH_SIZE + 1)

typedef struct hash {
  uint8_t bytes[HASH_SIZE];
} hash_t;

typedef struct hash_ctx {
  uint8_t opaque[128] __attribute__((aligned(8)));
} hash_ctx_t;

void hash_init(hash_ctx_t *ctx);
void hash_update(hash_ctx_t *ctx, const void *data, size_t len);
void hash_final(hash_ctx_t *ctx, hash_t *out);

/* One-shot SHA-256 (store/sha256.h: with the CPU's SHA extensions when it
 * has them; the streaming calls above are mbedTLS's). */
void hash_buf(const void *data, size_t len, hash_t *out);

bool hash_is_zero(const hash_t *h);
int hash_cmp(const hash_t *a, const hash_t *b);
static inline bool hash_eq(const hash_t *a, const hash_t *b) { return hash_cmp(a, b) == 0; }

/* Lowercase hex, NUL-terminated. */
void hash_to_hex(const hash_t *h, char out[HASH_HEX_SIZE]);
/* Exactly 64 hex digits; returns 0 or -EINVAL. */
int hash_from_hex(const char *hex, hash_t *out);

/* A 64-bit digest of a hash for hash tables (not an identity). */
static inline uint64_t hash_key64(const hash_t *h)
{
  uint64_t k;
  __builtin_memcpy(&k, h->bytes, sizeof k);
  return k;
}

#endif
