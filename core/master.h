#ifndef POSTERN_MASTER_H
#define POSTERN_MASTER_H

#include <stddef.h>

struct server_conf;
struct listener;

/*
 * The master's event loop: accepts, enforces max_sessions and
 * max_sessions_per_ip, greets, holds connections until their first bytes
 * (closing silent ones after login_timeout), and hands them to pre-forked
 * workers. SIGHUP reloads the config from config_path; SIGTERM/SIGINT
 * stop. Takes ownership of *conf and the listeners. Returns the exit code.
 */
int master_run(struct server_conf **conf, const char *config_path,
	       struct listener *listeners, size_t n_listeners);

#endif
