/*
 * Dovecot-style passwd-file: parsing, an in-memory table and password
 * checking. Knows nothing of the core beyond the result codes, so the unit
 * tests link it alone.
 *
 * Line format (fields after the password are optional):
 *   user:password:uid:gid:gecos:home:shell:extra_fields
 * extra_fields is the rest of the line: space-separated key=value, of
 * which mail=STORAGE:PATH (or userdb_mail=) chooses storage and location.
 */
#ifndef POSTERN_PASSWD_FILE_H
#define POSTERN_PASSWD_FILE_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include <postern/api.h>

/* A file larger than this is refused rather than read into memory. */
#define PASSWD_FILE_MAX_SIZE (64u * 1024 * 1024)
/* Loading stops after this many bad lines (a binary file is not a list
 * of thousands of useful errors). */
#define PASSWD_FILE_MAX_ERRORS 20
/* Room for one "PATH:LINE: message" text. */
#define PASSWD_ERROR_SIZE 512

/* A byte range of the table's copy of the file; not NUL-terminated. */
struct passwd_str {
	const char *ptr;
	size_t len;
};

enum passwd_scheme {
	/* Empty password, "*" or "!...": the account exists but no
	 * password opens it. */
	PASSWD_SCHEME_LOCKED = 0,
	PASSWD_SCHEME_PLAIN,   /* {PLAIN}secret */
	/* crypt(3) strings, bare or after {CRYPT}, {SHA512-CRYPT},
	 * {SHA256-CRYPT}, {BLF-CRYPT}. */
	PASSWD_SCHEME_YESCRYPT, /* $y$ */
	PASSWD_SCHEME_SHA512,   /* $6$ */
	PASSWD_SCHEME_SHA256,   /* $5$ */
	PASSWD_SCHEME_BCRYPT,   /* $2b$, $2y$ */
	PASSWD_SCHEME_COUNT
};

struct passwd_entry {
	struct passwd_str user;
	/* The secret without its {SCHEME} prefix: the plaintext for PLAIN,
	 * the whole crypt string otherwise. */
	struct passwd_str password;
	enum passwd_scheme scheme;
	uid_t uid; /* (uid_t)-1: not given */
	gid_t gid; /* (gid_t)-1: not given */
	struct passwd_str home;     /* len 0: not given */
	struct passwd_str storage;  /* from mail=; len 0: not given */
	struct passwd_str location; /* from mail=; len 0: not given */
	unsigned line;
};

/* What identifies one version of the file: a reload happens when any of
 * it changes. */
struct passwd_file_id {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

struct passwd_table;

/*
 * Parses one line (without its '\n'; a trailing '\r' is ignored).
 * Returns 1 and fills *entry_r, whose strings point into line; 0 for a
 * comment or blank line; -1 with a message (no file or line number) in
 * error_r. uid/gid given as names are resolved with getpwnam_r/getgrnam_r.
 */
int passwd_line_parse(const char *line, size_t len,
		      struct passwd_entry *entry_r, char *error_r,
		      size_t error_size);

/*
 * Reads path into a new table. The file must be a regular file that is
 * neither group- nor world-writable. Any bad line or a duplicate user
 * fails the whole load: a half-read user list would lock people out or,
 * worse, let a stale entry win. Returns 0 and *table_r (free it with
 * passwd_table_free), or -1 with the first problem in error_r (with
 * "(and N more)" when there were others); report, when not NULL, is
 * called with every problem in file order ("PATH:LINE: message", or
 * "passwd-file PATH: message" for the file as a whole).
 */
int passwd_table_load(const char *path, struct passwd_table **table_r,
		      void (*report)(void *ctx, const char *msg),
		      void *report_ctx, char *error_r, size_t error_size);
/* Wipes (the file may hold {PLAIN} secrets) and frees; NULLs *table. */
void passwd_table_free(struct passwd_table **table);

size_t passwd_table_count(const struct passwd_table *table);
/* The identity of the file the table was read from. */
const struct passwd_file_id *passwd_table_file_id(
	const struct passwd_table *table);
/* The scheme an unknown user's dummy check runs: the file's most common. */
enum passwd_scheme passwd_table_dummy_scheme(const struct passwd_table *table);

/* Entry of user (exact bytes), or NULL. O(1). The entry lives as long as
 * the table. */
const struct passwd_entry *passwd_table_lookup(
	const struct passwd_table *table, const char *user, size_t user_len);

/*
 * Checks pass for user. Every outcome costs one hash: the entry's own for
 * crypt entries; for an unknown or malformed name, a locked account or a
 * {PLAIN} entry, one of the file's most common scheme (made at load with
 * the same cost parameters). Comparisons run in constant time.
 * Returns POSTERN_OK with *entry_r, POSTERN_FAIL (unknown user, bad name,
 * locked, wrong password: deliberately one code), or POSTERN_TEMPFAIL when
 * crypt itself failed (errno set). *entry_r is set to the user's entry
 * when there is one, even on failure, so the caller can log why.
 * work: a zero-filled struct crypt_data to hash in, left zero-filled
 * again (api->scratch), or NULL to map one for the hash and unmap it.
 */
int passwd_table_verify(const struct passwd_table *table, const char *user,
			size_t user_len, const char *pass, void *work,
			const struct passwd_entry **entry_r);

/* A user name the table could hold: non-empty, no control characters,
 * no ':'. */
int passwd_user_name_valid(const char *user, size_t len);

/* Compares in time that depends only on a_len: a is the untrusted input,
 * b the secret. Returns 1 when equal. */
int passwd_ct_equal(const char *a, size_t a_len, const char *b, size_t b_len);

/* stat()s path. Returns 0, or -1 with errno. */
int passwd_file_id_get(const char *path, struct passwd_file_id *id_r);
int passwd_file_id_equal(const struct passwd_file_id *a,
			 const struct passwd_file_id *b);

#endif
