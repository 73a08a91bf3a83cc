#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "conf.h"
#include "log.h"
#include "privdrop.h"
#include "session.h"

int
auth_plain(struct postern_session *s, const char *user, const char *pass,
	   struct postern_grant *grant_r)
{
	const struct server_conf *conf = s->conf;

	for (size_t i = 0; i < conf->n_auth; i++) {
		const struct module_conf *mc = &conf->auth[i];
		const char *error = NULL;
		int ret;

		memset(grant_r, 0, sizeof(*grant_r));
		grant_r->uid = (uid_t)-1;
		grant_r->gid = (gid_t)-1;
		ret = mc->desc->auth->verify_plain(mc->state, s, user, pass,
						   grant_r, &error);
		switch (ret) {
		case POSTERN_DECLINED:
			continue;
		case POSTERN_OK:
			if (grant_r->user == NULL)
				grant_r->user = user;
			return POSTERN_OK;
		case POSTERN_TEMPFAIL:
		case POSTERN_ERROR:
			log_err("auth %s: backend failure: %s", mc->so_name,
				error != NULL ? error : "unknown");
			return POSTERN_TEMPFAIL;
		default:
			return POSTERN_FAIL;
		}
	}
	return POSTERN_FAIL;
}

int
auth_enter_grant(struct postern_session *s, const struct postern_grant *grant)
{
	const char *error = NULL;

	if (grant->uid == 0) {
		log_err("login refused: user=%s has uid 0", grant->user);
		return -1;
	}
	if (geteuid() != 0)
		return 0; /* the session runs as the daemon's own user */
	if (grant->uid == (uid_t)-1 || grant->gid == (gid_t)-1 ||
	    grant->gid == 0) {
		log_err("login refused: user=%s has no uid/gid (or gid 0) "
			"and the daemon runs as root",
			grant->user);
		return -1;
	}
	s->dropped_privileges = 1;
	if (privdrop_to(grant->user, grant->uid, grant->gid, &error) < 0) {
		log_err("login refused: user=%s: privilege drop failed: %s",
			grant->user, error);
		return -1;
	}
	return 0;
}
