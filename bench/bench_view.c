/*
 * The view's speed: entries applied per second (a tree of directories,
 * files and updates, one key), the Merkle root after a batch, checkpoint
 * save, and checkpoint open time at 10k and 100k entries (the issue asks
 * for < 1 s at 100k). Entries are sealed without signatures (the view never
 * verifies). Anchor: one SHA-256 of an entry-sized buffer per entry, the
 * floor for anything that identifies entries.
 *
 *   bench_view [N...]        default: 10000 100000
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/entry.h"
#include "store/key.h"
#include "store/view.h"
#include "bench/bench_util.h"

static uint8_t PUB[KEY_PUBLIC_SIZE];
static uint64_t clk = 1700000000000000000ull;

static int seal(struct entry *e)
{
  memcpy(e->pubkey, PUB, KEY_PUBLIC_SIZE);
  e->mtime_ns = clk += 1000;
  uint8_t buf[ENTRY_MAX_SIZE];
  int n = entry_encode(e, buf, sizeof buf);
  if (n < 0)
    return n;
  return entry_decode(buf, (size_t)n, e);
}

static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void)
{
  rs ^= rs << 13;
  rs ^= rs >> 7;
  rs ^= rs << 17;
  return rs;
}

/* N entries: about 5% directories, 45% new files, 50% updates. */
static struct entry *generate(size_t n, struct entry *root)
{
  struct entry *es = calloc(n, sizeof *es);
  hash_t *dirs = malloc((n + 1) * sizeof *dirs), *heads = malloc((n + 1) * sizeof *heads);
  if (!es || !dirs || !heads)
    exit(1);
  size_t nd = 0, nf = 0, f = 0;
  root->action = ENTRY_MKDIR;
  root->mode = 0755;
  if (seal(root) < 0)
    exit(1);
  dirs[nd++] = root->id;
  for (size_t i = 0; i < n; i++) {
    struct entry *e = &es[i];
    uint64_t r = rnd() % 100;
    if (r < 5) {
      e->action = ENTRY_MKDIR;
      e->dir = dirs[rnd() % nd];
      e->mode = 0755;
      e->name_len = (uint8_t)snprintf(e->name, sizeof e->name, "d%zu", i);
    } else if (r < 50 || nf == 0) {
      e->action = ENTRY_WRITE;
      e->dir = dirs[rnd() % nd];
      e->mode = 0644;
      e->name_len = (uint8_t)snprintf(e->name, sizeof e->name, "f%zu.conf", i);
    } else {
      e->action = ENTRY_WRITE;
      f = rnd() % nf;
      e->parent = heads[f];
      e->mode = 0644;
    }
    if (e->action == ENTRY_WRITE) {
      e->content_kind = ENTRY_CONTENT_INLINE;
      e->content_len = (uint16_t)(40 + rnd() % 200);
      e->size = e->content_len;
      for (int j = 0; j < e->content_len; j++)
        e->content[j] = (uint8_t)('a' + rnd() % 26);
    }
    if (seal(e) < 0) {
      fprintf(stderr, "seal failed\n");
      exit(1);
    }
    if (e->action == ENTRY_MKDIR)
      dirs[nd++] = e->id;
    else if (hash_is_zero(&e->parent))
      heads[nf++] = e->id;
    else
      heads[f] = e->id;
  }
  free(dirs);
  free(heads);
  return es;
}

static void run(size_t n)
{
  struct entry root = {0};
  struct entry *es = generate(n, &root);
  /* Anchor: hashing each entry once. */
  double t0 = bench_now();
  hash_t h;
  for (size_t i = 0; i < n; i++)
    hash_buf(&es[i], 300, &h);
  double t_anchor = bench_now() - t0;

  struct view *v;
  if (view_create(&root, &v) < 0)
    exit(1);
  t0 = bench_now();
  for (size_t i = 0; i < n; i++) {
    int rc = view_apply(v, &es[i]);
    if (rc != VIEW_APPLIED) {
      fprintf(stderr, "entry %zu: %d\n", i, rc);
      exit(1);
    }
  }
  double t_apply = bench_now() - t0;
  t0 = bench_now();
  hash_t r1;
  view_merkle_root(v, &r1);
  double t_root = bench_now() - t0;
  t0 = bench_now();
  view_merkle_root(v, &r1);
  double t_root2 = bench_now() - t0;

  char path[] = "/tmp/bench_view.XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0)
    exit(1);
  close(fd);
  t0 = bench_now();
  if (view_checkpoint_save(v, path, 42) < 0)
    exit(1);
  double t_save = bench_now() - t0;
  struct view *w;
  uint64_t off;
  t0 = bench_now();
  double c0 = bench_cpu();
  int rc = view_checkpoint_load(path, &w, &off);
  double t_load = bench_now() - t0, c_load = bench_cpu() - c0;
  if (rc < 0) {
    fprintf(stderr, "load: %d\n", rc);
    exit(1);
  }
  hash_t r2;
  view_merkle_root(w, &r2);
  double t_load_root = bench_now() - t0;
  unlink(path);
  printf("entries %zu: apply %.3f s (%.0f entries/s, %.2f us each; anchor sha256/entry %.2f us, "
         "ratio %.1fx)\n",
         n, t_apply, (double)n / t_apply, t_apply * 1e6 / (double)n, t_anchor * 1e6 / (double)n,
         t_apply / t_anchor);
  printf("  merkle root after the batch %.1f ms, again %.3f us\n", t_root * 1e3, t_root2 * 1e6);
  printf("  checkpoint save %.1f ms; open %.1f ms wall, %.1f ms cpu (%.1f ms wall with the Merkle "
         "root) — %s\n",
         t_save * 1e3, t_load * 1e3, c_load * 1e3, t_load_root * 1e3,
         hash_eq(&r1, &r2) ? "same root" : "ROOT DIFFERS");
  view_free(v);
  view_free(w);
  free(es);
}

int main(int argc, char **argv)
{
  struct key *k;
  if (key_generate(&k) < 0)
    return 1;
  key_public(k, PUB);
  key_free(k);
  if (argc > 1) {
    for (int i = 1; i < argc; i++)
      run((size_t)strtoull(argv[i], NULL, 10));
  } else {
    run(10000);
    run(100000);
  }
  return 0;
}
