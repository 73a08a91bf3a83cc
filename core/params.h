/* Every fixed limit of the core, with the reason for its value (named
 * params.h, as in popa3d: a core/limits.h would shadow <limits.h>). Limits an
 * operator may want to change are settings (conf.c), not here. */
#ifndef POSTERN_PARAMS_H
#define POSTERN_PARAMS_H

/* RFC 2449: a command line is at most 255 octets including CRLF. */
#define POP3_MAX_LINE 255

/* Input buffer: room for a maximal line plus pipelined commands. Bytes past
 * it wait in the kernel, which bounds a client's pipelined backlog. */
#define INPUT_BUFFER_SIZE 4096

/* Output buffer: one flush writes this much, so RETR of a large message is
 * a few big write()s rather than one per line (the data path). */
#define OUTPUT_BUFFER_SIZE (128 * 1024)

/* A session silent this long gives back its big buffers' pages. Sooner
 * would make busy sessions pay page faults and TLB flushes per command. */
#define IDLE_RELEASE_MS 1000

/* Read chunk for message bytes (pread into this, convert into output). */
#define MESSAGE_CHUNK_SIZE (64 * 1024)

/* Session memory cap: a mailbox of 200k messages fits well under it; a
 * module that loops allocating ends the session instead of the machine. */
#define SESSION_MEMORY_MAX (256u * 1024 * 1024)

/* Message numbers above this are refused: keeps every index in 32 bits. */
#define MAX_MESSAGES 10000000u

/* Longest mailbox location after %u/%d/~ expansion (PATH_MAX). */
#define LOCATION_MAX 4096

/* Longest user name we accept or log. */
#define MAX_USER_LEN 256

/* Master: pending connections per listen socket (listen backlog). */
#define LISTEN_BACKLOG 511

/* Master: workers that report the end of a session on the shared board
 * instead of waking the master (4 bytes each, touched pages only); any
 * beyond this report through their channel. */
#define WORKER_BOARD_SLOTS 65536

/* Master: events handled per epoll_wait round. */
#define MASTER_EVENTS 64

/* A client that stops reading: a write that makes no progress for this many
 * seconds ends the session. */
#define WRITE_TIMEOUT 600

#endif
