/* bench_nfs: the LFS-style workload through libnfs against one or more NFSv3
 * servers (e.g. basefs and nfs-ganesha) and the same operations on a local
 * directory with an fsync per file, in the same run, interleaved by round.
 *
 *   bench_nfs --nfs basefs=127.0.0.1:2049 --nfs ganesha=127.0.0.1:12049:12050 \
 *             --local /tmp/dir [--small] [--rounds N] ...
 *
 * The first --nfs target is the subject, the second the reference: the table
 * prints subject/reference and subject/local ratios next to the issue's targets
 * (metadata >= 2x reference, every data phase >= 1x reference, small-file
 * rewrite at least 1/3 of the local disk's rate).
 *
 * Phases, per target and round (each in a fresh directory /bench-PID-rN):
 *   small files: F files of 4 KiB in D directories: create+write+COMMIT (fsync
 *   locally), read, rewrite+COMMIT, then LOOKUP, GETATTR, READDIRPLUS rates with
 *   1 and Q requests in flight (raw rpc_nfs3_*_async with a poll loop), delete.
 *   big file: B MiB, sequential 64 KiB and 4 KiB writes (+COMMIT) and reads,
 *   random 4 KiB and 64 KiB writes (+COMMIT) and reads.
 * One request in flight for everything but the "xQ" metadata rows (libnfs's
 * sync API). Rates are medians over the rounds. With --pid NAME=PID a second
 * table gives that server's CPU time per operation (all threads, from
 * /proc/PID/task/TID/schedstat): on a loaded machine it moves much less than
 * the rates do; next to it, the bench's own thread CPU per operation (the
 * libnfs client runs on that one thread). A third table gives, per phase,
 * the shares of the wall time the client's CPU, the client's and server's
 * CPU together, and the client's waits for a CPU took: whether the client,
 * the pair taking turns, or other load set the rate.
 *
 * Evidence for the "x1" rows: every x1 phase alternates blocks of its calls
 * with as many round trips to the RPC floor, a trivial TCP echo server on a
 * thread of this process (loopback, TCP_NODELAY, epoll), one message in
 * flight (write a GETATTR-sized call, poll, read a GETATTR-sized reply), so
 * both meet the same load and idle states of the machine; the echo's time is
 * left out of the phase. Two placements: the echo server on the client's CPU
 * (the fastest a round trip gets) and on another CPU (a cross-CPU wake-up,
 * several times slower on a VM). No server answers one request at a time
 * faster than the faster of them, so an x1 target whose 2x the reference is
 * over it (measured alongside the reference) is marked "above floor".
 * Benchmarks are not tests: a failing operation prints an error and its row
 * shows "ERR".
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-nfs.h>

#define MAX_TARGETS 4
#define MAX_ROUNDS 15
#define FH_MAX 64

/* libnfs 4.0 keeps struct nfs_fh private; nfs_get_fh() returns this shape
 * (libnfs-private.h: int len; char *val). Checked for sanity on use. */
struct mirror_fh {
	int len;
	char *val;
};

struct fhbuf {
	uint32_t len;
	char val[FH_MAX];
};

struct target {
	char name[32];
	bool local;
	char dir[512];   /* local: directory */
	char host[128];  /* nfs */
	int nfs_port, mnt_port;
	int pid;         /* the server's process, for its CPU time; 0: unknown */
	struct nfs_context *nfs;
};

enum phase {
	P_CREATE, P_READ, P_REWRITE, P_DELETE,
	P_LOOKUP1, P_LOOKUPQ, P_GETATTR1, P_GETATTRQ, P_RDP1, P_RDPQ,
	P_SW64, P_SR64, P_SW4, P_SR4, P_RW4, P_RR4, P_RW64, P_RR64,
	P_COUNT
};

enum kind { K_DATA, K_META, K_REWRITE };

static const struct {
	const char *name;
	const char *unit;
	enum kind kind;
} phases[P_COUNT] = {
	[P_CREATE] = {"4K create+commit", "files/s", K_DATA},
	[P_READ] = {"4K read", "files/s", K_DATA},
	[P_REWRITE] = {"4K rewrite+commit", "files/s", K_REWRITE},
	[P_DELETE] = {"4K delete", "files/s", K_DATA},
	[P_LOOKUP1] = {"LOOKUP x1", "ops/s", K_META},
	[P_LOOKUPQ] = {"LOOKUP xQ", "ops/s", K_META},
	[P_GETATTR1] = {"GETATTR x1", "ops/s", K_META},
	[P_GETATTRQ] = {"GETATTR xQ", "ops/s", K_META},
	[P_RDP1] = {"READDIRPLUS x1", "ops/s", K_META},
	[P_RDPQ] = {"READDIRPLUS xQ", "ops/s", K_META},
	[P_SW64] = {"big seq write 64K", "MB/s", K_DATA},
	[P_SR64] = {"big seq read 64K", "MB/s", K_DATA},
	[P_SW4] = {"big seq write 4K", "MB/s", K_DATA},
	[P_SR4] = {"big seq read 4K", "MB/s", K_DATA},
	[P_RW4] = {"big rand write 4K", "MB/s", K_DATA},
	[P_RR4] = {"big rand read 4K", "MB/s", K_DATA},
	[P_RW64] = {"big rand write 64K", "MB/s", K_DATA},
	[P_RR64] = {"big rand read 64K", "MB/s", K_DATA},
};

static struct {
	int files, dirs, depth, rounds, rdp_ops;
	uint64_t big;       /* bytes */
	int rand4, rand64;  /* ops */
	const char *only;   /* run only phases whose name contains this */
} cfg = {10000, 100, 16, 3, 1000, 120ull << 20, 0, 0, NULL};

static struct target targets[MAX_TARGETS];
static int ntargets;
static double results[MAX_TARGETS][P_COUNT][MAX_ROUNDS]; /* <0: error, 0: not run */
/* server CPU seconds (utime+stime) per operation, when its pid is known */
static double cpu_per_op[MAX_TARGETS][P_COUNT][MAX_ROUNDS];
/* this process's (the client's) thread CPU seconds per operation; over the
 * phase's wall time: that CPU time, client and server CPU time together, and
 * the client's time waiting for a CPU (runnable, not running) */
static double client_cpu_per_op[MAX_TARGETS][P_COUNT][MAX_ROUNDS];
static double client_busy[MAX_TARGETS][P_COUNT][MAX_ROUNDS];
static double pair_busy[MAX_TARGETS][P_COUNT][MAX_ROUNDS];
static double client_wait[MAX_TARGETS][P_COUNT][MAX_ROUNDS];
/* the RPC floor, measured alongside each x1 phase of each target (the
 * loopback round trip moves with the machine's load and idle states) with
 * the echo server on the client's CPU and on another one (a wake-up across
 * CPUs costs several times more): echo round trips/s, client and echo server
 * thread CPU seconds per round trip, client and client+server CPU over wall
 * time (0: not run, <0: failed) */
enum { ON_SAME_CPU, ON_OTHER_CPU, PLACEMENTS };
static const char *const floor_row[PLACEMENTS] = {"RPC floor x1 1 CPU", "RPC floor x1 2 CPUs"};
static double floor_rate[PLACEMENTS][MAX_TARGETS][P_COUNT][MAX_ROUNDS];
static double floor_client_cpu[PLACEMENTS][MAX_TARGETS][P_COUNT][MAX_ROUNDS];
static double floor_server_cpu[PLACEMENTS][MAX_TARGETS][P_COUNT][MAX_ROUNDS];
static double floor_busy[PLACEMENTS][MAX_TARGETS][P_COUNT][MAX_ROUNDS];
static double floor_pair[PLACEMENTS][MAX_TARGETS][P_COUNT][MAX_ROUNDS];

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of PID in seconds, all its threads (sum of the first field of
 * /proc/PID/task/TID/schedstat, nanoseconds), or -1. */
static double proc_cpu(int pid)
{
	if (pid <= 0)
		return -1;
	char path[300];
	snprintf(path, sizeof path, "/proc/%d/task", pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	unsigned long long sum = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, "/proc/%d/task/%.20s/schedstat", pid, de->d_name);
		FILE *f = fopen(path, "r");
		unsigned long long ns;
		if (f && fscanf(f, "%llu", &ns) == 1)
			sum += ns;
		if (f)
			fclose(f);
	}
	closedir(d);
	return (double)sum * 1e-9;
}

/* CPU time of the calling thread in seconds. */
static double thread_cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Seconds the calling thread spent runnable but waiting for a CPU (second
 * field of its schedstat), or -1. */
static double thread_wait(void)
{
	FILE *f = fopen("/proc/thread-self/schedstat", "r");
	unsigned long long run, wait;
	int n = f ? fscanf(f, "%llu %llu", &run, &wait) : 0;
	if (f)
		fclose(f);
	return n == 2 ? (double)wait * 1e-9 : -1;
}

/* Waits (up to 3 s) until the server uses under 1% of a core over 20 ms and
 * returns its CPU time then: a server's background work (basefs refills its
 * pool of signature nonces after the writes that used them) is charged to
 * the phase that caused it, never to the next one. */
static double server_settled(int pid)
{
	double c = proc_cpu(pid);
	for (int i = 0; c >= 0 && i < 150; i++) {
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
		double c2 = proc_cpu(pid);
		if (c2 < 0 || c2 - c < 0.2e-3)
			return c2;
		c = c2;
	}
	return c;
}

/* Records a phase: rate (or -1), the server's and the client's CPU per
 * operation, and the shares of the wall time they took. */
static double phase_cpu0, phase_client0, phase_t0, phase_start, phase_wait0;
static void phase_begin(const struct target *t)
{
	phase_cpu0 = server_settled(t->pid);
	phase_wait0 = thread_wait();
	phase_client0 = thread_cpu();
	phase_t0 = phase_start = now();
}
/* Leaves time spent on something else (the echo) out of the phase. */
static void phase_skip(double wall, double cpu)
{
	phase_t0 += wall;
	phase_client0 += cpu;
}
static void phase_end(const struct target *t, int ti, enum phase p, int round, double rate, double ops)
{
	double t1 = now();
	double client = thread_cpu() - phase_client0, wall = t1 - phase_t0;
	double w1 = thread_wait();
	results[ti][p][round] = rate;
	bool ran = rate > 0 && ops > 0 && wall > 0;
	if (ran) {
		client_cpu_per_op[ti][p][round] = client / ops;
		client_busy[ti][p][round] = client / wall;
		/* the echo's share included on both sides */
		if (phase_wait0 >= 0 && w1 >= phase_wait0 && t1 > phase_start)
			client_wait[ti][p][round] = (w1 - phase_wait0) / (t1 - phase_start);
	}
	double c_end = proc_cpu(t->pid), c1 = server_settled(t->pid);
	/* threads that exited take their time with them (ganesha's pool): such
	 * a phase (negative sum) is left unmeasured */
	if (ran && phase_cpu0 >= 0 && c1 >= phase_cpu0) {
		cpu_per_op[ti][p][round] = (c1 - phase_cpu0) / ops;
		/* what ran while the phase ran */
		if (c_end >= phase_cpu0)
			pair_busy[ti][p][round] = (client + c_end - phase_cpu0) / wall;
	}
}

static uint64_t rng_state;
static uint64_t rng(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static void fill(char *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
	for (size_t i = 0; i + 8 <= len; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(buf + i, &x, 8);
	}
}

static bool want(enum phase p)
{
	return !cfg.only || strstr(phases[p].name, cfg.only);
}

/* ---- per-target file operations: local with fsync, or libnfs sync API ---- */

struct handle {
	int fd;
	struct nfsfh *fh;
};

static int t_fail(struct target *t, const char *what, const char *path, int rc)
{
	if (t->local)
		fprintf(stderr, "%s: %s %s: %s\n", t->name, what, path, strerror(-rc));
	else
		fprintf(stderr, "%s: %s %s: %s\n", t->name, what, path, nfs_get_error(t->nfs));
	return rc < 0 ? rc : -EIO;
}

static void lpath(struct target *t, const char *path, char *out, size_t n)
{
	snprintf(out, n, "%s%s", t->dir, path);
}

static int t_mkdir(struct target *t, const char *path)
{
	if (t->local) {
		char p[1024];
		lpath(t, path, p, sizeof p);
		return mkdir(p, 0755) == 0 ? 0 : t_fail(t, "mkdir", path, -errno);
	}
	int rc = nfs_mkdir(t->nfs, path);
	return rc == 0 ? 0 : t_fail(t, "mkdir", path, rc);
}

static int t_rmdir(struct target *t, const char *path)
{
	if (t->local) {
		char p[1024];
		lpath(t, path, p, sizeof p);
		return rmdir(p) == 0 ? 0 : t_fail(t, "rmdir", path, -errno);
	}
	int rc = nfs_rmdir(t->nfs, path);
	return rc == 0 ? 0 : t_fail(t, "rmdir", path, rc);
}

static int t_open(struct target *t, const char *path, int flags, struct handle *h)
{
	if (t->local) {
		char p[1024];
		lpath(t, path, p, sizeof p);
		h->fd = open(p, flags, 0644);
		return h->fd >= 0 ? 0 : t_fail(t, "open", path, -errno);
	}
	int rc = (flags & O_CREAT) ? nfs_creat(t->nfs, path, 0644, &h->fh)
	                           : nfs_open(t->nfs, path, flags, &h->fh);
	return rc == 0 ? 0 : t_fail(t, "open", path, rc);
}

static int t_pwrite(struct target *t, struct handle *h, const char *buf, size_t len, uint64_t off)
{
	if (t->local) {
		ssize_t n = pwrite(h->fd, buf, len, (off_t)off);
		return n == (ssize_t)len ? 0 : t_fail(t, "pwrite", "", n < 0 ? -errno : -EIO);
	}
	int n = nfs_pwrite(t->nfs, h->fh, off, len, buf);
	return n == (int)len ? 0 : t_fail(t, "pwrite", "", n < 0 ? n : -EIO);
}

static int t_pread(struct target *t, struct handle *h, char *buf, size_t len, uint64_t off)
{
	if (t->local) {
		ssize_t n = pread(h->fd, buf, len, (off_t)off);
		return n == (ssize_t)len ? 0 : t_fail(t, "pread", "", n < 0 ? -errno : -EIO);
	}
	int n = nfs_pread(t->nfs, h->fh, off, len, buf);
	return n == (int)len ? 0 : t_fail(t, "pread", "", n < 0 ? n : -EIO);
}

static int t_fsync(struct target *t, struct handle *h)
{
	if (t->local)
		return fsync(h->fd) == 0 ? 0 : t_fail(t, "fsync", "", -errno);
	int rc = nfs_fsync(t->nfs, h->fh);
	return rc == 0 ? 0 : t_fail(t, "commit", "", rc);
}

static void t_close(struct target *t, struct handle *h)
{
	if (t->local)
		close(h->fd);
	else
		nfs_close(t->nfs, h->fh);
}

static int t_unlink(struct target *t, const char *path)
{
	if (t->local) {
		char p[1024];
		lpath(t, path, p, sizeof p);
		return unlink(p) == 0 ? 0 : t_fail(t, "unlink", path, -errno);
	}
	int rc = nfs_unlink(t->nfs, path);
	return rc == 0 ? 0 : t_fail(t, "unlink", path, rc);
}

static int t_connect(struct target *t)
{
	if (t->local)
		return 0;
	t->nfs = nfs_init_context();
	if (!t->nfs)
		return -ENOMEM;
	char url[512];
	snprintf(url, sizeof url, "nfs://%s/basefs?version=3&nfsport=%d&mountport=%d",
	         t->host, t->nfs_port, t->mnt_port);
	struct nfs_url *u = nfs_parse_url_dir(t->nfs, url);
	if (!u) {
		fprintf(stderr, "%s: bad url %s: %s\n", t->name, url, nfs_get_error(t->nfs));
		return -EINVAL;
	}
	int rc = nfs_mount(t->nfs, u->server, u->path);
	nfs_destroy_url(u);
	if (rc != 0) {
		fprintf(stderr, "%s: mount %s: %s\n", t->name, url, nfs_get_error(t->nfs));
		return -EIO;
	}
	return 0;
}

/* ---- the RPC floor: a trivial TCP echo over loopback ---- */

/* A GETATTR call from libnfs (record mark, call header, AUTH_SYS credential,
 * a 32-byte handle) and its reply (record mark, reply header, nfsstat3,
 * fattr3) are about this size. */
#define FLOOR_CALL 128
#define FLOOR_REPLY 116
/* An x1 phase alternates this many NFS calls with as many echo round trips
 * per placement, so that both meet the same load and idle states. */
#define FLOOR_BLOCK 25

struct echo_srv {
	int lfd, fd;      /* listener, client side */
	pthread_t th;
	int cpu;          /* the CPU the server thread is pinned to */
	double wall, cpu_client; /* the round trips' wall time, the client's CPU time */
	double srv_cpu;   /* the server thread's CPU time (set when it ends) */
	int err;          /* server thread's errno */
};

struct echo {
	struct echo_srv s[PLACEMENTS];
	int nsrv;         /* servers started: 1 when only one CPU is usable */
	int n;            /* round trips done on each */
	double wall, cpu; /* all of them: what the phase leaves out */
	cpu_set_t saved;  /* the client thread's own affinity */
	bool failed;
};

/* The server: accepts one connection and answers every FLOOR_CALL bytes
 * read with FLOOR_REPLY bytes, the way an event-loop server does: sleep in
 * epoll_wait, one read per wake-up, write the replies; until EOF. */
static void *echo_main(void *arg)
{
	struct echo_srv *e = arg;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(e->cpu, &set);
	sched_setaffinity(0, sizeof set, &set); /* this thread only */
	int fd = accept(e->lfd, NULL, NULL);
	if (fd < 0) {
		e->err = errno;
		return NULL;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	int ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		e->err = errno;
		if (ep >= 0)
			close(ep);
		close(fd);
		return NULL;
	}
	double c0 = thread_cpu();
	static const char reply[FLOOR_REPLY * 16];
	char in[FLOOR_CALL * 16];
	size_t have = 0;
	for (;;) {
		int k = epoll_wait(ep, &ev, 1, -1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			e->err = errno;
			break;
		}
		ssize_t n = read(fd, in, sizeof in);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			e->err = errno;
			break;
		}
		have += (size_t)n;
		size_t calls = have / FLOOR_CALL;
		have %= FLOOR_CALL;
		if (calls > 0 && write(fd, reply, calls * FLOOR_REPLY) != (ssize_t)(calls * FLOOR_REPLY)) {
			e->err = EIO; /* with one call in flight the reply always fits */
			break;
		}
	}
	e->srv_cpu = thread_cpu() - c0;
	close(ep);
	close(fd);
	return NULL;
}

static bool echo_srv_open(struct echo_srv *e, int cpu)
{
	memset(e, 0, sizeof *e);
	e->cpu = cpu;
	e->fd = -1;
	e->lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof sa;
	if (e->lfd < 0 || bind(e->lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(e->lfd, 1) < 0 ||
	    getsockname(e->lfd, (struct sockaddr *)&sa, &sl) < 0 ||
	    pthread_create(&e->th, NULL, echo_main, e) != 0) {
		fprintf(stderr, "rpc floor: echo server: %s\n", strerror(errno));
		if (e->lfd >= 0)
			close(e->lfd);
		return false;
	}
	int one = 1;
	e->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (e->fd < 0 || connect(e->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		fprintf(stderr, "rpc floor: connect: %s\n", strerror(errno));
		shutdown(e->lfd, SHUT_RDWR); /* wakes its accept() with an error */
		pthread_join(e->th, NULL);
		if (e->fd >= 0)
			close(e->fd);
		close(e->lfd);
		return false;
	}
	setsockopt(e->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	return true;
}

static void echo_srv_close(struct echo_srv *e)
{
	shutdown(e->fd, SHUT_WR); /* EOF ends the server thread */
	pthread_join(e->th, NULL);
	close(e->fd);
	close(e->lfd);
}

/* Starts an echo server thread on the first CPU this thread may use, and
 * one on the second if there is one; false on failure. */
static bool floor_open(struct echo *e)
{
	memset(e, 0, sizeof *e);
	if (sched_getaffinity(0, sizeof e->saved, &e->saved) < 0)
		return false;
	int cpus[PLACEMENTS], n = 0;
	for (int c = 0; c < CPU_SETSIZE && n < PLACEMENTS; c++)
		if (CPU_ISSET(c, &e->saved))
			cpus[n++] = c;
	for (int i = 0; i < n; i++) {
		if (!echo_srv_open(&e->s[i], cpus[i])) {
			while (i-- > 0)
				echo_srv_close(&e->s[i]);
			return false;
		}
	}
	e->nsrv = n;
	return n > 0;
}

/* k round trips on each server, one in flight: write the call, poll, read
 * the reply (the pattern of libnfs under raw_run), with this thread on the
 * first server's CPU. Adds their wall and CPU time. */
static void floor_block(struct echo *e, int k)
{
	static const char call[FLOOR_CALL];
	char reply[FLOOR_REPLY];
	double t0 = now(), c0 = thread_cpu();
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(e->s[0].cpu, &set);
	if (sched_setaffinity(0, sizeof set, &set) < 0)
		e->failed = true;
	for (int m = 0; m < e->nsrv && !e->failed; m++) {
		struct echo_srv *s = &e->s[m];
		double t1 = now(), c1 = thread_cpu();
		for (int i = 0; i < k && !e->failed; i++) {
			size_t got = 0;
			if (write(s->fd, call, sizeof call) != (ssize_t)sizeof call)
				e->failed = true;
			while (!e->failed && got < sizeof reply) {
				struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
				ssize_t r = -1;
				if (poll(&pfd, 1, 10000) > 0)
					r = read(s->fd, reply + got, sizeof reply - got);
				if (r <= 0)
					e->failed = true;
				else
					got += (size_t)r;
			}
		}
		s->cpu_client += thread_cpu() - c1;
		s->wall += now() - t1;
	}
	sched_setaffinity(0, sizeof e->saved, &e->saved);
	if (!e->failed)
		e->n += k;
	e->cpu += thread_cpu() - c0;
	e->wall += now() - t0;
}

/* Ends the server threads; records the floor figures (round trips/s, or -1
 * on failure; client and server CPU per round trip; shares of the wall
 * time) for phase p of target ti. */
static void floor_close(struct echo *e, int ti, int p, int round)
{
	for (int m = 0; m < e->nsrv; m++) {
		struct echo_srv *s = &e->s[m];
		echo_srv_close(s);
		if (e->failed || s->err || e->n == 0 || s->wall <= 0) {
			fprintf(stderr, "rpc floor: echo failed after %d round trips: %s\n", e->n,
			        strerror(s->err ? s->err : errno));
			floor_rate[m][ti][p][round] = -1;
			continue;
		}
		floor_rate[m][ti][p][round] = e->n / s->wall;
		floor_client_cpu[m][ti][p][round] = s->cpu_client / e->n;
		floor_server_cpu[m][ti][p][round] = s->srv_cpu / e->n;
		floor_busy[m][ti][p][round] = s->cpu_client / s->wall;
		floor_pair[m][ti][p][round] = (s->cpu_client + s->srv_cpu) / s->wall;
	}
}

/* ---- raw pipelined metadata calls (1 or Q in flight) ---- */

enum rawop { R_LOOKUP, R_GETATTR, R_RDP };

struct pipe {
	struct rpc_context *rpc;
	enum rawop op;
	int n, next, done, inflight, errs;
	struct fhbuf *dirfh;   /* [dirs] */
	struct fhbuf *filefh;  /* [files]: LOOKUP fills, GETATTR uses */
	char (*names)[32];     /* [files] */
};

struct req {
	struct pipe *p;
	int i;
	union {
		LOOKUP3args l;
		GETATTR3args g;
		READDIRPLUS3args r;
	} a;
};

static void raw_done(struct req *r, int status, void *data);

static void raw_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
	(void)rpc;
	struct req *r = priv;
	raw_done(r, status, data);
	r->i = -1; /* the slot is free again */
}

static void raw_done(struct req *r, int status, void *data)
{
	struct pipe *p = r->p;
	p->inflight--;
	p->done++;
	if (status != RPC_STATUS_SUCCESS) {
		if (p->errs++ == 0)
			fprintf(stderr, "rpc error: %s\n", status == RPC_STATUS_ERROR ? (char *)data : "cancel");
		return;
	}
	int st = *(int *)data; /* every *3res starts with nfsstat3 */
	if (st != NFS3_OK) {
		if (p->errs++ == 0)
			fprintf(stderr, "nfs status %d (op %d, #%d)\n", st, (int)p->op, r->i);
		return;
	}
	if (p->op == R_LOOKUP) {
		LOOKUP3res *res = data;
		nfs_fh3 *o = &res->LOOKUP3res_u.resok.object;
		struct fhbuf *f = &p->filefh[r->i % cfg.files];
		if (o->data.data_len > FH_MAX) {
			p->errs++;
			return;
		}
		f->len = o->data.data_len;
		memcpy(f->val, o->data.data_val, f->len);
	}
}

static int raw_issue(struct pipe *p, struct req *r, int i)
{
	r->p = p;
	r->i = i;
	int files = cfg.files;
	int fi = i % files;
	switch (p->op) {
	case R_LOOKUP: {
		struct fhbuf *d = &p->dirfh[fi % cfg.dirs];
		r->a.l.what.dir.data.data_len = d->len;
		r->a.l.what.dir.data.data_val = d->val;
		r->a.l.what.name = p->names[fi];
		return rpc_nfs3_lookup_async(p->rpc, raw_cb, &r->a.l, r);
	}
	case R_GETATTR: {
		struct fhbuf *f = &p->filefh[fi];
		r->a.g.object.data.data_len = f->len;
		r->a.g.object.data.data_val = f->val;
		return rpc_nfs3_getattr_async(p->rpc, raw_cb, &r->a.g, r);
	}
	case R_RDP: {
		struct fhbuf *d = &p->dirfh[i % cfg.dirs];
		memset(&r->a.r, 0, sizeof r->a.r);
		r->a.r.dir.data.data_len = d->len;
		r->a.r.dir.data.data_val = d->val;
		r->a.r.dircount = 65536;
		r->a.r.maxcount = 65536;
		return rpc_nfs3_readdirplus_async(p->rpc, raw_cb, &r->a.r, r);
	}
	}
	return -EINVAL;
}

/* Runs p->n calls with at most depth in flight; returns ops/s or -1. With
 * an echo (x1 phases), every FLOOR_BLOCK calls alternate with as many echo
 * round trips, whose time is left out of the rate and, through phase_skip,
 * out of the phase's client figures. */
static double raw_run(struct pipe *p, int depth, struct echo *echo)
{
	struct req *reqs = calloc((size_t)depth, sizeof *reqs);
	int *freel = calloc((size_t)depth, sizeof *freel);
	if (!reqs || !freel) {
		free(reqs);
		free(freel);
		return -1;
	}
	int nfree = depth;
	for (int i = 0; i < depth; i++)
		freel[i] = i;
	p->next = p->done = p->inflight = p->errs = 0;
	double t0 = now(), skipped = 0;
	int echo_at = FLOOR_BLOCK;
	while (p->done < p->n && !p->errs) {
		if (echo && p->inflight == 0 && p->done >= echo_at && !echo->failed) {
			double w = echo->wall, c = echo->cpu;
			floor_block(echo, FLOOR_BLOCK);
			skipped += echo->wall - w;
			phase_skip(echo->wall - w, echo->cpu - c);
			echo_at += FLOOR_BLOCK;
		}
		while (p->inflight < depth && p->next < p->n && nfree > 0) {
			struct req *r = &reqs[freel[--nfree]];
			if (raw_issue(p, r, p->next) != 0) {
				fprintf(stderr, "queue failed: %s\n", rpc_get_error(p->rpc));
				p->errs++;
				break;
			}
			r->p = p;
			p->next++;
			p->inflight++;
		}
		struct pollfd pfd = {.fd = rpc_get_fd(p->rpc), .events = (short)rpc_which_events(p->rpc)};
		if (poll(&pfd, 1, 10000) < 0) {
			p->errs++;
			break;
		}
		if (rpc_service(p->rpc, pfd.revents) < 0) {
			fprintf(stderr, "rpc_service: %s\n", rpc_get_error(p->rpc));
			p->errs++;
			break;
		}
		/* replies come in any order: a slot is free once its callback ran */
		nfree = 0;
		for (int s = 0; s < depth; s++)
			if (reqs[s].p == NULL || reqs[s].i < 0)
				freel[nfree++] = s;
	}
	if (echo && !echo->failed && echo->n < p->n) {
		/* as many echo round trips as calls: the last block */
		double w = echo->wall, c = echo->cpu;
		floor_block(echo, p->n - echo->n);
		skipped += echo->wall - w;
		phase_skip(echo->wall - w, echo->cpu - c);
	}
	double dt = now() - t0 - skipped;
	/* drain anything outstanding after an error */
	for (int k = 0; k < 1000 && p->inflight > 0; k++) {
		struct pollfd pfd = {.fd = rpc_get_fd(p->rpc), .events = (short)rpc_which_events(p->rpc)};
		if (poll(&pfd, 1, 1000) <= 0 || rpc_service(p->rpc, pfd.revents) < 0)
			break;
	}
	free(reqs);
	free(freel);
	return p->errs ? -1 : p->n / dt;
}

static int fh_of(struct target *t, const char *path, struct fhbuf *out)
{
	struct nfsfh *fh;
	if (nfs_open(t->nfs, path, O_RDONLY, &fh) != 0)
		return t_fail(t, "open", path, -EIO);
	struct mirror_fh *m = (struct mirror_fh *)nfs_get_fh(fh);
	int rc = 0;
	if (!m || m->len <= 0 || m->len > FH_MAX) {
		fprintf(stderr, "%s: unexpected file handle shape for %s\n", t->name, path);
		rc = -EPROTO;
	} else {
		out->len = (uint32_t)m->len;
		memcpy(out->val, m->val, out->len);
	}
	nfs_close(t->nfs, fh);
	return rc;
}

/* ---- one round on one target ---- */

static double rate_or_err(int rc, double n, double dt)
{
	return rc < 0 ? -1 : n / dt;
}

static void run_round(struct target *t, int ti, int round)
{
	char base[128], path[256];
	snprintf(base, sizeof base, "/bench-%d-r%d", (int)getpid(), round);
	if (t_mkdir(t, base) < 0) {
		for (int p = 0; p < P_COUNT; p++)
			results[ti][p][round] = -1;
		return;
	}
	int F = cfg.files, D = cfg.dirs, rc = 0;
	char buf[4096];
	/* Every round writes bytes no earlier round wrote: a store that keeps
	 * blocks by content (basefs) must not meet its own blocks again. */
	uint64_t fresh = (uint64_t)round << 40;
	double t0;
	for (int d = 0; d < D && rc == 0; d++) {
		snprintf(path, sizeof path, "%s/d%d", base, d);
		rc = t_mkdir(t, path);
	}
#define FPATH(i) snprintf(path, sizeof path, "%s/d%d/f%d", base, (i) % D, (i))
	/* create + commit */
	phase_begin(t);
	t0 = now();
	for (int i = 0; i < F && rc == 0; i++) {
		struct handle h;
		FPATH(i);
		fill(buf, sizeof buf, fresh + (uint64_t)i + 1);
		if ((rc = t_open(t, path, O_CREAT | O_WRONLY | O_TRUNC, &h)) < 0)
			break;
		rc = t_pwrite(t, &h, buf, sizeof buf, 0);
		if (rc == 0)
			rc = t_fsync(t, &h);
		t_close(t, &h);
	}
	phase_end(t, ti, P_CREATE, round, rate_or_err(rc, F, now() - t0), F);
	/* read */
	if (rc == 0 && want(P_READ)) {
		phase_begin(t);
		t0 = now();
		for (int i = 0; i < F && rc == 0; i++) {
			struct handle h;
			FPATH(i);
			if ((rc = t_open(t, path, O_RDONLY, &h)) < 0)
				break;
			rc = t_pread(t, &h, buf, sizeof buf, 0);
			t_close(t, &h);
		}
		phase_end(t, ti, P_READ, round, rate_or_err(rc, F, now() - t0), F);
	}
	/* rewrite + commit */
	if (rc == 0 && want(P_REWRITE)) {
		phase_begin(t);
		t0 = now();
		for (int i = 0; i < F && rc == 0; i++) {
			struct handle h;
			FPATH(i);
			fill(buf, sizeof buf, fresh + (uint64_t)i + 1 + (uint64_t)F * 7);
			if ((rc = t_open(t, path, O_WRONLY, &h)) < 0)
				break;
			rc = t_pwrite(t, &h, buf, sizeof buf, 0);
			if (rc == 0)
				rc = t_fsync(t, &h);
			t_close(t, &h);
		}
		phase_end(t, ti, P_REWRITE, round, rate_or_err(rc, F, now() - t0), F);
	}
	/* metadata rates through raw calls */
	if (rc == 0 && !t->local) {
		struct pipe p = {.rpc = nfs_get_rpc_context(t->nfs)};
		p.dirfh = calloc((size_t)D, sizeof *p.dirfh);
		p.filefh = calloc((size_t)F, sizeof *p.filefh);
		p.names = calloc((size_t)F, sizeof *p.names);
		if (!p.dirfh || !p.filefh || !p.names)
			rc = -ENOMEM;
		for (int d = 0; d < D && rc == 0; d++) {
			snprintf(path, sizeof path, "%s/d%d", base, d);
			rc = fh_of(t, path, &p.dirfh[d]);
		}
		for (int i = 0; i < F && rc == 0; i++)
			snprintf(p.names[i], sizeof p.names[i], "f%d", i);
		if (rc == 0) {
			static const struct {
				enum phase ph;
				enum rawop op;
				bool q;
			} m[] = {
				{P_LOOKUP1, R_LOOKUP, false}, {P_LOOKUPQ, R_LOOKUP, true},
				{P_GETATTR1, R_GETATTR, false}, {P_GETATTRQ, R_GETATTR, true},
				{P_RDP1, R_RDP, false}, {P_RDPQ, R_RDP, true},
			};
			for (size_t k = 0; k < sizeof m / sizeof m[0]; k++) {
				/* GETATTR needs the handles LOOKUP gathered */
				if (!want(m[k].ph) && m[k].op != R_LOOKUP)
					continue;
				p.op = m[k].op;
				p.n = m[k].op == R_RDP ? cfg.rdp_ops : F;
				/* x1: the RPC floor, measured alongside */
				struct echo echo;
				bool floor = !m[k].q && want(m[k].ph) && floor_open(&echo);
				phase_begin(t);
				double r = raw_run(&p, m[k].q ? cfg.depth : 1, floor ? &echo : NULL);
				phase_end(t, ti, m[k].ph, round, r, p.n);
				if (floor)
					floor_close(&echo, ti, m[k].ph, round);
				if (r < 0)
					break;
			}
		}
		free(p.dirfh);
		free(p.filefh);
		free(p.names);
	}
	/* delete */
	if (rc == 0) {
		phase_begin(t);
		t0 = now();
		for (int i = 0; i < F && rc == 0; i++) {
			FPATH(i);
			rc = t_unlink(t, path);
		}
		phase_end(t, ti, P_DELETE, round, rate_or_err(rc, F, now() - t0), F);
	}
	for (int d = 0; d < D && rc == 0; d++) {
		snprintf(path, sizeof path, "%s/d%d", base, d);
		rc = t_rmdir(t, path);
	}
#undef FPATH

	/* big file */
	static char *big;
	if (!big && !(big = malloc(65536)))
		return;
	fill(big, 65536, 99);
	snprintf(path, sizeof path, "%s/big", base);
	uint64_t B = cfg.big;
	struct handle h;
	if (rc == 0 && (rc = t_open(t, path, O_CREAT | O_RDWR | O_TRUNC, &h)) == 0) {
		static const struct {
			enum phase ph;
			size_t bs;
			bool write, random;
		} s[] = {
			{P_SW64, 65536, true, false}, {P_SR64, 65536, false, false},
			{P_SW4, 4096, true, false}, {P_SR4, 4096, false, false},
			{P_RW4, 4096, true, true}, {P_RR4, 4096, false, true},
			{P_RW64, 65536, true, true}, {P_RR64, 65536, false, true},
		};
		for (size_t k = 0; k < sizeof s / sizeof s[0] && rc == 0; k++) {
			/* the first sequential write creates the file others use */
			if (k > 0 && !want(s[k].ph))
				continue;
			uint64_t blocks = B / s[k].bs;
			uint64_t ops = s[k].random ? (uint64_t)(s[k].bs == 4096 ? cfg.rand4 : cfg.rand64) : blocks;
			rng_state = 0x1234567ull + (uint64_t)round;
			phase_begin(t);
			t0 = now();
			for (uint64_t j = 0; j < ops && rc == 0; j++) {
				uint64_t off = (s[k].random ? rng() % blocks : j) * s[k].bs;
				if (s[k].write) {
					/* Every 8 KiB differs from every other write's, of
					 * this round or an earlier one: no content-defined
					 * chunk (16 KiB or more) is ever met twice. */
					for (size_t o = 0; o < s[k].bs; o += 8192) {
						memcpy(big + o, &j, sizeof j);
						memcpy(big + o + 8, &k, sizeof k);
						memcpy(big + o + 16, &fresh, sizeof fresh);
					}
					rc = t_pwrite(t, &h, big, s[k].bs, off);
				} else {
					rc = t_pread(t, &h, big, s[k].bs, off);
				}
			}
			if (rc == 0 && s[k].write)
				rc = t_fsync(t, &h);
			phase_end(t, ti, s[k].ph, round,
			          rate_or_err(rc, (double)(ops * s[k].bs) / 1e6, now() - t0), (double)ops);
		}
		t_close(t, &h);
		t_unlink(t, path);
	}
	t_rmdir(t, base);
}

/* ---- report ---- */

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* median of the N values that are > 0; -1 if any is < 0 (a failed round),
 * 0 if none ran */
static double median_positive(const double *vals, int n_vals)
{
	double v[3 * MAX_ROUNDS];
	int n = 0;
	for (int i = 0; i < n_vals; i++) {
		if (vals[i] < 0)
			return -1;
		if (vals[i] > 0)
			v[n++] = vals[i];
	}
	if (n == 0)
		return 0;
	qsort(v, (size_t)n, sizeof v[0], cmp_d);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* median of the rounds; -1 if any round failed, 0 if never run */
static double median_rounds(const double *rounds)
{
	return median_positive(rounds, cfg.rounds);
}

static double median_of(double (*tab)[P_COUNT][MAX_ROUNDS], int ti, int p)
{
	return median_rounds(tab[ti][p]);
}

static double median(int ti, int p)
{
	return median_of(results, ti, p);
}

static void cell(double v)
{
	if (v < 0)
		printf(" %10s", "ERR");
	else if (v == 0)
		printf(" %10s", "-");
	else if (v >= 100)
		printf(" %10.0f", v);
	else
		printf(" %10.2f", v);
}

static void phase_name(int p, char *nm, size_t n)
{
	snprintf(nm, n, "%s", phases[p].name);
	char *q = strstr(nm, "xQ");
	if (q)
		snprintf(q + 1, n - (size_t)(q + 1 - nm), "%d", cfg.depth);
}

/* Median of a floor table over every x1 phase and round of target ti. */
static double floor_median(double (*tab)[P_COUNT][MAX_ROUNDS], int ti)
{
	static const int x1[] = {P_LOOKUP1, P_GETATTR1, P_RDP1};
	double v[3 * MAX_ROUNDS];
	int n = 0;
	for (size_t k = 0; k < 3; k++)
		for (int r = 0; r < cfg.rounds; r++)
			v[n++] = tab[ti][x1[k]][r];
	return median_positive(v, n);
}

static void report(void)
{
	int subj = -1, ref = -1, loc = -1;
	for (int i = 0; i < ntargets; i++) {
		if (targets[i].local) {
			if (loc < 0)
				loc = i;
		} else if (subj < 0) {
			subj = i;
		} else if (ref < 0) {
			ref = i;
		}
	}
	bool floored[PLACEMENTS] = {false};
	for (int m = 0; m < PLACEMENTS; m++)
		for (int i = 0; i < ntargets; i++)
			floored[m] |= floor_median(floor_rate[m], i) != 0;
	static const char *const floor_note[PLACEMENTS] = {
	    "(one request in flight cannot go faster)", "(the same, client and server on 2 CPUs)"};
	printf("\n%-20s %-8s", "phase", "unit");
	for (int i = 0; i < ntargets; i++)
		printf(" %10s", targets[i].name);
	char rn[64];
	if (subj >= 0 && ref >= 0) {
		snprintf(rn, sizeof rn, "%.4s/%.4s", targets[subj].name, targets[ref].name);
		printf(" %10s", rn);
	}
	if (subj >= 0 && loc >= 0) {
		snprintf(rn, sizeof rn, "%.4s/%.4s", targets[subj].name, targets[loc].name);
		printf(" %10s", rn);
	}
	printf("  target\n");
	int pass = 0, fail = 0, above = 0;
	for (int p = 0; p < P_COUNT; p++) {
		for (int m = 0; p == P_LOOKUP1 && m < PLACEMENTS; m++) {
			if (!floored[m])
				continue;
			/* measured next to each target's x1 phases */
			printf("%-20s %-8s", floor_row[m], "ops/s");
			for (int i = 0; i < ntargets; i++)
				cell(floor_median(floor_rate[m], i));
			if (subj >= 0 && ref >= 0)
				cell(0);
			if (subj >= 0 && loc >= 0)
				cell(0);
			printf("  %s\n", floor_note[m]);
		}
		char nm[32];
		phase_name(p, nm, sizeof nm);
		printf("%-20s %-8s", nm, phases[p].unit);
		for (int i = 0; i < ntargets; i++)
			cell(median(i, p));
		double rs = -1, rl = -1, b = 0;
		if (subj >= 0 && ref >= 0) {
			double a = median(subj, p);
			b = median(ref, p);
			rs = a > 0 && b > 0 ? a / b : 0;
			cell(rs);
		}
		if (subj >= 0 && loc >= 0) {
			double a = median(subj, p), l = median(loc, p);
			rl = a > 0 && l > 0 ? a / l : 0;
			cell(rl);
		}
		/* the issue's targets */
		const char *goal = "";
		bool ok = true, known = false;
		if (phases[p].kind == K_META && rs > 0) {
			goal = ">=2x ref";
			ok = rs >= 2;
			known = true;
		} else if (rs > 0) {
			goal = ">=1x ref";
			ok = rs >= 1;
			known = true;
		}
		if (phases[p].kind == K_REWRITE && rl > 0) {
			goal = rs > 0 ? ">=1x ref, >=1/3 local" : ">=1/3 local";
			ok = ok && rl >= 1.0 / 3;
			known = true;
		}
		if (known) {
			/* one request in flight: 2x the reference may be more than the
			 * loopback round trip allows */
			bool x1 = p == P_LOOKUP1 || p == P_GETATTR1 || p == P_RDP1;
			double floor = 0; /* the faster placement */
			for (int m = 0; x1 && m < PLACEMENTS; m++) {
				double f = median_of(floor_rate[m], ref, p);
				if (f > floor)
					floor = f;
			}
			bool unreachable = !ok && floor > 0 && 2 * b > floor;
			printf("  %s %s%s", goal, ok ? "ok" : "MISSED", unreachable ? ", above floor" : "");
			ok ? pass++ : fail++;
			above += unreachable;
		}
		printf("\n");
	}
	printf("targets met: %d of %d", pass, pass + fail);
	if (above)
		printf(" (%d missed x1 target%s above the RPC floor)", above, above > 1 ? "s" : "");
	printf("\n");

	/* CPU per operation: less sensitive to a loaded machine than rates. */
	int nsrv = 0;
	for (int i = 0; i < ntargets; i++)
		nsrv += targets[i].pid > 0;
	bool ratio = subj >= 0 && ref >= 0 && targets[subj].pid > 0 && targets[ref].pid > 0;
	printf("\nCPU time per operation, microseconds, median: servers (all threads, schedstat)%s,\n"
	       "then this client (cl.NAME: the bench's thread, libnfs included; the floor rows: the echo\n"
	       "server thread in the server columns, its client in the client columns):\n%-20s %-8s",
	       nsrv ? "" : " (none: no --pid)", "phase", "");
	for (int i = 0; i < ntargets; i++)
		if (targets[i].pid > 0)
			printf(" %10s", targets[i].name);
	if (ratio)
		printf(" %10s", "ref/subj");
	for (int i = 0; i < ntargets; i++) {
		snprintf(rn, sizeof rn, "cl.%.7s", targets[i].name);
		printf(" %10s", rn);
	}
	printf("\n");
	for (int p = 0; p < P_COUNT; p++) {
		for (int m = 0; p == P_LOOKUP1 && m < PLACEMENTS; m++) {
			if (!floored[m])
				continue;
			printf("%-20s %-8s", floor_row[m], "us/op");
			for (int i = 0; i < ntargets; i++)
				if (targets[i].pid > 0)
					cell(floor_median(floor_server_cpu[m], i) * 1e6);
			if (ratio)
				cell(0);
			for (int i = 0; i < ntargets; i++)
				cell(floor_median(floor_client_cpu[m], i) * 1e6);
			printf("\n");
		}
		char nm[32];
		phase_name(p, nm, sizeof nm);
		printf("%-20s %-8s", nm, "us/op");
		for (int i = 0; i < ntargets; i++)
			if (targets[i].pid > 0)
				cell(median_of(cpu_per_op, i, p) * 1e6);
		if (ratio) {
			double a = median_of(cpu_per_op, subj, p), b = median_of(cpu_per_op, ref, p);
			cell(a > 0 && b > 0 ? b / a : 0);
		}
		for (int i = 0; i < ntargets; i++)
			cell(median_of(client_cpu_per_op, i, p) * 1e6);
		printf("\n");
	}

	/* Who set the rate: a client busy nearly all the wall time is the
	 * bottleneck whatever the server does; client and server together near
	 * one core's worth means they took turns rather than overlapped. */
	bool nfs = false;
	for (int i = 0; i < ntargets; i++)
		nfs |= !targets[i].local;
	if (!nfs)
		return;
	printf("\nshares of the phase's wall time, %%, median: client = the bench thread's CPU time,\n"
	       "+server = client and server CPU time together (100 = one core), waiting = the bench\n"
	       "thread runnable but not running (other load):\n%-20s %-8s", "", "");
	for (int i = 0; i < ntargets; i++)
		if (!targets[i].local)
			printf(" %32s", targets[i].name);
	printf("\n%-20s %-8s", "phase", "");
	for (int i = 0; i < ntargets; i++)
		if (!targets[i].local)
			printf(" %10s %10s %10s", "client", "+server", "waiting");
	printf("\n");
	for (int m = 0; m < PLACEMENTS; m++) {
		if (!floored[m])
			continue;
		printf("%-20s %-8s", floor_row[m], "%");
		for (int i = 0; i < ntargets; i++)
			if (!targets[i].local) {
				cell(floor_median(floor_busy[m], i) * 100);
				cell(floor_median(floor_pair[m], i) * 100);
				cell(0);
			}
		printf("\n");
	}
	for (int p = 0; p < P_COUNT; p++) {
		bool ran = false, bound = false;
		for (int i = 0; i < ntargets; i++) {
			if (targets[i].local)
				continue;
			double v = median_of(client_busy, i, p);
			ran |= v != 0;
			bound |= v >= 0.8;
		}
		if (!ran)
			continue;
		char nm[32];
		phase_name(p, nm, sizeof nm);
		printf("%-20s %-8s", nm, "%");
		for (int i = 0; i < ntargets; i++)
			if (!targets[i].local) {
				cell(median_of(client_busy, i, p) * 100);
				cell(median_of(pair_busy, i, p) * 100);
				cell(median_of(client_wait, i, p) * 100);
			}
		printf("%s\n", bound ? "  client-bound" : "");
	}
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: bench_nfs [--nfs NAME=HOST:PORT[:MOUNTPORT]]... [--local DIR]\n"
	        "                 [--small] [--files N] [--dirs N] [--big MiB] [--rand4 N]\n"
	        "                 [--rand64 N] [--rdp N] [--depth Q] [--rounds R] [--only TEXT]\n"
	        "                 [--pid NAME=PID]...\n"
	        "The first --nfs target is compared with the second and with --local.\n"
	        "--pid NAME=PID: also report that server's CPU time per operation.\n"
	        "Each server must export /basefs read-write to this client.\n");
}

static int add_nfs(const char *arg)
{
	if (ntargets == MAX_TARGETS)
		return -1;
	struct target *t = &targets[ntargets];
	const char *eq = strchr(arg, '=');
	if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof t->name)
		return -1;
	memcpy(t->name, arg, (size_t)(eq - arg));
	const char *hp = eq + 1;
	const char *c1 = strchr(hp, ':');
	if (!c1 || c1 == hp || (size_t)(c1 - hp) >= sizeof t->host)
		return -1;
	memcpy(t->host, hp, (size_t)(c1 - hp));
	char *end;
	long port = strtol(c1 + 1, &end, 10);
	long mport = port;
	if (*end == ':')
		mport = strtol(end + 1, &end, 10);
	if (*end || port <= 0 || port > 65535 || mport <= 0 || mport > 65535)
		return -1;
	t->nfs_port = (int)port;
	t->mnt_port = (int)mport;
	ntargets++;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"nfs", required_argument, 0, 'n'},   {"local", required_argument, 0, 'l'},
	    {"small", no_argument, 0, 's'},       {"files", required_argument, 0, 'f'},
	    {"dirs", required_argument, 0, 'd'},  {"big", required_argument, 0, 'b'},
	    {"rand4", required_argument, 0, '4'}, {"rand64", required_argument, 0, '6'},
	    {"rdp", required_argument, 0, 'r'},   {"depth", required_argument, 0, 'q'},
	    {"rounds", required_argument, 0, 'R'}, {"only", required_argument, 0, 'o'},
	    {"pid", required_argument, 0, 'p'},   {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (add_nfs(optarg) < 0) {
				fprintf(stderr, "bench_nfs: bad --nfs %s (NAME=HOST:PORT[:MOUNTPORT])\n", optarg);
				return 2;
			}
			break;
		case 'l':
			if (ntargets == MAX_TARGETS || strlen(optarg) >= sizeof targets[0].dir) {
				fprintf(stderr, "bench_nfs: too many targets or path too long\n");
				return 2;
			}
			targets[ntargets].local = true;
			snprintf(targets[ntargets].name, sizeof targets[0].name, "local");
			snprintf(targets[ntargets].dir, sizeof targets[0].dir, "%s", optarg);
			ntargets++;
			break;
		case 's':
			cfg.files = 1000;
			cfg.dirs = 10;
			cfg.big = 16ull << 20;
			cfg.rdp_ops = 200;
			break;
		case 'f': cfg.files = atoi(optarg); break;
		case 'd': cfg.dirs = atoi(optarg); break;
		case 'b': cfg.big = (uint64_t)atoi(optarg) << 20; break;
		case '4': cfg.rand4 = atoi(optarg); break;
		case '6': cfg.rand64 = atoi(optarg); break;
		case 'r': cfg.rdp_ops = atoi(optarg); break;
		case 'q': cfg.depth = atoi(optarg); break;
		case 'R': cfg.rounds = atoi(optarg); break;
		case 'o': cfg.only = optarg; break;
		case 'p': {
			const char *eq = strchr(optarg, '=');
			int found = 0;
			for (int i = 0; eq && i < ntargets; i++)
				if (strlen(targets[i].name) == (size_t)(eq - optarg) &&
				    memcmp(targets[i].name, optarg, (size_t)(eq - optarg)) == 0) {
					targets[i].pid = atoi(eq + 1);
					found = 1;
				}
			if (!found) {
				fprintf(stderr, "bench_nfs: bad --pid %s (NAME=PID after --nfs NAME=...)\n", optarg);
				return 2;
			}
			break;
		}
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || ntargets == 0 || cfg.files < 1 || cfg.dirs < 1 ||
	    cfg.dirs > cfg.files || cfg.big < (64u << 10) || cfg.depth < 1 || cfg.depth > 256 ||
	    cfg.rounds < 1 || cfg.rounds > MAX_ROUNDS || cfg.rdp_ops < 1 || cfg.rand4 < 0 ||
	    cfg.rand64 < 0) {
		usage(stderr);
		return 2;
	}
	if (!cfg.rand4)
		cfg.rand4 = (int)(cfg.big / 4096 / 4);
	if (!cfg.rand64)
		cfg.rand64 = (int)(cfg.big / 65536 / 2);
	for (int i = 0; i < ntargets; i++)
		if (t_connect(&targets[i]) < 0)
			return 1;
	double load[3] = {0};
	if (getloadavg(load, 3) < 0)
		load[0] = -1;
	printf("bench_nfs: %d files x 4 KiB in %d dirs, big file %" PRIu64 " MiB (rand %d x 4K, %d x 64K),"
	       " READDIRPLUS %d calls, Q=%d, %d rounds; load %.2f\n",
	       cfg.files, cfg.dirs, cfg.big >> 20, cfg.rand4, cfg.rand64, cfg.rdp_ops, cfg.depth,
	       cfg.rounds, load[0]);
	fflush(stdout);
	for (int r = 0; r < cfg.rounds; r++) {
		for (int k = 0; k < ntargets; k++) {
			int ti = (k + r) % ntargets; /* rotate who goes first */
			double t0 = now();
			run_round(&targets[ti], ti, r);
			fprintf(stderr, "round %d %s: %.1f s\n", r, targets[ti].name, now() - t0);
		}
	}
	if (getloadavg(load, 3) < 0)
		load[0] = -1;
	report();
	printf("load average at end: %.2f\n", load[0]);
	for (int i = 0; i < ntargets; i++)
		if (targets[i].nfs) {
			nfs_umount(targets[i].nfs);
			nfs_destroy_context(targets[i].nfs);
		}
	return 0;
}
