/*
 * store/p256.h against mbedTLS: the field and scalar arithmetic against
 * mbedtls_mpi, k*G against mbedtls_ecp_mul, key_sign() (which uses p256 for
 * RFC 6979) byte for byte against mbedtls_ecdsa_sign_det_ext(), and pooled
 * signatures against plain mbedtls_ecdsa_verify(); key_verify() on crafted
 * signatures whose final addition is the point at infinity or a doubling;
 * 8 threads at the table's first use. Random inputs come from
 * test_rand(); the runner names the seed of a failure (TEST_SEED=... reruns it).
 */
#include "tests/test.h"

#include <errno.h>
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

/* K = the 4 64-bit limbs L (L[0] least significant), as 32 bytes. */
static void from_limbs(const uint64_t l[4], uint8_t k[32])
{
  for (int i = 0; i < 32; i++)
    k[31 - i] = (uint8_t)(l[i / 8] >> (8 * (i % 8)));
}

/* K must be in [1, n-1] exactly when mbedtls_mpi says so: then K G agrees
 * with mbedTLS (if CHECK_POINT), else every entry point refuses it.
 * Returns whether K was in range. */
static int check_range_and_point(mbedtls_ecp_group *grp, const uint8_t k[32], int check_point)
{
  mbedtls_mpi x;
  mbedtls_mpi_init(&x);
  CHECK_OK(mbedtls_mpi_read_binary(&x, k, 32));
  int in = mbedtls_mpi_cmp_int(&x, 0) > 0 && mbedtls_mpi_cmp_mpi(&x, &grp->N) < 0;
  mbedtls_mpi_free(&x);
  uint8_t px[32], py[32], r[32], kinv[32];
  CHECK_INT(p256_scalar_check(k), ==, in ? 0 : -EINVAL);
  if (!in) {
    CHECK_INT(p256_base_mul(k, px, py), ==, -EINVAL);
    CHECK_INT(p256_ecdsa_nonce(k, r, kinv), ==, -EINVAL);
    CHECK_INT(p256_scalar_inv(k, kinv), ==, -EINVAL);
  } else if (check_point) {
    check_base_mul(grp, k);
  }
  return in;
}

/* K near n (the last window's digit is 15 and the sum of the lower windows
 * is close to n - 15 16^63) and K made of whole 64-bit limbs that are 0,
 * all ones, or n's limb and its neighbours (the borrow chains of the range
 * check and of the reductions); those at or above n must be refused. */
TEST(base_mul_near_n_and_limb_patterns)
{
  CHECK_OK(p256_init());
  mbedtls_ecp_group grp;
  mbedtls_ecp_group_init(&grp);
  CHECK_OK(mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1));
  mbedtls_mpi x, t;
  mbedtls_mpi_init(&x);
  mbedtls_mpi_init(&t);
  uint8_t k[32];
  int points = 0, refused = 0;
  for (int d = 4; d <= 40; d++) { /* n-4 .. n-40 (n-1 .. n-3 are above) */
    near(N_HEX, -d, k);
    points += check_range_and_point(&grp, k, 1);
  }
  for (int j = 0; j < 256; j += 3) { /* n - 2^j, n - 2^j - 1, n - 2^j + 1 */
    for (int dd = -1; dd <= 1; dd++) {
      CHECK_OK(mbedtls_mpi_lset(&t, 1));
      CHECK_OK(mbedtls_mpi_shift_l(&t, (size_t)j));
      CHECK_OK(mbedtls_mpi_sub_mpi(&x, &grp.N, &t));
      CHECK_OK(mbedtls_mpi_add_int(&x, &x, dd));
      to_bytes(&x, k);
      int mul = dd == 0 || j % 15 == 0;
      points += check_range_and_point(&grp, k, mul) && mul;
    }
  }
  for (int b = 8; b < 256; b += 8) { /* n - (a random number of B bits) */
    uint8_t r[32] = {0};
    rand_bytes(r + 32 - b / 8, (size_t)b / 8);
    r[32 - b / 8] |= 0x80;
    CHECK_OK(mbedtls_mpi_read_binary(&t, r, 32));
    CHECK_OK(mbedtls_mpi_sub_mpi(&x, &grp.N, &t));
    to_bytes(&x, k);
    points += check_range_and_point(&grp, k, 1);
  }
  for (int d = 0; d < 64; d++) { /* n .. n+63 and 2^256-1 .. 2^256-64: refused */
    near(N_HEX, d, k);
    refused += !check_range_and_point(&grp, k, 0);
    memset(k, 0xff, 32);
    k[31] = (uint8_t)(0xff - d);
    refused += !check_range_and_point(&grp, k, 0);
  }
  CHECK_INT(refused, ==, 128);
  /* Every limb from {0, 1, all ones, n_i - 1, n_i, n_i + 1}: 6^4 scalars,
   * all range-checked, a fifth of the in-range ones (and all with n's top
   * limb) multiplied. */
  uint8_t nb[32];
  to_bytes(&grp.N, nb);
  uint64_t nl[4] = {0};
  for (int i = 0; i < 32; i++)
    nl[i / 8] |= (uint64_t)nb[31 - i] << (8 * (i % 8));
  int combos = 0;
  for (int c = 0; c < 6 * 6 * 6 * 6; c++) {
    uint64_t l[4];
    for (int i = 0, cc = c; i < 4; i++, cc /= 6) {
      static const int64_t delta[3] = {-1, 0, 1};
      int v = cc % 6;
      l[i] = v == 0 ? 0 : v == 1 ? 1 : v == 2 ? ~(uint64_t)0 : nl[i] + (uint64_t)delta[v - 3];
    }
    from_limbs(l, k);
    int in = check_range_and_point(&grp, k, 0);
    if (in && (c % 5 == 0 || l[3] == nl[3])) {
      check_base_mul(&grp, k);
      points++;
    }
    combos += in;
  }
  CHECK(combos > 100);
  CHECK(points > 300);
  mbedtls_mpi_free(&x);
  mbedtls_mpi_free(&t);
  mbedtls_ecp_group_free(&grp);
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

/* A private scalar from test_rand() written as a bare SEC1 PEM file (as
 * key_load() reads it) at PATH, and the same key as an mbedTLS key pair.
 * mbedTLS only: touches no p256 state. */
static void make_key_file(mbedtls_ecp_keypair *kp, int i, char *path, size_t cap)
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
  snprintf(path, cap, "%s/key%d", test_tmpdir(), i);
  FILE *f = fopen(path, "w");
  CHECK(f);
  fputs(pem, f);
  fclose(f);
  mbedtls_pk_free(&pk);
}

/* make_key_file(), loaded by key_load(). */
static struct key *make_key(mbedtls_ecp_keypair *kp, int i)
{
  char path[4200];
  make_key_file(kp, i, path, sizeof path);
  struct key *k = NULL;
  CHECK_OK(key_load(path, &k));
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

/* X = a random scalar in [1, n-1] from test_rand(). */
static void rand_scalar(const mbedtls_ecp_group *grp, mbedtls_mpi *x)
{
  uint8_t b[32];
  do {
    rand_bytes(b, 32);
    CHECK_OK(mbedtls_mpi_read_binary(x, b, 32));
  } while (mbedtls_mpi_cmp_int(x, 0) == 0 || mbedtls_mpi_cmp_mpi(x, &grp->N) >= 0);
}

/* key_verify() and key_verify_plain() on (PUB, E, R || S), E and R, S as
 * mbedtls_mpi: both must give WANT. */
static void check_verdict(const uint8_t pub[KEY_PUBLIC_SIZE], const mbedtls_mpi *e, const mbedtls_mpi *r,
                          const mbedtls_mpi *s, int want, int key, const char *what)
{
  hash_t h;
  uint8_t sig[KEY_SIGNATURE_SIZE];
  to_bytes(e, h.bytes);
  to_bytes(r, sig);
  to_bytes(s, sig + 32);
  int split = key_verify(pub, &h, sig), plain = key_verify_plain(pub, &h, sig);
  CHECK_MSG(split == want && plain == want, "key %d, %s: key_verify %d, key_verify_plain %d, want %d", key, what,
            split, plain, want);
}

/*
 * The two special cases of the final addition R = u1 G + u2 Q (u1 = e/s,
 * u2 = r/s) in key_verify(), where u1 G comes from p256 and u2 Q from
 * mbedTLS, and in key_verify_plain():
 *  - R = infinity: e = -r d mod n makes u1 + u2 d = 0, whatever s. Must be
 *    refused. With r = 1 it catches a verifier that forgets the infinity
 *    check: mbedTLS's point at infinity is (1, 1, 0), whose X is 1 = r.
 *    Also with a digest >= n (e + n, the same e mod n).
 *  - u1 G = u2 Q: e = r d mod n; with s = 2e/k for r = x(kG) mod n the
 *    signature is valid (u1 + u2 d = k) and its addition is a doubling.
 *    With another s it must be refused.
 * Each of 100 keys is verified first as a one-off key (u2 Q on a table
 * made for the call: an infinity case, r = 1 for every third key), then
 * from the per-thread author cache (its second signature in a row: the
 * valid doubling), then one more case from the cache in turn: the doubling
 * with a wrong s, infinity with r = 1, infinity with a small digest, and
 * infinity with that digest + n. Both of key_verify()'s paths meet both
 * cases; key_verify_plain() must say the same each time.
 */
TEST(key_verify_infinity_and_doubling)
{
  mbedtls_ecp_group grp;
  mbedtls_ecp_group_init(&grp);
  CHECK_OK(mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1));
  mbedtls_mpi d, r, s, e, k, t;
  mbedtls_ecp_point Q, R;
  mbedtls_mpi_init(&d);
  mbedtls_mpi_init(&r);
  mbedtls_mpi_init(&s);
  mbedtls_mpi_init(&e);
  mbedtls_mpi_init(&k);
  mbedtls_mpi_init(&t);
  mbedtls_ecp_point_init(&Q);
  mbedtls_ecp_point_init(&R);
  int big_digests = 0;
  for (int i = 0; i < 100; i++) {
    rand_scalar(&grp, &d);
    CHECK_OK(mbedtls_ecp_mul(&grp, &Q, &d, &grp.G, test_rng, NULL));
    uint8_t pub[KEY_PUBLIC_SIZE];
    size_t olen;
    CHECK_OK(mbedtls_ecp_point_write_binary(&grp, &Q, MBEDTLS_ECP_PF_UNCOMPRESSED, &olen, pub, sizeof pub));

    /* Infinity, first sight of the key (one-off path): e = n - (r d mod n). */
    if (i % 3 == 0)
      CHECK_OK(mbedtls_mpi_lset(&r, 1));
    else
      rand_scalar(&grp, &r);
    rand_scalar(&grp, &s);
    CHECK_OK(mbedtls_mpi_mul_mpi(&t, &r, &d));
    CHECK_OK(mbedtls_mpi_mod_mpi(&t, &t, &grp.N));
    CHECK_OK(mbedtls_mpi_sub_mpi(&e, &grp.N, &t));
    check_verdict(pub, &e, &r, &s, -BFS_ESIGNATURE, i, "R = infinity, one-off key");

    /* Doubling, valid: r = x(kG) mod n, e = r d, s = 2e/k. Second sight:
     * the key enters the author cache. */
    rand_scalar(&grp, &k);
    CHECK_OK(mbedtls_ecp_mul(&grp, &R, &k, &grp.G, test_rng, NULL));
    CHECK_OK(mbedtls_mpi_mod_mpi(&r, &R.X, &grp.N));
    CHECK_OK(mbedtls_mpi_mul_mpi(&e, &r, &d));
    CHECK_OK(mbedtls_mpi_mod_mpi(&e, &e, &grp.N));
    CHECK_OK(mbedtls_mpi_add_mpi(&t, &e, &e));
    CHECK_OK(mbedtls_mpi_inv_mod(&s, &k, &grp.N));
    CHECK_OK(mbedtls_mpi_mul_mpi(&s, &s, &t));
    CHECK_OK(mbedtls_mpi_mod_mpi(&s, &s, &grp.N));
    check_verdict(pub, &e, &r, &s, 0, i, "u1 G = u2 Q, valid");
    /* Then one more case per key, from the author cache (ASan time). */
    uint8_t eb[32];
    switch (i % 4) {
    case 0: /* the same halves, a wrong s: u1 G = u2 Q still, R = 2 u1 G, not r */
      CHECK_OK(mbedtls_mpi_add_int(&s, &s, 1));
      CHECK_OK(mbedtls_mpi_mod_mpi(&s, &s, &grp.N));
      if (mbedtls_mpi_cmp_int(&s, 0) != 0)
        check_verdict(pub, &e, &r, &s, -BFS_ESIGNATURE, i, "u1 G = u2 Q, wrong s");
      break;
    case 1: /* r = 1: e = n - d */
      CHECK_OK(mbedtls_mpi_lset(&r, 1));
      CHECK_OK(mbedtls_mpi_sub_mpi(&e, &grp.N, &d));
      check_verdict(pub, &e, &r, &s, -BFS_ESIGNATURE, i, "R = infinity, r = 1, cached author");
      break;
    default: /* a digest e < 2^224 <= 2^256 - n, r = -e/d mod n; as e + n too */
      memset(eb, 0, sizeof eb);
      rand_bytes(eb + 4, 28);
      eb[4] |= 1;
      CHECK_OK(mbedtls_mpi_read_binary(&e, eb, 32));
      CHECK_OK(mbedtls_mpi_inv_mod(&t, &d, &grp.N));
      CHECK_OK(mbedtls_mpi_mul_mpi(&t, &t, &e));
      CHECK_OK(mbedtls_mpi_mod_mpi(&t, &t, &grp.N));
      CHECK_OK(mbedtls_mpi_sub_mpi(&r, &grp.N, &t));
      rand_scalar(&grp, &s);
      if (i % 4 == 3)
        CHECK_OK(mbedtls_mpi_add_mpi(&e, &e, &grp.N));
      CHECK(mbedtls_mpi_bitlen(&e) <= 256);
      check_verdict(pub, &e, &r, &s, -BFS_ESIGNATURE, i,
                    i % 4 == 3 ? "R = infinity, digest e + n" : "R = infinity, cached author");
      big_digests += i % 4 == 3;
      break;
    }
  }
  CHECK_INT(big_digests, ==, 25);
  mbedtls_mpi_free(&d);
  mbedtls_mpi_free(&r);
  mbedtls_mpi_free(&s);
  mbedtls_mpi_free(&e);
  mbedtls_mpi_free(&k);
  mbedtls_mpi_free(&t);
  mbedtls_ecp_point_free(&Q);
  mbedtls_ecp_point_free(&R);
  mbedtls_ecp_group_free(&grp);
}

/*
 * Concurrent first use of the table: 8 threads released at once by a
 * barrier, in a fresh process whose table is not built, each first calling
 * p256_base_mul(), key_load() + key_sign() (key_load() computes the public
 * key with p256: no key exists before the table) or key_verify(), then the
 * others. Every result is checked against mbedtls_ecp_mul() and
 * mbedtls_ecdsa_sign_det_ext(), computed beforehand in this process with
 * mbedTLS alone (nothing in this test touches p256 before the fork; the
 * runner forks every test from a process that never does, except under
 * TEST_NOFORK). A few rounds, each in a new child, for more interleavings.
 */
#define FIRST_THREADS 8
#define FIRST_MULS 3
#define FIRST_SIGS 3

struct first_use {
  pthread_barrier_t *go;
  int first; /* 0: base_mul, 1: key_load + key_sign, 2: key_verify */
  char path[4200];
  uint8_t k[FIRST_MULS][32], want_xy[FIRST_MULS][64];
  uint8_t want_pub[KEY_PUBLIC_SIZE];
  hash_t h[FIRST_SIGS];
  uint8_t want_sig[FIRST_SIGS][KEY_SIGNATURE_SIZE];
  int bad;
  char why[160];
};

static void first_fail(struct first_use *f, const char *why, int i, int rc)
{
  if (!f->bad++)
    snprintf(f->why, sizeof f->why, "%s (%d): rc %d", why, i, rc);
}

static void first_muls(struct first_use *f)
{
  for (int i = 0; i < FIRST_MULS; i++) {
    uint8_t xy[64];
    int rc = p256_base_mul(f->k[i], xy, xy + 32);
    if (rc != 0 || memcmp(xy, f->want_xy[i], 64) != 0)
      first_fail(f, "p256_base_mul differs from mbedtls_ecp_mul", i, rc);
  }
}

static void first_sigs(struct first_use *f)
{
  struct key *key = NULL;
  int rc = key_load(f->path, &key);
  if (rc != 0) {
    first_fail(f, "key_load", 0, rc);
    return;
  }
  uint8_t pub[KEY_PUBLIC_SIZE];
  key_public(key, pub);
  if (memcmp(pub, f->want_pub, sizeof pub) != 0)
    first_fail(f, "public key differs from mbedTLS's", 0, 0);
  for (int i = 0; i < FIRST_SIGS; i++) {
    uint8_t sig[KEY_SIGNATURE_SIZE];
    rc = key_sign(key, &f->h[i], sig);
    if (rc != 0 || memcmp(sig, f->want_sig[i], sizeof sig) != 0)
      first_fail(f, "key_sign differs from mbedtls_ecdsa_sign_det_ext", i, rc);
  }
  key_free(key);
}

static void first_verifies(struct first_use *f)
{
  for (int i = 0; i < FIRST_SIGS; i++) {
    int rc = key_verify(f->want_pub, &f->h[i], f->want_sig[i]);
    if (rc != 0)
      first_fail(f, "key_verify refused mbedTLS's signature", i, rc);
    hash_t other = f->h[i];
    other.bytes[i] ^= 0x10;
    rc = key_verify(f->want_pub, &other, f->want_sig[i]);
    if (rc != -BFS_ESIGNATURE)
      first_fail(f, "key_verify accepted a signature of another digest", i, rc);
  }
}

static void *first_use_thread(void *arg)
{
  struct first_use *f = arg;
  pthread_barrier_wait(f->go);
  for (int step = 0; step < 3; step++) {
    switch ((f->first + step) % 3) {
    case 0: first_muls(f); break;
    case 1: first_sigs(f); break;
    default: first_verifies(f); break;
    }
  }
  return NULL;
}

TEST(concurrent_first_use)
{
  static struct first_use fu[FIRST_THREADS];
  mbedtls_ecp_group grp;
  mbedtls_ecp_group_init(&grp);
  CHECK_OK(mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1));
  mbedtls_mpi m, r, s;
  mbedtls_ecp_point P;
  mbedtls_mpi_init(&m);
  mbedtls_mpi_init(&r);
  mbedtls_mpi_init(&s);
  mbedtls_ecp_point_init(&P);
  for (int t = 0; t < FIRST_THREADS; t++) {
    struct first_use *f = &fu[t];
    memset(f, 0, sizeof *f);
    mbedtls_ecp_keypair kp;
    mbedtls_ecp_keypair_init(&kp);
    make_key_file(&kp, t, f->path, sizeof f->path);
    size_t olen;
    CHECK_OK(mbedtls_ecp_point_write_binary(&kp.grp, &kp.Q, MBEDTLS_ECP_PF_UNCOMPRESSED, &olen, f->want_pub,
                                            sizeof f->want_pub));
    for (int i = 0; i < FIRST_MULS; i++) {
      rand_scalar(&grp, &m);
      to_bytes(&m, f->k[i]);
      CHECK_OK(mbedtls_ecp_mul(&grp, &P, &m, &grp.G, test_rng, NULL));
      to_bytes(&P.X, f->want_xy[i]);
      to_bytes(&P.Y, f->want_xy[i] + 32);
    }
    for (int i = 0; i < FIRST_SIGS; i++) {
      rand_bytes(f->h[i].bytes, HASH_SIZE);
      CHECK_OK(mbedtls_ecdsa_sign_det_ext(&grp, &r, &s, &kp.d, f->h[i].bytes, HASH_SIZE, MBEDTLS_MD_SHA256, test_rng,
                                          NULL));
      to_bytes(&r, f->want_sig[i]);
      to_bytes(&s, f->want_sig[i] + 32);
    }
    mbedtls_ecp_keypair_free(&kp);
  }
  for (int round = 0; round < 6; round++) {
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) { /* no CHECK here: test_fail() would run the runner's exit handlers */
      pthread_barrier_t go;
      pthread_t th[FIRST_THREADS];
      int bad = pthread_barrier_init(&go, NULL, FIRST_THREADS) != 0;
      for (int t = 0; t < FIRST_THREADS && !bad; t++) {
        fu[t].go = &go;
        fu[t].first = (t + round) % 3;
        bad = pthread_create(&th[t], NULL, first_use_thread, &fu[t]) != 0;
      }
      if (bad) /* the barrier would wait forever */
        _exit(3);
      for (int t = 0; t < FIRST_THREADS; t++)
        pthread_join(th[t], NULL);
      for (int t = 0; t < FIRST_THREADS; t++)
        if (fu[t].bad) {
          fprintf(stderr, "# round %d thread %d (first %d): %d wrong, first: %s\n", round, t, fu[t].first, fu[t].bad,
                  fu[t].why);
          bad = 1;
        }
      fflush(stderr);
      _exit(bad);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "round %d: child status 0x%x", round, status);
  }
  mbedtls_mpi_free(&m);
  mbedtls_mpi_free(&r);
  mbedtls_mpi_free(&s);
  mbedtls_ecp_point_free(&P);
  mbedtls_ecp_group_free(&grp);
}

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
