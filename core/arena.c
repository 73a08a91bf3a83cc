#include <malloc.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

/* Blocks start small and double: a mailbox of a few messages costs one
 * page, a large one few blocks. */
#define ARENA_BLOCK_FIRST (4 * 1024)
#define ARENA_BLOCK_MAX (256 * 1024)

struct arena_block {
	struct arena_block *next;
	size_t size; /* usable bytes after the header */
	size_t used;
	max_align_t data[];
};

void
arena_init(struct arena *a, size_t limit)
{
	a->head = NULL;
	a->total = 0;
	a->limit = limit;
}

void *
arena_alloc(struct arena *a, size_t size)
{
	const size_t align = sizeof(max_align_t);
	struct arena_block *b = a->head;
	void *p;

	if (size > a->limit)
		return NULL;
	size = (size + align - 1) & ~(align - 1);
	if (b == NULL || b->size - b->used < size) {
		size_t bsize = b == NULL ? ARENA_BLOCK_FIRST : 2 * b->size;

		if (bsize > ARENA_BLOCK_MAX)
			bsize = ARENA_BLOCK_MAX;
		if (bsize < size)
			bsize = size;

		if (a->total + bsize > a->limit)
			return NULL;
		b = calloc(1, sizeof(*b) + bsize);
		if (b == NULL)
			return NULL;
		b->size = bsize;
		b->next = a->head;
		a->head = b;
		a->total += bsize;
	}
	p = (char *)b->data + b->used;
	b->used += size;
	return p;
}

char *
arena_strndup(struct arena *a, const char *str, size_t len)
{
	char *p = arena_alloc(a, len + 1);

	if (p != NULL) {
		memcpy(p, str, len);
		p[len] = '\0';
	}
	return p;
}

/*
 * Deeper than the session's own frames (replies, log lines, parsing) and
 * the auth chain's; crypt keeps its state in the work area the passwd
 * module maps and unmaps, not on the stack. Kept small on purpose: pages
 * given back with madvise cost a TLB flush and a fault each on the next
 * use, which measured at 150 faults and 2.8 ms of CPU per login on a
 * paravirtualised VM, more than the password hash itself.
 */
#define STACK_SCRUB_SIZE (8 * 1024)

/* Free heap memory a worker may keep between sessions. */
#define HEAP_TRIM_FREE (512 * 1024)

static void __attribute__((noinline))
stack_scrub(void)
{
	unsigned char buf[STACK_SCRUB_SIZE];

	explicit_bzero(buf, sizeof(buf));
	__asm__ volatile("" : : "r"(buf) : "memory");
}

/* Idle: the stack below the waiting frame is dead; hand its pages back
 * (bzero first: the region must be mapped, and it is a wipe as well). */
#define STACK_RELEASE_SIZE (64 * 1024)

static void __attribute__((noinline))
stack_release(void)
{
	unsigned char buf[STACK_RELEASE_SIZE];
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t start = ((uintptr_t)buf + page - 1) & ~(page - 1);
	uintptr_t end = ((uintptr_t)buf + sizeof(buf)) & ~(page - 1);

	explicit_bzero(buf, sizeof(buf));
	if (end > start)
		madvise((void *)start, end - start, MADV_DONTNEED);
	__asm__ volatile("" : : "r"(buf) : "memory");
}

void
memory_release_idle(void)
{
	stack_release();
	malloc_trim(0);
}

void
memory_scrub(void)
{
	stack_scrub();
}

void
memory_release(void)
{
	stack_scrub();
	/* Free heap pages go back only when there are many: a trim costs
	 * madvise calls and the next session's page faults (measured at 0.7
	 * ms per login), and glibc already trims the heap's top itself. */
	if (mallinfo2().fordblks > HEAP_TRIM_FREE)
		malloc_trim(0);
}

void
arena_wipe(struct arena *a)
{
	struct arena_block *b = a->head, *next;

	for (; b != NULL; b = next) {
		next = b->next;
		explicit_bzero(b->data, b->used);
		free(b);
	}
	a->head = NULL;
	a->total = 0;
}
