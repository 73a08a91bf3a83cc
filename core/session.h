#ifndef POSTERN_SESSION_H
#define POSTERN_SESSION_H

#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

#include <postern/module.h>

#include "arena.h"
#include "params.h"

struct pio;
struct server_conf;
struct module_conf;

enum session_state {
	SESSION_AUTHORIZATION = POSTERN_STATE_AUTHORIZATION,
	SESSION_TRANSACTION = POSTERN_STATE_TRANSACTION,
};

/* Where a connection came from, as the master or inetd mode saw it. */
struct session_peer {
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char ip[INET6_ADDRSTRLEN];
	int port;
	char listener[64];
	int tls_mode; /* enum tls_mode of the listener */
};

struct postern_session {
	const struct server_conf *conf;
	struct pio *io;
	struct arena arena;
	struct session_peer peer;
	enum session_state state;
	int tls;
	int plaintext_allowed;
	int ended; /* close after the current reply */

	char user_arg[POSTERN_MAX_ARG_LEN + 1]; /* from USER */
	int have_user_arg;
	const char *user; /* after login */
	int dropped_privileges;
	unsigned auth_failures;
	unsigned protocol_errors;

	const struct module_conf *storage;
	void *box;
	struct postern_msg *msgs;
	unsigned count;
	unsigned char *deleted;

	unsigned retrieved;
	uint64_t retrieved_bytes;
	unsigned deleted_count;
};

/* The core's command rows (USER, PASS, ... CAPA); conf.c puts them in
 * front of the module rows in the one command table. */
extern const struct postern_command session_core_commands[];

/*
 * Runs one POP3 session on io until QUIT, EOF, timeout or error.
 * send_greeting: the master already greeted (0) or we must (1). Wipes
 * everything of the session before returning. Returns 1 when the process
 * dropped privileges (and so must not serve another session), else 0.
 */
int session_run(const struct server_conf *conf, struct pio *io,
		const struct session_peer *peer, int send_greeting);

/* Helpers shared with the services table (api.c); see api.h. */
int session_reply(struct postern_session *s, int ok,
		  enum postern_resp_code code, const char *fmt, va_list ap);
/* Replies -ERR and returns POSTERN_FAIL unless message n exists and is
 * not deleted (no messages outside TRANSACTION). */
int session_msg_check(struct postern_session *s, unsigned long long n);
int session_msg_arg(struct postern_session *s, const char *arg,
		    unsigned *n_r);
int session_msg_send(struct postern_session *s, unsigned n,
		     long long body_limit);

/*
 * Splits what follows a command keyword into arguments, in place: single
 * spaces separate them (runs are tolerated), each at most
 * POSTERN_MAX_ARG_LEN octets, at most POSTERN_MAX_ARGS; with
 * POSTERN_CMD_REST_OF_LINE the rest of the line is one argument. argv
 * needs POSTERN_MAX_ARGS + 1 slots. Returns 0, or -1 on bad arguments.
 */
int session_split_args(char *rest, unsigned flags, const char **argv,
		       int *argc_r);

/* Parses a POP3 message number ("1".."count"): digits only. -1 if bad. */
int session_parse_number(const char *arg, unsigned long long max,
			 unsigned long long *n_r);

/*
 * Expands a location template: a leading "~" to home, %u to the user,
 * %n / %d to the local part / domain of user@domain, %% to %. Returns a
 * string in session memory, or NULL with *error_r.
 */
const char *session_expand_location(struct postern_session *s,
				    const char *template, const char *user,
				    const char *home, const char **error_r);

#endif
