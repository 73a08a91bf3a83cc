#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "privdrop.h"

#define MAX_GROUPS 256

int
privdrop_to(const char *name, uid_t uid, gid_t gid, const char **error_r)
{
	gid_t groups[MAX_GROUPS];
	int n_groups = MAX_GROUPS;
	struct passwd *pw = name != NULL ? getpwnam(name) : NULL;

	if (uid == 0 || gid == 0) {
		*error_r = "refusing to run as uid or gid 0";
		return -1;
	}
	if (pw == NULL || pw->pw_uid != uid ||
	    getgrouplist(name, gid, groups, &n_groups) < 0) {
		groups[0] = gid;
		n_groups = 1;
	}
	if (setgroups((size_t)n_groups, groups) < 0) {
		*error_r = "setgroups failed";
		return -1;
	}
	if (setresgid(gid, gid, gid) < 0) {
		*error_r = "setresgid failed";
		return -1;
	}
	if (setresuid(uid, uid, uid) < 0) {
		*error_r = "setresuid failed";
		return -1;
	}
	if (setuid(0) == 0 || seteuid(0) == 0) {
		*error_r = "root could be regained";
		return -1;
	}
	/* setuid cleared it already; say so explicitly for readers of
	 * /proc and core dumps of a process that held another user's mail. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	return 0;
}

int
privdrop_daemon(const char *user, const char **error_r)
{
	struct passwd *pw = getpwnam(user);

	if (pw == NULL) {
		*error_r = "unknown user";
		return -1;
	}
	if (pw->pw_uid == 0) {
		*error_r = "server.user must not be root";
		return -1;
	}
	return privdrop_to(user, pw->pw_uid, pw->pw_gid, error_r);
}
