/*
 * A third party's command module, built outside the tree against the
 * installed header only (see test_outoftree.py). HELLO greets the user;
 * HELLO SIZES lists each message's size as a multi-line reply.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <postern/module.h>

struct hello {
	const struct postern_api *api;
	const char *greeting;
};

static int
cmd_hello(struct postern_session *s, void *mod, int argc,
	  const char *const *argv)
{
	const struct hello *h = mod;
	const struct postern_api *api = h->api;
	struct postern_msg_info info;
	unsigned n = api->msg_count(s);

	if (argc == 0)
		return api->reply(s, 1, POSTERN_CODE_NONE, "%s %s, %u messages",
				  h->greeting, api->session_user(s), n);
	if (strcasecmp(argv[0], "SIZES") != 0)
		return api->reply(s, 0, POSTERN_CODE_NONE, "unknown argument");
	if (api->reply(s, 1, POSTERN_CODE_NONE, "sizes follow") != POSTERN_OK)
		return POSTERN_ERROR;
	for (unsigned i = 1; i <= n; i++) {
		if (api->msg_info(s, i, &info) == POSTERN_OK && !info.deleted)
			api->write_line(s, "%u %llu", i,
					(unsigned long long)info.wire_size);
	}
	return api->write_end(s);
}

static const struct postern_command hello_commands[] = {
	{ .name = "HELLO", .states = POSTERN_STATE_TRANSACTION,
	  .min_args = 0, .max_args = 1, .capa = "X-HELLO",
	  .handler = cmd_hello },
	{ .name = NULL },
};

static const struct postern_setting hello_settings[] = {
	{ "greeting", POSTERN_SETTING_STRING, "hello", 0, "word to greet with" },
	{ NULL, 0, NULL, 0, NULL },
};

static int
hello_init(const struct postern_api *api, const struct postern_conf *conf,
	   void **mod_r, const char **error_r)
{
	struct hello *h = calloc(1, sizeof(*h));

	if (h == NULL) {
		*error_r = "out of memory";
		return POSTERN_FAIL;
	}
	h->api = api;
	h->greeting = api->conf_string(conf, "greeting");
	if (h->greeting == NULL)
		h->greeting = "hello";
	*mod_r = h;
	return POSTERN_OK;
}

static void
hello_fini(void *mod)
{
	free(mod);
}

POSTERN_EXPORT const struct postern_module postern_module = {
	POSTERN_MODULE_HEADER,
	.name = "cmd_hello",
	.version = "1.0",
	.description = "out-of-tree example: HELLO",
	.settings = hello_settings,
	.init = hello_init,
	.fini = hello_fini,
	.commands = hello_commands,
};
