/*
 * cmd_top: TOP msg n (RFC 1939): the header, the blank line and at most n
 * lines of the body. The core does the reading, line endings and
 * dot-stuffing (api->msg_send); this module parses the arguments.
 */
#include <stdlib.h>

#include <postern/module.h>

struct top_mod {
	const struct postern_api *api;
};

/* More body lines than any message has. */
#define LINES_MAX 1000000000000000000LL

/* A non-negative decimal integer; counts past LINES_MAX (which would
 * overflow) mean the same as LINES_MAX: the whole body. */
static int
parse_lines(const char *arg, long long *n_r)
{
	long long n = 0;

	if (*arg == '\0')
		return 0;
	for (; *arg != '\0'; arg++) {
		if (*arg < '0' || *arg > '9')
			return 0;
		n = n < LINES_MAX / 10 ? n * 10 + (*arg - '0') : LINES_MAX;
	}
	*n_r = n;
	return 1;
}

static int
cmd_top(struct postern_session *s, void *mod, int argc,
	const char *const *argv)
{
	const struct postern_api *api = ((const struct top_mod *)mod)->api;
	long long lines;
	unsigned n;
	int r;

	(void)argc; /* the command row asks for exactly 2 */
	if (!parse_lines(argv[1], &lines))
		return api->reply(s, 0, POSTERN_CODE_NONE, "bad arguments");
	r = api->msg_arg(s, argv[0], &n);
	if (r != POSTERN_OK)
		return r == POSTERN_ERROR ? POSTERN_ERROR : POSTERN_OK;
	/* Sends "+OK" and the lines, or the -ERR when the message vanished
	 * (POSTERN_FAIL: the session goes on). */
	r = api->msg_send(s, n, lines);
	return r == POSTERN_ERROR ? POSTERN_ERROR : POSTERN_OK;
}

static const struct postern_command top_commands[] = {
	{ .name = "TOP",
	  .states = POSTERN_STATE_TRANSACTION,
	  .min_args = 2,
	  .max_args = 2,
	  .capa = "TOP",
	  .handler = cmd_top },
	{ .name = NULL },
};

static int
top_init(const struct postern_api *api, const struct postern_conf *conf,
	 void **mod_r, const char **error_r)
{
	struct top_mod *tm = calloc(1, sizeof(*tm));

	(void)conf;
	if (tm == NULL) {
		*error_r = "out of memory";
		return POSTERN_FAIL;
	}
	tm->api = api;
	*mod_r = tm;
	return POSTERN_OK;
}

static void
top_fini(void *mod)
{
	free(mod);
}

POSTERN_EXPORT const struct postern_module postern_module = {
	POSTERN_MODULE_HEADER,
	.name = "cmd_top",
	.version = "0.1.0",
	.description = "TOP command (RFC 1939)",
	.init = top_init,
	.fini = top_fini,
	.commands = top_commands,
};
