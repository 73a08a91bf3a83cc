/* Config validation: every problem a person can make is reported as
 * FILE:LINE: message, and a good config loads with defaults filled in. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf.h"

static char dir[] = "/tmp/postern-conf-XXXXXX";
static char conf_path[128], users_path[128];

/* Writes the config, loads it with stderr captured into errors. */
static struct server_conf *
load(const char *text, char *errors, size_t size)
{
	char err_path[160];
	FILE *f = fopen(conf_path, "w");
	int saved, fd;
	ssize_t n;
	struct server_conf *conf;

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	snprintf(err_path, sizeof(err_path), "%s/stderr", dir);
	fd = open(err_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	saved = dup(2);
	dup2(fd, 2);
	conf = conf_load(conf_path);
	dup2(saved, 2);
	close(saved);
	lseek(fd, 0, SEEK_SET);
	n = read(fd, errors, size - 1);
	errors[n > 0 ? n : 0] = '\0';
	close(fd);
	return conf;
}

#define BASE                                                              \
	"listen = ( { name = \"pop3\"; address = \"127.0.0.1\"; "         \
	"port = 1110; } );\n"                                             \
	"modules_dir = \"" MODULES_BUILD_DIR "\";\n"                      \
	"auth = ( { module = \"passwd\"; file = \"%s\"; } );\n"           \
	"storage = ( { module = \"maildir\"; } );\n"

static void
expect_error(const char *extra_before, const char *extra_after,
	     const char *needle)
{
	char text[2048], errors[4096], base[1024];
	struct server_conf *conf;

	snprintf(base, sizeof(base), BASE, users_path);
	snprintf(text, sizeof(text), "%s%s%s", extra_before, base,
		 extra_after);
	conf = load(text, errors, sizeof(errors));
	if (conf != NULL || strstr(errors, needle) == NULL) {
		fprintf(stderr, "config:\n%s\nerrors:\n%s\nwanted: %s\n", text,
			errors, needle);
		fail();
	}
}

static int
setup(void **state)
{
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(conf_path, sizeof(conf_path), "%s/postern.conf", dir);
	snprintf(users_path, sizeof(users_path), "%s/users", dir);
	f = fopen(users_path, "w");
	fputs("alice:{PLAIN}pw:1000:1000::/home/alice::\n", f);
	fclose(f);
	chmod(users_path, 0600);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[200];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void
test_good_config(void **state)
{
	char text[1024], errors[4096];
	struct server_conf *conf;

	snprintf(text, sizeof(text), BASE "commands = [ \"top\" ];\n",
		 users_path);
	conf = load(text, errors, sizeof(errors));
	if (conf == NULL)
		fprintf(stderr, "%s", errors);
	assert_non_null(conf);
	assert_int_equal(conf->idle_timeout, 600);
	assert_int_equal(conf->max_sessions_per_ip, 20);
	assert_int_equal(conf->n_plain_nets, 2);
	assert_int_equal(conf->n_listens, 1);
	assert_int_equal(conf->listens[0].port, 1110);
	assert_string_equal(conf_get_string(&conf->storage[0].settings,
					    "path"), "~/Maildir");
	/* core rows first, then TOP */
	assert_string_equal(conf->commands[conf->n_commands - 1].cmd->name,
			    "TOP");
	conf_free(&conf);
	assert_null(conf);
}

static void
test_errors_name_file_and_line(void **state)
{
	char needle[256];

	snprintf(needle, sizeof(needle), "%s:1: unknown setting 'bogus'",
		 conf_path);
	expect_error("bogus = 1;\n", "", needle);
	snprintf(needle, sizeof(needle), "%s:1: server: 'idle_timeout' must "
		 "be a integer", conf_path);
	expect_error("server = { idle_timeout = \"x\"; };\n", "", "must be a");
	snprintf(needle, sizeof(needle), "%s:2: unknown setting 'nope' in "
		 "server", conf_path);
	expect_error("server = {\n nope = 1; };\n", "", needle);
	snprintf(needle, sizeof(needle), "%s:5: duplicate setting", conf_path);
	expect_error("", "storage = 3;\n", needle);
	snprintf(needle, sizeof(needle), "%s:2: syntax error", conf_path);
	expect_error("server = {\n idle_timeout = ; };\n", "", needle);
	snprintf(needle, sizeof(needle), "%s:5: module 'nosuch'", conf_path);
	expect_error("", "commands = [ \"top\", \"nosuch\" ];\n", needle);
	expect_error("server = { max_sessions = 0; };\n", "",
		     ":1: 'max_sessions' must be between");
	expect_error("server = { plaintext_auth_networks = [ \"x\" ]; };\n",
		     "", ":1: plaintext_auth_networks: bad network");
	expect_error("server = { user = \"no-such-user-here\"; };\n", "",
		     ":1: unknown user");
	expect_error("server = { log_level = \"loud\"; };\n", "",
		     ":1: unknown log_level");
	expect_error("", "x = 1;\n", ":5: unknown setting 'x'");
	expect_error("server = (1);\n", "", "'server' must be a group");
}

static void
test_module_errors(void **state)
{
	char text[1024], errors[4096], needle[256];
	struct server_conf *conf;

	/* Missing required key of a module: auth passwd without file. */
	snprintf(text, sizeof(text),
		 "listen = ( { port = 1110; } );\n"
		 "modules_dir = \"%s\";\n"
		 "auth = ( { module = \"passwd\"; } );\n"
		 "storage = ( { module = \"maildir\"; colour = 1; } );\n",
		 MODULES_BUILD_DIR);
	conf = load(text, errors, sizeof(errors));
	assert_null(conf);
	snprintf(needle, sizeof(needle),
		 "%s:3: auth module passwd: missing required setting 'file'",
		 conf_path);
	assert_non_null(strstr(errors, needle));
	snprintf(needle, sizeof(needle),
		 "%s:4: unknown setting 'colour' in storage module maildir",
		 conf_path);
	assert_non_null(strstr(errors, needle));

	/* A module of the wrong kind. */
	snprintf(text, sizeof(text),
		 "listen = ( { port = 1110; } );\n"
		 "modules_dir = \"%s\";\n"
		 "auth = ( { module = \"passwd\"; file = \"%s\"; } );\n"
		 "storage = ( { module = \"passwd\"; } );\n",
		 MODULES_BUILD_DIR, users_path);
	conf = load(text, errors, sizeof(errors));
	assert_null(conf);
	assert_non_null(strstr(errors, ":4: "));

	/* Nothing configured at all. */
	conf = load("", errors, sizeof(errors));
	assert_null(conf);
	assert_non_null(strstr(errors, "no 'listen' entries"));
	assert_non_null(strstr(errors, "no 'auth' modules"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_config),
		cmocka_unit_test(test_errors_name_file_and_line),
		cmocka_unit_test(test_module_errors),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
