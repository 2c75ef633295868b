#include "store/sign.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#define MIN_PER_THREAD 8

struct sign_job {
  struct entry *const *entries;
  size_t n;
  const struct key *key;
  uint8_t pub[KEY_PUBLIC_SIZE];
  atomic_size_t next;   /* the next entry nobody has taken */
  pthread_mutex_t lock; /* guards failed and error */
  size_t failed;        /* lowest index that failed, n if none */
  int error;            /* its error */
};

/* Takes entries one at a time: each costs ~0.4 ms, so handing out single
 * entries balances the threads without measurable contention. */
static void sign_work(struct sign_job *job)
{
  for (;;) {
    size_t i = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed);
    if (i >= job->n)
      return;
    struct entry *e = job->entries[i];
    int r = e ? entry_prepare(e, job->pub) : -EINVAL;
    if (r == 0)
      r = key_sign(job->key, &e->id, e->signature);
    if (r < 0) {
      pthread_mutex_lock(&job->lock);
      if (i < job->failed) {
        job->failed = i;
        job->error = r;
      }
      pthread_mutex_unlock(&job->lock);
    }
  }
}

static void *sign_thread(void *arg)
{
  sign_work(arg);
  return NULL;
}

int sign_entries(struct entry *const *entries, size_t n, const struct key *key, int threads)
{
  if ((n > 0 && !entries) || !key)
    return -EINVAL;
  if (threads <= 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    threads = cpus > 0 ? (cpus > INT_MAX ? INT_MAX : (int)cpus) : 1;
  }
  if (threads > SIGN_MAX_THREADS)
    threads = SIGN_MAX_THREADS;
  if ((size_t)threads > n / MIN_PER_THREAD)
    threads = n / MIN_PER_THREAD > 0 ? (int)(n / MIN_PER_THREAD) : 1;

  struct sign_job job = {.entries = entries, .n = n, .key = key, .failed = n};
  key_public(key, job.pub);
  atomic_init(&job.next, 0);
  pthread_mutex_init(&job.lock, NULL);
  pthread_t helpers[SIGN_MAX_THREADS];
  int started = 0;
  for (int i = 1; i < threads; i++) {
    /* A helper that cannot start leaves its share to the others. */
    if (pthread_create(&helpers[started], NULL, sign_thread, &job) == 0)
      started++;
  }
  sign_work(&job);
  for (int i = 0; i < started; i++)
    pthread_join(helpers[i], NULL);
  pthread_mutex_destroy(&job.lock);
  return job.failed < n ? job.error : 0;
}
