#include "tests/test.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/error.h"
#include "store/key.h"

static char *path_in(const char *dir, const char *name)
{
  static char buf[8][4096];
  static int i;
  char *p = buf[i++ % 8];
  snprintf(p, 4096, "%s/%s", dir, name);
  return p;
}

static void write_file(const char *path, const char *data)
{
  FILE *f = fopen(path, "w");
  CHECK(f);
  fputs(data, f);
  fclose(f);
}

static char *read_file(const char *path)
{
  static char buf[16384];
  FILE *f = fopen(path, "r");
  CHECK(f);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  return buf;
}

static void digest_of(const char *s, hash_t *h) { hash_buf(s, strlen(s), h); }

TEST(generate_sign_verify)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  uint8_t pub[KEY_PUBLIC_SIZE], sig[KEY_SIGNATURE_SIZE];
  key_public(k, pub);
  CHECK_INT(pub[0], ==, 0x04);
  CHECK_OK(key_check_public(pub));
  hash_t d;
  digest_of("hello", &d);
  CHECK_OK(key_sign(k, &d, sig));
  CHECK_OK(key_verify(pub, &d, sig));
  key_free(k);
}

TEST(signing_is_deterministic)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  hash_t d;
  digest_of("same digest", &d);
  uint8_t a[KEY_SIGNATURE_SIZE], b[KEY_SIGNATURE_SIZE];
  CHECK_OK(key_sign(k, &d, a));
  CHECK_OK(key_sign(k, &d, b));
  CHECK_MEM(a, b, sizeof a);
  key_free(k);
}

TEST(forged_signature_rejected)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  uint8_t pub[KEY_PUBLIC_SIZE], sig[KEY_SIGNATURE_SIZE];
  key_public(k, pub);
  hash_t d, other;
  digest_of("message", &d);
  digest_of("other message", &other);
  CHECK_OK(key_sign(k, &d, sig));
  /* Wrong digest. */
  CHECK_INT(key_verify(pub, &other, sig), ==, -BFS_ESIGNATURE);
  /* Every single-bit flip of the signature. */
  for (int i = 0; i < KEY_SIGNATURE_SIZE * 8; i += 7) {
    uint8_t bad[KEY_SIGNATURE_SIZE];
    memcpy(bad, sig, sizeof bad);
    bad[i / 8] ^= (uint8_t)(1u << (i % 8));
    CHECK_INT(key_verify(pub, &d, bad), ==, -BFS_ESIGNATURE);
  }
  /* r = 0 or s = 0, and all-ones (>= n). */
  uint8_t zero[KEY_SIGNATURE_SIZE] = {0}, ones[KEY_SIGNATURE_SIZE];
  memset(ones, 0xff, sizeof ones);
  CHECK_INT(key_verify(pub, &d, zero), ==, -BFS_ESIGNATURE);
  CHECK_INT(key_verify(pub, &d, ones), ==, -BFS_ESIGNATURE);
  key_free(k);
}

TEST(wrong_public_key_rejected)
{
  struct key *a, *b;
  CHECK_OK(key_generate(&a));
  CHECK_OK(key_generate(&b));
  uint8_t pa[KEY_PUBLIC_SIZE], pb[KEY_PUBLIC_SIZE], sig[KEY_SIGNATURE_SIZE];
  key_public(a, pa);
  key_public(b, pb);
  CHECK(memcmp(pa, pb, sizeof pa) != 0);
  hash_t d;
  digest_of("x", &d);
  CHECK_OK(key_sign(a, &d, sig));
  CHECK_INT(key_verify(pb, &d, sig), ==, -BFS_ESIGNATURE);
  key_free(a);
  key_free(b);
}

TEST(public_key_not_on_curve_rejected)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  uint8_t pub[KEY_PUBLIC_SIZE], sig[KEY_SIGNATURE_SIZE];
  key_public(k, pub);
  hash_t d;
  digest_of("x", &d);
  CHECK_OK(key_sign(k, &d, sig));
  uint8_t bad[KEY_PUBLIC_SIZE];
  memcpy(bad, pub, sizeof bad);
  bad[64] ^= 1; /* y no longer matches x */
  CHECK_INT(key_check_public(bad), ==, -BFS_EKEY);
  CHECK_INT(key_verify(bad, &d, sig), ==, -BFS_EKEY);
  memcpy(bad, pub, sizeof bad);
  bad[0] = 0x02; /* compressed tag: not our wire form */
  CHECK_INT(key_verify(bad, &d, sig), ==, -BFS_EKEY);
  memset(bad, 0, sizeof bad);
  bad[0] = 0x04; /* (0, 0) */
  CHECK_INT(key_verify(bad, &d, sig), ==, -BFS_EKEY);
  memset(bad + 1, 0xff, 64); /* coordinates >= p */
  CHECK_INT(key_verify(bad, &d, sig), ==, -BFS_EKEY);
  key_free(k);
}

TEST(fingerprint_is_sha256_of_point)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  uint8_t pub[KEY_PUBLIC_SIZE];
  key_public(k, pub);
  hash_t fp, want;
  key_fingerprint(pub, &fp);
  hash_buf(pub, sizeof pub, &want);
  CHECK(hash_eq(&fp, &want));
  key_free(k);
}

TEST(save_load_round_trip)
{
  const char *dir = test_tmpdir();
  const char *path = path_in(dir, "id_ec"), *pubpath = path_in(dir, "id_ec.pub");
  struct key *k, *l;
  CHECK_OK(key_generate(&k));
  CHECK_OK(key_save(k, path));
  struct stat st;
  CHECK_OK(stat(path, &st));
  CHECK_INT(st.st_mode & 0777, ==, 0600);
  CHECK_OK(stat(pubpath, &st));
  CHECK_INT(st.st_mode & 0077, ==, 0044);
  CHECK_OK(key_load(path, &l));
  uint8_t a[KEY_PUBLIC_SIZE], b[KEY_PUBLIC_SIZE], c[KEY_PUBLIC_SIZE];
  key_public(k, a);
  key_public(l, b);
  CHECK_MEM(a, b, sizeof a);
  CHECK_OK(key_load_public(pubpath, c));
  CHECK_MEM(a, c, sizeof a);
  /* The loaded key signs what the original's public key verifies. */
  hash_t d;
  uint8_t sig[KEY_SIGNATURE_SIZE];
  digest_of("loaded", &d);
  CHECK_OK(key_sign(l, &d, sig));
  CHECK_OK(key_verify(a, &d, sig));
  /* The files say what they are; no temporary file is left behind. */
  CHECK(strncmp(read_file(path), "# basefs private key, format 1", 30) == 0);
  CHECK(strncmp(read_file(pubpath), "# basefs public key, format 1", 29) == 0);
  int count = 0;
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
  FILE *p = popen(cmd, "r");
  CHECK(p && fscanf(p, "%d", &count) == 1);
  pclose(p);
  CHECK_INT(count, ==, 2);
  key_free(k);
  key_free(l);
}

TEST(save_refuses_to_overwrite)
{
  const char *dir = test_tmpdir();
  const char *path = path_in(dir, "k"), *pubpath = path_in(dir, "k.pub");
  struct key *k;
  CHECK_OK(key_generate(&k));
  CHECK_OK(key_save(k, path));
  char before[16384];
  snprintf(before, sizeof before, "%s", read_file(path));
  struct key *k2;
  CHECK_OK(key_generate(&k2));
  CHECK_INT(key_save(k2, path), ==, -EEXIST);
  CHECK(strcmp(before, read_file(path)) == 0);
  /* Only the .pub exists: still refused, and no private file appears. */
  const char *p2 = path_in(dir, "only_pub");
  write_file(path_in(dir, "only_pub.pub"), "x");
  CHECK_INT(key_save(k2, p2), ==, -EEXIST);
  CHECK(access(p2, F_OK) < 0);
  (void)pubpath;
  key_free(k);
  key_free(k2);
}

TEST(load_rejects_garbage)
{
  const char *dir = test_tmpdir();
  struct key *k = NULL;
  uint8_t pub[KEY_PUBLIC_SIZE];
  CHECK_INT(key_load(path_in(dir, "missing"), &k), ==, -ENOENT);
  CHECK_INT(key_load_public(path_in(dir, "missing"), pub), ==, -ENOENT);
  write_file(path_in(dir, "empty"), "");
  CHECK_INT(key_load(path_in(dir, "empty"), &k), ==, -BFS_EKEY);
  CHECK_INT(key_load_public(path_in(dir, "empty"), pub), ==, -BFS_EKEY);
  write_file(path_in(dir, "junk"), "# basefs private key, format 1\nnot pem at all\n");
  CHECK_INT(key_load(path_in(dir, "junk"), &k), ==, -BFS_EKEY);
  CHECK(k == NULL);

  /* A future format number is refused even if the PEM inside is fine. */
  struct key *g;
  CHECK_OK(key_generate(&g));
  CHECK_OK(key_save(g, path_in(dir, "good")));
  char text[16384];
  snprintf(text, sizeof text, "%s", read_file(path_in(dir, "good")));
  char *fmt = strstr(text, "format 1");
  CHECK(fmt);
  fmt[7] = '2';
  write_file(path_in(dir, "v2"), text);
  CHECK_INT(key_load(path_in(dir, "v2"), &k), ==, -BFS_EKEY);
  /* A bare PEM (no header line, as openssl writes) is accepted. */
  char *pem = strstr(read_file(path_in(dir, "good")), "-----BEGIN");
  CHECK(pem);
  write_file(path_in(dir, "bare"), pem);
  CHECK_OK(key_load(path_in(dir, "bare"), &k));
  key_free(k);
  /* A public key file is not a private key, and vice versa gives its public half. */
  CHECK_INT(key_load(path_in(dir, "good.pub"), &k), ==, -BFS_EKEY);
  key_free(g);
}

TEST(load_rejects_other_curves)
{
  if (system("command -v openssl >/dev/null 2>&1") != 0) {
    printf("# skip: no openssl\n");
    return;
  }
  const char *dir = test_tmpdir();
  char cmd[8300];
  snprintf(cmd, sizeof cmd,
           "openssl ecparam -name secp384r1 -genkey -noout -out '%s/p384' 2>/dev/null && "
           "openssl ec -in '%s/p384' -pubout -out '%s/p384.pub' 2>/dev/null",
           dir, dir, dir);
  CHECK_OK(system(cmd));
  struct key *k = NULL;
  uint8_t pub[KEY_PUBLIC_SIZE];
  CHECK_INT(key_load(path_in(dir, "p384"), &k), ==, -BFS_EKEY);
  CHECK_INT(key_load_public(path_in(dir, "p384.pub"), pub), ==, -BFS_EKEY);
  /* And an openssl P-256 key is usable. */
  snprintf(cmd, sizeof cmd,
           "openssl ecparam -name prime256v1 -genkey -noout -out '%s/p256' 2>/dev/null && "
           "openssl ec -in '%s/p256' -pubout -out '%s/p256.pub' 2>/dev/null",
           dir, dir, dir);
  CHECK_OK(system(cmd));
  CHECK_OK(key_load(path_in(dir, "p256"), &k));
  uint8_t a[KEY_PUBLIC_SIZE];
  key_public(k, a);
  CHECK_OK(key_load_public(path_in(dir, "p256.pub"), pub));
  CHECK_MEM(a, pub, sizeof a);
  key_free(k);
}

/* Writes DIR/NAME.pem: a SEC1 key with the private scalar of DIR/D and the public point of DIR/Q. */
static int sec1_from_parts(const char *dir, const char *d, const char *q, const char *name)
{
  char cmd[8300];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && D=$(openssl ec -in %s -text -noout 2>/dev/null | awk '/^priv:/{f=1;next} /^pub:/{f=0} f' | tr -d ' :\\n') && "
           "Q=$(openssl ec -in %s -text -noout 2>/dev/null | awk '/^pub:/{f=1;next} /^ASN1/{f=0} f' | tr -d ' :\\n') && "
           "printf 'asn1=SEQUENCE:k\\n[k]\\nv=INTEGER:1\\nd=FORMAT:HEX,OCTETSTRING:%%s\\np=EXPLICIT:0,OID:prime256v1\\n"
           "q=EXPLICIT:1,FORMAT:HEX,BITSTRING:%%s\\n' $D $Q > %s.conf && "
           "openssl asn1parse -genconf %s.conf -out %s.der >/dev/null 2>&1 && "
           "openssl ec -inform DER -in %s.der -out %s.pem >/dev/null 2>&1",
           dir, d, q, name, name, name, name, name);
  return system(cmd);
}

TEST(load_rejects_mismatched_public_half)
{
  if (system("command -v openssl >/dev/null 2>&1") != 0) {
    printf("# skip: no openssl\n");
    return;
  }
  const char *dir = test_tmpdir();
  char cmd[8300];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && openssl ecparam -name prime256v1 -genkey -noout -out a 2>/dev/null && "
           "openssl ecparam -name prime256v1 -genkey -noout -out b 2>/dev/null",
           dir);
  CHECK_OK(system(cmd));
  /* The same construction with matching halves loads: the test can tell. */
  CHECK_OK(sec1_from_parts(dir, "a", "a", "matched"));
  CHECK_OK(sec1_from_parts(dir, "a", "b", "mixed"));
  struct key *k = NULL;
  CHECK_OK(key_load(path_in(dir, "matched.pem"), &k));
  key_free(k);
  k = NULL;
  CHECK_INT(key_load(path_in(dir, "mixed.pem"), &k), ==, -BFS_EKEY);
  CHECK(k == NULL);
}

struct verify_job {
  uint8_t pub[KEY_PUBLIC_SIZE];
  hash_t digest;
  uint8_t sig[KEY_SIGNATURE_SIZE];
  int failures;
};

static void *verify_many(void *arg)
{
  struct verify_job *j = arg;
  for (int i = 0; i < 50; i++) {
    uint8_t bad[KEY_SIGNATURE_SIZE];
    memcpy(bad, j->sig, sizeof bad);
    if (i % 2)
      bad[i % KEY_SIGNATURE_SIZE] ^= 0x10;
    int rc = key_verify(j->pub, &j->digest, bad);
    if ((i % 2 == 0) != (rc == 0))
      j->failures++;
  }
  return NULL;
}

TEST(verify_is_thread_safe)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  struct verify_job jobs[4];
  pthread_t t[4];
  for (int i = 0; i < 4; i++) {
    key_public(k, jobs[i].pub);
    char msg[16];
    snprintf(msg, sizeof msg, "m%d", i);
    digest_of(msg, &jobs[i].digest);
    CHECK_OK(key_sign(k, &jobs[i].digest, jobs[i].sig));
    jobs[i].failures = 0;
  }
  for (int i = 0; i < 4; i++)
    CHECK_OK(pthread_create(&t[i], NULL, verify_many, &jobs[i]));
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    CHECK_INT(jobs[i].failures, ==, 0);
  }
  key_free(k);
}

/*
 * key_verify() caches frequent authors' tables and computes the ECDSA
 * equation itself; it must agree with mbedtls_ecdsa_verify() (key_verify_plain)
 * on good signatures, on every kind of bad one, and across cache evictions.
 */
TEST(cached_verify_agrees_with_mbedtls)
{
  enum { KEYS = 12 };
  struct key *keys[KEYS];
  uint8_t pubs[KEYS][KEY_PUBLIC_SIZE];
  for (int i = 0; i < KEYS; i++) {
    CHECK_OK(key_generate(&keys[i]));
    key_public(keys[i], pubs[i]);
  }
  /* The order n of P-256, and n - 1. */
  static const uint8_t n[32] = {0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
                                0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17,
                                0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51};
  int good = 0, bad = 0;
  for (int round = 0; round < 400; round++) {
    /* Mostly the first three keys (cached), sometimes the others (evictions). */
    int k = round % 5 == 4 ? 3 + (int)(test_rand() % (KEYS - 3)) : (int)(test_rand() % 3);
    int signer = k;
    hash_t d;
    uint64_t x = test_rand();
    hash_buf(&x, sizeof x, &d);
    uint8_t sig[KEY_SIGNATURE_SIZE];
    int kind = (int)(test_rand() % 8);
    if (kind == 1)
      signer = (k + 1) % KEYS; /* someone else's signature */
    CHECK_OK(key_sign(keys[signer], &d, sig));
    switch (kind) {
    case 2:
      sig[test_rand() % 64] ^= (uint8_t)(1u << (test_rand() % 8));
      break;
    case 3:
      d.bytes[test_rand() % 32] ^= 1;
      break;
    case 4: /* r = n, or s = n */
      memcpy(sig + (test_rand() % 2) * 32, n, 32);
      break;
    case 5: { /* s' = n - s: the other valid signature (ECDSA malleability) */
      uint8_t *s = sig + 32;
      int borrow = 0;
      for (int i = 31; i >= 0; i--) {
        int v = n[i] - s[i] - borrow;
        borrow = v < 0;
        s[i] = (uint8_t)(v + (borrow ? 256 : 0));
      }
      break;
    }
    case 6: /* r = 0 */
      memset(sig, 0, 32);
      break;
    default:
      break;
    }
    int fast = key_verify(pubs[k], &d, sig), plain = key_verify_plain(pubs[k], &d, sig);
    CHECK_MSG(fast == plain, "round %d kind %d: key_verify %d, mbedtls %d", round, kind, fast, plain);
    if (fast == 0)
      good++;
    else
      bad++;
  }
  CHECK_INT(good, >, 100);
  CHECK_INT(bad, >, 100);
  for (int i = 0; i < KEYS; i++)
    key_free(keys[i]);
}

/*
 * RFC 6979, A.2.5 (P-256, SHA-256, message "sample"): the key file holds the
 * appendix's private key x; the signature must be exactly the appendix's
 * (r, s). Pins key_sign() to standard deterministic ECDSA, so signatures
 * never change with how (or on how many threads) they are computed.
 */
static const char rfc6979_key[] = "-----BEGIN EC PRIVATE KEY-----\n"
                                  "MHcCAQEEIMmvqdhFunUWa1whV2ex1pNOUMPbNuibEnuKYisSD2choAoGCCqGSM49\n"
                                  "AwEHoUQDQgAEYP7UuiVanTHJYet0xjVtaMBJuJI7Yfps5mliLmDyn7Z5A/4QCLi8\n"
                                  "maQa6elWKLxk8vGyDC1+n1F3o8KU1EYimQ==\n"
                                  "-----END EC PRIVATE KEY-----\n";

static void hex_to(const char *hex, uint8_t *out, size_t n)
{
  for (size_t i = 0; i < n; i++)
    CHECK(sscanf(hex + 2 * i, "%2hhx", &out[i]) == 1);
}

TEST(sign_matches_rfc6979_vector)
{
  const char *dir = test_tmpdir();
  write_file(path_in(dir, "k"), rfc6979_key);
  struct key *k;
  CHECK_OK(key_load(path_in(dir, "k"), &k));
  hash_t d;
  digest_of("sample", &d);
  uint8_t want[KEY_SIGNATURE_SIZE], sig[KEY_SIGNATURE_SIZE];
  hex_to("EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716", want, 32);
  hex_to("F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8", want + 32, 32);
  CHECK_OK(key_sign(k, &d, sig));
  CHECK_MEM(sig, want, sizeof want);
  uint8_t pub[KEY_PUBLIC_SIZE];
  key_public(k, pub);
  CHECK_OK(key_verify(pub, &d, sig));
  key_free(k);
}

#define SIGNS 48

struct sign_job {
  const struct key *key;
  int first; /* signs digests first, first + 2, ... */
  uint8_t sig[SIGNS][KEY_SIGNATURE_SIZE];
  int failures;
};

static void nth_digest(int i, hash_t *d)
{
  char msg[32];
  snprintf(msg, sizeof msg, "digest %d", i);
  digest_of(msg, d);
}

static void *sign_many(void *arg)
{
  struct sign_job *j = arg;
  for (int i = j->first; i < SIGNS; i += 2) {
    hash_t d;
    nth_digest(i, &d);
    if (key_sign(j->key, &d, j->sig[i]) != 0)
      j->failures++;
  }
  return NULL;
}

/* Two threads signing with one key at once give the single thread's signatures. */
TEST(sign_is_thread_safe_and_identical)
{
  struct key *k;
  CHECK_OK(key_generate(&k));
  uint8_t serial[SIGNS][KEY_SIGNATURE_SIZE];
  for (int i = 0; i < SIGNS; i++) {
    hash_t d;
    nth_digest(i, &d);
    CHECK_OK(key_sign(k, &d, serial[i]));
  }
  static struct sign_job jobs[2];
  pthread_t t[2];
  for (int round = 0; round < 3; round++) {
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < 2; i++) {
      jobs[i].key = k;
      jobs[i].first = (i + round) % 2;
      CHECK_OK(pthread_create(&t[i], NULL, sign_many, &jobs[i]));
    }
    for (int i = 0; i < 2; i++) {
      pthread_join(t[i], NULL);
      CHECK_INT(jobs[i].failures, ==, 0);
    }
    for (int i = 0; i < SIGNS; i++)
      CHECK_MSG(memcmp(jobs[(i + round) % 2].sig[i], serial[i], KEY_SIGNATURE_SIZE) == 0,
                "round %d digest %d: thread signature differs from the serial one", round, i);
  }
  key_free(k);
}
