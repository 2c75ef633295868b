/*
 * Replays a fuzz target's corpus without libFuzzer, so every build (gcc
 * included) runs each decoder over its seeds and every crash input ever
 * found. Arguments are files or directories of inputs.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return -1;
  }
  uint8_t *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len == cap) {
      cap = cap ? cap * 2 : 4096;
      buf = realloc(buf, cap);
      if (!buf)
        abort();
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    if (n == 0)
      break;
    len += n;
  }
  fclose(f);
  LLVMFuzzerTestOneInput(buf, len);
  free(buf);
  return 0;
}

static int replay(const char *path, int *count)
{
  struct stat st;
  if (stat(path, &st) < 0) {
    perror(path);
    return -1;
  }
  if (!S_ISDIR(st.st_mode)) {
    (*count)++;
    return replay_file(path);
  }
  DIR *d = opendir(path);
  if (!d) {
    perror(path);
    return -1;
  }
  struct dirent *de;
  int rc = 0;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.')
      continue;
    char child[4096];
    snprintf(child, sizeof child, "%s/%s", path, de->d_name);
    if (replay(child, count) < 0)
      rc = -1;
  }
  closedir(d);
  return rc;
}

int main(int argc, char **argv)
{
  int count = 0, rc = 0;
  for (int i = 1; i < argc; i++)
    if (replay(argv[i], &count) < 0)
      rc = 1;
  printf("%d inputs replayed\n", count);
  if (count == 0) {
    fprintf(stderr, "empty corpus\n");
    return 1;
  }
  return rc;
}
