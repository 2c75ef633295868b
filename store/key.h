/*
 * Keys: ECDSA P-256 (signing and verification's u1*G: store/p256.c,
 * constant time; the rest of verification and the files: mbedTLS). A private key lives in a file of mode 0600,
 * its public half in FILE.pub. Public keys travel as the 65-byte uncompressed
 * point (0x04 || X || Y); a key's fingerprint is SHA-256 of those 65 bytes.
 * Signatures are the raw 64 bytes r || s (big-endian, 32 bytes each) over a
 * SHA-256 digest. Private key material never leaves this module.
 *
 * key_verify() is thread-safe and allocation-light, so arriving entries can
 * be verified on every core at once. key_sign() is deterministic (RFC 6979):
 * the same key and digest always give the same signature; it is thread-safe
 * and takes no lock, so several threads may sign with one key at once.
 * A process that starts the nonce pool (key_presign_start() below) signs
 * with precomputed random nonces instead: see there.
 *
 * Files (format 1), both PEM so openssl can read them:
 *   PATH      mode 0600: "# basefs private key, format 1 (...)" then a SEC1
 *             "EC PRIVATE KEY" PEM block.
 *   PATH.pub  mode 0644: "# basefs public key, format 1 (...)" then a
 *             SubjectPublicKeyInfo "PUBLIC KEY" PEM block.
 * The loaders also accept a bare PEM file (as openssl writes it) and refuse
 * any other format number. Both files appear atomically (temporary file,
 * fsync, rename without replace) and an existing file is never overwritten.
 */
#ifndef BASEFS_STORE_KEY_H
#define BASEFS_STORE_KEY_H

#include <stdint.h>

#include "store/hash.h"

#define KEY_PUBLIC_SIZE 65
#define KEY_SIGNATURE_SIZE 64

struct key;

/* A fresh private key. */
int key_generate(struct key **out);
/* Writes PATH (private, 0600) and PATH.pub; -EEXIST if either exists. */
int key_save(const struct key *key, const char *path);
/* Reads a private key written by key_save(); -BFS_EKEY if unusable. */
int key_load(const char *path, struct key **out);
/* Reads a public key file (PATH.pub as written by key_save()). */
int key_load_public(const char *path, uint8_t pub[KEY_PUBLIC_SIZE]);
void key_free(struct key *key);
/* An independent copy of KEY (for a holder that may outlive the caller's). */
int key_dup(const struct key *key, struct key **out);

void key_public(const struct key *key, uint8_t pub[KEY_PUBLIC_SIZE]);
void key_fingerprint(const uint8_t pub[KEY_PUBLIC_SIZE], hash_t *fp);

/* SIG = KEY's signature of DIGEST: from a pooled nonce while the pool below
 * runs and holds one (~1 us), else RFC 6979 (~0.045 ms of CPU; byte for byte
 * mbedtls_ecdsa_sign_det_ext()'s result, which takes ~0.34 ms). */
int key_sign(const struct key *key, const hash_t *digest, uint8_t sig[KEY_SIGNATURE_SIZE]);

/*
 * The nonce pool: ECDSA's expensive step, R = kG for a nonce k, depends on
 * neither key nor message, so one background thread precomputes up to
 * POOL_SIZE nonces (uniformly random k from getrandom, r = x(kG) mod n and
 * k^-1 mod n: ~0.04 ms of CPU each) and keeps the pool full, sleeping while it is full.
 * While it runs, key_sign() moves one nonce out of the pool (each serves at
 * most one signature and is wiped after use) and finishes the signature
 * with a few bignum operations; an empty pool never blocks: key_sign() then
 * signs deterministically (RFC 6979) as without the pool.
 *
 * With the pool, signatures are randomized: the same key and digest give a
 * different signature each time. They are still standard ECDSA, and
 * key_verify() (or any ECDSA verifier) accepts them unchanged; an entry's id
 * never covers its signature (store/entry.h), so ids stay deterministic.
 *
 * The pool is process-wide and serves every key. After fork() the child's
 * pool is empty and stopped (the child never uses the parent's nonces; it
 * may start its own). Memory: 64 bytes per nonce (256 nonces: 16 KiB).
 *
 * key_presign_start(): 0 once the refill thread runs (also when it ran
 * already: a running pool keeps its size), -EINVAL for a size of 0 or above
 * 65536, -ENOMEM or a pthread error. key_presign_stop() joins the thread and
 * wipes the pool; a no-op when it does not run. Both are thread-safe.
 */
int key_presign_start(unsigned pool_size);
void key_presign_stop(void);

/* A snapshot of the pool (all 0 when it does not run in this process):
 * SIZE nonces at most, READY now; MADE computed and TAKEN used since the
 * start; FALLBACKS signatures that found the pool empty and went RFC 6979. */
struct key_presign_stats {
  unsigned size, ready;
  uint64_t made, taken, fallbacks;
};
void key_presign_stats(struct key_presign_stats *out);
/* 0 if PUB is a point of P-256 (on the curve, not infinity), -BFS_EKEY if not. */
int key_check_public(const uint8_t pub[KEY_PUBLIC_SIZE]);
/* 0 if SIG is PUB's signature of DIGEST, -BFS_ESIGNATURE if not, -BFS_EKEY if PUB is no point. */
int key_verify(const uint8_t pub[KEY_PUBLIC_SIZE], const hash_t *digest,
               const uint8_t sig[KEY_SIGNATURE_SIZE]);
/* key_verify() through mbedtls_ecdsa_verify() alone, without the per-thread
 * cache of frequent authors' tables: the reference the tests and the
 * benchmark compare key_verify() against. */
int key_verify_plain(const uint8_t pub[KEY_PUBLIC_SIZE], const hash_t *digest,
                     const uint8_t sig[KEY_SIGNATURE_SIZE]);

#endif
