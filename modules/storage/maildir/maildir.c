/*
 * storage_maildir: Maildir and Maildir++ INBOX (new/ and cur/ of the
 * configured directory; tmp/ and the .Folder subdirectories are not POP3's).
 *
 * Files of our own in the maildir root:
 *   postern.lock   the session lock: an fcntl write lock, so it holds
 *                  across processes and, on NFS, across nodes.
 *   postern.sizes  wire sizes we had to measure (names without ,W=), so a
 *                  second login never reads message contents. Lines
 *                  "BASE SIZE MTIME" after a "postern-sizes 1" header,
 *                  replaced whole (tmp + fsync + rename) under the lock.
 *
 * Messages are never moved from new/ to cur/: a POP3 session has no flags
 * to record, and another MUA may be renaming the same files.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <postern/module.h>

#include "maildir-name.h"

#define LOCK_FILE "postern.lock"
#define CACHE_FILE "postern.sizes"
#define CACHE_TMP_FILE "postern.sizes.tmp"
#define CACHE_HEADER "postern-sizes 1\n"
/* About 100 bytes a line: room for over half a million measured messages.
 * A larger file is not ours to trust; it is ignored and rebuilt. */
#define CACHE_MAX_SIZE (64u * 1024 * 1024)
/* Directory entries are collected in session memory in chunks of this many
 * (session memory cannot grow an array in place). */
#define CHUNK_MSGS 256
/* Room for an error or log text; longer ones are cut, which only shortens
 * a message for a person. */
#define TEXT_SIZE 512
/* Stay clear of the core's message number limit and of unsigned overflow. */
#define MAX_MESSAGES 10000000u

enum { DIR_NEW = 0, DIR_CUR = 1, DIR_COUNT };
static const char *const dir_names[DIR_COUNT] = { "new", "cur" };

enum size_src {
	SIZE_NONE = 0, /* not known (yet) */
	SIZE_W,        /* from ,W= in the name */
	SIZE_CACHE,    /* from postern.sizes */
	SIZE_MEASURED, /* read this session with api->wire_size_fd */
};

struct md_mod {
	const struct postern_api *api;
	int size_cache;
};

struct md_msg {
	const char *name; /* file name in new/ or cur/; session memory */
	size_t name_len;
	size_t base_len;   /* name bytes before ":2," */
	uint64_t wire_size;
	long long mtime;   /* of the file when wire_size was measured */
	unsigned char dir; /* DIR_NEW or DIR_CUR */
	unsigned char size_src;
	unsigned char missing; /* not found under name: look it up again
				* (1, or FOUND_IN_NEW during a rescan) */
	unsigned char gone;    /* vanished or removed at commit */
};

/* md_msg.missing while a rescan has found it in new/ but not yet cur/. */
#define FOUND_IN_NEW 2

struct md_chunk {
	struct md_chunk *next;
	unsigned count;
	struct md_msg msgs[CHUNK_MSGS];
};

struct cache_entry {
	const char *base;
	size_t base_len;
	uint64_t size;
	long long mtime;
};

struct md_box {
	const struct postern_api *api;
	const struct md_mod *mod;
	struct postern_session *s;
	const char *path;
	const char *user;
	int dir_fd;
	int sub_fd[DIR_COUNT];
	int dir_read[DIR_COUNT]; /* sub_fd's read position has moved */
	int lock_fd;
	struct md_msg *msgs;
	unsigned count;
	/* postern.sizes no longer matches what we know. */
	int cache_dirty;
	/* Filled by scanning, emptied into msgs. */
	struct md_chunk *chunks;
	size_t n_scanned;
};

/* Writes a formatted error text to session memory for *error_r. */
static const char *
box_error(struct md_box *b, const char *fmt, ...) POSTERN_PRINTF(2, 3);

static const char *
box_error(struct md_box *b, const char *fmt, ...)
{
	char text[TEXT_SIZE];
	va_list ap;
	int len;

	va_start(ap, fmt);
	len = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (len < 0)
		return "maildir error";
	if ((size_t)len >= sizeof(text))
		len = sizeof(text) - 1;
	return b->api->session_strndup(b->s, text, (size_t)len);
}

static void
box_log(struct md_box *b, enum postern_log_level level, const char *fmt, ...)
	POSTERN_PRINTF(3, 4);

static void
box_log(struct md_box *b, enum postern_log_level level, const char *fmt, ...)
{
	char text[TEXT_SIZE];
	const char *peer;
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(text, sizeof(text), fmt, ap) < 0)
		text[0] = '\0';
	va_end(ap);
	peer = b->api->session_peer(b->s);
	b->api->log(level, "maildir: user=%s peer=%s: %s", b->user,
		    peer != NULL ? peer : "-", text);
}

/* ---- message files ---- */

/*
 * Opens message m read-only and checks it is a regular file. O_NONBLOCK
 * so a FIFO planted in the maildir cannot hang the session; it has no
 * effect on regular files. Returns the fd, or -1 with errno (ENOENT: moved
 * or removed; EINVAL: not a regular file).
 */
static int
open_msg(struct md_box *b, const struct md_msg *m, struct stat *st_r)
{
	int fd = openat(b->sub_fd[m->dir], m->name,
			O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY |
				O_NONBLOCK);

	if (fd < 0)
		return -1;
	if (fstat(fd, st_r) < 0) {
		int err = errno;

		close(fd);
		errno = err;
		return -1;
	}
	if (!S_ISREG(st_r->st_mode)) {
		close(fd);
		errno = EINVAL;
		return -1;
	}
	return fd;
}

static int
base_cmp_exact(const char *a, size_t a_len, const char *b, size_t b_len)
{
	int r = memcmp(a, b, a_len < b_len ? a_len : b_len);

	if (r != 0)
		return r;
	return a_len < b_len ? -1 : a_len > b_len ? 1 : 0;
}

static int
want_cmp(const void *a, const void *b)
{
	const struct md_msg *ma = *(const struct md_msg *const *)a;
	const struct md_msg *mb = *(const struct md_msg *const *)b;

	return base_cmp_exact(ma->name, ma->base_len, mb->name, mb->base_len);
}

struct want_key {
	const char *base;
	size_t base_len;
};

static int
want_key_cmp(const void *key, const void *elem)
{
	const struct want_key *k = key;
	const struct md_msg *m = *(const struct md_msg *const *)elem;

	return base_cmp_exact(k->base, k->base_len, m->name, m->base_len);
}

/*
 * Calls fn for every regular, non-dot file of new/ or cur/. d_type spares
 * a stat per file; only file systems that do not fill it in cost one
 * fstatat each. Reads with getdents64 into a stack buffer rather than
 * readdir's 32 KB heap buffer, which would stay resident in every idle
 * session, from the session's own descriptor of the directory (rewound
 * for a rescan, rather than opening the directory again). Returns
 * POSTERN_OK or POSTERN_TEMPFAIL with *error_r.
 */
static int
walk_dir(struct md_box *b, int dir,
	 void (*fn)(struct md_box *b, int dir, const char *name, size_t len,
		    void *ctx),
	 void *ctx, const char **error_r)
{
	int fd = b->sub_fd[dir];
	union {
		char bytes[8192];
		struct dirent64 align;
	} buf;
	ssize_t n;

	if (b->dir_read[dir] && lseek(fd, 0, SEEK_SET) < 0) {
		*error_r = box_error(b, "rewinddir %s/%s: %s", b->path,
				     dir_names[dir], strerror(errno));
		return POSTERN_TEMPFAIL;
	}
	b->dir_read[dir] = 1;
	while ((n = getdents64(fd, buf.bytes, sizeof(buf.bytes))) > 0) {
		for (ssize_t off = 0; off < n;) {
			const struct dirent64 *de =
				(const void *)(buf.bytes + off);
			struct stat st;

			off += de->d_reclen;
			if (de->d_name[0] == '.')
				continue;
			if (de->d_type == DT_UNKNOWN) {
				if (fstatat(fd, de->d_name, &st,
					    AT_SYMLINK_NOFOLLOW) < 0 ||
				    !S_ISREG(st.st_mode))
					continue;
			} else if (de->d_type != DT_REG) {
				continue;
			}
			fn(b, dir, de->d_name, strlen(de->d_name), ctx);
		}
	}
	if (n < 0) {
		*error_r = box_error(b, "readdir %s/%s: %s", b->path,
				     dir_names[dir], strerror(errno));
		return POSTERN_TEMPFAIL;
	}
	return POSTERN_OK;
}

struct rescan_ctx {
	struct md_msg **want; /* sorted by base name */
	size_t count;
};

static void
rescan_one(struct md_box *b, int dir, const char *name, size_t len,
	   void *ctx)
{
	struct rescan_ctx *rc = ctx;
	struct want_key key = { name, maildir_base_len(name, len) };
	struct md_msg **found = bsearch(&key, rc->want, rc->count,
					sizeof(*rc->want), want_key_cmp);

	if (found == NULL || (*found)->missing == 0 ||
	    ((*found)->missing == FOUND_IN_NEW && dir != DIR_CUR))
		return;
	(*found)->name = b->api->session_strndup(b->s, name, len);
	(*found)->name_len = len;
	(*found)->dir = (unsigned char)dir;
	(*found)->missing = dir == DIR_NEW ? FOUND_IN_NEW : 0;
}

/*
 * Another MUA may have moved a message from new/ to cur/ or changed its
 * flags: that renames the file but keeps its base name. One pass over
 * new/ and cur/ finds the current names of all of want[] (flagged
 * missing) and clears the flag of each one found. A message moved while
 * we read shows up in both: the cur/ name wins, as the newer one.
 */
static int
rescan(struct md_box *b, struct md_msg **want, size_t count,
       const char **error_r)
{
	struct rescan_ctx rc = { want, count };
	int r = POSTERN_OK;

	qsort(want, count, sizeof(*want), want_cmp);
	for (int dir = 0; dir < DIR_COUNT && r == POSTERN_OK; dir++)
		r = walk_dir(b, dir, rescan_one, &rc, error_r);
	for (size_t i = 0; i < count; i++) {
		if (want[i]->missing == FOUND_IN_NEW)
			want[i]->missing = 0;
	}
	return r;
}

/* ---- the size cache ---- */

static int
parse_ll(const char *p, size_t len, long long *value_r)
{
	unsigned long long v = 0;
	int neg = len > 0 && p[0] == '-';

	if (neg) {
		p++;
		len--;
	}
	if (len == 0 || len > 19)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return 0;
		v = v * 10 + (unsigned)(p[i] - '0');
	}
	if (v > (unsigned long long)9223372036854775807LL)
		return 0;
	*value_r = neg ? -(long long)v : (long long)v;
	return 1;
}

static const char *
last_space(const char *p, size_t len)
{
	while (len > 0) {
		if (p[--len] == ' ')
			return p + len;
	}
	return NULL;
}

/* Parses "BASE SIZE MTIME" (no '\n'), from the right so BASE may hold
 * spaces. */
static int
cache_line_parse(const char *line, size_t len, struct cache_entry *e_r)
{
	const char *sp2 = last_space(line, len), *sp1;
	long long size;

	if (sp2 == NULL)
		return 0;
	sp1 = last_space(line, (size_t)(sp2 - line));
	if (sp1 == NULL || sp1 == line)
		return 0;
	if (!parse_ll(sp1 + 1, (size_t)(sp2 - sp1 - 1), &size) || size < 0 ||
	    !parse_ll(sp2 + 1, (size_t)(line + len - sp2 - 1), &e_r->mtime))
		return 0;
	e_r->base = line;
	e_r->base_len = (size_t)(sp1 - line);
	e_r->size = (uint64_t)size;
	return 1;
}

static int
cache_entry_cmp(const void *a, const void *b)
{
	const struct cache_entry *ea = a, *eb = b;

	return base_cmp_exact(ea->base, ea->base_len, eb->base, eb->base_len);
}

/*
 * Reads postern.sizes into session memory, sorted by base name. A missing
 * file is an empty cache; an unreadable or corrupt one is ignored and
 * marked for rebuilding, never an error of the session.
 */
static void
cache_load(struct md_box *b, struct cache_entry **entries_r, size_t *count_r)
{
	const size_t hlen = sizeof(CACHE_HEADER) - 1;
	struct cache_entry *entries;
	size_t got = 0, n = 0, n_lines = 0;
	const char *p, *end;
	struct stat st;
	char *buf;
	int fd;

	*entries_r = NULL;
	*count_r = 0;
	fd = openat(b->dir_fd, CACHE_FILE,
		    O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		if (errno != ENOENT) {
			box_log(b, POSTERN_LOG_WARNING,
				"%s/%s: %s (rebuilding it)", b->path,
				CACHE_FILE, strerror(errno));
			b->cache_dirty = 1;
		}
		return;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_size > (off_t)CACHE_MAX_SIZE)
		goto corrupt;
	buf = b->api->session_alloc(b->s, (size_t)st.st_size + 1);
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	fd = -1;
	if (got < hlen || memcmp(buf, CACHE_HEADER, hlen) != 0 ||
	    buf[got - 1] != '\n')
		goto corrupt;
	end = buf + got;
	for (p = buf + hlen; p < end; p++)
		n_lines += *p == '\n';
	entries = b->api->session_alloc(b->s, (n_lines + 1) * sizeof(*entries));
	for (p = buf + hlen; p < end; n++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		if (!cache_line_parse(p, (size_t)(nl - p), &entries[n]))
			goto corrupt;
		p = nl + 1;
	}
	qsort(entries, n, sizeof(*entries), cache_entry_cmp);
	*entries_r = entries;
	*count_r = n;
	return;
corrupt:
	if (fd >= 0)
		close(fd);
	box_log(b, POSTERN_LOG_WARNING, "%s/%s: corrupt, rebuilding it",
		b->path, CACHE_FILE);
	b->cache_dirty = 1;
}

/* Whether a base name can be a cache line: no '\n', not empty. */
static int
cacheable(const struct md_msg *m)
{
	return m->base_len > 0 && memchr(m->name, '\n', m->base_len) == NULL;
}

struct out_buf {
	int fd;
	int failed; /* errno of the first failed write, or 0 */
	size_t used;
	char data[8192];
};

static void
out_flush(struct out_buf *o)
{
	size_t done = 0;

	while (o->failed == 0 && done < o->used) {
		ssize_t r = write(o->fd, o->data + done, o->used - done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			o->failed = r < 0 ? errno : EIO;
		else
			done += (size_t)r;
	}
	o->used = 0;
}

static void
out_put(struct out_buf *o, const char *p, size_t len)
{
	while (len > 0) {
		size_t n;

		if (o->used == sizeof(o->data))
			out_flush(o);
		n = sizeof(o->data) - o->used;
		if (n > len)
			n = len;
		memcpy(o->data + o->used, p, n);
		o->used += n;
		p += n;
		len -= n;
	}
}

static void
out_put_ll(struct out_buf *o, long long v)
{
	char digits[24];
	size_t i = sizeof(digits);
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v
				     : (unsigned long long)v;

	do {
		digits[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		digits[--i] = '-';
	out_put(o, digits + i, sizeof(digits) - i);
}

/*
 * Replaces postern.sizes with the measured and still valid cached sizes of
 * the current messages (so entries of removed messages drop out). Under
 * the session lock, so the fixed temporary name is ours. A failure costs
 * only a re-measure next time: it is logged, not returned.
 */
static void
cache_write(struct md_box *b)
{
	struct out_buf *o = b->api->session_alloc(b->s, sizeof(*o));
	const char *step = "write";

	o->fd = openat(b->dir_fd, CACHE_TMP_FILE,
		       O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW |
			       O_NOCTTY,
		       0600);
	if (o->fd < 0) {
		box_log(b, POSTERN_LOG_WARNING, "%s/%s: create: %s", b->path,
			CACHE_TMP_FILE, strerror(errno));
		return;
	}
	out_put(o, CACHE_HEADER, sizeof(CACHE_HEADER) - 1);
	for (unsigned i = 0; i < b->count; i++) {
		const struct md_msg *m = &b->msgs[i];

		if (m->gone || !cacheable(m) ||
		    (m->size_src != SIZE_CACHE && m->size_src != SIZE_MEASURED))
			continue;
		out_put(o, m->name, m->base_len);
		out_put(o, " ", 1);
		out_put_ll(o, (long long)m->wire_size);
		out_put(o, " ", 1);
		out_put_ll(o, m->mtime);
		out_put(o, "\n", 1);
	}
	out_flush(o);
	if (o->failed == 0) {
		step = "fsync";
		if (fsync(o->fd) < 0)
			o->failed = errno;
	}
	if (close(o->fd) < 0 && o->failed == 0) {
		step = "close";
		o->failed = errno;
	}
	if (o->failed == 0) {
		step = "rename";
		if (renameat(b->dir_fd, CACHE_TMP_FILE, b->dir_fd,
			     CACHE_FILE) < 0)
			o->failed = errno;
	}
	if (o->failed != 0) {
		box_log(b, POSTERN_LOG_WARNING, "%s/%s: %s: %s", b->path,
			CACHE_TMP_FILE, step, strerror(o->failed));
		unlinkat(b->dir_fd, CACHE_TMP_FILE, 0);
		return;
	}
	b->cache_dirty = 0;
}

/* ---- open ---- */

/* Opens (creating if missing) the maildir, takes the session lock, then
 * opens (creating if missing) new/ and cur/. */
static int
open_dirs(struct md_box *b, const char **error_r)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	int created = 0;

	b->dir_fd = open(b->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (b->dir_fd < 0 && errno == ENOENT) {
		/* A new account whose first mail has not arrived yet. Only
		 * the last component: a missing home is an error. */
		if (mkdir(b->path, 0700) < 0 && errno != EEXIST) {
			*error_r = box_error(b, "mkdir %s: %s", b->path,
					     strerror(errno));
			return POSTERN_TEMPFAIL;
		}
		created = 1;
		b->dir_fd = open(b->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (b->dir_fd < 0) {
		*error_r = box_error(b, "open %s: %s", b->path,
				     strerror(errno));
		return POSTERN_TEMPFAIL;
	}
	b->lock_fd = openat(b->dir_fd, LOCK_FILE,
			    O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW |
				    O_NOCTTY | O_NONBLOCK,
			    0600);
	if (b->lock_fd < 0) {
		*error_r = box_error(b, "open %s/%s: %s", b->path, LOCK_FILE,
				     strerror(errno));
		return POSTERN_TEMPFAIL;
	}
	if (fcntl(b->lock_fd, F_SETLK, &fl) < 0) {
		if (errno == EAGAIN || errno == EACCES) {
			*error_r = "mailbox locked by another session";
			return POSTERN_INUSE;
		}
		*error_r = box_error(b, "lock %s/%s: %s", b->path, LOCK_FILE,
				     strerror(errno));
		return POSTERN_TEMPFAIL;
	}
	if (created) {
		box_log(b, POSTERN_LOG_INFO, "created %s", b->path);
		/* Delivery needs tmp/; we never read it. */
		if (mkdirat(b->dir_fd, "tmp", 0700) < 0 && errno != EEXIST)
			box_log(b, POSTERN_LOG_WARNING, "mkdir %s/tmp: %s",
				b->path, strerror(errno));
	}
	for (int dir = 0; dir < DIR_COUNT; dir++) {
		const char *name = dir_names[dir];
		int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;

		b->sub_fd[dir] = openat(b->dir_fd, name, flags);
		if (b->sub_fd[dir] < 0 && errno == ENOENT &&
		    (mkdirat(b->dir_fd, name, 0700) == 0 || errno == EEXIST))
			b->sub_fd[dir] = openat(b->dir_fd, name, flags);
		if (b->sub_fd[dir] < 0) {
			*error_r = box_error(b, "open %s/%s: %s", b->path,
					     name, strerror(errno));
			return POSTERN_TEMPFAIL;
		}
	}
	return POSTERN_OK;
}

static void
scan_one(struct md_box *b, int dir, const char *name, size_t len, void *ctx)
{
	struct md_chunk *c = b->chunks;
	struct md_msg *m;

	(void)ctx;
	if (c == NULL || c->count == CHUNK_MSGS) {
		c = b->api->session_alloc(b->s, sizeof(*c));
		c->next = b->chunks;
		b->chunks = c;
	}
	m = &c->msgs[c->count++];
	m->name = b->api->session_strndup(b->s, name, len);
	m->name_len = len;
	m->base_len = maildir_base_len(name, len);
	m->dir = (unsigned char)dir;
	b->n_scanned++;
}

static int
msg_cmp(const void *a, const void *b)
{
	const struct md_msg *ma = a, *mb = b;
	int r = maildir_base_cmp(ma->name, ma->base_len, mb->name,
				 mb->base_len);

	if (r != 0)
		return r;
	if (ma->dir != mb->dir)
		return ma->dir < mb->dir ? -1 : 1;
	return strcmp(ma->name, mb->name);
}

/*
 * Lists new/ then cur/ into b->msgs, oldest delivery first. A message
 * moved from new/ to cur/ between the two reads shows up in both: the
 * duplicates of a base name are dropped, keeping the cur/ one, so every
 * message appears once and none is missed.
 */
static int
scan(struct md_box *b, const char **error_r)
{
	size_t n = 0;
	int r;

	for (int dir = 0; dir < DIR_COUNT; dir++) {
		r = walk_dir(b, dir, scan_one, NULL, error_r);
		if (r != POSTERN_OK)
			return r;
	}
	if (b->n_scanned > MAX_MESSAGES) {
		*error_r = box_error(b, "%s: %zu messages, more than %u",
				     b->path, b->n_scanned, MAX_MESSAGES);
		return POSTERN_TEMPFAIL;
	}
	b->msgs = b->api->session_alloc(b->s, (b->n_scanned + 1) *
						      sizeof(*b->msgs));
	for (const struct md_chunk *c = b->chunks; c != NULL; c = c->next) {
		memcpy(&b->msgs[n], c->msgs, c->count * sizeof(*c->msgs));
		n += c->count;
	}
	b->chunks = NULL;
	qsort(b->msgs, n, sizeof(*b->msgs), msg_cmp);
	b->count = 0;
	for (size_t i = 0; i < n; i++) {
		const struct md_msg *m = &b->msgs[i], *next = m + 1;

		if (i + 1 < n && next->base_len == m->base_len &&
		    memcmp(next->name, m->name, m->base_len) == 0)
			continue;
		b->msgs[b->count++] = *m;
	}
	return POSTERN_OK;
}

enum measure_result { MEASURE_OK, MEASURE_MISSING, MEASURE_SKIP };

/* Reads message m once to learn its wire size. Returns a measure_result,
 * or POSTERN_TEMPFAIL with *error_r. */
static int
measure(struct md_box *b, struct md_msg *m, const char **error_r)
{
	struct stat st;
	int fd = open_msg(b, m, &st), r;

	if (fd < 0) {
		if (errno == ENOENT)
			return MEASURE_MISSING;
		if (errno == EACCES || errno == EPERM || errno == ELOOP ||
		    errno == EINVAL) {
			/* Not a message we may read: leave it alone rather
			 * than lock the user out of the rest. */
			box_log(b, POSTERN_LOG_WARNING, "skipping %s/%s/%s: %s",
				b->path, dir_names[m->dir], m->name,
				strerror(errno));
			return MEASURE_SKIP;
		}
		*error_r = box_error(b, "open %s/%s/%s: %s", b->path,
				     dir_names[m->dir], m->name,
				     strerror(errno));
		return POSTERN_TEMPFAIL;
	}
	r = b->api->wire_size_fd(fd, 0, (uint64_t)st.st_size, 0,
				 &m->wire_size);
	close(fd);
	if (r != POSTERN_OK) {
		*error_r = box_error(b, "read %s/%s/%s: failed", b->path,
				     dir_names[m->dir], m->name);
		return POSTERN_TEMPFAIL;
	}
	m->mtime = (long long)st.st_mtime;
	m->size_src = SIZE_MEASURED;
	if (cacheable(m))
		b->cache_dirty = 1;
	return MEASURE_OK;
}

/*
 * Gives every message its wire size: ,W= from the name, else the cache,
 * else a measurement. A message that vanished while we measured is looked
 * up once more under its base name (another MUA may have renamed it);
 * what stays missing or unreadable is left out of this session.
 */
static int
fill_sizes(struct md_box *b, const char **error_r)
{
	struct cache_entry *cache = NULL;
	size_t n_cache = 0, n_missing = 0;
	struct md_msg **want;
	unsigned n = 0;
	int r;

	if (b->mod->size_cache)
		cache_load(b, &cache, &n_cache);
	for (unsigned i = 0; i < b->count; i++) {
		struct md_msg *m = &b->msgs[i];
		struct cache_entry key = { m->name, m->base_len, 0, 0 };
		const struct cache_entry *e;

		if (maildir_base_size(m->name, m->base_len, 'W',
				      &m->wire_size)) {
			m->size_src = SIZE_W;
			continue;
		}
		e = n_cache == 0 ? NULL
				 : bsearch(&key, cache, n_cache, sizeof(*cache),
					   cache_entry_cmp);
		if (e != NULL) {
			m->wire_size = e->size;
			m->mtime = e->mtime;
			m->size_src = SIZE_CACHE;
			continue;
		}
		r = measure(b, m, error_r);
		if (r == POSTERN_TEMPFAIL)
			return r;
		m->missing = r == MEASURE_MISSING;
		m->gone = r == MEASURE_SKIP;
		n_missing += m->missing;
	}
	if (n_missing > 0) {
		want = b->api->session_alloc(b->s, n_missing * sizeof(*want));
		for (unsigned i = 0; i < b->count; i++) {
			if (b->msgs[i].missing)
				want[n++] = &b->msgs[i];
		}
		r = rescan(b, want, n_missing, error_r);
		if (r != POSTERN_OK)
			return r;
		for (size_t i = 0; i < n_missing; i++) {
			struct md_msg *m = want[i];

			r = m->missing ? MEASURE_MISSING
				       : measure(b, m, error_r);
			if (r == POSTERN_TEMPFAIL)
				return r;
			m->missing = 0;
			m->gone = r != MEASURE_OK;
		}
	}
	/* Drop what vanished or cannot be read. */
	n = 0;
	for (unsigned i = 0; i < b->count; i++) {
		if (!b->msgs[i].gone)
			b->msgs[n++] = b->msgs[i];
	}
	b->count = n;
	return POSTERN_OK;
}

static void md_close(void *box);

static int
md_open(void *mod, struct postern_session *s, const char *user,
	const char *location, void **box_r, struct postern_msg **msgs_r,
	unsigned *count_r, const char **error_r)
{
	const struct md_mod *mm = mod;
	const struct postern_api *api = mm->api;
	struct md_box *b = api->session_alloc(s, sizeof(*b));
	struct postern_msg *msgs;
	int r;

	*box_r = NULL;
	b->api = api;
	b->mod = mm;
	b->s = s;
	b->path = api->session_strndup(s, location, strlen(location));
	b->user = api->session_strndup(s, user, strlen(user));
	b->dir_fd = b->lock_fd = -1;
	for (int dir = 0; dir < DIR_COUNT; dir++)
		b->sub_fd[dir] = -1;

	r = open_dirs(b, error_r);
	if (r == POSTERN_OK)
		r = scan(b, error_r);
	if (r == POSTERN_OK)
		r = fill_sizes(b, error_r);
	if (r != POSTERN_OK) {
		md_close(b);
		return r;
	}
	if (mm->size_cache && b->cache_dirty)
		cache_write(b);

	msgs = api->session_alloc(s, ((size_t)b->count + 1) * sizeof(*msgs));
	for (unsigned i = 0; i < b->count; i++) {
		const struct md_msg *m = &b->msgs[i];
		char uid[MAILDIR_UID_MAX + 1];
		size_t len = maildir_uid(m->name, m->base_len, uid);

		msgs[i].wire_size = m->wire_size;
		msgs[i].uid = api->session_strndup(s, uid, len);
	}
	*box_r = b;
	*msgs_r = msgs;
	*count_r = b->count;
	return POSTERN_OK;
}

/* ---- session ops ---- */

static int
md_msg_open(void *box, unsigned idx, struct postern_msg_data *data_r,
	    const char **error_r)
{
	struct md_box *b = box;
	struct md_msg *m;
	struct stat st;
	int fd;

	if (idx >= b->count || b->msgs[idx].gone) {
		*error_r = "no such message";
		return POSTERN_FAIL;
	}
	m = &b->msgs[idx];
	fd = open_msg(b, m, &st);
	if (fd < 0 && errno == ENOENT) {
		int r;

		m->missing = 1;
		r = rescan(b, &m, 1, error_r);
		if (r != POSTERN_OK) {
			m->missing = 0;
			return r;
		}
		if (m->missing) {
			m->missing = 0;
			errno = ENOENT;
		} else {
			fd = open_msg(b, m, &st);
		}
	}
	if (fd < 0) {
		*error_r = box_error(b, "%s/%s/%s: %s", b->path,
				     dir_names[m->dir], m->name,
				     errno == ENOENT ? "vanished"
						     : strerror(errno));
		return errno == ENOENT || errno == EINVAL ? POSTERN_FAIL
							  : POSTERN_TEMPFAIL;
	}
	if ((m->size_src == SIZE_CACHE || m->size_src == SIZE_MEASURED) &&
	    (long long)st.st_mtime != m->mtime) {
		/* Changed in place since it was measured (not something a
		 * Maildir writer does): the size this session reported may
		 * be off; have the next session measure it again. */
		box_log(b, POSTERN_LOG_WARNING,
			"%s/%s/%s: modified since measured, size may be off",
			b->path, dir_names[m->dir], m->name);
		m->size_src = SIZE_NONE;
		b->cache_dirty = 1;
	}
	/* O_NONBLOCK stays: open_msg let only a regular file through, on
	 * which it changes nothing (one system call less per message). */
	data_r->fd = fd;
	data_r->offset = 0;
	data_r->length = (uint64_t)st.st_size;
	data_r->flags = 0;
	return POSTERN_OK;
}

static void
md_msg_close(void *box, unsigned idx, struct postern_msg_data *data)
{
	(void)box;
	(void)idx;
	if (data->fd >= 0)
		close(data->fd);
	data->fd = -1;
}

static int
md_commit(void *box, const unsigned char *deleted, unsigned count,
	  const char **error_r)
{
	struct md_box *b = box;
	int touched[DIR_COUNT] = { 0 };
	unsigned failed = 0;
	size_t n_missing = 0, n = 0;
	const char *first = NULL;
	struct md_msg **want;

	if (count > b->count)
		count = b->count;
	for (unsigned i = 0; i < count; i++) {
		struct md_msg *m = &b->msgs[i];

		if (!deleted[i] || m->gone)
			continue;
		if (unlinkat(b->sub_fd[m->dir], m->name, 0) == 0) {
			m->gone = 1;
			touched[m->dir] = 1;
		} else if (errno == ENOENT) {
			m->missing = 1;
			n_missing++;
		} else {
			first = box_error(b, "unlink %s/%s/%s: %s", b->path,
					  dir_names[m->dir], m->name,
					  strerror(errno));
			box_log(b, POSTERN_LOG_WARNING, "%s", first);
			failed++;
		}
	}
	if (n_missing > 0) {
		/* Renamed by another MUA (flags, new/ -> cur/) since we
		 * listed it: the user still deleted it. */
		const char *error = NULL;

		want = b->api->session_alloc(b->s, n_missing * sizeof(*want));
		for (unsigned i = 0; i < count; i++) {
			if (b->msgs[i].missing)
				want[n++] = &b->msgs[i];
		}
		if (rescan(b, want, n_missing, &error) != POSTERN_OK) {
			box_log(b, POSTERN_LOG_WARNING, "%s", error);
			first = error;
			failed += (unsigned)n_missing;
			for (size_t i = 0; i < n_missing; i++)
				want[i]->missing = 0;
			n_missing = 0;
		}
		for (size_t i = 0; i < n_missing; i++) {
			struct md_msg *m = want[i];

			if (m->missing) {
				/* Already removed by someone else. */
				m->missing = 0;
				m->gone = 1;
			} else if (unlinkat(b->sub_fd[m->dir], m->name, 0) ==
					   0 ||
				   errno == ENOENT) {
				m->gone = 1;
				touched[m->dir] = 1;
			} else {
				first = box_error(b, "unlink %s/%s/%s: %s",
						  b->path, dir_names[m->dir],
						  m->name, strerror(errno));
				box_log(b, POSTERN_LOG_WARNING, "%s", first);
				failed++;
			}
		}
	}
	/* Make the removals durable before the client hears they happened.
	 * EINVAL: a file system that cannot sync directories. */
	for (int dir = 0; dir < DIR_COUNT; dir++) {
		if (touched[dir] && fsync(b->sub_fd[dir]) < 0 &&
		    errno != EINVAL) {
			first = box_error(b, "fsync %s/%s: %s", b->path,
					  dir_names[dir], strerror(errno));
			box_log(b, POSTERN_LOG_WARNING, "%s", first);
			failed++;
		}
	}
	if (failed > 0) {
		*error_r = box_error(b, "%u failure(s), last: %s", failed,
				     first);
		return POSTERN_TEMPFAIL;
	}
	return POSTERN_OK;
}

static void
md_close(void *box)
{
	struct md_box *b = box;

	if (b == NULL)
		return;
	/* A message found changed in place: drop its cached size now. */
	if (b->mod->size_cache && b->cache_dirty && b->lock_fd >= 0 &&
	    b->msgs != NULL)
		cache_write(b);
	for (int dir = 0; dir < DIR_COUNT; dir++) {
		if (b->sub_fd[dir] >= 0)
			close(b->sub_fd[dir]);
		b->sub_fd[dir] = -1;
	}
	if (b->dir_fd >= 0)
		close(b->dir_fd);
	b->dir_fd = -1;
	/* Last: closing it releases the session lock. */
	if (b->lock_fd >= 0)
		close(b->lock_fd);
	b->lock_fd = -1;
}

/* ---- module ---- */

static int
md_init(const struct postern_api *api, const struct postern_conf *conf,
	void **mod_r, const char **error_r)
{
	struct md_mod *mm = calloc(1, sizeof(*mm));

	if (mm == NULL) {
		*error_r = "out of memory";
		return POSTERN_FAIL;
	}
	mm->api = api;
	mm->size_cache = api->conf_bool(conf, "size_cache");
	*mod_r = mm;
	return POSTERN_OK;
}

static void
md_fini(void *mod)
{
	free(mod);
}

static const struct postern_setting md_settings[] = {
	/* Every storage module declares `path`: the core expands it (~, %u)
	 * for users whose grant names no location of its own. */
	{ "path", POSTERN_SETTING_STRING, "~/Maildir", 0,
	  "Maildir location; ~ is the user's home, %u the user name" },
	{ "size_cache", POSTERN_SETTING_BOOL, "true", 0,
	  "remember measured sizes in <maildir>/postern.sizes so later "
	  "logins read no message contents" },
	{ NULL, 0, NULL, 0, NULL },
};

static const struct postern_storage_ops md_ops = {
	.open = md_open,
	.msg_open = md_msg_open,
	.msg_close = md_msg_close,
	.commit = md_commit,
	.close = md_close,
};

POSTERN_EXPORT const struct postern_module postern_module = {
	POSTERN_MODULE_HEADER,
	.name = "storage_maildir",
	.version = "0.1.0",
	.description = "Maildir and Maildir++ INBOX (new/ and cur/)",
	.settings = md_settings,
	.init = md_init,
	.fini = md_fini,
	.storage = &md_ops,
};
