/*
 * Parallel verification of arriving entries.
 *
 * An entry is verified once, when it arrives (signature, and for GRANT the
 * granted key), and ECDSA verification is the expensive step (about 1 ms per
 * P-256 signature here), so a batch is spread over the cores. The calling
 * thread works too and keeps its cached curve tables (store/key.c); THREADS - 1
 * helper threads live only for the call, so nothing global is left running.
 * A helper starts with cold tables, so each thread gets at least 8 entries:
 * batches under 16 entries, or THREADS == 1, stay on the caller.
 */
#ifndef BASEFS_STORE_VERIFY_H
#define BASEFS_STORE_VERIFY_H

#include <stddef.h>

#include "store/entry.h"

/* At most this many threads per call, whatever THREADS asks for. */
#define VERIFY_MAX_THREADS 64

/*
 * Verifies ENTRIES[0..N) with entry_verify(), on THREADS threads (<= 0: one
 * per online CPU). RESULTS[i] receives entry_verify(ENTRIES[i]): 0 or a
 * negative error. Returns how many entries verified, or -EINVAL for NULL
 * arrays with N > 0. The results are the same as a serial loop's, whatever
 * THREADS is.
 */
int verify_entries(struct entry *const *entries, size_t n, int *results, int threads);

#endif
