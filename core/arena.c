#include <malloc.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

#define ARENA_BLOCK_MIN (16 * 1024)

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
		size_t bsize = size > ARENA_BLOCK_MIN ? size : ARENA_BLOCK_MIN;

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

/* More than the deepest call chain below a session (crypt included). */
#define STACK_SCRUB_SIZE (256 * 1024)

static void __attribute__((noinline))
stack_scrub(void)
{
	unsigned char buf[STACK_SCRUB_SIZE];
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t start = ((uintptr_t)buf + page - 1) & ~(page - 1);
	uintptr_t end = ((uintptr_t)buf + sizeof(buf)) & ~(page - 1);

	explicit_bzero(buf, sizeof(buf));
	if (end > start)
		madvise((void *)start, end - start, MADV_DONTNEED);
	__asm__ volatile("" : : "r"(buf) : "memory");
}

void
memory_scrub(void)
{
	stack_scrub();
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
