/* The control socket's libuv side; see ctl.h. */
#include "server/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "store/fs.h"

struct ctlconn {
  uv_pipe_t pipe;
  struct ctlsrv *srv;
  struct ctlconn *next;
  uint8_t *buf; /* received bytes not yet handled */
  size_t len, cap;
  bool closing;
};

struct ctlsrv {
  uv_pipe_t listener;
  struct fs *fs;
  char dir[4096];
  void (*before)(void *arg);
  void *arg;
  struct ctlconn *conns;
  unsigned long requests;
  int open_handles;
  void (*done)(void *arg);
  void *done_arg;
};

struct ctlwrite {
  uv_write_t req;
  uint8_t *data;
};

static void handle_closed(uv_handle_t *h)
{
  struct ctlsrv *s = h->data;
  if (h != (uv_handle_t *)&s->listener) {
    struct ctlconn *c = (struct ctlconn *)h;
    free(c->buf);
    free(c);
  }
  if (--s->open_handles == 0) {
    void (*done)(void *) = s->done;
    void *arg = s->done_arg;
    free(s);
    if (done)
      done(arg);
  }
}

static void conn_close(struct ctlconn *c)
{
  if (c->closing)
    return;
  c->closing = true;
  for (struct ctlconn **p = &c->srv->conns; *p; p = &(*p)->next)
    if (*p == c) {
      *p = c->next;
      break;
    }
  uv_close((uv_handle_t *)&c->pipe, handle_closed);
}

static void write_done(uv_write_t *req, int status)
{
  struct ctlwrite *w = (struct ctlwrite *)req;
  (void)status;
  free(w->data);
  free(w);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
  (void)hint;
  struct ctlconn *c = (struct ctlconn *)h;
  size_t want = c->len + 65536;
  if (want > c->cap) {
    size_t cap = c->cap ? c->cap : 65536;
    while (cap < want)
      cap *= 2;
    uint8_t *bigger = realloc(c->buf, cap);
    if (!bigger) {
      *buf = uv_buf_init(NULL, 0);
      return;
    }
    c->buf = bigger;
    c->cap = cap;
  }
  *buf = uv_buf_init((char *)c->buf + c->len, (unsigned)(c->cap - c->len));
}

/* Handles every complete frame in C's buffer; false to close. */
static bool handle_frames(struct ctlconn *c)
{
  struct ctlsrv *s = c->srv;
  size_t off = 0;
  bool ok = true;
  while (c->len - off >= 4) {
    const uint8_t *h = c->buf + off;
    size_t len = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
    if (len > FS_CTL_FRAME_MAX) {
      ok = false;
      break;
    }
    if (c->len - off - 4 < len)
      break;
    if (s->before)
      s->before(s->arg);
    struct ctlwrite *w = malloc(sizeof *w);
    uint8_t *resp = malloc(FS_CTL_RESP_MAX + 4);
    int n = w && resp ? fs_ctl_handle(s->fs, h + 4, len, resp + 4, FS_CTL_RESP_MAX) : -ENOMEM;
    s->requests++;
    if (n < 0) {
      free(w);
      free(resp);
      ok = false;
      break;
    }
    resp[0] = (uint8_t)n;
    resp[1] = (uint8_t)(n >> 8);
    resp[2] = (uint8_t)(n >> 16);
    resp[3] = (uint8_t)(n >> 24);
    w->data = resp;
    uv_buf_t b = uv_buf_init((char *)resp, (unsigned)(4 + n));
    if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, write_done) < 0) {
      free(resp);
      free(w);
      ok = false;
      break;
    }
    off += 4 + len;
  }
  memmove(c->buf, c->buf + off, c->len - off);
  c->len -= off;
  return ok;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
  (void)buf;
  struct ctlconn *c = (struct ctlconn *)st;
  if (n < 0) {
    conn_close(c);
    return;
  }
  c->len += (size_t)n;
  if (!handle_frames(c))
    conn_close(c);
}

static void on_connection(uv_stream_t *l, int status)
{
  struct ctlsrv *s = l->data;
  if (status < 0)
    return;
  struct ctlconn *c = calloc(1, sizeof *c);
  if (!c)
    return;
  c->srv = s;
  uv_pipe_init(l->loop, &c->pipe, 0);
  c->pipe.data = s;
  s->open_handles++;
  c->next = s->conns;
  s->conns = c;
  if (uv_accept(l, (uv_stream_t *)&c->pipe) < 0 ||
      uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) < 0)
    conn_close(c);
}

/* socket + bind("ctl") + listen from inside DIR, back to the old cwd. */
static int bind_relative(const char *dir)
{
  int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cwd < 0)
    return -errno;
  int r = 0, fd = -1;
  if (chdir(dir) < 0) {
    r = -errno;
    close(cwd);
    return r;
  }
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  strcpy(sa.sun_path, "ctl");
  unlink("ctl"); /* a stale socket: we hold the filesystem's lock */
  mode_t old = umask(0077);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 64) < 0)
    r = -errno;
  umask(old);
  if (fchdir(cwd) < 0 && r == 0)
    r = -errno;
  close(cwd);
  if (r < 0) {
    if (fd >= 0)
      close(fd);
    return r;
  }
  return fd;
}

int ctlsrv_start(uv_loop_t *loop, struct fs *fs, const char *dir, void (*before)(void *arg),
                 void *arg, struct ctlsrv **out)
{
  struct ctlsrv *s = calloc(1, sizeof *s);
  if (!s)
    return -ENOMEM;
  if (strlen(dir) >= sizeof s->dir) {
    free(s);
    return -ENAMETOOLONG;
  }
  strcpy(s->dir, dir);
  s->fs = fs;
  s->before = before;
  s->arg = arg;
  int fd = bind_relative(dir);
  if (fd < 0) {
    free(s);
    return fd;
  }
  uv_pipe_init(loop, &s->listener, 0);
  s->listener.data = s;
  s->open_handles = 1;
  int r = uv_pipe_open(&s->listener, fd);
  if (r == 0)
    r = uv_listen((uv_stream_t *)&s->listener, 64, on_connection);
  if (r < 0) {
    /* The handle owns fd once opened; closing it frees s on the loop. */
    if (uv_fileno((uv_handle_t *)&s->listener, &(uv_os_fd_t){0}) != 0)
      close(fd);
    uv_close((uv_handle_t *)&s->listener, handle_closed);
    return r;
  }
  *out = s;
  return 0;
}

unsigned long ctlsrv_requests(const struct ctlsrv *s) { return s->requests; }

void ctlsrv_stop(struct ctlsrv *s, void (*done)(void *arg), void *arg)
{
  s->done = done;
  s->done_arg = arg;
  char path[4200];
  snprintf(path, sizeof path, "%s/ctl", s->dir);
  unlink(path);
  while (s->conns)
    conn_close(s->conns);
  uv_close((uv_handle_t *)&s->listener, handle_closed);
}
