#include <string.h>

#include "maildir-name.h"

size_t
maildir_base_len(const char *name, size_t len)
{
	const char *colon = memchr(name, ':', len);

	return colon != NULL ? (size_t)(colon - name) : len;
}

/* Parses all of [p, p+len) as a decimal number of 1-20 digits that fits in
 * 64 bits. Returns 1 and sets *value_r, else 0. */
static int
parse_u64(const char *p, size_t len, uint64_t *value_r)
{
	uint64_t value = 0;

	if (len == 0 || len > 20)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned digit = (unsigned char)p[i] - '0';

		if (digit > 9 || value > (UINT64_MAX - digit) / 10)
			return 0;
		value = value * 10 + digit;
	}
	*value_r = value;
	return 1;
}

int
maildir_base_size(const char *base, size_t len, char field,
		  uint64_t *size_r)
{
	const char *end = base + len;
	const char *p = memchr(base, ',', len);

	/* The first part is TIME.UNIQUE.HOST; fields follow, one per ','.
	 * The first ,S= (or ,W=) decides, as in Dovecot. */
	while (p != NULL) {
		const char *part = p + 1;
		const char *next = memchr(part, ',', (size_t)(end - part));
		const char *part_end = next != NULL ? next : end;

		if (part_end - part >= 2 && part[0] == field && part[1] == '=')
			return parse_u64(part + 2,
					 (size_t)(part_end - part - 2), size_r);
		p = next;
	}
	return 0;
}

uint64_t
maildir_base_time(const char *base, size_t len)
{
	const char *dot = memchr(base, '.', len);
	uint64_t t;

	if (dot == NULL || !parse_u64(base, (size_t)(dot - base), &t) ||
	    t == MAILDIR_TIME_NONE)
		return MAILDIR_TIME_NONE;
	return t;
}

int
maildir_base_cmp(const char *a, size_t a_len, const char *b, size_t b_len)
{
	uint64_t ta = maildir_base_time(a, a_len);
	uint64_t tb = maildir_base_time(b, b_len);
	int r;

	if (ta != tb)
		return ta < tb ? -1 : 1;
	r = memcmp(a, b, a_len < b_len ? a_len : b_len);
	if (r != 0)
		return r;
	return a_len < b_len ? -1 : a_len > b_len ? 1 : 0;
}

/* 64-bit FNV-1a: no table, no dependency, and the same on every host, so
 * a uid stays the same when the mailbox moves to another machine. */
static uint64_t
fnv1a64(const char *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

size_t
maildir_uid(const char *base, size_t len, char uid_r[MAILDIR_UID_MAX + 1])
{
	static const char hex[] = "0123456789abcdef";
	int plain = len >= 1 && len <= MAILDIR_UID_MAX;
	uint64_t h;

	for (size_t i = 0; plain && i < len; i++) {
		unsigned char c = (unsigned char)base[i];

		plain = c >= 0x21 && c <= 0x7e;
	}
	if (plain) {
		memcpy(uid_r, base, len);
		uid_r[len] = '\0';
		return len;
	}
	h = fnv1a64(base, len);
	for (int i = 15; i >= 0; i--) {
		uid_r[i] = hex[h & 0xf];
		h >>= 4;
	}
	uid_r[16] = '\0';
	return 16;
}
