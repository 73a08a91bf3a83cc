#ifndef POSTERN_PROTO_H
#define POSTERN_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <postern/api.h>

/*
 * The I/O layer: every byte a session reads or writes goes through a pio,
 * whose transport (plain socket now, TLS later) is a small ops table. On
 * top of it: the line reader, buffered replies, and the message writer
 * that converts to CRLF and dot-stuffs once, per line, with memchr.
 */
struct pio;

struct pio_transport {
	/* Like read(2)/write(2) on a blocking connection: >0 bytes, 0 EOF,
	 * -1 error (errno set). */
	ssize_t (*read)(struct pio *io, void *buf, size_t len);
	ssize_t (*write)(struct pio *io, const void *buf, size_t len);
	/* Bytes the transport holds already decoded (TLS records). */
	size_t (*pending)(struct pio *io);
};

struct pio {
	int fd;
	int out_fd; /* == fd but for inetd mode on a pipe */
	const struct pio_transport *transport;
	void *transport_ctx;

	unsigned char *in;
	size_t in_start, in_end;
	int in_used; /* holds pages since the last release */
	int discarding; /* skipping the rest of an over-long line */

	unsigned char *out;
	size_t out_len;
	size_t out_high; /* most of out used since the last release */
	unsigned char *chunk; /* message bytes read from storage */
	int chunk_used;       /* holds pages since the last release */

	int read_timeout_ms;
	/* The socket's SO_RCVTIMEO as last set (ms, 0 = none), or: */
	int rcvtimeo_ms;
#define PIO_RCVTIMEO_UNSET (-1) /* not known: set before the next read */
#define PIO_RCVTIMEO_NONE (-2)  /* not a socket: poll instead */
	int failed; /* the peer is gone or a write failed */
	int last; /* writing the session's last bytes (pio_flush_last) */
	uint64_t bytes_in, bytes_out;
};

enum pio_line_result {
	PIO_LINE = 1,
	PIO_EOF = 0,
	PIO_ERROR = -1,
	PIO_TIMEOUT = -2,
	PIO_TOO_LONG = -3, /* the line was consumed and dropped */
};

/* Buffers are allocated once per worker and reused; pio_reset() wipes
 * them between sessions. */
int pio_init(struct pio *io);
void pio_attach(struct pio *io, int fd);
void pio_reset(struct pio *io);
void pio_free(struct pio *io);
/* Gives back the pages of every buffer that holds nothing live, and the
 * process's idle memory (memory_release_idle): for a quiet session or
 * worker. */
void pio_release_idle(struct pio *io);
/* SO_RCVTIMEO or SO_SNDTIMEO of fd, in ms (0: none). 0, or -1 (errno). */
int socket_set_timeout(int fd, int option, int ms);

/* Reads one command line (CRLF or LF stripped) into *line_r (valid until
 * the next call), flushing pending replies first when it must block. */
enum pio_line_result pio_read_line(struct pio *io, char **line_r,
				   size_t *len_r);
/* Whether a complete line is already buffered (pipelining). */
int pio_has_line(const struct pio *io);
/* Drops every byte buffered but not yet read (STLS injection defence). */
void pio_discard_input(struct pio *io);

int pio_write(struct pio *io, const void *data, size_t len);
/* A string literal, its length counted by the compiler. */
#define pio_puts(io, literal) pio_write((io), "" literal, sizeof(literal) - 1)
int pio_printf(struct pio *io, const char *fmt, ...) POSTERN_PRINTF(2, 3);
int pio_vprintf(struct pio *io, const char *fmt, va_list ap);
int pio_flush(struct pio *io);
/*
 * Flushes the session's last replies. On a plain socket they go with
 * MSG_MORE: the kernel keeps the last partial segment until close(), and
 * the FIN rides in it, one packet and one wake-up of the client fewer.
 * So the caller closes the connection soon after; nothing else may be
 * written to it.
 */
int pio_flush_last(struct pio *io);

/*
 * The message converter: raw message bytes to the wire (CRLF line ends,
 * a final CRLF when the message lacks one, optional dot-stuffing, optional
 * mboxrd ">From " unquoting, optional TOP cut-off). Pure and incremental
 * so the writer and the size counter share it and always agree.
 */
struct msg_conv {
	unsigned flags;       /* POSTERN_MSG_* */
	int dot_stuff;
	long long body_limit; /* < 0: whole message */
	int at_line_start;
	int prev_cr;          /* last byte copied of this line was CR */
	size_t line_len;      /* bytes of the current line so far */
	int in_header;
	long long body_lines;
	int done;             /* TOP limit reached */
};

void msg_conv_init(struct msg_conv *c, unsigned flags, int dot_stuff,
		   long long body_limit);
/*
 * Converts from in[0..in_len) into out[0..out_room). eof says in holds
 * the last bytes of the message. Returns the bytes written to out and sets
 * *in_used_r; stops early when out is nearly full or it needs more input
 * to decide (a line start near the end of in). out_room must be >= 8.
 */
size_t msg_conv_run(struct msg_conv *c, const unsigned char *in,
		    size_t in_len, int eof, size_t *in_used_r,
		    unsigned char *out, size_t out_room);
/* The final CRLF when the message did not end in a newline (0-2 bytes). */
size_t msg_conv_finish(struct msg_conv *c, unsigned char *out);

/*
 * Sends [offset, offset+length) of fd as a multi-line response body
 * followed by ".". Returns 0, or -1 when reading the message failed
 * (errno) or the client is gone (io->failed).
 */
int pio_send_message(struct pio *io, int fd, off_t offset, uint64_t length,
		     unsigned flags, long long body_limit);

/* api->wire_size_fd. */
int proto_wire_size_fd(int fd, off_t offset, uint64_t length, unsigned flags,
		       uint64_t *size_r);

#endif
