/*
 * The entry codec. One validator (entry_check) holds every rule of the
 * action table in entry.h; entry_decode, entry_encode and entry_sign all go
 * through it, so what can be signed, encoded and decoded is the same set.
 *
 * The encoding is canonical: decoding accepts only what encoding produces
 * (minimal varints, a presence flag only over a non-zero hash), so
 * decode(bytes) followed by encode gives back exactly the same bytes, and an
 * entry has one encoding for its id.
 */
#include "store/entry.h"

#include <errno.h>
#include <string.h>

#include "store/error.h"

#define FLAGS_KNOWN (ENTRY_HAS_PARENT | ENTRY_HAS_DIR | ENTRY_HAS_TARGET)
/* Enough for the largest struct entry, valid or not, so the encoder can measure first. */
#define SCRATCH_SIZE (4 + 3 * HASH_SIZE + 5 * 10 + 1 + ENTRY_NAME_MAX + 3 + ENTRY_CONTENT_MAX + KEY_PUBLIC_SIZE + KEY_SIGNATURE_SIZE)

enum presence { NO, YES, OPT };

struct rule {
  uint8_t parent, dir, target, name;
};

/* Rows of the table in entry.h; MKDIR's and WRITE's dir/name are special-cased below. */
static const struct rule rules[ENTRY_ACTION_MAX + 1] = {
    [ENTRY_MKDIR] = {NO, OPT, NO, OPT},  [ENTRY_WRITE] = {OPT, OPT, NO, OPT}, [ENTRY_DELETE] = {YES, NO, NO, NO},
    [ENTRY_REVERT] = {YES, NO, YES, NO}, [ENTRY_GRANT] = {NO, YES, NO, OPT},  [ENTRY_REVOKE] = {NO, YES, YES, NO},
    [ENTRY_ACK] = {NO, NO, YES, NO},     [ENTRY_LINK] = {NO, YES, YES, YES},  [ENTRY_SLINK] = {NO, YES, NO, YES},
    [ENTRY_MODE] = {YES, NO, NO, NO},    [ENTRY_RENAME] = {YES, YES, NO, YES},
};

static const char *const action_names[ENTRY_ACTION_MAX + 1] = {
    [ENTRY_MKDIR] = "mkdir",   [ENTRY_WRITE] = "write", [ENTRY_DELETE] = "delete", [ENTRY_REVERT] = "revert",
    [ENTRY_GRANT] = "grant",   [ENTRY_REVOKE] = "revoke", [ENTRY_ACK] = "ack",     [ENTRY_LINK] = "link",
    [ENTRY_SLINK] = "slink",   [ENTRY_MODE] = "mode",   [ENTRY_RENAME] = "rename",
};

const char *entry_action_name(int action)
{
  if (action < ENTRY_MKDIR || action > ENTRY_ACTION_MAX)
    return "?";
  return action_names[action];
}

bool entry_name_valid(const char *name, size_t len)
{
  if (len < 1 || len > ENTRY_NAME_MAX)
    return false;
  if (memchr(name, '/', len) || memchr(name, '\0', len))
    return false;
  if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
    return false;
  return true;
}

static bool present_ok(uint8_t rule, bool present)
{
  return rule == OPT || (rule == YES) == present;
}

/* The content rules of WRITE: KIND says what the bytes are. */
static bool write_content_ok(const struct entry *e, bool has_parent)
{
  switch (e->content_kind) {
  case ENTRY_CONTENT_NONE:
    return e->content_len == 0 && e->size == 0;
  case ENTRY_CONTENT_INLINE:
    return e->size == e->content_len;
  case ENTRY_CONTENT_ZSTD:
    return e->content_len > 0;
  case ENTRY_CONTENT_DELTA:
    return e->content_len > 0 && has_parent;
  case ENTRY_CONTENT_BLOCKS:
    return e->content_len > 0 && e->content_len % HASH_SIZE == 0;
  case ENTRY_CONTENT_BLOCKLIST:
    return e->content_len == HASH_SIZE;
  default:
    return false;
  }
}

/* Every rule of the format that the entry alone can show; 0 or -BFS_EFORMAT. */
static int entry_check(const struct entry *e)
{
  if (e->action < ENTRY_MKDIR || e->action > ENTRY_ACTION_MAX)
    return -BFS_EFORMAT;
  if (e->content_kind > ENTRY_CONTENT_MAX_KIND)
    return -BFS_EFORMAT;
  if (e->mode > 07777)
    return -BFS_EFORMAT;
  if (e->content_len > ENTRY_CONTENT_MAX)
    return -BFS_EFORMAT;
  if (e->pubkey[0] != 0x04)
    return -BFS_EFORMAT;
  bool has_parent = !hash_is_zero(&e->parent), has_dir = !hash_is_zero(&e->dir);
  bool has_target = !hash_is_zero(&e->target), has_name = e->name_len > 0;
  if (has_name && !entry_name_valid(e->name, e->name_len))
    return -BFS_EFORMAT;

  const struct rule *r = &rules[e->action];
  if (!present_ok(r->parent, has_parent) || !present_ok(r->dir, has_dir) || !present_ok(r->target, has_target) ||
      !present_ok(r->name, has_name))
    return -BFS_EFORMAT;

  switch (e->action) {
  case ENTRY_MKDIR: /* a directory in a directory, or the root: neither */
    if (has_dir != has_name)
      return -BFS_EFORMAT;
    break;
  case ENTRY_WRITE: /* a create names its place; an update follows its parent */
    if (has_parent ? (has_dir || has_name) : (!has_dir || !has_name))
      return -BFS_EFORMAT;
    return write_content_ok(e, has_parent) ? 0 : -BFS_EFORMAT;
  case ENTRY_SLINK: /* the link's target path, as readlink returns it */
    if (e->content_kind != ENTRY_CONTENT_INLINE || e->content_len == 0 || e->size != e->content_len ||
        memchr(e->content, '\0', e->content_len))
      return -BFS_EFORMAT;
    return 0;
  case ENTRY_GRANT: /* the grantee's public key; verify checks it is a point */
    if (e->content_kind != ENTRY_CONTENT_INLINE || e->content_len != KEY_PUBLIC_SIZE || e->content[0] != 0x04 ||
        e->size != 0)
      return -BFS_EFORMAT;
    return 0;
  default:
    break;
  }
  /* Every other action carries no content and no size. */
  if (e->content_kind != ENTRY_CONTENT_NONE || e->content_len != 0 || e->size != 0)
    return -BFS_EFORMAT;
  return 0;
}

/* ---- varints: unsigned LEB128, minimal length ---- */

static size_t put_varint(uint8_t *p, uint64_t v)
{
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

struct reader {
  const uint8_t *p;
  size_t len, pos;
};

static int get_bytes(struct reader *r, void *out, size_t n)
{
  if (r->len - r->pos < n)
    return -BFS_EFORMAT;
  memcpy(out, r->p + r->pos, n);
  r->pos += n;
  return 0;
}

static int get_varint(struct reader *r, uint64_t max, uint64_t *out)
{
  uint64_t v = 0;
  for (unsigned i = 0;; i++) {
    if (r->pos >= r->len || i >= 10)
      return -BFS_EFORMAT;
    uint8_t b = r->p[r->pos++];
    if (i == 9 && b > 1) /* bits beyond 64 */
      return -BFS_EFORMAT;
    v |= (uint64_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) {
      if (b == 0 && i > 0) /* overlong: a trailing zero group */
        return -BFS_EFORMAT;
      break;
    }
  }
  if (v > max)
    return -BFS_EFORMAT;
  *out = v;
  return 0;
}

/* ---- encoding ---- */

/* Encodes E without its signature into BUF (SCRATCH_SIZE); returns the body length. */
static int encode_body(const struct entry *e, uint8_t *buf)
{
  int rc = entry_check(e);
  if (rc < 0)
    return rc;
  size_t n = 0;
  uint8_t flags = 0;
  buf[n++] = ENTRY_FORMAT_VERSION;
  buf[n++] = e->action;
  buf[n++] = e->content_kind;
  size_t flags_at = n++;
  const hash_t *hashes[3] = {&e->parent, &e->dir, &e->target};
  for (int i = 0; i < 3; i++) {
    if (!hash_is_zero(hashes[i])) {
      flags |= (uint8_t)(1u << i);
      memcpy(buf + n, hashes[i]->bytes, HASH_SIZE);
      n += HASH_SIZE;
    }
  }
  buf[flags_at] = flags;
  n += put_varint(buf + n, e->mtime_ns);
  n += put_varint(buf + n, e->size);
  n += put_varint(buf + n, e->mode);
  n += put_varint(buf + n, e->uid);
  n += put_varint(buf + n, e->gid);
  buf[n++] = e->name_len;
  memcpy(buf + n, e->name, e->name_len);
  n += e->name_len;
  n += put_varint(buf + n, e->content_len);
  memcpy(buf + n, e->content, e->content_len);
  n += e->content_len;
  memcpy(buf + n, e->pubkey, KEY_PUBLIC_SIZE);
  n += KEY_PUBLIC_SIZE;
  if (n + KEY_SIGNATURE_SIZE > ENTRY_MAX_SIZE)
    return -BFS_ETOOBIG;
  return (int)n;
}

int entry_encode(const struct entry *e, uint8_t *out, size_t cap)
{
  uint8_t buf[SCRATCH_SIZE];
  int n = encode_body(e, buf);
  if (n < 0)
    return n;
  size_t total = (size_t)n + KEY_SIGNATURE_SIZE;
  if (cap < total)
    return -ENOSPC;
  memcpy(out, buf, (size_t)n);
  memcpy(out + n, e->signature, KEY_SIGNATURE_SIZE);
  return (int)total;
}

int entry_prepare(struct entry *e, const uint8_t pubkey[KEY_PUBLIC_SIZE])
{
  uint8_t buf[SCRATCH_SIZE];
  memcpy(e->pubkey, pubkey, KEY_PUBLIC_SIZE);
  int n = encode_body(e, buf);
  if (n < 0)
    return n;
  hash_buf(buf, (size_t)n, &e->id);
  return 0;
}

int entry_sign(struct entry *e, const struct key *key)
{
  uint8_t pub[KEY_PUBLIC_SIZE];
  key_public(key, pub);
  int r = entry_prepare(e, pub);
  if (r < 0)
    return r;
  return key_sign(key, &e->id, e->signature);
}

/* ---- decoding ---- */

int entry_decode(const uint8_t *buf, size_t len, struct entry *e)
{
  memset(e, 0, sizeof *e);
  if (len > ENTRY_MAX_SIZE)
    return -BFS_ETOOBIG;
  if (len < 4 + 5 + 1 + 1 + KEY_PUBLIC_SIZE + KEY_SIGNATURE_SIZE)
    return -BFS_EFORMAT;
  /* Everything but the signature is the body; the reader never sees the signature. */
  struct reader r = {buf, len - KEY_SIGNATURE_SIZE, 0};
  uint8_t head[4];
  uint64_t v;
  int rc = get_bytes(&r, head, 4);
  if (rc < 0)
    return rc;
  if (head[0] != ENTRY_FORMAT_VERSION || head[1] < ENTRY_MKDIR || head[1] > ENTRY_ACTION_MAX ||
      head[2] > ENTRY_CONTENT_MAX_KIND || (head[3] & ~FLAGS_KNOWN))
    return -BFS_EFORMAT;
  e->action = head[1];
  e->content_kind = head[2];
  hash_t *hashes[3] = {&e->parent, &e->dir, &e->target};
  for (int i = 0; i < 3; i++) {
    if (!(head[3] & (1u << i)))
      continue;
    if ((rc = get_bytes(&r, hashes[i]->bytes, HASH_SIZE)) < 0)
      return rc;
    if (hash_is_zero(hashes[i])) /* "present" means non-zero; anything else has two encodings */
      return -BFS_EFORMAT;
  }
  if ((rc = get_varint(&r, UINT64_MAX, &e->mtime_ns)) < 0 || (rc = get_varint(&r, UINT64_MAX, &e->size)) < 0)
    return rc;
  if ((rc = get_varint(&r, 07777, &v)) < 0)
    return rc;
  e->mode = (uint32_t)v;
  if ((rc = get_varint(&r, UINT32_MAX, &v)) < 0)
    return rc;
  e->uid = (uint32_t)v;
  if ((rc = get_varint(&r, UINT32_MAX, &v)) < 0)
    return rc;
  e->gid = (uint32_t)v;
  if ((rc = get_bytes(&r, &e->name_len, 1)) < 0 || (rc = get_bytes(&r, e->name, e->name_len)) < 0)
    return rc;
  e->name[e->name_len] = '\0';
  if ((rc = get_varint(&r, ENTRY_CONTENT_MAX, &v)) < 0)
    return rc;
  e->content_len = (uint16_t)v;
  if ((rc = get_bytes(&r, e->content, e->content_len)) < 0 || (rc = get_bytes(&r, e->pubkey, KEY_PUBLIC_SIZE)) < 0)
    return rc;
  if (r.pos != r.len) /* trailing bytes between the key and the signature */
    return -BFS_EFORMAT;
  memcpy(e->signature, buf + r.len, KEY_SIGNATURE_SIZE);
  if ((rc = entry_check(e)) < 0)
    return rc;
  hash_buf(buf, r.len, &e->id);
  return 0;
}

/* ---- verification ---- */

int entry_verify(const struct entry *e)
{
  uint8_t buf[SCRATCH_SIZE];
  hash_t id;
  int n = encode_body(e, buf);
  if (n < 0)
    return n;
  /* The id is recomputed, so an entry changed after decode or sign cannot pass. */
  hash_buf(buf, (size_t)n, &id);
  if (!hash_eq(&id, &e->id))
    return -BFS_ESIGNATURE;
  int rc = key_verify(e->pubkey, &id, e->signature);
  if (rc < 0)
    return rc;
  if (e->action == ENTRY_GRANT)
    return key_check_public(e->content);
  return 0;
}

void entry_author(const struct entry *e, hash_t *fingerprint)
{
  key_fingerprint(e->pubkey, fingerprint);
}
