/* NFSv3 file handles; see fh.h. */
#include "server/fh.h"

#include <errno.h>
#include <string.h>

uint32_t fh_encode(const hash_t *root, const struct view_node *node, uint8_t *out)
{
  out[0] = FH_FORMAT;
  out[1] = node->kind;
  out[2] = node->readonly ? 1 : 0;
  out[3] = 0;
  memcpy(out + 4, root, FH_TAG_SIZE);
  memcpy(out + 4 + FH_TAG_SIZE, &node->id, HASH_SIZE);
  return FH_SIZE;
}

int fh_decode(const hash_t *root, const uint8_t *fh, uint32_t len, struct view_node *out)
{
  if (len != FH_SIZE || fh[0] != FH_FORMAT || fh[1] > VIEW_NODE_CONFLICT_OBJ || fh[2] > 1 ||
      fh[3] != 0)
    return -EBADMSG;
  if (memcmp(fh + 4, root, FH_TAG_SIZE) != 0)
    return -ESTALE;
  memset(out, 0, sizeof *out);
  out->kind = fh[1];
  out->readonly = fh[2];
  memcpy(&out->id, fh + 4 + FH_TAG_SIZE, HASH_SIZE);
  /* Virtual directories carry no id; objects and versions always do. */
  bool virt = out->kind == VIEW_NODE_BASEFS || out->kind == VIEW_NODE_HISTORY ||
              out->kind == VIEW_NODE_CONFLICTS;
  if (virt != hash_is_zero(&out->id))
    return -EBADMSG;
  return 0;
}
