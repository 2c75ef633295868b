/*
 * What every benchmark measures with: wall and CPU clocks, and the median
 * of a few rounds (header-only: each bench is one program).
 */
#ifndef BASEFS_BENCH_UTIL_H
#define BASEFS_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

/* Monotonic wall clock, seconds. */
static inline double bench_now(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* CPU seconds used by this process so far (every thread). */
static inline double bench_cpu(void)
{
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The median of V[0..N) (N > 0); sorts V. */
static inline double bench_median(double *v, int n)
{
  qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#endif
