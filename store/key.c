/*
 * Keys: ECDSA P-256. Signing runs on store/p256.c (a constant-time
 * fixed-base multiplication kG and scalar arithmetic mod n, several times
 * faster than mbedTLS's generic bignums); files, public points and
 * verification go through mbedTLS 2.28, but for verification's u1*G, which
 * also comes from p256's table. If p256's self-check fails at first use
 * (p256_init() != 0), every such step takes the mbedTLS path instead.
 *
 * Signing is deterministic (RFC 6979): the nonce comes from the key and the
 * digest, so a weak RNG can never leak the private key; the result is byte
 * for byte mbedtls_ecdsa_sign_det_ext()'s (see sign_det_p256()). A process
 * that starts the nonce pool (key_presign_start(), see "Precomputed nonces"
 * below) signs with random nonces from getrandom instead.
 *
 * Signing and verification are lock-free and keep their curve tables per
 * thread (see key_sign() and "Per-thread verification state" below).
 */
#include "store/key.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/hmac_drbg.h>
#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>

#include "store/error.h"
#include "store/p256.h"

#define PRIVATE_HEADER "# basefs private key, format 1 (ECDSA P-256, SEC1 PEM). Keep it secret.\n"
#define PUBLIC_HEADER "# basefs public key, format 1 (ECDSA P-256, SubjectPublicKeyInfo PEM)\n"
#define PRIVATE_MAGIC "# basefs private key, format "
#define PUBLIC_MAGIC "# basefs public key, format "
#define KEY_FILE_MAX 16384

struct key {
  mbedtls_ecp_keypair kp;
  uint8_t d[32]; /* kp.d, big-endian: what p256 signs with */
  uint8_t pub[KEY_PUBLIC_SIZE];
};

/* p256 is usable: its table is built and passed its self-check. */
static bool p256_ok(void) { return p256_init() == 0; }

/* What a failed mbedTLS call on public data means: no memory, or WRONG
 * (the data is bad). A check that ran out of memory must not call a genuine
 * key or signature forged. */
static int mbed_failure(int mbed_rc, int wrong)
{
  /* (An ECP multiplication without an RNG seeds a DRBG of its own: md.) */
  return mbed_rc == MBEDTLS_ERR_MPI_ALLOC_FAILED || mbed_rc == MBEDTLS_ERR_ECP_ALLOC_FAILED ||
                 mbed_rc == MBEDTLS_ERR_MD_ALLOC_FAILED
             ? -ENOMEM
             : wrong;
}

/* A = K G on p256's table, as an mbedTLS point of GRP: 0, -EIO or -ENOMEM. */
static int p256_point(const mbedtls_ecp_group *grp, const uint8_t k[32], mbedtls_ecp_point *A)
{
  uint8_t pt[KEY_PUBLIC_SIZE];
  pt[0] = 0x04;
  if (p256_base_mul(k, pt + 1, pt + 33) != 0)
    return -EIO;
  int m = mbedtls_ecp_point_read_binary(grp, A, pt, sizeof pt);
  return m == 0 ? 0 : mbed_failure(m, -EIO);
}

static int rng(void *ctx, unsigned char *buf, size_t len)
{
  (void)ctx;
  while (len > 0) {
    ssize_t n = getrandom(buf, len, 0);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return MBEDTLS_ERR_ECP_RANDOM_FAILED;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

static struct key *key_alloc(void)
{
  struct key *k = calloc(1, sizeof *k);
  if (!k)
    return NULL;
  mbedtls_ecp_keypair_init(&k->kp);
  return k;
}

void key_free(struct key *key)
{
  if (!key)
    return;
  mbedtls_ecp_keypair_free(&key->kp);
  mbedtls_platform_zeroize(key, sizeof *key);
  free(key);
}

/* Fills key->pub from key->kp.Q. */
static int key_export_public(struct key *key)
{
  size_t olen = 0;
  int rc = mbedtls_ecp_point_write_binary(&key->kp.grp, &key->kp.Q, MBEDTLS_ECP_PF_UNCOMPRESSED, &olen,
                                          key->pub, sizeof key->pub);
  if (rc != 0 || olen != KEY_PUBLIC_SIZE)
    return -BFS_EKEY;
  return 0;
}

/*
 * From key->kp.d (already checked to be in [1, n-1]): key->d, and the public
 * point kp.Q = d G and key->pub. p256 makes Q in ~0.03 ms where
 * mbedtls_ecp_mul takes ~0.35 ms.
 */
static int key_set_public(struct key *key)
{
  if (mbedtls_mpi_write_binary(&key->kp.d, key->d, sizeof key->d) != 0)
    return -BFS_EKEY;
  if (p256_ok()) {
    if (p256_point(&key->kp.grp, key->d, &key->kp.Q) < 0)
      return -BFS_EKEY;
  } else if (mbedtls_ecp_mul(&key->kp.grp, &key->kp.Q, &key->kp.d, &key->kp.grp.G, rng, NULL) != 0) {
    return -BFS_EKEY;
  }
  return key_export_public(key);
}

int key_generate(struct key **out)
{
  *out = NULL;
  struct key *k = key_alloc();
  if (!k)
    return -ENOMEM;
  /* mbedtls_ecp_gen_key() is these two steps with mbedtls_ecp_mul for Q. */
  if (mbedtls_ecp_group_load(&k->kp.grp, MBEDTLS_ECP_DP_SECP256R1) != 0 ||
      mbedtls_ecp_gen_privkey(&k->kp.grp, &k->kp.d, rng, NULL) != 0 || key_set_public(k) < 0) {
    key_free(k);
    return -EIO;
  }
  *out = k;
  return 0;
}

int key_dup(const struct key *key, struct key **out)
{
  *out = NULL;
  struct key *k = key_alloc();
  if (!k)
    return -ENOMEM;
  if (mbedtls_ecp_group_load(&k->kp.grp, MBEDTLS_ECP_DP_SECP256R1) != 0 || mbedtls_mpi_copy(&k->kp.d, &key->kp.d) != 0 ||
      mbedtls_ecp_copy(&k->kp.Q, &key->kp.Q) != 0) {
    key_free(k);
    return -ENOMEM;
  }
  memcpy(k->d, key->d, sizeof k->d);
  memcpy(k->pub, key->pub, KEY_PUBLIC_SIZE);
  *out = k;
  return 0;
}

void key_public(const struct key *key, uint8_t pub[KEY_PUBLIC_SIZE])
{
  memcpy(pub, key->pub, KEY_PUBLIC_SIZE);
}

void key_fingerprint(const uint8_t pub[KEY_PUBLIC_SIZE], hash_t *fp)
{
  hash_buf(pub, KEY_PUBLIC_SIZE, fp);
}

/* ---- files ---- */

static int write_all(int fd, const void *buf, size_t len)
{
  const uint8_t *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/*
 * Writes DATA to a temporary file next to PATH, syncs it, and moves it into
 * place only if PATH does not exist yet (renameat2 RENAME_NOREPLACE, or
 * link() where the filesystem lacks it): never a half-written key, never an
 * overwritten one.
 */
static int write_new_file(const char *path, const void *data, size_t len, mode_t mode)
{
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 16);
  if (!tmp)
    return -ENOMEM;
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp.XXXXXX", 12);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    int rc = -errno;
    free(tmp);
    return rc;
  }
  int rc = 0;
  if (fchmod(fd, mode) < 0)
    rc = -errno;
  if (rc == 0)
    rc = write_all(fd, data, len);
  if (rc == 0 && fsync(fd) < 0)
    rc = -errno;
  if (close(fd) < 0 && rc == 0)
    rc = -errno;
  if (rc == 0) {
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) < 0) {
      if (errno == EINVAL || errno == ENOSYS) {
        if (link(tmp, path) < 0)
          rc = -errno;
      } else {
        rc = -errno;
      }
    }
  }
  unlink(tmp); /* gone already after a successful rename */
  free(tmp);
  return rc;
}

static void sync_parent_dir(const char *path)
{
  char *dir = strdup(path);
  if (!dir)
    return;
  char *slash = strrchr(dir, '/');
  const char *d = ".";
  if (slash == dir)
    d = "/";
  else if (slash) {
    *slash = '\0';
    d = dir;
  }
  int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  free(dir);
}

static char *pub_path(const char *path)
{
  size_t n = strlen(path);
  char *p = malloc(n + 5);
  if (p) {
    memcpy(p, path, n);
    memcpy(p + n, ".pub", 5);
  }
  return p;
}

/* Fills BUF with HEADER followed by a PEM body written by WRITER. */
static int make_pem(char *buf, size_t cap, const char *header, int (*writer)(mbedtls_pk_context *, unsigned char *, size_t),
                    const struct key *key)
{
  mbedtls_pk_context pk;
  mbedtls_pk_init(&pk);
  int rc = -EIO;
  size_t hlen = strlen(header);
  if (hlen >= cap)
    goto out;
  if (mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) != 0)
    goto out;
  mbedtls_ecp_keypair *ec = mbedtls_pk_ec(pk);
  if (mbedtls_ecp_group_load(&ec->grp, MBEDTLS_ECP_DP_SECP256R1) != 0 ||
      mbedtls_mpi_copy(&ec->d, &key->kp.d) != 0 || mbedtls_ecp_copy(&ec->Q, &key->kp.Q) != 0)
    goto out;
  memcpy(buf, header, hlen);
  if (writer(&pk, (unsigned char *)buf + hlen, cap - hlen) != 0)
    goto out;
  rc = (int)strlen(buf);
out:
  mbedtls_pk_free(&pk); /* zeroizes d */
  return rc;
}

int key_save(const struct key *key, const char *path)
{
  char *pub = pub_path(path);
  char *priv_pem = calloc(1, KEY_FILE_MAX), *pub_pem = calloc(1, KEY_FILE_MAX);
  int rc = -ENOMEM;
  if (!pub || !priv_pem || !pub_pem)
    goto out;
  /* Early refusal for the common case; the rename below is the real guard. */
  if (access(path, F_OK) == 0 || access(pub, F_OK) == 0) {
    rc = -EEXIST;
    goto out;
  }
  int plen = make_pem(priv_pem, KEY_FILE_MAX, PRIVATE_HEADER, mbedtls_pk_write_key_pem, key);
  int qlen = make_pem(pub_pem, KEY_FILE_MAX, PUBLIC_HEADER, mbedtls_pk_write_pubkey_pem, key);
  if (plen < 0 || qlen < 0) {
    rc = plen < 0 ? plen : qlen;
    goto out;
  }
  rc = write_new_file(path, priv_pem, (size_t)plen, 0600);
  if (rc < 0)
    goto out;
  rc = write_new_file(pub, pub_pem, (size_t)qlen, 0644);
  if (rc < 0) {
    unlink(path); /* ours: we just created it */
    goto out;
  }
  sync_parent_dir(path);
out:
  if (priv_pem)
    mbedtls_platform_zeroize(priv_pem, KEY_FILE_MAX);
  free(priv_pem);
  free(pub_pem);
  free(pub);
  return rc;
}

/* Reads a whole (small) file, NUL-terminated; returns its length. */
static int read_small_file(const char *path, char **out)
{
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  char *buf = malloc(KEY_FILE_MAX + 1);
  if (!buf) {
    close(fd);
    return -ENOMEM;
  }
  size_t len = 0;
  for (;;) {
    ssize_t n = read(fd, buf + len, KEY_FILE_MAX + 1 - len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      int rc = -errno;
      close(fd);
      mbedtls_platform_zeroize(buf, KEY_FILE_MAX + 1);
      free(buf);
      return rc;
    }
    if (n == 0)
      break;
    len += (size_t)n;
    if (len > KEY_FILE_MAX) {
      close(fd);
      mbedtls_platform_zeroize(buf, KEY_FILE_MAX + 1);
      free(buf);
      return -BFS_EKEY;
    }
  }
  close(fd);
  buf[len] = '\0';
  *out = buf;
  return (int)len;
}

/*
 * A key file is either ours ("# basefs ... key, format N" then PEM) or a bare
 * PEM file (as openssl writes it). Another format number is refused, so a
 * future format is never misread.
 */
static int check_header(const char *buf, const char *magic)
{
  if (strncmp(buf, "-----BEGIN ", 11) == 0)
    return 0;
  size_t n = strlen(magic);
  if (strncmp(buf, magic, n) != 0)
    return -BFS_EKEY;
  if (buf[n] != '1' || (buf[n + 1] >= '0' && buf[n + 1] <= '9'))
    return -BFS_EKEY;
  return 0;
}

static int pk_to_p256(mbedtls_pk_context *pk, const mbedtls_ecp_keypair **ec)
{
  if (mbedtls_pk_get_type(pk) != MBEDTLS_PK_ECKEY && mbedtls_pk_get_type(pk) != MBEDTLS_PK_ECDSA)
    return -BFS_EKEY;
  *ec = mbedtls_pk_ec(*pk);
  if ((*ec)->grp.id != MBEDTLS_ECP_DP_SECP256R1)
    return -BFS_EKEY;
  return 0;
}

int key_load(const char *path, struct key **out)
{
  *out = NULL;
  char *buf = NULL;
  int len = read_small_file(path, &buf);
  if (len < 0)
    return len;
  mbedtls_pk_context pk;
  mbedtls_pk_init(&pk);
  struct key *k = NULL;
  int rc = check_header(buf, PRIVATE_MAGIC);
  if (rc < 0)
    goto out;
  rc = -BFS_EKEY;
  if (mbedtls_pk_parse_key(&pk, (const unsigned char *)buf, (size_t)len + 1, NULL, 0) != 0)
    goto out;
  const mbedtls_ecp_keypair *ec;
  if (pk_to_p256(&pk, &ec) < 0)
    goto out;
  rc = -ENOMEM;
  if (!(k = key_alloc()))
    goto out;
  rc = -BFS_EKEY;
  if (mbedtls_ecp_group_load(&k->kp.grp, MBEDTLS_ECP_DP_SECP256R1) != 0 || mbedtls_mpi_copy(&k->kp.d, &ec->d) != 0 ||
      mbedtls_ecp_check_privkey(&k->kp.grp, &k->kp.d) != 0)
    goto out;
  /* Recompute Q = d*G: a file whose stored public half disagrees is refused. */
  if (key_set_public(k) < 0)
    goto out;
  if (mbedtls_ecp_point_cmp(&k->kp.Q, &ec->Q) != 0)
    goto out;
  *out = k;
  k = NULL;
  rc = 0;
out:
  key_free(k);
  mbedtls_pk_free(&pk);
  mbedtls_platform_zeroize(buf, (size_t)len);
  free(buf);
  return rc;
}

/* 0 if PUB is a point of P-256 (in GRP), -BFS_EKEY if not. */
static int read_point(const mbedtls_ecp_group *grp, const uint8_t pub[KEY_PUBLIC_SIZE], mbedtls_ecp_point *Q)
{
  if (pub[0] != 0x04)
    return -BFS_EKEY;
  int m = mbedtls_ecp_point_read_binary(grp, Q, pub, KEY_PUBLIC_SIZE);
  if (m == 0)
    m = mbedtls_ecp_check_pubkey(grp, Q);
  return m == 0 ? 0 : mbed_failure(m, -BFS_EKEY);
}

int key_load_public(const char *path, uint8_t pub[KEY_PUBLIC_SIZE])
{
  char *buf = NULL;
  int len = read_small_file(path, &buf);
  if (len < 0)
    return len;
  mbedtls_pk_context pk;
  mbedtls_pk_init(&pk);
  int rc = check_header(buf, PUBLIC_MAGIC);
  if (rc < 0)
    goto out;
  rc = -BFS_EKEY;
  if (mbedtls_pk_parse_public_key(&pk, (const unsigned char *)buf, (size_t)len + 1) != 0)
    goto out;
  const mbedtls_ecp_keypair *ec;
  if (pk_to_p256(&pk, &ec) < 0)
    goto out;
  size_t olen = 0;
  if (mbedtls_ecp_point_write_binary(&ec->grp, &ec->Q, MBEDTLS_ECP_PF_UNCOMPRESSED, &olen, pub, KEY_PUBLIC_SIZE) != 0 ||
      olen != KEY_PUBLIC_SIZE)
    goto out;
  mbedtls_ecp_point Q;
  mbedtls_ecp_point_init(&Q);
  rc = read_point(&ec->grp, pub, &Q);
  mbedtls_ecp_point_free(&Q);
out:
  mbedtls_pk_free(&pk);
  free(buf);
  return rc;
}

/* ---- signatures ---- */

/*
 * Per-thread verification state.
 *
 * ECDSA verification computes u1*G + u2*Q. u1*G comes from p256's table
 * (~0.03 ms; mbedTLS's comb for G, cached inside the group, takes ~0.3 ms).
 * mbedtls_ecdsa_verify() rebuilds Q's table on every call. Entries come from
 * few authors, so each thread also keeps a small cache of author groups: a
 * P-256 group whose base point is replaced by the author's point Q, so that
 * u2*Q reuses Q's cached table too. An author enters the cache on its second
 * signature within the last CANDIDATES distinct keys, so a stream of one-off
 * keys never pays for tables it will not reuse; those compute u2*Q on a
 * table built for the call. Measured (bench_sign, CPU per verify): plain
 * mbedtls_ecdsa_verify() 1.07 ms, one-off keys 0.80 ms, cached author
 * 0.40 ms. Without p256 (failed self-check) one-off keys take
 * mbedtls_ecdsa_verify() as is and u1*G uses G's comb.
 */
#define AUTHORS 8
#define CANDIDATES 16

struct author {
  bool live;
  uint64_t used; /* for least-recently-used replacement */
  uint8_t pub[KEY_PUBLIC_SIZE];
  mbedtls_ecp_group grp; /* P-256 with G := the author's point */
};

struct verify_state {
  mbedtls_ecp_group grp; /* plain P-256, its G table cached */
  uint64_t clock;
  struct author authors[AUTHORS];
  uint8_t candidates[CANDIDATES][KEY_PUBLIC_SIZE];
  unsigned next_candidate;
};

static pthread_key_t state_tls;
static pthread_once_t state_once = PTHREAD_ONCE_INIT;
static int state_tls_ok;

/* Frees an author group: its G is ours (allocated), the rest is the static curve. */
static void author_free(struct author *a)
{
  if (!a->live)
    return;
  mbedtls_ecp_point_free(&a->grp.G);
  mbedtls_ecp_point_init(&a->grp.G);
  mbedtls_ecp_group_free(&a->grp);
  a->live = false;
}

static void state_destroy(void *p)
{
  struct verify_state *st = p;
  for (int i = 0; i < AUTHORS; i++)
    author_free(&st->authors[i]);
  mbedtls_ecp_group_free(&st->grp);
  free(st);
}

static void state_tls_init(void)
{
  state_tls_ok = pthread_key_create(&state_tls, state_destroy) == 0;
}

/* This thread's verification state, or NULL. */
static struct verify_state *thread_state(void)
{
  pthread_once(&state_once, state_tls_init);
  if (!state_tls_ok)
    return NULL;
  struct verify_state *st = pthread_getspecific(state_tls);
  if (st)
    return st;
  st = calloc(1, sizeof *st);
  if (!st)
    return NULL;
  mbedtls_ecp_group_init(&st->grp);
  if (mbedtls_ecp_group_load(&st->grp, MBEDTLS_ECP_DP_SECP256R1) != 0 || pthread_setspecific(state_tls, st) != 0) {
    mbedtls_ecp_group_free(&st->grp);
    free(st);
    return NULL;
  }
  return st;
}

/* The cached group of author PUB (point Q), or NULL to take the plain path. */
static mbedtls_ecp_group *author_group(struct verify_state *st, const uint8_t pub[KEY_PUBLIC_SIZE],
                                       const mbedtls_ecp_point *Q)
{
  st->clock++;
  struct author *victim = &st->authors[0];
  for (int i = 0; i < AUTHORS; i++) {
    struct author *a = &st->authors[i];
    if (a->live && memcmp(a->pub, pub, KEY_PUBLIC_SIZE) == 0) {
      a->used = st->clock;
      return &a->grp;
    }
    if (!a->live || (victim->live && a->used < victim->used))
      victim = a;
  }
  bool seen = false;
  for (int i = 0; i < CANDIDATES && !seen; i++)
    seen = memcmp(st->candidates[i], pub, KEY_PUBLIC_SIZE) == 0;
  if (!seen) {
    memcpy(st->candidates[st->next_candidate++ % CANDIDATES], pub, KEY_PUBLIC_SIZE);
    return NULL;
  }
  author_free(victim);
  mbedtls_ecp_group_init(&victim->grp);
  if (mbedtls_ecp_group_load(&victim->grp, MBEDTLS_ECP_DP_SECP256R1) != 0)
    return NULL;
  /* The loaded G points into mbedTLS's static curve data: drop it, never write it. */
  mbedtls_ecp_point_init(&victim->grp.G);
  victim->live = true; /* from here author_free() releases G */
  if (mbedtls_ecp_copy(&victim->grp.G, Q) != 0) {
    author_free(victim);
    return NULL;
  }
  memcpy(victim->pub, pub, KEY_PUBLIC_SIZE);
  victim->used = st->clock;
  return &victim->grp;
}

/* A = u G for a public U in [1, n-1]: p256's table (~0.03 ms) when it
 * passed its self-check, else mbedTLS's comb cached in GRP (~0.3 ms). */
static int base_mul_public(mbedtls_ecp_group *grp, mbedtls_ecp_point *A, const mbedtls_mpi *u)
{
  if (!p256_ok()) {
    int m = mbedtls_ecp_mul(grp, A, u, &grp->G, NULL, NULL);
    return m == 0 ? 0 : mbed_failure(m, -EIO);
  }
  uint8_t k[32];
  if (mbedtls_mpi_write_binary(u, k, sizeof k) != 0)
    return -EIO;
  return p256_point(grp, k, A);
}

/*
 * ECDSA verification (SEC 1, 4.1.4) with u1*G on p256's table (or G's
 * cached comb) and u2*Q on the author's cached group AGRP, or, without one,
 * on Q itself (mbedTLS then builds Q's table for this call, as
 * mbedtls_ecdsa_verify() does): R = u1*G + u2*Q with u1 = e/s, u2 = r/s (mod
 * n); valid iff R is not infinity and R.x mod n == r. P-256's n has 256
 * bits, as many as the digest, so e is the digest itself. Returns 0,
 * -BFS_ESIGNATURE, or 1 to ask for the plain path (u1 == 0, which mbedTLS's
 * scalar checks refuse).
 */
static int verify_split(mbedtls_ecp_group *grp, mbedtls_ecp_group *agrp, const mbedtls_ecp_point *Q,
                        const hash_t *digest, const mbedtls_mpi *r, const mbedtls_mpi *s)
{
  mbedtls_mpi e, w, u1, u2, v, one;
  mbedtls_ecp_point A, B, R;
  mbedtls_mpi_init(&e);
  mbedtls_mpi_init(&w);
  mbedtls_mpi_init(&u1);
  mbedtls_mpi_init(&u2);
  mbedtls_mpi_init(&v);
  mbedtls_mpi_init(&one);
  mbedtls_ecp_point_init(&A);
  mbedtls_ecp_point_init(&B);
  mbedtls_ecp_point_init(&R);
  int rc = -BFS_ESIGNATURE, m = 0;
  if (mbedtls_mpi_cmp_int(r, 1) < 0 || mbedtls_mpi_cmp_mpi(r, &grp->N) >= 0 || mbedtls_mpi_cmp_int(s, 1) < 0 ||
      mbedtls_mpi_cmp_mpi(s, &grp->N) >= 0)
    goto out;
  if ((m = mbedtls_mpi_read_binary(&e, digest->bytes, HASH_SIZE)) != 0 || (m = mbedtls_mpi_inv_mod(&w, s, &grp->N)) != 0 ||
      (m = mbedtls_mpi_mul_mpi(&u1, &e, &w)) != 0 || (m = mbedtls_mpi_mod_mpi(&u1, &u1, &grp->N)) != 0 ||
      (m = mbedtls_mpi_mul_mpi(&u2, r, &w)) != 0 || (m = mbedtls_mpi_mod_mpi(&u2, &u2, &grp->N)) != 0)
    goto out;
  if (mbedtls_mpi_cmp_int(&u1, 0) == 0) {
    rc = 1;
    goto out;
  }
  /* Public scalars: no blinding needed (mbedTLS still blinds internally without an RNG). */
  int b = base_mul_public(grp, &A, &u1);
  if (b < 0) {
    rc = b == -ENOMEM ? -ENOMEM : -BFS_ESIGNATURE;
    goto out;
  }
  if ((m = agrp ? mbedtls_ecp_mul(agrp, &B, &u2, &agrp->G, NULL, NULL) : mbedtls_ecp_mul(grp, &B, &u2, Q, NULL, NULL)) != 0 ||
      (m = mbedtls_mpi_lset(&one, 1)) != 0 ||
      (m = mbedtls_ecp_muladd(grp, &R, &one, &A, &one, &B)) != 0) /* A + B */
    goto out;
  if (mbedtls_ecp_is_zero(&R))
    goto out;
  if ((m = mbedtls_mpi_mod_mpi(&v, &R.X, &grp->N)) != 0)
    goto out;
  rc = mbedtls_mpi_cmp_mpi(&v, r) == 0 ? 0 : -BFS_ESIGNATURE;
out:
  if (m != 0)
    rc = mbed_failure(m, -BFS_ESIGNATURE);
  mbedtls_mpi_free(&e);
  mbedtls_mpi_free(&w);
  mbedtls_mpi_free(&u1);
  mbedtls_mpi_free(&u2);
  mbedtls_mpi_free(&v);
  mbedtls_mpi_free(&one);
  mbedtls_ecp_point_free(&A);
  mbedtls_ecp_point_free(&B);
  mbedtls_ecp_point_free(&R);
  return rc;
}

/*
 * Precomputed nonces.
 *
 * An ECDSA signature is r = x(kG) mod n and s = k^-1 (e + r d) mod n for a
 * nonce k. The scalar multiplication kG and the inverse of k are nearly all
 * of the cost, and they depend on neither the key nor the message, so a
 * background thread computes them ahead of time and keeps, per nonce:
 *
 *   r     x(kG) mod n, never 0;
 *   kinv  k^-1 mod n.
 *
 * Signing then costs two products mod n: s = kinv (e + r d). With p256
 * (p256_ecdsa_nonce(), p256_ecdsa_s()) all of it is constant time. On the
 * mbedTLS fallback, kinv is computed as t (k t)^-1 with a random t, as in
 * mbedTLS's own ecdsa_sign, so the variable-time inversion says nothing
 * about k, and s is computed as mbedTLS's ecdsa_sign does (r d, + e, * kinv).
 *
 * A nonce is as secret as the private key (k and one signature give d) and
 * must never serve twice (two signatures with one k give d). So: k is
 * uniform in [1, n-1] from getrandom (rejection sampling), R = kG is
 * computed by p256 (read-only shared table) or, on the fallback, on the
 * refill thread's own group (mbedTLS caches G's comb table inside the
 * group: no group is ever shared between threads), a nonce leaves the pool
 * under the mutex, so exactly one signer
 * gets it, and is wiped right after use; the pool is wiped at stop. After
 * fork() the child must not sign with the parent's nonces (the parent may use
 * the same ones): a pthread_atfork child handler wipes the child's copy and
 * forgets the refill thread (which does not exist there), and every use also
 * checks that getpid() is the pid that started the pool, for a child made
 * without fork() (a raw clone skips the handlers).
 *
 * The pool is process-wide and its nonces fit any key: a nonce binds to a
 * key only when it is used, once.
 */
struct nonce {
  uint8_t r[32];
  uint8_t kinv[32];
};

#define PRESIGN_MAX 65536
#define NONCE_TRIES 8
#define REFILL_NICE 10

static struct {
  pthread_mutex_t lock;   /* guards everything below but pid's reads */
  pthread_mutex_t control; /* serializes start and stop */
  pthread_cond_t wake;    /* the refill thread: room in the pool, or stop */
  struct nonce *slots;    /* [size]; the ready nonces are slots[0..ready) */
  unsigned size, ready;
  bool thread;            /* the refill thread exists (joinable) */
  bool stop;              /* asks the refill thread to exit */
  pthread_t tid;
  atomic_int pid;         /* the process the pool serves; 0 when stopped */
  uint64_t made, taken, fallbacks;
} pool = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .control = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static int pool_once_rc;

/* Wipes and frees the pool's nonces; pool.lock held (or a single thread). */
static void pool_wipe(void)
{
  if (pool.slots) {
    mbedtls_platform_zeroize(pool.slots, (size_t)pool.size * sizeof *pool.slots);
    free(pool.slots);
  }
  pool.slots = NULL;
  pool.size = pool.ready = 0;
}

/* fork(): the parent keeps the locks through the fork, so the child's copy
 * of the pool is consistent; the child then empties it. */
static void atfork_prepare(void)
{
  pthread_mutex_lock(&pool.control);
  pthread_mutex_lock(&pool.lock);
}

static void atfork_parent(void)
{
  pthread_mutex_unlock(&pool.lock);
  pthread_mutex_unlock(&pool.control);
}

static void atfork_child(void)
{
  atomic_store(&pool.pid, 0);
  pool_wipe();
  pool.thread = false; /* not copied by fork(): nothing to join */
  pool.stop = false;
  pool.made = pool.taken = pool.fallbacks = 0;
  pthread_cond_init(&pool.wake, NULL); /* the parent's refill thread may have waited on it */
  pthread_mutex_unlock(&pool.lock);
  pthread_mutex_unlock(&pool.control);
}

static void pool_init_once(void)
{
  pool_once_rc = pthread_atfork(atfork_prepare, atfork_parent, atfork_child) == 0 ? 0 : -ENOMEM;
}

/* A uniform scalar K in [1, n-1] from getrandom (rejection sampling: a
 * 256-bit draw is >= n with probability ~2^-32). */
static int random_scalar(uint8_t k[32])
{
  for (int tries = 0; tries < NONCE_TRIES; tries++) {
    if (rng(NULL, k, 32) != 0)
      return -EIO;
    if (p256_scalar_check(k) == 0)
      return 0;
  }
  return -EIO;
}

/* The mbedTLS fallback of make_nonce(), on GRP (the caller's own group). */
static int make_nonce_mbedtls(mbedtls_ecp_group *grp, struct nonce *out)
{
  mbedtls_mpi k, t, kt, r;
  mbedtls_ecp_point R;
  mbedtls_mpi_init(&k);
  mbedtls_mpi_init(&t);
  mbedtls_mpi_init(&kt);
  mbedtls_mpi_init(&r);
  mbedtls_ecp_point_init(&R);
  int rc = -EIO;
  int tries = 0;
  do {
    /* r == 0 has probability ~2^-256; a loop of tries rather than forever. */
    if (++tries > NONCE_TRIES)
      goto out;
    if (mbedtls_mpi_random(&k, 1, &grp->N, rng, NULL) != 0 ||
        mbedtls_ecp_mul(grp, &R, &k, &grp->G, rng, NULL) != 0 || mbedtls_mpi_mod_mpi(&r, &R.X, &grp->N) != 0)
      goto out;
  } while (mbedtls_mpi_cmp_int(&r, 0) == 0);
  /* kinv = t (k t)^-1: the inversion sees only k t. */
  if (mbedtls_mpi_random(&t, 1, &grp->N, rng, NULL) != 0 || mbedtls_mpi_mul_mpi(&kt, &k, &t) != 0 ||
      mbedtls_mpi_mod_mpi(&kt, &kt, &grp->N) != 0 || mbedtls_mpi_inv_mod(&kt, &kt, &grp->N) != 0 ||
      mbedtls_mpi_mul_mpi(&kt, &kt, &t) != 0 || mbedtls_mpi_mod_mpi(&kt, &kt, &grp->N) != 0)
    goto out;
  if (mbedtls_mpi_write_binary(&r, out->r, 32) == 0 && mbedtls_mpi_write_binary(&kt, out->kinv, 32) == 0)
    rc = 0;
out:
  mbedtls_mpi_free(&k); /* mbedtls_mpi_free zeroizes */
  mbedtls_mpi_free(&t);
  mbedtls_mpi_free(&kt);
  mbedtls_mpi_free(&r);
  mbedtls_ecp_point_free(&R);
  if (rc < 0)
    mbedtls_platform_zeroize(out, sizeof *out);
  return rc;
}

/* One fresh nonce: by p256 (~0.05 ms), else by mbedTLS on GRP. */
static int make_nonce(mbedtls_ecp_group *grp, struct nonce *out)
{
  if (!p256_ok())
    return make_nonce_mbedtls(grp, out);
  uint8_t k[32];
  int rc = -EIO;
  /* r == 0 (-EAGAIN) has probability ~2^-256: a few tries, not forever. */
  for (int tries = 0; tries < NONCE_TRIES; tries++) {
    rc = random_scalar(k);
    if (rc == 0)
      rc = p256_ecdsa_nonce(k, out->r, out->kinv);
    if (rc != -EAGAIN)
      break;
  }
  mbedtls_platform_zeroize(k, sizeof k);
  if (rc < 0) {
    mbedtls_platform_zeroize(out, sizeof *out);
    return -EIO;
  }
  return 0;
}

/*
 * The refill thread: computes nonces outside the lock while the pool has
 * room, sleeps on the condition variable when it is full (no CPU when idle).
 * A signer wakes it after taking a nonce. It runs at a lower priority, so on
 * a busy machine it fills the pool from idle time rather than competing with
 * the signers; the lock it takes is held for a copy of 64 bytes.
 */
static void *refill_main(void *arg)
{
  (void)arg;
  /* Idle time first: the signers and the event loop come before the refill
   * (Linux: the nice value of this thread alone). Best effort. */
  (void)setpriority(PRIO_PROCESS, (id_t)gettid(), REFILL_NICE);
  mbedtls_ecp_group grp; /* ours alone: its G table is written on first use */
  mbedtls_ecp_group_init(&grp);
  bool grp_ok = mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1) == 0;
  pthread_mutex_lock(&pool.lock);
  while (!pool.stop) {
    if (pool.ready >= pool.size || !grp_ok) {
      pthread_cond_wait(&pool.wake, &pool.lock);
      continue;
    }
    pthread_mutex_unlock(&pool.lock);
    struct nonce n;
    int rc = make_nonce(&grp, &n);
    pthread_mutex_lock(&pool.lock);
    if (rc == 0 && pool.ready < pool.size) {
      pool.slots[pool.ready++] = n;
      pool.made++;
    }
    mbedtls_platform_zeroize(&n, sizeof n);
    if (rc < 0 && !pool.stop) {
      /* No randomness or no memory: signers take the deterministic path
       * meanwhile; try again in a while rather than spin. */
      struct timespec until;
      clock_gettime(CLOCK_REALTIME, &until);
      until.tv_sec += 1;
      pthread_cond_timedwait(&pool.wake, &pool.lock, &until);
    }
  }
  pthread_mutex_unlock(&pool.lock);
  mbedtls_ecp_group_free(&grp);
  return NULL;
}

int key_presign_start(unsigned pool_size)
{
  if (pool_size == 0 || pool_size > PRESIGN_MAX)
    return -EINVAL;
  pthread_once(&pool_once, pool_init_once);
  if (pool_once_rc < 0)
    return pool_once_rc;
  pthread_mutex_lock(&pool.control);
  int rc = 0;
  if (pool.thread)
    goto out; /* running: keeps its size */
  struct nonce *slots = calloc(pool_size, sizeof *slots);
  if (!slots) {
    rc = -ENOMEM;
    goto out;
  }
  pthread_mutex_lock(&pool.lock);
  pool.slots = slots;
  pool.size = pool_size;
  pool.ready = 0;
  pool.stop = false;
  pool.made = pool.taken = pool.fallbacks = 0;
  pthread_mutex_unlock(&pool.lock);
  /* The thread takes no signals: they stay with the threads that expect them. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int cr = pthread_create(&pool.tid, NULL, refill_main, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_mutex_lock(&pool.lock);
  if (cr != 0) {
    pool_wipe();
    rc = -cr;
  } else {
    pool.thread = true;
    atomic_store(&pool.pid, (int)getpid());
  }
  pthread_mutex_unlock(&pool.lock);
out:
  pthread_mutex_unlock(&pool.control);
  return rc;
}

void key_presign_stop(void)
{
  pthread_mutex_lock(&pool.control);
  if (pool.thread) {
    pthread_mutex_lock(&pool.lock);
    atomic_store(&pool.pid, 0); /* signers stop taking nonces now */
    pool.stop = true;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    pthread_join(pool.tid, NULL);
    pthread_mutex_lock(&pool.lock);
    pool.thread = false;
    pool.stop = false;
    pool_wipe();
    pthread_mutex_unlock(&pool.lock);
  }
  pthread_mutex_unlock(&pool.control);
}

void key_presign_stats(struct key_presign_stats *out)
{
  memset(out, 0, sizeof *out);
  if (atomic_load(&pool.pid) != (int)getpid())
    return; /* stopped, or the parent's copy in a child */
  pthread_mutex_lock(&pool.lock);
  out->size = pool.size;
  out->ready = pool.ready;
  out->made = pool.made;
  out->taken = pool.taken;
  out->fallbacks = pool.fallbacks;
  pthread_mutex_unlock(&pool.lock);
}

/* Moves a nonce out of the pool into *OUT; false if the pool has none. */
static bool pool_take(struct nonce *out)
{
  int pid = atomic_load(&pool.pid);
  if (pid == 0 || pid != (int)getpid())
    return false; /* never started, stopped, or this is a child's copy */
  bool got = false;
  pthread_mutex_lock(&pool.lock);
  if (atomic_load(&pool.pid) == pid && pool.ready > 0) {
    struct nonce *n = &pool.slots[--pool.ready];
    *out = *n;
    mbedtls_platform_zeroize(n, sizeof *n);
    pool.taken++;
    got = true;
    pthread_cond_signal(&pool.wake);
  } else if (atomic_load(&pool.pid) == pid) {
    pool.fallbacks++;
  }
  pthread_mutex_unlock(&pool.lock);
  return got;
}

/* The mbedTLS fallback of sign_with_nonce(): s = kinv (e + r d) mod n, the
 * steps of mbedTLS's ecdsa_sign. 0, 1 if s == 0, or -ENOMEM. */
static int sign_with_nonce_mbedtls(const mbedtls_mpi *N, const mbedtls_mpi *d, const hash_t *digest,
                                   const struct nonce *nc, uint8_t sig[KEY_SIGNATURE_SIZE])
{
  mbedtls_mpi e, r, kinv, a;
  mbedtls_mpi_init(&e);
  mbedtls_mpi_init(&r);
  mbedtls_mpi_init(&kinv);
  mbedtls_mpi_init(&a);
  int rc = -ENOMEM;
  /* P-256's n has 256 bits, as many as the digest: e is the digest itself. */
  if (mbedtls_mpi_read_binary(&e, digest->bytes, HASH_SIZE) != 0 || mbedtls_mpi_read_binary(&r, nc->r, 32) != 0 ||
      mbedtls_mpi_read_binary(&kinv, nc->kinv, 32) != 0)
    goto out;
  if (mbedtls_mpi_mul_mpi(&a, &r, d) != 0 || mbedtls_mpi_add_mpi(&a, &a, &e) != 0 ||
      mbedtls_mpi_mod_mpi(&a, &a, N) != 0 || mbedtls_mpi_mul_mpi(&a, &a, &kinv) != 0 ||
      mbedtls_mpi_mod_mpi(&a, &a, N) != 0)
    goto out;
  if (mbedtls_mpi_cmp_int(&a, 0) == 0) {
    rc = 1;
    goto out;
  }
  if (mbedtls_mpi_write_binary(&a, sig + 32, 32) == 0) {
    memcpy(sig, nc->r, 32);
    rc = 0;
  }
out:
  mbedtls_mpi_free(&e);
  mbedtls_mpi_free(&r);
  mbedtls_mpi_free(&kinv);
  mbedtls_mpi_free(&a);
  return rc;
}

/* SIG with nonce NC: 0, 1 if s == 0 (take another nonce), or -errno. */
static int sign_with_nonce(const struct key *key, const mbedtls_mpi *N, const hash_t *digest, const struct nonce *nc,
                           uint8_t sig[KEY_SIGNATURE_SIZE])
{
  if (!p256_ok())
    return sign_with_nonce_mbedtls(N, &key->kp.d, digest, nc, sig);
  int rc = p256_ecdsa_s(key->d, nc->r, nc->kinv, digest->bytes, sig + 32);
  if (rc == -EAGAIN)
    return 1;
  if (rc < 0)
    return -EIO;
  memcpy(sig, nc->r, 32);
  return 0;
}

/*
 * RFC 6979 on p256, byte for byte what mbedtls_ecdsa_sign_det_ext() gives
 * (mbedTLS 2.28's ecdsa_sign_det_restartable and ecdsa_sign_restartable):
 * an HMAC_DRBG (SHA-256) seeded with int2octets(d) || bits2octets(h) (h mod
 * n); each candidate k is 32 bytes of its output (mbedtls_ecp_gen_privkey ->
 * mbedtls_mpi_random: one 32-byte draw per try, kept if 1 <= k < n); r =
 * x(kG) mod n and s = k^-1 (e + r d) mod n with e = h mod n; k out of range,
 * r = 0 or s = 0 each take the next draw, as mbedTLS's loops do. Returns 0,
 * 1 to hand over to mbedTLS (draw limit reached: probability ~2^-900; its
 * own limits then decide), or -errno.
 */
static int sign_det_p256(const struct key *key, const hash_t *digest, uint8_t sig[KEY_SIGNATURE_SIZE])
{
  const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
  if (!md)
    return -EIO;
  uint8_t seed[64], k[32];
  memcpy(seed, key->d, 32);
  p256_scalar_reduce(digest->bytes, seed + 32);
  mbedtls_hmac_drbg_context drbg;
  mbedtls_hmac_drbg_init(&drbg);
  int rc = mbedtls_hmac_drbg_seed_buf(&drbg, md, seed, sizeof seed) == 0 ? 1 : -ENOMEM;
  for (int draws = 0; rc == 1 && draws < 24; draws++) {
    if (mbedtls_hmac_drbg_random(&drbg, k, sizeof k) != 0) {
      rc = -EIO;
      break;
    }
    int src = p256_ecdsa_sign(key->d, k, digest->bytes, sig);
    if (src == 0)
      rc = 0;
    else if (src != -EINVAL && src != -EAGAIN) /* -EINVAL: k out of range (d is valid) */
      rc = -EIO;
  }
  mbedtls_hmac_drbg_free(&drbg); /* zeroizes */
  mbedtls_platform_zeroize(seed, sizeof seed);
  mbedtls_platform_zeroize(k, sizeof k);
  return rc;
}

/*
 * Signing without a lock: p256's table is read-only once built, the private
 * scalar is only read, and the RFC 6979 DRBG lives on the stack. On the
 * mbedTLS fallback, the only state mbedTLS writes while signing is the
 * base-point table cached inside the group, so each thread signs on its own
 * plain P-256 group (the verification state's, whose G table it shares),
 * never on key->kp.grp. Without the nonce pool, signatures stay
 * deterministic and bit-identical to a serial signer's, on any number of
 * threads. With it, the pool's mutex is held only to move one nonce out.
 */
int key_sign(const struct key *key, const hash_t *digest, uint8_t sig[KEY_SIGNATURE_SIZE])
{
  struct verify_state *st = thread_state();
  if (!st)
    return -ENOMEM;
  struct nonce nc;
  /* s == 0 (probability ~2^-256) costs a nonce; a few tries, then RFC 6979. */
  for (int tries = 0; tries < NONCE_TRIES && pool_take(&nc); tries++) {
    int rc = sign_with_nonce(key, &st->grp.N, digest, &nc, sig);
    mbedtls_platform_zeroize(&nc, sizeof nc);
    if (rc == 0)
      return 0;
    if (rc < 0)
      break; /* the deterministic path says whether memory is really short */
  }
  if (p256_ok()) {
    int rc = sign_det_p256(key, digest, sig);
    if (rc <= 0)
      return rc;
  }
  mbedtls_mpi r, s;
  mbedtls_mpi_init(&r);
  mbedtls_mpi_init(&s);
  int rc = -EIO;
  if (mbedtls_ecdsa_sign_det_ext(&st->grp, &r, &s, &key->kp.d, digest->bytes, HASH_SIZE, MBEDTLS_MD_SHA256, rng,
                                 NULL) == 0 &&
      mbedtls_mpi_write_binary(&r, sig, 32) == 0 && mbedtls_mpi_write_binary(&s, sig + 32, 32) == 0)
    rc = 0;
  mbedtls_mpi_free(&r);
  mbedtls_mpi_free(&s);
  return rc;
}

int key_check_public(const uint8_t pub[KEY_PUBLIC_SIZE])
{
  struct verify_state *st = thread_state();
  if (!st)
    return -ENOMEM;
  mbedtls_ecp_point Q;
  mbedtls_ecp_point_init(&Q);
  int rc = read_point(&st->grp, pub, &Q);
  mbedtls_ecp_point_free(&Q);
  return rc;
}

static int verify_with(const uint8_t pub[KEY_PUBLIC_SIZE], const hash_t *digest, const uint8_t sig[KEY_SIGNATURE_SIZE],
                       bool use_cache)
{
  struct verify_state *st = thread_state();
  if (!st)
    return -ENOMEM;
  mbedtls_ecp_group *grp = &st->grp;
  mbedtls_ecp_point Q;
  mbedtls_mpi r, s;
  mbedtls_ecp_point_init(&Q);
  mbedtls_mpi_init(&r);
  mbedtls_mpi_init(&s);
  int rc = read_point(grp, pub, &Q);
  if (rc < 0)
    goto out;
  rc = -ENOMEM;
  if (mbedtls_mpi_read_binary(&r, sig, 32) != 0 || mbedtls_mpi_read_binary(&s, sig + 32, 32) != 0)
    goto out;
  mbedtls_ecp_group *agrp = use_cache ? author_group(st, pub, &Q) : NULL;
  /* Without p256 and without a cached author, mbedtls_ecdsa_verify() is as fast. */
  rc = agrp || (use_cache && p256_ok()) ? verify_split(grp, agrp, &Q, digest, &r, &s) : 1;
  if (rc == 1) { /* mbedtls_ecdsa_verify rejects r or s outside [1, n-1] itself. */
    int m = mbedtls_ecdsa_verify(grp, digest->bytes, HASH_SIZE, &Q, &r, &s);
    rc = m == 0 ? 0 : mbed_failure(m, -BFS_ESIGNATURE);
  }
out:
  mbedtls_ecp_point_free(&Q);
  mbedtls_mpi_free(&r);
  mbedtls_mpi_free(&s);
  return rc;
}

int key_verify(const uint8_t pub[KEY_PUBLIC_SIZE], const hash_t *digest, const uint8_t sig[KEY_SIGNATURE_SIZE])
{
  return verify_with(pub, digest, sig, true);
}

int key_verify_plain(const uint8_t pub[KEY_PUBLIC_SIZE], const hash_t *digest, const uint8_t sig[KEY_SIGNATURE_SIZE])
{
  return verify_with(pub, digest, sig, false);
}
