/*
 * Parallel signing of a batch of local entries.
 *
 * ECDSA signing is the expensive step of writing (about 0.4 ms per P-256
 * signature here, ~95% of an import's CPU). An entry's id never covers its
 * signature (store/entry.h), so a batch whose entries refer to each other's
 * ids can be built and prepared first (entry_prepare()) and signed
 * afterwards on every core: key_sign() takes no lock. As in verify_entries(),
 * the calling thread works too and THREADS - 1 helper threads live only for
 * the call; each thread gets at least 8 entries (a helper starts with a cold
 * base-point table), so small batches stay on the caller.
 */
#ifndef BASEFS_STORE_SIGN_H
#define BASEFS_STORE_SIGN_H

#include <stddef.h>

#include "store/entry.h"
#include "store/key.h"

/* At most this many threads per call, whatever THREADS asks for. */
#define SIGN_MAX_THREADS 64

/*
 * Signs ENTRIES[0..N) with KEY on THREADS threads (<= 0: one per online CPU):
 * each entry, whose other fields are set, gets its pubkey, id and signature,
 * exactly as entry_sign() would give them: the same ids always, the same
 * signatures unless the process runs a nonce pool (key_presign_start(),
 * store/key.h), whose signatures are randomized.
 * Returns 0, the error of the lowest-indexed entry that could not be signed
 * (entry_sign()'s errors), or -EINVAL for a NULL array with N > 0 or a NULL
 * key. On error the other entries may be signed or not.
 */
int sign_entries(struct entry *const *entries, size_t n, const struct key *key, int threads);

#endif
