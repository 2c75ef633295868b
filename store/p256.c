/*
 * P-256 for signing: field mod p, points, scalars mod n. See p256.h.
 *
 * Representation. A field element or scalar is 4 little-endian 64-bit
 * limbs, always fully reduced (< p, resp. < n) between operations. Products
 * go through unsigned __int128. Field elements live in Montgomery form
 * (a R mod p, R = 2^256) from the moment they are loaded until they are
 * written out; scalars are kept in normal form and enter Montgomery form
 * only for a product (one extra multiplication by R^2, which is cheap).
 *
 * Constant time. The secret values here are the nonce k, its inverse, the
 * private scalar d and everything computed from them before the final r and
 * s. Code that touches them has no branch and no memory index that depends
 * on them: conditional subtractions and selections use all-ones/all-zero
 * masks; the table lookup reads all 15 entries of a window and keeps one by
 * mask; loops run a fixed number of times; exponents (p-2, n-2) and window
 * positions are public constants. The return codes -EINVAL (a scalar out of
 * range) and -EAGAIN (r or s = 0) are the only secret-dependent outcomes, and
 * an ECDSA signer reveals them anyway by retrying.
 */
#include "store/p256.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned __int128 u128;

/* ---- limbs ---- */

#define LIMBS 4

/* The limb loops are short and hot: unrolled, they run ~1.4x faster (gcc
 * -O2 leaves them rolled). */
#define UNROLL _Pragma("GCC unroll 4")

/* p = 2^256 - 2^224 + 2^192 + 2^96 - 1 and n, the order of G. */
static const uint64_t P[LIMBS] = {0xffffffffffffffffULL, 0x00000000ffffffffULL, 0x0000000000000000ULL,
                                  0xffffffff00000001ULL};
static const uint64_t N[LIMBS] = {0xf3b9cac2fc632551ULL, 0xbce6faada7179e84ULL, 0xffffffffffffffffULL,
                                  0xffffffff00000000ULL};
/* -m^-1 mod 2^64 for Montgomery reduction: 1 for p (its low limb is all ones). */
#define P_M0 1ULL
#define N_M0 0xccd1c8aaee00bc4fULL
/* R^2 mod m: multiplying by it enters Montgomery form. */
static const uint64_t RR_P[LIMBS] = {0x0000000000000003ULL, 0xfffffffbffffffffULL, 0xfffffffffffffffeULL,
                                     0x00000004fffffffdULL};
static const uint64_t RR_N[LIMBS] = {0x83244c95be79eea2ULL, 0x4699799c49bd6fa6ULL, 0x2845b2392b6bec59ULL,
                                     0x66e12d94f3d95620ULL};
/* 1 (multiplying by it leaves Montgomery form) and R mod p (1 in Montgomery form). */
static const uint64_t ONE[LIMBS] = {1, 0, 0, 0};
static const uint64_t ONE_P[LIMBS] = {0x0000000000000001ULL, 0xffffffff00000000ULL, 0xffffffffffffffffULL,
                                      0x00000000fffffffeULL};
/* The curve's b and G, in Montgomery form (a = -3). */
static const uint64_t B_P[LIMBS] = {0xd89cdf6229c4bddfULL, 0xacf005cd78843090ULL, 0xe5a220abf7212ed6ULL,
                                    0xdc30061d04874834ULL};
static const uint64_t GX_P[LIMBS] = {0x79e730d418a9143cULL, 0x75ba95fc5fedb601ULL, 0x79fb732b77622510ULL,
                                     0x18905f76a53755c6ULL};
static const uint64_t GY_P[LIMBS] = {0xddf25357ce95560aULL, 0x8b4ab8e4ba19e45cULL, 0xd2e88688dd21f325ULL,
                                     0x8571ff1825885d85ULL};

static __attribute__((noinline)) void load_be(uint64_t r[LIMBS], const uint8_t b[P256_BYTES])
{
  for (int i = 0; i < LIMBS; i++) {
    uint64_t v = 0;
    for (int j = 0; j < 8; j++)
      v = (v << 8) | b[(LIMBS - 1 - i) * 8 + j];
    r[i] = v;
  }
}

static __attribute__((noinline)) void store_be(uint8_t b[P256_BYTES], const uint64_t a[LIMBS])
{
  for (int i = 0; i < LIMBS; i++)
    for (int j = 0; j < 8; j++)
      b[(LIMBS - 1 - i) * 8 + j] = (uint8_t)(a[i] >> (56 - 8 * j));
}

static void wipe(void *p, size_t n) { explicit_bzero(p, n); }

/* X, opaque to the optimizer: it cannot tell that a mask is all ones or all
 * zeros and turn a masked selection back into a branch. */
static inline uint64_t value_barrier(uint64_t x)
{
  __asm__("" : "+r"(x));
  return x;
}

/* All ones if X != 0, else 0; no branch. */
static inline uint64_t mask_nonzero(uint64_t x)
{
  return value_barrier((uint64_t)0 - ((x | ((uint64_t)0 - x)) >> 63));
}

static inline uint64_t is_zero_mask(const uint64_t a[LIMBS])
{
  return ~mask_nonzero(a[0] | a[1] | a[2] | a[3]);
}

/* R = A - B; returns the borrow (0 or 1). */
static inline uint64_t sub4(uint64_t r[LIMBS], const uint64_t a[LIMBS], const uint64_t b[LIMBS])
{
  uint64_t borrow = 0;
  UNROLL
  for (int i = 0; i < LIMBS; i++) {
    u128 d = (u128)a[i] - b[i] - borrow;
    r[i] = (uint64_t)d;
    borrow = (uint64_t)(d >> 64) & 1;
  }
  return borrow;
}

/* R = A + B; returns the carry (0 or 1). */
static inline uint64_t add4(uint64_t r[LIMBS], const uint64_t a[LIMBS], const uint64_t b[LIMBS])
{
  u128 c = 0;
  UNROLL
  for (int i = 0; i < LIMBS; i++) {
    c += (u128)a[i] + b[i];
    r[i] = (uint64_t)c;
    c >>= 64;
  }
  return (uint64_t)c;
}

/* R = MASK ? A : R. */
static inline void cmov4(uint64_t r[LIMBS], const uint64_t a[LIMBS], uint64_t mask)
{
  UNROLL
  for (int i = 0; i < LIMBS; i++)
    r[i] = (r[i] & ~mask) | (a[i] & mask);
}

/* All ones if 0 < A < M. */
static uint64_t in_range_mask(const uint64_t a[LIMBS], const uint64_t m[LIMBS])
{
  uint64_t d[LIMBS];
  uint64_t below = (uint64_t)0 - sub4(d, a, m);
  return below & ~is_zero_mask(a);
}

/* R = (HI:T) mod M for a 257-bit value HI:T < 2M: subtract M unless that goes negative. */
static inline void reduce_once(uint64_t r[LIMBS], const uint64_t t[LIMBS], uint64_t hi, const uint64_t m[LIMBS])
{
  uint64_t d[LIMBS];
  uint64_t borrow = sub4(d, t, m);
  uint64_t keep = value_barrier((uint64_t)0 - (borrow & ~hi & 1)); /* HI:T - M < 0 */
  UNROLL
  for (int i = 0; i < LIMBS; i++)
    r[i] = (t[i] & keep) | (d[i] & ~keep);
}

/* R = A + B mod M, for A, B < M. */
static inline void mod_add(uint64_t r[LIMBS], const uint64_t a[LIMBS], const uint64_t b[LIMBS], const uint64_t m[LIMBS])
{
  uint64_t t[LIMBS];
  uint64_t carry = add4(t, a, b);
  reduce_once(r, t, carry, m);
}

/* R = A - B mod M, for A, B < M. */
static inline void mod_sub(uint64_t r[LIMBS], const uint64_t a[LIMBS], const uint64_t b[LIMBS], const uint64_t m[LIMBS])
{
  uint64_t t[LIMBS], mm[LIMBS];
  uint64_t mask = value_barrier((uint64_t)0 - sub4(t, a, b));
  UNROLL
  for (int i = 0; i < LIMBS; i++)
    mm[i] = m[i] & mask;
  add4(r, t, mm);
}

/*
 * Montgomery multiplication (CIOS): R = A B / 2^256 mod M, for A < 2^256 and
 * B < M (then the running value stays below 2M and one conditional
 * subtraction reduces it). M0 = -M^-1 mod 2^64. R may alias A or B.
 */
static inline __attribute__((always_inline)) void mont_mul(uint64_t r[LIMBS], const uint64_t a[LIMBS],
                                                           const uint64_t b[LIMBS], const uint64_t m[LIMBS],
                                                           uint64_t m0)
{
  uint64_t t[LIMBS + 2] = {0};
  UNROLL
  for (int i = 0; i < LIMBS; i++) {
    u128 c = 0;
    UNROLL
    for (int j = 0; j < LIMBS; j++) {
      c += (u128)a[j] * b[i] + t[j];
      t[j] = (uint64_t)c;
      c >>= 64;
    }
    c += t[LIMBS];
    t[LIMBS] = (uint64_t)c;
    t[LIMBS + 1] = (uint64_t)(c >> 64);
    /* Add q M with q chosen so that the low limb becomes 0, and shift it out. */
    uint64_t q = t[0] * m0;
    c = ((u128)q * m[0] + t[0]) >> 64;
    UNROLL
    for (int j = 1; j < LIMBS; j++) {
      c += (u128)q * m[j] + t[j];
      t[j - 1] = (uint64_t)c;
      c >>= 64;
    }
    c += t[LIMBS];
    t[LIMBS - 1] = (uint64_t)c;
    t[LIMBS] = t[LIMBS + 1] + (uint64_t)(c >> 64);
  }
  reduce_once(r, t, t[LIMBS], m);
}

/* ---- the field mod p (Montgomery form) ---- */

static void fe_mul(uint64_t r[LIMBS], const uint64_t a[LIMBS], const uint64_t b[LIMBS]) { mont_mul(r, a, b, P, P_M0); }
/* A dedicated squaring would save ~20% of a product's multiplications; one
 * copy of the multiplication is smaller. */
static void fe_sqr(uint64_t r[LIMBS], const uint64_t a[LIMBS]) { fe_mul(r, a, a); }
/* Out of line: the point formulas call them often, and inlined they would
 * cost ~10 KB of code for no measurable speed. */
static __attribute__((noinline)) void fe_add(uint64_t r[LIMBS], const uint64_t a[LIMBS], const uint64_t b[LIMBS])
{
  mod_add(r, a, b, P);
}
static __attribute__((noinline)) void fe_sub(uint64_t r[LIMBS], const uint64_t a[LIMBS], const uint64_t b[LIMBS])
{
  mod_sub(r, a, b, P);
}

static void fe_sqr_n(uint64_t r[LIMBS], const uint64_t a[LIMBS], int n)
{
  fe_sqr(r, a);
  for (int i = 1; i < n; i++)
    fe_sqr(r, r);
}

/*
 * R = A^(p-2) = A^-1 (0 for 0), by a fixed addition chain: 255 squarings and
 * 12 multiplications whatever A is. xK below is A^(2^K - 1); p - 2 in 32-bit
 * words is ffffffff 00000001 00000000 00000000 00000000 ffffffff ffffffff
 * fffffffd, built from the top: x32, then "1" 32 places down, then x32 128
 * places down, x32 again, and finally 30 ones and the bits "01".
 */
static void fe_inv(uint64_t r[LIMBS], const uint64_t a[LIMBS])
{
  uint64_t x2[LIMBS], x3[LIMBS], x6[LIMBS], x12[LIMBS], x15[LIMBS], x30[LIMBS], x32[LIMBS], t[LIMBS];
  fe_sqr(t, a);
  fe_mul(x2, t, a);
  fe_sqr(t, x2);
  fe_mul(x3, t, a);
  fe_sqr_n(t, x3, 3);
  fe_mul(x6, t, x3);
  fe_sqr_n(t, x6, 6);
  fe_mul(x12, t, x6);
  fe_sqr_n(t, x12, 3);
  fe_mul(x15, t, x3);
  fe_sqr_n(t, x15, 15);
  fe_mul(x30, t, x15);
  fe_sqr_n(t, x30, 2);
  fe_mul(x32, t, x2);
  fe_sqr_n(t, x32, 32);
  fe_mul(t, t, a); /* ffffffff 00000001 */
  fe_sqr_n(t, t, 128);
  fe_mul(t, t, x32); /* ... 00000000 00000000 00000000 ffffffff */
  fe_sqr_n(t, t, 32);
  fe_mul(t, t, x32); /* ... ffffffff */
  fe_sqr_n(t, t, 30);
  fe_mul(t, t, x30);
  fe_sqr_n(t, t, 2);
  fe_mul(r, t, a); /* ... fffffffd */
}

/* Bytes (any 256-bit value) into Montgomery form, reduced mod p. */
static void fe_load(uint64_t r[LIMBS], const uint8_t b[P256_BYTES])
{
  uint64_t a[LIMBS];
  load_be(a, b);
  fe_mul(r, a, RR_P);
}

/* Montgomery form out to bytes. */
static void fe_store(uint8_t b[P256_BYTES], const uint64_t a[LIMBS])
{
  uint64_t t[LIMBS];
  fe_mul(t, a, ONE);
  store_be(b, t);
}

/* ---- points ---- */

/* Jacobian (X, Y, Z) is the affine point (X/Z^2, Y/Z^3); affine points are
 * what the table holds. Coordinates in Montgomery form. */
struct jac {
  uint64_t x[LIMBS], y[LIMBS], z[LIMBS];
};
struct aff {
  uint64_t x[LIMBS], y[LIMBS];
};

/* R = 2P (dbl-2001-b, for a = -3); correct for every finite P (P-256 has no
 * point of order 2, so y is never 0). R may alias P. */
static void point_double(struct jac *r, const struct jac *p)
{
  uint64_t delta[LIMBS], gamma[LIMBS], beta[LIMBS], alpha[LIMBS], t1[LIMBS], t2[LIMBS];
  fe_sqr(delta, p->z);
  fe_sqr(gamma, p->y);
  fe_mul(beta, p->x, gamma);
  fe_sub(t1, p->x, delta);
  fe_add(t2, p->x, delta);
  fe_mul(t1, t1, t2);
  fe_add(alpha, t1, t1);
  fe_add(alpha, alpha, t1); /* alpha = 3 (x - delta)(x + delta) */
  fe_add(t1, p->y, p->z);
  fe_sqr(t1, t1);
  fe_sub(t1, t1, gamma);
  fe_sub(r->z, t1, delta); /* z3 = (y + z)^2 - gamma - delta; p->y, p->z are dead now */
  fe_add(beta, beta, beta);
  fe_add(beta, beta, beta); /* 4 beta */
  fe_sqr(t1, alpha);
  fe_add(t2, beta, beta);
  fe_sub(r->x, t1, t2); /* x3 = alpha^2 - 8 beta */
  fe_sub(t1, beta, r->x);
  fe_mul(t1, alpha, t1);
  fe_sqr(t2, gamma);
  fe_add(t2, t2, t2);
  fe_add(t2, t2, t2);
  fe_add(t2, t2, t2);
  fe_sub(r->y, t1, t2); /* y3 = alpha (4 beta - x3) - 8 gamma^2 */
}

/*
 * R = P + Q for Jacobian P and affine Q (8M + 3S). The formula is only
 * right when P and Q are finite and P != +-Q (then H = 0: a doubling or the
 * point at infinity, which it does not detect); its callers guarantee that.
 * R may alias P.
 */
static void point_add_mixed(struct jac *r, const struct jac *p, const struct aff *q)
{
  uint64_t z1z1[LIMBS], u2[LIMBS], s2[LIMBS], h[LIMBS], rr[LIMBS], hh[LIMBS], hhh[LIMBS], v[LIMBS], t[LIMBS];
  uint64_t x3[LIMBS], y3[LIMBS], z3[LIMBS];
  fe_sqr(z1z1, p->z);
  fe_mul(u2, q->x, z1z1);
  fe_mul(s2, q->y, p->z);
  fe_mul(s2, s2, z1z1);
  fe_sub(h, u2, p->x);
  fe_sub(rr, s2, p->y);
  fe_sqr(hh, h);
  fe_mul(hhh, h, hh);
  fe_mul(v, p->x, hh);
  fe_sqr(t, rr);
  fe_sub(t, t, hhh);
  fe_sub(t, t, v);
  fe_sub(x3, t, v); /* x3 = rr^2 - h^3 - 2 x1 h^2 */
  fe_sub(t, v, x3);
  fe_mul(t, rr, t);
  fe_mul(y3, p->y, hhh);
  fe_sub(y3, t, y3); /* y3 = rr (x1 h^2 - x3) - y1 h^3 */
  fe_mul(z3, p->z, h);
  memcpy(r->x, x3, sizeof x3);
  memcpy(r->y, y3, sizeof y3);
  memcpy(r->z, z3, sizeof z3);
}

/*
 * OUT[i] = IN[i] in affine form, for COUNT finite points (no Z is 0), with
 * one field inversion in all (Montgomery's trick: invert the product of all
 * Z, then peel the single inverses off with the prefix products).
 */
static int batch_to_affine(struct aff *out, const struct jac *in, size_t count)
{
  uint64_t(*prefix)[LIMBS] = malloc(count * sizeof *prefix);
  if (!prefix)
    return -ENOMEM;
  memcpy(prefix[0], in[0].z, sizeof prefix[0]);
  for (size_t i = 1; i < count; i++)
    fe_mul(prefix[i], prefix[i - 1], in[i].z);
  uint64_t inv[LIMBS], zinv[LIMBS], z2[LIMBS];
  fe_inv(inv, prefix[count - 1]); /* 1 / (z0 ... z_{count-1}) */
  for (size_t i = count; i-- > 0;) {
    if (i > 0) {
      fe_mul(zinv, inv, prefix[i - 1]); /* 1 / z_i */
      fe_mul(inv, inv, in[i].z);        /* 1 / (z0 ... z_{i-1}) */
    } else {
      memcpy(zinv, inv, sizeof zinv);
    }
    fe_sqr(z2, zinv);
    fe_mul(out[i].x, in[i].x, z2);
    fe_mul(z2, z2, zinv);
    fe_mul(out[i].y, in[i].y, z2);
  }
  free(prefix);
  return 0;
}

/*
 * The fixed-base table: TABLE[i][j - 1] = j 16^i G for the 64 4-bit windows
 * i of a scalar and the digits j = 1..15 (digit 0 needs no entry): 960
 * affine points, 60 KiB, in .bss (not in the binary) and written once by
 * build_table() under pthread_once.
 */
#define WINDOWS 64
#define DIGITS 15
static struct aff table[WINDOWS][DIGITS] __attribute__((aligned(64)));

/* OUT = TABLE[I][DIGIT - 1], or garbage (all zero) for digit 0. Reads all
 * 15 entries and keeps one by mask: the memory access pattern is the same
 * for every digit. */
static void table_select(struct aff *out, int i, uint64_t digit)
{
  memset(out, 0, sizeof *out);
  for (uint64_t j = 1; j <= DIGITS; j++) {
    uint64_t m = ~mask_nonzero(j ^ digit);
    cmov4(out->x, table[i][j - 1].x, m);
    cmov4(out->y, table[i][j - 1].y, m);
  }
}

/*
 * (X, Y) = K G in Montgomery form, for K in [1, n-1]: K = sum d_i 16^i over
 * 64 digits d_i in 0..15, and K G = sum d_i (16^i G), one table entry and
 * one mixed addition per window, no doubling.
 *
 * Why the addition never meets its special cases: before window i the
 * accumulator holds A = a G with a = sum_{j<i} d_j 16^j, so 0 <= a < 16^i.
 * It is infinity exactly when a = 0, i.e. all digits so far were 0, which
 * the mask INF tracks (a nonzero a < 16^i <= 2^252 < n is no multiple of n).
 * The entry added is T = d 16^i G with 1 <= d <= 15. A = T would need
 * a == d 16^i (mod n) and A = -T would need a + d 16^i == 0 (mod n).
 * First, 0 < d 16^i - a <= 15 16^i <= 15 2^252 < n, so the difference is no
 * multiple of n: A != T. Second, 0 < a + d 16^i < 16^(i+1); for i < 63
 * that is below 2^252 < n, and for i = 63 it is K itself (every digit is
 * in), which is in [1, n-1]: A != -T. So every addition that is kept has
 * distinct, non-opposite, finite inputs.
 *
 * Digit 0 and the empty accumulator are handled without a branch: the sum
 * is always computed (on garbage when it is not wanted) and masks choose
 * between keeping A, taking the sum, and taking T itself (first nonzero
 * digit).
 */
static void base_mul_mont(const uint64_t k[LIMBS], uint64_t x[LIMBS], uint64_t y[LIMBS])
{
  struct jac acc, sum;
  struct aff t;
  memcpy(acc.x, ONE_P, sizeof acc.x); /* any finite garbage while INF */
  memcpy(acc.y, ONE_P, sizeof acc.y);
  memcpy(acc.z, ONE_P, sizeof acc.z);
  uint64_t inf = ~(uint64_t)0;
  for (int i = 0; i < WINDOWS; i++) {
    uint64_t d = (k[i / 16] >> (4 * (i % 16))) & 15;
    table_select(&t, i, d);
    point_add_mixed(&sum, &acc, &t);
    uint64_t nz = mask_nonzero(d);
    uint64_t take_sum = nz & ~inf, take_t = nz & inf;
    cmov4(acc.x, sum.x, take_sum);
    cmov4(acc.y, sum.y, take_sum);
    cmov4(acc.z, sum.z, take_sum);
    cmov4(acc.x, t.x, take_t);
    cmov4(acc.y, t.y, take_t);
    cmov4(acc.z, ONE_P, take_t);
    inf &= ~nz;
  }
  uint64_t zinv[LIMBS], z2[LIMBS];
  fe_inv(zinv, acc.z);
  fe_sqr(z2, zinv);
  fe_mul(x, acc.x, z2);
  fe_mul(z2, z2, zinv);
  fe_mul(y, acc.y, z2);
  wipe(&acc, sizeof acc);
  wipe(&sum, sizeof sum);
  wipe(&t, sizeof t);
  wipe(zinv, sizeof zinv);
  wipe(z2, sizeof z2);
}

/* 0 if (X, Y) (Montgomery form) is on y^2 = x^3 - 3x + b. Public data only. */
static int on_curve(const struct aff *a)
{
  uint64_t lhs[LIMBS], rhs[LIMBS], t[LIMBS];
  fe_sqr(lhs, a->y);
  fe_sqr(rhs, a->x);
  fe_mul(rhs, rhs, a->x);
  fe_add(t, a->x, a->x);
  fe_add(t, t, a->x);
  fe_sub(rhs, rhs, t);
  fe_add(rhs, rhs, B_P);
  return memcmp(lhs, rhs, sizeof lhs) == 0 ? 0 : -EIO;
}

/* Fills the table: the 64 window bases 16^i G (4 doublings apart, made
 * affine in one batch), then each row's 15 multiples (1: the base; 2: a
 * doubling; 3..15: mixed additions of the base to (j-1) base, never equal to
 * +-base for 2 <= j-1 <= 14 < n-1), made affine in a second batch. */
static int build_table(void)
{
  struct jac *pts = malloc((size_t)WINDOWS * DIGITS * sizeof *pts);
  struct jac bases[WINDOWS];
  struct aff base_aff[WINDOWS];
  if (!pts)
    return -ENOMEM;
  memcpy(bases[0].x, GX_P, sizeof bases[0].x);
  memcpy(bases[0].y, GY_P, sizeof bases[0].y);
  memcpy(bases[0].z, ONE_P, sizeof bases[0].z);
  for (int i = 1; i < WINDOWS; i++) {
    point_double(&bases[i], &bases[i - 1]);
    for (int j = 1; j < 4; j++)
      point_double(&bases[i], &bases[i]);
  }
  int rc = batch_to_affine(base_aff, bases, WINDOWS);
  if (rc < 0)
    goto out;
  for (int i = 0; i < WINDOWS; i++) {
    struct jac *row = &pts[i * DIGITS];
    memcpy(row[0].x, base_aff[i].x, sizeof row[0].x);
    memcpy(row[0].y, base_aff[i].y, sizeof row[0].y);
    memcpy(row[0].z, ONE_P, sizeof row[0].z);
    point_double(&row[1], &row[0]);
    for (int j = 2; j < DIGITS; j++)
      point_add_mixed(&row[j], &row[j - 1], &base_aff[i]);
  }
  rc = batch_to_affine(&table[0][0], pts, (size_t)WINDOWS * DIGITS);
out:
  free(pts);
  return rc;
}

/* ---- scalars mod n ---- */

static void sc_mul_mont(uint64_t r[LIMBS], const uint64_t a[LIMBS], const uint64_t b[LIMBS])
{
  mont_mul(r, a, b, N, N_M0);
}

/* R = A B mod n for A, B in normal form (A < 2^256, B < n). */
static void sc_mul(uint64_t r[LIMBS], const uint64_t a[LIMBS], const uint64_t b[LIMBS])
{
  uint64_t am[LIMBS];
  sc_mul_mont(am, a, RR_N); /* A R mod n */
  sc_mul_mont(r, am, b);    /* A B */
  wipe(am, sizeof am);
}

/* R = A mod n for any A < 2^256 (< 2n: one conditional subtraction). */
static void sc_reduce(uint64_t r[LIMBS], const uint64_t a[LIMBS]) { reduce_once(r, a, 0, N); }

/*
 * R = A^(n-2) = A^-1 mod n for A in normal form, by a fixed 4-bit window
 * over the public exponent n-2: 252 squarings and 64 multiplications by
 * A^nibble whatever A is (the nibble, and so the index into POW, is a digit
 * of the public exponent, not of A).
 */
static void sc_inv(uint64_t r[LIMBS], const uint64_t a[LIMBS])
{
  static const uint64_t NM2[LIMBS] = {0xf3b9cac2fc63254fULL, 0xbce6faada7179e84ULL, 0xffffffffffffffffULL,
                                      0xffffffff00000000ULL};
  uint64_t pow[16][LIMBS], acc[LIMBS];
  sc_mul_mont(pow[0], ONE, RR_N); /* 1 in Montgomery form */
  sc_mul_mont(pow[1], a, RR_N);
  for (int j = 2; j < 16; j++)
    sc_mul_mont(pow[j], pow[j - 1], pow[1]);
  memcpy(acc, pow[NM2[3] >> 60], sizeof acc);
  for (int i = WINDOWS - 2; i >= 0; i--) {
    for (int s = 0; s < 4; s++)
      sc_mul_mont(acc, acc, acc);
    sc_mul_mont(acc, acc, pow[(NM2[i / 16] >> (4 * (i % 16))) & 15]);
  }
  sc_mul_mont(r, acc, ONE); /* out of Montgomery form */
  wipe(pow, sizeof pow);
  wipe(acc, sizeof acc);
}

/* ---- ECDSA ---- */

static int nonce_impl(const uint8_t kb[P256_BYTES], uint8_t rb[P256_BYTES], uint8_t kinvb[P256_BYTES])
{
  uint64_t k[LIMBS], x[LIMBS], y[LIMBS], r[LIMBS], kinv[LIMBS];
  load_be(k, kb);
  int rc = -EINVAL;
  if (!in_range_mask(k, N))
    goto out;
  base_mul_mont(k, x, y);
  fe_mul(x, x, ONE); /* x(kG) < p < 2n */
  sc_reduce(r, x);
  rc = -EAGAIN;
  if (is_zero_mask(r))
    goto out;
  sc_inv(kinv, k);
  store_be(rb, r);
  store_be(kinvb, kinv);
  rc = 0;
out:
  wipe(k, sizeof k);
  wipe(x, sizeof x);
  wipe(y, sizeof y);
  wipe(kinv, sizeof kinv);
  return rc;
}

static int s_impl(const uint8_t db[P256_BYTES], const uint8_t rb[P256_BYTES], const uint8_t kinvb[P256_BYTES],
                  const uint8_t digest[P256_BYTES], uint8_t sb[P256_BYTES])
{
  uint64_t d[LIMBS], r[LIMBS], kinv[LIMBS], e[LIMBS], t[LIMBS], s[LIMBS];
  load_be(d, db);
  load_be(r, rb);
  load_be(kinv, kinvb);
  load_be(e, digest);
  int rc = -EINVAL;
  if (!(in_range_mask(d, N) & in_range_mask(r, N) & in_range_mask(kinv, N)))
    goto out;
  sc_reduce(e, e);
  sc_mul(t, r, d);
  mod_add(t, e, t, N); /* e + r d */
  sc_mul(s, kinv, t);
  rc = -EAGAIN;
  if (is_zero_mask(s))
    goto out;
  store_be(sb, s);
  rc = 0;
out:
  wipe(d, sizeof d);
  wipe(kinv, sizeof kinv);
  wipe(t, sizeof t);
  wipe(s, sizeof s);
  return rc;
}

static int sign_impl(const uint8_t d[P256_BYTES], const uint8_t k[P256_BYTES], const uint8_t digest[P256_BYTES],
                     uint8_t sig[2 * P256_BYTES])
{
  uint8_t kinv[P256_BYTES];
  int rc = nonce_impl(k, sig, kinv);
  if (rc == 0)
    rc = s_impl(d, sig, kinv, digest, sig + P256_BYTES);
  wipe(kinv, sizeof kinv);
  return rc;
}

/* ---- initialisation and self-check ---- */

static int hex32(const char *hex, uint8_t out[P256_BYTES])
{
  for (int i = 0; i < P256_BYTES; i++) {
    unsigned v = 0;
    for (int j = 0; j < 2; j++) {
      char c = hex[2 * i + j];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= (unsigned)(c - '0');
      else if (c >= 'A' && c <= 'F')
        v |= (unsigned)(c - 'A' + 10);
      else
        return -EIO;
    }
    out[i] = (uint8_t)v;
  }
  return 0;
}

/* 0 if the Jacobian point R is the affine point A. Public data only. */
static int same_point(const struct jac *r, const struct aff *a)
{
  uint64_t z2[LIMBS], z3[LIMBS], t[LIMBS];
  fe_sqr(z2, r->z);
  fe_mul(z3, z2, r->z);
  fe_mul(t, a->x, z2);
  if (memcmp(t, r->x, sizeof t) != 0)
    return -EIO;
  fe_mul(t, a->y, z3);
  return memcmp(t, r->y, sizeof t) == 0 ? 0 : -EIO;
}

/* 0 if every entry is what its neighbours say: row i holds j * B_i for
 * j = 1..15 (B_i the row's first entry), and B_(i+1) = 16 B_i. Catches an
 * entry that is on the curve but wrong (one the signature below would not
 * use: it touches a few of the 960 entries). ~0.5 ms, once. */
static int table_consistent(void)
{
  for (int i = 0; i < WINDOWS; i++) {
    struct jac acc;
    memcpy(acc.x, table[i][0].x, sizeof acc.x);
    memcpy(acc.y, table[i][0].y, sizeof acc.y);
    memcpy(acc.z, ONE_P, sizeof acc.z);
    point_double(&acc, &acc);
    if (same_point(&acc, &table[i][1]) < 0)
      return -EIO;
    for (int j = 2; j < DIGITS; j++) {
      point_add_mixed(&acc, &acc, &table[i][0]);
      if (same_point(&acc, &table[i][j]) < 0)
        return -EIO;
    }
    if (i + 1 < WINDOWS) {
      memcpy(acc.x, table[i][0].x, sizeof acc.x);
      memcpy(acc.y, table[i][0].y, sizeof acc.y);
      memcpy(acc.z, ONE_P, sizeof acc.z);
      for (int d = 0; d < 4; d++)
        point_double(&acc, &acc);
      if (same_point(&acc, &table[i + 1][0]) < 0)
        return -EIO;
    }
  }
  return 0;
}

/*
 * The table must be right before a signature uses it: every entry on the
 * curve, the first one G, each entry consistent with its neighbours
 * (table_consistent); then RFC 6979's P-256/SHA-256 example (A.2.5,
 * message "sample"), whose public key and signature come from an independent
 * implementation, through the whole path (two base multiplications with
 * dozens of distinct windows, the inverse mod n, s).
 */
static int self_check(void)
{
  for (int i = 0; i < WINDOWS; i++)
    for (int j = 0; j < DIGITS; j++)
      if (on_curve(&table[i][j]) < 0)
        return -EIO;
  if (memcmp(table[0][0].x, GX_P, sizeof GX_P) != 0 || memcmp(table[0][0].y, GY_P, sizeof GY_P) != 0 ||
      table_consistent() < 0)
    return -EIO;
  uint8_t d[32], k[32], h[32], ux[32], uy[32], r[32], s[32], x[32], y[32], sig[64];
  if (hex32("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721", d) < 0 ||
      hex32("A6E3C57DD01ABE90086538398355DD4C3B17AA873382B0F24D6129493D8AAD60", k) < 0 ||
      hex32("AF2BDBE1AA9B6EC1E2ADE1D694F41FC71A831D0268E9891562113D8A62ADD1BF", h) < 0 ||
      hex32("60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6", ux) < 0 ||
      hex32("7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299", uy) < 0 ||
      hex32("EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716", r) < 0 ||
      hex32("F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8", s) < 0)
    return -EIO;
  uint64_t dl[LIMBS], xm[LIMBS], ym[LIMBS];
  load_be(dl, d);
  base_mul_mont(dl, xm, ym);
  fe_store(x, xm);
  fe_store(y, ym);
  if (memcmp(x, ux, 32) != 0 || memcmp(y, uy, 32) != 0)
    return -EIO;
  if (sign_impl(d, k, h, sig) != 0 || memcmp(sig, r, 32) != 0 || memcmp(sig + 32, s, 32) != 0)
    return -EIO;
  return 0;
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc;

static void init_table(void)
{
  const char *off = getenv("BASEFS_NO_P256");
  if (off && *off && strcmp(off, "0") != 0) {
    init_rc = -ENOTSUP;
    return;
  }
  init_rc = build_table();
  if (init_rc == 0)
    init_rc = self_check();
  if (init_rc < 0)
    memset(table, 0, sizeof table);
}

int p256_init(void)
{
  pthread_once(&init_once, init_table);
  return init_rc;
}

/* ---- public API ---- */

int p256_scalar_check(const uint8_t kb[P256_BYTES])
{
  uint64_t k[LIMBS];
  load_be(k, kb);
  uint64_t ok = in_range_mask(k, N);
  wipe(k, sizeof k);
  return ok ? 0 : -EINVAL;
}

int p256_base_mul(const uint8_t kb[P256_BYTES], uint8_t xb[P256_BYTES], uint8_t yb[P256_BYTES])
{
  int rc = p256_init();
  if (rc < 0)
    return rc;
  uint64_t k[LIMBS], x[LIMBS], y[LIMBS];
  load_be(k, kb);
  rc = -EINVAL;
  if (in_range_mask(k, N)) {
    base_mul_mont(k, x, y);
    fe_store(xb, x);
    fe_store(yb, y);
    rc = 0;
  }
  wipe(k, sizeof k);
  wipe(x, sizeof x);
  wipe(y, sizeof y);
  return rc;
}

void p256_scalar_reduce(const uint8_t a[P256_BYTES], uint8_t r[P256_BYTES])
{
  uint64_t x[LIMBS];
  load_be(x, a);
  sc_reduce(x, x);
  store_be(r, x);
  wipe(x, sizeof x);
}

int p256_scalar_inv(const uint8_t kb[P256_BYTES], uint8_t kinvb[P256_BYTES])
{
  uint64_t k[LIMBS], kinv[LIMBS];
  load_be(k, kb);
  int rc = -EINVAL;
  if (in_range_mask(k, N)) {
    sc_inv(kinv, k);
    store_be(kinvb, kinv);
    rc = 0;
  }
  wipe(k, sizeof k);
  wipe(kinv, sizeof kinv);
  return rc;
}

int p256_ecdsa_nonce(const uint8_t k[P256_BYTES], uint8_t r[P256_BYTES], uint8_t kinv[P256_BYTES])
{
  int rc = p256_init();
  return rc < 0 ? rc : nonce_impl(k, r, kinv);
}

int p256_ecdsa_s(const uint8_t d[P256_BYTES], const uint8_t r[P256_BYTES], const uint8_t kinv[P256_BYTES],
                 const uint8_t digest[P256_BYTES], uint8_t s[P256_BYTES])
{
  return s_impl(d, r, kinv, digest, s);
}

int p256_ecdsa_sign(const uint8_t d[P256_BYTES], const uint8_t k[P256_BYTES], const uint8_t digest[P256_BYTES],
                    uint8_t sig[2 * P256_BYTES])
{
  int rc = p256_init();
  return rc < 0 ? rc : sign_impl(d, k, digest, sig);
}

/* R = OP(A, B) on field elements given as bytes (the tests' entry points). */
static void field_op(const uint8_t a[P256_BYTES], const uint8_t b[P256_BYTES], uint8_t r[P256_BYTES],
                     void (*op)(uint64_t *, const uint64_t *, const uint64_t *))
{
  uint64_t x[LIMBS], y[LIMBS];
  fe_load(x, a);
  fe_load(y, b);
  op(x, x, y);
  fe_store(r, x);
}

void p256_field_add(const uint8_t a[P256_BYTES], const uint8_t b[P256_BYTES], uint8_t r[P256_BYTES])
{
  field_op(a, b, r, fe_add);
}

void p256_field_sub(const uint8_t a[P256_BYTES], const uint8_t b[P256_BYTES], uint8_t r[P256_BYTES])
{
  field_op(a, b, r, fe_sub);
}

void p256_field_mul(const uint8_t a[P256_BYTES], const uint8_t b[P256_BYTES], uint8_t r[P256_BYTES])
{
  field_op(a, b, r, fe_mul);
}

void p256_field_sqr(const uint8_t a[P256_BYTES], uint8_t r[P256_BYTES])
{
  uint64_t x[LIMBS];
  fe_load(x, a);
  fe_sqr(x, x);
  fe_store(r, x);
}

void p256_field_inv(const uint8_t a[P256_BYTES], uint8_t r[P256_BYTES])
{
  uint64_t x[LIMBS];
  fe_load(x, a);
  fe_inv(x, x);
  fe_store(r, x);
}

void p256_scalar_mul(const uint8_t a[P256_BYTES], const uint8_t b[P256_BYTES], uint8_t r[P256_BYTES])
{
  uint64_t x[LIMBS], y[LIMBS];
  load_be(x, a);
  load_be(y, b);
  sc_reduce(y, y);
  sc_mul(x, x, y);
  store_be(r, x);
}
