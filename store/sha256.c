#include "store/sha256.h"

#include <mbedtls/sha256.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void sha256_mbedtls(const void *data, size_t len, hash_t *out)
{
  mbedtls_sha256_ret(data, len, out->bytes, 0);
}

/*
 * mbedTLS 2.28 hashes at ~220 MB/s here and does not use the CPU's SHA
 * extensions; with them SHA-256 runs several times faster, which is what lets
 * the write path keep up with a native disk.
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>

#define NI __attribute__((target("sha,sse4.1,ssse3")))
#define NI_INLINE NI static inline __attribute__((always_inline))

static const uint32_t sha256_k[64] __attribute__((aligned(16))) = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t sha256_iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                      0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

/* One message's state as the instructions want it: ABEF and CDGH. */
struct lane {
  __m128i abef, cdgh;
};

NI_INLINE void lane_load(struct lane *l, const uint32_t state[8])
{
  __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[0]), 0xB1);
  __m128i st1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[4]), 0x1B);
  l->abef = _mm_alignr_epi8(tmp, st1, 8);
  l->cdgh = _mm_blend_epi16(st1, tmp, 0xF0);
}

NI_INLINE void lane_store(const struct lane *l, uint32_t state[8])
{
  __m128i tmp = _mm_shuffle_epi32(l->abef, 0x1B);
  __m128i st1 = _mm_shuffle_epi32(l->cdgh, 0xB1);
  _mm_storeu_si128((__m128i *)&state[0], _mm_blend_epi16(tmp, st1, 0xF0));
  _mm_storeu_si128((__m128i *)&state[4], _mm_alignr_epi8(st1, tmp, 8));
}

/*
 * Rounds 4g..4g+3 of the 64-byte block at DATA. M[g % 4] holds message words
 * 4g..4g+3 (loaded here for g < 4); the schedule of the next groups is
 * advanced alongside. G must be a constant after unrolling.
 */
NI_INLINE void lane_group(struct lane *l, __m128i m[4], const uint8_t *data, int g)
{
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
  if (g < 4)
    m[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * g)), bswap);
  __m128i msg = _mm_add_epi32(m[g % 4], _mm_load_si128((const __m128i *)&sha256_k[4 * g]));
  l->cdgh = _mm_sha256rnds2_epu32(l->cdgh, l->abef, msg);
  if (g >= 3 && g <= 14) { /* finish the schedule of group g+1 */
    __m128i t = _mm_alignr_epi8(m[g % 4], m[(g + 3) % 4], 4);
    m[(g + 1) % 4] = _mm_add_epi32(m[(g + 1) % 4], t);
    m[(g + 1) % 4] = _mm_sha256msg2_epu32(m[(g + 1) % 4], m[g % 4]);
  }
  msg = _mm_shuffle_epi32(msg, 0x0E);
  l->abef = _mm_sha256rnds2_epu32(l->abef, l->cdgh, msg);
  if (g >= 1 && g <= 12) /* start the schedule of group g+3 */
    m[(g + 3) % 4] = _mm_sha256msg1_epu32(m[(g + 3) % 4], m[g % 4]);
}

/*
 * The compression function over NBLOCKS 64-byte blocks of NL messages at
 * once (ST[i] and D[i]), their rounds interleaved group by group. NL is a
 * constant in each caller below, so that the lanes live in registers.
 */
NI_INLINE void lanes_blocks(uint32_t *st[], const uint8_t *d[], int nl, size_t nblocks)
{
  struct lane l[3];
  const uint8_t *p[3];
#pragma GCC unroll 3
  for (int i = 0; i < nl; i++) {
    lane_load(&l[i], st[i]);
    p[i] = d[i];
  }
  for (; nblocks > 0; nblocks--) {
    struct lane save[3];
    __m128i m[3][4];
#pragma GCC unroll 3
    for (int i = 0; i < nl; i++)
      save[i] = l[i];
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) {
#pragma GCC unroll 3
      for (int i = 0; i < nl; i++)
        lane_group(&l[i], m[i], p[i], g);
    }
#pragma GCC unroll 3
    for (int i = 0; i < nl; i++) {
      l[i].abef = _mm_add_epi32(l[i].abef, save[i].abef);
      l[i].cdgh = _mm_add_epi32(l[i].cdgh, save[i].cdgh);
      p[i] += 64;
    }
  }
#pragma GCC unroll 3
  for (int i = 0; i < nl; i++)
    lane_store(&l[i], st[i]);
}

NI static void ni_blocks(uint32_t state[8], const uint8_t *data, size_t nblocks)
{
  lanes_blocks(&state, &data, 1, nblocks);
}

NI static void ni_blocks2(uint32_t *st[2], const uint8_t *d[2], size_t nblocks)
{
  lanes_blocks(st, d, 2, nblocks);
}

/* Three at once: the most that pays here (1 lane 1.8 GB/s, 2 lanes 3.4,
 * 3 lanes 4.2, 4 lanes 4.1: the SHA unit is then busy every cycle; a fourth
 * lane's state no longer fits in the 16 registers the instructions reach). */
NI static void ni_blocks3(uint32_t *st[3], const uint8_t *d[3], size_t nblocks)
{
  lanes_blocks(st, d, 3, nblocks);
}

/*
 * The padded end of a LEN-byte message whose whole 64-byte blocks are
 * already hashed: the rest, 0x80, zeros, the bit length big-endian. Returns
 * its blocks (1 or 2) in TAIL.
 */
static size_t pad_tail(const uint8_t *data, size_t len, uint8_t tail[128])
{
  size_t rest = len % 64;
  memset(tail, 0, 128);
  if (rest) /* DATA may be NULL when LEN is 0 */
    memcpy(tail, data + (len - rest), rest);
  tail[rest] = 0x80;
  size_t tlen = rest + 1 + 8 <= 64 ? 64 : 128;
  uint64_t bits = (uint64_t)len * 8;
  for (int i = 0; i < 8; i++)
    tail[tlen - 1 - i] = (uint8_t)(bits >> (8 * i));
  return tlen / 64;
}

static void digest(const uint32_t st[8], hash_t *out)
{
  for (int i = 0; i < 8; i++) {
    out->bytes[4 * i] = (uint8_t)(st[i] >> 24);
    out->bytes[4 * i + 1] = (uint8_t)(st[i] >> 16);
    out->bytes[4 * i + 2] = (uint8_t)(st[i] >> 8);
    out->bytes[4 * i + 3] = (uint8_t)st[i];
  }
}

static void ni_hash(const uint8_t *data, size_t len, hash_t *out)
{
  uint32_t st[8];
  uint8_t tail[128];
  memcpy(st, sha256_iv, sizeof st);
  ni_blocks(st, data, len / 64);
  ni_blocks(st, tail, pad_tail(data, len, tail));
  digest(st, out);
}

/*
 * One message on a lane: its whole blocks, then its padded tail, then done.
 * The state is kept as uint32_t[8] between calls of the kernels (converting
 * it costs a few instructions per stretch, not per block).
 */
struct stream {
  const uint8_t *p; /* the next block of the current stretch */
  size_t left;      /* blocks left in it */
  bool in_tail;
  size_t msg;       /* which message (index into the caller's arrays) */
  uint32_t st[8];
  uint8_t tail[128];
};

static void stream_start(struct stream *s, size_t msg, const uint8_t *data, size_t len)
{
  s->p = data;
  s->left = len / 64;
  s->in_tail = false;
  s->msg = msg;
  memcpy(s->st, sha256_iv, sizeof s->st);
}

/* Moves past an exhausted stretch: to the tail, or returns true (done). */
static bool stream_next(struct stream *s, const uint8_t *data, size_t len)
{
  while (s->left == 0) {
    if (s->in_tail)
      return true;
    s->left = pad_tail(data, len, s->tail);
    s->p = s->tail;
    s->in_tail = true;
  }
  return false;
}

#define LANES 3

/*
 * N messages on three lanes: each lane hashes one message at a time and
 * takes the next (longest first, so that what runs on fewer lanes at the
 * end is short) as soon as its message is done, so the lanes stay busy
 * until the end.
 */
static void ni_hash_many(size_t n, const void *const *data, const size_t *len, hash_t *out)
{
  size_t order_buf[16], *order = order_buf;
  if (n > 16 && !(order = malloc(n * sizeof *order))) {
    for (size_t i = 0; i < n; i++) /* no memory for the order: one by one */
      ni_hash(data[i], len[i], &out[i]);
    return;
  }
  for (size_t i = 0; i < n; i++) { /* insertion sort, longest first (N is small) */
    size_t j = i;
    for (; j > 0 && len[order[j - 1]] < len[i]; j--)
      order[j] = order[j - 1];
    order[j] = i;
  }
  struct stream lane[LANES];
  bool busy[LANES] = {false};
  size_t next = 0;
  for (;;) {
    struct stream *run[LANES];
    int nrun = 0;
    for (int l = 0; l < LANES; l++) {
      struct stream *s = &lane[l];
      while (busy[l] && stream_next(s, data[s->msg], len[s->msg])) {
        digest(s->st, &out[s->msg]);
        busy[l] = false;
      }
      while (!busy[l] && next < n) {
        size_t m = order[next++];
        stream_start(s, m, data[m], len[m]);
        busy[l] = !stream_next(s, data[m], len[m]);
      }
      if (busy[l])
        run[nrun++] = s;
    }
    if (nrun == 0)
      break;
    /* The running lanes together, until the first of them ends a stretch. */
    size_t k = run[0]->left;
    uint32_t *st[LANES];
    const uint8_t *d[LANES];
    for (int r = 0; r < nrun; r++) {
      k = run[r]->left < k ? run[r]->left : k;
      st[r] = run[r]->st;
      d[r] = run[r]->p;
    }
    if (nrun == 3)
      ni_blocks3(st, d, k);
    else if (nrun == 2)
      ni_blocks2(st, d, k);
    else
      ni_blocks(st[0], d[0], k);
    for (int r = 0; r < nrun; r++) {
      run[r]->p += 64 * k;
      run[r]->left -= k;
    }
  }
  if (order != order_buf)
    free(order);
}

static bool have_shani;
static pthread_once_t shani_once = PTHREAD_ONCE_INIT;

static void shani_detect(void)
{
  unsigned a, b, c, d;
  const char *off = getenv("BASEFS_NO_SHANI");
  if (off && *off && strcmp(off, "0") != 0)
    return;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSSE3) || !(c & bit_SSE4_1))
    return;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & bit_SHA))
    return;
  have_shani = true;
}

bool sha256_accelerated(void)
{
  pthread_once(&shani_once, shani_detect);
  return have_shani;
}

void sha256_buf(const void *data, size_t len, hash_t *out)
{
  if (sha256_accelerated())
    ni_hash(data, len, out);
  else
    sha256_mbedtls(data, len, out);
}

void sha256_bufs(size_t n, const void *const *data, const size_t *len, hash_t *out)
{
  if (sha256_accelerated()) {
    ni_hash_many(n, data, len, out);
  } else {
    for (size_t i = 0; i < n; i++)
      sha256_mbedtls(data[i], len[i], &out[i]);
  }
}
#else
bool sha256_accelerated(void) { return false; }

void sha256_buf(const void *data, size_t len, hash_t *out) { sha256_mbedtls(data, len, out); }

void sha256_bufs(size_t n, const void *const *data, const size_t *len, hash_t *out)
{
  for (size_t i = 0; i < n; i++)
    sha256_mbedtls(data[i], len[i], &out[i]);
}
#endif
