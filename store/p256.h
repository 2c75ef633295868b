/*
 * P-256 (secp256r1) arithmetic specialised for ECDSA signing: the field mod p
 * and the scalars mod n in 4 64-bit limbs, and the fixed-base multiplication
 * k*G for a secret k from a table of multiples of G built at first use.
 *
 * Every function here that takes a secret (a nonce k, a private scalar d, an
 * inverse) runs in constant time: no branch and no memory index depends on
 * the secret's value. The only data-dependent outcomes are the documented
 * return codes (a scalar out of range, a zero r or s), which an ECDSA signer
 * reveals anyway by retrying.
 *
 * Verification is not here: store/key.c takes the public u1*G of a
 * verification from p256_base_mul() and does the rest with mbedTLS.
 *
 * All values travel as 32-byte big-endian integers. Everything is
 * thread-safe; the table (60 KiB, process memory, not in the binary) is built
 * once by the first caller, in about 1 ms, and self-checked: every point on
 * the curve and a known-answer ECDSA signature (RFC 6979, A.2.5). If the check
 * fails every function below returns -EIO and the caller must take another
 * implementation (store/key.c falls back to mbedTLS). The environment
 * variable BASEFS_NO_P256=1 (read once, at that first use) skips the table
 * and makes the same functions return -ENOTSUP: the fallback on demand, for
 * its tests and for ruling p256 out when chasing a problem. The arithmetic
 * on bytes at the end (p256_field_*, p256_scalar_*) needs no table.
 */
#ifndef BASEFS_STORE_P256_H
#define BASEFS_STORE_P256_H

#include <stdint.h>

#define P256_BYTES 32

/* Builds and checks the table once: 0, -ENOMEM, -EIO (self-check failed) or
 * -ENOTSUP (BASEFS_NO_P256). */
int p256_init(void);

/* 0 if K is in [1, n-1], -EINVAL if not. Constant time. */
int p256_scalar_check(const uint8_t k[P256_BYTES]);

/* (X, Y) = the affine point K*G: 0, -EINVAL if K is 0 or >= n, or p256_init()'s error. */
int p256_base_mul(const uint8_t k[P256_BYTES], uint8_t x[P256_BYTES], uint8_t y[P256_BYTES]);

/* R = A mod n, for any 256-bit A (ECDSA's bits2octets of a SHA-256 digest). */
void p256_scalar_reduce(const uint8_t a[P256_BYTES], uint8_t r[P256_BYTES]);

/* KINV = K^-1 mod n for K in [1, n-1] (Fermat: constant time); -EINVAL otherwise. */
int p256_scalar_inv(const uint8_t k[P256_BYTES], uint8_t kinv[P256_BYTES]);

/* An ECDSA nonce: R = x(K*G) mod n and KINV = K^-1 mod n. 0, -EINVAL if K
 * is out of [1, n-1], -EAGAIN if r = 0 (take another K), or p256_init()'s error. */
int p256_ecdsa_nonce(const uint8_t k[P256_BYTES], uint8_t r[P256_BYTES], uint8_t kinv[P256_BYTES]);

/* S = KINV (e + R D) mod n, where e = DIGEST mod n (a SHA-256 digest is as
 * wide as n: ECDSA's bits2int takes it whole). 0, -EINVAL if D, R or KINV is
 * out of [1, n-1], -EAGAIN if s = 0 (take another nonce). Needs no table. */
int p256_ecdsa_s(const uint8_t d[P256_BYTES], const uint8_t r[P256_BYTES], const uint8_t kinv[P256_BYTES],
                 const uint8_t digest[P256_BYTES], uint8_t s[P256_BYTES]);

/* SIG = r || s, the ECDSA signature of DIGEST by private scalar D with nonce
 * K: p256_ecdsa_nonce() then p256_ecdsa_s(), with their return codes. */
int p256_ecdsa_sign(const uint8_t d[P256_BYTES], const uint8_t k[P256_BYTES], const uint8_t digest[P256_BYTES],
                    uint8_t sig[2 * P256_BYTES]);

/*
 * The arithmetic itself, for the differential tests (tests/store/test_p256.c).
 * Inputs may be any 256-bit value (reduced first, mod p for the field, mod n
 * for the scalars); results are fully reduced. The inverse of 0 is 0.
 */
void p256_field_add(const uint8_t a[P256_BYTES], const uint8_t b[P256_BYTES], uint8_t r[P256_BYTES]);
void p256_field_sub(const uint8_t a[P256_BYTES], const uint8_t b[P256_BYTES], uint8_t r[P256_BYTES]);
void p256_field_mul(const uint8_t a[P256_BYTES], const uint8_t b[P256_BYTES], uint8_t r[P256_BYTES]);
void p256_field_sqr(const uint8_t a[P256_BYTES], uint8_t r[P256_BYTES]);
void p256_field_inv(const uint8_t a[P256_BYTES], uint8_t r[P256_BYTES]);
void p256_scalar_mul(const uint8_t a[P256_BYTES], const uint8_t b[P256_BYTES], uint8_t r[P256_BYTES]);

#endif
