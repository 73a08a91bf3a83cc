#ifndef POSTERN_ARENA_H
#define POSTERN_ARENA_H

#include <stddef.h>

/* Session memory: a bump allocator over mapped blocks. Everything of one
 * session lives here, so ending the session wipes and frees it at once and
 * a reused worker keeps nothing of the previous user. */
struct arena_block;

struct arena {
	struct arena_block *head;
	size_t total;  /* bytes of blocks held */
	size_t limit;  /* allocation beyond it fails */
};

void arena_init(struct arena *a, size_t limit);
/* Returns zeroed memory aligned for any type, or NULL past the limit. */
void *arena_alloc(struct arena *a, size_t size);
char *arena_strndup(struct arena *a, const char *str, size_t len);
/* Wipes (explicit_bzero) and frees every block; the arena is reusable. */
void arena_wipe(struct arena *a);

/*
 * After a login: zeroes the stack below the caller (old frames of the
 * auth chain, the parser, replies), so no secret survives in them.
 */
void memory_scrub(void);
/* After a session: the same, and the heap's free pages go back to the
 * kernel, so an idle worker keeps little memory resident. */
void memory_release(void);
/* A session or worker gone quiet: the stack's dead pages, the session
 * arena's unused pages, the scratch area and the heap's free pages go
 * back. Costs page faults later, so only after a pause (proto.c,
 * worker.c). */
void memory_release_idle(void);

/* An anonymous private mapping of size bytes (zero-filled), or NULL. */
void *memory_map(size_t size);
/* Gives the pages of [p, p+size) of such a mapping back (MADV_DONTNEED):
 * released and wiped at once, they read as zeros on the next touch. */
void memory_discard(void *p, size_t size);

/* api->scratch: POSTERN_SCRATCH_SIZE bytes, zero-filled, for the length
 * of one call into a module, whose callers wipe what they wrote. NULL
 * when size is larger or memory is short. */
void *memory_scratch(size_t size);
/* The core's own scratch area, of the same size and rules, distinct from
 * the modules' (a module may call the core while it holds that one). */
void *memory_core_scratch(void);

#endif
