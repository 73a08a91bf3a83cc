#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "arena.h"
#include "params.h"
#include "proto.h"

static ssize_t
plain_read(struct pio *io, void *buf, size_t len)
{
	ssize_t n;

	do {
		n = read(io->fd, buf, len);
	} while (n < 0 && errno == EINTR);
	return n;
}

static ssize_t
plain_write(struct pio *io, const void *buf, size_t len)
{
	ssize_t n;

	for (;;) {
		if (io->last)
			n = send(io->out_fd, buf, len, MSG_MORE | MSG_NOSIGNAL);
		else
			n = write(io->out_fd, buf, len);
		if (n >= 0 || errno != EINTR)
			break;
	}
	if (n < 0 && io->last && errno == ENOTSOCK) {
		io->last = 0; /* a pipe after all */
		return plain_write(io, buf, len);
	}
	return n;
}

static size_t
plain_pending(struct pio *io)
{
	return 0;
}

static const struct pio_transport plain_transport = {
	.read = plain_read,
	.write = plain_write,
	.pending = plain_pending,
};

/*
 * The big buffers are their own anonymous mappings (memory_map), so that
 * giving their pages back (memory_discard) both releases the memory of an
 * idle session and wipes it: the next touch reads zeros.
 */
int
pio_init(struct pio *io)
{
	memset(io, 0, sizeof(*io));
	io->fd = io->out_fd = -1;
	io->in = memory_map(INPUT_BUFFER_SIZE);
	io->out = memory_map(OUTPUT_BUFFER_SIZE);
	io->chunk = memory_map(MESSAGE_CHUNK_SIZE);
	if (io->in == NULL || io->out == NULL || io->chunk == NULL) {
		pio_free(io);
		return -1;
	}
	io->transport = &plain_transport;
	return 0;
}

/* An idle session or worker holds no buffer page: replies are flushed
 * before any wait, and input is released when none is buffered. */
void
pio_release_idle(struct pio *io)
{
	if (io->out_len == 0 && io->out_high > 0) {
		memory_discard(io->out, OUTPUT_BUFFER_SIZE);
		io->out_high = 0;
	}
	if (io->chunk_used) {
		memory_discard(io->chunk, MESSAGE_CHUNK_SIZE);
		io->chunk_used = 0;
	}
	if (io->in_end == 0 && io->in_used) {
		memory_discard(io->in, INPUT_BUFFER_SIZE);
		io->in_used = 0;
	}
	memory_release_idle();
}

void
pio_attach(struct pio *io, int fd)
{
	io->fd = fd;
	io->out_fd = fd;
	io->transport = &plain_transport;
	io->transport_ctx = NULL;
	io->in_start = io->in_end = 0;
	io->out_len = 0;
	io->discarding = 0;
	io->failed = 0;
	io->bytes_in = io->bytes_out = 0;
	io->read_timeout_ms = -1;
	io->rcvtimeo_ms = PIO_RCVTIMEO_UNSET;
}

/* Everything a session put through the buffers is wiped, so a reused
 * worker holds no byte of it (commands, passwords, message bodies). */
void
pio_reset(struct pio *io)
{
	if (io->in_used)
		explicit_bzero(io->in, INPUT_BUFFER_SIZE);
	if (io->out_len > io->out_high)
		io->out_high = io->out_len;
	/* A session of short replies wrote into the first page only: zero
	 * it and keep it (out_high still counts it, for the next wipe and
	 * the idle release). Anything bigger goes back (and reads as
	 * zeros). */
	if (io->out_high <= 4096) {
		explicit_bzero(io->out, io->out_high);
	} else {
		memory_discard(io->out, OUTPUT_BUFFER_SIZE);
		io->out_high = 0;
	}
	if (io->chunk_used)
		memory_discard(io->chunk, MESSAGE_CHUNK_SIZE);
	io->chunk_used = 0;
	io->fd = -1;
	io->in_start = io->in_end = io->out_len = 0;
}

void
pio_free(struct pio *io)
{
	if (io->in != NULL)
		munmap(io->in, INPUT_BUFFER_SIZE);
	if (io->out != NULL)
		munmap(io->out, OUTPUT_BUFFER_SIZE);
	if (io->chunk != NULL)
		munmap(io->chunk, MESSAGE_CHUNK_SIZE);
	io->in = io->out = io->chunk = NULL;
}

int
pio_flush(struct pio *io)
{
	size_t done = 0;

	if (io->out_len > io->out_high)
		io->out_high = io->out_len;
	while (done < io->out_len && !io->failed) {
		ssize_t n = io->transport->write(io, io->out + done,
						 io->out_len - done);
		if (n <= 0) {
			io->failed = 1;
			break;
		}
		done += (size_t)n;
	}
	io->bytes_out += done;
	io->out_len = 0;
	return io->failed ? -1 : 0;
}

int
pio_flush_last(struct pio *io)
{
	int ret;

	io->last = io->transport == &plain_transport &&
		   io->rcvtimeo_ms != PIO_RCVTIMEO_NONE;
	ret = pio_flush(io);
	io->last = 0;
	return ret;
}

int
pio_write(struct pio *io, const void *data, size_t len)
{
	const unsigned char *p = data;

	while (len > 0) {
		size_t room = OUTPUT_BUFFER_SIZE - io->out_len;

		if (room == 0) {
			if (pio_flush(io) < 0)
				return -1;
			continue;
		}
		if (room > len)
			room = len;
		memcpy(io->out + io->out_len, p, room);
		io->out_len += room;
		p += room;
		len -= room;
	}
	return io->failed ? -1 : 0;
}

int
pio_vprintf(struct pio *io, const char *fmt, va_list ap)
{
	char line[1024];
	va_list copy;
	int n;

	va_copy(copy, ap);
	n = vsnprintf(line, sizeof(line), fmt, copy);
	va_end(copy);
	if (n < 0)
		return -1;
	/* Replies are short lines; a longer one is cut, never overrun. */
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	return pio_write(io, line, (size_t)n);
}

int
pio_printf(struct pio *io, const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = pio_vprintf(io, fmt, ap);
	va_end(ap);
	return ret;
}

int
pio_has_line(const struct pio *io)
{
	return memchr(io->in + io->in_start, '\n',
		      io->in_end - io->in_start) != NULL;
}

void
pio_discard_input(struct pio *io)
{
	if (io->in_used)
		explicit_bzero(io->in, INPUT_BUFFER_SIZE);
	io->in_start = io->in_end = 0;
	io->discarding = 0;
}

static int
poll_in(int fd, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int n;

	do {
		n = poll(&pfd, 1, timeout_ms);
	} while (n < 0 && errno == EINTR);
	return n;
}

int
socket_set_timeout(int fd, int option, int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000,
			      .tv_usec = (ms % 1000) * 1000 };

	return setsockopt(fd, SOL_SOCKET, option, &tv, sizeof(tv));
}

/* The socket's receive timeout, set only when it changes; 0 = none. */
static int
set_rcvtimeo(struct pio *io, int ms)
{
	if (io->rcvtimeo_ms == ms)
		return 0;
	if (socket_set_timeout(io->fd, SO_RCVTIMEO, ms) < 0)
		return -1;
	io->rcvtimeo_ms = ms;
	return 0;
}

/*
 * Waits up to ms for input (ms < 0: for ever). On a socket the read
 * itself waits, on its receive timeout (SO_RCVTIMEO), so a command costs
 * one read and no poll; on anything else (inetd on a pipe) poll waits
 * first. Returns the transport's read, or -1 with EAGAIN on timeout.
 */
static ssize_t
read_within(struct pio *io, int ms)
{
	unsigned char *p = io->in + io->in_end;
	size_t room = INPUT_BUFFER_SIZE - io->in_end;

	if (io->rcvtimeo_ms != PIO_RCVTIMEO_NONE &&
	    set_rcvtimeo(io, ms < 0 ? 0 : ms) < 0) {
		if (errno != ENOTSOCK)
			return -1;
		io->rcvtimeo_ms = PIO_RCVTIMEO_NONE;
	}
	if (io->rcvtimeo_ms == PIO_RCVTIMEO_NONE &&
	    io->transport->pending(io) == 0) {
		int n = poll_in(io->fd, ms);

		if (n <= 0) {
			if (n == 0)
				errno = EAGAIN;
			return -1;
		}
	}
	io->in_used = 1;
	return io->transport->read(io, p, room);
}

/*
 * Reads what the client sends next into the input buffer. A client that
 * stays silent past IDLE_RELEASE_MS gets its session's buffers given
 * back; a busy one (pipelined RETRs) never pays for that, since giving
 * pages back costs TLB flushes and page faults on the next use.
 */
static enum pio_line_result
read_input(struct pio *io)
{
	int timeout = io->read_timeout_ms, first = IDLE_RELEASE_MS;
	ssize_t n;

	if (timeout >= 0 && timeout < first)
		first = timeout;
	n = read_within(io, first);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
	    timeout != first) {
		pio_release_idle(io);
		n = read_within(io, timeout < 0 ? -1 : timeout - first);
	}
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? PIO_TIMEOUT
							       : PIO_ERROR;
	if (n == 0)
		return PIO_EOF;
	io->in_end += (size_t)n;
	io->bytes_in += (size_t)n;
	return PIO_LINE;
}

enum pio_line_result
pio_read_line(struct pio *io, char **line_r, size_t *len_r)
{
	for (;;) {
		unsigned char *start = io->in + io->in_start;
		size_t avail = io->in_end - io->in_start;
		unsigned char *nl = memchr(start, '\n', avail);
		enum pio_line_result wait;

		if (nl != NULL) {
			size_t len = (size_t)(nl - start);
			int was_discarding = io->discarding;

			io->in_start += len + 1;
			io->discarding = 0;
			if (was_discarding || len + 1 > POP3_MAX_LINE)
				return PIO_TOO_LONG;
			if (len > 0 && start[len - 1] == '\r')
				len--;
			start[len] = '\0';
			*line_r = (char *)start;
			*len_r = len;
			return PIO_LINE;
		}
		if (avail >= POP3_MAX_LINE) {
			/* No line end in sight: drop what we have and skip to
			 * the next LF, answering once. */
			io->discarding = 1;
			io->in_start = io->in_end = 0;
			avail = 0;
		}
		if (io->in_start > 0) {
			memmove(io->in, start, avail);
			io->in_start = 0;
			io->in_end = avail;
		}
		/* About to block: the client has had every answer it asked
		 * for, so send them now (pipelined batches flush once). */
		if (pio_flush(io) < 0)
			return PIO_ERROR;
		wait = read_input(io);
		if (wait != PIO_LINE)
			return wait;
	}
}

void
msg_conv_init(struct msg_conv *c, unsigned flags, int dot_stuff,
	      long long body_limit)
{
	memset(c, 0, sizeof(*c));
	c->flags = flags;
	c->dot_stuff = dot_stuff;
	c->body_limit = body_limit;
	c->at_line_start = 1;
	c->in_header = 1;
	c->done = body_limit == 0 ? 0 : 0;
}

/* ^>+From : the mboxrd quoting we undo by dropping the first '>'. */
static int
is_quoted_from(const unsigned char *p, size_t len)
{
	size_t i = 0;

	while (i < len && p[i] == '>')
		i++;
	return i > 0 && len - i >= 5 && memcmp(p + i, "From ", 5) == 0;
}

/* A line ended: track the header/body boundary and the TOP limit. */
static void
line_ended(struct msg_conv *c)
{
	int empty = c->line_len == 0 || (c->line_len == 1 && c->prev_cr);

	if (c->in_header) {
		if (empty) {
			c->in_header = 0;
			if (c->body_limit == 0)
				c->done = 1;
		}
	} else if (c->body_limit > 0 && ++c->body_lines >= c->body_limit) {
		c->done = 1;
	}
	c->at_line_start = 1;
	c->line_len = 0;
	c->prev_cr = 0;
}

/* Longest line start the converter must see at once: ">>>...From ". */
#define LINE_LOOKAHEAD 64

size_t
msg_conv_run(struct msg_conv *c, const unsigned char *in, size_t in_len,
	     int eof, size_t *in_used_r, unsigned char *out, size_t out_room)
{
	size_t pos = 0, o = 0;

	while (pos < in_len && !c->done && out_room - o >= 3) {
		const unsigned char *seg = in + pos, *nl;
		size_t seg_len, room;

		if (c->at_line_start) {
			if ((c->flags & POSTERN_MSG_FROM_UNQUOTE) &&
			    in_len - pos < LINE_LOOKAHEAD && !eof &&
			    memchr(seg, '\n', in_len - pos) == NULL)
				break; /* need the whole line start */
			if (c->dot_stuff && *seg == '.')
				out[o++] = '.';
			if ((c->flags & POSTERN_MSG_FROM_UNQUOTE) &&
			    is_quoted_from(seg, in_len - pos))
				pos++, seg++;
			c->at_line_start = 0;
		}
		nl = memchr(seg, '\n', in_len - pos);
		seg_len = nl != NULL ? (size_t)(nl - seg) : in_len - pos;
		room = out_room - o - 2; /* keep room for CRLF */
		if (seg_len > room) {
			memcpy(out + o, seg, room);
			o += room;
			pos += room;
			c->line_len += room;
			c->prev_cr = room > 0 ? seg[room - 1] == '\r' : c->prev_cr;
			break;
		}
		memcpy(out + o, seg, seg_len);
		o += seg_len;
		pos += seg_len;
		c->line_len += seg_len;
		if (seg_len > 0)
			c->prev_cr = seg[seg_len - 1] == '\r';
		if (nl == NULL)
			break;
		if (!c->prev_cr)
			out[o++] = '\r';
		out[o++] = '\n';
		pos++;
		line_ended(c);
	}
	*in_used_r = pos;
	return o;
}

size_t
msg_conv_finish(struct msg_conv *c, unsigned char *out)
{
	if (c->at_line_start || c->done)
		return 0;
	/* A message ending in a lone CR already has half of it. */
	if (c->prev_cr) {
		out[0] = '\n';
		c->at_line_start = 1;
		return 1;
	}
	out[0] = '\r';
	out[1] = '\n';
	c->at_line_start = 1;
	return 2;
}

/*
 * Drives the converter over [offset, offset+length) of fd, handing each
 * converted piece to sink. The one loop behind RETR/TOP and wire sizes.
 */
static int
convert_fd(struct msg_conv *c, int fd, off_t offset, uint64_t length,
	   unsigned char *chunk, size_t chunk_size,
	   int (*sink)(void *ctx, unsigned char **out_r, size_t *room_r,
		       size_t used),
	   void *ctx)
{
	size_t have = 0, room;
	uint64_t left = length;
	unsigned char *out;

	if (sink(ctx, &out, &room, 0) < 0)
		return -1;
	while (!c->done) {
		size_t in_used, produced;
		int eof;

		if (left > 0 && have < chunk_size) {
			size_t want = chunk_size - have;
			ssize_t n;

			if (want > left)
				want = (size_t)left;
			do {
				n = pread(fd, chunk + have, want, offset);
			} while (n < 0 && errno == EINTR);
			if (n < 0)
				return -1;
			if (n == 0) {
				/* Shorter than the storage said: the file
				 * changed under us. Send what there is. */
				left = 0;
			}
			have += (size_t)n;
			offset += n;
			left -= (uint64_t)n <= left ? (uint64_t)n : left;
		}
		eof = left == 0;
		if (have == 0)
			break;
		produced = msg_conv_run(c, chunk, have, eof, &in_used, out,
					room);
		if (sink(ctx, &out, &room, produced) < 0)
			return -1;
		memmove(chunk, chunk + in_used, have - in_used);
		have -= in_used;
		if (in_used == 0 && produced == 0 && eof)
			break;
	}
	room = msg_conv_finish(c, out);
	return sink(ctx, &out, &room, room);
}

/* Sink into the pio output buffer. */
static int
pio_sink(void *ctx, unsigned char **out_r, size_t *room_r, size_t used)
{
	struct pio *io = ctx;

	io->out_len += used;
	if (OUTPUT_BUFFER_SIZE - io->out_len < 1024 && pio_flush(io) < 0)
		return -1;
	*out_r = io->out + io->out_len;
	*room_r = OUTPUT_BUFFER_SIZE - io->out_len;
	return 0;
}

int
pio_send_message(struct pio *io, int fd, off_t offset, uint64_t length,
		 unsigned flags, long long body_limit)
{
	struct msg_conv c;
	int ret;

	msg_conv_init(&c, flags, 1, body_limit);
	ret = convert_fd(&c, fd, offset, length, io->chunk, MESSAGE_CHUNK_SIZE,
			 pio_sink, io);
	io->chunk_used = 1;
	if (ret < 0)
		return -1;
	return pio_puts(io, ".\r\n");
}

struct count_sink {
	unsigned char buf[8192];
	uint64_t total;
};

static int
count_sink(void *ctx, unsigned char **out_r, size_t *room_r, size_t used)
{
	struct count_sink *cs = ctx;

	cs->total += used;
	*out_r = cs->buf;
	*room_r = sizeof(cs->buf);
	return 0;
}

/* In the core's scratch area: the counter's buffer, then the message
 * bytes read. Both are wiped after. */
int
proto_wire_size_fd(int fd, off_t offset, uint64_t length, unsigned flags,
		   uint64_t *size_r)
{
	struct count_sink *cs = memory_core_scratch();
	unsigned char *chunk = (unsigned char *)(cs + 1);
	size_t chunk_size = POSTERN_SCRATCH_SIZE - sizeof(*cs);
	struct msg_conv c;
	int ret = POSTERN_TEMPFAIL;

	if (cs == NULL)
		return POSTERN_TEMPFAIL;
	cs->total = 0;
	msg_conv_init(&c, flags, 0, -1);
	if (convert_fd(&c, fd, offset, length, chunk, chunk_size, count_sink,
		       cs) == 0) {
		*size_r = cs->total;
		ret = POSTERN_OK;
	}
	explicit_bzero(chunk, length < chunk_size ? (size_t)length
						  : chunk_size);
	explicit_bzero(cs, sizeof(*cs));
	return ret;
}
