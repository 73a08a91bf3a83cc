#ifndef POSTERN_PRIVDROP_H
#define POSTERN_PRIVDROP_H

#include <sys/types.h>

/*
 * The one place the process changes identity: sets the supplementary
 * groups (the system user's groups when name is a system user with this
 * uid, else just gid), then gid, then uid, all three ids (real, effective,
 * saved), and checks root cannot be regained. Returns 0, or -1 with a
 * static *error_r; after -1 the process must not serve anyone.
 */
int privdrop_to(const char *name, uid_t uid, gid_t gid, const char **error_r);

/* Drops the whole daemon to a named system user (server.user). */
int privdrop_daemon(const char *user, const char **error_r);

#endif
