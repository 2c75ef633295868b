/*
 * store/p256.h against mbedTLS: the field and scalar arithmetic against
 * mbedtls_mpi, k*G against mbedtls_ecp_mul, key_sign() (which uses p256 for
 * RFC 6979) byte for byte against mbedtls_ecdsa_sign_det_ext(), and pooled
 * signatures against plain mbedtls_ecdsa_verify(). Random inputs come from
 * test_rand(); the runner names the seed of a failure (TEST_SEED=... reruns it).
 */
#include "tests/test.h"

#include <errno.h>
#include <time.h>

#include <mbedtls/bignum.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>

#include "store/error.h"
#include "store/hash.h"
#include "store/key.h"
#include "store/p256.h"

static void rand_bytes(uint8_t *b, size_t n)
{
  for (size_t i = 0; i < n; i++)
    b[i] = (uint8_t)test_rand();
}

static int test_rng(void *ctx, unsigned char *buf, size_t len)
{
  (void)ctx;
  rand_bytes(buf, len);
  return 0;
}

static const char *P_HEX = "FFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF";
static const char *N_HEX = "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551";

static void mpi_hex(mbedtls_mpi *x, const char *hex) { CHECK_OK(mbedtls_mpi_read_string(x, 16, hex)); }

static void to_bytes(const mbedtls_mpi *x, uint8_t b[32]) { CHECK_OK(mbedtls_mpi_write_binary(x, b, 32)); }

/* B = M + DELTA (DELTA small, may be negative), as 32 bytes; M + DELTA < 2^256. */
static void near(const char *m_hex, int delta, uint8_t b[32])
{
  mbedtls_mpi x;
  mbedtls_mpi_init(&x);
  mpi_hex(&x, m_hex);
  CHECK_OK(mbedtls_mpi_add_int(&x, &x, delta));
  to_bytes(&x, b);
  mbedtls_mpi_free(&x);
}

/* Edge values for the field: 0, 1, 2, p-1, p, p+1, 2^256-1, 2^255, 2^224, ... */
#define EDGES 12
static void edge(int i, uint8_t b[32])
{
  memset(b, 0, 32);
  switch (i) {
  case 0: break;
  case 1: b[31] = 1; break;
  case 2: b[31] = 2; break;
  case 3: near(P_HEX, -1, b); break;
  case 4: near(P_HEX, 0, b); break;
  case 5: near(P_HEX, 1, b); break;
  case 6: memset(b, 0xff, 32); break;
  case 7: b[0] = 0x80; break;
  case 8: b[3] = 1; break; /* 2^224 */
  case 9: near(N_HEX, -1, b); break;
  case 10: near(N_HEX, 0, b); break;
  default: memset(b, 0xff, 16); break; /* high half all ones */
  }
}

enum op { ADD, SUB, MUL, SQR, INV };

/* The reference: (A op B) mod p with mbedtls_mpi. */
static void ref_field(enum op op, const uint8_t a[32], const uint8_t b[32], uint8_t r[32])
{
  mbedtls_mpi x, y, p, z;
  mbedtls_mpi_init(&x);
  mbedtls_mpi_init(&y);
  mbedtls_mpi_init(&p);
  mbedtls_mpi_init(&z);
  mpi_hex(&p, P_HEX);
  CHECK_OK(mbedtls_mpi_read_binary(&x, a, 32));
  CHECK_OK(mbedtls_mpi_read_binary(&y, b, 32));
  CHECK_OK(mbedtls_mpi_mod_mpi(&x, &x, &p));
  CHECK_OK(mbedtls_mpi_mod_mpi(&y, &y, &p));
  switch (op) {
  case ADD: CHECK_OK(mbedtls_mpi_add_mpi(&z, &x, &y)); break;
  case SUB: CHECK_OK(mbedtls_mpi_sub_mpi(&z, &x, &y)); break;
  case MUL: CHECK_OK(mbedtls_mpi_mul_mpi(&z, &x, &y)); break;
  case SQR: CHECK_OK(mbedtls_mpi_mul_mpi(&z, &x, &x)); break;
  case INV:
    if (mbedtls_mpi_cmp_int(&x, 0) == 0)
      CHECK_OK(mbedtls_mpi_lset(&z, 0)); /* p256: the inverse of 0 is 0 */
    else
      CHECK_OK(mbedtls_mpi_inv_mod(&z, &x, &p));
    break;
  }
  CHECK_OK(mbedtls_mpi_mod_mpi(&z, &z, &p)); /* mod_mpi gives a non-negative result */
  to_bytes(&z, r);
  mbedtls_mpi_free(&x);
  mbedtls_mpi_free(&y);
  mbedtls_mpi_free(&p);
  mbedtls_mpi_free(&z);
}

static void ours_field(enum op op, const uint8_t a[32], const uint8_t b[32], uint8_t r[32])
{
  switch (op) {
  case ADD: p256_field_add(a, b, r); break;
  case SUB: p256_field_sub(a, b, r); break;
  case MUL: p256_field_mul(a, b, r); break;
  case SQR: p256_field_sqr(a, r); break;
  case INV: p256_field_inv(a, r); break;
  }
}

static void check_field(enum op op, const uint8_t a[32], const uint8_t b[32])
{
  static const char *names[] = {"add", "sub", "mul", "sqr", "inv"};
  uint8_t want[32], got[32];
  ref_field(op, a, b, want);
  ours_field(op, a, b, got);
  CHECK_MSG(memcmp(want, got, 32) == 0, "field %s differs from mbedtls_mpi", names[op]);
}

TEST(field_edges)
{
  uint8_t a[32], b[32];
  for (int op = ADD; op <= INV; op++)
    for (int i = 0; i < EDGES; i++)
      for (int j = 0; j < EDGES; j++) {
        edge(i, a);
        edge(j, b);
        check_field((enum op)op, a, b);
      }
}

TEST(field_random)
{
  uint8_t a[32], b[32];
  for (int round = 0; round < 3000; round++) {
    rand_bytes(a, 32);
    rand_bytes(b, 32);
    if (round % 7 == 0)
      memset(a, 0xff, (size_t)(round % 29)); /* values near 2^256, often >= p */
    for (int op = ADD; op <= (round % 10 == 0 ? INV : SQR); op++)
      check_field((enum op)op, a, b);
  }
}

TEST(scalar_mul_and_inverse)
{
  mbedtls_mpi n, x, y, z;
  mbedtls_mpi_init(&n);
  mbedtls_mpi_init(&x);
  mbedtls_mpi_init(&y);
  mbedtls_mpi_init(&z);
  mpi_hex(&n, N_HEX);
  for (int round = 0; round < 2000; round++) {
    uint8_t a[32], b[32], want[32], got[32];
    rand_bytes(a, 32);
    rand_bytes(b, 32);
    if (round < EDGES * 2) {
      edge(round % EDGES, round < EDGES ? a : b);
    }
    CHECK_OK(mbedtls_mpi_read_binary(&x, a, 32));
    CHECK_OK(mbedtls_mpi_read_binary(&y, b, 32));
    CHECK_OK(mbedtls_mpi_mul_mpi(&z, &x, &y));
    CHECK_OK(mbedtls_mpi_mod_mpi(&z, &z, &n));
    to_bytes(&z, want);
    p256_scalar_mul(a, b, got);
    CHECK_MSG(memcmp(want, got, 32) == 0, "scalar mul differs");
    /* The inverse of A mod n, if A is in [1, n-1]. */
    int in = mbedtls_mpi_cmp_int(&x, 0) > 0 && mbedtls_mpi_cmp_mpi(&x, &n) < 0;
    CHECK_INT(p256_scalar_check(a), ==, in ? 0 : -EINVAL);
    if (!in) {
      CHECK_INT(p256_scalar_inv(a, got), ==, -EINVAL);
      continue;
    }
    CHECK_OK(mbedtls_mpi_inv_mod(&z, &x, &n));
    to_bytes(&z, want);
    CHECK_OK(p256_scalar_inv(a, got));
    CHECK_MSG(memcmp(want, got, 32) == 0, "scalar inverse differs");
  }
  uint8_t k[32];
  near(N_HEX, -1, k);
  CHECK_OK(p256_scalar_check(k));
  near(N_HEX, 0, k);
  CHECK_INT(p256_scalar_check(k), ==, -EINVAL);
  mbedtls_mpi_free(&n);
  mbedtls_mpi_free(&x);
  mbedtls_mpi_free(&y);
  mbedtls_mpi_free(&z);
}

/* k G by p256 and by mbedtls_ecp_mul must agree. */
static void check_base_mul(mbedtls_ecp_group *grp, const uint8_t k[32])
{
  mbedtls_mpi m;
  mbedtls_ecp_point R;
  mbedtls_mpi_init(&m);
  mbedtls_ecp_point_init(&R);
  CHECK_OK(mbedtls_mpi_read_binary(&m, k, 32));
  CHECK_OK(mbedtls_ecp_mul(grp, &R, &m, &grp->G, test_rng, NULL));
  uint8_t want[65], x[32], y[32];
  size_t olen;
  CHECK_OK(mbedtls_ecp_point_write_binary(grp, &R, MBEDTLS_ECP_PF_UNCOMPRESSED, &olen, want, sizeof want));
  CHECK_OK(p256_base_mul(k, x, y));
  char hex[65];
  for (int i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", k[i]);
  CHECK_MSG(memcmp(want + 1, x, 32) == 0 && memcmp(want + 33, y, 32) == 0, "k G differs for k = %s", hex);
  mbedtls_mpi_free(&m);
  mbedtls_ecp_point_free(&R);
}

TEST(base_mul_special_scalars)
{
  CHECK_OK(p256_init());
  mbedtls_ecp_group grp;
  mbedtls_ecp_group_init(&grp);
  CHECK_OK(mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1));
  uint8_t k[32];
  static const unsigned small[] = {1, 2, 3, 15, 16, 17, 255, 256, 4095, 65535};
  for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) {
    memset(k, 0, 32);
    k[31] = (uint8_t)small[i];
    k[30] = (uint8_t)(small[i] >> 8);
    check_base_mul(&grp, k);
  }
  for (int d = 1; d <= 3; d++) {
    near(N_HEX, -d, k); /* n-1, n-2, n-3: the last window's sum is K */
    check_base_mul(&grp, k);
  }
  memset(k, 0, 32);
  k[0] = 0x80; /* 2^255 */
  check_base_mul(&grp, k);
  for (int i = 0; i < 64; i++) { /* 16^i, and j 16^i for every digit j */
    for (unsigned j = 1; j <= 15; j++) {
      memset(k, 0, 32);
      k[31 - i / 2] = (uint8_t)(i % 2 ? j << 4 : j);
      if (j == 1 || j == 15 || i % 9 == 0)
        check_base_mul(&grp, k);
    }
  }
  /* Runs of all-F windows: 2^(4w) - 1 shifted, kept below n. */
  for (int lo = 0; lo < 64; lo += 5)
    for (int len = 1; lo + len <= 64; len += 7) {
      memset(k, 0, 32);
      for (int w = lo; w < lo + len; w++)
        k[31 - w / 2] |= (uint8_t)(w % 2 ? 0xf0 : 0x0f);
      if (p256_scalar_check(k) == 0)
        check_base_mul(&grp, k);
    }
  memset(k, 0xff, 32);
  k[0] = 0x7f; /* 2^255 - 1 */
  check_base_mul(&grp, k);
  mbedtls_ecp_group_free(&grp);
}

TEST(base_mul_random)
{
  mbedtls_ecp_group grp;
  mbedtls_ecp_group_init(&grp);
  CHECK_OK(mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1));
  uint8_t k[32];
  for (int i = 0; i < 2000; i++) {
    rand_bytes(k, 32);
    if (i % 5 == 0)
      memset(k + 1 + i % 30, 0, (size_t)(i % 3)); /* some zero windows in a row */
    if (p256_scalar_check(k) < 0)
      continue;
    check_base_mul(&grp, k);
  }
  mbedtls_ecp_group_free(&grp);
}

TEST(base_mul_rejects_out_of_range)
{
  uint8_t k[32], x[32], y[32], r[32], kinv[32], s[32], sig[64], one[32] = {0};
  one[31] = 1;
  memset(k, 0, 32);
  CHECK_INT(p256_base_mul(k, x, y), ==, -EINVAL);
  CHECK_INT(p256_ecdsa_nonce(k, r, kinv), ==, -EINVAL);
  CHECK_INT(p256_ecdsa_sign(one, k, one, sig), ==, -EINVAL);
  CHECK_INT(p256_ecdsa_sign(k, one, one, sig), ==, -EINVAL); /* d = 0 */
  CHECK_INT(p256_ecdsa_s(one, one, k, one, s), ==, -EINVAL);
  CHECK_INT(p256_ecdsa_s(one, k, one, one, s), ==, -EINVAL);
  for (int d = 0; d <= 2; d++) {
    near(N_HEX, d, k);
    CHECK_INT(p256_base_mul(k, x, y), ==, -EINVAL);
    CHECK_INT(p256_scalar_inv(k, kinv), ==, -EINVAL);
    CHECK_INT(p256_ecdsa_s(k, one, one, one, s), ==, -EINVAL);
  }
  memset(k, 0xff, 32);
  CHECK_INT(p256_base_mul(k, x, y), ==, -EINVAL);
  CHECK_INT(p256_ecdsa_nonce(k, r, kinv), ==, -EINVAL);
}

/* s = 0 happens for e = -r d mod n: p256_ecdsa_s says -EAGAIN. */
TEST(zero_s_is_eagain)
{
  uint8_t d[32], r[32], kinv[32], e[32], s[32];
  rand_bytes(d, 32);
  d[0] &= 0x7f;
  rand_bytes(r, 32);
  r[0] &= 0x7f;
  memset(kinv, 0, 32);
  kinv[31] = 5;
  mbedtls_mpi n, x;
  mbedtls_mpi_init(&n);
  mbedtls_mpi_init(&x);
  mpi_hex(&n, N_HEX);
  uint8_t rd[32];
  p256_scalar_mul(r, d, rd);
  CHECK_OK(mbedtls_mpi_read_binary(&x, rd, 32));
  CHECK_OK(mbedtls_mpi_sub_mpi(&x, &n, &x)); /* e = n - r d: e + r d = 0 mod n */
  to_bytes(&x, e);
  CHECK_INT(p256_ecdsa_s(d, r, kinv, e, s), ==, -EAGAIN);
  CHECK_OK(mbedtls_mpi_add_mpi(&x, &x, &n)); /* e + n, still < 2^256: the same e mod n */
  if (mbedtls_mpi_bitlen(&x) <= 256) {
    to_bytes(&x, e);
    CHECK_INT(p256_ecdsa_s(d, r, kinv, e, s), ==, -EAGAIN);
  }
  mbedtls_mpi_free(&n);
  mbedtls_mpi_free(&x);
}

/* A key with a private scalar from test_rand(), as key.c loads it (a bare
 * SEC1 PEM file), and the same key as an mbedTLS key pair. */
static struct key *make_key(mbedtls_ecp_keypair *kp, int i)
{
  mbedtls_pk_context pk;
  mbedtls_pk_init(&pk);
  CHECK_OK(mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)));
  CHECK_OK(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk), test_rng, NULL));
  CHECK_OK(mbedtls_ecp_group_load(&kp->grp, MBEDTLS_ECP_DP_SECP256R1));
  CHECK_OK(mbedtls_mpi_copy(&kp->d, &mbedtls_pk_ec(pk)->d));
  CHECK_OK(mbedtls_ecp_copy(&kp->Q, &mbedtls_pk_ec(pk)->Q));
  static char pem[4096];
  CHECK_OK(mbedtls_pk_write_key_pem(&pk, (unsigned char *)pem, sizeof pem));
  char path[4200];
  snprintf(path, sizeof path, "%s/key%d", test_tmpdir(), i);
  FILE *f = fopen(path, "w");
  CHECK(f);
  fputs(pem, f);
  fclose(f);
  struct key *k = NULL;
  CHECK_OK(key_load(path, &k));
  mbedtls_pk_free(&pk);
  return k;
}

/* key_sign() (no pool) against mbedtls_ecdsa_sign_det_ext(): KEYS keys, DIGESTS digests each. */
static void check_det(int keys, int digests)
{
  int pairs = 0;
  for (int i = 0; i < keys; i++) {
    mbedtls_ecp_keypair kp;
    mbedtls_ecp_keypair_init(&kp);
    struct key *k = make_key(&kp, i);
    uint8_t pub[KEY_PUBLIC_SIZE], want_pub[KEY_PUBLIC_SIZE];
    size_t olen;
    key_public(k, pub);
    CHECK_OK(mbedtls_ecp_point_write_binary(&kp.grp, &kp.Q, MBEDTLS_ECP_PF_UNCOMPRESSED, &olen, want_pub,
                                            sizeof want_pub));
    CHECK_MEM(pub, want_pub, sizeof pub);
    for (int j = 0; j < digests; j++, pairs++) {
      hash_t h;
      rand_bytes(h.bytes, HASH_SIZE);
      if (j < EDGES)
        edge(j, h.bytes); /* 0, 1, p-1, p, 2^256-1, n-1, n (>= n: reduced) ... */
      uint8_t got[KEY_SIGNATURE_SIZE], want[KEY_SIGNATURE_SIZE];
      CHECK_OK(key_sign(k, &h, got));
      mbedtls_mpi r, s;
      mbedtls_mpi_init(&r);
      mbedtls_mpi_init(&s);
      CHECK_OK(mbedtls_ecdsa_sign_det_ext(&kp.grp, &r, &s, &kp.d, h.bytes, HASH_SIZE, MBEDTLS_MD_SHA256, test_rng,
                                          NULL));
      to_bytes(&r, want);
      to_bytes(&s, want + 32);
      CHECK_MSG(memcmp(got, want, sizeof got) == 0, "key %d digest %d: key_sign differs from mbedTLS", i,
                j);
      mbedtls_mpi_free(&r);
      mbedtls_mpi_free(&s);
    }
    key_free(k);
    mbedtls_ecp_keypair_free(&kp);
  }
  CHECK_INT(pairs, ==, keys * digests);
}

TEST(key_sign_matches_mbedtls_det) { check_det(40, 25); }

/* COUNT signatures from the nonce pool verify with mbedtls_ecdsa_verify(). */
static void check_pool(int count)
{
  mbedtls_ecp_keypair kp;
  mbedtls_ecp_keypair_init(&kp);
  struct key *k = make_key(&kp, 0);
  CHECK_OK(key_presign_start(64));
  int pooled = 0;
  for (int i = 0; i < count; i++) {
    struct key_presign_stats st0, st1;
    key_presign_stats(&st0);
    hash_t h;
    rand_bytes(h.bytes, HASH_SIZE);
    if (i < EDGES)
      edge(i, h.bytes);
    uint8_t sig[KEY_SIGNATURE_SIZE];
    CHECK_OK(key_sign(k, &h, sig));
    key_presign_stats(&st1);
    pooled += st1.taken > st0.taken;
    mbedtls_mpi r, s;
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    CHECK_OK(mbedtls_mpi_read_binary(&r, sig, 32));
    CHECK_OK(mbedtls_mpi_read_binary(&s, sig + 32, 32));
    CHECK_MSG(mbedtls_ecdsa_verify(&kp.grp, h.bytes, HASH_SIZE, &kp.Q, &r, &s) == 0,
              "signature %d does not verify", i);
    h.bytes[5] ^= 1;
    CHECK(mbedtls_ecdsa_verify(&kp.grp, h.bytes, HASH_SIZE, &kp.Q, &r, &s) != 0);
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    if (i % 50 == 49) { /* let the pool refill */
      for (int w = 0; w < 2000; w++) {
        struct key_presign_stats st;
        key_presign_stats(&st);
        if (st.ready == st.size)
          break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
      }
    }
  }
  CHECK_MSG(pooled > 0, "no signature came from the pool");
  key_presign_stop();
  key_free(k);
  mbedtls_ecp_keypair_free(&kp);
}

TEST(pooled_signatures_verify_with_mbedtls) { check_pool(300); }

/* key_verify() takes u1 G from p256 (cached authors and first-seen keys
 * alike); key_verify_plain() is mbedtls_ecdsa_verify() alone. They must
 * agree on good signatures, on corrupted ones and on out-of-range r, s. */
static void check_verify(int keys, int digests)
{
  for (int i = 0; i < keys; i++) {
    mbedtls_ecp_keypair kp;
    mbedtls_ecp_keypair_init(&kp);
    struct key *k = make_key(&kp, i);
    uint8_t pub[KEY_PUBLIC_SIZE];
    key_public(k, pub);
    for (int j = 0; j < digests; j++) {
      hash_t h;
      rand_bytes(h.bytes, HASH_SIZE);
      if (j < EDGES)
        edge(j, h.bytes);
      uint8_t sig[KEY_SIGNATURE_SIZE], bad[KEY_SIGNATURE_SIZE];
      CHECK_OK(key_sign(k, &h, sig));
      CHECK_MSG(key_verify(pub, &h, sig) == 0, "key %d digest %d: good signature refused", i, j);
      CHECK_OK(key_verify_plain(pub, &h, sig));
      memcpy(bad, sig, sizeof bad);
      bad[test_rand() % KEY_SIGNATURE_SIZE] ^= (uint8_t)(1u << (test_rand() % 8));
      int plain = key_verify_plain(pub, &h, bad);
      CHECK(plain != 0);
      CHECK_INT(key_verify(pub, &h, bad), ==, plain);
      memcpy(bad, sig, sizeof bad);
      uint8_t *half = bad + (j % 2 ? 32 : 0); /* r or s */
      if (j % 4 < 2)
        memset(half, 0xff, 32);
      else
        near(N_HEX, j % 3 - 1, half); /* n-1, n, n+1 */
      plain = key_verify_plain(pub, &h, bad);
      CHECK_INT(key_verify(pub, &h, bad), ==, plain);
      hash_t other = h;
      other.bytes[31] ^= 1;
      CHECK_INT(key_verify(pub, &other, sig), ==, -BFS_ESIGNATURE);
    }
    key_free(k);
    mbedtls_ecp_keypair_free(&kp);
  }
}

TEST(key_verify_agrees_with_plain) { check_verify(6, 40); }

/* BASEFS_NO_P256 turns p256 off: key.c's mbedTLS fallback must then give the
 * same deterministic signatures, working pooled ones, the same public keys
 * and the same verdicts. (Each test runs in a fresh child process, so the
 * setting reaches p256_init()'s first call.) */
TEST(mbedtls_fallback)
{
  CHECK_OK(setenv("BASEFS_NO_P256", "1", 1));
  CHECK_INT(p256_init(), ==, -ENOTSUP);
  uint8_t k[32] = {0}, x[32], y[32], r[32], kinv[32];
  k[31] = 1;
  CHECK_INT(p256_base_mul(k, x, y), ==, -ENOTSUP);
  CHECK_INT(p256_ecdsa_nonce(k, r, kinv), ==, -ENOTSUP);
  check_det(4, 25);
  check_pool(60);
  check_verify(3, 20);
  struct key *g;
  CHECK_OK(key_generate(&g));
  uint8_t pub[KEY_PUBLIC_SIZE], sig[KEY_SIGNATURE_SIZE];
  key_public(g, pub);
  hash_t h;
  rand_bytes(h.bytes, HASH_SIZE);
  CHECK_OK(key_sign(g, &h, sig));
  CHECK_OK(key_verify_plain(pub, &h, sig));
  key_free(g);
}
