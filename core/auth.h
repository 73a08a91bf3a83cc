#ifndef POSTERN_AUTH_CORE_H
#define POSTERN_AUTH_CORE_H

#include <postern/auth.h>

struct postern_session;

/*
 * Runs the auth chain for a plaintext password: the first module that
 * does not decline decides. Returns POSTERN_OK with *grant_r filled,
 * POSTERN_FAIL (unknown user and wrong password alike), or
 * POSTERN_TEMPFAIL. The caller wipes pass.
 */
int auth_plain(struct postern_session *s, const char *user, const char *pass,
	       struct postern_grant *grant_r);

/*
 * Checks a grant against the process's situation and, in a root daemon,
 * switches the process to the grant's uid/gid (see privdrop.c). Returns 0,
 * or -1 (logged) when the grant must be refused: uid 0, or no uid in a
 * root daemon, or the switch failed.
 */
int auth_enter_grant(struct postern_session *s,
		     const struct postern_grant *grant);

#endif
