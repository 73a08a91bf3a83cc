/* Command-line parsing, message numbers, locations, networks. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "conf.h"
#include "session.h"

static int
split(const char *line, unsigned flags, const char **argv, char *buf)
{
	int argc = -1;

	strcpy(buf, line);
	if (session_split_args(buf, flags, argv, &argc) < 0)
		return -1;
	return argc;
}

static void
test_split_args(void **state)
{
	const char *argv[POSTERN_MAX_ARGS + 1];
	char buf[300], forty[48], fortyone[64];

	assert_int_equal(split("", 0, argv, buf), 0);
	assert_int_equal(split(" 1", 0, argv, buf), 1);
	assert_string_equal(argv[0], "1");
	assert_int_equal(split(" 1 20", 0, argv, buf), 2);
	assert_string_equal(argv[1], "20");
	assert_int_equal(split(" 1  20 ", 0, argv, buf), 2);
	assert_int_equal(split(" a b c d", 0, argv, buf), 4);
	assert_int_equal(split(" a b c d e", 0, argv, buf), -1);
	assert_int_equal(split("x", 0, argv, buf), -1);

	memset(forty, 'x', 40);
	forty[0] = ' ';
	forty[41] = '\0';
	memset(forty + 1, 'y', 40);
	assert_int_equal(split(forty, 0, argv, buf), 1);
	snprintf(fortyone, sizeof(fortyone), "%sz", forty);
	assert_int_equal(split(fortyone, 0, argv, buf), -1);

	/* PASS: the rest of the line, spaces and all. */
	assert_int_equal(split(" my secret  pw ", POSTERN_CMD_REST_OF_LINE,
			       argv, buf), 1);
	assert_string_equal(argv[0], "my secret  pw ");
	assert_int_equal(split("", POSTERN_CMD_REST_OF_LINE, argv, buf), 0);
	assert_int_equal(split(" ", POSTERN_CMD_REST_OF_LINE, argv, buf), 0);
}

static void
test_parse_number(void **state)
{
	unsigned long long n;

	assert_int_equal(session_parse_number("1", 10, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(session_parse_number("0010", 10, &n), 0);
	assert_int_equal(n, 10);
	assert_int_equal(session_parse_number("11", 10, &n), -1);
	assert_int_equal(session_parse_number("", 10, &n), -1);
	assert_int_equal(session_parse_number("-1", 10, &n), -1);
	assert_int_equal(session_parse_number("+1", 10, &n), -1);
	assert_int_equal(session_parse_number("1a", 10, &n), -1);
	assert_int_equal(session_parse_number("99999999999999999999999", 10,
					      &n), -1);
}

static void
test_expand_location(void **state)
{
	struct postern_session s;
	const char *error = NULL;

	memset(&s, 0, sizeof(s));
	arena_init(&s.arena, 1 << 20);
	assert_string_equal(session_expand_location(&s, "~/Maildir", "bob",
						    "/home/bob", &error),
			    "/home/bob/Maildir");
	assert_string_equal(session_expand_location(&s, "/var/mail/%u", "bob",
						    NULL, &error),
			    "/var/mail/bob");
	assert_string_equal(session_expand_location(&s, "/m/%d/%n/100%%",
						    "bob@example.org", NULL,
						    &error),
			    "/m/example.org/bob/100%");
	assert_null(session_expand_location(&s, "~/Maildir", "bob", NULL,
					    &error));
	assert_non_null(error);
	assert_null(session_expand_location(&s, "/m/%x", "bob", NULL, &error));
	arena_wipe(&s.arena);
}

static void
test_networks(void **state)
{
	struct net_range r[2];
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };

	assert_int_equal(net_range_parse("127.0.0.0/8", &r[0]), 0);
	assert_int_equal(net_range_parse("2001:db8::/33", &r[1]), 0);
	assert_int_equal(net_range_parse("127.0.0.1/33", &r[0]) , -1);
	assert_int_equal(net_range_parse("nonsense", &r[0]), -1);
	assert_int_equal(net_range_parse("10.0.0.0/", &r[0]), -1);
	assert_int_equal(net_range_parse("127.0.0.0/8", &r[0]), 0);

	inet_pton(AF_INET, "127.1.2.3", &sin.sin_addr);
	assert_true(net_range_match(r, 2, (struct sockaddr *)&sin));
	inet_pton(AF_INET, "128.0.0.1", &sin.sin_addr);
	assert_false(net_range_match(r, 2, (struct sockaddr *)&sin));
	inet_pton(AF_INET6, "2001:db8:7fff::1", &sin6.sin6_addr);
	assert_true(net_range_match(r, 2, (struct sockaddr *)&sin6));
	inet_pton(AF_INET6, "2001:db8:8000::1", &sin6.sin6_addr);
	assert_false(net_range_match(r, 2, (struct sockaddr *)&sin6));
	/* IPv4 clients on a dual-stack socket match IPv4 ranges. */
	inet_pton(AF_INET6, "::ffff:127.0.0.9", &sin6.sin6_addr);
	assert_true(net_range_match(r, 2, (struct sockaddr *)&sin6));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_args),
		cmocka_unit_test(test_parse_number),
		cmocka_unit_test(test_expand_location),
		cmocka_unit_test(test_networks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
