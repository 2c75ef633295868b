/* XDR primitives; see xdr.h. */
#include "xdr/xdr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/error.h"

static inline size_t pad4(size_t n) { return (4 - (n & 3)) & 3; }

int xdr_dec_u32(struct xdr_dec *d, uint32_t *v)
{
  if (xdr_dec_left(d) < 4)
    return -BFS_EFORMAT;
  const uint8_t *p = d->buf + d->pos;
  *v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
  d->pos += 4;
  return 0;
}

int xdr_dec_i32(struct xdr_dec *d, int32_t *v)
{
  uint32_t u;
  int rc = xdr_dec_u32(d, &u);
  if (rc == 0)
    *v = (int32_t)u;
  return rc;
}

int xdr_dec_u64(struct xdr_dec *d, uint64_t *v)
{
  uint32_t hi, lo;
  if (xdr_dec_left(d) < 8)
    return -BFS_EFORMAT;
  xdr_dec_u32(d, &hi);
  xdr_dec_u32(d, &lo);
  *v = (uint64_t)hi << 32 | lo;
  return 0;
}

int xdr_dec_bool(struct xdr_dec *d, bool *v)
{
  uint32_t u;
  int rc = xdr_dec_u32(d, &u);
  if (rc < 0)
    return rc;
  if (u > 1)
    return -BFS_EFORMAT;
  *v = u == 1;
  return 0;
}

int xdr_dec_enum(struct xdr_dec *d, uint32_t max, uint32_t *v)
{
  uint32_t u;
  int rc = xdr_dec_u32(d, &u);
  if (rc < 0)
    return rc;
  if (u > max)
    return -BFS_EFORMAT;
  *v = u;
  return 0;
}

int xdr_dec_fixed(struct xdr_dec *d, void *out, size_t n)
{
  size_t total = n + pad4(n);
  if (total < n || xdr_dec_left(d) < total)
    return -BFS_EFORMAT;
  memcpy(out, d->buf + d->pos, n);
  d->pos += total;
  return 0;
}

int xdr_dec_bytes(struct xdr_dec *d, uint32_t max, struct xdr_bytes *out)
{
  uint32_t n;
  size_t save = d->pos;
  if (xdr_dec_u32(d, &n) < 0)
    return -BFS_EFORMAT;
  /* Compare in size_t: n + padding must not wrap on 32-bit hosts. */
  size_t total = (size_t)n + pad4(n);
  if (n > max || xdr_dec_left(d) < total) {
    d->pos = save;
    return -BFS_EFORMAT;
  }
  out->data = d->buf + d->pos;
  out->len = n;
  d->pos += total;
  return 0;
}

int xdr_dec_bytes_copy(struct xdr_dec *d, uint32_t max, void *out, uint32_t *len)
{
  struct xdr_bytes b;
  int rc = xdr_dec_bytes(d, max, &b);
  if (rc < 0)
    return rc;
  if (b.len)
    memcpy(out, b.data, b.len);
  *len = b.len;
  return 0;
}

int xdr_dec_done(const struct xdr_dec *d)
{
  return d->pos == d->len ? 0 : -BFS_EFORMAT;
}

void xdr_enc_init(struct xdr_enc *e, size_t cap)
{
  e->buf = NULL;
  e->len = 0;
  e->alloc = 0;
  e->cap = cap;
  e->err = 0;
}

void xdr_enc_free(struct xdr_enc *e)
{
  free(e->buf);
  e->buf = NULL;
  e->len = e->alloc = 0;
}

uint8_t *xdr_enc_take(struct xdr_enc *e, size_t *len)
{
  uint8_t *b = e->buf;
  *len = e->len;
  e->buf = NULL;
  e->len = e->alloc = 0;
  return b;
}

/* Makes room for n more bytes; returns where they go, or NULL (sticky). */
uint8_t *xdr_enc_reserve(struct xdr_enc *e, size_t n)
{
  if (e->err)
    return NULL;
  if (n > e->cap || e->len > e->cap - n) {
    e->err = -BFS_ETOOBIG;
    return NULL;
  }
  size_t need = e->len + n;
  if (need > e->alloc) {
    size_t a = e->alloc ? e->alloc : 256;
    while (a < need)
      a = a > SIZE_MAX / 2 ? need : a * 2;
    if (a > e->cap)
      a = e->cap;
    uint8_t *nb = realloc(e->buf, a);
    if (!nb) {
      e->err = -ENOMEM;
      return NULL;
    }
    e->buf = nb;
    e->alloc = a;
  }
  uint8_t *p = e->buf + e->len;
  e->len = need;
  return p;
}

void xdr_enc_u32(struct xdr_enc *e, uint32_t v)
{
  uint8_t *p = xdr_enc_reserve(e, 4);
  if (!p)
    return;
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

void xdr_enc_u64(struct xdr_enc *e, uint64_t v)
{
  xdr_enc_u32(e, (uint32_t)(v >> 32));
  xdr_enc_u32(e, (uint32_t)v);
}

void xdr_enc_fixed(struct xdr_enc *e, const void *src, size_t n)
{
  size_t pad = pad4(n);
  uint8_t *p = xdr_enc_reserve(e, n + pad);
  if (!p)
    return;
  if (n)
    memcpy(p, src, n);
  memset(p + n, 0, pad);
}

uint8_t *xdr_enc_bytes_reserve(struct xdr_enc *e, uint32_t n)
{
  /* One reservation for the length and the data, so a reply that does not
   * fit leaves no dangling length word behind. */
  size_t pad = pad4(n);
  uint8_t *p = xdr_enc_reserve(e, 4 + (size_t)n + pad);
  if (!p)
    return NULL;
  p[0] = n >> 24;
  p[1] = n >> 16;
  p[2] = n >> 8;
  p[3] = n;
  memset(p + 4 + n, 0, pad);
  return p + 4;
}

void xdr_enc_bytes(struct xdr_enc *e, const void *src, uint32_t n)
{
  uint8_t *p = xdr_enc_bytes_reserve(e, n);
  if (p && n)
    memcpy(p, src, n);
}

void xdr_enc_str(struct xdr_enc *e, const char *s)
{
  size_t n = strlen(s);
  if (n > UINT32_MAX) {
    if (!e->err)
      e->err = -BFS_ETOOBIG;
    return;
  }
  xdr_enc_bytes(e, s, (uint32_t)n);
}

void xdr_enc_truncate(struct xdr_enc *e, size_t pos)
{
  if (pos <= e->len)
    e->len = pos;
}

void xdr_enc_patch_u32(struct xdr_enc *e, size_t pos, uint32_t v)
{
  if (e->err || pos > e->len || e->len - pos < 4)
    return;
  uint8_t *p = e->buf + pos;
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}
