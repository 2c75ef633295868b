#include "store/zeros.h"

#include <errno.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define ZEROS_PAGE 4096u

bool zeros_room(int fd)
{
  struct statvfs sv;
  return fstatvfs(fd, &sv) == 0 && (uint64_t)sv.f_bavail * sv.f_frsize >= ZEROS_MIN_FREE;
}

int zeros_ahead(int fd, uint64_t end, uint64_t ahead, uint64_t *zeroed)
{
  if (!zeros_room(fd))
    return -1;
  if (*zeroed >= end + ahead / 2)
    return 0;
  static const uint8_t zeros[16u << 10];
  uint64_t to = (end + ahead) / ZEROS_PAGE * ZEROS_PAGE;
  while (*zeroed < to) {
    size_t n = to - *zeroed < sizeof zeros ? (size_t)(to - *zeroed) : sizeof zeros;
    ssize_t k = pwrite(fd, zeros, n, (off_t)*zeroed);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return -1;
    *zeroed += (uint64_t)k;
  }
  return 0;
}
