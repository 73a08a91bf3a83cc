/* Every built module dlopens and passes the ABI checks; broken ones are
 * refused with the file named. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "modload.h"

static void
test_every_built_module_loads(void **state)
{
	DIR *d = opendir(MODULES_BUILD_DIR);
	struct dirent *de;
	int loaded = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		char path[4096], name[256], err[1024];
		struct loaded_module *mod;

		if (len < 4 || strcmp(de->d_name + len - 3, ".so") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", MODULES_BUILD_DIR,
			 de->d_name);
		snprintf(name, sizeof(name), "%.*s", (int)(len - 3),
			 de->d_name);
		if (modload_open(path, name, &mod, err, sizeof(err)) < 0)
			fail_msg("%s", err);
		assert_int_equal(mod->desc.abi_major, POSTERN_ABI_MAJOR);
		assert_true(mod->desc.abi_minor <= POSTERN_ABI_MINOR);
		assert_non_null(mod->desc.version);
		assert_non_null(mod->desc.description);
		/* The kind its name promises is what it provides. */
		if (strncmp(name, "auth_", 5) == 0)
			assert_non_null(mod->desc.auth);
		if (strncmp(name, "storage_", 8) == 0)
			assert_non_null(mod->desc.storage);
		if (strncmp(name, "cmd_", 4) == 0)
			assert_non_null(mod->desc.commands);
		modload_close(&mod);
		assert_null(mod);
		loaded++;
	}
	closedir(d);
	assert_true(loaded >= 4);
}

static void
test_wrong_abi_refused(void **state)
{
	struct loaded_module *mod;
	char err[1024], want[256];

	assert_int_equal(modload_open(BAD_ABI_PATH, "cmd_bad_abi", &mod, err,
				      sizeof(err)),
			 -1);
	assert_null(mod);
	snprintf(want, sizeof(want),
		 "%s: module is for ABI version %d.0 (we have %d.%d)",
		 BAD_ABI_PATH, POSTERN_ABI_MAJOR + 1, POSTERN_ABI_MAJOR,
		 POSTERN_ABI_MINOR);
	assert_string_equal(err, want);
}

static void
test_no_descriptor_refused(void **state)
{
	struct loaded_module *mod;
	char err[1024];

	assert_int_equal(modload_open(NO_DESC_PATH, "no_descriptor", &mod,
				      err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, NO_DESC_PATH));
	assert_non_null(strstr(err, "no postern_module symbol"));
}

static void
test_missing_file_refused(void **state)
{
	struct loaded_module *mod;
	char err[1024];

	assert_int_equal(modload_open("/nonexistent/cmd_x.so", "cmd_x", &mod,
				      err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "/nonexistent/cmd_x.so"));
}

static void
test_checks(void **state)
{
	struct postern_module desc = { POSTERN_MODULE_HEADER,
				       .name = "cmd_x" };
	static const struct postern_command rows[] = { { .name = NULL } };
	char err[256];

	desc.commands = rows;
	assert_int_equal(modload_check(&desc, "p", "cmd_x", err, sizeof(err)),
			 0);
	assert_int_equal(modload_check(&desc, "p", "cmd_y", err, sizeof(err)),
			 -1);
	desc.abi_minor = POSTERN_ABI_MINOR + 1;
	assert_int_equal(modload_check(&desc, "p", "cmd_x", err, sizeof(err)),
			 -1);
	desc.abi_minor = POSTERN_ABI_MINOR;
	desc.reserved[3] = &desc;
	assert_int_equal(modload_check(&desc, "p", "cmd_x", err, sizeof(err)),
			 -1);
	desc.reserved[3] = NULL;
	desc.commands = NULL;
	assert_int_equal(modload_check(&desc, "p", "cmd_x", err, sizeof(err)),
			 -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_built_module_loads),
		cmocka_unit_test(test_wrong_abi_refused),
		cmocka_unit_test(test_no_descriptor_refused),
		cmocka_unit_test(test_missing_file_refused),
		cmocka_unit_test(test_checks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
