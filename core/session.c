#include <errno.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "conf.h"
#include "log.h"
#include "proto.h"
#include "session.h"
#include "tls.h"

static const char *const code_names[] = {
	[POSTERN_CODE_NONE] = NULL,
	[POSTERN_CODE_AUTH] = "AUTH",
	[POSTERN_CODE_SYS_TEMP] = "SYS/TEMP",
	[POSTERN_CODE_SYS_PERM] = "SYS/PERM",
	[POSTERN_CODE_IN_USE] = "IN-USE",
	[POSTERN_CODE_LOGIN_DELAY] = "LOGIN-DELAY",
};

int
session_reply(struct postern_session *s, int ok, enum postern_resp_code code,
	      const char *fmt, va_list ap)
{
	const char *name = NULL;
	char text[512];
	int n = 0;

	if ((size_t)code < sizeof(code_names) / sizeof(*code_names))
		name = code_names[code];
	if (fmt != NULL)
		n = vsnprintf(text, sizeof(text), fmt, ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(text))
		n = sizeof(text) - 1;
	if (ok)
		pio_puts(s->io, "+OK");
	else if (name != NULL)
		pio_printf(s->io, "-ERR [%s]", name);
	else
		pio_puts(s->io, "-ERR");
	if (n > 0) {
		pio_puts(s->io, " ");
		pio_write(s->io, text, (size_t)n);
	}
	return pio_puts(s->io, "\r\n") < 0 ? POSTERN_ERROR : POSTERN_OK;
}

static int POSTERN_PRINTF(2, 3)
ok(struct postern_session *s, const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = session_reply(s, 1, POSTERN_CODE_NONE, fmt, ap);
	va_end(ap);
	return ret;
}

static int POSTERN_PRINTF(3, 4)
err(struct postern_session *s, enum postern_resp_code code, const char *fmt,
    ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = session_reply(s, 0, code, fmt, ap);
	va_end(ap);
	return ret;
}

static int protocol_error(struct postern_session *s, const char *text);

int
session_parse_number(const char *arg, unsigned long long max,
		     unsigned long long *n_r)
{
	unsigned long long n = 0;

	if (*arg == '\0')
		return -1;
	for (; *arg != '\0'; arg++) {
		if (*arg < '0' || *arg > '9')
			return -1;
		n = n * 10 + (unsigned)(*arg - '0');
		if (n > max)
			return -1;
	}
	*n_r = n;
	return 0;
}

int
session_msg_check(struct postern_session *s, unsigned long long n)
{
	if (n == 0 || n > s->count) {
		err(s, POSTERN_CODE_NONE, "no such message");
		return POSTERN_FAIL;
	}
	if (s->deleted[n - 1]) {
		err(s, POSTERN_CODE_NONE, "message already deleted");
		return POSTERN_FAIL;
	}
	return POSTERN_OK;
}

int
session_msg_arg(struct postern_session *s, const char *arg, unsigned *n_r)
{
	unsigned long long n = 0;

	if (session_parse_number(arg, MAX_MESSAGES, &n) < 0)
		n = 0; /* reads as "no such message" */
	if (session_msg_check(s, n) != POSTERN_OK)
		return POSTERN_FAIL;
	*n_r = (unsigned)n;
	return POSTERN_OK;
}

int
session_msg_send(struct postern_session *s, unsigned n, long long body_limit)
{
	const struct postern_storage_ops *ops = s->storage->desc->storage;
	struct postern_msg_data data = { .fd = -1 };
	const char *error = NULL;
	int ret;

	/* Open before "+OK": a vanished message still gets a clean -ERR. */
	if (ops->msg_open(s->box, n - 1, &data, &error) != POSTERN_OK) {
		log_warning("message %u of user=%s: %s", n, s->user,
			    error != NULL ? error : "cannot open");
		err(s, POSTERN_CODE_NONE, "message is no longer available");
		return POSTERN_FAIL;
	}
	if (body_limit < 0)
		ok(s, "%llu octets",
		   (unsigned long long)s->msgs[n - 1].wire_size);
	else
		ok(s, "top of message follows");
	ret = pio_send_message(s->io, data.fd, data.offset, data.length,
			       data.flags, body_limit);
	if (ret < 0 && !s->io->failed) {
		log_err("message %u of user=%s: read failed mid-stream: %s",
			n, s->user, strerror(errno));
	}
	if (ops->msg_close != NULL)
		ops->msg_close(s->box, n - 1, &data);
	return ret < 0 ? POSTERN_ERROR : POSTERN_OK;
}

/* For log lines. Sessions run only in workers (or inetd), never in the
 * master, so the first value a process reads stays true: one getpid()
 * per worker, not two per session. */
static pid_t
session_pid(void)
{
	static pid_t pid;

	if (pid == 0)
		pid = getpid();
	return pid;
}

const char *
session_expand_location(struct postern_session *s, const char *template,
			const char *user, const char *home,
			const char **error_r)
{
	char out[LOCATION_MAX];
	const size_t cap = sizeof(out);
	size_t o = 0;
	const char *at = strchr(user, '@');
	const char *p = template;
	char *ret;

#define PUT(str, len)                                                  \
	do {                                                           \
		if (o + (len) >= cap)                                  \
			goto too_long;                                 \
		memcpy(out + o, (str), (len));                         \
		o += (len);                                            \
	} while (0)

	if (p[0] == '~' && (p[1] == '/' || p[1] == '\0')) {
		if (home == NULL || *home == '\0') {
			*error_r = "location uses ~ but the user has no home";
			return NULL;
		}
		PUT(home, strlen(home));
		p++;
	}
	for (; *p != '\0'; p++) {
		if (*p != '%') {
			PUT(p, 1);
			continue;
		}
		switch (*++p) {
		case 'u':
			PUT(user, strlen(user));
			break;
		case 'n':
			PUT(user, at != NULL ? (size_t)(at - user) : strlen(user));
			break;
		case 'd':
			if (at != NULL)
				PUT(at + 1, strlen(at + 1));
			break;
		case '%':
			PUT("%", 1);
			break;
		default:
			*error_r = "unknown %-sequence in location";
			return NULL;
		}
	}
	/* Only the expanded length is kept for the session. */
	ret = arena_strndup(&s->arena, out, o);
	if (ret == NULL)
		*error_r = "out of session memory";
	return ret;
too_long:
	*error_r = "location too long";
	return NULL;
#undef PUT
}

/* Whether message lines are counted in STAT/LIST: not when deleted. */
static void
mailbox_totals(const struct postern_session *s, unsigned *count_r,
	       uint64_t *size_r)
{
	unsigned count = 0;
	uint64_t size = 0;

	for (unsigned i = 0; i < s->count; i++) {
		if (!s->deleted[i]) {
			count++;
			size += s->msgs[i].wire_size;
		}
	}
	*count_r = count;
	*size_r = size;
}

static int
cmd_user(struct postern_session *s, void *mod, int argc,
	 const char *const *argv)
{
	if (!s->plaintext_allowed)
		return err(s, POSTERN_CODE_AUTH,
			   "TLS required for plaintext login");
	snprintf(s->user_arg, sizeof(s->user_arg), "%s", argv[0]);
	s->have_user_arg = 1;
	return ok(s, "send PASS");
}

/* Opens the grant's mailbox; replies and returns whether it worked. */
static int
open_mailbox(struct postern_session *s, const struct postern_grant *grant)
{
	const struct server_conf *conf = s->conf;
	const struct module_conf *mc = &conf->storage[0];
	const struct postern_storage_ops *ops;
	const char *template, *location, *error = NULL;
	unsigned count;
	uint64_t size;
	int ret;

	if (grant->storage != NULL) {
		mc = NULL;
		for (size_t i = 0; i < conf->n_storage; i++) {
			if (strcmp(conf->storage[i].short_name,
				   grant->storage) == 0) {
				mc = &conf->storage[i];
				break;
			}
		}
		if (mc == NULL) {
			log_err("login: user=%s: storage '%s' is not "
				"configured", grant->user, grant->storage);
			return err(s, POSTERN_CODE_SYS_TEMP,
				   "temporary failure, try again later"),
			       -1;
		}
	}
	template = grant->location != NULL
			   ? grant->location
			   : conf_get_string(&mc->settings, "path");
	location = template == NULL
			   ? NULL
			   : session_expand_location(s, template, grant->user,
						     grant->home, &error);
	if (location == NULL) {
		log_err("login: user=%s: bad mail location '%s': %s",
			grant->user, template != NULL ? template : "",
			error != NULL ? error : "none configured");
		return err(s, POSTERN_CODE_SYS_TEMP,
			   "temporary failure, try again later"),
		       -1;
	}
	ops = mc->desc->storage;
	ret = ops->open(mc->state, s, grant->user, location, &s->box,
			&s->msgs, &s->count, &error);
	if (ret == POSTERN_INUSE) {
		log_info("login: user=%s peer=%s: mailbox in use",
			 grant->user, s->peer.ip);
		return err(s, POSTERN_CODE_IN_USE,
			   "mailbox in use by another session"),
		       -1;
	}
	if (ret != POSTERN_OK || s->count > MAX_MESSAGES) {
		if (ret == POSTERN_OK)
			ops->close(s->box);
		s->box = NULL;
		log_err("mailbox %s of user=%s: %s", location, grant->user,
			error != NULL ? error : "cannot open");
		return err(s, POSTERN_CODE_SYS_TEMP,
			   "temporary failure, try again later"),
		       -1;
	}
	s->storage = mc;
	s->deleted = arena_alloc(&s->arena, s->count + 1);
	if (s->deleted == NULL) {
		ops->close(s->box);
		s->box = NULL;
		return err(s, POSTERN_CODE_SYS_TEMP, "mailbox too large"), -1;
	}
	mailbox_totals(s, &count, &size);
	return ok(s, "mailbox ready, %u messages (%llu octets)", count,
		  (unsigned long long)size) == POSTERN_OK ? 0 : -1;
}

static void
failure_delay(const struct server_conf *conf)
{
	struct timespec ts = {
		.tv_sec = conf->auth_failure_delay_ms / 1000,
		.tv_nsec = (long)(conf->auth_failure_delay_ms % 1000) * 1000000,
	};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
	}
}

/*
 * The one login path of USER/PASS and AUTH PLAIN: the auth chain, the
 * failure policy (same reply and delay for unknown user and wrong
 * password, a cap per connection), the grant, the mailbox. Replies.
 */
static int
login(struct postern_session *s, const char *user, const char *pass,
      const char *method)
{
	struct postern_grant grant;
	char safe_user[MAX_USER_LEN];
	int ret;

	log_safe(safe_user, sizeof(safe_user), user);
	ret = auth_plain(s, user, pass, &grant);
	if (ret == POSTERN_TEMPFAIL) {
		return err(s, POSTERN_CODE_SYS_TEMP,
			   "temporary failure, try again later");
	}
	if (ret != POSTERN_OK) {
		log_info("auth failed: user=%s peer=%s", safe_user, s->peer.ip);
		failure_delay(s->conf);
		if (++s->auth_failures >= (unsigned)s->conf->max_auth_failures) {
			s->ended = 1;
			return err(s, POSTERN_CODE_AUTH,
				   "too many failures, closing");
		}
		return err(s, POSTERN_CODE_AUTH,
			   "invalid user name or password");
	}
	if (auth_enter_grant(s, &grant) < 0) {
		s->ended = 1;
		return err(s, POSTERN_CODE_SYS_PERM, "login not permitted");
	}
	if (open_mailbox(s, &grant) < 0) {
		/* After a privilege drop this process cannot serve another
		 * user, so the session ends here. */
		if (s->dropped_privileges)
			s->ended = 1;
		return POSTERN_OK;
	}
	s->user = grant.user;
	s->state = SESSION_TRANSACTION;
	/* Login is over: its frames go now, before any mail is touched. */
	memory_scrub();
	s->io->read_timeout_ms = s->conf->idle_timeout * 1000;
	log_info("login: user=%s method=%s tls=%s peer=%s pid=%d", safe_user,
		 method, s->tls ? tls_version(s->io) : "no", s->peer.ip,
		 (int)session_pid());
	return POSTERN_OK;
}

static int
cmd_pass(struct postern_session *s, void *mod, int argc,
	 const char *const *argv)
{
	char *pass = (char *)argv[0];
	int ret;

	if (!s->plaintext_allowed)
		return err(s, POSTERN_CODE_AUTH,
			   "TLS required for plaintext login");
	if (!s->have_user_arg)
		return err(s, POSTERN_CODE_NONE, "USER first");
	s->have_user_arg = 0;
	ret = login(s, s->user_arg, pass, "USER");
	explicit_bzero(pass, strlen(pass));
	explicit_bzero(s->user_arg, sizeof(s->user_arg));
	return ret;
}

/* Base64 (RFC 4648) into out (room for 3/4 of len); -1 when malformed. */
static ssize_t
base64_decode(const char *in, size_t len, unsigned char *out)
{
	size_t pad = 0;
	int n;

	if (len == 0 || len % 4 != 0)
		return -1;
	while (pad < 2 && in[len - 1 - pad] == '=')
		pad++;
	n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
	return n < 0 ? -1 : (ssize_t)n - (ssize_t)pad;
}

/*
 * AUTH PLAIN (RFC 5034, RFC 4616): "AUTH PLAIN [initial-response]", or a
 * "+ " continuation when the response is not given. authzid must be
 * empty or the user itself: nobody logs in as someone else.
 */
static int
cmd_auth(struct postern_session *s, void *mod, int argc,
	 const char *const *argv)
{
	unsigned char plain[POP3_MAX_LINE];
	const char *mech = argc > 0 ? argv[0] : "";
	const char *resp = NULL, *authz, *user, *pass, *end;
	size_t mech_len = strcspn(mech, " ");
	char *line;
	size_t len;
	ssize_t n;
	int ret;

	if (!s->plaintext_allowed)
		return err(s, POSTERN_CODE_AUTH,
			   "TLS required for plaintext login");
	if (argc == 0) { /* the mechanism list, as many clients ask */
		ok(s, "SASL mechanisms follow");
		return pio_puts(s->io, "PLAIN\r\n.\r\n") < 0
			       ? POSTERN_ERROR
			       : POSTERN_OK;
	}
	if (mech_len != 5 || strncasecmp(mech, "PLAIN", 5) != 0)
		return err(s, POSTERN_CODE_NONE,
			   "unsupported authentication mechanism");
	if (mech[5] == ' ')
		resp = mech + 6;
	if (resp == NULL || *resp == '\0') {
		pio_puts(s->io, "+ \r\n");
		if (pio_read_line(s->io, &line, &len) != PIO_LINE)
			return POSTERN_ERROR;
		resp = line;
	}
	if (strcmp(resp, "*") == 0)
		return err(s, POSTERN_CODE_NONE, "authentication cancelled");
	n = base64_decode(resp, strlen(resp), plain);
	explicit_bzero((char *)resp, strlen(resp));
	/* authzid NUL authcid NUL passwd */
	authz = (const char *)plain;
	end = authz + (n > 0 ? n : 0);
	user = n > 0 ? memchr(authz, '\0', (size_t)n) : NULL;
	pass = user != NULL ? memchr(user + 1, '\0', (size_t)(end - user - 1))
			    : NULL;
	if (user == NULL || pass == NULL || memchr(pass + 1, '\0',
						   (size_t)(end - pass - 1))) {
		explicit_bzero(plain, sizeof(plain));
		return protocol_error(s, "bad AUTH PLAIN response");
	}
	user++;
	pass++;
	plain[n] = '\0'; /* ends passwd */
	if (*authz != '\0' && strcmp(authz, user) != 0) {
		explicit_bzero(plain, sizeof(plain));
		return err(s, POSTERN_CODE_AUTH,
			   "invalid user name or password");
	}
	ret = login(s, user, pass, "PLAIN");
	explicit_bzero(plain, sizeof(plain));
	return ret;
}

static void
log_logout(struct postern_session *s)
{
	char safe_user[MAX_USER_LEN];
	unsigned left = 0;
	uint64_t size;

	mailbox_totals(s, &left, &size);
	log_info("logout: user=%s peer=%s pid=%d retrieved=%u/%llu "
		 "deleted=%u left=%u",
		 log_safe(safe_user, sizeof(safe_user), s->user), s->peer.ip,
		 (int)session_pid(), s->retrieved,
		 (unsigned long long)s->retrieved_bytes, s->deleted_count,
		 s->count - s->deleted_count);
}

static int
cmd_quit(struct postern_session *s, void *mod, int argc,
	 const char *const *argv)
{
	const struct postern_storage_ops *ops;
	const char *error = NULL;
	int ret;

	s->ended = 1;
	if (s->state == SESSION_AUTHORIZATION)
		return ok(s, "bye");
	/* UPDATE: the only place anything is ever deleted. */
	ops = s->storage->desc->storage;
	if (s->deleted_count > 0 &&
	    ops->commit(s->box, s->deleted, s->count, &error) != POSTERN_OK) {
		log_err("update: user=%s: %s", s->user,
			error != NULL ? error : "commit failed");
		ret = err(s, POSTERN_CODE_SYS_TEMP,
			  "some deleted messages were not removed");
	} else {
		ret = ok(s, "bye, %u messages deleted", s->deleted_count);
	}
	log_logout(s);
	ops->close(s->box);
	s->box = NULL;
	return ret;
}

static int
cmd_stat(struct postern_session *s, void *mod, int argc,
	 const char *const *argv)
{
	unsigned count;
	uint64_t size;

	mailbox_totals(s, &count, &size);
	return ok(s, "%u %llu", count, (unsigned long long)size);
}

static int
cmd_list(struct postern_session *s, void *mod, int argc,
	 const char *const *argv)
{
	unsigned count, n;
	uint64_t size;

	if (argc == 1) {
		if (session_msg_arg(s, argv[0], &n) != POSTERN_OK)
			return POSTERN_OK;
		return ok(s, "%u %llu", n,
			  (unsigned long long)s->msgs[n - 1].wire_size);
	}
	mailbox_totals(s, &count, &size);
	ok(s, "%u messages (%llu octets)", count, (unsigned long long)size);
	for (unsigned i = 0; i < s->count; i++) {
		if (!s->deleted[i])
			pio_printf(s->io, "%u %llu\r\n", i + 1,
				   (unsigned long long)s->msgs[i].wire_size);
	}
	return pio_puts(s->io, ".\r\n") < 0 ? POSTERN_ERROR : POSTERN_OK;
}

static int
cmd_retr(struct postern_session *s, void *mod, int argc,
	 const char *const *argv)
{
	unsigned n;
	int ret;

	if (session_msg_arg(s, argv[0], &n) != POSTERN_OK)
		return POSTERN_OK;
	ret = session_msg_send(s, n, -1);
	if (ret == POSTERN_OK) {
		s->retrieved++;
		s->retrieved_bytes += s->msgs[n - 1].wire_size;
	}
	return ret == POSTERN_ERROR ? POSTERN_ERROR : POSTERN_OK;
}

static int
cmd_dele(struct postern_session *s, void *mod, int argc,
	 const char *const *argv)
{
	unsigned n;

	if (session_msg_arg(s, argv[0], &n) != POSTERN_OK)
		return POSTERN_OK;
	s->deleted[n - 1] = 1;
	s->deleted_count++;
	return ok(s, "message %u deleted", n);
}

static int
cmd_noop(struct postern_session *s, void *mod, int argc,
	 const char *const *argv)
{
	return ok(s, NULL);
}

static int
cmd_rset(struct postern_session *s, void *mod, int argc,
	 const char *const *argv)
{
	unsigned count;
	uint64_t size;

	memset(s->deleted, 0, s->count);
	s->deleted_count = 0;
	mailbox_totals(s, &count, &size);
	return ok(s, "%u messages (%llu octets)", count,
		  (unsigned long long)size);
}

/* RFC 2595 STLS. Whatever the client sent after the command, before the
 * handshake, is thrown away unread: plaintext injected there must never
 * be taken as commands from inside TLS (CVE-2011-0411). */
static int
cmd_stls(struct postern_session *s, void *mod, int argc,
	 const char *const *argv)
{
	char why[512];

	if (s->peer.tls_mode != TLS_STARTTLS || s->conf->tls == NULL)
		return protocol_error(s, "command not valid in this state");
	if (s->tls)
		return err(s, POSTERN_CODE_NONE, "already in TLS");
	ok(s, "begin TLS negotiation");
	if (pio_flush(s->io) < 0)
		return POSTERN_ERROR;
	pio_discard_input(s->io);
	if (tls_start(s->io, s->conf->tls, why, sizeof(why)) < 0) {
		log_info("tls: peer=%s: %s", s->peer.ip, why);
		return POSTERN_ERROR;
	}
	s->tls = 1;
	s->plaintext_allowed = 1;
	/* A fresh start: nothing said in plaintext carries over. */
	s->have_user_arg = 0;
	explicit_bzero(s->user_arg, sizeof(s->user_arg));
	return POSTERN_OK;
}

static int
cmd_capa(struct postern_session *s, void *mod, int argc,
	 const char *const *argv)
{
	const struct command_entry *c;

	ok(s, "capability list follows");
	if (s->state == SESSION_AUTHORIZATION && s->plaintext_allowed)
		pio_puts(s->io, "USER\r\nSASL PLAIN\r\n");
	if (s->state == SESSION_AUTHORIZATION && !s->tls &&
	    s->peer.tls_mode == TLS_STARTTLS && s->conf->tls != NULL)
		pio_puts(s->io, "STLS\r\n");
	pio_write(s->io,
		  "RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n", 40);
	for (c = s->conf->commands; c != NULL && c->cmd != NULL; c++) {
		if (c->cmd->capa != NULL)
			pio_printf(s->io, "%s\r\n", c->cmd->capa);
	}
	return pio_puts(s->io, "IMPLEMENTATION postern\r\n.\r\n") < 0
		       ? POSTERN_ERROR
		       : POSTERN_OK;
}

#define AUTH_STATE POSTERN_STATE_AUTHORIZATION
#define TRANS_STATE POSTERN_STATE_TRANSACTION

const struct postern_command session_core_commands[] = {
	{ "USER", AUTH_STATE, 1, 1, 0, NULL, cmd_user },
	{ "PASS", AUTH_STATE, 1, 1, POSTERN_CMD_REST_OF_LINE, NULL, cmd_pass },
	{ "QUIT", AUTH_STATE | TRANS_STATE, 0, 0, 0, NULL, cmd_quit },
	{ "STAT", TRANS_STATE, 0, 0, 0, NULL, cmd_stat },
	{ "LIST", TRANS_STATE, 0, 1, 0, NULL, cmd_list },
	{ "RETR", TRANS_STATE, 1, 1, 0, NULL, cmd_retr },
	{ "DELE", TRANS_STATE, 1, 1, 0, NULL, cmd_dele },
	{ "NOOP", TRANS_STATE, 0, 0, 0, NULL, cmd_noop },
	{ "RSET", TRANS_STATE, 0, 0, 0, NULL, cmd_rset },
	{ "CAPA", AUTH_STATE | TRANS_STATE, 0, 0, 0, NULL, cmd_capa },
	{ "STLS", AUTH_STATE, 0, 0, 0, NULL, cmd_stls },
	{ "AUTH", AUTH_STATE, 0, 1, POSTERN_CMD_REST_OF_LINE, NULL, cmd_auth },
	{ NULL, 0, 0, 0, 0, NULL, NULL },
};

static const struct command_entry *
find_command(const struct server_conf *conf, const char *name, size_t len)
{
	for (const struct command_entry *c = conf->commands;
	     c != NULL && c->cmd != NULL; c++) {
		if (strlen(c->cmd->name) == len &&
		    strncasecmp(c->cmd->name, name, len) == 0)
			return c;
	}
	return NULL;
}

/* A bad command: answer, count it, and close past the limit. */
static int
protocol_error(struct postern_session *s, const char *text)
{
	if (++s->protocol_errors >= (unsigned)s->conf->max_protocol_errors) {
		s->ended = 1;
		return err(s, POSTERN_CODE_NONE, "too many errors, closing");
	}
	return err(s, POSTERN_CODE_NONE, "%s", text);
}

int
session_split_args(char *rest, unsigned flags, const char **argv,
		   int *argc_r)
{
	char *p = rest;
	int argc = 0;

	if (flags & POSTERN_CMD_REST_OF_LINE) {
		if (*p == ' ' && p[1] != '\0')
			argv[argc++] = p + 1;
		*argc_r = argc;
		argv[argc] = NULL;
		return 0;
	}
	while (*p == ' ') {
		*p++ = '\0';
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		if (argc == POSTERN_MAX_ARGS)
			return -1;
		argv[argc++] = p;
		p += strcspn(p, " ");
		if ((size_t)(p - argv[argc - 1]) > POSTERN_MAX_ARG_LEN)
			return -1;
	}
	if (*p != '\0')
		return -1; /* junk glued to the keyword: "RETR1" */
	argv[argc] = NULL;
	*argc_r = argc;
	return 0;
}

/* Looks the keyword up, checks state and arguments, runs the handler. */
static int
dispatch(struct postern_session *s, char *line, size_t len)
{
	const char *argv[POSTERN_MAX_ARGS + 1];
	const struct command_entry *c;
	const struct postern_command *cmd;
	size_t kw_len;
	int argc;

	if (memchr(line, '\0', len) != NULL)
		return protocol_error(s, "invalid characters in command");
	kw_len = strcspn(line, " ");
	c = kw_len > 0 ? find_command(s->conf, line, kw_len) : NULL;
	if (c == NULL)
		return protocol_error(s, "unknown command");
	cmd = c->cmd;
	if ((cmd->states & s->state) == 0)
		return protocol_error(s, "command not valid in this state");
	if (session_split_args(line + kw_len, cmd->flags, argv, &argc) < 0 ||
	    argc < cmd->min_args || argc > cmd->max_args)
		return protocol_error(s, "bad arguments");
	return cmd->handler(s, c->mod_state, argc, argv);
}

static void
session_loop(struct postern_session *s)
{
	while (!s->ended && !s->io->failed) {
		enum pio_line_result r;
		char *line;
		size_t len;

		r = pio_read_line(s->io, &line, &len);
		if (r == PIO_LINE) {
			if (dispatch(s, line, len) == POSTERN_ERROR)
				break;
			/* A pipelined PASS leaves the password in the input
			 * buffer: wipe consumed bytes as we go. */
			explicit_bzero(line, len);
		} else if (r == PIO_TOO_LONG) {
			if (protocol_error(s, "line too long") == POSTERN_ERROR)
				break;
		} else if (r == PIO_TIMEOUT) {
			err(s, POSTERN_CODE_NONE, "idle timeout, closing");
			log_info("timeout: user=%s peer=%s",
				 s->user != NULL ? s->user : "-", s->peer.ip);
			break;
		} else {
			break; /* EOF or error: no UPDATE */
		}
	}
	pio_flush_last(s->io);
}

int
session_run(const struct server_conf *conf, struct pio *io,
	    const struct session_peer *peer, int send_greeting)
{
	struct postern_session s;
	int dropped;

	memset(&s, 0, sizeof(s));
	s.conf = conf;
	s.io = io;
	s.peer = *peer;
	s.state = SESSION_AUTHORIZATION;
	arena_init(&s.arena, SESSION_MEMORY_MAX);
	s.plaintext_allowed =
		s.tls || net_range_match(conf->plain_nets, conf->n_plain_nets,
					 (const struct sockaddr *)&peer->addr);
	io->read_timeout_ms = conf->login_timeout * 1000;
	if (peer->tls_mode == TLS_IMPLICIT) {
		char why[512];

		if (conf->tls == NULL ||
		    tls_start(io, conf->tls, why, sizeof(why)) < 0) {
			log_info("tls: peer=%s: %s", peer->ip,
				 conf->tls == NULL ? "not configured" : why);
			goto out;
		}
		s.tls = 1;
		s.plaintext_allowed = 1;
		send_greeting = 1;
	}
	if (send_greeting)
		ok(&s, "postern ready");

	session_loop(&s);
out:
	tls_end(io);

	if (s.box != NULL) {
		/* Ended without QUIT: nothing is deleted. */
		log_logout(&s);
		s.storage->desc->storage->close(s.box);
	}
	dropped = s.dropped_privileges;
	arena_wipe(&s.arena);
	explicit_bzero(&s, sizeof(s));
	return dropped;
}
