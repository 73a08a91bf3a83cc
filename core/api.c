/* The services table: how modules reach the core (include/postern/api.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "proto.h"
#include "session.h"

static void *
api_session_alloc(struct postern_session *s, size_t size)
{
	void *p = arena_alloc(&s->arena, size);

	if (p == NULL) {
		/* The contract says never NULL: a module past the session's
		 * memory cap ends the session, not the machine. */
		log_err("session of peer=%s: memory limit reached, closing",
			s->peer.ip);
		_exit(1);
	}
	return p;
}

static char *
api_session_strndup(struct postern_session *s, const char *str, size_t len)
{
	char *p = api_session_alloc(s, len + 1);

	memcpy(p, str, len);
	p[len] = '\0';
	return p;
}

static const char *
api_session_user(struct postern_session *s)
{
	return s->user;
}

static const char *
api_session_peer(struct postern_session *s)
{
	return s->peer.ip;
}

static int
api_reply(struct postern_session *s, int ok, enum postern_resp_code code,
	  const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = session_reply(s, ok, code, fmt, ap);
	va_end(ap);
	return ret;
}

static int
api_write_line(struct postern_session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return POSTERN_ERROR;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	if (line[0] == '.')
		pio_puts(s->io, ".");
	pio_write(s->io, line, (size_t)n);
	return pio_puts(s->io, "\r\n") < 0 ? POSTERN_ERROR : POSTERN_OK;
}

static int
api_write_end(struct postern_session *s)
{
	return pio_puts(s->io, ".\r\n") < 0 ? POSTERN_ERROR : POSTERN_OK;
}

static unsigned
api_msg_count(struct postern_session *s)
{
	return s->state == SESSION_TRANSACTION ? s->count : 0;
}

static int
api_msg_info(struct postern_session *s, unsigned n,
	     struct postern_msg_info *info_r)
{
	if (s->state != SESSION_TRANSACTION || n == 0 || n > s->count)
		return POSTERN_FAIL;
	info_r->wire_size = s->msgs[n - 1].wire_size;
	info_r->uid = s->msgs[n - 1].uid;
	info_r->deleted = s->deleted[n - 1];
	return POSTERN_OK;
}

static int
api_msg_arg(struct postern_session *s, const char *arg, unsigned *n_r)
{
	if (s->state != SESSION_TRANSACTION)
		return POSTERN_FAIL;
	return session_msg_arg(s, arg, n_r);
}

static int
api_msg_send(struct postern_session *s, unsigned n, long long body_lines)
{
	if (session_msg_check(s, n) != POSTERN_OK)
		return POSTERN_FAIL;
	return session_msg_send(s, n, body_lines);
}

const struct postern_api postern_api = {
	.struct_size = sizeof(struct postern_api),
	.log = postern_log,
	.conf_string = conf_get_string,
	.conf_int = conf_get_int,
	.conf_bool = conf_get_bool,
	.conf_list_count = conf_get_list_count,
	.conf_list_item = conf_get_list_item,
	.session_alloc = api_session_alloc,
	.session_strndup = api_session_strndup,
	.session_user = api_session_user,
	.session_peer = api_session_peer,
	.reply = api_reply,
	.write_line = api_write_line,
	.write_end = api_write_end,
	.msg_count = api_msg_count,
	.msg_info = api_msg_info,
	.msg_arg = api_msg_arg,
	.msg_send = api_msg_send,
	.wire_size_fd = proto_wire_size_fd,
	.scratch = memory_scratch,
};
