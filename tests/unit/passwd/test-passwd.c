/*
 * Unit tests of the auth_passwd module's ops (modules/auth/passwd/passwd.c)
 * through a stand-in for the core's services table: init, verify_plain,
 * lookup_secret, the grant, and reloading a changed file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <postern/module.h>

/* The core's opaque types, as this test's "core" sees them. */
struct postern_conf {
	const char *file;
	int reload_check;
};

#define MAX_STRS 64
struct postern_session {
	char *strs[MAX_STRS];
	unsigned n;
};

/* crypt(3) of "pw" with $6$saltsalt$ */
#define CAROL_HASH                                                         \
	"$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWd" \
	"yfsgVgozkYH9B80bAip/08R2BPH2xk/"

#define MAX_LOGS 32
static struct {
	unsigned n;
	enum postern_log_level level[MAX_LOGS];
	char text[MAX_LOGS][600];
} logs;

static char tmpdir[64];
static char path[128];

extern const struct postern_module postern_module;

static void
fake_log(enum postern_log_level level, const char *fmt, ...)
	POSTERN_PRINTF(2, 3);

static void
fake_log(enum postern_log_level level, const char *fmt, ...)
{
	va_list ap;

	if (logs.n >= MAX_LOGS)
		return;
	va_start(ap, fmt);
	vsnprintf(logs.text[logs.n], sizeof(logs.text[0]), fmt, ap);
	va_end(ap);
	logs.level[logs.n++] = level;
}

static const char *
fake_conf_string(const struct postern_conf *conf, const char *name)
{
	assert_string_equal(name, "file");
	return conf->file;
}

static int
fake_conf_bool(const struct postern_conf *conf, const char *name)
{
	assert_string_equal(name, "reload_check");
	return conf->reload_check;
}

static char *
fake_strndup(struct postern_session *s, const char *str, size_t len)
{
	char *p = malloc(len + 1);

	assert_non_null(p);
	assert_true(s->n < MAX_STRS);
	memcpy(p, str, len);
	p[len] = '\0';
	s->strs[s->n++] = p;
	return p;
}

/* The core's scratch area, which every user must leave all zero. */
static unsigned char scratch[POSTERN_SCRATCH_SIZE];
static unsigned scratch_calls;

static void *
fake_scratch(size_t size)
{
	assert_true(size <= sizeof(scratch));
	for (size_t i = 0; i < sizeof(scratch); i++)
		assert_int_equal(scratch[i], 0);
	scratch_calls++;
	return scratch;
}

static void
assert_scratch_wiped(void)
{
	for (size_t i = 0; i < sizeof(scratch); i++)
		assert_int_equal(scratch[i], 0);
}

static const struct postern_api api = {
	.struct_size = sizeof(struct postern_api),
	.log = fake_log,
	.conf_string = fake_conf_string,
	.conf_bool = fake_conf_bool,
	.session_strndup = fake_strndup,
	.scratch = fake_scratch,
};

static void
session_free(struct postern_session *s)
{
	for (unsigned i = 0; i < s->n; i++)
		free(s->strs[i]);
	s->n = 0;
}

static int
logged(enum postern_log_level level, const char *needle)
{
	unsigned n = 0;

	for (unsigned i = 0; i < logs.n; i++) {
		if (logs.level[i] == level && strstr(logs.text[i], needle))
			n++;
	}
	return (int)n;
}

/* Replaces the file with a new one (new inode), as editors and
 * configuration tools do. */
static void
replace_file(const char *content, mode_t mode)
{
	char tmp[160];
	size_t len = strlen(content);
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.new", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
	assert_int_equal(rename(tmp, path), 0);
}

static int
setup(void **state)
{
	(void)state;
	memset(&logs, 0, sizeof(logs));
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-passwd-mod-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/users", tmpdir);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	unlink(path);
	return rmdir(tmpdir);
}

static void *
init_ok(int reload_check)
{
	struct postern_conf conf = { .file = path,
				     .reload_check = reload_check };
	const char *error = NULL;
	void *mod = NULL;

	if (postern_module.init(&api, &conf, &mod, &error) != POSTERN_OK)
		fail_msg("init: %s", error);
	assert_non_null(mod);
	return mod;
}

static int
verify(void *mod, const char *user, const char *pass,
       struct postern_grant *grant_r, struct postern_session *s)
{
	const char *error = NULL;
	unsigned calls = scratch_calls;
	int ret = postern_module.auth->verify_plain(mod, s, user, pass,
						    grant_r, &error);

	/* Every check hashes in the core's scratch area and wipes it. */
	assert_int_equal(scratch_calls, calls + 1);
	assert_scratch_wiped();
	return ret;
}

static void
test_descriptor(void **state)
{
	const struct postern_setting *st = postern_module.settings;

	(void)state;
	assert_int_equal(postern_module.abi_major, POSTERN_ABI_MAJOR);
	assert_int_equal(postern_module.abi_minor, POSTERN_ABI_MINOR);
	assert_int_equal(postern_module.struct_size,
			 sizeof(struct postern_module));
	assert_string_equal(postern_module.name, "auth_passwd");
	assert_non_null(postern_module.version);
	assert_non_null(postern_module.auth);
	assert_non_null(postern_module.auth->verify_plain);
	assert_non_null(postern_module.auth->lookup_secret);
	assert_null(postern_module.storage);
	assert_null(postern_module.commands);
	for (size_t i = 0; i < 8; i++)
		assert_null(postern_module.reserved[i]);

	assert_string_equal(st[0].name, "file");
	assert_int_equal(st[0].type, POSTERN_SETTING_STRING);
	assert_true(st[0].required);
	assert_non_null(st[0].doc);
	assert_string_equal(st[1].name, "reload_check");
	assert_int_equal(st[1].type, POSTERN_SETTING_BOOL);
	assert_string_equal(st[1].default_value, "true");
	assert_null(st[2].name);
}

static void
test_init_failures_name_the_file(void **state)
{
	struct postern_conf conf = { .file = path, .reload_check = 1 };
	const char *error = NULL;
	char want[300];
	void *mod = NULL;

	(void)state;
	assert_int_equal(postern_module.init(&api, &conf, &mod, &error),
			 POSTERN_FAIL);
	assert_null(mod);
	snprintf(want, sizeof(want),
		 "passwd-file %s: No such file or directory", path);
	assert_string_equal(error, want);

	replace_file("a:{PLAIN}x\n", 0664);
	assert_int_equal(postern_module.init(&api, &conf, &mod, &error),
			 POSTERN_FAIL);
	snprintf(want, sizeof(want),
		 "passwd-file %s: group or world writable, refusing", path);
	assert_string_equal(error, want);

	/* The first problem is the error; the others are logged. */
	replace_file("a\nb:{PLAIN}x:0\n", 0600);
	assert_int_equal(postern_module.init(&api, &conf, &mod, &error),
			 POSTERN_FAIL);
	snprintf(want, sizeof(want),
		 "%s:1: no password field (need at least user:password) "
		 "(and 1 more)",
		 path);
	assert_string_equal(error, want);
	assert_int_equal(logged(POSTERN_LOG_ERR, ":2: uid 0 (root)"), 1);
	assert_int_equal(logged(POSTERN_LOG_ERR, ":1: no password"), 0);

	conf.file = "";
	assert_int_equal(postern_module.init(&api, &conf, &mod, &error),
			 POSTERN_FAIL);
	assert_string_equal(error, "auth_passwd: setting 'file' is required");
}

static void
test_verify_plain_and_grant(void **state)
{
	struct postern_session s = { .n = 0 };
	struct postern_grant g;
	void *mod;

	(void)state;
	replace_file("alice:{PLAIN}secret:1000:1001::/home/alice::"
		     "mail=maildir:~/Maildir\n"
		     "bob:{PLAIN}hunter2\n"
		     "carol:" CAROL_HASH ":1002:1002\n"
		     "dave:*\n",
		     0600);
	mod = init_ok(1);
	assert_int_equal(logged(POSTERN_LOG_INFO, ": 4 users"), 1);

	assert_int_equal(verify(mod, "alice", "secret", &g, &s), POSTERN_OK);
	assert_string_equal(g.user, "alice");
	assert_int_equal(g.uid, 1000);
	assert_int_equal(g.gid, 1001);
	assert_string_equal(g.home, "/home/alice");
	assert_string_equal(g.storage, "maildir");
	assert_string_equal(g.location, "~/Maildir");

	assert_int_equal(verify(mod, "bob", "hunter2", &g, &s), POSTERN_OK);
	assert_string_equal(g.user, "bob");
	assert_int_equal(g.uid, (uid_t)-1);
	assert_int_equal(g.gid, (gid_t)-1);
	assert_null(g.home);
	assert_null(g.storage);
	assert_null(g.location);

	assert_int_equal(verify(mod, "carol", "pw", &g, &s), POSTERN_OK);
	assert_int_equal(g.uid, 1002);

	assert_int_equal(verify(mod, "alice", "Secret", &g, &s), POSTERN_FAIL);
	assert_int_equal(verify(mod, "carol", "pw2", &g, &s), POSTERN_FAIL);
	assert_int_equal(verify(mod, "dave", "", &g, &s), POSTERN_FAIL);
	assert_int_equal(verify(mod, "nobody", "secret", &g, &s),
			 POSTERN_FAIL);
	assert_int_equal(verify(mod, "", "secret", &g, &s), POSTERN_FAIL);
	assert_int_equal(verify(mod, "alice:x", "secret", &g, &s),
			 POSTERN_FAIL);
	assert_int_equal(logged(POSTERN_LOG_DEBUG, "user=nobody: unknown"), 1);
	assert_int_equal(logged(POSTERN_LOG_DEBUG, "user=dave: account locked"),
			 1);
	assert_int_equal(logged(POSTERN_LOG_DEBUG, "invalid user name"), 2);
	/* Nothing a client sent as a password reaches the log. */
	for (unsigned i = 0; i < logs.n; i++) {
		assert_null(strstr(logs.text[i], "Secret"));
		assert_null(strstr(logs.text[i], "pw2"));
	}
	postern_module.fini(mod);
	session_free(&s);
}

static void
test_lookup_secret(void **state)
{
	const struct postern_auth_ops *auth = postern_module.auth;
	struct postern_session s = { .n = 0 };
	struct postern_grant g;
	const char *secret = NULL, *error = NULL;
	void *mod;

	(void)state;
	replace_file("alice:{PLAIN}secret:1000:1000\n"
		     "carol:" CAROL_HASH "\n",
		     0600);
	mod = init_ok(1);
	assert_int_equal(auth->lookup_secret(mod, &s, "alice", &secret, &g,
					     &error),
			 POSTERN_OK);
	assert_string_equal(secret, "secret");
	assert_string_equal(g.user, "alice");
	assert_int_equal(g.uid, 1000);
	assert_int_equal(auth->lookup_secret(mod, &s, "carol", &secret, &g,
					     &error),
			 POSTERN_FAIL);
	assert_int_equal(auth->lookup_secret(mod, &s, "zed", &secret, &g,
					     &error),
			 POSTERN_FAIL);
	assert_int_equal(auth->lookup_secret(mod, &s, "", &secret, &g, &error),
			 POSTERN_FAIL);
	postern_module.fini(mod);
	session_free(&s);
}

static void
test_reload(void **state)
{
	struct postern_session s = { .n = 0 };
	struct postern_grant g;
	void *mod;

	(void)state;
	replace_file("alice:{PLAIN}one\n", 0600);
	mod = init_ok(1);
	assert_int_equal(verify(mod, "alice", "one", &g, &s), POSTERN_OK);

	replace_file("alice:{PLAIN}two\nbob:{PLAIN}b\n", 0600);
	assert_int_equal(verify(mod, "alice", "two", &g, &s), POSTERN_OK);
	assert_int_equal(verify(mod, "bob", "b", &g, &s), POSTERN_OK);
	assert_int_equal(logged(POSTERN_LOG_INFO, "reloaded"), 1);

	/* A bad new file: the old table stays, and the failure is logged
	 * once, not at every login. */
	replace_file("alice:{PLAIN}three\nbob\n", 0600);
	assert_int_equal(verify(mod, "alice", "two", &g, &s), POSTERN_OK);
	assert_int_equal(verify(mod, "bob", "b", &g, &s), POSTERN_OK);
	assert_int_equal(logged(POSTERN_LOG_ERR, ":2: no password field"), 1);
	assert_int_equal(logged(POSTERN_LOG_ERR, "keeping the 2 users"), 1);

	replace_file("alice:{PLAIN}four\n", 0602);
	assert_int_equal(verify(mod, "alice", "two", &g, &s), POSTERN_OK);
	assert_int_equal(logged(POSTERN_LOG_ERR, "world writable"), 1);

	/* A vanished file: keep going, say so once. */
	unlink(path);
	assert_int_equal(verify(mod, "alice", "two", &g, &s), POSTERN_OK);
	assert_int_equal(verify(mod, "alice", "two", &g, &s), POSTERN_OK);
	assert_int_equal(logged(POSTERN_LOG_WARNING,
				"No such file or directory"),
			 1);

	replace_file("alice:{PLAIN}five\n", 0600);
	assert_int_equal(verify(mod, "alice", "five", &g, &s), POSTERN_OK);
	assert_int_equal(verify(mod, "bob", "b", &g, &s), POSTERN_FAIL);
	assert_int_equal(logged(POSTERN_LOG_INFO, "reloaded"), 2);
	postern_module.fini(mod);
	session_free(&s);
}

static void
test_no_reload_check(void **state)
{
	struct postern_session s = { .n = 0 };
	struct postern_grant g;
	void *mod;

	(void)state;
	replace_file("alice:{PLAIN}one\n", 0600);
	mod = init_ok(0);
	replace_file("alice:{PLAIN}two\n", 0600);
	assert_int_equal(verify(mod, "alice", "one", &g, &s), POSTERN_OK);
	assert_int_equal(verify(mod, "alice", "two", &g, &s), POSTERN_FAIL);
	postern_module.fini(mod);
	postern_module.fini(NULL);
	session_free(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_descriptor),
		cmocka_unit_test_setup_teardown(
			test_init_failures_name_the_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_plain_and_grant,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_lookup_secret, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_reload_check, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
