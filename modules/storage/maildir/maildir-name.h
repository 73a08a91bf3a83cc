/*
 * Maildir file names: the pure part of storage_maildir, with no I/O and
 * nothing of the core, so the unit tests link it alone.
 *
 * A message file is named BASE[:2,FLAGS], where BASE is
 * TIME.UNIQUE.HOST[,KEY=VALUE...] and never changes once delivered: a MUA
 * marking the message seen renames it (new/BASE -> cur/BASE:2,S) but keeps
 * BASE. So BASE is what identifies a message across sessions. Maildir++
 * puts the sizes in it: ,S=N (octets on disk) and ,W=N (octets with CRLF
 * line endings, the POP3 size).
 *
 * Names are (ptr, len) byte ranges, not NUL-terminated.
 */
#ifndef POSTERN_MAILDIR_NAME_H
#define POSTERN_MAILDIR_NAME_H

#include <stddef.h>
#include <stdint.h>

/* RFC 1939: a unique-id is 1 to 70 characters of 0x21-0x7E. */
#define MAILDIR_UID_MAX 70

/* Sort key of a base name without a delivery time prefix: after all
 * others. */
#define MAILDIR_TIME_NONE UINT64_MAX

/* Length of the base name of name: the bytes before the first ':' (the
 * info separator), or all of it. */
size_t maildir_base_len(const char *name, size_t len);

/*
 * Finds the ,S= or ,W= field (field is 'S' or 'W') of a base name. The
 * field must be a comma-separated part after the first one with 1-20
 * decimal digits up to the next ',' or the end, and fit in 64 bits.
 * Returns 1 and sets *size_r, or 0 when the field is absent or malformed
 * (the caller then measures the file).
 */
int maildir_base_size(const char *base, size_t len, char field,
		      uint64_t *size_r);

/* The delivery time prefix of a base name (its leading decimal digits,
 * followed by '.'), or MAILDIR_TIME_NONE. */
uint64_t maildir_base_time(const char *base, size_t len);

/* Message order: older delivery time first, then the base name bytes.
 * Returns <0, 0 or >0 like memcmp. */
int maildir_base_cmp(const char *a, size_t a_len, const char *b,
		     size_t b_len);

/*
 * The POP3 unique id of a base name, written to uid_r with a NUL (so uid_r
 * holds MAILDIR_UID_MAX + 1 bytes). The base name itself when it is 1-70
 * characters of 0x21-0x7E; otherwise 16 lower-case hex digits of its 64-bit
 * FNV-1a hash, stable across sessions and hosts. Returns the length.
 */
size_t maildir_uid(const char *base, size_t len,
		   char uid_r[MAILDIR_UID_MAX + 1]);

#endif
