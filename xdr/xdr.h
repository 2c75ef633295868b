/*
 * XDR (RFC 4506) primitives: a bounds-checked decoder over untrusted bytes
 * and a growable encoder with a hard size cap.
 *
 * Why hand-written and not rpcgen: rpcgen's C (libtirpc's xdr_*) allocates
 * every variable-length field, copies WRITE payloads, frees through
 * xdr_free() and reports errors as a bare FALSE. What we need at the edge
 * is the opposite: decode once into checked structs on the stack, let
 * opaque data and strings point into the received record (a 1 MiB WRITE is
 * never copied), enforce every bound of the RFCs, and make the decoder a
 * pure function of (bytes) that libFuzzer can hammer. The per-protocol
 * definitions in xdr/oncrpc.h, xdr/nfs3.h, xdr/mount3.h and xdr/pmap2.h are
 * written from the RFC text, one C type per XDR type, in RFC order.
 *
 * Names: libtirpc (linked into the tests) exports xdr_int, xdr_opaque,
 * xdr_string, ... and an executable's symbol of the same name would
 * interpose on the library's own calls. So nothing here is named xdr_<type>:
 * decoding is xdr_dec_*, encoding xdr_enc_*.
 *
 * Errors: decoders return 0 or -BFS_EFORMAT (truncated input, a length
 * over its bound, a bool that is not 0/1, an enum out of range). The
 * encoder is sticky: the first failure (-BFS_ETOOBIG past the cap, -ENOMEM)
 * is remembered in enc->err, later calls do nothing, and xdr_enc_error()
 * is checked once at the end.
 */
#ifndef BASEFS_XDR_XDR_H
#define BASEFS_XDR_XDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A cursor over untrusted bytes. The bytes are not owned and must outlive
 * every pointer a decoder hands out (opaque data and strings point into
 * them). */
struct xdr_dec {
  const uint8_t *buf;
  size_t len;
  size_t pos;
};

/* A string or variable-length opaque, zero-copy: points into the decoded
 * record, NOT NUL-terminated, may contain any byte (callers that need a C
 * string validate and copy). */
struct xdr_bytes {
  const uint8_t *data;
  uint32_t len;
};

static inline void xdr_dec_init(struct xdr_dec *d, const void *buf, size_t len)
{
  d->buf = buf;
  d->len = len;
  d->pos = 0;
}

static inline size_t xdr_dec_left(const struct xdr_dec *d) { return d->len - d->pos; }

int xdr_dec_u32(struct xdr_dec *d, uint32_t *v);
int xdr_dec_i32(struct xdr_dec *d, int32_t *v);
int xdr_dec_u64(struct xdr_dec *d, uint64_t *v);
/* Strict: only 0 and 1 are booleans. */
int xdr_dec_bool(struct xdr_dec *d, bool *v);
/* An enum whose valid values are 0..max inclusive. */
int xdr_dec_enum(struct xdr_dec *d, uint32_t max, uint32_t *v);
/* opaque[n]: n bytes plus padding to a multiple of 4, copied into out. */
int xdr_dec_fixed(struct xdr_dec *d, void *out, size_t n);
/* opaque<max> / string<max>: length, bytes, padding; zero-copy. Padding
 * bytes are not checked to be zero (RFC 4506 says they are, but real
 * clients have sent garbage there and no server rejects it). */
int xdr_dec_bytes(struct xdr_dec *d, uint32_t max, struct xdr_bytes *out);
/* opaque<max> copied into out (capacity max); *len gets the length. */
int xdr_dec_bytes_copy(struct xdr_dec *d, uint32_t max, void *out, uint32_t *len);
/* 0 when every byte was consumed, -BFS_EFORMAT when bytes are left over. */
int xdr_dec_done(const struct xdr_dec *d);

/* The encoder. buf grows by doubling up to cap; the buffer belongs to the
 * encoder until xdr_enc_take(). */
struct xdr_enc {
  uint8_t *buf;
  size_t len;
  size_t alloc;
  size_t cap;
  int err;
};

/* Starts an empty encoder that will never grow past cap bytes. */
void xdr_enc_init(struct xdr_enc *e, size_t cap);
void xdr_enc_free(struct xdr_enc *e);
/* Hands the buffer to the caller (free() it); the encoder is left empty. */
uint8_t *xdr_enc_take(struct xdr_enc *e, size_t *len);
static inline int xdr_enc_error(const struct xdr_enc *e) { return e->err; }

void xdr_enc_u32(struct xdr_enc *e, uint32_t v);
void xdr_enc_u64(struct xdr_enc *e, uint64_t v);
static inline void xdr_enc_bool(struct xdr_enc *e, bool v) { xdr_enc_u32(e, v ? 1 : 0); }
void xdr_enc_fixed(struct xdr_enc *e, const void *p, size_t n);
/* Length, bytes, zero padding. */
void xdr_enc_bytes(struct xdr_enc *e, const void *p, uint32_t n);
void xdr_enc_str(struct xdr_enc *e, const char *s);
/* n writable bytes at the end, for callers that produce data in place
 * (e.g. READ reading straight into the reply); NULL after an error. The
 * caller pads: use xdr_enc_bytes_reserve() for an opaque<>. */
uint8_t *xdr_enc_reserve(struct xdr_enc *e, size_t n);
/* Writes the length word, reserves n bytes for the data and zeroes the
 * padding; returns where the data goes (NULL after an error). */
uint8_t *xdr_enc_bytes_reserve(struct xdr_enc *e, uint32_t n);
/* Drops everything after position pos (pos <= len): a handler that
 * failed half-way rewinds to where it started. Clears no error. */
void xdr_enc_truncate(struct xdr_enc *e, size_t pos);
/* Overwrites 4 bytes at pos (pos + 4 <= len), e.g. a record mark or a
 * length known only at the end. */
void xdr_enc_patch_u32(struct xdr_enc *e, size_t pos, uint32_t v);

#endif
