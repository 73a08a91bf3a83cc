/*
 * Dovecot passwd-file reader and password checker. The file is read once
 * into one buffer; entries are (ptr, len) ranges of it, found through an
 * open-addressing hash table. Nothing here logs: problems go back as text.
 */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "passwd-file.h"

/* user:password:uid:gid:gecos:home:shell:extra_fields */
enum {
	FIELD_USER,
	FIELD_PASSWORD,
	FIELD_UID,
	FIELD_GID,
	FIELD_GECOS,
	FIELD_HOME,
	FIELD_SHELL,
	FIELD_EXTRA,
	FIELD_COUNT
};

/* Longest uid/gid name we resolve; longer is an error, not a truncation. */
#define ID_NAME_MAX 255
/* getpwnam_r/getgrnam_r scratch space; ERANGE past it is an error. */
#define NSS_BUF_SIZE 16384
/* The phrase a dummy hash is made of; never compared to anything. */
#define DUMMY_PHRASE "postern-dummy-password"

struct passwd_table {
	char *buf; /* the file's bytes; entries point into it */
	size_t buf_size;
	struct passwd_entry *entries;
	size_t n_entries;
	uint32_t *slots; /* entry index + 1; 0 = empty */
	size_t slot_mask;
	struct passwd_file_id id;

	/* What an unknown user is checked against (see make_dummy). */
	enum passwd_scheme dummy_scheme;
	char dummy[CRYPT_OUTPUT_SIZE];
	size_t dummy_len;
};

/* Dovecot's scheme names (case-insensitive) and what follows them. */
static const struct {
	const char *name;
	enum passwd_scheme scheme; /* LOCKED here: any crypt method */
} scheme_prefixes[] = {
	{ "PLAIN", PASSWD_SCHEME_PLAIN },
	{ "CRYPT", PASSWD_SCHEME_LOCKED },
	{ "SHA512-CRYPT", PASSWD_SCHEME_SHA512 },
	{ "SHA256-CRYPT", PASSWD_SCHEME_SHA256 },
	{ "BLF-CRYPT", PASSWD_SCHEME_BCRYPT },
};

static int
is_crypt_scheme(enum passwd_scheme scheme)
{
	return scheme >= PASSWD_SCHEME_YESCRYPT && scheme < PASSWD_SCHEME_COUNT;
}

static int
is_b64(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '/';
}

static int
all_b64(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (!is_b64(p[i]))
			return 0;
	}
	return 1;
}

static int
all_digits(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return 0;
	}
	return len > 0;
}

static int
has_ctl(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c < 0x20 || c == 0x7f)
			return 1;
	}
	return 0;
}

static int
str_caseeq(const char *p, size_t len, const char *lit)
{
	size_t n = strlen(lit);

	if (len != n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		if (c != lit[i])
			return 0;
	}
	return 1;
}

static int
fail(char *error_r, size_t error_size, const char *fmt, ...)
	POSTERN_PRINTF(3, 4);

static int
fail(char *error_r, size_t error_size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	/* Truncating a message is harmless; it only ever gets shorter. */
	(void)vsnprintf(error_r, error_size, fmt, ap);
	va_end(ap);
	return -1;
}

int
passwd_user_name_valid(const char *user, size_t len)
{
	if (len == 0)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)user[i];
		if (c <= 0x20 || c == 0x7f || c == ':')
			return 0;
	}
	return 1;
}

int
passwd_ct_equal(const char *a, size_t a_len, const char *b, size_t b_len)
{
	/* Walks all of a whatever b holds: time depends on the input's
	 * length only. Past b's end, b[0] stands in (the length check
	 * already failed), chosen with a mask rather than a branch. */
	size_t diff = a_len ^ b_len;

	if (b_len == 0)
		return a_len == 0;
	for (size_t i = 0; i < a_len; i++) {
		size_t in = (size_t)0 - (size_t)(i < b_len);
		diff |= (unsigned char)a[i] ^ (unsigned char)b[i & in];
	}
	return diff == 0;
}

/*
 * Checks a crypt string's shape, so that a typo is a load error instead
 * of a user who can never log in. Hashing every entry at load would prove
 * more but cost a second per 20 yescrypt users.
 */
static int
crypt_parse(const char *p, size_t len, enum passwd_scheme *scheme_r,
	    char *error_r, size_t error_size)
{
	/* $2y$ is what Dovecot's BLF-CRYPT writes; $2a$ is older bcrypt. */
	static const struct {
		const char *prefix;
		enum passwd_scheme scheme;
	} methods[] = {
		{ "$y$", PASSWD_SCHEME_YESCRYPT },
		{ "$6$", PASSWD_SCHEME_SHA512 },
		{ "$5$", PASSWD_SCHEME_SHA256 },
		{ "$2b$", PASSWD_SCHEME_BCRYPT },
		{ "$2y$", PASSWD_SCHEME_BCRYPT },
		{ "$2a$", PASSWD_SCHEME_BCRYPT },
	};
	const char *end = p + len, *part[4], *q = NULL;
	size_t part_len[4], n_parts = 0, hash_len, prefix_len = 0;

	if (len >= CRYPT_OUTPUT_SIZE)
		return fail(error_r, error_size, "crypt hash too long");
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		prefix_len = strlen(methods[i].prefix);
		if (len >= prefix_len &&
		    memcmp(p, methods[i].prefix, prefix_len) == 0) {
			*scheme_r = methods[i].scheme;
			q = p + prefix_len;
			break;
		}
	}
	if (q == NULL)
		return fail(error_r, error_size,
			    "unsupported crypt method (use $y$, $6$, $5$ or "
			    "$2b$)");

	/* Split the rest at '$'. */
	while (n_parts < 4) {
		const char *d = memchr(q, '$', (size_t)(end - q));
		part[n_parts] = q;
		part_len[n_parts] = (size_t)((d != NULL ? d : end) - q);
		n_parts++;
		if (d == NULL)
			break;
		q = d + 1;
	}
	if (n_parts == 4)
		goto bad;

	switch (*scheme_r) {
	case PASSWD_SCHEME_YESCRYPT:
		/* $y$PARAMS$SALT$HASH */
		if (n_parts != 3 || part_len[0] == 0 || part_len[1] == 0 ||
		    part_len[2] != 43 || !all_b64(part[0], part_len[0]) ||
		    !all_b64(part[1], part_len[1]) ||
		    !all_b64(part[2], part_len[2]))
			goto bad;
		break;
	case PASSWD_SCHEME_SHA512:
	case PASSWD_SCHEME_SHA256:
		/* $6$[rounds=N$]SALT$HASH */
		hash_len = *scheme_r == PASSWD_SCHEME_SHA512 ? 86 : 43;
		if (n_parts == 3) {
			if (part_len[0] <= 7 ||
			    memcmp(part[0], "rounds=", 7) != 0 ||
			    !all_digits(part[0] + 7, part_len[0] - 7))
				goto bad;
			part[0] = part[1], part_len[0] = part_len[1];
			part[1] = part[2], part_len[1] = part_len[2];
		} else if (n_parts != 2) {
			goto bad;
		}
		if (part_len[0] == 0 || part_len[0] > 16 ||
		    part_len[1] != hash_len || !all_b64(part[1], part_len[1]))
			goto bad;
		break;
	case PASSWD_SCHEME_BCRYPT:
		/* $2b$NN$ + 22 salt + 31 hash characters */
		if (n_parts != 2 || part_len[0] != 2 ||
		    !all_digits(part[0], 2) || part_len[1] != 53 ||
		    !all_b64(part[1], part_len[1]))
			goto bad;
		break;
	default:
		goto bad;
	}
	return 0;
bad:
	return fail(error_r, error_size, "malformed %.*s crypt hash",
		    (int)prefix_len, p);
}

static int
password_parse(struct passwd_str pw, struct passwd_entry *e, char *error_r,
	       size_t error_size)
{
	const char *p = pw.ptr;
	size_t len = pw.len;

	if (len == 0 || p[0] == '*' || p[0] == '!') {
		e->scheme = PASSWD_SCHEME_LOCKED;
		e->password = pw;
		return 0;
	}
	if (p[0] == '{') {
		const char *close = memchr(p, '}', len);
		enum passwd_scheme want, got;
		size_t name_len, i;

		if (close == NULL)
			return fail(error_r, error_size,
				    "password scheme has no closing '}'");
		name_len = (size_t)(close - p - 1);
		for (i = 0; i < sizeof(scheme_prefixes) /
				    sizeof(scheme_prefixes[0]); i++) {
			if (str_caseeq(p + 1, name_len,
				       scheme_prefixes[i].name))
				break;
		}
		if (i == sizeof(scheme_prefixes) / sizeof(scheme_prefixes[0]))
			return fail(error_r, error_size,
				    "unknown password scheme '{%.*s}'",
				    (int)(name_len > 32 ? 32 : name_len),
				    p + 1);
		want = scheme_prefixes[i].scheme;
		e->password.ptr = close + 1;
		e->password.len = len - name_len - 2;
		if (want == PASSWD_SCHEME_PLAIN) {
			if (e->password.len == 0)
				return fail(error_r, error_size,
					    "empty {PLAIN} password");
			e->scheme = PASSWD_SCHEME_PLAIN;
			return 0;
		}
		if (crypt_parse(e->password.ptr, e->password.len, &got,
				error_r, error_size) < 0)
			return -1;
		if (want != PASSWD_SCHEME_LOCKED && want != got)
			return fail(error_r, error_size,
				    "{%s} does not match its hash's method",
				    scheme_prefixes[i].name);
		e->scheme = got;
		return 0;
	}
	if (p[0] == '$') {
		e->password = pw;
		return crypt_parse(p, len, &e->scheme, error_r, error_size);
	}
	/* Dovecot would read this as DES crypt; taking it as plaintext
	 * would be a guess, and a bad one either way. */
	return fail(error_r, error_size,
		    "password is neither a crypt hash ($y$, $6$, $5$, $2b$) "
		    "nor {PLAIN}, {CRYPT}, {SHA512-CRYPT}, {BLF-CRYPT}");
}

/* A user or group name as useradd(8) allows one: a letter or '_' first,
 * then letters, digits, '_', '-', '.' (and a trailing '$'). */
static int
id_name_valid(const char *p, size_t len)
{
	if (!((p[0] >= 'a' && p[0] <= 'z') || (p[0] >= 'A' && p[0] <= 'Z') ||
	      p[0] == '_'))
		return 0;
	for (size_t i = 1; i < len; i++) {
		char c = p[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '-' ||
		      c == '.' || (c == '$' && i == len - 1)))
			return 0;
	}
	return 1;
}

/* uid and gid fields: empty, a number, or a name to resolve. */
static int
id_parse(struct passwd_str f, int is_gid, uint32_t *id_r, char *error_r,
	 size_t error_size)
{
	const char *what = is_gid ? "gid" : "uid";
	char name[ID_NAME_MAX + 1], *nss_buf;
	int ret;

	*id_r = UINT32_MAX;
	if (f.len == 0)
		return 0;
	if (all_digits(f.ptr, f.len)) {
		uint64_t v = 0;
		for (size_t i = 0; i < f.len; i++) {
			v = v * 10 + (uint64_t)(f.ptr[i] - '0');
			if (v >= UINT32_MAX)
				return fail(error_r, error_size,
					    "%s %.*s out of range", what,
					    (int)(f.len > 20 ? 20 : f.len),
					    f.ptr);
		}
		*id_r = (uint32_t)v;
	} else {
		if (f.len > ID_NAME_MAX || !id_name_valid(f.ptr, f.len))
			return fail(error_r, error_size,
				    "invalid %s '%.*s'", what,
				    (int)(f.len > 32 ? 32 : f.len), f.ptr);
		memcpy(name, f.ptr, f.len);
		name[f.len] = '\0';
		nss_buf = malloc(NSS_BUF_SIZE);
		if (nss_buf == NULL)
			return fail(error_r, error_size, "out of memory");
		if (is_gid) {
			struct group gr, *grp = NULL;
			ret = getgrnam_r(name, &gr, nss_buf, NSS_BUF_SIZE,
					 &grp);
			if (grp != NULL)
				*id_r = (uint32_t)grp->gr_gid;
		} else {
			struct passwd pwd, *pwp = NULL;
			ret = getpwnam_r(name, &pwd, nss_buf, NSS_BUF_SIZE,
					 &pwp);
			if (pwp != NULL)
				*id_r = (uint32_t)pwp->pw_uid;
		}
		free(nss_buf);
		if (*id_r == UINT32_MAX)
			return fail(error_r, error_size, "%s '%s': %s", what,
				    name,
				    ret != 0 ? strerror(ret)
					     : (is_gid ? "no such group"
						       : "no such user"));
	}
	/* The core refuses uid 0 at every login; say so now instead. */
	if (!is_gid && *id_r == 0)
		return fail(error_r, error_size,
			    "uid 0 (root) is not allowed");
	return 0;
}

/* mail=STORAGE:PATH (Dovecot's mail location, without its options). */
static int
mail_parse(const char *v, size_t len, struct passwd_entry *e,
	   char *error_r, size_t error_size)
{
	const char *colon = memchr(v, ':', len);
	size_t name_len;

	if (e->storage.len != 0)
		return fail(error_r, error_size, "mail= given twice");
	if (colon == NULL || colon == v)
		return fail(error_r, error_size,
			    "mail= needs STORAGE:PATH "
			    "(e.g. maildir:~/Maildir)");
	name_len = (size_t)(colon - v);
	for (size_t i = 0; i < name_len; i++) {
		char c = v[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_'))
			return fail(error_r, error_size,
				    "mail=: bad storage name '%.*s'",
				    (int)(name_len > 32 ? 32 : name_len), v);
	}
	e->storage.ptr = v;
	e->storage.len = name_len;
	e->location.ptr = colon + 1;
	e->location.len = len - name_len - 1;
	if (e->location.len == 0)
		return fail(error_r, error_size, "mail=: empty path");
	/* Dovecot puts options after another ':' (INDEX=, LAYOUT=); they
	 * would silently become part of the path here. */
	if (memchr(e->location.ptr, ':', e->location.len) != NULL)
		return fail(error_r, error_size,
			    "mail=: location options (':KEY=VALUE') are not "
			    "supported");
	return 0;
}

/*
 * Extra fields that change who may log in (allow_nets, nologin, ...)
 * are errors rather than ignored: ignoring one would silently widen
 * access. userdb_* fields only shape the mail side, so those postern has
 * no use for (quota rules and such) are skipped.
 */
static int
extra_parse(struct passwd_str f, struct passwd_entry *e, char *error_r,
	    size_t error_size)
{
	const char *p = f.ptr, *end = f.ptr + f.len;

	while (p < end) {
		const char *tok, *eq;
		size_t tok_len, key_len;

		if (*p == ' ' || *p == '\t') {
			p++;
			continue;
		}
		tok = p;
		while (p < end && *p != ' ' && *p != '\t')
			p++;
		tok_len = (size_t)(p - tok);
		eq = memchr(tok, '=', tok_len);
		key_len = eq != NULL ? (size_t)(eq - tok) : tok_len;
		if (eq != NULL &&
		    (str_caseeq(tok, key_len, "MAIL") ||
		     str_caseeq(tok, key_len, "USERDB_MAIL"))) {
			if (mail_parse(eq + 1, tok_len - key_len - 1, e,
				       error_r, error_size) < 0)
				return -1;
		} else if (str_caseeq(tok, key_len, "USERDB_UID") ||
			   str_caseeq(tok, key_len, "USERDB_GID") ||
			   str_caseeq(tok, key_len, "USERDB_HOME")) {
			return fail(error_r, error_size,
				    "extra field '%.*s': use the uid, gid and "
				    "home fields",
				    (int)key_len, tok);
		} else if (key_len > 7 && str_caseeq(tok, 7, "USERDB_")) {
			continue;
		} else {
			return fail(error_r, error_size,
				    "unsupported extra field '%.*s'",
				    (int)(key_len > 32 ? 32 : key_len), tok);
		}
	}
	return 0;
}

int
passwd_line_parse(const char *line, size_t len, struct passwd_entry *entry_r,
		  char *error_r, size_t error_size)
{
	struct passwd_str f[FIELD_COUNT];
	size_t n_fields = 0, i;
	const char *p = line, *end;
	uint32_t id;

	memset(entry_r, 0, sizeof(*entry_r));
	entry_r->uid = (uid_t)-1;
	entry_r->gid = (gid_t)-1;

	if (len > 0 && line[len - 1] == '\r')
		len--;
	end = line + len;
	for (i = 0; i < len && (line[i] == ' ' || line[i] == '\t'); i++)
		;
	if (i == len || line[i] == '#')
		return 0;
	if (memchr(line, '\0', len) != NULL)
		return fail(error_r, error_size, "NUL byte in line");

	/* Split at ':'; the last field is the rest of the line, since
	 * mail=maildir:PATH holds a ':' itself. */
	while (n_fields < FIELD_COUNT) {
		const char *c = n_fields == FIELD_EXTRA
					? NULL
					: memchr(p, ':', (size_t)(end - p));
		f[n_fields].ptr = p;
		f[n_fields].len = (size_t)((c != NULL ? c : end) - p);
		n_fields++;
		if (c == NULL)
			break;
		p = c + 1;
	}
	for (i = n_fields; i < FIELD_COUNT; i++) {
		f[i].ptr = end;
		f[i].len = 0;
	}

	if (f[FIELD_USER].len == 0)
		return fail(error_r, error_size, "empty user name");
	if (!passwd_user_name_valid(f[FIELD_USER].ptr, f[FIELD_USER].len))
		return fail(error_r, error_size,
			    "user name contains white space or control "
			    "characters");
	if (n_fields < 2)
		return fail(error_r, error_size,
			    "no password field (need at least user:password)");
	entry_r->user = f[FIELD_USER];

	if (password_parse(f[FIELD_PASSWORD], entry_r, error_r,
			   error_size) < 0)
		return -1;
	if (id_parse(f[FIELD_UID], 0, &id, error_r, error_size) < 0)
		return -1;
	entry_r->uid = id == UINT32_MAX ? (uid_t)-1 : (uid_t)id;
	if (id_parse(f[FIELD_GID], 1, &id, error_r, error_size) < 0)
		return -1;
	entry_r->gid = id == UINT32_MAX ? (gid_t)-1 : (gid_t)id;

	/* gecos and shell mean nothing to a POP3 server. */
	if (f[FIELD_HOME].len != 0) {
		if (f[FIELD_HOME].ptr[0] != '/')
			return fail(error_r, error_size,
				    "home must be an absolute path");
		if (has_ctl(f[FIELD_HOME].ptr, f[FIELD_HOME].len))
			return fail(error_r, error_size,
				    "control character in home");
		entry_r->home = f[FIELD_HOME];
	}
	if (has_ctl(f[FIELD_EXTRA].ptr, f[FIELD_EXTRA].len)) {
		/* Tabs separate like spaces; other controls are junk. */
		for (i = 0; i < f[FIELD_EXTRA].len; i++) {
			unsigned char c = (unsigned char)f[FIELD_EXTRA].ptr[i];
			if ((c < 0x20 && c != '\t') || c == 0x7f)
				return fail(error_r, error_size,
					    "control character in extra "
					    "fields");
		}
	}
	if (extra_parse(f[FIELD_EXTRA], entry_r, error_r, error_size) < 0)
		return -1;
	return 1;
}

/* FNV-1a: the file is the operator's, so no flooding to defend against. */
static uint64_t
name_hash(const char *p, size_t len)
{
	uint64_t h = 14695981039346656037ull;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)p[i];
		h *= 1099511628211ull;
	}
	return h;
}

const struct passwd_entry *
passwd_table_lookup(const struct passwd_table *table, const char *user,
		    size_t user_len)
{
	size_t i = (size_t)name_hash(user, user_len) & table->slot_mask;

	for (;; i = (i + 1) & table->slot_mask) {
		uint32_t slot = table->slots[i];
		const struct passwd_entry *e;

		if (slot == 0)
			return NULL;
		e = &table->entries[slot - 1];
		if (e->user.len == user_len &&
		    memcmp(e->user.ptr, user, user_len) == 0)
			return e;
	}
}

/* Inserts entry idx; returns the entry already holding its name, if any. */
static const struct passwd_entry *
table_insert(struct passwd_table *table, size_t idx)
{
	const struct passwd_entry *e = &table->entries[idx];
	size_t i = (size_t)name_hash(e->user.ptr, e->user.len) &
		   table->slot_mask;

	for (;; i = (i + 1) & table->slot_mask) {
		uint32_t slot = table->slots[i];

		if (slot == 0) {
			table->slots[i] = (uint32_t)idx + 1;
			return NULL;
		}
		if (table->entries[slot - 1].user.len == e->user.len &&
		    memcmp(table->entries[slot - 1].user.ptr, e->user.ptr,
			   e->user.len) == 0)
			return &table->entries[slot - 1];
	}
}

/*
 * crypt_rn's 32 KB work area. The module hashes in the core's scratch
 * area (api->scratch), resident while the worker is busy, so a login
 * faults in no page for it; without one, a mapping made for the hash and
 * unmapped after it. Either way nothing derived from the password stays:
 * the scratch area is wiped, the mapping is gone. Both start zeroed, as
 * crypt_rn wants its area on first use.
 */
static struct crypt_data *
work_area_get(void *work)
{
	void *p;

	if (work != NULL)
		return work;
	p = mmap(NULL, sizeof(struct crypt_data), PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static void
work_area_put(struct crypt_data *cd, void *work)
{
	if (cd == work)
		explicit_bzero(cd, sizeof(*cd));
	else if (cd != NULL)
		munmap(cd, sizeof(*cd));
}

/*
 * Hashes pass with setting. Returns 1 when the result equals the
 * setting (a whole stored hash), 0 when not, -1 with errno when crypt
 * failed. The work area, which holds the phrase, is wiped either way.
 */
static int
crypt_check(const char *setting_ptr, size_t setting_len, const char *pass,
	    void *work)
{
	char setting[CRYPT_OUTPUT_SIZE];
	struct crypt_data *cd;
	const char *out;
	int ret, saved_errno, too_long = 0;

	if (setting_len >= sizeof(setting)) {
		errno = EINVAL;
		return -1;
	}
	memcpy(setting, setting_ptr, setting_len);
	setting[setting_len] = '\0';
	/* crypt_rn refuses longer phrases (ERANGE); no stored password
	 * can be one, so hash an empty phrase to keep the cost. */
	if (strlen(pass) >= CRYPT_MAX_PASSPHRASE_SIZE) {
		pass = "";
		too_long = 1;
	}
	cd = work_area_get(work);
	out = cd != NULL ? crypt_rn(pass, setting, cd, sizeof(*cd)) : NULL;
	saved_errno = errno;
	if (out == NULL)
		ret = -1;
	else
		ret = passwd_ct_equal(out, strlen(out), setting_ptr,
				      setting_len);
	if (too_long)
		ret = 0;
	work_area_put(cd, work);
	explicit_bzero(setting, sizeof(setting));
	errno = saved_errno;
	return ret;
}

/* Runs the check an unknown user would have cost; the result is never
 * used. */
static void
dummy_check(const struct passwd_table *table, const char *pass, void *work)
{
	int saved_errno = errno;

	if (is_crypt_scheme(table->dummy_scheme))
		(void)crypt_check(table->dummy, table->dummy_len, pass, work);
	else if (table->dummy_scheme == PASSWD_SCHEME_PLAIN)
		(void)passwd_ct_equal(pass, strlen(pass), table->dummy,
				      table->dummy_len);
	errno = saved_errno;
}

int
passwd_table_verify(const struct passwd_table *table, const char *user,
		    size_t user_len, const char *pass, void *work,
		    const struct passwd_entry **entry_r)
{
	const struct passwd_entry *e = NULL;
	int match;

	if (passwd_user_name_valid(user, user_len))
		e = passwd_table_lookup(table, user, user_len);
	*entry_r = e;

	if (e != NULL && is_crypt_scheme(e->scheme)) {
		match = crypt_check(e->password.ptr, e->password.len, pass,
				    work);
		if (match < 0)
			return POSTERN_TEMPFAIL;
		return match ? POSTERN_OK : POSTERN_FAIL;
	}
	/* Unknown, invalid, locked or {PLAIN}: pay the usual hash, so
	 * none of them answers faster than a real user's wrong password. */
	dummy_check(table, pass, work);
	if (e != NULL && e->scheme == PASSWD_SCHEME_PLAIN &&
	    passwd_ct_equal(pass, strlen(pass), e->password.ptr,
			    e->password.len))
		return POSTERN_OK;
	return POSTERN_FAIL;
}

/*
 * The dummy: a hash of the file's most common scheme, made from the first
 * entry of that scheme so it has the same cost parameters (rounds,
 * yescrypt N) its users have. Ties go to the dearer scheme.
 */
static int
make_dummy(struct passwd_table *table, const char *path, char *error_r,
	   size_t error_size)
{
	static const enum passwd_scheme order[] = {
		PASSWD_SCHEME_YESCRYPT, PASSWD_SCHEME_BCRYPT,
		PASSWD_SCHEME_SHA512,   PASSWD_SCHEME_SHA256,
		PASSWD_SCHEME_PLAIN,
	};
	size_t count[PASSWD_SCHEME_COUNT] = { 0 }, best = 0;
	const struct passwd_entry *model = NULL;
	struct crypt_data *cd;
	const char *out;

	for (size_t i = 0; i < table->n_entries; i++)
		count[table->entries[i].scheme]++;
	table->dummy_scheme = PASSWD_SCHEME_LOCKED;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		if (count[order[i]] > best) {
			best = count[order[i]];
			table->dummy_scheme = order[i];
		}
	}
	if (table->dummy_scheme == PASSWD_SCHEME_PLAIN) {
		static const char plain[] = "postern-dummy-plain-secret";
		memcpy(table->dummy, plain, sizeof(plain));
		table->dummy_len = sizeof(plain) - 1;
		return 0;
	}
	if (table->dummy_scheme == PASSWD_SCHEME_LOCKED)
		return 0; /* nobody can log in: nothing to hide */

	for (size_t i = 0; model == NULL; i++) {
		if (table->entries[i].scheme == table->dummy_scheme)
			model = &table->entries[i];
	}
	memcpy(table->dummy, model->password.ptr, model->password.len);
	table->dummy[model->password.len] = '\0';
	cd = work_area_get(NULL);
	out = cd != NULL ? crypt_rn(DUMMY_PHRASE, table->dummy, cd, sizeof(*cd))
			 : NULL;
	if (out == NULL || strlen(out) >= sizeof(table->dummy)) {
		int e = errno;

		work_area_put(cd, NULL);
		return fail(error_r, error_size,
			    "%s:%u: crypt rejects this hash: %s", path,
			    model->line, strerror(e));
	}
	table->dummy_len = strlen(out);
	memcpy(table->dummy, out, table->dummy_len + 1);
	work_area_put(cd, NULL);
	return 0;
}

static int
read_all(int fd, const char *path, const struct stat *st, char **buf_r,
	 size_t *size_r, char *error_r, size_t error_size)
{
	size_t cap = (size_t)st->st_size + 1, size = 0;
	char *buf = malloc(cap), *nbuf;
	ssize_t n;

	if (buf == NULL)
		return fail(error_r, error_size, "passwd-file %s: %s", path,
			    strerror(ENOMEM));
	for (;;) {
		if (size == cap) {
			/* The file grew while we read it. */
			if (cap > PASSWD_FILE_MAX_SIZE)
				goto too_large;
			nbuf = malloc(cap * 2);
			if (nbuf == NULL) {
				errno = ENOMEM;
				goto fail;
			}
			memcpy(nbuf, buf, size);
			explicit_bzero(buf, size);
			free(buf);
			buf = nbuf;
			cap *= 2;
		}
		n = read(fd, buf + size, cap - size);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		if (n == 0)
			break;
		size += (size_t)n;
	}
	if (size > PASSWD_FILE_MAX_SIZE)
		goto too_large;
	*buf_r = buf;
	*size_r = size;
	return 0;
too_large:
	explicit_bzero(buf, size);
	free(buf);
	return fail(error_r, error_size, "passwd-file %s: larger than %u bytes",
		    path, PASSWD_FILE_MAX_SIZE);
fail:
	n = errno;
	explicit_bzero(buf, size);
	free(buf);
	return fail(error_r, error_size, "passwd-file %s: read: %s", path,
		    strerror((int)n));
}

struct load_errors {
	const char *path;
	void (*report)(void *ctx, const char *msg);
	void *ctx;
	char *first;
	size_t first_size;
	unsigned count;
};

static void
load_error(struct load_errors *le, const char *msg)
{
	if (le->count++ == 0)
		(void)snprintf(le->first, le->first_size, "%s", msg);
	if (le->report != NULL)
		le->report(le->ctx, msg);
}

static int
parse_buffer(struct passwd_table *table, struct load_errors *le)
{
	const char *p = table->buf, *end = table->buf + table->buf_size;
	char err[PASSWD_ERROR_SIZE / 2], msg[PASSWD_ERROR_SIZE];
	unsigned line = 0;
	int user_len;

	while (p < end && le->count < PASSWD_FILE_MAX_ERRORS) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)((nl != NULL ? nl : end) - p);
		struct passwd_entry *e = &table->entries[table->n_entries];
		const struct passwd_entry *dup;
		int ret;

		line++;
		ret = passwd_line_parse(p, len, e, err, sizeof(err));
		p += len + (nl != NULL);
		if (ret == 0)
			continue;
		if (ret < 0) {
			(void)snprintf(msg, sizeof(msg), "%s:%u: %s",
				       le->path, line, err);
			load_error(le, msg);
			continue;
		}
		e->line = line;
		/* Duplicates are errors, not "first wins": two lines for
		 * one user mean the file is not what its writer thinks. */
		dup = table_insert(table, table->n_entries);
		if (dup != NULL) {
			user_len = (int)(e->user.len > 64 ? 64 : e->user.len);
			(void)snprintf(msg, sizeof(msg),
				       "%s:%u: duplicate user '%.*s' (first "
				       "on line %u)",
				       le->path, line, user_len, e->user.ptr,
				       dup->line);
			load_error(le, msg);
			continue;
		}
		table->n_entries++;
	}
	if (le->count >= PASSWD_FILE_MAX_ERRORS && p < end) {
		(void)snprintf(msg, sizeof(msg),
			       "%s: too many errors, giving up", le->path);
		if (le->report != NULL)
			le->report(le->ctx, msg);
	}
	return le->count == 0 ? 0 : -1;
}

static int
table_load(const char *path, struct passwd_table **table_r,
	   struct load_errors *le, char *error_r, size_t error_size)
{
	struct passwd_table *table;
	size_t n_lines = 1, n_slots = 8;
	struct stat st;
	int fd;

	*table_r = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return fail(error_r, error_size, "passwd-file %s: %s", path,
			    strerror(errno));
	/* Checked on the open file, so a rename in between cannot slip a
	 * different file past the check. */
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return fail(error_r, error_size, "passwd-file %s: %s", path,
			    strerror(e));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return fail(error_r, error_size,
			    "passwd-file %s: not a regular file", path);
	}
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		close(fd);
		return fail(error_r, error_size,
			    "passwd-file %s: group or world writable, refusing",
			    path);
	}
	if ((uint64_t)st.st_size > PASSWD_FILE_MAX_SIZE) {
		close(fd);
		return fail(error_r, error_size,
			    "passwd-file %s: larger than %u bytes", path,
			    PASSWD_FILE_MAX_SIZE);
	}

	table = calloc(1, sizeof(*table));
	if (table == NULL) {
		close(fd);
		return fail(error_r, error_size, "passwd-file %s: %s", path,
			    strerror(ENOMEM));
	}
	table->id.dev = st.st_dev;
	table->id.ino = st.st_ino;
	table->id.size = st.st_size;
	table->id.mtime = st.st_mtim;
	if (read_all(fd, path, &st, &table->buf, &table->buf_size, error_r,
		     error_size) < 0) {
		close(fd);
		passwd_table_free(&table);
		return -1;
	}
	close(fd);

	for (const char *p = table->buf, *end = p + table->buf_size;
	     (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
		n_lines++;
	while (n_slots < n_lines * 2)
		n_slots *= 2;
	table->entries = calloc(n_lines, sizeof(*table->entries));
	table->slots = calloc(n_slots, sizeof(*table->slots));
	table->slot_mask = n_slots - 1;
	if (table->entries == NULL || table->slots == NULL) {
		passwd_table_free(&table);
		return fail(error_r, error_size, "passwd-file %s: %s", path,
			    strerror(ENOMEM));
	}

	if (parse_buffer(table, le) < 0) {
		if (le->count > 1) {
			size_t used = strnlen(error_r, error_size);
			(void)snprintf(error_r + used, error_size - used,
				       " (and %u more)", le->count - 1);
		}
		passwd_table_free(&table);
		return -1;
	}
	if (make_dummy(table, path, error_r, error_size) < 0) {
		passwd_table_free(&table);
		return -1;
	}
	*table_r = table;
	return 0;
}

int
passwd_table_load(const char *path, struct passwd_table **table_r,
		  void (*report)(void *ctx, const char *msg), void *report_ctx,
		  char *error_r, size_t error_size)
{
	struct load_errors le = {
		.path = path, .report = report, .ctx = report_ctx,
		.first = error_r, .first_size = error_size,
	};
	int ret;

	ret = table_load(path, table_r, &le, error_r, error_size);
	/* Errors about the file as a whole were not reported yet. */
	if (ret < 0 && le.count == 0 && report != NULL)
		report(report_ctx, error_r);
	return ret;
}

void
passwd_table_free(struct passwd_table **tablep)
{
	struct passwd_table *table = *tablep;

	if (table == NULL)
		return;
	*tablep = NULL;
	if (table->buf != NULL) {
		explicit_bzero(table->buf, table->buf_size);
		free(table->buf);
	}
	if (table->entries != NULL) {
		explicit_bzero(table->entries,
			       table->n_entries * sizeof(*table->entries));
		free(table->entries);
	}
	free(table->slots);
	explicit_bzero(table, sizeof(*table));
	free(table);
}

size_t
passwd_table_count(const struct passwd_table *table)
{
	return table->n_entries;
}

const struct passwd_file_id *
passwd_table_file_id(const struct passwd_table *table)
{
	return &table->id;
}

enum passwd_scheme
passwd_table_dummy_scheme(const struct passwd_table *table)
{
	return table->dummy_scheme;
}


int
passwd_file_id_get(const char *path, struct passwd_file_id *id_r)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return -1;
	id_r->dev = st.st_dev;
	id_r->ino = st.st_ino;
	id_r->size = st.st_size;
	id_r->mtime = st.st_mtim;
	return 0;
}

int
passwd_file_id_equal(const struct passwd_file_id *a,
		     const struct passwd_file_id *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec &&
	       a->mtime.tv_nsec == b->mtime.tv_nsec;
}
