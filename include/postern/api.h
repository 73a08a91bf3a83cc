/*
 * The services table: everything a module may ask of the core. Modules
 * get a pointer to it in init() and must not reach the core any other
 * way. The table only grows at its end (see ABI change log in module.h);
 * check api->struct_size before using a member added after 1.0.
 */
#ifndef POSTERN_API_H
#define POSTERN_API_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The one result convention of every op and handler. */
enum postern_result {
	POSTERN_OK = 0,
	POSTERN_DECLINED = 1,  /* not mine: try the next module */
	POSTERN_FAIL = -1,     /* definite no (wrong password, bad input) */
	POSTERN_TEMPFAIL = -2, /* backend down: client sees [SYS/TEMP] */
	POSTERN_ERROR = -3,    /* unrecoverable: end the session */
	POSTERN_INUSE = -4,    /* mailbox locked by another session: [IN-USE] */
};

/* syslog(3) priorities, so the core can pass them to journald. */
enum postern_log_level {
	POSTERN_LOG_ERR = 3,
	POSTERN_LOG_WARNING = 4,
	POSTERN_LOG_NOTICE = 5,
	POSTERN_LOG_INFO = 6,
	POSTERN_LOG_DEBUG = 7,
};

/* RFC 2449 / RFC 3206 response codes the core may put in an -ERR. */
enum postern_resp_code {
	POSTERN_CODE_NONE = 0,
	POSTERN_CODE_AUTH,     /* [AUTH] */
	POSTERN_CODE_SYS_TEMP, /* [SYS/TEMP] */
	POSTERN_CODE_SYS_PERM, /* [SYS/PERM] */
	POSTERN_CODE_IN_USE,   /* [IN-USE] */
	POSTERN_CODE_LOGIN_DELAY, /* [LOGIN-DELAY] */
};

/* Opaque to modules. */
struct postern_conf;
struct postern_session;

/* What a command module may learn about message n of the open mailbox. */
struct postern_msg_info {
	uint64_t wire_size; /* octets RETR sends, CRLF, before dot-stuffing */
	const char *uid;    /* 1-70 chars of 0x21-0x7E; owned by the core */
	int deleted;        /* marked by DELE in this session */
};

#define POSTERN_PRINTF(f, a) __attribute__((format(printf, f, a)))

struct postern_api {
	uint16_t struct_size;

	/* Logging: one line, no trailing newline needed; modules prefix
	 * their own name ("passwd: ..."). Never log a password. */
	void (*log)(enum postern_log_level level, const char *fmt, ...)
		POSTERN_PRINTF(2, 3);

	/*
	 * Settings of the module's own config group, already validated
	 * against its table, so a lookup of a name in the table never
	 * fails: an unset key yields its default (NULL / 0 / false when
	 * the table gives none). Strings live as long as the config.
	 */
	const char *(*conf_string)(const struct postern_conf *conf,
				   const char *name);
	long long (*conf_int)(const struct postern_conf *conf,
			      const char *name);
	int (*conf_bool)(const struct postern_conf *conf, const char *name);
	size_t (*conf_list_count)(const struct postern_conf *conf,
				  const char *name);
	const char *(*conf_list_item)(const struct postern_conf *conf,
				      const char *name, size_t i);

	/*
	 * Session memory: freed and wiped (explicit_bzero) by the core when
	 * the session ends, so nothing of one user reaches the next session
	 * a reused worker serves. Never returns NULL (the session ends on
	 * exhaustion of its memory limit).
	 */
	void *(*session_alloc)(struct postern_session *s, size_t size);
	char *(*session_strndup)(struct postern_session *s, const char *str,
				 size_t len);
	/* The logged-in user, or NULL in AUTHORIZATION. */
	const char *(*session_user)(struct postern_session *s);
	/* Printable peer address ("127.0.0.1", "::1"). */
	const char *(*session_peer)(struct postern_session *s);

	/*
	 * Replies. reply() sends one status line: "+OK text" when ok, else
	 * "-ERR [CODE] text" (no space when text is empty). write_line()
	 * sends one line of a multi-line response (the core dot-stuffs it)
	 * and write_end() its final ".". Each returns POSTERN_OK, or
	 * POSTERN_ERROR when the client is gone (return that from the
	 * handler).
	 */
	int (*reply)(struct postern_session *s, int ok,
		     enum postern_resp_code code, const char *fmt, ...)
		POSTERN_PRINTF(4, 5);
	int (*write_line)(struct postern_session *s, const char *fmt, ...)
		POSTERN_PRINTF(2, 3);
	int (*write_end)(struct postern_session *s);

	/*
	 * Mailbox access for command modules (TRANSACTION state only).
	 * Messages are numbered from 1. msg_arg() parses a message-number
	 * argument; on any problem (not a number, no such message, deleted)
	 * it sends the -ERR itself and returns POSTERN_FAIL, so the handler
	 * just returns POSTERN_OK.
	 */
	unsigned (*msg_count)(struct postern_session *s);
	int (*msg_info)(struct postern_session *s, unsigned n,
			struct postern_msg_info *info_r);
	int (*msg_arg)(struct postern_session *s, const char *arg,
		       unsigned *n_r);
	/*
	 * Sends the whole reply for message n: the "+OK" status line, then
	 * the message with CRLF line endings, dot-stuffed, ending with ".".
	 * body_lines < 0 sends it whole (RETR); otherwise the header, the
	 * blank line and at most body_lines lines of the body (TOP). The
	 * message is opened before anything is sent, so a message that
	 * vanished gets a clean -ERR (sent by the core) and POSTERN_FAIL:
	 * the session goes on. POSTERN_ERROR: failure mid-stream (the
	 * client saw part of it), end the session. POSTERN_OK: sent.
	 */
	int (*msg_send)(struct postern_session *s, unsigned n,
			long long body_lines);

	/*
	 * Wire size of raw bytes (what the core's writer would send before
	 * dot-stuffing, including the CRLF it adds when the message does
	 * not end in a newline). Storage modules use it so the size they
	 * report and the bytes the core sends always agree. Reads [offset,
	 * offset+length) of fd with pread. flags: POSTERN_MSG_* below.
	 */
	int (*wire_size_fd)(int fd, off_t offset, uint64_t length,
			    unsigned flags, uint64_t *size_r);

	/* --- ABI 1.1: check struct_size before using what follows. --- */

	/*
	 * Scratch memory for the length of one call into the module, for
	 * work areas that would otherwise be mapped and faulted in per
	 * call (crypt_rn's struct crypt_data): at least size bytes, at most
	 * POSTERN_SCRATCH_SIZE, aligned for any type, zero-filled. It is
	 * the same area for every caller in a process, so it is yours only
	 * until your function returns, and before returning you must wipe
	 * (explicit_bzero) whatever you wrote: the next caller finds zeros
	 * and no secret stays behind. The core gives its pages back when
	 * the session goes idle. NULL when size is larger or memory is
	 * short: fall back to memory of your own.
	 */
	void *(*scratch)(size_t size);
};

#define POSTERN_SCRATCH_SIZE (64 * 1024)

/* Tells the core's writer to turn mboxrd ">From " quoting back into
 * "From " (one '>' less on lines matching ^>+From ). */
#define POSTERN_MSG_FROM_UNQUOTE 0x1u

#endif
