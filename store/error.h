/*
 * One error idiom across basefs: functions return 0 (or a count) on success
 * and a negative number on failure: -errno for system errors, or one of the
 * -BFS_E* codes below for what errno cannot say. Nothing below the CLI prints.
 */
#ifndef BASEFS_STORE_ERROR_H
#define BASEFS_STORE_ERROR_H

enum bfs_error {
  BFS_EFIRST = 10000,
  BFS_EFORMAT,      /* malformed bytes: bad length, enum, version, trailing data */
  BFS_ESIGNATURE,   /* signature does not verify */
  BFS_ECHECKSUM,    /* stored data does not match its checksum or hash */
  BFS_ENOGRANT,     /* the signing key holds no grant covering the path */
  BFS_ENOPARENT,    /* the entry's parent is not (yet) known */
  BFS_EKEY,         /* a key file is unreadable or not a P-256 key */
  BFS_ETOOBIG,      /* larger than the format allows */
  BFS_EKIND,        /* an entry refers to an entry of the wrong kind */
  BFS_ELAST
};

/* A short human sentence for any error this project returns. */
const char *bfs_strerror(int err);

#endif
