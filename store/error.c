#include "store/error.h"

#include <string.h>

const char *bfs_strerror(int err)
{
  if (err < 0)
    err = -err;
  switch (err) {
  case BFS_EFORMAT:
    return "malformed data";
  case BFS_ESIGNATURE:
    return "bad signature";
  case BFS_ECHECKSUM:
    return "stored data is corrupt (checksum or hash mismatch)";
  case BFS_ENOGRANT:
    return "the key holds no grant covering this path";
  case BFS_ENOPARENT:
    return "the entry's parent is unknown";
  case BFS_EKEY:
    return "not a usable P-256 key";
  case BFS_ETOOBIG:
    return "too large for the format";
  case BFS_EKIND:
    return "the entry refers to an entry of the wrong kind";
  default:
    return strerror(err);
  }
}
