/*
 * SHA-256 for identities (hash_buf() and blocks_hash() are this), fast: the
 * CPU's SHA extensions (SHA-NI) when it has them, else mbedTLS. Both compute
 * the same function, bit for bit (tests/store/test_sha256.c checks the fast
 * path against mbedTLS); BASEFS_NO_SHANI=1 in the environment turns the
 * fast path off (for measurements).
 *
 * Why several at once: with SHA-NI one hash is bound by the latency of the
 * sha256rnds2 chain (each pair of rounds waits for the previous), not by the
 * units; independent messages' rounds interleaved in one loop fill the gaps:
 * two at once have 1.8x the throughput of one here, three 2.3x.
 */
#ifndef BASEFS_STORE_SHA256_H
#define BASEFS_STORE_SHA256_H

#include <stdbool.h>
#include <stddef.h>

#include "store/hash.h"

/* SHA-256 of DATA. */
void sha256_buf(const void *data, size_t len, hash_t *out);

/* The same by mbedTLS alone (the reference, and the path without SHA-NI). */
void sha256_mbedtls(const void *data, size_t len, hash_t *out);

/*
 * The SHA-256 of N buffers: OUT[i] of DATA[i] (LEN[i] bytes; any lengths,
 * any alignment, buffers may overlap), the same digests as N sha256_buf()
 * calls. With SHA-NI three are hashed at a time, interleaved, a lane taking
 * the next buffer as soon as its own is done: the more buffers, the less
 * time fewer lanes run at the end.
 */
void sha256_bufs(size_t n, const void *const *data, const size_t *len, hash_t *out);

/* Whether the SHA-NI path is in use (CPU support and no BASEFS_NO_SHANI). */
bool sha256_accelerated(void);

#endif
