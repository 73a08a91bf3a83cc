/*
 * cmd_uidl: UIDL [msg] (RFC 1939): the storage's unique ids, which stay
 * the same across sessions so a client can leave mail on the server.
 */
#include <stdlib.h>

#include <postern/module.h>

struct uidl_mod {
	const struct postern_api *api;
};

static int
cmd_uidl(struct postern_session *s, void *mod, int argc,
	 const char *const *argv)
{
	const struct postern_api *api = ((const struct uidl_mod *)mod)->api;
	struct postern_msg_info info;
	unsigned n, count;
	int r;

	if (argc >= 1) {
		r = api->msg_arg(s, argv[0], &n);
		if (r != POSTERN_OK)
			return r == POSTERN_ERROR ? POSTERN_ERROR : POSTERN_OK;
		if (api->msg_info(s, n, &info) != POSTERN_OK)
			return api->reply(s, 0, POSTERN_CODE_NONE,
					  "no such message");
		return api->reply(s, 1, POSTERN_CODE_NONE, "%u %s", n,
				  info.uid);
	}
	if (api->reply(s, 1, POSTERN_CODE_NONE, "%s", "") != POSTERN_OK)
		return POSTERN_ERROR;
	count = api->msg_count(s);
	for (n = 1; n <= count; n++) {
		if (api->msg_info(s, n, &info) != POSTERN_OK || info.deleted)
			continue;
		if (api->write_line(s, "%u %s", n, info.uid) != POSTERN_OK)
			return POSTERN_ERROR;
	}
	return api->write_end(s);
}

static const struct postern_command uidl_commands[] = {
	{ .name = "UIDL",
	  .states = POSTERN_STATE_TRANSACTION,
	  .min_args = 0,
	  .max_args = 1,
	  .capa = "UIDL",
	  .handler = cmd_uidl },
	{ .name = NULL },
};

static int
uidl_init(const struct postern_api *api, const struct postern_conf *conf,
	  void **mod_r, const char **error_r)
{
	struct uidl_mod *um = calloc(1, sizeof(*um));

	(void)conf;
	if (um == NULL) {
		*error_r = "out of memory";
		return POSTERN_FAIL;
	}
	um->api = api;
	*mod_r = um;
	return POSTERN_OK;
}

static void
uidl_fini(void *mod)
{
	free(mod);
}

POSTERN_EXPORT const struct postern_module postern_module = {
	POSTERN_MODULE_HEADER,
	.name = "cmd_uidl",
	.version = "0.1.0",
	.description = "UIDL command (RFC 1939)",
	.init = uidl_init,
	.fini = uidl_fini,
	.commands = uidl_commands,
};
