#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "conf.h"
#include "params.h"
#include "listen.h"
#include "log.h"
#include "worker.h"

static int
bind_one(const struct listen_conf *lc)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, lc->address,
		      &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)lc->port);
		len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		if (inet_pton(AF_INET6, lc->address, &sin6->sin6_addr) != 1) {
			errno = EINVAL;
			return -1;
		}
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)lc->port);
		len = sizeof(*sin6);
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* "::" and "0.0.0.0" can then be listed side by side. */
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	/* Options the accepted sockets inherit. */
	worker_prepare_socket(fd);
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 ||
	    listen(fd, LISTEN_BACKLOG) < 0) {
		int saved = errno;

		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

static int
from_systemd(const struct server_conf *conf, struct listener *list, int n_fds,
	     char **names)
{
	int errors = 0;

	for (int i = 0; i < n_fds; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		const char *name = names != NULL ? names[i] : "unknown";
		const struct listen_conf *lc = NULL;

		for (size_t j = 0; j < conf->n_listens; j++) {
			if (strcmp(conf->listens[j].name, name) == 0)
				lc = &conf->listens[j];
		}
		if (lc == NULL && n_fds == 1 && conf->n_listens == 1)
			lc = &conf->listens[0];
		if (lc == NULL) {
			log_err("%s: systemd socket '%s' matches no listen "
				"entry's name", conf->path, name);
			errors++;
			continue;
		}
		if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
			log_err("systemd socket '%s' (fd %d) is not a "
				"listening stream socket", name, fd);
			errors++;
			continue;
		}
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		worker_prepare_socket(fd);
		list[i].fd = fd;
		snprintf(list[i].name, sizeof(list[i].name), "%s", lc->name);
		list[i].tls_mode = lc->tls_mode;
		log_info("listening on systemd socket '%s'", lc->name);
	}
	return errors > 0 ? -1 : 0;
}

int
listen_open(const struct server_conf *conf, struct listener **list_r,
	    size_t *count_r)
{
	char **names = NULL;
	struct listener *list;
	int n_fds, ret = 0;

	n_fds = sd_listen_fds_with_names(1, &names);
	if (n_fds < 0) {
		log_err("systemd socket activation: %s", strerror(-n_fds));
		return -1;
	}
	*count_r = n_fds > 0 ? (size_t)n_fds : conf->n_listens;
	list = calloc(*count_r + 1, sizeof(*list));
	if (list == NULL)
		return -1;
	for (size_t i = 0; i < *count_r; i++)
		list[i].fd = -1;
	if (n_fds > 0) {
		ret = from_systemd(conf, list, n_fds, names);
	} else {
		for (size_t i = 0; i < conf->n_listens; i++) {
			const struct listen_conf *lc = &conf->listens[i];

			list[i].fd = bind_one(lc);
			snprintf(list[i].name, sizeof(list[i].name), "%s",
				 lc->name);
			list[i].tls_mode = lc->tls_mode;
			if (list[i].fd < 0) {
				log_err("%s:%d: listen %s: cannot bind %s "
					"port %d: %s",
					lc->file != NULL ? lc->file : conf->path,
					lc->line, lc->name, lc->address,
					lc->port, strerror(errno));
				ret = -1;
			} else {
				log_info("listening on %s port %d (%s)",
					 lc->address, lc->port, lc->name);
			}
		}
	}
	for (int i = 0; names != NULL && i < n_fds; i++)
		free(names[i]);
	free(names);
	*list_r = list;
	if (ret < 0)
		listen_close(list_r, *count_r);
	return ret;
}

void
listen_close(struct listener **list, size_t count)
{
	for (size_t i = 0; *list != NULL && i < count; i++) {
		if ((*list)[i].fd >= 0)
			close((*list)[i].fd);
	}
	free(*list);
	*list = NULL;
}
