#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "maildir-name.h"

#define S(str) (str), (sizeof(str) - 1)

static void
test_base_len(void **state)
{
	(void)state;
	assert_int_equal(maildir_base_len(S("1700000000.M1P2.host")), 20);
	assert_int_equal(maildir_base_len(S("1700000000.M1P2.host:2,S")), 20);
	assert_int_equal(maildir_base_len(S("1700000000.M1P2.host:2,")), 20);
	/* Only ':' separates the info; ';' and '!' belong to the base. */
	assert_int_equal(maildir_base_len(S("1.a.host;2,S")), 12);
	/* The first ':' decides. */
	assert_int_equal(maildir_base_len(S("1.a.h:2,S:x")), 5);
	assert_int_equal(maildir_base_len(S(":2,S")), 0);
	assert_int_equal(maildir_base_len(S("")), 0);
	/* (ptr, len): nothing past len is looked at. */
	assert_int_equal(maildir_base_len("1.a:2,S", 3), 3);
}

static int
size_of(const char *name, char field, uint64_t *size_r)
{
	size_t len = strlen(name);

	return maildir_base_size(name, maildir_base_len(name, len), field,
				 size_r);
}

static void
test_sizes(void **state)
{
	uint64_t v = 0;

	(void)state;
	assert_true(size_of("1700000000.M1P2.host,S=1234,W=1260:2,S", 'S',
			    &v));
	assert_int_equal(v, 1234);
	assert_true(size_of("1700000000.M1P2.host,S=1234,W=1260:2,S", 'W',
			    &v));
	assert_int_equal(v, 1260);
	assert_true(size_of("1700000000.M1P2.host,W=7", 'W', &v));
	assert_int_equal(v, 7);
	assert_true(size_of("1.a.h,W=0", 'W', &v));
	assert_int_equal(v, 0);
	assert_true(size_of("1.a.h,W=007", 'W', &v));
	assert_int_equal(v, 7);
	/* Any order of fields, unknown fields skipped. */
	assert_true(size_of("1.a.h,X=1,W=42,S=40", 'W', &v));
	assert_int_equal(v, 42);
	assert_true(size_of("1.a.h,W=18446744073709551615", 'W', &v));
	assert_int_equal(v, UINT64_MAX);

	/* Absent. */
	assert_false(size_of("1700000000.M1P2.host", 'W', &v));
	assert_false(size_of("1700000000.M1P2.host:2,S", 'S', &v));
	assert_false(size_of("1.a.h,S=10", 'W', &v));
	/* In the info part, not the base: not a size. */
	assert_false(size_of("1.a.h:2,W=10", 'W', &v));
	/* The first part is the name, not a field. */
	assert_false(size_of("W=10,x", 'W', &v));
	/* Malformed. */
	assert_false(size_of("1.a.h,W=", 'W', &v));
	assert_false(size_of("1.a.h,W=abc", 'W', &v));
	assert_false(size_of("1.a.h,W=12a", 'W', &v));
	assert_false(size_of("1.a.h,W=-1", 'W', &v));
	assert_false(size_of("1.a.h,W= 1", 'W', &v));
	assert_false(size_of("1.a.h,W=1 ", 'W', &v));
	assert_false(size_of("1.a.h,w=10", 'W', &v));
	assert_false(size_of("1.a.h,W10", 'W', &v));
	/* Overflow: 2^64 and a 21-digit number. */
	assert_false(size_of("1.a.h,W=18446744073709551616", 'W', &v));
	assert_false(size_of("1.a.h,W=99999999999999999999", 'W', &v));
	assert_false(size_of("1.a.h,W=000000000000000000001", 'W', &v));
	/* The first ,W= decides, even when malformed. */
	assert_false(size_of("1.a.h,W=x,W=5", 'W', &v));
	assert_true(size_of("1.a.h,W=5,W=x", 'W', &v));
	assert_int_equal(v, 5);
	/* (ptr, len): a field cut by len is parsed only up to len. */
	assert_true(maildir_base_size("1.a.h,W=123", 9, 'W', &v));
	assert_int_equal(v, 1);
}

static void
test_time(void **state)
{
	(void)state;
	assert_true(maildir_base_time(S("1700000000.M1P2.host")) ==
		    1700000000);
	assert_true(maildir_base_time(S("0.x")) == 0);
	assert_true(maildir_base_time(S("abc.def")) == MAILDIR_TIME_NONE);
	assert_true(maildir_base_time(S("17000x.def")) == MAILDIR_TIME_NONE);
	assert_true(maildir_base_time(S(".def")) == MAILDIR_TIME_NONE);
	assert_true(maildir_base_time(S("1700000000")) == MAILDIR_TIME_NONE);
	assert_true(maildir_base_time(S("")) == MAILDIR_TIME_NONE);
	assert_true(maildir_base_time(S("99999999999999999999.x")) ==
		    MAILDIR_TIME_NONE);
}

static int
cmp(const char *a, const char *b)
{
	return maildir_base_cmp(a, strlen(a), b, strlen(b));
}

static int
qsort_cmp(const void *a, const void *b)
{
	return cmp(*(const char *const *)a, *(const char *const *)b);
}

static void
test_order(void **state)
{
	const char *names[] = {
		"zzz.no-time",
		"1700000100.a.host",
		"999999999.z.host", /* older, fewer digits */
		"1700000000.b.host",
		"1700000000.a.host,S=5",
		"1700000000.a.host",
		"abc.no-time",
	};
	const char *want[] = {
		"999999999.z.host",
		"1700000000.a.host",
		"1700000000.a.host,S=5",
		"1700000000.b.host",
		"1700000100.a.host",
		"abc.no-time",
		"zzz.no-time",
	};

	(void)state;
	assert_true(cmp("1.a", "2.a") < 0);
	assert_true(cmp("2.a", "10.a") < 0); /* numeric, not bytewise */
	assert_true(cmp("10.a", "2.a") > 0);
	assert_true(cmp("5.a", "5.a") == 0);
	assert_true(cmp("5.a", "5.ab") < 0);
	assert_true(cmp("5.ab", "5.a") > 0);
	assert_true(cmp("5.b", "5.a") > 0);
	assert_true(cmp("9.a", "x.a") < 0); /* no time: last */
	qsort(names, sizeof(names) / sizeof(*names), sizeof(*names),
	      qsort_cmp);
	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++)
		assert_string_equal(names[i], want[i]);
}

static int
valid_uid(const char *uid, size_t len)
{
	if (len < 1 || len > MAILDIR_UID_MAX || strlen(uid) != len)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)uid[i] < 0x21 ||
		    (unsigned char)uid[i] > 0x7e)
			return 0;
	}
	return 1;
}

static void
test_uid_plain(void **state)
{
	char uid[MAILDIR_UID_MAX + 1];
	char name[MAILDIR_UID_MAX + 1];
	size_t len;

	(void)state;
	len = maildir_uid(S("1700000000.M1P2.host,S=5,W=6"), uid);
	assert_int_equal(len, 28);
	assert_string_equal(uid, "1700000000.M1P2.host,S=5,W=6");
	/* Every printable byte is allowed. */
	len = maildir_uid(S("!~{}\"'\\"), uid);
	assert_string_equal(uid, "!~{}\"'\\");
	/* Exactly 70: kept. */
	memset(name, 'a', MAILDIR_UID_MAX);
	len = maildir_uid(name, MAILDIR_UID_MAX, uid);
	assert_int_equal(len, MAILDIR_UID_MAX);
	assert_memory_equal(uid, name, MAILDIR_UID_MAX);
	assert_int_equal(uid[MAILDIR_UID_MAX], '\0');
	/* A single character. */
	len = maildir_uid(S("x"), uid);
	assert_string_equal(uid, "x");
}

static void
test_uid_hashed(void **state)
{
	static const char *const odd[] = {
		"1700000000.M1P2.h\xc3\xa4st",    /* UTF-8 host */
		"1700000000.M1P2.host name",      /* space */
		"1700000000.M1P2.host\x7f",       /* DEL */
		"1700000000.M1P2.host\t",         /* control */
		"",                               /* empty base */
		"1700000000.M1P2.host name2",
		/* 71 characters: too long, although printable */
		"1700000000.M1234567890P1234567890Q1234567890.mail.example.org,"
		"S=1,W=120",
		"1700000000.M1234567890P1234567890Q1234567890.mail.example.org,"
		"S=1,W=130",
	};
	enum { N = sizeof(odd) / sizeof(*odd) };
	char uids[N][MAILDIR_UID_MAX + 1];
	char again[MAILDIR_UID_MAX + 1];

	(void)state;
	assert_int_equal(strlen(odd[6]), 71);
	for (size_t i = 0; i < N; i++) {
		size_t len = maildir_uid(odd[i], strlen(odd[i]), uids[i]);

		assert_int_equal(len, 16);
		assert_true(valid_uid(uids[i], len));
		assert_int_equal(strspn(uids[i], "0123456789abcdef"), 16);
		/* Stable. */
		maildir_uid(odd[i], strlen(odd[i]), again);
		assert_string_equal(again, uids[i]);
	}
	/* Distinct for distinct names. */
	for (size_t i = 0; i < N; i++) {
		for (size_t j = i + 1; j < N; j++)
			assert_string_not_equal(uids[i], uids[j]);
	}
	/* Stable across builds and hosts: FNV-1a 64 of "" and "a". */
	assert_string_equal(uids[4], "cbf29ce484222325");
	maildir_uid(S("a\x01"), again);
	assert_true(valid_uid(again, strlen(again)));
	/* NUL inside (ptr, len) counts, and is hashed. */
	maildir_uid("ab\0c", 4, again);
	assert_int_equal(strlen(again), 16);
}

static int
uid_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void
test_uid_many_distinct(void **state)
{
	/* Many similar long names: no two hashes agree. */
	enum { N = 5000 };
	char (*uids)[MAILDIR_UID_MAX + 1] = calloc(N, sizeof(*uids));
	char name[100];

	(void)state;
	assert_non_null(uids);
	for (int i = 0; i < N; i++) {
		memset(name, 'x', sizeof(name));
		for (int k = i, p = 0; p < 6; p++, k /= 10)
			name[90 + p] = (char)('0' + k % 10);
		maildir_uid(name, sizeof(name), uids[i]);
	}
	qsort(uids, N, sizeof(*uids), uid_cmp);
	for (int i = 1; i < N; i++)
		assert_string_not_equal(uids[i - 1], uids[i]);
	free(uids);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base_len),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_time),
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_uid_plain),
		cmocka_unit_test(test_uid_hashed),
		cmocka_unit_test(test_uid_many_distinct),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
