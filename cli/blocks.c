/*
 * basefs blocks NAME: what the block store holds, and the state of the
 * versions whose content lives in blocks: complete (every block present) or
 * incomplete (blocks still to fetch; such a version does not count yet).
 */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>

#include "store/blocks.h"
#include "store/content.h"
#include "store/entry.h"
#include "store/fs.h"

struct tally {
  struct blocks *bs;
  unsigned long versions, complete, incomplete, missing;
};

static int count_version(const struct entry *e, void *arg)
{
  struct tally *t = arg;
  if (e->action != ENTRY_WRITE || (e->content_kind != ENTRY_CONTENT_BLOCKS &&
                                   e->content_kind != ENTRY_CONTENT_BLOCKLIST))
    return 0;
  t->versions++;
  hash_t *missing = NULL;
  ssize_t n = t->bs ? content_missing(t->bs, e->content_kind, e->content, e->content_len, &missing)
                    : 1;
  free(missing);
  if (n == 0) {
    t->complete++;
  } else {
    t->incomplete++;
    t->missing += n > 0 ? (unsigned long)n : 1;
  }
  return 0;
}

static int run_blocks(int argc, char **argv)
{
  struct cli_args a;
  CLI_PARSE(argc, argv, "", 1, 1, &a);
  struct fs *fs = cli_open_fs(a.pos[0], false);
  if (!fs)
    return 1;
  int status = 0;
  struct blocks_stats st = {0};
  struct tally t = {.bs = fs_blocks(fs)};
  int r = t.bs ? blocks_stats(t.bs, &st) : 0;
  if (r < 0)
    status = cli_fail(r, "cannot read the block store");
  else if ((r = fs_foreach_entry(fs, count_version, &t)) < 0)
    status = cli_fail(r, "cannot read the log");
  if (!status) {
    printf("blocks: %llu stored, %llu bytes, %llu bytes on disk\n",
           (unsigned long long)st.count, (unsigned long long)st.raw_bytes,
           (unsigned long long)st.stored_bytes);
    printf("versions in blocks: %lu, completed %lu, receiving %lu (%lu blocks missing)\n",
           t.versions, t.complete, t.incomplete, t.missing);
  }
  if (cli_close_fs(fs))
    status = 1;
  return status;
}

CLI_COMMAND(blocks, "blocks", "blocks NAME", "block counts and the state of block-stored versions",
            run_blocks)
