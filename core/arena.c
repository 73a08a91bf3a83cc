#include <malloc.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>
#include <string.h>

#include <postern/api.h>

#include "arena.h"

/*
 * Blocks are mapped, not malloc'd: session memory then never touches the
 * heap a worker shares copy-on-write with the master and the other
 * workers (a malloc there dirties whole pages of it per worker), and a
 * block goes back to the kernel whole. The first block is kept for the
 * next session, wiped, so a login faults in no new page; the pages of it
 * that hold nothing go back when the worker goes quiet.
 */
#define ARENA_KEPT_SIZE (64 * 1024)
#define ARENA_BLOCK_MAX (1024 * 1024)

struct arena_block {
	struct arena_block *next;
	size_t size; /* usable bytes after the header */
	size_t used;
	max_align_t data[];
};

void *
memory_map(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

void
memory_discard(void *p, size_t size)
{
	if (madvise(p, size, MADV_DONTNEED) < 0)
		explicit_bzero(p, size); /* cannot happen; wipe anyway */
}

/* This process's kept block, and whether an arena is using it. */
static struct arena_block *kept;
static int kept_busy;

static size_t
page_size(void)
{
	static size_t page;

	if (page == 0)
		page = (size_t)sysconf(_SC_PAGESIZE);
	return page;
}

/* A block with at least size usable bytes; NULL when memory is short. */
static struct arena_block *
block_map(size_t size)
{
	size_t page = page_size();
	size_t len = (sizeof(struct arena_block) + size + page - 1) &
		     ~(page - 1);
	struct arena_block *b = memory_map(len);

	if (b == NULL)
		return NULL;
	b->size = len - sizeof(*b);
	return b;
}

static void
block_unmap(struct arena_block *b)
{
	munmap(b, sizeof(*b) + b->size);
}

static struct arena_block *
block_new(const struct arena *a, size_t size)
{
	size_t want = a->head == NULL ? ARENA_KEPT_SIZE : 2 * a->head->size;

	if (want > ARENA_BLOCK_MAX)
		want = ARENA_BLOCK_MAX;
	if (want < size)
		want = size;
	if (a->head == NULL && !kept_busy && want <= ARENA_KEPT_SIZE) {
		if (kept == NULL)
			kept = block_map(ARENA_KEPT_SIZE - sizeof(*kept));
		if (kept != NULL) {
			kept_busy = 1;
			return kept;
		}
	}
	return block_map(want);
}

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
		b = block_new(a, size);
		if (b == NULL)
			return NULL;
		if (a->total + b->size > a->limit) {
			if (b == kept)
				kept_busy = 0;
			else
				block_unmap(b);
			return NULL;
		}
		b->next = a->head;
		a->head = b;
		a->total += b->size;
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

/*
 * Idle: the stack below the waiting frame is dead; its pages go back
 * (MADV_DONTNEED also wipes them: they read as zeros). Only whole pages
 * well below the stack pointer, so the frames of this call and of
 * madvise itself stay; nothing is written to the pages first, so none
 * is dirtied only to be released.
 */
#define STACK_RELEASE_SIZE (64 * 1024)
#define STACK_RELEASE_GAP 4096

static void __attribute__((noinline))
stack_release(void)
{
	char here;
	uintptr_t page = page_size();
	uintptr_t end = ((uintptr_t)&here - STACK_RELEASE_GAP) & ~(page - 1);

	/* Below the stack's mapping too: madvise skips the unmapped part
	 * (and says ENOMEM, which changes nothing here). */
	madvise((void *)(end - STACK_RELEASE_SIZE), STACK_RELEASE_SIZE,
		MADV_DONTNEED);
}

/* The kept block's pages past what the current session uses (all of
 * them between sessions); they read as zeros afterwards, as wiped. */
static void
kept_release(void)
{
	size_t page = page_size();
	uintptr_t start, end;

	if (kept == NULL)
		return;
	start = ((uintptr_t)kept->data + kept->used + page - 1) & ~(page - 1);
	end = (uintptr_t)kept->data + kept->size;
	if (end > start)
		memory_discard((void *)start, end - start);
}

/*
 * The scratch areas: one mapping per process, two halves of
 * POSTERN_SCRATCH_SIZE. The first is api->scratch, handed to whichever
 * module asks for the length of one call; the second is the core's own
 * (wire sizes), so a module may call the core while it holds the first.
 * Their users wipe what they wrote, so they stay resident between
 * sessions (no page faults per password hash) and hold nothing; their
 * pages go back when idle.
 */
static unsigned char *scratch;

static unsigned char *
scratch_map(void)
{
	if (scratch == NULL)
		scratch = memory_map(2 * POSTERN_SCRATCH_SIZE);
	return scratch;
}

void *
memory_scratch(size_t size)
{
	if (size > POSTERN_SCRATCH_SIZE)
		return NULL;
	return scratch_map();
}

void *
memory_core_scratch(void)
{
	unsigned char *p = scratch_map();

	return p != NULL ? p + POSTERN_SCRATCH_SIZE : NULL;
}

/*
 * No malloc_trim here: session memory is not on the heap, and a trim
 * writes to the free chunks the worker inherited from the master, which
 * would turn shared pages into private ones (memory_release trims after
 * a session that left much free heap).
 */
void
memory_release_idle(void)
{
	stack_release();
	kept_release();
	if (scratch != NULL)
		memory_discard(scratch, 2 * POSTERN_SCRATCH_SIZE);
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
		if (b == kept) {
			explicit_bzero(b->data, b->used);
			b->used = 0;
			kept_busy = 0;
		} else {
			/* Unmapped pages are gone, not readable by anyone. */
			block_unmap(b);
		}
	}
	a->head = NULL;
	a->total = 0;
}
