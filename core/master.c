#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "params.h"
#include "listen.h"
#include "log.h"
#include "master.h"
#include "tls.h"
#include "worker.h"

/* What each epoll registration points at. */
enum item_kind { ITEM_LISTENER, ITEM_SIGNAL, ITEM_CONN, ITEM_WORKER };

struct item {
	enum item_kind kind;
};

/* Connections at one client address, for max_sessions_per_ip. */
struct ip_count {
	struct ip_count *next;
	unsigned char addr[16];
	unsigned count;
};

#define IP_BUCKETS 4096

/* A connection the master holds until its first bytes arrive. */
struct conn {
	struct item item;
	int fd;
	int ready; /* readable: waiting for a free worker */
	long long deadline_ms;
	struct ip_count *ip;
	struct session_peer peer;
	struct conn *prev, *next; /* in waiting or ready */
};

struct conn_list {
	struct conn *head, *tail;
};

struct worker {
	struct item item;
	pid_t pid;
	int ctl_fd;
	unsigned slot;   /* in the board, or WORKER_NO_SLOT */
	unsigned given;  /* sessions handed to it */
	struct ip_count *ip; /* of the session it serves; NULL when idle */
	struct worker *next;
};

struct listen_item {
	struct item item;
	const struct listener *l;
};

struct master {
	struct server_conf *conf;
	const char *config_path;
	struct listener *listeners;
	size_t n_listeners;
	struct listen_item *listen_items;
	struct item signal_item;
	int epfd, sigfd;
	int stopping;
	int reap; /* SIGCHLD seen: reap after the event batch */

	/* Shared with the workers (worker.h); slots of reaped workers are
	 * reused from free_slots before new ones are taken. */
	struct worker_board *board;
	unsigned *free_slots;
	unsigned n_free_slots, slots_used;

	/* Held connections: silent ones in deadline order (one timeout for
	 * all, so arrival order), and those that spoke, queued for a worker.
	 * Neither is ever scanned past what it must. */
	struct conn_list waiting;
	struct conn_list ready;
	unsigned n_conns;  /* held + served */
	struct worker *workers;
	unsigned n_workers, n_idle;
	struct ip_count *ips[IP_BUCKETS];
};

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The address as 16 bytes (IPv4 mapped into IPv6) for counting. */
static void
addr_key(const struct sockaddr_storage *ss, unsigned char key[16])
{
	memset(key, 0, 16);
	if (ss->ss_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
	}
}

static struct ip_count **
ip_bucket(struct master *m, const unsigned char key[16])
{
	uint32_t h = 2166136261u;

	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return &m->ips[h % IP_BUCKETS];
}

static struct ip_count *
ip_find(struct master *m, const unsigned char key[16])
{
	struct ip_count *ip;

	for (ip = *ip_bucket(m, key); ip != NULL; ip = ip->next) {
		if (memcmp(ip->addr, key, 16) == 0)
			return ip;
	}
	return NULL;
}

static struct ip_count *
ip_add(struct master *m, const unsigned char key[16])
{
	struct ip_count **b = ip_bucket(m, key), *ip;

	ip = calloc(1, sizeof(*ip));
	if (ip == NULL)
		return NULL;
	memcpy(ip->addr, key, 16);
	ip->next = *b;
	*b = ip;
	return ip;
}

/* A connection ended wherever it was (held or in a worker). */
static void
ip_release(struct master *m, struct ip_count *ip)
{
	struct ip_count **p;

	m->n_conns--;
	if (--ip->count > 0)
		return;
	for (p = ip_bucket(m, ip->addr); *p != ip; p = &(*p)->next) {
	}
	*p = ip->next;
	free(ip);
}

static void
list_append(struct conn_list *l, struct conn *c)
{
	c->next = NULL;
	c->prev = l->tail;
	if (l->tail != NULL)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
}

static void
list_unlink(struct conn_list *l, struct conn *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		l->head = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	else
		l->tail = c->prev;
	c->prev = c->next = NULL;
}

/*
 * Takes fd out of the epoll set before it is closed. close() alone does
 * that only once no process holds the socket any more, and a worker just
 * forked holds copies of every descriptor until it closes them: its
 * registration, pointing at a struct about to be freed, would otherwise
 * stay in the set and come back as an event.
 */
static void
close_registered(struct master *m, int fd)
{
	epoll_ctl(m->epfd, EPOLL_CTL_DEL, fd, NULL);
	close(fd);
}

static void
conn_close(struct master *m, struct conn *c)
{
	list_unlink(c->ready ? &m->ready : &m->waiting, c);
	close_registered(m, c->fd);
	ip_release(m, c->ip);
	free(c);
}

static void
child_setup(struct master *m)
{
	sigset_t none;

	/* The worker needs none of the master's descriptors. */
	close(m->epfd);
	close(m->sigfd);
	for (size_t i = 0; i < m->n_listeners; i++)
		close(m->listeners[i].fd);
	for (struct conn *c = m->waiting.head; c != NULL; c = c->next)
		close(c->fd);
	for (struct conn *c = m->ready.head; c != NULL; c = c->next)
		close(c->fd);
	for (struct worker *w = m->workers; w != NULL; w = w->next)
		close(w->ctl_fd);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_IGN); /* reloads are the master's business */
	signal(SIGPIPE, SIG_IGN);
}

static unsigned
slot_take(struct master *m)
{
	if (m->n_free_slots > 0)
		return m->free_slots[--m->n_free_slots];
	if (m->board != NULL && m->slots_used < WORKER_BOARD_SLOTS)
		return m->slots_used++;
	return WORKER_NO_SLOT;
}

static void
slot_give_back(struct master *m, unsigned slot)
{
	if (slot != WORKER_NO_SLOT)
		m->free_slots[m->n_free_slots++] = slot;
}

static struct worker *
worker_spawn(struct master *m)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct worker *w;
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		log_err("worker: socketpair: %s", strerror(errno));
		return NULL;
	}
	w = calloc(1, sizeof(*w));
	if (w == NULL) {
		close(sv[0]);
		close(sv[1]);
		return NULL;
	}
	w->slot = slot_take(m);
	if (w->slot != WORKER_NO_SLOT)
		atomic_store(&m->board->done[w->slot], 0);
	pid = fork();
	if (pid < 0) {
		log_err("worker: fork: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		slot_give_back(m, w->slot);
		free(w);
		return NULL;
	}
	if (pid == 0) {
		close(sv[0]);
		child_setup(m);
		worker_main(sv[1], m->conf, m->board, w->slot);
	}
	close(sv[1]);
	/* The master's end never blocks (the worker's end does). */
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	w->item.kind = ITEM_WORKER;
	w->pid = pid;
	w->ctl_fd = sv[0];
	ev.data.ptr = w;
	epoll_ctl(m->epfd, EPOLL_CTL_ADD, w->ctl_fd, &ev);
	w->next = m->workers;
	m->workers = w;
	m->n_workers++;
	m->n_idle++;
	log_debug("worker: pid=%d started", (int)pid);
	return w;
}

/* Tells a worker to exit after its current session (closing its channel:
 * it reads EOF when it next waits for work). */
static void
worker_retire(struct master *m, struct worker *w)
{
	if (w->ctl_fd < 0)
		return;
	close_registered(m, w->ctl_fd);
	w->ctl_fd = -1;
	if (w->ip == NULL)
		m->n_idle--;
}

/* w ended its session: it is idle again, and its client address counts
 * one session less. */
static void
session_ended(struct master *m, struct worker *w)
{
	ip_release(m, w->ip);
	w->ip = NULL;
	m->n_idle++;
}

/* Whether w, busy as far as we knew, has ended its session by the board
 * (then it is idle again). */
static int
collect(struct master *m, struct worker *w)
{
	if (w->ip == NULL || w->ctl_fd < 0 || w->slot == WORKER_NO_SLOT ||
	    atomic_load(&m->board->done[w->slot]) != w->given)
		return 0;
	session_ended(m, w);
	return 1;
}

static void
collect_all(struct master *m)
{
	for (struct worker *w = m->workers; w != NULL; w = w->next)
		collect(m, w);
}

/* Workers are kept most recently handed a session first: the next
 * session gets a worker whose pages are warm, and idle spares stay
 * cold. */
static struct worker *
idle_worker(struct master *m)
{
	for (struct worker *w = m->workers; w != NULL; w = w->next) {
		if (w->ctl_fd >= 0 && (w->ip == NULL || collect(m, w)))
			return w;
	}
	return NULL;
}

static void
move_to_front(struct master *m, struct worker *w)
{
	struct worker **p;

	for (p = &m->workers; *p != w; p = &(*p)->next) {
	}
	*p = w->next;
	w->next = m->workers;
	m->workers = w;
}

/*
 * Hands ready connections to idle workers, forking more as needed. When
 * some must wait for a worker to finish, asks the workers to say so
 * (notify), then looks once more: a worker that ended its session before
 * it could see notify has its count on the board by then.
 */
static void
dispatch_ready(struct master *m)
{
	struct conn *c;

	while ((c = m->ready.head) != NULL) {
		struct worker_handoff h;
		struct worker *w = idle_worker(m);

		if (w == NULL && m->n_workers < (unsigned)m->conf->max_sessions)
			w = worker_spawn(m);
		if (w == NULL && m->board != NULL &&
		    !atomic_load(&m->board->notify)) {
			atomic_store(&m->board->notify, 1);
			w = idle_worker(m);
		}
		if (w == NULL)
			return; /* all busy: it waits for one to finish */
		memset(&h, 0, sizeof(h));
		h.peer = c->peer;
		if (worker_send(w->ctl_fd, c->fd, &h) < 0) {
			log_warning("worker: pid=%d did not take a "
				    "connection: %s", (int)w->pid,
				    strerror(errno));
			worker_retire(m, w);
			continue; /* try again with another worker */
		}
		w->ip = c->ip;
		w->given++;
		m->n_idle--;
		move_to_front(m, w);
		list_unlink(&m->ready, c);
		close(c->fd);
		free(c);
	}
	if (m->board != NULL && atomic_load(&m->board->notify))
		atomic_store(&m->board->notify, 0);
}

static void
keep_spares(struct master *m)
{
	if (m->n_idle < (unsigned)m->conf->spare_workers)
		collect_all(m);
	while (!m->stopping && m->n_idle < (unsigned)m->conf->spare_workers &&
	       m->n_workers < (unsigned)m->conf->max_sessions) {
		if (worker_spawn(m) == NULL)
			break;
	}
}

static void
format_peer(struct session_peer *p)
{
	if (p->addr.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (void *)&p->addr;

		inet_ntop(AF_INET, &sin->sin_addr, p->ip, sizeof(p->ip));
		p->port = ntohs(sin->sin_port);
	} else if (p->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (void *)&p->addr;

		inet_ntop(AF_INET6, &sin6->sin6_addr, p->ip, sizeof(p->ip));
		p->port = ntohs(sin6->sin6_port);
	}
}

/* Best effort: the socket buffer of a fresh connection is empty. */
static void
say(int fd, const char *text)
{
	if (send(fd, text, strlen(text), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* the client is already gone; nothing to do */
	}
}

static int
over_limits(const struct master *m, const struct ip_count *ip)
{
	return m->n_conns >= (unsigned)m->conf->max_sessions ||
	       (ip != NULL &&
		ip->count >= (unsigned)m->conf->max_sessions_per_ip);
}

static void
accept_one(struct master *m, const struct listener *l)
{
	static const char greeting[] = "+OK postern ready\r\n";
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
	struct session_peer peer;
	unsigned char key[16];
	struct ip_count *ip;
	struct conn *c;
	int fd;

	memset(&peer, 0, sizeof(peer));
	peer.addr_len = sizeof(peer.addr);
	/* Blocking, as the worker wants it: the master itself only ever
	 * sends with MSG_DONTWAIT and never reads. Its socket options come
	 * from the listener (worker_prepare_socket). */
	fd = accept4(l->fd, (struct sockaddr *)&peer.addr, &peer.addr_len,
		     SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR &&
		    errno != ECONNABORTED)
			log_warning("accept on %s: %s", l->name,
				    strerror(errno));
		return;
	}
	format_peer(&peer);
	snprintf(peer.listener, sizeof(peer.listener), "%s", l->name);
	peer.tls_mode = l->tls_mode;
	addr_key(&peer.addr, key);
	ip = ip_find(m, key);
	if (over_limits(m, ip)) {
		/* Sessions may have ended without telling us yet. */
		collect_all(m);
		ip = ip_find(m, key);
	}
	if (over_limits(m, ip)) {
		say(fd, "-ERR [SYS/TEMP] too many connections\r\n");
		log_warning("connect: peer=%s port=%d listener=%s: refused, "
			    "too many connections", peer.ip, peer.port,
			    l->name);
		close(fd);
		return;
	}
	if (ip == NULL)
		ip = ip_add(m, key);
	c = calloc(1, sizeof(*c));
	if (c == NULL || ip == NULL) {
		close(fd);
		free(c);
		return;
	}
	ip->count++;
	m->n_conns++;
	c->item.kind = ITEM_CONN;
	c->fd = fd;
	c->ip = ip;
	c->peer = peer;
	c->deadline_ms = now_ms() + (long long)m->conf->login_timeout * 1000;
	log_info("connect: peer=%s port=%d listener=%s", peer.ip, peer.port,
		 l->name);
	/* Implicit TLS: the worker greets after the handshake; until then
	 * we wait for the ClientHello just as for a first command. */
	if (l->tls_mode != TLS_IMPLICIT)
		say(fd, greeting);
	ev.data.ptr = c;
	list_append(&m->waiting, c);
	if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		conn_close(m, c);
}

static void
conn_event(struct master *m, struct conn *c, uint32_t events)
{
	if (c->ready)
		return;
	/* Readable: the client spoke (or hung up; the worker will see EOF
	 * and that costs it nothing). Stop watching; a worker takes it. */
	epoll_ctl(m->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	if (events & (EPOLLHUP | EPOLLERR)) {
		conn_close(m, c);
		return;
	}
	list_unlink(&m->waiting, c);
	c->ready = 1;
	list_append(&m->ready, c);
}

static void
expire_held(struct master *m)
{
	long long now = now_ms();
	struct conn *c;

	while ((c = m->waiting.head) != NULL && c->deadline_ms <= now) {
		say(c->fd, "-ERR login timeout, closing\r\n");
		log_info("timeout: peer=%s before login", c->peer.ip);
		conn_close(m, c);
	}
}

static int
next_timeout(const struct master *m)
{
	long long now = now_ms();

	if (m->waiting.head == NULL)
		return -1;
	if (m->waiting.head->deadline_ms <= now)
		return 0;
	return (int)(m->waiting.head->deadline_ms - now);
}

static void
worker_event(struct master *m, struct worker *w)
{
	char buf[16];
	ssize_t n = read(w->ctl_fd, buf, sizeof(buf));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return; /* nothing after all: the channel never blocks us */
	if (n <= 0) {
		/* Gone or going: reaped on SIGCHLD. */
		worker_retire(m, w);
		return;
	}
	/* With a slot, the board has the truth (this may be about a session
	 * already collected); without one, this message is it. */
	if (w->slot != WORKER_NO_SLOT)
		collect(m, w);
	else if (w->ip != NULL)
		session_ended(m, w);
}

static void
reap_workers(struct master *m)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct worker **p, *w;

		for (p = &m->workers; *p != NULL && (*p)->pid != pid;
		     p = &(*p)->next) {
		}
		if (*p == NULL)
			continue;
		w = *p;
		*p = w->next;
		if (WIFSIGNALED(status) && !m->stopping)
			log_warning("worker: pid=%d killed by signal %d",
				    (int)pid, WTERMSIG(status));
		else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
			log_warning("worker: pid=%d exited with status %d",
				    (int)pid, WEXITSTATUS(status));
		if (w->ctl_fd >= 0) {
			close_registered(m, w->ctl_fd);
			if (w->ip == NULL)
				m->n_idle--;
		}
		if (w->ip != NULL)
			ip_release(m, w->ip);
		slot_give_back(m, w->slot);
		m->n_workers--;
		free(w);
	}
}

static void
reload(struct master *m)
{
	struct server_conf *fresh;

	log_info("reload: reading %s", m->config_path);
	sd_notify(0, "RELOADING=1");
	fresh = conf_load(m->config_path);
	if (fresh == NULL) {
		log_err("reload: %s has errors, keeping the running "
			"configuration", m->config_path);
		sd_notify(0, "READY=1");
		return;
	}
	conf_free(&m->conf);
	m->conf = fresh;
	log_set_level((enum postern_log_level)fresh->log_level);
	if (fresh->tls != NULL)
		tls_server_warm_up(fresh->tls);
	/* Every worker goes: an idle one now, a busy one when its session
	 * ends (its channel reads EOF); its client address is released when
	 * it is reaped. */
	for (struct worker *w = m->workers; w != NULL; w = w->next)
		worker_retire(m, w);
	log_info("reload: done; new sessions use the new configuration");
	sd_notify(0, "READY=1");
}

static void
signal_event(struct master *m)
{
	struct signalfd_siginfo si;

	while (read(m->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			m->reap = 1;
			break;
		case SIGHUP:
			reload(m);
			break;
		case SIGTERM:
		case SIGINT:
			m->stopping = 1;
			break;
		}
	}
}

static void
shutdown_all(struct master *m)
{
	int status;
	pid_t pid;

	sd_notify(0, "STOPPING=1");
	log_info("stopping");
	for (size_t i = 0; i < m->n_listeners; i++)
		close(m->listeners[i].fd);
	while (m->waiting.head != NULL)
		conn_close(m, m->waiting.head);
	while (m->ready.head != NULL)
		conn_close(m, m->ready.head);
	/* Running sessions end without UPDATE: nothing is deleted. */
	for (struct worker *w = m->workers; w != NULL; w = w->next) {
		kill(w->pid, SIGTERM);
		worker_retire(m, w);
	}
	while ((pid = waitpid(-1, &status, 0)) > 0 || errno == EINTR) {
	}
	while (m->workers != NULL) {
		struct worker *w = m->workers;

		m->workers = w->next;
		free(w);
	}
	for (size_t i = 0; i < IP_BUCKETS; i++) {
		while (m->ips[i] != NULL) {
			struct ip_count *ip = m->ips[i];

			m->ips[i] = ip->next;
			free(ip);
		}
	}
}

static size_t
board_size(void)
{
	return sizeof(struct worker_board) +
	       WORKER_BOARD_SLOTS * sizeof(_Atomic unsigned);
}

/* Without a board (no memory for it) every worker says WORKER_DONE after
 * each session, which works, at the cost of waking the master. */
static void
board_setup(struct master *m)
{
	void *p = mmap(NULL, board_size(), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	m->free_slots = calloc(WORKER_BOARD_SLOTS, sizeof(*m->free_slots));
	if (p == MAP_FAILED || m->free_slots == NULL) {
		log_warning("master: no worker board (%s); workers will "
			    "report each session", strerror(errno));
		if (p != MAP_FAILED)
			munmap(p, board_size());
		return;
	}
	m->board = p;
}

int
master_run(struct server_conf **conf, const char *config_path,
	   struct listener *listeners, size_t n_listeners)
{
	struct master m;
	struct epoll_event ev = { .events = EPOLLIN };
	sigset_t mask;

	memset(&m, 0, sizeof(m));
	m.conf = *conf;
	*conf = NULL;
	m.config_path = config_path;
	m.listeners = listeners;
	m.n_listeners = n_listeners;
	m.signal_item.kind = ITEM_SIGNAL;

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	m.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	m.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (m.sigfd < 0 || m.epfd < 0) {
		log_err("master: %s", strerror(errno));
		return 1;
	}
	ev.data.ptr = &m.signal_item;
	epoll_ctl(m.epfd, EPOLL_CTL_ADD, m.sigfd, &ev);
	m.listen_items = calloc(n_listeners + 1, sizeof(*m.listen_items));
	if (m.listen_items == NULL)
		return 1;
	for (size_t i = 0; i < n_listeners; i++) {
		m.listen_items[i].item.kind = ITEM_LISTENER;
		m.listen_items[i].l = &listeners[i];
		ev.data.ptr = &m.listen_items[i];
		epoll_ctl(m.epfd, EPOLL_CTL_ADD, listeners[i].fd, &ev);
	}
	if (m.conf->tls != NULL)
		tls_server_warm_up(m.conf->tls);
	board_setup(&m);
	keep_spares(&m);
	sd_notify(0, "READY=1");
	log_info("ready: %zu listeners, %u workers", n_listeners,
		 m.n_workers);

	while (!m.stopping) {
		struct epoll_event events[MASTER_EVENTS];
		int n = epoll_wait(m.epfd, events, MASTER_EVENTS,
				   next_timeout(&m));

		if (n < 0 && errno != EINTR) {
			log_err("master: epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			struct item *item = events[i].data.ptr;

			switch (item->kind) {
			case ITEM_SIGNAL:
				signal_event(&m);
				break;
			case ITEM_LISTENER:
				accept_one(&m,
					   ((struct listen_item *)item)->l);
				break;
			case ITEM_CONN:
				conn_event(&m, (struct conn *)item,
					   events[i].events);
				break;
			case ITEM_WORKER:
				worker_event(&m, (struct worker *)item);
				break;
			}
		}
		/* Workers are freed only here, after the batch, so no event
		 * in it points at freed memory. */
		if (m.reap) {
			m.reap = 0;
			reap_workers(&m);
		}
		expire_held(&m);
		dispatch_ready(&m);
		keep_spares(&m);
	}
	shutdown_all(&m);
	if (m.board != NULL)
		munmap(m.board, board_size());
	free(m.free_slots);
	free(m.listen_items);
	free(m.listeners);
	conf_free(&m.conf);
	close(m.epfd);
	close(m.sigfd);
	return 0;
}
