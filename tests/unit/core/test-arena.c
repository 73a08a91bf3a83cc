/*
 * Session memory (core/arena.c): the arena hands out zeroed memory, keeps
 * its first block for the next session wiped, and gives back its unused
 * pages and the scratch areas when the worker goes quiet.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <sys/mman.h>
#include <unistd.h>

#include <postern/api.h>

#include "arena.h"
#include "resident.h"

static int
all_zero(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (p[i] != 0)
			return 0;
	}
	return 1;
}

static void
test_sessions_reuse_wiped_memory(void **state)
{
	struct arena a;
	unsigned char *first, *big, *again;

	(void)state;
	arena_init(&a, 1 << 20);
	first = arena_alloc(&a, 100);
	assert_non_null(first);
	assert_true(all_zero(first, 100));
	memset(first, 0xa5, 100);
	/* Past the kept block: a block of its own, mapped. */
	big = arena_alloc(&a, 200 * 1024);
	assert_non_null(big);
	assert_true(all_zero(big, 200 * 1024));
	memset(big, 0x5a, 200 * 1024);
	assert_null(arena_alloc(&a, 2 << 20)); /* over the limit */
	arena_wipe(&a);

	/* The next session gets the same first block, all zero again. */
	arena_init(&a, 1 << 20);
	again = arena_alloc(&a, 100);
	assert_ptr_equal(again, first);
	assert_true(all_zero(again, 100));
	arena_wipe(&a);
}

static void
test_idle_release(void **state)
{
	struct arena a;
	unsigned char *p, *tail, *mod, *core;

	(void)state;
	arena_init(&a, 1 << 20);
	p = arena_alloc(&a, 16);
	tail = arena_alloc(&a, 32 * 1024);
	memset(p, 1, 16);
	memset(tail, 1, 32 * 1024);
	arena_wipe(&a);

	mod = memory_scratch(POSTERN_SCRATCH_SIZE);
	core = memory_core_scratch();
	assert_non_null(mod);
	assert_non_null(core);
	assert_true(mod != core);
	assert_null(memory_scratch(POSTERN_SCRATCH_SIZE + 1));
	mod[100] = 1;
	core[100] = 1;
	mod[100] = core[100] = 0; /* their users wipe what they wrote */
	assert_true(resident(tail + 16 * 1024));
	assert_true(resident(mod));
	assert_true(resident(core));

	memory_release_idle();
	/* Between sessions the kept block's pages past its header go, and
	 * both scratch areas; what comes back reads as zeros. */
	assert_false(resident(tail + 16 * 1024));
	assert_false(resident(mod));
	assert_false(resident(core));
	assert_true(all_zero(tail, 32 * 1024));

	/* In a session, its live data stays. */
	arena_init(&a, 1 << 20);
	p = arena_alloc(&a, 8 * 1024);
	memset(p, 7, 8 * 1024);
	memory_release_idle();
	assert_true(resident(p + 8 * 1024 - 1));
	assert_int_equal(p[8 * 1024 - 1], 7);
	arena_wipe(&a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sessions_reuse_wiped_memory),
		cmocka_unit_test(test_idle_release),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
