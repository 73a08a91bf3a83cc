/*
 * auth_passwd: users from a Dovecot-style passwd-file.
 *
 * The master loads the file at init; forked workers inherit the table.
 * With reload_check (the default) a worker re-stats the file at each
 * login and rereads it when it changed, keeping the table it has when the
 * new file is bad. Each worker reloads its own copy; the master's stays as
 * loaded, so a fresh worker rereads once at its first login.
 */
#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <postern/module.h>

#include "passwd-file.h"

struct passwd_mod {
	const struct postern_api *api;
	char *path;
	int reload_check;
	struct passwd_table *table;

	/* A file version that failed to load: not retried, nor logged
	 * again, until it changes once more. */
	struct passwd_file_id failed_id;
	int have_failed_id;
	/* errno of the last failed stat, so a vanished file is logged
	 * once, not at every login. */
	int stat_errno;
};

/* init's error text when init fails: fini is not called then, so nothing
 * of the module would own it. Modules run single-threaded. */
static char init_error[PASSWD_ERROR_SIZE];

static const struct postern_setting passwd_settings[] = {
	{ "file", POSTERN_SETTING_STRING, NULL, 1,
	  "passwd-file: user:password:uid:gid:gecos:home:shell:extra_fields" },
	{ "reload_check", POSTERN_SETTING_BOOL, "true", 0,
	  "re-stat the file at each login and reload it when it changed" },
	{ .name = NULL },
};

struct report_ctx {
	const struct postern_api *api;
	unsigned skip; /* messages not to log: init returns the first */
};

static void
report_error(void *ctx, const char *msg)
{
	struct report_ctx *rc = ctx;

	if (rc->skip > 0) {
		rc->skip--;
		return;
	}
	rc->api->log(POSTERN_LOG_ERR, "passwd: %s", msg);
}

static void
passwd_fini(void *mod)
{
	struct passwd_mod *m = mod;

	if (m == NULL)
		return;
	passwd_table_free(&m->table);
	free(m->path);
	free(m);
}

static int
passwd_init(const struct postern_api *api, const struct postern_conf *conf,
	    void **mod_r, const char **error_r)
{
	struct report_ctx rc = { .api = api, .skip = 1 };
	struct passwd_mod *m;
	const char *path;
	size_t path_len;

	*mod_r = NULL;
	if (api->struct_size < offsetof(struct postern_api, scratch) +
				       sizeof(api->scratch)) {
		*error_r = "auth_passwd: the core's services table is too old";
		return POSTERN_FAIL;
	}
	path = api->conf_string(conf, "file");
	if (path == NULL || path[0] == '\0') {
		*error_r = "auth_passwd: setting 'file' is required";
		return POSTERN_FAIL;
	}
	m = calloc(1, sizeof(*m));
	path_len = strlen(path);
	if (m != NULL)
		m->path = malloc(path_len + 1);
	if (m == NULL || m->path == NULL) {
		free(m);
		*error_r = "auth_passwd: out of memory";
		return POSTERN_FAIL;
	}
	memcpy(m->path, path, path_len + 1);
	m->api = api;
	m->reload_check = api->conf_bool(conf, "reload_check");

	if (passwd_table_load(m->path, &m->table, report_error, &rc,
			      init_error, sizeof(init_error)) < 0) {
		passwd_fini(m);
		*error_r = init_error;
		return POSTERN_FAIL;
	}
	api->log(POSTERN_LOG_INFO, "passwd: loaded %s: %zu users", m->path,
		 passwd_table_count(m->table));
	*mod_r = m;
	return POSTERN_OK;
}

static void
reload_if_changed(struct passwd_mod *m)
{
	struct report_ctx rc = { .api = m->api, .skip = 0 };
	struct passwd_table *table;
	struct passwd_file_id id;
	char error[PASSWD_ERROR_SIZE];

	if (!m->reload_check)
		return;
	if (passwd_file_id_get(m->path, &id) < 0) {
		if (errno != m->stat_errno) {
			m->stat_errno = errno;
			m->api->log(POSTERN_LOG_WARNING,
				    "passwd: %s: %s, keeping the %zu users "
				    "loaded",
				    m->path, strerror(errno),
				    passwd_table_count(m->table));
		}
		return;
	}
	/* Written only when it changes: this struct was made by the master,
	 * and a write would copy its page into every worker. */
	if (m->stat_errno != 0)
		m->stat_errno = 0;
	if (passwd_file_id_equal(&id, passwd_table_file_id(m->table)) ||
	    (m->have_failed_id && passwd_file_id_equal(&id, &m->failed_id)))
		return;

	if (passwd_table_load(m->path, &table, report_error, &rc, error,
			      sizeof(error)) < 0) {
		m->failed_id = id;
		m->have_failed_id = 1;
		m->api->log(POSTERN_LOG_ERR,
			    "passwd: reload of %s failed, keeping the %zu "
			    "users loaded before",
			    m->path, passwd_table_count(m->table));
		return;
	}
	m->have_failed_id = 0;
	passwd_table_free(&m->table);
	m->table = table;
	m->api->log(POSTERN_LOG_INFO, "passwd: reloaded %s: %zu users",
		    m->path, passwd_table_count(m->table));
}

static void
fill_grant(struct passwd_mod *m, struct postern_session *s,
	   const struct passwd_entry *e, struct postern_grant *grant_r)
{
	const struct postern_api *api = m->api;

	memset(grant_r, 0, sizeof(*grant_r));
	grant_r->user = api->session_strndup(s, e->user.ptr, e->user.len);
	grant_r->uid = e->uid;
	grant_r->gid = e->gid;
	if (e->home.len != 0)
		grant_r->home = api->session_strndup(s, e->home.ptr,
						     e->home.len);
	if (e->storage.len != 0) {
		grant_r->storage = api->session_strndup(s, e->storage.ptr,
							e->storage.len);
		grant_r->location = api->session_strndup(s, e->location.ptr,
							 e->location.len);
	}
}

static int
passwd_verify_plain(void *mod, struct postern_session *s, const char *user,
		    const char *pass, struct postern_grant *grant_r,
		    const char **error_r)
{
	struct passwd_mod *m = mod;
	const struct passwd_entry *e;
	size_t user_len = strlen(user);
	int ret;

	reload_if_changed(m);
	ret = passwd_table_verify(m->table, user, user_len, pass,
				  m->api->scratch(sizeof(struct crypt_data)),
				  &e);
	switch (ret) {
	case POSTERN_OK:
		fill_grant(m, s, e, grant_r);
		return POSTERN_OK;
	case POSTERN_TEMPFAIL:
		m->api->log(POSTERN_LOG_ERR, "passwd: user=%s: crypt: %s",
			    user, strerror(errno));
		*error_r = "password hashing failed";
		return POSTERN_TEMPFAIL;
	default:
		/* The core logs the failure for fail2ban; only the why,
		 * which the client must never learn, goes here. */
		if (!passwd_user_name_valid(user, user_len))
			m->api->log(POSTERN_LOG_DEBUG,
				    "passwd: invalid user name");
		else
			m->api->log(POSTERN_LOG_DEBUG, "passwd: user=%s: %s",
				    user,
				    e == NULL ? "unknown user"
				    : e->scheme == PASSWD_SCHEME_LOCKED
					    ? "account locked"
					    : "wrong password");
		return POSTERN_FAIL;
	}
}

/* For APOP and friends, which need the plaintext: only {PLAIN} entries
 * have one. */
static int
passwd_lookup_secret(void *mod, struct postern_session *s, const char *user,
		     const char **secret_r, struct postern_grant *grant_r,
		     const char **error_r)
{
	struct passwd_mod *m = mod;
	const struct passwd_entry *e = NULL;
	size_t user_len = strlen(user);

	(void)error_r; /* nothing here is a backend failure */
	reload_if_changed(m);
	if (passwd_user_name_valid(user, user_len))
		e = passwd_table_lookup(m->table, user, user_len);
	if (e == NULL || e->scheme != PASSWD_SCHEME_PLAIN)
		return POSTERN_FAIL;
	*secret_r = m->api->session_strndup(s, e->password.ptr,
					    e->password.len);
	fill_grant(m, s, e, grant_r);
	return POSTERN_OK;
}

static const struct postern_auth_ops passwd_auth_ops = {
	.verify_plain = passwd_verify_plain,
	.lookup_secret = passwd_lookup_secret,
};

POSTERN_EXPORT const struct postern_module postern_module = {
	POSTERN_MODULE_HEADER,
	.name = "auth_passwd",
	.version = "0.1.0",
	.description = "users from a Dovecot-style passwd-file",
	.settings = passwd_settings,
	.init = passwd_init,
	.fini = passwd_fini,
	.auth = &passwd_auth_ops,
};
