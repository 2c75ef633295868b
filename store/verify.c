#include "store/verify.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#define MIN_PER_THREAD 8

struct verify_job {
  struct entry *const *entries;
  int *results;
  size_t n;
  atomic_size_t next; /* the next entry nobody has taken */
};

/* Takes entries one at a time: each costs ~1 ms, so handing out single
 * entries balances the threads without measurable contention. */
static void verify_work(struct verify_job *job)
{
  for (;;) {
    size_t i = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed);
    if (i >= job->n)
      return;
    job->results[i] = entry_verify(job->entries[i]);
  }
}

static void *verify_thread(void *arg)
{
  verify_work(arg);
  return NULL;
}

int verify_entries(struct entry *const *entries, size_t n, int *results, int threads)
{
  if (n > 0 && (!entries || !results))
    return -EINVAL;
  if (threads <= 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    threads = cpus > 0 ? (int)cpus : 1;
  }
  if (threads > VERIFY_MAX_THREADS)
    threads = VERIFY_MAX_THREADS;
  /* A helper thread starts with cold curve tables (its first few verifies
   * cost 2-3 ms more): give each thread at least MIN_PER_THREAD entries. */
  if ((size_t)threads > n / MIN_PER_THREAD)
    threads = n / MIN_PER_THREAD > 0 ? (int)(n / MIN_PER_THREAD) : 1;

  struct verify_job job = {entries, results, n, 0};
  pthread_t helpers[VERIFY_MAX_THREADS];
  int started = 0;
  for (int i = 1; i < threads; i++) {
    /* A helper that cannot start leaves its share to the others. */
    if (pthread_create(&helpers[started], NULL, verify_thread, &job) == 0)
      started++;
  }
  verify_work(&job);
  for (int i = 0; i < started; i++)
    pthread_join(helpers[i], NULL);

  int ok = 0;
  for (size_t i = 0; i < n; i++)
    ok += results[i] == 0;
  return ok;
}
