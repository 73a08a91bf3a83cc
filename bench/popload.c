/*
 * popload: the POP3 load generator of scripts/bench.
 *
 * One thread, one epoll loop, N clients, each a small state machine that
 * speaks POP3 itself (optionally inside implicit TLS, full handshakes, no
 * resumption). Each client slot logs in as its own user.
 *
 *   popload [options] login       connect, USER, PASS, STAT, QUIT
 *   popload [options] download    connect, USER, PASS, LIST, UIDL,
 *                                 RETR 1..n, QUIT
 *   popload [options] idle-auth   open N logged-in sessions and hold them
 *   popload [options] idle-unauth open N connections (greeting read) and
 *                                 hold them without sending anything
 *   popload crypt HASH PASSWORD COUNT
 *                                 CPU time of crypt(3) of PASSWORD
 *   popload vmcost                CPU time of a minor page fault and of
 *                                 a system call on this machine
 *
 * login/download keep N clients busy: a warm-up, then a measuring window
 * of --duration seconds (sessions completed and RETR bytes received
 * inside the window are counted, the server's CPU time is sampled at both
 * ends of the window from --cpu-file), then the sessions in flight finish
 * (--drain seconds at most). With --sessions K they run exactly K sessions
 * instead (no window: the whole run counts).
 *
 * The idle modes print "ready held=N errors=E" once every connection is
 * held, wait for a line (or EOF) on stdin, then QUIT every session.
 *
 * After each read the socket re-arms TCP_QUICKACK, so the client never
 * delays an ACK; --stock leaves both TCP_QUICKACK and TCP_NODELAY alone,
 * like an ordinary client.
 *
 * The result is one JSON object on stdout. Every loop is bounded in time
 * (--timeout) and errors (--max-errors).
 */
#define _GNU_SOURCE
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum mode { M_LOGIN, M_DOWNLOAD, M_IDLE_AUTH, M_IDLE_UNAUTH };

enum step {
	S_GREET,
	S_USER,
	S_PASS,
	S_STAT,
	S_LIST,
	S_UIDL,
	S_RETR,
	S_QUIT,
};

enum cstate {
	C_FREE,       /* slot has no connection */
	C_CONNECTING, /* non-blocking connect in progress */
	C_HANDSHAKE,  /* TLS handshake */
	C_STATUS,     /* waiting for a status line */
	C_BODY,       /* inside a multi-line response */
	C_HOLD,       /* idle modes: held */
	C_EOF,        /* QUIT answered: waiting for the server to close */
};

struct conn {
	int fd;
	SSL *ssl;
	int slot;
	enum cstate state;
	enum step step;
	int want_out;   /* registered for EPOLLOUT */
	int multiline;  /* current command has a multi-line answer */
	int nmsgs;      /* from LIST */
	int retr_i;     /* next message to RETR (1-based) */
	char *buf;      /* unparsed input */
	size_t len;
	uint64_t stream_off; /* body stream bytes consumed before buf[0] */
	uint64_t newlines;   /* '\n' counted in consumed body bytes */
	uint64_t retr_bytes; /* RETR body bytes of this session */
	char wbuf[512];
	size_t wlen, woff;
	double t_start;
};

static struct {
	const char *host;
	int port;
	int tls;
	int clients;
	double duration, warmup, drain, timeout;
	long sessions; /* 0: duration mode */
	const char *user_fmt;
	int user_base, user_count;
	const char *pass;
	int stock;
	const char *cpu_file;
	size_t bufsize;
	int max_errors;
	int verbose;
	int max_inflight; /* idle modes: concurrent connects */
} opt = {
	.host = "127.0.0.1",
	.port = 110,
	.clients = 1,
	.duration = 5,
	.warmup = 0.5,
	.drain = 30,
	.timeout = 600,
	.user_fmt = "user%d",
	.user_count = 0,
	.pass = "bench-pw",
	.bufsize = 256 * 1024,
	.max_errors = 1000,
	.max_inflight = 16,
};

static enum mode mode;
static int epfd;
static SSL_CTX *ssl_ctx;
static struct sockaddr_in server_addr;
static struct conn *conns;

/* Counters. */
static long n_started, n_done, n_done_window, n_errors, n_aborted;
static uint64_t bytes_window, bytes_total;
static uint64_t retr_bytes_session; /* of the first completed download */
static int retr_bytes_mismatch;
static long n_held;
static char first_error[256];
static double lat_sum_window;

/* Window. */
static double t_begin, t0, t_end, t_deadline;
static int window_open, window_closed, stopping;
static double cpu_at_t0 = -1, cpu_at_end = -1;
static double cpu0_busy_t0, cpu0_busy_end, cpu1_busy_t0, cpu1_busy_end;
static double self_cpu_t0, self_cpu_end;
static double t0_actual, tend_actual;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("popload: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

/* Server CPU seconds from a cgroup file: cpuacct.usage (ns) or a cgroup2
 * cpu.stat (usage_usec). -1 if unavailable. */
static double
read_server_cpu(void)
{
	char b[4096];
	ssize_t n;
	int fd;

	if (opt.cpu_file == NULL)
		return -1;
	fd = open(opt.cpu_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, b, sizeof(b) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	b[n] = '\0';
	if (strncmp(b, "usage_usec ", 11) == 0)
		return strtod(b + 11, NULL) / 1e6;
	return strtod(b, NULL) / 1e9;
}

/* Busy seconds (all but idle and iowait) of cpu0 and cpu1 from /proc/stat. */
static void
read_cpu_busy(double *cpu0, double *cpu1)
{
	FILE *f = fopen("/proc/stat", "re");
	char line[512];
	long hz = sysconf(_SC_CLK_TCK);

	*cpu0 = *cpu1 = 0;
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long long v[10] = { 0 };
		int cpu;

		if (sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu",
			   &cpu, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
			   &v[6], &v[7]) < 8)
			continue;
		double busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) /
			      (double)hz;
		if (cpu == 0)
			*cpu0 = busy;
		else if (cpu == 1)
			*cpu1 = busy;
	}
	fclose(f);
}

static double
self_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void
note_error(struct conn *c, const char *what, const char *detail, size_t dlen)
{
	n_errors++;
	if (first_error[0] == '\0') {
		snprintf(first_error, sizeof(first_error),
			 "slot %d step %d: %s%s%.*s", c->slot, (int)c->step, what,
			 dlen ? ": " : "", (int)(dlen > 120 ? 120 : dlen),
			 detail ? detail : "");
		for (char *p = first_error; *p; p++)
			if (*p == '\r' || *p == '\n' || *p == '"' || *p == '\\')
				*p = ' ';
	}
	if (opt.verbose && n_errors <= 5)
		fprintf(stderr, "popload: slot %d step %d: %s %.*s\n", c->slot,
			(int)c->step, what, (int)(dlen > 200 ? 200 : dlen),
			detail ? detail : "");
}

static void
ep_mod(struct conn *c, int out)
{
	struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0),
				  .data.ptr = c };

	if (c->want_out == out)
		return;
	c->want_out = out;
	epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void
conn_close(struct conn *c)
{
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		c->fd = -1;
	}
	c->state = C_FREE;
	c->len = 0;
}

static void start_session(struct conn *c, double now);

/* The slot is free again: start its next session when the run goes on. */
static void
slot_next(struct conn *c, double now)
{
	if (mode == M_IDLE_AUTH || mode == M_IDLE_UNAUTH)
		return;
	if (stopping)
		return;
	if (opt.sessions > 0 && n_started >= opt.sessions)
		return;
	if (n_errors > opt.max_errors)
		return;
	start_session(c, now);
}

static void
fail(struct conn *c, const char *what, const char *detail, size_t dlen,
     double now)
{
	note_error(c, what, detail, dlen);
	if (c->state == C_HOLD)
		n_held--;
	conn_close(c);
	slot_next(c, now);
}

/* Sends what is in wbuf; 0 ok (maybe pending), -1 error. */
static int
flush_out(struct conn *c)
{
	while (c->woff < c->wlen) {
		ssize_t n;

		if (c->ssl != NULL) {
			int r = SSL_write(c->ssl, c->wbuf + c->woff,
					  (int)(c->wlen - c->woff));
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_WRITE ||
				    e == SSL_ERROR_WANT_READ) {
					ep_mod(c, 1);
					return 0;
				}
				return -1;
			}
			n = r;
		} else {
			n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff,
				 MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR) {
					ep_mod(c, 1);
					return 0;
				}
				return -1;
			}
		}
		c->woff += (size_t)n;
	}
	c->wlen = c->woff = 0;
	ep_mod(c, 0);
	return 0;
}

static int
send_cmd(struct conn *c, enum step step, int multiline, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(c->wbuf, sizeof(c->wbuf) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(c->wbuf) - 2)
		return -1;
	c->wbuf[n++] = '\r';
	c->wbuf[n++] = '\n';
	c->wlen = (size_t)n;
	c->woff = 0;
	c->step = step;
	c->multiline = multiline;
	c->state = C_STATUS;
	return flush_out(c);
}

static int
send_user(struct conn *c)
{
	char name[128];
	int idx = opt.user_base + (opt.user_count > 0 ? c->slot % opt.user_count
						      : c->slot);

	snprintf(name, sizeof(name), opt.user_fmt, idx);
	return send_cmd(c, S_USER, 0, "USER %s", name);
}

static void
session_done(struct conn *c, double now)
{
	n_done++;
	if (window_open && !window_closed) {
		n_done_window++;
		lat_sum_window += now - c->t_start;
	}
	if (mode == M_DOWNLOAD) {
		if (retr_bytes_session == 0)
			retr_bytes_session = c->retr_bytes;
		else if (retr_bytes_session != c->retr_bytes)
			retr_bytes_mismatch++;
	}
	conn_close(c);
	slot_next(c, now);
}

/* A complete response to c->step: ok or not, the status line (without
 * CRLF). Sends the next command. */
static void
on_response(struct conn *c, int ok, const char *line, size_t llen, double now)
{
	int r = 0;

	if (!ok) {
		fail(c, "-ERR", line, llen, now);
		return;
	}
	switch (c->step) {
	case S_GREET:
		if (mode == M_IDLE_UNAUTH) {
			c->state = C_HOLD;
			n_held++;
			return;
		}
		r = send_user(c);
		break;
	case S_USER:
		r = send_cmd(c, S_PASS, 0, "PASS %s", opt.pass);
		break;
	case S_PASS:
		if (mode == M_IDLE_AUTH) {
			c->state = C_HOLD;
			n_held++;
			return;
		}
		if (mode == M_DOWNLOAD)
			r = send_cmd(c, S_LIST, 1, "LIST");
		else
			r = send_cmd(c, S_STAT, 0, "STAT");
		break;
	case S_STAT:
		r = send_cmd(c, S_QUIT, 0, "QUIT");
		break;
	case S_LIST:
		r = send_cmd(c, S_UIDL, 1, "UIDL");
		break;
	case S_UIDL:
	case S_RETR:
		if (c->retr_i <= c->nmsgs) {
			r = send_cmd(c, S_RETR, 1, "RETR %d", c->retr_i);
			c->retr_i++;
		} else {
			r = send_cmd(c, S_QUIT, 0, "QUIT");
		}
		break;
	case S_QUIT:
		c->state = C_EOF;
		return;
	}
	if (r < 0)
		fail(c, "write", strerror(errno), strlen(strerror(errno)), now);
}

static size_t
count_nl(const char *p, size_t n)
{
	size_t k = 0;
	const char *e = p + n;

	while (p < e && (p = memchr(p, '\n', (size_t)(e - p))) != NULL) {
		k++;
		p++;
	}
	return k;
}

/* Parses what is in c->buf; returns -1 if the connection is gone. */
static int
process(struct conn *c, double now)
{
	for (;;) {
		if (c->state == C_STATUS) {
			char *nl = memchr(c->buf, '\n', c->len);
			size_t llen;

			if (nl == NULL) {
				if (c->len >= opt.bufsize) {
					fail(c, "status line too long", NULL, 0,
					     now);
					return -1;
				}
				return 0;
			}
			llen = (size_t)(nl - c->buf);
			if (llen == 0 || c->buf[llen - 1] != '\r') {
				fail(c, "status line without CRLF", c->buf,
				     llen, now);
				return -1;
			}
			int ok = llen >= 3 && memcmp(c->buf, "+OK", 3) == 0;
			if (ok && c->multiline) {
				/* The body stream starts at the status line's
				 * CRLF, so an empty body is "\r\n.\r\n". */
				size_t keep = c->len - (llen - 1);
				memmove(c->buf, c->buf + llen - 1, keep);
				c->len = keep;
				c->state = C_BODY;
				c->stream_off = 0;
				c->newlines = 0;
				continue;
			}
			if (c->len > llen + 1 && c->step != S_QUIT) {
				fail(c, "unexpected data after a reply", c->buf,
				     c->len, now);
				return -1;
			}
			char line[256];
			size_t cl = llen - 1 < sizeof(line) - 1 ? llen - 1
								: sizeof(line) - 1;
			memcpy(line, c->buf, cl);
			line[cl] = '\0';
			c->len = 0;
			on_response(c, ok, line, cl, now);
			return c->state == C_FREE ? -1 : 0;
		}
		if (c->state == C_BODY) {
			char *t = memmem(c->buf, c->len, "\r\n.\r\n", 5);

			if (t == NULL) {
				if (c->len > 4) {
					size_t consume = c->len - 4;
					if (c->step != S_RETR)
						c->newlines +=
							count_nl(c->buf, consume);
					c->stream_off += consume;
					memmove(c->buf, c->buf + consume, 4);
					c->len = 4;
				}
				return 0;
			}
			size_t pos = (size_t)(t - c->buf);
			uint64_t body = c->stream_off + pos; /* see C_STATUS */
			if (c->step == S_RETR) {
				c->retr_bytes += body;
				/* Counted when the message is complete. */
				if (window_open && !window_closed)
					bytes_window += body;
			} else {
				uint64_t lines = c->newlines +
						 count_nl(c->buf, pos + 2) - 1;
				if (c->step == S_LIST) {
					c->nmsgs = (int)lines;
					c->retr_i = 1;
				}
			}
			if (pos + 5 != c->len) {
				fail(c, "unexpected data after a response",
				     NULL, 0, now);
				return -1;
			}
			c->len = 0;
			on_response(c, 1, "", 0, now);
			return c->state == C_FREE ? -1 : 0;
		}
		if (c->state == C_HOLD) {
			if (c->len > 0) {
				fail(c, "unexpected data while idle", c->buf,
				     c->len, now);
				return -1;
			}
			return 0;
		}
		if (c->state == C_EOF) {
			c->len = 0; /* ignore anything before the close */
			return 0;
		}
		return 0;
	}
}

static void
quickack(struct conn *c)
{
	int one = 1;

	if (!opt.stock)
		setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

/* The connection is readable. */
static void
on_readable(struct conn *c, double now)
{
	for (int rounds = 0; rounds < 64; rounds++) {
		ssize_t n;
		size_t room = opt.bufsize - c->len;

		if (room == 0) {
			fail(c, "input buffer full", NULL, 0, now);
			return;
		}
		if (c->ssl != NULL) {
			int r = SSL_read(c->ssl, c->buf + c->len, (int)room);
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);
				if (e == SSL_ERROR_WANT_READ)
					return;
				if (e == SSL_ERROR_WANT_WRITE) {
					ep_mod(c, 1);
					return;
				}
				n = 0; /* close_notify, EOF or error */
				ERR_clear_error();
			} else {
				n = r;
			}
		} else {
			n = recv(c->fd, c->buf + c->len, room, 0);
			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR)
					return;
				if (c->state == C_EOF) {
					session_done(c, now);
					return;
				}
				fail(c, "recv", strerror(errno),
				     strlen(strerror(errno)), now);
				return;
			}
		}
		if (n == 0) {
			if (c->state == C_EOF) {
				session_done(c, now);
				return;
			}
			fail(c, "connection closed by the server", c->buf, c->len,
			     now);
			return;
		}
		quickack(c);
		bytes_total += (uint64_t)n;
		c->len += (size_t)n;
		if (process(c, now) < 0)
			return;
	}
}

static void
tls_handshake(struct conn *c, double now)
{
	int r = SSL_do_handshake(c->ssl);

	if (r == 1) {
		c->state = C_STATUS;
		c->step = S_GREET;
		c->multiline = 0;
		ep_mod(c, 0);
		on_readable(c, now); /* the greeting may be buffered already */
		return;
	}
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		ep_mod(c, 0);
		return;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		ep_mod(c, 1);
		return;
	}
	char msg[160];
	ERR_error_string_n(ERR_get_error(), msg, sizeof(msg));
	fail(c, "TLS handshake", msg, strlen(msg), now);
}

static void
start_session(struct conn *c, double now)
{
	int fd, one = 1;
	struct epoll_event ev;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	if (!opt.stock)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd = fd;
	c->ssl = NULL;
	c->len = 0;
	c->want_out = 1;
	c->retr_bytes = 0;
	c->nmsgs = 0;
	c->retr_i = 1;
	c->t_start = now;
	c->step = S_GREET;
	c->multiline = 0;
	n_started++;
	ev.events = EPOLLIN | EPOLLOUT;
	ev.data.ptr = c;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll_ctl: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&server_addr, sizeof(server_addr)) <
		    0 &&
	    errno != EINPROGRESS) {
		fail(c, "connect", strerror(errno), strlen(strerror(errno)), now);
		return;
	}
	c->state = C_CONNECTING;
}

static void
on_event(struct conn *c, uint32_t events, double now)
{
	if (c->state == C_FREE)
		return;
	if (c->state == C_CONNECTING) {
		int err = 0;
		socklen_t l = sizeof(err);

		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err != 0) {
			fail(c, "connect", strerror(err), strlen(strerror(err)),
			     now);
			return;
		}
		if (opt.tls) {
			c->ssl = SSL_new(ssl_ctx);
			if (c->ssl == NULL)
				die("SSL_new failed");
			SSL_set_fd(c->ssl, c->fd);
			SSL_set_connect_state(c->ssl);
			c->state = C_HANDSHAKE;
			tls_handshake(c, now);
			return;
		}
		c->state = C_STATUS;
		c->step = S_GREET;
		ep_mod(c, 0);
		return;
	}
	if (c->state == C_HANDSHAKE) {
		tls_handshake(c, now);
		return;
	}
	if ((events & EPOLLOUT) && c->wlen > 0) {
		if (flush_out(c) < 0) {
			fail(c, "write", strerror(errno), strlen(strerror(errno)),
			     now);
			return;
		}
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		on_readable(c, now);
}

static void
window_marks(double now)
{
	if (opt.sessions > 0)
		return;
	if (!window_open && now >= t0) {
		window_open = 1;
		t0_actual = now;
		cpu_at_t0 = read_server_cpu();
		read_cpu_busy(&cpu0_busy_t0, &cpu1_busy_t0);
		self_cpu_t0 = self_cpu();
	}
	if (window_open && !window_closed && now >= t_end) {
		window_closed = 1;
		tend_actual = now;
		cpu_at_end = read_server_cpu();
		read_cpu_busy(&cpu0_busy_end, &cpu1_busy_end);
		self_cpu_end = self_cpu();
		stopping = 1;
	}
}

static int
busy_slots(void)
{
	int k = 0;

	for (int i = 0; i < opt.clients; i++)
		if (conns[i].state != C_FREE)
			k++;
	return k;
}

static void
loop_events(int timeout_ms)
{
	struct epoll_event evs[256];
	int n = epoll_wait(epfd, evs, 256, timeout_ms);
	double now = now_s();

	if (n < 0) {
		if (errno == EINTR)
			return;
		die("epoll_wait: %s", strerror(errno));
	}
	for (int i = 0; i < n; i++) {
		if (evs[i].data.ptr == NULL)
			continue; /* stdin: handled by the idle loop */
		on_event(evs[i].data.ptr, evs[i].events, now);
	}
}

static void
json_str(const char *key, const char *v)
{
	printf("\"%s\": \"%s\"", key, v);
}

static void
run_load(void)
{
	double now;

	t_begin = now_s();
	t0 = t_begin + opt.warmup;
	t_end = t0 + opt.duration;
	t_deadline = t_begin + opt.timeout;
	if (opt.sessions > 0)
		window_open = 1; /* the whole run counts */
	for (int i = 0; i < opt.clients; i++)
		if (opt.sessions == 0 || n_started < opt.sessions)
			start_session(&conns[i], t_begin);
	for (;;) {
		now = now_s();
		window_marks(now);
		if (now >= t_deadline)
			break;
		if (opt.sessions > 0 && n_errors > opt.max_errors)
			break;
		if (n_errors > opt.max_errors)
			stopping = 1;
		if (stopping && now >= t_end + opt.drain)
			break;
		if ((stopping || (opt.sessions > 0 && n_started >= opt.sessions)) &&
		    busy_slots() == 0)
			break;
		int ms = 50;
		if (opt.sessions == 0) {
			double next = !window_open ? t0 : !window_closed ? t_end : 0;
			if (next > 0) {
				int w = (int)((next - now) * 1000) + 1;
				if (w < ms)
					ms = w < 0 ? 0 : w;
			}
		}
		loop_events(ms);
	}
	for (int i = 0; i < opt.clients; i++)
		if (conns[i].state != C_FREE) {
			n_aborted++;
			conn_close(&conns[i]);
		}
	now = now_s();
	if (opt.sessions > 0) {
		t0_actual = t_begin;
		tend_actual = now;
		n_done_window = n_done;
	}
	double window = tend_actual - t0_actual;
	printf("{");
	json_str("mode", mode == M_LOGIN ? "login" : "download");
	printf(", \"clients\": %d, \"tls\": %d, \"stock\": %d", opt.clients,
	       opt.tls, opt.stock);
	printf(", \"window_s\": %.6f, \"sessions\": %ld, \"bytes\": %llu",
	       window, n_done_window, (unsigned long long)bytes_window);
	printf(", \"sessions_total\": %ld, \"errors\": %ld, \"aborted\": %ld",
	       n_done, n_errors, n_aborted);
	printf(", \"retr_bytes_per_session\": %llu, \"retr_bytes_mismatch\": %d",
	       (unsigned long long)retr_bytes_session, retr_bytes_mismatch);
	printf(", \"mean_latency_ms\": %.3f",
	       n_done_window ? lat_sum_window / (double)n_done_window * 1e3 : 0);
	if (opt.sessions == 0) {
		printf(", \"server_cpu_s\": %.6f",
		       cpu_at_t0 >= 0 && cpu_at_end >= 0 ? cpu_at_end - cpu_at_t0
							 : -1.0);
		printf(", \"cpu0_busy_s\": %.3f, \"cpu1_busy_s\": %.3f",
		       cpu0_busy_end - cpu0_busy_t0, cpu1_busy_end - cpu1_busy_t0);
		printf(", \"client_cpu_s\": %.6f", self_cpu_end - self_cpu_t0);
	}
	printf(", ");
	json_str("first_error", first_error);
	printf("}\n");
}

static void
run_idle(void)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	int next = 0, released = 0;
	double now;

	t_begin = now_s();
	t_deadline = t_begin + opt.timeout;
	window_open = 0;
	/* Open the connections, max_inflight at a time. */
	for (;;) {
		now = now_s();
		if (now >= t_deadline)
			break;
		int inflight = 0;
		for (int i = 0; i < next; i++)
			if (conns[i].state != C_FREE && conns[i].state != C_HOLD)
				inflight++;
		while (next < opt.clients && inflight < opt.max_inflight) {
			start_session(&conns[next++], now);
			inflight++;
		}
		if (next >= opt.clients && inflight == 0)
			break;
		if (n_errors > opt.max_errors)
			break;
		loop_events(50);
	}
	printf("ready held=%ld errors=%ld\n", n_held, n_errors);
	fflush(stdout);
	/* Hold until stdin has a line or EOF. */
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) < 0)
		die("epoll_ctl stdin: %s", strerror(errno));
	while (!released) {
		struct pollfd p = { .fd = 0, .events = POLLIN };
		now = now_s();
		if (now >= t_deadline)
			break;
		if (poll(&p, 1, 0) > 0) {
			released = 1;
			break;
		}
		loop_events(100); /* notices servers closing held sessions */
	}
	epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);
	long held_at_release = n_held;
	/* QUIT them all. */
	now = now_s();
	for (int i = 0; i < opt.clients; i++) {
		struct conn *c = &conns[i];
		if (c->state != C_HOLD)
			continue;
		if (send_cmd(c, S_QUIT, 0, "QUIT") < 0)
			fail(c, "write QUIT", NULL, 0, now);
	}
	double quit_deadline = now_s() + 30;
	while (busy_slots() > 0 && now_s() < quit_deadline &&
	       now_s() < t_deadline)
		loop_events(50);
	for (int i = 0; i < opt.clients; i++)
		if (conns[i].state != C_FREE) {
			n_aborted++;
			conn_close(&conns[i]);
		}
	printf("{");
	json_str("mode", mode == M_IDLE_AUTH ? "idle-auth" : "idle-unauth");
	printf(", \"clients\": %d, \"held\": %ld, \"closed_ok\": %ld", opt.clients,
	       held_at_release, n_done);
	printf(", \"errors\": %ld, \"aborted\": %ld, ", n_errors, n_aborted);
	json_str("first_error", first_error);
	printf("}\n");
}

static int
crypt_bench(int argc, char **argv)
{
	struct crypt_data *cd;
	long count;
	double t;

	if (argc != 4)
		die("usage: popload crypt HASH PASSWORD COUNT");
	count = atol(argv[3]);
	if (count < 1 || count > 100000)
		die("COUNT out of range");
	cd = calloc(1, sizeof(*cd));
	if (cd == NULL)
		die("out of memory");
	/* CPU time, not wall time: other load on the CPU must not count. */
	double w = now_s();
	t = self_cpu();
	for (long i = 0; i < count; i++) {
		char *h = crypt_r(argv[2], argv[1], cd);
		if (h == NULL || strcmp(h, argv[1]) != 0)
			die("crypt: password does not match the hash");
	}
	t = self_cpu() - t;
	w = now_s() - w;
	printf("{\"crypt_ms\": %.4f, \"wall_ms\": %.4f, \"count\": %ld}\n",
	       t / (double)count * 1e3, w / (double)count * 1e3, count);
	free(cd);
	return 0;
}

/* What this machine charges for a minor page fault and for a system call:
 * both shape every server's CPU per session (fork, exec, fresh buffers). */
static int
vm_cost(void)
{
	const size_t pages = 8192, ps = 4096;
	struct rusage r0, r1;
	double t, cpu;
	long faults;

	getrusage(RUSAGE_SELF, &r0);
	t = self_cpu();
	for (int rep = 0; rep < 4; rep++) {
		char *p = mmap(NULL, pages * ps, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			die("mmap: %s", strerror(errno));
		for (size_t i = 0; i < pages; i++)
			p[i * ps] = 1;
		munmap(p, pages * ps);
	}
	cpu = self_cpu() - t;
	getrusage(RUSAGE_SELF, &r1);
	faults = r1.ru_minflt - r0.ru_minflt;
	t = self_cpu();
	for (int i = 0; i < 200000; i++)
		syscall(SYS_getppid);
	double sc = (self_cpu() - t) / 200000;
	printf("{\"fault_us\": %.3f, \"syscall_us\": %.3f}\n",
	       faults > 0 ? cpu / (double)faults * 1e6 : 0.0, sc * 1e6);
	return 0;
}

static void
usage(void)
{
	fputs("usage: popload [--host A] [--port P] [--tls] [--clients N]\n"
	      "               [--duration S] [--warmup S] [--drain S]"
	      " [--sessions K]\n"
	      "               [--user-fmt FMT] [--user-base B] [--user-count C]"
	      " [--pass PW]\n"
	      "               [--stock] [--cpu-file F] [--bufsize BYTES]"
	      " [--timeout S]\n"
	      "               [--max-errors E] [--verbose]\n"
	      "               login|download|idle-auth|idle-unauth\n"
	      "       popload crypt HASH PASSWORD COUNT\n"
	      "       popload vmcost\n",
	      stderr);
	exit(2);
}

int
main(int argc, char **argv)
{
	int i;

	if (argc >= 2 && strcmp(argv[1], "crypt") == 0)
		return crypt_bench(argc - 1, argv + 1);
	if (argc == 2 && strcmp(argv[1], "vmcost") == 0)
		return vm_cost();
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v != NULL && (i++, 1))
		if (ARG("--host"))
			opt.host = v;
		else if (ARG("--port"))
			opt.port = atoi(v);
		else if (strcmp(a, "--tls") == 0)
			opt.tls = 1;
		else if (ARG("--clients"))
			opt.clients = atoi(v);
		else if (ARG("--duration"))
			opt.duration = atof(v);
		else if (ARG("--warmup"))
			opt.warmup = atof(v);
		else if (ARG("--drain"))
			opt.drain = atof(v);
		else if (ARG("--timeout"))
			opt.timeout = atof(v);
		else if (ARG("--sessions"))
			opt.sessions = atol(v);
		else if (ARG("--user-fmt"))
			opt.user_fmt = v;
		else if (ARG("--user-base"))
			opt.user_base = atoi(v);
		else if (ARG("--user-count"))
			opt.user_count = atoi(v);
		else if (ARG("--pass"))
			opt.pass = v;
		else if (strcmp(a, "--stock") == 0)
			opt.stock = 1;
		else if (ARG("--cpu-file"))
			opt.cpu_file = v;
		else if (ARG("--bufsize"))
			opt.bufsize = (size_t)atol(v);
		else if (ARG("--max-errors"))
			opt.max_errors = atoi(v);
		else if (ARG("--max-inflight"))
			opt.max_inflight = atoi(v);
		else if (strcmp(a, "--verbose") == 0)
			opt.verbose = 1;
		else if (a[0] != '-' && i == argc - 1) {
			if (strcmp(a, "login") == 0)
				mode = M_LOGIN;
			else if (strcmp(a, "download") == 0)
				mode = M_DOWNLOAD;
			else if (strcmp(a, "idle-auth") == 0)
				mode = M_IDLE_AUTH;
			else if (strcmp(a, "idle-unauth") == 0)
				mode = M_IDLE_UNAUTH;
			else
				usage();
		} else
			usage();
#undef ARG
	}
	if (i != argc || argc < 2 || argv[argc - 1][0] == '-')
		usage();
	if (opt.clients < 1 || opt.clients > 20000)
		die("--clients out of range");
	if (opt.duration <= 0 || opt.duration > 3600 || opt.timeout <= 0 ||
	    opt.timeout > 7200)
		die("--duration/--timeout out of range");
	if (opt.bufsize < 1024 || opt.bufsize > 64 * 1024 * 1024)
		die("--bufsize out of range");
	{
		/* exactly one conversion: %d, optionally %0Nd */
		const char *p = strchr(opt.user_fmt, '%');
		if (p == NULL)
			die("--user-fmt needs one %%d");
		p++;
		while (*p >= '0' && *p <= '9')
			p++;
		if (*p != 'd' || strchr(p, '%') != NULL)
			die("--user-fmt needs exactly one %%d (or %%0Nd)");
	}

	signal(SIGPIPE, SIG_IGN);
	{
		struct rlimit rl;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
		    rl.rlim_cur < (rlim_t)opt.clients + 64) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	memset(&server_addr, 0, sizeof(server_addr));
	server_addr.sin_family = AF_INET;
	server_addr.sin_port = htons((uint16_t)opt.port);
	if (inet_pton(AF_INET, opt.host, &server_addr.sin_addr) != 1)
		die("--host must be an IPv4 address");
	if (opt.tls) {
		ssl_ctx = SSL_CTX_new(TLS_client_method());
		if (ssl_ctx == NULL)
			die("SSL_CTX_new failed");
		/* Full handshakes every time: no tickets, no session cache. */
		SSL_CTX_set_options(ssl_ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_session_cache_mode(ssl_ctx, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_verify(ssl_ctx, SSL_VERIFY_NONE, NULL);
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		die("epoll_create1: %s", strerror(errno));
	conns = calloc((size_t)opt.clients, sizeof(*conns));
	if (conns == NULL)
		die("out of memory");
	for (i = 0; i < opt.clients; i++) {
		conns[i].fd = -1;
		conns[i].slot = i;
		conns[i].state = C_FREE;
		/* Idle sessions need little room; keep 500 of them small. */
		size_t bs = (mode == M_IDLE_AUTH || mode == M_IDLE_UNAUTH)
				    ? 4096
				    : opt.bufsize;
		conns[i].buf = malloc(bs);
		if (conns[i].buf == NULL)
			die("out of memory");
	}
	if (mode == M_IDLE_AUTH || mode == M_IDLE_UNAUTH) {
		opt.bufsize = 4096;
		run_idle();
	} else {
		run_load();
	}
	return 0;
}
