/* The data path: the CRLF/dot-stuffing converter and the line reader. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "params.h"
#include "proto.h"
#include "resident.h"

/* Converts in one go through a tiny output window, so every boundary case
 * of the incremental converter is exercised. */
static size_t
convert(const char *in, size_t in_len, unsigned flags, int dot_stuff,
	long long limit, size_t window, char *out, size_t out_size)
{
	struct msg_conv c;
	size_t pos = 0, o = 0;

	msg_conv_init(&c, flags, dot_stuff, limit);
	while (!c.done) {
		size_t used, room = window;
		size_t n;

		if (room > out_size - o)
			room = out_size - o;
		assert_true(room >= 8);
		n = msg_conv_run(&c, (const unsigned char *)in + pos,
				 in_len - pos, 1, &used,
				 (unsigned char *)out + o, room);
		o += n;
		pos += used;
		if (pos == in_len || (n == 0 && used == 0))
			break;
	}
	o += msg_conv_finish(&c, (unsigned char *)out + o);
	return o;
}

static void
check(const char *in, const char *expected, int dot_stuff, long long limit)
{
	static const size_t windows[] = { 8, 9, 13, 64, 65536 };
	char out[4096];

	for (size_t w = 0; w < sizeof(windows) / sizeof(*windows); w++) {
		size_t n = convert(in, strlen(in), 0, dot_stuff, limit,
				   windows[w], out, sizeof(out));
		out[n] = '\0';
		assert_string_equal(out, expected);
	}
}

static void
test_line_endings(void **state)
{
	check("a\nb\n", "a\r\nb\r\n", 1, -1);
	check("a\r\nb\r\n", "a\r\nb\r\n", 1, -1);
	check("a\r\nb\nc\r\n", "a\r\nb\r\nc\r\n", 1, -1);
	check("no final newline", "no final newline\r\n", 1, -1);
	check("", "", 1, -1);
	check("\n\n", "\r\n\r\n", 1, -1);
	check("bare\rcr\n", "bare\rcr\r\n", 1, -1);
	check("ends in cr\r", "ends in cr\r\n", 1, -1);
}

static void
test_dot_stuffing(void **state)
{
	check(".\n", "..\r\n", 1, -1);
	check("..\n", "...\r\n", 1, -1);
	check("a\n.b\n.\nc.\n", "a\r\n..b\r\n..\r\nc.\r\n", 1, -1);
	check(".", "..\r\n", 1, -1);
	/* Sizes are counted before dot-stuffing. */
	check("a\n.b\n", "a\r\n.b\r\n", 0, -1);
}

static void
test_eight_bit_and_nul(void **state)
{
	const char in[] = "\xe4\xf6\xfc\n\x80\x00x\n";
	char out[64];
	size_t n = convert(in, sizeof(in) - 1, 0, 1, -1, 8, out, sizeof(out));

	assert_int_equal(n, 10);
	assert_memory_equal(out, "\xe4\xf6\xfc\r\n\x80\x00x\r\n", 10);
}

static void
test_top(void **state)
{
	const char *msg = "H: 1\nH: 2\n\nb1\nb2\nb3\n";

	check(msg, "H: 1\r\nH: 2\r\n\r\n", 1, 0);
	check(msg, "H: 1\r\nH: 2\r\n\r\nb1\r\n", 1, 1);
	check(msg, "H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\nb3\r\n", 1, 99);
	check("H: only header\n", "H: only header\r\n", 1, 0);
	check("H: x\r\n\r\n.b\r\n", "H: x\r\n\r\n..b\r\n", 1, 5);
}

static void
test_from_unquote(void **state)
{
	const char *in = ">From a\n>>From b\nFrom c\n>Fromage\n";
	const char *expected = "From a\r\n>From b\r\nFrom c\r\n>Fromage\r\n";
	char out[256];
	size_t n = convert(in, strlen(in), POSTERN_MSG_FROM_UNQUOTE, 1, -1,
			   8, out, sizeof(out));

	out[n] = '\0';
	assert_string_equal(out, expected);
}

/* A line longer than the output buffer streams through in pieces. */
static void
test_long_line(void **state)
{
	size_t len = 3 * OUTPUT_BUFFER_SIZE + 7;
	char *in = malloc(len + 1), *out = malloc(len + 16);
	size_t n;

	for (size_t i = 0; i < len; i++)
		in[i] = (char)('a' + i % 26);
	in[0] = '.';
	n = convert(in, len, 0, 1, -1, 1000, out, len + 16);
	assert_int_equal(n, len + 3);
	assert_memory_equal(out, ".", 1);
	assert_memory_equal(out + 1, in, len);
	assert_memory_equal(out + 1 + len, "\r\n", 2);
	free(in);
	free(out);
}

/* The fd path: the size counter and the writer agree byte for byte. */
static void
test_send_and_size_agree(void **state)
{
	char path[] = "/tmp/postern-test-XXXXXX";
	int fd = mkstemp(path), sv[2];
	struct pio io;
	size_t len = 300000, got = 0;
	char *msg = malloc(len), *wire = malloc(2 * len + 16);
	uint64_t size;

	assert_true(fd >= 0);
	unlink(path);
	for (size_t i = 0; i < len; i++)
		msg[i] = i % 71 == 70 ? '\n' : i % 71 == 0 ? '.' : 'x';
	assert_int_equal(write(fd, msg, len), (ssize_t)len);
	assert_int_equal(proto_wire_size_fd(fd, 0, len, 0, &size), 0);

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(pio_init(&io), 0);
	pio_attach(&io, sv[0]);
	if (fork() == 0) {
		pio_send_message(&io, fd, 0, len, 0, -1);
		pio_flush(&io);
		_exit(0);
	}
	close(sv[0]);
	for (;;) {
		ssize_t n = read(sv[1], wire + got, 2 * len + 16 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	/* wire = stuffed body + ".\r\n"; undo stuffing and compare sizes */
	assert_true(got > 3);
	assert_memory_equal(wire + got - 3, ".\r\n", 3);
	size_t unstuffed = 0;
	for (size_t i = 0; i < got - 3; i++) {
		if ((i == 0 || wire[i - 1] == '\n') && wire[i] == '.')
			continue;
		unstuffed++;
	}
	assert_int_equal(unstuffed, size);
	pio_free(&io);
	close(fd);
	free(msg);
	free(wire);
}

static void
test_line_reader(void **state)
{
	int sv[2];
	struct pio io;
	char *line, big[POP3_MAX_LINE + 50];
	size_t len;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(pio_init(&io), 0);
	pio_attach(&io, sv[0]);
	io.read_timeout_ms = 2000;

	memset(big, 'A', sizeof(big));
	assert_int_equal(write(sv[1], "USER a\r\nNOOP\nST", 15), 15);
	assert_int_equal(pio_read_line(&io, &line, &len), PIO_LINE);
	assert_string_equal(line, "USER a");
	assert_true(pio_has_line(&io));
	assert_int_equal(pio_read_line(&io, &line, &len), PIO_LINE);
	assert_string_equal(line, "NOOP");
	assert_false(pio_has_line(&io));
	assert_int_equal(write(sv[1], "AT\r\n", 4), 4);
	assert_int_equal(pio_read_line(&io, &line, &len), PIO_LINE);
	assert_string_equal(line, "STAT");

	/* 255 octets with CRLF is the limit; one more is too long. */
	assert_int_equal(write(sv[1], big, POP3_MAX_LINE - 2), POP3_MAX_LINE - 2);
	assert_int_equal(write(sv[1], "\r\n", 2), 2);
	assert_int_equal(pio_read_line(&io, &line, &len), PIO_LINE);
	assert_int_equal(len, POP3_MAX_LINE - 2);
	assert_int_equal(write(sv[1], big, POP3_MAX_LINE - 1), POP3_MAX_LINE - 1);
	assert_int_equal(write(sv[1], "\r\n", 2), 2);
	assert_int_equal(pio_read_line(&io, &line, &len), PIO_TOO_LONG);

	/* A 10000-octet line is dropped whole; the next line is intact. */
	for (int i = 0; i < 40; i++)
		assert_int_equal(write(sv[1], big, 250), 250);
	assert_int_equal(write(sv[1], "\r\nQUIT\r\n", 8), 8);
	assert_int_equal(pio_read_line(&io, &line, &len), PIO_TOO_LONG);
	assert_int_equal(pio_read_line(&io, &line, &len), PIO_LINE);
	assert_string_equal(line, "QUIT");

	io.read_timeout_ms = 50;
	assert_int_equal(pio_read_line(&io, &line, &len), PIO_TIMEOUT);
	close(sv[1]);
	assert_int_equal(pio_read_line(&io, &line, &len), PIO_EOF);
	pio_free(&io);
	close(sv[0]);
}

/*
 * Waiting on a socket: the read itself waits on SO_RCVTIMEO (no poll),
 * first for IDLE_RELEASE_MS, when the buffers go back, then for the rest
 * of the read timeout.
 */
static void
test_read_timeouts_socket(void **state)
{
	int sv[2];
	struct pio io;
	char *line;
	size_t len;
	struct timespec t0, t1;
	long long ms;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(pio_init(&io), 0);
	pio_attach(&io, sv[0]);
	io.read_timeout_ms = IDLE_RELEASE_MS + 300;

	assert_int_equal(write(sv[1], "NOOP\r\n", 6), 6);
	assert_int_equal(pio_read_line(&io, &line, &len), PIO_LINE);
	assert_int_equal(io.rcvtimeo_ms, IDLE_RELEASE_MS);
	assert_int_equal(pio_puts(&io, "+OK\r\n"), 0);
	assert_true(resident(io.in));
	assert_true(resident(io.out));

	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(pio_read_line(&io, &line, &len), PIO_TIMEOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000LL +
	     (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_true(ms >= IDLE_RELEASE_MS + 300 - 20);
	assert_true(ms < IDLE_RELEASE_MS + 300 + 1000);
	/* The reply went out before the wait; the buffers went back. */
	assert_int_equal(read(sv[1], (char[8]){ 0 }, 8), 5);
	assert_false(resident(io.in));
	assert_false(resident(io.out));
	assert_int_equal(io.rcvtimeo_ms, 300);

	/* The next wait starts with the first timeout again; data wakes
	 * the read at once. */
	assert_int_equal(write(sv[1], "QUIT\r\n", 6), 6);
	assert_int_equal(pio_read_line(&io, &line, &len), PIO_LINE);
	assert_string_equal(line, "QUIT");
	assert_int_equal(io.rcvtimeo_ms, IDLE_RELEASE_MS);
	pio_free(&io);
	close(sv[0]);
	close(sv[1]);
}

/* inetd on a pipe: no SO_RCVTIMEO there, so poll does the waiting. */
static void
test_read_timeouts_pipe(void **state)
{
	int p[2];
	struct pio io;
	char *line;
	size_t len;

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(pio_init(&io), 0);
	pio_attach(&io, p[0]);
	io.out_fd = -1;
	io.read_timeout_ms = 100;
	assert_int_equal(write(p[1], "STAT\n", 5), 5);
	assert_int_equal(pio_read_line(&io, &line, &len), PIO_LINE);
	assert_string_equal(line, "STAT");
	assert_int_equal(io.rcvtimeo_ms, PIO_RCVTIMEO_NONE);
	assert_int_equal(pio_read_line(&io, &line, &len), PIO_TIMEOUT);
	close(p[1]);
	assert_int_equal(pio_read_line(&io, &line, &len), PIO_EOF);
	pio_free(&io);
	close(p[0]);
}

/* A connected TCP pair on 127.0.0.1, the server end with TCP_NODELAY as
 * a session socket has it. */
static void
tcp_pair(int *server_r, int *client_r)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t a_len = sizeof(a);
	int l, one = 1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(l >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &a_len), 0);
	*client_r = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(*client_r, (struct sockaddr *)&a, a_len), 0);
	*server_r = accept(l, NULL, NULL);
	assert_true(*server_r >= 0);
	assert_int_equal(setsockopt(*server_r, IPPROTO_TCP, TCP_NODELAY, &one,
				    sizeof(one)), 0);
	close(l);
}

static int
unsent(int fd)
{
	int n = -1;

	assert_int_equal(ioctl(fd, SIOCOUTQNSD, &n), 0);
	return n;
}

/*
 * The session's last reply stays in the kernel until close(), so its FIN
 * goes in the same packet; an ordinary flush sends at once. Either way
 * the client reads every byte, then EOF.
 */
static void
test_flush_last(void **state)
{
	char buf[64];
	struct pio io;
	int srv, cli;

	(void)state;
	tcp_pair(&srv, &cli);
	assert_int_equal(pio_init(&io), 0);
	pio_attach(&io, srv);
	assert_int_equal(pio_puts(&io, "+OK\r\n"), 0);
	assert_int_equal(pio_flush(&io), 0);
	assert_int_equal(unsent(srv), 0);
	assert_int_equal(pio_puts(&io, "+OK bye\r\n"), 0);
	assert_int_equal(pio_flush_last(&io), 0);
	assert_int_equal(unsent(srv), 9);
	assert_int_equal(io.last, 0);
	close(srv);
	assert_int_equal(recv(cli, buf, sizeof(buf), MSG_WAITALL), 14);
	assert_memory_equal(buf, "+OK\r\n+OK bye\r\n", 14);
	assert_int_equal(read(cli, buf, sizeof(buf)), 0);
	close(cli);
	pio_free(&io);
}

/* inetd on a pipe: the last flush is an ordinary write. */
static void
test_flush_last_pipe(void **state)
{
	char buf[16];
	struct pio io;
	int p[2];

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(pio_init(&io), 0);
	pio_attach(&io, p[1]);
	assert_int_equal(pio_puts(&io, "+OK bye\r\n"), 0);
	assert_int_equal(pio_flush_last(&io), 0);
	assert_int_equal(read(p[0], buf, sizeof(buf)), 9);
	pio_free(&io);
	close(p[0]);
	close(p[1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line_endings),
		cmocka_unit_test(test_dot_stuffing),
		cmocka_unit_test(test_eight_bit_and_nul),
		cmocka_unit_test(test_top),
		cmocka_unit_test(test_from_unquote),
		cmocka_unit_test(test_long_line),
		cmocka_unit_test(test_send_and_size_agree),
		cmocka_unit_test(test_line_reader),
		cmocka_unit_test(test_read_timeouts_socket),
		cmocka_unit_test(test_read_timeouts_pipe),
		cmocka_unit_test(test_flush_last),
		cmocka_unit_test(test_flush_last_pipe),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
