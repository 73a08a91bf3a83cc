/*
 * Unit tests of the passwd-file parser, table and password checks
 * (modules/auth/passwd/passwd-file.c), without the core.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <crypt.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "passwd-file.h"

/*
 * Counts the hashes: this executable's crypt_rn comes before libcrypt's
 * for the parser compiled into it, and passes each call on. Every path
 * of a check must hash exactly once (equal timing for unknown users).
 */
static unsigned long crypt_calls;

char *
crypt_rn(const char *phrase, const char *setting, void *data, int size)
{
	static char *(*real)(const char *, const char *, void *, int);

	if (real == NULL) /* POSIX's way to store dlsym's function */
		*(void **)&real = dlsym(RTLD_NEXT, "crypt_rn");
	assert_non_null(real);
	crypt_calls++;
	return real(phrase, setting, data, size);
}

static char tmpdir[64];
static char path[128];

/* Fixed random bytes, so every run makes the same salts. */
static const char rbytes[] = "0123456789abcdef";

struct hashes {
	char sha512[CRYPT_OUTPUT_SIZE];
	char sha256[CRYPT_OUTPUT_SIZE];
	char yescrypt[CRYPT_OUTPUT_SIZE];
	char bcrypt[CRYPT_OUTPUT_SIZE];
};
static struct hashes h_secret; /* all of the password "secret" */

static void
hash(const char *phrase, const char *setting, char *out, size_t out_size)
{
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	const char *r;

	assert_non_null(cd);
	r = crypt_rn(phrase, setting, cd, sizeof(*cd));
	assert_non_null(r);
	assert_true(strlen(r) < out_size);
	memcpy(out, r, strlen(r) + 1);
	free(cd);
}

static void
gensalt(const char *prefix, unsigned long count, char *out, size_t size)
{
	assert_non_null(crypt_gensalt_rn(prefix, count, rbytes,
					 (int)sizeof(rbytes) - 1, out,
					 (int)size));
}

static void
make_hashes(const char *phrase, struct hashes *h)
{
	char s[CRYPT_GENSALT_OUTPUT_SIZE];

	hash(phrase, "$6$saltsalt$", h->sha512, sizeof(h->sha512));
	hash(phrase, "$5$saltsalt$", h->sha256, sizeof(h->sha256));
	/* Cheapest yescrypt and bcrypt costs: the tests check logic, not
	 * strength. */
	gensalt("$y$", 1, s, sizeof(s));
	hash(phrase, s, h->yescrypt, sizeof(h->yescrypt));
	gensalt("$2b$", 4, s, sizeof(s));
	hash(phrase, s, h->bcrypt, sizeof(h->bcrypt));
}

static int
group_setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-passwd-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/users", tmpdir);
	make_hashes("secret", &h_secret);
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	unlink(path);
	return rmdir(tmpdir);
}

static void
write_file(const char *content, mode_t mode)
{
	int fd;
	size_t len = strlen(content);

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, len), (ssize_t)len);
	/* chmod, not the umask-filtered open mode. */
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

/* Writes a file of printf-formatted content. */
static void
write_filef(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
write_filef(const char *fmt, ...)
{
	char buf[8192];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < sizeof(buf));
	write_file(buf, 0600);
}

static struct passwd_table *
load_ok(void)
{
	struct passwd_table *t = NULL;
	char err[PASSWD_ERROR_SIZE] = "";

	if (passwd_table_load(path, &t, NULL, NULL, err, sizeof(err)) < 0)
		fail_msg("load failed: %s", err);
	assert_non_null(t);
	return t;
}

/* Loads and expects failure with exactly the error text given. */
static void
load_fails(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
load_fails(const char *fmt, ...)
{
	struct passwd_table *t = NULL;
	char err[PASSWD_ERROR_SIZE] = "", want[PASSWD_ERROR_SIZE];
	va_list ap;

	assert_int_equal(passwd_table_load(path, &t, NULL, NULL, err,
					   sizeof(err)),
			 -1);
	assert_null(t);
	va_start(ap, fmt);
	vsnprintf(want, sizeof(want), fmt, ap);
	va_end(ap);
	assert_string_equal(err, want);
}

static int
parse(const char *line, struct passwd_entry *e, char *err, size_t err_size)
{
	err[0] = '\0';
	return passwd_line_parse(line, strlen(line), e, err, err_size);
}

static int
str_is(struct passwd_str s, const char *want)
{
	if (want == NULL)
		return s.len == 0;
	return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static void
test_parse_full_line(void **state)
{
	struct passwd_entry e;
	char err[256];

	(void)state;
	assert_int_equal(parse("alice:{PLAIN}pw:1000:1001:Alice A:/home/alice:"
			       "/bin/false:mail=maildir:~/Maildir",
			       &e, err, sizeof(err)),
			 1);
	assert_true(str_is(e.user, "alice"));
	assert_true(str_is(e.password, "pw"));
	assert_int_equal(e.scheme, PASSWD_SCHEME_PLAIN);
	assert_int_equal(e.uid, 1000);
	assert_int_equal(e.gid, 1001);
	assert_true(str_is(e.home, "/home/alice"));
	assert_true(str_is(e.storage, "maildir"));
	assert_true(str_is(e.location, "~/Maildir"));
}

/* Every prefix of the full line: trailing fields are optional, and a
 * trailing ':' gives an empty field, not an error. */
static void
test_parse_field_combinations(void **state)
{
	static const struct {
		const char *line;
		uid_t uid;
		gid_t gid;
		const char *home, *storage, *location;
	} cases[] = {
		{ "u:{PLAIN}p", (uid_t)-1, (gid_t)-1, NULL, NULL, NULL },
		{ "u:{PLAIN}p:", (uid_t)-1, (gid_t)-1, NULL, NULL, NULL },
		{ "u:{PLAIN}p:10", 10, (gid_t)-1, NULL, NULL, NULL },
		{ "u:{PLAIN}p:10:", 10, (gid_t)-1, NULL, NULL, NULL },
		{ "u:{PLAIN}p:10:20", 10, 20, NULL, NULL, NULL },
		{ "u:{PLAIN}p::20", (uid_t)-1, 20, NULL, NULL, NULL },
		{ "u:{PLAIN}p:10:20:gecos", 10, 20, NULL, NULL, NULL },
		{ "u:{PLAIN}p:10:20:gecos:/h", 10, 20, "/h", NULL, NULL },
		{ "u:{PLAIN}p:10:20::/h:", 10, 20, "/h", NULL, NULL },
		{ "u:{PLAIN}p:10:20::/h:/bin/sh", 10, 20, "/h", NULL, NULL },
		{ "u:{PLAIN}p:10:20::/h:/bin/sh:", 10, 20, "/h", NULL, NULL },
		{ "u:{PLAIN}p::::::mail=mbox:/var/mail/u", (uid_t)-1,
		  (gid_t)-1, NULL, "mbox", "/var/mail/u" },
		{ "u:{PLAIN}p::::/h::mail=maildir:~/M", (uid_t)-1, (gid_t)-1,
		  "/h", "maildir", "~/M" },
		{ "u:{PLAIN}p:1:2:g:/h:/s:mail=maildir:%u/M", 1, 2, "/h",
		  "maildir", "%u/M" },
		{ "u:{PLAIN}p:1:2:g:/h:/s:", 1, 2, "/h", NULL, NULL },
		{ "u:{PLAIN}p:1:2:g:/h:/s:  ", 1, 2, "/h", NULL, NULL },
	};
	struct passwd_entry e;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (parse(cases[i].line, &e, err, sizeof(err)) != 1)
			fail_msg("%s: %s", cases[i].line, err);
		assert_true(str_is(e.user, "u"));
		assert_true(str_is(e.password, "p"));
		assert_int_equal(e.uid, cases[i].uid);
		assert_int_equal(e.gid, cases[i].gid);
		assert_true(str_is(e.home, cases[i].home));
		assert_true(str_is(e.storage, cases[i].storage));
		assert_true(str_is(e.location, cases[i].location));
	}
}

static void
test_parse_extra_fields(void **state)
{
	struct passwd_entry e;
	char err[256];

	(void)state;
	assert_int_equal(parse("u:{PLAIN}p:::::: userdb_quota_rule=*:bytes=1G"
			       "\tmail=maildir:/srv/mail/u  userdb_x=y",
			       &e, err, sizeof(err)),
			 1);
	assert_true(str_is(e.storage, "maildir"));
	assert_true(str_is(e.location, "/srv/mail/u"));
	assert_int_equal(parse("u:{PLAIN}p::::::userdb_mail=mbox:~/mbox", &e,
			       err, sizeof(err)),
			 1);
	assert_true(str_is(e.storage, "mbox"));
	assert_true(str_is(e.location, "~/mbox"));
	/* Only userdb_* fields are skipped. */
	assert_int_equal(parse("u:{PLAIN}p::::::userdb_quota=1", &e, err,
			       sizeof(err)),
			 1);
	assert_true(str_is(e.storage, NULL));
}

static void
test_parse_comments_and_blank(void **state)
{
	static const char *const lines[] = {
		"", "\r", "   ", "\t", "# comment", "#alice:{PLAIN}x",
		"   # indented comment", "#\r",
	};
	struct passwd_entry e;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		assert_int_equal(parse(lines[i], &e, err, sizeof(err)), 0);
	/* CR of a CRLF file is not part of the last field. */
	assert_int_equal(parse("u:{PLAIN}p:1:2::/h\r", &e, err, sizeof(err)),
			 1);
	assert_true(str_is(e.home, "/h"));
}

static void
test_parse_bad_lines(void **state)
{
	static const struct {
		const char *line, *error;
	} cases[] = {
		{ "alice", "no password field (need at least user:password)" },
		{ ":{PLAIN}x", "empty user name" },
		{ "al ice:{PLAIN}x",
		  "user name contains white space or control characters" },
		{ "al\x01ice:{PLAIN}x",
		  "user name contains white space or control characters" },
		{ "u:{FOO}x", "unknown password scheme '{FOO}'" },
		{ "u:{PLAIN", "password scheme has no closing '}'" },
		{ "u:{PLAIN}", "empty {PLAIN} password" },
		{ "u:hunter2",
		  "password is neither a crypt hash ($y$, $6$, $5$, $2b$) "
		  "nor {PLAIN}, {CRYPT}, {SHA512-CRYPT}, {BLF-CRYPT}" },
		{ "u:$1$abc$def",
		  "unsupported crypt method (use $y$, $6$, $5$ or $2b$)" },
		{ "u:{CRYPT}$7$abc",
		  "unsupported crypt method (use $y$, $6$, $5$ or $2b$)" },
		{ "u:$6$salt$short", "malformed $6$ crypt hash" },
		{ "u:$6$saltsalt", "malformed $6$ crypt hash" },
		{ "u:$5$rounds=x$salt$"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		  "malformed $5$ crypt hash" },
		{ "u:$y$j9T$salt$tooshort", "malformed $y$ crypt hash" },
		{ "u:$y$j9T$xx$yy$zz", "malformed $y$ crypt hash" },
		{ "u:$2b$4$abc", "malformed $2b$ crypt hash" },
		{ "u:{PLAIN}x:abc!", "invalid uid 'abc!'" },
		{ "u:{PLAIN}x:-1", "invalid uid '-1'" },
		{ "u:{PLAIN}x:0", "uid 0 (root) is not allowed" },
		{ "u:{PLAIN}x:4294967295", "uid 4294967295 out of range" },
		{ "u:{PLAIN}x:99999999999999999999",
		  "uid 99999999999999999999 out of range" },
		{ "u:{PLAIN}x:1:4294967296", "gid 4294967296 out of range" },
		{ "u:{PLAIN}x:1:no_such_group_xyz",
		  "gid 'no_such_group_xyz': no such group" },
		{ "u:{PLAIN}x:no_such_user_xyz",
		  "uid 'no_such_user_xyz': no such user" },
		{ "u:{PLAIN}x:1:2::home", "home must be an absolute path" },
		{ "u:{PLAIN}x:1:2::/h\x7f", "control character in home" },
		{ "u:{PLAIN}x:1:2::/h::allow_nets=127.0.0.1",
		  "unsupported extra field 'allow_nets'" },
		{ "u:{PLAIN}x:1:2::/h::nologin",
		  "unsupported extra field 'nologin'" },
		{ "u:{PLAIN}x:1:2::/h::userdb_uid=5",
		  "extra field 'userdb_uid': use the uid, gid and home "
		  "fields" },
		{ "u:{PLAIN}x:1:2::/h::mail=~/Maildir",
		  "mail= needs STORAGE:PATH (e.g. maildir:~/Maildir)" },
		{ "u:{PLAIN}x:1:2::/h::mail=:/x",
		  "mail= needs STORAGE:PATH (e.g. maildir:~/Maildir)" },
		{ "u:{PLAIN}x:1:2::/h::mail=maildir:",
		  "mail=: empty path" },
		{ "u:{PLAIN}x:1:2::/h::mail=MailDir:/x",
		  "mail=: bad storage name 'MailDir'" },
		{ "u:{PLAIN}x:1:2::/h::mail=maildir:~/M:INDEX=/i",
		  "mail=: location options (':KEY=VALUE') are not supported" },
		{ "u:{PLAIN}x::::/h::mail=maildir:/a mail=mbox:/b",
		  "mail= given twice" },
		{ "u:{PLAIN}x:::::/h::mail=maildir:/a",
		  "unsupported extra field ':mail'" },
		{ "u:{PLAIN}x::::/h::mail=maildir:/a\x01",
		  "control character in extra fields" },
	};
	struct passwd_entry e;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (parse(cases[i].line, &e, err, sizeof(err)) != -1)
			fail_msg("accepted: %s", cases[i].line);
		if (strcmp(err, cases[i].error) != 0)
			fail_msg("%s: got '%s', want '%s'", cases[i].line,
				 err, cases[i].error);
	}
	/* A NUL inside the line (the loader gives lengths, not C strings). */
	assert_int_equal(passwd_line_parse("u:{PLAIN}x\0y", 12, &e, err,
					   sizeof(err)),
			 -1);
	assert_string_equal(err, "NUL byte in line");
}

static void
test_parse_scheme_prefixes(void **state)
{
	struct passwd_entry e;
	char err[256], line[512];
	static const struct {
		const char *prefix;
		const char *hash;
		enum passwd_scheme scheme;
	} ok[] = {
		{ "", h_secret.sha512, PASSWD_SCHEME_SHA512 },
		{ "{CRYPT}", h_secret.sha512, PASSWD_SCHEME_SHA512 },
		{ "{SHA512-CRYPT}", h_secret.sha512, PASSWD_SCHEME_SHA512 },
		{ "{sha512-crypt}", h_secret.sha512, PASSWD_SCHEME_SHA512 },
		{ "", h_secret.sha256, PASSWD_SCHEME_SHA256 },
		{ "{SHA256-CRYPT}", h_secret.sha256, PASSWD_SCHEME_SHA256 },
		{ "", h_secret.yescrypt, PASSWD_SCHEME_YESCRYPT },
		{ "{CRYPT}", h_secret.yescrypt, PASSWD_SCHEME_YESCRYPT },
		{ "", h_secret.bcrypt, PASSWD_SCHEME_BCRYPT },
		{ "{BLF-CRYPT}", h_secret.bcrypt, PASSWD_SCHEME_BCRYPT },
		{ "{CRYPT}", h_secret.bcrypt, PASSWD_SCHEME_BCRYPT },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(line, sizeof(line), "u:%s%s:1:1", ok[i].prefix,
			 ok[i].hash);
		if (parse(line, &e, err, sizeof(err)) != 1)
			fail_msg("%s: %s", line, err);
		assert_int_equal(e.scheme, ok[i].scheme);
		assert_true(str_is(e.password, ok[i].hash));
	}
	snprintf(line, sizeof(line), "u:{BLF-CRYPT}%s", h_secret.sha512);
	assert_int_equal(parse(line, &e, err, sizeof(err)), -1);
	assert_string_equal(err,
			    "{BLF-CRYPT} does not match its hash's method");

	/* Locked accounts parse; nothing opens them. */
	assert_int_equal(parse("u:", &e, err, sizeof(err)), 1);
	assert_int_equal(e.scheme, PASSWD_SCHEME_LOCKED);
	assert_int_equal(parse("u:*", &e, err, sizeof(err)), 1);
	assert_int_equal(e.scheme, PASSWD_SCHEME_LOCKED);
	snprintf(line, sizeof(line), "u:!%s", h_secret.sha512);
	assert_int_equal(parse(line, &e, err, sizeof(err)), 1);
	assert_int_equal(e.scheme, PASSWD_SCHEME_LOCKED);
}

static void
test_parse_id_names(void **state)
{
	struct passwd *pw = getpwnam("nobody");
	struct passwd_entry e;
	char err[256];

	(void)state;
	if (pw == NULL || pw->pw_uid == 0)
		skip();
	assert_int_equal(parse("u:{PLAIN}p:nobody", &e, err, sizeof(err)), 1);
	assert_int_equal(e.uid, pw->pw_uid);
	assert_int_equal(e.gid, (gid_t)-1);
}

/* The right password and near misses of user, hashed in work. */
static void
verify_user(struct passwd_table *t, const char *u, void *work)
{
	static const char *const wrong[] = { "Secret", "", "secret ",
					     "secre" };
	const struct passwd_entry *e;
	size_t ul = strlen(u);

	assert_int_equal(passwd_table_verify(t, u, ul, "secret", work, &e),
			 POSTERN_OK);
	assert_non_null(e);
	assert_true(str_is(e->user, u));
	for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
		assert_int_equal(passwd_table_verify(t, u, ul, wrong[i], work,
						     &e),
				 POSTERN_FAIL);
		assert_non_null(e);
	}
}

static void
test_verify_each_scheme(void **state)
{
	static const char *const users[] = { "y", "s512", "s256", "b", "b2y",
					     "c", "p" };
	struct passwd_table *t;
	const struct passwd_entry *e;
	struct crypt_data *work;
	char b2y[CRYPT_OUTPUT_SIZE];

	(void)state;
	/* Dovecot writes bcrypt as $2y$: the same hash as $2b$. */
	memcpy(b2y, h_secret.bcrypt, sizeof(b2y));
	b2y[2] = 'y';
	write_filef("y:%s\n"
		    "s512:{SHA512-CRYPT}%s\n"
		    "s256:%s\n"
		    "b:{BLF-CRYPT}%s\n"
		    "b2y:{BLF-CRYPT}%s\n"
		    "c:{CRYPT}%s\n"
		    "p:{PLAIN}secret\n"
		    "sp:{PLAIN}two words:1000\n",
		    h_secret.yescrypt, h_secret.sha512, h_secret.sha256,
		    h_secret.bcrypt, b2y, h_secret.sha512);
	t = load_ok();
	assert_int_equal(passwd_table_count(t), 8);
	work = calloc(1, sizeof(*work));
	assert_non_null(work);
	for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
		/* Hashing in a mapping of its own, then in a given work
		 * area (api->scratch), which is left all zero. */
		verify_user(t, users[i], NULL);
		verify_user(t, users[i], work);
		for (size_t j = 0; j < sizeof(*work); j++)
			assert_int_equal(((unsigned char *)work)[j], 0);
	}
	/* ':' ends the password field: "two words" is the secret. */
	assert_int_equal(passwd_table_verify(t, "sp", 2, "two words", NULL,
					     &e),
			 POSTERN_OK);
	/* User names are exact bytes. */
	assert_int_equal(passwd_table_verify(t, "P", 1, "secret", NULL, &e),
			 POSTERN_FAIL);
	assert_null(e);
	passwd_table_free(&t);
	assert_null(t);
	free(work);
}

static void
test_verify_long_password(void **state)
{
	struct passwd_table *t;
	const struct passwd_entry *e;
	char *big = malloc(4096);
	unsigned long before;

	(void)state;
	assert_non_null(big);
	memset(big, 'a', 4095);
	big[4095] = '\0';
	write_filef("u:%s\np:{PLAIN}secret\n", h_secret.sha512);
	t = load_ok();
	/* Past crypt's phrase limit: a plain no, still one hash. */
	before = crypt_calls;
	assert_int_equal(passwd_table_verify(t, "u", 1, big, NULL, &e),
			 POSTERN_FAIL);
	assert_int_equal(crypt_calls, before + 1);
	assert_int_equal(passwd_table_verify(t, "p", 1, big, NULL, &e),
			 POSTERN_FAIL);
	passwd_table_free(&t);
	free(big);
}

/* Every failure path costs exactly one hash, like a wrong password. */
static void
test_unknown_user_still_hashes(void **state)
{
	static const char *const names[] = {
		"nobody-here", "", "a:b", "a\x01", "a b", "locked", "plain",
		"star",
	};
	struct passwd_table *t;
	const struct passwd_entry *e;
	unsigned long before;

	(void)state;
	write_filef("a:%s\nb:%s\nc:%s\nlocked:!%s\nplain:{PLAIN}secret\n"
		    "star:*\n",
		    h_secret.sha512, h_secret.sha512, h_secret.yescrypt,
		    h_secret.sha512);
	t = load_ok();
	assert_int_equal(passwd_table_dummy_scheme(t), PASSWD_SCHEME_SHA512);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		before = crypt_calls;
		assert_int_equal(passwd_table_verify(t, names[i],
						     strlen(names[i]),
						     "wrong", NULL, &e),
				 POSTERN_FAIL);
		assert_int_equal(crypt_calls, before + 1);
	}
	/* The right password of a {PLAIN} entry also pays the hash. */
	before = crypt_calls;
	assert_int_equal(passwd_table_verify(t, "plain", 5, "secret", NULL,
					     &e),
			 POSTERN_OK);
	assert_int_equal(crypt_calls, before + 1);
	/* A real user: one hash, never two. */
	before = crypt_calls;
	assert_int_equal(passwd_table_verify(t, "a", 1, "secret", NULL,
					     &e),
			 POSTERN_OK);
	assert_int_equal(crypt_calls, before + 1);
	/* The dummy is nobody's password, not even its own phrase's user. */
	assert_int_equal(passwd_table_verify(t, "nobody-here", 11,
					     "postern-dummy-password", NULL,
					     &e),
			 POSTERN_FAIL);
	passwd_table_free(&t);
}

static void
test_dummy_scheme_choice(void **state)
{
	struct passwd_table *t;

	(void)state;
	write_filef("a:%s\nb:%s\nc:%s\n", h_secret.yescrypt,
		    h_secret.yescrypt, h_secret.bcrypt);
	t = load_ok();
	assert_int_equal(passwd_table_dummy_scheme(t), PASSWD_SCHEME_YESCRYPT);
	passwd_table_free(&t);

	/* A tie goes to the dearer scheme. */
	write_filef("a:%s\nb:%s\n", h_secret.sha256, h_secret.bcrypt);
	t = load_ok();
	assert_int_equal(passwd_table_dummy_scheme(t), PASSWD_SCHEME_BCRYPT);
	passwd_table_free(&t);

	write_filef("a:{PLAIN}x\nb:{PLAIN}y\nc:%s\n", h_secret.sha256);
	t = load_ok();
	assert_int_equal(passwd_table_dummy_scheme(t), PASSWD_SCHEME_PLAIN);
	passwd_table_free(&t);

	write_file("# nobody\n", 0600);
	t = load_ok();
	assert_int_equal(passwd_table_count(t), 0);
	assert_int_equal(passwd_table_dummy_scheme(t), PASSWD_SCHEME_LOCKED);
	passwd_table_free(&t);
}

static void
test_load_entries_and_lookup(void **state)
{
	struct passwd_table *t;
	const struct passwd_entry *e;
	char *buf = malloc(1 << 16), name[32];
	size_t len = 0;

	(void)state;
	assert_non_null(buf);
	len += (size_t)snprintf(buf + len, 64, "# users\n\n");
	for (int i = 0; i < 1000; i++)
		len += (size_t)snprintf(buf + len, 64,
					"user%d:{PLAIN}pw%d:%d:%d\r\n", i, i,
					1000 + i, 2000 + i);
	/* The last line need not end in a newline. */
	len += (size_t)snprintf(buf + len, 64, "last:{PLAIN}x");
	write_file(buf, 0600);
	free(buf);
	t = load_ok();
	assert_int_equal(passwd_table_count(t), 1001);
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "user%d", i);
		e = passwd_table_lookup(t, name, strlen(name));
		assert_non_null(e);
		assert_int_equal(e->uid, (uid_t)(1000 + i));
		assert_int_equal(e->gid, (gid_t)(2000 + i));
		assert_int_equal(e->line, (unsigned)i + 3);
	}
	assert_non_null(passwd_table_lookup(t, "last", 4));
	assert_null(passwd_table_lookup(t, "user1000", 8));
	assert_null(passwd_table_lookup(t, "user", 4));
	assert_null(passwd_table_lookup(t, "", 0));
	passwd_table_free(&t);
	passwd_table_free(&t); /* NULL: no-op */
}

static void
test_load_errors_name_path_and_line(void **state)
{
	struct passwd_table *t = NULL;
	char err[PASSWD_ERROR_SIZE], want[PASSWD_ERROR_SIZE];

	(void)state;
	write_file("# header\nalice:{PLAIN}x\nbob\ncarol:{PLAIN}y\n", 0600);
	load_fails("%s:3: no password field (need at least user:password)",
		   path);

	write_file("alice:{PLAIN}x\n\nbob:{FOO}y\nc:{PLAIN}z:0\n", 0600);
	assert_int_equal(passwd_table_load(path, &t, NULL, NULL, err,
					   sizeof(err)),
			 -1);
	snprintf(want, sizeof(want),
		 "%s:3: unknown password scheme '{FOO}' (and 1 more)", path);
	assert_string_equal(err, want);
}

struct reports {
	unsigned n;
	char msgs[4][PASSWD_ERROR_SIZE];
};

static void
collect(void *ctx, const char *msg)
{
	struct reports *r = ctx;

	if (r->n < 4)
		snprintf(r->msgs[r->n], sizeof(r->msgs[0]), "%s", msg);
	r->n++;
}

static void
test_load_reports_every_error(void **state)
{
	struct passwd_table *t = NULL;
	struct reports r = { 0 };
	char err[PASSWD_ERROR_SIZE], want[PASSWD_ERROR_SIZE];
	char big[64 * 30];
	size_t len = 0;

	(void)state;
	write_file("a\nb:{PLAIN}x:0\nok:{PLAIN}x\n", 0600);
	assert_int_equal(passwd_table_load(path, &t, collect, &r, err,
					   sizeof(err)),
			 -1);
	assert_int_equal(r.n, 2);
	snprintf(want, sizeof(want),
		 "%s:1: no password field (need at least user:password)",
		 path);
	assert_string_equal(r.msgs[0], want);
	snprintf(want, sizeof(want), "%s:2: uid 0 (root) is not allowed",
		 path);
	assert_string_equal(r.msgs[1], want);

	/* A file of junk stops after PASSWD_FILE_MAX_ERRORS. */
	for (int i = 0; i < 30; i++)
		len += (size_t)snprintf(big + len, sizeof(big) - len,
					"junk%d\n", i);
	write_file(big, 0600);
	memset(&r, 0, sizeof(r));
	assert_int_equal(passwd_table_load(path, &t, collect, &r, err,
					   sizeof(err)),
			 -1);
	assert_int_equal(r.n, PASSWD_FILE_MAX_ERRORS + 1);
}

/* Duplicates fail the load (not "first wins"): two lines for one user
 * mean the file is not what its writer thinks. */
static void
test_load_duplicate_user(void **state)
{
	(void)state;
	write_file("alice:{PLAIN}x\nbob:{PLAIN}y\nalice:{PLAIN}z\n", 0600);
	load_fails("%s:3: duplicate user 'alice' (first on line 1)", path);
}

static void
test_load_refuses_writable(void **state)
{
	struct passwd_table *t;

	(void)state;
	write_file("alice:{PLAIN}x\n", 0620);
	load_fails("passwd-file %s: group or world writable, refusing", path);
	write_file("alice:{PLAIN}x\n", 0602);
	load_fails("passwd-file %s: group or world writable, refusing", path);
	write_file("alice:{PLAIN}x\n", 0666);
	load_fails("passwd-file %s: group or world writable, refusing", path);
	/* Readable by others is the operator's business. */
	write_file("alice:{PLAIN}x\n", 0644);
	t = load_ok();
	passwd_table_free(&t);
}

static void
test_load_missing_and_not_regular(void **state)
{
	struct passwd_table *t = NULL;
	char err[PASSWD_ERROR_SIZE], want[PASSWD_ERROR_SIZE];

	(void)state;
	unlink(path);
	load_fails("passwd-file %s: No such file or directory", path);
	assert_int_equal(passwd_table_load(tmpdir, &t, NULL, NULL, err,
					   sizeof(err)),
			 -1);
	snprintf(want, sizeof(want), "passwd-file %s: not a regular file",
		 tmpdir);
	assert_string_equal(err, want);
}

static void
test_file_id(void **state)
{
	struct passwd_table *t;
	struct passwd_file_id id;
	struct timespec ts[2] = { { 1000, 0 }, { 1000, 0 } };

	(void)state;
	write_file("alice:{PLAIN}x\n", 0600);
	t = load_ok();
	assert_int_equal(passwd_file_id_get(path, &id), 0);
	assert_true(passwd_file_id_equal(&id, passwd_table_file_id(t)));
	/* Same size and inode, other mtime: a change. */
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
	assert_int_equal(passwd_file_id_get(path, &id), 0);
	assert_false(passwd_file_id_equal(&id, passwd_table_file_id(t)));
	passwd_table_free(&t);
	unlink(path);
	assert_int_equal(passwd_file_id_get(path, &id), -1);
	assert_int_equal(errno, ENOENT);
}

static void
test_ct_equal(void **state)
{
	(void)state;
	assert_true(passwd_ct_equal("abc", 3, "abc", 3));
	assert_false(passwd_ct_equal("abc", 3, "abd", 3));
	assert_false(passwd_ct_equal("ab", 2, "abc", 3));
	assert_false(passwd_ct_equal("abcd", 4, "abc", 3));
	/* Input that repeats the secret's first byte past its end. */
	assert_false(passwd_ct_equal("aaaa", 4, "a", 1));
	assert_false(passwd_ct_equal("", 0, "a", 1));
	assert_false(passwd_ct_equal("a", 1, "", 0));
	assert_true(passwd_ct_equal("", 0, "", 0));
	assert_true(passwd_ct_equal("a\xff", 2, "a\xff", 2));
}

static void
test_user_name_valid(void **state)
{
	(void)state;
	assert_true(passwd_user_name_valid("alice", 5));
	assert_true(passwd_user_name_valid("a.b@example.org", 15));
	assert_true(passwd_user_name_valid("j\xc3\xb6rg", 5));
	assert_false(passwd_user_name_valid("", 0));
	assert_false(passwd_user_name_valid("a:b", 3));
	assert_false(passwd_user_name_valid("a b", 3));
	assert_false(passwd_user_name_valid("a\tb", 3));
	assert_false(passwd_user_name_valid("a\x7f", 2));
	assert_false(passwd_user_name_valid("a\n", 2));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_full_line),
		cmocka_unit_test(test_parse_field_combinations),
		cmocka_unit_test(test_parse_extra_fields),
		cmocka_unit_test(test_parse_comments_and_blank),
		cmocka_unit_test(test_parse_bad_lines),
		cmocka_unit_test(test_parse_scheme_prefixes),
		cmocka_unit_test(test_parse_id_names),
		cmocka_unit_test(test_verify_each_scheme),
		cmocka_unit_test(test_verify_long_password),
		cmocka_unit_test(test_unknown_user_still_hashes),
		cmocka_unit_test(test_dummy_scheme_choice),
		cmocka_unit_test(test_load_entries_and_lookup),
		cmocka_unit_test(test_load_errors_name_path_and_line),
		cmocka_unit_test(test_load_reports_every_error),
		cmocka_unit_test(test_load_duplicate_user),
		cmocka_unit_test(test_load_refuses_writable),
		cmocka_unit_test(test_load_missing_and_not_regular),
		cmocka_unit_test(test_file_id),
		cmocka_unit_test(test_ct_equal),
		cmocka_unit_test(test_user_name_valid),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
