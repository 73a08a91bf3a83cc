/*
 * Storage modules: open a mailbox, describe its messages, hand out their
 * bytes, and delete the ones marked at UPDATE. All calls run in the
 * session process after the privilege drop, with blocking I/O.
 */
#ifndef POSTERN_STORAGE_H
#define POSTERN_STORAGE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct postern_session;

/* One message as the storage reports it at open. */
struct postern_msg {
	uint64_t wire_size; /* exact: see api->wire_size_fd */
	/* Unique id: 1-70 chars of 0x21-0x7E, stable across sessions,
	 * distinct within the mailbox. Session memory or box memory. */
	const char *uid;
};

/* The raw bytes of one message: a byte range of a readable fd. */
struct postern_msg_data {
	int fd;
	off_t offset;
	uint64_t length;
	unsigned flags; /* POSTERN_MSG_* (api.h) */
};

struct postern_storage_ops {
	/*
	 * Opens the mailbox at location (already expanded) for user and
	 * takes its exclusive session lock (a file lock, so it holds across
	 * processes and nodes). Fills *box_r (module state for this
	 * session), *msgs_r (an array in session memory) and *count_r.
	 * Returns POSTERN_OK, POSTERN_INUSE when another session holds the
	 * lock, POSTERN_TEMPFAIL with *error_r on I/O trouble.
	 */
	int (*open)(void *mod, struct postern_session *s, const char *user,
		    const char *location, void **box_r,
		    struct postern_msg **msgs_r, unsigned *count_r,
		    const char **error_r);
	/*
	 * Gives the bytes of message idx (0-based). The fd belongs to the
	 * module; msg_close() is called when the core is done with it.
	 * POSTERN_FAIL: the message vanished (the client gets -ERR for that
	 * message, the session goes on).
	 */
	int (*msg_open)(void *box, unsigned idx, struct postern_msg_data *data_r,
			const char **error_r);
	void (*msg_close)(void *box, unsigned idx,
			  struct postern_msg_data *data);
	/*
	 * UPDATE: removes the messages whose deleted[idx] is non-zero.
	 * Returns POSTERN_OK, or POSTERN_TEMPFAIL with *error_r when some
	 * could not be removed (they stay; nothing else is lost).
	 */
	int (*commit)(void *box, const unsigned char *deleted, unsigned count,
		      const char **error_r);
	/* Releases the lock and everything open() took; always called. */
	void (*close)(void *box);
	void *reserved[4];
};

#endif
