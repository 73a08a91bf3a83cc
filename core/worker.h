#ifndef POSTERN_WORKER_H
#define POSTERN_WORKER_H

#include "session.h"

struct server_conf;

/* What the master sends with each connection (the fd rides along as
 * SCM_RIGHTS). */
struct worker_handoff {
	struct session_peer peer;
};

/* The worker's reply when a session ended and it can take another. */
#define WORKER_DONE 'D'

/*
 * A worker's life: waits on ctl_fd for a connection, serves it, wipes the
 * session, says WORKER_DONE, and repeats until the master closes ctl_fd or
 * a session dropped privileges. Never returns.
 */
void worker_main(int ctl_fd, const struct server_conf *conf)
	__attribute__((noreturn));

/* Socket options every session socket gets: a write timeout (a client
 * that stops reading cannot hold a worker), a first read timeout of
 * IDLE_RELEASE_MS (proto.c waits in read, not poll) and TCP_NODELAY (no
 * delayed-ACK stalls). Set on the listeners, whose accepted sockets
 * inherit them (no system call per connection), and on an inetd socket. */
void worker_prepare_socket(int fd);

/* Master side: hands fd to a worker. 0, or -1 (errno) if it is gone. */
int worker_send(int ctl_fd, int fd, const struct worker_handoff *h);

/* inetd mode: one session on stdin/stdout, no master. Returns exit code. */
int worker_inetd(const struct server_conf *conf);

#endif
