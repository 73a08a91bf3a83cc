/* cmd_xdeleted: XDELETED lists the messages marked with DELE in this
 * session, so a client can show what QUIT will remove. */
#include <stdlib.h>

#include <postern/module.h>

struct xdeleted {
    const struct postern_api *api;
};

static int
xdeleted_handler(struct postern_session *s, void *mod, int argc,
                 const char *const *argv)
{
    const struct postern_api *api = ((struct xdeleted *)mod)->api;
    unsigned count = api->msg_count(s);
    struct postern_msg_info info;

    (void)argc; /* the row allows no arguments */
    (void)argv;
    if (api->reply(s, 1, POSTERN_CODE_NONE, "marked messages follow") < 0)
        return POSTERN_ERROR;
    for (unsigned n = 1; n <= count; n++) {
        if (api->msg_info(s, n, &info) != POSTERN_OK || !info.deleted)
            continue;
        if (api->write_line(s, "%u %llu", n,
                            (unsigned long long)info.wire_size) < 0)
            return POSTERN_ERROR;
    }
    return api->write_end(s) < 0 ? POSTERN_ERROR : POSTERN_OK;
}

static const struct postern_command xdeleted_commands[] = {
    { .name = "XDELETED", .states = POSTERN_STATE_TRANSACTION,
      .min_args = 0, .max_args = 0, .capa = "XDELETED",
      .handler = xdeleted_handler },
    { .name = NULL },
};

static int
xdeleted_init(const struct postern_api *api,
              const struct postern_conf *conf, void **mod_r,
              const char **error_r)
{
    struct xdeleted *x = calloc(1, sizeof(*x));

    (void)conf; /* no settings */
    if (x == NULL) {
        *error_r = "out of memory";
        return POSTERN_FAIL;
    }
    x->api = api;
    *mod_r = x;
    return POSTERN_OK;
}

static void
xdeleted_fini(void *mod)
{
    free(mod);
}

POSTERN_EXPORT const struct postern_module postern_module = {
    POSTERN_MODULE_HEADER,
    .name = "cmd_xdeleted",
    .version = "1.0",
    .description = "XDELETED: list the messages marked for deletion",
    .init = xdeleted_init,
    .fini = xdeleted_fini,
    .commands = xdeleted_commands,
};
