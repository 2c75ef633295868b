#include "tests/test.h"

#include <errno.h>

#include "store/hash.h"

TEST(sha256_known_vector)
{
  hash_t h;
  char hex[HASH_HEX_SIZE];
  hash_buf("abc", 3, &h);
  hash_to_hex(&h, hex);
  CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
}

TEST(incremental_equals_one_shot)
{
  hash_t a, b;
  hash_ctx_t ctx;
  hash_init(&ctx);
  hash_update(&ctx, "hello ", 6);
  hash_update(&ctx, "world", 5);
  hash_final(&ctx, &a);
  hash_buf("hello world", 11, &b);
  CHECK(hash_eq(&a, &b));
}

TEST(hex_round_trip_and_rejects)
{
  hash_t h, back;
  char hex[HASH_HEX_SIZE];
  for (int i = 0; i < HASH_SIZE; i++)
    h.bytes[i] = (uint8_t)test_rand();
  hash_to_hex(&h, hex);
  CHECK_OK(hash_from_hex(hex, &back));
  CHECK(hash_eq(&h, &back));
  hex[10] = 'g';
  CHECK_INT(hash_from_hex(hex, &back), ==, -EINVAL);
  CHECK_INT(hash_from_hex("abcd", &back), ==, -EINVAL);
  hash_t zero = {{0}};
  CHECK(hash_is_zero(&zero));
  CHECK(!hash_is_zero(&h));
}
