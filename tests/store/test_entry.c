#include "tests/test.h"

#include <errno.h>

#include "store/entry.h"
#include "store/error.h"
#include "store/key.h"

static struct key *test_key(void)
{
  static struct key *k;
  if (!k && key_generate(&k) != 0)
    test_fail(__FILE__, __LINE__, "key_generate");
  return k;
}

static void some_hash(hash_t *h, uint8_t tag)
{
  for (int i = 0; i < HASH_SIZE; i++)
    h->bytes[i] = (uint8_t)(tag + i * 7 + 1);
}

static void set_name(struct entry *e, const char *name)
{
  e->name_len = (uint8_t)strlen(name);
  memcpy(e->name, name, e->name_len);
  e->name[e->name_len] = '\0';
}

static void set_content(struct entry *e, uint8_t kind, const void *data, size_t len)
{
  e->content_kind = kind;
  e->content_len = (uint16_t)len;
  memcpy(e->content, data, len);
}

/* Variants of valid entries: enough to cover every action and content kind. */
enum {
  V_ROOT,
  V_MKDIR,
  V_CREATE_EMPTY,
  V_CREATE_INLINE,
  V_UPDATE_ZSTD,
  V_UPDATE_DELTA,
  V_CREATE_BLOCKS,
  V_UPDATE_BLOCKLIST,
  V_SLINK,
  V_LINK,
  V_RENAME,
  V_DELETE,
  V_MODE,
  V_REVERT,
  V_GRANT,
  V_GRANT_NAMED,
  V_REVOKE,
  V_ACK,
  V_COUNT
};

static void make_valid(struct entry *e, int variant)
{
  memset(e, 0, sizeof *e);
  e->mtime_ns = 1700000000123456789ull + (uint64_t)variant;
  e->mode = 0644;
  e->uid = 1000;
  e->gid = 100;
  switch (variant) {
  case V_ROOT:
    e->action = ENTRY_MKDIR;
    e->mode = 0755;
    break;
  case V_MKDIR:
    e->action = ENTRY_MKDIR;
    some_hash(&e->dir, 1);
    set_name(e, "etc");
    break;
  case V_CREATE_EMPTY:
    e->action = ENTRY_WRITE;
    some_hash(&e->dir, 2);
    set_name(e, "empty.conf");
    break;
  case V_CREATE_INLINE:
    e->action = ENTRY_WRITE;
    some_hash(&e->dir, 3);
    set_name(e, "hosts");
    set_content(e, ENTRY_CONTENT_INLINE, "127.0.0.1 localhost\n", 20);
    e->size = 20;
    break;
  case V_UPDATE_ZSTD:
    e->action = ENTRY_WRITE;
    some_hash(&e->parent, 4);
    set_content(e, ENTRY_CONTENT_ZSTD, "\x28\xb5\x2f\xfd\x00\x00\x01\x00\x00", 9);
    e->size = 5000;
    break;
  case V_UPDATE_DELTA:
    e->action = ENTRY_WRITE;
    some_hash(&e->parent, 5);
    set_content(e, ENTRY_CONTENT_DELTA, "\x28\xb5\x2f\xfd\x20\x01\x09\x00", 8);
    e->size = 21;
    break;
  case V_CREATE_BLOCKS: {
    e->action = ENTRY_WRITE;
    some_hash(&e->dir, 6);
    set_name(e, "big.img");
    uint8_t blocks[3 * HASH_SIZE];
    for (size_t i = 0; i < sizeof blocks; i++)
      blocks[i] = (uint8_t)(i * 13);
    set_content(e, ENTRY_CONTENT_BLOCKS, blocks, sizeof blocks);
    e->size = 200000;
    break;
  }
  case V_UPDATE_BLOCKLIST: {
    e->action = ENTRY_WRITE;
    some_hash(&e->parent, 7);
    hash_t h;
    some_hash(&h, 70);
    set_content(e, ENTRY_CONTENT_BLOCKLIST, h.bytes, HASH_SIZE);
    e->size = 1ull << 40;
    break;
  }
  case V_SLINK:
    e->action = ENTRY_SLINK;
    some_hash(&e->dir, 8);
    set_name(e, "current");
    set_content(e, ENTRY_CONTENT_INLINE, "../releases/42", 14);
    e->size = 14;
    e->mode = 0777;
    break;
  case V_LINK:
    e->action = ENTRY_LINK;
    some_hash(&e->dir, 9);
    some_hash(&e->target, 90);
    set_name(e, "hardlink");
    break;
  case V_RENAME:
    e->action = ENTRY_RENAME;
    some_hash(&e->parent, 10);
    some_hash(&e->dir, 100);
    set_name(e, "renamed");
    break;
  case V_DELETE:
    e->action = ENTRY_DELETE;
    some_hash(&e->parent, 11);
    break;
  case V_MODE:
    e->action = ENTRY_MODE;
    some_hash(&e->parent, 12);
    e->mode = 04755;
    e->uid = UINT32_MAX;
    e->gid = 0;
    break;
  case V_REVERT:
    e->action = ENTRY_REVERT;
    some_hash(&e->parent, 13);
    some_hash(&e->target, 130);
    break;
  case V_GRANT:
  case V_GRANT_NAMED: {
    e->action = ENTRY_GRANT;
    some_hash(&e->dir, 14);
    struct key *g;
    if (key_generate(&g) != 0)
      test_fail(__FILE__, __LINE__, "key_generate");
    uint8_t pub[KEY_PUBLIC_SIZE];
    key_public(g, pub);
    key_free(g);
    set_content(e, ENTRY_CONTENT_INLINE, pub, sizeof pub);
    if (variant == V_GRANT_NAMED)
      set_name(e, "alice@router1");
    break;
  }
  case V_REVOKE:
    e->action = ENTRY_REVOKE;
    some_hash(&e->dir, 15);
    some_hash(&e->target, 150);
    break;
  case V_ACK:
    e->action = ENTRY_ACK;
    some_hash(&e->target, 16);
    break;
  }
}

/* Signs and encodes E; returns the length. */
static int sign_encode(struct entry *e, uint8_t *buf)
{
  int rc = entry_sign(e, test_key());
  CHECK_MSG(rc == 0, "entry_sign: %d (%s) for %s", rc, bfs_strerror(rc), entry_action_name(e->action));
  int n = entry_encode(e, buf, ENTRY_MAX_SIZE);
  CHECK_INT(n, >, 0);
  CHECK_INT(n, <=, ENTRY_MAX_SIZE);
  return n;
}

static void check_same(const struct entry *a, const struct entry *b)
{
  CHECK(hash_eq(&a->id, &b->id));
  CHECK_INT(a->action, ==, b->action);
  CHECK_INT(a->content_kind, ==, b->content_kind);
  CHECK(hash_eq(&a->parent, &b->parent));
  CHECK(hash_eq(&a->dir, &b->dir));
  CHECK(hash_eq(&a->target, &b->target));
  CHECK_INT(a->mtime_ns, ==, b->mtime_ns);
  CHECK_INT(a->size, ==, b->size);
  CHECK_INT(a->mode, ==, b->mode);
  CHECK_INT(a->uid, ==, b->uid);
  CHECK_INT(a->gid, ==, b->gid);
  CHECK_INT(a->name_len, ==, b->name_len);
  CHECK_MEM(a->name, b->name, a->name_len);
  CHECK_INT(b->name[b->name_len], ==, 0);
  CHECK_INT(a->content_len, ==, b->content_len);
  CHECK_MEM(a->content, b->content, a->content_len);
  CHECK_MEM(a->pubkey, b->pubkey, KEY_PUBLIC_SIZE);
  CHECK_MEM(a->signature, b->signature, KEY_SIGNATURE_SIZE);
}

TEST(round_trip_every_action)
{
  int seen[ENTRY_ACTION_MAX + 1] = {0}, kinds[ENTRY_CONTENT_MAX_KIND + 1] = {0};
  for (int v = 0; v < V_COUNT; v++) {
    struct entry e, d;
    uint8_t buf[ENTRY_MAX_SIZE], again[ENTRY_MAX_SIZE];
    make_valid(&e, v);
    int n = sign_encode(&e, buf);
    int rc = entry_decode(buf, (size_t)n, &d);
    CHECK_MSG(rc == 0, "variant %d (%s): decode %d", v, entry_action_name(e.action), rc);
    check_same(&e, &d);
    CHECK_OK(entry_verify(&d));
    CHECK_INT(entry_encode(&d, again, sizeof again), ==, n);
    CHECK_MEM(buf, again, (size_t)n);
    /* The id is SHA-256 of everything but the signature. */
    hash_t id;
    hash_buf(buf, (size_t)n - KEY_SIGNATURE_SIZE, &id);
    CHECK(hash_eq(&id, &d.id));
    seen[e.action]++;
    kinds[e.content_kind]++;
  }
  for (int a = ENTRY_MKDIR; a <= ENTRY_ACTION_MAX; a++)
    CHECK_MSG(seen[a] > 0, "action %s not covered", entry_action_name(a));
  for (int k = 0; k <= ENTRY_CONTENT_MAX_KIND; k++)
    CHECK_MSG(kinds[k] > 0, "content kind %d not covered", k);
}

TEST(author_and_names)
{
  struct entry e;
  uint8_t buf[ENTRY_MAX_SIZE];
  make_valid(&e, V_MKDIR);
  sign_encode(&e, buf);
  uint8_t pub[KEY_PUBLIC_SIZE];
  key_public(test_key(), pub);
  hash_t fp, want;
  entry_author(&e, &fp);
  key_fingerprint(pub, &want);
  CHECK(hash_eq(&fp, &want));
  CHECK(strcmp(entry_action_name(ENTRY_MKDIR), "mkdir") == 0);
  CHECK(strcmp(entry_action_name(ENTRY_RENAME), "rename") == 0);
  CHECK(strcmp(entry_action_name(0), "?") == 0);
  CHECK(strcmp(entry_action_name(ENTRY_ACTION_MAX + 1), "?") == 0);
  CHECK(strcmp(entry_action_name(-1), "?") == 0);
}

TEST(name_validity)
{
  char long_name[300];
  memset(long_name, 'a', sizeof long_name);
  CHECK(entry_name_valid("a", 1));
  CHECK(entry_name_valid("...", 3));
  CHECK(entry_name_valid(".hidden", 7));
  CHECK(entry_name_valid(long_name, 255));
  CHECK(!entry_name_valid(long_name, 256));
  CHECK(!entry_name_valid("", 0));
  CHECK(!entry_name_valid(".", 1));
  CHECK(!entry_name_valid("..", 2));
  CHECK(!entry_name_valid("a/b", 3));
  CHECK(!entry_name_valid("/", 1));
  CHECK(!entry_name_valid("a\0b", 3));
}

TEST(largest_entry_fits_and_one_more_byte_does_not)
{
  struct entry e;
  uint8_t buf[ENTRY_MAX_SIZE + 100];
  make_valid(&e, V_CREATE_INLINE);
  char name[ENTRY_NAME_MAX];
  memset(name, 'n', sizeof name);
  e.name_len = ENTRY_NAME_MAX;
  memcpy(e.name, name, sizeof name);
  e.name[ENTRY_NAME_MAX] = 0;
  /* Grow the content until the entry is exactly ENTRY_MAX_SIZE. */
  int n = 0;
  for (int len = 0; len <= ENTRY_CONTENT_MAX; len++) {
    e.content_len = (uint16_t)len;
    e.size = (uint64_t)len;
    memset(e.content, 'c', (size_t)len);
    int rc = entry_sign(&e, test_key());
    if (rc == -BFS_ETOOBIG) {
      CHECK_INT(n, ==, ENTRY_MAX_SIZE);
      break;
    }
    CHECK_OK(rc);
    n = entry_encode(&e, buf, sizeof buf);
    CHECK_INT(n, <=, ENTRY_MAX_SIZE);
  }
  CHECK_INT(n, ==, ENTRY_MAX_SIZE);
  /* The biggest one round-trips. */
  e.content_len--;
  e.size--;
  CHECK_OK(entry_sign(&e, test_key()));
  CHECK_INT(entry_encode(&e, buf, sizeof buf), ==, ENTRY_MAX_SIZE);
  struct entry d;
  CHECK_OK(entry_decode(buf, ENTRY_MAX_SIZE, &d));
  CHECK_OK(entry_verify(&d));
  /* An encoding longer than the limit is refused before anything else. */
  buf[ENTRY_MAX_SIZE] = 0;
  CHECK_INT(entry_decode(buf, ENTRY_MAX_SIZE + 1, &d), ==, -BFS_ETOOBIG);
  /* Content that cannot fit whatever the rest. */
  e.content_len = ENTRY_CONTENT_MAX + 1;
  CHECK(entry_sign(&e, test_key()) < 0);
  /* An encode buffer too small. */
  make_valid(&e, V_DELETE);
  CHECK_OK(entry_sign(&e, test_key()));
  CHECK_INT(entry_encode(&e, buf, 10), ==, -ENOSPC);
}

/* ---- rejection of every malformed field ---- */

/*
 * A hand-built encoder for bytes the real encoder refuses to produce.
 * Fields are written in order; a test mutates one field of a valid entry.
 */
struct raw {
  int version, action, kind, flags; /* flags < 0: derived from the hashes */
  const hash_t *parent, *dir, *target;
  uint8_t mtime[16], size[16], mode[16], uid[16], gid[16]; /* encoded varints */
  size_t mtime_n, size_n, mode_n, uid_n, gid_n;
  int name_len; /* < 0: len of name */
  const char *name;
  size_t name_bytes;
  uint8_t clen[16];
  size_t clen_n;
  const uint8_t *content;
  size_t content_bytes;
  const uint8_t *pubkey;
  const uint8_t *sig;
  size_t trailing; /* extra zero bytes before the signature */
};

static size_t varint(uint8_t *p, uint64_t v)
{
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

static void raw_from(struct raw *r, const struct entry *e)
{
  memset(r, 0, sizeof *r);
  r->version = ENTRY_FORMAT_VERSION;
  r->action = e->action;
  r->kind = e->content_kind;
  r->flags = -1;
  r->parent = hash_is_zero(&e->parent) ? NULL : &e->parent;
  r->dir = hash_is_zero(&e->dir) ? NULL : &e->dir;
  r->target = hash_is_zero(&e->target) ? NULL : &e->target;
  r->mtime_n = varint(r->mtime, e->mtime_ns);
  r->size_n = varint(r->size, e->size);
  r->mode_n = varint(r->mode, e->mode);
  r->uid_n = varint(r->uid, e->uid);
  r->gid_n = varint(r->gid, e->gid);
  r->name_len = e->name_len;
  r->name = e->name;
  r->name_bytes = e->name_len;
  r->clen_n = varint(r->clen, e->content_len);
  r->content = e->content;
  r->content_bytes = e->content_len;
  r->pubkey = e->pubkey;
  r->sig = e->signature;
}

static size_t raw_encode(const struct raw *r, uint8_t *out)
{
  size_t n = 0;
  out[n++] = (uint8_t)r->version;
  out[n++] = (uint8_t)r->action;
  out[n++] = (uint8_t)r->kind;
  int flags = r->flags;
  if (flags < 0)
    flags = (r->parent ? ENTRY_HAS_PARENT : 0) | (r->dir ? ENTRY_HAS_DIR : 0) | (r->target ? ENTRY_HAS_TARGET : 0);
  out[n++] = (uint8_t)flags;
  const hash_t *h[3] = {r->parent, r->dir, r->target};
  for (int i = 0; i < 3; i++)
    if (h[i]) {
      memcpy(out + n, h[i]->bytes, HASH_SIZE);
      n += HASH_SIZE;
    }
  memcpy(out + n, r->mtime, r->mtime_n), n += r->mtime_n;
  memcpy(out + n, r->size, r->size_n), n += r->size_n;
  memcpy(out + n, r->mode, r->mode_n), n += r->mode_n;
  memcpy(out + n, r->uid, r->uid_n), n += r->uid_n;
  memcpy(out + n, r->gid, r->gid_n), n += r->gid_n;
  out[n++] = (uint8_t)r->name_len;
  memcpy(out + n, r->name, r->name_bytes), n += r->name_bytes;
  memcpy(out + n, r->clen, r->clen_n), n += r->clen_n;
  memcpy(out + n, r->content, r->content_bytes), n += r->content_bytes;
  memcpy(out + n, r->pubkey, KEY_PUBLIC_SIZE), n += KEY_PUBLIC_SIZE;
  memset(out + n, 0, r->trailing), n += r->trailing;
  memcpy(out + n, r->sig, KEY_SIGNATURE_SIZE), n += KEY_SIGNATURE_SIZE;
  return n;
}

/* The bytes of R must decode with RC (and R unchanged must decode: the harness can tell). */
#define EXPECT_DECODE(r, rc)                                                        \
  do {                                                                              \
    uint8_t buf_[4096];                                                             \
    struct entry d_;                                                                \
    size_t n_ = raw_encode((r), buf_);                                              \
    int got_ = entry_decode(buf_, n_, &d_);                                         \
    CHECK_MSG(got_ == (rc), "decode gave %d (%s), expected %d", got_,               \
              got_ ? bfs_strerror(got_) : "ok", (rc));                               \
  } while (0)

static struct entry base[V_COUNT];

static void load_bases(void)
{
  for (int v = 0; v < V_COUNT; v++) {
    uint8_t buf[ENTRY_MAX_SIZE];
    make_valid(&base[v], v);
    sign_encode(&base[v], buf);
  }
}

TEST(raw_encoder_agrees_with_real_one)
{
  load_bases();
  for (int v = 0; v < V_COUNT; v++) {
    struct raw r;
    uint8_t a[4096], b[ENTRY_MAX_SIZE];
    raw_from(&r, &base[v]);
    size_t n = raw_encode(&r, a);
    CHECK_INT(entry_encode(&base[v], b, sizeof b), ==, n);
    CHECK_MEM(a, b, n);
    EXPECT_DECODE(&r, 0);
  }
}

TEST(rejects_bad_version)
{
  load_bases();
  struct raw r;
  raw_from(&r, &base[V_MKDIR]);
  r.version = 0;
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  r.version = 2;
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  r.version = 255;
  EXPECT_DECODE(&r, -BFS_EFORMAT);
}

TEST(rejects_bad_action)
{
  load_bases();
  struct raw r;
  raw_from(&r, &base[V_ACK]);
  int bad[] = {0, ENTRY_ACTION_MAX + 1, 100, 255};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    r.action = bad[i];
    EXPECT_DECODE(&r, -BFS_EFORMAT);
  }
  struct entry e = base[V_ACK];
  e.action = 0;
  CHECK_INT(entry_sign(&e, test_key()), ==, -BFS_EFORMAT);
  e.action = ENTRY_ACTION_MAX + 1;
  CHECK_INT(entry_sign(&e, test_key()), ==, -BFS_EFORMAT);
}

TEST(rejects_bad_content_kind)
{
  load_bases();
  struct raw r;
  raw_from(&r, &base[V_CREATE_INLINE]);
  r.kind = ENTRY_CONTENT_MAX_KIND + 1;
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  r.kind = 255;
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  struct entry e = base[V_CREATE_INLINE];
  e.content_kind = ENTRY_CONTENT_MAX_KIND + 1;
  CHECK_INT(entry_sign(&e, test_key()), ==, -BFS_EFORMAT);
}

TEST(rejects_unknown_flags)
{
  load_bases();
  struct raw r;
  raw_from(&r, &base[V_DELETE]);
  for (int bit = 3; bit < 8; bit++) {
    r.flags = ENTRY_HAS_PARENT | (1 << bit);
    EXPECT_DECODE(&r, -BFS_EFORMAT);
  }
}

TEST(rejects_present_but_zero_hash)
{
  load_bases();
  static const hash_t zero;
  struct raw r;
  raw_from(&r, &base[V_DELETE]);
  r.parent = &zero;
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  raw_from(&r, &base[V_MKDIR]);
  r.dir = &zero;
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  raw_from(&r, &base[V_ACK]);
  r.target = &zero;
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  /* Where the field is optional, a zero hash would be a second encoding of "absent". */
  raw_from(&r, &base[V_ROOT]);
  r.dir = &zero;
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  raw_from(&r, &base[V_ROOT]);
  EXPECT_DECODE(&r, 0);
}

/* The action table: for each action, each field's presence flipped is refused. */
TEST(rejects_missing_or_forbidden_fields_per_action)
{
  load_bases();
  hash_t extra;
  some_hash(&extra, 200);
  int checked = 0;
  for (int v = 0; v < V_COUNT; v++) {
    const struct entry *b = &base[v];
    for (int field = 0; field < 4; field++) {
      struct entry e = *b;
      hash_t *h = field == 0 ? &e.parent : field == 1 ? &e.dir : field == 2 ? &e.target : NULL;
      if (h) {
        if (hash_is_zero(h))
          *h = extra;
        else
          memset(h, 0, sizeof *h);
      } else {
        if (e.name_len)
          e.name_len = 0, e.name[0] = 0;
        else
          set_name(&e, "x");
      }
      /* Optional fields: flipping may be fine (WRITE's parent turns a create
       * into an update only together with dir and name; GRANT's name). */
      bool optional = (e.action == ENTRY_GRANT && field == 3);
      int rc = entry_sign(&e, test_key());
      if (optional) {
        CHECK_OK(rc);
        continue;
      }
      CHECK_MSG(rc == -BFS_EFORMAT, "variant %d (%s) field %d flipped: sign gave %d", v, entry_action_name(b->action),
                field, rc);
      /* And the same bytes built by hand do not decode. */
      struct raw r;
      raw_from(&r, &e);
      r.pubkey = b->pubkey;
      EXPECT_DECODE(&r, -BFS_EFORMAT);
      checked++;
    }
  }
  CHECK_INT(checked, >=, 60);
}

TEST(root_mkdir_shape)
{
  load_bases();
  /* Root: no dir and no name. A dir without a name, or a name without a dir, is neither. */
  struct entry e = base[V_ROOT];
  some_hash(&e.dir, 9);
  CHECK_INT(entry_sign(&e, test_key()), ==, -BFS_EFORMAT);
  e = base[V_ROOT];
  set_name(&e, "x");
  CHECK_INT(entry_sign(&e, test_key()), ==, -BFS_EFORMAT);
  e = base[V_ROOT];
  CHECK_OK(entry_sign(&e, test_key()));
}

TEST(rejects_write_shapes)
{
  load_bases();
  struct entry e;
  /* An update with a dir, or with a name. */
  e = base[V_UPDATE_ZSTD];
  some_hash(&e.dir, 1);
  CHECK_INT(entry_sign(&e, test_key()), ==, -BFS_EFORMAT);
  e = base[V_UPDATE_ZSTD];
  set_name(&e, "n");
  CHECK_INT(entry_sign(&e, test_key()), ==, -BFS_EFORMAT);
  /* A create without a name, or without a dir. */
  e = base[V_CREATE_INLINE];
  e.name_len = 0;
  CHECK_INT(entry_sign(&e, test_key()), ==, -BFS_EFORMAT);
  e = base[V_CREATE_INLINE];
  memset(&e.dir, 0, sizeof e.dir);
  CHECK_INT(entry_sign(&e, test_key()), ==, -BFS_EFORMAT);
  /* A delta needs the parent it applies to. */
  e = base[V_UPDATE_DELTA];
  memset(&e.parent, 0, sizeof e.parent);
  some_hash(&e.dir, 1);
  set_name(&e, "d");
  CHECK_INT(entry_sign(&e, test_key()), ==, -BFS_EFORMAT);
}

TEST(rejects_content_rules)
{
  load_bases();
  struct entry e;
  struct raw r;
#define REFUSED()                                              \
  do {                                                         \
    CHECK_INT(entry_sign(&e, test_key()), ==, -BFS_EFORMAT);   \
    raw_from(&r, &e);                                          \
    EXPECT_DECODE(&r, -BFS_EFORMAT);                           \
  } while (0)
  /* NONE with bytes, NONE with a size. */
  e = base[V_CREATE_EMPTY];
  e.content_len = 1;
  e.content[0] = 'x';
  REFUSED();
  e = base[V_CREATE_EMPTY];
  e.size = 1;
  REFUSED();
  /* INLINE whose size disagrees. */
  e = base[V_CREATE_INLINE];
  e.size++;
  REFUSED();
  /* ZSTD and DELTA without bytes. */
  e = base[V_UPDATE_ZSTD];
  e.content_len = 0;
  REFUSED();
  e = base[V_UPDATE_DELTA];
  e.content_len = 0;
  REFUSED();
  /* BLOCKS not a multiple of 32, or empty; BLOCKLIST not 32. */
  e = base[V_CREATE_BLOCKS];
  e.content_len--;
  REFUSED();
  e = base[V_CREATE_BLOCKS];
  e.content_len = 0;
  REFUSED();
  e = base[V_UPDATE_BLOCKLIST];
  e.content_len = 64;
  REFUSED();
  /* SLINK: not INLINE, empty, size mismatch, NUL inside. */
  e = base[V_SLINK];
  e.content_kind = ENTRY_CONTENT_ZSTD;
  REFUSED();
  e = base[V_SLINK];
  e.content_len = 0;
  e.size = 0;
  REFUSED();
  e = base[V_SLINK];
  e.size = 3;
  REFUSED();
  e = base[V_SLINK];
  e.content[3] = '\0';
  REFUSED();
  /* GRANT: 64 or 66 bytes, wrong point tag, not INLINE, a size. */
  e = base[V_GRANT];
  e.content_len = 64;
  REFUSED();
  e = base[V_GRANT];
  e.content_len = 66;
  REFUSED();
  e = base[V_GRANT];
  e.content[0] = 0x02;
  REFUSED();
  e = base[V_GRANT];
  e.content_kind = ENTRY_CONTENT_NONE;
  REFUSED();
  e = base[V_GRANT];
  e.size = 65;
  REFUSED();
  /* Content or size on actions that carry none. */
  int none[] = {V_ROOT, V_MKDIR, V_LINK, V_RENAME, V_DELETE, V_MODE, V_REVERT, V_REVOKE, V_ACK};
  for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
    e = base[none[i]];
    set_content(&e, ENTRY_CONTENT_INLINE, "x", 1);
    e.size = 1;
    REFUSED();
    e = base[none[i]];
    e.content_kind = ENTRY_CONTENT_INLINE;
    REFUSED();
    e = base[none[i]];
    e.size = 7;
    REFUSED();
  }
  /* The author key must be an uncompressed point. */
  e = base[V_ACK];
  raw_from(&r, &e);
  uint8_t pub[KEY_PUBLIC_SIZE];
  memcpy(pub, e.pubkey, sizeof pub);
  pub[0] = 0x03;
  r.pubkey = pub;
  EXPECT_DECODE(&r, -BFS_EFORMAT);
#undef REFUSED
}

TEST(rejects_bad_mode_and_out_of_range_ids)
{
  load_bases();
  struct raw r;
  raw_from(&r, &base[V_MODE]);
  r.mode_n = varint(r.mode, 010000);
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  raw_from(&r, &base[V_MODE]);
  r.uid_n = varint(r.uid, (uint64_t)UINT32_MAX + 1);
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  raw_from(&r, &base[V_MODE]);
  r.gid_n = varint(r.gid, 1ull << 40);
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  struct entry e = base[V_MODE];
  e.mode = 010000;
  CHECK_INT(entry_sign(&e, test_key()), ==, -BFS_EFORMAT);
  /* The largest values are fine. */
  raw_from(&r, &base[V_MODE]);
  r.uid_n = varint(r.uid, UINT32_MAX);
  r.mode_n = varint(r.mode, 07777);
  EXPECT_DECODE(&r, 0);
}

TEST(rejects_overlong_and_oversized_varints)
{
  load_bases();
  struct raw r;
  /* 0 as two bytes. */
  raw_from(&r, &base[V_DELETE]);
  r.size[0] = 0x80;
  r.size[1] = 0x00;
  r.size_n = 2;
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  /* 5 as 0x85 0x00. */
  raw_from(&r, &base[V_DELETE]);
  r.mode[0] = 0x85;
  r.mode[1] = 0x00;
  r.mode_n = 2;
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  /* mtime padded to 10 bytes. */
  raw_from(&r, &base[V_DELETE]);
  uint8_t m[16];
  size_t mn = varint(m, base[V_DELETE].mtime_ns);
  CHECK_INT(mn, <, 10);
  for (size_t i = 0; i < 10; i++)
    r.mtime[i] = (uint8_t)((i < mn ? m[i] : 0) | (i < 9 ? 0x80 : 0));
  r.mtime_n = 10;
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  /* UINT64_MAX is the largest: ten bytes, the last 0x01. */
  raw_from(&r, &base[V_DELETE]);
  r.mtime_n = varint(r.mtime, UINT64_MAX);
  CHECK_INT(r.mtime_n, ==, 10);
  CHECK_INT(r.mtime[9], ==, 1);
  EXPECT_DECODE(&r, 0);
  /* Bits beyond 64: the tenth byte 0x02. */
  r.mtime[9] = 0x02;
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  /* Eleven bytes. */
  raw_from(&r, &base[V_DELETE]);
  for (int i = 0; i < 10; i++)
    r.mtime[i] = 0xff;
  r.mtime[10] = 0x01;
  r.mtime_n = 11;
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  /* Overlong content length. */
  raw_from(&r, &base[V_CREATE_INLINE]);
  r.clen[0] = (uint8_t)(r.clen[0] | 0x80);
  r.clen[1] = 0x00;
  r.clen_n = 2;
  EXPECT_DECODE(&r, -BFS_EFORMAT);
}

TEST(rejects_bad_names)
{
  load_bases();
  const char *bad[] = {"a/b", "/", ".", "..", "x\0y"};
  size_t lens[] = {3, 1, 1, 2, 3};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct raw r;
    raw_from(&r, &base[V_MKDIR]);
    r.name = bad[i];
    r.name_len = (int)lens[i];
    r.name_bytes = lens[i];
    EXPECT_DECODE(&r, -BFS_EFORMAT);
    struct entry e = base[V_MKDIR];
    memcpy(e.name, bad[i], lens[i]);
    e.name_len = (uint8_t)lens[i];
    CHECK_INT(entry_sign(&e, test_key()), ==, -BFS_EFORMAT);
  }
  /* A 256-byte name cannot even be expressed in the u8 length: 255 + one
   * extra byte shifts the rest and is refused. */
  char big[256];
  memset(big, 'a', sizeof big);
  struct raw r;
  raw_from(&r, &base[V_MKDIR]);
  r.name = big;
  r.name_len = 255;
  r.name_bytes = 256;
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  /* 255 is fine. */
  r.name_bytes = 255;
  EXPECT_DECODE(&r, 0);
}

TEST(rejects_content_overflow_and_trailing_bytes)
{
  load_bases();
  struct raw r;
  /* A content length beyond the bytes that remain. */
  raw_from(&r, &base[V_CREATE_INLINE]);
  r.clen_n = varint(r.clen, 200);
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  /* Beyond ENTRY_CONTENT_MAX. */
  r.clen_n = varint(r.clen, ENTRY_CONTENT_MAX + 1);
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  /* A name length beyond the bytes that remain. */
  raw_from(&r, &base[V_ACK]);
  r.name_len = 250;
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  /* One trailing byte (before the signature, or after it). */
  raw_from(&r, &base[V_CREATE_INLINE]);
  r.trailing = 1;
  EXPECT_DECODE(&r, -BFS_EFORMAT);
  uint8_t buf[ENTRY_MAX_SIZE + 1];
  struct entry d;
  int n = entry_encode(&base[V_CREATE_INLINE], buf, sizeof buf);
  CHECK_INT(n, >, 0);
  buf[n] = 0;
  CHECK_INT(entry_decode(buf, (size_t)n + 1, &d), ==, -BFS_EFORMAT);
  CHECK_OK(entry_decode(buf, (size_t)n, &d));
}

TEST(rejects_truncation_at_every_length)
{
  load_bases();
  for (int v = 0; v < V_COUNT; v++) {
    uint8_t buf[ENTRY_MAX_SIZE];
    int n = entry_encode(&base[v], buf, sizeof buf);
    CHECK_INT(n, >, 0);
    for (int len = 0; len < n; len++) {
      /* A copy of exactly LEN bytes on the heap, so ASan catches any overread. */
      uint8_t *copy = malloc((size_t)len + 1);
      memcpy(copy, buf, (size_t)len);
      struct entry d;
      int rc = entry_decode(copy, (size_t)len, &d);
      free(copy);
      CHECK_MSG(rc == -BFS_EFORMAT, "variant %d truncated to %d: %d", v, len, rc);
    }
  }
}

TEST(rejects_too_big)
{
  uint8_t *buf = calloc(1, 4096);
  struct entry d;
  for (size_t len = ENTRY_MAX_SIZE + 1; len < 4096; len += 97)
    CHECK_INT(entry_decode(buf, len, &d), ==, -BFS_ETOOBIG);
  free(buf);
}

/* ---- signatures ---- */

TEST(every_single_byte_change_is_caught)
{
  load_bases();
  int decoded_but_bad = 0, refused = 0;
  int vs[] = {V_CREATE_INLINE, V_GRANT_NAMED, V_RENAME};
  for (size_t k = 0; k < sizeof vs / sizeof vs[0]; k++) {
    uint8_t buf[ENTRY_MAX_SIZE];
    int n = entry_encode(&base[vs[k]], buf, sizeof buf);
    const hash_t *id = &base[vs[k]].id;
    for (int i = 0; i < n; i++) {
      /* Two changes per byte: one bit (varies with the position) and all bits. */
      uint8_t flips[2] = {(uint8_t)(1u << ((unsigned)i % 8)), 0xff};
      for (int f = 0; f < 2; f++) {
        buf[i] ^= flips[f];
        struct entry d;
        int rc = entry_decode(buf, (size_t)n, &d);
        if (rc == 0) {
          /* A changed body is a different entry; a changed signature does not verify. */
          if (i < n - KEY_SIGNATURE_SIZE)
            CHECK_MSG(!hash_eq(&d.id, id), "variant %d byte %d: same id after a change", vs[k], i);
          CHECK_MSG(entry_verify(&d) != 0, "variant %d byte %d: changed entry verifies", vs[k], i);
          decoded_but_bad++;
        } else {
          CHECK_INT(rc, <, 0);
          refused++;
        }
        buf[i] ^= flips[f];
      }
    }
    struct entry d;
    CHECK_OK(entry_decode(buf, (size_t)n, &d));
    CHECK_OK(entry_verify(&d));
  }
  CHECK_INT(decoded_but_bad, >, 0);
  CHECK_INT(refused, >, 0);
}

TEST(forged_and_wrong_key_signatures_fail)
{
  load_bases();
  struct entry e = base[V_CREATE_INLINE];
  CHECK_OK(entry_verify(&e));
  /* A signature copied from another entry. */
  memcpy(e.signature, base[V_MKDIR].signature, KEY_SIGNATURE_SIZE);
  CHECK_INT(entry_verify(&e), ==, -BFS_ESIGNATURE);
  /* Another valid key claims authorship: the id changes, and the signature is not that key's. */
  struct key *other;
  CHECK_OK(key_generate(&other));
  e = base[V_CREATE_INLINE];
  key_public(other, e.pubkey);
  uint8_t buf[ENTRY_MAX_SIZE];
  struct raw r;
  raw_from(&r, &e);
  size_t n = raw_encode(&r, buf);
  struct entry d;
  CHECK_OK(entry_decode(buf, n, &d));
  CHECK_INT(entry_verify(&d), ==, -BFS_ESIGNATURE);
  key_free(other);
  /* An author key that is not a point. */
  e = base[V_CREATE_INLINE];
  e.pubkey[40] ^= 0x55;
  raw_from(&r, &e);
  n = raw_encode(&r, buf);
  CHECK_OK(entry_decode(buf, n, &d));
  CHECK_INT(entry_verify(&d), ==, -BFS_EKEY);
  /* A struct changed after decoding. */
  d = base[V_MODE];
  CHECK_OK(entry_verify(&d));
  d.mode = 0777;
  CHECK_INT(entry_verify(&d), ==, -BFS_ESIGNATURE);
  /* An id that does not match the fields (the fields and signature are fine). */
  d = base[V_MODE];
  d.id.bytes[5] ^= 1;
  CHECK_INT(entry_verify(&d), ==, -BFS_ESIGNATURE);
  /* A grant of something that is no point, correctly signed. */
  e = base[V_GRANT];
  e.content[10] ^= 1;
  CHECK_OK(entry_sign(&e, test_key()));
  CHECK_INT(entry_verify(&e), ==, -BFS_EKEY);
}

TEST(signing_is_deterministic_and_id_excludes_signature)
{
  load_bases();
  struct entry a = base[V_RENAME], b = base[V_RENAME];
  CHECK_OK(entry_sign(&a, test_key()));
  CHECK_OK(entry_sign(&b, test_key()));
  CHECK(hash_eq(&a.id, &b.id));
  CHECK_MEM(a.signature, b.signature, KEY_SIGNATURE_SIZE);
  /* Changing any field changes the id. */
  b.mtime_ns++;
  CHECK_OK(entry_sign(&b, test_key()));
  CHECK(!hash_eq(&a.id, &b.id));
}

/*
 * Regenerates the fuzz seed corpus when BASEFS_WRITE_CORPUS names a
 * directory (tests/fuzz/corpus/fuzz_entry); otherwise checks only that
 * every seed it would write behaves as labelled.
 */
TEST(fuzz_seed_corpus)
{
  load_bases();
  const char *dir = getenv("BASEFS_WRITE_CORPUS");
  for (int v = 0; v < V_COUNT + 5; v++) {
    uint8_t buf[ENTRY_MAX_SIZE + 1];
    int n = entry_encode(&base[v < V_COUNT ? v : V_CREATE_INLINE], buf, sizeof buf);
    CHECK_INT(n, >, 0);
    char name[64];
    int want_ok = v < V_COUNT;
    if (v < V_COUNT) {
      snprintf(name, sizeof name, "valid-%02d-%s", v, entry_action_name(base[v].action));
    } else if (v == V_COUNT) {
      snprintf(name, sizeof name, "bad-truncated-body");
      n /= 2;
    } else if (v == V_COUNT + 1) {
      snprintf(name, sizeof name, "bad-truncated-signature");
      n -= 1;
    } else if (v == V_COUNT + 2) {
      snprintf(name, sizeof name, "bad-trailing-byte");
      buf[n++] = 0;
    } else if (v == V_COUNT + 3) {
      snprintf(name, sizeof name, "bad-garbage");
      for (int i = 0; i < 200; i++)
        buf[i] = (uint8_t)(i * 37 + 11);
      n = 200;
    } else {
      snprintf(name, sizeof name, "bad-version");
      buf[0] = 2;
    }
    struct entry d;
    CHECK_INT(entry_decode(buf, (size_t)n, &d) == 0, ==, want_ok);
    if (dir) {
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", dir, name);
      FILE *f = fopen(path, "wb");
      CHECK_MSG(f, "cannot write %s", path);
      CHECK_INT(fwrite(buf, 1, (size_t)n, f), ==, n);
      fclose(f);
    }
  }
}

/*
 * The other direction of canonicity: any struct the encoder accepts decodes
 * back to the same fields (and the same id as entry_sign would give). Random
 * structs, biased toward the shapes of the action table.
 */
TEST(encode_accepts_only_what_decode_gives_back)
{
  load_bases();
  int accepted = 0, refused = 0;
  for (int round = 0; round < 200000; round++) {
    struct entry e;
    memset(&e, 0, sizeof e);
    uint64_t r = test_rand();
    e.action = (uint8_t)(r % (ENTRY_ACTION_MAX + 2));
    e.content_kind = (uint8_t)((r >> 8) % (ENTRY_CONTENT_MAX_KIND + 2));
    if (r & (1ull << 16))
      some_hash(&e.parent, (uint8_t)round);
    if (r & (1ull << 17))
      some_hash(&e.dir, (uint8_t)(round + 1));
    if (r & (1ull << 18))
      some_hash(&e.target, (uint8_t)(round + 2));
    uint64_t widths[] = {0, 1, 127, 128, 16383, 16384, UINT32_MAX, UINT64_MAX};
    e.mtime_ns = widths[(r >> 19) % 8];
    e.mode = (uint32_t)((r >> 22) % 3 == 0 ? 010000 : (r >> 24) & 07777);
    e.uid = (uint32_t)widths[(r >> 26) % 7];
    e.gid = (uint32_t)(r >> 29);
    static const char *names[] = {"", "a", ".", "..", "a/b", "ok.conf"};
    set_name(&e, names[(r >> 40) % 6]);
    size_t lens[] = {0, 1, 14, 31, 32, 64, 65, 96, 600, ENTRY_CONTENT_MAX};
    e.content_len = (uint16_t)lens[(r >> 43) % 10];
    for (int i = 0; i < e.content_len; i++)
      e.content[i] = (uint8_t)(i * 31 + (int)(r >> 50));
    if ((r >> 47) & 1)
      e.content[0] = 0x04;
    uint64_t sizes[] = {0, e.content_len, 12345};
    e.size = sizes[(r >> 48) % 3];
    memcpy(e.pubkey, base[V_ACK].pubkey, KEY_PUBLIC_SIZE);
    memset(e.signature, (int)(r >> 56), KEY_SIGNATURE_SIZE);
    if (round % 2) {
      /* A valid entry with one field taken from the random one. */
      struct entry rnd = e;
      e = base[round / 2 % V_COUNT];
      switch ((r >> 60) % 8) {
      case 0: e.mtime_ns = rnd.mtime_ns; break;
      case 1: e.mode = rnd.mode; break;
      case 2: e.uid = rnd.uid, e.gid = rnd.gid; break;
      case 3: e.size = rnd.size; break;
      case 4: memcpy(e.name, rnd.name, sizeof e.name), e.name_len = rnd.name_len; break;
      case 5: memcpy(e.content, rnd.content, sizeof e.content), e.content_len = rnd.content_len; break;
      case 6: e.parent = rnd.parent, e.dir = rnd.dir; break;
      case 7: e.content_kind = rnd.content_kind; break;
      }
    }

    uint8_t buf[ENTRY_MAX_SIZE], again[ENTRY_MAX_SIZE];
    int n = entry_encode(&e, buf, sizeof buf);
    if (n < 0) {
      CHECK_MSG(n == -BFS_EFORMAT || n == -BFS_ETOOBIG, "encode gave %d", n);
      refused++;
      continue;
    }
    accepted++;
    struct entry d;
    int rc = entry_decode(buf, (size_t)n, &d);
    CHECK_MSG(rc == 0, "round %d: encoded %s does not decode: %d", round, entry_action_name(e.action), rc);
    hash_buf(buf, (size_t)n - KEY_SIGNATURE_SIZE, &e.id);
    check_same(&e, &d);
    CHECK_INT(entry_encode(&d, again, sizeof again), ==, n);
    CHECK_MEM(buf, again, (size_t)n);
  }
  CHECK_INT(accepted, >, 1000);
  CHECK_INT(refused, >, 1000);
}
