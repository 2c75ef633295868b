/*
 * Signing and verification cost of entries, and their size.
 *
 *   bench_sign [N]     (N entries, default 2000)
 *
 * Prints entries signed per second (RFC 6979, and from a warm pool of
 * precomputed nonces: key_presign_start()), the bare RFC 6979 signature of
 * key_sign() (store/p256.c) against plain mbedtls_ecdsa_sign_det_ext() on the
 * same digests in the same run (the anchor, and their ratio), the nonce
 * pool's refill rate, entries verified per second on 1
 * and 2 threads (store/verify.h), the speed-up of 2 threads, small-batch
 * overhead, and the encoded size of typical entries. The anchor is DESIGN.md's figure
 * for Debian's mbedTLS 2.28 on this machine: sign 0.38 ms, verify 1.1 ms
 * (plain mbedtls_ecdsa_verify; key_verify_plain here). Single-thread costs are
 * given in CPU time as well as wall time, so a busy machine skews them less;
 * the load average is printed for context.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <sys/random.h>

#include "store/entry.h"
#include "store/error.h"
#include "store/key.h"
#include "store/verify.h"

static double clock_s(clockid_t id)
{
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }
static double cpu(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }
static double thread_cpu(void) { return clock_s(CLOCK_THREAD_CPUTIME_ID); }

static int bench_rng(void *ctx, unsigned char *buf, size_t len)
{
  (void)ctx;
  return getrandom(buf, len, 0) == (ssize_t)len ? 0 : MBEDTLS_ERR_ECP_RANDOM_FAILED;
}

/*
 * RFC 6979 signatures of the N entry ids, in CPU seconds each: key_sign()
 * (p256) and mbedtls_ecdsa_sign_det_ext() with a key of its own (the cost
 * does not depend on the key). Interleaved in blocks, so machine noise hits
 * both alike. -1 on failure.
 */
static int bare_sign(struct key *k, const struct entry *entries, int n, double *ours, double *mbed)
{
  mbedtls_ecp_keypair kp;
  mbedtls_ecp_keypair_init(&kp);
  mbedtls_mpi r, s;
  mbedtls_mpi_init(&r);
  mbedtls_mpi_init(&s);
  int rc = -1;
  if (mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, &kp, bench_rng, NULL) != 0)
    goto out;
  *ours = *mbed = 0;
  int block = 50;
  for (int b = 0; b < n; b += block) {
    int end = b + block < n ? b + block : n;
    double c0 = thread_cpu();
    for (int i = b; i < end; i++) {
      uint8_t sig[KEY_SIGNATURE_SIZE];
      if (key_sign(k, &entries[i].id, sig) != 0)
        goto out;
    }
    double c1 = thread_cpu();
    for (int i = b; i < end; i++)
      if (mbedtls_ecdsa_sign_det_ext(&kp.grp, &r, &s, &kp.d, entries[i].id.bytes, HASH_SIZE, MBEDTLS_MD_SHA256,
                                     bench_rng, NULL) != 0)
        goto out;
    double c2 = thread_cpu();
    *ours += c1 - c0;
    *mbed += c2 - c1;
  }
  *ours /= n;
  *mbed /= n;
  rc = 0;
out:
  mbedtls_mpi_free(&r);
  mbedtls_mpi_free(&s);
  mbedtls_ecp_keypair_free(&kp);
  return rc;
}

/* Waits until the nonce pool is full; the process CPU time it took. */
static double fill_pool(void)
{
  double c0 = cpu();
  for (;;) {
    struct key_presign_stats st;
    key_presign_stats(&st);
    if (st.size == 0 || st.ready == st.size)
      return cpu() - c0;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
}

/* A typical config-file write: a create with ~120 bytes inline. */
static void typical(struct entry *e, int i)
{
  memset(e, 0, sizeof *e);
  e->action = ENTRY_WRITE;
  e->mtime_ns = 1763700000000000000ull + (uint64_t)i * 1000;
  e->mode = 0644;
  e->uid = 1000;
  e->gid = 1000;
  memset(e->dir.bytes, 0xa5, HASH_SIZE);
  e->dir.bytes[0] = (uint8_t)i;
  e->name_len = (uint8_t)snprintf(e->name, sizeof e->name, "service-%d.conf", i);
  e->content_kind = ENTRY_CONTENT_INLINE;
  e->content_len = (uint16_t)snprintf((char *)e->content, 200,
                                      "[service]\nname=svc%d\nlisten=0.0.0.0:%d\nworkers=4\nlog=/var/log/svc%d.log\n"
                                      "peers=10.0.0.1,10.0.0.2,10.0.0.3\n",
                                      i, 8000 + i, i);
  e->size = e->content_len;
}

static int size_of(struct entry *e, struct key *k)
{
  uint8_t buf[ENTRY_MAX_SIZE];
  if (entry_sign(e, k) != 0)
    return -1;
  return entry_encode(e, buf, sizeof buf);
}

int main(int argc, char **argv)
{
  int n = argc > 1 ? atoi(argv[1]) : 2000;
  if (n < 10)
    n = 10;
  struct key *k;
  if (key_generate(&k) != 0) {
    fprintf(stderr, "key_generate failed\n");
    return 1;
  }
  struct entry *entries = calloc((size_t)n, sizeof *entries);
  struct entry **ptrs = calloc((size_t)n, sizeof *ptrs);
  int *results = calloc((size_t)n, sizeof *results);
  if (!entries || !ptrs || !results)
    return 1;
  for (int i = 0; i < n; i++) {
    typical(&entries[i], i);
    ptrs[i] = &entries[i];
  }

  double t0 = now(), c0 = cpu();
  for (int i = 0; i < n; i++)
    if (entry_sign(&entries[i], k) != 0) {
      fprintf(stderr, "entry_sign failed\n");
      return 1;
    }
  double sign_s = now() - t0, sign_cpu = cpu() - c0;
  double det_ours = 0, det_mbed = 0;
  if (bare_sign(k, entries, n, &det_ours, &det_mbed) != 0) {
    fprintf(stderr, "RFC 6979 comparison failed\n");
    return 1;
  }

  /* The same signatures from a warm pool of N nonces (what a daemon's write
   * pays). The pool's refill thread starts again as soon as a nonce is
   * taken, so the signer's cost is its own thread's CPU time; the refill
   * cost is measured apart, as the CPU time of filling the empty pool. */
  if (key_presign_start((unsigned)n) != 0) {
    fprintf(stderr, "key_presign_start failed\n");
    return 1;
  }
  double fill_cpu = fill_pool();
  struct key_presign_stats ps0, ps1;
  key_presign_stats(&ps0);
  t0 = now(), c0 = thread_cpu();
  for (int i = 0; i < n; i++)
    if (entry_sign(&entries[i], k) != 0) {
      fprintf(stderr, "entry_sign (pool) failed\n");
      return 1;
    }
  double presign_s = now() - t0, presign_cpu = thread_cpu() - c0;
  key_presign_stats(&ps1);
  key_presign_stop();
  for (int i = 0; i < n; i++)
    if (key_verify_plain(entries[i].pubkey, &entries[i].id, entries[i].signature) != 0) {
      fprintf(stderr, "pooled signature does not verify\n");
      return 1;
    }

  /* Plain mbedtls_ecdsa_verify, the anchor's method. */
  t0 = now(), c0 = cpu();
  for (int i = 0; i < n; i++)
    if (key_verify_plain(entries[i].pubkey, &entries[i].id, entries[i].signature) != 0) {
      fprintf(stderr, "key_verify_plain failed\n");
      return 1;
    }
  double plain_s = now() - t0, plain_cpu = cpu() - c0;

  /* key_verify() with authors it never caches: AUTHORS keys in turn, more
   * than key.c's 16 candidates, so every signature takes the uncached path
   * (u1 G from p256, u2 Q on a table built for the call). */
  enum { AUTHORS = 24 };
  struct key *authors[AUTHORS];
  uint8_t author_pub[AUTHORS][KEY_PUBLIC_SIZE];
  for (int a = 0; a < AUTHORS; a++) {
    if (key_generate(&authors[a]) != 0)
      return 1;
    key_public(authors[a], author_pub[a]);
  }
  uint8_t(*author_sig)[KEY_SIGNATURE_SIZE] = calloc((size_t)n, KEY_SIGNATURE_SIZE);
  if (!author_sig)
    return 1;
  for (int i = 0; i < n; i++)
    if (key_sign(authors[i % AUTHORS], &entries[i].id, author_sig[i]) != 0)
      return 1;
  c0 = cpu();
  for (int i = 0; i < n; i++)
    if (key_verify(author_pub[i % AUTHORS], &entries[i].id, author_sig[i]) != 0) {
      fprintf(stderr, "key_verify (uncached authors) failed\n");
      return 1;
    }
  double oneoff_cpu = cpu() - c0;
  for (int a = 0; a < AUTHORS; a++)
    key_free(authors[a]);
  free(author_sig);

  /* Decode + verify as on arrival, one thread (cached author tables). */
  uint8_t buf[ENTRY_MAX_SIZE];
  size_t bytes = 0;
  for (int i = 0; i < n; i++)
    bytes += (size_t)entry_encode(&entries[i], buf, sizeof buf);
  t0 = now(), c0 = cpu();
  for (int i = 0; i < n; i++) {
    struct entry d;
    int len = entry_encode(&entries[i], buf, sizeof buf);
    if (entry_decode(buf, (size_t)len, &d) != 0 || entry_verify(&d) != 0) {
      fprintf(stderr, "verify failed\n");
      return 1;
    }
  }
  double serial_s = now() - t0, serial_cpu = cpu() - c0;

  double pool_s[3] = {0}, pool_cpu[3] = {0};
  for (int t = 1; t <= 2; t++) {
    t0 = now(), c0 = cpu();
    int ok = verify_entries(ptrs, (size_t)n, results, t);
    pool_s[t] = now() - t0, pool_cpu[t] = cpu() - c0;
    if (ok != n) {
      fprintf(stderr, "verify_entries: %d of %d\n", ok, n);
      return 1;
    }
  }

  /* Small batches: the per-call cost of starting helpers with cold tables. */
  int batch = 32, rounds = n / batch;
  double small_s[3] = {0};
  for (int t = 1; t <= 2; t++) {
    t0 = now();
    for (int r = 0; r < rounds; r++)
      verify_entries(ptrs + r * batch, (size_t)batch, results, t);
    small_s[t] = now() - t0;
  }

  /* Decoding alone. */
  int len = entry_encode(&entries[0], buf, sizeof buf);
  int reps = n * 100;
  t0 = now();
  for (int i = 0; i < reps; i++) {
    struct entry d;
    if (entry_decode(buf, (size_t)len, &d) != 0)
      return 1;
  }
  double decode_s = now() - t0;

  double load[3] = {0};
  FILE *la = fopen("/proc/loadavg", "r");
  if (la) {
    if (fscanf(la, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
      load[0] = -1;
    fclose(la);
  }
  printf("entries: %d typical config writes (%zu bytes of content on average); load average %.2f\n", n,
         (size_t)(bytes / (size_t)n) - (size_t)(len - entries[0].content_len), load[0]);
  printf("                         entries/s   ms each (wall)   ms each (cpu)   anchor\n");
  printf("sign                     %9.0f   %8.3f         %8.3f        0.38 ms (x%.2f of anchor speed, cpu)\n",
         n / sign_s, sign_s * 1e3 / n, sign_cpu * 1e3 / n, 0.38 / (sign_cpu * 1e3 / n));
  printf("sign, warm nonce pool    %9.0f   %8.3f         %8.3f        x%.0f of sign (cpu), x%.0f (wall); %llu of %d from the pool\n",
         n / presign_s, presign_s * 1e3 / n, presign_cpu * 1e3 / n, sign_cpu / presign_cpu, sign_s / presign_s,
         (unsigned long long)(ps1.taken - ps0.taken), n);
  printf("  nonce precomputation (background thread): %.3f ms cpu each, %.0f nonces/s of refill\n",
         fill_cpu * 1e3 / n, n / fill_cpu);
  printf("RFC 6979 signature alone (cpu): key_sign %.3f ms (%.0f/s), mbedtls_ecdsa_sign_det_ext %.3f ms (%.0f/s): x%.2f\n",
         det_ours * 1e3, 1 / det_ours, det_mbed * 1e3, 1 / det_mbed, det_mbed / det_ours);
  printf("verify, plain mbedTLS    %9.0f   %8.3f         %8.3f        1.1 ms (x%.2f, cpu)\n", n / plain_s,
         plain_s * 1e3 / n, plain_cpu * 1e3 / n, 1.1 / (plain_cpu * 1e3 / n));
  printf("verify, %d authors in turn (uncached)      %8.3f        x%.2f of plain (cpu)\n", AUTHORS,
         oneoff_cpu * 1e3 / n, plain_cpu / oneoff_cpu);
  printf("decode+verify, 1 thread  %9.0f   %8.3f         %8.3f        x%.2f of plain (cpu)\n", n / serial_s,
         serial_s * 1e3 / n, serial_cpu * 1e3 / n, plain_cpu / serial_cpu);
  printf("verify pool, 1 thread    %9.0f   (cpu %.3f ms each)\n", n / pool_s[1], pool_cpu[1] * 1e3 / n);
  printf("verify pool, 2 threads   %9.0f   (cpu %.3f ms each)  speed-up x%.2f over 1 thread (wall)\n",
         n / pool_s[2], pool_cpu[2] * 1e3 / n, pool_s[1] / pool_s[2]);
  printf("batches of %d: 1 thread %.0f entries/s, 2 threads %.0f entries/s (x%.2f)\n", batch,
         rounds * batch / small_s[1], rounds * batch / small_s[2], small_s[1] / small_s[2]);
  printf("decode only              %9.0f\n", reps / decode_s);

  printf("encoded size (bytes; limit %d):\n", ENTRY_MAX_SIZE);
  struct entry e;
  typical(&e, 1);
  printf("  write, create, %3u B inline   %4d\n", e.content_len, size_of(&e, k));
  memset(&e, 0, sizeof e);
  e.action = ENTRY_MKDIR;
  e.mode = 0755;
  e.mtime_ns = 1763700000000000000ull;
  memset(e.dir.bytes, 1, HASH_SIZE);
  e.name_len = 3;
  memcpy(e.name, "etc", 4);
  printf("  mkdir                          %4d\n", size_of(&e, k));
  memset(&e, 0, sizeof e);
  e.action = ENTRY_WRITE;
  e.mtime_ns = 1763700000000000000ull;
  e.mode = 0644;
  memset(e.parent.bytes, 2, HASH_SIZE);
  e.content_kind = ENTRY_CONTENT_BLOCKS;
  e.content_len = 4 * HASH_SIZE;
  e.size = 256 * 1024;
  printf("  write, update, 4 blocks        %4d\n", size_of(&e, k));
  memset(&e, 0, sizeof e);
  e.action = ENTRY_DELETE;
  e.mtime_ns = 1763700000000000000ull;
  memset(e.parent.bytes, 3, HASH_SIZE);
  printf("  delete                         %4d\n", size_of(&e, k));
  memset(&e, 0, sizeof e);
  e.action = ENTRY_GRANT;
  e.mtime_ns = 1763700000000000000ull;
  memset(e.dir.bytes, 4, HASH_SIZE);
  e.content_kind = ENTRY_CONTENT_INLINE;
  e.content_len = KEY_PUBLIC_SIZE;
  key_public(k, e.content);
  e.name_len = 5;
  memcpy(e.name, "alice", 6);
  printf("  grant                          %4d\n", size_of(&e, k));
  printf("  fixed cost: public key %d + signature %d\n", KEY_PUBLIC_SIZE, KEY_SIGNATURE_SIZE);

  key_free(k);
  free(entries);
  free(ptrs);
  free(results);
  return 0;
}
