#include "store/chunk.h"

#include <errno.h>
#include <stdlib.h>

/*
 * The gear table: 256 outputs of splitmix64 seeded with 0x6261736566732d31
 * ("basefs-1"), written out as a literal so that no build, compiler or
 * start-up order can change it. tests/store/test_chunk.c regenerates it.
 */
const uint64_t chunk_gear[256] = {
  0x471bc794bc401eb1ULL, 0x76a787c05a85be32ULL, 0x4980567ae5650e8aULL,
  0x62b5fc9318aeb858ULL, 0x27147b8b93a2ce76ULL, 0xc49b50f3b796b848ULL,
  0xdf505f637c10f428ULL, 0x79aaacc9179679d6ULL, 0xb34ea1bfd05854b5ULL,
  0xf5cac95c62e6f631ULL, 0x0c21693e82c281c0ULL, 0x83c1197c12553889ULL,
  0x9b1cfbbe5869ba25ULL, 0x3531bb7d77e8f30aULL, 0x943d2bb197b8c3e2ULL,
  0xfe991d5763d1f221ULL, 0x24e491ba2dea4528ULL, 0x62403792d02512c5ULL,
  0x9f7eb0fdf0b42e24ULL, 0x31fd3afb75fa84b3ULL, 0x29805966b71f7c0bULL,
  0x6e407b0f4f76f9a7ULL, 0x6658c67e532ddcc3ULL, 0xf24d57554814dac1ULL,
  0x2c8b9bd430708b33ULL, 0x0c852f73f1af2a55ULL, 0xb832195edce879faULL,
  0x9e6f1dd076bdebbeULL, 0x7bfa6c6a615b8253ULL, 0x4a3747021a26844bULL,
  0x2e872ca632ee0dc9ULL, 0xfaab8d8a358d07adULL, 0xedc998e39e7212c4ULL,
  0x1b9c62be44d31123ULL, 0x7183e8ff1e809e48ULL, 0x1ad4ec1db7f5fb1fULL,
  0xd767ad2472152864ULL, 0x43578805641eb93cULL, 0xa4c5180f79ed8e5dULL,
  0xe5b5f97c6ceb4250ULL, 0xf78f290d877fb5e2ULL, 0xfb72ea54be32eda7ULL,
  0x8f616fe698f3a104ULL, 0x9a0b382fc08172d6ULL, 0x861649487dfcf41bULL,
  0x9877660b600dc5a5ULL, 0xb38c98ff6874a70fULL, 0x533aa9b9cbf3d5aaULL,
  0xa922dc01f8928841ULL, 0x25b5623de267aa0dULL, 0x9a6799a998b3755cULL,
  0x28ccf716391e1f0bULL, 0x2136636b122c885fULL, 0xe188633e369a1779ULL,
  0xdff030c0341fc7a4ULL, 0x260f07edd8ca88ebULL, 0x5bb2f780533ea5e8ULL,
  0x119d3fb6827a0311ULL, 0x692e4cb044dbcfb2ULL, 0x61600a6e44ed6e8bULL,
  0x8772f2a09e75760cULL, 0xffc30042da43f24bULL, 0x7c4b2b85f211f9eaULL,
  0xe972219e5831affdULL, 0x30f297d9107b7fc0ULL, 0xc76db200716143ddULL,
  0x8c98dfcfb616117eULL, 0x9decf15c075412a6ULL, 0x336b897478e1a754ULL,
  0x73eb22cb51b7b11dULL, 0x8e3da269dae8a5f3ULL, 0x0039a2eaffe48d41ULL,
  0x987525644ce391b9ULL, 0xa63477b8b47f1365ULL, 0x9ed948b659297c9aULL,
  0x6ac67004ea8b6f35ULL, 0xbd8555a1279cc6fbULL, 0x72f3edb8ff48a2b7ULL,
  0x079cd9ec50a3a3cbULL, 0xea78681223fbb542ULL, 0xe8f0a6a09b00b3bfULL,
  0xd7bcad188e8050d4ULL, 0xee4f7256541c339bULL, 0x25540ef05ab52146ULL,
  0xd74c01daf1c6684cULL, 0x42bbbb5f01b8e579ULL, 0xe2addf55cb2d7f5aULL,
  0xc0018226d55a8fa1ULL, 0x97fd91778f1e48fdULL, 0xb1b560532474e193ULL,
  0x61c9a8b25ad6ed46ULL, 0xa9c0ba31a79bb193ULL, 0x86cb359ee1e463efULL,
  0x6142f122de390738ULL, 0x1d7e1fd3975b5e53ULL, 0x708db830eb1f1571ULL,
  0xf331ebafa185fc01ULL, 0x689ad2d7bb51276bULL, 0x24209fa424e88415ULL,
  0xa8aebac9d45c4ea2ULL, 0xb9bd4f34b3f94761ULL, 0x72453c0bec3051e7ULL,
  0xcebfc3e3e563e696ULL, 0xd05233752d372f8dULL, 0xe1b7bf5d94420e1cULL,
  0x7c98646a5f625aecULL, 0x5bc286ed5202f250ULL, 0xe99624563556c3b7ULL,
  0x7e9de718a79e820fULL, 0xce7f5b9a216bcf66ULL, 0x488f7ede77439a18ULL,
  0xd6f71d317c83d437ULL, 0xee9e2a15322b95c9ULL, 0x0f5e5bba0375e144ULL,
  0x71e696205bb5d94eULL, 0xcc16cc833d6dc262ULL, 0xe22e5caa161f8362ULL,
  0x125adfd5fd400a93ULL, 0x2d464a3f696a89ebULL, 0x85796676677f6776ULL,
  0xab984371abb09858ULL, 0x610c94ec98e5f539ULL, 0x5eee50cf2912bc6dULL,
  0x1cafa9e80b9258a7ULL, 0x0a0d5b7aa1bdc827ULL, 0x315ba8f1b9576158ULL,
  0xd7a2772bd4b9e0d7ULL, 0xb12f3f7773532f2fULL, 0xef99238867fa40d4ULL,
  0x8675667d070e23eaULL, 0xaaf48ac59a4ac326ULL, 0xd07fca640da94115ULL,
  0x9bac1ec7121b7a3dULL, 0x59bc0589009209edULL, 0x12adf56b1f31ef2bULL,
  0x51c17caca7a7cc66ULL, 0x80580fe5b7374db1ULL, 0x68488cfe809344bbULL,
  0x5eb4346f5e72b62fULL, 0xb6724fcf66790031ULL, 0x15f231ac5b58e3c3ULL,
  0xd9c2d538cb91c87bULL, 0x37c7a6c75b4d5a3bULL, 0x6411abb8b54140eeULL,
  0xda58c7bf0cad0778ULL, 0x0390a4d0ee19e756ULL, 0xc6175c9b70871147ULL,
  0x714b1072c047d363ULL, 0xde6e2ae60c8a3d4bULL, 0x92b26da4bc34834dULL,
  0x01ff8efef2629073ULL, 0xaef8541d1ee93452ULL, 0x7114da8496112a7eULL,
  0x72b0dcec408eb25cULL, 0xc6d906b77ffb31c6ULL, 0x7f0b3a740e667880ULL,
  0xa2def73bfbd5bca5ULL, 0x23d10be695fda14bULL, 0x214d5453bd56db41ULL,
  0x09446536a4d65066ULL, 0x24422f927c5c70f8ULL, 0x1275d002689c1de1ULL,
  0x6cd2332788d912e8ULL, 0xa11459c16b13c46eULL, 0x899cfe23e9887938ULL,
  0x59a118f74b6dd999ULL, 0x4d1e4604e7b3d129ULL, 0xd093b99f6d722f41ULL,
  0x7d661e83c2c0b33aULL, 0x0c8f582973afc393ULL, 0x5dcad3dab192bc3aULL,
  0xf4abb6f9491eb8eaULL, 0x26df45caef365ed4ULL, 0xcb9b769a28a84b8fULL,
  0xf36c77890fd9faeeULL, 0x136a3ad91a9cd6b4ULL, 0xcaad111191bc8aecULL,
  0xacf8963ac6c21004ULL, 0xe4f6a623a79ffe5eULL, 0xc2cb939f4ce44950ULL,
  0x5856d371ecfbf274ULL, 0x96de33b17a27fb10ULL, 0xc44d58f214f54c0aULL,
  0x508c3d7fe6fe4880ULL, 0xeb7a3a1b1452bd34ULL, 0x6b75bd72e85617b6ULL,
  0x41d74141e04d809eULL, 0xdbe2c1945bf848a9ULL, 0x629bf73c5016373bULL,
  0x3e030e05db55fc8cULL, 0xc331c670ff66f345ULL, 0x1e55ec06ce1d565dULL,
  0x923125f439c51a15ULL, 0x4a41b371f8c9a692ULL, 0x2b0f96a0da6b347fULL,
  0xfde8fc533bce09f7ULL, 0x6efe3eb6722b4d60ULL, 0xda55d09a1120a382ULL,
  0xa5f737a01002b571ULL, 0xfe85f627c43f9882ULL, 0x210ee1d319af2d91ULL,
  0x9818ffc6e67d1369ULL, 0x123424188055eafcULL, 0xe3a32b7b751f8e97ULL,
  0x5430c04a0982df59ULL, 0x834c8a906fb6e874ULL, 0xf14ab304853e10abULL,
  0xf26f6ee3422084e5ULL, 0xde62a1e32bff6378ULL, 0xef50f6fcf1eb91c7ULL,
  0x0dbd720d2cfe4126ULL, 0x3cee3c8abe98fb30ULL, 0x5a11f17dd228273cULL,
  0x55c155f8fd5acac1ULL, 0x5c811dc6baa717b5ULL, 0xe586b1e641bc9f23ULL,
  0xe49b9b78c061b6daULL, 0x7462a5ed521f8e36ULL, 0xbb680f3266b15992ULL,
  0xf03ecdbac487e684ULL, 0x791ec8df2fc5d6f9ULL, 0x4f3d3866ad3897acULL,
  0xbe84cedc0f300b5dULL, 0xef48a4ce460d67bfULL, 0x4ba52fddb6e8737cULL,
  0x64eb8884206ba2f2ULL, 0x0e2949c9cf32438bULL, 0xff0664a548cef123ULL,
  0xe33cab076ad3946bULL, 0x20fe340246c4bc98ULL, 0x168637f370faf2cbULL,
  0x5c01fa623142591bULL, 0x6f15677d9d2dbd3aULL, 0x81a51201fe1583c1ULL,
  0xe8ccd3b53648f22fULL, 0xa7c4410a10494308ULL, 0x76a9493a099c2baeULL,
  0x7248fad696ff6cd7ULL, 0x374d6e87933053aaULL, 0x48c5e5778e3c0275ULL,
  0x573fcf3e618d21bfULL, 0xdefb477aa7a10d23ULL, 0xd29645bbbd49eeebULL,
  0xfb31bf8eaa8766b0ULL, 0xd69104330879295fULL, 0xb2b2d5a43a91898bULL,
  0x68419986f6a9d3edULL, 0xa439986050d6310eULL, 0x9965dca4cd2ad7cfULL,
  0x7b381664421d71b0ULL, 0x652243a7ad7fa6b1ULL, 0x49a97214c974dd35ULL,
  0x3c37d0c088c07ab0ULL, 0x03dc251fdb321117ULL, 0x3a95e373301a6caaULL,
  0xec45fa3994183d76ULL,
};

/* The top BITS bits of the hash: with a left-shifting gear hash the top bits
 * depend on the most recent 64 bytes, the widest window the hash has. */
static uint64_t top_mask(unsigned bits)
{
  return bits >= 64 ? ~0ULL : ~0ULL << (64 - bits);
}

int chunker_init_params(struct chunker *c, size_t min, size_t avg, size_t max)
{
  if (min < 256 || avg < min || max < avg || (avg & (avg - 1)) != 0)
    return -EINVAL;
  unsigned bits = (unsigned)__builtin_ctzll(avg);
  c->hash = 0;
  c->pos = 0;
  c->min = min;
  c->avg = avg;
  c->max = max;
  c->mask_s = top_mask(bits + 2);
  c->mask_l = top_mask(bits - 2);
  return 0;
}

void chunker_init(struct chunker *c)
{
  chunker_init_params(c, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX);
}

/*
 * The scan for a cut: the whole cost of chunking. Written for throughput: a
 * step is a byte load, a table load, a shift-add (one LEA) and a test, and
 * the loop runs four steps per iteration so that its counter and branch are
 * not a third of the work (1.4 -> ~2.8 GB/s of hashed bytes here). Two
 * independent chains (a later stretch's hash warmed up over its 64 bytes
 * before) measured only ~10% more and waste the later stretch's work when
 * the earlier one cuts.
 *
 * Steps *HP over P[0..N) until the first position whose hash has no bit of
 * MASK set: returns true and *USED = the bytes up to and including it, or
 * false (*USED = N, *HP the hash after them).
 */
static bool scan(const uint8_t *p, size_t n, uint64_t *hp, uint64_t mask, size_t *used)
{
  uint64_t h = *hp;
  size_t i = 0;
#define STEP(k)                                                                                    \
  do {                                                                                             \
    h = (h << 1) + chunk_gear[p[i + (k)]];                                                         \
    if (!(h & mask)) {                                                                             \
      *used = i + (k) + 1;                                                                         \
      return true;                                                                                 \
    }                                                                                              \
  } while (0)
  for (; i + 4 <= n; i += 4) {
    STEP(0);
    STEP(1);
    STEP(2);
    STEP(3);
  }
  for (; i < n; i++)
    STEP(0);
#undef STEP
  *hp = h;
  *used = n;
  return false;
}

size_t chunker_feed(struct chunker *c, const void *buf, size_t len, bool *cut)
{
  const uint8_t *p = buf;
  size_t i = 0, r;
  uint64_t h = c->hash;
  size_t pos = c->pos;

  *cut = false;
  /* Below MIN no cut is possible: skip without hashing. */
  if (pos < c->min) {
    size_t skip = c->min - pos;
    if (skip > len)
      skip = len;
    i += skip;
    pos += skip;
  }
  /* MIN..AVG: the harder mask. */
  if (i < len && pos < c->avg) {
    bool found = scan(p + i, c->avg - pos < len - i ? c->avg - pos : len - i, &h, c->mask_s, &r);
    i += r;
    pos += r;
    if (found)
      goto found;
  }
  /* AVG..MAX: the easier mask, and a forced cut at MAX. */
  if (i < len && pos < c->max) {
    bool found = scan(p + i, c->max - pos < len - i ? c->max - pos : len - i, &h, c->mask_l, &r);
    i += r;
    pos += r;
    if (found)
      goto found;
  }
  if (pos >= c->max)
    goto found;
  c->hash = h;
  c->pos = pos;
  return i;

found:
  *cut = true;
  c->hash = 0;
  c->pos = 0;
  return i;
}

ssize_t chunk_split(const void *buf, size_t len, size_t **ends)
{
  const uint8_t *p = buf;
  size_t cap = len / CHUNK_MIN + 2, n = 0, off = 0;
  size_t *e = malloc(cap * sizeof *e);
  if (!e)
    return -ENOMEM;
  struct chunker c;
  chunker_init(&c);
  while (off < len) {
    bool cut;
    off += chunker_feed(&c, p + off, len - off, &cut);
    if (cut || off == len)
      e[n++] = off; /* cuts are >= CHUNK_MIN apart, so cap suffices */
  }
  *ends = e;
  return (ssize_t)n;
}
