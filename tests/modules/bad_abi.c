/* A module built for a future major ABI: the core must refuse it, naming
 * the file and both versions, without calling anything in it. */
#include <postern/module.h>

static int
must_not_run(const struct postern_api *api, const struct postern_conf *conf,
	     void **mod_r, const char **error_r)
{
	__builtin_trap();
}

static const struct postern_command rows[] = {
	{ .name = NULL },
};

POSTERN_EXPORT const struct postern_module postern_module = {
	.abi_major = POSTERN_ABI_MAJOR + 1,
	.abi_minor = 0,
	.struct_size = sizeof(struct postern_module),
	.name = "cmd_bad_abi",
	.init = must_not_run,
	.commands = rows,
};
