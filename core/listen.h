#ifndef POSTERN_LISTEN_H
#define POSTERN_LISTEN_H

#include <stddef.h>

struct server_conf;
struct listen_conf;

struct listener {
	int fd;
	int tls_mode; /* enum tls_mode */
	char name[64];
};

/*
 * Opens the listeners: systemd's sockets when the daemon was socket
 * activated (matched to listen entries by name; the config's addresses
 * are then not bound), else binds every listen entry. Sockets are
 * non-blocking and close-on-exec. Returns 0, or -1 after logging each
 * problem with the config's file:line.
 */
int listen_open(const struct server_conf *conf, struct listener **list_r,
		size_t *count_r);
void listen_close(struct listener **list, size_t count);

#endif
