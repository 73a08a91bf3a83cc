#ifndef POSTERN_WORKER_H
#define POSTERN_WORKER_H

#include "session.h"

struct server_conf;

/* What the master sends with each connection (the fd rides along as
 * SCM_RIGHTS). */
struct worker_handoff {
	struct session_peer peer;
};

/* A worker's message on its channel: look at my board slot (or, without
 * a slot, my session ended and I can take another). */
#define WORKER_DONE 'D'

/*
 * What the workers tell the master without waking it: one MAP_SHARED page
 * range, made before the first fork. A worker that ends a session counts
 * it in its slot; the master compares that with the sessions it handed
 * over when it needs a free worker, and asks (notify) to be woken only
 * while connections wait for one. A worker that writes garbage here can
 * only mislead the master about itself, which it could do anyway.
 */
struct worker_board {
	_Atomic unsigned notify;  /* master: say WORKER_DONE after a session */
	_Atomic unsigned done[];  /* per slot: sessions finished */
};

/* A worker without a slot (the board is full) says WORKER_DONE always. */
#define WORKER_NO_SLOT ((unsigned)-1)

/*
 * A worker's life: waits on ctl_fd for a connection, serves it, wipes the
 * session, counts it in board->done[slot] (saying WORKER_DONE when the
 * master asks for it), and repeats until the master closes ctl_fd or a
 * session dropped privileges. Never returns.
 */
void worker_main(int ctl_fd, const struct server_conf *conf,
		 struct worker_board *board, unsigned slot)
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
