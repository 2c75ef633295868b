/*
 * What the NFS server itself spends per metadata call, in-process: the
 * dispatcher (RPC decode, procedure, reply encode) driven directly, no
 * socket, no thread switch. The anchor is NULL (the RPC layer alone); each
 * row's ratio is its cost over that. Set beside bench_nfs's server CPU per
 * operation (nfs-vs-ganesha.sh), it tells what a call costs in our code
 * and what it costs in the kernel (TCP over loopback, wake-ups).
 *
 *   bench_procs [-n CALLS] [-r ROUNDS] [-f FILES]
 *
 * A fresh filesystem in a temporary directory: one directory of FILES
 * (default 1000) empty files; each figure is the best of ROUNDS (default
 * 5) passes of CALLS (default 200000) calls, cycling over the files.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server/nfs3.h"
#include "server/rpc.h"
#include "store/error.h"
#include "store/fs.h"
#include "store/key.h"
#include "xdr/nfs3.h"
#include "xdr/oncrpc.h"
#include "bench/bench_util.h"

static struct rpcsrv *rpc;
static struct rpcsrv_peer peer;
static uint32_t xid = 1;

/* A call of PROC with root's AUTH_SYS, arguments to be appended. */
static void call_begin(struct xdr_enc *a, uint32_t proc)
{
  static const struct oncrpc_auth_sys root = {.uid = 0, .gid = 0};
  xdr_enc_init(a, 4096);
  oncrpc_enc_call(a, xid++, NFS3_PROGRAM, 3, proc, &root);
}

/* Dispatches A; the reply's nfsstat3 (the decoder left after it). */
static uint32_t call(const struct xdr_enc *a, struct xdr_enc *out, struct xdr_dec *dec)
{
  xdr_enc_truncate(out, 0);
  if (rpcsrv_dispatch(rpc, a->buf, a->len, &peer, out) != 1)
    return UINT32_MAX;
  xdr_dec_init(dec, out->buf, out->len);
  struct oncrpc_reply rep;
  uint32_t st = UINT32_MAX;
  if (oncrpc_dec_reply(dec, &rep) < 0 || rep.accept_stat != ONCRPC_SUCCESS || xdr_dec_u32(dec, &st) < 0)
    return UINT32_MAX;
  return st;
}

/* sattr3 setting only the mode. */
static void enc_mode(struct xdr_enc *a, uint32_t mode)
{
  xdr_enc_bool(a, true);
  xdr_enc_u32(a, mode);
  for (int i = 0; i < 3; i++) /* uid, gid, size */
    xdr_enc_bool(a, false);
  xdr_enc_u32(a, 0); /* atime, mtime: don't change */
  xdr_enc_u32(a, 0);
}

static int die(const char *what, int r)
{
  fprintf(stderr, "bench_procs: %s: %s\n", what, r < 0 ? bfs_strerror(r) : "unexpected reply");
  exit(1);
}

/* Best seconds per call over ROUNDS passes of N calls cycling over CALLS. */
static double best_per_call(struct xdr_enc *calls, int ncalls, long n, int rounds, struct xdr_enc *out)
{
  double best = 1e9;
  struct xdr_dec dec;
  for (int r = 0; r < rounds; r++) {
    double t0 = bench_now();
    for (long i = 0; i < n; i++)
      if (call(&calls[i % ncalls], out, &dec) != 0)
        die("call", 0);
    double t = (bench_now() - t0) / (double)n;
    if (t < best)
      best = t;
  }
  return best;
}

int main(int argc, char **argv)
{
  long n = 200000;
  int rounds = 5, files = 1000, c;
  while ((c = getopt(argc, argv, "n:r:f:")) != -1) {
    if (c == 'n')
      n = atol(optarg);
    else if (c == 'r')
      rounds = atoi(optarg);
    else if (c == 'f')
      files = atoi(optarg);
    else
      return fprintf(stderr, "usage: bench_procs [-n CALLS] [-r ROUNDS] [-f FILES]\n"), 2;
  }
  if (n < 1 || rounds < 1 || files < 1 || files > 100000)
    return fprintf(stderr, "bench_procs: -n, -r and -f must be positive (-f at most 100000)\n"), 2;
  char dir[] = "/tmp/bench_procs.XXXXXX";
  if (!mkdtemp(dir))
    return perror("mkdtemp"), 1;
  struct key *k = NULL;
  struct fs *fs = NULL;
  struct nfsd *d = NULL;
  int r;
  if ((r = key_generate(&k)) < 0 || (r = fs_create(dir, "t", k, NULL, 0, &fs)) < 0 ||
      (r = nfsd_new(fs, k, NULL, NULL, &d)) < 0 || (r = rpcsrv_new(&rpc)) < 0 ||
      (r = nfsd_register(rpc, d)) < 0)
    die("setup", r);
  uint8_t root[64], dfh[64], ffh[64];
  uint32_t root_len, dlen = 0, flen = 0;
  nfsd_root_fh(d, root, &root_len);
  peer.stream = true;
  struct sockaddr_in *sin = (struct sockaddr_in *)&peer.addr;
  sin->sin_family = AF_INET;
  sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  peer.addrlen = sizeof *sin;

  struct xdr_enc a, out;
  struct xdr_dec dec;
  xdr_enc_init(&out, RPCSRV_REPLY_MAX + 1024);
  call_begin(&a, NFS3_PROC_MKDIR);
  xdr_enc_bytes(&a, root, root_len);
  xdr_enc_str(&a, "d");
  enc_mode(&a, 0755);
  if (call(&a, &out, &dec) != 0 || xdr_dec_bool(&dec, &(bool){0}) < 0 || xdr_dec_bytes_copy(&dec, 64, dfh, &dlen) < 0)
    die("mkdir", 0);
  xdr_enc_free(&a);
  /* The files, and a LOOKUP of each (what the LOOKUP row repeats). */
  struct xdr_enc *lookups = calloc((size_t)files, sizeof *lookups);
  if (!lookups)
    die("setup", -ENOMEM);
  for (int i = 0; i < files; i++) {
    char name[32];
    snprintf(name, sizeof name, "f%d", i);
    call_begin(&a, NFS3_PROC_CREATE);
    xdr_enc_bytes(&a, dfh, dlen);
    xdr_enc_str(&a, name);
    xdr_enc_u32(&a, 0); /* UNCHECKED */
    enc_mode(&a, 0644);
    if (call(&a, &out, &dec) != 0)
      die("create", 0);
    xdr_enc_free(&a);
    call_begin(&lookups[i], NFS3_PROC_LOOKUP);
    xdr_enc_bytes(&lookups[i], dfh, dlen);
    xdr_enc_str(&lookups[i], name);
  }
  if (call(&lookups[0], &out, &dec) != 0 || xdr_dec_bytes_copy(&dec, 64, ffh, &flen) < 0)
    die("lookup", 0);
  struct xdr_enc null, getattr, access;
  call_begin(&null, NFS3_PROC_NULL);
  call_begin(&getattr, NFS3_PROC_GETATTR);
  xdr_enc_bytes(&getattr, ffh, flen);
  call_begin(&access, NFS3_PROC_ACCESS);
  xdr_enc_bytes(&access, ffh, flen);
  xdr_enc_u32(&access, 0x3f);

  printf("bench_procs: %ld calls x %d rounds (best), %d files in one directory\n", n, rounds, files);
  /* NULL's reply has no status: time it apart. */
  double tnull = 1e9;
  for (int rr = 0; rr < rounds; rr++) {
    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
      xdr_enc_truncate(&out, 0);
      if (rpcsrv_dispatch(rpc, null.buf, null.len, &peer, &out) != 1)
        die("null", 0);
    }
    double t = (bench_now() - t0) / (double)n;
    if (t < tnull)
      tnull = t;
  }
  printf("%-12s %8.3f us/call  (anchor)\n", "NULL", tnull * 1e6);
  struct {
    const char *name;
    struct xdr_enc *calls;
    int ncalls;
  } rows[] = {{"GETATTR", &getattr, 1}, {"ACCESS", &access, 1}, {"LOOKUP", lookups, files}};
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    double t = best_per_call(rows[i].calls, rows[i].ncalls, n, rounds, &out);
    printf("%-12s %8.3f us/call  %5.1fx NULL\n", rows[i].name, t * 1e6, t / tnull);
  }
  xdr_enc_free(&null);
  xdr_enc_free(&getattr);
  xdr_enc_free(&access);
  for (int i = 0; i < files; i++)
    xdr_enc_free(&lookups[i]);
  free(lookups);
  xdr_enc_free(&out);
  nfsd_seal_all(d);
  nfsd_free(d);
  rpcsrv_free(rpc);
  fs_close(fs);
  key_free(k);
  char cmd[64];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  return system(cmd) == 0 ? 0 : 1;
}
