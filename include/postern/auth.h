/*
 * Authentication modules. The core tries the configured auth modules in
 * order; the first that does not return POSTERN_DECLINED decides.
 */
#ifndef POSTERN_AUTH_H
#define POSTERN_AUTH_H

#include <stddef.h>
#include <sys/types.h>

struct postern_session;

/*
 * The grant: the only thing that crosses from login to mail code. Plain
 * data; strings are session memory (api->session_strndup) or live as long
 * as the module. uid/gid of (uid_t)-1 / (gid_t)-1 mean "not given": a
 * root daemon refuses such a grant, a non-root daemon ignores uid/gid and
 * runs the session as itself. uid 0 is always refused.
 */
struct postern_grant {
	const char *user;     /* canonical user name */
	uid_t uid;
	gid_t gid;
	const char *home;     /* may be NULL */
	/* Storage module short name ("maildir", "mbox"); NULL: the first
	 * configured storage. */
	const char *storage;
	/* Location template; "~" and "%u" are expanded by the core. NULL:
	 * the storage entry's configured path. */
	const char *location;
};

struct postern_auth_ops {
	/*
	 * Checks a plaintext password (USER/PASS, AUTH PLAIN). Must take
	 * about the same time for an unknown user as for a wrong password
	 * (hash a dummy), and compare in constant time. Returns POSTERN_OK
	 * and fills *grant_r, POSTERN_FAIL (unknown user or wrong password,
	 * the same), POSTERN_DECLINED, or POSTERN_TEMPFAIL with *error_r.
	 * The core wipes pass after the call.
	 */
	int (*verify_plain)(void *mod, struct postern_session *s,
			    const char *user, const char *pass,
			    struct postern_grant *grant_r, const char **error_r);
	/*
	 * Optional (NULL when absent): the plaintext secret for challenge
	 * mechanisms (APOP, CRAM-MD5), in session memory, and the grant.
	 */
	int (*lookup_secret)(void *mod, struct postern_session *s,
			     const char *user, const char **secret_r,
			     struct postern_grant *grant_r, const char **error_r);
	void *reserved[4];
};

#endif
