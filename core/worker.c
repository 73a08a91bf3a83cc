#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "arena.h"
#include "conf.h"
#include "params.h"
#include "log.h"
#include "proto.h"
#include "worker.h"

int
worker_send(int ctl_fd, int fd, const struct worker_handoff *h)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (void *)h, .iov_len = sizeof(*h) };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = u.buf,
		.msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);

	memset(u.buf, 0, sizeof(u.buf));
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	if (sendmsg(ctl_fd, &msg, MSG_NOSIGNAL) != (ssize_t)sizeof(*h))
		return -1;
	return 0;
}

/* Returns the received fd, or -1 with errno (EAGAIN: the channel's
 * receive timeout ran out; EPIPE: the master closed it). */
static int
receive(int ctl_fd, struct worker_handoff *h)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = h, .iov_len = sizeof(*h) };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = u.buf,
		.msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *cmsg;
	ssize_t n;
	int fd = -1;

	do {
		n = recvmsg(ctl_fd, &msg, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(*h)) {
		if (n >= 0)
			errno = EPIPE; /* closed, or a short message */
		return -1;
	}
	cmsg = CMSG_FIRSTHDR(&msg);
	if (cmsg != NULL && cmsg->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
	return fd;
}

void
worker_prepare_socket(int fd)
{
	int one = 1;

	socket_set_timeout(fd, SO_SNDTIMEO, WRITE_TIMEOUT * 1000);
	socket_set_timeout(fd, SO_RCVTIMEO, IDLE_RELEASE_MS);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/*
 * Waits for the next connection. A worker left waiting past
 * IDLE_RELEASE_MS gives back its buffers' and its memory's idle pages:
 * the channel's receive timeout ends the first wait, so a busy worker
 * pays no system call for it.
 */
static int
receive_or_idle(int ctl_fd, struct worker_handoff *h, struct pio *io)
{
	int fd = receive(ctl_fd, h);

	if (fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		pio_release_idle(io);
		socket_set_timeout(ctl_fd, SO_RCVTIMEO, 0);
		fd = receive(ctl_fd, h);
		socket_set_timeout(ctl_fd, SO_RCVTIMEO, IDLE_RELEASE_MS);
	}
	return fd;
}

/*
 * Tells the master a session ended. The count goes first, then the look
 * at notify (both sequentially consistent): the master sets notify before
 * it reads the counts, so either it sees this count or we see its notify.
 */
static int
report_done(int ctl_fd, struct worker_board *board, unsigned slot,
	    unsigned sessions)
{
	char done = WORKER_DONE;

	if (slot != WORKER_NO_SLOT) {
		atomic_store(&board->done[slot], sessions);
		if (!atomic_load(&board->notify))
			return 0;
	}
	return write(ctl_fd, &done, 1) == 1 ? 0 : -1;
}

void
worker_main(int ctl_fd, const struct server_conf *conf,
	    struct worker_board *board, unsigned slot)
{
	struct worker_handoff h;
	struct pio io;
	unsigned sessions = 0;

	if (pio_init(&io) < 0) {
		log_err("worker: out of memory");
		_exit(1);
	}
	socket_set_timeout(ctl_fd, SO_RCVTIMEO, IDLE_RELEASE_MS);
	for (;;) {
		int fd = receive_or_idle(ctl_fd, &h, &io);
		int dropped;

		if (fd < 0)
			break;
		pio_attach(&io, fd);
		io.rcvtimeo_ms = IDLE_RELEASE_MS; /* the listener's */
		dropped = session_run(conf, &io, &h.peer, 0);
		close(fd);
		pio_reset(&io);
		explicit_bzero(&h, sizeof(h));
		memory_release();
		if (dropped)
			break; /* this process is some user's now */
		if (report_done(ctl_fd, board, slot, ++sessions) < 0)
			break;
	}
	pio_free(&io);
	_exit(0);
}

int
worker_inetd(const struct server_conf *conf)
{
	struct session_peer peer;
	struct pio io;
	int is_socket;

	memset(&peer, 0, sizeof(peer));
	peer.addr_len = sizeof(peer.addr);
	snprintf(peer.listener, sizeof(peer.listener), "inetd");
	/* One session, no listener of its own: it serves like the first
	 * listen entry (so an inetd unit on 995 names an implicit one). */
	peer.tls_mode = conf->n_listens > 0 ? conf->listens[0].tls_mode : 0;
	is_socket = getpeername(STDIN_FILENO, (struct sockaddr *)&peer.addr,
				&peer.addr_len) == 0;
	if (is_socket && peer.addr.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (void *)&peer.addr;

		inet_ntop(AF_INET, &sin->sin_addr, peer.ip, sizeof(peer.ip));
		peer.port = ntohs(sin->sin_port);
	} else if (is_socket && peer.addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (void *)&peer.addr;

		inet_ntop(AF_INET6, &sin6->sin6_addr, peer.ip, sizeof(peer.ip));
		peer.port = ntohs(sin6->sin6_port);
	} else {
		/* A pipe or a Unix socket: the peer is on this machine. */
		snprintf(peer.ip, sizeof(peer.ip), "local");
		peer.addr.ss_family = AF_UNIX;
	}
	if (pio_init(&io) < 0)
		return 1;
	if (is_socket) {
		fcntl(STDIN_FILENO, F_SETFL,
		      fcntl(STDIN_FILENO, F_GETFL) & ~O_NONBLOCK);
		worker_prepare_socket(STDIN_FILENO);
	}
	pio_attach(&io, STDIN_FILENO);
	io.out_fd = is_socket ? STDIN_FILENO : STDOUT_FILENO;
	io.rcvtimeo_ms = is_socket ? IDLE_RELEASE_MS : PIO_RCVTIMEO_NONE;
	log_info("connect: peer=%s port=%d listener=inetd", peer.ip,
		 peer.port);
	session_run(conf, &io, &peer, 1);
	pio_free(&io);
	return 0;
}
