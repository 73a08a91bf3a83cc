/*
 * Listeners carry the session sockets' options (worker_prepare_socket),
 * which accepted sockets inherit: the master then makes no system call
 * per connection to set them, and the worker's reads wait on
 * SO_RCVTIMEO. If a kernel stopped passing them on, this fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "conf.h"
#include "listen.h"
#include "params.h"

static long
timeout_ms(int fd, int option)
{
	struct timeval tv;
	socklen_t len = sizeof(tv);

	assert_int_equal(getsockopt(fd, SOL_SOCKET, option, &tv, &len), 0);
	return (long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void
test_accepted_sockets_inherit(void **state)
{
	struct listen_conf lc = { .name = "pop3", .address = "127.0.0.1",
				  .port = 0, .file = "test", .line = 1 };
	struct server_conf conf;
	struct listener *list = NULL;
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	size_t count = 0;
	int c, a, nodelay = 0;
	socklen_t olen = sizeof(nodelay);
	struct pollfd pfd;

	(void)state;
	unsetenv("LISTEN_FDS");
	memset(&conf, 0, sizeof(conf));
	conf.path = "test.conf";
	conf.listens = &lc;
	conf.n_listens = 1;
	assert_int_equal(listen_open(&conf, &list, &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(getsockname(list[0].fd, (struct sockaddr *)&sin,
				     &len),
			 0);

	c = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(c >= 0);
	assert_int_equal(connect(c, (struct sockaddr *)&sin, len), 0);
	pfd = (struct pollfd){ .fd = list[0].fd, .events = POLLIN };
	assert_int_equal(poll(&pfd, 1, 5000), 1);
	a = accept4(list[0].fd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(a >= 0);

	assert_int_equal(timeout_ms(a, SO_RCVTIMEO), IDLE_RELEASE_MS);
	assert_int_equal(timeout_ms(a, SO_SNDTIMEO), WRITE_TIMEOUT * 1000L);
	assert_int_equal(getsockopt(a, IPPROTO_TCP, TCP_NODELAY, &nodelay,
				    &olen),
			 0);
	assert_int_equal(nodelay, 1);
	close(a);
	close(c);
	listen_close(&list, count);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accepted_sockets_inherit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
