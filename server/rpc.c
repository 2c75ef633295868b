/* Record marking and the RPC dispatcher; see rpc.h. */
#include "server/rpc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/drc.h"
#include "store/error.h"

/* ---- record marking ---- */

#define RM_LAST 0x80000000u
#define RM_INITIAL (64 * 1024)
/* An idle connection gives back a buffer grown for a big record. */
#define RM_SHRINK (256 * 1024)

void rpcsrv_records_init(struct rpcsrv_records *r, size_t max_record)
{
  memset(r, 0, sizeof *r);
  r->max = max_record;
}

void rpcsrv_records_free(struct rpcsrv_records *r)
{
  free(r->buf);
  memset(r, 0, sizeof *r);
}

bool rpcsrv_records_partial(const struct rpcsrv_records *r)
{
  return r->fill > r->start || r->in_frag;
}

int rpcsrv_records_space(struct rpcsrv_records *r, uint8_t **p, size_t *n)
{
  if (r->start == r->fill && !r->in_frag && r->alloc > RM_SHRINK) {
    free(r->buf);
    r->buf = NULL;
    r->alloc = 0;
  }
  if (r->start == r->fill)
    r->start = r->end = r->raw = r->fill = 0;
  if (r->fill == r->alloc && (r->start > 0 || r->raw > r->end)) {
    /* Slide the unfinished record to the front and the unparsed bytes
     * right behind it, squeezing out the headers of its later fragments
     * (each left a 4-byte gap between end and raw). */
    size_t data = r->end - r->start, pending = r->fill - r->raw;
    memmove(r->buf, r->buf + r->start, data);
    memmove(r->buf + data, r->buf + r->raw, pending);
    r->start = 0;
    r->end = r->raw = data;
    r->fill = data + pending;
  }
  if (r->fill == r->alloc) {
    /* Once compacted, a full buffer holds one unfinished record (<= max)
     * and less than a fragment header, when the caller drained every
     * complete record first: growing past max + 8 is never needed. */
    size_t limit = r->max + 8;
    if (r->alloc >= limit)
      return -BFS_ETOOBIG;
    size_t a = r->alloc ? r->alloc * 2 : RM_INITIAL;
    if (a > limit)
      a = limit;
    uint8_t *nb = realloc(r->buf, a);
    if (!nb)
      return -ENOMEM;
    r->buf = nb;
    r->alloc = a;
  }
  *p = r->buf + r->fill;
  *n = r->alloc - r->fill;
  return 0;
}

void rpcsrv_records_commit(struct rpcsrv_records *r, size_t n)
{
  if (n <= r->alloc - r->fill)
    r->fill += n;
}

int rpcsrv_records_feed(struct rpcsrv_records *r, const uint8_t *p, size_t n)
{
  while (n > 0) {
    uint8_t *dst;
    size_t room;
    int rc = rpcsrv_records_space(r, &dst, &room);
    if (rc < 0)
      return rc;
    size_t k = n < room ? n : room;
    memcpy(dst, p, k);
    rpcsrv_records_commit(r, k);
    p += k;
    n -= k;
  }
  return 0;
}

int rpcsrv_records_next(struct rpcsrv_records *r, uint8_t **rec, size_t *len)
{
  for (;;) {
    if (!r->in_frag) {
      if (r->fill - r->raw < 4)
        return 0;
      const uint8_t *h = r->buf + r->raw;
      uint32_t mark = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
      uint32_t flen = mark & ~RM_LAST;
      if (flen > r->max || r->end - r->start > r->max - flen)
        return -BFS_ETOOBIG;
      r->raw += 4;
      if (r->start == r->end)
        r->start = r->end = r->raw; /* a first fragment: data stays in place */
      r->in_frag = true;
      r->last_frag = (mark & RM_LAST) != 0;
      r->frag_left = flen;
    }
    size_t k = r->fill - r->raw;
    if (k > r->frag_left)
      k = r->frag_left;
    if (k > 0 && r->raw != r->end)
      memmove(r->buf + r->end, r->buf + r->raw, k); /* close a later fragment's header gap */
    r->end += k;
    r->raw += k;
    r->frag_left -= (uint32_t)k;
    if (r->frag_left > 0)
      return 0;
    r->in_frag = false;
    if (r->last_frag) {
      *rec = r->buf + r->start;
      *len = r->end - r->start;
      r->start = r->end = r->raw;
      return 1;
    }
  }
}

/* ---- dispatcher ---- */

struct program {
  uint32_t prog;
  uint32_t vers;
  const struct rpcsrv_proc *procs;
  size_t nprocs;
  void *ctx;
};

/* Log lines of one kind (one rpcsrv_logf format string) in the current
 * one-second window. */
#define LOG_KINDS 16
#define LOG_LINE 256
struct log_kind {
  const char *fmt;    /* NULL: a free slot */
  uint64_t window_ns; /* CLOCK_MONOTONIC start of the window */
  unsigned count;     /* lines written in it */
  unsigned suppressed;
  char last[LOG_LINE]; /* the last line held back */
};

struct rpcsrv {
  struct program *progs;
  size_t nprogs;
  rpcsrv_log_fn log;
  void *log_ctx;
  const struct exports *exports;
  struct drc *drc;
  /* Addresses refused and logged already (a ring). */
  struct drc_key refused[RPCSRV_REFUSED_SEEN];
  unsigned nrefused;
  struct log_kind kinds[LOG_KINDS];
};

void rpcsrv_set_exports(struct rpcsrv *s, const struct exports *ex) { s->exports = ex; }
void rpcsrv_set_drc(struct rpcsrv *s, struct drc *drc) { s->drc = drc; }

/* True the first time (recently) ADDR is refused. */
static bool refusal_is_new(struct rpcsrv *s, const struct sockaddr *addr)
{
  struct drc_key k;
  struct oncrpc_call none = {0};
  drc_key_make(&k, addr, &none, NULL, 0); /* only the address part matters */
  unsigned n = s->nrefused < RPCSRV_REFUSED_SEEN ? s->nrefused : RPCSRV_REFUSED_SEEN;
  for (unsigned i = 0; i < n; i++)
    if (memcmp(&s->refused[i], &k, sizeof k) == 0)
      return false;
  s->refused[s->nrefused++ % RPCSRV_REFUSED_SEEN] = k;
  return true;
}

int rpcsrv_new(struct rpcsrv **out)
{
  *out = calloc(1, sizeof **out);
  return *out ? 0 : -ENOMEM;
}

void rpcsrv_free(struct rpcsrv *s)
{
  if (!s)
    return;
  free(s->progs);
  free(s);
}

void rpcsrv_set_log(struct rpcsrv *s, rpcsrv_log_fn fn, void *ctx)
{
  s->log = fn;
  s->log_ctx = ctx;
}

static uint64_t mono_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Says how many lines of kind K were held back, if any. */
static void kind_summary(struct rpcsrv *s, struct log_kind *k)
{
  if (!k->suppressed)
    return;
  char line[LOG_LINE + 96];
  snprintf(line, sizeof line, "(%u more like this suppressed within a second; the last: %s)",
           k->suppressed, k->last);
  k->suppressed = 0;
  s->log(s->log_ctx, line);
}

/* The kind of FMT: its slot, or a new one (the least recently started
 * window gives way, its count said first). */
static struct log_kind *kind_of(struct rpcsrv *s, const char *fmt)
{
  struct log_kind *oldest = &s->kinds[0];
  for (int i = 0; i < LOG_KINDS; i++) {
    struct log_kind *k = &s->kinds[i];
    if (k->fmt == fmt)
      return k;
    if (!k->fmt)
      return memset(k, 0, sizeof *k);
    if (k->window_ns < oldest->window_ns)
      oldest = k;
  }
  kind_summary(s, oldest);
  return memset(oldest, 0, sizeof *oldest);
}

void rpcsrv_logf(struct rpcsrv *s, const char *fmt, ...)
{
  if (!s->log)
    return;
  uint64_t now = mono_ns();
  struct log_kind *k = kind_of(s, fmt);
  if (!k->fmt || now - k->window_ns >= 1000000000ull) {
    kind_summary(s, k);
    k->fmt = fmt;
    k->window_ns = now;
    k->count = 0;
  }
  char line[LOG_LINE];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (k->count < RPCSRV_LOG_BURST) {
    k->count++;
    s->log(s->log_ctx, line);
  } else {
    k->suppressed++;
    memcpy(k->last, line, sizeof line);
  }
}

void rpcsrv_log_flush(struct rpcsrv *s)
{
  if (!s->log)
    return;
  uint64_t now = mono_ns();
  for (int i = 0; i < LOG_KINDS; i++)
    if (s->kinds[i].suppressed && now - s->kinds[i].window_ns >= 1000000000ull)
      kind_summary(s, &s->kinds[i]);
}

int rpcsrv_register(struct rpcsrv *s, uint32_t prog, uint32_t vers, const struct rpcsrv_proc *procs,
                    size_t nprocs, void *ctx)
{
  for (size_t i = 0; i < s->nprogs; i++)
    if (s->progs[i].prog == prog && s->progs[i].vers == vers)
      return -EEXIST;
  struct program *np = realloc(s->progs, (s->nprogs + 1) * sizeof *np);
  if (!np)
    return -ENOMEM;
  s->progs = np;
  s->progs[s->nprogs++] = (struct program){prog, vers, procs, nprocs, ctx};
  return 0;
}

/* Finds (prog, vers); when only the version is unknown, *known is set and
 * low/high give the range of versions registered for prog. */
static const struct program *find(const struct rpcsrv *s, uint32_t prog, uint32_t vers, bool *known,
                                  uint32_t *low, uint32_t *high)
{
  *known = false;
  *low = UINT32_MAX;
  *high = 0;
  for (size_t i = 0; i < s->nprogs; i++) {
    const struct program *p = &s->progs[i];
    if (p->prog != prog)
      continue;
    if (p->vers == vers)
      return p;
    *known = true;
    if (p->vers < *low)
      *low = p->vers;
    if (p->vers > *high)
      *high = p->vers;
  }
  return NULL;
}

static const char *flavor_name(uint32_t f)
{
  switch (f) {
  case ONCRPC_AUTH_NONE:
    return "AUTH_NONE";
  case ONCRPC_AUTH_SYS:
    return "AUTH_SYS";
  case ONCRPC_AUTH_SHORT:
    return "AUTH_SHORT";
  case ONCRPC_AUTH_DH:
    return "AUTH_DH";
  case ONCRPC_RPCSEC_GSS:
    return "RPCSEC_GSS";
  default:
    return "unknown";
  }
}

int rpcsrv_dispatch(struct rpcsrv *s, const uint8_t *rec, size_t len,
                    const struct rpcsrv_peer *peer, struct xdr_enc *out)
{
  struct oncrpc_call c;
  struct xdr_dec d;
  size_t reply_start = out->len;
  const char *who = peer ? peer->name : "?";
  struct rpcsrv_peer local;
  struct drc_key key;
  bool cached = false;
  xdr_dec_init(&d, rec, len);

  enum oncrpc_call_verdict cs = oncrpc_dec_call(&d, &c);
  /* Who may call at all (exports.h), before anything is logged: a client
   * the exports refuse gets its one refusal line, not a line per
   * malformed call (UDP sources can be forged). */
  bool refused = false;
  if (peer) {
    local = *peer;
    exports_check(s->exports, (const struct sockaddr *)&peer->addr, &local.access);
    peer = &local;
    refused = local.access.refused;
    if (refused && refusal_is_new(s, (const struct sockaddr *)&peer->addr))
      rpcsrv_logf(s, "%s: refused by the exports%s", who,
                  local.access.line ? " (a deny line)" : " (no line for this address)");
  }
  switch (cs) {
  case ONCRPC_CALL_OK:
    break;
  case ONCRPC_CALL_NOT_A_CALL:
    if (!refused)
      rpcsrv_logf(s, "%s: a %zu-byte record that is not an RPC call", who, len);
    return -BFS_EFORMAT;
  case ONCRPC_CALL_BAD_RPCVERS:
    if (!refused)
      rpcsrv_logf(s, "%s: RPC version %u refused", who, c.rpcvers);
    oncrpc_enc_rpc_mismatch(out, c.xid);
    goto sent;
  case ONCRPC_CALL_BAD_CRED:
    if (!refused)
      rpcsrv_logf(s, "%s: malformed credential", who);
    oncrpc_enc_auth_error(out, c.xid, ONCRPC_AUTH_BADCRED);
    goto sent;
  case ONCRPC_CALL_BAD_VERF:
    if (!refused)
      rpcsrv_logf(s, "%s: malformed verifier", who);
    oncrpc_enc_auth_error(out, c.xid, ONCRPC_AUTH_BADVERF);
    goto sent;
  }
  if (refused) {
    oncrpc_enc_auth_error(out, c.xid, ONCRPC_AUTH_TOOWEAK);
    goto sent;
  }

  /* Authentication comes before the program lookup (RFC 5531 §9): we only
   * speak AUTH_NONE and AUTH_SYS, and say so the way Linux's nfsd does. */
  if (c.cred_flavor != ONCRPC_AUTH_NONE && c.cred_flavor != ONCRPC_AUTH_SYS) {
    rpcsrv_logf(s, "%s: credential flavor %u (%s) refused", who, c.cred_flavor,
                flavor_name(c.cred_flavor));
    oncrpc_enc_auth_error(out, c.xid, ONCRPC_AUTH_BADCRED);
    goto sent;
  }

  bool known;
  uint32_t low, high;
  const struct program *p = find(s, c.prog, c.vers, &known, &low, &high);
  if (!p) {
    if (known)
      oncrpc_enc_prog_mismatch(out, c.xid, low, high);
    else
      oncrpc_enc_accepted(out, c.xid, ONCRPC_PROG_UNAVAIL);
    goto sent;
  }
  const struct rpcsrv_proc *proc = c.proc < p->nprocs ? &p->procs[c.proc] : NULL;
  if (!proc || !proc->handler) {
    oncrpc_enc_accepted(out, c.xid, ONCRPC_PROC_UNAVAIL);
    goto sent;
  }
  if ((proc->flags & RPCSRV_NEED_AUTH_SYS) && c.cred_flavor != ONCRPC_AUTH_SYS) {
    oncrpc_enc_auth_error(out, c.xid, ONCRPC_AUTH_TOOWEAK);
    goto sent;
  }

  if (s->drc && (proc->flags & RPCSRV_NONIDEMPOTENT)) {
    const uint8_t *old;
    size_t oldlen;
    drc_key_make(&key, peer ? (const struct sockaddr *)&peer->addr : NULL, &c, d.buf + d.pos,
                 xdr_dec_left(&d));
    switch (drc_begin(s->drc, &key, &old, &oldlen)) {
    case DRC_IN_PROGRESS:
      return 0;
    case DRC_REPLAY:
      xdr_enc_fixed(out, old, oldlen);
      goto sent;
    case DRC_NEW:
      cached = true;
      break;
    }
  }

  oncrpc_enc_accepted(out, c.xid, ONCRPC_SUCCESS);
  size_t results = out->len;
  struct rpcsrv_call call = {.hdr = &c, .args = d, .res = out, .peer = peer, .ctx = p->ctx};
  enum rpcsrv_status st = proc->handler(&call);
  if (st == RPCSRV_OK && out->err == 0 && out->len - reply_start > RPCSRV_REPLY_MAX) {
    rpcsrv_logf(s, "%s: %u/%u %s: a %zu-byte reply is over the cap", who, c.prog, c.vers,
                proc->name, out->len - reply_start);
    st = RPCSRV_SYSTEM_ERR;
  }
  if (st == RPCSRV_OK && out->err != 0) {
    rpcsrv_logf(s, "%s: %u/%u %s: reply not encodable (%s)", who, c.prog, c.vers, proc->name,
                bfs_strerror(out->err));
    st = RPCSRV_SYSTEM_ERR;
  }
  if (st == RPCSRV_OK) {
    if (cached)
      drc_done(s->drc, &key, out->buf + reply_start, out->len - reply_start);
    return 1;
  }
  /* Whatever the handler wrote goes; the error reply replaces it. */
  out->err = 0;
  xdr_enc_truncate(out, results);
  switch (st) {
  case RPCSRV_GARBAGE_ARGS:
    rpcsrv_logf(s, "%s: %u/%u %s: garbage arguments", who, c.prog, c.vers, proc->name);
    xdr_enc_truncate(out, reply_start);
    oncrpc_enc_accepted(out, c.xid, ONCRPC_GARBAGE_ARGS);
    break;
  case RPCSRV_AUTH_TOOWEAK:
    xdr_enc_truncate(out, reply_start);
    oncrpc_enc_auth_error(out, c.xid, ONCRPC_AUTH_TOOWEAK);
    break;
  case RPCSRV_DROP:
    xdr_enc_truncate(out, reply_start);
    if (cached)
      drc_done(s->drc, &key, NULL, 0);
    return 0;
  case RPCSRV_SYSTEM_ERR:
  default:
    xdr_enc_truncate(out, reply_start);
    oncrpc_enc_accepted(out, c.xid, ONCRPC_SYSTEM_ERR);
    break;
  }
sent:
  if (out->err) {
    int err = out->err;
    out->err = 0;
    xdr_enc_truncate(out, reply_start);
    if (cached)
      drc_done(s->drc, &key, NULL, 0);
    return err;
  }
  if (cached) /* a failed call is run again when retransmitted */
    drc_done(s->drc, &key, NULL, 0);
  return 1;
}

int rpcsrv_dispatch_record(struct rpcsrv *s, const uint8_t *rec, size_t len,
                           const struct rpcsrv_peer *peer, struct xdr_enc *out)
{
  size_t mark = out->len;
  xdr_enc_u32(out, 0);
  if (out->err) {
    int err = out->err;
    out->err = 0;
    xdr_enc_truncate(out, mark);
    return err;
  }
  int rc = rpcsrv_dispatch(s, rec, len, peer, out);
  if (rc <= 0) {
    xdr_enc_truncate(out, mark);
    return rc;
  }
  xdr_enc_patch_u32(out, mark, RM_LAST | (uint32_t)(out->len - mark - 4));
  return 1;
}
