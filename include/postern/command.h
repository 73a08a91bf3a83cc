/*
 * Command rows: core commands (USER, RETR, ...) and module commands (TOP,
 * UIDL, ...) live in one table. A module adds a command by exporting rows.
 */
#ifndef POSTERN_COMMAND_H
#define POSTERN_COMMAND_H

struct postern_session;

/* Bits of postern_command.states. */
#define POSTERN_STATE_AUTHORIZATION 0x1u
#define POSTERN_STATE_TRANSACTION 0x2u

/* Bits of postern_command.flags. */
/* The whole rest of the line is one argument (PASS: spaces allowed). */
#define POSTERN_CMD_REST_OF_LINE 0x1u

/* Longest argument RFC 1939 allows (REST_OF_LINE arguments excepted). */
#define POSTERN_MAX_ARG_LEN 40
#define POSTERN_MAX_ARGS 4

struct postern_command {
	const char *name;  /* upper case, e.g. "TOP" */
	unsigned states;   /* POSTERN_STATE_* where it is allowed */
	unsigned char min_args, max_args;
	unsigned flags;    /* POSTERN_CMD_* */
	const char *capa;  /* its CAPA line ("TOP"), or NULL */
	/*
	 * Sends the whole reply through the api. argv[0..argc) are the
	 * arguments after the keyword (argv[argc] is NULL); their count
	 * and lengths were checked against the row. Returns POSTERN_OK (go
	 * on) or POSTERN_ERROR (close the session). mod is the module's
	 * state from init().
	 */
	int (*handler)(struct postern_session *s, void *mod, int argc,
		       const char *const *argv);
};

#endif
